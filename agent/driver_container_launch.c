/*
 * driver_container_launch.c - the container's first processes: start()
 * (driver_container.c) gets a running init in new namespaces, with its
 * root, console and network in place, from ctr_launch().
 *
 * Process structure:
 *
 *   agent thread --fork--> A: joins the guest's cgroups, unshares pid, mnt,
 *                             uts, ipc and net namespaces, forks B, reports
 *                             B's pid and exits
 *                          B: pid 1 of the container; new session; mounts
 *                             /proc, /sys (ro), /dev, /tmp under the overlay
 *                             root, pivot_root, waits for "go", execs the
 *                             guest's command
 *
 * B is not the agent's child: when A exits it is reparented (to init or the
 * nearest subreaper), so the container outlives the agent. Its host pid and
 * its start time (from /proc/PID/stat, against pid reuse) are returned; the
 * driver records them in run_dir/pid. Between A's report and "go" the
 * agent builds the network from outside (driver_container_net.c), so the
 * guest's command starts with its address in place.
 *
 * The children run only async-signal-safe code (the agent has threads):
 * everything they need is computed before fork() into struct launch, and
 * they report failures as fixed-size messages on a pipe whose write end
 * closes on exec, so EOF means the command runs. These two forks are not
 * ha_spawn_run (common/ha_spawn.h, used for the helper programs in
 * driver_container_exec.c): B outlives the call, waits for "go" on a
 * socketpair the agent keeps, and its signal dispositions are reset only
 * right before exec.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/close_range.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <unistd.h>

#include "driver_container.h"
#include "util.h"

enum launch_msg_type { LAUNCH_PID = 1, LAUNCH_ERR = 2 };

struct launch_msg {
	int type;
	int err;        /* errno */
	int pid;        /* LAUNCH_PID: init's host pid */
	char what[116]; /* LAUNCH_ERR: the step that failed */
};

struct launch {
	const char *root;
	const char *console;
	const char *hostname;
	char *argv[CTR_ARGS_MAX + 1];
	char args[CTR_CMD_MAX];
	char cgprocs[8][HOST_CG_PATH];
	unsigned n_cgprocs;
	int msg_rd, msg_wr;   /* children -> agent (pipe) */
	int sync_rd, sync_wr; /* agent -> init: one byte "go" (socketpair, so
			       * that a dead init means EPIPE, not SIGPIPE) */
};

static const char *const init_env[] = {
	"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
	"HOME=/",
	"TERM=dumb",
	"container=hactl",
	NULL,
};

static void copy_str(char *dst, size_t len, const char *src)
{
	size_t i = 0;

	for (; src[i] && i + 1 < len; i++) {
		dst[i] = src[i];
	}
	dst[i] = '\0';
}

static __attribute__((noreturn)) void child_fail(const struct launch *l, const char *what,
						  int e)
{
	struct launch_msg m = { .type = LAUNCH_ERR, .err = e };
	ssize_t n;

	copy_str(m.what, sizeof(m.what), what);
	n = write(l->msg_wr, &m, sizeof(m));
	(void)n;
	_exit(1);
}

static void child_mkdir(const struct launch *l, const char *path, mode_t mode)
{
	if (mkdir(path, mode) < 0 && errno != EEXIST) {
		child_fail(l, path, errno);
	}
}

static void child_mount(const struct launch *l, const char *src, const char *dst,
			const char *type, unsigned long flags, const char *data)
{
	if (mount(src, dst, type, flags, data) < 0) {
		child_fail(l, dst, errno);
	}
}

