/*
 * test_coord_state.c - the replicated state model: nodes, export/import,
 * validation of imported state, changes, sync choice, leader choice.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "coord_state.h"
#include "harness.h"

static void test_nodes(void)
{
	struct coord_state st;
	struct coord_node *n;

	coord_state_init(&st);
	CHECK(coord_state_node_add(&st, 0, "zero") == NULL);
	CHECK(coord_state_node_add(&st, 3, "c") != NULL);
	CHECK(coord_state_node_add(&st, 1, "a") != NULL);
	CHECK(coord_state_node_add(&st, 2, NULL) != NULL);
	CHECK_EQ_INT(st.n_nodes, 3);
	/* sorted by id, default name */
	CHECK_EQ_INT(st.nodes[0].id, 1);
	CHECK_EQ_INT(st.nodes[2].id, 3);
	CHECK(strcmp(st.nodes[1].name, "node2") == 0);
	/* rename keeps flags */
	n = coord_state_node(&st, 2);
	n->maintenance = true;
	CHECK(coord_state_node_add(&st, 2, "b") == n);
	CHECK(strcmp(n->name, "b") == 0 && n->maintenance);
	CHECK(coord_state_node_by_name(&st, "c")->id == 3);
	CHECK(coord_state_node_by_name(&st, "nope") == NULL);
	for (uint32_t id = 10; id < 10 + COORD_MAX_NODES; id++) {
		coord_state_node_add(&st, id, NULL);
	}
	CHECK_EQ_INT(st.n_nodes, COORD_MAX_NODES);
	CHECK(coord_state_node_add(&st, 100000, NULL) == NULL);
	coord_state_clear(&st);
	CHECK_EQ_INT(st.n_nodes, 0);
}

static void test_node_state(void)
{
	struct coord_node n = { .id = 1 };

	CHECK(strcmp(coord_node_state_str(coord_node_state_of(&n, true)), "online") == 0);
	CHECK(strcmp(coord_node_state_str(coord_node_state_of(&n, false)), "offline") == 0);
	n.maintenance = true;
	CHECK(strcmp(coord_node_state_str(coord_node_state_of(&n, true)), "maintenance") == 0);
	CHECK(strcmp(coord_node_state_str(coord_node_state_of(&n, false)), "offline") == 0);
	n.fenced = true;
	CHECK(strcmp(coord_node_state_str(coord_node_state_of(&n, true)), "fenced") == 0);
	CHECK(strcmp(coord_node_state_str(COORD_NODE_STATE_MAX), "unknown") == 0);
}

static Hactl__Change *maint(const char *node, bool on)
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

static void test_changes(void)
{
	struct coord_state st;
	char why[256];
	Hactl__Change empty = HACTL__CHANGE__INIT;

	coord_state_init(&st);
	coord_state_node_add(&st, 1, "n1");
	coord_state_node_add(&st, 2, "n2");
	CHECK_EQ_INT(coord_change_check(&st, maint("n9", true), why, sizeof(why)), -ENOENT);
	CHECK(strcmp(why, "unknown node 'n9'") == 0);
	CHECK_EQ_INT(coord_change_check(&st, maint("n2", false), why, sizeof(why)), -EALREADY);
	CHECK_EQ_INT(coord_change_check(&st, &empty, why, sizeof(why)), -EINVAL);
	CHECK_EQ_INT(coord_change_apply(&st, maint("n2", true), 1234, why, sizeof(why)), 0);
	CHECK_EQ_INT(st.seq, 1);
	CHECK_EQ_INT(st.updated_ms, 1234);
	CHECK(coord_state_node(&st, 2)->maintenance);
	/* a failed apply changes nothing */
	CHECK_EQ_INT(coord_change_apply(&st, maint("n2", true), 99, why, sizeof(why)), -EALREADY);
	CHECK_EQ_INT(st.seq, 1);
	CHECK_EQ_INT(st.updated_ms, 1234);
	coord_change_describe(maint("n2", false), why, sizeof(why));
	CHECK(strcmp(why, "maintenance off n2") == 0);
	coord_state_clear(&st);
}

