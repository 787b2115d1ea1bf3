/*
 * snapchoice.c - which snapshot a failover restores, or a cold start.
 */
#include <errno.h>
#include <stdarg.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "snapchoice.h"
#include "util.h"

#define SKIPPED_SHOWN 3

static void when_str(uint64_t time_ms, char *buf, size_t len)
{
	time_t t = (time_t)(time_ms / 1000);
	struct tm tm;

	if (localtime_r(&t, &tm) == NULL || strftime(buf, len, "%Y-%m-%d %H:%M:%S", &tm) == 0) {
		snprintf(buf, len, "%" PRIu64 " ms", time_ms);
	}
}

static void max_str(uint64_t max_age_ms, char *buf, size_t len)
{
	if (max_age_ms == HA_SNAP_AGE_UNLIMITED) {
		snprintf(buf, len, "no maximum");
	} else {
		snprintf(buf, len, "max %" PRIu64 " s", max_age_ms / 1000);
	}
}

/* Collects "generation N (why)" of what was passed over, a few shown. */
struct skipped {
	char text[400];
	unsigned n;
};

static void skip(struct skipped *s, uint64_t gen, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void skip(struct skipped *s, uint64_t gen, const char *fmt, ...)
{
	size_t used = strlen(s->text);
	va_list ap;

	if (s->n++ >= SKIPPED_SHOWN || used + 2 >= sizeof(s->text)) {
		return;
	}
	snprintf(s->text + used, sizeof(s->text) - used, "%sgeneration %" PRIu64 " (",
		 used ? ", " : "", gen);
	used = strlen(s->text);
	va_start(ap, fmt);
	vsnprintf(s->text + used, sizeof(s->text) - used, fmt, ap);
	va_end(ap);
	used = strlen(s->text);
	snprintf(s->text + used, sizeof(s->text) - used, ")");
}

static void skipped_suffix(const struct skipped *s, const char *lead, char *buf, size_t len)
{
	if (s->n == 0) {
		buf[0] = 0;
		return;
	}
	snprintf(buf, len, "; %s: %s%s", lead, s->text,
		 s->n > SKIPPED_SHOWN ? " and more" : "");
}

void ha_snap_choose(const struct ha_snap_meta *snaps, size_t n, uint64_t now_ms,
		    uint64_t max_age_ms, struct ha_snap_choice *out)
{
	struct skipped sk = { .text = "", .n = 0 };
	char when[64], max[32], tail[480];

	memset(out, 0, sizeof(*out));
	max_str(max_age_ms, max, sizeof(max));
	if (max_age_ms == 0) {
		snprintf(out->why, sizeof(out->why),
			 "no snapshot may be used: failover_snapshot_max_age is auto and "
			 "snapshot_interval is 0 (no periodic snapshots)");
		return;
	}
	for (size_t i = 0; i < n; i++) {
		const struct ha_snap_meta *s = &snaps[i];
		uint64_t t = s->info.time_ms, age;

		if (s->status < 0) {
			const char *c = strstr(s->why, "is corrupt: ");

			skip(&sk, s->gen, "%s%s", c ? "corrupt: " : "",
			     c ? c + 12 : s->why[0] ? s->why : "unreadable");
			continue;
		}
		if (!ha_snap_kind_failover(s->info.kind)) {
			skip(&sk, s->gen, "%s, not a failover point", ha_snap_kind_str(s->info.kind));
			continue;
		}
		if (t == 0) {
			skip(&sk, s->gen, "no time recorded: its age is unknown");
			continue;
		}
		if (t > now_ms + HA_SNAP_CLOCK_SKEW_MS) {
			/* the writer's clock is ahead: its age cannot be known */
			skip(&sk, s->gen, "its time is %" PRIu64 " s ahead of this host's clock: "
			     "the hosts' clocks disagree (NTP)", (t - now_ms) / 1000);
			continue;
		}
		age = now_ms > t ? now_ms - t : 0;
		when_str(t, when, sizeof(when));
		if (age > max_age_ms) {
			/* older generations are older still */
			out->newest_gen = s->gen;
			out->newest_time_ms = t;
			out->age_ms = age;
			skipped_suffix(&sk, "newer ones passed over", tail, sizeof(tail));
			snprintf(out->why, sizeof(out->why),
				 "newest failover snapshot, generation %" PRIu64 " of %s, is %" PRIu64
				 " s old (%s)%s", s->gen, when, age / 1000, max, tail);
			return;
		}
		out->gen = s->gen;
		out->time_ms = t;
		out->age_ms = age;
		skipped_suffix(&sk, "newer ones passed over", tail, sizeof(tail));
		snprintf(out->why, sizeof(out->why),
			 "snapshot generation %" PRIu64 " of %s, %" PRIu64 " s old (%s)%s", s->gen,
			 when, age / 1000, max, tail);
		return;
	}
	skipped_suffix(&sk, "passed over", tail, sizeof(tail));
	snprintf(out->why, sizeof(out->why), "%s%s",
		 n == 0 ? "no snapshot" : "no usable failover snapshot", tail);
}

int ha_snap_choose_stored(const char *shared_dir, const char *guest, uint64_t now_ms,
			  uint64_t max_age_ms, bool verify, struct ha_snap_choice *out)
{
	static __thread struct ha_snap_meta metas[256];
	uint64_t gens[256];
	int n = ha_snap_list(shared_dir, guest, gens, HA_ARRAY_SIZE(gens));

	memset(out, 0, sizeof(*out));
	if (n < 0) {
		snprintf(out->why, sizeof(out->why), "cannot list the snapshots of '%s': %s", guest,
			 strerror(-n));
		return n;
	}
	for (int i = 0; i < n; i++) {
		metas[i].gen = gens[i];
		metas[i].why[0] = 0;
		metas[i].status = ha_snap_info(shared_dir, guest, gens[i], &metas[i].info,
					       metas[i].why, sizeof(metas[i].why));
	}
	for (;;) {
		uint64_t t;
		int i;

		ha_snap_choose(metas, (size_t)n, now_ms, max_age_ms, out);
		if (!verify || out->gen == 0) {
			return 0;
		}
		for (i = 0; i < n && metas[i].gen != out->gen; i++) {
		}
		metas[i].status = ha_snap_verify(shared_dir, guest, out->gen, &t, metas[i].why,
						 sizeof(metas[i].why));
		if (metas[i].status == 0) {
			return 0;
		}
		if (metas[i].status > 0) {
			metas[i].status = -EBADMSG;
		}
	}
}
