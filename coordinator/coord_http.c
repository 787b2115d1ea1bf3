/*
 * coord_http.c - the HTTP endpoint of ha-coordinator (coord_http.h,
 * docs/monitoring.md): the answers, and the libmicrohttpd server driven
 * from the coordinator's qb_loop.
 *
 * libmicrohttpd runs without threads of its own (MHD_USE_EPOLL with
 * external polling): its epoll fd is a poll source of the loop and
 * MHD_run() answers whatever is ready; a loop timer follows
 * MHD_get_timeout() for idle connections. Everything happens in the loop's
 * thread, so the answers read struct coord as it is between two events.
 * A request is answered on the first call of the access handler, before
 * any body is read; libmicrohttpd answers malformed requests (400),
 * oversized headers (431) and idle connections itself, within the bounds
 * set at start.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <qb/qblog.h>

#ifdef HAVE_MICROHTTPD
#include <arpa/inet.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#endif

#include "coord_http.h"
#include "coordinator.h"
#include "util.h"

/* ---- answers ---- */

/* Compares in time that depends on the lengths only, not on where the
 * first difference is. */
static bool token_equal(const char *a, size_t alen, const char *want)
{
	size_t wlen = strlen(want);
	unsigned char diff = alen != wlen;

	for (size_t i = 0; i < alen; i++) {
		diff |= (unsigned char)(a[i] ^ want[i < wlen ? i : 0]);
	}
	return diff == 0;
}

static bool authorized(const struct coord *c, const struct coord_http_req *rq)
{
	const char *want = c->cfg.metrics_token;
	const char *a = rq->authorization;

	if (want[0] == 0) {
		return true;
	}
	if (rq->token && token_equal(rq->token, strlen(rq->token), want)) {
		return true;
	}
	if (a && strncasecmp(a, "Bearer ", 7) == 0) {
		size_t n;

		a += 7;
		while (*a == ' ') {
			a++;
		}
		n = strlen(a);
		while (n > 0 && (a[n - 1] == ' ' || a[n - 1] == '\t')) {
			n--;
		}
		return token_equal(a, n, want);
	}
	return false;
}

static void text_answer(struct coord_http_resp *rs, unsigned status, const char *msg)
{
	rs->status = status;
	rs->content_type = "text/plain; charset=utf-8";
	rs->body = strdup(msg);
	rs->len = rs->body ? strlen(rs->body) : 0;
}

/* The page with the status JSON in its place; '<' goes as \u003c, so
 * nothing in the data can end or change the script block. */
static char *page_with(const char *json, size_t *len)
{
	static const char marker[] = "HACTL_STATUS_JSON";
	const char *at = strstr(coord_page_html, marker);
	size_t lt = 0, head, tail, n;
	char *out, *p;

	if (at == NULL) {
		return NULL;
	}
	for (const char *s = json; *s; s++) {
		lt += *s == '<';
	}
	head = (size_t)(at - coord_page_html);
	tail = strlen(at + sizeof(marker) - 1);
	n = head + strlen(json) + lt * 5 + tail;
	out = malloc(n + 1);
	if (out == NULL) {
		return NULL;
	}
	memcpy(out, coord_page_html, head);
	p = out + head;
	for (const char *s = json; *s; s++) {
		if (*s == '<') {
			memcpy(p, "\\u003c", 6);
			p += 6;
		} else {
			*p++ = *s;
		}
	}
	memcpy(p, at + sizeof(marker) - 1, tail + 1);
	*len = n;
	return out;
}

static enum coord_http_code code_of(unsigned status)
{
	switch (status) {
	case 200:
		return COORD_HTTP_200;
	case 400:
		return COORD_HTTP_400;
	case 401:
		return COORD_HTTP_401;
	case 404:
		return COORD_HTTP_404;
	case 405:
		return COORD_HTTP_405;
	case 500:
		return COORD_HTTP_500;
	default:
		return COORD_HTTP_OTHER;
	}
}

