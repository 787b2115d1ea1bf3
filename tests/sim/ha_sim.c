/*
 * ha_sim.c - a deterministic simulator of the cluster's decisions
 * (docs/simulator.md).
 *
 * It runs the coordinators' real code (libha_coord: the replicated state
 * machine, the leader's fencing, recovery, restart policy, migration
 * transactions and balancing rounds), one struct coord per node in one
 * process, fed by a script of events: hosts that boot, crash or are cut
 * off, coordinators that stop, agents that connect and report, fence
 * agents that succeed or fail, operators' commands and the passing of
 * time. Corosync is replaced by a loopback bus per network partition that
 * delivers every multicast to the members of the sender's CPG group in
 * one order; votequorum by one vote per live host of the partition. The
 * clock is simulated (100 ms ticks); nothing waits, nothing depends on the
 * machine.
 *
 * It prints every commit, rejection, fence state change and coordinator
 * event, one stable line each, and audits the physical truth it knows
 * (which hosts are up, what each host's agent was last told to run and
 * whether it has self-fenced): a guest that may run on two hosts at once,
 * or a node committed fenced while its host is up and has not self-fenced,
 * is printed as an AUDIT line.
 *
 *   ha-sim SCRIPT                    run, print on stdout
 *   ha-sim --golden SCRIPT EXPECTED  run twice, compare both with EXPECTED
 *                                    (HA_GOLDEN_UPDATE=1 rewrites it)
 * Exit: 0, 1 (an expect failed, an AUDIT line, or a golden difference),
 * 2 (a script error: FILE:LINE: why).
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "coordinator.h"
#include "log.h"
#include "util.h"

#define MAXN 8         /* nodes: ids 1..MAXN */
#define MAXG 64        /* guests */
#define QMAX 65536
#define TICK_MS 100
#define T0 1000        /* the clock starts here (0 means "not set") */
#define MAXJOBS 64
#define AGENT_CHECK_MS 500 /* the agent's self-fence check runs this often */

struct bus_msg {
	uint32_t sender;
	size_t len;
	uint8_t *data;
};

struct host {
	char name[COORD_NAME_MAX + 1];
	bool up;              /* powered, corosync running */
	bool coord;           /* the coordinator process runs */
	bool ever;            /* its coordinator ran before: a state file */
	int comp;             /* network partition */
	uint64_t notice_ms;   /* its corosync notices the partition then; 0 */
	/* its agent, as the coordinator sees it */
	bool agent;
	uint32_t wd_ms, cpus;
	uint64_t mem_mib;
	bool qemu;
	/* the agent's model for the audits: what it runs */
	uint64_t last_quorate_ms; /* 0: never quorate since it booted */
	bool self_fenced;
	char runs[MAXG][COORD_NAME_MAX + 1];
	size_t n_runs;
	/* what its agent last reported of each guest (not of an incoming
	 * migration's paused copy): a copy it was told to stop runs until
	 * it says it stopped */
	char rep_guest[MAXG][COORD_NAME_MAX + 1];
	char rep_state[MAXG][16];
	size_t n_rep;
};

struct fence_job {
	uint32_t node, by, attempt;
	bool open;
};

/* ---- the world ---- */

static const char *script_path;
static int line_no;
static FILE *out;
static struct host hosts[MAXN + 1];
static uint32_t n_nodes;
static struct coord co[MAXN + 1];
static struct bus_msg queue[QMAX];
static size_t q_head, q_tail;
static uint64_t now_ms = T0;
static char tmpdir[PATH_MAX];
static char fence_conf[PATH_MAX]; /* "" = no fence.conf */
static char policy_dir[PATH_MAX];
static uint32_t self_fence_ms = 5000;
static struct fence_job jobs[MAXJOBS];
static size_t n_jobs;
static int failures;          /* expects failed, audits */
static char last_views[1024];
static char audit_seen[MAXG][256];
static char audit_names[MAXG][COORD_NAME_MAX + 1];
static size_t n_audit;

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void die(const char *fmt, ...)
{
	va_list ap;

	fflush(out);
	fprintf(stderr, "%s:%d: ", script_path, line_no);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	if (tmpdir[0]) {
		char cmd[PATH_MAX + 16];

		snprintf(cmd, sizeof(cmd), "rm -rf %s", tmpdir);
		if (system(cmd) != 0) {
			fprintf(stderr, "cannot remove %s\n", tmpdir);
		}
	}
	exit(2);
}

static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void say(const char *fmt, ...)
{
	va_list ap;

	fprintf(out, "%4llu.%03llu ", (unsigned long long)((now_ms - T0) / 1000),
		(unsigned long long)((now_ms - T0) % 1000));
	va_start(ap, fmt);
	vfprintf(out, fmt, ap);
	va_end(ap);
	fputc('\n', out);
}

static const char *nname(uint32_t id)
{
	return id >= 1 && id <= n_nodes ? hosts[id].name : id == 0 ? "none" : "?";
}

static uint32_t node_id(const char *name)
{
	for (uint32_t id = 1; id <= n_nodes; id++) {
		if (strcmp(hosts[id].name, name) == 0) {
			return id;
		}
	}
	die("unknown node '%s'", name);
}

/* ---- the bus ---- */

static int bus_send(struct coord *c, const uint8_t *buf, size_t len)
{
	struct bus_msg *m;

	if (q_tail - q_head >= QMAX) {
		return -ENOBUFS;
	}
	m = &queue[q_tail++ % QMAX];
	m->sender = c->local_id;
	m->len = len;
	m->data = malloc(len);
	if (m->data == NULL) {
		q_tail--;
		return -ENOMEM;
	}
	memcpy(m->data, buf, len);
	return 0;
}

static void drain_events(void);
static void agents_update(void);

/* The coordinators that receive what @sender multicasts now: the members
 * of its CPG view that are in that view themselves. */
static size_t receivers(uint32_t sender, uint32_t *ids)
{
	const struct coord *s = &co[sender];
	size_t n = 0;

	if (!hosts[sender].up || !hosts[sender].coord || !s->joined || hosts[sender].notice_ms) {
		return 0; /* a ring that has not re-formed yet delivers nothing */
	}
	for (size_t i = 0; i < s->n_members; i++) {
		uint32_t id = s->members[i];

		if (id >= 1 && id <= n_nodes && hosts[id].up && hosts[id].coord &&
		    !hosts[id].notice_ms &&
		    hosts[id].comp == hosts[sender].comp && coord_is_member(&co[id], sender)) {
			ids[n++] = id;
		}
	}
	return n;
}

static void print_commit(uint32_t sender, const Hactl__CpgCommit *cm, const uint32_t *ids,
			 size_t n, const uint64_t *before, const char *why)
{
	char desc[1024], applied[64] = "", refused[64] = "";
	size_t na = 0, nr = 0;

	coord_change_describe(cm->change, desc, sizeof(desc));
	for (size_t i = 0; i < n; i++) {
		bool ok = co[ids[i]].state.seq == cm->seq && before[i] != cm->seq;
		char *list = ok ? applied : refused;

		snprintf(list + strlen(list), 64 - strlen(list), "%s%s", (ok ? na : nr) ? "," : "",
			 nname(ids[i]));
		ok ? na++ : nr++;
	}
	if (nr == 0) {
		say("commit %llu by %s: %s", (unsigned long long)cm->seq, nname(sender), desc);
	} else if (na == 0) {
		say("not applied: %s's commit %llu: %s: %s", nname(sender),
		    (unsigned long long)cm->seq, desc, why);
	} else {
		say("DIVERGED: %s's commit %llu (%s) applied on %s, not on %s", nname(sender),
		    (unsigned long long)cm->seq, desc, applied, refused);
		failures++;
	}
}

static void audit_fenced(const Hactl__CpgCommit *cm)
{
	const Hactl__NodeFenceChange *nf = cm->change->node_fence;
	uint32_t id;
	struct host *h;

	if (cm->change->kind_case != HACTL__CHANGE__KIND_NODE_FENCE || !nf->fenced) {
		return;
	}
	for (id = 1; id <= n_nodes && strcmp(hosts[id].name, nf->node) != 0; id++) {
	}
	if (id > n_nodes) {
		return;
	}
	h = &hosts[id];
	if (h->up && !h->self_fenced && h->n_runs > 0) {
		say("AUDIT: %s committed fenced (%s) while its host is up and still runs guests",
		    h->name, nf->method ? nf->method : "");
		failures++;
	}
}

