/*
 * test_coord_metrics.c - the coordinator's /metrics text, status JSON and
 * HTTP answers (coordinator/coord_metrics.c, coord_status.c, coord_http.c).
 *
 * A real coordinator (struct coord, the code of coordinator/) is a member
 * of a three-node group whose leader is node 1; the test delivers the
 * leader's commits, fencing status and agents' reports to it as encoded
 * CPG messages, exactly as corosync would, under a clock the test sets.
 * Then the exposition must say what happened (migrations, their duration
 * and downtime, a failover and its time, fencing, a balance job, CPG
 * traffic) and follow the text format's rules. The answers are checked
 * by calling the handler, and, where built with libmicrohttpd, over a
 * real socket against the server driven by a qb_loop, with requests no
 * browser would send.
 */
#include <errno.h>
#include <json-c/json.h>
#include <math.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#include <qb/qbloop.h>

#include "coord_http.h"
#include "coordinator.h"
#include "harness.h"
#include "util.h"

static struct coord co;
static char tmpdir[] = "/tmp/test_coord_metrics.XXXXXX";
static unsigned sent;
static unsigned delivered; /* CPG messages handed to the coordinator */

static int bus_discard(struct coord *c, const uint8_t *buf, size_t len)
{
	sent++;
	return 0;
}

static void setup(void)
{
	static const uint32_t members[] = { 1, 2, 3 };

	memset(&co, 0, sizeof(co));
	delivered = 0;
	ha_config_defaults(&co.cfg);
	snprintf(co.cfg.fence_config, sizeof(co.cfg.fence_config), "/nonexistent/fence.conf");
	snprintf(co.cfg.policy_path, sizeof(co.cfg.policy_path), "/nonexistent/policy.d");
	snprintf(co.state_path, sizeof(co.state_path), "%s/state", tmpdir);
	coord_init(&co);
	co.loop = qb_loop_create();
	CHECK(co.loop != NULL);
	co.local_id = 2;
	co.cs_connected = true;
	co.joined = true;
	co.vq_quorate = true;
	co.current = true;
	co.send_hook = bus_discard;
	co.test_now_ms = 100000;
	memcpy(co.members, members, sizeof(members));
	co.n_members = 3;
	co.leader = 1;
	co.epoch = 7;
	for (uint32_t id = 1; id <= 3; id++) {
		char name[16];
		struct coord_node *n;

		snprintf(name, sizeof(name), "n%u", id);
		n = coord_state_node_add(&co.state, id, name);
		CHECK(n != NULL);
		n->agent_connected = true;
	}
}

static void teardown(void)
{
	coord_http_stop(&co);
	coord_pending_free_all(&co);
	coord_replica_reset(&co);
	coord_state_clear(&co.state);
	coord_events_free(&co);
	coord_metrics_free(&co.metrics);
	qb_loop_destroy(co.loop);
}

static void deliver(uint32_t sender, enum ha_msg_type type, const ProtobufCMessage *m)
{
	uint8_t *buf = NULL;
	size_t len = 0;

	CHECK_EQ_INT(ha_env_encode(type, m, &buf, &len), 0);
	coord_replica_deliver(&co, sender, buf, len);
	delivered++;
	free(buf);
}

/* The leader's commit of @ch; true when it applied. */
static bool commit(Hactl__Change *ch)
{
	Hactl__CpgCommit cm = HACTL__CPG_COMMIT__INIT;
	uint64_t seq = co.state.seq;

	cm.leader = 1;
	cm.seq = seq + 1;
	cm.has_epoch = true;
	cm.epoch = co.epoch;
	cm.change = ch;
	deliver(1, HA_MSG_CPG_COMMIT, &cm.base);
	return co.state.seq == seq + 1;
}

static const char *def_g1 = "[guest]\nname = g1\ntype = container\nmemory = 64M\n"
			    "command = /bin/true\n[storage]\ntemplate = container\n";

static bool define_start(const char *def, const char *name, const char *node)
{
	Hactl__Change ch = HACTL__CHANGE__INIT;
	Hactl__GuestDefineChange gd = HACTL__GUEST_DEFINE_CHANGE__INIT;
	Hactl__GuestStartChange gs = HACTL__GUEST_START_CHANGE__INIT;

	gd.definition.data = (uint8_t *)def;
	gd.definition.len = strlen(def);
	ch.kind_case = HACTL__CHANGE__KIND_GUEST_DEFINE;
	ch.guest_define = &gd;
	if (!commit(&ch)) {
		return false;
	}
	gs.name = (char *)name;
	gs.node = (char *)node;
	ch.kind_case = HACTL__CHANGE__KIND_GUEST_START;
	ch.guest_start = &gs;
	return commit(&ch);
}

/* Node @node's agent reports @name in @state; with @mig a migration report. */
static void status(uint32_t node, const char *name, const char *state,
		   Hactl__MigrationReport *mig)
{
	Hactl__CpgGuestStatus cs = HACTL__CPG_GUEST_STATUS__INIT;
	Hactl__GuestStatus gs = HACTL__GUEST_STATUS__INIT;
	Hactl__GuestStatus *list[1] = { &gs };
	const Hactl__GuestRecord *g = coord_state_guest(&co.state, name);

	gs.name = (char *)name;
	gs.state = (char *)state;
	gs.has_generation = true;
	gs.generation = g ? g->generation : 0;
	gs.migration = mig;
	cs.node = node;
	cs.guests = list;
	cs.n_guests = 1;
	deliver(node, HA_MSG_CPG_GUEST_STATUS, &cs.base);
}

