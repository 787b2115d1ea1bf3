/*
 * test_envelope.c - the envelope codec: registry, round trips, every
 * rejection reason with its error and counter, size bounds.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "envelope.h"
#include "harness.h"
#include "proto/hactl.pb-c.h"

#define ALL_CHANNELS (HA_CHAN_IPC | HA_CHAN_REPLY | HA_CHAN_CPG | HA_CHAN_FILE)

static void put_le16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
}

static void put_le32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
	p[2] = (uint8_t)(v >> 16);
	p[3] = (uint8_t)(v >> 24);
}

static uint32_t get_le32(const uint8_t *p)
{
	return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) |
	       ((uint32_t)p[3] << 24);
}

static void put_hdr(uint8_t *p, uint32_t magic, uint16_t version,
		    uint16_t type, uint32_t length, uint32_t flags)
{
	put_le32(p, magic);
	put_le16(p + 4, version);
	put_le16(p + 6, type);
	put_le32(p + 8, length);
	put_le32(p + 12, flags);
}

/* A type id nobody registered: the first gap, else HA_MSG_MAX. */
static unsigned unused_type(void)
{
	unsigned t = 1;

	while (t < HA_MSG_MAX && ha_msg_desc_get(t) != NULL) {
		t++;
	}
	return t;
}

/* Encodes and decodes @msg as @type; returns the decoded message (caller
 * frees) or NULL, having checked the header bytes on the way. */
static ProtobufCMessage *round_trip(enum ha_msg_type type,
				    const ProtobufCMessage *msg)
{
	struct ha_env_stats st = { 0 };
	const struct ha_msg_desc *d = ha_msg_desc_get(type);
	uint8_t *buf = NULL;
	size_t len = 0;
	ProtobufCMessage *out = NULL;
	enum ha_msg_type got = HA_MSG_NONE;
	int rc;

	CHECK(d != NULL);
	rc = ha_env_encode(type, msg, &buf, &len);
	CHECK_EQ_INT(rc, 0);
	if (rc != 0) {
		return NULL;
	}
	CHECK_EQ_INT(len, HA_ENV_HDR_LEN + protobuf_c_message_get_packed_size(msg));
	CHECK(memcmp(buf, "HACL", 4) == 0);
	CHECK_EQ_INT(buf[4], HA_PROTO_MAX);
	CHECK_EQ_INT(buf[5], 0);
	CHECK_EQ_INT(buf[6], type & 0xff);
	CHECK_EQ_INT(buf[7], type >> 8);
	CHECK_EQ_INT(get_le32(buf + 8), len - HA_ENV_HDR_LEN);
	CHECK_EQ_INT(get_le32(buf + 12), 0);

	rc = ha_env_decode(buf, len, d->channels, &st, &got, &out, NULL);
	CHECK_EQ_INT(rc, 0);
	CHECK_EQ_INT(got, type);
	CHECK_EQ_INT(st.decoded, 1);
	CHECK_EQ_INT(ha_env_stats_rejected(&st), 0);
	CHECK(out != NULL && out->descriptor == d->desc);
	free(buf);
	return out;
}

