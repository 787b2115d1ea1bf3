/*
 * cmd_migrate.c - hactl migrate, migrate --cancel, evacuate.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "guestdef.h"
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
	json_object_object_add(o, "stream_sent", json_object_new_int64((int64_t)m->stream_sent));
	json_object_object_add(o, "stream_received",
			       json_object_new_int64((int64_t)m->stream_received));
	return o;
}

/* Waits for the end of transaction @id, showing progress on a terminal. */
static int wait_migration(struct cli *cli, const char *name, uint64_t id, uint32_t timeout_s)
{
	uint64_t deadline = ha_mono_ms() + timeout_s * 1000ull;
	bool tty = isatty(1) && !cli->json;

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
		if (strcmp(m->state, "transferring") == 0) {
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
			}
		} else if (strcmp(m->state, "aborted") == 0) {
			if (tty) {
				printf("\n");
			}
			if (cli->json) {
				cli_json_print(report_json(s, g));
			}
			fprintf(stderr, "hactl: migration of %s aborted: %s; it runs on %s\n", name,
				m->reason ? m->reason : "", cli_node_name(s, g->owner));
			ha_env_msg_free(&s->base);
			return EX_FAIL;
		} else if (g->state && strcmp(g->state, "running") == 0 && g->owner == m->destination &&
			   m->downtime_ms) {
			if (tty) {
				printf("\n");
			}
			if (cli->json) {
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
			if (strcmp(o->mode, "auto") && strcmp(o->mode, "precopy") &&
			    strcmp(o->mode, "postcopy") && strcmp(o->mode, "stopcopy")) {
				return cli_usage_error("--mode: '%s' is not auto, precopy, postcopy or stopcopy", o->mode);
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
			o->timeout_s = o->timeout_s; /* parallelism stored below */
			o->max_downtime_ms = o->max_downtime_ms;
			o->bandwidth_bps = o->bandwidth_bps;
			o->cancel = false;
			o->to = argv[i]; /* reuse: evacuate keeps --parallel here */
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

		if (!precopy && expect > o->max_downtime_ms &&
		    !(o->mode && strcmp(o->mode, "postcopy") == 0)) {
			fprintf(stderr, "hactl: refused: %s would be down about %u ms by stop-and-copy "
				"(%" PRIu64 " MiB in use, no pre-copy on %s); --max-downtime is %u ms. "
				"Use --mode postcopy or a larger --max-downtime.\n", g->name, expect,
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

int cli_cmd_evacuate(struct cli *cli, int argc, char **argv)
{
	struct mopts o;
	Hactl__StatusReply *s = NULL;
	const Hactl__NodeStatus *node;
	unsigned parallel = 1, moved = 0, failed = 0;
	uint32_t node_id;
	int ex = parse(argc, argv, &o, true);
	char *names[1024];
	size_t n = 0;

	if (ex != EX_OK) {
		return ex;
	}
	if (o.to) {
		parallel = (unsigned)strtoul(o.to, NULL, 10);
		o.to = NULL;
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
	node_id = node->id;
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
	for (size_t i = 0; i < s->n_guests && n < HA_ARRAY_SIZE(names); i++) {
		const Hactl__GuestRecord *g = s->guests[i];

		if (g->owner == node_id && g->desired && strcmp(g->desired, "running") == 0) {
			names[n++] = strdup(g->name);
		}
	}
	ha_env_msg_free(&s->base);
	if (!cli->json) {
		printf("%s in maintenance; moving %zu guests, %u at a time\n", o.name, n, parallel);
	}
	/* waves of @parallel migrations, each to the node with most room */
	for (size_t base = 0; base < n; base += parallel) {
		uint64_t ids[64];
		size_t wave = n - base < parallel ? n - base : parallel;

		for (size_t k = 0; k < wave; k++) {
			struct mopts mo = o;
			Hactl__StatusReply *st = NULL;
			const Hactl__NodeStatus *best = NULL;
			int64_t best_free = 0;

			mo.name = names[base + k];
			ids[k] = 0;
			if (cli_get_status(cli, NULL, &st) != EX_OK) {
				failed++;
				continue;
			}
			for (size_t j = 0; j < st->n_nodes; j++) {
				const Hactl__NodeStatus *c = st->nodes[j];
				int64_t free_kib;

				if (c->id == node_id || strcmp(c->state, "online") != 0 || !c->agent_connected ||
				    c->facts == NULL) {
					continue;
				}
				free_kib = (int64_t)c->facts->mem_total_kib;
				for (size_t q = 0; q < st->n_guests; q++) {
					struct ha_guest_def d;
					char err[256];

					if (st->guests[q]->owner == c->id &&
					    ha_guestdef_parse((const char *)st->guests[q]->definition.data,
							      st->guests[q]->definition.len, "g", &d, err,
							      sizeof(err)) == 0) {
						free_kib -= (int64_t)d.mem_kib;
					}
				}
				if (best == NULL || free_kib > best_free) {
					best = c;
					best_free = free_kib;
				}
			}
			if (best == NULL) {
				fprintf(stderr, "hactl: no node can take %s\n", mo.name);
				failed++;
				ha_env_msg_free(&st->base);
				continue;
			}
			mo.to = strdup(best->name);
			ha_env_msg_free(&st->base);
			if (start_migration(cli, &mo, &ids[k]) != EX_OK) {
				failed++;
			}
			free((char *)mo.to);
		}
		for (size_t k = 0; k < wave; k++) {
			if (ids[k] == 0) {
				continue;
			}
			if (wait_migration(cli, names[base + k], ids[k], o.timeout_s) == EX_OK) {
				moved++;
			} else {
				failed++;
			}
		}
	}
	for (size_t i = 0; i < n; i++) {
		free(names[i]);
	}
	if (!cli->json) {
		printf("%s evacuated: %u moved, %u failed; it stays in maintenance until "
		       "'hactl maintenance off %s'\n", o.name, moved, failed, o.name);
	}
	return failed ? EX_FAIL : EX_OK;
}
