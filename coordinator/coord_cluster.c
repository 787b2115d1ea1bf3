/*
 * coord_cluster.c - corosync glue: CPG group "hactl", votequorum, cmap
 * nodelist, the outgoing CPG queue and reconnection.
 */
#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>

#include <qb/qblog.h>

#include "coordinator.h"
#include "util.h"

#define RECONNECT_MS 1000
#define FLUSH_RETRY_MS 10

static struct coord *cpg_ctx; /* corosync callbacks carry no user data */

/* corosync's cs_error_t has CS_OK == 1: convert once here. */
static int cs_to_errno(cs_error_t e)
{
	switch (e) {
	case CS_OK:
		return 0;
	case CS_ERR_TRY_AGAIN:
		return -EAGAIN;
	case CS_ERR_NO_MEMORY:
		return -ENOMEM;
	case CS_ERR_TOO_BIG:
		return -EMSGSIZE;
	case CS_ERR_NOT_EXIST:
		return -ENOENT;
	case CS_ERR_ACCESS:
		return -EACCES;
	case CS_ERR_LIBRARY:
	case CS_ERR_BAD_HANDLE:
		return -ENOTCONN;
	default:
		return -EIO;
	}
}

uint64_t coord_now_ms(const struct coord *c)
{
	return c->test_now_ms ? c->test_now_ms : ha_mono_ms();
}

uint64_t coord_wall_ms(const struct coord *c)
{
	return c->test_now_ms ? c->test_now_ms : ha_wall_ms();
}

uint64_t coord_lost_ms(const struct coord *c, uint32_t id)
{
	for (size_t i = 0; i < COORD_MAX_NODES; i++) {
		if (c->lost[i].node == id && id != 0) {
			return c->lost[i].ms;
		}
	}
	return 0;
}

void coord_lost_set(struct coord *c, uint32_t id, uint64_t ms)
{
	struct coord_loss *free_slot = NULL;

	if (id == 0) {
		return;
	}
	for (size_t i = 0; i < COORD_MAX_NODES; i++) {
		if (c->lost[i].node == id) {
			c->lost[i].ms = ms;
			if (ms == 0) {
				c->lost[i].node = 0; /* back: the slot is free again */
			}
			return;
		}
		if (c->lost[i].node == 0 && free_slot == NULL) {
			free_slot = &c->lost[i];
		}
	}
	if (ms != 0 && free_slot) {
		free_slot->node = id;
		free_slot->ms = ms;
	}
}

bool coord_is_member(const struct coord *c, uint32_t id)
{
	for (size_t i = 0; i < c->n_members; i++) {
		if (c->members[i] == id) {
			return true;
		}
	}
	return false;
}

bool coord_is_quorate(const struct coord *c)
{
	return c->cs_connected && c->joined && c->vq_quorate && c->current;
}

bool coord_is_blocked(const struct coord *c)
{
	return c->cs_connected && c->joined && c->vq_quorate && !c->current && !c->syncing;
}

void coord_leader_update(struct coord *c)
{
	uint32_t old = c->leader;

	c->leader = coord_leader_pick(coord_is_quorate(c), c->members,
				      c->n_members, c->qmembers, c->n_qmembers);
	if (c->leader != old) {
		struct coord_node *n = coord_state_node(&c->state, c->leader);

		if (c->leader) {
			qb_log(LOG_NOTICE, "leader is now %s (id %u)%s",
			       n ? n->name : "?", c->leader,
			       c->leader == c->local_id ? ", this node" : "");
		} else {
			qb_log(LOG_WARNING, "no leader: partition is not quorate");
		}
	}
}

/* ---- CPG ---- */

static void cpg_deliver_cb(cpg_handle_t h, const struct cpg_name *group,
			   uint32_t nodeid, uint32_t pid, void *msg,
			   size_t msg_len)
{
	coord_replica_deliver(cpg_ctx, nodeid, msg, msg_len);
}

/* One entry per node: another process in the group on a node (a tool, a
 * second coordinator) must not count as a second member. */
