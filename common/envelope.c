/*
 * envelope.c - registry of message types and the envelope codec.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "envelope.h"
#include "proto/hactl.pb-c.h"

#define KIB 1024u
#define MIB (1024u * 1024u)

/* type -> descriptor, bound, channels (CRIU cr_pb_descs, corosync
 * exec_engine[]). Bounds are the largest body a sane peer sends; a state
 * transfer is the largest (all nodes and guests). */
static const struct ha_msg_desc registry[HA_MSG_MAX] = {
	[HA_MSG_RESULT] = { HA_MSG_RESULT, "result", &hactl__result__descriptor,
			    64 * KIB, HA_CHAN_REPLY },
	[HA_MSG_STATUS_REQUEST] = { HA_MSG_STATUS_REQUEST, "status-request",
				    &hactl__status_request__descriptor, 4 * KIB,
				    HA_CHAN_IPC },
	[HA_MSG_STATUS_REPLY] = { HA_MSG_STATUS_REPLY, "status-reply",
				  &hactl__status_reply__descriptor, 8 * MIB,
				  HA_CHAN_REPLY },
	[HA_MSG_CHANGE_REQUEST] = { HA_MSG_CHANGE_REQUEST, "change-request",
				    &hactl__change_request__descriptor, 256 * KIB,
				    HA_CHAN_IPC },
	[HA_MSG_AGENT_HELLO] = { HA_MSG_AGENT_HELLO, "agent-hello",
				 &hactl__agent_hello__descriptor, 64 * KIB,
				 HA_CHAN_IPC },
	[HA_MSG_AGENT_USAGE] = { HA_MSG_AGENT_USAGE, "agent-usage",
				 &hactl__agent_usage__descriptor, 4 * KIB,
				 HA_CHAN_IPC },
	[HA_MSG_AGENT_GUEST_REPORT] = { HA_MSG_AGENT_GUEST_REPORT, "agent-guest-report",
					&hactl__agent_guest_report__descriptor,
					1 * MIB, HA_CHAN_IPC },
	[HA_MSG_AGENT_GUESTS_REQUEST] = { HA_MSG_AGENT_GUESTS_REQUEST,
					  "agent-guests-request",
					  &hactl__agent_guests_request__descriptor,
					  MIB - 64, HA_CHAN_IPC }, /* held names: one IPC request */
	[HA_MSG_AGENT_GUESTS_REPLY] = { HA_MSG_AGENT_GUESTS_REPLY,
					"agent-guests-reply",
					&hactl__agent_guests_reply__descriptor,
					8 * MIB, HA_CHAN_REPLY },
	[HA_MSG_AGENT_ACTION_REQUEST] = { HA_MSG_AGENT_ACTION_REQUEST,
					  "agent-action-request",
					  &hactl__agent_action_request__descriptor,
					  64 * KIB, HA_CHAN_REPLY },
	[HA_MSG_AGENT_ACTION_DONE] = { HA_MSG_AGENT_ACTION_DONE, "agent-action-done",
				       &hactl__agent_action_done__descriptor,
				       64 * KIB, HA_CHAN_IPC },
	[HA_MSG_ACTION_REQUEST] = { HA_MSG_ACTION_REQUEST, "action-request",
				    &hactl__action_request__descriptor, 64 * KIB,
				    HA_CHAN_IPC },
	[HA_MSG_FENCE_REQUEST] = { HA_MSG_FENCE_REQUEST, "fence-request",
				   &hactl__fence_request__descriptor, 4 * KIB,
				   HA_CHAN_IPC },
	[HA_MSG_BALANCE_REQUEST] = { HA_MSG_BALANCE_REQUEST, "balance-request",
				     &hactl__balance_request__descriptor, 4 * KIB,
				     HA_CHAN_IPC },
	[HA_MSG_BALANCE_REPLY] = { HA_MSG_BALANCE_REPLY, "balance-reply",
				   &hactl__balance_reply__descriptor, 8 * MIB,
				   HA_CHAN_REPLY },
	[HA_MSG_CPG_FENCE_STATUS] = { HA_MSG_CPG_FENCE_STATUS, "cpg-fence-status",
				      &hactl__cpg_fence_status__descriptor, 4 * KIB,
				      HA_CHAN_CPG },
	[HA_MSG_CPG_GUEST_STATUS] = { HA_MSG_CPG_GUEST_STATUS, "cpg-guest-status",
				      &hactl__cpg_guest_status__descriptor,
				      1 * MIB, HA_CHAN_CPG },
	[HA_MSG_CPG_ACTION] = { HA_MSG_CPG_ACTION, "cpg-action",
				&hactl__cpg_action__descriptor, 64 * KIB,
				HA_CHAN_CPG },
	[HA_MSG_CPG_ACTION_RESULT] = { HA_MSG_CPG_ACTION_RESULT, "cpg-action-result",
				       &hactl__cpg_action_result__descriptor,
				       64 * KIB, HA_CHAN_CPG },
	[HA_MSG_CPG_HELLO] = { HA_MSG_CPG_HELLO, "cpg-hello",
			       &hactl__cpg_hello__descriptor, 4 * KIB,
			       HA_CHAN_CPG },
	[HA_MSG_CPG_SYNC_STATE] = { HA_MSG_CPG_SYNC_STATE, "cpg-sync-state",
				    &hactl__cpg_sync_state__descriptor, 8 * MIB,
				    HA_CHAN_CPG },
	[HA_MSG_CPG_FACTS] = { HA_MSG_CPG_FACTS, "cpg-facts",
			       &hactl__cpg_facts__descriptor, 64 * KIB,
			       HA_CHAN_CPG },
	[HA_MSG_CPG_USAGE] = { HA_MSG_CPG_USAGE, "cpg-usage",
			       &hactl__cpg_usage__descriptor, 4 * KIB,
			       HA_CHAN_CPG },
	[HA_MSG_CPG_REQUEST] = { HA_MSG_CPG_REQUEST, "cpg-request",
				 &hactl__cpg_request__descriptor, 256 * KIB,
				 HA_CHAN_CPG },
	[HA_MSG_CPG_COMMIT] = { HA_MSG_CPG_COMMIT, "cpg-commit",
				&hactl__cpg_commit__descriptor, 256 * KIB,
				HA_CHAN_CPG },
	[HA_MSG_CPG_REJECT] = { HA_MSG_CPG_REJECT, "cpg-reject",
				&hactl__cpg_reject__descriptor, 64 * KIB,
				HA_CHAN_CPG },
	[HA_MSG_UNBLOCK_REQUEST] = { HA_MSG_UNBLOCK_REQUEST, "unblock-request",
				     &hactl__unblock_request__descriptor, 4 * KIB,
				     HA_CHAN_IPC },
	[HA_MSG_CPG_SYNC_CHUNK] = { HA_MSG_CPG_SYNC_CHUNK, "cpg-sync-chunk",
				    &hactl__cpg_sync_chunk__descriptor, 1 * MIB,
				    HA_CHAN_CPG },
	[HA_MSG_STATE_FILE] = { HA_MSG_STATE_FILE, "state-file",
				&hactl__state_file__descriptor, 16 * MIB,
				HA_CHAN_FILE },
};

