/*
 * test_spawn.c - common/ha_spawn.c: a helper program run with a deadline,
 * input from memory and bounded output capture.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"
#include "ha_spawn.h"
#include "util.h"

static void test_exit_and_output(void)
{
	char *argv[] = { "/bin/sh", "-c", "echo out; echo err >&2; exit 3", NULL };
	char out[64], errbuf[64];
	struct ha_spawn s = { .argv = argv, .out = out, .out_len = sizeof(out),
			      .err = HA_SPAWN_ERR_TO_OUT, .timeout_ms = 30000 };
	struct ha_spawn_result r;

	CHECK_EQ_INT(ha_spawn_run(&s, &r), 0);
	CHECK_EQ_INT(r.exit_code, 3);
	CHECK_EQ_INT(r.signal, 0);
	CHECK(!r.timed_out);
	CHECK(strcmp(out, "out\nerr\n") == 0);
	CHECK_EQ_INT(r.out_got, 8);
	CHECK_EQ_INT(ha_spawn_status(&r), 3);

	/* stderr apart */
	s.err = HA_SPAWN_ERR_CAPTURE;
	s.err_out = errbuf;
	s.err_out_len = sizeof(errbuf);
	CHECK_EQ_INT(ha_spawn_run(&s, &r), 0);
	CHECK(strcmp(out, "out\n") == 0);
	CHECK(strcmp(errbuf, "err\n") == 0);

	/* stderr dropped */
	s.err = HA_SPAWN_ERR_NULL;
	CHECK_EQ_INT(ha_spawn_run(&s, &r), 0);
	CHECK(strcmp(out, "out\n") == 0);

	/* a name is searched in PATH; a program that cannot run exits 127 */
	{
		char *a2[] = { "sh", "-c", "exit 0", NULL };
		char *a3[] = { "/nonexistent/prog", NULL };
		struct ha_spawn s2 = { .argv = a2, .timeout_ms = 30000 };

		CHECK_EQ_INT(ha_spawn_run(&s2, &r), 0);
		CHECK_EQ_INT(r.exit_code, 0);
		s2.argv = a3;
		CHECK_EQ_INT(ha_spawn_run(&s2, &r), 0);
		CHECK_EQ_INT(r.exit_code, 127);
	}
}

static void test_bounded_output(void)
{
	char *argv[] = { "/bin/sh", "-c", "i=0; while [ $i -lt 3000 ]; do echo line$i; "
			 "i=$((i+1)); done", NULL };
	char out[16];
	struct ha_spawn s = { .argv = argv, .out = out, .out_len = sizeof(out),
			      .timeout_ms = 60000 };
	struct ha_spawn_result r;

	/* the head; the rest is read and dropped, the child is not stuck */
	CHECK_EQ_INT(ha_spawn_run(&s, &r), 0);
	CHECK_EQ_INT(r.exit_code, 0);
	CHECK_EQ_INT(r.out_got, sizeof(out) - 1);
	CHECK(r.out_truncated);
	CHECK(strcmp(out, "line0\nline1\nlin") == 0);
	/* the tail */
	s.keep_tail = true;
	CHECK_EQ_INT(ha_spawn_run(&s, &r), 0);
	CHECK_EQ_INT(r.out_got, sizeof(out) - 1);
	CHECK(strcmp(out, "line2998\nline2999\n" + 3) == 0);
}

static void test_input(void)
{
	char *argv[] = { "cat", NULL };
	static char big[HA_SPAWN_INPUT_MAX + 1];
	char out[64];
	struct ha_spawn s = { .argv = argv, .input = "a=1\nb=2\n", .input_len = 8,
			      .out = out, .out_len = sizeof(out), .timeout_ms = 30000 };
	struct ha_spawn_result r;

	CHECK_EQ_INT(ha_spawn_run(&s, &r), 0);
	CHECK(strcmp(out, "a=1\nb=2\n") == 0);
	s.input = big;
	s.input_len = sizeof(big);
	CHECK_EQ_INT(ha_spawn_run(&s, &r), -E2BIG);
}

/* A child that exits without reading its input never harms the caller
 * (SIGPIPE at its default here: it would kill this test). */
