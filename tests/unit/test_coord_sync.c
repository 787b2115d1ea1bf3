/*
 * test_coord_sync.c - the coordinators' state sync on a replayed CPG: three
 * real coordinators (coord_replica.c) whose CPG messages go through one
 * totally ordered queue that the test delivers, in order, to every member.
 *
 *  - a state of thousands of guests, larger than any one CPG message and
 *    than the 8 MiB a CpgSyncState may have, reaches every member (it
 *    used to fail to send, and every member stayed "syncing");
 *  - a member whose state was lost sends it again when the sync stalls,
 *    and the sync completes (it used to wait forever);
 *  - pieces out of order, oversized or cut off by a new round are refused
 *    before anything is allocated and counted, never a crash.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <qb/qbloop.h>

#include "coordinator.h"
#include "harness.h"
#include "util.h"

#define N_NODES 3
#define N_GUESTS 4000

static struct coord nodes[N_NODES];
static qb_loop_t *loop;
static char tmpdir[64];

/* ---- the replayed CPG: one ordered queue ---- */

struct bus_msg {
	struct bus_msg *next;
	uint32_t sender;
	size_t len;
	uint8_t data[];
};

static struct bus_msg *bus_head, **bus_tail = &bus_head;
static size_t bus_max_len;    /* largest message carried */
static uint32_t drop_sync_from; /* drops this node's sync messages ... */
static int drop_left;           /* ... this many times */

static int bus_tx(void *arg, uint32_t sender, const void *buf, size_t len)
{
	struct bus_msg *m;
	uint16_t type;

	memcpy(&type, (const uint8_t *)buf + 6, sizeof(type)); /* envelope type, LE */
	if (sender == drop_sync_from && drop_left > 0 &&
	    (type == HA_MSG_CPG_SYNC_STATE || type == HA_MSG_CPG_SYNC_CHUNK)) {
		drop_left--;
		return -EMSGSIZE; /* refused: the message is dropped */
	}
	/* what corosync carries in one message at most, with room */
	if (len > 2u * 1024 * 1024) {
		return -EMSGSIZE;
	}
	m = malloc(sizeof(*m) + len);
	m->next = NULL;
	m->sender = sender;
	m->len = len;
	memcpy(m->data, buf, len);
	*bus_tail = m;
	bus_tail = &m->next;
	if (len > bus_max_len) {
		bus_max_len = len;
	}
	return 0;
}

/* Delivers everything queued (and what delivering queues) to all. */
static size_t bus_run(void)
{
	size_t n = 0;

	while (bus_head != NULL) {
		struct bus_msg *m = bus_head;

		bus_head = m->next;
		if (bus_head == NULL) {
			bus_tail = &bus_head;
		}
		for (int k = 0; k < N_NODES; k++) {
			coord_replica_deliver(&nodes[k], m->sender, m->data, m->len);
		}
		free(m);
		n++;
	}
	return n;
}

static void node_init(struct coord *c, uint32_t id)
{
	memset(c, 0, sizeof(*c));
	c->loop = loop;
	ha_config_defaults(&c->cfg);
	coord_init(c);
	c->local_id = id;
	c->cs_connected = true;
	c->vq_quorate = true;
	c->cpg_tx = bus_tx;
	snprintf(c->state_path, sizeof(c->state_path), "%s/state-%u", tmpdir, id);
}

static void node_fini(struct coord *c)
{
	coord_replica_reset(c);
	coord_state_clear(&c->state);
	coord_events_free(c);
	while (!qb_list_empty(&c->sendq)) {
		struct coord_msg *m = qb_list_first_entry(&c->sendq, struct coord_msg, list);

		qb_list_del(&m->list);
		free(m);
	}
}

/* A big state: @n guests of about 2.8 KiB each (the example definition
 * and a comment block, as real definitions carry). */
static void big_state(struct coord_state *st, size_t n, uint64_t seq)
{
	const char *src = getenv("HA_SRC_DIR");
	char path[PATH_MAX];
	uint8_t *ex = NULL;
	size_t ex_len = 0;
	char *def;

	snprintf(path, sizeof(path), "%s/deploy/examples/container.conf", src ? src : ".");
	if (ha_file_read(path, 65536, &ex, &ex_len) < 0) {
		ex = (uint8_t *)strdup("[guest]\nname = x\n");
		ex_len = strlen((char *)ex);
	}
	def = malloc(ex_len + 2100);
	memcpy(def, ex, ex_len);
	for (size_t i = 0; i < 30; i++) {
		static const char note[] =
			"; notes kept with the definition: owner team, ticket, change windows.\n";

		memcpy(def + ex_len + i * 70, note, 70);
	}
	coord_state_node_add(st, 1, "n1");
	coord_state_node_add(st, 2, "n2");
	coord_state_node_add(st, 3, "n3");
	st->guests = calloc(n, sizeof(*st->guests));
	for (size_t i = 0; i < n; i++) {
		Hactl__GuestRecord g = HACTL__GUEST_RECORD__INIT;
		char name[32];

		snprintf(name, sizeof(name), "g%zu", i);
		g.name = name;
		g.type = "container";
		g.has_owner = true;
		g.owner = 1 + (uint32_t)(i % 3);
		g.has_generation = true;
		g.generation = 1;
		g.desired = "running";
		g.has_definition = true;
		g.definition.data = (uint8_t *)def;
		g.definition.len = ex_len + 2100;
		st->guests[i] = coord_pb_dup(&g.base);
	}
	st->n_guests = n;
	st->seq = seq;
	free(def);
	free(ex);
}

