/*
 * coord_metrics.c - the coordinator's counters and their Prometheus text
 * (docs/monitoring.md). Counting happens where this coordinator applies
 * what the cluster decided (commits, the leader's fencing status, CPG
 * traffic); the text is made from those counters and from struct coord
 * when /metrics is asked for. Only the event loop's thread touches any
 * of it, so nothing is locked.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "coordinator.h"
#include "hactl_states.h"
#include "envelope.h"

/* Seconds. Migrations of small guests take about a second on the local
 * cluster and minutes for large ones; downtime is milliseconds with
 * pre-copy and seconds with stop-and-copy; failover is bounded below by
 * the self-fence timeout (5 s by default). */
static const double mig_duration_bounds[] = { 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600, 1800 };
static const double mig_downtime_bounds[] = { 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5,
					      5, 10, 30 };
static const double failover_bounds[] = { 1, 2, 5, 10, 15, 20, 30, 45, 60, 120, 300, 600 };

#define N_BOUNDS(a) (sizeof(a) / sizeof((a)[0]))

const char *coord_http_code_str(enum coord_http_code k)
{
	static const char *const names[COORD_HTTP_CODE_MAX] = {
		[COORD_HTTP_200] = "200", [COORD_HTTP_400] = "400", [COORD_HTTP_401] = "401",
		[COORD_HTTP_404] = "404", [COORD_HTTP_405] = "405", [COORD_HTTP_500] = "500",
		[COORD_HTTP_OTHER] = "other",
	};

	return (unsigned)k < COORD_HTTP_CODE_MAX ? names[k] : "other";
}

struct hist_bounds {
	const double *b;
	size_t n;
};

static const struct hist_bounds B_MIG_DURATION = { mig_duration_bounds,
						   N_BOUNDS(mig_duration_bounds) };
static const struct hist_bounds B_MIG_DOWNTIME = { mig_downtime_bounds,
						   N_BOUNDS(mig_downtime_bounds) };
static const struct hist_bounds B_FAILOVER = { failover_bounds, N_BOUNDS(failover_bounds) };

/* Observes @v seconds (negative values count as 0). */
static void hist_observe(struct coord_hist *h, const struct hist_bounds *hb, double v)
{
	size_t i = 0;

	if (!(v > 0)) { /* negative, zero or NaN */
		v = 0;
	}
	while (i < hb->n && i < COORD_HIST_MAX && v > hb->b[i]) {
		i++;
	}
	h->counts[i]++;
	h->count++;
	h->sum += v;
}

void coord_metrics_free(struct coord_metrics *m)
{
	free(m->pre_owner);
	free(m->pre_gen);
	m->pre_owner = NULL;
	m->pre_gen = NULL;
	m->n_pre = 0;
}

/* ---- counting ---- */

static void wait_add(struct coord_metrics *m, const char *guest, uint64_t id, uint64_t now)
{
	struct coord_metrics_wait *slot = NULL;

	for (size_t i = 0; i < COORD_METRICS_WAIT_MAX; i++) {
		if (m->waits[i].migration == 0) {
			slot = &m->waits[i];
			break;
		}
		if (slot == NULL || m->waits[i].since_ms < slot->since_ms) {
			slot = &m->waits[i]; /* full: the oldest gives way */
		}
	}
	slot->migration = id;
	slot->since_ms = now;
	snprintf(slot->guest, sizeof(slot->guest), "%s", guest);
}

void coord_metrics_poll(struct coord *c)
{
	struct coord_metrics *m = &c->metrics;
	uint64_t now = coord_now_ms(c);

	for (size_t i = 0; i < COORD_METRICS_WAIT_MAX; i++) {
		struct coord_metrics_wait *w = &m->waits[i];
		const Hactl__GuestRecord *g;

		if (w->migration == 0) {
			continue;
		}
		g = coord_state_guest(&c->state, w->guest);
		if (g == NULL || g->migration == NULL || g->migration->id != w->migration ||
		    now > w->since_ms + COORD_METRICS_WAIT_MS) {
			w->migration = 0; /* gone, moved again, or never reported */
		} else if (g->migration->has_downtime_ms) {
			hist_observe(&m->mig_downtime, &B_MIG_DOWNTIME, g->migration->downtime_ms / 1000.0);
			w->migration = 0;
		}
	}
}

