/*
 * agent_guests.c - guests of this host.
 *
 * The loop thread owns the table. Each operation (start, stop, destroy,
 * snapshot, restore) runs in its own worker thread on a private copy of
 * what it needs plus the guest's driver object, which nothing else touches
 * while the guest is busy; the result comes back through an eventfd
 * (agent_guests_op.c; agent_guests_int.h lists the files).
 *
 * Reconciliation is level-triggered: from the cluster's list, a guest this
 * node owns and that should run is started (cold, or from a snapshot when
 * the commit says so); anything running here that this node does not own
 * is killed, what should be stopped is stopped, and a guest found paused
 * outside a migration is resumed or stopped. A failed start or a guest
 * that stopped by itself follows the restart policy (common/restart.c).
 * Without a quorate answer for half the self-fence timeout every guest here
 * is killed (agent_guests_fence.c; docs/failover.md, "Agent").
 *
 * An incoming migration copy is recorded in its run directory
 * (incoming.conf: the migration id in a comment line, then the definition)
 * before the driver creates anything, and replaced by definition.conf when
 * the migration commits here. An agent that restarts finds the record,
 * re-attaches whatever of the copy exists, reports the receive failed, and
 * finishes it as the cluster decides: resumed when that migration was
 * committed, discarded otherwise (aborted, replaced, or the guest gone).
 */
#include <dirent.h>
#include <fcntl.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <qb/qblist.h>
#include <qb/qblog.h>

#include "agent_guests.h"
#include "agent_guests_int.h"
#include "agent_mig.h"
#include "agent_watchdog.h"
#include "driver.h"
#include "fencing.h"
#include "guestdef.h"
#include "restart.h"
#include "snapchoice.h"
#include "snapshot.h"
#include "util.h"

static void spec_fill(struct agent_guests *m, struct ag_guest *g)
{
	const struct ha_guest_def *d = &g->def;
	const char *shared = m->cfg->shared_dir;

#define RESOLVE(dst, src, sub)                                                   \
	do {                                                                     \
		if (!(src)[0]) {                                                 \
			(dst)[0] = 0;                                            \
		} else if ((src)[0] == '/') {                                    \
			snprintf(dst, sizeof(dst), "%s", src);                   \
		} else {                                                         \
			snprintf(dst, sizeof(dst), "%.2000s/%s/%.2000s", shared, \
				 sub, src);                                      \
		}                                                                \
	} while (0)
	RESOLVE(g->rootfs, d->template_dir, "templates");
	RESOLVE(g->kernel, d->kernel, "templates");
	RESOLVE(g->initrd, d->initrd, "templates");
	RESOLVE(g->disk, d->disk, "disks");
#undef RESOLVE
	memset(&g->spec, 0, sizeof(g->spec));
	g->spec.name = g->name;
	g->spec.type = d->type;
	g->spec.mem_kib = d->mem_kib;
	g->spec.disk_kib = d->disk_kib;
	g->spec.cpus = d->cpus;
	g->spec.cpu_weight = d->cpu_weight;
	g->spec.cpu_limit_pct = d->cpu_limit_pct;
	g->spec.pids_max = d->pids_max;
	g->spec.rootfs = g->rootfs[0] ? g->rootfs : NULL;
	g->spec.kernel = g->kernel[0] ? g->kernel : NULL;
	g->spec.initrd = g->initrd[0] ? g->initrd : NULL;
	g->spec.disk = g->disk[0] ? g->disk : NULL;
	g->spec.command = d->command[0] ? d->command : NULL;
	g->spec.ip = d->ip[0] ? d->ip : NULL;
	g->spec.gateway = d->gateway[0] ? d->gateway : NULL;
	g->spec.bridge = m->cfg->guest_bridge;
	g->spec.run_dir = g->run_dir;
	g->spec.data_dir = g->data_dir;
}

struct ag_guest *ag_guest_find(struct agent_guests *m, const char *name)
{
	struct ag_guest *g;

	qb_list_for_each_entry(g, &m->guests, list) {
		if (strcmp(g->name, name) == 0) {
			return g;
		}
	}
	return NULL;
}

/* Sets (or replaces) the definition of @g; 0 or -EINVAL with g->error. */
static int guest_set_def(struct agent_guests *m, struct ag_guest *g, const char *text,
			 size_t len)
{
	char *copy;
	struct ha_guest_def def;
	char err[512];

	if (g->def_text && g->def_len == len && memcmp(g->def_text, text, len) == 0) {
		return 0;
	}
	if (ha_guestdef_parse(text, len, g->name, &def, err, sizeof(err)) < 0) {
		snprintf(g->error, sizeof(g->error), "%s", err);
		return -EINVAL;
	}
	copy = malloc(len + 1);
	if (copy == NULL) {
		return -ENOMEM;
	}
	memcpy(copy, text, len);
	copy[len] = 0;
	free(g->def_text);
	g->def_text = copy;
	g->def_len = len;
	g->def = def;
	g->ops = agent_driver_find(def.type);
	g->drv.ops = g->ops;
	g->drv.cfg = m->cfg;
	spec_fill(m, g);
	if (g->ops == NULL) {
		snprintf(g->error, sizeof(g->error), "no %s driver in this agent", def.type);
		return -ENOTSUP;
	}
	return 0;
}

static struct ag_guest *guest_new(struct agent_guests *m, const char *name)
{
	struct ag_guest *g = calloc(1, sizeof(*g));

	if (g == NULL) {
		return NULL;
	}
	snprintf(g->name, sizeof(g->name), "%s", name);
	snprintf(g->run_dir, sizeof(g->run_dir), "%s/guests/%s", m->cfg->state_dir, name);
	snprintf(g->data_dir, sizeof(g->data_dir), "%s/guests/%s", m->cfg->shared_dir, name);
	g->state = AGENT_GUEST_DEFINED;
	g->m = m;
	qb_list_add_tail(&g->list, &m->guests);
	return g;
}

static void guest_free(struct ag_guest *g)
{
	if (g->m->sending == g) {
		g->m->sending = NULL;
	}
	mig_listener_free(g->mig_listener);
	if (g->g && g->ops) {
		g->ops->guest_free(g->g);
	}
	qb_list_del(&g->list);
	free(g->def_text);
	free(g);
}

/* ---- the record of an incoming copy ---- */

#define SNAP_RETRY_MS 1000u /* the first retry of a failed periodic snapshot */

/* The guest's migration phase changes here only, through agent/agent_mig.c's
 * table: a refused step is logged there and leaves the phase as it is. */
static void mig_phase_set(struct ag_guest *g, enum agent_mig_phase expected,
			  enum agent_mig_phase to)
{
	agent_mig_phase_set(&g->mig_phase, expected, to, g->name, g->mig_id);
}

