/*
 * test_restart_policy.c - the restart policy of a guest:
 *  - the owner's decisions: restart in place with a growing, bounded
 *    delay up to max_restart, then give up; a guest that ran long enough
 *    starts over (common/restart.c);
 *  - the definition keys, their defaults and bounds;
 *  - the leader's decisions once the owner gave up: a relocation placed by
 *    the engine (not the failing node, anti-affinity kept), then state
 *    error with an alarm's text; `hactl start` clears it; a decision for
 *    an older generation does not apply (coord_place.c, coord_state.c).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "balance.h"
#include "coord_state.h"
#include "guestdef.h"
#include "harness.h"
#include "restart.h"

static void test_local(void)
{
	uint64_t d = 7;

	/* max_restart 3: 1 s, 2 s, 4 s, then give up */
	CHECK_EQ_INT(ha_restart_local(3, 1, &d), HA_RESTART_AGAIN);
	CHECK_EQ_INT(d, 1000);
	CHECK_EQ_INT(ha_restart_local(3, 2, &d), HA_RESTART_AGAIN);
	CHECK_EQ_INT(d, 2000);
	CHECK_EQ_INT(ha_restart_local(3, 3, &d), HA_RESTART_AGAIN);
	CHECK_EQ_INT(d, 4000);
	CHECK_EQ_INT(ha_restart_local(3, 4, &d), HA_RESTART_GIVE_UP);
	/* bounded: the delay never passes 60 s, however many restarts */
	CHECK_EQ_INT(ha_restart_local(100, 7, &d), HA_RESTART_AGAIN);
	CHECK_EQ_INT(d, 60000);
	CHECK_EQ_INT(ha_restart_local(100, 100, &d), HA_RESTART_AGAIN);
	CHECK_EQ_INT(d, HA_RESTART_DELAY_MAX_MS);
	CHECK_EQ_INT(ha_restart_local(100, 101, &d), HA_RESTART_GIVE_UP);
	/* max_restart 0: the first failure gives up here */
	CHECK_EQ_INT(ha_restart_local(0, 1, &d), HA_RESTART_GIVE_UP);
	/* counting: failures add up while it runs shortly, start over after
	 * HA_RESTART_STABLE_MS */
	CHECK_EQ_INT(ha_restart_fails_next(0, 0), 1);
	CHECK_EQ_INT(ha_restart_fails_next(1, 5000), 2);
	CHECK_EQ_INT(ha_restart_fails_next(2, HA_RESTART_STABLE_MS - 1), 3);
	CHECK_EQ_INT(ha_restart_fails_next(5, HA_RESTART_STABLE_MS), 1);
	CHECK_EQ_INT(ha_restart_fails_next(UINT32_MAX, 0), UINT32_MAX);
	/* the cluster: relocations up to max_relocate, then error */
	CHECK_EQ_INT(ha_restart_cluster(1, 0), HA_RESTART_RELOCATE);
	CHECK_EQ_INT(ha_restart_cluster(1, 1), HA_RESTART_ERROR);
	CHECK_EQ_INT(ha_restart_cluster(0, 0), HA_RESTART_ERROR);
	CHECK(strcmp(ha_restart_action_str(HA_RESTART_ERROR), "error") == 0);
	CHECK(strcmp(ha_restart_action_str(HA_RESTART_ACTION_MAX), "unknown") == 0);
}

#define BASE "[guest]\nname = g\ntype = container\ncommand = x\n[storage]\ntemplate = t\n"

static void test_keys(void)
{
	struct ha_guest_def def;
	char err[256];

	CHECK_EQ_INT(ha_guestdef_parse(BASE, strlen(BASE), "g.conf", &def, err, sizeof(err)), 0);
	CHECK_EQ_INT(def.max_restart, 1);
	CHECK_EQ_INT(def.max_relocate, 1);
	{
		const char *t = BASE "[ha]\nmax_restart = 5\nmax_relocate = 0\n";

		CHECK_EQ_INT(ha_guestdef_parse(t, strlen(t), "g.conf", &def, err, sizeof(err)), 0);
		CHECK_EQ_INT(def.max_restart, 5);
		CHECK_EQ_INT(def.max_relocate, 0);
	}
	{
		const char *t = BASE "[ha]\nmax_restart = 101\n";

		CHECK_EQ_INT(ha_guestdef_parse(t, strlen(t), "g.conf", &def, err, sizeof(err)),
			     -EINVAL);
		CHECK(strcmp(err, "g.conf:8: max_restart: '101' is not a number in 0..100") == 0);
	}
	{
		const char *t = BASE "[ha]\nmax_relocate = -1\n";

		CHECK_EQ_INT(ha_guestdef_parse(t, strlen(t), "g.conf", &def, err, sizeof(err)),
			     -EINVAL);
		CHECK(strstr(err, "max_relocate: '-1' is not a number in 0..100") != NULL);
	}
	{
		const char *t = BASE "[guest]\nmax_restart = 1\n";

		CHECK_EQ_INT(ha_guestdef_parse(t, strlen(t), "g.conf", &def, err, sizeof(err)),
			     -EINVAL);
		CHECK(strstr(err, "unknown option 'max_restart' in [guest]") != NULL);
	}
}

