/*
 * driver_domain_mig.c - live migration of a domain (the Xen heritage:
 * xm migrate --live): the source's send, the destination's receive and
 * the transaction's end (migrate_finish), over QMP (see driver_domain.h).
 */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/tcp.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>

#include "driver.h"
#include "driver_domain.h"
#include "qmp_client.h"
#include "util.h"

/*
 * Live migration is QEMU's pre-copy over a socket the agent core connected
 * to the destination host's agent, handed to QEMU with getfd on both ends
 * ("migrate fd:" / "migrate-incoming fd:"). It is a transaction: the source
 * ends paused in "postmigrate" and the destination paused with -S and
 * late-block-activate (it has not touched the disk); migrate_finish() then
 * resumes one side and quits the other, as the cluster decided.
 *
 * Cancelling: shutdown(fd) by the agent (or the peer going away) makes
 * QEMU's next write or read fail. A peer that vanishes without a reset is
 * caught by the stall bound: no byte moved for DOM_MIG_STALL_MS.
 */
#define DOM_MIG_FDNAME "hactl-mig"
#define DOM_MIG_POLL_MS 100
#define DOM_MIG_DOWNTIME_MS 300            /* QEMU's default downtime-limit */
#define DOM_MIG_DOWNTIME_MAX_MS 2000000    /* QEMU's bound */
#define DOM_MIG_STALL_MS 60000             /* no byte moved: the peer is gone */
#define DOM_MIG_MAX_MS (10 * 60 * 1000)    /* plus mig_bound_ms()'s allowance */
#define DOM_MIG_SLOW_BPS (10ULL << 20)     /* the slowest link the bound allows for */
#define DOM_MIG_LAUNCH_MS 30000
#define DOM_MIG_SETTLE_MS 10000            /* cancel, resume, paused */

enum dom_mig_mode {
	DOM_MIG_PRECOPY = 0,
	DOM_MIG_STOPCOPY,   /* paused for the whole transfer */
	DOM_MIG_MODE_MAX
};

static const char *const mig_mode_names[DOM_MIG_MODE_MAX] = {
	[DOM_MIG_PRECOPY] = "precopy", [DOM_MIG_STOPCOPY] = "stopcopy",
};

static const char *dom_mig_mode_str(enum dom_mig_mode m)
{
	return (unsigned)m < DOM_MIG_MODE_MAX ? mig_mode_names[m] : "unknown";
}

/*
 * Checks the options both ends are given. Post-copy is refused: once the
 * destination runs, the source no longer holds the whole guest, so a
 * failure after that point loses it, and the cluster could no longer
 * abort the transaction.
 */
static int mig_opts_check(const struct agent_guest *g, const struct agent_mig_opts *o,
			  enum dom_mig_mode *mode, char *err)
{
	const char *m = o ? o->mode : NULL;

	*mode = DOM_MIG_PRECOPY;
	if (m && strcmp(m, "postcopy") == 0) {
		return agent_err(err, -EOPNOTSUPP, "domain %s: post-copy migration not supported "
				 "(the source must stay whole until the commit)", g->name);
	}
	if (m && strcmp(m, dom_mig_mode_str(DOM_MIG_STOPCOPY)) == 0) {
		*mode = DOM_MIG_STOPCOPY;
	} else if (m && strcmp(m, dom_mig_mode_str(DOM_MIG_PRECOPY)) != 0) {
		return agent_err(err, -EINVAL, "domain %s: unknown migration mode '%s'", g->name, m);
	}
	if (o && o->max_downtime_ms > DOM_MIG_DOWNTIME_MAX_MS) {
		return agent_err(err, -EINVAL, "domain %s: max downtime %u ms above %u", g->name,
				 o->max_downtime_ms, DOM_MIG_DOWNTIME_MAX_MS);
	}
	return 0;
}

/* query-migrate with what the progress needs beyond qmp_migrate_info. */
struct mig_info {
	struct qmp_migrate_info q;
	char status[32];                /* QEMU's word ("active", "device", ...) */
	uint64_t expected_downtime_ms;
	uint64_t dirty_pages_rate;      /* pages/s */
	uint64_t page_size;
};

