/*
 * agent_guests_fence.c - the self-fence of this host's guests, the
 * watchdog device that enforces it, and fence.conf's method for this node
 * (see agent_guests_int.h; docs/failover.md, "Agent").
 *
 * Self-fencing (docs/failover.md, "Agent"). An agent that has not seen a
 * quorate partition for half the self-fence timeout -- counted from its
 * last quorate answer, or from its own start when it has had none since
 * (an agent restarted inside a minority) -- kills every guest it holds,
 * busy or not, so that each is down before the majority restarts it
 * elsewhere at loss + self_fence_timeout_ms. A guest with an operation in
 * flight (a migration's source, a snapshot) is killed through the driver
 * beside that operation, and its migration stream is cut; whatever an
 * operation leaves running is killed when it ends.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <qb/qblist.h>
#include <qb/qblog.h>

#include "agent_guests_int.h"
#include "agent_mig.h"
#include "agent_watchdog.h"
#include "fencing.h"
#include "util.h"

/* The guest may have a process here (running, paused, or an operation
 * that may be making one). */
static bool guest_held(struct ag_guest *g)
{
	enum agent_guest_state s;

	if (g->busy) {
		return true;
	}
	s = ag_live_state(g);
	return s == AGENT_GUEST_RUNNING || s == AGENT_GUEST_PAUSED || s == AGENT_GUEST_STARTING ||
	       s == AGENT_GUEST_STOPPING;
}

bool ag_holds_any(struct agent_guests *m)
{
	struct ag_guest *g;

	qb_list_for_each_entry(g, &m->guests, list) {
		if (guest_held(g)) {
			return true;
		}
	}
	return false;
}

/* A busy guest: cut its stream and kill it beside the operation. */
static void fence_busy(struct agent_guests *m, struct ag_guest *g)
{
	struct agent_guest *obj;
	char err[AGENT_ERR_LEN] = "";
	int rc = -ESRCH;

	if (g->fence_killed) {
		return; /* once per operation */
	}
	pthread_mutex_lock(&m->lock);
	if (g->mig_xfer && !g->mig_cancel) {
		agent_mig_cancel(g->mig_xfer);
	}
	g->mig_cancel = true;
	obj = g->op_obj;
	if (obj && g->ops->kill) {
		/* under the lock: the worker publishes op_obj under it */
		rc = g->ops->kill(obj, err);
	}
	pthread_mutex_unlock(&m->lock);
	if (g->mig_listener) {
		shutdown(mig_listener_fd(g->mig_listener), SHUT_RDWR);
	}
	if (rc == 0) {
		g->fence_killed = true;
		qb_log(LOG_CRIT, "self-fence: killed %s during its %s", g->name, op_names[g->op_kind]);
	} else if (!g->fence_noted) {
		/* tried again every tick: a start publishes its object later */
		g->fence_noted = true;
		qb_log(LOG_CRIT, "self-fence: %s is busy with %s (%s): killed as soon as possible",
		       g->name, op_names[g->op_kind], err[0] ? err : "no process yet");
	}
}

void ag_self_fence_one(struct agent_guests *m, struct ag_guest *g)
{
	enum agent_guest_state s;

	if (g->busy) {
		if (g->op_kind != OP_KILL) {
			g->resume_snapshot = true;
			fence_busy(m, g);
		}
		return;
	}
	s = ag_live_state(g);
	if (s == AGENT_GUEST_RUNNING || s == AGENT_GUEST_PAUSED) {
		g->resume_snapshot = true;
		g->kill_why = "killed by the self-fence (no quorum)";
		ag_op_start(g, OP_KILL, 0, 0);
	}
}

static void self_fence_stop_all(struct agent_guests *m)
{
	struct ag_guest *g;

	qb_list_for_each_entry(g, &m->guests, list) {
		ag_self_fence_one(m, g);
	}
}

/*
 * The watchdog is fed up to the instant the self-fence would begin (last
 * quorate answer + half the timeout) and, while this host holds no guest,
 * half a timeout beyond now. Without quorum and with a guest held,
 * nothing moves the deadline: if the kills do not finish (or this loop
 * hangs), the device resets the host within its timeout (at most the
 * other half) of that instant.
 */
