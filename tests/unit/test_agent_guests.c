/*
 * test_agent_guests.c - the agent core's safety rules, driven through its
 * real code (agent_guests.c) over a driver that records what it is asked
 * and a clock the test moves, so that every case is deterministic:
 *
 *  - an agent that never sees a quorate partition self-fences half the
 *    self-fence timeout after its own start (and not before);
 *  - the self-fence kills a guest whose operation is still in flight;
 *  - a migration's finish never resumes a copy that another node owns;
 *  - a guest running here that another node owns is killed, not stopped
 *    over its stop_timeout;
 *  - a guest found paused after an agent restart is resumed (owned, no
 *    migration in flight) or stopped, unless the operator paused it
 *    (hactl pause): then it is frozen when it runs, stays frozen after an
 *    agent restart, is thawed by hactl resume, and is neither snapshotted
 *    nor counted as crashed while paused;
 *  - with fence method watchdog and no armed watchdog, guests that the
 *    cluster would restart elsewhere are not started;
 *  - a restart on its own (failover, crash, self-fence) restores only a
 *    failover-point snapshot within failover_snapshot_max_age, else
 *    starts cold and says why; `hactl snapshot` writes a manual snapshot,
 *    --failover-point a marked one, the timer a periodic one.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include <qb/qbdefs.h>
#include <qb/qbloop.h>

#include "agent_guests.h"
#include "agent_mig.h"
#include "agent_watchdog.h"
#include "config.h"
#include "driver.h"
#include "harness.h"
#include "log.h"
#include "snapshot.h"
#include "util.h"

#define LOCAL 1
#define OTHER 2
#define FENCE_MS 5000
#define GRACE (FENCE_MS / 2)

/* ---- the recording driver ------------------------------------------------ */

struct agent_guest {
	char name[64];
	enum agent_guest_state st;
};

static pthread_mutex_t rlock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t rcond = PTHREAD_COND_INITIALIZER;
static char rlog[16384];
/* what attach() finds, per test: the state of "c1" (STOPPED = nothing) */
static enum agent_guest_state attach_state;
static bool block_checkpoint, block_send, killed, release, fail_resume, fail_checkpoint;
static int checkpoint_failures;

