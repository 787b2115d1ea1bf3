/*
 * cmd_migrate.c - hactl migrate, migrate --cancel, evacuate, balance.
 */
#include <errno.h>
#include <inttypes.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "cmd_balance.h"
#include "guestdef.h"
#include "hactl_states.h"
#include "util.h"

struct mopts {
	const char *name;
	const char *to;
	const char *mode;
	const char *transport;
	uint32_t max_downtime_ms;
	uint64_t bandwidth_bps;
	bool cancel;
	bool no_wait;
	uint32_t timeout_s;
	uint32_t parallel;      /* evacuate, balance: migrations at once */
	bool dry_run;           /* balance */
	const char *save;       /* balance: write the engine's input here */
	bool evacuate;          /* moves of hactl evacuate: remembered as home */
};

static const Hactl__NodeStatus *node_named(const Hactl__StatusReply *s, const char *name)
{
	for (size_t i = 0; i < s->n_nodes; i++) {
		if (strcmp(s->nodes[i]->name, name) == 0) {
			return s->nodes[i];
		}
	}
	return NULL;
}

static int send_change(struct cli *cli, Hactl__Change *ch)
{
	Hactl__ChangeRequest req = HACTL__CHANGE_REQUEST__INIT;
	ProtobufCMessage *reply = NULL;
	int ex;

	req.change = ch;
	ex = cli_call(cli, HA_MSG_CHANGE_REQUEST, &req.base, HA_MSG_RESULT, &reply);
	ha_env_msg_free(reply);
	return ex;
}

static int start_migration(struct cli *cli, const struct mopts *o, uint64_t *id)
{
	Hactl__Change ch = HACTL__CHANGE__INIT;
	Hactl__MigrateStartChange ms = HACTL__MIGRATE_START_CHANGE__INIT;
	Hactl__MigrationOptions mo = HACTL__MIGRATION_OPTIONS__INIT;
	Hactl__StatusReply *s = NULL;
	const Hactl__GuestRecord *g;
	int ex;

	mo.mode = (char *)(o->mode ? o->mode : "auto");
	/* unset: each agent's [migration] transport */
	mo.transport = (char *)o->transport;
	mo.has_max_downtime_ms = o->max_downtime_ms != 0;
	mo.max_downtime_ms = o->max_downtime_ms;
	mo.has_bandwidth_bps = o->bandwidth_bps != 0;
	mo.bandwidth_bps = o->bandwidth_bps;
	ms.guest = (char *)o->name;
	ms.node = (char *)o->to;
	ms.options = &mo;
	ms.has_evacuate = o->evacuate;
	ms.evacuate = o->evacuate;
	ch.kind_case = HACTL__CHANGE__KIND_MIGRATE_START;
	ch.migrate_start = &ms;
	ex = send_change(cli, &ch);
	if (ex != EX_OK) {
		return ex;
	}
	ex = cli_get_status(cli, NULL, &s);
	if (ex != EX_OK) {
		return ex;
	}
	g = cli_find_guest(s, o->name);
	*id = g && g->migration ? g->migration->id : 0;
	ha_env_msg_free(&s->base);
	return EX_OK;
}

