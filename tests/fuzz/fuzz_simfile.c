/*
 * fuzz_simfile.c - simulation files (balance/bal_simfile.c) and, behind
 * them, the engine: any input parses or is refused with FILE:LINE; what
 * parses is written back and parses again to the same cluster; small
 * clusters then go through every engine entry point and the simulation.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "balance.h"
#include "fuzz.h"

#define ENGINE_MAX_NODES 64
#define ENGINE_MAX_GUESTS 512
#define ENGINE_MAX_CMDS 16

static void null_step(void *user, uint32_t step, const struct ha_bal_sim_cmd *cmd,
		      const struct ha_bal_cluster *c, const struct ha_bal_plan *plan)
{
	(void)user;
	(void)step;
	(void)cmd;
	/* every action names a guest and nodes of the cluster */
	for (uint32_t i = 0; i < plan->n_actions; i++) {
		const struct ha_bal_action *a = &plan->actions[i];

		if (a->guest >= c->n_guests || a->to >= (int32_t)c->n_nodes ||
		    a->from >= (int32_t)c->n_nodes) {
			abort();
		}
		if (a->kind != HA_BAL_ACT_UNPLACED && a->to < 0) {
			abort();
		}
	}
}

static void engine(struct ha_bal_sim *sim)
{
	struct ha_bal_policy *p = ha_bal_policy_new();
	struct ha_bal_cluster *c = sim->cluster;
	struct ha_bal_plan *plan = NULL;
	struct ha_bal_score s;
	char err[512];

	if (p == NULL) {
		return;
	}
	p->hold_rounds = 1;
	if (ha_balance_plan(c, p, &plan) == 0) {
		null_step(NULL, 0, NULL, c, plan);
		ha_bal_plan_free(plan);
	}
	p->strategy = HA_BAL_STRATEGY_PACK;
	if (ha_balance_plan(c, p, &plan) == 0) {
		null_step(NULL, 0, NULL, c, plan);
		ha_bal_plan_free(plan);
	}
	p->strategy = HA_BAL_STRATEGY_BALANCE;
	if (ha_balance_place(c, p, HA_BAL_OP_RECOVER, NULL, &plan) == 0) {
		null_step(NULL, 0, NULL, c, plan);
		ha_bal_plan_free(plan);
	}
	if (c->n_nodes && ha_balance_place(c, p, HA_BAL_OP_EVACUATE, c->nodes[0].name,
					   &plan) == 0) {
		null_step(NULL, 0, NULL, c, plan);
		ha_bal_plan_free(plan);
	}
	for (uint32_t g = 0; g < c->n_guests && g < 8; g++) {
		if (c->guests[g].node < 0 &&
		    ha_balance_place(c, p, HA_BAL_OP_CREATE, c->guests[g].name, &plan) == 0) {
			null_step(NULL, 0, NULL, c, plan);
			ha_bal_plan_free(plan);
		}
	}
	ha_balance_score(c, p, &s);
	if (sim->n_cmds <= ENGINE_MAX_CMDS) {
		ha_bal_sim_run(sim, p, "fuzz.sim", null_step, NULL, NULL, err, sizeof(err));
	}
	ha_bal_policy_free(p);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct ha_bal_sim *sim = NULL, *again = NULL;
	char err[512] = "";
	char *buf = NULL;
	size_t len = 0;
	FILE *f;

	if (ha_bal_sim_parse("fuzz.sim", (const char *)data, size, &sim, err,
			     sizeof(err)) < 0) {
		if (strncmp(err, "fuzz.sim:", 9) != 0) {
			abort();
		}
		return 0;
	}
	f = open_memstream(&buf, &len);
	if (f == NULL) {
		ha_bal_sim_free(sim);
		return 0;
	}
	ha_bal_sim_write(f, sim->cluster);
	fclose(f);
	if (ha_bal_sim_parse("written", buf, len, &again, err, sizeof(err)) != 0) {
		fprintf(stderr, "written cluster does not parse: %s\n%s", err, buf);
		abort();
	}
	if (again->cluster->n_nodes != sim->cluster->n_nodes ||
	    again->cluster->n_guests != sim->cluster->n_guests) {
		abort();
	}
	for (uint32_t g = 0; g < sim->cluster->n_guests; g++) {
		const struct ha_bal_guest *a = &sim->cluster->guests[g];
		const struct ha_bal_guest *b = &again->cluster->guests[g];

		if (a->node != b->node || a->mem_mib != b->mem_mib ||
		    a->cpu_milli != b->cpu_milli || a->n_aff != b->n_aff ||
		    a->n_anti != b->n_anti || a->ha != b->ha) {
			abort();
		}
	}
	ha_bal_sim_free(again);
	free(buf);
	if (sim->cluster->n_nodes <= ENGINE_MAX_NODES &&
	    sim->cluster->n_guests <= ENGINE_MAX_GUESTS) {
		engine(sim);
	}
	ha_bal_sim_free(sim);
	return 0;
}
