/*
 * host_cgroup.c - a guest's cgroups, v1 and v2 (host_cgroup.h): the host
 * layer's, used by the container driver for a container's processes and
 * by the domain driver for its QEMU.
 *
 * One cgroup per guest, <parent>/<name>, where parent is "hactl" or
 * $HACTL_CGROUP_PARENT (deploy/local-cluster gives each simulated host its
 * own, hactl-lc/nodeK, so that two hosts on one machine never share a
 * guest's cgroup during a migration between them).
 *
 * Where /sys/fs/cgroup is cgroup2 everything lives in the one unified
 * directory; otherwise the guest gets a directory in each v1 hierarchy it
 * uses (memory, pids, cpu, cpuacct, freezer), found in /proc/self/mountinfo
 * under /sys/fs/cgroup (a hybrid layout with an empty cgroup2 at
 * /sys/fs/cgroup/unified counts as v1).
 *
 * The OpenVZ limits map as:
 *   cpuunits U  -> cpu.shares U*1024/1000 (1000 -> 1024, the default) |
 *                  cpu.weight from those shares (runc's conversion)
 *   cpulimit P% -> cpu.cfs_quota_us P*1000 per 100000 us | cpu.max "P*1000 100000"
 *   memory      -> memory.limit_in_bytes (+ memsw: no swap beyond it) |
 *                  memory.max (+ memory.swap.max 0)
 *   numproc     -> pids.max
 */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <linux/magic.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <time.h>
#include <unistd.h>

#include "host_cgroup.h"
#include "host_proc.h"
#include "util.h"

#define CG_ROOT "/sys/fs/cgroup"
#define CG_DEFAULT_PARENT "hactl"
#define CG_POLL_MS 10
#define CFS_PERIOD_US 100000ULL

bool host_cgroup_parent_valid(const char *p)
{
	size_t len = strlen(p);
	const char *c;

	if (len == 0 || len > 200 || p[0] == '/' || p[len - 1] == '/' || strstr(p, "//")) {
		return false;
	}
	for (c = p; *c; c++) {
		if (!isalnum((unsigned char)*c) && *c != '_' && *c != '-' && *c != '.' &&
		    *c != '/') {
			return false;
		}
	}
	/* No "." or ".." components. */
	for (c = p; c; c = strchr(c, '/')) {
		if (*c == '/') {
			c++;
		}
		if ((c[0] == '.' && (c[1] == '/' || c[1] == '\0')) ||
		    (c[0] == '.' && c[1] == '.' && (c[2] == '/' || c[2] == '\0'))) {
			return false;
		}
	}
	return true;
}

const char *host_cgroup_parent(void)
{
	/* Read only: the agent sets no environment after its threads start. */
	const char *p = getenv("HACTL_CGROUP_PARENT");

	return p != NULL && host_cgroup_parent_valid(p) ? p : CG_DEFAULT_PARENT;
}

static bool has_opt(const char *opts, const char *want)
{
	size_t wl = strlen(want);
	const char *p = opts;

	while (p && *p) {
		size_t n = strcspn(p, ",");

		if (n == wl && strncmp(p, want, wl) == 0) {
			return true;
		}
		p += n;
		if (*p == ',') {
			p++;
		}
	}
	return false;
}

static int join_path(char *out, const char *a, const char *b, char *err)
{
	int n = snprintf(out, HOST_CG_PATH, "%s%s", a, b);

	if (n < 0 || n >= HOST_CG_PATH) {
		return agent_err(err, -ENAMETOOLONG, "cgroup path %s%s too long", a, b);
	}
	return 0;
}