static bool all_synced(uint64_t seq, size_t n_guests)
{
	for (int k = 0; k < N_NODES; k++) {
		if (nodes[k].syncing || nodes[k].state.seq != seq ||
		    nodes[k].state.n_guests != n_guests) {
			return false;
		}
	}
	return true;
}

static void join_all(void)
{
	uint32_t members[N_NODES] = { 1, 2, 3 };

	for (int k = 0; k < N_NODES; k++) {
		coord_replica_confchg(&nodes[k], members, N_NODES, NULL, 0, members, N_NODES);
	}
}

/* A state of 4000 guests (about 11 MiB) from node 1; 2 and 3 are empty. */
static void test_large_state(void)
{
	for (int k = 0; k < N_NODES; k++) {
		node_init(&nodes[k], (uint32_t)k + 1);
	}
	big_state(&nodes[0].state, N_GUESTS, 500);
	join_all();
	CHECK(nodes[0].syncing && nodes[1].syncing);
	bus_run();
	CHECK(all_synced(500, N_GUESTS));
	CHECK(bus_max_len <= COORD_SYNC_INLINE_MAX);
	for (int k = 0; k < N_NODES; k++) {
		CHECK(nodes[k].state.n_guests == N_GUESTS &&
		      strcmp(nodes[k].state.guests[N_GUESTS - 1]->name, "g3999") == 0);
		CHECK_EQ_INT(nodes[k].sync_retries, 0);
		CHECK_EQ_INT(nodes[k].syncs_done, 1);
	}
	/* a second sync (a member restarts): all hold the big state now */
	join_all();
	bus_run();
	CHECK(all_synced(500, N_GUESTS));
	for (int k = 0; k < N_NODES; k++) {
		node_fini(&nodes[k]);
	}
}

/* Node 2's state is lost twice: the sync stalls until node 2's watchdog
 * sends it again. */
static void test_stalled_sync(void)
{
	uint64_t now;

	for (int k = 0; k < N_NODES; k++) {
		node_init(&nodes[k], (uint32_t)k + 1);
	}
	big_state(&nodes[1].state, 1000, 77);
	drop_sync_from = 2;
	drop_left = 1000; /* the first round, whatever its pieces */
	join_all();
	drop_left = 0;
	bus_run();
	now = ha_mono_ms(); /* after every send */
	CHECK(nodes[0].syncing && nodes[1].syncing && nodes[2].syncing);
	/* before the retry time nothing is sent again */
	for (int k = 0; k < N_NODES; k++) {
		coord_replica_sync_check(&nodes[k], now + 10);
	}
	CHECK_EQ_INT(bus_run(), 0);
	CHECK(nodes[0].syncing);
	/* after it every member sends its state again; duplicates are ignored */
	for (int k = 0; k < N_NODES; k++) {
		coord_replica_sync_check(&nodes[k], now + COORD_SYNC_RETRY_MS);
	}
	bus_run();
	CHECK(all_synced(77, 1000));
	CHECK_EQ_INT(nodes[1].sync_retries, 1);
	/* done: the watchdog does nothing more */
	coord_replica_sync_check(&nodes[0], now + 10 * COORD_SYNC_RETRY_MS);
	CHECK_EQ_INT(bus_run(), 0);
	CHECK_EQ_INT(nodes[0].sync_retries, 1);
	for (int k = 0; k < N_NODES; k++) {
		node_fini(&nodes[k]);
	}
}

/* A send that fails at once is retried at the next check, without
 * waiting for the retry time. */
static void test_failed_send(void)
{
	uint64_t now = ha_mono_ms();

	for (int k = 0; k < N_NODES; k++) {
		node_init(&nodes[k], (uint32_t)k + 1);
	}
	nodes[2].cs_connected = false; /* its send fails: -ENOTCONN */
	join_all();
	nodes[2].cs_connected = true;
	bus_run();
	CHECK(nodes[0].syncing);
	CHECK_EQ_INT(nodes[2].sync_sent_ms, 0);
	coord_replica_sync_check(&nodes[2], now + 1);
	bus_run();
	CHECK(all_synced(0, 0));
	for (int k = 0; k < N_NODES; k++) {
		node_fini(&nodes[k]);
	}
}