static size_t node_ids(const struct cpg_address *a, size_t n, uint32_t *ids)
{
	size_t k = 0;

	for (size_t i = 0; i < n && k < COORD_MAX_NODES; i++) {
		bool dup = false;

		for (size_t j = 0; j < k && !dup; j++) {
			dup = ids[j] == a[i].nodeid;
		}
		if (!dup) {
			ids[k++] = a[i].nodeid;
		}
	}
	return k;
}

static void cpg_confchg_cb(cpg_handle_t h, const struct cpg_name *group,
			   const struct cpg_address *members, size_t n_members,
			   const struct cpg_address *left, size_t n_left,
			   const struct cpg_address *joined, size_t n_joined)
{
	uint32_t ids[COORD_MAX_NODES], lids[COORD_MAX_NODES], jids[COORD_MAX_NODES];
	size_t n = node_ids(members, n_members, ids);
	size_t nl = 0, nj, nleft;

	for (size_t i = 0; i < n_left; i++) {
		qb_log(LOG_NOTICE, "coordinator on node %u left (reason %u)",
		       left[i].nodeid, left[i].reason);
	}
	/* A node with another process still in the group has not left. */
	nleft = node_ids(left, n_left, lids);
	for (size_t i = 0; i < nleft; i++) {
		bool still = false;

		for (size_t j = 0; j < n && !still; j++) {
			still = ids[j] == lids[i];
		}
		if (!still) {
			lids[nl++] = lids[i];
		}
	}
	nj = node_ids(joined, n_joined, jids);
	for (size_t i = 0; i < nj; i++) {
		qb_log(LOG_NOTICE, "coordinator on node %u joined", jids[i]);
	}
	coord_replica_confchg(cpg_ctx, ids, n, lids, nl, jids, nj);
}

static int cpg_dispatch_cb(int fd, int revents, void *data)
{
	struct coord *c = data;
	cs_error_t e;

	if (revents & (POLLERR | POLLHUP | POLLNVAL)) {
		e = CS_ERR_LIBRARY;
	} else {
		e = cpg_dispatch(c->cpg, CS_DISPATCH_ALL);
	}
	if (e != CS_OK && e != CS_ERR_TRY_AGAIN) {
		qb_log(LOG_ERR, "lost corosync (cpg dispatch: %d); reconnecting", e);
		coord_cluster_disconnect(c);
		coord_cluster_schedule_reconnect(c);
		return -1; /* removes this poll source */
	}
	return 0;
}

/* ---- votequorum ---- */

static void vq_refresh_info(struct coord *c)
{
	struct votequorum_info info;

	if (votequorum_getinfo(c->vq, c->local_id, &info) == CS_OK) {
		c->expected_votes = info.node_expected_votes;
		c->total_votes = info.total_votes;
		c->quorum = info.quorum;
	}
}

void coord_quorum_set(struct coord *c, bool quorate, const uint32_t *members, size_t n)
{
	bool was = c->vq_quorate;

	c->vq_quorate = quorate;
	c->n_qmembers = 0;
	for (size_t i = 0; i < n && c->n_qmembers < COORD_MAX_NODES; i++) {
		c->qmembers[c->n_qmembers++] = members[i];
	}
	qsort(c->qmembers, c->n_qmembers, sizeof(c->qmembers[0]), coord_cmp_u32);
	if (was != c->vq_quorate) {
		qb_log(c->vq_quorate ? LOG_NOTICE : LOG_WARNING,
		       "partition is %s (%zu quorum members)",
		       c->vq_quorate ? "quorate" : "NOT quorate", c->n_qmembers);
		coord_event(c, "partition %s (%zu quorum members)",
			    c->vq_quorate ? "quorate" : "NOT quorate", c->n_qmembers);
		coord_agent_kick(c); /* the agent self-fences without quorum */
	}
	if (!c->vq_quorate && c->current) {
		/* A quorate partition elsewhere may decide from now on. */
		c->current = false;
		c->was_current = true;
		qb_log(LOG_WARNING, "state no longer current: it is synced again when this "
		       "node joins a current member");
	}
	coord_leader_update(c);
}

