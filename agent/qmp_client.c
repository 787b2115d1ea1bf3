/*
 * qmp_client.c - the QMP client of the domain driver: line framing, message
 * parsing, commands with timeouts, events, migration helpers.
 *
 * QMP is one JSON object per line in both directions. QEMU's output is
 * treated as hostile input: it is framed with a hard line bound, parsed by
 * json-c with a depth bound and strict syntax, and classified into exactly
 * one of greeting / return / error / event, or rejected.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "qmp_client.h"
#include "util.h"

#define READ_CHUNK 65536
#define CONNECT_RETRY_MS 20

/* ---- helpers ---------------------------------------------------------- */

/* Copies @src (at most @n bytes) into @dst, replacing control bytes so
 * that what QEMU sends stays on one line. */
static void copy_clean(char *dst, size_t dstlen, const char *src, size_t n)
{
	size_t i;

	if (dstlen == 0) {
		return;
	}
	for (i = 0; i + 1 < dstlen && i < n && src[i]; i++) {
		unsigned char ch = (unsigned char)src[i];

		dst[i] = (ch < 0x20 || ch == 0x7f) ? '?' : (char)ch;
	}
	dst[i] = 0;
}

static const char *jstr(json_object *o, const char *key)
{
	json_object *v;

	if (o && json_object_object_get_ex(o, key, &v) &&
	    json_object_is_type(v, json_type_string)) {
		return json_object_get_string(v);
	}
	return NULL;
}

static bool jint(json_object *o, const char *key, int64_t *out)
{
	json_object *v;

	if (o && json_object_object_get_ex(o, key, &v) &&
	    json_object_is_type(v, json_type_int)) {
		*out = json_object_get_int64(v);
		return true;
	}
	return false;
}

static uint64_t ju64(json_object *o, const char *key)
{
	int64_t v;

	return jint(o, key, &v) && v > 0 ? (uint64_t)v : 0;
}

/* ---- line framing ----------------------------------------------------- */

void qmp_linebuf_init(struct qmp_linebuf *lb, size_t max)
{
	memset(lb, 0, sizeof(*lb));
	lb->max = max ? max : QMP_MAX_LINE;
}

void qmp_linebuf_clear(struct qmp_linebuf *lb)
{
	size_t max = lb->max;

	free(lb->buf);
	qmp_linebuf_init(lb, max);
}

int qmp_linebuf_feed(struct qmp_linebuf *lb, const void *data, size_t n)
{
	const char *nl;
	size_t tail;

	if (lb->error) {
		return lb->error;
	}
	if (n == 0) {
		return 0;
	}
	if (lb->start > 0) {
		memmove(lb->buf, lb->buf + lb->start, lb->len - lb->start);
		lb->len -= lb->start;
		lb->scan = lb->scan > lb->start ? lb->scan - lb->start : 0;
		lb->start = 0;
	}
	if (n > SIZE_MAX / 2 - lb->len) {
		lb->error = -ENOMEM;
		return lb->error;
	}
	if (lb->len + n + 1 > lb->cap) {
		size_t cap = lb->cap ? lb->cap : 4096;
		char *p;

		while (cap < lb->len + n + 1) {
			cap *= 2;
		}
		p = realloc(lb->buf, cap);
		if (p == NULL) {
			lb->error = -ENOMEM;
			return lb->error;
		}
		lb->buf = p;
		lb->cap = cap;
	}
	memcpy(lb->buf + lb->len, data, n);
	lb->len += n;
	lb->buf[lb->len] = 0;
	/* The partial line after the last newline may not outgrow the bound
	 * (one more byte for a "\r" whose "\n" has not arrived). @scan marks
	 * where that partial line starts. */
	nl = memrchr(lb->buf + lb->len - n, '\n', n);
	if (nl) {
		lb->scan = (size_t)(nl - lb->buf) + 1;
	}
	tail = lb->len - lb->scan;
	if (tail > lb->max + 1) {
		lb->error = -EMSGSIZE;
	}
	return lb->error;
}

int qmp_linebuf_next(struct qmp_linebuf *lb, const char **line, size_t *len)
{
	char *p, *q;
	size_t l;

	if (lb->error) {
		return lb->error;
	}
	if (lb->buf == NULL || lb->start >= lb->len) {
		return 0;
	}
	p = lb->buf + lb->start;
	q = memchr(p, '\n', lb->len - lb->start);
	if (q == NULL) {
		return 0;
	}
	l = (size_t)(q - p);
	*q = 0;
	if (l > 0 && p[l - 1] == '\r') {
		p[--l] = 0;
	}
	lb->start = (size_t)(q - lb->buf) + 1;
	if (l > lb->max) {
		lb->error = -EMSGSIZE;
		return lb->error;
	}
	*line = p;
	*len = l;
	return 1;
}

/* ---- message parsing -------------------------------------------------- */

static const char *const kind_names[QMP_MSG_KIND_MAX] = {
	[QMP_MSG_GREETING] = "greeting",
	[QMP_MSG_RETURN] = "return",
	[QMP_MSG_ERROR] = "error",
	[QMP_MSG_EVENT] = "event",
};

