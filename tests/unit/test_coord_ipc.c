/*
 * test_coord_ipc.c - the coordinator's IPC server on a real libqb socket:
 * who may connect (root, group members by primary or supplementary gid)
 * and who may register as the agent (root only).
 *
 * Runs in a private network namespace (the IPC socket is an abstract
 * unix socket, so a cluster on this machine is not disturbed) as root;
 * clients are forked children that drop to an unprivileged user with the
 * groups each case needs. Exit 77 when that is not possible.
 */
#include <errno.h>
#include <grp.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <qb/qbipcc.h>
#include <qb/qbloop.h>

#include "coordinator.h"
#include "harness.h"
#include "ipc.h"
#include "proto/hactl.pb-c.h"
#include "util.h"

#define NOBODY 65534
#define OTHER_GID 65533 /* a group that is not the IPC group */

static struct coord co;

/* What a client child reports through its exit status. */
enum {
	R_REFUSED = 10,   /* could not connect */
	R_ANSWERED = 11,  /* a status reply came */
	R_REGISTERED = 12,
	R_HELLO_DENIED = 13,
	R_OTHER = 14,
};

struct client_case {
	uid_t uid;
	gid_t gid;
	const gid_t *groups;
	size_t n_groups;
	bool hello; /* send the agent's hello instead of a status request */
	int (*fn)(qb_ipcc_connection_t *conn); /* instead of both: 0 = passed */
};

static int client(const struct client_case *cc)
{
	qb_ipcc_connection_t *conn;
	enum ha_msg_type rtype;
	ProtobufCMessage *reply = NULL;
	int rc;

	if (setgroups(cc->n_groups, cc->groups) < 0 || setgid(cc->gid) < 0 ||
	    setuid(cc->uid) < 0) {
		return R_OTHER;
	}
	conn = qb_ipcc_connect(HA_IPC_NAME, HA_IPC_MAX_MSG);
	if (conn == NULL) {
		return R_REFUSED;
	}
	if (cc->fn) {
		rc = cc->fn(conn);
	} else if (cc->hello) {
		Hactl__AgentHello h = HACTL__AGENT_HELLO__INIT;
		Hactl__HostFacts f = HACTL__HOST_FACTS__INIT;

		h.pid = (uint32_t)getpid();
		h.facts = &f;
		rc = ha_ipcc_call(conn, HA_MSG_AGENT_HELLO, &h.base, 5000, &rtype, &reply);
		if (rc == 0 && rtype == HA_MSG_RESULT) {
			rc = ((Hactl__Result *)reply)->code;
			rc = rc == 0 ? R_REGISTERED : rc == -EPERM ? R_HELLO_DENIED : R_OTHER;
		} else {
			rc = R_OTHER;
		}
	} else {
		Hactl__StatusRequest req = HACTL__STATUS_REQUEST__INIT;

		rc = ha_ipcc_call(conn, HA_MSG_STATUS_REQUEST, &req.base, 5000, &rtype, &reply);
		rc = rc == 0 && rtype == HA_MSG_STATUS_REPLY ? R_ANSWERED : R_OTHER;
	}
	ha_env_msg_free(reply);
	qb_ipcc_disconnect(conn);
	return rc;
}

static int32_t on_child(int32_t sig, void *data)
{
	qb_loop_stop(co.loop);
	return 0;
}

/* Runs one client against the server; returns its R_ code. */
static int run_client(const struct client_case *cc)
{
	pid_t pid = fork();
	int status = 0;

	if (pid == 0) {
		_exit(client(cc));
	}
	if (pid < 0) {
		return -1;
	}
	/* the loop serves the client until SIGCHLD stops it */
	qb_loop_run(co.loop);
	if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status)) {
		return -1;
	}
	return WEXITSTATUS(status);
}

/* ---- large replies: thousands of guests ---- */

#define N_GUESTS 3000
#define LOCAL_ID 1

static char *example_def; /* deploy/examples/container.conf */

/* Guest i: owner 1 for every third, else 2 or 3; g5 migrates from 2 to 1. */
static void guests_fill(struct coord_state *st)
{
	st->guests = calloc(N_GUESTS, sizeof(*st->guests));
	for (int i = 0; i < N_GUESTS; i++) {
		Hactl__GuestRecord g = HACTL__GUEST_RECORD__INIT;
		Hactl__Migration mg = HACTL__MIGRATION__INIT;
		char name[32];

		snprintf(name, sizeof(name), "g%d", i);
		g.name = name;
		g.type = "container";
		g.has_owner = true;
		g.owner = i % 3 == 0 ? LOCAL_ID : 2 + (uint32_t)(i % 2);
		g.desired = "running";
		g.has_definition = true;
		g.definition.data = (uint8_t *)example_def;
		g.definition.len = strlen(example_def);
		if (i == 5) {
			mg.id = 77;
			mg.source = 2;
			mg.destination = LOCAL_ID;
			mg.state = "transferring";
			g.migration = &mg;
		}
		st->guests[i] = coord_pb_dup(&g.base);
	}
	st->n_guests = N_GUESTS;
	st->seq = 42;
}

