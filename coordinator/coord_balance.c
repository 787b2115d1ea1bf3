/*
 * coord_balance.c - the balancing engine online (docs/balancing.md).
 *
 * Every coordinator keeps the policy of its [coordinator] policy path,
 * reloaded when the files change (or on SIGHUP); a bad file keeps the
 * policy in force and says why. Every coordinator can describe the
 * cluster to the engine (coord_balance_snapshot, built by coord_place.c
 * like every placement's), so `hactl balance` plans on the node it runs on
 * with the same engine and input as the leader.
 * Only the leader acts by itself: each interval of an enabled policy it
 * runs one round and commits the first wave of the plan as a job
 * (coord_job.c), whose moves are the same transactions as `hactl
 * migrate`. A round waits while any migration or job is in flight, so one
 * round's moves are over before the next round looks; the engine's hold
 * time keeps a moved guest in place. The leader's job steps run from the
 * same tick (coord_job_tick) and after each commit that ends a move.
 */
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <qb/qblog.h>

#include "coordinator.h"
#include "util.h"

#define TICK_MS 1000

/* FNV-1a over what identifies the policy files' contents cheaply. */
static uint64_t fnv(uint64_t h, const void *p, size_t n)
{
	const unsigned char *b = p;

	for (size_t i = 0; i < n; i++) {
		h ^= b[i];
		h *= 0x100000001b3ull;
	}
	return h;
}

static uint64_t stat_sig(uint64_t h, const char *path)
{
	struct stat sb;

	if (stat(path, &sb) < 0) {
		return fnv(h, "-", 1);
	}
	h = fnv(h, path, strlen(path));
	h = fnv(h, &sb.st_mtim, sizeof(sb.st_mtim));
	h = fnv(h, &sb.st_size, sizeof(sb.st_size));
	h = fnv(h, &sb.st_ino, sizeof(sb.st_ino));
	return h;
}

/* Changes whenever a policy file appears, goes or is rewritten. */
static uint64_t policy_sig(const char *path)
{
	uint64_t h = stat_sig(0xcbf29ce484222325ull, path);
	struct dirent *de;
	DIR *d = opendir(path);

	if (d == NULL) {
		return h;
	}
	while ((de = readdir(d)) != NULL) {
		size_t n = strlen(de->d_name);
		char p[PATH_MAX];

		if (n < 6 || strcmp(de->d_name + n - 5, ".conf") != 0) {
			continue;
		}
		if (snprintf(p, sizeof(p), "%s/%s", path, de->d_name) < (int)sizeof(p)) {
			/* readdir order varies: combine order-independently */
			h ^= stat_sig(0xcbf29ce484222325ull, p);
		}
	}
	closedir(d);
	return h;
}

void coord_balance_reload(struct coord *c, bool force)
{
	const char *path = c->cfg.policy_path;
	uint64_t sig = policy_sig(path);
	struct ha_bal_policy *p = NULL;
	struct stat sb;
	char err[512];
	int rc;

	if (!force && c->bal.policy && sig == c->bal.policy_sig) {
		return;
	}
	c->bal.policy_sig = sig;
	if (stat(path, &sb) < 0 && errno == ENOENT) {
		/* No policy written: the defaults for placement and repairs
		 * asked for, no rounds of our own. */
		p = ha_bal_policy_new();
		rc = p ? 0 : -ENOMEM;
		snprintf(err, sizeof(err), "out of memory");
		if (p) {
			p->enabled = false;
		}
	} else {
		rc = ha_bal_policy_load(path, &p, err, sizeof(err));
	}
	if (rc < 0) {
		if (strcmp(err, c->bal.policy_err) != 0) {
			qb_log(LOG_ERR, "balancing policy refused, keeping the one in force: %s",
			       err);
			coord_event(c, "policy refused (old one kept): %s", err);
		}
		snprintf(c->bal.policy_err, sizeof(c->bal.policy_err), "%s", err);
		if (c->bal.policy == NULL) {
			c->bal.policy = ha_bal_policy_new();
		}
		return;
	}
	ha_bal_policy_free(c->bal.policy);
	c->bal.policy = p;
	c->bal.policy_err[0] = 0;
	qb_log(LOG_NOTICE, "balancing policy loaded from %s: %s, %s every %u s", path,
	       p->enabled ? "enabled" : "disabled", ha_bal_strategy_str(p->strategy),
	       p->interval_s);
	c->bal.next_ms = 0;
}

int coord_balance_snapshot(const struct coord *c, struct ha_bal_cluster **out,
			   char *why, size_t whylen)
{
	struct coord_view v = { .members = c->members, .n_members = c->n_members,
				.policy = c->bal.policy };
	int rc = coord_place_snapshot(&c->state, &v, coord_wall_ms(c), 0, out, why, whylen);

	if (rc == 0) {
		(*out)->imbalanced_rounds = c->bal.imbalanced_rounds;
	}
	return rc;
}

