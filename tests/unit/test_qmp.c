/*
 * test_qmp.c - the QMP client: line framing, message parsing, a scripted
 * QEMU on a socketpair (greeting, replies by id, events in between, errors,
 * timeouts, oversized lines, fd passing), query-migrate parsing, and the
 * domain's kernel and QEMU command lines.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "driver.h"
#include "harness.h"
#include "qmp_client.h"

/* driver_domain_qemu.c, for this test */
int agent_domain_cmdline(const char *name, const char *ip, const char *gw, const char *cmd,
		       char *out, size_t len);
int agent_domain_accel_mode(const char *conf, const char *env, char *err, size_t errlen);
int agent_domain_qemu_cmd(const struct agent_guest_spec *spec, int mode, const char *accel,
			  char *out, size_t len, char *err);

#define GREETING "{\"QMP\": {\"version\": {\"qemu\": {\"micro\": 22, \"minor\": 2, " \
		 "\"major\": 7}, \"package\": \"Debian\"}, \"capabilities\": [\"oob\"]}}\r\n"

/* ---- framing ------------------------------------------------------------ */

static void test_linebuf(void)
{
	struct qmp_linebuf lb;
	const char *line;
	size_t len;
	char big[40];

	qmp_linebuf_init(&lb, 16);
	CHECK_EQ_INT(qmp_linebuf_next(&lb, &line, &len), 0);
	CHECK_EQ_INT(qmp_linebuf_feed(&lb, "ab", 2), 0);
	CHECK_EQ_INT(qmp_linebuf_next(&lb, &line, &len), 0);
	CHECK_EQ_INT(qmp_linebuf_feed(&lb, "c\r\nde\nf", 7), 0);
	CHECK_EQ_INT(qmp_linebuf_next(&lb, &line, &len), 1);
	CHECK(len == 3 && strcmp(line, "abc") == 0);
	CHECK_EQ_INT(qmp_linebuf_next(&lb, &line, &len), 1);
	CHECK(len == 2 && strcmp(line, "de") == 0);
	CHECK_EQ_INT(qmp_linebuf_next(&lb, &line, &len), 0);
	/* a line of exactly the bound, "\r\n" split across feeds */
	CHECK_EQ_INT(qmp_linebuf_feed(&lb, "0123456789abcde\r", 16), 0);
	CHECK_EQ_INT(qmp_linebuf_feed(&lb, "\n\n", 2), 0);
	CHECK_EQ_INT(qmp_linebuf_next(&lb, &line, &len), 1);
	CHECK(len == 16 && strcmp(line, "f0123456789abcde") == 0);
	CHECK_EQ_INT(qmp_linebuf_next(&lb, &line, &len), 1);
	CHECK_EQ_INT(len, 0);
	/* a partial line past the bound is refused at once, and it sticks */
	memset(big, 'x', sizeof(big));
	CHECK_EQ_INT(qmp_linebuf_feed(&lb, big, 18), -EMSGSIZE);
	CHECK_EQ_INT(qmp_linebuf_next(&lb, &line, &len), -EMSGSIZE);
	CHECK_EQ_INT(qmp_linebuf_feed(&lb, "\n", 1), -EMSGSIZE);
	qmp_linebuf_clear(&lb);

	/* a complete line past the bound arriving in one piece */
	qmp_linebuf_init(&lb, 4);
	CHECK_EQ_INT(qmp_linebuf_feed(&lb, "123456\nok\n", 10), 0);
	CHECK_EQ_INT(qmp_linebuf_next(&lb, &line, &len), -EMSGSIZE);
	qmp_linebuf_clear(&lb);

	/* many lines through a small buffer: compaction keeps them intact */
	qmp_linebuf_init(&lb, 8);
	for (int i = 0; i < 1000; i++) {
		char l[16];
		int n = snprintf(l, sizeof(l), "L%d\n", i);

		CHECK_EQ_INT(qmp_linebuf_feed(&lb, l, (size_t)n), 0);
		CHECK_EQ_INT(qmp_linebuf_next(&lb, &line, &len), 1);
		CHECK(strncmp(line, l, (size_t)n - 1) == 0 && len == (size_t)n - 1);
	}
	CHECK(lb.cap <= 4096);
	qmp_linebuf_clear(&lb);
}

