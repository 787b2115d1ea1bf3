/*
 * xfer_rdma.c - the RDMA transport: a reliable-connected queue pair set up
 * by librdmacm (addresses and ports as for TCP, RDMA_PS_TCP), data moved
 * by ibverbs SEND with immediate between registered buffers.
 *
 * Each side registers RDMA_BUFS receive buffers and RDMA_BUFS send
 * buffers of RDMA_BUF_LEN bytes. The stream layer's bytes (chunk headers
 * and payloads alike) are packed into send buffers; the receiver copies
 * them out in order, as a byte stream (rsocket's model): the chunk framing
 * above checks them exactly as on TCP.
 *
 * Flow control by credits: a side may only SEND while the peer has a
 * receive posted for it. Both start with RDMA_BUFS credits (all receives
 * are posted before the connection is established); the immediate of
 * every SEND returns the credits of the receives its sender reposted since
 * the last one. A receiver that owes RDMA_CREDIT_BATCH credits and has
 * nothing to send returns them in an empty SEND. Data keeps one credit in
 * reserve for those, so credits always flow back.
 *
 * One thread may send while another receives (the agent relays both
 * directions at once). Both share the queue pair, the completion queue
 * and the credits, so every hook runs under the connection's lock, which
 * a waiting thread drops while it sleeps. Completions that one thread
 * takes may be what the other waits for: whoever takes some bumps a
 * generation and wakes both through their eventfds, and a waiter returns
 * to its caller's check as soon as the generation moved.
 *
 * No encryption: RDMA fabrics are trusted networks here, and the stream
 * layer requires encrypt = false to use this transport (the cluster key,
 * when set, still authenticates the peer through AUTH).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <ifaddrs.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <infiniband/verbs.h>
#include <rdma/rdma_cma.h>

#include "mig_private.h"

#define RDMA_BUFS 16u
#define RDMA_BUF_LEN (256u * 1024u)
#define RDMA_CREDIT_BATCH (RDMA_BUFS / 2u)
#define RDMA_MAX_SEND_WR (2u * RDMA_BUFS + 2u)
#define RDMA_CQ_LEN (RDMA_BUFS + RDMA_MAX_SEND_WR)
#define RDMA_RESOLVE_MS 2000
#define RDMA_DRAIN_MS 1000
#define RDMA_BACKLOG 16

/* wr_id: kind in the high bits, buffer index in the low ones. */
#define WR_RECV (1ull << 32)
#define WR_SEND (2ull << 32)
#define WR_CREDIT (3ull << 32)
#define WR_KIND(id) ((id) & ~0xffffffffull)
#define WR_INDEX(id) ((uint32_t)(id))

/* Which thread waits: indexes the wake eventfds. */
enum rdma_dir { DIR_SEND = 0, DIR_RECV, DIR_MAX };

static const char *rdma_dir_str(enum rdma_dir d)
{
	return d == DIR_SEND ? "sending" : d == DIR_RECV ? "receiving" : "unknown";
}

struct rdma_conn {
	struct rdma_event_channel *ec;
	struct rdma_cm_id *id;
	struct ibv_pd *pd;
	struct ibv_comp_channel *cc;
	struct ibv_cq *cq;
	struct ibv_mr *mr;
	uint8_t *mem;           /* RDMA_BUFS receive, then RDMA_BUFS send */
	bool qp_created;
	bool connected;
	bool peer_gone;

	/* received messages in arrival order: buffer index and length */
	uint32_t rxq_idx[RDMA_BUFS];
	uint32_t rxq_len[RDMA_BUFS];
	unsigned rxq_head, rxq_count;
	size_t rx_off;          /* consumed bytes of the head message */
	unsigned owed;          /* credits to return to the peer */

	unsigned credits;       /* receives the peer has posted for us */
	unsigned tx_next;       /* next send buffer (used in ring order) */
	unsigned tx_busy;       /* send buffers in flight */
	unsigned sq_busy;       /* send work requests in flight */

	pthread_mutex_t lock;   /* everything above, once connected */
	uint64_t gen;           /* bumped whenever completions were taken */
	int wake[DIR_MAX];      /* eventfds of the waiting sender, receiver */
};


struct rdma_listener {
	struct rdma_event_channel *ec;
	struct rdma_cm_id *id;
	uint16_t port;
};

static uint8_t *rx_buf(struct rdma_conn *c, uint32_t i)
{
	return c->mem + (size_t)i * RDMA_BUF_LEN;
}

static uint8_t *tx_buf(struct rdma_conn *c, uint32_t i)
{
	return c->mem + (size_t)(RDMA_BUFS + i) * RDMA_BUF_LEN;
}

static int set_nonblock(int fd)
{
	int fl = fcntl(fd, F_GETFL);

	if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0) {
		return -errno;
	}
	return 0;
}

