/*
 * gen_envelope_corpus.c - writes the seed corpus of fuzz_envelope into a
 * directory: one valid envelope of every registered type and the classic
 * broken ones (short, bad magic, version, type, flags, over-long length,
 * truncated, trailing bytes, garbage body, missing required field), and
 * valid bodies in non-canonical encodings.
 *
 *   cmake --build build --target gen_envelope_corpus
 *   build/tests/gen_envelope_corpus tests/fuzz/corpus/envelope
 *
 * The output is committed; rerun it when proto/hactl.proto grows a type.
 * It is deterministic, so rerunning does not churn the files.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "envelope.h"
#include "proto/hactl.pb-c.h"

static const char *out_dir;
static int failed;
static int seeded[HA_MSG_MAX]; /* types with a valid seed */

static void put(const char *name, const uint8_t *buf, size_t len)
{
	char path[4096];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", out_dir, name);
	f = fopen(path, "wb");
	if (f == NULL || fwrite(buf, 1, len, f) != len || fclose(f) != 0) {
		fprintf(stderr, "%s: %s\n", path, strerror(errno));
		failed = 1;
	}
}

static void set_le32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
	p[2] = (uint8_t)(v >> 16);
	p[3] = (uint8_t)(v >> 24);
}

/* Encodes @msg as @type; returns the malloc'd envelope or NULL. */
static uint8_t *enc(enum ha_msg_type type, const void *msg, size_t *len)
{
	uint8_t *buf = NULL;
	int rc = ha_env_encode(type, msg, &buf, len);

	if (rc < 0) {
		fprintf(stderr, "encode %s: %s\n", ha_msg_type_str(type),
			strerror(-rc));
		failed = 1;
		return NULL;
	}
	return buf;
}

/* An envelope around a hand-written body. */
static void put_body(const char *name, enum ha_msg_type type,
		     const uint8_t *body, size_t len)
{
	uint8_t buf[HA_ENV_HDR_LEN + 64];

	set_le32(buf, HA_ENV_MAGIC);
	buf[4] = (uint8_t)HA_PROTO_MAX;
	buf[5] = 0;
	buf[6] = (uint8_t)type;
	buf[7] = (uint8_t)(type >> 8);
	set_le32(buf + 8, (uint32_t)len);
	set_le32(buf + 12, 0);
	memcpy(buf + HA_ENV_HDR_LEN, body, len);
	put(name, buf, HA_ENV_HDR_LEN + len);
}

static void put_valid(const char *name, enum ha_msg_type type, const void *msg)
{
	size_t len;
	uint8_t *buf = enc(type, msg, &len);

	if (buf) {
		put(name, buf, len);
		free(buf);
		seeded[type] = 1;
	}
}

