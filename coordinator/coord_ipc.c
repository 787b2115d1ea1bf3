/*
 * coord_ipc.c - the libqb IPC server "hactl" for hactl and the local agent.
 *
 * Only root and members of the configured group (primary or supplementary)
 * may connect, and only root may speak as the agent. Every request is one
 * envelope; anything that does not decode is answered with an error
 * Result, counted and logged, and the connection stays usable.
 */
#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <qb/qblog.h>

#include "coordinator.h"
#include "hactl_states.h"
#include "ipc.h"
#include "util.h"

static struct coord *ipc_ctx;

/* ---- libqb loop glue for the IPC server ---- */

static int32_t job_add(enum qb_loop_priority p, void *data, qb_loop_job_dispatch_fn fn)
{
	return qb_loop_job_add(ipc_ctx->loop, p, data, fn);
}

static int32_t dispatch_add(enum qb_loop_priority p, int32_t fd, int32_t events,
			    void *data, qb_ipcs_dispatch_fn_t fn)
{
	return qb_loop_poll_add(ipc_ctx->loop, p, fd, events, data, fn);
}

static int32_t dispatch_mod(enum qb_loop_priority p, int32_t fd, int32_t events,
			    void *data, qb_ipcs_dispatch_fn_t fn)
{
	return qb_loop_poll_mod(ipc_ctx->loop, p, fd, events, data, fn);
}

static int32_t dispatch_del(int32_t fd)
{
	return qb_loop_poll_del(ipc_ctx->loop, fd);
}

/* ---- connections ---- */

const char *coord_peer_role_str(enum coord_peer_role r)
{
	static const char *const names[COORD_PEER_ROLE_MAX] = {
		[COORD_PEER_REFUSED] = "refused",
		[COORD_PEER_CLIENT] = "client",
		[COORD_PEER_ROOT] = "root",
	};

	return ha_enum_str(names, COORD_PEER_ROLE_MAX, (unsigned)r);
}

/*
 * The "Groups:" line of @proc_root/PID/status: the process's supplementary
 * groups as the kernel holds them. 1 when @group is among them, 0 when
 * not, -errno when the file cannot be read or has no such line.
 */
static int proc_groups_contain(const char *proc_root, pid_t pid, gid_t group)
{
	char path[PATH_MAX], line[4096];
	FILE *f;
	int found = -ENOENT;

	snprintf(path, sizeof(path), "%s/%d/status", proc_root, (int)pid);
	f = fopen(path, "re");
	if (f == NULL) {
		return -errno;
	}
	while (fgets(line, sizeof(line), f)) {
		char *p, *end;

		if (strncmp(line, "Groups:", 7) != 0) {
			continue;
		}
		found = 0;
		for (p = line + 7;; p = end) {
			unsigned long v;

			while (*p == ' ' || *p == '\t') {
				p++;
			}
			if (*p < '0' || *p > '9') {
				break;
			}
			v = strtoul(p, &end, 10);
			if (v == (unsigned long)group) {
				found = 1;
				break;
			}
		}
		break;
	}
	fclose(f);
	return found;
}

/* Configured membership of @uid's user (getgrouplist), the fallback when
 * the process is gone before its groups could be read. */
static bool user_groups_contain(uid_t uid, gid_t gid, gid_t group)
{
	struct passwd pw, *res = NULL;
	char buf[4096];
	gid_t groups[256];
	int n = (int)HA_ARRAY_SIZE(groups);

	if (getpwuid_r(uid, &pw, buf, sizeof(buf), &res) != 0 || res == NULL) {
		return false;
	}
	if (getgrouplist(pw.pw_name, gid, groups, &n) < 0) {
		return false;
	}
	for (int i = 0; i < n; i++) {
		if (groups[i] == group) {
			return true;
		}
	}
	return false;
}

enum coord_peer_role coord_ipc_peer_role(uid_t uid, gid_t gid, pid_t pid, gid_t group,
					 const char *proc_root)
{
	int rc;

	if (uid == 0) {
		return COORD_PEER_ROOT;
	}
	if (group == (gid_t)-1) {
		return COORD_PEER_REFUSED;
	}
	if (gid == group) {
		return COORD_PEER_CLIENT;
	}
	rc = pid > 0 ? proc_groups_contain(proc_root ? proc_root : "/proc", pid, group) : -ESRCH;
	if (rc == 1 || (rc < 0 && user_groups_contain(uid, gid, group))) {
		return COORD_PEER_CLIENT;
	}
	return COORD_PEER_REFUSED;
}

