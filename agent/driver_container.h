/*
 * driver_container.h - private header of the container driver
 * (driver_container*.c): the guest network, helper programs, the writable
 * layer and checkpoint/restore; cgroups and processes are the host layer's
 * (host_cgroup.h, host_proc.h). Nothing outside these files includes it; the agent
 * sees only agent_driver_container_ops (driver.h).
 *
 * Every function here is a blocking call for a worker thread, returns 0 or
 * -errno and, where it takes @err (AGENT_ERR_LEN bytes, may be NULL), fills
 * it with one line naming what failed and where. No global mutable state.
 */
#ifndef HA_AGENT_DRIVER_CONTAINER_H
#define HA_AGENT_DRIVER_CONTAINER_H

#include <net/if.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "driver.h"
#include "host_cgroup.h"
#include "host_net.h"
#include "host_proc.h"

#define CTR_PATH 512          /* every path the driver builds */
#define CTR_NAME_MAX 64       /* guest name: [A-Za-z0-9_.-], not "." or ".." */
#define CTR_CMD_MAX 4096      /* spec->command, bytes */
#define CTR_ARGS_MAX 64       /* spec->command, words */
#define CTR_NET_STEP_MS 5000  /* one ip command */


/* ---- helper programs (driver_container_exec.c) ---------------------- */

/* Finds @name (ip, cp, rm) in the standard system directories; 0 and
 * @out set, or -ENOENT. */
int ctr_tool_find(const char *name, char *out, size_t outlen);
/*
 * Runs @argv (argv[0] an absolute path) with stdin on /dev/null, killing it
 * after @timeout_ms. When @netns_fd >= 0 the child first joins that network
 * namespace. The first line of what it writes to stdout/stderr lands in
 * @msg (may be NULL). Returns its exit status (0..255; 128+N for signal N),
 * or -errno / -ETIMEDOUT when it could not run or ran too long.
 */
int ctr_tool_run(char *const argv[], int netns_fd, uint32_t timeout_ms,
		 char *msg, size_t msglen);
/* Removes @path recursively without crossing into other file systems
 * (rm -rf --one-file-system); a missing @path is success. */
int ctr_tree_remove(const char *path, uint32_t timeout_ms, char *err);
/* Copies the directory @src to @dst (which must not exist) keeping
 * owners, modes, xattrs (overlay whiteouts and opaque marks) and device
 * nodes (cp -a). */
int ctr_tree_copy(const char *src, const char *dst, uint32_t timeout_ms, char *err);
/* "@a/@b" into @out (CTR_PATH bytes); -ENAMETOOLONG when it does not fit. */
int ctr_path_fmt(char *out, const char *a, const char *b, char *err);
/* What was written to @path (a file or a directory) reaches the storage:
 * fsync, or with @whole_fs syncfs (every dirty page of its file system). */
int ctr_sync(const char *path, bool whole_fs, char *err);

/* ---- network (driver_container_net.c) -------------------------------- */

/* The host side's name: hv-<name>, or hv-<prefix><hash> when long. */
void ctr_net_veth_name(const char *name, char out[IFNAMSIZ]);
/* The guest side's MAC, stable for a name (locally administered). */
void ctr_net_mac(const char *name, char out[18]);
/*
 * Creates the veth pair for the container whose init is @pid: the host side
 * @veth on spec->bridge, the guest side eth0 inside the container's network
 * namespace with spec->ip, lo up, default route via spec->gateway.
 */
int ctr_net_setup(const struct agent_guest_spec *spec, const char *veth, pid_t pid,
		  uint32_t timeout_ms, char *err);
/* Deletes the host side @veth (and so its peer); missing is fine. */
int ctr_net_teardown(const char *veth, uint32_t timeout_ms, char *err);
/*
 * A gratuitous ARP from eth0 of the container whose init is @pid, for the
 * IPv4 address of @cidr, so that peers and bridges learn the guest's new
 * port (after a migration, after a restore on another host); 0 for other
 * addresses.
 */
int ctr_net_announce(pid_t pid, const char *cidr, char *err);

/* ---- the writable layer (driver_container_layer.c) --------------------- */

#define CTR_LAYER_IMAGE "layer.img"
#define CTR_LAYER_ARCHIVE "layer.tar" /* in a snapshot */
#define CTR_LAYER_DEFAULT_KIB (1024ULL * 1024) /* 1 GiB, sparse */
#define CTR_LAYER_MIN_KIB (32ULL * 1024)        /* guestdef.c keeps the same */
#define CTR_LAYER_MAX_KIB (16ULL << 30)         /* 16 TiB */