static uint64_t jobj_u64(json_object *o, const char *key)
{
	int64_t v = dom_json_int(o, key, 0);

	return v > 0 ? (uint64_t)v : 0;
}

/*
 * One query-migrate. -ETIMEDOUT is not a failure of the migration: the
 * monitor does not answer while the migration holds QEMU's big lock (the
 * source's switchover; the destination loading without a pause), which on
 * a loaded host can take seconds. The late reply is skipped by the client.
 */
static int mig_query(struct qmp_client *c, struct mig_info *mi, char *err)
{
	json_object *ret = NULL, *ram;
	int rc;

	memset(mi, 0, sizeof(*mi));
	rc = qmp_client_execute(c, "query-migrate", NULL, &ret, DOM_QMP_MS, err,
				err ? AGENT_ERR_LEN : 0);
	if (rc < 0) {
		return rc;
	}
	rc = qmp_migrate_info_parse(ret, &mi->q);
	if (rc < 0) {
		json_object_put(ret);
		return agent_err(err, rc, "qmp query-migrate: malformed reply");
	}
	dom_json_str(mi->status, sizeof(mi->status), ret, "status");
	mi->expected_downtime_ms = jobj_u64(ret, "expected-downtime");
	if (json_object_object_get_ex(ret, "ram", &ram) &&
	    json_object_is_type(ram, json_type_object)) {
		mi->dirty_pages_rate = jobj_u64(ram, "dirty-pages-rate");
		mi->page_size = jobj_u64(ram, "page-size");
	}
	json_object_put(ret);
	return 0;
}

/* One poll of a migration in flight: mig_query(), with a monitor that
 * has not answered for less than DOM_MIG_STALL_MS as -EAGAIN (see
 * mig_query()). @now is the time of the poll; @last_answer moves on with
 * every answer. */
static int mig_poll(const struct agent_guest *g, struct qmp_client *c, struct mig_info *mi,
		    uint64_t *last_answer, uint64_t *now, char *err)
{
	char qerr[AGENT_ERR_LEN] = "";
	int rc = mig_query(c, mi, qerr);

	*now = ha_mono_ms();
	if (rc == -ETIMEDOUT && *now - *last_answer < DOM_MIG_STALL_MS) {
		return -EAGAIN;
	}
	if (rc < 0) {
		return agent_err(err, rc, "domain %s: %s", g->name, qerr);
	}
	*last_answer = *now;
	return 0;
}

static void mig_progress_fill(struct agent_mig_progress *p, const struct mig_info *mi)
{
	p->total_bytes = mi->q.ram_total;
	p->transferred_bytes = mi->q.ram_transferred;
	p->remaining_bytes = mi->q.ram_remaining;
	p->rounds = (uint32_t)mi->q.dirty_sync_count;
	p->total_ms = mi->q.total_time_ms;
	/* a completed migration reports neither: the last measure stays */
	if (mi->q.status != QMP_MIGRATE_COMPLETED || mi->dirty_pages_rate) {
		p->dirty_rate_bps = mi->dirty_pages_rate * (mi->page_size ? mi->page_size : 4096);
	}
	if (mi->q.status != QMP_MIGRATE_COMPLETED || mi->expected_downtime_ms) {
		p->expected_downtime_ms = (uint32_t)mi->expected_downtime_ms;
	}
	if (mi->q.status == QMP_MIGRATE_COMPLETED) {
		p->downtime_ms = (uint32_t)mi->q.downtime_ms;
		p->remaining_bytes = 0;
	}
}

/*
 * How long a migration may take before it is given up (one that never
 * converges: the guest dirties memory faster than the link carries it):
 * 10 minutes plus three passes over the guest's RAM at the bandwidth cap,
 * or at DOM_MIG_SLOW_BPS when there is none or it is faster.
 */
