/*
 * driver_domain.c - guests with their own kernel: one QEMU per domain,
 * controlled over QMP (the Xen heritage: xm create / shutdown / save /
 * restore / migrate, with virtio as the split paravirtual device model).
 *
 * A domain is a daemonized QEMU (it outlives the agent) with:
 *   -machine q35 (boots a PVH vmlinux; microvm hangs with the stock
 *    kernel's timer calibration), -accel tcg unless KVM was asked for and
 *    a boot probe passed (docs/domains.md), RAM of mem_kib + 4 KiB (QEMU
 *    7.2 TCG corrupts migrated guests whose RAM is a multiple of 256 KiB),
 *    -kernel/-initrd/-append with hactl.ip/gw/cmd (docs/templates.md),
 *    virtio-net on a persistent tap ht-<name> in spec->bridge, virtio-blk
 *    on spec->disk, the serial console in run_dir/console.log, QMP on a
 *    listening socket we bind ourselves (run_dir/qmp.sock, any path
 *    length) and hand to QEMU as fd 3, -pidfile run_dir/qemu.pid.
 *
 * What attach() needs after an agent restart lives in run_dir/domain.json:
 * the pid, its /proc start time (so that a recycled pid is not taken for
 * the guest), the tap, the accelerator and machine type.
 *
 * Checkpoints are QEMU migrations into a file: QMP stop, "migrate fd:" into
 * dir/memory (the fd passed with getfd, no shell), the disk copied while
 * the guest is paused, then cont or quit. Restore starts the same command
 * line with -S -incoming defer and feeds the file with migrate-incoming.
 *
 * Live migration is QEMU's pre-copy over the agent's socket, the same
 * getfd on both ends; a transaction in which both QEMUs end paused until
 * migrate_finish() resumes one and quits the other (the section at the
 * end, docs/domains.md).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <limits.h>
#include <net/if.h>
#include <linux/if_tun.h>
#include <linux/sockios.h>
#include <linux/tcp.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stddef.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>

#include "driver.h"
#include "guestdef.h"
#include "host_cgroup.h"
#include "host_net.h"
#include "host_proc.h"
#include "qmp_client.h"
#include "util.h"

extern char **environ;

#define DOM_NAME_MAX 64
#define DOM_CMDLINE_MAX 2048       /* x86 COMMAND_LINE_SIZE */
#define DOM_ARGV_MAX 64
#define DOM_MEM_MIN_KIB HA_GUEST_MEM_MIN_KIB  /* guestdef.h: 16 MiB */
#define DOM_MEM_MAX_KIB HA_GUEST_MEM_MAX_KIB  /* 64 GiB */
#define DOM_CPUS_MAX 64
#define DOM_MEM_PAD_KIB 4          /* see the top of the file */
#define DOM_MACHINE "q35"
#define DOM_QMP_MS 5000            /* one QMP command */
#define DOM_CONNECT_MS 5000
#define DOM_QUIT_MS 3000           /* QMP quit until the process is gone */
#define DOM_KILL_MS 3000
#define DOM_GRACE_MS 2000          /* ACPI power button, then Ctrl-Alt-Del */
#define DOM_PROBE_MS 15000         /* KVM boot probe */
#define DOM_RECORD "domain.json"
#define DOM_MANIFEST "domain-ckpt.json"
#define DOM_MANIFEST_FORMAT 1
#define DOM_MANIFEST_MAX (64 * 1024)
#define DOM_FDNAME "hactl-ckpt"
#define DOM_QMP_FD 3               /* the monitor's listening socket in QEMU */
#define DOM_BANDWIDTH_MAX (1ULL << 40) /* bytes/s: a file, not a link */

/* ---- errors and small helpers ---------------------------------------- */

static int path_join(char *out, size_t outlen, const char *dir, const char *name)
{
	int n = snprintf(out, outlen, "%s/%s", dir, name);

	return n < 0 || (size_t)n >= outlen ? -ENAMETOOLONG : 0;
}

/* FNV-1a: stable names and MACs from a guest name. */
static uint32_t fnv1a(const char *s)
{
	uint32_t h = 2166136261u;

	for (; *s; s++) {
		h = (h ^ (uint8_t)*s) * 16777619u;
	}
	return h;
}

static bool name_valid(const char *s)
{
	size_t n = s ? strlen(s) : 0;

	if (n == 0 || n >= DOM_NAME_MAX || strcmp(s, ".") == 0 || strcmp(s, "..") == 0) {
		return false;
	}
	for (size_t i = 0; i < n; i++) {
		char c = s[i];

		if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
		      (c >= '0' && c <= '9') || c == '_' || c == '.' || c == '-')) {
			return false;
		}
	}
	return true;
}

/* ---- the guest object ------------------------------------------------ */

/* What run_dir/domain.json records about a running QEMU. */
struct dom_record {
	pid_t pid;
	uint64_t starttime;   /* /proc/PID/stat field 22 */
	char tap[IFNAMSIZ];
	char accel[8];
	char machine[64];
};

struct agent_guest {
	const struct agent_driver *d;
	char *name, *kernel, *initrd, *disk, *command, *ip, *gateway, *bridge;
	char *run_dir, *data_dir;
	uint64_t mem_kib;
	uint32_t cpus, cpu_weight, cpu_limit_pct;
	char qemu[PATH_MAX];
	char tap[IFNAMSIZ];
	uint8_t mac[6];
	struct host_cgroup cg;
	bool cg_ok;
	/* state() runs on the agent's event loop and must not block: it
	 * reads /proc and what the last operation found (atomics, as an
	 * operation may end meanwhile in a worker thread). */
	int busy;                        /* an operation runs */
	int op_state;                    /* what state() says meanwhile */
	int vm_state;                    /* RUNNING / PAUSED / FAILED while alive */
	bool stopped_by_us;
};

static void op_begin(struct agent_guest *g, enum agent_guest_state s)
{
	__atomic_store_n(&g->op_state, (int)s, __ATOMIC_RELEASE);
	__atomic_store_n(&g->busy, 1, __ATOMIC_RELEASE);
}

/* Ends an operation; @vm is what QEMU's guest is now while it lives. */
static void op_end(struct agent_guest *g, enum agent_guest_state vm)
{
	__atomic_store_n(&g->vm_state, (int)vm, __ATOMIC_RELEASE);
	__atomic_store_n(&g->busy, 0, __ATOMIC_RELEASE);
}

static void guest_free(struct agent_guest *g)
{
	if (g == NULL) {
		return;
	}
	free(g->name);
	free(g->kernel);
	free(g->initrd);
	free(g->disk);
	free(g->command);
	free(g->ip);
	free(g->gateway);
	free(g->bridge);
	free(g->run_dir);
	free(g->data_dir);
	free(g);
}

static int dup_opt(char **dst, const char *src)
{
	if (src == NULL || src[0] == 0) {
		*dst = NULL;
		return 0;
	}
	*dst = strdup(src);
	return *dst ? 0 : -ENOMEM;
}

static bool abs_path_ok(const char *p)
{
	return p && p[0] == '/' && strlen(p) < PATH_MAX - 64;
}

/*
 * Checks @spec and copies what the driver keeps. @need_files: a kernel
 * must be named (restore; create and attach take any, start checks).
 */
static int guest_new(const struct agent_driver *d, const struct agent_guest_spec *spec,
		     bool need_files, struct agent_guest **out, char *err)
{
	const char *nm = spec->name ? spec->name : "?";
	struct agent_guest *g;
	uint32_t h;
	int rc = 0;

	*out = NULL;
	if (!name_valid(spec->name)) {
		return agent_err(err, -EINVAL, "domain: invalid name '%s' ([A-Za-z0-9_.-], 1-%d)",
				 nm, DOM_NAME_MAX - 1);
	}
	if (spec->mem_kib < DOM_MEM_MIN_KIB || spec->mem_kib > DOM_MEM_MAX_KIB) {
		return agent_err(err, -EINVAL, "domain %s: memory %" PRIu64 " KiB out of range "
				 "(%llu KiB - %llu GiB)", nm, spec->mem_kib,
				 (unsigned long long)DOM_MEM_MIN_KIB,
				 (unsigned long long)DOM_MEM_MAX_KIB >> 20);
	}
	if (spec->cpus < 1 || spec->cpus > DOM_CPUS_MAX) {
		return agent_err(err, -EINVAL, "domain %s: cpus %u out of range (1-%d)", nm,
				 spec->cpus, DOM_CPUS_MAX);
	}
	if (!abs_path_ok(spec->run_dir)) {
		return agent_err(err, -EINVAL, "domain %s: run dir must be an absolute path", nm);
	}
	if (spec->kernel == NULL || spec->kernel[0] == 0) {
		if (need_files) {
			return agent_err(err, -EINVAL, "domain %s: no kernel given", nm);
		}
	} else if (!abs_path_ok(spec->kernel)) {
		return agent_err(err, -EINVAL, "domain %s: kernel %s is not an absolute path", nm,
				 spec->kernel);
	}
	if (spec->initrd && spec->initrd[0] && !abs_path_ok(spec->initrd)) {
		return agent_err(err, -EINVAL, "domain %s: initrd %s is not an absolute path", nm,
				 spec->initrd);
	}
	if (spec->disk && spec->disk[0] && !abs_path_ok(spec->disk)) {
		return agent_err(err, -EINVAL, "domain %s: disk %s is not an absolute path", nm,
				 spec->disk);
	}
	if (spec->bridge && spec->bridge[0] && strlen(spec->bridge) >= IFNAMSIZ) {
		return agent_err(err, -EINVAL, "domain %s: bridge name %s too long", nm, spec->bridge);
	}
	if (spec->ip && spec->ip[0] && !host_net_addr_valid(spec->ip, true) &&
	    !host_net_addr_valid(spec->ip, false)) {
		return agent_err(err, -EINVAL, "domain %s: bad address %s", nm, spec->ip);
	}
	if (spec->gateway && spec->gateway[0] && !host_net_addr_valid(spec->gateway, false)) {
		return agent_err(err, -EINVAL, "domain %s: bad gateway %s", nm, spec->gateway);
	}
	g = calloc(1, sizeof(*g));
	if (g == NULL) {
		return agent_err(err, -ENOMEM, "domain %s: out of memory", nm);
	}
	g->d = d;
	rc |= dup_opt(&g->name, spec->name);
	rc |= dup_opt(&g->kernel, spec->kernel);
	rc |= dup_opt(&g->initrd, spec->initrd);
	rc |= dup_opt(&g->disk, spec->disk);
	rc |= dup_opt(&g->command, spec->command);
	rc |= dup_opt(&g->ip, spec->ip);
	rc |= dup_opt(&g->gateway, spec->gateway);
	rc |= dup_opt(&g->bridge, spec->bridge);
	rc |= dup_opt(&g->run_dir, spec->run_dir);
	rc |= dup_opt(&g->data_dir, spec->data_dir);
	if (rc < 0) {
		guest_free(g);
		return agent_err(err, -ENOMEM, "domain %s: out of memory", nm);
	}
	g->mem_kib = spec->mem_kib;
	g->cpus = spec->cpus;
	g->cpu_weight = spec->cpu_weight;
	g->cpu_limit_pct = spec->cpu_limit_pct;
	snprintf(g->qemu, sizeof(g->qemu), "%s",
		 d && d->cfg && d->cfg->qemu_path[0] ? d->cfg->qemu_path : "qemu-system-x86_64");
	/* ht-NAME, or ht-<6 chars><6 hex> for long names */
	h = fnv1a(g->name);
	if (strlen(g->name) <= IFNAMSIZ - 4) {
		snprintf(g->tap, sizeof(g->tap), "ht-%s", g->name);
	} else {
		snprintf(g->tap, sizeof(g->tap), "ht-%.6s%06x", g->name, h & 0xffffff);
	}
	/* 52:54:00 (QEMU's, locally administered) + 3 bytes of the hash */
	g->mac[0] = 0x52;
	g->mac[1] = 0x54;
	g->mac[2] = 0x00;
	g->mac[3] = (uint8_t)(h >> 16);
	g->mac[4] = (uint8_t)(h >> 8);
	g->mac[5] = (uint8_t)h;
	g->cg_ok = host_cgroup_init(&g->cg, host_cgroup_parent(), g->name, NULL) == 0;
	g->vm_state = AGENT_GUEST_RUNNING;
	*out = g;
	return 0;
}