static void incoming_clear(struct ag_guest *g)
{
	char path[PATH_MAX + 32];

	snprintf(path, sizeof(path), "%s/" INCOMING_FILE, g->run_dir);
	unlink(path);
	g->incoming_id = 0;
}

/* The migration id of an incoming.conf text, 0 when it has none. */
static uint64_t incoming_id_of(const char *text, size_t len)
{
	size_t tl = sizeof(INCOMING_TAG) - 1;
	uint64_t id = 0;

	if (len <= tl || memcmp(text, INCOMING_TAG, tl) != 0) {
		return 0;
	}
	for (size_t i = tl; i < len && text[i] >= '0' && text[i] <= '9' && id < UINT64_MAX / 10;
	     i++) {
		id = id * 10 + (uint64_t)(text[i] - '0');
	}
	return id;
}

/* ---- restart policy ---- */

/* A failure of a guest that should run here: a failed start (@ran_ms 0)
 * or a stop nobody asked for after @ran_ms of running. */
static void restart_failure(struct ag_guest *g, uint64_t ran_ms)
{
	uint64_t delay;

	g->fails = ha_restart_fails_next(g->fails, ran_ms);
	if (ha_restart_local(g->def.max_restart, g->fails, &delay) == HA_RESTART_AGAIN) {
		g->next_start_ms = ha_mono_ms() + delay;
		qb_log(LOG_WARNING, "%s failed (%u of %u restarts here): restart in %" PRIu64
		       " ms", g->name, g->fails, g->def.max_restart, delay);
		snprintf(g->note, sizeof(g->note), "restart %u of %u here in %" PRIu64 " ms",
			 g->fails, g->def.max_restart, delay);
		return;
	}
	g->gave_up = true;
	qb_log(LOG_ERR, "%s failed %u times here (max_restart %u): no more restarts here, "
	       "the cluster decides", g->name, g->fails, g->def.max_restart);
	snprintf(g->note, sizeof(g->note), "failed %u times here (max_restart %u)", g->fails,
		 g->def.max_restart);
}

static void restart_reset(struct ag_guest *g)
{
	g->resume_snapshot = false;
	g->fails = 0;
	g->next_start_ms = 0;
	g->up_seen = false;
	g->gave_up = false;
}

/* ---- reporting ---- */

enum agent_guest_state ag_live_state(struct ag_guest *g)
{
	if (g->busy || g->g == NULL) {
		return g->state;
	}
	return g->ops->state(g->g);
}

/* A report's limit counters from the driver's usage. */
static void limits_fill(Hactl__GuestLimits *l, const struct agent_guest_usage *u)
{
	const struct agent_guest_limits *c = &u->lim;

	hactl__guest_limits__init(l);
	l->mem_peak_bytes = c->mem_peak_bytes;
	l->mem_limit_bytes = c->mem_limit_bytes;
	l->mem_failcnt = c->mem_failcnt;
	l->pids_limit = c->pids_limit;
	l->pids_failcnt = c->pids_failcnt;
	l->cpu_periods = c->cpu_periods;
	l->cpu_throttled = c->cpu_throttled;
	l->cpu_throttled_ns = c->cpu_throttled_ns;
	l->pids = u->pids;
	l->has_mem_peak_bytes = l->has_mem_limit_bytes = l->has_mem_failcnt = true;
	l->has_pids_limit = l->has_pids_failcnt = l->has_pids = true;
	l->has_cpu_periods = l->has_cpu_throttled = l->has_cpu_throttled_ns = true;
}

static void report(struct agent_guests *m)
{
	Hactl__GuestStatus *st, **ptrs;
	Hactl__MigrationReport *mrs;
	Hactl__GuestLimits *lims;
	struct ag_guest *g;
	size_t n = 0, i = 0;

	qb_list_for_each_entry(g, &m->guests, list) {
		n++;
	}
	st = calloc(n + 1, sizeof(*st));
	ptrs = calloc(n + 1, sizeof(*ptrs));
	mrs = calloc(n + 1, sizeof(*mrs));
	lims = calloc(n + 1, sizeof(*lims));
	if (st == NULL || ptrs == NULL || mrs == NULL || lims == NULL) {
		free(st);
		free(ptrs);
		free(mrs);
		free(lims);
		return;
	}
	qb_list_for_each_entry(g, &m->guests, list) {
		enum agent_guest_state s = ag_live_state(g);

		/* a guest neither owned nor running here is none of our business */
		if (!g->owned && s != AGENT_GUEST_RUNNING && s != AGENT_GUEST_PAUSED &&
		    g->mig_phase == AGENT_MIG_NONE) {
			continue;
		}
		hactl__guest_status__init(&st[i]);
		st[i].name = g->name;
		st[i].state = (char *)agent_guest_state_str(s);
		st[i].error = g->error;
		st[i].has_snap_generation = g->snap_generation != 0;
		st[i].snap_generation = g->snap_generation;
		st[i].has_snap_time_ms = g->snap_time_ms != 0;
		st[i].snap_time_ms = g->snap_time_ms;
		st[i].has_generation = true;
		st[i].generation = g->generation;
		st[i].note = g->note;
		if (g->owned) {
			st[i].has_restarts = g->fails != 0;
			st[i].restarts = g->fails;
			st[i].has_gave_up = g->gave_up;
			st[i].gave_up = g->gave_up;
		}
		if (g->mig_phase != AGENT_MIG_NONE) {
			Hactl__MigrationReport *mr = &mrs[i];

			hactl__migration_report__init(mr);
			mr->id = g->mig_id;
			mr->role = g->mig_source ? "source" : "destination";
			mr->phase = (char *)agent_mig_phase_str(g->mig_phase);
			mr->error = g->mig_error;
			mr->has_transferred_bytes = true;
			mr->transferred_bytes = g->prog.transferred_bytes;
			mr->has_remaining_bytes = true;
			mr->remaining_bytes = g->prog.remaining_bytes;
			mr->has_dirty_rate_bps = true;
			mr->dirty_rate_bps = g->prog.dirty_rate_bps;
			mr->has_rounds = true;
			mr->rounds = g->prog.rounds;
			mr->has_expected_downtime_ms = true;
			mr->expected_downtime_ms = g->prog.expected_downtime_ms;
			mr->has_downtime_ms = g->prog.downtime_ms != 0;
			mr->downtime_ms = g->prog.downtime_ms;
			mr->has_total_ms = true;
			mr->total_ms = g->prog.total_ms;
			mr->mode = g->mig_mode;
			{
				struct mig_counters c;

				pthread_mutex_lock(&m->lock);
				if (g->mig_xfer) {
					agent_mig_counters(g->mig_xfer, &g->mig_ctr);
				}
				c = g->mig_ctr;
				memcpy(g->mig_cipher_shown, g->mig_cipher, sizeof(g->mig_cipher));
				memcpy(g->mig_xport_shown, g->mig_xport, sizeof(g->mig_xport));
				pthread_mutex_unlock(&m->lock);
				if (g->mig_cipher_shown[0]) {
					mr->cipher = g->mig_cipher_shown;
					mr->transport = g->mig_xport_shown;
					mr->has_stream_sent = true;
					mr->stream_sent = c.payload_sent;
					mr->has_stream_received = true;
					mr->stream_received = c.payload_recv;
				}
			}
			if (!g->mig_source && g->mig_port && g->mig_phase == AGENT_MIG_TRANSFERRING) {
				/* only while the source may still need it: every
				 * report with a port wakes the other agents */
				mr->has_port = true;
				mr->port = g->mig_port;
			}
			st[i].migration = mr;
		}
		if (!g->busy && g->g && (s == AGENT_GUEST_RUNNING || s == AGENT_GUEST_PAUSED)) {
			struct agent_guest_usage u = { 0 };

			if (g->ops->usage(g->g, &u) == 0) {
				st[i].has_cpu_ns = true;
				st[i].cpu_ns = u.cpu_ns;
				st[i].has_mem_bytes = true;
				st[i].mem_bytes = u.mem_bytes;
				st[i].has_disk_used_bytes = u.disk_size_bytes > 0;
				st[i].disk_used_bytes = u.disk_used_bytes;
				st[i].has_disk_size_bytes = u.disk_size_bytes > 0;
				st[i].disk_size_bytes = u.disk_size_bytes;
				if (u.lim.valid) {
					limits_fill(&lims[i], &u);
					st[i].limits = &lims[i];
				}
			}
		}
		ptrs[i] = &st[i];
		i++;
	}
	if (m->io.report) {
		m->io.report(m->io.arg, ptrs, i);
	}
	free(st);
	free(ptrs);
	free(mrs);
	free(lims);
}

