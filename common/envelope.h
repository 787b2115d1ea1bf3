/*
 * envelope.h - the one framing used on every hactl channel.
 *
 * Wire layout, little-endian, 16 bytes then the protobuf-c body:
 *
 *   u32 magic    'HACL' (0x4c434148)
 *   u16 version  protocol version of the body (HA_PROTO_MIN..HA_PROTO_MAX)
 *   u16 type     enum ha_msg_type
 *   u32 length   body length in bytes; the buffer holds exactly that many
 *   u32 flags    reserved, must be 0
 *
 * Decoding checks the header, the length against the type's bound and the
 * buffer size before anything is allocated; unknown types, unknown flags,
 * short buffers and trailing bytes are rejected and counted.
 */
#ifndef HA_ENVELOPE_H
#define HA_ENVELOPE_H

#include <stddef.h>
#include <stdint.h>

#include <protobuf-c/protobuf-c.h>

#define HA_ENV_MAGIC 0x4c434148u /* "HACL" */
#define HA_ENV_HDR_LEN 16u
#define HA_PROTO_MIN 1u
#define HA_PROTO_MAX 1u
/* No message of any type may exceed this, whatever its own bound says. */
#define HA_ENV_MAX_BODY (16u * 1024u * 1024u)

/* Type ids are never reused; add new ones before HA_MSG_MAX. */
enum ha_msg_type {
	HA_MSG_NONE = 0,
	HA_MSG_RESULT = 1,
	HA_MSG_STATUS_REQUEST = 2,
	HA_MSG_STATUS_REPLY = 3,
	HA_MSG_CHANGE_REQUEST = 4,
	HA_MSG_AGENT_HELLO = 5,
	HA_MSG_AGENT_USAGE = 6,
	HA_MSG_AGENT_GUEST_REPORT = 7,
	HA_MSG_AGENT_GUESTS_REQUEST = 8,
	HA_MSG_AGENT_GUESTS_REPLY = 9,
	HA_MSG_AGENT_ACTION_REQUEST = 10, /* event: coordinator -> agent */
	HA_MSG_AGENT_ACTION_DONE = 11,
	HA_MSG_ACTION_REQUEST = 12,
	HA_MSG_FENCE_REQUEST = 13,
	HA_MSG_BALANCE_REQUEST = 14,
	HA_MSG_BALANCE_REPLY = 15,
	HA_MSG_CPG_HELLO = 16,
	HA_MSG_CPG_SYNC_STATE = 17,
	HA_MSG_CPG_FACTS = 18,
	HA_MSG_CPG_USAGE = 19,
	HA_MSG_CPG_REQUEST = 20,
	HA_MSG_CPG_COMMIT = 21,
	HA_MSG_CPG_REJECT = 22,
	HA_MSG_CPG_GUEST_STATUS = 23,
	HA_MSG_CPG_ACTION = 24,
	HA_MSG_CPG_ACTION_RESULT = 25,
	HA_MSG_CPG_FENCE_STATUS = 26,
	HA_MSG_STATE_FILE = 32,
	HA_MSG_UNBLOCK_REQUEST = 33,
	HA_MSG_CPG_SYNC_CHUNK = 43,
	HA_MSG_MAX
};

/* Which channel a type may arrive on; a type seen on a wrong channel is
 * rejected like an unknown one. */
enum ha_channel {
	HA_CHAN_IPC = 1u << 0,   /* hactl or agent -> coordinator */
	HA_CHAN_REPLY = 1u << 1, /* coordinator -> hactl or agent */
	HA_CHAN_CPG = 1u << 2,   /* coordinator <-> coordinator */
	HA_CHAN_FILE = 1u << 3,  /* files on disk */
};

/* Why a buffer was rejected; each has a counter. */
enum ha_env_reject {
	HA_ENV_REJ_SHORT = 0,   /* fewer bytes than the header */
	HA_ENV_REJ_MAGIC,
	HA_ENV_REJ_VERSION,
	HA_ENV_REJ_TYPE,        /* unknown type or wrong channel */
	HA_ENV_REJ_FLAGS,
	HA_ENV_REJ_TOO_LONG,    /* length above the type's bound */
	HA_ENV_REJ_TRUNCATED,   /* buffer shorter than header + length */
	HA_ENV_REJ_TRAILING,    /* buffer longer than header + length */
	HA_ENV_REJ_BODY,        /* protobuf body did not unpack, or has field 0 */
	HA_ENV_REJ_MAX
};

struct ha_msg_desc {
	enum ha_msg_type type;
	const char *name;
	const ProtobufCMessageDescriptor *desc;
	uint32_t max_len;
	unsigned channels; /* enum ha_channel bits */
};

struct ha_env_stats {
	uint64_t decoded;
	uint64_t rejected[HA_ENV_REJ_MAX];
};

/* Registry lookup; NULL for an unknown type. */
const struct ha_msg_desc *ha_msg_desc_get(unsigned type);
const char *ha_msg_type_str(unsigned type);
const char *ha_env_reject_str(enum ha_env_reject r);

/*
 * Encode @msg as @type. On success *out is a malloc'd buffer of *out_len
 * bytes, freed by the caller with free(). Returns 0, -EINVAL when @msg's
 * descriptor does not match @type or a required field is NULL, -EMSGSIZE
 * above the type's bound, -ENOMEM.
 */
int ha_env_encode(enum ha_msg_type type, const ProtobufCMessage *msg,
		  uint8_t **out, size_t *out_len);

/*
 * Decode one envelope that fills @buf exactly. @channels restricts the
 * acceptable types (enum ha_channel bits). On success *type is set and
 * *msg holds the unpacked body, freed by the caller with ha_env_msg_free().
 * On failure returns -EBADMSG (or -EMSGSIZE for an over-long length),
 * counts the reason in @stats (may be NULL) and, when @why is not NULL,
 * stores a static description of the reason.
 */
int ha_env_decode(const void *buf, size_t len, unsigned channels,
		  struct ha_env_stats *stats, enum ha_msg_type *type,
		  ProtobufCMessage **msg, const char **why);

/* Frees what ha_env_decode() returned; accepts NULL. */
void ha_env_msg_free(ProtobufCMessage *msg);

uint64_t ha_env_stats_rejected(const struct ha_env_stats *stats);

#endif