struct ctr_layer {
	char img[CTR_PATH];       /* data_dir/layer.img: ext4, shared storage */
	char lock[CTR_PATH];      /* data_dir/layer.lock: who has it mounted */
	char mnt[CTR_PATH];       /* run_dir/layer: its mount point here */
	char upper[CTR_PATH];     /* mnt/upper, mnt/work: the overlay's */
	char work[CTR_PATH];
	char old_upper[CTR_PATH]; /* data_dir/upper, data_dir/work: the layout */
	char old_work[CTR_PATH];  /* before the image (converted at start) */
	char owner[CTR_PATH + 80];
	const char *run_dir;      /* the spec's */
	const char *data_dir;
	uint64_t kib;             /* size of a new image */
};

/* How ctr_layer_open() takes the lock. */
enum ctr_layer_take {
	CTR_LAYER_WAIT = 0,   /* another host's: waited for, then -EBUSY */
	CTR_LAYER_FORCE,      /* another host's: waited for, then taken over
			       * (start, restore: the cluster placed the
			       * guest here, its former host is off) */
	CTR_LAYER_CLAIM,      /* a migration's destination: only a lock the
			       * source handed over (or ours) */
	CTR_LAYER_RECLAIM,    /* a migration's source after an abort: a lock
			       * handed over, ours or free */
	CTR_LAYER_TAKE_MAX
};

const char *ctr_layer_take_str(enum ctr_layer_take how);

/* The first line of a lock file whose layer nobody has mounted, reserved
 * for a migration (ctr_layer_handover()). */
#define CTR_LAYER_HANDOVER "handover"

/* Paths and size for @spec (which must outlive @l); touches nothing. */
int ctr_layer_init(struct ctr_layer *l, const struct agent_guest_spec *spec, char *err);
/* The guest still has the old layout: data_dir/upper and no image. */
bool ctr_layer_legacy(const struct ctr_layer *l);
/* The image is mounted on l->mnt in this mount namespace. */
bool ctr_layer_mounted(const struct ctr_layer *l);
/*
 * Mounts the layer on l->mnt (creating the image, from the old layout when
 * there is one) and makes upper and work in it. Another host's lock is
 * waited for up to @wait_ms, then taken or refused (-EBUSY) as @how says.
 */
int ctr_layer_open(struct ctr_layer *l, enum ctr_layer_take how, uint32_t wait_ms, char *err);
/* Only the lock step of ctr_layer_open() (@how, @wait_ms as there);
 * mounts nothing. */
int ctr_layer_lock(const struct ctr_layer *l, enum ctr_layer_take how, uint32_t wait_ms,
		   char *err);
/*
 * A migration's source, its guest's processes gone: unmounts the layer,
 * waits until this kernel holds it no more, syncs the image and rewrites
 * the lock as a handover record ("handover", then "from host=... run=...,
 * @note"), which only CTR_LAYER_CLAIM and CTR_LAYER_RECLAIM take.
 */
int ctr_layer_handover(struct ctr_layer *l, const char *note, char *err);
/*
 * A migration's destination once the cluster committed: the lock, ours,
 * loses its "(handover from ...)" line. Until then a start or restore on
 * the source waits for the lock (the destination releases it at an
 * abort); after it, the migration is history, and a failover back to the
 * former source (its destination fenced) takes the lock over at once.
 * A lock that is not ours, or has no such line, is left as it is.
 */
int ctr_layer_settle(const struct ctr_layer *l, char *err);
/* The lock is another host's, claimed from this host's handover (its
 * record says "(handover from" this host's owner line): what makes a
 * start or restore here wait for the handback. */
bool ctr_layer_handed_from_us(const struct ctr_layer *l);
/* The mounted layer's file system: bytes in use and its size (statfs;
 * what the guest sees in df). Both 0 when it is not mounted here. */
void ctr_layer_usage(const struct ctr_layer *l, uint64_t *used, uint64_t *size);
/* Unmounts it, waits until this kernel holds it no more, syncs the image
 * and releases the lock; nothing mounted is fine. */
int ctr_layer_close(struct ctr_layer *l, char *err);
/* 0 once no other host holds the lock (within @wait_ms), else -EBUSY. */
int ctr_layer_wait_free(const struct ctr_layer *l, uint32_t wait_ms, char *err);
/* Archives the mounted layer's upper directory into @dst, a new file (tar:
 * owners, device nodes, every xattr, holes); the guest must be frozen. */
int ctr_layer_snapshot(const struct ctr_layer *l, const char *dst, char *err);
/* Takes the lock over, unmounts the layer here and replaces the image by a
 * new one (the spec's size) holding @src: an archive from
 * ctr_layer_snapshot() with @tar, else a directory (an upper dir). */
