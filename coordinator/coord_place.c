/*
 * coord_place.c - every placement the leader makes, through the engine.
 *
 * Pure, like coord_state.c: the replicated state and a view (members,
 * policy) in, decisions out. The same snapshot feeds the engine for a
 * start without a node (CREATE), the recovery of fenced hosts' guests
 * (RECOVER), a guest relocated by its restart policy (RELOCATE), the
 * leader's rebalancing rounds and `hactl balance --save`; so `hactl
 * simulate` on a saved snapshot predicts what the leader does
 * (docs/failover.md, "Placement at failover").
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "coord_state.h"
#include "restart.h"

static bool view_member(const struct coord_view *v, uint32_t id)
{
	for (size_t i = 0; v && i < v->n_members; i++) {
		if (v->members[i] == id) {
			return true;
		}
	}
	return false;
}

/* Nodes are named from corosync's nodelist; one without a name gets one. */
static void node_name(const struct coord_node *n, char out[HA_BAL_NAME_MAX])
{
	if (n->name[0]) {
		snprintf(out, HA_BAL_NAME_MAX, "%s", n->name);
	} else {
		snprintf(out, HA_BAL_NAME_MAX, "node%u", n->id);
	}
}

void coord_place_guest_from_def(struct ha_bal_guest *bg, const char *name,
				const struct ha_guest_def *def)
{
	memset(bg, 0, sizeof(*bg));
	snprintf(bg->name, sizeof(bg->name), "%s", name);
	snprintf(bg->group, sizeof(bg->group), "%s", def->group);
	bg->type = def->type[0] && strcmp(def->type, "domain") == 0 ? HA_BAL_DOMAIN :
								       HA_BAL_CONTAINER;
	bg->node = -1;
	bg->mem_mib = (def->mem_kib + 1023) / 1024;
	if (bg->mem_mib == 0) {
		bg->mem_mib = 1;
	}
	bg->vcpus = def->cpus ? def->cpus : 1;
	bg->priority = (int32_t)def->priority;
	bg->ha = def->restart != HA_RESTART_NONE;
}

