/*
 * storage_dir.c - the "dir" storage backend: a directory that every host
 * mounts at the same path (NFS, CephFS, the local cluster's shared
 * directory), and the backend registry.
 *
 * There is nothing to switch: who writes is decided by the cluster
 * (fencing and the owner's generation), not by the storage. acquire and
 * release are checks that fail early and with a clear message instead of
 * letting a guest start on storage that cannot take its writes: the
 * directory exists, a probe file can be created, written, fsynced and
 * removed, and the directory fsynced. release first flushes the whole file
 * system (syncfs), so that what a cleanly stopped guest wrote is on the
 * server before another host takes it over.
 *
 * A hard-mounted NFS export whose server is gone blocks every one of those
 * system calls. They therefore run in a forked child (ha_spawn_run's
 * function, common/ha_spawn.h) that reports the step and errno on its stdout;
 * the caller waits at most its timeout and then kills the child's process
 * group (NFS waits are killable).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <qb/qblog.h>

#include "ha_spawn.h"
#include "storage.h"
#include "util.h"

enum dir_step {
	DIR_STEP_OK = 0,
	DIR_STEP_OPEN_DIR,
	DIR_STEP_SYNCFS,
	DIR_STEP_CREATE,
	DIR_STEP_WRITE,
	DIR_STEP_FSYNC,
	DIR_STEP_CLOSE,
	DIR_STEP_UNLINK,
	DIR_STEP_FSYNC_DIR,
	DIR_STEP_MAX
};

static const char *dir_step_str(enum dir_step s)
{
	static const char *const names[DIR_STEP_MAX] = {
		[DIR_STEP_OK] = "ok",
		[DIR_STEP_OPEN_DIR] = "open directory",
		[DIR_STEP_SYNCFS] = "syncfs",
		[DIR_STEP_CREATE] = "create probe file",
		[DIR_STEP_WRITE] = "write probe file",
		[DIR_STEP_FSYNC] = "fsync probe file",
		[DIR_STEP_CLOSE] = "close probe file",
		[DIR_STEP_UNLINK] = "remove probe file",
		[DIR_STEP_FSYNC_DIR] = "fsync directory",
	};

	return (unsigned)s < DIR_STEP_MAX ? names[s] : "?";
}

/* What the child sends back: the step that failed (DIR_STEP_OK: none). */
struct dir_report {
	int32_t step;
	int32_t err; /* errno */
};

/*
 * The child: only system calls from here on (the agent forks from a
 * threaded process). Returns the report to send.
 */
static struct dir_report dir_child_check(const char *dir, const char *name, bool flush)
{
	static const char payload[] = "hactl storage probe\n";
	struct dir_report r = { DIR_STEP_OK, 0 };
	int dfd, fd;

	dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0) {
		return (struct dir_report){ DIR_STEP_OPEN_DIR, errno };
	}
	if (flush && syncfs(dfd) < 0) {
		r = (struct dir_report){ DIR_STEP_SYNCFS, errno };
		goto out;
	}
	fd = openat(dfd, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0) {
		r = (struct dir_report){ DIR_STEP_CREATE, errno };
		goto out;
	}
	if (write(fd, payload, sizeof(payload) - 1) != (ssize_t)sizeof(payload) - 1) {
		r = (struct dir_report){ DIR_STEP_WRITE, errno ? errno : ENOSPC };
	} else if (fsync(fd) < 0) {
		r = (struct dir_report){ DIR_STEP_FSYNC, errno };
	}
	/* NFS reports write-back errors at close. */
	if (close(fd) < 0 && r.step == DIR_STEP_OK && errno != EINTR) {
		r = (struct dir_report){ DIR_STEP_CLOSE, errno };
	}
	if (unlinkat(dfd, name, 0) < 0) {
		if (r.step == DIR_STEP_OK) {
			r = (struct dir_report){ DIR_STEP_UNLINK, errno };
		}
		goto out;
	}
	/* Some file systems cannot fsync a directory (EINVAL): nothing to do. */
	if (r.step == DIR_STEP_OK && fsync(dfd) < 0 && errno != EINVAL) {
		r = (struct dir_report){ DIR_STEP_FSYNC_DIR, errno };
	}
out:
	close(dfd);
	return r;
}

struct dir_child_arg {
	const char *dir;
	const char *name;
	bool flush;
};

/* ha_spawn_run's function in the child: the check, its report on stdout. */
static int dir_child(void *arg)
{
	const struct dir_child_arg *a = arg;
	struct dir_report cr = dir_child_check(a->dir, a->name, a->flush);

	return write(STDOUT_FILENO, &cr, sizeof(cr)) == (ssize_t)sizeof(cr) ? 0 : 1;
}

