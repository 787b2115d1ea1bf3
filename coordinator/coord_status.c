/*
 * coord_status.c - the status page's data (GET /status.json): this
 * coordinator's view of the cluster as JSON, built with json-c from
 * struct coord in the event loop's thread.
 */
#include <json-c/json.h>
#include <stdlib.h>
#include <string.h>

#include "coordinator.h"
#include "hactl_states.h"

static const char *name_of(const struct coord *c, uint32_t id)
{
	for (size_t i = 0; id && i < c->state.n_nodes; i++) {
		if (c->state.nodes[i].id == id) {
			return c->state.nodes[i].name;
		}
	}
	return "";
}

static void add_str(json_object *o, const char *k, const char *v)
{
	json_object_object_add(o, k, json_object_new_string(v ? v : ""));
}

static void add_u64(json_object *o, const char *k, uint64_t v)
{
	json_object_object_add(o, k, json_object_new_uint64(v));
}

static json_object *nodes_json(const struct coord *c)
{
	const struct coord_state *st = &c->state;
	json_object *a = json_object_new_array();

	for (size_t i = 0; i < st->n_nodes; i++) {
		const struct coord_node *n = &st->nodes[i];
		bool member = coord_is_member(c, n->id);
		json_object *o = json_object_new_object();
		uint64_t guests = 0;

		for (size_t j = 0; j < st->n_guests; j++) {
			guests += st->guests[j]->owner == n->id;
		}
		add_str(o, "name", n->name);
		add_u64(o, "id", n->id);
		add_str(o, "state", coord_node_state_str(coord_node_state_of(n, member)));
		json_object_object_add(o, "leader", json_object_new_boolean(n->id == c->leader));
		json_object_object_add(o, "local", json_object_new_boolean(n->id == c->local_id));
		json_object_object_add(o, "member", json_object_new_boolean(member));
		json_object_object_add(o, "agent", json_object_new_boolean(n->agent_connected));
		add_str(o, "address", n->address);
		add_str(o, "fence_state", n->fence_state[0] ? n->fence_state : "idle");
		add_str(o, "fence_error", n->fence_error);
		add_u64(o, "guests", guests);
		if (n->usage) {
			add_u64(o, "cpu_permille", n->usage->cpu_permille);
			add_u64(o, "mem_used_kib", n->usage->mem_used_kib);
			add_u64(o, "mem_avail_kib", n->usage->mem_avail_kib);
		}
		json_object_array_add(a, o);
	}
	return a;
}

static json_object *guest_json(const struct coord *c, const Hactl__GuestRecord *g)
{
	json_object *o = json_object_new_object();

	add_str(o, "name", g->name);
	add_str(o, "type", g->type);
	add_str(o, "state", g->state && g->state[0] ? g->state : "defined");
	add_str(o, "desired", g->desired && g->desired[0] ? g->desired : "stopped");
	add_str(o, "node", name_of(c, g->owner));
	add_str(o, "running_on", name_of(c, g->running_on));
	add_u64(o, "generation", g->generation);
	add_str(o, "error", g->error);
	json_object_object_add(o, "migrating",
			       json_object_new_boolean(coord_migration_in_progress(g->migration)));
	return o;
}

static json_object *migration_json(const struct coord *c, const Hactl__GuestRecord *g,
				   uint64_t now_wall)
{
	const Hactl__Migration *m = g->migration;
	json_object *o = json_object_new_object();
	uint64_t done = m->transferred_bytes, left = m->remaining_bytes;

	add_str(o, "guest", g->name);
	add_u64(o, "id", m->id);
	add_str(o, "source", name_of(c, m->source));
	add_str(o, "destination", name_of(c, m->destination));
	add_str(o, "state", m->state);
	add_str(o, "mode", m->mode && m->mode[0] ? m->mode :
		    m->options && m->options->mode ? m->options->mode : "");
	add_u64(o, "transferred_bytes", done);
	add_u64(o, "remaining_bytes", left);
	add_u64(o, "rounds", m->rounds);
	add_u64(o, "expected_downtime_ms", m->expected_downtime_ms);
	if (m->has_transferred_bytes && done + left > 0) {
		json_object_object_add(o, "progress",
				       json_object_new_double((double)done / (double)(done + left)));
	} else {
		json_object_object_add(o, "progress", NULL);
	}
	json_object_object_add(o, "received", json_object_new_boolean(m->received));
	add_u64(o, "started_ms", m->started_ms);
	add_u64(o, "elapsed_ms", m->started_ms && now_wall > m->started_ms ?
				       now_wall - m->started_ms : 0);
	add_u64(o, "job", m->job);
	return o;
}

