/*
 * coord_replica.c - the replicated state machine on CPG.
 *
 * Every member applies the same CPG stream in the same order:
 *
 *   confchg with joins -> SYNCING: every member multicasts its state;
 *       other messages delivered meanwhile are held in order.
 *   all states of the new membership delivered -> every member adopts the
 *       same one (highest seq, then lowest sender), replays the held
 *       messages -> RUNNING.
 *   RUNNING: facts/usage update soft state; requests go to the leader,
 *       which multicasts a commit (applied by all) or a reject.
 *
 * A confchg during a sync restarts it. Members that only left need no
 * sync: virtual synchrony gave the survivors identical streams.
 *
 * A state too large for one CPG message travels in pieces (CpgSyncChunk,
 * reassembled per sender, bounded before allocation). A sync that is not
 * complete COORD_SYNC_RETRY_MS after this member sent its state (or whose
 * send failed) sends it again: a member that lacked it gets it, the others
 * ignore the duplicate.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <qb/qblog.h>

#include "coordinator.h"
#include "ipc.h"
#include "util.h"

static void sync_clear(struct coord *c)
{
	for (size_t i = 0; i < COORD_MAX_NODES; i++) {
		ha_env_msg_free(c->sync_got[i] ? &c->sync_got[i]->base : NULL);
		c->sync_got[i] = NULL;
		coord_sync_reasm_clear(&c->sync_reasm[i]);
	}
	c->n_sync_members = 0;
}

/* ---- a state in pieces ---- */

static struct coord_msg *msg_new(enum ha_msg_type type, const ProtobufCMessage *msg, int *rc)
{
	uint8_t *buf;
	size_t len;
	struct coord_msg *m;

	*rc = ha_env_encode(type, msg, &buf, &len);
	if (*rc < 0) {
		return NULL;
	}
	m = malloc(sizeof(*m) + len);
	if (m == NULL) {
		free(buf);
		*rc = -ENOMEM;
		return NULL;
	}
	m->len = len;
	memcpy(m->data, buf, len);
	free(buf);
	return m;
}

int coord_sync_encode(const struct coord_state *st, const Hactl__CpgSyncState *head,
		      uint64_t round, struct qb_list_head *out)
{
	Hactl__CpgSyncState ss = *head; /* sender, epoch, current ...; state set here */
	uint32_t sender = head->sender;
	Hactl__ClusterState *cs = coord_state_export(st);
	struct coord_msg *m;
	uint8_t *packed = NULL;
	size_t len, n = 0;
	int rc = 0;

	if (cs == NULL) {
		return -ENOMEM;
	}
	ss.state = cs;
	len = protobuf_c_message_get_packed_size(&ss.base);
	if (len + HA_ENV_HDR_LEN <= COORD_SYNC_INLINE_MAX) {
		m = msg_new(HA_MSG_CPG_SYNC_STATE, &ss.base, &rc);
		if (m != NULL) {
			qb_list_add_tail(&m->list, out);
			n = 1;
		}
		goto out;
	}
	if (len > COORD_SYNC_MAX) {
		rc = -E2BIG;
		goto out;
	}
	packed = malloc(len);
	if (packed == NULL) {
		rc = -ENOMEM;
		goto out;
	}
	protobuf_c_message_pack(&ss.base, packed);
	for (size_t off = 0; off < len; off += COORD_SYNC_CHUNK) {
		Hactl__CpgSyncChunk ch = HACTL__CPG_SYNC_CHUNK__INIT;

		ch.sender = sender;
		ch.round = round;
		ch.index = (uint32_t)n;
		ch.count = (uint32_t)((len + COORD_SYNC_CHUNK - 1) / COORD_SYNC_CHUNK);
		ch.total_len = len;
		ch.data.data = packed + off;
		ch.data.len = len - off < COORD_SYNC_CHUNK ? len - off : COORD_SYNC_CHUNK;
		m = msg_new(HA_MSG_CPG_SYNC_CHUNK, &ch.base, &rc);
		if (m == NULL) {
			goto out;
		}
		qb_list_add_tail(&m->list, out);
		n++;
	}
out:
	free(packed);
	coord_state_export_free(cs);
	return rc < 0 ? rc : (int)n;
}

void coord_sync_reasm_clear(struct coord_sync_reasm *r)
{
	free(r->buf);
	memset(r, 0, sizeof(*r));
}

