/*
 * agent_guests.h - the guests of this host: the table, reconciliation with
 * the replicated state, operations in worker threads, snapshots.
 */
#ifndef HA_AGENT_GUESTS_H
#define HA_AGENT_GUESTS_H

#include <stdbool.h>
#include <stdint.h>

#include <qb/qbloop.h>

#include "config.h"
#include "proto/hactl.pb-c.h"

struct agent_guests;

/* How the manager talks back to the coordinator (set by agent_main.c). */
struct agent_guests_io {
	void *arg;
	/* Sends the states of all local guests. */
	void (*report)(void *arg, Hactl__GuestStatus **st, size_t n);
	/* An action finished. */
	void (*action_done)(void *arg, uint64_t req_id, int code, const char *msg,
			    uint64_t value);
	/* The clock of the self-fence, CLOCK_MONOTONIC in ms; NULL: the
	 * system's (tests drive their own). */
	uint64_t (*now_ms)(void *arg);
	/* The wall clock in ms (CLOCK_REALTIME) that snapshot ages are
	 * measured with (common/snapchoice.h); NULL: the system's. */
	uint64_t (*wall_ms)(void *arg);
	/* This host's migration address ([migration] network), the one its
	 * facts announce and sources connect to; NULL or "": none, the
	 * cluster address. Copied. */
	const char *mig_addr;
};

/* Creates the manager and re-attaches to guests left running by a
 * previous agent (from state_dir/guests/). Returns NULL on failure. */
struct agent_guests *agent_guests_new(qb_loop_t *loop, const struct ha_config *cfg,
				      const struct agent_guests_io *io);
/* Frees the manager; guests keep running. Waits for operations in
 * flight. Accepts NULL. */
void agent_guests_free(struct agent_guests *m);

/* Applies the cluster's view (every guest, owners, desired states). */
void agent_guests_reconcile(struct agent_guests *m, const Hactl__AgentGuestsReply *r);

/* Runs an action (snapshot) asked by the coordinator. */
void agent_guests_action(struct agent_guests *m, uint64_t req_id,
			 const Hactl__AgentAction *a);

/* Reads fence.conf again (which method fences this node). */
void agent_guests_reload(struct agent_guests *m);

/* Periodic work: snapshots due, state refresh, report. */
void agent_guests_tick(struct agent_guests *m);

/* Whether a watchdog is armed here and its timeout (0 when not), else
 * why not (@error: a string owned by @m, "" when armed). */
void agent_guests_watchdog(const struct agent_guests *m, bool *armed, uint32_t *timeout_ms,
			   const char **error);
/*
 * The names of the guests this host holds (any state), for the paged
 * guest list: *out is an array the caller frees (free()), its strings
 * belong to @m and stay valid until the next reconcile. Returns the count.
 */
size_t agent_guests_held(const struct agent_guests *m, char ***out);

/* Number of guests running here. */
uint32_t agent_guests_running(const struct agent_guests *m);

#endif
