/*
 * cmd_balance.c - `hactl simulate` and `hactl check` for policies: the
 * balancing engine offline, on a described cluster (docs/balancing.md).
 */
#include <errno.h>
#include <inttypes.h>
#include <json-c/json.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmd_balance.h"

#define ERRLEN 512

struct json_object *hactl_balance_score_json(const struct ha_bal_score *s)
{
	struct json_object *o = json_object_new_object();

	if (o == NULL) {
		return NULL;
	}
	json_object_object_add(o, "value", json_object_new_double(s->value));
	json_object_object_add(o, "imbalance", json_object_new_double(s->imbalance));
	json_object_object_add(o, "cpu_sd", json_object_new_double(s->cpu_sd));
	json_object_object_add(o, "mem_sd", json_object_new_double(s->mem_sd));
	json_object_object_add(o, "vcpu_sd", json_object_new_double(s->vcpu_sd));
	json_object_object_add(o, "cpu_max", json_object_new_double(s->cpu_max));
	json_object_object_add(o, "mem_max", json_object_new_double(s->mem_max));
	json_object_object_add(o, "nodes_eligible", json_object_new_int64(s->nodes_eligible));
	json_object_object_add(o, "nodes_used", json_object_new_int64(s->nodes_used));
	json_object_object_add(o, "overloaded", json_object_new_int64(s->overloaded));
	json_object_object_add(o, "affinity_split", json_object_new_int64(s->affinity_split));
	json_object_object_add(o, "anti_affinity_conflicts",
			       json_object_new_int64(s->anti_affinity_conflicts));
	json_object_object_add(o, "on_maintenance", json_object_new_int64(s->on_maintenance));
	json_object_object_add(o, "stranded", json_object_new_int64(s->stranded));
	json_object_object_add(o, "n1_failing", json_object_new_int64(s->n1_failing));
	return o;
}

static struct json_object *node_json(const struct ha_bal_cluster *c, int32_t n)
{
	if (n < 0 || (uint32_t)n >= c->n_nodes) {
		return NULL; /* JSON null */
	}
	return json_object_new_string(c->nodes[n].name);
}

struct json_object *hactl_balance_plan_json(const struct ha_bal_cluster *c,
					    const struct ha_bal_plan *plan)
{
	struct json_object *o = json_object_new_object();
	struct json_object *acts = json_object_new_array();

	if (o == NULL || acts == NULL) {
		json_object_put(o);
		json_object_put(acts);
		return NULL;
	}
	json_object_object_add(o, "op", json_object_new_string(ha_bal_op_str(plan->op)));
	json_object_object_add(o, "strategy",
			       json_object_new_string(ha_bal_strategy_str(plan->strategy)));
	json_object_object_add(o, "before", hactl_balance_score_json(&plan->before));
	json_object_object_add(o, "after", hactl_balance_score_json(&plan->after));
	json_object_object_add(o, "triggered", json_object_new_boolean(plan->triggered));
	json_object_object_add(o, "held", json_object_new_boolean(plan->held));
	json_object_object_add(o, "held_moves", json_object_new_int64(plan->held_moves));
	json_object_object_add(o, "rounds", json_object_new_int64(plan->rounds));
	json_object_object_add(o, "moves", json_object_new_int64(plan->n_moves));
	json_object_object_add(o, "placed", json_object_new_int64(plan->n_places));
	json_object_object_add(o, "unplaced", json_object_new_int64(plan->n_unplaced));
	json_object_object_add(o, "waves", json_object_new_int64(plan->waves));
	json_object_object_add(o, "copy_mib", json_object_new_int64((int64_t)plan->copy_mib));
	json_object_object_add(o, "skipped_hold", json_object_new_int64(plan->skipped_hold));
	json_object_object_add(o, "skipped_hot", json_object_new_int64(plan->skipped_hot));
	json_object_object_add(o, "budget_hit", json_object_new_boolean(plan->budget_hit));
	json_object_object_add(o, "note", json_object_new_string(plan->note));
	for (uint32_t i = 0; i < plan->n_actions; i++) {
		const struct ha_bal_action *a = &plan->actions[i];
		struct json_object *x = json_object_new_object();

		if (x == NULL) {
			continue;
		}
		json_object_object_add(x, "kind",
				       json_object_new_string(ha_bal_action_kind_str(a->kind)));
		json_object_object_add(x, "guest",
				       json_object_new_string(a->guest < c->n_guests ?
							      c->guests[a->guest].name : "?"));
		json_object_object_add(x, "from", node_json(c, a->from));
		json_object_object_add(x, "to", node_json(c, a->to));
		json_object_object_add(x, "reason",
				       json_object_new_string(ha_bal_reason_str(a->reason)));
		json_object_object_add(x, "wave", json_object_new_int64(a->wave));
		json_object_object_add(x, "copy_mib", json_object_new_int64((int64_t)a->copy_mib));
		json_object_object_add(x, "gain", json_object_new_double(a->gain));
		if (a->detail[0]) {
			json_object_object_add(x, "detail", json_object_new_string(a->detail));
		}
		json_object_array_add(acts, x);
	}
	json_object_object_add(o, "actions", acts);
	return o;
}

