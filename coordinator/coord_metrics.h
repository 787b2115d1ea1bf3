/*
 * coord_metrics.h - what a coordinator counts for /metrics and the
 * status page (coord_metrics.c, coord_http.c; docs/monitoring.md).
 *
 * Counters count what this coordinator applied: every member applies the
 * same commits in the same order, so their counters agree from the
 * moment they all took part (a member that joined later counts from
 * then). Gauges are read from struct coord when a page is asked for.
 */
#ifndef HA_COORD_METRICS_H
#define HA_COORD_METRICS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "proto/hactl.pb-c.h"

struct coord;

#define COORD_HIST_MAX 16

/* A Prometheus histogram: per bucket here, cumulative on output; its
 * bounds are coord_metrics.c's (all zeros is an empty histogram). */
struct coord_hist {
	uint64_t counts[COORD_HIST_MAX + 1]; /* last: above every bound (+Inf) */
	uint64_t count;
	double sum;
};

/* A committed migration whose downtime the source has not reported yet
 * (it reports its final figures after the commit). */
struct coord_metrics_wait {
	uint64_t migration;            /* 0 = free */
	uint64_t since_ms;             /* monotonic */
	char guest[64];
};

#define COORD_METRICS_WAIT_MAX 32
#define COORD_METRICS_WAIT_MS (5u * 60u * 1000u)

/* HTTP answers by status code (coord_http.c). */
enum coord_http_code {
	COORD_HTTP_200 = 0,
	COORD_HTTP_400,
	COORD_HTTP_401,
	COORD_HTTP_404,
	COORD_HTTP_405,
	COORD_HTTP_500,
	COORD_HTTP_OTHER,
	COORD_HTTP_CODE_MAX
};

const char *coord_http_code_str(enum coord_http_code k);

struct coord_metrics {
	uint64_t commits_applied;
	uint64_t cpg_received;         /* CPG messages delivered to us */
	uint64_t cpg_sent;             /* CPG messages corosync took */
	/* migrations */
	uint64_t mig_started;
	uint64_t mig_committed;
	uint64_t mig_aborted;
	struct coord_hist mig_duration; /* start commit to commit, committed */
	struct coord_hist mig_downtime; /* the source's figure, committed */
	struct coord_metrics_wait waits[COORD_METRICS_WAIT_MAX];
	/* failover (RecoverChange commits), per guest */
	uint64_t failover_restarted;
	uint64_t failover_no_room;
	uint64_t failover_stopped;     /* restart policy none */
	struct coord_hist failover_time; /* node lost to its guest's restart commit */
	/* fencing */
	uint64_t fence_attempts;       /* fence levels run (status "fencing") */
	uint64_t fence_failures;       /* status "failed" */
	uint64_t fenced_agent, fenced_watchdog, fenced_manual, fenced_other;
	/* balancing and jobs */
	uint64_t balance_rounds;       /* rounds this coordinator ran as leader */
	uint64_t balance_moves;        /* moves of committed balance jobs */
	uint64_t jobs_evacuate, jobs_return, jobs_balance;
	/* HTTP */
	uint64_t http[COORD_HTTP_CODE_MAX];
	/* between coord_metrics_commit_begin() and _end(): the owners and
	 * generations of a RecoverChange's guests before it applied */
	uint32_t *pre_owner;
	uint64_t *pre_gen;
	size_t n_pre;
};

/* All zeros is a valid start (nothing counted); _free releases what a
 * commit in progress holds. */
void coord_metrics_free(struct coord_metrics *m);

/* Around the application of a commit's @ch (coord_replica.c): _begin
 * before coord_change_apply(), _end after it with its result (always
 * called when _begin was). */
void coord_metrics_commit_begin(struct coord *c, const Hactl__Change *ch);
void coord_metrics_commit_end(struct coord *c, const Hactl__Change *ch, int rc);
/* The leader's fencing status as every member receives it. */
void coord_metrics_fence_status(struct coord *c, const Hactl__CpgFenceStatus *fs);
/* Picks up downtimes that sources reported after their commits; cheap,
 * called after guest status reports and from the fence tick. */
void coord_metrics_poll(struct coord *c);

/*
 * The Prometheus text exposition (format 0.0.4) of @c. Returns a
 * malloc'd NUL-terminated text (length in *len) that the caller frees,
 * or NULL when out of memory.
 */
char *coord_metrics_text(const struct coord *c, size_t *len);

/*
 * The status page's data as JSON (json-c): node, cluster, nodes,
 * guests (at most COORD_STATUS_GUESTS_MAX), migrations in progress, jobs
 * and the newest @max_events events. Returns a malloc'd text the caller
 * frees, or NULL when out of memory.
 */
#define COORD_STATUS_GUESTS_MAX 5000
char *coord_status_json(const struct coord *c, unsigned max_events, size_t *len);

#endif