static void deliver(const struct bus_msg *m)
{
	uint32_t ids[MAXN];
	uint64_t before[MAXN], refused[MAXN];
	size_t n = receivers(m->sender, ids);
	char why[256] = "";
	enum ha_msg_type type;
	ProtobufCMessage *msg = NULL;

	if (ha_env_decode(m->data, m->len, HA_CHAN_CPG, NULL, &type, &msg, NULL) < 0) {
		say("bad message from %s", nname(m->sender));
		return;
	}
	for (size_t i = 0; i < n; i++) {
		before[i] = co[ids[i]].state.seq;
		refused[i] = co[ids[i]].rx_commit_refused;
	}
	if (type == HA_MSG_CPG_COMMIT && n > 0) {
		/* why the first receiver would refuse it, asked before it does */
		const struct coord *r = &co[ids[0]];
		const Hactl__CpgCommit *cm = (Hactl__CpgCommit *)msg;

		if (coord_commit_check(r->state.seq, r->epoch, r->members, r->n_members, m->sender,
				       cm, why, sizeof(why)) == 0 &&
		    coord_change_check(&r->state, cm->change, why, sizeof(why)) == 0) {
			snprintf(why, sizeof(why), "?");
		}
		audit_fenced((Hactl__CpgCommit *)msg);
	}
	for (size_t i = 0; i < n; i++) {
		coord_replica_deliver(&co[ids[i]], m->sender, m->data, m->len);
	}
	if (n > 0) {
		switch (type) {
		case HA_MSG_CPG_COMMIT: {
			/* a member still syncing holds it: judged by the others */
			uint32_t live[MAXN];
			uint64_t b[MAXN];
			size_t k = 0;

			for (size_t i = 0; i < n; i++) {
				if (!co[ids[i]].syncing) {
					live[k] = ids[i];
					b[k++] = before[i];
				}
			}
			if (k > 0) {
				print_commit(m->sender, (Hactl__CpgCommit *)msg, live, k, b, why);
			} else {
				char desc[1024];

				coord_change_describe(((Hactl__CpgCommit *)msg)->change, desc,
						      sizeof(desc));
				say("held (state sync under way): %s's commit %llu: %s", nname(m->sender),
				    (unsigned long long)((Hactl__CpgCommit *)msg)->seq, desc);
			}
			break;
		}
		case HA_MSG_CPG_REJECT: {
			const Hactl__CpgReject *rj = (Hactl__CpgReject *)msg;

			say("rejected by %s: %s", nname(m->sender), rj->reason ? rj->reason : "");
			break;
		}
		case HA_MSG_CPG_SYNC_CHUNK: {
			const Hactl__CpgSyncChunk *ch = (Hactl__CpgSyncChunk *)msg;

			if (ch->index == 0) {
				say("state of %s sent in %u pieces (%llu bytes)", nname(m->sender),
				    ch->count, (unsigned long long)ch->total_len);
			}
			break;
		}
		case HA_MSG_CPG_FENCE_STATUS: {
			const Hactl__CpgFenceStatus *fs = (Hactl__CpgFenceStatus *)msg;

			say("fence %s: %s (attempts %u)%s%s", nname(fs->node), fs->state, fs->attempts,
			    fs->error && fs->error[0] ? ": " : "", fs->error ? fs->error : "");
			break;
		}
		default:
			break;
		}
	}
	if (type != HA_MSG_CPG_COMMIT) {
		/* a state sync that completed: a newer state adopted, or commits
		 * held during it applied or refused now */
		char who[64] = "", rwho[64] = "";
		uint64_t from = 0, to = 0;

		for (size_t i = 0; i < n; i++) {
			uint64_t seq = co[ids[i]].state.seq;

			if (seq != before[i] && (who[0] == 0 || (before[i] == from && seq == to))) {
				from = before[i];
				to = seq;
				snprintf(who + strlen(who), sizeof(who) - strlen(who), "%s%s",
					 who[0] ? "," : "", nname(ids[i]));
			} else if (seq != before[i]) {
				say("state of %s: seq %llu -> %llu (state sync)", nname(ids[i]),
				    (unsigned long long)before[i], (unsigned long long)seq);
			}
			if (co[ids[i]].rx_commit_refused != refused[i]) {
				snprintf(rwho + strlen(rwho), sizeof(rwho) - strlen(rwho), "%s%s",
					 rwho[0] ? "," : "", nname(ids[i]));
			}
		}
		if (who[0]) {
			say("state of %s: seq %llu -> %llu (state sync)", who, (unsigned long long)from,
			    (unsigned long long)to);
		}
		if (rwho[0]) {
			say("held commits refused by %s after the state sync (their epoch ended)", rwho);
		}
	}
	ha_env_msg_free(msg);
	drain_events();
	agents_update();
}

static bool bus_held; /* `hold`: messages stay queued until `release` */

static void bus_run(void)
{
	while (q_head != q_tail && !bus_held) {
		struct bus_msg m = queue[q_head++ % QMAX];

		deliver(&m);
		free(m.data);
	}
}

/* ---- events, views, audits ---- */

static void drain_events(void)
{
	char *texts[MAXN * COORD_EVENTS_MAX];
	char who[MAXN * COORD_EVENTS_MAX][64];
	size_t n = 0;

	for (uint32_t id = 1; id <= n_nodes; id++) {
		struct coord *c = &co[id];

		if (!hosts[id].coord) {
			continue;
		}
		for (size_t i = 0; i < c->n_events; i++) {
			char *e = c->events[(c->events_head + i) % COORD_EVENTS_MAX];
			char *t = strlen(e) > 24 ? e + 24 : e; /* past the time stamp */
			size_t k;

			if (strncmp(t, "seq ", 4) == 0) {
				continue; /* the commit line says it */
			}
			for (k = 0; k < n && strcmp(texts[k], t) != 0; k++) {
			}
			if (k == n) {
				texts[n] = t;
				who[n][0] = 0;
				n++;
			}
			snprintf(who[k] + strlen(who[k]), sizeof(who[k]) - strlen(who[k]), "%s%s",
				 who[k][0] ? "," : "", hosts[id].name);
		}
	}
	for (size_t k = 0; k < n; k++) {
		say("event %s: %s", who[k], texts[k]);
	}
	for (uint32_t id = 1; id <= n_nodes; id++) {
		if (hosts[id].coord) {
			coord_events_free(&co[id]);
			co[id].events_head = 0;
		}
	}
}

/* One line whenever a coordinator's view of the leader changes. */
static void views_update(void)
{
	char v[1024] = "";
	size_t used = 0;

	for (uint32_t id = 1; id <= n_nodes; id++) {
		const struct coord *c = &co[id];

		if (!hosts[id].coord) {
			continue;
		}
		used += (size_t)snprintf(v + used, sizeof(v) - used, "%s%s->%s%s", used ? " " : "",
					 hosts[id].name, nname(c->leader),
					 coord_is_blocked(c) ? "(blocked)" :
					 !c->vq_quorate ? "(no quorum)" : "");
	}
	if (strcmp(v, last_views) != 0) {
		snprintf(last_views, sizeof(last_views), "%s", v);
		say("leaders: %s", v[0] ? v : "no coordinator");
	}
}

static bool host_runs(const struct host *h, const char *g)
{
	for (size_t i = 0; i < h->n_runs; i++) {
		if (strcmp(h->runs[i], g) == 0) {
			return true;
		}
	}
	return false;
}

static void rep_set(struct host *h, const char *g, const char *state)
{
	size_t i;

	for (i = 0; i < h->n_rep && strcmp(h->rep_guest[i], g) != 0; i++) {
	}
	if (i == MAXG) {
		return;
	}
	if (i == h->n_rep) {
		h->n_rep++;
	}
	snprintf(h->rep_guest[i], sizeof(h->rep_guest[i]), "%s", g);
	snprintf(h->rep_state[i], sizeof(h->rep_state[i]), "%s", state);
}

static bool rep_up(const struct host *h, const char *g)
{
	for (size_t i = 0; i < h->n_rep; i++) {
		if (strcmp(h->rep_guest[i], g) == 0) {
			return strcmp(h->rep_state[i], "running") == 0 ||
			       strcmp(h->rep_state[i], "paused") == 0 ||
			       strcmp(h->rep_state[i], "stopping") == 0 ||
			       strcmp(h->rep_state[i], "starting") == 0;
		}
	}
	return false;
}

static void runs_add(struct host *h, const char *g)
{
	if (!host_runs(h, g) && h->n_runs < MAXG) {
		snprintf(h->runs[h->n_runs++], sizeof(h->runs[0]), "%s", g);
	}
}

/*
 * The agents as the audits see them (docs/failover.md, "Agent"): a host
 * whose coordinator is quorate (and current) runs the guests its replica
 * gives it, and those it last said run there until it says they stopped
 * (a graceful stop takes up to stop_timeout; a migration's source copy is
 * discarded at the commit). One whose coordinator is not (stopped, cut
 * off, waiting) goes on running what it had until its agent's self-fence
 * check finds no quorate answer for half of self_fence_timeout_ms (the
 * check runs every 500 ms: at the latest half + 500 ms after the last
 * one), then kills them all and runs nothing. A host that is off runs
 * nothing.
 */