static void route(struct coord *c, const struct coord_http_req *rq, struct coord_http_resp *rs)
{
	const char *path = rq->path ? rq->path : "";
	const char *m = rq->method ? rq->method : "";

	if (!authorized(c, rq)) {
		text_answer(rs, 401, "401 unauthorized: this endpoint needs its token "
			    "(Authorization: Bearer TOKEN or ?token=TOKEN)\n");
		rs->challenge = true;
		return;
	}
	if (strcmp(m, "GET") != 0 && strcmp(m, "HEAD") != 0) {
		text_answer(rs, 405, "405 method not allowed: this endpoint is read-only "
			    "(GET, HEAD)\n");
		rs->allow = "GET, HEAD";
		return;
	}
	if (rq->has_body) {
		text_answer(rs, 400, "400 bad request: a GET has no body\n");
		return;
	}
	if (strcmp(path, "/metrics") == 0) {
		rs->status = 200;
		rs->content_type = "text/plain; version=0.0.4; charset=utf-8";
		rs->body = coord_metrics_text(c, &rs->len);
	} else if (strcmp(path, "/status.json") == 0) {
		uint64_t n = COORD_HTTP_EVENTS;

		if (rq->events && ha_parse_u64(rq->events, 0, COORD_EVENTS_MAX, &n) < 0) {
			char msg[128];

			snprintf(msg, sizeof(msg), "400 bad request: events must be a number "
				 "0..%u\n", COORD_EVENTS_MAX);
			text_answer(rs, 400, msg);
			return;
		}
		rs->status = 200;
		rs->content_type = "application/json";
		rs->body = coord_status_json(c, (unsigned)n, &rs->len);
	} else if (strcmp(path, "/") == 0 || strcmp(path, "/index.html") == 0) {
		char *json = coord_status_json(c, COORD_HTTP_EVENTS, NULL);

		rs->status = 200;
		rs->content_type = "text/html; charset=utf-8";
		rs->body = json ? page_with(json, &rs->len) : NULL;
		free(json);
	} else {
		text_answer(rs, 404, "404 not found: try /, /metrics or /status.json\n");
		return;
	}
	if (rs->body == NULL) {
		rs->status = 500;
		rs->content_type = "text/plain; charset=utf-8";
		rs->len = 0;
	}
}

void coord_http_handle(struct coord *c, const struct coord_http_req *rq,
		       struct coord_http_resp *rs)
{
	memset(rs, 0, sizeof(*rs));
	route(c, rq, rs);
	if (rs->status == 500 && rs->body == NULL) {
		rs->len = 0; /* out of memory: an empty answer */
	}
	c->metrics.http[code_of(rs->status)]++;
}

/* ---- the server ---- */

#ifdef HAVE_MICROHTTPD

struct coord_http {
	struct coord *c;
	struct MHD_Daemon *d;
	int epfd;                  /* libmicrohttpd's; -1 = not polled */
	struct ha_listen addr;
	qb_loop_timer_handle timer; /* libmicrohttpd's next timeout */
	bool timer_armed;
	qb_loop_timer_handle retry; /* setting up the listener again */
	bool retry_armed;
	char last_error[256];       /* said once until it changes */
};

static void http_schedule(struct coord_http *h);

