/*
 * hactl-workload.c - the checkable guest workload.
 *
 * Runs inside containers and domains. Its state lives only in memory so
 * that tests can tell a guest that was moved live (same boot_id, counter
 * continued) from one that was restarted (new boot_id, counter from 0):
 *
 *  - a counter incremented every 10 ms of running time;
 *  - boot_id, 128 random bits chosen at process start;
 *  - a buffer of --mem bytes, every page tagged with a checksum derived
 *    from boot_id, dirtied at --dirty bytes per second (pages spread over
 *    the buffer) and re-verified continuously: pages damaged by a broken
 *    checkpoint or migration are counted in "mem_errors".
 *
 * It answers every TCP connection on --port with one line of JSON and
 * closes it. One thread, one ppoll() loop with a 10 ms tick.
 *
 * CRIU: only what CRIU checkpoints without options is used: anonymous
 * memory, one listening TCP socket, no signalfd/inotify/io_uring/threads.
 * Connections never outlive one loop iteration, so a dump never meets an
 * established socket (which would need --tcp-established).
 *
 * The binary is linked statically and runs in a bare busybox rootfs or
 * initramfs, so it uses neither libqb logging nor name resolution: it
 * prints plain lines to stderr and takes numeric addresses only.
 *
 * Exit codes: 0 clean stop (SIGTERM/SIGINT) or query answered, 1 query
 * failed, 2 bad usage, 3 cannot listen, 4 cannot allocate memory.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* accept4, ppoll; standalone builds too */
#endif
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#ifndef GRND_INSECURE
#define GRND_INSECURE 0x0004 /* Linux 5.6 */
#endif

#define TICK_MS 10
/* A wake-up later than this many ticks means the process was frozen
 * (checkpoint, migration downtime, SIGSTOP) or the clock moved: the frozen
 * time is not counted. */
#define MAX_CATCHUP_TICKS 100
/* A gap this long between two wake-ups of the loop is a stall (the process
 * did not run: frozen, stopped, or starved), reported as stall_last_ms. */
#define STALL_MIN_MS 100
#define DEFAULT_PORT 7000
#define DEFAULT_MEM (16ULL << 20)
#define DEFAULT_DIRTY (1ULL << 20)
#define ACCEPT_PER_ROUND 64
#define DRAIN_MAX 4096
/* Every page is verified about every VERIFY_SWEEP_TICKS ticks (2 s), but
 * never more than VERIFY_MAX_PER_TICK pages per tick (bounded work: a 4 GiB
 * buffer takes about 5 s per sweep). */
#define VERIFY_SWEEP_TICKS 200
#define VERIFY_MAX_PER_TICK 2048
#define QUERY_MAX 4096
#define QUERY_TIMEOUT_MS 2000

enum exit_code {
	EXIT_OK = 0,
	EXIT_QUERY_FAILED = 1,
	EXIT_USAGE = 2,
	EXIT_LISTEN = 3,
	EXIT_NOMEM = 4,
};

struct workload {
	/* identity and counter */
	uint64_t counter;
	char boot_id[33];
	uint64_t seed;
	int64_t started_ms;	/* CLOCK_REALTIME */
	int64_t next_tick_ms;	/* CLOCK_MONOTONIC */
	/* stalls: gaps between two wake-ups of the loop, CLOCK_REALTIME (the
	 * same clock on the host a migration moved it to, unlike MONOTONIC) */
	int64_t last_wake_ms;
	int64_t stall_max_ms;
	int64_t stall_last_ms;
	int64_t stall_last_end_ms;
	/* memory */
	unsigned char *buf;
	uint64_t mem;
	size_t page;
	size_t npages;
	size_t dirty_cursor;
	size_t dirty_stride;
	uint64_t dirty_rate;
	uint64_t dirty_acc;	/* bytes * 100, carried between ticks */
	size_t verify_cursor;
	size_t verify_per_tick;
	uint64_t mem_errors;
	uint64_t sweeps;
	/* network */
	int port;
	int listen_fd;
	uint64_t answered;
	uint64_t answer_errors;
};