/* The reassembly refuses what does not fit, before allocating. */
static void test_reasm(void)
{
	struct coord_sync_reasm r = { 0 };
	Hactl__CpgSyncChunk ch = HACTL__CPG_SYNC_CHUNK__INIT;
	Hactl__CpgSyncState *done = NULL;
	struct coord_state st;
	struct qb_list_head out;
	uint8_t data[16] = { 0 };
	char why[200];
	int n, got = 0;

	ch.sender = 1;
	ch.round = 1;
	ch.count = 1;
	ch.data.data = data;
	ch.data.len = sizeof(data);
	/* larger than the bound: refused without a buffer */
	ch.total_len = (uint64_t)COORD_SYNC_MAX + 1;
	CHECK_EQ_INT(coord_sync_reasm_feed(&r, &ch, &done, why, sizeof(why)), -EMSGSIZE);
	CHECK(r.buf == NULL && strstr(why, "refused") != NULL);
	ch.total_len = UINT64_MAX;
	CHECK_EQ_INT(coord_sync_reasm_feed(&r, &ch, &done, why, sizeof(why)), -EMSGSIZE);
	/* more pieces than bytes */
	ch.total_len = 16;
	ch.count = 17;
	CHECK_EQ_INT(coord_sync_reasm_feed(&r, &ch, &done, why, sizeof(why)), -EMSGSIZE);
	/* a piece without its start: stale */
	ch.count = 2;
	ch.index = 1;
	CHECK_EQ_INT(coord_sync_reasm_feed(&r, &ch, &done, why, sizeof(why)), -ESTALE);
	/* a last piece that is too short, a middle one too long */
	ch.index = 0;
	ch.total_len = 20;
	ch.data.len = 16;
	CHECK_EQ_INT(coord_sync_reasm_feed(&r, &ch, &done, why, sizeof(why)), 0);
	ch.index = 1;
	ch.data.len = 3;
	CHECK_EQ_INT(coord_sync_reasm_feed(&r, &ch, &done, why, sizeof(why)), -EBADMSG);
	CHECK(r.buf == NULL);
	/* garbage that does not decode */
	ch.index = 0;
	ch.count = 1;
	ch.total_len = 16;
	ch.data.len = 16;
	memset(data, 0xff, sizeof(data));
	CHECK_EQ_INT(coord_sync_reasm_feed(&r, &ch, &done, why, sizeof(why)), -EBADMSG);
	CHECK(done == NULL && r.buf == NULL);

	/* a real state in pieces, a new round in the middle restarts it */
	coord_state_init(&st);
	big_state(&st, 600, 9);
	qb_list_init(&out);
	{
		Hactl__CpgSyncState head = HACTL__CPG_SYNC_STATE__INIT;

		head.sender = 1;
		n = coord_sync_encode(&st, &head, 5, &out);
	}
	CHECK(n > 2);
	{
		struct coord_msg *m, *tmp;
		int i = 0;

		qb_list_for_each_entry_safe(m, tmp, &out, list) {
			enum ha_msg_type type;
			ProtobufCMessage *msg;

			CHECK(m->len <= COORD_SYNC_INLINE_MAX);
			CHECK_EQ_INT(ha_env_decode(m->data, m->len, HA_CHAN_CPG, NULL, &type, &msg,
						   NULL), 0);
			CHECK_EQ_INT(type, HA_MSG_CPG_SYNC_CHUNK);
			if (type != HA_MSG_CPG_SYNC_CHUNK) {
				/* checked above */
			} else if (i == 1) {
				/* the start of another round cuts this one off */
				Hactl__CpgSyncChunk other = *(Hactl__CpgSyncChunk *)msg;

				other.round = 4;
				other.index = 0;
				CHECK_EQ_INT(coord_sync_reasm_feed(&r, &other, &done, why,
								   sizeof(why)), 0);
				CHECK_EQ_INT(coord_sync_reasm_feed(&r, (Hactl__CpgSyncChunk *)msg,
								   &done, why, sizeof(why)), -EPROTO);
			} else {
				int rc = coord_sync_reasm_feed(&r, (Hactl__CpgSyncChunk *)msg, &done,
							       why, sizeof(why));

				got += rc == 1;
				CHECK(i == 0 ? rc == 0 : rc == -ESTALE);
			}
			ha_env_msg_free(msg);
			qb_list_del(&m->list);
			free(m);
			i++;
		}
	}
	CHECK_EQ_INT(got, 0);
	CHECK(done == NULL);
	coord_sync_reasm_clear(&r);
	coord_state_clear(&st);
}

int main(void)
{
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/test_coord_sync.XXXXXX");
	if (mkdtemp(tmpdir) == NULL) {
		perror("mkdtemp");
		return 1;
	}
	loop = qb_loop_create();
	test_reasm();
	test_large_state();
	test_stalled_sync();
	test_failed_send();
	qb_loop_destroy(loop);
	{
		char cmd[128];

		snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
		if (system(cmd) != 0) {
			fprintf(stderr, "could not remove %s\n", tmpdir);
		}
	}
	return ha_test_done("test_coord_sync");
}
