/*
 * cli_common.c - what hactl's commands share: the call to the coordinator
 * and its mapping to exit statuses, usage errors, JSON printing, and the
 * presentation of a guest (its node's name, its state as shown, its JSON
 * object). The command files (hactl.c, cmd_*.c) call this file and never
 * each other; only main in hactl.c calls the commands.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>

#include "config.h"
#include "guestdef.h"
#include "hactl_states.h"
#include "ipc.h"
#include "proto/hactl.pb-c.h"
#include "snapchoice.h"
#include "util.h"

#include "cli.h"

/* ---- calls to the coordinator ---- */

int cli_cfg_read(struct ha_config *cfg, char *err, size_t len)
{
	const char *path = getenv("HACTL_CONFIG");

	return ha_config_load(path ? path : HA_CONFIG_DEFAULT_PATH, path == NULL, cfg, err, len);
}

int cli_load_cfg(struct ha_config *cfg)
{
	char err[512];

	if (cli_cfg_read(cfg, err, sizeof(err)) < 0) {
		fprintf(stderr, "hactl: %s\n", err);
		return EX_FAIL;
	}
	return EX_OK;
}

int cli_status_guest(struct cli *cli, const char *name, Hactl__StatusReply **s,
		     const Hactl__GuestRecord **g)
{
	int ex = cli_get_status(cli, NULL, s);

	if (ex != EX_OK) {
		return ex;
	}
	*g = cli_find_guest(*s, name);
	if (*g == NULL) {
		fprintf(stderr, "hactl: unknown guest '%s'\n", name);
		ha_env_msg_free(&(*s)->base);
		*s = NULL;
		return EX_UNKNOWN;
	}
	return EX_OK;
}

int cli_guest_here(const Hactl__StatusReply *s, const Hactl__GuestRecord *g, const char *name,
		   const char *cmd, const char *tail)
{
	const char *on = g->running_on ? cli_node_name(s, g->running_on) : NULL;

	if (!g->owner || g->owner != s->local_id || g->running_on != s->local_id) {
		fprintf(stderr, "hactl: %s runs %s%s, not on this host (%s): run it there, "
			"e.g. ssh %s hactl %s %s%s\n", name, on ? "on " : "nowhere", on ? on : "",
			s->local_node ? s->local_node : "?", on ? on : "NODE", cmd, name, tail);
		return EX_FAIL;
	}
	return EX_OK;
}

int cli_usage_error(const char *fmt, const char *arg)
{
	fprintf(stderr, "hactl: ");
	fprintf(stderr, fmt, arg);
	fprintf(stderr, "\n(see hactl --help, or hactl COMMAND --help)\n");
	return EX_USAGE;
}

int cli_opt_timeout(const char *arg, uint32_t *timeout_s)
{
	uint64_t v;

	if (ha_parse_u64(arg, 1, 86400, &v) < 0) {
		return cli_usage_error("--timeout: '%s' is not seconds in 1..86400", arg);
	}
	*timeout_s = (uint32_t)v;
	return EX_OK;
}

static int connect_coord(struct cli *cli)
{
	cli->conn = qb_ipcc_connect(HA_IPC_NAME, HA_IPC_MAX_MSG);
	if (cli->conn == NULL) {
		int e = errno;

		if (e == EACCES || e == EPERM) {
			fprintf(stderr, "hactl: permission denied by ha-coordinator: "
					"run as root or as a member of group hactl\n");
		} else {
			fprintf(stderr, "hactl: cannot connect to ha-coordinator on this "
					"host (%s); is it running?\n", strerror(e));
		}
		return EX_NODAEMON;
	}
	return EX_OK;
}

int cli_code_to_exit(int code)
{
	switch (code) {
	case 0:
		return EX_OK;
	case -EHOSTDOWN:
		return EX_NOQUORUM;
	case -ENOENT:
		return EX_UNKNOWN;
	case -EINVAL:
		return EX_USAGE;
	default:
		return EX_FAIL;
	}
}

/*
 * While a long request waits (cli->progress set, stderr a terminal, no
 * --json): "hactl: WHAT: N s" on stderr, rewritten every second by a
 * thread that only sleeps and writes.
 */
struct ticker {
	pthread_t thread;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool stop, started;
	const char *what;
	uint64_t t0;
};

static void *ticker_main(void *arg)
{
	struct ticker *t = arg;
	struct timespec until;

	pthread_mutex_lock(&t->lock);
	clock_gettime(CLOCK_REALTIME, &until);
	while (!t->stop) {
		until.tv_sec++;
		if (pthread_cond_timedwait(&t->cond, &t->lock, &until) == ETIMEDOUT && !t->stop) {
			fprintf(stderr, "\rhactl: %s: %" PRIu64 " s ", t->what,
				(ha_mono_ms() - t->t0) / 1000);
		}
	}
	pthread_mutex_unlock(&t->lock);
	return NULL;
}

