/*
 * mig_bench.c - throughput of the migration transport on loopback, against
 * a plain socket copy as the anchor.
 *
 *   mig-bench [--bytes N] [--chunk N] [--runs N] [--modes a,b,...]
 *
 * Modes:
 *   raw        write()/read() of the same buffer size on a TCP socket
 *   plain      chunks over TCP, encrypt = false, no checksum
 *   plain-crc  the same with CRC-32C on every chunk
 *   tls        TLS 1.3 PSK, the default priority (AES-128-GCM first)
 *   tls-chacha TLS 1.3 PSK with ChaCha20-Poly1305
 *   pump       plain, fed from a pipe and written into a pipe by the fd
 *              pumps (the QEMU path), producer and consumer threads
 *
 * Sender and receiver are two threads of this process (one core each on a
 * two-core machine). The modes run in turn, --runs rounds, so that a noisy
 * moment of the machine hits each alike; the median is reported in MB/s
 * (10^6 bytes) and as a ratio to the median of raw, with the CPU time
 * both threads spent per GiB (less sensitive to a busy machine than the
 * rate). --sockbuf N fixes the
 * socket buffers of our modes (default: the kernel's autotuning).
 */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <arpa/inet.h>

#include "migration.h"

#define MAX_RUNS 15
#define MAX_MODES 8

static uint64_t opt_bytes = 1024ull * 1024 * 1024;
static uint32_t opt_chunk = 1024 * 1024;
static int opt_runs = 3;
static uint32_t opt_sockbuf;
static uint8_t *payload;
static char keyfile[64];

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void die(const char *what, const char *why)
{
	fprintf(stderr, "mig-bench: %s: %s\n", what, why);
	exit(1);
}

/* ---- raw TCP ------------------------------------------------------------ */

struct raw_rx {
	int lfd;
	uint64_t got;
};

static void *raw_receiver(void *arg)
{
	struct raw_rx *r = arg;
	uint8_t *buf = malloc(opt_chunk);
	int fd = accept(r->lfd, NULL, NULL);

	for (;;) {
		ssize_t n = read(fd, buf, opt_chunk);

		if (n <= 0) {
			break;
		}
		r->got += (uint64_t)n;
	}
	close(fd);
	free(buf);
	return NULL;
}

static double run_raw(void)
{
	struct sockaddr_in a = { .sin_family = AF_INET };
	socklen_t al = sizeof(a);
	struct raw_rx r = { 0 };
	pthread_t t;
	uint64_t sent = 0;
	double t0, t1;
	int fd, one = 1;

	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	r.lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (bind(r.lfd, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(r.lfd, 1) < 0 ||
	    getsockname(r.lfd, (struct sockaddr *)&a, &al) < 0) {
		die("raw listen", strerror(errno));
	}
	pthread_create(&t, NULL, raw_receiver, &r);
	fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0) {
		die("raw connect", strerror(errno));
	}
	t0 = now_s();
	while (sent < opt_bytes) {
		size_t n = opt_bytes - sent < opt_chunk ? (size_t)(opt_bytes - sent)
							: opt_chunk;
		ssize_t w = write(fd, payload, n);

		if (w <= 0) {
			die("raw write", strerror(errno));
		}
		sent += (uint64_t)w;
	}
	close(fd);
	pthread_join(t, NULL);
	t1 = now_s();
	close(r.lfd);
	if (r.got != opt_bytes) {
		die("raw", "short transfer");
	}
	return t1 - t0;
}

/* ---- our streams -------------------------------------------------------- */

struct rx {
	struct mig_listener *l;
	bool pump;
	uint64_t got;
	int rc;
	char err[256];
};

static void *pipe_consumer(void *arg)
{
	int *fdp = arg;
	uint8_t *buf = malloc(1 << 20);
	uint64_t *got = calloc(1, sizeof(*got));

	for (;;) {
		ssize_t n = read(*fdp, buf, 1 << 20);

		if (n <= 0) {
			break;
		}
		*got += (uint64_t)n;
	}
	free(buf);
	return got;
}

static void *stream_receiver(void *arg)
{
	struct rx *r = arg;
	struct mig_stream *s = NULL;
	struct mig_chunk_hdr h;
	uint8_t *buf = malloc(opt_chunk);

	r->rc = mig_listener_accept(r->l, 10000, &s, r->err, sizeof(r->err));
	if (r->rc < 0) {
		free(buf);
		return NULL;
	}
	if (r->pump) {
		pthread_t t;
		void *got;
		int p[2];

		if (pipe2(p, O_CLOEXEC) < 0) {
			die("pipe", strerror(errno));
		}
		fcntl(p[1], F_SETPIPE_SZ, 1 << 20);
		pthread_create(&t, NULL, pipe_consumer, &p[0]);
		r->rc = mig_stream_pump_stream_to_fd(s, p[1]);
		close(p[1]);
		pthread_join(t, &got);
		close(p[0]);
		r->got = *(uint64_t *)got;
		free(got);
	} else {
		for (;;) {
			ssize_t n = mig_stream_recv_chunk(s, &h, buf, opt_chunk);

			if (n < 0) {
				r->rc = (int)n;
				break;
			}
			if (h.type == MIG_CHUNK_END) {
				break;
			}
			r->got += (uint64_t)n;
		}
	}
	if (r->rc < 0) {
		snprintf(r->err, sizeof(r->err), "%s", mig_stream_errmsg(s));
	}
	mig_stream_free(s);
	free(buf);
	return NULL;
}

