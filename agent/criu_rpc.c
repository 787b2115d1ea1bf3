/*
 * criu_rpc.c - a client for CRIU's RPC ("criu swrk"); see criu_rpc.h.
 *
 * One call is one session: spawn `criu swrk <fd>` on a SOCK_SEQPACKET
 * socketpair, send criu_req(s), read criu_resp(s), close, reap. CRIU
 * reopens the images and work directories we pass as fds through
 * /proc/<our pid>/fd/<n> (it reads our pid from SO_PEERCRED), and fds
 * handed over for inherit_fd or a page-server socket are inherited across
 * the exec, so those stay open in CRIU; every other fd is made
 * close-on-exec in the child before exec.
 *
 * Everything CRIU sends is decoded into struct agent_criu_resp first
 * (agent_criu_resp_decode(): bounded, checked, fuzzed), and only those
 * values are acted on.
 *
 * This file: the processes, the logs and the session; the requests are
 * criu_rpc_req.c (criu_rpc_int.h lists the files).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <arpa/inet.h>
#include <sched.h>
#include <time.h>
#include <unistd.h>

#include <qb/qblog.h>

#include "criu_rpc.h"
#include "ha_spawn.h"
#include "util.h"

#include "criu_rpc_int.h"

static const char *const cg_mode_names[AGENT_CRIU_CG_MAX] = {
	[AGENT_CRIU_CG_UNSET] = "unset",
	[AGENT_CRIU_CG_IGNORE] = "ignore",
	[AGENT_CRIU_CG_NONE] = "none",
	[AGENT_CRIU_CG_PROPS] = "props",
	[AGENT_CRIU_CG_SOFT] = "soft",
	[AGENT_CRIU_CG_FULL] = "full",
	[AGENT_CRIU_CG_STRICT] = "strict",
};

const char *agent_criu_cg_mode_str(enum agent_criu_cg_mode m)
{
	if ((unsigned)m >= AGENT_CRIU_CG_MAX) {
		return "invalid";
	}
	return cg_mode_names[m];
}

static const char *const netlock_names[AGENT_CRIU_NETLOCK_MAX] = {
	[AGENT_CRIU_NETLOCK_UNSET] = "unset",
	[AGENT_CRIU_NETLOCK_IPTABLES] = "iptables",
	[AGENT_CRIU_NETLOCK_NFTABLES] = "nftables",
	[AGENT_CRIU_NETLOCK_SKIP] = "skip",
};

const char *agent_criu_netlock_str(enum agent_criu_netlock m)
{
	if ((unsigned)m >= AGENT_CRIU_NETLOCK_MAX) {
		return "invalid";
	}
	return netlock_names[m];
}

#ifdef HAVE_CRIU_RPC
/* Copies @src into @dst (size @n), cut, with non-printables as '?'. */
static void copy_printable(char *dst, size_t n, const char *src)
{
	size_t i = 0, len = 0;

	if (n == 0) {
		return;
	}
	if (src != NULL) {
		len = strlen(src);
		/* CRIU's messages end in a newline */
		while (len > 0 && (src[len - 1] == '\n' || src[len - 1] == ' ' ||
				   src[len - 1] == '\r' || src[len - 1] == '\t')) {
			len--;
		}
		for (; i < len && i + 1 < n; i++) {
			unsigned char c = (unsigned char)src[i];

			dst[i] = (c >= 0x20 && c < 0x7f) ? (char)c : '?';
		}
	}
	dst[i] = '\0';
}
#endif /* HAVE_CRIU_RPC */

#ifndef HAVE_CRIU_RPC

#define NO_SCHEMA_MSG                                                          \
	"CRIU support not built in: CRIU's rpc.proto was not found at build " \
	"time (run deploy/install-criu, then re-run cmake)"

int agent_criu_probe(const char *criu_path, struct agent_criu_caps *out,
		     char *err, size_t errlen)
{
	if (out != NULL) {
		memset(out, 0, sizeof(*out));
	}
	ha_errf(err, errlen, 0, "%s", NO_SCHEMA_MSG);
	return -ENOTSUP;
}

int agent_criu_check_features(const char *criu_path, bool *mem_track,
			      bool *lazy_pages, char *err, size_t errlen)
{
	ha_errf(err, errlen, 0, "%s", NO_SCHEMA_MSG);
	return -ENOTSUP;
}

