/*
 * test_failover_place.c - placement at failover comes from the engine.
 *
 * A host is lost with a guest of an anti-affinity group and a guest bound
 * to a node group on it. The leader's recovery plan (coord_recover_plan)
 * must keep both rules, and must equal what `hactl simulate` computes on
 * the cluster as saved before the loss (the snapshot written in the
 * simulation format, "set node n1 state=offline" and "run recover").
 * The coordinator's former rule, most free memory, put both guests on n3.
 * Also: a start without a node and a relocation go through the engine.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "balance.h"
#include "coord_state.h"
#include "harness.h"

static const char POLICY[] =
	"[balance]\n"
	"cpu_weight = 0\n"
	"cpu_threshold = 100\n"
	"[group rackA]\n"
	"nodes = n1, n2\n"
	"guests = bound\n"
	"[group rackB]\n"
	"nodes = n3, n4\n"
	"[anti-affinity web]\n"
	"guests = web1, web2\n";

static Hactl__GuestRecord *guest(const char *name, uint32_t owner, const char *mem,
				 const char *extra)
{
	Hactl__GuestRecord *g = calloc(1, sizeof(*g));
	char *def = NULL;

	hactl__guest_record__init(g);
	g->name = strdup(name);
	g->type = strdup("container");
	g->desired = strdup("running");
	g->has_owner = true;
	g->owner = owner;
	if (asprintf(&def, "[guest]\nname = %s\ntype = container\ncommand = x\nmemory = %s\n"
		     "[storage]\ntemplate = t\n%s", name, mem, extra) < 0) {
		abort();
	}
	g->has_definition = true;
	g->definition.data = (uint8_t *)def;
	g->definition.len = strlen(def);
	/* measured CPU differs from node to node: nothing compared uses it */
	g->has_cpu_milli = true;
	g->cpu_milli = 100 * owner;
	return g;
}

/* n1..n4, 8 GiB each; n1 holds web1 and bound; most free memory: n3. */
static void cluster(struct coord_state *st)
{
	Hactl__HostFacts f = HACTL__HOST_FACTS__INIT;
	Hactl__HostUsage u = HACTL__HOST_USAGE__INIT;

	coord_state_init(st);
	f.has_mem_total_kib = true;
	f.mem_total_kib = 8 * 1024 * 1024;
	f.has_cpus = true;
	f.cpus = 4;
	f.qemu_version = "8.2.2";
	for (uint32_t id = 1; id <= 4; id++) {
		char name[8];

		snprintf(name, sizeof(name), "n%u", id);
		coord_state_node_add(st, id, name);
		coord_state_set_facts(st, id, &f, true);
		u.has_cpu_permille = true;
		u.cpu_permille = 200 * id; /* every host reads another CPU load */
		coord_state_set_usage(st, id, &u);
	}
	st->guests = calloc(8, sizeof(*st->guests));
	st->guests[st->n_guests++] = guest("web1", 1, "1G", "[ha]\npriority = 5\n");
	st->guests[st->n_guests++] = guest("bound", 1, "1G", "");
	st->guests[st->n_guests++] = guest("web2", 3, "1G", "");
	st->guests[st->n_guests++] = guest("fill2", 2, "4G", "");
	st->guests[st->n_guests++] = guest("fill4", 4, "3G", "");
	st->guests[st->n_guests++] = guest("other", 1, "512M", "[ha]\nrestart = none\n");
}

static struct ha_bal_policy *policy(void)
{
	struct ha_bal_policy *p = ha_bal_policy_new();
	char err[256];

	CHECK(p != NULL);
	CHECK_EQ_INT(ha_bal_policy_parse(p, "test.conf", POLICY, strlen(POLICY), err,
					 sizeof(err)), 0);
	return p;
}

struct sim_out {
	char got[8][2][HA_BAL_NAME_MAX]; /* guest, node ("" = none) */
	unsigned n;
};

