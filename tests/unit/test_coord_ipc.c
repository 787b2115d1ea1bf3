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
	if (cc->hello) {
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

	coord_ipc_stop(&co);
	coord_state_clear(&co.state);
	if (co.agent_facts) {
		protobuf_c_message_free_unpacked(&co.agent_facts->base, NULL);
	}
	qb_loop_destroy(co.loop);
}

int main(void)
{
	test_roles_from_proc();
	if (geteuid() != 0 || unshare(CLONE_NEWNET) < 0) {
		printf("# skipped: needs root and a network namespace\n");
		ha_test_done("test_coord_ipc");
		return 77;
	}
	test_real_server();
	return ha_test_done("test_coord_ipc");
}