/* ---- /proc ----------------------------------------------------------- */

/* The recorded QEMU is alive: same pid, same start time, not a zombie.
 * A leader that is a zombie while other threads still exit counts as
 * alive: its files (the tap) are not closed yet. */
static bool rec_alive(const struct dom_record *r)
{
	struct host_proc_stat ps;

	if (r->pid <= 1 || host_proc_stat_read(r->pid, &ps) < 0 || ps.starttime != r->starttime) {
		return false;
	}
	return !((ps.state == 'Z' || ps.state == 'X') && ps.threads <= 1);
}

/* Waits until the recorded process is gone; true when it is. */
static bool rec_wait_gone(const struct dom_record *r, uint32_t timeout_ms)
{
	uint64_t deadline = ha_mono_ms() + timeout_ms;
	int pfd = (int)syscall(SYS_pidfd_open, r->pid, 0);

	while (rec_alive(r)) {
		uint64_t now = ha_mono_ms();

		if (now >= deadline) {
			break;
		}
		if (pfd >= 0) {
			struct pollfd p = { .fd = pfd, .events = POLLIN };
			uint64_t left = deadline - now;

			poll(&p, 1, left > 50 ? 50 : (int)left);
		} else {
			ha_sleep_ms(20);
		}
	}
	if (pfd >= 0) {
		close(pfd);
	}
	return !rec_alive(r);
}

/* ---- the run directory record ----------------------------------------- */

static int rec_path(const struct agent_guest *g, const char *name, char *out, size_t len)
{
	return path_join(out, len, g->run_dir, name);
}

static int rec_write(const struct agent_guest *g, const struct dom_record *r)
{
	char path[PATH_MAX];
	json_object *o = json_object_new_object();
	const char *s;
	int rc;

	if (o == NULL) {
		return -ENOMEM;
	}
	json_object_object_add(o, "pid", json_object_new_int64(r->pid));
	json_object_object_add(o, "starttime", json_object_new_int64((int64_t)r->starttime));
	json_object_object_add(o, "tap", json_object_new_string(r->tap));
	json_object_object_add(o, "accel", json_object_new_string(r->accel));
	json_object_object_add(o, "machine", json_object_new_string(r->machine));
	json_object_object_add(o, "name", json_object_new_string(g->name));
	s = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PRETTY);
	rc = rec_path(g, DOM_RECORD, path, sizeof(path));
	if (rc == 0) {
		rc = ha_file_write_atomic(path, s, strlen(s));
	}
	json_object_put(o);
	return rc;
}

static void copy_jstr(char *dst, size_t len, json_object *o, const char *key)
{
	json_object *v;

	dst[0] = 0;
	if (json_object_object_get_ex(o, key, &v) && json_object_is_type(v, json_type_string)) {
		snprintf(dst, len, "%s", json_object_get_string(v));
	}
}

static int64_t get_jint(json_object *o, const char *key, int64_t def)
{
	json_object *v;

	if (json_object_object_get_ex(o, key, &v) && json_object_is_type(v, json_type_int)) {
		return json_object_get_int64(v);
	}
	return def;
}

/* Reads a small JSON object file (a record or a manifest). */
static int json_file_read(const char *path, json_object **out)
{
	_cleanup_free_ uint8_t *buf = NULL;
	json_tokener *tok;
	size_t len;
	int rc;

	*out = NULL;
	rc = ha_file_read(path, DOM_MANIFEST_MAX, &buf, &len);
	if (rc < 0) {
		return rc;
	}
	tok = json_tokener_new_ex(16);
	if (tok == NULL) {
		return -ENOMEM;
	}
	*out = json_tokener_parse_ex(tok, (const char *)buf, (int)len);
	rc = json_tokener_get_error(tok) == json_tokener_success && *out &&
	     json_object_is_type(*out, json_type_object) ? 0 : -EBADMSG;
	json_tokener_free(tok);
	if (rc < 0) {
		json_object_put(*out);
		*out = NULL;
	}
	return rc;
}

static int rec_read(const struct agent_guest *g, struct dom_record *r)
{
	char path[PATH_MAX];
	json_object *o;
	int64_t pid, st;
	int rc;

	memset(r, 0, sizeof(*r));
	rc = rec_path(g, DOM_RECORD, path, sizeof(path));
	if (rc == 0) {
		rc = json_file_read(path, &o);
	}
	if (rc < 0) {
		return rc;
	}
	pid = get_jint(o, "pid", -1);
	st = get_jint(o, "starttime", -1);
	copy_jstr(r->tap, sizeof(r->tap), o, "tap");
	copy_jstr(r->accel, sizeof(r->accel), o, "accel");
	copy_jstr(r->machine, sizeof(r->machine), o, "machine");
	json_object_put(o);
	if (pid <= 1 || pid > INT32_MAX || st < 0) {
		return -EBADMSG;
	}
	r->pid = (pid_t)pid;
	r->starttime = (uint64_t)st;
	return 0;
}

static void rec_remove(const struct agent_guest *g)
{
	static const char *const names[] = { DOM_RECORD, "qemu.pid", "qmp.sock" };
	char path[PATH_MAX];

	for (size_t i = 0; i < HA_ARRAY_SIZE(names); i++) {
		if (rec_path(g, names[i], path, sizeof(path)) == 0) {
			unlink(path);
		}
	}
}

/* run_dir/stopped: the domain was stopped by the driver (state() says
 * stopped, not defined, in a later process). */
static void mark_stopped(const struct agent_guest *g, bool on)
{
	char path[PATH_MAX];
	int fd;

	if (rec_path(g, "stopped", path, sizeof(path)) < 0) {
		return;
	}
	if (!on) {
		unlink(path);
	} else if ((fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0600)) >= 0) {
		close(fd);
	}
}

static bool marked_stopped(const struct agent_guest *g)
{
	char path[PATH_MAX];

	return rec_path(g, "stopped", path, sizeof(path)) == 0 && access(path, F_OK) == 0;
}

/* The record of a QEMU that runs now; -ESRCH when none does. */
static int guest_running(const struct agent_guest *g, struct dom_record *r)
{
	if (rec_read(g, r) < 0 || !rec_alive(r)) {
		return -ESRCH;
	}
	return 0;
}

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

static int spawn(const char *const argv[], const char *log_path, int keep_fd, pid_t *pid,
		 char *err);