static json_object *report_json(const Hactl__StatusReply *s, const Hactl__GuestRecord *g)
{
	const Hactl__Migration *m = g->migration;
	json_object *o = json_object_new_object();

	json_object_object_add(o, "name", json_object_new_string(g->name));
	json_object_object_add(o, "id", json_object_new_int64((int64_t)m->id));
	json_object_object_add(o, "state", json_object_new_string(m->state));
	json_object_object_add(o, "source", json_object_new_string(cli_node_name(s, m->source)));
	json_object_object_add(o, "destination", json_object_new_string(cli_node_name(s, m->destination)));
	json_object_object_add(o, "node", json_object_new_string(cli_node_name(s, g->owner)));
	json_object_object_add(o, "mode", json_object_new_string(m->mode ? m->mode : ""));
	json_object_object_add(o, "total_ms", json_object_new_int64((int64_t)(m->ended_ms > m->started_ms ?
							m->ended_ms - m->started_ms : m->total_ms)));
	json_object_object_add(o, "transfer_ms", json_object_new_int64((int64_t)m->total_ms));
	json_object_object_add(o, "downtime_ms", json_object_new_int64(m->downtime_ms));
	json_object_object_add(o, "bytes", json_object_new_int64((int64_t)m->transferred_bytes));
	json_object_object_add(o, "rounds", json_object_new_int64(m->rounds));
	json_object_object_add(o, "reason", json_object_new_string(m->reason ? m->reason : ""));
	/* the migration stream as the source saw it */
	json_object_object_add(o, "transport", json_object_new_string(m->transport ? m->transport : ""));
	json_object_object_add(o, "cipher", json_object_new_string(m->cipher ? m->cipher : ""));
	/* where the source connected: the destination's migration address
	 * ([migration] network), else its cluster address */
	json_object_object_add(o, "address", json_object_new_string(m->dst_address ? m->dst_address : ""));
	json_object_object_add(o, "stream_sent", json_object_new_int64((int64_t)m->stream_sent));
	json_object_object_add(o, "stream_received",
			       json_object_new_int64((int64_t)m->stream_received));
	return o;
}

/*
 * Waits for the end of transaction @id, showing progress: on a terminal one
 * line redrawn, otherwise (a log, a pipe) one line per pre-copy round.
 */
static int wait_migration(struct cli *cli, const char *name, uint64_t id, uint32_t timeout_s)
{
	uint64_t deadline = ha_mono_ms() + timeout_s * 1000ull;
	bool tty = isatty(1) && !cli->json && !cli->batch;
	bool lines = !tty && !cli->json && !cli->batch;
	uint32_t last_round = UINT32_MAX;

	for (;;) {
		Hactl__StatusReply *s = NULL;
		const Hactl__GuestRecord *g;
		const Hactl__Migration *m;
		int ex = cli_get_status(cli, NULL, &s);

		if (ex != EX_OK) {
			return ex;
		}
		g = cli_find_guest(s, name);
		m = g ? g->migration : NULL;
		if (m == NULL || m->id != id) {
			fprintf(stderr, "hactl: migration %" PRIu64 " of %s vanished\n", id, name);
			ha_env_msg_free(&s->base);
			return EX_FAIL;
		}
		int state = ha_migration_state_from_str(m->state);

		if (state == HACTL__MIGRATION_STATE__MIGRATION_TRANSFERRING) {
			if (tty) {
				uint64_t total = m->transferred_bytes + m->remaining_bytes;
				int pct = total ? (int)(m->transferred_bytes * 100 / total) : 0;

				printf("\r%s -> %s  [%-30.*s] %3d%%  %" PRIu64 " MiB  round %u  dirty %" PRIu64
				       " MB/s  expected downtime %u ms   ",
				       cli_node_name(s, m->source), cli_node_name(s, m->destination),
				       pct * 30 / 100, "##############################", pct,
				       m->transferred_bytes >> 20, m->rounds, m->dirty_rate_bps / 1000000,
				       m->expected_downtime_ms);
				fflush(stdout);
			} else if (lines && m->rounds != last_round) {
				last_round = m->rounds;
				printf("%s -> %s: round %u, %" PRIu64 " MiB sent, %" PRIu64
				       " MiB to go, dirty %" PRIu64 " MB/s, expected downtime %u ms\n",
				       cli_node_name(s, m->source), cli_node_name(s, m->destination),
				       m->rounds, m->transferred_bytes >> 20, m->remaining_bytes >> 20,
				       m->dirty_rate_bps / 1000000, m->expected_downtime_ms);
				fflush(stdout);
			}
		} else if (state == HACTL__MIGRATION_STATE__MIGRATION_ABORTED) {
			if (tty) {
				printf("\n");
			}
			if (cli->json && !cli->batch) {
				cli_json_print(report_json(s, g));
			}
			fprintf(stderr, "hactl: migration of %s aborted: %s; it runs on %s\n", name,
				m->reason ? m->reason : "", cli_node_name(s, g->owner));
			ha_env_msg_free(&s->base);
			return EX_FAIL;
		} else if (ha_guest_state_from_str(g->state) == HACTL__GUEST_STATE__GUEST_RUNNING &&
			   g->owner == m->destination &&
			   m->downtime_ms &&
			   (!g->has_state_generation || g->state_generation == g->generation)) {
			/* "running" as the destination reported it under the new
			 * generation, not the source's last word: the next
			 * command finds the guest running there. */
			if (tty) {
				printf("\n");
			}
			if (cli->batch) {
				/* the caller reports */
			} else if (cli->json) {
				cli_json_print(report_json(s, g));
			} else {
				printf("%s migrated %s -> %s: total %" PRIu64 " ms, downtime %u ms, %" PRIu64
				       " bytes, %u rounds (%s); stream %" PRIu64 " bytes sent, %"
				       PRIu64 " received, %s\n", name, cli_node_name(s, m->source),
				       cli_node_name(s, m->destination),
				       m->ended_ms > m->started_ms ? m->ended_ms - m->started_ms : m->total_ms,
				       m->downtime_ms, m->transferred_bytes, m->rounds,
				       m->mode && m->mode[0] ? m->mode : "auto", m->stream_sent,
				       m->stream_received, m->cipher && m->cipher[0] ? m->cipher : "?");
			}
			ha_env_msg_free(&s->base);
			return EX_OK;
		}
		ha_env_msg_free(&s->base);
		if (ha_mono_ms() > deadline) {
			fprintf(stderr, "hactl: migration of %s not finished within %u s\n", name, timeout_s);
			return EX_FAIL;
		}
		usleep(100 * 1000);
	}
}

