/*
 * coordinator.h - private header of ha-coordinator.
 *
 * One qb_loop drives everything: CPG and votequorum fds, the IPC server,
 * timers and signals. Handlers never block.
 */
#ifndef HA_COORDINATOR_H
#define HA_COORDINATOR_H

#include <stdbool.h>
#include <stdint.h>

#include <corosync/cmap.h>
#include <corosync/cpg.h>
#include <corosync/votequorum.h>
#include <qb/qbipcs.h>
#include <qb/qblist.h>
#include <qb/qbloop.h>

#include "balance.h"
#include "config.h"
#include "coord_state.h"
#include "envelope.h"

#define COORD_CPG_GROUP "hactl"
#define COORD_SENDQ_MAX 4096

/*
 * State sync (coord_replica.c, docs/protocol.md): a CpgSyncState up to
 * COORD_SYNC_INLINE_MAX bytes (envelope included) is one CPG message;
 * a larger one goes as CpgSyncChunk pieces of COORD_SYNC_CHUNK bytes, at
 * most COORD_SYNC_MAX in all (checked before anything is allocated). A
 * member that has not completed a sync COORD_SYNC_RETRY_MS after it sent
 * its state sends it again (a new round).
 */
#define COORD_SYNC_INLINE_MAX (1024u * 1024u)
#define COORD_SYNC_CHUNK (512u * 1024u)
#define COORD_SYNC_MAX (64u * 1024u * 1024u)
#define COORD_SYNC_RETRY_MS 10000u

/* One sender's state arriving in pieces. */
struct coord_sync_reasm {
	uint64_t round;
	uint32_t next;   /* index expected */
	uint32_t count;
	uint64_t total;
	uint64_t got;
	uint8_t *buf;    /* total bytes; NULL = no transfer under way */
};

struct coord_msg {
	struct qb_list_head list;
	uint32_t sender;
	size_t len;
	uint8_t data[]; /* one envelope */
};

struct coord_pending {
	struct qb_list_head list;
	uint64_t req_id;
	qb_ipcs_connection_t *conn; /* referenced */
	qb_loop_timer_handle timer;
	uint32_t timeout_ms;
	struct coord *c;
};

/* An action this node's agent carries out for a (possibly remote) origin. */
struct coord_action {
	struct qb_list_head list;
	uint64_t local_id;   /* id sent to the agent */
	uint32_t origin;
	uint64_t origin_req;
};

enum coord_fence_state {
	COORD_FENCE_IDLE = 0,
	COORD_FENCE_WAITING,  /* self-fence deadline */
	COORD_FENCE_FENCING,  /* agents running */
	COORD_FENCE_FAILED,   /* alarm; retried with backoff */
	COORD_FENCE_DONE,     /* confirmed; commit pending */
	COORD_FENCE_STATE_MAX
};

const char *coord_fence_state_str(enum coord_fence_state s);

struct coord_fence_op {
	uint32_t node;
	enum coord_fence_state state;
	int method;             /* enum fence_method */
	uint32_t attempts;
	uint64_t lost_ms;       /* monotonic */
	uint64_t deadline_ms;
	uint64_t next_try_ms;
	uint64_t commit_retry_ms;
	char error[512];
};

#define COORD_EVENTS_MAX 200

/* The balancing engine online (coord_balance.c). */
struct coord_bal {
	struct ha_bal_policy *policy; /* in force; never NULL once started */
	uint64_t policy_sig;          /* of the files it came from */
	char policy_err[512];         /* why the files were refused; "" */
	uint64_t next_ms;             /* monotonic time of the next round; 0 */
	uint32_t imbalanced_rounds;   /* leader: consecutive imbalanced rounds */
	uint64_t last_round_ms;       /* wall clock */
	char last_round[256];
	qb_loop_timer_handle timer;
};

struct coord {
	qb_loop_t *loop;
	struct ha_config cfg;
	const char *config_path;
	char state_path[PATH_MAX];
	bool stopping;

	/* corosync */
	bool cs_connected;
	cpg_handle_t cpg;
	votequorum_handle_t vq;
	uint32_t local_id;
	bool joined;             /* we saw ourselves in a confchg */
	bool vq_quorate;
	uint32_t expected_votes, total_votes, quorum;
	uint32_t members[COORD_MAX_NODES]; /* CPG members, sorted */
	size_t n_members;
	uint32_t qmembers[COORD_MAX_NODES]; /* votequorum members */
	size_t n_qmembers;
	uint32_t leader;
	uint32_t peer_proto_max[COORD_MAX_NODES]; /* by index in members */
	uint32_t proto_version;
	qb_loop_timer_handle reconnect_timer;

	/* outgoing CPG messages waiting for CS_ERR_TRY_AGAIN to clear */
	struct qb_list_head sendq;
	size_t sendq_len;
	bool flush_scheduled;
	uint64_t send_dropped;

