/*
 * test_migration_rdma.c - the RDMA transport for real, where this host has
 * an RDMA device with an active port and an IPv4 address on it (a soft-RoCE
 * device will do: `rdma link add rxe0 type rxe netdev lo`). Elsewhere it
 * checks that the transport fails cleanly and exits 77 (skipped).
 *
 * HA_TEST_RDMA_ADDR picks the address; by default the probe's.
 *
 * With a device: round trips of control and data chunks of sizes around
 * the transport's buffer size, the key proof, 64 MiB with checksums
 * checked end to end, the fd pump, a rate cap, cancel, no fd left open.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"
#include "migration.h"

#define MIB (1024u * 1024u)

static const char *addr;
static char keyfile[64];

static uint64_t now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static void fill_random(uint8_t *p, size_t len, uint64_t *state)
{
	uint64_t x = *state;

	for (size_t i = 0; i < len; i++) {
		if ((i & 7) == 0) {
			x ^= x << 13;
			x ^= x >> 7;
			x ^= x << 17;
		}
		p[i] = (uint8_t)(x >> ((i & 7) * 8));
	}
	*state = x;
}

static void rdma_opts(struct mig_opts *o)
{
	mig_opts_defaults(o);
	o->transport = MIG_TRANSPORT_RDMA;
	o->encrypt = false;
	o->io_timeout_ms = 10000;
}

/* ---- an accepting thread: echo, or sink with a checksum ---------------- */

struct server {
	struct mig_listener *l;
	pthread_t thread;
	bool sink;
	int accept_rc;
	char accept_err[256];
	int rc;
	char errmsg[256];
	uint64_t bytes;
	uint32_t crc;
};

static void *server_main(void *arg)
{
	struct server *srv = arg;
	struct mig_stream *s = NULL;
	uint8_t *buf;
	struct mig_chunk_hdr h;

	srv->accept_rc = mig_listener_accept(srv->l, 10000, &s, srv->accept_err,
					     sizeof(srv->accept_err));
	if (srv->accept_rc < 0) {
		return NULL;
	}
	buf = malloc(MIG_CHUNK_MAX_LEN);
	for (;;) {
		ssize_t n = mig_stream_recv_chunk(s, &h, buf, MIG_CHUNK_MAX_LEN);

		if (n < 0) {
			srv->rc = (int)n;
			break;
		}
		if (h.type == MIG_CHUNK_END) {
			srv->rc = srv->sink ? 0 : mig_stream_send_end(s);
			break;
		}
		if (srv->sink) {
			srv->crc = mig_crc32c(srv->crc, buf, (size_t)n);
			srv->bytes += (uint64_t)n;
			continue;
		}
		srv->rc = mig_stream_send_chunk(s, h.type, h.flags & MIG_CHUNK_F_LAST,
						buf, (size_t)n);
		if (srv->rc < 0) {
			break;
		}
	}
	snprintf(srv->errmsg, sizeof(srv->errmsg), "%s", mig_stream_errmsg(s));
	free(buf);
	mig_stream_free(s);
	return NULL;
}

static uint16_t server_start(struct server *srv, const struct mig_opts *o,
			     bool sink)
{
	char err[256] = "";
	int rc;

	memset(srv, 0, sizeof(*srv));
	srv->sink = sink;
	rc = mig_listen(o, addr, 0, &srv->l, err, sizeof(err));
	CHECK_EQ_INT(rc, 0);
	if (rc < 0) {
		fprintf(stderr, "rdma listen: %s\n", err);
		return 0;
	}
	pthread_create(&srv->thread, NULL, server_main, srv);
	return mig_listener_port(srv->l);
}

static void server_join(struct server *srv)
{
	if (srv->l == NULL) {
		return;
	}
	pthread_join(srv->thread, NULL);
	mig_listener_free(srv->l);
	srv->l = NULL;
	if (srv->accept_rc < 0) {
		fprintf(stderr, "rdma accept: %s\n", srv->accept_err);
	}
	if (srv->rc < 0) {
		fprintf(stderr, "rdma server: %s\n", srv->errmsg);
	}
}

/* ---- cases -------------------------------------------------------------- */