int ctr_layer_replace(struct ctr_layer *l, const char *src, bool tar, char *err);
/* Unmounts and deletes the image (destroy). */
int ctr_layer_remove(struct ctr_layer *l, char *err);
/*
 * Makes the run directory a mount of itself in a peer group of its own,
 * so that no mount namespace made or kept elsewhere holds a copy of the
 * layer's mount that this host cannot unmount (the reasons are at the
 * function); once is enough. ctr_layer_run_dir_unbind() undoes it.
 */
int ctr_layer_run_dir_share(const struct ctr_layer *l, char *err);
void ctr_layer_run_dir_unbind(const struct ctr_layer *l);

/* ---- checkpoint / restore (driver_container_criu.c) ------------------- */

struct agent_guest;

/* What the CRIU calls (and ctr_launch()) need from a guest. */
struct ctr_ckpt_target {
	const struct agent_guest_spec *spec;
	const struct host_cgroup *cg;
	const char *root;          /* run_dir/root: the overlay */
	const char *veth;          /* host side name */
	const char *criu_path;     /* from the agent config */
	pid_t pid;                 /* init, host pid (dump) */
	bool layer_image;          /* the writable layer is an image (else the
				    * old layout, shared by both hosts) */
};

/*
 * Dumps the container into @images (an existing directory). With
 * @leave_running the guest keeps running (and stays frozen when it was
 * frozen before, so that the caller can copy storage of the same instant).
 */
int ctr_criu_dump(const struct ctr_ckpt_target *t, const char *images,
		  bool leave_running, uint32_t timeout_ms, char *err);
/*
 * Restores from @images, detached, into the guest's cgroups; *pid is the
 * new init's host pid. The tree runs and the veth's host side is on the
 * bridge; with @stopped (a migration's destination) CRIU leaves the tree
 * stopped (SIGSTOP) and the veth off the bridge.
 */
int ctr_criu_restore(const struct ctr_ckpt_target *t, const char *images,
		     uint32_t timeout_ms, bool stopped, pid_t *pid, char *err);

/* The external resources a container's dump names (console mount, veth):
 * the text lives in the struct, list points into it. */
struct ctr_criu_external {
	char mnt[64];
	char veth[64];
	const char *list[2];
	size_t n;
};
struct agent_criu_dump_opts;
/*
 * What every dump of a container sets (snapshot and migration alike): the
 * tree, established TCP (without connections not accepted yet), file
 * locks, soft cgroup management, the freezer, the external resources
 * (text in @x, which must live as long as @o). The rest of @o is zero.
 */
void ctr_criu_dump_base(const struct ctr_ckpt_target *t, struct ctr_criu_external *x,
			struct agent_criu_dump_opts *o);
/* The CRIU binary for the agent's setting @path ("criu" or empty: the one
 * deploy/install-criu put in place). */
const char *ctr_criu_bin(const char *path);
/* Fills the CRIU facts (version, dirty tracking, lazy pages). */
int ctr_criu_probe(const char *criu_path, Hactl__HostFacts *facts);

/* ---- the container's first processes (driver_container_launch.c) ------- */

/*
 * Starts the container of @t (spec, cgroups, the mounted overlay root,
 * veth; pid and criu_path unused), its /dev/console a bind mount of
 * @console: its init in new pid, mnt, uts, ipc and net namespaces, the
 * network set up before the guest's command is executed. On success *pid
 * and *starttime name init (host pid, start time from /proc); on failure
 * nothing of it is left running and they are untouched. @deadline is a
 * ha_mono_ms() time.
 */
int ctr_launch(const struct ctr_ckpt_target *t, const char *console, uint64_t deadline,
	       pid_t *pid, uint64_t *starttime, char *err);

/* ---- the guest object, for live migration (driver_container.c) ------------ */

/* Fills @t from the guest (its pid read back from the run directory when
 * the object has none); 0 when the guest runs, -ESRCH when not (@t is
 * filled either way). @t points into @g: valid while @g lives. */
int ctr_guest_target(struct agent_guest *g, struct ctr_ckpt_target *t);
/*
 * A guest object for @spec with nearly everything a CRIU restore into it
 * needs: leftovers of an earlier instance removed, run directory, cgroups
 * with the limits of @spec, console log. The root is mounted only for a
 * guest in the old layout (upper on spec->data_dir, used by both hosts);
 * ctr_guest_mount() mounts an image layer and the root. -EBUSY when the
 * guest runs here. On success the caller owns *out (guest_free op) and
 * removes what it set up with ctr_guest_clean().
 */
int ctr_guest_prepare(struct agent_driver *d, const struct agent_guest_spec *spec,
		      struct agent_guest **out, char *err);
/* Mounts the writable layer (@how: CTR_LAYER_CLAIM on a migration's
 * destination, CTR_LAYER_RECLAIM on its source after an abort; another
 * host's lock is waited for up to @wait_ms, never taken over) and the
 * overlay root, for a guest from ctr_guest_prepare() or one handed over;
 * clears the pending mark. */
