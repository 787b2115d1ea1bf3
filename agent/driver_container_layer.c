/*
 * driver_container_layer.c - a container's writable layer: an ext4 image
 * per guest on the shared storage (data_dir/layer.img), attached to a loop
 * device and mounted on run_dir/layer on the host that runs the guest; the
 * overlay's upper and work directories live inside that mount.
 *
 * Why an image: the kernel refuses an overlay upper directory on NFS (no
 * trusted.* xattrs, no whiteouts) and on most cluster file systems. An
 * ext4 file system inside a file needs nothing from the shared file system
 * but reads and writes of one file, and its size is the guest's disk quota
 * (OpenVZ's diskspace): a guest that fills it gets ENOSPC, nothing else
 * does.
 *
 * One host at a time: ext4 is not a cluster file system, so the image is
 * mounted by one host only. data_dir/layer.lock names the host (and run
 * directory) that has it mounted; it is created before the mount and
 * removed only once this kernel holds no loop device on the image any
 * more, i.e. once the file system is really gone (an unmount in one mount
 * namespace leaves it alive while another namespace, a dying container
 * for instance, still holds it). Live migration waits for the source's
 * lock to go; start and restore take it over (the cluster has confirmed
 * the former holder off, or it gave the guest up: docs/containers.md).
 *
 * ext4's multi-mount protection (mmp) would refuse a second mount by
 * itself, but every mount then waits twice its update interval (at least
 * eleven seconds), inside a migration's downtime: the lock file does that
 * job here.
 *
 * The loop device is attached with autoclear: it goes when the file
 * system on it is unmounted for the last time. A new agent (restart)
 * finds an image still attached in this kernel by the device and inode of
 * its backing file and mounts that device again: the same super block.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/loop.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/sysmacros.h>
#include <time.h>
#include <unistd.h>

#include "driver_container.h"
#include "util.h"

#define LAYER_MKFS_MS 120000
#define LAYER_COPY_MS 300000
#define LAYER_UMOUNT_MS 10000  /* the guest's last references going */
#define LAYER_POLL_MS 20
#define LAYER_CLAIM_STALE_S 30     /* a claim mutex left by a dead host */
#define LAYER_HANDBACK_MS 60000    /* a migration's destination releasing */

int ctr_layer_init(struct ctr_layer *l, const struct agent_guest_spec *spec, char *err)
{
	char host[64] = "";
	int rc, n;

	memset(l, 0, sizeof(*l));
	if ((rc = ctr_path_fmt(l->img, spec->data_dir, CTR_LAYER_IMAGE, err)) < 0 ||
	    (rc = ctr_path_fmt(l->lock, spec->data_dir, "layer.lock", err)) < 0 ||
	    (rc = ctr_path_fmt(l->mnt, spec->run_dir, "layer", err)) < 0 ||
	    (rc = ctr_path_fmt(l->upper, l->mnt, "upper", err)) < 0 ||
	    (rc = ctr_path_fmt(l->work, l->mnt, "work", err)) < 0 ||
	    (rc = ctr_path_fmt(l->old_upper, spec->data_dir, "upper", err)) < 0 ||
	    (rc = ctr_path_fmt(l->old_work, spec->data_dir, "work", err)) < 0) {
		return rc;
	}
	l->run_dir = spec->run_dir;
	l->data_dir = spec->data_dir;
	l->kib = spec->disk_kib ? spec->disk_kib : CTR_LAYER_DEFAULT_KIB;
	gethostname(host, sizeof(host) - 1);
	n = snprintf(l->owner, sizeof(l->owner), "host=%s run=%s\n", host, spec->run_dir);
	if (n < 0 || n >= (int)sizeof(l->owner)) {
		return agent_err(err, -ENAMETOOLONG, "layer: owner record too long");
	}
	return 0;
}

bool ctr_layer_legacy(const struct ctr_layer *l)
{
	struct stat st;

	return access(l->img, F_OK) != 0 && stat(l->old_upper, &st) == 0 && S_ISDIR(st.st_mode);
}

bool ctr_layer_mounted(const struct ctr_layer *l)
{
	struct stat a, b;

	return stat(l->mnt, &a) == 0 && stat(l->run_dir, &b) == 0 && a.st_dev != b.st_dev;
}

