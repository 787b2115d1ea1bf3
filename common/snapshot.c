/*
 * snapshot.c - snapshot generations on the shared storage.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <ftw.h>
#include <inttypes.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>

#include "snapshot.h"
#include "util.h"

#define MANIFEST "MANIFEST"
#define MANIFEST_MAX (64u * 1024 * 1024)

static const char *const kind_names[HA_SNAP_KIND_MAX] = {
	[HA_SNAP_KIND_LEGACY] = "legacy",
	[HA_SNAP_KIND_PERIODIC] = "periodic",
	[HA_SNAP_KIND_MANUAL] = "manual",
	[HA_SNAP_KIND_FAILOVER] = "failover-point",
};

const char *ha_snap_kind_str(enum ha_snap_kind k)
{
	return ha_enum_str(kind_names, HA_SNAP_KIND_MAX, (unsigned)k);
}

int ha_snap_kind_failover(enum ha_snap_kind k)
{
	return k == HA_SNAP_KIND_LEGACY || k == HA_SNAP_KIND_PERIODIC ||
	       k == HA_SNAP_KIND_FAILOVER;
}

int ha_snap_guest_dir(const char *shared_dir, const char *guest, char *out, size_t len)
{
	int n = snprintf(out, len, "%s/snapshots/%s", shared_dir, guest);

	return n < 0 || (size_t)n >= len ? -ENAMETOOLONG : 0;
}

int ha_snap_gen_dir(const char *shared_dir, const char *guest, uint64_t gen, char *out,
		    size_t len)
{
	int n = snprintf(out, len, "%s/snapshots/%s/gen-%06" PRIu64, shared_dir, guest, gen);

	return n < 0 || (size_t)n >= len ? -ENAMETOOLONG : 0;
}

/* "gen-000012" -> 12; 0 for anything else (temporaries included). */
static uint64_t gen_of(const char *name)
{
	uint64_t v;

	if (strncmp(name, "gen-", 4) != 0 || strchr(name, '.')) {
		return 0;
	}
	return ha_parse_u64(name + 4, 1, UINT64_MAX, &v) == 0 ? v : 0;
}

static int cmp_desc(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x > y ? -1 : x < y;
}

int ha_snap_list(const char *shared_dir, const char *guest, uint64_t *gens, size_t max)
{
	char dir[PATH_MAX];
	DIR *d;
	struct dirent *e;
	size_t n = 0;
	int rc = ha_snap_guest_dir(shared_dir, guest, dir, sizeof(dir));

	if (rc < 0) {
		return rc;
	}
	d = opendir(dir);
	if (d == NULL) {
		return errno == ENOENT ? 0 : -errno;
	}
	while ((e = readdir(d)) != NULL) {
		uint64_t g = gen_of(e->d_name);

		if (g && n < max) {
			gens[n++] = g;
		}
	}
	closedir(d);
	qsort(gens, n, sizeof(gens[0]), cmp_desc);
	return (int)n;
}

int ha_snap_begin(const char *shared_dir, const char *guest, uint64_t *gen, char *tmp,
		  size_t len)
{
	char dir[PATH_MAX];
	uint64_t gens[1];
	int n, rc = ha_snap_guest_dir(shared_dir, guest, dir, sizeof(dir));

	if (rc < 0) {
		return rc;
	}
	rc = ha_mkdir_p(dir, 0700);
	if (rc < 0) {
		return rc;
	}
	/* Newest first: one slot is enough for the maximum. */
	{
		uint64_t all[1024];

		n = ha_snap_list(shared_dir, guest, all, HA_ARRAY_SIZE(all));
		if (n < 0) {
			return n;
		}
		gens[0] = n > 0 ? all[0] : 0;
	}
	*gen = gens[0] + 1;
	if (snprintf(tmp, len, "%s/gen-%06" PRIu64 ".tmp-%d", dir, *gen, (int)getpid()) >=
	    (int)len) {
		return -ENAMETOOLONG;
	}
	ha_rm_rf(tmp);
	if (mkdir(tmp, 0700) < 0) {
		return -errno;
	}
	return 0;
}

/* ---- hashing ---- */