int coord_sync_reasm_feed(struct coord_sync_reasm *r, const Hactl__CpgSyncChunk *ch,
			  Hactl__CpgSyncState **done, char *why, size_t whylen)
{
	ProtobufCMessage *m;

	*done = NULL;
	if (ch->index == 0) {
		/* a new transfer: bounds first, then the buffer */
		coord_sync_reasm_clear(r);
		if (ch->total_len == 0 || ch->total_len > COORD_SYNC_MAX || ch->count == 0 ||
		    ch->count > ch->total_len) {
			snprintf(why, whylen, "sync state of %llu bytes in %u pieces refused (at most %u bytes)",
				 (unsigned long long)ch->total_len, ch->count, COORD_SYNC_MAX);
			return -EMSGSIZE;
		}
		r->buf = malloc(ch->total_len);
		if (r->buf == NULL) {
			snprintf(why, whylen, "out of memory for a %llu-byte sync state",
				 (unsigned long long)ch->total_len);
			return -ENOMEM;
		}
		r->round = ch->round;
		r->count = ch->count;
		r->total = ch->total_len;
	} else if (r->buf == NULL || ch->round != r->round || ch->index != r->next ||
		   ch->count != r->count || ch->total_len != r->total) {
		bool idle = r->buf == NULL;

		snprintf(why, whylen, "sync piece %u/%u of round %llu out of order", ch->index,
			 ch->count, (unsigned long long)ch->round);
		coord_sync_reasm_clear(r);
		return idle ? -ESTALE : -EPROTO;
	}
	if (ch->data.len == 0 || ch->data.len > r->total - r->got ||
	    (ch->index + 1 == r->count) != (ch->data.len == r->total - r->got)) {
		snprintf(why, whylen, "sync piece %u/%u has %zu bytes, %llu of %llu left",
			 ch->index, ch->count, ch->data.len,
			 (unsigned long long)(r->total - r->got), (unsigned long long)r->total);
		coord_sync_reasm_clear(r);
		return -EBADMSG;
	}
	memcpy(r->buf + r->got, ch->data.data, ch->data.len);
	r->got += ch->data.len;
	r->next++;
	if (r->next < r->count) {
		return 0;
	}
	m = protobuf_c_message_unpack(&hactl__cpg_sync_state__descriptor, NULL, r->total, r->buf);
	coord_sync_reasm_clear(r);
	if (m == NULL) {
		snprintf(why, whylen, "sync state does not decode");
		return -EBADMSG;
	}
	*done = (Hactl__CpgSyncState *)m;
	return 1;
}

/* Sends our state for the sync under way (again, for a retry). */
static void sync_send(struct coord *c)
{
	Hactl__CpgSyncState head = HACTL__CPG_SYNC_STATE__INIT;
	struct qb_list_head out;
	int n, rc = 0;

	head.sender = c->local_id;
	head.has_epoch = true;
	head.epoch = c->epoch;
	head.has_current = true;
	head.current = c->current;
	head.has_was_current = true;
	head.was_current = c->was_current;
	qb_list_init(&out);
	c->sync_round++;
	n = coord_sync_encode(&c->state, &head, c->sync_round, &out);
	while (!qb_list_empty(&out)) {
		struct coord_msg *m = qb_list_first_entry(&out, struct coord_msg, list);

		qb_list_del(&m->list);
		if (rc == 0) {
			rc = coord_cpg_send_msg(c, m);
		} else {
			free(m);
		}
	}
	if (n < 0 || rc < 0) {
		qb_log(LOG_ERR, "cannot send state for sync: %s; trying again",
		       strerror(n < 0 ? -n : -rc));
		c->sync_sent_ms = 0; /* the watchdog sends again soon */
		return;
	}
	c->sync_sent_ms = coord_now_ms(c);
	if (n > 1) {
		qb_log(LOG_INFO, "state for sync sent in %d pieces (round %llu)", n,
		       (unsigned long long)c->sync_round);
	}
}

#define SYNC_CHECK_MS 1000u

static void sync_timer_cb(void *data)
{
	struct coord *c = data;

	c->sync_timer = 0;
	coord_replica_sync_check(c, coord_now_ms(c));
}

static void sync_timer_arm(struct coord *c)
{
	if (c->sync_timer == 0 && c->loop != NULL) {
		qb_loop_timer_add(c->loop, QB_LOOP_LOW, (uint64_t)SYNC_CHECK_MS * QB_TIME_NS_IN_MSEC,
				  c, sync_timer_cb, &c->sync_timer);
	}
}

void coord_replica_sync_check(struct coord *c, uint64_t now_ms)
{
	if (!c->syncing || !c->joined) {
		return;
	}
	if (c->sync_sent_ms == 0 || now_ms >= c->sync_sent_ms + COORD_SYNC_RETRY_MS) {
		char missing[256] = "";
		size_t used = 0;

		for (size_t i = 0; i < c->n_sync_members && used + 12 < sizeof(missing); i++) {
			if (c->sync_got[i] == NULL) {
				used += (size_t)snprintf(missing + used, sizeof(missing) - used, " %u",
							 c->sync_members[i]);
			}
		}
		c->sync_retries++;
		qb_log(LOG_WARNING, "state sync not complete (no state yet from node%s): "
		       "sending ours again", missing);
		sync_send(c);
	}
	sync_timer_arm(c);
}

static void held_clear(struct coord *c)
{
	while (!qb_list_empty(&c->held)) {
		struct coord_msg *m = qb_list_first_entry(&c->held, struct coord_msg, list);

		qb_list_del(&m->list);
		free(m);
	}
}

void coord_replica_reset(struct coord *c)
{
	sync_clear(c);
	held_clear(c);
	c->syncing = false;
	if (c->sync_timer != 0 && c->loop != NULL) {
		qb_loop_timer_del(c->loop, c->sync_timer);
		c->sync_timer = 0;
	}
}

static void send_hello(struct coord *c)
{
	Hactl__CpgHello h = HACTL__CPG_HELLO__INIT;

	h.node = c->local_id;
	h.proto_min = HA_PROTO_MIN;
	h.proto_max = HA_PROTO_MAX;
	h.has_features = true;
	h.features = COORD_FEATURES;
	h.version = (char *)HA_VERSION;
	coord_cpg_send(c, HA_MSG_CPG_HELLO, &h.base);
}

static void sync_start(struct coord *c)
{
	sync_clear(c);
	c->syncing = true;
	memcpy(c->sync_members, c->members, c->n_members * sizeof(c->members[0]));
	c->n_sync_members = c->n_members;
	sync_send(c);
	sync_timer_arm(c);
	qb_log(LOG_INFO, "state sync started: %zu members, local seq %llu",
	       c->n_sync_members, (unsigned long long)c->state.seq);
}

