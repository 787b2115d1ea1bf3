/*
 * xfer_tcp.c - the TCP transport: non-blocking sockets with poll, TLS
 * through GnuTLS with the cluster key as pre-shared key (identity
 * MIG_PSK_IDENTITY), or plain where encryption is switched off.
 *
 * TLS: 1.3 preferred, 1.2 accepted; (EC)DHE-PSK first for forward
 * secrecy; AES-GCM (MIG_TLS_PRIORITY). The connecting side is the TLS
 * client. A wrong key fails the handshake on both sides (-EKEYREJECTED).
 *
 * GnuTLS reads a record in two recv() calls (header, body) and writes
 * each 16 KiB record with its own send(): about 200 000 system calls per
 * GiB. Our transport functions batch them through TLS_IOBUF buffers, one
 * recv() or send() per many records (a third less CPU time per byte on
 * loopback, see bench/README.md). Sent records are flushed at the end of
 * every tcp_send() and after any receive that made GnuTLS answer (a TLS
 * 1.3 key update), so nothing waits in the buffer.
 *
 * One thread may send while another receives (GnuTLS allows one
 * gnutls_record_send() and one gnutls_record_recv() at a time on a
 * session). The write buffer is the only state both may touch: the
 * receiving thread writes into it when GnuTLS answers a record, so it is
 * guarded by wlock. The read-ahead buffer belongs to the receiver.
 */
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <gnutls/gnutls.h>

#include "mig_private.h"

#define TCP_BACKLOG 16
#define TLS_BYE_TIMEOUT_MS 200
#define LINGER_MS 2000u          /* a closing side waits for the peer's FIN */
#define TLS_IOBUF (256u * 1024u)

struct tcp_conn {
	int fd;
	struct mig_stream *s;
	gnutls_session_t tls;
	gnutls_psk_client_credentials_t ccred;
	gnutls_psk_server_credentials_t scred;
	bool buffered_push; /* after the handshake */
	int io_errno;       /* of the last failed recv() or send() */
	/* The connection is gone for sending (EPIPE, ECONNRESET). GnuTLS is
	 * not told: a push error would end the session for reading too, and
	 * what the peer sent before it closed (an ABORT) must still be read.
	 * What it pushes after that is dropped; tls_send() fails instead.
	 * Under wlock. */
	int send_dead;
	uint8_t *rbuf;      /* ciphertext read ahead: rbuf[roff..rlen) */
	size_t roff, rlen;
	pthread_mutex_t wlock; /* wbuf and wlen */
	uint8_t *wbuf;      /* ciphertext not sent yet: wbuf[0..wlen) */
	size_t wlen;
};

struct tcp_listener {
	int fd;
	uint16_t port;
};

static void addr_str(const struct sockaddr *sa, char *buf, size_t len)
{
	char host[INET6_ADDRSTRLEN] = "?";
	unsigned port = 0;

	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *in = (const void *)sa;

		inet_ntop(AF_INET, &in->sin_addr, host, sizeof(host));
		port = ntohs(in->sin_port);
		snprintf(buf, len, "%s:%u", host, port);
	} else if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *in6 = (const void *)sa;

		inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof(host));
		port = ntohs(in6->sin6_port);
		snprintf(buf, len, "[%s]:%u", host, port);
	} else {
		snprintf(buf, len, "?");
	}
}

/* Large buffers where asked: the FORCE variants pass rmem_max/wmem_max
 * (root, as the agent runs); the plain ones are capped by them. */
static void set_bufs(int fd, uint32_t bytes)
{
	int v = (int)(bytes > INT32_MAX / 2 ? INT32_MAX / 2 : bytes);

	if (bytes == 0) {
		return;
	}
	if (setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &v, sizeof(v)) < 0) {
		setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &v, sizeof(v));
	}
	if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &v, sizeof(v)) < 0) {
		setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &v, sizeof(v));
	}
}

static void set_nodelay(int fd)
{
	int one = 1;

	/* Headers and payload go in one writev; nothing to coalesce. */
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

/*
 * After the handshake the socket blocks, for at most a wait slice per
 * call (SO_RCVTIMEO, SO_SNDTIMEO): a payload arrives in one
 * recv(MSG_WAITALL) and goes out in one sendmsg(), without a poll() and a
 * wake-up per segment in between; a call that times out returns EAGAIN
 * and the caller looks at the cancel flag and its own timeout.
 */
static int set_blocking_sliced(int fd)
{
	struct timeval tv = { .tv_sec = 0, .tv_usec = MIG_WAIT_SLICE_MS * 1000 };
	int fl = fcntl(fd, F_GETFL);

	if (fl < 0 || fcntl(fd, F_SETFL, fl & ~O_NONBLOCK) < 0 ||
	    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) < 0 ||
	    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)) < 0) {
		return -errno;
	}
	return 0;
}

