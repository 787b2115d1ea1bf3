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

#ifdef HAVE_CRIU_RPC
#include "criu/rpc.pb-c.h"
#endif

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

#define SPAWN_SETSID 0x1      /* own session (a workload, not CRIU) */
#define SPAWN_NULL_STDERR 0x2 /* stderr to /dev/null too */

static int pidfd_open_(pid_t pid)
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
static int spawn(const char *path, char *const argv[], const int *keep,
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
	*pidfd_out = pidfd_open_(pid);
	return 0;
}

/*
 * Waits up to @ms for our child @pid to exit and reaps it. Returns 0 with
 * *status set (-1: reaped elsewhere, unknown), -ETIMEDOUT when it still
 * runs.
 */
static int reap_within(pid_t pid, int pidfd, uint64_t ms, int *status)
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

static void describe_status(char *buf, size_t n, int status)
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
static void log_first_error(const char *path, const struct stat *before,
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

static void crs_init(struct crs *s, const char *criu_path, uint32_t timeout_ms)
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
static int crs_open(struct crs *s, const int *keep, size_t nkeep, char *err,
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
	ret = spawn(s->criu, argv, fds, nkeep + 1, 0, &s->pid, &s->pidfd, err,
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
static void crs_close(struct crs *s, bool term, int *status)
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
		ret = reap_within(s->pid, s->pidfd, wait_ms, &st);
		if (ret == -ETIMEDOUT && !term) {
			kill(s->pid, SIGTERM);
			ret = reap_within(s->pid, s->pidfd, AGENT_CRIU_TERM_GRACE_MS,
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
		describe_status(st, sizeof(st), status);
	}
	log_first_error(s->log_path, &s->log_before, first, sizeof(first));
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
static int crs_call(struct crs *s, const CriuReq *req, int expect,
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
static int crs_failed(struct crs *s, const struct agent_criu_resp *r, char *err,
		      size_t errlen)
{
	char first[256];
	const char *msg = first;

	/* CRIU's cr_errmsg is the first error it logged, often noise (see
	 * error_is_noise()); the log tells more. */
	log_first_error(s->log_path, &s->log_before, first, sizeof(first));
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

/* ---- requests ----------------------------------------------------------- */

/* Directory fds and the log path of a request. */
struct dirs {
	int images_fd;
	int work_fd;
};

static void dirs_close(struct dirs *d)
{
	if (d->images_fd >= 0) {
		close(d->images_fd);
	}
	if (d->work_fd >= 0) {
		close(d->work_fd);
	}
	d->images_fd = d->work_fd = -1;
}

static int open_dir(const char *what, const char *role, const char *path,
		    int *fd, char *err, size_t errlen)
{
	*fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (*fd < 0) {
		int e = -errno;

		ha_errf(err, errlen, 0, "criu %s: %s %s: %s", what, role, path,
			strerror(-e));
		return e;
	}
	return 0;
}

/* Fills the common options of @o into @co and the session. */
static int common_setup(struct crs *s, const struct agent_criu_common_opts *c,
			const char *def_log, CriuOpts *co, struct dirs *d,
			char *err, size_t errlen)
{
	const char *log = c->log_file != NULL ? c->log_file : def_log;
	const char *wdir = c->work_dir != NULL ? c->work_dir : c->images_dir;
	int ret;

	d->images_fd = d->work_fd = -1;
	if (c->images_dir == NULL || c->images_dir[0] == '\0') {
		ha_errf(err, errlen, 0, "criu %s: no images directory given", s->what);
		return -EINVAL;
	}
	if (log[0] == '\0' || strchr(log, '/') != NULL || strlen(log) > NAME_MAX) {
		ha_errf(err, errlen, 0, "criu %s: log file name '%s' must be a plain file name",
			s->what, log);
		return -EINVAL;
	}
	if (c->log_level < 0 || c->log_level > 4) {
		ha_errf(err, errlen, 0, "criu %s: log level %d not in 0..4", s->what,
			c->log_level);
		return -EINVAL;
	}
	if ((size_t)snprintf(s->log_path, sizeof(s->log_path), "%s/%s", wdir, log) >=
	    sizeof(s->log_path)) {
		ha_errf(err, errlen, 0, "criu %s: log path %s/%s too long", s->what, wdir,
			log);
		return -ENAMETOOLONG;
	}
	if (stat(s->log_path, &s->log_before) < 0) {
		memset(&s->log_before, 0, sizeof(s->log_before));
	}
	ret = open_dir(s->what, "images directory", c->images_dir, &d->images_fd,
		       err, errlen);
	if (ret < 0) {
		return ret;
	}
	co->images_dir_fd = d->images_fd;
	if (c->work_dir != NULL) {
		ret = open_dir(s->what, "work directory", c->work_dir, &d->work_fd,
			       err, errlen);
		if (ret < 0) {
			dirs_close(d);
			return ret;
		}
		co->has_work_dir_fd = true;
		co->work_dir_fd = d->work_fd;
	}
	co->log_file = (char *)log;
	co->has_log_level = true;
	co->log_level = c->log_level ? c->log_level : 4;
	s->notify = c->notify;
	s->opaque = c->notify_opaque;
	if (c->notify != NULL) {
		co->has_notify_scripts = true;
		co->notify_scripts = true;
	}
	return 0;
}

/* The protobuf lists built for one request; freed by lists_free(). */
struct lists {
	ExtMountMap *mnt;
	ExtMountMap **mntp;
	CriuVethPair *veth;
	CriuVethPair **vethp;
	InheritFd *ifd;
	InheritFd **ifdp;
	CgroupRoot *cgr;
	CgroupRoot **cgrp;
	CriuPageServerInfo ps;
};

static void lists_free(struct lists *l)
{
	free(l->mnt);
	free(l->mntp);
	free(l->veth);
	free(l->vethp);
	free(l->ifd);
	free(l->ifdp);
	free(l->cgr);
	free(l->cgrp);
	memset(l, 0, sizeof(*l));
}

static int check_list(struct crs *s, const char *name, const void *p, size_t n,
		      char *err, size_t errlen)
{
	if (n > AGENT_CRIU_MAX_LIST) {
		ha_errf(err, errlen, 0, "criu %s: %zu %s entries, at most %u", s->what, n,
			name, AGENT_CRIU_MAX_LIST);
		return -E2BIG;
	}
	if (n > 0 && p == NULL) {
		ha_errf(err, errlen, 0, "criu %s: %zu %s entries but no list", s->what, n,
			name);
		return -EINVAL;
	}
	return 0;
}

static int set_kv(struct crs *s, const char *name, const struct agent_criu_kv *kv,
		  size_t n, bool veth, struct lists *l, CriuOpts *co, char *err,
		  size_t errlen)
{
	int ret = check_list(s, name, kv, n, err, errlen);

	if (ret < 0 || n == 0) {
		return ret;
	}
	for (size_t i = 0; i < n; i++) {
		if (kv[i].key == NULL || kv[i].val == NULL) {
			ha_errf(err, errlen, 0, "criu %s: %s entry %zu has no key or value",
				s->what, name, i);
			return -EINVAL;
		}
	}
	if (veth) {
		l->veth = calloc(n, sizeof(*l->veth));
		l->vethp = calloc(n, sizeof(*l->vethp));
		if (l->veth == NULL || l->vethp == NULL) {
			goto nomem;
		}
		for (size_t i = 0; i < n; i++) {
			criu_veth_pair__init(&l->veth[i]);
			l->veth[i].if_in = (char *)kv[i].key;
			l->veth[i].if_out = (char *)kv[i].val;
			l->vethp[i] = &l->veth[i];
		}
		co->n_veths = n;
		co->veths = l->vethp;
	} else {
		l->mnt = calloc(n, sizeof(*l->mnt));
		l->mntp = calloc(n, sizeof(*l->mntp));
		if (l->mnt == NULL || l->mntp == NULL) {
			goto nomem;
		}
		for (size_t i = 0; i < n; i++) {
			ext_mount_map__init(&l->mnt[i]);
			l->mnt[i].key = (char *)kv[i].key;
			l->mnt[i].val = (char *)kv[i].val;
			l->mntp[i] = &l->mnt[i];
		}
		co->n_ext_mnt = n;
		co->ext_mnt = l->mntp;
	}
	return 0;
nomem:
	ha_errf(err, errlen, 0, "criu %s: out of memory", s->what);
	return -ENOMEM;
}

static int set_external(struct crs *s, const char *const *ext, size_t n,
			CriuOpts *co, char *err, size_t errlen)
{
	int ret = check_list(s, "external", ext, n, err, errlen);

	if (ret < 0) {
		return ret;
	}
	for (size_t i = 0; i < n; i++) {
		if (ext[i] == NULL) {
			ha_errf(err, errlen, 0, "criu %s: external entry %zu is NULL", s->what, i);
			return -EINVAL;
		}
	}
	co->n_external = n;
	co->external = (char **)ext;
	return 0;
}

static int set_cg_mode(struct crs *s, enum agent_criu_cg_mode m, CriuOpts *co,
		       char *err, size_t errlen)
{
	static const CriuCgMode map[AGENT_CRIU_CG_MAX] = {
		[AGENT_CRIU_CG_IGNORE] = CRIU_CG_MODE__IGNORE,
		[AGENT_CRIU_CG_NONE] = CRIU_CG_MODE__CG_NONE,
		[AGENT_CRIU_CG_PROPS] = CRIU_CG_MODE__PROPS,
		[AGENT_CRIU_CG_SOFT] = CRIU_CG_MODE__SOFT,
		[AGENT_CRIU_CG_FULL] = CRIU_CG_MODE__FULL,
		[AGENT_CRIU_CG_STRICT] = CRIU_CG_MODE__STRICT,
	};

	if ((unsigned)m >= AGENT_CRIU_CG_MAX) {
		ha_errf(err, errlen, 0, "criu %s: invalid manage_cgroups mode %d", s->what,
			(int)m);
		return -EINVAL;
	}
	if (m != AGENT_CRIU_CG_UNSET) {
		co->has_manage_cgroups_mode = true;
		co->manage_cgroups_mode = map[m];
	}
	return 0;
}

static int set_netlock(struct crs *s, enum agent_criu_netlock m, CriuOpts *co,
		       char *err, size_t errlen)
{
	static const CriuNetworkLockMethod map[AGENT_CRIU_NETLOCK_MAX] = {
		[AGENT_CRIU_NETLOCK_IPTABLES] = CRIU_NETWORK_LOCK_METHOD__IPTABLES,
		[AGENT_CRIU_NETLOCK_NFTABLES] = CRIU_NETWORK_LOCK_METHOD__NFTABLES,
		[AGENT_CRIU_NETLOCK_SKIP] = CRIU_NETWORK_LOCK_METHOD__SKIP,
	};

	if ((unsigned)m >= AGENT_CRIU_NETLOCK_MAX) {
		ha_errf(err, errlen, 0, "criu %s: invalid network lock method %d", s->what,
			(int)m);
		return -EINVAL;
	}
	if (m != AGENT_CRIU_NETLOCK_UNSET) {
		co->has_network_lock = true;
		co->network_lock = map[m];
	}
	return 0;
}

#define SET_BOOL(co, field, v)                                                 \
	do {                                                                   \
		if (v) {                                                       \
			(co)->has_##field = true;                              \
			(co)->field = true;                                    \
		}                                                              \
	} while (0)

int agent_criu_dump(const char *criu_path, const struct agent_criu_dump_opts *o,
		    char *err, size_t errlen)
{
	CriuReq req = CRIU_REQ__INIT;
	CriuOpts co = CRIU_OPTS__INIT;
	struct agent_criu_resp r;
	struct lists l = { 0 };
	struct dirs d = { -1, -1 };
	struct crs s;
	int keep[1], nkeep = 0;
	int ret;

	if (o == NULL) {
		ha_errf(err, errlen, 0, "criu dump: no options given");
		return -EINVAL;
	}
	crs_init(&s, criu_path, o->c.timeout_ms);
	snprintf(s.what, sizeof(s.what), "%s of pid %d",
		 o->pre_dump ? "pre-dump" : "dump", (int)o->pid);
	if (o->pid <= 0) {
		ha_errf(err, errlen, 0, "criu dump: invalid pid %d", (int)o->pid);
		return -EINVAL;
	}
	if (o->ghost_limit > UINT32_MAX) {
		ha_errf(err, errlen, 0, "criu %s: ghost limit %" PRIu64 " above 4 GiB",
			s.what, o->ghost_limit);
		return -EINVAL;
	}
	if (o->empty_ns & ~(uint32_t)CLONE_NEWNET) {
		ha_errf(err, errlen, 0, "criu %s: empty_ns %#x: CRIU only accepts CLONE_NEWNET",
			s.what, o->empty_ns);
		return -EINVAL;
	}
	ret = common_setup(&s, &o->c, o->pre_dump ? "pre-dump.log" : "dump.log",
			   &co, &d, err, errlen);
	if (ret < 0) {
		return ret;
	}
	co.has_pid = true;
	co.pid = o->pid;
	SET_BOOL(&co, leave_running, o->leave_running);
	SET_BOOL(&co, leave_stopped, o->leave_stopped);
	SET_BOOL(&co, track_mem, o->track_mem);
	co.parent_img = (char *)o->parent_img;
	SET_BOOL(&co, tcp_established, o->tcp_established);
	SET_BOOL(&co, tcp_close, o->tcp_close);
	SET_BOOL(&co, tcp_skip_in_flight, o->tcp_skip_in_flight);
	SET_BOOL(&co, ext_unix_sk, o->ext_unix_sk);
	SET_BOOL(&co, shell_job, o->shell_job);
	SET_BOOL(&co, file_locks, o->file_locks);
	SET_BOOL(&co, link_remap, o->link_remap);
	SET_BOOL(&co, evasive_devices, o->evasive_devices);
	SET_BOOL(&co, auto_dedup, o->auto_dedup);
	SET_BOOL(&co, lazy_pages, o->lazy_pages);
	if (o->orphan_pts_master) {
		co.has_orphan_pts_master = true;
		co.orphan_pts_master = true;
		co.has_notify_scripts = true;
		co.notify_scripts = true;
	}
	co.root = (char *)o->root;
	co.freeze_cgroup = (char *)o->freeze_cgroup;
	if (o->ghost_limit) {
		co.has_ghost_limit = true;
		co.ghost_limit = (uint32_t)o->ghost_limit;
	}
	if (o->empty_ns) {
		co.has_empty_ns = true;
		co.empty_ns = o->empty_ns;
	}
	if ((ret = set_cg_mode(&s, o->manage_cgroups, &co, err, errlen)) < 0 ||
	    (ret = set_netlock(&s, o->network_lock, &co, err, errlen)) < 0 ||
	    (ret = set_kv(&s, "ext_mnt", o->ext_mnt, o->n_ext_mnt, false, &l, &co,
			  err, errlen)) < 0 ||
	    (ret = set_kv(&s, "veth_pairs", o->veth_pairs, o->n_veth_pairs, true, &l,
			  &co, err, errlen)) < 0 ||
	    (ret = set_external(&s, o->external, o->n_external, &co, err, errlen)) < 0) {
		goto out;
	}
	if (o->ps_port != 0 || o->ps_fd > 0 || o->lazy_pages) {
		criu_page_server_info__init(&l.ps);
		l.ps.address = (char *)o->ps_address;
		if (o->ps_port != 0) {
			l.ps.has_port = true;
			l.ps.port = o->ps_port;
		}
		if (o->ps_fd > 0) {
			l.ps.has_fd = true;
			l.ps.fd = o->ps_fd;
			keep[nkeep++] = o->ps_fd;
		}
		co.ps = &l.ps;
	}
	req.type = o->pre_dump ? CRIU_REQ_TYPE__PRE_DUMP : CRIU_REQ_TYPE__DUMP;
	req.opts = &co;

	ret = crs_open(&s, keep, (size_t)nkeep, err, errlen);
	if (ret < 0) {
		goto out;
	}
	ret = crs_call(&s, &req, (int)req.type, &r, err, errlen);
	if (ret == 0 && !r.success) {
		ret = crs_failed(&s, &r, err, errlen);
	}
	crs_close(&s, false, NULL);
out:
	lists_free(&l);
	dirs_close(&d);
	return ret;
}

int agent_criu_restore(const char *criu_path,
		       const struct agent_criu_restore_opts *o, pid_t *pid_out,
		       char *err, size_t errlen)
{
	CriuReq req = CRIU_REQ__INIT;
	CriuOpts co = CRIU_OPTS__INIT;
	struct agent_criu_resp r;
	struct lists l = { 0 };
	struct dirs d = { -1, -1 };
	struct crs s;
	int keep[AGENT_CRIU_MAX_LIST];
	int ret;

	if (pid_out != NULL) {
		*pid_out = 0;
	}
	if (o == NULL) {
		ha_errf(err, errlen, 0, "criu restore: no options given");
		return -EINVAL;
	}
	crs_init(&s, criu_path, o->c.timeout_ms);
	snprintf(s.what, sizeof(s.what), "restore from %.70s",
		 o->c.images_dir ? o->c.images_dir : "(none)");
	if (o->restore_detached && o->restore_sibling) {
		ha_errf(err, errlen, 0, "criu %s: restore_detached and restore_sibling exclude each other",
			s.what);
		return -EINVAL;
	}
	ret = common_setup(&s, &o->c, "restore.log", &co, &d, err, errlen);
	if (ret < 0) {
		return ret;
	}
	/* The RPC service restores detached anyway; rst_sibling makes the
	 * tree our child instead of CRIU's. */
	SET_BOOL(&co, rst_sibling, o->restore_sibling);
	SET_BOOL(&co, leave_stopped, o->leave_stopped);
	co.root = (char *)o->root;
	SET_BOOL(&co, tcp_established, o->tcp_established);
	SET_BOOL(&co, tcp_close, o->tcp_close);
	SET_BOOL(&co, ext_unix_sk, o->ext_unix_sk);
	SET_BOOL(&co, shell_job, o->shell_job);
	SET_BOOL(&co, file_locks, o->file_locks);
	SET_BOOL(&co, link_remap, o->link_remap);
	SET_BOOL(&co, evasive_devices, o->evasive_devices);
	SET_BOOL(&co, auto_dedup, o->auto_dedup);
	SET_BOOL(&co, lazy_pages, o->lazy_pages);
	if (o->orphan_pts_master) {
		co.has_orphan_pts_master = true;
		co.orphan_pts_master = true;
		co.has_notify_scripts = true;
		co.notify_scripts = true;
	}
	if ((ret = set_cg_mode(&s, o->manage_cgroups, &co, err, errlen)) < 0 ||
	    (ret = set_netlock(&s, o->network_lock, &co, err, errlen)) < 0 ||
	    (ret = set_kv(&s, "ext_mnt", o->ext_mnt, o->n_ext_mnt, false, &l, &co,
			  err, errlen)) < 0 ||
	    (ret = set_kv(&s, "veth_pairs", o->veth_pairs, o->n_veth_pairs, true, &l,
			  &co, err, errlen)) < 0 ||
	    (ret = set_external(&s, o->external, o->n_external, &co, err, errlen)) < 0 ||
	    (ret = check_list(&s, "cg_root", o->cg_root, o->n_cg_root, err,
			      errlen)) < 0 ||
	    (ret = check_list(&s, "inherit_fd", o->inherit_fd, o->n_inherit_fd, err,
			      errlen)) < 0) {
		goto out;
	}
	if (o->n_cg_root > 0) {
		l.cgr = calloc(o->n_cg_root, sizeof(*l.cgr));
		l.cgrp = calloc(o->n_cg_root, sizeof(*l.cgrp));
		if (l.cgr == NULL || l.cgrp == NULL) {
			ret = -ENOMEM;
			ha_errf(err, errlen, 0, "criu %s: out of memory", s.what);
			goto out;
		}
		for (size_t i = 0; i < o->n_cg_root; i++) {
			if (o->cg_root[i].path == NULL) {
				ret = -EINVAL;
				ha_errf(err, errlen, 0, "criu %s: cg_root entry %zu has no path",
					s.what, i);
				goto out;
			}
			cgroup_root__init(&l.cgr[i]);
			l.cgr[i].ctrl = (char *)o->cg_root[i].ctrl;
			l.cgr[i].path = (char *)o->cg_root[i].path;
			l.cgrp[i] = &l.cgr[i];
		}
		co.n_cg_root = o->n_cg_root;
		co.cg_root = l.cgrp;
	}
	if (o->n_inherit_fd > 0) {
		l.ifd = calloc(o->n_inherit_fd, sizeof(*l.ifd));
		l.ifdp = calloc(o->n_inherit_fd, sizeof(*l.ifdp));
		if (l.ifd == NULL || l.ifdp == NULL) {
			ret = -ENOMEM;
			ha_errf(err, errlen, 0, "criu %s: out of memory", s.what);
			goto out;
		}
		for (size_t i = 0; i < o->n_inherit_fd; i++) {
			const struct agent_criu_inherit_fd *f = &o->inherit_fd[i];

			if (f->key == NULL || f->fd < 0 || fcntl(f->fd, F_GETFD) < 0) {
				ret = -EBADF;
				ha_errf(err, errlen, 0, "criu %s: inherit_fd entry %zu (%s): fd %d not open",
					s.what, i, f->key ? f->key : "no key", f->fd);
				goto out;
			}
			inherit_fd__init(&l.ifd[i]);
			l.ifd[i].key = (char *)f->key;
			l.ifd[i].fd = f->fd;
			l.ifdp[i] = &l.ifd[i];
			keep[i] = f->fd;
		}
		co.n_inherit_fd = o->n_inherit_fd;
		co.inherit_fd = l.ifdp;
	}
	req.type = CRIU_REQ_TYPE__RESTORE;
	req.opts = &co;

	ret = crs_open(&s, keep, o->n_inherit_fd, err, errlen);
	if (ret < 0) {
		goto out;
	}
	ret = crs_call(&s, &req, CRIU_REQ_TYPE__RESTORE, &r, err, errlen);
	if (ret == 0 && !r.success) {
		ret = crs_failed(&s, &r, err, errlen);
	} else if (ret == 0 && r.restore_pid <= 0) {
		ha_errf(err, errlen, 0, "criu %s: success without the pid of the tree; log %s",
			s.what, s.log_path);
		ret = -EPROTO;
	} else if (ret == 0 && pid_out != NULL) {
		*pid_out = r.restore_pid;
	}
	crs_close(&s, false, NULL);
out:
	lists_free(&l);
	dirs_close(&d);
	return ret;
}

int agent_criu_check_features(const char *criu_path, bool *mem_track,
			      bool *lazy_pages, char *err, size_t errlen)
{
	CriuReq req = CRIU_REQ__INIT;
	CriuFeatures f = CRIU_FEATURES__INIT;
	struct agent_criu_resp r;
	struct crs s;
	int ret;

	crs_init(&s, criu_path, AGENT_CRIU_PROBE_TIMEOUT_MS);
	snprintf(s.what, sizeof(s.what), "feature check");
	f.has_mem_track = f.mem_track = true;
	f.has_lazy_pages = f.lazy_pages = true;
	req.type = CRIU_REQ_TYPE__FEATURE_CHECK;
	req.features = &f;
	ret = crs_open(&s, NULL, 0, err, errlen);
	if (ret < 0) {
		return ret;
	}
	ret = crs_call(&s, &req, CRIU_REQ_TYPE__FEATURE_CHECK, &r, err, errlen);
	if (ret == 0 && (!r.success || !r.has_features)) {
		ha_errf(err, errlen, 0, "criu %s failed (%s)", s.what,
			r.errmsg[0] ? r.errmsg : "no features in the answer");
		ret = -EIO;
	}
	crs_close(&s, false, NULL);
	if (ret == 0) {
		if (mem_track != NULL) {
			*mem_track = r.feat_mem_track;
		}
		if (lazy_pages != NULL) {
			*lazy_pages = r.feat_lazy_pages;
		}
	}
	return ret;
}

static int criu_version(const char *criu_path, char *out, size_t n, char *err,
			size_t errlen)
{
	CriuReq req = CRIU_REQ__INIT;
	struct agent_criu_resp r;
	struct crs s;
	int ret;

	crs_init(&s, criu_path, AGENT_CRIU_PROBE_TIMEOUT_MS);
	snprintf(s.what, sizeof(s.what), "version");
	req.type = CRIU_REQ_TYPE__VERSION;
	ret = crs_open(&s, NULL, 0, err, errlen);
	if (ret < 0) {
		return ret;
	}
	ret = crs_call(&s, &req, CRIU_REQ_TYPE__VERSION, &r, err, errlen);
	if (ret == 0 && (!r.success || !r.has_version)) {
		ha_errf(err, errlen, 0, "criu %s: %s answered no version", s.what, s.criu);
		ret = -EPROTO;
	}
	crs_close(&s, false, NULL);
	if (ret == 0) {
		if (r.version_sublevel > 0) {
			snprintf(out, n, "%d.%d.%d", r.version_major, r.version_minor,
				 r.version_sublevel);
		} else {
			snprintf(out, n, "%d.%d", r.version_major, r.version_minor);
		}
	}
	return ret;
}

/* ---- the probe's trial dump ------------------------------------------- */

/* Removes the flat directory CRIU wrote (images and log, no subdirs). */
static void remove_flat_dir(const char *path)
{
	DIR *dir = opendir(path);
	struct dirent *de;

	if (dir != NULL) {
		while ((de = readdir(dir)) != NULL) {
			if (strcmp(de->d_name, ".") && strcmp(de->d_name, "..")) {
				unlinkat(dirfd(dir), de->d_name, 0);
			}
		}
		closedir(dir);
	}
	rmdir(path);
}

/*
 * Starts a throw-away `sleep` in its own session holding a listening
 * socket and both ends of an established connection on 127.0.0.1.
 */
static int start_tcp_holder(pid_t *pid, int *pidfd, char *err, size_t errlen)
{
	static const char *const sleeps[] = { "/usr/bin/sleep", "/bin/sleep" };
	struct sockaddr_in a = { .sin_family = AF_INET };
	socklen_t alen = sizeof(a);
	int fds[3] = { -1, -1, -1 };
	const char *sleep_path = NULL;
	int ret;

	for (size_t i = 0; i < HA_ARRAY_SIZE(sleeps); i++) {
		if (access(sleeps[i], X_OK) == 0) {
			sleep_path = sleeps[i];
			break;
		}
	}
	if (sleep_path == NULL) {
		ha_errf(err, errlen, 0, "criu probe: no sleep binary for the trial dump");
		return -ENOENT;
	}
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	fds[0] = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	fds[1] = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fds[0] < 0 || fds[1] < 0 ||
	    bind(fds[0], (struct sockaddr *)&a, sizeof(a)) < 0 ||
	    listen(fds[0], 4) < 0 ||
	    getsockname(fds[0], (struct sockaddr *)&a, &alen) < 0 ||
	    connect(fds[1], (struct sockaddr *)&a, sizeof(a)) < 0 ||
	    (fds[2] = accept4(fds[0], NULL, NULL, SOCK_CLOEXEC)) < 0) {
		ret = -errno;
		ha_errf(err, errlen, 0, "criu probe: loopback TCP sockets: %s",
			strerror(-ret));
		goto out;
	}
	{
		char *argv[] = { (char *)sleep_path, "600", NULL };

		ret = spawn(sleep_path, argv, fds, 3, SPAWN_SETSID | SPAWN_NULL_STDERR,
			    pid, pidfd, err, errlen);
	}
out:
	for (size_t i = 0; i < HA_ARRAY_SIZE(fds); i++) {
		if (fds[i] >= 0) {
			close(fds[i]);
		}
	}
	return ret;
}

static bool trial_inet_dump(const char *criu_path, char *err, size_t errlen)
{
	char dir[] = "/tmp/hactl-criu-probe.XXXXXX";
	char e2[512] = "";
	pid_t pid = -1;
	int pidfd = -1, status, ret;
	struct agent_criu_dump_opts o = {
		.c.timeout_ms = AGENT_CRIU_PROBE_TIMEOUT_MS,
		.c.log_file = "probe-dump.log",
		.leave_running = true,
		.tcp_established = true,
		/* No iptables needed: CRIU locks with its libnftables. */
		.network_lock = AGENT_CRIU_NETLOCK_NFTABLES,
	};

	if (geteuid() != 0) {
		qb_log(LOG_DEBUG, "criu probe: not root, no trial dump");
		return false;
	}
	if (mkdtemp(dir) == NULL) {
		qb_log(LOG_DEBUG, "criu probe: mkdtemp %s: %s", dir, strerror(errno));
		return false;
	}
	ret = start_tcp_holder(&pid, &pidfd, e2, sizeof(e2));
	if (ret == 0) {
		o.c.images_dir = dir;
		o.pid = pid;
		ret = agent_criu_dump(criu_path, &o, e2, sizeof(e2));
		/* Our own throw-away child, not CRIU. */
		kill(pid, SIGKILL);
		reap_within(pid, pidfd, 10 * 1000, &status);
		if (pidfd >= 0) {
			close(pidfd);
		}
	}
	if (ret < 0) {
		qb_log(LOG_DEBUG, "criu probe: trial dump failed: %s", e2);
		ha_errf(err, errlen, 0, "%s", e2);
	}
	remove_flat_dir(dir);
	return ret == 0;
}

/* Lazy pages need pipes of 4 MiB (fs.pipe-max-size). */
#define LAZY_PIPE_MIN (4u * 1024u * 1024u)

static bool pipe_max_ok(void)
{
	char buf[32];
	uint64_t v = 0;
	ssize_t n;
	int fd = open("/proc/sys/fs/pipe-max-size", O_RDONLY | O_CLOEXEC);

	if (fd < 0) {
		return false;
	}
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0) {
		return false;
	}
	buf[n] = '\0';
	buf[strcspn(buf, "\n")] = '\0';
	return ha_parse_u64(buf, 0, UINT64_MAX, &v) == 0 && v >= LAZY_PIPE_MIN;
}

int agent_criu_probe(const char *criu_path, struct agent_criu_caps *out,
		     char *err, size_t errlen)
{
	char e2[512];
	bool mt = false, lp = false;
	int ret;

	memset(out, 0, sizeof(*out));
	ha_errf(err, errlen, 0, "%s", "");
	ret = criu_version(criu_path, out->version, sizeof(out->version), err,
			   errlen);
	if (ret < 0) {
		out->version[0] = '\0';
		return ret;
	}
	out->present = true;
	ret = agent_criu_check_features(criu_path, &mt, &lp, e2, sizeof(e2));
	if (ret < 0) {
		qb_log(LOG_DEBUG, "criu probe: %s", e2);
	}
	out->mem_dirty_track = mt;
	out->lazy_pages = lp && pipe_max_ok();
	if (lp && !out->lazy_pages) {
		qb_log(LOG_DEBUG, "criu probe: lazy pages need fs.pipe-max-size >= %u",
		       LAZY_PIPE_MIN);
	}
	out->inet_dump_ok = trial_inet_dump(criu_path, e2, sizeof(e2));
	qb_log(LOG_DEBUG, "criu probe: %s version %s mem_dirty_track %d lazy_pages %d inet_dump_ok %d",
	       criu_path ? criu_path : AGENT_CRIU_DEFAULT_PATH, out->version,
	       out->mem_dirty_track, out->lazy_pages, out->inet_dump_ok);
	return 0;
}

/* ---- page server and lazy-pages daemon ---------------------------------- */

int agent_criu_page_server(const char *criu_path,
			   const struct agent_criu_ps_opts *o, pid_t *pid_out,
			   uint16_t *port_out, char *err, size_t errlen)
{
	CriuReq req = CRIU_REQ__INIT;
	CriuOpts co = CRIU_OPTS__INIT;
	CriuPageServerInfo ps = CRIU_PAGE_SERVER_INFO__INIT;
	struct agent_criu_resp r;
	struct dirs d = { -1, -1 };
	struct crs s;
	int keep[1], nkeep = 0;
	int ret;

	if (pid_out != NULL) {
		*pid_out = 0;
	}
	if (port_out != NULL) {
		*port_out = 0;
	}
	if (o == NULL) {
		ha_errf(err, errlen, 0, "criu page server: no options given");
		return -EINVAL;
	}
	crs_init(&s, criu_path, o->c.timeout_ms);
	snprintf(s.what, sizeof(s.what), "page server on %.40s:%u",
		 o->address ? o->address : "*", o->port);
	ret = common_setup(&s, &o->c, "page-server.log", &co, &d, err, errlen);
	if (ret < 0) {
		return ret;
	}
	ps.address = (char *)o->address;
	ps.has_port = true;
	ps.port = o->port;
	if (o->fd > 0) {
		ps.has_fd = true;
		ps.fd = o->fd;
		keep[nkeep++] = o->fd;
	}
	co.ps = &ps;
	/* No notifications: the server would send them on this session's
	 * socket after the answer, when nobody listens any more. */
	co.has_notify_scripts = false;
	co.notify_scripts = false;
	s.notify = NULL;
	/* PAGE_SERVER_CHLD: a child of the swrk process serves and answers
	 * its real pid (PAGE_SERVER's daemon mode answers pid 0). */
	req.type = CRIU_REQ_TYPE__PAGE_SERVER_CHLD;
	req.opts = &co;
	ret = crs_open(&s, keep, (size_t)nkeep, err, errlen);
	if (ret < 0) {
		goto out;
	}
	ret = crs_call(&s, &req, CRIU_REQ_TYPE__PAGE_SERVER, &r, err, errlen);
	if (ret == 0 && !r.success) {
		ret = crs_failed(&s, &r, err, errlen);
	} else if (ret == 0 && (r.ps_pid <= 0 || r.ps_port <= 0)) {
		ha_errf(err, errlen, 0, "criu %s: no pid or port in the answer; log %s",
			s.what, s.log_path);
		ret = -EPROTO;
	}
	crs_close(&s, false, NULL);
	if (ret == 0) {
		if (pid_out != NULL) {
			*pid_out = r.ps_pid;
		}
		if (port_out != NULL) {
			*port_out = (uint16_t)r.ps_port;
		}
	}
out:
	dirs_close(&d);
	return ret;
}

int agent_criu_lazy_pages(const char *criu_path,
			  const struct agent_criu_lazy_opts *o, pid_t *pid_out,
			  char *err, size_t errlen)
{
	const char *criu = criu_path != NULL ? criu_path : AGENT_CRIU_DEFAULT_PATH;
	const char *log;
	char port[8], verb[8], status_fd[16];
	char log_path[PATH_MAX];
	uint64_t deadline;
	int sp[2], pidfd = -1, ret, st;
	pid_t pid = -1;
	char c;

	if (pid_out != NULL) {
		*pid_out = 0;
	}
	if (o == NULL || o->c.images_dir == NULL || o->address == NULL ||
	    o->port == 0) {
		ha_errf(err, errlen, 0, "criu lazy-pages: images_dir, address and port are required");
		return -EINVAL;
	}
	log = o->c.log_file != NULL ? o->c.log_file : "lazy-pages.log";
	if (strchr(log, '/') != NULL || o->c.log_level < 0 || o->c.log_level > 4) {
		ha_errf(err, errlen, 0, "criu lazy-pages: log file '%s' or level %d invalid",
			log, o->c.log_level);
		return -EINVAL;
	}
	snprintf(log_path, sizeof(log_path), "%s/%s",
		 o->c.work_dir ? o->c.work_dir : o->c.images_dir, log);
	if (access(criu, X_OK) < 0) {
		ret = -errno;
		ha_errf(err, errlen, 0, "criu binary %s: %s (deploy/install-criu installs it in %s)",
			criu, strerror(-ret), AGENT_CRIU_DEFAULT_PATH);
		return ret;
	}
	if (pipe2(sp, O_CLOEXEC) < 0) {
		ret = -errno;
		ha_errf(err, errlen, 0, "criu lazy-pages: pipe: %s", strerror(-ret));
		return ret;
	}
	snprintf(port, sizeof(port), "%u", o->port);
	snprintf(verb, sizeof(verb), "-v%d", o->c.log_level ? o->c.log_level : 4);
	snprintf(status_fd, sizeof(status_fd), "%d", sp[1]);
	{
		char *argv[] = { (char *)criu, "lazy-pages", "--page-server",
				 "--address", (char *)o->address, "--port", port,
				 "-D", (char *)o->c.images_dir,
				 "-W", (char *)(o->c.work_dir ? o->c.work_dir
							      : o->c.images_dir),
				 "-o", (char *)log, verb, "--status-fd", status_fd,
				 NULL };

		ret = spawn(criu, argv, &sp[1], 1, 0, &pid, &pidfd, err, errlen);
	}
	close(sp[1]);
	if (ret < 0) {
		close(sp[0]);
		return ret;
	}
	/* One byte on the status fd: it listens for the restore. */
	deadline = ha_mono_ms() + (o->c.timeout_ms ? o->c.timeout_ms
						   : AGENT_CRIU_PROBE_TIMEOUT_MS);
	for (;;) {
		struct pollfd p = { .fd = sp[0], .events = POLLIN };
		uint64_t now = ha_mono_ms();
		ssize_t n;

		if (now >= deadline) {
			ret = -ETIMEDOUT;
			break;
		}
		if (poll(&p, 1, (int)(deadline - now > INT_MAX ? INT_MAX
							  : deadline - now)) <= 0) {
			continue;
		}
		n = read(sp[0], &c, 1);
		if (n == 1) {
			ret = 0;
			break;
		}
		if (n == 0) {
			ret = -EIO;
			break;
		}
		if (errno != EINTR) {
			ret = -errno;
			break;
		}
	}
	close(sp[0]);
	if (ret < 0) {
		char first[256], how[64] = "did not get ready in time";

		/* A lazy-pages daemon holds no tasks: SIGTERM is safe. */
		if (ret == -ETIMEDOUT) {
			kill(pid, SIGTERM);
		}
		if (reap_within(pid, pidfd, AGENT_CRIU_TERM_GRACE_MS, &st) == 0 &&
		    ret != -ETIMEDOUT && st != -1) {
			describe_status(how, sizeof(how), st);
		}
		log_first_error(log_path, NULL, first, sizeof(first));
		ha_errf(err, errlen, 0, "criu lazy-pages for %s:%u %s%s%s; log %s",
			o->address, o->port, how, first[0] ? ": " : "", first,
			log_path);
		if (pidfd >= 0) {
			close(pidfd);
		}
		return ret;
	}
	if (pidfd >= 0) {
		close(pidfd);
	}
	if (pid_out != NULL) {
		*pid_out = pid;
	}
	return 0;
}

int agent_criu_child_wait(pid_t pid, uint32_t timeout_ms, char *err,
			  size_t errlen)
{
	uint64_t ms = timeout_ms ? timeout_ms : AGENT_CRIU_DEFAULT_TIMEOUT_MS;
	int pidfd, status = 0, ret;
	pid_t r;
	char how[64];

	if (pid <= 0) {
		ha_errf(err, errlen, 0, "criu helper: invalid pid %d", (int)pid);
		return -EINVAL;
	}
	r = waitpid(pid, &status, WNOHANG);
	if (r == pid) {
		goto check;
	}
	pidfd = pidfd_open_(pid);
	if (r < 0 && errno == ECHILD) {
		/* Not our child (a page server CRIU daemonized): wait for its
		 * end; its exit status is not ours to see. */
		struct pollfd p = { .fd = pidfd, .events = POLLIN };

		if (pidfd < 0) {
			if (errno == ESRCH) {
				return 0;
			}
			ret = -errno;
			ha_errf(err, errlen, 0, "criu helper pid %d: cannot wait: pidfd_open: %s",
				(int)pid, strerror(-ret));
			return ret;
		}
		ret = poll(&p, 1, ms > INT_MAX ? INT_MAX : (int)ms);
		close(pidfd);
		if (ret == 0) {
			ha_errf(err, errlen, 0, "criu helper pid %d still runs after %" PRIu64 " ms",
				(int)pid, ms);
			return -ETIMEDOUT;
		}
		return 0;
	}
	ret = reap_within(pid, pidfd, ms, &status);
	if (pidfd >= 0) {
		close(pidfd);
	}
	if (ret == -ETIMEDOUT) {
		ha_errf(err, errlen, 0, "criu helper pid %d still runs after %" PRIu64 " ms",
			(int)pid, ms);
		return ret;
	}
check:
	if (status == -1 || (WIFEXITED(status) && WEXITSTATUS(status) == 0)) {
		return 0;
	}
	describe_status(how, sizeof(how), status);
	ha_errf(err, errlen, 0, "criu helper pid %d %s (see the log in its work directory)",
		(int)pid, how);
	return -EIO;
}

#endif /* HAVE_CRIU_RPC */
