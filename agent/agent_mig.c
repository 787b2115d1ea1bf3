/*
 * agent_mig.c - the agents' end of a live migration stream: options from
 * the [migration] configuration, the CONTROL hello that names the
 * transaction, and the relay between the stream and the driver's socket.
 *
 *   driver <-> sp[1] ==socketpair== sp[0] <-> up thread   -> stream -> peer
 *                                              down thread <- stream <- peer
 *
 * up: what the driver writes goes out as DATA chunks; when the driver's
 * side is shut down (it returned), the rest of the socket and then END.
 * An idle up direction sends an empty DATA chunk every KEEPALIVE_MS, so
 * that the peer's I/O timeout (30 s without a byte) means "peer gone",
 * not "nothing to say" (the container destination is silent until its
 * restore is done, QEMU's destination for the whole transfer).
 * down: DATA from the peer is written to the driver; END shuts down the
 * driver's read side. Any failure shuts the socketpair down both ways, so
 * that the driver's next read or write fails at once, and the first error
 * of the migration (stream, relay or driver, whichever came first) is
 * the one reported.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <qb/qblog.h>

#include "agent_mig.h"
#include "proto/hactl.pb-c.h"
#include "util.h"

/* ---- the migration phase ---- */

const char *agent_mig_phase_str(enum agent_mig_phase p)
{
	return ha_migration_phase_str((Hactl__MigrationPhase)p);
}

/* The one transition table (see agent_mig.h). */
bool agent_mig_phase_ok(enum agent_mig_phase from, enum agent_mig_phase to)
{
	static const bool ok[AGENT_MIG_PHASE_MAX][AGENT_MIG_PHASE_MAX] = {
		[AGENT_MIG_NONE] = { [AGENT_MIG_TRANSFERRING] = true, [AGENT_MIG_FAILED] = true,
				     [AGENT_MIG_FINISHING] = true, [AGENT_MIG_NONE] = true },
		[AGENT_MIG_TRANSFERRING] = { [AGENT_MIG_SENT] = true, [AGENT_MIG_RECEIVED] = true,
					     [AGENT_MIG_FAILED] = true,
					     [AGENT_MIG_FINISHING] = true,
					     [AGENT_MIG_FINISHED] = true, [AGENT_MIG_NONE] = true },
		[AGENT_MIG_SENT] = { [AGENT_MIG_FINISHING] = true, [AGENT_MIG_FINISHED] = true,
				     [AGENT_MIG_NONE] = true },
		[AGENT_MIG_RECEIVED] = { [AGENT_MIG_FINISHING] = true, [AGENT_MIG_FINISHED] = true,
					 [AGENT_MIG_NONE] = true },
		[AGENT_MIG_FAILED] = { [AGENT_MIG_FINISHING] = true, [AGENT_MIG_FINISHED] = true,
				       [AGENT_MIG_NONE] = true },
		[AGENT_MIG_FINISHING] = { [AGENT_MIG_FINISHING] = true, [AGENT_MIG_FINISHED] = true,
					  [AGENT_MIG_NONE] = true },
		[AGENT_MIG_FINISHED] = { [AGENT_MIG_FINISHING] = true, [AGENT_MIG_NONE] = true },
	};

	if ((unsigned)from >= AGENT_MIG_PHASE_MAX || (unsigned)to >= AGENT_MIG_PHASE_MAX) {
		return false;
	}
	return ok[from][to];
}

int agent_mig_phase_set(enum agent_mig_phase *phase, enum agent_mig_phase expected,
			enum agent_mig_phase to, const char *guest, uint64_t id)
{
	if (*phase != expected || !agent_mig_phase_ok(expected, to)) {
		qb_log(LOG_ERR, "migration %" PRIu64 " of %s: refused phase change %s -> %s "
		       "(now %s)", id, guest, agent_mig_phase_str(expected),
		       agent_mig_phase_str(to), agent_mig_phase_str(*phase));
		return -EINVAL;
	}
	if (to != *phase) {
		qb_log(LOG_DEBUG, "migration %" PRIu64 " of %s: %s -> %s", id, guest,
		       agent_mig_phase_str(*phase), agent_mig_phase_str(to));
	}
	*phase = to;
	return 0;
}