void coord_metrics_commit_begin(struct coord *c, const Hactl__Change *ch)
{
	struct coord_metrics *m = &c->metrics;
	const Hactl__RecoverChange *rc;

	coord_metrics_free(m);
	if (ch == NULL || ch->kind_case != HACTL__CHANGE__KIND_RECOVER || ch->recover == NULL) {
		return;
	}
	rc = ch->recover;
	if (rc->n_placements == 0) {
		return;
	}
	m->pre_owner = calloc(rc->n_placements, sizeof(*m->pre_owner));
	m->pre_gen = calloc(rc->n_placements, sizeof(*m->pre_gen));
	if (m->pre_owner == NULL || m->pre_gen == NULL) {
		coord_metrics_free(m); /* not counted then; nothing else suffers */
		return;
	}
	m->n_pre = rc->n_placements;
	for (size_t i = 0; i < rc->n_placements; i++) {
		const Hactl__GuestRecord *g = coord_state_guest(&c->state,
								rc->placements[i]->guest);

		m->pre_owner[i] = g ? g->owner : 0;
		m->pre_gen[i] = g ? g->generation : 0;
	}
}

static void recover_counted(struct coord *c, const Hactl__RecoverChange *rc)
{
	struct coord_metrics *m = &c->metrics;
	uint64_t now = coord_now_ms(c);

	for (size_t i = 0; i < rc->n_placements && i < m->n_pre; i++) {
		const Hactl__RecoverPlacement *p = rc->placements[i];
		const Hactl__GuestRecord *g = coord_state_guest(&c->state, p->guest);
		uint64_t lost;

		if (g == NULL || m->pre_owner[i] == 0) {
			continue; /* skipped, or unplaced since an earlier round */
		}
		if (g->generation != m->pre_gen[i]) {
			m->failover_restarted++;
			lost = coord_lost_ms(c, m->pre_owner[i]);
			if (lost && now >= lost) {
				hist_observe(&m->failover_time, &B_FAILOVER, (double)(now - lost) / 1000.0);
			}
		} else if (g->owner == 0) {
			if (p->mode && strcmp(p->mode, "none") == 0) {
				m->failover_stopped++;
			} else {
				m->failover_no_room++;
			}
		}
	}
}

static void migrate_end_counted(struct coord *c, const Hactl__MigrateEndChange *me)
{
	struct coord_metrics *m = &c->metrics;
	const Hactl__GuestRecord *g = coord_state_guest(&c->state, me->guest);
	const Hactl__Migration *mg = g ? g->migration : NULL;

	if (!me->commit) {
		m->mig_aborted++;
		return;
	}
	m->mig_committed++;
	if (mg == NULL) {
		return;
	}
	if (mg->has_started_ms && mg->has_ended_ms && mg->ended_ms >= mg->started_ms) {
		hist_observe(&m->mig_duration, &B_MIG_DURATION, (double)(mg->ended_ms - mg->started_ms) / 1000.0);
	}
	if (mg->has_downtime_ms) {
		hist_observe(&m->mig_downtime, &B_MIG_DOWNTIME, mg->downtime_ms / 1000.0);
	} else {
		wait_add(m, me->guest, mg->id, coord_now_ms(c));
	}
}