void coord_replica_confchg(struct coord *c, const uint32_t *members, size_t n_members,
			   const uint32_t *left, size_t n_left, const uint32_t *joined,
			   size_t n_joined)
{
	bool was_joined = c->joined;

	/* Every member sees this change at the same point of the stream. */
	c->epoch++;
	c->commit_seq_sent = 0;
	for (size_t i = 0; i < n_left; i++) {
		struct coord_node *nd = coord_state_node(&c->state, left[i]);

		coord_lost_set(c, left[i], coord_now_ms(c));
		if (nd) {
			coord_event(c, "%s left the membership", nd->name);
		}
	}
	for (size_t i = 0; i < n_joined; i++) {
		struct coord_node *nd = coord_state_node(&c->state, joined[i]);

		coord_lost_set(c, joined[i], 0);
		if (nd) {
			coord_event(c, "%s joined the membership", nd->name);
		}
	}

	memcpy(c->members, members, n_members * sizeof(members[0]));
	c->n_members = n_members;
	qsort(c->members, c->n_members, sizeof(c->members[0]), coord_cmp_u32);
	memset(c->peer_proto_max, 0, sizeof(c->peer_proto_max));
	memset(c->peer_features, 0, sizeof(c->peer_features));
	c->joined = coord_is_member(c, c->local_id);
	if (c->joined && !was_joined) {
		send_hello(c);
	}
	if (c->joined && (n_joined > 0 || c->syncing)) {
		sync_start(c);
	}
	coord_leader_update(c);
}

static void dispatch(struct coord *c, uint32_t sender, enum ha_msg_type type,
		     ProtobufCMessage *msg);

static void replay_held(struct coord *c)
{
	while (!qb_list_empty(&c->held) && !c->syncing) {
		struct coord_msg *m = qb_list_first_entry(&c->held, struct coord_msg, list);
		enum ha_msg_type type;
		ProtobufCMessage *msg;

		qb_list_del(&m->list);
		/* Already validated once when held; decode cannot fail now. */
		if (ha_env_decode(m->data, m->len, HA_CHAN_CPG, NULL, &type, &msg,
				  NULL) == 0) {
			dispatch(c, m->sender, type, msg);
			ha_env_msg_free(msg);
		}
		free(m);
	}
}

static void sync_finish(struct coord *c)
{
	struct coord_sync_in in[COORD_MAX_NODES];
	uint32_t nodes[COORD_MAX_NODES];
	uint64_t epoch = 0;
	bool was_current = c->current;
	char why[256];
	int best, rc;

	for (size_t i = 0; i < c->n_sync_members; i++) {
		in[i].seq = c->sync_got[i]->state->seq;
		in[i].sender = c->sync_got[i]->sender;
		in[i].current = c->sync_got[i]->current;
		in[i].was_current = c->sync_got[i]->was_current;
		in[i].unblock = c->sync_got[i]->unblock;
		if (c->sync_got[i]->epoch > epoch) {
			epoch = c->sync_got[i]->epoch;
		}
	}
	/* One epoch for all, past anything a member decided in before. */
	c->epoch = epoch + 1;
	c->commit_seq_sent = 0;
	best = coord_sync_choose(in, c->n_sync_members);
	if (in[best].sender != c->local_id || in[best].seq != c->state.seq) {
		rc = coord_state_import(&c->state, c->sync_got[best]->state, why,
					sizeof(why));
		if (rc < 0) {
			/* Every member rejects the same bytes the same way. */
			qb_log(LOG_ERR, "state from node %u refused: %s; keeping ours",
			       in[best].sender, why);
		} else {
			qb_log(LOG_NOTICE, "adopted cluster state of node %u (seq %llu)",
			       in[best].sender, (unsigned long long)in[best].seq);
		}
	}
	for (size_t i = 0; i < c->state.n_nodes; i++) {
		nodes[i] = c->state.nodes[i].id;
	}
	c->current = coord_sync_current(in, c->n_sync_members, nodes, c->state.n_nodes);
	if (c->current) {
		c->was_current = false;
	}
	if (c->current && !was_current) {
		qb_log(LOG_NOTICE, "state is current (seq %llu)", (unsigned long long)c->state.seq);
		coord_event(c, "state current at seq %llu%s", (unsigned long long)c->state.seq,
			    in[best].current ? "" : " (every node, most of them current until "
			    "quorum was lost, or unblocked)");
	} else if (!c->current) {
		qb_log(LOG_WARNING, "no member has current state and not every node is here: "
		       "waiting (hactl unblock overrides)");
	}
	c->syncs_done++;
	sync_clear(c);
	c->syncing = false;
	coord_state_save(c);
	qb_log(LOG_INFO, "state sync done: seq %llu", (unsigned long long)c->state.seq);
	coord_leader_update(c);
	replay_held(c);
	coord_announce_local(c);
	coord_agent_kick(c);
}

