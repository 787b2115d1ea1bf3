/*
 * test_storage.c - the storage backends (agent/storage.h).
 *
 * "dir" for real on a temporary directory: writable, missing, not a
 * directory, read-only (a read-only bind mount in a private mount
 * namespace as root; mode 0555 otherwise), no probe files left behind.
 * "drbd" against a fake drbdadm (a script that logs its arguments and
 * answers like drbdadm 9 and 8.4 do): exact argv, refusals mapped to
 * -errno with drbdadm's words in the message, timeouts killing the whole
 * process group, resource names that must never reach the command line;
 * plus the role parser and the error mapping on recorded outputs.
 *
 * With arguments it is a tiny command line over the API for
 * tests/integration/storage_drbd.sh on a real DRBD resource:
 *   test_storage BACKEND probe|acquire|release|state RESOURCE [TIMEOUT_MS]
 * prints the role for state, the error on stderr; exits 0 or 1.
 */
#include <dirent.h>
#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"
#include "storage.h"
#include "util.h"

static char tmp[] = "/tmp/ha-test-storage-XXXXXX";

#define CHECK_STR_HAS(s, sub)                                                  \
	do {                                                                   \
		ha_test_checks++;                                              \
		if (strstr((s), (sub)) == NULL) {                              \
			ha_test_failures++;                                    \
			fprintf(stderr, "%s:%d: '%s' lacks '%s'\n", __FILE__,  \
				__LINE__, (s), (sub));                         \
		}                                                              \
	} while (0)

static int count_entries(const char *path)
{
	DIR *d = opendir(path);
	struct dirent *e;
	int n = 0;

	if (d == NULL) {
		return -1;
	}
	while ((e = readdir(d)) != NULL) {
		if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) {
			n++;
		}
	}
	closedir(d);
	return n;
}

static void test_find(void)
{
	CHECK(agent_storage_find("dir") == &agent_storage_dir_ops);
#ifdef HAVE_DRBD
	CHECK(agent_storage_find("drbd") == &agent_storage_drbd_ops);
#else
	CHECK(agent_storage_find("drbd") == NULL);
#endif
	CHECK(agent_storage_find("nfs") == NULL);
	CHECK(agent_storage_find("") == NULL);
	CHECK(agent_storage_find(NULL) == NULL);
}

/* Mounts @src read-only on @dst in a private mount namespace; 0 or -errno. */
static int ro_bind(const char *src, const char *dst)
{
	if (unshare(CLONE_NEWNS) < 0) {
		return -errno;
	}
	if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0 ||
	    mount(src, dst, NULL, MS_BIND, NULL) < 0) {
		return -errno;
	}
	if (mount(NULL, dst, NULL, MS_BIND | MS_REMOUNT | MS_RDONLY, NULL) < 0) {
		int e = -errno;

		umount2(dst, MNT_DETACH);
		return e;
	}
	return 0;
}

