/*
 * migration.h - the data transport between agents.
 *
 * A migration stream carries one guest's state from the source agent to
 * the destination agent: control messages (protobuf bytes, opaque here)
 * and bulk data (CRIU images and pages, QEMU's migration stream). Every
 * byte travels in a chunk with a fixed 32-byte binary header (the page
 * data's own channel, with a real flags field), so that the receiver
 * bounds, orders and checks what it reads before it stores anything.
 *
 * One transport per file behind struct mig_xfer_ops (QEMU migration/,
 * knet transport_*.c):
 *
 *   tcp   xfer_tcp.c   TCP; TLS 1.3 (1.2 as fallback) with a pre-shared
 *                      cluster key through GnuTLS, or plain where the
 *                      operator turned encryption off on a trusted network
 *   rdma  xfer_rdma.c  reliable-connected queue pair through librdmacm and
 *                      ibverbs, registered buffers, SEND with immediate
 *
 * Threads: every call that moves data blocks (poll with timeouts) and is
 * meant for a worker thread. Two threads may use one stream at once, one
 * sending and one receiving (the agent relays both directions of a
 * driver's socket so): a chunk is sent whole under the stream's send lock,
 * so an ABORT from either thread never splits another chunk, the
 * receiving side's state is the receiving thread's alone, and the first
 * error is shared by both. No more than one thread sends (other than
 * mig_stream_abort()) and one receives at a time. mig_stream_cancel(),
 * mig_stream_abort(), mig_stream_set_rate() and mig_stream_counters() may
 * be called from any thread while that happens.
 *
 * Errors: functions return 0 (or a length) or -errno. A stream keeps its
 * first error and message; once failed, every later call returns that
 * error at once, so callers may check once after a batch (QEMUFile).
 *
 * Wire format, key file and switches: docs/migration-transport.md.
 */
#ifndef HA_MIGRATION_H
#define HA_MIGRATION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

/* ---- chunk header ------------------------------------------------------ */

/*
 * Layout, little-endian, MIG_CHUNK_HDR_LEN bytes then @length payload bytes:
 *
 *   off size field
 *     0    4 magic       'HAMG' (0x474d4148)
 *     4    1 version     MIG_CHUNK_VERSION (layout of this header)
 *     5    1 type        enum mig_chunk_type
 *     6    2 flags       MIG_CHUNK_F_*; unknown bits are rejected
 *     8    4 length      payload bytes, <= the receiver's max_chunk
 *    12    4 data_crc    CRC-32C of the payload with MIG_CHUNK_F_CRC32C,
 *                        else 0
 *    16    8 seq         0 for the HELLO, +1 per chunk, per direction
 *    24    4 reserved    0
 *    28    4 hdr_crc     CRC-32C of bytes 0..27
 */
#define MIG_CHUNK_MAGIC 0x474d4148u /* "HAMG" */
#define MIG_CHUNK_VERSION 1u
#define MIG_CHUNK_HDR_LEN 32u
/* No chunk is ever longer, whatever a peer announces. */
#define MIG_CHUNK_MAX_LEN (16u * 1024u * 1024u)
#define MIG_CHUNK_DEFAULT_LEN (1024u * 1024u)
/* The smallest max_chunk a peer may announce. */
#define MIG_CHUNK_MIN_LEN 4096u

/* Type ids are never reused; add new ones before MIG_CHUNK_TYPE_MAX. */
enum mig_chunk_type {
	MIG_CHUNK_NONE = 0,    /* never on the wire */
	MIG_CHUNK_HELLO = 1,   /* first chunk each way: versions, features */
	MIG_CHUNK_AUTH = 2,    /* key proof on unencrypted connections */
	MIG_CHUNK_CONTROL = 3, /* protobuf bytes for the caller */
	MIG_CHUNK_DATA = 4,    /* pages, images, a QEMU stream */
	MIG_CHUNK_END = 5,     /* orderly end of the session, no payload */
	MIG_CHUNK_ABORT = 6,   /* the sender gives up: errno and reason */
	MIG_CHUNK_TYPE_MAX
};