static void sim_step(void *user, uint32_t step, const struct ha_bal_sim_cmd *cmd,
		     const struct ha_bal_cluster *c, const struct ha_bal_plan *plan)
{
	struct sim_out *o = user;

	(void)step;
	(void)cmd;
	for (uint32_t i = 0; i < plan->n_actions && o->n < 8; i++) {
		const struct ha_bal_action *a = &plan->actions[i];

		snprintf(o->got[o->n][0], HA_BAL_NAME_MAX, "%s", c->guests[a->guest].name);
		snprintf(o->got[o->n][1], HA_BAL_NAME_MAX, "%s",
			 a->kind == HA_BAL_ACT_PLACE ? c->nodes[a->to].name : "");
		o->n++;
	}
}

static const char *placed(const Hactl__RecoverChange *rc, const char *g)
{
	for (size_t i = 0; i < rc->n_placements; i++) {
		if (strcmp(rc->placements[i]->guest, g) == 0) {
			return rc->placements[i]->node ? rc->placements[i]->node : "";
		}
	}
	return NULL;
}

static void test_recover_equals_simulate(void)
{
	struct coord_state st;
	uint32_t all[] = { 1, 2, 3, 4 }, survivors[] = { 2, 3, 4 };
	struct ha_bal_policy *p = policy();
	struct coord_view before = { .members = all, .n_members = 4, .policy = p };
	struct coord_view after = { .members = survivors, .n_members = 3, .policy = p };
	struct ha_bal_cluster *saved = NULL;
	struct ha_bal_sim *sim = NULL;
	struct sim_out o = { 0 };
	Hactl__RecoverChange rc;
	char *text = NULL, why[256];
	size_t len = 0;
	FILE *f;

	cluster(&st);
	/* `hactl balance --save` before the loss */
	CHECK_EQ_INT(coord_place_snapshot(&st, &before, 1000, 0, &saved, why, sizeof(why)), 0);
	f = open_memstream(&text, &len);
	CHECK_EQ_INT(ha_bal_sim_write(f, saved), 0);
	fputs("set node n1 state=offline\nrun recover\n", f);
	fclose(f);
	ha_bal_cluster_free(saved);

	/* n1 is lost and fenced; its usage changes nothing */
	coord_state_node(&st, 1)->fenced = true;
	coord_state_node(&st, 1)->agent_connected = false;
	CHECK_EQ_INT(coord_recover_plan(&st, &after, &rc), 3);
	CHECK(placed(&rc, "web1") && placed(&rc, "bound") && placed(&rc, "other"));
	/* anti-affinity: web1 never joins web2 on n3 */
	CHECK(placed(&rc, "web1") && placed(&rc, "web1")[0] &&
	      strcmp(placed(&rc, "web1"), "n3") != 0);
	/* the group binding: bound stays in rackA, so on n2 */
	CHECK(placed(&rc, "bound") && strcmp(placed(&rc, "bound"), "n2") == 0);
	/* not HA: stays down */
	CHECK(placed(&rc, "other") && placed(&rc, "other")[0] == 0);

	/* the simulation of the saved input gives the same, in the same order */
	CHECK_EQ_INT(ha_bal_sim_parse("saved.sim", text, len, &sim, why, sizeof(why)), 0);
	if (sim) {
		CHECK_EQ_INT(ha_bal_sim_run(sim, p, "saved.sim", sim_step, &o, NULL, why,
					    sizeof(why)), 0);
	}
	CHECK_EQ_INT(o.n, rc.n_placements);
	for (unsigned i = 0; i < o.n && i < rc.n_placements; i++) {
		const Hactl__RecoverPlacement *pl = rc.placements[i];

		CHECK(strcmp(o.got[i][0], pl->guest) == 0);
		CHECK(strcmp(o.got[i][1], pl->node ? pl->node : "") == 0);
		if (strcmp(o.got[i][0], pl->guest) != 0 ||
		    strcmp(o.got[i][1], pl->node ? pl->node : "") != 0) {
			fprintf(stderr, "simulate %s->%s, recovery %s->%s\n", o.got[i][0],
				o.got[i][1], pl->guest, pl->node ? pl->node : "");
		}
	}
	ha_bal_sim_free(sim);
	free(text);

	/* applied: the guests are owned by their new nodes */
	{
		Hactl__Change ch = HACTL__CHANGE__INIT;

		ch.kind_case = HACTL__CHANGE__KIND_RECOVER;
		ch.recover = &rc;
		CHECK_EQ_INT(coord_change_apply(&st, &ch, 1, why, sizeof(why)), 0);
		CHECK_EQ_INT(coord_state_guest(&st, "bound")->owner, 2);
	}
	coord_recover_plan_free(&rc);
	coord_state_clear(&st);
	ha_bal_policy_free(p);
}