static bool migrate_start(const char *name, const char *to)
{
	Hactl__Change ch = HACTL__CHANGE__INIT;
	Hactl__MigrateStartChange ms = HACTL__MIGRATE_START_CHANGE__INIT;

	ms.guest = (char *)name;
	ms.node = (char *)to;
	ch.kind_case = HACTL__CHANGE__KIND_MIGRATE_START;
	ch.migrate_start = &ms;
	return commit(&ch);
}

static bool migrate_end(const char *name, bool ok)
{
	Hactl__Change ch = HACTL__CHANGE__INIT;
	Hactl__MigrateEndChange me = HACTL__MIGRATE_END_CHANGE__INIT;
	const Hactl__GuestRecord *g = coord_state_guest(&co.state, name);

	me.guest = (char *)name;
	me.id = g && g->migration ? g->migration->id : 0;
	me.commit = ok;
	me.reason = ok ? NULL : "cancelled";
	ch.kind_case = HACTL__CHANGE__KIND_MIGRATE_END;
	ch.migrate_end = &me;
	return commit(&ch);
}

static void fence_status(uint32_t node, const char *state)
{
	Hactl__CpgFenceStatus fs = HACTL__CPG_FENCE_STATUS__INIT;

	fs.leader = 1;
	fs.node = node;
	fs.state = (char *)state;
	deliver(1, HA_MSG_CPG_FENCE_STATUS, &fs.base);
}

/* The value of the sample @series ("name" or "name{labels}"); NAN when
 * there is none. */
static double sample(const char *text, const char *series)
{
	size_t n = strlen(series);

	for (const char *p = text; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL) {
		if (strncmp(p, series, n) == 0 && p[n] == ' ') {
			return strtod(p + n + 1, NULL);
		}
	}
	return NAN;
}