/* ---- parsing ------------------------------------------------------------ */

static int parse(const char *s, struct qmp_msg *m)
{
	char err[128];

	return qmp_msg_parse(s, strlen(s), m, err, sizeof(err));
}

static void test_parse(void)
{
	struct qmp_msg m;
	char err[128] = "";

	CHECK_EQ_INT(parse("{\"QMP\": {\"version\": {\"qemu\": {\"micro\": 22, \"minor\": 2, "
			   "\"major\": 7}}, \"capabilities\": []}}", &m), 0);
	CHECK_EQ_INT(m.kind, QMP_MSG_GREETING);
	CHECK(m.ver_major == 7 && m.ver_minor == 2 && m.ver_micro == 22);
	qmp_msg_clear(&m);

	CHECK_EQ_INT(parse("{\"return\": {\"status\": \"running\"}, \"id\": \"hactl-3\"}", &m), 0);
	CHECK_EQ_INT(m.kind, QMP_MSG_RETURN);
	CHECK(m.id && strcmp(m.id, "hactl-3") == 0);
	CHECK(json_object_is_type(m.value, json_type_object));
	qmp_msg_clear(&m);

	/* json-c, like QEMU's own parser, takes single quotes */
	CHECK_EQ_INT(parse("{'return': {}}", &m), 0);
	qmp_msg_clear(&m);
	CHECK_EQ_INT(parse("{\"return\": 5}", &m), 0); /* any value, no id */
	CHECK(m.kind == QMP_MSG_RETURN && m.id == NULL);
	qmp_msg_clear(&m);

	CHECK_EQ_INT(parse("{\"return\": {}, \"id\": 7}", &m), 0); /* not our kind of id */
	CHECK(m.id == NULL);
	qmp_msg_clear(&m);

	CHECK_EQ_INT(parse("{\"error\": {\"class\": \"GenericError\", \"desc\": \"no\"}, "
			   "\"id\": \"x\"}", &m), 0);
	CHECK(m.kind == QMP_MSG_ERROR && strcmp(m.err_class, "GenericError") == 0 &&
	      strcmp(m.err_desc, "no") == 0 && strcmp(m.id, "x") == 0);
	qmp_msg_clear(&m);

	CHECK_EQ_INT(parse("{\"timestamp\": {\"seconds\": 1700000000, \"microseconds\": 5}, "
			   "\"event\": \"STOP\"}", &m), 0);
	CHECK(m.kind == QMP_MSG_EVENT && strcmp(m.event, "STOP") == 0 && m.value == NULL);
	CHECK(m.ts_us == 1700000000LL * 1000000 + 5);
	qmp_msg_clear(&m);

	CHECK_EQ_INT(parse("{\"timestamp\": {\"seconds\": -1, \"microseconds\": -1}, "
			   "\"event\": \"MIGRATION\", \"data\": {\"status\": \"active\"}}", &m), 0);
	CHECK(m.kind == QMP_MSG_EVENT && m.ts_us == -1 && m.value != NULL);
	qmp_msg_clear(&m);

	/* the rejected */
	static const char *const bad[] = {
		"",
		"{",
		"[]",
		"\"return\"",
		"{}",
		"{\"return\": {}} x",
		"{\"return\": {}}{\"return\": {}}",
		"{\"return\": {}, \"event\": \"STOP\"}",
		"{\"error\": \"bad\"}",
		"{\"error\": {\"class\": \"X\"}}",
		"{\"error\": {\"class\": 1, \"desc\": \"d\"}}",
		"{\"event\": 5}",
		"{\"event\": \"\"}",
		"{\"event\": \"A B\"}",
		"{\"event\": \"STOP\", \"data\": []}",
		"{\"event\": \"STOP\", \"timestamp\": {\"seconds\": \"1\", \"microseconds\": 0}}",
		"{\"QMP\": 1}",
		"{\"QMP\": {\"version\": {\"qemu\": {\"major\": -1, \"minor\": 0, \"micro\": 0}}}}",
		"{\"QMP\": {\"version\": {\"qemu\": {\"major\": 7}}}}",
		"{\"return\": {},}",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		int rc = parse(bad[i], &m);

		if (rc != -EBADMSG) {
			fprintf(stderr, "accepted: %s\n", bad[i]);
		}
		CHECK_EQ_INT(rc, -EBADMSG);
		CHECK(m.root == NULL);
	}
	/* an embedded NUL */
	CHECK_EQ_INT(qmp_msg_parse("{\"return\": {}}\0", 15, &m, err, sizeof(err)), -EBADMSG);
	CHECK(strstr(err, "NUL") != NULL);

	/* nesting past the bound */
	{
		char deep[2 * (QMP_MAX_DEPTH + 10) + 32];
		size_t o = 0;

		o += (size_t)sprintf(deep, "{\"return\": ");
		for (int i = 0; i < QMP_MAX_DEPTH + 5; i++) {
			deep[o++] = '[';
		}
		for (int i = 0; i < QMP_MAX_DEPTH + 5; i++) {
			deep[o++] = ']';
		}
		deep[o++] = '}';
		CHECK_EQ_INT(qmp_msg_parse(deep, o, &m, err, sizeof(err)), -EBADMSG);
	}
	CHECK_EQ_INT(qmp_msg_parse("{}", QMP_MAX_LINE + 1, &m, err, sizeof(err)), -EMSGSIZE);
	CHECK(strcmp(qmp_msg_kind_str(QMP_MSG_EVENT), "event") == 0);
	CHECK(strcmp(qmp_msg_kind_str(QMP_MSG_KIND_MAX), "unknown") == 0);
}