/* ---- TLS transport functions -------------------------------------------- */

static ssize_t tls_pull(gnutls_transport_ptr_t p, void *buf, size_t len)
{
	struct tcp_conn *c = p;
	size_t n;

	if (c->roff == c->rlen) {
		ssize_t r = recv(c->fd, c->rbuf, TLS_IOBUF, 0);

		if (r < 0) {
			c->io_errno = errno;
			gnutls_transport_set_errno(c->tls, errno);
			return -1;
		}
		c->roff = 0;
		c->rlen = (size_t)r;
		if (r == 0) {
			return 0;
		}
	}
	n = c->rlen - c->roff < len ? c->rlen - c->roff : len;
	memcpy(buf, c->rbuf + c->roff, n);
	c->roff += n;
	return (ssize_t)n;
}

static int tls_pull_timeout(gnutls_transport_ptr_t p, unsigned int ms)
{
	struct tcp_conn *c = p;
	int rc;

	if (c->roff < c->rlen) {
		return 1;
	}
	rc = mig_wait_fd(c->fd, POLLIN,
			 ms == GNUTLS_INDEFINITE_TIMEOUT ? -1 : (int)ms);
	if (rc == -ETIMEDOUT) {
		return 0;
	}
	return rc == 0 ? 1 : -1;
}

/* Sends what the buffer holds, waiting as the stream allows. The caller
 * holds wlock. */
static int tls_flush_locked(struct tcp_conn *c)
{
	size_t off = 0;

	while (off < c->wlen) {
		ssize_t w = send(c->fd, c->wbuf + off, c->wlen - off, MSG_NOSIGNAL);
		int rc;

		if (w > 0) {
			off += (size_t)w;
			continue;
		}
		if (w < 0 && errno == EINTR) {
			continue;
		}
		if (w < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
			c->io_errno = errno;
			if (errno == EPIPE || errno == ECONNRESET) {
				c->send_dead = errno;
				c->wlen = 0;
			}
			return -errno;
		}
		rc = mig_stream_wait_fd(c->s, c->fd, POLLOUT, "sending");
		if (rc < 0) {
			c->io_errno = -rc;
			return rc;
		}
	}
	c->wlen = 0;
	return 0;
}

static int tls_flush(struct tcp_conn *c)
{
	int rc;

	pthread_mutex_lock(&c->wlock);
	rc = tls_flush_locked(c);
	pthread_mutex_unlock(&c->wlock);
	return rc;
}

/*
 * The receiving thread's flush of what GnuTLS answered. When the sending
 * thread holds the lock it is in tls_push() (and flushes at the end of its
 * tls_send()) or in a flush that started after our answer went into the
 * buffer: either way the answer goes out without us.
 */
static int tls_flush_from_recv(struct tcp_conn *c)
{
	int rc = 0;

	if (pthread_mutex_trylock(&c->wlock) != 0) {
		return 0;
	}
	if (c->wlen > 0) {
		rc = tls_flush_locked(c);
	}
	pthread_mutex_unlock(&c->wlock);
	return rc;
}

static ssize_t tls_push_locked(struct tcp_conn *c, const giovec_t *iov, int n)
{
	size_t total = 0;

	for (int i = 0; i < n; i++) {
		total += iov[i].iov_len;
	}
	if (c->send_dead) {
		return (ssize_t)total; /* dropped: see send_dead */
	}
	if (!c->buffered_push) {
		/* The handshake: straight out, as GnuTLS would. */
		struct msghdr mh = { .msg_iov = (struct iovec *)iov,
				     .msg_iovlen = (size_t)n };
		ssize_t w = sendmsg(c->fd, &mh, MSG_NOSIGNAL);

		if (w < 0) {
			c->io_errno = errno;
			gnutls_transport_set_errno(c->tls, errno);
		}
		return w;
	}
	if (c->wlen + total > TLS_IOBUF && tls_flush_locked(c) < 0) {
		if (c->send_dead) {
			return (ssize_t)total;
		}
		gnutls_transport_set_errno(c->tls, EIO);
		return -1;
	}
	if (total > TLS_IOBUF) {
		/* never for records of 16 KiB; kept correct anyway */
		for (int i = 0; i < n; i++) {
			size_t off = 0;

			while (off < iov[i].iov_len) {
				size_t k = iov[i].iov_len - off;

				if (k > TLS_IOBUF) {
					k = TLS_IOBUF;
				}
				memcpy(c->wbuf, (const uint8_t *)iov[i].iov_base + off, k);
				c->wlen = k;
				off += k;
				if (tls_flush_locked(c) < 0) {
					if (c->send_dead) {
						return (ssize_t)total;
					}
					gnutls_transport_set_errno(c->tls, EIO);
					return -1;
				}
			}
		}
		return (ssize_t)total;
	}
	for (int i = 0; i < n; i++) {
		memcpy(c->wbuf + c->wlen, iov[i].iov_base, iov[i].iov_len);
		c->wlen += iov[i].iov_len;
	}
	return (ssize_t)total;
}

