/*
 * ha_inject.c - sends malformed messages to a running coordinator, for the
 * robustness tests.
 *
 *   ha-inject ipc   over libqb IPC: every request must be answered with an
 *                   error Result; afterwards a status request must work.
 *   ha-inject cpg   joins CPG group "hactl" and multicasts malformed and
 *                   forged messages, then leaves.
 *
 * Exit 0 when every check held, 1 otherwise.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

#include <corosync/cpg.h>

#include "envelope.h"
#include "ipc.h"
#include "proto/hactl.pb-c.h"

static int failures;

static void put32(uint8_t *p, uint32_t v)
{
	memcpy(p, &v, 4); /* x86: little-endian */
}

static size_t make_env(uint8_t *buf, uint32_t magic, uint16_t ver, uint16_t type,
		       uint32_t len, uint32_t flags)
{
	put32(buf, magic);
	memcpy(buf + 4, &ver, 2);
	memcpy(buf + 6, &type, 2);
	put32(buf + 8, len);
	put32(buf + 12, flags);
	return HA_ENV_HDR_LEN;
}

struct sample {
	const char *what;
	uint8_t data[256];
	size_t len;
};

static size_t build_samples(struct sample *s)
{
	size_t n = 0;
	uint8_t *b;

	s[n].what = "empty";
	s[n++].len = 0;

	s[n].what = "garbage";
	memcpy(s[n].data, "GET / HTTP/1.0\r\n\r\n", 18);
	s[n++].len = 18;

	s[n].what = "bad magic";
	s[n].len = make_env(s[n].data, 0xdeadbeef, 1, HA_MSG_STATUS_REQUEST, 0, 0);
	n++;

	s[n].what = "future version";
	s[n].len = make_env(s[n].data, HA_ENV_MAGIC, 99, HA_MSG_STATUS_REQUEST, 0, 0);
	n++;

	s[n].what = "unknown type";
	s[n].len = make_env(s[n].data, HA_ENV_MAGIC, 1, 999, 0, 0);
	n++;

	s[n].what = "type of another channel";
	s[n].len = make_env(s[n].data, HA_ENV_MAGIC, 1, HA_MSG_STATUS_REPLY, 0, 0);
	n++;

	s[n].what = "unknown flags";
	s[n].len = make_env(s[n].data, HA_ENV_MAGIC, 1, HA_MSG_STATUS_REQUEST, 0, 1);
	n++;

	s[n].what = "huge length";
	s[n].len = make_env(s[n].data, HA_ENV_MAGIC, 1, HA_MSG_STATUS_REQUEST,
			    0xfffffff0u, 0);
	n++;

	s[n].what = "truncated body";
	s[n].len = make_env(s[n].data, HA_ENV_MAGIC, 1, HA_MSG_CHANGE_REQUEST, 40, 0) + 5;
	n++;

	s[n].what = "trailing bytes";
	s[n].len = make_env(s[n].data, HA_ENV_MAGIC, 1, HA_MSG_STATUS_REQUEST, 0, 0) + 3;
	n++;

	s[n].what = "body not protobuf";
	b = s[n].data;
	s[n].len = make_env(b, HA_ENV_MAGIC, 1, HA_MSG_CHANGE_REQUEST, 4, 0);
	memcpy(b + s[n].len, "\xff\xff\xff\xff", 4);
	s[n].len += 4;
	n++;

	s[n].what = "missing required field";
	s[n].len = make_env(s[n].data, HA_ENV_MAGIC, 1, HA_MSG_CHANGE_REQUEST, 0, 0);
	n++;
	return n;
}

