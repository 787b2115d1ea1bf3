/*
 * agent_main.c - ha-agent: probes the host, registers with the local
 * coordinator over IPC, reports usage, and (with the guest drivers) owns
 * the guests of this host. Guests never depend on the agent process: it may
 * restart at any time and re-attach.
 *
 * Exit codes: 0 clean stop, 2 bad usage, 3 bad configuration, 6 event loop.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <unistd.h>

#include <qb/qblog.h>
#include <qb/qbloop.h>

#include "agent_facts.h"
#include "agent_guests.h"
#include "agent_mig.h"
#include "config.h"
#include "driver.h"
#include "ipc.h"
#include "log.h"
#include "util.h"

#define RECONNECT_MS 1000
#define CALL_TIMEOUT_MS 2000

struct agent {
	qb_loop_t *loop;
	struct ha_config cfg;
	const char *config_path;
	Hactl__HostFacts facts;
	qb_ipcc_connection_t *conn;
	int conn_fd;
	qb_loop_timer_handle reconnect_timer;
	qb_loop_timer_handle usage_timer;
	qb_loop_timer_handle tick_timer;
	struct agent_cpu_sample cpu_prev;
	struct agent_guests *guests;
	bool stopping;
	bool registered;  /* conn_fd is in the loop */
	bool out_of_step; /* a call during the hello timed out or got a wrong answer */
};

static int call_result(struct agent *a, enum ha_msg_type type,
		       const ProtobufCMessage *msg);
static void disconnect(struct agent *a, const char *why);
static void out_of_step(struct agent *a, const char *why);

/*
 * Fetches this host's part of the cluster's guest list (its guests and
 * those it holds, in pages: docs/protocol.md) and reconciles with it.
 */
static void refresh(struct agent *a)
{
	enum ha_msg_type rtype;
	ProtobufCMessage *reply = NULL;
	char **held = NULL;
	size_t n_held;
	int rc;

	if (a->conn == NULL) {
		return;
	}
	n_held = agent_guests_held(a->guests, &held);
	if (held == NULL) {
		return;
	}
	rc = ha_ipcc_agent_guests(a->conn, held, n_held, CALL_TIMEOUT_MS, &rtype, &reply);
	free(held);
	if (rc < 0) {
		if (rc != -ENOTCONN && rc != -EPIPE && rc != -ECONNRESET && rc != -ETIMEDOUT) {
			qb_log(LOG_WARNING, "cannot read the guest list: %s", strerror(-rc));
		}
		if (rc == -ENOTCONN || rc == -EPIPE || rc == -ECONNRESET) {
			disconnect(a, strerror(-rc));
		} else if (rc == -ETIMEDOUT) {
			out_of_step(a, "the guest list did not come in time");
		}
		return;
	}
	if (rtype == HA_MSG_AGENT_GUESTS_REPLY) {
		agent_guests_reconcile(a->guests, (Hactl__AgentGuestsReply *)reply);
	} else if (rtype != HA_MSG_RESULT || ((Hactl__Result *)reply)->code >= 0) {
		/* a success Result is never the answer to this request */
		out_of_step(a, "the guest list request got another request's answer");
	}
	ha_env_msg_free(reply);
}

static void io_report(void *arg, Hactl__GuestStatus **st, size_t n)
{
	struct agent *a = arg;
	Hactl__AgentGuestReport r = HACTL__AGENT_GUEST_REPORT__INIT;

	if (a->conn == NULL) {
		return;
	}
	r.guests = st;
	r.n_guests = n;
	if (a->guests) {
		bool armed;
		uint32_t timeout_ms;
		const char *error;

		agent_guests_watchdog(a->guests, &armed, &timeout_ms, &error);
		r.has_watchdog_armed = true;
		r.watchdog_armed = armed;
		r.has_watchdog_timeout_ms = true;
		r.watchdog_timeout_ms = timeout_ms;
		r.watchdog_error = (char *)error;
	}
	call_result(a, HA_MSG_AGENT_GUEST_REPORT, &r.base);
}