static uint64_t mig_bound_ms(const struct agent_guest *g, const struct agent_mig_opts *o)
{
	uint64_t bps = o && o->bandwidth_bps && o->bandwidth_bps < DOM_MIG_SLOW_BPS ?
		o->bandwidth_bps : DOM_MIG_SLOW_BPS;

	return DOM_MIG_MAX_MS + 3 * (g->mem_kib * 1024 / bps) * 1000;
}

/* Bytes the kernel received on @fd: the destination's progress, which
 * QEMU does not report there. -1 when @fd is not a TCP socket (a pipe
 * or a socketpair from the agent's own transport). */
static int64_t sock_bytes_received(int fd)
{
	struct tcp_info ti;
	socklen_t len = sizeof(ti);

	memset(&ti, 0, sizeof(ti));
	if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len) < 0 ||
	    len < offsetof(struct tcp_info, tcpi_bytes_received) + sizeof(ti.tcpi_bytes_received)) {
		return -1;
	}
	return (int64_t)(ti.tcpi_bytes_received & INT64_MAX);
}

static int set_capability(struct qmp_client *c, const char *cap, bool on, char *err)
{
	json_object *args = json_object_new_object(), *caps = json_object_new_array(),
		*one = json_object_new_object();
	int rc;

	if (args == NULL || caps == NULL || one == NULL) {
		json_object_put(args);
		json_object_put(caps);
		json_object_put(one);
		return agent_err(err, -ENOMEM, "qmp migrate-set-capabilities: out of memory");
	}
	json_object_object_add(one, "capability", json_object_new_string(cap));
	json_object_object_add(one, "state", json_object_new_boolean(on));
	json_object_array_add(caps, one);
	json_object_object_add(args, "capabilities", caps);
	rc = qmp_client_execute(c, "migrate-set-capabilities", args, NULL, DOM_QMP_MS, err,
				err ? AGENT_ERR_LEN : 0);
	json_object_put(args);
	return rc;
}

/* Runs the guest (again) after a migration that failed or was aborted.
 * QEMU restarts a source it had running by itself once the migration
 * thread is done; "finish-migrate" is that thread's last moment. */
static int resume_guest(struct agent_guest *g, struct qmp_client *c, char *err)
{
	uint64_t deadline = ha_mono_ms() + DOM_MIG_SETTLE_MS;
	struct qmp_status st;
	int rc;

	for (;;) {
		rc = qmp_client_query_status(c, &st, DOM_QMP_MS, err, AGENT_ERR_LEN);
		if (rc < 0 || st.running) {
			return rc;
		}
		if (st.state != QMP_RUN_FINISH_MIGRATE && st.state != QMP_RUN_INMIGRATE) {
			break;
		}
		if (ha_mono_ms() > deadline) {
			return agent_err(err, -ETIMEDOUT, "domain %s: still %s after %d ms", g->name,
					 st.name, DOM_MIG_SETTLE_MS);
		}
		ha_sleep_ms(20);
	}
	rc = dom_simple_cmd(c, "cont", NULL, NULL, err);
	if (rc == 0) {
		rc = dom_wait_status(g, c, QMP_RUN_RUNNING, DOM_MIG_SETTLE_MS, err);
	}
	return rc;
}

/* Cancels an outgoing migration and waits until QEMU says it ended. */
static void mig_cancel(struct qmp_client *c)
{
	uint64_t deadline = ha_mono_ms() + DOM_MIG_SETTLE_MS;
	struct mig_info mi;

	dom_simple_cmd(c, "migrate_cancel", NULL, NULL, NULL);
	while (mig_query(c, &mi, NULL) == 0 && ha_mono_ms() < deadline &&
	       (mi.q.status == QMP_MIGRATE_SETUP || mi.q.status == QMP_MIGRATE_ACTIVE ||
		mi.q.status == QMP_MIGRATE_CANCELLING)) {
		ha_sleep_ms(20);
	}
}

/* Waits for the next poll: DOM_MIG_POLL_MS, or less when QEMU reports a
 * change of the migration's state (the MIGRATION event). */
static void mig_nap(struct qmp_client *c)
{
	if (qmp_client_wait_event(c, "MIGRATION", NULL, DOM_MIG_POLL_MS, NULL, 0) < 0) {
		/* a timeout, or a monitor that went away: the next query says */
	}
}

