/*
 * test_agent_mig.c - the agents' migration stream over loopback: the
 * CONTROL hello, the relay of a driver's socket both ways (TLS and
 * plain), the driver's failure on the destination reaching the source as
 * the first error, different cluster keys and a stranger's hello refused
 * while the destination waits on, key file problems named, cancel, and
 * no fd left open.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>

#include "agent_mig.h"
#include "harness.h"
#include "util.h"

#define MIB (1024u * 1024u)

static char tmpdir[64];
static char key_a[128], key_b[128], key_loose[128];

static void write_key(const char *path, unsigned seed, mode_t mode)
{
	uint8_t buf[32];
	int fd;

	for (size_t i = 0; i < sizeof(buf); i++) {
		buf[i] = (uint8_t)(seed * 131 + i * 7);
	}
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
	CHECK(fd >= 0);
	fchmod(fd, mode);
	CHECK_EQ_INT(write(fd, buf, sizeof(buf)), sizeof(buf));
	close(fd);
}

static void cfg_init(struct ha_config *cfg, const char *key, bool encrypt)
{
	ha_config_defaults(cfg);
	snprintf(cfg->mig_key_file, sizeof(cfg->mig_key_file), "%s", key);
	cfg->mig_encrypt = encrypt;
}

static uint8_t pattern(uint64_t i)
{
	return (uint8_t)(i * 2654435761u >> 13);
}

/* ---- fake drivers -------------------------------------------------------- */

/* Source: writes @bytes of a pattern, then reads the answer line. */
static int drv_send(int fd, uint64_t bytes, char *answer, size_t len)
{
	uint8_t buf[65536];
	uint64_t off = 0;
	size_t got = 0;

	while (off < bytes) {
		size_t n = bytes - off < sizeof(buf) ? (size_t)(bytes - off) : sizeof(buf);
		ssize_t w;

		for (size_t i = 0; i < n; i++) {
			buf[i] = pattern(off + i);
		}
		w = send(fd, buf, n, MSG_NOSIGNAL);
		if (w <= 0) {
			return -EPIPE;
		}
		off += (uint64_t)w;
	}
	while (got + 1 < len) {
		ssize_t r = read(fd, answer + got, 1);

		if (r <= 0) {
			break;
		}
		if (answer[got++] == '\n') {
			break;
		}
	}
	answer[got] = 0;
	return strcmp(answer, "ok\n") == 0 ? 0 : -EIO;
}

/* Destination: reads @bytes, checks the pattern, answers "ok". With
 * @fail_after, gives up after that many bytes instead. */
static int drv_recv(int fd, uint64_t bytes, uint64_t fail_after)
{
	uint8_t buf[65536];
	uint64_t off = 0;

	while (off < bytes) {
		ssize_t r = read(fd, buf, sizeof(buf));

		if (r <= 0) {
			return -EIO;
		}
		for (ssize_t i = 0; i < r; i++) {
			if (buf[i] != pattern(off + (uint64_t)i)) {
				return -EBADMSG;
			}
		}
		off += (uint64_t)r;
		if (fail_after && off >= fail_after) {
			return -EIO;
		}
	}
	return write(fd, "ok\n", 3) == 3 ? 0 : -EIO;
}

/* ---- the destination in a thread ---------------------------------------- */

struct dst {
	struct ha_config cfg;
	struct agent_mig_params p;
	struct mig_listener *l;
	pthread_t t;
	uint64_t bytes;
	uint64_t fail_after;
	int accept_rc, rc;
	char err[512];
	struct mig_counters c;
	char cipher[64];
};

static void *dst_main(void *arg)
{
	struct dst *d = arg;
	struct agent_mig_xfer *x = NULL;
	char derr[256] = "";
	int fd, rc;

	d->accept_rc = agent_mig_accept(d->l, &d->p, 10000, &x, d->err, sizeof(d->err));
	if (d->accept_rc < 0) {
		return NULL;
	}
	rc = agent_mig_relay_start(x, &fd, d->err, sizeof(d->err));
	if (rc == 0) {
		rc = drv_recv(fd, d->bytes, d->fail_after);
		if (rc < 0) {
			snprintf(derr, sizeof(derr), "restore failed: boom");
		}
	}
	d->rc = agent_mig_finish(x, rc, derr, d->err, sizeof(d->err));
	agent_mig_counters(x, &d->c);
	snprintf(d->cipher, sizeof(d->cipher), "%s", agent_mig_cipher(x));
	agent_mig_free(x);
	return NULL;
}