static void test_dir(void)
{
	const struct agent_storage_ops *ops = &agent_storage_dir_ops;
	char path[512], file[512], ro[512], src[512];
	char err[256] = "", role[AGENT_STORAGE_ROLE_LEN] = "";
	int rc;

	CHECK_EQ_INT(ops->probe(err, sizeof(err)), 0);

	/* writable: acquire, release, state; nothing left behind */
	snprintf(path, sizeof(path), "%s/shared", tmp);
	CHECK_EQ_INT(mkdir(path, 0755), 0);
	CHECK_EQ_INT(ops->acquire(path, 5000, err, sizeof(err)), 0);
	CHECK_EQ_INT(ops->release(path, 5000, err, sizeof(err)), 0);
	CHECK_EQ_INT(ops->acquire(path, 0, NULL, 0), 0); /* default timeout, no err */
	CHECK_EQ_INT(ops->state(path, role, sizeof(role)), 0);
	CHECK(strcmp(role, AGENT_STORAGE_ROLE_PRIMARY) == 0);
	CHECK_EQ_INT(count_entries(path), 0);
	CHECK_EQ_INT(ops->state(path, role, 3), -ENOBUFS);

	/* not absolute, missing, not a directory */
	CHECK_EQ_INT(ops->acquire("relative/dir", 1000, err, sizeof(err)), -EINVAL);
	CHECK_STR_HAS(err, "absolute");
	CHECK_EQ_INT(ops->acquire(NULL, 1000, err, sizeof(err)), -EINVAL);
	snprintf(file, sizeof(file), "%s/missing", tmp);
	CHECK_EQ_INT(ops->acquire(file, 1000, err, sizeof(err)), -ENOENT);
	CHECK_STR_HAS(err, file);
	CHECK_STR_HAS(err, "No such file or directory");
	CHECK_EQ_INT(ops->state(file, role, sizeof(role)), -ENOENT);
	snprintf(file, sizeof(file), "%s/plain-file", tmp);
	CHECK_EQ_INT(ha_file_write_atomic(file, "x", 1), 0);
	CHECK_EQ_INT(ops->acquire(file, 1000, err, sizeof(err)), -ENOTDIR);
	CHECK_STR_HAS(err, "open directory");
	CHECK_EQ_INT(ops->release(file, 1000, err, sizeof(err)), -ENOTDIR);

	/* read-only: refused with a clear error, state says secondary */
	snprintf(src, sizeof(src), "%s/ro-src", tmp);
	snprintf(ro, sizeof(ro), "%s/ro", tmp);
	CHECK_EQ_INT(mkdir(src, 0755), 0);
	CHECK_EQ_INT(mkdir(ro, 0755), 0);
	rc = ro_bind(src, ro);
	if (rc == 0) {
		CHECK_EQ_INT(ops->acquire(ro, 5000, err, sizeof(err)), -EROFS);
		CHECK_STR_HAS(err, "not writable");
		CHECK_STR_HAS(err, "Read-only file system");
		CHECK_STR_HAS(err, ro);
		CHECK_EQ_INT(ops->release(ro, 5000, err, sizeof(err)), -EROFS);
		CHECK_EQ_INT(ops->state(ro, role, sizeof(role)), 0);
		CHECK(strcmp(role, AGENT_STORAGE_ROLE_SECONDARY) == 0);
		CHECK_EQ_INT(umount2(ro, MNT_DETACH), 0);
	} else if (geteuid() != 0) {
		CHECK_EQ_INT(chmod(ro, 0555), 0);
		CHECK_EQ_INT(ops->acquire(ro, 5000, err, sizeof(err)), -EACCES);
		CHECK_STR_HAS(err, "not writable");
		CHECK_STR_HAS(err, "Permission denied");
		CHECK_EQ_INT(ops->state(ro, role, sizeof(role)), 0);
		CHECK(strcmp(role, AGENT_STORAGE_ROLE_SECONDARY) == 0);
		chmod(ro, 0755);
	} else {
		/* root without CAP_SYS_ADMIN: mode bits do not stop root */
		printf("# read-only check skipped: no bind mount (%s)\n", strerror(-rc));
	}
}

#ifdef HAVE_DRBD
/* A drbdadm that logs "$*" to calls and answers per verb:resource. */
static const char fake_drbdadm[] =
	"#!/bin/sh\n"
	"d=$(dirname \"$0\")\n"
	"echo \"$*\" >> \"$d/calls\"\n"
	"case \"$1:$2:$#\" in\n"
	"primary:r0:2|secondary:r0:2) exit 0 ;;\n"
	"role:r0:2) echo Secondary ;;\n"
	"role:prim:2) echo 'WARN: a warning first'; echo Primary ;;\n"
	"role:r84:2) echo Primary/Secondary ;;\n"
	"role:gone:2) echo 'gone: No such resource' >&2; exit 10 ;;\n"
	"role:unc:2) echo Unconfigured; exit 10 ;;\n"
	"role:weird:2) echo banana ;;\n"
	"primary:busy:2) echo 'busy: State change failed: (-1) Multiple primaries not allowed by config' >&2\n"
	"  echo \"Command 'drbdsetup primary busy' terminated with exit code 11\" >&2\n"
	"  echo \"Command 'drbdsetup primary busy' terminated with exit code 11\" >&2; exit 11 ;;\n"
	"primary:stale:2) echo 'stale: State change failed: (-2) Need access to UpToDate data' >&2; exit 11 ;;\n"
	"secondary:held:2) echo 'held: State change failed: (-12) Device is held open by someone' >&2; exit 11 ;;\n"
	"primary:nope:2) echo \"'nope' not defined in your config (for this host).\" >&2; exit 10 ;;\n"
	"primary:slow:2) sleep 30.777 & echo $! > \"$d/slow.pid\"; wait ;;\n"
	"primary:loud:2) i=0; while [ $i -lt 3000 ]; do echo 'xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx'; i=$((i+1)); done; exit 3 ;;\n"
	"*) echo \"unexpected $*\" >&2; exit 99 ;;\n"
	"esac\n";