int agent_criu_dump(const char *criu_path, const struct agent_criu_dump_opts *o,
		    char *err, size_t errlen)
{
	ha_errf(err, errlen, 0, "%s", NO_SCHEMA_MSG);
	return -ENOTSUP;
}

int agent_criu_restore(const char *criu_path,
		       const struct agent_criu_restore_opts *o, pid_t *pid_out,
		       char *err, size_t errlen)
{
	ha_errf(err, errlen, 0, "%s", NO_SCHEMA_MSG);
	return -ENOTSUP;
}

int agent_criu_page_server(const char *criu_path,
			   const struct agent_criu_ps_opts *o, pid_t *pid_out,
			   uint16_t *port_out, char *err, size_t errlen)
{
	ha_errf(err, errlen, 0, "%s", NO_SCHEMA_MSG);
	return -ENOTSUP;
}

int agent_criu_lazy_pages(const char *criu_path,
			  const struct agent_criu_lazy_opts *o, pid_t *pid_out,
			  char *err, size_t errlen)
{
	ha_errf(err, errlen, 0, "%s", NO_SCHEMA_MSG);
	return -ENOTSUP;
}

int agent_criu_child_wait(pid_t pid, uint32_t timeout_ms, char *err,
			  size_t errlen)
{
	ha_errf(err, errlen, 0, "%s", NO_SCHEMA_MSG);
	return -ENOTSUP;
}

int agent_criu_resp_decode(const uint8_t *buf, size_t len,
			   struct agent_criu_resp *out)
{
	memset(out, 0, sizeof(*out));
	return -ENOTSUP;
}

#else /* HAVE_CRIU_RPC */

/* ---- decoding ----------------------------------------------------------- */

static bool resp_type_known(int t)
{
	switch (t) {
	case CRIU_REQ_TYPE__EMPTY:
	case CRIU_REQ_TYPE__DUMP:
	case CRIU_REQ_TYPE__RESTORE:
	case CRIU_REQ_TYPE__CHECK:
	case CRIU_REQ_TYPE__PRE_DUMP:
	case CRIU_REQ_TYPE__PAGE_SERVER:
	case CRIU_REQ_TYPE__NOTIFY:
	case CRIU_REQ_TYPE__CPUINFO_DUMP:
	case CRIU_REQ_TYPE__CPUINFO_CHECK:
	case CRIU_REQ_TYPE__FEATURE_CHECK:
	case CRIU_REQ_TYPE__VERSION:
	case CRIU_REQ_TYPE__WAIT_PID:
	case CRIU_REQ_TYPE__PAGE_SERVER_CHLD:
	case CRIU_REQ_TYPE__SINGLE_PRE_DUMP:
		return true;
	default:
		return false;
	}
}

int agent_criu_resp_decode(const uint8_t *buf, size_t len,
			   struct agent_criu_resp *out)
{
	CriuResp *r;
	int ret = -EBADMSG;

	memset(out, 0, sizeof(*out));
	out->ps_port = -1;
	if (len > AGENT_CRIU_MAX_MSG) {
		return -EMSGSIZE;
	}
	if (buf == NULL && len > 0) {
		return -EBADMSG;
	}
	r = criu_resp__unpack(NULL, len, buf);
	if (r == NULL) {
		memset(out, 0, sizeof(*out));
		return -EBADMSG;
	}
	if (!resp_type_known((int)r->type)) {
		goto out;
	}
	out->type = (int)r->type;
	out->success = r->success;
	if (r->has_cr_errno) {
		out->cr_errno = r->cr_errno;
	}
	copy_printable(out->errmsg, sizeof(out->errmsg), r->cr_errmsg);