static volatile sig_atomic_t stop_signal;

static void on_signal(int sig)
{
	stop_signal = sig;
}

static int64_t clock_ms(clockid_t clk)
{
	struct timespec ts;

	clock_gettime(clk, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static uint64_t mix64(uint64_t x)
{
	/* splitmix64 finalizer */
	x ^= x >> 30;
	x *= 0xbf58476d1ce4e5b9ULL;
	x ^= x >> 27;
	x *= 0x94d049bb133111ebULL;
	x ^= x >> 31;
	return x;
}

/* Parses "16M", "256MiB", "10M/s", "4096", "1G": binary multiples. */
static int parse_size(const char *s, uint64_t *out)
{
	char *end;
	unsigned long long v;
	uint64_t mult = 1;

	if (s == NULL || *s == '\0' || *s == '-') {
		return -EINVAL;
	}
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno != 0 || end == s) {
		return -EINVAL;
	}
	switch (*end) {
	case 'k': case 'K': mult = 1ULL << 10; end++; break;
	case 'm': case 'M': mult = 1ULL << 20; end++; break;
	case 'g': case 'G': mult = 1ULL << 30; end++; break;
	case 't': case 'T': mult = 1ULL << 40; end++; break;
	default: break;
	}
	if (mult != 1 && *end == 'i') {
		end++;
	}
	if (*end == 'B' || *end == 'b') {
		end++;
	}
	if (strcmp(end, "/s") == 0) {
		end += 2;
	}
	if (*end != '\0') {
		return -EINVAL;
	}
	if (v > UINT64_MAX / mult) {
		return -ERANGE;
	}
	*out = v * mult;
	return 0;
}

static int parse_int(const char *s, int min, int max, int *out)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(s, &end, 10);
	if (errno != 0 || end == s || *end != '\0' || v < min || v > max) {
		return -EINVAL;
	}
	*out = (int)v;
	return 0;
}

static int parse_port(const char *s, int *port)
{
	return parse_int(s, 1, 65535, port);
}

/* The boot id must be unique, not secret: it never waits for the kernel's
 * entropy (a freshly booted TCG guest gets there seconds later). */
static void make_boot_id(struct workload *w)
{
	static const unsigned int flags[] = { GRND_INSECURE, GRND_NONBLOCK };
	unsigned char r[16];
	size_t got = 0;
	ssize_t n;

	for (size_t f = 0; f < sizeof(flags) / sizeof(flags[0]) && got < sizeof(r); f++) {
		while (got < sizeof(r)) {
			n = getrandom(r + got, sizeof(r) - got, flags[f]);
			if (n < 0 && errno == EINTR) {
				continue;
			}
			if (n <= 0) {
				break;
			}
			got += (size_t)n;
		}
	}
	if (got < sizeof(r)) {
		/* no getrandom (old kernel) or no entropy yet: unique enough */
		struct timespec rt, mt;
		uint64_t a, b;

		clock_gettime(CLOCK_REALTIME, &rt);
		clock_gettime(CLOCK_MONOTONIC, &mt);
		a = mix64((uint64_t)rt.tv_sec * 1000000000ULL + (uint64_t)rt.tv_nsec) ^
		    ((uint64_t)getpid() << 32);
		b = mix64(a ^ ((uint64_t)mt.tv_sec * 1000000000ULL + (uint64_t)mt.tv_nsec) ^
			  (uint64_t)(uintptr_t)&rt);

		memcpy(r, &a, 8);
		memcpy(r + 8, &b, 8);
	}
	for (size_t i = 0; i < sizeof(r); i++) {
		snprintf(w->boot_id + 2 * i, 3, "%02x", r[i]);
	}
	memcpy(&w->seed, r, sizeof(w->seed));
}

/* ---- memory: tagged pages ------------------------------------------- */

