/*
 * driver_container_mig.c - live migration of a container between two hosts
 * that share the storage holding its writable layer (spec->data_dir).
 *
 * A migration is a transaction: the source stays runnable until the
 * cluster commits, and every failure before that resumes it.
 *
 *   source (migrate_send)                destination (migrate_recv)
 *                                        prepares the guest: cgroups
 *                                        (and the overlay for the old
 *                                        layout: rootfs + shared upper)
 *   [precopy: rounds of CRIU pre-dumps,
 *    each streamed while the guest runs]
 *   CRIU dump, leave_stopped; at its     |
 *   "pre-dump" notification: veth off    |
 *   the bridge; CRIU freezes, dumps and  |
 *   leaves the tree stopped; frozen then |
 *   stream the images  ----------------> writes them to run_dir/mig-in.*
 *   image layer: kill the stopped tree
 *   (its state is in the images, kept
 *   in run_dir/mig-out.*), unmount,
 *   sync, hand the lock over
 *   END  ------------------------------> image layer: claims the lock,
 *                                        mounts the layer;
 *                                        CRIU restore, leave_stopped,
 *                                        frozen then; veth off the bridge
 *   the guest stays held  <------- "ok"  the guest stays frozen
 *
 *   migrate_finish(commit):  kill + clean     veth on the bridge, thaw,
 *                            (the layer is    SIGCONT, gratuitous ARP,
 *                            not ours)        images removed
 *   migrate_finish(abort):   image layer:     kill + clean: unmounts,
 *                            takes the lock   releases the lock
 *                            back (waits for
 *                            the destination
 *                            to let it go),
 *                            mounts, CRIU
 *                            restore from its
 *                            images; then veth
 *                            back, thaw, SIGCONT,
 *                            images removed
 *
 * The writable layer is an ext4 image on the shared storage, which one
 * host at a time may mount (driver_container_layer.c). A stopped tree
 * still holds its files, so the source cannot unmount the layer under it:
 * once the final dump is complete (nothing can write the layer any more),
 * the source kills the stopped tree, which the images on its own disk
 * replace, unmounts the layer, syncs it and hands the lock over
 * ("handover" record). The destination claims that lock, mounts the
 * layer and restores before it answers "ok", so the cluster commits only
 * a guest that is restored and ready. An abort before the commit (a
 * failed restore, a lost destination, the cluster's decision) kills the
 * destination's copy, which unmounts and releases the lock; the source
 * takes it back and restores from its own images: the guest goes on at
 * the source with its memory and its data. The lock is taken back only
 * when handed over, free, or ours: never while the destination holds it,
 * so no path mounts the image on both hosts. A guest still in the old
 * layout (upper directory on the shared storage, docs/containers.md)
 * keeps its stopped tree at the source: both hosts mount the directory.
 *
 * No tree is frozen while CRIU holds it (see src_dump_notify()).
 * The writable layer is never copied and never removed here. Both copies
 * keep their veth off the bridge while frozen: their kernels would
 * otherwise answer ARP and acknowledge TCP segments for the frozen guest,
 * and data acknowledged by the copy that loses would be lost.
 *
 * The stream (little-endian; docs/containers.md has the full format): a
 * sequence of records, each a 24-byte header (magic "HCMG", version, type,
 * round, name length, data length) followed by the name and the data:
 *   MANIFEST  key=value lines: format, name, mode, round, parent, files,
 *             bytes, and one "file=SIZE NAME" line per file of the round
 *   FILE      one image file of the round, in the manifest's order
 *   END       after the final round (round 0)
 * Pre-copy rounds are numbered 1..N (directories preN, each with a
 * "parent" link to the previous); the final dump is round 0 ("images").
 * The destination answers one line: "ok" or "error ERRNO TEXT".
 *
 * Nothing read from the stream is trusted: sizes are bounded before
 * anything is allocated or written, names are plain ([A-Za-z0-9_.-], no
 * leading '.'), every file is listed in its round's manifest with its
 * size, and files are created exclusively inside a fresh directory.
 */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <fcntl.h>
#include <inttypes.h>
#include <net/if.h>
#include <net/if_arp.h>
#include <arpa/inet.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <linux/sockios.h>
#include <pthread.h>
#include <qb/qblog.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#include "criu_rpc.h"
#include "driver_container.h"
#include "util.h"

#define MIG_FORMAT 1               /* of the manifest */
#define MIG_FILES_MAX 4096         /* files of one round */
#define MIG_MANIFEST_MAX (MIG_FILES_MAX * (CTR_MIG_NAME_MAX + 24) + 1024)
#define MIG_PRE_ROUNDS 8           /* pre-copy rounds made */
#define MIG_ACK_MAX 256            /* the destination's answer line */
#define MIG_CHUNK (1u << 20)
#define MIG_CRIU_MS 120000         /* one CRIU dump or restore */
#define MIG_ACK_MS (MIG_CRIU_MS + 30000) /* restore on the destination */
#define MIG_FREEZE_MS 10000
#define MIG_LAYER_CLAIM_MS 30000   /* the destination: the handed-over lock */
#define MIG_LAYER_BACK_MS 60000    /* the source, at the abort: the lock back */
#define MIG_KILL_MS 5000
#define MIG_RM_MS 300000
#define MIG_DOWNTIME_MS 300        /* pre-copy target without max_downtime_ms */
#define MIG_NOSIZE_MAX (256ULL << 30) /* images of a guest without a memory limit */
#define MIG_SPACE_SLACK (64ULL << 20)

/* One file of a round: its name and size. */
struct mig_file {
	char name[CTR_MIG_NAME_MAX + 1];
	uint64_t size;
};

static void err_clear(char *err)
{
	if (err != NULL) {
		err[0] = '\0';
	}
}

/* A name we create or send: plain, no path, no leading dot. */
static bool mig_name_ok(const char *s, size_t n)
{
	if (n == 0 || n > CTR_MIG_NAME_MAX || s[0] == '.') {
		return false;
	}
	for (size_t i = 0; i < n; i++) {
		if (!isalnum((unsigned char)s[i]) && s[i] != '_' && s[i] != '-' && s[i] != '.') {
			return false;
		}
	}
	return true;
}

static void round_dir(uint32_t round, char out[16])
{
	if (round == 0) {
		snprintf(out, 16, "images");
	} else {
		snprintf(out, 16, "pre%u", round);
	}
}

/* ---- source: what is sent -------------------------------------------------- */

struct mig_round {
	struct mig_file *files;
	unsigned n;
	uint64_t bytes;
};

static void round_free(struct mig_round *r)
{
	free(r->files);
	memset(r, 0, sizeof(*r));
}

