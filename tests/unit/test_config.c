/*
 * test_config.c - hactl.conf: defaults, every option type, and the exact
 * "FILE:LINE: message" of every kind of mistake.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "harness.h"
#include "util.h"

static char dir[PATH_MAX];
static char path[PATH_MAX + 32];

static void write_conf(const char *text)
{
	CHECK_EQ_INT(ha_file_write_atomic(path, text, strlen(text)), 0);
}

/* Loads @text; returns the result and leaves the message in @err. */
static int load(const char *text, struct ha_config *cfg, char *err, size_t n)
{
	err[0] = 0;
	write_conf(text);
	return ha_config_load(path, false, cfg, err, n);
}

/* Loading @text must fail with exactly "PATH:@line: @msg". */
static void expect_error(const char *text, int line, const char *msg,
			 int src_line)
{
	struct ha_config cfg;
	char err[1024], want[1024 + PATH_MAX];
	int rc = load(text, &cfg, err, sizeof(err));

	snprintf(want, sizeof(want), "%s:%d: %s", path, line, msg);
	if (rc != -EINVAL || strcmp(err, want) != 0) {
		fprintf(stderr, "%s:%d: got %d '%s'\n%*swant '%s'\n", __FILE__,
			src_line, rc, err, (int)strlen(__FILE__) + 10, "", want);
	}
	CHECK_EQ_INT(rc, -EINVAL);
	CHECK(strcmp(err, want) == 0);
}

#define EXPECT_ERROR(text, line, msg) expect_error(text, line, msg, __LINE__)

static void check_defaults(const struct ha_config *cfg)
{
	CHECK(strcmp(cfg->state_dir, "/var/lib/hactl") == 0);
	CHECK(strcmp(cfg->shared_dir, "/srv/hactl") == 0);
	CHECK(strcmp(cfg->ipc_group, "hactl") == 0);
	CHECK(strcmp(cfg->coord_log_file, "") == 0);
	CHECK(strcmp(cfg->coord_log_level, "info") == 0);
	CHECK_EQ_INT(cfg->request_timeout_ms, 10000);
	CHECK(strcmp(cfg->agent_log_file, "") == 0);
	CHECK(strcmp(cfg->agent_log_level, "info") == 0);
	CHECK_EQ_INT(cfg->usage_interval_ms, 2000);
	CHECK(strcmp(cfg->criu_path, "/opt/hactl/criu/bin/criu") == 0);
	CHECK(strcmp(cfg->qemu_path, "qemu-system-x86_64") == 0);
	CHECK(strcmp(cfg->domain_accel, "tcg") == 0);
}

static void test_defaults(void)
{
	struct ha_config cfg;
	char err[256];

	memset(&cfg, 0x5a, sizeof(cfg));
	ha_config_defaults(&cfg);
	check_defaults(&cfg);

	/* An empty file, or only comments: the defaults, whatever was in
	 * the struct before. */
	memset(&cfg, 0x5a, sizeof(cfg));
	CHECK_EQ_INT(load("", &cfg, err, sizeof(err)), 0);
	check_defaults(&cfg);
	CHECK_EQ_INT(load("# nothing\n; nothing\n\n[cluster]\n", &cfg, err,
			  sizeof(err)), 0);
	check_defaults(&cfg);
}

/* Every option in the table accepts its own default, and the table is
 * well formed (a default the parser refused would silently be zero). */
static void test_table(void)
{
	const struct ha_opt *o;
	struct ha_config cfg;
	char text[512], err[1024];
	int n = 0;

	for (o = ha_config_options(); o->name; o++) {
		n++;
		CHECK(o->section != NULL && o->def != NULL && o->help != NULL);
		CHECK(o->type < HA_OPT_TYPE_MAX);
		CHECK(o->offset + o->size <= sizeof(struct ha_config));
		if (o->type == HA_OPT_UINT) {
			CHECK(o->min <= o->max && o->size == sizeof(uint32_t));
			CHECK(o->max <= UINT32_MAX);
		} else if (o->type == HA_OPT_STR) {
			CHECK(o->max == o->size - 1);
		} else if (o->type == HA_OPT_BOOL) {
			CHECK(o->size == sizeof(bool));
		} else if (o->type == HA_OPT_CHOICE) {
			CHECK(o->choices != NULL && o->max == o->size - 1);
		} else if (o->type == HA_OPT_NET || o->type == HA_OPT_LISTEN) {
			CHECK(o->max == o->size - 1);
		}
		snprintf(text, sizeof(text), "[%s]\n%s = %s\n", o->section,
			 o->name, o->def);
		CHECK_EQ_INT(load(text, &cfg, err, sizeof(err)), 0);
	}
	CHECK_EQ_INT(n, 25); /* update with the option table */
}

