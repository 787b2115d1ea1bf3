/*
 * agent_guests_op.c - the operations on the guests of this host (see
 * agent_guests_int.h). Each runs in its own worker thread on a private
 * copy of what it needs plus the guest's driver object, which nothing else
 * touches while the guest is busy; the result comes back through the
 * eventfd to agent_guests.c. A start from a snapshot picks its generation
 * here (the failover rule for a restart on its own); a migration step
 * carries the driver's stream over the agent's transport (agent_mig.h).
 */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <qb/qblist.h>
#include <qb/qblog.h>

#include "agent_guests_int.h"
#include "agent_mig.h"
#include "driver.h"
#include "guestdef.h"
#include "snapchoice.h"
#include "snapshot.h"
#include "util.h"

const char *const op_names[OP_KIND_MAX] = {
	[OP_START_COLD] = "start",
	[OP_START_SNAPSHOT] = "restore",
	[OP_STOP] = "stop",
	[OP_DESTROY] = "destroy",
	[OP_SNAPSHOT] = "snapshot",
	[OP_MIG_SEND] = "migrate-send",
	[OP_MIG_RECV] = "migrate-receive",
	[OP_MIG_FINISH] = "migrate-finish",
	[OP_KILL] = "kill",
	[OP_RESUME] = "resume",
	[OP_PAUSE] = "pause",
	[OP_UNPAUSE] = "unpause",
};

/* Records, durably, that a copy of @g for migration @id is about to be
 * received here. Worker thread; 0 or -errno. */
static int incoming_record(struct ag_guest *g, uint64_t id)
{
	char path[PATH_MAX + 32], *text;
	int n, rc;

	n = asprintf(&text, INCOMING_TAG "%" PRIu64 "\n%.*s", id, (int)g->def_len, g->def_text);
	if (n < 0) {
		return -ENOMEM;
	}
	snprintf(path, sizeof(path), "%s/" INCOMING_FILE, g->run_dir);
	rc = ha_file_write_atomic(path, text, (size_t)n);
	free(text);
	if (rc == 0) {
		/* a definition left from an earlier stay here is not this copy */
		snprintf(path, sizeof(path), "%s/definition.conf", g->run_dir);
		unlink(path);
	}
	return rc;
}

/*
 * The snapshot that a start from a snapshot uses: @op->arg when given (an
 * operator's restore); for a restart on its own (@op->fallback: failover,
 * a crash, the self-fence) the failover rule's choice, -ENOENT with the
 * reason in @err for a cold start; else the newest good generation.
 */
static int pick_snapshot(const struct ha_config *cfg, const char *name, const struct ag_op *op,
			 uint64_t *gen, uint64_t *time_ms, char *err, size_t errlen)
{
	uint64_t gens[256];
	char why[512] = "";
	int n;

	if (op->arg) {
		*gen = op->arg;
		return ha_snap_verify(cfg->shared_dir, name, op->arg, time_ms, err, errlen);
	}
	if (op->fallback) {
		struct ha_snap_choice ch;

		n = ha_snap_choose_stored(cfg->shared_dir, name, op->wall_ms, op->max_age_ms, true,
					  &ch);
		snprintf(err, errlen, "%s", ch.why);
		if (n < 0) {
			return n;
		}
		if (ch.gen == 0) {
			return -ENOENT;
		}
		*gen = ch.gen;
		*time_ms = ch.time_ms;
		return 0;
	}
	n = ha_snap_list(cfg->shared_dir, name, gens, HA_ARRAY_SIZE(gens));
	if (n <= 0) {
		snprintf(err, errlen, "guest '%s' has no snapshot", name);
		return -ENOENT;
	}
	for (int i = 0; i < n; i++) {
		if (ha_snap_verify(cfg->shared_dir, name, gens[i], time_ms, why, sizeof(why)) == 0) {
			*gen = gens[i];
			if (i > 0) {
				snprintf(err, errlen, "used generation %" PRIu64 " (newer ones are corrupt: %s)",
					 gens[i], why);
			}
			return 0;
		}
	}
	snprintf(err, errlen, "every snapshot of '%s' is corrupt (newest problem: %s)", name, why);
	return -EBADMSG;
}