/* Inside the new root (cwd): /proc, /sys, /dev, /tmp. */
static void child_mounts(const struct launch *l)
{
	static const struct {
		const char *name;
		unsigned maj, min;
	} devs[] = {
		{ "dev/null", 1, 3 },    { "dev/zero", 1, 5 }, { "dev/full", 1, 7 },
		{ "dev/random", 1, 8 },  { "dev/urandom", 1, 9 }, { "dev/tty", 5, 0 },
	};
	static const char *const links[][2] = {
		{ "/proc/self/fd", "dev/fd" },     { "/proc/self/fd/0", "dev/stdin" },
		{ "/proc/self/fd/1", "dev/stdout" }, { "/proc/self/fd/2", "dev/stderr" },
		{ "pts/ptmx", "dev/ptmx" },
	};
	const unsigned long nosuid = MS_NOSUID | MS_NODEV | MS_NOEXEC;
	int fd;

	child_mkdir(l, "proc", 0555);
	child_mkdir(l, "sys", 0555);
	child_mkdir(l, "dev", 0755);
	child_mkdir(l, "tmp", 01777);
	child_mount(l, "proc", "proc", "proc", nosuid, NULL);
	/* Kernel tunables stay the host's: read-only for the guest. */
	child_mount(l, "proc/sys", "proc/sys", NULL, MS_BIND, NULL);
	child_mount(l, NULL, "proc/sys", NULL, MS_BIND | MS_REMOUNT | MS_RDONLY | nosuid, NULL);
	child_mount(l, "sysfs", "sys", "sysfs", MS_RDONLY | nosuid, NULL);
	child_mount(l, "tmpfs", "dev", "tmpfs", MS_NOSUID | MS_STRICTATIME,
		    "mode=755,size=65536k");
	umask(0);
	for (size_t i = 0; i < HA_ARRAY_SIZE(devs); i++) {
		if (mknod(devs[i].name, S_IFCHR | 0666, makedev(devs[i].maj, devs[i].min)) < 0) {
			child_fail(l, devs[i].name, errno);
		}
	}
	child_mkdir(l, "dev/pts", 0755);
	child_mkdir(l, "dev/shm", 01777);
	child_mkdir(l, "dev/mqueue", 01777);
	for (size_t i = 0; i < HA_ARRAY_SIZE(links); i++) {
		if (symlink(links[i][0], links[i][1]) < 0) {
			child_fail(l, links[i][1], errno);
		}
	}
	child_mount(l, "devpts", "dev/pts", "devpts", MS_NOSUID | MS_NOEXEC,
		    "newinstance,ptmxmode=0666,mode=0620");
	/* /dev/console is the console log (a file bind mount). */
	fd = open("dev/console", O_WRONLY | O_CREAT | O_CLOEXEC | O_NOCTTY, 0600);
	if (fd < 0) {
		child_fail(l, "dev/console", errno);
	}
	close(fd);
	child_mount(l, l->console, "dev/console", NULL, MS_BIND, NULL);
	child_mount(l, "mqueue", "dev/mqueue", "mqueue", nosuid, NULL);
	child_mount(l, "tmpfs", "tmp", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777");
	umask(022);
}

static __attribute__((noreturn)) void child_exec(const struct launch *l)
{
	static const char *const path[] = { "/usr/local/sbin", "/usr/local/bin", "/usr/sbin",
					    "/usr/bin", "/sbin", "/bin" };
	struct sigaction dfl = { .sa_handler = SIG_DFL };
	char buf[CTR_PATH];
	int e = ENOENT;

	for (int sig = 1; sig < NSIG; sig++) {
		sigaction(sig, &dfl, NULL);
	}
	if (strchr(l->argv[0], '/')) {
		execve(l->argv[0], l->argv, (char *const *)init_env);
		child_fail(l, l->argv[0], errno);
	}
	for (size_t i = 0; i < HA_ARRAY_SIZE(path); i++) {
		size_t a = strlen(path[i]), b = strlen(l->argv[0]);

		if (a + 1 + b + 1 > sizeof(buf)) {
			continue;
		}
		memcpy(buf, path[i], a);
		buf[a] = '/';
		memcpy(buf + a + 1, l->argv[0], b + 1);
		execve(buf, l->argv, (char *const *)init_env);
		if (errno != ENOENT) {
			e = errno;
		}
	}
	child_fail(l, l->argv[0], e);
}

/* B: pid 1 of the container. */
static __attribute__((noreturn)) void child_init(const struct launch *l)
{
	char go = 0;
	int fd;

	close(l->sync_wr);
	close(l->msg_rd);
	if (setsid() < 0) {
		child_fail(l, "setsid", errno);
	}
	child_mount(l, NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL);
	if (chdir(l->root) < 0) {
		child_fail(l, l->root, errno);
	}
	child_mounts(l);
	if (sethostname(l->hostname, strlen(l->hostname)) < 0) {
		child_fail(l, "sethostname", errno);
	}
	if (syscall(SYS_pivot_root, ".", ".") < 0) {
		child_fail(l, "pivot_root", errno);
	}
	/* The old root now sits on top of "/": detach it. */
	if (umount2(".", MNT_DETACH) < 0) {
		child_fail(l, "detaching the old root", errno);
	}
	if (chdir("/") < 0) {
		child_fail(l, "chdir /", errno);
	}
	fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	if (fd < 0 || dup2(fd, 0) < 0) {
		child_fail(l, "/dev/null as stdin", errno);
	}
	fd = open("/dev/console", O_WRONLY | O_APPEND | O_CLOEXEC | O_NOCTTY);
	if (fd < 0 || dup2(fd, 1) < 0 || dup2(fd, 2) < 0) {
		child_fail(l, "/dev/console as stdout", errno);
	}
	/* Nothing of the agent's survives the exec. */
	close_range(3, ~0U, CLOSE_RANGE_CLOEXEC);
	while (read(l->sync_rd, &go, 1) < 0 && errno == EINTR) {
	}
	if (go != 'g') {
		_exit(1); /* the agent gave up */
	}
	child_exec(l);
}

/* A: joins the cgroups, makes the namespaces, forks the container's init. */
static __attribute__((noreturn)) void child_launcher(const struct launch *l)
{
	struct launch_msg m = { .type = LAUNCH_PID };
	sigset_t none;
	pid_t pid;
	ssize_t n;

	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	for (unsigned i = 0; i < l->n_cgprocs; i++) {
		int fd = open(l->cgprocs[i], O_WRONLY | O_CLOEXEC);

		if (fd < 0 || write(fd, "0", 1) != 1) {
			child_fail(l, l->cgprocs[i], errno);
		}
		close(fd);
	}
	if (unshare(CLONE_NEWPID | CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWNET) <
	    0) {
		child_fail(l, "unshare(pid, mnt, uts, ipc, net)", errno);
	}
	pid = fork();
	if (pid < 0) {
		child_fail(l, "fork of init", errno);
	}
	if (pid == 0) {
		child_init(l);
	}
	m.pid = pid;
	n = write(l->msg_wr, &m, sizeof(m));
	_exit(n == (ssize_t)sizeof(m) ? 0 : 1);
}

static int fd_high(int fd)
{
	int nfd;

	if (fd > 2) {
		return fd;
	}
	nfd = fcntl(fd, F_DUPFD_CLOEXEC, 3);
	close(fd);
	return nfd;
}

static int launch_prepare(const struct ctr_ckpt_target *t, const char *console, struct launch *l,
			  char *err)
{
	int p[2], q[2];
	char *s, *save = NULL;
	unsigned n = 0;

	memset(l, 0, sizeof(*l));
	l->msg_rd = l->msg_wr = l->sync_rd = l->sync_wr = -1;
	l->root = t->root;
	l->console = console;
	l->hostname = t->spec->name;
	copy_str(l->args, sizeof(l->args), t->spec->command);
	for (s = strtok_r(l->args, " \t", &save); s && n < CTR_ARGS_MAX;
	     s = strtok_r(NULL, " \t", &save)) {
		l->argv[n++] = s;
	}
	l->argv[n] = NULL;
	l->n_cgprocs = host_cgroup_procs_files(t->cg, l->cgprocs, HA_ARRAY_SIZE(l->cgprocs));
	if (pipe2(p, O_CLOEXEC) < 0) {
		return agent_err(err, -errno, "pipe: %s", strerror(errno));
	}
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, q) < 0) {
		int e = -errno;

		close(p[0]);
		close(p[1]);
		return agent_err(err, e, "pipe: %s", strerror(-e));
	}
	l->msg_rd = fd_high(p[0]);
	l->msg_wr = fd_high(p[1]);
	l->sync_rd = fd_high(q[0]);
	l->sync_wr = fd_high(q[1]);
	if (l->msg_rd < 0 || l->msg_wr < 0 || l->sync_rd < 0 || l->sync_wr < 0) {
		return agent_err(err, -EMFILE, "pipe: out of descriptors");
	}
	return 0;
}

