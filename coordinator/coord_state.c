/*
 * coord_state.c - the replicated cluster state model and its transitions.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "coord_state.h"

static const char *const node_state_names[COORD_NODE_STATE_MAX] = {
	[COORD_NODE_ONLINE] = "online",
	[COORD_NODE_OFFLINE] = "offline",
	[COORD_NODE_FENCED] = "fenced",
	[COORD_NODE_MAINTENANCE] = "maintenance",
};

const char *coord_node_state_str(enum coord_node_state s)
{
	return (unsigned)s < COORD_NODE_STATE_MAX ? node_state_names[s] : "unknown";
}

enum coord_node_state coord_node_state_of(const struct coord_node *n,
					  bool member)
{
	if (n->fenced) {
		return COORD_NODE_FENCED;
	}
	if (!member) {
		return COORD_NODE_OFFLINE;
	}
	if (n->maintenance) {
		return COORD_NODE_MAINTENANCE;
	}
	return COORD_NODE_ONLINE;
}

/* Deep copy of a protobuf message through pack/unpack; NULL on failure. */
static void *pb_dup(const ProtobufCMessage *m)
{
	size_t len;
	uint8_t *buf;
	ProtobufCMessage *copy;

	if (m == NULL) {
		return NULL;
	}
	len = protobuf_c_message_get_packed_size(m);
	buf = malloc(len + 1);
	if (buf == NULL) {
		return NULL;
	}
	protobuf_c_message_pack(m, buf);
	copy = protobuf_c_message_unpack(m->descriptor, NULL, len, buf);
	free(buf);
	return copy;
}

static void pb_free(void *m)
{
	if (m) {
		protobuf_c_message_free_unpacked(m, NULL);
	}
}

void coord_state_init(struct coord_state *st)
{
	memset(st, 0, sizeof(*st));
}

static void node_clear(struct coord_node *n)
{
	pb_free(n->facts);
	pb_free(n->usage);
	n->facts = NULL;
	n->usage = NULL;
}

void coord_state_clear(struct coord_state *st)
{
	for (size_t i = 0; i < st->n_nodes; i++) {
		node_clear(&st->nodes[i]);
	}
	for (size_t i = 0; i < st->n_guests; i++) {
		pb_free(st->guests[i]);
	}
	free(st->guests);
	coord_state_init(st);
}

struct coord_node *coord_state_node(struct coord_state *st, uint32_t id)
{
	for (size_t i = 0; i < st->n_nodes; i++) {
		if (st->nodes[i].id == id) {
			return &st->nodes[i];
		}
	}
	return NULL;
}

struct coord_node *coord_state_node_by_name(struct coord_state *st,
					    const char *name)
{
	for (size_t i = 0; i < st->n_nodes; i++) {
		if (strcmp(st->nodes[i].name, name) == 0) {
			return &st->nodes[i];
		}
	}
	return NULL;
}

struct coord_node *coord_state_node_add(struct coord_state *st, uint32_t id,
					const char *name)
{
	struct coord_node *n = coord_state_node(st, id);
	size_t pos;

	if (id == 0) {
		return NULL;
	}
	if (n == NULL) {
		if (st->n_nodes >= COORD_MAX_NODES) {
			return NULL;
		}
		for (pos = 0; pos < st->n_nodes && st->nodes[pos].id < id; pos++) {
		}
		memmove(&st->nodes[pos + 1], &st->nodes[pos],
			(st->n_nodes - pos) * sizeof(st->nodes[0]));
		st->n_nodes++;
		n = &st->nodes[pos];
		memset(n, 0, sizeof(*n));
		n->id = id;
		snprintf(n->name, sizeof(n->name), "node%u", id);
	}
	if (name && name[0]) {
		snprintf(n->name, sizeof(n->name), "%s", name);
	}
	return n;
}

int coord_state_set_facts(struct coord_state *st, uint32_t id,
			  const Hactl__HostFacts *facts, bool agent_connected)
{
	struct coord_node *n = coord_state_node_add(st, id, NULL);
	Hactl__HostFacts *copy = NULL;

	if (n == NULL) {
		return -ENOSPC;
	}
	if (facts) {
		copy = pb_dup(&facts->base);
		if (copy == NULL) {
			return -ENOMEM;
		}
		pb_free(n->facts);
		n->facts = copy;
	}
	n->agent_connected = agent_connected;
	return 0;
}