static void rec(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void rec(const char *fmt, ...)
{
	va_list ap;
	size_t n;

	pthread_mutex_lock(&rlock);
	n = strlen(rlog);
	va_start(ap, fmt);
	vsnprintf(rlog + n, sizeof(rlog) - n, fmt, ap);
	va_end(ap);
	n = strlen(rlog);
	snprintf(rlog + n, sizeof(rlog) - n, ";");
	pthread_mutex_unlock(&rlock);
}

static bool logged(const char *what)
{
	bool r;

	pthread_mutex_lock(&rlock);
	r = strstr(rlog, what) != NULL;
	pthread_mutex_unlock(&rlock);
	return r;
}

static void set_state(struct agent_guest *g, enum agent_guest_state s)
{
	pthread_mutex_lock(&rlock);
	g->st = s;
	pthread_mutex_unlock(&rlock);
}

static struct agent_guest *obj_new(const char *name, enum agent_guest_state s)
{
	struct agent_guest *g = calloc(1, sizeof(*g));

	snprintf(g->name, sizeof(g->name), "%s", name);
	g->st = s;
	return g;
}

static int r_probe(struct agent_driver *d, Hactl__HostFacts *f)
{
	(void)d;
	(void)f;
	return 0;
}

static int r_create(struct agent_driver *d, const struct agent_guest_spec *spec,
		    struct agent_guest **out, char *err)
{
	(void)d;
	(void)err;
	rec("create %s", spec->name);
	*out = obj_new(spec->name, AGENT_GUEST_DEFINED);
	return 0;
}

static int r_attach(struct agent_driver *d, const struct agent_guest_spec *spec,
		    struct agent_guest **out, char *err)
{
	(void)d;
	(void)err;
	if (attach_state == AGENT_GUEST_STOPPED) {
		return -ESRCH;
	}
	rec("attach %s", spec->name);
	*out = obj_new(spec->name, attach_state);
	return 0;
}

static int r_start(struct agent_guest *g, uint32_t timeout_ms, char *err)
{
	(void)timeout_ms;
	(void)err;
	rec("start %s", g->name);
	set_state(g, AGENT_GUEST_RUNNING);
	return 0;
}

static int r_stop(struct agent_guest *g, uint32_t timeout_ms, char *err)
{
	(void)err;
	rec("stop %s %u", g->name, timeout_ms);
	set_state(g, AGENT_GUEST_STOPPED);
	return 0;
}

static int r_kill(const struct agent_guest *g, char *err)
{
	(void)err;
	rec("kill %s", g->name);
	pthread_mutex_lock(&rlock);
	killed = true;
	pthread_cond_broadcast(&rcond);
	pthread_mutex_unlock(&rlock);
	return 0;
}

static int r_destroy(struct agent_guest *g, char *err)
{
	(void)err;
	rec("destroy %s", g->name);
	return 0;
}

static enum agent_guest_state r_state(const struct agent_guest *g)
{
	enum agent_guest_state s;

	pthread_mutex_lock(&rlock);
	s = killed && g->st == AGENT_GUEST_RUNNING ? AGENT_GUEST_STOPPED : g->st;
	pthread_mutex_unlock(&rlock);
	return s;
}

static int r_usage(struct agent_guest *g, struct agent_guest_usage *u)
{
	(void)g;
	memset(u, 0, sizeof(*u));
	return 0;
}

/* Blocks (when asked) until the guest is killed or the test releases it. */
static int r_checkpoint(struct agent_guest *g, const char *dir, unsigned flags, char *err)
{
	int rc = 0;

	(void)dir;
	(void)flags;
	rec("checkpoint %s", g->name);
	pthread_mutex_lock(&rlock);
	while (block_checkpoint && !killed && !release) {
		pthread_cond_wait(&rcond, &rlock);
	}
	if (killed) {
		snprintf(err, AGENT_ERR_LEN, "the guest died under the dump");
		rc = -EIO;
} else if (fail_checkpoint) {
		snprintf(err, AGENT_ERR_LEN, "criu dump failed: In-flight connection #%d",
			 ++checkpoint_failures);
		rc = -EIO;
	}
	pthread_mutex_unlock(&rlock);
	return rc;
}

static int r_restore(struct agent_driver *d, const struct agent_guest_spec *spec,
		     const char *dir, struct agent_guest **out, char *err)
{
	(void)d;
	(void)dir;
	(void)err;
	rec("restore %s", spec->name);
	*out = obj_new(spec->name, AGENT_GUEST_RUNNING);
	return 0;
}

static void r_free(struct agent_guest *g)
{
	free(g);
}

static int r_send(struct agent_guest *g, int fd, const struct agent_mig_opts *o,
		  struct agent_mig_progress *p, char *err)
{
	(void)fd;
	(void)o;
	(void)p;
	(void)err;
	int rc = -EIO;

	rec("send %s", g->name);
	pthread_mutex_lock(&rlock);
	while (block_send && !killed && !release) {
		pthread_cond_wait(&rcond, &rlock);
	}
	if (block_send && !killed) {
		rc = 0; /* released: as if the destination had everything */
	}
	pthread_mutex_unlock(&rlock);
	return rc;
}

static int r_finish(struct agent_guest *g, bool source, bool commit, char *err)
{
	rec("finish %s source=%d commit=%d", g->name, source, commit);
	if (source && !commit && fail_resume) {
		snprintf(err, AGENT_ERR_LEN, "cannot thaw");
		return -EIO;
	}
	set_state(g, source == commit ? AGENT_GUEST_STOPPED : AGENT_GUEST_RUNNING);
	return 0;
}

static int r_pause(struct agent_guest *g, bool on, char *err)
{
	(void)err;
	rec("%s %s", on ? "freeze" : "thaw", g->name);
	set_state(g, on ? AGENT_GUEST_PAUSED : AGENT_GUEST_RUNNING);
	return 0;
}

static const struct agent_driver_ops rec_ops = {
	.name = "container",
	.probe = r_probe,
	.create = r_create,
	.attach = r_attach,
	.start = r_start,
	.stop = r_stop,
	.kill = r_kill,
	.pause = r_pause,
	.destroy = r_destroy,
	.state = r_state,
	.usage = r_usage,
	.checkpoint = r_checkpoint,
	.restore = r_restore,
	.guest_free = r_free,
	.migrate_send = r_send,
	.migrate_finish = r_finish,
};

/* ---- the agent's surroundings -------------------------------------------- */

static char tmpdir[64];
static qb_loop_t *loop;
static uint64_t fake_now;
static uint64_t fake_wall; /* the wall clock of snapshot ages */
static struct ha_config cfg;
/* the last report, for "c1" */
static char last_state[32], last_note[512], last_error[512], last_phase[32];
static char last_mig_error[512];
static uint64_t last_snap_gen;

static uint64_t clock_now(void *arg)
{
	(void)arg;
	return fake_now;
}

static uint64_t wall_now(void *arg)
{
	(void)arg;
	return fake_wall;
}

static void io_report(void *arg, Hactl__GuestStatus **st, size_t n)
{
	(void)arg;
	for (size_t i = 0; i < n; i++) {
		if (strcmp(st[i]->name, "c1") != 0) {
			continue;
		}
		snprintf(last_state, sizeof(last_state), "%s", st[i]->state);
		last_snap_gen = st[i]->snap_generation;
		snprintf(last_note, sizeof(last_note), "%s", st[i]->note ? st[i]->note : "");
		snprintf(last_error, sizeof(last_error), "%s", st[i]->error ? st[i]->error : "");
		snprintf(last_phase, sizeof(last_phase), "%s",
			 st[i]->migration ? st[i]->migration->phase : "");
		snprintf(last_mig_error, sizeof(last_mig_error), "%s",
			 st[i]->migration && st[i]->migration->error ? st[i]->migration->error : "");
	}
}

static void io_done(void *arg, uint64_t req_id, int code, const char *msg, uint64_t value)
{
	(void)arg;
	(void)value;
	rec("action %llu done %d %s", (unsigned long long)req_id, code, msg);
}

static const char *run_until_what;
static uint64_t run_until_deadline;
static bool (*run_until_pred)(void);
static qb_loop_timer_handle run_until_handle;

static void run_until_timer(void *data)
{
	(void)data;
	if ((run_until_what && logged(run_until_what)) || (run_until_pred && run_until_pred()) ||
	    ha_mono_ms() >= run_until_deadline) {
		qb_loop_stop(loop);
		return;
	}
	qb_loop_timer_add(loop, QB_LOOP_LOW, 2 * QB_TIME_NS_IN_MSEC, NULL, run_until_timer,
			  &run_until_handle);
}

/* Runs the loop (operations finish there) until @what is in the log or
 * @pred holds; 10 s at most, only as a bound for a broken build. */
static bool run_until(const char *what, bool (*pred)(void))
{
	run_until_what = what;
	run_until_pred = pred;
	run_until_deadline = ha_mono_ms() + 10000;
	qb_loop_timer_add(loop, QB_LOOP_LOW, 0, NULL, run_until_timer, &run_until_handle);
	qb_loop_run(loop);
	return (what && logged(what)) || (pred && pred());
}

static bool phase_failed(void)
{
	return strcmp(last_phase, "failed") == 0;
}

static bool phase_finished(void)
{
	return strcmp(last_phase, "finished") == 0;
}

static bool resume_failed_seen(void)
{
	return strstr(last_error, "cannot thaw") != NULL;
}

static bool state_stopped(void)
{
	return strcmp(last_state, "stopped") == 0;
}

static bool state_running(void)
{
	return strcmp(last_state, "running") == 0;
}

static void write_file(const char *path, const char *text)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);

	CHECK(fd >= 0);
	CHECK_EQ_INT(write(fd, text, strlen(text)), (long long)strlen(text));
	close(fd);
}

static const char def_ha[] = "[guest]\nname = c1\ntype = container\ncommand = /bin/true\n[storage]\ntemplate = t\n";
/* periodic snapshots every 60 s: failover_snapshot_max_age auto = 180 s */
static const char def_snap[] = "[guest]\nname = c1\ntype = container\ncommand = /bin/true\n[storage]\ntemplate = t\n[ha]\nsnapshot_interval = 60\n";
static const char def_snap10[] = "[guest]\nname = c1\ntype = container\ncommand = /bin/true\n[storage]\ntemplate = t\n[ha]\nsnapshot_interval = 10\n";
static const char *up_def = def_ha; /* what agent_up's previous agent left */
static const char def_noha[] = "[guest]\nname = c1\ntype = container\ncommand = /bin/true\n[storage]\ntemplate = t\n[ha]\nrestart = none\n";