static void agents_update(void)
{
	for (uint32_t id = 1; id <= n_nodes; id++) {
		struct host *h = &hosts[id];
		struct coord *c = &co[id];

		if (!h->up) {
			h->n_runs = 0;
			h->n_rep = 0;
			h->self_fenced = false;
			h->last_quorate_ms = 0;
			continue;
		}
		if (h->coord && coord_is_quorate(c) && !c->syncing) {
			h->last_quorate_ms = now_ms;
			h->self_fenced = false;
			h->n_runs = 0;
			for (size_t i = 0; i < c->state.n_guests; i++) {
				const Hactl__GuestRecord *g = c->state.guests[i];
				const Hactl__Migration *m = g->migration;
				bool handed_over = m && m->state && strcmp(m->state, "committed") == 0 &&
						   m->source == id && g->owner != id;

				if (g->owner == id && g->desired && strcmp(g->desired, "running") == 0) {
					runs_add(h, g->name);
				} else if (rep_up(h, g->name) && !handed_over) {
					runs_add(h, g->name);
				}
			}
		} else if (!h->self_fenced && h->last_quorate_ms &&
			   now_ms >= h->last_quorate_ms + self_fence_ms / 2 + AGENT_CHECK_MS) {
			h->self_fenced = true;
			if (h->n_runs) {
				say("agent %s self-fences: no quorum for %u ms, %zu guests killed",
				    h->name, self_fence_ms / 2 + AGENT_CHECK_MS, h->n_runs);
			}
			h->n_runs = 0;
			h->n_rep = 0;
		}
	}
	/* at most one copy of each guest */
	for (uint32_t id = 1; id <= n_nodes; id++) {
		for (size_t i = 0; i < hosts[id].n_runs; i++) {
			const char *g = hosts[id].runs[i];
			char where[256] = "";
			int copies = 0;
			size_t k;

			for (uint32_t o = 1; o <= n_nodes; o++) {
				if (host_runs(&hosts[o], g)) {
					snprintf(where + strlen(where), sizeof(where) - strlen(where), "%s%s",
						 copies++ ? "," : "", hosts[o].name);
				}
			}
			for (k = 0; k < n_audit && strcmp(audit_names[k], g) != 0; k++) {
			}
			if (k == n_audit && n_audit < MAXG) {
				snprintf(audit_names[n_audit++], sizeof(audit_names[0]), "%s", g);
				audit_seen[k][0] = 0;
			}
			if (copies > 1 && k < MAXG && strcmp(audit_seen[k], where) != 0) {
				snprintf(audit_seen[k], sizeof(audit_seen[k]), "%s", where);
				say("AUDIT: double run: %s may run on %s", g, where);
				failures++;
			} else if (copies <= 1 && k < MAXG) {
				audit_seen[k][0] = 0;
			}
		}
	}
}

/* ---- hosts, coordinators, membership ---- */

static int fence_hook(struct coord *c, uint32_t node, const char *name, uint32_t attempt)
{
	size_t i;

	for (i = 0; i < n_jobs && jobs[i].open; i++) {
	}
	if (i == MAXJOBS) {
		return -ENOMEM;
	}
	if (i == n_jobs) {
		n_jobs++;
	}
	jobs[i].node = node;
	jobs[i].by = c->local_id;
	jobs[i].attempt = attempt;
	jobs[i].open = true;
	say("fence agent: %s fences %s (attempt %u)", nname(c->local_id), name, attempt);
	return 0;
}

static void sim_coord_start(uint32_t id)
{
	struct coord *c = &co[id];

	memset(c, 0, sizeof(*c));
	ha_config_defaults(&c->cfg);
	c->cfg.self_fence_timeout_ms = self_fence_ms;
	snprintf(c->cfg.fence_config, sizeof(c->cfg.fence_config), "%s",
		 fence_conf[0] ? fence_conf : "/nonexistent/fence.conf");
	snprintf(c->cfg.policy_path, sizeof(c->cfg.policy_path), "%s", policy_dir);
	snprintf(c->state_path, sizeof(c->state_path), "%s/state-%u", tmpdir, id);
	coord_init(c);
	c->loop = qb_loop_create();
	if (c->loop == NULL || coord_balance_start(c) < 0) {
		die("cannot start a coordinator");
	}
	c->local_id = id;
	c->cs_connected = true;
	c->send_hook = bus_send;
	c->fence_job_hook = fence_hook;
	c->test_now_ms = now_ms;
	for (uint32_t k = 1; k <= n_nodes; k++) {
		coord_state_node_add(&c->state, k, hosts[k].name);
	}
	if (hosts[id].ever) {
		/* a restarted coordinator reads the state file it wrote */
		coord_state_clear(&c->state);
		if (coord_state_load(c) < 0) {
			for (uint32_t k = 1; k <= n_nodes; k++) {
				coord_state_node_add(&c->state, k, hosts[k].name);
			}
		}
	}
	hosts[id].ever = true;
	hosts[id].coord = true;
}

static void coord_fini(uint32_t id)
{
	struct coord *c = &co[id];

	if (!hosts[id].coord) {
		return;
	}
	coord_balance_stop(c);
	coord_pending_free_all(c);
	coord_replica_reset(c);
	coord_state_clear(&c->state);
	coord_events_free(c);
	if (c->agent_facts) {
		protobuf_c_message_free_unpacked(&c->agent_facts->base, NULL);
	}
	qb_loop_destroy(c->loop);
	memset(c, 0, sizeof(*c));
	hosts[id].coord = false;
	/* what it had queued and not yet sent is lost with it */
	{
		size_t keep = q_head;

		for (size_t i = q_head; i != q_tail; i++) {
			struct bus_msg m = queue[i % QMAX];

			if (m.sender == id) {
				free(m.data);
			} else {
				queue[keep++ % QMAX] = m;
			}
		}
		q_tail = keep;
	}
}

static bool in_list(const uint32_t *ids, size_t n, uint32_t id)
{
	for (size_t i = 0; i < n; i++) {
		if (ids[i] == id) {
			return true;
		}
	}
	return false;
}

/*
 * Corosync's view after a change of hosts, coordinators or network: per
 * partition, votequorum (one vote per live host; quorate with more than
 * half of all nodes) then the CPG configuration change (the coordinators
 * running there), each coordinator told what left and joined its own
 * previous view. Then the bus runs (state syncs).
 */
static void membership(void)
{
	bus_run();
	for (uint32_t id = 1; id <= n_nodes; id++) {
		struct coord *c = &co[id];
		uint32_t q[MAXN], g[MAXN], left[MAXN], joined[MAXN];
		size_t nq = 0, ng = 0, nl = 0, nj = 0;
		bool fresh;

		if (!hosts[id].up || !hosts[id].coord || hosts[id].notice_ms > now_ms) {
			continue; /* it has not noticed yet: its old view stands */
		}
		hosts[id].notice_ms = 0;
		for (uint32_t k = 1; k <= n_nodes; k++) {
			if (hosts[k].up && hosts[k].comp == hosts[id].comp) {
				q[nq++] = k;
				if (hosts[k].coord) {
					g[ng++] = k;
				}
			}
		}
		fresh = !c->joined;
		for (size_t i = 0; i < c->n_members; i++) {
			if (!in_list(g, ng, c->members[i])) {
				left[nl++] = c->members[i];
			}
		}
		for (size_t i = 0; i < ng; i++) {
			if (fresh ? g[i] == id || !co[g[i]].joined : !coord_is_member(c, g[i])) {
				joined[nj++] = g[i];
			}
		}
		if (c->vq_quorate != (nq * 2 > n_nodes) || c->n_qmembers != nq ||
		    memcmp(c->qmembers, q, nq * sizeof(q[0])) != 0) {
			coord_quorum_set(c, nq * 2 > n_nodes, q, nq);
		}
		if (nl || nj) {
			coord_replica_confchg(c, g, ng, left, nl, joined, nj);
		}
	}
	bus_run();
	drain_events();
	agents_update();
	views_update();
}

/* ---- script helpers ---- */

#define MAXW 64

static char *words[MAXW];
static size_t n_words;

static void split(char *line)
{
	char *save = NULL;

	n_words = 0;
	for (char *w = strtok_r(line, " \t", &save); w && n_words < MAXW;
	     w = strtok_r(NULL, " \t", &save)) {
		words[n_words++] = w;
	}
}

static void need(size_t n, const char *usage)
{
	if (n_words < n) {
		die("usage: %s", usage);
	}
}

