/*
 * test_balance_policy.c - policy files: defaults, every option, sections,
 * FILE:LINE errors, policy.d directories, reload semantics, round trip.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bal_int.h"
#include "balance.h"
#include "harness.h"
#include "util.h"

static int parse_str(struct ha_bal_policy *p, const char *text, char *err, size_t len)
{
	return ha_bal_policy_parse(p, "t.conf", text, strlen(text), err, len);
}

/* Parses @text into a fresh policy and checks the error message. */
static void expect_error(const char *text, const char *want)
{
	struct ha_bal_policy *p = ha_bal_policy_new();
	char err[512] = "";
	int rc = parse_str(p, text, err, sizeof(err));

	CHECK_EQ_INT(rc, -EINVAL);
	if (strcmp(err, want) != 0) {
		fprintf(stderr, "error was '%s', expected '%s'\n", err, want);
		CHECK(!"error message");
	}
	ha_bal_policy_free(p);
}

static void test_defaults(void)
{
	struct ha_bal_policy *p = ha_bal_policy_new();

	CHECK(p != NULL);
	CHECK(p->enabled);
	CHECK_EQ_INT(p->strategy, HA_BAL_STRATEGY_BALANCE);
	CHECK_EQ_INT(p->interval_s, 60);
	CHECK(p->cpu_threshold == 85);
	CHECK(p->mem_threshold == 90);
	CHECK(p->imbalance_threshold == 10);
	CHECK_EQ_INT(p->hold_rounds, 3);
	CHECK_EQ_INT(p->hold_time_s, 600);
	CHECK_EQ_INT(p->max_moves, 8);
	CHECK_EQ_INT(p->max_parallel, 2);
	CHECK_EQ_INT(p->max_parallel_node, 1);
	CHECK_EQ_INT(p->max_move_mem_mib, 0);
	CHECK(p->n_plus_one);
	CHECK_EQ_INT(p->bandwidth_mibps, 1000);
	CHECK(p->vcpu_weight == 0);
	CHECK(p->max_vcpu_ratio == 0);
	/* every table entry has a default that parses */
	for (const struct ha_bal_opt *o = ha_bal_policy_options(); o->name; o++) {
		char text[256], err[256];

		snprintf(text, sizeof(text), "[balance]\n%s = %s\n", o->name, o->def);
		CHECK_EQ_INT(parse_str(p, text, err, sizeof(err)), 0);
		CHECK(o->help && o->help[0]);
	}
	ha_bal_policy_free(p);
}

static void test_full(void)
{
	static const char text[] =
		"; a policy with every kind of section\n"
		"[balance]\n"
		"strategy = pack\n"
		"cpu_threshold = 70.5   ; inline comment\n"
		"mem_threshold = 80\n"
		"hold_rounds = 1\n"
		"max_move_mem = 64G\n"
		"enabled = no\n"
		"n_plus_one = off\n"
		"\n"
		"[group rack1]\n"
		"priority = 5\n"
		"nodes = n1, n2:7\n"
		"  n3\n"
		"guests = web1 web2\n"
		"\n"
		"[node n9]\n"
		"priority = -3\n"
		"\n"
		"[affinity stack]\n"
		"guests = app, cache\n"
		"[anti-affinity stack]\n"
		"guests = db1, db2\n"
		"[group rack1]\n"
		"guests = web3\n";
	struct ha_bal_policy *p = ha_bal_policy_new();
	char err[256] = "";
	int rc = parse_str(p, text, err, sizeof(err));

	CHECK_EQ_INT(rc, 0);
	if (rc) {
		fprintf(stderr, "%s\n", err);
	}
	CHECK_EQ_INT(p->strategy, HA_BAL_STRATEGY_PACK);
	CHECK(p->cpu_threshold == 70.5);
	CHECK(p->mem_threshold == 80);
	CHECK_EQ_INT(p->hold_rounds, 1);
	CHECK_EQ_INT(p->max_move_mem_mib, 65536);
	CHECK(!p->enabled);
	CHECK(!p->n_plus_one);
	CHECK_EQ_INT(p->rules->n_groups, 1);
	CHECK_EQ_INT(p->rules->groups[0].nodes.n, 3);
	CHECK(strcmp(p->rules->groups[0].nodes.v[1], "n2:7") == 0);
	CHECK(strcmp(p->rules->groups[0].nodes.v[2], "n3") == 0);
	CHECK_EQ_INT(p->rules->groups[0].nodes.line[2], 14);
	CHECK_EQ_INT(p->rules->groups[0].guests.n, 3);
	CHECK(p->rules->groups[0].has_priority);
	CHECK_EQ_INT(p->rules->groups[0].priority, 5);
	CHECK_EQ_INT(p->rules->n_nodes, 1);
	CHECK_EQ_INT(p->rules->nodes[0].priority, -3);
	CHECK_EQ_INT(p->rules->n_labels, 2);
	CHECK_EQ_INT(p->rules->labels[0].kind, HA_BAL_AFFINITY);
	CHECK_EQ_INT(p->rules->labels[1].kind, HA_BAL_ANTI_AFFINITY);
	CHECK_EQ_INT(p->rules->labels[1].guests.n, 2);
	ha_bal_policy_free(p);
}