/* A fresh agent over a fresh state dir; @attached: what a previous agent
 * left running (STOPPED: nothing). */
static struct agent_guests *agent_up(enum agent_guest_state attached, const char *method)
{
	struct agent_guests_io io = { .report = io_report, .action_done = io_done,
				      .now_ms = clock_now, .wall_ms = wall_now };
	char path[PATH_MAX], text[128];

	rlog[0] = 0;
	killed = release = block_checkpoint = block_send = fail_resume = fail_checkpoint = false;
	last_state[0] = last_note[0] = last_error[0] = last_phase[0] = last_mig_error[0] = 0;
	ha_rm_rf(tmpdir);
	CHECK_EQ_INT(ha_mkdir_p(tmpdir, 0700), 0);
	ha_config_defaults(&cfg);
	snprintf(cfg.state_dir, sizeof(cfg.state_dir), "%s/state", tmpdir);
	snprintf(cfg.shared_dir, sizeof(cfg.shared_dir), "%s/shared", tmpdir);
	snprintf(cfg.fence_config, sizeof(cfg.fence_config), "%s/fence.conf", tmpdir);
	snprintf(cfg.mig_key_file, sizeof(cfg.mig_key_file), "%s/none.key", tmpdir);
	cfg.self_fence_timeout_ms = FENCE_MS;
	snprintf(text, sizeof(text), "[defaults]\nmethod = %s\n", method);
	write_file(cfg.fence_config, text);
	snprintf(path, sizeof(path), "%s/guests/c1", cfg.state_dir);
	CHECK_EQ_INT(ha_mkdir_p(path, 0700), 0);
	CHECK_EQ_INT(ha_mkdir_p(cfg.shared_dir, 0700), 0);
	snprintf(path, sizeof(path), "%s/guests/c1/definition.conf", cfg.state_dir);
	write_file(path, up_def);
	attach_state = attached;
	fake_now = 1000000;
	fake_wall = 1796644863000ull; /* 2026-12-07 12:01:03 UTC */
	return agent_guests_new(loop, &cfg, &io);
}

/* The cluster's answer: c1 owned by @owner, desired @desired. */
struct view {
	bool quorate;
	uint32_t owner;
	uint64_t generation;
	const char *desired;
	const char *def;
	const char *mig_state; /* NULL: no migration */
	uint32_t mig_src, mig_dst, dst_port;
	uint64_t snap_gen;     /* the newest good snapshot the cluster knows */
	const char *start_mode; /* NULL: cold */
	uint64_t start_gen;     /* the generation a start restores, 0 = the rule's */
	const char *state;      /* the state last reported, NULL: none */
	uint32_t running_on;    /* where it was reported running, 0: nowhere */
	bool paused;            /* hactl pause (GuestRecord.paused) */
};

static void reconcile(struct agent_guests *m, const struct view *v)
{
	Hactl__AgentGuestsReply r = HACTL__AGENT_GUESTS_REPLY__INIT;
	Hactl__GuestRecord rec = HACTL__GUEST_RECORD__INIT, *recs[1] = { &rec };
	Hactl__NodeRecord n1 = HACTL__NODE_RECORD__INIT, n2 = HACTL__NODE_RECORD__INIT;
	Hactl__NodeRecord *nodes[2] = { &n1, &n2 };
	Hactl__Migration mg = HACTL__MIGRATION__INIT;
	const char *def = v->def ? v->def : def_ha;

	r.local_id = LOCAL;
	r.quorate = v->quorate;
	n1.id = LOCAL;
	n1.name = "node1";
	n2.id = OTHER;
	n2.name = "node2";
	r.nodes = nodes;
	r.n_nodes = 2;
	rec.name = "c1";
	rec.has_owner = true;
	rec.owner = v->owner;
	rec.has_generation = true;
	rec.generation = v->generation ? v->generation : 1;
	rec.desired = (char *)(v->desired ? v->desired : "running");
	rec.has_definition = true;
	rec.definition.data = (uint8_t *)def;
	rec.definition.len = strlen(def);
	rec.start_mode = (char *)(v->start_mode ? v->start_mode : "cold");
	rec.has_start_snapshot = v->start_gen != 0;
	rec.start_snapshot = v->start_gen;
	rec.has_snap_generation = v->snap_gen != 0;
	rec.snap_generation = v->snap_gen;
	if (v->state) {
		rec.state = (char *)v->state;
		rec.has_running_on = true;
		rec.running_on = v->running_on;
		rec.has_state_generation = true;
		rec.state_generation = rec.generation;
	}
	if (v->mig_state) {
		mg.id = 77;
		mg.source = v->mig_src;
		mg.destination = v->mig_dst;
		mg.state = (char *)v->mig_state;
		mg.has_dst_port = v->dst_port != 0;
		mg.dst_port = v->dst_port;
		mg.dst_address = "127.0.0.1";
		rec.migration = &mg;
	}
	rec.has_paused = v->paused;
	rec.paused = v->paused;
	r.guests = recs;
	r.n_guests = 1;
	agent_guests_reconcile(m, &r);
}

/* ---- cases --------------------------------------------------------------- */

/* Item 1: no quorate partition since the start (no answer at all, or only
 * non-quorate ones): the re-attached guest is killed half the self-fence
 * timeout after the start, and not before. */
static void fresh_agent_case(bool answers)
{
	struct agent_guests *m = agent_up(AGENT_GUEST_RUNNING, "agent");
	struct view minority = { .quorate = false, .owner = LOCAL };

	CHECK(m != NULL);
	CHECK(logged("attach c1"));
	fake_now += GRACE;
	if (answers) {
		reconcile(m, &minority);
	}
	agent_guests_tick(m);
	CHECK(!logged("stop c1"));
	CHECK(!logged("kill c1"));
	fake_now += 1;
	if (answers) {
		reconcile(m, &minority);
	}
	agent_guests_tick(m);
	CHECK(run_until("stop c1 0", NULL));
	CHECK(!logged("start c1"));
	agent_guests_free(m);
}

/* The same for an agent that had quorum and lost it (the old rule). */
static void lost_quorum_case(void)
{
	struct agent_guests *m = agent_up(AGENT_GUEST_RUNNING, "agent");
	struct view majority = { .quorate = true, .owner = LOCAL };

	reconcile(m, &majority);
	fake_now += 10000; /* long after the start: counts from the answer */
	reconcile(m, &majority);
	fake_now += GRACE;
	agent_guests_tick(m);
	CHECK(!logged("stop c1"));
	fake_now += 1;
	agent_guests_tick(m);
	CHECK(run_until("stop c1 0", NULL));
	agent_guests_free(m);
}

