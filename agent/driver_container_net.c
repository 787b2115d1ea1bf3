/*
 * driver_container_net.c - a container's network: one veth pair, the host
 * side (hv-<name>) a port of the guest bridge, the guest side eth0 in the
 * container's network namespace with the guest's address and default
 * route.
 *
 * The links are made with iproute2 (`ip`, see driver_container_exec.c for
 * why), each call bounded; the steps inside the container run in a child
 * that joined its network namespace. The bridge must already exist in the
 * agent's network namespace: the driver never creates host networking.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/ethtool.h>
#include <linux/sockios.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "driver_container.h"
#include "util.h"

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

bool ctr_net_addr_valid(const char *s, bool cidr)
{
	char addr[INET6_ADDRSTRLEN + 1];
	unsigned char bin[sizeof(struct in6_addr)];
	const char *slash = strchr(s, '/');
	size_t alen = slash ? (size_t)(slash - s) : strlen(s);
	int family;

	if (alen == 0 || alen >= sizeof(addr) || (cidr && slash == NULL) ||
	    (!cidr && slash != NULL)) {
		return false;
	}
	memcpy(addr, s, alen);
	addr[alen] = '\0';
	if (inet_pton(AF_INET, addr, bin) == 1) {
		family = AF_INET;
	} else if (inet_pton(AF_INET6, addr, bin) == 1) {
		family = AF_INET6;
	} else {
		return false;
	}
	if (slash) {
		uint64_t pfx;

		if (ha_parse_u64(slash + 1, 0, family == AF_INET ? 32 : 128, &pfx) < 0) {
			return false;
		}
	}
	return true;
}

int ctr_net_bridge_check(const char *bridge, char *err)
{
	struct ethtool_drvinfo info = { .cmd = ETHTOOL_GDRVINFO };
	struct ifreq ifr;
	int fd, rc;

	if (bridge == NULL || bridge[0] == '\0' || strlen(bridge) >= IFNAMSIZ) {
		return ctr_err(err, -EINVAL, "network: bad bridge name '%s'",
			       bridge ? bridge : "");
	}
	fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		return ctr_err(err, -errno, "network: socket: %s", strerror(errno));
	}
	memset(&ifr, 0, sizeof(ifr));
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", bridge);
	ifr.ifr_data = (void *)&info;
	rc = ioctl(fd, SIOCETHTOOL, &ifr) < 0 ? -errno : 0;
	close(fd);
	if (rc == -ENODEV) {
		return ctr_err(err, -ENODEV, "network: bridge %s does not exist", bridge);
	}
	if (rc < 0) {
		return ctr_err(err, rc, "network: %s: %s", bridge, strerror(-rc));
	}
	if (strcmp(info.driver, "bridge") != 0) {
		return ctr_err(err, -EINVAL, "network: %s is not a bridge (driver %s)", bridge,
			       info.driver);
	}
	return 0;
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
		return ctr_err(err, rc < 0 ? rc : -EIO, "network: %s: %s", what,
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
		return ctr_err(err, -ENOENT, "network: ip (iproute2) not found");
	}
	if ((rc = ctr_net_bridge_check(spec->bridge, err)) < 0) {
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
	if ((rc = ctr_net_attach_host(veth, spec->bridge, timeout_ms, err)) < 0) {
		return rc;
	}
	snprintf(nspath, sizeof(nspath), "/proc/%d/ns/net", (int)pid);
	nsfd = open(nspath, O_RDONLY | O_CLOEXEC);
	if (nsfd < 0) {
		return ctr_err(err, -errno, "network: %s: %s", nspath, strerror(errno));
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

int ctr_net_attach_host(const char *veth, const char *bridge, uint32_t timeout_ms,
			char *err)
{
	char ip[CTR_PATH];
	char *a[] = { "link", "set", (char *)veth, "master", (char *)bridge, "up", NULL };

	if (ctr_tool_find("ip", ip, sizeof(ip)) < 0) {
		return ctr_err(err, -ENOENT, "network: ip (iproute2) not found");
	}
	return ip_run(ip, -1, timeout_ms, err, "host side on the bridge", a);
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
		return ctr_err(err, -ENOENT, "network: ip (iproute2) not found");
	}
	rc = ip_run(ip, -1, timeout_ms, err, "deleting the veth", a);
	/* It may have gone with the container's namespace meanwhile. */
	return rc < 0 && !link_exists(veth) ? 0 : rc;
}