static bool name_ok(const char *s, size_t n)
{
	if (n == 0 || !(s[0] == '_' || s[0] == ':' || (s[0] >= 'a' && s[0] <= 'z') ||
			(s[0] >= 'A' && s[0] <= 'Z'))) {
		return false;
	}
	for (size_t i = 1; i < n; i++) {
		char ch = s[i];

		if (!(ch == '_' || ch == ':' || (ch >= 'a' && ch <= 'z') ||
		      (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9'))) {
			return false;
		}
	}
	return true;
}

/*
 * The rules of the text format 0.0.4 that promtool checks, here without
 * promtool: HELP and TYPE before a family's samples, each family once
 * and contiguous, valid names and labels, numeric values, counters named
 * _total, histograms with cumulative buckets ending in +Inf equal to
 * _count, and the text ends with a newline. Returns the number of
 * families.
 */
static int check_exposition(const char *text)
{
	char family[128] = "", type[16] = "", seen[8192] = " ";
	uint64_t last_bucket = 0;
	bool inf_seen = false;
	int families = 0;
	const char *p = text;

	CHECK(text[0] != 0 && text[strlen(text) - 1] == '\n');
	while (*p) {
		const char *eol = strchr(p, '\n');
		size_t len = eol ? (size_t)(eol - p) : strlen(p);
		char line[1024];

		CHECK(len < sizeof(line));
		if (len >= sizeof(line)) {
			break;
		}
		memcpy(line, p, len);
		line[len] = 0;
		p += len + (eol != NULL);
		if (strncmp(line, "# HELP ", 7) == 0) {
			char *name = line + 7, *sp = strchr(name, ' ');
			char key[140];

			CHECK(sp != NULL && sp[1] != 0);
			if (sp == NULL) {
				continue;
			}
			*sp = 0;
			CHECK(name_ok(name, strlen(name)));
			CHECK(strncmp(name, "hactl_", 6) == 0);
			snprintf(key, sizeof(key), " %s ", name);
			CHECK(strstr(seen, key) == NULL); /* each family once */
			if (strlen(seen) + strlen(key) < sizeof(seen)) {
				strcat(seen, key + 1);
			}
			snprintf(family, sizeof(family), "%s", name);
			type[0] = 0;
			families++;
			continue;
		}
		if (strncmp(line, "# TYPE ", 7) == 0) {
			char *name = line + 7, *sp = strchr(name, ' ');

			CHECK(sp != NULL);
			if (sp == NULL) {
				continue;
			}
			*sp = 0;
			CHECK_EQ_STR(name, family);
			CHECK(type[0] == 0);
			snprintf(type, sizeof(type), "%s", sp + 1);
			CHECK(strcmp(type, "counter") == 0 || strcmp(type, "gauge") == 0 ||
			      strcmp(type, "histogram") == 0);
			if (strcmp(type, "counter") == 0) {
				size_t fl = strlen(family);

				CHECK(fl > 6 && strcmp(family + fl - 6, "_total") == 0);
			}
			last_bucket = 0;
			inf_seen = false;
			continue;
		}
		CHECK(line[0] != '#' && line[0] != 0);
		{
			size_t nlen = strcspn(line, "{ ");
			const char *rest = line + nlen, *value;
			char *end;
			double v;
			bool is_hist_part = false;

			CHECK(name_ok(line, nlen));
			CHECK(type[0] != 0); /* TYPE came first */
			if (strcmp(type, "histogram") == 0) {
				size_t fl = strlen(family);

				is_hist_part = nlen > fl && strncmp(line, family, fl) == 0 &&
					       (strncmp(line + fl, "_bucket{", 8) == 0 ||
						strncmp(line + fl, "_sum", 4) == 0 ||
						strncmp(line + fl, "_count", 6) == 0);
				CHECK(is_hist_part);
			} else {
				CHECK(nlen == strlen(family) && strncmp(line, family, nlen) == 0);
			}
			if (*rest == '{') {
				const char *q = rest + 1;

				/* name="value" pairs, escapes only \\ \" \n */
				while (*q && *q != '}') {
					size_t ln = strcspn(q, "=");

					CHECK(name_ok(q, ln));
					q += ln;
					CHECK(q[0] == '=' && q[1] == '"');
					if (q[0] != '=' || q[1] != '"') {
						break;
					}
					q += 2;
					while (*q && *q != '"') {
						if (*q == '\\') {
							CHECK(q[1] == '\\' || q[1] == '"' || q[1] == 'n');
							q++;
						}
						q++;
					}
					CHECK(*q == '"');
					if (*q) {
						q++;
					}
					if (*q == ',') {
						q++;
					}
				}
				CHECK(*q == '}');
				rest = *q ? q + 1 : q;
			}
			CHECK(*rest == ' ');
			value = rest + 1;
			v = strtod(value, &end);
			CHECK(end != value && *end == 0);
			if (strcmp(type, "counter") == 0) {
				CHECK(v >= 0);
			}
			if (is_hist_part && strstr(line, "_bucket{") != NULL) {
				CHECK((uint64_t)v >= last_bucket); /* cumulative */
				last_bucket = (uint64_t)v;
				if (strstr(line, "le=\"+Inf\"")) {
					inf_seen = true;
				}
			} else if (is_hist_part && strstr(line, "_count ") != NULL) {
				CHECK(inf_seen);
				CHECK_EQ_INT((uint64_t)v, last_bucket);
			}
		}
	}
	return families;
}

static char *metrics_now(void)
{
	size_t len = 0;
	char *t = coord_metrics_text(&co, &len);

	CHECK(t != NULL && strlen(t) == len);
	return t;
}

/* What the cluster did, and what /metrics says about it. */
static void test_counts(void)
{
	Hactl__MigrationReport mr = HACTL__MIGRATION_REPORT__INIT;
	Hactl__Change ch = HACTL__CHANGE__INIT;
	Hactl__NodeFenceChange nf = HACTL__NODE_FENCE_CHANGE__INIT;
	Hactl__RecoverChange rc = HACTL__RECOVER_CHANGE__INIT;
	Hactl__RecoverPlacement rp = HACTL__RECOVER_PLACEMENT__INIT;
	Hactl__RecoverPlacement *rps[1] = { &rp };
	static const uint32_t rest[] = { 1, 3 };
	char *t;
	int fam;

	setup();
	t = metrics_now();
	fam = check_exposition(t);
	CHECK(fam >= 30);
	CHECK_EQ_INT(sample(t, "hactl_quorate"), 1);
	CHECK_EQ_INT(sample(t, "hactl_leader"), 0);
	CHECK_EQ_INT(sample(t, "hactl_node_id"), 2);
	CHECK_EQ_INT(sample(t, "hactl_leader_node_id{node=\"n1\"}"), 1);
	CHECK_EQ_INT(sample(t, "hactl_nodes{state=\"online\"}"), 3);
	CHECK_EQ_INT(sample(t, "hactl_nodes{state=\"offline\"}"), 0);
	CHECK_EQ_INT(sample(t, "hactl_migrations_total{result=\"committed\"}"), 0);
	CHECK_EQ_INT(sample(t, "hactl_migration_duration_seconds_count"), 0);
	CHECK_EQ_INT(sample(t, "hactl_migration_duration_seconds_bucket{le=\"+Inf\"}"), 0);
	free(t);

	/* a guest, running on n1 */
	CHECK(define_start(def_g1, "g1", "n1"));
	status(1, "g1", "running", NULL);
	t = metrics_now();
	CHECK_EQ_INT(sample(t, "hactl_guests{state=\"running\",host=\"n1\"}"), 1);
	CHECK_EQ_INT(sample(t, "hactl_state_seq"), 2);
	CHECK_EQ_INT(sample(t, "hactl_commits_applied_total"), 2);
	free(t);

	/* migrated to n2: 3.5 s from start to commit; the source says its
	 * downtime after the commit (42 ms) */
	co.test_now_ms = 101000;
	CHECK(migrate_start("g1", "n2"));
	mr.id = co.state.seq;
	mr.role = "destination";
	mr.phase = "received";
	status(2, "g1", "paused", &mr);
	t = metrics_now();
	CHECK_EQ_INT(sample(t, "hactl_migrations_in_progress"), 1);
	CHECK_EQ_INT(sample(t, "hactl_migrations_started_total"), 1);
	free(t);
	co.test_now_ms = 104500;
	CHECK(migrate_end("g1", true));
	t = metrics_now();
	CHECK_EQ_INT(sample(t, "hactl_migrations_in_progress"), 0);
	CHECK_EQ_INT(sample(t, "hactl_migrations_total{result=\"committed\"}"), 1);
	CHECK_EQ_INT(sample(t, "hactl_migration_duration_seconds_count"), 1);
	CHECK_EQ_INT(sample(t, "hactl_migration_duration_seconds_bucket{le=\"2\"}"), 0);
	CHECK_EQ_INT(sample(t, "hactl_migration_duration_seconds_bucket{le=\"5\"}"), 1);
	CHECK(fabs(sample(t, "hactl_migration_duration_seconds_sum") - 3.5) < 1e-9);
	CHECK_EQ_INT(sample(t, "hactl_migration_downtime_seconds_count"), 0);
	free(t);
	mr.role = "source";
	mr.phase = "finished";
	mr.has_downtime_ms = true;
	mr.downtime_ms = 42;
	status(1, "g1", "stopped", &mr);
	t = metrics_now();
	CHECK_EQ_INT(sample(t, "hactl_migration_downtime_seconds_count"), 1);
	CHECK_EQ_INT(sample(t, "hactl_migration_downtime_seconds_bucket{le=\"0.025\"}"), 0);
	CHECK_EQ_INT(sample(t, "hactl_migration_downtime_seconds_bucket{le=\"0.05\"}"), 1);
	CHECK(fabs(sample(t, "hactl_migration_downtime_seconds_sum") - 0.042) < 1e-9);
	free(t);
	/* its next report does not count it twice */
	status(1, "g1", "stopped", &mr);
	status(2, "g1", "running", NULL);
	t = metrics_now();
	CHECK_EQ_INT(sample(t, "hactl_migration_downtime_seconds_count"), 1);
	CHECK_EQ_INT(sample(t, "hactl_guests{state=\"running\",host=\"n2\"}"), 1);
	CHECK(isnan(sample(t, "hactl_guests{state=\"running\",host=\"n1\"}")));
	free(t);

	/* a migration cancelled: aborted, no duration */
	CHECK(migrate_start("g1", "n3"));
	CHECK(migrate_end("g1", false));
	t = metrics_now();
	CHECK_EQ_INT(sample(t, "hactl_migrations_started_total"), 2);
	CHECK_EQ_INT(sample(t, "hactl_migrations_total{result=\"aborted\"}"), 1);
	CHECK_EQ_INT(sample(t, "hactl_migration_duration_seconds_count"), 1);
	free(t);
	/* a commit that does not apply is not counted */
	CHECK(!migrate_end("g1", true));
	t = metrics_now();
	CHECK_EQ_INT(sample(t, "hactl_migrations_total{result=\"committed\"}"), 1);
	CHECK_EQ_INT(sample(t, "hactl_commits_applied_total"), 6);
	free(t);

	/* n2 is lost at 200 s: one failed fencing run, one that confirms it,
	 * the commit, and 12 s after the loss the guest restarts on n1 */
	co.test_now_ms = 200000;
	memcpy(co.members, rest, sizeof(rest));
	co.n_members = 2;
	coord_lost_set(&co, 2, 200000);
	fence_status(2, "fencing");
	fence_status(2, "failed");
	fence_status(2, "fencing");
	fence_status(2, "done");
	nf.node = "n2";
	nf.fenced = true;
	nf.method = "agent";
	ch.kind_case = HACTL__CHANGE__KIND_NODE_FENCE;
	ch.node_fence = &nf;
	CHECK(commit(&ch));
	co.test_now_ms = 212000;
	rp.guest = "g1";
	rp.node = "n1";
	rp.mode = "cold";
	rc.placements = rps;
	rc.n_placements = 1;
	ch.kind_case = HACTL__CHANGE__KIND_RECOVER;
	ch.recover = &rc;
	CHECK(commit(&ch));
	CHECK_EQ_INT(coord_state_guest(&co.state, "g1")->owner, 1);
	t = metrics_now();
	CHECK_EQ_INT(sample(t, "hactl_fence_attempts_total"), 2);
	CHECK_EQ_INT(sample(t, "hactl_fence_failures_total"), 1);
	CHECK_EQ_INT(sample(t, "hactl_fenced_total{method=\"agent\"}"), 1);
	CHECK_EQ_INT(sample(t, "hactl_failover_guests_total{result=\"restarted\"}"), 1);
	CHECK_EQ_INT(sample(t, "hactl_failover_seconds_count"), 1);
	CHECK_EQ_INT(sample(t, "hactl_failover_seconds_bucket{le=\"10\"}"), 0);
	CHECK_EQ_INT(sample(t, "hactl_failover_seconds_bucket{le=\"15\"}"), 1);
	CHECK(fabs(sample(t, "hactl_failover_seconds_sum") - 12) < 1e-9);
	CHECK_EQ_INT(sample(t, "hactl_nodes{state=\"fenced\"}"), 1);
	CHECK_EQ_INT(sample(t, "hactl_nodes{state=\"online\"}"), 2);
	CHECK_EQ_INT(sample(t, "hactl_node_up{node=\"n2\"}"), 0);
	CHECK_EQ_INT(sample(t, "hactl_guests{state=\"recovering\",host=\"n1\"}"), 1);
	/* the same plan again (a resend) changes nothing: not counted */
	free(t);
	CHECK(commit(&ch));
	t = metrics_now();
	CHECK_EQ_INT(sample(t, "hactl_failover_guests_total{result=\"restarted\"}"), 1);
	CHECK_EQ_INT(sample(t, "hactl_failover_seconds_count"), 1);
	/* CPG traffic: every delivered message, its own and the refused one */
	CHECK_EQ_INT(sample(t, "hactl_cpg_messages_received_total"), delivered);
	CHECK_EQ_INT(sample(t, "hactl_commits_refused_total"), 0);
	CHECK_EQ_INT(check_exposition(t), fam);
	free(t);

	/* a balance job with two moves */
	{
		Hactl__JobStartChange js = HACTL__JOB_START_CHANGE__INIT;
		Hactl__JobMove m1 = HACTL__JOB_MOVE__INIT, m2 = HACTL__JOB_MOVE__INIT;
		Hactl__JobMove *ms[2] = { &m1, &m2 };

		CHECK(define_start("[guest]\nname = g2\ntype = container\nmemory = 64M\n"
				   "command = /bin/true\n[storage]\ntemplate = container\n",
				   "g2", "n1"));
		status(1, "g1", "running", NULL);
		status(1, "g2", "running", NULL);
		m1.guest = "g1";
		m1.from = "n1";
		m1.to = "n3";
		m2.guest = "g2";
		m2.from = "n1";
		m2.to = "n3";
		js.kind = "balance";
		js.moves = ms;
		js.n_moves = 2;
		ch.kind_case = HACTL__CHANGE__KIND_JOB_START;
		ch.job_start = &js;
		CHECK(commit(&ch));
		t = metrics_now();
		CHECK_EQ_INT(sample(t, "hactl_jobs_started_total{kind=\"balance\"}"), 1);
		CHECK_EQ_INT(sample(t, "hactl_balance_moves_total"), 2);
		CHECK_EQ_INT(sample(t, "hactl_jobs_active"), 1);
		CHECK_EQ_INT(sample(t, "hactl_guests{state=\"running\",host=\"n1\"}"), 2);
		free(t);
	}

	/* a message that does not decode is counted by reason */
	coord_replica_deliver(&co, 1, "garbage!", 8);
	t = metrics_now();
	CHECK(sample(t, "hactl_messages_rejected_total{reason=\"magic\"}") +
		      sample(t, "hactl_messages_rejected_total{reason=\"short\"}") >= 1);
	free(t);
	teardown();
}

/* Label values with quotes, backslashes and line feeds stay one line. */
static void test_label_escapes(void)
{
	char *t;

	setup();
	CHECK(define_start(def_g1, "g1", "n1"));
	CHECK(coord_state_node_add(&co.state, 4, "we\"ird\\no\nde") != NULL);
	t = metrics_now();
	CHECK_EQ_INT(sample(t, "hactl_node_up{node=\"we\\\"ird\\\\no\\nde\"}"), 0);
	check_exposition(t);
	free(t);
	/* a word that is no guest state's (a newer agent's) counts as
	 * "other" */
	status(1, "g1", "we\"ird\\st\nate", NULL);
	t = metrics_now();
	CHECK_EQ_INT(sample(t, "hactl_guests{state=\"other\",host=\"n1\"}"), 1);
	check_exposition(t);
	free(t);
	/* many distinct states: bounded rows */
	for (int i = 0; i < 100; i++) {
		char st[32];

		snprintf(st, sizeof(st), "state%d", i);
		status(1, "g1", st, NULL);
		free(metrics_now());
	}
	teardown();
}

static unsigned answer(const char *method, const char *path, const char *auth,
		       const char *token, const char *events, bool body,
		       struct coord_http_resp *rs)
{
	struct coord_http_req rq = { .method = method, .path = path, .authorization = auth,
				     .token = token, .events = events, .has_body = body };

	coord_http_handle(&co, &rq, rs);
	CHECK(rs->body != NULL);
	CHECK(rs->content_type != NULL);
	return rs->status;
}

static unsigned answer_free(const char *method, const char *path, const char *auth,
			    const char *token)
{
	struct coord_http_resp rs;
	unsigned s = answer(method, path, auth, token, NULL, false, &rs);

	free(rs.body);
	return s;
}

static size_t count_of(const char *hay, const char *needle)
{
	size_t n = 0;

	for (const char *p = strstr(hay, needle); p; p = strstr(p + 1, needle)) {
		n++;
	}
	return n;
}

static void test_answers(void)
{
	struct coord_http_resp rs;
	json_object *j, *a;
	char *t;

	setup();
	CHECK(define_start(def_g1, "g1", "n1"));
	status(1, "g1", "running", NULL);
	for (int i = 0; i < 70; i++) {
		coord_event(&co, "event %d", i);
	}
	coord_event(&co, "</script><script>alert(1)</script><!-- x");

	CHECK_EQ_INT(answer("GET", "/metrics", NULL, NULL, NULL, false, &rs), 200);
	CHECK(strncmp(rs.content_type, "text/plain; version=0.0.4", 25) == 0);
	CHECK(strstr(rs.body, "\nhactl_state_seq 2\n") != NULL);
	CHECK_EQ_INT(rs.len, strlen(rs.body));
	free(rs.body);
	CHECK_EQ_INT(answer_free("HEAD", "/metrics", NULL, NULL), 200);

	CHECK_EQ_INT(answer("GET", "/status.json", NULL, NULL, NULL, false, &rs), 200);
	CHECK_EQ_STR(rs.content_type, "application/json");
	j = json_tokener_parse(rs.body);
	CHECK(j != NULL);
	if (j) {
		CHECK(json_object_object_get_ex(j, "nodes", &a));
		CHECK_EQ_INT(json_object_array_length(a), 3);
		CHECK_EQ_STR(json_object_get_string(json_object_object_get(
				     json_object_array_get_idx(a, 2), "name")), "n3");
		CHECK(json_object_object_get_ex(j, "guests", &a));
		CHECK_EQ_INT(json_object_array_length(a), 1);
		CHECK_EQ_STR(json_object_get_string(json_object_object_get(
				     json_object_array_get_idx(a, 0), "node")), "n1");
		CHECK_EQ_STR(json_object_get_string(json_object_object_get(
				     json_object_array_get_idx(a, 0), "state")), "running");
		CHECK(json_object_object_get_ex(j, "events", &a));
		CHECK_EQ_INT(json_object_array_length(a), COORD_HTTP_EVENTS);
		CHECK_EQ_STR(json_object_get_string(json_object_object_get(j, "leader")), "n1");
		CHECK(json_object_get_boolean(json_object_object_get(j, "quorate")));
		json_object_put(j);
	}
	free(rs.body);
	CHECK_EQ_INT(answer("GET", "/status.json", NULL, NULL, "3", false, &rs), 200);
	j = json_tokener_parse(rs.body);
	CHECK(j && json_object_object_get_ex(j, "events", &a) &&
	      json_object_array_length(a) == 3);
	json_object_put(j);
	free(rs.body);
	CHECK_EQ_INT(answer("GET", "/status.json", NULL, NULL, "x", false, &rs), 400);
	free(rs.body);
	CHECK_EQ_INT(answer("GET", "/status.json", NULL, NULL, "201", false, &rs), 400);
	free(rs.body);
	CHECK_EQ_INT(answer("GET", "/status.json", NULL, NULL, "-1", false, &rs), 400);
	free(rs.body);

	/* the page: the data inline, nothing in it can close its script */
	CHECK_EQ_INT(answer("GET", "/", NULL, NULL, NULL, false, &rs), 200);
	CHECK(strncmp(rs.content_type, "text/html", 9) == 0);
	CHECK(strstr(rs.body, "\"name\":\"g1\"") != NULL);
	CHECK(strstr(rs.body, "\"name\":\"n2\"") != NULL);
	CHECK(strstr(rs.body, "HACTL_STATUS_JSON") == NULL);
	CHECK_EQ_INT(count_of(rs.body, "</script>"), 2);
	CHECK_EQ_INT(count_of(rs.body, "<script"), 2);
	CHECK(strstr(rs.body, "<!-- x") == NULL);
	CHECK(strstr(rs.body, "http://") == NULL && strstr(rs.body, "https://") == NULL);
	CHECK_EQ_INT(rs.len, strlen(rs.body));
	free(rs.body);
	CHECK_EQ_INT(answer_free("GET", "/index.html", NULL, NULL), 200);

	/* read-only, no bodies, nothing else served */
	CHECK_EQ_INT(answer("POST", "/metrics", NULL, NULL, NULL, true, &rs), 405);
	CHECK_EQ_STR(rs.allow, "GET, HEAD");
	free(rs.body);
	CHECK_EQ_INT(answer_free("DELETE", "/", NULL, NULL), 405);
	CHECK_EQ_INT(answer_free("", "/", NULL, NULL), 405);
	CHECK_EQ_INT(answer("GET", "/metrics", NULL, NULL, NULL, true, &rs), 400);
	free(rs.body);
	CHECK_EQ_INT(answer_free("GET", "/nope", NULL, NULL), 404);
	CHECK_EQ_INT(answer_free("GET", "", NULL, NULL), 404);
	CHECK_EQ_INT(answer_free("GET", "/metrics/", NULL, NULL), 404);
	CHECK_EQ_INT(answer_free("GET", "/../etc/passwd", NULL, NULL), 404);
	CHECK_EQ_INT(answer_free(NULL, NULL, NULL, NULL), 405);

	/* with a token: every request needs it, whatever it asks */
	snprintf(co.cfg.metrics_token, sizeof(co.cfg.metrics_token), "s3cret");
	CHECK_EQ_INT(answer("GET", "/metrics", NULL, NULL, NULL, false, &rs), 401);
	CHECK(rs.challenge);
	free(rs.body);
	CHECK_EQ_INT(answer_free("GET", "/nope", NULL, NULL), 401);
	CHECK_EQ_INT(answer_free("POST", "/", NULL, NULL), 401);
	CHECK_EQ_INT(answer_free("GET", "/metrics", "Bearer wrong", NULL), 401);
	CHECK_EQ_INT(answer_free("GET", "/metrics", "Bearer s3cre", NULL), 401);
	CHECK_EQ_INT(answer_free("GET", "/metrics", "Bearer s3cretX", NULL), 401);
	CHECK_EQ_INT(answer_free("GET", "/metrics", "Basic s3cret", NULL), 401);
	CHECK_EQ_INT(answer_free("GET", "/metrics", "s3cret", NULL), 401);
	CHECK_EQ_INT(answer_free("GET", "/metrics", "Bearer ", NULL), 401);
	CHECK_EQ_INT(answer_free("GET", "/metrics", NULL, ""), 401);
	CHECK_EQ_INT(answer_free("GET", "/metrics", NULL, "wrong"), 401);
	CHECK_EQ_INT(answer_free("GET", "/metrics", "Bearer s3cret", NULL), 200);
	CHECK_EQ_INT(answer_free("GET", "/metrics", "bearer  s3cret ", NULL), 200);
	CHECK_EQ_INT(answer_free("GET", "/status.json", NULL, "s3cret"), 200);
	CHECK_EQ_INT(answer_free("GET", "/", "Bearer wrong", "s3cret"), 200);
	CHECK_EQ_INT(answer_free("GET", "/nope", "Bearer s3cret", NULL), 404);

	/* every answer counted by its code */
	t = metrics_now();
	CHECK(sample(t, "hactl_http_requests_total{code=\"401\"}") == 11);
	CHECK(sample(t, "hactl_http_requests_total{code=\"405\"}") == 4);
	CHECK(sample(t, "hactl_http_requests_total{code=\"404\"}") == 5);
	CHECK(sample(t, "hactl_http_requests_total{code=\"400\"}") == 4);
	free(t);
	teardown();
}

#ifdef HAVE_MICROHTTPD

/* One request over TCP; the status code of the answer, 0 when the
 * connection closed without one. @body_out gets the answer (truncated). */
static int raw_request(unsigned port, const char *req, size_t req_len, char *out, size_t outlen)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port),
				  .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	struct timeval tv = { .tv_sec = 20 };
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	size_t got = 0;
	int code = 0;

	out[0] = 0;
	if (fd < 0) {
		return -1;
	}
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		close(fd);
		return -1;
	}
	for (size_t off = 0; off < req_len;) {
		ssize_t n = send(fd, req + off, req_len - off, MSG_NOSIGNAL);

		if (n <= 0) {
			break; /* the server may close early: read what it said */
		}
		off += (size_t)n;
	}
	for (;;) {
		ssize_t n = recv(fd, out + got, outlen - 1 - got, 0);

		if (n <= 0) {
			break;
		}
		got += (size_t)n;
		if (got == outlen - 1) {
			char sink[4096];

			while (recv(fd, sink, sizeof(sink), 0) > 0) {
			}
			break;
		}
	}
	out[got] = 0;
	close(fd);
	if (sscanf(out, "HTTP/1.%*d %d", &code) != 1) {
		code = 0;
	}
	return code;
}

