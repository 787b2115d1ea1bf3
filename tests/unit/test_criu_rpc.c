/*
 * test_criu_rpc.c - agent/criu_rpc*.c against the real CRIU.
 *
 * Needs root and CRIU (deploy/install-criu), else exit 77 (skipped).
 * HACTL_CRIU names another criu binary. Checks:
 *  - the probe: CRIU's version (the one install-criu recorded), lazy pages,
 *    soft-dirty tracking as the kernel has it (measured here as CRIU does),
 *    a trial dump of established TCP sockets;
 *  - a checkable workload (a counter in a process's memory, written to a
 *    file as it counts) dumped (leave_running false), proven dead, restored
 *    detached: it goes on from where it was, not from 0; notifications
 *    arrive and a refusing callback makes a dump fail and the task live on;
 *  - post-copy: a lazy dump serving pages, the lazy-pages daemon and a lazy
 *    restore, the counter again continuing;
 *  - errors: a pid that does not exist (named with the log), a wrong criu
 *    path, a missing images directory;
 *  - nothing leaks: fds, children, temporary files.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sched.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "criu_rpc.h"
#include "harness.h"
#include "util.h"

#define SKIP 77

static const char *criu;
static char tmpdir[64];

/*
 * Workloads to kill should the test run out of time (no PDEATHSIG: CRIU
 * restores it, and a restored task's parent, CRIU, exits at once).
 */
#define TEST_DEADLINE_S 100
static volatile pid_t workloads[8];

static void track(pid_t pid)
{
	for (size_t i = 0; i < HA_ARRAY_SIZE(workloads); i++) {
		if (workloads[i] <= 0) {
			workloads[i] = pid;
			return;
		}
	}
}

static void on_deadline(int sig)
{
	static const char msg[] = "test_criu_rpc: out of time, killing workloads\n";

	for (size_t i = 0; i < HA_ARRAY_SIZE(workloads); i++) {
		if (workloads[i] > 0) {
			kill(workloads[i], SIGKILL);
		}
	}
	if (write(STDERR_FILENO, msg, sizeof(msg) - 1) < 0) {
		/* nothing else to do */
	}
	_exit(1);
}

/* The workload: a counter in perl's memory, written (atomically) to a
 * file 100 times a second. No children, its own session. */
static const char counter_script[] =
	"my $f = shift; my $i = 0;"
	"while (1) { $i++; open(my $h, '>', \"$f.tmp\") or die;"
	" print $h \"$i\\n\"; close $h; rename(\"$f.tmp\", $f);"
	" select(undef, undef, undef, 0.01); }";

static void msleep(unsigned ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };

	while (nanosleep(&ts, &ts) < 0 && errno == EINTR) {
	}
}