static void vq_quorum_cb(votequorum_handle_t h, uint64_t ctx, uint32_t quorate,
			 uint32_t n, votequorum_node_t nodes[])
{
	struct coord *c = cpg_ctx;
	uint32_t ids[COORD_MAX_NODES];
	size_t k = 0;

	for (uint32_t i = 0; i < n && k < COORD_MAX_NODES; i++) {
		if (nodes[i].state == VOTEQUORUM_NODESTATE_MEMBER) {
			ids[k++] = nodes[i].nodeid;
		}
	}
	vq_refresh_info(c);
	coord_quorum_set(c, quorate != 0, ids, k);
}

static void vq_expected_cb(votequorum_handle_t h, uint64_t ctx, uint32_t ev)
{
	cpg_ctx->expected_votes = ev;
}

static int vq_dispatch_cb(int fd, int revents, void *data)
{
	struct coord *c = data;
	cs_error_t e;

	if (revents & (POLLERR | POLLHUP | POLLNVAL)) {
		e = CS_ERR_LIBRARY;
	} else {
		e = votequorum_dispatch(c->vq, CS_DISPATCH_ALL);
	}
	if (e != CS_OK && e != CS_ERR_TRY_AGAIN) {
		qb_log(LOG_ERR, "lost corosync (votequorum dispatch: %d); reconnecting", e);
		coord_cluster_disconnect(c);
		coord_cluster_schedule_reconnect(c);
		return -1;
	}
	return 0;
}

/* ---- cmap: the configured nodes ---- */

static void read_nodelist(struct coord *c)
{
	cmap_handle_t cmap;
	char key[CMAP_KEYNAME_MAXLEN];

	if (cmap_initialize(&cmap) != CS_OK) {
		qb_log(LOG_WARNING, "cmap unavailable: node names unknown");
		return;
	}
	for (int i = 0; i < COORD_MAX_NODES; i++) {
		uint32_t id;
		char *name = NULL, *addr = NULL;
		struct coord_node *nd;

		snprintf(key, sizeof(key), "nodelist.node.%d.nodeid", i);
		if (cmap_get_uint32(cmap, key, &id) != CS_OK) {
			break;
		}
		snprintf(key, sizeof(key), "nodelist.node.%d.name", i);
		if (cmap_get_string(cmap, key, &name) != CS_OK) {
			snprintf(key, sizeof(key), "nodelist.node.%d.ring0_addr", i);
			cmap_get_string(cmap, key, &name);
		}
		snprintf(key, sizeof(key), "nodelist.node.%d.ring0_addr", i);
		cmap_get_string(cmap, key, &addr);
		nd = coord_state_node_add(&c->state, id, name);
		if (nd == NULL) {
			qb_log(LOG_ERR, "cannot track node %u: table full or id 0", id);
		} else if (addr) {
			snprintf(nd->address, sizeof(nd->address), "%s", addr);
		}
		free(name);
		free(addr);
	}
	cmap_finalize(cmap);
}

/* ---- connection ---- */

