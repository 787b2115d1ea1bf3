/*
 * driver_domain_ckpt.c - checkpoint and restore of a domain (the Xen
 * heritage: xm save / restore). A checkpoint is a QEMU migration into a
 * file: QMP stop, "migrate fd:" into dir/memory (the fd passed with getfd,
 * no shell), the disk copied while the guest is paused, then cont or quit;
 * a manifest (dir/domain-ckpt.json), written last, vouches for the files.
 * Restore starts the guest's own command line with -S -incoming defer
 * (driver_domain_qemu.c) and feeds the file with migrate-incoming.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>

#include "driver.h"
#include "driver_domain.h"
#include "qmp_client.h"
#include "util.h"

#define DOM_MANIFEST "domain-ckpt.json"
#define DOM_MANIFEST_FORMAT 1
#define DOM_FDNAME "hactl-ckpt"

static int fsync_path(const char *path, int flags)
{
	int fd = open(path, flags | O_CLOEXEC), rc = 0;

	if (fd < 0) {
		return -errno;
	}
	if (fsync(fd) < 0) {
		rc = -errno;
	}
	close(fd);
	return rc;
}

/* Copies @src to @dst keeping holes; fsyncs @dst when @sync. */
static int copy_sparse(const char *src, const char *dst, bool sync, uint64_t *bytes,
		       char *err)
{
	struct stat st;
	int in, out, rc = 0;
	off_t pos = 0;

	in = open(src, O_RDONLY | O_CLOEXEC);
	if (in < 0) {
		return agent_err(err, -errno, "copy %s: %s", src, strerror(errno));
	}
	out = open(dst, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (out < 0) {
		rc = agent_err(err, -errno, "copy to %s: %s", dst, strerror(errno));
		close(in);
		return rc;
	}
	if (fstat(in, &st) < 0) {
		rc = agent_err(err, -errno, "copy %s: %s", src, strerror(errno));
		goto out;
	}
	while (pos < st.st_size) {
		off_t data = lseek(in, pos, SEEK_DATA), hole;

		if (data < 0) {
			if (errno == ENXIO) {
				break; /* only a hole is left */
			}
			data = pos; /* no SEEK_DATA: copy everything */
			hole = st.st_size;
		} else {
			hole = lseek(in, data, SEEK_HOLE);
			if (hole < 0) {
				hole = st.st_size;
			}
		}
		pos = data;
		while (pos < hole) {
			off_t o = pos;
			ssize_t n = copy_file_range(in, &o, out, &o, (size_t)(hole - pos), 0);

			if (n < 0 && (errno == EXDEV || errno == ENOSYS || errno == EINVAL ||
				      errno == EOPNOTSUPP)) {
				char buf[65536];
				size_t want = (size_t)(hole - pos) < sizeof(buf) ?
					(size_t)(hole - pos) : sizeof(buf);

				n = pread(in, buf, want, pos);
				if (n > 0 && pwrite(out, buf, (size_t)n, pos) != n) {
					n = -1;
				}
			}
			if (n < 0) {
				rc = agent_err(err, -errno, "copy %s to %s: %s", src, dst, strerror(errno));
				goto out;
			}
			if (n == 0) {
				rc = agent_err(err, -EIO, "copy %s: file shrank", src);
				goto out;
			}
			pos += n;
		}
	}
	if (ftruncate(out, st.st_size) < 0 || (sync && fsync(out) < 0)) {
		rc = agent_err(err, -errno, "copy to %s: %s", dst, strerror(errno));
	}
	if (bytes) {
		*bytes = (uint64_t)st.st_size;
	}
out:
	close(in);
	if (close(out) < 0 && rc == 0) {
		rc = agent_err(err, -errno, "copy to %s: %s", dst, strerror(errno));
	}
	return rc;
}

/* The concrete machine type ("pc-q35-7.2"), so that a restore on a newer
 * QEMU builds the same machine. */
static void machine_type(struct qmp_client *c, char *out, size_t len)
{
	json_object *args = json_object_new_object(), *ret = NULL;
	const char *s;
	size_t n;

	snprintf(out, len, "%s", DOM_MACHINE);
	if (args == NULL) {
		return;
	}
	json_object_object_add(args, "path", json_object_new_string("/machine"));
	json_object_object_add(args, "property", json_object_new_string("type"));
	if (qmp_client_execute(c, "qom-get", args, &ret, DOM_QMP_MS, NULL, 0) == 0 &&
	    json_object_is_type(ret, json_type_string)) {
		s = json_object_get_string(ret);
		n = strlen(s);
		if (n > 8 && strcmp(s + n - 8, "-machine") == 0 && n - 8 < len) {
			bool ok = true;

			for (size_t i = 0; i < n - 8; i++) {
				char ch = s[i];

				ok &= (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') ||
				      ch == '-' || ch == '.' || ch == '_';
			}
			if (ok) {
				snprintf(out, len, "%.*s", (int)(n - 8), s);
			}
		}
	}
	json_object_put(ret);
	json_object_put(args);
}

/* Migration settings for a file: no stream-changing capabilities (the
 * restoring QEMU sets the same), no bandwidth cap, MIGRATION events so
 * that the wait for completion wakes up at once. */
static int tune_for_file(struct qmp_client *c, char *err)
{
	struct qmp_migrate_tuning t = { .max_bandwidth = DOM_BANDWIDTH_MAX, .events = true };

	return qmp_client_migrate_tune(c, &t, DOM_QMP_MS, err, AGENT_ERR_LEN);
}


static int manifest_write(const char *dir, json_object *m, char *err)
{
	char path[PATH_MAX];
	const char *s = json_object_to_json_string_ext(m, JSON_C_TO_STRING_PRETTY);
	int rc = dom_path_join(path, sizeof(path), dir, DOM_MANIFEST);

	if (rc == 0) {
		rc = ha_file_write_atomic(path, s, strlen(s));
	}
	return rc < 0 ? agent_err(err, rc, "checkpoint: writing %s/%s: %s", dir, DOM_MANIFEST,
				  strerror(-rc)) : 0;
}

int dom_checkpoint(struct agent_guest *g, const char *dir, unsigned flags, char *err)
{
	char mpath[PATH_MAX], dpath[PATH_MAX], machine[64], qver[32];
	struct qmp_status st;
	struct dom_record r;
	struct qmp_client *c = NULL;
	struct qmp_migrate_info mi;
	json_object *args = NULL, *m = NULL;
	bool leave = flags & AGENT_CKPT_LEAVE_RUNNING, was_running = false, resumed = false;
	uint64_t t_stop = 0, t_mig = 0, t_disk = 0, t_end, disk_bytes = 0;
	struct stat sb;
	unsigned vmaj, vmin, vmic;
	int fd = -1, rc;

	if (flags & (AGENT_CKPT_PRE_DUMP | AGENT_CKPT_LAZY)) {
		return agent_err(err, -EOPNOTSUPP, "domain %s: checkpoint flags 0x%x not supported "
				 "(live migration does pre-copy itself)", g->name, flags);
	}
	if (dom_guest_running(g, &r) < 0) {
		return agent_err(err, -ESRCH, "domain %s: not running", g->name);
	}
	if (dom_path_join(mpath, sizeof(mpath), dir, "memory") < 0 ||
	    dom_path_join(dpath, sizeof(dpath), dir, "disk") < 0) {
		return agent_err(err, -ENAMETOOLONG, "checkpoint: path %s too long", dir);
	}
	rc = ha_mkdir_p(dir, 0700);
	if (rc < 0) {
		return agent_err(err, rc, "checkpoint: mkdir %s: %s", dir, strerror(-rc));
	}
	dom_op_begin(g, AGENT_GUEST_PAUSED);
	{
		/* an older manifest must not vouch for what is written now */
		char old[PATH_MAX];

		if (dom_path_join(old, sizeof(old), dir, DOM_MANIFEST) == 0) {
			unlink(old);
		}
	}
	rc = dom_qmp_open(g, DOM_CONNECT_MS, &c, err);
	if (rc < 0) {
		goto out;
	}
	qmp_client_version(c, &vmaj, &vmin, &vmic);
	snprintf(qver, sizeof(qver), "%u.%u.%u", vmaj, vmin, vmic);
	machine_type(c, machine, sizeof(machine));
	rc = qmp_client_query_status(c, &st, DOM_QMP_MS, err, AGENT_ERR_LEN);
	was_running = rc == 0 && st.running;
	if (rc == 0) {
		rc = tune_for_file(c, err);
	}
	if (rc < 0) {
		goto out;
	}
	fd = open(mpath, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0) {
		rc = agent_err(err, -errno, "checkpoint: %s: %s", mpath, strerror(errno));
		goto out;
	}
	/* The instant: from here the guest runs no instruction until cont. */
	t_stop = ha_mono_ms();
	if (was_running && (rc = dom_simple_cmd(c, "stop", NULL, NULL, err)) < 0) {
		goto out;
	}
	rc = qmp_client_getfd(c, DOM_FDNAME, fd, DOM_QMP_MS, err, AGENT_ERR_LEN);
	if (rc == 0) {
		rc = dom_simple_cmd(c, "migrate", "uri", "fd:" DOM_FDNAME, err);
	}
	if (rc == 0) {
		rc = qmp_client_migrate_wait(c, &mi, 120000, err, AGENT_ERR_LEN);
		if (rc < 0) {
			dom_simple_cmd(c, "migrate_cancel", NULL, NULL, NULL);
		}
	}
	if (rc < 0) {
		goto out;
	}
	t_mig = ha_mono_ms();
	/* The block layer flushed when the migration completed; the guest
	 * writes nothing until cont. */
	unlink(dpath);
	if (g->disk) {
		rc = copy_sparse(g->disk, dpath, false, &disk_bytes, err);
		if (rc < 0) {
			goto out;
		}
	}
	t_disk = ha_mono_ms();
	if (leave && was_running) {
		/* QEMU reports "completed" before its migration thread has
		 * finished cleaning up; cont is refused ("Migration is not
		 * finalized yet") for that short while: retry, bounded. */
		for (int tries = 0; tries < 100; tries++) {
			rc = dom_simple_cmd(c, "cont", NULL, NULL, err);
			if (rc == 0 || !strstr(err, "not finalized")) {
				break;
			}
			usleep(20 * 1000);
		}
		if (rc < 0) {
			goto out;
		}
		resumed = true;
	}
	t_end = ha_mono_ms();
	/* Durability is not consistency: the files hold the instant already,
	 * so they are synced after the guest runs again; the manifest that
	 * vouches for them is written only after that. */
	if (fsync(fd) < 0) {
		rc = agent_err(err, -errno, "checkpoint: fsync %s: %s", mpath, strerror(errno));
		goto out;
	}
	if (g->disk && (rc = fsync_path(dpath, O_RDONLY)) < 0) {
		rc = agent_err(err, rc, "checkpoint: fsync %s: %s", dpath, strerror(-rc));
		goto out;
	}
	fsync_path(dir, O_RDONLY | O_DIRECTORY);
	if (fstat(fd, &sb) < 0) {
		sb.st_size = 0;
	}
	m = json_object_new_object();
	if (m == NULL) {
		rc = agent_err(err, -ENOMEM, "checkpoint: out of memory");
		goto out;
	}
	json_object_object_add(m, "format", json_object_new_int(DOM_MANIFEST_FORMAT));
	json_object_object_add(m, "name", json_object_new_string(g->name));
	json_object_object_add(m, "mem_kib", json_object_new_int64((int64_t)g->mem_kib));
	json_object_object_add(m, "cpus", json_object_new_int64(g->cpus));
	json_object_object_add(m, "machine", json_object_new_string(machine));
	json_object_object_add(m, "accel", json_object_new_string(r.accel));
	json_object_object_add(m, "qemu_version", json_object_new_string(qver));
	json_object_object_add(m, "memory_bytes", json_object_new_int64((int64_t)sb.st_size));
	if (g->disk) {
		json_object_object_add(m, "disk_format",
				       json_object_new_string(dom_disk_format(dpath)));
		json_object_object_add(m, "disk_bytes", json_object_new_int64((int64_t)disk_bytes));
	}
	json_object_object_add(m, "was_running", json_object_new_boolean(was_running));
	json_object_object_add(m, "frozen_ms", json_object_new_int64(
				       (int64_t)((leave ? t_end : t_disk) - t_stop)));
	json_object_object_add(m, "migrate_ms", json_object_new_int64((int64_t)(t_mig - t_stop)));
	json_object_object_add(m, "disk_copy_ms", json_object_new_int64((int64_t)(t_disk - t_mig)));
	json_object_object_add(m, "qemu_total_ms", json_object_new_int64((int64_t)mi.total_time_ms));
	json_object_object_add(m, "qemu_downtime_ms", json_object_new_int64((int64_t)mi.downtime_ms));
	json_object_object_add(m, "taken_wall_ms", json_object_new_int64((int64_t)ha_wall_ms()));
	rc = manifest_write(dir, m, err);
	if (rc < 0) {
		goto out;
	}
	if (!leave) {
		/* a migration's end: the guest now lives in @dir */
		rc = dom_force_quit(g, c, &r, err);
		if (rc == 0) {
			dom_after_exit(g, &r);
			g->stopped_by_us = true;
			dom_mark_stopped(g, true);
		}
	}
out:
	if (rc < 0 && c && was_running && !resumed && dom_rec_alive(&r)) {
		/* any failure before the end resumes the guest */
		dom_simple_cmd(c, "cont", NULL, NULL, NULL);
	}
	if (fd >= 0) {
		close(fd);
	}
	json_object_put(args);
	json_object_put(m);
	qmp_client_free(c);
	dom_op_end(g, was_running ? AGENT_GUEST_RUNNING : AGENT_GUEST_PAUSED);
	return rc;
}

/* Reads and checks the manifest of @dir against @g. */
static int manifest_check(const struct agent_guest *g, const char *dir, struct dom_launch *lo,
			  bool *has_disk, char *err)
{
	char path[PATH_MAX], mpath[PATH_MAX], fmt[16];
	json_object *m = NULL;
	struct stat st;
	int64_t mem, cpus, bytes;
	int rc;

	if (dom_path_join(path, sizeof(path), dir, DOM_MANIFEST) < 0 ||
	    dom_path_join(mpath, sizeof(mpath), dir, "memory") < 0) {
		return agent_err(err, -ENAMETOOLONG, "restore: path %s too long", dir);
	}
	rc = dom_json_file_read(path, &m);
	if (rc < 0) {
		return agent_err(err, rc, "restore: %s: %s", path,
				 rc == -EBADMSG ? "not a checkpoint manifest" : strerror(-rc));
	}
	mem = dom_json_int(m, "mem_kib", -1);
	cpus = dom_json_int(m, "cpus", -1);
	bytes = dom_json_int(m, "memory_bytes", -1);
	dom_json_str(lo->machine, sizeof(lo->machine), m, "machine");
	dom_json_str(fmt, sizeof(fmt), m, "disk_format");
	*has_disk = fmt[0] != 0;
	if (dom_json_int(m, "format", -1) != DOM_MANIFEST_FORMAT) {
		rc = agent_err(err, -EBADMSG, "restore: %s: unknown format", path);
	} else if (mem != (int64_t)g->mem_kib || cpus != (int64_t)g->cpus) {
		rc = agent_err(err, -EINVAL, "restore: %s holds %" PRId64 " KiB / %" PRId64
			       " cpus, the guest has %" PRIu64 " KiB / %u", dir, mem, cpus,
			       g->mem_kib, g->cpus);
	} else if (stat(mpath, &st) < 0 || st.st_size != bytes || bytes <= 0) {
		rc = agent_err(err, -EBADMSG, "restore: %s missing or not %" PRId64 " bytes", mpath,
			       bytes);
	} else if (*has_disk && g->disk == NULL) {
		rc = agent_err(err, -EINVAL, "restore: %s holds a disk, the guest has none", dir);
	} else if (!*has_disk && g->disk != NULL) {
		rc = agent_err(err, -EINVAL, "restore: %s holds no disk, the guest has %s", dir,
			       g->disk);
	}
	/* a machine type we did not write ourselves is not passed on */
	for (const char *p = lo->machine; *p; p++) {
		if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '-' ||
		      *p == '.' || *p == '_')) {
			lo->machine[0] = 0;
			break;
		}
	}
	json_object_put(m);
	return rc;
}