static const char *const reject_names[HA_ENV_REJ_MAX] = {
	[HA_ENV_REJ_SHORT] = "shorter than the envelope header",
	[HA_ENV_REJ_MAGIC] = "bad magic",
	[HA_ENV_REJ_VERSION] = "unsupported protocol version",
	[HA_ENV_REJ_TYPE] = "unknown message type for this channel",
	[HA_ENV_REJ_FLAGS] = "unknown envelope flags",
	[HA_ENV_REJ_TOO_LONG] = "body longer than the type allows",
	[HA_ENV_REJ_TRUNCATED] = "body truncated",
	[HA_ENV_REJ_TRAILING] = "trailing bytes after the body",
	[HA_ENV_REJ_BODY] = "body does not decode",
};

const struct ha_msg_desc *ha_msg_desc_get(unsigned type)
{
	if (type >= HA_MSG_MAX || registry[type].desc == NULL) {
		return NULL;
	}
	return &registry[type];
}

const char *ha_msg_type_str(unsigned type)
{
	const struct ha_msg_desc *d = ha_msg_desc_get(type);

	return d ? d->name : "unknown";
}

const char *ha_env_reject_str(enum ha_env_reject r)
{
	if ((unsigned)r >= HA_ENV_REJ_MAX) {
		return "unknown";
	}
	return reject_names[r];
}

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

static uint16_t get_le16(const uint8_t *p)
{
	return (uint16_t)(p[0] | (p[1] << 8));
}

static uint32_t get_le32(const uint8_t *p)
{
	return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) |
	       ((uint32_t)p[3] << 24);
}

int ha_env_encode(enum ha_msg_type type, const ProtobufCMessage *msg,
		  uint8_t **out, size_t *out_len)
{
	const struct ha_msg_desc *d = ha_msg_desc_get(type);
	size_t body;
	uint8_t *buf;

	if (d == NULL || msg == NULL || msg->descriptor != d->desc) {
		return -EINVAL;
	}
	/* protobuf-c would pack a NULL required string or message as an
	 * empty one, which the peer accepts: refuse it here instead. */
	if (!protobuf_c_message_check(msg)) {
		return -EINVAL;
	}
	body = protobuf_c_message_get_packed_size(msg);
	if (body > d->max_len || body > HA_ENV_MAX_BODY) {
		return -EMSGSIZE;
	}
	buf = malloc(HA_ENV_HDR_LEN + body + 1); /* +1: malloc(0)-safe */
	if (buf == NULL) {
		return -ENOMEM;
	}
	put_le32(buf, HA_ENV_MAGIC);
	put_le16(buf + 4, HA_PROTO_MAX);
	put_le16(buf + 6, (uint16_t)type);
	put_le32(buf + 8, (uint32_t)body);
	put_le32(buf + 12, 0);
	protobuf_c_message_pack(msg, buf + HA_ENV_HDR_LEN);
	*out = buf;
	*out_len = HA_ENV_HDR_LEN + body;
	return 0;
}