static void peer_str(struct rdma_cm_id *id, char *buf, size_t len)
{
	struct sockaddr *sa = rdma_get_peer_addr(id);
	char host[INET6_ADDRSTRLEN] = "?";

	if (sa->sa_family == AF_INET) {
		inet_ntop(AF_INET, &((struct sockaddr_in *)sa)->sin_addr, host,
			  sizeof(host));
		snprintf(buf, len, "%s:%u", host, ntohs(rdma_get_dst_port(id)));
	} else if (sa->sa_family == AF_INET6) {
		inet_ntop(AF_INET6, &((struct sockaddr_in6 *)sa)->sin6_addr, host,
			  sizeof(host));
		snprintf(buf, len, "[%s]:%u", host, ntohs(rdma_get_dst_port(id)));
	}
}

/*
 * Waits up to @timeout_ms for the next connection manager event on @ec,
 * which must be @want. Returns 0 with *ev to acknowledge, or -errno with
 * the event's name in @err.
 */
static int cm_wait(struct rdma_event_channel *ec, enum rdma_cm_event_type want,
		   int timeout_ms, struct rdma_cm_event **ev, char *err,
		   size_t errlen, const char *where)
{
	uint64_t deadline = mig_now_us() / 1000u + (uint64_t)timeout_ms;
	enum rdma_cm_event_type got;
	int status, rc;

	for (;;) {
		uint64_t now = mig_now_us() / 1000u;

		if (rdma_get_cm_event(ec, ev) == 0) {
			break;
		}
		if (errno != EAGAIN && errno != EWOULDBLOCK) {
			rc = -errno;
			mig_set_err(err, errlen, "%s: rdma_get_cm_event: %s", where,
				    strerror(errno));
			return rc;
		}
		rc = timeout_ms < 0 ? mig_wait_fd(ec->fd, POLLIN, -1)
		     : now >= deadline
			     ? -ETIMEDOUT
			     : mig_wait_fd(ec->fd, POLLIN, (int)(deadline - now));
		if (rc < 0) {
			mig_set_err(err, errlen, "%s: waiting for %s: %s", where,
				    rdma_event_str(want), strerror(-rc));
			return rc;
		}
	}
	got = (*ev)->event;
	if (got == want) {
		return 0;
	}
	status = (*ev)->status;
	rdma_ack_cm_event(*ev);
	*ev = NULL;
	mig_set_err(err, errlen, "%s: %s (status %d) instead of %s", where,
		    rdma_event_str(got), status, rdma_event_str(want));
	switch (got) {
	case RDMA_CM_EVENT_REJECTED:
		return -ECONNREFUSED;
	case RDMA_CM_EVENT_ADDR_ERROR:
	case RDMA_CM_EVENT_ROUTE_ERROR:
	case RDMA_CM_EVENT_UNREACHABLE:
		return -EHOSTUNREACH;
	case RDMA_CM_EVENT_DEVICE_REMOVAL:
		return -ENODEV;
	default:
		return -ECONNRESET;
	}
}

/*
 * One step of a connection's set-up: @call_rc is what the rdma_cm call
 * @name returned (< 0: errno says why); then waits up to @timeout_ms for
 * its event @want and acknowledges it. 0, or -errno with @err set.
 */
static int cm_step(struct rdma_conn *c, int call_rc, const char *name,
		   enum rdma_cm_event_type want, int timeout_ms, char *err, size_t errlen,
		   const char *where)
{
	struct rdma_cm_event *ev;
	int rc;

	if (call_rc < 0) {
		rc = -errno;
		mig_set_err(err, errlen, "%s: %s: %s", where, name, strerror(errno));
		return rc;
	}
	rc = cm_wait(c->ec, want, timeout_ms, &ev, err, errlen, where);
	if (rc < 0) {
		return rc;
	}
	rdma_ack_cm_event(ev);
	return 0;
}

/* ---- queue pair and buffers --------------------------------------------- */

static int post_recv(struct rdma_conn *c, uint32_t i)
{
	struct ibv_sge sge = {
		.addr = (uintptr_t)rx_buf(c, i),
		.length = RDMA_BUF_LEN,
		.lkey = c->mr->lkey,
	};
	struct ibv_recv_wr wr = { .wr_id = WR_RECV | i, .sg_list = &sge,
				  .num_sge = 1 };
	struct ibv_recv_wr *bad;

	return -ibv_post_recv(c->id->qp, &wr, &bad);
}