/* Whether a live (not zombie) process runs "sleep ARG". */
static bool child_left(const char *arg)
{
	DIR *d = opendir("/proc");
	struct dirent *e;
	bool found = false;

	while (d && (e = readdir(d)) != NULL && !found) {
		char path[300], cmd[256];
		FILE *f;
		size_t n;

		if (e->d_name[0] < '1' || e->d_name[0] > '9') {
			continue;
		}
		snprintf(path, sizeof(path), "/proc/%s/cmdline", e->d_name);
		f = fopen(path, "r");
		if (f == NULL) {
			continue;
		}
		n = fread(cmd, 1, sizeof(cmd) - 1, f);
		fclose(f);
		cmd[n] = 0;
		if (strcmp(cmd, "sleep") == 0 && strlen(cmd) + 1 < n &&
		    strcmp(cmd + strlen(cmd) + 1, arg) == 0) {
			found = true;
		}
	}
	if (d) {
		closedir(d);
	}
	return found;
}

static bool gone_or_zombie(pid_t pid)
{
	char path[64], buf[256];
	FILE *f;
	char *p;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	f = fopen(path, "r");
	if (f == NULL) {
		return true;
	}
	p = fgets(buf, sizeof(buf), f);
	fclose(f);
	p = p ? strrchr(buf, ')') : NULL;
	return p == NULL || p[2] == 'Z' || p[2] == 'X';
}