static void test_values(void)
{
	struct ha_config cfg;
	char err[1024];
	static const char *const levels[] = { "debug", "info", "notice",
					      "warning", "error" };

	CHECK_EQ_INT(load("[cluster]\n"
			  "state_dir = /var/lib/other\n"
			  "shared_dir=/mnt/shared   \n"
			  "ipc_group\t=\twheel ; inline comment\n"
			  "[coordinator]\n"
			  "log_file = /var/log/coord.log\n"
			  "log_level = debug\n"
			  "request_timeout_ms = 100\n"
			  "[agent]\n"
			  "log_level = error\n"
			  "usage_interval_ms = 600000\n"
			  "criu_path = /usr/local/sbin/criu\n"
			  "qemu_path = /usr/bin/qemu-kvm\n",
			  &cfg, err, sizeof(err)), 0);
	CHECK(strcmp(cfg.state_dir, "/var/lib/other") == 0);
	CHECK(strcmp(cfg.shared_dir, "/mnt/shared") == 0);
	CHECK(strcmp(cfg.ipc_group, "wheel") == 0);
	CHECK(strcmp(cfg.coord_log_file, "/var/log/coord.log") == 0);
	CHECK(strcmp(cfg.coord_log_level, "debug") == 0);
	CHECK_EQ_INT(cfg.request_timeout_ms, 100);
	CHECK(strcmp(cfg.agent_log_file, "") == 0);
	CHECK(strcmp(cfg.agent_log_level, "error") == 0);
	CHECK_EQ_INT(cfg.usage_interval_ms, 600000);
	CHECK(strcmp(cfg.criu_path, "/usr/local/sbin/criu") == 0);
	CHECK(strcmp(cfg.qemu_path, "/usr/bin/qemu-kvm") == 0);

	/* migration: defaults, then every spelling of a boolean */
	CHECK(strcmp(cfg.mig_key_file, "/etc/hactl/cluster.key") == 0);
	CHECK(cfg.mig_encrypt);
	CHECK(strcmp(cfg.mig_transport, "tcp") == 0);
	{
		static const char *const no[] = { "false", "no", "off", "0" };
		static const char *const yes[] = { "true", "yes", "on", "1" };
		char text[128];

		for (size_t i = 0; i < HA_ARRAY_SIZE(no); i++) {
			snprintf(text, sizeof(text), "[migration]\nencrypt = %s\n", no[i]);
			CHECK_EQ_INT(load(text, &cfg, err, sizeof(err)), 0);
			CHECK(!cfg.mig_encrypt);
			snprintf(text, sizeof(text), "[migration]\nencrypt = %s\n", yes[i]);
			CHECK_EQ_INT(load(text, &cfg, err, sizeof(err)), 0);
			CHECK(cfg.mig_encrypt);
		}
	}
	CHECK_EQ_INT(load("[migration]\ntransport = rdma\nkey_file = /k\n", &cfg, err,
			  sizeof(err)), 0);
	CHECK(strcmp(cfg.mig_transport, "rdma") == 0);
	CHECK(strcmp(cfg.mig_key_file, "/k") == 0);

	/* the migration network: a CIDR, one address, IPv6, or empty */
	{
		static const char *const nets[] = { "10.1.0.0/24", "10.1.0.11", "fd00:1::/64",
						    "0.0.0.0/0", "" };
		char text[128];

		for (size_t i = 0; i < HA_ARRAY_SIZE(nets); i++) {
			snprintf(text, sizeof(text), "[migration]\nnetwork = %s\n", nets[i]);
			CHECK_EQ_INT(load(text, &cfg, err, sizeof(err)), 0);
			CHECK(strcmp(cfg.mig_network, nets[i]) == 0);
		}
	}

	/* the HTTP endpoint: IPv4 or bracketed IPv6 with a port, or off */
	{
		static const char *const ls[] = { "127.0.0.1:9477", "[::1]:9477", "0.0.0.0:1",
						  "[fd00:1::5]:65535", "" };
		char text[128];

		for (size_t i = 0; i < HA_ARRAY_SIZE(ls); i++) {
			snprintf(text, sizeof(text), "[coordinator]\nmetrics_listen = %s\n"
				 "metrics_token = s3cret-T0ken\n", ls[i]);
			CHECK_EQ_INT(load(text, &cfg, err, sizeof(err)), 0);
			CHECK(strcmp(cfg.metrics_listen, ls[i]) == 0);
			CHECK(strcmp(cfg.metrics_token, "s3cret-T0ken") == 0);
		}
	}

	/* the accelerator of domains */
	{
		static const char *const accels[] = { "tcg", "kvm", "auto" };
		char text[128];

		for (size_t i = 0; i < HA_ARRAY_SIZE(accels); i++) {
			snprintf(text, sizeof(text), "[agent]\ndomain_accel = %s\n", accels[i]);
			CHECK_EQ_INT(load(text, &cfg, err, sizeof(err)), 0);
			CHECK(strcmp(cfg.domain_accel, accels[i]) == 0);
		}
	}

	/* Bounds are inclusive at both ends. */
	CHECK_EQ_INT(load("[coordinator]\nrequest_timeout_ms = 600000\n"
			  "[agent]\nusage_interval_ms = 200\n",
			  &cfg, err, sizeof(err)), 0);
	CHECK_EQ_INT(cfg.request_timeout_ms, 600000);
	CHECK_EQ_INT(cfg.usage_interval_ms, 200);

	for (size_t i = 0; i < HA_ARRAY_SIZE(levels); i++) {
		char text[128];

		snprintf(text, sizeof(text), "[agent]\nlog_level = %s\n", levels[i]);
		CHECK_EQ_INT(load(text, &cfg, err, sizeof(err)), 0);
		CHECK(strcmp(cfg.agent_log_level, levels[i]) == 0);
	}

	/* An empty value sets an empty string; the last setting wins; CRLF
	 * line ends and a UTF-8 byte order mark are fine. */
	CHECK_EQ_INT(load("\xef\xbb\xbf[cluster]\r\nstate_dir =\r\n"
			  "ipc_group = a\r\nipc_group = b\r\n",
			  &cfg, err, sizeof(err)), 0);
	CHECK(strcmp(cfg.state_dir, "") == 0);
	CHECK(strcmp(cfg.ipc_group, "b") == 0);

	/* A string of exactly the field's capacity. */
	{
		char text[128];

		snprintf(text, sizeof(text), "[cluster]\nipc_group = %.*s\n",
			 (int)sizeof(cfg.ipc_group) - 1,
			 "gggggggggggggggggggggggggggggggggggggggggggggggggggggggggggggggggggggggg");
		CHECK_EQ_INT(load(text, &cfg, err, sizeof(err)), 0);
		CHECK_EQ_INT(strlen(cfg.ipc_group), sizeof(cfg.ipc_group) - 1);
	}
}