int hactl_cmd_check_policy(const char *path, int json)
{
	struct ha_bal_policy *p = NULL;
	char err[ERRLEN];
	int rc = ha_bal_policy_load(path, &p, err, sizeof(err));

	if (json) {
		struct json_object *o = json_object_new_object();

		json_object_object_add(o, "path", json_object_new_string(path));
		json_object_object_add(o, "ok", json_object_new_boolean(rc == 0));
		if (rc < 0) {
			json_object_object_add(o, "error", json_object_new_string(err));
		}
		printf("%s\n", json_object_to_json_string_ext(o, JSON_C_TO_STRING_PRETTY));
		json_object_put(o);
	}
	if (rc < 0) {
		fprintf(stderr, "%s\n", err);
		return 1;
	}
	if (!json) {
		printf("%s: ok\n", path);
	}
	ha_bal_policy_free(p);
	return 0;
}

/* ------------------------------------------------------------------ */

struct sim_out {
	struct json_object *steps;
	bool quiet;
};

static void step_json(void *user, uint32_t step, const struct ha_bal_sim_cmd *cmd,
		      const struct ha_bal_cluster *c, const struct ha_bal_plan *plan)
{
	struct sim_out *so = user;
	struct json_object *o = json_object_new_object();

	if (o == NULL) {
		return;
	}
	json_object_object_add(o, "step", json_object_new_int64(step));
	json_object_object_add(o, "line", json_object_new_int64(cmd->line));
	json_object_object_add(o, "run", json_object_new_string(ha_bal_op_str(cmd->op)));
	json_object_object_add(o, "arg", json_object_new_string(cmd->arg));
	json_object_object_add(o, "plan", hactl_balance_plan_json(c, plan));
	json_object_array_add(so->steps, o);
}

static void step_quiet(void *user, uint32_t step, const struct ha_bal_sim_cmd *cmd,
		       const struct ha_bal_cluster *c, const struct ha_bal_plan *plan)
{
	(void)user;
	(void)c;
	printf("== %u: run %s%s%s\n", step, ha_bal_op_str(cmd->op), cmd->arg[0] ? " " : "",
	       cmd->arg);
	ha_bal_score_print(stdout, "before", &plan->before);
	ha_bal_score_print(stdout, "after", &plan->after);
	printf("score %.2f -> %.2f; moves %u in %u waves, copy %" PRIu64 " MiB; placed %u; "
	       "unplaced %u\n\n",
	       plan->before.value, plan->after.value, plan->n_moves, plan->waves,
	       plan->copy_mib, plan->n_places, plan->n_unplaced);
}

static void usage(void)
{
	fprintf(stderr, "usage: hactl simulate FILE [--policy PATH] [--save FILE] "
			"[--quiet] [--timing]\n");
}

/* The policy: --policy, else the file's "policy" line (relative to it),
 * else the defaults. */