static void test_drbd_fake(void)
{
	const struct agent_storage_ops *ops = &agent_storage_drbd_ops;
	static const char *const bad[] = { "", "all", "-f", "--force", "a b", "a;b", "r0/0",
					   "$(x)", "ä", "a\nb" };
	char tool[512], calls[512], pidfile[512], err[256] = "", role[AGENT_STORAGE_ROLE_LEN];
	char longname[80];
	uint8_t *buf = NULL;
	size_t len = 0;
	uint64_t t0;
	pid_t slow = 0;

	snprintf(tool, sizeof(tool), "%s/drbdadm", tmp);
	snprintf(calls, sizeof(calls), "%s/calls", tmp);
	snprintf(pidfile, sizeof(pidfile), "%s/slow.pid", tmp);
	CHECK_EQ_INT(ha_file_write_atomic(tool, fake_drbdadm, strlen(fake_drbdadm)), 0);
	CHECK_EQ_INT(chmod(tool, 0755), 0);
	CHECK_EQ_INT(agent_storage_drbd_set_tool(tool), 0);

	/* the happy path: exact argv, idempotent */
	CHECK_EQ_INT(ops->acquire("r0", 5000, err, sizeof(err)), 0);
	CHECK_EQ_INT(ops->release("r0", 5000, err, sizeof(err)), 0);
	CHECK_EQ_INT(ops->release("r0", 0, NULL, 0), 0);
	CHECK_EQ_INT(ops->state("r0", role, sizeof(role)), 0);
	CHECK(strcmp(role, AGENT_STORAGE_ROLE_SECONDARY) == 0);
	CHECK_EQ_INT(ops->state("prim", role, sizeof(role)), 0);
	CHECK(strcmp(role, AGENT_STORAGE_ROLE_PRIMARY) == 0);
	CHECK_EQ_INT(ops->state("r84", role, sizeof(role)), 0);
	CHECK(strcmp(role, AGENT_STORAGE_ROLE_PRIMARY) == 0);
	CHECK_EQ_INT(ops->state("gone", role, sizeof(role)), 0);
	CHECK(strcmp(role, AGENT_STORAGE_ROLE_DOWN) == 0);
	CHECK_EQ_INT(ops->state("unc", role, sizeof(role)), 0);
	CHECK(strcmp(role, AGENT_STORAGE_ROLE_DOWN) == 0);
	CHECK_EQ_INT(ops->state("weird", role, sizeof(role)), -EPROTO);
	CHECK_EQ_INT(ha_file_read(calls, 4096, &buf, &len), 0);
	CHECK(len > 0 && strncmp((char *)buf,
				 "primary r0\nsecondary r0\nsecondary r0\nrole r0\nrole prim\n"
				 "role r84\nrole gone\nrole unc\nrole weird\n",
				 len) == 0);
	free(buf);
	buf = NULL;

	/* refusals: -errno and drbdadm's words, once */
	CHECK_EQ_INT(ops->acquire("busy", 5000, err, sizeof(err)), -EBUSY);
	CHECK_STR_HAS(err, "drbdadm primary busy: exit 11: ");
	CHECK_STR_HAS(err, "Multiple primaries not allowed by config; Command 'drbdsetup primary");
	CHECK(strstr(strstr(err, "Command") + 1, "Command") == NULL);
	CHECK_EQ_INT(ops->acquire("stale", 5000, err, sizeof(err)), -ESTALE);
	CHECK_STR_HAS(err, "Need access to UpToDate data");
	CHECK_EQ_INT(ops->release("held", 5000, err, sizeof(err)), -EBUSY);
	CHECK_STR_HAS(err, "held open");
	CHECK_EQ_INT(ops->acquire("nope", 5000, err, sizeof(err)), -ENOENT);
	CHECK_STR_HAS(err, "not defined in your config");

	/* much output: bounded, still an error */
	CHECK_EQ_INT(ops->acquire("loud", 5000, err, sizeof(err)), -EIO);
	CHECK_STR_HAS(err, "exit 3");
	CHECK(strlen(err) < sizeof(err));

	/* a hung drbdadm: killed with its children at the timeout. What is
	 * compared does not depend on the machine's load: the call returns
	 * -ETIMEDOUT well before the child's 30 s, and afterwards no process
	 * of it is left, whether or not the script got as far as starting its
	 * child (on a busy machine it may be killed before). */
	t0 = ha_mono_ms();
	CHECK_EQ_INT(ops->acquire("slow", 1000, err, sizeof(err)), -ETIMEDOUT);
	CHECK(ha_mono_ms() - t0 < 25000);
	CHECK_STR_HAS(err, "no answer within 1000 ms");
	if (ha_file_read(pidfile, 64, &buf, &len) == 0) {
		slow = (pid_t)atoi((char *)buf);
		free(buf);
		buf = NULL;
	}
	for (int i = 0; i < 500 && slow > 0 && !gone_or_zombie(slow); i++) {
		usleep(10000);
	}
	CHECK(slow <= 0 || gone_or_zombie(slow));
	for (int i = 0; i < 500 && child_left("30.777"); i++) {
		usleep(10000); /* killed already: only its exit may lag */
	}
	CHECK(!child_left("30.777"));

	/* names that must never reach the command line */
	CHECK_EQ_INT(unlink(calls), 0);
	for (size_t i = 0; i < HA_ARRAY_SIZE(bad); i++) {
		CHECK_EQ_INT(ops->acquire(bad[i], 1000, err, sizeof(err)), -EINVAL);
		CHECK_STR_HAS(err, "invalid resource name");
		CHECK_EQ_INT(ops->release(bad[i], 1000, err, sizeof(err)), -EINVAL);
		CHECK_EQ_INT(ops->state(bad[i], role, sizeof(role)), -EINVAL);
	}
	CHECK_EQ_INT(ops->acquire(NULL, 1000, err, sizeof(err)), -EINVAL);
	memset(longname, 'a', sizeof(longname) - 1);
	longname[sizeof(longname) - 1] = 0;
	CHECK_EQ_INT(ops->acquire(longname, 1000, err, sizeof(err)), -EINVAL);
	CHECK(access(calls, F_OK) < 0);

	/* no drbdadm */
	snprintf(tool, sizeof(tool), "%s/no-such-drbdadm", tmp);
	CHECK_EQ_INT(agent_storage_drbd_set_tool(tool), 0);
	CHECK_EQ_INT(ops->acquire("r0", 1000, err, sizeof(err)), -ENOENT);
	CHECK_STR_HAS(err, "drbdadm not found");
	CHECK_STR_HAS(err, "drbd-utils");
	CHECK_EQ_INT(ops->state("r0", role, sizeof(role)), -ENOENT);
	CHECK_EQ_INT(agent_storage_drbd_set_tool(NULL), 0);
}