static void test_errors(void)
{
	char text[512];

	/* booleans and words */
	EXPECT_ERROR("[migration]\nencrypt = maybe\n", 2,
		     "migration.encrypt: 'maybe' is not true or false");
	EXPECT_ERROR("[migration]\nencrypt =\n", 2,
		     "migration.encrypt: '' is not true or false");
	EXPECT_ERROR("[migration]\ntransport = udp\n", 2,
		     "migration.transport: 'udp' is not one of tcp|rdma");
	EXPECT_ERROR("[migration]\ntransport = tc\n", 2,
		     "migration.transport: 'tc' is not one of tcp|rdma");
	EXPECT_ERROR("[migration]\ntransport =\n", 2,
		     "migration.transport: '' is not one of tcp|rdma");
	EXPECT_ERROR("[cluster]\n[agent]\ndomain_accel = KVM\n", 3,
		     "agent.domain_accel: 'KVM' is not one of tcg|kvm|auto");
	EXPECT_ERROR("[migration]\nnetwork = 10.1.0.0/33\n", 2,
		     "migration.network: '10.1.0.0/33' is not an address or ADDRESS/PREFIX "
		     "(e.g. 10.1.0.0/24, fd00:1::/64)");
	EXPECT_ERROR("[migration]\n\nnetwork = eth1\n", 3,
		     "migration.network: 'eth1' is not an address or ADDRESS/PREFIX "
		     "(e.g. 10.1.0.0/24, fd00:1::/64)");
	EXPECT_ERROR("[migration]\nnetwork = 10.1.0.0/\n", 2,
		     "migration.network: '10.1.0.0/' is not an address or ADDRESS/PREFIX "
		     "(e.g. 10.1.0.0/24, fd00:1::/64)");
	{
		static const char *const bad[] = { "127.0.0.1", "127.0.0.1:0", "127.0.0.1:65536",
						   "::1:9477", "[::1]9477", "localhost:9477",
						   "127.0.0.1:", ":9477", "[127.0.0.1]:9477",
						   "127.0.0.1:94x7", "[::1:9477" };

		for (size_t i = 0; i < HA_ARRAY_SIZE(bad); i++) {
			char want[256];

			snprintf(text, sizeof(text), "[coordinator]\nmetrics_listen = %s\n", bad[i]);
			snprintf(want, sizeof(want), "coordinator.metrics_listen: '%s' is not "
				 "ADDRESS:PORT with a numeric address and a port 1..65535 "
				 "(e.g. 127.0.0.1:9477, [::1]:9477)", bad[i]);
			EXPECT_ERROR(text, 2, want);
		}
	}
	EXPECT_ERROR("[agent]\ndomain_accel = hvf\n", 2,
		     "agent.domain_accel: 'hvf' is not one of tcg|kvm|auto");

	/* numbers */
	EXPECT_ERROR("[coordinator]\nrequest_timeout_ms = 99\n", 2,
		     "coordinator.request_timeout_ms: '99' is not a number in 100..600000");
	EXPECT_ERROR("\n\n[coordinator]\nrequest_timeout_ms = 600001\n", 4,
		     "coordinator.request_timeout_ms: '600001' is not a number in 100..600000");
	EXPECT_ERROR("[agent]\nusage_interval_ms = 199\n", 2,
		     "agent.usage_interval_ms: '199' is not a number in 200..600000");
	EXPECT_ERROR("[agent]\nusage_interval_ms = -1\n", 2,
		     "agent.usage_interval_ms: '-1' is not a number in 200..600000");
	EXPECT_ERROR("[agent]\nusage_interval_ms = 2s\n", 2,
		     "agent.usage_interval_ms: '2s' is not a number in 200..600000");
	EXPECT_ERROR("[agent]\nusage_interval_ms = 0x400\n", 2,
		     "agent.usage_interval_ms: '0x400' is not a number in 200..600000");
	EXPECT_ERROR("[agent]\nusage_interval_ms =\n", 2,
		     "agent.usage_interval_ms: '' is not a number in 200..600000");
	EXPECT_ERROR("[agent]\nusage_interval_ms = 18446744073709551616\n", 2,
		     "agent.usage_interval_ms: '18446744073709551616' is not a number in 200..600000");
	/* 2^32 + 1000 must not wrap into range */
	EXPECT_ERROR("[agent]\nusage_interval_ms = 4294968296\n", 2,
		     "agent.usage_interval_ms: '4294968296' is not a number in 200..600000");

	/* log levels */
	EXPECT_ERROR("[coordinator]\nlog_level = verbose\n", 2,
		     "coordinator.log_level: 'verbose' is not one of debug, info, notice, warning, error");
	EXPECT_ERROR("[agent]\nlog_level = INFO\n", 2,
		     "agent.log_level: 'INFO' is not one of debug, info, notice, warning, error");

	/* strings */
	snprintf(text, sizeof(text), "[cluster]\nipc_group = %s\n",
		 "gggggggggggggggggggggggggggggggggggggggggggggggggggggggggggggggg");
	EXPECT_ERROR(text, 2, "cluster.ipc_group: longer than 63 characters");
	/* a continuation line keeps what would be a comment on its own line */
	EXPECT_ERROR("[cluster]\nstate_dir = /a\n  /b ; c\n", 3,
		     "cluster.state_dir: ';' after a blank starts a comment; not allowed inside a value");

	/* names */
	EXPECT_ERROR("[cluster]\nstate_dir = /x\nstatedir = /y\n", 3,
		     "unknown option 'statedir' in section [cluster]");
	EXPECT_ERROR("[agent]\nstate_dir = /x\n", 2,
		     "unknown option 'state_dir' in section [agent]");
	EXPECT_ERROR("# hactl\n[clusters]\nstate_dir = /x\n", 3,
		     "unknown section [clusters]");
	EXPECT_ERROR("state_dir = /x\n", 1, "option 'state_dir' before any [section]");

	/* syntax */
	EXPECT_ERROR("[cluster]\nstate_dir /x\n", 2, "syntax error");
	EXPECT_ERROR("[cluster\nstate_dir = /x\n", 1, "syntax error");
	EXPECT_ERROR("[cluster]\n\n\n\njust words", 5, "syntax error");

	/* The first mistake is reported, with its own message. */
	EXPECT_ERROR("[cluster]\ngarbage\nnope = 1\n", 2, "syntax error");
	EXPECT_ERROR("[cluster]\nnope = 1\ngarbage\n", 2,
		     "unknown option 'nope' in section [cluster]");
	EXPECT_ERROR("[agent]\nlog_level = loud\nusage_interval_ms = 1\n", 2,
		     "agent.log_level: 'loud' is not one of debug, info, notice, warning, error");

	/* A line longer than the parser's buffer is refused where it is,
	 * instead of being cut in two. */
	snprintf(text, sizeof(text), "[cluster]\nstate_dir = /%0300d\nipc_group = x\n", 0);
	EXPECT_ERROR(text, 2, "line longer than 199 characters");
	snprintf(text, sizeof(text), "[cluster]\nstate_dir = /%0187d\n", 0);
	EXPECT_ERROR(text, 2, "line longer than 199 characters");
	snprintf(text, sizeof(text), "[cluster]\nstate_dir = /%0186d", 0);
	{
		struct ha_config cfg;
		char err[512];

		/* 12 + 1 + 186 = 199 characters fit, with or without '\n' */
		CHECK_EQ_INT(load(text, &cfg, err, sizeof(err)), 0);
		CHECK_EQ_INT(strlen(cfg.state_dir), 187);
		strcat(text, "\n");
		CHECK_EQ_INT(load(text, &cfg, err, sizeof(err)), 0);
		CHECK_EQ_INT(strlen(cfg.state_dir), 187);
	}
}

