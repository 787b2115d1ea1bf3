/*
 * test_host.c - the agent's host layer (agent/host_*.c): /proc/PID/stat
 * parsing and liveness; addresses, bridge ports and taps (in a network
 * namespace of the test's own).
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/sockios.h>
#include <net/if.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "driver.h"
#include "harness.h"
#include "ha_spawn.h"
#include "host_net.h"
#include "host_proc.h"

static void test_proc_stat_parse(void)
{
	/* comm with spaces and a ')' of its own: fields follow the last ')' */
	static const char text[] =
		"4242 (a) b (c)) S 1 4242 4242 0 -1 4194560 100 0 0 0 17 23 0 0 20 0 "
		"3 0 987654 1000 10 18446744073709551615\n";
	struct host_proc_stat ps;

	CHECK_EQ_INT(host_proc_stat_parse(text, &ps), 0);
	CHECK(ps.state == 'S');
	CHECK_EQ_INT(ps.utime, 17);
	CHECK_EQ_INT(ps.stime, 23);
	CHECK_EQ_INT(ps.threads, 3);
	CHECK_EQ_INT(ps.starttime, 987654);
	CHECK_EQ_INT(host_proc_stat_parse("4242 (no close paren S 1", &ps), -EINVAL);
	CHECK_EQ_INT(host_proc_stat_parse("4242 (short) S 1 2", &ps), -EINVAL);
	CHECK_EQ_INT(host_proc_stat_parse("", &ps), -EINVAL);
}

static void test_proc_alive(void)
{
	struct host_proc_stat self, ps;
	siginfo_t si;
	pid_t pid;

	CHECK_EQ_INT(host_proc_stat_read(getpid(), &self), 0);
	CHECK(self.state == 'R');
	CHECK(host_proc_alive(getpid(), self.starttime));
	/* another start time: the pid was reused */
	CHECK(!host_proc_alive(getpid(), self.starttime + 1));
	CHECK(!host_proc_alive(0, self.starttime));
	CHECK(!host_proc_alive(-1, self.starttime));
	CHECK_EQ_INT(host_proc_stat_read(0, &ps), -EINVAL);

	/* a zombie is not alive */
	pid = fork();
	if (pid == 0) {
		_exit(0);
	}
	CHECK(pid > 0);
	CHECK_EQ_INT(waitid(P_PID, (id_t)pid, &si, WEXITED | WNOWAIT), 0);
	CHECK_EQ_INT(host_proc_stat_read(pid, &ps), 0);
	CHECK(ps.state == 'Z');
	CHECK(!host_proc_alive(pid, ps.starttime));
	CHECK_EQ_INT(waitpid(pid, NULL, 0), pid);
	CHECK_EQ_INT(host_proc_stat_read(pid, &ps), -ENOENT);
}

static void test_small_files(void)
{
	char buf[8];

	CHECK_EQ_INT(host_read_small("/proc/self/stat", buf, sizeof(buf)), 7);
	CHECK_EQ_INT(strlen(buf), 7);
	CHECK_EQ_INT(host_read_small("/nonexistent/x", buf, sizeof(buf)), -ENOENT);
	CHECK_EQ_INT(host_read_small("/proc/self/stat", buf, 0), -EINVAL);
	CHECK_EQ_INT(host_write_str("/nonexistent/x", "1"), -ENOENT);
}

static void test_net_addr(void)
{
	CHECK(host_net_addr_valid("10.0.0.5", false));
	CHECK(host_net_addr_valid("10.0.0.5/24", true));
	CHECK(host_net_addr_valid("fd00::5/64", true));
	CHECK(!host_net_addr_valid("10.0.0.5/24", false));
	CHECK(!host_net_addr_valid("10.0.0.5", true));
	CHECK(!host_net_addr_valid("10.0.0.5/33", true));
	CHECK(!host_net_addr_valid("fd00::5/129", true));
	CHECK(!host_net_addr_valid("10.0.0", false));
	CHECK(!host_net_addr_valid("", false));
}

/* "master BRIDGE" of `ip -o link show dev DEV` in this namespace: 1 when
 * on @bridge, 0 when not, -1 when ip could not tell. */
static int on_bridge(const char *dev, const char *bridge)
{
	char *argv[] = { "ip", "-o", "link", "show", "dev", (char *)dev, NULL };
	char out[1024], want[64];
	struct ha_spawn sp = { .argv = argv, .out = out, .out_len = sizeof(out),
			       .timeout_ms = 30000 };
	struct ha_spawn_result r;

	if (ha_spawn_run(&sp, &r) < 0 || r.exit_code != 0) {
		return -1;
	}
	snprintf(want, sizeof(want), " master %s ", bridge);
	return strstr(out, want) != NULL;
}