static void expect_role(const char *out, int want_rc, const char *want)
{
	char role[AGENT_STORAGE_ROLE_LEN] = "";
	int rc = agent_storage_drbd_parse_role(out, role, sizeof(role));

	CHECK_EQ_INT(rc, want_rc);
	if (rc == 0 && want) {
		ha_test_checks++;
		if (strcmp(role, want)) {
			ha_test_failures++;
			fprintf(stderr, "role of '%s': %s, expected %s\n", out, role, want);
		}
	}
}

static void test_drbd_parse(void)
{
	char small[4];

	/* drbdadm role, 9 and 8.4 */
	expect_role("Secondary\n", 0, AGENT_STORAGE_ROLE_SECONDARY);
	expect_role("Primary\n", 0, AGENT_STORAGE_ROLE_PRIMARY);
	expect_role("Primary/Secondary\n", 0, AGENT_STORAGE_ROLE_PRIMARY);
	expect_role("Secondary/Unknown\n", 0, AGENT_STORAGE_ROLE_SECONDARY);
	expect_role("Unconfigured\n", 0, AGENT_STORAGE_ROLE_DOWN);
	expect_role("  Primary  \n", 0, AGENT_STORAGE_ROLE_PRIMARY);
	expect_role("WARN: x\nSecondary\n", 0, AGENT_STORAGE_ROLE_SECONDARY);
	/* drbdadm status (9): the resource's line, not the peer's */
	expect_role("r0 role:Secondary\n  disk:UpToDate\n  nodeb role:Primary\n"
		    "    peer-disk:UpToDate\n", 0, AGENT_STORAGE_ROLE_SECONDARY);
	expect_role("r0 role:Primary\n  disk:UpToDate\n  nodeb connection:Connecting\n", 0,
		    AGENT_STORAGE_ROLE_PRIMARY);
	expect_role("r0 role:Banana\n", -EPROTO, NULL);
	/* nothing usable */
	expect_role("", -EPROTO, NULL);
	expect_role(NULL, -EPROTO, NULL);
	expect_role("PrimaryX\n", -EPROTO, NULL);
	expect_role("r0: No such resource\n", -EPROTO, NULL);
	CHECK_EQ_INT(agent_storage_drbd_parse_role("Secondary", small, sizeof(small)), -ENOBUFS);

	/* errors */
	CHECK_EQ_INT(agent_storage_drbd_errno(0, "anything"), 0);
	CHECK_EQ_INT(agent_storage_drbd_errno(11, "r0: State change failed: (-1) Multiple "
					      "primaries not allowed by config"), -EBUSY);
	CHECK_EQ_INT(agent_storage_drbd_errno(11, "0: State change failed: (-7) Refusing to be "
					      "Primary while peer is not outdated"), -EBUSY);
	CHECK_EQ_INT(agent_storage_drbd_errno(11, "r0: State change failed: (-10) State change "
					      "was refused by peer node"), -EBUSY);
	CHECK_EQ_INT(agent_storage_drbd_errno(11, "r0: State change failed: (-12) Device is held "
					      "open by someone"), -EBUSY);
	CHECK_EQ_INT(agent_storage_drbd_errno(11, "r0: State change failed: (-2) Need access to "
					      "UpToDate data"), -ESTALE);
	CHECK_EQ_INT(agent_storage_drbd_errno(11, "0: State change failed: (-2) Refusing to be "
					      "Primary without at least one UpToDate disk"), -ESTALE);
	CHECK_EQ_INT(agent_storage_drbd_errno(11, "r0: State change failed: (-25) No quorum"),
		     -ENOTCONN);
	CHECK_EQ_INT(agent_storage_drbd_errno(11, "r0: State change failed: (-23) Timeout in "
					      "operation"), -ETIMEDOUT);
	CHECK_EQ_INT(agent_storage_drbd_errno(10, "r0: Failure: (158) Unknown resource"), -ENODEV);
	CHECK_EQ_INT(agent_storage_drbd_errno(10, "r0: No such resource"), -ENODEV);
	CHECK_EQ_INT(agent_storage_drbd_errno(1, "'r9' not defined in your config (for this "
					      "host)."), -ENOENT);
	CHECK_EQ_INT(agent_storage_drbd_errno(1, "no resources defined!"), -ENOENT);
	CHECK_EQ_INT(agent_storage_drbd_errno(127, ""), -ENOENT);
	CHECK_EQ_INT(agent_storage_drbd_errno(20, "something else"), -EIO);
	CHECK_EQ_INT(agent_storage_drbd_errno(20, NULL), -EIO);
}