static int file_cmp(const void *a, const void *b)
{
	return strcmp(((const struct mig_file *)a)->name, ((const struct mig_file *)b)->name);
}

/* The image files CRIU wrote into @dir: regular files but its logs. */
static int round_list(const char *dir, struct mig_round *r, char *err)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	int rc = 0;

	memset(r, 0, sizeof(*r));
	if (d == NULL) {
		return agent_err(err, -errno, "migrate: opening %s: %s", dir, strerror(errno));
	}
	r->files = calloc(MIG_FILES_MAX, sizeof(*r->files));
	if (r->files == NULL) {
		closedir(d);
		return agent_err(err, -ENOMEM, "out of memory");
	}
	while (rc == 0 && (de = readdir(d)) != NULL) {
		size_t len = strlen(de->d_name);
		struct stat st;

		if (de->d_name[0] == '.' || (len > 4 && strcmp(de->d_name + len - 4, ".log") == 0)) {
			continue;
		}
		if (fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
			rc = agent_err(err, -errno, "migrate: %s/%s: %s", dir, de->d_name,
				       strerror(errno));
		} else if (!S_ISREG(st.st_mode)) {
			continue; /* "parent" links: the manifest names the parent */
		} else if (!mig_name_ok(de->d_name, len)) {
			rc = agent_err(err, -EINVAL, "migrate: image file name '%s' cannot be sent",
				       de->d_name);
		} else if (r->n >= MIG_FILES_MAX) {
			rc = agent_err(err, -E2BIG, "migrate: more than %d files in %s",
				       MIG_FILES_MAX, dir);
		} else {
			memcpy(r->files[r->n].name, de->d_name, len + 1);
			r->files[r->n].size = (uint64_t)st.st_size;
			r->bytes += (uint64_t)st.st_size;
			r->n++;
		}
	}
	closedir(d);
	if (rc < 0) {
		round_free(r);
		return rc;
	}
	qsort(r->files, r->n, sizeof(*r->files), file_cmp);
	return 0;
}

static int send_file(struct ctr_mig_io *io, const char *dir, uint32_t round,
		     const struct mig_file *f, char *buf)
{
	struct ctr_mig_rec rec = { .type = CTR_MIG_REC_FILE, .round = round,
			       .name_len = (uint32_t)strlen(f->name), .data_len = f->size };
	char path[CTR_PATH];
	uint64_t left = f->size;
	int fd;

	snprintf(path, sizeof(path), "%s/%s", dir, f->name);
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0) {
		return ctr_mig_io_fail(io, -errno, "opening %s: %s", path, strerror(errno));
	}
	ctr_mig_rec_write(io, &rec, f->name);
	while (io->rc == 0 && left > 0) {
		size_t want = left > MIG_CHUNK ? MIG_CHUNK : (size_t)left;
		ssize_t n = read(fd, buf, want);

		if (n < 0 && errno == EINTR) {
			continue;
		}
		if (n <= 0) {
			ctr_mig_io_fail(io, n < 0 ? -errno : -EIO, "reading %s: %s", path,
					n < 0 ? strerror(errno) : "shorter than listed");
			break;
		}
		ctr_mig_io_write(io, buf, (size_t)n);
		left -= (uint64_t)n;
	}
	close(fd);
	return io->rc;
}

/* One round: its manifest, then its files. @parent 0 = none. */
static int send_round(struct ctr_mig_io *io, const char *name, const char *mode, const char *dir,
		      uint32_t round, uint32_t parent, const struct mig_round *r, char *buf)
{
	struct ctr_mig_rec rec = { .type = CTR_MIG_REC_MANIFEST, .round = round };
	size_t cap = 1024 + (size_t)r->n * (CTR_MIG_NAME_MAX + 24), len;
	char *man = malloc(cap);
	int n;

	if (man == NULL) {
		return ctr_mig_io_fail(io, -ENOMEM, "out of memory");
	}
	n = snprintf(man, cap, "format=%d\nname=%s\nmode=%s\nround=%u\nfiles=%u\nbytes=%" PRIu64
		     "\n", MIG_FORMAT, name, mode, round, r->n, r->bytes);
	len = (size_t)n;
	if (parent) {
		len += (size_t)snprintf(man + len, cap - len, "parent=pre%u\n", parent);
	}
	for (unsigned i = 0; i < r->n; i++) {
		len += (size_t)snprintf(man + len, cap - len, "file=%" PRIu64 " %s\n",
					r->files[i].size, r->files[i].name);
	}
	rec.data_len = len;
	ctr_mig_rec_write(io, &rec, NULL);
	ctr_mig_io_write(io, man, len);
	free(man);
	for (unsigned i = 0; i < r->n && io->rc == 0; i++) {
		send_file(io, dir, round, &r->files[i], buf);
	}
	return io->rc;
}

/* The destination's one-line answer, read byte by byte so that nothing
 * after it is consumed (the fd is the agent's). */
static int ack_read(struct ctr_mig_io *io, uint32_t ms, char *line, size_t cap)
{
	size_t n = 0;
	uint64_t deadline = ha_mono_ms() + ms;

	while (n + 1 < cap) {
		char c;
		int64_t left = (int64_t)deadline - (int64_t)ha_mono_ms();

		if (left <= 0) {
			return -ETIMEDOUT;
		}
		if (ctr_mig_io_read(io, &c, 1, (uint32_t)left) < 0) {
			return io->rc;
		}
		if (c == '\n') {
			line[n] = '\0';
			return 0;
		}
		line[n++] = isprint((unsigned char)c) ? c : '?';
	}
	return -EMSGSIZE;
}

/* "ok" -> 0; "error ERRNO TEXT" -> -ERRNO with TEXT in @err. */
static int ack_parse(const char *line, const char *name, char *err)
{
	char *end;
	long e;

	if (strcmp(line, "ok") == 0) {
		return 0;
	}
	if (strncmp(line, "error ", 6) == 0) {
		e = strtol(line + 6, &end, 10);
		if (e <= 0 || e > 4095) {
			e = EIO;
		}
		while (*end == ' ') {
			end++;
		}
		return agent_err(err, -(int)e, "migrate %s: destination: %s", name, end);
	}
	return agent_err(err, -EPROTO, "migrate %s: destination answered '%.64s'", name, line);
}

/* ---- CRIU ---------------------------------------------------------------------- */

/* A pre-dump (memory only, the guest keeps running) or the final dump,
 * on top of @parent (relative to @images, NULL = none); @notify (may be
 * NULL) gets CRIU's notifications. */
