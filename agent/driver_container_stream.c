/*
 * driver_container_stream.c - the container migration's stream, framed:
 * records of a 24-byte little-endian header (magic "HCMG", version u16,
 * type u16, round u32, name length u32, data length u64) with the name
 * after it, over the agents' connection (a socket, or a pipe in tests),
 * with a bandwidth limit and progress counts. What the records carry
 * (manifests, image files, the end) is driver_container_mig.c's.
 *
 * A stream keeps its first error (QEMUFile's way): after a failure every
 * call returns it, so a caller may check once after a batch. A header is
 * checked (magic, version, type, bounds of round and name) before its
 * caller reads anything it announces.
 */
#include <errno.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "driver_container.h"
#include "util.h"

#define MIG_MAGIC 0x474d4348u      /* "HCMG" on the wire */
#define MIG_VERSION 1
#define MIG_HDR_LEN 24

const char *ctr_mig_rec_type_str(enum ctr_mig_rec_type t)
{
	switch (t) {
	case CTR_MIG_REC_NONE: return "none";
	case CTR_MIG_REC_MANIFEST: return "manifest";
	case CTR_MIG_REC_FILE: return "file";
	case CTR_MIG_REC_END: return "end";
	case CTR_MIG_REC_MAX: break;
	}
	return "unknown";
}

void ctr_mig_io_init(struct ctr_mig_io *io, int fd, uint64_t bandwidth,
		     struct agent_mig_progress *p)
{
	int type;
	socklen_t len = sizeof(type);

	memset(io, 0, sizeof(*io));
	io->fd = fd;
	io->sock = getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) == 0;
	io->t0_ms = ha_mono_ms();
	io->bandwidth = bandwidth;
	io->p = p;
}

int ctr_mig_io_fail(struct ctr_mig_io *io, int rc, const char *fmt, ...)
{
	va_list ap;

	if (io->rc == 0) {
		io->rc = rc;
		va_start(ap, fmt);
		vsnprintf(io->msg, sizeof(io->msg), fmt, ap);
		va_end(ap);
	}
	return io->rc;
}

/* Waits until @fd is readable (POLLIN) or writable, at most @ms. */
static int io_wait(struct ctr_mig_io *io, short events, uint32_t ms)
{
	struct pollfd pfd = { .fd = io->fd, .events = events };
	uint64_t deadline = ha_mono_ms() + ms;

	for (;;) {
		int64_t left = (int64_t)deadline - (int64_t)ha_mono_ms();
		int rc;

		if (left <= 0) {
			return -ETIMEDOUT;
		}
		rc = poll(&pfd, 1, (int)left);
		if (rc < 0 && errno == EINTR) {
			continue;
		}
		if (rc < 0) {
			return -errno;
		}
		if (rc > 0) {
			return 0;
		}
	}
}

static void io_throttle(struct ctr_mig_io *io)
{
	uint64_t due, now;

	if (io->bandwidth == 0) {
		return;
	}
	due = io->t0_ms + io->bytes * 1000 / io->bandwidth;
	now = ha_mono_ms();
	if (due > now) {
		ha_sleep_ms((unsigned)(due - now > 1000 ? 1000 : due - now));
	}
}

int ctr_mig_io_write(struct ctr_mig_io *io, const void *buf, size_t len)
{
	const char *b = buf;

	while (io->rc == 0 && len > 0) {
		ssize_t n;
		int rc = io_wait(io, POLLOUT, CTR_MIG_IO_MS);

		if (rc < 0) {
			return ctr_mig_io_fail(io, rc, "sending: %s", rc == -ETIMEDOUT ?
					       "the peer took nothing for 30 s" : strerror(-rc));
		}
		n = io->sock ? send(io->fd, b, len, MSG_NOSIGNAL | MSG_DONTWAIT) :
			write(io->fd, b, len);
		if (n < 0 && (errno == EINTR || errno == EAGAIN)) {
			continue;
		}
		if (n < 0) {
			return ctr_mig_io_fail(io, -errno, "sending: %s", strerror(errno));
		}
		b += n;
		len -= (size_t)n;
		io->bytes += (uint64_t)n;
		if (io->p) {
			io->p->transferred_bytes = io->bytes;
			io->p->remaining_bytes = io->p->remaining_bytes > (uint64_t)n ?
				io->p->remaining_bytes - (uint64_t)n : 0;
			io->p->total_ms = ha_mono_ms() - io->t0_ms;
		}
		io_throttle(io);
	}
	return io->rc;
}