int host_cgroup_init(struct host_cgroup *cg, const char *parent, const char *name,
		    char *err)
{
	struct statfs sfs;
	char line[2048];
	FILE *f;
	int n, rc = 0;

	memset(cg, 0, sizeof(*cg));
	n = snprintf(cg->rel, sizeof(cg->rel), "/%s/%s", parent, name);
	if (n < 0 || (size_t)n >= sizeof(cg->rel)) {
		return agent_err(err, -ENAMETOOLONG, "cgroup name %s/%s too long", parent, name);
	}
	if (statfs(CG_ROOT, &sfs) == 0 && sfs.f_type == CGROUP2_SUPER_MAGIC) {
		cg->v2 = true;
		return join_path(cg->unified, CG_ROOT, cg->rel, err);
	}
	f = fopen("/proc/self/mountinfo", "re");
	if (f == NULL) {
		return agent_err(err, -errno, "cgroups: /proc/self/mountinfo: %s", strerror(errno));
	}
	while (rc == 0 && fgets(line, sizeof(line), f)) {
		char root[HOST_CG_PATH], mp[HOST_CG_PATH], fstype[32], opts[512];
		const char *sep = strstr(line, " - ");

		if (sep == NULL ||
		    sscanf(line, "%*s %*s %*s %511s %511s", root, mp) != 2 ||
		    sscanf(sep + 3, "%31s %*s %511s", fstype, opts) != 2) {
			continue;
		}
		if (strcmp(fstype, "cgroup") != 0 || strcmp(root, "/") != 0 ||
		    strncmp(mp, CG_ROOT "/", sizeof(CG_ROOT)) != 0 || strchr(mp, '\\')) {
			continue;
		}
		if (cg->n_mounts < HOST_CG_MAX) {
			bool dup = false;

			for (unsigned i = 0; i < cg->n_mounts; i++) {
				dup |= strcmp(cg->mounts[i], mp) == 0;
			}
			if (!dup) {
				snprintf(cg->mounts[cg->n_mounts++], HOST_CG_PATH, "%s", mp);
			}
		}
		if (has_opt(opts, "memory") && cg->memory[0] == '\0') {
			rc = join_path(cg->memory, mp, cg->rel, err);
		}
		if (rc == 0 && has_opt(opts, "pids") && cg->pids[0] == '\0') {
			rc = join_path(cg->pids, mp, cg->rel, err);
		}
		if (rc == 0 && has_opt(opts, "cpu") && cg->cpu[0] == '\0') {
			rc = join_path(cg->cpu, mp, cg->rel, err);
		}
		if (rc == 0 && has_opt(opts, "cpuacct") && cg->cpuacct[0] == '\0') {
			rc = join_path(cg->cpuacct, mp, cg->rel, err);
		}
		if (rc == 0 && has_opt(opts, "freezer") && cg->freezer[0] == '\0') {
			rc = join_path(cg->freezer, mp, cg->rel, err);
		}
	}
	fclose(f);
	if (rc == 0 && cg->memory[0] == '\0' && cg->pids[0] == '\0' && cg->freezer[0] == '\0') {
		rc = agent_err(err, -ENOTSUP,
			       "cgroups: neither cgroup2 on " CG_ROOT " nor v1 memory, pids or "
			       "freezer hierarchies under it");
	}
	return rc;
}

/* The distinct v1 directories of the guest (cpu and cpuacct may share). */
static unsigned v1_dirs(const struct host_cgroup *cg, const char *out[5])
{
	const char *all[] = { cg->memory, cg->pids, cg->cpu, cg->cpuacct, cg->freezer };
	unsigned n = 0;

	for (unsigned i = 0; i < HA_ARRAY_SIZE(all); i++) {
		bool dup = false;

		if (all[i][0] == '\0') {
			continue;
		}
		for (unsigned j = 0; j < n; j++) {
			dup |= strcmp(out[j], all[i]) == 0;
		}
		if (!dup) {
			out[n++] = all[i];
		}
	}
	return n;
}

static int cg_write(const char *dir, const char *file, const char *val, char *err)
{
	char path[HOST_CG_PATH + 64];
	int rc;

	snprintf(path, sizeof(path), "%s/%s", dir, file);
	rc = host_write_str(path, val);
	if (rc < 0) {
		agent_err(err, rc, "cgroup: writing '%s' to %s: %s", val, path, strerror(-rc));
	}
	return rc;
}

