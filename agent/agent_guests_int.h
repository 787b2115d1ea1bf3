/*
 * agent_guests_int.h - private header of the guests of this host
 * (agent_guests*.c); the rest of the agent sees agent_guests.h.
 *
 *   agent_guests.c        the table, reporting, reconciliation with the
 *                         cluster's list, the operations' results,
 *                         re-attach at startup
 *   agent_guests_op.c     the operations: a worker thread each, on the
 *                         driver (start, restore, stop, snapshot,
 *                         migration steps, kill, resume)
 *   agent_guests_fence.c  the self-fence, the watchdog and fence.conf
 *   agent_guests_check.c  the health checks ([ha] check): a thread per
 *                         check run, its result back on the loop thread
 *
 * Everything here runs on the agent's loop thread unless it says
 * otherwise. The shared names keep the names they had as statics of
 * agent_guests.c; none is used outside these files.
 */
#ifndef HA_AGENT_GUESTS_INT_H
#define HA_AGENT_GUESTS_INT_H

#include <limits.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <qb/qblist.h>
#include <qb/qbloop.h>

#include "agent_guests.h"
#include "agent_mig.h"
#include "agent_watchdog.h"
#include "driver.h"
#include "fencing.h"
#include "guestdef.h"
#include "util.h"

/* run_dir/incoming.conf: the record of an incoming copy (agent_guests.c) */
#define INCOMING_FILE "incoming.conf"
#define INCOMING_TAG "# hactl incoming migration "

enum op_kind {
	OP_START_COLD = 0,
	OP_START_SNAPSHOT,
	OP_STOP,
	OP_DESTROY,
	OP_SNAPSHOT,
	OP_MIG_SEND,
	OP_MIG_RECV,
	OP_MIG_FINISH,
	OP_KILL,      /* stop at once (forced): a copy this host must not run */
	OP_RESUME,    /* resume a guest found paused by an earlier agent */
	OP_PAUSE,     /* hactl pause: freeze it in place (driver pause()) */
	OP_UNPAUSE,   /* hactl resume: thaw what OP_PAUSE froze */
	OP_KIND_MAX
};