/* Returns true when @ss was kept (freed later by sync_clear()). */
static bool on_sync_state(struct coord *c, uint32_t sender,
			  Hactl__CpgSyncState *ss)
{
	size_t idx = SIZE_MAX;

	if (!c->syncing && ss->unblock && ss->sender == sender && coord_is_member(c, sender)) {
		/* `hactl unblock` on @sender: a sync round for everyone, here,
		 * at the same point of the stream, with its state counted. */
		qb_log(LOG_NOTICE, "node %u unblocks: state sync", sender);
		coord_event(c, "node %u: hactl unblock", sender);
		sync_start(c);
	}
	if (!c->syncing) {
		c->rx_stale++;
		return false;
	}
	for (size_t i = 0; i < c->n_sync_members; i++) {
		if (c->sync_members[i] == sender) {
			idx = i;
		}
	}
	if (idx == SIZE_MAX || ss->sender != sender || c->sync_got[idx]) {
		c->rx_stale++;
		qb_log(LOG_DEBUG, "stale or duplicate sync state from node %u", sender);
		return false;
	}
	c->sync_got[idx] = ss;
	for (size_t i = 0; i < c->n_sync_members; i++) {
		if (c->sync_got[i] == NULL) {
			return true;
		}
	}
	sync_finish(c);
	return true;
}

int coord_unblock(struct coord *c, char *why, size_t whylen)
{
	Hactl__CpgSyncState ss = HACTL__CPG_SYNC_STATE__INIT;
	Hactl__ClusterState *cs;
	int rc;

	if (!c->cs_connected || !c->joined || !c->vq_quorate) {
		snprintf(why, whylen, "corosync's partition is not quorate here: nothing to unblock");
		return -EHOSTDOWN;
	}
	if (c->current) {
		snprintf(why, whylen, "the state is current already");
		return -EALREADY;
	}
	if (c->syncing) {
		snprintf(why, whylen, "a state sync is in progress: try again");
		return -EAGAIN;
	}
	cs = coord_state_export(&c->state);
	if (cs == NULL) {
		snprintf(why, whylen, "out of memory");
		return -ENOMEM;
	}
	ss.sender = c->local_id;
	ss.state = cs;
	ss.has_epoch = true;
	ss.epoch = c->epoch;
	ss.has_unblock = true;
	ss.unblock = true;
	rc = coord_cpg_send(c, HA_MSG_CPG_SYNC_STATE, &ss.base);
	coord_state_export_free(cs);
	if (rc < 0) {
		snprintf(why, whylen, "cannot reach the cluster: %s", strerror(-rc));
		return rc;
	}
	qb_log(LOG_WARNING, "operator unblocks: the newest state present becomes current");
	snprintf(why, whylen, "unblocked: the newest state among the coordinators present "
		 "becomes current");
	return 0;
}

bool coord_agent_watchdog_note(struct coord *c, const Hactl__AgentGuestReport *r)
{
	Hactl__HostFacts *f = c->agent_facts;
	const char *err = r->watchdog_error ? r->watchdog_error : "";
	char *copy;

	if (f == NULL || !r->has_watchdog_armed) {
		return false; /* no hello yet, or an agent that does not say */
	}
	if (f->has_wd_armed && f->wd_armed == r->watchdog_armed &&
	    f->wd_timeout_ms == r->watchdog_timeout_ms &&
	    strcmp(f->wd_error ? f->wd_error : "", err) == 0) {
		return false;
	}
	copy = strdup(err);
	if (copy == NULL) {
		return false;
	}
	/* f is an unpacked copy: its strings are freed with it */
	free(f->wd_error);
	f->wd_error = copy;
	f->has_wd_armed = true;
	f->wd_armed = r->watchdog_armed;
	f->has_wd_timeout_ms = true;
	f->wd_timeout_ms = r->watchdog_timeout_ms;
	qb_log(LOG_NOTICE, "agent's watchdog: %s, timeout %u ms%s%s",
	       r->watchdog_armed ? "armed" : "not armed", r->watchdog_timeout_ms,
	       err[0] ? ": " : "", err);
	coord_announce_local(c);
	return true;
}

static void on_sync_chunk(struct coord *c, uint32_t sender, const Hactl__CpgSyncChunk *ch)
{
	Hactl__CpgSyncState *ss = NULL;
	size_t idx = SIZE_MAX;
	char why[200];
	int rc;

	if (ch->sender != sender) {
		c->rx_bad_sender++;
		return;
	}
	for (size_t i = 0; i < c->n_sync_members; i++) {
		if (c->sync_members[i] == sender) {
			idx = i;
		}
	}
	if (!c->syncing || idx == SIZE_MAX || c->sync_got[idx] != NULL) {
		c->rx_stale++; /* not syncing, not a member, or a resend we have */
		return;
	}
	rc = coord_sync_reasm_feed(&c->sync_reasm[idx], ch, &ss, why, sizeof(why));
	if (rc < 0) {
		if (rc == -ESTALE) {
			c->rx_stale++; /* the rest of a round that a confchg cut off */
		} else {
			c->rx_bad_sender++;
			qb_log(LOG_WARNING, "state sync from node %u: %s", sender, why);
		}
		return;
	}
	if (rc == 1 && !on_sync_state(c, sender, ss)) {
		ha_env_msg_free(&ss->base);
	}
}

void coord_announce_local(struct coord *c)
{
	Hactl__CpgFacts f = HACTL__CPG_FACTS__INIT;
	Hactl__CpgUsage u = HACTL__CPG_USAGE__INIT;

	if (!c->joined || c->syncing) {
		return;
	}
	f.node = c->local_id;
	f.facts = c->agent_facts;
	f.has_agent_connected = true;
	f.agent_connected = c->agent_conn != NULL || c->test_agent;
	coord_cpg_send(c, HA_MSG_CPG_FACTS, &f.base);
	if ((c->agent_conn || c->test_agent) && c->agent_usage) {
		u.node = c->local_id;
		u.usage = c->agent_usage;
		coord_cpg_send(c, HA_MSG_CPG_USAGE, &u.base);
	}
}