static void test_export_import(void)
{
	struct coord_state a, b;
	Hactl__HostFacts f = HACTL__HOST_FACTS__INIT;
	Hactl__HostUsage u = HACTL__HOST_USAGE__INIT;
	Hactl__ClusterState *cs;
	uint8_t *buf;
	size_t len;
	Hactl__ClusterState *back;
	char why[256];

	coord_state_init(&a);
	coord_state_init(&b);
	coord_state_node_add(&a, 1, "n1");
	coord_state_node_add(&a, 2, "n2")->maintenance = true;
	f.has_cpus = true;
	f.cpus = 8;
	f.criu_version = "4.2.1";
	CHECK_EQ_INT(coord_state_set_facts(&a, 1, &f, true), 0);
	u.has_cpu_permille = true;
	u.cpu_permille = 321;
	CHECK_EQ_INT(coord_state_set_usage(&a, 2, &u), 0);
	a.seq = 42;

	cs = coord_state_export(&a);
	CHECK(cs != NULL);
	len = hactl__cluster_state__get_packed_size(cs);
	buf = malloc(len);
	hactl__cluster_state__pack(cs, buf);
	coord_state_export_free(cs);
	back = hactl__cluster_state__unpack(NULL, len, buf);
	free(buf);
	CHECK(back != NULL);
	CHECK_EQ_INT(coord_state_import(&b, back, why, sizeof(why)), 0);
	CHECK_EQ_INT(b.seq, 42);
	CHECK_EQ_INT(b.n_nodes, 2);
	CHECK(coord_state_node(&b, 2)->maintenance);
	CHECK(coord_state_node(&b, 1)->agent_connected);
	CHECK_EQ_INT(coord_state_node(&b, 1)->facts->cpus, 8);
	CHECK(strcmp(coord_state_node(&b, 1)->facts->criu_version, "4.2.1") == 0);
	CHECK_EQ_INT(coord_state_node(&b, 2)->usage->cpu_permille, 321);

	/* invalid input leaves the destination unchanged */
	back->nodes[1]->id = back->nodes[0]->id;
	CHECK_EQ_INT(coord_state_import(&b, back, why, sizeof(why)), -EINVAL);
	CHECK(strstr(why, "duplicate") != NULL);
	CHECK_EQ_INT(b.n_nodes, 2);
	back->nodes[1]->id = 2;
	{
		char *saved = back->nodes[1]->name;

		back->nodes[1]->name = "bad name!";
		CHECK_EQ_INT(coord_state_import(&b, back, why, sizeof(why)), -EINVAL);
		back->nodes[1]->name = saved;
	}
	back->nodes[1]->id = 0;
	CHECK_EQ_INT(coord_state_import(&b, back, why, sizeof(why)), -EINVAL);
	back->nodes[1]->id = 2;
	CHECK_EQ_INT(b.seq, 42);
	hactl__cluster_state__free_unpacked(back, NULL);

	/* an empty state exports and imports */
	coord_state_clear(&a);
	cs = coord_state_export(&a);
	CHECK(cs != NULL && cs->n_nodes == 0);
	CHECK_EQ_INT(coord_state_import(&b, cs, why, sizeof(why)), 0);
	CHECK_EQ_INT(b.n_nodes, 0);
	coord_state_export_free(cs);
	coord_state_clear(&b);
}

static void test_import_bounds(void)
{
	Hactl__ClusterState cs = HACTL__CLUSTER_STATE__INIT;
	struct coord_state st;
	char why[256];

	coord_state_init(&st);
	cs.n_nodes = COORD_MAX_NODES + 1; /* checked before any access */
	CHECK_EQ_INT(coord_state_import(&st, &cs, why, sizeof(why)), -E2BIG);
	cs.n_nodes = 0;
	cs.n_guests = COORD_MAX_GUESTS + 1;
	CHECK_EQ_INT(coord_state_import(&st, &cs, why, sizeof(why)), -E2BIG);
	coord_state_clear(&st);
}

static void test_sync_pick(void)
{
	uint64_t seqs[] = { 5, 7, 7, 2 };
	uint32_t senders[] = { 1, 3, 2, 4 };

	CHECK_EQ_INT(coord_sync_pick(seqs, senders, 4), 2);  /* seq 7, lowest id */
	CHECK_EQ_INT(coord_sync_pick(seqs, senders, 1), 0);
	CHECK_EQ_INT(coord_sync_pick(seqs, senders, 0), -1);
}

static void test_leader_pick(void)
{
	uint32_t cpg[] = { 3, 1, 2 };
	uint32_t q[] = { 2, 3 };

	CHECK_EQ_INT(coord_leader_pick(false, cpg, 3, q, 2), 0);
	CHECK_EQ_INT(coord_leader_pick(true, cpg, 3, q, 2), 2);  /* 1 not in quorum */
	CHECK_EQ_INT(coord_leader_pick(true, cpg, 3, NULL, 0), 1);
	CHECK_EQ_INT(coord_leader_pick(true, NULL, 0, q, 2), 0);
}

/* Issue 12, item 8: a current member's state wins over a newer-looking
 * stale one; without one, only every node together (or an operator)
 * makes the newest current. */
static void test_sync_choose(void)
{
	struct coord_sync_in in[] = {
		{ .seq = 9, .sender = 1 },                  /* stale, high seq */
		{ .seq = 7, .sender = 2, .current = true },
		{ .seq = 7, .sender = 3, .current = true },
	};
	uint32_t nodes[] = { 1, 2, 3, 4 };

	CHECK_EQ_INT(coord_sync_choose(in, 3), 1);
	CHECK(coord_sync_current(in, 3, nodes, 4));
	in[1].current = in[2].current = false;
	CHECK_EQ_INT(coord_sync_choose(in, 3), 0);
	CHECK(!coord_sync_current(in, 3, nodes, 4)); /* node 4 missing */
	CHECK(coord_sync_current(in, 3, nodes, 3));  /* every node */
	in[2].unblock = true;
	CHECK(coord_sync_current(in, 3, nodes, 4));
	CHECK_EQ_INT(coord_sync_choose(in, 0), -1);
	CHECK(!coord_sync_current(in, 0, nodes, 0));

	/* current until they lost quorum: preferred, and current when more
	 * than half of all nodes */
	in[2].unblock = false;
	in[1].was_current = in[2].was_current = true;
	CHECK_EQ_INT(coord_sync_choose(in, 3), 1);
	CHECK(coord_sync_current(in, 3, nodes, 3));   /* 2 of 3 */
	CHECK(!coord_sync_current(in, 3, nodes, 4));  /* 2 of 4 */
	in[2].was_current = false;
	CHECK(!coord_sync_current(in, 2, nodes, 3));  /* 1 of 3, and 3 missing */
}