/* Each page starts with three words: tag (function of boot seed and page
 * index), the counter at the last write, and a checksum of both. */
static void page_write(struct workload *w, size_t i)
{
	uint64_t *p = (uint64_t *)(w->buf + i * w->page);
	uint64_t tag = mix64(w->seed ^ (uint64_t)i);

	p[0] = tag;
	p[1] = w->counter;
	p[2] = mix64(tag ^ w->counter);
}

static bool page_ok(const struct workload *w, size_t i)
{
	const uint64_t *p = (const uint64_t *)(w->buf + i * w->page);
	uint64_t tag = mix64(w->seed ^ (uint64_t)i);

	return p[0] == tag && p[2] == mix64(tag ^ p[1]) && p[1] <= w->counter;
}

static size_t gcd(size_t a, size_t b)
{
	while (b != 0) {
		size_t t = a % b;

		a = b;
		b = t;
	}
	return a;
}

static int mem_setup(struct workload *w)
{
	long ps = sysconf(_SC_PAGESIZE);

	w->page = ps > 0 ? (size_t)ps : 4096;
	if (w->mem == 0) {
		return 0;
	}
	if (w->mem > SIZE_MAX - w->page) {
		return -ENOMEM;
	}
	w->npages = (size_t)((w->mem + w->page - 1) / w->page);
	w->buf = mmap(NULL, w->npages * w->page, PROT_READ | PROT_WRITE,
		      MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (w->buf == MAP_FAILED) {
		w->buf = NULL;
		return -errno;
	}
	for (size_t i = 0; i < w->npages; i++) {
		page_write(w, i);	/* also makes every page resident */
	}
	/* A stride co-prime with the page count visits every page once per
	 * cycle while consecutive writes land far apart. */
	w->dirty_stride = (size_t)((double)w->npages * 0.618) | 1;
	while (w->npages > 1 && gcd(w->dirty_stride, w->npages) != 1) {
		w->dirty_stride++;
	}
	w->verify_per_tick = (w->npages + VERIFY_SWEEP_TICKS - 1) / VERIFY_SWEEP_TICKS;
	if (w->verify_per_tick > VERIFY_MAX_PER_TICK) {
		w->verify_per_tick = VERIFY_MAX_PER_TICK;
	}
	return 0;
}

static void mem_tick(struct workload *w, uint64_t ticks)
{
	uint64_t pages, budget;

	if (w->npages == 0) {
		return;
	}
	if (w->dirty_rate > 0) {
		w->dirty_acc += w->dirty_rate * ticks;
		pages = w->dirty_acc / (100 * (uint64_t)w->page);
		w->dirty_acc -= pages * 100 * (uint64_t)w->page;
		if (pages > w->npages) {
			pages = w->npages;
			w->dirty_acc = 0;
		}
		while (pages-- > 0) {
			page_write(w, w->dirty_cursor);
			w->dirty_cursor = (w->dirty_cursor + w->dirty_stride) % w->npages;
		}
	}
	budget = w->verify_per_tick * ticks;
	while (budget-- > 0) {
		if (!page_ok(w, w->verify_cursor)) {
			if (w->mem_errors < 10) {
				fprintf(stderr, "hactl-workload: page %zu of %zu damaged\n",
					w->verify_cursor, w->npages);
			}
			w->mem_errors++;
			page_write(w, w->verify_cursor); /* count each damage once */
		}
		if (++w->verify_cursor == w->npages) {
			w->verify_cursor = 0;
			w->sweeps++;
			break;
		}
	}
}

/* ---- clock ------------------------------------------------------------ */

static void clock_tick(struct workload *w)
{
	int64_t now = clock_ms(CLOCK_MONOTONIC);
	int64_t late;
	uint64_t ticks;

	if (now < w->next_tick_ms - MAX_CATCHUP_TICKS * TICK_MS) {
		/* monotonic clock went back (restored on another host) */
		w->next_tick_ms = now + TICK_MS;
		return;
	}
	if (now < w->next_tick_ms) {
		return;
	}
	late = now - w->next_tick_ms;
	ticks = 1 + (uint64_t)(late / TICK_MS);
	if (ticks > MAX_CATCHUP_TICKS) {
		/* frozen: resume counting from now on */
		ticks = 1;
		w->next_tick_ms = now + TICK_MS;
	} else {
		w->next_tick_ms += (int64_t)ticks * TICK_MS;
	}
	w->counter += ticks;
	mem_tick(w, ticks);
}

/* After every wake-up: the time since the previous one; a long gap is a
 * stall (a migration's freeze -> resume as the process lived it). */
static void stall_note(struct workload *w)
{
	int64_t now = clock_ms(CLOCK_REALTIME);
	int64_t gap = now - w->last_wake_ms;

	w->last_wake_ms = now;
	if (gap < STALL_MIN_MS) {
		return;
	}
	if (gap > w->stall_max_ms) {
		w->stall_max_ms = gap;
	}
	w->stall_last_ms = gap;
	w->stall_last_end_ms = now;
}

/* ---- network ---------------------------------------------------------- */

static int listen_open(int port)
{
	struct sockaddr_in sa = {
		.sin_family = AF_INET,
		.sin_port = htons((uint16_t)port),
		.sin_addr.s_addr = htonl(INADDR_ANY),
	};
	int one = 1;
	int fd, rc;

	fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		return -errno;
	}
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(fd, 64) < 0) {
		rc = -errno;
		close(fd);
		return rc;
	}
	return fd;
}