int coord_state_set_usage(struct coord_state *st, uint32_t id,
			  const Hactl__HostUsage *usage)
{
	struct coord_node *n = coord_state_node_add(st, id, NULL);
	Hactl__HostUsage *copy;

	if (n == NULL) {
		return -ENOSPC;
	}
	copy = pb_dup(&usage->base);
	if (copy == NULL) {
		return -ENOMEM;
	}
	pb_free(n->usage);
	n->usage = copy;
	return 0;
}

Hactl__ClusterState *coord_state_export(const struct coord_state *st)
{
	Hactl__ClusterState *cs = calloc(1, sizeof(*cs));
	Hactl__NodeRecord *recs;

	if (cs == NULL) {
		return NULL;
	}
	hactl__cluster_state__init(cs);
	cs->has_seq = true;
	cs->seq = st->seq;
	cs->has_updated_ms = true;
	cs->updated_ms = st->updated_ms;
	/* One block: the pointer array, then the records it points to. */
	cs->nodes = calloc(1, (st->n_nodes + 1) * (sizeof(*cs->nodes) + sizeof(*recs)));
	if (cs->nodes == NULL) {
		free(cs);
		return NULL;
	}
	recs = (Hactl__NodeRecord *)(cs->nodes + st->n_nodes + 1);
	for (size_t i = 0; i < st->n_nodes; i++) {
		const struct coord_node *n = &st->nodes[i];
		Hactl__NodeRecord *r = &recs[i];

		hactl__node_record__init(r);
		r->id = n->id;
		r->name = (char *)n->name;
		r->has_maintenance = n->maintenance;
		r->maintenance = n->maintenance;
		r->has_fenced = n->fenced;
		r->fenced = n->fenced;
		r->has_agent_connected = n->agent_connected;
		r->agent_connected = n->agent_connected;
		r->facts = n->facts;
		r->usage = n->usage;
		cs->nodes[i] = r;
	}
	cs->n_nodes = st->n_nodes;
	cs->guests = st->guests;
	cs->n_guests = st->n_guests;
	return cs;
}

void coord_state_export_free(Hactl__ClusterState *cs)
{
	if (cs == NULL) {
		return;
	}
	free(cs->nodes); /* pointers and records are one block */
	free(cs);
}