/* Issue 12, item 9: only the membership's leader, in its epoch, in order. */
static void test_commit_check(void)
{
	uint32_t members[] = { 2, 3, 5 };
	Hactl__CpgCommit cm = HACTL__CPG_COMMIT__INIT;
	char why[256];

	cm.leader = 2;
	cm.seq = 8;
	cm.has_epoch = true;
	cm.epoch = 4;
	CHECK_EQ_INT(coord_commit_check(7, 4, members, 3, 2, &cm, why, sizeof(why)), 0);
	CHECK_EQ_INT(coord_commit_check(5, 4, members, 3, 2, &cm, why, sizeof(why)), 0);
	/* not after the state */
	CHECK_EQ_INT(coord_commit_check(8, 4, members, 3, 2, &cm, why, sizeof(why)), -ESTALE);
	CHECK(strstr(why, "seq 8 is not after 8") != NULL);
	/* another membership */
	CHECK_EQ_INT(coord_commit_check(7, 5, members, 3, 2, &cm, why, sizeof(why)), -ESTALE);
	CHECK(strstr(why, "epoch 4") != NULL);
	cm.has_epoch = false;
	CHECK_EQ_INT(coord_commit_check(7, 4, members, 3, 2, &cm, why, sizeof(why)), -ESTALE);
	cm.has_epoch = true;
	/* a member that is not the lowest, or a sender naming another */
	cm.leader = 3;
	CHECK_EQ_INT(coord_commit_check(7, 4, members, 3, 3, &cm, why, sizeof(why)), -EPERM);
	CHECK(strstr(why, "2 is") != NULL);
	CHECK_EQ_INT(coord_commit_check(7, 4, members, 3, 2, &cm, why, sizeof(why)), -EPERM);
	cm.leader = 2;
	CHECK_EQ_INT(coord_commit_check(7, 4, NULL, 0, 2, &cm, why, sizeof(why)), -EPERM);
}

/* A migration of hactl evacuate remembers the source as the guest's home
 * (maintenance off --return brings it back there); any other move forgets
 * it. */
static void test_evacuate_home(void)
{
	struct coord_state st;
	char why[256];
	const char *def = "[guest]\nname = g1\ntype = container\nmemory = 64M\n"
			  "command = /bin/true\n[storage]\ntemplate = container\n";
	Hactl__Change ch = HACTL__CHANGE__INIT;
	Hactl__GuestDefineChange gd = HACTL__GUEST_DEFINE_CHANGE__INIT;
	Hactl__GuestStartChange gs = HACTL__GUEST_START_CHANGE__INIT;
	Hactl__MigrateStartChange ms = HACTL__MIGRATE_START_CHANGE__INIT;
	Hactl__MigrateEndChange me = HACTL__MIGRATE_END_CHANGE__INIT;
	Hactl__GuestRecord *g;

	coord_state_init(&st);
	for (uint32_t id = 1; id <= 3; id++) {
		char name[8];

		snprintf(name, sizeof(name), "n%u", id);
		coord_state_node_add(&st, id, name);
	}
	gd.definition.data = (uint8_t *)def;
	gd.definition.len = strlen(def);
	ch.kind_case = HACTL__CHANGE__KIND_GUEST_DEFINE;
	ch.guest_define = &gd;
	CHECK_EQ_INT(coord_change_apply(&st, &ch, 1, why, sizeof(why)), 0);
	gs.name = "g1";
	gs.node = "n2";
	ch.kind_case = HACTL__CHANGE__KIND_GUEST_START;
	ch.guest_start = &gs;
	CHECK_EQ_INT(coord_change_apply(&st, &ch, 2, why, sizeof(why)), 0);
	g = (Hactl__GuestRecord *)coord_state_guest(&st, "g1");
	CHECK(g != NULL && g->owner == 2);
	if (g == NULL) {
		coord_state_clear(&st);
		return;
	}
	free(g->state);
	g->state = strdup("running"); /* as its agent reports */

	/* evacuated from n2 to n3: home n2 */
	ms.guest = "g1";
	ms.node = "n3";
	ms.has_evacuate = true;
	ms.evacuate = true;
	ch.kind_case = HACTL__CHANGE__KIND_MIGRATE_START;
	ch.migrate_start = &ms;
	CHECK_EQ_INT(coord_change_apply(&st, &ch, 3, why, sizeof(why)), 0);
	me.guest = "g1";
	me.id = g->migration ? g->migration->id : 0;
	if (g->migration) { /* as the destination reports */
		g->migration->has_received = true;
		g->migration->received = true;
	}
	me.commit = true;
	ch.kind_case = HACTL__CHANGE__KIND_MIGRATE_END;
	ch.migrate_end = &me;
	CHECK_EQ_INT(coord_change_apply(&st, &ch, 4, why, sizeof(why)), 0);
	CHECK_EQ_INT(g->owner, 3);
	CHECK(g->has_home && g->home == 2);

	/* moved back by an ordinary migration: home forgotten */
	ms.node = "n2";
	ms.has_evacuate = false;
	ms.evacuate = false;
	ch.kind_case = HACTL__CHANGE__KIND_MIGRATE_START;
	ch.migrate_start = &ms;
	CHECK_EQ_INT(coord_change_apply(&st, &ch, 5, why, sizeof(why)), 0);
	me.id = g->migration ? g->migration->id : 0;
	if (g->migration) {
		g->migration->has_received = true;
		g->migration->received = true;
	}
	ch.kind_case = HACTL__CHANGE__KIND_MIGRATE_END;
	ch.migrate_end = &me;
	CHECK_EQ_INT(coord_change_apply(&st, &ch, 6, why, sizeof(why)), 0);
	CHECK_EQ_INT(g->owner, 2);
	CHECK_EQ_INT(g->home, 0);
	coord_state_clear(&st);
}