static void ticker_start(struct ticker *t, const struct cli *cli)
{
	memset(t, 0, sizeof(*t));
	if (cli->progress == NULL || cli->json || !isatty(STDERR_FILENO)) {
		return;
	}
	pthread_mutex_init(&t->lock, NULL);
	pthread_cond_init(&t->cond, NULL);
	t->what = cli->progress;
	t->t0 = ha_mono_ms();
	fprintf(stderr, "hactl: %s ...", t->what);
	t->started = pthread_create(&t->thread, NULL, ticker_main, t) == 0;
}

static void ticker_stop(struct ticker *t)
{
	if (!t->started) {
		return;
	}
	pthread_mutex_lock(&t->lock);
	t->stop = true;
	pthread_cond_signal(&t->cond);
	pthread_mutex_unlock(&t->lock);
	pthread_join(t->thread, NULL);
	fprintf(stderr, "\r\033[K");
	pthread_cond_destroy(&t->cond);
	pthread_mutex_destroy(&t->lock);
}

/*
 * How long a call waits for its answer: what the command asked for, else
 * for a change, an action or a fencing the coordinator's verdict (it
 * answers within its own limits, request_timeout_ms and 600 s, however
 * slow the work: hactl never reports a failure while the work goes on),
 * and TIMEOUT_MS for a read.
 */
static uint32_t call_wait_ms(const struct cli *cli, enum ha_msg_type type)
{
	if (cli->wait_ms) {
		return cli->wait_ms;
	}
	switch (type) {
	case HA_MSG_CHANGE_REQUEST:
	case HA_MSG_ACTION_REQUEST:
	case HA_MSG_FENCE_REQUEST:
		return VERDICT_WAIT_MS;
	default:
		return TIMEOUT_MS;
	}
}

/* Sends @req, expects @want (or a Result, which is an error or a plain ok). */
int cli_call(struct cli *cli, enum ha_msg_type type, const ProtobufCMessage *req,
	     enum ha_msg_type want, ProtobufCMessage **out)
{
	struct ticker tick;
	enum ha_msg_type rtype;
	ProtobufCMessage *reply = NULL;
	int rc;

	/* Connected at the first request: a command has parsed its arguments
	 * by then, so a typo is exit 2 even with no coordinator running. */
	if (cli->conn == NULL) {
		int ex = connect_coord(cli);

		if (ex != EX_OK) {
			return ex;
		}
	}
	ticker_start(&tick, cli);
	rc = ha_ipcc_call(cli->conn, type, req, call_wait_ms(cli, type), &rtype, &reply);
	ticker_stop(&tick);
	if (rc < 0) {
		fprintf(stderr, "hactl: no valid answer from ha-coordinator: %s\n",
			strerror(-rc));
		return rc == -ENOTCONN || rc == -ECONNREFUSED ? EX_NODAEMON : EX_FAIL;
	}
	if (rtype == HA_MSG_RESULT) {
		Hactl__Result *r = (Hactl__Result *)reply;

		if (r->code < 0) {
			fprintf(stderr, "hactl: %s\n", r->message && r->message[0] ?
				r->message : strerror(-r->code));
			*out = reply;
			return cli_code_to_exit(r->code);
		}
	}
	if (rtype == want) {
		*out = reply;
		return EX_OK;
	}
	fprintf(stderr, "hactl: unexpected %s from ha-coordinator\n", ha_msg_type_str(rtype));
	ha_env_msg_free(reply);
	return EX_FAIL;
}

/* The status with every guest: in pages when the cluster is large
 * (docs/protocol.md, "Large replies"). */
int cli_change(struct cli *cli, Hactl__Change *ch, uint64_t *seq)
{
	Hactl__ChangeRequest req = HACTL__CHANGE_REQUEST__INIT;
	ProtobufCMessage *reply = NULL;
	int ex;

	req.change = ch;
	ex = cli_call(cli, HA_MSG_CHANGE_REQUEST, &req.base, HA_MSG_RESULT, &reply);
	if (ex == EX_OK && seq) {
		*seq = ((Hactl__Result *)reply)->seq;
	}
	ha_env_msg_free(reply);
	return ex;
}