static bool mine(int i)
{
	return i % 3 == 0 || i == 5;
}

/* The pages alone: each fits one IPC message, together they are the
 * whole (filtered) list once. */
static void test_pages(void)
{
	struct coord_state st;
	Hactl__GuestRecord **page;
	Hactl__StatusReply r = HACTL__STATUS_REPLY__INIT;
	char *held[] = { "g1", "g2999", "nosuch" };
	struct coord_host_filter f = { .node = LOCAL_ID, .held = (const char *const *)held,
				       .n_held = 3 };
	size_t budget, total = 0, pages = 0, mine_n = 0;
	uint32_t off = 0, next;
	bool seen[N_GUESTS] = { false };

	coord_state_init(&st);
	guests_fill(&st);
	page = calloc(N_GUESTS, sizeof(*page));
	/* the old single reply is far above the limit */
	r.guests = st.guests;
	r.n_guests = st.n_guests;
	CHECK(protobuf_c_message_get_packed_size(&r.base) > 2 * HA_IPC_MAX_MSG);
	r.n_guests = 0;
	r.has_next_guest_offset = true;
	r.next_guest_offset = UINT32_MAX;
	budget = coord_ipc_page_budget(&r.base);
	CHECK(budget > HA_IPC_MAX_MSG / 2 && budget < HA_IPC_MAX_MSG);
	do {
		size_t n = coord_guests_page(&st, off, budget, NULL, NULL, page, &next);

		CHECK(n > 0);
		r.guests = page;
		r.n_guests = n;
		r.next_guest_offset = next;
		CHECK(protobuf_c_message_get_packed_size(&r.base) + HA_ENV_HDR_LEN +
			      sizeof(struct qb_ipc_response_header) <= HA_IPC_MAX_MSG);
		for (size_t k = 0; k < n; k++) {
			int i = atoi(page[k]->name + 1);

			CHECK(!seen[i]);
			seen[i] = true;
		}
		total += n;
		pages++;
		CHECK(next == 0 || next > off);
		off = next;
	} while (off != 0 && pages < 100);
	CHECK_EQ_INT(total, N_GUESTS);
	CHECK(pages >= 3);
	/* the host filter: its own, the incoming migration, the held ones */
	off = 0;
	total = 0;
	memset(seen, 0, sizeof(seen));
	do {
		size_t n = coord_guests_page(&st, off, budget, coord_guest_of_host, &f, page, &next);

		for (size_t k = 0; k < n; k++) {
			seen[atoi(page[k]->name + 1)] = true;
		}
		total += n;
		off = next;
	} while (off != 0);
	for (int i = 0; i < N_GUESTS; i++) {
		mine_n += mine(i);
		if (seen[i] != (mine(i) || i == 1 || i == 2999)) {
			CHECK(!"host filter");
			break;
		}
	}
	CHECK_EQ_INT(total, mine_n + 2);
	/* a record that can never fit: no page, no loop */
	CHECK_EQ_INT(coord_guests_page(&st, 0, 100, NULL, NULL, page, &next), 0);
	CHECK(next == 0 || next == 0u); /* index 0 again: the caller refuses */
	free(page);
	coord_state_clear(&st);
}

