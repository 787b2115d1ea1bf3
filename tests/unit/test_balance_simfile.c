/*
 * test_balance_simfile.c - the simulation file format: attributes and
 * their bounds, FILE:LINE errors, commands, the written form parsing back
 * to the same cluster.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "balance.h"
#include "harness.h"

static struct ha_bal_sim *parse_ok(const char *text)
{
	struct ha_bal_sim *sim = NULL;
	char err[512] = "";
	int rc = ha_bal_sim_parse("t.sim", text, strlen(text), &sim, err, sizeof(err));

	CHECK_EQ_INT(rc, 0);
	if (rc) {
		fprintf(stderr, "%s\n", err);
	}
	return sim;
}

static void expect_error(const char *text, const char *want)
{
	struct ha_bal_sim *sim = NULL;
	char err[512] = "";
	int rc = ha_bal_sim_parse("t.sim", text, strlen(text), &sim, err, sizeof(err));

	CHECK(rc < 0);
	CHECK(sim == NULL);
	if (strcmp(err, want) != 0) {
		fprintf(stderr, "error was '%s', expected '%s'\n", err, want);
		CHECK(!"error message");
	}
}

static void test_attributes(void)
{
	static const char text[] =
		"# comment line\n"
		"clock 3600   # trailing comment\n"
		"rounds 2\n"
		"policy p.conf\n"
		"node a cpus=8 mem=32G reserved=1G base=0.5 group=r1 priority=3 id=7\n"
		"node b cpus=4 mem=16384 state=maintenance types=container\n"
		"node c cpus=2 mem=1T state=offline types=container,domain\n"
		"\n"
		"guest g1 on=a mem=2G cpu=1.25 vcpus=2 dirty=30 type=domain ha=no "
		"priority=-5 pinned=yes group=r1 affinity=x,y anti=z moved=3000\n"
		"guest g2 mem=512M cpu=250m\n";
	struct ha_bal_sim *sim = parse_ok(text);
	const struct ha_bal_cluster *c;

	if (sim == NULL) {
		return;
	}
	c = sim->cluster;
	CHECK_EQ_INT(c->now_ms, 3600000);
	CHECK_EQ_INT(c->imbalanced_rounds, 2);
	CHECK(strcmp(sim->policy_file, "p.conf") == 0);
	CHECK_EQ_INT(c->n_nodes, 3);
	CHECK_EQ_INT(c->nodes[0].mem_mib, 32768);
	CHECK_EQ_INT(c->nodes[0].mem_reserved_mib, 1024);
	CHECK_EQ_INT(c->nodes[0].cpu_base_milli, 500);
	CHECK(strcmp(c->nodes[0].group, "r1") == 0);
	CHECK_EQ_INT(c->nodes[0].priority, 3);
	CHECK_EQ_INT(c->nodes[0].id, 7);
	CHECK(c->nodes[0].online && !c->nodes[0].maintenance);
	CHECK(c->nodes[1].online && c->nodes[1].maintenance);
	CHECK_EQ_INT(c->nodes[1].types, 1u << HA_BAL_CONTAINER);
	CHECK(!c->nodes[2].online);
	CHECK_EQ_INT(c->nodes[2].mem_mib, 1024 * 1024);
	CHECK_EQ_INT(c->nodes[2].types, 3);
	CHECK_EQ_INT(c->n_guests, 2);
	CHECK_EQ_INT(c->guests[0].node, 0);
	CHECK_EQ_INT(c->guests[0].cpu_milli, 1250);
	CHECK_EQ_INT(c->guests[0].vcpus, 2);
	CHECK_EQ_INT(c->guests[0].dirty_mibps, 30);
	CHECK_EQ_INT(c->guests[0].type, HA_BAL_DOMAIN);
	CHECK(!c->guests[0].ha && c->guests[0].pinned);
	CHECK_EQ_INT(c->guests[0].priority, -5);
	CHECK_EQ_INT(c->guests[0].last_move_ms, 3000000);
	CHECK_EQ_INT(c->guests[0].n_aff, 2);
	CHECK_EQ_INT(c->guests[0].n_anti, 1);
	CHECK(strcmp(c->labels[c->guests[0].anti[0]], "z") == 0);
	CHECK_EQ_INT(c->guests[1].node, -1);
	CHECK_EQ_INT(c->guests[1].mem_mib, 512);
	CHECK_EQ_INT(c->guests[1].cpu_milli, 250);
	CHECK(c->guests[1].ha);
	CHECK_EQ_INT(c->guests[1].vcpus, 1);
	CHECK_EQ_INT(sim->n_cmds, 0);
	ha_bal_sim_free(sim);
}

static void test_errors(void)
{
	expect_error("node a cpus=8\n", "t.sim:1: node a: cpus= and mem= are required");
	expect_error("node a cpus=0 mem=1G\n",
		     "t.sim:1: cpus: '0' is not a whole number in 1..65536");
	expect_error("node a cpus=8 mem=1G reserved=1G\n",
		     "t.sim:1: node a: reserved must be below mem");
	expect_error("node a cpus=1 mem=1G base=2\n", "t.sim:1: node a: base is more than its CPUs");
	expect_error("node a cpus=8 mem=1X\n",
		     "t.sim:1: mem: '1X' is not a size (MiB, or suffix M, G, T)");
	expect_error("node a cpus=8 mem=1G\nnode a cpus=8 mem=1G\n",
		     "t.sim:2: node a is defined twice");
	expect_error("node a cpus=8 mem=1G colour=red\n",
		     "t.sim:1: node: unknown attribute 'colour' (cpus, mem, reserved, base, group, "
		     "priority, state, types, id)");
	expect_error("node a cpus=8 mem=1G state=down\n",
		     "t.sim:1: state: 'down' is not online, offline or maintenance");
	expect_error("node a cpus=8 mem=1G types=vm\n",
		     "t.sim:1: types: 'vm' is not container or domain");
	expect_error("node a/b cpus=8 mem=1G\n",
		     "t.sim:1: node: 'a/b' is not a valid name (1..63 of A-Z a-z 0-9 . _ : @ -)");
	expect_error("node a cpus=8 mem=1G\nguest g on=b mem=1G\n", "t.sim:2: on: no node 'b'");
	expect_error("guest g cpu=1\n", "t.sim:1: guest g: mem= is required");
	expect_error("guest g mem=1G cpu=1.2345\n",
		     "t.sim:1: cpu: '1.2345' is not a CPU amount (1.5 or 1500m)");
	expect_error("guest g mem=1G cpu=-1\n",
		     "t.sim:1: cpu: '-1' is not a CPU amount (1.5 or 1500m)");
	expect_error("guest g mem=1G ha=perhaps\n", "t.sim:1: ha: 'perhaps' is not yes or no");
	expect_error("guest g mem=1G anti=a,b,c,d,e,f,g,h,i\n",
		     "t.sim:1: anti-affinity: more than 8 groups or labels");
	expect_error("guest g mem=1G affinity=a,b/c\n",
		     "t.sim:1: affinity: 'b/c' is not a valid group name");
	expect_error("guest g mem\n", "t.sim:1: 'mem' is not key=value");
	expect_error("guest g mem=\n", "t.sim:1: 'mem=' is not key=value");
	expect_error("frobnicate\n",
		     "t.sim:1: unknown directive 'frobnicate' (clock, rounds, policy, node, guest, "
		     "run, advance, set)");
	expect_error("clock -5\n", "t.sim:1: clock: '-5' is not a whole number in 0..3153600000");
	expect_error("run rebalance\nnode a cpus=1 mem=1G\n",
		     "t.sim:2: 'node' must come before the first command");
	expect_error("run shuffle\n",
		     "t.sim:1: run: rebalance, place GUEST, recover [NODE], evacuate NODE or relocate GUEST expected");
	expect_error("run place\n", "t.sim:1: run place: wrong number of arguments");
	expect_error("run rebalance now\n", "t.sim:1: run rebalance: wrong number of arguments");
	expect_error("run place g\n", "t.sim:1: run place: no guest 'g'");
	expect_error("node a cpus=1 mem=1G\nrun evacuate b\n", "t.sim:2: run evacuate: no node 'b'");
	expect_error("node a cpus=1 mem=1G\nset node a cpus=two\n",
		     "t.sim:2: cpus: 'two' is not a whole number in 1..65536");
	expect_error("node a cpus=1 mem=1G\nset node a id=3\n",
		     "t.sim:2: set node: 'id' cannot be changed");
	expect_error("node a cpus=1 mem=1G\nset guest x mem=1G\n", "t.sim:2: set: no guest 'x'");
	expect_error("advance\n", "t.sim:1: advance: SECONDS expected");
	{
		char *big = malloc(10000);

		memset(big, 'x', 9999);
		big[9999] = 0;
		expect_error(big, "t.sim:1: line longer than 8192 characters");
		free(big);
	}
	{
		struct ha_bal_sim *sim = NULL;
		char err[256];
		static const char nul[] = "node a cpus=1 mem=1G\nnode b\0 cpus=1\n";

		CHECK(ha_bal_sim_parse("t.sim", nul, sizeof(nul) - 1, &sim, err, sizeof(err)) < 0);
		CHECK(strcmp(err, "t.sim:2: NUL byte in the file") == 0);
	}
}

static void test_commands(void)
{
	static const char text[] =
		"clock 100\n"
		"node a cpus=8 mem=32G\n"
		"node b cpus=8 mem=32G\n"
		"guest g1 on=a mem=4G cpu=4\n"
		"guest g2 on=a mem=4G cpu=3\n"
		"guest g3 mem=1G\n"
		"run place g3\n"
		"advance 30\n"
		"set node b state=maintenance\n"
		"set guest g2 cpu=0.5 anti=q\n"
		"run rebalance\n"
		"run evacuate a\n"
		"run recover\n";
	struct ha_bal_sim *sim = parse_ok(text);
	struct ha_bal_policy *p = ha_bal_policy_new();
	char err[256];
	char *out = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&out, &len);
	int rc;

	if (sim == NULL) {
		return;
	}
	CHECK_EQ_INT(sim->n_cmds, 7);
	CHECK_EQ_INT(sim->cmds[0].kind, HA_BAL_SIM_RUN);
	CHECK_EQ_INT(sim->cmds[0].op, HA_BAL_OP_CREATE);
	CHECK(strcmp(sim->cmds[0].arg, "g3") == 0);
	CHECK_EQ_INT(sim->cmds[1].kind, HA_BAL_SIM_ADVANCE);
	CHECK_EQ_INT(sim->cmds[1].seconds, 30);
	CHECK_EQ_INT(sim->cmds[2].kind, HA_BAL_SIM_SET_NODE);
	CHECK_EQ_INT(sim->cmds[3].line, 10);
	/* checking "set" at parse time did not change the cluster */
	CHECK(!sim->cluster->nodes[1].maintenance);
	rc = ha_bal_sim_run(sim, p, "t.sim", ha_bal_sim_print_step, f, NULL, err, sizeof(err));
	fclose(f);
	CHECK_EQ_INT(rc, 0);
	CHECK_EQ_INT(sim->cluster->now_ms, 130000);
	CHECK(sim->cluster->nodes[1].maintenance);
	CHECK_EQ_INT(sim->cluster->guests[1].cpu_milli, 500);
	CHECK_EQ_INT(sim->cluster->guests[1].n_anti, 1);
	CHECK(out && strstr(out, "== 1: run place g3\n") != NULL);
	CHECK(out && strstr(out, "== 4: run recover\n") != NULL);
	/* g3 was placed on b (emptier); b then went into maintenance and
	 * the rebalance moved it back to a, the only node left */
	CHECK_EQ_INT(sim->cluster->guests[2].node, 0);
	free(out);
	ha_bal_policy_free(p);
	ha_bal_sim_free(sim);
}