static void test_echo(bool with_key)
{
	static const size_t sizes[] = { 0, 1, 31, 4096, 256 * 1024 - 32,
					256 * 1024 - 31, 256 * 1024, 700001,
					MIG_CHUNK_DEFAULT_LEN };
	struct server srv;
	struct mig_stream *s = NULL;
	struct mig_chunk_hdr h;
	struct mig_opts o;
	uint8_t *out = malloc(MIG_CHUNK_DEFAULT_LEN), *in = malloc(MIG_CHUNK_DEFAULT_LEN);
	uint64_t st = 5;
	char err[256] = "";
	uint16_t port;
	int rc;

	rdma_opts(&o);
	if (with_key) {
		CHECK_EQ_INT(mig_key_load(keyfile, &o.key, err, sizeof(err)), 0);
	}
	port = server_start(&srv, &o, false);
	rc = mig_connect(&o, addr, port, 5000, &s, err, sizeof(err));
	CHECK_EQ_INT(rc, 0);
	if (rc < 0) {
		fprintf(stderr, "rdma connect: %s\n", err);
	}
	for (int round = 0; rc == 0 && round < 3; round++) {
		for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
			ssize_t n;

			fill_random(out, sizes[i], &st);
			CHECK_EQ_INT(mig_stream_send_chunk(s, i % 2 ? MIG_CHUNK_CONTROL
								    : MIG_CHUNK_DATA,
							   0, out, sizes[i]), 0);
			n = mig_stream_recv_chunk(s, &h, in, MIG_CHUNK_DEFAULT_LEN);
			CHECK_EQ_INT(n, sizes[i]);
			CHECK(n <= 0 || memcmp(in, out, (size_t)n) == 0);
		}
	}
	if (rc == 0) {
		ssize_t n;

		CHECK(strstr(mig_stream_cipher(s), "rdma") != NULL);
		CHECK(!mig_stream_encrypted(s));
		CHECK_EQ_INT(mig_stream_send_end(s), 0);
		n = mig_stream_recv_chunk(s, &h, in, MIG_CHUNK_DEFAULT_LEN);
		CHECK_EQ_INT(n, 0);
		CHECK_EQ_INT(h.type, MIG_CHUNK_END);
	}
	mig_stream_free(s);
	server_join(&srv);
	CHECK_EQ_INT(srv.accept_rc, 0);
	CHECK_EQ_INT(srv.rc, 0);
	free(out);
	free(in);
}

static void test_big(uint64_t total, uint64_t rate)
{
	struct server srv;
	struct mig_stream *s = NULL;
	struct mig_opts o;
	uint8_t *buf = malloc(MIG_CHUNK_DEFAULT_LEN);
	uint64_t st = 11, sent = 0, t0;
	uint32_t crc = 0;
	char err[256] = "";
	uint16_t port;
	double secs;

	rdma_opts(&o);
	o.checksum = true;
	port = server_start(&srv, &o, true);
	o.rate_limit = rate;
	CHECK_EQ_INT(mig_connect(&o, addr, port, 5000, &s, err, sizeof(err)), 0);
	t0 = now_us();
	while (s != NULL && sent < total) {
		uint32_t len = MIG_CHUNK_DEFAULT_LEN - (uint32_t)(sent % 7);

		if (len > total - sent) {
			len = (uint32_t)(total - sent);
		}
		fill_random(buf, len, &st);
		crc = mig_crc32c(crc, buf, len);
		if (mig_stream_send_chunk(s, MIG_CHUNK_DATA, 0, buf, len) < 0) {
			fprintf(stderr, "rdma send: %s\n", mig_stream_errmsg(s));
			break;
		}
		sent += len;
	}
	CHECK_EQ_INT(mig_stream_send_end(s), 0);
	secs = (double)(now_us() - t0) / 1e6;
	printf("rdma: %llu MiB in %.2f s%s\n", (unsigned long long)(total / MIB),
	       secs, rate ? " (capped)" : "");
	if (rate) {
		/* a ceiling: how far below it the stream ran is load */
		CHECK((double)total / secs < 1.1 * (double)rate);
	}
	mig_stream_free(s);
	server_join(&srv);
	CHECK_EQ_INT(srv.rc, 0);
	CHECK_EQ_INT(srv.bytes, total);
	CHECK_EQ_INT(srv.crc, crc);
	free(buf);
}

struct producer {
	int fd;
	uint64_t bytes;
};

static void *producer_main(void *arg)
{
	struct producer *p = arg;
	uint8_t buf[65536];

	memset(buf, 0x5a, sizeof(buf));
	for (uint64_t left = p->bytes; left > 0;) {
		size_t n = left < sizeof(buf) ? (size_t)left : sizeof(buf);
		ssize_t w = write(p->fd, buf, n);

		if (w <= 0) {
			break;
		}
		left -= (uint64_t)w;
	}
	close(p->fd);
	return NULL;
}