/* Soft-dirty tracking, measured the way CRIU's kerndat does. */
static bool kernel_soft_dirty(void)
{
	long psz = sysconf(_SC_PAGESIZE);
	volatile char *p = mmap(NULL, (size_t)psz, PROT_READ | PROT_WRITE,
				MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	uint64_t pme = 0;
	bool ok = false;
	int fd;

	if (p == MAP_FAILED) {
		return false;
	}
	p[0] = 1;
	fd = open("/proc/self/clear_refs", O_WRONLY | O_CLOEXEC);
	if (fd >= 0) {
		ok = write(fd, "4", 1) == 1;
		close(fd);
	}
	p[0] = 2;
	fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
	if (ok && fd >= 0) {
		off_t off = (off_t)((uintptr_t)p / (uintptr_t)psz * sizeof(pme));

		ok = pread(fd, &pme, sizeof(pme), off) == sizeof(pme) &&
		     (pme & (1ULL << 55));
	} else {
		ok = false;
	}
	if (fd >= 0) {
		close(fd);
	}
	munmap((void *)p, (size_t)psz);
	return ok;
}

/* The version install-criu recorded beside the binary, or "". */
static void installed_version(char *out, size_t n)
{
	char path[PATH_MAX];
	char *slash;
	FILE *f;

	out[0] = '\0';
	snprintf(path, sizeof(path), "%s", criu);
	for (int i = 0; i < 2; i++) {
		slash = strrchr(path, '/');
		if (slash == NULL) {
			return;
		}
		*slash = '\0';
	}
	strncat(path, "/VERSION", sizeof(path) - strlen(path) - 1);
	f = fopen(path, "re");
	if (f == NULL) {
		return;
	}
	if (fgets(out, (int)n, f) == NULL) {
		out[0] = '\0';
	}
	out[strcspn(out, "\n")] = '\0';
	fclose(f);
}

static long read_counter(const char *path)
{
	char buf[32];
	long v = -1;
	FILE *f = fopen(path, "re");

	if (f == NULL) {
		return -1;
	}
	if (fgets(buf, sizeof(buf), f) != NULL) {
		v = strtol(buf, NULL, 10);
	}
	fclose(f);
	return v;
}

/* Waits up to @ms for the counter to pass @above; returns its value. */
static long wait_counter_above(const char *path, long above, unsigned ms)
{
	long v = -1;

	for (unsigned t = 0; t < ms; t += 10) {
		v = read_counter(path);
		if (v > above) {
			break;
		}
		msleep(10);
	}
	return v;
}

static pid_t start_counter(const char *file)
{
	pid_t pid = fork();

	if (pid == 0) {
		int nul = open("/dev/null", O_RDWR);

		setsid();
		dup2(nul, 0);
		dup2(nul, 1);
		dup2(nul, 2);
		close_range(3, ~0U, 0);
		execl("/usr/bin/perl", "perl", "-e", counter_script, file,
		      (char *)NULL);
		_exit(127);
	}
	track(pid);
	return pid;
}

/*
 * The workload as init of a new pid namespace (so that a restore on this
 * same host does not collide with the dumped pid while a lazy dump still
 * holds it). *holder gets our direct child (it waits for the namespace's
 * init); returns init's pid as we see it, or -1.
 */
static pid_t start_counter_ns(const char *file, pid_t *holder)
{
	int p[2];
	pid_t init = -1;

	*holder = -1;
	if (pipe2(p, O_CLOEXEC) < 0) {
		return -1;
	}
	*holder = fork();
	if (*holder == 0) {
		pid_t c;

		if (unshare(CLONE_NEWPID) < 0) {
			_exit(1);
		}
		c = fork();
		if (c == 0) {
			int nul = open("/dev/null", O_RDWR);

			dup2(nul, 0);
			dup2(nul, 1);
			dup2(nul, 2);
			close_range(3, ~0U, 0);
			execl("/usr/bin/perl", "perl", "-e",
			      "use POSIX; POSIX::setsid(); exec('/usr/bin/perl', '-e', $ARGV[0], $ARGV[1]);",
			      counter_script, file, (char *)NULL);
			_exit(127);
		}
		if (write(p[1], &c, sizeof(c)) != sizeof(c)) {
			_exit(1);
		}
		while (waitpid(c, NULL, 0) < 0 && errno == EINTR) {
		}
		_exit(0);
	}
	close(p[1]);
	if (*holder > 0 && read(p[0], &init, sizeof(init)) != sizeof(init)) {
		init = -1;
	}
	close(p[0]);
	track(*holder);
	track(init);
	return init;
}

/* Kills a task that is (or, restored detached under us as subreaper,
 * became) our child, and reaps it. */
static void kill_reap(pid_t pid)
{
	if (pid > 0) {
		kill(pid, SIGKILL);
		while (waitpid(pid, NULL, 0) < 0 && errno == EINTR) {
		}
	}
}

static void rm_rf(const char *path)
{
	char cmd[PATH_MAX + 16];

	/* Only our own mkdtemp directory under /tmp. */
	if (strncmp(path, "/tmp/hactl-criu-test.", 21) != 0) {
		return;
	}
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", path);
	if (system(cmd) != 0) {
		fprintf(stderr, "cannot remove %s\n", path);
	}
}

struct seen {
	char scripts[512];
	pid_t post_restore_pid;
	const char *refuse;     /* script name to answer with failure */
	int status_ready_fd;    /* write end: "status-ready" arrived */
};

static int on_notify(const struct agent_criu_notify *n, void *opaque)
{
	struct seen *s = opaque;
	size_t len = strlen(s->scripts);

	snprintf(s->scripts + len, sizeof(s->scripts) - len, "%s,", n->script);
	if (strcmp(n->script, "post-restore") == 0) {
		s->post_restore_pid = n->pid;
	}
	if (strcmp(n->script, "status-ready") == 0 && s->status_ready_fd >= 0) {
		if (write(s->status_ready_fd, "r", 1) != 1) {
			return -1;
		}
	}
	if (s->refuse != NULL && strcmp(n->script, s->refuse) == 0) {
		return -1;
	}
	return 0;
}

static void test_probe(void)
{
	struct agent_criu_caps caps;
	char err[512], want[32];
	int ret;

	ret = agent_criu_probe(criu, &caps, err, sizeof(err));
	CHECK_EQ_INT(ret, 0);
	if (ret < 0) {
		fprintf(stderr, "probe: %s\n", err);
		return;
	}
	printf("probe: version %s present %d mem_dirty_track %d lazy_pages %d inet_dump_ok %d%s%s\n",
	       caps.version, caps.present, caps.mem_dirty_track, caps.lazy_pages,
	       caps.inet_dump_ok, err[0] ? ": " : "", err);
	CHECK(caps.present);
	installed_version(want, sizeof(want));
	if (want[0] != '\0') {
		CHECK(strcmp(caps.version, want) == 0);
	}
	CHECK(strncmp(caps.version, "4.", 2) == 0 || caps.version[0] > '4');
	CHECK(caps.lazy_pages);
	CHECK_EQ_INT(caps.mem_dirty_track, kernel_soft_dirty());
	CHECK(caps.inet_dump_ok);
}

static void test_errors(void)
{
	char err[512], img[PATH_MAX], want[64];
	struct agent_criu_caps caps;
	struct agent_criu_dump_opts d = { 0 };
	pid_t ghost = 0;
	FILE *f;
	long pid_max = 32768;
	int ret;

	snprintf(img, sizeof(img), "%s/err-img", tmpdir);
	CHECK_EQ_INT(mkdir(img, 0700), 0);

	/* A pid that does not exist. */
	f = fopen("/proc/sys/kernel/pid_max", "re");
	if (f != NULL) {
		if (fscanf(f, "%ld", &pid_max) != 1) {
			pid_max = 32768;
		}
		fclose(f);
	}
	for (long p = pid_max - 1; p > 300; p--) {
		if (kill((pid_t)p, 0) < 0 && errno == ESRCH) {
			ghost = (pid_t)p;
			break;
		}
	}
	CHECK(ghost > 0);
	d.c.images_dir = img;
	d.pid = ghost;
	ret = agent_criu_dump(criu, &d, err, sizeof(err));
	printf("dump of a missing pid: %d: %s\n", ret, err);
	CHECK(ret < 0);
	snprintf(want, sizeof(want), "pid %d", (int)ghost);
	CHECK(strstr(err, want) != NULL);
	CHECK(strstr(err, "dump.log") != NULL);
	CHECK(strstr(err, img) != NULL);

	/* A wrong criu path. */
	ret = agent_criu_dump("/nonexistent/criu", &d, err, sizeof(err));
	printf("wrong criu path: %d: %s\n", ret, err);
	CHECK_EQ_INT(ret, -ENOENT);
	CHECK(strstr(err, "/nonexistent/criu") != NULL);
	ret = agent_criu_probe("/nonexistent/criu", &caps, err, sizeof(err));
	CHECK_EQ_INT(ret, -ENOENT);
	CHECK(!caps.present);
	CHECK(strstr(err, "/nonexistent/criu") != NULL);

	/* Not a criu at all: /bin/true exits without answering. */
	ret = agent_criu_dump("/bin/true", &d, err, sizeof(err));
	printf("not a criu: %d: %s\n", ret, err);
	CHECK(ret < 0);
	CHECK(strstr(err, "without an answer") != NULL);

	/* A missing images directory. */
	d.c.images_dir = "/nonexistent/images";
	ret = agent_criu_dump(criu, &d, err, sizeof(err));
	printf("missing images dir: %d: %s\n", ret, err);
	CHECK_EQ_INT(ret, -ENOENT);
	CHECK(strstr(err, "/nonexistent/images") != NULL);

	/* Options checked before CRIU runs. */
	d.c.images_dir = img;
	d.c.log_file = "../x.log";
	CHECK_EQ_INT(agent_criu_dump(criu, &d, err, sizeof(err)), -EINVAL);
	d.c.log_file = NULL;
	d.pid = 0;
	CHECK_EQ_INT(agent_criu_dump(criu, &d, err, sizeof(err)), -EINVAL);
}

/* Dump (the task dies), restore detached, the counter goes on. */
static void test_dump_restore(void)
{
	char img[PATH_MAX], file[PATH_MAX], err[512];
	struct seen seen = { .status_ready_fd = -1 };
	struct agent_criu_dump_opts d = { 0 };
	struct agent_criu_restore_opts r = { 0 };
	pid_t pid, rpid = 0;
	long before, at_dump, after;
	int status = 0, ret;

	snprintf(img, sizeof(img), "%s/img", tmpdir);
	snprintf(file, sizeof(file), "%s/counter", tmpdir);
	CHECK_EQ_INT(mkdir(img, 0700), 0);

	pid = start_counter(file);
	CHECK(pid > 0);
	before = wait_counter_above(file, 20, 10000);
	CHECK(before > 20);

	d.c.images_dir = img;
	d.c.notify = on_notify;
	d.c.notify_opaque = &seen;
	d.pid = pid;
	ret = agent_criu_dump(criu, &d, err, sizeof(err));
	CHECK_EQ_INT(ret, 0);
	if (ret < 0) {
		fprintf(stderr, "dump: %s\n", err);
		kill_reap(pid);
		return;
	}
	printf("dump notifications: %s\n", seen.scripts);
	CHECK(strstr(seen.scripts, "post-dump,") != NULL);
	/* CRIU killed it: reap it (its pid must be free for the restore). */
	CHECK_EQ_INT(waitpid(pid, &status, 0), pid);
	CHECK(WIFSIGNALED(status));
	at_dump = read_counter(file);
	msleep(200);
	CHECK_EQ_INT(read_counter(file), at_dump);
	CHECK(at_dump >= before);

	r.c.images_dir = img;
	r.c.notify = on_notify;
	r.c.notify_opaque = &seen;
	r.restore_detached = true;
	seen.scripts[0] = '\0';
	ret = agent_criu_restore(criu, &r, &rpid, err, sizeof(err));
	CHECK_EQ_INT(ret, 0);
	if (ret < 0) {
		fprintf(stderr, "restore: %s\n", err);
		return;
	}
	printf("restore notifications: %s\n", seen.scripts);
	track(rpid);
	CHECK_EQ_INT(rpid, pid);
	CHECK_EQ_INT(seen.post_restore_pid, pid);
	after = wait_counter_above(file, at_dump, 10000);
	printf("counter: %ld before the dump, %ld at the dump, %ld after the restore\n",
	       before, at_dump, after);
	/* It continues: above the dumped value, far from a restart at 0. */
	CHECK(after > at_dump);
	CHECK(after <= at_dump + 1000);

	/* A notify callback that refuses makes the dump fail; the task lives. */
	seen.scripts[0] = '\0';
	seen.refuse = "post-dump";
	d.c.images_dir = img;
	d.c.log_file = "refused.log";
	ret = agent_criu_dump(criu, &d, err, sizeof(err));
	printf("refused dump: %d: %s\n", ret, err);
	CHECK(ret < 0);
	CHECK(strstr(err, "refused.log") != NULL);
	after = read_counter(file);
	CHECK(wait_counter_above(file, after + 5, 10000) > after + 5);
	kill_reap(rpid);
}

/* Pre-copy's transport: a dump sends its pages to a page server. */
static void test_page_server(void)
{
	char img[PATH_MAX], psdir[PATH_MAX], file[PATH_MAX], err[512];
	struct agent_criu_ps_opts po = { 0 };
	struct agent_criu_dump_opts d = { 0 };
	pid_t pid, ps_pid = 0;
	uint16_t port = 0;
	struct dirent *de;
	bool pages = false;
	DIR *dir;
	int ret;

	snprintf(img, sizeof(img), "%s/ps-img", tmpdir);
	snprintf(psdir, sizeof(psdir), "%s/ps-recv", tmpdir);
	snprintf(file, sizeof(file), "%s/ps-counter", tmpdir);
	CHECK_EQ_INT(mkdir(img, 0700), 0);
	CHECK_EQ_INT(mkdir(psdir, 0700), 0);

	po.c.images_dir = psdir;
	po.address = "127.0.0.1";
	ret = agent_criu_page_server(criu, &po, &ps_pid, &port, err, sizeof(err));
	CHECK_EQ_INT(ret, 0);
	if (ret < 0) {
		fprintf(stderr, "page server: %s\n", err);
		return;
	}
	printf("page server: pid %d port %u\n", (int)ps_pid, port);
	CHECK(ps_pid > 0 && port > 0);

	pid = start_counter(file);
	CHECK(wait_counter_above(file, 5, 10000) > 5);
	d.c.images_dir = img;
	d.pid = pid;
	d.leave_running = true;
	d.ps_address = "127.0.0.1";
	d.ps_port = port;
	ret = agent_criu_dump(criu, &d, err, sizeof(err));
	CHECK_EQ_INT(ret, 0);
	if (ret < 0) {
		fprintf(stderr, "dump to the page server: %s\n", err);
		kill(ps_pid, SIGTERM);
	}
	/* The server ends with the dump's session. */
	CHECK_EQ_INT(agent_criu_child_wait(ps_pid, 30 * 1000, err, sizeof(err)), 0);
	dir = opendir(psdir);
	while (dir != NULL && (de = readdir(dir)) != NULL) {
		pages |= strncmp(de->d_name, "pages-", 6) == 0;
	}
	if (dir != NULL) {
		closedir(dir);
	}
	CHECK(pages);
	/* leave_running: it still counts. */
	CHECK(wait_counter_above(file, read_counter(file) + 3, 10000) > 0);
	kill_reap(pid);
}

/* A TCP port on 127.0.0.1 free right now, 0 if none. */
static uint16_t free_port(void)
{
	struct sockaddr_in a = { .sin_family = AF_INET };
	socklen_t len = sizeof(a);
	uint16_t port = 0;
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0 &&
	    getsockname(fd, (struct sockaddr *)&a, &len) == 0) {
		port = ntohs(a.sin_port);
	}
	if (fd >= 0) {
		close(fd);
	}
	return port;
}

