/*
 * test_agent_watchdog.c - agent_watchdog on a real watchdog device: the
 * timeout set and read back is at most the bound, the feeder keeps the
 * device alive until the deadline, and a magic close disarms it.
 *
 * A watchdog resets the machine it runs on when it is not fed, so this
 * test runs only where it is told which device it may use
 * (HA_TEST_WATCHDOG=/dev/watchdogN, e.g. softdog loaded with
 * soft_noboot=1 on a test machine); elsewhere it is skipped (77). The
 * refusals that need no device are in test_agent_guests.c.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "agent_watchdog.h"
#include "harness.h"
#include "util.h"

static void sleep_ms(unsigned ms)
{
	struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L };

	while (nanosleep(&ts, &ts) < 0 && errno == EINTR) {
	}
}

int main(void)
{
	const char *dev = getenv("HA_TEST_WATCHDOG");
	struct agent_watchdog *w = NULL;
	char err[512] = "";
	int rc;

	if (dev == NULL || dev[0] == 0 || access(dev, W_OK) < 0) {
		printf("test_agent_watchdog: skipped (set HA_TEST_WATCHDOG to a device it may use)\n");
		return 77;
	}
	/* half of a 5 s self-fence timeout: 2 s */
	rc = agent_watchdog_open(dev, 2500, &w, err, sizeof(err));
	if (rc == -EBUSY) {
		printf("test_agent_watchdog: skipped (%s: in use)\n", dev);
		return 77;
	}
	CHECK_EQ_INT(rc, 0);
	if (rc < 0) {
		fprintf(stderr, "%s\n", err);
		return ha_test_done("test_agent_watchdog");
	}
	CHECK(agent_watchdog_timeout_ms(w) >= 1000);
	CHECK(agent_watchdog_timeout_ms(w) <= 2000);
	/* no deadline yet: not fed */
	CHECK(!agent_watchdog_feed(w));
	/* fed for three timeouts by the feeder thread: the machine lives */
	agent_watchdog_allow(w, ha_mono_ms() + 3 * agent_watchdog_timeout_ms(w));
	CHECK(agent_watchdog_feed(w));
	sleep_ms(3 * agent_watchdog_timeout_ms(w));
	agent_watchdog_allow(w, ha_mono_ms() + 1000);
	CHECK(agent_watchdog_feed(w));
	agent_watchdog_free(w, true);

	/* a bound below the device's resolution is refused before it opens */
	CHECK_EQ_INT(agent_watchdog_open(dev, 999, &w, err, sizeof(err)), -ERANGE);
	return ha_test_done("test_agent_watchdog");
}