static int render_json(const struct workload *w, char *out, size_t len)
{
	int64_t now = clock_ms(CLOCK_REALTIME);
	int64_t up = now - w->started_ms;

	if (up < 0) {
		up = 0;
	}
	return snprintf(out, len,
			"{\"counter\":%" PRIu64 ",\"started_ms\":%" PRId64
			",\"boot_id\":\"%s\",\"uptime_ms\":%" PRId64
			",\"mem\":%" PRIu64 ",\"dirty_rate\":%" PRIu64
			",\"pid\":%ld,\"port\":%d,\"mem_errors\":%" PRIu64
			",\"sweeps\":%" PRIu64 ",\"answered\":%" PRIu64
			",\"stall_max_ms\":%" PRId64 ",\"stall_last_ms\":%" PRId64
			",\"stall_last_end_ms\":%" PRId64 "}\n",
			w->counter, w->started_ms, w->boot_id, up, w->mem,
			w->dirty_rate, (long)getpid(), w->port, w->mem_errors,
			w->sweeps, w->answered, w->stall_max_ms, w->stall_last_ms,
			w->stall_last_end_ms);
}

/* Answers one connection and closes it at once: whatever the client does,
 * nothing is kept between loop iterations. */
static void answer(struct workload *w, int fd)
{
	char line[512];
	char sink[512];
	size_t drained = 0;
	ssize_t n;
	int len;

	w->answered++;
	len = render_json(w, line, sizeof(line));
	if (len <= 0 || (size_t)len >= sizeof(line)) {
		w->answer_errors++;
		close(fd);
		return;
	}
	n = send(fd, line, (size_t)len, MSG_NOSIGNAL | MSG_DONTWAIT);
	if (n != len) {
		w->answer_errors++; /* a fresh socket buffer holds one line */
	}
	/* Unread input would turn close() into a reset that can discard the
	 * answer at the client: drain what already arrived. */
	while (drained < DRAIN_MAX) {
		n = recv(fd, sink, sizeof(sink), MSG_DONTWAIT);
		if (n <= 0) {
			break;
		}
		drained += (size_t)n;
	}
	shutdown(fd, SHUT_WR);
	close(fd);
}