int coord_place_snapshot(const struct coord_state *st, const struct coord_view *v,
			 uint64_t now_ms, unsigned flags, struct ha_bal_cluster **out,
			 char *why, size_t whylen)
{
	struct ha_bal_cluster *cl = ha_bal_cluster_new();
	uint64_t *guest_cpu = calloc(st->n_nodes + 1, sizeof(*guest_cpu));
	int rc = 0;

	if (cl == NULL || guest_cpu == NULL) {
		ha_bal_cluster_free(cl);
		free(guest_cpu);
		snprintf(why, whylen, "out of memory");
		return -ENOMEM;
	}
	cl->now_ms = now_ms;
	for (size_t i = 0; i < st->n_guests; i++) {
		const Hactl__GuestRecord *g = st->guests[i];

		for (size_t j = 0; j < st->n_nodes; j++) {
			if (st->nodes[j].id == g->owner) {
				guest_cpu[j] += g->cpu_milli;
			}
		}
	}
	for (size_t i = 0; i < st->n_nodes && rc >= 0; i++) {
		const struct coord_node *n = &st->nodes[i];
		struct ha_bal_node bn = { 0 };
		uint64_t used;

		node_name(n, bn.name);
		bn.id = n->id;
		bn.cpus = n->facts && n->facts->cpus ? n->facts->cpus : 1;
		bn.mem_mib = n->facts && n->facts->mem_total_kib >= 1024 ?
			n->facts->mem_total_kib / 1024 : 1;
		bn.online = view_member(v, n->id) && n->agent_connected && !n->fenced &&
			    n->facts != NULL;
		bn.maintenance = n->maintenance;
		/* what the host uses besides its guests (agents, daemons, others) */
		used = n->usage ? (uint64_t)n->usage->cpu_permille * bn.cpus : 0;
		bn.cpu_base_milli = used > guest_cpu[i] ? (uint32_t)(used - guest_cpu[i]) : 0;
		if (bn.cpu_base_milli > bn.cpus * 1000u) {
			bn.cpu_base_milli = bn.cpus * 1000u;
		}
		if (n->facts && (n->facts->qemu_version == NULL || !n->facts->qemu_version[0])) {
			bn.types = 1u << HA_BAL_CONTAINER;
		}
		rc = ha_bal_cluster_add_node(cl, &bn);
		if (rc < 0) {
			snprintf(why, whylen, "node '%s': %s", bn.name, strerror(-rc));
		}
	}
	for (size_t i = 0; i < st->n_guests && rc >= 0; i++) {
		const Hactl__GuestRecord *g = st->guests[i];
		const struct coord_node *owner = NULL;
		struct ha_bal_guest bg;
		struct ha_guest_def def;
		char err[256], name[HA_BAL_NAME_MAX];

		/* Only guests that should run use room; stopped ones have none.
		 * One that should run with no owner waits for room (recovery). */
		if (!coord_guest_wants_running(g)) {
			continue;
		}
		for (size_t j = 0; j < st->n_nodes; j++) {
			if (st->nodes[j].id == g->owner) {
				owner = &st->nodes[j];
			}
		}
		if (g->owner && owner == NULL) {
			continue;
		}
		/* for recovery: guests of a lost node not yet fenced stay out
		 * (they are not ours to restart, and an offline node takes
		 * nothing, so they change no other placement) */
		if ((flags & COORD_SNAP_FENCED_ONLY) && owner && !owner->fenced &&
		    !view_member(v, owner->id)) {
			continue;
		}
		if (g->definition.data == NULL ||
		    ha_guestdef_parse((const char *)g->definition.data, g->definition.len,
				      g->name, &def, err, sizeof(err)) < 0) {
			continue; /* cannot happen: definitions are checked on define */
		}
		coord_place_guest_from_def(&bg, g->name, &def);
		if (owner) {
			node_name(owner, name);
			bg.node = ha_bal_cluster_find_node(cl, name);
			if (bg.node < 0) {
				bg.node = -1;
			}
		}
		if (coord_guest_paused(g) && !(flags & COORD_SNAP_FENCED_ONLY)) {
			/* paused by the operator: no migration moves it
			 * (coord_change_check refuses one); a failover does */
			bg.pinned = true;
		}
		bg.cpu_milli = g->cpu_milli;
		if (bg.cpu_milli > bg.vcpus * 1000u) {
			bg.cpu_milli = bg.vcpus * 1000u;
		}
		if (coord_migration_state(g->migration) ==
		    HACTL__MIGRATION_STATE__MIGRATION_COMMITTED) {
			bg.last_move_ms = g->migration->ended_ms;
		}
		rc = ha_bal_cluster_add_guest(cl, &bg);
		if (rc < 0) {
			snprintf(why, whylen, "guest '%s': %s", bg.name, strerror(-rc));
		}
	}
	free(guest_cpu);
	if (rc < 0) {
		ha_bal_cluster_free(cl);
		return rc;
	}
	*out = cl;
	return 0;
}

/* The policy in force, or the built-in defaults in @tmp (caller frees). */
static const struct ha_bal_policy *view_policy(const struct coord_view *v,
					       struct ha_bal_policy **tmp)
{
	*tmp = NULL;
	if (v && v->policy) {
		return v->policy;
	}
	*tmp = ha_bal_policy_new();
	return *tmp;
}

