/*
 * driver_container.c - the container driver: an OpenVZ-style container on
 * stock Linux (namespaces + overlayfs + cgroups + veth), checkpointed and
 * restored with CRIU. docs/containers.md describes the result.
 *
 * start() mounts the writable layer and the overlay root, then starts the
 * container's init (driver_container_launch.c has how) and records it in
 * run_dir/pid; attach() and state() read it back.
 *
 * Files of a guest:
 *   run_dir/root         overlay mount point (lower = spec->rootfs, upper and
 *                        work in run_dir/layer)
 *   run_dir/layer        mount point of the writable layer, an ext4 image on
 *                        the shared storage (driver_container_layer.c)
 *   run_dir/pid          "pid=", "starttime=", "cgroup=", "veth=" lines
 *   run_dir/console.log  the container's /dev/console (a bind mount of this
 *                        file): init's stdout and stderr
 *   data_dir/layer.img   the writable layer; data_dir/layer.lock: the host
 *                        that has it mounted
 *   data_dir/upper, data_dir/work: the layout before the image, still used
 *                        by a guest that runs with it (and a migration of
 *                        such a guest), converted into an image at its next
 *                        start or restore
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <qb/qblog.h>

#include "driver_container.h"
#include "guestdef.h"
#include "host_proc.h"
#include "util.h"

#define PID_FILE_MAX 1024
#define STOP_KILL_MS 5000      /* forced part of stop() beyond its timeout */
#define POLL_MS 10
#define PAUSE_FREEZE_MS 10000  /* hactl pause: the freezer's bound */
#define COPY_TIMEOUT_MS 300000 /* copying or removing a writable layer */
#define CKPT_META "container.meta"
#define CKPT_FORMAT 1           /* images/ + upper/ (the old layout) */
#define CKPT_FORMAT_IMAGE 2     /* images/ + layer.tar */

struct agent_guest {
	struct agent_driver *d;
	struct agent_guest_spec spec; /* strings below are our own copies */
	char *strs[16];
	unsigned n_strs;
	char root[CTR_PATH];
	char pidfile[CTR_PATH];
	char console[CTR_PATH];
	char upper[CTR_PATH];         /* the overlay's: in the layer, or the */
	char work[CTR_PATH];          /* old layout's on data_dir (legacy) */
	struct ctr_layer layer;
	bool legacy;                  /* data_dir/upper, no image */
	bool pending;                 /* migration source after the layer's
				       * handover: the state is in its
				       * images, restored at an abort */
	char veth[IFNAMSIZ];
	struct host_cgroup cg;
	pid_t pid;                    /* 0: not running */
	unsigned long long starttime;
};

/* Every operation starts with an empty error text: a caller that reuses
 * its buffer never sees an earlier operation's message. */
static void err_clear(char *err)
{
	if (err != NULL) {
		err[0] = '\0';
	}
}

/* ---- spec ---------------------------------------------------------------- */

static bool name_valid(const char *s)
{
	size_t n = s ? strlen(s) : 0;

	if (n == 0 || n > CTR_NAME_MAX || strcmp(s, ".") == 0 || strcmp(s, "..") == 0) {
		return false;
	}
	for (size_t i = 0; i < n; i++) {
		if (!isalnum((unsigned char)s[i]) && s[i] != '_' && s[i] != '-' && s[i] != '.') {
			return false;
		}
	}
	return true;
}

/* An absolute path usable inside overlay mount options. */
static bool path_valid(const char *s)
{
	size_t n = s ? strlen(s) : 0;

	return n > 1 && n < CTR_PATH - 64 && s[0] == '/' && strpbrk(s, ",:\\\n") == NULL;
}

static int count_words(const char *s)
{
	int n = 0;
	bool in = false;

	for (; *s; s++) {
		if (*s == ' ' || *s == '\t') {
			in = false;
		} else if (!in) {
			in = true;
			n++;
		}
	}
	return n;
}