static bool cg_has(const char *dir, const char *file)
{
	char path[HOST_CG_PATH + 64];

	snprintf(path, sizeof(path), "%s/%s", dir, file);
	return access(path, F_OK) == 0;
}

uint64_t host_cgroup_cpu_shares(uint32_t cpuunits)
{
	uint64_t s = (uint64_t)cpuunits * 1024 / 1000;

	return s < 2 ? 2 : s > 262144 ? 262144 : s;
}

uint64_t host_cgroup_cpu_weight(uint32_t cpuunits)
{
	/* runc / systemd: weight = 1 + (shares - 2) * 9999 / 262142 */
	return 1 + (host_cgroup_cpu_shares(cpuunits) - 2) * 9999 / 262142;
}

/* cpulimit and cpus (OpenVZ --cpus N caps at N CPUs' worth): the smaller
 * of both, in percent of one CPU; 0 = none. */
static uint64_t cpu_limit_pct(const struct agent_guest_spec *spec)
{
	uint64_t pct = spec->cpu_limit_pct;
	long online = sysconf(_SC_NPROCESSORS_ONLN);

	if (spec->cpus > 0 && (online <= 0 || spec->cpus < (uint64_t)online)) {
		uint64_t by_cpus = (uint64_t)spec->cpus * 100;

		pct = pct == 0 || by_cpus < pct ? by_cpus : pct;
	}
	return pct;
}

/* pids.max from the spec's numproc ("max" when none). */
static int pids_max_write(const char *dir, const struct agent_guest_spec *spec, char *err)
{
	char v[16];

	if (spec->pids_max > 0) {
		snprintf(v, sizeof(v), "%u", spec->pids_max);
	} else {
		snprintf(v, sizeof(v), "max");
	}
	return cg_write(dir, "pids.max", v, err);
}

static int v1_memory(const char *dir, uint64_t bytes, char *err)
{
	char v[32];
	int rc;

	snprintf(v, sizeof(v), "%" PRIu64, bytes);
	rc = cg_write(dir, "memory.limit_in_bytes", v, NULL);
	if (rc == -EINVAL && cg_has(dir, "memory.memsw.limit_in_bytes")) {
		/* memsw below the new limit (a reused cgroup): raise it first. */
		if (cg_write(dir, "memory.memsw.limit_in_bytes", v, err) < 0) {
			return -EINVAL;
		}
		rc = cg_write(dir, "memory.limit_in_bytes", v, NULL);
	}
	if (rc < 0) {
		return cg_write(dir, "memory.limit_in_bytes", v, err);
	}
	if (cg_has(dir, "memory.memsw.limit_in_bytes")) {
		rc = cg_write(dir, "memory.memsw.limit_in_bytes", v, err);
	}
	return rc;
}

static int create_v1(const struct host_cgroup *cg, const struct agent_guest_spec *spec,
		     char *err)
{
	const char *dirs[5];
	unsigned n = v1_dirs(cg, dirs);
	uint64_t pct = cpu_limit_pct(spec);
	char v[48];
	int rc;

	for (unsigned i = 0; i < n; i++) {
		rc = ha_mkdir_p(dirs[i], 0755);
		if (rc < 0) {
			return agent_err(err, rc, "cgroup: mkdir %s: %s", dirs[i], strerror(-rc));
		}
	}
	if (cg->freezer[0] && (rc = cg_write(cg->freezer, "freezer.state", "THAWED", err)) < 0) {
		return rc;
	}
	if (cg->memory[0] && spec->mem_kib > 0 &&
	    (rc = v1_memory(cg->memory, spec->mem_kib * 1024, err)) < 0) {
		return rc;
	}
	if (cg->pids[0] && (rc = pids_max_write(cg->pids, spec, err)) < 0) {
		return rc;
	}
	if (cg->cpu[0]) {
		if (spec->cpu_weight > 0) {
			snprintf(v, sizeof(v), "%" PRIu64, host_cgroup_cpu_shares(spec->cpu_weight));
			if ((rc = cg_write(cg->cpu, "cpu.shares", v, err)) < 0) {
				return rc;
			}
		}
		if (cg_has(cg->cpu, "cpu.cfs_quota_us")) {
			snprintf(v, sizeof(v), "%llu", CFS_PERIOD_US);
			if ((rc = cg_write(cg->cpu, "cpu.cfs_period_us", v, err)) < 0) {
				return rc;
			}
			if (pct > 0) {
				snprintf(v, sizeof(v), "%" PRIu64, (uint64_t)(pct * CFS_PERIOD_US / 100));
			} else {
				snprintf(v, sizeof(v), "-1");
			}
			if ((rc = cg_write(cg->cpu, "cpu.cfs_quota_us", v, err)) < 0) {
				return rc;
			}
		}
	}
	return 0;
}

