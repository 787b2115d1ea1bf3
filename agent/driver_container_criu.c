/*
 * driver_container_criu.c - what CRIU is told about a container
 * (agent/criu_rpc.h does the talking).
 *
 * Dump: the tree of the container's init with all its namespaces (CRIU
 * dumps pid, mnt, uts, ipc and net since they differ from its own),
 * established TCP connections (repair mode, the network locked with
 * nftables meanwhile), file locks, the cgroups (soft: properties only where
 * CRIU creates a directory; the driver makes them itself), frozen through
 * the guest's freezer cgroup. External to the container and named by key:
 *   - the root mount: the overlay is mounted by the driver before the
 *     restore and given as root;
 *   - /dev/console, a bind mount of run_dir/console.log: key "console"
 *     (CONSOLE_KEY: the dump names it and the restore binds that key, so
 *     both use the one macro);
 *   - the veth: eth0 inside, its peer (hv-<name>) outside; the restore
 *     recreates the pair and puts the outer end on the guest bridge (a
 *     migration's destination: off it, until the commit).
 * Restore: detached (the tree is reparented, like a started container),
 * into the same cgroups (cgroup root rewritten to <parent>/<name> of this
 * host, which may differ from the dumping host's). The snapshot restore
 * and the migration's destination share ctr_criu_restore; the migration's
 * dumps (pre-dump, final dump with the tree left stopped) add options of
 * their own to the same base (ctr_criu_dump_base: the tree, TCP, locks,
 * cgroups, the external resources).
 */
#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "criu_rpc.h"
#include "driver_container.h"
#include "util.h"

#define CONSOLE_KEY "console"
#define CONSOLE_MNT "/dev/console"

const char *ctr_criu_bin(const char *path)
{
	/* The agent's default "criu" means the one deploy/install-criu put
	 * in place when it exists there. */
	return path == NULL || path[0] == '\0' || strcmp(path, "criu") == 0 ?
		AGENT_CRIU_DEFAULT_PATH : path;
}

void ctr_criu_dump_base(const struct ctr_ckpt_target *t, struct ctr_criu_external *x,
			struct agent_criu_dump_opts *o)
{
	memset(o, 0, sizeof(*o));
	o->pid = t->pid;
	o->tcp_established = true;
	/* A connection in a listening socket's queue, not accepted yet,
	 * cannot be dumped: without this, a guest that clients keep
	 * connecting to can hardly ever be snapshotted. Left out of the image
	 * (a running guest keeps it; a restore from the snapshot lacks it, as
	 * it lacks every later connection; a migrated guest's client sees a
	 * reset). */
	o->tcp_skip_in_flight = true;
	o->file_locks = true;
	o->manage_cgroups = AGENT_CRIU_CG_SOFT;
	o->freeze_cgroup = host_cgroup_freezer_dir(t->cg)[0] ? host_cgroup_freezer_dir(t->cg) :
								 NULL;
	x->n = 0;
	snprintf(x->mnt, sizeof(x->mnt), "mnt[%s]:%s", CONSOLE_MNT, CONSOLE_KEY);
	x->list[x->n++] = x->mnt;
	if (t->spec->ip) {
		snprintf(x->veth, sizeof(x->veth), "veth[%s]", t->veth);
		x->list[x->n++] = x->veth;
	}
	o->external = x->list;
	o->n_external = x->n;
}

int ctr_criu_dump(const struct ctr_ckpt_target *t, const char *images,
		  bool leave_running, uint32_t timeout_ms, char *err)
{
	struct ctr_criu_external x;
	struct agent_criu_dump_opts o;

	ctr_criu_dump_base(t, &x, &o);
	o.c = (struct agent_criu_common_opts){ .images_dir = images, .log_file = "dump.log",
					       .timeout_ms = timeout_ms };
	o.leave_running = leave_running;
	o.network_lock = AGENT_CRIU_NETLOCK_NFTABLES;
	return agent_criu_dump(ctr_criu_bin(t->criu_path), &o, err, AGENT_ERR_LEN);
}