enum mig_chunk_flags {
	/* The last DATA chunk of a byte stream (see the pumps). */
	MIG_CHUNK_F_LAST = 1u << 0,
	/* data_crc holds the payload's CRC-32C. */
	MIG_CHUNK_F_CRC32C = 1u << 1,
	/* Reserved for compressed payloads; rejected until a protocol
	 * version defines it. */
	MIG_CHUNK_F_COMPRESSED = 1u << 2,
};
#define MIG_CHUNK_F_KNOWN (MIG_CHUNK_F_LAST | MIG_CHUNK_F_CRC32C)

struct mig_chunk_hdr {
	uint8_t version;
	uint8_t type;
	uint16_t flags;
	uint32_t length;
	uint32_t data_crc;
	uint64_t seq;
};

/* Why a header was rejected, in the order the checks run. */
enum mig_chunk_reject {
	MIG_CHUNK_REJ_SHORT = 0, /* fewer than MIG_CHUNK_HDR_LEN bytes */
	MIG_CHUNK_REJ_MAGIC,
	MIG_CHUNK_REJ_VERSION,   /* -EPROTONOSUPPORT */
	MIG_CHUNK_REJ_HDR_CRC,
	MIG_CHUNK_REJ_TYPE,
	MIG_CHUNK_REJ_FLAGS,     /* unknown or reserved bits */
	MIG_CHUNK_REJ_RESERVED,  /* reserved field not 0 */
	MIG_CHUNK_REJ_TOO_LONG,  /* above max_len or the type's own bound */
	MIG_CHUNK_REJ_MAX
};

const char *mig_chunk_type_str(unsigned type);
const char *mig_chunk_reject_str(enum mig_chunk_reject r);

/* CRC-32C (Castagnoli), continuing from @crc (0 to start). */
uint32_t mig_crc32c(uint32_t crc, const void *buf, size_t len);

/* Writes @h (magic, version and hdr_crc filled in here) into @out. */
void mig_chunk_hdr_encode(const struct mig_chunk_hdr *h,
			  uint8_t out[MIG_CHUNK_HDR_LEN]);

/*
 * Decodes and checks the header in the first MIG_CHUNK_HDR_LEN bytes of
 * @buf (@len may be more). @max_len bounds the payload (further bounded by
 * the type: HELLO, AUTH and ABORT are small, END is empty). Returns 0, or
 * -EBADMSG (-EMSGSIZE for a too long payload, -EPROTONOSUPPORT for another
 * version) with the reason in *rej when @rej is not NULL. Reads nothing
 * past @len and allocates nothing.
 */
int mig_chunk_hdr_decode(const void *buf, size_t len, uint32_t max_len,
			 struct mig_chunk_hdr *h, enum mig_chunk_reject *rej);

/* The largest payload of @type, whatever max_chunk is (0 for unknown). */
uint32_t mig_chunk_type_max_len(unsigned type);

/* ---- streams ----------------------------------------------------------- */

enum mig_transport {
	MIG_TRANSPORT_TCP = 0,
	MIG_TRANSPORT_RDMA,
	MIG_TRANSPORT_MAX
};

const char *mig_transport_str(enum mig_transport t);
/* "tcp" or "rdma"; returns 0 or -EINVAL. */
int mig_transport_from_str(const char *s, enum mig_transport *t);

/* Where the cluster key lives unless the configuration says otherwise. */
#define MIG_KEY_DEFAULT_PATH "/etc/hactl/cluster.key"
#define MIG_KEY_FILE_MIN 16u
#define MIG_KEY_FILE_MAX 4096u
#define MIG_PSK_IDENTITY "hactl"

/* The key derived from the cluster key file; see mig_key_load(). */
struct mig_key {
	bool set;
	uint8_t psk[32];
};

/*
 * Reads the cluster key file @path (MIG_KEY_FILE_MIN..MIG_KEY_FILE_MAX
 * bytes of anything, e.g. 32 bytes of /dev/urandom; not readable by group
 * or others) and derives the migration key from it (HMAC-SHA256 with a
 * fixed label, so the same file may serve other purposes). Returns 0,
 * -ENOENT, -EPERM (loose mode), -EINVAL (size), ... with "PATH: what" in
 * @err.
 */
