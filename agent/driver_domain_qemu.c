/*
 * driver_domain_qemu.c - running QEMU for the domain driver: the
 * accelerator (TCG, or KVM after a boot probe), QEMU's command line, built
 * in one place for every start (a boot, a restore, an incoming
 * migration), the daemonized launch with its run-dir record and cgroup,
 * QEMU's logs, and the QMP steps the other sections share (see
 * driver_domain.h).
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>

#include "driver.h"
#include "driver_domain.h"
#include "host_cgroup.h"
#include "host_net.h"
#include "ha_spawn.h"
#include "host_proc.h"
#include "qmp_client.h"
#include "util.h"

extern char **environ;

#define DOM_MEM_PAD_KIB 4          /* see driver_domain.c's opening comment */
#define DOM_QUIT_MS 3000           /* QMP quit until the process is gone */
#define DOM_KILL_MS 3000
#define DOM_PROBE_MS 15000         /* KVM boot probe */
#define DOM_QMP_FD 3               /* the monitor's listening socket in QEMU */
#define DOM_CONSOLE_FD 4           /* the serial console's listening socket */

/* ---- cgroups (the host layer's, host_cgroup.h) ------------------------ */

/* CPU weight and limit only: QEMU's own threads count against pids.max
 * and its overhead (TCG translation cache) against a memory limit, so
 * neither is set. */
static int cgroup_setup(struct agent_guest *g, pid_t pid, char *err)
{
	struct agent_guest_spec s = { .name = g->name, .cpu_weight = g->cpu_weight,
				      .cpu_limit_pct = g->cpu_limit_pct };
	char files[8][HOST_CG_PATH];
	char v[32];
	unsigned n;
	int rc;

	if (!g->cg_ok) {
		return g->cpu_limit_pct ? agent_err(err, -ENOTSUP,
						    "domain %s: no cgroups for cpu_limit", g->name) : 0;
	}
	rc = host_cgroup_create(&g->cg, &s, err);
	if (rc < 0) {
		return rc;
	}
	n = host_cgroup_procs_files(&g->cg, files, HA_ARRAY_SIZE(files));
	snprintf(v, sizeof(v), "%d", (int)pid);
	for (unsigned i = 0; i < n; i++) {
		rc = host_write_str(files[i], v);
		if (rc < 0) {
			return agent_err(err, rc, "domain %s: %s: %s", g->name, files[i],
					 strerror(-rc));
		}
	}
	return 0;
}

static void cgroup_cleanup(struct agent_guest *g)
{
	if (g->cg_ok) {
		host_cgroup_remove(&g->cg, 2000, NULL);
	}
}

/* ---- the accelerator ---------------------------------------------------- */

/*
 * KVM is used only when asked for ([agent] domain_accel = kvm or auto in
 * hactl.conf, or $HACTL_DOMAIN_ACCEL, which overrides it) and
 * the kernel boots under it: a KVM that creates a vCPU may still not boot
 * a stock kernel (nested or paravirtual KVMs), so the probe boots the
 * domain's own kernel without an initramfs and waits for the panic that
 * says it got as far as mounting a root file system. Verdicts are kept per
 * kernel file (device, inode, mtime) for the life of the process.
 */
enum dom_accel_mode {
	DOM_ACCEL_TCG = 0,
	DOM_ACCEL_KVM,
	DOM_ACCEL_AUTO,
	DOM_ACCEL_MODE_MAX
};

static const char *const accel_mode_names[DOM_ACCEL_MODE_MAX] = {
	[DOM_ACCEL_TCG] = "tcg", [DOM_ACCEL_KVM] = "kvm", [DOM_ACCEL_AUTO] = "auto",
};

static const char *dom_accel_mode_str(enum dom_accel_mode m)
{
	return (unsigned)m < DOM_ACCEL_MODE_MAX ? accel_mode_names[m] : "unknown";
}

/* Exposed for the unit test: the accelerator mode ("tcg", "kvm", "auto")
 * from [agent] domain_accel (@conf; NULL or "" = tcg) and
 * $HACTL_DOMAIN_ACCEL (@env; NULL or "" = unset), which wins when set.
 * Returns the mode's index or -EINVAL with the reason in @err. */
int agent_domain_accel_mode(const char *conf, const char *env, char *err, size_t errlen);

int agent_domain_accel_mode(const char *conf, const char *env, char *err, size_t errlen)
{
	const char *v = env && env[0] ? env : conf;

	if (v == NULL || v[0] == 0) {
		return DOM_ACCEL_TCG;
	}
	for (int m = 0; m < DOM_ACCEL_MODE_MAX; m++) {
		if (strcmp(v, accel_mode_names[m]) == 0) {
			return m;
		}
	}
	snprintf(err, errlen, "%s '%s' is not one of tcg, kvm, auto",
		 v == env ? "$HACTL_DOMAIN_ACCEL" : "[agent] domain_accel", v);
	return -EINVAL;
}