static void *pipe_producer(void *arg)
{
	int fd = *(int *)arg;
	uint64_t sent = 0;

	while (sent < opt_bytes) {
		size_t n = opt_bytes - sent < opt_chunk ? (size_t)(opt_bytes - sent)
							: opt_chunk;
		ssize_t w = write(fd, payload, n);

		if (w <= 0) {
			break;
		}
		sent += (uint64_t)w;
	}
	close(fd);
	return NULL;
}

static double run_stream(bool encrypt, bool crc, const char *prio, bool pump,
			 char *cipher, size_t cipherlen)
{
	struct rx r = { .pump = pump };
	struct mig_stream *s = NULL;
	struct mig_opts o;
	pthread_t t;
	uint64_t sent = 0;
	char err[256];
	double t0, t1;

	mig_opts_defaults(&o);
	o.encrypt = encrypt;
	o.checksum = crc;
	o.max_chunk = opt_chunk;
	o.tls_priority = prio;
	o.sockbuf = opt_sockbuf;
	if (encrypt && mig_key_load(keyfile, &o.key, err, sizeof(err)) < 0) {
		die("key", err);
	}
	if (mig_listen(&o, "127.0.0.1", 0, &r.l, err, sizeof(err)) < 0) {
		die("listen", err);
	}
	pthread_create(&t, NULL, stream_receiver, &r);
	if (mig_connect(&o, "127.0.0.1", mig_listener_port(r.l), 5000, &s, err,
			sizeof(err)) < 0) {
		die("connect", err);
	}
	snprintf(cipher, cipherlen, "%s", mig_stream_cipher(s));
	t0 = now_s();
	if (pump) {
		pthread_t pt;
		int p[2];

		if (pipe2(p, O_CLOEXEC) < 0) {
			die("pipe", strerror(errno));
		}
		fcntl(p[1], F_SETPIPE_SZ, 1 << 20);
		pthread_create(&pt, NULL, pipe_producer, &p[1]);
		if (mig_stream_pump_fd_to_stream(s, p[0]) < 0) {
			die("pump", mig_stream_errmsg(s));
		}
		pthread_join(pt, NULL);
		close(p[0]);
		sent = opt_bytes;
	}
	while (sent < opt_bytes) {
		size_t n = opt_bytes - sent < opt_chunk ? (size_t)(opt_bytes - sent)
							: opt_chunk;

		if (mig_stream_send_chunk(s, MIG_CHUNK_DATA, 0, payload, n) < 0) {
			die("send", mig_stream_errmsg(s));
		}
		sent += n;
	}
	if (mig_stream_send_end(s) < 0) {
		die("send", mig_stream_errmsg(s));
	}
	pthread_join(t, NULL);
	t1 = now_s();
	mig_stream_free(s);
	mig_listener_free(r.l);
	mig_key_wipe(&o.key);
	if (r.rc < 0) {
		die("receive", r.err);
	}
	if (r.got != opt_bytes) {
		die("stream", "short transfer");
	}
	return t1 - t0;
}

/* ---- driver ------------------------------------------------------------- */

