/*
 * test_driver_container.c - pieces of the container driver that run
 * without a container: its helper programs (through the spawn helper) and
 * the external resources its CRIU dumps name.
 */
#include <errno.h>
#include <string.h>

#include "criu_rpc.h"
#include "driver_container.h"
#include "harness.h"

/* The container driver's helper programs (ip, cp, rm) through the spawn
 * helper: exit status, first line as the message, the deadline. */
static void test_ctr_tool_run(void)
{
	char *ok[] = { "/bin/sh", "-c", "echo; echo first line >&2; echo second; exit 4", NULL };
	char *slow[] = { "/bin/sh", "-c", "sleep 1000", NULL };
	char *none[] = { "/nonexistent/ip", NULL };
	char msg[64];

	CHECK_EQ_INT(ctr_tool_run(ok, -1, 30000, msg, sizeof(msg)), 4);
	CHECK(strcmp(msg, "first line") == 0);
	CHECK_EQ_INT(ctr_tool_run(slow, -1, 200, msg, sizeof(msg)), -ETIMEDOUT);
	CHECK(strcmp(msg, "/bin/sh ran longer than 200 ms") == 0);
	CHECK_EQ_INT(ctr_tool_run(none, -1, 30000, NULL, 0), 127);
	/* a namespace that cannot be joined: the tool does not run */
	CHECK_EQ_INT(ctr_tool_run(ok, 0, 30000, msg, sizeof(msg)), 126);
}

/* The external resources every container dump names (snapshot and
 * migration alike): the console by its key, the veth by its host side. */
static void test_ctr_criu_external(void)
{
	struct agent_guest_spec spec = { .name = "c1", .ip = "10.0.0.5/24" };
	struct host_cgroup cg;
	struct ctr_ckpt_target t = { .spec = &spec, .veth = "hv-c1", .cg = &cg };
	struct ctr_criu_external x;
	struct agent_criu_dump_opts o;

	memset(&cg, 0, sizeof(cg));
	t.pid = 42;
	ctr_criu_dump_base(&t, &x, &o);
	CHECK_EQ_INT(o.n_external, 2);
	CHECK(o.external == x.list);
	CHECK(strcmp(o.external[0], "mnt[/dev/console]:console") == 0);
	CHECK(strcmp(o.external[1], "veth[hv-c1]") == 0);
	CHECK_EQ_INT(o.pid, 42);
	CHECK(o.tcp_established && o.tcp_skip_in_flight && o.file_locks);
	CHECK(o.manage_cgroups == AGENT_CRIU_CG_SOFT);
	CHECK(o.freeze_cgroup == NULL); /* no freezer in an empty cgroup */
	CHECK(!o.leave_running && !o.leave_stopped && !o.pre_dump);
	spec.ip = NULL;
	ctr_criu_dump_base(&t, &x, &o);
	CHECK_EQ_INT(o.n_external, 1);
	CHECK(strcmp(ctr_criu_bin("criu"), AGENT_CRIU_DEFAULT_PATH) == 0);
	CHECK(strcmp(ctr_criu_bin(""), AGENT_CRIU_DEFAULT_PATH) == 0);
	CHECK(strcmp(ctr_criu_bin("/x/criu"), "/x/criu") == 0);
}

int main(void)
{
	test_ctr_tool_run();
	test_ctr_criu_external();
	return ha_test_done("test_driver_container");
}