int coord_cluster_connect(struct coord *c)
{
	cpg_model_v1_data_t model = {
		.model = CPG_MODEL_V1,
		.cpg_deliver_fn = cpg_deliver_cb,
		.cpg_confchg_fn = cpg_confchg_cb,
		.flags = 0,
	};
	votequorum_callbacks_t vqcb = {
		.votequorum_quorum_notify_fn = vq_quorum_cb,
		.votequorum_expectedvotes_notify_fn = vq_expected_cb,
	};
	struct cpg_name group;
	unsigned int local;
	int fd, rc;
	cs_error_t e;

	cpg_ctx = c;
	e = cpg_model_initialize(&c->cpg, CPG_MODEL_V1, (cpg_model_data_t *)&model, c);
	if (e != CS_OK) {
		return cs_to_errno(e);
	}
	if (cpg_local_get(c->cpg, &local) != CS_OK) {
		cpg_finalize(c->cpg);
		return -ENOTCONN;
	}
	c->local_id = local;
	e = votequorum_initialize(&c->vq, &vqcb);
	if (e != CS_OK) {
		cpg_finalize(c->cpg);
		return cs_to_errno(e);
	}
	read_nodelist(c);

	snprintf(group.value, sizeof(group.value), "%s", COORD_CPG_GROUP);
	group.length = (uint32_t)strlen(COORD_CPG_GROUP);
	do {
		e = cpg_join(c->cpg, &group);
	} while (e == CS_ERR_TRY_AGAIN && !c->stopping); /* bounded by corosync */
	if (e != CS_OK) {
		votequorum_finalize(c->vq);
		cpg_finalize(c->cpg);
		return cs_to_errno(e);
	}
	cpg_fd_get(c->cpg, &fd);
	rc = qb_loop_poll_add(c->loop, QB_LOOP_HIGH, fd, POLLIN, c, cpg_dispatch_cb);
	if (rc == 0) {
		votequorum_fd_get(c->vq, &fd);
		rc = qb_loop_poll_add(c->loop, QB_LOOP_HIGH, fd, POLLIN, c,
				      vq_dispatch_cb);
	}
	if (rc != 0) {
		votequorum_finalize(c->vq);
		cpg_finalize(c->cpg);
		return rc;
	}
	votequorum_trackstart(c->vq, 0, CS_TRACK_CHANGES | CS_TRACK_CURRENT);
	c->cs_connected = true;
	vq_refresh_info(c);
	qb_log(LOG_NOTICE, "connected to corosync as node %u, joined CPG group %s",
	       c->local_id, COORD_CPG_GROUP);
	return 0;
}

void coord_cluster_disconnect(struct coord *c)
{
	int fd;

	if (!c->cs_connected) {
		return;
	}
	if (cpg_fd_get(c->cpg, &fd) == CS_OK) {
		qb_loop_poll_del(c->loop, fd);
	}
	if (votequorum_fd_get(c->vq, &fd) == CS_OK) {
		qb_loop_poll_del(c->loop, fd);
	}
	if (!c->stopping) {
		/* corosync is gone: nothing to leave */
	} else {
		struct cpg_name group;

		snprintf(group.value, sizeof(group.value), "%s", COORD_CPG_GROUP);
		group.length = (uint32_t)strlen(COORD_CPG_GROUP);
		cpg_leave(c->cpg, &group);
	}
	votequorum_finalize(c->vq);
	cpg_finalize(c->cpg);
	while (!qb_list_empty(&c->sendq)) {
		struct coord_msg *m = qb_list_first_entry(&c->sendq, struct coord_msg, list);

		qb_list_del(&m->list);
		free(m);
	}
	c->sendq_len = 0;
	c->cs_connected = false;
	c->joined = false;
	c->vq_quorate = false;
	c->current = false; /* what happened meanwhile is unknown */
	c->was_current = false;
	c->n_members = 0;
	c->n_qmembers = 0;
	coord_replica_reset(c);
	coord_leader_update(c);
}

static void reconnect_cb(void *data)
{
	struct coord *c = data;
	int rc;

	c->reconnect_timer = 0;
	if (c->cs_connected || c->stopping) {
		return;
	}
	rc = coord_cluster_connect(c);
	if (rc < 0) {
		qb_log(LOG_DEBUG, "corosync not reachable yet: %s", strerror(-rc));
		coord_cluster_schedule_reconnect(c);
	}
}

void coord_cluster_schedule_reconnect(struct coord *c)
{
	if (c->reconnect_timer == 0 && !c->stopping) {
		qb_loop_timer_add(c->loop, QB_LOOP_LOW,
				  (uint64_t)RECONNECT_MS * QB_TIME_NS_IN_MSEC, c,
				  reconnect_cb, &c->reconnect_timer);
	}
}

/* ---- sending ---- */