static int parse(int argc, char **argv, struct mopts *o, bool evacuate)
{
	memset(o, 0, sizeof(*o));
	o->timeout_s = 600;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		uint64_t v;

		if (a[0] != '-') {
			if (o->name) {
				return cli_usage_error("unexpected argument '%s'", a);
			}
			o->name = a;
		} else if (strcmp(a, "--cancel") == 0 && !evacuate) {
			o->cancel = true;
		} else if (strcmp(a, "--no-wait") == 0) {
			o->no_wait = true;
		} else if (i + 1 >= argc) {
			return cli_usage_error("option '%s' needs a value", a);
		} else if (strcmp(a, "--to") == 0 && !evacuate) {
			o->to = argv[++i];
		} else if (strcmp(a, "--mode") == 0) {
			o->mode = argv[++i];
			if (strcmp(o->mode, "postcopy") == 0) {
				/* both drivers refuse it (docs/migration.md) */
				return cli_usage_error("--mode: %s is not offered: the source "
						       "must stay whole until the commit, so that a "
						       "failed migration resumes it; use auto, precopy "
						       "or stopcopy", o->mode);
			}
			if (strcmp(o->mode, "auto") && strcmp(o->mode, "precopy") &&
			    strcmp(o->mode, "stopcopy")) {
				return cli_usage_error("--mode: '%s' is not auto, precopy or stopcopy", o->mode);
			}
		} else if (strcmp(a, "--transport") == 0) {
			o->transport = argv[++i];
			if (strcmp(o->transport, "tcp") && strcmp(o->transport, "rdma")) {
				return cli_usage_error("--transport: '%s' is not tcp or rdma", o->transport);
			}
		} else if (strcmp(a, "--max-downtime") == 0) {
			if (ha_parse_u64(argv[++i], 1, 600000, &v) < 0) {
				return cli_usage_error("--max-downtime: '%s' is not milliseconds in 1..600000", argv[i]);
			}
			o->max_downtime_ms = (uint32_t)v;
		} else if (strcmp(a, "--bandwidth") == 0) {
			if (ha_parse_u64(argv[++i], 1, 100000, &v) < 0) {
				return cli_usage_error("--bandwidth: '%s' is not MB/s in 1..100000", argv[i]);
			}
			o->bandwidth_bps = v * 1000000;
		} else if (strcmp(a, "--parallel") == 0 && evacuate) {
			if (ha_parse_u64(argv[++i], 1, 64, &v) < 0) {
				return cli_usage_error("--parallel: '%s' is not in 1..64", argv[i]);
			}
			o->parallel = (uint32_t)v;
		} else if (strcmp(a, "--timeout") == 0) {
			if (ha_parse_u64(argv[++i], 1, 86400, &v) < 0) {
				return cli_usage_error("--timeout: '%s' is not seconds", argv[i]);
			}
			o->timeout_s = (uint32_t)v;
		} else {
			return cli_usage_error("unknown option '%s'", a);
		}
	}
	if (o->name == NULL) {
		return cli_usage_error("%s needs a name", argv[0]);
	}
	return EX_OK;
}