int dom_migrate_send(struct agent_guest *g, int fd, const struct agent_mig_opts *o,
			    struct agent_mig_progress *p, char *err)
{
	struct agent_mig_progress scratch;
	struct qmp_migrate_tuning t = { .events = true };
	struct dom_record r;
	struct qmp_client *c = NULL;
	struct mig_info mi;
	enum dom_mig_mode mode;
	uint64_t t0, t_stop = 0, last_move, last_answer, moved = 0, now, bound;
	bool was_running = false, stopped = false, fd_given = false, started = false;
	bool done = false;
	char logp[PATH_MAX];
	struct qmp_status st;
	off_t log_from = 0;
	struct stat sb;
	int rc;

	if (p == NULL) {
		p = &scratch;
	}
	memset(p, 0, sizeof(*p));
	rc = mig_opts_check(g, o, &mode, err);
	if (rc < 0) {
		return rc;
	}
	bound = mig_bound_ms(g, o);
	if (dom_rec_path(g, "qemu.log", logp, sizeof(logp)) == 0 && stat(logp, &sb) == 0) {
		log_from = sb.st_size;
	}
	if (fd < 0) {
		return agent_err(err, -EBADF, "domain %s: no migration stream", g->name);
	}
	if (dom_guest_running(g, &r) < 0) {
		return agent_err(err, -ESRCH, "domain %s: not running", g->name);
	}
	dom_op_begin(g, AGENT_GUEST_RUNNING);
	rc = dom_qmp_open(g, DOM_CONNECT_MS, &c, err);
	if (rc < 0) {
		goto out;
	}
	rc = qmp_client_query_status(c, &st, DOM_QMP_MS, err, AGENT_ERR_LEN);
	was_running = rc == 0 && st.running;
	if (rc == 0 && st.state == QMP_RUN_POSTMIGRATE) {
		rc = agent_err(err, -EBUSY, "domain %s: an earlier migration awaits its commit or "
			       "abort", g->name);
	}
	if (rc < 0) {
		goto out;
	}
	t.downtime_limit_ms = o && o->max_downtime_ms ? o->max_downtime_ms : DOM_MIG_DOWNTIME_MS;
	t.max_bandwidth = o && o->bandwidth_bps ? o->bandwidth_bps : DOM_BANDWIDTH_MAX;
	t.auto_converge = o && o->auto_converge;
	t.xbzrle = o && o->xbzrle;
	rc = qmp_client_migrate_tune(c, &t, DOM_QMP_MS, err, AGENT_ERR_LEN);
	if (rc == 0) {
		rc = qmp_client_getfd(c, DOM_MIG_FDNAME, fd, DOM_QMP_MS, err, AGENT_ERR_LEN);
		fd_given = rc == 0;
	}
	if (rc < 0) {
		goto out;
	}
	t0 = ha_mono_ms();
	if (mode == DOM_MIG_STOPCOPY && was_running) {
		rc = dom_simple_cmd(c, "stop", NULL, NULL, err);
		if (rc < 0) {
			goto out;
		}
		stopped = true;
		t_stop = t0;
	}
	rc = dom_simple_cmd(c, "migrate", "uri", "fd:" DOM_MIG_FDNAME, err);
	if (rc < 0) {
		goto out;
	}
	started = true;
	fd_given = false; /* QEMU took it */
	last_move = last_answer = t0;
	for (;;) {
		rc = mig_poll(g, c, &mi, &last_answer, &now, err);
		if (rc == -EAGAIN) {
			continue;
		}
		if (rc < 0) {
			goto out;
		}
		mig_progress_fill(p, &mi);
		if (mi.q.status == QMP_MIGRATE_COMPLETED) {
			break;
		}
		if (mi.q.status == QMP_MIGRATE_FAILED) {
			char why[160] = "";

			/* error-desc, else what QEMU logged since the start */
			if (mi.q.error[0] == 0 && dom_rec_path(g, "qemu.log", logp, sizeof(logp)) == 0) {
				dom_file_tail(logp, log_from, why, sizeof(why));
			}
			rc = agent_err(err, -EIO, "domain %s: migration failed: %s", g->name,
				       mi.q.error[0] ? mi.q.error : why[0] ? why : "QEMU gave no reason");
			goto out;
		}
		if (mi.q.status == QMP_MIGRATE_CANCELLING || mi.q.status == QMP_MIGRATE_CANCELLED) {
			rc = agent_err(err, -ECANCELED, "domain %s: migration cancelled", g->name);
			goto out;
		}
		if (mi.q.ram_transferred != moved) {
			moved = mi.q.ram_transferred;
			last_move = now;
		}
		if (now - last_move > DOM_MIG_STALL_MS) {
			mig_cancel(c);
			rc = agent_err(err, -ETIMEDOUT, "domain %s: migration stalled: no byte sent for "
				       "%d ms (%" PRIu64 " of %" PRIu64 " bytes)", g->name,
				       DOM_MIG_STALL_MS, mi.q.ram_transferred, mi.q.ram_total);
			goto out;
		}
		if (now - t0 > bound) {
			mig_cancel(c);
			rc = agent_err(err, -ETIMEDOUT, "domain %s: migration did not converge within "
				       "%" PRIu64 " s (%u rounds, dirty %" PRIu64 " bytes/s)", g->name,
				       bound / 1000, p->rounds, p->dirty_rate_bps);
			goto out;
		}
		mig_nap(c);
	}
	/* "completed" comes a moment before QEMU has computed the figures
	 * and left finish-migrate for postmigrate */
	for (uint64_t until = ha_mono_ms() + DOM_MIG_SETTLE_MS;;) {
		if (qmp_client_query_status(c, &st, DOM_QMP_MS, NULL, 0) < 0 ||
		    st.state != QMP_RUN_FINISH_MIGRATE || ha_mono_ms() > until) {
			break;
		}
		ha_sleep_ms(5);
	}
	if (mig_query(c, &mi, NULL) == 0) {
		mig_progress_fill(p, &mi);
	}
	if (stopped) {
		p->downtime_ms = (uint32_t)(ha_mono_ms() - t_stop);
	}
	done = true;
out:
	if (rc < 0 && c) {
		if (fd_given) {
			/* QEMU keeps a named fd until used: the stream stays open */
			dom_simple_cmd(c, "closefd", "fdname", DOM_MIG_FDNAME, NULL);
		}
		if (started && dom_rec_alive(&r)) {
			mig_cancel(c);
		}
		/* the source stays runnable: any failure resumes it */
		if ((was_running || stopped) && dom_rec_alive(&r)) {
			resume_guest(g, c, NULL);
		}
	}
	qmp_client_free(c);
	dom_op_end(g, done ? AGENT_GUEST_PAUSED : was_running ? AGENT_GUEST_RUNNING :
	       AGENT_GUEST_PAUSED);
	return rc;
}


