/*
 * util.c - time, files, numbers.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdarg.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "util.h"

int ha_errf(char *err, size_t errlen, int rc, const char *fmt, ...)
{
	va_list ap;

	if (err != NULL && errlen > 0) {
		va_start(ap, fmt);
		vsnprintf(err, errlen, fmt, ap);
		va_end(ap);
	}
	return rc;
}

uint64_t ha_mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

void ha_sleep_ms(unsigned ms)
{
	struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L };

	while (nanosleep(&ts, &ts) < 0 && errno == EINTR) {
	}
}

uint64_t ha_wall_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static int write_all(int fd, const uint8_t *p, size_t len)
{
	while (len > 0) {
		ssize_t n = write(fd, p, len);

		if (n < 0) {
			if (errno == EINTR) {
				continue;
			}
			return -errno;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

int ha_file_write_atomic(const char *path, const void *buf, size_t len)
{
	char tmp[PATH_MAX];
	char dir[PATH_MAX];
	int fd, rc, dfd;

	if (snprintf(tmp, sizeof(tmp), "%s.tmp.%d", path, (int)getpid()) >=
	    (int)sizeof(tmp)) {
		return -ENAMETOOLONG;
	}
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0) {
		return -errno;
	}
	rc = write_all(fd, buf, len);
	if (rc == 0 && fsync(fd) < 0) {
		rc = -errno;
	}
	if (close(fd) < 0 && rc == 0) {
		rc = -errno;
	}
	if (rc == 0 && rename(tmp, path) < 0) {
		rc = -errno;
	}
	if (rc < 0) {
		unlink(tmp);
		return rc;
	}
	snprintf(dir, sizeof(dir), "%s", path);
	dfd = open(dirname(dir), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd >= 0) {
		fsync(dfd);
		close(dfd);
	}
	return 0;
}

int ha_file_read(const char *path, size_t max, uint8_t **buf, size_t *len)
{
	/* Reads to EOF: /proc files report a size of 0. */
	size_t cap = 4096, got = 0;
	uint8_t *p;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0) {
		return -errno;
	}
	p = malloc(cap);
	if (p == NULL) {
		close(fd);
		return -ENOMEM;
	}
	for (;;) {
		ssize_t n;

		if (got + 1 >= cap) {
			uint8_t *bigger;

			if (cap > max + 1) {
				free(p);
				close(fd);
				return -EFBIG;
			}
			cap *= 2;
			bigger = realloc(p, cap);
			if (bigger == NULL) {
				free(p);
				close(fd);
				return -ENOMEM;
			}
			p = bigger;
		}
		n = read(fd, p + got, cap - 1 - got);
		if (n < 0 && errno == EINTR) {
			continue;
		}
		if (n < 0) {
			int e = -errno;

			free(p);
			close(fd);
			return e;
		}
		if (n == 0) {
			break;
		}
		got += (size_t)n;
		if (got > max) {
			free(p);
			close(fd);
			return -EFBIG;
		}
	}
	close(fd);
	p[got] = 0;
	*buf = p;
	*len = got;
	return 0;
}

int ha_mkdir_p(const char *path, unsigned mode)
{
	char buf[PATH_MAX];
	size_t n = strlen(path);

	if (n == 0 || n >= sizeof(buf)) {
		return -EINVAL;
	}
	memcpy(buf, path, n + 1);
	for (char *p = buf + 1; *p; p++) {
		if (*p == '/') {
			*p = 0;
			if (mkdir(buf, mode) < 0 && errno != EEXIST) {
				return -errno;
			}
			*p = '/';
		}
	}
	if (mkdir(buf, mode) < 0) {
		struct stat st;

		if (errno != EEXIST) {
			return -errno;
		}
		/* EEXIST: fine for a directory, not for a file. */
		if (stat(buf, &st) < 0) {
			return -errno;
		}
		if (!S_ISDIR(st.st_mode)) {
			return -ENOTDIR;
		}
	}
	return 0;
}

int ha_parse_u64(const char *s, uint64_t min, uint64_t max, uint64_t *out)
{
	char *end;
	unsigned long long v;

	if (s == NULL || *s < '0' || *s > '9') {
		return -EINVAL;
	}
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno == ERANGE) {
		return -ERANGE;
	}
	if (*end != 0) {
		return -EINVAL;
	}
	if (v < min || v > max) {
		return -ERANGE;
	}
	*out = v;
	return 0;
}

int ha_net_parse(const char *text, struct ha_net *out)
{
	char buf[INET6_ADDRSTRLEN + 8];
	const char *slash;
	uint64_t prefix;
	size_t alen;

	if (text == NULL) {
		return -EINVAL;
	}
	slash = strchr(text, '/');
	alen = slash ? (size_t)(slash - text) : strlen(text);
	if (alen == 0 || alen >= INET6_ADDRSTRLEN) {
		return -EINVAL;
	}
	memcpy(buf, text, alen);
	buf[alen] = 0;
	memset(out, 0, sizeof(*out));
	if (inet_pton(AF_INET, buf, out->addr) == 1) {
		out->family = AF_INET;
	} else if (inet_pton(AF_INET6, buf, out->addr) == 1) {
		out->family = AF_INET6;
	} else {
		return -EINVAL;
	}
	out->prefix = out->family == AF_INET ? 32 : 128;
	if (slash) {
		if (ha_parse_u64(slash + 1, 0, out->prefix, &prefix) < 0) {
			return -EINVAL;
		}
		out->prefix = (unsigned)prefix;
	}
	return 0;
}

int ha_listen_parse(const char *text, struct ha_listen *out)
{
	char buf[INET6_ADDRSTRLEN + 1];
	const char *colon, *addr = text;
	size_t alen;
	uint64_t port;

	if (text == NULL) {
		return -EINVAL;
	}
	memset(out, 0, sizeof(*out));
	if (text[0] == '[') {
		const char *close = strchr(text, ']');

		if (close == NULL || close[1] != ':') {
			return -EINVAL;
		}
		addr = text + 1;
		alen = (size_t)(close - addr);
		colon = close + 1;
		out->family = AF_INET6;
	} else {
		colon = strrchr(text, ':');
		if (colon == NULL || memchr(text, ':', (size_t)(colon - text)) != NULL) {
			return -EINVAL; /* an IPv6 address needs its brackets */
		}
		alen = (size_t)(colon - text);
		out->family = AF_INET;
	}
	if (alen == 0 || alen >= sizeof(buf) || ha_parse_u64(colon + 1, 0, 65535, &port) < 0) {
		return -EINVAL;
	}
	memcpy(buf, addr, alen);
	buf[alen] = 0;
	if (inet_pton(out->family, buf, out->addr) != 1) {
		return -EINVAL;
	}
	out->port = (uint16_t)port;
	return 0;
}

bool ha_net_contains(const struct ha_net *net, const char *addr)
{
	uint8_t a[16];
	unsigned full = net->prefix / 8, rest = net->prefix % 8;

	if (addr == NULL || inet_pton(net->family, addr, a) != 1) {
		return false;
	}
	if (memcmp(a, net->addr, full) != 0) {
		return false;
	}
	if (rest) {
		uint8_t mask = (uint8_t)(0xff << (8 - rest));

		return (a[full] & mask) == (net->addr[full] & mask);
	}
	return true;
}