/* Refuses what cannot work before anything changes. */
static int precheck(struct cli *cli, const struct mopts *o)
{
	Hactl__StatusReply *s = NULL;
	const Hactl__GuestRecord *g;
	const Hactl__NodeStatus *src, *dst;
	struct ha_guest_def def;
	char err[256];
	int ex = cli_get_status(cli, NULL, &s);

	if (ex != EX_OK) {
		return ex;
	}
	g = cli_find_guest(s, o->name);
	dst = node_named(s, o->to);
	if (g == NULL || dst == NULL) {
		fprintf(stderr, "hactl: unknown %s '%s'\n", g ? "node" : "guest", g ? o->to : o->name);
		ha_env_msg_free(&s->base);
		return EX_UNKNOWN;
	}
	src = NULL;
	for (size_t i = 0; i < s->n_nodes; i++) {
		if (s->nodes[i]->id == g->owner) {
			src = s->nodes[i];
		}
	}
	if (o->transport && strcmp(o->transport, "rdma") == 0 &&
	    ((src && src->facts && src->facts->n_rdma_devices == 0) ||
	     (dst->facts && dst->facts->n_rdma_devices == 0))) {
		fprintf(stderr, "hactl: --transport rdma: no RDMA device on %s\n",
			dst->facts && dst->facts->n_rdma_devices == 0 ? dst->name : src->name);
		ha_env_msg_free(&s->base);
		return EX_FAIL;
	}
	if (o->max_downtime_ms && g->definition.data &&
	    ha_guestdef_parse((const char *)g->definition.data, g->definition.len, g->name, &def,
			      err, sizeof(err)) == 0 && strcmp(def.type, "container") == 0) {
		/* Without soft-dirty a container moves by stop-and-copy: the
		 * downtime is the whole dump, copy and restore of its memory. */
		uint64_t mem = g->mem_bytes ? g->mem_bytes : def.mem_kib * 1024;
		uint64_t bw = o->bandwidth_bps ? o->bandwidth_bps : 400000000ull;
		uint32_t expect = (uint32_t)(300 + mem * 1000 / bw);
		bool precopy = src && src->facts && src->facts->criu_mem_dirty_track;

		if (!precopy && expect > o->max_downtime_ms) {
			fprintf(stderr, "hactl: refused: %s would be down about %u ms by stop-and-copy "
				"(%" PRIu64 " MiB in use, no pre-copy on %s); --max-downtime is %u ms. "
				"Use a larger --max-downtime.\n", g->name, expect,
				mem >> 20, src ? src->name : "?", o->max_downtime_ms);
			ha_env_msg_free(&s->base);
			return EX_FAIL;
		}
	}
	ha_env_msg_free(&s->base);
	return EX_OK;
}