/* ---- the run directory -------------------------------------------------- */

/* Is @path a mount point (in this mount namespace)? */
static bool mount_point(const char *path)
{
	char parent[CTR_PATH + 4];
	struct statx a, b;

	snprintf(parent, sizeof(parent), "%s/..", path);
	if (statx(AT_FDCWD, path, AT_SYMLINK_NOFOLLOW, STATX_MNT_ID, &a) < 0 ||
	    statx(AT_FDCWD, parent, 0, STATX_MNT_ID, &b) < 0 ||
	    !(a.stx_mask & STATX_MNT_ID) || !(b.stx_mask & STATX_MNT_ID)) {
		return false;
	}
	return a.stx_mnt_id != b.stx_mnt_id;
}

/*
 * The run directory is a mount of itself in a peer group of its own
 * (private, then shared), for the layer's sake: a copy of the layer's
 * mount in another mount namespace keeps its file system alive after this
 * host unmounted it, and no other host may mount it then.
 *  - Namespaces that exist already (systemd services with private mounts
 *    are slaves of the host's) get no copy of what is mounted below it:
 *    the group has no member there.
 *  - Namespaces made later as slaves (systemd's way) get copies that
 *    receive our unmounts, as everything below stays shared.
 *  - Namespaces made later with private mounts keep their copy until they
 *    end: ctr_layer_close() finds the loop device still in use and says
 *    so, rather than let another host mount it.
 * The guest's own namespace makes everything private and detaches the
 * host's tree at pivot_root, so it holds no copy. Made once; the bind
 * itself propagates, holding nothing but the directory.
 */
int ctr_layer_run_dir_share(const struct ctr_layer *l, char *err)
{
	const char *d = l->run_dir;

	if (mount_point(d)) {
		return 0;
	}
	if (mount(d, d, NULL, MS_BIND, NULL) < 0) {
		return agent_err(err, -errno, "bind-mounting %s on itself: %s", d, strerror(errno));
	}
	if (mount(NULL, d, NULL, MS_PRIVATE, NULL) < 0 ||
	    mount(NULL, d, NULL, MS_SHARED, NULL) < 0) {
		int e = errno;

		umount2(d, MNT_DETACH);
		return agent_err(err, -e, "making %s a peer group of its own: %s", d, strerror(e));
	}
	return 0;
}

void ctr_layer_run_dir_unbind(const struct ctr_layer *l)
{
	for (int i = 0; i < 4 && mount_point(l->run_dir); i++) {
		if (umount2(l->run_dir, 0) < 0) {
			umount2(l->run_dir, MNT_DETACH);
		}
	}
}

/* ---- the lock file ------------------------------------------------------- */

/* The first line of the lock file: the holder ("host=H run=R"), or
 * CTR_LAYER_HANDOVER; the lines after it say where it came from. */
static int lock_read(const struct ctr_layer *l, char *first, size_t cap, char *all, size_t allcap)
{
	char buf[sizeof(l->owner) * 3];
	ssize_t n = host_read_small(l->lock, buf, sizeof(buf));

	if (n < 0) {
		snprintf(first, cap, "?");
		if (all) {
			snprintf(all, allcap, "?");
		}
		return (int)n;
	}
	snprintf(first, cap, "%.*s", (int)strcspn(buf, "\n"), buf);
	if (all) {
		size_t k;

		snprintf(all, allcap, "%s", buf);
		for (k = 0; all[k]; k++) {
			all[k] = all[k] == '\n' ? ' ' : all[k];
		}
		while (k > 0 && all[k - 1] == ' ') {
			all[--k] = '\0';
		}
	}
	return 0;
}

static bool lock_ours(const struct ctr_layer *l, char *who, size_t wholen)
{
	char first[sizeof(l->owner)];
	size_t len = strcspn(l->owner, "\n");

	if (lock_read(l, first, sizeof(first), who, wholen) < 0) {
		return false;
	}
	return strlen(first) == len && strncmp(first, l->owner, len) == 0;
}

static bool lock_handed_over(const struct ctr_layer *l, char *who, size_t wholen)
{
	char first[sizeof(l->owner)];

	return lock_read(l, first, sizeof(first), who, wholen) == 0 &&
	       strcmp(first, CTR_LAYER_HANDOVER) == 0;
}