static void flush_cb(void *data);

static void flush(struct coord *c)
{
	while (!qb_list_empty(&c->sendq) && c->cs_connected) {
		struct coord_msg *m = qb_list_first_entry(&c->sendq, struct coord_msg, list);
		struct iovec iov = { .iov_base = m->data, .iov_len = m->len };
		cs_error_t e;

		if (c->cpg_tx != NULL) {
			int r = c->cpg_tx(c->cpg_tx_arg, c->local_id, m->data, m->len);

			e = r == 0 ? CS_OK : r == -EAGAIN ? CS_ERR_TRY_AGAIN : CS_ERR_TOO_BIG;
		} else {
			e = cpg_mcast_joined(c->cpg, CPG_TYPE_AGREED, &iov, 1);
		}

		if (e == CS_ERR_TRY_AGAIN) {
			if (!c->flush_scheduled) {
				qb_loop_timer_handle t;

				c->flush_scheduled = true;
				qb_loop_timer_add(c->loop, QB_LOOP_HIGH,
						  FLUSH_RETRY_MS * QB_TIME_NS_IN_MSEC,
						  c, flush_cb, &t);
			}
			return;
		}
		if (e != CS_OK) {
			qb_log(LOG_ERR, "cpg_mcast_joined failed (%d); message dropped", e);
			c->send_dropped++;
		} else {
			c->metrics.cpg_sent++;
		}
		qb_list_del(&m->list);
		c->sendq_len--;
		free(m);
	}
}

static void flush_cb(void *data)
{
	struct coord *c = data;

	c->flush_scheduled = false;
	flush(c);
}

int coord_cpg_send(struct coord *c, enum ha_msg_type type,
		   const ProtobufCMessage *msg)
{
	Hactl__CpgCommit cm;
	uint8_t *buf;
	size_t len;
	struct coord_msg *m;
	int rc;

	if (!c->cs_connected) {
		return -ENOTCONN;
	}
	if (type == HA_MSG_CPG_COMMIT) {
		/* Every commit leaves stamped with this membership's epoch and
		 * the next seq of this leader's pipeline (several may be on
		 * their way before the first is delivered). */
		cm = *(const Hactl__CpgCommit *)msg;
		cm.seq = c->commit_seq_sent > c->state.seq ? c->commit_seq_sent + 1
							   : c->state.seq + 1;
		cm.has_epoch = true;
		cm.epoch = c->epoch;
		msg = &cm.base;
	}
	rc = ha_env_encode(type, msg, &buf, &len);
	if (rc < 0) {
		return rc;
	}
	if (type == HA_MSG_CPG_COMMIT) {
		c->commit_seq_sent = cm.seq;
	}
	if (c->send_hook) {
		rc = c->send_hook(c, buf, len);
		free(buf);
		c->metrics.cpg_sent += rc == 0;
		return rc;
	}
	if (c->sendq_len >= COORD_SENDQ_MAX) {
		c->send_dropped++;
		free(buf);
		return -ENOBUFS;
	}
	m = malloc(sizeof(*m) + len);
	if (m == NULL) {
		free(buf);
		return -ENOMEM;
	}
	m->sender = c->local_id;
	m->len = len;
	memcpy(m->data, buf, len);
	free(buf);
	return coord_cpg_send_msg(c, m);
}

int coord_cpg_send_msg(struct coord *c, struct coord_msg *m)
{
	if (!c->cs_connected) {
		free(m);
		return -ENOTCONN;
	}
	if (c->send_hook) { /* tests: the replayed bus takes every message */
		int rc = c->send_hook(c, m->data, m->len);

		free(m);
		c->metrics.cpg_sent += rc == 0;
		return rc;
	}
	if (c->sendq_len >= COORD_SENDQ_MAX) {
		c->send_dropped++;
		free(m);
		return -ENOBUFS;
	}
	m->sender = c->local_id;
	qb_list_add_tail(&m->list, &c->sendq);
	c->sendq_len++;
	flush(c);
	return 0;
}