static int hash_fd(int fd, char hex[65], uint64_t *size)
{
	gnutls_hash_hd_t h;
	unsigned char dig[32];
	static __thread unsigned char buf[1 << 16];
	ssize_t n;

	*size = 0;
	if (gnutls_hash_init(&h, GNUTLS_DIG_SHA256) < 0) {
		return -ENOMEM;
	}
	while ((n = read(fd, buf, sizeof(buf))) != 0) {
		if (n < 0) {
			if (errno == EINTR) {
				continue;
			}
			gnutls_hash_deinit(h, NULL);
			return -errno;
		}
		gnutls_hash(h, buf, (size_t)n);
		*size += (uint64_t)n;
	}
	gnutls_hash_deinit(h, dig);
	for (int i = 0; i < 32; i++) {
		snprintf(hex + 2 * i, 3, "%02x", dig[i]);
	}
	return 0;
}

static void hash_mem(const void *p, size_t len, char hex[65])
{
	unsigned char dig[32];

	gnutls_hash_fast(GNUTLS_DIG_SHA256, p, len, dig);
	for (int i = 0; i < 32; i++) {
		snprintf(hex + 2 * i, 3, "%02x", dig[i]);
	}
}

/* ---- writing ---- */

struct walk {
	char *buf;
	size_t len, cap;
	size_t base_len;
	int err;
	size_t files;
};

static struct walk *walk_ctx; /* nftw has no user pointer; guarded by walk_lock */
static pthread_mutex_t walk_lock = PTHREAD_MUTEX_INITIALIZER;

static int append(struct walk *w, const char *s)
{
	size_t n = strlen(s);

	if (w->len + n + 1 > w->cap) {
		size_t cap = (w->cap + n + 1) * 2;
		char *p = realloc(w->buf, cap);

		if (p == NULL) {
			return -ENOMEM;
		}
		w->buf = p;
		w->cap = cap;
	}
	memcpy(w->buf + w->len, s, n + 1);
	w->len += n;
	return 0;
}

static bool rel_ok(const char *rel)
{
	return rel[0] && rel[0] != '/' && !strstr(rel, "..") && !strpbrk(rel, " \n\r\t");
}

static int walk_cb(const char *path, const struct stat *st, int flag, struct FTW *f)
{
	struct walk *w = walk_ctx;
	const char *rel = path + w->base_len;
	char line[PATH_MAX + 200];
	char hex[65];
	uint64_t size;
	int fd, rc;

	if (*rel == '/') {
		rel++;
	}
	if (f->level == 0 || strcmp(rel, MANIFEST) == 0) {
		return 0;
	}
	if (!rel_ok(rel)) {
		w->err = -EINVAL;
		return 1;
	}
	if (flag == FTW_F && S_ISREG(st->st_mode)) {
		fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
		if (fd < 0) {
			w->err = -errno;
			return 1;
		}
		rc = hash_fd(fd, hex, &size);
		if (rc == 0 && fsync(fd) < 0) {
			rc = -errno;
		}
		close(fd);
		if (rc < 0) {
			w->err = rc;
			return 1;
		}
		snprintf(line, sizeof(line), "file %s %" PRIu64 " %s\n", hex, size, rel);
		w->files++;
	} else if (flag == FTW_SL) {
		char target[PATH_MAX];
		ssize_t n = readlink(path, target, sizeof(target) - 1);

		if (n < 0) {
			w->err = -errno;
			return 1;
		}
		target[n] = 0;
		hash_mem(target, (size_t)n, hex);
		snprintf(line, sizeof(line), "link %s 0 %s\n", hex, rel);
	} else if (flag == FTW_DP) {
		fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (fd >= 0) {
			fsync(fd);
			close(fd);
		}
		return 0;
	} else {
		return 0; /* devices, fifos: not part of the checksum */
	}
	if (w->files > HA_SNAP_MAX_FILES) {
		w->err = -E2BIG;
		return 1;
	}
	rc = append(w, line);
	if (rc < 0) {
		w->err = rc;
		return 1;
	}
	return 0;
}

