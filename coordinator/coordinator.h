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
#include "coord_metrics.h"
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
	COORD_FENCE_UNCONFIRMED, /* nothing can confirm it off: alarm, no
				  * recovery until `hactl fence --confirm` */
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
	bool down_noted;        /* lost while it could run nothing: said once */
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

/* When a node left the CPG group, by node id (never by position in the
 * state's node array: that array shifts when a node is added or a sync
 * replaces it). */
struct coord_loss {
	uint32_t node;   /* 0 = free slot */
	uint64_t ms;     /* monotonic */
};

/*
 * Where coord_cpg_send() hands an encoded envelope instead of corosync:
 * the unit tests' loopback bus (tests/unit/test_coord_replay.c). 0 or
 * -errno; the buffer is the caller's.
 */
typedef int (*coord_send_fn)(struct coord *c, const uint8_t *buf, size_t len);

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
	uint64_t peer_features[COORD_MAX_NODES];  /* CpgHello.features, same index */
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
	/* Membership epoch: +1 at every CPG configuration change, one past the
	 * highest of the members at the end of a sync; equal on all members.
	 * Commits carry it and are applied only in their own epoch. */
	uint64_t epoch;
	uint64_t commit_seq_sent; /* leader: last seq given out in this epoch */
	uint64_t job_wait_ms;     /* leader: job steps wait for their commits until then */
	/* Our state is current: set by a sync with a current member, with
	 * every node, or by `hactl unblock`; cleared at start (the state file
	 * may be stale) and whenever corosync's quorum is lost (a quorate
	 * partition elsewhere may decide meanwhile). Not current counts as not
	 * quorate: no leader, no decisions, the agent runs nothing. */
	bool current;
	bool was_current; /* current until quorum was lost; running since */
	uint64_t rx_commit_refused;
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

	/* fencing and recovery (coord_fence.c) */
	struct coord_fence_op fence_ops[COORD_MAX_NODES];
	struct coord_loss lost[COORD_MAX_NODES];
	int fence_pipe[2];
	unsigned fence_jobs;
	qb_loop_timer_handle fence_timer;
	uint64_t recover_sent_seq, recover_sent_ms;
	uint64_t mig_sent_id, mig_sent_ms;
	bool fence_always;

	struct coord_bal bal;
	uint64_t restart_sent_seq, restart_sent_ms; /* coord_restart.c */

	/* recent events for `hactl events` and status */
	char *events[COORD_EVENTS_MAX];
	size_t events_head, n_events;

	/* counters for /metrics (coord_metrics.c) and the HTTP endpoint
	 * (coord_http.c; NULL when it is off) */
	struct coord_metrics metrics;
	struct coord_http *http;

	struct ha_env_stats rx_stats; /* CPG and IPC decoding */
	uint64_t rx_bad_sender;
	uint64_t agent_kicks;    /* refresh events sent to the local agent */
	uint64_t rx_stale;

	/* tests only: a loopback bus instead of corosync, a fixed clock */
	coord_send_fn send_hook;
	uint64_t test_now_ms; /* 0: the real clocks (monotonic and wall) */
	/* tests only (the simulator, tests/sim): an agent registered without
	 * an IPC connection (its facts in agent_facts), and fence jobs handed
	 * to @fence_job_hook instead of a worker thread running the agents;
	 * their results come back through coord_fence_job_done() */
	bool test_agent;
	int (*fence_job_hook)(struct coord *c, uint32_t node, const char *name,
			      uint32_t attempt);
};

/* Monotonic ms (the tests' clock when one is set). */
uint64_t coord_now_ms(const struct coord *c);
/* Wall-clock ms for the replicated state's times (the tests' clock when
 * one is set, so that hold times and rates follow it). */
uint64_t coord_wall_ms(const struct coord *c);
/* When node @id left the CPG group (monotonic ms); 0 = it has not, or it
 * came back since. */
uint64_t coord_lost_ms(const struct coord *c, uint32_t id);
void coord_lost_set(struct coord *c, uint32_t id, uint64_t ms);

/* coord_cluster.c: corosync connections */
/* What a coordinator needs beyond zeros before anything runs: its empty
 * queues, the newest protocol it speaks, an empty state (the daemon, the
 * simulator and the tests all start one this way). */
void coord_init(struct coord *c);
int coord_cluster_connect(struct coord *c);
void coord_cluster_disconnect(struct coord *c);
void coord_cluster_schedule_reconnect(struct coord *c);
/* Queues one message for the CPG group; 0 or -errno. A CpgCommit is sent
 * with this membership's epoch and the next seq of this leader (its own
 * seq and epoch fields are ignored). */
int coord_cpg_send(struct coord *c, enum ha_msg_type type,
		   const ProtobufCMessage *msg);
/* Queues @m (an encoded envelope, taken over) for the CPG group. */
int coord_cpg_send_msg(struct coord *c, struct coord_msg *m);
/* corosync's partition is quorate and our state is current. */
bool coord_is_quorate(const struct coord *c);
/* Waiting for current state although corosync is quorate (an alarm). */
bool coord_is_blocked(const struct coord *c);
/* votequorum says @quorate with these member nodes. */
void coord_quorum_set(struct coord *c, bool quorate, const uint32_t *members, size_t n);
bool coord_is_member(const struct coord *c, uint32_t id);
void coord_leader_update(struct coord *c);

/* coord_replica.c: CPG message handling, state sync, commits */
/* A CPG configuration change: @members now (one entry per node), the
 * nodes that @left and that @joined. Records loss times and starts a
 * state sync when anyone joined. */