/*
 * The fault campaign (seed 7, step 1): a coordinator stopped for 6 s, the
 * agent self-fenced and killed c1, then quorum came back and the agent
 * started c1 again from scratch: its state went back past its newest good
 * snapshot. A guest that ended without being asked to (the self-fence, a
 * crash) and whose restart policy is "snapshot" now goes on from its newest
 * good snapshot.
 */
/* A sealed snapshot of c1 on the shared storage, of @kind at wall time
 * @time_ms. Returns its generation. */
static uint64_t write_snap(enum ha_snap_kind kind, uint64_t time_ms)
{
	uint64_t gen = 0;
	char tmp[PATH_MAX], f[PATH_MAX + 16], err[256];

	CHECK_EQ_INT(ha_snap_begin(cfg.shared_dir, "c1", &gen, tmp, sizeof(tmp)), 0);
	snprintf(f, sizeof(f), "%s/state", tmp);
	CHECK_EQ_INT(ha_mkdir_p(f, 0700), 0);
	snprintf(f, sizeof(f), "%s/state/mem", tmp);
	write_file(f, "memory of c1");
	CHECK_EQ_INT(ha_snap_commit(cfg.shared_dir, "c1", gen, tmp, def_snap, strlen(def_snap),
				    time_ms, kind, err, sizeof(err)), 0);
	return gen;
}

/* Ticks c1's agent, 2 s of its clock at a time (past any restart delay),
 * until it restarts c1 (a restore or a cold start), each time letting the
 * operations run until @expected is logged. */
static void tick_until_restart(struct agent_guests *m, const struct view *v,
			       const char *expected)
{
	for (int i = 0; i < 20 && !logged("restore c1") && !logged("start c1"); i++) {
		fake_now += 2000;
		reconcile(m, v);
		agent_guests_tick(m);
		run_until(expected, NULL);
	}
}

/* c1 ends by itself (a crash) and its agent restarts it. */
static void crash_until_restart(struct agent_guests *m, const struct view *v,
				const char *expected)
{
	pthread_mutex_lock(&rlock);
	killed = true;
	pthread_mutex_unlock(&rlock);
	tick_until_restart(m, v, expected);
	pthread_mutex_lock(&rlock);
	killed = false; /* the new copy runs */
	pthread_mutex_unlock(&rlock);
}

static void self_fenced_restart_case(void)
{
	struct agent_guests *m = agent_up(AGENT_GUEST_RUNNING, "agent");
	struct view majority = { .quorate = true, .owner = LOCAL, .snap_gen = 1, .def = def_snap };

	/* one periodic snapshot of c1, 10 s old (max 180 s) */
	write_snap(HA_SNAP_KIND_PERIODIC, fake_wall - 10000);
	reconcile(m, &majority);
	fake_now += GRACE + 1; /* no answer: self-fence */
	agent_guests_tick(m);
	CHECK(run_until("kill c1", NULL));
	fake_now += 10; /* quorate again */
	rlog[0] = 0;
	tick_until_restart(m, &majority, "restore c1");
	CHECK(logged("restore c1"));
	CHECK(!logged("start c1"));
	agent_guests_free(m);
}

static bool note_set(void)
{
	return last_note[0] != 0;
}

static bool note_cold(void)
{
	return strstr(last_note, "cold start") != NULL;
}

/*
 * Issue 20: a failover onto this host (a new owner, start mode
 * snapshot-or-cold) of a guest whose snapshots are (@kind, @age_ms old):
 * restored when the rule allows it (@want_restore), else a cold start
 * whose note says why (@want_note, a part of it).
 */
static void failover_choice_case(const char *def, enum ha_snap_kind kind, uint64_t age_ms,
				 bool want_restore, const char *want_note)
{
	struct agent_guests *m = agent_up(AGENT_GUEST_STOPPED, "agent");
	struct view fo = { .quorate = true, .owner = LOCAL, .generation = 2, .snap_gen = 1,
			   .def = def, .start_mode = "snapshot-or-cold" };

	write_snap(kind, fake_wall - age_ms);
	reconcile(m, &fo);
	CHECK(run_until(NULL, note_set));
	CHECK(want_restore ? logged("restore c1") : !logged("restore c1"));
	CHECK(want_restore ? !logged("create c1") : logged("start c1"));
	if (!strstr(last_note, want_note)) {
		ha_test_failures++;
		fprintf(stderr, "note\n  got:  %s\n  want: ...%s...\n", last_note, want_note);
	}
	ha_test_checks++;
	agent_guests_free(m);
}

/*
 * The fault campaign, seed 2: this host was killed and came back before it
 * was fenced, so it still owns c1, which the cluster last heard running
 * here. The new agent finds nothing running: c1 goes on from its newest
 * snapshot, not from scratch. A guest merely reported stopped here, or
 * reported running elsewhere, starts as its record says (cold).
 */
static void host_back_case(const char *state, uint32_t running_on, bool want_restore)
{
	struct agent_guests *m = agent_up(AGENT_GUEST_STOPPED, "agent");
	struct view back = { .quorate = true, .owner = LOCAL, .snap_gen = 1, .def = def_snap,
			     .state = state, .running_on = running_on };

	write_snap(HA_SNAP_KIND_PERIODIC, fake_wall - 10000);
	reconcile(m, &back);
	CHECK(run_until(NULL, note_set));
	CHECK(want_restore ? logged("restore c1") : !logged("restore c1"));
	CHECK(want_restore ? !logged("start c1") : logged("start c1"));
	agent_guests_free(m);
}

/* A crash on this host (the agent's own restart): the same rule. */
static void crash_restart_old_case(void)
{
	struct agent_guests *m = agent_up(AGENT_GUEST_RUNNING, "agent");
	struct view majority = { .quorate = true, .owner = LOCAL, .snap_gen = 1, .def = def_snap };

	write_snap(HA_SNAP_KIND_PERIODIC, fake_wall - 900000); /* 900 s old, max 180 s */
	reconcile(m, &majority);
	rlog[0] = 0;
	crash_until_restart(m, &majority, "start c1");
	CHECK(logged("start c1"));
	CHECK(!logged("restore c1"));
	CHECK(run_until(NULL, note_cold));
	CHECK(strstr(last_note, "cold start: newest failover snapshot, generation 1 of "
			"2026-12-07 11:46:03, is 900 s old (max 180 s)") != NULL);
	agent_guests_free(m);
}

