/*
 * coord_state.h - the replicated cluster state model (pure: no I/O).
 *
 * Every coordinator holds one struct coord_state and changes it only by
 * applying CPG messages in delivery order, so all members hold the same
 * state. Decisions (maintenance, fencing, guests) bump seq; soft state
 * (facts, usage, agent presence) does not.
 */
#ifndef HA_COORD_STATE_H
#define HA_COORD_STATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "balance.h"
#include "guestdef.h"
#include "hactl_states.h"
#include "proto/hactl.pb-c.h"

#define COORD_MAX_NODES 128
#define COORD_MAX_GUESTS 65536
#define COORD_MAX_JOBS 64
#define COORD_NAME_MAX 63

struct coord_node {
	uint32_t id;
	char name[COORD_NAME_MAX + 1];
	char address[64];        /* ring0 address, from cmap */
	bool maintenance;
	bool fenced;
	bool agent_connected;
	Hactl__HostFacts *facts; /* owned, NULL until reported */
	Hactl__HostUsage *usage; /* owned, NULL until reported */
	/* soft, from the leader's fencing */
	char fence_state[16];
	char fence_error[256];
	uint32_t fence_attempts;
};

struct coord_state {
	uint64_t seq;
	uint64_t updated_ms;
	size_t n_nodes;
	struct coord_node nodes[COORD_MAX_NODES];
	size_t n_guests;
	Hactl__GuestRecord **guests; /* owned copies */
	size_t n_jobs;
	Hactl__Job **jobs;           /* owned copies, oldest first (coord_job.c) */
};

enum coord_node_state {
	COORD_NODE_ONLINE = 0,
	COORD_NODE_OFFLINE,
	COORD_NODE_FENCED,
	COORD_NODE_MAINTENANCE,
	COORD_NODE_STATE_MAX
};

const char *coord_node_state_str(enum coord_node_state s);
/* fenced > offline > maintenance > online; @member: its coordinator is in
 * the CPG group. */
enum coord_node_state coord_node_state_of(const struct coord_node *n,
					  bool member);

/* Deep copy of a protobuf message (pack, unpack); freed with
 * protobuf_c_message_free_unpacked(). NULL on failure or for NULL. */
void *coord_pb_dup(const ProtobufCMessage *m);
/* Replaces a string field of an unpacked message (copy of @v, "" for
 * NULL); a failed copy leaves it as it was. */
void coord_pb_set_str(char **field, const char *v);
/* qsort() comparator of uint32_t. */
int coord_cmp_u32(const void *a, const void *b);

void coord_state_init(struct coord_state *st);
/* Frees everything the state owns and re-initialises it. */
void coord_state_clear(struct coord_state *st);

struct coord_node *coord_state_node(struct coord_state *st, uint32_t id);
struct coord_node *coord_state_node_by_name(struct coord_state *st,
					    const char *name);
/* Adds (or renames, when @name is not NULL) node @id; NULL when full or
 * id 0. Keeps nodes sorted by id. */
struct coord_node *coord_state_node_add(struct coord_state *st, uint32_t id,
					const char *name);

/* Replaces the soft state of node @id with copies; returns 0 or -errno. */
int coord_state_set_facts(struct coord_state *st, uint32_t id,
			  const Hactl__HostFacts *facts, bool agent_connected);
int coord_state_set_usage(struct coord_state *st, uint32_t id,
			  const Hactl__HostUsage *usage);

/*
 * Builds the protobuf form. The result borrows facts, usage and guests
 * from @st (valid while @st is unchanged) and is freed with
 * coord_state_export_free(). NULL on allocation failure.
 */
Hactl__ClusterState *coord_state_export(const struct coord_state *st);
void coord_state_export_free(Hactl__ClusterState *cs);

/*
 * Replaces @dst with a validated deep copy of @src. On error (-EINVAL,
 * -E2BIG, -ENOMEM) @dst is unchanged and @why says what is wrong.
 */
int coord_state_import(struct coord_state *dst, const Hactl__ClusterState *src,
		       char *why, size_t whylen);

/* What the leader knows beyond the replicated state when it decides. */
struct coord_view {
	const uint32_t *members; /* CPG members (nodes whose coordinator runs) */
	size_t n_members;
	/* the placement policy in force; NULL = the built-in defaults */
	const struct ha_bal_policy *policy;
};