/*
 * Creates the lock file with @rec when there is none (exclusive create,
 * atomic on NFS too): 1 created, 0 it exists, -errno.
 */
static int lock_create(const struct ctr_layer *l, const char *rec, char *err)
{
	int fd = open(l->lock, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
	size_t len = strlen(rec);
	bool ok;
	int e;

	if (fd < 0) {
		return errno == EEXIST ? 0 : agent_err(err, -errno, "layer: creating %s: %s",
						       l->lock, strerror(errno));
	}
	ok = write(fd, rec, len) == (ssize_t)len && fsync(fd) == 0;
	e = errno;
	close(fd);
	if (!ok) {
		unlink(l->lock);
		return agent_err(err, -e, "layer: writing %s: %s", l->lock, strerror(e));
	}
	return 1;
}

/* @who (a lock's record, lines joined) is a host's that claimed it from
 * this host's handover: "... (handover from OUR-OWNER-LINE, ...". */
static bool handed_from_us(const struct ctr_layer *l, const char *who)
{
	char pat[sizeof(l->owner) + 32];

	snprintf(pat, sizeof(pat), "(handover from %.*s,", (int)strcspn(l->owner, "\n"),
		 l->owner);
	return strstr(who, pat) != NULL;
}

/*
 * Takes the lock: created exclusively; already ours is fine; someone
 * else's is waited for up to @wait_ms, then taken over with @force or
 * refused (-EBUSY).
 */
static int lock_take(const struct ctr_layer *l, bool force, uint32_t wait_ms, char *err)
{
	uint64_t deadline = ha_mono_ms() + wait_ms;
	char who[sizeof(l->owner) * 2];
	bool handback = false;

	for (;;) {
		int rc = lock_create(l, l->owner, err);

		if (rc != 0) {
			return rc < 0 ? rc : 0;
		}
		if (lock_ours(l, who, sizeof(who))) {
			return 0;
		}
		if (force && !handback && handed_from_us(l, who)) {
			/* Our own migration's destination holds it (this host
			 * lost the images to resume from, an agent restart):
			 * it releases it at the abort. A fenced one never
			 * does, and is taken over after the wait. */
			handback = true;
			deadline = ha_mono_ms() + LAYER_HANDBACK_MS;
		}
		if (ha_mono_ms() >= deadline) {
			break;
		}
		ha_sleep_ms(LAYER_POLL_MS);
	}
	if (!force) {
		return agent_err(err, -EBUSY, "layer %s is mounted by another host (%s)", l->img,
				 who);
	}
	{
		int rc = ha_file_write_atomic(l->lock, l->owner, strlen(l->owner));

		return rc < 0 ? agent_err(err, rc, "layer: taking over %s from %s: %s", l->lock,
					  who, strerror(-rc)) : 0;
	}
}

bool ctr_layer_handed_from_us(const struct ctr_layer *l)
{
	char who[sizeof(l->owner) * 2];

	return !lock_ours(l, who, sizeof(who)) && handed_from_us(l, who);
}

int ctr_layer_settle(const struct ctr_layer *l, char *err)
{
	char who[sizeof(l->owner) * 2];
	int rc;

	if (!lock_ours(l, who, sizeof(who)) || strchr(who, '(') == NULL) {
		return 0; /* not ours, or no handover line */
	}
	rc = ha_file_write_atomic(l->lock, l->owner, strlen(l->owner));
	return rc < 0 ? agent_err(err, rc, "layer: rewriting %s: %s", l->lock, strerror(-rc)) : 0;
}

static void lock_release(const struct ctr_layer *l)
{
	char who[sizeof(l->owner)];

	if (lock_ours(l, who, sizeof(who))) {
		unlink(l->lock);
	}
}

/*
 * The claim mutex, data_dir/layer.lock.claim, created exclusively: a
 * handed-over lock is read and rewritten under it, so that of two hosts
 * taking it at once (the destination, the source taking its layer back
 * after an abort) exactly one gets it. Held for one read and one write;
 * one older than LAYER_CLAIM_STALE_S was left by a host that died
 * holding it, and is broken.
 */
static int claim_lock(const struct ctr_layer *l, const char *path, uint64_t deadline, char *err)
{
	for (;;) {
		int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
		struct stat st;

		if (fd >= 0) {
			if (write(fd, l->owner, strlen(l->owner)) < 0) {
				/* the name alone is the mutex */
			}
			close(fd);
			return 0;
		}
		if (errno != EEXIST) {
			return agent_err(err, -errno, "layer: creating %s: %s", path,
					 strerror(errno));
		}
		if (stat(path, &st) == 0 && time(NULL) - st.st_mtime > LAYER_CLAIM_STALE_S) {
			unlink(path);
			continue;
		}
		if (ha_mono_ms() >= deadline) {
			return agent_err(err, -EBUSY, "layer: %s is held by another host", path);
		}
		ha_sleep_ms(LAYER_POLL_MS);
	}
}

/*
 * Takes a lock that a migration's source handed over (CTR_LAYER_HANDOVER:
 * nobody has the layer mounted) or that is ours already; with @reclaim
 * (the source taking its layer back after an abort) a free one too. A
 * lock another host holds is waited for up to @wait_ms, never taken: that
 * host may have the layer mounted. The new record names where the lock
 * came from: "host=H2 run=R2" then "(handover from host=H1 ..., migration M)".
 */
static int lock_claim(const struct ctr_layer *l, bool reclaim, uint32_t wait_ms, char *err)
{
	uint64_t deadline = ha_mono_ms() + wait_ms;
	char path[CTR_PATH + 8], who[sizeof(l->owner) * 2];

	snprintf(path, sizeof(path), "%s.claim", l->lock);
	for (;;) {
		int rc = claim_lock(l, path, deadline, err);

		if (rc < 0) {
			return rc;
		}
		if (lock_ours(l, who, sizeof(who))) {
			rc = 1;
		} else if (reclaim && access(l->lock, F_OK) != 0 && errno == ENOENT) {
			rc = lock_create(l, l->owner, err);
		} else if (lock_handed_over(l, who, sizeof(who))) {
			char rec[sizeof(l->owner) * 3];
			const char *from = who + strlen(CTR_LAYER_HANDOVER);

			while (*from == ' ') {
				from++;
			}
			snprintf(rec, sizeof(rec), "%.*s\n(handover %s)\n",
				 (int)strcspn(l->owner, "\n"), l->owner, from);
			rc = ha_file_write_atomic(l->lock, rec, strlen(rec));
			rc = rc < 0 ? agent_err(err, rc, "layer: taking %s: %s", l->lock,
						strerror(-rc)) : 1;
		}
		unlink(path);
		if (rc != 0) {
			return rc < 0 ? rc : 0;
		}
		if (ha_mono_ms() >= deadline) {
			if (access(l->lock, F_OK) != 0) {
				return agent_err(err, -EBUSY, "layer %s: no handover to take (%s "
						 "is gone)", l->img, l->lock);
			}
			return agent_err(err, -EBUSY, "layer %s is mounted by another host (%s)",
					 l->img, who);
		}
		ha_sleep_ms(LAYER_POLL_MS);
	}
}

const char *ctr_layer_take_str(enum ctr_layer_take how)
{
	switch (how) {
	case CTR_LAYER_WAIT: return "wait";
	case CTR_LAYER_FORCE: return "force";
	case CTR_LAYER_CLAIM: return "claim";
	case CTR_LAYER_RECLAIM: return "reclaim";
	case CTR_LAYER_TAKE_MAX: break;
	}
	return "unknown";
}

int ctr_layer_lock(const struct ctr_layer *l, enum ctr_layer_take how, uint32_t wait_ms,
		   char *err)
{
	switch (how) {
	case CTR_LAYER_WAIT:
	case CTR_LAYER_FORCE:
		return lock_take(l, how == CTR_LAYER_FORCE, wait_ms, err);
	case CTR_LAYER_CLAIM:
	case CTR_LAYER_RECLAIM:
		return lock_claim(l, how == CTR_LAYER_RECLAIM, wait_ms, err);
	case CTR_LAYER_TAKE_MAX:
		break;
	}
	return agent_err(err, -EINVAL, "layer: bad lock mode %s (%d)", ctr_layer_take_str(how),
			 (int)how);
}

int ctr_layer_wait_free(const struct ctr_layer *l, uint32_t wait_ms, char *err)
{
	uint64_t deadline = ha_mono_ms() + wait_ms;
	char who[sizeof(l->owner)];

	while (access(l->lock, F_OK) == 0 && !lock_ours(l, who, sizeof(who))) {
		if (ha_mono_ms() >= deadline) {
			return agent_err(err, -EBUSY, "layer %s is still mounted by %s", l->img,
					 who);
		}
		ha_sleep_ms(LAYER_POLL_MS);
	}
	return 0;
}

/* ---- loop devices --------------------------------------------------------- */

/* The loop device of this kernel whose backing file is @img ("/dev/loopN"
 * in @dev): 1 found, 0 none, -errno. */
static int loop_find(const char *img, char dev[32])
{
	struct stat st;
	struct dirent *e;
	DIR *d;
	int found = 0;

	if (stat(img, &st) < 0) {
		return errno == ENOENT ? 0 : -errno;
	}
	d = opendir("/sys/block");
	if (d == NULL) {
		return -errno;
	}
	while (!found && (e = readdir(d)) != NULL) {
		struct loop_info64 info;
		char path[300];
		int fd;

		if (strncmp(e->d_name, "loop", 4) != 0 || strlen(e->d_name) > 16) {
			continue;
		}
		snprintf(path, sizeof(path), "/sys/block/%s/loop/backing_file", e->d_name);
		if (access(path, F_OK) != 0) {
			continue; /* not attached */
		}
		snprintf(dev, 32, "/dev/%s", e->d_name);
		fd = open(dev, O_RDONLY | O_CLOEXEC);
		if (fd < 0) {
			continue;
		}
		if (ioctl(fd, LOOP_GET_STATUS64, &info) == 0 && info.lo_inode == st.st_ino &&
		    major(info.lo_device) == major(st.st_dev) &&
		    minor(info.lo_device) == minor(st.st_dev)) {
			found = 1;
		}
		close(fd);
	}
	closedir(d);
	return found;
}

/* Attaches @img to a free loop device with autoclear; the open device is
 * returned (the caller mounts it, then closes it). */
static int loop_attach(const char *img, char dev[32], char *err)
{
	int ctl, ffd, lfd = -1, rc = -EBUSY;

	ctl = open("/dev/loop-control", O_RDWR | O_CLOEXEC);
	if (ctl < 0) {
		return agent_err(err, -errno, "layer: /dev/loop-control: %s", strerror(errno));
	}
	ffd = open(img, O_RDWR | O_CLOEXEC);
	if (ffd < 0) {
		rc = agent_err(err, -errno, "layer: opening %s: %s", img, strerror(errno));
		close(ctl);
		return rc;
	}
	for (int tries = 0; tries < 16; tries++) {
		struct loop_config cfg;
		int n = ioctl(ctl, LOOP_CTL_GET_FREE);

		if (n < 0) {
			rc = agent_err(err, -errno, "layer: no free loop device: %s",
				       strerror(errno));
			break;
		}
		snprintf(dev, 32, "/dev/loop%d", n);
		lfd = open(dev, O_RDWR | O_CLOEXEC);
		if (lfd < 0) {
			rc = agent_err(err, -errno, "layer: opening %s: %s", dev, strerror(errno));
			break;
		}
		memset(&cfg, 0, sizeof(cfg));
		cfg.fd = (uint32_t)ffd;
		cfg.info.lo_flags = LO_FLAGS_AUTOCLEAR;
		snprintf((char *)cfg.info.lo_file_name, sizeof(cfg.info.lo_file_name), "%s", img);
		if (ioctl(lfd, LOOP_CONFIGURE, &cfg) == 0) {
			rc = lfd;
			break;
		}
		rc = agent_err(err, -errno, "layer: attaching %s to %s: %s", img, dev,
			       strerror(errno));
		close(lfd);
		lfd = -1;
		if (rc != -EBUSY) {
			break; /* else another attach took it first: the next one */
		}
	}
	close(ffd);
	close(ctl);
	return rc;
}

/* ---- creating the image ------------------------------------------------------ */

static int mkfs_run(const char *img, char *err)
{
	char mkfs[CTR_PATH], msg[160];
	int rc;

	if (ctr_tool_find("mkfs.ext4", mkfs, sizeof(mkfs)) < 0) {
		return agent_err(err, -ENOENT, "layer: mkfs.ext4 not found (package e2fsprogs)");
	}
	{
		/* -m 0: the whole size is the guest's. The file is new and
		 * sparse, so it reads as zeros: the journal need not be
		 * written, and mke2fs's discard (holes punched) marks the
		 * inode tables zeroed. A new 1 GiB image takes under 1 MiB. */
		char *argv[] = { mkfs, "-q", "-F", "-m", "0", "-L", "hactl-layer",
				 "-E", "lazy_journal_init=1", (char *)img, NULL };

		rc = ctr_tool_run(argv, -1, LAYER_MKFS_MS, msg, sizeof(msg));
	}
	if (rc != 0) {
		return agent_err(err, rc < 0 ? rc : -EIO, "layer: mkfs.ext4 %s: %s", img,
				 msg[0] ? msg : "failed");
	}
	return 0;
}

static int mount_ext4(const char *dev, const char *mnt, char *err)
{
	if (mount(dev, mnt, "ext4", MS_NOATIME, "errors=remount-ro") < 0) {
		return agent_err(err, -errno, "layer: mounting %s on %s: %s", dev, mnt,
				 strerror(errno));
	}
	/* shared, as the run directory below which it is (see
	 * driver_container.c): unmounts reach the copies */
	return 0;
}

static int attach_mount(const char *img, const char *mnt, char *err)
{
	char dev[32];
	int fd, rc;

	rc = loop_find(img, dev);
	if (rc < 0) {
		return agent_err(err, rc, "layer: looking for loop devices: %s", strerror(-rc));
	}
	if (rc == 1) {
		/* still attached here (a previous agent's mount namespace, a
		 * dying guest): the same super block */
		return mount_ext4(dev, mnt, err);
	}
	fd = loop_attach(img, dev, err);
	if (fd < 0) {
		return fd;
	}
	rc = mount_ext4(dev, mnt, err);
	close(fd); /* autoclear: detached at the last unmount */
	return rc;
}

static int umount_wait(const struct ctr_layer *l, const char *img, char *err)
{
	uint64_t deadline = ha_mono_ms() + LAYER_UMOUNT_MS;
	char dev[32];
	int rc;

	while (ctr_layer_mounted(l)) {
		if (umount2(l->mnt, 0) == 0) {
			continue;
		}
		if (errno != EBUSY || ha_mono_ms() >= deadline) {
			if (errno == EBUSY) {
				/* the file system itself still counts as held
				 * below: the loop device stays until it goes */
				umount2(l->mnt, MNT_DETACH);
				break;
			}
			return agent_err(err, -errno, "layer: unmounting %s: %s", l->mnt,
					 strerror(errno));
		}
		ha_sleep_ms(LAYER_POLL_MS);
	}
	/* Released only when no mount namespace holds it any more. */
	while ((rc = loop_find(img, dev)) == 1) {
		if (ha_mono_ms() >= deadline) {
			return agent_err(err, -EBUSY, "layer: %s is still in use on this host (%s)",
					 img, dev);
		}
		ha_sleep_ms(LAYER_POLL_MS);
	}
	return 0;
}

/* GNU tar with everything an overlay upper holds: owners, modes, hard
 * links, device nodes (whiteouts), xattrs of every namespace (overlay's
 * trusted.* opaque marks), ACLs, holes. */
static int tar_run(bool create, const char *archive, const char *dir, char *err)
{
	char tar[CTR_PATH], msg[160];
	int rc;

	if (ctr_tool_find("tar", tar, sizeof(tar)) < 0) {
		return agent_err(err, -ENOENT, "layer: tar not found in the system directories");
	}
	{
		char *argv[] = { tar, create ? "--create" : "--extract", "--file", (char *)archive,
				 "--directory", (char *)dir, "--numeric-owner", "--xattrs",
				 "--xattrs-include=*", "--acls", "--sparse",
				 create ? "--one-file-system" : "--same-permissions",
				 create ? "." : NULL, NULL };

		rc = ctr_tool_run(argv, -1, LAYER_COPY_MS, msg, sizeof(msg));
	}
	if (rc != 0) {
		return agent_err(err, rc < 0 ? rc : -EIO, "layer: tar %s %s: %s",
				 create ? "into" : "from", archive, msg[0] ? msg : "failed");
	}
	return 0;
}

/*
 * Makes data_dir/layer.img: a sparse file with an empty ext4, filled from
 * @src when given (a directory copied as the upper directory, or with
 * @tar an archive of one); renamed into place only when complete, so that
 * a crash leaves what was there before in charge.
 */
static int image_create(struct ctr_layer *l, const char *src, bool tar, char *err)
{
	char tmp[CTR_PATH + 8], dir[CTR_PATH];
	int fd, rc;

	snprintf(tmp, sizeof(tmp), "%s.tmp", l->img);
	unlink(tmp);
	fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0) {
		return agent_err(err, -errno, "layer: creating %s: %s", tmp, strerror(errno));
	}
	if (ftruncate(fd, (off_t)(l->kib * 1024)) < 0) {
		rc = agent_err(err, -errno, "layer: sizing %s: %s", tmp, strerror(errno));
		close(fd);
		unlink(tmp);
		return rc;
	}
	close(fd);
	rc = mkfs_run(tmp, err);
	if (rc == 0 && src) {
		struct ctr_layer t = *l;

		snprintf(t.img, sizeof(t.img), "%s", tmp);
		rc = attach_mount(tmp, l->mnt, err);
		if (rc == 0) {
			if (!tar) {
				rc = ctr_tree_copy(src, l->upper, LAYER_COPY_MS, err);
			} else if ((rc = ha_mkdir_p(l->upper, 0755)) < 0) {
				agent_err(err, rc, "layer: mkdir %s: %s", l->upper, strerror(-rc));
			} else {
				rc = tar_run(false, src, l->upper, err);
			}
			{
				int r = umount_wait(&t, tmp, rc == 0 ? err : NULL);

				rc = rc ? rc : r;
			}
		}
	}
	if (rc == 0 && (fd = open(tmp, O_RDONLY | O_CLOEXEC)) >= 0) {
		if (fsync(fd) < 0) {
			rc = agent_err(err, -errno, "layer: syncing %s: %s", tmp, strerror(errno));
		}
		close(fd);
	}
	if (rc == 0 && rename(tmp, l->img) < 0) {
		rc = agent_err(err, -errno, "layer: renaming %s: %s", tmp, strerror(errno));
	}
	if (rc < 0) {
		unlink(tmp);
		return rc;
	}
	snprintf(dir, sizeof(dir), "%s", l->img);
	*strrchr(dir, '/') = '\0';
	fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd >= 0) {
		fsync(fd);
		close(fd);
	}
	return 0;
}