static void launch_close(struct launch *l)
{
	int *fds[] = { &l->msg_rd, &l->msg_wr, &l->sync_rd, &l->sync_wr };

	for (size_t i = 0; i < HA_ARRAY_SIZE(fds); i++) {
		if (*fds[i] >= 0) {
			close(*fds[i]);
			*fds[i] = -1;
		}
	}
}

/* Reads one message, or EOF (returns 0); -ETIMEDOUT past @deadline. */
static int msg_read(int fd, struct launch_msg *m, uint64_t deadline)
{
	size_t got = 0;

	while (got < sizeof(*m)) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		int64_t left = (int64_t)deadline - (int64_t)ha_mono_ms();
		ssize_t n;
		int rc;

		if (left <= 0) {
			return -ETIMEDOUT;
		}
		rc = poll(&p, 1, (int)left);
		if (rc < 0 && errno != EINTR) {
			return -errno;
		}
		if (rc <= 0) {
			continue;
		}
		n = read(fd, (char *)m + got, sizeof(*m) - got);
		if (n < 0 && errno == EINTR) {
			continue;
		}
		if (n < 0) {
			return -errno;
		}
		if (n == 0) {
			return got == 0 ? 0 : -EPROTO;
		}
		got += (size_t)n;
	}
	m->what[sizeof(m->what) - 1] = '\0';
	return 1;
}

