/*
 * fence_agent.c - runs ClusterLabs fence agents: options on stdin, one
 * key=value per line; exit 0 = done, for status 0 = on, 2 = off.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "fencing.h"
#include "util.h"

static void last_line(const char *buf, char *out, size_t len)
{
	const char *end = buf + strlen(buf), *start;

	while (end > buf && (end[-1] == '\n' || end[-1] == '\r')) {
		end--;
	}
	start = end;
	while (start > buf && start[-1] != '\n') {
		start--;
	}
	snprintf(out, len, "%.*s", (int)(end - start), start);
}

int fence_agent_run(const struct fence_device *dev, const char *action, const char *plug,
		    uint32_t timeout_s, struct fence_result *res)
{
	int in[2], out[2];
	char input[8192], buf[4096];
	size_t n = 0, got = 0;
	pid_t pid;
	int status = 0;
	uint64_t deadline;

	memset(res, 0, sizeof(*res));
	res->exit_code = -1;
	n += (size_t)snprintf(input + n, sizeof(input) - n, "action=%s\n", action);
	if (plug && plug[0]) {
		n += (size_t)snprintf(input + n, sizeof(input) - n, "plug=%s\n", plug);
	}
	for (size_t i = 0; i < dev->n_opts && n < sizeof(input); i++) {
		n += (size_t)snprintf(input + n, sizeof(input) - n, "%s=%s\n", dev->opt_key[i],
				      dev->opt_val[i]);
	}
	if (n >= sizeof(input)) {
		return -E2BIG;
	}
	if (pipe2(in, O_CLOEXEC) < 0) {
		return -errno;
	}
	if (pipe2(out, O_CLOEXEC) < 0) {
		int e = -errno;

		close(in[0]);
		close(in[1]);
		return e;
	}
	/*
	 * The whole input goes into the pipe before the agent exists (it is
	 * at most 8 KiB, the pipe holds 64 KiB): while we write, we hold the
	 * read end ourselves, so an agent that exits without reading its
	 * stdin can never make this write raise SIGPIPE in the caller.
	 */
	if (write(in[1], input, n) != (ssize_t)n) {
		int e = errno ? -errno : -EIO;

		close(in[0]);
		close(in[1]);
		close(out[0]);
		close(out[1]);
		return e;
	}
	close(in[1]);
	pid = fork();
	if (pid < 0) {
		int e = -errno;

		close(in[0]);
		close(out[0]);
		close(out[1]);
		return e;
	}
	if (pid == 0) {
		sigset_t none;

		/* the daemon's ignored SIGPIPE and blocked signals are not the
		 * agent's */
		signal(SIGPIPE, SIG_DFL);
		sigemptyset(&none);
		sigprocmask(SIG_SETMASK, &none, NULL);
		dup2(in[0], 0);
		dup2(out[1], 1);
		dup2(out[1], 2);
		setsid();
		execlp(dev->agent, dev->agent, (char *)NULL);
		_exit(127);
	}
	close(in[0]);
	close(out[1]);
	deadline = ha_mono_ms() + timeout_s * 1000ull;
	for (;;) {
		struct pollfd p = { .fd = out[0], .events = POLLIN };
		int64_t left = (int64_t)deadline - (int64_t)ha_mono_ms();
		ssize_t r;

		if (left <= 0) {
			kill(-pid, SIGKILL);
			kill(pid, SIGKILL);
			res->timed_out = true;
			break;
		}
		if (poll(&p, 1, (int)left) <= 0) {
			continue;
		}
		r = read(out[0], buf + got, sizeof(buf) - 1 - got);
		if (r <= 0) {
			break;
		}
		got += (size_t)r;
		if (got >= sizeof(buf) - 1) {
			/* keep the tail */
			memmove(buf, buf + got / 2, got - got / 2);
			got -= got / 2;
		}
	}
	buf[got] = 0;
	close(out[0]);
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
	}
	last_line(buf, res->output, sizeof(res->output));
	if (res->timed_out) {
		return 0;
	}
	res->exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
	return 0;
}

int fence_node_run(const struct fence_config *cfg, const struct fence_node *node,
		   char *log, size_t loglen)
{
	size_t used = 0;

	log[0] = 0;
#define LOG(...)                                                                   \
	do {                                                                       \
		if (used < loglen) {                                               \
			used += (size_t)snprintf(log + used, loglen - used, __VA_ARGS__); \
		}                                                                  \
	} while (0)
	if (node->n_levels == 0) {
		LOG("no fence device configured for %s", node->name);
		return -EIO;
	}
	for (size_t li = 0; li < node->n_levels; li++) {
		bool ok = true;

		for (size_t di = 0; di < node->n_level_devs[li] && ok; di++) {
			const struct fence_device *d = &cfg->devices[node->level_dev[li][di]];
			struct fence_result r;
			int rc = fence_agent_run(d, "off", node->plug, cfg->timeout_s, &r);

			if (rc < 0 || r.exit_code != 0) {
				LOG("%slevel %zu %s off: %s%s%s", used ? "; " : "", li + 1, d->name,
				    rc < 0 ? strerror(-rc) : r.timed_out ? "timed out" : "failed",
				    r.output[0] ? ": " : "", r.output);
				ok = false;
				break;
			}
			rc = fence_agent_run(d, "status", node->plug, cfg->timeout_s, &r);
			if (rc < 0 || r.exit_code != 2) {
				LOG("%slevel %zu %s: off not confirmed (status exit %d)%s%s",
				    used ? "; " : "", li + 1, d->name, r.exit_code,
				    r.output[0] ? ": " : "", r.output);
				ok = false;
				break;
			}
		}
		if (ok) {
			LOG("%s%s fenced by level %zu (off confirmed)", used ? "; " : "", node->name,
			    li + 1);
			return 0;
		}
	}
#undef LOG
	return -EIO;
}
