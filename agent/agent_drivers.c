/*
 * agent_drivers.c - the compiled-in guest drivers.
 *
 * Each backend file (driver_NAME.c) defines agent_driver_NAME_ops; the
 * build defines HAVE_DRIVER_NAME when the file exists.
 */
#include <stddef.h>
#include <string.h>

#include "driver.h"
#include "hactl_states.h"

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

/* The protocol's GuestState (less UNKNOWN, hactl's alone), whose names
 * are proto/hactl_states.c's. */
_Static_assert((int)AGENT_GUEST_DEFINED == (int)HACTL__GUEST_STATE__GUEST_DEFINED &&
	       (int)AGENT_GUEST_STARTING == (int)HACTL__GUEST_STATE__GUEST_STARTING &&
	       (int)AGENT_GUEST_RUNNING == (int)HACTL__GUEST_STATE__GUEST_RUNNING &&
	       (int)AGENT_GUEST_PAUSED == (int)HACTL__GUEST_STATE__GUEST_PAUSED &&
	       (int)AGENT_GUEST_STOPPING == (int)HACTL__GUEST_STATE__GUEST_STOPPING &&
	       (int)AGENT_GUEST_STOPPED == (int)HACTL__GUEST_STATE__GUEST_STOPPED &&
	       (int)AGENT_GUEST_FAILED == (int)HACTL__GUEST_STATE__GUEST_FAILED &&
	       (int)AGENT_GUEST_STATE_MAX == (int)HACTL__GUEST_STATE__GUEST_UNKNOWN,
	       "agent_guest_state is GuestState");

const char *agent_guest_state_str(enum agent_guest_state s)
{
	return (unsigned)s < AGENT_GUEST_STATE_MAX ? ha_guest_state_str((Hactl__GuestState)s)
						   : "unknown";
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