int main(int argc, char **argv)
{
	Hactl__HostFacts facts = HACTL__HOST_FACTS__INIT;
	Hactl__HostUsage usage = HACTL__HOST_USAGE__INIT;
	Hactl__NodeRecord node1 = HACTL__NODE_RECORD__INIT;
	Hactl__NodeRecord node2 = HACTL__NODE_RECORD__INIT;
	Hactl__NodeRecord *nodes[] = { &node1, &node2 };
	Hactl__GuestRecord guest = HACTL__GUEST_RECORD__INIT;
	Hactl__GuestRecord *guests[] = { &guest };
	Hactl__ClusterState state = HACTL__CLUSTER_STATE__INIT;
	Hactl__MaintenanceChange maint = HACTL__MAINTENANCE_CHANGE__INIT;
	Hactl__Change change = HACTL__CHANGE__INIT;
	Hactl__Result result = HACTL__RESULT__INIT;
	Hactl__StatusRequest sreq = HACTL__STATUS_REQUEST__INIT;
	Hactl__NodeStatus ns = HACTL__NODE_STATUS__INIT;
	Hactl__NodeStatus *nss[] = { &ns };
	Hactl__StatusReply srep = HACTL__STATUS_REPLY__INIT;
	Hactl__ChangeRequest creq = HACTL__CHANGE_REQUEST__INIT;
	Hactl__AgentHello ahello = HACTL__AGENT_HELLO__INIT;
	Hactl__AgentUsage ausage = HACTL__AGENT_USAGE__INIT;
	Hactl__CpgHello chello = HACTL__CPG_HELLO__INIT;
	Hactl__CpgSyncState csync = HACTL__CPG_SYNC_STATE__INIT;
	Hactl__CpgFacts cfacts = HACTL__CPG_FACTS__INIT;
	Hactl__CpgUsage cusage = HACTL__CPG_USAGE__INIT;
	Hactl__CpgRequest creqc = HACTL__CPG_REQUEST__INIT;
	Hactl__CpgCommit ccommit = HACTL__CPG_COMMIT__INIT;
	Hactl__CpgReject creject = HACTL__CPG_REJECT__INIT;
	Hactl__StateFile sfile = HACTL__STATE_FILE__INIT;
	char *rdma[] = { "mlx5_0", "mlx5_1" };
	char *drivers[] = { "container", "domain" };
	static const uint8_t definition[] = "[guest]\nname = web\ntype = container\n";
	uint8_t *buf, junk[64];
	size_t len;

	if (argc != 2) {
		fprintf(stderr, "usage: %s OUT_DIR\n", argv[0]);
		return 2;
	}
	out_dir = argv[1];

	facts.has_cpus = 1;
	facts.cpus = 16;
	facts.has_mem_total_kib = 1;
	facts.mem_total_kib = 64ull * 1024 * 1024;
	facts.has_kvm_present = 1;
	facts.kvm_present = 1;
	facts.has_criu_present = 1;
	facts.criu_present = 1;
	facts.criu_version = "4.2.1";
	facts.n_rdma_devices = 2;
	facts.rdma_devices = rdma;
	facts.kernel = "6.1.0-18-amd64";
	facts.hostname = "node1";
	usage.has_time_ms = 1;
	usage.time_ms = 1700000000000ull;
	usage.has_cpu_permille = 1;
	usage.cpu_permille = 250;
	usage.has_mem_used_kib = 1;
	usage.mem_used_kib = 1234567;
	usage.has_guests_running = 1;
	usage.guests_running = 3;
	node1.id = 1;
	node1.name = "node1";
	node1.facts = &facts;
	node1.usage = &usage;
	node2.id = 2;
	node2.name = "node2";
	node2.has_maintenance = 1;
	node2.maintenance = 1;
	guest.name = "web";
	guest.type = "container";
	guest.has_owner = 1;
	guest.owner = 1;
	guest.has_generation = 1;
	guest.generation = 4;
	guest.state = "running";
	guest.has_definition = 1;
	guest.definition.len = sizeof(definition) - 1;
	guest.definition.data = (uint8_t *)definition;
	state.has_seq = 1;
	state.seq = 42;
	state.n_nodes = 2;
	state.nodes = nodes;
	state.n_guests = 1;
	state.guests = guests;
	maint.node = "node2";
	maint.on = 1;
	change.kind_case = HACTL__CHANGE__KIND_MAINTENANCE;
	change.maintenance = &maint;

	result.code = -22;
	result.message = "no such node";
	result.has_seq = 1;
	result.seq = 42;
	put_valid("result", HA_MSG_RESULT, &result);

	put_valid("status-request-empty", HA_MSG_STATUS_REQUEST, &sreq);
	sreq.node = "node1";
	put_valid("status-request", HA_MSG_STATUS_REQUEST, &sreq);

	ns.id = 1;
	ns.name = "node1";
	ns.state = "online";
	ns.has_is_leader = 1;
	ns.is_leader = 1;
	ns.facts = &facts;
	ns.usage = &usage;
	srep.quorate = 1;
	srep.leader = "node1";
	srep.n_nodes = 1;
	srep.nodes = nss;
	srep.n_guests = 1;
	srep.guests = guests;
	srep.has_seq = 1;
	srep.seq = 42;
	put_valid("status-reply", HA_MSG_STATUS_REPLY, &srep);

	creq.change = &change;
	put_valid("change-request", HA_MSG_CHANGE_REQUEST, &creq);

	ahello.pid = 4242;
	ahello.facts = &facts;
	ahello.n_drivers = 2;
	ahello.drivers = drivers;
	put_valid("agent-hello", HA_MSG_AGENT_HELLO, &ahello);

	ausage.usage = &usage;
	put_valid("agent-usage", HA_MSG_AGENT_USAGE, &ausage);

	chello.node = 1;
	chello.proto_min = 1;
	chello.proto_max = 1;
	chello.version = "0.1.0";
	put_valid("cpg-hello", HA_MSG_CPG_HELLO, &chello);

	csync.sender = 2;
	csync.state = &state;
	put_valid("cpg-sync-state", HA_MSG_CPG_SYNC_STATE, &csync);

	cfacts.node = 1;
	cfacts.facts = &facts;
	put_valid("cpg-facts", HA_MSG_CPG_FACTS, &cfacts);

	cusage.node = 1;
	cusage.usage = &usage;
	put_valid("cpg-usage", HA_MSG_CPG_USAGE, &cusage);

	creqc.origin = 2;
	creqc.req_id = 7;
	creqc.change = &change;
	put_valid("cpg-request", HA_MSG_CPG_REQUEST, &creqc);

	ccommit.leader = 1;
	ccommit.seq = 43;
	ccommit.has_origin = 1;
	ccommit.origin = 2;
	ccommit.change = &change;
	put_valid("cpg-commit", HA_MSG_CPG_COMMIT, &ccommit);

	creject.leader = 1;
	creject.origin = 2;
	creject.req_id = 7;
	creject.code = -16;
	creject.reason = "busy";
	put_valid("cpg-reject", HA_MSG_CPG_REJECT, &creject);

	sfile.state = &state;
	sfile.has_writer = 1;
	sfile.writer = 1;
	put_valid("state-file", HA_MSG_STATE_FILE, &sfile);

	/* Broken ones, from a valid status reply. */
	buf = enc(HA_MSG_STATUS_REPLY, &srep, &len);
	if (buf == NULL) {
		return 1;
	}
	put("bad-short", buf, 8);
	put("bad-empty", buf, 0);
	put("bad-truncated", buf, len / 2);
	put("bad-header-only", buf, HA_ENV_HDR_LEN);
	buf = realloc(buf, len + 4);
	if (buf == NULL) {
		return 1;
	}
	memcpy(buf + len, "\0\0\0\0", 4);
	put("bad-trailing", buf, len + 4);
	buf[0] ^= 0xff;
	put("bad-magic", buf, len);
	buf[0] ^= 0xff;
	buf[4] = 2;
	put("bad-version", buf, len);
	buf[4] = 1;
	for (unsigned t = 1; t <= HA_MSG_MAX; t++) {
		if (ha_msg_desc_get(t) == NULL) { /* a gap, or past the end */
			buf[6] = (uint8_t)t;
			break;
		}
	}
	put("bad-type", buf, len);
	buf[6] = HA_MSG_STATUS_REPLY;
	buf[12] = 1;
	put("bad-flags", buf, len);
	buf[12] = 0;
	set_le32(buf + 8, 0xffffffffu);
	put("bad-too-long", buf, len);
	free(buf);

	/* A header that passes, then a body protobuf refuses. */
	memset(junk, 0xff, sizeof(junk));
	set_le32(junk, HA_ENV_MAGIC);
	junk[4] = 1;
	junk[5] = 0;
	junk[6] = HA_MSG_CPG_HELLO;
	junk[7] = 0;
	set_le32(junk + 8, sizeof(junk) - HA_ENV_HDR_LEN);
	set_le32(junk + 12, 0);
	put("bad-body", junk, sizeof(junk));
	/* Result with an empty body: the required code is missing. */
	junk[6] = HA_MSG_RESULT;
	set_le32(junk + 8, 0);
	put("bad-missing-required", junk, HA_ENV_HDR_LEN);

	/* Valid but not canonical: decode fine, re-encode differently. */
	put_body("odd-int32-in-5-bytes", HA_MSG_RESULT, /* code = -1 */
		 (const uint8_t[]){ 0x08, 0xff, 0xff, 0xff, 0xff, 0x0f }, 6);
	put_body("odd-singular-twice", HA_MSG_STATUS_REQUEST, /* node a, b */
		 (const uint8_t[]){ 0x0a, 1, 'a', 0x0a, 1, 'b' }, 6);
	put_body("odd-unknown-field", HA_MSG_STATUS_REQUEST, /* field 99 */
		 (const uint8_t[]){ 0x98, 0x06, 0x05, 0x0a, 1, 'n' }, 6);
	put_body("odd-overlong-varint", HA_MSG_CPG_HELLO, /* 1, 1, 1 */
		 (const uint8_t[]){ 0x08, 0x81, 0x80, 0x80, 0x80, 0x00,
				    0x10, 0x01, 0x18, 0x01 }, 10);

	/* Field number 0 in a two-byte tag, at the top, in a message, in a
	 * repeated message, in a oneof: protobuf-c accepts it, we must not
	 * (fuzz_envelope found it). */
	put_body("regress-field-zero", HA_MSG_STATUS_REQUEST,
		 (const uint8_t[]){ 0x80, 0x00, 0x00 }, 3);
	put_body("regress-field-zero-nested", HA_MSG_CPG_SYNC_STATE,
		 (const uint8_t[]){ 0x08, 0x01, 0x12, 0x03, 0x80, 0x00, 0x00 }, 7);
	put_body("regress-field-zero-repeated", HA_MSG_STATE_FILE,
		 (const uint8_t[]){ 0x0a, 0x07, 0x12, 0x05, 0x08, 0x01, 0x80,
				    0x00, 0x00 }, 9);
	put_body("regress-field-zero-oneof", HA_MSG_CPG_REQUEST,
		 (const uint8_t[]){ 0x08, 0x01, 0x10, 0x01, 0x1a, 0x0a, 0x0a,
				    0x08, 0x0a, 0x01, 'n', 0x10, 0x01, 0x80,
				    0x00, 0x00 }, 16);

	/* Every other registered type: an empty body, so that the fuzzer
	 * starts from each type id (add a real seed above when adding a
	 * type). */
	for (unsigned t = 0; t < HA_MSG_MAX; t++) {
		char name[96];

		if (ha_msg_desc_get(t) == NULL || seeded[t]) {
			continue;
		}
		snprintf(name, sizeof(name), "empty-%s", ha_msg_type_str(t));
		put_body(name, t, (const uint8_t[]){ 0 }, 0);
	}

	return failed;
}
