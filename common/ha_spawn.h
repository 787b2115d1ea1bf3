/*
 * ha_spawn.h - runs a helper program (or a function in a forked child) with a
 * deadline, its input from memory and its output captured: the one
 * fork/exec/wait loop of the agent's host layer, fencing and storage.
 *
 * The guarantees every caller relied on, in one place:
 *  - the child gets default signal dispositions and an empty signal mask
 *    (the daemons block signals for their signalfd and ignore SIGPIPE);
 *  - its input is written into a pipe before the child exists, so a child
 *    that exits without reading stdin can never raise SIGPIPE in the
 *    caller, and a child that never reads cannot block it;
 *  - the child leads its own process group, and at the deadline the whole
 *    group is killed (SIGKILL): grandchildren holding the output pipe open
 *    end too; reaping after that waits a bounded grace, never forever;
 *  - captured output is bounded: the first (or last) out_len-1 bytes are
 *    kept, the rest read and dropped;
 *  - nothing of the caller's leaks into a program: every descriptor above
 *    2 is closed at exec.
 *
 * Long-lived children that keep a channel open to the caller (CRIU's swrk
 * with its socketpair, QEMU, a container's init) are not run through
 * ha_spawn_run; they share ha_spawn_child_reset for the child side.
 */
#ifndef HA_SPAWN_H
#define HA_SPAWN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* Most bytes of input: what a pipe holds without a reader. */
#define HA_SPAWN_INPUT_MAX 65536u
/* How long a killed child is waited for before it is left behind (its
 * zombie is reaped by whoever reaps the daemon's children). */
#define HA_SPAWN_KILL_GRACE_MS 2000u

/* Where the child's stderr goes. */
enum ha_spawn_stderr {
	HA_SPAWN_ERR_NULL = 0, /* /dev/null */
	HA_SPAWN_ERR_TO_OUT,   /* into the stdout capture (2>&1) */
	HA_SPAWN_ERR_CAPTURE,  /* into err_out */
	HA_SPAWN_ERR_INHERIT,  /* the caller's stderr */
	HA_SPAWN_ERR_MAX
};

struct ha_spawn {
	/* What runs: argv (argv[0] a path, or a name searched in PATH) ... */
	char *const *argv;
	/* ... or, when fn is set, fn(arg) in the forked child; its return
	 * value is the exit status. Only async-signal-safe calls: the caller
	 * may have threads. */
	int (*fn)(void *arg);
	void *arg;
	/* Run in the child before exec (or fn), after the signal reset: e.g.
	 * setns. Non-zero: the child exits 126. Async-signal-safe only. */
	int (*setup)(void *arg);
	void *setup_arg;
	/* stdin: these bytes (at most HA_SPAWN_INPUT_MAX); NULL: /dev/null. */
	const void *input;
	size_t input_len;
	/* stdout: captured here, NUL terminated (at most out_len-1 bytes);
	 * NULL: /dev/null. */
	char *out;
	size_t out_len;
	bool keep_tail; /* keep the last bytes of a longer output, not the first */
	enum ha_spawn_stderr err;
	char *err_out; /* with HA_SPAWN_ERR_CAPTURE, like out */
	size_t err_out_len;
	uint32_t timeout_ms; /* 0: no deadline */
};

struct ha_spawn_result {
	int exit_code;       /* 0..255 when it exited, else -1 */
	int signal;          /* the signal that ended it, else 0 */
	bool timed_out;      /* killed (its process group) at the deadline */
	size_t out_got;      /* bytes now in out */
	size_t err_out_got;  /* bytes now in err_out */
	bool out_truncated;  /* more output came than out could keep */
	bool err_out_truncated;
	pid_t pid;
};

/*
 * Runs @s to its end or its deadline; fills @r (may be NULL). Returns 0
 * when the child ran to its end (r says how), -ETIMEDOUT when it was
 * killed at the deadline, -E2BIG for too much input, -ECHILD when it was
 * reaped elsewhere (a waitpid(-1) in the process), or -errno of pipe or
 * fork. A program that cannot be executed exits 127.
 */
int ha_spawn_run(const struct ha_spawn *s, struct ha_spawn_result *r);

/* The exit status shell-style: the exit code, 128 + signal, or 255. */
int ha_spawn_status(const struct ha_spawn_result *r);

/*
 * For a child between fork and exec that the caller set up itself: every
 * signal to its default action and an empty mask. Async-signal-safe.
 */
void ha_spawn_child_reset(void);

#endif
