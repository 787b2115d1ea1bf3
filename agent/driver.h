/*
 * driver.h - the guest driver interface of ha-agent.
 *
 * One file per backend behind this one ops table (agent/driver_container.c
 * for namespaces + cgroups + CRIU, agent/driver_domain.c for QEMU), chosen
 * by the guest definition's type. The agent core owns scheduling,
 * reporting and the cluster protocol; a driver owns only its guests'
 * processes and files.
 *
 * Rules for drivers:
 *  - Calls return 0 or -errno and never block the event loop for long:
 *    anything slow (boot, dump, restore, stream) is started here and
 *    reports completion through the @done callback from the agent's loop.
 *  - Guests outlive the agent: a driver keeps what it needs to re-attach
 *    (pid, QMP socket, cgroup path) in its run directory, and attach()
 *    finds a running guest again after an agent restart.
 *  - Nothing read back from a guest, a snapshot or a peer is trusted.
 */
#ifndef HA_AGENT_DRIVER_H
#define HA_AGENT_DRIVER_H

#include <stdbool.h>
#include <stdint.h>

#include "proto/hactl.pb-c.h"

enum agent_guest_state {
	AGENT_GUEST_DEFINED = 0, /* known, no process */
	AGENT_GUEST_STARTING,
	AGENT_GUEST_RUNNING,
	AGENT_GUEST_PAUSED,      /* frozen: checkpoint or switchover */
	AGENT_GUEST_STOPPING,
	AGENT_GUEST_STOPPED,
	AGENT_GUEST_FAILED,
	AGENT_GUEST_STATE_MAX
};

const char *agent_guest_state_str(enum agent_guest_state s);

/* What a driver needs to run a guest; parsed and checked by the agent core. */
struct agent_guest_spec {
	const char *name;
	const char *type;         /* "container" | "domain" */
	uint64_t mem_kib;
	uint32_t cpus;
	uint32_t cpu_weight;      /* OpenVZ cpuunits -> cgroup cpu.shares/weight */
	uint32_t cpu_limit_pct;   /* OpenVZ cpulimit, 0 = none */
	uint32_t pids_max;        /* 0 = none */
	const char *storage;      /* on the shared storage */
	const char *ip;           /* CIDR on the guest network */
	const char *run_dir;      /* driver's private per-guest directory */
};

struct agent_guest_usage {
	uint64_t cpu_ns;          /* cumulative */
	uint64_t mem_bytes;
	uint32_t pids;
};

/* Checkpoint/restore flavours a driver may support. */
enum agent_ckpt_flags {
	AGENT_CKPT_LEAVE_RUNNING = 1u << 0, /* snapshot, not migration */
	AGENT_CKPT_PRE_DUMP = 1u << 1,      /* iterative memory pre-copy */
	AGENT_CKPT_LAZY = 1u << 2,          /* post-copy (lazy pages) */
};

struct agent_guest;   /* a driver's per-guest object */
struct agent_driver;

typedef void (*agent_done_fn)(struct agent_guest *g, int result, void *arg);

struct agent_driver_ops {
	const char *name;
	/* Fills the capabilities this backend found on the host. */
	int (*probe)(struct agent_driver *d, Hactl__HostFacts *facts);
	int (*create)(struct agent_driver *d, const struct agent_guest_spec *spec,
		      struct agent_guest **out);
	/* Re-attaches to a guest left running by a previous agent. */
	int (*attach)(struct agent_driver *d, const struct agent_guest_spec *spec,
		      struct agent_guest **out);
	int (*start)(struct agent_guest *g, agent_done_fn done, void *arg);
	int (*stop)(struct agent_guest *g, uint32_t timeout_ms, agent_done_fn done,
		    void *arg);
	int (*destroy)(struct agent_guest *g);
	enum agent_guest_state (*state)(const struct agent_guest *g);
	int (*usage)(struct agent_guest *g, struct agent_guest_usage *out);
	/* Writes memory state and writable storage of one instant into @dir. */
	int (*checkpoint)(struct agent_guest *g, const char *dir, unsigned flags,
			  agent_done_fn done, void *arg);
	int (*restore)(struct agent_driver *d, const struct agent_guest_spec *spec,
		       const char *dir, struct agent_guest **out, agent_done_fn done,
		       void *arg);
	/* Frees the driver object of a guest (not the guest); accepts NULL. */
	void (*guest_free)(struct agent_guest *g);
};

struct agent_driver {
	const struct agent_driver_ops *ops;
	void *priv;
};

/* The compiled-in drivers, NULL-terminated. */
extern const struct agent_driver_ops *const agent_driver_table[];

#endif