/* ---- pending client requests ---- */

static void action_result(struct coord *c, uint32_t origin, uint64_t req_id, int code,
			  const char *text, uint64_t value);

static void pending_free(struct coord_pending *p)
{
	if (p->timer) {
		qb_loop_timer_del(p->c->loop, p->timer);
	}
	qb_ipcs_connection_unref(p->conn);
	qb_list_del(&p->list);
	free(p);
}

static struct coord_pending *pending_find(struct coord *c, uint64_t req_id)
{
	struct coord_pending *p;

	qb_list_for_each_entry(p, &c->pending, list) {
		if (p->req_id == req_id) {
			return p;
		}
	}
	return NULL;
}

static void pending_answer_value(struct coord *c, uint64_t req_id, int code,
				 const char *text, uint64_t seq, uint64_t value)
{
	struct coord_pending *p = pending_find(c, req_id);
	Hactl__Result res = HACTL__RESULT__INIT;

	if (p == NULL) {
		return;
	}
	res.code = code;
	res.message = (char *)(text ? text : "");
	res.has_seq = seq != 0;
	res.seq = seq;
	res.has_value = true;
	res.value = value;
	ha_ipcs_reply(p->conn, HA_MSG_RESULT, &res.base);
	pending_free(p);
}

static void pending_answer(struct coord *c, uint64_t req_id, int code,
			   const char *text, uint64_t seq)
{
	pending_answer_value(c, req_id, code, text, seq, 0);
}

static void pending_timeout_cb(void *data)
{
	struct coord_pending *p = data;
	char text[128];

	p->timer = 0;
	snprintf(text, sizeof(text), "no answer within %u ms", p->timeout_ms);
	ha_ipcs_reply_result(p->conn, -ETIMEDOUT, text, 0);
	pending_free(p);
}

void coord_pending_drop_conn(struct coord *c, qb_ipcs_connection_t *conn)
{
	struct coord_pending *p, *tmp;

	qb_list_for_each_entry_safe(p, tmp, &c->pending, list) {
		if (p->conn == conn) {
			pending_free(p);
		}
	}
}

void coord_pending_free_all(struct coord *c)
{
	struct coord_pending *p, *tmp;
	struct coord_action *a, *atmp;

	qb_list_for_each_entry_safe(p, tmp, &c->pending, list) {
		pending_free(p);
	}
	qb_list_for_each_entry_safe(a, atmp, &c->actions, list) {
		qb_list_del(&a->list);
		free(a);
	}
}

void coord_actions_fail_all(struct coord *c, const char *why)
{
	struct coord_action *a, *tmp;

	qb_list_for_each_entry_safe(a, tmp, &c->actions, list) {
		action_result(c, a->origin, a->origin_req, -ECONNABORTED, why, 0);
		qb_list_del(&a->list);
		free(a);
	}
}

static struct coord_pending *pending_new(struct coord *c, qb_ipcs_connection_t *conn)
{
	struct coord_pending *p = calloc(1, sizeof(*p));

	if (p) {
		p->c = c;
		p->req_id = ++c->next_req_id;
		p->conn = conn;
	}
	return p;
}

static void pending_add(struct coord *c, struct coord_pending *p, uint32_t timeout_ms)
{
	qb_ipcs_connection_ref(p->conn);
	qb_list_add_tail(&p->list, &c->pending);
	p->timeout_ms = timeout_ms;
	qb_loop_timer_add(c->loop, QB_LOOP_MED, (uint64_t)timeout_ms * QB_TIME_NS_IN_MSEC,
			  p, pending_timeout_cb, &p->timer);
}

int coord_request_submit(struct coord *c, qb_ipcs_connection_t *conn,
			 const Hactl__Change *change)
{
	Hactl__CpgRequest r = HACTL__CPG_REQUEST__INIT;
	struct coord_pending *p = NULL;
	int rc;

	if (conn) {
		p = pending_new(c, conn);
		if (p == NULL) {
			return -ENOMEM;
		}
	}
	r.origin = c->local_id;
	r.req_id = p ? p->req_id : 0; /* no conn: nobody waits for the answer */
	r.change = (Hactl__Change *)change;
	rc = coord_cpg_send(c, HA_MSG_CPG_REQUEST, &r.base);
	if (rc < 0) {
		free(p);
		return rc;
	}
	if (p) {
		pending_add(c, p, c->cfg.request_timeout_ms);
	}
	return 0;
}

int coord_action_submit(struct coord *c, qb_ipcs_connection_t *conn,
			uint32_t target, const Hactl__AgentAction *action,
			uint32_t timeout_ms)
{
	Hactl__CpgAction a = HACTL__CPG_ACTION__INIT;
	struct coord_pending *p = pending_new(c, conn);
	int rc;

	if (p == NULL) {
		return -ENOMEM;
	}
	a.origin = c->local_id;
	a.req_id = p->req_id;
	a.target = target;
	a.action = (Hactl__AgentAction *)action;
	rc = coord_cpg_send(c, HA_MSG_CPG_ACTION, &a.base);
	if (rc < 0) {
		free(p);
		return rc;
	}
	pending_add(c, p, timeout_ms);
	return 0;
}