static int32_t on_child(int32_t sig, void *data)
{
	qb_loop_stop(co.loop);
	return 0;
}

static void give_up(void *data)
{
	fprintf(stderr, "the client did not finish in time\n");
	qb_loop_stop(co.loop);
}

#define TOKEN_HDR "Authorization: Bearer tok\r\n"

/* What a client sends, and the answers it may get (0: closed). */
struct wire_case {
	const char *what;
	const char *req;     /* NULL: built by the client */
	int want, also;      /* the code, or also this one */
	const char *in_body; /* NULL: anything */
};

static const struct wire_case wire_cases[] = {
	{ "metrics", "GET /metrics HTTP/1.1\r\nHost: h\r\n" TOKEN_HDR "Connection: close\r\n\r\n",
	  200, 200, "\nhactl_nodes{state=\"online\"} 3\n" },
	{ "page", "GET /?token=tok HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n", 200, 200,
	  "\"name\":\"g1\"" },
	{ "status.json", "GET /status.json?token=tok&events=1 HTTP/1.1\r\nHost: h\r\n"
	  "Connection: close\r\n\r\n", 200, 200, "\"guests_total\":1" },
	{ "no token", "GET /metrics HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n", 401, 401,
	  "WWW-Authenticate: Bearer" },
	{ "wrong token", "GET /metrics?token=nope HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
	  401, 401, NULL },
	{ "HEAD", "HEAD /metrics HTTP/1.1\r\nHost: h\r\n" TOKEN_HDR "Connection: close\r\n\r\n",
	  200, 200, NULL },
	{ "POST", "POST /metrics HTTP/1.1\r\nHost: h\r\n" TOKEN_HDR "Content-Length: 5\r\n"
	  "Connection: close\r\n\r\nhello", 405, 405, "Allow: GET, HEAD" },
	{ "GET with a body", "GET /metrics HTTP/1.1\r\nHost: h\r\n" TOKEN_HDR
	  "Content-Length: 3\r\nConnection: close\r\n\r\nabc", 400, 400, NULL },
	{ "chunked body", "GET /metrics HTTP/1.1\r\nHost: h\r\n" TOKEN_HDR
	  "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
	  400, 400, NULL },
	{ "not found", "GET /admin HTTP/1.1\r\nHost: h\r\n" TOKEN_HDR "Connection: close\r\n\r\n",
	  404, 404, NULL },
	{ "bad events", "GET /status.json?events=lots HTTP/1.1\r\nHost: h\r\n" TOKEN_HDR
	  "Connection: close\r\n\r\n", 400, 400, NULL },
	{ "garbage", "\x01\x02\xff garbage\r\n\r\n", 400, 0, NULL },
	{ "no version", "GET /metrics\r\n\r\n", 400, 0, NULL },
	/* libmicrohttpd 0.9.75 lets it pass; either way an answer */
	{ "HTTP/1.1 without Host", "GET /metrics HTTP/1.1\r\n" TOKEN_HDR
	  "Connection: close\r\n\r\n", 400, 200, NULL },
	{ "headers too large", NULL, 431, 413, NULL },
	{ "still serving", "GET /metrics HTTP/1.0\r\n" TOKEN_HDR "\r\n", 200, 200,
	  "hactl_http_requests_total{code=\"401\"} 2\n" },
};

