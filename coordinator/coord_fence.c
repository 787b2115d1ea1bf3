/*
 * coord_fence.c - fencing of lost nodes and recovery of their guests.
 *
 * Only the leader of a quorate partition acts. For every node that is not
 * in the membership, not fenced and not coming back, one operation per
 * node moves through:
 *
 *   IDLE -> WAITING (method watchdog, and the node's agent had reported
 *                    an armed watchdog of at most half the self-fence
 *                    timeout: until lost + self_fence_timeout)
 *        -> UNCONFIRMED (method watchdog without such a watchdog: alarm)
 *        -> FENCING (method agent: levels in a worker thread)
 *   WAITING/FENCING -> DONE -> commit "node fenced" -> IDLE
 *   FENCING -> FAILED (alarm, retry with backoff 1 s .. 30 s) -> FENCING
 *   UNCONFIRMED -> FENCING (fence.conf now gives the node a device)
 *   any -> IDLE when the node rejoins before it was fenced, or when an
 *          operator's `hactl fence --confirm` is committed
 *
 * No guest is placed elsewhere before the commit (Pacemaker's rule: a
 * host is off when a fence device confirmed it, when a watchdog that its
 * agent armed enforces its self-fence, or when an operator says so); then
 * a recovery plan (coord_recover_plan) is committed. A fenced node that
 * rejoins is unfenced by another commit. Progress is multicast
 * (CpgFenceStatus) so every node's `hactl status` shows it.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <qb/qblog.h>

#include "coordinator.h"
#include "fencing.h"
#include "hactl_states.h"
#include "ipc.h"
#include "util.h"

#define TICK_MS 100
#define BACKOFF_MIN_MS 1000
#define BACKOFF_MAX_MS 30000
#define COMMIT_RETRY_MS 3000
#define RECHECK_MS 5000 /* an unconfirmed node: fence.conf read again */

/* The protocol's FenceState, whose names are proto/hactl_states.c's. */
_Static_assert((int)COORD_FENCE_IDLE == (int)HACTL__FENCE_STATE__FENCE_IDLE &&
	       (int)COORD_FENCE_WAITING == (int)HACTL__FENCE_STATE__FENCE_WAITING &&
	       (int)COORD_FENCE_FENCING == (int)HACTL__FENCE_STATE__FENCE_FENCING &&
	       (int)COORD_FENCE_FAILED == (int)HACTL__FENCE_STATE__FENCE_FAILED &&
	       (int)COORD_FENCE_DONE == (int)HACTL__FENCE_STATE__FENCE_DONE &&
	       (int)COORD_FENCE_UNCONFIRMED == (int)HACTL__FENCE_STATE__FENCE_UNCONFIRMED &&
	       COORD_FENCE_STATE_MAX == HA_FENCE_STATE_MAX, "coord_fence_state is FenceState");

const char *coord_fence_state_str(enum coord_fence_state s)
{
	return ha_fence_state_str((Hactl__FenceState)s);
}

/* The one transition table (see the comment at the top). */
static bool transition_ok(enum coord_fence_state from, enum coord_fence_state to)
{
	static const bool ok[COORD_FENCE_STATE_MAX][COORD_FENCE_STATE_MAX] = {
		[COORD_FENCE_IDLE] = { [COORD_FENCE_WAITING] = true, [COORD_FENCE_FENCING] = true,
				       [COORD_FENCE_UNCONFIRMED] = true },
		[COORD_FENCE_UNCONFIRMED] = { [COORD_FENCE_FENCING] = true, [COORD_FENCE_IDLE] = true },
		[COORD_FENCE_WAITING] = { [COORD_FENCE_DONE] = true, [COORD_FENCE_IDLE] = true },
		[COORD_FENCE_FENCING] = { [COORD_FENCE_DONE] = true, [COORD_FENCE_FAILED] = true,
					  [COORD_FENCE_IDLE] = true },
		[COORD_FENCE_FAILED] = { [COORD_FENCE_FENCING] = true, [COORD_FENCE_IDLE] = true },
		[COORD_FENCE_DONE] = { [COORD_FENCE_IDLE] = true },
	};

	return ok[from][to];
}