static int accel_mode(const struct agent_guest *g, enum dom_accel_mode *mode, char *err)
{
	char why[160];
	int m = agent_domain_accel_mode(g->d && g->d->cfg ? g->d->cfg->domain_accel : NULL,
					getenv("HACTL_DOMAIN_ACCEL"), why, sizeof(why));

	if (m < 0) {
		return agent_err(err, m, "domain %s: %s", g->name, why);
	}
	*mode = (enum dom_accel_mode)m;
	return 0;
}

#define PROBE_CACHE 8

static struct {
	pthread_mutex_t lock;
	unsigned n;
	struct {
		dev_t dev;
		ino_t ino;
		struct timespec mtime;
		bool ok;
	} e[PROBE_CACHE];
} probe_cache = { .lock = PTHREAD_MUTEX_INITIALIZER };

static int kvm_boot_probe(const struct agent_guest *g, char *why, size_t whylen)
{
	_cleanup_free_ struct dom_argv *a = calloc(1, sizeof(*a));
	char buf[16384];
	struct ha_spawn sp = { .out = buf, .out_len = sizeof(buf), .err = HA_SPAWN_ERR_TO_OUT,
			       .timeout_ms = DOM_PROBE_MS };
	struct ha_spawn_result r;
	int rc;

	if (access("/dev/kvm", R_OK | W_OK) < 0) {
		snprintf(why, whylen, "/dev/kvm: %s", strerror(errno));
		return -ENODEV;
	}
	if (a == NULL) {
		return -ENOMEM;
	}
	rc = dom_qemu_argv(g, DOM_QEMU_PROBE, "kvm", DOM_MACHINE, a, NULL);
	if (rc < 0) {
		snprintf(why, whylen, "command line: %s", strerror(-rc));
		return rc;
	}
	buf[0] = 0;
	sp.argv = (char *const *)a->v;
	rc = ha_spawn_run(&sp, &r);
	if (rc == -ETIMEDOUT) {
		snprintf(why, whylen, "the kernel did not boot under KVM within %d ms",
			 DOM_PROBE_MS);
		return rc;
	}
	if (rc < 0 || r.exit_code == 127) {
		snprintf(why, whylen, "cannot run %s: %s", g->qemu,
			 strerror(rc < 0 ? -rc : ENOENT));
		return rc < 0 ? rc : -ENOENT;
	}
	if (strstr(buf, "Kernel panic") || strstr(buf, "Unable to mount root")) {
		return 0;
	}
	snprintf(why, whylen, "QEMU with KVM exited (status %d) before the kernel booted",
		 r.exit_code);
	return -ENODEV;
}

/* Picks "tcg" or "kvm" for @g into @accel. */
static int accel_pick(const struct agent_guest *g, char *accel, size_t len, char *err)
{
	enum dom_accel_mode mode = DOM_ACCEL_TCG;
	char why[160] = "";
	struct stat st;
	bool ok = false, known = false;
	int rc = accel_mode(g, &mode, err);

	if (rc < 0) {
		return rc;
	}
	if (mode == DOM_ACCEL_TCG) {
		snprintf(accel, len, "tcg");
		return 0;
	}
	if (stat(g->kernel, &st) < 0) {
		return agent_err(err, -errno, "domain %s: kernel %s: %s", g->name, g->kernel,
				 strerror(errno));
	}
	pthread_mutex_lock(&probe_cache.lock);
	for (unsigned i = 0; i < probe_cache.n; i++) {
		if (probe_cache.e[i].dev == st.st_dev && probe_cache.e[i].ino == st.st_ino &&
		    probe_cache.e[i].mtime.tv_sec == st.st_mtim.tv_sec &&
		    probe_cache.e[i].mtime.tv_nsec == st.st_mtim.tv_nsec) {
			ok = probe_cache.e[i].ok;
			known = true;
		}
	}
	pthread_mutex_unlock(&probe_cache.lock);
	if (!known) {
		ok = kvm_boot_probe(g, why, sizeof(why)) == 0;
		pthread_mutex_lock(&probe_cache.lock);
		unsigned i = probe_cache.n < PROBE_CACHE ? probe_cache.n++ : 0;

		probe_cache.e[i].dev = st.st_dev;
		probe_cache.e[i].ino = st.st_ino;
		probe_cache.e[i].mtime = st.st_mtim;
		probe_cache.e[i].ok = ok;
		pthread_mutex_unlock(&probe_cache.lock);
	}
	if (ok) {
		snprintf(accel, len, "kvm");
		return 0;
	}
	if (mode == DOM_ACCEL_KVM) {
		return agent_err(err, -ENODEV, "domain %s: accel %s asked for, KVM unusable: %s",
				 g->name, dom_accel_mode_str(mode),
				 why[0] ? why : "an earlier boot probe failed");
	}
	snprintf(accel, len, "tcg");
	return 0;
}