/*
 * Found by the simulator (tests/golden/sim/stop_then_start_elsewhere,
 * lost_while_stopping, recover_restart_none): a guest still stopping on
 * its host (a graceful stop) is a copy there. A start goes to that host,
 * never to a second one; once the host is fenced (off) its last copy no
 * longer holds a start back.
 */
static void test_start_while_stopping(void)
{
	struct coord_state st;
	const uint32_t members[] = { 1, 2, 3 };
	struct coord_view v = { .members = members, .n_members = 3, .policy = NULL };
	const char *def = "[guest]\nname = g1\ntype = container\nmemory = 64M\n"
			  "command = /bin/true\n[storage]\ntemplate = container\n";
	Hactl__HostFacts hf = HACTL__HOST_FACTS__INIT;
	Hactl__Change ch = HACTL__CHANGE__INIT;
	Hactl__GuestDefineChange gd = HACTL__GUEST_DEFINE_CHANGE__INIT;
	Hactl__GuestStartChange gs = HACTL__GUEST_START_CHANGE__INIT;
	Hactl__GuestStopChange gstop = HACTL__GUEST_STOP_CHANGE__INIT;
	Hactl__NodeFenceChange nf = HACTL__NODE_FENCE_CHANGE__INIT;
	Hactl__GuestStatus rep = HACTL__GUEST_STATUS__INIT;
	const Hactl__GuestRecord *g;
	char why[256], node[64];

	coord_state_init(&st);
	hf.has_cpus = true;
	hf.cpus = 4;
	hf.has_mem_total_kib = true;
	hf.mem_total_kib = 8 << 20;
	for (uint32_t id = 1; id <= 3; id++) {
		char name[8];

		snprintf(name, sizeof(name), "n%u", id);
		coord_state_node_add(&st, id, name);
		CHECK_EQ_INT(coord_state_set_facts(&st, id, &hf, true), 0);
	}
	gd.definition.data = (uint8_t *)def;
	gd.definition.len = strlen(def);
	ch.kind_case = HACTL__CHANGE__KIND_GUEST_DEFINE;
	ch.guest_define = &gd;
	CHECK_EQ_INT(coord_change_apply(&st, &ch, 1, why, sizeof(why)), 0);
	gs.name = "g1";
	gs.node = "n3";
	ch.kind_case = HACTL__CHANGE__KIND_GUEST_START;
	ch.guest_start = &gs;
	CHECK_EQ_INT(coord_change_apply(&st, &ch, 2, why, sizeof(why)), 0);
	rep.name = "g1";
	rep.state = "running";
	rep.has_generation = true;
	rep.generation = 1;
	/* the owner's report of the writable layer reaches the record */
	rep.has_disk_used_bytes = true;
	rep.disk_used_bytes = 5 << 20;
	rep.has_disk_size_bytes = true;
	rep.disk_size_bytes = 1 << 30;
	coord_guest_status_apply(&st, 3, &rep, 3);
	g = coord_state_guest(&st, "g1");
	CHECK(g != NULL && g->has_disk_size_bytes && g->disk_size_bytes == 1 << 30 &&
	      g->disk_used_bytes == 5 << 20);
	rep.has_disk_used_bytes = rep.has_disk_size_bytes = false;
	gstop.name = "g1";
	ch.kind_case = HACTL__CHANGE__KIND_GUEST_STOP;
	ch.guest_stop = &gstop;
	CHECK_EQ_INT(coord_change_apply(&st, &ch, 4, why, sizeof(why)), 0);
	rep.state = "stopping";
	coord_guest_status_apply(&st, 3, &rep, 5);
	g = coord_state_guest(&st, "g1");
	CHECK(g != NULL && g->running_on == 3);

	/* not on a second node, named or placed */
	gs.node = "n1";
	ch.kind_case = HACTL__CHANGE__KIND_GUEST_START;
	ch.guest_start = &gs;
	CHECK_EQ_INT(coord_change_prepare(&st, &v, &ch, node, sizeof(node), why, sizeof(why)),
		     -EBUSY);
	CHECK(strstr(why, "still stopping on n3") != NULL);
	gs.node = "";
	CHECK_EQ_INT(coord_change_prepare(&st, &v, &ch, node, sizeof(node), why, sizeof(why)), 0);
	CHECK(strcmp(node, "n3") == 0);

	/* its host fenced: the copy is gone with it */
	nf.node = "n3";
	nf.fenced = true;
	nf.method = "agent";
	ch.kind_case = HACTL__CHANGE__KIND_NODE_FENCE;
	ch.node_fence = &nf;
	CHECK_EQ_INT(coord_change_apply(&st, &ch, 6, why, sizeof(why)), 0);
	gs.node = "n1";
	ch.kind_case = HACTL__CHANGE__KIND_GUEST_START;
	ch.guest_start = &gs;
	CHECK_EQ_INT(coord_change_prepare(&st, &v, &ch, node, sizeof(node), why, sizeof(why)), 0);
	CHECK(strcmp(node, "n1") == 0);
	coord_state_clear(&st);
}