/* Post-copy: lazy dump serving pages, lazy-pages daemon, lazy restore. */
struct lazy_dump {
	struct agent_criu_dump_opts o;
	int ret;
	char err[512];
};

static void *lazy_dump_thread(void *arg)
{
	struct lazy_dump *ld = arg;

	ld->ret = agent_criu_dump(criu, &ld->o, ld->err, sizeof(ld->err));
	return NULL;
}

static void test_lazy(void)
{
	char img[PATH_MAX], work[PATH_MAX], file[PATH_MAX], err[512];
	struct seen seen = { .status_ready_fd = -1 };
	struct agent_criu_lazy_opts lo = { 0 };
	struct agent_criu_restore_opts r = { 0 };
	struct lazy_dump ld = { .ret = -1 };
	pthread_t th;
	pid_t pid, holder, lpid = 0, rpid = 0;
	long at_dump, after;
	int rp[2], status, ret;
	char c;

	snprintf(img, sizeof(img), "%s/lazy-img", tmpdir);
	snprintf(work, sizeof(work), "%s/lazy-work", tmpdir);
	snprintf(file, sizeof(file), "%s/lazy-counter", tmpdir);
	CHECK_EQ_INT(mkdir(img, 0700), 0);
	CHECK_EQ_INT(mkdir(work, 0700), 0);
	CHECK_EQ_INT(pipe2(rp, O_CLOEXEC), 0);
	seen.status_ready_fd = rp[1];

	pid = start_counter_ns(file, &holder);
	CHECK(pid > 0);
	if (pid <= 0) {
		kill_reap(holder);
		goto out;
	}
	CHECK(wait_counter_above(file, 20, 10000) > 20);

	ld.o.c.images_dir = img;
	ld.o.c.notify = on_notify;
	ld.o.c.notify_opaque = &seen;
	ld.o.c.timeout_ms = 30 * 1000;
	ld.o.pid = pid;
	ld.o.lazy_pages = true;
	ld.o.ps_address = "127.0.0.1";
	ld.o.ps_port = free_port();
	CHECK(ld.o.ps_port > 0);
	CHECK_EQ_INT(pthread_create(&th, NULL, lazy_dump_thread, &ld), 0);

	/* "status-ready": images written, pages served on ps_port; the
	 * dumped task stays (stopped) until the pages are all fetched. */
	{
		struct pollfd p = { .fd = rp[0], .events = POLLIN };

		ret = poll(&p, 1, 30 * 1000) == 1 && read(rp[0], &c, 1) == 1 ? 0 : -1;
	}
	CHECK_EQ_INT(ret, 0);
	if (ret < 0) {
		kill(pid, SIGKILL);
		pthread_join(th, NULL);
		fprintf(stderr, "lazy dump: %s\n", ld.err);
		kill_reap(holder);
		goto out;
	}
	at_dump = read_counter(file);

	lo.c.images_dir = img;
	lo.c.work_dir = work;
	lo.address = "127.0.0.1";
	lo.port = ld.o.ps_port;
	ret = agent_criu_lazy_pages(criu, &lo, &lpid, err, sizeof(err));
	CHECK_EQ_INT(ret, 0);
	if (ret < 0) {
		fprintf(stderr, "lazy-pages: %s\n", err);
	} else {
		r.c.images_dir = img;
		r.c.work_dir = work;
		r.restore_detached = true;
		r.lazy_pages = true;
		ret = agent_criu_restore(criu, &r, &rpid, err, sizeof(err));
		CHECK_EQ_INT(ret, 0);
		if (ret < 0) {
			fprintf(stderr, "lazy restore: %s\n", err);
		}
		CHECK_EQ_INT(agent_criu_child_wait(lpid, 30 * 1000, err, sizeof(err)), 0);
	}
	if (ret < 0) {
		/* Nobody fetches the pages: end the lazy dump. */
		kill(pid, SIGKILL);
	}
	pthread_join(th, NULL);
	CHECK_EQ_INT(ld.ret, 0);
	if (ld.ret < 0) {
		fprintf(stderr, "lazy dump: %s\n", ld.err);
	}
	/* The dumped init is gone now; its holder exits. */
	CHECK_EQ_INT(waitpid(holder, &status, 0), holder);
	if (rpid > 0) {
		track(rpid);
		after = wait_counter_above(file, at_dump, 10000);
		printf("lazy: counter %ld at the dump, %ld after the restore\n",
		       at_dump, after);
		CHECK(after > at_dump && after <= at_dump + 1000);
		kill_reap(rpid);
	}
out:
	close(rp[0]);
	close(rp[1]);
}