/* ---- running QEMU ------------------------------------------------------ */

/*
 * Starts @argv with stdin on /dev/null, stdout and stderr appended to
 * @log_path, the listening sockets @qmp_fd as fd 3 and @console_fd as fd 4,
 * default signal dispositions and an empty signal mask (the agent blocks
 * signals for its signalfd).
 */
static int spawn(const char *const argv[], const char *log_path, int qmp_fd, int console_fd,
		 pid_t *pid, char *err)
{
	posix_spawn_file_actions_t fa;
	posix_spawnattr_t at;
	sigset_t none, all;
	int high[2] = { -1, -1 }, rc;

	/* above 0-4, so that the actions below cannot clobber them */
	high[0] = fcntl(qmp_fd, F_DUPFD_CLOEXEC, 10);
	high[1] = high[0] < 0 ? -1 : fcntl(console_fd, F_DUPFD_CLOEXEC, 10);
	if (high[1] < 0) {
		rc = -errno;
		if (high[0] >= 0) {
			close(high[0]);
		}
		return agent_err(err, rc, "fcntl: %s", strerror(-rc));
	}
	sigemptyset(&none);
	sigfillset(&all);
	posix_spawn_file_actions_init(&fa);
	posix_spawnattr_init(&at);
	posix_spawn_file_actions_adddup2(&fa, high[0], DOM_QMP_FD);
	posix_spawn_file_actions_adddup2(&fa, high[1], DOM_CONSOLE_FD);
	posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
	posix_spawn_file_actions_addopen(&fa, 1, log_path, O_WRONLY | O_CREAT | O_APPEND,
					 0600);
	posix_spawn_file_actions_adddup2(&fa, 1, 2);
	posix_spawnattr_setsigmask(&at, &none);
	posix_spawnattr_setsigdefault(&at, &all);
	posix_spawnattr_setflags(&at, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF |
				 POSIX_SPAWN_SETPGROUP);
	rc = posix_spawnp(pid, argv[0], &fa, &at, (char *const *)argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	posix_spawnattr_destroy(&at);
	close(high[0]);
	close(high[1]);
	if (rc != 0) {
		return agent_err(err, -rc, "cannot run %s: %s", argv[0], strerror(rc));
	}
	return 0;
}

/* Drops the "TIMESTAMP " (-msg timestamp=on) and "PROGRAM: " QEMU puts
 * in front of a message. */
static const char *msg_body(const char *line)
{
	const char *p = line, *q;

	if (*p >= '0' && *p <= '9' && (q = strchr(p, ' ')) != NULL && q[-1] == 'Z') {
		p = q + 1;
	}
	if (strncmp(p, "qemu", 4) == 0 && (q = strstr(p, ": ")) != NULL) {
		p = q + 2;
	}
	return p;
}

/* The last two non-empty lines of one of QEMU's logs, "FIRST; SECOND". */
void dom_file_tail(const char *path, off_t from, char *out, size_t len)
{
	char buf[4096];
	const char *lines[2] = { NULL, NULL };
	char *p, *save = NULL;
	ssize_t n;
	off_t size;
	int fd;

	out[0] = 0;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		return;
	}
	size = lseek(fd, 0, SEEK_END);
	if (size > (off_t)sizeof(buf) - 1 && size - (off_t)sizeof(buf) + 1 > from) {
		from = size - (off_t)sizeof(buf) + 1;
	}
	n = size < 0 || from >= size ? -1 : pread(fd, buf, sizeof(buf) - 1, from);
	close(fd);
	if (n <= 0) {
		return;
	}
	buf[n] = 0;
	for (char *c = buf; *c; c++) {
		if (*c != '\n' && (unsigned char)*c < 0x20) {
			*c = ' ';
		}
	}
	for (p = strtok_r(buf, "\n", &save); p; p = strtok_r(NULL, "\n", &save)) {
		if (*msg_body(p)) {
			lines[0] = lines[1];
			lines[1] = p;
		}
	}
	if (lines[1] == NULL) {
		return;
	}
	if (lines[0]) {
		snprintf(out, len, "%s; %s", msg_body(lines[0]), msg_body(lines[1]));
	} else {
		snprintf(out, len, "%s", msg_body(lines[1]));
	}
}

/* What QEMU last complained about: the daemon's log (-D, its stderr once
 * daemonized), else what it printed while starting. */
