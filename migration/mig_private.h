/*
 * mig_private.h - what the stream layer and the transports share.
 */
#ifndef HA_MIG_PRIVATE_H
#define HA_MIG_PRIVATE_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "migration.h"

#define MIG_ERRMSG_LEN 256
#define MIG_DEFAULT_IO_TIMEOUT_MS 30000u
/* A wait never sleeps longer than this between checks of the cancel flag. */
#define MIG_WAIT_SLICE_MS 100

/* HELLO payload, little-endian (MIG_HELLO_LEN bytes; later versions may
 * append, up to the type's bound):
 *   u16 proto_min, u16 proto_max, u32 features, u32 max_chunk,
 *   u32 reserved (0), 32 bytes nonce */
#define MIG_HELLO_LEN 48u
#define MIG_HELLO_MAX 256u
#define MIG_FEAT_CRC32C (1u << 0)    /* the sender wants checksums */
#define MIG_FEAT_ENCRYPTED (1u << 1) /* the sender runs TLS under this */
#define MIG_FEAT_AUTH (1u << 2)      /* the sender will send AUTH */
#define MIG_NONCE_LEN 32u
/* AUTH payload: HMAC-SHA256 (see mig_stream.c). */
#define MIG_AUTH_LEN 32u
/* ABORT payload: u32 errno, then up to MIG_ABORT_REASON_MAX bytes of text. */
#define MIG_ABORT_REASON_MAX 200u
#define MIG_ABORT_MAX (4u + MIG_ABORT_REASON_MAX)

struct mig_hello {
	uint16_t proto_min;
	uint16_t proto_max;
	uint32_t features;
	uint32_t max_chunk;
	uint8_t nonce[MIG_NONCE_LEN];
};

void mig_hello_encode(const struct mig_hello *h, uint8_t out[MIG_HELLO_LEN]);
/* Checks the payload of a HELLO: length, reserved, max_chunk bounds and
 * proto_min <= proto_max. Returns 0 or -EBADMSG with a static reason. */
int mig_hello_decode(const void *buf, size_t len, struct mig_hello *h,
		     const char **why);
/* Returns 0 or -EBADMSG; @reason gets the text (NUL-terminated, control
 * characters replaced by '?'). */
int mig_abort_decode(const void *buf, size_t len, int *errnum, char *reason,
		     size_t reasonlen);

/* A token bucket in bytes; rate 0 = unlimited. */
struct mig_bucket {
	uint64_t rate;
	double tokens;
	uint64_t last_us;
};

/* Rate over a window of at least ~0.5 s. */
struct mig_window {
	uint64_t start_ms;
	uint64_t bytes;
};

struct mig_stream {
	const struct mig_xfer_ops *ops;
	struct mig_opts opts;
	void *priv;                 /* the transport's */
	char peer[80];
	char cipher[64];
	bool encrypted;
	bool is_server;

	/* settled by HELLO */
	uint32_t proto;
	bool checksum;
	uint32_t max_send;
	uint32_t max_recv;

	/*
	 * One thread may send while another receives (the agent relays both
	 * directions of a driver's socket at once). Sending side: send_seq,
	 * end_sent, send_bucket, send_win, pump_sbuf, under send_lock for
	 * the chunk itself (an ABORT may come from either thread). Receiving
	 * side: recv_seq, end_received, recv_bucket, recv_win, pump_rbuf,
	 * used by the one receiving thread only. The first error is shared:
	 * set under err_lock, read without it.
	 */
	pthread_mutex_t send_lock;
	uint64_t send_seq;
	uint64_t recv_seq;
	bool end_received;
	atomic_bool end_sent;
	/* bounds the sender's waits (shorter for an ABORT or close_notify) */
	_Atomic uint32_t send_timeout_ms;

	/* first error */
	pthread_mutex_t err_lock;
	_Atomic int err;
	atomic_bool broken; /* the transport itself failed: nothing more is sent */
	/* The first error is a lost connection (EPIPE, ECONNRESET): the
	 * peer may have closed it after an ABORT that is still to be read,
	 * and that ABORT's reason replaces the error. */
	atomic_bool abort_may_follow;
	char errmsg[MIG_ERRMSG_LEN];

	atomic_bool cancel;
	_Atomic uint64_t rate_limit;
	struct mig_bucket send_bucket;
	struct mig_bucket recv_bucket;
	struct mig_window send_win;
	struct mig_window recv_win;

