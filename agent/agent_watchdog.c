/*
 * agent_watchdog.c - the watchdog device of the self-fence (see
 * agent_watchdog.h and docs/failover.md).
 *
 * Linux watchdog API (Documentation/watchdog/watchdog-api.rst): opening
 * the device starts the timer, every write restarts it, WDIOC_SETTIMEOUT
 * takes seconds and writes back what the driver chose, and a close after
 * the magic character 'V' stops the timer; any other close leaves it
 * running (unless the driver was built with nowayout, where nothing stops
 * it).
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#include <linux/watchdog.h>

#include <qb/qblog.h>

#include "agent_watchdog.h"
#include "util.h"

#define FEED_PERIOD_MAX_MS 250

struct agent_watchdog {
	int fd;
	uint32_t timeout_ms;
	uint32_t period_ms;
	char path[256];
	pthread_t thread;
	pthread_mutex_t lock;
	pthread_cond_t cond;   /* CLOCK_MONOTONIC */
	uint64_t until_ms;     /* under lock */
	bool stop;             /* under lock */
	bool thread_ok;
};

/* Disarms and closes @fd; false when the magic write failed. */
static bool magic_close(int fd)
{
	bool ok = write(fd, "V", 1) == 1;

	close(fd);
	return ok;
}

static void *feeder(void *arg)
{
	struct agent_watchdog *w = arg;

	pthread_mutex_lock(&w->lock);
	while (!w->stop) {
		struct timespec ts;
		uint64_t ns;

		if (ha_mono_ms() < w->until_ms && write(w->fd, "a", 1) != 1) {
			qb_log(LOG_ERR, "cannot feed the watchdog %s: %s", w->path, strerror(errno));
		}
		clock_gettime(CLOCK_MONOTONIC, &ts);
		ns = (uint64_t)ts.tv_nsec + (uint64_t)w->period_ms * 1000000ull;
		ts.tv_sec += (time_t)(ns / 1000000000ull);
		ts.tv_nsec = (long)(ns % 1000000000ull);
		pthread_cond_timedwait(&w->cond, &w->lock, &ts);
	}
	pthread_mutex_unlock(&w->lock);
	return NULL;
}

int agent_watchdog_open(const char *path, uint32_t max_timeout_ms, struct agent_watchdog **out,
			char *err, size_t errlen)
{
	struct agent_watchdog *w;
	pthread_condattr_t ca;
	int fd, secs, got = 0, rc;

	*out = NULL;
	if (max_timeout_ms < 1000) {
		snprintf(err, errlen, "watchdog %s: a timeout of at most %u ms is below the "
			 "device's one-second resolution", path, max_timeout_ms);
		return -ERANGE;
	}
	fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0) {
		rc = -errno;
		snprintf(err, errlen, "watchdog %s: %s", path, strerror(errno));
		return rc;
	}
	/* From here the timer runs: every failure below disarms it again. */
	secs = (int)(max_timeout_ms / 1000);
	if (ioctl(fd, WDIOC_SETTIMEOUT, &secs) < 0) {
		rc = -errno;
		snprintf(err, errlen, "watchdog %s: cannot set a timeout of %d s: %s", path,
			 (int)(max_timeout_ms / 1000), strerror(errno));
		magic_close(fd);
		return rc;
	}
	if (ioctl(fd, WDIOC_GETTIMEOUT, &got) < 0) {
		rc = -errno;
		snprintf(err, errlen, "watchdog %s: cannot read its timeout back: %s", path,
			 strerror(errno));
		magic_close(fd);
		return rc;
	}
	if (got <= 0 || (uint64_t)got * 1000u > max_timeout_ms) {
		snprintf(err, errlen, "watchdog %s: asked for %d s, the device took %d s "
			 "(more than %u ms)", path, (int)(max_timeout_ms / 1000), got,
			 max_timeout_ms);
		magic_close(fd);
		return -ERANGE;
	}
	w = calloc(1, sizeof(*w));
	if (w == NULL) {
		snprintf(err, errlen, "watchdog %s: out of memory", path);
		magic_close(fd);
		return -ENOMEM;
	}
	w->fd = fd;
	w->timeout_ms = (uint32_t)got * 1000u;
	w->period_ms = w->timeout_ms / 4 < FEED_PERIOD_MAX_MS ? w->timeout_ms / 4 :
								FEED_PERIOD_MAX_MS;
	snprintf(w->path, sizeof(w->path), "%s", path);
	pthread_mutex_init(&w->lock, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&w->cond, &ca);
	pthread_condattr_destroy(&ca);
	rc = pthread_create(&w->thread, NULL, feeder, w);
	if (rc != 0) {
		snprintf(err, errlen, "watchdog %s: cannot start the feeder: %s", path,
			 strerror(rc));
		agent_watchdog_free(w, true);
		return -rc;
	}
	w->thread_ok = true;
	*out = w;
	return 0;
}

uint32_t agent_watchdog_timeout_ms(const struct agent_watchdog *w)
{
	return w->timeout_ms;
}

void agent_watchdog_allow(struct agent_watchdog *w, uint64_t until_mono_ms)
{
	pthread_mutex_lock(&w->lock);
	w->until_ms = until_mono_ms;
	pthread_cond_signal(&w->cond);
	pthread_mutex_unlock(&w->lock);
}

bool agent_watchdog_feed(struct agent_watchdog *w)
{
	bool fed = false;

	pthread_mutex_lock(&w->lock);
	if (ha_mono_ms() < w->until_ms) {
		fed = write(w->fd, "a", 1) == 1;
	}
	pthread_mutex_unlock(&w->lock);
	return fed;
}

void agent_watchdog_free(struct agent_watchdog *w, bool disarm)
{
	if (w == NULL) {
		return;
	}
	if (w->thread_ok) {
		pthread_mutex_lock(&w->lock);
		w->stop = true;
		pthread_cond_signal(&w->cond);
		pthread_mutex_unlock(&w->lock);
		pthread_join(w->thread, NULL);
	}
	if (disarm) {
		if (!magic_close(w->fd)) {
			qb_log(LOG_WARNING, "watchdog %s: not disarmed (magic close failed)", w->path);
		}
	} else {
		close(w->fd);
	}
	pthread_mutex_destroy(&w->lock);
	pthread_cond_destroy(&w->cond);
	free(w);
}