	if (r->type == CRIU_REQ_TYPE__NOTIFY) {
		if (r->notify == NULL) {
			goto out;
		}
		copy_printable(out->script, sizeof(out->script), r->notify->script);
		if (out->script[0] == '\0') {
			goto out;
		}
		if (r->notify->has_pid) {
			if (r->notify->pid < 0) {
				goto out;
			}
			out->notify_pid = r->notify->pid;
		}
	}
	if (r->restore != NULL) {
		/* CRIU sends -1 when a restore failed before the tree existed. */
		if (r->restore->pid < -1) {
			goto out;
		}
		out->restore_pid = r->restore->pid > 0 ? r->restore->pid : 0;
	}
	if (r->dump != NULL && r->dump->has_restored) {
		out->dump_restored = r->dump->restored;
	}
	if (r->ps != NULL) {
		if (r->ps->has_pid) {
			if (r->ps->pid < 0) {
				goto out;
			}
			out->ps_pid = r->ps->pid;
		}
		if (r->ps->has_port) {
			if (r->ps->port < 0 || r->ps->port > 65535) {
				goto out;
			}
			out->ps_port = r->ps->port > 0 ? r->ps->port : -1;
		}
	}
	if (r->version != NULL) {
		if (r->version->major_number < 0 || r->version->minor_number < 0 ||
		    (r->version->has_sublevel && r->version->sublevel < 0)) {
			goto out;
		}
		out->has_version = true;
		out->version_major = r->version->major_number;
		out->version_minor = r->version->minor_number;
		out->version_sublevel =
			r->version->has_sublevel ? r->version->sublevel : 0;
		copy_printable(out->version_gitid, sizeof(out->version_gitid),
			       r->version->gitid);
	}
	if (r->features != NULL) {
		out->has_features = true;
		out->feat_mem_track = r->features->has_mem_track && r->features->mem_track;
		out->feat_lazy_pages =
			r->features->has_lazy_pages && r->features->lazy_pages;
	}
	if (r->has_status) {
		out->has_status = true;
		out->status = r->status;
	}
	ret = 0;
out:
	criu_resp__free_unpacked(r, NULL);
	if (ret < 0) {
		memset(out, 0, sizeof(*out));
	}
	return ret;
}

/* ---- processes ---------------------------------------------------------- */

int crs_pidfd_open(pid_t pid)
{
#ifdef SYS_pidfd_open
	return (int)syscall(SYS_pidfd_open, pid, 0);
#else
	errno = ENOSYS;
	return -1;
#endif
}

/*
 * In the child between fork and exec: async-signal-safe calls only (the
 * agent has threads). Never returns.
 */
static void child_exec(const char *path, char *const argv[], const int *keep,
		       size_t nkeep, unsigned flags, int errfd)
{
	int e, nul;

	/* The agent blocks signals for its signalfd and may ignore SIGPIPE;
	 * neither must reach CRIU (it relies on SIGCHLD). */
	ha_spawn_child_reset();

	if (flags & SPAWN_SETSID) {
		setsid();
	}
	nul = open("/dev/null", O_RDWR | O_CLOEXEC);
	if (nul >= 0) {
		dup2(nul, STDIN_FILENO);
		dup2(nul, STDOUT_FILENO);
		if (flags & SPAWN_NULL_STDERR) {
			dup2(nul, STDERR_FILENO);
		}
	}
	/* Nothing of ours leaks into CRIU but what it is given. */
	close_range(3, ~0U, CLOSE_RANGE_CLOEXEC);
	for (size_t i = 0; i < nkeep; i++) {
		fcntl(keep[i], F_SETFD, 0);
	}
	execv(path, argv);
	e = errno;
	if (write(errfd, &e, sizeof(e)) < 0) {
		/* nothing left to report with */
	}
	_exit(127);
}

/*
 * fork + exec of @path; returns 0 once the exec succeeded, with the pid
 * and a pidfd (-1 where the kernel has none) of the child.
 *
 * Not ha_spawn_run (common/ha_spawn.h): swrk and the page server outlive
 * this call and keep descriptors of ours (@keep: the RPC socketpair, the
 * image directory), and the caller needs to know that exec succeeded
 * before it speaks RPC. The child side shares ha_spawn_child_reset.
 */
int crs_spawn(const char *path, char *const argv[], const int *keep,
		 size_t nkeep, unsigned flags, pid_t *pid_out, int *pidfd_out,
		 char *err, size_t errlen)
{
	int ep[2], e = 0;
	ssize_t n;
	pid_t pid;

	if (pipe2(ep, O_CLOEXEC) < 0) {
		e = -errno;
		ha_errf(err, errlen, 0, "cannot run %s: pipe: %s", path, strerror(-e));
		return e;
	}
	pid = fork();
	if (pid < 0) {
		e = -errno;
		close(ep[0]);
		close(ep[1]);
		ha_errf(err, errlen, 0, "cannot run %s: fork: %s", path, strerror(-e));
		return e;
	}
	if (pid == 0) {
		close(ep[0]);
		child_exec(path, argv, keep, nkeep, flags, ep[1]);
	}
	close(ep[1]);
	do {
		n = read(ep[0], &e, sizeof(e));
	} while (n < 0 && errno == EINTR);
	close(ep[0]);
	if (n == (ssize_t)sizeof(e)) {
		while (waitpid(pid, NULL, 0) < 0 && errno == EINTR) {
		}
		ha_errf(err, errlen, 0, "cannot run %s: %s", path, strerror(e));
		return -(e > 0 ? e : EIO);
	}
	*pid_out = pid;
	*pidfd_out = crs_pidfd_open(pid);
	return 0;
}