static void test_errors(void)
{
	char longline[400];

	expect_error("[balance]\nfoo = 1\n", "t.conf:2: [balance]: unknown option 'foo'");
	expect_error("[balance]\n\ncpu_threshold = 101\n",
		     "t.conf:3: cpu_threshold: '101' is not a number in 1..100");
	expect_error("[balance]\ncpu_threshold = 0x10\n",
		     "t.conf:2: cpu_threshold: '0x10' is not a number in 1..100");
	expect_error("[balance]\nmin_gain = nan\n",
		     "t.conf:2: min_gain: 'nan' is not a number in 0..1000000");
	expect_error("[balance]\nhold_rounds = 0\n",
		     "t.conf:2: hold_rounds: '0' is not a whole number in 1..1000");
	expect_error("[balance]\nhold_rounds = -1\n",
		     "t.conf:2: hold_rounds: '-1' is not a whole number in 1..1000");
	expect_error("[balance]\nenabled = maybe\n", "t.conf:2: enabled: 'maybe' is not yes or no");
	expect_error("[balance]\nstrategy = spread\n",
		     "t.conf:2: strategy: 'spread' is not balance or pack");
	expect_error("[balance]\nmax_move_mem = 12Q\n",
		     "t.conf:2: max_move_mem: '12Q' is not a size in MiB (suffix M, G, T allowed) up to 1099511627776");
	expect_error("cpu_threshold = 50\n",
		     "t.conf:1: 'cpu_threshold' outside a section; options go under [balance]");
	expect_error("[balanse]\nx = 1\n",
		     "t.conf:2: unknown section [balanse] (balance, group NAME, node NAME, affinity NAME, anti-affinity NAME)");
	expect_error("[group a b]\npriority = 1\n",
		     "t.conf:2: [group]: 'a b' is not a valid name (1..63 of A-Z a-z 0-9 . _ : @ -)");
	expect_error("[group g]\ncolour = red\n",
		     "t.conf:2: [group g]: unknown key 'colour' (priority, nodes, guests)");
	expect_error("[group g]\npriority = high\n",
		     "t.conf:2: priority: 'high' is not a whole number in -1000000..1000000");
	expect_error("[group g]\nnodes = n1:x\n",
		     "t.conf:2: nodes: 'x' is not a whole number in -1000000..1000000");
	expect_error("[group g]\nnodes = n1\n[group h]\nnodes = n2, n1\n",
		     "t.conf:4: node n1 is already in group g (line 2)");
	expect_error("[group g]\nguests = a\n[group h]\nguests = a\n",
		     "t.conf:4: guest a is already bound to group g (line 2)");
	expect_error("[affinity x]\nguests = a, b/c\n",
		     "t.conf:2: guests: 'b/c' is not a valid guest name");
	expect_error("[node n1]\ngroup = g\n", "t.conf:2: [node n1]: unknown key 'group' (priority)");
	expect_error("[balance]\ncpu_threshold = 50\n[broken\n",
		     "t.conf:3: syntax error (expected [section] or name = value)");
	expect_error("[balance]\njust a line\n",
		     "t.conf:2: syntax error (expected [section] or name = value)");
	memset(longline, 'a', sizeof(longline));
	memcpy(longline, "[balance]\n", 10);
	longline[sizeof(longline) - 1] = 0;
	expect_error(longline, "t.conf:2: line longer than 198 characters");
	{
		struct ha_bal_policy *p = ha_bal_policy_new();
		char err[256];
		static const char nul[] = "[balance]\nhold_rounds = 1\0\n";

		CHECK_EQ_INT(ha_bal_policy_parse(p, "t.conf", nul, sizeof(nul) - 1, err,
						 sizeof(err)), -EINVAL);
		CHECK(strcmp(err, "t.conf:2: NUL byte in the file") == 0);
		ha_bal_policy_free(p);
	}
}