static void test_migrate_info(void)
{
	struct qmp_migrate_info mi;
	json_object *o;

	o = json_tokener_parse("{\"status\": \"completed\", \"total-time\": 84, \"downtime\": 5,"
			       " \"ram\": {\"transferred\": 73019905, \"remaining\": 0,"
			       " \"total\": 135020544, \"dirty-sync-count\": 3}}");
	CHECK_EQ_INT(qmp_migrate_info_parse(o, &mi), 0);
	CHECK(mi.status == QMP_MIGRATE_COMPLETED && mi.total_time_ms == 84 &&
	      mi.downtime_ms == 5 && mi.ram_transferred == 73019905 &&
	      mi.ram_total == 135020544 && mi.dirty_sync_count == 3);
	json_object_put(o);

	o = json_tokener_parse("{\"status\": \"failed\", \"error-desc\": \"disk\\nfull\"}");
	CHECK_EQ_INT(qmp_migrate_info_parse(o, &mi), 0);
	CHECK(mi.status == QMP_MIGRATE_FAILED && strcmp(mi.error, "disk?full") == 0);
	json_object_put(o);

	o = json_tokener_parse("{}");
	CHECK_EQ_INT(qmp_migrate_info_parse(o, &mi), 0);
	CHECK(mi.status == QMP_MIGRATE_NONE);
	json_object_put(o);

	o = json_tokener_parse("{\"status\": \"sideways\"}");
	CHECK_EQ_INT(qmp_migrate_info_parse(o, &mi), -EPROTO);
	json_object_put(o);
	o = json_tokener_parse("[1]");
	CHECK_EQ_INT(qmp_migrate_info_parse(o, &mi), -EPROTO);
	json_object_put(o);
	CHECK(strcmp(qmp_migrate_status_str(QMP_MIGRATE_CANCELLED), "cancelled") == 0);
	/* QEMU's run states by name; a newer QEMU's unknown one is "other" */
	CHECK(qmp_run_state_parse("finish-migrate") == QMP_RUN_FINISH_MIGRATE);
	CHECK(qmp_run_state_parse("postmigrate") == QMP_RUN_POSTMIGRATE);
	CHECK(qmp_run_state_parse("hibernating-someday") == QMP_RUN_OTHER);
	CHECK(qmp_run_state_parse(NULL) == QMP_RUN_OTHER);
	for (int s = 0; s < QMP_RUN_STATE_MAX; s++) {
		CHECK(qmp_run_state_parse(qmp_run_state_str((enum qmp_run_state)s)) ==
		      (enum qmp_run_state)s);
	}
	/* cancelling is a state of its own (mig_cancel waits through it) */
	o = json_tokener_parse("{\"status\": \"cancelling\"}");
	CHECK_EQ_INT(qmp_migrate_info_parse(o, &mi), 0);
	CHECK(mi.status == QMP_MIGRATE_CANCELLING);
	CHECK(strcmp(qmp_migrate_status_str(mi.status), "cancelling") == 0);
	json_object_put(o);
}