const char *qmp_msg_kind_str(enum qmp_msg_kind k)
{
	return (unsigned)k < QMP_MSG_KIND_MAX ? kind_names[k] : "unknown";
}

void qmp_msg_clear(struct qmp_msg *m)
{
	if (m) {
		json_object_put(m->root);
		memset(m, 0, sizeof(*m));
		m->ts_us = -1;
	}
}

static bool event_name_ok(const char *s)
{
	size_t n = strlen(s);

	if (n == 0 || n >= QMP_EVENT_NAME_MAX) {
		return false;
	}
	for (size_t i = 0; i < n; i++) {
		char ch = s[i];

		if (!((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') ||
		      (ch >= '0' && ch <= '9') || ch == '_' || ch == '-' || ch == '.')) {
			return false;
		}
	}
	return true;
}

static int parse_greeting(struct qmp_msg *m, json_object *qmp, char *err, size_t errlen)
{
	json_object *ver, *qemu;
	int64_t v[3];
	static const char *const keys[3] = { "major", "minor", "micro" };

	if (!json_object_is_type(qmp, json_type_object)) {
		return ha_errf(err, errlen, -EBADMSG, "greeting: \"QMP\" is not an object");
	}
	m->kind = QMP_MSG_GREETING;
	m->value = qmp;
	if (!json_object_object_get_ex(qmp, "version", &ver)) {
		return 0;
	}
	if (!json_object_is_type(ver, json_type_object) ||
	    !json_object_object_get_ex(ver, "qemu", &qemu) ||
	    !json_object_is_type(qemu, json_type_object)) {
		return ha_errf(err, errlen, -EBADMSG, "greeting: malformed version");
	}
	for (int i = 0; i < 3; i++) {
		if (!jint(qemu, keys[i], &v[i]) || v[i] < 0 || v[i] > 65535) {
			return ha_errf(err, errlen, -EBADMSG, "greeting: bad version.qemu.%s",
				       keys[i]);
		}
	}
	m->ver_major = (unsigned)v[0];
	m->ver_minor = (unsigned)v[1];
	m->ver_micro = (unsigned)v[2];
	return 0;
}

static int parse_event(struct qmp_msg *m, json_object *root, json_object *ev, char *err,
		       size_t errlen)
{
	json_object *data, *ts;
	int64_t sec, usec;

	if (!json_object_is_type(ev, json_type_string) ||
	    !event_name_ok(json_object_get_string(ev))) {
		return ha_errf(err, errlen, -EBADMSG, "event: bad event name");
	}
	m->kind = QMP_MSG_EVENT;
	m->event = json_object_get_string(ev);
	if (json_object_object_get_ex(root, "data", &data)) {
		if (!json_object_is_type(data, json_type_object)) {
			return ha_errf(err, errlen, -EBADMSG, "event %s: data is not an object",
				       m->event);
		}
		m->value = data;
	}
	if (json_object_object_get_ex(root, "timestamp", &ts)) {
		if (!json_object_is_type(ts, json_type_object) ||
		    !jint(ts, "seconds", &sec) || !jint(ts, "microseconds", &usec)) {
			return ha_errf(err, errlen, -EBADMSG, "event %s: malformed timestamp",
				       m->event);
		}
		/* QEMU sends -1/-1 when it has no clock; anything else must be
		 * a sane time of day. */
		if (sec >= 0 && sec < INT64_C(1) << 40 && usec >= 0 && usec < 1000000) {
			m->ts_us = sec * 1000000 + usec;
		}
	}
	return 0;
}

static int parse_error(struct qmp_msg *m, json_object *e, char *err, size_t errlen)
{
	if (!json_object_is_type(e, json_type_object)) {
		return ha_errf(err, errlen, -EBADMSG, "error reply: \"error\" is not an object");
	}
	m->err_class = jstr(e, "class");
	m->err_desc = jstr(e, "desc");
	if (m->err_class == NULL || m->err_desc == NULL) {
		return ha_errf(err, errlen, -EBADMSG, "error reply without class or desc");
	}
	m->kind = QMP_MSG_ERROR;
	m->value = e;
	return 0;
}

int qmp_msg_parse(const char *line, size_t len, struct qmp_msg *out, char *err,
		  size_t errlen)
{
	static const char *const keys[] = { "QMP", "event", "error", "return" };
	json_tokener *tok;
	json_object *root, *v[4], *id;
	enum json_tokener_error jerr;
	size_t end;
	int found = 0, which = -1, rc;

	memset(out, 0, sizeof(*out));
	out->ts_us = -1;
	if (len > QMP_MAX_LINE || len > INT_MAX) {
		return ha_errf(err, errlen, -EMSGSIZE, "message of %zu bytes exceeds %u", len,
			       QMP_MAX_LINE);
	}
	if (memchr(line, 0, len)) {
		return ha_errf(err, errlen, -EBADMSG, "NUL byte in message");
	}
	tok = json_tokener_new_ex(QMP_MAX_DEPTH);
	if (tok == NULL) {
		return ha_errf(err, errlen, -ENOMEM, "out of memory");
	}
	json_tokener_set_flags(tok, JSON_TOKENER_STRICT);
	root = json_tokener_parse_ex(tok, line, (int)len);
	jerr = json_tokener_get_error(tok);
	end = json_tokener_get_parse_end(tok);
	json_tokener_free(tok);
	if (jerr != json_tokener_success || root == NULL) {
		json_object_put(root);
		return ha_errf(err, errlen, -EBADMSG, "not JSON: %s",
			       jerr == json_tokener_continue ? "truncated" :
			       jerr == json_tokener_success ? "null" :
			       json_tokener_error_desc(jerr));
	}
	for (; end < len; end++) {
		if (line[end] != ' ' && line[end] != '\t' && line[end] != '\r' &&
		    line[end] != '\n') {
			json_object_put(root);
			return ha_errf(err, errlen, -EBADMSG, "trailing bytes after the JSON object");
		}
	}
	if (!json_object_is_type(root, json_type_object)) {
		json_object_put(root);
		return ha_errf(err, errlen, -EBADMSG, "not a JSON object");
	}
	for (int i = 0; i < 4; i++) {
		if (json_object_object_get_ex(root, keys[i], &v[i])) {
			found++;
			which = i;
		}
	}
	if (found != 1) {
		json_object_put(root);
		return ha_errf(err, errlen, -EBADMSG, found ? "ambiguous QMP message" :
			       "not a QMP message");
	}
	out->root = root;
	switch (which) {
	case 0:
		rc = parse_greeting(out, v[0], err, errlen);
		break;
	case 1:
		rc = parse_event(out, root, v[1], err, errlen);
		break;
	case 2:
		rc = parse_error(out, v[2], err, errlen);
		break;
	default:
		out->kind = QMP_MSG_RETURN;
		out->value = v[3];
		rc = 0;
		break;
	}
	if (rc == 0 && (out->kind == QMP_MSG_RETURN || out->kind == QMP_MSG_ERROR) &&
	    json_object_object_get_ex(root, "id", &id) &&
	    json_object_is_type(id, json_type_string)) {
		out->id = json_object_get_string(id);
	}
	if (rc < 0) {
		qmp_msg_clear(out);
	}
	return rc;
}

/* ---- the client ------------------------------------------------------- */

struct qmp_event_slot {
	char name[QMP_EVENT_NAME_MAX];
	json_object *data;
};

struct qmp_client {
	int fd;
	int error;               /* sticky framing / connection error */
	char error_msg[160];
	struct qmp_linebuf lb;
	uint64_t next_id;
	unsigned ver[3];
	struct qmp_event_slot ev[QMP_MAX_EVENTS];
	unsigned ev_head, ev_count;
	uint64_t ev_dropped;
	uint64_t skipped;
};

static int sticky(struct qmp_client *c, int rc, char *err, size_t errlen,
		  const char *fmt, ...) __attribute__((format(printf, 5, 6)));

/* Records the connection's first error and reports it. */
static int sticky(struct qmp_client *c, int rc, char *err, size_t errlen,
		  const char *fmt, ...)
{
	va_list ap;

	if (c->error == 0) {
		c->error = rc;
		va_start(ap, fmt);
		vsnprintf(c->error_msg, sizeof(c->error_msg), fmt, ap);
		va_end(ap);
	}
	return ha_errf(err, errlen, c->error, "%s", c->error_msg);
}

static int remaining_ms(uint64_t deadline)
{
	uint64_t now = ha_mono_ms();

	if (now >= deadline) {
		return 0;
	}
	return deadline - now > INT_MAX ? INT_MAX : (int)(deadline - now);
}

/* Waits up to @wait_ms for input and feeds what arrives. Returns 0 when
 * bytes came, -ETIMEDOUT when none did, or the sticky error. */
static int read_some(struct qmp_client *c, int wait_ms, char *err, size_t errlen)
{
	struct pollfd p = { .fd = c->fd, .events = POLLIN };
	char buf[READ_CHUNK];
	ssize_t n;
	int rc;

	if (c->error) {
		return ha_errf(err, errlen, c->error, "%s", c->error_msg);
	}
	rc = poll(&p, 1, wait_ms);
	if (rc < 0) {
		return errno == EINTR ? -ETIMEDOUT : ha_errf(err, errlen, -errno, "qmp poll: %s",
							    strerror(errno));
	}
	if (rc == 0) {
		return -ETIMEDOUT;
	}
	n = read(c->fd, buf, sizeof(buf));
	if (n < 0) {
		if (errno == EAGAIN || errno == EINTR) {
			return -ETIMEDOUT;
		}
		return sticky(c, -errno, err, errlen, "qmp read: %s", strerror(errno));
	}
	if (n == 0) {
		return sticky(c, -ECONNRESET, err, errlen,
			      "qmp: QEMU closed the monitor connection");
	}
	rc = qmp_linebuf_feed(&c->lb, buf, (size_t)n);
	if (rc == -EMSGSIZE) {
		return sticky(c, rc, err, errlen, "qmp: message longer than %zu bytes",
			      c->lb.max);
	}
	if (rc < 0) {
		return sticky(c, rc, err, errlen, "qmp: %s", strerror(-rc));
	}
	return 0;
}

/* The next complete message, waiting until @deadline (0: do not wait). */
static int next_msg(struct qmp_client *c, uint64_t deadline, struct qmp_msg *m,
		    char *err, size_t errlen)
{
	char why[128];
	const char *line;
	size_t len;
	int rc;

	for (;;) {
		rc = qmp_linebuf_next(&c->lb, &line, &len);
		if (rc == -EMSGSIZE) {
			return sticky(c, rc, err, errlen, "qmp: message longer than %zu bytes",
				      c->lb.max);
		}
		if (rc < 0) {
			return sticky(c, rc, err, errlen, "qmp: %s", strerror(-rc));
		}
		if (rc == 1) {
			if (len == 0) {
				continue;
			}
			rc = qmp_msg_parse(line, len, m, why, sizeof(why));
			if (rc < 0) {
				return sticky(c, -EPROTO, err, errlen,
					      "qmp: malformed message from QEMU: %s", why);
			}
			return 0;
		}
		rc = read_some(c, remaining_ms(deadline), err, errlen);
		if (rc < 0) {
			return rc;
		}
	}
}

static void queue_event(struct qmp_client *c, const struct qmp_msg *m)
{
	struct qmp_event_slot *s;

	if (c->ev_count == QMP_MAX_EVENTS) {
		s = &c->ev[c->ev_head];
		json_object_put(s->data);
		s->data = NULL;
		c->ev_head = (c->ev_head + 1) % QMP_MAX_EVENTS;
		c->ev_count--;
		c->ev_dropped++;
	}
	s = &c->ev[(c->ev_head + c->ev_count) % QMP_MAX_EVENTS];
	snprintf(s->name, sizeof(s->name), "%s", m->event);
	s->data = m->value ? json_object_get(m->value) : NULL;
	c->ev_count++;
}

bool qmp_client_take_event(struct qmp_client *c, const char *name, json_object **data)
{
	for (unsigned i = 0; i < c->ev_count; i++) {
		unsigned at = (c->ev_head + i) % QMP_MAX_EVENTS;
		struct qmp_event_slot s = c->ev[at];

		if (name && strcmp(s.name, name) != 0) {
			continue;
		}
		/* close the gap: shift the later ones down by one */
		for (unsigned j = i; j + 1 < c->ev_count; j++) {
			c->ev[(c->ev_head + j) % QMP_MAX_EVENTS] =
				c->ev[(c->ev_head + j + 1) % QMP_MAX_EVENTS];
		}
		c->ev_count--;
		memset(&c->ev[(c->ev_head + c->ev_count) % QMP_MAX_EVENTS], 0,
		       sizeof(struct qmp_event_slot));
		if (data) {
			*data = s.data;
		} else {
			json_object_put(s.data);
		}
		return true;
	}
	return false;
}

static int handle_unsolicited(struct qmp_client *c, struct qmp_msg *m, char *err,
			      size_t errlen)
{
	if (m->kind == QMP_MSG_EVENT) {
		queue_event(c, m);
		return 0;
	}
	if (m->kind == QMP_MSG_GREETING) {
		return sticky(c, -EPROTO, err, errlen, "qmp: unexpected second greeting");
	}
	c->skipped++;
	return 0;
}

int qmp_client_poll(struct qmp_client *c, char *err, size_t errlen)
{
	struct qmp_msg m;
	int rc;

	for (;;) {
		rc = next_msg(c, 0, &m, err, errlen);
		if (rc == -ETIMEDOUT) {
			return 0;
		}
		if (rc < 0) {
			return rc;
		}
		rc = handle_unsolicited(c, &m, err, errlen);
		qmp_msg_clear(&m);
		if (rc < 0) {
			return rc;
		}
	}
}

int qmp_client_wait_event(struct qmp_client *c, const char *name, json_object **data,
			  uint32_t timeout_ms, char *err, size_t errlen)
{
	uint64_t deadline = ha_mono_ms() + timeout_ms;
	struct qmp_msg m;
	int rc;

	for (;;) {
		if (qmp_client_take_event(c, name, data)) {
			return 0;
		}
		rc = next_msg(c, deadline, &m, err, errlen);
		if (rc == -ETIMEDOUT) {
			return ha_errf(err, errlen, rc, "qmp: no %s event within %u ms",
				       name ? name : "", timeout_ms);
		}
		if (rc < 0) {
			return rc;
		}
		rc = handle_unsolicited(c, &m, err, errlen);
		qmp_msg_clear(&m);
		if (rc < 0) {
			return rc;
		}
	}
}

uint64_t qmp_client_events_dropped(const struct qmp_client *c)
{
	return c->ev_dropped;
}

uint64_t qmp_client_replies_skipped(const struct qmp_client *c)
{
	return c->skipped;
}

void qmp_client_version(const struct qmp_client *c, unsigned *major, unsigned *minor,
			unsigned *micro)
{
	*major = c->ver[0];
	*minor = c->ver[1];
	*micro = c->ver[2];
}

/* Sends all of @buf, @fd (when >= 0) with the first byte. */
static int send_all(struct qmp_client *c, const char *buf, size_t len, int fd,
		    uint64_t deadline, char *err, size_t errlen)
{
	union {
		char buf[CMSG_SPACE(sizeof(int))];
		struct cmsghdr align;
	} ctl;

	while (len > 0) {
		struct iovec iov = { .iov_base = (void *)buf, .iov_len = len };
		struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };
		struct pollfd p = { .fd = c->fd, .events = POLLOUT };
		ssize_t n;

		if (fd >= 0) {
			struct cmsghdr *cm;

			memset(&ctl, 0, sizeof(ctl));
			mh.msg_control = ctl.buf;
			mh.msg_controllen = sizeof(ctl.buf);
			cm = CMSG_FIRSTHDR(&mh);
			cm->cmsg_level = SOL_SOCKET;
			cm->cmsg_type = SCM_RIGHTS;
			cm->cmsg_len = CMSG_LEN(sizeof(int));
			memcpy(CMSG_DATA(cm), &fd, sizeof(int));
		}
		n = sendmsg(c->fd, &mh, MSG_NOSIGNAL);
		if (n > 0) {
			buf += n;
			len -= (size_t)n;
			fd = -1;
			continue;
		}
		if (n < 0 && (errno == EPIPE || errno == ECONNRESET)) {
			return sticky(c, -errno, err, errlen,
				      "qmp: QEMU closed the monitor connection");
		}
		if (n < 0 && errno != EAGAIN && errno != EINTR) {
			return sticky(c, -errno, err, errlen, "qmp write: %s", strerror(errno));
		}
		if (poll(&p, 1, remaining_ms(deadline)) == 0) {
			return ha_errf(err, errlen, -ETIMEDOUT, "qmp write: timed out");
		}
	}
	return 0;
}