/* Enables the controllers for the children of @dir (v2); a controller the
 * kernel does not offer there is left out. */
static int v2_enable(const char *dir, char *err)
{
	static const char *const ctrls[] = { "memory", "pids", "cpu" };
	char path[HOST_CG_PATH + 64], have[256], want[16];
	ssize_t n;

	snprintf(path, sizeof(path), "%s/cgroup.controllers", dir);
	n = host_read_small(path, have, sizeof(have));
	if (n < 0) {
		return agent_err(err, (int)n, "cgroup: reading %s: %s", path, strerror((int)-n));
	}
	for (char *c = have; *c; c++) {
		if (*c == '\n' || *c == ' ') {
			*c = ',';
		}
	}
	for (size_t i = 0; i < HA_ARRAY_SIZE(ctrls); i++) {
		int rc;

		if (!has_opt(have, ctrls[i])) {
			continue;
		}
		snprintf(want, sizeof(want), "+%s", ctrls[i]);
		rc = cg_write(dir, "cgroup.subtree_control", want, err);
		if (rc < 0) {
			return rc;
		}
	}
	return 0;
}

static int create_v2(const struct host_cgroup *cg, const struct agent_guest_spec *spec,
		     char *err)
{
	char dir[HOST_CG_PATH], v[64];
	const char *p = cg->rel;
	uint64_t pct = cpu_limit_pct(spec);
	int rc;

	/* Root down to the parent: create, enable the controllers below. */
	snprintf(dir, sizeof(dir), "%s", CG_ROOT);
	for (;;) {
		const char *next;
		size_t len = strlen(dir);

		if ((rc = v2_enable(dir, err)) < 0) {
			return rc;
		}
		next = strchr(p + 1, '/');
		if (next == NULL) {
			break;
		}
		snprintf(dir + len, sizeof(dir) - len, "%.*s", (int)(next - p), p);
		p = next;
		if (mkdir(dir, 0755) < 0 && errno != EEXIST) {
			return agent_err(err, -errno, "cgroup: mkdir %s: %s", dir, strerror(errno));
		}
	}
	if (mkdir(cg->unified, 0755) < 0 && errno != EEXIST) {
		return agent_err(err, -errno, "cgroup: mkdir %s: %s", cg->unified, strerror(errno));
	}
	if (cg_write(cg->unified, "cgroup.freeze", "0", NULL) < 0) {
		/* older kernels have no freezer: fine */
	}
	if (spec->mem_kib > 0) {
		snprintf(v, sizeof(v), "%" PRIu64, spec->mem_kib * 1024);
		if ((rc = cg_write(cg->unified, "memory.max", v, err)) < 0) {
			return rc;
		}
		if (cg_has(cg->unified, "memory.swap.max") &&
		    (rc = cg_write(cg->unified, "memory.swap.max", "0", err)) < 0) {
			return rc;
		}
	}
	if (cg_has(cg->unified, "pids.max") &&
	    (rc = pids_max_write(cg->unified, spec, err)) < 0) {
		return rc;
	}
	if (cg_has(cg->unified, "cpu.weight")) {
		if (spec->cpu_weight > 0) {
			snprintf(v, sizeof(v), "%" PRIu64, host_cgroup_cpu_weight(spec->cpu_weight));
			if ((rc = cg_write(cg->unified, "cpu.weight", v, err)) < 0) {
				return rc;
			}
		}
		if (pct > 0) {
			snprintf(v, sizeof(v), "%" PRIu64 " %llu", (uint64_t)(pct * CFS_PERIOD_US / 100),
				 CFS_PERIOD_US);
		} else {
			snprintf(v, sizeof(v), "max %llu", CFS_PERIOD_US);
		}
		if ((rc = cg_write(cg->unified, "cpu.max", v, err)) < 0) {
			return rc;
		}
	}
	return 0;
}

