/*
 * agent_drivers.c - the table of compiled-in guest drivers.
 *
 * Drivers are added here as they land (container, domain).
 */
#include <stddef.h>

#include "driver.h"

static const char *const guest_state_names[AGENT_GUEST_STATE_MAX] = {
	[AGENT_GUEST_DEFINED] = "defined",   [AGENT_GUEST_STARTING] = "starting",
	[AGENT_GUEST_RUNNING] = "running",   [AGENT_GUEST_PAUSED] = "paused",
	[AGENT_GUEST_STOPPING] = "stopping", [AGENT_GUEST_STOPPED] = "stopped",
	[AGENT_GUEST_FAILED] = "failed",
};

const char *agent_guest_state_str(enum agent_guest_state s)
{
	return (unsigned)s < AGENT_GUEST_STATE_MAX ? guest_state_names[s] : "unknown";
}

const struct agent_driver_ops *const agent_driver_table[] = {
	NULL,
};
