/*
 * fuzz_envelope.c - the envelope codec against hostile buffers.
 *
 * Every input is decoded twice over: as it is, and with its length field
 * fixed up to the bytes that follow the header (so that mutations of the
 * body reach protobuf instead of stopping at "truncated"). Each of those is
 * decoded under every channel mask. Invariants, any violation aborts:
 *
 *  - Exactly one thing is counted per call: decoded, or one reject reason;
 *    the reason is the first of the documented checks that fails (short,
 *    magic, version, type/channel, flags, too long, truncated, trailing,
 *    body), computed here independently from the header; the error is
 *    -EMSGSIZE for "too long" and -EBADMSG otherwise; *msg is NULL on
 *    failure; stats and why may be NULL.
 *  - Whether the body unpacks does not depend on the channel mask.
 *  - A decoded message re-encodes, unless its canonical encoding exceeds the
 *    type's bound (-EMSGSIZE then, and only then), and the re-encoding is a
 *    fixed point: decoding it and encoding again gives identical bytes.
 *
 * Byte identity with the input is NOT an invariant: protobuf accepts
 * non-canonical encodings (over-long varints, fields out of order, a
 * singular field repeated, a negative int32 in 5 bytes that re-encodes in
 * 10, packed repeated fields, strings cut at a NUL) and unknown fields are
 * kept but moved after the known ones. The re-encoding may therefore be
 * shorter or longer than the input, but it is canonical.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "envelope.h"
#include "fuzz.h"

#define ALL_CHANNELS (HA_CHAN_IPC | HA_CHAN_REPLY | HA_CHAN_CPG | HA_CHAN_FILE)
#define NO_REASON (-1)

#define FUZZ_ASSERT(cond)                                                      \
	do {                                                                   \
		if (!(cond)) {                                                 \
			fprintf(stderr, "%s:%d: invariant violated: %s\n",     \
				__FILE__, __LINE__, #cond);                    \
			abort();                                               \
		}                                                              \
	} while (0)

static uint32_t le16(const uint8_t *p)
{
	return (uint32_t)p[0] | ((uint32_t)p[1] << 8);
}

static uint32_t le32(const uint8_t *p)
{
	return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) |
	       ((uint32_t)p[3] << 24);
}

/* The documented order of checks, written out independently of
 * envelope.c. NO_REASON: the header passes and only the body decides. */
static int expected_reason(const uint8_t *p, size_t len, unsigned mask)
{
	const struct ha_msg_desc *d;
	uint32_t version, body;

	if (len < HA_ENV_HDR_LEN) {
		return HA_ENV_REJ_SHORT;
	}
	if (le32(p) != HA_ENV_MAGIC) {
		return HA_ENV_REJ_MAGIC;
	}
	version = le16(p + 4);
	if (version < HA_PROTO_MIN || version > HA_PROTO_MAX) {
		return HA_ENV_REJ_VERSION;
	}
	d = ha_msg_desc_get(le16(p + 6));
	if (d == NULL || (d->channels & mask) == 0) {
		return HA_ENV_REJ_TYPE;
	}
	if (le32(p + 12) != 0) {
		return HA_ENV_REJ_FLAGS;
	}
	body = le32(p + 8);
	if (body > d->max_len || body > HA_ENV_MAX_BODY) {
		return HA_ENV_REJ_TOO_LONG;
	}
	if (len - HA_ENV_HDR_LEN < body) {
		return HA_ENV_REJ_TRUNCATED;
	}
	if (len - HA_ENV_HDR_LEN > body) {
		return HA_ENV_REJ_TRAILING;
	}
	return NO_REASON;
}

/* One decode; checks the bookkeeping and returns the reject reason or
 * NO_REASON on success (then *msg is set and owned by the caller). */
static int decode_checked(const uint8_t *p, size_t len, unsigned mask,
			  enum ha_msg_type *type, ProtobufCMessage **msg)
{
	struct ha_env_stats st;
	const char *why = NULL;
	int reason = NO_REASON, counted = 0;
	int rc, want;

	memset(&st, 0, sizeof(st));
	*type = HA_MSG_NONE;
	rc = ha_env_decode(p, len, mask, &st, type, msg, &why);
	for (int r = 0; r < HA_ENV_REJ_MAX; r++) {
		FUZZ_ASSERT(st.rejected[r] <= 1);
		if (st.rejected[r]) {
			reason = r;
			counted++;
		}
	}
	FUZZ_ASSERT(ha_env_stats_rejected(&st) == (uint64_t)counted);
	want = expected_reason(p, len, mask);
	if (rc == 0) {
		const struct ha_msg_desc *d = ha_msg_desc_get(*type);

		FUZZ_ASSERT(want == NO_REASON);
		FUZZ_ASSERT(counted == 0 && st.decoded == 1);
		FUZZ_ASSERT(*msg != NULL && d != NULL);
		FUZZ_ASSERT((unsigned)*type == le16(p + 6));
		FUZZ_ASSERT((d->channels & mask) != 0);
		FUZZ_ASSERT((*msg)->descriptor == d->desc);
		return NO_REASON;
	}
	FUZZ_ASSERT(counted == 1 && st.decoded == 0 && *msg == NULL);
	if (want == NO_REASON) {
		FUZZ_ASSERT(reason == HA_ENV_REJ_BODY);
	} else {
		FUZZ_ASSERT(reason == want);
	}
	FUZZ_ASSERT(rc == (reason == HA_ENV_REJ_TOO_LONG ? -EMSGSIZE : -EBADMSG));
	FUZZ_ASSERT(why != NULL && strcmp(why, ha_env_reject_str(reason)) == 0);
	return reason;
}

