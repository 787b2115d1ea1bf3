/*
 * coord_job.c - jobs: waves of live migrations that the leader runs
 * (docs/maintenance.md, "Jobs").
 *
 * `hactl evacuate`, `hactl maintenance off --return`, `hactl balance` and
 * the leader's periodic balancing all come down to the same thing: a list
 * of moves in waves, at most N at once. A job is that list in the
 * replicated state (ClusterState.jobs). Its start is a commit
 * (JobStartChange); the leader plans the moves of an evacuation or a
 * return in that commit, or takes the ones a client planned (a balance
 * plan that `hactl balance` showed). Each move then goes through the
 * ordinary migration transaction, tagged with the job's id, and its end
 * updates the job in every replica as the migration's commit or abort
 * applies. Nothing of a job lives outside the replicated state: a new
 * leader goes on with it where the old one stopped, and the client that
 * asked for it may exit.
 *
 *   job:  running --(no move pending or running)--> done
 *         running --(cancel)--> cancelling --(running moves end)--> cancelled
 *   move: pending --(its migration starts)--> running --(commit)--> done
 *         pending|running --(refused, aborted, guest destroyed, cancel)--> failed
 *
 * This file is pure (no I/O): checks, application, the leader's plan for
 * a new job and the leader's next steps, all on struct coord_state, so the
 * simulator and the unit tests run exactly this code.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <protobuf-c/protobuf-c.h>

#include "coord_state.h"
#include "hactl_states.h"
#include "util.h"

#define JOBS_RUNNING_MAX 32
#define JOBS_ENDED_KEEP 8
#define JOB_MOVES_MAX 4096


static bool is(const char *s, const char *lit)
{
	return s && strcmp(s, lit) == 0;
}

/* A job's and a move's state: HA_STATE_NONE for a missing or unknown name. */
static int job_state(const Hactl__Job *j)
{
	return ha_job_state_from_str(j->state);
}

static int move_state(const Hactl__JobMove *m)
{
	return ha_job_move_state_from_str(m->state);
}

static void job_set_state(Hactl__Job *j, Hactl__JobState s)
{
	coord_pb_set_str(&j->state, ha_job_state_str(s));
}

static void move_set_state(Hactl__JobMove *m, Hactl__JobMoveState s)
{
	coord_pb_set_str(&m->state, ha_job_move_state_str(s));
}

bool coord_job_active(const Hactl__Job *j)
{
	int s = job_state(j);

	return s == HACTL__JOB_STATE__JOB_RUNNING || s == HACTL__JOB_STATE__JOB_CANCELLING;
}

static bool move_open(const Hactl__JobMove *m)
{
	int s = move_state(m);

	return s == HACTL__JOB_MOVE_STATE__JOB_MOVE_PENDING ||
	       s == HACTL__JOB_MOVE_STATE__JOB_MOVE_RUNNING;
}

static bool move_is(const Hactl__JobMove *m, Hactl__JobMoveState s)
{
	return move_state(m) == (int)s;
}

Hactl__Job *coord_job_by_id(const struct coord_state *st, uint64_t id)
{
	for (size_t i = 0; i < st->n_jobs; i++) {
		if (st->jobs[i]->id == id) {
			return st->jobs[i];
		}
	}
	return NULL;
}

static size_t jobs_active(const struct coord_state *st)
{
	size_t n = 0;

	for (size_t i = 0; i < st->n_jobs; i++) {
		n += coord_job_active(st->jobs[i]);
	}
	return n;
}

static bool kind_ok(const char *k)
{
	return is(k, "evacuate") || is(k, "return") || is(k, "balance");
}

static const struct coord_node *node_named(const struct coord_state *st, const char *name)
{
	return name ? coord_state_node_by_name((struct coord_state *)st, name) : NULL;
}