/*
 * An operator restored an old manual snapshot (any age: the operator's
 * choice); the guest then crashed. Its restart is one on its own: the
 * failover rule, so a cold start here -- it did restore that generation
 * again, a rollback past everything since.
 */
static void crash_after_restore_case(void)
{
	struct agent_guests *m = agent_up(AGENT_GUEST_STOPPED, "agent");
	struct view restored = { .quorate = true, .owner = LOCAL, .generation = 2,
				 .snap_gen = 1, .def = def_snap, .start_mode = "snapshot",
				 .start_gen = 1 };

	write_snap(HA_SNAP_KIND_MANUAL, fake_wall - 900000);
	reconcile(m, &restored);
	CHECK(run_until("restore c1", NULL));
	CHECK(run_until(NULL, note_set));
	CHECK(strstr(last_note, "restored from snapshot generation 1") != NULL);
	rlog[0] = 0;
	crash_until_restart(m, &restored, "start c1");
	CHECK(logged("start c1"));
	CHECK(!logged("restore c1"));
	CHECK(run_until(NULL, note_cold));
	CHECK(strstr(last_note, "cold start: no usable failover snapshot; passed over: "
			"generation 1 (manual, not a failover point)") != NULL);
	agent_guests_free(m);
}

/* The kinds the agent writes: manual, marked, periodic. */
static void snapshot_kinds_case(void)
{
	struct agent_guests *m = agent_up(AGENT_GUEST_RUNNING, "agent");
	struct view majority = { .quorate = true, .owner = LOCAL, .def = def_snap };
	Hactl__AgentAction a = HACTL__AGENT_ACTION__INIT;
	struct ha_snap_info info;
	char err[256];

	reconcile(m, &majority);
	a.kind = "snapshot";
	a.guest = "c1";
	agent_guests_action(m, 5, &a);
	CHECK(run_until("action 5 done 0", NULL));
	a.has_failover_point = true;
	a.failover_point = true;
	agent_guests_action(m, 6, &a);
	CHECK(run_until("action 6 done 0", NULL));
	CHECK_EQ_INT(ha_snap_info(cfg.shared_dir, "c1", 1, &info, err, sizeof(err)), 0);
	CHECK_EQ_INT(info.kind, HA_SNAP_KIND_MANUAL);
	CHECK_EQ_INT(info.time_ms, fake_wall);
	CHECK_EQ_INT(ha_snap_info(cfg.shared_dir, "c1", 2, &info, err, sizeof(err)), 0);
	CHECK_EQ_INT(info.kind, HA_SNAP_KIND_FAILOVER);
	/* the timer's: periodic (snapshot_schedule_case) */
	agent_guests_free(m);
}

static bool idle(void)
{
	return true;
}

static int count_logged(const char *what)
{
	int n = 0;

	pthread_mutex_lock(&rlock);
	for (const char *p = rlog; (p = strstr(p, what)) != NULL; p += strlen(what)) {
		n++;
	}
	pthread_mutex_unlock(&rlock);
	return n;
}

/* At fake time @t_ms after @t0: the cluster's (quorate) answer, a tick,
 * and the operations it starts run. */
static const struct view *tick_view;

static void tick_at(struct agent_guests *m, uint64_t t0, uint64_t t_ms)
{
	fake_now = t0 + t_ms;
	reconcile(m, tick_view);
	agent_guests_tick(m);
	run_until(NULL, idle);
}


/*
 * The fault campaign (seed 7): a container that clients kept connecting
 * to could not be snapshotted (CRIU refused a connection not yet
 * accepted) and the agent tried again at every tick, stopping the guest
 * each time; and a guest this agent attached (started by an agent before
 * it) was never snapshotted again. Periodic snapshots of an attached
 * guest now start one interval after it is owned, and a failed one is
 * tried again after 1 s, 2 s, 4 s ... up to the interval.
 */
static int wait_failures, want_checkpoints;

static bool checkpoints_seen(void)
{
	return count_logged("checkpoint c1") >= want_checkpoints;
}

static bool failure_reported(void)
{
	char tag[32];

	snprintf(tag, sizeof(tag), "#%d", wait_failures);
	return strstr(last_error, tag) != NULL;
}

static bool snapshot_reported(void)
{
	return last_snap_gen > 0;
}

/* A periodic snapshot starts at @t_ms (not before) and fails or works. */
static void snapshot_at(struct agent_guests *m, uint64_t t0, uint64_t t_ms, bool fail)
{
	int before = count_logged("checkpoint c1");

	tick_at(m, t0, t_ms - 1);
	CHECK_EQ_INT(count_logged("checkpoint c1"), before);
	fail_checkpoint = fail;
	wait_failures = checkpoint_failures + 1;
	tick_at(m, t0, t_ms);
	want_checkpoints = before + 1;
	CHECK(run_until(NULL, checkpoints_seen));
	CHECK_EQ_INT(count_logged("checkpoint c1"), before + 1);
	if (fail) {
		CHECK(run_until(NULL, failure_reported));
	} else {
		CHECK(run_until(NULL, snapshot_reported));
	}
}

static void snapshot_schedule_case(void)
{
	struct agent_guests *m;
	struct view majority = { .quorate = true, .owner = LOCAL, .def = def_snap10 };
	uint64_t t0;

	up_def = def_snap10;
	m = agent_up(AGENT_GUEST_RUNNING, "agent");
	up_def = def_ha;
	checkpoint_failures = 0;
	last_snap_gen = 0;
	tick_view = &majority;
	reconcile(m, &majority);
	t0 = fake_now;
	tick_at(m, t0, 0);                       /* attached: plans one, 10 s on */
	snapshot_at(m, t0, 10000, true);         /* fails: again 1 s later */
	tick_at(m, t0, 10000 + 500);             /* (not at the next ticks) */
	snapshot_at(m, t0, 11000, true);         /* then 2 s */
	snapshot_at(m, t0, 13000, true);         /* then 4 s */
	snapshot_at(m, t0, 17000, false);        /* works: the interval again */
	snapshot_at(m, t0, 27000, false);
	{
		struct ha_snap_info info;
		char err[256];

		/* the timer's snapshots are periodic ones */
		CHECK_EQ_INT(ha_snap_info(cfg.shared_dir, "c1", last_snap_gen, &info, err,
					  sizeof(err)), 0);
		CHECK_EQ_INT(info.kind, HA_SNAP_KIND_PERIODIC);
	}
	agent_guests_free(m);
}