static int qp_setup(struct rdma_conn *c, char *err, size_t errlen,
		    const char *where)
{
	struct ibv_qp_init_attr qa = {
		.qp_type = IBV_QPT_RC,
		.sq_sig_all = 1,
		.cap = {
			.max_send_wr = RDMA_MAX_SEND_WR,
			.max_recv_wr = RDMA_BUFS,
			.max_send_sge = 1,
			.max_recv_sge = 1,
		},
	};
	size_t len = (size_t)2 * RDMA_BUFS * RDMA_BUF_LEN;
	int rc;

	if (c->id->verbs == NULL) {
		mig_set_err(err, errlen, "%s: no RDMA device for this address",
			    where);
		return -ENODEV;
	}
	c->pd = ibv_alloc_pd(c->id->verbs);
	if (c->pd == NULL) {
		rc = errno ? -errno : -ENOMEM;
		mig_set_err(err, errlen, "%s: ibv_alloc_pd: %s", where,
			    strerror(-rc));
		return rc;
	}
	c->cc = ibv_create_comp_channel(c->id->verbs);
	if (c->cc == NULL || set_nonblock(c->cc->fd) < 0) {
		rc = errno ? -errno : -ENOMEM;
		mig_set_err(err, errlen, "%s: completion channel: %s", where,
			    strerror(-rc));
		return rc;
	}
	c->cq = ibv_create_cq(c->id->verbs, RDMA_CQ_LEN, NULL, c->cc, 0);
	if (c->cq == NULL) {
		rc = errno ? -errno : -ENOMEM;
		mig_set_err(err, errlen, "%s: ibv_create_cq: %s", where,
			    strerror(-rc));
		return rc;
	}
	qa.send_cq = c->cq;
	qa.recv_cq = c->cq;
	if (rdma_create_qp(c->id, c->pd, &qa) < 0) {
		rc = -errno;
		mig_set_err(err, errlen, "%s: rdma_create_qp: %s", where,
			    strerror(errno));
		return rc;
	}
	c->qp_created = true;
	if (posix_memalign((void **)&c->mem, 4096, len) != 0) {
		c->mem = NULL;
		mig_set_err(err, errlen, "%s: no memory for %zu bytes of buffers",
			    where, len);
		return -ENOMEM;
	}
	c->mr = ibv_reg_mr(c->pd, c->mem, len, IBV_ACCESS_LOCAL_WRITE);
	if (c->mr == NULL) {
		rc = errno ? -errno : -ENOMEM;
		mig_set_err(err, errlen, "%s: ibv_reg_mr of %zu bytes: %s (locked "
			    "memory limit?)", where, len, strerror(-rc));
		return rc;
	}
	for (uint32_t i = 0; i < RDMA_BUFS; i++) {
		rc = post_recv(c, i);
		if (rc < 0) {
			mig_set_err(err, errlen, "%s: ibv_post_recv: %s", where,
				    strerror(-rc));
			return rc;
		}
	}
	c->credits = RDMA_BUFS;
	if (ibv_req_notify_cq(c->cq, 0) != 0) {
		mig_set_err(err, errlen, "%s: ibv_req_notify_cq failed", where);
		return -EIO;
	}
	return 0;
}

static void conn_destroy(struct rdma_conn *c)
{
	if (c == NULL) {
		return;
	}
	if (c->qp_created) {
		rdma_destroy_qp(c->id);
	}
	if (c->mr != NULL) {
		ibv_dereg_mr(c->mr);
	}
	free(c->mem);
	if (c->cq != NULL) {
		ibv_destroy_cq(c->cq);
	}
	if (c->cc != NULL) {
		ibv_destroy_comp_channel(c->cc);
	}
	if (c->pd != NULL) {
		ibv_dealloc_pd(c->pd);
	}
	if (c->id != NULL) {
		rdma_destroy_id(c->id);
	}
	if (c->ec != NULL) {
		rdma_destroy_event_channel(c->ec);
	}
	for (int i = 0; i < 2; i++) {
		if (c->wake[i] >= 0) {
			close(c->wake[i]);
		}
	}
	pthread_mutex_destroy(&c->lock);
	free(c);
}

/* ---- completions -------------------------------------------------------- */

static int send_credit(struct mig_stream *s, struct rdma_conn *c);

/* Takes every completion there is. Returns how many, or the stream's
 * error. */
