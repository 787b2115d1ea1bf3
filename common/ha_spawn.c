/*
 * ha_spawn.c - a helper program run with a deadline, input from memory and
 * bounded output capture (ha_spawn.h).
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/close_range.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "ha_spawn.h"
#include "util.h"

void ha_spawn_child_reset(void)
{
	struct sigaction sa;
	sigset_t none;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = SIG_DFL;
	for (int sig = 1; sig < NSIG; sig++) {
		if (sig != SIGKILL && sig != SIGSTOP) {
			sigaction(sig, &sa, NULL);
		}
	}
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
}

/* The child: async-signal-safe calls only. Never returns. */
static void child_run(const struct ha_spawn *s, int in_rd, int out_wr, int err_wr)
{
	int nul = open("/dev/null", O_RDWR | O_CLOEXEC);

	ha_spawn_child_reset();
	/* Its own process group, so that the deadline kills all it started.
	 * The parent sets it too (whichever comes first); setsid fails, as
	 * it should, once the parent made it a group leader. */
	if (setsid() < 0) {
		setpgid(0, 0);
	}
	if (nul < 0) {
		_exit(126);
	}
	if (dup2(in_rd >= 0 ? in_rd : nul, STDIN_FILENO) < 0 ||
	    dup2(out_wr >= 0 ? out_wr : nul, STDOUT_FILENO) < 0) {
		_exit(126);
	}
	switch (s->err) {
	case HA_SPAWN_ERR_TO_OUT:
		if (dup2(out_wr >= 0 ? out_wr : nul, STDERR_FILENO) < 0) {
			_exit(126);
		}
		break;
	case HA_SPAWN_ERR_CAPTURE:
		if (dup2(err_wr >= 0 ? err_wr : nul, STDERR_FILENO) < 0) {
			_exit(126);
		}
		break;
	case HA_SPAWN_ERR_INHERIT:
		break;
	default:
		if (dup2(nul, STDERR_FILENO) < 0) {
			_exit(126);
		}
		break;
	}
	if (s->setup != NULL && s->setup(s->setup_arg) != 0) {
		_exit(126);
	}
	if (s->fn != NULL) {
		_exit(s->fn(s->arg) & 0xff);
	}
	/* Nothing of the caller's leaks into the program. */
	syscall(SYS_close_range, 3u, ~0u, CLOSE_RANGE_CLOEXEC);
	if (strchr(s->argv[0], '/') != NULL) {
		execv(s->argv[0], s->argv);
	} else {
		execvp(s->argv[0], s->argv);
	}
	_exit(127);
}

struct capture {
	int fd;
	char *buf;
	size_t len;     /* capacity, with the NUL */
	size_t got;
	bool tail;
	bool truncated;
};

/* Reads what is there; false at EOF or on an error. */
static bool capture_read(struct capture *c)
{
	char chunk[4096];
	ssize_t n;

	do {
		n = read(c->fd, chunk, sizeof(chunk));
	} while (n < 0 && errno == EINTR);
	if (n < 0 && errno == EAGAIN) {
		return true;
	}
	if (n <= 0) {
		return false;
	}
	if (c->buf == NULL || c->len == 0) {
		return true;
	}
	{
		size_t cap = c->len - 1, take = (size_t)n, room = cap - c->got;

		if (take <= room) {
			memcpy(c->buf + c->got, chunk, take);
			c->got += take;
		} else if (!c->tail) {
			memcpy(c->buf + c->got, chunk, room);
			c->got += room;
			c->truncated = true;
		} else {
			/* keep the last cap bytes of what was kept and the chunk */
			const char *src = chunk;

			if (take >= cap) {
				src = chunk + (take - cap);
				take = cap;
				c->got = 0;
			} else {
				size_t drop = take - room;

				memmove(c->buf, c->buf + drop, c->got - drop);
				c->got -= drop;
			}
			memcpy(c->buf + c->got, src, take);
			c->got += take;
			c->truncated = true;
		}
		c->buf[c->got] = '\0';
	}
	return true;
}

static int pidfd_open_(pid_t pid)
{
#ifdef SYS_pidfd_open
	return (int)syscall(SYS_pidfd_open, pid, 0);
#else
	(void)pid;
	errno = ENOSYS;
	return -1;
#endif
}

/*
 * Reaps @pid before @deadline (0: none). Returns 0 with *status, -ETIMEDOUT,
 * or -ECHILD (reaped elsewhere).
 */
static int reap(pid_t pid, int pidfd, uint64_t deadline, int *status)
{
	for (;;) {
		pid_t r = waitpid(pid, status, WNOHANG);
		uint64_t now;
		int wait_ms = 10;

		if (r == pid) {
			return 0;
		}
		if (r < 0 && errno != EINTR) {
			return -ECHILD;
		}
		now = ha_mono_ms();
		if (deadline && now >= deadline) {
			return -ETIMEDOUT;
		}
		if (pidfd >= 0) {
			uint64_t left = deadline ? deadline - now : (uint64_t)INT_MAX;
			struct pollfd p = { .fd = pidfd, .events = POLLIN };

			wait_ms = left > INT_MAX ? INT_MAX : (int)left;
			poll(&p, 1, wait_ms);
		} else {
			poll(NULL, 0, wait_ms);
		}
	}
}

static void close_fd(int *fd)
{
	if (*fd >= 0) {
		close(*fd);
		*fd = -1;
	}
}