	/* counters */
	uint64_t start_ms;
	_Atomic uint64_t c_payload_sent, c_payload_recv;
	_Atomic uint64_t c_wire_sent, c_wire_recv;
	_Atomic uint64_t c_chunks_sent, c_chunks_recv;
	_Atomic uint64_t c_rejected, c_throttle_ms;
	_Atomic uint64_t c_rate_sent, c_rate_recv;
	_Atomic uint64_t c_rate_sent_at, c_rate_recv_at; /* ms */

	uint8_t *pump_sbuf;         /* fd -> stream */
	size_t pump_scap;
	uint8_t *pump_rbuf;         /* stream -> fd */
	size_t pump_rcap;
};

/*
 * Concurrent handshakes (transports with accept_parallel): up to that many
 * worker threads accept peers and run their key exchange and HELLO at the
 * same time, each bounded by the pre-authentication limit, so that peers
 * that connect and say nothing hold one slot each for that long and never
 * the listener. Completed handshakes (and refusals) queue for
 * mig_listener_accept(), at most MIG_ACCEPT_QUEUE_MAX.
 */
#define MIG_ACCEPT_QUEUE_MAX 16
#define MIG_ACCEPT_SLOTS_MAX 16

struct mig_accept_result {
	struct mig_accept_result *next;
	int rc;
	struct mig_stream *s; /* rc == 0 */
	char err[MIG_ERRMSG_LEN];
};

struct mig_accept_slot {
	struct mig_listener *l;
	pthread_t thread;
	struct mig_stream *s; /* the handshake in progress, under l->lock */
};

struct mig_listener {
	const struct mig_xfer_ops *ops;
	struct mig_opts opts;
	void *priv;
	/* concurrent handshakes (mig_stream.c), everything under @lock */
	pthread_mutex_t lock;
	pthread_cond_t cond; /* CLOCK_MONOTONIC */
	bool started, stop;
	unsigned n_slots, live;
	unsigned waiters;     /* callers in mig_listener_accept(): workers
			       * accept new peers only while there are some */
	struct mig_accept_slot slots[MIG_ACCEPT_SLOTS_MAX];
	struct mig_accept_result *head, **tail;
	unsigned queued;
	int dead_rc;          /* the listener failed: every worker ended */
	char dead_err[MIG_ERRMSG_LEN];
	uint64_t handshakes_refused;
};

/*
 * Records the first error of @s (later ones are ignored) as "-errnum" with
 * a message (printf format). @broken: the connection is unusable. Returns
 * the stream's error (the first one).
 */
int mig_stream_fail(struct mig_stream *s, int err, bool broken,
		    const char *fmt, ...) __attribute__((format(printf, 4, 5)));

/*
 * Waits until @fd has @events (POLLIN/POLLOUT), in slices that check the
 * cancel flag, for at most the stream's I/O timeout (POLLOUT: the
 * sender's, which an ABORT or a close shortens). Returns 0, or fails
 * the stream (-ECANCELED, -ETIMEDOUT with "@what") and returns its error.
 */
int mig_stream_wait_fd(struct mig_stream *s, int fd, short events,
		       const char *what);

/*
 * One step of a wait of @s that began at @start_ms (mig_now_us() / 1000):
 * the milliseconds to poll next (1..MIG_WAIT_SLICE_MS, so that a cancel
 * is seen), or, when @s was cancelled or @timeout_ms (-1: none) passed
 * without progress, fails the stream (-ECANCELED, -ETIMEDOUT with "@what")
 * and returns its error.
 */
int mig_stream_wait_slice(struct mig_stream *s, uint64_t start_ms, int timeout_ms,
			  const char *what);

/* Same without a stream, for connect and accept: waits up to @timeout_ms
 * (-1 forever). Returns 0, -ETIMEDOUT or -errno of poll. */
int mig_wait_fd(int fd, short events, int timeout_ms);

uint64_t mig_now_us(void);

/* snprintf into @err when it is not NULL. */
void mig_set_err(char *err, size_t errlen, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* The transports. */
extern const struct mig_xfer_ops mig_xfer_tcp;
#ifdef HAVE_RDMA
extern const struct mig_xfer_ops mig_xfer_rdma;
#endif

#endif