static char tmpdir[64];

static void write_file(const char *name, const char *text)
{
	char path[256];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", tmpdir, name);
	f = fopen(path, "w");
	CHECK(f != NULL);
	if (f) {
		fputs(text, f);
		fclose(f);
	}
}

static void test_dir(void)
{
	struct ha_bal_policy *p = NULL, *old;
	char err[512], want[512], path[256];

	snprintf(tmpdir, sizeof(tmpdir), "/tmp/ha-bal-policy-XXXXXX");
	CHECK(mkdtemp(tmpdir) != NULL);
	/* empty directory: the defaults */
	CHECK_EQ_INT(ha_bal_policy_load(tmpdir, &p, err, sizeof(err)), 0);
	CHECK(p && p->hold_rounds == 3);
	ha_bal_policy_free(p);
	p = NULL;

	write_file("10-base.conf", "[balance]\nhold_rounds = 2\nmax_moves = 4\n"
				   "[affinity a]\nguests = x, y\n");
	write_file("20-site.conf", "[balance]\nmax_moves = 6\n[affinity a]\nguests = z\n");
	write_file("README", "not a policy file [\n");
	write_file(".hidden.conf", "garbage\n");
	CHECK_EQ_INT(ha_bal_policy_load(tmpdir, &p, err, sizeof(err)), 0);
	CHECK(p != NULL);
	if (p) {
		CHECK_EQ_INT(p->hold_rounds, 2);
		CHECK_EQ_INT(p->max_moves, 6); /* the later file wins */
		CHECK_EQ_INT(p->rules->n_labels, 1);
		CHECK_EQ_INT(p->rules->labels[0].guests.n, 3); /* sections add up */
	}
	/* reload with a bad file: an error naming it, the old policy stays */
	old = p;
	write_file("30-bad.conf", "[balance]\n\nmax_parallel = 5000\n");
	CHECK_EQ_INT(ha_bal_policy_load(tmpdir, &p, err, sizeof(err)), -EINVAL);
	snprintf(want, sizeof(want), "%s/30-bad.conf:3: max_parallel: '5000' is not a whole "
				     "number in 1..1024", tmpdir);
	CHECK(strcmp(err, want) == 0);
	CHECK(p == old);
	/* a conflict across files, found after parsing */
	write_file("30-bad.conf", "[anti-affinity a]\nguests = q\n\tx z\n");
	CHECK_EQ_INT(ha_bal_policy_load(tmpdir, &p, err, sizeof(err)), -EINVAL);
	snprintf(want, sizeof(want), "%s/30-bad.conf:3: guests x and z must share a node "
				     "(affinity) and must not (anti-affinity a)", tmpdir);
	if (strcmp(err, want) != 0) {
		fprintf(stderr, "got '%s'\n", err);
	}
	CHECK(strcmp(err, want) == 0);
	CHECK(p == old);
	ha_bal_policy_free(old);
	/* a single file; a missing path */
	snprintf(path, sizeof(path), "%s/10-base.conf", tmpdir);
	CHECK_EQ_INT(ha_bal_policy_load(path, &p, err, sizeof(err)), 0);
	CHECK_EQ_INT(p->max_moves, 4);
	ha_bal_policy_free(p);
	snprintf(path, sizeof(path), "%s/nope.conf", tmpdir);
	CHECK_EQ_INT(ha_bal_policy_load(path, &p, err, sizeof(err)), -ENOENT);
	/* clean up */
	const char *files[] = { "10-base.conf", "20-site.conf", "30-bad.conf", "README",
				".hidden.conf" };
	for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
		snprintf(path, sizeof(path), "%s/%s", tmpdir, files[i]);
		unlink(path);
	}
	CHECK_EQ_INT(rmdir(tmpdir), 0);
}

