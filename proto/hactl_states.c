/*
 * hactl_states.c - state names, one table per enum of proto/hactl.proto.
 * The names are the ones on the wire, in the state file, in hactl's
 * output and in docs/cli.md: never change one.
 */
#include <stddef.h>
#include <string.h>

#include "hactl_states.h"

static const char *const guest_names[HA_GUEST_STATE_MAX] = {
	[HACTL__GUEST_STATE__GUEST_DEFINED] = "defined",
	[HACTL__GUEST_STATE__GUEST_STARTING] = "starting",
	[HACTL__GUEST_STATE__GUEST_RUNNING] = "running",
	[HACTL__GUEST_STATE__GUEST_PAUSED] = "paused",
	[HACTL__GUEST_STATE__GUEST_STOPPING] = "stopping",
	[HACTL__GUEST_STATE__GUEST_STOPPED] = "stopped",
	[HACTL__GUEST_STATE__GUEST_FAILED] = "failed",
	[HACTL__GUEST_STATE__GUEST_UNKNOWN] = "unknown",
	[HACTL__GUEST_STATE__GUEST_RECOVERING] = "recovering",
	[HACTL__GUEST_STATE__GUEST_RELOCATING] = "relocating",
	[HACTL__GUEST_STATE__GUEST_ERROR] = "error",
};

static const char *const node_names[HA_NODE_STATE_MAX] = {
	[HACTL__NODE_STATE__NODE_ONLINE] = "online",
	[HACTL__NODE_STATE__NODE_OFFLINE] = "offline",
	[HACTL__NODE_STATE__NODE_FENCED] = "fenced",
	[HACTL__NODE_STATE__NODE_MAINTENANCE] = "maintenance",
};

static const char *const fence_names[HA_FENCE_STATE_MAX] = {
	[HACTL__FENCE_STATE__FENCE_IDLE] = "idle",
	[HACTL__FENCE_STATE__FENCE_WAITING] = "waiting",
	[HACTL__FENCE_STATE__FENCE_FENCING] = "fencing",
	[HACTL__FENCE_STATE__FENCE_FAILED] = "failed",
	[HACTL__FENCE_STATE__FENCE_DONE] = "done",
	[HACTL__FENCE_STATE__FENCE_UNCONFIRMED] = "unconfirmed",
};

static const char *const migration_names[HA_MIGRATION_STATE_MAX] = {
	[HACTL__MIGRATION_STATE__MIGRATION_TRANSFERRING] = "transferring",
	[HACTL__MIGRATION_STATE__MIGRATION_COMMITTED] = "committed",
	[HACTL__MIGRATION_STATE__MIGRATION_ABORTED] = "aborted",
};

static const char *const phase_names[HA_MIGRATION_PHASE_MAX] = {
	[HACTL__MIGRATION_PHASE__PHASE_NONE] = "none",
	[HACTL__MIGRATION_PHASE__PHASE_TRANSFERRING] = "transferring",
	[HACTL__MIGRATION_PHASE__PHASE_SENT] = "sent",
	[HACTL__MIGRATION_PHASE__PHASE_RECEIVED] = "received",
	[HACTL__MIGRATION_PHASE__PHASE_FINISHING] = "finishing",
	[HACTL__MIGRATION_PHASE__PHASE_FINISHED] = "finished",
	[HACTL__MIGRATION_PHASE__PHASE_FAILED] = "failed",
};

static const char *const job_names[HA_JOB_STATE_MAX] = {
	[HACTL__JOB_STATE__JOB_RUNNING] = "running",
	[HACTL__JOB_STATE__JOB_CANCELLING] = "cancelling",
	[HACTL__JOB_STATE__JOB_DONE] = "done",
	[HACTL__JOB_STATE__JOB_CANCELLED] = "cancelled",
};

static const char *const job_move_names[HA_JOB_MOVE_STATE_MAX] = {
	[HACTL__JOB_MOVE_STATE__JOB_MOVE_PENDING] = "pending",
	[HACTL__JOB_MOVE_STATE__JOB_MOVE_RUNNING] = "running",
	[HACTL__JOB_MOVE_STATE__JOB_MOVE_DONE] = "done",
	[HACTL__JOB_MOVE_STATE__JOB_MOVE_FAILED] = "failed",
};

static const char *name_of(const char *const *names, size_t n, unsigned v)
{
	return v < n && names[v] ? names[v] : "unknown";
}

static int value_of(const char *const *names, size_t n, const char *name)
{
	if (name == NULL || name[0] == 0) {
		return HA_STATE_NONE;
	}
	for (size_t i = 0; i < n; i++) {
		if (names[i] && strcmp(names[i], name) == 0) {
			return (int)i;
		}
	}
	return HA_STATE_NONE;
}

#define N_OF(a) (sizeof(a) / sizeof((a)[0]))

const char *ha_guest_state_str(Hactl__GuestState s)
{
	return name_of(guest_names, N_OF(guest_names), (unsigned)s);
}

int ha_guest_state_from_str(const char *name)
{
	return value_of(guest_names, N_OF(guest_names), name);
}

const char *ha_node_state_str(Hactl__NodeState s)
{
	return name_of(node_names, N_OF(node_names), (unsigned)s);
}

int ha_node_state_from_str(const char *name)
{
	return value_of(node_names, N_OF(node_names), name);
}

const char *ha_fence_state_str(Hactl__FenceState s)
{
	return name_of(fence_names, N_OF(fence_names), (unsigned)s);
}

int ha_fence_state_from_str(const char *name)
{
	return value_of(fence_names, N_OF(fence_names), name);
}

const char *ha_migration_state_str(Hactl__MigrationState s)
{
	return name_of(migration_names, N_OF(migration_names), (unsigned)s);
}

int ha_migration_state_from_str(const char *name)
{
	return value_of(migration_names, N_OF(migration_names), name);
}

const char *ha_migration_phase_str(Hactl__MigrationPhase s)
{
	return name_of(phase_names, N_OF(phase_names), (unsigned)s);
}

int ha_migration_phase_from_str(const char *name)
{
	return value_of(phase_names, N_OF(phase_names), name);
}

const char *ha_job_state_str(Hactl__JobState s)
{
	return name_of(job_names, N_OF(job_names), (unsigned)s);
}

int ha_job_state_from_str(const char *name)
{
	return value_of(job_names, N_OF(job_names), name);
}

const char *ha_job_move_state_str(Hactl__JobMoveState s)
{
	return name_of(job_move_names, N_OF(job_move_names), (unsigned)s);
}

int ha_job_move_state_from_str(const char *name)
{
	return value_of(job_move_names, N_OF(job_move_names), name);
}