/* key=value among words[from..]: the value, or NULL. */
static const char *opt(size_t from, const char *key)
{
	size_t kl = strlen(key);

	for (size_t i = from; i < n_words; i++) {
		if (strncmp(words[i], key, kl) == 0 && words[i][kl] == '=') {
			return words[i] + kl + 1;
		}
	}
	return NULL;
}

static bool flag(size_t from, const char *w)
{
	for (size_t i = from; i < n_words; i++) {
		if (strcmp(words[i], w) == 0) {
			return true;
		}
	}
	return false;
}

static uint64_t num(const char *s, const char *what)
{
	char *end;
	unsigned long long v;

	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno || end == s || *end) {
		die("%s: '%s' is not a number", what, s);
	}
	return v;
}

/* The coordinator a client's command goes through: via=NODE, else the
 * leader of the first partition that has one, else the lowest running. */
static uint32_t via(size_t from)
{
	const char *v = opt(from, "via");
	uint32_t id;

	if (v) {
		id = node_id(v);
		if (!hosts[id].up || !hosts[id].coord) {
			die("via %s: its coordinator is not running", v);
		}
		return id;
	}
	for (id = 1; id <= n_nodes; id++) {
		if (hosts[id].up && hosts[id].coord && co[id].leader == id) {
			return id;
		}
	}
	for (id = 1; id <= n_nodes; id++) {
		if (hosts[id].up && hosts[id].coord) {
			return id;
		}
	}
	die("no coordinator is running");
}

static void request(uint32_t through, Hactl__Change *ch)
{
	int rc;

	if (!coord_is_quorate(&co[through])) {
		say("refused by %s: this partition is not quorate%s", nname(through),
		    coord_is_blocked(&co[through]) ? " (waiting for current state)" : "");
		return;
	}
	rc = coord_request_submit(&co[through], NULL, ch);
	if (rc < 0) {
		say("request through %s failed: %s", nname(through), strerror(-rc));
	}
	bus_run();
}

static const char *guest_def(size_t from, const char *name)
{
	static char text[HA_GUESTDEF_MAX_TEXT];
	const char *v, *mem = opt(from, "memory"), *restart = opt(from, "restart");
	size_t used;

	used = (size_t)snprintf(text, sizeof(text),
				"[guest]\nname = %s\ntype = container\nmemory = %s\n"
				"command = /bin/true\n[storage]\ntemplate = container\n[ha]\n"
				"restart = %s\n", name, mem ? mem : "64M", restart ? restart : "cold");
	if ((v = opt(from, "priority"))) {
		used += (size_t)snprintf(text + used, sizeof(text) - used, "priority = %s\n", v);
	}
	if ((v = opt(from, "group"))) {
		used += (size_t)snprintf(text + used, sizeof(text) - used, "group = %s\n", v);
	}
	if ((v = opt(from, "max_restart"))) {
		used += (size_t)snprintf(text + used, sizeof(text) - used, "max_restart = %s\n", v);
	}
	if ((v = opt(from, "max_relocate"))) {
		used += (size_t)snprintf(text + used, sizeof(text) - used, "max_relocate = %s\n", v);
	}
	if ((v = opt(from, "pad"))) {
		/* comment lines of that many bytes in all: large states travel
		 * in pieces */
		uint64_t pad = num(v, "pad");

		if (pad + used + 200 > sizeof(text)) {
			die("pad: at most %zu bytes", sizeof(text) - used - 200);
		}
		while (pad > 0) {
			size_t n = pad > 180 ? 180 : (size_t)pad;

			text[used++] = ';';
			memset(text + used, 'x', n);
			used += n;
			text[used++] = '\n';
			pad -= n;
		}
		text[used] = 0;
	}
	return text;
}

static void agent_announce(uint32_t id)
{
	struct host *h = &hosts[id];
	struct coord *c = &co[id];
	Hactl__HostFacts f = HACTL__HOST_FACTS__INIT;

	if (c->agent_facts) {
		protobuf_c_message_free_unpacked(&c->agent_facts->base, NULL);
		c->agent_facts = NULL;
	}
	c->test_agent = h->agent;
	if (h->agent) {
		f.has_cpus = true;
		f.cpus = h->cpus;
		f.has_mem_total_kib = true;
		f.mem_total_kib = h->mem_mib * 1024;
		f.has_wd_armed = true;
		f.wd_armed = h->wd_ms > 0;
		f.has_wd_timeout_ms = h->wd_ms > 0;
		f.wd_timeout_ms = h->wd_ms;
		f.qemu_version = h->qemu ? "8.2.0" : "";
		f.has_kvm_usable = true;
		f.kvm_usable = h->qemu;
		c->agent_facts = coord_pb_dup(&f.base);
	}
	coord_announce_local(c);
	bus_run();
}

static void guest_status(uint32_t id, const char *guest, const char *state,
			 Hactl__MigrationReport *mr)
{
	Hactl__CpgGuestStatus cgs = HACTL__CPG_GUEST_STATUS__INIT;
	Hactl__GuestStatus gs = HACTL__GUEST_STATUS__INIT;
	Hactl__GuestStatus *list[1] = { &gs };
	const Hactl__GuestRecord *g = coord_state_guest(&co[id].state, guest);
	const char *v;

	gs.name = (char *)guest;
	gs.state = (char *)state;
	gs.error = (char *)((v = opt(3, "error")) ? v : "");
	gs.has_generation = true;
	gs.generation = (v = opt(3, "gen")) ? num(v, "gen") : g ? g->generation : 0;
	if ((v = opt(3, "restarts"))) {
		gs.has_restarts = true;
		gs.restarts = (uint32_t)num(v, "restarts");
	}
	if (flag(3, "gave-up")) {
		gs.has_gave_up = true;
		gs.gave_up = true;
	}
	if ((v = opt(3, "snap"))) {
		gs.has_snap_generation = true;
		gs.snap_generation = num(v, "snap");
		gs.has_snap_time_ms = true;
		gs.snap_time_ms = now_ms;
	}
	gs.migration = mr;
	if (mr == NULL || strcmp(mr->role, "source") == 0 ||
	    strcmp(mr->phase, "finished") == 0) {
		/* an incoming copy is paused until it is resumed: not running */
		rep_set(&hosts[id], guest, state);
	}
	cgs.node = id;
	cgs.guests = list;
	cgs.n_guests = 1;
	if (coord_cpg_send(&co[id], HA_MSG_CPG_GUEST_STATUS, &cgs.base) < 0) {
		say("report of %s lost", hosts[id].name);
	}
	bus_run();
}

static uint32_t running_host(const char *name)
{
	uint32_t id = node_id(name);

	if (!hosts[id].up || !hosts[id].coord) {
		die("%s: its coordinator is not running", name);
	}
	return id;
}

/* ---- time ---- */

static void set_clock(uint64_t ms)
{
	now_ms = ms;
	for (uint32_t id = 1; id <= n_nodes; id++) {
		if (hosts[id].coord) {
			co[id].test_now_ms = ms;
		}
	}
}

static void tick(uint64_t ms)
{
	uint64_t end = now_ms + ms;

	while (now_ms < end) {
		set_clock(now_ms + TICK_MS);
		for (uint32_t id = 1; id <= n_nodes; id++) {
			if (!hosts[id].up || !hosts[id].coord) {
				continue;
			}
			coord_fence_tick(&co[id]);
			bus_run();
			if ((now_ms - T0) % 1000 == 0 && hosts[id].coord) {
				char before[sizeof(co[id].bal.last_round)];

				snprintf(before, sizeof(before), "%s", co[id].bal.last_round);
				coord_balance_tick(&co[id]);
				if (strcmp(before, co[id].bal.last_round) != 0) {
					say("balance round of %s: %s", hosts[id].name, co[id].bal.last_round);
				}
				coord_replica_sync_check(&co[id], now_ms);
				bus_run();
			}
		}
		for (uint32_t id = 1; id <= n_nodes; id++) {
			if (hosts[id].notice_ms && hosts[id].notice_ms <= now_ms) {
				membership(); /* late corosyncs notice now */
				break;
			}
		}
		drain_events();
		agents_update();
		views_update();
	}
}

/* ---- state ---- */

static const char *gstr(const char *s)
{
	return s && s[0] ? s : "-";
}