static void check_round_trip(enum ha_msg_type type, const ProtobufCMessage *msg)
{
	const struct ha_msg_desc *d = ha_msg_desc_get(type);
	const struct ha_msg_desc *other;
	size_t packed = protobuf_c_message_get_packed_size(msg);
	uint8_t *a = NULL, *b = NULL;
	size_t alen = 0, blen = 0;
	ProtobufCMessage *m2 = NULL;
	enum ha_msg_type t2;
	int rc;

	/* Another registered type with another descriptor must refuse it. */
	for (unsigned t = (unsigned)type + 1; t != (unsigned)type;
	     t = (t + 1) % HA_MSG_MAX) {
		other = ha_msg_desc_get(t);
		if (other != NULL && other->desc != d->desc) {
			FUZZ_ASSERT(ha_env_encode(t, msg, &a, &alen) == -EINVAL);
			break;
		}
	}

	rc = ha_env_encode(type, msg, &a, &alen);
	if (packed > d->max_len) {
		FUZZ_ASSERT(rc == -EMSGSIZE);
		return;
	}
	FUZZ_ASSERT(rc == 0 && a != NULL);
	FUZZ_ASSERT(alen == HA_ENV_HDR_LEN + packed);
	FUZZ_ASSERT(le32(a) == HA_ENV_MAGIC && le16(a + 4) == HA_PROTO_MAX);
	FUZZ_ASSERT(le16(a + 6) == (uint32_t)type);
	FUZZ_ASSERT(le32(a + 8) == packed && le32(a + 12) == 0);

	rc = ha_env_decode(a, alen, d->channels, NULL, &t2, &m2, NULL);
	FUZZ_ASSERT(rc == 0 && t2 == type && m2 != NULL);
	FUZZ_ASSERT(protobuf_c_message_get_packed_size(m2) == packed);
	rc = ha_env_encode(t2, m2, &b, &blen);
	FUZZ_ASSERT(rc == 0);
	FUZZ_ASSERT(blen == alen && memcmp(a, b, alen) == 0);

	ha_env_msg_free(m2);
	free(a);
	free(b);
}

static void fuzz_buffer(const uint8_t *p, size_t len)
{
	enum ha_msg_type type, t;
	ProtobufCMessage *msg = NULL, *m;
	int all = decode_checked(p, len, ALL_CHANNELS, &type, &msg);

	/* Without stats and why, the same verdict. */
	FUZZ_ASSERT(ha_env_decode(p, len, ~0u, NULL, &t, &m, NULL) ==
		    (all == NO_REASON ? 0 : all == HA_ENV_REJ_TOO_LONG ? -EMSGSIZE : -EBADMSG));
	ha_env_msg_free(m);

	for (unsigned mask = 0; mask <= ALL_CHANNELS; mask++) {
		int r = decode_checked(p, len, mask, &t, &m);

		/* Past the header checks only the body decides, whatever the
		 * mask. */
		if (r == NO_REASON || r == HA_ENV_REJ_BODY) {
			FUZZ_ASSERT(r == all);
		}
		if (r == NO_REASON) {
			FUZZ_ASSERT(t == type);
		}
		ha_env_msg_free(m);
	}

	if (all == NO_REASON) {
		check_round_trip(type, msg);
	}
	ha_env_msg_free(msg);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint8_t *fixed;

	fuzz_buffer(data, size);

	if (size < HA_ENV_HDR_LEN || le32(data + 8) == size - HA_ENV_HDR_LEN ||
	    size - HA_ENV_HDR_LEN > UINT32_MAX) {
		return 0;
	}
	fixed = malloc(size);
	if (fixed == NULL) {
		return 0;
	}
	memcpy(fixed, data, size);
	fixed[8] = (uint8_t)(size - HA_ENV_HDR_LEN);
	fixed[9] = (uint8_t)((size - HA_ENV_HDR_LEN) >> 8);
	fixed[10] = (uint8_t)((size - HA_ENV_HDR_LEN) >> 16);
	fixed[11] = (uint8_t)((size - HA_ENV_HDR_LEN) >> 24);
	fuzz_buffer(fixed, size);
	free(fixed);
	return 0;
}