static int inject_ipc(void)
{
	struct sample s[32];
	size_t n = build_samples(s);
	qb_ipcc_connection_t *c = qb_ipcc_connect(HA_IPC_NAME, HA_IPC_MAX_MSG);
	uint8_t *rbuf = malloc(HA_IPC_MAX_MSG);

	if (c == NULL || rbuf == NULL) {
		fprintf(stderr, "ha-inject: cannot connect to ha-coordinator: %s\n",
			strerror(errno));
		return 1;
	}
	for (size_t i = 0; i <= n; i++) {
		struct qb_ipc_request_header hdr;
		struct iovec iov[2];
		struct qb_ipc_response_header *rh = (void *)rbuf;
		enum ha_msg_type t;
		ProtobufCMessage *m = NULL;
		ssize_t got;
		const char *what = i < n ? s[i].what : "bad libqb header";

		hdr.id = i < n ? HA_IPC_REQ_ID : 77;
		hdr.size = (int32_t)(sizeof(hdr) + (i < n ? s[i].len : 0));
		iov[0].iov_base = &hdr;
		iov[0].iov_len = sizeof(hdr);
		iov[1].iov_base = i < n ? s[i].data : rbuf;
		iov[1].iov_len = i < n ? s[i].len : 0;
		got = qb_ipcc_sendv_recv(c, iov, 2, rbuf, HA_IPC_MAX_MSG, 5000);
		if (got < (ssize_t)sizeof(*rh) ||
		    ha_env_decode(rbuf + sizeof(*rh), (size_t)got - sizeof(*rh),
				  HA_CHAN_REPLY, NULL, &t, &m, NULL) < 0 ||
		    t != HA_MSG_RESULT || ((Hactl__Result *)m)->code >= 0) {
			printf("FAIL ipc %-24s: no error result (got %zd)\n", what, got);
			failures++;
		} else {
			printf("ok   ipc %-24s: %s\n", what, ((Hactl__Result *)m)->message);
		}
		ha_env_msg_free(m);
	}
	/* The connection and the daemon still work. */
	{
		Hactl__StatusRequest req = HACTL__STATUS_REQUEST__INIT;
		enum ha_msg_type t;
		ProtobufCMessage *m = NULL;
		int rc = ha_ipcc_call(c, HA_MSG_STATUS_REQUEST, &req.base, 5000, &t, &m);

		if (rc < 0 || t != HA_MSG_STATUS_REPLY) {
			printf("FAIL ipc status after garbage: %s\n", strerror(-rc));
			failures++;
		} else {
			printf("ok   ipc status after garbage: rx_rejected=%llu\n",
			       (unsigned long long)((Hactl__StatusReply *)m)->rx_rejected);
		}
		ha_env_msg_free(m);
	}
	qb_ipcc_disconnect(c);
	free(rbuf);
	return failures ? 1 : 0;
}

static void cpg_send(cpg_handle_t h, const void *buf, size_t len, const char *what)
{
	struct iovec iov = { .iov_base = (void *)buf, .iov_len = len };
	cs_error_t e;

	do {
		e = cpg_mcast_joined(h, CPG_TYPE_AGREED, &iov, 1);
		if (e == CS_ERR_TRY_AGAIN) {
			usleep(10000);
		}
	} while (e == CS_ERR_TRY_AGAIN);
	printf("%s cpg %-24s: sent (%d)\n", e == CS_OK ? "ok  " : "FAIL", what, e);
	if (e != CS_OK) {
		failures++;
	}
}

static int inject_cpg(void)
{
	cpg_callbacks_t cb = { 0 };
	cpg_handle_t h;
	struct cpg_name g;
	struct sample s[32];
	size_t n = build_samples(s);
	unsigned int local;

	if (cpg_initialize(&h, &cb) != CS_OK || cpg_local_get(h, &local) != CS_OK) {
		fprintf(stderr, "ha-inject: corosync not reachable\n");
		return 1;
	}
	snprintf(g.value, sizeof(g.value), "hactl");
	g.length = 5;
	if (cpg_join(h, &g) != CS_OK) {
		fprintf(stderr, "ha-inject: cannot join group hactl\n");
		return 1;
	}
	for (size_t i = 1; i < n; i++) { /* corosync refuses empty messages */
		cpg_send(h, s[i].data, s[i].len, s[i].what);
	}
	/* Well-formed but forged: facts for another node, a commit and a
	 * sync state claiming another sender. */
	{
		Hactl__CpgFacts f = HACTL__CPG_FACTS__INIT;
		Hactl__CpgSyncState ss = HACTL__CPG_SYNC_STATE__INIT;
		Hactl__ClusterState cs = HACTL__CLUSTER_STATE__INIT;
		uint8_t *buf;
		size_t len;

		f.node = local + 1000;
		if (ha_env_encode(HA_MSG_CPG_FACTS, &f.base, &buf, &len) == 0) {
			cpg_send(h, buf, len, "forged facts");
			free(buf);
		}
		ss.sender = local + 1000;
		cs.has_seq = true;
		cs.seq = 1u << 30;
		ss.state = &cs;
		if (ha_env_encode(HA_MSG_CPG_SYNC_STATE, &ss.base, &buf, &len) == 0) {
			cpg_send(h, buf, len, "forged sync state");
			free(buf);
		}
	}
	usleep(200000);
	cpg_leave(h, &g);
	cpg_finalize(h);
	return failures ? 1 : 0;
}

int main(int argc, char **argv)
{
	if (argc == 2 && strcmp(argv[1], "ipc") == 0) {
		return inject_ipc();
	}
	if (argc == 2 && strcmp(argv[1], "cpg") == 0) {
		return inject_cpg();
	}
	fprintf(stderr, "usage: ha-inject ipc|cpg\n");
	return 2;
}