/* The real probe: it must agree with the host. */
static void test_drbd_probe(void)
{
	char err[256] = "";
	bool module = access("/sys/module/drbd", F_OK) == 0 || access("/proc/drbd", F_OK) == 0;
	int rc = agent_storage_drbd_ops.probe(err, sizeof(err));

	if (!module) {
		CHECK_EQ_INT(rc, -ENODEV);
		CHECK_STR_HAS(err, "modprobe drbd");
	} else {
		CHECK(rc == 0 || rc == -ENOENT);
		if (rc < 0) {
			CHECK_STR_HAS(err, "drbd-utils");
		}
	}
}

#endif /* HAVE_DRBD */

static int count_fds(void)
{
	return count_entries("/proc/self/fd");
}

/* test_storage BACKEND OP RESOURCE [TIMEOUT_MS] */
static int cli(int argc, char **argv)
{
	const struct agent_storage_ops *ops;
	char err[512] = "", role[AGENT_STORAGE_ROLE_LEN] = "";
	uint64_t timeout = 0;
	int rc;

	if (argc < 3 || (ops = agent_storage_find(argv[1])) == NULL ||
	    (argc > 4 && ha_parse_u64(argv[4], 0, UINT32_MAX, &timeout) < 0)) {
		fprintf(stderr, "usage: test_storage dir|drbd probe|acquire|release|state "
			"RESOURCE [TIMEOUT_MS]\n");
		return 2;
	}
	if (strcmp(argv[2], "probe") == 0) {
		rc = ops->probe(err, sizeof(err));
	} else if (argc < 4) {
		fprintf(stderr, "test_storage: %s needs a resource\n", argv[2]);
		return 2;
	} else if (strcmp(argv[2], "acquire") == 0) {
		rc = ops->acquire(argv[3], (uint32_t)timeout, err, sizeof(err));
	} else if (strcmp(argv[2], "release") == 0) {
		rc = ops->release(argv[3], (uint32_t)timeout, err, sizeof(err));
	} else if (strcmp(argv[2], "state") == 0) {
		rc = ops->state(argv[3], role, sizeof(role));
		if (rc == 0) {
			printf("%s\n", role);
		} else {
			snprintf(err, sizeof(err), "state: %s", strerror(-rc));
		}
	} else {
		fprintf(stderr, "test_storage: unknown operation %s\n", argv[2]);
		return 2;
	}
	if (rc < 0) {
		fprintf(stderr, "test_storage %s %s: %s (%s)\n", argv[1], argv[2], err,
			strerror(-rc));
		return 1;
	}
	return 0;
}

int main(int argc, char **argv)
{
	char cmd[600];
	int fds;

	if (argc > 1) {
		return cli(argc, argv);
	}
	if (mkdtemp(tmp) == NULL) {
		perror("mkdtemp");
		return 1;
	}
	fds = count_fds();
	test_find();
#ifdef HAVE_DRBD
	test_drbd_parse();
	test_drbd_probe();
	test_drbd_fake();
#endif
	test_dir(); /* last: it may leave this process in its own mount namespace */

	/* no fd and no child left behind */
	CHECK_EQ_INT(count_fds(), fds);
	CHECK(waitpid(-1, NULL, WNOHANG) < 0 && errno == ECHILD);

	snprintf(cmd, sizeof(cmd), "rm -rf %s", tmp);
	CHECK_EQ_INT(system(cmd), 0);
	return ha_test_done("test_storage");
}