void ag_watchdog_update(struct agent_guests *m)
{
	uint64_t now = now_ms(m), grace = m->cfg->self_fence_timeout_ms / 2, until;

	if (m->wd == NULL) {
		return;
	}
	if (m->last_quorate_ms && !m->self_fenced && now - m->last_quorate_ms <= grace) {
		until = m->last_quorate_ms + grace;
	} else if (!ag_holds_any(m)) {
		until = now + grace;
	} else {
		return;
	}
	/* the device's feeder counts in CLOCK_MONOTONIC */
	agent_watchdog_allow(m->wd, ha_mono_ms() + (until - now));
}

void ag_self_fence_check(struct agent_guests *m)
{
	uint64_t now = now_ms(m);
	uint64_t grace = m->cfg->self_fence_timeout_ms / 2;
	uint64_t since = m->last_quorate_ms ? m->last_quorate_ms : m->started_ms;

	if (now - since > grace && !m->self_fenced) {
		if (m->last_quorate_ms) {
			qb_log(LOG_CRIT, "no quorum for %llu ms: killing every guest here (self-fence)",
			       (unsigned long long)(now - since));
		} else {
			qb_log(LOG_CRIT, "no quorate partition seen in the %llu ms since this agent "
			       "started: killing every guest here (self-fence)",
			       (unsigned long long)(now - since));
		}
		m->self_fenced = true;
	}
	if (m->self_fenced) {
		self_fence_stop_all(m);
	}
	ag_watchdog_update(m);
}

/* Reads which method fences this node (once its name is known). */
void ag_fence_method_update(struct agent_guests *m)
{
	struct fence_node fn;

	if (m->fence == NULL) {
		m->method = FENCE_METHOD_WATCHDOG; /* unreadable fence.conf: the strict case */
		return;
	}
	fence_config_node(m->fence, m->local_name, &fn);
	if (fn.method != m->method) {
		qb_log(LOG_NOTICE, "this node (%s) is fenced by %s", m->local_name,
		       fence_method_str(fn.method));
	}
	m->method = fn.method;
}

/*
 * Whether @g may not run here: the cluster restarts it elsewhere after
 * this host is lost (restart is not "none"), this node is fenced by
 * method watchdog, and no watchdog is armed here -- nothing would then
 * enforce the self-fence deadline that the leader waits out.
 */
bool ag_watchdog_refuses(struct agent_guests *m, struct ag_guest *g, char *why, size_t len)
{
	if (g->def.restart == HA_RESTART_NONE || m->method != FENCE_METHOD_WATCHDOG ||
	    m->wd != NULL || !m->cfg->watchdog_required) {
		return false;
	}
	snprintf(why, len, "this node is fenced by method watchdog and has no armed watchdog "
		 "(%s)", m->wd_error);
	return true;
}

void agent_guests_watchdog(const struct agent_guests *m, bool *armed, uint32_t *timeout_ms,
			   const char **error)
{
	*armed = m->wd != NULL;
	*timeout_ms = m->wd ? agent_watchdog_timeout_ms(m->wd) : 0;
	*error = m->wd ? "" : m->wd_error;
}

/* (Re)reads fence.conf for this node's method; an unreadable file counts
 * as method watchdog, the strict case. */
static void fence_load(struct agent_guests *m)
{
	char err[512] = "";

	free(m->fence);
	m->fence = calloc(1, sizeof(*m->fence));
	if (m->fence && fence_config_load(m->cfg->fence_config, m->fence, err, sizeof(err)) < 0) {
		qb_log(LOG_ERR, "%s: taking method watchdog for this node", err);
		free(m->fence);
		m->fence = NULL;
	}
	if (m->local_name[0]) {
		ag_fence_method_update(m);
	} else {
		m->method = m->fence ? m->fence->default_method : FENCE_METHOD_WATCHDOG;
	}
}

void agent_guests_reload(struct agent_guests *m)
{
	fence_load(m);
}

/* fence.conf and the watchdog device. */
void ag_fence_setup(struct agent_guests *m)
{
	const struct ha_config *cfg = m->cfg;

	fence_load(m);
	if (cfg->watchdog_device[0] == 0) {
		snprintf(m->wd_error, sizeof(m->wd_error), "no watchdog_device configured");
	} else if (agent_watchdog_open(cfg->watchdog_device, cfg->self_fence_timeout_ms / 2,
				       &m->wd, m->wd_error, sizeof(m->wd_error)) < 0) {
		qb_log(LOG_ERR, "%s", m->wd_error);
	} else {
		qb_log(LOG_NOTICE, "watchdog %s armed: %u ms (self-fence timeout %u ms)",
		       cfg->watchdog_device, agent_watchdog_timeout_ms(m->wd),
		       cfg->self_fence_timeout_ms);
	}
}
