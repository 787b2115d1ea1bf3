/*
 * snapchoice.h - which snapshot a failover restores, or a cold start
 * (docs/failover.md, "How far back a failover goes").
 *
 * One decision for every path that restarts a guest from a snapshot on its
 * own: the failover on a survivor and the agent's restart of a guest that
 * ended unasked (a crash, the self-fence). Both run it in the agent that
 * starts the guest; `hactl show` runs it to say what a failover would do
 * now. An operator's `hactl restore` is not limited by it.
 *
 * The rule: the newest good snapshot that is a failover point (periodic,
 * marked with `hactl snapshot --failover-point`, or written before kinds
 * were recorded) is restored when it is at most the guest's
 * failover_snapshot_max_age old; otherwise the guest starts cold. Ages are
 * wall-clock: now on the starting host minus the time the writing host
 * recorded in the snapshot's MANIFEST.
 */
#ifndef HA_SNAPCHOICE_H
#define HA_SNAPCHOICE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "snapshot.h"

/* max_age_ms: any age (failover_snapshot_max_age = unlimited) */
#define HA_SNAP_AGE_UNLIMITED UINT64_MAX
/* A snapshot whose time is further ahead of this host's clock than this
 * was written by a host whose clock is wrong: its age cannot be known, so
 * it is not restored (the hosts run NTP; a few ms is the norm). */
#define HA_SNAP_CLOCK_SKEW_MS 5000u

/* What is known of one generation, from its MANIFEST (ha_snap_info). */
struct ha_snap_meta {
	uint64_t gen;
	int status;               /* 0 = whole; < 0: unusable (corrupt, gone) */
	struct ha_snap_info info;
	char why[256];            /* why not usable, when status < 0 */
};

struct ha_snap_choice {
	uint64_t gen;             /* the generation to restore; 0 = cold start */
	uint64_t time_ms;         /* its time (wall clock) */
	uint64_t age_ms;          /* its age now */
	uint64_t newest_gen;      /* cold: the newest failover point, 0 = none */
	uint64_t newest_time_ms;  /*       and its time */
	char why[768];            /* one line: what and why, for logs and notes */
};

/*
 * The decision, pure. @snaps are the guest's generations, newest first;
 * @now_ms is this host's wall clock; @max_age_ms the guest's limit (0: no
 * snapshot may be used; HA_SNAP_AGE_UNLIMITED: any age). Fills @out.
 */
void ha_snap_choose(const struct ha_snap_meta *snaps, size_t n, uint64_t now_ms,
		    uint64_t max_age_ms, struct ha_snap_choice *out);

/*
 * The decision on the shared storage: lists @guest's generations, reads
 * their MANIFESTs and chooses; with @verify, the chosen generation's files
 * are checked (ha_snap_verify) and a corrupt one is passed over for the
 * next choice. Returns 0 (out->gen 0 = cold start) or -errno when the
 * snapshots cannot be listed (out->why says why).
 */
int ha_snap_choose_stored(const char *shared_dir, const char *guest, uint64_t now_ms,
			  uint64_t max_age_ms, bool verify, struct ha_snap_choice *out);

#endif