static void fence_status_send(struct coord *c, struct coord_fence_op *op)
{
	Hactl__CpgFenceStatus fs = HACTL__CPG_FENCE_STATUS__INIT;

	fs.leader = c->local_id;
	fs.node = op->node;
	fs.state = (char *)coord_fence_state_str(op->state);
	fs.error = op->error;
	fs.has_attempts = true;
	fs.attempts = op->attempts;
	coord_cpg_send(c, HA_MSG_CPG_FENCE_STATUS, &fs.base);
}

static bool set_state(struct coord *c, struct coord_fence_op *op,
		      enum coord_fence_state expected, enum coord_fence_state to)
{
	if (op->state != expected || !transition_ok(op->state, to)) {
		qb_log(LOG_ERR, "fencing of node %u: refused transition %s -> %s (now %s)",
		       op->node, coord_fence_state_str(expected), coord_fence_state_str(to),
		       coord_fence_state_str(op->state));
		return false;
	}
	qb_log(LOG_INFO, "fencing of node %u: %s -> %s", op->node,
	       coord_fence_state_str(op->state), coord_fence_state_str(to));
	op->state = to;
	fence_status_send(c, op);
	return true;
}

static struct coord_fence_op *op_for(struct coord *c, uint32_t node)
{
	for (size_t i = 0; i < COORD_MAX_NODES; i++) {
		if (c->fence_ops[i].node == node) {
			return &c->fence_ops[i];
		}
	}
	for (size_t i = 0; i < COORD_MAX_NODES; i++) {
		if (c->fence_ops[i].node == 0) {
			memset(&c->fence_ops[i], 0, sizeof(c->fence_ops[i]));
			c->fence_ops[i].node = node;
			return &c->fence_ops[i];
		}
	}
	return NULL;
}

/* ---- the worker thread running the agents ---- */

struct fence_job {
	struct coord *c;
	uint32_t node;
	qb_ipcs_connection_t *conn; /* manual fencing: the client waiting */
	struct fence_config cfg;
	struct fence_node fn;
	int rc;
	char log[512];
};

static void *fence_worker(void *arg)
{
	struct fence_job *j = arg;

	j->rc = fence_node_run(&j->cfg, &j->fn, j->log, sizeof(j->log));
	if (write(j->c->fence_pipe[1], &j, sizeof(j)) != sizeof(j)) {
		/* the pipe never fills: one pointer per node at most */
	}
	return NULL;
}

static void manual_done(struct coord *c, struct fence_job *j)
{
	Hactl__Change ch = HACTL__CHANGE__INIT;
	Hactl__NodeFenceChange nf = HACTL__NODE_FENCE_CHANGE__INIT;
	struct coord_node *n = coord_state_node(&c->state, j->node);
	int rc;

	coord_event(c, "manual fencing of %s: %s", j->fn.name, j->log);
	if (j->rc < 0) {
		ha_ipcs_reply_result(j->conn, -EIO, j->log, 0);
		return;
	}
	if (n == NULL || n->fenced) {
		ha_ipcs_reply_result(j->conn, 0, j->log, 0);
		return;
	}
	nf.node = n->name;
	nf.fenced = true;
	nf.method = "manual";
	nf.detail = j->log;
	ch.kind_case = HACTL__CHANGE__KIND_NODE_FENCE;
	ch.node_fence = &nf;
	rc = coord_request_submit(c, j->conn, &ch);
	if (rc < 0) {
		ha_ipcs_reply_result(j->conn, rc, "fenced, but the cluster is unreachable", 0);
	}
}