void coord_replica_confchg(struct coord *c, const uint32_t *members, size_t n_members,
			   const uint32_t *left, size_t n_left, const uint32_t *joined,
			   size_t n_joined);
void coord_replica_deliver(struct coord *c, uint32_t sender, const void *buf,
			   size_t len);
void coord_replica_reset(struct coord *c);
/* The sync watchdog: a sync not complete COORD_SYNC_RETRY_MS after our
 * state went out (or whose send failed) sends it again. Called by a
 * timer while syncing, @now_ms monotonic. */
void coord_replica_sync_check(struct coord *c, uint64_t now_ms);
/*
 * Our state for a sync as CPG envelopes (struct coord_msg, appended to
 * @out, which the caller frees), with @head's fields (sender, epoch,
 * current; its state is ignored): one CpgSyncState when it fits
 * COORD_SYNC_INLINE_MAX, else CpgSyncChunk pieces of round @round.
 * Returns the number of messages or -errno.
 */
int coord_sync_encode(const struct coord_state *st, const Hactl__CpgSyncState *head,
		      uint64_t round, struct qb_list_head *out);
/*
 * One piece of a sender's state: 1 and *done (freed with
 * ha_env_msg_free()) when it completes the state, 0 when more must come,
 * -errno with @why when the piece is refused (the transfer is dropped;
 * the sender's next round starts over).
 */
int coord_sync_reasm_feed(struct coord_sync_reasm *r, const Hactl__CpgSyncChunk *ch,
			  Hactl__CpgSyncState **done, char *why, size_t whylen);
void coord_sync_reasm_clear(struct coord_sync_reasm *r);
/* hactl unblock: every member takes the newest state among those present
 * as current. 0 or -errno with @why. */
int coord_unblock(struct coord *c, char *why, size_t whylen);
/* Forwards a client's change to the leader; the reply comes later (to
 * @conn; with NULL nobody waits for it). */
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
/* The local agent's report says how its watchdog is armed: kept in the
 * host's facts, multicast when it changed (then true). */
bool coord_agent_watchdog_note(struct coord *c, const Hactl__AgentGuestReport *r);

/* coord_fence.c */
int coord_fence_start(struct coord *c);
void coord_fence_stop(struct coord *c);
/* Whether @node may run a guest now (owns one that should run, one runs
 * there, or a migration involves it); a lost node that may not is marked
 * down, not fenced. */
bool coord_fence_may_run_guests(const struct coord *c, uint32_t node);
void coord_fence_tick(struct coord *c);
void coord_fence_committed(struct coord *c, const char *node, bool fenced);
void coord_fence_status_apply(struct coord *c, const Hactl__CpgFenceStatus *fs);
/* The fence job of lost node @node ended: @rc 0 = confirmed off, else
 * failed; @log says what the agents said. */
void coord_fence_job_done(struct coord *c, uint32_t node, int rc, const char *log);
/* hactl fence NODE: runs the node's fence levels now; on success commits
 * it fenced and answers @conn then. */
int coord_fence_manual(struct coord *c, qb_ipcs_connection_t *conn, const char *node);
/* hactl fence --confirm NODE: the operator has made sure NODE is off; it
 * is committed fenced (method "confirmed") through the leader, which then
 * recovers its guests. Refused (-errno with @why) while NODE is in the
 * membership. Otherwise 0: @conn (may be NULL) gets the commit's result. */
int coord_fence_confirm(struct coord *c, qb_ipcs_connection_t *conn, const char *node,
			char *why, size_t whylen);
/* Why node @n, lost, may be taken for off once its self-fence deadline
 * passed (method watchdog): true, or false with @why. */
bool coord_fence_watchdog_ok(const struct coord *c, const struct coord_node *n, char *why,
			     size_t whylen);

/* coord_migration.c */
void coord_migration_tick(struct coord *c);

/* coord_balance.c */
int coord_balance_start(struct coord *c);
void coord_balance_stop(struct coord *c);
/* Each second: policy reload, the restart policy, the leader's rounds. */
void coord_balance_tick(struct coord *c);
/* Leader: the next steps of the running jobs (coord_job.c). */
void coord_job_tick(struct coord *c);

/* CpgHello.features bits: what a coordinator can apply beyond its
 * protocol version. A feature is used only when every member has it. */
#define COORD_FEATURE_JOBS (1ull << 0) /* Change.job_start / job_move */
#define COORD_FEATURE_PAUSE (1ull << 1) /* Change.guest_pause, GuestRecord.paused */
#define COORD_FEATURES (COORD_FEATURE_JOBS | COORD_FEATURE_PAUSE)
bool coord_members_have(const struct coord *c, uint64_t features);
/* Loads the policy files again when they changed (@force: anyway). */
void coord_balance_reload(struct coord *c, bool force);
/* The cluster as the engine sees it now; caller frees with
 * ha_bal_cluster_free(). 0 or -errno with @why. */
int coord_balance_snapshot(const struct coord *c, struct ha_bal_cluster **out,
			   char *why, size_t whylen);
/* Fills @r for `hactl balance`; r->cluster and r->policy are malloc'd. */
int coord_balance_reply(struct coord *c, Hactl__BalanceReply *r, char *why, size_t whylen);

/* coord_restart.c: leader only, each second: the restart policy's
 * relocations and errors */
void coord_restart_tick(struct coord *c);

/* coord_events.c: a bounded in-memory history */
void coord_event(struct coord *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void coord_events_free(struct coord *c);

/* coord_persist.c */
int coord_state_load(struct coord *c);
int coord_state_save(struct coord *c);

/* coord_ipc.c */
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