#define HELLO_MAX 1024u          /* a CONTROL hello: name, id, role */
#define CONNECT_MS 10000
#define KEEPALIVE_MS 1000u
#define RELAY_SLICE_MS 200
#define PEER_END_MS 120000u      /* the peer's END after our driver is done */
#define PEER_ABORT_MS 2000u      /* an ABORT still to read after a broken send */
#define MSG_LEN 512

struct agent_mig_xfer {
	struct mig_stream *s;
	char transport[8];
	char guest[64];
	uint64_t id;
	int sp[2];               /* [0] the relay's end, [1] the driver's */
	pthread_t up, down;
	bool up_started, down_started;
	atomic_bool stop;        /* the relay threads end soon */
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool up_done, down_done; /* under lock */
	int err;                 /* the first error, under lock */
	char msg[MSG_LEN];
};

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* Keeps the first error of the migration. */
static void note(struct agent_mig_xfer *x, int err, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void note(struct agent_mig_xfer *x, int err, const char *fmt, ...)
{
	va_list ap;

	pthread_mutex_lock(&x->lock);
	if (x->err == 0) {
		x->err = err < 0 ? err : -EIO;
		va_start(ap, fmt);
		vsnprintf(x->msg, sizeof(x->msg), fmt, ap);
		va_end(ap);
	}
	pthread_mutex_unlock(&x->lock);
}

static void note_stream(struct agent_mig_xfer *x, int rc)
{
	const char *m = mig_stream_errmsg(x->s);
	int err = mig_stream_error(x->s);

	note(x, err < 0 ? err : rc, "%s", m[0] ? m : strerror(-rc));
}

/* ---- options and the hello ---------------------------------------------- */

static int opts_build(const struct agent_mig_params *p, struct mig_opts *o, char *err,
		      size_t errlen)
{
	const char *t = p->transport && p->transport[0] ? p->transport : p->cfg->mig_transport;
	char why[512];
	int rc;

	mig_opts_defaults(o);
	if (mig_transport_from_str(t, &o->transport) < 0) {
		snprintf(err, errlen, "unknown migration transport '%s' (tcp or rdma)", t);
		return -EINVAL;
	}
	o->encrypt = p->cfg->mig_encrypt;
	rc = mig_key_load(p->cfg->mig_key_file, &o->key, why, sizeof(why));
	if (rc == -ENOENT && !o->encrypt) {
		/* encrypt = false and no key: nothing is checked (a trusted
		 * network, docs/migration-transport.md) */
		return 0;
	}
	if (rc < 0) {
		snprintf(err, errlen, "cluster key %s%s", why,
			 o->encrypt ? " (needed: [migration] encrypt = true)" : "");
		return rc;
	}
	return 0;
}

static int hello_send(struct mig_stream *s, const char *guest, uint64_t id, const char *role)
{
	Hactl__MigStreamHello h = HACTL__MIG_STREAM_HELLO__INIT;
	uint8_t buf[HELLO_MAX];
	size_t n;

	h.guest = (char *)guest;
	h.id = id;
	h.role = (char *)role;
	n = hactl__mig_stream_hello__get_packed_size(&h);
	if (n > sizeof(buf) || n > mig_stream_max_send(s)) {
		return -EMSGSIZE;
	}
	hactl__mig_stream_hello__pack(&h, buf);
	return mig_stream_send_chunk(s, MIG_CHUNK_CONTROL, 0, buf, n);
}

/*
 * Reads the peer's hello and checks that it is @role for transaction @id
 * of @guest. A mismatch is refused with an ABORT that says why. Returns 0
 * or -errno with "peer: what" in @err.
 */
static int hello_check(struct mig_stream *s, const char *role, const char *guest, uint64_t id,
		       char *err, size_t errlen)
{
	uint8_t buf[HELLO_MAX];
	struct mig_chunk_hdr h;
	Hactl__MigStreamHello *m;
	char why[256];
	ssize_t n = mig_stream_recv_chunk(s, &h, buf, sizeof(buf));

	if (n < 0) {
		snprintf(err, errlen, "%s", mig_stream_errmsg(s));
		return (int)n;
	}
	if (h.type != MIG_CHUNK_CONTROL) {
		snprintf(why, sizeof(why), "expected the migration hello, got a %s chunk",
			 mig_chunk_type_str(h.type));
		mig_stream_abort(s, EPROTO, why);
		snprintf(err, errlen, "%s: %s", mig_stream_peer(s), why);
		return -EPROTO;
	}
	m = hactl__mig_stream_hello__unpack(NULL, (size_t)n, buf);
	if (m == NULL) {
		snprintf(why, sizeof(why), "malformed migration hello (%zd bytes)", n);
		mig_stream_abort(s, EBADMSG, why);
		snprintf(err, errlen, "%s: %s", mig_stream_peer(s), why);
		return -EBADMSG;
	}
	if (strcmp(m->role, role) != 0 || strcmp(m->guest, guest) != 0 || m->id != id) {
		/* the peer's text is bounded by HELLO_MAX; shown shortened */
		snprintf(why, sizeof(why),
			 "this side expects the %s of migration %" PRIu64 " of %s, the peer is "
			 "the %.16s of migration %" PRIu64 " of %.64s", role, id, guest, m->role,
			 m->id, m->guest);
		hactl__mig_stream_hello__free_unpacked(m, NULL);
		mig_stream_abort(s, EPROTO, why);
		snprintf(err, errlen, "%s: %s", mig_stream_peer(s), why);
		return -EPROTO;
	}
	hactl__mig_stream_hello__free_unpacked(m, NULL);
	return 0;
}

static struct agent_mig_xfer *xfer_new(struct mig_stream *s, const struct mig_opts *o,
				       const char *guest, uint64_t id)
{
	struct agent_mig_xfer *x = calloc(1, sizeof(*x));

	if (x == NULL) {
		return NULL;
	}
	x->s = s;
	snprintf(x->transport, sizeof(x->transport), "%s", mig_transport_str(o->transport));
	snprintf(x->guest, sizeof(x->guest), "%s", guest);
	x->id = id;
	x->sp[0] = x->sp[1] = -1;
	atomic_init(&x->stop, false);
	pthread_mutex_init(&x->lock, NULL);
	pthread_cond_init(&x->cond, NULL);
	return x;
}

/* ---- listen, accept, connect -------------------------------------------- */

const char *agent_mig_listen_addr(const struct ha_config *cfg, const char *cluster_addr)
{
	if (cfg->mig_listen_address[0]) {
		return strcmp(cfg->mig_listen_address, "*") == 0 ? NULL : cfg->mig_listen_address;
	}
	return cluster_addr && cluster_addr[0] ? cluster_addr : NULL;
}

int agent_mig_pick_address(const char *network, const char *const *addrs, size_t n,
			   char *out, size_t len)
{
	struct ha_net net;

	if (network == NULL || network[0] == 0) {
		return -ENOENT;
	}
	if (ha_net_parse(network, &net) < 0) {
		return -EINVAL;
	}
	for (size_t i = 0; i < n; i++) {
		if (ha_net_contains(&net, addrs[i])) {
			snprintf(out, len, "%s", addrs[i]);
			return 0;
		}
	}
	return -ENOENT;
}

#define LOCAL_ADDRS_MAX 64

int agent_mig_local_address(const char *network, char *out, size_t len)
{
	char text[LOCAL_ADDRS_MAX][INET6_ADDRSTRLEN];
	const char *addrs[LOCAL_ADDRS_MAX];
	struct ifaddrs *ifs, *i;
	size_t n = 0;

	if (network == NULL || network[0] == 0) {
		return -ENOENT;
	}
	if (getifaddrs(&ifs) < 0) {
		return -errno;
	}
	for (i = ifs; i && n < LOCAL_ADDRS_MAX; i = i->ifa_next) {
		const void *a;

		if (i->ifa_addr == NULL || !(i->ifa_flags & IFF_UP)) {
			continue;
		}
		if (i->ifa_addr->sa_family == AF_INET) {
			a = &((const struct sockaddr_in *)(const void *)i->ifa_addr)->sin_addr;
		} else if (i->ifa_addr->sa_family == AF_INET6) {
			a = &((const struct sockaddr_in6 *)(const void *)i->ifa_addr)->sin6_addr;
		} else {
			continue;
		}
		if (inet_ntop(i->ifa_addr->sa_family, a, text[n], sizeof(text[n]))) {
			addrs[n] = text[n];
			n++;
		}
	}
	freeifaddrs(ifs);
	return agent_mig_pick_address(network, addrs, n, out, len);
}

int agent_mig_listen(const struct agent_mig_params *p, struct mig_listener **out,
		     char *err, size_t errlen)
{
	struct mig_opts o;
	int rc;

	*out = NULL;
	rc = opts_build(p, &o, err, errlen);
	if (rc < 0) {
		return rc;
	}
	rc = mig_listen(&o, p->listen_addr, 0, out, err, errlen);
	mig_key_wipe(&o.key);
	return rc;
}

/* Errors of one peer (handshake, hello) rather than of the listener. */
static bool peer_error(int rc)
{
	return rc != -EINVAL && rc != -EBADF && rc != -ENOTSOCK && rc != -ENOMEM &&
	       rc != -EMFILE && rc != -ENFILE;
}

int agent_mig_accept(struct mig_listener *l, const struct agent_mig_params *p,
		     int timeout_ms, struct agent_mig_xfer **out, char *err, size_t errlen)
{
	uint64_t deadline = now_ms() + (uint64_t)timeout_ms;
	char last[MSG_LEN] = "", why[MSG_LEN];
	struct mig_opts o;
	int rc;

	*out = NULL;
	/* for the transport's name only: the listener holds the key */
	rc = opts_build(p, &o, err, errlen);
	if (rc < 0) {
		return rc;
	}
	mig_key_wipe(&o.key);
	for (;;) {
		struct mig_stream *s = NULL;
		uint64_t now = now_ms();

		if (now >= deadline) {
			snprintf(err, errlen, "the source did not connect within %d s%s%s",
				 timeout_ms / 1000, last[0] ? "; refused: " : "", last);
			return -ETIMEDOUT;
		}
		why[0] = 0;
		rc = mig_listener_accept(l, (int)(deadline - now), &s, why, sizeof(why));
		if (rc == -ETIMEDOUT && s == NULL && strstr(why, "no peer came")) {
			continue; /* the deadline decides */
		}
		if (rc < 0 && !peer_error(rc)) {
			snprintf(err, errlen, "stopped waiting for the source (%s)%s%s", why,
				 last[0] ? "; refused before: " : "", last);
			return rc;
		}
		if (rc == 0) {
			rc = hello_check(s, "source", p->guest, p->id, why, sizeof(why));
		}
		if (rc == 0) {
			rc = hello_send(s, p->guest, p->id, "destination");
			if (rc < 0) {
				snprintf(why, sizeof(why), "%s", mig_stream_errmsg(s));
			}
		}
		if (rc == 0) {
			*out = xfer_new(s, &o, p->guest, p->id);
			if (*out == NULL) {
				mig_stream_free(s);
				snprintf(err, errlen, "out of memory");
				return -ENOMEM;
			}
			qb_log(LOG_NOTICE, "migration %" PRIu64 " of %s: the source connected "
			       "from %s", p->id, p->guest, mig_stream_peer(s));
			return 0;
		}
		/* someone else, or the source with another key: wait on */
		qb_log(LOG_WARNING, "migration %" PRIu64 " of %s: refused a peer: %s", p->id,
		       p->guest, why);
		snprintf(last, sizeof(last), "%s", why);
		mig_stream_free(s);
	}
}

int agent_mig_connect(const struct agent_mig_params *p, const char *addr, uint16_t port,
		      struct agent_mig_xfer **out, char *err, size_t errlen)
{
	struct mig_stream *s = NULL;
	struct mig_opts o;
	int rc;

	*out = NULL;
	rc = opts_build(p, &o, err, errlen);
	if (rc < 0) {
		return rc;
	}
	rc = mig_connect(&o, addr, port, CONNECT_MS, &s, err, errlen);
	mig_key_wipe(&o.key);
	if (rc < 0) {
		return rc;
	}
	/* --bandwidth caps what the source sends */
	mig_stream_set_rate(s, p->rate);
	rc = hello_send(s, p->guest, p->id, "source");
	if (rc < 0) {
		snprintf(err, errlen, "%s", mig_stream_errmsg(s));
	} else {
		rc = hello_check(s, "destination", p->guest, p->id, err, errlen);
	}
	if (rc == 0) {
		*out = xfer_new(s, &o, p->guest, p->id);
		if (*out == NULL) {
			snprintf(err, errlen, "out of memory");
			rc = -ENOMEM;
		} else {
			qb_log(LOG_NOTICE, "migration %" PRIu64 " of %s: connected to the "
			       "destination at %s", p->id, p->guest, mig_stream_peer(s));
		}
	}
	if (rc < 0) {
		mig_stream_free(s);
	}
	return rc;
}

/* ---- the relay ---------------------------------------------------------- */

static void relay_done(struct agent_mig_xfer *x, bool *flag, bool failed)
{
	if (failed) {
		/* the driver's next read or write fails at once */
		atomic_store(&x->stop, true);
		shutdown(x->sp[0], SHUT_RDWR);
	}
	pthread_mutex_lock(&x->lock);
	*flag = true;
	pthread_cond_broadcast(&x->cond);
	pthread_mutex_unlock(&x->lock);
}

static bool wait_flag(struct agent_mig_xfer *x, bool *flag, uint64_t ms);

/*
 * The up direction could not send. When the connection was gone, the peer
 * may have closed it after an ABORT: the down thread reads it (the stream
 * lets it), and its reason is the migration's error, not "broken pipe".
 */
static void send_failed(struct agent_mig_xfer *x, int rc)
{
	if (rc == -EPIPE || rc == -ECONNRESET) {
		wait_flag(x, &x->down_done, PEER_ABORT_MS);
	}
	note_stream(x, rc);
}

static void *up_main(void *arg)
{
	struct agent_mig_xfer *x = arg;
	size_t cap = mig_stream_max_send(x->s);
	uint8_t *buf = malloc(cap);
	uint64_t last = now_ms();
	bool failed = true;

	if (buf == NULL) {
		note(x, -ENOMEM, "relay: out of memory");
		relay_done(x, &x->up_done, true);
		return NULL;
	}
	while (!atomic_load(&x->stop)) {
		struct pollfd p = { .fd = x->sp[0], .events = POLLIN };
		int r = poll(&p, 1, RELAY_SLICE_MS);
		ssize_t n;
		int rc;

		if (r < 0 && errno != EINTR) {
			note(x, -errno, "relay: poll: %s", strerror(errno));
			break;
		}
		if (r > 0) {
			n = read(x->sp[0], buf, cap);
			if (n > 0) {
				rc = mig_stream_send_chunk(x->s, MIG_CHUNK_DATA, 0, buf, (size_t)n);
				if (rc < 0) {
					send_failed(x, rc);
					break;
				}
				last = now_ms();
				continue;
			}
			if (n == 0) {
				/* the driver is done: all it wrote is out */
				rc = mig_stream_send_end(x->s);
				if (rc < 0) {
					send_failed(x, rc);
					break;
				}
				failed = false;
				break;
			}
			if (errno == EAGAIN || errno == EINTR) {
				continue;
			}
			note(x, -errno, "relay: reading the driver's socket: %s", strerror(errno));
			break;
		}
		if (now_ms() - last >= KEEPALIVE_MS) {
			rc = mig_stream_send_chunk(x->s, MIG_CHUNK_DATA, 0, NULL, 0);
			if (rc < 0) {
				send_failed(x, rc);
				break;
			}
			last = now_ms();
		}
	}
	free(buf);
	relay_done(x, &x->up_done, failed);
	return NULL;
}

/* Writes all of @buf to the driver; -EPIPE once the driver closed it. */
static int to_driver(struct agent_mig_xfer *x, const uint8_t *buf, size_t len)
{
	size_t off = 0;

	while (off < len) {
		struct pollfd p = { .fd = x->sp[0], .events = POLLOUT };
		ssize_t w = send(x->sp[0], buf + off, len - off, MSG_NOSIGNAL);

		if (w > 0) {
			off += (size_t)w;
			continue;
		}
		if (w < 0 && errno == EINTR) {
			continue;
		}
		if (w < 0 && errno != EAGAIN) {
			return -errno;
		}
		if (atomic_load(&x->stop)) {
			return -ECANCELED;
		}
		/* the driver reads when it is ready: no time limit here */
		poll(&p, 1, RELAY_SLICE_MS);
	}
	return 0;
}

static void *down_main(void *arg)
{
	struct agent_mig_xfer *x = arg;
	size_t cap = MIG_CHUNK_DEFAULT_LEN;
	uint8_t *buf = malloc(cap);
	bool failed = true, driver_gone = false;

	if (buf == NULL) {
		note(x, -ENOMEM, "relay: out of memory");
		relay_done(x, &x->down_done, true);
		return NULL;
	}
	for (;;) {
		struct mig_chunk_hdr h;
		ssize_t n = mig_stream_recv_chunk(x->s, &h, buf, cap);
		int rc;

		if (n < 0) {
			note_stream(x, (int)n);
			break;
		}
		if (h.type == MIG_CHUNK_END) {
			/* the peer's driver is done: so is what ours reads */
			shutdown(x->sp[0], SHUT_WR);
			failed = false;
			break;
		}
		if (h.type != MIG_CHUNK_DATA) {
			note(x, -EPROTO, "%s: a %s chunk inside the relayed stream",
			     mig_stream_peer(x->s), mig_chunk_type_str(h.type));
			mig_stream_abort(x->s, EPROTO, "a CONTROL chunk inside the relayed stream");
			break;
		}
		if (n == 0 || driver_gone) {
			continue; /* keepalive, or nobody reads any more */
		}
		rc = to_driver(x, buf, (size_t)n);
		if (rc == -EPIPE || rc == -ECONNRESET) {
			/* the driver returned: what it did not read is moot,
			 * its result says whether that matters */
			driver_gone = true;
		} else if (rc < 0) {
			if (rc != -ECANCELED) {
				note(x, rc, "relay: writing the driver's socket: %s", strerror(-rc));
			}
			break;
		}
	}
	free(buf);
	relay_done(x, &x->down_done, failed);
	return NULL;
}

int agent_mig_relay_start(struct agent_mig_xfer *x, int *driver_fd, char *err, size_t errlen)
{
	int rc;

	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, x->sp) < 0) {
		rc = -errno;
		snprintf(err, errlen, "relay: socketpair: %s", strerror(errno));
		x->sp[0] = x->sp[1] = -1;
		return rc;
	}
	if (fcntl(x->sp[0], F_SETFL, fcntl(x->sp[0], F_GETFL) | O_NONBLOCK) < 0) {
		rc = -errno;
		snprintf(err, errlen, "relay: %s", strerror(errno));
		return rc;
	}
	rc = pthread_create(&x->up, NULL, up_main, x);
	if (rc != 0) {
		snprintf(err, errlen, "relay: no thread: %s", strerror(rc));
		return -rc;
	}
	x->up_started = true;
	rc = pthread_create(&x->down, NULL, down_main, x);
	if (rc != 0) {
		snprintf(err, errlen, "relay: no thread: %s", strerror(rc));
		return -rc;
	}
	x->down_started = true;
	*driver_fd = x->sp[1];
	return 0;
}