/*
 * Waits up to @ms for our child @pid to exit and reaps it. Returns 0 with
 * *status set (-1: reaped elsewhere, unknown), -ETIMEDOUT when it still
 * runs.
 */
int crs_reap_within(pid_t pid, int pidfd, uint64_t ms, int *status)
{
	uint64_t deadline = ha_mono_ms() + ms;

	for (;;) {
		pid_t r = waitpid(pid, status, WNOHANG);
		uint64_t now;

		if (r == pid) {
			return 0;
		}
		if (r < 0 && errno != EINTR) {
			/* Reaped by someone else (a waitpid(-1) elsewhere):
			 * gone, how is unknown. */
			*status = -1;
			return errno == ECHILD ? 0 : -errno;
		}
		now = ha_mono_ms();
		if (now >= deadline) {
			return -ETIMEDOUT;
		}
		if (pidfd >= 0) {
			struct pollfd p = { .fd = pidfd, .events = POLLIN };
			uint64_t left = deadline - now;

			poll(&p, 1, left > INT_MAX ? INT_MAX : (int)left);
		} else {
			usleep(10 * 1000);
		}
	}
}

void crs_describe_status(char *buf, size_t n, int status)
{
	if (WIFEXITED(status)) {
		snprintf(buf, n, "exited with status %d", WEXITSTATUS(status));
	} else if (WIFSIGNALED(status)) {
		snprintf(buf, n, "killed by signal %d (%s)", WTERMSIG(status),
			 strsignal(WTERMSIG(status)));
	} else {
		snprintf(buf, n, "ended with wait status %#x", status);
	}
}

/* ---- logs --------------------------------------------------------------- */

/* Largest part of a CRIU log searched for its first error. */
#define LOG_SCAN_MAX (16u * 1024u * 1024u)

/*
 * Errors CRIU logs that are not why a request failed: raising its own fd
 * limit fails where the host caps RLIMIT_NOFILE, and the final "Dumping
 * FAILED." says nothing new.
 */
static bool error_is_noise(const char *line)
{
	return strstr(line, "RLIMIT_NOFILE") != NULL || strstr(line, "FAILED.") != NULL;
}

/*
 * The first telling "Error (file:line): ..." line of CRIU's log at @path,
 * "" if none, or if the log is still the one @before describes (a stale
 * log of an earlier run in the same directory).
 */
void crs_log_first_error(const char *path, const struct stat *before,
			    char *out, size_t n)
{
	char line[512], noise[512] = "";
	size_t scanned = 0;
	struct stat st;
	FILE *f;

	out[0] = '\0';
	if (path == NULL || path[0] == '\0') {
		return;
	}
	f = fopen(path, "re");
	if (f == NULL) {
		return;
	}
	if (before != NULL && before->st_ino != 0 &&
	    (fstat(fileno(f), &st) < 0 ||
	     (st.st_ino == before->st_ino && st.st_size == before->st_size &&
	      st.st_mtim.tv_sec == before->st_mtim.tv_sec &&
	      st.st_mtim.tv_nsec == before->st_mtim.tv_nsec))) {
		fclose(f);
		return;
	}
	while (scanned < LOG_SCAN_MAX && fgets(line, sizeof(line), f) != NULL) {
		char *p = strstr(line, "Error (");

		scanned += strlen(line);
		if (p == NULL) {
			continue;
		}
		if (!error_is_noise(p)) {
			copy_printable(out, n, p);
			break;
		}
		if (noise[0] == '\0') {
			snprintf(noise, sizeof(noise), "%s", p);
		}
	}
	fclose(f);
	if (out[0] == '\0' && noise[0] != '\0') {
		copy_printable(out, n, noise);
	}
}

/* ---- sessions ----------------------------------------------------------- */