static size_t migrations_in_flight(const struct coord *c)
{
	size_t n = 0;

	for (size_t i = 0; i < c->state.n_guests; i++) {
		const Hactl__Migration *m = c->state.guests[i]->migration;

		n += coord_migration_in_progress(m);
	}
	return n;
}

static bool fencing_busy(const struct coord *c)
{
	for (size_t i = 0; i < COORD_MAX_NODES; i++) {
		if (c->fence_ops[i].node && c->fence_ops[i].state != COORD_FENCE_IDLE) {
			return true;
		}
	}
	return false;
}

/* Commits the plan's first wave as a job (coord_job.c) that starts its
 * moves at once; returns how many moves it has. */
static unsigned run_wave(struct coord *c, const struct ha_bal_cluster *cl,
			 const struct ha_bal_plan *plan)
{
	Hactl__CpgCommit cm = HACTL__CPG_COMMIT__INIT;
	Hactl__Change ch = HACTL__CHANGE__INIT;
	Hactl__JobStartChange js = HACTL__JOB_START_CHANGE__INIT;
	Hactl__JobMove *moves = calloc(plan->n_actions + 1, sizeof(*moves));
	Hactl__JobMove **ptrs = calloc(plan->n_actions + 1, sizeof(*ptrs));
	char note[128];
	unsigned n = 0;

	for (uint32_t i = 0; moves && ptrs && i < plan->n_actions; i++) {
		const struct ha_bal_action *a = &plan->actions[i];
		Hactl__JobMove *m = &moves[n];
		struct ha_bal_move bm;

		if (a->kind != HA_BAL_ACT_MIGRATE || a->wave != 1 ||
		    !ha_bal_action_move(cl, a, &bm)) {
			continue;
		}
		hactl__job_move__init(m);
		m->guest = (char *)bm.guest;
		m->from = (char *)bm.from;
		m->to = (char *)bm.to;
		m->has_wave = true;
		m->wave = bm.wave;
		m->reason = (char *)bm.reason;
		ptrs[n++] = m;
		qb_log(LOG_NOTICE, "balance: moving %s from %s to %s (%s)", m->guest, m->from,
		       m->to, m->reason);
	}
	if (n) {
		snprintf(note, sizeof(note), "balance round: imbalance %.1f%% -> %.1f%%",
			 plan->before.imbalance, plan->after.imbalance);
		js.kind = "balance";
		js.has_parallel = true;
		js.parallel = n < 64 ? n : 64;
		js.moves = ptrs;
		js.n_moves = n;
		js.note = note;
		ch.kind_case = HACTL__CHANGE__KIND_JOB_START;
		ch.job_start = &js;
		cm.leader = c->local_id;
		cm.seq = c->state.seq + 1;
		cm.change = &ch;
		if (coord_cpg_send(c, HA_MSG_CPG_COMMIT, &cm.base) < 0) {
			n = 0;
		}
	}
	free(moves);
	free(ptrs);
	return n;
}

static bool jobs_running(const struct coord *c)
{
	for (size_t i = 0; i < c->state.n_jobs; i++) {
		if (coord_job_active(c->state.jobs[i])) {
			return true;
		}
	}
	return false;
}

static void job_emit(void *arg, const Hactl__Change *ch)
{
	struct coord *c = arg;
	Hactl__CpgCommit cm = HACTL__CPG_COMMIT__INIT;
	char desc[128];

	cm.leader = c->local_id;
	cm.seq = c->state.seq + 1;
	cm.change = (Hactl__Change *)ch;
	coord_change_describe(ch, desc, sizeof(desc));
	if (coord_cpg_send(c, HA_MSG_CPG_COMMIT, &cm.base) == 0) {
		qb_log(LOG_INFO, "job step: %s", desc);
	}
}

void coord_job_tick(struct coord *c)
{
	struct coord_view v = { .members = c->members, .n_members = c->n_members,
				.policy = c->bal.policy };
	uint64_t now = coord_now_ms(c);

	if (c->leader != c->local_id || !coord_is_quorate(c) || c->syncing ||
	    !jobs_running(c)) {
		return;
	}
	/* one step at a time: the commits sent last must have applied (or
	 * a while passed, when one did not apply), so no move starts twice */
	if (c->commit_seq_sent > c->state.seq && now < c->job_wait_ms) {
		return;
	}
	if (coord_job_next(&c->state, &v, job_emit, c) > 0) {
		c->job_wait_ms = now + 3000;
	}
}

