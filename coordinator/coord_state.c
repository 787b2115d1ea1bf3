/*
 * coord_state.c - the replicated cluster state model and its transitions.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "coord_state.h"
#include "hactl_states.h"

/* The protocol's NodeState, whose names are proto/hactl_states.c's. */
_Static_assert((int)COORD_NODE_ONLINE == (int)HACTL__NODE_STATE__NODE_ONLINE &&
	       (int)COORD_NODE_OFFLINE == (int)HACTL__NODE_STATE__NODE_OFFLINE &&
	       (int)COORD_NODE_FENCED == (int)HACTL__NODE_STATE__NODE_FENCED &&
	       (int)COORD_NODE_MAINTENANCE == (int)HACTL__NODE_STATE__NODE_MAINTENANCE &&
	       COORD_NODE_STATE_MAX == HA_NODE_STATE_MAX, "coord_node_state is NodeState");

const char *coord_node_state_str(enum coord_node_state s)
{
	return ha_node_state_str((Hactl__NodeState)s);
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

void *coord_pb_dup(const ProtobufCMessage *m)
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

int coord_cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return x < y ? -1 : x > y;
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
	for (size_t i = 0; i < st->n_jobs; i++) {
		pb_free(st->jobs[i]);
	}
	free(st->jobs);
	coord_state_init(st);
}

static const struct coord_node *node_by_id_c(const struct coord_state *st, uint32_t id);
static const struct coord_node *node_by_name_c(const struct coord_state *st,
					       const char *name);

struct coord_node *coord_state_node(struct coord_state *st, uint32_t id)
{
	return (struct coord_node *)node_by_id_c(st, id);
}