static int mig_dump(const struct ctr_ckpt_target *t, const char *images, bool pre,
		    const char *parent, agent_criu_notify_fn notify, void *opaque, char *err)
{
	struct ctr_criu_external x;
	struct agent_criu_dump_opts o;

	ctr_criu_dump_base(t, &x, &o);
	o.c = (struct agent_criu_common_opts){ .images_dir = images,
					       .log_file = pre ? "pre-dump.log" : "dump.log",
					       .timeout_ms = MIG_CRIU_MS, .notify = notify,
					       .notify_opaque = opaque };
	o.pre_dump = pre;
	/* The final dump leaves the tree stopped (SIGSTOP), not frozen: see
	 * mig_restore() for what freezing traced tasks does. Killed at the
	 * layer's handover or at the commit, continued on an abort. */
	o.leave_stopped = !pre;
	o.track_mem = pre || parent != NULL;
	o.parent_img = parent;
	/* The guest's veth is off the bridge from the "pre-dump" notification
	 * on (src_switch()): nothing reaches its sockets. CRIU's own lock
	 * would outlive a dump that leaves the tree stopped, and an aborted
	 * migration's guest would run on with its network shut. */
	o.network_lock = AGENT_CRIU_NETLOCK_SKIP;
	return agent_criu_dump(ctr_criu_bin(t->criu_path), &o, err, AGENT_ERR_LEN);
}

/*
 * ctr_criu_restore() with @stopped: the tree does not run, CRIU leaves it
 * stopped (SIGSTOP) and it is frozen once CRIU is gone; the host side of
 * the veth stays off the bridge. migrate_finish() thaws it, continues it
 * and puts the veth on the bridge at the commit.
 *
 * Not frozen from CRIU's "pre-resume" notification: the tasks are still
 * ptrace-stopped there, and a task frozen while traced and detached
 * while frozen goes back to the traced state at the thaw, with no tracer
 * left to wake it (seen on 6.x kernels with the v1 freezer): the guest
 * hangs for good and its next dump hangs with it.
 */
static int mig_restore(const struct ctr_ckpt_target *t, const char *images, pid_t *pid,
		       char *err)
{
	int rc;

	rc = ctr_criu_restore(t, images, MIG_CRIU_MS, true, pid, err);
	if (rc == 0) {
		rc = host_cgroup_freeze(t->cg, true, MIG_FREEZE_MS, err);
	}
	return rc;
}

/* ---- helpers of both sides ----------------------------------------------------- */

/* Removes what an interrupted migration left in the run directory:
 * run_dir/<prefix>* (ours only: one operation per guest at a time). */
static void stale_remove(const char *run_dir, const char *prefix)
{
	DIR *d = opendir(run_dir);
	struct dirent *de;
	char path[CTR_PATH];
	size_t pl = strlen(prefix);

	if (d == NULL) {
		return;
	}
	while ((de = readdir(d)) != NULL) {
		if (strncmp(de->d_name, prefix, pl) == 0 &&
		    snprintf(path, sizeof(path), "%s/%s", run_dir, de->d_name) < (int)sizeof(path)) {
			ctr_tree_remove(path, MIG_RM_MS, NULL);
		}
	}
	closedir(d);
}

static int tmp_make(const char *run_dir, const char *prefix, char out[CTR_PATH], char *err)
{
	int n, rc = ha_mkdir_p(run_dir, 0700);

	if (rc < 0) {
		return agent_err(err, rc, "migrate: mkdir %s: %s", run_dir, strerror(-rc));
	}
	stale_remove(run_dir, prefix);
	n = snprintf(out, CTR_PATH, "%s/%sXXXXXX", run_dir, prefix);
	if (n < 0 || n >= CTR_PATH) {
		return agent_err(err, -ENAMETOOLONG, "migrate: %s: path too long", run_dir);
	}
	if (mkdtemp(out) == NULL) {
		return agent_err(err, -errno, "migrate: mkdtemp in %s: %s", run_dir, strerror(errno));
	}
	return 0;
}

/* Kills whatever runs in the guest's cgroups, frozen or not (SIGKILL
 * lands while frozen, so nothing of it runs again), and waits until its
 * init is gone. */
static int guest_kill(struct agent_guest *g, char *err)
{
	struct ctr_ckpt_target t;
	uint64_t deadline = ha_mono_ms() + MIG_KILL_MS;
	bool alive = ctr_guest_target(g, &t) == 0;
	int rc = host_cgroup_kill(t.cg, MIG_KILL_MS, err);

	while (rc == 0 && alive && ctr_guest_target(g, &t) == 0) {
		if (ha_mono_ms() >= deadline) {
			return agent_err(err, -ETIMEDOUT, "%s: init %d survived SIGKILL",
					 t.spec->name, (int)t.pid);
		}
		ha_sleep_ms(10);
	}
	return rc;
}

/* ---- source ------------------------------------------------------------------- */

/* Which mode: 0 and *pre set, or -EOPNOTSUPP / -EINVAL. */
static int mode_pick(const struct ctr_ckpt_target *t, const char *mode, bool *pre, char *err)
{
	bool track = false;

	*pre = false;
	if (mode && strcmp(mode, "postcopy") == 0) {
		return agent_err(err, -EOPNOTSUPP, "migrate %s: postcopy is not offered for "
				 "containers: CRIU's lazy pages end the source's tasks, so an "
				 "aborted migration could not resume it; use stopcopy",
				 t->spec->name);
	}
	if (mode && strcmp(mode, "precopy") != 0 && strcmp(mode, "stopcopy") != 0) {
		return agent_err(err, -EINVAL, "migrate %s: unknown mode '%s' (precopy, stopcopy)",
				 t->spec->name, mode);
	}
	if (mode && strcmp(mode, "stopcopy") == 0) {
		return 0;
	}
	if (agent_criu_check_features(ctr_criu_bin(t->criu_path), &track, NULL, NULL, 0) < 0) {
		track = false;
	}
	if (!track && mode) {
		return agent_err(err, -EOPNOTSUPP, "migrate %s: precopy needs memory dirty "
				 "tracking (soft-dirty), which CRIU does not find on this kernel; "
				 "use stopcopy", t->spec->name);
	}
	*pre = track;
	return 0;
}

/*
 * Lets a tree that CRIU left stopped and the agent froze run again:
 * thawed first, so that SIGCONT reaches tasks that can run.
 */
static int held_resume(const struct host_cgroup *cg, char *err)
{
	int rc = host_cgroup_freeze(cg, false, 0, err);

	return rc < 0 ? rc : host_cgroup_signal(cg, SIGCONT, err);
}