/* Where a migration's source connects: the destination's [migration]
 * network address when its agent announced one, else its ring0 address. */
static void test_migration_address(void)
{
	struct coord_state st;
	char why[256];
	const char *def = "[guest]\nname = g1\ntype = container\nmemory = 64M\n"
			  "command = /bin/true\n[storage]\ntemplate = container\n";
	Hactl__Change ch = HACTL__CHANGE__INIT;
	Hactl__GuestDefineChange gd = HACTL__GUEST_DEFINE_CHANGE__INIT;
	Hactl__GuestStartChange gs = HACTL__GUEST_START_CHANGE__INIT;
	Hactl__MigrateStartChange ms = HACTL__MIGRATE_START_CHANGE__INIT;
	Hactl__MigrateEndChange me = HACTL__MIGRATE_END_CHANGE__INIT;
	Hactl__HostFacts f = HACTL__HOST_FACTS__INIT;
	Hactl__GuestRecord *g;

	coord_state_init(&st);
	for (uint32_t id = 1; id <= 3; id++) {
		char name[8];
		struct coord_node *n;

		snprintf(name, sizeof(name), "n%u", id);
		n = coord_state_node_add(&st, id, name);
		CHECK(n != NULL);
		if (n) {
			snprintf(n->address, sizeof(n->address), "10.213.0.%u", id);
		}
	}
	f.migration_address = "10.1.0.13";
	CHECK_EQ_INT(coord_state_set_facts(&st, 3, &f, true), 0);
	f.migration_address = "";
	CHECK_EQ_INT(coord_state_set_facts(&st, 2, &f, true), 0);
	gd.definition.data = (uint8_t *)def;
	gd.definition.len = strlen(def);
	ch.kind_case = HACTL__CHANGE__KIND_GUEST_DEFINE;
	ch.guest_define = &gd;
	CHECK_EQ_INT(coord_change_apply(&st, &ch, 1, why, sizeof(why)), 0);
	gs.name = "g1";
	gs.node = "n2";
	ch.kind_case = HACTL__CHANGE__KIND_GUEST_START;
	ch.guest_start = &gs;
	CHECK_EQ_INT(coord_change_apply(&st, &ch, 2, why, sizeof(why)), 0);
	g = (Hactl__GuestRecord *)coord_state_guest(&st, "g1");
	CHECK(g != NULL);
	if (g == NULL) {
		coord_state_clear(&st);
		return;
	}
	free(g->state);
	g->state = strdup("running");

	/* to n3, which announced 10.1.0.13 */
	ms.guest = "g1";
	ms.node = "n3";
	ch.kind_case = HACTL__CHANGE__KIND_MIGRATE_START;
	ch.migrate_start = &ms;
	CHECK_EQ_INT(coord_change_apply(&st, &ch, 3, why, sizeof(why)), 0);
	CHECK(g->migration && g->migration->dst_address &&
	      strcmp(g->migration->dst_address, "10.1.0.13") == 0);
	me.guest = "g1";
	me.id = g->migration ? g->migration->id : 0;
	if (g->migration) {
		g->migration->has_received = true;
		g->migration->received = true;
	}
	me.commit = true;
	ch.kind_case = HACTL__CHANGE__KIND_MIGRATE_END;
	ch.migrate_end = &me;
	CHECK_EQ_INT(coord_change_apply(&st, &ch, 4, why, sizeof(why)), 0);
	CHECK_EQ_INT(g->owner, 3);

	/* back to n2, whose agent announced none: its ring0 address */
	ms.node = "n2";
	ch.kind_case = HACTL__CHANGE__KIND_MIGRATE_START;
	ch.migrate_start = &ms;
	CHECK_EQ_INT(coord_change_apply(&st, &ch, 5, why, sizeof(why)), 0);
	CHECK(g->migration && g->migration->dst_address &&
	      strcmp(g->migration->dst_address, "10.213.0.2") == 0);
	coord_state_clear(&st);
}

/* A state with nodes n1..n3 and guests g1, g2 running on n2. */
static void jobs_setup(struct coord_state *st)
{
	char why[256];
	Hactl__Change ch = HACTL__CHANGE__INIT;
	Hactl__GuestDefineChange gd = HACTL__GUEST_DEFINE_CHANGE__INIT;
	Hactl__GuestStartChange gs = HACTL__GUEST_START_CHANGE__INIT;

	coord_state_init(st);
	for (uint32_t id = 1; id <= 3; id++) {
		char name[8];

		snprintf(name, sizeof(name), "n%u", id);
		coord_state_node_add(st, id, name);
	}
	for (int i = 1; i <= 2; i++) {
		char def[256], name[8];
		Hactl__GuestRecord *g;

		snprintf(name, sizeof(name), "g%d", i);
		snprintf(def, sizeof(def), "[guest]\nname = %s\ntype = container\nmemory = 64M\n"
			 "command = /bin/true\n[storage]\ntemplate = container\n", name);
		gd.definition.data = (uint8_t *)def;
		gd.definition.len = strlen(def);
		ch.kind_case = HACTL__CHANGE__KIND_GUEST_DEFINE;
		ch.guest_define = &gd;
		CHECK_EQ_INT(coord_change_apply(st, &ch, 1, why, sizeof(why)), 0);
		gs.name = name;
		gs.node = "n2";
		ch.kind_case = HACTL__CHANGE__KIND_GUEST_START;
		ch.guest_start = &gs;
		CHECK_EQ_INT(coord_change_apply(st, &ch, 2, why, sizeof(why)), 0);
		g = coord_state_guest(st, name);
		free(g->state);
		g->state = strdup("running"); /* as its agent reports */
	}
}