void dom_log_tail(const struct agent_guest *g, char *out, size_t len)
{
	char path[PATH_MAX];

	out[0] = 0;
	if (dom_rec_path(g, "qemu.log", path, sizeof(path)) == 0) {
		dom_file_tail(path, 0, out, len);
	}
	if (out[0] == 0 && dom_rec_path(g, "qemu-start.log", path, sizeof(path)) == 0) {
		dom_file_tail(path, 0, out, len);
	}
}

/* Appends @s to @out with QEMU's option escaping (a comma is doubled). */
static int opt_escape(char *out, size_t len, const char *prefix, const char *s,
		      const char *suffix)
{
	size_t o = 0;

	for (const char *p = prefix; *p && o + 1 < len; p++) {
		out[o++] = *p;
	}
	for (const char *p = s; *p && o + 2 < len; p++) {
		out[o++] = *p;
		if (*p == ',') {
			out[o++] = ',';
		}
	}
	for (const char *p = suffix; *p && o + 1 < len; p++) {
		out[o++] = *p;
	}
	if (o + 1 >= len) {
		return -ENAMETOOLONG;
	}
	out[o] = 0;
	return 0;
}

/*
 * hactl.cmd per docs/templates.md: the words of spec->command joined by
 * commas, every byte outside [A-Za-z0-9._/:=+@-] as %XX.
 */
static int cmd_encode(const char *cmd, char *out, size_t len)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t o = 0;
	bool in_word = false, any = false;

	for (const char *p = cmd; *p; p++) {
		unsigned char c = (unsigned char)*p;

		if (c == ' ' || c == '\t' || c == '\n') {
			in_word = false;
			continue;
		}
		if (!in_word && any) {
			if (o + 1 >= len) {
				return -E2BIG;
			}
			out[o++] = ',';
		}
		in_word = any = true;
		if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
		    strchr("._/:=+@-", c)) {
			if (o + 1 >= len) {
				return -E2BIG;
			}
			out[o++] = (char)c;
		} else {
			if (o + 3 >= len) {
				return -E2BIG;
			}
			out[o++] = '%';
			out[o++] = hex[c >> 4];
			out[o++] = hex[c & 15];
		}
	}
	if (o >= len) {
		return -E2BIG;
	}
	out[o] = 0;
	return 0;
}

/* Exposed for the unit test: the kernel command line of a domain (every
 * argument may be NULL). */
int agent_domain_cmdline(const char *name, const char *ip, const char *gw, const char *cmd,
		       char *out, size_t len);

int agent_domain_cmdline(const char *name, const char *ip, const char *gw, const char *cmd,
		       char *out, size_t len)
{
	char enc[DOM_CMDLINE_MAX] = "";
	int n;

	if (cmd && cmd_encode(cmd, enc, sizeof(enc)) < 0) {
		return -E2BIG;
	}
	n = snprintf(out, len, "console=ttyS0 quiet%s%s%s%s%s%s%s%s",
		     name && name[0] ? " hactl.hostname=" : "", name && name[0] ? name : "",
		     ip && ip[0] ? " hactl.ip=" : "", ip && ip[0] ? ip : "",
		     gw && gw[0] ? " hactl.gw=" : "", gw && gw[0] ? gw : "",
		     enc[0] ? " hactl.cmd=" : "", enc);
	if (n < 0 || (size_t)n >= len || (size_t)n >= DOM_CMDLINE_MAX) {
		return -E2BIG;
	}
	return 0;
}

/* Reads the disk image's format from its first bytes. */
const char *dom_disk_format(const char *path)
{
	unsigned char m[4] = { 0 };
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	ssize_t n = fd >= 0 ? pread(fd, m, sizeof(m), 0) : -1;

	if (fd >= 0) {
		close(fd);
	}
	return n == 4 && m[0] == 'Q' && m[1] == 'F' && m[2] == 'I' && m[3] == 0xfb ? "qcow2" :
									     "raw";
}

/* Binds and listens on run_dir/@name (qmp.sock, console.sock; through the
 * directory's fd when the path is too long for sun_path). Returns the
 * socket or -errno. */
static int sock_listen(const struct agent_guest *g, const char *name, char *err)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	char path[PATH_MAX];
	int dfd, fd, rc = 0;

	dfd = open(g->run_dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0) {
		return agent_err(err, -errno, "domain %s: %s: %s", g->name, g->run_dir,
				 strerror(errno));
	}
	if (dom_rec_path(g, name, path, sizeof(path)) == 0 && strlen(path) < sizeof(sa.sun_path)) {
		snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	} else {
		snprintf(sa.sun_path, sizeof(sa.sun_path), "/proc/self/fd/%d/%s", dfd, name);
	}
	unlinkat(dfd, name, 0);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(fd, 8) < 0) {
		rc = agent_err(err, -errno, "domain %s: socket %s in %s: %s", g->name, name,
			       g->run_dir, strerror(errno));
		if (fd >= 0) {
			close(fd);
		}
	}
	close(dfd);
	return rc < 0 ? rc : fd;
}

