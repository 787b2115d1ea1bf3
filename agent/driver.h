/*
 * driver.h - the guest driver interface of ha-agent.
 *
 * One backend per guest type behind this one ops table, chosen by the
 * guest definition's type: the container driver (namespaces + cgroups +
 * CRIU) in the files agent/driver_container*.c with their private header
 * driver_container.h, and the domain driver (QEMU) in the files
 * agent/driver_domain*.c with their private header driver_domain.h. The
 * agent core owns scheduling,
 * reporting and the cluster protocol; a driver owns only its guests'
 * processes and files. What two drivers share (cgroups, bridge ports and
 * taps, /proc) is the host layer's (agent/host_*.h); a driver never
 * includes another driver's header.
 *
 * Rules for drivers:
 *  - Operations are plain blocking calls returning 0 or -errno. The agent
 *    core runs each one in a worker thread (never in its event loop) and
 *    reports completion through an eventfd, so a driver may wait for a
 *    boot, a dump or a restore, bounded by the timeouts it is given. A
 *    driver touches only its own guests' processes and files, never agent
 *    or cluster state. Two operations on the same guest never overlap.
 *  - Guests outlive the agent: a driver keeps what it needs to re-attach
 *    (pid, QMP socket, cgroup path) in the guest's run directory, and
 *    attach() finds a running guest again after an agent restart.
 *  - Nothing read back from a guest, a snapshot or a peer is trusted.
 *  - Errors carry a message: drivers fill @err (may be NULL) with one line
 *    naming what failed and where.
 */
#ifndef HA_AGENT_DRIVER_H
#define HA_AGENT_DRIVER_H

#include <stdbool.h>
#include <stdint.h>

#include "config.h"
#include "util.h"
#include "proto/hactl.pb-c.h"

enum agent_guest_state {
	AGENT_GUEST_DEFINED = 0, /* known, no process */
	AGENT_GUEST_STARTING,
	AGENT_GUEST_RUNNING,
	AGENT_GUEST_PAUSED,      /* frozen: checkpoint, switchover or pause() */
	AGENT_GUEST_STOPPING,
	AGENT_GUEST_STOPPED,
	AGENT_GUEST_FAILED,
	AGENT_GUEST_STATE_MAX
};

const char *agent_guest_state_str(enum agent_guest_state s);

/* What a driver needs to run a guest; parsed and checked by the agent core
 * from the guest definition (docs/guests.md). Paths are absolute. */
struct agent_guest_spec {
	const char *name;
	const char *type;         /* "container" | "domain" */
	uint64_t mem_kib;
	uint32_t cpus;
	uint32_t cpu_weight;      /* OpenVZ cpuunits -> cpu.shares / cpu.weight */
	uint32_t cpu_limit_pct;   /* OpenVZ cpulimit, 100 = one CPU, 0 = none */
	uint32_t pids_max;        /* 0 = none */
	const char *rootfs;       /* container: template dir (read-only lower) */
	const char *kernel;       /* domain: kernel image (vmlinux via PVH) */
	const char *initrd;       /* domain: initramfs */
	const char *disk;         /* domain: disk image on the shared storage */
	const char *command;      /* program and arguments, space-separated:
				   * container init; domain: on the kernel
				   * command line as hactl.cmd=... */
	const char *ip;           /* CIDR on the guest network, e.g. 10.213.1.10/24 */
	const char *gateway;      /* may be NULL */
	const char *bridge;       /* host bridge for the guest's veth / tap */
	const char *run_dir;      /* private per-guest dir on this host (pid,
				   * QMP socket, console log) */
	const char *data_dir;     /* per-guest dir on the shared storage:
				   * writable layer (container: layer.img) */
	uint64_t disk_kib;        /* container: size of the writable layer,
				   * 0 = default (1 GiB) */
};

/* A guest's limits as its cgroups count them (OpenVZ's beancounters:
 * held, peak, limit, failures). A limit of 0 is none. */
struct agent_guest_limits {
	bool valid;               /* read from the guest's cgroups */
	uint64_t mem_peak_bytes;  /* the most it ever used */
	uint64_t mem_limit_bytes;
	uint64_t mem_failcnt;     /* times it hit the limit (v1 failcnt,
				   * v2 memory.events max) */
	uint64_t pids_limit;
	uint64_t pids_failcnt;    /* forks refused (pids.events max) */
	uint64_t cpu_periods;     /* CFS periods with a quota */
	uint64_t cpu_throttled;   /* of those, throttled */
	uint64_t cpu_throttled_ns;
};

struct agent_guest_usage {
	uint64_t cpu_ns;          /* cumulative */
	uint64_t mem_bytes;
	uint32_t pids;
	/* a container's writable layer: in use and size, both 0 when it has
	 * none mounted (a domain, the old layout) */
	uint64_t disk_used_bytes;
	uint64_t disk_size_bytes;
	struct agent_guest_limits lim;
};

/* Live migration options and progress (agent core fills and reads them). */
struct agent_mig_opts {
	uint32_t max_downtime_ms;   /* 0 = driver default */
	uint64_t bandwidth_bps;     /* 0 = unlimited */
	bool auto_converge;
	bool xbzrle;
	const char *mode;           /* "precopy" | "postcopy" | "stopcopy" | NULL = best */
	uint64_t id;                /* the cluster's migration id (records, logs) */
};