/* hactl status over real IPC: every guest, in pages. */
static int fetch_status(qb_ipcc_connection_t *conn)
{
	Hactl__StatusRequest old = HACTL__STATUS_REQUEST__INIT;
	enum ha_msg_type t;
	ProtobufCMessage *m = NULL;
	Hactl__StatusReply *s;
	int rc = ha_ipcc_status(conn, NULL, 10000, &t, &m);

	if (rc < 0 || t != HA_MSG_STATUS_REPLY) {
		fprintf(stderr, "status: %s\n", strerror(-rc));
		return 1;
	}
	s = (Hactl__StatusReply *)m;
	if (s->n_guests != N_GUESTS || strcmp(s->guests[N_GUESTS - 1]->name, "g2999") != 0 ||
	    s->seq != 42) {
		fprintf(stderr, "status: %zu guests\n", s->n_guests);
		ha_env_msg_free(m);
		return 2;
	}
	for (size_t i = 0; i < s->n_guests; i++) {
		char want[32];

		snprintf(want, sizeof(want), "g%zu", i);
		if (strcmp(s->guests[i]->name, want) != 0) {
			ha_env_msg_free(m);
			return 3;
		}
	}
	ha_env_msg_free(m);
	/* a client that does not page gets a clear refusal, not silence */
	m = NULL;
	rc = ha_ipcc_call(conn, HA_MSG_STATUS_REQUEST, &old.base, 10000, &t, &m);
	if (rc < 0 || t != HA_MSG_RESULT || ((Hactl__Result *)m)->code != -EMSGSIZE ||
	    strstr(((Hactl__Result *)m)->message, "ask for it in pages") == NULL) {
		ha_env_msg_free(m);
		return 4;
	}
	ha_env_msg_free(m);
	return 0;
}

/* The agent's list: only its host's guests and the ones it holds. */
static int fetch_agent_guests(qb_ipcc_connection_t *conn)
{
	char *held[] = { "g1", "g2999" };
	enum ha_msg_type t;
	ProtobufCMessage *m = NULL;
	Hactl__AgentGuestsReply *r;
	size_t want = 2;
	int rc = ha_ipcc_agent_guests(conn, held, 2, 10000, &t, &m);

	if (rc < 0 || t != HA_MSG_AGENT_GUESTS_REPLY) {
		fprintf(stderr, "agent guests: %s\n", strerror(-rc));
		return 1;
	}
	r = (Hactl__AgentGuestsReply *)m;
	for (int i = 0; i < N_GUESTS; i++) {
		want += mine(i);
	}
	if (r->n_guests != want || r->local_id != LOCAL_ID || r->n_nodes != 3) {
		fprintf(stderr, "agent guests: %zu, want %zu; %zu nodes\n", r->n_guests, want,
			r->n_nodes);
		ha_env_msg_free(m);
		return 2;
	}
	for (size_t i = 0; i < r->n_guests; i++) {
		int k = atoi(r->guests[i]->name + 1);

		if (!mine(k) && k != 1 && k != 2999) {
			ha_env_msg_free(m);
			return 3;
		}
	}
	ha_env_msg_free(m);
	/* an agent that holds nothing yet */
	m = NULL;
	rc = ha_ipcc_agent_guests(conn, NULL, 0, 10000, &t, &m);
	if (rc < 0 || t != HA_MSG_AGENT_GUESTS_REPLY ||
	    ((Hactl__AgentGuestsReply *)m)->n_guests != want - 2) {
		ha_env_msg_free(m);
		return 4;
	}
	ha_env_msg_free(m);
	return 0;
}

static void test_roles_from_proc(void)
{
	char dir[] = "/tmp/test_coord_ipc.XXXXXX";
	char path[PATH_MAX];
	FILE *f;

	CHECK(mkdtemp(dir) != NULL);
	snprintf(path, sizeof(path), "%s/4242", dir);
	CHECK(mkdir(path, 0700) == 0);
	snprintf(path, sizeof(path), "%s/4242/status", dir);
	f = fopen(path, "w");
	CHECK(f != NULL);
	fprintf(f, "Name:\thactl\nUid:\t1000\t1000\t1000\t1000\nGroups:\t24 27 100 1000 \n");
	fclose(f);
	CHECK_EQ_INT(coord_ipc_peer_role(0, 0, 4242, 100, dir), COORD_PEER_ROOT);
	CHECK_EQ_INT(coord_ipc_peer_role(1000, 100, 4242, 100, dir), COORD_PEER_CLIENT);
	/* supplementary membership */
	CHECK_EQ_INT(coord_ipc_peer_role(1000, 1000, 4242, 100, dir), COORD_PEER_CLIENT);
	CHECK_EQ_INT(coord_ipc_peer_role(1000, 1000, 4242, 27, dir), COORD_PEER_CLIENT);
	/* 10 is not 100 nor a prefix of it */
	CHECK_EQ_INT(coord_ipc_peer_role(1000, 1000, 4242, 10, dir), COORD_PEER_REFUSED);
	CHECK_EQ_INT(coord_ipc_peer_role(1000, 1000, 4242, 2, dir), COORD_PEER_REFUSED);
	/* no group configured: only root */
	CHECK_EQ_INT(coord_ipc_peer_role(1000, 1000, 4242, (gid_t)-1, dir), COORD_PEER_REFUSED);
	unlink(path);
	snprintf(path, sizeof(path), "%s/4242", dir);
	rmdir(path);
	rmdir(dir);
	CHECK(strcmp(coord_peer_role_str(COORD_PEER_ROOT), "root") == 0);
	CHECK(strcmp(coord_peer_role_str(COORD_PEER_ROLE_MAX), "unknown") == 0);
}

