/*
 * agent_watchdog.h - the host's watchdog device (/dev/watchdog), the
 * hardware half of the self-fence.
 *
 * The agent arms the device with a timeout of at most half of
 * self_fence_timeout_ms (WDIOC_SETTIMEOUT, checked with WDIOC_GETTIMEOUT)
 * and keeps it alive only up to a deadline that its event loop moves
 * forward while this host may run guests (quorate, or holding none). A
 * feeder thread writes to the device until that deadline, so a slow call
 * on the loop does not reset a healthy host, while a hung loop stops the
 * feeding at the same instant the self-fence would have stopped the
 * guests: the host is reset at most (deadline + device timeout) later.
 */
#ifndef HA_AGENT_WATCHDOG_H
#define HA_AGENT_WATCHDOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct agent_watchdog;

/*
 * Opens @path and sets its timeout to the largest whole number of seconds
 * not above @max_timeout_ms (at least one second). The timeout read back
 * must be within that bound, or the device is disarmed again and refused.
 * The device is not fed until agent_watchdog_allow() names a deadline.
 * Returns 0 and *out (free with agent_watchdog_free), or -errno with one
 * line in @err: the device does not open, is not a watchdog (ENOTTY), or
 * cannot take such a timeout (ERANGE).
 */
int agent_watchdog_open(const char *path, uint32_t max_timeout_ms, struct agent_watchdog **out,
			char *err, size_t errlen);

/* The timeout the device took, in ms. */
uint32_t agent_watchdog_timeout_ms(const struct agent_watchdog *w);

/* Feeds the device until @until_mono_ms (CLOCK_MONOTONIC, ms); a smaller
 * value than before is taken as well (it only shortens the feeding). */
void agent_watchdog_allow(struct agent_watchdog *w, uint64_t until_mono_ms);

/* Feeds the device once now when the deadline allows; false otherwise. */
bool agent_watchdog_feed(struct agent_watchdog *w);

/*
 * Stops the feeder and closes the device. @disarm: magic close ('V'), the
 * timer stops; otherwise the timer keeps running and resets the host
 * unless a new agent opens and feeds it in time. Accepts NULL.
 */
void agent_watchdog_free(struct agent_watchdog *w, bool disarm);

#endif