static void test_pump_and_cancel(void)
{
	struct producer pr = { .bytes = 8 * MIB + 3 };
	struct server srv;
	struct mig_stream *s = NULL;
	struct mig_opts o;
	pthread_t t;
	char err[256] = "";
	int p[2];
	uint16_t port;

	rdma_opts(&o);
	port = server_start(&srv, &o, true);
	CHECK_EQ_INT(mig_connect(&o, addr, port, 5000, &s, err, sizeof(err)), 0);
	CHECK_EQ_INT(pipe2(p, O_CLOEXEC), 0);
	pr.fd = p[1];
	pthread_create(&t, NULL, producer_main, &pr);
	CHECK_EQ_INT(mig_stream_pump_fd_to_stream(s, p[0]), 0);
	pthread_join(t, NULL);
	close(p[0]);
	/* cancel: the next call fails at once, and the peer learns why */
	mig_stream_cancel(s);
	CHECK_EQ_INT(mig_stream_send_chunk(s, MIG_CHUNK_DATA, 0, "x", 1), -ECANCELED);
	CHECK_EQ_INT(mig_stream_abort(s, ECANCELED, "test cancel"), 0);
	mig_stream_free(s);
	server_join(&srv);
	CHECK_EQ_INT(srv.rc, -ECONNABORTED);
	CHECK(strstr(srv.errmsg, "test cancel") != NULL);
	CHECK_EQ_INT(srv.bytes, pr.bytes);
}

/* ---- both directions at once -------------------------------------------- */

/* One thread sends while another receives on each end (the agents relay
 * a driver's socket this way): the two share the queue pair, the
 * completion queue and the credits. */
struct duplex {
	struct mig_stream *s;
	uint64_t bytes, seed;
	uint32_t crc;
	int rc;
};

static void *duplex_sender(void *arg)
{
	struct duplex *d = arg;
	uint8_t *buf = malloc(MIG_CHUNK_DEFAULT_LEN);
	size_t max = mig_stream_max_send(d->s);
	uint64_t left = d->bytes, st = d->seed;

	while (left > 0 && d->rc == 0) {
		size_t n = (size_t)(st % max) + 1;

		if (n > left) {
			n = (size_t)left;
		}
		fill_random(buf, n, &st);
		d->crc = mig_crc32c(d->crc, buf, n);
		d->rc = mig_stream_send_chunk(d->s, MIG_CHUNK_DATA, 0, buf, n);
		left -= n;
	}
	if (d->rc == 0) {
		d->rc = mig_stream_send_end(d->s);
	}
	free(buf);
	return NULL;
}

static int duplex_receive(struct mig_stream *s, struct duplex *d)
{
	uint8_t *buf = malloc(MIG_CHUNK_MAX_LEN);
	struct mig_chunk_hdr h;
	int rc = 0;

	for (;;) {
		ssize_t n = mig_stream_recv_chunk(s, &h, buf, MIG_CHUNK_MAX_LEN);

		if (n < 0) {
			rc = (int)n;
			break;
		}
		if (h.type == MIG_CHUNK_END) {
			break;
		}
		d->crc = mig_crc32c(d->crc, buf, (size_t)n);
		d->bytes += (uint64_t)n;
	}
	free(buf);
	return rc;
}

struct duplex_side {
	struct mig_listener *l;
	struct mig_stream *s; /* the client's, or NULL: accept one */
	struct duplex out, in;
	int rc;
};

static void *duplex_side_main(void *arg)
{
	struct duplex_side *x = arg;
	char err[256];
	pthread_t t;

	if (x->s == NULL &&
	    (x->rc = mig_listener_accept(x->l, 10000, &x->s, err, sizeof(err))) < 0) {
		fprintf(stderr, "rdma duplex accept: %s\n", err);
		return NULL;
	}
	x->out.s = x->s;
	pthread_create(&t, NULL, duplex_sender, &x->out);
	x->rc = duplex_receive(x->s, &x->in);
	pthread_join(t, NULL);
	if (x->rc < 0 || x->out.rc < 0) {
		fprintf(stderr, "rdma duplex: %s\n", mig_stream_errmsg(x->s));
	}
	return NULL;
}