static void test_registry(void)
{
	unsigned n = 0;

	for (unsigned t = 0; t < HA_MSG_MAX + 8; t++) {
		const struct ha_msg_desc *d = ha_msg_desc_get(t);

		if (d == NULL) {
			CHECK(strcmp(ha_msg_type_str(t), "unknown") == 0);
			continue;
		}
		n++;
		CHECK_EQ_INT(d->type, t);
		CHECK(d->name != NULL && d->name[0] != 0);
		CHECK(strcmp(ha_msg_type_str(t), d->name) == 0);
		CHECK(d->desc != NULL);
		CHECK(d->max_len > 0 && d->max_len <= HA_ENV_MAX_BODY);
		CHECK(d->channels != 0 && (d->channels & ~ALL_CHANNELS) == 0);
		for (unsigned u = 0; u < t; u++) {
			const struct ha_msg_desc *e = ha_msg_desc_get(u);

			CHECK(e == NULL || strcmp(e->name, d->name) != 0);
		}
	}
	CHECK(n >= 14);
	CHECK(ha_msg_desc_get(HA_MSG_NONE) == NULL);
	CHECK(ha_msg_desc_get(unused_type()) == NULL);
	CHECK(ha_msg_desc_get(HA_MSG_MAX) == NULL);
	CHECK(ha_msg_desc_get(0xffffffffu) == NULL);
	CHECK(strcmp(ha_msg_type_str(HA_MSG_STATUS_REQUEST), "status-request") == 0);
	CHECK(strcmp(ha_msg_type_str(HA_MSG_CPG_SYNC_STATE), "cpg-sync-state") == 0);
	CHECK(strcmp(ha_msg_type_str(HA_MSG_STATE_FILE), "state-file") == 0);
	CHECK(strcmp(ha_msg_type_str(0xffff), "unknown") == 0);

	for (int r = 0; r < HA_ENV_REJ_MAX; r++) {
		CHECK(ha_env_reject_str(r) != NULL);
		CHECK(strcmp(ha_env_reject_str(r), "unknown") != 0);
		for (int q = 0; q < r; q++) {
			CHECK(strcmp(ha_env_reject_str(q), ha_env_reject_str(r)) != 0);
		}
	}
	CHECK(strcmp(ha_env_reject_str(HA_ENV_REJ_MAX), "unknown") == 0);
	CHECK(strcmp(ha_env_reject_str(HA_ENV_REJ_MAGIC), "bad magic") == 0);
}

static void test_round_trips(void)
{
	Hactl__Result res = HACTL__RESULT__INIT;
	Hactl__StatusRequest sreq = HACTL__STATUS_REQUEST__INIT;
	Hactl__HostUsage usage = HACTL__HOST_USAGE__INIT;
	Hactl__NodeStatus ns = HACTL__NODE_STATUS__INIT;
	Hactl__NodeStatus *nss[] = { &ns, &ns };
	Hactl__StatusReply srep = HACTL__STATUS_REPLY__INIT;
	Hactl__MaintenanceChange mc = HACTL__MAINTENANCE_CHANGE__INIT;
	Hactl__Change change = HACTL__CHANGE__INIT;
	Hactl__CpgCommit commit = HACTL__CPG_COMMIT__INIT;
	Hactl__NodeRecord nr = HACTL__NODE_RECORD__INIT;
	Hactl__NodeRecord *nrs[] = { &nr };
	Hactl__ClusterState cs = HACTL__CLUSTER_STATE__INIT;
	Hactl__StateFile sf = HACTL__STATE_FILE__INIT;
	Hactl__CpgHello hello = HACTL__CPG_HELLO__INIT;
	ProtobufCMessage *m;

	res.code = -ENOENT;
	res.message = "no such node";
	res.has_seq = 1;
	res.seq = UINT64_MAX;
	m = round_trip(HA_MSG_RESULT, &res.base);
	if (m) {
		Hactl__Result *r = (Hactl__Result *)m;

		CHECK_EQ_INT(r->code, -ENOENT);
		CHECK(strcmp(r->message, "no such node") == 0);
		CHECK(r->has_seq && r->seq == UINT64_MAX);
		ha_env_msg_free(m);
	}

	/* Everything optional and absent: a zero-length body. */
	m = round_trip(HA_MSG_STATUS_REQUEST, &sreq.base);
	if (m) {
		CHECK(((Hactl__StatusRequest *)m)->node == NULL);
		ha_env_msg_free(m);
	}
	sreq.node = "node2";
	m = round_trip(HA_MSG_STATUS_REQUEST, &sreq.base);
	if (m) {
		CHECK(strcmp(((Hactl__StatusRequest *)m)->node, "node2") == 0);
		ha_env_msg_free(m);
	}

	usage.has_cpu_permille = 1;
	usage.cpu_permille = 999;
	ns.id = 3;
	ns.name = "node3";
	ns.state = "maintenance";
	ns.usage = &usage;
	srep.quorate = 1;
	srep.leader = "node1";
	srep.n_nodes = 2;
	srep.nodes = nss;
	srep.has_rx_rejected = 1;
	srep.rx_rejected = 5;
	m = round_trip(HA_MSG_STATUS_REPLY, &srep.base);
	if (m) {
		Hactl__StatusReply *r = (Hactl__StatusReply *)m;

		CHECK(r->quorate);
		CHECK(strcmp(r->leader, "node1") == 0);
		CHECK_EQ_INT(r->n_nodes, 2);
		CHECK(strcmp(r->nodes[1]->state, "maintenance") == 0);
		CHECK(r->nodes[1]->usage && r->nodes[1]->usage->cpu_permille == 999);
		CHECK(r->has_rx_rejected && r->rx_rejected == 5);
		CHECK(!r->has_seq);
		ha_env_msg_free(m);
	}

	mc.node = "node2";
	mc.on = 1;
	change.kind_case = HACTL__CHANGE__KIND_MAINTENANCE;
	change.maintenance = &mc;
	commit.leader = 1;
	commit.seq = 77;
	commit.change = &change;
	m = round_trip(HA_MSG_CPG_COMMIT, &commit.base);
	if (m) {
		Hactl__CpgCommit *c = (Hactl__CpgCommit *)m;

		CHECK_EQ_INT(c->seq, 77);
		CHECK(!c->has_origin);
		CHECK_EQ_INT(c->change->kind_case, HACTL__CHANGE__KIND_MAINTENANCE);
		CHECK(strcmp(c->change->maintenance->node, "node2") == 0);
		CHECK(c->change->maintenance->on);
		ha_env_msg_free(m);
	}

	nr.id = 9;
	nr.has_fenced = 1;
	nr.fenced = 1;
	cs.has_seq = 1;
	cs.seq = 12;
	cs.n_nodes = 1;
	cs.nodes = nrs;
	sf.state = &cs;
	m = round_trip(HA_MSG_STATE_FILE, &sf.base);
	if (m) {
		Hactl__StateFile *s = (Hactl__StateFile *)m;

		CHECK_EQ_INT(s->state->seq, 12);
		CHECK_EQ_INT(s->state->n_nodes, 1);
		CHECK_EQ_INT(s->state->nodes[0]->id, 9);
		CHECK(s->state->nodes[0]->fenced);
		ha_env_msg_free(m);
	}

	hello.node = 1;
	hello.proto_min = HA_PROTO_MIN;
	hello.proto_max = HA_PROTO_MAX;
	hello.has_features = 1;
	hello.features = 0x8000000000000001ull;
	m = round_trip(HA_MSG_CPG_HELLO, &hello.base);
	if (m) {
		CHECK(((Hactl__CpgHello *)m)->features == 0x8000000000000001ull);
		ha_env_msg_free(m);
	}
}