static void accept_round(struct workload *w)
{
	for (int i = 0; i < ACCEPT_PER_ROUND; i++) {
		int fd = accept4(w->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

		if (fd < 0) {
			/* EAGAIN, or an aborted connection, or out of fds:
			 * all retried on the next readiness */
			return;
		}
		answer(w, fd);
	}
}

static int serve(struct workload *w)
{
	struct sigaction sa = { .sa_handler = on_signal };
	sigset_t block, waitmask;
	int rc;

	sigemptyset(&sa.sa_mask);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
	/* Signals arrive only inside ppoll(): no lost wake-up. */
	sigemptyset(&block);
	sigaddset(&block, SIGTERM);
	sigaddset(&block, SIGINT);
	sigprocmask(SIG_BLOCK, &block, &waitmask);
	sigdelset(&waitmask, SIGTERM);
	sigdelset(&waitmask, SIGINT);

	w->started_ms = clock_ms(CLOCK_REALTIME);
	make_boot_id(w);
	rc = mem_setup(w);
	if (rc < 0) {
		fprintf(stderr, "hactl-workload: cannot hold %" PRIu64 " bytes: %s\n",
			w->mem, strerror(-rc));
		return EXIT_NOMEM;
	}
	w->listen_fd = listen_open(w->port);
	if (w->listen_fd < 0) {
		fprintf(stderr, "hactl-workload: cannot listen on 0.0.0.0:%d: %s\n",
			w->port, strerror(-w->listen_fd));
		return EXIT_LISTEN;
	}
	w->next_tick_ms = clock_ms(CLOCK_MONOTONIC) + TICK_MS;
	w->last_wake_ms = clock_ms(CLOCK_REALTIME);
	fprintf(stderr, "hactl-workload: pid %ld boot_id %s port %d mem %" PRIu64
		" dirty %" PRIu64 "/s\n", (long)getpid(), w->boot_id, w->port,
		w->mem, w->dirty_rate);

	while (stop_signal == 0) {
		struct pollfd pfd = { .fd = w->listen_fd, .events = POLLIN };
		int64_t wait = w->next_tick_ms - clock_ms(CLOCK_MONOTONIC);
		struct timespec ts;

		if (wait < 0) {
			wait = 0;
		} else if (wait > TICK_MS) {
			wait = TICK_MS;
		}
		ts.tv_sec = 0;
		ts.tv_nsec = (long)wait * 1000000L;
		rc = ppoll(&pfd, 1, &ts, &waitmask);
		stall_note(w);
		if (rc > 0 && (pfd.revents & POLLIN)) {
			accept_round(w);
		}
		clock_tick(w);
	}
	fprintf(stderr, "hactl-workload: stopping on signal %d at counter %" PRIu64
		" (answered %" PRIu64 ", mem_errors %" PRIu64 ")\n", (int)stop_signal,
		w->counter, w->answered, w->mem_errors);
	close(w->listen_fd);
	if (w->buf != NULL) {
		munmap(w->buf, w->npages * w->page);
	}
	return EXIT_OK;
}

/* ---- client mode ------------------------------------------------------ */

/* HOST, HOST:PORT, [V6], [V6]:PORT; numeric addresses and "localhost". */
static int parse_target(const char *arg, struct sockaddr_storage *ss, socklen_t *sl)
{
	struct sockaddr_in *s4 = (struct sockaddr_in *)ss;
	struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)ss;
	char host[INET6_ADDRSTRLEN + 1];
	const char *port_s = NULL;
	size_t hl;
	int port = DEFAULT_PORT;

	if (arg[0] == '[') {
		const char *close_b = strchr(arg, ']');

		if (close_b == NULL) {
			return -EINVAL;
		}
		hl = (size_t)(close_b - arg - 1);
		if (hl >= sizeof(host)) {
			return -EINVAL;
		}
		memcpy(host, arg + 1, hl);
		host[hl] = '\0';
		if (close_b[1] == ':') {
			port_s = close_b + 2;
		} else if (close_b[1] != '\0') {
			return -EINVAL;
		}
	} else {
		const char *colon = strchr(arg, ':');

		if (colon != NULL && strchr(colon + 1, ':') != NULL) {
			colon = NULL; /* bare IPv6 address, no port */
		}
		hl = colon != NULL ? (size_t)(colon - arg) : strlen(arg);
		if (hl >= sizeof(host)) {
			return -EINVAL;
		}
		memcpy(host, arg, hl);
		host[hl] = '\0';
		if (colon != NULL) {
			port_s = colon + 1;
		}
	}
	if (port_s != NULL && parse_port(port_s, &port) < 0) {
		return -EINVAL;
	}
	if (strcmp(host, "localhost") == 0) {
		strcpy(host, "127.0.0.1");
	}
	memset(ss, 0, sizeof(*ss));
	if (inet_pton(AF_INET, host, &s4->sin_addr) == 1) {
		s4->sin_family = AF_INET;
		s4->sin_port = htons((uint16_t)port);
		*sl = sizeof(*s4);
		return 0;
	}
	if (inet_pton(AF_INET6, host, &s6->sin6_addr) == 1) {
		s6->sin6_family = AF_INET6;
		s6->sin6_port = htons((uint16_t)port);
		*sl = sizeof(*s6);
		return 0;
	}
	return -EINVAL;
}