static void test_duplex(uint64_t bytes)
{
	struct duplex_side srv = { .out = { .bytes = bytes + 3, .seed = 5 } };
	struct duplex_side cli = { .out = { .bytes = bytes, .seed = 6 } };
	struct mig_opts o;
	char err[256] = "";
	pthread_t t;

	rdma_opts(&o);
	CHECK_EQ_INT(mig_listen(&o, addr, 0, &srv.l, err, sizeof(err)), 0);
	if (srv.l == NULL) {
		return;
	}
	pthread_create(&t, NULL, duplex_side_main, &srv);
	CHECK_EQ_INT(mig_connect(&o, addr, mig_listener_port(srv.l), 5000, &cli.s, err,
				 sizeof(err)), 0);
	if (cli.s != NULL) {
		duplex_side_main(&cli);
	}
	pthread_join(t, NULL);
	CHECK_EQ_INT(cli.rc, 0);
	CHECK_EQ_INT(cli.out.rc, 0);
	CHECK_EQ_INT(srv.rc, 0);
	CHECK_EQ_INT(srv.out.rc, 0);
	CHECK_EQ_INT(srv.in.bytes, bytes);
	CHECK_EQ_INT(srv.in.crc, cli.out.crc);
	CHECK_EQ_INT(cli.in.bytes, bytes + 3);
	CHECK_EQ_INT(cli.in.crc, srv.out.crc);
	printf("rdma duplex: %llu bytes each way\n", (unsigned long long)bytes);
	mig_stream_free(cli.s);
	mig_stream_free(srv.s);
	mig_listener_free(srv.l);
}

int main(void)
{
	struct mig_rdma_probe p;
	struct mig_listener *l = NULL;
	struct mig_stream *s = NULL;
	struct mig_opts o;
	char err[256] = "";
	int fds, rc;

	signal(SIGPIPE, SIG_IGN);
	fds = ha_test_count_fds();
	rc = mig_rdma_probe(&p);
	CHECK_EQ_INT(rc, 0);
	printf("rdma probe: built %d, %u device(s)", p.built, p.n_devices);
	for (unsigned i = 0; i < p.n_devices && i < MIG_RDMA_PROBE_MAX; i++) {
		printf(" %s (%u/%u ports active)", p.dev[i].name,
		       p.dev[i].active_ports, p.dev[i].ports);
	}
	printf(", usable %d%s%s\n", p.usable, p.usable ? " at " : ": ",
	       p.usable ? p.addr : p.reason);

	addr = getenv("HA_TEST_RDMA_ADDR");
	if (!p.usable && addr == NULL) {
		/* What a misconfigured agent would do: fail with a reason. */
		rdma_opts(&o);
		rc = mig_listen(&o, "127.0.0.1", 0, &l, err, sizeof(err));
		printf("rdma listen without a device: %d (%s)\n", rc,
		       rc < 0 ? err : "ok");
		CHECK(rc < 0 ? err[0] != '\0' : l != NULL);
		mig_listener_free(l);
		rc = mig_connect(&o, "127.0.0.1", 7, 500, &s, err, sizeof(err));
		printf("rdma connect without a device: %d (%s)\n", rc, err);
		CHECK(rc < 0 && err[0] != '\0' && s == NULL);
		CHECK_EQ_INT(ha_test_count_fds(), fds);
		if (ha_test_done("test_migration_rdma") != 0) {
			return 1;
		}
		printf("skipped: no RDMA device (%s)\n",
		       p.built ? p.reason : "built without RDMA");
		return 77;
	}
	if (addr == NULL) {
		addr = p.addr;
	}
	snprintf(keyfile, sizeof(keyfile), "/tmp/test_migration_rdma.%d.key",
		 (int)getpid());
	{
		int fd = open(keyfile, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
		uint8_t k[32];
		uint64_t st = 77;

		fill_random(k, sizeof(k), &st);
		CHECK(fd >= 0 && write(fd, k, sizeof(k)) == (ssize_t)sizeof(k));
		close(fd);
	}
	test_echo(false);
	test_echo(true);
	test_big(64 * MIB, 0);
	test_big(16 * MIB, 50u * 1000 * 1000);
	test_pump_and_cancel();
	test_duplex(32 * MIB + 1);
	unlink(keyfile);
	CHECK_EQ_INT(ha_test_count_fds(), fds);
	return ha_test_done("test_migration_rdma");
}