static enum coord_peer_role conn_role(qb_ipcs_connection_t *conn)
{
	return (enum coord_peer_role)(uintptr_t)qb_ipcs_context_get(conn);
}

static int32_t conn_accept(qb_ipcs_connection_t *conn, uid_t uid, gid_t gid)
{
	struct coord *c = ipc_ctx;
	struct qb_ipcs_connection_stats st = { 0 };
	enum coord_peer_role role;

	qb_ipcs_connection_stats_get(conn, &st, 0);
	role = coord_ipc_peer_role(uid, gid, st.client_pid, c->ipc_gid, c->ipc_proc_root);
	if (role != COORD_PEER_REFUSED) {
		qb_ipcs_context_set(conn, (void *)(uintptr_t)role);
		qb_ipcs_connection_auth_set(conn, -1, c->ipc_gid, 0660);
		return 0;
	}
	c->ipc_refused++;
	qb_log(LOG_WARNING, "refused IPC client pid %d uid %u gid %u: not root or in group %s",
	       (int)st.client_pid, uid, gid, c->cfg.ipc_group);
	return -EACCES;
}

static void conn_created(qb_ipcs_connection_t *conn)
{
}

static void agent_gone(struct coord *c)
{
	qb_ipcs_connection_unref(c->agent_conn);
	c->agent_conn = NULL;
	coord_actions_fail_all(c, "the agent disconnected during the action");
	qb_log(LOG_WARNING, "local agent disconnected");
	coord_announce_local(c);
}

static int32_t conn_closed(qb_ipcs_connection_t *conn)
{
	struct coord *c = ipc_ctx;

	coord_pending_drop_conn(c, conn);
	if (conn == c->agent_conn) {
		agent_gone(c);
	}
	return 0;
}

static void conn_destroyed(qb_ipcs_connection_t *conn)
{
}

/* ---- large replies: guests in pages (docs/protocol.md) ---- */

/* What one more element of a repeated message field adds at most. */
static size_t elem_cost(const ProtobufCMessage *m)
{
	return protobuf_c_message_get_packed_size(m) + 1 + 10;
}

size_t coord_ipc_page_budget(const ProtobufCMessage *base_reply)
{
	size_t fixed = sizeof(struct qb_ipc_response_header) + HA_ENV_HDR_LEN + 64 +
		       protobuf_c_message_get_packed_size(base_reply);

	return fixed < HA_IPC_MAX_MSG ? HA_IPC_MAX_MSG - fixed : 0;
}