/* Adds one word to @a; the words are bounded (DOM_ARGV_MAX). */
static void arg(struct dom_argv *a, const char *w)
{
	if (a->n + 1 < DOM_ARGV_MAX) {
		a->v[a->n++] = w;
	} else {
		a->overflow = true;
	}
	a->v[a->n] = NULL;
}

/* A word built in @a's own storage. */
static char *arg_buf(struct dom_argv *a)
{
	return a->n_buf < HA_ARRAY_SIZE(a->buf) ? a->buf[a->n_buf++] : NULL;
}

int dom_qemu_argv(const struct agent_guest *g, enum dom_qemu_mode mode, const char *accel,
		  const char *machine, struct dom_argv *a, char *err)
{
	bool probe = mode == DOM_QEMU_PROBE;
	char *w, *console = NULL, opts[64];
	int rc;

	memset(a, 0, sizeof(*a));
	if (!probe) {
		rc = agent_domain_cmdline(g->name, g->ip, g->gateway, g->command, a->cmdline,
					  sizeof(a->cmdline));
		if (rc < 0) {
			return agent_err(err, rc, "domain %s: kernel command line longer than %d "
					 "bytes", g->name, DOM_CMDLINE_MAX - 1);
		}
		if (dom_rec_path(g, "qemu.log", a->dlog, sizeof(a->dlog)) < 0 ||
		    dom_rec_path(g, "qemu.pid", a->pidfile, sizeof(a->pidfile)) < 0 ||
		    (console = arg_buf(a)) == NULL ||
		    dom_rec_path(g, "console.log", console, sizeof(a->buf[0])) < 0) {
			return agent_err(err, -ENAMETOOLONG, "domain %s: run dir path too long",
					 g->name);
		}
	}
	snprintf(a->mem, sizeof(a->mem), "%" PRIu64 "k",
		 probe ? (uint64_t)64 << 10 : g->mem_kib + DOM_MEM_PAD_KIB);
	snprintf(a->smp, sizeof(a->smp), "%u", g->cpus);

	arg(a, g->qemu);
	if (!probe) {
		w = arg_buf(a);
		if (w == NULL || opt_escape(w, sizeof(a->buf[0]), "guest=", g->name,
					    ",debug-threads=on") < 0) {
			return agent_err(err, -ENAMETOOLONG, "domain %s: name too long", g->name);
		}
		arg(a, "-name");
		arg(a, w);
	}
	arg(a, "-machine");
	arg(a, machine);
	arg(a, "-accel");
	arg(a, accel);
	arg(a, "-m");
	arg(a, a->mem);
	if (!probe) {
		arg(a, "-smp");
		arg(a, a->smp);
	}
	arg(a, "-nodefaults");
	arg(a, "-no-user-config");
	arg(a, "-display");
	arg(a, "none");
	if (probe) {
		/* the domain's own kernel without an initramfs: it boots as far
		 * as mounting a root file system and panics */
		arg(a, "-no-reboot");
		arg(a, "-serial");
		arg(a, "stdio");
		arg(a, "-kernel");
		arg(a, g->kernel);
		arg(a, "-append");
		arg(a, "console=ttyS0 panic=-1 rdinit=/nonexistent");
		return a->overflow ? agent_err(err, -E2BIG, "domain %s: too many arguments",
					       g->name) : 0;
	}
	arg(a, "-msg");
	arg(a, "timestamp=on");
	arg(a, "-D"); /* once daemonized, QEMU's stderr goes here */
	arg(a, a->dlog);
	arg(a, "-kernel");
	arg(a, g->kernel);
	if (g->initrd) {
		arg(a, "-initrd");
		arg(a, g->initrd);
	}
	arg(a, "-append");
	arg(a, a->cmdline);
	/* the serial console: logged as before, and a socket hactl console
	 * attaches to (docs/guests.md, Console) */
	snprintf(opts, sizeof(opts), "socket,id=ser0,fd=%d,server=on,wait=off,logfile=",
		 DOM_CONSOLE_FD);
	w = arg_buf(a);
	if (w == NULL || opt_escape(w, sizeof(a->buf[0]), opts, console, ",logappend=on") < 0) {
		return agent_err(err, -ENAMETOOLONG, "domain %s: run dir path too long", g->name);
	}
	arg(a, "-chardev");
	arg(a, w);
	arg(a, "-serial");
	arg(a, "chardev:ser0");
	w = arg_buf(a);
	if (w == NULL) {
		return agent_err(err, -E2BIG, "domain %s: too many arguments", g->name);
	}
	snprintf(w, sizeof(a->buf[0]), "socket,id=qmp,fd=%d,server=on,wait=off", DOM_QMP_FD);
	arg(a, "-chardev");
	arg(a, w);
	arg(a, "-mon");
	arg(a, "chardev=qmp,mode=control");
	if (g->bridge) {
		snprintf(a->netdev, sizeof(a->netdev),
			 "tap,id=net0,ifname=%s,script=no,downscript=no", g->tap);
		snprintf(a->nic, sizeof(a->nic),
			 "virtio-net-pci,netdev=net0,mac=%02x:%02x:%02x:%02x:%02x:%02x",
			 g->mac[0], g->mac[1], g->mac[2], g->mac[3], g->mac[4], g->mac[5]);
		arg(a, "-netdev");
		arg(a, a->netdev);
		arg(a, "-device");
		arg(a, a->nic);
	}
	if (g->disk) {
		char fmt[32];

		snprintf(fmt, sizeof(fmt), ",format=%s,if=none,id=disk0", dom_disk_format(g->disk));
		w = arg_buf(a);
		if (w == NULL || opt_escape(w, sizeof(a->buf[0]), "file=", g->disk, fmt) < 0) {
			return agent_err(err, -ENAMETOOLONG, "domain %s: disk path too long", g->name);
		}
		arg(a, "-drive");
		arg(a, w);
		arg(a, "-device");
		arg(a, "virtio-blk-pci,drive=disk0");
	}
	if (mode == DOM_QEMU_INCOMING) {
		arg(a, "-S");
		arg(a, "-incoming");
		arg(a, "defer");
	}
	arg(a, "-pidfile");
	arg(a, a->pidfile);
	arg(a, "-daemonize");
	return a->overflow ? agent_err(err, -E2BIG, "domain %s: too many arguments", g->name) : 0;
}