/*
 * Jobs (coord_job.c): what a JobStartChange may ask, a move's way through
 * its migration, the job's end, its survival of a state transfer, and the
 * bound on ended jobs kept.
 */
static void test_jobs(void)
{
	struct coord_state st, copy;
	char why[256];
	Hactl__Change ch = HACTL__CHANGE__INIT;
	Hactl__JobStartChange js = HACTL__JOB_START_CHANGE__INIT;
	Hactl__JobMoveChange jm = HACTL__JOB_MOVE_CHANGE__INIT;
	Hactl__JobMove m1 = HACTL__JOB_MOVE__INIT, m2 = HACTL__JOB_MOVE__INIT;
	Hactl__JobMove *mv[2] = { &m1, &m2 };
	Hactl__MigrateStartChange ms = HACTL__MIGRATE_START_CHANGE__INIT;
	Hactl__MigrateEndChange me = HACTL__MIGRATE_END_CHANGE__INIT;
	Hactl__ClusterState *cs;
	Hactl__GuestRecord *g;
	Hactl__Job *j;
	uint64_t id;

	jobs_setup(&st);
	ch.kind_case = HACTL__CHANGE__KIND_JOB_START;
	ch.job_start = &js;
	js.kind = "shuffle";
	CHECK_EQ_INT(coord_change_check(&st, &ch, why, sizeof(why)), -EINVAL);
	CHECK(strstr(why, "shuffle") != NULL);
	js.kind = "evacuate";
	js.node = "n9";
	CHECK_EQ_INT(coord_change_check(&st, &ch, why, sizeof(why)), -ENOENT);
	js.node = "n2";
	js.has_parallel = true;
	js.parallel = 0;
	CHECK_EQ_INT(coord_change_check(&st, &ch, why, sizeof(why)), -EINVAL);
	js.parallel = 2;
	CHECK_EQ_INT(coord_change_check(&st, &ch, why, sizeof(why)), 0);

	/* a client's balance plan: g1 to n3, g2 found no place */
	js.kind = "balance";
	js.node = NULL;
	m1.guest = "g1";
	m1.from = "n2";
	m1.to = "n3";
	m1.has_wave = true;
	m1.wave = 1;
	m2.guest = "gx";
	m2.to = "";
	js.moves = mv;
	js.n_moves = 2;
	CHECK_EQ_INT(coord_change_check(&st, &ch, why, sizeof(why)), -ENOENT);
	CHECK(strstr(why, "gx") != NULL);
	m2.guest = "g2";
	m2.reason = "anti-affinity";
	id = st.seq + 1;
	CHECK_EQ_INT(coord_change_apply(&st, &ch, 10, why, sizeof(why)), 0);
	j = coord_job_by_id(&st, id);
	CHECK(j != NULL && strcmp(j->state, "running") == 0 && j->n_moves == 2);
	if (j == NULL || j->n_moves != 2) {
		coord_state_clear(&st);
		return;
	}
	CHECK_EQ_STR(j->moves[0]->state, "pending");
	CHECK_EQ_STR(j->moves[1]->state, "failed");
	CHECK_EQ_STR(j->moves[1]->reason, "no place: anti-affinity");
	/* one balance job at a time */
	CHECK_EQ_INT(coord_change_check(&st, &ch, why, sizeof(why)), -EBUSY);

	/* the move runs as the job's migration, and its commit ends the job */
	ms.guest = "g1";
	ms.node = "n3";
	ms.has_job = true;
	ms.job = id;
	ch.kind_case = HACTL__CHANGE__KIND_MIGRATE_START;
	ch.migrate_start = &ms;
	CHECK_EQ_INT(coord_change_apply(&st, &ch, 11, why, sizeof(why)), 0);
	g = coord_state_guest(&st, "g1");
	CHECK(g->migration && g->migration->job == id);
	CHECK_EQ_STR(j->moves[0]->state, "running");
	CHECK(j->moves[0]->migration == g->migration->id);

	/* a state transfer carries the job */
	cs = coord_state_export(&st);
	coord_state_init(&copy);
	CHECK_EQ_INT(coord_state_import(&copy, cs, why, sizeof(why)), 0);
	coord_state_export_free(cs);
	CHECK(copy.n_jobs == 1 && copy.jobs[0]->id == id &&
	      strcmp(copy.jobs[0]->moves[0]->state, "running") == 0);
	coord_state_clear(&copy);

	me.guest = "g1";
	me.id = g->migration->id;
	me.commit = true;
	g->migration->has_received = true;
	g->migration->received = true;
	ch.kind_case = HACTL__CHANGE__KIND_MIGRATE_END;
	ch.migrate_end = &me;
	CHECK_EQ_INT(coord_change_apply(&st, &ch, 12, why, sizeof(why)), 0);
	CHECK_EQ_STR(j->moves[0]->state, "done");
	CHECK_EQ_STR(j->state, "done");
	CHECK(j->has_ended_ms && j->ended_ms == 12);
	/* an ended job cannot be cancelled */
	jm.job = id;
	jm.has_cancel = true;
	jm.cancel = true;
	ch.kind_case = HACTL__CHANGE__KIND_JOB_MOVE;
	ch.job_move = &jm;
	CHECK_EQ_INT(coord_change_check(&st, &ch, why, sizeof(why)), -ESRCH);

	/* ended jobs are kept, but only the newest eight */
	js.moves = NULL;
	js.n_moves = 0;
	ch.kind_case = HACTL__CHANGE__KIND_JOB_START;
	ch.job_start = &js;
	for (int i = 0; i < 12; i++) {
		CHECK_EQ_INT(coord_change_apply(&st, &ch, 20 + (uint64_t)i, why, sizeof(why)), 0);
	}
	CHECK_EQ_INT((int)st.n_jobs, 8);
	CHECK(st.jobs[7]->id == st.seq);
	coord_state_clear(&st);
}