/*
 * The decoder on the fuzz seeds (tests/fuzz/corpus/criu_resp): "bad-*"
 * are rejected, the others decode. Needs neither root nor CRIU.
 */
static void test_decode_seeds(void)
{
	const char *src = getenv("HA_SRC_DIR");
	char dirpath[PATH_MAX], path[PATH_MAX * 2];
	struct agent_criu_resp r;
	struct dirent *de;
	uint8_t buf[4096];
	int n = 0;
	DIR *dir;

	if (src == NULL) {
		return;
	}
	snprintf(dirpath, sizeof(dirpath), "%s/tests/fuzz/corpus/criu_resp", src);
	dir = opendir(dirpath);
	if (dir == NULL) {
		/* fuzz.fuzz_criu_resp.replay reads the corpus too */
		printf("decoder: %s: %s, not checked here\n", dirpath, strerror(errno));
		return;
	}
	while (dir != NULL && (de = readdir(dir)) != NULL) {
		FILE *f;
		size_t len;
		int ret;

		if (de->d_name[0] == '.') {
			continue;
		}
		snprintf(path, sizeof(path), "%s/%s", dirpath, de->d_name);
		f = fopen(path, "rbe");
		CHECK(f != NULL);
		if (f == NULL) {
			continue;
		}
		len = fread(buf, 1, sizeof(buf), f);
		fclose(f);
		ret = agent_criu_resp_decode(buf, len, &r);
		if (ret == -ENOTSUP) {
			break;
		}
		if (strncmp(de->d_name, "bad-", 4) == 0) {
			CHECK_EQ_INT(ret, -EBADMSG);
		} else {
			CHECK_EQ_INT(ret, 0);
		}
		if (strcmp(de->d_name, "version-4.2.1") == 0) {
			CHECK(r.has_version && r.version_major == 4 &&
			      r.version_minor == 2 && r.version_sublevel == 1);
		} else if (strcmp(de->d_name, "notify-post-restore") == 0) {
			CHECK(strcmp(r.script, "post-restore") == 0 && r.notify_pid == 1234);
		} else if (strcmp(de->d_name, "dump-failed") == 0) {
			/* the trailing newline is cut */
			CHECK(!r.success && r.cr_errno == 3 &&
			      r.errmsg[strlen(r.errmsg) - 1] == 's');
		} else if (strcmp(de->d_name, "odd-errmsg-binary") == 0) {
			CHECK(strcmp(r.errmsg, "?[31m???A") == 0);
		} else if (strcmp(de->d_name, "page-server") == 0) {
			CHECK(r.ps_pid == 77 && r.ps_port == 41771);
		}
		n++;
	}
	if (dir != NULL) {
		closedir(dir);
	}
	printf("decoder: %d seeds checked\n", n);
	CHECK_EQ_INT(agent_criu_resp_decode(buf, AGENT_CRIU_MAX_MSG + 1, &r),
		     n ? -EMSGSIZE : -ENOTSUP);
}