static void action_result(struct coord *c, uint32_t origin, uint64_t req_id, int code,
			  const char *text, uint64_t value)
{
	Hactl__CpgActionResult r = HACTL__CPG_ACTION_RESULT__INIT;

	r.origin = origin;
	r.req_id = req_id;
	r.target = c->local_id;
	r.code = code;
	r.message = (char *)(text ? text : "");
	r.has_value = true;
	r.value = value;
	coord_cpg_send(c, HA_MSG_CPG_ACTION_RESULT, &r.base);
}

static int agent_event(struct coord *c, uint64_t id, const Hactl__AgentAction *action)
{
	Hactl__AgentActionRequest req = HACTL__AGENT_ACTION_REQUEST__INIT;

	if (c->agent_conn == NULL) {
		return -ENOTCONN;
	}
	req.req_id = id;
	req.action = (Hactl__AgentAction *)action;
	return ha_ipcs_event(c->agent_conn, HA_MSG_AGENT_ACTION_REQUEST, &req.base);
}

void coord_agent_kick(struct coord *c)
{
	Hactl__AgentAction a = HACTL__AGENT_ACTION__INIT;

	a.kind = "refresh";
	a.guest = "";
	if (agent_event(c, 0, &a) == 0) {
		c->agent_kicks++;
	}
}

static void on_action(struct coord *c, uint32_t sender, Hactl__CpgAction *a)
{
	struct coord_action *ca;
	int rc;

	if (a->origin != sender) {
		c->rx_bad_sender++;
		return;
	}
	if (a->target != c->local_id) {
		return;
	}
	ca = calloc(1, sizeof(*ca));
	if (ca == NULL) {
		action_result(c, a->origin, a->req_id, -ENOMEM, "out of memory", 0);
		return;
	}
	ca->local_id = ++c->next_action_id;
	ca->origin = a->origin;
	ca->origin_req = a->req_id;
	rc = agent_event(c, ca->local_id, a->action);
	if (rc < 0) {
		free(ca);
		action_result(c, a->origin, a->req_id, rc,
			      "the agent of the guest's node is not connected", 0);
		return;
	}
	qb_list_add_tail(&ca->list, &c->actions);
}

void coord_action_done(struct coord *c, const Hactl__AgentActionDone *d)
{
	struct coord_action *ca, *tmp;

	qb_list_for_each_entry_safe(ca, tmp, &c->actions, list) {
		if (ca->local_id == d->req_id) {
			action_result(c, ca->origin, ca->origin_req, d->code, d->message,
				      d->value);
			qb_list_del(&ca->list);
			free(ca);
			return;
		}
	}
}

static void on_action_result(struct coord *c, uint32_t sender, Hactl__CpgActionResult *r)
{
	if (r->target != sender) {
		c->rx_bad_sender++;
		return;
	}
	if (r->origin == c->local_id) {
		pending_answer_value(c, r->req_id, r->code, r->message, 0, r->value);
	}
}

/* ---- delivered messages ---- */

/* The leader's answer to a request it refuses: every member sees it, the
 * origin answers its client. */
static void reject(struct coord *c, uint32_t sender, const Hactl__CpgRequest *r,
		   const char *desc, int rc, char *why)
{
	Hactl__CpgReject rej = HACTL__CPG_REJECT__INIT;

	qb_log(LOG_INFO, "rejected request %s from node %u: %s", desc, sender, why);
	rej.leader = c->local_id;
	rej.origin = r->origin;
	rej.req_id = r->req_id;
	rej.code = rc;
	rej.reason = why;
	coord_cpg_send(c, HA_MSG_CPG_REJECT, &rej.base);
}

static void on_request(struct coord *c, uint32_t sender, Hactl__CpgRequest *r)
{
	char why[256] = "";
	char desc[128];
	int rc;

	if (r->origin != sender) {
		c->rx_bad_sender++;
		return;
	}
	if (c->leader != c->local_id) {
		return; /* the leader answers */
	}
	/* a start without a node is placed by the engine with the policy in
	 * force (coord_place.c): one code path for every placement */
	struct coord_view view = { .members = c->members, .n_members = c->n_members,
				   .policy = c->bal.policy };
	char node[COORD_NAME_MAX + 1];

	coord_change_describe(r->change, desc, sizeof(desc));
	rc = coord_change_prepare(&c->state, &view, r->change, node, sizeof(node), why,
				  sizeof(why));
	if (rc == 0 && (r->change->kind_case == HACTL__CHANGE__KIND_JOB_START ||
			r->change->kind_case == HACTL__CHANGE__KIND_JOB_MOVE) &&
	    !coord_members_have(c, COORD_FEATURE_JOBS)) {
		snprintf(why, sizeof(why), "a coordinator in the cluster runs an hactl without "
			 "jobs: upgrade every node first");
		rc = -EPROTO;
	}
	if (rc == 0 && r->change->kind_case == HACTL__CHANGE__KIND_GUEST_PAUSE &&
	    !coord_members_have(c, COORD_FEATURE_PAUSE)) {
		snprintf(why, sizeof(why), "a coordinator in the cluster runs an hactl without "
			 "pause and resume: upgrade every node first");
		rc = -EPROTO;
	}
	if (rc < 0) {
		reject(c, sender, r, desc, rc, why);
	} else {
		Hactl__CpgCommit cm = HACTL__CPG_COMMIT__INIT;

		cm.leader = c->local_id;
		cm.seq = c->state.seq + 1;
		cm.has_origin = true;
		cm.origin = r->origin;
		cm.has_req_id = true;
		cm.req_id = r->req_id;
		cm.change = r->change;
		if (r->change->kind_case == HACTL__CHANGE__KIND_JOB_START) {
			/* the commit carries the leader's plan (coord_job.c) */
			Hactl__JobStartChange *asked = r->change->job_start, *planned;

			rc = coord_job_plan(&c->state, &view, coord_wall_ms(c), asked, &planned,
					    why, sizeof(why));
			if (rc < 0) {
				reject(c, sender, r, desc, rc, why);
				return;
			}
			r->change->job_start = planned;
			coord_cpg_send(c, HA_MSG_CPG_COMMIT, &cm.base);
			r->change->job_start = asked;
			protobuf_c_message_free_unpacked(&planned->base, NULL);
		} else if (r->change->kind_case == HACTL__CHANGE__KIND_GUEST_START) {
			/* the commit carries the leader's placement */
			char *asked = r->change->guest_start->node;

			r->change->guest_start->node = node;
			coord_cpg_send(c, HA_MSG_CPG_COMMIT, &cm.base);
			r->change->guest_start->node = asked;
		} else {
			coord_cpg_send(c, HA_MSG_CPG_COMMIT, &cm.base);
		}
	}
}