static int error_rc(const char *cls)
{
	if (strcmp(cls, "CommandNotFound") == 0) {
		return -EOPNOTSUPP;
	}
	if (strcmp(cls, "DeviceNotFound") == 0) {
		return -ENODEV;
	}
	return -EIO;
}

int qmp_client_execute_fd(struct qmp_client *c, const char *cmd, json_object *args,
			  int fd, json_object **ret, uint32_t timeout_ms, char *err,
			  size_t errlen)
{
	uint64_t deadline = ha_mono_ms() + timeout_ms;
	json_object *req;
	char id[32], cls[64], desc[160];
	const char *text;
	struct qmp_msg m;
	int rc;

	if (ret) {
		*ret = NULL;
	}
	if (c->error) {
		return ha_errf(err, errlen, c->error, "%s", c->error_msg);
	}
	snprintf(id, sizeof(id), "hactl-%" PRIu64, ++c->next_id);
	req = json_object_new_object();
	if (req == NULL) {
		return ha_errf(err, errlen, -ENOMEM, "qmp %s: out of memory", cmd);
	}
	json_object_object_add(req, "execute", json_object_new_string(cmd));
	if (args) {
		json_object_object_add(req, "arguments", json_object_get(args));
	}
	json_object_object_add(req, "id", json_object_new_string(id));
	text = json_object_to_json_string_ext(req, JSON_C_TO_STRING_PLAIN);
	rc = text ? 0 : -ENOMEM;
	if (rc == 0) {
		char *line = NULL;

		if (asprintf(&line, "%s\n", text) < 0) {
			rc = -ENOMEM;
		} else {
			rc = send_all(c, line, strlen(line), fd, deadline, err, errlen);
			free(line);
		}
	}
	json_object_put(req);
	if (rc < 0) {
		return rc == -ENOMEM ? ha_errf(err, errlen, rc, "qmp %s: out of memory", cmd) : rc;
	}
	for (;;) {
		rc = next_msg(c, deadline, &m, err, errlen);
		if (rc == -ETIMEDOUT) {
			return ha_errf(err, errlen, rc, "qmp %s: no reply within %u ms", cmd,
				       timeout_ms);
		}
		if (rc < 0) {
			return rc;
		}
		if ((m.kind != QMP_MSG_RETURN && m.kind != QMP_MSG_ERROR) || m.id == NULL ||
		    strcmp(m.id, id) != 0) {
			rc = handle_unsolicited(c, &m, err, errlen);
			qmp_msg_clear(&m);
			if (rc < 0) {
				return rc;
			}
			continue;
		}
		if (m.kind == QMP_MSG_ERROR) {
			copy_clean(cls, sizeof(cls), m.err_class, strlen(m.err_class));
			copy_clean(desc, sizeof(desc), m.err_desc, strlen(m.err_desc));
			rc = error_rc(m.err_class);
			qmp_msg_clear(&m);
			return ha_errf(err, errlen, rc, "qmp %s: %s: %s", cmd, cls, desc);
		}
		if (ret) {
			*ret = json_object_get(m.value);
		}
		qmp_msg_clear(&m);
		return 0;
	}
}

