/*
 * hactl_states.h - the states of proto/hactl.proto's enums (GuestState,
 * NodeState, FenceState, MigrationState, MigrationPhase, JobState,
 * JobMoveState) as names: the one
 * place that turns a state into its name and a name into its state. The
 * records on the wire and in the state file carry the names; the code
 * compares the values, hactl prints the names (tables and JSON).
 *
 * Built into ha_proto, so every module (common, coordinator, agent, cli)
 * has it below itself.
 */
#ifndef HA_HACTL_STATES_H
#define HA_HACTL_STATES_H

#include "proto/hactl.pb-c.h"

#define HA_GUEST_STATE_MAX (HACTL__GUEST_STATE__GUEST_ERROR + 1)
#define HA_NODE_STATE_MAX (HACTL__NODE_STATE__NODE_MAINTENANCE + 1)
#define HA_FENCE_STATE_MAX (HACTL__FENCE_STATE__FENCE_UNCONFIRMED + 1)
#define HA_MIGRATION_STATE_MAX (HACTL__MIGRATION_STATE__MIGRATION_ABORTED + 1)
#define HA_MIGRATION_PHASE_MAX (HACTL__MIGRATION_PHASE__PHASE_FAILED + 1)
#define HA_JOB_STATE_MAX (HACTL__JOB_STATE__JOB_CANCELLED + 1)
#define HA_JOB_MOVE_STATE_MAX (HACTL__JOB_MOVE_STATE__JOB_MOVE_FAILED + 1)

/* No state: what the _from_str() functions return for NULL, "" or a name
 * that is no state's. Never equal to a state. */
#define HA_STATE_NONE (-1)

/* The name of a state ("running"); "unknown" for a value out of range.
 * Static strings. */
const char *ha_guest_state_str(Hactl__GuestState s);
const char *ha_node_state_str(Hactl__NodeState s);
const char *ha_fence_state_str(Hactl__FenceState s);
const char *ha_migration_state_str(Hactl__MigrationState s);
const char *ha_migration_phase_str(Hactl__MigrationPhase s);
const char *ha_job_state_str(Hactl__JobState s);
const char *ha_job_move_state_str(Hactl__JobMoveState s);

/* The state called @name (exactly, case included), as an int so that
 * HA_STATE_NONE fits: compare with the enum's values. */
int ha_guest_state_from_str(const char *name);
int ha_node_state_from_str(const char *name);
int ha_fence_state_from_str(const char *name);
int ha_migration_state_from_str(const char *name);
int ha_migration_phase_from_str(const char *name);
int ha_job_state_from_str(const char *name);
int ha_job_move_state_from_str(const char *name);

#endif
