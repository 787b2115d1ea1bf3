/*
 * test_snapchoice.c - which snapshot a failover restores (issue 20): ages
 * against the maximum, manual snapshots against marked ones and those
 * written before kinds, missing and corrupt metadata, a writer's clock
 * ahead of this host's; then the same on real generations on disk, a
 * corrupt chosen one passed over.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "harness.h"
#include "snapchoice.h"
#include "util.h"

#define NOW 1796644863000ull /* 2026-12-07 12:01:03 UTC */
#define S 1000ull

static struct ha_snap_meta meta(uint64_t gen, enum ha_snap_kind kind, uint64_t time_ms)
{
	struct ha_snap_meta m;

	memset(&m, 0, sizeof(m));
	m.gen = gen;
	m.info.kind = kind;
	m.info.time_ms = time_ms;
	return m;
}

static void expect(const struct ha_snap_meta *s, size_t n, uint64_t max_ms, uint64_t want_gen,
		   const char *want_why)
{
	struct ha_snap_choice c;

	ha_snap_choose(s, n, NOW, max_ms, &c);
	CHECK_EQ_INT(c.gen, want_gen);
	if (strcmp(c.why, want_why) != 0) {
		ha_test_failures++;
		fprintf(stderr, "why\n  got:  %s\n  want: %s\n", c.why, want_why);
	}
	ha_test_checks++;
}