static void reconcile_one(struct agent_guests *m, struct ag_guest *g, bool quorate);

/* The next periodic snapshot of @g, @delay_ms from now (none without an
 * interval). */
static void snap_plan(struct agent_guests *m, struct ag_guest *g, uint64_t delay_ms)
{
	g->next_snap_ms = g->def.snapshot_interval_s ? now_ms(m) + delay_ms : 0;
}

/*
 * A periodic snapshot failed (e.g. CRIU refused the guest's state at that
 * instant): tried again after 1 s, then 2, 4 ... up to the interval, not at
 * the next tick: every attempt stops the guest for a moment.
 */
static void snap_retry(struct agent_guests *m, struct ag_guest *g)
{
	uint64_t interval = g->def.snapshot_interval_s * 1000ull;
	uint64_t delay = (uint64_t)SNAP_RETRY_MS << (g->snap_failures < 6 ? g->snap_failures : 6);

	g->snap_failures++;
	snap_plan(m, g, delay < interval ? delay : interval);
}

/* The note after hactl pause (@on) or resume; a pause keeps what the note
 * said of the start before it (e.g. the snapshot a failover restored). */
static void pause_note(struct ag_guest *g, bool on)
{
	char prev[sizeof(g->note)];

	snprintf(prev, sizeof(prev), "%s", g->note);
	if (on && prev[0] && strncmp(prev, "paused ", 7) != 0 &&
	    strncmp(prev, "resumed ", 8) != 0) {
		snprintf(g->note, sizeof(g->note), "paused by the operator (hactl pause); %s",
			 prev);
	} else {
		snprintf(g->note, sizeof(g->note), "%s", on ?
			 "paused by the operator (hactl pause)" : "resumed (hactl resume)");
	}
}

