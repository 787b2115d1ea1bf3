/*
 * fuzz_qmp.c - the QMP client's framing and message parser against what a
 * hostile QEMU could send.
 *
 * The input is a byte stream from the monitor socket. It is fed to a
 * qmp_linebuf twice: with the real bound (QMP_MAX_LINE) in chunks whose
 * sizes come from the input itself, and whole with a small bound that the
 * corpus can exceed. Every line is parsed with qmp_msg_parse(); every
 * return value goes through qmp_migrate_info_parse(). Invariants, any
 * violation aborts:
 *
 *  - A line holds no "\n", is NUL terminated at its length, and is no
 *    longer than the bound; the line buffer never holds more than the
 *    bound plus one chunk; once it reports -EMSGSIZE it keeps doing so.
 *  - qmp_msg_parse() returns 0, -EBADMSG or -EMSGSIZE; on failure the
 *    message holds nothing and the error text is one line.
 *  - A parsed message has exactly the fields of its kind: a greeting has
 *    the "QMP" object, an error its class and desc, an event a name of
 *    1..QMP_EVENT_NAME_MAX-1 bytes, an id only on replies.
 *  - Serialized again and re-parsed (when json-c can read its own output),
 *    a message keeps its kind.
 *  - qmp_migrate_info_parse() returns 0 or -EPROTO, with a status below
 *    QMP_MIGRATE_STATUS_MAX and an error text free of control bytes.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "qmp_client.h"

#define SMALL_BOUND 48

#define FUZZ_ASSERT(cond)                                                      \
	do {                                                                   \
		if (!(cond)) {                                                 \
			fprintf(stderr, "%s:%d: invariant violated: %s\n",     \
				__FILE__, __LINE__, #cond);                    \
			abort();                                               \
		}                                                              \
	} while (0)

static void check_one_line(const char *s)
{
	FUZZ_ASSERT(strchr(s, '\n') == NULL);
}

static void check_migrate(json_object *v)
{
	struct qmp_migrate_info mi;
	int rc = qmp_migrate_info_parse(v, &mi);

	FUZZ_ASSERT(rc == 0 || rc == -EPROTO);
	if (rc == 0) {
		FUZZ_ASSERT((unsigned)mi.status < QMP_MIGRATE_STATUS_MAX);
		FUZZ_ASSERT(memchr(mi.error, 0, sizeof(mi.error)) != NULL);
		for (const char *p = mi.error; *p; p++) {
			FUZZ_ASSERT((unsigned char)*p >= 0x20 && *p != 0x7f);
		}
	}
}

static void check_msg(const char *line, size_t len)
{
	struct qmp_msg m, again;
	char err[160];
	int rc;

	memset(err, 0, sizeof(err));
	rc = qmp_msg_parse(line, len, &m, err, sizeof(err));
	FUZZ_ASSERT(rc == 0 || rc == -EBADMSG || rc == -EMSGSIZE);
	if (rc < 0) {
		FUZZ_ASSERT(m.root == NULL && m.value == NULL && m.id == NULL);
		FUZZ_ASSERT(err[0] != 0);
		check_one_line(err);
		return;
	}
	FUZZ_ASSERT(m.root != NULL && (unsigned)m.kind < QMP_MSG_KIND_MAX);
	switch (m.kind) {
	case QMP_MSG_GREETING:
		FUZZ_ASSERT(json_object_is_type(m.value, json_type_object));
		FUZZ_ASSERT(m.id == NULL);
		break;
	case QMP_MSG_RETURN:
		check_migrate(m.value);
		break;
	case QMP_MSG_ERROR:
		FUZZ_ASSERT(m.err_class != NULL && m.err_desc != NULL);
		break;
	case QMP_MSG_EVENT:
		FUZZ_ASSERT(m.event != NULL);
		FUZZ_ASSERT(strlen(m.event) >= 1 && strlen(m.event) < QMP_EVENT_NAME_MAX);
		FUZZ_ASSERT(m.id == NULL);
		FUZZ_ASSERT(m.value == NULL || json_object_is_type(m.value, json_type_object));
		break;
	default:
		FUZZ_ASSERT(0);
	}
	{
		const char *s = json_object_to_json_string_ext(m.root, JSON_C_TO_STRING_PLAIN);

		if (s && qmp_msg_parse(s, strlen(s), &again, NULL, 0) == 0) {
			FUZZ_ASSERT(again.kind == m.kind);
			qmp_msg_clear(&again);
		}
	}
	qmp_msg_clear(&m);
}

/* Drains the complete lines; returns the buffer's verdict. */
static int drain(struct qmp_linebuf *lb)
{
	const char *line;
	size_t len;
	int rc;

	while ((rc = qmp_linebuf_next(lb, &line, &len)) == 1) {
		FUZZ_ASSERT(len <= lb->max);
		FUZZ_ASSERT(line[len] == 0);
		FUZZ_ASSERT(memchr(line, '\n', len) == NULL);
		check_msg(line, len);
	}
	FUZZ_ASSERT(rc == 0 || rc == -EMSGSIZE);
	return rc;
}

static void feed_stream(const uint8_t *data, size_t size, size_t bound, bool chunked)
{
	struct qmp_linebuf lb;
	size_t off = 0, step = 0;
	int sticky = 0;

	qmp_linebuf_init(&lb, bound);
	while (off < size) {
		size_t n = chunked ? 1 + (size_t)data[step++ % size] % 97 : size;
		int rc;

		if (n > size - off) {
			n = size - off;
		}
		rc = qmp_linebuf_feed(&lb, data + off, n);
		off += n;
		FUZZ_ASSERT(rc == 0 || rc == -EMSGSIZE);
		if (sticky) {
			FUZZ_ASSERT(rc == -EMSGSIZE);
		}
		if (rc == 0) {
			FUZZ_ASSERT(lb.len - lb.start <= bound + 1 + n);
			rc = drain(&lb);
		}
		if (rc == -EMSGSIZE) {
			sticky = 1;
		}
	}
	if (sticky) {
		const char *line;
		size_t len;

		FUZZ_ASSERT(qmp_linebuf_next(&lb, &line, &len) == -EMSGSIZE);
	}
	qmp_linebuf_clear(&lb);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size == 0) {
		return 0;
	}
	feed_stream(data, size, QMP_MAX_LINE, true);
	feed_stream(data, size, SMALL_BOUND, false);
	/* The whole input as one message, as a caller holding a line would. */
	if (size <= QMP_MAX_LINE) {
		check_msg((const char *)data, size);
	}
	return 0;
}