/* Waits until *flag or @ms passed; true when set. */
static bool wait_flag(struct agent_mig_xfer *x, bool *flag, uint64_t ms)
{
	struct timespec ts;
	bool set;

	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += (time_t)(ms / 1000u);
	ts.tv_nsec += (long)(ms % 1000u) * 1000000L;
	if (ts.tv_nsec >= 1000000000L) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000L;
	}
	pthread_mutex_lock(&x->lock);
	while (!*flag) {
		if (pthread_cond_timedwait(&x->cond, &x->lock, &ts) == ETIMEDOUT) {
			break;
		}
	}
	set = *flag;
	pthread_mutex_unlock(&x->lock);
	return set;
}

/* Ends the relay threads; @cancel: they may still be running. */
static void relay_stop(struct agent_mig_xfer *x, bool cancel)
{
	if (cancel) {
		atomic_store(&x->stop, true);
		mig_stream_cancel(x->s);
		if (x->sp[0] >= 0) {
			shutdown(x->sp[0], SHUT_RDWR);
		}
	}
	if (x->up_started) {
		pthread_join(x->up, NULL);
		x->up_started = false;
	}
	if (x->down_started) {
		pthread_join(x->down, NULL);
		x->down_started = false;
	}
}

int agent_mig_finish(struct agent_mig_xfer *x, int driver_rc, const char *driver_err,
		     char *err, size_t errlen)
{
	uint64_t t0 = now_ms(), t_up = 0, t_peer = 0;
	struct mig_counters c;
	int rc;

	if (driver_rc == 0 && x->up_started) {
		/* what the driver wrote is in the socket: the up thread sends
		 * it, then END; the peer's END says its driver is done too.
		 * The driver reads nothing more: what still comes is dropped
		 * (writes to it fail) rather than waiting for a reader. */
		shutdown(x->sp[1], SHUT_RDWR);
		wait_flag(x, &x->up_done, UINT32_MAX);
		t_up = now_ms() - t0;
		if (!wait_flag(x, &x->down_done, PEER_END_MS)) {
			note(x, -ETIMEDOUT, "%s: the peer did not finish within %u s of this side",
			     mig_stream_peer(x->s), PEER_END_MS / 1000u);
		}
		t_peer = now_ms() - t0;
	} else if (driver_rc < 0) {
		note(x, driver_rc, "%s", driver_err && driver_err[0] ? driver_err :
		     strerror(-driver_rc));
	}
	pthread_mutex_lock(&x->lock);
	rc = x->err;
	pthread_mutex_unlock(&x->lock);
	if (rc < 0) {
		/* tell the peer why before the connection goes */
		mig_stream_abort(x->s, -rc, x->msg);
	}
	relay_stop(x, rc < 0);
	if (rc < 0) {
		snprintf(err, errlen, "%s", x->msg);
	}
	mig_stream_counters(x->s, &c);
	qb_log(LOG_INFO, "migration %" PRIu64 " of %s: stream to %s done (%s): %" PRIu64
	       " bytes sent, %" PRIu64 " received in %" PRIu64 " ms; after the driver, "
	       "%" PRIu64 " ms to END, %" PRIu64 " ms to the peer's END, %" PRIu64 " ms in all",
	       x->id, x->guest, mig_stream_peer(x->s), rc < 0 ? x->msg : "ok", c.payload_sent,
	       c.payload_recv, c.elapsed_ms, t_up, t_peer, now_ms() - t0);
	return rc;
}

void agent_mig_cancel(struct agent_mig_xfer *x)
{
	note(x, -ECANCELED, "cancelled: the cluster aborted the migration");
	atomic_store(&x->stop, true);
	mig_stream_cancel(x->s);
	if (x->sp[0] >= 0) {
		shutdown(x->sp[0], SHUT_RDWR);
	}
}

void agent_mig_counters(const struct agent_mig_xfer *x, struct mig_counters *c)
{
	mig_stream_counters(x->s, c);
}

const char *agent_mig_cipher(const struct agent_mig_xfer *x)
{
	return mig_stream_cipher(x->s);
}

const char *agent_mig_transport(const struct agent_mig_xfer *x)
{
	return x->transport;
}

void agent_mig_free(struct agent_mig_xfer *x)
{
	if (x == NULL) {
		return;
	}
	relay_stop(x, true);
	mig_stream_free(x->s);
	for (int i = 0; i < 2; i++) {
		if (x->sp[i] >= 0) {
			close(x->sp[i]);
		}
	}
	pthread_mutex_destroy(&x->lock);
	pthread_cond_destroy(&x->cond);
	free(x);
}
