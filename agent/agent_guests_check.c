/*
 * agent_guests_check.c - health checks of the guests this host runs
 * ([ha] check, docs/guests.md): Pacemaker's monitor operation for a guest.
 *
 * A check runs in a thread of its own (a connect or a command may take up
 * to check_timeout; the loop thread never waits for one) on a copy of
 * what it needs, so the guest may change or go meanwhile; its result comes
 * back through the guests' eventfd and is applied on the loop thread, to
 * the guest of that name, only if it still runs the instance that was
 * checked. check_failures failed runs in a row kill the guest, and the
 * kill counts as a crash for the restart policy (max_restart, then
 * relocation by the cluster); the guest then starts as the cluster's order
 * says, never from a snapshot taken while it was failing its checks.
 *
 *   tcp:PORT   a TCP connection to the guest's address within
 *              check_timeout: healthy when it is accepted;
 *   exec:CMD   sh -c CMD on this host, $1 the guest's name, $2 its
 *              address: healthy on exit 0 within check_timeout.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <qb/qblog.h>

#include "agent_guests_int.h"
#include "ha_spawn.h"

struct ag_check {
	struct qb_list_head list;
	struct agent_guests *m;
	char name[HA_GUEST_NAME_MAX + 1];
	uint64_t epoch;             /* the instance checked (ag_guest.check_epoch) */
	enum ha_check_kind kind;
	uint32_t port;
	char ip[48];                /* without the prefix */
	char cmd[512];
	uint32_t timeout_ms;
	bool ok;
	char why[256];              /* what failed */
};

static void tcp_check(struct ag_check *c)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)c->port) };
	struct pollfd p;
	int fd, e = 0;
	socklen_t el = sizeof(e);

	if (inet_pton(AF_INET, c->ip, &sa.sin_addr) != 1) {
		snprintf(c->why, sizeof(c->why), "tcp:%u: no address to connect to ('%s')", c->port,
			 c->ip);
		return;
	}
	fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		snprintf(c->why, sizeof(c->why), "tcp:%u: socket: %s", c->port, strerror(errno));
		return;
	}
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0) {
		c->ok = true;
	} else if (errno != EINPROGRESS) {
		e = errno;
	} else {
		p = (struct pollfd){ .fd = fd, .events = POLLOUT };
		int n = poll(&p, 1, (int)c->timeout_ms);

		if (n == 0) {
			e = ETIMEDOUT;
		} else if (n < 0) {
			e = errno;
		} else if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &el) < 0) {
			e = errno;
		}
		c->ok = e == 0;
	}
	if (!c->ok) {
		snprintf(c->why, sizeof(c->why), "tcp:%u: connecting to %s: %s", c->port, c->ip,
			 strerror(e));
	}
	close(fd);
}

static void exec_check(struct ag_check *c)
{
	char *argv[] = { "/bin/sh", "-c", c->cmd, "hactl-check", c->name, c->ip, NULL };
	char out[160] = "";
	struct ha_spawn s = { .argv = argv, .out = out, .out_len = sizeof(out), .keep_tail = true,
			      .err = HA_SPAWN_ERR_TO_OUT, .timeout_ms = c->timeout_ms };
	struct ha_spawn_result r;
	int rc = ha_spawn_run(&s, &r);

	out[strcspn(out, "\n")] = '\0';
	if (rc == -ETIMEDOUT) {
		snprintf(c->why, sizeof(c->why), "exec: no answer within %u ms", c->timeout_ms);
	} else if (rc < 0) {
		snprintf(c->why, sizeof(c->why), "exec: %s", strerror(-rc));
	} else if (ha_spawn_status(&r) != 0) {
		snprintf(c->why, sizeof(c->why), "exec: exit %d%s%s", ha_spawn_status(&r),
			 out[0] ? ": " : "", out);
	} else {
		c->ok = true;
	}
}

static void *check_thread(void *arg)
{
	struct ag_check *c = arg;
	struct agent_guests *m = c->m;
	uint64_t one = 1;

	if (c->kind == HA_CHECK_TCP) {
		tcp_check(c);
	} else {
		exec_check(c);
	}
	pthread_mutex_lock(&m->lock);
	qb_list_add_tail(&c->list, &m->checks_done);
	pthread_mutex_unlock(&m->lock);
	if (write(m->efd, &one, sizeof(one)) < 0) {
		/* the counter cannot overflow in practice */
	}
	return NULL;
}

/* Is @g running the instance it should, with nothing else going on? A
 * guest the operator paused is not hung: never checked until resumed. */
static bool checkable(struct ag_guest *g)
{
	return !g->busy && g->owned && g->want_running && !g->want_paused && !g->in_migration &&
	       g->up_seen && ag_live_state(g) == AGENT_GUEST_RUNNING;
}