static int kvm_boot_probe(const struct agent_guest *g, char *why, size_t whylen)
{
	char log[PATH_MAX], buf[16384];
	const char *argv[32];
	unsigned n = 0;
	uint64_t deadline;
	int status = 0, rc;
	pid_t pid;

	if (access("/dev/kvm", R_OK | W_OK) < 0) {
		snprintf(why, whylen, "/dev/kvm: %s", strerror(errno));
		return -ENODEV;
	}
	if (path_join(log, sizeof(log), g->run_dir, "kvm-probe.log") < 0) {
		return -ENAMETOOLONG;
	}
	unlink(log);
	argv[n++] = g->qemu;
	argv[n++] = "-machine";
	argv[n++] = DOM_MACHINE;
	argv[n++] = "-accel";
	argv[n++] = "kvm";
	argv[n++] = "-m";
	argv[n++] = "64M";
	argv[n++] = "-nodefaults";
	argv[n++] = "-no-user-config";
	argv[n++] = "-display";
	argv[n++] = "none";
	argv[n++] = "-no-reboot";
	argv[n++] = "-serial";
	argv[n++] = "stdio";
	argv[n++] = "-kernel";
	argv[n++] = g->kernel;
	argv[n++] = "-append";
	argv[n++] = "console=ttyS0 panic=-1 rdinit=/nonexistent";
	argv[n] = NULL;
	rc = spawn(argv, log, -1, &pid, NULL);
	if (rc < 0) {
		snprintf(why, whylen, "cannot run %s: %s", g->qemu, strerror(-rc));
		return rc;
	}
	deadline = ha_mono_ms() + DOM_PROBE_MS;
	for (;;) {
		pid_t r = waitpid(pid, &status, WNOHANG);

		if (r == pid) {
			break;
		}
		if (r < 0 || ha_mono_ms() > deadline) {
			kill(pid, SIGKILL);
			waitpid(pid, &status, 0);
			snprintf(why, whylen, "the kernel did not boot under KVM within %d ms",
				 DOM_PROBE_MS);
			unlink(log);
			return -ETIMEDOUT;
		}
		ha_sleep_ms(20);
	}
	rc = (int)host_read_small(log, buf, sizeof(buf));
	unlink(log);
	if (rc > 0 && (strstr(buf, "Kernel panic") || strstr(buf, "Unable to mount root"))) {
		return 0;
	}
	snprintf(why, whylen, "QEMU with KVM exited (status %d) before the kernel booted",
		 WIFEXITED(status) ? WEXITSTATUS(status) : -1);
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
 * @log_path, @keep_fd (when >= 0) as fd 3, default signal dispositions and
 * an empty signal mask (the agent blocks signals for its signalfd).
 */
static int spawn(const char *const argv[], const char *log_path, int keep_fd, pid_t *pid,
		 char *err)
{
	posix_spawn_file_actions_t fa;
	posix_spawnattr_t at;
	sigset_t none, all;
	int high = -1, rc;

	if (keep_fd >= 0) {
		/* above 0-2 and 3, so that the actions below cannot clobber it */
		high = fcntl(keep_fd, F_DUPFD_CLOEXEC, 10);
		if (high < 0) {
			return agent_err(err, -errno, "fcntl: %s", strerror(errno));
		}
	}
	sigemptyset(&none);
	sigfillset(&all);
	posix_spawn_file_actions_init(&fa);
	posix_spawnattr_init(&at);
	if (high >= 0) {
		posix_spawn_file_actions_adddup2(&fa, high, DOM_QMP_FD);
	}
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
	if (high >= 0) {
		close(high);
	}
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
static void file_tail(const char *path, off_t from, char *out, size_t len)
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
static void log_tail(const struct agent_guest *g, char *out, size_t len)
{
	char path[PATH_MAX];

	out[0] = 0;
	if (rec_path(g, "qemu.log", path, sizeof(path)) == 0) {
		file_tail(path, 0, out, len);
	}
	if (out[0] == 0 && rec_path(g, "qemu-start.log", path, sizeof(path)) == 0) {
		file_tail(path, 0, out, len);
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
static const char *disk_format(const char *path)
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

/* Binds and listens on run_dir/qmp.sock (through the directory's fd when
 * the path is too long for sun_path). Returns the socket or -errno. */
static int qmp_listen(const struct agent_guest *g, char *err)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	char path[PATH_MAX];
	int dfd, fd, rc = 0;

	dfd = open(g->run_dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0) {
		return agent_err(err, -errno, "domain %s: %s: %s", g->name, g->run_dir,
				 strerror(errno));
	}
	if (rec_path(g, "qmp.sock", path, sizeof(path)) == 0 && strlen(path) < sizeof(sa.sun_path)) {
		snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	} else {
		snprintf(sa.sun_path, sizeof(sa.sun_path), "/proc/self/fd/%d/qmp.sock", dfd);
	}
	unlinkat(dfd, "qmp.sock", 0);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(fd, 8) < 0) {
		rc = agent_err(err, -errno, "domain %s: QMP socket in %s: %s", g->name, g->run_dir,
			       strerror(errno));
		if (fd >= 0) {
			close(fd);
		}
	}
	close(dfd);
	return rc < 0 ? rc : fd;
}

struct launch {
	bool incoming;        /* -S -incoming defer */
	char accel[8];        /* "" = pick */
	char machine[64];     /* "" = DOM_MACHINE */
};

#define ARGBUF 8

/*
 * Starts QEMU for @g, daemonized; on success @rec describes it and is
 * recorded in run_dir. Nothing is left behind on failure.
 */
static int launch(struct agent_guest *g, struct launch *lo, struct dom_record *rec,
		  uint32_t timeout_ms, char *err)
{
	char bufs[ARGBUF][PATH_MAX + 64];
	char mem[32], smp[16], cmdline[DOM_CMDLINE_MAX], logp[PATH_MAX], pidp[PATH_MAX];
	char dlogp[PATH_MAX];
	char netdev[128], nic[128], tail[200];
	const char *argv[DOM_ARGV_MAX];
	unsigned n = 0, b = 0;
	uint64_t deadline = ha_mono_ms() + timeout_ms;
	bool tap_made = false;
	int lfd = -1, rc, status = 0;
	pid_t pid = -1;
	struct host_proc_stat ps;
	char pidtxt[32];

	memset(rec, 0, sizeof(*rec));
	rc = ha_mkdir_p(g->run_dir, 0700);
	if (rc < 0) {
		return agent_err(err, rc, "domain %s: run dir %s: %s", g->name, g->run_dir,
				 strerror(-rc));
	}
	if (guest_running(g, rec) == 0) {
		return agent_err(err, -EBUSY, "domain %s: already running (pid %d)", g->name,
				 (int)rec->pid);
	}
	rec_remove(g);
	mark_stopped(g, false);
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
	rc = agent_domain_cmdline(g->name, g->ip, g->gateway, g->command, cmdline,
				sizeof(cmdline));
	if (rc < 0) {
		return agent_err(err, rc, "domain %s: kernel command line longer than %d bytes",
				 g->name, DOM_CMDLINE_MAX - 1);
	}
	if (rec_path(g, "qemu-start.log", logp, sizeof(logp)) < 0 ||
	    rec_path(g, "qemu.log", dlogp, sizeof(dlogp)) < 0 ||
	    rec_path(g, "qemu.pid", pidp, sizeof(pidp)) < 0) {
		return agent_err(err, -ENAMETOOLONG, "domain %s: run dir path too long", g->name);
	}
	unlink(logp);
	unlink(dlogp);
	snprintf(mem, sizeof(mem), "%" PRIu64 "k", g->mem_kib + DOM_MEM_PAD_KIB);
	snprintf(smp, sizeof(smp), "%u", g->cpus);

	argv[n++] = g->qemu;
	argv[n++] = "-name";
	if (opt_escape(bufs[b], sizeof(bufs[b]), "guest=", g->name, ",debug-threads=on") < 0) {
		return agent_err(err, -ENAMETOOLONG, "domain %s: name too long", g->name);
	}
	argv[n++] = bufs[b++];
	argv[n++] = "-machine";
	argv[n++] = rec->machine;
	argv[n++] = "-accel";
	argv[n++] = rec->accel;
	argv[n++] = "-m";
	argv[n++] = mem;
	argv[n++] = "-smp";
	argv[n++] = smp;
	argv[n++] = "-nodefaults";
	argv[n++] = "-no-user-config";
	argv[n++] = "-display";
	argv[n++] = "none";
	argv[n++] = "-msg";
	argv[n++] = "timestamp=on";
	argv[n++] = "-D"; /* once daemonized, QEMU's stderr goes here */
	argv[n++] = dlogp;
	argv[n++] = "-kernel";
	argv[n++] = g->kernel;
	if (g->initrd) {
		argv[n++] = "-initrd";
		argv[n++] = g->initrd;
	}
	argv[n++] = "-append";
	argv[n++] = cmdline;
	argv[n++] = "-serial";
	if (rec_path(g, "console.log", tail, sizeof(tail)) < 0 ||
	    opt_escape(bufs[b], sizeof(bufs[b]), "file:", tail, "") < 0) {
		return agent_err(err, -ENAMETOOLONG, "domain %s: run dir path too long", g->name);
	}
	argv[n++] = bufs[b++];
	argv[n++] = "-chardev";
	snprintf(bufs[b], sizeof(bufs[b]), "socket,id=qmp,fd=%d,server=on,wait=off",
		 DOM_QMP_FD);
	argv[n++] = bufs[b++];
	argv[n++] = "-mon";
	argv[n++] = "chardev=qmp,mode=control";
	if (g->bridge) {
		snprintf(netdev, sizeof(netdev), "tap,id=net0,ifname=%s,script=no,downscript=no",
			 g->tap);
		snprintf(nic, sizeof(nic), "virtio-net-pci,netdev=net0,mac=%02x:%02x:%02x:%02x:%02x:%02x",
			 g->mac[0], g->mac[1], g->mac[2], g->mac[3], g->mac[4], g->mac[5]);
		argv[n++] = "-netdev";
		argv[n++] = netdev;
		argv[n++] = "-device";
		argv[n++] = nic;
	}
	if (g->disk) {
		char fmt[32];

		if (access(g->disk, R_OK | W_OK) < 0) {
			return agent_err(err, -errno, "domain %s: disk %s: %s", g->name, g->disk,
					 strerror(errno));
		}
		snprintf(fmt, sizeof(fmt), ",format=%s,if=none,id=disk0", disk_format(g->disk));
		if (opt_escape(bufs[b], sizeof(bufs[b]), "file=", g->disk, fmt) < 0) {
			return agent_err(err, -ENAMETOOLONG, "domain %s: disk path too long", g->name);
		}
		argv[n++] = "-drive";
		argv[n++] = bufs[b++];
		argv[n++] = "-device";
		argv[n++] = "virtio-blk-pci,drive=disk0";
	}
	if (lo->incoming) {
		argv[n++] = "-S";
		argv[n++] = "-incoming";
		argv[n++] = "defer";
	}
	argv[n++] = "-pidfile";
	argv[n++] = pidp;
	argv[n++] = "-daemonize";
	argv[n] = NULL;

	if (g->bridge) {
		rc = host_net_tap_create(g->tap, g->bridge, err);
		if (rc < 0) {
			return rc;
		}
		tap_made = true;
		snprintf(rec->tap, sizeof(rec->tap), "%s", g->tap);
	}
	lfd = qmp_listen(g, err);
	if (lfd < 0) {
		rc = lfd;
		goto fail;
	}
	rc = spawn(argv, logp, lfd, &pid, err);
	close(lfd);
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
		log_tail(g, tail, sizeof(tail));
		rc = agent_err(err, -EIO, "domain %s: QEMU exited with status %d: %s", g->name,
			       WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status),
			       tail[0] ? tail : "no message");
		goto fail_kill;
	}
	if (host_read_small(pidp, pidtxt, sizeof(pidtxt)) <= 0 ||
	    (rec->pid = (pid_t)strtol(pidtxt, NULL, 10)) <= 1 ||
	    host_proc_stat_read(rec->pid, &ps) < 0) {
		rc = agent_err(err, -EIO, "domain %s: QEMU wrote no usable pid file %s", g->name,
			       pidp);
		goto fail_kill;
	}
	rec->starttime = ps.starttime;
	rc = rec_write(g, rec);
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
		rec_wait_gone(rec, DOM_KILL_MS);
	}
	rec_remove(g);
	cgroup_cleanup(g);
fail:
	if (tap_made) {
		host_net_tap_remove(g->tap, NULL);
	}
	return rc;
}

static int qmp_open(const struct agent_guest *g, uint32_t timeout_ms, struct qmp_client **c,
		    char *err)
{
	char path[PATH_MAX];

	if (rec_path(g, "qmp.sock", path, sizeof(path)) < 0) {
		return agent_err(err, -ENAMETOOLONG, "domain %s: run dir path too long", g->name);
	}
	return qmp_client_connect(path, timeout_ms, c, err, err ? AGENT_ERR_LEN : 0);
}

/* Waits until query-status says @want ("running", "paused"). */
static int wait_status(struct agent_guest *g, struct qmp_client *c, const char *want,
		       uint32_t timeout_ms, char *err)
{
	uint64_t deadline = ha_mono_ms() + timeout_ms;
	char st[32];
	bool running;
	int rc;

	for (;;) {
		rc = qmp_client_query_status(c, st, sizeof(st), &running, DOM_QMP_MS, err,
					     AGENT_ERR_LEN);
		if (rc < 0) {
			return rc;
		}
		if (strcmp(st, want) == 0) {
			return 0;
		}
		if (ha_mono_ms() > deadline) {
			return agent_err(err, -ETIMEDOUT, "domain %s: status %s, not %s after %u ms",
					 g->name, st, want, timeout_ms);
		}
		ha_sleep_ms(20);
	}
}

/* A QEMU run state other than "running" as a guest state. */
static enum agent_guest_state vm_state_of(const char *st)
{
	static const char *const failed[] = { "shutdown", "guest-panicked", "internal-error",
					      "io-error" };

	for (size_t i = 0; i < HA_ARRAY_SIZE(failed); i++) {
		if (strcmp(st, failed[i]) == 0) {
			return AGENT_GUEST_FAILED;
		}
	}
	return strcmp(st, "running") == 0 ? AGENT_GUEST_RUNNING : AGENT_GUEST_PAUSED;
}

/* Tears down what a QEMU that is gone left: tap, cgroup, record. */
static void after_exit(struct agent_guest *g, const struct dom_record *r)
{
	host_net_tap_remove(r->tap[0] ? r->tap : g->tap, NULL);
	cgroup_cleanup(g);
	rec_remove(g);
}

/* Ends QEMU: QMP quit, then SIGTERM, then SIGKILL. */
static int force_quit(struct agent_guest *g, struct qmp_client *c,
		      const struct dom_record *r, char *err)
{
	if (c) {
		qmp_client_execute(c, "quit", NULL, NULL, DOM_QMP_MS, NULL, 0);
	} else {
		kill(r->pid, SIGTERM);
	}
	if (rec_wait_gone(r, DOM_QUIT_MS)) {
		return 0;
	}
	kill(r->pid, SIGKILL);
	if (rec_wait_gone(r, DOM_KILL_MS)) {
		return 0;
	}
	return agent_err(err, -ETIMEDOUT, "domain %s: QEMU pid %d survives SIGKILL", g->name,
			 (int)r->pid);
}

/* ---- operations ---------------------------------------------------------- */

static int dom_probe(struct agent_driver *d, Hactl__HostFacts *facts)
{
	const char *qemu = d && d->cfg && d->cfg->qemu_path[0] ? d->cfg->qemu_path :
								  "qemu-system-x86_64";
	const char *argv[] = { qemu, "--version", NULL };
	char logp[] = "/tmp/hactl-qemu-version.XXXXXX";
	char buf[512];
	int fd, status = 0, rc;
	pid_t pid;
	uint64_t deadline;

	fd = mkstemp(logp);
	if (fd < 0) {
		return -errno;
	}
	close(fd);
	rc = spawn(argv, logp, -1, &pid, NULL);
	if (rc < 0) {
		unlink(logp);
		return rc;
	}
	deadline = ha_mono_ms() + 10000;
	while (waitpid(pid, &status, WNOHANG) == 0) {
		if (ha_mono_ms() > deadline) {
			kill(pid, SIGKILL);
			waitpid(pid, &status, 0);
			unlink(logp);
			return -ETIMEDOUT;
		}
		ha_sleep_ms(10);
	}
	rc = (int)host_read_small(logp, buf, sizeof(buf));
	unlink(logp);
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0 || rc <= 0) {
		return -ENOENT;
	}
	if (facts && facts->qemu_version == NULL) {
		const char *p = strstr(buf, "version ");

		if (p) {
			p += strlen("version ");
			facts->qemu_version = strndup(p, strcspn(p, " \n"));
		}
	}
	return 0;
}

