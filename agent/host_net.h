/*
 * host_net.h - the agent's host layer for networking: address checks, the
 * guest bridge, a link (a container's veth, a domain's tap) as a port of
 * it, and persistent taps. Both drivers use it; it includes no driver's
 * header.
 *
 * Everything here is an ioctl on this network namespace (no helper
 * program, so it fits into a migration's downtime), returns 0 or -errno
 * and, where it takes @err (AGENT_ERR_LEN bytes, may be NULL), fills it
 * with one line naming what failed. The bridge itself is never created:
 * host networking is the administrator's.
 */
#ifndef HA_AGENT_HOST_NET_H
#define HA_AGENT_HOST_NET_H

#include <stdbool.h>

/* Validates "A.B.C.D/N" or an IPv6 CIDR (@cidr true) or a bare address. */
bool host_net_addr_valid(const char *s, bool cidr);
/* 0 when @bridge is a bridge in this network namespace. */
int host_net_bridge_check(const char *bridge, char *err);
/* Sets IFF_UP on @dev. */
int host_net_link_up(const char *dev, char *err);
/* Puts @dev on @bridge (a port of it already is fine: off and on again)
 * and sets it up. */
int host_net_port_attach(const char *dev, const char *bridge, char *err);
/* Takes @dev off @bridge; not on it is fine. */
int host_net_port_detach(const char *dev, const char *bridge, char *err);
/* Creates the persistent tap @tap (virtio-net header, no packet info),
 * taking over one left behind, on @bridge and up. */
int host_net_tap_create(const char *tap, const char *bridge, char *err);
/* Removes the persistent tap @tap once its user has let go (waits up to
 * a second while it is busy); no such tap is fine. */
int host_net_tap_remove(const char *tap, char *err);

#endif