static void on_commit(struct coord *c, uint32_t sender, Hactl__CpgCommit *cm)
{
	char why[256] = "";
	char desc[128];
	uint64_t seq_before = c->state.seq;
	int rc;

	coord_change_describe(cm->change, desc, sizeof(desc));
	rc = coord_commit_check(c->state.seq, c->epoch, c->members, c->n_members, sender, cm,
				why, sizeof(why));
	if (rc < 0) {
		/* Every member refuses the same commit: the replicas stay equal. */
		c->rx_commit_refused++;
		qb_log(LOG_WARNING, "commit of %s (seq %llu) from node %u refused: %s", desc,
		       (unsigned long long)cm->seq, sender, why);
		if (cm->has_origin && cm->origin == c->local_id) {
			pending_answer(c, cm->req_id, -EAGAIN, why, 0);
		}
		return;
	}
	/* The change takes the commit's number (a leader's pipeline may have
	 * numbers that did not apply, see coord_cpg_send). */
	c->state.seq = cm->seq - 1;
	coord_metrics_commit_begin(c, cm->change);
	rc = coord_change_apply(&c->state, cm->change, coord_wall_ms(c), why, sizeof(why));
	coord_metrics_commit_end(c, cm->change, rc);
	if (rc < 0) {
		c->state.seq = seq_before;
		qb_log(LOG_WARNING, "commit of %s by node %u does not apply: %s",
		       desc, sender, why);
	} else {
		coord_change_describe(cm->change, desc, sizeof(desc));
		qb_log(LOG_NOTICE, "committed seq %llu: %s (leader %u)",
		       (unsigned long long)c->state.seq, desc, sender);
		coord_event(c, "seq %llu: %s", (unsigned long long)c->state.seq, desc);
		if (cm->change->kind_case == HACTL__CHANGE__KIND_NODE_FENCE) {
			coord_fence_committed(c, cm->change->node_fence->node,
					      cm->change->node_fence->fenced);
		}
		coord_state_save(c);
		if (cm->change->kind_case != HACTL__CHANGE__KIND_MAINTENANCE) {
			coord_agent_kick(c);
		}
		if (cm->change->kind_case == HACTL__CHANGE__KIND_JOB_START ||
		    cm->change->kind_case == HACTL__CHANGE__KIND_JOB_MOVE ||
		    cm->change->kind_case == HACTL__CHANGE__KIND_MIGRATE_END) {
			coord_job_tick(c); /* the next wave need not wait for the timer */
		}
	}
	if (cm->has_origin && cm->origin == c->local_id) {
		pending_answer(c, cm->req_id, rc, rc < 0 ? why : desc,
			       rc < 0 ? 0 : c->state.seq);
	}
}

static void on_reject(struct coord *c, uint32_t sender, Hactl__CpgReject *rj)
{
	if (rj->leader != sender) {
		c->rx_bad_sender++;
		return;
	}
	if (rj->origin == c->local_id) {
		pending_answer(c, rj->req_id, rj->code < 0 ? rj->code : -EIO,
			       rj->reason ? rj->reason : "rejected", 0);
	}
}

bool coord_members_have(const struct coord *c, uint64_t features)
{
	for (size_t i = 0; i < c->n_members && i < COORD_MAX_NODES; i++) {
		if (c->members[i] == c->local_id) {
			continue;
		}
		if (c->peer_proto_max[i] && (c->peer_features[i] & features) != features) {
			return false;
		}
	}
	return true;
}

static void on_hello(struct coord *c, uint32_t sender, Hactl__CpgHello *h)
{
	if (h->node != sender || h->proto_min > h->proto_max) {
		c->rx_bad_sender++;
		return;
	}
	qb_log(LOG_INFO, "node %u runs hactl %s, protocol %u..%u", sender,
	       h->version ? h->version : "?", h->proto_min, h->proto_max);
	for (size_t i = 0; i < c->n_members && i < COORD_MAX_NODES; i++) {
		if (c->members[i] == sender) {
			c->peer_proto_max[i] = h->proto_max;
			c->peer_features[i] = h->has_features ? h->features : 0;
		}
	}
	/* The cluster speaks the lowest common version. */
	c->proto_version = HA_PROTO_MAX;
	for (size_t i = 0; i < c->n_members; i++) {
		if (c->peer_proto_max[i] && c->peer_proto_max[i] < c->proto_version) {
			c->proto_version = c->peer_proto_max[i];
		}
	}
}