Hactl__GuestRecord *coord_state_guest(const struct coord_state *st, const char *name);
/* Memory of a guest from its definition, 0 when unparsable. */
uint64_t coord_guest_mem_kib(const Hactl__GuestRecord *g);
/* The guest is to run: its desired state is RUNNING. */
bool coord_guest_wants_running(const Hactl__GuestRecord *g);
/* Whether the operator paused @g (`hactl pause`, GuestRecord.paused). */
bool coord_guest_paused(const Hactl__GuestRecord *g);
/* The state of migration @m (may be NULL) as a MigrationState value;
 * HA_STATE_NONE for none or a name that is no state's. */
int coord_migration_state(const Hactl__Migration *m);
/* Migration @m (may be NULL) is in progress: TRANSFERRING. */
bool coord_migration_in_progress(const Hactl__Migration *m);
/* May node @n run a guest of @type now? false with @why otherwise. */
bool coord_node_eligible(const struct coord_node *n, const struct coord_view *v,
			 const char *type, char *why, size_t whylen);

/*
 * Leader only: checks @in and makes the decisions it leaves open. For a
 * guest start, writes the chosen node into @node_out (when the request
 * named none: the engine's CREATE under v->policy, coord_place_new()).
 * Returns 0 or -errno with @why (-ENOSPC: the engine's reason).
 */
int coord_change_prepare(const struct coord_state *st, const struct coord_view *v,
			 const Hactl__Change *in, char *node_out, size_t node_len,
			 char *why, size_t whylen);

/* ---- coord_place.c: every placement through the engine (balance.h) ---- */

/* The engine's view of a guest from its definition: unplaced, no use. */
void coord_place_guest_from_def(struct ha_bal_guest *bg, const char *name,
				const struct ha_guest_def *def);

/* Leave out guests whose owner is lost but not yet fenced (recovery). */
#define COORD_SNAP_FENCED_ONLY 1u

/*
 * The cluster as the engine sees it: nodes (online = member of @v, agent
 * connected, not fenced, facts known), guests that should run on their
 * owner (no owner: not placed). Caller frees *out with
 * ha_bal_cluster_free(). 0 or -errno with @why.
 */
int coord_place_snapshot(const struct coord_state *st, const struct coord_view *v,
			 uint64_t now_ms, unsigned flags, struct ha_bal_cluster **out,
			 char *why, size_t whylen);

/*
 * The engine's node for guest @name (definition @def) under v->policy:
 * CREATE when @avoid is NULL or "", else RELOCATE off node @avoid.
 * Returns 0 with the node in @node, -ENOSPC with the engine's reason,
 * -EALREADY when the guest is placed, other -errno.
 */
int coord_place_new(const struct coord_state *st, const struct coord_view *v,
		    const char *name, const struct ha_guest_def *def, const char *avoid,
		    char *node, size_t len, char *why, size_t whylen);

/*
 * Leader only: the recovery plan for every guest that should run but whose
 * owner is fenced (or that found no room before): the engine's RECOVER
 * under v->policy (priority, then size; anti-affinity, affinity and groups
 * hard; thresholds when possible; the N+1 reserve may be used). Returns
 * the number of placements in @out (0: nothing to do), which the caller
 * frees with coord_recover_plan_free().
 */
size_t coord_recover_plan(const struct coord_state *st, const struct coord_view *v,
			  Hactl__RecoverChange *out);
void coord_recover_plan_free(Hactl__RecoverChange *rc);

/*
 * Leader only: the restart policy (common/restart.h) for guest @g once its
 * owner gave up under its current generation. Returns 1 and fills @out
 * (pointing into @g, @node and @reason): a relocation to the engine's node
 * (RELOCATE off the owner under v->policy) while fewer than [ha]
 * max_relocate were made, else no node (state error). 0: nothing to do.
 */
int coord_restart_decide(const struct coord_state *st, const struct coord_view *v,
			 const Hactl__GuestRecord *g, Hactl__GuestRelocateChange *out,
			 char *node, size_t node_len, char *reason, size_t reason_len);

/* ---- coord_job.c: jobs, the waves of moves the leader runs ---- */

/* A job whose moves may still start or run (running or cancelling). */
bool coord_job_active(const Hactl__Job *j);
Hactl__Job *coord_job_by_id(const struct coord_state *st, uint64_t id);
/* Checks a JobStartChange or JobMoveChange: 0 or -errno with @why. */
int coord_job_check(const struct coord_state *st, const Hactl__Change *ch, char *why,
		    size_t whylen);
/* Applies a checked job change (the caller bumps seq). */
int coord_job_apply(struct coord_state *st, const Hactl__Change *ch, uint64_t now_ms,
		    char *why, size_t whylen);
