/*
 * agent_drivers.c - the compiled-in guest drivers.
 *
 * Each backend file (driver_NAME.c) defines agent_driver_NAME_ops; the
 * build defines HAVE_DRIVER_NAME when the file exists.
 */
#include <stddef.h>
#include <string.h>

#include "driver.h"

extern const struct agent_driver_ops agent_driver_container_ops;
extern const struct agent_driver_ops agent_driver_domain_ops;

static const struct agent_driver_ops *const drivers[] = {
#ifdef HAVE_DRIVER_CONTAINER
	&agent_driver_container_ops,
#endif
#ifdef HAVE_DRIVER_DOMAIN
	&agent_driver_domain_ops,
#endif
	NULL,
};

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

/* A driver put in front of the built-in ones (tests); one at a time. */
static const struct agent_driver_ops *override;

void agent_driver_override(const struct agent_driver_ops *ops)
{
	override = ops;
}

const struct agent_driver_ops *agent_driver_find(const char *type)
{
	if (override && type && strcmp(override->name, type) == 0) {
		return override;
	}
	for (size_t i = 0; drivers[i]; i++) {
		if (type && strcmp(drivers[i]->name, type) == 0) {
			return drivers[i];
		}
	}
	return NULL;
}