/* Puts the checkpoint's disk back in place: a temporary name, synced,
 * renamed over the guest's disk. */
static int disk_restore(const struct agent_guest *g, const char *dir, char *err)
{
	char src[PATH_MAX], tmp[PATH_MAX], pdir[PATH_MAX];
	char *slash;
	int rc;

	if (dom_path_join(src, sizeof(src), dir, "disk") < 0 ||
	    snprintf(tmp, sizeof(tmp), "%s.restore-tmp", g->disk) >= (int)sizeof(tmp)) {
		return agent_err(err, -ENAMETOOLONG, "restore: disk path too long");
	}
	rc = copy_sparse(src, tmp, true, NULL, err);
	if (rc == 0 && rename(tmp, g->disk) < 0) {
		rc = agent_err(err, -errno, "restore: rename to %s: %s", g->disk, strerror(errno));
	}
	if (rc < 0) {
		unlink(tmp);
		return rc;
	}
	snprintf(pdir, sizeof(pdir), "%s", g->disk);
	slash = strrchr(pdir, '/');
	if (slash && slash != pdir) {
		*slash = 0;
		fsync_path(pdir, O_RDONLY | O_DIRECTORY);
	}
	return 0;
}

int dom_restore(struct agent_driver *d, const struct agent_guest_spec *spec,
		       const char *dir, struct agent_guest **out, char *err)
{
	struct agent_guest *g;
	struct dom_launch lo = { .incoming = true };
	struct dom_record r;
	struct qmp_client *c = NULL;
	struct qmp_migrate_info mi;
	char mpath[PATH_MAX];
	bool has_disk = false, launched = false, incoming = false;
	int fd = -1, rc;

	*out = NULL;
	rc = dom_guest_new(d, spec, true, &g, err);
	if (rc == 0 && (rc = dom_files_check(g, err)) < 0) {
		dom_guest_free(g);
	}
	if (rc < 0) {
		return rc;
	}
	dom_op_begin(g, AGENT_GUEST_STARTING);
	if (dom_guest_running(g, &r) == 0) {
		rc = agent_err(err, -EBUSY, "domain %s: already running (pid %d)", g->name,
			       (int)r.pid);
		goto out;
	}
	rc = manifest_check(g, dir, &lo, &has_disk, err);
	if (rc < 0) {
		goto out;
	}
	if (dom_path_join(mpath, sizeof(mpath), dir, "memory") < 0) {
		rc = agent_err(err, -ENAMETOOLONG, "restore: path %s too long", dir);
		goto out;
	}
	fd = open(mpath, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		rc = agent_err(err, -errno, "restore: %s: %s", mpath, strerror(errno));
		goto out;
	}
	if (has_disk && (rc = disk_restore(g, dir, err)) < 0) {
		goto out;
	}
	rc = dom_launch(g, &lo, &r, 30000, err);
	if (rc < 0) {
		goto out;
	}
	launched = true;
	rc = dom_qmp_open(g, DOM_CONNECT_MS, &c, err);
	if (rc == 0) {
		rc = tune_for_file(c, err);
	}
	if (rc == 0) {
		rc = qmp_client_getfd(c, DOM_FDNAME, fd, DOM_QMP_MS, err, AGENT_ERR_LEN);
	}
	if (rc == 0) {
		rc = dom_simple_cmd(c, "migrate-incoming", "uri", "fd:" DOM_FDNAME, err);
		incoming = rc == 0;
	}
	if (rc == 0) {
		rc = qmp_client_migrate_wait(c, &mi, 120000, err, AGENT_ERR_LEN);
	}
	if (rc == 0) {
		rc = dom_wait_status(g, c, QMP_RUN_PAUSED, 10000, err);
	}
	if (rc == 0) {
		rc = dom_simple_cmd(c, "cont", NULL, NULL, err);
	}
	if (rc == 0) {
		rc = dom_wait_status(g, c, QMP_RUN_RUNNING, 10000, err);
	}
	if (rc == 0) {
		/* The guest's MAC now sits behind another port: tell the
		 * network at once (RARP rounds), as after a live migration. */
		dom_announce(c, NULL);
	}
out:
	if (rc < 0 && launched) {
		/* A failed incoming migration ends QEMU: its log says why. */
		char tail[200];
		bool died = dom_incoming_undo(g, c, &r, tail, sizeof(tail));

		if (incoming && died) {
			rc = -EBADMSG; /* QEMU refused the image and ended */
		}
		if (tail[0]) {
			agent_err(err, rc, "domain %s: restore from %s failed: %s", g->name, dir, tail);
		}
	}
	if (fd >= 0) {
		close(fd);
	}
	qmp_client_free(c);
	dom_op_end(g, AGENT_GUEST_RUNNING);
	if (rc < 0) {
		dom_guest_free(g);
		return rc;
	}
	*out = g;
	return 0;
}