/* The migration stream's parameters of @g's transaction. */
void ag_mig_params(const struct ag_guest *g, struct agent_mig_params *p)
{
	memset(p, 0, sizeof(*p));
	p->cfg = g->m->cfg;
	p->guest = g->name;
	p->id = g->mig_id;
	p->transport = g->mig_transport;
	p->rate = g->mig_opts.bandwidth_bps;
	/* where sources connect (coord_state.c, MIGRATE_START): the migration
	 * address this host announced in its facts, else its cluster one */
	p->listen_addr = agent_mig_listen_addr(g->m->cfg, g->m->own_mig_addr[0] ? g->m->own_mig_addr :
						     g->m->local_addr);
}

/*
 * Runs the driver's side of a migration over @x (consumed): the driver
 * reads and writes one end of a socketpair that the relay carries over
 * the stream. Returns 0 or -errno with the first error in @derr.
 */
static int mig_transfer(struct ag_guest *g, struct agent_mig_xfer *x, bool source,
			struct agent_guest **obj, char *derr)
{
	struct agent_guests *m = g->m;
	const struct agent_driver_ops *ops = g->ops;
	char xerr[512] = "";
	bool cancelled;
	int fd = -1, rc;

	pthread_mutex_lock(&m->lock);
	g->mig_xfer = x;
	snprintf(g->mig_cipher, sizeof(g->mig_cipher), "%s", agent_mig_cipher(x));
	snprintf(g->mig_xport, sizeof(g->mig_xport), "%s", agent_mig_transport(x));
	cancelled = g->mig_cancel;
	if (cancelled) {
		agent_mig_cancel(x); /* the abort came while connecting */
	}
	pthread_mutex_unlock(&m->lock);
	qb_log(LOG_INFO, "migration %" PRIu64 " of %s: stream %s (%s)", g->mig_id, g->name,
	       agent_mig_transport(x), agent_mig_cipher(x));
	rc = agent_mig_relay_start(x, &fd, xerr, sizeof(xerr));
	if (rc < 0) {
		snprintf(derr, AGENT_ERR_LEN, "%s", xerr);
	} else if (source) {
		rc = ops->migrate_send(*obj, fd, &g->mig_opts, &g->prog, derr);
	} else {
		rc = ops->migrate_recv(&g->drv, &g->spec, fd, &g->mig_opts, obj, &g->prog, derr);
	}
	qb_log(LOG_INFO, "migration %" PRIu64 " of %s: the driver's %s returned %d", g->mig_id,
	       g->name, source ? "send" : "receive", rc);
	rc = agent_mig_finish(x, rc, derr, xerr, sizeof(xerr));
	if (rc < 0) {
		snprintf(derr, AGENT_ERR_LEN, "%s", xerr);
	}
	pthread_mutex_lock(&m->lock);
	agent_mig_counters(x, &g->mig_ctr);
	g->mig_xfer = NULL;
	pthread_mutex_unlock(&m->lock);
	agent_mig_free(x);
	return rc;
}