static int spec_check(const struct agent_guest_spec *s, char *err)
{
	struct stat st;
	int words;

	if (!name_valid(s->name)) {
		return agent_err(err, -EINVAL,
				 "spec: name '%s' must be 1-%d of [A-Za-z0-9_.-]",
				 s->name ? s->name : "", CTR_NAME_MAX);
	}
	if (!path_valid(s->rootfs)) {
		return agent_err(err, -EINVAL, "spec %s: rootfs must be an absolute path "
				 "without ',' ':' or '\\'", s->name);
	}
	if (stat(s->rootfs, &st) < 0 || !S_ISDIR(st.st_mode)) {
		return agent_err(err, -ENOENT, "spec %s: rootfs %s is not a directory", s->name,
				 s->rootfs);
	}
	if (!path_valid(s->run_dir) || !path_valid(s->data_dir)) {
		return agent_err(err, -EINVAL, "spec %s: run_dir and data_dir must be absolute "
				 "paths without ',' ':' or '\\'", s->name);
	}
	if (s->command == NULL || strlen(s->command) >= CTR_CMD_MAX ||
	    (words = count_words(s->command)) == 0 || words > CTR_ARGS_MAX) {
		return agent_err(err, -EINVAL, "spec %s: command must have 1-%d words and "
				 "fewer than %d bytes", s->name, CTR_ARGS_MAX, CTR_CMD_MAX);
	}
	/* the bounds of [guest] memory (guestdef.h); 0 = no limit */
	if (s->mem_kib != 0 && (s->mem_kib < HA_GUEST_MEM_MIN_KIB ||
				s->mem_kib > HA_GUEST_MEM_MAX_KIB)) {
		return agent_err(err, -ERANGE, "spec %s: mem %" PRIu64 " KiB outside %llu KiB..%llu GiB",
				 s->name, s->mem_kib, (unsigned long long)HA_GUEST_MEM_MIN_KIB,
				 (unsigned long long)HA_GUEST_MEM_MAX_KIB >> 20);
	}
	if (s->pids_max == 1 || s->pids_max > 4194304) {
		return agent_err(err, -ERANGE, "spec %s: pids %u outside 2..4194304 (0 = none)",
				 s->name, s->pids_max);
	}
	if (s->cpu_weight > 500000) {
		return agent_err(err, -ERANGE, "spec %s: cpu weight %u above 500000 (OpenVZ "
				 "cpuunits)", s->name, s->cpu_weight);
	}
	if (s->cpu_limit_pct > 100 * 4096) {
		return agent_err(err, -ERANGE, "spec %s: cpu limit %u%% too high", s->name,
				 s->cpu_limit_pct);
	}
	if (s->ip && s->ip[0] && !host_net_addr_valid(s->ip, true)) {
		return agent_err(err, -EINVAL, "spec %s: ip '%s' is not an address/prefix",
				 s->name, s->ip);
	}
	if (s->gateway && s->gateway[0] && !host_net_addr_valid(s->gateway, false)) {
		return agent_err(err, -EINVAL, "spec %s: gateway '%s' is not an address", s->name,
				 s->gateway);
	}
	if (s->ip && s->ip[0] && (s->bridge == NULL || s->bridge[0] == '\0')) {
		return agent_err(err, -EINVAL, "spec %s: an ip needs a bridge", s->name);
	}
	if (s->bridge && strlen(s->bridge) >= IFNAMSIZ) {
		return agent_err(err, -EINVAL, "spec %s: bridge name '%s' too long", s->name,
				 s->bridge);
	}
	return 0;
}

static const char *keep(struct agent_guest *g, const char *s)
{
	char *c;

	if (s == NULL || g->n_strs >= HA_ARRAY_SIZE(g->strs)) {
		return NULL;
	}
	c = strdup(s);
	if (c) {
		g->strs[g->n_strs++] = c;
	}
	return c;
}

static void guest_free(struct agent_guest *g)
{
	if (g == NULL) {
		return;
	}
	for (unsigned i = 0; i < g->n_strs; i++) {
		free(g->strs[i]);
	}
	free(g);
}

/* A guest object for @spec (checked, copied); no files touched. */
static int guest_new(struct agent_driver *d, const struct agent_guest_spec *spec,
		     struct agent_guest **out, char *err)
{
	struct agent_guest *g;
	int rc = spec_check(spec, err);

	if (rc < 0) {
		return rc;
	}
	g = calloc(1, sizeof(*g));
	if (g == NULL) {
		return agent_err(err, -ENOMEM, "out of memory");
	}
	g->d = d;
	g->spec = *spec;
	g->spec.name = keep(g, spec->name);
	g->spec.type = keep(g, spec->type);
	g->spec.rootfs = keep(g, spec->rootfs);
	g->spec.command = keep(g, spec->command);
	g->spec.ip = spec->ip && spec->ip[0] ? keep(g, spec->ip) : NULL;
	g->spec.gateway = spec->gateway && spec->gateway[0] ? keep(g, spec->gateway) : NULL;
	g->spec.bridge = spec->bridge && spec->bridge[0] ? keep(g, spec->bridge) : NULL;
	g->spec.run_dir = keep(g, spec->run_dir);
	g->spec.data_dir = keep(g, spec->data_dir);
	g->spec.kernel = g->spec.initrd = g->spec.disk = NULL;
	if (g->spec.disk_kib != 0 && (g->spec.disk_kib < CTR_LAYER_MIN_KIB ||
				      g->spec.disk_kib > CTR_LAYER_MAX_KIB)) {
		rc = agent_err(err, -ERANGE, "spec %s: disk quota %" PRIu64 " KiB outside "
			       "%llu KiB..%llu KiB", spec->name, g->spec.disk_kib,
			       (unsigned long long)CTR_LAYER_MIN_KIB,
			       (unsigned long long)CTR_LAYER_MAX_KIB);
		guest_free(g);
		return rc;
	}
	if (!g->spec.name || !g->spec.rootfs || !g->spec.command || !g->spec.run_dir ||
	    !g->spec.data_dir || (spec->ip && spec->ip[0] && !g->spec.ip)) {
		guest_free(g);
		return agent_err(err, -ENOMEM, "out of memory");
	}
	if ((rc = ctr_path_fmt(g->root, spec->run_dir, "root", err)) < 0 ||
	    (rc = ctr_path_fmt(g->pidfile, spec->run_dir, "pid", err)) < 0 ||
	    (rc = ctr_path_fmt(g->console, spec->run_dir, "console.log", err)) < 0 ||
	    (rc = ctr_layer_init(&g->layer, &g->spec, err)) < 0 ||
	    (rc = host_cgroup_init(&g->cg, host_cgroup_parent(), spec->name, err)) < 0) {
		guest_free(g);
		return rc;
	}
	g->legacy = ctr_layer_legacy(&g->layer);
	snprintf(g->upper, sizeof(g->upper), "%s", g->legacy ? g->layer.old_upper : g->layer.upper);
	snprintf(g->work, sizeof(g->work), "%s", g->legacy ? g->layer.old_work : g->layer.work);
	ctr_net_veth_name(spec->name, g->veth);
	*out = g;
	return 0;
}