static void test_real_server(void)
{
	static const gid_t supp[] = { OTHER_GID, 100 };
	static const gid_t none[] = { OTHER_GID };
	struct client_case cc;
	struct group *grp = getgrgid(100);

	if (grp == NULL) {
		printf("# skipped the server cases: no group 100 here\n");
		return;
	}
	co.loop = qb_loop_create();
	qb_list_init(&co.sendq);
	qb_list_init(&co.held);
	qb_list_init(&co.pending);
	qb_list_init(&co.actions);
	coord_state_init(&co.state);
	snprintf(co.cfg.ipc_group, sizeof(co.cfg.ipc_group), "%s", grp->gr_name);
	qb_loop_signal_add(co.loop, QB_LOOP_HIGH, SIGCHLD, NULL, on_child, NULL);
	CHECK_EQ_INT(coord_ipc_start(&co), 0);

	/* primary group: served */
	cc = (struct client_case){ .uid = NOBODY, .gid = 100, .groups = none, .n_groups = 1 };
	CHECK_EQ_INT(run_client(&cc), R_ANSWERED);
	/* supplementary group only: served (was refused) */
	cc = (struct client_case){ .uid = NOBODY, .gid = OTHER_GID, .groups = supp, .n_groups = 2 };
	CHECK_EQ_INT(run_client(&cc), R_ANSWERED);
	/* neither: refused */
	cc = (struct client_case){ .uid = NOBODY, .gid = OTHER_GID, .groups = none, .n_groups = 1 };
	CHECK_EQ_INT(run_client(&cc), R_REFUSED);
	/* a group member may not register as the agent ... */
	cc = (struct client_case){ .uid = NOBODY, .gid = 100, .groups = none, .n_groups = 1,
				   .hello = true };
	CHECK_EQ_INT(run_client(&cc), R_HELLO_DENIED);
	CHECK(co.agent_conn == NULL);
	cc.groups = supp;
	cc.n_groups = 2;
	cc.gid = OTHER_GID;
	CHECK_EQ_INT(run_client(&cc), R_HELLO_DENIED);
	CHECK(co.agent_conn == NULL);
	/* ... root may */
	cc = (struct client_case){ .uid = 0, .gid = 0, .groups = none, .n_groups = 0,
				   .hello = true };
	CHECK_EQ_INT(run_client(&cc), R_REGISTERED);
	CHECK(co.ipc_refused >= 3);

	/* thousands of guests: status and the agent's list in pages */
	if (example_def) {
		co.local_id = LOCAL_ID;
		coord_state_node_add(&co.state, 1, "n1");
		coord_state_node_add(&co.state, 2, "n2");
		coord_state_node_add(&co.state, 3, "n3");
		guests_fill(&co.state);
		cc = (struct client_case){ .uid = NOBODY, .gid = 100, .groups = none,
					   .n_groups = 1, .fn = fetch_status };
		CHECK_EQ_INT(run_client(&cc), 0);
		cc = (struct client_case){ .uid = 0, .gid = 0, .groups = none, .n_groups = 0,
					   .fn = fetch_agent_guests };
		CHECK_EQ_INT(run_client(&cc), 0);
	}

	coord_ipc_stop(&co);
	coord_state_clear(&co.state);
	if (co.agent_facts) {
		protobuf_c_message_free_unpacked(&co.agent_facts->base, NULL);
	}
	qb_loop_destroy(co.loop);
}

int main(void)
{
	const char *src = getenv("HA_SRC_DIR");
	char path[PATH_MAX];
	uint8_t *text = NULL;
	size_t len;

	snprintf(path, sizeof(path), "%s/deploy/examples/container.conf", src ? src : ".");
	if (ha_file_read(path, 65536, &text, &len) == 0) {
		example_def = (char *)text;
	} else {
		printf("# no %s: the large-reply cases are skipped\n", path);
	}
	test_roles_from_proc();
	if (example_def) {
		test_pages();
	}
	if (geteuid() != 0 || unshare(CLONE_NEWNET) < 0) {
		printf("# skipped: needs root and a network namespace\n");
		ha_test_done("test_coord_ipc");
		return 77;
	}
	test_real_server();
	free(example_def);
	return ha_test_done("test_coord_ipc");
}