void coord_metrics_commit_end(struct coord *c, const Hactl__Change *ch, int rc)
{
	struct coord_metrics *m = &c->metrics;

	if (rc < 0 || ch == NULL) {
		coord_metrics_free(m);
		return;
	}
	m->commits_applied++;
	switch (ch->kind_case) {
	case HACTL__CHANGE__KIND_MIGRATE_START:
		m->mig_started++;
		break;
	case HACTL__CHANGE__KIND_MIGRATE_END:
		migrate_end_counted(c, ch->migrate_end);
		break;
	case HACTL__CHANGE__KIND_RECOVER:
		recover_counted(c, ch->recover);
		break;
	case HACTL__CHANGE__KIND_NODE_FENCE: {
		const char *method = ch->node_fence->method ? ch->node_fence->method : "";

		if (!ch->node_fence->fenced) {
			break;
		}
		if (strcmp(method, "agent") == 0) {
			m->fenced_agent++;
		} else if (strcmp(method, "watchdog") == 0) {
			m->fenced_watchdog++;
		} else if (strcmp(method, "manual") == 0 || strcmp(method, "confirmed") == 0) {
			m->fenced_manual++;
		} else {
			m->fenced_other++;
		}
		break;
	}
	case HACTL__CHANGE__KIND_JOB_START: {
		const Hactl__JobStartChange *js = ch->job_start;
		const char *kind = js->kind ? js->kind : "";

		if (strcmp(kind, "balance") == 0) {
			m->jobs_balance++;
			m->balance_moves += js->n_moves;
		} else if (strcmp(kind, "evacuate") == 0) {
			m->jobs_evacuate++;
		} else if (strcmp(kind, "return") == 0) {
			m->jobs_return++;
		}
		break;
	}
	default:
		break;
	}
	coord_metrics_free(m);
}

void coord_metrics_fence_status(struct coord *c, const Hactl__CpgFenceStatus *fs)
{
	/* The leader sends one status per transition of its operation
	 * (coord_fence.c set_state): entering "fencing" runs the levels once,
	 * entering "failed" is one failed run. */
	int state = fs->state ? ha_fence_state_from_str(fs->state) : -1;

	if (state == HACTL__FENCE_STATE__FENCE_FENCING) {
		c->metrics.fence_attempts++;
	} else if (state == HACTL__FENCE_STATE__FENCE_FAILED) {
		c->metrics.fence_failures++;
	}
}

/* ---- the text ---- */

/* Label values of the envelope's reject reasons (envelope.h). */
static const char *reject_label(int r)
{
	static const char *const names[HA_ENV_REJ_MAX] = {
		[HA_ENV_REJ_SHORT] = "short", [HA_ENV_REJ_MAGIC] = "magic",
		[HA_ENV_REJ_VERSION] = "version", [HA_ENV_REJ_TYPE] = "type",
		[HA_ENV_REJ_FLAGS] = "flags", [HA_ENV_REJ_TOO_LONG] = "too_long",
		[HA_ENV_REJ_TRUNCATED] = "truncated", [HA_ENV_REJ_TRAILING] = "trailing",
		[HA_ENV_REJ_BODY] = "body",
	};

	return r >= 0 && r < HA_ENV_REJ_MAX && names[r] ? names[r] : "other";
}

/* A label value: backslash, double quote and line feed escaped. */
static void put_label(FILE *f, const char *v)
{
	for (const char *p = v ? v : ""; *p; p++) {
		if (*p == '\\') {
			fputs("\\\\", f);
		} else if (*p == '"') {
			fputs("\\\"", f);
		} else if (*p == '\n') {
			fputs("\\n", f);
		} else {
			fputc(*p, f);
		}
	}
}