int cli_get_status(struct cli *cli, const char *node, Hactl__StatusReply **out)
{
	enum ha_msg_type rtype;
	ProtobufCMessage *reply = NULL;
	int rc;

	if (cli->conn == NULL) { /* connected at the first request */
		int ex = connect_coord(cli);

		if (ex != EX_OK) {
			return ex;
		}
	}
	rc = ha_ipcc_status(cli->conn, node, TIMEOUT_MS, &rtype, &reply);
	if (rc < 0) {
		fprintf(stderr, "hactl: no valid answer from ha-coordinator: %s\n",
			rc == -EAGAIN ? "the cluster state kept changing while it was read"
				      : strerror(-rc));
		return rc == -ENOTCONN || rc == -ECONNREFUSED ? EX_NODAEMON : EX_FAIL;
	}
	if (rtype == HA_MSG_RESULT) {
		Hactl__Result *r = (Hactl__Result *)reply;
		int code = r->code < 0 ? r->code : -EPROTO;

		fprintf(stderr, "hactl: %s\n", r->message && r->message[0] ? r->message :
			strerror(-code));
		ha_env_msg_free(reply);
		return cli_code_to_exit(code);
	}
	*out = (Hactl__StatusReply *)reply;
	return EX_OK;
}

/* ---- JSON ---- */

void cli_json_print(json_object *o)
{
	printf("%s\n", json_object_to_json_string_ext(o, JSON_C_TO_STRING_PRETTY |
							 JSON_C_TO_STRING_NOSLASHESCAPE));
	json_object_put(o);
}

/* ---- presentation ---- */

const char *cli_node_name(const Hactl__StatusReply *s, uint32_t id)
{
	for (size_t j = 0; j < s->n_nodes; j++) {
		if (s->nodes[j]->id == id) {
			return s->nodes[j]->name;
		}
	}
	return "-";
}

static const Hactl__NodeStatus *node_of(const Hactl__StatusReply *s, uint32_t id)
{
	for (size_t j = 0; j < s->n_nodes; j++) {
		if (s->nodes[j]->id == id) {
			return s->nodes[j];
		}
	}
	return NULL;
}

const char *cli_guest_state(const Hactl__StatusReply *s, const Hactl__GuestRecord *g)
{
	const Hactl__NodeStatus *n = node_of(s, g->owner);
	int state = ha_guest_state_from_str(g->state);

	if (g->owner && n && !n->member && g->state &&
	    state != HACTL__GUEST_STATE__GUEST_STOPPED &&
	    state != HACTL__GUEST_STATE__GUEST_DEFINED) {
		/* its node is gone: nobody can say */
		return ha_guest_state_str(HACTL__GUEST_STATE__GUEST_UNKNOWN);
	}
	return g->state && g->state[0] ? g->state :
	       ha_guest_state_str(HACTL__GUEST_STATE__GUEST_DEFINED);
}

const Hactl__GuestRecord *cli_find_guest(const Hactl__StatusReply *s, const char *name)
{
	for (size_t i = 0; i < s->n_guests; i++) {
		if (strcmp(s->guests[i]->name, name) == 0) {
			return s->guests[i];
		}
	}
	return NULL;
}

const char *cli_guest_desired(const Hactl__GuestRecord *g)
{
	int desired = ha_guest_state_from_str(g->desired);

	if (desired == HACTL__GUEST_STATE__GUEST_RUNNING && g->has_paused && g->paused) {
		return ha_guest_state_str(HACTL__GUEST_STATE__GUEST_PAUSED);
	}
	return desired == HA_STATE_NONE ? ha_guest_state_str(HACTL__GUEST_STATE__GUEST_STOPPED) :
					  g->desired;
}