int ha_snap_commit(const char *shared_dir, const char *guest, uint64_t gen, const char *tmp,
		   const char *def_text, size_t def_len, uint64_t time_ms,
		   enum ha_snap_kind kind, char *err, size_t errlen)
{
	struct walk w = { 0 };
	char path[PATH_MAX], final[PATH_MAX], hex[65], line[256];
	int rc;

	snprintf(path, sizeof(path), "%s/definition.conf", tmp);
	rc = ha_file_write_atomic(path, def_text, def_len);
	if (rc < 0) {
		snprintf(err, errlen, "%s: %s", path, strerror(-rc));
		goto fail;
	}
	/* a reader that predates "kind" ignores the line (it reads time_ms,
	 * file and link lines only) */
	snprintf(line, sizeof(line), "hactl-snapshot 1\nguest %s\ngeneration %" PRIu64
		 "\ntime_ms %" PRIu64 "%s%s\n", guest, gen, time_ms,
		 kind != HA_SNAP_KIND_LEGACY ? "\nkind " : "",
		 kind != HA_SNAP_KIND_LEGACY ? ha_snap_kind_str(kind) : "");
	if (append(&w, line) < 0) {
		rc = -ENOMEM;
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	w.base_len = strlen(tmp);
	pthread_mutex_lock(&walk_lock);
	walk_ctx = &w;
	rc = nftw(tmp, walk_cb, 32, FTW_PHYS | FTW_DEPTH);
	walk_ctx = NULL;
	pthread_mutex_unlock(&walk_lock);
	if (rc != 0 || w.err) {
		rc = w.err ? w.err : -EIO;
		snprintf(err, errlen, "checksumming %s: %s", tmp, strerror(-rc));
		goto fail;
	}
	hash_mem(w.buf, w.len, hex);
	snprintf(line, sizeof(line), "end %s\n", hex);
	if (append(&w, line) < 0) {
		rc = -ENOMEM;
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	snprintf(path, sizeof(path), "%s/%s", tmp, MANIFEST);
	rc = ha_file_write_atomic(path, w.buf, w.len);
	if (rc < 0) {
		snprintf(err, errlen, "%s: %s", path, strerror(-rc));
		goto fail;
	}
	rc = ha_snap_gen_dir(shared_dir, guest, gen, final, sizeof(final));
	if (rc == 0 && rename(tmp, final) < 0) {
		rc = -errno;
	}
	if (rc < 0) {
		snprintf(err, errlen, "rename %s: %s", tmp, strerror(-rc));
		goto fail;
	}
	ha_snap_guest_dir(shared_dir, guest, path, sizeof(path));
	{
		int dfd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

		if (dfd >= 0) {
			fsync(dfd);
			close(dfd);
		}
	}
	free(w.buf);
	return 0;
fail:
	free(w.buf);
	ha_snap_abort(tmp);
	return rc;
}

void ha_snap_abort(const char *tmp)
{
	ha_rm_rf(tmp);
}

/* ---- verification ---- */

/*
 * Reads @gen's MANIFEST into *buf (caller frees) and checks that it is
 * whole: its last line "end HASH" hashes everything before it. On success
 * *end is that last line. Returns 0, -ENOENT or -EBADMSG with @err set.
 */
static int manifest_load(const char *shared_dir, const char *guest, uint64_t gen, char *dir,
			 size_t dirlen, uint8_t **buf, size_t *len, char **end, char *err,
			 size_t errlen)
{
	char path[PATH_MAX + 16], hex[65];
	char *p, *end_line;
	int rc;

	*buf = NULL;
	rc = ha_snap_gen_dir(shared_dir, guest, gen, dir, dirlen);
	if (rc < 0) {
		snprintf(err, errlen, "snapshot path too long");
		return rc;
	}
	snprintf(path, sizeof(path), "%s/%s", dir, MANIFEST);
	rc = ha_file_read(path, MANIFEST_MAX, buf, len);
	if (rc == -ENOENT) {
		struct stat st;

		if (stat(dir, &st) < 0) {
			snprintf(err, errlen, "snapshot '%s' generation %" PRIu64 " does not exist",
				 guest, gen);
			return -ENOENT;
		}
		snprintf(err, errlen, "snapshot '%s' generation %" PRIu64 " is corrupt: no MANIFEST",
			 guest, gen);
		return -EBADMSG;
	}
	if (rc < 0) {
		snprintf(err, errlen, "%s: %s", path, strerror(-rc));
		return -EBADMSG;
	}
	/* The last line is "end HASH" over everything before it. */
	p = (char *)*buf;
	end_line = *len >= 70 ? p + *len - 69 : NULL;
	if (end_line == NULL || strncmp(end_line, "end ", 4) != 0 || p[*len - 1] != '\n' ||
	    (end_line != p && end_line[-1] != '\n')) {
		snprintf(err, errlen, "snapshot '%s' generation %" PRIu64
			 " is corrupt: MANIFEST is torn", guest, gen);
		goto bad;
	}
	hash_mem(p, (size_t)(end_line - p), hex);
	if (strncmp(end_line + 4, hex, 64) != 0) {
		snprintf(err, errlen, "snapshot '%s' generation %" PRIu64
			 " is corrupt: MANIFEST checksum mismatch", guest, gen);
		goto bad;
	}
	*end = end_line;
	return 0;
bad:
	free(*buf);
	*buf = NULL;
	return -EBADMSG;
}

int ha_snap_info(const char *shared_dir, const char *guest, uint64_t gen,
		 struct ha_snap_info *info, char *err, size_t errlen)
{
	char dir[PATH_MAX], *end, *line, *save = NULL;
	uint8_t *buf;
	size_t len;
	int rc = manifest_load(shared_dir, guest, gen, dir, sizeof(dir), &buf, &len, &end, err,
			       errlen);

	memset(info, 0, sizeof(*info));
	if (rc < 0) {
		return rc;
	}
	*end = 0;
	for (line = strtok_r((char *)buf, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		if (strncmp(line, "file ", 5) == 0 || strncmp(line, "link ", 5) == 0) {
			break; /* the header is over */
		}
		if (strncmp(line, "time_ms ", 8) == 0 &&
		    ha_parse_u64(line + 8, 0, UINT64_MAX, &info->time_ms) < 0) {
			snprintf(err, errlen, "snapshot '%s' generation %" PRIu64
				 " is corrupt: bad time_ms line", guest, gen);
			free(buf);
			return -EBADMSG;
		}
		if (strncmp(line, "kind ", 5) == 0) {
			/* a kind this version does not know: not a failover point */
			info->kind = HA_SNAP_KIND_MANUAL;
			for (int k = 1; k < HA_SNAP_KIND_MAX; k++) {
				if (strcmp(line + 5, kind_names[k]) == 0) {
					info->kind = (enum ha_snap_kind)k;
				}
			}
		}
	}
	free(buf);
	return 0;
}

int ha_snap_verify(const char *shared_dir, const char *guest, uint64_t gen,
		   uint64_t *time_ms, char *err, size_t errlen)
{
	char dir[PATH_MAX], path[2 * PATH_MAX + 16], hex[65];
	uint8_t *buf = NULL;
	size_t len;
	char *p, *end_line, *line, *save = NULL;
	uint64_t t = 0;
	int rc, files = 0;

	rc = manifest_load(shared_dir, guest, gen, dir, sizeof(dir), &buf, &len, &end_line, err,
			   errlen);
	if (rc < 0) {
		return rc;
	}
	p = (char *)buf;
	*end_line = 0;
	for (line = strtok_r(p, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		char kind[8], want[65], rel[PATH_MAX];
		uint64_t size, got_size;
		int fd;

		if (sscanf(line, "time_ms %" SCNu64, &t) == 1) {
			continue;
		}
		if (strncmp(line, "file ", 5) != 0 && strncmp(line, "link ", 5) != 0) {
			continue;
		}
		if (sscanf(line, "%7s %64s %" SCNu64 " %4095s", kind, want, &size, rel) != 4 ||
		    !rel_ok(rel)) {
			snprintf(err, errlen, "snapshot '%s' generation %" PRIu64
				 " is corrupt: bad MANIFEST line", guest, gen);
			rc = -EBADMSG;
			goto out;
		}
		snprintf(path, sizeof(path), "%s/%s", dir, rel);
		if (strcmp(kind, "link") == 0) {
			char target[PATH_MAX];
			ssize_t n = readlink(path, target, sizeof(target) - 1);

			if (n < 0) {
				snprintf(err, errlen, "snapshot '%s' generation %" PRIu64
					 " is corrupt: %s: %s", guest, gen, rel, strerror(errno));
				rc = -EBADMSG;
				goto out;
			}
			hash_mem(target, (size_t)n, hex);
			if (strcmp(hex, want) != 0) {
				snprintf(err, errlen, "snapshot '%s' generation %" PRIu64
					 " is corrupt: %s: link target changed", guest, gen, rel);
				rc = -EBADMSG;
				goto out;
			}
			continue;
		}
		fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
		if (fd < 0) {
			snprintf(err, errlen, "snapshot '%s' generation %" PRIu64
				 " is corrupt: %s: %s", guest, gen, rel, strerror(errno));
			rc = -EBADMSG;
			goto out;
		}
		rc = hash_fd(fd, hex, &got_size);
		close(fd);
		if (rc < 0 || got_size != size || strcmp(hex, want) != 0) {
			snprintf(err, errlen, "snapshot '%s' generation %" PRIu64
				 " is corrupt: %s: %s", guest, gen, rel,
				 rc < 0 ? strerror(-rc) : got_size != size ? "size mismatch" :
				 "checksum mismatch");
			rc = -EBADMSG;
			goto out;
		}
		files++;
	}
	if (files == 0) {
		snprintf(err, errlen, "snapshot '%s' generation %" PRIu64 " is corrupt: no files",
			 guest, gen);
		rc = -EBADMSG;
		goto out;
	}
	*time_ms = t;
	rc = 0;
out:
	free(buf);
	return rc;
}

int ha_snap_prune(const char *shared_dir, const char *guest, unsigned keep)
{
	uint64_t gens[1024];
	char dir[PATH_MAX], path[PATH_MAX + 300];
	DIR *d;
	struct dirent *e;
	int n = ha_snap_list(shared_dir, guest, gens, HA_ARRAY_SIZE(gens));
	int removed = 0;

	if (n < 0) {
		return n;
	}
	for (int i = (int)keep; i < n; i++) {
		ha_snap_gen_dir(shared_dir, guest, gens[i], path, sizeof(path));
		if (ha_rm_rf(path) == 0) {
			removed++;
		}
	}
	/* temporaries of dead writers */
	ha_snap_guest_dir(shared_dir, guest, dir, sizeof(dir));
	d = opendir(dir);
	if (d) {
		while ((e = readdir(d)) != NULL) {
			const char *t = strstr(e->d_name, ".tmp-");
			uint64_t pid;

			if (t && ha_parse_u64(t + 5, 1, INT32_MAX, &pid) == 0 &&
			    (kill((pid_t)pid, 0) < 0 && errno == ESRCH)) {
				snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
				ha_rm_rf(path);
			}
		}
		closedir(d);
	}
	return removed;
}

int ha_snap_read_definition(const char *shared_dir, const char *guest, uint64_t gen,
			    char **text, size_t *len)
{
	char dir[PATH_MAX], path[PATH_MAX + 32];
	int rc = ha_snap_gen_dir(shared_dir, guest, gen, dir, sizeof(dir));

	if (rc < 0) {
		return rc;
	}
	snprintf(path, sizeof(path), "%s/definition.conf", dir);
	return ha_file_read(path, 64 * 1024, (uint8_t **)text, len);
}

static int rm_cb(const char *path, const struct stat *st, int flag, struct FTW *f)
{
	return (flag == FTW_DP ? rmdir(path) : unlink(path)) < 0 && errno != ENOENT ? -1 : 0;
}

int ha_rm_rf(const char *path)
{
	struct stat st;

	if (lstat(path, &st) < 0) {
		return errno == ENOENT ? 0 : -errno;
	}
	if (!S_ISDIR(st.st_mode)) {
		return unlink(path) < 0 ? -errno : 0;
	}
	return nftw(path, rm_cb, 32, FTW_PHYS | FTW_DEPTH) == 0 ? 0 : -EIO;
}