static void io_action_done(void *arg, uint64_t req_id, int code, const char *msg,
			   uint64_t value)
{
	struct agent *a = arg;
	Hactl__AgentActionDone d = HACTL__AGENT_ACTION_DONE__INIT;

	if (a->conn == NULL) {
		return;
	}
	d.req_id = req_id;
	d.code = code;
	d.message = (char *)(msg ? msg : "");
	d.has_value = true;
	d.value = value;
	call_result(a, HA_MSG_AGENT_ACTION_DONE, &d.base);
}

/* @refresh: set for a "refresh" (done once per batch of events). */
static void on_event(struct agent *a, const uint8_t *buf, size_t len, bool *refresh)
{
	struct qb_ipc_response_header hdr;
	enum ha_msg_type type;
	ProtobufCMessage *msg;
	const char *why;

	if (len < sizeof(hdr)) {
		return;
	}
	memcpy(&hdr, buf, sizeof(hdr));
	if (ha_env_decode(buf + sizeof(hdr), len - sizeof(hdr), HA_CHAN_REPLY, NULL, &type,
			  &msg, &why) < 0) {
		qb_log(LOG_WARNING, "rejected event from the coordinator: %s", why);
		return;
	}
	if (type == HA_MSG_AGENT_ACTION_REQUEST) {
		Hactl__AgentActionRequest *r = (Hactl__AgentActionRequest *)msg;

		if (strcmp(r->action->kind, "refresh") == 0) {
			*refresh = true;
		} else {
			agent_guests_action(a->guests, r->req_id, r->action);
		}
	}
	ha_env_msg_free(msg);
}

static void schedule_reconnect(struct agent *a);
static void schedule_usage(struct agent *a);

static void disconnect(struct agent *a, const char *why)
{
	if (a->conn == NULL) {
		return;
	}
	qb_log(LOG_WARNING, "lost the coordinator (%s); reconnecting", why);
	a->registered = false;
	qb_loop_poll_del(a->loop, a->conn_fd);
	qb_ipcc_disconnect(a->conn);
	a->conn = NULL;
	schedule_reconnect(a);
}

/*
 * A call that timed out leaves its answer to arrive later, in the ring
 * the next call reads: from then on every call would read the answer of
 * the one before (the guest list request a Result, a report the guest
 * list), and the agent would see no quorum while its coordinator is
 * quorate, and self-fence again and again. So a connection out of step
 * is dropped and made anew (fresh rings). Found by the fault campaign: a
 * coordinator stopped for 3 s (SIGSTOP) kept its host's guests killed for
 * ten minutes after it went on.
 */
static void out_of_step(struct agent *a, const char *why)
{
	if (a->registered) {
		disconnect(a, why);
	} else {
		a->out_of_step = true; /* try_connect drops it */
	}
}

#define EVENTS_PER_CALL 32

static int conn_event_cb(int fd, int revents, void *data);

static void events_job(void *data)
{
	struct agent *a = data;

	if (a->conn != NULL) {
		conn_event_cb(a->conn_fd, POLLIN, a);
	}
}

/* Events from the coordinator (commands arrive here with the drivers);
 * also how a dead coordinator is noticed. */
static int conn_event_cb(int fd, int revents, void *data)
{
	struct agent *a = data;
	static uint8_t buf[HA_IPC_MAX_MSG];
	ssize_t n;

	bool want_refresh = false;

	if (revents & (POLLHUP | POLLERR | POLLNVAL)) {
		disconnect(a, "hangup");
		return -1;
	}
	/* A bounded batch: events that keep coming must not keep the main
	 * loop from the rest of its work (finished operations, timers);
	 * the fd stays readable for the next batch. Refreshes asked within
	 * the batch are done once, after it. */
	n = 0;
	for (int i = 0; i < EVENTS_PER_CALL; i++) {
		n = qb_ipcc_event_recv(a->conn, buf, sizeof(buf), 0);
		if (n <= 0) {
			break;
		}
		on_event(a, buf, (size_t)n, &want_refresh);
		if (a->conn == NULL) {
			return -1; /* disconnected while handling it */
		}
		if (i + 1 == EVENTS_PER_CALL) {
			/* more may wait: a job comes back for them after
			 * what else is ready has run */
			qb_loop_job_add(a->loop, QB_LOOP_MED, a, events_job);
		}
	}
	if (n < 0 && n != -EAGAIN && n != -ETIMEDOUT) {
		disconnect(a, strerror((int)-n));
		return -1;
	}
	if (want_refresh) {
		refresh(a);
	}
	return 0;
}

