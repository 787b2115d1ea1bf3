/*
 * test_host.c - the agent's host layer (agent/host_*.c): /proc/PID/stat
 * parsing and liveness; the container driver's helper programs.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "driver_container.h"
#include "harness.h"
#include "host_proc.h"

static void test_proc_stat_parse(void)
{
	/* comm with spaces and a ')' of its own: fields follow the last ')' */
	static const char text[] =
		"4242 (a) b (c)) S 1 4242 4242 0 -1 4194560 100 0 0 0 17 23 0 0 20 0 "
		"3 0 987654 1000 10 18446744073709551615\n";
	struct host_proc_stat ps;

	CHECK_EQ_INT(host_proc_stat_parse(text, &ps), 0);
	CHECK(ps.state == 'S');
	CHECK_EQ_INT(ps.utime, 17);
	CHECK_EQ_INT(ps.stime, 23);
	CHECK_EQ_INT(ps.threads, 3);
	CHECK_EQ_INT(ps.starttime, 987654);
	CHECK_EQ_INT(host_proc_stat_parse("4242 (no close paren S 1", &ps), -EINVAL);
	CHECK_EQ_INT(host_proc_stat_parse("4242 (short) S 1 2", &ps), -EINVAL);
	CHECK_EQ_INT(host_proc_stat_parse("", &ps), -EINVAL);
}

static void test_proc_alive(void)
{
	struct host_proc_stat self, ps;
	siginfo_t si;
	pid_t pid;

	CHECK_EQ_INT(host_proc_stat_read(getpid(), &self), 0);
	CHECK(self.state == 'R');
	CHECK(host_proc_alive(getpid(), self.starttime));
	/* another start time: the pid was reused */
	CHECK(!host_proc_alive(getpid(), self.starttime + 1));
	CHECK(!host_proc_alive(0, self.starttime));
	CHECK(!host_proc_alive(-1, self.starttime));
	CHECK_EQ_INT(host_proc_stat_read(0, &ps), -EINVAL);

	/* a zombie is not alive */
	pid = fork();
	if (pid == 0) {
		_exit(0);
	}
	CHECK(pid > 0);
	CHECK_EQ_INT(waitid(P_PID, (id_t)pid, &si, WEXITED | WNOWAIT), 0);
	CHECK_EQ_INT(host_proc_stat_read(pid, &ps), 0);
	CHECK(ps.state == 'Z');
	CHECK(!host_proc_alive(pid, ps.starttime));
	CHECK_EQ_INT(waitpid(pid, NULL, 0), pid);
	CHECK_EQ_INT(host_proc_stat_read(pid, &ps), -ENOENT);
}

static void test_small_files(void)
{
	char buf[8];

	CHECK_EQ_INT(host_read_small("/proc/self/stat", buf, sizeof(buf)), 7);
	CHECK_EQ_INT(strlen(buf), 7);
	CHECK_EQ_INT(host_read_small("/nonexistent/x", buf, sizeof(buf)), -ENOENT);
	CHECK_EQ_INT(host_read_small("/proc/self/stat", buf, 0), -EINVAL);
	CHECK_EQ_INT(host_write_str("/nonexistent/x", "1"), -ENOENT);
}

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

int main(void)
{
	test_proc_stat_parse();
	test_proc_alive();
	test_small_files();
	test_ctr_tool_run();
	return ha_test_done("test_host");
}