/* 1 when @buf decodes on @mask. */
static int decodes_ok(const uint8_t *buf, size_t len, unsigned mask)
{
	ProtobufCMessage *m = NULL;
	enum ha_msg_type t;
	int rc = ha_env_decode(buf, len, mask, NULL, &t, &m, NULL);

	ha_env_msg_free(m);
	return rc == 0;
}

/* Decodes @buf with @mask; checks that exactly @reason was counted, the
 * error code, the reason text and that no message came back. */
static void expect_reject(const uint8_t *buf, size_t len, unsigned mask,
			  enum ha_env_reject reason, int line)
{
	struct ha_env_stats st = { 0 };
	ProtobufCMessage *m = (ProtobufCMessage *)&st; /* must be reset */
	enum ha_msg_type type = HA_MSG_NONE;
	const char *why = NULL;
	int rc = ha_env_decode(buf, len, mask, &st, &type, &m, &why);
	int want = reason == HA_ENV_REJ_TOO_LONG ? -EMSGSIZE : -EBADMSG;

	if (rc != want || st.rejected[reason] != 1) {
		fprintf(stderr, "%s:%d: expected reject '%s', got rc %d (%s)\n",
			__FILE__, line, ha_env_reject_str(reason), rc,
			why ? why : "no reason");
	}
	CHECK_EQ_INT(rc, want);
	CHECK_EQ_INT(st.rejected[reason], 1);
	CHECK_EQ_INT(ha_env_stats_rejected(&st), 1);
	CHECK_EQ_INT(st.decoded, 0);
	CHECK(m == NULL);
	CHECK(why != NULL && strcmp(why, ha_env_reject_str(reason)) == 0);
	if (rc == 0) {
		ha_env_msg_free(m);
	}
}

#define EXPECT_REJECT(buf, len, mask, reason)                                  \
	expect_reject(buf, len, mask, reason, __LINE__)

