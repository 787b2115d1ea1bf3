/*
 * host_net.c - address checks, the guest bridge, ports and taps
 * (host_net.h): ioctls on this network namespace.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/ethtool.h>
#include <linux/if_tun.h>
#include <linux/sockios.h>
#include <net/if.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "driver.h"
#include "host_net.h"
#include "util.h"

bool host_net_addr_valid(const char *s, bool cidr)
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

int host_net_bridge_check(const char *bridge, char *err)
{
	struct ethtool_drvinfo info = { .cmd = ETHTOOL_GDRVINFO };
	struct ifreq ifr;
	int fd, rc;

	if (bridge == NULL || bridge[0] == '\0' || strlen(bridge) >= IFNAMSIZ) {
		return agent_err(err, -EINVAL, "network: bad bridge name '%s'",
				 bridge ? bridge : "");
	}
	fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		return agent_err(err, -errno, "network: socket: %s", strerror(errno));
	}
	memset(&ifr, 0, sizeof(ifr));
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", bridge);
	ifr.ifr_data = (void *)&info;
	rc = ioctl(fd, SIOCETHTOOL, &ifr) < 0 ? -errno : 0;
	close(fd);
	if (rc == -ENODEV) {
		return agent_err(err, -ENODEV, "network: bridge %s does not exist", bridge);
	}
	if (rc < 0) {
		return agent_err(err, rc, "network: %s: %s", bridge, strerror(-rc));
	}
	if (strcmp(info.driver, "bridge") != 0) {
		return agent_err(err, -EINVAL, "network: %s is not a bridge (driver %s)", bridge,
				 info.driver);
	}
	return 0;
}

/* ---- ports of the bridge ------------------------------------------------ */

/* A socket for the bridge ioctls and @ifr naming @bridge and @dev's index;
 * the socket or -errno. */
static int port_request(const char *dev, const char *bridge, struct ifreq *ifr, char *err)
{
	int s, idx = (int)if_nametoindex(dev);

	if (idx == 0) {
		return agent_err(err, -ENODEV, "network: no link %s", dev);
	}
	s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (s < 0) {
		return agent_err(err, -errno, "network: socket: %s", strerror(errno));
	}
	memset(ifr, 0, sizeof(*ifr));
	snprintf(ifr->ifr_name, sizeof(ifr->ifr_name), "%s", bridge);
	ifr->ifr_ifindex = idx;
	return s;
}

int host_net_port_detach(const char *veth, const char *bridge, char *err)
{
	struct ifreq ifr;
	int s = port_request(veth, bridge, &ifr, err), rc = 0;

	if (s < 0) {
		return s;
	}
	if (ioctl(s, SIOCBRDELIF, &ifr) < 0 && errno != EINVAL && errno != ENODEV) {
		rc = agent_err(err, -errno, "network: taking %s off %s: %s", veth, bridge,
			       strerror(errno));
	}
	close(s);
	return rc;
}

int host_net_link_up(const char *dev, char *err)
{
	struct ifreq ifr;
	int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0), rc = 0;

	if (s < 0) {
		return agent_err(err, -errno, "network: socket: %s", strerror(errno));
	}
	memset(&ifr, 0, sizeof(ifr));
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", dev);
	if (ioctl(s, SIOCGIFFLAGS, &ifr) < 0) {
		rc = agent_err(err, -errno, "network: %s: %s", dev, strerror(errno));
	} else if (!(ifr.ifr_flags & IFF_UP)) {
		ifr.ifr_flags |= IFF_UP;
		if (ioctl(s, SIOCSIFFLAGS, &ifr) < 0) {
			rc = agent_err(err, -errno, "network: %s up: %s", dev, strerror(errno));
		}
	}
	close(s);
	return rc;
}

int host_net_port_attach(const char *veth, const char *bridge, char *err)
{
	struct ifreq ifr;
	int s = port_request(veth, bridge, &ifr, err), rc = 0;

	if (s < 0) {
		return s;
	}
	/* Already a port of @bridge is fine: off and on again. */
	ioctl(s, SIOCBRDELIF, &ifr);
	if (ioctl(s, SIOCBRADDIF, &ifr) < 0) {
		rc = agent_err(err, -errno, "network: putting %s on %s: %s", veth, bridge,
			       strerror(errno));
	}
	close(s);
	return rc == 0 ? host_net_link_up(veth, err) : rc;
}

/* ---- persistent taps ----------------------------------------------------- */

static int tap_ioctl_open(const char *tap, struct ifreq *ifr, char *err)
{
	int fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC);

	if (fd < 0) {
		return agent_err(err, -errno, "tap %s: /dev/net/tun: %s", tap, strerror(errno));
	}
	memset(ifr, 0, sizeof(*ifr));
	snprintf(ifr->ifr_name, IFNAMSIZ, "%s", tap);
	ifr->ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR;
	if (ioctl(fd, TUNSETIFF, ifr) < 0) {
		int e = errno;

		close(fd);
		return agent_err(err, -e, "tap %s: TUNSETIFF: %s", tap, strerror(e));
	}
	return fd;
}

int host_net_tap_remove(const char *tap, char *err)
{
	struct ifreq ifr;
	int fd, rc = 0;

	if (tap[0] == 0 || if_nametoindex(tap) == 0) {
		return 0;
	}
	/* busy while a QEMU that just exited still holds it */
	for (int i = 0; (fd = tap_ioctl_open(tap, &ifr, err)) == -EBUSY && i < 50; i++) {
		ha_sleep_ms(20);
	}
	if (fd < 0) {
		return fd;
	}
	if (ioctl(fd, TUNSETPERSIST, 0) < 0) {
		rc = agent_err(err, -errno, "tap %s: TUNSETPERSIST: %s", tap, strerror(errno));
	}
	close(fd);
	return rc;
}

int host_net_tap_create(const char *tap, const char *bridge, char *err)
{
	struct ifreq ifr;
	int fd, rc = 0;

	if (if_nametoindex(bridge) == 0) {
		return agent_err(err, -ENODEV, "bridge %s: no such device", bridge);
	}
	/* A tap left by a QEMU that died is taken over afresh. */
	host_net_tap_remove(tap, NULL);
	fd = tap_ioctl_open(tap, &ifr, err);
	if (fd < 0) {
		return fd;
	}
	if (ioctl(fd, TUNSETPERSIST, 1) < 0) {
		rc = agent_err(err, -errno, "tap %s: TUNSETPERSIST: %s", tap, strerror(errno));
	}
	close(fd);
	if (rc < 0) {
		return rc;
	}
	rc = host_net_port_attach(tap, bridge, err);
	if (rc < 0) {
		host_net_tap_remove(tap, NULL);
	}
	return rc;
}
