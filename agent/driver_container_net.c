/*
 * driver_container_net.c - a container's network: one veth pair, the host
 * side (hv-<name>) a port of the guest bridge, the guest side eth0 in the
 * container's network namespace with the guest's address and default
 * route.
 *
 * The veth pair and the steps inside the container are made with iproute2
 * (`ip`, see driver_container_exec.c for why), each call bounded; those
 * inside the container run in a child that joined its network namespace.
 * The host side goes on the bridge through the host layer (host_net.c,
 * ioctls, also used inside a migration's downtime). The bridge must
 * already exist in the agent's network namespace: the driver never creates
 * host networking.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/ethtool.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <net/if.h>
#include <net/if_arp.h>
#include <pthread.h>
#include <sched.h>
#include <linux/sockios.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "driver_container.h"
#include "util.h"

#define GARP_WAIT_MS 2000 /* eth0's link up before announcing */
#define GARP_GAP_MS 100

static uint64_t fnv1a(const char *s)
{
	uint64_t h = 1469598103934665603ULL;

	for (; *s; s++) {
		h ^= (unsigned char)*s;
		h *= 1099511628211ULL;
	}
	return h;
}

void ctr_net_veth_name(const char *name, char out[IFNAMSIZ])
{
	if (strlen(name) <= IFNAMSIZ - 1 - 3) {
		snprintf(out, IFNAMSIZ, "hv-%s", name);
	} else {
		/* hv- + 6 of the name + - + 5 hex digits = 15 */
		snprintf(out, IFNAMSIZ, "hv-%.6s-%05x", name,
			 (unsigned)(fnv1a(name) & 0xfffff));
	}
}

void ctr_net_mac(const char *name, char out[18])
{
	uint64_t h = fnv1a(name);

	snprintf(out, 18, "02:%02x:%02x:%02x:%02x:%02x", (unsigned)(h >> 8) & 0xff,
		 (unsigned)(h >> 16) & 0xff, (unsigned)(h >> 24) & 0xff,
		 (unsigned)(h >> 32) & 0xff, (unsigned)(h >> 40) & 0xff);
}

/* Runs `ip ARGS...` (in the namespace of @netns_fd when >= 0). */
static int ip_run(const char *ip, int netns_fd, uint32_t timeout_ms, char *err,
		  const char *what, char *const args[])
{
	char *argv[16];
	char msg[160];
	size_t n = 0;
	int rc;

	argv[n++] = (char *)ip;
	for (size_t i = 0; args[i] && n < HA_ARRAY_SIZE(argv) - 1; i++) {
		argv[n++] = args[i];
	}
	argv[n] = NULL;
	rc = ctr_tool_run(argv, netns_fd, timeout_ms, msg, sizeof(msg));
	if (rc != 0) {
		return agent_err(err, rc < 0 ? rc : -EIO, "network: %s: %s", what,
				 msg[0] ? msg : "ip failed");
	}
	return 0;
}

static bool link_exists(const char *ifname)
{
	return if_nametoindex(ifname) != 0;
}