static void test_rejections(void)
{
	Hactl__StatusRequest sreq = HACTL__STATUS_REQUEST__INIT;
	uint8_t *good = NULL, *b;
	size_t len = 0;
	uint8_t hdr[HA_ENV_HDR_LEN + 8];

	sreq.node = "node1";
	CHECK_EQ_INT(ha_env_encode(HA_MSG_STATUS_REQUEST, &sreq.base, &good, &len), 0);
	if (good == NULL) {
		return;
	}
	b = malloc(len + 1);
	CHECK(b != NULL);
	if (b == NULL) {
		free(good);
		return;
	}

	/* short: nothing, a NULL buffer, one byte less than the header */
	EXPECT_REJECT(good, 0, HA_CHAN_IPC, HA_ENV_REJ_SHORT);
	EXPECT_REJECT(NULL, 100, HA_CHAN_IPC, HA_ENV_REJ_SHORT);
	EXPECT_REJECT(good, HA_ENV_HDR_LEN - 1, HA_CHAN_IPC, HA_ENV_REJ_SHORT);

	/* magic: any byte of it, and its big-endian spelling */
	for (int i = 0; i < 4; i++) {
		memcpy(b, good, len);
		b[i] ^= 0x20;
		EXPECT_REJECT(b, len, HA_CHAN_IPC, HA_ENV_REJ_MAGIC);
	}
	memcpy(b, good, len);
	memcpy(b, "LCAH", 4);
	EXPECT_REJECT(b, len, HA_CHAN_IPC, HA_ENV_REJ_MAGIC);

	/* version: below min, above max, byte-swapped */
	memcpy(b, good, len);
	put_le16(b + 4, HA_PROTO_MIN - 1);
	EXPECT_REJECT(b, len, HA_CHAN_IPC, HA_ENV_REJ_VERSION);
	put_le16(b + 4, HA_PROTO_MAX + 1);
	EXPECT_REJECT(b, len, HA_CHAN_IPC, HA_ENV_REJ_VERSION);
	put_le16(b + 4, (uint16_t)(HA_PROTO_MAX << 8));
	EXPECT_REJECT(b, len, HA_CHAN_IPC, HA_ENV_REJ_VERSION);

	/* type: none, unregistered, past the end, the largest */
	memcpy(b, good, len);
	put_le16(b + 6, HA_MSG_NONE);
	EXPECT_REJECT(b, len, ALL_CHANNELS, HA_ENV_REJ_TYPE);
	put_le16(b + 6, (uint16_t)unused_type());
	EXPECT_REJECT(b, len, ALL_CHANNELS, HA_ENV_REJ_TYPE);
	put_le16(b + 6, HA_MSG_MAX);
	EXPECT_REJECT(b, len, ALL_CHANNELS, HA_ENV_REJ_TYPE);
	put_le16(b + 6, 0xffff);
	EXPECT_REJECT(b, len, ALL_CHANNELS, HA_ENV_REJ_TYPE);

	/* wrong channel: a request is IPC only; no channel at all */
	EXPECT_REJECT(good, len, HA_CHAN_REPLY, HA_ENV_REJ_TYPE);
	EXPECT_REJECT(good, len, HA_CHAN_CPG | HA_CHAN_FILE, HA_ENV_REJ_TYPE);
	EXPECT_REJECT(good, len, 0, HA_ENV_REJ_TYPE);

	/* flags: lowest and highest bit */
	memcpy(b, good, len);
	put_le32(b + 12, 1);
	EXPECT_REJECT(b, len, HA_CHAN_IPC, HA_ENV_REJ_FLAGS);
	put_le32(b + 12, 0x80000000u);
	EXPECT_REJECT(b, len, HA_CHAN_IPC, HA_ENV_REJ_FLAGS);

	/* truncated: one byte short of the body */
	EXPECT_REJECT(good, len - 1, HA_CHAN_IPC, HA_ENV_REJ_TRUNCATED);
	EXPECT_REJECT(good, HA_ENV_HDR_LEN, HA_CHAN_IPC, HA_ENV_REJ_TRUNCATED);

	/* trailing: one byte more than the length says */
	memcpy(b, good, len);
	b[len] = 0;
	EXPECT_REJECT(b, len + 1, HA_CHAN_IPC, HA_ENV_REJ_TRAILING);
	put_le32(b + 8, get_le32(good + 8) - 1);
	EXPECT_REJECT(b, len, HA_CHAN_IPC, HA_ENV_REJ_TRAILING);

	/* body: 0xff is a field with wire type 7, which does not exist */
	put_hdr(hdr, HA_ENV_MAGIC, HA_PROTO_MAX, HA_MSG_STATUS_REQUEST, 8, 0);
	memset(hdr + HA_ENV_HDR_LEN, 0xff, 8);
	EXPECT_REJECT(hdr, sizeof(hdr), HA_CHAN_IPC, HA_ENV_REJ_BODY);
	/* a string field (1, wire type 2) claiming more bytes than follow */
	hdr[16] = 0x0a;
	hdr[17] = 0x7f;
	EXPECT_REJECT(hdr, sizeof(hdr), HA_CHAN_IPC, HA_ENV_REJ_BODY);
	/* a Result without its required code */
	put_hdr(hdr, HA_ENV_MAGIC, HA_PROTO_MAX, HA_MSG_RESULT, 0, 0);
	EXPECT_REJECT(hdr, HA_ENV_HDR_LEN, HA_CHAN_REPLY, HA_ENV_REJ_BODY);
	/* field number 0, which protobuf-c takes in a two-byte tag */
	put_hdr(hdr, HA_ENV_MAGIC, HA_PROTO_MAX, HA_MSG_STATUS_REQUEST, 3, 0);
	memcpy(hdr + HA_ENV_HDR_LEN, "\x80\x00\x00", 3);
	EXPECT_REJECT(hdr, HA_ENV_HDR_LEN + 3, HA_CHAN_IPC, HA_ENV_REJ_BODY);
	/* ... also below the top: a message, a repeated one, a oneof */
	{
		static const uint8_t nested[] = { 0x08, 0x01, 0x12, 0x03, 0x80, 0x00, 0x00 };
		static const uint8_t repeated[] = { 0x0a, 0x07, 0x12, 0x05, 0x08,
						    0x01, 0x80, 0x00, 0x00 };
		static const uint8_t oneof[] = { 0x08, 0x01, 0x10, 0x01, 0x1a, 0x0a,
						 0x0a, 0x08, 0x0a, 0x01, 'n', 0x10,
						 0x01, 0x80, 0x00, 0x00 };
		uint8_t e[HA_ENV_HDR_LEN + 32];

		put_hdr(e, HA_ENV_MAGIC, HA_PROTO_MAX, HA_MSG_CPG_SYNC_STATE,
			sizeof(nested), 0);
		memcpy(e + HA_ENV_HDR_LEN, nested, sizeof(nested));
		EXPECT_REJECT(e, HA_ENV_HDR_LEN + sizeof(nested), HA_CHAN_CPG, HA_ENV_REJ_BODY);
		put_hdr(e, HA_ENV_MAGIC, HA_PROTO_MAX, HA_MSG_STATE_FILE,
			sizeof(repeated), 0);
		memcpy(e + HA_ENV_HDR_LEN, repeated, sizeof(repeated));
		EXPECT_REJECT(e, HA_ENV_HDR_LEN + sizeof(repeated), HA_CHAN_FILE, HA_ENV_REJ_BODY);
		put_hdr(e, HA_ENV_MAGIC, HA_PROTO_MAX, HA_MSG_CPG_REQUEST,
			sizeof(oneof), 0);
		memcpy(e + HA_ENV_HDR_LEN, oneof, sizeof(oneof));
		EXPECT_REJECT(e, HA_ENV_HDR_LEN + sizeof(oneof), HA_CHAN_CPG, HA_ENV_REJ_BODY);
		/* the same without the bad field decode */
		put_le32(e + 8, sizeof(oneof) - 3);
		e[HA_ENV_HDR_LEN + 5] = 0x07;
		e[HA_ENV_HDR_LEN + 7] = 0x05;
		CHECK_EQ_INT(decodes_ok(e, HA_ENV_HDR_LEN + sizeof(oneof) - 3, HA_CHAN_CPG), 1);
	}

	/* The checks run in the documented order: the first failing wins. */
	memcpy(b, good, len);
	b[0] ^= 1;
	put_le16(b + 4, 9);
	EXPECT_REJECT(b, len, HA_CHAN_IPC, HA_ENV_REJ_MAGIC);
	memcpy(b, good, len);
	put_le16(b + 4, 9);
	put_le16(b + 6, (uint16_t)unused_type());
	EXPECT_REJECT(b, len, HA_CHAN_IPC, HA_ENV_REJ_VERSION);
	memcpy(b, good, len);
	put_le32(b + 12, 4);
	EXPECT_REJECT(b, len, HA_CHAN_CPG, HA_ENV_REJ_TYPE);
	put_le32(b + 8, 0xffffffffu);
	EXPECT_REJECT(b, len, HA_CHAN_IPC, HA_ENV_REJ_FLAGS);
	put_le32(b + 12, 0);
	EXPECT_REJECT(b, len - 1, HA_CHAN_IPC, HA_ENV_REJ_TOO_LONG);

	free(b);
	free(good);
}

