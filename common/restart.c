/*
 * restart.c - the restart policy's decisions (restart.h).
 */
#include "restart.h"
#include "util.h"

static const char *const action_names[HA_RESTART_ACTION_MAX] = {
	[HA_RESTART_AGAIN] = "restart",
	[HA_RESTART_GIVE_UP] = "give-up",
	[HA_RESTART_RELOCATE] = "relocate",
	[HA_RESTART_ERROR] = "error",
};

const char *ha_restart_action_str(enum ha_restart_action a)
{
	return ha_enum_str(action_names, HA_RESTART_ACTION_MAX, (unsigned)a);
}

enum ha_restart_action ha_restart_local(uint32_t max_restart, uint32_t fails,
					uint64_t *delay_ms)
{
	uint64_t d = HA_RESTART_DELAY_MS;

	if (fails == 0 || fails > max_restart) {
		*delay_ms = 0;
		return fails == 0 ? HA_RESTART_AGAIN : HA_RESTART_GIVE_UP;
	}
	for (uint32_t i = 1; i < fails && d < HA_RESTART_DELAY_MAX_MS; i++) {
		d *= 2;
	}
	*delay_ms = d < HA_RESTART_DELAY_MAX_MS ? d : HA_RESTART_DELAY_MAX_MS;
	return HA_RESTART_AGAIN;
}

uint32_t ha_restart_fails_next(uint32_t fails, uint64_t ran_ms)
{
	if (ran_ms >= HA_RESTART_STABLE_MS) {
		return 1;
	}
	return fails < UINT32_MAX ? fails + 1 : fails;
}

enum ha_restart_action ha_restart_cluster(uint32_t max_relocate, uint32_t relocations)
{
	return relocations < max_relocate ? HA_RESTART_RELOCATE : HA_RESTART_ERROR;
}
