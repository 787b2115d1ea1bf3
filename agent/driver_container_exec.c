/*
 * driver_container_exec.c - the helper programs the container driver runs
 * (iproute2's ip, cp -a and rm -rf), each through ha_spawn_run
 * (common/ha_spawn.h) with a timeout.
 *
 * Why helper programs: the network setup is four iproute2 commands (veth
 * pair with the peer created in the container's namespace, bridge port,
 * address, route), which iproute2 does reliably on every kernel; copying a
 * writable layer must keep overlay whiteouts (0/0 device nodes), opaque
 * xattrs and hard links, which cp -a does; deep trees are removed by rm
 * without recursion limits. Each runs with a deadline and its first line of
 * output becomes the error text.
 *
 * Also the two small file helpers every file of the driver uses: joining
 * a path within CTR_PATH and syncing a file or its file system.
 */
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "driver_container.h"
#include "ha_spawn.h"
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

/* In the child before exec: into the guest's network namespace. */
static int tool_setns(void *arg)
{
	return setns(*(const int *)arg, CLONE_NEWNET) < 0 ? -1 : 0;
}

int ctr_tool_run(char *const argv[], int netns_fd, uint32_t timeout_ms,
		 char *msg, size_t msglen)
{
	char out[1024];
	struct ha_spawn sp = {
		.argv = argv,
		.setup = netns_fd >= 0 ? tool_setns : NULL,
		.setup_arg = &netns_fd,
		.out = out,
		.out_len = sizeof(out),
		.err = HA_SPAWN_ERR_TO_OUT,
		.timeout_ms = timeout_ms ? timeout_ms : 1,
	};
	struct ha_spawn_result r;
	int rc;

	if (msg != NULL && msglen > 0) {
		msg[0] = '\0';
	}
	rc = ha_spawn_run(&sp, &r);
	if (rc == -ETIMEDOUT) {
		if (msg != NULL && msglen > 0) {
			snprintf(msg, msglen, "%s ran longer than %u ms", argv[0], timeout_ms);
		}
		return rc;
	}
	if (rc < 0) {
		return rc;
	}
	if (msg != NULL && msglen > 0) {
		first_line(out, msg, msglen);
	}
	return ha_spawn_status(&r);
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

int ctr_path_fmt(char *out, const char *a, const char *b, char *err)
{
	int n = snprintf(out, CTR_PATH, "%s/%s", a, b);

	if (n < 0 || n >= CTR_PATH) {
		return agent_err(err, -ENAMETOOLONG, "path %s/%s too long", a, b);
	}
	return 0;
}

int ctr_sync(const char *path, bool whole_fs, char *err)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	int rc = 0;

	if (fd < 0 || (whole_fs ? syncfs(fd) : fsync(fd)) < 0) {
		rc = agent_err(err, -errno, "syncing %s: %s", path, strerror(errno));
	}
	if (fd >= 0) {
		close(fd);
	}
	return rc;
}