int coord_fence_manual(struct coord *c, qb_ipcs_connection_t *conn, const char *node)
{
	struct coord_node *n = coord_state_node_by_name(&c->state, node);
	struct fence_job *j;
	pthread_t t;
	pthread_attr_t attr;
	char err[512];
	int rc;

	if (n == NULL) {
		snprintf(err, sizeof(err), "unknown node '%s'", node);
		return ha_ipcs_reply_result(conn, -ENOENT, err, 0);
	}
	if (n->id == c->local_id) {
		return ha_ipcs_reply_result(conn, -EINVAL,
					    "a node does not fence itself: ask another node", 0);
	}
	j = calloc(1, sizeof(*j));
	if (j == NULL) {
		return ha_ipcs_reply_result(conn, -ENOMEM, "out of memory", 0);
	}
	rc = fence_config_load(c->cfg.fence_config, &j->cfg, err, sizeof(err));
	if (rc < 0) {
		free(j);
		return ha_ipcs_reply_result(conn, rc, err, 0);
	}
	fence_config_node(&j->cfg, n->name, &j->fn);
	if (j->fn.method != FENCE_METHOD_AGENT || j->fn.n_levels == 0) {
		snprintf(err, sizeof(err), "node '%s' has no fence device (method %s)", node,
			 fence_method_str(j->fn.method));
		free(j);
		return ha_ipcs_reply_result(conn, -ENODEV, err, 0);
	}
	j->c = c;
	j->node = n->id;
	j->conn = conn;
	qb_ipcs_connection_ref(conn);
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	rc = pthread_create(&t, &attr, fence_worker, j);
	pthread_attr_destroy(&attr);
	if (rc != 0) {
		qb_ipcs_connection_unref(conn);
		free(j);
		return ha_ipcs_reply_result(conn, -rc, "cannot start the fence agent", 0);
	}
	c->fence_jobs++;
	coord_event(c, "manual fencing of %s requested", n->name);
	return 0;
}

int coord_fence_confirm(struct coord *c, qb_ipcs_connection_t *conn, const char *node,
			char *why, size_t whylen)
{
	Hactl__Change ch = HACTL__CHANGE__INIT;
	Hactl__NodeFenceChange nf = HACTL__NODE_FENCE_CHANGE__INIT;
	struct coord_node *n = coord_state_node_by_name(&c->state, node);
	int rc;

	if (n == NULL) {
		snprintf(why, whylen, "unknown node '%s'", node);
		return -ENOENT;
	}
	if (n->id == c->local_id) {
		snprintf(why, whylen, "node '%s' is this node: it is not off", node);
		return -EINVAL;
	}
	if (coord_is_member(c, n->id)) {
		snprintf(why, whylen, "node '%s' is in the membership: it is not off", node);
		return -EBUSY;
	}
	for (size_t i = 0; i < c->n_qmembers; i++) {
		if (c->qmembers[i] == n->id) {
			snprintf(why, whylen,
				 "corosync on node '%s' is still in the membership: it is not off",
				 node);
			return -EBUSY;
		}
	}
	nf.node = n->name;
	nf.fenced = true;
	nf.method = "confirmed";
	nf.detail = "an operator confirmed it off (hactl fence --confirm)";
	ch.kind_case = HACTL__CHANGE__KIND_NODE_FENCE;
	ch.node_fence = &nf;
	rc = coord_request_submit(c, conn, &ch);
	if (rc < 0) {
		snprintf(why, whylen, "cannot reach the cluster: %s", strerror(-rc));
		return rc;
	}
	qb_log(LOG_NOTICE, "operator confirmed node %s off", n->name);
	coord_event(c, "operator confirmed %s off (hactl fence --confirm)", n->name);
	return 0;
}

bool coord_fence_watchdog_ok(const struct coord *c, const struct coord_node *n, char *why,
			     size_t whylen)
{
	uint32_t half = c->cfg.self_fence_timeout_ms / 2;

	if (n->facts == NULL || !n->facts->wd_armed || n->facts->wd_timeout_ms == 0) {
		const char *err = n->facts && n->facts->wd_error ? n->facts->wd_error : "";

		snprintf(why, whylen,
			 "no fence device (method watchdog) and its agent reported no armed "
			 "watchdog%s%s%s", err[0] ? " (" : "", err, err[0] ? ")" : "");
		return false;
	}
	if (n->facts->wd_timeout_ms > half) {
		snprintf(why, whylen,
			 "no fence device (method watchdog) and its watchdog timeout %u ms is more "
			 "than half of self_fence_timeout_ms (%u ms)",
			 n->facts->wd_timeout_ms, c->cfg.self_fence_timeout_ms);
		return false;
	}
	if (!n->agent_connected) {
		snprintf(why, whylen,
			 "no fence device (method watchdog) and its agent was not connected "
			 "(nothing may feed or close its watchdog)");
		return false;
	}
	return true;
}