static uint16_t dst_start(struct dst *d, const char *key, bool encrypt, const char *guest,
			  uint64_t id)
{
	char err[512];
	int rc;

	cfg_init(&d->cfg, key, encrypt);
	d->p.cfg = &d->cfg;
	d->p.guest = guest;
	d->p.id = id;
	rc = agent_mig_listen(&d->p, &d->l, err, sizeof(err));
	CHECK_EQ_INT(rc, 0);
	if (rc < 0) {
		fprintf(stderr, "listen: %s\n", err);
		return 0;
	}
	pthread_create(&d->t, NULL, dst_main, d);
	return mig_listener_port(d->l);
}

static void dst_join(struct dst *d)
{
	pthread_join(d->t, NULL);
	mig_listener_free(d->l);
	d->l = NULL;
}

/* ---- cases -------------------------------------------------------------- */

static void relay_case(bool encrypt, uint64_t bytes, uint64_t rate)
{
	struct dst d = { .bytes = bytes };
	struct ha_config cfg;
	struct agent_mig_params p = { .cfg = &cfg, .guest = "g1", .id = 42, .rate = rate };
	struct agent_mig_xfer *x = NULL;
	struct mig_counters c;
	char err[512] = "", answer[64] = "";
	uint16_t port = dst_start(&d, key_a, encrypt, "g1", 42);
	int fd, rc;

	cfg_init(&cfg, key_a, encrypt);
	rc = agent_mig_connect(&p, "127.0.0.1", port, &x, err, sizeof(err));
	CHECK_EQ_INT(rc, 0);
	if (rc < 0) {
		fprintf(stderr, "connect: %s\n", err);
		shutdown(mig_listener_fd(d.l), SHUT_RDWR);
		dst_join(&d);
		return;
	}
	CHECK(strcmp(agent_mig_transport(x), "tcp") == 0);
	CHECK(strcmp(agent_mig_cipher(x), encrypt ? "TLS1.3 AES-128-GCM" : "plain") == 0);
	CHECK_EQ_INT(agent_mig_relay_start(x, &fd, err, sizeof(err)), 0);
	rc = drv_send(fd, bytes, answer, sizeof(answer));
	CHECK_EQ_INT(rc, 0);
	rc = agent_mig_finish(x, rc, "", err, sizeof(err));
	CHECK_EQ_INT(rc, 0);
	if (rc < 0) {
		fprintf(stderr, "source: %s\n", err);
	}
	agent_mig_counters(x, &c);
	/* the driver's bytes, the hellos and nothing else */
	CHECK(c.payload_sent >= bytes && c.payload_sent < bytes + 1024);
	CHECK(c.payload_recv >= 3 && c.payload_recv < 1024);
	if (rate) {
		double r = (double)bytes * 1000.0 / (double)c.elapsed_ms;

		/* The cap is a ceiling: a busy machine only makes the relay
		 * slower, so how far below the cap it runs is a figure, not a
		 * check (it once failed under load at r <= 0.8 * rate). */
		printf("relay at cap %llu B/s: %.0f B/s\n", (unsigned long long)rate, r);
		CHECK(r < 1.1 * (double)rate);
	}
	agent_mig_free(x);
	dst_join(&d);
	CHECK_EQ_INT(d.accept_rc, 0);
	CHECK_EQ_INT(d.rc, 0);
	if (d.rc < 0) {
		fprintf(stderr, "destination: %s\n", d.err);
	}
	CHECK(d.c.payload_recv >= bytes);
	CHECK(strcmp(d.cipher, encrypt ? "TLS1.3 AES-128-GCM" : "plain") == 0);
	printf("relay %s: %llu bytes, answer \"%.2s\"\n", encrypt ? "tls" : "plain",
	       (unsigned long long)bytes, answer);
}

/* The source's end: connected to @port and relaying, the driver's end of
 * the relay in *fd; NULL (the destination joined) when it failed. */
static struct agent_mig_xfer *src_open(const struct agent_mig_params *p, struct dst *d,
				       uint16_t port, int *fd)
{
	struct agent_mig_xfer *x = NULL;
	char err[512] = "";

	CHECK_EQ_INT(agent_mig_connect(p, "127.0.0.1", port, &x, err, sizeof(err)), 0);
	if (x == NULL) {
		fprintf(stderr, "connect: %s\n", err);
		dst_join(d);
		return NULL;
	}
	CHECK_EQ_INT(agent_mig_relay_start(x, fd, err, sizeof(err)), 0);
	return x;
}