int coord_place_new(const struct coord_state *st, const struct coord_view *v,
		    const char *name, const struct ha_guest_def *def, const char *avoid,
		    char *node, size_t len, char *why, size_t whylen)
{
	struct ha_bal_policy *tmp;
	const struct ha_bal_policy *p = view_policy(v, &tmp);
	struct ha_bal_cluster *cl = NULL;
	struct ha_bal_plan *plan = NULL;
	struct ha_bal_guest bg;
	int rc, idx;

	if (p == NULL) {
		snprintf(why, whylen, "out of memory");
		return -ENOMEM;
	}
	rc = coord_place_snapshot(st, v, 0, 0, &cl, why, whylen);
	if (rc < 0) {
		ha_bal_policy_free(tmp);
		return rc;
	}
	idx = ha_bal_cluster_find_guest(cl, name);
	if (idx < 0) {
		coord_place_guest_from_def(&bg, name, def);
		rc = ha_bal_cluster_add_guest(cl, &bg);
		idx = rc;
	}
	if (rc >= 0 && avoid && avoid[0]) {
		/* a relocation: the guest counts where it fails now, and the
		 * engine places it on another node */
		int at = ha_bal_cluster_find_node(cl, avoid);

		cl->guests[idx].node = at >= 0 ? at : -1;
		rc = at >= 0 ? ha_balance_place(cl, p, HA_BAL_OP_RELOCATE, name, &plan) :
			       ha_balance_place(cl, p, HA_BAL_OP_CREATE, name, &plan);
	} else if (rc >= 0) {
		if (cl->guests[idx].node >= 0) {
			rc = -EALREADY;
			snprintf(why, whylen, "guest '%s' is placed already", name);
			goto out;
		}
		rc = ha_balance_place(cl, p, HA_BAL_OP_CREATE, name, &plan);
	}
	if (rc < 0) {
		snprintf(why, whylen, "placement of '%s': %s", name, strerror(-rc));
		goto out;
	}
	rc = -ENOSPC;
	snprintf(why, whylen, "no node can take '%s'", name);
	for (uint32_t i = 0; i < plan->n_actions; i++) {
		const struct ha_bal_action *a = &plan->actions[i];

		if (a->guest != (uint32_t)idx) {
			continue;
		}
		if (a->kind == HA_BAL_ACT_PLACE && a->to >= 0) {
			snprintf(node, len, "%s", cl->nodes[a->to].name);
			rc = 0;
		} else if (a->kind == HA_BAL_ACT_UNPLACED && a->detail[0]) {
			snprintf(why, whylen, "no node can take '%s': %s", name, a->detail);
		}
	}
out:
	ha_bal_plan_free(plan);
	ha_bal_cluster_free(cl);
	ha_bal_policy_free(tmp);
	return rc;
}

static bool awaits_recovery(const struct coord_state *st, const Hactl__GuestRecord *g)
{
	if (!coord_guest_wants_running(g)) {
		return false;
	}
	if (g->owner == 0) {
		return true;
	}
	for (size_t i = 0; i < st->n_nodes; i++) {
		if (st->nodes[i].id == g->owner) {
			return st->nodes[i].fenced;
		}
	}
	return false;
}

static int placement_add(Hactl__RecoverChange *out, const char *guest, const char *node,
			 const char *mode)
{
	Hactl__RecoverPlacement *p = calloc(1, sizeof(*p));

	if (p == NULL) {
		return -ENOMEM;
	}
	hactl__recover_placement__init(p);
	p->guest = strdup(guest);
	p->node = node ? strdup(node) : NULL;
	p->mode = strdup(mode);
	if (p->guest == NULL || p->mode == NULL || (node && p->node == NULL)) {
		free(p->guest);
		free(p->node);
		free(p->mode);
		free(p);
		return -ENOMEM;
	}
	out->placements[out->n_placements++] = p;
	return 0;
}

