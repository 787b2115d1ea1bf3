/*
 * test_states.c - proto/hactl_states.c: every state of the protocol's
 * enums has its name, the name gives the state back, and what is no
 * state's name (NULL, "", another case, another enum's name) gives none.
 * The names are the wire's and hactl's: a few are pinned here.
 */
#include <string.h>

#include "harness.h"
#include "hactl_states.h"

#define ROUND_TRIP(prefix, type, max)                                          \
	do {                                                                   \
		for (int v = 0; v < (max); v++) {                              \
			const char *n = prefix##_str((type)v);                 \
			CHECK(n != NULL && n[0] != 0);                         \
			CHECK_EQ_INT(prefix##_from_str(n), v);                 \
		}                                                              \
		CHECK(strcmp(prefix##_str((type)(max)), "unknown") == 0);      \
		CHECK_EQ_INT(prefix##_from_str(NULL), HA_STATE_NONE);          \
		CHECK_EQ_INT(prefix##_from_str(""), HA_STATE_NONE);            \
		CHECK_EQ_INT(prefix##_from_str("no-such-state"), HA_STATE_NONE); \
	} while (0)

int main(void)
{
	ROUND_TRIP(ha_guest_state, Hactl__GuestState, HA_GUEST_STATE_MAX);
	ROUND_TRIP(ha_node_state, Hactl__NodeState, HA_NODE_STATE_MAX);
	ROUND_TRIP(ha_fence_state, Hactl__FenceState, HA_FENCE_STATE_MAX);
	ROUND_TRIP(ha_migration_state, Hactl__MigrationState, HA_MIGRATION_STATE_MAX);
	ROUND_TRIP(ha_migration_phase, Hactl__MigrationPhase, HA_MIGRATION_PHASE_MAX);
	ROUND_TRIP(ha_job_state, Hactl__JobState, HA_JOB_STATE_MAX);
	ROUND_TRIP(ha_job_move_state, Hactl__JobMoveState, HA_JOB_MOVE_STATE_MAX);

	/* the names on the wire, in state files and in hactl's output */
	CHECK(strcmp(ha_guest_state_str(HACTL__GUEST_STATE__GUEST_DEFINED), "defined") == 0);
	CHECK(strcmp(ha_guest_state_str(HACTL__GUEST_STATE__GUEST_RUNNING), "running") == 0);
	CHECK(strcmp(ha_guest_state_str(HACTL__GUEST_STATE__GUEST_UNKNOWN), "unknown") == 0);
	CHECK(strcmp(ha_node_state_str(HACTL__NODE_STATE__NODE_MAINTENANCE), "maintenance") == 0);
	CHECK(strcmp(ha_fence_state_str(HACTL__FENCE_STATE__FENCE_UNCONFIRMED), "unconfirmed") == 0);
	CHECK(strcmp(ha_migration_state_str(HACTL__MIGRATION_STATE__MIGRATION_COMMITTED),
		     "committed") == 0);
	CHECK(strcmp(ha_migration_phase_str(HACTL__MIGRATION_PHASE__PHASE_RECEIVED),
		     "received") == 0);
	CHECK(strcmp(ha_job_state_str(HACTL__JOB_STATE__JOB_RUNNING), "running") == 0);
	CHECK(strcmp(ha_job_state_str(HACTL__JOB_STATE__JOB_CANCELLING), "cancelling") == 0);
	CHECK(strcmp(ha_job_state_str(HACTL__JOB_STATE__JOB_DONE), "done") == 0);
	CHECK(strcmp(ha_job_state_str(HACTL__JOB_STATE__JOB_CANCELLED), "cancelled") == 0);
	CHECK(strcmp(ha_job_move_state_str(HACTL__JOB_MOVE_STATE__JOB_MOVE_PENDING),
		     "pending") == 0);
	CHECK(strcmp(ha_job_move_state_str(HACTL__JOB_MOVE_STATE__JOB_MOVE_RUNNING),
		     "running") == 0);
	CHECK(strcmp(ha_job_move_state_str(HACTL__JOB_MOVE_STATE__JOB_MOVE_DONE), "done") == 0);
	CHECK(strcmp(ha_job_move_state_str(HACTL__JOB_MOVE_STATE__JOB_MOVE_FAILED),
		     "failed") == 0);

	/* exact names only */
	CHECK_EQ_INT(ha_guest_state_from_str("Running"), HA_STATE_NONE);
	CHECK_EQ_INT(ha_guest_state_from_str("running "), HA_STATE_NONE);
	CHECK_EQ_INT(ha_node_state_from_str("idle"), HA_STATE_NONE);
	CHECK_EQ_INT(ha_migration_state_from_str("received"), HA_STATE_NONE);
	CHECK_EQ_INT(ha_migration_phase_from_str("committed"), HA_STATE_NONE);
	CHECK_EQ_INT(ha_job_state_from_str("pending"), HA_STATE_NONE);
	CHECK_EQ_INT(ha_job_move_state_from_str("cancelled"), HA_STATE_NONE);
	return ha_test_done("test_states");
}