static int poll_cq(struct mig_stream *s, struct rdma_conn *c)
{
	struct ibv_wc wc[16];
	int total = 0;

	for (;;) {
		int n = ibv_poll_cq(c->cq, (int)(sizeof(wc) / sizeof(wc[0])), wc);

		if (n < 0) {
			return mig_stream_fail(s, -EIO, true, "ibv_poll_cq failed");
		}
		if (n == 0) {
			break;
		}
		for (int i = 0; i < n; i++) {
			uint64_t kind = WR_KIND(wc[i].wr_id);
			uint32_t idx = WR_INDEX(wc[i].wr_id);

			if (wc[i].status != IBV_WC_SUCCESS) {
				if (wc[i].status == IBV_WC_WR_FLUSH_ERR) {
					c->peer_gone = true;
					continue;
				}
				return mig_stream_fail(s, -EIO, true,
						       "RDMA %s completion: %s",
						       kind == WR_RECV ? "receive"
								       : "send",
						       ibv_wc_status_str(wc[i].status));
			}
			if (kind == WR_SEND || kind == WR_CREDIT) {
				c->sq_busy--;
				if (kind == WR_SEND) {
					c->tx_busy--;
				}
				continue;
			}
			if (kind != WR_RECV || idx >= RDMA_BUFS ||
			    !(wc[i].wc_flags & IBV_WC_WITH_IMM) ||
			    wc[i].byte_len > RDMA_BUF_LEN) {
				return mig_stream_fail(s, -EPROTO, true,
						       "RDMA: malformed message");
			}
			c->credits += ntohl(wc[i].imm_data);
			if (c->credits > RDMA_BUFS) {
				return mig_stream_fail(s, -EPROTO, true,
						       "RDMA: peer returned %u "
						       "credits, more than it had",
						       c->credits);
			}
			if (wc[i].byte_len == 0) {
				/* Credits only: the buffer goes back at once. */
				int rc = post_recv(c, idx);

				if (rc < 0) {
					return mig_stream_fail(s, rc, true,
							       "ibv_post_recv: %s",
							       strerror(-rc));
				}
				c->owed++;
				continue;
			}
			c->rxq_idx[(c->rxq_head + c->rxq_count) % RDMA_BUFS] = idx;
			c->rxq_len[(c->rxq_head + c->rxq_count) % RDMA_BUFS] =
				wc[i].byte_len;
			c->rxq_count++;
		}
		total += n;
	}
	if (total > 0) {
		uint64_t one = 1;

		c->gen++;
		for (int i = 0; i < 2; i++) {
			if (c->wake[i] >= 0 &&
			    write(c->wake[i], &one, sizeof(one)) < 0) {
				/* the counter is non-zero already */
			}
		}
	}
	return total;
}

/* Drains connection manager events; a disconnect marks the peer gone. */
static void poll_cm(struct rdma_conn *c)
{
	struct rdma_cm_event *ev;

	while (rdma_get_cm_event(c->ec, &ev) == 0) {
		if (ev->event == RDMA_CM_EVENT_DISCONNECTED ||
		    ev->event == RDMA_CM_EVENT_DEVICE_REMOVAL ||
		    ev->event == RDMA_CM_EVENT_TIMEWAIT_EXIT) {
			c->peer_gone = true;
		}
		rdma_ack_cm_event(ev);
	}
}

/*
 * Processes completions; when none came and @block, waits for the next
 * (completion channel or connection manager), watching the cancel flag
 * and the I/O timeout. Returns >= 0 or the stream's error.
 */
static int progress(struct mig_stream *s, struct rdma_conn *c, bool block,
		    enum rdma_dir dir)
{
	const char *what = rdma_dir_str(dir);
	uint64_t start = mig_now_us() / 1000u;
	uint64_t gen0 = c->gen;
	int timeout_ms = (int)s->opts.io_timeout_ms;

	for (;;) {
		struct pollfd p[3] = {
			{ .fd = c->cc->fd, .events = POLLIN },
			{ .fd = c->ec->fd, .events = POLLIN },
			{ .fd = c->wake[dir], .events = POLLIN },
		};
		uint64_t v;
		struct ibv_cq *cq;
		void *ctx;
		int n, rc, slice;

		n = poll_cq(s, c);
		if (n != 0 || !block) {
			return n;
		}
		/* Armed before the second look: no completion is missed. */
		if (ibv_req_notify_cq(c->cq, 0) != 0) {
			return mig_stream_fail(s, -EIO, true,
					       "ibv_req_notify_cq failed");
		}
		n = poll_cq(s, c);
		if (n != 0) {
			return n;
		}
		if (c->peer_gone) {
			return 0;
		}
		slice = mig_stream_wait_slice(s, start, timeout_ms, what);
		if (slice < 0) {
			return slice;
		}
		/* The other thread may run meanwhile. */
		pthread_mutex_unlock(&c->lock);
		rc = poll(p, 3, slice);
		pthread_mutex_lock(&c->lock);
		if (rc < 0 && errno != EINTR) {
			return mig_stream_fail(s, -errno, true, "poll: %s",
					       strerror(errno));
		}
		if ((p[2].revents & POLLIN) &&
		    read(c->wake[dir], &v, sizeof(v)) < 0) {
			/* drained by nobody else: harmless */
		}
		if (p[0].revents & POLLIN) {
			while (ibv_get_cq_event(c->cc, &cq, &ctx) == 0) {
				ibv_ack_cq_events(cq, 1);
			}
		}
		if (p[1].revents & POLLIN) {
			poll_cm(c);
		}
		if (c->gen != gen0) {
			return 1; /* the other thread took completions */
		}
	}
}