static bool name_ok(const char *s)
{
	size_t n = s ? strlen(s) : 0;

	if (n == 0 || n > COORD_NAME_MAX) {
		return false;
	}
	for (size_t i = 0; i < n; i++) {
		unsigned char ch = (unsigned char)s[i];

		if (!(ch == '-' || ch == '_' || ch == '.' || (ch >= '0' && ch <= '9') ||
		      (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z'))) {
			return false;
		}
	}
	return true;
}

int coord_state_import(struct coord_state *dst, const Hactl__ClusterState *src,
		       char *why, size_t whylen)
{
	struct coord_state tmp;

	if (src->n_nodes > COORD_MAX_NODES) {
		snprintf(why, whylen, "%zu nodes, at most %d allowed",
			 src->n_nodes, COORD_MAX_NODES);
		return -E2BIG;
	}
	if (src->n_guests > COORD_MAX_GUESTS) {
		snprintf(why, whylen, "%zu guests, at most %d allowed",
			 src->n_guests, COORD_MAX_GUESTS);
		return -E2BIG;
	}
	coord_state_init(&tmp);
	tmp.seq = src->seq;
	tmp.updated_ms = src->updated_ms;
	for (size_t i = 0; i < src->n_nodes; i++) {
		const Hactl__NodeRecord *r = src->nodes[i];
		struct coord_node *n;

		if (r->id == 0 || !name_ok(r->name)) {
			snprintf(why, whylen, "node record %zu: bad id %u or name",
				 i, r->id);
			goto invalid;
		}
		if (coord_state_node(&tmp, r->id) ||
		    coord_state_node_by_name(&tmp, r->name)) {
			snprintf(why, whylen, "node record %zu: duplicate id %u or name '%s'",
				 i, r->id, r->name);
			goto invalid;
		}
		n = coord_state_node_add(&tmp, r->id, r->name);
		n->maintenance = r->maintenance;
		n->fenced = r->fenced;
		n->agent_connected = r->agent_connected;
		if ((r->facts && (n->facts = pb_dup(&r->facts->base)) == NULL) ||
		    (r->usage && (n->usage = pb_dup(&r->usage->base)) == NULL)) {
			goto nomem;
		}
	}
	if (src->n_guests) {
		tmp.guests = calloc(src->n_guests, sizeof(*tmp.guests));
		if (tmp.guests == NULL) {
			goto nomem;
		}
	}
	for (size_t i = 0; i < src->n_guests; i++) {
		if (!name_ok(src->guests[i]->name)) {
			snprintf(why, whylen, "guest record %zu: bad name", i);
			goto invalid;
		}
		for (size_t j = 0; j < i; j++) {
			if (strcmp(src->guests[j]->name, src->guests[i]->name) == 0) {
				snprintf(why, whylen, "guest record %zu: duplicate name '%s'",
					 i, src->guests[i]->name);
				goto invalid;
			}
		}
		tmp.guests[i] = pb_dup(&src->guests[i]->base);
		if (tmp.guests[i] == NULL) {
			goto nomem;
		}
		tmp.n_guests++;
	}
	coord_state_clear(dst);
	*dst = tmp;
	return 0;
nomem:
	snprintf(why, whylen, "out of memory");
	coord_state_clear(&tmp);
	return -ENOMEM;
invalid:
	coord_state_clear(&tmp);
	return -EINVAL;
}

int coord_change_check(const struct coord_state *st, const Hactl__Change *ch,
		       char *why, size_t whylen)
{
	switch (ch->kind_case) {
	case HACTL__CHANGE__KIND_MAINTENANCE: {
		const Hactl__MaintenanceChange *m = ch->maintenance;
		const struct coord_node *n = NULL;

		for (size_t i = 0; i < st->n_nodes; i++) {
			if (strcmp(st->nodes[i].name, m->node) == 0) {
				n = &st->nodes[i];
			}
		}
		if (n == NULL) {
			snprintf(why, whylen, "unknown node '%s'", m->node);
			return -ENOENT;
		}
		if (n->maintenance == m->on) {
			snprintf(why, whylen, "node '%s' is already %s maintenance",
				 m->node, m->on ? "in" : "out of");
			return -EALREADY;
		}
		return 0;
	}
	default:
		snprintf(why, whylen, "unknown change kind %d", (int)ch->kind_case);
		return -EINVAL;
	}
}

int coord_change_apply(struct coord_state *st, const Hactl__Change *ch,
		       uint64_t now_ms, char *why, size_t whylen)
{
	int rc = coord_change_check(st, ch, why, whylen);

	if (rc < 0) {
		return rc;
	}
	switch (ch->kind_case) {
	case HACTL__CHANGE__KIND_MAINTENANCE:
		coord_state_node_by_name(st, ch->maintenance->node)->maintenance =
			ch->maintenance->on;
		break;
	default:
		return -EINVAL;
	}
	st->seq++;
	st->updated_ms = now_ms;
	return 0;
}

void coord_change_describe(const Hactl__Change *ch, char *buf, size_t len)
{
	switch (ch->kind_case) {
	case HACTL__CHANGE__KIND_MAINTENANCE:
		snprintf(buf, len, "maintenance %s %s",
			 ch->maintenance->on ? "on" : "off", ch->maintenance->node);
		break;
	default:
		snprintf(buf, len, "change kind %d", (int)ch->kind_case);
		break;
	}
}

int coord_sync_pick(const uint64_t *seqs, const uint32_t *senders, size_t n)
{
	int best = -1;

	for (size_t i = 0; i < n; i++) {
		if (best < 0 || seqs[i] > seqs[best] ||
		    (seqs[i] == seqs[best] && senders[i] < senders[best])) {
			best = (int)i;
		}
	}
	return best;
}

uint32_t coord_leader_pick(bool quorate, const uint32_t *cpg, size_t n_cpg,
			   const uint32_t *quorum, size_t n_quorum)
{
	uint32_t leader = 0;

	if (!quorate) {
		return 0;
	}
	for (size_t i = 0; i < n_cpg; i++) {
		bool in_quorum = n_quorum == 0;

		for (size_t j = 0; j < n_quorum && !in_quorum; j++) {
			in_quorum = quorum[j] == cpg[i];
		}
		if (in_quorum && cpg[i] != 0 && (leader == 0 || cpg[i] < leader)) {
			leader = cpg[i];
		}
	}
	return leader;
}