/* ---- a scripted QEMU ------------------------------------------------------ */

enum script {
	SCRIPT_NORMAL,       /* greeting, replies, events before replies */
	SCRIPT_SILENT,       /* greeting, then never answers commands */
	SCRIPT_HUGE,         /* answers with a line past the bound */
	SCRIPT_GARBAGE,      /* answers with something that is not QMP */
	SCRIPT_EOF,          /* closes after the greeting */
	SCRIPT_NO_GREETING,  /* says nothing at all */
};

struct fake {
	int fd;
	enum script script;
	int received_fd_ok;
};

static void say(int fd, const char *s)
{
	size_t len = strlen(s);

	while (len > 0) {
		ssize_t n = send(fd, s, len, MSG_NOSIGNAL);

		if (n <= 0) {
			return;
		}
		s += n;
		len -= (size_t)n;
	}
}

/* Reads one request line (with any fd passed alongside). */
static int read_request(struct fake *f, char *buf, size_t len, int *passed)
{
	size_t o = 0;

	*passed = -1;
	while (o + 1 < len) {
		char cbuf[CMSG_SPACE(sizeof(int))];
		struct iovec iov = { .iov_base = buf + o, .iov_len = 1 };
		struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1,
				     .msg_control = cbuf, .msg_controllen = sizeof(cbuf) };
		ssize_t n = recvmsg(f->fd, &mh, 0);
		struct cmsghdr *cm;

		if (n <= 0) {
			return -1;
		}
		for (cm = CMSG_FIRSTHDR(&mh); cm; cm = CMSG_NXTHDR(&mh, cm)) {
			if (cm->cmsg_type == SCM_RIGHTS) {
				memcpy(passed, CMSG_DATA(cm), sizeof(int));
			}
		}
		if (buf[o] == '\n') {
			buf[o] = 0;
			return 0;
		}
		o++;
	}
	return -1;
}