/* ---- open / close ---------------------------------------------------------- */

int ctr_layer_open(struct ctr_layer *l, enum ctr_layer_take how, uint32_t wait_ms, char *err)
{
	const char *dirs[] = { l->upper, l->work };
	int rc;

	if ((rc = ha_mkdir_p(l->mnt, 0700)) < 0 || (rc = ha_mkdir_p(l->data_dir, 0755)) < 0) {
		return agent_err(err, rc, "layer: mkdir %s or %s: %s", l->mnt, l->data_dir,
				 strerror(-rc));
	}
	if (!ctr_layer_mounted(l)) {
		rc = ctr_layer_lock(l, how, wait_ms, err);
		if (rc == 0 && access(l->img, F_OK) != 0) {
			bool legacy = ctr_layer_legacy(l);

			rc = image_create(l, legacy ? l->old_upper : NULL, false, err);
			if (rc == 0 && legacy) {
				/* converted: the old directories are not used again */
				ctr_tree_remove(l->old_upper, LAYER_COPY_MS, NULL);
				ctr_tree_remove(l->old_work, LAYER_COPY_MS, NULL);
			}
		}
		if (rc == 0) {
			rc = attach_mount(l->img, l->mnt, err);
		}
		if (rc < 0) {
			lock_release(l);
			return rc;
		}
	} else if ((rc = lock_take(l, true, 0, err)) < 0) {
		return rc;
	}
	for (size_t i = 0; i < HA_ARRAY_SIZE(dirs); i++) {
		if ((rc = ha_mkdir_p(dirs[i], 0755)) < 0) {
			return agent_err(err, rc, "layer: mkdir %s: %s", dirs[i], strerror(-rc));
		}
	}
	return 0;
}