static int client(unsigned port, int out_fd)
{
	static char resp[1 << 20];
	size_t n = sizeof(wire_cases) / sizeof(wire_cases[0]);

	for (size_t i = 0; i < n; i++) {
		const struct wire_case *wc = &wire_cases[i];
		char big[64 * 1024];
		const char *req = wc->req;
		size_t len;
		int code;
		char line[64];

		if (req == NULL) {
			int k = snprintf(big, sizeof(big), "GET /metrics HTTP/1.1\r\nHost: h\r\n"
				       TOKEN_HDR "X-Big: ");

			memset(big + k, 'a', sizeof(big) - (size_t)k - 5);
			memcpy(big + sizeof(big) - 5, "\r\n\r\n", 5);
			req = big;
		}
		len = strlen(req);
		code = raw_request(port, req, len, resp, sizeof(resp));
		if (code != wc->want && code != wc->also) {
			fprintf(stderr, "%s: answer %d, expected %d: %.300s\n", wc->what, code,
				wc->want, resp);
			snprintf(line, sizeof(line), "F\n");
		} else if (wc->in_body && strstr(resp, wc->in_body) == NULL) {
			fprintf(stderr, "%s: no '%s' in %.2000s\n", wc->what, wc->in_body, resp);
			snprintf(line, sizeof(line), "F\n");
		} else {
			snprintf(line, sizeof(line), "P\n");
		}
		if (write(out_fd, line, strlen(line)) < 0) {
			return 1;
		}
	}
	return 0;
}