static void show(uint32_t id)
{
	struct coord *c = &co[id];

	say("state of %s: seq %llu, leader %s%s", hosts[id].name,
	    (unsigned long long)c->state.seq, nname(c->leader),
	    coord_is_quorate(c) ? "" : coord_is_blocked(c) ? ", blocked" : ", not quorate");
	for (size_t i = 0; i < c->state.n_nodes; i++) {
		const struct coord_node *n = &c->state.nodes[i];

		say("  node %s:%s%s%s%s%s%s", n->name, coord_is_member(c, n->id) ? " member" : " away",
		    n->fenced ? " fenced" : "", n->maintenance ? " maintenance" : "",
		    n->agent_connected ? " agent" : "", n->fence_state[0] &&
		    strcmp(n->fence_state, "idle") != 0 ? " fence=" : "",
		    n->fence_state[0] && strcmp(n->fence_state, "idle") != 0 ? n->fence_state : "");
	}
	for (size_t i = 0; i < c->state.n_guests; i++) {
		const Hactl__GuestRecord *g = c->state.guests[i];
		const Hactl__Migration *m = g->migration;
		char mig[256] = "";

		if (m) {
			snprintf(mig, sizeof(mig), " migration %llu %s->%s %s%s%s",
				 (unsigned long long)m->id, nname(m->source), nname(m->destination),
				 gstr(m->state), m->reason && m->reason[0] ? ": " : "",
				 m->reason ? m->reason : "");
		}
		say("  guest %s: owner %s, desired %s%s, state %s, gen %llu%s%s%s%s", g->name,
		    nname(g->owner), gstr(g->desired), coord_guest_paused(g) ? " (paused)" : "",
		    gstr(g->state), (unsigned long long)g->generation,
		    g->error && g->error[0] ? ", error: " : "", g->error ? g->error : "",
		    g->home ? ", home " : "", g->home ? nname(g->home) : "");
		if (mig[0]) {
			say("   %s", mig);
		}
	}
	for (size_t i = 0; i < c->state.n_jobs; i++) {
		const Hactl__Job *j = c->state.jobs[i];

		say("  job %llu %s%s%s: %s, %u at a time", (unsigned long long)j->id, j->kind,
		    j->node && j->node[0] ? " " : "", j->node ? j->node : "", j->state,
		    j->parallel);
		for (size_t k = 0; k < j->n_moves; k++) {
			const Hactl__JobMove *m = j->moves[k];

			say("    wave %u %s %s->%s %s%s%s", m->wave, m->guest, gstr(m->from),
			    gstr(m->to), m->state, m->reason && m->reason[0] ? ": " : "",
			    m->reason ? m->reason : "");
		}
	}
}

/* The replicas of each CPG group are equal (the same decisions). */
static void check_replicas(void)
{
	for (uint32_t a = 1; a <= n_nodes; a++) {
		for (uint32_t b = a + 1; b <= n_nodes; b++) {
			const struct coord_state *x = &co[a].state, *y = &co[b].state;
			bool same;

			if (!hosts[a].coord || !hosts[b].coord || !coord_is_member(&co[a], b) ||
			    !coord_is_member(&co[b], a) || co[a].syncing || co[b].syncing) {
				continue;
			}
			same = x->seq == y->seq && x->n_guests == y->n_guests;
			for (size_t i = 0; same && i < x->n_guests; i++) {
				same = strcmp(x->guests[i]->name, y->guests[i]->name) == 0 &&
				       x->guests[i]->owner == y->guests[i]->owner &&
				       x->guests[i]->generation == y->guests[i]->generation;
			}
			for (size_t i = 0; same && i < x->n_nodes; i++) {
				same = x->nodes[i].fenced == y->nodes[i].fenced &&
				       x->nodes[i].maintenance == y->nodes[i].maintenance;
			}
			same = same && x->n_jobs == y->n_jobs;
			for (size_t i = 0; same && i < x->n_jobs; i++) {
				same = x->jobs[i]->id == y->jobs[i]->id &&
				       strcmp(x->jobs[i]->state, y->jobs[i]->state) == 0 &&
				       x->jobs[i]->n_moves == y->jobs[i]->n_moves;
				for (size_t k = 0; same && k < x->jobs[i]->n_moves; k++) {
					same = strcmp(x->jobs[i]->moves[k]->state,
						      y->jobs[i]->moves[k]->state) == 0;
				}
			}
			if (!same) {
				say("DIVERGED: the replicas of %s and %s differ (seq %llu, %llu)",
				    hosts[a].name, hosts[b].name, (unsigned long long)x->seq,
				    (unsigned long long)y->seq);
				failures++;
			}
		}
	}
}

/* ---- commands ---- */

static void cmd_nodes(void)
{
	need(2, "nodes NAME...");
	if (n_nodes) {
		die("nodes: given twice");
	}
	if (n_words - 1 > MAXN) {
		die("nodes: at most %d", MAXN);
	}
	for (size_t i = 1; i < n_words; i++) {
		if (!ha_name_valid(words[i]) || strlen(words[i]) > 15) {
			die("nodes: bad name '%s'", words[i]);
		}
		for (uint32_t k = 1; k <= n_nodes; k++) {
			if (strcmp(hosts[k].name, words[i]) == 0) {
				die("nodes: '%s' given twice", words[i]);
			}
		}
		n_nodes++;
		snprintf(hosts[n_nodes].name, sizeof(hosts[0].name), "%s", words[i]);
		hosts[n_nodes].cpus = 4;
		hosts[n_nodes].mem_mib = 8192;
	}
}

static void cmd_fencing(void)
{
	FILE *f;
	bool all;

	need(2, "fencing watchdog | fencing agent [NODE...]");
	if (strcmp(words[1], "watchdog") == 0) {
		fence_conf[0] = 0;
	} else if (strcmp(words[1], "agent") == 0) {
		snprintf(fence_conf, sizeof(fence_conf), "%s/fence.conf", tmpdir);
		f = fopen(fence_conf, "w");
		if (f == NULL) {
			die("cannot write %s", fence_conf);
		}
		all = n_words == 2;
		fprintf(f, "[defaults]\nmethod = %s\n\n[device sim]\nagent = /bin/false\n\n",
			all ? "agent" : "watchdog");
		for (uint32_t id = 1; id <= n_nodes; id++) {
			if (all || flag(2, hosts[id].name)) {
				fprintf(f, "[node %s]\nmethod = agent\nlevel1 = sim\n\n", hosts[id].name);
			}
		}
		fclose(f);
	} else {
		die("fencing: '%s' is not watchdog or agent", words[1]);
	}
	for (uint32_t id = 1; id <= n_nodes; id++) {
		snprintf(co[id].cfg.fence_config, sizeof(co[id].cfg.fence_config), "%s",
			 fence_conf[0] ? fence_conf : "/nonexistent/fence.conf");
	}
}

static void cmd_policy(FILE *in)
{
	char path[PATH_MAX + 32], buf[1024];
	FILE *f;

	mkdir(policy_dir, 0755);
	snprintf(path, sizeof(path), "%s/50-sim.conf", policy_dir);
	f = fopen(path, "w");
	if (f == NULL) {
		die("cannot write %s", path);
	}
	while (fgets(buf, sizeof(buf), in)) {
		line_no++;
		if (strcmp(buf, "end\n") == 0 || strcmp(buf, "end") == 0) {
			struct ha_bal_policy *p = NULL;
			char err[512];

			fclose(f);
			if (ha_bal_policy_load(policy_dir, &p, err, sizeof(err)) < 0) {
				die("policy refused: %s", err);
			}
			ha_bal_policy_free(p);
			for (uint32_t id = 1; id <= n_nodes; id++) {
				if (hosts[id].coord) {
					coord_balance_reload(&co[id], true);
					if (co[id].bal.policy_err[0]) {
						die("policy refused: %s", co[id].bal.policy_err);
					}
				}
			}
			drain_events();
			return;
		}
		fputs(buf, f);
	}
	die("policy: no 'end'");
}

static void cmd_agent(void)
{
	uint32_t id;
	const char *v;

	need(3, "agent NODE up|down|report|migration ...");
	id = running_host(words[1]);
	if (strcmp(words[2], "up") == 0) {
		struct host *h = &hosts[id];

		h->agent = true;
		h->wd_ms = (v = opt(3, "watchdog")) ? (uint32_t)num(v, "watchdog") : 0;
		h->mem_mib = (v = opt(3, "mem")) ? num(v, "mem") : 8192;
		h->cpus = (v = opt(3, "cpus")) ? (uint32_t)num(v, "cpus") : 4;
		h->qemu = flag(3, "qemu");
		agent_announce(id);
	} else if (strcmp(words[2], "down") == 0) {
		hosts[id].agent = false;
		agent_announce(id);
	} else if (strcmp(words[2], "report") == 0) {
		need(5, "agent NODE report GUEST STATE [gen=N] [restarts=N] [gave-up] [error=TEXT] [snap=N]");
		guest_status(id, words[3], words[4], NULL);
	} else if (strcmp(words[2], "migration") == 0) {
		Hactl__MigrationReport mr = HACTL__MIGRATION_REPORT__INIT;
		const Hactl__GuestRecord *g;
		bool src;

		need(6, "agent NODE migration GUEST source|destination PHASE [port=N] [error=TEXT] [state=S]");
		g = coord_state_guest(&co[id].state, words[3]);
		src = strcmp(words[4], "source") == 0;
		if (!src && strcmp(words[4], "destination") != 0) {
			die("migration: role '%s' is not source or destination", words[4]);
		}
		mr.id = (v = opt(6, "id")) ? num(v, "id") : g && g->migration ? g->migration->id : 0;
		mr.role = words[4];
		mr.phase = words[5];
		mr.error = (char *)((v = opt(6, "error")) ? v : "");
		if ((v = opt(6, "port"))) {
			mr.has_port = true;
			mr.port = (uint32_t)num(v, "port");
		}
		mr.mode = "precopy";
		guest_status(id, words[3], (v = opt(6, "state")) ? v : src ? "running" : "paused", &mr);
	} else {
		die("agent: '%s' is not up, down, report or migration", words[2]);
	}
}