static void op_run(struct ag_op *op)
{
	struct ag_guest *g = op->g;
	const struct agent_driver_ops *ops = g->ops;
	const struct ha_config *cfg = g->m->cfg;
	struct agent_guest *obj = g->g;
	char derr[AGENT_ERR_LEN] = "";
	uint32_t timeout = g->def.stop_timeout_s * 1000u;
	int rc = 0;

	switch (op->kind) {
	case OP_START_COLD:
		if (ha_mkdir_p(g->run_dir, 0700) < 0 || ha_mkdir_p(g->data_dir, 0700) < 0) {
			rc = -errno;
			snprintf(derr, sizeof(derr), "cannot create %s or %s", g->run_dir, g->data_dir);
			break;
		}
		if (obj == NULL) {
			rc = ops->create(&g->drv, &g->spec, &obj, derr);
			if (rc == 0) {
				/* the self-fence may kill it while it boots */
				pthread_mutex_lock(&g->m->lock);
				g->op_obj = obj;
				pthread_mutex_unlock(&g->m->lock);
			}
		}
		if (rc == 0) {
			rc = ops->start(obj, 120000, derr);
		}
		break;
	case OP_START_SNAPSHOT: {
		uint64_t gen = 0, t = 0;
		char dir[PATH_MAX], state[PATH_MAX + 8], note[512] = "";

		rc = pick_snapshot(cfg, g->name, op, &gen, &t, note, sizeof(note));
		if (rc < 0 && op->fallback) {
			char why[600];

			snprintf(why, sizeof(why), "%s", note);
			qb_log(LOG_NOTICE, "%s: cold start: %s", g->name, why);
			op->kind = OP_START_COLD;
			op_run(op);
			if (op->rc == 0) {
				snprintf(op->err, sizeof(op->err), "cold start: %s", why);
			}
			return;
		}
		if (rc == 0 && op->fallback) {
			qb_log(LOG_NOTICE, "%s: restoring %s", g->name, note);
		}
		if (rc < 0) {
			snprintf(op->err, sizeof(op->err), "%s", note);
			op->rc = rc;
			return;
		}
		if (ha_mkdir_p(g->run_dir, 0700) < 0 || ha_mkdir_p(g->data_dir, 0700) < 0) {
			rc = -errno;
			snprintf(derr, sizeof(derr), "cannot create %s or %s", g->run_dir, g->data_dir);
			break;
		}
		if (obj) {
			ops->guest_free(obj);
			obj = NULL;
		}
		ha_snap_gen_dir(cfg->shared_dir, g->name, gen, dir, sizeof(dir));
		snprintf(state, sizeof(state), "%s/state", dir);
		rc = ops->restore(&g->drv, &g->spec, state, &obj, derr);
		op->value = gen;
		op->value_ms = t;
		if (rc == 0 && note[0]) {
			snprintf(op->err, sizeof(op->err), "%s", note);
			op->obj = obj;
			op->rc = 0;
			return;
		}
		break;
	}
	case OP_STOP:
		if (obj) {
			rc = ops->stop(obj, op->arg ? (uint32_t)op->arg : timeout, derr);
		}
		break;
	case OP_DESTROY:
		if (obj) {
			if (ops->state(obj) == AGENT_GUEST_RUNNING ||
			    ops->state(obj) == AGENT_GUEST_PAUSED) {
				rc = ops->stop(obj, timeout, derr);
			}
			if (rc == 0) {
				rc = ops->destroy(obj, derr);
			}
		}
		if (rc == 0) {
			ha_rm_rf(g->run_dir);
			if (op->arg) { /* we were the last owner: the writable layer goes too */
				ha_rm_rf(g->data_dir);
			}
		}
		break;
	case OP_SNAPSHOT: {
		char tmp[PATH_MAX], state[PATH_MAX + 8], serr[512];
		uint64_t gen, now;

		if (obj == NULL) {
			rc = -ESRCH;
			snprintf(derr, sizeof(derr), "guest '%s' is not running here", g->name);
			break;
		}
		rc = ha_snap_begin(cfg->shared_dir, g->name, &gen, tmp, sizeof(tmp));
		if (rc < 0) {
			snprintf(derr, sizeof(derr), "cannot create a snapshot directory: %s",
				 strerror(-rc));
			break;
		}
		snprintf(state, sizeof(state), "%s/state", tmp);
		if (mkdir(state, 0700) < 0) {
			rc = -errno;
			ha_snap_abort(tmp);
			break;
		}
		now = op->wall_ms; /* taken as the op started: never younger than its state */
		rc = ops->checkpoint(obj, state, AGENT_CKPT_LEAVE_RUNNING, derr);
		if (rc < 0) {
			ha_snap_abort(tmp);
			break;
		}
		rc = ha_snap_commit(cfg->shared_dir, g->name, gen, tmp, g->def_text, g->def_len,
				    now, (enum ha_snap_kind)op->arg, serr, sizeof(serr));
		if (rc < 0) {
			snprintf(derr, sizeof(derr), "%s", serr);
			break;
		}
		ha_snap_prune(cfg->shared_dir, g->name, g->def.snapshot_keep);
		op->value = gen;
		op->value_ms = now;
		break;
	}
	case OP_MIG_SEND: {
		struct agent_mig_params mp;
		struct agent_mig_xfer *x = NULL;
		char xerr[512];

		if (obj == NULL || ops->migrate_send == NULL) {
			rc = -EOPNOTSUPP;
			snprintf(derr, sizeof(derr), "the %s driver cannot migrate", g->def.type);
			break;
		}
		ag_mig_params(g, &mp);
		rc = agent_mig_connect(&mp, g->mig_addr, (uint16_t)g->mig_dst_port, &x, xerr,
				       sizeof(xerr));
		if (rc < 0) {
			snprintf(derr, sizeof(derr), "%s", xerr);
			break;
		}
		rc = mig_transfer(g, x, true, &obj, derr);
		break;
	}
	case OP_MIG_RECV: {
		struct agent_mig_params mp;
		struct agent_mig_xfer *x = NULL;
		char xerr[512];

		if (ops->migrate_recv == NULL) {
			rc = -EOPNOTSUPP;
			snprintf(derr, sizeof(derr), "the %s driver cannot migrate", g->def.type);
			break;
		}
		ag_mig_params(g, &mp);
		rc = agent_mig_accept(g->mig_listener, &mp, 120000, &x, xerr, sizeof(xerr));
		if (rc < 0) {
			snprintf(derr, sizeof(derr), "%s", xerr);
			break;
		}
		if (ha_mkdir_p(g->run_dir, 0700) < 0) {
			rc = -errno;
			snprintf(derr, sizeof(derr), "cannot create %s: %s", g->run_dir,
				 strerror(errno));
			agent_mig_finish(x, rc, derr, xerr, sizeof(xerr));
			agent_mig_free(x);
			break;
		}
		/* durable before the driver creates anything: an agent that
		 * dies from here on finds the copy when it restarts */
		rc = incoming_record(g, op->mig_id);
		if (rc < 0) {
			snprintf(derr, sizeof(derr), "cannot record the incoming copy in %s: %s",
				 g->run_dir, strerror(-rc));
			agent_mig_finish(x, rc, derr, xerr, sizeof(xerr));
			agent_mig_free(x);
			break;
		}
		if (obj) {
			ops->guest_free(obj);
			obj = NULL;
		}
		rc = mig_transfer(g, x, false, &obj, derr);
		break;
	}
	case OP_MIG_FINISH:
		if (obj == NULL && op->arg && !op->mig_source && !op->mig_commit) {
			rc = ops->create(&g->drv, &g->spec, &obj, derr);
		}
		if (rc == 0 && obj && ops->migrate_finish) {
			rc = ops->migrate_finish(obj, op->mig_source, op->mig_commit, derr);
		}
		break;
	case OP_KILL:
		/* no graceful part: this copy must not run one moment longer.
		 * SIGKILL first (a QEMU asked to quit may take seconds), then
		 * stop() without a grace period cleans up what it left. */
		if (obj) {
			if (ops->kill) {
				ops->kill(obj, derr);
				derr[0] = 0;
			}
			rc = ops->stop(obj, 0, derr);
		}
		break;
	case OP_RESUME:
		/* the driver's resume of a paused copy is the source's side of
		 * an aborted migration: thaw (and reattach) what was held */
		if (obj == NULL || ops->migrate_finish == NULL) {
			rc = -EOPNOTSUPP;
			snprintf(derr, sizeof(derr), "the %s driver cannot resume a paused guest",
				 g->def.type);
			break;
		}
		rc = ops->migrate_finish(obj, true, false, derr);
		break;
	case OP_PAUSE:
	case OP_UNPAUSE:
		if (obj == NULL || ops->pause == NULL) {
			rc = -EOPNOTSUPP;
			snprintf(derr, sizeof(derr), "the %s driver cannot pause a guest",
				 g->def.type);
			break;
		}
		rc = ops->pause(obj, op->kind == OP_PAUSE, derr);
		break;
	default:
		rc = -EINVAL;
		break;
	}
	op->rc = rc;
	op->obj = obj;
	if (rc < 0) {
		snprintf(op->err, sizeof(op->err), "%s %s: %s", op_names[op->kind], g->name,
			 derr[0] ? derr : strerror(-rc));
	}
}