static void test_missing_file(void)
{
	struct ha_config cfg;
	char err[1024], want[PATH_MAX + 64], missing[PATH_MAX + 32];
	char below[sizeof(path) + 8];

	snprintf(missing, sizeof(missing), "%s/absent.conf", dir);
	memset(&cfg, 0, sizeof(cfg));
	err[0] = 0;
	CHECK_EQ_INT(ha_config_load(missing, true, &cfg, err, sizeof(err)), 0);
	check_defaults(&cfg);
	CHECK_EQ_INT(err[0], 0);

	CHECK_EQ_INT(ha_config_load(missing, false, &cfg, err, sizeof(err)), -ENOENT);
	snprintf(want, sizeof(want), "%s: %s", missing, strerror(ENOENT));
	CHECK(strcmp(err, want) == 0);

	/* A directory is not a configuration file, missing_ok or not. */
	CHECK_EQ_INT(ha_config_load(dir, true, &cfg, err, sizeof(err)), -EISDIR);
	snprintf(want, sizeof(want), "%s: %s", dir, strerror(EISDIR));
	CHECK(strcmp(err, want) == 0);

	/* A path below a regular file. */
	write_conf("");
	snprintf(below, sizeof(below), "%s/below", path);
	CHECK_EQ_INT(ha_config_load(below, true, &cfg, err, sizeof(err)), -ENOTDIR);
}