static void check_start(struct agent_guests *m, struct ag_guest *g, enum ha_check_kind kind,
			uint32_t port, const char *cmd)
{
	struct ag_check *c = calloc(1, sizeof(*c));
	pthread_attr_t attr;
	pthread_t t;
	int rc;

	if (c == NULL) {
		return;
	}
	c->m = m;
	snprintf(c->name, sizeof(c->name), "%s", g->name);
	c->epoch = g->check_epoch;
	c->kind = kind;
	c->port = port;
	snprintf(c->ip, sizeof(c->ip), "%.*s", (int)strcspn(g->def.ip, "/"), g->def.ip);
	snprintf(c->cmd, sizeof(c->cmd), "%s", cmd ? cmd : "");
	c->timeout_ms = g->def.check_timeout_s * 1000u;
	pthread_mutex_lock(&m->lock);
	m->checks_inflight++;
	pthread_mutex_unlock(&m->lock);
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	rc = pthread_create(&t, &attr, check_thread, c);
	pthread_attr_destroy(&attr);
	if (rc != 0) {
		pthread_mutex_lock(&m->lock);
		m->checks_inflight--;
		pthread_mutex_unlock(&m->lock);
		free(c);
		return;
	}
	g->check_inflight = true;
}

void ag_checks_due(struct agent_guests *m)
{
	struct ag_guest *g;
	uint64_t now = ha_mono_ms();

	qb_list_for_each_entry(g, &m->guests, list) {
		const char *cmd;
		uint32_t port;
		enum ha_check_kind kind = ha_guestdef_check(&g->def, &port, &cmd);

		if (kind == HA_CHECK_NONE || g->check_inflight || !checkable(g)) {
			continue;
		}
		if (g->check_epoch != g->started_ms) {
			/* a new instance: its first check one interval after
			 * it started (or was attached), its count from 0 */
			g->check_epoch = g->started_ms;
			g->check_fails = 0;
			g->next_check_ms = now + g->def.check_interval_s * 1000ull;
			continue;
		}
		if (now >= g->next_check_ms) {
			check_start(m, g, kind, port, cmd);
		}
	}
}

static void check_result(struct agent_guests *m, const struct ag_check *c)
{
	struct ag_guest *g = ag_guest_find(m, c->name);

	if (g == NULL) {
		return; /* gone meanwhile */
	}
	g->check_inflight = false;
	g->next_check_ms = ha_mono_ms() + g->def.check_interval_s * 1000ull;
	if (m->closing || c->epoch != g->check_epoch || !checkable(g)) {
		return; /* another instance, or stopping, moving: not its verdict */
	}
	if (c->ok) {
		if (g->check_fails) {
			qb_log(LOG_NOTICE, "%s: health check passes again (after %u failures)",
			       g->name, g->check_fails);
		}
		g->check_fails = 0;
		return;
	}
	g->check_fails++;
	qb_log(LOG_WARNING, "%s: health check failed (%u of %u in a row): %s", g->name,
	       g->check_fails, g->def.check_failures, c->why);
	snprintf(g->note, sizeof(g->note), "health check failed %u of %u times in a row: %s",
		 g->check_fails, g->def.check_failures, c->why);
	if (g->check_fails < g->def.check_failures) {
		return;
	}
	snprintf(g->error, sizeof(g->error), "health check failed %u times in a row: %s",
		 g->check_fails, c->why);
	qb_log(LOG_ERR, "%s: %s: killing it (counts as a crash)", g->name, g->error);
	g->check_fails = 0;
	g->kill_why = "killed: its health check failed check_failures times in a row";
	if (ag_op_start(g, OP_KILL, 0, 0) == 0) {
		g->check_killed = true;
	}
}

void ag_checks_collect(struct agent_guests *m)
{
	struct qb_list_head done;
	struct ag_check *c, *tmp;

	qb_list_init(&done);
	pthread_mutex_lock(&m->lock);
	qb_list_for_each_entry_safe(c, tmp, &m->checks_done, list) {
		qb_list_del(&c->list);
		qb_list_add_tail(&c->list, &done);
		m->checks_inflight--;
	}
	pthread_cond_broadcast(&m->idle);
	pthread_mutex_unlock(&m->lock);
	qb_list_for_each_entry_safe(c, tmp, &done, list) {
		qb_list_del(&c->list);
		check_result(m, c);
		free(c);
	}
}

void ag_checks_free(struct agent_guests *m)
{
	struct ag_check *c, *tmp;

	qb_list_for_each_entry_safe(c, tmp, &m->checks_done, list) {
		qb_list_del(&c->list);
		free(c);
	}
}