	/* replicated state and its sync */
	struct coord_state state;
	bool syncing;
	uint32_t sync_members[COORD_MAX_NODES];
	size_t n_sync_members;
	Hactl__CpgSyncState *sync_got[COORD_MAX_NODES]; /* by sync index */
	struct coord_sync_reasm sync_reasm[COORD_MAX_NODES]; /* by sync index */
	struct qb_list_head held; /* struct coord_msg delivered during sync */
	uint64_t syncs_done;
	uint64_t sync_round;      /* rounds of our own state sent */
	uint64_t sync_sent_ms;    /* monotonic; 0 = our state not sent yet */
	uint64_t sync_retries;    /* our state sent again for a stalled sync */
	qb_loop_timer_handle sync_timer;
	/* tests: carries the CPG messages instead of corosync; 0 or -errno
	 * (-EAGAIN: try again later) */
	int (*cpg_tx)(void *arg, uint32_t sender, const void *buf, size_t len);
	void *cpg_tx_arg;

	/* IPC */
	qb_ipcs_service_t *ipcs;
	gid_t ipc_gid;
	const char *ipc_proc_root;        /* NULL = "/proc"; tests set another */
	uint64_t ipc_refused;             /* clients and agent hellos refused */
	qb_ipcs_connection_t *agent_conn; /* referenced */
	Hactl__HostFacts *agent_facts;    /* owned */
	Hactl__HostUsage *agent_usage;    /* owned */
	struct qb_list_head pending;
	uint64_t next_req_id;
	struct qb_list_head actions; /* struct coord_action */
	uint64_t next_action_id;

	/* fencing and recovery (coord_fence.c); node_lost_ms by state index */
	struct coord_fence_op fence_ops[COORD_MAX_NODES];
	uint64_t node_lost_ms[COORD_MAX_NODES];
	int fence_pipe[2];
	unsigned fence_jobs;
	qb_loop_timer_handle fence_timer;
	uint64_t recover_sent_seq, recover_sent_ms;
	uint64_t mig_sent_id, mig_sent_ms;
	bool fence_always;

	struct coord_bal bal;

	/* recent events for `hactl events` and status */
	char *events[COORD_EVENTS_MAX];
	size_t events_head, n_events;

	struct ha_env_stats rx_stats; /* CPG and IPC decoding */
	uint64_t rx_bad_sender;
	uint64_t agent_kicks;    /* refresh events sent to the local agent */
	uint64_t rx_stale;
};

/* cluster.c: corosync connections */
int coord_cluster_connect(struct coord *c);
void coord_cluster_disconnect(struct coord *c);
void coord_cluster_schedule_reconnect(struct coord *c);
/* Queues one message for the CPG group; 0 or -errno. */
int coord_cpg_send(struct coord *c, enum ha_msg_type type,
		   const ProtobufCMessage *msg);
/* Queues @m (an encoded envelope, taken over) for the CPG group. */
int coord_cpg_send_msg(struct coord *c, struct coord_msg *m);
bool coord_is_quorate(const struct coord *c);
bool coord_is_member(const struct coord *c, uint32_t id);
void coord_leader_update(struct coord *c);

/* replica.c: CPG message handling, state sync, commits */
void coord_replica_confchg(struct coord *c, const uint32_t *members,
			   size_t n_members, size_t n_joined);
void coord_replica_deliver(struct coord *c, uint32_t sender, const void *buf,
			   size_t len);
void coord_replica_reset(struct coord *c);
/* The sync watchdog: a sync not complete COORD_SYNC_RETRY_MS after our
 * state went out (or whose send failed) sends it again. Called by a
 * timer while syncing, @now_ms monotonic. */
void coord_replica_sync_check(struct coord *c, uint64_t now_ms);
/*
 * Our state for a sync as CPG envelopes (struct coord_msg, appended to
 * @out, which the caller frees): one CpgSyncState when it fits
 * COORD_SYNC_INLINE_MAX, else CpgSyncChunk pieces of round @round.
 * Returns the number of messages or -errno.
 */
int coord_sync_encode(const struct coord_state *st, uint32_t sender, uint64_t round,
		      struct qb_list_head *out);
/*
 * One piece of a sender's state: 1 and *done (freed with
 * ha_env_msg_free()) when it completes the state, 0 when more must come,
 * -errno with @why when the piece is refused (the transfer is dropped;
 * the sender's next round starts over).
 */
int coord_sync_reasm_feed(struct coord_sync_reasm *r, const Hactl__CpgSyncChunk *ch,
			  Hactl__CpgSyncState **done, char *why, size_t whylen);
void coord_sync_reasm_clear(struct coord_sync_reasm *r);
/* Forwards a client's change to the leader; the reply comes later. */
int coord_request_submit(struct coord *c, qb_ipcs_connection_t *conn,
			 const Hactl__Change *change);
