/*
 * ha_driver_test.c - drives one guest driver directly, without the
 * cluster, for the driver tests and for debugging.
 *
 *   ha-driver-test TYPE ACTION [options]
 *     TYPE    container | domain
 *     ACTION  start | stop | attach | state | usage | destroy |
 *             checkpoint DIR | checkpoint-leave DIR | restore DIR | probe
 *   options: --name N --mem SIZE_KIB --cpus N --cpu-weight N --cpu-limit PCT
 *            --pids N --rootfs DIR --kernel F --initrd F --disk F
 *            --cmd "PROG ARGS" --ip CIDR --gw IP --bridge BR
 *            --run-dir DIR --data-dir DIR --timeout MS
 *            --criu PATH --qemu PATH
 *     ACTION  migrate-send --to HOST:PORT | migrate-recv --listen PORT
 *             (live migration; see the block above main())
 *
 * Each action is a fresh process: state carries over only through what the
 * driver keeps in its run directory (which is what attach() relies on).
 * Prints one line; exit 0 on success, 1 on failure, 2 on bad usage.
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "agent_facts.h"
#include "driver.h"
#include "util.h"

static int need_guest(const struct agent_driver_ops *ops, struct agent_driver *d,
		      const struct agent_guest_spec *spec, struct agent_guest **g,
		      char *err)
{
	int rc = ops->attach(d, spec, g, err);

	if (rc == -ESRCH) {
		rc = ops->create(d, spec, g, err);
	}
	return rc;
}

/* ---- live migration: migrate-send, migrate-recv ------------------------------
 *
 * Generic over the ops, as the agent core drives them: the operation runs
 * in a worker thread while the main thread prints its progress every
 * 500 ms; then the tool waits for the cluster's decision as one line on
 * stdin, "commit" or "abort" (end of input counts as abort), and calls
 * migrate_finish() for its side.
 *
 *   migrate-send --to HOST:PORT   connects, streams the guest there
 *   migrate-recv --listen PORT    prints "listening PORT", accepts one
 *                                 connection, receives the guest, prints
 *                                 "received ..."
 *
 * The migration options come from the environment (unset: the driver's
 * defaults): HA_MIG_MAX_DOWNTIME_MS, HA_MIG_BANDWIDTH (bytes/s),
 * HA_MIG_MODE (precopy | stopcopy | postcopy), HA_MIG_AUTO_CONVERGE=1,
 * HA_MIG_XBZRLE=1.
 */
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

struct mig_run {
	const struct agent_driver_ops *ops;
	struct agent_driver *d;
	const struct agent_guest_spec *spec;
	struct agent_guest *g;   /* send: the source; recv: what it made */
	bool send;
	int fd;
	struct agent_mig_opts opts;
	struct agent_mig_progress prog;
	char err[AGENT_ERR_LEN];
	int rc;
	bool done;               /* under lock; cond signalled when set */
	pthread_mutex_t lock;
	pthread_cond_t cond;
};

static void *mig_worker(void *arg)
{
	struct mig_run *m = arg;

	if (m->send) {
		m->rc = m->ops->migrate_send(m->g, m->fd, &m->opts, &m->prog, m->err);
	} else {
		m->rc = m->ops->migrate_recv(m->d, m->spec, m->fd, &m->opts, &m->g, &m->prog,
					     m->err);
	}
	pthread_mutex_lock(&m->lock);
	m->done = true;
	pthread_cond_signal(&m->cond);
	pthread_mutex_unlock(&m->lock);
	return NULL;
}

static void mig_print(const char *what, const struct agent_mig_progress *p)
{
	printf("%s: transferred=%llu remaining=%llu total=%llu dirty_rate=%llu rounds=%u "
	       "expected_downtime_ms=%u downtime_ms=%u total_ms=%llu\n", what,
	       (unsigned long long)p->transferred_bytes, (unsigned long long)p->remaining_bytes,
	       (unsigned long long)p->total_bytes, (unsigned long long)p->dirty_rate_bps,
	       p->rounds, p->expected_downtime_ms, p->downtime_ms,
	       (unsigned long long)p->total_ms);
	fflush(stdout);
}

static void mig_opts_from_env(struct agent_mig_opts *o)
{
	const char *v;

	if ((v = getenv("HA_MIG_MAX_DOWNTIME_MS")) != NULL) {
		o->max_downtime_ms = (uint32_t)strtoul(v, NULL, 10);
	}
	if ((v = getenv("HA_MIG_BANDWIDTH")) != NULL) {
		o->bandwidth_bps = strtoull(v, NULL, 10);
	}
	o->mode = getenv("HA_MIG_MODE");
	o->auto_converge = (v = getenv("HA_MIG_AUTO_CONVERGE")) != NULL && strcmp(v, "1") == 0;
	o->xbzrle = (v = getenv("HA_MIG_XBZRLE")) != NULL && strcmp(v, "1") == 0;
}