int host_cgroup_create(const struct host_cgroup *cg, const struct agent_guest_spec *spec,
		      char *err)
{
	return cg->v2 ? create_v2(cg, spec, err) : create_v1(cg, spec, err);
}

unsigned host_cgroup_procs_files(const struct host_cgroup *cg, char files[][HOST_CG_PATH],
				unsigned max)
{
	const char *dirs[5];
	unsigned n, got = 0;

	if (cg->v2) {
		dirs[0] = cg->unified;
		n = 1;
	} else {
		n = v1_dirs(cg, dirs);
	}
	for (unsigned i = 0; i < n && got < max; i++) {
		int len = snprintf(files[got], HOST_CG_PATH, "%s/cgroup.procs", dirs[i]);

		if (len > 0 && len < HOST_CG_PATH) {
			got++;
		}
	}
	return got;
}

const char *host_cgroup_freezer_dir(const struct host_cgroup *cg)
{
	return cg->v2 ? cg->unified : cg->freezer;
}

bool host_cgroup_frozen(const struct host_cgroup *cg)
{
	char path[HOST_CG_PATH + 32], buf[64];

	if (cg->v2) {
		snprintf(path, sizeof(path), "%s/cgroup.freeze", cg->unified);
		return host_read_small(path, buf, sizeof(buf)) > 0 && buf[0] == '1';
	}
	if (cg->freezer[0] == '\0') {
		return false;
	}
	snprintf(path, sizeof(path), "%s/freezer.state", cg->freezer);
	return host_read_small(path, buf, sizeof(buf)) > 0 && strncmp(buf, "FROZEN", 6) == 0;
}

/* True once the freeze took effect on every task. */
static bool freeze_done(const struct host_cgroup *cg)
{
	char path[HOST_CG_PATH + 32], buf[512];

	if (cg->v2) {
		snprintf(path, sizeof(path), "%s/cgroup.events", cg->unified);
		return host_read_small(path, buf, sizeof(buf)) > 0 && strstr(buf, "frozen 1");
	}
	return host_cgroup_frozen(cg);
}

int host_cgroup_freeze(const struct host_cgroup *cg, bool freeze, uint32_t timeout_ms,
		      char *err)
{
	const char *dir = host_cgroup_freezer_dir(cg);
	uint64_t deadline = ha_mono_ms() + timeout_ms;
	int rc;

	if (dir[0] == '\0') {
		return agent_err(err, -ENOTSUP, "cgroup: no freezer hierarchy for %s", cg->rel);
	}
	if (cg->v2) {
		rc = cg_write(dir, "cgroup.freeze", freeze ? "1" : "0", err);
	} else {
		rc = cg_write(dir, "freezer.state", freeze ? "FROZEN" : "THAWED", err);
	}
	if (rc < 0 || !freeze) {
		return rc;
	}
	for (unsigned polls = 1; !freeze_done(cg); polls++) {
		if (!cg->v2 && polls % 5 == 0) {
			/* The v1 freezer asks each task once, when FROZEN is
			 * written; a task that went into a stop after that
			 * (CRIU's leave_stopped: SIGSTOP, then detach) is never
			 * asked again and keeps the cgroup FREEZING. Writing
			 * FROZEN again asks the tasks not frozen yet. */
			cg_write(dir, "freezer.state", "FROZEN", NULL);
		}
		if (ha_mono_ms() >= deadline) {
			/* Leave it running rather than half frozen. */
			if (cg->v2) {
				cg_write(dir, "cgroup.freeze", "0", NULL);
			} else {
				cg_write(dir, "freezer.state", "THAWED", NULL);
			}
			return agent_err(err, -ETIMEDOUT, "cgroup: %s did not freeze within %u ms",
					 dir, timeout_ms);
		}
		ha_sleep_ms(CG_POLL_MS);
	}
	return 0;
}