void coord_fence_job_done(struct coord *c, uint32_t node, int rc, const char *log)
{
	struct coord_fence_op *op = op_for(c, node);
	struct coord_node *n = coord_state_node(&c->state, node);
	const char *name = n ? n->name : "?";

	if (op == NULL || op->state != COORD_FENCE_FENCING) {
		return; /* cancelled meanwhile (the node came back) */
	}
	snprintf(op->error, sizeof(op->error), "%s", log);
	if (rc == 0) {
		qb_log(LOG_NOTICE, "fencing of node %u confirmed: %s", node, log);
		coord_event(c, "fenced %s: %s", name, log);
		set_state(c, op, COORD_FENCE_FENCING, COORD_FENCE_DONE);
		coord_fence_tick(c); /* commit now, not at the next tick */
	} else {
		uint64_t backoff = BACKOFF_MIN_MS << (op->attempts < 5 ? op->attempts : 5);

		if (backoff > BACKOFF_MAX_MS) {
			backoff = BACKOFF_MAX_MS;
		}
		op->next_try_ms = coord_now_ms(c) + backoff;
		qb_log(LOG_ERR, "fencing of node %u FAILED (attempt %u, retry in %llu ms): %s",
		       node, op->attempts, (unsigned long long)backoff, log);
		coord_event(c, "fencing %s failed (attempt %u): %s", name, op->attempts, log);
		set_state(c, op, COORD_FENCE_FENCING, COORD_FENCE_FAILED);
	}
}

static int fence_done_cb(int fd, int revents, void *data)
{
	struct coord *c = data;
	struct fence_job *j;

	while (read(fd, &j, sizeof(j)) == sizeof(j)) {
		if (j->conn) {
			manual_done(c, j);
			c->fence_jobs--;
			qb_ipcs_connection_unref(j->conn);
			free(j);
			continue;
		}
		coord_fence_job_done(c, j->node, j->rc, j->log);
		c->fence_jobs--;
		free(j);
	}
	return 0;
}

static int start_job(struct coord *c, struct coord_fence_op *op, const char *name)
{
	struct fence_job *j;
	pthread_t t;
	pthread_attr_t attr;
	char err[512];
	int rc;

	if (c->fence_job_hook) { /* the simulator runs the job */
		return c->fence_job_hook(c, op->node, name, op->attempts);
	}
	j = calloc(1, sizeof(*j));
	if (j == NULL) {
		return -ENOMEM;
	}
	j->c = c;
	j->node = op->node;
	rc = fence_config_load(c->cfg.fence_config, &j->cfg, err, sizeof(err));
	if (rc < 0) {
		snprintf(op->error, sizeof(op->error), "fence config: %s", err);
		free(j);
		return rc;
	}
	fence_config_node(&j->cfg, name, &j->fn);
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	rc = pthread_create(&t, &attr, fence_worker, j);
	pthread_attr_destroy(&attr);
	if (rc != 0) {
		free(j);
		return -rc;
	}
	c->fence_jobs++;
	return 0;
}

/* ---- commits ---- */

static void commit_change(struct coord *c, Hactl__Change *ch)
{
	Hactl__CpgCommit cm = HACTL__CPG_COMMIT__INIT;

	cm.leader = c->local_id;
	cm.seq = c->state.seq + 1;
	cm.change = ch;
	coord_cpg_send(c, HA_MSG_CPG_COMMIT, &cm.base);
}

static void commit_fence(struct coord *c, const char *node, bool fenced, const char *method,
			 const char *detail)
{
	Hactl__Change ch = HACTL__CHANGE__INIT;
	Hactl__NodeFenceChange nf = HACTL__NODE_FENCE_CHANGE__INIT;

	nf.node = (char *)node;
	nf.fenced = fenced;
	nf.method = (char *)method;
	nf.detail = (char *)detail;
	ch.kind_case = HACTL__CHANGE__KIND_NODE_FENCE;
	ch.node_fence = &nf;
	commit_change(c, &ch);
}

