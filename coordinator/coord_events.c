/*
 * coord_events.c - the recent history of this coordinator (`hactl events`):
 * commits, membership, fencing, recovery. Every node records what it
 * applied, so histories agree up to timing.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <qb/qblog.h>

#include "coordinator.h"
#include "util.h"

void coord_event(struct coord *c, const char *fmt, ...)
{
	char text[1024], stamp[32];
	struct timespec ts;
	struct tm tm;
	va_list ap;
	size_t slot;
	char *line;

	clock_gettime(CLOCK_REALTIME, &ts);
	localtime_r(&ts.tv_sec, &tm);
	strftime(stamp, sizeof(stamp), "%Y-%m-%d %H:%M:%S", &tm);
	va_start(ap, fmt);
	vsnprintf(text, sizeof(text), fmt, ap);
	va_end(ap);
	if (asprintf(&line, "%s.%03ld %s", stamp, ts.tv_nsec / 1000000, text) < 0) {
		return;
	}
	slot = (c->events_head + c->n_events) % COORD_EVENTS_MAX;
	if (c->n_events == COORD_EVENTS_MAX) {
		free(c->events[c->events_head]);
		c->events_head = (c->events_head + 1) % COORD_EVENTS_MAX;
		slot = (c->events_head + c->n_events - 1) % COORD_EVENTS_MAX;
	} else {
		c->n_events++;
	}
	c->events[slot] = line;
}

void coord_events_free(struct coord *c)
{
	for (size_t i = 0; i < COORD_EVENTS_MAX; i++) {
		free(c->events[i]);
		c->events[i] = NULL;
	}
	c->n_events = 0;
}