static int wait_fd(int fd, short events, int64_t deadline)
{
	struct pollfd pfd = { .fd = fd, .events = events };
	int64_t left;
	int rc;

	for (;;) {
		left = deadline - clock_ms(CLOCK_MONOTONIC);
		if (left <= 0) {
			return -ETIMEDOUT;
		}
		rc = poll(&pfd, 1, (int)left);
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

static int query(const char *target, int timeout_ms)
{
	struct sockaddr_storage ss;
	socklen_t sl;
	char buf[QUERY_MAX + 1];
	size_t got = 0;
	int64_t deadline = clock_ms(CLOCK_MONOTONIC) + timeout_ms;
	int fd, rc, err = 0;
	socklen_t errlen = sizeof(err);
	ssize_t n;

	if (parse_target(target, &ss, &sl) < 0) {
		fprintf(stderr, "hactl-workload: bad target '%s' (HOST[:PORT], numeric)\n",
			target);
		return EXIT_USAGE;
	}
	signal(SIGPIPE, SIG_IGN);
	fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		fprintf(stderr, "hactl-workload: socket: %s\n", strerror(errno));
		return EXIT_QUERY_FAILED;
	}
	if (connect(fd, (struct sockaddr *)&ss, sl) < 0) {
		if (errno != EINPROGRESS) {
			rc = -errno;
			goto fail;
		}
		rc = wait_fd(fd, POLLOUT, deadline);
		if (rc < 0) {
			goto fail;
		}
		if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &errlen) < 0 || err != 0) {
			rc = err != 0 ? -err : -errno;
			goto fail;
		}
	}
	while (got < QUERY_MAX) {
		n = recv(fd, buf + got, QUERY_MAX - got, 0);
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
			rc = -errno;
			goto fail;
		}
		rc = wait_fd(fd, POLLIN, deadline);
		if (rc < 0) {
			goto fail;
		}
	}
	close(fd);
	buf[got] = '\0';
	if (got < 2 || buf[0] != '{' || buf[got - 1] != '\n') {
		fprintf(stderr, "hactl-workload: %s: not a workload answer (%zu bytes)\n",
			target, got);
		return EXIT_QUERY_FAILED;
	}
	fputs(buf, stdout);
	return fflush(stdout) == 0 ? EXIT_OK : EXIT_QUERY_FAILED;
fail:
	close(fd);
	fprintf(stderr, "hactl-workload: %s: %s\n", target, strerror(-rc));
	return EXIT_QUERY_FAILED;
}

/* ---- main ------------------------------------------------------------- */