int cli_cmd_migrate(struct cli *cli, int argc, char **argv)
{
	struct mopts o;
	uint64_t id = 0;
	int ex = parse(argc, argv, &o, false);

	if (ex != EX_OK) {
		return ex;
	}
	if (o.cancel) {
		Hactl__Change ch = HACTL__CHANGE__INIT;
		Hactl__MigrateEndChange me = HACTL__MIGRATE_END_CHANGE__INIT;

		me.guest = (char *)o.name;
		me.id = 0;
		me.commit = false;
		me.reason = "cancelled by the operator";
		ch.kind_case = HACTL__CHANGE__KIND_MIGRATE_END;
		ch.migrate_end = &me;
		ex = send_change(cli, &ch);
		if (ex == EX_OK && !cli->json) {
			printf("migration of %s cancelled\n", o.name);
		}
		return ex;
	}
	if (o.to == NULL) {
		return cli_usage_error("migrate needs --to NODE (or --cancel)%s", "");
	}
	ex = precheck(cli, &o);
	if (ex != EX_OK) {
		return ex;
	}
	ex = start_migration(cli, &o, &id);
	if (ex != EX_OK || o.no_wait) {
		return ex;
	}
	return wait_migration(cli, o.name, id, o.timeout_s);
}

/* ---- the balancing engine on the live cluster (docs/balancing.md) ---- */

/* What the local coordinator gives the engine: the cluster and its policy. */
struct engine_input {
	struct ha_bal_sim *sim;       /* sim->cluster: the cluster now */
	struct ha_bal_policy *policy; /* the policy in force there */
	Hactl__BalanceReply *reply;
};

static void engine_input_free(struct engine_input *in)
{
	ha_bal_sim_free(in->sim);
	ha_bal_policy_free(in->policy);
	ha_env_msg_free(in->reply ? &in->reply->base : NULL);
	memset(in, 0, sizeof(*in));
}

static int engine_input_get(struct cli *cli, struct engine_input *in)
{
	Hactl__BalanceRequest req = HACTL__BALANCE_REQUEST__INIT;
	ProtobufCMessage *reply = NULL;
	char err[512];
	int ex;

	memset(in, 0, sizeof(*in));
	ex = cli_call(cli, HA_MSG_BALANCE_REQUEST, &req.base, HA_MSG_BALANCE_REPLY, &reply);
	if (ex != EX_OK) {
		ha_env_msg_free(reply);
		return ex;
	}
	in->reply = (Hactl__BalanceReply *)reply;
	in->policy = ha_bal_policy_new();
	if (in->policy == NULL ||
	    ha_bal_sim_parse("cluster", in->reply->cluster, strlen(in->reply->cluster), &in->sim,
			     err, sizeof(err)) < 0 ||
	    ha_bal_policy_parse(in->policy, "policy", in->reply->policy,
				strlen(in->reply->policy), err, sizeof(err)) < 0) {
		/* the coordinator wrote both with the same library */
		fprintf(stderr, "hactl: the coordinator's balancing input is unreadable: %s\n", err);
		engine_input_free(in);
		return EX_FAIL;
	}
	if (in->reply->policy_error && in->reply->policy_error[0]) {
		fprintf(stderr, "hactl: warning: the policy files were refused, the old policy "
			"is in force: %s\n", in->reply->policy_error);
	}
	return EX_OK;
}

/*
 * Runs the migrations of @plan wave by wave, at most @parallel at once
 * within a wave. Counts moved and failed guests; unplaced ones fail.
 */