static void recover(struct coord *c)
{
	struct coord_view view = { .members = c->members, .n_members = c->n_members,
				   .policy = c->bal.policy };
	Hactl__RecoverChange rc;
	Hactl__Change ch = HACTL__CHANGE__INIT;
	uint64_t now = coord_now_ms(c);
	char desc[1024];

	if (c->recover_sent_seq == c->state.seq && now < c->recover_sent_ms + COMMIT_RETRY_MS) {
		return; /* our last plan is on its way */
	}
	if (coord_recover_plan(&c->state, &view, &rc) == 0) {
		coord_recover_plan_free(&rc);
		return;
	}
	/* a placement nowhere that was already nowhere changes nothing */
	{
		bool useful = false;

		for (size_t i = 0; i < rc.n_placements; i++) {
			Hactl__GuestRecord *g = coord_state_guest(&c->state, rc.placements[i]->guest);

			if (rc.placements[i]->node || (g && g->owner != 0) ||
			    strcmp(rc.placements[i]->mode, "none") == 0) {
				useful = true;
			}
		}
		if (!useful) {
			coord_recover_plan_free(&rc);
			return;
		}
	}
	ch.kind_case = HACTL__CHANGE__KIND_RECOVER;
	ch.recover = &rc;
	coord_change_describe(&ch, desc, sizeof(desc));
	qb_log(LOG_NOTICE, "recovery plan: %s", desc);
	commit_change(c, &ch);
	c->recover_sent_seq = c->state.seq;
	c->recover_sent_ms = now;
	coord_recover_plan_free(&rc);
}

/* ---- the tick ---- */

/*
 * Whether @node may run a guest now: it owns one that should run, a guest
 * was last seen running there, or it is the source or destination of a
 * migration. A lost node for which none holds cannot run a guest twice
 * (nothing is placed on a node outside the membership, and its agent kills
 * any copy it does not own): it is marked down, not fenced.
 */
bool coord_fence_may_run_guests(const struct coord *c, uint32_t node)
{
	for (size_t i = 0; i < c->state.n_guests; i++) {
		const Hactl__GuestRecord *g = c->state.guests[i];
		const Hactl__Migration *m = g->migration;

		if (g->owner == node && coord_guest_wants_running(g)) {
			return true;
		}
		if (g->running_on == node) {
			return true;
		}
		if (m && (m->source == node || m->destination == node) && m->state &&
		    coord_migration_state(m) != HACTL__MIGRATION_STATE__MIGRATION_COMMITTED &&
		    coord_migration_state(m) != HACTL__MIGRATION_STATE__MIGRATION_ABORTED) {
			return true;
		}
	}
	return false;
}

static bool in_quorum(const struct coord *c, uint32_t id)
{
	for (size_t i = 0; i < c->n_qmembers; i++) {
		if (c->qmembers[i] == id) {
			return true;
		}
	}
	return false;
}