static void round_note(struct coord *c, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
static void round_note(struct coord *c, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(c->bal.last_round, sizeof(c->bal.last_round), fmt, ap);
	va_end(ap);
	c->bal.last_round_ms = coord_wall_ms(c);
}

/* One round of the leader's periodic rebalancing. */
static void balance_round(struct coord *c)
{
	struct ha_bal_cluster *cl = NULL;
	struct ha_bal_plan *plan = NULL;
	size_t busy = migrations_in_flight(c);
	char why[256];
	unsigned sent;
	int rc;

	if (busy) {
		round_note(c, "waiting: %zu migrations in flight", busy);
		return;
	}
	if (fencing_busy(c)) {
		round_note(c, "waiting: fencing in progress");
		return;
	}
	if (jobs_running(c)) {
		round_note(c, "waiting: a job is running (hactl jobs)");
		return;
	}
	if (!coord_members_have(c, COORD_FEATURE_JOBS)) {
		round_note(c, "waiting: a coordinator runs an hactl without jobs");
		return;
	}
	rc = coord_balance_snapshot(c, &cl, why, sizeof(why));
	if (rc == 0) {
		rc = ha_balance_plan(cl, c->bal.policy, &plan);
		snprintf(why, sizeof(why), "%s", strerror(-rc));
	}
	if (rc < 0) {
		qb_log(LOG_ERR, "balance round failed: %s", why);
		round_note(c, "failed: %s", why);
		ha_bal_cluster_free(cl);
		return;
	}
	c->bal.imbalanced_rounds = plan->triggered ? plan->rounds : 0;
	c->metrics.balance_rounds++;
	sent = run_wave(c, cl, plan);
	round_note(c, "%s; imbalance %.1f%%, %u moves planned, %u started%s%s",
		   plan->held ? "held" : plan->triggered ? "triggered" : "balanced",
		   plan->before.imbalance, plan->n_moves, sent, plan->note[0] ? "; " : "",
		   plan->note);
	if (sent) {
		coord_event(c, "balance: %u moves started (imbalance %.1f%% -> %.1f%%)", sent,
			    plan->before.imbalance, plan->after.imbalance);
	}
	qb_log(sent ? LOG_NOTICE : LOG_DEBUG, "balance round: %s", c->bal.last_round);
	ha_bal_plan_free(plan);
	ha_bal_cluster_free(cl);
}

void coord_balance_tick(struct coord *c)
{
	uint64_t now = coord_now_ms(c);

	coord_balance_reload(c, false);
	coord_restart_tick(c);
	coord_job_tick(c);
	if (c->leader != c->local_id || !coord_is_quorate(c) || c->syncing ||
	    !c->bal.policy->enabled) {
		c->bal.imbalanced_rounds = 0;
		c->bal.next_ms = 0;
	} else if (c->bal.next_ms == 0) {
		/* a new leader (or policy) first lets usage reports come in */
		c->bal.next_ms = now + (uint64_t)c->bal.policy->interval_s * 1000;
	} else if (now >= c->bal.next_ms) {
		c->bal.next_ms = now + (uint64_t)c->bal.policy->interval_s * 1000;
		balance_round(c);
	}
}

static void tick(void *data)
{
	struct coord *c = data;

	coord_balance_tick(c);
	qb_loop_timer_add(c->loop, QB_LOOP_LOW, TICK_MS * QB_TIME_NS_IN_MSEC, c, tick,
			  &c->bal.timer);
}

int coord_balance_start(struct coord *c)
{
	coord_balance_reload(c, true);
	if (c->bal.policy == NULL) {
		return -ENOMEM;
	}
	return qb_loop_timer_add(c->loop, QB_LOOP_LOW, TICK_MS * QB_TIME_NS_IN_MSEC, c, tick,
				 &c->bal.timer);
}

void coord_balance_stop(struct coord *c)
{
	qb_loop_timer_del(c->loop, c->bal.timer);
	ha_bal_policy_free(c->bal.policy);
	c->bal.policy = NULL;
}

/* Reads a memstream's text into a NUL-terminated string (caller frees). */
static char *capture(void (*fn)(const void *, FILE *), const void *arg)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);

	if (f == NULL) {
		return NULL;
	}
	fn(arg, f);
	if (fclose(f) != 0) {
		free(buf);
		return NULL;
	}
	return buf;
}

static void write_cluster(const void *cl, FILE *f)
{
	ha_bal_sim_write(f, cl);
}

static void write_policy(const void *p, FILE *f)
{
	ha_bal_policy_print(p, f);
}

int coord_balance_reply(struct coord *c, Hactl__BalanceReply *r, char *why, size_t whylen)
{
	struct ha_bal_cluster *cl = NULL;
	int rc;

	coord_balance_reload(c, false);
	rc = coord_balance_snapshot(c, &cl, why, whylen);
	if (rc < 0) {
		return rc;
	}
	r->cluster = capture(write_cluster, cl);
	r->policy = capture(write_policy, c->bal.policy);
	ha_bal_cluster_free(cl);
	if (r->cluster == NULL || r->policy == NULL) {
		free(r->cluster);
		free(r->policy);
		snprintf(why, whylen, "out of memory");
		return -ENOMEM;
	}
	r->policy_source = c->cfg.policy_path;
	r->policy_error = c->bal.policy_err;
	r->is_leader = c->leader == c->local_id;
	r->has_is_leader = true;
	if (r->is_leader) {
		r->has_imbalanced_rounds = true;
		r->imbalanced_rounds = c->bal.imbalanced_rounds;
		r->has_last_round_ms = c->bal.last_round_ms != 0;
		r->last_round_ms = c->bal.last_round_ms;
		r->last_round = c->bal.last_round;
	}
	return 0;
}