/* The destination's driver fails: the source reports the reason. */
static void dst_failure_case(void)
{
	struct dst d = { .bytes = 32 * MIB, .fail_after = 2 * MIB };
	struct ha_config cfg;
	struct agent_mig_params p = { .cfg = &cfg, .guest = "g1", .id = 43 };
	struct agent_mig_xfer *x = NULL;
	char err[512] = "", answer[64];
	uint16_t port = dst_start(&d, key_a, true, "g1", 43);
	int fd, rc;

	cfg_init(&cfg, key_a, true);
	x = src_open(&p, &d, port, &fd);
	if (x == NULL) {
		return;
	}
	rc = drv_send(fd, 32 * MIB, answer, sizeof(answer));
	CHECK(rc < 0);
	rc = agent_mig_finish(x, rc, "writing the images: Broken pipe", err, sizeof(err));
	CHECK_EQ_INT(rc, -ECONNABORTED);
	if (strstr(err, "127.0.0.1:") != err || strstr(err, "peer aborted: restore failed: boom") ==
						      NULL) {
		fprintf(stderr, "source error \"%s\"\n", err);
		CHECK(0);
	}
	agent_mig_free(x);
	dst_join(&d);
	CHECK_EQ_INT(d.rc, -EIO);
	CHECK(strcmp(d.err, "restore failed: boom") == 0);
}

/* Another key, then a stranger's hello: refused, the destination waits
 * on and says why when it stops. */
static void refusal_case(void)
{
	struct dst d = { .bytes = 1 };
	struct ha_config cfg;
	struct agent_mig_params p = { .cfg = &cfg, .guest = "g1", .id = 44 };
	struct agent_mig_xfer *x = NULL;
	char err[512] = "";
	uint16_t port = dst_start(&d, key_a, true, "g1", 44);
	int rc;

	cfg_init(&cfg, key_b, true);
	rc = agent_mig_connect(&p, "127.0.0.1", port, &x, err, sizeof(err));
	CHECK_EQ_INT(rc, -EKEYREJECTED);
	CHECK(x == NULL);
	if (strstr(err, "another cluster key") == NULL) {
		fprintf(stderr, "wrong key: \"%s\"\n", err);
		CHECK(0);
	}
	cfg_init(&cfg, key_a, true);
	p.id = 45;
	rc = agent_mig_connect(&p, "127.0.0.1", port, &x, err, sizeof(err));
	CHECK_EQ_INT(rc, -ECONNABORTED);
	if (strstr(err, "peer aborted: this side expects the source of migration 44 of g1, "
			"the peer is the source of migration 45 of g1") == NULL) {
		fprintf(stderr, "wrong id: \"%s\"\n", err);
		CHECK(0);
	}
	/* encryption on one side only */
	cfg_init(&cfg, key_a, false);
	p.id = 44;
	rc = agent_mig_connect(&p, "127.0.0.1", port, &x, err, sizeof(err));
	CHECK(rc < 0);
	/* the cluster aborts: the waiting destination wakes up */
	usleep(200 * 1000);
	shutdown(mig_listener_fd(d.l), SHUT_RDWR);
	dst_join(&d);
	CHECK(d.accept_rc < 0);
	if (strstr(d.err, "stopped waiting for the source") == NULL ||
	    strstr(d.err, "refused before:") == NULL) {
		fprintf(stderr, "destination: \"%s\"\n", d.err);
		CHECK(0);
	}
}

/*
 * Strangers that connect to the destination's port and say nothing do not
 * keep the real source out (they held the listener for the I/O timeout
 * each, and the destination's wait ran out first). The destination binds
 * the address it is told (the host's cluster address), not every one.
 */