static ssize_t tls_push(gnutls_transport_ptr_t p, const giovec_t *iov, int n)
{
	struct tcp_conn *c = p;
	ssize_t rc;

	pthread_mutex_lock(&c->wlock);
	rc = tls_push_locked(c, iov, n);
	pthread_mutex_unlock(&c->wlock);
	return rc;
}

/* ---- TLS ---------------------------------------------------------------- */

static int psk_server_key(gnutls_session_t session, const gnutls_datum_t *user,
			  gnutls_datum_t *key)
{
	const struct mig_stream *s = gnutls_session_get_ptr(session);

	if (user->size != sizeof(MIG_PSK_IDENTITY) - 1 ||
	    memcmp(user->data, MIG_PSK_IDENTITY, user->size) != 0) {
		return -1;
	}
	key->data = gnutls_malloc(sizeof(s->opts.key.psk));
	if (key->data == NULL) {
		return -1;
	}
	memcpy(key->data, s->opts.key.psk, sizeof(s->opts.key.psk));
	key->size = sizeof(s->opts.key.psk);
	return 0;
}

/* A handshake failure that a different key explains. */
static bool tls_key_error(int rc, gnutls_alert_description_t alert)
{
	switch (rc) {
	case GNUTLS_E_DECRYPTION_FAILED:
	/* what a TLS 1.3 server says when the PSK binder does not match */
	case GNUTLS_E_RECEIVED_ILLEGAL_PARAMETER:
	case GNUTLS_E_BAD_COOKIE:
	case GNUTLS_E_INSUFFICIENT_CREDENTIALS:
		return true;
	case GNUTLS_E_FATAL_ALERT_RECEIVED:
		return alert == GNUTLS_A_DECRYPT_ERROR ||
		       alert == GNUTLS_A_BAD_RECORD_MAC ||
		       alert == GNUTLS_A_UNKNOWN_PSK_IDENTITY ||
		       alert == GNUTLS_A_ILLEGAL_PARAMETER;
	default:
		return false;
	}
}

/* A handshake failure because the peer does not speak TLS. */
static bool tls_plain_peer(int rc)
{
	return rc == GNUTLS_E_UNEXPECTED_PACKET_LENGTH ||
	       rc == GNUTLS_E_UNEXPECTED_PACKET ||
	       rc == GNUTLS_E_UNSUPPORTED_VERSION_PACKET ||
	       rc == GNUTLS_E_UNEXPECTED_HANDSHAKE_PACKET;
}

