/*
 * host_cgroup.h - the agent's host layer for cgroups: one guest's cgroup
 * (v1 or v2), its limits, freezing, killing, removal and usage. Both
 * drivers use it (a container's processes, a domain's QEMU); it includes
 * no driver's header.
 *
 * Every function here is a blocking call for a worker thread, returns 0 or
 * -errno and, where it takes @err (AGENT_ERR_LEN bytes, may be NULL), fills
 * it with one line naming what failed and where.
 */
#ifndef HA_AGENT_HOST_CGROUP_H
#define HA_AGENT_HOST_CGROUP_H

#include <stdbool.h>
#include <stdint.h>

#include "driver.h"

#define HOST_CG_PATH 512 /* every cgroup path */
#define HOST_CG_MAX 16   /* v1 hierarchies considered */

/*
 * One guest's cgroups: hactl/<name> (or $HACTL_CGROUP_PARENT/<name>) in
 * each v1 hierarchy the driver uses (memory, pids, cpu, cpuacct, freezer),
 * or in the unified hierarchy where /sys/fs/cgroup is cgroup2.
 */
struct host_cgroup {
	bool v2;
	char rel[HOST_CG_PATH];    /* "/hactl/c1", relative to each hierarchy root */
	/* v2: the guest's directory; v1: empty */
	char unified[HOST_CG_PATH];
	/* v1: the guest's directory per controller, "" where not mounted */
	char memory[HOST_CG_PATH];
	char pids[HOST_CG_PATH];
	char cpu[HOST_CG_PATH];
	char cpuacct[HOST_CG_PATH];
	char freezer[HOST_CG_PATH];
	/* v1: every hierarchy's mount point (removal covers those CRIU may
	 * have created a directory in) */
	unsigned n_mounts;
	char mounts[HOST_CG_MAX][HOST_CG_PATH];
};

/* Finds the hierarchies and fills @cg for guest @name under the parent
 * @parent (relative, e.g. "hactl"). */
int host_cgroup_init(struct host_cgroup *cg, const char *parent, const char *name,
		    char *err);
/* The cgroup parent: $HACTL_CGROUP_PARENT when set and sane, else "hactl". */
const char *host_cgroup_parent(void);
/* Sane parent: relative, [A-Za-z0-9_.-/], no empty, "." or ".." parts. */
bool host_cgroup_parent_valid(const char *p);
/* Creates the guest's directories and writes the limits of @spec. */
int host_cgroup_create(const struct host_cgroup *cg, const struct agent_guest_spec *spec,
		      char *err);
/* The cgroup.procs files a process writes "0" into to join the guest's
 * cgroups; returns how many were filled (at most @max). */
unsigned host_cgroup_procs_files(const struct host_cgroup *cg, char files[][HOST_CG_PATH],
				unsigned max);
/* The directory CRIU's freeze_cgroup names ("" when there is no freezer). */
const char *host_cgroup_freezer_dir(const struct host_cgroup *cg);
/* Freezes (true) or thaws the guest; freezing waits until frozen. */
int host_cgroup_freeze(const struct host_cgroup *cg, bool freeze, uint32_t timeout_ms,
		      char *err);
/* True when the guest's cgroup is frozen. */
bool host_cgroup_frozen(const struct host_cgroup *cg);
/* Number of processes in the guest's cgroups (0 when they do not exist). */
int host_cgroup_nprocs(const struct host_cgroup *cg);
/* Sends @sig to every process of the guest's cgroups; -ESRCH when none. */
int host_cgroup_signal(const struct host_cgroup *cg, int sig, char *err);
/* SIGKILLs every process of the guest (cgroup.kill, or freeze + kill +
 * thaw) and waits until none is left. */
int host_cgroup_kill(const struct host_cgroup *cg, uint32_t timeout_ms, char *err);
/* Removes the guest's directories in every hierarchy; missing is fine. */
int host_cgroup_remove(const struct host_cgroup *cg, uint32_t timeout_ms, char *err);
int host_cgroup_usage(const struct host_cgroup *cg, struct agent_guest_usage *u);
/* The limit counters of the guest's cgroups into @l (v1 and v2; a
 * controller that is not there leaves its fields 0); l->valid once any
 * was read. */
void host_cgroup_limits(const struct host_cgroup *cg, struct agent_guest_limits *l);

/* OpenVZ cpuunits -> cpu.shares (1000 -> 1024) and -> cpu.weight. */
uint64_t host_cgroup_cpu_shares(uint32_t cpuunits);
uint64_t host_cgroup_cpu_weight(uint32_t cpuunits);

#endif