/* What ha_config_print() writes loads back to the same configuration. */
static void test_print_round_trip(void)
{
	struct ha_config cfg, again;
	char err[1024];
	char *text = NULL;
	size_t len = 0;
	FILE *out;

	CHECK_EQ_INT(load("[cluster]\nstate_dir = /var/lib/other\n"
			  "[coordinator]\nlog_level = notice\nrequest_timeout_ms = 2500\n"
			  "[agent]\nlog_file = /var/log/agent.log\n",
			  &cfg, err, sizeof(err)), 0);
	out = open_memstream(&text, &len);
	CHECK(out != NULL);
	if (out == NULL) {
		return;
	}
	ha_config_print(&cfg, out);
	fclose(out);
	CHECK(strstr(text, "[cluster]\nstate_dir = /var/lib/other\n") == text);
	CHECK(strstr(text, "\n[coordinator]\n") != NULL);
	CHECK(strstr(text, "request_timeout_ms = 2500\n") != NULL);
	CHECK(strstr(text, "\n[agent]\nlog_file = /var/log/agent.log\n") != NULL);
	CHECK_EQ_INT(load(text, &again, err, sizeof(err)), 0);
	CHECK(strcmp(again.state_dir, cfg.state_dir) == 0);
	CHECK(strcmp(again.coord_log_level, "notice") == 0);
	CHECK_EQ_INT(again.request_timeout_ms, 2500);
	CHECK(strcmp(again.agent_log_file, cfg.agent_log_file) == 0);
	CHECK(strcmp(again.qemu_path, cfg.qemu_path) == 0);
	free(text);
}

int main(void)
{
	const char *tmp = getenv("TMPDIR");

	snprintf(dir, sizeof(dir), "%s/test_config.XXXXXX", tmp && *tmp ? tmp : "/tmp");
	if (mkdtemp(dir) == NULL) {
		perror("mkdtemp");
		return 1;
	}
	snprintf(path, sizeof(path), "%s/hactl.conf", dir);

	test_defaults();
	test_table();
	test_values();
	test_errors();
	test_missing_file();
	test_print_round_trip();

	unlink(path);
	CHECK_EQ_INT(rmdir(dir), 0);
	return ha_test_done("test_config");
}