size_t coord_guests_page(const struct coord_state *st, uint32_t offset, size_t budget,
			 bool (*want)(const Hactl__GuestRecord *g, void *arg), void *arg,
			 Hactl__GuestRecord **out, uint32_t *next)
{
	size_t n = 0, used = 0, i;

	for (i = offset; i < st->n_guests; i++) {
		Hactl__GuestRecord *g = st->guests[i];
		size_t cost;

		if (want != NULL && !want(g, arg)) {
			continue;
		}
		cost = elem_cost(&g->base);
		if (used + cost > budget) {
			break;
		}
		used += cost;
		out[n++] = g;
	}
	*next = i < st->n_guests ? (uint32_t)i : 0;
	return n;
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

bool coord_guest_of_host(const Hactl__GuestRecord *g, void *arg)
{
	const struct coord_host_filter *f = arg;
	const Hactl__Migration *mg = g->migration;
	const char *name = g->name;

	if (g->owner == f->node || g->running_on == f->node ||
	    (mg && (mg->source == f->node || mg->destination == f->node))) {
		return true;
	}
	return f->n_held && bsearch(&name, f->held, f->n_held, sizeof(f->held[0]), cmp_str);
}

/* -EMSGSIZE answer for a reply that cannot be sent in one message. */
static int reply_too_large(qb_ipcs_connection_t *conn, const char *what, size_t n)
{
	char text[200];
	bool paged = strcmp(what, "balance report") != 0;

	snprintf(text, sizeof(text), "the %s (%zu guests) is larger than one IPC message (%d bytes)%s",
		 what, n, HA_IPC_MAX_MSG, paged ? ": ask for it in pages" : "");
	return ha_ipcs_reply_result(conn, -EMSGSIZE, text, 0);
}

/* ---- requests ---- */

static int reply_status(struct coord *c, qb_ipcs_connection_t *conn,
			const Hactl__StatusRequest *req)
{
	Hactl__StatusReply r = HACTL__STATUS_REPLY__INIT;
	Hactl__NodeStatus *ns;
	Hactl__NodeStatus **nsp;
	struct coord_node *leader = coord_state_node(&c->state, c->leader);
	struct coord_node *local = coord_state_node(&c->state, c->local_id);
	size_t n = 0;
	int rc;

	if (req->node && req->node[0] &&
	    coord_state_node_by_name(&c->state, req->node) == NULL) {
		char text[128];

		snprintf(text, sizeof(text), "unknown node '%s'", req->node);
		return ha_ipcs_reply_result(conn, -ENOENT, text, 0);
	}
	ns = calloc(c->state.n_nodes + 1, sizeof(*ns));
	nsp = calloc(c->state.n_nodes + 1, sizeof(*nsp));
	if (ns == NULL || nsp == NULL) {
		free(ns);
		free(nsp);
		return ha_ipcs_reply_result(conn, -ENOMEM, "out of memory", 0);
	}
	for (size_t i = 0; i < c->state.n_nodes; i++) {
		struct coord_node *nd = &c->state.nodes[i];
		bool member = coord_is_member(c, nd->id);

		if (req->node && req->node[0] && strcmp(req->node, nd->name) != 0) {
			continue;
		}
		hactl__node_status__init(&ns[n]);
		ns[n].id = nd->id;
		ns[n].name = nd->name;
		ns[n].state = (char *)coord_node_state_str(coord_node_state_of(nd, member));
		ns[n].has_is_leader = true;
		ns[n].is_leader = nd->id == c->leader;
		ns[n].has_is_local = true;
		ns[n].is_local = nd->id == c->local_id;
		ns[n].has_agent_connected = true;
		ns[n].agent_connected = member && nd->agent_connected;
		ns[n].has_member = true;
		ns[n].member = member;
		ns[n].facts = nd->facts;
		ns[n].usage = nd->usage;
		ns[n].has_maintenance = true;
		ns[n].maintenance = nd->maintenance;
		ns[n].fence_state = nd->fence_state[0] ? nd->fence_state :
			(char *)ha_fence_state_str(HACTL__FENCE_STATE__FENCE_IDLE);
		ns[n].fence_error = nd->fence_error;
		ns[n].has_fence_attempts = true;
		ns[n].fence_attempts = nd->fence_attempts;
		nsp[n] = &ns[n];
		n++;
	}
	r.quorate = coord_is_quorate(c);
	r.leader = leader ? leader->name : "";
	r.has_leader_id = true;
	r.leader_id = c->leader;
	r.local_node = local ? local->name : "";
	r.has_local_id = true;
	r.local_id = c->local_id;
	r.nodes = nsp;
	r.n_nodes = n;
	r.guests = c->state.guests;
	r.n_guests = c->state.n_guests;
	if (!req->paged || req->guest_offset == 0) {
		r.jobs = c->state.jobs;
		r.n_jobs = c->state.n_jobs;
	}
	r.has_seq = true;
	r.seq = c->state.seq;
	r.has_expected_votes = true;
	r.expected_votes = c->expected_votes;
	r.has_total_votes = true;
	r.total_votes = c->total_votes;
	r.has_quorum = true;
	r.quorum = c->quorum;
	r.has_corosync_connected = true;
	r.corosync_connected = c->cs_connected;
	r.has_syncing = true;
	r.syncing = c->syncing;
	r.has_proto_version = true;
	r.proto_version = c->proto_version;
	r.has_rx_rejected = true;
	r.rx_rejected = ha_env_stats_rejected(&c->rx_stats) + c->rx_bad_sender +
			c->rx_commit_refused;
	r.has_agent_kicks = true;
	r.agent_kicks = c->agent_kicks;
	r.has_state_current = true;
	r.state_current = c->current;
	{
		char *alarms[COORD_MAX_NODES + 64];
		char *evs[COORD_EVENTS_MAX];
		size_t na = 0;

		if (coord_is_blocked(c) &&
		    asprintf(&alarms[na],
			     "corosync is quorate, but this coordinator's state (seq %llu) may be "
			     "stale: it waits for a coordinator with current state or for every "
			     "node; nothing is decided or started meanwhile (hactl unblock makes "
			     "the newest state present current)",
			     (unsigned long long)c->state.seq) >= 0) {
			na++;
		}
		for (size_t i = 0; i < c->state.n_nodes && na < COORD_MAX_NODES; i++) {
			struct coord_node *nd = &c->state.nodes[i];
			int fs = ha_fence_state_from_str(nd->fence_state);

			if (fs == HACTL__FENCE_STATE__FENCE_FAILED && !nd->fenced &&
			    !coord_is_member(c, nd->id) &&
			    asprintf(&alarms[na], "fencing of %s failed (attempt %u), no recovery: %s",
				     nd->name, nd->fence_attempts, nd->fence_error) >= 0) {
				na++;
			} else if (fs == HACTL__FENCE_STATE__FENCE_UNCONFIRMED && !nd->fenced &&
				   !coord_is_member(c, nd->id) &&
				   asprintf(&alarms[na],
					    "%s is lost and cannot be confirmed off: %s; its guests are "
					    "not recovered until a fence device confirms it off or an "
					    "operator who made sure it is off runs "
					    "hactl fence --confirm %s",
					    nd->name, nd->fence_error, nd->name) >= 0) {
				na++;
			}
		}
		for (size_t i = 0; i < c->state.n_guests && na < HA_ARRAY_SIZE(alarms); i++) {
			Hactl__GuestRecord *g = c->state.guests[i];

			if (g->owner == 0 && coord_guest_wants_running(g) &&
			    asprintf(&alarms[na], "guest %s cannot run: %s", g->name,
				     g->error ? g->error : "") >= 0) {
				na++;
			} else if (g->restart_error &&
				   asprintf(&alarms[na], "guest %s is in state error (restart "
					    "policy exhausted; hactl start clears it): %s",
					    g->name, g->error ? g->error : "") >= 0) {
				na++;
			}
		}
		if (c->bal.policy_err[0] && na < HA_ARRAY_SIZE(alarms) &&
		    asprintf(&alarms[na], "balancing policy refused, the old one is in force: %s",
			     c->bal.policy_err) >= 0) {
			na++;
		}
		for (size_t i = 0; i < c->n_events; i++) {
			evs[i] = c->events[(c->events_head + i) % COORD_EVENTS_MAX];
		}
		r.alarms = alarms;
		r.n_alarms = na;
		r.events = evs;
		r.n_events = c->n_events;
		r.has_syncs = true;
		r.syncs = c->syncs_done;
		if (req->paged) {
			Hactl__GuestRecord **page = calloc(c->state.n_guests + 1, sizeof(*page));
			uint32_t next = 0;

			r.n_guests = 0;
			r.has_next_guest_offset = true;
			r.next_guest_offset = UINT32_MAX; /* its largest encoding */
			if (page == NULL) {
				rc = ha_ipcs_reply_result(conn, -ENOMEM, "out of memory", 0);
			} else {
				r.n_guests = coord_guests_page(&c->state, req->guest_offset,
							       coord_ipc_page_budget(&r.base),
							       NULL, NULL, page, &next);
				r.guests = page;
				r.next_guest_offset = next;
				rc = r.n_guests == 0 && next != 0
					     ? reply_too_large(conn, "status", c->state.n_guests)
					     : ha_ipcs_reply(conn, HA_MSG_STATUS_REPLY, &r.base);
				free(page);
			}
		} else {
			rc = ha_ipcs_reply(conn, HA_MSG_STATUS_REPLY, &r.base);
			if (rc == -EMSGSIZE) {
				rc = reply_too_large(conn, "status", c->state.n_guests);
			}
		}
		for (size_t i = 0; i < na; i++) {
			free(alarms[i]);
		}
	}
	free(ns);
	free(nsp);
	return rc;
}

static int on_agent_hello(struct coord *c, qb_ipcs_connection_t *conn,
			  const Hactl__AgentHello *h)
{
	Hactl__HostFacts *facts;

	if (conn_role(conn) != COORD_PEER_ROOT) {
		/* Only the host's own agent, which runs as root, may register:
		 * a registered agent's reports move ownership in the cluster. */
		c->ipc_refused++;
		qb_log(LOG_WARNING, "refused agent hello from a client that is not root (pid %u)",
		       h->pid);
		return ha_ipcs_reply_result(conn, -EPERM,
					    "only root may register as the agent", 0);
	}
	facts = coord_pb_dup(&h->facts->base);
	if (facts == NULL) {
		return ha_ipcs_reply_result(conn, -ENOMEM, "out of memory", 0);
	}
	if (c->agent_conn && c->agent_conn != conn) {
		qb_log(LOG_WARNING, "a second agent (pid %u) replaces the first", h->pid);
		qb_ipcs_connection_unref(c->agent_conn);
		c->agent_conn = NULL;
	}
	if (c->agent_conn == NULL) {
		qb_ipcs_connection_ref(conn);
		c->agent_conn = conn;
	}
	if (c->agent_facts) {
		protobuf_c_message_free_unpacked(&c->agent_facts->base, NULL);
	}
	c->agent_facts = facts;
	qb_log(LOG_NOTICE, "agent pid %u registered: %u cpus, %llu MiB, kvm %s, criu %s",
	       h->pid, facts->cpus, (unsigned long long)(facts->mem_total_kib / 1024),
	       facts->kvm_usable ? "usable" : "no",
	       facts->criu_present ? facts->criu_version : "absent");
	coord_announce_local(c);
	return ha_ipcs_reply_result(conn, 0, "registered", 0);
}

static int on_agent_usage(struct coord *c, qb_ipcs_connection_t *conn,
			  const Hactl__AgentUsage *u)
{
	Hactl__CpgUsage cu = HACTL__CPG_USAGE__INIT;
	Hactl__HostUsage *usage;

	if (conn != c->agent_conn) {
		return ha_ipcs_reply_result(conn, -EPROTO,
					    "usage before agent registration", 0);
	}
	usage = coord_pb_dup(&u->usage->base);
	if (usage == NULL) {
		return ha_ipcs_reply_result(conn, -ENOMEM, "out of memory", 0);
	}
	if (c->agent_usage) {
		protobuf_c_message_free_unpacked(&c->agent_usage->base, NULL);
	}
	c->agent_usage = usage;
	if (c->joined && !c->syncing) {
		cu.node = c->local_id;
		cu.usage = usage;
		coord_cpg_send(c, HA_MSG_CPG_USAGE, &cu.base);
	}
	return ha_ipcs_reply_result(conn, 0, NULL, 0);
}

static int reply_balance(struct coord *c, qb_ipcs_connection_t *conn)
{
	Hactl__BalanceReply r = HACTL__BALANCE_REPLY__INIT;
	char why[256];
	int rc = coord_balance_reply(c, &r, why, sizeof(why));

	if (rc < 0) {
		return ha_ipcs_reply_result(conn, rc, why, 0);
	}
	rc = ha_ipcs_reply(conn, HA_MSG_BALANCE_REPLY, &r.base);
	if (rc == -EMSGSIZE) {
		/* not paged yet: at least an answer that says why */
		rc = reply_too_large(conn, "balance report", c->state.n_guests);
	}
	free(r.cluster);
	free(r.policy);
	return rc;
}

static int on_change(struct coord *c, qb_ipcs_connection_t *conn,
		     const Hactl__ChangeRequest *req)
{
	char why[256];
	int rc;

	if (coord_is_blocked(c)) {
		return ha_ipcs_reply_result(conn, -EHOSTDOWN,
					    "this partition is not quorate: it waits for a "
					    "coordinator with current state (see hactl status)", 0);
	}
	if (!coord_is_quorate(c) || c->leader == 0) {
		return ha_ipcs_reply_result(conn, -EHOSTDOWN,
					    "this partition is not quorate", 0);
	}
	/* Early answer for what is certainly wrong; the leader decides. */
	rc = coord_change_check(&c->state, req->change, why, sizeof(why));
	if (rc == -ENOENT || rc == -EINVAL || rc == -EEXIST) {
		return ha_ipcs_reply_result(conn, rc, why, 0);
	}
	rc = coord_request_submit(c, conn, req->change);
	if (rc < 0) {
		snprintf(why, sizeof(why), "cannot reach the cluster: %s", strerror(-rc));
		return ha_ipcs_reply_result(conn, rc, why, 0);
	}
	return 0; /* answered when the commit or reject is delivered */
}

static int on_agent_guest_report(struct coord *c, qb_ipcs_connection_t *conn,
				 const Hactl__AgentGuestReport *r)
{
	Hactl__CpgGuestStatus gs = HACTL__CPG_GUEST_STATUS__INIT;
	int rc;

	if (conn != c->agent_conn) {
		return ha_ipcs_reply_result(conn, -EPROTO, "report before agent registration", 0);
	}
	if (!c->joined) {
		return ha_ipcs_reply_result(conn, -ENOTCONN, "not in the cluster", 0);
	}
	coord_agent_watchdog_note(c, r);
	gs.node = c->local_id;
	gs.guests = r->guests;
	gs.n_guests = r->n_guests;
	rc = coord_cpg_send(c, HA_MSG_CPG_GUEST_STATUS, &gs.base);
	return ha_ipcs_reply_result(conn, rc, rc < 0 ? strerror(-rc) : NULL, 0);
}

static int on_agent_guests(struct coord *c, qb_ipcs_connection_t *conn,
			   const Hactl__AgentGuestsRequest *req)
{
	Hactl__AgentGuestsReply r = HACTL__AGENT_GUESTS_REPLY__INIT;
	Hactl__NodeRecord *recs = calloc(c->state.n_nodes + 1, sizeof(*recs));
	Hactl__NodeRecord **ptrs = calloc(c->state.n_nodes + 1, sizeof(*ptrs));
	Hactl__GuestRecord **page = NULL;
	char **held = NULL;
	int rc;

	if (recs == NULL || ptrs == NULL) {
		free(recs);
		free(ptrs);
		return ha_ipcs_reply_result(conn, -ENOMEM, "out of memory", 0);
	}
	for (size_t i = 0; i < c->state.n_nodes; i++) {
		hactl__node_record__init(&recs[i]);
		recs[i].id = c->state.nodes[i].id;
		recs[i].name = c->state.nodes[i].name;
		recs[i].address = c->state.nodes[i].address;
		ptrs[i] = &recs[i];
	}
	r.local_id = c->local_id;
	r.quorate = coord_is_quorate(c) && !c->syncing;
	r.guests = c->state.guests;
	r.n_guests = c->state.n_guests;
	r.nodes = ptrs;
	r.n_nodes = c->state.n_nodes;
	if (!req->paged) {
		/* every guest in one reply, as agents before paging expect */
		rc = ha_ipcs_reply(conn, HA_MSG_AGENT_GUESTS_REPLY, &r.base);
		if (rc == -EMSGSIZE) {
			rc = reply_too_large(conn, "guest list", c->state.n_guests);
		}
	} else {
		struct coord_host_filter f = { .node = c->local_id };
		uint32_t next = 0;

		/* only this host's guests, the nodes on the first page */
		page = calloc(c->state.n_guests + 1, sizeof(*page));
		held = calloc(req->n_held + 1, sizeof(*held));
		if (page == NULL || held == NULL) {
			rc = ha_ipcs_reply_result(conn, -ENOMEM, "out of memory", 0);
			goto out;
		}
		if (req->n_held > 0) {
			memcpy(held, req->held, req->n_held * sizeof(*held));
			qsort(held, req->n_held, sizeof(*held), cmp_str);
		}
		f.held = (const char *const *)held;
		f.n_held = req->n_held;
		if (req->offset != 0) {
			r.n_nodes = 0;
		}
		r.n_guests = 0;
		r.has_next_offset = true;
		r.next_offset = UINT32_MAX; /* its largest encoding */
		r.has_seq = true;
		r.seq = c->state.seq;
		r.has_syncs = true;
		r.syncs = c->syncs_done;
		r.n_guests = coord_guests_page(&c->state, req->offset,
					       coord_ipc_page_budget(&r.base),
					       coord_guest_of_host, &f, page, &next);
		r.guests = page;
		r.next_offset = next;
		rc = r.n_guests == 0 && next != 0
			     ? reply_too_large(conn, "guest list", c->state.n_guests)
			     : ha_ipcs_reply(conn, HA_MSG_AGENT_GUESTS_REPLY, &r.base);
	}
out:
	free(page);
	free(held);
	free(recs);
	free(ptrs);
	return rc;
}

static int on_action_request(struct coord *c, qb_ipcs_connection_t *conn,
			     const Hactl__ActionRequest *req)
{
	Hactl__GuestRecord *g;
	char text[160];
	int rc;

	if (!coord_is_quorate(c)) {
		return ha_ipcs_reply_result(conn, -EHOSTDOWN, "this partition is not quorate", 0);
	}
	g = coord_state_guest(&c->state, req->action->guest);
	if (g == NULL) {
		snprintf(text, sizeof(text), "unknown guest '%s'", req->action->guest);
		return ha_ipcs_reply_result(conn, -ENOENT, text, 0);
	}
	if (strcmp(req->action->kind, "snapshot") != 0) {
		snprintf(text, sizeof(text), "unknown action '%s'", req->action->kind);
		return ha_ipcs_reply_result(conn, -EINVAL, text, 0);
	}
	if (g->owner == 0 || !coord_guest_wants_running(g) ||
	    !coord_is_member(c, g->owner)) {
		snprintf(text, sizeof(text), "guest '%s' is not running", g->name);
		return ha_ipcs_reply_result(conn, -ESRCH, text, 0);
	}
	rc = coord_action_submit(c, conn, g->owner, req->action, 600000);
	if (rc < 0) {
		snprintf(text, sizeof(text), "cannot reach the cluster: %s", strerror(-rc));
		return ha_ipcs_reply_result(conn, rc, text, 0);
	}
	return 0;
}

static int32_t msg_process(qb_ipcs_connection_t *conn, void *data, size_t size)
{
	struct coord *c = ipc_ctx;
	struct qb_ipc_request_header hdr_copy;
	struct qb_ipc_request_header *hdr = &hdr_copy;
	enum ha_msg_type type;
	ProtobufCMessage *msg;
	const char *why;
	char text[160];
	int rc;

	/* libqb hands over a buffer that is not always aligned for its own
	 * header type: copy it out. */
	if (size >= sizeof(*hdr)) {
		memcpy(&hdr_copy, data, sizeof(hdr_copy));
	}
	if (size < sizeof(*hdr) || hdr->size != (int32_t)size ||
	    hdr->id != HA_IPC_REQ_ID) {
		c->rx_stats.rejected[HA_ENV_REJ_SHORT]++;
		qb_log(LOG_WARNING, "rejected IPC request: bad libqb header (%zu bytes)", size);
		ha_ipcs_reply_result(conn, -EBADMSG, "bad request header", 0);
		return 0;
	}
	rc = ha_env_decode((uint8_t *)data + sizeof(*hdr), size - sizeof(*hdr),
			   HA_CHAN_IPC, &c->rx_stats, &type, &msg, &why);
	if (rc < 0) {
		snprintf(text, sizeof(text), "rejected request: %s", why);
		qb_log(LOG_WARNING, "%s (%zu bytes)", text, size);
		ha_ipcs_reply_result(conn, rc, text, 0);
		return 0;
	}
	switch (type) {
	case HA_MSG_STATUS_REQUEST:
		rc = reply_status(c, conn, (Hactl__StatusRequest *)msg);
		break;
	case HA_MSG_CHANGE_REQUEST:
		rc = on_change(c, conn, (Hactl__ChangeRequest *)msg);
		break;
	case HA_MSG_AGENT_HELLO:
		rc = on_agent_hello(c, conn, (Hactl__AgentHello *)msg);
		break;
	case HA_MSG_AGENT_USAGE:
		rc = on_agent_usage(c, conn, (Hactl__AgentUsage *)msg);
		break;
	case HA_MSG_AGENT_GUEST_REPORT:
		rc = on_agent_guest_report(c, conn, (Hactl__AgentGuestReport *)msg);
		break;
	case HA_MSG_AGENT_GUESTS_REQUEST:
		rc = on_agent_guests(c, conn, (Hactl__AgentGuestsRequest *)msg);
		break;
	case HA_MSG_AGENT_ACTION_DONE:
		if (conn == c->agent_conn) {
			coord_action_done(c, (Hactl__AgentActionDone *)msg);
		}
		rc = ha_ipcs_reply_result(conn, 0, NULL, 0);
		break;
	case HA_MSG_ACTION_REQUEST:
		rc = on_action_request(c, conn, (Hactl__ActionRequest *)msg);
		break;
	case HA_MSG_FENCE_REQUEST: {
		Hactl__FenceRequest *fr = (Hactl__FenceRequest *)msg;

		if (!coord_is_quorate(c) || c->leader == 0) {
			rc = ha_ipcs_reply_result(conn, -EHOSTDOWN, "this partition is not quorate", 0);
		} else if (fr->confirm) {
			rc = coord_fence_confirm(c, conn, fr->node, text, sizeof(text));
			if (rc < 0) {
				rc = ha_ipcs_reply_result(conn, rc, text, 0);
			}
		} else {
			rc = coord_fence_manual(c, conn, fr->node);
		}
		break;
	}
	case HA_MSG_BALANCE_REQUEST:
		rc = reply_balance(c, conn);
		break;
	case HA_MSG_UNBLOCK_REQUEST: {
		char ub[256];

		rc = coord_unblock(c, ub, sizeof(ub));
		rc = ha_ipcs_reply_result(conn, rc, ub, 0);
		break;
	}
	default:
		rc = ha_ipcs_reply_result(conn, -EOPNOTSUPP, "unsupported request", 0);
		break;
	}
	if (rc < 0) {
		qb_log(LOG_WARNING, "reply to %s failed: %s", ha_msg_type_str(type),
		       strerror(-rc));
	}
	ha_env_msg_free(msg);
	return 0;
}

int coord_ipc_start(struct coord *c)
{
	struct qb_ipcs_service_handlers handlers = {
		.connection_accept = conn_accept,
		.connection_created = conn_created,
		.msg_process = msg_process,
		.connection_closed = conn_closed,
		.connection_destroyed = conn_destroyed,
	};
	struct qb_ipcs_poll_handlers poll = {
		.job_add = job_add,
		.dispatch_add = dispatch_add,
		.dispatch_mod = dispatch_mod,
		.dispatch_del = dispatch_del,
	};
	struct group *g = getgrnam(c->cfg.ipc_group);
	int rc;

	ipc_ctx = c;
	c->ipc_gid = g ? g->gr_gid : (gid_t)-1;
	if (g == NULL) {
		qb_log(LOG_INFO, "group '%s' does not exist: only root may use hactl",
		       c->cfg.ipc_group);
	}
	c->ipcs = qb_ipcs_create(HA_IPC_NAME, 0, QB_IPC_NATIVE, &handlers);
	if (c->ipcs == NULL) {
		return -errno ? -errno : -ENOMEM;
	}
	qb_ipcs_poll_handlers_set(c->ipcs, &poll);
	qb_ipcs_enforce_buffer_size(c->ipcs, HA_IPC_MAX_MSG);
	rc = qb_ipcs_run(c->ipcs);
	if (rc < 0) {
		qb_ipcs_destroy(c->ipcs);
		c->ipcs = NULL;
		return rc;
	}
	return 0;
}

void coord_ipc_stop(struct coord *c)
{
	if (c->agent_conn) {
		qb_ipcs_connection_unref(c->agent_conn);
		c->agent_conn = NULL;
	}
	if (c->ipcs) {
		qb_ipcs_destroy(c->ipcs);
		c->ipcs = NULL;
	}
}