static bool link_is_up(const char *dev)
{
	struct ifreq ifr;
	int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	bool up;

	memset(&ifr, 0, sizeof(ifr));
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", dev);
	up = ioctl(s, SIOCGIFFLAGS, &ifr) == 0 && (ifr.ifr_flags & IFF_UP);
	close(s);
	return up;
}

/* In a network namespace of its own: a bridge, a veth and a tap on it and
 * off it. Returns the failures (0: all passed). */
static int net_checks(void)
{
	char *veth[] = { "ip", "link", "add", "hv-t1", "type", "veth", "peer", "name", "hv-t1p",
			 NULL };
	struct ha_spawn sp = { .argv = veth, .timeout_ms = 30000 };
	struct ha_spawn_result r;
	char err[AGENT_ERR_LEN];
	int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);

	CHECK(s >= 0);
	CHECK_EQ_INT(ioctl(s, SIOCBRADDBR, "br-test"), 0);
	close(s);
	CHECK_EQ_INT(host_net_bridge_check("br-test", err), 0);
	CHECK_EQ_INT(host_net_bridge_check("br-none", err), -ENODEV);
	CHECK(strstr(err, "bridge br-none does not exist") != NULL);
	CHECK_EQ_INT(host_net_bridge_check("", err), -EINVAL);

	/* a veth: on the bridge and up, again (no error), off, off again */
	CHECK_EQ_INT(ha_spawn_run(&sp, &r), 0);
	CHECK_EQ_INT(r.exit_code, 0);
	CHECK_EQ_INT(host_net_bridge_check("hv-t1", err), -EINVAL);
	CHECK(strstr(err, "hv-t1 is not a bridge (driver veth)") != NULL);
	CHECK_EQ_INT(on_bridge("hv-t1", "br-test"), 0);
	CHECK_EQ_INT(host_net_port_attach("hv-t1", "br-test", err), 0);
	CHECK_EQ_INT(on_bridge("hv-t1", "br-test"), 1);
	CHECK(link_is_up("hv-t1"));
	CHECK_EQ_INT(host_net_port_attach("hv-t1", "br-test", err), 0);
	CHECK_EQ_INT(on_bridge("hv-t1", "br-test"), 1);
	CHECK_EQ_INT(host_net_port_detach("hv-t1", "br-test", err), 0);
	CHECK_EQ_INT(on_bridge("hv-t1", "br-test"), 0);
	CHECK_EQ_INT(host_net_port_detach("hv-t1", "br-test", err), 0);
	CHECK_EQ_INT(host_net_port_attach("hv-none", "br-test", err), -ENODEV);
	CHECK(strstr(err, "no link hv-none") != NULL);

	/* a persistent tap on the bridge, removed */
	if (access("/dev/net/tun", R_OK | W_OK) == 0) {
		CHECK_EQ_INT(host_net_tap_create("ht-t1", "br-test", err), 0);
		CHECK(if_nametoindex("ht-t1") != 0);
		CHECK_EQ_INT(on_bridge("ht-t1", "br-test"), 1);
		CHECK(link_is_up("ht-t1"));
		/* one left behind is taken over */
		CHECK_EQ_INT(host_net_tap_create("ht-t1", "br-test", err), 0);
		CHECK_EQ_INT(host_net_tap_remove("ht-t1", err), 0);
		CHECK(if_nametoindex("ht-t1") == 0);
		CHECK_EQ_INT(host_net_tap_remove("ht-t1", err), 0);
		CHECK_EQ_INT(host_net_tap_create("ht-t2", "br-none", err), -ENODEV);
	}
	return ha_test_failures;
}

static void test_net_ports(void)
{
	int status = 0;
	pid_t pid = fork();

	if (pid == 0) {
		if (unshare(CLONE_NEWNET) < 0) {
			_exit(77);
		}
		_exit(net_checks() ? 1 : 0);
	}
	CHECK(pid > 0);
	CHECK_EQ_INT(waitpid(pid, &status, 0), pid);
	CHECK(WIFEXITED(status));
	if (WEXITSTATUS(status) == 77) {
		printf("# network checks skipped: no network namespace of our own\n");
		return;
	}
	CHECK_EQ_INT(WEXITSTATUS(status), 0);
}

int main(void)
{
	test_proc_stat_parse();
	test_proc_alive();
	test_small_files();
	test_net_addr();
	test_net_ports();
	return ha_test_done("test_host");
}
