/*
 * coord_restart.c - the leader's side of the restart policy.
 *
 * The owner's agent restarts a failing guest in place (with backoff) up to
 * [ha] max_restart times, then reports that it gave up. The leader then
 * commits a relocation (the engine's node other than the owner) or, once
 * [ha] max_relocate relocations were made, state error; the decision is
 * coord_restart_decide() (pure, coord_place.c). docs/failover.md,
 * "Restart policy".
 */
#include <stdio.h>
#include <string.h>

#include <qb/qblog.h>

#include "coordinator.h"
#include "util.h"

#define RESEND_MS 5000

void coord_restart_tick(struct coord *c)
{
	struct coord_view v = { .members = c->members, .n_members = c->n_members,
				.policy = c->bal.policy };
	uint64_t now = coord_now_ms(c);

	if (c->leader != c->local_id || !coord_is_quorate(c) || c->syncing) {
		return;
	}
	if (c->restart_sent_seq == c->state.seq && now < c->restart_sent_ms + RESEND_MS) {
		return; /* our last decision is on its way */
	}
	for (size_t i = 0; i < c->state.n_guests; i++) {
		Hactl__GuestRelocateChange rc;
		Hactl__Change ch = HACTL__CHANGE__INIT;
		Hactl__CpgCommit cm = HACTL__CPG_COMMIT__INIT;
		char node[COORD_NAME_MAX + 1], reason[512], desc[768];

		if (coord_restart_decide(&c->state, &v, c->state.guests[i], &rc, node,
					 sizeof(node), reason, sizeof(reason)) <= 0) {
			continue;
		}
		ch.kind_case = HACTL__CHANGE__KIND_GUEST_RELOCATE;
		ch.guest_relocate = &rc;
		coord_change_describe(&ch, desc, sizeof(desc));
		qb_log(LOG_NOTICE, "restart policy: %s", desc);
		cm.leader = c->local_id;
		cm.seq = c->state.seq + 1;
		cm.change = &ch;
		if (coord_cpg_send(c, HA_MSG_CPG_COMMIT, &cm.base) == 0) {
			c->restart_sent_seq = c->state.seq;
			c->restart_sent_ms = now;
		}
		return; /* one per round: the next sees its result */
	}
}