int qmp_client_execute(struct qmp_client *c, const char *cmd, json_object *args,
		       json_object **ret, uint32_t timeout_ms, char *err, size_t errlen)
{
	return qmp_client_execute_fd(c, cmd, args, -1, ret, timeout_ms, err, errlen);
}

int qmp_client_getfd(struct qmp_client *c, const char *name, int fd, uint32_t timeout_ms,
		     char *err, size_t errlen)
{
	json_object *args = json_object_new_object();
	int rc;

	if (args == NULL) {
		return ha_errf(err, errlen, -ENOMEM, "qmp getfd: out of memory");
	}
	json_object_object_add(args, "fdname", json_object_new_string(name));
	rc = qmp_client_execute_fd(c, "getfd", args, fd, NULL, timeout_ms, err, errlen);
	json_object_put(args);
	return rc;
}

int qmp_client_connect_fd(int fd, uint32_t timeout_ms, struct qmp_client **out,
			  char *err, size_t errlen)
{
	uint64_t deadline = ha_mono_ms() + timeout_ms;
	struct qmp_client *c;
	struct qmp_msg m;
	int rc, fl;

	*out = NULL;
	c = calloc(1, sizeof(*c));
	if (c == NULL) {
		close(fd);
		return ha_errf(err, errlen, -ENOMEM, "qmp: out of memory");
	}
	c->fd = fd;
	qmp_linebuf_init(&c->lb, QMP_MAX_LINE);
	fl = fcntl(fd, F_GETFL);
	if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0) {
		rc = ha_errf(err, errlen, -errno, "qmp: fcntl: %s", strerror(errno));
		goto out_free;
	}
	/* The greeting; a monitor that already serves another client sends
	 * nothing until that one leaves. */
	rc = next_msg(c, deadline, &m, err, errlen);
	if (rc == -ETIMEDOUT) {
		rc = ha_errf(err, errlen, rc, "qmp: no greeting within %u ms (monitor busy?)",
			     timeout_ms);
		goto out_free;
	}
	if (rc < 0) {
		goto out_free;
	}
	if (m.kind != QMP_MSG_GREETING) {
		qmp_msg_clear(&m);
		rc = ha_errf(err, errlen, -EPROTO, "qmp: expected a greeting, got %s",
			     qmp_msg_kind_str(m.kind));
		goto out_free;
	}
	c->ver[0] = m.ver_major;
	c->ver[1] = m.ver_minor;
	c->ver[2] = m.ver_micro;
	qmp_msg_clear(&m);
	rc = qmp_client_execute(c, "qmp_capabilities", NULL, NULL,
				(uint32_t)remaining_ms(deadline) + 1, err, errlen);
	if (rc < 0) {
		goto out_free;
	}
	*out = c;
	return 0;