static int tls_start(struct mig_stream *s, struct tcp_conn *c, int timeout_ms,
		     char *err, size_t errlen)
{
	const char *prio = s->opts.tls_priority ? s->opts.tls_priority
						: MIG_TLS_PRIORITY;
	gnutls_datum_t key = { .data = s->opts.key.psk,
			       .size = sizeof(s->opts.key.psk) };
	const char *errpos = NULL;
	char why[128];
	uint64_t deadline = mig_now_us() / 1000u + (uint64_t)timeout_ms;
	int rc;

	rc = gnutls_init(&c->tls, (s->is_server ? GNUTLS_SERVER : GNUTLS_CLIENT) |
					  GNUTLS_NONBLOCK | GNUTLS_NO_SIGNAL);
	if (rc < 0) {
		c->tls = NULL;
		goto gnutls_fail;
	}
	gnutls_session_set_ptr(c->tls, s);
	if (s->is_server) {
		rc = gnutls_psk_allocate_server_credentials(&c->scred);
		if (rc < 0) {
			c->scred = NULL;
			goto gnutls_fail;
		}
		gnutls_psk_set_server_credentials_function2(c->scred,
							    psk_server_key);
		rc = gnutls_credentials_set(c->tls, GNUTLS_CRD_PSK, c->scred);
	} else {
		rc = gnutls_psk_allocate_client_credentials(&c->ccred);
		if (rc < 0) {
			c->ccred = NULL;
			goto gnutls_fail;
		}
		rc = gnutls_psk_set_client_credentials(c->ccred, MIG_PSK_IDENTITY,
						       &key, GNUTLS_PSK_KEY_RAW);
		if (rc >= 0) {
			rc = gnutls_credentials_set(c->tls, GNUTLS_CRD_PSK,
						    c->ccred);
		}
	}
	if (rc < 0) {
		goto gnutls_fail;
	}
	rc = gnutls_priority_set_direct(c->tls, prio, &errpos);
	if (rc < 0) {
		mig_set_err(err, errlen, "TLS priority \"%s\" at \"%s\": %s", prio,
			    errpos ? errpos : "", gnutls_strerror(rc));
		return -EINVAL;
	}
	c->rbuf = malloc(TLS_IOBUF);
	c->wbuf = malloc(TLS_IOBUF);
	if (c->rbuf == NULL || c->wbuf == NULL) {
		mig_set_err(err, errlen, "out of memory");
		return -ENOMEM;
	}
	c->s = s;
	gnutls_transport_set_ptr(c->tls, c);
	gnutls_transport_set_pull_function(c->tls, tls_pull);
	gnutls_transport_set_pull_timeout_function(c->tls, tls_pull_timeout);
	gnutls_transport_set_vec_push_function(c->tls, tls_push);

	for (;;) {
		uint64_t now = mig_now_us() / 1000u;

		rc = gnutls_handshake(c->tls);
		if (rc == 0) {
			break;
		}
		if (rc == GNUTLS_E_AGAIN || rc == GNUTLS_E_INTERRUPTED) {
			short ev = gnutls_record_get_direction(c->tls) ? POLLOUT
								       : POLLIN;
			uint64_t left = deadline - now;
			int w;

			/* in slices: a listener that closes cancels the
			 * handshakes it still runs */
			if (left > MIG_WAIT_SLICE_MS) {
				left = MIG_WAIT_SLICE_MS;
			}
			w = now >= deadline ? -ETIMEDOUT : mig_wait_fd(c->fd, ev, (int)left);
			if (w == -ETIMEDOUT && now < deadline) {
				w = atomic_load(&s->cancel) ? -ECANCELED : 0;
			}
			if (w < 0) {
				mig_set_err(err, errlen, "%s: TLS handshake: %s",
					    s->peer, strerror(-w));
				return w;
			}
			continue;
		}
		if (!gnutls_error_is_fatal(rc)) {
			continue;
		}
		/* Tell the peer why, so that it does not only see a close. */
		gnutls_alert_send_appropriate(c->tls, rc);
		if (rc == GNUTLS_E_FATAL_ALERT_RECEIVED) {
			snprintf(why, sizeof(why), "the peer sent alert \"%s\"",
				 gnutls_alert_get_name(gnutls_alert_get(c->tls)));
		} else {
			snprintf(why, sizeof(why), "%s", gnutls_strerror(rc));
		}
		if (tls_key_error(rc, gnutls_alert_get(c->tls))) {
			mig_set_err(err, errlen,
				    "%s: TLS handshake failed (%s): the peer has "
				    "another cluster key",
				    s->peer, why);
			return -EKEYREJECTED;
		}
		if (tls_plain_peer(rc)) {
			mig_set_err(err, errlen,
				    "%s: TLS handshake failed (%s): the peer does "
				    "not speak TLS (encrypt = false there?)",
				    s->peer, why);
			return -EPROTO;
		}
		mig_set_err(err, errlen, "%s: TLS handshake failed (%s)", s->peer,
			    why);
		return rc == GNUTLS_E_PREMATURE_TERMINATION ||
				       rc == GNUTLS_E_PULL_ERROR ||
				       rc == GNUTLS_E_PUSH_ERROR
			       ? -ECONNRESET
			       : -EPROTO;
	}
	c->buffered_push = true;
	s->encrypted = true;
	snprintf(s->cipher, sizeof(s->cipher), "%s %s",
		 gnutls_protocol_get_name(gnutls_protocol_get_version(c->tls)),
		 gnutls_cipher_get_name(gnutls_cipher_get(c->tls)));
	return 0;

gnutls_fail:
	mig_set_err(err, errlen, "%s: TLS setup: %s", s->peer,
		    gnutls_strerror(rc));
	return -EIO;
}