/* Without a policy (no file) the built-in defaults decide, still hard on
 * capacity; a lost node not yet fenced keeps its guests. */
static void test_recover_defaults(void)
{
	struct coord_state st;
	uint32_t survivors[] = { 2, 3, 4 };
	struct coord_view v = { .members = survivors, .n_members = 3 };
	Hactl__RecoverChange rc;

	cluster(&st);
	CHECK_EQ_INT(coord_recover_plan(&st, &v, &rc), 0); /* n1 lost, not fenced */
	coord_recover_plan_free(&rc);
	coord_state_node(&st, 1)->fenced = true;
	CHECK_EQ_INT(coord_recover_plan(&st, &v, &rc), 3);
	CHECK(placed(&rc, "web1") && placed(&rc, "web1")[0]);
	coord_recover_plan_free(&rc);
	coord_state_clear(&st);
}

/* A start without a node: the engine's CREATE with the policy in force. */
static void test_start_placed_by_engine(void)
{
	struct coord_state st;
	uint32_t all[] = { 1, 2, 3, 4 };
	struct ha_bal_policy *p = policy();
	struct coord_view v = { .members = all, .n_members = 4, .policy = p };
	Hactl__Change ch = HACTL__CHANGE__INIT;
	Hactl__GuestStartChange gs = HACTL__GUEST_START_CHANGE__INIT;
	const char *def = "[guest]\nname = web3\ntype = container\ncommand = x\n"
			  "memory = 1G\n[storage]\ntemplate = t\n";
	char node[64], why[256];

	cluster(&st);
	/* web3 joins the anti-affinity group: not n1 (web1) nor n3 (web2) */
	{
		struct ha_bal_policy *p2 = ha_bal_policy_new();
		const char *txt = "[balance]\ncpu_weight = 0\n[anti-affinity web]\n"
				  "guests = web1, web2, web3\n";
		char err[256];

		CHECK_EQ_INT(ha_bal_policy_parse(p2, "t.conf", txt, strlen(txt), err,
						 sizeof(err)), 0);
		v.policy = p2;
		gs.name = "web3";
		gs.has_definition = true;
		gs.definition.data = (uint8_t *)def;
		gs.definition.len = strlen(def);
		ch.kind_case = HACTL__CHANGE__KIND_GUEST_START;
		ch.guest_start = &gs;
		CHECK_EQ_INT(coord_change_prepare(&st, &v, &ch, node, sizeof(node), why,
						  sizeof(why)), 0);
		CHECK(strcmp(node, "n2") == 0 || strcmp(node, "n4") == 0);
		v.policy = p;
		ha_bal_policy_free(p2);
	}
	/* a relocation avoids the node it fails on and keeps the group */
	CHECK_EQ_INT(coord_place_new(&st, &v, "bound", &(struct ha_guest_def){ .mem_kib = 1 << 20 },
				     "n1", node, sizeof(node), why, sizeof(why)), 0);
	CHECK(strcmp(node, "n2") == 0);
	/* nowhere to go: n2 is rackA's only other node, and it is full */
	{
		Hactl__GuestRecord *big = guest("huge", 2, "7G", "");

		st.guests[st.n_guests++] = big;
	}
	CHECK_EQ_INT(coord_place_new(&st, &v, "bound", &(struct ha_guest_def){ .mem_kib = 1 << 20 },
				     "n1", node, sizeof(node), why, sizeof(why)), -ENOSPC);
	CHECK(strstr(why, "no node can take 'bound'") != NULL);
	coord_state_clear(&st);
	ha_bal_policy_free(p);
}

int main(void)
{
	test_recover_equals_simulate();
	test_recover_defaults();
	test_start_placed_by_engine();
	return ha_test_done("test_failover_place");
}