static int call_result(struct agent *a, enum ha_msg_type type,
		       const ProtobufCMessage *msg)
{
	enum ha_msg_type rtype;
	ProtobufCMessage *reply = NULL;
	int rc = ha_ipcc_call(a->conn, type, msg, CALL_TIMEOUT_MS, &rtype, &reply);

	if (rc == -ETIMEDOUT) {
		out_of_step(a, "an answer did not come in time");
	}
	if (rc < 0) {
		return rc;
	}
	if (rtype != HA_MSG_RESULT) {
		rc = -EPROTO;
		out_of_step(a, "a request got another request's answer");
	} else {
		Hactl__Result *r = (Hactl__Result *)reply;

		rc = r->code;
		if (rc < 0) {
			qb_log(LOG_WARNING, "coordinator refused %s: %s",
			       ha_msg_type_str(type), r->message ? r->message : "");
		}
	}
	ha_env_msg_free(reply);
	return rc;
}

static int try_connect(struct agent *a)
{
	Hactl__AgentHello h = HACTL__AGENT_HELLO__INIT;
	int rc;

	a->conn = qb_ipcc_connect(HA_IPC_NAME, HA_IPC_MAX_MSG);
	if (a->conn == NULL) {
		return -errno ? -errno : -ECONNREFUSED;
	}
	h.pid = (uint32_t)getpid();
	h.facts = &a->facts;
	a->out_of_step = false;
	rc = call_result(a, HA_MSG_AGENT_HELLO, &h.base);
	if (rc >= 0 && a->out_of_step) {
		rc = -EPROTO;
	}
	if (rc < 0) {
		qb_ipcc_disconnect(a->conn);
		a->conn = NULL;
		return rc;
	}
	qb_ipcc_fd_get(a->conn, &a->conn_fd);
	qb_loop_poll_add(a->loop, QB_LOOP_HIGH, a->conn_fd, POLLIN, a, conn_event_cb);
	a->registered = true;
	qb_log(LOG_NOTICE, "registered with the local coordinator");
	refresh(a);
	return 0;
}

static void reconnect_cb(void *data)
{
	struct agent *a = data;
	int rc;

	a->reconnect_timer = 0;
	if (a->conn || a->stopping) {
		return;
	}
	rc = try_connect(a);
	if (rc < 0) {
		qb_log(LOG_DEBUG, "coordinator not reachable: %s", strerror(-rc));
		schedule_reconnect(a);
	}
}

static void schedule_reconnect(struct agent *a)
{
	if (a->reconnect_timer == 0 && !a->stopping) {
		qb_loop_timer_add(a->loop, QB_LOOP_LOW,
				  (uint64_t)RECONNECT_MS * QB_TIME_NS_IN_MSEC, a,
				  reconnect_cb, &a->reconnect_timer);
	}
}

static void usage_cb(void *data)
{
	struct agent *a = data;
	Hactl__HostUsage u = HACTL__HOST_USAGE__INIT;
	Hactl__AgentUsage au = HACTL__AGENT_USAGE__INIT;
	int rc;

	a->usage_timer = 0;
	rc = agent_usage_sample(&a->cpu_prev, &u);
	if (rc < 0) {
		qb_log(LOG_WARNING, "usage sample failed: %s", strerror(-rc));
	} else if (a->conn) {
		u.has_guests_running = true;
		u.guests_running = agent_guests_running(a->guests);
		au.usage = &u;
		rc = call_result(a, HA_MSG_AGENT_USAGE, &au.base);
		if (rc == -ENOTCONN || rc == -EPIPE || rc == -ECONNRESET ||
		    rc == -ETIMEDOUT) {
			disconnect(a, strerror(-rc));
		}
	}
	schedule_usage(a);
}

#define TICK_MS 500

static void tick_cb(void *data)
{
	struct agent *a = data;

	a->tick_timer = 0;
	if (a->conn) {
		refresh(a);
	}
	agent_guests_tick(a->guests);
	if (!a->stopping) {
		qb_loop_timer_add(a->loop, QB_LOOP_MED, TICK_MS * QB_TIME_NS_IN_MSEC, a, tick_cb,
				  &a->tick_timer);
	}
}