int ctr_net_setup(const struct agent_guest_spec *spec, const char *veth, pid_t pid,
		  uint32_t timeout_ms, char *err)
{
	char ip[CTR_PATH], mac[18], pidstr[16], nspath[64];
	int nsfd, rc;

	if (ctr_tool_find("ip", ip, sizeof(ip)) < 0) {
		return agent_err(err, -ENOENT, "network: ip (iproute2) not found");
	}
	if ((rc = host_net_bridge_check(spec->bridge, err)) < 0) {
		return rc;
	}
	if (link_exists(veth) && (rc = ctr_net_teardown(veth, timeout_ms, err)) < 0) {
		return rc;
	}
	ctr_net_mac(spec->name, mac);
	snprintf(pidstr, sizeof(pidstr), "%d", (int)pid);
	{
		char *a[] = { "link", "add", (char *)veth, "type", "veth", "peer", "name", "eth0",
			      "address", mac, "netns", pidstr, NULL };

		if ((rc = ip_run(ip, -1, timeout_ms, err, "creating the veth pair", a)) < 0) {
			return rc;
		}
	}
	if ((rc = host_net_port_attach(veth, spec->bridge, err)) < 0) {
		return rc;
	}
	snprintf(nspath, sizeof(nspath), "/proc/%d/ns/net", (int)pid);
	nsfd = open(nspath, O_RDONLY | O_CLOEXEC);
	if (nsfd < 0) {
		return agent_err(err, -errno, "network: %s: %s", nspath, strerror(errno));
	}
	{
		char *lo[] = { "link", "set", "lo", "up", NULL };
		char *addr[] = { "addr", "add", (char *)spec->ip, "dev", "eth0", NULL };
		char *up[] = { "link", "set", "eth0", "up", NULL };
		char *route[] = { "route", "add", "default", "via", (char *)spec->gateway,
				  "dev", "eth0", NULL };

		rc = ip_run(ip, nsfd, timeout_ms, err, "lo up in the container", lo);
		if (rc == 0) {
			rc = ip_run(ip, nsfd, timeout_ms, err, "eth0 address", addr);
		}
		if (rc == 0) {
			rc = ip_run(ip, nsfd, timeout_ms, err, "eth0 up", up);
		}
		if (rc == 0 && spec->gateway && spec->gateway[0]) {
			rc = ip_run(ip, nsfd, timeout_ms, err, "default route", route);
		}
	}
	close(nsfd);
	return rc;
}

int ctr_net_teardown(const char *veth, uint32_t timeout_ms, char *err)
{
	char ip[CTR_PATH];
	char *a[] = { "link", "del", (char *)veth, NULL };
	int rc;

	if (!link_exists(veth)) {
		return 0;
	}
	if (ctr_tool_find("ip", ip, sizeof(ip)) < 0) {
		return agent_err(err, -ENOENT, "network: ip (iproute2) not found");
	}
	rc = ip_run(ip, -1, timeout_ms, err, "deleting the veth", a);
	/* It may have gone with the container's namespace meanwhile. */
	return rc < 0 && !link_exists(veth) ? 0 : rc;
}

/* ---- announcing the guest (after a migration or a restore) ------------ */

/* Waits up to @ms until @dev (on socket @s's namespace) is operationally
 * up: carrier and the kernel's link watch done, so frames get through. */
static bool link_wait_running(int s, const char *dev, uint32_t ms)
{
	uint64_t deadline = ha_mono_ms() + ms;
	struct ifreq ifr;

	for (;;) {
		memset(&ifr, 0, sizeof(ifr));
		snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", dev);
		if (ioctl(s, SIOCGIFFLAGS, &ifr) == 0 && (ifr.ifr_flags & IFF_RUNNING)) {
			return true;
		}
		if (ha_mono_ms() >= deadline) {
			return false;
		}
		ha_sleep_ms(5);
	}
}

struct garp {
	int nsfd;
	struct in_addr ip;
	int rc;
	char what[64];
};

/* In a thread of its own: joining the guest's network namespace changes
 * only the calling thread's, and this one ends right after. */