/* HOST:PORT, numeric (an IPv6 host in brackets). */
static int mig_connect(const char *to, uint32_t timeout_ms)
{
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM,
				  .ai_flags = AI_NUMERICHOST | AI_NUMERICSERV };
	struct addrinfo *ai = NULL;
	char host[256];
	const char *colon = strrchr(to, ':');
	size_t hl;
	int fd, rc;

	if (colon == NULL || colon == to || (hl = (size_t)(colon - to)) >= sizeof(host)) {
		return -EINVAL;
	}
	if (to[0] == '[' && colon[-1] == ']') {
		memcpy(host, to + 1, hl - 2);
		host[hl - 2] = 0;
	} else {
		memcpy(host, to, hl);
		host[hl] = 0;
	}
	if (getaddrinfo(host, colon + 1, &hints, &ai) != 0 || ai == NULL) {
		return -EINVAL;
	}
	fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		rc = -errno;
		freeaddrinfo(ai);
		return rc;
	}
	{
		struct timeval tv = { .tv_sec = timeout_ms / 1000,
				      .tv_usec = (timeout_ms % 1000) * 1000 };

		setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	}
	rc = connect(fd, ai->ai_addr, ai->ai_addrlen) < 0 ? -errno : 0;
	if (rc == -EINPROGRESS) {
		rc = -ETIMEDOUT; /* SO_SNDTIMEO ran out */
	}
	freeaddrinfo(ai);
	if (rc < 0) {
		close(fd);
		return rc;
	}
	{
		struct timeval none = { 0 };

		setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &none, sizeof(none));
	}
	return fd;
}

/* Listens on PORT (all addresses), says so, accepts one connection. */
static int mig_accept(const char *port, uint32_t timeout_ms)
{
	struct sockaddr_in6 sa = { .sin6_family = AF_INET6, .sin6_addr = IN6ADDR_ANY_INIT };
	struct pollfd pfd;
	char *end;
	unsigned long p = strtoul(port, &end, 10);
	int one = 1, zero = 0, lfd, fd, rc;

	if (*port == 0 || *end != 0 || p == 0 || p > 65535) {
		return -EINVAL;
	}
	sa.sin6_port = htons((uint16_t)p);
	lfd = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (lfd < 0) {
		return -errno;
	}
	setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	setsockopt(lfd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof(zero));
	if (bind(lfd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(lfd, 1) < 0) {
		rc = -errno;
		close(lfd);
		return rc;
	}
	printf("listening %lu\n", p);
	fflush(stdout);
	pfd = (struct pollfd){ .fd = lfd, .events = POLLIN };
	rc = poll(&pfd, 1, (int)timeout_ms);
	fd = rc > 0 ? accept4(lfd, NULL, NULL, SOCK_CLOEXEC) : -1;
	rc = rc == 0 ? -ETIMEDOUT : fd < 0 ? -errno : 0;
	close(lfd);
	return rc < 0 ? rc : fd;
}

/* The cluster's decision: true for "commit"; "abort" or the end of input
 * is false. */
static bool mig_decision(void)
{
	char line[64];

	while (fgets(line, sizeof(line), stdin)) {
		line[strcspn(line, "\r\n")] = 0;
		if (strcmp(line, "commit") == 0) {
			return true;
		}
		if (strcmp(line, "abort") == 0) {
			return false;
		}
	}
	return false;
}

static int mig_action(const struct agent_driver_ops *ops, struct agent_driver *d,
		      const struct agent_guest_spec *spec, const char *action, const char *to,
		      const char *listen_port, uint32_t timeout)
{
	struct mig_run m = { .ops = ops, .d = d, .spec = spec, .fd = -1,
			     .lock = PTHREAD_MUTEX_INITIALIZER };
	pthread_condattr_t ca;
	pthread_t th;
	bool commit;
	int rc;

	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&m.cond, &ca);
	pthread_condattr_destroy(&ca);
	m.send = strcmp(action, "migrate-send") == 0;
	mig_opts_from_env(&m.opts);
	if (m.send ? to == NULL : listen_port == NULL) {
		fprintf(stderr, "%s needs %s\n", action, m.send ? "--to HOST:PORT" :
			"--listen PORT");
		return 2;
	}
	if (ops->migrate_send == NULL || ops->migrate_recv == NULL ||
	    ops->migrate_finish == NULL) {
		printf("%s %s: %s (state none)\n", spec->type, action, strerror(EOPNOTSUPP));
		return 1;
	}
	if (m.send) {
		rc = ops->attach(d, spec, &m.g, m.err);
		if (rc == 0) {
			m.fd = mig_connect(to, timeout);
			rc = m.fd < 0 ? m.fd : 0;
			if (rc < 0) {
				snprintf(m.err, sizeof(m.err), "connect %s: %s", to, strerror(-rc));
			}
		}
	} else {
		m.fd = mig_accept(listen_port, timeout);
		rc = m.fd < 0 ? m.fd : 0;
		if (rc < 0) {
			snprintf(m.err, sizeof(m.err), "accept on %s: %s", listen_port,
				 strerror(-rc));
		}
	}
	if (rc == 0) {
		rc = -pthread_create(&th, NULL, mig_worker, &m);
	}
	if (rc == 0) {
		/* Progress every 500 ms, and the result as soon as the worker
		 * has it (as the agent's eventfd brings it): a fixed sleep here
		 * would add up to 500 ms to the downtime the caller sees. */
		pthread_mutex_lock(&m.lock);
		while (!m.done) {
			struct timespec ts;

			clock_gettime(CLOCK_MONOTONIC, &ts);
			ts.tv_nsec += 500 * 1000000L;
			if (ts.tv_nsec >= 1000000000L) {
				ts.tv_sec++;
				ts.tv_nsec -= 1000000000L;
			}
			if (pthread_cond_timedwait(&m.cond, &m.lock, &ts) == ETIMEDOUT && !m.done) {
				mig_print("progress", &m.prog);
			}
		}
		pthread_mutex_unlock(&m.lock);
		pthread_join(th, NULL);
		rc = m.rc;
		if (rc == 0) {
			mig_print(m.send ? "sent" : "received", &m.prog);
		}
	}
	printf("%s %s: %s%s%s (state %s)\n", spec->type, action,
	       rc == 0 ? "ok" : strerror(-rc), m.err[0] ? ": " : "", m.err,
	       m.g ? agent_guest_state_str(ops->state(m.g)) : "none");
	fflush(stdout);
	if (rc == 0) {
		commit = mig_decision();
		m.err[0] = 0;
		rc = ops->migrate_finish(m.g, m.send, commit, m.err);
		printf("%s migrate-finish %s: %s%s%s (state %s)\n", spec->type,
		       commit ? "commit" : "abort", rc == 0 ? "ok" : strerror(-rc),
		       m.err[0] ? ": " : "", m.err, agent_guest_state_str(ops->state(m.g)));
	}
	if (m.fd >= 0) {
		close(m.fd);
	}
	if (m.g) {
		ops->guest_free(m.g);
	}
	pthread_cond_destroy(&m.cond);
	return rc == 0 ? 0 : 1;
}