int main(void)
{
	struct agent_criu_caps caps;
	char err[512];
	int fds_before, fds_after, ret;

	setvbuf(stdout, NULL, _IOLBF, 0);
	criu = getenv("HACTL_CRIU") ? getenv("HACTL_CRIU") : AGENT_CRIU_DEFAULT_PATH;
	test_decode_seeds();
	if (geteuid() != 0) {
		printf("SKIP: CRIU needs root\n");
		return ha_test_failures ? ha_test_done("test_criu_rpc") : SKIP;
	}
	if (access(criu, X_OK) != 0) {
		printf("SKIP: no CRIU at %s (deploy/install-criu)\n", criu);
		return ha_test_failures ? ha_test_done("test_criu_rpc") : SKIP;
	}
	ret = agent_criu_check_features(criu, NULL, NULL, err, sizeof(err));
	if (ret == -ENOTSUP) {
		printf("SKIP: %s\n", err);
		return ha_test_failures ? ha_test_done("test_criu_rpc") : SKIP;
	}
	signal(SIGALRM, on_deadline);
	alarm(TEST_DEADLINE_S);
	/* Restored detached trees are reparented to us, so we reap them. */
	prctl(PR_SET_CHILD_SUBREAPER, 1);
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/hactl-criu-test.XXXXXX");
	if (mkdtemp(tmpdir) == NULL) {
		perror("mkdtemp");
		return 1;
	}
	fds_before = ha_test_count_fds();

	test_probe();
	test_errors();
	test_dump_restore();
	test_page_server();
	if (agent_criu_probe(criu, &caps, err, sizeof(err)) == 0 && caps.lazy_pages) {
		test_lazy();
	}

	fds_after = ha_test_count_fds();
	CHECK_EQ_INT(fds_after, fds_before);
	/* No child left behind: CRIU reaped, workloads reaped. */
	CHECK(waitpid(-1, NULL, WNOHANG) < 0 && errno == ECHILD);
	rm_rf(tmpdir);
	return ha_test_done("test_criu_rpc");
}
