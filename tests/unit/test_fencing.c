/*
 * test_fencing.c - fence.conf parsing with exact errors, running real fence
 * agents (Debian's fence_dummy when installed, else a script of ours), and
 * the leader's recovery plan (priority order, capacity, restart policies).
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "coord_state.h"
#include "fencing.h"
#include "harness.h"
#include "snapshot.h"
#include "util.h"

static char dir[] = "/tmp/ha-test-fence-XXXXXX";

static int load(const char *text, struct fence_config *cfg, char *err)
{
	char path[256];

	snprintf(path, sizeof(path), "%s/fence.conf", dir);
	ha_file_write_atomic(path, text, strlen(text));
	return fence_config_load(path, cfg, err, 512);
}

static void expect_err(const char *text, const char *want)
{
	struct fence_config *cfg = malloc(sizeof(*cfg));
	char err[512] = "";

	CHECK(load(text, cfg, err) < 0);
	ha_test_checks++;
	if (strstr(err, want) == NULL) {
		ha_test_failures++;
		fprintf(stderr, "fence.conf error\n  got:  %s\n  want: ...%s\n", err, want);
	}
	free(cfg);
}

static void test_config(void)
{
	struct fence_config *cfg = malloc(sizeof(*cfg));
	struct fence_node fn;
	char err[512] = "";

	CHECK_EQ_INT(fence_config_load("/nonexistent/fence.conf", cfg, err, sizeof(err)), 0);
	fence_config_node(cfg, "node9", &fn);
	CHECK_EQ_INT(fn.method, FENCE_METHOD_WATCHDOG);

	CHECK_EQ_INT(load("[defaults]\nmethod = agent\n[device a]\nagent = fence_dummy\ntype = file\n"
			  "[device b]\nagent = other\n[node n1]\nlevel1 = a\nlevel2 = a, b\nplug = p1\n",
			  cfg, err), 0);
	fence_config_node(cfg, "n1", &fn);
	CHECK_EQ_INT(fn.n_levels, 2);
	CHECK_EQ_INT(fn.n_level_devs[1], 2);
	CHECK(strcmp(fn.plug, "p1") == 0);
	CHECK_EQ_INT(cfg->devices[0].n_opts, 1);
	fence_config_node(cfg, "n2", &fn);
	CHECK_EQ_INT(fn.method, FENCE_METHOD_AGENT); /* default agent, no levels */
	CHECK_EQ_INT(fn.n_levels, 0);

	expect_err("[defaults]\nmethod = maybe\n", "fence.conf:2: method: 'maybe' is not agent or watchdog");
	expect_err("[node n1]\nlevel1 = nosuch\n", "fence.conf:2: unknown device 'nosuch' in [node n1]");
	expect_err("[device a]\nagent = x\n[node n1]\nlevel2 = a\n", "level2 of [node n1] without the levels before it");
	expect_err("[device a]\ntype = file\n", "[device a] has no agent");
	expect_err("[device a]\nagent = x\nplug = y\n", "fence.conf:3: 'plug' is set by hactl");
	expect_err("[weird]\n", "fence.conf:1: unknown section [weird]");
	expect_err("[node n1]\nmethod = agent\n", "[node n1] uses method agent but has no level1");
	expect_err("[node n1\n", "fence.conf:1: syntax error");
	expect_err("key = value\n", "fence.conf:1: option before any [section]");
	free(cfg);
}