/* The files are checked by start() and restore(): a guest whose kernel
 * went away can still be stopped and destroyed. */
static int dom_create(struct agent_driver *d, const struct agent_guest_spec *spec,
		      struct agent_guest **out, char *err)
{
	return guest_new(d, spec, false, out, err);
}

static int files_check(const struct agent_guest *g, char *err)
{
	if (g->kernel == NULL) {
		return agent_err(err, -EINVAL, "domain %s: no kernel given", g->name);
	}
	if (access(g->kernel, R_OK) < 0) {
		return agent_err(err, -errno, "domain %s: kernel %s: %s", g->name, g->kernel,
				 strerror(errno));
	}
	if (g->initrd && access(g->initrd, R_OK) < 0) {
		return agent_err(err, -errno, "domain %s: initrd %s: %s", g->name, g->initrd,
				 strerror(errno));
	}
	if (g->disk && access(g->disk, R_OK | W_OK) < 0) {
		return agent_err(err, -errno, "domain %s: disk %s: %s", g->name, g->disk,
				 strerror(errno));
	}
	return 0;
}

static int dom_attach(struct agent_driver *d, const struct agent_guest_spec *spec,
		      struct agent_guest **out, char *err)
{
	struct agent_guest *g;
	struct dom_record r;
	struct qmp_client *c = NULL;
	int rc;

	*out = NULL;
	rc = guest_new(d, spec, false, &g, err);
	if (rc < 0) {
		return rc;
	}
	if (guest_running(g, &r) < 0) {
		guest_free(g);
		return -ESRCH; /* an answer, not a failure: no message */
	}
	/* Alive: the guest is ours whether or not its monitor answers (a
	 * second copy must not be started); state() says failed when it
	 * does not, and stop() still works. */
	rc = qmp_open(g, DOM_CONNECT_MS, &c, err);
	if (rc == 0) {
		char st[32];
		bool running;

		rc = qmp_client_query_status(c, st, sizeof(st), &running, DOM_QMP_MS, err,
					     AGENT_ERR_LEN);
		/* a paused guest (an operation of an agent that died) stays
		 * paused: whether to resume is the caller's decision */
		g->vm_state = rc < 0 ? AGENT_GUEST_FAILED : running ? AGENT_GUEST_RUNNING :
			      vm_state_of(st);
	}
	qmp_client_free(c);
	if (rc < 0) {
		g->vm_state = AGENT_GUEST_FAILED;
		if (err) {
			char tmp[AGENT_ERR_LEN];

			snprintf(tmp, sizeof(tmp), "%s", err);
			agent_err(err, 0, "domain %s: pid %d alive, monitor does not answer: %s",
				  g->name, (int)r.pid, tmp);
		}
	}
	*out = g;
	return 0;
}

static int dom_start(struct agent_guest *g, uint32_t timeout_ms, char *err)
{
	struct launch lo = { .incoming = false };
	struct dom_record r;
	struct qmp_client *c = NULL;
	uint64_t deadline = ha_mono_ms() + timeout_ms;
	int rc;

	rc = files_check(g, err);
	if (rc < 0) {
		return rc;
	}
	op_begin(g, AGENT_GUEST_STARTING);
	rc = launch(g, &lo, &r, timeout_ms, err);
	if (rc < 0) {
		goto out;
	}
	rc = qmp_open(g, DOM_CONNECT_MS, &c, err);
	if (rc == 0) {
		uint64_t now = ha_mono_ms();

		rc = wait_status(g, c, "running", now < deadline ? (uint32_t)(deadline - now) : 0,
				 err);
	}
	if (rc < 0) {
		force_quit(g, c, &r, NULL);
		after_exit(g, &r);
	}
	qmp_client_free(c);
out:
	op_end(g, AGENT_GUEST_RUNNING);
	return rc;
}

/*
 * Asks the guest to power off: the ACPI power button first (what most
 * guests heed), then, if it is still up after a short grace, Ctrl-Alt-Del
 * (busybox init's ctrlaltdel action: the contract of the domain template,
 * docs/templates.md). A guest that takes Ctrl-Alt-Del as "reboot" still
 * shuts down in order; the reboot itself is caught by the quit that ends a
 * stop which took longer than @timeout_ms.
 */
static void graceful_stop(struct qmp_client *c, const struct dom_record *r,
			  uint32_t timeout_ms)
{
	uint64_t deadline = ha_mono_ms() + timeout_ms;
	uint32_t grace = timeout_ms / 4 < DOM_GRACE_MS ? timeout_ms / 4 : DOM_GRACE_MS;
	json_object *args, *keys;
	static const char *const cad[] = { "ctrl", "alt", "delete" };

	if (qmp_client_execute(c, "system_powerdown", NULL, NULL, DOM_QMP_MS, NULL, 0) == 0 &&
	    rec_wait_gone(r, grace)) {
		return;
	}
	args = json_object_new_object();
	keys = json_object_new_array();
	if (args == NULL || keys == NULL) {
		json_object_put(args);
		json_object_put(keys);
		return;
	}
	for (size_t i = 0; i < HA_ARRAY_SIZE(cad); i++) {
		json_object *k = json_object_new_object();

		json_object_object_add(k, "type", json_object_new_string("qcode"));
		json_object_object_add(k, "data", json_object_new_string(cad[i]));
		json_object_array_add(keys, k);
	}
	json_object_object_add(args, "keys", keys);
	if (qmp_client_execute(c, "send-key", args, NULL, DOM_QMP_MS, NULL, 0) == 0) {
		uint64_t now = ha_mono_ms();

		rec_wait_gone(r, now < deadline ? (uint32_t)(deadline - now) : 0);
	}
	json_object_put(args);
}

static int dom_stop(struct agent_guest *g, uint32_t timeout_ms, char *err)
{
	struct dom_record r;
	struct qmp_client *c = NULL;
	char st[32] = "";
	bool running = false;
	int rc = 0;

	op_begin(g, AGENT_GUEST_STOPPING);
	if (guest_running(g, &r) < 0) {
		/* gone already: clean up what it left */
		if (rec_read(g, &r) < 0) {
			memset(&r, 0, sizeof(r));
		}
		after_exit(g, &r);
		goto out;
	}
	if (qmp_open(g, DOM_CONNECT_MS, &c, NULL) == 0 &&
	    qmp_client_query_status(c, st, sizeof(st), &running, DOM_QMP_MS, NULL, 0) == 0 &&
	    running && timeout_ms > 0) {
		graceful_stop(c, &r, timeout_ms);
	}
	if (rec_alive(&r)) {
		rc = force_quit(g, c, &r, err);
	}
	if (rc == 0) {
		after_exit(g, &r);
	}
	qmp_client_free(c);
out:
	if (rc == 0) {
		g->stopped_by_us = true;
		mark_stopped(g, true);
	}
	op_end(g, AGENT_GUEST_FAILED); /* alive after a failed stop: wedged */
	return rc;
}

/* SIGKILL to the recorded QEMU through a pidfd taken before its start
 * time is checked, so a recycled pid is never hit. Reads only the record
 * file: safe beside an operation in flight (see driver.h). */
static int dom_kill(const struct agent_guest *g, char *err)
{
	struct dom_record r;
	int pfd, rc = 0;

	if (rec_read(g, &r) < 0 || r.pid <= 1) {
		return agent_err(err, -ESRCH, "domain %s: no QEMU recorded", g->name);
	}
	pfd = (int)syscall(SYS_pidfd_open, r.pid, 0);
	if (pfd < 0) {
		return agent_err(err, -errno, "domain %s: QEMU %d: %s", g->name, (int)r.pid,
				 strerror(errno));
	}
	if (!rec_alive(&r)) {
		rc = agent_err(err, -ESRCH, "domain %s: QEMU %d is gone", g->name, (int)r.pid);
	} else if (syscall(SYS_pidfd_send_signal, pfd, SIGKILL, NULL, 0) < 0) {
		rc = agent_err(err, -errno, "domain %s: kill QEMU %d: %s", g->name, (int)r.pid,
			       strerror(errno));
	}
	close(pfd);
	return rc;
}

/* rm -r that stays on one file system. */
static int rm_entry(const char *path, const struct stat *st, int type, struct FTW *f)
{
	(void)st;
	(void)f;
	return (type == FTW_DP ? rmdir(path) : unlink(path)) < 0 && errno != ENOENT ? -1 : 0;
}

static int dom_destroy(struct agent_guest *g, char *err)
{
	struct dom_record r;

	if (guest_running(g, &r) == 0) {
		return agent_err(err, -EBUSY, "domain %s: still running (pid %d): stop it first",
				 g->name, (int)r.pid);
	}
	if (rec_read(g, &r) < 0) {
		memset(&r, 0, sizeof(r));
	}
	after_exit(g, &r);
	/* The run dir is this host's; data_dir and the disk image on the
	 * shared storage belong to the guest and stay. */
	if (nftw(g->run_dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS | FTW_MOUNT) < 0 &&
	    errno != ENOENT) {
		return agent_err(err, -errno, "domain %s: removing %s: %s", g->name, g->run_dir,
				 strerror(errno));
	}
	return 0;
}

static enum agent_guest_state dom_state(const struct agent_guest *g)
{
	struct dom_record r;

	if (__atomic_load_n(&g->busy, __ATOMIC_ACQUIRE)) {
		return (enum agent_guest_state)__atomic_load_n(&g->op_state, __ATOMIC_ACQUIRE);
	}
	if (rec_read(g, &r) < 0) {
		return g->stopped_by_us || marked_stopped(g) ? AGENT_GUEST_STOPPED :
							       AGENT_GUEST_DEFINED;
	}
	if (!rec_alive(&r)) {
		/* recorded but gone: it died without a stop */
		return AGENT_GUEST_FAILED;
	}
	return (enum agent_guest_state)__atomic_load_n(&g->vm_state, __ATOMIC_ACQUIRE);
}

static int dom_usage(struct agent_guest *g, struct agent_guest_usage *out)
{
	struct dom_record r;
	struct host_proc_stat ps;
	char path[64], buf[4096];
	const char *p;
	long tck = sysconf(_SC_CLK_TCK);
	int rc;

	memset(out, 0, sizeof(*out));
	rc = guest_running(g, &r);
	if (rc < 0) {
		return rc;
	}
	rc = host_proc_stat_read(r.pid, &ps);
	if (rc < 0) {
		return rc;
	}
	out->cpu_ns = (ps.utime + ps.stime) * (1000000000ULL / (uint64_t)(tck > 0 ? tck : 100));
	snprintf(path, sizeof(path), "/proc/%d/status", (int)r.pid);
	if (host_read_small(path, buf, sizeof(buf)) > 0 && (p = strstr(buf, "VmRSS:")) != NULL) {
		out->mem_bytes = strtoull(p + strlen("VmRSS:"), NULL, 10) * 1024;
	}
	out->pids = 1;
	return 0;
}

/* ---- checkpoint and restore ---------------------------------------------- */

static int fsync_path(const char *path, int flags)
{
	int fd = open(path, flags | O_CLOEXEC), rc = 0;

	if (fd < 0) {
		return -errno;
	}
	if (fsync(fd) < 0) {
		rc = -errno;
	}
	close(fd);
	return rc;
}