/* Counts the pids listed in @dir/cgroup.procs, sending each @sig unless 0. */
static int for_each_proc(const char *dir, int sig)
{
	char path[HOST_CG_PATH + 32], line[32];
	FILE *f;
	int n = 0;

	snprintf(path, sizeof(path), "%s/cgroup.procs", dir);
	f = fopen(path, "re");
	if (f == NULL) {
		return 0;
	}
	while (fgets(line, sizeof(line), f)) {
		long pid = strtol(line, NULL, 10);

		if (pid > 0) {
			n++;
			if (sig) {
				kill((pid_t)pid, sig);
			}
		}
	}
	fclose(f);
	return n;
}

int host_cgroup_nprocs(const struct host_cgroup *cg)
{
	const char *dirs[5];
	unsigned n;
	int most = 0;

	if (cg->v2) {
		return for_each_proc(cg->unified, 0);
	}
	n = v1_dirs(cg, dirs);
	for (unsigned i = 0; i < n; i++) {
		int c = for_each_proc(dirs[i], 0);

		most = c > most ? c : most;
	}
	return most;
}

int host_cgroup_signal(const struct host_cgroup *cg, int sig, char *err)
{
	const char *dirs[5];
	int count = 0;

	if (cg->v2) {
		count = for_each_proc(cg->unified, sig);
	} else if (cg->freezer[0]) {
		count = for_each_proc(cg->freezer, sig);
	} else if (v1_dirs(cg, dirs) > 0) {
		/* every v1 hierarchy holds the same processes: one is enough */
		count = for_each_proc(dirs[0], sig);
	}
	if (count == 0) {
		return agent_err(err, -ESRCH, "cgroup: no process in %s to signal", cg->rel);
	}
	return 0;
}

int host_cgroup_kill(const struct host_cgroup *cg, uint32_t timeout_ms, char *err)
{
	uint64_t deadline = ha_mono_ms() + timeout_ms;
	const char *fz = host_cgroup_freezer_dir(cg);
	bool use_kill = cg->v2 && cg_has(cg->unified, "cgroup.kill");

	while (host_cgroup_nprocs(cg) > 0) {
		if (ha_mono_ms() >= deadline) {
			return agent_err(err, -ETIMEDOUT,
					 "cgroup: %d processes left in %s after %u ms",
					 host_cgroup_nprocs(cg), cg->rel, timeout_ms);
		}
		if (use_kill) {
			cg_write(cg->unified, "cgroup.kill", "1", NULL);
		} else {
			const char *dirs[5];
			unsigned n = cg->v2 ? 1 : v1_dirs(cg, dirs);

			if (cg->v2) {
				dirs[0] = cg->unified;
			}
			/* Frozen, nobody forks while we kill; the kills land on thaw. */
			if (fz[0]) {
				host_cgroup_freeze(cg, true, 1000, NULL);
			}
			for (unsigned i = 0; i < n; i++) {
				for_each_proc(dirs[i], SIGKILL);
			}
			if (fz[0]) {
				host_cgroup_freeze(cg, false, 0, NULL);
			}
		}
		ha_sleep_ms(CG_POLL_MS);
	}
	return 0;
}

/* rmdir @dir after its sub-cgroups (a guest cannot see cgroupfs, but
 * CRIU may restore nested ones); bounded depth. */