struct ag_guest {
	struct qb_list_head list;
	char name[HA_GUEST_NAME_MAX + 1];
	char *def_text;
	size_t def_len;
	struct ha_guest_def def;
	const struct agent_driver_ops *ops;
	struct agent_driver drv;
	struct agent_guest *g;        /* driver object, NULL when none */
	enum agent_guest_state state;
	char error[AGENT_ERR_LEN];
	char note[AGENT_ERR_LEN + 256];
	uint64_t generation;          /* ownership generation last acted on */
	/* restart policy (common/restart.h), under this generation */
	uint32_t fails;               /* crashes and failed starts */
	uint64_t next_start_ms;       /* no restart before (monotonic) */
	uint64_t started_ms;          /* when it last started (monotonic) */
	bool up_seen;                 /* seen running since its last start */
	bool gave_up;                 /* no more restarts here: the leader decides */
	bool owned;                   /* owner per the last cluster list */
	bool in_cluster;              /* present in the last cluster list */
	bool in_migration;            /* a migration step owns it now */
	bool busy;
	enum op_kind op_kind;         /* the operation in flight while busy */
	bool fence_killed;            /* the self-fence killed it during that op */
	/* it ran here and ended without being asked to (a crash, the
	 * self-fence): started again, it goes on from its newest good
	 * snapshot when its restart policy is "snapshot", never from
	 * scratch with the state of a snapshot lost */
	bool resume_snapshot;
	bool fence_noted;             /* ... or said that it could not yet */
	bool resume_failed;           /* OP_RESUME failed: stop it instead */
	bool refused;                 /* not started: no armed watchdog (logged) */
	const char *kill_why;         /* the note of the OP_KILL in flight */
	/* health check ([ha] check, agent_guests_check.c) */
	uint64_t check_epoch;         /* started_ms the counts below belong to */
	uint64_t next_check_ms;       /* the next run (monotonic) */
	uint32_t check_fails;         /* failed in a row */
	bool check_inflight;          /* a run's thread is out */
	bool check_killed;            /* the OP_KILL in flight is the check's */
	bool want_running;            /* desired state per the cluster */
	bool want_paused;             /* the operator paused it (GuestRecord.paused) */
	bool paused_here;             /* this agent froze it for that (OP_PAUSE) */
	bool start_snapshot;          /* start from a snapshot (restore) */
	bool start_fallback;          /* no good snapshot: cold start */
	uint64_t start_gen;           /* which generation, 0 = newest good */
	uint64_t snap_generation, snap_time_ms;
	uint64_t next_snap_ms;        /* the next periodic snapshot; 0 = none planned */
	uint32_t snap_failures;       /* periodic snapshots failed in a row */
	char run_dir[PATH_MAX];
	char data_dir[PATH_MAX];
	char rootfs[PATH_MAX], kernel[PATH_MAX], initrd[PATH_MAX], disk[PATH_MAX];
	struct agent_guest_spec spec;
	struct agent_guests *m;
	/* live migration (one at a time) */
	uint64_t incoming_id;         /* found at restart: incoming.conf of this migration */
	uint64_t mig_id;
	bool mig_source;
	enum agent_mig_phase mig_phase; /* changed by mig_phase_set() only */
	bool mig_commit;              /* the decision, for the finish op */
	bool mig_disowned;            /* the finish discards a copy that another
				       * node owns now, whatever the decision */
	struct mig_listener *mig_listener; /* destination, until the op ends */
	uint32_t mig_port;
	char mig_addr[64];
	uint32_t mig_dst_port;
	struct agent_mig_opts mig_opts;
	char mig_mode[16];
	struct agent_mig_progress prog;  /* written by the op thread */
	char mig_error[AGENT_ERR_LEN + 64];
	char mig_transport[8];        /* from the options; "" = the config's */
	/* under m->lock: the stream while an op uses it (cancel, counters),
	 * whether the cluster aborted, the cipher and the last counters */
	struct agent_mig_xfer *mig_xfer;
	bool mig_cancel;
	/* under m->lock: the driver object the op in flight works on, once
	 * known (valid until the loop thread takes the op's result) */
	struct agent_guest *op_obj;
	char mig_cipher[64];
	char mig_xport[8];
	struct mig_counters mig_ctr;
	/* the loop thread's copies for its reports */
	char mig_cipher_shown[64];
	char mig_xport_shown[8];
};

struct ag_op {
	struct qb_list_head list;
	struct ag_guest *g;
	enum op_kind kind;
	uint64_t arg;       /* restore: generation (0 = newest good);
			     * stop: timeout ms (0 = the definition's);
			     * snapshot: its enum ha_snap_kind */
	bool fallback;      /* restore: cold start when no good snapshot; a
			     * restart on its own, so the failover rule
			     * chooses (common/snapchoice.h) */
	uint64_t wall_ms;   /* the wall clock when it was started */
	uint64_t max_age_ms; /* restore with fallback: the definition's limit */
	uint64_t req_id;    /* action to answer, 0 = none */
	uint64_t started_ms;
	/* migration steps: the transaction they belong to, taken at the
	 * start, as a newer one may replace the guest's while they run */
	uint64_t mig_id;
	bool mig_source, mig_commit, mig_disowned;
	/* results */
	int rc;
	char err[AGENT_ERR_LEN + 256];
	uint64_t value;     /* snapshot generation written or used */
	uint64_t value_ms;  /* its time */
	struct agent_guest *obj;
};