/* Copies @src to @dst keeping holes; fsyncs @dst when @sync. */
static int copy_sparse(const char *src, const char *dst, bool sync, uint64_t *bytes,
		       char *err)
{
	struct stat st;
	int in, out, rc = 0;
	off_t pos = 0;

	in = open(src, O_RDONLY | O_CLOEXEC);
	if (in < 0) {
		return agent_err(err, -errno, "copy %s: %s", src, strerror(errno));
	}
	out = open(dst, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (out < 0) {
		rc = agent_err(err, -errno, "copy to %s: %s", dst, strerror(errno));
		close(in);
		return rc;
	}
	if (fstat(in, &st) < 0) {
		rc = agent_err(err, -errno, "copy %s: %s", src, strerror(errno));
		goto out;
	}
	while (pos < st.st_size) {
		off_t data = lseek(in, pos, SEEK_DATA), hole;

		if (data < 0) {
			if (errno == ENXIO) {
				break; /* only a hole is left */
			}
			data = pos; /* no SEEK_DATA: copy everything */
			hole = st.st_size;
		} else {
			hole = lseek(in, data, SEEK_HOLE);
			if (hole < 0) {
				hole = st.st_size;
			}
		}
		pos = data;
		while (pos < hole) {
			off_t o = pos;
			ssize_t n = copy_file_range(in, &o, out, &o, (size_t)(hole - pos), 0);

			if (n < 0 && (errno == EXDEV || errno == ENOSYS || errno == EINVAL ||
				      errno == EOPNOTSUPP)) {
				char buf[65536];
				size_t want = (size_t)(hole - pos) < sizeof(buf) ?
					(size_t)(hole - pos) : sizeof(buf);

				n = pread(in, buf, want, pos);
				if (n > 0 && pwrite(out, buf, (size_t)n, pos) != n) {
					n = -1;
				}
			}
			if (n < 0) {
				rc = agent_err(err, -errno, "copy %s to %s: %s", src, dst, strerror(errno));
				goto out;
			}
			if (n == 0) {
				rc = agent_err(err, -EIO, "copy %s: file shrank", src);
				goto out;
			}
			pos += n;
		}
	}
	if (ftruncate(out, st.st_size) < 0 || (sync && fsync(out) < 0)) {
		rc = agent_err(err, -errno, "copy to %s: %s", dst, strerror(errno));
	}
	if (bytes) {
		*bytes = (uint64_t)st.st_size;
	}
out:
	close(in);
	if (close(out) < 0 && rc == 0) {
		rc = agent_err(err, -errno, "copy to %s: %s", dst, strerror(errno));
	}
	return rc;
}

/* The concrete machine type ("pc-q35-7.2"), so that a restore on a newer
 * QEMU builds the same machine. */
static void machine_type(struct qmp_client *c, char *out, size_t len)
{
	json_object *args = json_object_new_object(), *ret = NULL;
	const char *s;
	size_t n;

	snprintf(out, len, "%s", DOM_MACHINE);
	if (args == NULL) {
		return;
	}
	json_object_object_add(args, "path", json_object_new_string("/machine"));
	json_object_object_add(args, "property", json_object_new_string("type"));
	if (qmp_client_execute(c, "qom-get", args, &ret, DOM_QMP_MS, NULL, 0) == 0 &&
	    json_object_is_type(ret, json_type_string)) {
		s = json_object_get_string(ret);
		n = strlen(s);
		if (n > 8 && strcmp(s + n - 8, "-machine") == 0 && n - 8 < len) {
			bool ok = true;

			for (size_t i = 0; i < n - 8; i++) {
				char ch = s[i];

				ok &= (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') ||
				      ch == '-' || ch == '.' || ch == '_';
			}
			if (ok) {
				snprintf(out, len, "%.*s", (int)(n - 8), s);
			}
		}
	}
	json_object_put(ret);
	json_object_put(args);
}

/* Migration settings for a file: no stream-changing capabilities (the
 * restoring QEMU sets the same), no bandwidth cap, MIGRATION events so
 * that the wait for completion wakes up at once. */
static int tune_for_file(struct qmp_client *c, char *err)
{
	struct qmp_migrate_tuning t = { .max_bandwidth = DOM_BANDWIDTH_MAX, .events = true };

	return qmp_client_migrate_tune(c, &t, DOM_QMP_MS, err, AGENT_ERR_LEN);
}

static int simple_cmd(struct qmp_client *c, const char *cmd, const char *key,
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

static int manifest_write(const char *dir, json_object *m, char *err)
{
	char path[PATH_MAX];
	const char *s = json_object_to_json_string_ext(m, JSON_C_TO_STRING_PRETTY);
	int rc = path_join(path, sizeof(path), dir, DOM_MANIFEST);

	if (rc == 0) {
		rc = ha_file_write_atomic(path, s, strlen(s));
	}
	return rc < 0 ? agent_err(err, rc, "checkpoint: writing %s/%s: %s", dir, DOM_MANIFEST,
				  strerror(-rc)) : 0;
}

static int dom_checkpoint(struct agent_guest *g, const char *dir, unsigned flags, char *err)
{
	char mpath[PATH_MAX], dpath[PATH_MAX], machine[64], st[32], qver[32];
	struct dom_record r;
	struct qmp_client *c = NULL;
	struct qmp_migrate_info mi;
	json_object *args = NULL, *m = NULL;
	bool leave = flags & AGENT_CKPT_LEAVE_RUNNING, was_running = false, resumed = false;
	uint64_t t_stop = 0, t_mig = 0, t_disk = 0, t_end, disk_bytes = 0;
	struct stat sb;
	unsigned vmaj, vmin, vmic;
	int fd = -1, rc;

	if (flags & (AGENT_CKPT_PRE_DUMP | AGENT_CKPT_LAZY)) {
		return agent_err(err, -EOPNOTSUPP, "domain %s: checkpoint flags 0x%x not supported "
				 "(live migration does pre-copy itself)", g->name, flags);
	}
	if (guest_running(g, &r) < 0) {
		return agent_err(err, -ESRCH, "domain %s: not running", g->name);
	}
	if (path_join(mpath, sizeof(mpath), dir, "memory") < 0 ||
	    path_join(dpath, sizeof(dpath), dir, "disk") < 0) {
		return agent_err(err, -ENAMETOOLONG, "checkpoint: path %s too long", dir);
	}
	rc = ha_mkdir_p(dir, 0700);
	if (rc < 0) {
		return agent_err(err, rc, "checkpoint: mkdir %s: %s", dir, strerror(-rc));
	}
	op_begin(g, AGENT_GUEST_PAUSED);
	{
		/* an older manifest must not vouch for what is written now */
		char old[PATH_MAX];

		if (path_join(old, sizeof(old), dir, DOM_MANIFEST) == 0) {
			unlink(old);
		}
	}
	rc = qmp_open(g, DOM_CONNECT_MS, &c, err);
	if (rc < 0) {
		goto out;
	}
	qmp_client_version(c, &vmaj, &vmin, &vmic);
	snprintf(qver, sizeof(qver), "%u.%u.%u", vmaj, vmin, vmic);
	machine_type(c, machine, sizeof(machine));
	rc = qmp_client_query_status(c, st, sizeof(st), &was_running, DOM_QMP_MS, err,
				     AGENT_ERR_LEN);
	if (rc == 0) {
		rc = tune_for_file(c, err);
	}
	if (rc < 0) {
		goto out;
	}
	fd = open(mpath, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0) {
		rc = agent_err(err, -errno, "checkpoint: %s: %s", mpath, strerror(errno));
		goto out;
	}
	/* The instant: from here the guest runs no instruction until cont. */
	t_stop = ha_mono_ms();
	if (was_running && (rc = simple_cmd(c, "stop", NULL, NULL, err)) < 0) {
		goto out;
	}
	rc = qmp_client_getfd(c, DOM_FDNAME, fd, DOM_QMP_MS, err, AGENT_ERR_LEN);
	if (rc == 0) {
		rc = simple_cmd(c, "migrate", "uri", "fd:" DOM_FDNAME, err);
	}
	if (rc == 0) {
		rc = qmp_client_migrate_wait(c, &mi, 120000, err, AGENT_ERR_LEN);
		if (rc < 0) {
			simple_cmd(c, "migrate_cancel", NULL, NULL, NULL);
		}
	}
	if (rc < 0) {
		goto out;
	}
	t_mig = ha_mono_ms();
	/* The block layer flushed when the migration completed; the guest
	 * writes nothing until cont. */
	unlink(dpath);
	if (g->disk) {
		rc = copy_sparse(g->disk, dpath, false, &disk_bytes, err);
		if (rc < 0) {
			goto out;
		}
	}
	t_disk = ha_mono_ms();
	if (leave && was_running) {
		/* QEMU reports "completed" before its migration thread has
		 * finished cleaning up; cont is refused ("Migration is not
		 * finalized yet") for that short while: retry, bounded. */
		for (int tries = 0; tries < 100; tries++) {
			rc = simple_cmd(c, "cont", NULL, NULL, err);
			if (rc == 0 || !strstr(err, "not finalized")) {
				break;
			}
			usleep(20 * 1000);
		}
		if (rc < 0) {
			goto out;
		}
		resumed = true;
	}
	t_end = ha_mono_ms();
	/* Durability is not consistency: the files hold the instant already,
	 * so they are synced after the guest runs again; the manifest that
	 * vouches for them is written only after that. */
	if (fsync(fd) < 0) {
		rc = agent_err(err, -errno, "checkpoint: fsync %s: %s", mpath, strerror(errno));
		goto out;
	}
	if (g->disk && (rc = fsync_path(dpath, O_RDONLY)) < 0) {
		rc = agent_err(err, rc, "checkpoint: fsync %s: %s", dpath, strerror(-rc));
		goto out;
	}
	fsync_path(dir, O_RDONLY | O_DIRECTORY);
	if (fstat(fd, &sb) < 0) {
		sb.st_size = 0;
	}
	m = json_object_new_object();
	if (m == NULL) {
		rc = agent_err(err, -ENOMEM, "checkpoint: out of memory");
		goto out;
	}
	json_object_object_add(m, "format", json_object_new_int(DOM_MANIFEST_FORMAT));
	json_object_object_add(m, "name", json_object_new_string(g->name));
	json_object_object_add(m, "mem_kib", json_object_new_int64((int64_t)g->mem_kib));
	json_object_object_add(m, "cpus", json_object_new_int64(g->cpus));
	json_object_object_add(m, "machine", json_object_new_string(machine));
	json_object_object_add(m, "accel", json_object_new_string(r.accel));
	json_object_object_add(m, "qemu_version", json_object_new_string(qver));
	json_object_object_add(m, "memory_bytes", json_object_new_int64((int64_t)sb.st_size));
	if (g->disk) {
		json_object_object_add(m, "disk_format",
				       json_object_new_string(disk_format(dpath)));
		json_object_object_add(m, "disk_bytes", json_object_new_int64((int64_t)disk_bytes));
	}
	json_object_object_add(m, "was_running", json_object_new_boolean(was_running));
	json_object_object_add(m, "frozen_ms", json_object_new_int64(
				       (int64_t)((leave ? t_end : t_disk) - t_stop)));
	json_object_object_add(m, "migrate_ms", json_object_new_int64((int64_t)(t_mig - t_stop)));
	json_object_object_add(m, "disk_copy_ms", json_object_new_int64((int64_t)(t_disk - t_mig)));
	json_object_object_add(m, "qemu_total_ms", json_object_new_int64((int64_t)mi.total_time_ms));
	json_object_object_add(m, "qemu_downtime_ms", json_object_new_int64((int64_t)mi.downtime_ms));
	json_object_object_add(m, "taken_wall_ms", json_object_new_int64((int64_t)ha_wall_ms()));
	rc = manifest_write(dir, m, err);
	if (rc < 0) {
		goto out;
	}
	if (!leave) {
		/* a migration's end: the guest now lives in @dir */
		rc = force_quit(g, c, &r, err);
		if (rc == 0) {
			after_exit(g, &r);
			g->stopped_by_us = true;
			mark_stopped(g, true);
		}
	}
out:
	if (rc < 0 && c && was_running && !resumed && rec_alive(&r)) {
		/* any failure before the end resumes the guest */
		simple_cmd(c, "cont", NULL, NULL, NULL);
	}
	if (fd >= 0) {
		close(fd);
	}
	json_object_put(args);
	json_object_put(m);
	qmp_client_free(c);
	op_end(g, was_running ? AGENT_GUEST_RUNNING : AGENT_GUEST_PAUSED);
	return rc;
}

/* Reads and checks the manifest of @dir against @g. */
static int manifest_check(const struct agent_guest *g, const char *dir, struct launch *lo,
			  bool *has_disk, char *err)
{
	char path[PATH_MAX], mpath[PATH_MAX], fmt[16];
	json_object *m = NULL;
	struct stat st;
	int64_t mem, cpus, bytes;
	int rc;

	if (path_join(path, sizeof(path), dir, DOM_MANIFEST) < 0 ||
	    path_join(mpath, sizeof(mpath), dir, "memory") < 0) {
		return agent_err(err, -ENAMETOOLONG, "restore: path %s too long", dir);
	}
	rc = json_file_read(path, &m);
	if (rc < 0) {
		return agent_err(err, rc, "restore: %s: %s", path,
				 rc == -EBADMSG ? "not a checkpoint manifest" : strerror(-rc));
	}
	mem = get_jint(m, "mem_kib", -1);
	cpus = get_jint(m, "cpus", -1);
	bytes = get_jint(m, "memory_bytes", -1);
	copy_jstr(lo->machine, sizeof(lo->machine), m, "machine");
	copy_jstr(fmt, sizeof(fmt), m, "disk_format");
	*has_disk = fmt[0] != 0;
	if (get_jint(m, "format", -1) != DOM_MANIFEST_FORMAT) {
		rc = agent_err(err, -EBADMSG, "restore: %s: unknown format", path);
	} else if (mem != (int64_t)g->mem_kib || cpus != (int64_t)g->cpus) {
		rc = agent_err(err, -EINVAL, "restore: %s holds %" PRId64 " KiB / %" PRId64
			       " cpus, the guest has %" PRIu64 " KiB / %u", dir, mem, cpus,
			       g->mem_kib, g->cpus);
	} else if (stat(mpath, &st) < 0 || st.st_size != bytes || bytes <= 0) {
		rc = agent_err(err, -EBADMSG, "restore: %s missing or not %" PRId64 " bytes", mpath,
			       bytes);
	} else if (*has_disk && g->disk == NULL) {
		rc = agent_err(err, -EINVAL, "restore: %s holds a disk, the guest has none", dir);
	} else if (!*has_disk && g->disk != NULL) {
		rc = agent_err(err, -EINVAL, "restore: %s holds no disk, the guest has %s", dir,
			       g->disk);
	}
	/* a machine type we did not write ourselves is not passed on */
	for (const char *p = lo->machine; *p; p++) {
		if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '-' ||
		      *p == '.' || *p == '_')) {
			lo->machine[0] = 0;
			break;
		}
	}
	json_object_put(m);
	return rc;
}

/* Puts the checkpoint's disk back in place: a temporary name, synced,
 * renamed over the guest's disk. */
static int disk_restore(const struct agent_guest *g, const char *dir, char *err)
{
	char src[PATH_MAX], tmp[PATH_MAX], pdir[PATH_MAX];
	char *slash;
	int rc;

	if (path_join(src, sizeof(src), dir, "disk") < 0 ||
	    snprintf(tmp, sizeof(tmp), "%s.restore-tmp", g->disk) >= (int)sizeof(tmp)) {
		return agent_err(err, -ENAMETOOLONG, "restore: disk path too long");
	}
	rc = copy_sparse(src, tmp, true, NULL, err);
	if (rc == 0 && rename(tmp, g->disk) < 0) {
		rc = agent_err(err, -errno, "restore: rename to %s: %s", g->disk, strerror(errno));
	}
	if (rc < 0) {
		unlink(tmp);
		return rc;
	}
	snprintf(pdir, sizeof(pdir), "%s", g->disk);
	slash = strrchr(pdir, '/');
	if (slash && slash != pdir) {
		*slash = 0;
		fsync_path(pdir, O_RDONLY | O_DIRECTORY);
	}
	return 0;
}

static int dom_restore(struct agent_driver *d, const struct agent_guest_spec *spec,
		       const char *dir, struct agent_guest **out, char *err)
{
	struct agent_guest *g;
	struct launch lo = { .incoming = true };
	struct dom_record r;
	struct qmp_client *c = NULL;
	struct qmp_migrate_info mi;
	char mpath[PATH_MAX];
	bool has_disk = false, launched = false, incoming = false;
	int fd = -1, rc;

	*out = NULL;
	rc = guest_new(d, spec, true, &g, err);
	if (rc == 0 && (rc = files_check(g, err)) < 0) {
		guest_free(g);
	}
	if (rc < 0) {
		return rc;
	}
	op_begin(g, AGENT_GUEST_STARTING);
	if (guest_running(g, &r) == 0) {
		rc = agent_err(err, -EBUSY, "domain %s: already running (pid %d)", g->name,
			       (int)r.pid);
		goto out;
	}
	rc = manifest_check(g, dir, &lo, &has_disk, err);
	if (rc < 0) {
		goto out;
	}
	if (path_join(mpath, sizeof(mpath), dir, "memory") < 0) {
		rc = agent_err(err, -ENAMETOOLONG, "restore: path %s too long", dir);
		goto out;
	}
	fd = open(mpath, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		rc = agent_err(err, -errno, "restore: %s: %s", mpath, strerror(errno));
		goto out;
	}
	if (has_disk && (rc = disk_restore(g, dir, err)) < 0) {
		goto out;
	}
	rc = launch(g, &lo, &r, 30000, err);
	if (rc < 0) {
		goto out;
	}
	launched = true;
	rc = qmp_open(g, DOM_CONNECT_MS, &c, err);
	if (rc == 0) {
		rc = tune_for_file(c, err);
	}
	if (rc == 0) {
		rc = qmp_client_getfd(c, DOM_FDNAME, fd, DOM_QMP_MS, err, AGENT_ERR_LEN);
	}
	if (rc == 0) {
		rc = simple_cmd(c, "migrate-incoming", "uri", "fd:" DOM_FDNAME, err);
		incoming = rc == 0;
	}
	if (rc == 0) {
		rc = qmp_client_migrate_wait(c, &mi, 120000, err, AGENT_ERR_LEN);
	}
	if (rc == 0) {
		rc = wait_status(g, c, "paused", 10000, err);
	}
	if (rc == 0) {
		rc = simple_cmd(c, "cont", NULL, NULL, err);
	}
	if (rc == 0) {
		rc = wait_status(g, c, "running", 10000, err);
	}
	if (rc == 0) {
		/* The guest's MAC now sits behind another port: tell the
		 * network at once (RARP rounds), as after a live migration. */
		json_object *a = json_object_new_object();

		json_object_object_add(a, "initial", json_object_new_int(50));
		json_object_object_add(a, "max", json_object_new_int(550));
		json_object_object_add(a, "rounds", json_object_new_int(5));
		json_object_object_add(a, "step", json_object_new_int(100));
		qmp_client_execute(c, "announce-self", a, NULL, DOM_QMP_MS, NULL, 0);
		json_object_put(a);
	}
out:
	if (rc < 0 && launched) {
		/* A failed incoming migration ends QEMU: its log says why. */
		char tail[200];

		bool died = !rec_alive(&r) || (c && qmp_client_poll(c, NULL, 0) < 0);

		force_quit(g, c, &r, NULL);
		after_exit(g, &r);
		log_tail(g, tail, sizeof(tail));
		if (incoming && died) {
			rc = -EBADMSG; /* QEMU refused the image and ended */
		}
		if (tail[0]) {
			agent_err(err, rc, "domain %s: restore from %s failed: %s", g->name, dir, tail);
		}
	}
	if (fd >= 0) {
		close(fd);
	}
	qmp_client_free(c);
	op_end(g, AGENT_GUEST_RUNNING);
	if (rc < 0) {
		guest_free(g);
		return rc;
	}
	*out = g;
	return 0;
}

/* ---- live migration ------------------------------------------------------- */

/*
 * Live migration is QEMU's pre-copy over a socket the agent core connected
 * to the destination host's agent, handed to QEMU with getfd on both ends
 * ("migrate fd:" / "migrate-incoming fd:"). It is a transaction: the source
 * ends paused in "postmigrate" and the destination paused with -S and
 * late-block-activate (it has not touched the disk); migrate_finish() then
 * resumes one side and quits the other, as the cluster decided.
 *
 * Cancelling: shutdown(fd) by the agent (or the peer going away) makes
 * QEMU's next write or read fail. A peer that vanishes without a reset is
 * caught by the stall bound: no byte moved for DOM_MIG_STALL_MS.
 */
#define DOM_MIG_FDNAME "hactl-mig"
#define DOM_MIG_POLL_MS 100
#define DOM_MIG_DOWNTIME_MS 300            /* QEMU's default downtime-limit */
#define DOM_MIG_DOWNTIME_MAX_MS 2000000    /* QEMU's bound */
#define DOM_MIG_STALL_MS 60000             /* no byte moved: the peer is gone */
#define DOM_MIG_MAX_MS (10 * 60 * 1000)    /* plus mig_bound_ms()'s allowance */
#define DOM_MIG_SLOW_BPS (10ULL << 20)     /* the slowest link the bound allows for */
#define DOM_MIG_LAUNCH_MS 30000
#define DOM_MIG_SETTLE_MS 10000            /* cancel, resume, paused */

enum dom_mig_mode {
	DOM_MIG_PRECOPY = 0,
	DOM_MIG_STOPCOPY,   /* paused for the whole transfer */
	DOM_MIG_MODE_MAX
};

static const char *const mig_mode_names[DOM_MIG_MODE_MAX] = {
	[DOM_MIG_PRECOPY] = "precopy", [DOM_MIG_STOPCOPY] = "stopcopy",
};

static const char *dom_mig_mode_str(enum dom_mig_mode m)
{
	return (unsigned)m < DOM_MIG_MODE_MAX ? mig_mode_names[m] : "unknown";
}

/*
 * Checks the options both ends are given. Post-copy is refused: once the
 * destination runs, the source no longer holds the whole guest, so a
 * failure after that point loses it, and the cluster could no longer
 * abort the transaction.
 */
static int mig_opts_check(const struct agent_guest *g, const struct agent_mig_opts *o,
			  enum dom_mig_mode *mode, char *err)
{
	const char *m = o ? o->mode : NULL;

	*mode = DOM_MIG_PRECOPY;
	if (m && strcmp(m, "postcopy") == 0) {
		return agent_err(err, -EOPNOTSUPP, "domain %s: post-copy migration not supported "
				 "(the source must stay whole until the commit)", g->name);
	}
	if (m && strcmp(m, dom_mig_mode_str(DOM_MIG_STOPCOPY)) == 0) {
		*mode = DOM_MIG_STOPCOPY;
	} else if (m && strcmp(m, dom_mig_mode_str(DOM_MIG_PRECOPY)) != 0) {
		return agent_err(err, -EINVAL, "domain %s: unknown migration mode '%s'", g->name, m);
	}
	if (o && o->max_downtime_ms > DOM_MIG_DOWNTIME_MAX_MS) {
		return agent_err(err, -EINVAL, "domain %s: max downtime %u ms above %u", g->name,
				 o->max_downtime_ms, DOM_MIG_DOWNTIME_MAX_MS);
	}
	return 0;
}

/* query-migrate with what the progress needs beyond qmp_migrate_info. */
struct mig_info {
	struct qmp_migrate_info q;
	char status[32];                /* QEMU's word ("active", "device", ...) */
	uint64_t expected_downtime_ms;
	uint64_t dirty_pages_rate;      /* pages/s */
	uint64_t page_size;
};

static uint64_t jobj_u64(json_object *o, const char *key)
{
	int64_t v = get_jint(o, key, 0);

	return v > 0 ? (uint64_t)v : 0;
}

/*
 * One query-migrate. -ETIMEDOUT is not a failure of the migration: the
 * monitor does not answer while the migration holds QEMU's big lock (the
 * source's switchover; the destination loading without a pause), which on
 * a loaded host can take seconds. The late reply is skipped by the client.
 */
static int mig_query(struct qmp_client *c, struct mig_info *mi, char *err)
{
	json_object *ret = NULL, *ram;
	int rc;

	memset(mi, 0, sizeof(*mi));
	rc = qmp_client_execute(c, "query-migrate", NULL, &ret, DOM_QMP_MS, err,
				err ? AGENT_ERR_LEN : 0);
	if (rc < 0) {
		return rc;
	}
	rc = qmp_migrate_info_parse(ret, &mi->q);
	if (rc < 0) {
		json_object_put(ret);
		return agent_err(err, rc, "qmp query-migrate: malformed reply");
	}
	copy_jstr(mi->status, sizeof(mi->status), ret, "status");
	mi->expected_downtime_ms = jobj_u64(ret, "expected-downtime");
	if (json_object_object_get_ex(ret, "ram", &ram) &&
	    json_object_is_type(ram, json_type_object)) {
		mi->dirty_pages_rate = jobj_u64(ram, "dirty-pages-rate");
		mi->page_size = jobj_u64(ram, "page-size");
	}
	json_object_put(ret);
	return 0;
}

static void mig_progress_fill(struct agent_mig_progress *p, const struct mig_info *mi)
{
	p->total_bytes = mi->q.ram_total;
	p->transferred_bytes = mi->q.ram_transferred;
	p->remaining_bytes = mi->q.ram_remaining;
	p->rounds = (uint32_t)mi->q.dirty_sync_count;
	p->total_ms = mi->q.total_time_ms;
	/* a completed migration reports neither: the last measure stays */
	if (mi->q.status != QMP_MIGRATE_COMPLETED || mi->dirty_pages_rate) {
		p->dirty_rate_bps = mi->dirty_pages_rate * (mi->page_size ? mi->page_size : 4096);
	}
	if (mi->q.status != QMP_MIGRATE_COMPLETED || mi->expected_downtime_ms) {
		p->expected_downtime_ms = (uint32_t)mi->expected_downtime_ms;
	}
	if (mi->q.status == QMP_MIGRATE_COMPLETED) {
		p->downtime_ms = (uint32_t)mi->q.downtime_ms;
		p->remaining_bytes = 0;
	}
}

/*
 * How long a migration may take before it is given up (one that never
 * converges: the guest dirties memory faster than the link carries it):
 * 10 minutes plus three passes over the guest's RAM at the bandwidth cap,
 * or at DOM_MIG_SLOW_BPS when there is none or it is faster.
 */
static uint64_t mig_bound_ms(const struct agent_guest *g, const struct agent_mig_opts *o)
{
	uint64_t bps = o && o->bandwidth_bps && o->bandwidth_bps < DOM_MIG_SLOW_BPS ?
		o->bandwidth_bps : DOM_MIG_SLOW_BPS;

	return DOM_MIG_MAX_MS + 3 * (g->mem_kib * 1024 / bps) * 1000;
}

/* Bytes the kernel received on @fd: the destination's progress, which
 * QEMU does not report there. -1 when @fd is not a TCP socket (a pipe
 * or a socketpair from the agent's own transport). */
static int64_t sock_bytes_received(int fd)
{
	struct tcp_info ti;
	socklen_t len = sizeof(ti);

	memset(&ti, 0, sizeof(ti));
	if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len) < 0 ||
	    len < offsetof(struct tcp_info, tcpi_bytes_received) + sizeof(ti.tcpi_bytes_received)) {
		return -1;
	}
	return (int64_t)(ti.tcpi_bytes_received & INT64_MAX);
}