void crs_init(struct crs *s, const char *criu_path, uint32_t timeout_ms)
{
	memset(s, 0, sizeof(*s));
	s->criu = criu_path != NULL ? criu_path : AGENT_CRIU_DEFAULT_PATH;
	s->pid = -1;
	s->pidfd = -1;
	s->sk = -1;
	s->deadline = ha_mono_ms() +
		      (timeout_ms ? timeout_ms : AGENT_CRIU_DEFAULT_TIMEOUT_MS);
}

static int crs_check_binary(struct crs *s, char *err, size_t errlen)
{
	if (access(s->criu, X_OK) < 0) {
		int e = -errno;

		ha_errf(err, errlen, 0,
			"criu binary %s: %s (deploy/install-criu installs it in %s)",
			s->criu, strerror(-e), AGENT_CRIU_DEFAULT_PATH);
		return e;
	}
	return 0;
}

/* Spawns `criu swrk <fd>`; @keep are fds CRIU must inherit. */
int crs_open(struct crs *s, const int *keep, size_t nkeep, char *err,
		    size_t errlen)
{
	int sv[2], ret;
	int fds[AGENT_CRIU_MAX_LIST + 2];
	char fdarg[16];
	char *argv[] = { (char *)s->criu, "swrk", fdarg, NULL };

	ret = crs_check_binary(s, err, errlen);
	if (ret < 0) {
		return ret;
	}
	if (nkeep > AGENT_CRIU_MAX_LIST) {
		ha_errf(err, errlen, 0, "criu %s: %zu fds to pass, at most %u", s->what,
			nkeep, AGENT_CRIU_MAX_LIST);
		return -E2BIG;
	}
	s->buf = malloc(AGENT_CRIU_MAX_MSG);
	if (s->buf == NULL) {
		ha_errf(err, errlen, 0, "criu %s: out of memory", s->what);
		return -ENOMEM;
	}
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0) {
		ret = -errno;
		ha_errf(err, errlen, 0, "criu %s: socketpair: %s", s->what, strerror(-ret));
		return ret;
	}
	snprintf(fdarg, sizeof(fdarg), "%d", sv[1]);
	fds[0] = sv[1];
	for (size_t i = 0; i < nkeep; i++) {
		fds[i + 1] = keep[i];
	}
	ret = crs_spawn(s->criu, argv, fds, nkeep + 1, 0, &s->pid, &s->pidfd, err,
		    errlen);
	close(sv[1]);
	if (ret < 0) {
		close(sv[0]);
		return ret;
	}
	s->sk = sv[0];
	qb_log(LOG_DEBUG, "criu %s: %s swrk pid %d", s->what, s->criu, (int)s->pid);
	return 0;
}

/*
 * Closes the socket, so that CRIU exits, and reaps it. After a timeout
 * (@term) CRIU gets SIGTERM first, never SIGKILL (it may hold tasks
 * seized or frozen), and is left alone if it does not exit in
 * AGENT_CRIU_TERM_GRACE_MS. *status (may be NULL) gets its wait status,
 * -1 when it was not reaped.
 */
void crs_close(struct crs *s, bool term, int *status)
{
	int st = -1;

	if (s->sk >= 0) {
		close(s->sk);
		s->sk = -1;
	}
	if (s->pid > 0) {
		uint64_t now = ha_mono_ms();
		uint64_t wait_ms = s->deadline > now ? s->deadline - now : 0;
		int ret;

		if (term) {
			kill(s->pid, SIGTERM);
			wait_ms = AGENT_CRIU_TERM_GRACE_MS;
		} else if (wait_ms < 1000) {
			wait_ms = 1000;
		}
		ret = crs_reap_within(s->pid, s->pidfd, wait_ms, &st);
		if (ret == -ETIMEDOUT && !term) {
			kill(s->pid, SIGTERM);
			ret = crs_reap_within(s->pid, s->pidfd, AGENT_CRIU_TERM_GRACE_MS,
					  &st);
		}
		if (ret < 0) {
			qb_log(LOG_DEBUG, "criu %s: swrk pid %d still runs after SIGTERM; left alone",
			       s->what, (int)s->pid);
			st = -1;
		}
		s->pid = -1;
	}
	if (s->pidfd >= 0) {
		close(s->pidfd);
		s->pidfd = -1;
	}
	free(s->buf);
	s->buf = NULL;
	if (status != NULL) {
		*status = st;
	}
}

