/*
 * criu_rpc_int.h - private header of the CRIU RPC client (criu_rpc*.c);
 * the agent sees criu_rpc.h.
 *
 *   criu_rpc.c      names, decoding of CRIU's answers, the processes
 *                   (criu swrk and helpers: spawn, reap), CRIU's logs and
 *                   the RPC session (struct crs)
 *   criu_rpc_req.c  the requests built on a session: dump, restore,
 *                   feature check, version and the probe, page server
 *                   and lazy-pages daemon, and the wait for a helper
 *
 * Only with CRIU's schema (HAVE_CRIU_RPC); without it criu_rpc.c answers
 * every call with -ENOTSUP.
 */
#ifndef HA_AGENT_CRIU_RPC_INT_H
#define HA_AGENT_CRIU_RPC_INT_H

#ifdef HAVE_CRIU_RPC

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/types.h>

#include "criu/rpc.pb-c.h"
#include "criu_rpc.h"

/* ---- processes ---------------------------------------------------------- */

#define SPAWN_SETSID 0x1      /* own session (a workload, not CRIU) */
#define SPAWN_NULL_STDERR 0x2 /* stderr to /dev/null too */

/* pidfd_open(2), -1 with errno where the kernel has none. */
int crs_pidfd_open(pid_t pid);
/*
 * fork + exec of @path; returns 0 once the exec succeeded, with the pid
 * and a pidfd (-1 where the kernel has none) of the child. @flags:
 * SPAWN_*.
 *
 * Not ha_spawn_run (common/ha_spawn.h): swrk and the page server outlive
 * this call and keep descriptors of ours (@keep: the RPC socketpair, the
 * image directory), and the caller needs to know that exec succeeded
 * before it speaks RPC. The child side shares ha_spawn_child_reset.
 */
int crs_spawn(const char *path, char *const argv[], const int *keep, size_t nkeep,
	      unsigned flags, pid_t *pid_out, int *pidfd_out, char *err, size_t errlen);
/*
 * Waits up to @ms for our child @pid to exit and reaps it. Returns 0 with
 * *status set (-1: reaped elsewhere, unknown), -ETIMEDOUT when it still
 * runs.
 */
int crs_reap_within(pid_t pid, int pidfd, uint64_t ms, int *status);
/* A wait status in words ("exited with status 1"). */
void crs_describe_status(char *buf, size_t n, int status);
/*
 * The first telling "Error (file:line): ..." line of CRIU's log at @path,
 * "" if none, or if the log is still the one @before describes (a stale
 * log of an earlier run in the same directory).
 */
void crs_log_first_error(const char *path, const struct stat *before, char *out, size_t n);

/* ---- sessions ----------------------------------------------------------- */

/* One call to `criu swrk`: init, open, call (one or more), close. */
struct crs {
	const char *criu;       /* binary */
	char what[96];          /* "dump of pid 123" */
	pid_t pid;              /* criu swrk */
	int pidfd;
	int sk;
	uint64_t deadline;      /* monotonic ms */
	struct stat log_before; /* the log before the run; st_ino 0: none */
	char log_path[PATH_MAX];
	agent_criu_notify_fn notify;
	void *opaque;
	uint8_t *buf;           /* AGENT_CRIU_MAX_MSG */
};

void crs_init(struct crs *s, const char *criu_path, uint32_t timeout_ms);
/* Spawns `criu swrk <fd>`; @keep are fds CRIU must inherit. */
int crs_open(struct crs *s, const int *keep, size_t nkeep, char *err, size_t errlen);
/*
 * Closes the socket, so that CRIU exits, and reaps it. After a timeout
 * (@term) CRIU gets SIGTERM first, never SIGKILL (it may hold tasks
 * seized or frozen), and is left alone if it does not exit in
 * AGENT_CRIU_TERM_GRACE_MS. *status (may be NULL) gets its wait status,
 * -1 when it was not reaped.
 */
void crs_close(struct crs *s, bool term, int *status);
/*
 * Sends @req and reads until the answer of @expect (or EMPTY, CRIU's
 * "bad request" answer), answering NOTIFY messages on the way.
 */
int crs_call(struct crs *s, const CriuReq *req, int expect, struct agent_criu_resp *r,
	     char *err, size_t errlen);
/* The error of a request CRIU answered with success == false. */
int crs_failed(struct crs *s, const struct agent_criu_resp *r, char *err, size_t errlen);

#endif /* HAVE_CRIU_RPC */
#endif