static int post_send(struct mig_stream *s, struct rdma_conn *c, uint32_t idx,
		     uint32_t len)
{
	struct ibv_sge sge = {
		.addr = (uintptr_t)tx_buf(c, idx),
		.length = len,
		.lkey = c->mr->lkey,
	};
	struct ibv_send_wr wr = {
		.wr_id = (len ? WR_SEND : WR_CREDIT) | idx,
		.opcode = IBV_WR_SEND_WITH_IMM,
		.send_flags = IBV_SEND_SIGNALED,
		.sg_list = len ? &sge : NULL,
		.num_sge = len ? 1 : 0,
		.imm_data = htonl(c->owed),
	};
	struct ibv_send_wr *bad;
	int rc = ibv_post_send(c->id->qp, &wr, &bad);

	if (rc != 0) {
		return mig_stream_fail(s, -rc, true, "ibv_post_send: %s",
				       strerror(rc));
	}
	c->owed = 0;
	c->credits--;
	c->sq_busy++;
	return 0;
}

/* Returns the credits we owe in an empty SEND once they are many. */
static int send_credit(struct mig_stream *s, struct rdma_conn *c)
{
	if (c->owed < RDMA_CREDIT_BATCH || c->credits == 0 ||
	    c->sq_busy >= RDMA_MAX_SEND_WR || c->peer_gone) {
		return 0;
	}
	return post_send(s, c, 0, 0);
}

/* ---- stream hooks ------------------------------------------------------- */

static int send_locked(struct mig_stream *s, struct rdma_conn *c,
		       const struct iovec *iov, int iovcnt)
{
	int i = 0;
	size_t off = 0;

	while (i < iovcnt) {
		uint32_t idx, fill = 0;
		uint8_t *dst;
		int rc;

		if (iov[i].iov_len == off) {
			i++;
			off = 0;
			continue;
		}
		/* A buffer, a work request and a credit (keeping one back
		 * for credit returns). */
		while (c->tx_busy >= RDMA_BUFS || c->sq_busy >= RDMA_MAX_SEND_WR - 1 ||
		       c->credits < 2) {
			if (c->peer_gone) {
				return mig_stream_fail(s, -ECONNRESET, true,
						       "peer disconnected");
			}
			rc = progress(s, c, true, DIR_SEND);
			if (rc < 0) {
				return rc;
			}
		}
		idx = c->tx_next;
		dst = tx_buf(c, idx);
		/* Pack as much of the iovec as fits. */
		while (i < iovcnt && fill < RDMA_BUF_LEN) {
			size_t n = iov[i].iov_len - off;

			if (n > RDMA_BUF_LEN - fill) {
				n = RDMA_BUF_LEN - fill;
			}
			memcpy(dst + fill, (const uint8_t *)iov[i].iov_base + off, n);
			fill += (uint32_t)n;
			off += n;
			if (off == iov[i].iov_len) {
				i++;
				off = 0;
			}
		}
		rc = post_send(s, c, idx, fill);
		if (rc < 0) {
			return rc;
		}
		c->tx_next = (c->tx_next + 1) % RDMA_BUFS;
		c->tx_busy++;
		/* Reap without waiting, to return credits early. */
		rc = progress(s, c, false, DIR_SEND);
		if (rc < 0) {
			return rc;
		}
	}
	return 0;
}

static ssize_t recv_locked(struct mig_stream *s, struct rdma_conn *c,
			   void *buf, size_t len)
{
	size_t got = 0;
	int rc;

	while (c->rxq_count == 0) {
		if (c->peer_gone) {
			/* A last look: data that came before the disconnect. */
			rc = poll_cq(s, c);
			if (rc < 0) {
				return rc;
			}
			if (c->rxq_count == 0) {
				return 0;
			}
			break;
		}
		rc = progress(s, c, true, DIR_RECV);
		if (rc < 0) {
			return rc;
		}
	}
	while (got < len && c->rxq_count > 0) {
		uint32_t idx = c->rxq_idx[c->rxq_head];
		uint32_t mlen = c->rxq_len[c->rxq_head];
		size_t n = mlen - c->rx_off;

		if (n > len - got) {
			n = len - got;
		}
		memcpy((uint8_t *)buf + got, rx_buf(c, idx) + c->rx_off, n);
		got += n;
		c->rx_off += n;
		if (c->rx_off == mlen) {
			c->rx_off = 0;
			c->rxq_head = (c->rxq_head + 1) % RDMA_BUFS;
			c->rxq_count--;
			rc = post_recv(c, idx);
			if (rc < 0) {
				return mig_stream_fail(s, rc, true,
						       "ibv_post_recv: %s",
						       strerror(-rc));
			}
			c->owed++;
		}
	}
	rc = send_credit(s, c);
	if (rc < 0) {
		return rc;
	}
	return (ssize_t)got;
}