out_free:
	qmp_client_free(c);
	return rc;
}

int qmp_client_connect(const char *path, uint32_t timeout_ms, struct qmp_client **out,
		       char *err, size_t errlen)
{
	uint64_t deadline = ha_mono_ms() + timeout_ms;
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int dfd = -1, fd = -1, rc;

	*out = NULL;
	if (strlen(path) < sizeof(sa.sun_path)) {
		snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	} else {
		/* Too long for sun_path: go through the directory's fd. */
		char dir[PATH_MAX];
		const char *base = strrchr(path, '/');

		if (base == NULL || (size_t)(base - path) >= sizeof(dir)) {
			return ha_errf(err, errlen, -ENAMETOOLONG, "qmp %s: path too long", path);
		}
		memcpy(dir, path, (size_t)(base - path));
		dir[base - path] = 0;
		dfd = open(dir[0] ? dir : "/", O_PATH | O_DIRECTORY | O_CLOEXEC);
		if (dfd < 0) {
			return ha_errf(err, errlen, -errno, "qmp %s: %s", dir, strerror(errno));
		}
		if (snprintf(sa.sun_path, sizeof(sa.sun_path), "/proc/self/fd/%d/%s", dfd,
			     base + 1) >= (int)sizeof(sa.sun_path)) {
			close(dfd);
			return ha_errf(err, errlen, -ENAMETOOLONG, "qmp %s: name too long", path);
		}
	}
	for (;;) {
		fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
		if (fd < 0) {
			rc = ha_errf(err, errlen, -errno, "qmp %s: socket: %s", path,
				     strerror(errno));
			break;
		}
		if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0) {
			rc = 0;
			break;
		}
		rc = -errno;
		close(fd);
		fd = -1;
		if ((rc != -ENOENT && rc != -ECONNREFUSED && rc != -EAGAIN) ||
		    ha_mono_ms() + CONNECT_RETRY_MS > deadline) {
			rc = ha_errf(err, errlen, rc, "qmp %s: connect: %s", path, strerror(-rc));
			break;
		}
		nanosleep(&(struct timespec){ .tv_nsec = CONNECT_RETRY_MS * 1000000L }, NULL);
	}
	if (dfd >= 0) {
		close(dfd);
	}
	if (rc < 0) {
		return rc;
	}
	rc = qmp_client_connect_fd(fd, (uint32_t)remaining_ms(deadline) + 1, out, err, errlen);
	if (rc < 0 && err && errlen) {
		char tmp[256];

		snprintf(tmp, sizeof(tmp), "%s", err);
		snprintf(err, errlen, "%s (%s)", tmp, path);
	}
	return rc;
}