/* Sends an action to the agent of @target; the reply comes later. */
int coord_action_submit(struct coord *c, qb_ipcs_connection_t *conn,
			uint32_t target, const Hactl__AgentAction *action,
			uint32_t timeout_ms);
/* The local agent finished action @local_id. */
void coord_action_done(struct coord *c, const Hactl__AgentActionDone *d);
/* Tells the local agent to fetch the guest list again. */
void coord_agent_kick(struct coord *c);
void coord_pending_drop_conn(struct coord *c, qb_ipcs_connection_t *conn);
void coord_pending_free_all(struct coord *c);
/* The local agent went away: every action it had fails. */
void coord_actions_fail_all(struct coord *c, const char *why);
/* Multicasts this host's agent facts/usage (after sync, on agent change). */
void coord_announce_local(struct coord *c);

/* coord_fence.c */
int coord_fence_start(struct coord *c);
void coord_fence_stop(struct coord *c);
void coord_fence_tick(struct coord *c);
void coord_fence_committed(struct coord *c, const char *node, bool fenced);
void coord_fence_status_apply(struct coord *c, const Hactl__CpgFenceStatus *fs);
/* hactl fence NODE: runs the node's fence levels now; on success commits
 * it fenced and answers @conn then. */
int coord_fence_manual(struct coord *c, qb_ipcs_connection_t *conn, const char *node);

/* coord_migration.c */
void coord_migration_tick(struct coord *c);

/* coord_balance.c */
int coord_balance_start(struct coord *c);
void coord_balance_stop(struct coord *c);
/* Loads the policy files again when they changed (@force: anyway). */
void coord_balance_reload(struct coord *c, bool force);
/* The cluster as the engine sees it now; caller frees with
 * ha_bal_cluster_free(). 0 or -errno with @why. */
int coord_balance_snapshot(const struct coord *c, struct ha_bal_cluster **out,
			   char *why, size_t whylen);
/* The engine's node for a guest started without one: 0 with @node,
 * -ENOSPC with the reason, other -errno: keep the coordinator's choice. */
int coord_balance_place(struct coord *c, const Hactl__GuestStartChange *gs,
			char *node, size_t len, char *why, size_t whylen);
/* Fills @r for `hactl balance`; r->cluster and r->policy are malloc'd. */
int coord_balance_reply(struct coord *c, Hactl__BalanceReply *r, char *why, size_t whylen);

/* coord_events.c: a bounded in-memory history */
void coord_event(struct coord *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void coord_events_free(struct coord *c);

/* persist.c */
int coord_state_load(struct coord *c);
int coord_state_save(struct coord *c);

/* ipc.c */
/* Who an IPC client is, decided when it connects. */
enum coord_peer_role {
	COORD_PEER_REFUSED = 0,
	COORD_PEER_CLIENT, /* member of the IPC group: hactl */
	COORD_PEER_ROOT,   /* uid 0: hactl, and the only one that may be the agent */
	COORD_PEER_ROLE_MAX
};

const char *coord_peer_role_str(enum coord_peer_role r);
/*
 * The role of a client with effective @uid and @gid, process @pid: root,
 * a member of @group by its primary gid or by a supplementary group (the
 * Groups: line of @proc_root/PID/status, NULL = "/proc"; when that cannot
 * be read, the user's configured groups), or refused. @group (gid_t)-1 =
 * no group: only root.
 */
enum coord_peer_role coord_ipc_peer_role(uid_t uid, gid_t gid, pid_t pid, gid_t group,
					 const char *proc_root);

/*
 * Guests in pages (docs/protocol.md, "Large replies"). @budget: the bytes
 * the guests may take in one reply (coord_ipc_page_budget() of the reply
 * without guests). Puts the guests of @st from index @offset on that
 * @want (NULL = all) accepts into @out (room for st->n_guests) while they
 * fit; returns how many, and in *next the index the next page starts at,
 * 0 when this page reaches the end. 0 returned with *next != 0: the next
 * guest alone does not fit.
 */
size_t coord_ipc_page_budget(const ProtobufCMessage *base_reply);
size_t coord_guests_page(const struct coord_state *st, uint32_t offset, size_t budget,
			 bool (*want)(const Hactl__GuestRecord *g, void *arg), void *arg,
			 Hactl__GuestRecord **out, uint32_t *next);

/* The guests an agent asks for: its host's (owner, running_on, a
 * migration's source or destination) and those it holds (@held sorted by
 * strcmp). */
struct coord_host_filter {
	uint32_t node;
	const char *const *held;
	size_t n_held;
};
bool coord_guest_of_host(const Hactl__GuestRecord *g, void *arg);

int coord_ipc_start(struct coord *c);
void coord_ipc_stop(struct coord *c);

#endif