int dom_migrate_recv(struct agent_driver *d, const struct agent_guest_spec *spec, int fd,
			    const struct agent_mig_opts *o, struct agent_guest **out,
			    struct agent_mig_progress *p, char *err)
{
	struct agent_mig_progress scratch;
	struct qmp_migrate_tuning t = { .events = true };
	struct dom_launch lo = { .incoming = true };
	struct agent_guest *g;
	struct dom_record r;
	struct qmp_client *c = NULL;
	struct mig_info mi;
	enum dom_mig_mode mode;
	uint64_t t0, last_move, last_answer, now, bound;
	int64_t base, got, moved = 0;
	bool launched = false, incoming = false;
	int rc;

	*out = NULL;
	if (p == NULL) {
		p = &scratch;
	}
	memset(p, 0, sizeof(*p));
	rc = dom_guest_new(d, spec, true, &g, err);
	if (rc < 0) {
		return rc;
	}
	rc = dom_files_check(g, err);
	if (rc == 0) {
		rc = mig_opts_check(g, o, &mode, err);
	}
	if (rc == 0 && fd < 0) {
		rc = agent_err(err, -EBADF, "domain %s: no migration stream", g->name);
	}
	if (rc < 0) {
		dom_guest_free(g);
		return rc;
	}
	dom_op_begin(g, AGENT_GUEST_STARTING);
	/* what the source sends while QEMU starts waits in the socket: counted */
	base = sock_bytes_received(fd);
	if (dom_guest_running(g, &r) == 0) {
		rc = agent_err(err, -EBUSY, "domain %s: already running here (pid %d)", g->name,
			       (int)r.pid);
		goto out;
	}
	rc = dom_launch(g, &lo, &r, DOM_MIG_LAUNCH_MS, err);
	if (rc < 0) {
		goto out;
	}
	launched = true;
	rc = dom_qmp_open(g, DOM_CONNECT_MS, &c, err);
	/* Both ends agree on what changes the stream (xbzrle). With
	 * late-block-activate the destination leaves the disk on the shared
	 * storage alone (no open for writing, no lock) until cont. */
	t.xbzrle = o && o->xbzrle;
	if (rc == 0) {
		rc = qmp_client_migrate_tune(c, &t, DOM_QMP_MS, err, AGENT_ERR_LEN);
	}
	if (rc == 0) {
		rc = set_capability(c, "late-block-activate", true, err);
	}
	if (rc == 0) {
		rc = qmp_client_getfd(c, DOM_MIG_FDNAME, fd, DOM_QMP_MS, err, AGENT_ERR_LEN);
	}
	if (rc < 0) {
		goto out;
	}
	rc = dom_simple_cmd(c, "migrate-incoming", "uri", "fd:" DOM_MIG_FDNAME, err);
	if (rc < 0) {
		goto out;
	}
	incoming = true;
	bound = mig_bound_ms(g, o);
	t0 = last_move = last_answer = ha_mono_ms();
	for (;;) {
		rc = mig_poll(g, c, &mi, &last_answer, &now, err);
		if (rc == -EAGAIN) {
			continue;
		}
		if (rc < 0) {
			goto out; /* QEMU ends itself when the stream fails: see out */
		}
		got = base >= 0 ? sock_bytes_received(fd) - base : 0;
		p->transferred_bytes = got > 0 ? (uint64_t)got : 0;
		p->total_ms = now - t0;
		if (mi.q.status == QMP_MIGRATE_COMPLETED) {
			break;
		}
		if (mi.q.status == QMP_MIGRATE_FAILED || mi.q.status == QMP_MIGRATE_CANCELLING ||
		    mi.q.status == QMP_MIGRATE_CANCELLED) {
			rc = agent_err(err, -EIO, "domain %s: incoming migration %s%s%s", g->name,
				       mi.status, mi.q.error[0] ? ": " : "", mi.q.error);
			goto out;
		}
		/* a stall is seen only on TCP; the source and the bound catch
		 * the rest (the source's end closes the stream: QEMU ends) */
		if (got != moved || base < 0) {
			moved = got;
			last_move = now;
		}
		if (now - last_move > DOM_MIG_STALL_MS || now - t0 > bound) {
			rc = agent_err(err, -ETIMEDOUT, "domain %s: incoming migration %s after %" PRIu64
				       " ms (%" PRIu64 " bytes received)", g->name,
				       now - last_move > DOM_MIG_STALL_MS ? "stalled" : "unfinished",
				       now - t0, p->transferred_bytes);
			goto out;
		}
		mig_nap(c);
	}
	/* -S: QEMU keeps the guest paused after the stream */
	rc = dom_wait_status(g, c, QMP_RUN_PAUSED, DOM_MIG_SETTLE_MS, err);
	p->total_ms = ha_mono_ms() - t0;
	got = base >= 0 ? sock_bytes_received(fd) - base : 0;
	p->transferred_bytes = got > 0 ? (uint64_t)got : 0;
out:
	if (rc < 0 && launched) {
		char tail[200];
		bool died = dom_incoming_undo(g, c, &r, tail, sizeof(tail));

		if (incoming && died && tail[0]) {
			/* a failed incoming migration ends QEMU: its log says why */
			agent_err(err, -EIO, "domain %s: incoming migration failed: %s", g->name, tail);
			rc = -EIO;
		}
		dom_run_dir_remove(g, NULL);
	}
	qmp_client_free(c);
	dom_op_end(g, AGENT_GUEST_PAUSED);
	if (rc < 0) {
		dom_guest_free(g);
		return rc;
	}
	*out = g;
	return 0;
}