static int rdma_send(struct mig_stream *s, const struct iovec *iov, int iovcnt)
{
	struct rdma_conn *c = s->priv;
	int rc;

	if (c == NULL) {
		return -ENOTCONN;
	}
	pthread_mutex_lock(&c->lock);
	rc = send_locked(s, c, iov, iovcnt);
	pthread_mutex_unlock(&c->lock);
	return rc;
}

static ssize_t rdma_recv(struct mig_stream *s, void *buf, size_t len)
{
	struct rdma_conn *c = s->priv;
	ssize_t n;

	if (c == NULL) {
		return -ENOTCONN;
	}
	pthread_mutex_lock(&c->lock);
	n = recv_locked(s, c, buf, len);
	pthread_mutex_unlock(&c->lock);
	return n;
}

static void rdma_close(struct mig_stream *s)
{
	struct rdma_conn *c = s->priv;

	if (c == NULL) {
		return;
	}
	if (c->connected) {
		/* Let what was posted arrive before the disconnect flushes
		 * it. */
		uint64_t end = mig_now_us() / 1000u + RDMA_DRAIN_MS;

		while (!s->broken && !c->peer_gone && c->sq_busy > 0 &&
		       mig_now_us() / 1000u < end) {
			if (poll_cq(s, c) < 0) {
				break;
			}
		}
		rdma_disconnect(c->id);
	}
	conn_destroy(c);
	s->priv = NULL;
}

/* ---- connect ------------------------------------------------------------ */

static struct rdma_conn *conn_new(void)
{
	struct rdma_conn *c = calloc(1, sizeof(*c));

	if (c == NULL) {
		return NULL;
	}
	pthread_mutex_init(&c->lock, NULL);
	c->wake[0] = c->wake[1] = -1;
	for (int i = 0; i < DIR_MAX; i++) {
		c->wake[i] = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
		if (c->wake[i] < 0) {
			conn_destroy(c);
			return NULL;
		}
	}
	return c;
}

static int rdma_connect_(struct mig_stream *s, const char *addr, uint16_t port,
			 int timeout_ms, char *err, size_t errlen)
{
	struct addrinfo hints = { .ai_family = AF_UNSPEC,
				  .ai_socktype = SOCK_STREAM,
				  .ai_flags = AI_NUMERICSERV };
	struct rdma_conn_param cp = { .retry_count = 7, .rnr_retry_count = 7 };
	struct addrinfo *res = NULL;
	struct rdma_conn *c;
	char portstr[8];
	int rc, step;

	if (timeout_ms < 0) {
		timeout_ms = INT32_MAX;
	}
	step = timeout_ms < RDMA_RESOLVE_MS ? timeout_ms : RDMA_RESOLVE_MS;
	snprintf(s->peer, sizeof(s->peer), "%s:%u", addr, port);
	snprintf(portstr, sizeof(portstr), "%u", port);
	rc = getaddrinfo(addr, portstr, &hints, &res);
	if (rc != 0) {
		mig_set_err(err, errlen, "%s: %s", s->peer, gai_strerror(rc));
		return -EHOSTUNREACH;
	}
	c = conn_new();
	if (c == NULL) {
		freeaddrinfo(res);
		mig_set_err(err, errlen, "out of memory");
		return -ENOMEM;
	}
	c->ec = rdma_create_event_channel();
	if (c->ec == NULL || set_nonblock(c->ec->fd) < 0 ||
	    rdma_create_id(c->ec, &c->id, s, RDMA_PS_TCP) < 0) {
		rc = errno ? -errno : -ENODEV;
		mig_set_err(err, errlen, "%s: rdma_cm: %s", s->peer,
			    strerror(-rc));
		c->id = NULL;
		goto fail;
	}
	rc = cm_step(c, rdma_resolve_addr(c->id, NULL, res->ai_addr, step), "rdma_resolve_addr",
		     RDMA_CM_EVENT_ADDR_RESOLVED, timeout_ms, err, errlen, s->peer);
	if (rc < 0) {
		goto fail;
	}
	rc = cm_step(c, rdma_resolve_route(c->id, step), "rdma_resolve_route",
		     RDMA_CM_EVENT_ROUTE_RESOLVED, timeout_ms, err, errlen, s->peer);
	if (rc < 0) {
		goto fail;
	}
	rc = qp_setup(c, err, errlen, s->peer);
	if (rc < 0) {
		goto fail;
	}
	rc = cm_step(c, rdma_connect(c->id, &cp), "rdma_connect", RDMA_CM_EVENT_ESTABLISHED,
		     timeout_ms, err, errlen, s->peer);
	if (rc < 0) {
		goto fail;
	}
	freeaddrinfo(res);
	c->connected = true;
	s->priv = c;
	snprintf(s->cipher, sizeof(s->cipher), "rdma (not encrypted)");
	return 0;

fail:
	freeaddrinfo(res);
	conn_destroy(c);
	return rc;
}