static Hactl__GuestRecord *guest(const char *name, uint32_t owner, const char *extra)
{
	Hactl__GuestRecord *g = calloc(1, sizeof(*g));
	char *def = NULL;

	hactl__guest_record__init(g);
	g->name = strdup(name);
	g->type = strdup("container");
	g->desired = strdup("running");
	g->state = strdup("running");
	g->has_owner = true;
	g->owner = owner;
	g->has_generation = true;
	g->generation = 4;
	if (asprintf(&def, "[guest]\nname = %s\ntype = container\ncommand = x\nmemory = 1G\n"
		     "[storage]\ntemplate = t\n%s", name, extra) < 0) {
		abort();
	}
	g->has_definition = true;
	g->definition.data = (uint8_t *)def;
	g->definition.len = strlen(def);
	return g;
}

static void cluster(struct coord_state *st)
{
	Hactl__HostFacts f = HACTL__HOST_FACTS__INIT;

	coord_state_init(st);
	f.has_mem_total_kib = true;
	f.mem_total_kib = 8 * 1024 * 1024;
	f.has_cpus = true;
	f.cpus = 4;
	for (uint32_t id = 1; id <= 3; id++) {
		char name[8];

		snprintf(name, sizeof(name), "n%u", id);
		coord_state_node_add(st, id, name);
		coord_state_set_facts(st, id, &f, true);
	}
	st->guests = calloc(4, sizeof(*st->guests));
	st->guests[st->n_guests++] = guest("flaky", 1, "[ha]\nmax_restart = 2\nmax_relocate = 1\n");
	st->guests[st->n_guests++] = guest("peer", 3, "");
}

/* The owner's report (soft state). */
static void report(struct coord_state *st, uint32_t node, const char *state, uint32_t restarts,
		   bool gave_up)
{
	Hactl__GuestStatus gs = HACTL__GUEST_STATUS__INIT;

	gs.name = "flaky";
	gs.state = (char *)state;
	gs.error = "flaky stopped unexpectedly";
	gs.has_generation = true;
	gs.generation = coord_state_guest(st, "flaky")->generation;
	gs.has_restarts = true;
	gs.restarts = restarts;
	gs.has_gave_up = gave_up;
	gs.gave_up = gave_up;
	coord_guest_status_apply(st, node, &gs, 1000);
}

static int decide_apply(struct coord_state *st, const struct coord_view *v, char *desc,
			size_t desclen)
{
	Hactl__GuestRelocateChange rc;
	Hactl__Change ch = HACTL__CHANGE__INIT;
	char node[64], reason[512], why[256];
	int n = coord_restart_decide(st, v, coord_state_guest(st, "flaky"), &rc, node,
				     sizeof(node), reason, sizeof(reason));

	if (n <= 0) {
		return n;
	}
	ch.kind_case = HACTL__CHANGE__KIND_GUEST_RELOCATE;
	ch.guest_relocate = &rc;
	coord_change_describe(&ch, desc, desclen);
	CHECK_EQ_INT(coord_change_apply(st, &ch, 2000, why, sizeof(why)), 0);
	/* the same decision again is stale: the generation moved on, or the
	 * guest is in error */
	CHECK(coord_change_apply(st, &ch, 2000, why, sizeof(why)) < 0);
	return n;
}