static void http_log(void *cls, const char *fmt, va_list ap)
{
	char msg[512];

	vsnprintf(msg, sizeof(msg), fmt, ap);
	msg[strcspn(msg, "\n")] = 0;
	qb_log(LOG_INFO, "http: %s", msg);
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
				  const char *method, const char *version,
				  const char *upload_data, size_t *upload_data_size,
				  void **con_cls)
{
	struct coord_http *h = cls;
	struct coord_http_req rq = { 0 };
	struct coord_http_resp rs;
	struct MHD_Response *r;
	const char *cl, *te;
	enum MHD_Result ret;

	if (*con_cls != NULL) {
		/* answered on the first call: any body is not ours to read */
		*upload_data_size = 0;
		return MHD_YES;
	}
	*con_cls = h;
	cl = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
	te = MHD_lookup_connection_value(conn, MHD_HEADER_KIND,
					 MHD_HTTP_HEADER_TRANSFER_ENCODING);
	rq.method = method;
	rq.path = url;
	rq.authorization = MHD_lookup_connection_value(conn, MHD_HEADER_KIND,
						       MHD_HTTP_HEADER_AUTHORIZATION);
	rq.token = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "token");
	rq.events = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "events");
	rq.has_body = (cl && strcmp(cl, "0") != 0) || te != NULL;
	coord_http_handle(h->c, &rq, &rs);
	r = MHD_create_response_from_buffer(rs.len, rs.body ? rs.body : (void *)"",
					    rs.body ? MHD_RESPMEM_MUST_FREE
						    : MHD_RESPMEM_PERSISTENT);
	if (r == NULL) {
		free(rs.body);
		return MHD_NO; /* closes the connection */
	}
	MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, rs.content_type);
	MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
	MHD_add_response_header(r, "X-Content-Type-Options", "nosniff");
	MHD_add_response_header(r, "Content-Security-Policy",
				"default-src 'none'; style-src 'unsafe-inline'; "
				"script-src 'unsafe-inline'; connect-src 'self'; "
				"frame-ancestors 'none'");
	if (rs.allow) {
		MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, rs.allow);
	}
	if (rs.challenge) {
		MHD_add_response_header(r, MHD_HTTP_HEADER_WWW_AUTHENTICATE,
					"Bearer realm=\"hactl\"");
	}
	ret = MHD_queue_response(conn, rs.status, r);
	MHD_destroy_response(r);
	return ret;
}

static void http_run(struct coord_http *h)
{
	if (h->d) {
		MHD_run(h->d);
		http_schedule(h);
	}
}

static void timer_cb(void *data)
{
	struct coord_http *h = data;

	h->timer_armed = false;
	http_run(h);
}

static int32_t poll_cb(int32_t fd, int32_t revents, void *data)
{
	http_run(data);
	return 0;
}

/* The next call of MHD_run() without an event: when a connection times
 * out, or at once when libmicrohttpd has work it did not finish. */
static void http_schedule(struct coord_http *h)
{
	MHD_UNSIGNED_LONG_LONG ms;

	if (h->timer_armed) {
		qb_loop_timer_del(h->c->loop, h->timer);
		h->timer_armed = false;
	}
	if (MHD_get_timeout(h->d, &ms) != MHD_YES) {
		return;
	}
	if (ms > 1000) {
		ms = 1000;
	}
	if (qb_loop_timer_add(h->c->loop, QB_LOOP_MED, (uint64_t)ms * QB_TIME_NS_IN_MSEC, h,
			      timer_cb, &h->timer) == 0) {
		h->timer_armed = true;
	}
}

static void say_error(struct coord_http *h, const char *msg)
{
	if (strcmp(h->last_error, msg) != 0) {
		qb_log(LOG_ERR, "%s (trying again every %u s)", msg, COORD_HTTP_RETRY_MS / 1000);
		snprintf(h->last_error, sizeof(h->last_error), "%s", msg);
	}
}

static void retry_cb(void *data);

static void retry_later(struct coord_http *h)
{
	h->retry_armed = qb_loop_timer_add(h->c->loop, QB_LOOP_LOW,
					   (uint64_t)COORD_HTTP_RETRY_MS * QB_TIME_NS_IN_MSEC, h,
					   retry_cb, &h->retry) == 0;
}