/* Exposed for the unit test: QEMU's command line for a domain of @spec
 * (@mode a dom_qemu_mode), its words joined by spaces into @out. */
int agent_domain_qemu_cmd(const struct agent_guest_spec *spec, int mode, const char *accel,
			  char *out, size_t len, char *err);

int agent_domain_qemu_cmd(const struct agent_guest_spec *spec, int mode, const char *accel,
			  char *out, size_t len, char *err)
{
	_cleanup_free_ struct dom_argv *a = calloc(1, sizeof(*a));
	struct agent_guest *g = NULL;
	size_t o = 0;
	int rc;

	if (a == NULL) {
		return agent_err(err, -ENOMEM, "out of memory");
	}
	if ((unsigned)mode >= DOM_QEMU_MODE_MAX) {
		return agent_err(err, -EINVAL, "mode %d", mode);
	}
	rc = dom_guest_new(NULL, spec, false, &g, err);
	if (rc == 0) {
		rc = dom_qemu_argv(g, (enum dom_qemu_mode)mode, accel, DOM_MACHINE, a, err);
	}
	for (unsigned i = 0; rc == 0 && i < a->n; i++) {
		int n = snprintf(out + o, len - o, "%s%s", i ? " " : "", a->v[i]);

		if (n < 0 || (size_t)n >= len - o) {
			rc = agent_err(err, -E2BIG, "command line longer than %zu bytes", len);
		} else {
			o += (size_t)n;
		}
	}
	dom_guest_free(g);
	return rc;
}

/*
 * Starts QEMU for @g, daemonized; on success @rec describes it and is
 * recorded in run_dir. Nothing is left behind on failure.
 */
