/*
 * cmd_exec.c - hactl exec and hactl enter: a command, or a shell, inside a
 * running container, like `vzctl exec` / `vzctl enter` and Proxmox's
 * `pct exec` / `pct enter`.
 *
 * They run on the host that runs the container (the cluster's status says
 * which; elsewhere they say where and exit 1): hactl joins the guest's
 * cgroups (its limits count the command too) and then executes util-linux's
 * nsenter into all of the init's namespaces, so stdin, stdout, stderr, the
 * terminal and the exit status are the command's own, with no daemon in
 * between. Why not through the agent (a stream relayed by the daemons from
 * any host): a command's terminal, signals and exit status would have to be
 * carried over two IPC hops for nothing that ssh to the host does not
 * already do, and a daemon restart would cut every command in flight; docs/cli.md.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "config.h"
#include "util.h"

/* The running container's init as its agent recorded it
 * (state_dir/guests/NAME/pid, "pid=N"): 0 with *pid, or EX_FAIL. */
static int init_pid(const char *state_dir, const char *name, pid_t *pid)
{
	char path[PATH_MAX], line[128];
	FILE *f;
	long v = 0;

	snprintf(path, sizeof(path), "%s/guests/%s/pid", state_dir, name);
	f = fopen(path, "r");
	if (f == NULL) {
		fprintf(stderr, "hactl: %s: %s (is %s running on this host?)\n", path,
			strerror(errno), name);
		return EX_FAIL;
	}
	while (fgets(line, sizeof(line), f)) {
		if (strncmp(line, "pid=", 4) == 0) {
			v = strtol(line + 4, NULL, 10);
		}
	}
	fclose(f);
	if (v <= 1 || kill((pid_t)v, 0) < 0) {
		fprintf(stderr, "hactl: %s: no live process recorded in %s\n", name, path);
		return EX_FAIL;
	}
	*pid = (pid_t)v;
	return EX_OK;
}

/* Writes @s into the cgroup file @path: 0 or -errno. */
static int cg_write(const char *path, const char *s)
{
	int fd = open(path, O_WRONLY | O_CLOEXEC), rc = 0;

	if (fd < 0) {
		return -errno;
	}
	if (write(fd, s, strlen(s)) < 0) {
		rc = -errno;
	}
	close(fd);
	return rc;
}

/* Moves this process into every cgroup of @pid (/proc/PID/cgroup: v1's
 * hierarchies by their controllers, v2's unified one). */
static int join_cgroups(pid_t pid, const char *name)
{
	char path[PATH_MAX], line[PATH_MAX], me[32];
	FILE *f;
	int n = 0;

	snprintf(path, sizeof(path), "/proc/%d/cgroup", (int)pid);
	f = fopen(path, "r");
	if (f == NULL) {
		fprintf(stderr, "hactl: %s: %s\n", path, strerror(errno));
		return EX_FAIL;
	}
	snprintf(me, sizeof(me), "%d", (int)getpid());
	while (fgets(line, sizeof(line), f)) {
		char *ctrl = strchr(line, ':'), *rel, dir[PATH_MAX];
		int rc;

		if (ctrl == NULL || (rel = strchr(++ctrl, ':')) == NULL) {
			continue;
		}
		*rel++ = '\0';
		rel[strcspn(rel, "\n")] = '\0';
		if (ctrl[0] == '\0') {
			snprintf(dir, sizeof(dir), "/sys/fs/cgroup%s/cgroup.procs", rel);
		} else {
			snprintf(dir, sizeof(dir), "/sys/fs/cgroup/%s%s/cgroup.procs",
				 strncmp(ctrl, "name=", 5) == 0 ? ctrl + 5 : ctrl, rel);
		}
		if (access(dir, F_OK) < 0) {
			continue; /* a hierarchy mounted elsewhere, or none */
		}
		rc = cg_write(dir, me);
		if (rc < 0) {
			fprintf(stderr, "hactl: joining %s's cgroup %s: %s\n", name, dir,
				strerror(-rc));
			fclose(f);
			return EX_FAIL;
		}
		n++;
	}
	fclose(f);
	if (n == 0) {
		fprintf(stderr, "hactl: %s: none of its cgroups found under /sys/fs/cgroup\n", name);
		return EX_FAIL;
	}
	return EX_OK;
}

/* Checks that @name is a container running on this host (the cluster's
 * view), finds its init and joins its cgroups. */
static int guest_here(struct cli *cli, const char *name, pid_t *pid)
{
	Hactl__StatusReply *s = NULL;
	const Hactl__GuestRecord *g;
	struct ha_config cfg;
	int ex = cli_status_guest(cli, name, &s, &g);

	if (ex != EX_OK) {
		return ex;
	}
	if (g->type == NULL || strcmp(g->type, "container") != 0) {
		fprintf(stderr, "hactl: %s is a %s: exec and enter are for containers (a domain "
			"is reached over its network)\n", name, g->type ? g->type : "guest");
		ex = EX_FAIL;
	} else {
		ex = cli_guest_here(s, g, name, "exec", " -- ...");
	}
	ha_env_msg_free(&s->base);
	if (ex == EX_OK) {
		ex = cli_load_cfg(&cfg);
	}
	if (ex == EX_OK) {
		ex = init_pid(cfg.state_dir, name, pid);
	}
	if (ex == EX_OK) {
		ex = join_cgroups(*pid, name);
	}
	return ex;
}

static int nsenter_exec(pid_t pid, char **cmd, int ncmd)
{
	char target[32];
	char **argv = calloc((size_t)ncmd + 6, sizeof(*argv));
	int i = 0;

	if (argv == NULL) {
		return EX_FAIL;
	}
	snprintf(target, sizeof(target), "%d", (int)pid);
	argv[i++] = "nsenter";
	argv[i++] = "--target";
	argv[i++] = target;
	argv[i++] = "--all";
	argv[i++] = "--";
	for (int k = 0; k < ncmd; k++) {
		argv[i++] = cmd[k];
	}
	argv[i] = NULL;
	fflush(NULL);
	execvp(argv[0], argv);
	fprintf(stderr, "hactl: running nsenter (util-linux): %s\n", strerror(errno));
	free(argv);
	return EX_FAIL;
}

int cli_cmd_exec(struct cli *cli, int argc, char **argv)
{
	pid_t pid = 0;
	int ex;

	if (argc < 2 || argv[1][0] == '-') {
		return cli_usage_error("usage: hactl exec NAME -- COMMAND [ARG...]%s", "");
	}
	if (argc < 4 || strcmp(argv[2], "--") != 0) {
		return cli_usage_error("exec: the command follows '--' (hactl exec %s -- COMMAND)",
				       argv[1]);
	}
	ex = guest_here(cli, argv[1], &pid);
	if (ex != EX_OK) {
		return ex;
	}
	return nsenter_exec(pid, argv + 3, argc - 3);
}

int cli_cmd_enter(struct cli *cli, int argc, char **argv)
{
	char *sh[] = { "/bin/sh", "-l" };
	pid_t pid = 0;
	int ex;

	if (argc != 2 || argv[1][0] == '-') {
		return cli_usage_error("usage: hactl enter NAME%s", "");
	}
	ex = guest_here(cli, argv[1], &pid);
	if (ex != EX_OK) {
		return ex;
	}
	if (isatty(STDIN_FILENO)) {
		fprintf(stderr, "entered %s (exit the shell to leave)\n", argv[1]);
	}
	return nsenter_exec(pid, sh, 2);
}