static int rmdir_tree(const char *dir, int depth)
{
	DIR *d;
	struct dirent *de;

	if (depth > 8) {
		return -ELOOP;
	}
	d = opendir(dir);
	if (d == NULL) {
		return errno == ENOENT ? 0 : -errno;
	}
	while ((de = readdir(d)) != NULL) {
		char sub[HOST_CG_PATH];
		int n;

		if (de->d_type != DT_DIR || strcmp(de->d_name, ".") == 0 ||
		    strcmp(de->d_name, "..") == 0) {
			continue;
		}
		n = snprintf(sub, sizeof(sub), "%s/%s", dir, de->d_name);
		if (n > 0 && n < (int)sizeof(sub)) {
			rmdir_tree(sub, depth + 1);
		}
	}
	closedir(d);
	if (rmdir(dir) < 0 && errno != ENOENT) {
		return -errno;
	}
	return 0;
}

int host_cgroup_remove(const struct host_cgroup *cg, uint32_t timeout_ms, char *err)
{
	uint64_t deadline = ha_mono_ms() + timeout_ms;
	char dirs[HOST_CG_MAX + 1][HOST_CG_PATH];
	unsigned n = 0;

	if (cg->v2) {
		snprintf(dirs[n++], HOST_CG_PATH, "%s", cg->unified);
	} else {
		for (unsigned i = 0; i < cg->n_mounts; i++) {
			if (join_path(dirs[n], cg->mounts[i], cg->rel, NULL) == 0) {
				n++;
			}
		}
	}
	for (unsigned i = 0; i < n; i++) {
		int rc;

		/* EBUSY while exiting tasks are still being torn down. */
		while ((rc = rmdir_tree(dirs[i], 0)) == -EBUSY && ha_mono_ms() < deadline) {
			ha_sleep_ms(CG_POLL_MS);
		}
		if (rc < 0) {
			return agent_err(err, rc, "cgroup: rmdir %s: %s", dirs[i], strerror(-rc));
		}
	}
	return 0;
}

/* The text of the small file @dir/@file into @buf. */
static int read_text(const char *dir, const char *file, char *buf, size_t len)
{
	char path[HOST_CG_PATH + 64];
	ssize_t n;

	snprintf(path, sizeof(path), "%s/%s", dir, file);
	n = host_read_small(path, buf, len);
	return n < 0 ? (int)n : 0;
}

/* The first line of @dir/@file, without its newline. */
static int read_line(const char *dir, const char *file, char *buf, size_t len)
{
	int rc = read_text(dir, file, buf, len);

	if (rc == 0) {
		buf[strcspn(buf, "\n")] = '\0';
	}
	return rc;
}

static int read_u64(const char *dir, const char *file, uint64_t *out)
{
	char buf[64];
	int rc = read_line(dir, file, buf, sizeof(buf));

	if (rc < 0) {
		return rc;
	}
	return ha_parse_u64(buf, 0, UINT64_MAX, out) < 0 ? -EINVAL : 0;
}

/* "max" (no limit) reads 0; v1's "no limit" is a number near 2^63. */
static int read_limit(const char *dir, const char *file, uint64_t *out)
{
	char buf[64];
	int rc = read_line(dir, file, buf, sizeof(buf));

	if (rc < 0) {
		return rc;
	}
	if (strcmp(buf, "max") == 0) {
		*out = 0;
		return 0;
	}
	if (ha_parse_u64(buf, 0, UINT64_MAX, out) < 0) {
		return -EINVAL;
	}
	if (*out >= (1ull << 62)) {
		*out = 0;
	}
	return 0;
}

/* The value of the line "@key N" of a flat-keyed file's @text. */
static int key_value(const char *text, const char *key, uint64_t *out)
{
	size_t klen = strlen(key);

	for (const char *line = text; *line;) {
		const char *nl = strchr(line, '\n');

		if (strncmp(line, key, klen) == 0 && line[klen] == ' ') {
			*out = strtoull(line + klen + 1, NULL, 10);
			return 0;
		}
		if (nl == NULL) {
			break;
		}
		line = nl + 1;
	}
	return -ENOENT;
}