static void run_plan(struct cli *cli, const struct ha_bal_cluster *c,
		     const struct ha_bal_plan *plan, const struct mopts *o,
		     unsigned *moved, unsigned *failed)
{
	for (uint32_t i = 0; i < plan->n_actions; i++) {
		const struct ha_bal_action *a = &plan->actions[i];

		if (a->kind == HA_BAL_ACT_UNPLACED) {
			fprintf(stderr, "hactl: %s stays: %s\n", c->guests[a->guest].name,
				a->detail[0] ? a->detail : ha_bal_reason_str(a->reason));
			(*failed)++;
		}
	}
	cli->batch = cli->json;
	for (uint32_t wave = 1; wave <= plan->waves; wave++) {
		uint32_t idx[64];
		size_t n = 0;

		for (uint32_t i = 0; i <= plan->n_actions; i++) {
			const struct ha_bal_action *a = i < plan->n_actions ? &plan->actions[i] : NULL;
			uint64_t ids[64];

			if (a && a->kind == HA_BAL_ACT_MIGRATE && a->wave == wave) {
				idx[n++] = i;
			}
			if (n == 0 || (a && n < o->parallel && n < HA_ARRAY_SIZE(idx))) {
				continue;
			}
			/* a batch: start them all, then wait for each */
			for (size_t k = 0; k < n; k++) {
				const struct ha_bal_action *b = &plan->actions[idx[k]];
				struct mopts mo = *o;

				mo.name = c->guests[b->guest].name;
				mo.to = c->nodes[b->to].name;
				ids[k] = 0;
				if (!cli->json) {
					printf("moving %s: %s -> %s (%s)\n", mo.name,
					       c->nodes[b->from].name, mo.to,
					       ha_bal_reason_str(b->reason));
				}
				if (start_migration(cli, &mo, &ids[k]) != EX_OK) {
					(*failed)++;
				}
			}
			for (size_t k = 0; k < n; k++) {
				const char *name = c->guests[plan->actions[idx[k]].guest].name;

				if (ids[k] == 0) {
					continue;
				}
				if (wait_migration(cli, name, ids[k], o->timeout_s) == EX_OK) {
					(*moved)++;
				} else {
					(*failed)++;
				}
			}
			n = 0;
		}
	}
	cli->batch = false;
}

int cli_cmd_evacuate(struct cli *cli, int argc, char **argv)
{
	struct mopts o;
	Hactl__StatusReply *s = NULL;
	const Hactl__NodeStatus *node;
	struct engine_input in;
	struct ha_bal_plan *plan = NULL;
	unsigned moved = 0, failed = 0;
	int ex = parse(argc, argv, &o, true), rc;

	if (ex != EX_OK) {
		return ex;
	}
	if (o.parallel == 0) {
		o.parallel = 1;
	}
	ex = cli_get_status(cli, NULL, &s);
	if (ex != EX_OK) {
		return ex;
	}
	node = node_named(s, o.name);
	if (node == NULL) {
		fprintf(stderr, "hactl: unknown node '%s'\n", o.name);
		ha_env_msg_free(&s->base);
		return EX_UNKNOWN;
	}
	if (!node->maintenance) {
		Hactl__Change ch = HACTL__CHANGE__INIT;
		Hactl__MaintenanceChange mc = HACTL__MAINTENANCE_CHANGE__INIT;

		mc.node = (char *)o.name;
		mc.on = true;
		ch.kind_case = HACTL__CHANGE__KIND_MAINTENANCE;
		ch.maintenance = &mc;
		ex = send_change(cli, &ch);
		if (ex != EX_OK) {
			ha_env_msg_free(&s->base);
			return ex;
		}
	}
	ha_env_msg_free(&s->base);
	/* the engine places every guest of the node, as the leader would */
	ex = engine_input_get(cli, &in);
	if (ex != EX_OK) {
		return ex;
	}
	rc = ha_balance_place(in.sim->cluster, in.policy, HA_BAL_OP_EVACUATE, o.name, &plan);
	if (rc < 0) {
		fprintf(stderr, "hactl: cannot plan the evacuation of %s: %s\n", o.name,
			strerror(-rc));
		engine_input_free(&in);
		return EX_FAIL;
	}
	if (!cli->json) {
		printf("%s in maintenance; moving %u guests, %u at a time\n", o.name,
		       plan->n_moves, o.parallel);
	}
	o.evacuate = true;
	run_plan(cli, in.sim->cluster, plan, &o, &moved, &failed);
	if (cli->json) {
		json_object *j = json_object_new_object();

		json_object_object_add(j, "node", json_object_new_string(o.name));
		json_object_object_add(j, "moved", json_object_new_int64(moved));
		json_object_object_add(j, "failed", json_object_new_int64(failed));
		json_object_object_add(j, "plan", hactl_balance_plan_json(in.sim->cluster, plan));
		cli_json_print(j);
	} else {
		printf("%s evacuated: %u moved, %u failed; it stays in maintenance until "
		       "'hactl maintenance off %s'\n", o.name, moved, failed, o.name);
	}
	ha_bal_plan_free(plan);
	engine_input_free(&in);
	return failed ? EX_FAIL : EX_OK;
}

