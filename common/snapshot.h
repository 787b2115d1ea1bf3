/*
 * snapshot.h - snapshots on the shared storage: layout, manifest,
 * verification, generations.
 *
 *   SHARED/snapshots/NAME/gen-000007/          one generation
 *       definition.conf                        the guest definition
 *       state/...                              what the driver wrote
 *       MANIFEST                               sha256, size, path of every
 *                                              file; ends with its own hash
 *
 * A generation is written as gen-000007.tmp-PID, every file fsynced, the
 * MANIFEST written last, then renamed into place. A generation whose
 * MANIFEST is missing, torn, or disagrees with any file is corrupt and is
 * never used; readers skip *.tmp-* directories.
 *
 * The MANIFEST's header records the wall-clock time of the snapshot's
 * instant ("time_ms") and its kind ("kind periodic|manual|failover-point",
 * docs/failover.md "How far back a failover goes"); a MANIFEST written
 * before kinds were recorded has no kind line (HA_SNAP_KIND_LEGACY).
 */
#ifndef HA_SNAPSHOT_H
#define HA_SNAPSHOT_H

#include <stddef.h>
#include <stdint.h>

#define HA_SNAP_MAX_FILES 100000

/* What a snapshot was taken for; only failover points are restored by a
 * failover or by the agent's own restart (common/snapchoice.h). */
enum ha_snap_kind {
	HA_SNAP_KIND_LEGACY = 0,   /* no kind recorded (written before kinds
				    * were): counts as a failover point */
	HA_SNAP_KIND_PERIODIC,     /* snapshot_interval: a failover point */
	HA_SNAP_KIND_MANUAL,       /* hactl snapshot: not a failover point */
	HA_SNAP_KIND_FAILOVER,     /* hactl snapshot --failover-point */
	HA_SNAP_KIND_MAX
};

/* "legacy", "periodic", "manual", "failover-point" */
const char *ha_snap_kind_str(enum ha_snap_kind k);
/* May a failover restore a snapshot of this kind? */
int ha_snap_kind_failover(enum ha_snap_kind k);

/* What a generation's MANIFEST says about it (ha_snap_info). */
struct ha_snap_info {
	uint64_t time_ms;          /* wall clock of its instant; 0 = not recorded */
	enum ha_snap_kind kind;
};

/* Directory of @guest's snapshots under @shared_dir (no trailing slash). */
int ha_snap_guest_dir(const char *shared_dir, const char *guest, char *out, size_t len);
/* Directory of one generation. */
int ha_snap_gen_dir(const char *shared_dir, const char *guest, uint64_t gen, char *out,
		    size_t len);

/*
 * Lists the complete generations (not *.tmp-*) of @guest, newest first,
 * into @gens (at most @max). Returns the count or -errno (0 when none).
 */
int ha_snap_list(const char *shared_dir, const char *guest, uint64_t *gens, size_t max);

/*
 * Creates a temporary directory for the next generation; *gen is set, @tmp
 * receives its path. Returns 0 or -errno.
 */
int ha_snap_begin(const char *shared_dir, const char *guest, uint64_t *gen, char *tmp,
		  size_t len);

/*
 * Seals the temporary directory @tmp: writes definition.conf (@def_text),
 * fsyncs every file, writes MANIFEST with @time_ms (wall clock, ms) and
 * @kind, renames it to its generation. On failure the temporary directory
 * is removed.
 */
int ha_snap_commit(const char *shared_dir, const char *guest, uint64_t gen, const char *tmp,
		   const char *def_text, size_t def_len, uint64_t time_ms,
		   enum ha_snap_kind kind, char *err, size_t errlen);

/* Removes a temporary directory left by a failed snapshot. */
void ha_snap_abort(const char *tmp);

/*
 * Verifies generation @gen: the MANIFEST is whole and every file matches.
 * On success *time_ms is the snapshot time. On failure returns -EBADMSG
 * (corrupt) or -ENOENT with @err naming the file and the problem.
 */
int ha_snap_verify(const char *shared_dir, const char *guest, uint64_t gen,
		   uint64_t *time_ms, char *err, size_t errlen);

/*
 * Reads generation @gen's MANIFEST only (whole, its own checksum right) and
 * fills @info; the files are not checked (ha_snap_verify does). Returns 0,
 * -ENOENT (no such generation) or -EBADMSG (no MANIFEST, torn, or a bad
 * header line) with @err saying which.
 */
int ha_snap_info(const char *shared_dir, const char *guest, uint64_t gen,
		 struct ha_snap_info *info, char *err, size_t errlen);

/* Keeps the newest @keep generations of @guest, removes older ones and
 * stale temporary directories. Returns how many were removed or -errno. */
int ha_snap_prune(const char *shared_dir, const char *guest, unsigned keep);

/* Reads definition.conf of a generation (malloc'd, caller frees). */
int ha_snap_read_definition(const char *shared_dir, const char *guest, uint64_t gen,
			    char **text, size_t *len);

/* rm -rf @path (no symlinks followed). Returns 0 or -errno. */
int ha_rm_rf(const char *path);

#endif