/* Quits the side that lost: the source after a commit, the destination
 * after an abort. It must be paused: a running guest is never discarded. */
static int mig_discard(struct agent_guest *g, bool source, char *err)
{
	struct dom_record r;
	struct qmp_client *c = NULL;
	struct mig_info mi;
	struct qmp_status st = { .running = false };
	int rc = 0;

	dom_op_begin(g, AGENT_GUEST_STOPPING);
	if (dom_guest_running(g, &r) < 0) {
		dom_clean_gone(g);
		rc = dom_run_dir_remove(g, err);
		goto out;
	}
	rc = dom_qmp_open(g, DOM_CONNECT_MS, &c, err);
	if (rc == 0) {
		rc = qmp_client_query_status(c, &st, DOM_QMP_MS, err, AGENT_ERR_LEN);
	}
	if (rc == 0 && st.running) {
		rc = agent_err(err, -EBUSY, "domain %s: running here: a running guest is not "
			       "discarded", g->name);
	}
	if (rc == 0 && source && (mig_query(c, &mi, err) < 0 ||
				  mi.q.status != QMP_MIGRATE_COMPLETED)) {
		rc = agent_err(err, -EBUSY, "domain %s: no completed outgoing migration (%s): not "
			       "discarded", g->name, st.name);
	}
	if (rc < 0) {
		goto out;
	}
	/* Quitting leaves the disk alone: the source inactivated it when the
	 * stream completed, the destination never activated it. */
	rc = dom_force_quit(g, c, &r, err);
	if (rc == 0) {
		dom_after_exit(g, &r);
		rc = dom_run_dir_remove(g, err);
	}
out:
	qmp_client_free(c);
	dom_op_end(g, rc == 0 ? AGENT_GUEST_DEFINED : st.running ? AGENT_GUEST_RUNNING :
	       AGENT_GUEST_PAUSED);
	return rc;
}

