/*
 * bal_print.c - the human-readable plan: `hactl balance --dry-run`,
 * `hactl simulate` and the golden files all print through here, so the
 * format is stable (changing it means regenerating the golden files).
 */
#include <inttypes.h>
#include <math.h>
#include <string.h>

#include "bal_int.h"

/*
 * Rounds for printing with a small upward bias, so that a value that is
 * exactly half-way (156.25) prints the same whatever the last bits of
 * its floating point computation: the golden files stay stable.
 */
static double r1(double v)
{
	return floor(v * 10 + 0.5 + 1e-6) / 10;
}

static double r2(double v)
{
	return floor(v * 100 + 0.5 + 1e-6) / 100;
}

void ha_bal_score_print(FILE *out, const char *label, const struct ha_bal_score *s)
{
	fprintf(out, "%s: imbalance %.2f%% (cpu %.2f%%, mem %.2f%%), max cpu %.1f%% mem %.1f%%, "
		"nodes used %u/%u",
		label, r2(s->imbalance), r2(s->cpu_sd), r2(s->mem_sd), r1(s->cpu_max),
		r1(s->mem_max),
		s->nodes_used, s->nodes_eligible);
	if (s->overloaded) {
		fprintf(out, ", overloaded %u", s->overloaded);
	}
	if (s->n1_failing) {
		fprintf(out, ", N+1 fails for %u", s->n1_failing);
	}
	if (s->affinity_split) {
		fprintf(out, ", affinity split %u", s->affinity_split);
	}
	if (s->anti_affinity_conflicts) {
		fprintf(out, ", anti-affinity conflicts %u", s->anti_affinity_conflicts);
	}
	if (s->on_maintenance) {
		fprintf(out, ", to evacuate %u", s->on_maintenance);
	}
	if (s->stranded) {
		fprintf(out, ", stranded %u", s->stranded);
	}
	fprintf(out, "\n");
}

static const char *node_name(const struct ha_bal_cluster *c, int32_t n)
{
	return n >= 0 && (uint32_t)n < c->n_nodes ? c->nodes[n].name : "-";
}

static const char *guest_name(const struct ha_bal_cluster *c, uint32_t g)
{
	return g < c->n_guests ? c->guests[g].name : "?";
}

void ha_bal_plan_print(FILE *out, const struct ha_bal_cluster *c,
		       const struct ha_bal_plan *plan)
{
	fprintf(out, "%s, strategy %s\n", ha_bal_op_str(plan->op),
		ha_bal_strategy_str(plan->strategy));
	ha_bal_score_print(out, "before", &plan->before);
	for (uint32_t i = 0; i < plan->n_actions; i++) {
		const struct ha_bal_action *a = &plan->actions[i];
		const char *g = guest_name(c, a->guest);

		switch (a->kind) {
		case HA_BAL_ACT_MIGRATE:
			fprintf(out, "  %u. wave %u: migrate %s %s -> %s (%s, copy %" PRIu64 " MiB",
				i + 1, a->wave, g, node_name(c, a->from), node_name(c, a->to),
				ha_bal_reason_str(a->reason), a->copy_mib);
			if (a->gain > 0) {
				fprintf(out, ", gain %.1f", r1(a->gain));
			}
			fprintf(out, ")\n");
			break;
		case HA_BAL_ACT_PLACE:
			fprintf(out, "  %u. place %s on %s (%s", i + 1, g, node_name(c, a->to),
				ha_bal_reason_str(a->reason));
			if (a->from >= 0) {
				fprintf(out, ", was on %s", node_name(c, a->from));
			}
			fprintf(out, ")\n");
			break;
		default:
			fprintf(out, "  %u. unplaced %s (%s: %s)\n", i + 1, g,
				ha_bal_reason_str(a->reason), a->detail);
			break;
		}
	}
	ha_bal_score_print(out, "after", &plan->after);
	fprintf(out, "score %.2f -> %.2f (%s)", r2(plan->before.value), r2(plan->after.value),
		plan->strategy == HA_BAL_STRATEGY_PACK ? "nodes used, %" : "imbalance, %");
	fprintf(out, "; moves %u in %u waves, copy %" PRIu64 " MiB", plan->n_moves,
		plan->waves, plan->copy_mib);
	if (plan->n_places) {
		fprintf(out, "; placed %u", plan->n_places);
	}
	if (plan->n_unplaced) {
		fprintf(out, "; unplaced %u", plan->n_unplaced);
	}
	fprintf(out, "\n");
	if (plan->op == HA_BAL_OP_REBALANCE) {
		if (plan->triggered) {
			fprintf(out, "state: imbalanced, round %u\n", plan->rounds);
		} else {
			fprintf(out, "state: balanced\n");
		}
	}
	if (plan->after.overloaded) {
		fprintf(out, "warning: %u node(s) stay above a threshold\n",
			plan->after.overloaded);
	}
	if (plan->triggered && (plan->skipped_hold || plan->skipped_hot)) {
		fprintf(out, "skipped: %u moved within the hold time, %u dirtying too fast\n",
			plan->skipped_hold, plan->skipped_hot);
	}
	if (plan->budget_hit) {
		fprintf(out, "note: move budget of the round reached\n");
	}
	if (plan->note[0]) {
		fprintf(out, "note: %s\n", plan->note);
	}
}