static void *fake_qemu(void *arg)
{
	struct fake *f = arg;
	char req[4096], out[8192];
	int passed;

	if (f->script == SCRIPT_NO_GREETING) {
		while (read_request(f, req, sizeof(req), &passed) == 0) {
		}
		return NULL;
	}
	say(f->fd, GREETING);
	if (f->script == SCRIPT_EOF) {
		shutdown(f->fd, SHUT_RDWR);
		return NULL;
	}
	while (read_request(f, req, sizeof(req), &passed) == 0) {
		json_object *o = json_tokener_parse(req), *ex = NULL, *id = NULL;
		const char *cmd = "", *ids = "";

		if (o && json_object_object_get_ex(o, "execute", &ex)) {
			cmd = json_object_get_string(ex);
		}
		if (o && json_object_object_get_ex(o, "id", &id)) {
			ids = json_object_get_string(id);
		}
		if (strcmp(cmd, "qmp_capabilities") == 0) {
			snprintf(out, sizeof(out), "{\"return\": {}, \"id\": \"%s\"}\n", ids);
			say(f->fd, out);
		} else if (f->script == SCRIPT_SILENT) {
			/* nothing */
		} else if (f->script == SCRIPT_HUGE) {
			char *big = malloc(QMP_MAX_LINE + 64);

			memset(big, ' ', QMP_MAX_LINE + 10);
			big[QMP_MAX_LINE + 10] = '\n';
			big[QMP_MAX_LINE + 11] = 0;
			say(f->fd, big);
			free(big);
		} else if (f->script == SCRIPT_GARBAGE) {
			say(f->fd, "{\"hello\": 1}\n");
		} else if (strcmp(cmd, "query-status") == 0) {
			/* an event, a stale reply and one for nobody first */
			say(f->fd, "{\"timestamp\": {\"seconds\": 1, \"microseconds\": 2}, "
				   "\"event\": \"RESUME\"}\n");
			say(f->fd, "{\"return\": {}, \"id\": \"hactl-0\"}\n");
			say(f->fd, "{\"return\": {}}\n");
			snprintf(out, sizeof(out), "{\"return\": {\"status\": \"running\", "
				 "\"singlestep\": false, \"running\": true}, \"id\": \"%s\"}\r\n", ids);
			say(f->fd, out);
		} else if (strcmp(cmd, "getfd") == 0) {
			struct stat st;

			f->received_fd_ok = passed >= 0 && fstat(passed, &st) == 0;
			if (passed >= 0) {
				close(passed);
			}
			snprintf(out, sizeof(out), "{\"return\": {}, \"id\": \"%s\"}\n", ids);
			say(f->fd, out);
		} else if (strcmp(cmd, "flood") == 0) {
			for (int i = 0; i < QMP_MAX_EVENTS + 10; i++) {
				snprintf(out, sizeof(out), "{\"event\": \"E%d\"}\n", i);
				say(f->fd, out);
			}
			snprintf(out, sizeof(out), "{\"return\": {}, \"id\": \"%s\"}\n", ids);
			say(f->fd, out);
		} else {
			snprintf(out, sizeof(out), "{\"error\": {\"class\": \"CommandNotFound\", "
				 "\"desc\": \"The command %s has not been found\"}, \"id\": \"%s\"}\n",
				 cmd, ids);
			say(f->fd, out);
		}
		json_object_put(o);
	}
	return NULL;
}

static int fake_start(struct fake *f, pthread_t *t, enum script s, int *client_fd)
{
	int sv[2];

	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) {
		return -1;
	}
	f->fd = sv[1];
	f->script = s;
	f->received_fd_ok = 0;
	*client_fd = sv[0];
	return pthread_create(t, NULL, fake_qemu, f);
}

static void fake_stop(struct fake *f, pthread_t t, struct qmp_client *c)
{
	qmp_client_free(c); /* closes our end: the fake sees EOF */
	shutdown(f->fd, SHUT_RDWR);
	pthread_join(t, NULL);
	close(f->fd);
}