void coord_fence_tick(struct coord *c)
{
	uint64_t now = coord_now_ms(c);
	bool leading = c->leader == c->local_id && coord_is_quorate(c) && !c->syncing;

	for (size_t i = 0; i < c->state.n_nodes; i++) {
		struct coord_node *n = &c->state.nodes[i];
		uint64_t lost = coord_lost_ms(c, n->id);
		/* A node whose coordinator restarts leaves the CPG group but
		 * not corosync's membership: it is alive, not lost, unless its
		 * coordinator stays away longer than the self-fence timeout
		 * (its agent has stopped the guests by then). */
		bool member = coord_is_member(c, n->id) ||
			      (in_quorum(c, n->id) &&
			       (lost == 0 || now - lost < c->cfg.self_fence_timeout_ms));
		struct coord_fence_op *op = op_for(c, n->id);

		if (op == NULL) {
			continue;
		}
		if (member) {
			if (op->state != COORD_FENCE_IDLE) {
				qb_log(LOG_NOTICE, "node %s is back: fencing cancelled", n->name);
				op->state = COORD_FENCE_IDLE; /* any -> IDLE */
				op->attempts = 0;
				op->error[0] = 0;
				fence_status_send(c, op);
			}
			op->lost_ms = 0;
			op->down_noted = false;
			if (leading && n->fenced && now >= op->commit_retry_ms) {
				/* it rebooted and rejoined: it may own guests again */
				commit_fence(c, n->name, false, "rejoin", "node rejoined");
				op->commit_retry_ms = now + COMMIT_RETRY_MS;
			}
			continue;
		}
		if (op->lost_ms == 0) {
			op->lost_ms = lost ? lost : now;
		}
		if (!leading || n->fenced) {
			continue;
		}
		switch (op->state) {
		case COORD_FENCE_IDLE: {
			struct fence_config cfg;
			struct fence_node fn;
			char err[512];

			/* A node that can run no guest is not fenced: one never
			 * seen in this membership is just not up yet (cluster
			 * start); one that was evacuated for maintenance, or shut
			 * down cleanly after its guests went, is down. Fencing it
			 * would power off a host being patched for nothing to
			 * recover (Proxmox fences only hosts with active HA
			 * services). If it is given a guest later, it is fenced. */
			if (!coord_fence_may_run_guests(c, n->id)) {
				if (lost != 0 && !op->down_noted) {
					op->down_noted = true;
					coord_event(c, "%s lost while it ran no guest%s: marked down, "
						    "not fenced", n->name,
						    n->maintenance ? " (maintenance)" : "");
					qb_log(LOG_NOTICE, "node %s lost while it ran no guest: not fenced",
					       n->name);
				}
				break;
			}
			if (fence_config_load(c->cfg.fence_config, &cfg, err, sizeof(err)) < 0) {
				snprintf(op->error, sizeof(op->error), "fence config: %s", err);
				fence_config_node(&(struct fence_config){ .default_method =
					FENCE_METHOD_AGENT }, n->name, &fn);
				fn.n_levels = 0;
			} else {
				fence_config_node(&cfg, n->name, &fn);
			}
			op->method = fn.method;
			if (fn.method == FENCE_METHOD_WATCHDOG &&
			    !coord_fence_watchdog_ok(c, n, op->error, sizeof(op->error))) {
				qb_log(LOG_CRIT, "node %s lost and cannot be confirmed off: %s",
				       n->name, op->error);
				coord_event(c, "%s lost: cannot be confirmed off (%s); no recovery "
					    "until it is fenced or `hactl fence --confirm %s`",
					    n->name, op->error, n->name);
				op->next_try_ms = now + RECHECK_MS;
				set_state(c, op, COORD_FENCE_IDLE, COORD_FENCE_UNCONFIRMED);
			} else if (fn.method == FENCE_METHOD_WATCHDOG) {
				op->deadline_ms = op->lost_ms + c->cfg.self_fence_timeout_ms;
				coord_event(c, "%s lost: waiting out its self-fence deadline (%u ms)",
					    n->name, c->cfg.self_fence_timeout_ms);
				set_state(c, op, COORD_FENCE_IDLE, COORD_FENCE_WAITING);
			} else {
				op->attempts = 1;
				coord_event(c, "%s lost: fencing", n->name);
				set_state(c, op, COORD_FENCE_IDLE, COORD_FENCE_FENCING);
				if (start_job(c, op, n->name) < 0) {
					op->next_try_ms = now + BACKOFF_MIN_MS;
					set_state(c, op, COORD_FENCE_FENCING, COORD_FENCE_FAILED);
				}
			}
			break;
		}
		case COORD_FENCE_WAITING:
			if (now >= op->deadline_ms) {
				snprintf(op->error, sizeof(op->error),
					 "self-fence deadline passed (%u ms)", c->cfg.self_fence_timeout_ms);
				coord_event(c, "%s: self-fence deadline passed", n->name);
				set_state(c, op, COORD_FENCE_WAITING, COORD_FENCE_DONE);
			}
			break;
		case COORD_FENCE_FAILED:
			if (now >= op->next_try_ms) {
				op->attempts++;
				set_state(c, op, COORD_FENCE_FAILED, COORD_FENCE_FENCING);
				if (start_job(c, op, n->name) < 0) {
					op->next_try_ms = now + BACKOFF_MAX_MS;
					set_state(c, op, COORD_FENCE_FENCING, COORD_FENCE_FAILED);
				}
			}
			break;
		case COORD_FENCE_UNCONFIRMED: {
			/* A device added to fence.conf meanwhile is used. */
			struct fence_config cfg;
			struct fence_node fn;
			char err[512];

			if (now < op->next_try_ms) {
				break;
			}
			op->next_try_ms = now + RECHECK_MS;
			if (fence_config_load(c->cfg.fence_config, &cfg, err, sizeof(err)) < 0) {
				break;
			}
			fence_config_node(&cfg, n->name, &fn);
			if (fn.method == FENCE_METHOD_AGENT && fn.n_levels > 0) {
				op->method = fn.method;
				op->attempts = 1;
				coord_event(c, "%s: fence device configured: fencing", n->name);
				set_state(c, op, COORD_FENCE_UNCONFIRMED, COORD_FENCE_FENCING);
				if (start_job(c, op, n->name) < 0) {
					op->next_try_ms = now + BACKOFF_MIN_MS;
					set_state(c, op, COORD_FENCE_FENCING, COORD_FENCE_FAILED);
				}
			}
			break;
		}
		case COORD_FENCE_DONE:
			if (now >= op->commit_retry_ms) {
				commit_fence(c, n->name, true,
					     op->method == FENCE_METHOD_WATCHDOG ? "watchdog" : "agent",
					     op->error);
				op->commit_retry_ms = now + COMMIT_RETRY_MS;
			}
			break;
		default:
			break;
		}
	}
	if (leading) {
		recover(c);
	}
	coord_migration_tick(c);
}

