/*
 * qmp_client.h - a blocking client of the QEMU Machine Protocol.
 *
 * One connection to one QEMU monitor socket: greeting, qmp_capabilities,
 * then commands and their replies matched by id, with the asynchronous
 * events that arrive in between collected in a bounded queue. Every wait
 * is bounded by the caller's timeout (poll). Everything QEMU sends is
 * treated as hostile: lines are bounded (QMP_MAX_LINE), JSON nesting is
 * bounded, and a message that is not one of the four QMP shapes is
 * rejected with a clear error instead of being guessed at.
 *
 * A connection keeps its first framing error (EOF, an oversized line, a
 * malformed message): every later call fails with it. A command that
 * times out does not poison the connection; its late reply is skipped by
 * id.
 *
 * Functions taking @err fill it (when not NULL, @errlen bytes) with one
 * line naming what failed. Return 0 or -errno. Not thread safe: one
 * client per thread at a time. No logging.
 */
#ifndef HA_AGENT_QMP_CLIENT_H
#define HA_AGENT_QMP_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <json-c/json.h>

#define QMP_MAX_LINE (1u << 20)  /* bytes of one message, newline excluded */
#define QMP_MAX_DEPTH 64         /* JSON nesting */
#define QMP_MAX_EVENTS 128       /* queued events; the oldest is dropped */
#define QMP_EVENT_NAME_MAX 64

/* ---- framing and parsing (pure; fuzzed by tests/fuzz/fuzz_qmp.c) ---- */

/*
 * Splits a byte stream into lines ("\n", a "\r" before it is dropped).
 * A line longer than @max (without its newline) is an error that sticks:
 * -EMSGSIZE from then on. Memory held is bounded by about 2 * @max.
 */
struct qmp_linebuf {
	char *buf;
	size_t start;   /* first byte not yet returned */
	size_t len;     /* bytes held, from 0 */
	size_t cap;
	size_t scan;    /* bytes from start known to hold no newline */
	size_t max;
	int error;
};

void qmp_linebuf_init(struct qmp_linebuf *lb, size_t max);
void qmp_linebuf_clear(struct qmp_linebuf *lb);
/* Appends @n bytes. Returns 0, or -EMSGSIZE / -ENOMEM (sticky). */
int qmp_linebuf_feed(struct qmp_linebuf *lb, const void *data, size_t n);
/*
 * The next complete line: returns 1 with *line (NUL terminated, newline
 * removed; valid until the next feed) and *len set, 0 when no complete line
 * is held, or the sticky error.
 */
int qmp_linebuf_next(struct qmp_linebuf *lb, const char **line, size_t *len);

enum qmp_msg_kind {
	QMP_MSG_GREETING = 0, /* {"QMP": {"version": ..., "capabilities": [...]}} */
	QMP_MSG_RETURN,       /* {"return": X, "id": ...} */
	QMP_MSG_ERROR,        /* {"error": {"class": S, "desc": S}, "id": ...} */
	QMP_MSG_EVENT,        /* {"event": S, "data": {...}, "timestamp": {...}} */
	QMP_MSG_KIND_MAX
};

const char *qmp_msg_kind_str(enum qmp_msg_kind k);

/* A parsed message. Every pointer points into @root, which it owns. */
struct qmp_msg {
	enum qmp_msg_kind kind;
	json_object *root;
	json_object *value;     /* RETURN: the value; EVENT: data or NULL;
				 * GREETING: the "QMP" object */
	const char *id;         /* RETURN/ERROR: a string id, else NULL */
	const char *err_class;  /* ERROR */
	const char *err_desc;   /* ERROR */
	const char *event;      /* EVENT, at most QMP_EVENT_NAME_MAX-1 bytes */
	int64_t ts_us;          /* EVENT: the timestamp, -1 when absent */
	unsigned ver_major, ver_minor, ver_micro; /* GREETING, 0 when absent */
};

/*
 * Parses one line (@len bytes; an embedded NUL is rejected). On success
 * fills @out (release with qmp_msg_clear()); on failure returns -EBADMSG
 * (not JSON, trailing bytes, too deep, not a QMP message) and @out holds
 * nothing.
 */
int qmp_msg_parse(const char *line, size_t len, struct qmp_msg *out, char *err,
		  size_t errlen);
void qmp_msg_clear(struct qmp_msg *m);

/* ---- the client ------------------------------------------------------ */

struct qmp_client;

/*
 * Connects to the monitor socket @path (any length: long paths go through
 * the directory's /proc/self/fd entry), reads the greeting and negotiates
 * capabilities. Retries while the socket is missing or refuses, until
 * @timeout_ms. *out is freed with qmp_client_free().
 */
int qmp_client_connect(const char *path, uint32_t timeout_ms, struct qmp_client **out,
		       char *err, size_t errlen);
/* The same over an already connected stream socket, which the client then
 * owns (closed by qmp_client_free(), also on failure). */
int qmp_client_connect_fd(int fd, uint32_t timeout_ms, struct qmp_client **out,
			  char *err, size_t errlen);
void qmp_client_free(struct qmp_client *c);

/* QEMU's version from the greeting. */
void qmp_client_version(const struct qmp_client *c, unsigned *major, unsigned *minor,
			unsigned *micro);

/*
 * Runs @cmd with @args (borrowed, may be NULL) and waits for its reply.
 * On success *ret (when not NULL) holds a new reference to the return
 * value (json_object_put() it). A QMP error returns -EOPNOTSUPP for
 * CommandNotFound, -ENODEV for DeviceNotFound, -EIO otherwise, and @err
 * says "qmp CMD: CLASS: DESC".
 */
int qmp_client_execute(struct qmp_client *c, const char *cmd, json_object *args,
		       json_object **ret, uint32_t timeout_ms, char *err, size_t errlen);