static void test_server(void)
{
	qb_loop_timer_handle t;
	int fds[2], wstatus = 0;
	char results[256] = "";
	size_t n = sizeof(wire_cases) / sizeof(wire_cases[0]);
	unsigned port;
	pid_t pid;
	ssize_t got;

	setup();
	CHECK(define_start(def_g1, "g1", "n1"));
	status(1, "g1", "running", NULL);
	snprintf(co.cfg.metrics_listen, sizeof(co.cfg.metrics_listen), "127.0.0.1:0");
	snprintf(co.cfg.metrics_token, sizeof(co.cfg.metrics_token), "tok");
	CHECK_EQ_INT(coord_http_start(&co), 0);
	port = coord_http_port(&co);
	CHECK(port != 0);
	if (port == 0) {
		teardown();
		return;
	}
	CHECK_EQ_INT(pipe(fds), 0);
	qb_loop_signal_add(co.loop, QB_LOOP_HIGH, SIGCHLD, NULL, on_child, NULL);
	qb_loop_timer_add(co.loop, QB_LOOP_LOW, 120ull * QB_TIME_NS_IN_SEC, NULL, give_up, &t);
	pid = fork();
	if (pid == 0) {
		close(fds[0]);
		_exit(client(port, fds[1]));
	}
	close(fds[1]);
	qb_loop_run(co.loop);
	CHECK(waitpid(pid, &wstatus, 0) == pid && WIFEXITED(wstatus) && WEXITSTATUS(wstatus) == 0);
	got = read(fds[0], results, sizeof(results) - 1);
	close(fds[0]);
	CHECK_EQ_INT(got, (ssize_t)(2 * n));
	for (size_t i = 0; got > 0 && i < n && 2 * i < (size_t)got; i++) {
		if (results[2 * i] != 'P') {
			fprintf(stderr, "wire case '%s' failed\n", wire_cases[i].what);
		}
		CHECK(results[2 * i] == 'P');
	}
	/* stopping closes everything it opened */
	coord_http_stop(&co);
	CHECK_EQ_INT(coord_http_port(&co), 0);
	teardown();
}