static void test_client(void)
{
	struct fake f;
	pthread_t t;
	struct qmp_client *c = NULL;
	char err[256];
	struct qmp_status st;
	json_object *ret = NULL, *data = NULL;
	unsigned maj, min, mic;
	int fd, rc;

	/* the ordinary conversation */
	CHECK_EQ_INT(fake_start(&f, &t, SCRIPT_NORMAL, &fd), 0);
	rc = qmp_client_connect_fd(fd, 2000, &c, err, sizeof(err));
	CHECK_EQ_INT(rc, 0);
	if (rc == 0) {
		qmp_client_version(c, &maj, &min, &mic);
		CHECK(maj == 7 && min == 2 && mic == 22);
		CHECK_EQ_INT(qmp_client_query_status(c, &st, 2000, err, sizeof(err)), 0);
		CHECK(st.running && st.state == QMP_RUN_RUNNING && strcmp(st.name, "running") == 0);
		CHECK_EQ_INT(qmp_client_replies_skipped(c), 2);
		CHECK(qmp_client_take_event(c, "STOP", NULL) == false);
		CHECK(qmp_client_take_event(c, "RESUME", &data) == true);
		CHECK(data == NULL);
		CHECK(qmp_client_take_event(c, NULL, NULL) == false);

		rc = qmp_client_execute(c, "nonesuch", NULL, &ret, 2000, err, sizeof(err));
		CHECK_EQ_INT(rc, -EOPNOTSUPP);
		CHECK(ret == NULL);
		CHECK(strstr(err, "qmp nonesuch: CommandNotFound") != NULL);

		{
			int pipefd[2];

			CHECK_EQ_INT(pipe(pipefd), 0);
			CHECK_EQ_INT(qmp_client_getfd(c, "mig", pipefd[1], 2000, err, sizeof(err)), 0);
			CHECK(f.received_fd_ok == 1);
			close(pipefd[0]);
			close(pipefd[1]);
		}

		/* more events than the queue holds: the oldest go */
		CHECK_EQ_INT(qmp_client_execute(c, "flood", NULL, NULL, 2000, err, sizeof(err)), 0);
		CHECK_EQ_INT(qmp_client_events_dropped(c), 10);
		CHECK(qmp_client_take_event(c, "E9", NULL) == false);
		CHECK(qmp_client_take_event(c, "E10", NULL) == true);
		CHECK(qmp_client_take_event(c, "E100", NULL) == true); /* from the middle */
		CHECK(qmp_client_take_event(c, NULL, NULL) == true);   /* E11 */
		CHECK_EQ_INT(qmp_client_wait_event(c, "E137", NULL, 100, err, sizeof(err)), 0);
		CHECK_EQ_INT(qmp_client_wait_event(c, "NEVER", NULL, 50, err, sizeof(err)),
			     -ETIMEDOUT);
		CHECK_EQ_INT(qmp_client_poll(c, err, sizeof(err)), 0);
	}
	fake_stop(&f, t, c);

	/* no reply: a timeout that names the command, the connection lives */
	CHECK_EQ_INT(fake_start(&f, &t, SCRIPT_SILENT, &fd), 0);
	CHECK_EQ_INT(qmp_client_connect_fd(fd, 2000, &c, err, sizeof(err)), 0);
	if (c) {
		rc = qmp_client_execute(c, "query-status", NULL, NULL, 100, err, sizeof(err));
		CHECK_EQ_INT(rc, -ETIMEDOUT);
		CHECK(strstr(err, "query-status") != NULL);
	}
	fake_stop(&f, t, c);

	/* a line past the bound: refused, and the connection is done */
	CHECK_EQ_INT(fake_start(&f, &t, SCRIPT_HUGE, &fd), 0);
	CHECK_EQ_INT(qmp_client_connect_fd(fd, 2000, &c, err, sizeof(err)), 0);
	if (c) {
		rc = qmp_client_execute(c, "query-status", NULL, NULL, 5000, err, sizeof(err));
		CHECK_EQ_INT(rc, -EMSGSIZE);
		CHECK(strstr(err, "longer than") != NULL);
		rc = qmp_client_execute(c, "query-status", NULL, NULL, 100, err, sizeof(err));
		CHECK_EQ_INT(rc, -EMSGSIZE);
	}
	fake_stop(&f, t, c);

	/* not QMP */
	CHECK_EQ_INT(fake_start(&f, &t, SCRIPT_GARBAGE, &fd), 0);
	CHECK_EQ_INT(qmp_client_connect_fd(fd, 2000, &c, err, sizeof(err)), 0);
	if (c) {
		rc = qmp_client_execute(c, "query-status", NULL, NULL, 2000, err, sizeof(err));
		CHECK_EQ_INT(rc, -EPROTO);
		CHECK(strstr(err, "malformed") != NULL);
	}
	fake_stop(&f, t, c);

	/* QEMU goes away */
	CHECK_EQ_INT(fake_start(&f, &t, SCRIPT_EOF, &fd), 0);
	rc = qmp_client_connect_fd(fd, 2000, &c, err, sizeof(err));
	CHECK(rc == -ECONNRESET || rc == -EPIPE);
	CHECK(strstr(err, "closed") != NULL);
	CHECK(c == NULL);
	fake_stop(&f, t, c);

	/* a monitor that never greets */
	CHECK_EQ_INT(fake_start(&f, &t, SCRIPT_NO_GREETING, &fd), 0);
	rc = qmp_client_connect_fd(fd, 100, &c, err, sizeof(err));
	CHECK_EQ_INT(rc, -ETIMEDOUT);
	CHECK(strstr(err, "greeting") != NULL);
	fake_stop(&f, t, c);

	/* nobody listening */
	rc = qmp_client_connect("/nonexistent/hactl/qmp.sock", 50, &c, err, sizeof(err));
	CHECK_EQ_INT(rc, -ENOENT);
	CHECK(c == NULL && strstr(err, "connect") != NULL);
}

