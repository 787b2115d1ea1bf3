/*
 * restart.h - the restart policy of a guest (docs/failover.md, "Restart
 * policy"), as pure decisions: counts and times in, what to do out.
 *
 * A guest that stops by itself or fails to start on its owner is started
 * again in place up to [ha] max_restart times, after a growing delay; then
 * the owner's agent gives up and reports it; the leader then starts it on
 * another node (a relocation, up to [ha] max_relocate times), and after
 * that puts it into state `error` with an alarm until `hactl start`. A
 * guest that ran for HA_RESTART_STABLE_MS counts as healthy again: its
 * failures in place start over.
 */
#ifndef HA_RESTART_H
#define HA_RESTART_H

#include <stdbool.h>
#include <stdint.h>

#define HA_RESTART_DELAY_MS 1000u      /* before the first restart in place */
#define HA_RESTART_DELAY_MAX_MS 60000u /* the delay doubles up to this */
#define HA_RESTART_STABLE_MS 300000u   /* running this long clears failures */

enum ha_restart_action {
	HA_RESTART_AGAIN = 0,  /* start it again here after *delay_ms */
	HA_RESTART_GIVE_UP,    /* the agent gives up: the leader decides */
	HA_RESTART_RELOCATE,   /* the leader starts it on another node */
	HA_RESTART_ERROR,      /* state error, alarm; `hactl start` clears it */
	HA_RESTART_ACTION_MAX
};

const char *ha_restart_action_str(enum ha_restart_action a);

/*
 * The owner after a failure (a stop it did not ask for, or a failed
 * start). @fails: failures so far under this ownership, this one
 * included; it is 1 again when the guest had run for HA_RESTART_STABLE_MS
 * (ha_restart_fails_next()). Returns AGAIN with the delay (1 s, 2 s, 4 s
 * ... at most 60 s) while @fails <= @max_restart, else GIVE_UP.
 */
enum ha_restart_action ha_restart_local(uint32_t max_restart, uint32_t fails,
					uint64_t *delay_ms);

/* The failure count after one more failure of a guest that ran @ran_ms
 * since its last start (0 for a failed start). */
uint32_t ha_restart_fails_next(uint32_t fails, uint64_t ran_ms);

/* The leader when the owner gave up: RELOCATE while @relocations (done
 * so far) < @max_relocate, else ERROR. */
enum ha_restart_action ha_restart_cluster(uint32_t max_relocate, uint32_t relocations);

#endif
