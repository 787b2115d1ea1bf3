/*
 * test_coord_replay.c - the coordinators' replicated state machine, run
 * deterministically: several real coordinators (struct coord, the code of
 * coordinator/) in one process, joined by a loopback bus that delivers
 * every multicast to every member of the current group in one total
 * order, with configuration changes where the test puts them and a clock
 * the test sets. Nothing here waits on time or on corosync.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "coordinator.h"
#include "harness.h"
#include "log.h"
#include "util.h"

#define NODES 5 /* ids 1..NODES */
#define QMAX 4096

struct bus_msg {
	uint32_t sender;
	size_t len;
	uint8_t *data;
};

static struct coord co[NODES + 1];
static bool up[NODES + 1];          /* the coordinator exists */
static uint32_t group[NODES];       /* CPG members, sorted */
static size_t n_group;
static struct bus_msg queue[QMAX];
static size_t q_head, q_tail;
static uint64_t clock_ms = 1000;
static char tmpdir[] = "/tmp/test_coord_replay.XXXXXX";
static char fence_conf[PATH_MAX];   /* "" = no fence.conf */
static uint32_t n_conf = NODES;     /* nodes in corosync's nodelist: 1..n_conf */

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
	memcpy(m->data, buf, len);
	return 0;
}

static bool in_group(uint32_t id)
{
	for (size_t i = 0; i < n_group; i++) {
		if (group[i] == id) {
			return true;
		}
	}
	return false;
}

/* Delivers everything queued (and what that sends) to the group. */
static void bus_run(void)
{
	while (q_head != q_tail) {
		struct bus_msg m = queue[q_head++ % QMAX];

		for (size_t i = 0; i < n_group; i++) {
			coord_replica_deliver(&co[group[i]], m.sender, m.data, m.len);
		}
		free(m.data);
	}
}

/* Drops what is queued: messages of a node that crashed before sending. */
static void bus_drop_from(uint32_t sender)
{
	size_t keep = q_head;

	for (size_t i = q_head; i != q_tail; i++) {
		struct bus_msg m = queue[i % QMAX];

		if (m.sender == sender) {
			free(m.data);
		} else {
			queue[keep++ % QMAX] = m;
		}
	}
	q_tail = keep;
}

static void set_clock(uint64_t ms)
{
	clock_ms = ms;
	for (uint32_t id = 1; id <= NODES; id++) {
		co[id].test_now_ms = ms;
	}
}

/* A coordinator that has read its configuration and the nodelist. */
static void node_start(uint32_t id)
{
	struct coord *c = &co[id];

	memset(c, 0, sizeof(*c));
	ha_config_defaults(&c->cfg);
	c->cfg.self_fence_timeout_ms = 5000;
	snprintf(c->cfg.fence_config, sizeof(c->cfg.fence_config), "%s",
		 fence_conf[0] ? fence_conf : "/nonexistent/fence.conf");
	snprintf(c->cfg.policy_path, sizeof(c->cfg.policy_path), "/nonexistent/policy.d");
	snprintf(c->state_path, sizeof(c->state_path), "%s/state-%u", tmpdir, id);
	coord_init(c);
	c->loop = qb_loop_create();
	CHECK(c->loop != NULL);
	CHECK_EQ_INT(coord_balance_start(c), 0);
	c->local_id = id;
	c->cs_connected = true;
	c->vq_quorate = true;
	c->send_hook = bus_send;
	c->test_now_ms = clock_ms;
	for (uint32_t k = 1; k <= n_conf; k++) {
		char name[16];

		snprintf(name, sizeof(name), "n%u", k);
		coord_state_node_add(&c->state, k, name);
	}
	up[id] = true;
}