struct coord_node *coord_state_node_by_name(struct coord_state *st,
					    const char *name)
{
	return (struct coord_node *)node_by_name_c(st, name);
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
		copy = coord_pb_dup(&facts->base);
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
	copy = coord_pb_dup(&usage->base);
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
		r->address = (char *)n->address;
		cs->nodes[i] = r;
	}
	cs->n_nodes = st->n_nodes;
	cs->guests = st->guests;
	cs->n_guests = st->n_guests;
	cs->jobs = st->jobs;
	cs->n_jobs = st->n_jobs;
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
		if (r->address) {
			snprintf(n->address, sizeof(n->address), "%s", r->address);
		}
		n->agent_connected = r->agent_connected;
		if ((r->facts && (n->facts = coord_pb_dup(&r->facts->base)) == NULL) ||
		    (r->usage && (n->usage = coord_pb_dup(&r->usage->base)) == NULL)) {
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
		tmp.guests[i] = coord_pb_dup(&src->guests[i]->base);
		if (tmp.guests[i] == NULL) {
			goto nomem;
		}
		tmp.n_guests++;
	}
	if (src->n_jobs > COORD_MAX_JOBS) {
		snprintf(why, whylen, "%zu jobs, at most %d allowed", src->n_jobs, COORD_MAX_JOBS);
		goto invalid;
	}
	if (src->n_jobs) {
		tmp.jobs = calloc(src->n_jobs, sizeof(*tmp.jobs));
		if (tmp.jobs == NULL) {
			goto nomem;
		}
	}
	for (size_t i = 0; i < src->n_jobs; i++) {
		tmp.jobs[i] = coord_pb_dup(&src->jobs[i]->base);
		if (tmp.jobs[i] == NULL) {
			goto nomem;
		}
		tmp.n_jobs++;
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

Hactl__GuestRecord *coord_state_guest(const struct coord_state *st, const char *name)
{
	for (size_t i = 0; i < st->n_guests; i++) {
		if (strcmp(st->guests[i]->name, name) == 0) {
			return st->guests[i];
		}
	}
	return NULL;
}

static const struct coord_node *node_by_name_c(const struct coord_state *st,
					       const char *name)
{
	for (size_t i = 0; i < st->n_nodes; i++) {
		if (strcmp(st->nodes[i].name, name) == 0) {
			return &st->nodes[i];
		}
	}
	return NULL;
}

static const struct coord_node *node_by_id_c(const struct coord_state *st, uint32_t id)
{
	for (size_t i = 0; i < st->n_nodes; i++) {
		if (st->nodes[i].id == id) {
			return &st->nodes[i];
		}
	}
	return NULL;
}

bool coord_guest_wants_running(const Hactl__GuestRecord *g)
{
	return ha_guest_state_from_str(g->desired) == HACTL__GUEST_STATE__GUEST_RUNNING;
}

int coord_migration_state(const Hactl__Migration *m)
{
	return m ? ha_migration_state_from_str(m->state) : HA_STATE_NONE;
}

bool coord_migration_in_progress(const Hactl__Migration *m)
{
	return coord_migration_state(m) == HACTL__MIGRATION_STATE__MIGRATION_TRANSFERRING;
}

/* A guest whose copy runs, starts, stops gracefully or is paused: @state
 * is a GuestState value or HA_STATE_NONE. */
static bool guest_state_active(int state)
{
	switch (state) {
	case HACTL__GUEST_STATE__GUEST_RUNNING:
	case HACTL__GUEST_STATE__GUEST_STARTING:
	case HACTL__GUEST_STATE__GUEST_STOPPING:
	case HACTL__GUEST_STATE__GUEST_PAUSED:
		return true;
	default:
		return false;
	}
}

static bool guest_active(const Hactl__GuestRecord *g)
{
	return guest_state_active(ha_guest_state_from_str(g->state));
}

/* The node where a copy of @g still runs, starts or stops (its agent
 * said so last), unless that node is fenced (off): a start must go
 * there or wait. NULL when none. */
static const struct coord_node *active_on(const struct coord_state *st,
					  const Hactl__GuestRecord *g)
{
	const struct coord_node *o = guest_active(g) ? node_by_id_c(st, g->running_on) : NULL;

	return o && !o->fenced ? o : NULL;
}

uint64_t coord_guest_mem_kib(const Hactl__GuestRecord *g)
{
	struct ha_guest_def def;
	char err[256];

	if (g->definition.data == NULL ||
	    ha_guestdef_parse((const char *)g->definition.data, g->definition.len,
			      g->name, &def, err, sizeof(err)) < 0) {
		return 0;
	}
	return def.mem_kib;
}

bool coord_node_eligible(const struct coord_node *n, const struct coord_view *v,
			 const char *type, char *why, size_t whylen)
{
	bool member = false;

	for (size_t i = 0; v && i < v->n_members; i++) {
		member |= v->members[i] == n->id;
	}
	if (!member) {
		snprintf(why, whylen, "node '%s' is offline", n->name);
		return false;
	}
	if (n->fenced) {
		snprintf(why, whylen, "node '%s' is fenced", n->name);
		return false;
	}
	if (n->maintenance) {
		snprintf(why, whylen, "node '%s' is in maintenance", n->name);
		return false;
	}
	if (!n->agent_connected) {
		snprintf(why, whylen, "node '%s' has no agent running", n->name);
		return false;
	}
	if (type && strcmp(type, "domain") == 0 && n->facts &&
	    (n->facts->qemu_version == NULL || !n->facts->qemu_version[0])) {
		snprintf(why, whylen, "node '%s' has no QEMU", n->name);
		return false;
	}
	return true;
}

static int check_define(const struct coord_state *st, const Hactl__GuestDefineChange *d,
			struct ha_guest_def *def, char *why, size_t whylen)
{
	int rc;

	if (d->definition.data == NULL) {
		snprintf(why, whylen, "empty definition");
		return -EINVAL;
	}
	rc = ha_guestdef_parse((const char *)d->definition.data, d->definition.len,
			       "definition", def, why, whylen);
	if (rc < 0) {
		return rc;
	}
	if (coord_state_guest(st, def->name)) {
		snprintf(why, whylen, "guest '%s' already exists", def->name);
		return -EEXIST;
	}
	if (st->n_guests >= COORD_MAX_GUESTS) {
		snprintf(why, whylen, "at most %d guests", COORD_MAX_GUESTS);
		return -ENOSPC;
	}
	return 0;
}

static Hactl__GuestRecord *need_guest(const struct coord_state *st, const char *name,
				      char *why, size_t whylen)
{
	Hactl__GuestRecord *g = coord_state_guest(st, name);

	if (g == NULL) {
		snprintf(why, whylen, "unknown guest '%s'", name);
	}
	return g;
}

bool coord_guest_paused(const Hactl__GuestRecord *g)
{
	return g->has_paused && g->paused;
}

/* `hactl pause` / `hactl resume`: only a started guest, not while it
 * migrates (its copy on the destination would run at the commit). */
static int check_pause(const struct coord_state *st, const Hactl__GuestPauseChange *p,
		       char *why, size_t whylen)
{
	const Hactl__GuestRecord *g = need_guest(st, p->name, why, whylen);

	if (g == NULL) {
		return -ENOENT;
	}
	if (!coord_guest_wants_running(g)) {
		snprintf(why, whylen, "guest '%s' is stopped: only a started guest can be %s",
			 g->name, p->pause ? "paused" : "resumed");
		return -ESRCH;
	}
	if (p->pause && coord_guest_paused(g)) {
		snprintf(why, whylen, "guest '%s' is already paused", g->name);
		return -EALREADY;
	}
	if (!p->pause && !coord_guest_paused(g)) {
		snprintf(why, whylen, "guest '%s' is not paused", g->name);
		return -EALREADY;
	}
	if (coord_migration_in_progress(g->migration)) {
		snprintf(why, whylen, "guest '%s' is migrating (transaction %llu): %s it once "
			 "the migration has ended", g->name,
			 (unsigned long long)g->migration->id, p->pause ? "pause" : "resume");
		return -EBUSY;
	}
	return 0;
}

int coord_change_check(const struct coord_state *st, const Hactl__Change *ch,
		       char *why, size_t whylen)
{
	switch (ch->kind_case) {
	case HACTL__CHANGE__KIND_MAINTENANCE: {
		const Hactl__MaintenanceChange *m = ch->maintenance;
		const struct coord_node *n = node_by_name_c(st, m->node);

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
	case HACTL__CHANGE__KIND_GUEST_DEFINE: {
		struct ha_guest_def def;

		return check_define(st, ch->guest_define, &def, why, whylen);
	}
	case HACTL__CHANGE__KIND_GUEST_START: {
		const Hactl__GuestStartChange *gs = ch->guest_start;
		const Hactl__GuestRecord *g = coord_state_guest(st, gs->name);

		if (g == NULL && gs->has_definition) {
			Hactl__GuestDefineChange d = HACTL__GUEST_DEFINE_CHANGE__INIT;
			struct ha_guest_def def;
			int rc;

			d.definition = gs->definition;
			rc = check_define(st, &d, &def, why, whylen);
			if (rc < 0) {
				return rc;
			}
			if (strcmp(def.name, gs->name) != 0) {
				snprintf(why, whylen, "definition names '%s', not '%s'", def.name,
					 gs->name);
				return -EINVAL;
			}
			if (gs->node && gs->node[0] && node_by_name_c(st, gs->node) == NULL) {
				snprintf(why, whylen, "unknown node '%s'", gs->node);
				return -ENOENT;
			}
			return 0;
		}
		if (g == NULL) {
			snprintf(why, whylen, "unknown guest '%s'", gs->name);
			return -ENOENT;
		}
		if (gs->node && gs->node[0] && node_by_name_c(st, gs->node) == NULL) {
			snprintf(why, whylen, "unknown node '%s'", gs->node);
			return -ENOENT;
		}
		if (gs->mode && strcmp(gs->mode, "cold") != 0 && strcmp(gs->mode, "snapshot") != 0) {
			snprintf(why, whylen, "start mode '%s' is not cold or snapshot", gs->mode);
			return -EINVAL;
		}
		if (coord_guest_wants_running(g)) {
			const struct coord_node *o = node_by_id_c(st, g->owner);

			snprintf(why, whylen, "guest '%s' is already started on %s", g->name,
				 o ? o->name : "?");
			return -EALREADY;
		}
		if (gs->node && gs->node[0]) {
			const struct coord_node *o = active_on(st, g);

			if (o && strcmp(o->name, gs->node) != 0) {
				snprintf(why, whylen, "guest '%s' is still %s on %s", g->name,
					 g->state, o->name);
				return -EBUSY;
			}
		}
		return 0;
	}
	case HACTL__CHANGE__KIND_GUEST_STOP: {
		const Hactl__GuestRecord *g = need_guest(st, ch->guest_stop->name, why, whylen);

		if (g == NULL) {
			return -ENOENT;
		}
		if (!coord_guest_wants_running(g)) {
			snprintf(why, whylen, "guest '%s' is already stopped", g->name);
			return -EALREADY;
		}
		return 0;
	}
	case HACTL__CHANGE__KIND_GUEST_PAUSE:
		return check_pause(st, ch->guest_pause, why, whylen);
	case HACTL__CHANGE__KIND_GUEST_UNDEFINE: {
		const Hactl__GuestRecord *g = need_guest(st, ch->guest_undefine->name, why, whylen);

		if (g == NULL) {
			return -ENOENT;
		}
		if (coord_guest_wants_running(g) || guest_active(g)) {
			snprintf(why, whylen, "guest '%s' is %s: stop it first", g->name,
				 coord_guest_wants_running(g) ? "started" : g->state);
			return -EBUSY;
		}
		return 0;
	}
	case HACTL__CHANGE__KIND_NODE_FENCE: {
		const struct coord_node *n = node_by_name_c(st, ch->node_fence->node);

		if (n == NULL) {
			snprintf(why, whylen, "unknown node '%s'", ch->node_fence->node);
			return -ENOENT;
		}
		if (n->fenced == ch->node_fence->fenced) {
			snprintf(why, whylen, "node '%s' is already %s", n->name,
				 n->fenced ? "fenced" : "unfenced");
			return -EALREADY;
		}
		return 0;
	}
	case HACTL__CHANGE__KIND_RECOVER:
		return 0; /* each placement is checked when applied */
	case HACTL__CHANGE__KIND_JOB_START:
	case HACTL__CHANGE__KIND_JOB_MOVE:
		return coord_job_check(st, ch, why, whylen);
	case HACTL__CHANGE__KIND_GUEST_RELOCATE: {
		const Hactl__GuestRelocateChange *r = ch->guest_relocate;
		const Hactl__GuestRecord *g = need_guest(st, r->name, why, whylen);
		const struct coord_node *dst;

		if (g == NULL) {
			return -ENOENT;
		}
		if (!coord_guest_wants_running(g) || g->generation != r->generation) {
			snprintf(why, whylen, "guest '%s' changed since (generation %llu, not %llu)",
				 g->name, (unsigned long long)g->generation,
				 (unsigned long long)r->generation);
			return -ESTALE;
		}
		if (r->node && r->node[0]) {
			dst = node_by_name_c(st, r->node);
			if (dst == NULL) {
				snprintf(why, whylen, "unknown node '%s'", r->node);
				return -ENOENT;
			}
			if (dst->id == g->owner) {
				snprintf(why, whylen, "guest '%s' is on %s already", g->name,
					 dst->name);
				return -EALREADY;
			}
		}
		return 0;
	}
	case HACTL__CHANGE__KIND_MIGRATE_START: {
		const Hactl__MigrateStartChange *m = ch->migrate_start;
		const Hactl__GuestRecord *g = need_guest(st, m->guest, why, whylen);
		const struct coord_node *dst = node_by_name_c(st, m->node);

		if (g == NULL) {
			return -ENOENT;
		}
		if (dst == NULL) {
			snprintf(why, whylen, "unknown node '%s'", m->node);
			return -ENOENT;
		}
		if (coord_guest_paused(g)) {
			snprintf(why, whylen, "guest '%s' is paused: resume it first (a paused "
				 "guest is not migrated)", g->name);
			return -EBUSY;
		}
		if (!coord_guest_wants_running(g) || g->owner == 0 ||
		    ha_guest_state_from_str(g->state) != HACTL__GUEST_STATE__GUEST_RUNNING) {
			snprintf(why, whylen, "guest '%s' is not running", g->name);
			return -ESRCH;
		}
		if (coord_migration_in_progress(g->migration)) {
			snprintf(why, whylen, "guest '%s' is already migrating (transaction %llu)",
				 g->name, (unsigned long long)g->migration->id);
			return -EBUSY;
		}
		if (dst->id == g->owner) {
			snprintf(why, whylen, "guest '%s' already runs on %s", g->name, dst->name);
			return -EALREADY;
		}
		return 0;
	}
	case HACTL__CHANGE__KIND_MIGRATE_END: {
		const Hactl__MigrateEndChange *m = ch->migrate_end;
		const Hactl__GuestRecord *g = need_guest(st, m->guest, why, whylen);

		if (g == NULL) {
			return -ENOENT;
		}
		if (!coord_migration_in_progress(g->migration) ||
		    (m->id && g->migration->id != m->id)) {
			snprintf(why, whylen, "guest '%s' has no migration in progress", g->name);
			return -ESRCH;
		}
		if (m->commit && !g->migration->received) {
			snprintf(why, whylen, "the destination does not hold the complete state yet");
			return -EAGAIN;
		}
		return 0;
	}
	default:
		snprintf(why, whylen, "unknown change kind %d", (int)ch->kind_case);
		return -EINVAL;
	}
}

int coord_change_prepare(const struct coord_state *st, const struct coord_view *v,
			 const Hactl__Change *in, char *node_out, size_t node_len,
			 char *why, size_t whylen)
{
	int rc = coord_change_check(st, in, why, whylen);
	const Hactl__GuestStartChange *gs;
	const Hactl__GuestRecord *g;
	const struct coord_node *n;
	struct ha_guest_def def;
	char err[256];

	node_out[0] = 0;
	if (rc == 0 && in->kind_case == HACTL__CHANGE__KIND_NODE_FENCE &&
	    in->node_fence->fenced && in->node_fence->method &&
	    strcmp(in->node_fence->method, "confirmed") == 0) {
		/* An operator's word that a node is off cannot hold while its
		 * coordinator is in the membership. */
		n = node_by_name_c(st, in->node_fence->node);
		for (size_t i = 0; v && i < v->n_members; i++) {
			if (v->members[i] == n->id) {
				snprintf(why, whylen, "node '%s' is in the membership: it is not off",
					 n->name);
				return -EBUSY;
			}
		}
	}
	if (rc == 0 && in->kind_case == HACTL__CHANGE__KIND_MIGRATE_START) {
		const Hactl__GuestRecord *mg = coord_state_guest(st, in->migrate_start->guest);

		n = node_by_name_c(st, in->migrate_start->node);
		if (!coord_node_eligible(n, v, mg->type, why, whylen)) {
			return -EHOSTUNREACH;
		}
		if (coord_guest_mem_kib(mg) && n->facts) {
			int64_t free_kib = (int64_t)n->facts->mem_total_kib;

			for (size_t j = 0; j < st->n_guests; j++) {
				if (st->guests[j]->owner == n->id &&
				    coord_guest_wants_running(st->guests[j])) {
					free_kib -= (int64_t)coord_guest_mem_kib(st->guests[j]);
				}
			}
			if (free_kib < (int64_t)coord_guest_mem_kib(mg)) {
				snprintf(why, whylen, "node '%s' has no room for %llu MiB", n->name,
					 (unsigned long long)coord_guest_mem_kib(mg) / 1024);
				return -ENOSPC;
			}
		}
		return 0;
	}
	if (rc < 0 || in->kind_case != HACTL__CHANGE__KIND_GUEST_START) {
		return rc;
	}
	gs = in->guest_start;
	g = coord_state_guest(st, gs->name);
	if (g == NULL) { /* defined by this very change */
		if (ha_guestdef_parse((const char *)gs->definition.data, gs->definition.len,
				      gs->name, &def, err, sizeof(err)) < 0) {
			snprintf(why, whylen, "%s", err);
			return -EINVAL;
		}
	} else if (ha_guestdef_parse((const char *)g->definition.data, g->definition.len,
			      g->name, &def, err, sizeof(err)) < 0) {
		snprintf(why, whylen, "stored definition of '%s' is invalid: %s", g->name, err);
		return -EINVAL;
	}
	if ((!gs->node || !gs->node[0]) && g && (n = active_on(st, g)) != NULL) {
		/* still stopping (or running) there: started again there, never
		 * placed on a second node while that copy lives */
		if (!coord_node_eligible(n, v, def.type, why, whylen)) {
			snprintf(why, whylen, "guest '%s' is still %s on %s", g->name, g->state,
				 n->name);
			return -EBUSY;
		}
	} else if (gs->node && gs->node[0]) {
		n = node_by_name_c(st, gs->node);
		if (!coord_node_eligible(n, v, def.type, why, whylen)) {
			return -EHOSTUNREACH;
		}
	} else {
		/* the engine places it, with the policy in force */
		return coord_place_new(st, v, gs->name, &def, NULL, node_out, node_len, why,
				       whylen);
	}
	snprintf(node_out, node_len, "%s", n->name);
	return 0;
}

static int guests_append(struct coord_state *st, Hactl__GuestRecord *g)
{
	Hactl__GuestRecord **arr = realloc(st->guests, (st->n_guests + 1) * sizeof(*arr));

	if (arr == NULL) {
		return -ENOMEM;
	}
	st->guests = arr;
	st->guests[st->n_guests++] = g;
	return 0;
}

void coord_pb_set_str(char **field, const char *v)
{
	/* fields of unpacked messages are freed by protobuf-c with free() */
	char *copy = strdup(v ? v : "");

	if (copy) {
		if (*field != protobuf_c_empty_string) {
			free(*field);
		}
		*field = copy;
	}
}

/* A guest record's state or desired state, by its name (hactl_states). */
static void state_set(char **field, Hactl__GuestState s)
{
	coord_pb_set_str(field, ha_guest_state_str(s));
}


/* The operator's pause (GuestRecord.paused); false leaves the field out. */
static void paused_set(Hactl__GuestRecord *g, bool on)
{
	g->has_paused = on;
	g->paused = on;
}

/* `hactl start`: the restart policy starts over. */
static void restart_policy_clear(Hactl__GuestRecord *g)
{
	g->has_restarts = false;
	g->restarts = 0;
	g->has_gave_up_generation = false;
	g->gave_up_generation = 0;
	g->has_relocations = false;
	g->relocations = 0;
	g->has_restart_error = false;
	g->restart_error = false;
}

static int apply_define(struct coord_state *st, const Hactl__GuestDefineChange *d,
			char *why, size_t whylen)
{
	struct ha_guest_def def;
	Hactl__GuestRecord tmpl = HACTL__GUEST_RECORD__INIT;
	Hactl__GuestRecord *g;
	int rc = check_define(st, d, &def, why, whylen);

	if (rc < 0) {
		return rc;
	}
	tmpl.name = def.name;
	tmpl.type = def.type;
	tmpl.state = (char *)ha_guest_state_str(HACTL__GUEST_STATE__GUEST_DEFINED);
	tmpl.desired = (char *)ha_guest_state_str(HACTL__GUEST_STATE__GUEST_STOPPED);
	tmpl.has_definition = true;
	tmpl.definition = d->definition;
	g = coord_pb_dup(&tmpl.base);
	if (g == NULL || guests_append(st, g) < 0) {
		pb_free(g);
		snprintf(why, whylen, "out of memory");
		return -ENOMEM;
	}
	return 0;
}

int coord_change_apply(struct coord_state *st, const Hactl__Change *ch,
		       uint64_t now_ms, char *why, size_t whylen)
{
	int rc = coord_change_check(st, ch, why, whylen);
	Hactl__GuestRecord *g;

	if (rc < 0) {
		return rc;
	}
	switch (ch->kind_case) {
	case HACTL__CHANGE__KIND_MAINTENANCE:
		coord_state_node_by_name(st, ch->maintenance->node)->maintenance =
			ch->maintenance->on;
		break;
	case HACTL__CHANGE__KIND_GUEST_DEFINE:
		rc = apply_define(st, ch->guest_define, why, whylen);
		if (rc < 0) {
			return rc;
		}
		break;
	case HACTL__CHANGE__KIND_GUEST_START: {
		const Hactl__GuestStartChange *gs = ch->guest_start;
		struct coord_node *n;

		if (gs->node == NULL || !gs->node[0]) {
			snprintf(why, whylen, "commit without a placement");
			return -EINVAL;
		}
		n = coord_state_node_by_name(st, gs->node);
		g = coord_state_guest(st, gs->name);
		if (g == NULL) {
			Hactl__GuestDefineChange d = HACTL__GUEST_DEFINE_CHANGE__INIT;

			d.definition = gs->definition;
			rc = apply_define(st, &d, why, whylen);
			if (rc < 0) {
				return rc;
			}
			g = coord_state_guest(st, gs->name);
		}
		g->has_owner = true;
		g->owner = n->id;
		g->has_generation = true;
		g->generation++;
		state_set(&g->desired, HACTL__GUEST_STATE__GUEST_RUNNING);
		coord_pb_set_str(&g->start_mode, gs->mode && gs->mode[0] ? gs->mode : "cold");
		g->has_start_snapshot = true;
		g->start_snapshot = gs->snapshot;
		coord_pb_set_str(&g->error, "");
		restart_policy_clear(g);
		paused_set(g, false);
		break;
	}
	case HACTL__CHANGE__KIND_GUEST_STOP:
		g = coord_state_guest(st, ch->guest_stop->name);
		state_set(&g->desired, HACTL__GUEST_STATE__GUEST_STOPPED);
		paused_set(g, false); /* thawed to stop in order */
		break;
	case HACTL__CHANGE__KIND_GUEST_PAUSE:
		paused_set(coord_state_guest(st, ch->guest_pause->name), ch->guest_pause->pause);
		break;
	case HACTL__CHANGE__KIND_NODE_FENCE: {
		struct coord_node *n = coord_state_node_by_name(st, ch->node_fence->node);

		n->fenced = ch->node_fence->fenced;
		break;
	}
	case HACTL__CHANGE__KIND_RECOVER:
		for (size_t i = 0; i < ch->recover->n_placements; i++) {
			const Hactl__RecoverPlacement *p = ch->recover->placements[i];
			const struct coord_node *owner, *dst;

			g = coord_state_guest(st, p->guest);
			if (g == NULL || !coord_guest_wants_running(g)) {
				continue;
			}
			owner = node_by_id_c(st, g->owner);
			if (g->owner && (owner == NULL || !owner->fenced)) {
				continue; /* its node came back or was never lost */
			}
			dst = p->node && p->node[0] ? node_by_name_c(st, p->node) : NULL;
			if (p->mode && strcmp(p->mode, "none") == 0) {
				state_set(&g->desired, HACTL__GUEST_STATE__GUEST_STOPPED);
				paused_set(g, false);
				g->owner = 0;
				coord_pb_set_str(&g->error, "host lost; restart policy none");
				continue;
			}
			if (dst == NULL) {
				g->owner = 0;
				coord_pb_set_str(&g->error, "host lost; no node can run it now");
				continue;
			}
			g->has_owner = true;
			g->owner = dst->id;
			g->has_generation = true;
			g->generation++;
			coord_pb_set_str(&g->start_mode, p->mode && p->mode[0] ? p->mode : "cold");
			g->has_start_snapshot = true;
			g->start_snapshot = 0;
			coord_pb_set_str(&g->error, "");
			state_set(&g->state, HACTL__GUEST_STATE__GUEST_RECOVERING);
		}
		break;
	case HACTL__CHANGE__KIND_GUEST_RELOCATE: {
		const Hactl__GuestRelocateChange *r = ch->guest_relocate;
		const struct coord_node *dst = r->node && r->node[0] ?
			node_by_name_c(st, r->node) : NULL;

		g = coord_state_guest(st, r->name);
		coord_pb_set_str(&g->error, r->reason ? r->reason : "");
		if (dst == NULL) {
			/* the policy is exhausted: state error until `hactl start` */
			state_set(&g->desired, HACTL__GUEST_STATE__GUEST_STOPPED);
			state_set(&g->state, HACTL__GUEST_STATE__GUEST_ERROR);
			paused_set(g, false);
			g->has_restart_error = true;
			g->restart_error = true;
			break;
		}
		g->has_owner = true;
		g->owner = dst->id;
		g->has_generation = true;
		g->generation++;
		g->has_relocations = true;
		g->relocations++;
		g->has_restarts = true;
		g->restarts = 0;
		coord_pb_set_str(&g->start_mode, "cold");
		g->has_start_snapshot = true;
		g->start_snapshot = 0;
		state_set(&g->state, HACTL__GUEST_STATE__GUEST_RELOCATING);
		break;
	}
	case HACTL__CHANGE__KIND_MIGRATE_START: {
		const Hactl__MigrateStartChange *m = ch->migrate_start;
		const struct coord_node *dst = node_by_name_c(st, m->node);
		Hactl__Migration mt = HACTL__MIGRATION__INIT;
		Hactl__MigrationOptions none = HACTL__MIGRATION_OPTIONS__INIT;
		Hactl__Migration *copy;

		g = coord_state_guest(st, m->guest);
		mt.id = st->seq + 1;
		mt.source = g->owner;
		mt.destination = dst->id;
		mt.state = (char *)ha_migration_state_str(
			HACTL__MIGRATION_STATE__MIGRATION_TRANSFERRING);
		mt.options = m->options ? m->options : &none;
		mt.has_started_ms = true;
		mt.started_ms = now_ms;
		/* the destination's migration network address when it announced
		 * one ([migration] network), else its cluster (ring0) address */
		mt.dst_address = dst->facts && dst->facts->migration_address &&
						 dst->facts->migration_address[0] ?
					 dst->facts->migration_address : (char *)dst->address;
		mt.has_evacuate = m->has_evacuate && m->evacuate;
		mt.evacuate = mt.has_evacuate;
		mt.has_job = m->has_job && m->job;
		mt.job = mt.has_job ? m->job : 0;
		copy = coord_pb_dup(&mt.base);
		if (copy == NULL) {
			snprintf(why, whylen, "out of memory");
			return -ENOMEM;
		}
		pb_free(g->migration);
		g->migration = copy;
		coord_job_migration_started(st, m, copy->id);
		break;
	}
	case HACTL__CHANGE__KIND_MIGRATE_END: {
		const Hactl__MigrateEndChange *m = ch->migrate_end;

		g = coord_state_guest(st, m->guest);
		coord_pb_set_str(&g->migration->state, ha_migration_state_str(
			m->commit ? HACTL__MIGRATION_STATE__MIGRATION_COMMITTED :
				    HACTL__MIGRATION_STATE__MIGRATION_ABORTED));
		coord_pb_set_str(&g->migration->reason, m->reason ? m->reason : "");
		g->migration->has_ended_ms = true;
		g->migration->ended_ms = now_ms;
		if (m->commit) {
			/* an evacuation remembers where the guest came from; any
			 * other move (the return among them) forgets it */
			g->has_home = true;
			g->home = g->migration->evacuate ? g->migration->source : 0;
			g->owner = g->migration->destination;
			g->has_generation = true;
			g->generation++;
			coord_pb_set_str(&g->start_mode, "cold");
		}
		coord_job_migration_ended(st, g->migration, m->commit, m->reason, now_ms);
		break;
	}
	case HACTL__CHANGE__KIND_JOB_START:
	case HACTL__CHANGE__KIND_JOB_MOVE:
		rc = coord_job_apply(st, ch, now_ms, why, whylen);
		if (rc < 0) {
			return rc;
		}
		break;
	case HACTL__CHANGE__KIND_GUEST_UNDEFINE:
		coord_job_guest_gone(st, ch->guest_undefine->name, now_ms);
		for (size_t i = 0; i < st->n_guests; i++) {
			if (strcmp(st->guests[i]->name, ch->guest_undefine->name) == 0) {
				pb_free(st->guests[i]);
				memmove(&st->guests[i], &st->guests[i + 1],
					(st->n_guests - i - 1) * sizeof(st->guests[0]));
				st->n_guests--;
				break;
			}
		}
		break;
	default:
		return -EINVAL;
	}
	st->seq++;
	st->updated_ms = now_ms;
	return 0;
}

/* The source's view of the migration stream: cipher and counters. */
static void stream_report_apply(Hactl__Migration *mg, const Hactl__MigrationReport *mr)
{
	if (mr->cipher && mr->cipher[0]) {
		coord_pb_set_str(&mg->cipher, mr->cipher);
	}
	if (mr->transport && mr->transport[0]) {
		coord_pb_set_str(&mg->transport, mr->transport);
	}
	if (mr->has_stream_sent) {
		mg->has_stream_sent = true;
		mg->stream_sent = mr->stream_sent;
	}
	if (mr->has_stream_received) {
		mg->has_stream_received = true;
		mg->stream_received = mr->stream_received;
	}
}

static void apply_migration_report(Hactl__GuestRecord *g, uint32_t node,
				   const Hactl__GuestStatus *gs)
{
	if (gs->migration && g->migration && g->migration->id == gs->migration->id &&
	    coord_migration_in_progress(g->migration)) {
		const Hactl__MigrationReport *mr = gs->migration;
		Hactl__Migration *mg = g->migration;
		bool src = strcmp(mr->role, "source") == 0;
		int phase = ha_migration_phase_from_str(mr->phase);

		if ((src && node == mg->source) || (!src && node == mg->destination)) {
			if (phase == HACTL__MIGRATION_PHASE__PHASE_FAILED) {
				coord_pb_set_str(&mg->error, mr->error ? mr->error : "failed");
			}
			if (!src && mr->has_port) {
				mg->has_dst_port = true;
				mg->dst_port = mr->port;
			}
			if (!src && phase == HACTL__MIGRATION_PHASE__PHASE_RECEIVED) {
				mg->has_received = true;
				mg->received = true;
			}
			if (src) {
				mg->has_transferred_bytes = true;
				mg->transferred_bytes = mr->transferred_bytes;
				mg->has_remaining_bytes = true;
				mg->remaining_bytes = mr->remaining_bytes;
				mg->has_dirty_rate_bps = true;
				mg->dirty_rate_bps = mr->dirty_rate_bps;
				mg->has_rounds = true;
				mg->rounds = mr->rounds;
				mg->has_expected_downtime_ms = true;
				mg->expected_downtime_ms = mr->expected_downtime_ms;
				mg->has_downtime_ms = mr->has_downtime_ms;
				mg->downtime_ms = mr->downtime_ms;
				mg->has_total_ms = true;
				mg->total_ms = mr->total_ms;
				if (mr->mode) {
					coord_pb_set_str(&mg->mode, mr->mode);
				}
				stream_report_apply(mg, mr);
			}
		}
	}
	/* after a commit the source still reports its final figures */
	if (gs->migration && g->migration && g->migration->id == gs->migration->id &&
	    strcmp(gs->migration->role, "source") == 0 && gs->migration->has_downtime_ms &&
	    node == g->migration->source) {
		g->migration->has_downtime_ms = true;
		g->migration->downtime_ms = gs->migration->downtime_ms;
		g->migration->has_total_ms = true;
		g->migration->total_ms = gs->migration->total_ms;
		g->migration->has_transferred_bytes = true;
		g->migration->transferred_bytes = gs->migration->transferred_bytes;
		stream_report_apply(g->migration, gs->migration);
	}
}

/*
 * CPU use in milli-CPUs from two cumulative readings of the owner: the
 * mean of the last interval and the previous figure, so that one busy
 * second does not move a guest. A restart (counter going back) starts over.
 */
static void guest_cpu_update(Hactl__GuestRecord *g, const Hactl__GuestStatus *gs,
			     uint64_t now_ms)
{
	uint64_t dt, dns, milli;
	bool running = ha_guest_state_from_str(gs->state) == HACTL__GUEST_STATE__GUEST_RUNNING;

	if (!gs->has_cpu_ns || !g->has_cpu_ns || !g->has_state_ms || now_ms <= g->state_ms ||
	    gs->cpu_ns < g->cpu_ns || !running) {
		if (!gs->has_cpu_ns || !running) {
			g->has_cpu_milli = false;
			g->cpu_milli = 0;
		}
		return;
	}
	dt = now_ms - g->state_ms;
	if (dt < 100) {
		return; /* too short to tell */
	}
	dns = gs->cpu_ns - g->cpu_ns;
	milli = dns / (dt * 1000);
	if (milli > UINT32_MAX / 2) {
		milli = UINT32_MAX / 2;
	}
	g->cpu_milli = g->has_cpu_milli ? (uint32_t)((g->cpu_milli + milli) / 2) : (uint32_t)milli;
	g->has_cpu_milli = true;
}

void coord_guest_status_apply(struct coord_state *st, uint32_t node,
			      const Hactl__GuestStatus *gs, uint64_t now_ms)
{
	Hactl__GuestRecord *g = coord_state_guest(st, gs->name);
	int state = ha_guest_state_from_str(gs->state);

	if (g == NULL) {
		return;
	}
	apply_migration_report(g, node, gs);
	/* Only the owner speaks for a guest, except to say it runs (an audit
	 * finding the owner must resolve). */
	if (g->owner != node && state != HACTL__GUEST_STATE__GUEST_RUNNING) {
		if (g->running_on == node) {
			g->running_on = 0;
		}
		return;
	}
	if (g->owner == node) {
		bool up = state == HACTL__GUEST_STATE__GUEST_RUNNING ||
			  state == HACTL__GUEST_STATE__GUEST_PAUSED;

		guest_cpu_update(g, gs, now_ms);
		if (g->restart_error && !up) {
			/* state error stays until `hactl start` */
		} else {
			coord_pb_set_str(&g->state, gs->state);
			coord_pb_set_str(&g->error, gs->error ? gs->error : "");
		}
		if (gs->generation == g->generation) {
			g->has_restarts = gs->restarts != 0;
			g->restarts = gs->restarts;
			if (gs->gave_up) {
				g->has_gave_up_generation = true;
				g->gave_up_generation = gs->generation;
			}
		}
		g->has_state_ms = true;
		g->state_ms = now_ms;
		g->has_cpu_ns = gs->has_cpu_ns;
		g->cpu_ns = gs->cpu_ns;
		g->has_mem_bytes = gs->has_mem_bytes;
		g->mem_bytes = gs->mem_bytes;
		g->has_disk_used_bytes = gs->has_disk_used_bytes;
		g->disk_used_bytes = gs->disk_used_bytes;
		g->has_disk_size_bytes = gs->has_disk_size_bytes;
		g->disk_size_bytes = gs->disk_size_bytes;
		{
			/* a copy that fails to allocate keeps the last one */
			Hactl__GuestLimits *l = gs->limits ? coord_pb_dup(&gs->limits->base) : NULL;

			if (l || !gs->limits) {
				pb_free(g->limits);
				g->limits = l;
			}
		}
		coord_pb_set_str(&g->note, gs->note ? gs->note : "");
		g->has_state_generation = true;
		g->state_generation = gs->generation;
		if (gs->has_snap_generation && gs->snap_generation > g->snap_generation) {
			g->has_snap_generation = true;
			g->snap_generation = gs->snap_generation;
			g->has_snap_time_ms = true;
			g->snap_time_ms = gs->snap_time_ms;
		}
	}
	if (coord_migration_in_progress(g->migration) &&
	    node != g->owner && node == g->migration->destination) {
		return; /* the destination's paused copy is not "running there" */
	}
	g->has_running_on = true;
	/* a copy that is starting or stopping gracefully runs there too */
	if (guest_state_active(state)) {
		g->running_on = node;
	} else if (g->running_on == node) {
		g->running_on = 0;
	}
}

void coord_change_describe(const Hactl__Change *ch, char *buf, size_t len)
{
	switch (ch->kind_case) {
	case HACTL__CHANGE__KIND_MAINTENANCE:
		snprintf(buf, len, "maintenance %s %s",
			 ch->maintenance->on ? "on" : "off", ch->maintenance->node);
		break;
	case HACTL__CHANGE__KIND_GUEST_DEFINE:
		snprintf(buf, len, "define guest (%zu bytes)", ch->guest_define->definition.len);
		break;
	case HACTL__CHANGE__KIND_GUEST_START:
		snprintf(buf, len, "start %s on %s (%s)", ch->guest_start->name,
			 ch->guest_start->node && ch->guest_start->node[0] ?
			 ch->guest_start->node : "placement's choice",
			 ch->guest_start->mode && ch->guest_start->mode[0] ?
			 ch->guest_start->mode : "cold");
		break;
	case HACTL__CHANGE__KIND_GUEST_STOP:
		snprintf(buf, len, "stop %s", ch->guest_stop->name);
		break;
	case HACTL__CHANGE__KIND_GUEST_UNDEFINE:
		snprintf(buf, len, "destroy %s", ch->guest_undefine->name);
		break;
	case HACTL__CHANGE__KIND_GUEST_PAUSE:
		snprintf(buf, len, "%s %s", ch->guest_pause->pause ? "pause" : "resume",
			 ch->guest_pause->name);
		break;
	case HACTL__CHANGE__KIND_NODE_FENCE:
		snprintf(buf, len, "node %s %s (%s)", ch->node_fence->node,
			 ch->node_fence->fenced ? "fenced" : "unfenced",
			 ch->node_fence->method ? ch->node_fence->method : "");
		break;
	case HACTL__CHANGE__KIND_MIGRATE_START:
		snprintf(buf, len, "migrate %s to %s", ch->migrate_start->guest,
			 ch->migrate_start->node);
		break;
	case HACTL__CHANGE__KIND_MIGRATE_END:
		snprintf(buf, len, "migration %llu of %s %s%s%s",
			 (unsigned long long)ch->migrate_end->id, ch->migrate_end->guest,
			 ch->migrate_end->commit ? "committed" : "aborted",
			 ch->migrate_end->reason && ch->migrate_end->reason[0] ? ": " : "",
			 ch->migrate_end->reason ? ch->migrate_end->reason : "");
		break;
	case HACTL__CHANGE__KIND_GUEST_RELOCATE: {
		const Hactl__GuestRelocateChange *r = ch->guest_relocate;

		if (r->node && r->node[0]) {
			snprintf(buf, len, "relocate %s to %s (restart policy: %s)", r->name,
				 r->node, r->reason ? r->reason : "");
		} else {
			snprintf(buf, len, "guest %s in state error (restart policy: %s)", r->name,
				 r->reason ? r->reason : "");
		}
		break;
	}
	case HACTL__CHANGE__KIND_RECOVER: {
		size_t used = (size_t)snprintf(buf, len, "recover");

		for (size_t i = 0; i < ch->recover->n_placements && used < len; i++) {
			const Hactl__RecoverPlacement *p = ch->recover->placements[i];

			used += (size_t)snprintf(buf + used, len - used, " %s->%s(%s)", p->guest,
						 p->node && p->node[0] ? p->node : "none",
						 p->mode ? p->mode : "");
		}
		break;
	}
	case HACTL__CHANGE__KIND_JOB_START:
	case HACTL__CHANGE__KIND_JOB_MOVE:
		coord_job_describe(ch, buf, len);
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

int coord_commit_check(uint64_t state_seq, uint64_t epoch, const uint32_t *members,
		       size_t n_members, uint32_t sender, const Hactl__CpgCommit *cm,
		       char *why, size_t whylen)
{
	uint32_t lowest = 0;

	for (size_t i = 0; i < n_members; i++) {
		if (lowest == 0 || members[i] < lowest) {
			lowest = members[i];
		}
	}
	if (cm->leader != sender || sender != lowest) {
		snprintf(why, whylen, "node %u is not the leader of this membership (%u is)",
			 sender, lowest);
		return -EPERM;
	}
	if (!cm->has_epoch || cm->epoch != epoch) {
		snprintf(why, whylen,
			 "decided in membership epoch %llu, before the change to epoch %llu",
			 cm->has_epoch ? (unsigned long long)cm->epoch : 0ull,
			 (unsigned long long)epoch);
		return -ESTALE;
	}
	if (cm->seq <= state_seq) {
		snprintf(why, whylen, "seq %llu is not after %llu", (unsigned long long)cm->seq,
			 (unsigned long long)state_seq);
		return -ESTALE;
	}
	return 0;
}

int coord_sync_choose(const struct coord_sync_in *in, size_t n)
{
	uint64_t seqs[COORD_MAX_NODES];
	uint32_t senders[COORD_MAX_NODES];
	size_t idx[COORD_MAX_NODES];
	size_t k = 0;
	int best;

	for (size_t i = 0; i < n && i < COORD_MAX_NODES; i++) {
		if (in[i].current) {
			seqs[k] = in[i].seq;
			senders[k] = in[i].sender;
			idx[k++] = i;
		}
	}
	for (size_t i = 0; k == 0 && i < n && i < COORD_MAX_NODES; i++) {
		if (in[i].was_current) {
			seqs[k] = in[i].seq;
			senders[k] = in[i].sender;
			idx[k++] = i;
		}
	}
	if (k == 0) {
		for (size_t i = 0; i < n && i < COORD_MAX_NODES; i++) {
			seqs[k] = in[i].seq;
			senders[k] = in[i].sender;
			idx[k++] = i;
		}
	}
	best = coord_sync_pick(seqs, senders, k);
	return best < 0 ? -1 : (int)idx[best];
}

bool coord_sync_current(const struct coord_sync_in *in, size_t n, const uint32_t *nodes,
			size_t n_nodes)
{
	size_t was = 0;

	for (size_t i = 0; i < n; i++) {
		if (in[i].current || in[i].unblock) {
			return true;
		}
		was += in[i].was_current;
	}
	if (was * 2 > n_nodes) {
		return true;
	}
	for (size_t j = 0; j < n_nodes; j++) {
		bool present = false;

		for (size_t i = 0; i < n && !present; i++) {
			present = in[i].sender == nodes[j];
		}
		if (!present) {
			return false;
		}
	}
	return n > 0;
}