/* ---- listener ----------------------------------------------------------- */

static int rdma_listen_(struct mig_listener *l, const char *addr, uint16_t port,
			char *err, size_t errlen)
{
	struct addrinfo hints = { .ai_family = AF_UNSPEC,
				  .ai_socktype = SOCK_STREAM,
				  .ai_flags = AI_PASSIVE | AI_NUMERICSERV };
	struct addrinfo *res = NULL;
	struct rdma_listener *t;
	char portstr[8];
	int rc;

	if (addr != NULL && (addr[0] == '\0' || strcmp(addr, "*") == 0)) {
		addr = NULL;
	}
	snprintf(portstr, sizeof(portstr), "%u", port);
	if (addr == NULL) {
		hints.ai_family = AF_INET;
	}
	rc = getaddrinfo(addr, portstr, &hints, &res);
	if (rc != 0) {
		mig_set_err(err, errlen, "rdma listen on %s:%u: %s",
			    addr ? addr : "*", port, gai_strerror(rc));
		return -EINVAL;
	}
	t = calloc(1, sizeof(*t));
	if (t == NULL) {
		freeaddrinfo(res);
		mig_set_err(err, errlen, "out of memory");
		return -ENOMEM;
	}
	t->ec = rdma_create_event_channel();
	if (t->ec == NULL || set_nonblock(t->ec->fd) < 0 ||
	    rdma_create_id(t->ec, &t->id, NULL, RDMA_PS_TCP) < 0) {
		rc = errno ? -errno : -ENODEV;
		t->id = NULL;
		mig_set_err(err, errlen, "rdma listen on %s:%u: rdma_cm: %s",
			    addr ? addr : "*", port, strerror(-rc));
		goto fail;
	}
	if (rdma_bind_addr(t->id, res->ai_addr) < 0 ||
	    rdma_listen(t->id, RDMA_BACKLOG) < 0) {
		rc = -errno;
		mig_set_err(err, errlen, "rdma listen on %s:%u: %s",
			    addr ? addr : "*", port, strerror(errno));
		goto fail;
	}
	freeaddrinfo(res);
	t->port = ntohs(rdma_get_src_port(t->id));
	l->priv = t;
	return 0;

fail:
	freeaddrinfo(res);
	if (t->id != NULL) {
		rdma_destroy_id(t->id);
	}
	if (t->ec != NULL) {
		rdma_destroy_event_channel(t->ec);
	}
	free(t);
	return rc;
}

static int rdma_accept_(struct mig_listener *l, int timeout_ms,
			struct mig_stream *s, char *err, size_t errlen)
{
	struct rdma_listener *t = l->priv;
	struct rdma_conn_param cp = { .retry_count = 7, .rnr_retry_count = 7 };
	struct rdma_cm_event *ev;
	struct rdma_conn *c;
	char where[32];
	int rc;

	snprintf(where, sizeof(where), "rdma port %u", t->port);
	rc = cm_wait(t->ec, RDMA_CM_EVENT_CONNECT_REQUEST, timeout_ms, &ev, err,
		     errlen, where);
	if (rc < 0) {
		return rc;
	}
	c = conn_new();
	if (c == NULL) {
		rdma_reject(ev->id, NULL, 0);
		rdma_destroy_id(ev->id);
		rdma_ack_cm_event(ev);
		mig_set_err(err, errlen, "out of memory");
		return -ENOMEM;
	}
	c->id = ev->id;
	rdma_ack_cm_event(ev);
	peer_str(c->id, s->peer, sizeof(s->peer));
	/* Its own channel, so that its events do not mix with the
	 * listener's. */
	c->ec = rdma_create_event_channel();
	if (c->ec == NULL || set_nonblock(c->ec->fd) < 0 ||
	    rdma_migrate_id(c->id, c->ec) < 0) {
		rc = errno ? -errno : -ENOMEM;
		mig_set_err(err, errlen, "%s: rdma_migrate_id: %s", s->peer,
			    strerror(-rc));
		rdma_reject(c->id, NULL, 0);
		goto fail;
	}
	rc = qp_setup(c, err, errlen, s->peer);
	if (rc < 0) {
		rdma_reject(c->id, NULL, 0);
		goto fail;
	}
	rc = cm_step(c, rdma_accept(c->id, &cp), "rdma_accept", RDMA_CM_EVENT_ESTABLISHED,
		     (int)s->opts.io_timeout_ms, err, errlen, s->peer);
	if (rc < 0) {
		goto fail;
	}
	c->connected = true;
	s->priv = c;
	snprintf(s->cipher, sizeof(s->cipher), "rdma (not encrypted)");
	return 0;

fail:
	conn_destroy(c);
	return rc;
}