static void test_agents(void)
{
	struct fence_config *cfg = malloc(sizeof(*cfg));
	struct fence_node fn;
	struct fence_result r;
	char err[512], log[512], text[1024], script[256];
	bool dummy = access("/usr/sbin/fence_dummy", X_OK) == 0;

	/* a script speaking the protocol: off succeeds, status says off */
	snprintf(script, sizeof(script), "%s/fence_test", dir);
	snprintf(text, sizeof(text),
		 "#!/bin/sh\nwhile read l; do case $l in action=*) a=${l#action=};; plug=*) p=${l#plug=};; esac; done\n"
		 "echo \"$a $p\" >> %s/calls\ncase $a in off) echo ok; exit 0;; status) echo Status: OFF; exit 2;; esac\nexit 1\n",
		 dir);
	ha_file_write_atomic(script, text, strlen(text));
	chmod(script, 0755);
	snprintf(text, sizeof(text),
		 "[defaults]\nmethod = agent\ntimeout = 5\n[device bad]\nagent = %s\ntype = fail\n"
		 "[device good]\nagent = %s\n[node n1]\nlevel1 = bad\nlevel2 = good\n",
		 dummy ? "/usr/sbin/fence_dummy" : "/bin/false", script);
	CHECK_EQ_INT(load(text, cfg, err), 0);
	fence_config_node(cfg, "n1", &fn);
	CHECK_EQ_INT(fence_node_run(cfg, &fn, log, sizeof(log)), 0);
	CHECK(strstr(log, "level 1 bad off: ") != NULL);
	CHECK(strstr(log, "n1 fenced by level 2 (off confirmed)") != NULL);
	snprintf(text, sizeof(text), "%s/calls", dir);
	{
		uint8_t *calls;
		size_t len;

		CHECK_EQ_INT(ha_file_read(text, 4096, &calls, &len), 0);
		CHECK(strcmp((char *)calls, "off n1\nstatus n1\n") == 0);
		free(calls);
	}
	/* an agent that hangs is killed at the timeout */
	snprintf(text, sizeof(text), "%s/fence_hang", dir);
	ha_file_write_atomic(text, "#!/bin/sh\nsleep 30\n", 19);
	chmod(text, 0755);
	{
		struct fence_device d = { 0 };

		snprintf(d.agent, sizeof(d.agent), "%s", text);
		CHECK_EQ_INT(fence_agent_run(&d, "off", "n1", 1, &r), 0);
		CHECK(r.timed_out);
		snprintf(d.agent, sizeof(d.agent), "/nonexistent/agent");
		CHECK_EQ_INT(fence_agent_run(&d, "off", "n1", 5, &r), 0);
		CHECK_EQ_INT(r.exit_code, 127);
	}
	free(cfg);
}

static Hactl__GuestRecord *guest(const char *name, uint32_t owner, const char *extra)
{
	Hactl__GuestRecord *g = calloc(1, sizeof(*g));
	char *def = NULL;

	hactl__guest_record__init(g);
	g->name = strdup(name);
	g->type = strdup("container");
	g->desired = strdup("running");
	g->has_owner = true;
	g->owner = owner;
	if (asprintf(&def, "[guest]\nname = %s\ntype = container\ncommand = x\nmemory = 1G\n"
		     "[storage]\ntemplate = t\n%s", name, extra) < 0) {
		abort();
	}
	g->has_definition = true;
	g->definition.data = (uint8_t *)def;
	g->definition.len = strlen(def);
	return g;
}