/* FILE holds the cluster, FILE.policy the policy, both as the engine is
 * about to see them: `hactl simulate FILE` plans exactly as here. */
static int save_input(const char *path, const struct engine_input *in)
{
	char pol[PATH_MAX], base[PATH_MAX];
	FILE *f;

	if (snprintf(pol, sizeof(pol), "%s.policy", path) >= (int)sizeof(pol)) {
		fprintf(stderr, "hactl: --save: path too long\n");
		return EX_USAGE;
	}
	snprintf(base, sizeof(base), "%s", pol);
	f = fopen(pol, "w");
	if (f != NULL) {
		ha_bal_policy_print(in->policy, f);
	}
	if (f == NULL || fclose(f) != 0) {
		fprintf(stderr, "hactl: %s: %s\n", pol, strerror(errno));
		return EX_FAIL;
	}
	f = fopen(path, "w");
	if (f == NULL) {
		fprintf(stderr, "hactl: %s: %s\n", path, strerror(errno));
		return EX_FAIL;
	}
	fprintf(f, "# the cluster as the balancing engine saw it; replay with\n"
		"# hactl simulate %s\npolicy %s\n", path, basename(base));
	ha_bal_sim_write(f, in->sim->cluster);
	fprintf(f, "run rebalance\n");
	if (fclose(f) != 0) {
		fprintf(stderr, "hactl: %s: %s\n", path, strerror(errno));
		return EX_FAIL;
	}
	return EX_OK;
}

int cli_cmd_balance(struct cli *cli, int argc, char **argv)
{
	struct mopts o;
	struct engine_input in;
	struct ha_bal_plan *plan = NULL;
	unsigned moved = 0, failed = 0;
	int ex, rc;

	memset(&o, 0, sizeof(o));
	o.timeout_s = 600;
	for (int i = 1; i < argc; i++) {
		uint64_t v;

		if (strcmp(argv[i], "--dry-run") == 0 || strcmp(argv[i], "-n") == 0) {
			o.dry_run = true;
		} else if (i + 1 >= argc) {
			return cli_usage_error("unknown option or missing value '%s'", argv[i]);
		} else if (strcmp(argv[i], "--save") == 0) {
			o.save = argv[++i];
		} else if (strcmp(argv[i], "--parallel") == 0) {
			if (ha_parse_u64(argv[++i], 1, 64, &v) < 0) {
				return cli_usage_error("--parallel: '%s' is not in 1..64", argv[i]);
			}
			o.parallel = (uint32_t)v;
		} else if (strcmp(argv[i], "--timeout") == 0) {
			if (ha_parse_u64(argv[++i], 1, 86400, &v) < 0) {
				return cli_usage_error("--timeout: '%s' is not seconds", argv[i]);
			}
			o.timeout_s = (uint32_t)v;
		} else {
			return cli_usage_error("unknown option '%s'", argv[i]);
		}
	}
	ex = engine_input_get(cli, &in);
	if (ex != EX_OK) {
		return ex;
	}
	/* Asked for now: neither the periodic switch nor the hold rounds wait;
	 * thresholds, budgets, hold time and the rules still apply. */
	in.policy->enabled = true;
	in.sim->cluster->imbalanced_rounds = in.policy->hold_rounds;
	if (o.save) {
		ex = save_input(o.save, &in);
		if (ex != EX_OK) {
			engine_input_free(&in);
			return ex;
		}
	}
	if (o.parallel == 0) {
		o.parallel = in.policy->max_parallel ? in.policy->max_parallel : 1;
	}
	rc = ha_balance_plan(in.sim->cluster, in.policy, &plan);
	if (rc < 0) {
		fprintf(stderr, "hactl: the balancing engine failed: %s\n", strerror(-rc));
		engine_input_free(&in);
		return EX_FAIL;
	}
	if (!cli->json) {
		ha_bal_plan_print(stdout, in.sim->cluster, plan);
		fflush(stdout);
	}
	if (!o.dry_run) {
		run_plan(cli, in.sim->cluster, plan, &o, &moved, &failed);
	}
	if (cli->json) {
		json_object *j = json_object_new_object();

		json_object_object_add(j, "dry_run", json_object_new_boolean(o.dry_run));
		json_object_object_add(j, "policy_source",
				       json_object_new_string(in.reply->policy_source ?
							      in.reply->policy_source : ""));
		json_object_object_add(j, "policy_error",
				       json_object_new_string(in.reply->policy_error ?
							      in.reply->policy_error : ""));
		json_object_object_add(j, "plan", hactl_balance_plan_json(in.sim->cluster, plan));
		if (!o.dry_run) {
			json_object_object_add(j, "moved", json_object_new_int64(moved));
			json_object_object_add(j, "failed", json_object_new_int64(failed));
		}
		cli_json_print(j);
	} else if (!o.dry_run) {
		printf("balance: %u moved, %u failed\n", moved, failed);
	}
	ha_bal_plan_free(plan);
	engine_input_free(&in);
	return failed ? EX_FAIL : EX_OK;
}