/* The length is checked against the type's bound before anything else is
 * looked at or allocated: a 16-byte buffer claiming 4 GiB is "too long",
 * not "truncated". */
static void test_length_bound_first(void)
{
	uint8_t hdr[HA_ENV_HDR_LEN];
	const struct ha_msg_desc *d = ha_msg_desc_get(HA_MSG_AGENT_USAGE);

	put_hdr(hdr, HA_ENV_MAGIC, HA_PROTO_MAX, HA_MSG_AGENT_USAGE, 0xffffffffu, 0);
	EXPECT_REJECT(hdr, sizeof(hdr), HA_CHAN_IPC, HA_ENV_REJ_TOO_LONG);
	put_le32(hdr + 8, d->max_len + 1);
	EXPECT_REJECT(hdr, sizeof(hdr), HA_CHAN_IPC, HA_ENV_REJ_TOO_LONG);
	put_le32(hdr + 8, d->max_len);
	EXPECT_REJECT(hdr, sizeof(hdr), HA_CHAN_IPC, HA_ENV_REJ_TRUNCATED);

	/* The largest type: its own bound is the global one. */
	d = ha_msg_desc_get(HA_MSG_STATE_FILE);
	CHECK_EQ_INT(d->max_len, HA_ENV_MAX_BODY);
	put_hdr(hdr, HA_ENV_MAGIC, HA_PROTO_MAX, HA_MSG_STATE_FILE,
		HA_ENV_MAX_BODY + 1, 0);
	EXPECT_REJECT(hdr, sizeof(hdr), HA_CHAN_FILE, HA_ENV_REJ_TOO_LONG);
	put_le32(hdr + 8, HA_ENV_MAX_BODY);
	EXPECT_REJECT(hdr, sizeof(hdr), HA_CHAN_FILE, HA_ENV_REJ_TRUNCATED);
}