int mig_key_load(const char *path, struct mig_key *key, char *err,
		 size_t errlen);
/* Clears a key from memory. */
void mig_key_wipe(struct mig_key *key);

struct mig_opts {
	enum mig_transport transport;
	/*
	 * TCP only. true (the default): TLS with the cluster key; a peer
	 * without the same key is refused. false: no encryption, a conscious
	 * choice for trusted networks only (see the docs); peers still prove
	 * the key when one is set (AUTH chunk), else nothing is checked.
	 */
	bool encrypt;
	struct mig_key key;    /* required with encrypt */
	/* CRC-32C on every payload; on if either side asks for it. */
	bool checksum;
	/* Largest payload accepted and sent; 0 = MIG_CHUNK_DEFAULT_LEN.
	 * MIG_CHUNK_MIN_LEN..MIG_CHUNK_MAX_LEN. */
	uint32_t max_chunk;
	/* Payload bytes per second each way; 0 = unlimited. */
	uint64_t rate_limit;
	/* A blocked read or write without progress for this long fails the
	 * stream with -ETIMEDOUT; 0 = 30 s. Also bounds the handshakes. */
	uint32_t io_timeout_ms;
	/* TCP SO_SNDBUF/SO_RCVBUF in bytes; 0 = the kernel's autotuning. */
	uint32_t sockbuf;
	/* GnuTLS priority string; NULL = MIG_TLS_PRIORITY. */
	const char *tls_priority;
};

/*
 * PSK key exchange with (EC)DHE first (forward secrecy), AEAD ciphers
 * only. With TLS 1.3 an external PSK is bound to SHA-256, which leaves the
 * suites AES-128-GCM (first: AES-NI) and ChaCha20-Poly1305; AES-256-GCM
 * (SHA-384) applies to TLS 1.2 peers only.
 */
#define MIG_TLS_PRIORITY                                                       \
	"NORMAL:-VERS-ALL:+VERS-TLS1.3:+VERS-TLS1.2:-KX-ALL:+ECDHE-PSK:"       \
	"+DHE-PSK:+PSK:-CIPHER-ALL:+AES-128-GCM:+CHACHA20-POLY1305:"           \
	"+AES-256-GCM"

/* Defaults: tcp, encrypt on, no key, no checksum, 1 MiB chunks. */
void mig_opts_defaults(struct mig_opts *o);

/* Protocol versions of the stream (negotiated by HELLO). */
#define MIG_PROTO_MIN 1u
#define MIG_PROTO_MAX 1u

struct mig_stream;
struct mig_listener;

/*
 * A transport. Callers use mig_listen() and mig_connect(); the hooks are
 * for the stream layer (mig_stream.c), which does the framing, the
 * handshake, the cap and the counters on top of them. The stream and
 * listener objects are allocated by that layer; a transport keeps its
 * state in their private pointer.
 */
struct mig_xfer_ops {
	const char *name;
	/* Handshakes of accepted peers that may run at once (worker
	 * threads calling accept concurrently); 0: one at a time, in the
	 * caller of mig_listener_accept(). */
	unsigned accept_parallel;
	/* Binds and listens; -errno with "what, where" in @err. */
	int (*listen)(struct mig_listener *l, const char *addr, uint16_t port,
		      char *err, size_t errlen);
	/* Waits up to @timeout_ms for a peer and sets up @s with it:
	 * -ETIMEDOUT when none came. */
	int (*accept)(struct mig_listener *l, int timeout_ms,
		      struct mig_stream *s, char *err, size_t errlen);
	/* Readable when a peer waits (for a qb_loop source); -1 if none. */
	int (*listener_fd)(const struct mig_listener *l);
	uint16_t (*listener_port)(const struct mig_listener *l);
	void (*listener_close)(struct mig_listener *l);
	/* Connects @s to a listener, key exchange included. */
	int (*connect)(struct mig_stream *s, const char *addr, uint16_t port,
		       int timeout_ms, char *err, size_t errlen);
	/* Sends all of @iov; 0 or the stream's error. */
	int (*send)(struct mig_stream *s, const struct iovec *iov, int iovcnt);
	/* Receives 1..@len bytes, 0 at the peer's orderly close, or the
	 * stream's error. */
	ssize_t (*recv)(struct mig_stream *s, void *buf, size_t len);
	/* Orderly shutdown (best effort) and release of the private state. */
	void (*close)(struct mig_stream *s);
};