void qmp_client_free(struct qmp_client *c)
{
	if (c == NULL) {
		return;
	}
	while (qmp_client_take_event(c, NULL, NULL)) {
	}
	qmp_linebuf_clear(&c->lb);
	if (c->fd >= 0) {
		close(c->fd);
	}
	free(c);
}

static const char *const run_state_names[QMP_RUN_STATE_MAX] = {
	[QMP_RUN_OTHER] = "other",
	[QMP_RUN_DEBUG] = "debug",
	[QMP_RUN_INMIGRATE] = "inmigrate",
	[QMP_RUN_INTERNAL_ERROR] = "internal-error",
	[QMP_RUN_IO_ERROR] = "io-error",
	[QMP_RUN_PAUSED] = "paused",
	[QMP_RUN_POSTMIGRATE] = "postmigrate",
	[QMP_RUN_PRELAUNCH] = "prelaunch",
	[QMP_RUN_FINISH_MIGRATE] = "finish-migrate",
	[QMP_RUN_RESTORE_VM] = "restore-vm",
	[QMP_RUN_RUNNING] = "running",
	[QMP_RUN_SAVE_VM] = "save-vm",
	[QMP_RUN_SHUTDOWN] = "shutdown",
	[QMP_RUN_SUSPENDED] = "suspended",
	[QMP_RUN_WATCHDOG] = "watchdog",
	[QMP_RUN_GUEST_PANICKED] = "guest-panicked",
	[QMP_RUN_COLO] = "colo",
};