struct mig_src {
	struct agent_guest *g;
	struct ctr_ckpt_target t;
	uint64_t mig_id;
	struct ctr_mig_io io;
	struct agent_mig_progress *p;
	const char *mode;
	char tmp[CTR_PATH];
	char *buf;
	uint32_t rounds;           /* pre-copy rounds sent */
	uint32_t max_downtime_ms;
	/* the switch-over: set by src_switch() and after the dump */
	bool switched;             /* the "pre-dump" notification came */
	bool stopped;              /* CRIU left the tree stopped (SIGSTOP) */
	bool detached;
	bool handed;               /* the tree is gone, the layer handed over */
	uint64_t t_freeze;         /* ha_mono_ms(), 0 = not yet */
	int switch_rc;
	char switch_err[AGENT_ERR_LEN];
};

/* Downtime from here: the guest goes off the network before CRIU looks
 * at its sockets; CRIU then freezes it through its freezer cgroup, seizes
 * it, dumps it and leaves it stopped. */
static int src_switch(struct mig_src *s)
{
	int rc = 0;

	s->switched = true;
	s->t_freeze = ha_mono_ms();
	if (s->t.spec->ip) {
		rc = host_net_port_detach(s->t.veth, s->t.spec->bridge, s->switch_err);
		s->detached = rc == 0;
	}
	s->switch_rc = rc;
	return rc;
}

/*
 * The final dump's "pre-dump" notification comes once CRIU has started
 * (exec, its kernel checks, the request) and before it looks at the tree:
 * the switch-over starts there, which keeps CRIU's start-up out of the
 * downtime.
 *
 * The guest is not frozen here, nor anywhere while CRIU holds it. CRIU
 * keeps the freezer state it found and writes it back before it detaches:
 * a cgroup frozen before the dump is frozen again while its tasks are
 * still ptrace-stopped, and a task frozen while traced and detached while
 * frozen goes back to the traced state at the thaw with no tracer left to
 * wake it (v1 freezer, 6.x kernels): the guest hangs in `D` state, its
 * kill hangs, and with it the agent's next operations. CRIU leaves the
 * tree stopped instead (leave_stopped), and it is frozen once CRIU is gone.
 */
static int src_dump_notify(const struct agent_criu_notify *n, void *opaque)
{
	struct mig_src *s = opaque;

	if (strcmp(n->script, "pre-dump") != 0 || s->switched) {
		return 0;
	}
	return src_switch(s);
}

/*
 * Pre-copy rounds while the guest runs: each a CRIU pre-dump (the pages
 * dirtied since the previous one, found by soft-dirty tracking) streamed at
 * once. Stops when a round took less than the downtime target (a final
 * round like it would fit), when rounds stop shrinking by a tenth (the
 * guest dirties memory as fast as it goes out), or after MIG_PRE_ROUNDS.
 */
static int precopy(struct mig_src *s, char *err)
{
	uint64_t prev = 0;

	for (uint32_t r = 1; r <= MIG_PRE_ROUNDS; r++) {
		char dir[CTR_PATH], parent[32], name[16];
		struct mig_round mr;
		uint64_t t0 = ha_mono_ms(), sent0 = s->io.bytes, ms, bytes;
		int rc;

		round_dir(r, name);
		snprintf(dir, sizeof(dir), "%s/%s", s->tmp, name);
		snprintf(parent, sizeof(parent), "../pre%u", r - 1);
		if (mkdir(dir, 0700) < 0) {
			return agent_err(err, -errno, "migrate: mkdir %s: %s", dir, strerror(errno));
		}
		rc = mig_dump(&s->t, dir, true, r > 1 ? parent : NULL, NULL, NULL, err);
		if (rc == 0) {
			rc = round_list(dir, &mr, err);
		}
		if (rc < 0) {
			return rc;
		}
		s->p->total_bytes += mr.bytes;
		s->p->remaining_bytes += mr.bytes;
		rc = send_round(&s->io, s->t.spec->name, s->mode, dir, r, r > 1 ? r - 1 : 0, &mr,
				s->buf);
		round_free(&mr);
		if (rc < 0) {
			return agent_err(err, rc, "migrate %s: %s", s->t.spec->name, s->io.msg);
		}
		s->rounds = r;
		s->p->rounds = r;
		ms = ha_mono_ms() - t0;
		ms = ms ? ms : 1;
		bytes = s->io.bytes - sent0;
		if (r > 1) {
			/* what the guest dirtied while the previous round went out */
			s->p->dirty_rate_bps = bytes * 1000 / ms;
		}
		s->p->expected_downtime_ms = (uint32_t)(ms > UINT32_MAX ? UINT32_MAX : ms);
		if (ms <= s->max_downtime_ms || (r > 1 && bytes * 10 >= prev * 9)) {
			break;
		}
		prev = bytes;
	}
	return 0;
}

/*
 * What the frozen guest wrote to its writable layer reaches the shared
 * storage before the destination opens it: a network or cluster file
 * system may hold it in this host's page cache. A local file system
 * (ext4, xfs, btrfs, tmpfs) can only be shared with this same kernel,
 * whose page cache is coherent: no sync there (it would also flush the
 * images just written, inside the downtime).
 */