static int sim_policy(const char *file, const struct ha_bal_sim *sim,
		      const char *opt, struct ha_bal_policy **p, char *err, size_t errlen)
{
	char path[PATH_MAX];

	if (opt) {
		return ha_bal_policy_load(opt, p, err, errlen);
	}
	if (sim->policy_file[0] == 0) {
		*p = ha_bal_policy_new();
		if (*p == NULL) {
			snprintf(err, errlen, "out of memory");
			return -ENOMEM;
		}
		return 0;
	}
	if (sim->policy_file[0] == '/') {
		snprintf(path, sizeof(path), "%s", sim->policy_file);
	} else {
		char dir[PATH_MAX];

		snprintf(dir, sizeof(dir), "%s", file);
		snprintf(path, sizeof(path), "%s/%s", dirname(dir), sim->policy_file);
	}
	return ha_bal_policy_load(path, p, err, errlen);
}

int hactl_cmd_simulate(int argc, char **argv, int json)
{
	const char *file = NULL, *policy = NULL, *save = NULL;
	bool quiet = false, timing = false;
	struct ha_bal_policy *p = NULL;
	struct ha_bal_sim *sim = NULL;
	struct sim_out so = { 0 };
	char err[ERRLEN];
	uint64_t ns = 0;
	int rc, status = 1;

	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--policy") == 0 && i + 1 < argc) {
			policy = argv[++i];
		} else if (strcmp(argv[i], "--save") == 0 && i + 1 < argc) {
			save = argv[++i];
		} else if (strcmp(argv[i], "--quiet") == 0) {
			quiet = true;
		} else if (strcmp(argv[i], "--timing") == 0) {
			timing = true;
		} else if (strcmp(argv[i], "--json") == 0) {
			json = 1;
		} else if (argv[i][0] == '-' || file) {
			usage();
			return 2;
		} else {
			file = argv[i];
		}
	}
	if (file == NULL) {
		usage();
		return 2;
	}
	rc = ha_bal_sim_load(file, &sim, err, sizeof(err));
	if (rc == 0) {
		rc = sim_policy(file, sim, policy, &p, err, sizeof(err));
	}
	if (rc < 0) {
		fprintf(stderr, "%s\n", err);
		goto out;
	}
	if (json) {
		so.steps = json_object_new_array();
		rc = ha_bal_sim_run(sim, p, file, step_json, &so, &ns, err, sizeof(err));
	} else {
		rc = ha_bal_sim_run(sim, p, file, quiet ? step_quiet : ha_bal_sim_print_step,
				    quiet ? NULL : (void *)stdout, &ns, err, sizeof(err));
	}
	if (rc < 0) {
		fprintf(stderr, "%s\n", err);
		goto out;
	}
	if (json) {
		struct json_object *o = json_object_new_object();

		json_object_object_add(o, "file", json_object_new_string(file));
		json_object_object_add(o, "nodes", json_object_new_int64(sim->cluster->n_nodes));
		json_object_object_add(o, "guests", json_object_new_int64(sim->cluster->n_guests));
		json_object_object_add(o, "steps", so.steps);
		so.steps = NULL;
		if (timing) {
			json_object_object_add(o, "plan_cpu_ms",
					       json_object_new_double((double)ns / 1e6));
		}
		printf("%s\n", json_object_to_json_string_ext(o, JSON_C_TO_STRING_PRETTY));
		json_object_put(o);
	}
	if (timing) {
		fprintf(stderr, "planning time: %.3f ms CPU (%u nodes, %u guests)\n",
			(double)ns / 1e6, sim->cluster->n_nodes, sim->cluster->n_guests);
	}
	if (save) {
		FILE *f = fopen(save, "w");

		if (f == NULL || ha_bal_sim_write(f, sim->cluster) < 0) {
			fprintf(stderr, "%s: %s\n", save, strerror(errno));
			if (f) {
				fclose(f);
			}
			goto out;
		}
		if (fclose(f) != 0) {
			fprintf(stderr, "%s: %s\n", save, strerror(errno));
			goto out;
		}
	}
	status = 0;
out:
	json_object_put(so.steps);
	ha_bal_policy_free(p);
	ha_bal_sim_free(sim);
	return status;
}