static int done_cb(int fd, int revents, void *data)
{
	struct agent_guests *m = data;
	uint64_t v;
	struct qb_list_head done;
	struct ag_op *op, *tmp;
	bool fence_after;

	if (read(m->efd, &v, sizeof(v)) < 0) {
		/* spurious wake-up */
	}
	qb_list_init(&done);
	pthread_mutex_lock(&m->lock);
	qb_list_for_each_entry_safe(op, tmp, &m->done, list) {
		qb_list_del(&op->list);
		qb_list_add_tail(&op->list, &done);
	}
	pthread_mutex_unlock(&m->lock);

	qb_list_for_each_entry_safe(op, tmp, &done, list) {
		struct ag_guest *g = op->g;
		uint64_t took = ha_mono_ms() - op->started_ms;

		qb_list_del(&op->list);
		g->busy = false;
		g->g = op->obj;
		fence_after = m->self_fenced && !(op->kind == OP_KILL && op->rc < 0);
		pthread_mutex_lock(&m->lock);
		g->op_obj = NULL;
		pthread_mutex_unlock(&m->lock);
		if (op->kind == OP_STOP || op->kind == OP_DESTROY || op->kind == OP_KILL ||
		    g->fence_killed) {
			/* stopped on purpose (self-fence too): no failure of the
			 * restart policy */
			g->up_seen = false;
		}
		if (g->fence_killed) {
			qb_log(LOG_NOTICE, "%s %s ended after the self-fence killed the guest",
			       op_names[op->kind], g->name);
		}
		if (op->rc < 0) {
			qb_log(LOG_ERR, "%s (after %" PRIu64 " ms)", op->err, took);
			snprintf(g->error, sizeof(g->error), "%s", op->err);
			if (op->kind == OP_SNAPSHOT) {
				snap_retry(m, g);
			}
			if (op->kind == OP_START_COLD || op->kind == OP_START_SNAPSHOT) {
				g->state = AGENT_GUEST_FAILED;
				if (g->owned && g->want_running) {
					restart_failure(g, 0);
				}
			} else if (g->g) {
				g->state = g->ops->state(g->g);
			}
		} else {
			qb_log(LOG_NOTICE, "%s %s done in %" PRIu64 " ms%s%s", op_names[op->kind],
			       g->name, took, op->err[0] ? ": " : "", op->err);
			if (op->kind != OP_SNAPSHOT) {
				g->error[0] = 0;
			}
			if (op->kind == OP_START_COLD || op->kind == OP_START_SNAPSHOT) {
				g->resume_snapshot = false;
			}
			if (op->kind == OP_START_SNAPSHOT) {
				snprintf(g->note, sizeof(g->note),
					 "restored from snapshot generation %" PRIu64
					 " taken %" PRIu64 " ms before%s%s", op->value,
					 wall_ms(m) > op->value_ms ? wall_ms(m) - op->value_ms : 0,
					 op->err[0] ? ": " : "", op->err);
			} else if (op->kind == OP_START_COLD) {
				snprintf(g->note, sizeof(g->note), "%s", op->err[0] ? op->err : "cold start");
			}
			if (op->kind == OP_SNAPSHOT || op->kind == OP_START_SNAPSHOT) {
				if (op->value > g->snap_generation) {
					g->snap_generation = op->value;
					g->snap_time_ms = op->value_ms;
				}
			}
			if (op->kind == OP_SNAPSHOT) {
				g->snap_failures = 0;
				snap_plan(m, g, g->def.snapshot_interval_s * 1000ull);
			}
			g->state = g->g ? g->ops->state(g->g) : AGENT_GUEST_STOPPED;
			if (op->kind == OP_START_COLD || op->kind == OP_START_SNAPSHOT) {
				g->started_ms = ha_mono_ms();
				g->up_seen = true;
				/* record the definition so a new agent can re-attach */
				char path[PATH_MAX + 32];

				snprintf(path, sizeof(path), "%s/definition.conf", g->run_dir);
				ha_file_write_atomic(path, g->def_text, g->def_len);
				g->snap_failures = 0;
				snap_plan(m, g, g->def.snapshot_interval_s * 1000ull);
			}
		}
		if (op->kind == OP_MIG_SEND && m->sending == g) {
			m->sending = NULL;
		}
		if (op->kind == OP_MIG_SEND || op->kind == OP_MIG_RECV) {
			mig_listener_free(g->mig_listener);
			g->mig_listener = NULL;
			if (op->mig_id == g->mig_id && g->mig_phase == AGENT_MIG_TRANSFERRING) {
				if (op->rc < 0) {
					mig_phase_set(g, AGENT_MIG_TRANSFERRING, AGENT_MIG_FAILED);
					snprintf(g->mig_error, sizeof(g->mig_error), "%s", op->err);
				} else {
					mig_phase_set(g, AGENT_MIG_TRANSFERRING, op->kind == OP_MIG_SEND ?
						      AGENT_MIG_SENT : AGENT_MIG_RECEIVED);
				}
			}
			g->error[0] = 0;
			g->state = g->g ? g->ops->state(g->g) : AGENT_GUEST_STOPPED;
			if (op->kind == OP_MIG_RECV && op->rc < 0 && g->g == NULL) {
				incoming_clear(g); /* the driver left nothing */
			}
		}
		if (op->kind == OP_MIG_FINISH) {
			/* A newer transaction of this guest may have begun while
			 * this one finished (a slow discard on the source): its
			 * phase is not this one's to end. */
			if (op->mig_id == g->mig_id) {
				mig_phase_set(g, AGENT_MIG_FINISHING, AGENT_MIG_FINISHED);
			}
			if (op->mig_source && op->mig_commit && g->g) {
				g->ops->guest_free(g->g); /* the copy here is gone */
				g->g = NULL;
				g->state = AGENT_GUEST_STOPPED;
			} else if (!op->mig_source && !op->mig_commit && g->g) {
				g->ops->guest_free(g->g);
				g->g = NULL;
				g->state = AGENT_GUEST_STOPPED;
			}
			if (g->g && op->rc == 0) {
				char path[PATH_MAX + 32];

				g->state = g->ops->state(g->g);
				snprintf(path, sizeof(path), "%s/definition.conf", g->run_dir);
				ha_file_write_atomic(path, g->def_text, g->def_len);
			}
			if (!op->mig_source && (op->rc == 0 || g->g == NULL)) {
				incoming_clear(g); /* resumed here, or discarded */
			}
			if (op->mig_disowned) {
				snprintf(g->note, sizeof(g->note), "migration %s; another node owns the "
					 "guest now: the copy here was discarded, not resumed",
					 op->mig_source ? "aborted" : "committed");
			} else {
				snprintf(g->note, sizeof(g->note), "%s", !op->mig_commit ?
					 "migration aborted" : op->mig_source ? "migrated away" :
					 "migrated here");
			}
		}
		if (op->kind == OP_KILL && op->rc == 0) {
			snprintf(g->note, sizeof(g->note), "%s", g->kill_why ? g->kill_why : "killed");
		}
		if (op->kind == OP_KILL && g->check_killed) {
			/* its health check killed it: a crash for the restart
			 * policy, started again as the cluster's order says
			 * (not from a snapshot: one may hold the failing state) */
			g->check_killed = false;
			if (op->rc == 0 && g->owned && g->want_running) {
				uint64_t now = ha_mono_ms();

				g->resume_snapshot = false;
				restart_failure(g, now > g->started_ms ? now - g->started_ms : 0);
			}
		}
		if ((op->kind == OP_PAUSE || op->kind == OP_UNPAUSE) && op->rc == 0) {
			g->paused_here = op->kind == OP_PAUSE;
			/* resumed: its checks count from 0, one interval on */
			g->check_fails = 0;
			g->next_check_ms = ha_mono_ms() + g->def.check_interval_s * 1000ull;
			pause_note(g, op->kind == OP_PAUSE);
		}
		if (op->kind == OP_STOP || op->kind == OP_KILL || op->kind == OP_START_COLD ||
		    op->kind == OP_START_SNAPSHOT) {
			g->paused_here = false; /* a new process, or none */
		}
		if (op->kind == OP_RESUME) {
			g->resume_failed = op->rc < 0;
		}
		if (op->kind == OP_RESUME && op->rc == 0) {
			snprintf(g->note, sizeof(g->note), "found paused after an agent restart: "
				 "resumed (this node owns it, no migration in flight)");
		}
		if (op->req_id && m->io.action_done) {
			m->io.action_done(m->io.arg, op->req_id, op->rc,
					  op->rc < 0 ? op->err : "snapshot written", op->value);
		}
		pthread_mutex_lock(&m->lock);
		m->inflight--;
		pthread_cond_broadcast(&m->idle);
		pthread_mutex_unlock(&m->lock);
		if (op->kind == OP_DESTROY && op->rc == 0) {
			free(op);
			if (g->g) {
				g->ops->guest_free(g->g);
				g->g = NULL;
			}
			guest_free(g);
			continue;
		}
		free(op);
		if (fence_after) {
			/* what the operation left running goes at once, not at
			 * the next tick (a failed kill is retried there) */
			ag_self_fence_one(m, g);
		}
	}
	ag_checks_collect(m);
	report(m);
	return 0;
}

/* ---- reconciliation ---- */

/* Discards an incoming copy that a previous agent left (see the file's
 * head) with the driver's destination abort. */
static void incoming_discard(struct ag_guest *g)
{
	qb_log(LOG_NOTICE, "%s: discarding the copy of migration %" PRIu64
	       " that the previous agent was receiving", g->name, g->incoming_id);
	g->mig_id = g->incoming_id;
	g->mig_source = false;
	g->mig_commit = false;
	mig_phase_set(g, g->mig_phase, AGENT_MIG_FINISHING);
	/* arg 1: without a re-attached copy, the driver's discard runs on a
	 * fresh object and cleans what the copy left (processes, cgroup,
	 * run directory) without touching the shared writable layer */
	ag_op_start(g, OP_MIG_FINISH, 1, 0);
}