const char *qmp_run_state_str(enum qmp_run_state s)
{
	return ha_enum_str(run_state_names, QMP_RUN_STATE_MAX, (unsigned)s);
}

enum qmp_run_state qmp_run_state_parse(const char *name)
{
	int v = ha_enum_parse(run_state_names, QMP_RUN_STATE_MAX, name);

	return v < 0 ? QMP_RUN_OTHER : (enum qmp_run_state)v;
}

int qmp_client_query_status(struct qmp_client *c, struct qmp_status *st, uint32_t timeout_ms,
			    char *err, size_t errlen)
{
	json_object *ret = NULL, *r;
	const char *s;
	int rc;

	rc = qmp_client_execute(c, "query-status", NULL, &ret, timeout_ms, err, errlen);
	if (rc < 0) {
		return rc;
	}
	s = jstr(ret, "status");
	if (s == NULL || !json_object_object_get_ex(ret, "running", &r) ||
	    !json_object_is_type(r, json_type_boolean)) {
		json_object_put(ret);
		return ha_errf(err, errlen, -EPROTO, "qmp query-status: malformed reply");
	}
	copy_clean(st->name, sizeof(st->name), s, strlen(s));
	st->state = qmp_run_state_parse(s);
	st->running = json_object_get_boolean(r);
	json_object_put(ret);
	return 0;
}

/* ---- migration -------------------------------------------------------- */

static json_object *capability(const char *name, bool state)
{
	json_object *o = json_object_new_object();

	json_object_object_add(o, "capability", json_object_new_string(name));
	json_object_object_add(o, "state", json_object_new_boolean(state));
	return o;
}

int qmp_client_migrate_tune(struct qmp_client *c, const struct qmp_migrate_tuning *t,
			    uint32_t timeout_ms, char *err, size_t errlen)
{
	json_object *caps = json_object_new_array();
	json_object *args = json_object_new_object();
	json_object *params = json_object_new_object();
	bool any_param = false;
	int rc = -ENOMEM;

	if (caps == NULL || args == NULL || params == NULL) {
		goto out;
	}
	json_object_array_add(caps, capability("auto-converge", t->auto_converge));
	json_object_array_add(caps, capability("xbzrle", t->xbzrle));
	json_object_array_add(caps, capability("events", t->events));
	json_object_object_add(args, "capabilities", json_object_get(caps));
	rc = qmp_client_execute(c, "migrate-set-capabilities", args, NULL, timeout_ms, err,
				errlen);
	if (rc < 0) {
		goto out;
	}
	if (t->max_bandwidth) {
		json_object_object_add(params, "max-bandwidth",
				       json_object_new_int64((int64_t)t->max_bandwidth));
		any_param = true;
	}
	if (t->downtime_limit_ms) {
		json_object_object_add(params, "downtime-limit",
				       json_object_new_int64((int64_t)t->downtime_limit_ms));
		any_param = true;
	}
	if (t->xbzrle_cache_size) {
		json_object_object_add(params, "xbzrle-cache-size",
				       json_object_new_int64((int64_t)t->xbzrle_cache_size));
		any_param = true;
	}
	if (any_param) {
		rc = qmp_client_execute(c, "migrate-set-parameters", params, NULL, timeout_ms,
					err, errlen);
	}
out:
	json_object_put(caps);
	json_object_put(args);
	json_object_put(params);
	if (rc == -ENOMEM) {
		ha_errf(err, errlen, rc, "qmp migrate tuning: out of memory");
	}
	return rc;
}

static const char *const migrate_status_names[QMP_MIGRATE_STATUS_MAX] = {
	[QMP_MIGRATE_NONE] = "none",
	[QMP_MIGRATE_SETUP] = "setup",
	[QMP_MIGRATE_ACTIVE] = "active",
	[QMP_MIGRATE_COMPLETED] = "completed",
	[QMP_MIGRATE_FAILED] = "failed",
	[QMP_MIGRATE_CANCELLING] = "cancelling",
	[QMP_MIGRATE_CANCELLED] = "cancelled",
};