int ctr_launch(const struct ctr_ckpt_target *t, const char *console, uint64_t deadline,
	       pid_t *pid, uint64_t *starttime, char *err)
{
	struct launch *l;
	struct launch_msg m;
	uint64_t st = 0;
	pid_t a, init = 0;
	int rc, status;

	/* The launch block is large (command, paths): off the worker's stack. */
	l = malloc(sizeof(*l));
	if (l == NULL) {
		return agent_err(err, -ENOMEM, "out of memory");
	}
	rc = launch_prepare(t, console, l, err);
	if (rc < 0) {
		launch_close(l);
		free(l);
		return rc;
	}
	a = fork();
	if (a < 0) {
		rc = agent_err(err, -errno, "fork: %s", strerror(errno));
		launch_close(l);
		free(l);
		return rc;
	}
	if (a == 0) {
		child_launcher(l);
	}
	close(l->msg_wr);
	l->msg_wr = -1;
	close(l->sync_rd);
	l->sync_rd = -1;

	rc = msg_read(l->msg_rd, &m, deadline);
	while (waitpid(a, &status, 0) < 0 && errno == EINTR) {
	}
	if (rc == 1 && m.type == LAUNCH_PID && m.pid > 1) {
		init = m.pid;
		rc = 0;
	} else if (rc == 1 && m.type == LAUNCH_ERR) {
		rc = agent_err(err, -(m.err ? m.err : EIO), "starting %s: %s: %s", t->spec->name,
			       m.what, strerror(m.err));
	} else if (rc <= 0) {
		rc = agent_err(err, rc == 0 ? -ECHILD : rc, "starting %s: the launcher %s",
			       t->spec->name, rc == 0 ? "exited without a report" : "did not report");
	}
	if (rc == 0) {
		struct host_proc_stat ps;

		if (host_proc_stat_read(init, &ps) < 0) {
			rc = agent_err(err, -ESRCH, "starting %s: init %d vanished", t->spec->name,
				       (int)init);
		} else {
			st = ps.starttime;
		}
	}
	if (rc == 0 && t->spec->ip) {
		uint32_t left = (uint32_t)(deadline > ha_mono_ms() ? deadline - ha_mono_ms() : 1);

		rc = ctr_net_setup(t->spec, t->veth, init,
				   left < CTR_NET_STEP_MS ? left : CTR_NET_STEP_MS, err);
	}
	if (rc == 0) {
		char go = 'g';

		if (send(l->sync_wr, &go, 1, MSG_NOSIGNAL) != 1) {
			rc = agent_err(err, -errno, "starting %s: signalling init: %s", t->spec->name,
				       strerror(errno));
		}
		close(l->sync_wr);
		l->sync_wr = -1;
	}
	if (rc == 0) {
		/* EOF: the command was exec'd; a message: a setup step failed. */
		int r = msg_read(l->msg_rd, &m, deadline);

		if (r == 1 && m.type == LAUNCH_ERR) {
			rc = agent_err(err, -(m.err ? m.err : EIO), "starting %s: %s: %s",
				       t->spec->name, m.what, strerror(m.err));
		} else if (r < 0) {
			rc = agent_err(err, r, "starting %s: init did not exec in time",
				       t->spec->name);
		}
	}
	if (rc == 0 && !host_proc_alive(init, st)) {
		rc = agent_err(err, -ECHILD, "starting %s: init exited right after exec (see %s)",
			       t->spec->name, console);
	}
	if (rc < 0 && init > 0) {
		kill(init, SIGKILL);
	}
	if (rc == 0) {
		*pid = init;
		*starttime = st;
	}
	launch_close(l);
	free(l);
	return rc;
}