static void conn_free(struct tcp_conn *c, bool linger)
{
	if (c == NULL) {
		return;
	}
	if (c->tls != NULL) {
		gnutls_deinit(c->tls);
	}
	if (c->ccred != NULL) {
		gnutls_psk_free_client_credentials(c->ccred);
	}
	if (c->scred != NULL) {
		gnutls_psk_free_server_credentials(c->scred);
	}
	free(c->rbuf);
	free(c->wbuf);
	pthread_mutex_destroy(&c->wlock);
	if (c->fd >= 0) {
		/* Unread bytes make close() send a reset, and a reset makes
		 * the peer's kernel drop what it has not delivered yet: what
		 * we sent last (a TLS alert, an ABORT) could be lost. End
		 * with a FIN and take what is there. With @linger (the peer
		 * had not ended its side: it may still be sending), read and
		 * drop what it sends until it closes too (it stops once it
		 * reads our END or ABORT), for at most LINGER_MS. */
		uint8_t junk[16384];
		uint64_t until = mig_now_us() + (linger ? LINGER_MS * 1000u : 0);

		shutdown(c->fd, SHUT_WR);
		for (int budget = 64; budget > 0;) {
			ssize_t r = recv(c->fd, junk, sizeof(junk), MSG_DONTWAIT);
			uint64_t now;

			if (r > 0 || (r < 0 && errno == EINTR)) {
				budget -= !linger;
				continue;
			}
			now = mig_now_us();
			if (r == 0 || errno != EAGAIN || now >= until ||
			    mig_wait_fd(c->fd, POLLIN,
					(int)((until - now + 999u) / 1000u)) < 0) {
				break;
			}
		}
		close(c->fd);
	}
	free(c);
}

static struct tcp_conn *conn_new(int fd)
{
	struct tcp_conn *c = calloc(1, sizeof(*c));

	if (c == NULL) {
		return NULL;
	}
	c->fd = fd;
	pthread_mutex_init(&c->wlock, NULL);
	return c;
}

/* Socket set up: TLS when asked. On failure frees @c. */
static int conn_start(struct mig_stream *s, struct tcp_conn *c, int timeout_ms,
		      char *err, size_t errlen)
{
	int rc = 0;

	set_nodelay(c->fd);
	if (s->opts.encrypt) {
		rc = tls_start(s, c, timeout_ms, err, errlen);
	}
	if (rc == 0) {
		rc = set_blocking_sliced(c->fd);
		if (rc < 0) {
			mig_set_err(err, errlen, "%s: socket options: %s", s->peer,
				    strerror(-rc));
		}
	}
	if (rc < 0) {
		conn_free(c, false);
		return rc;
	}
	s->priv = c;
	return 0;
}

/* ---- listener ----------------------------------------------------------- */

static int tcp_listen(struct mig_listener *l, const char *addr, uint16_t port,
		      char *err, size_t errlen)
{
	struct addrinfo hints = {
		.ai_socktype = SOCK_STREAM,
		.ai_flags = AI_PASSIVE | AI_NUMERICSERV,
	};
	struct addrinfo *res = NULL, *ai;
	struct tcp_listener *t;
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	char portstr[8];
	int fd = -1, rc, e = 0;

	if (addr != NULL && (addr[0] == '\0' || strcmp(addr, "*") == 0)) {
		addr = NULL;
	}
	snprintf(portstr, sizeof(portstr), "%u", port);
	/* Every address: IPv6 with IPv4 mapped first, IPv4 alone if that is
	 * unavailable (a namespace without IPv6). */
	hints.ai_family = addr == NULL ? AF_INET6 : AF_UNSPEC;
	rc = getaddrinfo(addr, portstr, &hints, &res);
	if (rc != 0 && addr == NULL) {
		hints.ai_family = AF_INET;
		rc = getaddrinfo(addr, portstr, &hints, &res);
	}
	if (rc != 0) {
		mig_set_err(err, errlen, "listen on %s:%u: %s", addr ? addr : "*",
			    port, gai_strerror(rc));
		return -EINVAL;
	}
	for (ai = res; ai != NULL && fd < 0; ai = ai->ai_next) {
		int one = 1, zero = 0;

		fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK,
			    ai->ai_protocol);
		if (fd < 0) {
			e = errno;
			continue;
		}
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		if (ai->ai_family == AF_INET6 && addr == NULL) {
			setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero,
				   sizeof(zero));
		}
		/* Accepted sockets inherit them, window scaling included. */
		set_bufs(fd, l->opts.sockbuf);
		if (bind(fd, ai->ai_addr, ai->ai_addrlen) < 0 ||
		    listen(fd, TCP_BACKLOG) < 0) {
			e = errno;
			close(fd);
			fd = -1;
		}
	}
	freeaddrinfo(res);
	if (fd < 0 && addr == NULL && hints.ai_family == AF_INET6) {
		/* IPv6 resolved but not usable here: IPv4 alone. */
		struct sockaddr_in in = { .sin_family = AF_INET,
					  .sin_port = htons(port),
					  .sin_addr.s_addr = htonl(INADDR_ANY) };
		int one = 1;

		fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
		if (fd >= 0) {
			setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
			set_bufs(fd, l->opts.sockbuf);
			if (bind(fd, (struct sockaddr *)&in, sizeof(in)) < 0 ||
			    listen(fd, TCP_BACKLOG) < 0) {
				e = errno;
				close(fd);
				fd = -1;
			}
		} else {
			e = errno;
		}
	}
	if (fd < 0) {
		mig_set_err(err, errlen, "listen on %s:%u: %s", addr ? addr : "*",
			    port, strerror(e ? e : EADDRNOTAVAIL));
		return e ? -e : -EADDRNOTAVAIL;
	}
	t = calloc(1, sizeof(*t));
	if (t == NULL) {
		close(fd);
		mig_set_err(err, errlen, "out of memory");
		return -ENOMEM;
	}
	t->fd = fd;
	t->port = port;
	if (getsockname(fd, (struct sockaddr *)&ss, &sl) == 0) {
		t->port = ntohs(ss.ss_family == AF_INET6
					? ((struct sockaddr_in6 *)&ss)->sin6_port
					: ((struct sockaddr_in *)&ss)->sin_port);
	}
	l->priv = t;
	return 0;
}