/* Live migration steps of one guest; true when the guest is in one (the
 * ordinary reconciliation then leaves it alone). */
static bool reconcile_migration(struct agent_guests *m, struct ag_guest *g,
				const Hactl__GuestRecord *rec, uint32_t local_id)
{
	const Hactl__Migration *mg = rec->migration;
	bool src, dst;
	int state;

	if (mg == NULL) {
		return false;
	}
	state = ha_migration_state_from_str(mg->state);
	src = mg->source == local_id;
	dst = mg->destination == local_id;
	if (!src && !dst) {
		return false;
	}
	if (state == HACTL__MIGRATION_STATE__MIGRATION_TRANSFERRING) {
		if (g->mig_id != mg->id) {
			/* a new transaction for this guest */
			g->mig_id = mg->id;
			g->mig_source = src;
			mig_phase_set(g, g->mig_phase, AGENT_MIG_NONE);
			g->mig_port = 0;
			g->mig_error[0] = 0;
			g->mig_transport[0] = 0;
			g->mig_cipher_shown[0] = 0;
			g->mig_xport_shown[0] = 0;
			pthread_mutex_lock(&m->lock);
			g->mig_cancel = false;
			g->mig_cipher[0] = 0;
			g->mig_xport[0] = 0;
			memset(&g->mig_ctr, 0, sizeof(g->mig_ctr));
			pthread_mutex_unlock(&m->lock);
			memset(&g->prog, 0, sizeof(g->prog));
			memset(&g->mig_opts, 0, sizeof(g->mig_opts));
			g->mig_opts.id = mg->id;
			if (mg->options) {
				g->mig_opts.max_downtime_ms = mg->options->max_downtime_ms;
				g->mig_opts.bandwidth_bps = mg->options->bandwidth_bps;
				snprintf(g->mig_mode, sizeof(g->mig_mode), "%s",
					 mg->options->mode && mg->options->mode[0] ? mg->options->mode : "auto");
				g->mig_opts.mode = strcmp(g->mig_mode, "auto") == 0 ? NULL : g->mig_mode;
				if (mg->options->transport) {
					snprintf(g->mig_transport, sizeof(g->mig_transport), "%s",
						 mg->options->transport);
				}
			}
			snprintf(g->mig_addr, sizeof(g->mig_addr), "%s",
				 mg->dst_address ? mg->dst_address : "");
		}
		if (g->busy || g->mig_phase != AGENT_MIG_NONE) {
			return true;
		}
		if (dst) {
			struct agent_mig_params mp;
			char err[512];

			if (ag_watchdog_refuses(m, g, err, sizeof(err))) {
				mig_phase_set(g, AGENT_MIG_NONE, AGENT_MIG_FAILED);
				snprintf(g->mig_error, sizeof(g->mig_error), "destination: %s", err);
				qb_log(LOG_ERR, "migration %" PRIu64 " of %s: %s", mg->id, g->name,
				       g->mig_error);
				return true;
			}
			ag_mig_params(g, &mp);
			if (agent_mig_listen(&mp, &g->mig_listener, err, sizeof(err)) < 0) {
				mig_phase_set(g, AGENT_MIG_NONE, AGENT_MIG_FAILED);
				snprintf(g->mig_error, sizeof(g->mig_error), "destination: %s", err);
				qb_log(LOG_ERR, "migration %" PRIu64 " of %s: %s", mg->id, g->name,
				       g->mig_error);
				return true;
			}
			g->mig_port = mig_listener_port(g->mig_listener);
			mig_phase_set(g, AGENT_MIG_NONE, AGENT_MIG_TRANSFERRING);
			if (ag_op_start(g, OP_MIG_RECV, 0, 0) < 0) {
				mig_phase_set(g, AGENT_MIG_TRANSFERRING, AGENT_MIG_FAILED);
				snprintf(g->mig_error, sizeof(g->mig_error), "cannot start the receiver");
			}
			qb_log(LOG_NOTICE, "migration %" PRIu64 " of %s: receiving on port %u",
			       mg->id, g->name, g->mig_port);
		} else if (mg->dst_port) {
			/* One outgoing stream per host at a time: the link is the
			 * bottleneck anyway, and the container dumps must not
			 * overlap (two concurrent ones stalled here). */
			if (m->sending && m->sending != g) {
				return true;
			}
			m->sending = g;
			g->mig_dst_port = mg->dst_port;
			mig_phase_set(g, AGENT_MIG_NONE, AGENT_MIG_TRANSFERRING);
			if (ag_op_start(g, OP_MIG_SEND, 0, 0) < 0) {
				mig_phase_set(g, AGENT_MIG_TRANSFERRING, AGENT_MIG_FAILED);
				snprintf(g->mig_error, sizeof(g->mig_error), "cannot start the sender");
			}
			qb_log(LOG_NOTICE, "migration %" PRIu64 " of %s: sending to %s:%u", mg->id,
			       g->name, g->mig_addr, g->mig_dst_port);
		}
		return true;
	}
	/* committed or aborted: finish what this side holds */
	if (g->mig_id != mg->id || g->mig_phase == AGENT_MIG_FINISHED ||
	    g->mig_phase == AGENT_MIG_NONE) {
		return g->mig_id == mg->id && g->mig_phase == AGENT_MIG_FINISHING;
	}
	if (g->busy) {
		if (state == HACTL__MIGRATION_STATE__MIGRATION_ABORTED) {
			/* cut the stream: the driver's send or receive fails fast */
			pthread_mutex_lock(&m->lock);
			if (g->mig_xfer && !g->mig_cancel) {
				agent_mig_cancel(g->mig_xfer);
			}
			g->mig_cancel = true;
			pthread_mutex_unlock(&m->lock);
			if (g->mig_listener) {
				shutdown(mig_listener_fd(g->mig_listener), SHUT_RDWR);
			}
		}
		return true;
	}
	if (g->mig_listener) {
		/* the receiver still waits for a connection: wake it up */
		shutdown(mig_listener_fd(g->mig_listener), SHUT_RDWR);
		return true;
	}
	g->mig_commit = state == HACTL__MIGRATION_STATE__MIGRATION_COMMITTED;
	if (g->g == NULL && g->incoming_id == mg->id) {
		/* the copy a previous agent was receiving is not there (any
		 * more): clean up what it left */
		incoming_discard(g);
		return true;
	}
	g->mig_disowned = false;
	if (g->mig_source != g->mig_commit && rec->owner != local_id) {
		/* The decision would run the copy here (an aborted source
		 * resumes, a committed destination starts), but this node no
		 * longer owns the guest: the cluster recovered it elsewhere
		 * meanwhile (this host was cut off). Discard it instead. */
		qb_log(LOG_WARNING, "migration %" PRIu64 " of %s %s, but node %u owns it now: "
		       "discarding the %s copy here instead of resuming it", mg->id, g->name,
		       mg->state, rec->owner, g->mig_source ? "source" : "destination");
		g->mig_commit = !g->mig_commit;
		g->mig_disowned = true;
	}
	if (g->g == NULL) {
		mig_phase_set(g, g->mig_phase, AGENT_MIG_FINISHED);
		return false;
	}
	mig_phase_set(g, g->mig_phase, AGENT_MIG_FINISHING);
	ag_op_start(g, OP_MIG_FINISH, 0, 0);
	qb_log(LOG_NOTICE, "migration %" PRIu64 " of %s %s: %s side", mg->id, g->name, mg->state,
	       g->mig_source ? "source" : "destination");
	return true;
}