/* CPU seconds of the whole process (both threads), user and system. */
static double cpu_s(void)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
	       (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

static double run_mode(const char *mode, char *cipher, size_t cipherlen)
{
	snprintf(cipher, cipherlen, "-");
	if (strcmp(mode, "raw") == 0) {
		return run_raw();
	}
	if (strcmp(mode, "plain") == 0) {
		return run_stream(false, false, NULL, false, cipher, cipherlen);
	}
	if (strcmp(mode, "plain-crc") == 0) {
		return run_stream(false, true, NULL, false, cipher, cipherlen);
	}
	if (strcmp(mode, "tls") == 0) {
		return run_stream(true, false, NULL, false, cipher, cipherlen);
	}
	if (strcmp(mode, "tls-chacha") == 0) {
		return run_stream(true, false,
				  "NORMAL:-VERS-ALL:+VERS-TLS1.3:-KX-ALL:+ECDHE-PSK:"
				  "-CIPHER-ALL:+CHACHA20-POLY1305",
				  false, cipher, cipherlen);
	}
	if (strcmp(mode, "pump") == 0) {
		return run_stream(false, false, NULL, true, cipher, cipherlen);
	}
	die(mode, "unknown mode");
	return 0;
}

static void make_key(void)
{
	uint8_t k[32];
	int fd;

	snprintf(keyfile, sizeof(keyfile), "/tmp/mig-bench.XXXXXX");
	fd = mkstemp(keyfile);
	if (fd < 0) {
		die("key file", strerror(errno));
	}
	for (size_t i = 0; i < sizeof(k); i++) {
		k[i] = (uint8_t)rand();
	}
	if (fchmod(fd, 0600) < 0 || write(fd, k, sizeof(k)) != (ssize_t)sizeof(k)) {
		die("key file", strerror(errno));
	}
	close(fd);
}

int main(int argc, char **argv)
{
	char modes[256] = "raw,plain,plain-crc,tls,tls-chacha,pump";
	static double rates[MAX_MODES][MAX_RUNS], cpu[MAX_MODES][MAX_RUNS];
	static char cipher[MAX_MODES][64];
	const char *mode[MAX_MODES];
	int n_modes = 0;
	double raw_rate = 0;

	signal(SIGPIPE, SIG_IGN);
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--bytes") == 0 && i + 1 < argc) {
			opt_bytes = strtoull(argv[++i], NULL, 0);
		} else if (strcmp(argv[i], "--chunk") == 0 && i + 1 < argc) {
			opt_chunk = (uint32_t)strtoul(argv[++i], NULL, 0);
		} else if (strcmp(argv[i], "--sockbuf") == 0 && i + 1 < argc) {
			opt_sockbuf = (uint32_t)strtoul(argv[++i], NULL, 0);
		} else if (strcmp(argv[i], "--runs") == 0 && i + 1 < argc) {
			opt_runs = atoi(argv[++i]);
		} else if (strcmp(argv[i], "--modes") == 0 && i + 1 < argc) {
			snprintf(modes, sizeof(modes), "%s", argv[++i]);
		} else {
			fprintf(stderr, "usage: %s [--bytes N] [--chunk N] [--runs N] "
				"[--modes raw,plain,plain-crc,tls,tls-chacha,pump]\n",
				argv[0]);
			return 2;
		}
	}
	if (opt_runs < 1 || opt_runs > MAX_RUNS || opt_chunk < MIG_CHUNK_MIN_LEN ||
	    opt_chunk > MIG_CHUNK_MAX_LEN || opt_bytes == 0) {
		die("options", "out of range");
	}
	payload = malloc(opt_chunk);
	for (uint32_t i = 0; i < opt_chunk; i++) {
		payload[i] = (uint8_t)(i * 2654435761u >> 24);
	}
	make_key();
	for (char *save = NULL, *m = strtok_r(modes, ",", &save); m != NULL;
	     m = strtok_r(NULL, ",", &save)) {
		if (n_modes == MAX_MODES) {
			die("options", "too many modes");
		}
		mode[n_modes++] = m;
	}
	printf("%llu bytes per run, %u-byte chunks, socket buffers %s, median "
	       "of %d runs (modes interleaved)\n",
	       (unsigned long long)opt_bytes, opt_chunk,
	       opt_sockbuf ? "fixed" : "autotuned", opt_runs);
	/* Round-robin, so that a noisy moment hits every mode alike. */
	for (int r = 0; r < opt_runs; r++) {
		for (int i = 0; i < n_modes; i++) {
			double c0 = cpu_s();

			rates[i][r] = (double)opt_bytes /
				      run_mode(mode[i], cipher[i], sizeof(cipher[i])) / 1e6;
			cpu[i][r] = (cpu_s() - c0) * (1024.0 * 1024 * 1024) /
				    (double)opt_bytes;
		}
	}
	printf("| mode | MB/s | vs raw | runs (MB/s) | CPU s/GiB | cipher |\n");
	printf("|---|---|---|---|---|---|\n");
	for (int i = 0; i < n_modes; i++) {
		char runs[256] = "";
		size_t off = 0;
		double sorted[MAX_RUNS] = { 0 }, med, cmed;

		for (int r = 0; r < opt_runs; r++) {
			off += (size_t)snprintf(runs + off, sizeof(runs) - off, "%s%.0f",
						r ? " " : "", rates[i][r]);
			if (off >= sizeof(runs)) {
				off = sizeof(runs) - 1;
			}
			sorted[r] = rates[i][r];
		}
		qsort(sorted, (size_t)opt_runs, sizeof(double), cmp_double);
		med = sorted[opt_runs / 2];
		for (int r = 0; r < opt_runs; r++) {
			sorted[r] = cpu[i][r];
		}
		qsort(sorted, (size_t)opt_runs, sizeof(double), cmp_double);
		cmed = sorted[opt_runs / 2];
		if (strcmp(mode[i], "raw") == 0) {
			raw_rate = med;
		}
		if (raw_rate > 0) {
			printf("| %s | %.0f | %.2fx | %s | %.2f | %s |\n", mode[i],
			       med, med / raw_rate, runs, cmed, cipher[i]);
		} else {
			printf("| %s | %.0f | - | %s | %.2f | %s |\n", mode[i], med,
			       runs, cmed, cipher[i]);
		}
	}
	unlink(keyfile);
	free(payload);
	return 0;
}