int coord_job_check(const struct coord_state *st, const Hactl__Change *ch, char *why,
		    size_t whylen)
{
	if (ch->kind_case == HACTL__CHANGE__KIND_JOB_START) {
		const Hactl__JobStartChange *js = ch->job_start;

		if (!kind_ok(js->kind)) {
			snprintf(why, whylen, "unknown job kind '%s' (evacuate, return or balance)",
				 js->kind ? js->kind : "");
			return -EINVAL;
		}
		if (!is(js->kind, "balance") && node_named(st, js->node) == NULL) {
			snprintf(why, whylen, "unknown node '%s'", js->node ? js->node : "");
			return -ENOENT;
		}
		if (js->has_parallel && (js->parallel < 1 || js->parallel > 64)) {
			snprintf(why, whylen, "parallel %u is not in 1..64", js->parallel);
			return -EINVAL;
		}
		if (js->n_moves > JOB_MOVES_MAX) {
			snprintf(why, whylen, "%zu moves, at most %d in one job", js->n_moves,
				 JOB_MOVES_MAX);
			return -E2BIG;
		}
		for (size_t i = 0; i < js->n_moves; i++) {
			const Hactl__JobMove *m = js->moves[i];

			if (coord_state_guest(st, m->guest) == NULL) {
				snprintf(why, whylen, "move %zu: unknown guest '%s'", i + 1, m->guest);
				return -ENOENT;
			}
			if (m->to && m->to[0] && node_named(st, m->to) == NULL) {
				snprintf(why, whylen, "move %zu: unknown node '%s'", i + 1, m->to);
				return -ENOENT;
			}
		}
		if (jobs_active(st) >= JOBS_RUNNING_MAX) {
			snprintf(why, whylen, "%d jobs are running already", JOBS_RUNNING_MAX);
			return -EBUSY;
		}
		for (size_t i = 0; i < st->n_jobs; i++) {
			const Hactl__Job *j = st->jobs[i];

			if (coord_job_active(j) && strcmp(j->kind, js->kind) == 0 &&
			    (is(js->kind, "balance") || is(j->node, js->node))) {
				snprintf(why, whylen, "job %" PRIu64 " (%s%s%s) is running already",
					 j->id, j->kind, j->node && j->node[0] ? " " : "",
					 j->node ? j->node : "");
				return -EBUSY;
			}
		}
		return 0;
	}
	if (ch->kind_case == HACTL__CHANGE__KIND_JOB_MOVE) {
		const Hactl__JobMoveChange *jm = ch->job_move;
		const Hactl__Job *j = coord_job_by_id(st, jm->job);

		if (j == NULL || !coord_job_active(j)) {
			snprintf(why, whylen, "no job %" PRIu64 " is running", jm->job);
			return -ESRCH;
		}
		if (jm->cancel) {
			if (job_state(j) != HACTL__JOB_STATE__JOB_RUNNING) {
				snprintf(why, whylen, "job %" PRIu64 " is being cancelled already",
					 j->id);
				return -EALREADY;
			}
			return 0;
		}
		for (size_t i = 0; i < j->n_moves; i++) {
			if (is(j->moves[i]->guest, jm->guest) &&
			    move_is(j->moves[i], HACTL__JOB_MOVE_STATE__JOB_MOVE_PENDING)) {
				return 0;
			}
		}
		snprintf(why, whylen, "job %" PRIu64 " has no pending move of '%s'", j->id,
			 jm->guest ? jm->guest : "");
		return -ESRCH;
	}
	snprintf(why, whylen, "not a job change");
	return -EINVAL;
}

/* Ends @j when nothing of it is pending or running. */
static void finish(Hactl__Job *j, uint64_t now_ms)
{
	for (size_t i = 0; i < j->n_moves; i++) {
		if (move_open(j->moves[i])) {
			return;
		}
	}
	job_set_state(j, job_state(j) == HACTL__JOB_STATE__JOB_CANCELLING ?
			 HACTL__JOB_STATE__JOB_CANCELLED : HACTL__JOB_STATE__JOB_DONE);
	j->has_ended_ms = true;
	j->ended_ms = now_ms;
}

/* Keeps every active job and the newest JOBS_ENDED_KEEP ended ones. */
static void prune(struct coord_state *st)
{
	size_t ended = 0, w = 0;

	for (size_t i = 0; i < st->n_jobs; i++) {
		ended += !coord_job_active(st->jobs[i]);
	}
	for (size_t i = 0; i < st->n_jobs; i++) {
		Hactl__Job *j = st->jobs[i];

		if (!coord_job_active(j) && ended > JOBS_ENDED_KEEP) {
			protobuf_c_message_free_unpacked(&j->base, NULL);
			ended--;
			continue;
		}
		st->jobs[w++] = j;
	}
	st->n_jobs = w;
}