void host_cgroup_limits(const struct host_cgroup *cg, struct agent_guest_limits *l)
{
	const char *mem = cg->v2 ? cg->unified : cg->memory;
	const char *pids = cg->v2 ? cg->unified : cg->pids;
	const char *cpu = cg->v2 ? cg->unified : cg->cpu;
	char text[2048];
	int got = 0;

	memset(l, 0, sizeof(*l));
	if (mem[0]) {
		got |= read_u64(mem, cg->v2 ? "memory.peak" : "memory.max_usage_in_bytes",
				&l->mem_peak_bytes) == 0;
		got |= read_limit(mem, cg->v2 ? "memory.max" : "memory.limit_in_bytes",
				  &l->mem_limit_bytes) == 0;
		if (cg->v2) {
			got |= read_text(mem, "memory.events", text, sizeof(text)) == 0 &&
			       key_value(text, "max", &l->mem_failcnt) == 0;
		} else {
			got |= read_u64(mem, "memory.failcnt", &l->mem_failcnt) == 0;
		}
	}
	if (pids[0]) {
		got |= read_limit(pids, "pids.max", &l->pids_limit) == 0;
		got |= read_text(pids, "pids.events", text, sizeof(text)) == 0 &&
		       key_value(text, "max", &l->pids_failcnt) == 0;
	}
	/* cpu.stat once, for its three figures */
	if (cpu[0] && read_text(cpu, "cpu.stat", text, sizeof(text)) == 0) {
		got |= key_value(text, "nr_periods", &l->cpu_periods) == 0;
		got |= key_value(text, "nr_throttled", &l->cpu_throttled) == 0;
		if (cg->v2) {
			if (key_value(text, "throttled_usec", &l->cpu_throttled_ns) == 0) {
				l->cpu_throttled_ns *= 1000;
			}
		} else {
			key_value(text, "throttled_time", &l->cpu_throttled_ns);
		}
	}
	l->valid = got != 0;
}

static int usage_read(const struct host_cgroup *cg, struct agent_guest_usage *u)
{
	uint64_t v = 0;

	/* What the hierarchies offer; a controller that is not there reads 0. */
	memset(u, 0, sizeof(*u));
	if (cg->v2) {
		char text[1024];

		if (access(cg->unified, F_OK) < 0) {
			return -errno;
		}
		if (read_text(cg->unified, "cpu.stat", text, sizeof(text)) == 0 &&
		    key_value(text, "usage_usec", &v) == 0) {
			u->cpu_ns = v * 1000;
		}
		if (read_u64(cg->unified, "memory.current", &v) == 0) {
			u->mem_bytes = v;
		}
		if (read_u64(cg->unified, "pids.current", &v) == 0) {
			u->pids = v > UINT32_MAX ? UINT32_MAX : (uint32_t)v;
		} else {
			u->pids = (uint32_t)host_cgroup_nprocs(cg);
		}
		return 0;
	}
	if (host_cgroup_nprocs(cg) == 0 && access(cg->memory[0] ? cg->memory : cg->pids, F_OK) < 0) {
		return -ESRCH;
	}
	if (cg->cpuacct[0] && read_u64(cg->cpuacct, "cpuacct.usage", &v) == 0) {
		u->cpu_ns = v;
	}
	if (cg->memory[0] && read_u64(cg->memory, "memory.usage_in_bytes", &v) == 0) {
		u->mem_bytes = v;
	}
	if (cg->pids[0] && read_u64(cg->pids, "pids.current", &v) == 0) {
		u->pids = v > UINT32_MAX ? UINT32_MAX : (uint32_t)v;
	}
	return 0;
}

int host_cgroup_usage(const struct host_cgroup *cg, struct agent_guest_usage *u)
{
	int rc = usage_read(cg, u);

	if (rc == 0) {
		host_cgroup_limits(cg, &u->lim);
	}
	return rc;
}