static void test_counters(void)
{
	struct ha_env_stats st = { 0 };
	Hactl__AgentUsage au = HACTL__AGENT_USAGE__INIT;
	Hactl__HostUsage hu = HACTL__HOST_USAGE__INIT;
	ProtobufCMessage *m;
	enum ha_msg_type t;
	uint8_t *buf = NULL;
	size_t len = 0;

	au.usage = &hu;
	CHECK_EQ_INT(ha_env_encode(HA_MSG_AGENT_USAGE, &au.base, &buf, &len), 0);
	if (buf == NULL) {
		return;
	}
	for (int i = 0; i < 3; i++) {
		CHECK_EQ_INT(ha_env_decode(buf, len, HA_CHAN_IPC, &st, &t, &m, NULL), 0);
		ha_env_msg_free(m);
	}
	CHECK_EQ_INT(ha_env_decode(buf, len, HA_CHAN_CPG, &st, &t, &m, NULL), -EBADMSG);
	CHECK_EQ_INT(ha_env_decode(buf, 3, HA_CHAN_IPC, &st, &t, &m, NULL), -EBADMSG);
	CHECK_EQ_INT(ha_env_decode(buf, 3, HA_CHAN_IPC, &st, &t, &m, NULL), -EBADMSG);
	/* without stats or why: same verdict, nothing to count */
	CHECK_EQ_INT(ha_env_decode(buf, 3, HA_CHAN_IPC, NULL, &t, &m, NULL), -EBADMSG);
	CHECK_EQ_INT(ha_env_decode(buf, len, HA_CHAN_IPC, NULL, &t, &m, NULL), 0);
	ha_env_msg_free(m);
	CHECK_EQ_INT(st.decoded, 3);
	CHECK_EQ_INT(st.rejected[HA_ENV_REJ_TYPE], 1);
	CHECK_EQ_INT(st.rejected[HA_ENV_REJ_SHORT], 2);
	CHECK_EQ_INT(ha_env_stats_rejected(&st), 3);
	ha_env_msg_free(NULL);
	free(buf);
}