int ctr_guest_mount(struct agent_guest *g, enum ctr_layer_take how, uint32_t wait_ms, char *err);
/*
 * A migration's source after its final dump (the tree stopped, frozen,
 * its state in the images): kills the tree, unmounts the root and hands
 * the layer over (ctr_layer_handover(), @note in the record). The cgroups
 * stay, and the guest is pending (PAUSED) until it is restored here
 * (abort) or cleaned (commit).
 */
int ctr_guest_handover(struct agent_guest *g, const char *note, char *err);
/* The destination after the commit: ctr_layer_settle() of an image
 * layer (nothing for the old layout). */
int ctr_guest_settle(struct agent_guest *g, char *err);
/* The guest's state is in migration images, not in processes: state()
 * says PAUSED meanwhile. */
void ctr_guest_set_pending(struct agent_guest *g, bool pending);
bool ctr_guest_pending(const struct agent_guest *g);
/* Makes the restored tree whose init is @pid (host pid) the guest's:
 * records it in the run directory, as start() does. */
int ctr_guest_adopt(struct agent_guest *g, pid_t pid, char *err);
/* Removes the host side of a guest whose processes are gone or frozen
 * (those are killed): processes, overlay mount, veth, cgroups, pid file,
 * and with @run_dir the run directory. The writable layer is unmounted and
 * its lock released, never removed. */
int ctr_guest_clean(struct agent_guest *g, bool run_dir, char *err);

/* The driver's ops table (driver_container.c); migration frees guests with
 * its guest_free. */
extern const struct agent_driver_ops agent_driver_container_ops;

/* ---- the migration stream (driver_container_stream.c) --------------------- */

#define CTR_MIG_NAME_MAX 128      /* one file name in a record */
#define CTR_MIG_ROUNDS_MAX 16     /* pre-copy rounds accepted */
#define CTR_MIG_IO_MS 30000       /* silence on the stream before giving up */

enum ctr_mig_rec_type {
	CTR_MIG_REC_NONE = 0,
	CTR_MIG_REC_MANIFEST = 1,
	CTR_MIG_REC_FILE = 2,
	CTR_MIG_REC_END = 3,
	CTR_MIG_REC_MAX
};

struct ctr_mig_rec {
	uint16_t type;
	uint32_t round;
	uint32_t name_len;
	uint64_t data_len;
};

/*
 * One side of the stream. It keeps its first error (rc, msg): after a
 * failure every call returns it, so a caller may check once after a batch.
 */
struct ctr_mig_io {
	int fd;
	bool sock;
	int rc;
	char msg[AGENT_ERR_LEN];
	uint64_t bytes;              /* payload moved, both directions */
	uint64_t t0_ms;
	uint64_t bandwidth;          /* bytes per second, 0 = unlimited */
	struct agent_mig_progress *p;
};

const char *ctr_mig_rec_type_str(enum ctr_mig_rec_type t);
/* @fd: the connection (socket or pipe; not owned); @bandwidth in bytes per
 * second, 0 = unlimited; @p (may be NULL) gets the byte counts. */
void ctr_mig_io_init(struct ctr_mig_io *io, int fd, uint64_t bandwidth,
		     struct agent_mig_progress *p);
/* Records the stream's first error (@rc, the message); returns io->rc. */
int ctr_mig_io_fail(struct ctr_mig_io *io, int rc, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* Writes all of @buf; no progress for CTR_MIG_IO_MS is an error. */
int ctr_mig_io_write(struct ctr_mig_io *io, const void *buf, size_t len);
/* Reads exactly @len bytes within @ms of silence; the peer closing first
 * is -ECONNRESET. */
int ctr_mig_io_read(struct ctr_mig_io *io, void *buf, size_t len, uint32_t ms);
/* A record's header, then @name (r->name_len bytes); the data is the
 * caller's to write. */
int ctr_mig_rec_write(struct ctr_mig_io *io, const struct ctr_mig_rec *r, const char *name);
/* A record's header, checked; the name and data are the caller's to read. */
int ctr_mig_rec_read(struct ctr_mig_io *io, struct ctr_mig_rec *r);

/* ---- live migration (driver_container_mig.c) -------------------------------
 * The three migration operations of agent_driver_container_ops (driver.h);
 * the stream format is described in docs/containers.md. */

int ctr_mig_send(struct agent_guest *g, int fd, const struct agent_mig_opts *o,
		 struct agent_mig_progress *p, char *err);
int ctr_mig_recv(struct agent_driver *d, const struct agent_guest_spec *spec, int fd,
		 const struct agent_mig_opts *o, struct agent_guest **out,
		 struct agent_mig_progress *p, char *err);
int ctr_mig_finish(struct agent_guest *g, bool source, bool commit, char *err);

#endif