static json_object *job_json(const Hactl__Job *j)
{
	json_object *o = json_object_new_object();
	uint64_t pending = 0, running = 0, done = 0, failed = 0;

	for (size_t i = 0; i < j->n_moves; i++) {
		switch (ha_job_move_state_from_str(j->moves[i]->state)) {
		case HACTL__JOB_MOVE_STATE__JOB_MOVE_RUNNING:
			running++;
			break;
		case HACTL__JOB_MOVE_STATE__JOB_MOVE_DONE:
			done++;
			break;
		case HACTL__JOB_MOVE_STATE__JOB_MOVE_FAILED:
			failed++;
			break;
		default: /* pending, or none recorded yet */
			pending++;
			break;
		}
	}
	add_u64(o, "id", j->id);
	add_str(o, "kind", j->kind);
	add_str(o, "node", j->node);
	add_str(o, "state", j->state && j->state[0] ? j->state : "running");
	add_u64(o, "moves", j->n_moves);
	add_u64(o, "pending", pending);
	add_u64(o, "running", running);
	add_u64(o, "done", done);
	add_u64(o, "failed", failed);
	add_str(o, "note", j->note);
	add_u64(o, "started_ms", j->started_ms);
	add_u64(o, "ended_ms", j->ended_ms);
	return o;
}

char *coord_status_json(const struct coord *c, unsigned max_events, size_t *len)
{
	const struct coord_state *st = &c->state;
	json_object *root = json_object_new_object();
	json_object *guests = json_object_new_array();
	json_object *migs = json_object_new_array();
	json_object *jobs = json_object_new_array();
	json_object *events = json_object_new_array();
	uint64_t now_wall = coord_wall_ms(c);
	size_t n_ev;
	const char *text;
	char *out;

	if (root == NULL || guests == NULL || migs == NULL || jobs == NULL || events == NULL) {
		json_object_put(root);
		json_object_put(guests);
		json_object_put(migs);
		json_object_put(jobs);
		json_object_put(events);
		return NULL;
	}
	add_str(root, "node", name_of(c, c->local_id));
	add_u64(root, "node_id", c->local_id);
	add_str(root, "version", HA_VERSION);
	add_u64(root, "time_ms", now_wall);
	json_object_object_add(root, "quorate", json_object_new_boolean(coord_is_quorate(c)));
	json_object_object_add(root, "current", json_object_new_boolean(c->current));
	add_str(root, "leader", name_of(c, c->leader));
	add_u64(root, "seq", st->seq);
	add_u64(root, "epoch", c->epoch);
	add_u64(root, "members", c->n_members);
	json_object_object_add(root, "nodes", nodes_json(c));
	for (size_t i = 0; i < st->n_guests; i++) {
		const Hactl__GuestRecord *g = st->guests[i];

		if (i < COORD_STATUS_GUESTS_MAX) {
			json_object_array_add(guests, guest_json(c, g));
		}
		if (coord_migration_in_progress(g->migration)) {
			json_object_array_add(migs, migration_json(c, g, now_wall));
		}
	}
	json_object_object_add(root, "guests", guests);
	add_u64(root, "guests_total", st->n_guests);
	json_object_object_add(root, "migrations", migs);
	for (size_t i = 0; i < st->n_jobs; i++) {
		json_object_array_add(jobs, job_json(st->jobs[i]));
	}
	json_object_object_add(root, "jobs", jobs);
	/* the newest @max_events, oldest first */
	n_ev = c->n_events < max_events ? c->n_events : max_events;
	for (size_t i = c->n_events - n_ev; i < c->n_events; i++) {
		const char *e = c->events[(c->events_head + i) % COORD_EVENTS_MAX];

		if (e) {
			json_object_array_add(events, json_object_new_string(e));
		}
	}
	json_object_object_add(root, "events", events);
	text = json_object_to_json_string_ext(root, JSON_C_TO_STRING_PLAIN);
	out = text ? strdup(text) : NULL;
	if (out && len) {
		*len = strlen(out);
	}
	json_object_put(root);
	return out;
}