static void pure_cases(void)
{
	struct ha_snap_meta s[4] = { 0 };
	struct ha_snap_choice c;

	/* nothing at all */
	expect(s, 0, 90 * S, 0, "no snapshot");
	/* a periodic one inside the maximum */
	s[0] = meta(4, HA_SNAP_KIND_PERIODIC, NOW - 14 * S);
	expect(s, 1, 90 * S, 4, "snapshot generation 4 of 2026-12-07 12:00:49, 14 s old (max 90 s)");
	ha_snap_choose(s, 1, NOW, 90 * S, &c);
	CHECK_EQ_INT(c.age_ms, 14 * S);
	CHECK_EQ_INT(c.time_ms, NOW - 14 * S);
	/* exactly the maximum: still allowed; one ms more: cold */
	s[0] = meta(4, HA_SNAP_KIND_PERIODIC, NOW - 90 * S);
	expect(s, 1, 90 * S, 4, "snapshot generation 4 of 2026-12-07 11:59:33, 90 s old (max 90 s)");
	s[0] = meta(4, HA_SNAP_KIND_PERIODIC, NOW - 90 * S - 1);
	expect(s, 1, 90 * S, 0, "newest failover snapshot, generation 4 of 2026-12-07 11:59:32, "
				 "is 90 s old (max 90 s)");
	/* far too old; an older one behind it is older still */
	s[0] = meta(4, HA_SNAP_KIND_PERIODIC, NOW - 900 * S);
	s[1] = meta(3, HA_SNAP_KIND_PERIODIC, NOW - 960 * S);
	expect(s, 2, 90 * S, 0, "newest failover snapshot, generation 4 of 2026-12-07 11:46:03, "
				 "is 900 s old (max 90 s)");
	ha_snap_choose(s, 2, NOW, 90 * S, &c);
	CHECK_EQ_INT(c.newest_gen, 4);
	CHECK_EQ_INT(c.age_ms, 900 * S);
	/* unlimited: any age */
	expect(s, 2, HA_SNAP_AGE_UNLIMITED, 4,
	       "snapshot generation 4 of 2026-12-07 11:46:03, 900 s old (no maximum)");
	/* auto without periodic snapshots: nothing may be used */
	expect(s, 2, 0, 0, "no snapshot may be used: failover_snapshot_max_age is auto and "
			    "snapshot_interval is 0 (no periodic snapshots)");

	/* a newer manual snapshot (before an upgrade) is passed over for the
	 * newest periodic one */
	s[0] = meta(5, HA_SNAP_KIND_MANUAL, NOW - 5 * S);
	s[1] = meta(4, HA_SNAP_KIND_PERIODIC, NOW - 30 * S);
	expect(s, 2, 90 * S, 4, "snapshot generation 4 of 2026-12-07 12:00:33, 30 s old (max 90 s); "
				 "newer ones passed over: generation 5 (manual, not a failover point)");
	/* the manual one alone: cold */
	expect(s, 1, 90 * S, 0, "no usable failover snapshot; passed over: generation 5 (manual, not "
				 "a failover point)");
	/* marked with --failover-point: used */
	s[0] = meta(5, HA_SNAP_KIND_FAILOVER, NOW - 5 * S);
	expect(s, 2, 90 * S, 5, "snapshot generation 5 of 2026-12-07 12:00:58, 5 s old (max 90 s)");
	/* marked, but too old: the rule holds for marked ones too */
	s[0] = meta(5, HA_SNAP_KIND_FAILOVER, NOW - 100 * S);
	expect(s, 1, 90 * S, 0, "newest failover snapshot, generation 5 of 2026-12-07 11:59:23, is "
				 "100 s old (max 90 s)");
	/* written before kinds were recorded: a failover point, age-limited */
	s[0] = meta(2, HA_SNAP_KIND_LEGACY, NOW - 60 * S);
	expect(s, 1, 90 * S, 2, "snapshot generation 2 of 2026-12-07 12:00:03, 60 s old (max 90 s)");
	s[0] = meta(2, HA_SNAP_KIND_LEGACY, NOW - 6000 * S);
	expect(s, 1, 90 * S, 0, "newest failover snapshot, generation 2 of 2026-12-07 10:21:03, is "
				 "6000 s old (max 90 s)");

	/* corrupt metadata (torn MANIFEST) is passed over */
	s[0] = meta(6, HA_SNAP_KIND_PERIODIC, 0);
	s[0].status = -EBADMSG;
	snprintf(s[0].why, sizeof(s[0].why), "snapshot 'c1' generation 6 is corrupt: MANIFEST is torn");
	s[1] = meta(5, HA_SNAP_KIND_PERIODIC, NOW - 20 * S);
	expect(s, 2, 90 * S, 5, "snapshot generation 5 of 2026-12-07 12:00:43, 20 s old (max 90 s); "
				 "newer ones passed over: generation 6 (corrupt: MANIFEST is torn)");
	/* no time recorded: its age is unknown, not used */
	s[0] = meta(6, HA_SNAP_KIND_PERIODIC, 0);
	expect(s, 2, HA_SNAP_AGE_UNLIMITED, 5,
	       "snapshot generation 5 of 2026-12-07 12:00:43, 20 s old (no maximum); newer ones "
	       "passed over: generation 6 (no time recorded: its age is unknown)");

	/* the writer's clock: a little ahead counts as age 0 ... */
	s[0] = meta(7, HA_SNAP_KIND_PERIODIC, NOW + HA_SNAP_CLOCK_SKEW_MS);
	expect(s, 1, 90 * S, 7, "snapshot generation 7 of 2026-12-07 12:01:08, 0 s old (max 90 s)");
	/* ... more is a wrong clock: its age cannot be known, not used */
	s[0] = meta(7, HA_SNAP_KIND_PERIODIC, NOW + 40 * S);
	s[1] = meta(6, HA_SNAP_KIND_PERIODIC, NOW - 50 * S);
	expect(s, 2, 90 * S, 6, "snapshot generation 6 of 2026-12-07 12:00:13, 50 s old (max 90 s); "
				 "newer ones passed over: generation 7 (its time is 40 s ahead of this "
				 "host's clock: the hosts' clocks disagree (NTP))");
	expect(s, 1, 90 * S, 0, "no usable failover snapshot; passed over: generation 7 (its time is "
				 "40 s ahead of this host's clock: the hosts' clocks disagree (NTP))");

	/* many passed over: a few named */
	s[0] = meta(9, HA_SNAP_KIND_MANUAL, NOW - 1 * S);
	s[1] = meta(8, HA_SNAP_KIND_MANUAL, NOW - 2 * S);
	s[2] = meta(7, HA_SNAP_KIND_MANUAL, NOW - 3 * S);
	s[3] = meta(6, HA_SNAP_KIND_MANUAL, NOW - 4 * S);
	expect(s, 4, 90 * S, 0, "no usable failover snapshot; passed over: generation 9 (manual, not "
				 "a failover point), generation 8 (manual, not a failover point), "
				 "generation 7 (manual, not a failover point) and more");
}