json_object *cli_guest_json(const Hactl__StatusReply *s, const Hactl__GuestRecord *g)
{
	json_object *o = json_object_new_object();
	json_object *snap = json_object_new_object();
	json_object *use = json_object_new_object();
	struct ha_guest_def def;
	char err[256];
	bool have_def = g->definition.data &&
			ha_guestdef_parse((const char *)g->definition.data, g->definition.len,
					  g->name, &def, err, sizeof(err)) == 0;

	json_object_object_add(o, "name", json_object_new_string(g->name));
	json_object_object_add(o, "type", json_object_new_string(g->type ? g->type : ""));
	json_object_object_add(o, "state", json_object_new_string(cli_guest_state(s, g)));
	json_object_object_add(o, "desired", json_object_new_string(g->desired ? g->desired :
				ha_guest_state_str(HACTL__GUEST_STATE__GUEST_STOPPED)));
	/* hactl pause: desired stays "running" here; paused says the operator
	 * holds it frozen */
	json_object_object_add(o, "paused", json_object_new_boolean(g->has_paused && g->paused));
	json_object_object_add(o, "node", g->owner ? json_object_new_string(cli_node_name(s, g->owner)) : NULL);
	json_object_object_add(o, "running_on", g->running_on ?
			       json_object_new_string(cli_node_name(s, g->running_on)) : NULL);
	json_object_object_add(o, "ip", have_def && def.ip[0] ? json_object_new_string(def.ip) : NULL);
	json_object_object_add(o, "generation", json_object_new_int64((int64_t)g->generation));
	json_object_object_add(o, "error", json_object_new_string(g->error ? g->error : ""));
	json_object_object_add(o, "note", json_object_new_string(g->note ? g->note : ""));
	if (have_def) {
		json_object *lim = json_object_new_object();

		json_object_object_add(lim, "memory_kib", json_object_new_int64((int64_t)def.mem_kib));
		json_object_object_add(lim, "cpus", json_object_new_int64(def.cpus));
		json_object_object_add(lim, "cpu_weight", json_object_new_int64(def.cpu_weight));
		json_object_object_add(lim, "cpu_limit", json_object_new_int64(def.cpu_limit_pct));
		json_object_object_add(lim, "pids_limit", json_object_new_int64(def.pids_max));
		json_object_object_add(o, "limits", lim);
		json_object_object_add(o, "restart", json_object_new_string(ha_restart_policy_str(def.restart)));
		json_object_object_add(o, "priority", json_object_new_int64(def.priority));
		json_object_object_add(o, "snapshot_interval", json_object_new_int64(def.snapshot_interval_s));
		{
			uint64_t max = ha_guestdef_failover_max_age_ms(&def);

			/* seconds; null = unlimited */
			json_object_object_add(o, "failover_snapshot_max_age",
					       max == HA_SNAP_AGE_UNLIMITED ? NULL :
					       json_object_new_int64((int64_t)(max / 1000)));
		}
		json_object_object_add(o, "max_restart", json_object_new_int64(def.max_restart));
		json_object_object_add(o, "max_relocate", json_object_new_int64(def.max_relocate));
	}
	/* the restart policy's counts (docs/failover.md, "Restart policy") */
	json_object_object_add(o, "restarts", json_object_new_int64(g->restarts));
	json_object_object_add(o, "relocations", json_object_new_int64(g->relocations));
	json_object_object_add(o, "restart_error", json_object_new_boolean(g->restart_error));
	json_object_object_add(snap, "generation", json_object_new_int64((int64_t)g->snap_generation));
	json_object_object_add(snap, "time_ms", json_object_new_int64((int64_t)g->snap_time_ms));
	json_object_object_add(o, "snapshot", snap);
	json_object_object_add(use, "cpu_ns", json_object_new_int64((int64_t)g->cpu_ns));
	json_object_object_add(use, "mem_bytes", json_object_new_int64((int64_t)g->mem_bytes));
	json_object_object_add(use, "cpu_milli", json_object_new_int64(g->cpu_milli));
	if (g->limits) {
		const Hactl__GuestLimits *l = g->limits;
		json_object *lim = json_object_new_object();

		json_object_object_add(lim, "mem_peak_bytes",
				       json_object_new_int64((int64_t)l->mem_peak_bytes));
		json_object_object_add(lim, "mem_limit_bytes",
				       json_object_new_int64((int64_t)l->mem_limit_bytes));
		json_object_object_add(lim, "mem_failcnt", json_object_new_int64((int64_t)l->mem_failcnt));
		json_object_object_add(lim, "pids", json_object_new_int64(l->pids));
		json_object_object_add(lim, "pids_limit", json_object_new_int64((int64_t)l->pids_limit));
		json_object_object_add(lim, "pids_failcnt",
				       json_object_new_int64((int64_t)l->pids_failcnt));
		json_object_object_add(lim, "cpu_periods", json_object_new_int64((int64_t)l->cpu_periods));
		json_object_object_add(lim, "cpu_throttled",
				       json_object_new_int64((int64_t)l->cpu_throttled));
		json_object_object_add(lim, "cpu_throttled_ns",
				       json_object_new_int64((int64_t)l->cpu_throttled_ns));
		json_object_object_add(o, "limits", lim);
	}
	if (g->has_disk_size_bytes) {
		json_object_object_add(use, "disk_used_bytes",
				       json_object_new_int64((int64_t)g->disk_used_bytes));
		json_object_object_add(use, "disk_size_bytes",
				       json_object_new_int64((int64_t)g->disk_size_bytes));
	}
	json_object_object_add(o, "usage", use);
	return o;
}