static void test_encode_errors(void)
{
	Hactl__StatusRequest sreq = HACTL__STATUS_REQUEST__INIT;
	Hactl__CpgSyncState sync = HACTL__CPG_SYNC_STATE__INIT;
	Hactl__NodeStatus ns = HACTL__NODE_STATUS__INIT;
	Hactl__NodeStatus *nss[] = { &ns };
	Hactl__StatusReply srep = HACTL__STATUS_REPLY__INIT;
	uint8_t *buf = NULL;
	size_t len = 12345;

	/* descriptor of another type */
	CHECK_EQ_INT(ha_env_encode(HA_MSG_STATUS_REPLY, &sreq.base, &buf, &len), -EINVAL);
	CHECK_EQ_INT(ha_env_encode(HA_MSG_STATE_FILE, &sreq.base, &buf, &len), -EINVAL);
	/* no such type, no message */
	CHECK_EQ_INT(ha_env_encode(HA_MSG_NONE, &sreq.base, &buf, &len), -EINVAL);
	CHECK_EQ_INT(ha_env_encode(unused_type(), &sreq.base, &buf, &len), -EINVAL);
	CHECK_EQ_INT(ha_env_encode(HA_MSG_MAX, &sreq.base, &buf, &len), -EINVAL);
	CHECK_EQ_INT(ha_env_encode(HA_MSG_STATUS_REQUEST, NULL, &buf, &len), -EINVAL);
	/* a required message or string left NULL */
	sync.sender = 1;
	CHECK_EQ_INT(ha_env_encode(HA_MSG_CPG_SYNC_STATE, &sync.base, &buf, &len), -EINVAL);
	ns.id = 1;
	ns.name = "node1"; /* state left NULL */
	srep.n_nodes = 1;
	srep.nodes = nss;
	CHECK_EQ_INT(ha_env_encode(HA_MSG_STATUS_REPLY, &srep.base, &buf, &len), -EINVAL);
	/* nothing handed out on failure */
	CHECK(buf == NULL);
	CHECK_EQ_INT(len, 12345);
}

/* A StatusRequest body is one string field: tag (1 byte), length varint
 * (2 bytes for 128..16383), the string. */
static void test_max_size(void)
{
	const struct ha_msg_desc *d = ha_msg_desc_get(HA_MSG_STATUS_REQUEST);
	Hactl__StatusRequest sreq = HACTL__STATUS_REQUEST__INIT;
	char *node = malloc(d->max_len);
	uint8_t *buf = NULL;
	size_t len = 0;
	ProtobufCMessage *m = NULL;
	enum ha_msg_type t;

	CHECK(node != NULL);
	if (node == NULL) {
		return;
	}
	memset(node, 'n', d->max_len - 3);
	node[d->max_len - 3] = 0;
	sreq.node = node;
	CHECK_EQ_INT(protobuf_c_message_get_packed_size(&sreq.base), d->max_len);
	CHECK_EQ_INT(ha_env_encode(HA_MSG_STATUS_REQUEST, &sreq.base, &buf, &len), 0);
	CHECK_EQ_INT(len, HA_ENV_HDR_LEN + d->max_len);
	if (buf) {
		CHECK_EQ_INT(ha_env_decode(buf, len, HA_CHAN_IPC, NULL, &t, &m, NULL), 0);
		CHECK(m && strlen(((Hactl__StatusRequest *)m)->node) == d->max_len - 3);
		ha_env_msg_free(m);
		free(buf);
		buf = NULL;
	}

	memset(node, 'n', d->max_len - 2);
	node[d->max_len - 2] = 0;
	CHECK_EQ_INT(protobuf_c_message_get_packed_size(&sreq.base), d->max_len + 1);
	len = 0;
	CHECK_EQ_INT(ha_env_encode(HA_MSG_STATUS_REQUEST, &sreq.base, &buf, &len), -EMSGSIZE);
	CHECK(buf == NULL && len == 0);
	free(node);
}