static void cmd_guest(void)
{
	Hactl__Change ch = HACTL__CHANGE__INIT;
	uint32_t through;

	need(3, "guest define|start|stop|destroy NAME ...");
	through = via(3);
	if (strcmp(words[1], "define") == 0) {
		Hactl__GuestDefineChange gd = HACTL__GUEST_DEFINE_CHANGE__INIT;
		const char *def = guest_def(3, words[2]);

		gd.definition.data = (uint8_t *)def;
		gd.definition.len = strlen(def);
		ch.kind_case = HACTL__CHANGE__KIND_GUEST_DEFINE;
		ch.guest_define = &gd;
		request(through, &ch);
	} else if (strcmp(words[1], "start") == 0) {
		Hactl__GuestStartChange gs = HACTL__GUEST_START_CHANGE__INIT;
		const char *v;

		gs.name = words[2];
		gs.node = (char *)((v = opt(3, "on")) ? v : "");
		gs.mode = (char *)opt(3, "mode");
		ch.kind_case = HACTL__CHANGE__KIND_GUEST_START;
		ch.guest_start = &gs;
		request(through, &ch);
	} else if (strcmp(words[1], "stop") == 0) {
		Hactl__GuestStopChange gs = HACTL__GUEST_STOP_CHANGE__INIT;

		gs.name = words[2];
		ch.kind_case = HACTL__CHANGE__KIND_GUEST_STOP;
		ch.guest_stop = &gs;
		request(through, &ch);
	} else if (strcmp(words[1], "pause") == 0 || strcmp(words[1], "resume") == 0) {
		Hactl__GuestPauseChange gp = HACTL__GUEST_PAUSE_CHANGE__INIT;

		gp.name = words[2];
		gp.pause = strcmp(words[1], "pause") == 0;
		ch.kind_case = HACTL__CHANGE__KIND_GUEST_PAUSE;
		ch.guest_pause = &gp;
		request(through, &ch);
	} else if (strcmp(words[1], "destroy") == 0) {
		Hactl__GuestUndefineChange gu = HACTL__GUEST_UNDEFINE_CHANGE__INIT;

		gu.name = words[2];
		ch.kind_case = HACTL__CHANGE__KIND_GUEST_UNDEFINE;
		ch.guest_undefine = &gu;
		request(through, &ch);
	} else {
		die("guest: '%s' is not define, start, stop, pause, resume or destroy", words[1]);
	}
}

static void migrate(uint32_t through, const char *guest, const char *node, bool evac)
{
	Hactl__Change ch = HACTL__CHANGE__INIT;
	Hactl__MigrateStartChange ms = HACTL__MIGRATE_START_CHANGE__INIT;
	Hactl__MigrationOptions mo = HACTL__MIGRATION_OPTIONS__INIT;

	mo.mode = "auto";
	ms.guest = (char *)guest;
	ms.node = (char *)node;
	ms.options = &mo;
	ms.has_evacuate = evac;
	ms.evacuate = evac;
	ch.kind_case = HACTL__CHANGE__KIND_MIGRATE_START;
	ch.migrate_start = &ms;
	request(through, &ch);
}

static void cmd_migrate(void)
{
	need(3, "migrate GUEST NODE | migrate GUEST --cancel");
	if (strcmp(words[2], "--cancel") == 0) {
		Hactl__Change ch = HACTL__CHANGE__INIT;
		Hactl__MigrateEndChange me = HACTL__MIGRATE_END_CHANGE__INIT;

		me.guest = words[1];
		me.commit = false;
		me.reason = "cancelled by an operator";
		ch.kind_case = HACTL__CHANGE__KIND_MIGRATE_END;
		ch.migrate_end = &me;
		request(via(3), &ch);
		return;
	}
	migrate(via(3), words[1], words[2], false);
}

static void maintenance(uint32_t through, const char *node, bool on)
{
	Hactl__Change ch = HACTL__CHANGE__INIT;
	Hactl__MaintenanceChange m = HACTL__MAINTENANCE_CHANGE__INIT;

	m.node = (char *)node;
	m.on = on;
	ch.kind_case = HACTL__CHANGE__KIND_MAINTENANCE;
	ch.maintenance = &m;
	request(through, &ch);
}

static void job_start(uint32_t through, const char *kind, const char *node, uint32_t parallel)
{
	Hactl__Change ch = HACTL__CHANGE__INIT;
	Hactl__JobStartChange js = HACTL__JOB_START_CHANGE__INIT;

	js.kind = (char *)kind;
	js.node = (char *)node;
	js.has_parallel = parallel != 0;
	js.parallel = parallel;
	ch.kind_case = HACTL__CHANGE__KIND_JOB_START;
	ch.job_start = &js;
	request(through, &ch);
}

/* hactl evacuate NODE [parallel=N]: maintenance on, then a job whose
 * moves the leader plans (the engine's EVACUATE plan) and runs wave by
 * wave (coord_job.c). */
static void cmd_evacuate(void)
{
	uint32_t through, node;
	const char *par;

	need(2, "evacuate NODE [parallel=N] [via=NODE]");
	through = via(2);
	node = node_id(words[1]);
	par = opt(2, "parallel");
	if (!coord_state_node(&co[through].state, node)->maintenance) {
		maintenance(through, words[1], true);
	}
	job_start(through, "evacuate", words[1], par ? (uint32_t)atoi(par) : 0);
}

/* hactl maintenance off NODE --return (maintenance off, then the job) */
static void cmd_return(void)
{
	uint32_t through, node;

	need(2, "return NODE [via=NODE]");
	through = via(2);
	node = node_id(words[1]);
	if (coord_state_node(&co[through].state, node)->maintenance) {
		maintenance(through, words[1], false);
	}
	job_start(through, "return", words[1], 1);
}

/* hactl jobs --cancel ID */
static void cmd_job_cancel(void)
{
	Hactl__Change ch = HACTL__CHANGE__INIT;
	Hactl__JobMoveChange jm = HACTL__JOB_MOVE_CHANGE__INIT;

	need(2, "job-cancel ID [via=NODE]");
	jm.job = strtoull(words[1], NULL, 10);
	jm.has_cancel = true;
	jm.cancel = true;
	ch.kind_case = HACTL__CHANGE__KIND_JOB_MOVE;
	ch.job_move = &jm;
	request(via(2), &ch);
}

static void cmd_fence_result(void)
{
	uint32_t node;
	int rc;
	const char *log;
	size_t i;

	need(3, "fence-result NODE ok|fail|timeout [by=NODE]");
	node = node_id(words[1]);
	for (i = n_jobs; i-- > 0;) {
		if (jobs[i].open && jobs[i].node == node &&
		    (opt(3, "by") == NULL || jobs[i].by == node_id(opt(3, "by")))) {
			break;
		}
	}
	if (i == (size_t)-1) {
		die("fence-result: no fence agent runs for %s", words[1]);
	}
	jobs[i].open = false;
	if (strcmp(words[2], "ok") == 0) {
		rc = 0;
		log = "level 1 (sim): off";
	} else if (strcmp(words[2], "fail") == 0) {
		rc = -EIO;
		log = "level 1 (sim): off failed (exit 1)";
	} else if (strcmp(words[2], "timeout") == 0) {
		rc = -ETIMEDOUT;
		log = "level 1 (sim): timed out after 20 s";
	} else {
		die("fence-result: '%s' is not ok, fail or timeout", words[2]);
	}
	if (rc == 0 && hosts[node].up) {
		/* the device powered it off before it said so */
		say("host %s powered off by its fence device", hosts[node].name);
		hosts[node].up = false;
		coord_fini(node);
		membership();
	}
	if (!hosts[jobs[i].by].coord) {
		say("fence result for %s lost: the coordinator of %s is gone", hosts[node].name,
		    hosts[jobs[i].by].name);
		return;
	}
	coord_fence_job_done(&co[jobs[i].by], node, rc, log);
	bus_run();
	drain_events();
	agents_update();
}