/* The same, passing @fd with the command (SCM_RIGHTS), as getfd and
 * add-fd want. */
int qmp_client_execute_fd(struct qmp_client *c, const char *cmd, json_object *args,
			  int fd, json_object **ret, uint32_t timeout_ms, char *err,
			  size_t errlen);
/* getfd: hands @fd (not consumed) to QEMU under @name, for "fd:NAME" URIs. */
int qmp_client_getfd(struct qmp_client *c, const char *name, int fd, uint32_t timeout_ms,
		     char *err, size_t errlen);

/*
 * Takes the oldest queued event named @name (any when NULL): returns true
 * and, when @data is not NULL, a new reference to its data (may be NULL).
 */
bool qmp_client_take_event(struct qmp_client *c, const char *name, json_object **data);
/* Reads until an event named @name (any when NULL) is queued, then takes
 * it as above. -ETIMEDOUT after @timeout_ms. */
int qmp_client_wait_event(struct qmp_client *c, const char *name, json_object **data,
			  uint32_t timeout_ms, char *err, size_t errlen);
/* Reads what has arrived without waiting (events, stale replies). */
int qmp_client_poll(struct qmp_client *c, char *err, size_t errlen);
/* Events dropped because the queue was full; messages skipped as replies
 * to nobody (stale ids). */
uint64_t qmp_client_events_dropped(const struct qmp_client *c);
uint64_t qmp_client_replies_skipped(const struct qmp_client *c);

/* QEMU's run states (qapi/run-state.json, RunState) that hactl tells
 * apart; a name this list lacks (a newer QEMU's) is QMP_RUN_OTHER. */
enum qmp_run_state {
	QMP_RUN_OTHER = 0,
	QMP_RUN_DEBUG,
	QMP_RUN_INMIGRATE,
	QMP_RUN_INTERNAL_ERROR,
	QMP_RUN_IO_ERROR,
	QMP_RUN_PAUSED,
	QMP_RUN_POSTMIGRATE,
	QMP_RUN_PRELAUNCH,
	QMP_RUN_FINISH_MIGRATE,
	QMP_RUN_RESTORE_VM,
	QMP_RUN_RUNNING,
	QMP_RUN_SAVE_VM,
	QMP_RUN_SHUTDOWN,
	QMP_RUN_SUSPENDED,
	QMP_RUN_WATCHDOG,
	QMP_RUN_GUEST_PANICKED,
	QMP_RUN_COLO,
	QMP_RUN_STATE_MAX
};

/* QEMU's name of @s ("finish-migrate"); "other" for QMP_RUN_OTHER. */
const char *qmp_run_state_str(enum qmp_run_state s);
/* The state QEMU calls @name; QMP_RUN_OTHER for a name not listed. */
enum qmp_run_state qmp_run_state_parse(const char *name);

/* What query-status says: the run state, QEMU's word for it (kept for
 * messages: a newer QEMU's state has no enum value) and "running". */
struct qmp_status {
	enum qmp_run_state state;
	bool running;
	char name[32];
};

/* query-status into @st. */
int qmp_client_query_status(struct qmp_client *c, struct qmp_status *st, uint32_t timeout_ms,
			    char *err, size_t errlen);

/* ---- migration ------------------------------------------------------- */

/*
 * Migration tuning. Fields left 0/false are not set, except that the
 * capabilities listed are always written (so a reused QEMU does not keep
 * an old setting). Both ends of a migration must agree on capabilities
 * that change the stream (xbzrle).
 */
struct qmp_migrate_tuning {
	uint64_t max_bandwidth;     /* bytes/s; 0: leave */
	uint64_t downtime_limit_ms; /* 0: leave */
	uint64_t xbzrle_cache_size; /* bytes; 0: leave */
	bool auto_converge;
	bool xbzrle;
	bool events;                /* MIGRATION events */
};

int qmp_client_migrate_tune(struct qmp_client *c, const struct qmp_migrate_tuning *t,
			    uint32_t timeout_ms, char *err, size_t errlen);

enum qmp_migrate_status {
	QMP_MIGRATE_NONE = 0,
	QMP_MIGRATE_SETUP,
	QMP_MIGRATE_ACTIVE,       /* also pre-switchover, device, postcopy-* */
	QMP_MIGRATE_COMPLETED,
	QMP_MIGRATE_FAILED,
	QMP_MIGRATE_CANCELLING,   /* migrate_cancel asked, not yet done */
	QMP_MIGRATE_CANCELLED,
	QMP_MIGRATE_STATUS_MAX
};

const char *qmp_migrate_status_str(enum qmp_migrate_status s);

struct qmp_migrate_info {
	enum qmp_migrate_status status;
	uint64_t total_time_ms;
	uint64_t downtime_ms;
	uint64_t ram_transferred;
	uint64_t ram_remaining;
	uint64_t ram_total;
	uint64_t dirty_sync_count;
	char error[160];          /* error-desc when failed */
};

/* One query-migrate. */
int qmp_client_query_migrate(struct qmp_client *c, struct qmp_migrate_info *info,
			     uint32_t timeout_ms, char *err, size_t errlen);
/* Parses a query-migrate return value (exposed for tests). */
int qmp_migrate_info_parse(json_object *ret, struct qmp_migrate_info *info);
/*
 * Polls query-migrate until completed (0), failed or cancelled (-EIO, the
 * reason in @err) or @timeout_ms (-ETIMEDOUT; the migration is left
 * running, the caller cancels). @info (may be NULL) holds the last answer.
 */
int qmp_client_migrate_wait(struct qmp_client *c, struct qmp_migrate_info *info,
			    uint32_t timeout_ms, char *err, size_t errlen);

#endif