/*
 * `hactl pause` / `hactl resume` of a guest this node owns and runs: the
 * cluster's record (want_paused) against the guest. A guest paused as
 * asked is up, not crashed or hung: nothing more happens to it (no
 * restart, no health check, no periodic snapshot: they look for
 * RUNNING). true when that settled @g for this round.
 */
static bool pause_reconcile(struct ag_guest *g, enum agent_guest_state s)
{
	if (g->want_paused && s == AGENT_GUEST_RUNNING) {
		qb_log(LOG_NOTICE, "%s: paused by the operator: freezing it", g->name);
		ag_op_start(g, OP_PAUSE, 0, 0);
		return true;
	}
	if (g->want_paused && s == AGENT_GUEST_PAUSED) {
		if (!g->up_seen) {
			g->up_seen = true; /* re-attached, paused as asked */
			g->started_ms = ha_mono_ms();
		}
		/* the freeze is the operator's, whichever agent made it:
		 * resume thaws it (snapshots and migrations, which freeze
		 * too, do not run while it is paused) */
		g->paused_here = true;
		return true;
	}
	if (!g->want_paused && s == AGENT_GUEST_PAUSED && g->paused_here) {
		qb_log(LOG_NOTICE, "%s: resumed by the operator: thawing it", g->name);
		ag_op_start(g, OP_UNPAUSE, 0, 0);
		return true;
	}
	/* paused by someone else (an earlier agent's operation): below */
	return false;
}

static void reconcile_one(struct agent_guests *m, struct ag_guest *g, bool quorate)
{
	enum agent_guest_state s;
	bool running;

	if (g->busy || !quorate || g->in_migration) {
		return; /* without quorum nothing changes here (self-fencing stops them) */
	}
	s = ag_live_state(g);
	running = s == AGENT_GUEST_RUNNING || s == AGENT_GUEST_PAUSED;
	if (!g->in_cluster) {
		ag_op_start(g, OP_DESTROY, g->owned, 0);
		return;
	}
	if (running && !g->owned) {
		/* Another node may run it this very moment: no graceful stop
		 * over stop_timeout, the copy here goes at once. */
		qb_log(LOG_WARNING, "%s runs here but another node owns it: killing it", g->name);
		g->kill_why = "killed: it ran here while another node owns it";
		ag_op_start(g, OP_KILL, 0, 0);
		return;
	}
	if (g->owned && g->want_running && pause_reconcile(g, s)) {
		return;
	}
	if (s == AGENT_GUEST_PAUSED) {
		/* Paused outside any migration this agent follows: an
		 * operation of an earlier agent (snapshot, checkpoint,
		 * hand-over) froze it and that agent is gone. This node owns it
		 * and the cluster has no migration of it in flight (else it
		 * would be in_migration): resume it when it should run, stop it
		 * when it should not. */
		if (g->want_running && !g->resume_failed) {
			qb_log(LOG_WARNING, "%s is paused with nothing in flight: resuming it",
			       g->name);
			ag_op_start(g, OP_RESUME, 0, 0);
		} else if (g->want_running) {
			/* it cannot be resumed: killed, then started afresh */
			g->resume_failed = false;
			g->kill_why = "found paused after an agent restart and could not be "
				      "resumed: killed (started again next)";
			ag_op_start(g, OP_KILL, 0, 0);
		} else {
			ag_op_start(g, OP_STOP, 0, 0);
		}
		return;
	}
	if (g->owned && g->want_running) {
		if (running) {
			if (!g->up_seen) {
				g->up_seen = true; /* re-attached, or started by a migration */
				g->started_ms = ha_mono_ms();
			}
			return;
		}
		if (g->up_seen) {
			/* it stopped by itself: a failure of the restart policy */
			uint64_t now = ha_mono_ms();

			g->up_seen = false;
			g->resume_snapshot = true;
			if (!g->error[0]) {
				snprintf(g->error, sizeof(g->error), "%s stopped unexpectedly",
					 g->name);
			}
			restart_failure(g, now > g->started_ms ? now - g->started_ms : 0);
		}
		if (!g->gave_up && ha_mono_ms() >= g->next_start_ms) {
			char why[512];

			if (ag_watchdog_refuses(m, g, why, sizeof(why))) {
				if (!g->refused) {
					qb_log(LOG_ERR, "not starting %s: %s", g->name, why);
				}
				g->refused = true;
				snprintf(g->error, sizeof(g->error), "not started: %s", why);
				return;
			}
			g->refused = false;
			if (g->resume_snapshot && g->def.restart == HA_RESTART_SNAPSHOT) {
				/* the failover rule's snapshot, cold when none
				 * qualifies (common/snapchoice.h) -- also after an
				 * operator's restore of an older generation, which
				 * is not restored again */
				qb_log(LOG_NOTICE, "%s ended without being asked to: restarting it "
				       "from its newest failover snapshot (cold when none "
				       "qualifies)", g->name);
				ag_op_start_ex(g, OP_START_SNAPSHOT, 0, 0, true);
			} else {
				ag_op_start_ex(g, g->start_snapshot ? OP_START_SNAPSHOT : OP_START_COLD,
					    g->start_gen, 0, g->start_fallback);
			}
		}
		return;
	}
	g->up_seen = false;
	if (running) {
		qb_log(LOG_NOTICE, "%s runs here but should be stopped: stopping it", g->name);
		ag_op_start(g, OP_STOP, 0, 0);
	}
}