/* The transport of @t, or NULL when this build lacks it (RDMA). */
const struct mig_xfer_ops *mig_xfer_get(enum mig_transport t);

/*
 * Listens on @addr (NULL or "" or "*": every address) and @port (0: any;
 * see mig_listener_port()) with the transport of @opts, which is copied.
 * On success *out is freed by the caller with mig_listener_free(). Returns
 * 0 or -errno with the reason in @err.
 */
int mig_listen(const struct mig_opts *opts, const char *addr, uint16_t port,
	       struct mig_listener **out, char *err, size_t errlen);

/*
 * Before a peer has proven the cluster key (TLS handshake, or HELLO and
 * AUTH on plain streams) it gets at most this long, whatever the I/O
 * timeout (which applies once it has).
 */
#define MIG_PREAUTH_TIMEOUT_MS 10000u

/*
 * Waits up to @timeout_ms (-1: forever) for a peer, runs the key exchange
 * and the HELLO exchange. On success *out is a stream the caller frees with
 * mig_stream_free(). A peer that fails the handshake is dropped and the
 * error returned (-EKEYREJECTED for a wrong key, -EPROTO for a peer that
 * speaks something else); the listener stays usable.
 *
 * TCP runs up to accept_parallel handshakes at once in worker threads that
 * the first call starts and mig_listener_free() stops (they take new
 * peers only while a caller waits here); each peer has
 * MIG_PREAUTH_TIMEOUT_MS (or the I/O timeout when shorter) to prove the
 * key. Peers that connect and stay silent therefore cannot keep the
 * real source waiting: it is served by another slot at once. Results come
 * back in the order the handshakes end.
 */
int mig_listener_accept(struct mig_listener *l, int timeout_ms,
			struct mig_stream **out, char *err, size_t errlen);
int mig_listener_fd(const struct mig_listener *l);
uint16_t mig_listener_port(const struct mig_listener *l);
/* Closes and frees; accepts NULL. */
void mig_listener_free(struct mig_listener *l);

/*
 * Connects to a listener at @addr:@port with @opts (copied): connection
 * and TLS handshake within @timeout_ms (-1: no limit), HELLO and AUTH
 * within the I/O timeout. On success *out is freed by the caller
 * with mig_stream_free(). Returns 0 or -errno with "peer: what" in @err:
 * -ECONNREFUSED, -ETIMEDOUT, -EKEYREJECTED (the peer has another key),
 * -EPROTO (the peer speaks something else, e.g. TLS against plain),
 * -EPROTONOSUPPORT (no common protocol version).
 */
int mig_connect(const struct mig_opts *opts, const char *addr, uint16_t port,
		int timeout_ms, struct mig_stream **out, char *err,
		size_t errlen);

/*
 * Sends one chunk of @type (CONTROL, DATA or END) with @flags
 * (MIG_CHUNK_F_LAST; the checksum flag is set here) and @len bytes of
 * @buf, @len <= mig_stream_max_send(). Waits for the rate cap first.
 * Returns 0 or the stream's first error.
 */
int mig_stream_send_chunk(struct mig_stream *s, enum mig_chunk_type type,
			  unsigned flags, const void *buf, size_t len);

/*
 * Receives the next chunk: its header into *hdr and its payload into @buf
 * (@cap bytes; a longer payload fails the stream with -EMSGSIZE). Returns
 * the payload length, or -errno: -ECONNABORTED when the peer sent ABORT
 * (its reason is the stream's error message), -ENODATA after END was
 * received, -EBADMSG / -EPROTO / -EMSGSIZE for a rejected chunk. Only
 * CONTROL, DATA and END chunks reach the caller.
 */
ssize_t mig_stream_recv_chunk(struct mig_stream *s, struct mig_chunk_hdr *hdr,
			      void *buf, size_t cap);

/* Sends END: nothing more comes from this side. */
int mig_stream_send_end(struct mig_stream *s);