/* Item 2: a guest busy with a snapshot when quorum goes is killed at once,
 * beside its operation, which then fails. */
static void busy_case(void)
{
	struct agent_guests *m = agent_up(AGENT_GUEST_RUNNING, "agent");
	struct view majority = { .quorate = true, .owner = LOCAL };
	Hactl__AgentAction a = HACTL__AGENT_ACTION__INIT;

	reconcile(m, &majority);
	block_checkpoint = true;
	a.kind = "snapshot";
	a.guest = "c1";
	agent_guests_action(m, 5, &a);
	CHECK(run_until("checkpoint c1", NULL));
	fake_now += GRACE + 1;
	agent_guests_tick(m);
	/* synchronous: no waiting on the operation */
	CHECK(logged("kill c1"));
	CHECK(run_until("action 5 done -5", NULL));
	CHECK(strcmp(last_state, "stopped") == 0);
	/* a build without the fix: let the dump go so the test ends */
	pthread_mutex_lock(&rlock);
	release = true;
	pthread_cond_broadcast(&rcond);
	pthread_mutex_unlock(&rlock);
	agent_guests_free(m);
}

/* ---- a migration's destination in a thread ---- */

struct dst {
	struct ha_config cfg;
	struct agent_mig_params p;
	struct mig_listener *l;
	pthread_t t;
	int rc;
	char err[512];
};

static void *dst_main(void *arg)
{
	struct dst *d = arg;
	struct agent_mig_xfer *x = NULL;
	char buf[4096];
	int fd, rc;

	d->rc = agent_mig_accept(d->l, &d->p, 10000, &x, d->err, sizeof(d->err));
	if (d->rc < 0) {
		return NULL;
	}
	rc = agent_mig_relay_start(x, &fd, d->err, sizeof(d->err));
	while (rc == 0 && read(fd, buf, sizeof(buf)) > 0) {
	}
	d->rc = agent_mig_finish(x, rc == 0 ? -EIO : rc, "source gone", d->err, sizeof(d->err));
	agent_mig_free(x);
	return NULL;
}

/* Item 2, the migration's source: cut off while it sends, it is killed
 * beside the send and its stream is cut, not after the stream's timeouts. */