static int tcp_accept(struct mig_listener *l, int timeout_ms,
		      struct mig_stream *s, char *err, size_t errlen)
{
	struct tcp_listener *t = l->priv;
	struct sockaddr_storage ss;
	socklen_t sl;
	struct tcp_conn *c;
	uint64_t deadline = mig_now_us() / 1000u + (uint64_t)timeout_ms;
	int fd, rc;

	for (;;) {
		sl = sizeof(ss);
		fd = accept4(t->fd, (struct sockaddr *)&ss, &sl,
			     SOCK_CLOEXEC | SOCK_NONBLOCK);
		if (fd >= 0) {
			break;
		}
		if (errno == EINTR || errno == ECONNABORTED) {
			continue;
		}
		if (errno != EAGAIN && errno != EWOULDBLOCK) {
			rc = -errno;
			mig_set_err(err, errlen, "accept on port %u: %s", t->port,
				    strerror(errno));
			return rc;
		}
		if (timeout_ms < 0) {
			rc = mig_wait_fd(t->fd, POLLIN, -1);
		} else {
			uint64_t now = mig_now_us() / 1000u;

			rc = now >= deadline
				     ? -ETIMEDOUT
				     : mig_wait_fd(t->fd, POLLIN, (int)(deadline - now));
		}
		if (rc < 0) {
			mig_set_err(err, errlen, "accept on port %u: %s", t->port,
				    rc == -ETIMEDOUT ? "no peer came" : strerror(-rc));
			return rc;
		}
	}
	addr_str((struct sockaddr *)&ss, s->peer, sizeof(s->peer));
	c = conn_new(fd);
	if (c == NULL) {
		close(fd);
		mig_set_err(err, errlen, "out of memory");
		return -ENOMEM;
	}
	/* The handshake of an accepted peer is bounded by the I/O timeout,
	 * not by how long we waited for it. */
	return conn_start(s, c, (int)s->opts.io_timeout_ms, err, errlen);
}

static int tcp_listener_fd(const struct mig_listener *l)
{
	const struct tcp_listener *t = l->priv;

	return t != NULL ? t->fd : -1;
}

static uint16_t tcp_listener_port(const struct mig_listener *l)
{
	const struct tcp_listener *t = l->priv;

	return t != NULL ? t->port : 0;
}

static void tcp_listener_close(struct mig_listener *l)
{
	struct tcp_listener *t = l->priv;

	if (t != NULL) {
		close(t->fd);
		free(t);
		l->priv = NULL;
	}
}

/* ---- connect ------------------------------------------------------------ */

static int connect_one(const struct addrinfo *ai, uint32_t sockbuf,
		       uint64_t deadline, int *out)
{
	socklen_t sl = sizeof(int);
	int fd, so_err = 0, rc;
	uint64_t now;

	fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK,
		    ai->ai_protocol);
	if (fd < 0) {
		return -errno;
	}
	set_bufs(fd, sockbuf);
	if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0) {
		*out = fd;
		return 0;
	}
	if (errno != EINPROGRESS) {
		rc = -errno;
		close(fd);
		return rc;
	}
	now = mig_now_us() / 1000u;
	rc = now >= deadline ? -ETIMEDOUT
			     : mig_wait_fd(fd, POLLOUT, (int)(deadline - now));
	if (rc == 0 && getsockopt(fd, SOL_SOCKET, SO_ERROR, &so_err, &sl) < 0) {
		rc = -errno;
	}
	if (rc == 0 && so_err != 0) {
		rc = -so_err;
	}
	if (rc < 0) {
		close(fd);
		return rc;
	}
	*out = fd;
	return 0;
}