static void test_child_exits_unread(void)
{
	static char input[32768];
	char *argv[] = { "/bin/true", NULL };
	struct ha_spawn s = { .argv = argv, .input = input, .input_len = sizeof(input),
			      .timeout_ms = 30000 };
	struct ha_spawn_result r;

	signal(SIGPIPE, SIG_DFL);
	memset(input, 'x', sizeof(input));
	for (int i = 0; i < 200; i++) {
		CHECK_EQ_INT(ha_spawn_run(&s, &r), 0);
		CHECK_EQ_INT(r.exit_code, 0);
	}
}

/* The deadline kills the child's whole process group: a grandchild that
 * holds the output pipe open does not keep the caller waiting. */
static void test_timeout_kills_group(void)
{
	char *argv[] = { "/bin/sh", "-c", "sleep 1000 & echo $!; wait", NULL };
	char out[64], path[64], state[256];
	struct ha_spawn s = { .argv = argv, .out = out, .out_len = sizeof(out),
			      .timeout_ms = 300 };
	struct ha_spawn_result r;
	uint64_t t0 = ha_mono_ms();
	long grandchild;
	bool gone = false;

	CHECK_EQ_INT(ha_spawn_run(&s, &r), -ETIMEDOUT);
	CHECK(r.timed_out);
	CHECK_EQ_INT(r.exit_code, -1);
	CHECK_EQ_INT(r.signal, SIGKILL);
	CHECK(ha_mono_ms() - t0 < 300 + HA_SPAWN_KILL_GRACE_MS + 10000);
	grandchild = strtol(out, NULL, 10);
	CHECK(grandchild > 1);
	/* SIGKILL is delivered, the end is the kernel's: wait for it (it is
	 * reparented and reaped, or a zombie), bounded generously */
	snprintf(path, sizeof(path), "/proc/%ld/stat", grandchild);
	for (int i = 0; i < 3000 && !gone; i++) {
		FILE *f = fopen(path, "r");

		if (f == NULL) {
			gone = true;
			break;
		}
		if (fgets(state, sizeof(state), f) != NULL && strstr(state, ") Z ") != NULL) {
			gone = true;
		}
		fclose(f);
		if (!gone) {
			ha_sleep_ms(10);
		}
	}
	CHECK(gone);
}

static int fn_child(void *arg)
{
	const char *msg = arg;

	if (write(STDOUT_FILENO, msg, strlen(msg)) < 0) {
		return 1;
	}
	return 42;
}

/* The child gets default signals and an empty mask, whatever ours are;
 * a signal that ends it is reported. */
static void test_signals(void)
{
	char *argv[] = { "/bin/sh", "-c", "kill -TERM $$; exit 0", NULL };
	struct ha_spawn s = { .argv = argv, .timeout_ms = 30000 };
	struct ha_spawn_result r;
	sigset_t block, old;

	sigemptyset(&block);
	sigaddset(&block, SIGTERM);
	sigprocmask(SIG_BLOCK, &block, &old);
	signal(SIGTERM, SIG_IGN);
	CHECK_EQ_INT(ha_spawn_run(&s, &r), 0);
	CHECK_EQ_INT(r.exit_code, -1);
	CHECK_EQ_INT(r.signal, SIGTERM);
	CHECK_EQ_INT(ha_spawn_status(&r), 128 + SIGTERM);
	signal(SIGTERM, SIG_DFL);
	sigprocmask(SIG_SETMASK, &old, NULL);
}

static void test_fn(void)
{
	char out[32];
	struct ha_spawn s = { .fn = fn_child, .arg = "report", .out = out,
			      .out_len = sizeof(out), .timeout_ms = 30000 };
	struct ha_spawn_result r;

	CHECK_EQ_INT(ha_spawn_run(&s, &r), 0);
	CHECK_EQ_INT(r.exit_code, 42);
	CHECK(strcmp(out, "report") == 0);
	/* no argv and no fn */
	s.fn = NULL;
	CHECK_EQ_INT(ha_spawn_run(&s, &r), -EINVAL);
}

int main(void)
{
	int fds = ha_test_count_fds();

	test_exit_and_output();
	test_bounded_output();
	test_input();
	test_child_exits_unread();
	test_timeout_kills_group();
	test_signals();
	test_fn();
	CHECK_EQ_INT(ha_test_count_fds(), fds);
	return ha_test_done("test_spawn");
}