/* Sets the message for CRIU gone without an answer. */
static void crs_gone(struct crs *s, const char *how, char *err, size_t errlen)
{
	char first[256], st[64] = "";
	int status;

	crs_close(s, false, &status);
	if (status != -1) {
		crs_describe_status(st, sizeof(st), status);
	}
	crs_log_first_error(s->log_path, &s->log_before, first, sizeof(first));
	ha_errf(err, errlen, 0, "criu %s: %s%s%s%s%s%s%s", s->what, how,
		st[0] ? "; criu " : "", st, first[0] ? ": " : "", first,
		s->log_path[0] ? "; log " : "", s->log_path);
}

static int crs_send(struct crs *s, const CriuReq *req, char *err, size_t errlen)
{
	size_t len = criu_req__get_packed_size(req);
	uint8_t *buf;
	ssize_t n;
	int ret = 0;

	if (len > AGENT_CRIU_MAX_MSG) {
		ha_errf(err, errlen, 0, "criu %s: request of %zu bytes, at most %u",
			s->what, len, AGENT_CRIU_MAX_MSG);
		return -EMSGSIZE;
	}
	buf = malloc(len ? len : 1);
	if (buf == NULL) {
		ha_errf(err, errlen, 0, "criu %s: out of memory", s->what);
		return -ENOMEM;
	}
	criu_req__pack(req, buf);
	do {
		n = send(s->sk, buf, len, MSG_NOSIGNAL);
	} while (n < 0 && errno == EINTR);
	if (n < 0) {
		ret = -errno;
		if (ret == -EPIPE || ret == -ECONNRESET) {
			ret = -ECONNRESET;
			crs_gone(s, "criu exited without an answer", err, errlen);
		} else {
			ha_errf(err, errlen, 0, "criu %s: sending to swrk pid %d: %s",
				s->what, (int)s->pid, strerror(-ret));
		}
	}
	free(buf);
	return ret;
}

/* Receives one message; *fd gets a passed descriptor or -1. */
static int crs_recv(struct crs *s, struct agent_criu_resp *r, int *fd,
		    char *err, size_t errlen)
{
	union {
		char buf[CMSG_SPACE(sizeof(int) * 4)];
		struct cmsghdr align;
	} cbuf;
	struct iovec iov = { .iov_base = s->buf, .iov_len = AGENT_CRIU_MAX_MSG };
	struct msghdr mh = {
		.msg_iov = &iov,
		.msg_iovlen = 1,
		.msg_control = cbuf.buf,
		.msg_controllen = sizeof(cbuf.buf),
	};
	struct pollfd p = { .fd = s->sk, .events = POLLIN };
	struct cmsghdr *c;
	ssize_t n;
	int ret;

	*fd = -1;
	for (;;) {
		uint64_t now = ha_mono_ms();
		uint64_t left = s->deadline > now ? s->deadline - now : 0;

		if (left == 0) {
			crs_close(s, true, NULL);
			ha_errf(err, errlen, 0,
				"criu %s: no answer within the timeout; criu got SIGTERM; log %s",
				s->what, s->log_path[0] ? s->log_path : "(none)");
			return -ETIMEDOUT;
		}
		ret = poll(&p, 1, left > INT_MAX ? INT_MAX : (int)left);
		if (ret > 0) {
			break;
		}
		if (ret < 0 && errno != EINTR) {
			ret = -errno;
			ha_errf(err, errlen, 0, "criu %s: poll: %s", s->what, strerror(-ret));
			return ret;
		}
	}
	do {
		n = recvmsg(s->sk, &mh, MSG_CMSG_CLOEXEC);
	} while (n < 0 && errno == EINTR);
	if (n < 0) {
		ret = -errno;
		if (ret == -ECONNRESET) {
			crs_gone(s, "criu exited without an answer", err, errlen);
		} else {
			ha_errf(err, errlen, 0, "criu %s: receiving from swrk pid %d: %s",
				s->what, (int)s->pid, strerror(-ret));
		}
		return ret;
	}
	for (c = CMSG_FIRSTHDR(&mh); c != NULL; c = CMSG_NXTHDR(&mh, c)) {
		if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
			size_t nfd = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
			int got[4];

			if (nfd > HA_ARRAY_SIZE(got)) {
				nfd = HA_ARRAY_SIZE(got);
			}
			memcpy(got, CMSG_DATA(c), nfd * sizeof(int));
			for (size_t i = 0; i < nfd; i++) {
				if (*fd < 0) {
					*fd = got[i];
				} else {
					close(got[i]);
				}
			}
		}
	}
	if (n == 0) {
		crs_gone(s, "criu exited without an answer", err, errlen);
		return -ECONNRESET;
	}
	if (mh.msg_flags & MSG_TRUNC) {
		ret = -EMSGSIZE;
		ha_errf(err, errlen, 0, "criu %s: answer longer than %u bytes rejected",
			s->what, AGENT_CRIU_MAX_MSG);
		goto fail;
	}
	ret = agent_criu_resp_decode(s->buf, (size_t)n, r);
	if (ret < 0) {
		ha_errf(err, errlen, 0, "criu %s: malformed answer of %zd bytes rejected",
			s->what, n);
		goto fail;
	}
	return 0;