static void silent_peer_case(void)
{
	struct dst d = { .bytes = 1 * MIB };
	struct ha_config cfg;
	struct agent_mig_params p = { .cfg = &cfg, .guest = "g1", .id = 46 };
	struct agent_mig_xfer *x = NULL;
	struct sockaddr_in a = { .sin_family = AF_INET };
	char answer[64] = "";
	int silent[4], fd, rc;
	uint16_t port;

	d.p.listen_addr = "127.0.0.1";
	port = dst_start(&d, key_a, true, "g1", 46);
	a.sin_port = htons(port);
	inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
	for (size_t i = 0; i < HA_ARRAY_SIZE(silent); i++) {
		silent[i] = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
		CHECK_EQ_INT(connect(silent[i], (struct sockaddr *)&a, sizeof(a)), 0);
	}
	/* bound to 127.0.0.1 only */
	inet_pton(AF_INET, "127.0.0.2", &a.sin_addr);
	fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	CHECK(connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0 && errno == ECONNREFUSED);
	close(fd);
	cfg_init(&cfg, key_a, true);
	x = src_open(&p, &d, port, &fd);
	if (x != NULL) {
		rc = drv_send(fd, 1 * MIB, answer, sizeof(answer));
		CHECK_EQ_INT(rc, 0);
		CHECK_EQ_INT(agent_mig_finish(x, rc, "", answer, sizeof(answer)), 0);
		agent_mig_free(x);
		dst_join(&d);
		CHECK_EQ_INT(d.accept_rc, 0);
		CHECK_EQ_INT(d.rc, 0);
	}
	for (size_t i = 0; i < HA_ARRAY_SIZE(silent); i++) {
		close(silent[i]);
	}
	/* where a destination listens */
	cfg_init(&cfg, key_a, true);
	CHECK(strcmp(agent_mig_listen_addr(&cfg, "10.0.0.5"), "10.0.0.5") == 0);
	CHECK(agent_mig_listen_addr(&cfg, "") == NULL);
	snprintf(cfg.mig_listen_address, sizeof(cfg.mig_listen_address), "*");
	CHECK(agent_mig_listen_addr(&cfg, "10.0.0.5") == NULL);
	snprintf(cfg.mig_listen_address, sizeof(cfg.mig_listen_address), "192.0.2.1");
	CHECK(strcmp(agent_mig_listen_addr(&cfg, "10.0.0.5"), "192.0.2.1") == 0);
}

/* [migration] network: which of a host's addresses is its migration one */
static void pick_address_case(void)
{
	static const char *const addrs[] = { "127.0.0.1", "::1", "10.213.0.1", "fe80::1",
					     "10.1.0.11", "10.1.0.12", "fd00:1::11" };
	size_t n = HA_ARRAY_SIZE(addrs);
	char out[64];

	/* the first address inside the network, in interface order */
	CHECK_EQ_INT(agent_mig_pick_address("10.1.0.0/24", addrs, n, out, sizeof(out)), 0);
	CHECK(strcmp(out, "10.1.0.11") == 0);
	CHECK_EQ_INT(agent_mig_pick_address("10.1.0.12", addrs, n, out, sizeof(out)), 0);
	CHECK(strcmp(out, "10.1.0.12") == 0);
	CHECK_EQ_INT(agent_mig_pick_address("fd00:1::/64", addrs, n, out, sizeof(out)), 0);
	CHECK(strcmp(out, "fd00:1::11") == 0);
	CHECK_EQ_INT(agent_mig_pick_address("10.0.0.0/8", addrs, n, out, sizeof(out)), 0);
	CHECK(strcmp(out, "10.213.0.1") == 0);
	/* none in it, no network, a bad one: the caller uses the cluster address */
	snprintf(out, sizeof(out), "untouched");
	CHECK_EQ_INT(agent_mig_pick_address("10.2.0.0/24", addrs, n, out, sizeof(out)),
		     -ENOENT);
	CHECK_EQ_INT(agent_mig_pick_address("", addrs, n, out, sizeof(out)), -ENOENT);
	CHECK_EQ_INT(agent_mig_pick_address(NULL, addrs, n, out, sizeof(out)), -ENOENT);
	CHECK_EQ_INT(agent_mig_pick_address("10.1.0.0/24", addrs, 0, out, sizeof(out)),
		     -ENOENT);
	CHECK_EQ_INT(agent_mig_pick_address("10.1.0.0/40", addrs, n, out, sizeof(out)),
		     -EINVAL);
	CHECK(strcmp(out, "untouched") == 0);
	/* this host's own interfaces: loopback is up everywhere */
	CHECK_EQ_INT(agent_mig_local_address("127.0.0.0/8", out, sizeof(out)), 0);
	CHECK(strncmp(out, "127.", 4) == 0);
}