/* Hooks of the migration transaction: the move of job @ms->job for that
 * guest runs as migration @migration_id; a migration of a job ended. */
void coord_job_migration_started(struct coord_state *st, const Hactl__MigrateStartChange *ms,
				 uint64_t migration_id);
void coord_job_migration_ended(struct coord_state *st, const Hactl__Migration *mg,
			       bool commit, const char *reason, uint64_t now_ms);
/* Guest @guest was destroyed: its open moves fail. */
void coord_job_guest_gone(struct coord_state *st, const char *guest, uint64_t now_ms);
/*
 * Leader only: the job @in asks for, with its moves planned when it has
 * none (evacuate: the engine's EVACUATE plan under v->policy; return: the
 * guests whose home is the node). A balance job's moves are the client's.
 * 0 with *@out (free with protobuf_c_message_free_unpacked), or -errno.
 */
int coord_job_plan(const struct coord_state *st, const struct coord_view *v, uint64_t now_ms,
		   const Hactl__JobStartChange *in, Hactl__JobStartChange **out, char *why,
		   size_t whylen);
/*
 * Leader only: the next steps of every running job, given to @emit one
 * change at a time: a MigrateStartChange for each move of the job's
 * current wave that may start now (up to its parallel count), or a
 * JobMoveChange for one that cannot. Returns how many.
 */
size_t coord_job_next(const struct coord_state *st, const struct coord_view *v,
		      void (*emit)(void *arg, const Hactl__Change *ch), void *arg);
void coord_job_describe(const Hactl__Change *ch, char *buf, size_t len);

/* Soft state: node @node reports one of its guests. */
void coord_guest_status_apply(struct coord_state *st, uint32_t node,
			      const Hactl__GuestStatus *gs, uint64_t now_ms);

/* Would @ch apply to @st? 0, or -ENOENT/-EINVAL/-EALREADY with @why. */
int coord_change_check(const struct coord_state *st, const Hactl__Change *ch,
		       char *why, size_t whylen);
/* Checks and applies @ch; on success seq is incremented. */
int coord_change_apply(struct coord_state *st, const Hactl__Change *ch,
		       uint64_t now_ms, char *why, size_t whylen);
/* A one-line description of @ch for logs and events. */
void coord_change_describe(const Hactl__Change *ch, char *buf, size_t len);

/* Index of the state to adopt after a membership change: highest seq,
 * then lowest sender id. -1 when n == 0. */
int coord_sync_pick(const uint64_t *seqs, const uint32_t *senders, size_t n);

/* One member's state in a sync, as far as the choice goes. */
struct coord_sync_in {
	uint64_t seq;
	uint32_t sender;
	bool current; /* its state is current (it kept up with the cluster) */
	bool was_current; /* current until it lost quorum, running since */
	bool unblock; /* an operator's `hactl unblock` */
};

/* The state every member adopts: the best (coord_sync_pick) of the
 * current ones when there are any, else of those that were current until
 * they lost quorum, else of all. -1 when n == 0. */
int coord_sync_choose(const struct coord_sync_in *in, size_t n);
/* Is the adopted state current after this sync? When a member was
 * current, when an operator unblocked, when every node of @nodes took
 * part (corosync's wait_for_all: with everyone present, the newest state
 * is the newest there is), or when the members that were current until
 * they lost quorum are more than half of @nodes (any quorate partition
 * since then, one vote per node, would have included one of them, whose
 * running coordinator would have synced with it). */
bool coord_sync_current(const struct coord_sync_in *in, size_t n, const uint32_t *nodes,
			size_t n_nodes);

/*
 * Would a commit delivered from @sender be applied? Only when it comes
 * from the leader of the current CPG membership (its lowest member: the
 * CPG view is ordered with the messages, so every member answers alike),
 * was decided in this membership @epoch, and its seq is after @state_seq.
 * 0, or -EPERM / -ESTALE with @why.
 */
int coord_commit_check(uint64_t state_seq, uint64_t epoch, const uint32_t *members,
		       size_t n_members, uint32_t sender, const Hactl__CpgCommit *cm,
		       char *why, size_t whylen);

/* Lowest node id that is both a CPG member and a quorum member, 0 when
 * not quorate. An empty quorum list counts every CPG member. */
uint32_t coord_leader_pick(bool quorate, const uint32_t *cpg, size_t n_cpg,
			   const uint32_t *quorum, size_t n_quorum);

#endif
