/*
 * coord_http.h - the coordinator's HTTP endpoint ([coordinator]
 * metrics_listen, docs/monitoring.md): GET /metrics (Prometheus text),
 * GET / (a read-only status page) and GET /status.json (its data).
 *
 * Requests are answered by coord_http_handle(), which needs no server and
 * no corosync (the unit tests call it). The server (libmicrohttpd, when
 * built with HA_WITH_HTTP) runs without threads of its own: its epoll fd
 * and its timeouts are sources of the coordinator's qb_loop, so handlers
 * read struct coord without locks.
 */
#ifndef HA_COORD_HTTP_H
#define HA_COORD_HTTP_H

#include <stdbool.h>
#include <stddef.h>

struct coord;

/* Bounds of the server: connections at once (all, from one address), the
 * seconds a connection may idle, the memory a connection's request may
 * take (headers beyond it are answered 431 by libmicrohttpd). */
#define COORD_HTTP_CONN_MAX 32
#define COORD_HTTP_CONN_PER_IP 8
#define COORD_HTTP_TIMEOUT_S 10
#define COORD_HTTP_CONN_MEMORY (32u * 1024u)
/* How often a listener that could not be set up is tried again. */
#define COORD_HTTP_RETRY_MS 5000u
/* /status.json?events=N: at most this many (default COORD_HTTP_EVENTS). */
#define COORD_HTTP_EVENTS 50

struct coord_http_req {
	const char *method;
	const char *path;          /* the URL's path, without the query */
	const char *authorization; /* the Authorization header; NULL = none */
	const char *token;         /* the query's token=; NULL = none */
	const char *events;        /* the query's events=; NULL = none */
	bool has_body;             /* Content-Length > 0 or Transfer-Encoding */
};

struct coord_http_resp {
	unsigned status;           /* 200, 400, 401, 404, 405 or 500 */
	const char *content_type;
	char *body;                /* malloc'd; the caller frees it */
	size_t len;
	const char *allow;         /* 405: the Allow header; else NULL */
	bool challenge;            /* 401: send WWW-Authenticate: Bearer */
};

/*
 * Answers @rq from @c with [coordinator] metrics_token in force: every
 * request needs the token (Authorization: Bearer TOKEN or ?token=TOKEN)
 * when one is set, else 401; only GET and HEAD (else 405); no body (400);
 * /, /index.html, /metrics, /status.json (else 404). Counts the answer.
 * Never fails: out of memory is a 500 with an empty body.
 */
void coord_http_handle(struct coord *c, const struct coord_http_req *rq,
		       struct coord_http_resp *rs);

/* The status page (coord_page.c): HTML with inline CSS and script. */
extern const char coord_page_html[];

/*
 * Starts the server when [coordinator] metrics_listen is set: 0 (also
 * when the address cannot be bound now: it is tried again every
 * COORD_HTTP_RETRY_MS, with an error logged), -EINVAL for an address
 * that does not parse, -ENOTSUP when built without libmicrohttpd (logged).
 */
int coord_http_start(struct coord *c);
void coord_http_stop(struct coord *c);
/* The port the server listens on; 0 when it does not listen. */
unsigned coord_http_port(const struct coord *c);

#endif
