/*
 * coord_main.c - ha-coordinator: startup, signals, shutdown.
 *
 * Exit codes (one per cause): 0 clean stop, 2 bad usage, 3 bad
 * configuration, 4 state directory unusable, 5 IPC server failed,
 * 6 event loop failed.
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>

#include <qb/qblog.h>

#include "coord_http.h"
#include "coordinator.h"
#include "log.h"
#include "util.h"

enum {
	EXIT_USAGE = 2,
	EXIT_CONFIG = 3,
	EXIT_STATE_DIR = 4,
	EXIT_IPC = 5,
	EXIT_LOOP = 6,
};

static void usage(FILE *out)
{
	fprintf(out,
		"usage: ha-coordinator [-f] [-c FILE] [-d]\n"
		"       ha-coordinator --check FILE\n"
		"  -f, --foreground  also log to stderr\n"
		"  -c, --config FILE configuration (default %s)\n"
		"  -d, --debug       log at debug level\n"
		"      --check FILE  validate FILE and print the effective settings\n"
		"      --options     print the reference of every option (markdown)\n"
		"      --example     print a complete commented hactl.conf\n"
		"  -V, --version\n",
		HA_CONFIG_DEFAULT_PATH);
}

static int32_t sig_stop(int32_t sig, void *data)
{
	struct coord *c = data;

	qb_log(LOG_NOTICE, "signal %d: stopping", sig);
	c->stopping = true;
	qb_loop_stop(c->loop);
	return 0;
}

static int32_t sig_reload(int32_t sig, void *data)
{
	struct coord *c = data;
	struct ha_config fresh;
	char err[512];

	if (ha_config_load(c->config_path, true, &fresh, err, sizeof(err)) < 0) {
		qb_log(LOG_ERR, "reload refused, keeping the old settings: %s", err);
		return 0;
	}
	/* Only the reloadable options change. */
	c->cfg.request_timeout_ms = fresh.request_timeout_ms;
	snprintf(c->cfg.coord_log_level, sizeof(c->cfg.coord_log_level), "%s",
		 fresh.coord_log_level);
	qb_log_filter_ctl(QB_LOG_SYSLOG, QB_LOG_FILTER_CLEAR_ALL, QB_LOG_FILTER_FILE, "*", 0);
	qb_log_filter_ctl(QB_LOG_SYSLOG, QB_LOG_FILTER_ADD, QB_LOG_FILTER_FILE, "*",
			  ha_log_priority_parse(fresh.coord_log_level));
	snprintf(c->cfg.policy_path, sizeof(c->cfg.policy_path), "%s", fresh.policy_path);
	coord_balance_reload(c, true);
	qb_log(LOG_NOTICE, "configuration reloaded from %s", c->config_path);
	return 0;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "foreground", no_argument, NULL, 'f' },
		{ "config", required_argument, NULL, 'c' },
		{ "debug", no_argument, NULL, 'd' },
		{ "check", required_argument, NULL, 'C' },
		{ "version", no_argument, NULL, 'V' },
		{ "help", no_argument, NULL, 'h' },
		{ "options", no_argument, NULL, 'O' },
		{ "example", no_argument, NULL, 'E' },
		{ 0 },
	};
	static struct coord co; /* large: keep it off the stack */
	struct coord *c = &co;
	struct ha_log_opts lo = { .ident = "ha-coordinator" };
	bool foreground = false, debug = false;
	char err[512];
	int opt, rc;

	c->config_path = HA_CONFIG_DEFAULT_PATH;
	while ((opt = getopt_long(argc, argv, "fc:dVh", opts, NULL)) != -1) {
		switch (opt) {
		case 'f':
			foreground = true;
			break;
		case 'c':
			c->config_path = optarg;
			break;
		case 'd':
			debug = true;
			break;
		case 'C':
			if (ha_config_load(optarg, false, &c->cfg, err, sizeof(err)) < 0) {
				fprintf(stderr, "%s\n", err);
				return EXIT_CONFIG;
			}
			ha_config_print(&c->cfg, stdout);
			return 0;
		case 'V':
			printf("ha-coordinator %s\n", HA_VERSION);
			return 0;
		case 'O':
			ha_config_print_reference(stdout);
			return 0;
		case 'E':
			ha_config_print_example(stdout);
			return 0;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return EXIT_USAGE;
		}
	}
	if (optind != argc) {
		usage(stderr);
		return EXIT_USAGE;
	}
	if (ha_config_load(c->config_path, true, &c->cfg, err, sizeof(err)) < 0) {
		fprintf(stderr, "ha-coordinator: %s\n", err);
		return EXIT_CONFIG;
	}
	rc = ha_mkdir_p(c->cfg.state_dir, 0700);
	if (rc < 0) {
		fprintf(stderr, "ha-coordinator: state_dir %s: %s\n", c->cfg.state_dir,
			strerror(-rc));
		return EXIT_STATE_DIR;
	}
	if (strlen(c->cfg.state_dir) + sizeof("/cluster-state") > sizeof(c->state_path)) {
		fprintf(stderr, "ha-coordinator: state_dir too long\n");
		return EXIT_STATE_DIR;
	}
	strcpy(c->state_path, c->cfg.state_dir);
	strcat(c->state_path, "/cluster-state");

	lo.to_stderr = foreground;
	lo.file = c->cfg.coord_log_file;
	lo.priority = debug ? LOG_DEBUG : ha_log_priority_parse(c->cfg.coord_log_level);
	lo.crash_dir = c->cfg.state_dir;
	rc = ha_log_init(&lo);
	if (rc < 0) {
		fprintf(stderr, "ha-coordinator: log file %s: %s\n", lo.file, strerror(-rc));
		return EXIT_CONFIG;
	}

	coord_init(c);
	coord_state_load(c);

	c->loop = qb_loop_create();
	if (c->loop == NULL) {
		qb_log(LOG_CRIT, "cannot create the event loop");
		return EXIT_LOOP;
	}
	qb_loop_signal_add(c->loop, QB_LOOP_HIGH, SIGTERM, c, sig_stop, NULL);
	qb_loop_signal_add(c->loop, QB_LOOP_HIGH, SIGINT, c, sig_stop, NULL);
	qb_loop_signal_add(c->loop, QB_LOOP_HIGH, SIGHUP, c, sig_reload, NULL);
	signal(SIGPIPE, SIG_IGN);

	rc = coord_fence_start(c);
	if (rc < 0) {
		qb_log(LOG_CRIT, "cannot start fencing: %s", strerror(-rc));
		return EXIT_LOOP;
	}
	rc = coord_balance_start(c);
	if (rc < 0) {
		qb_log(LOG_CRIT, "cannot start balancing: %s", strerror(-rc));
		return EXIT_LOOP;
	}
	rc = coord_ipc_start(c);
	if (rc < 0) {
		qb_log(LOG_CRIT, "cannot start the IPC server: %s", strerror(-rc));
		return EXIT_IPC;
	}
	/* metrics and the status page: a cluster service that cannot serve
	 * them still runs (the error is logged, the address tried again) */
	coord_http_start(c);
	rc = coord_cluster_connect(c);
	if (rc < 0) {
		qb_log(LOG_WARNING, "corosync not reachable (%s); retrying", strerror(-rc));
		coord_cluster_schedule_reconnect(c);
	}
	qb_log(LOG_NOTICE, "ha-coordinator %s started (state %s)", HA_VERSION,
	       c->state_path);

	qb_loop_run(c->loop);

	coord_http_stop(c);
	coord_fence_stop(c);
	coord_balance_stop(c);
	coord_pending_free_all(c);
	coord_ipc_stop(c);
	coord_cluster_disconnect(c);
	coord_state_save(c);
	coord_replica_reset(c);
	coord_state_clear(&c->state);
	if (c->agent_facts) {
		protobuf_c_message_free_unpacked(&c->agent_facts->base, NULL);
	}
	if (c->agent_usage) {
		protobuf_c_message_free_unpacked(&c->agent_usage->base, NULL);
	}
	coord_events_free(c);
	coord_metrics_free(&c->metrics);
	qb_loop_destroy(c->loop);
	qb_log(LOG_NOTICE, "ha-coordinator stopped");
	ha_log_fini();
	return 0;
}