static int rdma_listener_fd(const struct mig_listener *l)
{
	const struct rdma_listener *t = l->priv;

	return t != NULL ? t->ec->fd : -1;
}

static uint16_t rdma_listener_port(const struct mig_listener *l)
{
	const struct rdma_listener *t = l->priv;

	return t != NULL ? t->port : 0;
}

static void rdma_listener_close(struct mig_listener *l)
{
	struct rdma_listener *t = l->priv;

	if (t == NULL) {
		return;
	}
	rdma_destroy_id(t->id);
	rdma_destroy_event_channel(t->ec);
	free(t);
	l->priv = NULL;
}

const struct mig_xfer_ops mig_xfer_rdma = {
	.name = "rdma",
	.listen = rdma_listen_,
	.accept = rdma_accept_,
	.listener_fd = rdma_listener_fd,
	.listener_port = rdma_listener_port,
	.listener_close = rdma_listener_close,
	.connect = rdma_connect_,
	.send = rdma_send,
	.recv = rdma_recv,
	.close = rdma_close,
};

/* ---- probe -------------------------------------------------------------- */

/* Does the connection manager map @sa to a device? */
static bool addr_has_device(const struct sockaddr *sa)
{
	struct rdma_event_channel *ec = rdma_create_event_channel();
	struct rdma_cm_id *id = NULL;
	bool ok = false;

	if (ec == NULL) {
		return false;
	}
	if (rdma_create_id(ec, &id, NULL, RDMA_PS_TCP) == 0) {
		ok = rdma_bind_addr(id, (struct sockaddr *)sa) == 0 &&
		     id->verbs != NULL;
		rdma_destroy_id(id);
	}
	rdma_destroy_event_channel(ec);
	return ok;
}

int mig_rdma_probe(struct mig_rdma_probe *p)
{
	struct ibv_device **list;
	struct ifaddrs *ifa = NULL;
	unsigned active = 0;
	int num = 0;

	memset(p, 0, sizeof(*p));
	p->built = true;
	list = ibv_get_device_list(&num);
	if (list == NULL || num == 0) {
		if (list == NULL) {
			snprintf(p->reason, sizeof(p->reason),
				 "ibv_get_device_list: %s%s", strerror(errno),
				 errno == ENOSYS ? " (no RDMA in this kernel)" : "");
		} else {
			snprintf(p->reason, sizeof(p->reason), "no RDMA device");
		}
		if (list != NULL) {
			ibv_free_device_list(list);
		}
		return 0;
	}
	p->n_devices = (unsigned)num;
	for (int i = 0; i < num; i++) {
		struct ibv_device_attr da;
		struct ibv_context *ctx;
		struct mig_rdma_dev *d = i < MIG_RDMA_PROBE_MAX ? &p->dev[i] : NULL;
		struct mig_rdma_dev scratch;

		if (d == NULL) {
			d = &scratch;
			memset(d, 0, sizeof(*d));
		}
		snprintf(d->name, sizeof(d->name), "%s",
			 ibv_get_device_name(list[i]));
		ctx = ibv_open_device(list[i]);
		if (ctx == NULL) {
			continue;
		}
		if (ibv_query_device(ctx, &da) == 0) {
			d->ports = da.phys_port_cnt;
			for (uint8_t port = 1; port <= da.phys_port_cnt; port++) {
				struct ibv_port_attr pa;

				if (ibv_query_port(ctx, port, &pa) == 0 &&
				    pa.state == IBV_PORT_ACTIVE) {
					d->active_ports++;
				}
			}
		}
		active += d->active_ports;
		ibv_close_device(ctx);
	}
	ibv_free_device_list(list);
	if (active == 0) {
		snprintf(p->reason, sizeof(p->reason),
			 "%u RDMA device(s), no active port", p->n_devices);
		return 0;
	}
	if (getifaddrs(&ifa) < 0) {
		int e = errno;

		snprintf(p->reason, sizeof(p->reason), "getifaddrs: %s",
			 strerror(e));
		return -e;
	}
	for (struct ifaddrs *i = ifa; i != NULL && !p->usable; i = i->ifa_next) {
		if (i->ifa_addr == NULL || i->ifa_addr->sa_family != AF_INET) {
			continue;
		}
		if (addr_has_device(i->ifa_addr)) {
			inet_ntop(AF_INET,
				  &((struct sockaddr_in *)i->ifa_addr)->sin_addr,
				  p->addr, sizeof(p->addr));
			p->usable = true;
		}
	}
	freeifaddrs(ifa);
	if (!p->usable) {
		snprintf(p->reason, sizeof(p->reason),
			 "no IPv4 address maps to an RDMA device");
	}
	return 0;
}