int dom_launch(struct agent_guest *g, struct dom_launch *lo, struct dom_record *rec,
	       uint32_t timeout_ms, char *err)
{
	_cleanup_free_ struct dom_argv *a = calloc(1, sizeof(*a));
	char logp[PATH_MAX], console[PATH_MAX], tail[200], pidtxt[32];
	uint64_t deadline = ha_mono_ms() + timeout_ms;
	bool tap_made = false;
	int lfd = -1, cfd = -1, rc, status = 0;
	pid_t pid = -1;
	struct host_proc_stat ps;

	memset(rec, 0, sizeof(*rec));
	if (a == NULL) {
		return agent_err(err, -ENOMEM, "domain %s: out of memory", g->name);
	}
	rc = ha_mkdir_p(g->run_dir, 0700);
	if (rc < 0) {
		return agent_err(err, rc, "domain %s: run dir %s: %s", g->name, g->run_dir,
				 strerror(-rc));
	}
	if (dom_guest_running(g, rec) == 0) {
		return agent_err(err, -EBUSY, "domain %s: already running (pid %d)", g->name,
				 (int)rec->pid);
	}
	dom_rec_remove(g);
	dom_mark_stopped(g, false);
	memset(rec, 0, sizeof(*rec));
	if (lo->accel[0] == 0) {
		rc = accel_pick(g, lo->accel, sizeof(lo->accel), err);
		if (rc < 0) {
			return rc;
		}
	}
	snprintf(rec->accel, sizeof(rec->accel), "%s", lo->accel);
	snprintf(rec->machine, sizeof(rec->machine), "%s",
		 lo->machine[0] ? lo->machine : DOM_MACHINE);
	if (g->disk && access(g->disk, R_OK | W_OK) < 0) {
		return agent_err(err, -errno, "domain %s: disk %s: %s", g->name, g->disk,
				 strerror(errno));
	}
	rc = dom_qemu_argv(g, lo->incoming ? DOM_QEMU_INCOMING : DOM_QEMU_BOOT, rec->accel,
			   rec->machine, a, err);
	if (rc < 0) {
		return rc;
	}
	if (dom_rec_path(g, "qemu-start.log", logp, sizeof(logp)) < 0 ||
	    dom_rec_path(g, "console.log", console, sizeof(console)) < 0) {
		return agent_err(err, -ENAMETOOLONG, "domain %s: run dir path too long", g->name);
	}
	unlink(logp);
	unlink(a->dlog);

	if (g->bridge) {
		rc = host_net_tap_create(g->tap, g->bridge, err);
		if (rc < 0) {
			return rc;
		}
		tap_made = true;
		snprintf(rec->tap, sizeof(rec->tap), "%s", g->tap);
	}
	rc = host_log_rotate(console, HOST_CONSOLE_KEEP);
	if (rc < 0) {
		agent_err(err, rc, "domain %s: rotating %s: %s", g->name, console, strerror(-rc));
		goto fail;
	}
	lfd = sock_listen(g, "qmp.sock", err);
	if (lfd < 0) {
		rc = lfd;
		goto fail;
	}
	cfd = sock_listen(g, "console.sock", err);
	if (cfd < 0) {
		close(lfd);
		rc = cfd;
		goto fail;
	}
	rc = spawn(a->v, logp, lfd, cfd, &pid, err);
	close(lfd);
	close(cfd);
	if (rc < 0) {
		char tmp[AGENT_ERR_LEN];

		if (err) {
			snprintf(tmp, sizeof(tmp), "%s", err);
			agent_err(err, rc, "domain %s: %s", g->name, tmp);
		}
		goto fail;
	}
	/* The parent exits once the daemon has set up (or failed). */
	for (;;) {
		pid_t r = waitpid(pid, &status, WNOHANG);

		if (r == pid) {
			break;
		}
		if (r < 0 || ha_mono_ms() > deadline) {
			kill(pid, SIGKILL);
			waitpid(pid, &status, 0);
			rc = agent_err(err, -ETIMEDOUT, "domain %s: QEMU did not daemonize within %u ms",
				       g->name, timeout_ms);
			goto fail_kill;
		}
		ha_sleep_ms(10);
	}
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
		dom_log_tail(g, tail, sizeof(tail));
		rc = agent_err(err, -EIO, "domain %s: QEMU exited with status %d: %s", g->name,
			       WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status),
			       tail[0] ? tail : "no message");
		goto fail_kill;
	}
	if (host_read_small(a->pidfile, pidtxt, sizeof(pidtxt)) <= 0 ||
	    (rec->pid = (pid_t)strtol(pidtxt, NULL, 10)) <= 1 ||
	    host_proc_stat_read(rec->pid, &ps) < 0) {
		rc = agent_err(err, -EIO, "domain %s: QEMU wrote no usable pid file %s", g->name,
			       a->pidfile);
		goto fail_kill;
	}
	rec->starttime = ps.starttime;
	rc = dom_rec_write(g, rec);
	if (rc < 0) {
		rc = agent_err(err, rc, "domain %s: writing %s/%s: %s", g->name, g->run_dir,
			       DOM_RECORD, strerror(-rc));
		goto fail_kill;
	}
	rc = cgroup_setup(g, rec->pid, err);
	if (rc < 0) {
		goto fail_kill;
	}
	return 0;
fail_kill:
	if (rec->pid > 1) {
		kill(rec->pid, SIGKILL);
		dom_rec_wait_gone(rec, DOM_KILL_MS);
	}
	dom_rec_remove(g);
	cgroup_cleanup(g);
fail:
	if (tap_made) {
		host_net_tap_remove(g->tap, NULL);
	}
	return rc;
}

int dom_qmp_open(const struct agent_guest *g, uint32_t timeout_ms, struct qmp_client **c,
		    char *err)
{
	char path[PATH_MAX];

	if (dom_rec_path(g, "qmp.sock", path, sizeof(path)) < 0) {
		return agent_err(err, -ENAMETOOLONG, "domain %s: run dir path too long", g->name);
	}
	return qmp_client_connect(path, timeout_ms, c, err, err ? AGENT_ERR_LEN : 0);
}