static void key_file_case(void)
{
	struct ha_config cfg;
	struct agent_mig_params p = { .cfg = &cfg, .guest = "g1", .id = 1 };
	struct mig_listener *l = NULL;
	char err[512], missing[160];

	snprintf(missing, sizeof(missing), "%s/none.key", tmpdir);
	cfg_init(&cfg, missing, true);
	CHECK_EQ_INT(agent_mig_listen(&p, &l, err, sizeof(err)), -ENOENT);
	CHECK(strstr(err, missing) != NULL && strstr(err, "No such file") != NULL);
	cfg_init(&cfg, key_loose, true);
	CHECK_EQ_INT(agent_mig_listen(&p, &l, err, sizeof(err)), -EPERM);
	CHECK(strstr(err, key_loose) != NULL && strstr(err, "chmod 600") != NULL);
	/* a loose key is refused with encryption off too */
	cfg_init(&cfg, key_loose, false);
	CHECK_EQ_INT(agent_mig_listen(&p, &l, err, sizeof(err)), -EPERM);
	/* no key and no encryption: plain, unauthenticated, allowed */
	cfg_init(&cfg, missing, false);
	CHECK_EQ_INT(agent_mig_listen(&p, &l, err, sizeof(err)), 0);
	mig_listener_free(l);
	/* rdma with encryption on is refused with the reason */
	cfg_init(&cfg, key_a, true);
	p.transport = "rdma";
	CHECK(agent_mig_listen(&p, &l, err, sizeof(err)) < 0);
	CHECK(strstr(err, "rdma") != NULL);
	printf("rdma with encrypt: %s\n", err);
	p.transport = "udp";
	CHECK_EQ_INT(agent_mig_listen(&p, &l, err, sizeof(err)), -EINVAL);
	CHECK(strstr(err, "'udp'") != NULL);
}

struct canceller {
	struct agent_mig_xfer *x;
};

static void *cancel_main(void *arg)
{
	struct canceller *c = arg;

	usleep(300 * 1000);
	agent_mig_cancel(c->x);
	return NULL;
}

/* The cluster aborts while the source's driver waits for its answer. */
static void cancel_case(void)
{
	struct dst d = { .bytes = 1 * MIB, .fail_after = 0 };
	struct ha_config cfg;
	struct agent_mig_params p = { .cfg = &cfg, .guest = "g1", .id = 46 };
	struct agent_mig_xfer *x = NULL;
	struct canceller c;
	char err[512] = "", answer[64];
	pthread_t t;
	uint16_t port = dst_start(&d, key_a, true, "g1", 46);
	int fd, rc;

	cfg_init(&cfg, key_a, true);
	x = src_open(&p, &d, port, &fd);
	if (x == NULL) {
		return;
	}
	c.x = x;
	pthread_create(&t, NULL, cancel_main, &c);
	/* more than the destination reads: the source's driver blocks */
	rc = drv_send(fd, 64 * MIB, answer, sizeof(answer));
	pthread_join(t, NULL);
	CHECK(rc < 0);
	rc = agent_mig_finish(x, rc, "send failed", err, sizeof(err));
	CHECK_EQ_INT(rc, -ECANCELED);
	CHECK(strstr(err, "cancelled") != NULL);
	agent_mig_free(x);
	dst_join(&d);
	CHECK(d.rc < 0);
}

int main(void)
{
	int fds;

	signal(SIGPIPE, SIG_IGN);
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/test_agent_mig.XXXXXX");
	if (mkdtemp(tmpdir) == NULL) {
		perror("mkdtemp");
		return 1;
	}
	snprintf(key_a, sizeof(key_a), "%s/a.key", tmpdir);
	snprintf(key_b, sizeof(key_b), "%s/b.key", tmpdir);
	snprintf(key_loose, sizeof(key_loose), "%s/loose.key", tmpdir);
	write_key(key_a, 1, 0600);
	write_key(key_b, 2, 0600);
	write_key(key_loose, 1, 0644);
	fds = ha_test_count_fds();
	pick_address_case();

	relay_case(true, 24 * MIB + 5, 0);
	relay_case(false, 24 * MIB + 5, 0);
	relay_case(true, 3 * MIB, 10u * 1000 * 1000);
	relay_case(true, 0, 0);
	dst_failure_case();
	refusal_case();
	silent_peer_case();
	key_file_case();
	cancel_case();
	CHECK_EQ_INT(ha_test_count_fds(), fds);

	unlink(key_a);
	unlink(key_b);
	unlink(key_loose);
	rmdir(tmpdir);
	return ha_test_done("test_agent_mig");
}