static int tcp_connect(struct mig_stream *s, const char *addr, uint16_t port,
		       int timeout_ms, char *err, size_t errlen)
{
	struct addrinfo hints = {
		.ai_family = AF_UNSPEC,
		.ai_socktype = SOCK_STREAM,
		.ai_flags = AI_NUMERICSERV,
	};
	struct addrinfo *res = NULL, *ai;
	struct tcp_conn *c;
	char portstr[8];
	uint64_t start = mig_now_us() / 1000u, deadline, now;
	int fd = -1, rc = -EADDRNOTAVAIL;

	if (timeout_ms < 0) {
		timeout_ms = INT32_MAX;
	}
	deadline = start + (uint64_t)timeout_ms;
	snprintf(portstr, sizeof(portstr), "%u", port);
	snprintf(s->peer, sizeof(s->peer), "%s:%u", addr, port);
	rc = getaddrinfo(addr, portstr, &hints, &res);
	if (rc != 0) {
		mig_set_err(err, errlen, "%s: %s", s->peer, gai_strerror(rc));
		return -EHOSTUNREACH;
	}
	rc = -EADDRNOTAVAIL;
	for (ai = res; ai != NULL && fd < 0; ai = ai->ai_next) {
		rc = connect_one(ai, s->opts.sockbuf, deadline, &fd);
		if (rc == 0) {
			addr_str(ai->ai_addr, s->peer, sizeof(s->peer));
		}
	}
	freeaddrinfo(res);
	if (fd < 0) {
		mig_set_err(err, errlen, "connect to %s: %s", s->peer,
			    strerror(-rc));
		return rc;
	}
	c = conn_new(fd);
	if (c == NULL) {
		close(fd);
		mig_set_err(err, errlen, "out of memory");
		return -ENOMEM;
	}
	now = mig_now_us() / 1000u;
	return conn_start(s, c, now >= deadline ? 0 : (int)(deadline - now), err,
			  errlen);
}

/* ---- I/O ---------------------------------------------------------------- */

static int plain_send(struct mig_stream *s, struct tcp_conn *c,
		      const struct iovec *in, int iovcnt)
{
	struct iovec iov[4];
	struct msghdr mh = { .msg_iov = iov };
	int n = 0;

	if (iovcnt > (int)(sizeof(iov) / sizeof(iov[0]))) {
		return -EINVAL;
	}
	for (int i = 0; i < iovcnt; i++) {
		if (in[i].iov_len > 0) {
			iov[n++] = in[i];
		}
	}
	mh.msg_iovlen = (size_t)n;
	while (mh.msg_iovlen > 0) {
		ssize_t w = sendmsg(c->fd, &mh, MSG_NOSIGNAL);

		if (w < 0) {
			int rc;

			if (errno == EINTR) {
				continue;
			}
			if (errno != EAGAIN && errno != EWOULDBLOCK) {
				return -errno;
			}
			rc = mig_stream_wait_fd(s, c->fd, POLLOUT, "sending");
			if (rc < 0) {
				return rc;
			}
			continue;
		}
		/* Skip what went out. */
		while (mh.msg_iovlen > 0 && (size_t)w >= mh.msg_iov[0].iov_len) {
			w -= (ssize_t)mh.msg_iov[0].iov_len;
			mh.msg_iov++;
			mh.msg_iovlen--;
		}
		if (mh.msg_iovlen > 0) {
			mh.msg_iov[0].iov_base = (uint8_t *)mh.msg_iov[0].iov_base + w;
			mh.msg_iov[0].iov_len -= (size_t)w;
		}
	}
	return 0;
}

/* A failed TLS call: the stream's error (a wait may have set it), else
 * what GnuTLS or the socket said. */
static int tls_io_fail(struct mig_stream *s, struct tcp_conn *c, int grc,
		       const char *what)
{
	if (c->io_errno != 0 && (grc == GNUTLS_E_PUSH_ERROR ||
				 grc == GNUTLS_E_PULL_ERROR)) {
		return mig_stream_fail(s, -c->io_errno, true, "TLS %s: %s", what,
				       strerror(c->io_errno));
	}
	return mig_stream_fail(s, -ECONNRESET, true, "TLS %s: %s", what,
			       gnutls_strerror(grc));
}