static void test_roundtrip(void)
{
	static const char text[] =
		"clock 77\nrounds 1\n"
		"node a cpus=8 mem=32G reserved=512 base=250m group=g priority=-2 types=domain id=4\n"
		"node b cpus=4 mem=8G state=offline\n"
		"node c cpus=4 mem=8G state=maintenance\n"
		"guest x on=a mem=3000 cpu=1.001 vcpus=3 dirty=7 type=domain ha=no priority=9 "
		"pinned=yes group=g affinity=p,q anti=r moved=50\n"
		"guest y on=- mem=1 cpu=0\n";
	struct ha_bal_sim *a = parse_ok(text), *b = NULL;
	char err[256], *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);

	if (a == NULL) {
		return;
	}
	CHECK_EQ_INT(ha_bal_sim_write(f, a->cluster), 0);
	fclose(f);
	CHECK_EQ_INT(ha_bal_sim_parse("w.sim", buf, len, &b, err, sizeof(err)), 0);
	if (b) {
		CHECK_EQ_INT(b->cluster->now_ms, a->cluster->now_ms);
		CHECK_EQ_INT(b->cluster->imbalanced_rounds, 1);
		CHECK(memcmp(b->cluster->nodes, a->cluster->nodes,
			     3 * sizeof(struct ha_bal_node)) == 0);
		for (uint32_t i = 0; i < 2; i++) {
			const struct ha_bal_guest *x = &a->cluster->guests[i];
			const struct ha_bal_guest *y = &b->cluster->guests[i];

			CHECK(strcmp(x->name, y->name) == 0 && x->node == y->node &&
			      x->mem_mib == y->mem_mib && x->cpu_milli == y->cpu_milli &&
			      x->vcpus == y->vcpus && x->dirty_mibps == y->dirty_mibps &&
			      x->type == y->type && x->ha == y->ha && x->pinned == y->pinned &&
			      x->priority == y->priority && strcmp(x->group, y->group) == 0 &&
			      x->last_move_ms == y->last_move_ms && x->n_aff == y->n_aff &&
			      x->n_anti == y->n_anti);
		}
	} else {
		fprintf(stderr, "%s\n%s", err, buf);
	}
	free(buf);
	ha_bal_sim_free(a);
	ha_bal_sim_free(b);
}

int main(void)
{
	test_attributes();
	test_errors();
	test_commands();
	test_roundtrip();
	return ha_test_done("test_balance_simfile");
}