static void *worker(void *arg)
{
	struct ag_op *op = arg;
	struct agent_guests *m = op->g->m;
	uint64_t one = 1;

	op_run(op);
	pthread_mutex_lock(&m->lock);
	qb_list_add_tail(&op->list, &m->done);
	pthread_mutex_unlock(&m->lock);
	if (write(m->efd, &one, sizeof(one)) < 0) {
		/* the counter cannot overflow in practice */
	}
	return NULL;
}

int ag_op_start(struct ag_guest *g, enum op_kind kind, uint64_t arg, uint64_t req_id)
{
	return ag_op_start_ex(g, kind, arg, req_id, false);
}

int ag_op_start_ex(struct ag_guest *g, enum op_kind kind, uint64_t arg, uint64_t req_id,
		       bool fallback)
{
	struct agent_guests *m = g->m;
	struct ag_op *op;
	pthread_t t;
	pthread_attr_t attr;
	int rc;

	if (g->busy) {
		return -EBUSY;
	}
	if (g->ops == NULL) {
		return -ENOTSUP;
	}
	op = calloc(1, sizeof(*op));
	if (op == NULL) {
		return -ENOMEM;
	}
	op->g = g;
	op->kind = kind;
	op->arg = arg;
	op->fallback = fallback;
	op->wall_ms = wall_ms(m);
	op->max_age_ms = ha_guestdef_failover_max_age_ms(&g->def);
	op->req_id = req_id;
	op->started_ms = ha_mono_ms();
	op->mig_id = g->mig_id;
	op->mig_source = g->mig_source;
	op->mig_commit = g->mig_commit;
	op->mig_disowned = g->mig_disowned;
	g->busy = true;
	g->op_kind = kind;
	g->fence_killed = false;
	g->fence_noted = false;
	if (kind == OP_START_COLD || kind == OP_START_SNAPSHOT) {
		g->state = AGENT_GUEST_STARTING;
	} else if (kind == OP_STOP || kind == OP_DESTROY || kind == OP_KILL) {
		g->state = AGENT_GUEST_STOPPING;
	}
	pthread_mutex_lock(&m->lock);
	m->inflight++;
	/* Restore and receive replace the object (they free the old one in
	 * their thread): the self-fence must not touch it meanwhile. */
	g->op_obj = kind == OP_START_SNAPSHOT || kind == OP_MIG_RECV ? NULL : g->g;
	pthread_mutex_unlock(&m->lock);
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	rc = pthread_create(&t, &attr, worker, op);
	pthread_attr_destroy(&attr);
	if (rc != 0) {
		pthread_mutex_lock(&m->lock);
		m->inflight--;
		g->op_obj = NULL;
		pthread_mutex_unlock(&m->lock);
		g->busy = false;
		free(op);
		return -rc;
	}
	qb_log(LOG_INFO, "%s %s started", op_names[kind], g->name);
	return 0;
}