static void move_fail(Hactl__JobMove *m, const char *reason)
{
	move_set_state(m, HACTL__JOB_MOVE_STATE__JOB_MOVE_FAILED);
	coord_pb_set_str(&m->reason, reason);
}

int coord_job_apply(struct coord_state *st, const Hactl__Change *ch, uint64_t now_ms,
		    char *why, size_t whylen)
{
	if (ch->kind_case == HACTL__CHANGE__KIND_JOB_START) {
		const Hactl__JobStartChange *js = ch->job_start;
		Hactl__Job tmp = HACTL__JOB__INIT, *j;
		Hactl__Job **arr;

		tmp.id = st->seq + 1; /* the seq this commit takes */
		tmp.kind = js->kind;
		tmp.node = js->node;
		tmp.has_parallel = true;
		tmp.parallel = js->has_parallel && js->parallel ? js->parallel : 1;
		tmp.state = (char *)ha_job_state_str(HACTL__JOB_STATE__JOB_RUNNING);
		tmp.has_started_ms = true;
		tmp.started_ms = now_ms;
		tmp.options = js->options;
		tmp.note = js->note;
		tmp.moves = js->moves;
		tmp.n_moves = js->n_moves;
		j = coord_pb_dup(&tmp.base);
		arr = j ? realloc(st->jobs, (st->n_jobs + 1) * sizeof(*arr)) : NULL;
		if (arr == NULL) {
			if (j) {
				protobuf_c_message_free_unpacked(&j->base, NULL);
			}
			snprintf(why, whylen, "out of memory");
			return -ENOMEM;
		}
		st->jobs = arr;
		st->jobs[st->n_jobs++] = j;
		for (size_t i = 0; i < j->n_moves; i++) {
			Hactl__JobMove *m = j->moves[i];

			m->has_migration = false;
			m->migration = 0;
			if (m->to == NULL || !m->to[0]) {
				char r[256];

				snprintf(r, sizeof(r), "no place: %s",
					 m->reason && m->reason[0] ? m->reason : "none fits");
				move_fail(m, r);
			} else {
				move_set_state(m, HACTL__JOB_MOVE_STATE__JOB_MOVE_PENDING);
			}
		}
		finish(j, now_ms);
		prune(st);
		return 0;
	}
	if (ch->kind_case == HACTL__CHANGE__KIND_JOB_MOVE) {
		const Hactl__JobMoveChange *jm = ch->job_move;
		Hactl__Job *j = coord_job_by_id(st, jm->job);

		for (size_t i = 0; i < j->n_moves; i++) {
			Hactl__JobMove *m = j->moves[i];

			if (!move_is(m, HACTL__JOB_MOVE_STATE__JOB_MOVE_PENDING)) {
				continue;
			}
			if (jm->cancel) {
				move_fail(m, "cancelled");
			} else if (is(m->guest, jm->guest)) {
				move_fail(m, jm->reason && jm->reason[0] ? jm->reason : "refused");
			}
		}
		if (jm->cancel) {
			job_set_state(j, HACTL__JOB_STATE__JOB_CANCELLING);
		}
		finish(j, now_ms);
		prune(st);
		return 0;
	}
	snprintf(why, whylen, "not a job change");
	return -EINVAL;
}

void coord_job_migration_started(struct coord_state *st, const Hactl__MigrateStartChange *ms,
				 uint64_t migration_id)
{
	Hactl__Job *j = ms->has_job ? coord_job_by_id(st, ms->job) : NULL;

	for (size_t i = 0; j && coord_job_active(j) && i < j->n_moves; i++) {
		Hactl__JobMove *m = j->moves[i];

		if (is(m->guest, ms->guest) && move_is(m, HACTL__JOB_MOVE_STATE__JOB_MOVE_PENDING)) {
			move_set_state(m, HACTL__JOB_MOVE_STATE__JOB_MOVE_RUNNING);
			m->has_migration = true;
			m->migration = migration_id;
			return;
		}
	}
}