static Hactl__Change *pause_ch(const char *name, bool pause)
{
	static Hactl__Change ch;
	static Hactl__GuestPauseChange p;

	hactl__change__init(&ch);
	hactl__guest_pause_change__init(&p);
	p.name = (char *)name;
	p.pause = pause;
	ch.kind_case = HACTL__CHANGE__KIND_GUEST_PAUSE;
	ch.guest_pause = &p;
	return &ch;
}

/* hactl pause / resume: refused for an unknown, a stopped, a migrating
 * guest and a resume of one not paused; a paused guest is not migrated;
 * stop clears the pause, a failover keeps it, and the engine pins it. */
static void test_pause(void)
{
	struct coord_state st;
	const uint32_t members[] = { 1, 2 };
	struct coord_view v = { .members = members, .n_members = 2, .policy = NULL };
	const char *def = "[guest]\nname = g1\ntype = container\nmemory = 64M\n"
			  "command = /bin/true\n[storage]\ntemplate = container\n";
	Hactl__HostFacts hf = HACTL__HOST_FACTS__INIT;
	Hactl__Change ch = HACTL__CHANGE__INIT;
	Hactl__GuestDefineChange gd = HACTL__GUEST_DEFINE_CHANGE__INIT;
	Hactl__GuestStartChange gs = HACTL__GUEST_START_CHANGE__INIT;
	Hactl__GuestStopChange gstop = HACTL__GUEST_STOP_CHANGE__INIT;
	Hactl__MigrateStartChange ms = HACTL__MIGRATE_START_CHANGE__INIT;
	Hactl__NodeFenceChange nf = HACTL__NODE_FENCE_CHANGE__INIT;
	Hactl__RecoverChange rc = HACTL__RECOVER_CHANGE__INIT;
	Hactl__RecoverPlacement rp = HACTL__RECOVER_PLACEMENT__INIT, *rps[1] = { &rp };
	Hactl__GuestStatus rep = HACTL__GUEST_STATUS__INIT;
	Hactl__GuestRecord *g;
	struct ha_bal_cluster *cl = NULL;
	char why[256], desc[128];
	uint64_t seq;

	coord_state_init(&st);
	hf.has_mem_total_kib = true;
	hf.mem_total_kib = 8 << 20;
	for (uint32_t id = 1; id <= 2; id++) {
		char name[8];

		snprintf(name, sizeof(name), "n%u", id);
		coord_state_node_add(&st, id, name);
		CHECK_EQ_INT(coord_state_set_facts(&st, id, &hf, true), 0);
	}
	CHECK_EQ_INT(coord_change_check(&st, pause_ch("nope", true), why, sizeof(why)), -ENOENT);
	CHECK(strstr(why, "unknown guest 'nope'") != NULL);
	gd.definition.data = (uint8_t *)def;
	gd.definition.len = strlen(def);
	ch.kind_case = HACTL__CHANGE__KIND_GUEST_DEFINE;
	ch.guest_define = &gd;
	CHECK_EQ_INT(coord_change_apply(&st, &ch, 1, why, sizeof(why)), 0);
	/* defined, stopped: neither paused nor resumed */
	CHECK_EQ_INT(coord_change_check(&st, pause_ch("g1", true), why, sizeof(why)), -ESRCH);
	CHECK(strstr(why, "guest 'g1' is stopped") != NULL);
	CHECK_EQ_INT(coord_change_check(&st, pause_ch("g1", false), why, sizeof(why)), -ESRCH);
	gs.name = "g1";
	gs.node = "n1";
	ch.kind_case = HACTL__CHANGE__KIND_GUEST_START;
	ch.guest_start = &gs;
	CHECK_EQ_INT(coord_change_apply(&st, &ch, 2, why, sizeof(why)), 0);
	rep.name = "g1";
	rep.state = "running";
	rep.has_generation = true;
	rep.generation = 1;
	coord_guest_status_apply(&st, 1, &rep, 3);
	g = coord_state_guest(&st, "g1");
	CHECK(!coord_guest_paused(g));
	CHECK_EQ_INT(coord_change_check(&st, pause_ch("g1", false), why, sizeof(why)), -EALREADY);
	CHECK(strstr(why, "guest 'g1' is not paused") != NULL);

	/* pause: desired stays running, the record says paused */
	seq = st.seq;
	CHECK_EQ_INT(coord_change_apply(&st, pause_ch("g1", true), 4, why, sizeof(why)), 0);
	CHECK(st.seq == seq + 1);
	g = coord_state_guest(&st, "g1");
	CHECK(coord_guest_paused(g) && coord_guest_wants_running(g) && g->owner == 1);
	coord_change_describe(pause_ch("g1", true), desc, sizeof(desc));
	CHECK(strcmp(desc, "pause g1") == 0);
	CHECK_EQ_INT(coord_change_check(&st, pause_ch("g1", true), why, sizeof(why)), -EALREADY);
	CHECK(strstr(why, "already paused") != NULL);
	rep.state = "paused";
	coord_guest_status_apply(&st, 1, &rep, 5);
	g = coord_state_guest(&st, "g1");
	CHECK(strcmp(g->state, "paused") == 0 && g->running_on == 1);

	/* a paused guest is not migrated, and the engine does not move it */
	ms.guest = "g1";
	ms.node = "n2";
	ch.kind_case = HACTL__CHANGE__KIND_MIGRATE_START;
	ch.migrate_start = &ms;
	CHECK_EQ_INT(coord_change_check(&st, &ch, why, sizeof(why)), -EBUSY);
	CHECK(strstr(why, "guest 'g1' is paused: resume it first") != NULL);
	CHECK_EQ_INT(coord_place_snapshot(&st, &v, 0, 0, &cl, why, sizeof(why)), 0);
	CHECK(cl != NULL && cl->n_guests == 1 && cl->guests[0].pinned);
	ha_bal_cluster_free(cl);
	cl = NULL;

	/* resume, then pause again: the stop clears it */
	CHECK_EQ_INT(coord_change_apply(&st, pause_ch("g1", false), 6, why, sizeof(why)), 0);
	CHECK(!coord_guest_paused(coord_state_guest(&st, "g1")));
	CHECK_EQ_INT(coord_change_apply(&st, pause_ch("g1", true), 7, why, sizeof(why)), 0);
	gstop.name = "g1";
	ch.kind_case = HACTL__CHANGE__KIND_GUEST_STOP;
	ch.guest_stop = &gstop;
	CHECK_EQ_INT(coord_change_apply(&st, &ch, 8, why, sizeof(why)), 0);
	g = coord_state_guest(&st, "g1");
	CHECK(!coord_guest_paused(g) && !coord_guest_wants_running(g));
	CHECK_EQ_INT(coord_change_check(&st, pause_ch("g1", true), why, sizeof(why)), -ESRCH);

	/* started and paused again; its node is fenced: the failover
	 * restores it paused on the survivor, and the engine may place it */
	ch.kind_case = HACTL__CHANGE__KIND_GUEST_START;
	ch.guest_start = &gs;
	CHECK_EQ_INT(coord_change_apply(&st, &ch, 9, why, sizeof(why)), 0);
	CHECK(!coord_guest_paused(coord_state_guest(&st, "g1")));
	CHECK_EQ_INT(coord_change_apply(&st, pause_ch("g1", true), 10, why, sizeof(why)), 0);
	nf.node = "n1";
	nf.fenced = true;
	nf.method = "agent";
	ch.kind_case = HACTL__CHANGE__KIND_NODE_FENCE;
	ch.node_fence = &nf;
	CHECK_EQ_INT(coord_change_apply(&st, &ch, 11, why, sizeof(why)), 0);
	CHECK_EQ_INT(coord_place_snapshot(&st, &v, 0, COORD_SNAP_FENCED_ONLY, &cl, why,
					  sizeof(why)), 0);
	CHECK(cl != NULL && cl->n_guests == 1 && !cl->guests[0].pinned);
	ha_bal_cluster_free(cl);
	rp.guest = "g1";
	rp.node = "n2";
	rp.mode = "snapshot";
	rc.n_placements = 1;
	rc.placements = rps;
	ch.kind_case = HACTL__CHANGE__KIND_RECOVER;
	ch.recover = &rc;
	CHECK_EQ_INT(coord_change_apply(&st, &ch, 12, why, sizeof(why)), 0);
	g = coord_state_guest(&st, "g1");
	CHECK(g->owner == 2 && coord_guest_paused(g) && coord_guest_wants_running(g));

	/* a migration in flight: no pause or resume until it ends */
	coord_pb_set_str(&g->state, "running");
	CHECK_EQ_INT(coord_change_apply(&st, pause_ch("g1", false), 13, why, sizeof(why)), 0);
	nf.node = "n1";
	nf.fenced = false;
	ch.kind_case = HACTL__CHANGE__KIND_NODE_FENCE;
	ch.node_fence = &nf;
	CHECK_EQ_INT(coord_change_apply(&st, &ch, 14, why, sizeof(why)), 0);
	ms.node = "n1";
	ch.kind_case = HACTL__CHANGE__KIND_MIGRATE_START;
	ch.migrate_start = &ms;
	CHECK_EQ_INT(coord_change_apply(&st, &ch, 15, why, sizeof(why)), 0);
	CHECK_EQ_INT(coord_change_check(&st, pause_ch("g1", true), why, sizeof(why)), -EBUSY);
	CHECK(strstr(why, "is migrating") != NULL);
	coord_state_clear(&st);
}

int main(void)
{
	test_migration_address();
	test_nodes();
	test_node_state();
	test_changes();
	test_export_import();
	test_import_bounds();
	test_sync_pick();
	test_leader_pick();
	test_commit_check();
	test_sync_choose();
	test_evacuate_home();
	test_start_while_stopping();
	test_jobs();
	test_pause();
	return ha_test_done("test_coord_state");
}