const char *qmp_migrate_status_str(enum qmp_migrate_status s)
{
	return (unsigned)s < QMP_MIGRATE_STATUS_MAX ? migrate_status_names[s] : "unknown";
}

int qmp_migrate_info_parse(json_object *ret, struct qmp_migrate_info *info)
{
	static const struct {
		const char *name;
		enum qmp_migrate_status st;
	} map[] = {
		{ "none", QMP_MIGRATE_NONE },
		{ "setup", QMP_MIGRATE_SETUP },
		{ "active", QMP_MIGRATE_ACTIVE },
		{ "pre-switchover", QMP_MIGRATE_ACTIVE },
		{ "device", QMP_MIGRATE_ACTIVE },
		{ "wait-unplug", QMP_MIGRATE_ACTIVE },
		{ "postcopy-active", QMP_MIGRATE_ACTIVE },
		{ "postcopy-paused", QMP_MIGRATE_ACTIVE },
		{ "postcopy-recover", QMP_MIGRATE_ACTIVE },
		{ "colo", QMP_MIGRATE_ACTIVE },
		{ "completed", QMP_MIGRATE_COMPLETED },
		{ "failed", QMP_MIGRATE_FAILED },
		{ "cancelling", QMP_MIGRATE_CANCELLING },
		{ "cancelled", QMP_MIGRATE_CANCELLED },
	};
	json_object *ram = NULL;
	const char *s, *e;
	size_t i;

	memset(info, 0, sizeof(*info));
	if (!json_object_is_type(ret, json_type_object)) {
		return -EPROTO;
	}
	/* An empty object: no migration has run yet. */
	s = jstr(ret, "status");
	if (s == NULL) {
		return json_object_object_length(ret) == 0 ? 0 : -EPROTO;
	}
	for (i = 0; i < HA_ARRAY_SIZE(map); i++) {
		if (strcmp(s, map[i].name) == 0) {
			break;
		}
	}
	if (i == HA_ARRAY_SIZE(map)) {
		return -EPROTO;
	}
	info->status = map[i].st;
	info->total_time_ms = ju64(ret, "total-time");
	info->downtime_ms = ju64(ret, "downtime");
	if (json_object_object_get_ex(ret, "ram", &ram) &&
	    json_object_is_type(ram, json_type_object)) {
		info->ram_transferred = ju64(ram, "transferred");
		info->ram_remaining = ju64(ram, "remaining");
		info->ram_total = ju64(ram, "total");
		info->dirty_sync_count = ju64(ram, "dirty-sync-count");
	}
	e = jstr(ret, "error-desc");
	if (e) {
		copy_clean(info->error, sizeof(info->error), e, strlen(e));
	}
	return 0;
}

int qmp_client_query_migrate(struct qmp_client *c, struct qmp_migrate_info *info,
			     uint32_t timeout_ms, char *err, size_t errlen)
{
	json_object *ret = NULL;
	int rc;

	rc = qmp_client_execute(c, "query-migrate", NULL, &ret, timeout_ms, err, errlen);
	if (rc < 0) {
		return rc;
	}
	rc = qmp_migrate_info_parse(ret, info);
	json_object_put(ret);
	if (rc < 0) {
		return ha_errf(err, errlen, rc, "qmp query-migrate: malformed reply");
	}
	return 0;
}

int qmp_client_migrate_wait(struct qmp_client *c, struct qmp_migrate_info *info,
			    uint32_t timeout_ms, char *err, size_t errlen)
{
	uint64_t deadline = ha_mono_ms() + timeout_ms;
	struct qmp_migrate_info tmp, *mi = info ? info : &tmp;
	long sleep_ms = 2;
	int rc;

	for (;;) {
		int left = remaining_ms(deadline);

		rc = qmp_client_query_migrate(c, mi, (uint32_t)(left > 1000 ? left : 1000),
					      err, errlen);
		if (rc < 0) {
			return rc;
		}
		switch (mi->status) {
		case QMP_MIGRATE_COMPLETED:
			return 0;
		case QMP_MIGRATE_FAILED:
			return ha_errf(err, errlen, -EIO, "migration failed: %s",
				       mi->error[0] ? mi->error : "no reason given");
		case QMP_MIGRATE_CANCELLING:
		case QMP_MIGRATE_CANCELLED:
			return ha_errf(err, errlen, -ECANCELED, "migration cancelled");
		default:
			break;
		}
		if (remaining_ms(deadline) == 0) {
			return ha_errf(err, errlen, -ETIMEDOUT,
				       "migration not finished within %u ms (%s, %" PRIu64
				       " of %" PRIu64 " bytes)", timeout_ms,
				       qmp_migrate_status_str(mi->status), mi->ram_transferred,
				       mi->ram_total);
		}
		/* Events (MIGRATION, STOP) queue up meanwhile. */
		rc = read_some(c, (int)(sleep_ms < remaining_ms(deadline) ? sleep_ms :
					 remaining_ms(deadline)), err, errlen);
		if (rc < 0 && rc != -ETIMEDOUT) {
			return rc;
		}
		if (sleep_ms < 20) {
			sleep_ms *= 2;
		}
	}
}