void coord_job_migration_ended(struct coord_state *st, const Hactl__Migration *mg,
			       bool commit, const char *reason, uint64_t now_ms)
{
	Hactl__Job *j = mg->has_job ? coord_job_by_id(st, mg->job) : NULL;

	for (size_t i = 0; j && i < j->n_moves; i++) {
		Hactl__JobMove *m = j->moves[i];

		if (m->migration == mg->id && move_is(m, HACTL__JOB_MOVE_STATE__JOB_MOVE_RUNNING)) {
			if (commit) {
				move_set_state(m, HACTL__JOB_MOVE_STATE__JOB_MOVE_DONE);
			} else {
				move_fail(m, reason && reason[0] ? reason : "aborted");
			}
			finish(j, now_ms);
			prune(st);
			return;
		}
	}
}

void coord_job_guest_gone(struct coord_state *st, const char *guest, uint64_t now_ms)
{
	for (size_t k = 0; k < st->n_jobs; k++) {
		Hactl__Job *j = st->jobs[k];
		bool hit = false;

		for (size_t i = 0; coord_job_active(j) && i < j->n_moves; i++) {
			if (is(j->moves[i]->guest, guest) && move_open(j->moves[i])) {
				move_fail(j->moves[i], "guest destroyed");
				hit = true;
			}
		}
		if (hit) {
			finish(j, now_ms);
		}
	}
	prune(st);
}

/* ---- the leader ---- */

/* The move list of a job the leader plans: an evacuation (the engine's
 * EVACUATE plan, as every placement) or a return (the guests whose home
 * is the node, one wave each in name order). */
int coord_job_plan(const struct coord_state *st, const struct coord_view *v, uint64_t now_ms,
		   const Hactl__JobStartChange *in, Hactl__JobStartChange **out, char *why,
		   size_t whylen)
{
	Hactl__JobStartChange tmp = *in;
	Hactl__JobMove *moves = NULL, **ptrs = NULL;
	char note[160];
	struct ha_bal_cluster *cl = NULL;
	struct ha_bal_plan *plan = NULL;
	const struct coord_node *node = node_named(st, in->node);
	size_t n = 0, cap;
	int rc = 0;

	*out = NULL;
	if (in->n_moves || is(in->kind, "balance")) {
		*out = coord_pb_dup(&in->base); /* a client's plan, checked move by move */
		goto done;
	}
	if (node == NULL) {
		snprintf(why, whylen, "unknown node '%s'", in->node ? in->node : "");
		return -ENOENT;
	}
	if (is(in->kind, "evacuate")) {
		rc = coord_place_snapshot(st, v, now_ms, 0, &cl, why, whylen);
		if (rc == 0) {
			rc = ha_balance_place(cl, v->policy, HA_BAL_OP_EVACUATE, node->name, &plan);
			if (rc < 0) {
				snprintf(why, whylen, "the engine found no evacuation plan: %s",
					 strerror(-rc));
			}
		}
		if (rc < 0) {
			goto done;
		}
		cap = plan->n_actions;
	} else {
		cap = st->n_guests;
	}
	moves = calloc(cap + 1, sizeof(*moves));
	ptrs = calloc(cap + 1, sizeof(*ptrs));
	if (moves == NULL || ptrs == NULL) {
		snprintf(why, whylen, "out of memory");
		rc = -ENOMEM;
		goto done;
	}
	if (plan) {
		/* the names point into cl and plan, which outlive the copy below */
		for (uint32_t i = 0; i < plan->n_actions; i++) {
			Hactl__JobMove *m = &moves[n];

			if (!ha_bal_action_move(cl, &plan->actions[i], m)) {
				continue;
			}
			m->from = (char *)node->name; /* every move leaves the evacuated node */
			ptrs[n++] = m;
		}
		snprintf(note, sizeof(note), "evacuate %s: %u moves in %u waves", node->name,
			 plan->n_moves, plan->waves);
		tmp.note = note;
	} else {
		for (size_t i = 0; i < st->n_guests; i++) {
			const Hactl__GuestRecord *g = st->guests[i];
			const struct coord_node *owner = NULL;
			Hactl__JobMove *m = &moves[n];

			if (!g->has_home || g->home != node->id || g->owner == node->id ||
			    g->owner == 0 || !coord_guest_wants_running(g) ||
			    ha_guest_state_from_str(g->state) != HACTL__GUEST_STATE__GUEST_RUNNING) {
				continue;
			}
			owner = coord_state_node((struct coord_state *)st, g->owner);
			hactl__job_move__init(m);
			m->guest = g->name;
			m->from = owner ? (char *)owner->name : "";
			m->to = (char *)node->name;
			m->has_wave = true;
			m->wave = (uint32_t)n + 1;
			m->reason = "home";
			ptrs[n] = m;
			n++;
		}
		snprintf(note, sizeof(note), "return to %s: %zu guests",
			 node->name, n);
		tmp.note = note;
	}
	tmp.moves = ptrs;
	tmp.n_moves = n;
	*out = coord_pb_dup(&tmp.base);
done:
	if (rc == 0 && *out == NULL) {
		snprintf(why, whylen, "out of memory");
		rc = -ENOMEM;
	}
	free(moves);
	free(ptrs);
	ha_bal_plan_free(plan);
	ha_bal_cluster_free(cl);
	return rc;
}