static void test_leader(void)
{
	struct coord_state st;
	uint32_t all[] = { 1, 2, 3 };
	struct ha_bal_policy *p = ha_bal_policy_new();
	const char *pol = "[anti-affinity web]\nguests = flaky, peer\n";
	struct coord_view v = { .members = all, .n_members = 3, .policy = p };
	Hactl__GuestRecord *g;
	char desc[512], err[256];

	CHECK_EQ_INT(ha_bal_policy_parse(p, "t.conf", pol, strlen(pol), err, sizeof(err)), 0);
	cluster(&st);
	/* restarting in place: nothing for the leader */
	report(&st, 1, "failed", 1, false);
	CHECK_EQ_INT(decide_apply(&st, &v, desc, sizeof(desc)), 0);
	CHECK_EQ_INT(coord_state_guest(&st, "flaky")->restarts, 1);
	/* a report for another generation does not count */
	{
		Hactl__GuestStatus gs = HACTL__GUEST_STATUS__INIT;

		gs.name = "flaky";
		gs.state = "failed";
		gs.has_generation = true;
		gs.generation = 3;
		gs.has_gave_up = true;
		gs.gave_up = true;
		coord_guest_status_apply(&st, 1, &gs, 1000);
		CHECK_EQ_INT(decide_apply(&st, &v, desc, sizeof(desc)), 0);
	}
	/* the owner gave up: relocated by the engine, not to n1 (failing) nor
	 * n3 (its anti-affinity peer): n2 */
	report(&st, 1, "failed", 3, true);
	CHECK_EQ_INT(decide_apply(&st, &v, desc, sizeof(desc)), 1);
	g = coord_state_guest(&st, "flaky");
	CHECK_EQ_INT(g->owner, 2);
	CHECK_EQ_INT(g->generation, 5);
	CHECK_EQ_INT(g->relocations, 1);
	CHECK_EQ_INT(g->restarts, 0);
	CHECK(strcmp(g->start_mode, "cold") == 0);
	CHECK(strstr(desc, "relocate flaky to n2") != NULL);
	CHECK(strstr(g->error, "failed 3 times on n1; relocation 1 of 1") != NULL);
	/* it fails on n2 as well: max_relocate reached, state error */
	report(&st, 2, "failed", 3, true);
	CHECK_EQ_INT(decide_apply(&st, &v, desc, sizeof(desc)), 1);
	g = coord_state_guest(&st, "flaky");
	CHECK(strcmp(g->state, "error") == 0);
	CHECK(strcmp(g->desired, "stopped") == 0);
	CHECK(g->restart_error);
	CHECK_EQ_INT(g->owner, 2);
	CHECK(strstr(desc, "guest flaky in state error") != NULL);
	CHECK(strstr(g->error, "after 1 relocations (max_relocate 1)") != NULL);
	/* the owner's reports of the stopped guest keep state error */
	report(&st, 2, "stopped", 0, false);
	CHECK(strcmp(coord_state_guest(&st, "flaky")->state, "error") == 0);
	CHECK_EQ_INT(decide_apply(&st, &v, desc, sizeof(desc)), 0);
	/* `hactl start` clears it */
	{
		Hactl__Change ch = HACTL__CHANGE__INIT;
		Hactl__GuestStartChange gs = HACTL__GUEST_START_CHANGE__INIT;
		char node[64], why[256];

		gs.name = "flaky";
		ch.kind_case = HACTL__CHANGE__KIND_GUEST_START;
		ch.guest_start = &gs;
		CHECK_EQ_INT(coord_change_prepare(&st, &v, &ch, node, sizeof(node), why,
						  sizeof(why)), 0);
		gs.node = node;
		CHECK_EQ_INT(coord_change_apply(&st, &ch, 3000, why, sizeof(why)), 0);
		g = coord_state_guest(&st, "flaky");
		CHECK(!g->restart_error);
		CHECK_EQ_INT(g->relocations, 0);
		CHECK_EQ_INT(g->restarts, 0);
		CHECK(strcmp(g->desired, "running") == 0);
		CHECK(strcmp(node, "n3") != 0); /* anti-affinity at start too */
	}
	coord_state_clear(&st);

	/* no other node can take it: error at once, saying why */
	cluster(&st);
	coord_state_node(&st, 2)->maintenance = true;
	report(&st, 1, "failed", 3, true);
	CHECK_EQ_INT(decide_apply(&st, &v, desc, sizeof(desc)), 1);
	g = coord_state_guest(&st, "flaky");
	CHECK(g->restart_error);
	CHECK(strstr(g->error, "no other node") != NULL);
	coord_state_clear(&st);

	/* an owner that is lost and fenced: recovery's, not the restart policy's */
	cluster(&st);
	report(&st, 1, "failed", 3, true);
	coord_state_node(&st, 1)->fenced = true;
	CHECK_EQ_INT(decide_apply(&st, &v, desc, sizeof(desc)), 0);
	/* lost, not yet fenced: nothing either (it may still run there) */
	coord_state_node(&st, 1)->fenced = false;
	{
		uint32_t two[] = { 2, 3 };
		struct coord_view v2 = { .members = two, .n_members = 2, .policy = p };

		CHECK_EQ_INT(decide_apply(&st, &v2, desc, sizeof(desc)), 0);
	}
	/* a copy reported running somewhere: nothing */
	coord_state_guest(&st, "flaky")->running_on = 2;
	CHECK_EQ_INT(decide_apply(&st, &v, desc, sizeof(desc)), 0);
	coord_state_guest(&st, "flaky")->running_on = 0;
	CHECK_EQ_INT(decide_apply(&st, &v, desc, sizeof(desc)), 1);
	coord_state_clear(&st);
	ha_bal_policy_free(p);
}

int main(void)
{
	test_local();
	test_keys();
	test_leader();
	return ha_test_done("test_restart_policy");
}