/*
 * hactl maintenance off NODE --return: the guests that evacuations moved
 * off @node (their record's home) go back to it, one after the other, by
 * live migration. Hold times do not apply: the operator asked.
 */
int cli_return_guests(struct cli *cli, const char *node)
{
	Hactl__StatusReply *s = NULL;
	const Hactl__NodeStatus *n;
	unsigned moved = 0, failed = 0;
	char *names[1024];
	size_t count = 0;
	int ex = cli_get_status(cli, NULL, &s);

	if (ex != EX_OK) {
		return ex;
	}
	n = node_named(s, node);
	if (n == NULL) {
		fprintf(stderr, "hactl: unknown node '%s'\n", node);
		ha_env_msg_free(&s->base);
		return EX_UNKNOWN;
	}
	for (size_t i = 0; i < s->n_guests && count < HA_ARRAY_SIZE(names); i++) {
		const Hactl__GuestRecord *g = s->guests[i];

		if (g->has_home && g->home == n->id && g->owner != n->id && g->owner != 0 &&
		    ha_guest_state_from_str(g->state) == HACTL__GUEST_STATE__GUEST_RUNNING) {
			names[count++] = strdup(g->name);
		}
	}
	ha_env_msg_free(&s->base);
	cli->batch = cli->json;
	for (size_t i = 0; i < count; i++) {
		struct mopts o;
		uint64_t id = 0;

		memset(&o, 0, sizeof(o));
		o.name = names[i];
		o.to = node;
		o.timeout_s = 600;
		if (!cli->json) {
			printf("returning %s to %s\n", o.name, node);
		}
		if (names[i] == NULL || start_migration(cli, &o, &id) != EX_OK ||
		    wait_migration(cli, o.name, id, o.timeout_s) != EX_OK) {
			failed++;
		} else {
			moved++;
		}
		free(names[i]);
	}
	cli->batch = false;
	if (cli->json) {
		json_object *j = json_object_new_object();

		json_object_object_add(j, "node", json_object_new_string(node));
		json_object_object_add(j, "returned", json_object_new_int64(moved));
		json_object_object_add(j, "failed", json_object_new_int64(failed));
		cli_json_print(j);
	} else {
		printf("%s: %u guests returned, %u failed\n", node, moved, failed);
	}
	return failed ? EX_FAIL : EX_OK;
}