void agent_guests_reconcile(struct agent_guests *m, const Hactl__AgentGuestsReply *r)
{
	struct ag_guest *g, *tmp;

	for (size_t i = 0; i < r->n_nodes; i++) {
		if (r->nodes[i]->id == r->local_id && r->nodes[i]->name &&
		    strcmp(r->nodes[i]->name, m->local_name) != 0) {
			snprintf(m->local_name, sizeof(m->local_name), "%s", r->nodes[i]->name);
			ag_fence_method_update(m);
		}
	}
	if (r->quorate) {
		m->last_quorate_ms = now_ms(m);
		if (m->self_fenced) {
			qb_log(LOG_NOTICE, "quorum is back: guests may run here again");
			m->self_fenced = false;
		}
	}
	for (size_t i = 0; i < r->n_nodes; i++) {
		if (r->nodes[i]->id == r->local_id && r->nodes[i]->address) {
			snprintf(m->local_addr, sizeof(m->local_addr), "%s", r->nodes[i]->address);
		}
	}
	qb_list_for_each_entry(g, &m->guests, list) {
		g->in_cluster = false;
	}
	for (size_t i = 0; i < r->n_guests; i++) {
		const Hactl__GuestRecord *rec = r->guests[i];
		bool owned = rec->owner == r->local_id;

		g = ag_guest_find(m, rec->name);
		if (g == NULL) {
			bool mig_dst = rec->migration && rec->migration->destination == r->local_id &&
				       ha_migration_state_from_str(rec->migration->state) ==
				       HACTL__MIGRATION_STATE__MIGRATION_TRANSFERRING;

			if (!owned && !mig_dst) {
				continue; /* nothing of it here */
			}
			g = guest_new(m, rec->name);
			if (g == NULL) {
				continue;
			}
		}
		g->in_cluster = true;
		if (!rec->has_definition ||
		    guest_set_def(m, g, (const char *)rec->definition.data,
				  rec->definition.len) < 0) {
			continue;
		}
		if (owned && rec->generation != g->generation) {
			g->generation = rec->generation;
			g->error[0] = 0;
			restart_reset(g); /* a new ownership: the policy starts over */
		}
		g->owned = owned;
		g->want_running = ha_guest_state_from_str(rec->desired) ==
				  HACTL__GUEST_STATE__GUEST_RUNNING;
		g->want_paused = rec->has_paused && rec->paused;
		g->start_snapshot = rec->start_mode && (strcmp(rec->start_mode, "snapshot") == 0 ||
							 strcmp(rec->start_mode, "snapshot-or-cold") == 0);
		g->start_fallback = rec->start_mode && strcmp(rec->start_mode, "snapshot-or-cold") == 0;
		g->start_gen = rec->start_snapshot;
		if (owned && g->want_running && !g->up_seen && !g->resume_snapshot &&
		    rec->running_on == r->local_id &&
		    (!rec->has_state_generation || rec->state_generation == rec->generation) &&
		    (ha_guest_state_from_str(rec->state) == HACTL__GUEST_STATE__GUEST_RUNNING ||
		     ha_guest_state_from_str(rec->state) == HACTL__GUEST_STATE__GUEST_PAUSED)) {
			/* The cluster last heard it running here, under this
			 * generation, and this agent has not seen it up: it
			 * ended with the host or an earlier agent (a reboot, a
			 * kill). Started again, it goes on from its newest good
			 * snapshot when its policy says so, as after a crash
			 * this agent saw; never from scratch with a snapshot's
			 * state lost. Found by the fault campaign (seed 2): a
			 * killed host that rejoined before it was fenced started
			 * its container cold. A guest still running here is
			 * re-attached and nothing changes. */
			g->resume_snapshot = true;
		}
		if (rec->snap_generation > g->snap_generation) {
			g->snap_generation = rec->snap_generation;
			g->snap_time_ms = rec->snap_time_ms;
		}
		if (g->incoming_id && r->quorate && !g->busy &&
		    (rec->migration == NULL || rec->migration->id != g->incoming_id ||
		     rec->migration->destination != r->local_id)) {
			/* a copy found at restart whose transaction is over */
			incoming_discard(g);
			g->in_migration = true;
			continue;
		}
		g->in_migration = r->quorate && reconcile_migration(m, g, rec, r->local_id);
	}
	qb_list_for_each_entry_safe(g, tmp, &m->guests, list) {
		reconcile_one(m, g, r->quorate && !m->self_fenced);
	}
	ag_watchdog_update(m);
	report(m);
}

void agent_guests_action(struct agent_guests *m, uint64_t req_id,
			 const Hactl__AgentAction *a)
{
	struct ag_guest *g = ag_guest_find(m, a->guest);
	char text[256];
	int rc;

	if (strcmp(a->kind, "snapshot") != 0) {
		snprintf(text, sizeof(text), "unknown action '%s'", a->kind);
		m->io.action_done(m->io.arg, req_id, -EINVAL, text, 0);
		return;
	}
	if (g && g->want_paused) {
		/* writing one thaws it at the end (both drivers) */
		snprintf(text, sizeof(text), "guest '%s' is paused: resume it to take a snapshot",
			 a->guest);
		m->io.action_done(m->io.arg, req_id, -EBUSY, text, 0);
		return;
	}
	if (g == NULL || ag_live_state(g) != AGENT_GUEST_RUNNING) {
		snprintf(text, sizeof(text), "guest '%s' is not running on this node", a->guest);
		m->io.action_done(m->io.arg, req_id, -ESRCH, text, 0);
		return;
	}
	rc = ag_op_start(g, OP_SNAPSHOT,
		      a->has_failover_point && a->failover_point ? HA_SNAP_KIND_FAILOVER :
		      HA_SNAP_KIND_MANUAL, req_id);
	if (rc < 0) {
		snprintf(text, sizeof(text), "guest '%s' is busy with another operation", a->guest);
		m->io.action_done(m->io.arg, req_id, rc, text, 0);
	}
}

void agent_guests_tick(struct agent_guests *m)
{
	struct ag_guest *g;
	uint64_t now = now_ms(m);

	ag_self_fence_check(m);

	qb_list_for_each_entry(g, &m->guests, list) {
		if (g->busy || !g->owned || !g->def.snapshot_interval_s || g->want_paused ||
		    ag_live_state(g) != AGENT_GUEST_RUNNING) {
			continue;
		}
		if (g->next_snap_ms == 0) {
			/* running, but started by an earlier agent (this one
			 * attached it) or before it had an interval */
			snap_plan(m, g, g->def.snapshot_interval_s * 1000ull);
		} else if (now >= g->next_snap_ms) {
			ag_op_start(g, OP_SNAPSHOT, HA_SNAP_KIND_PERIODIC, 0);
		}
	}
	ag_checks_due(m);
	report(m);
}

size_t agent_guests_held(const struct agent_guests *m, char ***out)
{
	const struct ag_guest *g;
	size_t n = 0;

	qb_list_for_each_entry(g, &m->guests, list) {
		n++;
	}
	*out = calloc(n + 1, sizeof(**out));
	if (*out == NULL) {
		return 0;
	}
	n = 0;
	qb_list_for_each_entry(g, &m->guests, list) {
		(*out)[n++] = (char *)g->name;
	}
	return n;
}

