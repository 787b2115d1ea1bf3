/*
 * util.h - small helpers shared by the daemons and hactl.
 */
#ifndef HA_UTIL_H
#define HA_UTIL_H

#include <stddef.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>

#define HA_ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

static inline void ha_freep(void *p)
{
	free(*(void **)p);
}
#define _cleanup_free_ __attribute__((cleanup(ha_freep)))

/*
 * The one error formatter: writes the message into @err (@errlen bytes,
 * always terminated; nothing when @err is NULL or @errlen is 0) and
 * returns @rc, so that a failure reports and returns in one statement:
 *     return ha_errf(err, errlen, -EINVAL, "spec %s: no rootfs", name);
 */
int ha_errf(char *err, size_t errlen, int rc, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

uint64_t ha_mono_ms(void);
/* Sleeps @ms milliseconds, resuming after a signal. */
void ha_sleep_ms(unsigned ms);
uint64_t ha_wall_ms(void);

/*
 * Writes @len bytes to a temporary name beside @path, fsyncs, renames over
 * @path and fsyncs the directory. Returns 0 or -errno; @path is untouched
 * on failure.
 */
int ha_file_write_atomic(const char *path, const void *buf, size_t len);

/*
 * Reads all of @path, at most @max bytes (-EFBIG above). On success *buf is
 * malloc'd (caller frees) and *len set. Returns 0 or -errno.
 */
int ha_file_read(const char *path, size_t max, uint8_t **buf, size_t *len);

/* mkdir -p; returns 0 or -errno. */
int ha_mkdir_p(const char *path, unsigned mode);

/* Parses a decimal u64 in [min, max]; returns 0 or -EINVAL/-ERANGE. */
int ha_parse_u64(const char *s, uint64_t min, uint64_t max, uint64_t *out);

/* An IPv4 or IPv6 network: address and prefix length. */
struct ha_net {
	int family;        /* AF_INET or AF_INET6 */
	uint8_t addr[16];  /* network byte order; 4 bytes used for AF_INET */
	unsigned prefix;   /* 0..32 or 0..128 */
};

/*
 * Parses "ADDRESS/PREFIX" or a plain "ADDRESS" (a network of that one
 * address: /32 or /128), IPv4 or IPv6. Returns 0 or -EINVAL.
 */
int ha_net_parse(const char *text, struct ha_net *out);

/* Whether the numeric address @addr (IPv4 or IPv6 text) lies in @net. */
bool ha_net_contains(const struct ha_net *net, const char *addr);

/* A listening address: numeric IPv4 or IPv6 address and port. */
struct ha_listen {
	int family;        /* AF_INET or AF_INET6 */
	uint8_t addr[16];  /* network byte order; 4 bytes used for AF_INET */
	uint16_t port;     /* 0 = any free port */
};

/*
 * Parses "ADDRESS:PORT" (IPv4, e.g. 127.0.0.1:9477) or "[ADDRESS]:PORT"
 * (IPv6, e.g. [::1]:9477); PORT 0..65535. Returns 0 or -EINVAL.
 */
int ha_listen_parse(const char *text, struct ha_listen *out);

#endif