/* ---- end of live migration ----------------------------------------------- */

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "name", required_argument, NULL, 'n' },
		{ "mem", required_argument, NULL, 'm' },
		{ "cpus", required_argument, NULL, 'c' },
		{ "cpu-weight", required_argument, NULL, 'w' },
		{ "cpu-limit", required_argument, NULL, 'l' },
		{ "pids", required_argument, NULL, 'p' },
		{ "rootfs", required_argument, NULL, 'r' },
		{ "kernel", required_argument, NULL, 'k' },
		{ "initrd", required_argument, NULL, 'i' },
		{ "disk", required_argument, NULL, 'D' },
		{ "disk-quota", required_argument, NULL, 'q' }, /* KiB */
		{ "cmd", required_argument, NULL, 'C' },
		{ "ip", required_argument, NULL, 'I' },
		{ "gw", required_argument, NULL, 'G' },
		{ "bridge", required_argument, NULL, 'b' },
		{ "run-dir", required_argument, NULL, 'R' },
		{ "data-dir", required_argument, NULL, 'A' },
		{ "timeout", required_argument, NULL, 't' },
		{ "criu", required_argument, NULL, 'X' },
		{ "qemu", required_argument, NULL, 'Q' },
		{ "to", required_argument, NULL, 'T' },       /* migrate-send */
		{ "listen", required_argument, NULL, 'L' },   /* migrate-recv */
		{ 0 },
	};
	struct agent_guest_spec spec = { .name = "test", .mem_kib = 131072, .cpus = 1,
					 .cpu_weight = 1000 };
	struct ha_config cfg;
	struct agent_driver d = { .cfg = &cfg };
	const struct agent_driver_ops *ops;
	struct agent_guest *g = NULL;
	char err[AGENT_ERR_LEN] = "";
	uint32_t timeout = 60000;
	const char *action, *dir = NULL;
	const char *mig_to = NULL, *mig_listen = NULL;
	int opt, rc;

	ha_config_defaults(&cfg);
	while ((opt = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (opt) {
		case 'n': spec.name = optarg; break;
		case 'm': spec.mem_kib = strtoull(optarg, NULL, 10); break;
		case 'c': spec.cpus = (uint32_t)strtoul(optarg, NULL, 10); break;
		case 'w': spec.cpu_weight = (uint32_t)strtoul(optarg, NULL, 10); break;
		case 'l': spec.cpu_limit_pct = (uint32_t)strtoul(optarg, NULL, 10); break;
		case 'p': spec.pids_max = (uint32_t)strtoul(optarg, NULL, 10); break;
		case 'r': spec.rootfs = optarg; break;
		case 'k': spec.kernel = optarg; break;
		case 'i': spec.initrd = optarg; break;
		case 'D': spec.disk = optarg; break;
		case 'q': spec.disk_kib = strtoull(optarg, NULL, 10); break;
		case 'C': spec.command = optarg; break;
		case 'I': spec.ip = optarg; break;
		case 'G': spec.gateway = optarg; break;
		case 'b': spec.bridge = optarg; break;
		case 'R': spec.run_dir = optarg; break;
		case 'A': spec.data_dir = optarg; break;
		case 't': timeout = (uint32_t)strtoul(optarg, NULL, 10); break;
		case 'X': snprintf(cfg.criu_path, sizeof(cfg.criu_path), "%s", optarg); break;
		case 'Q': snprintf(cfg.qemu_path, sizeof(cfg.qemu_path), "%s", optarg); break;
		case 'T': mig_to = optarg; break;
		case 'L': mig_listen = optarg; break;
		default: return 2;
		}
	}
	if (argc - optind < 2) {
		fprintf(stderr, "usage: ha-driver-test TYPE ACTION [DIR] [options]\n");
		return 2;
	}
	spec.type = argv[optind];
	action = argv[optind + 1];
	if (argc - optind > 2) {
		dir = argv[optind + 2];
	}
	ops = agent_driver_find(spec.type);
	if (ops == NULL) {
		fprintf(stderr, "no driver for type '%s' in this build\n", spec.type);
		return 2;
	}
	d.ops = ops;

	if (strcmp(action, "probe") == 0) {
		Hactl__HostFacts f = HACTL__HOST_FACTS__INIT;

		rc = ops->probe(&d, &f);
		printf("probe: %d criu=%s lazy=%d dirty_track=%d kvm_usable=%d\n", rc,
		       f.criu_version ? f.criu_version : "-", f.criu_lazy_pages,
		       f.criu_mem_dirty_track, f.kvm_usable);
		agent_facts_clear(&f);
		return rc < 0;
	}
	if (strcmp(action, "migrate-send") == 0 || strcmp(action, "migrate-recv") == 0) {
		return mig_action(ops, &d, &spec, action, mig_to, mig_listen, timeout);
	}
	if (strcmp(action, "restore") == 0) {
		if (dir == NULL) {
			return 2;
		}
		rc = ops->restore(&d, &spec, dir, &g, err);
	} else if (strcmp(action, "attach") == 0) {
		rc = ops->attach(&d, &spec, &g, err);
	} else {
		rc = need_guest(ops, &d, &spec, &g, err);
		if (rc == 0) {
			if (strcmp(action, "start") == 0) {
				rc = ops->start(g, timeout, err);
			} else if (strcmp(action, "stop") == 0) {
				rc = ops->stop(g, timeout, err);
			} else if (strcmp(action, "destroy") == 0) {
				rc = ops->destroy(g, err);
			} else if (strcmp(action, "state") == 0) {
				rc = 0;
			} else if (strcmp(action, "usage") == 0) {
				struct agent_guest_usage u = { 0 };

				rc = ops->usage(g, &u);
				if (rc == 0) {
					printf("usage: cpu_ns=%llu mem_bytes=%llu pids=%u\n",
					       (unsigned long long)u.cpu_ns,
					       (unsigned long long)u.mem_bytes, u.pids);
				}
			} else if (strcmp(action, "checkpoint") == 0 ||
				   strcmp(action, "checkpoint-leave") == 0) {
				unsigned flags = strcmp(action, "checkpoint-leave") == 0 ?
					AGENT_CKPT_LEAVE_RUNNING : 0;

				rc = dir ? ops->checkpoint(g, dir, flags, err) : -EINVAL;
			} else {
				fprintf(stderr, "unknown action '%s'\n", action);
				return 2;
			}
		}
	}
	printf("%s %s: %s%s%s (state %s)\n", spec.type, action,
	       rc == 0 ? "ok" : strerror(-rc), err[0] ? ": " : "", err,
	       g ? agent_guest_state_str(ops->state(g)) : "none");
	if (g) {
		ops->guest_free(g);
	}
	return rc == 0 ? 0 : 1;
}