/* Runs the side that won: the destination after a commit, the source
 * after an abort. */
static int mig_resume(struct agent_guest *g, bool source, char *err)
{
	struct dom_record r;
	struct qmp_client *c = NULL;
	struct qmp_status st = { .running = false };
	int rc;

	if (dom_guest_running(g, &r) < 0) {
		return agent_err(err, -ESRCH, "domain %s: QEMU is gone", g->name);
	}
	dom_op_begin(g, AGENT_GUEST_PAUSED);
	rc = dom_qmp_open(g, DOM_CONNECT_MS, &c, err);
	if (rc == 0) {
		rc = qmp_client_query_status(c, &st, DOM_QMP_MS, err, AGENT_ERR_LEN);
	}
	if (rc == 0 && !source && st.state == QMP_RUN_INMIGRATE) {
		/* cont would run it as soon as the stream ends: refuse */
		rc = agent_err(err, -EBUSY, "domain %s: the incoming migration is not complete",
			       g->name);
	}
	if (rc == 0 && !st.running) {
		rc = resume_guest(g, c, err);
	}
	if (rc == 0 && dom_announce(c, NULL) < 0) {
		/* not fatal: the guest's own traffic teaches the switch too */
	}
	qmp_client_free(c);
	if (rc == 0) {
		g->stopped_by_us = false;
		dom_mark_stopped(g, false);
	}
	dom_op_end(g, rc == 0 ? AGENT_GUEST_RUNNING : AGENT_GUEST_PAUSED);
	return rc;
}

int dom_migrate_finish(struct agent_guest *g, bool source, bool commit, char *err)
{
	if (source == commit) {
		return mig_discard(g, source, err);
	}
	return mig_resume(g, source, err);
}

