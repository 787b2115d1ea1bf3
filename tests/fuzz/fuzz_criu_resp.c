/*
 * fuzz_criu_resp.c - agent_criu_resp_decode() against hostile bytes: what
 * agent/criu_rpc.c acts on from a CRIU swrk process (or anything that
 * poses as one on the socket).
 *
 * Invariants, any violation aborts:
 *  - The result is 0, -EBADMSG or -EMSGSIZE (-EMSGSIZE exactly when the
 *    input is longer than AGENT_CRIU_MAX_MSG), or -ENOTSUP for every
 *    input in a build without CRIU's schema.
 *  - On failure the output is all zero.
 *  - On success: the type is one of rpc.proto's request types; strings
 *    are NUL-terminated within their fields and printable ASCII; pids are
 *    >= 0; the page-server port is -1 or 1..65535; version numbers are
 *    >= 0; a NOTIFY carries a non-empty script name.
 *  - Decoding is deterministic: the same input decodes to the same bytes.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "criu_rpc.h"
#include "fuzz.h"

#define FUZZ_ASSERT(cond)                                                      \
	do {                                                                   \
		if (!(cond)) {                                                 \
			fprintf(stderr, "%s:%d: invariant violated: %s\n",     \
				__FILE__, __LINE__, #cond);                    \
			abort();                                               \
		}                                                              \
	} while (0)

/* rpc.proto's criu_req_type: EMPTY = 0 ... SINGLE_PRE_DUMP = 13. */
#define RESP_TYPE_MAX 13
#define RESP_TYPE_NOTIFY 6

static bool all_zero(const void *p, size_t n)
{
	const unsigned char *b = p;

	for (size_t i = 0; i < n; i++) {
		if (b[i] != 0) {
			return false;
		}
	}
	return true;
}

static void check_string(const char *s, size_t size)
{
	const char *end = memchr(s, '\0', size);

	FUZZ_ASSERT(end != NULL);
	for (const char *p = s; p < end; p++) {
		FUZZ_ASSERT(*p >= 0x20 && *p < 0x7f);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct agent_criu_resp r, again;
	int ret = agent_criu_resp_decode(data, size, &r);

	if (ret == -ENOTSUP) {
		/* No schema in this build: nothing is ever decoded. */
		FUZZ_ASSERT(all_zero(&r, sizeof(r)));
		return 0;
	}
	FUZZ_ASSERT(ret == 0 || ret == -EBADMSG || ret == -EMSGSIZE);
	FUZZ_ASSERT((ret == -EMSGSIZE) == (size > AGENT_CRIU_MAX_MSG));
	if (ret < 0) {
		FUZZ_ASSERT(all_zero(&r, sizeof(r)));
		return 0;
	}
	FUZZ_ASSERT(r.type >= 0 && r.type <= RESP_TYPE_MAX);
	check_string(r.errmsg, sizeof(r.errmsg));
	check_string(r.script, sizeof(r.script));
	check_string(r.version_gitid, sizeof(r.version_gitid));
	FUZZ_ASSERT(r.notify_pid >= 0 && r.restore_pid >= 0 && r.ps_pid >= 0);
	FUZZ_ASSERT(r.ps_port == -1 || (r.ps_port >= 1 && r.ps_port <= 65535));
	FUZZ_ASSERT(r.version_major >= 0 && r.version_minor >= 0 &&
		    r.version_sublevel >= 0);
	FUZZ_ASSERT(r.has_version || (r.version_major == 0 && r.version_minor == 0));
	if (r.type == RESP_TYPE_NOTIFY) {
		FUZZ_ASSERT(r.script[0] != '\0');
	}

	FUZZ_ASSERT(agent_criu_resp_decode(data, size, &again) == 0);
	FUZZ_ASSERT(memcmp(&r, &again, sizeof(r)) == 0);
	return 0;
}