static void busy_source_case(void)
{
	struct agent_guests *m = agent_up(AGENT_GUEST_RUNNING, "agent");
	struct dst d;
	char key[PATH_MAX], err[512];
	uint8_t bytes[32];
	int fd;

	for (size_t i = 0; i < sizeof(bytes); i++) {
		bytes[i] = (uint8_t)(i * 37 + 5);
	}
	snprintf(key, sizeof(key), "%s/cluster.key", tmpdir);
	fd = open(key, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	CHECK(fd >= 0);
	CHECK_EQ_INT(write(fd, bytes, sizeof(bytes)), (long long)sizeof(bytes));
	close(fd);
	snprintf(cfg.mig_key_file, sizeof(cfg.mig_key_file), "%s", key);
	memset(&d, 0, sizeof(d));
	d.cfg = cfg;
	d.p.cfg = &d.cfg;
	d.p.guest = "c1";
	d.p.id = 77;
	CHECK_EQ_INT(agent_mig_listen(&d.p, &d.l, err, sizeof(err)), 0);
	pthread_create(&d.t, NULL, dst_main, &d);
	{
		struct view mig = { .quorate = true, .owner = LOCAL, .mig_state = "transferring",
				    .mig_src = LOCAL, .mig_dst = OTHER,
				    .dst_port = mig_listener_port(d.l) };

		block_send = true;
		reconcile(m, &mig);
	}
	CHECK(run_until("send c1", NULL));
	fake_now += GRACE + 1;
	agent_guests_tick(m);
	CHECK(logged("kill c1"));
	CHECK(run_until(NULL, phase_failed));
	CHECK(strcmp(last_state, "running") != 0);
	pthread_mutex_lock(&rlock);
	release = true;
	pthread_cond_broadcast(&rcond);
	pthread_mutex_unlock(&rlock);
	pthread_join(d.t, NULL);
	mig_listener_free(d.l);
	agent_guests_free(m);
}

/* A port that refuses connections (bound, never listening). */
static uint16_t refusing_port(int *fd)
{
	struct sockaddr_in sa = { .sin_family = AF_INET };
	socklen_t len = sizeof(sa);

	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	*fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	CHECK(*fd >= 0);
	CHECK_EQ_INT(bind(*fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	CHECK_EQ_INT(getsockname(*fd, (struct sockaddr *)&sa, &len), 0);
	return ntohs(sa.sin_port);
}

/* Item 2: the source of a migration that failed; the cluster aborts it.
 * @owner_after: who owns the guest by then. Only the owner resumes. */
static void aborted_source_case(uint32_t owner_after)
{
	struct agent_guests *m = agent_up(AGENT_GUEST_RUNNING, "agent");
	int sfd;
	uint16_t port = refusing_port(&sfd);
	struct view mig = { .quorate = true, .owner = LOCAL, .mig_state = "transferring",
			    .mig_src = LOCAL, .mig_dst = OTHER, .dst_port = port };
	struct view aborted = { .quorate = true, .owner = owner_after,
				.generation = owner_after == LOCAL ? 1 : 2, .mig_state = "aborted",
				.mig_src = LOCAL, .mig_dst = OTHER, .dst_port = port };

	reconcile(m, &mig);
	CHECK(run_until(NULL, phase_failed));
	reconcile(m, &aborted);
	CHECK(run_until("finish c1", NULL));
	if (owner_after == LOCAL) {
		CHECK(logged("finish c1 source=1 commit=0"));
	} else {
		CHECK(logged("finish c1 source=1 commit=1"));
		CHECK(!logged("finish c1 source=1 commit=0"));
		CHECK(run_until(NULL, phase_finished));
		CHECK(strstr(last_note, "discarded, not resumed") != NULL);
	}
	close(sfd);
	agent_guests_free(m);
}

/* Item 2: running here, owned elsewhere: killed, no graceful stop. */
static void unowned_case(void)
{
	struct agent_guests *m = agent_up(AGENT_GUEST_RUNNING, "agent");
	struct view elsewhere = { .quorate = true, .owner = OTHER, .generation = 2 };
	struct view stopped = { .quorate = true, .owner = LOCAL, .desired = "stopped" };

	reconcile(m, &elsewhere);
	CHECK(run_until("stop c1", NULL));
	CHECK(logged("stop c1 0;"));
	agent_guests_free(m);

	/* owned but to be stopped: the graceful stop (stop_timeout 30 s) */
	m = agent_up(AGENT_GUEST_RUNNING, "agent");
	reconcile(m, &stopped);
	CHECK(run_until("stop c1", NULL));
	CHECK(logged("stop c1 30000;"));
	agent_guests_free(m);
}

/* Item 6: found paused after a restart. */
static void paused_case(void)
{
	struct agent_guests *m = agent_up(AGENT_GUEST_PAUSED, "agent");
	struct view owned = { .quorate = true, .owner = LOCAL };
	struct view elsewhere = { .quorate = true, .owner = OTHER, .generation = 2 };
	struct view stopped = { .quorate = true, .owner = LOCAL, .desired = "stopped" };
	struct view mig = { .quorate = true, .owner = LOCAL, .mig_state = "transferring",
			    .mig_src = OTHER, .mig_dst = 3 };

	/* a migration in flight elsewhere does not concern it: resumed */
	reconcile(m, &owned);
	CHECK(run_until(NULL, state_running));
	CHECK(logged("finish c1 source=1 commit=0"));
	CHECK(strstr(last_note, "resumed") != NULL);
	agent_guests_free(m);

	m = agent_up(AGENT_GUEST_PAUSED, "agent");
	reconcile(m, &elsewhere);
	CHECK(run_until("stop c1", NULL));
	CHECK(logged("stop c1 0;"));
	CHECK(!logged("finish c1"));
	agent_guests_free(m);

	m = agent_up(AGENT_GUEST_PAUSED, "agent");
	reconcile(m, &stopped);
	CHECK(run_until("stop c1", NULL));
	CHECK(!logged("finish c1"));
	agent_guests_free(m);

	m = agent_up(AGENT_GUEST_PAUSED, "agent");
	reconcile(m, &mig);
	CHECK(run_until(NULL, state_running));
	agent_guests_free(m);

	/* it cannot be resumed: killed, then started afresh */
	m = agent_up(AGENT_GUEST_PAUSED, "agent");
	fail_resume = true;
	reconcile(m, &owned);
	CHECK(run_until(NULL, resume_failed_seen));
	reconcile(m, &owned);
	CHECK(run_until(NULL, state_stopped));
	CHECK(logged("stop c1 0;"));
	CHECK(strstr(last_note, "could not be resumed") != NULL);
	reconcile(m, &owned);
	CHECK(run_until("start c1", NULL));
	agent_guests_free(m);
}

static bool state_paused(void)
{
	return strcmp(last_state, "paused") == 0;
}

/* hactl pause and resume on the owner. */
static void operator_pause_case(void)
{
	struct agent_guests *m = agent_up(AGENT_GUEST_RUNNING, "agent");
	struct view owned = { .quorate = true, .owner = LOCAL, .def = def_snap10 };
	struct view paused = owned;
	struct view stopped = { .quorate = true, .owner = LOCAL, .desired = "stopped",
				.paused = false };
	Hactl__AgentAction snap = HACTL__AGENT_ACTION__INIT;

	paused.paused = true;
	/* running, then paused by the operator: frozen, reported paused */
	reconcile(m, &owned);
	CHECK(state_running());
	reconcile(m, &paused);
	CHECK(run_until(NULL, state_paused));
	CHECK(logged("freeze c1;"));
	CHECK(strstr(last_note, "paused by the operator") != NULL);
	/* paused as asked: not resumed, not restarted, no periodic snapshot */
	rlog[0] = 0;
	fake_now += 60000;
	reconcile(m, &paused);
	agent_guests_tick(m);
	reconcile(m, &paused);
	CHECK(state_paused());
	CHECK(!logged("finish c1") && !logged("start c1") && !logged("checkpoint c1") &&
	      !logged("thaw c1"));
	/* hactl snapshot is refused with the reason */
	snap.kind = "snapshot";
	snap.guest = "c1";
	agent_guests_action(m, 7, &snap);
	CHECK(logged("action 7 done -16 guest 'c1' is paused: resume it to take a snapshot"));
	/* resumed: thawed, the same instance (no start) */
	reconcile(m, &owned);
	CHECK(run_until(NULL, state_running));
	CHECK(logged("thaw c1;") && !logged("start c1"));
	agent_guests_free(m);

	/* an agent restart while paused: the frozen guest stays frozen */
	m = agent_up(AGENT_GUEST_PAUSED, "agent");
	reconcile(m, &paused);
	reconcile(m, &paused);
	agent_guests_tick(m);
	CHECK(state_paused());
	CHECK(!logged("finish c1") && !logged("thaw c1") && !logged("stop c1"));
	/* ... and hactl resume after it thaws it, as the operator's pause */
	reconcile(m, &owned);
	CHECK(run_until(NULL, state_running));
	CHECK(logged("thaw c1;") && !logged("finish c1"));
	CHECK(strstr(last_note, "resumed (hactl resume)") != NULL);
	agent_guests_free(m);

	/* restored after a failover with the pause kept: frozen once up */
	m = agent_up(AGENT_GUEST_STOPPED, "agent");
	reconcile(m, &paused);
	CHECK(run_until("start c1", NULL));
	CHECK(run_until(NULL, state_running));
	reconcile(m, &paused);
	CHECK(run_until(NULL, state_paused));
	CHECK(logged("freeze c1;"));
	/* the note keeps how it started */
	CHECK(strstr(last_note, "paused by the operator (hactl pause); cold start") != NULL);
	/* a stop of a paused guest stops it (the driver thaws it first) */
	reconcile(m, &stopped);
	CHECK(run_until(NULL, state_stopped));
	CHECK(logged("stop c1"));
	agent_guests_free(m);
}

/* Fencing safe by default: method watchdog without an armed watchdog. */
static void watchdog_refusal_case(void)
{
	struct agent_guests *m = agent_up(AGENT_GUEST_STOPPED, "watchdog");
	struct view want = { .quorate = true, .owner = LOCAL };
	struct view want_noha = { .quorate = true, .owner = LOCAL, .def = def_noha };
	bool armed = true;
	uint32_t timeout_ms = 1;
	const char *error = NULL;
	char path[PATH_MAX];

	/* a start would show as "starting" in the report that ends reconcile */
	reconcile(m, &want);
	agent_guests_tick(m);
	CHECK(strcmp(last_state, "starting") != 0);
	CHECK(strstr(last_error, "no armed watchdog") != NULL);
	agent_guests_watchdog(m, &armed, &timeout_ms, &error);
	CHECK(!armed);
	CHECK_EQ_INT(timeout_ms, 0);
	CHECK(strstr(error, "no watchdog_device") != NULL);
	/* nor received: the destination of a migration refuses at once */
	{
		struct view incoming = { .quorate = true, .owner = OTHER, .mig_state = "transferring",
					 .mig_src = OTHER, .mig_dst = LOCAL };

		reconcile(m, &incoming);
		CHECK(strcmp(last_phase, "failed") == 0);
		CHECK(strstr(last_mig_error, "no armed watchdog") != NULL);
	}
	/* restart = none: never restarted elsewhere, so it may run */
	reconcile(m, &want_noha);
	CHECK(run_until("start c1", NULL));
	agent_guests_free(m);

	/* method agent: fence devices confirm; no watchdog needed */
	m = agent_up(AGENT_GUEST_STOPPED, "agent");
	reconcile(m, &want);
	CHECK(run_until("start c1", NULL));
	agent_guests_free(m);

	/* a device that is no watchdog: not armed, refused, and said why */
	snprintf(path, sizeof(path), "%s/not-a-watchdog", tmpdir);
	m = agent_up(AGENT_GUEST_STOPPED, "watchdog");
	agent_guests_free(m);
	write_file(path, "");
	snprintf(cfg.watchdog_device, sizeof(cfg.watchdog_device), "%s", path);
	{
		struct agent_guests_io io = { .report = io_report, .action_done = io_done,
					      .now_ms = clock_now, .wall_ms = wall_now };

		m = agent_guests_new(loop, &cfg, &io);
	}
	agent_guests_watchdog(m, &armed, &timeout_ms, &error);
	CHECK(!armed);
	CHECK(strstr(error, "cannot set a timeout") != NULL);
	reconcile(m, &want);
	CHECK(strcmp(last_state, "starting") != 0);
	CHECK(strstr(last_error, "no armed watchdog") != NULL);
	agent_guests_free(m);
	/* the opt-out of test clusters */
	cfg.watchdog_required = false;
	{
		struct agent_guests_io io = { .report = io_report, .action_done = io_done,
					      .now_ms = clock_now, .wall_ms = wall_now };

		m = agent_guests_new(loop, &cfg, &io);
	}
	reconcile(m, &want);
	CHECK(run_until("start c1", NULL));
	agent_guests_free(m);
}

/* The watchdog module without a device: what it refuses and why. */
static void watchdog_open_case(void)
{
	struct agent_watchdog *w = NULL;
	char err[512] = "", path[PATH_MAX];

	CHECK_EQ_INT(agent_watchdog_open("/nonexistent/watchdog", 2500, &w, err, sizeof(err)),
		     -ENOENT);
	CHECK(w == NULL);
	CHECK_EQ_INT(agent_watchdog_open("/dev/null", 999, &w, err, sizeof(err)), -ERANGE);
	CHECK(strstr(err, "one-second resolution") != NULL);
	snprintf(path, sizeof(path), "%s/plain", tmpdir);
	write_file(path, "");
	CHECK_EQ_INT(agent_watchdog_open(path, 2500, &w, err, sizeof(err)), -ENOTTY);
	CHECK(w == NULL);
}

int main(void)
{
	int fds;

	struct ha_log_opts lo = { .ident = "test_agent_guests", .to_stderr = true,
				  .priority = LOG_INFO };

	if (getenv("HA_TEST_LOG")) {
		ha_log_init(&lo);
	}
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/ha-test-agent-guests-%d", (int)getpid());
	agent_driver_override(&rec_ops);
	loop = qb_loop_create();
	CHECK(loop != NULL);
	fds = ha_test_count_fds();

	fresh_agent_case(false);
	fresh_agent_case(true);
	lost_quorum_case();
	self_fenced_restart_case();
	setenv("TZ", "UTC0", 1);
	tzset();
	/* periodic, 100 s old, max auto = 180 s: restored */
	failover_choice_case(def_snap, HA_SNAP_KIND_PERIODIC, 100000, true,
			     "restored from snapshot generation 1 taken 100000 ms before: "
			     "snapshot generation 1 of 2026-12-07 11:59:23, 100 s old (max 180 s)");
	/* the only snapshot older than the maximum: cold, and the note says so */
	failover_choice_case(def_snap, HA_SNAP_KIND_PERIODIC, 400000, false,
			     "cold start: newest failover snapshot, generation 1 of "
			     "2026-12-07 11:54:23, is 400 s old (max 180 s)");
	/* a fresh manual snapshot is no failover point */
	failover_choice_case(def_snap, HA_SNAP_KIND_MANUAL, 1000, false,
			     "cold start: no usable failover snapshot; passed over: generation 1 "
			     "(manual, not a failover point)");
	/* unless marked */
	failover_choice_case(def_snap, HA_SNAP_KIND_FAILOVER, 1000, true,
			     "snapshot generation 1 of 2026-12-07 12:01:02, 1 s old (max 180 s)");
	/* one written before kinds were recorded counts as a failover point */
	failover_choice_case(def_snap, HA_SNAP_KIND_LEGACY, 1000, true, "1 s old (max 180 s)");
	/* no periodic snapshots, auto: no snapshot may be used */
	failover_choice_case(def_ha, HA_SNAP_KIND_FAILOVER, 1000, false,
			     "cold start: no snapshot may be used: failover_snapshot_max_age is auto "
			     "and snapshot_interval is 0");
	crash_restart_old_case();
	host_back_case("running", LOCAL, true);
	host_back_case("stopped", LOCAL, false);
	host_back_case("running", OTHER, false);
	crash_after_restore_case();
	snapshot_kinds_case();
	busy_case();
	snapshot_schedule_case();
	busy_source_case();
	aborted_source_case(LOCAL);
	aborted_source_case(OTHER);
	unowned_case();
	paused_case();
	operator_pause_case();
	watchdog_refusal_case();
	watchdog_open_case();

	CHECK_EQ_INT(ha_test_count_fds(), fds);
	qb_loop_destroy(loop);
	ha_rm_rf(tmpdir);
	agent_driver_override(NULL);
	return ha_test_done("test_agent_guests");
}