static void dispatch(struct coord *c, uint32_t sender, enum ha_msg_type type,
		     ProtobufCMessage *msg)
{
	int rc = 0;

	switch (type) {
	case HA_MSG_CPG_FACTS: {
		Hactl__CpgFacts *f = (Hactl__CpgFacts *)msg;

		if (f->node != sender) {
			c->rx_bad_sender++;
			break;
		}
		rc = coord_state_set_facts(&c->state, sender, f->facts,
					   f->agent_connected);
		break;
	}
	case HA_MSG_CPG_USAGE: {
		Hactl__CpgUsage *u = (Hactl__CpgUsage *)msg;

		if (u->node != sender) {
			c->rx_bad_sender++;
			break;
		}
		rc = coord_state_set_usage(&c->state, sender, u->usage);
		break;
	}
	case HA_MSG_CPG_REQUEST:
		on_request(c, sender, (Hactl__CpgRequest *)msg);
		break;
	case HA_MSG_CPG_COMMIT:
		on_commit(c, sender, (Hactl__CpgCommit *)msg);
		break;
	case HA_MSG_CPG_REJECT:
		on_reject(c, sender, (Hactl__CpgReject *)msg);
		break;
	case HA_MSG_CPG_GUEST_STATUS: {
		Hactl__CpgGuestStatus *gs = (Hactl__CpgGuestStatus *)msg;

		if (gs->node != sender) {
			c->rx_bad_sender++;
			break;
		}
		for (size_t i = 0; i < gs->n_guests; i++) {
			/* a status changes the record in place */
			const Hactl__GuestRecord *g = coord_state_guest(&c->state,
									gs->guests[i]->name);
			bool had_port = g && g->migration && g->migration->has_dst_port;
			const char *note = gs->guests[i]->note;

			if (g && g->owner == sender && note && note[0] &&
			    (g->note == NULL || strcmp(g->note, note) != 0)) {
				/* what the owner's agent did and why: how it
				 * started the guest (which snapshot, or cold and
				 * why), a restart, a migration's end */
				struct coord_node *nd = coord_state_node(&c->state, sender);

				coord_event(c, "%s on %s: %s", g->name, nd ? nd->name : "?", note);
			}
			coord_guest_status_apply(&c->state, sender, gs->guests[i], coord_wall_ms(c));
			if (!had_port && g && g->migration && g->migration->has_dst_port &&
			    sender != c->local_id) {
				/* The source waits for the port: its agent learns
				 * it now. Once per port, not per report: a kick
				 * makes the agent report, and reports that kicked
				 * every time would kick each other without end. */
				coord_agent_kick(c);
			}
		}
		coord_migration_tick(c);
		break;
	}
	case HA_MSG_CPG_ACTION:
		on_action(c, sender, (Hactl__CpgAction *)msg);
		break;
	case HA_MSG_CPG_FENCE_STATUS: {
		Hactl__CpgFenceStatus *fs = (Hactl__CpgFenceStatus *)msg;

		if (fs->leader != sender) {
			c->rx_bad_sender++;
			break;
		}
		coord_fence_status_apply(c, fs);
		break;
	}
	case HA_MSG_CPG_ACTION_RESULT:
		on_action_result(c, sender, (Hactl__CpgActionResult *)msg);
		break;
	default:
		qb_log(LOG_WARNING, "unexpected %s from node %u", ha_msg_type_str(type),
		       sender);
		break;
	}
	if (rc < 0) {
		qb_log(LOG_WARNING, "%s from node %u not applied: %s",
		       ha_msg_type_str(type), sender, strerror(-rc));
	}
}

void coord_replica_deliver(struct coord *c, uint32_t sender, const void *buf,
			   size_t len)
{
	enum ha_msg_type type;
	ProtobufCMessage *msg;
	const char *why;

	c->metrics.cpg_received++;
	if (ha_env_decode(buf, len, HA_CHAN_CPG, &c->rx_stats, &type, &msg, &why) < 0) {
		qb_log(LOG_WARNING, "rejected %zu-byte CPG message from node %u: %s",
		       len, sender, why);
		return;
	}
	switch (type) {
	case HA_MSG_CPG_SYNC_STATE:
		if (on_sync_state(c, sender, (Hactl__CpgSyncState *)msg)) {
			return; /* kept in sync_got[] */
		}
		break;
	case HA_MSG_CPG_SYNC_CHUNK:
		on_sync_chunk(c, sender, (Hactl__CpgSyncChunk *)msg);
		break;
	case HA_MSG_CPG_HELLO:
		on_hello(c, sender, (Hactl__CpgHello *)msg);
		break;
	default:
		if (c->syncing) {
			struct coord_msg *m = malloc(sizeof(*m) + len);

			if (m == NULL) {
				qb_log(LOG_CRIT, "out of memory holding a message during sync");
				break;
			}
			m->sender = sender;
			m->len = len;
			memcpy(m->data, buf, len);
			qb_list_add_tail(&m->list, &c->held);
			break;
		}
		dispatch(c, sender, type, msg);
		break;
	}
	ha_env_msg_free(msg);
}

void coord_init(struct coord *c)
{
	qb_list_init(&c->sendq);
	qb_list_init(&c->held);
	qb_list_init(&c->pending);
	qb_list_init(&c->actions);
	c->proto_version = HA_PROTO_MAX;
	coord_state_init(&c->state);
}