static int data_sync(const char *data_dir, char *err)
{
	static const unsigned long local[] = { 0xEF53, 0x58465342, 0x9123683E, 0x01021994 };
	int fd = open(data_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	struct statfs sf;
	int rc = 0;

	if (fd >= 0 && fstatfs(fd, &sf) == 0) {
		for (size_t i = 0; i < HA_ARRAY_SIZE(local); i++) {
			if ((unsigned long)sf.f_type == local[i]) {
				close(fd);
				return 0;
			}
		}
	}
	if (fd < 0 || syncfs(fd) < 0) {
		rc = agent_err(err, -errno, "migrate: syncing %s: %s", data_dir, strerror(errno));
	}
	if (fd >= 0) {
		close(fd);
	}
	return rc;
}

static int src_final(struct mig_src *s, char *err)
{
	char dir[CTR_PATH], parent[32];
	struct ctr_mig_rec end = { .type = CTR_MIG_REC_END };
	struct mig_round mr;
	int rc;

	snprintf(dir, sizeof(dir), "%s/images", s->tmp);
	snprintf(parent, sizeof(parent), "../pre%u", s->rounds);
	if (mkdir(dir, 0700) < 0) {
		return agent_err(err, -errno, "migrate: mkdir %s: %s", dir, strerror(errno));
	}
	rc = mig_dump(&s->t, dir, false, s->rounds ? parent : NULL, src_dump_notify, s, err);
	s->stopped = rc == 0;
	if (s->switch_rc < 0) {
		return agent_err(err, s->switch_rc, "migrate %s: %s", s->t.spec->name,
				 s->switch_err);
	}
	if (rc == 0 && !s->switched) {
		/* Its sockets were dumped while it was on the network. */
		return agent_err(err, -EIO, "migrate %s: the guest was on the network during the "
				 "dump (no pre-dump notification from CRIU)", s->t.spec->name);
	}
	if (rc == 0) {
		/* Stopped, no longer traced: safe to freeze. Frozen, it stays
		 * put whoever sends it SIGCONT. */
		rc = host_cgroup_freeze(s->t.cg, true, MIG_FREEZE_MS, err);
	}
	if (rc == 0 && !s->t.layer_image) {
		/* (an image is synced when the source unmounts it) */
		rc = data_sync(s->t.spec->data_dir, err);
	}
	if (rc == 0) {
		rc = round_list(dir, &mr, err);
	}
	if (rc < 0) {
		return rc;
	}
	s->p->total_bytes += mr.bytes;
	s->p->remaining_bytes += mr.bytes;
	rc = send_round(&s->io, s->t.spec->name, s->mode, dir, 0, s->rounds, &mr, s->buf);
	round_free(&mr);
	if (rc < 0) {
		return agent_err(err, rc, "migrate %s: %s", s->t.spec->name, s->io.msg);
	}
	if (s->t.layer_image) {
		/* The destination has the complete state, the images stay
		 * here: the stopped tree gives the layer up (see the top). */
		char note[64];

		snprintf(note, sizeof(note), "migration %" PRIu64, s->mig_id);
		s->handed = true;
		rc = ctr_guest_handover(s->g, note, err);
		if (rc < 0) {
			return rc;
		}
	}
	rc = ctr_mig_rec_write(&s->io, &end, NULL);
	return rc < 0 ? agent_err(err, rc, "migrate %s: %s", s->t.spec->name, s->io.msg) : 0;
}

/* The images of this host's side of a migration (run_dir/PREFIX*\/images)
 * into @out; -ENOENT when there are none. */
static int images_find(const char *run_dir, const char *prefix, char out[CTR_PATH])
{
	struct dirent *de;
	DIR *d = opendir(run_dir);

	out[0] = '\0';
	if (d == NULL) {
		return -errno;
	}
	while ((de = readdir(d)) != NULL) {
		if (strncmp(de->d_name, prefix, strlen(prefix)) == 0) {
			snprintf(out, CTR_PATH, "%s/%.64s/images", run_dir, de->d_name);
		}
	}
	closedir(d);
	return out[0] && access(out, F_OK) == 0 ? 0 : -ENOENT;
}

/*
 * The source of an image layer after an abort: takes the lock back (a
 * lock the destination holds is waited for up to @wait_ms, never taken),
 * mounts the layer and restores the tree from its own final dump, stopped
 * and frozen as the dump left it: the caller resumes it. The guest stays
 * pending (PAUSED, its images kept) when this fails.
 */
static int src_restore(struct agent_guest *g, uint32_t wait_ms, char *err)
{
	struct ctr_ckpt_target t;
	char images[CTR_PATH], e2[AGENT_ERR_LEN];
	pid_t pid = 0;
	int rc;

	ctr_guest_target(g, &t);
	if (images_find(t.spec->run_dir, "mig-out.", images) < 0) {
		return agent_err(err, -ENOENT, "migrate %s: the source's images are gone; the guest "
				 "cannot be resumed here", t.spec->name);
	}
	rc = ctr_guest_mount(g, CTR_LAYER_RECLAIM, wait_ms, err);
	if (rc == 0) {
		rc = mig_restore(&t, images, &pid, err);
		if (rc < 0) {
			char log[CTR_PATH + 16], keep[CTR_PATH + 32];

			snprintf(log, sizeof(log), "%s/restore.log", images);
			snprintf(keep, sizeof(keep), "%s/mig-restore.log", t.spec->run_dir);
			rename(log, keep);
		}
	}
	if (rc == 0) {
		rc = ctr_guest_adopt(g, pid, err);
	}
	if (rc == 0 && t.spec->ip) {
		rc = host_net_link_up(t.veth, err);
	}
	if (rc < 0) {
		/* back to pending: no process, the layer handed over again */
		char note[] = "the source's restore after an abort failed";

		guest_kill(g, e2);
		ctr_guest_handover(g, note, e2);
	}
	return rc;
}

int ctr_mig_send(struct agent_guest *g, int fd, const struct agent_mig_opts *o,
		 struct agent_mig_progress *p, char *err)
{
	struct agent_mig_progress dummy;
	struct mig_src s = { .rounds = 0 };
	char line[MIG_ACK_MAX], e2[AGENT_ERR_LEN];
	uint64_t t0 = ha_mono_ms();
	bool pre = false;
	int rc;

	err_clear(err);
	s.p = p ? p : &dummy;
	memset(s.p, 0, sizeof(*s.p));
	s.g = g;
	s.mig_id = o ? o->id : 0;
	if (ctr_guest_target(g, &s.t) < 0) {
		return agent_err(err, -ESRCH, "migrate %s: not running", s.t.spec->name);
	}
	if (host_cgroup_frozen(s.t.cg)) {
		/* CRIU must not find it frozen (see src_dump_notify()), and
		 * what a stopped-then-thawed paused guest does under CRIU is
		 * not what an operator's pause promises. The cluster only
		 * moves running guests anyway. */
		return agent_err(err, -EBUSY, "migrate %s: the guest is paused; resume it first",
				 s.t.spec->name);
	}
	rc = mode_pick(&s.t, o ? o->mode : NULL, &pre, err);
	if (rc < 0) {
		return rc;
	}
	s.mode = pre ? "precopy" : "stopcopy";
	s.max_downtime_ms = o && o->max_downtime_ms ? o->max_downtime_ms : MIG_DOWNTIME_MS;
	s.buf = malloc(MIG_CHUNK);
	if (s.buf == NULL) {
		return agent_err(err, -ENOMEM, "out of memory");
	}
	rc = tmp_make(s.t.spec->run_dir, "mig-out.", s.tmp, err);
	if (rc < 0) {
		free(s.buf);
		return rc;
	}
	ctr_mig_io_init(&s.io, fd, o ? o->bandwidth_bps : 0, s.p);
	if (pre) {
		rc = precopy(&s, err);
	}
	if (rc == 0) {
		/* cuts the network (src_switch()) once CRIU has started */
		rc = src_final(&s, err);
	}
	if (rc == 0) {
		rc = ack_read(&s.io, MIG_ACK_MS, line, sizeof(line));
		if (rc < 0) {
			rc = agent_err(err, rc, "migrate %s: no answer from the destination: %s",
				       s.t.spec->name, s.io.msg[0] ? s.io.msg : strerror(-rc));
		} else {
			rc = ack_parse(line, s.t.spec->name, err);
		}
	} else if (s.io.rc < 0 && s.io.rc != -ETIMEDOUT) {
		/* A destination that gave up says why before it closes. */
		struct ctr_mig_io peek;

		ctr_mig_io_init(&peek, fd, 0, NULL);
		if (ack_read(&peek, 1000, line, sizeof(line)) == 0 &&
		    strncmp(line, "error ", 6) == 0) {
			rc = ack_parse(line, s.t.spec->name, err);
		}
	}
	s.p->downtime_ms = s.t_freeze ? (uint32_t)(ha_mono_ms() - s.t_freeze) : 0;
	s.p->total_ms = ha_mono_ms() - t0;
	s.p->remaining_bytes = 0;
	if (rc < 0 && s.handed && ctr_guest_pending(g)) {
		/* The tree is gone, its state in s.tmp/images: restored here
		 * once the layer is back. A destination that answered an
		 * error released it; one that holds it (it failed after
		 * restoring, or cannot be heard) lets it go at the cluster's
		 * abort, which comes only after this returns: no wait here,
		 * migrate_finish(abort) waits. */
		if (src_restore(g, 0, e2) == 0) {
			s.stopped = true;
		} else if (err) {
			size_t n = strlen(err);

			snprintf(err + n, AGENT_ERR_LEN - n, "; the source resumes at the abort "
				 "(%s)", e2);
		}
		if (ctr_guest_pending(g)) {
			s.stopped = false;
			s.detached = false;
		}
	}
	if (rc < 0) {
		/* Everything before the commit is undone: the guest runs on. */
		if (s.detached) {
			host_net_port_attach(s.t.veth, s.t.spec->bridge, e2);
		}
		if (s.stopped) {
			/* stopped (and maybe frozen) by a dump that got
			 * through, or restored from it: it runs on */
			held_resume(s.t.cg, e2);
		}
		if (!ctr_guest_pending(g)) {
			ctr_tree_remove(s.tmp, MIG_RM_MS, NULL);
		}
	}
	/* Else the images go in migrate_finish(): removing them here would
	 * delay the result, and so the decision, while the guest is frozen. */
	free(s.buf);
	return rc;
}

/* ---- destination ---------------------------------------------------------------- */

struct mig_dst {
	struct ctr_mig_io io;
	const struct agent_guest_spec *spec;
	int dirfd;                      /* the temporary directory */
	uint64_t round_max;             /* bytes one round may hold */
	bool done[CTR_MIG_ROUNDS_MAX + 1];
	char *buf;
	char *man;                      /* MIG_MANIFEST_MAX + 1 */
	struct mig_file *files;         /* MIG_FILES_MAX */
};

/* Parses and checks one round's manifest; fills dst->files. */
static int manifest_parse(struct mig_dst *x, uint32_t round, size_t len, unsigned *n_files,
			  uint32_t *parent)
{
	char *line, *save = NULL;
	uint64_t files = UINT64_MAX, bytes = UINT64_MAX, sum = 0, v;
	bool format = false, name = false;
	unsigned n = 0;

	*parent = 0;
	if (memchr(x->man, '\0', len) != NULL) {
		return ctr_mig_io_fail(&x->io, -EPROTO, "manifest of round %u: NUL byte", round);
	}
	x->man[len] = '\0';
	for (line = strtok_r(x->man, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		if (strncmp(line, "format=", 7) == 0) {
			format = ha_parse_u64(line + 7, MIG_FORMAT, MIG_FORMAT, &v) == 0;
		} else if (strncmp(line, "name=", 5) == 0) {
			name = strcmp(line + 5, x->spec->name) == 0;
		} else if (strncmp(line, "round=", 6) == 0) {
			if (ha_parse_u64(line + 6, round, round, &v) < 0) {
				return ctr_mig_io_fail(&x->io, -EPROTO, "manifest: round %s in a "
						       "record of round %u", line + 6, round);
			}
		} else if (strncmp(line, "files=", 6) == 0) {
			if (ha_parse_u64(line + 6, 0, MIG_FILES_MAX, &files) < 0) {
				return ctr_mig_io_fail(&x->io, -E2BIG, "manifest: files=%.16s (at "
						       "most %d)", line + 6, MIG_FILES_MAX);
			}
		} else if (strncmp(line, "bytes=", 6) == 0) {
			if (ha_parse_u64(line + 6, 0, x->round_max, &bytes) < 0) {
				return ctr_mig_io_fail(&x->io, -EFBIG, "manifest: bytes=%.24s "
						       "above the %" PRIu64 " bytes this guest's "
						       "memory allows", line + 6, x->round_max);
			}
		} else if (strncmp(line, "parent=pre", 10) == 0) {
			if (ha_parse_u64(line + 10, 1, CTR_MIG_ROUNDS_MAX, &v) < 0 || !x->done[v] ||
			    (round != 0 && v >= round)) {
				return ctr_mig_io_fail(&x->io, -EPROTO, "manifest of round %u: "
						       "parent %s was not received", round,
						       line + 7);
			}
			*parent = (uint32_t)v;
		} else if (strncmp(line, "file=", 5) == 0) {
			char *sp = strchr(line + 5, ' ');

			if (n >= MIG_FILES_MAX || sp == NULL) {
				return ctr_mig_io_fail(&x->io, -EPROTO,
						       "manifest: bad or too many file lines");
			}
			*sp = '\0';
			if (ha_parse_u64(line + 5, 0, x->round_max, &x->files[n].size) < 0 ||
			    !mig_name_ok(sp + 1, strlen(sp + 1))) {
				return ctr_mig_io_fail(&x->io, -EPROTO, "manifest: bad file line "
						       "'%.64s'", sp + 1);
			}
			memcpy(x->files[n].name, sp + 1, strlen(sp + 1) + 1);
			sum += x->files[n].size;
			n++;
		}
		/* other keys: later additions, ignored */
	}
	if (!format || !name) {
		return ctr_mig_io_fail(&x->io, -EPROTO, "manifest of round %u: not a format-%d "
				       "stream of %s", round, MIG_FORMAT, x->spec->name);
	}
	if (files != n || bytes != sum) {
		return ctr_mig_io_fail(&x->io, -EPROTO, "manifest of round %u: files=%" PRIu64
				       " bytes=%" PRIu64 " but %u files of %" PRIu64 " bytes "
				       "listed", round, files, bytes, n, sum);
	}
	*n_files = n;
	return 0;
}

static int recv_file(struct mig_dst *x, int dfd, uint32_t round, const struct mig_file *f)
{
	struct ctr_mig_rec rec;
	char name[CTR_MIG_NAME_MAX + 1];
	uint64_t left;
	int fd;

	if (ctr_mig_rec_read(&x->io, &rec) < 0) {
		return x->io.rc;
	}
	if (rec.type != CTR_MIG_REC_FILE || rec.round != round ||
	    rec.name_len != strlen(f->name)) {
		return ctr_mig_io_fail(&x->io, -EPROTO, "expected file %s of round %u, got a %s "
				       "record", f->name, round, ctr_mig_rec_type_str(rec.type));
	}
	if (ctr_mig_io_read(&x->io, name, rec.name_len, CTR_MIG_IO_MS) < 0) {
		return x->io.rc;
	}
	name[rec.name_len] = '\0';
	if (strcmp(name, f->name) != 0 || rec.data_len != f->size) {
		return ctr_mig_io_fail(&x->io, -EPROTO, "file %.64s (%" PRIu64 " bytes) is not the "
				       "manifest's next, %s (%" PRIu64 " bytes)", name,
				       rec.data_len, f->name, f->size);
	}
	fd = openat(dfd, f->name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0) {
		return ctr_mig_io_fail(&x->io, -errno, "creating %s: %s", f->name, strerror(errno));
	}
	for (left = f->size; left > 0 && x->io.rc == 0;) {
		size_t want = left > MIG_CHUNK ? MIG_CHUNK : (size_t)left;
		size_t off = 0;

		if (ctr_mig_io_read(&x->io, x->buf, want, CTR_MIG_IO_MS) < 0) {
			break;
		}
		while (off < want) {
			ssize_t n = write(fd, x->buf + off, want - off);

			if (n < 0 && errno == EINTR) {
				continue;
			}
			if (n < 0) {
				ctr_mig_io_fail(&x->io, -errno, "writing %s: %s", f->name,
						strerror(errno));
				break;
			}
			off += (size_t)n;
		}
		left -= want;
	}
	close(fd);
	return x->io.rc;
}

/* A MANIFEST record was read: the round's directory, then its files. */
static int recv_round(struct mig_dst *x, const struct ctr_mig_rec *rec, const char *tmp)
{
	char name[16], parent[32];
	struct statvfs vfs;
	unsigned n = 0;
	uint32_t par = 0;
	int dfd;

	if (rec->name_len != 0 || rec->data_len > MIG_MANIFEST_MAX) {
		return ctr_mig_io_fail(&x->io, -EPROTO, "manifest of %" PRIu64 " bytes (at most "
				       "%d)", rec->data_len, MIG_MANIFEST_MAX);
	}
	if (x->done[rec->round]) {
		return ctr_mig_io_fail(&x->io, -EPROTO, "round %u sent twice", rec->round);
	}
	if (ctr_mig_io_read(&x->io, x->man, (size_t)rec->data_len, CTR_MIG_IO_MS) < 0 ||
	    manifest_parse(x, rec->round, (size_t)rec->data_len, &n, &par) < 0) {
		return x->io.rc;
	}
	{
		uint64_t sum = 0;

		for (unsigned i = 0; i < n; i++) {
			sum += x->files[i].size;
		}
		if (fstatvfs(x->dirfd, &vfs) == 0 &&
		    (uint64_t)vfs.f_bavail * vfs.f_frsize < sum + MIG_SPACE_SLACK) {
			return ctr_mig_io_fail(&x->io, -ENOSPC, "%s: %" PRIu64 " bytes announced, %"
					       PRIu64 " free", tmp, sum,
					       (uint64_t)vfs.f_bavail * vfs.f_frsize);
		}
		x->io.p->total_bytes += sum;
	}
	round_dir(rec->round, name);
	if (mkdirat(x->dirfd, name, 0700) < 0) {
		return ctr_mig_io_fail(&x->io, -errno, "mkdir %s/%s: %s", tmp, name,
				       strerror(errno));
	}
	dfd = openat(x->dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (dfd < 0) {
		return ctr_mig_io_fail(&x->io, -errno, "opening %s/%s: %s", tmp, name,
				       strerror(errno));
	}
	if (par) {
		snprintf(parent, sizeof(parent), "../pre%u", par);
		if (symlinkat(parent, dfd, "parent") < 0) {
			ctr_mig_io_fail(&x->io, -errno, "linking %s/%s/parent: %s", tmp, name,
					strerror(errno));
		}
	}
	for (unsigned i = 0; i < n && x->io.rc == 0; i++) {
		recv_file(x, dfd, rec->round, &x->files[i]);
	}
	close(dfd);
	if (x->io.rc == 0) {
		x->done[rec->round] = true;
		x->io.p->rounds++;
	}
	return x->io.rc;
}

/* Reads the whole stream into @tmp. */
static int recv_stream(struct mig_dst *x, const char *tmp)
{
	struct ctr_mig_rec rec;

	for (;;) {
		if (ctr_mig_rec_read(&x->io, &rec) < 0) {
			return x->io.rc;
		}
		if (rec.type == CTR_MIG_REC_END) {
			if (!x->done[0] || rec.name_len || rec.data_len) {
				return ctr_mig_io_fail(&x->io, -EPROTO,
						       "end of stream before the final round");
			}
			return 0;
		}
		if (rec.type != CTR_MIG_REC_MANIFEST) {
			return ctr_mig_io_fail(&x->io, -EPROTO, "a %s record outside a round",
					       ctr_mig_rec_type_str(rec.type));
		}
		if (x->done[0]) {
			return ctr_mig_io_fail(&x->io, -EPROTO, "a round after the final one");
		}
		if (recv_round(x, &rec, tmp) < 0) {
			return x->io.rc;
		}
	}
}

static int ack_write(int fd, int rc, const char *msg)
{
	struct ctr_mig_io io;
	char line[MIG_ACK_MAX];
	int n;

	if (rc == 0) {
		n = snprintf(line, sizeof(line), "ok\n");
	} else {
		n = snprintf(line, sizeof(line), "error %d %.200s\n", -rc, msg);
	}
	for (int i = 0; i < n - 1; i++) {
		if (!isprint((unsigned char)line[i])) {
			line[i] = '?';
		}
	}
	ctr_mig_io_init(&io, fd, 0, NULL);
	return ctr_mig_io_write(&io, line, (size_t)n);
}

int ctr_mig_recv(struct agent_driver *d, const struct agent_guest_spec *spec, int fd,
		 const struct agent_mig_opts *o, struct agent_guest **out,
		 struct agent_mig_progress *p, char *err)
{
	struct agent_mig_progress dummy;
	struct mig_dst x = { .spec = spec, .dirfd = -1 };
	struct agent_guest *g = NULL;
	struct ctr_ckpt_target t = { .layer_image = false };
	char tmp[CTR_PATH] = "", images[CTR_PATH], e2[AGENT_ERR_LEN], ebuf[AGENT_ERR_LEN];
	uint64_t t0 = ha_mono_ms();
	bool kept_log = false;
	pid_t pid = 0;
	int rc;

	(void)o;
	if (err == NULL) {
		err = ebuf;
	}
	err_clear(err);
	p = p ? p : &dummy;
	memset(p, 0, sizeof(*p));
	*out = NULL;
	ctr_mig_io_init(&x.io, fd, 0, p);
	/* Ready before the first byte comes: the source is frozen meanwhile. */
	rc = ctr_guest_prepare(d, spec, &g, err);
	if (rc == 0) {
		ctr_guest_target(g, &t);
		rc = tmp_make(spec->run_dir, "mig-in.", tmp, err);
	}
	if (rc == 0) {
		x.dirfd = open(tmp, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		x.buf = malloc(MIG_CHUNK);
		x.man = malloc(MIG_MANIFEST_MAX + 1);
		x.files = calloc(MIG_FILES_MAX, sizeof(*x.files));
		x.round_max = spec->mem_kib ? spec->mem_kib * 1024 * 2 + (1ULL << 30) :
			MIG_NOSIZE_MAX;
		if (x.dirfd < 0 || x.buf == NULL || x.man == NULL || x.files == NULL) {
			rc = agent_err(err, x.dirfd < 0 ? -errno : -ENOMEM, "migrate %s: %s",
				       spec->name, x.dirfd < 0 ? strerror(errno) : "out of memory");
		}
	}
	if (rc == 0) {
		rc = recv_stream(&x, tmp);
		if (rc < 0) {
			agent_err(err, rc, "migrate %s: %s", spec->name, x.io.msg);
		}
	}
	if (rc == 0 && t.layer_image) {
		/* END came after the source handed the layer over */
		rc = ctr_guest_mount(g, CTR_LAYER_CLAIM, MIG_LAYER_CLAIM_MS, err);
	}
	if (rc == 0) {
		snprintf(images, sizeof(images), "%s/images", tmp);
		rc = mig_restore(&t, images, &pid, err);
		if (rc < 0) {
			char log[CTR_PATH + 16], keep[CTR_PATH + 32];

			/* CRIU's log outlives the images, for the post-mortem. */
			snprintf(log, sizeof(log), "%s/restore.log", images);
			snprintf(keep, sizeof(keep), "%s/mig-restore.log", spec->run_dir);
			kept_log = rename(log, keep) == 0;
		}
	}
	if (rc == 0) {
		rc = ctr_guest_adopt(g, pid, err);
	}
	if (rc == 0 && spec->ip) {
		/* Up but off the bridge: the link settles (carrier, link watch:
		 * up to a second) while the cluster decides, and the commit only
		 * adds a bridge port, which forwards at once. */
		rc = host_net_link_up(t.veth, err);
	}
	p->total_ms = ha_mono_ms() - t0;
	if (rc == 0) {
		/* The source learns only now that it may be discarded; if it
		 * cannot hear that, it resumes, so this copy must go. */
		rc = ack_write(fd, 0, NULL);
		if (rc < 0) {
			agent_err(err, rc, "migrate %s: answering the source: %s", spec->name,
				  strerror(-rc));
		}
	}
	if (x.dirfd >= 0) {
		close(x.dirfd);
	}
	free(x.buf);
	free(x.man);
	free(x.files);
	if (tmp[0] && rc < 0) {
		ctr_tree_remove(tmp, MIG_RM_MS, NULL);
	}
	/* Else the images go in migrate_finish(), after the thaw (see
	 * ctr_mig_send()). */
	if (rc < 0) {
		if (g) {
			/* Gone before the answer: an image layer this side
			 * claimed is unmounted and released, and the source may
			 * take it back as soon as it reads the error. */
			guest_kill(g, e2);
			/* The run directory stays only for a failed restore's log. */
			ctr_guest_clean(g, !kept_log, e2);
			agent_driver_container_ops.guest_free(g);
		}
		if (x.io.rc != -ECONNRESET && x.io.rc != -EPIPE) {
			ack_write(fd, rc, err);
		}
		return rc;
	}
	*out = g;
	return 0;
}

/* ---- both: the cluster's decision ---------------------------------------------- */

int ctr_mig_finish(struct agent_guest *g, bool source, bool commit, char *err)
{
	struct ctr_ckpt_target t;
	char e2[AGENT_ERR_LEN];
	bool alive;
	int rc;

	err_clear(err);
	if (source && !commit && ctr_guest_pending(g)) {
		/* The tree was handed over: the layer back, and the tree
		 * restored from the source's images (the destination
		 * releases the layer at this same decision). */
		rc = src_restore(g, MIG_LAYER_BACK_MS, err);
		if (rc < 0) {
			return rc;
		}
	}
	alive = ctr_guest_target(g, &t) == 0;
	if (source == commit) {
		/* The copy that lost: it never runs again. */
		ctr_guest_set_pending(g, false);
		rc = guest_kill(g, err);
		if (rc == 0) {
			rc = ctr_guest_clean(g, true, err);
		}
		return rc;
	}
	if (!alive) {
		return agent_err(err, -ESRCH, "migrate %s: the %s copy no longer runs", t.spec->name,
				 source ? "source" : "destination");
	}
	rc = 0;
	if (t.spec->ip) {
		rc = host_net_port_attach(t.veth, t.spec->bridge, err);
	}
	if (rc == 0) {
		/* CRIU left the tree stopped (the source's by the dump, the
		 * destination's by the restore) and the agent froze it */
		rc = held_resume(t.cg, err);
	}
	if (rc == 0 && t.spec->ip) {
		/* Best effort: peers would find the guest on their next ARP anyway. */
		ctr_net_announce(t.pid, t.spec->ip, e2);
	}
	if (rc == 0 && !source) {
		/* Committed and running here: the handover is history (a
		 * failover to the former source must not wait for a handback
		 * that a fenced host never gives). Best effort: without it
		 * that failover waits LAYER_HANDBACK_MS, then takes over. */
		if (ctr_guest_settle(g, e2) < 0) {
			qb_log(LOG_WARNING, "migrate %s: %s", t.spec->name, e2);
		}
	}
	/* The images migrate_send / migrate_recv left, now that the guest runs. */
	stale_remove(t.spec->run_dir, source ? "mig-out." : "mig-in.");
	return rc;
}
