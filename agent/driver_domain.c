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
 *    on spec->disk, QMP and the serial console on listening sockets we
 *    bind ourselves (any path length) and hand to QEMU as fd 3
 *    (run_dir/qmp.sock) and fd 4 (run_dir/console.sock, a chardev that
 *    also logs into run_dir/console.log, kept between runs like a
 *    container's), -pidfile run_dir/qemu.pid.
 *    The command line is built in driver_domain_qemu.c.
 *
 * What attach() needs after an agent restart lives in run_dir/domain.json:
 * the pid, its /proc start time (so that a recycled pid is not taken for
 * the guest), the tap, the accelerator and machine type.
 *
 * Checkpoints are QEMU migrations into a file: QMP stop, "migrate fd:" into
 * dir/memory (the fd passed with getfd, no shell), the disk copied while
 * the guest is paused, then cont or quit. Restore starts the same command
 * line with -S -incoming defer and feeds the file with migrate-incoming
 * (driver_domain_ckpt.c).
 *
 * Live migration is QEMU's pre-copy over the agent's socket, the same
 * getfd on both ends; a transaction in which both QEMUs end paused until
 * migrate_finish() resumes one and quits the other (driver_domain_mig.c,
 * docs/domains.md).
 *
 * This file: the guest object, the run directory's record, the operations
 * of a guest's life and the ops table; driver_domain.h lists the files.
 */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>

#include "driver.h"
#include "driver_domain.h"
#include "guestdef.h"
#include "ha_spawn.h"
#include "host_cgroup.h"
#include "host_net.h"
#include "host_proc.h"
#include "qmp_client.h"
#include "util.h"

#define DOM_NAME_MAX 64
#define DOM_MEM_MIN_KIB HA_GUEST_MEM_MIN_KIB  /* guestdef.h: 16 MiB */
#define DOM_MEM_MAX_KIB HA_GUEST_MEM_MAX_KIB  /* 64 GiB */
#define DOM_CPUS_MAX 64
#define DOM_GRACE_MS 2000          /* ACPI power button, then Ctrl-Alt-Del */

/* ---- the guest object ------------------------------------------------ */

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

void dom_guest_free(struct agent_guest *g)
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
int dom_guest_new(const struct agent_driver *d, const struct agent_guest_spec *spec,
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
		dom_guest_free(g);
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
bool dom_rec_alive(const struct dom_record *r)
{
	struct host_proc_stat ps;

	if (r->pid <= 1 || host_proc_stat_read(r->pid, &ps) < 0 || ps.starttime != r->starttime) {
		return false;
	}
	return !((ps.state == 'Z' || ps.state == 'X') && ps.threads <= 1);
}

/* Waits until the recorded process is gone; true when it is. */
bool dom_rec_wait_gone(const struct dom_record *r, uint32_t timeout_ms)
{
	uint64_t deadline = ha_mono_ms() + timeout_ms;
	int pfd = (int)syscall(SYS_pidfd_open, r->pid, 0);

	while (dom_rec_alive(r)) {
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
	return !dom_rec_alive(r);
}

/* ---- the run directory record ----------------------------------------- */

int dom_rec_write(const struct agent_guest *g, const struct dom_record *r)
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
	rc = dom_rec_path(g, DOM_RECORD, path, sizeof(path));
	if (rc == 0) {
		rc = ha_file_write_atomic(path, s, strlen(s));
	}
	json_object_put(o);
	return rc;
}

void dom_json_str(char *dst, size_t len, json_object *o, const char *key)
{
	json_object *v;

	dst[0] = 0;
	if (json_object_object_get_ex(o, key, &v) && json_object_is_type(v, json_type_string)) {
		snprintf(dst, len, "%s", json_object_get_string(v));
	}
}

int64_t dom_json_int(json_object *o, const char *key, int64_t def)
{
	json_object *v;

	if (json_object_object_get_ex(o, key, &v) && json_object_is_type(v, json_type_int)) {
		return json_object_get_int64(v);
	}
	return def;
}

/* Reads a small JSON object file (a record or a manifest). */
int dom_json_file_read(const char *path, json_object **out)
{
	_cleanup_free_ uint8_t *buf = NULL;
	json_tokener *tok;
	size_t len;
	int rc;

	*out = NULL;
	rc = ha_file_read(path, DOM_JSON_MAX, &buf, &len);
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

int dom_rec_read(const struct agent_guest *g, struct dom_record *r)
{
	char path[PATH_MAX];
	json_object *o;
	int64_t pid, st;
	int rc;

	memset(r, 0, sizeof(*r));
	rc = dom_rec_path(g, DOM_RECORD, path, sizeof(path));
	if (rc == 0) {
		rc = dom_json_file_read(path, &o);
	}
	if (rc < 0) {
		return rc;
	}
	pid = dom_json_int(o, "pid", -1);
	st = dom_json_int(o, "starttime", -1);
	dom_json_str(r->tap, sizeof(r->tap), o, "tap");
	dom_json_str(r->accel, sizeof(r->accel), o, "accel");
	dom_json_str(r->machine, sizeof(r->machine), o, "machine");
	json_object_put(o);
	if (pid <= 1 || pid > INT32_MAX || st < 0) {
		return -EBADMSG;
	}
	r->pid = (pid_t)pid;
	r->starttime = (uint64_t)st;
	return 0;
}

void dom_rec_remove(const struct agent_guest *g)
{
	static const char *const names[] = { DOM_RECORD, "qemu.pid", "qmp.sock", "console.sock" };
	char path[PATH_MAX];

	for (size_t i = 0; i < HA_ARRAY_SIZE(names); i++) {
		if (dom_rec_path(g, names[i], path, sizeof(path)) == 0) {
			unlink(path);
		}
	}
}

/* run_dir/stopped: the domain was stopped by the driver (state() says
 * stopped, not defined, in a later process). */
void dom_mark_stopped(const struct agent_guest *g, bool on)
{
	char path[PATH_MAX];
	int fd;

	if (dom_rec_path(g, "stopped", path, sizeof(path)) < 0) {
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

	return dom_rec_path(g, "stopped", path, sizeof(path)) == 0 && access(path, F_OK) == 0;
}

/* The record of a QEMU that runs now; -ESRCH when none does. */
int dom_guest_running(const struct agent_guest *g, struct dom_record *r)
{
	if (dom_rec_read(g, r) < 0 || !dom_rec_alive(r)) {
		return -ESRCH;
	}
	return 0;
}
/* ---- operations ---------------------------------------------------------- */

static int dom_probe(struct agent_driver *d, Hactl__HostFacts *facts)
{
	const char *qemu = d && d->cfg && d->cfg->qemu_path[0] ? d->cfg->qemu_path :
								  "qemu-system-x86_64";
	const char *argv[] = { qemu, "--version", NULL };
	char buf[512] = "";
	struct ha_spawn sp = { .argv = (char *const *)argv, .out = buf, .out_len = sizeof(buf),
			       .err = HA_SPAWN_ERR_TO_OUT, .timeout_ms = 10000 };
	struct ha_spawn_result r;
	int rc = ha_spawn_run(&sp, &r);

	if (rc < 0) {
		return rc;
	}
	if (r.exit_code != 0 || r.out_got == 0) {
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
	return dom_guest_new(d, spec, false, out, err);
}

int dom_files_check(const struct agent_guest *g, char *err)
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
	rc = dom_guest_new(d, spec, false, &g, err);
	if (rc < 0) {
		return rc;
	}
	if (dom_guest_running(g, &r) < 0) {
		dom_guest_free(g);
		return -ESRCH; /* an answer, not a failure: no message */
	}
	/* Alive: the guest is ours whether or not its monitor answers (a
	 * second copy must not be started); state() says failed when it
	 * does not, and stop() still works. */
	rc = dom_qmp_open(g, DOM_CONNECT_MS, &c, err);
	if (rc == 0) {
		struct qmp_status st;

		rc = qmp_client_query_status(c, &st, DOM_QMP_MS, err, AGENT_ERR_LEN);
		/* a paused guest (an operation of an agent that died) stays
		 * paused: whether to resume is the caller's decision */
		g->vm_state = rc < 0 ? AGENT_GUEST_FAILED : st.running ? AGENT_GUEST_RUNNING :
			      dom_vm_state_of(st.state);
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
	struct dom_launch lo = { .incoming = false };
	struct dom_record r;
	struct qmp_client *c = NULL;
	uint64_t deadline = ha_mono_ms() + timeout_ms;
	int rc;

	rc = dom_files_check(g, err);
	if (rc < 0) {
		return rc;
	}
	dom_op_begin(g, AGENT_GUEST_STARTING);
	rc = dom_launch(g, &lo, &r, timeout_ms, err);
	if (rc < 0) {
		goto out;
	}
	rc = dom_qmp_open(g, DOM_CONNECT_MS, &c, err);
	if (rc == 0) {
		uint64_t now = ha_mono_ms();

		rc = dom_wait_status(g, c, QMP_RUN_RUNNING, now < deadline ? (uint32_t)(deadline - now) : 0,
				 err);
	}
	if (rc < 0) {
		dom_force_quit(g, c, &r, NULL);
		dom_after_exit(g, &r);
	}
	qmp_client_free(c);
out:
	dom_op_end(g, AGENT_GUEST_RUNNING);
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
	    dom_rec_wait_gone(r, grace)) {
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

		dom_rec_wait_gone(r, now < deadline ? (uint32_t)(deadline - now) : 0);
	}
	json_object_put(args);
}

static int dom_stop(struct agent_guest *g, uint32_t timeout_ms, char *err)
{
	struct dom_record r;
	struct qmp_client *c = NULL;
	struct qmp_status st = { .running = false };
	int rc = 0;

	dom_op_begin(g, AGENT_GUEST_STOPPING);
	if (dom_guest_running(g, &r) < 0) {
		dom_clean_gone(g); /* gone already: clean up what it left */
		goto out;
	}
	if (dom_qmp_open(g, DOM_CONNECT_MS, &c, NULL) == 0 &&
	    qmp_client_query_status(c, &st, DOM_QMP_MS, NULL, 0) == 0 && timeout_ms > 0) {
		if (st.state == QMP_RUN_PAUSED &&
		    dom_simple_cmd(c, "cont", NULL, NULL, NULL) == 0) {
			/* stopped by hactl pause: let it run to shut down in
			 * order, as a thawed container does */
			st.running = true;
		}
		if (st.running) {
			graceful_stop(c, &r, timeout_ms);
		}
	}
	if (dom_rec_alive(&r)) {
		rc = dom_force_quit(g, c, &r, err);
	}
	if (rc == 0) {
		dom_after_exit(g, &r);
	}
	qmp_client_free(c);
out:
	if (rc == 0) {
		g->stopped_by_us = true;
		dom_mark_stopped(g, true);
	}
	dom_op_end(g, AGENT_GUEST_FAILED); /* alive after a failed stop: wedged */
	return rc;
}

/* hactl pause / resume: QMP stop or cont, and the run state that follows. */
static int dom_pause(struct agent_guest *g, bool on, char *err)
{
	struct dom_record r;
	struct qmp_client *c = NULL;
	int rc;

	if (dom_guest_running(g, &r) < 0) {
		return agent_err(err, -ESRCH, "domain %s: QEMU is not running", g->name);
	}
	dom_op_begin(g, on ? AGENT_GUEST_RUNNING : AGENT_GUEST_PAUSED);
	rc = dom_qmp_open(g, DOM_CONNECT_MS, &c, err);
	if (rc == 0) {
		rc = dom_simple_cmd(c, on ? "stop" : "cont", NULL, NULL, err);
	}
	if (rc == 0) {
		rc = dom_wait_status(g, c, on ? QMP_RUN_PAUSED : QMP_RUN_RUNNING, DOM_QMP_MS,
				     err);
	}
	qmp_client_free(c);
	/* failed: as it was before */
	dom_op_end(g, (rc == 0) == on ? AGENT_GUEST_PAUSED : AGENT_GUEST_RUNNING);
	return rc;
}

/* SIGKILL to the recorded QEMU through a pidfd taken before its start
 * time is checked, so a recycled pid is never hit. Reads only the record
 * file: safe beside an operation in flight (see driver.h). */
static int dom_kill(const struct agent_guest *g, char *err)
{
	struct dom_record r;
	int pfd, rc = 0;

	if (dom_rec_read(g, &r) < 0 || r.pid <= 1) {
		return agent_err(err, -ESRCH, "domain %s: no QEMU recorded", g->name);
	}
	pfd = (int)syscall(SYS_pidfd_open, r.pid, 0);
	if (pfd < 0) {
		return agent_err(err, -errno, "domain %s: QEMU %d: %s", g->name, (int)r.pid,
				 strerror(errno));
	}
	if (!dom_rec_alive(&r)) {
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

/* rm -r of the run dir (nothing of the shared storage). */
int dom_run_dir_remove(const struct agent_guest *g, char *err)
{
	if (nftw(g->run_dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS | FTW_MOUNT) < 0 &&
	    errno != ENOENT) {
		return agent_err(err, -errno, "domain %s: removing %s: %s", g->name, g->run_dir,
				 strerror(errno));
	}
	return 0;
}

static int dom_destroy(struct agent_guest *g, char *err)
{
	struct dom_record r;

	if (dom_guest_running(g, &r) == 0) {
		return agent_err(err, -EBUSY, "domain %s: still running (pid %d): stop it first",
				 g->name, (int)r.pid);
	}
	dom_clean_gone(g);
	/* The run dir is this host's; data_dir and the disk image on the
	 * shared storage belong to the guest and stay. */
	return dom_run_dir_remove(g, err);
}

static enum agent_guest_state dom_state(const struct agent_guest *g)
{
	struct dom_record r;

	if (__atomic_load_n(&g->busy, __ATOMIC_ACQUIRE)) {
		return (enum agent_guest_state)__atomic_load_n(&g->op_state, __ATOMIC_ACQUIRE);
	}
	if (dom_rec_read(g, &r) < 0) {
		return g->stopped_by_us || marked_stopped(g) ? AGENT_GUEST_STOPPED :
							       AGENT_GUEST_DEFINED;
	}
	if (!dom_rec_alive(&r)) {
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
	rc = dom_guest_running(g, &r);
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
	host_cgroup_limits(&g->cg, &out->lim);
	return 0;
}

const struct agent_driver_ops agent_driver_domain_ops = {
	.name = "domain",
	.probe = dom_probe,
	.create = dom_create,
	.attach = dom_attach,
	.start = dom_start,
	.stop = dom_stop,
	.kill = dom_kill,
	.pause = dom_pause,
	.destroy = dom_destroy,
	.state = dom_state,
	.usage = dom_usage,
	.checkpoint = dom_checkpoint,
	.restore = dom_restore,
	.guest_free = dom_guest_free,
	.migrate_send = dom_migrate_send,
	.migrate_recv = dom_migrate_recv,
	.migrate_finish = dom_migrate_finish,
};
