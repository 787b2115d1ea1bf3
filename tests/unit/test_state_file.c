/*
 * test_state_file.c - a state file written before the states became the
 * protocol's enums (tests/unit/fixtures/cluster-state-1: states as names,
 * the only form so far) still loads, and its states read as the enums'
 * values: guest states, desired states, migration states. Whoever carries
 * the values on the wire keeps this file loading.
 *
 * HA_FIXTURE_UPDATE=1 writes the fixture again from the records below
 * (only for a new fixture of a new format: this one must stay as it is).
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "coordinator.h"
#include "harness.h"
#include "hactl_states.h"
#include "util.h"

#define FIXTURE "tests/unit/fixtures/cluster-state-1"

/* The state the fixture holds. */
static void fixture_state(Hactl__ClusterState *cs, Hactl__NodeRecord *nr,
			  Hactl__NodeRecord **np, Hactl__GuestRecord *gr,
			  Hactl__GuestRecord **gp, Hactl__Migration *mg)
{
	static const char *const names[] = { "n1", "n2" };

	for (size_t i = 0; i < 2; i++) {
		hactl__node_record__init(&nr[i]);
		nr[i].id = (uint32_t)i + 1;
		nr[i].name = (char *)names[i];
		np[i] = &nr[i];
	}
	for (size_t i = 0; i < 3; i++) {
		hactl__guest_record__init(&gr[i]);
		hactl__migration__init(&mg[i]);
		gp[i] = &gr[i];
	}
	gr[0].name = "g1";
	gr[0].type = "container";
	gr[0].has_owner = true;
	gr[0].owner = 1;
	gr[0].has_generation = true;
	gr[0].generation = 3;
	gr[0].state = "running";
	gr[0].desired = "running";

	gr[1].name = "g2";
	gr[1].type = "domain";
	gr[1].has_owner = true;
	gr[1].owner = 1;
	gr[1].has_generation = true;
	gr[1].generation = 5;
	gr[1].state = "paused";
	gr[1].desired = "running";
	mg[1].id = 40;
	mg[1].source = 1;
	mg[1].destination = 2;
	mg[1].state = "transferring";
	gr[1].migration = &mg[1];

	gr[2].name = "g3";
	gr[2].type = "container";
	gr[2].has_owner = true;
	gr[2].owner = 2;
	gr[2].has_generation = true;
	gr[2].generation = 2;
	gr[2].state = "stopped";
	gr[2].desired = "stopped";
	mg[2].id = 30;
	mg[2].source = 1;
	mg[2].destination = 2;
	mg[2].state = "committed";
	gr[2].migration = &mg[2];

	cs->has_seq = true;
	cs->seq = 42;
	cs->n_nodes = 2;
	cs->nodes = np;
	cs->n_guests = 3;
	cs->guests = gp;
}

static void check_states(const struct coord_state *st)
{
	const Hactl__GuestRecord *g1 = coord_state_guest(st, "g1");
	const Hactl__GuestRecord *g2 = coord_state_guest(st, "g2");
	const Hactl__GuestRecord *g3 = coord_state_guest(st, "g3");

	CHECK_EQ_INT(st->seq, 42);
	CHECK_EQ_INT(st->n_nodes, 2);
	CHECK(g1 && g2 && g3);
	if (!g1 || !g2 || !g3) {
		return;
	}
	CHECK_EQ_INT(ha_guest_state_from_str(g1->state), HACTL__GUEST_STATE__GUEST_RUNNING);
	CHECK(coord_guest_wants_running(g1));
	CHECK_EQ_INT(coord_migration_state(g1->migration), HA_STATE_NONE);
	CHECK(!coord_migration_in_progress(g1->migration));

	CHECK_EQ_INT(ha_guest_state_from_str(g2->state), HACTL__GUEST_STATE__GUEST_PAUSED);
	CHECK(coord_guest_wants_running(g2));
	CHECK(coord_migration_in_progress(g2->migration));
	CHECK_EQ_INT(g2->migration ? g2->migration->id : 0, 40);

	CHECK_EQ_INT(ha_guest_state_from_str(g3->state), HACTL__GUEST_STATE__GUEST_STOPPED);
	CHECK(!coord_guest_wants_running(g3));
	CHECK_EQ_INT(coord_migration_state(g3->migration),
		     HACTL__MIGRATION_STATE__MIGRATION_COMMITTED);
	CHECK_EQ_INT(g3->owner, 2);
}

int main(void)
{
	const char *src = getenv("HA_SRC_DIR");
	char fixture[PATH_MAX], dir[] = "/tmp/hactl-state-file-XXXXXX";
	struct coord *c = calloc(1, sizeof(*c));
	uint8_t *buf = NULL;
	size_t len = 0;

	if (c == NULL || src == NULL) {
		fprintf(stderr, "HA_SRC_DIR is not set (ctest sets it)\n");
		free(c);
		return 1;
	}
	snprintf(fixture, sizeof(fixture), "%s/%s", src, FIXTURE);
	coord_init(c);
	c->local_id = 1;
	if (getenv("HA_FIXTURE_UPDATE")) {
		Hactl__ClusterState cs = HACTL__CLUSTER_STATE__INIT;
		Hactl__NodeRecord nr[2], *np[2];
		Hactl__GuestRecord gr[3], *gp[3];
		Hactl__Migration mg[3];
		char why[256];

		fixture_state(&cs, nr, np, gr, gp, mg);
		CHECK_EQ_INT(coord_state_import(&c->state, &cs, why, sizeof(why)), 0);
		snprintf(c->state_path, sizeof(c->state_path), "%s", fixture);
		CHECK_EQ_INT(coord_state_save(c), 0);
		coord_state_clear(&c->state);
	}

	/* a copy: a file that does not load is moved aside */
	CHECK(mkdtemp(dir) != NULL);
	snprintf(c->state_path, sizeof(c->state_path), "%s/cluster-state", dir);
	CHECK_EQ_INT(ha_file_read(fixture, 1 << 20, &buf, &len), 0);
	CHECK_EQ_INT(ha_file_write_atomic(c->state_path, buf, len), 0);
	free(buf);

	CHECK_EQ_INT(coord_state_load(c), 0);
	CHECK(access(c->state_path, F_OK) == 0); /* not moved aside */
	check_states(&c->state);

	/* written again by this build and read back: the same states */
	CHECK_EQ_INT(coord_state_save(c), 0);
	coord_state_clear(&c->state);
	CHECK_EQ_INT(coord_state_load(c), 0);
	check_states(&c->state);

	coord_state_clear(&c->state);
	unlink(c->state_path);
	rmdir(dir);
	free(c);
	return ha_test_done("test_state_file");
}