static int reject(struct ha_env_stats *stats, enum ha_env_reject r,
		  const char **why, int err)
{
	if (stats) {
		stats->rejected[r]++;
	}
	if (why) {
		*why = reject_names[r];
	}
	return err;
}

/*
 * protobuf-c accepts field number 0 when its tag is spelled in more bytes
 * than needed (0x80 0x00), keeps it as an unknown field and writes it back
 * as 0x00, which it then refuses: a message that decodes but whose
 * re-encoding does not, poison for anything forwarded or persisted. Field
 * 0 is invalid in protobuf; refuse it at any depth. The schema is not
 * recursive, so neither is this walk beyond its depth.
 */
static int unknown_fields_ok(const ProtobufCMessage *m)
{
	const ProtobufCMessageDescriptor *d = m->descriptor;

	for (unsigned i = 0; i < m->n_unknown_fields; i++) {
		if (m->unknown_fields[i].tag == 0) {
			return 0;
		}
	}
	for (unsigned i = 0; i < d->n_fields; i++) {
		const ProtobufCFieldDescriptor *f = &d->fields[i];
		const char *base = (const char *)m;

		if (f->type != PROTOBUF_C_TYPE_MESSAGE) {
			continue;
		}
		if (f->label == PROTOBUF_C_LABEL_REPEATED) {
			size_t n = *(const size_t *)(base + f->quantifier_offset);
			ProtobufCMessage *const *v =
				*(ProtobufCMessage *const *const *)(base + f->offset);

			for (size_t j = 0; j < n; j++) {
				if (!unknown_fields_ok(v[j])) {
					return 0;
				}
			}
			continue;
		}
		if ((f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) &&
		    *(const uint32_t *)(base + f->quantifier_offset) != f->id) {
			continue;
		}
		if (*(ProtobufCMessage *const *)(base + f->offset) != NULL &&
		    !unknown_fields_ok(*(ProtobufCMessage *const *)(base + f->offset))) {
			return 0;
		}
	}
	return 1;
}

int ha_env_decode(const void *buf, size_t len, unsigned channels,
		  struct ha_env_stats *stats, enum ha_msg_type *type,
		  ProtobufCMessage **msg, const char **why)
{
	const uint8_t *p = buf;
	const struct ha_msg_desc *d;
	uint32_t body;
	uint16_t version;
	ProtobufCMessage *m;

	*msg = NULL;
	if (p == NULL || len < HA_ENV_HDR_LEN) {
		return reject(stats, HA_ENV_REJ_SHORT, why, -EBADMSG);
	}
	if (get_le32(p) != HA_ENV_MAGIC) {
		return reject(stats, HA_ENV_REJ_MAGIC, why, -EBADMSG);
	}
	version = get_le16(p + 4);
	if (version < HA_PROTO_MIN || version > HA_PROTO_MAX) {
		return reject(stats, HA_ENV_REJ_VERSION, why, -EBADMSG);
	}
	d = ha_msg_desc_get(get_le16(p + 6));
	if (d == NULL || (d->channels & channels) == 0) {
		return reject(stats, HA_ENV_REJ_TYPE, why, -EBADMSG);
	}
	if (get_le32(p + 12) != 0) {
		return reject(stats, HA_ENV_REJ_FLAGS, why, -EBADMSG);
	}
	body = get_le32(p + 8);
	if (body > d->max_len || body > HA_ENV_MAX_BODY) {
		return reject(stats, HA_ENV_REJ_TOO_LONG, why, -EMSGSIZE);
	}
	if (len - HA_ENV_HDR_LEN < body) {
		return reject(stats, HA_ENV_REJ_TRUNCATED, why, -EBADMSG);
	}
	if (len - HA_ENV_HDR_LEN > body) {
		return reject(stats, HA_ENV_REJ_TRAILING, why, -EBADMSG);
	}
	m = protobuf_c_message_unpack(d->desc, NULL, body, p + HA_ENV_HDR_LEN);
	if (m == NULL) {
		return reject(stats, HA_ENV_REJ_BODY, why, -EBADMSG);
	}
	if (!unknown_fields_ok(m)) {
		protobuf_c_message_free_unpacked(m, NULL);
		return reject(stats, HA_ENV_REJ_BODY, why, -EBADMSG);
	}
	if (stats) {
		stats->decoded++;
	}
	*type = d->type;
	*msg = m;
	return 0;
}

void ha_env_msg_free(ProtobufCMessage *msg)
{
	if (msg) {
		protobuf_c_message_free_unpacked(msg, NULL);
	}
}

uint64_t ha_env_stats_rejected(const struct ha_env_stats *stats)
{
	uint64_t n = 0;

	for (int i = 0; i < HA_ENV_REJ_MAX; i++) {
		n += stats->rejected[i];
	}
	return n;
}