static void usage(FILE *f)
{
	fprintf(f,
		"Usage: hactl-workload [--mem SIZE] [--dirty RATE] [--port PORT]\n"
		"       hactl-workload --query HOST[:PORT] [--timeout MS]\n"
		"\n"
		"Checkable guest workload: counts 10 ms ticks in memory, holds and\n"
		"dirties memory, answers each TCP connection on 0.0.0.0:PORT with one\n"
		"line of JSON and closes it:\n"
		"  {\"counter\":N,\"started_ms\":MS,\"boot_id\":\"HEX\",\"uptime_ms\":MS,\n"
		"   \"mem\":BYTES,\"dirty_rate\":BYTES_PER_S,\"pid\":PID,\"port\":PORT,\n"
		"   \"mem_errors\":N,\"sweeps\":N,\"answered\":N,\"stall_max_ms\":MS,\n"
		"   \"stall_last_ms\":MS,\"stall_last_end_ms\":MS}\n"
		"\n"
		"  -m, --mem SIZE      memory to hold, e.g. 16M, 256M, 1G (default 16M)\n"
		"  -d, --dirty RATE    bytes per second to rewrite, e.g. 10M (default 1M)\n"
		"  -p, --port PORT     TCP port (default %d)\n"
		"  -q, --query TARGET  print the answer of the workload at TARGET\n"
		"                      (numeric address, default port %d) and exit\n"
		"  -t, --timeout MS    query timeout (default %d)\n"
		"  -h, --help          this text\n"
		"\n"
		"SIGTERM or SIGINT stop it cleanly (exit 0). Exit codes: 1 query failed,\n"
		"2 bad usage, 3 cannot listen, 4 cannot allocate memory.\n",
		DEFAULT_PORT, DEFAULT_PORT, QUERY_TIMEOUT_MS);
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "mem", required_argument, NULL, 'm' },
		{ "dirty", required_argument, NULL, 'd' },
		{ "port", required_argument, NULL, 'p' },
		{ "query", required_argument, NULL, 'q' },
		{ "timeout", required_argument, NULL, 't' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct workload w = {
		.mem = DEFAULT_MEM,
		.dirty_rate = DEFAULT_DIRTY,
		.port = DEFAULT_PORT,
		.listen_fd = -1,
	};
	const char *target = NULL;
	int timeout_ms = QUERY_TIMEOUT_MS;
	int c;

	while ((c = getopt_long(argc, argv, "m:d:p:q:t:h", opts, NULL)) != -1) {
		switch (c) {
		case 'm':
			if (parse_size(optarg, &w.mem) < 0) {
				fprintf(stderr, "hactl-workload: bad --mem '%s'\n", optarg);
				return EXIT_USAGE;
			}
			break;
		case 'd':
			/* bounded so that rate * ticks never overflows */
			if (parse_size(optarg, &w.dirty_rate) < 0 ||
			    w.dirty_rate > (1ULL << 50)) {
				fprintf(stderr, "hactl-workload: bad --dirty '%s'\n", optarg);
				return EXIT_USAGE;
			}
			break;
		case 'p':
			if (parse_port(optarg, &w.port) < 0) {
				fprintf(stderr, "hactl-workload: bad --port '%s'\n", optarg);
				return EXIT_USAGE;
			}
			break;
		case 'q':
			target = optarg;
			break;
		case 't':
			if (parse_int(optarg, 1, 3600 * 1000, &timeout_ms) < 0) {
				fprintf(stderr, "hactl-workload: bad --timeout '%s'\n", optarg);
				return EXIT_USAGE;
			}
			break;
		case 'h':
			usage(stdout);
			return EXIT_OK;
		default:
			usage(stderr);
			return EXIT_USAGE;
		}
	}
	if (optind != argc) {
		fprintf(stderr, "hactl-workload: unexpected argument '%s'\n", argv[optind]);
		return EXIT_USAGE;
	}
	if (target != NULL) {
		return query(target, timeout_ms);
	}
	return serve(&w);
}