static int set_capability(struct qmp_client *c, const char *cap, bool on, char *err)
{
	json_object *args = json_object_new_object(), *caps = json_object_new_array(),
		*one = json_object_new_object();
	int rc;

	if (args == NULL || caps == NULL || one == NULL) {
		json_object_put(args);
		json_object_put(caps);
		json_object_put(one);
		return agent_err(err, -ENOMEM, "qmp migrate-set-capabilities: out of memory");
	}
	json_object_object_add(one, "capability", json_object_new_string(cap));
	json_object_object_add(one, "state", json_object_new_boolean(on));
	json_object_array_add(caps, one);
	json_object_object_add(args, "capabilities", caps);
	rc = qmp_client_execute(c, "migrate-set-capabilities", args, NULL, DOM_QMP_MS, err,
				err ? AGENT_ERR_LEN : 0);
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
static int announce(struct qmp_client *c, char *err)
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

/* Runs the guest (again) after a migration that failed or was aborted.
 * QEMU restarts a source it had running by itself once the migration
 * thread is done; "finish-migrate" is that thread's last moment. */
static int resume_guest(struct agent_guest *g, struct qmp_client *c, char *err)
{
	uint64_t deadline = ha_mono_ms() + DOM_MIG_SETTLE_MS;
	char st[32];
	bool running;
	int rc;

	for (;;) {
		rc = qmp_client_query_status(c, st, sizeof(st), &running, DOM_QMP_MS, err,
					     AGENT_ERR_LEN);
		if (rc < 0 || running) {
			return rc;
		}
		if (strcmp(st, "finish-migrate") != 0 && strcmp(st, "inmigrate") != 0) {
			break;
		}
		if (ha_mono_ms() > deadline) {
			return agent_err(err, -ETIMEDOUT, "domain %s: still %s after %d ms", g->name,
					 st, DOM_MIG_SETTLE_MS);
		}
		ha_sleep_ms(20);
	}
	rc = simple_cmd(c, "cont", NULL, NULL, err);
	if (rc == 0) {
		rc = wait_status(g, c, "running", DOM_MIG_SETTLE_MS, err);
	}
	return rc;
}

/* Cancels an outgoing migration and waits until QEMU says it ended. */
static void mig_cancel(struct qmp_client *c)
{
	uint64_t deadline = ha_mono_ms() + DOM_MIG_SETTLE_MS;
	struct mig_info mi;

	simple_cmd(c, "migrate_cancel", NULL, NULL, NULL);
	while (mig_query(c, &mi, NULL) == 0 && ha_mono_ms() < deadline &&
	       (mi.q.status == QMP_MIGRATE_SETUP || mi.q.status == QMP_MIGRATE_ACTIVE ||
		strcmp(mi.status, "cancelling") == 0)) {
		ha_sleep_ms(20);
	}
}

/* Waits for the next poll: DOM_MIG_POLL_MS, or less when QEMU reports a
 * change of the migration's state (the MIGRATION event). */
static void mig_nap(struct qmp_client *c)
{
	if (qmp_client_wait_event(c, "MIGRATION", NULL, DOM_MIG_POLL_MS, NULL, 0) < 0) {
		/* a timeout, or a monitor that went away: the next query says */
	}
}

static int dom_migrate_send(struct agent_guest *g, int fd, const struct agent_mig_opts *o,
			    struct agent_mig_progress *p, char *err)
{
	struct agent_mig_progress scratch;
	struct qmp_migrate_tuning t = { .events = true };
	struct dom_record r;
	struct qmp_client *c = NULL;
	struct mig_info mi;
	enum dom_mig_mode mode;
	uint64_t t0, t_stop = 0, last_move, last_answer, moved = 0, now, bound;
	bool was_running = false, stopped = false, fd_given = false, started = false;
	bool done = false;
	char st[32], logp[PATH_MAX], qerr[AGENT_ERR_LEN] = "";
	off_t log_from = 0;
	struct stat sb;
	int rc;

	if (p == NULL) {
		p = &scratch;
	}
	memset(p, 0, sizeof(*p));
	rc = mig_opts_check(g, o, &mode, err);
	if (rc < 0) {
		return rc;
	}
	bound = mig_bound_ms(g, o);
	if (rec_path(g, "qemu.log", logp, sizeof(logp)) == 0 && stat(logp, &sb) == 0) {
		log_from = sb.st_size;
	}
	if (fd < 0) {
		return agent_err(err, -EBADF, "domain %s: no migration stream", g->name);
	}
	if (guest_running(g, &r) < 0) {
		return agent_err(err, -ESRCH, "domain %s: not running", g->name);
	}
	op_begin(g, AGENT_GUEST_RUNNING);
	rc = qmp_open(g, DOM_CONNECT_MS, &c, err);
	if (rc < 0) {
		goto out;
	}
	rc = qmp_client_query_status(c, st, sizeof(st), &was_running, DOM_QMP_MS, err,
				     AGENT_ERR_LEN);
	if (rc == 0 && strcmp(st, "postmigrate") == 0) {
		rc = agent_err(err, -EBUSY, "domain %s: an earlier migration awaits its commit or "
			       "abort", g->name);
	}
	if (rc < 0) {
		goto out;
	}
	t.downtime_limit_ms = o && o->max_downtime_ms ? o->max_downtime_ms : DOM_MIG_DOWNTIME_MS;
	t.max_bandwidth = o && o->bandwidth_bps ? o->bandwidth_bps : DOM_BANDWIDTH_MAX;
	t.auto_converge = o && o->auto_converge;
	t.xbzrle = o && o->xbzrle;
	rc = qmp_client_migrate_tune(c, &t, DOM_QMP_MS, err, AGENT_ERR_LEN);
	if (rc == 0) {
		rc = qmp_client_getfd(c, DOM_MIG_FDNAME, fd, DOM_QMP_MS, err, AGENT_ERR_LEN);
		fd_given = rc == 0;
	}
	if (rc < 0) {
		goto out;
	}
	t0 = ha_mono_ms();
	if (mode == DOM_MIG_STOPCOPY && was_running) {
		rc = simple_cmd(c, "stop", NULL, NULL, err);
		if (rc < 0) {
			goto out;
		}
		stopped = true;
		t_stop = t0;
	}
	rc = simple_cmd(c, "migrate", "uri", "fd:" DOM_MIG_FDNAME, err);
	if (rc < 0) {
		goto out;
	}
	started = true;
	fd_given = false; /* QEMU took it */
	last_move = last_answer = t0;
	for (;;) {
		rc = mig_query(c, &mi, qerr);
		now = ha_mono_ms();
		if (rc == -ETIMEDOUT && now - last_answer < DOM_MIG_STALL_MS) {
			continue; /* see mig_query() */
		}
		if (rc < 0) {
			agent_err(err, rc, "domain %s: %s", g->name, qerr);
			goto out;
		}
		last_answer = now;
		mig_progress_fill(p, &mi);
		if (mi.q.status == QMP_MIGRATE_COMPLETED) {
			break;
		}
		if (mi.q.status == QMP_MIGRATE_FAILED) {
			char why[160] = "";

			/* error-desc, else what QEMU logged since the start */
			if (mi.q.error[0] == 0 && rec_path(g, "qemu.log", logp, sizeof(logp)) == 0) {
				file_tail(logp, log_from, why, sizeof(why));
			}
			rc = agent_err(err, -EIO, "domain %s: migration failed: %s", g->name,
				       mi.q.error[0] ? mi.q.error : why[0] ? why : "QEMU gave no reason");
			goto out;
		}
		if (mi.q.status == QMP_MIGRATE_CANCELLED) {
			rc = agent_err(err, -ECANCELED, "domain %s: migration cancelled", g->name);
			goto out;
		}
		if (mi.q.ram_transferred != moved) {
			moved = mi.q.ram_transferred;
			last_move = now;
		}
		if (now - last_move > DOM_MIG_STALL_MS) {
			mig_cancel(c);
			rc = agent_err(err, -ETIMEDOUT, "domain %s: migration stalled: no byte sent for "
				       "%d ms (%" PRIu64 " of %" PRIu64 " bytes)", g->name,
				       DOM_MIG_STALL_MS, mi.q.ram_transferred, mi.q.ram_total);
			goto out;
		}
		if (now - t0 > bound) {
			mig_cancel(c);
			rc = agent_err(err, -ETIMEDOUT, "domain %s: migration did not converge within "
				       "%" PRIu64 " s (%u rounds, dirty %" PRIu64 " bytes/s)", g->name,
				       bound / 1000, p->rounds, p->dirty_rate_bps);
			goto out;
		}
		mig_nap(c);
	}
	/* "completed" comes a moment before QEMU has computed the figures
	 * and left finish-migrate for postmigrate */
	for (uint64_t until = ha_mono_ms() + DOM_MIG_SETTLE_MS;;) {
		bool running;

		if (qmp_client_query_status(c, st, sizeof(st), &running, DOM_QMP_MS, NULL, 0) < 0 ||
		    strcmp(st, "finish-migrate") != 0 || ha_mono_ms() > until) {
			break;
		}
		ha_sleep_ms(5);
	}
	if (mig_query(c, &mi, NULL) == 0) {
		mig_progress_fill(p, &mi);
	}
	if (stopped) {
		p->downtime_ms = (uint32_t)(ha_mono_ms() - t_stop);
	}
	done = true;
out:
	if (rc < 0 && c) {
		if (fd_given) {
			/* QEMU keeps a named fd until used: the stream stays open */
			simple_cmd(c, "closefd", "fdname", DOM_MIG_FDNAME, NULL);
		}
		if (started && rec_alive(&r)) {
			mig_cancel(c);
		}
		/* the source stays runnable: any failure resumes it */
		if ((was_running || stopped) && rec_alive(&r)) {
			resume_guest(g, c, NULL);
		}
	}
	qmp_client_free(c);
	op_end(g, done ? AGENT_GUEST_PAUSED : was_running ? AGENT_GUEST_RUNNING :
	       AGENT_GUEST_PAUSED);
	return rc;
}

/* rm -r of the run dir (nothing of the shared storage). */
static int run_dir_remove(const struct agent_guest *g, char *err)
{
	if (nftw(g->run_dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS | FTW_MOUNT) < 0 &&
	    errno != ENOENT) {
		return agent_err(err, -errno, "domain %s: removing %s: %s", g->name, g->run_dir,
				 strerror(errno));
	}
	return 0;
}

static int dom_migrate_recv(struct agent_driver *d, const struct agent_guest_spec *spec, int fd,
			    const struct agent_mig_opts *o, struct agent_guest **out,
			    struct agent_mig_progress *p, char *err)
{
	struct agent_mig_progress scratch;
	struct qmp_migrate_tuning t = { .events = true };
	struct launch lo = { .incoming = true };
	struct agent_guest *g;
	struct dom_record r;
	struct qmp_client *c = NULL;
	struct mig_info mi;
	enum dom_mig_mode mode;
	uint64_t t0, last_move, last_answer, now, bound;
	int64_t base, got, moved = 0;
	bool launched = false, incoming = false;
	char qerr[AGENT_ERR_LEN] = "";
	int rc;

	*out = NULL;
	if (p == NULL) {
		p = &scratch;
	}
	memset(p, 0, sizeof(*p));
	rc = guest_new(d, spec, true, &g, err);
	if (rc < 0) {
		return rc;
	}
	rc = files_check(g, err);
	if (rc == 0) {
		rc = mig_opts_check(g, o, &mode, err);
	}
	if (rc == 0 && fd < 0) {
		rc = agent_err(err, -EBADF, "domain %s: no migration stream", g->name);
	}
	if (rc < 0) {
		guest_free(g);
		return rc;
	}
	op_begin(g, AGENT_GUEST_STARTING);
	/* what the source sends while QEMU starts waits in the socket: counted */
	base = sock_bytes_received(fd);
	if (guest_running(g, &r) == 0) {
		rc = agent_err(err, -EBUSY, "domain %s: already running here (pid %d)", g->name,
			       (int)r.pid);
		goto out;
	}
	rc = launch(g, &lo, &r, DOM_MIG_LAUNCH_MS, err);
	if (rc < 0) {
		goto out;
	}
	launched = true;
	rc = qmp_open(g, DOM_CONNECT_MS, &c, err);
	/* Both ends agree on what changes the stream (xbzrle). With
	 * late-block-activate the destination leaves the disk on the shared
	 * storage alone (no open for writing, no lock) until cont. */
	t.xbzrle = o && o->xbzrle;
	if (rc == 0) {
		rc = qmp_client_migrate_tune(c, &t, DOM_QMP_MS, err, AGENT_ERR_LEN);
	}
	if (rc == 0) {
		rc = set_capability(c, "late-block-activate", true, err);
	}
	if (rc == 0) {
		rc = qmp_client_getfd(c, DOM_MIG_FDNAME, fd, DOM_QMP_MS, err, AGENT_ERR_LEN);
	}
	if (rc < 0) {
		goto out;
	}
	rc = simple_cmd(c, "migrate-incoming", "uri", "fd:" DOM_MIG_FDNAME, err);
	if (rc < 0) {
		goto out;
	}
	incoming = true;
	bound = mig_bound_ms(g, o);
	t0 = last_move = last_answer = ha_mono_ms();
	for (;;) {
		rc = mig_query(c, &mi, qerr);
		now = ha_mono_ms();
		if (rc == -ETIMEDOUT && now - last_answer < DOM_MIG_STALL_MS) {
			continue; /* see mig_query() */
		}
		if (rc < 0) {
			/* QEMU ends itself when the stream fails: see out */
			agent_err(err, rc, "domain %s: %s", g->name, qerr);
			goto out;
		}
		last_answer = now;
		got = base >= 0 ? sock_bytes_received(fd) - base : 0;
		p->transferred_bytes = got > 0 ? (uint64_t)got : 0;
		p->total_ms = now - t0;
		if (mi.q.status == QMP_MIGRATE_COMPLETED) {
			break;
		}
		if (mi.q.status == QMP_MIGRATE_FAILED || mi.q.status == QMP_MIGRATE_CANCELLED) {
			rc = agent_err(err, -EIO, "domain %s: incoming migration %s%s%s", g->name,
				       mi.status, mi.q.error[0] ? ": " : "", mi.q.error);
			goto out;
		}
		/* a stall is seen only on TCP; the source and the bound catch
		 * the rest (the source's end closes the stream: QEMU ends) */
		if (got != moved || base < 0) {
			moved = got;
			last_move = now;
		}
		if (now - last_move > DOM_MIG_STALL_MS || now - t0 > bound) {
			rc = agent_err(err, -ETIMEDOUT, "domain %s: incoming migration %s after %" PRIu64
				       " ms (%" PRIu64 " bytes received)", g->name,
				       now - last_move > DOM_MIG_STALL_MS ? "stalled" : "unfinished",
				       now - t0, p->transferred_bytes);
			goto out;
		}
		mig_nap(c);
	}
	/* -S: QEMU keeps the guest paused after the stream */
	rc = wait_status(g, c, "paused", DOM_MIG_SETTLE_MS, err);
	p->total_ms = ha_mono_ms() - t0;
	got = base >= 0 ? sock_bytes_received(fd) - base : 0;
	p->transferred_bytes = got > 0 ? (uint64_t)got : 0;
out:
	if (rc < 0 && launched) {
		char tail[200];
		bool died = !rec_alive(&r) || (c && qmp_client_poll(c, NULL, 0) < 0);

		force_quit(g, c, &r, NULL);
		after_exit(g, &r);
		log_tail(g, tail, sizeof(tail));
		if (incoming && died && tail[0]) {
			/* a failed incoming migration ends QEMU: its log says why */
			agent_err(err, -EIO, "domain %s: incoming migration failed: %s", g->name, tail);
			rc = -EIO;
		}
		run_dir_remove(g, NULL);
	}
	qmp_client_free(c);
	op_end(g, AGENT_GUEST_PAUSED);
	if (rc < 0) {
		guest_free(g);
		return rc;
	}
	*out = g;
	return 0;
}

/* Quits the side that lost: the source after a commit, the destination
 * after an abort. It must be paused: a running guest is never discarded. */
static int mig_discard(struct agent_guest *g, bool source, char *err)
{
	struct dom_record r;
	struct qmp_client *c = NULL;
	struct mig_info mi;
	char st[32] = "";
	bool running = false;
	int rc = 0;

	op_begin(g, AGENT_GUEST_STOPPING);
	if (guest_running(g, &r) < 0) {
		if (rec_read(g, &r) < 0) {
			memset(&r, 0, sizeof(r));
		}
		after_exit(g, &r);
		rc = run_dir_remove(g, err);
		goto out;
	}
	rc = qmp_open(g, DOM_CONNECT_MS, &c, err);
	if (rc == 0) {
		rc = qmp_client_query_status(c, st, sizeof(st), &running, DOM_QMP_MS, err,
					     AGENT_ERR_LEN);
	}
	if (rc == 0 && running) {
		rc = agent_err(err, -EBUSY, "domain %s: running here: a running guest is not "
			       "discarded", g->name);
	}
	if (rc == 0 && source && (mig_query(c, &mi, err) < 0 ||
				  mi.q.status != QMP_MIGRATE_COMPLETED)) {
		rc = agent_err(err, -EBUSY, "domain %s: no completed outgoing migration (%s): not "
			       "discarded", g->name, st);
	}
	if (rc < 0) {
		goto out;
	}
	/* Quitting leaves the disk alone: the source inactivated it when the
	 * stream completed, the destination never activated it. */
	rc = force_quit(g, c, &r, err);
	if (rc == 0) {
		after_exit(g, &r);
		rc = run_dir_remove(g, err);
	}
out:
	qmp_client_free(c);
	op_end(g, rc == 0 ? AGENT_GUEST_DEFINED : running ? AGENT_GUEST_RUNNING :
	       AGENT_GUEST_PAUSED);
	return rc;
}

/* Runs the side that won: the destination after a commit, the source
 * after an abort. */
static int mig_resume(struct agent_guest *g, bool source, char *err)
{
	struct dom_record r;
	struct qmp_client *c = NULL;
	char st[32] = "";
	bool running = false;
	int rc;

	if (guest_running(g, &r) < 0) {
		return agent_err(err, -ESRCH, "domain %s: QEMU is gone", g->name);
	}
	op_begin(g, AGENT_GUEST_PAUSED);
	rc = qmp_open(g, DOM_CONNECT_MS, &c, err);
	if (rc == 0) {
		rc = qmp_client_query_status(c, st, sizeof(st), &running, DOM_QMP_MS, err,
					     AGENT_ERR_LEN);
	}
	if (rc == 0 && !source && strcmp(st, "inmigrate") == 0) {
		/* cont would run it as soon as the stream ends: refuse */
		rc = agent_err(err, -EBUSY, "domain %s: the incoming migration is not complete",
			       g->name);
	}
	if (rc == 0 && !running) {
		rc = resume_guest(g, c, err);
	}
	if (rc == 0 && announce(c, NULL) < 0) {
		/* not fatal: the guest's own traffic teaches the switch too */
	}
	qmp_client_free(c);
	if (rc == 0) {
		g->stopped_by_us = false;
		mark_stopped(g, false);
	}
	op_end(g, rc == 0 ? AGENT_GUEST_RUNNING : AGENT_GUEST_PAUSED);
	return rc;
}

static int dom_migrate_finish(struct agent_guest *g, bool source, bool commit, char *err)
{
	if (source == commit) {
		return mig_discard(g, source, err);
	}
	return mig_resume(g, source, err);
}

const struct agent_driver_ops agent_driver_domain_ops = {
	.name = "domain",
	.probe = dom_probe,
	.create = dom_create,
	.attach = dom_attach,
	.start = dom_start,
	.stop = dom_stop,
	.kill = dom_kill,
	.destroy = dom_destroy,
	.state = dom_state,
	.usage = dom_usage,
	.checkpoint = dom_checkpoint,
	.restore = dom_restore,
	.guest_free = guest_free,
	.migrate_send = dom_migrate_send,
	.migrate_recv = dom_migrate_recv,
	.migrate_finish = dom_migrate_finish,
};
