/*
 * mig_stream.c - the stream layer over the transports: chunk framing,
 * the HELLO (and AUTH) handshake, the rate cap, counters, first-error
 * bookkeeping and the fd pumps.
 *
 * Everything a peer sends goes through recv_chunk_raw(): header decoded
 * and bounded before a byte of payload is read, sequence checked, payload
 * read only into a buffer the caller sized, checksum verified. A bad chunk
 * fails the stream with a message that names the peer and the chunk.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>

#include "mig_private.h"

#define KIB 1024u
/* Bursts after an idle period are bounded by this much of a second. */
#define BUCKET_BURST_DIV 10
#define BUCKET_BURST_MIN (64u * KIB)
#define RATE_WINDOW_MS 500u
#define RATE_STALE_MS 2000u
#define ABORT_SEND_TIMEOUT_MS 1000u

static const char auth_label[] = "hactl-migration-auth-v1";
static const char key_label[] = "hactl-migration-psk-v1";

/* ---- small helpers ------------------------------------------------------ */

uint64_t mig_now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static uint64_t now_ms(void)
{
	return mig_now_us() / 1000u;
}

void mig_set_err(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (err == NULL || errlen == 0) {
		return;
	}
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

/* Records the stream's error; @supersede: it replaces a first error that
 * a peer's ABORT may explain (see abort_may_follow). */
static int fail_v(struct mig_stream *s, int err, bool broken, bool supersede,
		  const char *fmt, va_list ap)
{
	int n, first;

	if (broken) {
		atomic_store(&s->broken, true);
	}
	/* Either direction's thread may fail the stream: the first one
	 * writes the message, then publishes the error. */
	pthread_mutex_lock(&s->err_lock);
	first = atomic_load(&s->err);
	if (first != 0 && !(supersede && (first == -EPIPE || first == -ECONNRESET))) {
		pthread_mutex_unlock(&s->err_lock);
		return first;
	}
	/* After a lost connection, what the peer sent before it closed may
	 * still be read: an ABORT there says why (and replaces this). */
	atomic_store(&s->abort_may_follow,
		     !supersede && (err == -EPIPE || err == -ECONNRESET));
	n = snprintf(s->errmsg, sizeof(s->errmsg), "%s: ",
		     s->peer[0] ? s->peer : "migration stream");
	if (n < 0 || (size_t)n >= sizeof(s->errmsg)) {
		n = 0;
	}
	vsnprintf(s->errmsg + n, sizeof(s->errmsg) - (size_t)n, fmt, ap);
	first = err < 0 ? err : -EIO;
	atomic_store(&s->err, first);
	pthread_mutex_unlock(&s->err_lock);
	return first;
}

int mig_stream_fail(struct mig_stream *s, int err, bool broken,
		    const char *fmt, ...)
{
	va_list ap;
	int rc;

	va_start(ap, fmt);
	rc = fail_v(s, err, broken, false, fmt, ap);
	va_end(ap);
	return rc;
}

static int fail_superseding(struct mig_stream *s, int err, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static int fail_superseding(struct mig_stream *s, int err, const char *fmt, ...)
{
	va_list ap;
	int rc;

	va_start(ap, fmt);
	rc = fail_v(s, err, true, true, fmt, ap);
	va_end(ap);
	return rc;
}

int mig_wait_fd(int fd, short events, int timeout_ms)
{
	struct pollfd p = { .fd = fd, .events = events };
	uint64_t deadline = timeout_ms < 0 ? 0 : now_ms() + (uint64_t)timeout_ms;

	for (;;) {
		int left = -1;
		int rc;

		if (timeout_ms >= 0) {
			uint64_t now = now_ms();

			left = now >= deadline ? 0 : (int)(deadline - now);
		}
		rc = poll(&p, 1, left);
		if (rc > 0) {
			return 0;
		}
		if (rc == 0) {
			return -ETIMEDOUT;
		}
		if (errno != EINTR) {
			return -errno;
		}
	}
}

int mig_stream_wait_slice(struct mig_stream *s, uint64_t start_ms, int timeout_ms,
			  const char *what)
{
	int slice = MIG_WAIT_SLICE_MS;

	if (atomic_load_explicit(&s->cancel, memory_order_relaxed)) {
		return mig_stream_fail(s, -ECANCELED, false, "cancelled while %s", what);
	}
	if (timeout_ms >= 0) {
		uint64_t spent = now_ms() - start_ms;

		if (spent >= (uint64_t)timeout_ms) {
			return mig_stream_fail(s, -ETIMEDOUT, true,
					       "no progress for %d ms while %s", timeout_ms, what);
		}
		if ((uint64_t)slice > timeout_ms - spent) {
			slice = (int)(timeout_ms - spent);
		}
	}
	return slice;
}

static int wait_fd(struct mig_stream *s, int fd, short events, int timeout_ms,
		   const char *what)
{
	struct pollfd p = { .fd = fd, .events = events };
	uint64_t start = now_ms();

	for (;;) {
		int slice = mig_stream_wait_slice(s, start, timeout_ms, what);
		int rc;

		if (slice < 0) {
			return slice;
		}
		p.revents = 0;
		rc = poll(&p, 1, slice);
		if (rc > 0) {
			/* POLLERR/POLLHUP: the next read or write says what. */
			return 0;
		}
		if (rc < 0 && errno != EINTR) {
			return mig_stream_fail(s, -errno, true, "poll while %s: %s",
					       what, strerror(errno));
		}
	}
}

int mig_stream_wait_fd(struct mig_stream *s, int fd, short events,
		       const char *what)
{
	uint32_t ms = (events & POLLOUT) ? atomic_load(&s->send_timeout_ms)
					 : s->opts.io_timeout_ms;

	return wait_fd(s, fd, events, (int)ms, what);
}

/* Sleeps @us in slices that watch the cancel flag. */
static int sleep_cancelable(struct mig_stream *s, uint64_t us)
{
	uint64_t end = mig_now_us() + us;

	for (;;) {
		uint64_t now = mig_now_us();
		uint64_t left;
		struct timespec ts;

		if (atomic_load_explicit(&s->cancel, memory_order_relaxed)) {
			return mig_stream_fail(s, -ECANCELED, false,
					       "cancelled while rate limited");
		}
		if (now >= end) {
			return 0;
		}
		left = end - now;
		if (left > MIG_WAIT_SLICE_MS * 1000u) {
			left = MIG_WAIT_SLICE_MS * 1000u;
		}
		ts.tv_sec = (time_t)(left / 1000000u);
		ts.tv_nsec = (long)(left % 1000000u) * 1000;
		nanosleep(&ts, NULL);
	}
}

/* ---- names and options -------------------------------------------------- */

static const char *const transport_names[MIG_TRANSPORT_MAX] = {
	[MIG_TRANSPORT_TCP] = "tcp",
	[MIG_TRANSPORT_RDMA] = "rdma",
};

const char *mig_transport_str(enum mig_transport t)
{
	return (unsigned)t < MIG_TRANSPORT_MAX ? transport_names[t] : "unknown";
}

int mig_transport_from_str(const char *s, enum mig_transport *t)
{
	for (unsigned i = 0; i < MIG_TRANSPORT_MAX; i++) {
		if (s != NULL && strcmp(s, transport_names[i]) == 0) {
			*t = (enum mig_transport)i;
			return 0;
		}
	}
	return -EINVAL;
}

const struct mig_xfer_ops *mig_xfer_get(enum mig_transport t)
{
	switch (t) {
	case MIG_TRANSPORT_TCP:
		return &mig_xfer_tcp;
	case MIG_TRANSPORT_RDMA:
#ifdef HAVE_RDMA
		return &mig_xfer_rdma;
#else
		return NULL;
#endif
	default:
		return NULL;
	}
}

void mig_opts_defaults(struct mig_opts *o)
{
	memset(o, 0, sizeof(*o));
	o->transport = MIG_TRANSPORT_TCP;
	o->encrypt = true;
	o->max_chunk = MIG_CHUNK_DEFAULT_LEN;
	o->io_timeout_ms = MIG_DEFAULT_IO_TIMEOUT_MS;
}

static int opts_check(const struct mig_opts *in, struct mig_opts *o,
		      const struct mig_xfer_ops **ops, char *err, size_t errlen)
{
	*o = *in;
	if (o->max_chunk == 0) {
		o->max_chunk = MIG_CHUNK_DEFAULT_LEN;
	}
	if (o->io_timeout_ms == 0) {
		o->io_timeout_ms = MIG_DEFAULT_IO_TIMEOUT_MS;
	}
	if (o->io_timeout_ms > INT32_MAX) {
		o->io_timeout_ms = INT32_MAX;
	}
	if (o->max_chunk < MIG_CHUNK_MIN_LEN || o->max_chunk > MIG_CHUNK_MAX_LEN) {
		mig_set_err(err, errlen, "max_chunk %u outside %u..%u",
			    o->max_chunk, MIG_CHUNK_MIN_LEN, MIG_CHUNK_MAX_LEN);
		return -EINVAL;
	}
	*ops = mig_xfer_get(o->transport);
	if (*ops == NULL) {
		mig_set_err(err, errlen, "transport %s is not in this build",
			    mig_transport_str(o->transport));
		return (unsigned)o->transport < MIG_TRANSPORT_MAX ? -ENOTSUP
								  : -EINVAL;
	}
	if (o->encrypt && o->transport != MIG_TRANSPORT_TCP) {
		mig_set_err(err, errlen,
			    "transport %s does not encrypt; set encrypt = false "
			    "to use it on a trusted fabric",
			    mig_transport_str(o->transport));
		return -EINVAL;
	}
	if (o->encrypt && !o->key.set) {
		mig_set_err(err, errlen,
			    "encrypt is on but no cluster key is loaded");
		return -EINVAL;
	}
	return 0;
}

/* ---- the cluster key ---------------------------------------------------- */

int mig_key_load(const char *path, struct mig_key *key, char *err,
		 size_t errlen)
{
	uint8_t buf[MIG_KEY_FILE_MAX + 1];
	struct stat st;
	size_t got = 0;
	int fd, rc;

	memset(key, 0, sizeof(*key));
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	if (fd < 0) {
		rc = -errno;
		mig_set_err(err, errlen, "%s: %s", path, strerror(errno));
		return rc;
	}
	if (fstat(fd, &st) < 0) {
		rc = -errno;
		mig_set_err(err, errlen, "%s: %s", path, strerror(errno));
		close(fd);
		return rc;
	}
	if (!S_ISREG(st.st_mode)) {
		mig_set_err(err, errlen, "%s: not a regular file", path);
		close(fd);
		return -EINVAL;
	}
	if (st.st_mode & 077) {
		mig_set_err(err, errlen,
			    "%s: readable or writable by others (mode %04o); "
			    "chmod 600 it",
			    path, (unsigned)(st.st_mode & 07777));
		close(fd);
		return -EPERM;
	}
	/* Bounded by the buffer, whatever fstat said. */
	while (got < sizeof(buf)) {
		ssize_t n = read(fd, buf + got, sizeof(buf) - got);

		if (n < 0 && errno == EINTR) {
			continue;
		}
		if (n < 0) {
			rc = -errno;
			mig_set_err(err, errlen, "%s: %s", path, strerror(errno));
			close(fd);
			gnutls_memset(buf, 0, sizeof(buf));
			return rc;
		}
		if (n == 0) {
			break;
		}
		got += (size_t)n;
	}
	close(fd);
	if (got < MIG_KEY_FILE_MIN || got > MIG_KEY_FILE_MAX) {
		mig_set_err(err, errlen,
			    "%s: %zu%s bytes, a cluster key has %u..%u", path,
			    got, got > MIG_KEY_FILE_MAX ? " or more" : "",
			    MIG_KEY_FILE_MIN, MIG_KEY_FILE_MAX);
		gnutls_memset(buf, 0, sizeof(buf));
		return -EINVAL;
	}
	rc = gnutls_hmac_fast(GNUTLS_MAC_SHA256, buf, got, key_label,
			      sizeof(key_label) - 1, key->psk);
	gnutls_memset(buf, 0, sizeof(buf));
	if (rc < 0) {
		mig_set_err(err, errlen, "%s: deriving the key: %s", path,
			    gnutls_strerror(rc));
		return -EIO;
	}
	key->set = true;
	return 0;
}

void mig_key_wipe(struct mig_key *key)
{
	if (key != NULL) {
		gnutls_memset(key, 0, sizeof(*key));
	}
}

/* ---- objects ------------------------------------------------------------ */

static struct mig_stream *stream_new(const struct mig_xfer_ops *ops,
				     const struct mig_opts *o)
{
	struct mig_stream *s = calloc(1, sizeof(*s));

	if (s == NULL) {
		return NULL;
	}
	s->ops = ops;
	s->opts = *o;
	s->opts.tls_priority = NULL; /* the caller's string may go away */
	s->max_recv = o->max_chunk;
	s->max_send = MIG_CHUNK_MIN_LEN;
	atomic_init(&s->cancel, false);
	atomic_init(&s->rate_limit, o->rate_limit);
	atomic_init(&s->end_sent, false);
	atomic_init(&s->err, 0);
	atomic_init(&s->broken, false);
	atomic_init(&s->send_timeout_ms, o->io_timeout_ms);
	pthread_mutex_init(&s->send_lock, NULL);
	pthread_mutex_init(&s->err_lock, NULL);
	s->start_ms = now_ms();
	snprintf(s->cipher, sizeof(s->cipher), "%s", "plain");
	return s;
}

void mig_stream_free(struct mig_stream *s)
{
	if (s == NULL) {
		return;
	}
	if (s->ops != NULL && s->ops->close != NULL) {
		s->ops->close(s);
	}
	free(s->pump_sbuf);
	free(s->pump_rbuf);
	mig_key_wipe(&s->opts.key);
	pthread_mutex_destroy(&s->send_lock);
	pthread_mutex_destroy(&s->err_lock);
	free(s);
}

/* ---- sending ------------------------------------------------------------ */

static void window_add(struct mig_window *w, _Atomic uint64_t *rate,
		       _Atomic uint64_t *rate_at, uint64_t bytes)
{
	uint64_t now = now_ms();

	if (w->start_ms == 0) {
		w->start_ms = now;
	}
	w->bytes += bytes;
	if (now - w->start_ms >= RATE_WINDOW_MS) {
		atomic_store_explicit(rate, w->bytes * 1000u / (now - w->start_ms),
				      memory_order_relaxed);
		atomic_store_explicit(rate_at, now, memory_order_relaxed);
		w->start_ms = now;
		w->bytes = 0;
	}
}

/* Token bucket with debt: take @n bytes, then sleep off any deficit. */
static int throttle(struct mig_stream *s, struct mig_bucket *b, size_t n)
{
	uint64_t rate = atomic_load_explicit(&s->rate_limit, memory_order_relaxed);
	uint64_t now, burst, start;
	int rc;

	if (rate == 0) {
		b->rate = 0;
		return 0;
	}
	now = mig_now_us();
	if (b->rate != rate) {
		/* Start empty so that a fresh cap is exact from the first
		 * byte. */
		b->rate = rate;
		b->tokens = 0;
		b->last_us = now;
	}
	burst = rate / BUCKET_BURST_DIV;
	if (burst < BUCKET_BURST_MIN) {
		burst = BUCKET_BURST_MIN;
	}
	b->tokens += (double)(now - b->last_us) * (double)rate / 1e6;
	if (b->tokens > (double)burst) {
		b->tokens = (double)burst;
	}
	b->last_us = now;
	b->tokens -= (double)n;
	if (b->tokens >= 0) {
		return 0;
	}
	start = now;
	rc = sleep_cancelable(s, (uint64_t)(-b->tokens * 1e6 / (double)rate));
	atomic_fetch_add_explicit(&s->c_throttle_ms, (mig_now_us() - start) / 1000u,
				  memory_order_relaxed);
	return rc;
}

/* Frames and sends one chunk; no checks of the type against the state.
 * The caller holds send_lock. */
static int send_chunk_locked(struct mig_stream *s, unsigned type,
			     unsigned flags, const void *buf, size_t len)
{
	uint8_t hdr_buf[MIG_CHUNK_HDR_LEN];
	struct mig_chunk_hdr h = {
		.type = (uint8_t)type,
		.flags = (uint16_t)flags,
		.length = (uint32_t)len,
		.seq = s->send_seq,
	};
	struct iovec iov[2] = {
		{ .iov_base = hdr_buf, .iov_len = sizeof(hdr_buf) },
		{ .iov_base = (void *)buf, .iov_len = len },
	};
	int rc;

	if (flags & MIG_CHUNK_F_CRC32C) {
		h.data_crc = mig_crc32c(0, buf, len);
	}
	mig_chunk_hdr_encode(&h, hdr_buf);
	rc = s->ops->send(s, iov, len ? 2 : 1);
	if (rc < 0) {
		return mig_stream_fail(s, rc, true, "sending chunk %llu (%s): %s",
				       (unsigned long long)s->send_seq,
				       mig_chunk_type_str(type), strerror(-rc));
	}
	s->send_seq++;
	atomic_fetch_add_explicit(&s->c_chunks_sent, 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&s->c_payload_sent, len, memory_order_relaxed);
	atomic_fetch_add_explicit(&s->c_wire_sent, len + MIG_CHUNK_HDR_LEN,
				  memory_order_relaxed);
	window_add(&s->send_win, &s->c_rate_sent, &s->c_rate_sent_at, len);
	return 0;
}

/* The same under send_lock: one chunk's bytes are never interleaved with
 * another thread's (an ABORT). */
static int send_chunk_raw(struct mig_stream *s, unsigned type, unsigned flags,
			  const void *buf, size_t len)
{
	int rc;

	pthread_mutex_lock(&s->send_lock);
	rc = send_chunk_locked(s, type, flags, buf, len);
	if (rc == 0 && type == MIG_CHUNK_END) {
		atomic_store(&s->end_sent, true);
	}
	pthread_mutex_unlock(&s->send_lock);
	return rc;
}

static int check_usable(struct mig_stream *s)
{
	int err = atomic_load(&s->err);

	if (err != 0) {
		return err;
	}
	if (atomic_load_explicit(&s->cancel, memory_order_relaxed)) {
		return mig_stream_fail(s, -ECANCELED, false, "cancelled");
	}
	return 0;
}

int mig_stream_send_chunk(struct mig_stream *s, enum mig_chunk_type type,
			  unsigned flags, const void *buf, size_t len)
{
	int rc;

	if (s == NULL || (buf == NULL && len > 0)) {
		return -EINVAL;
	}
	rc = check_usable(s);
	if (rc < 0) {
		return rc;
	}
	/* Caller mistakes: refused without failing the stream. */
	if (type != MIG_CHUNK_CONTROL && type != MIG_CHUNK_DATA &&
	    type != MIG_CHUNK_END) {
		return -EINVAL;
	}
	if (flags & ~(unsigned)MIG_CHUNK_F_LAST) {
		return -EINVAL;
	}
	if (type == MIG_CHUNK_END && len > 0) {
		return -EINVAL;
	}
	if (len > s->max_send) {
		return -EMSGSIZE;
	}
	if (atomic_load(&s->end_sent)) {
		return -EPIPE;
	}
	if (s->checksum && len > 0) {
		flags |= MIG_CHUNK_F_CRC32C;
	}
	rc = throttle(s, &s->send_bucket, len);
	if (rc < 0) {
		return rc;
	}
	return send_chunk_raw(s, type, flags, buf, len);
}

int mig_stream_send_end(struct mig_stream *s)
{
	return mig_stream_send_chunk(s, MIG_CHUNK_END, 0, NULL, 0);
}

int mig_stream_abort(struct mig_stream *s, int errnum, const char *reason)
{
	uint8_t buf[MIG_ABORT_MAX];
	size_t n = 0;
	int rc = 0;

	if (s == NULL) {
		return -EINVAL;
	}
	if (errnum < 0) {
		errnum = -errnum;
	}
	if (errnum == 0) {
		errnum = ECONNABORTED;
	}
	if (reason != NULL) {
		n = strnlen(reason, MIG_ABORT_REASON_MAX);
	}
	buf[0] = (uint8_t)errnum;
	buf[1] = (uint8_t)(errnum >> 8);
	buf[2] = (uint8_t)(errnum >> 16);
	buf[3] = (uint8_t)(errnum >> 24);
	memcpy(buf + 4, reason != NULL ? reason : "", n);
	/* First, so that a failure to send does not replace the reason. */
	mig_stream_fail(s, -errnum, false, "aborted here: %s",
			reason != NULL ? reason : strerror(errnum));
	if (!atomic_load(&s->broken) && !atomic_load(&s->end_sent)) {
		/* Best effort and short: the peer may be the problem. The
		 * transport does not look at the stream's error, so the
		 * ABORT goes out even after a local one (cancel). Another
		 * thread may be in the middle of a chunk: wait for it as
		 * long as for the peer, else give up (the peer then sees
		 * the connection close). */
		struct timespec until;

		clock_gettime(CLOCK_REALTIME, &until);
		until.tv_sec += ABORT_SEND_TIMEOUT_MS / 1000u;
		if (pthread_mutex_timedlock(&s->send_lock, &until) != 0) {
			return -EBUSY;
		}
		if (!atomic_load(&s->broken) && !atomic_load(&s->end_sent)) {
			uint32_t saved = atomic_load(&s->send_timeout_ms);

			atomic_store(&s->send_timeout_ms, ABORT_SEND_TIMEOUT_MS);
			rc = send_chunk_locked(s, MIG_CHUNK_ABORT,
					       MIG_CHUNK_F_CRC32C, buf, 4 + n);
			atomic_store(&s->send_timeout_ms, saved);
			atomic_store(&s->end_sent, true);
		}
		pthread_mutex_unlock(&s->send_lock);
	}
	return rc;
}

/* ---- receiving ---------------------------------------------------------- */

/* The first bytes from the peer are a TLS record (handshake or alert). */
static bool looks_like_tls(const struct mig_stream *s, const uint8_t *b,
			   size_t len)
{
	return s->recv_seq == 0 && !s->encrypted && len >= 2 && b[1] == 0x03 &&
	       (b[0] == 0x15 || b[0] == 0x16);
}

/* Reads exactly @len bytes; @what names them for errors. */
static int recv_exact(struct mig_stream *s, void *buf, size_t len,
		      bool at_boundary, const char *what)
{
	uint8_t *p = buf;
	size_t got = 0;

	while (got < len) {
		ssize_t n = s->ops->recv(s, p + got, len - got);

		if (n < 0) {
			return mig_stream_fail(s, (int)n, true, "reading %s: %s",
					       what, strerror((int)-n));
		}
		if (n == 0) {
			if (looks_like_tls(s, p, got)) {
				return mig_stream_fail(s, -EPROTO, true,
						       "peer speaks TLS but this "
						       "side has encryption off "
						       "(the encrypt settings "
						       "differ)");
			}
			if (at_boundary && got == 0) {
				return mig_stream_fail(s, -ECONNRESET, true,
						       "peer closed the connection "
						       "without END");
			}
			return mig_stream_fail(s, -ECONNRESET, true,
					       "peer closed the connection in "
					       "the middle of %s (%zu of %zu bytes)",
					       what, got, len);
		}
		got += (size_t)n;
	}
	atomic_fetch_add_explicit(&s->c_wire_recv, len, memory_order_relaxed);
	return 0;
}

static int reject(struct mig_stream *s, int err, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static int reject(struct mig_stream *s, int err, const char *fmt, ...)
{
	char msg[MIG_ERRMSG_LEN];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	atomic_fetch_add_explicit(&s->c_rejected, 1, memory_order_relaxed);
	/* After a bad chunk the byte stream cannot be trusted any more. */
	return mig_stream_fail(s, err, true, "%s", msg);
}

/* The first bytes are not a chunk; say what they look like. */
static int reject_header(struct mig_stream *s, const uint8_t *b,
			 enum mig_chunk_reject r, int rc)
{
	uint32_t magic = (uint32_t)b[0] | ((uint32_t)b[1] << 8) |
			 ((uint32_t)b[2] << 16) | ((uint32_t)b[3] << 24);

	if (r == MIG_CHUNK_REJ_MAGIC && looks_like_tls(s, b, MIG_CHUNK_HDR_LEN)) {
		return reject(s, -EPROTO,
			      "peer speaks TLS but this side has encryption "
			      "off (the encrypt settings differ)");
	}
	if (r == MIG_CHUNK_REJ_MAGIC) {
		return reject(s, rc, "chunk %llu: bad magic 0x%08x (expected 0x%08x)",
			      (unsigned long long)s->recv_seq, magic,
			      MIG_CHUNK_MAGIC);
	}
	if (r == MIG_CHUNK_REJ_VERSION) {
		return reject(s, rc, "chunk %llu: unsupported chunk version %u "
			      "(this side speaks %u)",
			      (unsigned long long)s->recv_seq, b[4],
			      MIG_CHUNK_VERSION);
	}
	if (r == MIG_CHUNK_REJ_TOO_LONG) {
		uint32_t len = (uint32_t)b[8] | ((uint32_t)b[9] << 8) |
			       ((uint32_t)b[10] << 16) | ((uint32_t)b[11] << 24);

		return reject(s, rc, "chunk %llu (%s): payload of %u bytes "
			      "above the bound of %u",
			      (unsigned long long)s->recv_seq,
			      mig_chunk_type_str(b[5]), len,
			      mig_chunk_type_max_len(b[5]) < s->max_recv
				      ? mig_chunk_type_max_len(b[5])
				      : s->max_recv);
	}
	return reject(s, rc, "chunk %llu: %s", (unsigned long long)s->recv_seq,
		      mig_chunk_reject_str(r));
}

static int handle_abort(struct mig_stream *s, const uint8_t *buf, size_t len)
{
	char reason[MIG_ABORT_REASON_MAX + 1];
	int errnum;

	s->end_received = true;
	if (mig_abort_decode(buf, len, &errnum, reason, sizeof(reason)) < 0) {
		return reject(s, -EBADMSG, "malformed ABORT of %zu bytes", len);
	}
	return fail_superseding(s, -ECONNABORTED, "peer aborted: %s (%s)",
			       reason[0] ? reason : "no reason given",
			       strerror(errnum));
}

/*
 * Reads one chunk: header into *h, payload into @buf (@cap bytes). Returns
 * the payload length or the stream's error. An ABORT is read into a buffer
 * of its own, whatever @cap, and becomes the stream's error.
 */
static ssize_t recv_chunk_raw(struct mig_stream *s, struct mig_chunk_hdr *h,
			      void *buf, size_t cap)
{
	uint8_t hb[MIG_CHUNK_HDR_LEN];
	uint8_t abort_buf[MIG_ABORT_MAX];
	enum mig_chunk_reject r;
	int rc;

	rc = recv_exact(s, hb, sizeof(hb), true, "a chunk header");
	if (rc < 0) {
		return rc;
	}
	rc = mig_chunk_hdr_decode(hb, sizeof(hb), s->max_recv, h, &r);
	if (rc < 0) {
		return reject_header(s, hb, r, rc);
	}
	if (h->seq != s->recv_seq) {
		return reject(s, -EPROTO, "chunk %s: sequence %llu, expected %llu",
			      mig_chunk_type_str(h->type),
			      (unsigned long long)h->seq,
			      (unsigned long long)s->recv_seq);
	}
	if (h->type == MIG_CHUNK_ABORT) {
		/* The decoder bounded it to MIG_ABORT_MAX. */
		buf = abort_buf;
		cap = sizeof(abort_buf);
	}
	if (h->length > cap) {
		return reject(s, -EMSGSIZE, "chunk %llu (%s): payload of %u bytes "
			      "does not fit the receive buffer of %zu",
			      (unsigned long long)h->seq,
			      mig_chunk_type_str(h->type), h->length, cap);
	}
	if (h->length > 0) {
		rc = recv_exact(s, buf, h->length, false, "a chunk payload");
		if (rc < 0) {
			return rc;
		}
	}
	if (h->flags & MIG_CHUNK_F_CRC32C) {
		uint32_t crc = mig_crc32c(0, buf, h->length);

		if (crc != h->data_crc) {
			return reject(s, -EBADMSG, "chunk %llu (%s, %u bytes): "
				      "payload checksum 0x%08x, header says 0x%08x",
				      (unsigned long long)h->seq,
				      mig_chunk_type_str(h->type), h->length,
				      crc, h->data_crc);
		}
	} else if (h->data_crc != 0) {
		return reject(s, -EBADMSG, "chunk %llu: checksum without its flag",
			      (unsigned long long)h->seq);
	}
	s->recv_seq++;
	atomic_fetch_add_explicit(&s->c_chunks_recv, 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&s->c_payload_recv, h->length,
				  memory_order_relaxed);
	window_add(&s->recv_win, &s->c_rate_recv, &s->c_rate_recv_at, h->length);
	if (h->type == MIG_CHUNK_ABORT) {
		return handle_abort(s, abort_buf, h->length);
	}
	return h->length;
}

/*
 * A send found the connection gone before anything else failed: what the
 * peer sent before it closed is still readable, and an ABORT there says
 * why. Skips the chunks before it; returns the stream's error, the ABORT's
 * when one came.
 */
static int read_pending_abort(struct mig_stream *s)
{
	size_t cap = s->max_recv;
	uint8_t *scratch = malloc(cap);
	struct mig_chunk_hdr h;

	if (scratch != NULL) {
		while (atomic_load(&s->abort_may_follow) && !s->end_received &&
		       !atomic_load_explicit(&s->cancel, memory_order_relaxed)) {
			if (recv_chunk_raw(s, &h, scratch, cap) < 0 ||
			    h.type == MIG_CHUNK_END) {
				break;
			}
		}
		free(scratch);
	}
	atomic_store(&s->abort_may_follow, false);
	return atomic_load(&s->err);
}

ssize_t mig_stream_recv_chunk(struct mig_stream *s, struct mig_chunk_hdr *hdr,
			      void *buf, size_t cap)
{
	ssize_t n;
	int rc;

	if (s == NULL || hdr == NULL || (buf == NULL && cap > 0)) {
		return -EINVAL;
	}
	rc = check_usable(s);
	if (rc < 0) {
		return atomic_load(&s->abort_may_follow) ? read_pending_abort(s) : rc;
	}
	if (s->end_received) {
		return -ENODATA;
	}
	n = recv_chunk_raw(s, hdr, buf, cap);
	if (n < 0) {
		return n;
	}
	switch (hdr->type) {
	case MIG_CHUNK_CONTROL:
	case MIG_CHUNK_DATA:
		if (s->checksum && n > 0 && !(hdr->flags & MIG_CHUNK_F_CRC32C)) {
			return reject(s, -EBADMSG, "chunk %llu (%s) has no "
				      "checksum but this session requires them",
				      (unsigned long long)hdr->seq,
				      mig_chunk_type_str(hdr->type));
		}
		break;
	case MIG_CHUNK_END:
		s->end_received = true;
		break;
	default:
		return reject(s, -EPROTO, "unexpected %s chunk %llu after the "
			      "handshake", mig_chunk_type_str(hdr->type),
			      (unsigned long long)hdr->seq);
	}
	if (hdr->type != MIG_CHUNK_END) {
		rc = throttle(s, &s->recv_bucket, (size_t)n);
		if (rc < 0) {
			return rc;
		}
	}
	return n;
}

/* ---- handshake ---------------------------------------------------------- */

static int auth_mac(const struct mig_stream *s, uint8_t role,
		    const uint8_t *nonce_a, const uint8_t *nonce_b,
		    uint8_t out[MIG_AUTH_LEN])
{
	gnutls_hmac_hd_t h;
	int rc;

	rc = gnutls_hmac_init(&h, GNUTLS_MAC_SHA256, s->opts.key.psk,
			      sizeof(s->opts.key.psk));
	if (rc < 0) {
		return -EIO;
	}
	if (gnutls_hmac(h, auth_label, sizeof(auth_label) - 1) < 0 ||
	    gnutls_hmac(h, &role, 1) < 0 ||
	    gnutls_hmac(h, nonce_a, MIG_NONCE_LEN) < 0 ||
	    gnutls_hmac(h, nonce_b, MIG_NONCE_LEN) < 0) {
		gnutls_hmac_deinit(h, NULL);
		return -EIO;
	}
	gnutls_hmac_deinit(h, out);
	return 0;
}

static bool equal_ct(const uint8_t *a, const uint8_t *b, size_t n)
{
	volatile uint8_t d = 0;

	for (size_t i = 0; i < n; i++) {
		d |= a[i] ^ b[i];
	}
	return d == 0;
}

/* Receives the next handshake chunk, which must be @type. */
static ssize_t recv_handshake(struct mig_stream *s, unsigned type, uint8_t *buf,
			      size_t cap)
{
	struct mig_chunk_hdr h;
	ssize_t n = recv_chunk_raw(s, &h, buf, cap);

	if (n < 0) {
		return n;
	}
	if (h.type != type) {
		return reject(s, -EPROTO, "expected %s, got %s chunk %llu",
			      mig_chunk_type_str(type), mig_chunk_type_str(h.type),
			      (unsigned long long)h.seq);
	}
	return n;
}

/*
 * Both sides send HELLO, then read the peer's; without TLS, both prove the
 * cluster key where they have one (AUTH: HMAC over both nonces and the
 * sender's role, so that a proof cannot be reflected). Returns 0 or the
 * stream's error.
 */
static int handshake(struct mig_stream *s)
{
	uint8_t out[MIG_HELLO_LEN], in[MIG_HELLO_MAX];
	uint8_t mac[MIG_AUTH_LEN], peer_mac[MIG_AUTH_LEN];
	struct mig_hello mine = {
		.proto_min = MIG_PROTO_MIN,
		.proto_max = MIG_PROTO_MAX,
		.max_chunk = s->max_recv,
	};
	struct mig_hello peer;
	bool auth = !s->encrypted && s->opts.key.set;
	const char *why = NULL;
	uint32_t lo, hi;
	ssize_t n;
	int rc;

	if (s->opts.checksum) {
		mine.features |= MIG_FEAT_CRC32C;
	}
	if (s->encrypted) {
		mine.features |= MIG_FEAT_ENCRYPTED;
	}
	if (auth) {
		mine.features |= MIG_FEAT_AUTH;
	}
	if (gnutls_rnd(GNUTLS_RND_NONCE, mine.nonce, sizeof(mine.nonce)) < 0) {
		return mig_stream_fail(s, -EIO, false, "no random nonce");
	}
	mig_hello_encode(&mine, out);
	rc = send_chunk_raw(s, MIG_CHUNK_HELLO, MIG_CHUNK_F_CRC32C, out,
			    sizeof(out));
	if (rc < 0) {
		return rc;
	}
	n = recv_handshake(s, MIG_CHUNK_HELLO, in, sizeof(in));
	if (n < 0) {
		return (int)n;
	}
	if (mig_hello_decode(in, (size_t)n, &peer, &why) < 0) {
		return reject(s, -EBADMSG, "bad HELLO: %s", why);
	}
	lo = peer.proto_min > mine.proto_min ? peer.proto_min : mine.proto_min;
	hi = peer.proto_max < mine.proto_max ? peer.proto_max : mine.proto_max;
	if (lo > hi) {
		return mig_stream_fail(s, -EPROTONOSUPPORT, true,
				       "no common protocol version: here %u..%u, "
				       "peer %u..%u",
				       mine.proto_min, mine.proto_max,
				       peer.proto_min, peer.proto_max);
	}
	if (!!(peer.features & MIG_FEAT_ENCRYPTED) != s->encrypted) {
		return mig_stream_fail(s, -EPROTO, true,
				       "peer says the connection is %s, this "
				       "side %s",
				       (peer.features & MIG_FEAT_ENCRYPTED)
					       ? "encrypted" : "plain",
				       s->encrypted ? "encrypted" : "plain");
	}
	s->proto = hi;
	s->checksum = s->opts.checksum || (peer.features & MIG_FEAT_CRC32C);
	s->max_send = peer.max_chunk < s->max_recv ? peer.max_chunk
						   : s->max_recv;
	if (!s->encrypted && !!(peer.features & MIG_FEAT_AUTH) != auth) {
		return mig_stream_fail(s, -EKEYREJECTED, true,
				       auth ? "peer has no cluster key, this side "
					      "requires it"
					    : "peer requires a cluster key, this "
					      "side has none");
	}
	if (!auth) {
		return 0;
	}
	rc = auth_mac(s, s->is_server ? 'S' : 'C', mine.nonce, peer.nonce, mac);
	if (rc < 0) {
		return mig_stream_fail(s, rc, false, "computing the key proof");
	}
	rc = send_chunk_raw(s, MIG_CHUNK_AUTH, MIG_CHUNK_F_CRC32C, mac,
			    sizeof(mac));
	if (rc < 0) {
		return rc;
	}
	n = recv_handshake(s, MIG_CHUNK_AUTH, in, sizeof(in));
	if (n < 0) {
		return (int)n;
	}
	rc = auth_mac(s, s->is_server ? 'C' : 'S', peer.nonce, mine.nonce,
		      peer_mac);
	if (rc < 0) {
		return mig_stream_fail(s, rc, false, "computing the key proof");
	}
	if (n != MIG_AUTH_LEN || !equal_ct(in, peer_mac, MIG_AUTH_LEN)) {
		atomic_fetch_add_explicit(&s->c_rejected, 1, memory_order_relaxed);
		return mig_stream_fail(s, -EKEYREJECTED, true,
				       "peer's key proof is wrong: the cluster "
				       "keys differ");
	}
	return 0;
}

/* ---- listen, accept, connect -------------------------------------------- */

int mig_listen(const struct mig_opts *opts, const char *addr, uint16_t port,
	       struct mig_listener **out, char *err, size_t errlen)
{
	const struct mig_xfer_ops *ops;
	struct mig_listener *l;
	struct mig_opts o;
	int rc;

	*out = NULL;
	rc = opts_check(opts, &o, &ops, err, errlen);
	if (rc < 0) {
		return rc;
	}
	l = calloc(1, sizeof(*l));
	if (l == NULL) {
		mig_set_err(err, errlen, "out of memory");
		return -ENOMEM;
	}
	l->ops = ops;
	l->opts = o;
	l->opts.tls_priority = NULL;
	if (opts->tls_priority != NULL) {
		l->opts.tls_priority = strdup(opts->tls_priority);
		if (l->opts.tls_priority == NULL) {
			free(l);
			mig_set_err(err, errlen, "out of memory");
			return -ENOMEM;
		}
	}
	rc = ops->listen(l, addr, port, err, errlen);
	if (rc < 0) {
		free((char *)l->opts.tls_priority);
		mig_key_wipe(&l->opts.key);
		free(l);
		return rc;
	}
	l->tail = &l->head;
	{
		pthread_condattr_t ca;

		pthread_condattr_init(&ca);
		pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
		pthread_cond_init(&l->cond, &ca);
		pthread_condattr_destroy(&ca);
		pthread_mutex_init(&l->lock, NULL);
	}
	*out = l;
	return 0;
}

static int finish_setup(struct mig_stream *s, struct mig_stream **out,
			char *err, size_t errlen)
{
	int rc = handshake(s);

	if (rc < 0) {
		mig_set_err(err, errlen, "%s", s->errmsg);
		mig_stream_free(s);
		return rc;
	}
	s->start_ms = now_ms();
	*out = s;
	return 0;
}

/* One handshake in the caller's thread (transports without parallel
 * accept). */
static int accept_serial(struct mig_listener *l, int timeout_ms,
			 struct mig_stream **out, char *err, size_t errlen)
{
	struct mig_stream *s;
	int rc;

	s = stream_new(l->ops, &l->opts);
	if (s == NULL) {
		mig_set_err(err, errlen, "out of memory");
		return -ENOMEM;
	}
	s->opts.tls_priority = l->opts.tls_priority; /* lives with @l */
	s->is_server = true;
	rc = l->ops->accept(l, timeout_ms, s, err, errlen);
	s->opts.tls_priority = NULL;
	if (rc < 0) {
		s->ops = NULL; /* nothing of the transport to close */
		mig_stream_free(s);
		return rc;
	}
	return finish_setup(s, out, err, errlen);
}

/* The listener itself failed (not one peer): no worker accepts again. */
static bool listener_error(int rc)
{
	return rc == -EINVAL || rc == -EBADF || rc == -ENOTSOCK;
}

/* Queues a result and wakes the waiting caller; called under l->lock. */
static void result_push(struct mig_listener *l, int rc, struct mig_stream *s,
			const char *err)
{
	struct mig_accept_result *r = calloc(1, sizeof(*r));

	if (r == NULL) {
		mig_stream_free(s);
		return;
	}
	r->rc = rc;
	r->s = s;
	snprintf(r->err, sizeof(r->err), "%s", err ? err : "");
	*l->tail = r;
	l->tail = &r->next;
	l->queued++;
	if (rc < 0) {
		l->handshakes_refused++;
	}
	pthread_cond_broadcast(&l->cond);
}

static void sleep_ms(unsigned ms)
{
	struct timespec ts = { .tv_sec = ms / 1000u, .tv_nsec = (long)(ms % 1000u) * 1000000L };

	nanosleep(&ts, NULL);
}

static void *accept_worker(void *arg)
{
	struct mig_accept_slot *slot = arg;
	struct mig_listener *l = slot->l;
	uint32_t preauth = l->opts.io_timeout_ms < MIG_PREAUTH_TIMEOUT_MS
				   ? l->opts.io_timeout_ms
				   : MIG_PREAUTH_TIMEOUT_MS;
	char err[MIG_ERRMSG_LEN];

	for (;;) {
		struct mig_stream *s;
		int rc;

		pthread_mutex_lock(&l->lock);
		while (!l->stop && (l->queued >= MIG_ACCEPT_QUEUE_MAX || l->waiters == 0)) {
			pthread_cond_wait(&l->cond, &l->lock);
		}
		if (l->stop) {
			pthread_mutex_unlock(&l->lock);
			break;
		}
		pthread_mutex_unlock(&l->lock);
		s = stream_new(l->ops, &l->opts);
		if (s == NULL) {
			sleep_ms(MIG_WAIT_SLICE_MS);
			continue;
		}
		s->opts.tls_priority = l->opts.tls_priority; /* lives with @l */
		s->opts.io_timeout_ms = preauth;
		atomic_store(&s->send_timeout_ms, preauth);
		s->is_server = true;
		pthread_mutex_lock(&l->lock);
		slot->s = s;
		if (l->stop) {
			atomic_store(&s->cancel, true);
		}
		pthread_mutex_unlock(&l->lock);
		err[0] = 0;
		/* short waits for a peer, so that a stop is seen soon */
		rc = l->ops->accept(l, MIG_WAIT_SLICE_MS, s, err, sizeof(err));
		s->opts.tls_priority = NULL;
		if (rc == 0) {
			rc = handshake(s);
			if (rc < 0) {
				snprintf(err, sizeof(err), "%s", s->errmsg);
			}
		} else {
			s->ops = NULL; /* nothing of the transport to close */
		}
		pthread_mutex_lock(&l->lock);
		slot->s = NULL;
		if (rc == 0) {
			/* authenticated: the ordinary I/O timeout from now on */
			s->opts.io_timeout_ms = l->opts.io_timeout_ms;
			atomic_store(&s->send_timeout_ms, l->opts.io_timeout_ms);
			s->start_ms = now_ms();
			result_push(l, 0, s, NULL);
			pthread_mutex_unlock(&l->lock);
			continue;
		}
		if (rc == -ETIMEDOUT && strstr(err, "no peer came") != NULL) {
			pthread_mutex_unlock(&l->lock);
			mig_stream_free(s);
			continue;
		}
		if (l->stop) {
			pthread_mutex_unlock(&l->lock);
			mig_stream_free(s);
			break;
		}
		result_push(l, rc, NULL, err);
		if (listener_error(rc)) {
			l->dead_rc = rc;
			snprintf(l->dead_err, sizeof(l->dead_err), "%s", err);
			pthread_mutex_unlock(&l->lock);
			mig_stream_free(s);
			break;
		}
		pthread_mutex_unlock(&l->lock);
		mig_stream_free(s);
		if (rc == -EMFILE || rc == -ENFILE || rc == -ENOMEM) {
			sleep_ms(MIG_WAIT_SLICE_MS);
		}
	}
	pthread_mutex_lock(&l->lock);
	l->live--;
	pthread_cond_broadcast(&l->cond);
	pthread_mutex_unlock(&l->lock);
	return NULL;
}

/* Starts the workers; under l->lock. Returns 0 or -errno. */
static int workers_start(struct mig_listener *l)
{
	unsigned n = l->ops->accept_parallel;

	if (n > MIG_ACCEPT_SLOTS_MAX) {
		n = MIG_ACCEPT_SLOTS_MAX;
	}
	l->started = true;
	for (unsigned i = 0; i < n; i++) {
		l->slots[i].l = l;
		if (pthread_create(&l->slots[i].thread, NULL, accept_worker, &l->slots[i]) != 0) {
			break;
		}
		l->n_slots++;
		l->live++;
	}
	return l->n_slots > 0 ? 0 : -EAGAIN;
}

int mig_listener_accept(struct mig_listener *l, int timeout_ms,
			struct mig_stream **out, char *err, size_t errlen)
{
	struct mig_accept_result *r;
	struct timespec until;
	int rc;

	*out = NULL;
	if (l == NULL) {
		return -EINVAL;
	}
	if (l->ops->accept_parallel == 0) {
		return accept_serial(l, timeout_ms, out, err, errlen);
	}
	clock_gettime(CLOCK_MONOTONIC, &until);
	if (timeout_ms >= 0) {
		until.tv_sec += timeout_ms / 1000;
		until.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
		if (until.tv_nsec >= 1000000000L) {
			until.tv_sec++;
			until.tv_nsec -= 1000000000L;
		}
	}
	pthread_mutex_lock(&l->lock);
	if (!l->started && workers_start(l) < 0) {
		pthread_mutex_unlock(&l->lock);
		mig_set_err(err, errlen, "accept on port %u: cannot start a thread",
			    l->ops->listener_port(l));
		return -EAGAIN;
	}
	l->waiters++;
	pthread_cond_broadcast(&l->cond); /* idle workers accept again */
	while (l->head == NULL && l->live > 0) {
		if (timeout_ms < 0) {
			pthread_cond_wait(&l->cond, &l->lock);
		} else if (pthread_cond_timedwait(&l->cond, &l->lock, &until) == ETIMEDOUT) {
			break;
		}
	}
	l->waiters--;
	r = l->head;
	if (r != NULL) {
		l->head = r->next;
		if (l->head == NULL) {
			l->tail = &l->head;
		}
		l->queued--;
		pthread_cond_broadcast(&l->cond); /* a worker may wait for room */
		pthread_mutex_unlock(&l->lock);
		rc = r->rc;
		*out = r->s;
		if (rc < 0) {
			mig_set_err(err, errlen, "%s", r->err);
		}
		free(r);
		return rc;
	}
	if (l->live == 0) {
		rc = l->dead_rc ? l->dead_rc : -EINVAL;
		mig_set_err(err, errlen, "%s", l->dead_err[0] ? l->dead_err : "listener closed");
	} else {
		rc = -ETIMEDOUT;
		mig_set_err(err, errlen, "accept on port %u: no peer came",
			    l->ops->listener_port(l));
	}
	pthread_mutex_unlock(&l->lock);
	return rc;
}

int mig_listener_fd(const struct mig_listener *l)
{
	return l != NULL ? l->ops->listener_fd(l) : -1;
}

uint16_t mig_listener_port(const struct mig_listener *l)
{
	return l != NULL ? l->ops->listener_port(l) : 0;
}

void mig_listener_free(struct mig_listener *l)
{
	if (l == NULL) {
		return;
	}
	pthread_mutex_lock(&l->lock);
	l->stop = true;
	for (unsigned i = 0; i < l->n_slots; i++) {
		if (l->slots[i].s != NULL) {
			mig_stream_cancel(l->slots[i].s);
		}
	}
	pthread_cond_broadcast(&l->cond);
	pthread_mutex_unlock(&l->lock);
	for (unsigned i = 0; i < l->n_slots; i++) {
		pthread_join(l->slots[i].thread, NULL);
	}
	while (l->head != NULL) {
		struct mig_accept_result *r = l->head;

		l->head = r->next;
		mig_stream_free(r->s);
		free(r);
	}
	pthread_mutex_destroy(&l->lock);
	pthread_cond_destroy(&l->cond);
	l->ops->listener_close(l);
	free((char *)l->opts.tls_priority);
	mig_key_wipe(&l->opts.key);
	free(l);
}

int mig_connect(const struct mig_opts *opts, const char *addr, uint16_t port,
		int timeout_ms, struct mig_stream **out, char *err,
		size_t errlen)
{
	const struct mig_xfer_ops *ops;
	struct mig_stream *s;
	struct mig_opts o;
	int rc;

	*out = NULL;
	rc = opts_check(opts, &o, &ops, err, errlen);
	if (rc < 0) {
		return rc;
	}
	if (addr == NULL || addr[0] == '\0' || port == 0) {
		mig_set_err(err, errlen, "no address or port to connect to");
		return -EINVAL;
	}
	s = stream_new(ops, &o);
	if (s == NULL) {
		mig_set_err(err, errlen, "out of memory");
		return -ENOMEM;
	}
	s->opts.tls_priority = opts->tls_priority; /* during connect only */
	rc = ops->connect(s, addr, port, timeout_ms, err, errlen);
	s->opts.tls_priority = NULL;
	if (rc < 0) {
		s->ops = NULL;
		mig_stream_free(s);
		return rc;
	}
	return finish_setup(s, out, err, errlen);
}

/* ---- pumps -------------------------------------------------------------- */

/* One buffer per direction: the two pumps may run at once. */
static int pump_buf(struct mig_stream *s, uint8_t **buf, size_t *have,
		    size_t cap)
{
	if (*have >= cap) {
		return 0;
	}
	free(*buf);
	*have = 0;
	*buf = malloc(cap);
	if (*buf == NULL) {
		return mig_stream_fail(s, -ENOMEM, false,
				       "no memory for a %zu byte buffer", cap);
	}
	*have = cap;
	return 0;
}

/* The pumps make @fd non-blocking while they run, so that a stalled
 * local end never hides the cancel flag; its flags come back after. */
static int fd_nonblock(struct mig_stream *s, int fd, int *saved)
{
	int fl = fcntl(fd, F_GETFL);

	if (fl < 0) {
		return mig_stream_fail(s, -errno, false, "fd %d: %s", fd,
				       strerror(errno));
	}
	*saved = fl;
	if (!(fl & O_NONBLOCK) && fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0) {
		return mig_stream_fail(s, -errno, false, "fd %d: %s", fd,
				       strerror(errno));
	}
	return 0;
}

static void fd_restore(int fd, int saved)
{
	if (!(saved & O_NONBLOCK)) {
		fcntl(fd, F_SETFL, saved);
	}
}

/*
 * Fills @buf with what @fd has now: waits for the first byte, then takes
 * what is there without waiting. Returns the length, 0 at end of file,
 * or the stream's error.
 */
static ssize_t fill_from_fd(struct mig_stream *s, int fd, uint8_t *buf,
			    size_t cap)
{
	size_t got = 0;

	while (got < cap) {
		ssize_t n = read(fd, buf + got, cap - got);
		int rc;

		if (n > 0) {
			got += (size_t)n;
			continue;
		}
		if (n == 0) {
			break;
		}
		if (errno == EINTR) {
			continue;
		}
		if (errno != EAGAIN && errno != EWOULDBLOCK) {
			return mig_stream_fail(s, -errno, false,
					       "reading local fd %d: %s", fd,
					       strerror(errno));
		}
		if (got > 0) {
			break;
		}
		/* The local producer may pause for long (QEMU between
		 * passes): no timeout, only the cancel flag. */
		rc = wait_fd(s, fd, POLLIN, -1, "waiting for the local fd");
		if (rc < 0) {
			return rc;
		}
	}
	return (ssize_t)got;
}

int mig_stream_pump_fd_to_stream(struct mig_stream *s, int fd)
{
	size_t cap;
	int saved, rc;

	if (s == NULL || fd < 0) {
		return -EINVAL;
	}
	rc = check_usable(s);
	if (rc < 0) {
		return rc;
	}
	cap = s->max_send;
	rc = pump_buf(s, &s->pump_sbuf, &s->pump_scap, cap);
	if (rc < 0) {
		return rc;
	}
	rc = fd_nonblock(s, fd, &saved);
	if (rc < 0) {
		return rc;
	}
	for (;;) {
		ssize_t n = fill_from_fd(s, fd, s->pump_sbuf, cap);

		if (n < 0) {
			rc = (int)n;
			break;
		}
		rc = mig_stream_send_chunk(s, MIG_CHUNK_DATA,
					   n == 0 ? MIG_CHUNK_F_LAST : 0,
					   s->pump_sbuf, (size_t)n);
		if (rc < 0 || n == 0) {
			break;
		}
	}
	fd_restore(fd, saved);
	return rc;
}

static int write_all_fd(struct mig_stream *s, int fd, const uint8_t *buf,
			size_t len, bool *is_socket)
{
	size_t done = 0;

	while (done < len) {
		ssize_t n;
		int rc;

		if (*is_socket) {
			n = send(fd, buf + done, len - done, MSG_NOSIGNAL);
			if (n < 0 && errno == ENOTSOCK) {
				*is_socket = false;
				continue;
			}
		} else {
			n = write(fd, buf + done, len - done);
		}
		if (n > 0) {
			done += (size_t)n;
			continue;
		}
		if (n < 0 && errno == EINTR) {
			continue;
		}
		if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
			return mig_stream_fail(s, -errno, false,
					       "writing local fd %d: %s", fd,
					       strerror(errno));
		}
		rc = wait_fd(s, fd, POLLOUT, -1, "waiting to write the local fd");
		if (rc < 0) {
			return rc;
		}
	}
	return 0;
}

int mig_stream_pump_stream_to_fd(struct mig_stream *s, int fd)
{
	bool is_socket = true;
	int saved, rc;

	if (s == NULL || fd < 0) {
		return -EINVAL;
	}
	rc = check_usable(s);
	if (rc < 0) {
		return rc;
	}
	rc = pump_buf(s, &s->pump_rbuf, &s->pump_rcap, s->max_recv);
	if (rc < 0) {
		return rc;
	}
	rc = fd_nonblock(s, fd, &saved);
	if (rc < 0) {
		return rc;
	}
	for (;;) {
		struct mig_chunk_hdr h;
		ssize_t n = mig_stream_recv_chunk(s, &h, s->pump_rbuf,
						  s->pump_rcap);

		if (n < 0) {
			rc = (int)n;
			break;
		}
		if (h.type == MIG_CHUNK_END) {
			rc = 0;
			break;
		}
		if (h.type != MIG_CHUNK_DATA) {
			atomic_fetch_add_explicit(&s->c_rejected, 1,
						  memory_order_relaxed);
			rc = mig_stream_fail(s, -EPROTO, true,
					     "%s chunk %llu inside a byte stream",
					     mig_chunk_type_str(h.type),
					     (unsigned long long)h.seq);
			break;
		}
		rc = write_all_fd(s, fd, s->pump_rbuf, (size_t)n, &is_socket);
		if (rc < 0 || (h.flags & MIG_CHUNK_F_LAST)) {
			break;
		}
	}
	fd_restore(fd, saved);
	return rc;
}

/* ---- control and introspection ------------------------------------------ */

void mig_stream_cancel(struct mig_stream *s)
{
	if (s != NULL) {
		atomic_store(&s->cancel, true);
	}
}

void mig_stream_set_rate(struct mig_stream *s, uint64_t bytes_per_s)
{
	if (s != NULL) {
		atomic_store(&s->rate_limit, bytes_per_s);
	}
}

void mig_stream_counters(const struct mig_stream *s, struct mig_counters *c)
{
	struct mig_stream *m = (struct mig_stream *)s;
	uint64_t now = now_ms();

	memset(c, 0, sizeof(*c));
	if (s == NULL) {
		return;
	}
	c->payload_sent = atomic_load_explicit(&m->c_payload_sent, memory_order_relaxed);
	c->payload_recv = atomic_load_explicit(&m->c_payload_recv, memory_order_relaxed);
	c->wire_sent = atomic_load_explicit(&m->c_wire_sent, memory_order_relaxed);
	c->wire_recv = atomic_load_explicit(&m->c_wire_recv, memory_order_relaxed);
	c->chunks_sent = atomic_load_explicit(&m->c_chunks_sent, memory_order_relaxed);
	c->chunks_recv = atomic_load_explicit(&m->c_chunks_recv, memory_order_relaxed);
	c->rejected = atomic_load_explicit(&m->c_rejected, memory_order_relaxed);
	c->throttle_ms = atomic_load_explicit(&m->c_throttle_ms, memory_order_relaxed);
	/* A rate nobody refreshed for a while is no current rate. */
	if (now - atomic_load_explicit(&m->c_rate_sent_at, memory_order_relaxed) <
	    RATE_STALE_MS) {
		c->rate_sent = atomic_load_explicit(&m->c_rate_sent,
						    memory_order_relaxed);
	}
	if (now - atomic_load_explicit(&m->c_rate_recv_at, memory_order_relaxed) <
	    RATE_STALE_MS) {
		c->rate_recv = atomic_load_explicit(&m->c_rate_recv,
						    memory_order_relaxed);
	}
	c->elapsed_ms = now - s->start_ms;
}

int mig_stream_error(const struct mig_stream *s)
{
	return s != NULL ? s->err : -EINVAL;
}

const char *mig_stream_errmsg(const struct mig_stream *s)
{
	return s != NULL ? s->errmsg : "";
}

uint32_t mig_stream_proto(const struct mig_stream *s)
{
	return s->proto;
}

bool mig_stream_encrypted(const struct mig_stream *s)
{
	return s->encrypted;
}

bool mig_stream_checksummed(const struct mig_stream *s)
{
	return s->checksum;
}

uint32_t mig_stream_max_send(const struct mig_stream *s)
{
	return s->max_send;
}

const char *mig_stream_peer(const struct mig_stream *s)
{
	return s->peer;
}

const char *mig_stream_cipher(const struct mig_stream *s)
{
	return s->cipher;
}

#ifndef HAVE_RDMA
int mig_rdma_probe(struct mig_rdma_probe *p)
{
	memset(p, 0, sizeof(*p));
	snprintf(p->reason, sizeof(p->reason),
		 "built without librdmacm and libibverbs");
	return 0;
}
#endif