/* The same rule over generations on disk; the chosen one's files are
 * checked and a corrupt one is passed over. */
static void stored_cases(void)
{
	char root[] = "/tmp/ha-test-snapchoice-XXXXXX";
	char tmp[4096], path[4200], err[512], dir[4096];
	struct ha_snap_choice c;
	uint64_t gen;
	static const struct {
		enum ha_snap_kind kind;
		uint64_t age_s;
	} gens[] = {
		{ HA_SNAP_KIND_PERIODIC, 80 },  /* 1 */
		{ HA_SNAP_KIND_PERIODIC, 20 },  /* 2: corrupted below */
		{ HA_SNAP_KIND_MANUAL, 10 },    /* 3 */
	};

	CHECK(mkdtemp(root) != NULL);
	CHECK_EQ_INT(ha_snap_choose_stored(root, "c1", NOW, 90 * S, true, &c), 0);
	CHECK_EQ_INT(c.gen, 0);
	CHECK(strcmp(c.why, "no snapshot") == 0);
	for (size_t i = 0; i < HA_ARRAY_SIZE(gens); i++) {
		CHECK_EQ_INT(ha_snap_begin(root, "c1", &gen, tmp, sizeof(tmp)), 0);
		snprintf(path, sizeof(path), "%s/state", tmp);
		mkdir(path, 0700);
		snprintf(path, sizeof(path), "%s/state/pages.img", tmp);
		CHECK_EQ_INT(ha_file_write_atomic(path, "pages", 5), 0);
		CHECK_EQ_INT(ha_snap_commit(root, "c1", gen, tmp, "[guest]\n", 8,
					    NOW - gens[i].age_s * S, gens[i].kind, err, sizeof(err)),
			     0);
	}
	/* without checking files: generation 2 */
	CHECK_EQ_INT(ha_snap_choose_stored(root, "c1", NOW, 90 * S, false, &c), 0);
	CHECK_EQ_INT(c.gen, 2);
	/* its pages rewritten: checked, it is passed over for generation 1 */
	ha_snap_gen_dir(root, "c1", 2, dir, sizeof(dir));
	snprintf(path, sizeof(path), "%s/state/pages.img", dir);
	CHECK_EQ_INT(ha_file_write_atomic(path, "PAGES", 5), 0);
	CHECK_EQ_INT(ha_snap_choose_stored(root, "c1", NOW, 90 * S, true, &c), 0);
	CHECK_EQ_INT(c.gen, 1);
	CHECK(strstr(c.why, "generation 1 of 2026-12-07 11:59:43, 80 s old (max 90 s); newer ones "
			    "passed over: generation 3 (manual, not a failover point), generation 2 "
			    "(corrupt: state/pages.img: checksum mismatch)") != NULL);
	/* 60 s max: generation 1 is too old, so cold */
	CHECK_EQ_INT(ha_snap_choose_stored(root, "c1", NOW, 60 * S, true, &c), 0);
	CHECK_EQ_INT(c.gen, 0);
	CHECK(strstr(c.why, "newest failover snapshot, generation 1 of 2026-12-07 11:59:43, is 80 s "
			    "old (max 60 s)") != NULL);
	CHECK_EQ_INT(ha_rm_rf(root), 0);
}

int main(void)
{
	setenv("TZ", "UTC0", 1);
	tzset();
	pure_cases();
	stored_cases();
	return ha_test_done("test_snapchoice");
}