/* ---- liveness ------------------------------------------------------------ */

static bool guest_alive(const struct agent_guest *g)
{
	return host_proc_alive(g->pid, g->starttime);
}

static int pidfile_write(struct agent_guest *g, char *err)
{
	char buf[PID_FILE_MAX];
	int n, rc;

	n = snprintf(buf, sizeof(buf), "pid=%d\nstarttime=%llu\ncgroup=%s\nveth=%s\n",
		     (int)g->pid, g->starttime, g->cg.rel, g->veth);
	if (n < 0 || n >= (int)sizeof(buf)) {
		return agent_err(err, -ENAMETOOLONG, "%s: record too long", g->pidfile);
	}
	rc = ha_file_write_atomic(g->pidfile, buf, (size_t)n);
	if (rc < 0) {
		return agent_err(err, rc, "writing %s: %s", g->pidfile, strerror(-rc));
	}
	return 0;
}

/* Reads run_dir/pid into g->pid and g->starttime; the file is not
 * trusted: bounded, every value checked. */
static int pidfile_read(struct agent_guest *g)
{
	char buf[PID_FILE_MAX], *line, *save = NULL;
	const char *cgroup = NULL;
	uint64_t pid = 0, start = 0;
	ssize_t n = host_read_small(g->pidfile, buf, sizeof(buf));

	g->pid = 0;
	g->starttime = 0;
	if (n < 0) {
		return (int)n;
	}
	for (line = strtok_r(buf, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		if (strncmp(line, "pid=", 4) == 0 &&
		    ha_parse_u64(line + 4, 2, INT_MAX, &pid) < 0) {
			return -EINVAL;
		}
		if (strncmp(line, "starttime=", 10) == 0 &&
		    ha_parse_u64(line + 10, 0, UINT64_MAX, &start) < 0) {
			return -EINVAL;
		}
		if (strncmp(line, "cgroup=", 7) == 0) {
			cgroup = line + 7;
		}
	}
	if (pid == 0) {
		return -EINVAL;
	}
	/* The cgroup it was started in, when the agent now has another
	 * parent ("/<parent>/<name>", the parent checked like the env). */
	if (cgroup && strcmp(cgroup, g->cg.rel) != 0) {
		size_t cl = strlen(cgroup), nl = strlen(g->spec.name);
		char parent[CTR_PATH];

		if (cl > nl + 2 && cl < sizeof(parent) && cgroup[0] == '/' &&
		    cgroup[cl - nl - 1] == '/' && strcmp(cgroup + cl - nl, g->spec.name) == 0) {
			memcpy(parent, cgroup + 1, cl - nl - 2);
			parent[cl - nl - 2] = '\0';
			if (host_cgroup_parent_valid(parent)) {
				host_cgroup_init(&g->cg, parent, g->spec.name, NULL);
			}
		}
	}
	g->pid = (pid_t)pid;
	g->starttime = start;
	return 0;
}

/* ---- mounts and leftovers ------------------------------------------------ */

static int overlay_mount(struct agent_guest *g, char *err)
{
	char opts[3 * CTR_PATH + 64];
	int n;

	n = snprintf(opts, sizeof(opts), "lowerdir=%s,upperdir=%s,workdir=%s",
		     g->spec.rootfs, g->upper, g->work);
	if (n < 0 || n >= (int)sizeof(opts)) {
		return agent_err(err, -ENAMETOOLONG, "overlay options too long");
	}
	if (mount("overlay", g->root, "overlay", MS_NODEV, opts) < 0) {
		return agent_err(err, -errno, "mounting the overlay on %s (%s): %s", g->root, opts,
				 strerror(errno));
	}
	/* Shared like the run directory (ctr_layer_run_dir_share()): a private copy
	 * of the overlay in a namespace made later would hold the layer. */
	return 0;
}

static void overlay_umount(struct agent_guest *g)
{
	/* Stacked mounts from earlier failures too; EINVAL: not a mount point. */
	for (int i = 0; i < 16 && umount2(g->root, MNT_DETACH) == 0; i++) {
	}
}

/*
 * Removes what a stopped (or dead) container leaves on the host: processes
 * still in its cgroups, the overlay mount, the veth, the cgroups, the pid
 * file. Keeps the first error.
 */
static int leftovers_clean(struct agent_guest *g, char *err)
{
	char e2[AGENT_ERR_LEN];
	int rc = 0, r;

	if (host_cgroup_frozen(&g->cg)) {
		host_cgroup_freeze(&g->cg, false, 0, NULL);
	}
	if ((r = host_cgroup_kill(&g->cg, STOP_KILL_MS, e2)) < 0 && rc == 0) {
		rc = agent_err(err, r, "%s", e2);
	}
	overlay_umount(g);
	/* Its processes (and so their mounts) are gone: the layer goes first,
	 * as a migration's destination waits for it. */
	if (!g->legacy && (r = ctr_layer_close(&g->layer, e2)) < 0 && rc == 0) {
		rc = agent_err(err, r, "%s", e2);
	}
	if ((r = ctr_net_teardown(g->veth, CTR_NET_STEP_MS, e2)) < 0 && rc == 0) {
		rc = agent_err(err, r, "%s", e2);
	}
	if ((r = host_cgroup_remove(&g->cg, STOP_KILL_MS, e2)) < 0 && rc == 0) {
		rc = agent_err(err, r, "%s", e2);
	}
	if (unlink(g->pidfile) < 0 && errno != ENOENT && rc == 0) {
		rc = agent_err(err, -errno, "removing %s: %s", g->pidfile, strerror(errno));
	}
	g->pid = 0;
	g->starttime = 0;
	return rc;
}

static int dirs_make(struct agent_guest *g, char *err)
{
	const char *dirs[] = { g->spec.run_dir, g->root, g->upper, g->work };
	int rc;

	/* upper and work: in the layer (ctr_layer_open() makes them) */
	for (size_t i = 0; i < (g->legacy ? HA_ARRAY_SIZE(dirs) : 2); i++) {
		rc = ha_mkdir_p(dirs[i], i == 0 || i == 1 ? 0700 : 0755);
		if (rc < 0) {
			return agent_err(err, rc, "mkdir %s: %s", dirs[i], strerror(-rc));
		}
		if (i == 0 && (rc = ctr_layer_run_dir_share(&g->layer, err)) < 0) {
			return rc;
		}
	}
	/* The container's root directory is the overlay's: 0755. */
	chmod(g->root, 0755);
	return 0;
}

/* Mounts the writable layer here; a guest still in the old layout is
 * converted (it is stopped cluster-wide: start, restore). */
static int layer_up(struct agent_guest *g, enum ctr_layer_take how, uint32_t wait_ms, char *err)
{
	int rc = ctr_layer_open(&g->layer, how, wait_ms, err);

	if (rc == 0 && g->legacy) {
		g->legacy = false;
		snprintf(g->upper, sizeof(g->upper), "%s", g->layer.upper);
		snprintf(g->work, sizeof(g->work), "%s", g->layer.work);
	}
	return rc;
}

/* The console log is kept between runs; above HOST_CONSOLE_KEEP bytes it is
 * moved to console.log.old when the guest (re)starts. */
static int console_touch(struct agent_guest *g, char *err)
{
	int fd, rc = host_log_rotate(g->console, HOST_CONSOLE_KEEP);

	if (rc < 0) {
		return agent_err(err, rc, "rotating %s: %s", g->console, strerror(-rc));
	}
	fd = open(g->console, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NOCTTY, 0640);
	if (fd < 0) {
		return agent_err(err, -errno, "opening %s: %s", g->console, strerror(errno));
	}
	close(fd);
	return 0;
}

/* What a guest needs of this host before its processes exist, for a
 * start, a restore and a migration's destination alike: its bridge, its
 * cgroups with the spec's limits, its console log. */
static int host_side_make(struct agent_guest *g, char *err)
{
	int rc = 0;

	if (g->spec.ip) {
		rc = host_net_bridge_check(g->spec.bridge, err);
	}
	if (rc == 0) {
		rc = host_cgroup_create(&g->cg, &g->spec, err);
	}
	if (rc == 0) {
		rc = console_touch(g, err);
	}
	return rc;
}

/* ---- operations ------------------------------------------------------------ */

static int ctr_probe(struct agent_driver *d, Hactl__HostFacts *facts)
{
	struct host_cgroup cg;
	char buf[4096];
	const char *criu = d && d->cfg && d->cfg->criu_path[0] ? d->cfg->criu_path : "criu";

	if (host_read_small("/proc/filesystems", buf, sizeof(buf)) < 0 ||
	    strstr(buf, "\toverlay\n") == NULL) {
		return -ENOTSUP;
	}
	if (host_cgroup_init(&cg, host_cgroup_parent(), "probe", NULL) < 0) {
		return -ENOTSUP;
	}
	/* the writable layer: an ext4 image on a loop device */
	if (ctr_tool_find("mkfs.ext4", buf, sizeof(buf)) < 0 ||
	    access("/dev/loop-control", F_OK) != 0) {
		return -ENOTSUP;
	}
	return ctr_criu_probe(criu, facts);
}

static int ctr_create(struct agent_driver *d, const struct agent_guest_spec *spec,
		      struct agent_guest **out, char *err)
{
	struct agent_guest *g;
	int rc;

	err_clear(err);
	rc = guest_new(d, spec, &g, err);

	if (rc < 0) {
		return rc;
	}
	rc = dirs_make(g, err);
	if (rc < 0) {
		guest_free(g);
		return rc;
	}
	*out = g;
	return 0;
}

static int ctr_attach(struct agent_driver *d, const struct agent_guest_spec *spec,
		      struct agent_guest **out, char *err)
{
	struct agent_guest *g;
	int rc;

	err_clear(err);
	rc = guest_new(d, spec, &g, err);

	if (rc < 0) {
		return rc;
	}
	if (pidfile_read(g) < 0 || !guest_alive(g)) {
		guest_free(g);
		return agent_err(err, -ESRCH, "%s is not running", spec->name);
	}
	*out = g;
	return 0;
}

static int ctr_start(struct agent_guest *g, uint32_t timeout_ms, char *err)
{
	uint64_t deadline = ha_mono_ms() + timeout_ms;
	char e2[AGENT_ERR_LEN];
	int rc;

	err_clear(err);
	if (guest_alive(g) || (pidfile_read(g) == 0 && guest_alive(g))) {
		return agent_err(err, -EALREADY, "%s is already running (pid %d)", g->spec.name,
				 (int)g->pid);
	}
	/* What a crash of an earlier instance may have left. */
	rc = leftovers_clean(g, err);
	if (rc == 0) {
		rc = dirs_make(g, err);
	}
	if (rc == 0) {
		rc = host_side_make(g, err);
	}
	if (rc == 0) {
		rc = layer_up(g, CTR_LAYER_FORCE, 0, err);
	}
	if (rc == 0) {
		rc = overlay_mount(g, err);
	}
	if (rc == 0) {
		struct ctr_ckpt_target t = { .spec = &g->spec, .cg = &g->cg, .root = g->root,
					     .veth = g->veth };
		uint64_t st = 0;

		rc = ctr_launch(&t, g->console, deadline, &g->pid, &st, err);
		g->starttime = st;
	}
	if (rc == 0) {
		rc = pidfile_write(g, err);
	}
	if (rc < 0) {
		leftovers_clean(g, e2);
	}
	return rc;
}

static bool wait_gone(struct agent_guest *g, uint64_t deadline)
{
	while (guest_alive(g)) {
		if (ha_mono_ms() >= deadline) {
			return false;
		}
		ha_sleep_ms(POLL_MS);
	}
	return true;
}

static int ctr_stop(struct agent_guest *g, uint32_t timeout_ms, char *err)
{
	uint64_t deadline = ha_mono_ms() + timeout_ms;
	int rc;

	err_clear(err);
	if (g->pid == 0) {
		pidfile_read(g);
	}
	if (guest_alive(g)) {
		if (host_cgroup_frozen(&g->cg)) {
			host_cgroup_freeze(&g->cg, false, 0, NULL);
		}
		/* pid 1 of a namespace gets SIGTERM only when it handles it. */
		kill(g->pid, SIGTERM);
		if (!wait_gone(g, deadline)) {
			kill(g->pid, SIGKILL);
		}
		/* Its death takes the whole pid namespace with it. */
		if (!wait_gone(g, ha_mono_ms() + STOP_KILL_MS)) {
			rc = agent_err(err, -ETIMEDOUT, "%s: init %d survived SIGKILL",
				       g->spec.name, (int)g->pid);
			leftovers_clean(g, NULL);
			return rc;
		}
	}
	return leftovers_clean(g, err);
}

/* The cgroup holds every process of the guest, whatever the operation in
 * flight does with them (CRIU's seized and stopped tree included); its
 * name is fixed when the object is made. A frozen v2 cgroup lets SIGKILL
 * through; a frozen v1 one delivers it at the thaw. */
static int ctr_kill(const struct agent_guest *g, char *err)
{
	int rc;

	err_clear(err);
	rc = host_cgroup_signal(&g->cg, SIGKILL, err);
	if (rc == 0 && !g->cg.v2 && host_cgroup_frozen(&g->cg)) {
		host_cgroup_freeze(&g->cg, false, 0, NULL);
	}
	return rc;
}

/* The freezer cgroup (v1 freezer.state, v2 cgroup.freeze) holds every
 * process of the guest: frozen, none of them runs until the thaw. */
static int ctr_pause(struct agent_guest *g, bool on, char *err)
{
	err_clear(err);
	if (g->pid == 0) {
		pidfile_read(g);
	}
	if (g->pending || !guest_alive(g)) {
		return agent_err(err, -ESRCH, "%s: not running here", g->spec.name);
	}
	return host_cgroup_freeze(&g->cg, on, PAUSE_FREEZE_MS, err);
}

static int ctr_destroy(struct agent_guest *g, char *err)
{
	char path[CTR_PATH];
	int rc;

	err_clear(err);
	if (g->pid == 0) {
		pidfile_read(g);
	}
	if (guest_alive(g)) {
		return agent_err(err, -EBUSY, "%s is running: stop it first", g->spec.name);
	}
	rc = leftovers_clean(g, err);
	if (rc == 0) {
		rc = ctr_layer_remove(&g->layer, err);
	}
	if (rc == 0) {
		ctr_layer_run_dir_unbind(&g->layer);
		rc = ctr_tree_remove(g->spec.run_dir, COPY_TIMEOUT_MS, err);
	}
	if (rc == 0) {
		rc = ctr_tree_remove(g->layer.old_upper, COPY_TIMEOUT_MS, err);
	}
	if (rc == 0) {
		rc = ctr_tree_remove(g->layer.old_work, COPY_TIMEOUT_MS, err);
	}
	/* data_dir itself only when nothing else (snapshots) lives there. */
	snprintf(path, sizeof(path), "%s", g->spec.data_dir);
	if (rc == 0 && rmdir(path) < 0 && errno != ENOENT && errno != ENOTEMPTY &&
	    errno != EEXIST) {
		rc = agent_err(err, -errno, "rmdir %s: %s", path, strerror(errno));
	}
	return rc;
}

static enum agent_guest_state ctr_state(const struct agent_guest *g)
{
	struct agent_guest *tmp;
	bool frozen;

	if (g->pending) {
		return AGENT_GUEST_PAUSED; /* in the images: held, not gone */
	}
	if (g->pid != 0) {
		if (!guest_alive(g)) {
			return AGENT_GUEST_STOPPED;
		}
		return host_cgroup_frozen(&g->cg) ? AGENT_GUEST_PAUSED : AGENT_GUEST_RUNNING;
	}
	/* An object from create(): the run dir may know better (a copy, as
	 * state() changes nothing). */
	tmp = malloc(sizeof(*tmp));
	if (tmp == NULL) {
		return AGENT_GUEST_STOPPED;
	}
	memcpy(tmp, g, sizeof(*tmp));
	if (pidfile_read(tmp) < 0 || !guest_alive(tmp)) {
		free(tmp);
		return AGENT_GUEST_STOPPED;
	}
	frozen = host_cgroup_frozen(&tmp->cg);
	free(tmp);
	return frozen ? AGENT_GUEST_PAUSED : AGENT_GUEST_RUNNING;
}

static int ctr_usage(struct agent_guest *g, struct agent_guest_usage *out)
{
	int rc;

	if (g->pid == 0) {
		pidfile_read(g);
	}
	if (!guest_alive(g)) {
		memset(out, 0, sizeof(*out));
		return -ESRCH;
	}
	rc = host_cgroup_usage(&g->cg, out);
	if (!g->legacy) {
		ctr_layer_usage(&g->layer, &out->disk_used_bytes, &out->disk_size_bytes);
	}
	return rc;
}

/* ---- checkpoint / restore ---------------------------------------------------- */

static int meta_write(struct agent_guest *g, const char *dir, char *err)
{
	char path[CTR_PATH], buf[512];
	int n, rc;

	if ((rc = ctr_path_fmt(path, dir, CKPT_META, err)) < 0) {
		return rc;
	}
	n = snprintf(buf, sizeof(buf), "format=%d\nname=%s\nveth=%s\n",
		     g->legacy ? CKPT_FORMAT : CKPT_FORMAT_IMAGE, g->spec.name, g->veth);
	rc = ha_file_write_atomic(path, buf, (size_t)n);
	return rc < 0 ? agent_err(err, rc, "writing %s: %s", path, strerror(-rc)) : 0;
}

/* The snapshot's own record: bounded, checked against the spec. */
static int meta_check(struct agent_guest *g, const char *dir, int *fmt_out, char *err)
{
	char path[CTR_PATH], buf[512], *line, *save = NULL;
	bool format = false, name = false;
	int rc;
	ssize_t n;

	if ((rc = ctr_path_fmt(path, dir, CKPT_META, err)) < 0) {
		return rc;
	}
	n = host_read_small(path, buf, sizeof(buf));
	if (n < 0) {
		return agent_err(err, (int)n, "restore %s: %s: %s", g->spec.name, path,
				 strerror((int)-n));
	}
	for (line = strtok_r(buf, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		if (strncmp(line, "format=", 7) == 0) {
			*fmt_out = atoi(line + 7);
			format = *fmt_out == CKPT_FORMAT || *fmt_out == CKPT_FORMAT_IMAGE;
		} else if (strncmp(line, "name=", 5) == 0) {
			name = strcmp(line + 5, g->spec.name) == 0;
		}
	}
	if (!format || !name) {
		return agent_err(err, -EINVAL, "restore %s: %s is not a format-%d or -%d "
				 "snapshot of %s", g->spec.name, path, CKPT_FORMAT,
				 CKPT_FORMAT_IMAGE, g->spec.name);
	}
	return 0;
}

static int ctr_checkpoint(struct agent_guest *g, const char *dir, unsigned flags, char *err)
{
	bool leave = flags & AGENT_CKPT_LEAVE_RUNNING;
	struct ctr_ckpt_target t;
	char images[CTR_PATH], upper[CTR_PATH], layer[CTR_PATH], e2[AGENT_ERR_LEN];
	uint32_t timeout = COPY_TIMEOUT_MS;
	uint64_t frozen_ms;
	bool was_frozen;
	int rc, r;

	err_clear(err);
	if (flags & ~(unsigned)AGENT_CKPT_LEAVE_RUNNING) {
		return agent_err(err, -EOPNOTSUPP, "checkpoint %s: only full dumps (flags 0x%x)",
				 g->spec.name, flags);
	}
	if (g->pid == 0) {
		pidfile_read(g);
	}
	if (!guest_alive(g)) {
		return agent_err(err, -ESRCH, "checkpoint %s: not running", g->spec.name);
	}
	if (dir == NULL || dir[0] != '/') {
		return agent_err(err, -EINVAL, "checkpoint %s: directory must be absolute",
				 g->spec.name);
	}
	if ((rc = ctr_path_fmt(images, dir, "images", err)) < 0 ||
	    (rc = ctr_path_fmt(upper, dir, "upper", err)) < 0 ||
	    (rc = ctr_path_fmt(layer, dir, CTR_LAYER_ARCHIVE, err)) < 0) {
		return rc;
	}
	if (access(images, F_OK) == 0 || access(upper, F_OK) == 0 || access(layer, F_OK) == 0) {
		return agent_err(err, -EEXIST, "checkpoint %s: %s already holds a snapshot",
				 g->spec.name, dir);
	}
	/* An agent restarted into a new mount namespace (deploy/local-cluster)
	 * does not see the layer its guest runs on: the same loop device is
	 * mounted again (one super block), as the lock is ours. */
	if (!g->legacy && !ctr_layer_mounted(&g->layer) &&
	    ((rc = ctr_layer_run_dir_share(&g->layer, err)) < 0 ||
	     (rc = ctr_layer_open(&g->layer, CTR_LAYER_WAIT, 0, err)) < 0)) {
		return rc;
	}
	if ((rc = ha_mkdir_p(images, 0700)) < 0) {
		return agent_err(err, rc, "checkpoint %s: mkdir %s: %s", g->spec.name, images,
				 strerror(-rc));
	}
	t = (struct ctr_ckpt_target){
		.spec = &g->spec, .cg = &g->cg, .root = g->root, .veth = g->veth,
		.criu_path = g->d && g->d->cfg && g->d->cfg->criu_path[0] ?
			g->d->cfg->criu_path : "criu",
		.pid = g->pid,
	};
	/*
	 * Frozen first: CRIU leaves a cgroup frozen that it found frozen, so
	 * memory (the dump) and storage (the archive of the layer, or the
	 * copy of the old layout's upper dir) are of the same instant; thawed
	 * right after the copy. Writing the metadata and syncing the file
	 * system (syncfs: every dirty page of the shared storage, not only
	 * this snapshot's) make that instant durable and need not stop the
	 * guest: the snapshot counts only once the caller commits it after
	 * this returns (common/snapshot.c).
	 */
	was_frozen = host_cgroup_frozen(&g->cg);
	frozen_ms = ha_mono_ms();
	rc = host_cgroup_freeze(&g->cg, true, 10000, err);
	if (rc < 0) {
		return rc;
	}
	rc = ctr_criu_dump(&t, images, leave, timeout, err);
	if (rc == 0) {
		rc = g->legacy ? ctr_tree_copy(g->upper, upper, COPY_TIMEOUT_MS, err) :
			ctr_layer_snapshot(&g->layer, layer, err);
	}
	if ((leave || rc < 0) && !was_frozen) {
		/* A failed migration dump leaves the guest running (CRIU resumes
		 * it on failure). */
		r = host_cgroup_freeze(&g->cg, false, 0, e2);
		if (r < 0 && rc == 0) {
			rc = agent_err(err, r, "%s", e2);
		}
		qb_log(LOG_INFO, "checkpoint %s: frozen for %" PRIu64 " ms", g->spec.name,
		       ha_mono_ms() - frozen_ms);
	}
	if (rc == 0) {
		rc = meta_write(g, dir, err);
	}
	if (rc == 0) {
		rc = ctr_sync(dir, true, err);
	}
	if (rc == 0 && !leave) {
		/* Migration: CRIU killed the tasks; tear down the host side. */
		wait_gone(g, ha_mono_ms() + STOP_KILL_MS);
		rc = leftovers_clean(g, err);
	}
	return rc;
}

static int ctr_restore(struct agent_driver *d, const struct agent_guest_spec *spec,
		       const char *dir, struct agent_guest **out, char *err)
{
	struct agent_guest *g;
	struct ctr_ckpt_target t;
	char images[CTR_PATH], upper[CTR_PATH], layer[CTR_PATH], e2[AGENT_ERR_LEN];
	pid_t pid = 0;
	int rc, fmt = 0;

	err_clear(err);
	rc = guest_new(d, spec, &g, err);
	if (rc < 0) {
		return rc;
	}
	if (pidfile_read(g) == 0 && guest_alive(g)) {
		rc = agent_err(err, -EBUSY, "restore %s: already running (pid %d)", spec->name,
			       (int)g->pid);
		guest_free(g);
		return rc;
	}
	if (dir == NULL || (rc = ctr_path_fmt(images, dir, "images", err)) < 0 ||
	    (rc = ctr_path_fmt(upper, dir, "upper", err)) < 0 ||
	    (rc = ctr_path_fmt(layer, dir, CTR_LAYER_ARCHIVE, err)) < 0 ||
	    (rc = meta_check(g, dir, &fmt, err)) < 0) {
		guest_free(g);
		return rc < 0 ? rc : -EINVAL;
	}
	rc = leftovers_clean(g, err);
	if (rc == 0 && (rc = ha_mkdir_p(spec->data_dir, 0755)) < 0) {
		agent_err(err, rc, "mkdir %s: %s", spec->data_dir, strerror(-rc));
	}
	/*
	 * The writable layer of the snapshot's instant replaces the current
	 * one: a new image (of the spec's size) made from the snapshot's
	 * archive, or from its upper dir (a snapshot from before the image).
	 * Either way the guest runs on an image from here on.
	 */
	if (rc == 0) {
		rc = dirs_make(g, err);
	}
	if (rc == 0) {
		rc = ctr_layer_replace(&g->layer, fmt == CKPT_FORMAT ? upper : layer,
				       fmt != CKPT_FORMAT, err);
	}
	if (rc == 0 && g->legacy) {
		ctr_tree_remove(g->layer.old_upper, COPY_TIMEOUT_MS, NULL);
		ctr_tree_remove(g->layer.old_work, COPY_TIMEOUT_MS, NULL);
	}
	if (rc == 0) {
		rc = layer_up(g, CTR_LAYER_FORCE, 0, err);
	}
	if (rc == 0) {
		rc = host_side_make(g, err);
	}
	if (rc == 0) {
		rc = overlay_mount(g, err);
	}
	if (rc == 0) {
		t = (struct ctr_ckpt_target){
			.spec = &g->spec, .cg = &g->cg, .root = g->root, .veth = g->veth,
			.criu_path = d && d->cfg && d->cfg->criu_path[0] ? d->cfg->criu_path :
									   "criu",
		};
		rc = ctr_criu_restore(&t, images, COPY_TIMEOUT_MS, false, &pid, err);
	}
	if (rc == 0) {
		struct host_proc_stat ps;

		g->pid = pid;
		if (host_proc_stat_read(pid, &ps) < 0) {
			rc = agent_err(err, -ESRCH, "restore %s: restored init %d vanished",
				       spec->name, (int)pid);
		} else {
			g->starttime = ps.starttime;
		}
	}
	if (rc == 0 && g->spec.ip) {
		rc = host_net_port_attach(g->veth, g->spec.bridge, err);
	}
	if (rc == 0) {
		rc = pidfile_write(g, err);
	}
	if (rc == 0 && g->spec.ip) {
		/* Restored on another host than the snapshot's (a failover):
		 * the bridges still send the guest's frames to the old port
		 * until it says where it is. Best effort, as after a migration. */
		ctr_net_announce(g->pid, g->spec.ip, e2);
	}
	if (rc < 0) {
		if (g->pid > 0) {
			kill(g->pid, SIGKILL);
		}
		leftovers_clean(g, e2);
		guest_free(g);
		return rc;
	}
	*out = g;
	return 0;
}

/* ---- for live migration (driver_container_mig.c) ------------------------------
 * The migration code keeps to these, so that the guest object stays private
 * to this file. */

int ctr_guest_target(struct agent_guest *g, struct ctr_ckpt_target *t)
{
	if (g->pid == 0) {
		pidfile_read(g);
	}
	*t = (struct ctr_ckpt_target){
		.spec = &g->spec, .cg = &g->cg, .root = g->root, .veth = g->veth,
		.criu_path = g->d && g->d->cfg && g->d->cfg->criu_path[0] ?
			g->d->cfg->criu_path : "criu",
		.pid = g->pid,
		.layer_image = !g->legacy,
	};
	return guest_alive(g) ? 0 : -ESRCH;
}

int ctr_guest_mount(struct agent_guest *g, enum ctr_layer_take how, uint32_t wait_ms, char *err)
{
	int rc = 0;

	if (!g->legacy) {
		rc = ctr_layer_open(&g->layer, how, wait_ms, err);
	}
	if (rc == 0) {
		overlay_umount(g);
		rc = overlay_mount(g, err);
	}
	g->pending = false;
	return rc;
}

int ctr_guest_handover(struct agent_guest *g, const char *note, char *err)
{
	int rc;

	if (g->legacy) {
		return 0; /* both hosts mount the old layout's directory */
	}
	/* SIGKILL lands while frozen; the state is in the images */
	rc = host_cgroup_kill(&g->cg, STOP_KILL_MS, err);
	if (rc == 0) {
		g->pending = true;
		unlink(g->pidfile);
		g->pid = 0;
		g->starttime = 0;
		overlay_umount(g);
		rc = ctr_layer_handover(&g->layer, note, err);
	}
	/* restored into these cgroups: not left frozen (v2 kills while
	 * frozen) */
	host_cgroup_freeze(&g->cg, false, 0, NULL);
	return rc;
}

int ctr_guest_settle(struct agent_guest *g, char *err)
{
	return g->legacy ? 0 : ctr_layer_settle(&g->layer, err);
}

void ctr_guest_set_pending(struct agent_guest *g, bool pending)
{
	g->pending = pending;
}

bool ctr_guest_pending(const struct agent_guest *g)
{
	return g->pending;
}

int ctr_guest_prepare(struct agent_driver *d, const struct agent_guest_spec *spec,
		      struct agent_guest **out, char *err)
{
	struct agent_guest *g;
	char e2[AGENT_ERR_LEN];
	int rc;

	rc = guest_new(d, spec, &g, err);
	if (rc < 0) {
		return rc;
	}
	if (pidfile_read(g) == 0 && guest_alive(g)) {
		rc = agent_err(err, -EBUSY, "%s already runs here (pid %d)", spec->name,
			       (int)g->pid);
		guest_free(g);
		return rc;
	}
	rc = leftovers_clean(g, err);
	if (rc == 0) {
		rc = dirs_make(g, err);
	}
	if (rc == 0) {
		rc = host_side_make(g, err);
	}
	/* The old layout is shared by both hosts as before; an image is
	 * mounted only once the source has let it go (ctr_guest_mount()). */
	if (rc == 0 && g->legacy) {
		rc = overlay_mount(g, err);
	}
	if (rc < 0) {
		leftovers_clean(g, e2);
		guest_free(g);
		return rc;
	}
	*out = g;
	return 0;
}

int ctr_guest_adopt(struct agent_guest *g, pid_t pid, char *err)
{
	struct host_proc_stat ps;

	g->pid = pid;
	if (host_proc_stat_read(pid, &ps) < 0) {
		g->pid = 0;
		return agent_err(err, -ESRCH, "%s: init %d vanished", g->spec.name, (int)pid);
	}
	g->starttime = ps.starttime;
	return pidfile_write(g, err);
}

int ctr_guest_clean(struct agent_guest *g, bool run_dir, char *err)
{
	int rc = leftovers_clean(g, err);

	if (rc == 0 && run_dir) {
		ctr_layer_run_dir_unbind(&g->layer);
		rc = ctr_tree_remove(g->spec.run_dir, COPY_TIMEOUT_MS, err);
	}
	return rc;
}

const struct agent_driver_ops agent_driver_container_ops = {
	.name = "container",
	.probe = ctr_probe,
	.create = ctr_create,
	.attach = ctr_attach,
	.start = ctr_start,
	.stop = ctr_stop,
	.kill = ctr_kill,
	.pause = ctr_pause,
	.destroy = ctr_destroy,
	.state = ctr_state,
	.usage = ctr_usage,
	.checkpoint = ctr_checkpoint,
	.restore = ctr_restore,
	.guest_free = guest_free,
	.migrate_send = ctr_mig_send,
	.migrate_recv = ctr_mig_recv,
	.migrate_finish = ctr_mig_finish,
};
