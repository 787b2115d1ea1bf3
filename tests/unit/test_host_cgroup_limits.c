/*
 * test_host_cgroup_limits.c - the limit counters that hactl show --limits
 * prints (agent/host_cgroup.c, host_cgroup_limits()): the files of cgroup
 * v1 and v2 as the kernel writes them, in a temporary directory standing
 * in for the guest's cgroup directories.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "harness.h"
#include "host_cgroup.h"
#include "util.h"

static char tmp[] = "/tmp/ha-test-cglim-XXXXXX";

static void put(const char *dir, const char *file, const char *text)
{
	char path[512];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", dir, file);
	f = fopen(path, "w");
	CHECK(f != NULL);
	if (f) {
		fputs(text, f);
		fclose(f);
	}
}

static void v1(void)
{
	struct host_cgroup cg;
	struct agent_guest_limits l;

	memset(&cg, 0, sizeof(cg));
	snprintf(cg.memory, sizeof(cg.memory), "%s/v1/memory", tmp);
	snprintf(cg.pids, sizeof(cg.pids), "%s/v1/pids", tmp);
	snprintf(cg.cpu, sizeof(cg.cpu), "%s/v1/cpu", tmp);
	CHECK_EQ_INT(ha_mkdir_p(cg.memory, 0755), 0);
	CHECK_EQ_INT(ha_mkdir_p(cg.pids, 0755), 0);
	CHECK_EQ_INT(ha_mkdir_p(cg.cpu, 0755), 0);
	put(cg.memory, "memory.max_usage_in_bytes", "41943040\n");
	put(cg.memory, "memory.limit_in_bytes", "33554432\n");
	put(cg.memory, "memory.failcnt", "7\n");
	put(cg.pids, "pids.max", "16\n");
	put(cg.pids, "pids.events", "max 9\n");
	put(cg.cpu, "cpu.stat", "nr_periods 300\nnr_throttled 12\nthrottled_time 1234567890\n");
	host_cgroup_limits(&cg, &l);
	CHECK(l.valid);
	CHECK(l.mem_peak_bytes == 41943040);
	CHECK(l.mem_limit_bytes == 33554432);
	CHECK(l.mem_failcnt == 7);
	CHECK(l.pids_limit == 16);
	CHECK(l.pids_failcnt == 9);
	CHECK(l.cpu_periods == 300);
	CHECK(l.cpu_throttled == 12);
	CHECK(l.cpu_throttled_ns == 1234567890);

	/* no limits: v1's "unlimited" memory and "max" processes read 0 */
	put(cg.memory, "memory.limit_in_bytes", "9223372036854771712\n");
	put(cg.pids, "pids.max", "max\n");
	host_cgroup_limits(&cg, &l);
	CHECK(l.mem_limit_bytes == 0);
	CHECK(l.pids_limit == 0);

	/* a controller that is not mounted leaves its fields 0 */
	cg.cpu[0] = '\0';
	host_cgroup_limits(&cg, &l);
	CHECK(l.valid && l.cpu_periods == 0 && l.cpu_throttled == 0);
	/* none at all: not valid */
	memset(&cg, 0, sizeof(cg));
	host_cgroup_limits(&cg, &l);
	CHECK(!l.valid);
}

static void v2(void)
{
	struct host_cgroup cg;
	struct agent_guest_limits l;

	memset(&cg, 0, sizeof(cg));
	cg.v2 = true;
	snprintf(cg.unified, sizeof(cg.unified), "%s/v2/g1", tmp);
	CHECK_EQ_INT(ha_mkdir_p(cg.unified, 0755), 0);
	put(cg.unified, "memory.peak", "50331648\n");
	put(cg.unified, "memory.max", "max\n");
	put(cg.unified, "memory.events", "low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n");
	put(cg.unified, "pids.max", "64\n");
	put(cg.unified, "pids.events", "max 2\n");
	put(cg.unified, "cpu.stat", "usage_usec 5000\nuser_usec 4000\nsystem_usec 1000\n"
				    "nr_periods 40\nnr_throttled 5\nthrottled_usec 250000\n");
	host_cgroup_limits(&cg, &l);
	CHECK(l.valid);
	CHECK(l.mem_peak_bytes == 50331648);
	CHECK(l.mem_limit_bytes == 0);
	CHECK(l.mem_failcnt == 3);  /* "max", not "oom" nor "oom_kill" */
	CHECK(l.pids_limit == 64);
	CHECK(l.pids_failcnt == 2);
	CHECK(l.cpu_periods == 40);
	CHECK(l.cpu_throttled == 5);
	CHECK(l.cpu_throttled_ns == 250000000ull);

	/* the usage from the same files, with the counters in it */
	{
		struct agent_guest_usage u;

		put(cg.unified, "memory.current", "20971520\n");
		put(cg.unified, "pids.current", "5\n");
		CHECK_EQ_INT(host_cgroup_usage(&cg, &u), 0);
		CHECK(u.cpu_ns == 5000000ull);  /* usage_usec, not user_usec */
		CHECK(u.mem_bytes == 20971520);
		CHECK(u.pids == 5);
		CHECK(u.lim.valid && u.lim.cpu_throttled == 5 && u.lim.pids_failcnt == 2);
	}
}

int main(void)
{
	char cmd[128];

	if (mkdtemp(tmp) == NULL) {
		perror("mkdtemp");
		return 1;
	}
	v1();
	v2();
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmp);
	if (system(cmd) != 0) {
		fprintf(stderr, "could not remove %s\n", tmp);
	}
	return ha_test_done("test_host_cgroup_limits");
}