struct agent_guests {
	qb_loop_t *loop;
	const struct ha_config *cfg;
	struct agent_guests_io io;
	struct qb_list_head guests;
	int efd;
	pthread_mutex_t lock;
	struct qb_list_head done; /* finished ops, under lock */
	unsigned inflight;        /* under lock */
	struct qb_list_head checks_done; /* finished health checks, under lock */
	unsigned checks_inflight; /* under lock */
	bool closing;             /* agent_guests_free: no check kills any more */
	pthread_cond_t idle;
	uint64_t started_ms;      /* the self-fence clock when this agent started */
	uint64_t last_quorate_ms; /* the self-fence clock; 0 = never */
	struct ag_guest *sending; /* the one outgoing migration stream at a time */
	bool self_fenced;         /* guests stopped for lack of quorum */
	struct agent_watchdog *wd; /* armed watchdog, NULL = none */
	char wd_error[512];       /* why there is none */
	struct fence_config *fence; /* fence.conf as loaded at start */
	char local_name[64];      /* this node's name, from the cluster's list */
	enum fence_method method; /* how the cluster fences this node */
	char local_addr[64];      /* this host's cluster address, from the list */
	char own_mig_addr[64];    /* its migration address (io.mig_addr), "" = none */
};

/* The clock of the self-fence (tests drive their own). */
static inline uint64_t now_ms(const struct agent_guests *m)
{
	return m->io.now_ms ? m->io.now_ms(m->io.arg) : ha_mono_ms();
}

/* The wall clock of snapshot ages (tests drive their own). */
static inline uint64_t wall_ms(const struct agent_guests *m)
{
	return m->io.wall_ms ? m->io.wall_ms(m->io.arg) : ha_wall_ms();
}

/* ---- agent_guests.c ---------------------------------------------------- */

/* What the guest is now: the driver's state, or the op's while busy. */
enum agent_guest_state ag_live_state(struct ag_guest *g);
/* The guest called @name, NULL when there is none. */
struct ag_guest *ag_guest_find(struct agent_guests *m, const char *name);

/* ---- agent_guests_op.c ------------------------------------------------- */

/* The operations' names, for logs and errors. */
extern const char *const op_names[OP_KIND_MAX];
/*
 * Starts operation @kind on @g in a worker thread; its result comes back
 * to the loop thread through the eventfd (agent_guests.c, done_cb). @arg
 * per struct ag_op; @req_id: the action to answer, 0 = none; @fallback: a
 * restore that may start cold. -EBUSY while @g has an operation.
 */
int ag_op_start(struct ag_guest *g, enum op_kind kind, uint64_t arg, uint64_t req_id);
int ag_op_start_ex(struct ag_guest *g, enum op_kind kind, uint64_t arg, uint64_t req_id,
		bool fallback);
/* The migration stream's parameters of @g's transaction. */
void ag_mig_params(const struct ag_guest *g, struct agent_mig_params *p);

/* ---- agent_guests_fence.c ---------------------------------------------- */

/* Reads fence.conf and arms the watchdog device (at startup). */
void ag_fence_setup(struct agent_guests *m);
/* Reads which method fences this node (once its name is known). */
void ag_fence_method_update(struct agent_guests *m);
/* Whether a guest of this host may have a process here. */
bool ag_holds_any(struct agent_guests *m);
/* Kills @g for the self-fence (beside its operation when busy). */
void ag_self_fence_one(struct agent_guests *m, struct ag_guest *g);
/* Starts the self-fence when quorum has been missing for too long. */
void ag_self_fence_check(struct agent_guests *m);
/* Feeds the watchdog up to where the self-fence would begin. */
void ag_watchdog_update(struct agent_guests *m);
/* Whether @g may not run here for lack of an armed watchdog (@why). */
bool ag_watchdog_refuses(struct agent_guests *m, struct ag_guest *g, char *why, size_t len);

/* ---- agent_guests_check.c ---------------------------------------------- */

/* Starts the health checks that are due (from the agent's tick). */
void ag_checks_due(struct agent_guests *m);
/* Takes the finished checks' results (from done_cb): a guest whose
 * check failed check_failures times in a row is killed, and the kill
 * counts as a crash (done_cb). */
void ag_checks_collect(struct agent_guests *m);
/* Frees the finished checks nobody collected (agent_guests_free). */
void ag_checks_free(struct agent_guests *m);

#endif
