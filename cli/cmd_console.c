/*
 * cmd_console.c - hactl console: a guest's console, like Xen's `xm console`
 * and `virsh console`, on the host that runs the guest (the same rule as
 * hactl exec: elsewhere it names that host and exits 1).
 *
 * A domain's serial port is a QEMU chardev that logs into
 * state_dir/guests/NAME/console.log and listens on console.sock beside it
 * (the agent binds it: driver_domain_qemu.c); hactl connects to it, so the
 * session is interactive and reaches the shell on the guest's ttyS0.
 * QEMU takes one client at a time; a second waits until the first leaves.
 *
 * A container's console is its console log (/dev/console is a bind mount
 * of that file, which CRIU restores on any host as an external mount):
 * hactl follows it read-only, like tail -f. Why not a pty: the master
 * would live outside the container, and CRIU can restore a container
 * whose init holds such a terminal only with the same master handed back
 * to it (--inherit-fd) on the host it lands on, which a migration or a
 * failover cannot provide; docs/guests.md. hactl enter gives a shell.
 *
 * Both print the log's last lines first (--lines), then what comes. On a
 * terminal it runs raw (every key to the guest) and Ctrl-] detaches, as
 * telnet and virsh do; the terminal is restored on every way out,
 * signals included. Without a terminal (a pipe), input is sent as it
 * comes, a Ctrl-] byte still detaches, and at the end of the input the
 * output is followed until it has been quiet for QUIET_MS (at most
 * AFTER_EOF_MS), so that `echo CMD | hactl console NAME` prints the answer.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "config.h"
#include "util.h"

#define DETACH_KEY 0x1d       /* Ctrl-] */
#define CTRL_C 0x03
#define QUIET_MS 1000         /* after the input ended: quiet this long ends it */
#define AFTER_EOF_MS 10000    /* ... and this long at most */
#define LEAVE_MS 2000         /* a domain: QEMU reads what was sent within this */
#define FOLLOW_MS 200         /* a container's log: read this often */
#define ALIVE_MS 1000         /* a container's init: checked this often */
#define TAIL_MAX (64 << 10)   /* --lines reads at most this much of the log */
#define LINES_DEFAULT 10
#define LINES_MAX 100000

/* ---- the terminal ------------------------------------------------------ */

static struct termios saved_tio;
static volatile sig_atomic_t raw_on;

static void tty_restore(void)
{
	if (raw_on) {
		tcsetattr(STDIN_FILENO, TCSAFLUSH, &saved_tio);
		raw_on = 0;
	}
}

static void on_signal(int sig)
{
	tty_restore();
	signal(sig, SIG_DFL);
	raise(sig);
}

/* Raw mode on stdin's terminal, restored at exit and on SIGTERM, SIGHUP,
 * SIGINT, SIGQUIT (the last two only come from kill: raw mode passes the
 * keys to the guest). @keep_opost: the output's newline translation stays
 * (a container's log has bare \n). */
static int tty_raw(bool keep_opost)
{
	static const int sigs[] = { SIGTERM, SIGHUP, SIGINT, SIGQUIT };
	struct sigaction sa = { .sa_handler = on_signal };
	struct termios t;

	if (tcgetattr(STDIN_FILENO, &saved_tio) < 0) {
		fprintf(stderr, "hactl: the terminal's settings: %s\n", strerror(errno));
		return EX_FAIL;
	}
	t = saved_tio;
	cfmakeraw(&t);
	if (keep_opost) {
		t.c_oflag = saved_tio.c_oflag;
	}
	for (size_t i = 0; i < HA_ARRAY_SIZE(sigs); i++) {
		sigaction(sigs[i], &sa, NULL);
	}
	atexit(tty_restore);
	raw_on = 1;
	/* TCSANOW: what was typed ahead (while hactl asked the cluster) is
	 * the guest's too */
	if (tcsetattr(STDIN_FILENO, TCSANOW, &t) < 0) {
		raw_on = 0;
		fprintf(stderr, "hactl: raw terminal mode: %s\n", strerror(errno));
		return EX_FAIL;
	}
	return EX_OK;
}

/* A message of hactl's own during the session (a raw terminal needs \r). */
static void __attribute__((format(printf, 1, 2))) say(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	fprintf(stderr, "hactl: ");
	vfprintf(stderr, fmt, ap);
	fprintf(stderr, raw_on ? "\r\n" : "\n");
	va_end(ap);
}