/* Sets the listener up; on failure tries again later. */
static void http_try(struct coord_http *h)
{
	struct sockaddr_storage ss = { 0 };
	const union MHD_DaemonInfo *info;
	unsigned flags = MHD_USE_EPOLL | MHD_USE_ERROR_LOG;
	char msg[256];

	if (h->addr.family == AF_INET6) {
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;

		s6->sin6_family = AF_INET6;
		s6->sin6_port = htons(h->addr.port);
		memcpy(&s6->sin6_addr, h->addr.addr, 16);
		flags |= MHD_USE_IPv6;
	} else {
		struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;

		s4->sin_family = AF_INET;
		s4->sin_port = htons(h->addr.port);
		memcpy(&s4->sin_addr, h->addr.addr, 4);
	}
	errno = 0;
	h->d = MHD_start_daemon(flags, h->addr.port, NULL, NULL, on_request, h,
				/* first, so that libmicrohttpd logs nothing itself */
				MHD_OPTION_EXTERNAL_LOGGER, http_log, h,
				MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&ss,
				MHD_OPTION_CONNECTION_LIMIT, (unsigned int)COORD_HTTP_CONN_MAX,
				MHD_OPTION_PER_IP_CONNECTION_LIMIT,
				(unsigned int)COORD_HTTP_CONN_PER_IP,
				MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int)COORD_HTTP_TIMEOUT_S,
				MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)COORD_HTTP_CONN_MEMORY,
				MHD_OPTION_LISTEN_BACKLOG_SIZE, (unsigned int)16, MHD_OPTION_END);
	if (h->d == NULL) {
		snprintf(msg, sizeof(msg), "metrics_listen %s: cannot listen%s%s",
			 h->c->cfg.metrics_listen, errno ? ": " : "", errno ? strerror(errno) : "");
		say_error(h, msg);
		retry_later(h);
		return;
	}
	info = MHD_get_daemon_info(h->d, MHD_DAEMON_INFO_EPOLL_FD);
	h->epfd = info ? info->epoll_fd : -1;
	if (h->epfd < 0 ||
	    qb_loop_poll_add(h->c->loop, QB_LOOP_MED, h->epfd, POLLIN, h, poll_cb) != 0) {
		MHD_stop_daemon(h->d);
		h->d = NULL;
		h->epfd = -1;
		say_error(h, "metrics: cannot poll libmicrohttpd's epoll fd");
		retry_later(h);
		return;
	}
	h->last_error[0] = 0;
	qb_log(LOG_NOTICE, "metrics and status page on http://%s/ (port %u)%s",
	       h->c->cfg.metrics_listen, coord_http_port(h->c),
	       h->c->cfg.metrics_token[0] ? ", token required" : "");
	http_schedule(h);
}

static void retry_cb(void *data)
{
	struct coord_http *h = data;

	h->retry_armed = false;
	if (!h->c->stopping && h->d == NULL) {
		http_try(h);
	}
}

int coord_http_start(struct coord *c)
{
	struct coord_http *h;
	struct ha_listen addr;

	if (c->cfg.metrics_listen[0] == 0) {
		return 0;
	}
	if (ha_listen_parse(c->cfg.metrics_listen, &addr) < 0) {
		qb_log(LOG_ERR, "metrics_listen %s: not ADDRESS:PORT", c->cfg.metrics_listen);
		return -EINVAL;
	}
	h = calloc(1, sizeof(*h));
	if (h == NULL) {
		return -ENOMEM;
	}
	h->c = c;
	h->epfd = -1;
	h->addr = addr;
	c->http = h;
	http_try(h);
	return 0;
}

void coord_http_stop(struct coord *c)
{
	struct coord_http *h = c->http;

	if (h == NULL) {
		return;
	}
	if (h->timer_armed) {
		qb_loop_timer_del(c->loop, h->timer);
	}
	if (h->retry_armed) {
		qb_loop_timer_del(c->loop, h->retry);
	}
	if (h->epfd >= 0) {
		qb_loop_poll_del(c->loop, h->epfd);
	}
	if (h->d) {
		MHD_stop_daemon(h->d);
	}
	free(h);
	c->http = NULL;
}

unsigned coord_http_port(const struct coord *c)
{
	const union MHD_DaemonInfo *info;

	if (c->http == NULL || c->http->d == NULL) {
		return 0;
	}
	info = MHD_get_daemon_info(c->http->d, MHD_DAEMON_INFO_BIND_PORT);
	return info ? info->port : 0;
}

#else /* !HAVE_MICROHTTPD */

int coord_http_start(struct coord *c)
{
	if (c->cfg.metrics_listen[0] == 0) {
		return 0;
	}
	qb_log(LOG_ERR, "metrics_listen %s: this ha-coordinator was built without "
	       "libmicrohttpd (HA_WITH_HTTP=OFF); no metrics, no status page",
	       c->cfg.metrics_listen);
	return -ENOTSUP;
}

void coord_http_stop(struct coord *c)
{
}

unsigned coord_http_port(const struct coord *c)
{
	return 0;
}

#endif