static int tls_send(struct mig_stream *s, struct tcp_conn *c,
		    const struct iovec *iov, int iovcnt)
{
	int rc;

	for (int i = 0; i < iovcnt; i++) {
		const uint8_t *p = iov[i].iov_base;
		size_t left = iov[i].iov_len;

		while (left > 0) {
			ssize_t w = gnutls_record_send(c->tls, p, left);
			int dead;

			pthread_mutex_lock(&c->wlock);
			dead = c->send_dead;
			pthread_mutex_unlock(&c->wlock);
			if (dead) {
				return mig_stream_fail(s, -dead, true, "TLS send: %s",
						       strerror(dead));
			}
			if (w > 0) {
				p += w;
				left -= (size_t)w;
				continue;
			}
			if (w == GNUTLS_E_AGAIN || w == GNUTLS_E_INTERRUPTED) {
				/* Called again with the same data. */
				rc = mig_stream_wait_fd(s, c->fd, POLLOUT, "sending");
				if (rc < 0) {
					return rc;
				}
				continue;
			}
			return tls_io_fail(s, c, (int)w, "send");
		}
	}
	rc = tls_flush(c);
	if (rc < 0) {
		return tls_io_fail(s, c, GNUTLS_E_PUSH_ERROR, "send");
	}
	return 0;
}

static int tcp_send(struct mig_stream *s, const struct iovec *iov, int iovcnt)
{
	struct tcp_conn *c = s->priv;
	int rc;

	if (c == NULL) {
		return -ENOTCONN;
	}
	if (c->tls != NULL) {
		return tls_send(s, c, iov, iovcnt);
	}
	rc = plain_send(s, c, iov, iovcnt);
	if (rc < 0 && s->err == 0) {
		return mig_stream_fail(s, rc, true, "send: %s", strerror(-rc));
	}
	return rc;
}

static ssize_t tcp_recv(struct mig_stream *s, void *buf, size_t len)
{
	struct tcp_conn *c = s->priv;

	if (c == NULL) {
		return -ENOTCONN;
	}
	for (;;) {
		ssize_t n;
		int rc;

		if (c->tls != NULL) {
			n = gnutls_record_recv(c->tls, buf, len);
			if (tls_flush_from_recv(c) < 0) {
				/* GnuTLS answered something (key update) */
				return tls_io_fail(s, c, GNUTLS_E_PUSH_ERROR,
						   "send");
			}
			if (n >= 0) {
				return n;
			}
			if (n == GNUTLS_E_PREMATURE_TERMINATION) {
				return 0; /* closed without close_notify */
			}
			if (n != GNUTLS_E_AGAIN && n != GNUTLS_E_INTERRUPTED &&
			    gnutls_error_is_fatal((int)n)) {
				return tls_io_fail(s, c, (int)n, "receive");
			}
			if (n != GNUTLS_E_AGAIN) {
				continue;
			}
		} else {
			n = recv(c->fd, buf, len, MSG_WAITALL);
			if (n >= 0) {
				return n;
			}
			if (errno == EINTR) {
				continue;
			}
			if (errno != EAGAIN && errno != EWOULDBLOCK) {
				return mig_stream_fail(s, -errno, true,
						       "receive: %s",
						       strerror(errno));
			}
		}
		rc = mig_stream_wait_fd(s, c->fd, POLLIN, "receiving");
		if (rc < 0) {
			return rc;
		}
	}
}

static void tcp_close(struct mig_stream *s)
{
	struct tcp_conn *c = s->priv;

	if (c == NULL) {
		return;
	}
	if (c->tls != NULL && !s->broken) {
		/* close_notify, best effort and bounded by
		 * TLS_BYE_TIMEOUT_MS; the peer's answer is not awaited. */
		atomic_store(&s->send_timeout_ms, TLS_BYE_TIMEOUT_MS);
		if (gnutls_bye(c->tls, GNUTLS_SHUT_WR) == 0) {
			tls_flush(c);
		}
	}
	/* A peer that has not ended its side may still be sending. */
	conn_free(c, !s->end_received);
	s->priv = NULL;
}

const struct mig_xfer_ops mig_xfer_tcp = {
	.name = "tcp",
	.accept_parallel = 8,
	.listen = tcp_listen,
	.accept = tcp_accept,
	.listener_fd = tcp_listener_fd,
	.listener_port = tcp_listener_port,
	.listener_close = tcp_listener_close,
	.connect = tcp_connect,
	.send = tcp_send,
	.recv = tcp_recv,
	.close = tcp_close,
};