int ctr_layer_close(struct ctr_layer *l, char *err)
{
	char who[sizeof(l->owner)];
	int rc;

	/* Not ours: another host's (or, in one kernel, another host's loop
	 * device that we must not wait for). */
	if (access(l->img, F_OK) != 0 ||
	    (!ctr_layer_mounted(l) && !lock_ours(l, who, sizeof(who)))) {
		return 0;
	}
	rc = umount_wait(l, l->img, err);
	if (rc == 0) {
		rc = ctr_sync(l->img, false, err);
	}
	if (rc == 0) {
		lock_release(l);
	}
	return rc;
}

void ctr_layer_usage(const struct ctr_layer *l, uint64_t *used, uint64_t *size)
{
	struct statfs sf;

	*used = *size = 0;
	if (ctr_layer_mounted(l) && statfs(l->mnt, &sf) == 0) {
		*size = (uint64_t)sf.f_blocks * (uint64_t)sf.f_frsize;
		*used = (uint64_t)(sf.f_blocks - sf.f_bfree) * (uint64_t)sf.f_frsize;
	}
}

int ctr_layer_handover(struct ctr_layer *l, const char *note, char *err)
{
	char rec[sizeof(l->owner) * 2], who[sizeof(l->owner) * 2];
	int rc;

	if (!lock_ours(l, who, sizeof(who))) {
		return agent_err(err, -EPERM, "layer %s: not ours to hand over (%s)", l->img, who);
	}
	/* Unmounted and gone from this kernel, synced: what the guest wrote
	 * is on the shared storage before anyone else mounts it. */
	rc = umount_wait(l, l->img, err);
	if (rc == 0) {
		rc = ctr_sync(l->img, false, err);
	}
	if (rc < 0) {
		return rc;
	}
	snprintf(rec, sizeof(rec), "%s\nfrom %.*s, %s\n", CTR_LAYER_HANDOVER,
		 (int)strcspn(l->owner, "\n"), l->owner, note);
	rc = ha_file_write_atomic(l->lock, rec, strlen(rec));
	return rc < 0 ? agent_err(err, rc, "layer: writing %s: %s", l->lock, strerror(-rc)) : 0;
}