fail:
	if (*fd >= 0) {
		close(*fd);
		*fd = -1;
	}
	return ret;
}

static int crs_notify(struct crs *s, const struct agent_criu_resp *r, int fd,
		      char *err, size_t errlen)
{
	CriuReq req = CRIU_REQ__INIT;
	struct agent_criu_notify n = {
		.script = r->script,
		.pid = r->notify_pid,
		.fd = fd,
	};
	int cb = 0;

	if (s->notify != NULL) {
		cb = s->notify(&n, s->opaque);
	}
	qb_log(LOG_DEBUG, "criu %s: notify %s pid %d -> %d", s->what, r->script,
	       (int)r->notify_pid, cb);
	if (fd >= 0) {
		close(fd);
	}
	req.type = CRIU_REQ_TYPE__NOTIFY;
	req.has_notify_success = true;
	req.notify_success = cb == 0;
	return crs_send(s, &req, err, errlen);
}

/*
 * Sends @req and reads until the answer of @expect (or EMPTY, CRIU's
 * "bad request" answer), answering NOTIFY messages on the way.
 */
int crs_call(struct crs *s, const CriuReq *req, int expect,
		    struct agent_criu_resp *r, char *err, size_t errlen)
{
	int ret = crs_send(s, req, err, errlen);

	while (ret == 0) {
		int fd;

		ret = crs_recv(s, r, &fd, err, errlen);
		if (ret < 0) {
			break;
		}
		if (r->type == CRIU_REQ_TYPE__NOTIFY) {
			ret = crs_notify(s, r, fd, err, errlen);
			continue;
		}
		if (fd >= 0) {
			close(fd);
		}
		if (r->type != expect && r->type != CRIU_REQ_TYPE__EMPTY) {
			ha_errf(err, errlen, 0, "criu %s: answer of type %d to a request of type %d",
				s->what, r->type, expect);
			ret = -EPROTO;
			break;
		}
		qb_log(LOG_DEBUG, "criu %s: answer type %d success %d cr_errno %d",
		       s->what, r->type, r->success, r->cr_errno);
		return 0;
	}
	return ret;
}

/* The error of a request CRIU answered with success == false. */
int crs_failed(struct crs *s, const struct agent_criu_resp *r, char *err,
		      size_t errlen)
{
	char first[256];
	const char *msg = first;

	/* CRIU's cr_errmsg is the first error it logged, often noise (see
	 * error_is_noise()); the log tells more. */
	crs_log_first_error(s->log_path, &s->log_before, first, sizeof(first));
	if (first[0] == '\0' || (error_is_noise(first) && r->errmsg[0] != '\0' &&
				 !error_is_noise(r->errmsg))) {
		msg = r->errmsg;
	}
	if (r->cr_errno > 0) {
		ha_errf(err, errlen, 0, "criu %s failed: cr_errno %d (%s)%s%s; log %s",
			s->what, r->cr_errno, strerror(r->cr_errno), msg[0] ? ": " : "",
			msg, s->log_path[0] ? s->log_path : "(none)");
	} else {
		ha_errf(err, errlen, 0, "criu %s failed%s%s; log %s", s->what,
			msg[0] ? ": " : "", msg,
			s->log_path[0] ? s->log_path : "(none)");
	}
	return r->cr_errno > 0 && r->cr_errno < 4096 ? -r->cr_errno : -EIO;
}

#endif /* HAVE_CRIU_RPC */