/* A listener whose address is taken keeps the coordinator running and
 * tries again. */
static void test_busy_address(void)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t sl = sizeof(sa);
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	setup();
	CHECK(fd >= 0 && bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 && listen(fd, 1) == 0);
	CHECK_EQ_INT(getsockname(fd, (struct sockaddr *)&sa, &sl), 0);
	snprintf(co.cfg.metrics_listen, sizeof(co.cfg.metrics_listen), "127.0.0.1:%u",
		 ntohs(sa.sin_port));
	CHECK_EQ_INT(coord_http_start(&co), 0);
	CHECK_EQ_INT(coord_http_port(&co), 0);
	close(fd);
	teardown();
}

#endif

int main(void)
{
	if (mkdtemp(tmpdir) == NULL) {
		perror("mkdtemp");
		return 1;
	}
	test_counts();
	test_label_escapes();
	test_answers();
#ifdef HAVE_MICROHTTPD
	test_server();
	test_busy_address();
#else
	printf("# built without libmicrohttpd: the server cases are skipped\n");
#endif
	{
		char path[PATH_MAX];

		snprintf(path, sizeof(path), "%s/state", tmpdir);
		unlink(path);
		rmdir(tmpdir);
	}
	(void)sent;
	return ha_test_done("test_coord_metrics");
}