/* A state file of exactly HA_ENV_MAX_BODY bytes encodes and decodes; one
 * byte more does not encode. */
static void test_global_max(void)
{
	Hactl__GuestRecord g = HACTL__GUEST_RECORD__INIT;
	Hactl__GuestRecord *gs[] = { &g };
	Hactl__ClusterState cs = HACTL__CLUSTER_STATE__INIT;
	Hactl__StateFile sf = HACTL__STATE_FILE__INIT;
	size_t def_len = HA_ENV_MAX_BODY - 64;
	uint8_t *def = calloc(1, HA_ENV_MAX_BODY);
	uint8_t *buf = NULL;
	size_t len = 0, packed;
	ProtobufCMessage *m = NULL;
	enum ha_msg_type t;

	CHECK(def != NULL);
	if (def == NULL) {
		return;
	}
	g.name = "big";
	g.has_definition = 1;
	g.definition.data = def;
	cs.n_guests = 1;
	cs.guests = gs;
	sf.state = &cs;
	/* Grow the definition until the body is exactly the bound. */
	for (int i = 0; i < 8; i++) {
		g.definition.len = def_len;
		packed = protobuf_c_message_get_packed_size(&sf.base);
		if (packed == HA_ENV_MAX_BODY) {
			break;
		}
		def_len += HA_ENV_MAX_BODY - packed;
	}
	CHECK_EQ_INT(protobuf_c_message_get_packed_size(&sf.base), HA_ENV_MAX_BODY);
	CHECK_EQ_INT(ha_env_encode(HA_MSG_STATE_FILE, &sf.base, &buf, &len), 0);
	if (buf) {
		CHECK_EQ_INT(len, HA_ENV_HDR_LEN + HA_ENV_MAX_BODY);
		CHECK_EQ_INT(ha_env_decode(buf, len, HA_CHAN_FILE, NULL, &t, &m, NULL), 0);
		CHECK(m != NULL && ((Hactl__StateFile *)m)->state->guests[0]->definition.len == def_len);
		ha_env_msg_free(m);
		free(buf);
		buf = NULL;
	}
	g.definition.len = def_len + 1;
	CHECK_EQ_INT(ha_env_encode(HA_MSG_STATE_FILE, &sf.base, &buf, &len), -EMSGSIZE);
	CHECK(buf == NULL);
	free(def);
}

/* A field this version does not know (a newer peer's optional field) is
 * accepted and kept, so forwarding a message does not lose it. */
static void test_unknown_field_kept(void)
{
	/* field 1 "node1", then field 99 varint 5 */
	static const uint8_t body[] = { 0x0a, 5, 'n', 'o', 'd', 'e', '1',
					0x98, 0x06, 0x05 };
	uint8_t buf[HA_ENV_HDR_LEN + sizeof(body)];
	uint8_t *again = NULL;
	size_t len = 0;
	ProtobufCMessage *m = NULL;
	enum ha_msg_type t;

	put_hdr(buf, HA_ENV_MAGIC, HA_PROTO_MAX, HA_MSG_STATUS_REQUEST,
		sizeof(body), 0);
	memcpy(buf + HA_ENV_HDR_LEN, body, sizeof(body));
	CHECK_EQ_INT(ha_env_decode(buf, sizeof(buf), HA_CHAN_IPC, NULL, &t, &m, NULL), 0);
	if (m == NULL) {
		return;
	}
	CHECK(strcmp(((Hactl__StatusRequest *)m)->node, "node1") == 0);
	CHECK_EQ_INT(ha_env_encode(HA_MSG_STATUS_REQUEST, m, &again, &len), 0);
	CHECK(len == sizeof(buf) && again && memcmp(again, buf, len) == 0);
	free(again);
	ha_env_msg_free(m);
}

int main(void)
{
	test_registry();
	test_round_trips();
	test_rejections();
	test_length_bound_first();
	test_counters();
	test_encode_errors();
	test_max_size();
	test_global_max();
	test_unknown_field_kept();
	return ha_test_done("test_envelope");
}