int ctr_criu_restore(const struct ctr_ckpt_target *t, const char *images,
		     uint32_t timeout_ms, bool stopped, pid_t *pid, char *err)
{
	char veth[128], console[CTR_PATH + 32];
	const char *external[2];
	size_t n_ext = 0;
	/* v1: only the controllers the driver put the guest in (the others
	 * keep the dumped path, "/" or the agent's); v2: the one hierarchy. */
	static const char *const ctrls[] = { "memory", "pids", "cpu", "cpuacct", "freezer" };
	struct agent_criu_cg_root cgr[HA_ARRAY_SIZE(ctrls)];
	size_t n_cgr = 0;
	struct agent_criu_restore_opts o = {
		.c = { .images_dir = images, .log_file = "restore.log",
		       .timeout_ms = timeout_ms },
		.root = t->root,
		.restore_detached = true,
		.leave_stopped = stopped,
		.tcp_established = true,
		.file_locks = true,
		.manage_cgroups = AGENT_CRIU_CG_SOFT,
		.network_lock = AGENT_CRIU_NETLOCK_NFTABLES,
	};
	char path[CTR_PATH];
	int n;

	if (t->cg->v2) {
		cgr[n_cgr++] = (struct agent_criu_cg_root){ .ctrl = NULL, .path = t->cg->rel };
	} else {
		const char *dirs[] = { t->cg->memory, t->cg->pids, t->cg->cpu, t->cg->cpuacct,
				       t->cg->freezer };

		for (size_t i = 0; i < HA_ARRAY_SIZE(ctrls); i++) {
			if (dirs[i][0]) {
				cgr[n_cgr++] = (struct agent_criu_cg_root){ .ctrl = ctrls[i],
									    .path = t->cg->rel };
			}
		}
	}
	o.cg_root = cgr;
	o.n_cg_root = n_cgr;
	n = snprintf(path, sizeof(path), "%s/console.log", t->spec->run_dir);
	if (n < 0 || n >= (int)sizeof(path)) {
		return agent_err(err, -ENAMETOOLONG, "restore: console path too long");
	}
	snprintf(console, sizeof(console), "mnt[%s]:%s", CONSOLE_KEY, path);
	external[n_ext++] = console;
	if (t->spec->ip && stopped) {
		snprintf(veth, sizeof(veth), "veth[eth0]:%s", t->veth);
		external[n_ext++] = veth;
	} else if (t->spec->ip) {
		/* CRIU puts the recreated host side on the bridge */
		snprintf(veth, sizeof(veth), "veth[eth0]:%s@%s", t->veth, t->spec->bridge);
		external[n_ext++] = veth;
	}
	o.external = external;
	o.n_external = n_ext;
	return agent_criu_restore(ctr_criu_bin(t->criu_path), &o, pid, err, AGENT_ERR_LEN);
}

int ctr_criu_probe(const char *criu_path, Hactl__HostFacts *facts)
{
	struct agent_criu_caps caps;
	bool mem = false, lazy = false;
	int rc;

	/* VERSION and the feature check only: the trial dump of
	 * agent_criu_probe() is the agent's job at startup. */
	rc = agent_criu_check_features(ctr_criu_bin(criu_path), &mem, &lazy, NULL, 0);
	memset(&caps, 0, sizeof(caps));
	facts->has_criu_present = true;
	facts->criu_present = rc == 0;
	if (rc < 0) {
		return 0;
	}
	if (agent_criu_probe(ctr_criu_bin(criu_path), &caps, NULL, 0) == 0 && caps.version[0]) {
		free(facts->criu_version);
		facts->criu_version = strdup(caps.version);
	}
	facts->has_criu_mem_dirty_track = true;
	facts->criu_mem_dirty_track = mem;
	facts->has_criu_lazy_pages = true;
	facts->criu_lazy_pages = lazy;
	return 0;
}