int ctr_layer_snapshot(const struct ctr_layer *l, const char *dst, char *err)
{
	/* The guest is frozen: its files do not change while tar reads them.
	 * An archive of the files, not a copy of the image: its size (and the
	 * snapshot's checksumming) goes with what the guest wrote, not with
	 * its quota, and it keeps overlay's xattrs on any shared storage. */
	int fd = open(dst, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);

	if (fd < 0) {
		return agent_err(err, -errno, "layer: creating %s: %s", dst, strerror(errno));
	}
	close(fd);
	return tar_run(true, dst, l->upper, err);
}

int ctr_layer_replace(struct ctr_layer *l, const char *src, bool tar, char *err)
{
	int rc = lock_take(l, true, 0, err);

	if (rc == 0) {
		rc = umount_wait(l, l->img, err);
	}
	if (rc == 0 && (rc = ha_mkdir_p(l->mnt, 0700)) < 0) {
		agent_err(err, rc, "layer: mkdir %s: %s", l->mnt, strerror(-rc));
	}
	if (rc == 0) {
		rc = image_create(l, src, tar, err);
	}
	return rc;
}

int ctr_layer_remove(struct ctr_layer *l, char *err)
{
	int rc = umount_wait(l, l->img, err);

	if (rc == 0 && unlink(l->img) < 0 && errno != ENOENT) {
		rc = agent_err(err, -errno, "layer: removing %s: %s", l->img, strerror(errno));
	}
	if (rc == 0) {
		lock_release(l);
		rmdir(l->mnt);
	}
	return rc;
}