static void test_recover_plan(void)
{
	struct coord_state st;
	uint32_t members[] = { 1, 3 };
	struct coord_view v = { .members = members, .n_members = 2 };
	Hactl__HostFacts f = HACTL__HOST_FACTS__INIT;
	Hactl__RecoverChange rc;

	coord_state_init(&st);
	f.has_mem_total_kib = true;
	f.mem_total_kib = 2 * 1024 * 1024 + 512 * 1024; /* room for two 1 GiB guests */
	for (uint32_t id = 1; id <= 3; id++) {
		char name[8];

		snprintf(name, sizeof(name), "n%u", id);
		coord_state_node_add(&st, id, name);
		coord_state_set_facts(&st, id, &f, true);
	}
	coord_state_node(&st, 2)->fenced = true;
	st.guests = calloc(8, sizeof(*st.guests));
	st.guests[st.n_guests++] = guest("low", 2, "[ha]\npriority = 1\n");
	st.guests[st.n_guests++] = guest("high", 2, "[ha]\npriority = 9\n");
	st.guests[st.n_guests++] = guest("mid", 2, "[ha]\npriority = 5\nrestart = cold\n");
	st.guests[st.n_guests++] = guest("off", 2, "[ha]\nrestart = none\n");
	st.guests[st.n_guests++] = guest("big", 2, "[ha]\npriority = 0\n");
	st.guests[st.n_guests++] = guest("safe", 1, "");
	st.guests[st.n_guests++] = guest("more", 3, "");

	CHECK_EQ_INT(coord_recover_plan(&st, &v, &rc), 5);
	/* the engine's order: the non-HA guest stays down, then priority:
	 * high, mid, low, big */
	CHECK(strcmp(rc.placements[0]->guest, "off") == 0 && strcmp(rc.placements[0]->mode, "none") == 0);
	CHECK(rc.placements[0]->node == NULL);
	CHECK(strcmp(rc.placements[1]->guest, "high") == 0);
	CHECK(strcmp(rc.placements[2]->guest, "mid") == 0);
	CHECK(strcmp(rc.placements[3]->guest, "low") == 0);
	CHECK(strcmp(rc.placements[4]->guest, "big") == 0);
	CHECK(strcmp(rc.placements[1]->mode, "snapshot-or-cold") == 0);
	CHECK(strcmp(rc.placements[2]->mode, "cold") == 0);
	/* n1 and n3 have one 1 GiB guest each and room for one more: two fit */
	CHECK(rc.placements[1]->node && rc.placements[2]->node);
	CHECK(rc.placements[3]->node == NULL);
	CHECK(rc.placements[4]->node == NULL); /* big: no room left */
	{
		Hactl__Change ch = HACTL__CHANGE__INIT;
		char why[256];

		ch.kind_case = HACTL__CHANGE__KIND_RECOVER;
		ch.recover = &rc;
		CHECK_EQ_INT(coord_change_apply(&st, &ch, 1, why, sizeof(why)), 0);
		CHECK(coord_state_guest(&st, "high")->owner != 2);
		CHECK_EQ_INT(coord_state_guest(&st, "low")->owner, 0);
		CHECK(strstr(coord_state_guest(&st, "low")->error, "no node can run it") != NULL);
		CHECK(strcmp(coord_state_guest(&st, "off")->desired, "stopped") == 0);
		CHECK_EQ_INT(coord_state_guest(&st, "safe")->owner, 1);
	}
	coord_recover_plan_free(&rc);
	/* nothing lost: nothing to plan except the guests left without room */
	coord_state_node(&st, 2)->fenced = false;
	CHECK_EQ_INT(coord_recover_plan(&st, &v, &rc), 2); /* low and big still want to run */
	coord_recover_plan_free(&rc);
	coord_state_clear(&st);
}

/*
 * An agent that exits without reading its stdin (a missing binary, a
 * wrapper that fails at once, /bin/false standing in for fence_dummy) must
 * not take its caller down with SIGPIPE: the caller's SIGPIPE is left at
 * its default here, as in any program that links the library. This test
 * once died of SIGPIPE in a loaded suite run, when the agent exited before
 * the input was written; now the input is in the pipe before the agent
 * starts. Many runs, because the old failure needed the agent to win a race.
 */
static void test_agent_exits_unread(void)
{
	struct fence_device dev;
	struct fence_result r;
	const char *agents[] = { "/bin/true", "/nonexistent/fence_none" };

	signal(SIGPIPE, SIG_DFL);
	memset(&dev, 0, sizeof(dev));
	/* a long input: more bytes to write, a wider window for the old race */
	dev.n_opts = FENCE_MAX_OPTS;
	for (int i = 0; i < FENCE_MAX_OPTS; i++) {
		snprintf(dev.opt_key[i], sizeof(dev.opt_key[i]), "opt%d", i);
		memset(dev.opt_val[i], 'v', sizeof(dev.opt_val[i]) - 1);
	}
	for (int k = 0; k < 2; k++) {
		snprintf(dev.agent, sizeof(dev.agent), "%s", agents[k]);
		for (int i = 0; i < 300; i++) {
			CHECK_EQ_INT(fence_agent_run(&dev, "off", "n1", 5, &r), 0);
			CHECK_EQ_INT(r.exit_code, k == 0 ? 0 : 127);
		}
	}
}

int main(void)
{
	CHECK(mkdtemp(dir) != NULL);
	test_config();
	test_agents();
	test_recover_plan();
	test_agent_exits_unread();
	ha_rm_rf(dir);
	return ha_test_done("test_fencing");
}