/* ---- helpers ------------------------------------------------------------ */

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static int write_all(int fd, const char *p, size_t n)
{
	while (n > 0) {
		ssize_t w = fd == STDOUT_FILENO ? write(fd, p, n) : send(fd, p, n, MSG_NOSIGNAL);

		if (w < 0 && errno == EINTR) {
			continue;
		}
		if (w <= 0) {
			return -errno;
		}
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

/* Prints the last @lines lines of the open log @fd (of the first TAIL_MAX
 * bytes before its end) and returns the offset it ends at. */
static off_t log_tail(int fd, unsigned lines)
{
	struct stat st;
	char *buf;
	off_t from;
	ssize_t n;
	size_t start;

	if (fstat(fd, &st) < 0) {
		return 0;
	}
	if (lines == 0 || st.st_size == 0) {
		return st.st_size;
	}
	from = st.st_size > TAIL_MAX ? st.st_size - TAIL_MAX : 0;
	buf = malloc(TAIL_MAX);
	if (buf == NULL) {
		return st.st_size;
	}
	n = pread(fd, buf, (size_t)(st.st_size - from), from);
	if (n <= 0) {
		free(buf);
		return st.st_size;
	}
	start = (size_t)n;
	/* a final line without its newline counts as one */
	if (buf[start - 1] == '\n') {
		start--;
	}
	for (unsigned seen = 0; start > 0; start--) {
		if (buf[start - 1] == '\n' && ++seen == lines) {
			break;
		}
	}
	write_all(STDOUT_FILENO, buf + start, (size_t)n - start);
	free(buf);
	return from + n;
}

/* ---- the session -------------------------------------------------------- */

struct session {
	const char *name;
	bool tty;
	int in_fd;           /* stdin; -1 once it ended */
	uint64_t eof_at;     /* when the input ended, 0 before */
	uint64_t last_out;   /* when output last came */
	bool said_ro;        /* a container: "input ignored" said once */
};

enum step { STEP_GO, STEP_DETACH, STEP_DONE };

/* Reads stdin: @out (the console socket, -1 = read-only) gets the bytes
 * before a Ctrl-] (or, read-only on a terminal, a Ctrl-C). */
static enum step input(struct session *ss, int out)
{
	char buf[4096];
	ssize_t n = read(ss->in_fd, buf, sizeof(buf));
	char *stop;

	if (n < 0 && (errno == EINTR || errno == EAGAIN)) {
		return STEP_GO;
	}
	if (n <= 0) {
		ss->in_fd = -1;
		ss->eof_at = now_ms();
		return STEP_GO;
	}
	stop = memchr(buf, DETACH_KEY, (size_t)n);
	if (out < 0 && ss->tty && stop == NULL) {
		stop = memchr(buf, CTRL_C, (size_t)n);
	}
	if (out >= 0) {
		if (write_all(out, buf, stop ? (size_t)(stop - buf) : (size_t)n) < 0) {
			return STEP_DONE; /* the reader says why */
		}
	} else if (!ss->said_ro && (stop == NULL || stop > buf)) {
		say("%s: a container's console is read-only: input ignored (hactl enter %s "
		    "gives a shell)", ss->name, ss->name);
		ss->said_ro = true;
	}
	return stop ? STEP_DETACH : STEP_GO;
}

/* After the end of the input: done once quiet (or too long); a terminal
 * that ended (hung up) ends the session at once. */
static bool drained(const struct session *ss)
{
	uint64_t t = now_ms();

	return ss->in_fd < 0 &&
	       (ss->tty || t - ss->last_out >= QUIET_MS || t - ss->eof_at >= AFTER_EOF_MS);
}

/*
 * Leaves QEMU's socket so that what was sent still reaches the guest: QEMU
 * reads the socket only as fast as the serial port's FIFO takes it, and a
 * socket closed outright may be dropped (hung up) with bytes unread. Half
 * closed, QEMU reads to the end and then closes; the rest of the output is
 * not printed (after a detach nothing more is wanted).
 */
static void leave(int sock)
{
	uint64_t until = now_ms() + LEAVE_MS;
	char buf[4096];

	shutdown(sock, SHUT_WR);
	while (now_ms() < until) {
		struct pollfd p = { .fd = sock, .events = POLLIN };

		if (poll(&p, 1, (int)(until - now_ms())) <= 0 || read(sock, buf, sizeof(buf)) <= 0) {
			break;
		}
	}
}

static int relay_domain(struct session *ss, int sock)
{
	char buf[8192];

	for (;;) {
		struct pollfd p[2] = { { .fd = sock, .events = POLLIN },
				       { .fd = ss->in_fd, .events = POLLIN } };
		int r = poll(p, ss->in_fd >= 0 ? 2 : 1, ss->in_fd >= 0 ? -1 : 100);

		if (r < 0 && errno != EINTR) {
			say("poll: %s", strerror(errno));
			return EX_FAIL;
		}
		if (r > 0 && p[0].revents) {
			ssize_t n = read(sock, buf, sizeof(buf));

			if (n < 0 && errno == EINTR) {
				continue;
			}
			if (n <= 0) {
				say("%s's console closed (the guest stopped, restarted or moved)",
				    ss->name);
				return EX_FAIL;
			}
			ss->last_out = now_ms();
			if (write_all(STDOUT_FILENO, buf, (size_t)n) < 0) {
				return EX_FAIL;
			}
		}
		if (r > 0 && ss->in_fd >= 0 && p[1].revents) {
			enum step st = input(ss, sock);

			if (st == STEP_DETACH) {
				leave(sock);
				say("detached from %s's console (it keeps running)", ss->name);
				return EX_OK;
			}
		}
		if (drained(ss)) {
			leave(sock);
			return EX_OK;
		}
	}
}

/* The container's init as its agent recorded it is still there. */
static bool ctr_alive(const char *dir)
{
	char path[PATH_MAX], line[128];
	FILE *f;
	long v = 0;

	snprintf(path, sizeof(path), "%s/pid", dir);
	f = fopen(path, "r");
	if (f == NULL) {
		return false;
	}
	while (fgets(line, sizeof(line), f)) {
		if (strncmp(line, "pid=", 4) == 0) {
			v = strtol(line + 4, NULL, 10);
		}
	}
	fclose(f);
	return v > 1 && kill((pid_t)v, 0) == 0;
}

static int follow_container(struct session *ss, const char *dir, const char *log, int fd,
			    off_t off)
{
	uint64_t checked = now_ms();
	char buf[8192];
	struct stat st, now;

	if (fstat(fd, &st) < 0) {
		return EX_FAIL;
	}
	for (;;) {
		struct pollfd p = { .fd = ss->in_fd, .events = POLLIN };
		int r = poll(&p, ss->in_fd >= 0 ? 1 : 0, FOLLOW_MS);
		ssize_t n;

		if (r > 0 && input(ss, -1) == STEP_DETACH) {
			say("left %s's console log", ss->name);
			return EX_OK;
		}
		/* rotated (a restart moves a big log aside) or truncated: anew */
		if (stat(log, &now) == 0 && (now.st_ino != st.st_ino || now.st_size < off)) {
			int nfd = open(log, O_RDONLY | O_CLOEXEC | O_NOCTTY);

			if (nfd >= 0) {
				close(fd);
				fd = nfd;
				st = now;
				off = 0;
			}
		}
		while ((n = pread(fd, buf, sizeof(buf), off)) > 0) {
			off += n;
			ss->last_out = now_ms();
			if (write_all(STDOUT_FILENO, buf, (size_t)n) < 0) {
				close(fd);
				return EX_FAIL;
			}
		}
		if (drained(ss)) {
			close(fd);
			return EX_OK;
		}
		if (now_ms() - checked >= ALIVE_MS) {
			checked = now_ms();
			if (!ctr_alive(dir)) {
				close(fd);
				say("%s stopped: its console log ends here", ss->name);
				return EX_FAIL;
			}
		}
	}
}

/* Connects to DIR/console.sock (through the directory when the path is
 * too long for sun_path). Returns the socket or -errno. */
static int console_connect(const char *dir)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int dfd = -1, fd, rc = 0;

	if (snprintf(sa.sun_path, sizeof(sa.sun_path), "%s/console.sock", dir) >=
	    (int)sizeof(sa.sun_path)) {
		dfd = open(dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
		if (dfd < 0) {
			return -errno;
		}
		snprintf(sa.sun_path, sizeof(sa.sun_path), "/proc/self/fd/%d/console.sock", dfd);
	}
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		rc = -errno;
		if (fd >= 0) {
			close(fd);
		}
	}
	if (dfd >= 0) {
		close(dfd);
	}
	return rc < 0 ? rc : fd;
}

int cli_cmd_console(struct cli *cli, int argc, char **argv)
{
	struct session ss = { .in_fd = STDIN_FILENO };
	Hactl__StatusReply *s = NULL;
	const Hactl__GuestRecord *g;
	struct ha_config cfg;
	char dir[PATH_MAX], log[PATH_MAX + 16], node[128];
	uint64_t lines = LINES_DEFAULT;
	const char *name = NULL;
	bool domain;
	int ex, sock = -1, lfd;
	off_t off;

	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--lines") == 0) {
			if (i + 1 >= argc || ha_parse_u64(argv[++i], 0, LINES_MAX, &lines) < 0) {
				return cli_usage_error("console: --lines takes a count of lines, 0 to "
						       "100000 (got '%s')", i < argc ? argv[i] : "");
			}
		} else if (argv[i][0] == '-' || name != NULL) {
			return cli_usage_error("usage: hactl console NAME [--lines N] (what is '%s'?)",
					       argv[i]);
		} else {
			name = argv[i];
		}
	}
	if (name == NULL) {
		return cli_usage_error("usage: hactl console NAME [--lines N]%s", "");
	}
	ex = cli_status_guest(cli, name, &s, &g);
	if (ex != EX_OK) {
		return ex;
	}
	if (g->running_on == 0) {
		fprintf(stderr, "hactl: %s is not running (%s): it has no console; start it "
			"first (hactl start %s)\n", name, cli_guest_state(s, g), name);
		ex = EX_FAIL;
	} else {
		ex = cli_guest_here(s, g, name, "console", "");
	}
	domain = g->type && strcmp(g->type, "domain") == 0;
	snprintf(node, sizeof(node), "%s", s->local_node ? s->local_node : "this host");
	ha_env_msg_free(&s->base);
	if (ex != EX_OK) {
		return ex;
	}
	ex = cli_load_cfg(&cfg);
	if (ex != EX_OK) {
		return ex;
	}
	if (snprintf(dir, sizeof(dir), "%s/guests/%s", cfg.state_dir, name) >= (int)sizeof(dir)) {
		fprintf(stderr, "hactl: %s: state_dir %s too long\n", name, cfg.state_dir);
		return EX_FAIL;
	}
	snprintf(log, sizeof(log), "%s/console.log", dir);
	signal(SIGPIPE, SIG_IGN);
	if (domain) {
		sock = console_connect(dir);
		if (sock < 0) {
			fprintf(stderr, "hactl: %s: connecting to %s/console.sock: %s%s\n", name, dir,
				strerror(-sock), sock == -ENOENT || sock == -ECONNREFUSED ?
				" (its QEMU was started without a console socket, by an older "
				"hactl, or is gone: restart the guest)" : "");
			return EX_FAIL;
		}
	}
	lfd = open(log, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	if (lfd < 0 && (!domain || errno != ENOENT)) {
		fprintf(stderr, "hactl: %s: %s: %s\n", name, log, strerror(errno));
		if (sock >= 0) {
			close(sock);
		}
		return EX_FAIL;
	}
	ss.name = name;
	ss.tty = isatty(STDIN_FILENO);
	if (ss.tty && tty_raw(!domain) != EX_OK) {
		if (sock >= 0) {
			close(sock);
		}
		if (lfd >= 0) {
			close(lfd);
		}
		return EX_FAIL;
	}
	if (domain) {
		say("connected to %s's console on %s; Ctrl-] detaches", name, node);
	} else {
		say("following %s's console log on %s (a container's console is read-only; "
		    "Ctrl-] leaves)", name, node);
	}
	off = lfd >= 0 ? log_tail(lfd, (unsigned)lines) : 0;
	ss.last_out = now_ms();
	if (domain) {
		if (lfd >= 0) {
			close(lfd);
		}
		ex = relay_domain(&ss, sock);
		close(sock);
	} else {
		ex = follow_container(&ss, dir, log, lfd, off);
	}
	tty_restore();
	return ex;
}