/* A commit of "node fenced" ends the operation. */
void coord_fence_committed(struct coord *c, const char *node, bool fenced)
{
	struct coord_node *n = coord_state_node_by_name(&c->state, node);
	struct coord_fence_op *op;

	if (n == NULL || (op = op_for(c, n->id)) == NULL) {
		return;
	}
	if (fenced && op->state != COORD_FENCE_IDLE) {
		/* confirmed by a device or the deadline (DONE), or by an
		 * operator whatever this node's operation was doing */
		set_state(c, op, op->state, COORD_FENCE_IDLE);
		op->attempts = 0;
		op->error[0] = 0;
	}
	op->commit_retry_ms = 0;
	if (fenced) {
		coord_fence_tick(c); /* plan the recovery now */
	}
}

void coord_fence_status_apply(struct coord *c, const Hactl__CpgFenceStatus *fs)
{
	struct coord_node *n = coord_state_node(&c->state, fs->node);

	coord_metrics_fence_status(c, fs);
	if (n == NULL) {
		return;
	}
	snprintf(n->fence_state, sizeof(n->fence_state), "%s", fs->state);
	snprintf(n->fence_error, sizeof(n->fence_error), "%s", fs->error ? fs->error : "");
	n->fence_attempts = fs->attempts;
}

static void tick_cb(void *data)
{
	struct coord *c = data;

	coord_fence_tick(c);
	if (!c->stopping) {
		qb_loop_timer_add(c->loop, QB_LOOP_MED, TICK_MS * QB_TIME_NS_IN_MSEC, c, tick_cb,
				  &c->fence_timer);
	}
}

int coord_fence_start(struct coord *c)
{
	if (pipe2(c->fence_pipe, O_CLOEXEC | O_NONBLOCK) < 0) {
		return -errno;
	}
	qb_loop_poll_add(c->loop, QB_LOOP_MED, c->fence_pipe[0], POLLIN, c, fence_done_cb);
	return qb_loop_timer_add(c->loop, QB_LOOP_MED, TICK_MS * QB_TIME_NS_IN_MSEC, c, tick_cb,
				 &c->fence_timer);
}

void coord_fence_stop(struct coord *c)
{
	/* agents in flight finish on their own; wait for them, bounded by the
	 * agents' own timeouts */
	for (int i = 0; i < 600 && c->fence_jobs > 0; i++) {
		struct pollfd p = { .fd = c->fence_pipe[0], .events = POLLIN };

		if (poll(&p, 1, 100) > 0) {
			fence_done_cb(c->fence_pipe[0], POLLIN, c);
		}
	}
	if (c->fence_timer) {
		qb_loop_timer_del(c->loop, c->fence_timer);
	}
	qb_loop_poll_del(c->loop, c->fence_pipe[0]);
	close(c->fence_pipe[0]);
	close(c->fence_pipe[1]);
}