static void test_roundtrip(void)
{
	static const char text[] =
		"[balance]\nstrategy = pack\ncpu_threshold = 61.25\nmin_gain = 0.5\n"
		"max_move_mem = 3T\n"
		"[group g1]\npriority = 2\nnodes = a b:3 c d e f g h i j k\nguests = x\n"
		"[node zz]\npriority = 9\n"
		"[anti-affinity q]\nguests = m n o\n";
	struct ha_bal_policy *p = ha_bal_policy_new(), *q = ha_bal_policy_new();
	char err[256], *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);

	CHECK_EQ_INT(parse_str(p, text, err, sizeof(err)), 0);
	ha_bal_policy_print(p, f);
	fclose(f);
	CHECK_EQ_INT(ha_bal_policy_parse(q, "printed", buf, len, err, sizeof(err)), 0);
	for (const struct ha_bal_opt *o = ha_bal_policy_options(); o->name; o++) {
		size_t sz = o->type == HA_BAL_OPT_BOOL ? sizeof(bool) :
			    o->type == HA_BAL_OPT_UINT ? sizeof(uint32_t) :
			    o->type == HA_BAL_OPT_DOUBLE ? sizeof(double) :
			    o->type == HA_BAL_OPT_MEM ? sizeof(uint64_t) :
							 sizeof(enum ha_bal_strategy);

		if (memcmp((char *)p + o->offset, (char *)q + o->offset, sz) != 0) {
			fprintf(stderr, "option %s differs after the round trip\n", o->name);
			CHECK(!"round trip");
		}
	}
	CHECK_EQ_INT(q->rules->n_groups, 1);
	CHECK_EQ_INT(q->rules->groups[0].nodes.n, 11);
	CHECK_EQ_INT(q->rules->groups[0].priority, 2);
	CHECK_EQ_INT(q->rules->n_nodes, 1);
	CHECK_EQ_INT(q->rules->n_labels, 1);
	CHECK_EQ_INT(q->rules->labels[0].guests.n, 3);
	free(buf);
	ha_bal_policy_free(p);
	ha_bal_policy_free(q);
}

/* docs/balancing.md carries the option table: it must equal the code's. */
static void test_docs(void)
{
	const char *src = getenv("HA_SRC_DIR");
	const char *b = "<!-- policy-options: begin -->\n", *e = "<!-- policy-options: end -->";
	char path[4096], *want = NULL, *start, *end;
	uint8_t *doc = NULL;
	size_t len = 0, wlen = 0;
	FILE *f;

	if (src == NULL) {
		return;
	}
	snprintf(path, sizeof(path), "%s/docs/balancing.md", src);
	CHECK_EQ_INT(ha_file_read(path, 1 << 20, &doc, &len), 0);
	if (doc == NULL) {
		return;
	}
	start = strstr((char *)doc, b);
	end = start ? strstr(start, e) : NULL;
	CHECK(start && end);
	f = open_memstream(&want, &wlen);
	ha_bal_policy_options_markdown(f);
	fclose(f);
	if (start && end) {
		start += strlen(b);
		*end = 0;
		if (strcmp(start, want) != 0) {
			fprintf(stderr, "docs/balancing.md: the option table differs; it should be:\n%s",
				want);
			CHECK(!"docs table up to date");
		}
	}
	free(want);
	free(doc);
}

int main(void)
{
	test_docs();
	test_defaults();
	test_full();
	test_errors();
	test_dir();
	test_roundtrip();
	return ha_test_done("test_balance_policy");
}