/* Waits until query-status says @want (running, paused). */
int dom_wait_status(struct agent_guest *g, struct qmp_client *c, enum qmp_run_state want,
		    uint32_t timeout_ms, char *err)
{
	uint64_t deadline = ha_mono_ms() + timeout_ms;
	struct qmp_status st;
	int rc;

	for (;;) {
		rc = qmp_client_query_status(c, &st, DOM_QMP_MS, err, AGENT_ERR_LEN);
		if (rc < 0) {
			return rc;
		}
		if (st.state == want) {
			return 0;
		}
		if (ha_mono_ms() > deadline) {
			return agent_err(err, -ETIMEDOUT, "domain %s: status %s, not %s after %u ms",
					 g->name, st.name, qmp_run_state_str(want), timeout_ms);
		}
		ha_sleep_ms(20);
	}
}

/* A QEMU run state as a guest state. */
enum agent_guest_state dom_vm_state_of(enum qmp_run_state st)
{
	switch (st) {
	case QMP_RUN_SHUTDOWN:
	case QMP_RUN_GUEST_PANICKED:
	case QMP_RUN_INTERNAL_ERROR:
	case QMP_RUN_IO_ERROR:
		return AGENT_GUEST_FAILED;
	case QMP_RUN_RUNNING:
		return AGENT_GUEST_RUNNING;
	default:
		return AGENT_GUEST_PAUSED;
	}
}

/* Tears down what a QEMU that is gone left: tap, cgroup, record. */
void dom_after_exit(struct agent_guest *g, const struct dom_record *r)
{
	host_net_tap_remove(r->tap[0] ? r->tap : g->tap, NULL);
	cgroup_cleanup(g);
	dom_rec_remove(g);
}

void dom_clean_gone(struct agent_guest *g)
{
	struct dom_record r;

	if (dom_rec_read(g, &r) < 0) {
		memset(&r, 0, sizeof(r));
	}
	dom_after_exit(g, &r);
}

bool dom_incoming_undo(struct agent_guest *g, struct qmp_client *c, const struct dom_record *r,
		       char *tail, size_t len)
{
	bool died = !dom_rec_alive(r) || (c && qmp_client_poll(c, NULL, 0) < 0);

	dom_force_quit(g, c, r, NULL);
	dom_after_exit(g, r);
	dom_log_tail(g, tail, len);
	return died;
}

/* Ends QEMU: QMP quit, then SIGTERM, then SIGKILL. */
int dom_force_quit(struct agent_guest *g, struct qmp_client *c,
		      const struct dom_record *r, char *err)
{
	if (c) {
		qmp_client_execute(c, "quit", NULL, NULL, DOM_QMP_MS, NULL, 0);
	} else {
		kill(r->pid, SIGTERM);
	}
	if (dom_rec_wait_gone(r, DOM_QUIT_MS)) {
		return 0;
	}
	kill(r->pid, SIGKILL);
	if (dom_rec_wait_gone(r, DOM_KILL_MS)) {
		return 0;
	}
	return agent_err(err, -ETIMEDOUT, "domain %s: QEMU pid %d survives SIGKILL", g->name,
			 (int)r->pid);
}

int dom_simple_cmd(struct qmp_client *c, const char *cmd, const char *key,
		      const char *val, char *err)
{
	json_object *args = NULL;
	int rc;

	if (key) {
		args = json_object_new_object();
		if (args == NULL) {
			return agent_err(err, -ENOMEM, "qmp %s: out of memory", cmd);
		}
		json_object_object_add(args, key, json_object_new_string(val));
	}
	rc = qmp_client_execute(c, cmd, args, NULL, DOM_QMP_MS, err, err ? AGENT_ERR_LEN : 0);
	json_object_put(args);
	return rc;
}

/*
 * Announces the guest's MAC (QEMU's RARP, and a gratuitous ARP from a
 * guest whose virtio-net offers GUEST_ANNOUNCE) so that switches learn
 * its port: after the destination resumes, and after an aborted source
 * resumes (the destination announced at the end of the stream). QEMU's
 * default timing: 5 rounds, 50 ms then +100 ms.
 */
int dom_announce(struct qmp_client *c, char *err)
{
	json_object *args = json_object_new_object();
	int rc;

	if (args == NULL) {
		return agent_err(err, -ENOMEM, "qmp announce-self: out of memory");
	}
	json_object_object_add(args, "initial", json_object_new_int(50));
	json_object_object_add(args, "max", json_object_new_int(550));
	json_object_object_add(args, "rounds", json_object_new_int(5));
	json_object_object_add(args, "step", json_object_new_int(100));
	rc = qmp_client_execute(c, "announce-self", args, NULL, DOM_QMP_MS, err,
				err ? AGENT_ERR_LEN : 0);
	json_object_put(args);
	return rc;
}