static void head(FILE *f, const char *name, const char *type, const char *help)
{
	fprintf(f, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void one(FILE *f, const char *name, const char *type, const char *help, uint64_t v)
{
	head(f, name, type, help);
	fprintf(f, "%s %llu\n", name, (unsigned long long)v);
}

/* One sample with one label: NAME{LABEL="VALUE"} V (VALUE a fixed word). */
static void sample(FILE *f, const char *name, const char *label, const char *value, uint64_t v)
{
	fprintf(f, "%s{%s=\"%s\"} %llu\n", name, label, value, (unsigned long long)v);
}

/* Bounds are short decimals (%g prints 0.005, 1, 30); sums keep
 * microseconds of a day's worth of seconds. */
static void put_double(FILE *f, double v)
{
	fprintf(f, "%.12g", v);
}

static void hist(FILE *f, const char *name, const char *help, const struct coord_hist *h,
		 const struct hist_bounds *hb)
{
	size_t n = hb->n < COORD_HIST_MAX ? hb->n : COORD_HIST_MAX;
	uint64_t cum = 0;

	head(f, name, "histogram", help);
	for (size_t i = 0; i < n; i++) {
		cum += h->counts[i];
		fprintf(f, "%s_bucket{le=\"", name);
		put_double(f, hb->b[i]);
		fprintf(f, "\"} %llu\n", (unsigned long long)cum);
	}
	cum += h->counts[n];
	fprintf(f, "%s_bucket{le=\"+Inf\"} %llu\n", name, (unsigned long long)cum);
	fprintf(f, "%s_sum ", name);
	put_double(f, h->sum);
	fprintf(f, "\n%s_count %llu\n", name, (unsigned long long)h->count);
}

static const char *node_name(const struct coord *c, uint32_t id)
{
	for (size_t i = 0; i < c->state.n_nodes; i++) {
		if (c->state.nodes[i].id == id) {
			return c->state.nodes[i].name;
		}
	}
	return NULL;
}

/* Guests by (state, host): a row per GuestState and one, "other", for a
 * word that is no state's (an agent newer than this coordinator). */
#define STATE_ROWS (HA_GUEST_STATE_MAX + 1)

static int guests_by_state_host(FILE *f, const struct coord *c)
{
	const struct coord_state *st = &c->state;
	size_t cols = st->n_nodes + 1; /* last column: no host */
	uint64_t *counts = calloc(STATE_ROWS * cols, sizeof(*counts));

	if (counts == NULL) {
		return -ENOMEM;
	}
	for (size_t i = 0; i < st->n_guests; i++) {
		const Hactl__GuestRecord *g = st->guests[i];
		int v = g->state && g->state[0] ? ha_guest_state_from_str(g->state) :
			HACTL__GUEST_STATE__GUEST_UNKNOWN;
		size_t k = v < 0 ? HA_GUEST_STATE_MAX : (size_t)v, col = st->n_nodes;

		for (size_t j = 0; g->owner && j < st->n_nodes; j++) {
			if (st->nodes[j].id == g->owner) {
				col = j;
				break;
			}
		}
		counts[k * cols + col]++;
	}
	head(f, "hactl_guests", "gauge",
	     "Guests by the state their owner reports and the node that owns them "
	     "(host=\"\": none)");
	for (size_t k = 0; k < STATE_ROWS; k++) {
		for (size_t j = 0; j < cols; j++) {
			if (counts[k * cols + j] == 0) {
				continue;
			}
			fputs("hactl_guests{state=\"", f);
			put_label(f, k < HA_GUEST_STATE_MAX ?
				  ha_guest_state_str((Hactl__GuestState)k) : "other");
			fputs("\",host=\"", f);
			put_label(f, j < st->n_nodes ? st->nodes[j].name : "");
			fprintf(f, "\"} %llu\n", (unsigned long long)counts[k * cols + j]);
		}
	}
	free(counts);
	return 0;
}

char *coord_metrics_text(const struct coord *c, size_t *len)
{
	const struct coord_metrics *m = &c->metrics;
	const struct coord_state *st = &c->state;
	uint64_t by_state[COORD_NODE_STATE_MAX] = { 0 };
	uint64_t in_progress = 0, jobs_active = 0, rejected;
	char *buf = NULL;
	size_t size = 0;
	FILE *f = open_memstream(&buf, &size);
	const char *leader;
	int rc = 0;

	if (f == NULL) {
		return NULL;
	}
	head(f, "hactl_build_info", "gauge", "Version of this ha-coordinator (always 1)");
	fputs("hactl_build_info{version=\"", f);
	put_label(f, HA_VERSION);
	fputs("\"} 1\n", f);
	one(f, "hactl_node_id", "gauge", "Corosync node id of this coordinator's host",
	    c->local_id);
	one(f, "hactl_quorate", "gauge",
	    "1 when this node's partition is quorate and its state current, else 0",
	    coord_is_quorate(c));
	one(f, "hactl_corosync_quorate", "gauge", "1 when votequorum says quorate, else 0",
	    c->vq_quorate);
	one(f, "hactl_leader", "gauge", "1 when this node is the leader, else 0",
	    c->leader != 0 && c->leader == c->local_id);
	head(f, "hactl_leader_node_id", "gauge", "Node id of the leader, 0 = none");
	leader = node_name(c, c->leader);
	fputs("hactl_leader_node_id{node=\"", f);
	put_label(f, leader ? leader : "");
	fprintf(f, "\"} %u\n", c->leader);
	one(f, "hactl_cluster_members", "gauge",
	    "Coordinators in the CPG group (this one included)", c->n_members);

	for (size_t i = 0; i < st->n_nodes; i++) {
		by_state[coord_node_state_of(&st->nodes[i],
					     coord_is_member(c, st->nodes[i].id))]++;
	}
	head(f, "hactl_nodes", "gauge", "Nodes by state");
	for (int s = 0; s < COORD_NODE_STATE_MAX; s++) {
		fprintf(f, "hactl_nodes{state=\"%s\"} %llu\n",
			coord_node_state_str((enum coord_node_state)s),
			(unsigned long long)by_state[s]);
	}
	head(f, "hactl_node_up", "gauge",
	     "1 when the node's coordinator is in the CPG group and its agent connected");
	for (size_t i = 0; i < st->n_nodes; i++) {
		const struct coord_node *n = &st->nodes[i];

		fputs("hactl_node_up{node=\"", f);
		put_label(f, n->name);
		fprintf(f, "\"} %d\n", coord_is_member(c, n->id) && n->agent_connected);
	}

	if (guests_by_state_host(f, c) < 0) {
		rc = -ENOMEM;
	}
	for (size_t i = 0; i < st->n_guests; i++) {
		in_progress += coord_migration_in_progress(st->guests[i]->migration);
	}
	one(f, "hactl_migrations_in_progress", "gauge", "Live migrations transferring now",
	    in_progress);
	one(f, "hactl_migrations_started_total", "counter", "Live migrations started (commits)",
	    m->mig_started);
	head(f, "hactl_migrations_total", "counter",
	     "Live migrations ended, by result (committed: the guest moved; aborted: it "
	     "stayed on its source)");
	sample(f, "hactl_migrations_total", "result", "committed", m->mig_committed);
	sample(f, "hactl_migrations_total", "result", "aborted", m->mig_aborted);
	hist(f, "hactl_migration_duration_seconds",
	     "Committed migrations: time from the start commit to the end commit",
	     &m->mig_duration, &B_MIG_DURATION);
	hist(f, "hactl_migration_downtime_seconds",
	     "Committed migrations: time the guest was paused, as its source measured it",
	     &m->mig_downtime, &B_MIG_DOWNTIME);

	head(f, "hactl_failover_guests_total", "counter",
	     "Guests of fenced nodes in recovery plans, by result (restarted: placed on a "
	     "survivor; no_room: no node could take it; stopped: restart policy none)");
	sample(f, "hactl_failover_guests_total", "result", "restarted", m->failover_restarted);
	sample(f, "hactl_failover_guests_total", "result", "no_room", m->failover_no_room);
	sample(f, "hactl_failover_guests_total", "result", "stopped", m->failover_stopped);
	hist(f, "hactl_failover_seconds",
	     "Time from a node leaving the membership to the commit that restarts its "
	     "guest elsewhere (measured where the loss was seen)",
	     &m->failover_time, &B_FAILOVER);

	one(f, "hactl_fence_attempts_total", "counter",
	    "Runs of a lost node's fence levels by the leader", m->fence_attempts);
	one(f, "hactl_fence_failures_total", "counter",
	    "Runs of fence levels that did not confirm the node off", m->fence_failures);
	head(f, "hactl_fenced_total", "counter",
	     "Nodes committed fenced, by how they were confirmed off");
	sample(f, "hactl_fenced_total", "method", "agent", m->fenced_agent);
	sample(f, "hactl_fenced_total", "method", "watchdog", m->fenced_watchdog);
	sample(f, "hactl_fenced_total", "method", "manual", m->fenced_manual);
	sample(f, "hactl_fenced_total", "method", "other", m->fenced_other);

	one(f, "hactl_balance_rounds_total", "counter",
	    "Balancing rounds this coordinator ran as leader (the engine planned)",
	    m->balance_rounds);
	one(f, "hactl_balance_moves_total", "counter", "Moves of committed balance jobs",
	    m->balance_moves);
	head(f, "hactl_jobs_started_total", "counter", "Jobs started, by kind");
	sample(f, "hactl_jobs_started_total", "kind", "evacuate", m->jobs_evacuate);
	sample(f, "hactl_jobs_started_total", "kind", "return", m->jobs_return);
	sample(f, "hactl_jobs_started_total", "kind", "balance", m->jobs_balance);
	for (size_t i = 0; i < st->n_jobs; i++) {
		jobs_active += coord_job_active(st->jobs[i]);
	}
	one(f, "hactl_jobs_active", "gauge", "Jobs running or cancelling", jobs_active);

	one(f, "hactl_state_seq", "gauge", "Sequence number of the replicated state", st->seq);
	one(f, "hactl_state_epoch", "gauge", "Membership epoch (one per CPG configuration)",
	    c->epoch);
	one(f, "hactl_state_current", "gauge",
	    "1 when this coordinator's state is current (it kept up with the cluster)",
	    c->current);
	one(f, "hactl_state_syncs_total", "counter", "State syncs completed", c->syncs_done);
	one(f, "hactl_commits_applied_total", "counter", "Commits applied", m->commits_applied);
	one(f, "hactl_commits_refused_total", "counter",
	    "Commits refused (not from the leader of this membership, or stale)",
	    c->rx_commit_refused);

	one(f, "hactl_cpg_messages_received_total", "counter",
	    "CPG messages delivered to this coordinator (its own included)", m->cpg_received);
	one(f, "hactl_cpg_messages_sent_total", "counter", "CPG messages corosync accepted",
	    m->cpg_sent);
	one(f, "hactl_cpg_messages_dropped_total", "counter",
	    "CPG messages not sent (queue full or corosync refused them)", c->send_dropped);
	one(f, "hactl_cpg_send_queue_length", "gauge",
	    "CPG messages waiting for corosync to take them", c->sendq_len);
	head(f, "hactl_messages_rejected_total", "counter",
	     "Messages (CPG and IPC) rejected, by reason");
	for (int r = 0; r < HA_ENV_REJ_MAX; r++) {
		fprintf(f, "hactl_messages_rejected_total{reason=\"%s\"} %llu\n",
			reject_label(r),
			(unsigned long long)c->rx_stats.rejected[r]);
	}
	sample(f, "hactl_messages_rejected_total", "reason", "bad_sender", c->rx_bad_sender);
	rejected = c->ipc_refused;
	one(f, "hactl_ipc_refused_total", "counter",
	    "IPC clients and agent hellos refused (not root, not in the IPC group)", rejected);
	head(f, "hactl_http_requests_total", "counter",
	     "Requests to this endpoint, by HTTP status (this request not yet counted)");
	for (int k = 0; k < COORD_HTTP_CODE_MAX; k++) {
		fprintf(f, "hactl_http_requests_total{code=\"%s\"} %llu\n",
			coord_http_code_str((enum coord_http_code)k),
			(unsigned long long)m->http[k]);
	}
	if (fclose(f) != 0 || rc < 0) {
		free(buf);
		return NULL;
	}
	if (len) {
		*len = size;
	}
	return buf;
}
