/*
 * test_guestdef.c - guest definition parsing and its exact errors.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "driver.h"
#include "guestdef.h"
#include "harness.h"

static int parse(const char *text, struct ha_guest_def *d, char *err)
{
	return ha_guestdef_parse(text, strlen(text), "g.conf", d, err, 512);
}

static void expect_error(const char *text, const char *want)
{
	struct ha_guest_def d;
	char err[512] = "";

	CHECK(parse(text, &d, err) < 0);
	if (strcmp(err, want) != 0) {
		ha_test_failures++;
		fprintf(stderr, "error\n  got:  %s\n  want: %s\n", err, want);
	}
	ha_test_checks++;
}

#define CT "[guest]\nname = c1\ntype = container\ncommand = /bin/sh\n[storage]\ntemplate = t\n"

/* Both drivers take exactly the memory that [guest] memory allows, so
 * that `hactl check`, docs/guests.md, docs/containers.md and
 * docs/domains.md can name one range (16M..64G). */
static void driver_mem_bounds(void)
{
	static const char *const types[] = { "container", "domain" };
	const uint64_t cases[][2] = {
		{ HA_GUEST_MEM_MIN_KIB - 1, 0 }, { HA_GUEST_MEM_MIN_KIB, 1 },
		{ HA_GUEST_MEM_MAX_KIB, 1 }, { HA_GUEST_MEM_MAX_KIB + 1, 0 },
	};

	CHECK_EQ_INT(HA_GUEST_MEM_MIN_KIB, 16 * 1024);
	CHECK_EQ_INT(HA_GUEST_MEM_MAX_KIB, 64ull * 1024 * 1024);
	for (size_t t = 0; t < sizeof(types) / sizeof(types[0]); t++) {
		const struct agent_driver_ops *ops = agent_driver_find(types[t]);
		struct agent_driver drv = { .ops = ops };

		CHECK(ops != NULL);
		if (ops == NULL) {
			continue;
		}
		for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
			struct agent_guest_spec spec = {
				.name = "m1", .type = types[t], .mem_kib = cases[i][0], .cpus = 1,
				.cpu_weight = 1000, .rootfs = "/usr", .kernel = "/vmlinux",
				.initrd = "/initrd", .command = "/bin/true", .ip = "10.0.0.2/24",
				.bridge = "hbr0", .run_dir = "/tmp/hactl-test-m1-run",
				.data_dir = "/tmp/hactl-test-m1-data",
			};
			struct agent_guest *g = NULL;
			char err[AGENT_ERR_LEN] = "";
			int rc = ops->create(&drv, &spec, &g, err);

			if ((rc == 0) != (cases[i][1] == 1)) {
				fprintf(stderr, "%s, %llu KiB: %d %s\n", types[t],
					(unsigned long long)cases[i][0], rc, err);
			}
			CHECK((rc == 0) == (cases[i][1] == 1));
			/* refused for its memory, not for anything else */
			CHECK(rc == 0 || strstr(err, " KiB") != NULL);
			if (rc == 0 && g) {
				ops->guest_free(g);
			}
		}
	}
}

/* [ha] check: its forms, its bounds, and tcp's need of an address. */
static void health_check(void)
{
	struct ha_guest_def d;
	char err[512];
	const char *cmd;
	uint32_t port;

	CHECK_EQ_INT(parse(CT, &d, err), 0);
	CHECK(ha_guestdef_check(&d, &port, &cmd) == HA_CHECK_NONE);
	CHECK_EQ_INT(d.check_interval_s, 10);
	CHECK_EQ_INT(d.check_timeout_s, 5);
	CHECK_EQ_INT(d.check_failures, 3);
	CHECK_EQ_INT(parse(CT "[network]\nip = 10.0.0.5/24\n[ha]\ncheck = tcp:7000\n"
			   "check_interval = 2\ncheck_failures = 1\n", &d, err), 0);
	CHECK(ha_guestdef_check(&d, &port, &cmd) == HA_CHECK_TCP && port == 7000 && cmd == NULL);
	CHECK_EQ_INT(d.check_interval_s, 2);
	CHECK_EQ_INT(d.check_failures, 1);
	CHECK_EQ_INT(parse(CT "[ha]\ncheck = exec:test -e /srv/ok\n", &d, err), 0);
	CHECK(ha_guestdef_check(&d, &port, &cmd) == HA_CHECK_EXEC && port == 0 &&
	      strcmp(cmd, "test -e /srv/ok") == 0);
	CHECK_EQ_INT(parse(CT "[ha]\ncheck = none\n", &d, err), 0);
	CHECK(ha_guestdef_check(&d, &port, &cmd) == HA_CHECK_NONE);
	expect_error(CT "[ha]\ncheck = tcp:0\n",
		     "g.conf:8: check: 'tcp:0': the port is not a number in 1..65535");
	expect_error(CT "[ha]\ncheck = http:80\n",
		     "g.conf:8: check: 'http:80' is not none, tcp:PORT or exec:CMD");
	expect_error(CT "[ha]\ncheck = exec:\n",
		     "g.conf:8: check: 'exec:' is not none, tcp:PORT or exec:CMD");
	expect_error(CT "[ha]\ncheck = tcp:80\n",
		     "g.conf:8: check = tcp:80 needs the guest's address ([network] ip)");
	expect_error(CT "[ha]\ncheck_failures = 0\n",
		     "g.conf:8: check_failures: '0' is not a number in 1..100");
}