static void schedule_usage(struct agent *a)
{
	if (!a->stopping) {
		qb_loop_timer_add(a->loop, QB_LOOP_MED,
				  (uint64_t)a->cfg.usage_interval_ms * QB_TIME_NS_IN_MSEC,
				  a, usage_cb, &a->usage_timer);
	}
}

static int32_t sig_stop(int32_t sig, void *data)
{
	struct agent *a = data;

	qb_log(LOG_NOTICE, "signal %d: stopping (guests keep running)", sig);
	a->stopping = true;
	qb_loop_stop(a->loop);
	return 0;
}

static int32_t sig_reload(int32_t sig, void *data)
{
	struct agent *a = data;
	struct ha_config fresh;
	char err[512];

	if (ha_config_load(a->config_path, true, &fresh, err, sizeof(err)) < 0) {
		qb_log(LOG_ERR, "reload refused, keeping the old settings: %s", err);
		return 0;
	}
	a->cfg.usage_interval_ms = fresh.usage_interval_ms;
	agent_guests_reload(a->guests);
	qb_log(LOG_NOTICE, "configuration reloaded from %s", a->config_path);
	return 0;
}

static void usage_text(FILE *out)
{
	fprintf(out,
		"usage: ha-agent [-f] [-c FILE] [-d]\n"
		"       ha-agent --facts     print this host's facts and exit\n"
		"  -f, --foreground  also log to stderr\n"
		"  -c, --config FILE configuration (default %s)\n"
		"  -d, --debug       log at debug level\n"
		"  -V, --version\n",
		HA_CONFIG_DEFAULT_PATH);
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "foreground", no_argument, NULL, 'f' },
		{ "config", required_argument, NULL, 'c' },
		{ "debug", no_argument, NULL, 'd' },
		{ "facts", no_argument, NULL, 'F' },
		{ "version", no_argument, NULL, 'V' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	static struct agent ag;
	struct agent *a = &ag;
	struct ha_log_opts lo = { .ident = "ha-agent" };
	struct agent_probe_opts po;
	bool foreground = false, debug = false, facts_only = false;
	char err[512];
	int opt, rc;

	a->config_path = HA_CONFIG_DEFAULT_PATH;
	while ((opt = getopt_long(argc, argv, "fc:dVh", opts, NULL)) != -1) {
		switch (opt) {
		case 'f':
			foreground = true;
			break;
		case 'c':
			a->config_path = optarg;
			break;
		case 'd':
			debug = true;
			break;
		case 'F':
			facts_only = true;
			break;
		case 'V':
			printf("ha-agent %s\n", HA_VERSION);
			return 0;
		case 'h':
			usage_text(stdout);
			return 0;
		default:
			usage_text(stderr);
			return 2;
		}
	}
	if (optind != argc) {
		usage_text(stderr);
		return 2;
	}
	if (ha_config_load(a->config_path, true, &a->cfg, err, sizeof(err)) < 0) {
		fprintf(stderr, "ha-agent: %s\n", err);
		return 3;
	}
	lo.to_stderr = foreground || facts_only;
	lo.file = facts_only ? NULL : a->cfg.agent_log_file;
	lo.priority = debug ? LOG_DEBUG : ha_log_priority_parse(a->cfg.agent_log_level);
	lo.crash_dir = a->cfg.state_dir;
	if (ha_log_init(&lo) < 0) {
		fprintf(stderr, "ha-agent: cannot open log file %s\n", lo.file);
		return 3;
	}
	signal(SIGPIPE, SIG_IGN);

	po.criu_path = a->cfg.criu_path;
	po.qemu_path = a->cfg.qemu_path;
	po.timeout_ms = 5000;
	hactl__host_facts__init(&a->facts);
	agent_facts_probe(&po, &a->facts);
	if (facts_only) {
		printf("cpus=%u mem_total_kib=%llu kvm_present=%d kvm_usable=%d "
		       "criu=%s mem_dirty_track=%d lazy_pages=%d qemu=%s rdma=%zu kernel=%s\n",
		       a->facts.cpus, (unsigned long long)a->facts.mem_total_kib,
		       a->facts.kvm_present, a->facts.kvm_usable,
		       a->facts.criu_present ? a->facts.criu_version : "absent",
		       a->facts.criu_mem_dirty_track, a->facts.criu_lazy_pages,
		       a->facts.qemu_version ? a->facts.qemu_version : "absent",
		       a->facts.n_rdma_devices, a->facts.kernel ? a->facts.kernel : "?");
		agent_facts_clear(&a->facts);
		ha_log_fini();
		return 0;
	}
	qb_log(LOG_NOTICE, "ha-agent %s: %u cpus, %llu MiB, kvm %s, criu %s, qemu %s, "
	       "%zu RDMA devices", HA_VERSION, a->facts.cpus,
	       (unsigned long long)a->facts.mem_total_kib / 1024,
	       a->facts.kvm_usable ? "usable" : a->facts.kvm_present ? "present, unusable" : "absent",
	       a->facts.criu_present ? a->facts.criu_version : "absent",
	       a->facts.qemu_version ? a->facts.qemu_version : "absent",
	       a->facts.n_rdma_devices);
	if (a->cfg.mig_network[0]) {
		char addr[INET6_ADDRSTRLEN];
		int arc = agent_mig_local_address(a->cfg.mig_network, addr, sizeof(addr));

		if (arc == 0) {
			a->facts.migration_address = strdup(addr);
			qb_log(LOG_NOTICE, "migration network %s: this host's migration address "
			       "is %s", a->cfg.mig_network, addr);
		} else {
			qb_log(LOG_WARNING, "migration network %s: %s; migrations to this host "
			       "use its cluster address", a->cfg.mig_network,
			       arc == -ENOENT ? "no address of this host is in it" :
						strerror(-arc));
		}
	}
	if (getenv("HACTL_DOMAIN_ACCEL") && getenv("HACTL_DOMAIN_ACCEL")[0]) {
		qb_log(LOG_NOTICE, "domain accelerator: $HACTL_DOMAIN_ACCEL=%s overrides "
		       "[agent] domain_accel = %s", getenv("HACTL_DOMAIN_ACCEL"),
		       a->cfg.domain_accel);
	} else {
		qb_log(LOG_INFO, "domain accelerator: [agent] domain_accel = %s",
		       a->cfg.domain_accel);
	}

	a->loop = qb_loop_create();
	if (a->loop == NULL) {
		return 6;
	}
	qb_loop_signal_add(a->loop, QB_LOOP_HIGH, SIGTERM, a, sig_stop, NULL);
	qb_loop_signal_add(a->loop, QB_LOOP_HIGH, SIGINT, a, sig_stop, NULL);
	qb_loop_signal_add(a->loop, QB_LOOP_HIGH, SIGHUP, a, sig_reload, NULL);
	agent_usage_sample(&a->cpu_prev, &(Hactl__HostUsage)HACTL__HOST_USAGE__INIT);
	{
		struct agent_guests_io io = { .arg = a, .report = io_report,
					      .action_done = io_action_done,
					      .mig_addr = a->facts.migration_address };

		a->guests = agent_guests_new(a->loop, &a->cfg, &io);
		if (a->guests == NULL) {
			qb_log(LOG_CRIT, "cannot set up the guest manager");
			return 6;
		}
	}

	rc = try_connect(a);
	if (rc < 0) {
		qb_log(LOG_INFO, "coordinator not reachable yet (%s); retrying", strerror(-rc));
		schedule_reconnect(a);
	}
	schedule_usage(a);
	qb_loop_timer_add(a->loop, QB_LOOP_MED, TICK_MS * QB_TIME_NS_IN_MSEC, a, tick_cb,
			  &a->tick_timer);
	qb_loop_run(a->loop);

	agent_guests_free(a->guests);
	if (a->conn) {
		qb_loop_poll_del(a->loop, a->conn_fd);
		qb_ipcc_disconnect(a->conn);
	}
	if (a->usage_timer) {
		qb_loop_timer_del(a->loop, a->usage_timer);
	}
	if (a->reconnect_timer) {
		qb_loop_timer_del(a->loop, a->reconnect_timer);
	}
	if (a->tick_timer) {
		qb_loop_timer_del(a->loop, a->tick_timer);
	}
	qb_loop_destroy(a->loop);
	agent_facts_clear(&a->facts);
	qb_log(LOG_NOTICE, "ha-agent stopped");
	ha_log_fini();
	return 0;
}