static void test_cmdline(void)
{
	char out[2048];

	CHECK_EQ_INT(agent_domain_cmdline("d1", "10.213.1.20/24", "10.213.1.1",
					"/usr/bin/hactl-workload --port 7000", out,
					sizeof(out)), 0);
	CHECK(strcmp(out, "console=ttyS0 quiet hactl.hostname=d1 hactl.ip=10.213.1.20/24 "
			  "hactl.gw=10.213.1.1 "
			  "hactl.cmd=/usr/bin/hactl-workload,--port,7000") == 0);
	/* docs/templates.md: commas between arguments, %XX for the rest */
	CHECK_EQ_INT(agent_domain_cmdline(NULL, NULL, NULL, "sh  -c a,b%\"x\"\t\xff", out,
					sizeof(out)), 0);
	CHECK(strcmp(out, "console=ttyS0 quiet hactl.cmd=sh,-c,a%2Cb%25%22x%22,%FF") == 0);
	CHECK_EQ_INT(agent_domain_cmdline(NULL, NULL, NULL, NULL, out, sizeof(out)), 0);
	CHECK(strcmp(out, "console=ttyS0 quiet") == 0);
	CHECK_EQ_INT(agent_domain_cmdline(NULL, NULL, NULL, "   ", out, sizeof(out)), 0);
	CHECK(strcmp(out, "console=ttyS0 quiet") == 0);
	{
		char big[1500];

		memset(big, '"', sizeof(big) - 1);
		big[sizeof(big) - 1] = 0;
		CHECK_EQ_INT(agent_domain_cmdline(NULL, NULL, NULL, big, out, sizeof(out)), -E2BIG);
		CHECK_EQ_INT(agent_domain_cmdline(NULL, NULL, NULL, "x", out, 10), -E2BIG);
	}
}

/* [agent] domain_accel, overridden by $HACTL_DOMAIN_ACCEL; 0 tcg, 1 kvm, 2 auto */
static void test_accel_mode(void)
{
	char err[256] = "";

	CHECK_EQ_INT(agent_domain_accel_mode(NULL, NULL, err, sizeof(err)), 0);
	CHECK_EQ_INT(agent_domain_accel_mode("", "", err, sizeof(err)), 0);
	CHECK_EQ_INT(agent_domain_accel_mode("tcg", NULL, err, sizeof(err)), 0);
	CHECK_EQ_INT(agent_domain_accel_mode("kvm", NULL, err, sizeof(err)), 1);
	CHECK_EQ_INT(agent_domain_accel_mode("auto", "", err, sizeof(err)), 2);
	/* the environment wins when set */
	CHECK_EQ_INT(agent_domain_accel_mode("kvm", "tcg", err, sizeof(err)), 0);
	CHECK_EQ_INT(agent_domain_accel_mode("tcg", "auto", err, sizeof(err)), 2);
	CHECK_EQ_INT(agent_domain_accel_mode(NULL, "kvm", err, sizeof(err)), 1);
	/* a bad value is refused, naming where it came from */
	CHECK_EQ_INT(agent_domain_accel_mode("kvm", "KVM", err, sizeof(err)), -EINVAL);
	CHECK(strcmp(err, "$HACTL_DOMAIN_ACCEL 'KVM' is not one of tcg, kvm, auto") == 0);
	CHECK_EQ_INT(agent_domain_accel_mode("xen", NULL, err, sizeof(err)), -EINVAL);
	CHECK(strcmp(err, "[agent] domain_accel 'xen' is not one of tcg, kvm, auto") == 0);
}

/* QEMU's command line, built in one place (driver_domain_qemu.c): a boot,
 * the same with -S -incoming defer for a restore or an incoming
 * migration, and the KVM boot probe. Modes: 0 boot, 1 incoming, 2 probe.
 * The serial port is the chardev ser0 on the listening socket the agent
 * passes as fd 4 (hactl console), logging into console.log, in every mode
 * but the probe. */
