/*
 * driver_container_exec.c - the container driver's small helpers: error
 * text, small cgroup and /proc files, and the helper programs it runs
 * (iproute2's ip, cp -a and rm -rf), each bounded by a timeout.
 *
 * Why helper programs: the network setup is four iproute2 commands (veth
 * pair with the peer created in the container's namespace, bridge port,
 * address, route), which iproute2 does reliably on every kernel; copying a
 * writable layer must keep overlay whiteouts (0/0 device nodes), opaque
 * xattrs and hard links, which cp -a does; deep trees are removed by rm
 * without recursion limits. Each runs with a deadline and its first line of
 * output becomes the error text.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/close_range.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "driver_container.h"
#include "util.h"

int ctr_tool_find(const char *name, char *out, size_t outlen)
{
	static const char *const dirs[] = { "/usr/sbin", "/usr/bin", "/sbin", "/bin" };

	for (size_t i = 0; i < HA_ARRAY_SIZE(dirs); i++) {
		int n = snprintf(out, outlen, "%s/%s", dirs[i], name);

		if (n > 0 && (size_t)n < outlen && access(out, X_OK) == 0) {
			return 0;
		}
	}
	if (outlen > 0) {
		out[0] = '\0';
	}
	return -ENOENT;
}

/* Keeps the first non-empty line of @text in @msg. */
static void first_line(const char *text, char *msg, size_t msglen)
{
	size_t n;

	while (*text == '\n' || *text == ' ') {
		text++;
	}
	n = strcspn(text, "\n");
	if (n >= msglen) {
		n = msglen - 1;
	}
	memcpy(msg, text, n);
	msg[n] = '\0';
}

int ctr_tool_run(char *const argv[], int netns_fd, uint32_t timeout_ms,
		 char *msg, size_t msglen)
{
	char out[1024];
	size_t got = 0;
	uint64_t deadline = ha_mono_ms() + timeout_ms;
	int pfd[2], status, rc;
	pid_t pid;

	if (msg != NULL && msglen > 0) {
		msg[0] = '\0';
	}
	if (pipe2(pfd, O_CLOEXEC) < 0) {
		return -errno;
	}
	pid = fork();
	if (pid < 0) {
		int e = -errno;

		close(pfd[0]);
		close(pfd[1]);
		return e;
	}
	if (pid == 0) {
		/* Only async-signal-safe calls from here: the agent has threads. */
		sigset_t all;
		int devnull = open("/dev/null", O_RDONLY | O_CLOEXEC);

		sigemptyset(&all);
		sigprocmask(SIG_SETMASK, &all, NULL);
		if (netns_fd >= 0 && setns(netns_fd, CLONE_NEWNET) < 0) {
			_exit(126);
		}
		if (devnull < 0 || dup2(devnull, 0) < 0 || dup2(pfd[1], 1) < 0 ||
		    dup2(pfd[1], 2) < 0) {
			_exit(126);
		}
		/* The agent's sockets and files stay out of the tool. */
		close_range(3, ~0U, CLOSE_RANGE_CLOEXEC);
		execv(argv[0], argv);
		_exit(127);
	}
	close(pfd[1]);
	for (;;) {
		struct pollfd p = { .fd = pfd[0], .events = POLLIN };
		int64_t left = (int64_t)deadline - (int64_t)ha_mono_ms();
		ssize_t n;

		if (left <= 0) {
			kill(pid, SIGKILL);
			waitpid(pid, NULL, 0);
			close(pfd[0]);
			if (msg != NULL && msglen > 0) {
				snprintf(msg, msglen, "%s ran longer than %u ms", argv[0],
					 timeout_ms);
			}
			return -ETIMEDOUT;
		}
		rc = poll(&p, 1, (int)left);
		if (rc < 0 && errno != EINTR) {
			break;
		}
		if (rc <= 0) {
			continue;
		}
		n = read(pfd[0], out + got, sizeof(out) - 1 - got);
		if (n < 0 && errno == EINTR) {
			continue;
		}
		if (n <= 0) {
			break;
		}
		got += (size_t)n;
		if (got == sizeof(out) - 1) {
			/* Enough for a message: drain the rest. */
			char sink[512];

			while (read(pfd[0], sink, sizeof(sink)) > 0) {
			}
			break;
		}
	}
	close(pfd[0]);
	out[got] = '\0';
	while (waitpid(pid, &status, 0) < 0) {
		if (errno != EINTR) {
			return -errno;
		}
	}
	if (msg != NULL && msglen > 0) {
		first_line(out, msg, msglen);
	}
	if (WIFEXITED(status)) {
		return WEXITSTATUS(status);
	}
	return 128 + (WIFSIGNALED(status) ? WTERMSIG(status) : 0);
}

int ctr_tree_remove(const char *path, uint32_t timeout_ms, char *err)
{
	char rm[CTR_PATH], msg[160];
	struct stat st;
	int rc;

	if (lstat(path, &st) < 0) {
		return errno == ENOENT ? 0 : agent_err(err, -errno, "stat %s: %s", path,
							      strerror(errno));
	}
	if (path[0] != '/' || strcmp(path, "/") == 0) {
		return agent_err(err, -EINVAL, "refusing to remove '%s'", path);
	}
	if (ctr_tool_find("rm", rm, sizeof(rm)) < 0) {
		return agent_err(err, -ENOENT, "rm not found in the system directories");
	}
	{
		char *argv[] = { rm, "-rf", "--one-file-system", "--", (char *)path, NULL };

		rc = ctr_tool_run(argv, -1, timeout_ms, msg, sizeof(msg));
	}
	if (rc != 0) {
		return agent_err(err, rc < 0 ? rc : -EIO, "removing %s: %s", path,
				 msg[0] ? msg : "rm failed");
	}
	return 0;
}

int ctr_tree_copy(const char *src, const char *dst, uint32_t timeout_ms, char *err)
{
	char cp[CTR_PATH], msg[160];
	int rc;

	if (ctr_tool_find("cp", cp, sizeof(cp)) < 0) {
		return agent_err(err, -ENOENT, "cp not found in the system directories");
	}
	if (access(dst, F_OK) == 0) {
		return agent_err(err, -EEXIST, "copying %s: %s exists", src, dst);
	}
	{
		char *argv[] = { cp, "-a", "--", (char *)src, (char *)dst, NULL };

		rc = ctr_tool_run(argv, -1, timeout_ms, msg, sizeof(msg));
	}
	if (rc != 0) {
		return agent_err(err, rc < 0 ? rc : -EIO, "copying %s to %s: %s", src, dst,
				 msg[0] ? msg : "cp failed");
	}
	return 0;
}