size_t coord_job_next(const struct coord_state *st, const struct coord_view *v,
		      void (*emit)(void *arg, const Hactl__Change *ch), void *arg)
{
	size_t sent = 0;

	for (size_t k = 0; k < st->n_jobs; k++) {
		const Hactl__Job *j = st->jobs[k];
		uint32_t wave = UINT32_MAX, running = 0;

		if (job_state(j) != HACTL__JOB_STATE__JOB_RUNNING) {
			continue;
		}
		for (size_t i = 0; i < j->n_moves; i++) {
			const Hactl__JobMove *m = j->moves[i];

			if (move_open(m) && m->wave < wave) {
				wave = m->wave;
			}
			running += move_is(m, HACTL__JOB_MOVE_STATE__JOB_MOVE_RUNNING);
		}
		for (size_t i = 0; i < j->n_moves && running < j->parallel; i++) {
			const Hactl__JobMove *m = j->moves[i];
			Hactl__Change ch = HACTL__CHANGE__INIT;
			Hactl__MigrateStartChange ms = HACTL__MIGRATE_START_CHANGE__INIT;
			Hactl__MigrationOptions mo = HACTL__MIGRATION_OPTIONS__INIT;
			char node[COORD_NAME_MAX + 1], why[256];

			if (!move_is(m, HACTL__JOB_MOVE_STATE__JOB_MOVE_PENDING) || m->wave != wave) {
				continue;
			}
			if (j->options) {
				mo = *j->options;
			}
			if (mo.mode == NULL || !mo.mode[0]) {
				mo.mode = "auto";
			}
			/* a transport left unset: each agent's [migration] one */
			ms.guest = m->guest;
			ms.node = m->to;
			ms.options = &mo;
			ms.has_evacuate = is(j->kind, "evacuate");
			ms.evacuate = ms.has_evacuate;
			ms.has_job = true;
			ms.job = j->id;
			ch.kind_case = HACTL__CHANGE__KIND_MIGRATE_START;
			ch.migrate_start = &ms;
			if (coord_change_prepare(st, v, &ch, node, sizeof(node), why,
						 sizeof(why)) < 0) {
				Hactl__JobMoveChange jm = HACTL__JOB_MOVE_CHANGE__INIT;

				jm.job = j->id;
				jm.guest = m->guest;
				jm.reason = why;
				ch.kind_case = HACTL__CHANGE__KIND_JOB_MOVE;
				ch.job_move = &jm;
				emit(arg, &ch);
			} else {
				emit(arg, &ch);
				running++;
			}
			sent++;
		}
	}
	return sent;
}

void coord_job_describe(const Hactl__Change *ch, char *buf, size_t len)
{
	if (ch->kind_case == HACTL__CHANGE__KIND_JOB_START) {
		const Hactl__JobStartChange *js = ch->job_start;

		snprintf(buf, len, "job %s%s%s: %zu moves, %u at a time", js->kind,
			 js->node && js->node[0] ? " " : "", js->node ? js->node : "",
			 js->n_moves, js->has_parallel && js->parallel ? js->parallel : 1);
	} else if (ch->job_move->cancel) {
		snprintf(buf, len, "job %" PRIu64 " cancelled", ch->job_move->job);
	} else {
		snprintf(buf, len, "job %" PRIu64 ": %s not moved: %s", ch->job_move->job,
			 ch->job_move->guest ? ch->job_move->guest : "",
			 ch->job_move->reason ? ch->job_move->reason : "");
	}
}