static bool yesno(const char *s)
{
	if (strcmp(s, "yes") == 0) {
		return true;
	}
	if (strcmp(s, "no") == 0) {
		return false;
	}
	die("'%s' is not yes or no", s);
}

static void expect_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void expect_fail(const char *fmt, ...)
{
	char text[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(text, sizeof(text), fmt, ap);
	va_end(ap);
	say("EXPECT FAILED (line %d): %s", line_no, text);
	fprintf(stderr, "%s:%d: expect failed: %s\n", script_path, line_no, text);
	failures++;
}

/* expect ... [on=NODE]: checks NODE's replica (default: the coordinator a
 * command would go through). */
static void cmd_expect(void)
{
	uint32_t on;
	const struct coord *c;
	const char *v;

	need(3, "expect owner|state|desired|migration|fenced|maintenance|fence-state|leader|quorate ...");
	on = (v = opt(2, "on")) ? running_host(v) : via(n_words);
	c = &co[on];
	if (strcmp(words[1], "leader") == 0) {
		const char *is = nname(c->leader);

		if (strcmp(is, words[2]) != 0) {
			expect_fail("leader on %s is %s, not %s", hosts[on].name, is, words[2]);
		}
	} else if (strcmp(words[1], "quorate") == 0) {
		uint32_t id = running_host(words[2]);

		need(4, "expect quorate NODE yes|no");
		if (coord_is_quorate(&co[id]) != yesno(words[3])) {
			expect_fail("%s is %squorate", words[2], coord_is_quorate(&co[id]) ? "" : "not ");
		}
	} else if (strcmp(words[1], "fenced") == 0 || strcmp(words[1], "maintenance") == 0 ||
		   strcmp(words[1], "fence-state") == 0) {
		const struct coord_node *n;

		need(4, "expect fenced|maintenance|fence-state NODE VALUE");
		n = coord_state_node((struct coord_state *)&c->state, node_id(words[2]));
		if (strcmp(words[1], "fence-state") == 0) {
			const char *is = n->fence_state[0] ? n->fence_state : "idle";

			if (strcmp(is, words[3]) != 0) {
				expect_fail("fence state of %s is %s, not %s", words[2], is, words[3]);
			}
		} else {
			bool is = words[1][0] == 'f' ? n->fenced : n->maintenance;

			if (is != yesno(words[3])) {
				expect_fail("%s is %s%s", words[2], is ? "" : "not ", words[1]);
			}
		}
	} else if (strcmp(words[1], "job") == 0) {
		/* expect job ID|last STATE [GUEST MOVE-STATE] */
		const Hactl__Job *j = NULL;

		need(4, "expect job ID|last STATE [GUEST MOVE-STATE]");
		if (strcmp(words[2], "last") == 0) {
			j = c->state.n_jobs ? c->state.jobs[c->state.n_jobs - 1] : NULL;
		} else {
			j = coord_job_by_id(&c->state, strtoull(words[2], NULL, 10));
		}
		if (j == NULL) {
			expect_fail("no job %s on %s", words[2], hosts[on].name);
		} else if (strcmp(j->state, words[3]) != 0) {
			expect_fail("job %llu is %s, not %s", (unsigned long long)j->id, j->state,
				    words[3]);
		} else if (n_words >= 6 && strchr(words[4], '=') == NULL) {
			const char *ms = NULL;

			for (size_t k = 0; k < j->n_moves; k++) {
				if (strcmp(j->moves[k]->guest, words[4]) == 0) {
					ms = j->moves[k]->state;
				}
			}
			if (ms == NULL || strcmp(ms, words[5]) != 0) {
				expect_fail("job %llu: move of %s is %s, not %s",
					    (unsigned long long)j->id, words[4], ms ? ms : "absent",
					    words[5]);
			}
		}
	} else if (strcmp(words[1], "runs") == 0) {
		/* the agents' model: where GUEST may run now, "none" or a list */
		char where[256] = "";

		need(4, "expect runs GUEST NODE,...|none");
		for (uint32_t id = 1; id <= n_nodes; id++) {
			if (host_runs(&hosts[id], words[2])) {
				snprintf(where + strlen(where), sizeof(where) - strlen(where), "%s%s",
					 where[0] ? "," : "", hosts[id].name);
			}
		}
		if (strcmp(where[0] ? where : "none", words[3]) != 0) {
			expect_fail("%s may run on %s, not %s", words[2], where[0] ? where : "none",
				    words[3]);
		}
	} else {
		const Hactl__GuestRecord *g;
		const char *is;

		need(4, "expect owner|state|desired|paused|migration GUEST VALUE");
		g = coord_state_guest(&c->state, words[2]);
		if (g == NULL) {
			is = "undefined";
		} else if (strcmp(words[1], "owner") == 0) {
			is = nname(g->owner);
		} else if (strcmp(words[1], "state") == 0) {
			is = gstr(g->state);
		} else if (strcmp(words[1], "desired") == 0) {
			is = gstr(g->desired);
		} else if (strcmp(words[1], "paused") == 0) {
			is = coord_guest_paused(g) ? "yes" : "no";
		} else if (strcmp(words[1], "migration") == 0) {
			is = g->migration ? gstr(g->migration->state) : "none";
		} else {
			die("expect: unknown check '%s'", words[1]);
		}
		if (strcmp(is, words[3]) != 0) {
			expect_fail("%s of %s on %s is %s, not %s", words[1], words[2], hosts[on].name,
				    is, words[3]);
		}
	}
}

/* Puts every listed node in partition @comp. */
static void put_in(const char *list, int comp)
{
	char buf[256], *save = NULL;

	snprintf(buf, sizeof(buf), "%s", list);
	for (char *w = strtok_r(buf, ",", &save); w; w = strtok_r(NULL, ",", &save)) {
		hosts[node_id(w)].comp = comp;
	}
}

static void cmd_partition(void)
{
	int comp = 1;

	need(2, "partition NODE,NODE | NODE ... [late=NODE:MS]");
	/* nodes not named end up alone */
	for (uint32_t id = 1; id <= n_nodes; id++) {
		hosts[id].comp = 100 + (int)id;
	}
	for (size_t i = 1; i < n_words; i++) {
		if (strcmp(words[i], "|") == 0) {
			comp++;
		} else if (strncmp(words[i], "late=", 5) == 0) {
			/* that node's corosync notices the split MS later than the
			 * others: meanwhile it keeps its old view (and quorum) and
			 * nothing is delivered to or from it */
			char *colon = strchr(words[i] + 5, ':');

			if (colon == NULL) {
				die("partition: late=NODE:MS");
			}
			*colon = 0;
			hosts[node_id(words[i] + 5)].notice_ms = now_ms + num(colon + 1, "late");
		} else {
			put_in(words[i], comp);
		}
	}
	membership();
}

static void hosts_cmd(void (*fn)(uint32_t), const char *usage)
{
	need(2, usage);
	bus_run();
	for (size_t i = 1; i < n_words; i++) {
		fn(node_id(words[i]));
	}
	membership();
}

static void do_boot(uint32_t id)
{
	struct host *h = &hosts[id];

	if (h->up && h->coord) {
		die("%s is up already", h->name);
	}
	if (!h->up) {
		h->up = true;
		h->agent = false;
		h->n_runs = 0;
		h->n_rep = 0;
		h->last_quorate_ms = 0;
		h->self_fenced = false;
	}
	sim_coord_start(id);
}

static void do_crash(uint32_t id)
{
	if (!hosts[id].up) {
		die("%s is down already", hosts[id].name);
	}
	coord_fini(id);
	hosts[id].up = false;
	hosts[id].agent = false;
	hosts[id].n_runs = 0;
	hosts[id].n_rep = 0;
}

static void do_coord_stop(uint32_t id)
{
	if (!hosts[id].coord) {
		die("the coordinator of %s is not running", hosts[id].name);
	}
	coord_fini(id);
}

static void do_coord_start(uint32_t id)
{
	if (!hosts[id].up || hosts[id].coord) {
		die("%s: its host is down or its coordinator runs", hosts[id].name);
	}
	sim_coord_start(id);
}

static void run_line(char *line, FILE *in)
{
	char echo[1024];
	size_t n = strlen(line);

	while (n && (line[n - 1] == '\n' || line[n - 1] == ' ' || line[n - 1] == '\t')) {
		line[--n] = 0;
	}
	if (line[0] == '#' || line[0] == 0) {
		return;
	}
	snprintf(echo, sizeof(echo), "%s", line);
	split(line);
	if (n_words == 0) {
		return;
	}
	if (strcmp(words[0], "nodes") != 0 && n_nodes == 0) {
		die("the script must begin with 'nodes NAME...'");
	}
	if (strcmp(words[0], "tick") != 0 && strcmp(words[0], "expect") != 0) {
		say("> %s", echo);
	}
	if (strcmp(words[0], "nodes") == 0) {
		cmd_nodes();
	} else if (strcmp(words[0], "set") == 0) {
		need(3, "set self_fence_timeout_ms MS");
		if (strcmp(words[1], "self_fence_timeout_ms") != 0) {
			die("set: unknown setting '%s'", words[1]);
		}
		self_fence_ms = (uint32_t)num(words[2], words[1]);
		for (uint32_t id = 1; id <= n_nodes; id++) {
			co[id].cfg.self_fence_timeout_ms = self_fence_ms;
		}
	} else if (strcmp(words[0], "fencing") == 0) {
		cmd_fencing();
	} else if (strcmp(words[0], "policy") == 0) {
		cmd_policy(in);
	} else if (strcmp(words[0], "boot") == 0) {
		hosts_cmd(do_boot, "boot NODE...");
	} else if (strcmp(words[0], "crash") == 0) {
		hosts_cmd(do_crash, "crash NODE...");
	} else if (strcmp(words[0], "coord-stop") == 0) {
		hosts_cmd(do_coord_stop, "coord-stop NODE...");
	} else if (strcmp(words[0], "coord-start") == 0) {
		hosts_cmd(do_coord_start, "coord-start NODE...");
	} else if (strcmp(words[0], "partition") == 0) {
		cmd_partition();
	} else if (strcmp(words[0], "heal") == 0) {
		for (uint32_t id = 1; id <= n_nodes; id++) {
			hosts[id].comp = 0;
		}
		membership();
	} else if (strcmp(words[0], "agent") == 0) {
		cmd_agent();
	} else if (strcmp(words[0], "guest") == 0) {
		cmd_guest();
	} else if (strcmp(words[0], "migrate") == 0) {
		cmd_migrate();
	} else if (strcmp(words[0], "evacuate") == 0) {
		cmd_evacuate();
	} else if (strcmp(words[0], "return") == 0) {
		cmd_return();
	} else if (strcmp(words[0], "job-cancel") == 0) {
		cmd_job_cancel();
	} else if (strcmp(words[0], "maintenance") == 0) {
		need(3, "maintenance NODE on|off");
		maintenance(via(3), words[1], yesno(strcmp(words[2], "on") == 0 ? "yes" :
						    strcmp(words[2], "off") == 0 ? "no" : words[2]));
	} else if (strcmp(words[0], "fence-result") == 0) {
		cmd_fence_result();
	} else if (strcmp(words[0], "confirm") == 0) {
		char why[256];
		int rc;

		need(2, "confirm NODE [via=NODE]");
		rc = coord_fence_confirm(&co[via(2)], NULL, words[1], why, sizeof(why));
		if (rc < 0) {
			say("confirm refused: %s", why);
		}
		bus_run();
	} else if (strcmp(words[0], "unblock") == 0) {
		char why[256];
		int rc;

		need(2, "unblock NODE");
		rc = coord_unblock(&co[running_host(words[1])], why, sizeof(why));
		say("unblock: %s", rc < 0 ? why : "sent");
		bus_run();
	} else if (strcmp(words[0], "hold") == 0) {
		bus_held = true;
	} else if (strcmp(words[0], "step") == 0) {
		/* one held message delivered (and what it causes stays held) */
		if (q_head != q_tail) {
			struct bus_msg m = queue[q_head++ % QMAX];

			deliver(&m);
			free(m.data);
		}
	} else if (strcmp(words[0], "release") == 0) {
		bus_held = false;
		bus_run();
	} else if (strcmp(words[0], "tick") == 0) {
		need(2, "tick MS");
		tick(num(words[1], "tick"));
		return;
	} else if (strcmp(words[0], "show") == 0) {
		show(n_words > 1 ? running_host(words[1]) : via(n_words));
	} else if (strcmp(words[0], "expect") == 0) {
		cmd_expect();
		return;
	} else {
		die("unknown command '%s'", words[0]);
	}
	drain_events();
	agents_update();
	views_update();
}

static int run_script(const char *path, FILE *dst)
{
	char line[1024];
	FILE *in = fopen(path, "r");

	if (in == NULL) {
		fprintf(stderr, "%s: %s\n", path, strerror(errno));
		return 2;
	}
	script_path = path;
	out = dst;
	line_no = 0;
	now_ms = T0;
	n_nodes = 0;
	n_jobs = 0;
	n_audit = 0;
	failures = 0;
	bus_held = false;
	self_fence_ms = 5000;
	last_views[0] = 0;
	memset(hosts, 0, sizeof(hosts));
	memset(jobs, 0, sizeof(jobs));
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/ha-sim.XXXXXX");
	if (mkdtemp(tmpdir) == NULL) {
		perror("mkdtemp");
		exit(2);
	}
	fence_conf[0] = 0;
	snprintf(policy_dir, sizeof(policy_dir), "%s/policy.d", tmpdir);
	while (fgets(line, sizeof(line), in)) {
		line_no++;
		run_line(line, in);
	}
	fclose(in);
	bus_run();
	check_replicas();
	fprintf(out, "-- end\n");
	for (uint32_t id = 1; id <= n_nodes; id++) {
		if (hosts[id].coord && (co[id].leader == id || co[id].leader == 0)) {
			show(id);
		}
	}
	for (uint32_t id = 1; id <= n_nodes; id++) {
		coord_fini(id);
	}
	{
		char cmd[PATH_MAX + 16];

		snprintf(cmd, sizeof(cmd), "rm -rf %s", tmpdir);
		if (system(cmd) != 0) {
			fprintf(stderr, "cannot remove %s\n", tmpdir);
		}
	}
	return failures ? 1 : 0;
}

static char *run_to_string(const char *path, int *rc)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);

	if (f == NULL) {
		exit(2);
	}
	*rc = run_script(path, f);
	fclose(f);
	return buf;
}