static void test_qemu_argv(void)
{
	struct agent_guest_spec s = {
		.name = "d1", .type = "domain", .mem_kib = 65536, .cpus = 2,
		.kernel = "/k/vmlinux", .initrd = "/k/initrd", .disk = "/nonexistent/d1,x.img",
		.ip = "10.1.1.2/24", .gateway = "10.1.1.1", .bridge = "br0",
		.run_dir = "/run/hactl-test/d1",
	};
	static const char boot[] =
		"qemu-system-x86_64 -name guest=d1,debug-threads=on -machine q35 -accel tcg "
		"-m 65540k -smp 2 -nodefaults -no-user-config -display none "
		"-msg timestamp=on -D /run/hactl-test/d1/qemu.log "
		"-kernel /k/vmlinux -initrd /k/initrd "
		"-append console=ttyS0 quiet hactl.hostname=d1 hactl.ip=10.1.1.2/24 "
		"hactl.gw=10.1.1.1 "
		"-chardev socket,id=ser0,fd=4,server=on,wait=off,"
		"logfile=/run/hactl-test/d1/console.log,logappend=on -serial chardev:ser0 "
		"-chardev socket,id=qmp,fd=3,server=on,wait=off -mon chardev=qmp,mode=control "
		"-netdev tap,id=net0,ifname=ht-d1,script=no,downscript=no "
		"-device virtio-net-pci,netdev=net0,mac=52:54:00:1d:13:e6 "
		"-drive file=/nonexistent/d1,,x.img,format=raw,if=none,id=disk0 "
		"-device virtio-blk-pci,drive=disk0";
	static const char tail[] = " -pidfile /run/hactl-test/d1/qemu.pid -daemonize";
	char out[4096], want[4096], err[256] = "";

	CHECK_EQ_INT(agent_domain_qemu_cmd(&s, 0, "tcg", out, sizeof(out), err), 0);
	snprintf(want, sizeof(want), "%s%s", boot, tail);
	CHECK(strcmp(out, want) == 0);
	CHECK_EQ_INT(agent_domain_qemu_cmd(&s, 1, "tcg", out, sizeof(out), err), 0);
	snprintf(want, sizeof(want), "%s -S -incoming defer%s", boot, tail);
	CHECK(strcmp(out, want) == 0);
	CHECK_EQ_INT(agent_domain_qemu_cmd(&s, 2, "kvm", out, sizeof(out), err), 0);
	CHECK(strcmp(out, "qemu-system-x86_64 -machine q35 -accel kvm -m 65536k "
			  "-nodefaults -no-user-config -display none -no-reboot -serial stdio "
			  "-kernel /k/vmlinux -append console=ttyS0 panic=-1 "
			  "rdinit=/nonexistent") == 0);
	/* no bridge, no disk, no initrd: those words are left out */
	s.bridge = s.disk = s.initrd = NULL;
	CHECK_EQ_INT(agent_domain_qemu_cmd(&s, 0, "tcg", out, sizeof(out), err), 0);
	CHECK(strstr(out, "-netdev") == NULL && strstr(out, "-drive") == NULL &&
	      strstr(out, "-initrd") == NULL && strstr(out, " -daemonize") != NULL);
	CHECK_EQ_INT(agent_domain_qemu_cmd(&s, 3, "tcg", out, sizeof(out), err), -EINVAL);
	/* a comma in the run dir is doubled in logfile= (QEMU's escaping) */
	s.run_dir = "/run/a,b/d1";
	CHECK_EQ_INT(agent_domain_qemu_cmd(&s, 1, "tcg", out, sizeof(out), err), 0);
	CHECK(strstr(out, " -chardev socket,id=ser0,fd=4,server=on,wait=off,"
			  "logfile=/run/a,,b/d1/console.log,logappend=on -serial chardev:ser0 ") !=
	      NULL);
	CHECK(strstr(out, "-serial file:") == NULL);
}

int main(void)
{
	test_accel_mode();
	test_linebuf();
	test_parse();
	test_migrate_info();
	test_client();
	test_cmdline();
	test_qemu_argv();
	return ha_test_done("test_qmp");
}