uint32_t agent_guests_running(const struct agent_guests *m)
{
	const struct ag_guest *g;
	uint32_t n = 0;

	qb_list_for_each_entry(g, &m->guests, list) {
		n += ag_live_state((struct ag_guest *)g) == AGENT_GUEST_RUNNING;
	}
	return n;
}

/* ---- startup: re-attach ---- */

static void reattach_all(struct agent_guests *m)
{
	char dir[PATH_MAX];
	DIR *d;
	struct dirent *e;

	snprintf(dir, sizeof(dir), "%s/guests", m->cfg->state_dir);
	d = opendir(dir);
	if (d == NULL) {
		return;
	}
	while ((e = readdir(d)) != NULL) {
		char path[PATH_MAX + 300];
		uint8_t *text = NULL;
		size_t len;
		struct ag_guest *g;
		char err[AGENT_ERR_LEN] = "";
		int rc;

		if (e->d_name[0] == '.' || !ha_name_valid(e->d_name)) {
			continue;
		}
		uint64_t incoming = 0;
		size_t skip;

		/* an incoming copy first: a definition.conf beside it is from
		 * an earlier stay of the guest here */
		snprintf(path, sizeof(path), "%s/%s/" INCOMING_FILE, dir, e->d_name);
		if (ha_file_read(path, HA_GUESTDEF_MAX_TEXT + 64, &text, &len) == 0) {
			incoming = incoming_id_of((char *)text, len);
		} else {
			snprintf(path, sizeof(path), "%s/%s/definition.conf", dir, e->d_name);
			if (ha_file_read(path, HA_GUESTDEF_MAX_TEXT, &text, &len) < 0) {
				continue;
			}
		}
		skip = 0;
		if (incoming) {
			const char *nl = memchr(text, '\n', len);

			skip = nl ? (size_t)(nl - (char *)text) + 1 : len;
		}
		g = guest_new(m, e->d_name);
		if (g == NULL || guest_set_def(m, g, (char *)text + skip, len - skip) < 0) {
			free(text);
			continue;
		}
		free(text);
		rc = g->ops->attach(&g->drv, &g->spec, &g->g, err);
		if (incoming) {
			/* the receive died with the agent: report it failed and
			 * let the cluster's decision finish the copy */
			g->incoming_id = incoming;
			g->mig_id = incoming;
			g->mig_source = false;
			mig_phase_set(g, AGENT_MIG_NONE, AGENT_MIG_FAILED);
			snprintf(g->mig_error, sizeof(g->mig_error),
				 "destination: the agent restarted during the receive");
			g->owned = false;
			g->in_cluster = true;
			g->state = rc == 0 ? g->ops->state(g->g) : AGENT_GUEST_STOPPED;
			qb_log(LOG_NOTICE, "found the incoming copy of %s (migration %" PRIu64
			       ", %s): it ends as the cluster decides", g->name, incoming,
			       rc == 0 ? agent_guest_state_str(g->state) : "nothing running");
			continue;
		}
		if (rc == 0) {
			g->state = g->ops->state(g->g);
			g->owned = true; /* until the cluster says otherwise */
			g->in_cluster = true;
			qb_log(LOG_NOTICE, "re-attached to %s %s (%s)", g->def.type, g->name,
			       agent_guest_state_str(g->state));
		} else {
			g->state = AGENT_GUEST_STOPPED;
			g->in_cluster = true;
			qb_log(LOG_INFO, "%s is not running (%s)", g->name, err[0] ? err : strerror(-rc));
		}
	}
	closedir(d);
}

struct agent_guests *agent_guests_new(qb_loop_t *loop, const struct ha_config *cfg,
				      const struct agent_guests_io *io)
{
	struct agent_guests *m = calloc(1, sizeof(*m));

	if (m == NULL) {
		return NULL;
	}
	m->loop = loop;
	m->cfg = cfg;
	m->io = *io;
	snprintf(m->own_mig_addr, sizeof(m->own_mig_addr), "%s", io->mig_addr ? io->mig_addr : "");
	m->io.mig_addr = NULL; /* copied */
	qb_list_init(&m->guests);
	qb_list_init(&m->done);
	qb_list_init(&m->checks_done);
	pthread_mutex_init(&m->lock, NULL);
	pthread_cond_init(&m->idle, NULL);
	m->started_ms = now_ms(m);
	m->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (m->efd < 0 ||
	    qb_loop_poll_add(loop, QB_LOOP_HIGH, m->efd, POLLIN, m, done_cb) != 0) {
		if (m->efd >= 0) {
			close(m->efd);
		}
		pthread_mutex_destroy(&m->lock);
		pthread_cond_destroy(&m->idle);
		free(m);
		return NULL;
	}
	ag_fence_setup(m);
	reattach_all(m);
	ag_watchdog_update(m);
	return m;
}

void agent_guests_free(struct agent_guests *m)
{
	struct ag_guest *g, *tmp;
	struct ag_op *op, *otmp;

	if (m == NULL) {
		return;
	}
	m->closing = true;
	pthread_mutex_lock(&m->lock);
	while (m->inflight || m->checks_inflight) {
		/* operations and checks finish on their own; guests keep
		 * running after */
		pthread_mutex_unlock(&m->lock);
		done_cb(m->efd, POLLIN, m);
		pthread_mutex_lock(&m->lock);
		if (m->inflight || m->checks_inflight) {
			struct timespec ts;

			clock_gettime(CLOCK_REALTIME, &ts);
			ts.tv_sec += 1;
			pthread_cond_timedwait(&m->idle, &m->lock, &ts);
		}
	}
	pthread_mutex_unlock(&m->lock);
	qb_list_for_each_entry_safe(op, otmp, &m->done, list) {
		qb_list_del(&op->list);
		free(op);
	}
	ag_checks_free(m);
	if (m->wd) {
		/* A clean stop disarms the watchdog only when no guest is
		 * held here: otherwise its timer runs on, and the host is
		 * reset unless a new agent takes it over in time. */
		bool held = ag_holds_any(m);

		if (held) {
			qb_log(LOG_WARNING, "guests keep running here: the watchdog stays armed "
			       "(%u ms) for the next agent", agent_watchdog_timeout_ms(m->wd));
		}
		agent_watchdog_free(m->wd, !held);
		m->wd = NULL;
	}
	qb_list_for_each_entry_safe(g, tmp, &m->guests, list) {
		guest_free(g);
	}
	qb_loop_poll_del(m->loop, m->efd);
	close(m->efd);
	free(m->fence);
	pthread_mutex_destroy(&m->lock);
	pthread_cond_destroy(&m->idle);
	free(m);
}
