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

/* The migration options of @o (a transport left unset: each agent's
 * [migration] transport). */
static void mopts_options(const struct mopts *o, Hactl__MigrationOptions *mo)
{
	mo->mode = (char *)(o->mode ? o->mode : "auto");
	mo->transport = (char *)o->transport;
	mo->has_max_downtime_ms = o->max_downtime_ms != 0;
	mo->max_downtime_ms = o->max_downtime_ms;
	mo->has_bandwidth_bps = o->bandwidth_bps != 0;
	mo->bandwidth_bps = o->bandwidth_bps;
}

static int start_migration(struct cli *cli, const struct mopts *o, uint64_t *id)
{
	Hactl__Change ch = HACTL__CHANGE__INIT;
	Hactl__MigrateStartChange ms = HACTL__MIGRATE_START_CHANGE__INIT;
	Hactl__MigrationOptions mo = HACTL__MIGRATION_OPTIONS__INIT;
	Hactl__StatusReply *s = NULL;
	const Hactl__GuestRecord *g;
	int ex;

	mopts_options(o, &mo);
	ms.guest = (char *)o->name;
	ms.node = (char *)o->to;
	ms.options = &mo;
	ms.has_evacuate = o->evacuate;
	ms.evacuate = o->evacuate;
	ch.kind_case = HACTL__CHANGE__KIND_MIGRATE_START;
	ch.migrate_start = &ms;
	ex = cli_change(cli, &ch, NULL);
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
			if (cli_opt_timeout(argv[++i], &o->timeout_s) != EX_OK) {
				return EX_USAGE;
			}
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
		ex = cli_change(cli, &ch, NULL);
		if (ex == EX_OK && cli->json) {
			json_object *j = json_object_new_object();

			json_object_object_add(j, "name", json_object_new_string(o.name));
			json_object_object_add(j, "cancelled", json_object_new_boolean(1));
			cli_json_print(j);
		} else if (ex == EX_OK) {
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

/* ---- jobs: waves of moves that the leader runs (docs/maintenance.md) ---- */

static const Hactl__Job *job_of(const Hactl__StatusReply *s, uint64_t id)
{
	for (size_t i = 0; i < s->n_jobs; i++) {
		if (s->jobs[i]->id == id) {
			return s->jobs[i];
		}
	}
	return NULL;
}

static bool job_ended(const Hactl__Job *j)
{
	int s = ha_job_state_from_str(j->state);

	return s != HACTL__JOB_STATE__JOB_RUNNING && s != HACTL__JOB_STATE__JOB_CANCELLING;
}

static bool move_is(const Hactl__JobMove *m, Hactl__JobMoveState s)
{
	return ha_job_move_state_from_str(m->state) == (int)s;
}

/*
 * Asks the leader for a job: @kind on @node, at most @parallel moves at
 * once, the moves planned by the leader (@n_moves 0) or these. Its id
 * (the seq of its commit) in *@id.
 */
static int job_start(struct cli *cli, const char *kind, const char *node, uint32_t parallel,
		     const struct mopts *o, Hactl__JobMove **moves, size_t n_moves, uint64_t *id)
{
	Hactl__Change ch = HACTL__CHANGE__INIT;
	Hactl__JobStartChange js = HACTL__JOB_START_CHANGE__INIT;
	Hactl__MigrationOptions mo = HACTL__MIGRATION_OPTIONS__INIT;

	mopts_options(o, &mo);
	js.kind = (char *)kind;
	js.node = (char *)node;
	js.has_parallel = true;
	js.parallel = parallel ? parallel : 1;
	js.options = &mo;
	js.moves = moves;
	js.n_moves = n_moves;
	ch.kind_case = HACTL__CHANGE__KIND_JOB_START;
	ch.job_start = &js;
	return cli_change(cli, &ch, id);
}

/* A done move is settled once its destination reports the guest running
 * under the new generation: the next command finds it running there. */
static bool move_settled(const Hactl__StatusReply *s, const Hactl__JobMove *m)
{
	const Hactl__GuestRecord *g = cli_find_guest(s, m->guest);

	if (!move_is(m, HACTL__JOB_MOVE_STATE__JOB_MOVE_DONE) || g == NULL) {
		return true;
	}
	return ha_guest_state_from_str(g->state) == HACTL__GUEST_STATE__GUEST_RUNNING &&
	       (!g->has_state_generation || g->state_generation == g->generation) &&
	       strcmp(cli_node_name(s, g->owner), m->to) == 0;
}

/*
 * Follows job @id until it has ended and its moved guests run where they
 * went, printing each move as it starts and ends (not with --json).
 * Leaving early (a timeout, an interrupt, a lost coordinator) does not
 * stop the job: the leader carries it out. *@out gets the last view of
 * the job (free @out_status).
 */
static int job_follow(struct cli *cli, uint64_t id, uint32_t timeout_s,
		      Hactl__StatusReply **out_status, const Hactl__Job **out)
{
	uint64_t deadline = ha_mono_ms() + timeout_s * 1000ull;
	char seen[4096] = ""; /* per move: p(ending), r(unning), e(nded) */

	*out_status = NULL;
	*out = NULL;
	for (;;) {
		Hactl__StatusReply *s = NULL;
		const Hactl__Job *j;
		bool settled = true;
		int ex = cli_get_status(cli, NULL, &s);

		if (ex != EX_OK) {
			fprintf(stderr, "hactl: job %" PRIu64 " goes on without this client "
				"(hactl jobs)\n", id);
			return ex;
		}
		j = job_of(s, id);
		if (j == NULL) {
			fprintf(stderr, "hactl: job %" PRIu64 " is not in the cluster's state\n", id);
			ha_env_msg_free(&s->base);
			return EX_FAIL;
		}
		for (size_t i = 0; i < j->n_moves && i < sizeof(seen) - 1; i++) {
			const Hactl__JobMove *m = j->moves[i];
			const Hactl__GuestRecord *g = cli_find_guest(s, m->guest);
			char was = seen[i] ? seen[i] : 'p';
			char now = move_is(m, HACTL__JOB_MOVE_STATE__JOB_MOVE_PENDING) ? 'p' :
				   move_is(m, HACTL__JOB_MOVE_STATE__JOB_MOVE_RUNNING) ? 'r' : 'e';

			if (now == 'e' && !move_settled(s, m)) {
				settled = false;
				now = 'r';
			}
			if (!seen[i]) {
				seen[i] = 'p';
				seen[i + 1] = 0;
			}
			if (now == was || cli->json) {
				seen[i] = now;
				continue;
			}
			if (was == 'p' && now != 'p' &&
			    !move_is(m, HACTL__JOB_MOVE_STATE__JOB_MOVE_FAILED)) {
				printf("moving %s: %s -> %s (%s)\n", m->guest, m->from, m->to,
				       m->reason && m->reason[0] ? m->reason : j->kind);
			}
			if (now == 'e' && move_is(m, HACTL__JOB_MOVE_STATE__JOB_MOVE_DONE)) {
				const Hactl__Migration *mg = g ? g->migration : NULL;

				if (mg && mg->id == m->migration) {
					printf("%s migrated %s -> %s: total %" PRIu64 " ms, downtime %u ms, "
					       "%" PRIu64 " bytes, %u rounds (%s)\n", m->guest, m->from, m->to,
					       mg->ended_ms > mg->started_ms ? mg->ended_ms - mg->started_ms :
					       mg->total_ms, mg->downtime_ms, mg->transferred_bytes,
					       mg->rounds, mg->mode && mg->mode[0] ? mg->mode : "auto");
				} else {
					printf("%s moved to %s\n", m->guest, m->to);
				}
			} else if (now == 'e') {
				fprintf(stderr, "hactl: %s not moved: %s\n", m->guest,
					m->reason && m->reason[0] ? m->reason : "failed");
			}
			fflush(stdout);
			seen[i] = now;
		}
		if (job_ended(j) && settled) {
			*out_status = s;
			*out = j;
			return EX_OK;
		}
		ha_env_msg_free(&s->base);
		if (ha_mono_ms() > deadline) {
			fprintf(stderr, "hactl: job %" PRIu64 " has not ended within %u s; it goes "
				"on (hactl jobs, hactl jobs --cancel %" PRIu64 ")\n", id, timeout_s, id);
			return EX_FAIL;
		}
		usleep(200 * 1000);
	}
}

static void job_count(const Hactl__Job *j, unsigned *moved, unsigned *failed)
{
	for (size_t i = 0; i < j->n_moves; i++) {
		if (move_is(j->moves[i], HACTL__JOB_MOVE_STATE__JOB_MOVE_DONE)) {
			(*moved)++;
		} else {
			(*failed)++;
		}
	}
}

static json_object *job_json(const Hactl__Job *j)
{
	json_object *o = json_object_new_object(), *moves = json_object_new_array();

	json_object_object_add(o, "id", json_object_new_int64((int64_t)j->id));
	json_object_object_add(o, "kind", json_object_new_string(j->kind));
	json_object_object_add(o, "node", json_object_new_string(j->node ? j->node : ""));
	json_object_object_add(o, "state", json_object_new_string(j->state));
	json_object_object_add(o, "parallel", json_object_new_int64(j->parallel));
	json_object_object_add(o, "started_ms", json_object_new_int64((int64_t)j->started_ms));
	json_object_object_add(o, "ended_ms", json_object_new_int64((int64_t)j->ended_ms));
	json_object_object_add(o, "note", json_object_new_string(j->note ? j->note : ""));
	for (size_t i = 0; i < j->n_moves; i++) {
		const Hactl__JobMove *m = j->moves[i];
		json_object *x = json_object_new_object();

		json_object_object_add(x, "guest", json_object_new_string(m->guest));
		json_object_object_add(x, "from", json_object_new_string(m->from ? m->from : ""));
		json_object_object_add(x, "to", json_object_new_string(m->to ? m->to : ""));
		json_object_object_add(x, "wave", json_object_new_int64(m->wave));
		json_object_object_add(x, "state", json_object_new_string(m->state ? m->state : ""));
		json_object_object_add(x, "migration", json_object_new_int64((int64_t)m->migration));
		json_object_object_add(x, "reason", json_object_new_string(m->reason ? m->reason : ""));
		json_object_array_add(moves, x);
	}
	json_object_object_add(o, "moves", moves);
	return o;
}

/*
 * Hands the plan that `hactl balance` showed to the leader as a job (the
 * same moves, waves and order; each checked when it starts) and follows
 * it. Counts moved and failed guests; unplaced ones fail.
 */
static int run_balance_job(struct cli *cli, const struct ha_bal_cluster *c,
			   const struct ha_bal_plan *plan, const struct mopts *o,
			   unsigned *moved, unsigned *failed)
{
	Hactl__JobMove *moves = calloc(plan->n_actions, sizeof(*moves));
	Hactl__JobMove **ptrs = calloc(plan->n_actions, sizeof(*ptrs));
	Hactl__StatusReply *s = NULL;
	const Hactl__Job *job = NULL;
	size_t n = 0;
	uint64_t id = 0;
	int ex;

	if (moves == NULL || ptrs == NULL) {
		free(moves);
		free(ptrs);
		fprintf(stderr, "hactl: out of memory\n");
		return EX_FAIL;
	}
	for (uint32_t i = 0; i < plan->n_actions; i++) {
		if (ha_bal_action_move(c, &plan->actions[i], &moves[n])) {
			ptrs[n] = &moves[n];
			n++;
		}
	}
	ex = n ? job_start(cli, "balance", NULL, o->parallel, o, ptrs, n, &id) : EX_OK;
	free(moves);
	free(ptrs);
	if (ex != EX_OK || n == 0) {
		return ex;
	}
	ex = job_follow(cli, id, o->timeout_s, &s, &job);
	if (ex == EX_OK) {
		job_count(job, moved, failed);
		ha_env_msg_free(&s->base);
	}
	return ex;
}

int cli_cmd_evacuate(struct cli *cli, int argc, char **argv)
{
	struct mopts o;
	Hactl__StatusReply *s = NULL;
	const Hactl__NodeStatus *node;
	const Hactl__Job *job = NULL;
	unsigned moved = 0, failed = 0;
	uint64_t id = 0;
	int ex = parse(argc, argv, &o, true);

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
		ex = cli_change(cli, &ch, NULL);
		if (ex != EX_OK) {
			ha_env_msg_free(&s->base);
			return ex;
		}
	}
	ha_env_msg_free(&s->base);
	/* the leader plans (the engine's EVACUATE plan) and runs the moves */
	ex = job_start(cli, "evacuate", o.name, o.parallel, &o, NULL, 0, &id);
	if (ex != EX_OK) {
		return ex;
	}
	if (o.no_wait) {
		if (cli->json) {
			json_object *j = json_object_new_object();

			json_object_object_add(j, "node", json_object_new_string(o.name));
			json_object_object_add(j, "job", json_object_new_int64((int64_t)id));
			cli_json_print(j);
		} else {
			printf("%s in maintenance; job %" PRIu64 " evacuates it (hactl jobs)\n",
			       o.name, id);
		}
		return EX_OK;
	}
	if (!cli->json) {
		printf("%s in maintenance; job %" PRIu64 " moves its guests, %u at a time "
		       "(interrupting hactl does not stop it)\n", o.name, id, o.parallel);
		fflush(stdout);
	}
	ex = job_follow(cli, id, o.timeout_s, &s, &job);
	if (ex != EX_OK) {
		return ex;
	}
	job_count(job, &moved, &failed);
	if (cli->json) {
		json_object *j = json_object_new_object();

		json_object_object_add(j, "node", json_object_new_string(o.name));
		json_object_object_add(j, "moved", json_object_new_int64(moved));
		json_object_object_add(j, "failed", json_object_new_int64(failed));
		json_object_object_add(j, "job", job_json(job));
		cli_json_print(j);
	} else {
		printf("%s evacuated: %u moved, %u failed; it stays in maintenance until "
		       "'hactl maintenance off %s'\n", o.name, moved, failed, o.name);
	}
	ha_env_msg_free(&s->base);
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
			if (cli_opt_timeout(argv[++i], &o.timeout_s) != EX_OK) {
				return EX_USAGE;
			}
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
	if (!o.dry_run && plan->n_actions) {
		ex = run_balance_job(cli, in.sim->cluster, plan, &o, &moved, &failed);
		if (ex != EX_OK) {
			ha_bal_plan_free(plan);
			engine_input_free(&in);
			return ex;
		}
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
	const Hactl__Job *job = NULL;
	unsigned moved = 0, failed = 0;
	struct mopts o;
	uint64_t id = 0;
	int ex;

	memset(&o, 0, sizeof(o));
	ex = job_start(cli, "return", node, 1, &o, NULL, 0, &id);
	if (ex == EX_OK) {
		ex = job_follow(cli, id, 3600, &s, &job);
	}
	if (ex != EX_OK) {
		return ex;
	}
	job_count(job, &moved, &failed);
	if (cli->json) {
		json_object *j = json_object_new_object();

		json_object_object_add(j, "node", json_object_new_string(node));
		json_object_object_add(j, "returned", json_object_new_int64(moved));
		json_object_object_add(j, "failed", json_object_new_int64(failed));
		json_object_object_add(j, "job", job_json(job));
		cli_json_print(j);
	} else {
		printf("%s: %u guests returned, %u failed\n", node, moved, failed);
	}
	ha_env_msg_free(&s->base);
	return failed ? EX_FAIL : EX_OK;
}

/* hactl jobs [--cancel ID]: the leader's jobs, or one cancelled. */
int cli_cmd_jobs(struct cli *cli, int argc, char **argv)
{
	Hactl__StatusReply *s = NULL;
	uint64_t cancel = 0;
	int ex;

	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--cancel") == 0 && i + 1 < argc) {
			if (ha_parse_u64(argv[++i], 1, UINT64_MAX, &cancel) < 0) {
				return cli_usage_error("--cancel: '%s' is not a job id", argv[i]);
			}
		} else {
			return cli_usage_error("unknown option or missing value '%s'", argv[i]);
		}
	}
	if (cancel) {
		Hactl__Change ch = HACTL__CHANGE__INIT;
		Hactl__JobMoveChange jm = HACTL__JOB_MOVE_CHANGE__INIT;

		jm.job = cancel;
		jm.has_cancel = true;
		jm.cancel = true;
		ch.kind_case = HACTL__CHANGE__KIND_JOB_MOVE;
		ch.job_move = &jm;
		ex = cli_change(cli, &ch, NULL);
		if (ex == EX_OK) {
			if (cli->json) {
				json_object *j = json_object_new_object();

				json_object_object_add(j, "ok", json_object_new_boolean(true));
				json_object_object_add(j, "job", json_object_new_int64((int64_t)cancel));
				cli_json_print(j);
			} else {
				printf("job %" PRIu64 " cancelled: moves not started are dropped, "
				       "running ones finish\n", cancel);
			}
		}
		return ex;
	}
	ex = cli_get_status(cli, NULL, &s);
	if (ex != EX_OK) {
		return ex;
	}
	if (cli->json) {
		json_object *a = json_object_new_array();

		for (size_t i = 0; i < s->n_jobs; i++) {
			json_object_array_add(a, job_json(s->jobs[i]));
		}
		cli_json_print(a);
	} else if (s->n_jobs == 0) {
		printf("no jobs\n");
	}
	for (size_t i = 0; !cli->json && i < s->n_jobs; i++) {
		const Hactl__Job *j = s->jobs[i];
		unsigned moved = 0, failed = 0, open = 0;

		for (size_t k = 0; k < j->n_moves; k++) {
			int st = ha_job_move_state_from_str(j->moves[k]->state);

			moved += st == HACTL__JOB_MOVE_STATE__JOB_MOVE_DONE;
			failed += st == HACTL__JOB_MOVE_STATE__JOB_MOVE_FAILED;
			open += st == HACTL__JOB_MOVE_STATE__JOB_MOVE_PENDING ||
				st == HACTL__JOB_MOVE_STATE__JOB_MOVE_RUNNING;
		}
		printf("job %" PRIu64 " %s%s%s: %s, %zu moves (%u done, %u failed, %u to go), "
		       "%u at a time%s%s\n", j->id, j->kind, j->node && j->node[0] ? " " : "",
		       j->node ? j->node : "", j->state, j->n_moves, moved, failed, open,
		       j->parallel, j->note && j->note[0] ? "; " : "", j->note ? j->note : "");
		for (size_t k = 0; k < j->n_moves; k++) {
			const Hactl__JobMove *m = j->moves[k];

			printf("  wave %-3u %-20s %s -> %s  %s%s%s\n", m->wave, m->guest,
			       m->from && m->from[0] ? m->from : "-", m->to && m->to[0] ? m->to : "-",
			       m->state, m->reason && m->reason[0] ? ": " : "",
			       m->reason ? m->reason : "");
		}
	}
	ha_env_msg_free(&s->base);
	return EX_OK;
}