int main(void)
{
	struct ha_guest_def d;
	char err[512];
	uint64_t kib;

	driver_mem_bounds();
	health_check();
	CHECK_EQ_INT(parse(CT, &d, err), 0);
	CHECK(strcmp(d.name, "c1") == 0);
	CHECK_EQ_INT(d.mem_kib, 128 * 1024);
	CHECK_EQ_INT(d.cpu_weight, 1000);
	CHECK_EQ_INT(d.restart, HA_RESTART_SNAPSHOT);
	CHECK_EQ_INT(d.snapshot_keep, 3);
	CHECK_EQ_INT(d.stop_timeout_s, 30);
	CHECK_EQ_INT(d.disk_kib, 1024 * 1024);

	CHECK_EQ_INT(parse(CT "[guest]\nmemory = 1G\ncpu_limit = 150\n[network]\nip = 10.0.0.5/24\n"
			      "gateway = 10.0.0.1\n[ha]\nrestart = cold\npriority = 7\n", &d, err), 0);
	CHECK_EQ_INT(d.mem_kib, 1024 * 1024);
	CHECK_EQ_INT(d.cpu_limit_pct, 150);
	CHECK(strcmp(d.ip, "10.0.0.5/24") == 0);
	CHECK_EQ_INT(d.restart, HA_RESTART_COLD);
	CHECK_EQ_INT(d.priority, 7);

	CHECK_EQ_INT(parse("[guest]\nname = d1\ntype = domain\n[storage]\nkernel = k\ninitrd = i\n",
			   &d, err), 0);

	expect_error("[guest]\nname = c1\n", "g.conf:0: [guest] type is required");
	expect_error("[guest]\ntype = container\n", "g.conf:0: [guest] name is required");
	expect_error("[guest]\nname = c 1\n", "g.conf:2: name: 'c 1' is not a valid name (letters, digits, - _ ., at most 63)");
	expect_error("[guest]\nname = c1\ntype = vm\n", "g.conf:3: type: 'vm' is not container or domain");
	expect_error(CT "[guest]\nmemory = 12X\n",
		     "g.conf:8: memory: '12X' is not a size in 16M..64G (K, M or G suffix)");
	expect_error(CT "[guest]\nmemory = 1M\n",
		     "g.conf:8: memory: '1M' is not a size in 16M..64G (K, M or G suffix)");
	CHECK_EQ_INT(parse(CT "disk_quota = 200M\n", &d, err), 0);
	CHECK_EQ_INT(d.disk_kib, 200 * 1024);
	expect_error(CT "disk_quota = 1M\n",
		     "g.conf:7: disk_quota: '1M' is not a size in 32M..16384G (K, M or G suffix)");
	expect_error(CT "disk_quota = 17000G\n",
		     "g.conf:7: disk_quota: '17000G' is not a size in 32M..16384G (K, M or G suffix)");
	expect_error(CT "disk_quota = lots\n",
		     "g.conf:7: disk_quota: 'lots' is not a size in 32M..16384G (K, M or G suffix)");
	expect_error(CT "[guest]\ncpus = 0\n", "g.conf:8: cpus: '0' is not a number in 1..64");
	expect_error(CT "[network]\nip = 10.0.0.300/24\n",
		     "g.conf:8: ip: '10.0.0.300/24' is not an IPv4 address/prefix");
	expect_error(CT "[network]\nip = 10.0.0.3\n",
		     "g.conf:8: ip: '10.0.0.3' is not an IPv4 address/prefix");
	expect_error(CT "[ha]\nrestart = maybe\n",
		     "g.conf:8: restart: 'maybe' is not snapshot, cold or none");
	expect_error(CT "[guest]\nfrobs = 1\n", "g.conf:8: unknown option 'frobs' in [guest]");
	expect_error(CT "[guest]\nname = c2\n", "g.conf:8: name given twice in [guest]");
	expect_error("[guest]\nname = c1\ntype = container\ncommand = x\n",
		     "g.conf:0: a container needs [storage] template");
	expect_error("[guest]\nname = d1\ntype = domain\n[storage]\nkernel = k\n",
		     "g.conf:0: a domain needs [storage] kernel and initrd");
	expect_error(CT "[storage]\nkernel = k\n",
		     "g.conf:0: kernel, initrd and disk are for domains only");
	expect_error(CT "[network]\ngateway = 10.0.0.1\n", "g.conf:0: gateway given without ip");
	expect_error("[guest\nname = c1\n",
		     "g.conf:1: syntax error (a [section] or key = value, at most 198 characters)");
	expect_error(CT "just words\n",
		     "g.conf:7: syntax error (a [section] or key = value, at most 198 characters)");
	{
		char big[HA_GUESTDEF_MAX_TEXT + 2];

		memset(big, '\n', sizeof(big) - 1);
		big[sizeof(big) - 1] = 0;
		expect_error(big, "g.conf:0: definition longer than 65536 bytes");
	}
	CHECK(ha_guestdef_parse("a\0b", 3, "g.conf", &d, err, sizeof(err)) < 0);

	/* Host paths outside the managed storage are refused, naming the
	 * file, line, key and path. */
#define DOM "[guest]\nname = d1\ntype = domain\n[storage]\nkernel = k\ninitrd = i\n"
	expect_error(DOM "disk = /dev/sda\n",
		     "g.conf:7: [storage] disk: '/dev/sda' is outside the storage hactl manages "
		     "(a path relative to shared_dir/disks without '..', or a DRBD device "
		     "/dev/drbdN or /dev/drbd/by-res/RES/N)");
	expect_error("[guest]\nname = c1\ntype = container\ncommand = /bin/sh\n[storage]\n"
		     "template = /\n",
		     "g.conf:6: [storage] template: '/' is outside the storage hactl manages "
		     "(a path relative to shared_dir/templates without '..')");
	expect_error("[guest]\nname = c1\ntype = container\ncommand = /bin/sh\n[storage]\n"
		     "template = ../../etc\n",
		     "g.conf:6: [storage] template: '../../etc' is outside the storage hactl manages "
		     "(a path relative to shared_dir/templates without '..')");
	{
		static const char *const bad[] = {
			"/etc/shadow", "..", "a/../../b", "a/..", "./a", "a//b", "a/", "-x",
			"a/./b", "/dev/drbd", "/dev/drbd1x", "/dev/drbd/by-res/all/0",
			"/dev/drbd/by-res/r0/../../sda", "/dev/drbd/by-res/r0/", "/dev/drbd/by-res//0",
		};
		static const char *const good[] = {
			"disk.img", "web/disk.qcow2", "..disk", "a..b/c", "/dev/drbd0",
			"/dev/drbd/by-res/r0/0",
		};

		for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
			char text[256];

			snprintf(text, sizeof(text), DOM "disk = %s\n", bad[i]);
			CHECK(parse(text, &d, err) == -EINVAL && strstr(err, "outside the storage") &&
			      strstr(err, bad[i]));
			snprintf(text, sizeof(text), "[guest]\nname = d1\ntype = domain\n[storage]\n"
				 "kernel = %s\ninitrd = i\n", bad[i]);
			CHECK(parse(text, &d, err) == -EINVAL && strstr(err, "[storage] kernel"));
		}
		for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
			char text[256];

			snprintf(text, sizeof(text), DOM "disk = %s\n", good[i]);
			CHECK_EQ_INT(parse(text, &d, err), 0);
			CHECK(strcmp(d.disk, good[i]) == 0);
		}
		/* a DRBD device is a disk, never a kernel or template */
		CHECK(parse("[guest]\nname = d1\ntype = domain\n[storage]\nkernel = /dev/drbd0\n"
			    "initrd = i\n", &d, err) == -EINVAL);
	}

	CHECK_EQ_INT(ha_parse_size_kib("64", &kib), 0);
	CHECK_EQ_INT(kib, 65536);
	CHECK_EQ_INT(ha_parse_size_kib("512K", &kib), 0);
	CHECK_EQ_INT(kib, 512);
	CHECK_EQ_INT(ha_parse_size_kib("2GiB", &kib), 0);
	CHECK_EQ_INT(kib, 2 * 1024 * 1024);
	CHECK(ha_parse_size_kib("-1", &kib) < 0);
	CHECK(ha_parse_size_kib("99999999999999999999G", &kib) < 0);
	CHECK(ha_name_valid("web-1.a_b"));
	CHECK(!ha_name_valid("-x"));
	CHECK(!ha_name_valid("a/b"));
	CHECK(!ha_name_valid(""));

	/* failover_snapshot_max_age (issue 20) */
	{
		char buf[64];

		CHECK_EQ_INT(parse(CT, &d, err), 0);
		CHECK_EQ_INT(d.failover_max_age_s, HA_FAILOVER_AGE_AUTO);
		CHECK_EQ_INT(ha_guestdef_failover_max_age_ms(&d), 0); /* no periodic ones */
		ha_guestdef_failover_max_age_str(&d, buf, sizeof(buf));
		CHECK(strcmp(buf, "auto (0 s)") == 0);
		CHECK_EQ_INT(parse(CT "[ha]\nsnapshot_interval = 30\n", &d, err), 0);
		CHECK_EQ_INT(ha_guestdef_failover_max_age_ms(&d), 90000);
		ha_guestdef_failover_max_age_str(&d, buf, sizeof(buf));
		CHECK(strcmp(buf, "auto (90 s)") == 0);
		CHECK_EQ_INT(parse(CT "[ha]\nsnapshot_interval = 30\nfailover_snapshot_max_age = 45\n",
				   &d, err), 0);
		CHECK_EQ_INT(ha_guestdef_failover_max_age_ms(&d), 45000);
		CHECK_EQ_INT(parse(CT "[ha]\nfailover_snapshot_max_age = unlimited\n", &d, err), 0);
		CHECK(ha_guestdef_failover_max_age_ms(&d) == UINT64_MAX);
		ha_guestdef_failover_max_age_str(&d, buf, sizeof(buf));
		CHECK(strcmp(buf, "unlimited") == 0);
		CHECK_EQ_INT(parse(CT "[ha]\nfailover_snapshot_max_age = auto\n", &d, err), 0);
		CHECK_EQ_INT(parse(CT "[ha]\nfailover_snapshot_max_age = 2592000\n", &d, err), 0);
		CHECK_EQ_INT(ha_guestdef_failover_max_age_ms(&d), 2592000000ull);
		expect_error(CT "[ha]\nfailover_snapshot_max_age = 0\n",
			     "g.conf:8: failover_snapshot_max_age: '0' is not seconds in 1..2592000, "
			     "auto or unlimited (for no snapshot at all: restart = cold)");
		expect_error(CT "[ha]\nfailover_snapshot_max_age = 2592001\n",
			     "g.conf:8: failover_snapshot_max_age: '2592001' is not seconds in "
			     "1..2592000, auto or unlimited");
		expect_error(CT "[ha]\nfailover_snapshot_max_age = 5m\n",
			     "g.conf:8: failover_snapshot_max_age: '5m' is not seconds in 1..2592000, "
			     "auto or unlimited");
		expect_error(CT "[ha]\nfailover_snapshot_max_age = none\n",
			     "g.conf:8: failover_snapshot_max_age: 'none' is not seconds in "
			     "1..2592000, auto or unlimited");
		/* shorter than the interval: cold between two snapshots */
		expect_error(CT "[ha]\nsnapshot_interval = 60\n# the limit\n"
			     "failover_snapshot_max_age = 30\n",
			     "g.conf:10: failover_snapshot_max_age (30 s) is shorter than "
			     "snapshot_interval (60 s): make it at least 2 x snapshot_interval, or "
			     "auto");
	}
	return ha_test_done("test_guestdef");
}