/*
 * Tells the peer that this side gives up (@errnum > 0, @reason up to 200
 * bytes, may be NULL) if the connection still works, and makes @errnum
 * the stream's error unless it has one. Returns 0 or -errno.
 */
int mig_stream_abort(struct mig_stream *s, int errnum, const char *reason);

/*
 * Copies what read() returns from @fd (a pipe or socket from QEMU or CRIU;
 * blocking or not) into DATA chunks until end of file, then sends an empty
 * DATA chunk with MIG_CHUNK_F_LAST. Honours the rate cap and the cancel
 * flag between chunks. Returns 0 or -errno (the stream's first error, or
 * the read error, which becomes it).
 */
int mig_stream_pump_fd_to_stream(struct mig_stream *s, int fd);

/*
 * Writes the payload of the DATA chunks received into @fd until a chunk
 * with MIG_CHUNK_F_LAST or an END (returns 0). A CONTROL chunk inside the
 * byte stream is a protocol error. Writes to a socket never raise SIGPIPE;
 * for a pipe the caller ignores SIGPIPE (the daemons do).
 */
int mig_stream_pump_stream_to_fd(struct mig_stream *s, int fd);

/* Asks the stream to stop: checked between chunks and while waiting
 * (within 100 ms); the stream fails with -ECANCELED. Any thread. */
void mig_stream_cancel(struct mig_stream *s);

/* Changes the cap (bytes/s, 0 = none) of a running stream. Any thread. */
void mig_stream_set_rate(struct mig_stream *s, uint64_t bytes_per_s);

struct mig_counters {
	uint64_t payload_sent;  /* payload bytes of all chunks */
	uint64_t payload_recv;
	uint64_t wire_sent;     /* with headers, before encryption */
	uint64_t wire_recv;
	uint64_t chunks_sent;
	uint64_t chunks_recv;
	uint64_t rejected;      /* chunks refused (the first fails the stream) */
	uint64_t throttle_ms;   /* time spent waiting for the rate cap */
	uint64_t elapsed_ms;    /* since the stream was set up */
	uint64_t rate_sent;     /* payload bytes/s over the last ~0.5 s */
	uint64_t rate_recv;
};

/* A consistent-enough snapshot (each field atomic). Any thread. */
void mig_stream_counters(const struct mig_stream *s, struct mig_counters *c);

/* The first error (0 if none) and its message ("" if none). The message
 * stays valid until mig_stream_free(). */
int mig_stream_error(const struct mig_stream *s);
const char *mig_stream_errmsg(const struct mig_stream *s);

/* What the handshake settled. */
uint32_t mig_stream_proto(const struct mig_stream *s);
bool mig_stream_encrypted(const struct mig_stream *s);
bool mig_stream_checksummed(const struct mig_stream *s);
/* Largest payload the peer accepts. */
uint32_t mig_stream_max_send(const struct mig_stream *s);
/* "addr:port" of the peer. */
const char *mig_stream_peer(const struct mig_stream *s);
/* "TLS1.3 AES-128-GCM" or "plain"/"rdma". */
const char *mig_stream_cipher(const struct mig_stream *s);

/* Closes (orderly when possible) and frees; accepts NULL. */
void mig_stream_free(struct mig_stream *s);

/* ---- RDMA probe -------------------------------------------------------- */

#define MIG_RDMA_PROBE_MAX 8

struct mig_rdma_dev {
	char name[64];
	unsigned ports;        /* physical ports */
	unsigned active_ports; /* in state ACTIVE */
};

struct mig_rdma_probe {
	bool built;             /* this build has the RDMA transport */
	unsigned n_devices;     /* all of them, even past the array */
	struct mig_rdma_dev dev[MIG_RDMA_PROBE_MAX];
	/* A connection is possible: an active port and an IPv4 address
	 * that the connection manager maps to a device. */
	bool usable;
	char addr[64];          /* that address, when usable */
	char reason[160];       /* why not, when !usable */
};

/* Fills @p. Returns 0 (even when nothing is usable), or -errno when the
 * probe itself failed. */
int mig_rdma_probe(struct mig_rdma_probe *p);

#endif