static void *garp_thread(void *arg)
{
	struct garp *a = arg;
	struct ifreq ifr;
	struct sockaddr_ll to = { .sll_family = AF_PACKET, .sll_protocol = htons(ETH_P_ARP),
				  .sll_halen = ETH_ALEN };
	uint8_t f[60];
	int s;

	if (setns(a->nsfd, CLONE_NEWNET) < 0) {
		a->rc = -errno;
		snprintf(a->what, sizeof(a->what), "joining its network namespace");
		return NULL;
	}
	s = socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, htons(ETH_P_ARP));
	if (s < 0) {
		a->rc = -errno;
		snprintf(a->what, sizeof(a->what), "packet socket");
		return NULL;
	}
	memset(&ifr, 0, sizeof(ifr));
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "eth0");
	if (ioctl(s, SIOCGIFINDEX, &ifr) < 0) {
		a->rc = -errno;
		snprintf(a->what, sizeof(a->what), "eth0");
		close(s);
		return NULL;
	}
	to.sll_ifindex = ifr.ifr_ifindex;
	link_wait_running(s, "eth0", GARP_WAIT_MS);
	memset(to.sll_addr, 0xff, ETH_ALEN);
	if (ioctl(s, SIOCGIFHWADDR, &ifr) < 0) {
		a->rc = -errno;
		snprintf(a->what, sizeof(a->what), "eth0's address");
		close(s);
		return NULL;
	}
	/* Ethernet: broadcast, from eth0, ARP; then request and reply with
	 * sender = target = the guest's address (RFC 5227 announcement),
	 * twice, GARP_GAP_MS apart (as arping -U -c 2). */
	for (int i = 0; i < 4 && a->rc == 0; i++) {
		int op = i % 2 ? ARPOP_REPLY : ARPOP_REQUEST;

		if (i == 2) {
			ha_sleep_ms(GARP_GAP_MS);
		}
		memset(f, 0, sizeof(f));
		memset(f, 0xff, ETH_ALEN);
		memcpy(f + 6, ifr.ifr_hwaddr.sa_data, ETH_ALEN);
		f[12] = 0x08;
		f[13] = 0x06;
		f[14] = 0x00; f[15] = 0x01;             /* hardware: Ethernet */
		f[16] = 0x08; f[17] = 0x00;             /* protocol: IPv4 */
		f[18] = ETH_ALEN;
		f[19] = 4;
		f[20] = 0x00; f[21] = (uint8_t)op;
		memcpy(f + 22, ifr.ifr_hwaddr.sa_data, ETH_ALEN);
		memcpy(f + 28, &a->ip, 4);
		if (op == ARPOP_REPLY) {
			memset(f + 32, 0xff, ETH_ALEN);
		}
		memcpy(f + 38, &a->ip, 4);
		if (sendto(s, f, sizeof(f), 0, (struct sockaddr *)&to, sizeof(to)) < 0) {
			a->rc = -errno;
			snprintf(a->what, sizeof(a->what), "sending on eth0");
		}
	}
	close(s);
	return NULL;
}

/*
 * A gratuitous ARP from the guest's eth0, so that peers and bridges on
 * the segment learn where the guest now is. IPv4 only (an IPv6 guest's
 * kernel sends unsolicited neighbour advertisements itself when its link
 * comes up; none here as the link stays up): returns 0 for other guests.
 */
int ctr_net_announce(pid_t pid, const char *cidr, char *err)
{
	struct garp a = { .nsfd = -1 };
	char addr[INET_ADDRSTRLEN + 1], path[64];
	const char *slash;
	size_t len;
	pthread_t th;
	int rc;

	if (cidr == NULL || (slash = strchr(cidr, '/')) == NULL ||
	    (len = (size_t)(slash - cidr)) >= sizeof(addr)) {
		return 0;
	}
	memcpy(addr, cidr, len);
	addr[len] = '\0';
	if (inet_pton(AF_INET, addr, &a.ip) != 1) {
		return 0;
	}
	snprintf(path, sizeof(path), "/proc/%d/ns/net", (int)pid);
	a.nsfd = open(path, O_RDONLY | O_CLOEXEC);
	if (a.nsfd < 0) {
		return agent_err(err, -errno, "gratuitous ARP: %s: %s", path, strerror(errno));
	}
	rc = pthread_create(&th, NULL, garp_thread, &a);
	if (rc != 0) {
		close(a.nsfd);
		return agent_err(err, -rc, "gratuitous ARP: thread: %s", strerror(rc));
	}
	pthread_join(th, NULL);
	close(a.nsfd);
	if (a.rc < 0) {
		return agent_err(err, a.rc, "gratuitous ARP for %s: %s: %s", addr, a.what,
				 strerror(-a.rc));
	}
	return 0;
}