static int golden(const char *script, const char *expected)
{
	const char *upd = getenv("HA_GOLDEN_UPDATE");
	int rc1, rc2;
	char *a = run_to_string(script, &rc1), *b = run_to_string(script, &rc2);
	uint8_t *want = NULL;
	size_t wlen = 0;

	if (strcmp(a, b) != 0 || rc1 != rc2) {
		fprintf(stderr, "%s: two runs differ: the simulation is not deterministic\n", script);
		return 1;
	}
	if (upd && strcmp(upd, "1") == 0) {
		FILE *f = fopen(expected, "w");

		if (f == NULL || fputs(a, f) < 0 || fclose(f) != 0) {
			fprintf(stderr, "cannot write %s\n", expected);
			return 2;
		}
		fprintf(stderr, "%s written%s\n", expected,
			rc1 ? " (with failed expects or AUDIT lines: review it)" : "");
		free(a);
		free(b);
		return rc1;
	}
	if (ha_file_read(expected, 16u << 20, &want, &wlen) < 0) {
		fprintf(stderr, "%s: cannot read (HA_GOLDEN_UPDATE=1 writes it)\n", expected);
		return 1;
	}
	if (wlen != strlen(a) || memcmp(want, a, wlen) != 0) {
		char tmp[] = "/tmp/ha-sim-out.XXXXXX", cmd[PATH_MAX * 2 + 64];
		int fd = mkstemp(tmp);

		if (fd >= 0) {
			if (write(fd, a, strlen(a)) < 0) {
				perror("write");
			}
			close(fd);
			snprintf(cmd, sizeof(cmd), "diff -u '%s' '%s' >&2", expected, tmp);
			if (system(cmd) < 0) {
				perror("diff");
			}
			unlink(tmp);
		}
		fprintf(stderr, "%s: output differs from %s (HA_GOLDEN_UPDATE=1 rewrites it; "
			"review the diff)\n", script, expected);
		rc1 = 1;
	}
	free(want);
	free(a);
	free(b);
	return rc1;
}

int main(int argc, char **argv)
{
	if (getenv("HA_SIM_LOG")) { /* the coordinators' log on stderr */
		struct ha_log_opts lo = { .ident = "ha-sim", .to_stderr = true,
					  .priority = LOG_DEBUG };

		ha_log_init(&lo);
	}
	if (argc == 4 && strcmp(argv[1], "--golden") == 0) {
		return golden(argv[2], argv[3]);
	}
	if (argc != 2 || argv[1][0] == '-') {
		fprintf(stderr, "usage: ha-sim SCRIPT | ha-sim --golden SCRIPT EXPECTED\n");
		return 2;
	}
	return run_script(argv[1], stdout);
}