static void node_stop(uint32_t id)
{
	struct coord *c = &co[id];

	if (!up[id]) {
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
	up[id] = false;
}

/* The CPG group becomes @ids (sorted, n entries): every coordinator in
 * the old or the new group that is still in it sees the change; then the
 * bus runs (state sync). Votequorum: every group member counts. */
static void group_set(const uint32_t *ids, size_t n)
{
	uint32_t left[NODES], joined[NODES];
	size_t nl = 0, nj = 0;

	for (size_t i = 0; i < n_group; i++) {
		bool stays = false;

		for (size_t j = 0; j < n; j++) {
			stays |= ids[j] == group[i];
		}
		if (!stays) {
			left[nl++] = group[i];
		}
	}
	for (size_t j = 0; j < n; j++) {
		if (!in_group(ids[j])) {
			joined[nj++] = ids[j];
		}
	}
	memcpy(group, ids, n * sizeof(ids[0]));
	n_group = n;
	for (size_t i = 0; i < n; i++) {
		coord_replica_confchg(&co[ids[i]], ids, n, left, nl, joined, nj);
	}
}

#define GROUP(...)                                                             \
	do {                                                                   \
		const uint32_t g_[] = { __VA_ARGS__ };                         \
		group_set(g_, sizeof(g_) / sizeof(g_[0]));                     \
	} while (0)

static void tick_all(void)
{
	for (size_t i = 0; i < n_group; i++) {
		coord_fence_tick(&co[group[i]]);
	}
	bus_run();
}

/* What a coordinator multicasts when its agent registers: facts, with
 * the watchdog the agent armed (@wd_ms 0: none). */
static void agent_report_wd(uint32_t id, uint32_t wd_ms)
{
	Hactl__CpgFacts f = HACTL__CPG_FACTS__INIT;
	Hactl__HostFacts hf = HACTL__HOST_FACTS__INIT;

	hf.has_cpus = true;
	hf.cpus = 4;
	hf.has_mem_total_kib = true;
	hf.mem_total_kib = 8 << 20;
	hf.has_wd_armed = wd_ms > 0;
	hf.wd_armed = wd_ms > 0;
	hf.has_wd_timeout_ms = wd_ms > 0;
	hf.wd_timeout_ms = wd_ms;
	f.node = id;
	f.facts = &hf;
	f.has_agent_connected = true;
	f.agent_connected = true;
	CHECK_EQ_INT(coord_cpg_send(&co[id], HA_MSG_CPG_FACTS, &f.base), 0);
	bus_run();
}

static void agent_report(uint32_t id)
{
	agent_report_wd(id, 0);
}

static const char *guest_def(const char *name)
{
	static char text[512];

	snprintf(text, sizeof(text),
		 "[guest]\nname = %s\ntype = container\nmemory = 64M\n"
		 "command = /bin/true\n[storage]\ntemplate = container\n"
		 "[ha]\nrestart = cold\n", name);
	return text;
}

/* A client's change through coordinator @via and the leader. */
static void request(uint32_t via, Hactl__Change *ch)
{
	Hactl__CpgRequest r = HACTL__CPG_REQUEST__INIT;

	r.origin = via;
	r.req_id = 0;
	r.change = ch;
	CHECK_EQ_INT(coord_cpg_send(&co[via], HA_MSG_CPG_REQUEST, &r.base), 0);
	bus_run();
}

/* Defines guest @name and starts it on @node; true when every member
 * applied both. */
static bool guest_start(uint32_t via, const char *name, const char *node)
{
	Hactl__Change ch = HACTL__CHANGE__INIT;
	Hactl__GuestDefineChange gd = HACTL__GUEST_DEFINE_CHANGE__INIT;
	Hactl__GuestStartChange gs = HACTL__GUEST_START_CHANGE__INIT;
	const char *def = guest_def(name);

	gd.definition.data = (uint8_t *)def;
	gd.definition.len = strlen(def);
	ch.kind_case = HACTL__CHANGE__KIND_GUEST_DEFINE;
	ch.guest_define = &gd;
	request(via, &ch);
	gs.name = (char *)name;
	gs.node = (char *)node;
	ch.kind_case = HACTL__CHANGE__KIND_GUEST_START;
	ch.guest_start = &gs;
	request(via, &ch);
	for (size_t i = 0; i < n_group; i++) {
		const Hactl__GuestRecord *g = coord_state_guest(&co[group[i]].state, name);
		const struct coord_node *n = coord_state_node_by_name(&co[group[i]].state, node);

		if (g == NULL || n == NULL || g->owner != n->id) {
			return false;
		}
	}
	return true;
}

static uint32_t owner_of(uint32_t on, const char *guest)
{
	const Hactl__GuestRecord *g = coord_state_guest(&co[on].state, guest);

	return g ? g->owner : 0;
}

static bool fenced_on(uint32_t on, uint32_t node)
{
	return coord_state_node(&co[on].state, node)->fenced;
}

static void all_stop(void)
{
	for (uint32_t id = 1; id <= NODES; id++) {
		node_stop(id);
	}
	bus_drop_from(0);
	while (q_head != q_tail) {
		free(queue[q_head++ % QMAX].data);
	}
	n_group = 0;
}

/*
 * Issue 12, item 7: loss times were kept by position in the state's node
 * array. A node added to the state (nodelist re-read, a sync) shifts the
 * array, and the leader read another node's older loss time: a node whose
 * coordinator had only just restarted (still in corosync's membership)
 * was taken for lost long ago, its watchdog deadline for passed, and it
 * was marked fenced and its guests recovered at once.
 */
static void test_loss_time_by_node_id(void)
{
	set_clock(1000);
	node_start(1);
	node_start(3);
	node_start(5);
	/* the state knows nodes 1, 3, 5 only (2 and 4 come later) */
	for (uint32_t id = 1; id <= 5; id += 2) {
		coord_state_clear(&co[id].state);
		coord_state_node_add(&co[id].state, 1, "n1");
		coord_state_node_add(&co[id].state, 3, "n3");
		coord_state_node_add(&co[id].state, 5, "n5");
	}
	GROUP(1, 3, 5);
	bus_run();
	/* watchdogs armed: node 3 would be taken for off at its deadline */
	agent_report_wd(1, 2000);
	agent_report_wd(3, 2000);
	agent_report_wd(5, 2000);
	CHECK_EQ_INT(co[1].leader, 1);
	CHECK(guest_start(1, "g3", "n3"));

	/* node 5 goes away for good at t=1000 */
	GROUP(1, 3);
	node_stop(5);
	/* long after: node 3's coordinator restarts; its host stays in
	 * corosync's membership (it is alive, its agent runs g3) */
	set_clock(100000);
	co[1].qmembers[0] = 1;
	co[1].qmembers[1] = 3;
	co[1].n_qmembers = 2;
	GROUP(1);
	/* meanwhile node 2 appears in the state (nodelist re-read) */
	coord_state_node_add(&co[1].state, 2, "n2");
	for (int i = 0; i < 5; i++) {
		set_clock(100100 + 100 * i);
		tick_all();
	}
	CHECK(!fenced_on(1, 3));
	CHECK_EQ_INT(owner_of(1, "g3"), 3);
	CHECK_EQ_INT(coord_lost_ms(&co[1], 3), 100000);
	CHECK_EQ_INT(coord_lost_ms(&co[1], 5), 1000);
	all_stop();
}

static Hactl__Change *maint_change(const char *node, bool on)
{
	static Hactl__Change ch;
	static Hactl__MaintenanceChange m;

	hactl__change__init(&ch);
	hactl__maintenance_change__init(&m);
	m.node = (char *)node;
	m.on = on;
	ch.kind_case = HACTL__CHANGE__KIND_MAINTENANCE;
	ch.maintenance = &m;
	return &ch;
}

/* A commit as @sender's bytes on the wire, not stamped by coord_cpg_send. */
static void raw_commit(uint32_t sender, uint32_t leader, uint64_t seq, bool has_epoch,
		       uint64_t epoch, Hactl__Change *ch)
{
	Hactl__CpgCommit cm = HACTL__CPG_COMMIT__INIT;
	uint8_t *buf;
	size_t len;

	cm.leader = leader;
	cm.seq = seq;
	cm.has_epoch = has_epoch;
	cm.epoch = epoch;
	cm.change = ch;
	CHECK_EQ_INT(ha_env_encode(HA_MSG_CPG_COMMIT, &cm.base, &buf, &len), 0);
	bus_send(&co[sender], buf, len);
	free(buf);
}

/* Node 1, the leader, sends a commit the way its code does. */
static void leader_commit(Hactl__Change *ch)
{
	Hactl__CpgCommit cm = HACTL__CPG_COMMIT__INIT;

	cm.leader = 1;
	cm.change = ch;
	CHECK_EQ_INT(coord_cpg_send(&co[1], HA_MSG_CPG_COMMIT, &cm.base), 0);
}

static bool maint_on(uint32_t on, uint32_t node)
{
	return coord_state_node(&co[on].state, node)->maintenance;
}

/* Members hold the same seq and the same decisions. */
static bool replicas_equal(void)
{
	for (size_t i = 1; i < n_group; i++) {
		const struct coord_state *a = &co[group[0]].state, *b = &co[group[i]].state;

		if (a->seq != b->seq || a->n_nodes != b->n_nodes || a->n_guests != b->n_guests ||
		    co[group[0]].epoch != co[group[i]].epoch) {
			return false;
		}
		for (size_t k = 0; k < a->n_nodes; k++) {
			if (a->nodes[k].maintenance != b->nodes[k].maintenance ||
			    a->nodes[k].fenced != b->nodes[k].fenced) {
				return false;
			}
		}
	}
	return true;
}

/*
 * Issue 12, item 9: commits were taken from any member naming itself
 * leader, whatever their seq; a commit queued before a membership change
 * and delivered after it was applied.
 */
static void test_commit_order(void)
{
	uint64_t seq, epoch;

	n_conf = 4;
	set_clock(1000);
	for (uint32_t id = 1; id <= 4; id++) {
		node_start(id);
	}
	GROUP(1, 2, 3, 4);
	bus_run();
	CHECK(replicas_equal());
	seq = co[1].state.seq;

	/* the leader pipelines: two decisions before either is delivered */
	{
		Hactl__CpgRequest r = HACTL__CPG_REQUEST__INIT;

		r.origin = 2;
		r.change = maint_change("n3", true);
		CHECK_EQ_INT(coord_cpg_send(&co[2], HA_MSG_CPG_REQUEST, &r.base), 0);
		r.change = maint_change("n4", true);
		CHECK_EQ_INT(coord_cpg_send(&co[2], HA_MSG_CPG_REQUEST, &r.base), 0);
		bus_run();
	}
	CHECK(maint_on(2, 3) && maint_on(2, 4));
	CHECK_EQ_INT(co[3].state.seq, seq + 2);
	CHECK(replicas_equal());
	seq = co[1].state.seq;
	epoch = co[1].epoch;

	/* a member that is not the leader names itself leader */
	raw_commit(2, 2, seq + 1, true, epoch, maint_change("n1", true));
	bus_run();
	CHECK(!maint_on(1, 1) && !maint_on(3, 1));
	CHECK_EQ_INT(co[3].state.seq, seq);
	CHECK(co[3].rx_commit_refused > 0);

	/* the leader's commit delivered twice, or an old one again */
	raw_commit(1, 1, seq + 1, true, epoch, maint_change("n3", false));
	raw_commit(1, 1, seq + 1, true, epoch, maint_change("n4", false));
	raw_commit(1, 1, seq, true, epoch, maint_change("n2", true));
	bus_run();
	CHECK(!maint_on(2, 3));
	CHECK(maint_on(2, 4));  /* the second seq + 1 is not after seq + 1 */
	CHECK(!maint_on(2, 2)); /* nor is seq */
	CHECK_EQ_INT(co[2].state.seq, seq + 1);
	CHECK(replicas_equal());
	seq = co[1].state.seq;

	/* no epoch (an older peer's form) */
	raw_commit(1, 1, seq + 1, false, 0, maint_change("n2", true));
	bus_run();
	CHECK(!maint_on(2, 2));

	/* queued before node 4 left, delivered after the change */
	leader_commit(maint_change("n2", true));
	GROUP(1, 2, 3);
	bus_run();
	CHECK(!maint_on(1, 2) && !maint_on(2, 2) && !maint_on(3, 2));
	CHECK_EQ_INT(co[1].state.seq, seq);
	CHECK(replicas_equal());

	/* queued before node 4 came back, delivered during the sync */
	leader_commit(maint_change("n2", true));
	GROUP(1, 2, 3, 4);
	bus_run();
	CHECK(!maint_on(1, 2) && !maint_on(4, 2));
	CHECK(replicas_equal());

	/* and the leader goes on deciding in the new epoch */
	request(3, maint_change("n2", true));
	CHECK(maint_on(1, 2) && maint_on(4, 2));
	CHECK(replicas_equal());
	all_stop();
	n_conf = NODES;
}

static const char *fence_state_on(uint32_t on, uint32_t node)
{
	return coord_state_node(&co[on].state, node)->fence_state;
}

static bool has_event(uint32_t on, const char *text)
{
	for (size_t i = 0; i < co[on].n_events; i++) {
		if (strstr(co[on].events[(co[on].events_head + i) % COORD_EVENTS_MAX], text)) {
			return true;
		}
	}
	return false;
}

static void run_for(uint64_t from, uint64_t ms)
{
	for (uint64_t t = from; t <= from + ms; t += 100) {
		set_clock(t);
		tick_all();
	}
}

/*
 * Fencing safe by default: with no fence.conf (method watchdog) a lost
 * host whose agent had reported no armed watchdog, or one whose timeout
 * is more than half the self-fence timeout, is never taken for off: an
 * alarm, no recovery, until an operator confirms it off. An armed
 * watchdog of at most half is waited out and its guests recovered.
 */
static void test_fencing_safe_default(void)
{
	char why[256];

	fence_conf[0] = 0; /* no fence.conf */
	set_clock(1000);
	for (uint32_t id = 1; id <= 5; id++) {
		node_start(id);
	}
	GROUP(1, 2, 3, 4, 5);
	bus_run();
	agent_report_wd(1, 2000);
	agent_report_wd(2, 2000);
	agent_report(3);            /* no watchdog */
	agent_report_wd(4, 2000);   /* half of 5000 at most */
	agent_report_wd(5, 3000);   /* more than half */
	CHECK(guest_start(2, "g3", "n3"));
	CHECK(guest_start(2, "g4", "n4"));
	CHECK(guest_start(2, "g5", "n5"));

	set_clock(2000);
	GROUP(1, 2);
	node_stop(3);
	node_stop(4);
	node_stop(5);
	run_for(2000, 20000);
	/* node 4: waited out, fenced, g4 recovered on a survivor */
	CHECK(fenced_on(2, 4));
	CHECK(owner_of(2, "g4") == 1 || owner_of(2, "g4") == 2);
	/* nodes 3 and 5: nothing confirms them off */
	CHECK(!fenced_on(1, 3) && !fenced_on(2, 3));
	CHECK(!fenced_on(1, 5) && !fenced_on(2, 5));
	CHECK_EQ_INT(owner_of(2, "g3"), 3);
	CHECK_EQ_INT(owner_of(2, "g5"), 5);
	CHECK(strcmp(fence_state_on(2, 3), "unconfirmed") == 0);
	CHECK(strcmp(fence_state_on(2, 5), "unconfirmed") == 0);
	CHECK(strstr(coord_state_node(&co[2].state, 3)->fence_error, "no armed watchdog") != NULL);
	CHECK(strstr(coord_state_node(&co[2].state, 5)->fence_error, "more than half") != NULL);
	CHECK(has_event(1, "n3 lost: cannot be confirmed off"));

	/* the operator may not confirm a member, nor this node */
	CHECK_EQ_INT(coord_fence_confirm(&co[2], NULL, "n1", why, sizeof(why)), -EBUSY);
	CHECK_EQ_INT(coord_fence_confirm(&co[2], NULL, "n2", why, sizeof(why)), -EINVAL);
	CHECK_EQ_INT(coord_fence_confirm(&co[2], NULL, "n9", why, sizeof(why)), -ENOENT);
	/* nor a node whose corosync is still there */
	co[2].qmembers[0] = 1;
	co[2].qmembers[1] = 2;
	co[2].qmembers[2] = 3;
	co[2].n_qmembers = 3;
	CHECK_EQ_INT(coord_fence_confirm(&co[2], NULL, "n3", why, sizeof(why)), -EBUSY);
	CHECK(strstr(why, "corosync") != NULL);
	co[2].n_qmembers = 0;

	/* confirmed off (on a node that is not the leader): fenced, recovered */
	CHECK_EQ_INT(coord_fence_confirm(&co[2], NULL, "n3", why, sizeof(why)), 0);
	bus_run();
	run_for(22100, 1000);
	CHECK(fenced_on(1, 3) && fenced_on(2, 3));
	CHECK(owner_of(1, "g3") == 1 || owner_of(1, "g3") == 2);
	CHECK(strcmp(fence_state_on(2, 3), "idle") == 0);
	CHECK(has_event(2, "operator confirmed n3 off"));
	CHECK(has_event(1, "node n3 fenced (confirmed)"));
	/* n5 still waits */
	CHECK_EQ_INT(owner_of(1, "g5"), 5);
	CHECK(replicas_equal());
	all_stop();
}

/* The agent's guest report carries its watchdog; the host's coordinator
 * keeps it in the facts every coordinator holds, and multicasts it only
 * when it changed. */
static void test_watchdog_report(void)
{
	Hactl__HostFacts hello = HACTL__HOST_FACTS__INIT;
	Hactl__AgentGuestReport r = HACTL__AGENT_GUEST_REPORT__INIT;
	const Hactl__HostFacts *seen;

	n_conf = 2;
	node_start(1);
	node_start(2);
	GROUP(1, 2);
	bus_run();
	CHECK(!coord_agent_watchdog_note(&co[2], &r)); /* no hello yet */
	hello.has_cpus = true;
	hello.cpus = 2;
	co[2].agent_facts = coord_pb_dup(&hello.base);
	CHECK(!coord_agent_watchdog_note(&co[2], &r)); /* an agent that does not say */
	r.has_watchdog_armed = true;
	r.watchdog_armed = false;
	r.watchdog_error = "cannot open /dev/watchdog: No such file or directory";
	CHECK(coord_agent_watchdog_note(&co[2], &r));
	bus_run();
	seen = coord_state_node(&co[1].state, 2)->facts;
	CHECK(seen && seen->has_wd_armed && !seen->wd_armed);
	CHECK(seen && strstr(seen->wd_error, "/dev/watchdog") != NULL);
	CHECK(!coord_agent_watchdog_note(&co[2], &r)); /* unchanged: nothing sent */
	CHECK(q_head == q_tail);
	r.watchdog_armed = true;
	r.has_watchdog_timeout_ms = true;
	r.watchdog_timeout_ms = 2000;
	r.watchdog_error = "";
	CHECK(coord_agent_watchdog_note(&co[2], &r));
	bus_run();
	seen = coord_state_node(&co[1].state, 2)->facts;
	CHECK(seen && seen->wd_armed && seen->wd_timeout_ms == 2000);
	CHECK_EQ_INT(seen->cpus, 2);
	all_stop();
	n_conf = NODES;
}

static void quorum(uint32_t id, bool quorate, const uint32_t *ids, size_t n)
{
	coord_quorum_set(&co[id], quorate, ids, n);
}

/* A coordinator process starting on a host: nodelist, state file. */
static void node_restart(uint32_t id)
{
	node_start(id);
	coord_state_clear(&co[id].state);
	CHECK_EQ_INT(coord_state_load(&co[id]), 0);
}

/*
 * Issue 12, item 8: a lone coordinator with a stale state file became
 * leader when its corosync was quorate while the other coordinators were
 * down, and acted on what it remembered: its agent was told to run the
 * guests the stale state gave it, although they had been recovered
 * elsewhere. Now it waits (corosync's wait_for_all, for coordinators):
 * until it syncs with a current member, with every node, or an operator
 * runs `hactl unblock`.
 */
static void test_stale_state_waits(void)
{
	const uint32_t all[] = { 1, 2, 3 }, two[] = { 2, 3 };
	char why[256];
	uint64_t seq_stale, seq_now;
	uint32_t moved_to;

	n_conf = 3;
	set_clock(1000);
	for (uint32_t id = 1; id <= 3; id++) {
		node_start(id);
		quorum(id, true, all, 3);
	}
	GROUP(1, 2, 3);
	bus_run();
	/* every node present: current */
	CHECK(co[1].current && co[2].current && co[3].current);
	for (uint32_t id = 1; id <= 3; id++) {
		agent_report_wd(id, 2000);
	}
	CHECK(guest_start(2, "g1", "n1"));
	seq_stale = co[1].state.seq;

	/* node 1's host dies; the others fence it and recover g1 */
	GROUP(2, 3);
	node_stop(1);
	quorum(2, true, two, 2);
	quorum(3, true, two, 2);
	run_for(2000, 10000);
	CHECK(fenced_on(2, 1));
	moved_to = owner_of(2, "g1");
	CHECK(moved_to == 2 || moved_to == 3);
	seq_now = co[2].state.seq;
	CHECK(seq_now > seq_stale);

	/* the coordinators of 2 and 3 stop; node 1 boots, alone in the CPG
	 * group while corosync (1, 2, 3) is quorate, with its old file */
	GROUP();
	node_stop(2);
	node_stop(3);
	node_restart(1);
	CHECK_EQ_INT(co[1].state.seq, seq_stale);
	CHECK_EQ_INT(owner_of(1, "g1"), 1); /* what it remembers */
	quorum(1, true, all, 3);
	GROUP(1);
	bus_run();
	CHECK(!co[1].current);
	CHECK(!coord_is_quorate(&co[1]));   /* its agent runs nothing */
	CHECK(coord_is_blocked(&co[1]));
	CHECK_EQ_INT(co[1].leader, 0);
	run_for(12100, 10000);
	request(1, maint_change("n3", true));
	CHECK_EQ_INT(co[1].state.seq, seq_stale); /* decided nothing */
	CHECK(!fenced_on(1, 2) && !fenced_on(1, 3));

	/* node 2 comes back: newer state, but node 3 may have gone on
	 * without either of them: still waiting */
	node_restart(2);
	quorum(2, true, all, 3);
	GROUP(1, 2);
	bus_run();
	CHECK_EQ_INT(co[1].state.seq, seq_now);
	CHECK_EQ_INT(owner_of(1, "g1"), moved_to);
	CHECK(!co[1].current && !co[2].current);
	CHECK_EQ_INT(co[1].leader, 0);

	/* every node present: the newest state is the cluster's */
	node_restart(3);
	quorum(3, true, all, 3);
	GROUP(1, 2, 3);
	bus_run();
	CHECK(co[1].current && co[2].current && co[3].current);
	CHECK_EQ_INT(co[1].leader, 1);
	CHECK_EQ_INT(owner_of(1, "g1"), moved_to);
	CHECK(replicas_equal());
	CHECK_EQ_INT(coord_unblock(&co[1], why, sizeof(why)), -EALREADY);

	/* the operator's word: node 1 alone again, unblocked */
	GROUP();
	all_stop();
	node_restart(1);
	quorum(1, false, NULL, 0);
	GROUP(1);
	bus_run();
	CHECK_EQ_INT(coord_unblock(&co[1], why, sizeof(why)), -EHOSTDOWN);
	quorum(1, true, all, 3);
	CHECK(coord_is_blocked(&co[1]));
	CHECK_EQ_INT(coord_unblock(&co[1], why, sizeof(why)), 0);
	bus_run();
	CHECK(co[1].current && coord_is_quorate(&co[1]));
	CHECK_EQ_INT(co[1].leader, 1);
	CHECK(has_event(1, "hactl unblock"));
	all_stop();
	n_conf = NODES;
}

/*
 * A coordinator that lost quorum is no longer current: when corosync
 * heals while the others' coordinators are down, it does not lead with
 * what it knew before the partition.
 */
static void test_quorum_loss_not_current(void)
{
	const uint32_t all[] = { 1, 2, 3 }, two[] = { 1, 2 }, three[] = { 3 }, lost[] = { 1, 2 };
	uint64_t seq_before;

	n_conf = 3;
	set_clock(1000);
	for (uint32_t id = 1; id <= 3; id++) {
		node_start(id);
		quorum(id, true, all, 3);
	}
	GROUP(1, 2, 3);
	bus_run();
	CHECK(co[3].current);
	seq_before = co[3].state.seq;

	/* node 3 is cut off: its own view, no quorum */
	coord_replica_confchg(&co[3], three, 1, lost, 2, NULL, 0);
	quorum(3, false, three, 1);
	CHECK(!co[3].current);
	group[0] = 1;
	group[1] = 2;
	n_group = 2;
	coord_replica_confchg(&co[1], two, 2, three, 1, NULL, 0);
	coord_replica_confchg(&co[2], two, 2, three, 1, NULL, 0);
	quorum(1, true, two, 2);
	quorum(2, true, two, 2);
	request(1, maint_change("n2", true));
	CHECK(maint_on(1, 2));

	/* the majority's coordinators stop; corosync heals with node 3 */
	node_stop(1);
	node_stop(2);
	group[0] = 3;
	n_group = 1;
	quorum(3, true, all, 3);
	CHECK(!coord_is_quorate(&co[3]));
	CHECK(coord_is_blocked(&co[3]));
	CHECK_EQ_INT(co[3].leader, 0);
	CHECK_EQ_INT(co[3].state.seq, seq_before);
	all_stop();
	n_conf = NODES;
}

/*
 * Node 3 is down; a network blip splits 1 and 2, each loses quorum, then
 * they merge again. Together they are most of the nodes and both were
 * current until the loss: no quorate partition can have decided without
 * one of them, so they go on without waiting for node 3. One of them
 * restarted meanwhile (its file may be stale) is not enough.
 */
static void test_blip_majority_goes_on(void)
{
	const uint32_t all[] = { 1, 2, 3 }, two[] = { 1, 2 }, one[] = { 1 }, other[] = { 2 };

	n_conf = 3;
	set_clock(1000);
	for (uint32_t id = 1; id <= 3; id++) {
		node_start(id);
		quorum(id, true, all, 3);
	}
	GROUP(1, 2, 3);
	bus_run();
	GROUP(1, 2);
	node_stop(3);
	quorum(1, true, two, 2);
	quorum(2, true, two, 2);
	request(1, maint_change("n3", true));
	CHECK(co[1].current && co[2].current && maint_on(2, 3));

	/* the blip: each alone, no quorum */
	coord_replica_confchg(&co[1], one, 1, other, 1, NULL, 0);
	coord_replica_confchg(&co[2], other, 1, one, 1, NULL, 0);
	quorum(1, false, one, 1);
	quorum(2, false, other, 1);
	CHECK(!co[1].current && !co[2].current);
	/* merged again */
	n_group = 0;
	quorum(1, true, two, 2);
	quorum(2, true, two, 2);
	group[0] = 1;
	n_group = 1;
	GROUP(1, 2);
	bus_run();
	CHECK(co[1].current && co[2].current);
	CHECK_EQ_INT(co[1].leader, 1);
	CHECK(coord_is_quorate(&co[2]));

	/* the same, but node 2's coordinator restarted during the blip */
	coord_replica_confchg(&co[1], one, 1, other, 1, NULL, 0);
	quorum(1, false, one, 1);
	node_stop(2);
	node_restart(2);
	n_group = 0;
	quorum(1, true, two, 2);
	quorum(2, true, two, 2);
	group[0] = 1;
	n_group = 1;
	GROUP(1, 2);
	bus_run();
	CHECK(!co[1].current && !co[2].current);
	CHECK_EQ_INT(co[1].leader, 0);
	all_stop();
	n_conf = NODES;
}

/*
 * Issue 20: a host that runs no guest is not fenced when it leaves. The
 * host of a maintenance window (evacuated, then rebooted to patch it) or
 * one shut down cleanly after its guests went was fenced like any other:
 * its fence levels powered it off in the middle of the patching, for
 * nothing to recover. Now it is marked down (an event says so) and rejoins
 * as it is; a lost host that owns a running guest is still fenced.
 */
static void test_idle_host_not_fenced(void)
{
	fence_conf[0] = 0; /* method watchdog */
	set_clock(1000);
	for (uint32_t id = 1; id <= 5; id++) {
		node_start(id);
	}
	GROUP(1, 2, 3, 4, 5);
	bus_run();
	for (uint32_t id = 1; id <= 5; id++) {
		agent_report_wd(id, 2000);
	}
	CHECK(guest_start(2, "g4", "n4"));

	set_clock(2000);
	GROUP(1, 2, 5);
	node_stop(3);
	node_stop(4);
	run_for(2000, 10000);
	/* n4 ran g4: waited out, fenced, g4 recovered; n3 ran nothing */
	CHECK(fenced_on(1, 4));
	CHECK(owner_of(1, "g4") != 4 && owner_of(1, "g4") != 0);
	CHECK(!fenced_on(1, 3) && !fenced_on(2, 3) && !fenced_on(5, 3));
	/* no fence operation began: its state was never published */
	CHECK(strcmp(fence_state_on(1, 3), "") == 0 || strcmp(fence_state_on(1, 3), "idle") == 0);
	CHECK(has_event(1, "n3 lost while it ran no guest: marked down, not fenced"));
	CHECK(!has_event(1, "n3 lost: waiting out"));

	/* it comes back as it is: never fenced, no unfence commit */
	node_start(3);
	set_clock(12500);
	GROUP(1, 2, 3, 5);
	bus_run();
	run_for(12500, 2000);
	CHECK(!fenced_on(1, 3) && !fenced_on(3, 3));
	CHECK(!has_event(1, "node n3 fenced"));
	CHECK(replicas_equal());
	all_stop();
}

/* The status node @id's agent sends for guest @name with @note. */
static void guest_status(uint32_t id, const char *name, const char *note)
{
	Hactl__CpgGuestStatus cs = HACTL__CPG_GUEST_STATUS__INIT;
	Hactl__GuestStatus gs = HACTL__GUEST_STATUS__INIT, *list[1] = { &gs };

	gs.name = (char *)name;
	gs.state = "running";
	gs.note = (char *)note;
	gs.has_generation = true;
	gs.generation = coord_state_guest(&co[id].state, name)->generation;
	cs.node = id;
	cs.guests = list;
	cs.n_guests = 1;
	CHECK_EQ_INT(coord_cpg_send(&co[id], HA_MSG_CPG_GUEST_STATUS, &cs.base), 0);
	bus_run();
}

static size_t count_events(uint32_t on, const char *text)
{
	size_t n = 0;

	for (size_t i = 0; i < co[on].n_events; i++) {
		if (strstr(co[on].events[(co[on].events_head + i) % COORD_EVENTS_MAX], text)) {
			n++;
		}
	}
	return n;
}

/*
 * Issue 20: how the owner's agent started a guest (which snapshot, or cold
 * and why) is an event on every node, once per new note; a node that does
 * not own the guest makes none.
 */
static void test_start_note_event(void)
{
	static const char cold[] = "cold start: newest failover snapshot, generation 3 of "
				   "2026-12-07 11:46:03, is 900 s old (max 180 s)";

	fence_conf[0] = 0;
	set_clock(1000);
	for (uint32_t id = 1; id <= 5; id++) {
		node_start(id);
	}
	GROUP(1, 2, 3, 4, 5);
	bus_run();
	for (uint32_t id = 1; id <= 5; id++) {
		agent_report(id);
	}
	CHECK(guest_start(1, "g5", "n2"));
	guest_status(2, "g5", cold);
	for (uint32_t id = 1; id <= 5; id++) {
		CHECK(has_event(id, "g5 on n2: cold start: newest failover snapshot, generation 3 "
				"of 2026-12-07 11:46:03, is 900 s old (max 180 s)"));
	}
	guest_status(2, "g5", cold); /* the same note again: no new event */
	CHECK_EQ_INT(count_events(1, "g5 on n2:"), 1);
	guest_status(3, "g5", "restored from snapshot generation 1"); /* not the owner */
	CHECK(!has_event(1, "g5 on n3"));
	all_stop();
}

int main(void)
{
	if (getenv("HA_TEST_LOG")) { /* the coordinators' log on stderr */
		struct ha_log_opts lo = { .ident = "test_coord_replay", .to_stderr = true,
					  .priority = LOG_DEBUG };

		ha_log_init(&lo);
	}
	if (mkdtemp(tmpdir) == NULL) {
		perror("mkdtemp");
		return 1;
	}
	test_loss_time_by_node_id();
	test_commit_order();
	test_fencing_safe_default();
	test_watchdog_report();
	test_stale_state_waits();
	test_quorum_loss_not_current();
	test_blip_majority_goes_on();
	test_idle_host_not_fenced();
	test_start_note_event();
	{
		char cmd[PATH_MAX + 16];

		snprintf(cmd, sizeof(cmd), "rm -rf %s", tmpdir);
		if (system(cmd) != 0) {
			fprintf(stderr, "cannot remove %s\n", tmpdir);
		}
	}
	if (getenv("HA_TEST_LOG")) {
		ha_log_fini();
	}
	return ha_test_done("test_coord_replay");
}