size_t coord_recover_plan(const struct coord_state *st, const struct coord_view *v,
			  Hactl__RecoverChange *out)
{
	struct ha_bal_policy *tmp;
	const struct ha_bal_policy *p = view_policy(v, &tmp);
	struct ha_bal_cluster *cl = NULL;
	struct ha_bal_plan *plan = NULL;
	char why[256];
	size_t wanted = 0;

	hactl__recover_change__init(out);
	for (size_t i = 0; i < st->n_guests; i++) {
		wanted += awaits_recovery(st, st->guests[i]);
	}
	if (wanted == 0 || p == NULL ||
	    coord_place_snapshot(st, v, 0, COORD_SNAP_FENCED_ONLY, &cl, why, sizeof(why)) < 0 ||
	    ha_balance_place(cl, p, HA_BAL_OP_RECOVER, NULL, &plan) < 0) {
		goto out;
	}
	out->placements = calloc(plan->n_actions + 1, sizeof(*out->placements));
	if (out->placements == NULL) {
		goto out;
	}
	/* The engine's order: priority, then size. Only guests whose owner
	 * is fenced (or that found no room before) are ours to move. */
	for (uint32_t i = 0; i < plan->n_actions; i++) {
		const struct ha_bal_action *a = &plan->actions[i];
		const Hactl__GuestRecord *g = coord_state_guest(st, cl->guests[a->guest].name);
		struct ha_guest_def def;
		const char *mode, *node = NULL;

		if (g == NULL || !awaits_recovery(st, g) ||
		    ha_guestdef_parse((const char *)g->definition.data, g->definition.len,
				      g->name, &def, why, sizeof(why)) < 0) {
			continue;
		}
		if (def.restart == HA_RESTART_NONE) {
			mode = "none";
		} else {
			mode = def.restart == HA_RESTART_SNAPSHOT ? "snapshot-or-cold" : "cold";
			if (a->kind == HA_BAL_ACT_PLACE && a->to >= 0) {
				node = cl->nodes[a->to].name;
			}
		}
		if (placement_add(out, g->name, node, mode) < 0) {
			break;
		}
	}
out:
	ha_bal_plan_free(plan);
	ha_bal_cluster_free(cl);
	ha_bal_policy_free(tmp);
	return out->n_placements;
}

void coord_recover_plan_free(Hactl__RecoverChange *rc)
{
	for (size_t i = 0; i < rc->n_placements; i++) {
		free(rc->placements[i]->guest);
		free(rc->placements[i]->node);
		free(rc->placements[i]->mode);
		free(rc->placements[i]);
	}
	free(rc->placements);
	rc->placements = NULL;
	rc->n_placements = 0;
}

int coord_restart_decide(const struct coord_state *st, const struct coord_view *v,
			 const Hactl__GuestRecord *g, Hactl__GuestRelocateChange *out,
			 char *node, size_t node_len, char *reason, size_t reason_len)
{
	const struct coord_node *owner = NULL;
	struct ha_guest_def def;
	char why[256];
	int rc;

	if (!coord_guest_wants_running(g) || g->owner == 0 || g->generation == 0 ||
	    g->gave_up_generation != g->generation || g->restart_error ||
	    coord_migration_in_progress(g->migration)) {
		return 0;
	}
	for (size_t i = 0; i < st->n_nodes; i++) {
		if (st->nodes[i].id == g->owner) {
			owner = &st->nodes[i];
		}
	}
	/* only an owner that is here to say it gave up, with no copy running
	 * anywhere: a lost owner is fencing's and recovery's */
	if (owner == NULL || owner->fenced || !view_member(v, owner->id) ||
	    !owner->agent_connected || g->running_on != 0 || g->definition.data == NULL ||
	    ha_guestdef_parse((const char *)g->definition.data, g->definition.len, g->name,
			      &def, why, sizeof(why)) < 0) {
		return 0; /* recovery's, or nothing to decide on */
	}
	hactl__guest_relocate_change__init(out);
	out->name = g->name;
	out->generation = g->generation;
	node[0] = 0;
	if (ha_restart_cluster(def.max_relocate, g->relocations) == HA_RESTART_RELOCATE) {
		rc = coord_place_new(st, v, g->name, &def, owner->name, node, node_len, why,
				     sizeof(why));
		if (rc == 0) {
			snprintf(reason, reason_len,
				 "failed %u times on %s; relocation %u of %u", g->restarts,
				 owner->name, g->relocations + 1, def.max_relocate);
			out->node = node;
			out->reason = reason;
			return 1;
		}
		node[0] = 0;
		snprintf(reason, reason_len, "failed %u times on %s; no other node: %s",
			 g->restarts, owner->name, why);
	} else {
		snprintf(reason, reason_len,
			 "failed %u times on %s after %u relocations (max_relocate %u)",
			 g->restarts, owner->name, g->relocations, def.max_relocate);
	}
	out->reason = reason;
	return 1;
}