int ha_spawn_run(const struct ha_spawn *s, struct ha_spawn_result *res)
{
	struct ha_spawn_result dummy;
	struct capture cap[2];
	int in[2] = { -1, -1 }, out[2] = { -1, -1 }, err[2] = { -1, -1 };
	bool capture_out = s->out != NULL && s->out_len > 0;
	bool capture_err = s->err == HA_SPAWN_ERR_CAPTURE && s->err_out != NULL &&
			   s->err_out_len > 0;
	uint64_t deadline = s->timeout_ms ? ha_mono_ms() + s->timeout_ms : 0;
	int status = 0, rc = 0, pidfd;
	pid_t pid;

	if (res == NULL) {
		res = &dummy;
	}
	memset(res, 0, sizeof(*res));
	res->exit_code = -1;
	if (capture_out) {
		s->out[0] = '\0';
	}
	if (capture_err) {
		s->err_out[0] = '\0';
	}
	if (s->fn == NULL && (s->argv == NULL || s->argv[0] == NULL)) {
		return -EINVAL;
	}
	if (s->input != NULL && s->input_len > HA_SPAWN_INPUT_MAX) {
		return -E2BIG;
	}
	/* Output not asked for goes to /dev/null (see child_run). */
	if ((s->input != NULL && pipe2(in, O_CLOEXEC) < 0) ||
	    (capture_out && pipe2(out, O_CLOEXEC) < 0) ||
	    (capture_err && pipe2(err, O_CLOEXEC) < 0)) {
		rc = -errno;
		goto fail;
	}
	if (s->input != NULL && s->input_len > 0) {
		/*
		 * The whole input goes into the pipe before the child exists:
		 * while we write we hold the read end ourselves, so a child
		 * that exits unread can never make this write raise SIGPIPE,
		 * and the pipe holds it all (non-blocking: a pipe that cannot
		 * is -E2BIG, not a hang).
		 */
		ssize_t n;

		if (fcntl(in[1], F_SETFL, O_NONBLOCK) < 0) {
			rc = -errno;
			goto fail;
		}
		do {
			n = write(in[1], s->input, s->input_len);
		} while (n < 0 && errno == EINTR);
		if (n != (ssize_t)s->input_len) {
			rc = n < 0 && errno != EAGAIN ? -errno : -E2BIG;
			goto fail;
		}
	}
	close_fd(&in[1]);
	pid = fork();
	if (pid < 0) {
		rc = -errno;
		goto fail;
	}
	if (pid == 0) {
		child_run(s, in[0], out[1], err[1]);
	}
	setpgid(pid, pid); /* either this or the child's wins; both are fine */
	res->pid = pid;
	close_fd(&in[0]);
	close_fd(&out[1]);
	close_fd(&err[1]);
	pidfd = pidfd_open_(pid);

	cap[0] = (struct capture){ .fd = out[0], .buf = s->out, .len = s->out_len,
				   .tail = s->keep_tail };
	cap[1] = (struct capture){ .fd = err[0], .buf = s->err_out, .len = s->err_out_len,
				   .tail = s->keep_tail };
	while (cap[0].fd >= 0 || cap[1].fd >= 0) {
		struct pollfd p[2] = {
			{ .fd = cap[0].fd, .events = POLLIN },
			{ .fd = cap[1].fd, .events = POLLIN },
		};
		int wait_ms = -1;

		if (deadline) {
			int64_t left = (int64_t)deadline - (int64_t)ha_mono_ms();

			if (left <= 0) {
				res->timed_out = true;
				break;
			}
			wait_ms = left > INT_MAX ? INT_MAX : (int)left;
		}
		if (poll(p, 2, wait_ms) <= 0) {
			continue; /* EINTR or the deadline: checked above */
		}
		for (int i = 0; i < 2; i++) {
			if (p[i].revents && !capture_read(&cap[i])) {
				close_fd(&cap[i].fd);
			}
		}
	}
	close_fd(&cap[0].fd);
	close_fd(&cap[1].fd);
	res->out_got = cap[0].got;
	res->out_truncated = cap[0].truncated;
	res->err_out_got = cap[1].got;
	res->err_out_truncated = cap[1].truncated;
	/* Output closed: the child ends now or is killed at the deadline. */
	if (!res->timed_out) {
		rc = reap(pid, pidfd, deadline, &status);
		if (rc == -ETIMEDOUT) {
			res->timed_out = true;
		}
	}
	if (res->timed_out) {
		kill(-pid, SIGKILL);
		kill(pid, SIGKILL);
		if (reap(pid, pidfd, ha_mono_ms() + HA_SPAWN_KILL_GRACE_MS, &status) == 0 &&
		    WIFSIGNALED(status)) {
			res->signal = WTERMSIG(status);
		}
		rc = -ETIMEDOUT;
	} else if (rc == 0) {
		if (WIFEXITED(status)) {
			res->exit_code = WEXITSTATUS(status);
		} else if (WIFSIGNALED(status)) {
			res->signal = WTERMSIG(status);
		}
	}
	if (pidfd >= 0) {
		close(pidfd);
	}
	return rc;

fail:
	close_fd(&in[0]);
	close_fd(&in[1]);
	close_fd(&out[0]);
	close_fd(&out[1]);
	close_fd(&err[0]);
	close_fd(&err[1]);
	return rc;
}

int ha_spawn_status(const struct ha_spawn_result *r)
{
	if (r->exit_code >= 0) {
		return r->exit_code;
	}
	return r->signal > 0 ? 128 + r->signal : 255;
}