struct agent_mig_progress {
	/* written by the driver from its thread, read by the agent's loop:
	 * plain fields, torn reads are harmless for display */
	uint64_t total_bytes, transferred_bytes, remaining_bytes;
	uint64_t dirty_rate_bps;
	uint32_t rounds;
	uint32_t expected_downtime_ms;
	uint32_t downtime_ms;       /* measured, when done */
	uint64_t total_ms;
};

/* Checkpoint/restore flavours a driver may support. */
enum agent_ckpt_flags {
	AGENT_CKPT_LEAVE_RUNNING = 1u << 0, /* snapshot, not migration */
	AGENT_CKPT_PRE_DUMP = 1u << 1,      /* iterative memory pre-copy */
	AGENT_CKPT_LAZY = 1u << 2,          /* post-copy (lazy pages) */
};

struct agent_guest;   /* a driver's per-guest object */
struct agent_driver;

#define AGENT_ERR_LEN 256

/* A driver's error, into its AGENT_ERR_LEN buffer @err (NULL: none);
 * returns @rc (common/util.h, ha_errf). */
#define agent_err(err, rc, ...) ha_errf((err), AGENT_ERR_LEN, (rc), __VA_ARGS__)

struct agent_driver_ops {
	const char *name;  /* matches the definition's type */
	/* Fills the capabilities this backend found on the host. */
	int (*probe)(struct agent_driver *d, Hactl__HostFacts *facts);
	/* Prepares a guest object for @spec (no process yet). */
	int (*create)(struct agent_driver *d, const struct agent_guest_spec *spec,
		      struct agent_guest **out, char *err);
	/* Finds a guest left running by a previous agent: 0 and *out set when
	 * it runs, -ESRCH when it does not. */
	int (*attach)(struct agent_driver *d, const struct agent_guest_spec *spec,
		      struct agent_guest **out, char *err);
	int (*start)(struct agent_guest *g, uint32_t timeout_ms, char *err);
	/* Graceful within @timeout_ms, then forced. */
	int (*stop)(struct agent_guest *g, uint32_t timeout_ms, char *err);
	/*
	 * Sends SIGKILL to every process of the guest at once, without
	 * waiting and without cleaning up: how the self-fence stops a guest
	 * while another operation on it (a migration, a snapshot) still runs
	 * in a worker thread; that operation then fails, and a stop()
	 * afterwards cleans up. Unlike every other operation it may run on
	 * the agent's loop thread concurrently with one operation on the same
	 * guest: it reads only what is fixed while the guest lives. -ESRCH
	 * when nothing ran. NULL: not supported (the agent then waits for the
	 * operation to end and stops the guest).
	 */
	int (*kill)(const struct agent_guest *g, char *err);
	/*
	 * `hactl pause` (@on) and `hactl resume`: freezes the running guest's
	 * processes in place, or thaws them; state() then says PAUSED or
	 * RUNNING. Nothing else changes (no checkpoint, no network change).
	 * Bounded by the driver's own timeout; a freeze that does not
	 * complete leaves the guest running. NULL: not supported.
	 */
	int (*pause)(struct agent_guest *g, bool on, char *err);
	/* Removes the guest's host-side resources (it must be stopped). */
	int (*destroy)(struct agent_guest *g, char *err);
	enum agent_guest_state (*state)(const struct agent_guest *g);
	int (*usage)(struct agent_guest *g, struct agent_guest_usage *out);
	/* Writes memory state and writable storage of one instant into @dir. */
	int (*checkpoint)(struct agent_guest *g, const char *dir, unsigned flags,
			  char *err);
	/* Starts a guest from what checkpoint() wrote into @dir. */
	int (*restore)(struct agent_driver *d, const struct agent_guest_spec *spec,
		       const char *dir, struct agent_guest **out, char *err);
	/* Frees the driver object of a guest (not the guest); accepts NULL. */
	void (*guest_free)(struct agent_guest *g);

	/*
	 * Live migration, source side: streams the guest's state into @fd (a
	 * connected socket the agent core carries to the destination) until
	 * the destination has everything; the guest is then PAUSED here, not
	 * gone. Returns 0 when the stream is complete.
	 */
	int (*migrate_send)(struct agent_guest *g, int fd, const struct agent_mig_opts *o,
			    struct agent_mig_progress *p, char *err);
	/*
	 * Destination side: creates the guest from @spec and reads its state
	 * from @fd; on success *out is a PAUSED guest holding the complete state.
	 */
	int (*migrate_recv)(struct agent_driver *d, const struct agent_guest_spec *spec, int fd,
			    const struct agent_mig_opts *o, struct agent_guest **out,
			    struct agent_mig_progress *p, char *err);
	/*
	 * Ends a migration on either side once the cluster decided: on the
	 * destination, @commit resumes the guest and !@commit destroys it; on
	 * the source, @commit discards the paused copy (stops and cleans it up
	 * without touching the shared writable layer) and !@commit resumes it.
	 */
	int (*migrate_finish)(struct agent_guest *g, bool source, bool commit, char *err);
};

struct agent_driver {
	const struct agent_driver_ops *ops;
	const struct ha_config *cfg;
	void *priv;
};

/* The driver for a definition's type ("container", "domain"); NULL when
 * that backend is not built in. */
const struct agent_driver_ops *agent_driver_find(const char *type);

/* Puts @ops in front of the built-in driver of the same name, or removes
 * it (NULL): how the unit tests run the agent core over a driver that
 * records what it is asked. Not thread-safe; call before any guest. */
void agent_driver_override(const struct agent_driver_ops *ops);

#endif
