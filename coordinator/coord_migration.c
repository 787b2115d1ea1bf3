/*
 * coord_migration.c - the leader's side of live migration transactions.
 *
 * A migration of guest G from S to D (docs/migration.md):
 *
 *   transferring --(D reports it holds the complete state)--> committed
 *        |                                     owner = D, generation + 1
 *        +--(an agent reports a failure, S or D leaves, --cancel)--> aborted
 *
 * Both ends are commits through CPG, decided here by the leader only.
 * Before the commit the source is the owner and keeps (or gets back) the
 * running guest; the destination holds a paused copy it resumes only after
 * seeing the commit. After the commit the source discards its paused copy.
 */
#include <stdio.h>
#include <string.h>

#include <qb/qblog.h>

#include "coordinator.h"
#include "util.h"

#define RESEND_MS 2000

static void end(struct coord *c, Hactl__GuestRecord *g, bool commit, const char *reason)
{
	Hactl__CpgCommit cm = HACTL__CPG_COMMIT__INIT;
	Hactl__Change ch = HACTL__CHANGE__INIT;
	Hactl__MigrateEndChange me = HACTL__MIGRATE_END_CHANGE__INIT;
	uint64_t now = coord_now_ms(c);

	if (c->mig_sent_id == g->migration->id && now < c->mig_sent_ms + RESEND_MS) {
		return; /* ours is on its way */
	}
	me.guest = g->name;
	me.id = g->migration->id;
	me.commit = commit;
	me.reason = (char *)reason;
	ch.kind_case = HACTL__CHANGE__KIND_MIGRATE_END;
	ch.migrate_end = &me;
	cm.leader = c->local_id;
	cm.seq = c->state.seq + 1;
	cm.change = &ch;
	coord_cpg_send(c, HA_MSG_CPG_COMMIT, &cm.base);
	c->mig_sent_id = g->migration->id;
	c->mig_sent_ms = now;
}

static bool agent_up(struct coord *c, uint32_t id)
{
	struct coord_node *n = coord_state_node(&c->state, id);

	return n && n->agent_connected;
}

void coord_migration_tick(struct coord *c)
{
	coord_metrics_poll(c); /* downtimes reported after their commits */
	if (c->leader != c->local_id || !coord_is_quorate(c) || c->syncing) {
		return;
	}
	for (size_t i = 0; i < c->state.n_guests; i++) {
		Hactl__GuestRecord *g = c->state.guests[i];
		Hactl__Migration *m = g->migration;
		char reason[300];

		if (!coord_migration_in_progress(m)) {
			continue;
		}
		if (!coord_is_member(c, m->destination)) {
			end(c, g, false, "the destination left the cluster");
		} else if (!coord_is_member(c, m->source)) {
			end(c, g, false, "the source left the cluster");
		} else if (!agent_up(c, m->destination)) {
			end(c, g, false, "the destination's agent is gone");
		} else if (!agent_up(c, m->source)) {
			end(c, g, false, "the source's agent is gone");
		} else if (m->error && m->error[0]) {
			snprintf(reason, sizeof(reason), "%s", m->error);
			end(c, g, false, reason);
		} else if (m->received) {
			end(c, g, true, NULL);
		}
	}
}