/* Fills @name (a probe file name unique across hosts and calls). */
static void probe_name(char *name, size_t len)
{
	static unsigned counter;
	char host[65] = "host";
	unsigned n = __atomic_fetch_add(&counter, 1, __ATOMIC_RELAXED);

	if (gethostname(host, sizeof(host) - 1) < 0) {
		strcpy(host, "host");
	}
	host[sizeof(host) - 1] = 0;
	for (char *p = host; *p; p++) {
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
		      (*p >= '0' && *p <= '9') || *p == '-' || *p == '.')) {
			*p = '_';
		}
	}
	snprintf(name, len, ".hactl-probe.%s.%d.%u", host, (int)getpid(), n);
}

static int dir_check(const char *dir, bool flush, uint32_t timeout_ms, char *err,
		     size_t errlen)
{
	char name[128];
	struct dir_report r = { DIR_STEP_OK, 0 };
	char buf[sizeof(struct dir_report) + 1];
	struct ha_spawn_result res;
	int rc;

	if (dir == NULL || dir[0] != '/') {
		ha_errf(err, errlen, 0, "storage dir: %s: not an absolute directory path",
			dir ? dir : "(none)");
		return -EINVAL;
	}
	if (strlen(dir) + sizeof(name) >= 4096) {
		ha_errf(err, errlen, 0, "storage dir: path too long");
		return -ENAMETOOLONG;
	}
	if (timeout_ms == 0) {
		timeout_ms = AGENT_STORAGE_DEFAULT_TIMEOUT_MS;
	}
	probe_name(name, sizeof(name));
	{
		struct dir_child_arg ca = { dir, name, flush };
		struct ha_spawn sp = { .fn = dir_child, .arg = &ca, .out = buf,
				       .out_len = sizeof(buf), .err = HA_SPAWN_ERR_INHERIT,
				       .timeout_ms = timeout_ms };

		rc = ha_spawn_run(&sp, &res);
	}
	if (rc == -ETIMEDOUT) {
		ha_errf(err, errlen, 0, "storage dir %s: no answer within %u ms (file system hung?)",
			dir, timeout_ms);
		return -ETIMEDOUT;
	}
	if (rc < 0 && rc != -ECHILD) {
		ha_errf(err, errlen, 0, "storage dir %s: cannot run the check: %s", dir,
			strerror(-rc));
		return rc;
	}
	if (res.out_got != sizeof(r)) {
		ha_errf(err, errlen, 0, "storage dir %s: check process died (status %d)", dir,
			ha_spawn_status(&res));
		return -EIO;
	}
	memcpy(&r, buf, sizeof(r));
	if (r.step != DIR_STEP_OK) {
		int e = r.err > 0 ? r.err : EIO;

		if (r.step == DIR_STEP_CREATE && (e == EROFS || e == EACCES || e == EPERM)) {
			ha_errf(err, errlen, 0, "storage dir %s is not writable: %s: %s", dir,
				dir_step_str((enum dir_step)r.step), strerror(e));
		} else {
			ha_errf(err, errlen, 0, "storage dir %s: %s: %s", dir,
				dir_step_str((enum dir_step)r.step), strerror(e));
		}
		qb_log(LOG_DEBUG, "storage dir %s: %s: %s", dir,
		       dir_step_str((enum dir_step)r.step), strerror(e));
		return -e;
	}
	return 0;
}

static int dir_probe(char *err, size_t errlen)
{
	(void)err;
	(void)errlen;
	return 0; /* a directory is always usable; acquire checks the one named */
}

static int dir_acquire(const char *resource, uint32_t timeout_ms, char *err, size_t errlen)
{
	return dir_check(resource, false, timeout_ms, err, errlen);
}

static int dir_release(const char *resource, uint32_t timeout_ms, char *err, size_t errlen)
{
	return dir_check(resource, true, timeout_ms, err, errlen);
}

static int dir_state(const char *resource, char *role_out, size_t rolelen)
{
	int rc = dir_check(resource, false, AGENT_STORAGE_STATE_TIMEOUT_MS, NULL, 0);
	const char *role;

	if (rc == 0) {
		role = AGENT_STORAGE_ROLE_PRIMARY;
	} else if (rc == -EROFS || rc == -EACCES || rc == -EPERM) {
		role = AGENT_STORAGE_ROLE_SECONDARY;
	} else {
		return rc;
	}
	if (role_out == NULL || rolelen <= strlen(role)) {
		return -ENOBUFS;
	}
	strcpy(role_out, role);
	return 0;
}

const struct agent_storage_ops agent_storage_dir_ops = {
	.name = "dir",
	.probe = dir_probe,
	.acquire = dir_acquire,
	.release = dir_release,
	.state = dir_state,
};

/* The registry lives with the default backend. */
const struct agent_storage_ops *agent_storage_find(const char *name)
{
	static const struct agent_storage_ops *const backends[] = {
		&agent_storage_dir_ops,
#ifdef HAVE_DRBD
		&agent_storage_drbd_ops,
#endif
	};

	if (name == NULL) {
		return NULL;
	}
	for (size_t i = 0; i < HA_ARRAY_SIZE(backends); i++) {
		if (strcmp(backends[i]->name, name) == 0) {
			return backends[i];
		}
	}
	return NULL;
}
