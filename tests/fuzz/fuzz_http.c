/*
 * fuzz_http.c - the coordinator's HTTP answers (coord_http_handle())
 * against whatever a client could send.
 *
 * libmicrohttpd parses the request; what reaches the handler is the
 * method, the path, the Authorization header, the query's token and
 * events, and whether a body came. The input holds them as lines in that
 * order (the sixth line's first byte odd = a body), the first byte of the
 * input choosing whether a token is configured. The coordinator is a real
 * struct coord with three nodes, a guest and a few events (made once).
 * Invariants, any violation aborts:
 *
 *  - the status is 200, 400, 401, 404 or 405 (500 only without memory),
 *    with a content type and a body of exactly len bytes, NUL terminated;
 *  - with a token configured, no request without it gets anything but 401;
 *  - 200 only for GET or HEAD, without a body, on /, /index.html,
 *    /metrics or /status.json; /status.json's body is JSON that json-c
 *    reads back;
 *  - each answer is counted once in hactl_http_requests_total.
 */
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "coord_http.h"
#include "coordinator.h"
#include "fuzz.h"

#define FUZZ_ASSERT(cond)                                                      \
	do {                                                                   \
		if (!(cond)) {                                                 \
			fprintf(stderr, "%s:%d: invariant violated: %s\n",     \
				__FILE__, __LINE__, #cond);                    \
			abort();                                               \
		}                                                              \
	} while (0)

#define TOKEN "fuzz-token"

static struct coord co;

static void setup(void)
{
	static const char def[] = "[guest]\nname = g1\ntype = container\nmemory = 64M\n"
				  "command = /bin/true\n[storage]\ntemplate = container\n";
	Hactl__Change ch = HACTL__CHANGE__INIT;
	Hactl__GuestDefineChange gd = HACTL__GUEST_DEFINE_CHANGE__INIT;
	char why[256];

	ha_config_defaults(&co.cfg);
	coord_init(&co);
	co.local_id = 1;
	co.leader = 1;
	co.members[0] = 1;
	co.n_members = 1;
	co.test_now_ms = 1000;
	for (uint32_t id = 1; id <= 3; id++) {
		char name[16];

		snprintf(name, sizeof(name), "n%u", id);
		coord_state_node_add(&co.state, id, name);
	}
	gd.definition.data = (uint8_t *)def;
	gd.definition.len = sizeof(def) - 1;
	ch.kind_case = HACTL__CHANGE__KIND_GUEST_DEFINE;
	ch.guest_define = &gd;
	FUZZ_ASSERT(coord_change_apply(&co.state, &ch, 1000, why, sizeof(why)) == 0);
	coord_event(&co, "an event with </script> and \"quotes\"");
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	setup();
	return 0;
}

static uint64_t answered(void)
{
	uint64_t n = 0;

	for (int k = 0; k < COORD_HTTP_CODE_MAX; k++) {
		n += co.metrics.http[k];
	}
	return n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *copy, *field[6] = { 0 }, *p;
	struct coord_http_req rq = { 0 };
	struct coord_http_resp rs;
	bool token_set, ok_path;
	uint64_t before;

	if (co.n_members == 0) {
		setup(); /* replay.c without LLVMFuzzerInitialize */
	}
	if (size == 0 || size > 4096) {
		return 0;
	}
	token_set = data[0] & 1;
	copy = malloc(size);
	if (copy == NULL) {
		return 0;
	}
	memcpy(copy, data + 1, size - 1);
	copy[size - 1] = 0;
	p = copy;
	for (int i = 0; i < 6 && p; i++) {
		field[i] = p;
		p = strchr(p, '\n');
		if (p) {
			*p++ = 0;
		}
	}
	snprintf(co.cfg.metrics_token, sizeof(co.cfg.metrics_token), "%s",
		 token_set ? TOKEN : "");
	rq.method = field[0];
	rq.path = field[1];
	rq.authorization = field[2] && field[2][0] ? field[2] : NULL;
	rq.token = field[3] && field[3][0] ? field[3] : NULL;
	rq.events = field[4] && field[4][0] ? field[4] : NULL;
	rq.has_body = field[5] && (field[5][0] & 1);
	before = answered();
	coord_http_handle(&co, &rq, &rs);
	FUZZ_ASSERT(answered() == before + 1);
	FUZZ_ASSERT(rs.content_type != NULL);
	FUZZ_ASSERT(rs.status == 200 || rs.status == 400 || rs.status == 401 ||
		    rs.status == 404 || rs.status == 405 || rs.status == 500);
	if (rs.status != 500) {
		FUZZ_ASSERT(rs.body != NULL && strlen(rs.body) == rs.len);
	}
	if (token_set && !(rq.token && strcmp(rq.token, TOKEN) == 0) &&
	    !(rq.authorization && strstr(rq.authorization, TOKEN))) {
		FUZZ_ASSERT(rs.status == 401);
	}
	ok_path = rq.path && (strcmp(rq.path, "/") == 0 || strcmp(rq.path, "/index.html") == 0 ||
			      strcmp(rq.path, "/metrics") == 0 ||
			      strcmp(rq.path, "/status.json") == 0);
	if (rs.status == 200) {
		FUZZ_ASSERT(ok_path && !rq.has_body && rq.method &&
			    (strcmp(rq.method, "GET") == 0 || strcmp(rq.method, "HEAD") == 0));
		if (strcmp(rq.path, "/status.json") == 0) {
			json_object *j = json_tokener_parse(rs.body);

			FUZZ_ASSERT(j != NULL);
			json_object_put(j);
		}
	}
	free(rs.body);
	free(copy);
	return 0;
}