/* Reads exactly @len bytes; the peer closing first is -ECONNRESET. */
int ctr_mig_io_read(struct ctr_mig_io *io, void *buf, size_t len, uint32_t ms)
{
	char *b = buf;

	while (io->rc == 0 && len > 0) {
		ssize_t n;
		int rc = io_wait(io, POLLIN, ms);

		if (rc < 0) {
			return ctr_mig_io_fail(io, rc, "receiving: %s", rc == -ETIMEDOUT ?
					       "the peer sent nothing in time" : strerror(-rc));
		}
		n = read(io->fd, b, len);
		if (n < 0 && (errno == EINTR || errno == EAGAIN)) {
			continue;
		}
		if (n < 0) {
			return ctr_mig_io_fail(io, -errno, "receiving: %s", strerror(errno));
		}
		if (n == 0) {
			return ctr_mig_io_fail(io, -ECONNRESET,
					       "receiving: the peer closed the stream");
		}
		b += n;
		len -= (size_t)n;
		io->bytes += (uint64_t)n;
		if (io->p) {
			io->p->transferred_bytes = io->bytes;
			io->p->total_ms = ha_mono_ms() - io->t0_ms;
		}
	}
	return io->rc;
}

static void put_le16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
}

static void put_le32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++) {
		p[i] = (uint8_t)(v >> (8 * i));
	}
}

static void put_le64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++) {
		p[i] = (uint8_t)(v >> (8 * i));
	}
}

static uint16_t get_le16(const uint8_t *p)
{
	return (uint16_t)(p[0] | p[1] << 8);
}

static uint32_t get_le32(const uint8_t *p)
{
	uint32_t v = 0;

	for (int i = 3; i >= 0; i--) {
		v = v << 8 | p[i];
	}
	return v;
}

static uint64_t get_le64(const uint8_t *p)
{
	uint64_t v = 0;

	for (int i = 7; i >= 0; i--) {
		v = v << 8 | p[i];
	}
	return v;
}

/* Header: magic u32, version u16, type u16, round u32, name_len u32,
 * data_len u64. */
int ctr_mig_rec_write(struct ctr_mig_io *io, const struct ctr_mig_rec *r, const char *name)
{
	uint8_t h[MIG_HDR_LEN];

	put_le32(h, MIG_MAGIC);
	put_le16(h + 4, MIG_VERSION);
	put_le16(h + 6, r->type);
	put_le32(h + 8, r->round);
	put_le32(h + 12, r->name_len);
	put_le64(h + 16, r->data_len);
	ctr_mig_io_write(io, h, sizeof(h));
	if (r->name_len) {
		ctr_mig_io_write(io, name, r->name_len);
	}
	return io->rc;
}

int ctr_mig_rec_read(struct ctr_mig_io *io, struct ctr_mig_rec *r)
{
	uint8_t h[MIG_HDR_LEN];
	uint32_t magic;
	uint16_t version;

	if (ctr_mig_io_read(io, h, sizeof(h), CTR_MIG_IO_MS) < 0) {
		return io->rc;
	}
	magic = get_le32(h);
	version = get_le16(h + 4);
	r->type = get_le16(h + 6);
	r->round = get_le32(h + 8);
	r->name_len = get_le32(h + 12);
	r->data_len = get_le64(h + 16);
	if (magic != MIG_MAGIC) {
		return ctr_mig_io_fail(io, -EPROTO, "not a container migration stream (magic "
				       "0x%08x)", magic);
	}
	if (version != MIG_VERSION) {
		return ctr_mig_io_fail(io, -EPROTONOSUPPORT, "stream version %u, this host speaks "
				       "%u", version, MIG_VERSION);
	}
	if (r->type == CTR_MIG_REC_NONE || r->type >= CTR_MIG_REC_MAX) {
		return ctr_mig_io_fail(io, -EPROTO, "unknown record type %u", r->type);
	}
	if (r->round > CTR_MIG_ROUNDS_MAX || r->name_len > CTR_MIG_NAME_MAX) {
		return ctr_mig_io_fail(io, -EPROTO, "%s record: round %u or name length %u out of "
				       "range", ctr_mig_rec_type_str(r->type), r->round,
				       r->name_len);
	}
	return 0;
}
