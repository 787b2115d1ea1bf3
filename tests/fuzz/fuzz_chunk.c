/*
 * fuzz_chunk.c - the migration chunk header decoder, and the HELLO and
 * ABORT payload decoders, against hostile bytes.
 *
 * The input is a header (its first MIG_CHUNK_HDR_LEN bytes) and a payload
 * (the rest). The header is decoded as it is and again with its header
 * CRC fixed up (so that mutations reach the checks behind the CRC), each
 * under several receiver bounds. Invariants, any violation aborts:
 *
 *  - The reject reason is the first of the documented checks that fails
 *    (short, magic, version, header CRC, type, flags, reserved, too long),
 *    computed here independently; the error is -EPROTONOSUPPORT for the
 *    version, -EMSGSIZE for the length, -EBADMSG otherwise.
 *  - A decoded header has a known type, known flags only, and a length
 *    within both the receiver's bound and the type's; encoding it again
 *    gives the input's bytes exactly (the layout has no slack).
 *  - The payload decoded as HELLO succeeds only within the documented
 *    bounds; decoded as ABORT it gives an errno in 1..4095 and a
 *    NUL-terminated reason without control characters.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "mig_private.h"
#include "migration.h"

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

/* The payload bound of each type, written out from the documentation. */
static uint32_t type_bound(unsigned type)
{
	switch (type) {
	case MIG_CHUNK_HELLO:
		return 256;
	case MIG_CHUNK_AUTH:
		return 32;
	case MIG_CHUNK_CONTROL:
	case MIG_CHUNK_DATA:
		return 16u * 1024u * 1024u;
	case MIG_CHUNK_END:
		return 0;
	case MIG_CHUNK_ABORT:
		return 204;
	default:
		return 0;
	}
}

static int expected_reason(const uint8_t *p, size_t len, uint32_t max_len)
{
	uint32_t bound;

	if (len < 32) {
		return MIG_CHUNK_REJ_SHORT;
	}
	if (memcmp(p, "HAMG", 4) != 0) {
		return MIG_CHUNK_REJ_MAGIC;
	}
	if (p[4] != 1) {
		return MIG_CHUNK_REJ_VERSION;
	}
	if (le32(p + 28) != mig_crc32c(0, p, 28)) {
		return MIG_CHUNK_REJ_HDR_CRC;
	}
	if (p[5] < 1 || p[5] > 6) {
		return MIG_CHUNK_REJ_TYPE;
	}
	if (le16(p + 6) & ~3u) {
		return MIG_CHUNK_REJ_FLAGS;
	}
	if (le32(p + 24) != 0) {
		return MIG_CHUNK_REJ_RESERVED;
	}
	bound = type_bound(p[5]);
	if (bound > max_len) {
		bound = max_len;
	}
	if (le32(p + 8) > bound) {
		return MIG_CHUNK_REJ_TOO_LONG;
	}
	return -1;
}

static void check_header(const uint8_t *p, size_t len, uint32_t max_len)
{
	struct mig_chunk_hdr h;
	enum mig_chunk_reject r = MIG_CHUNK_REJ_MAX;
	int want = expected_reason(p, len, max_len);
	int rc = mig_chunk_hdr_decode(p, len, max_len, &h, &r);

	if (want >= 0) {
		FUZZ_ASSERT(rc < 0);
		FUZZ_ASSERT((int)r == want);
		FUZZ_ASSERT(rc == (r == MIG_CHUNK_REJ_VERSION   ? -EPROTONOSUPPORT
				   : r == MIG_CHUNK_REJ_TOO_LONG ? -EMSGSIZE
								 : -EBADMSG));
		FUZZ_ASSERT(strcmp(mig_chunk_reject_str(r), "unknown") != 0);
		/* and without a place for the reason */
		FUZZ_ASSERT(mig_chunk_hdr_decode(p, len, max_len, &h, NULL) == rc);
		return;
	}
	FUZZ_ASSERT(rc == 0);
	FUZZ_ASSERT(h.type > MIG_CHUNK_NONE && h.type < MIG_CHUNK_TYPE_MAX);
	FUZZ_ASSERT((h.flags & ~MIG_CHUNK_F_KNOWN) == 0);
	FUZZ_ASSERT(h.length <= max_len);
	FUZZ_ASSERT(h.length <= mig_chunk_type_max_len(h.type));
	FUZZ_ASSERT(h.length <= MIG_CHUNK_MAX_LEN);
	{
		uint8_t again[MIG_CHUNK_HDR_LEN];

		mig_chunk_hdr_encode(&h, again);
		FUZZ_ASSERT(memcmp(again, p, MIG_CHUNK_HDR_LEN) == 0);
	}
}

static void check_payloads(const uint8_t *p, size_t len)
{
	struct mig_hello h;
	const char *why = NULL;
	char reason[MIG_ABORT_REASON_MAX + 1];
	int e = 0;

	if (mig_hello_decode(p, len, &h, &why) == 0) {
		FUZZ_ASSERT(len >= MIG_HELLO_LEN && len <= MIG_HELLO_MAX);
		FUZZ_ASSERT(h.proto_min >= 1 && h.proto_min <= h.proto_max);
		FUZZ_ASSERT(h.max_chunk >= MIG_CHUNK_MIN_LEN &&
			    h.max_chunk <= MIG_CHUNK_MAX_LEN);
	} else {
		FUZZ_ASSERT(why != NULL);
	}
	if (mig_abort_decode(p, len, &e, reason, sizeof(reason)) == 0) {
		size_t n = strnlen(reason, sizeof(reason));

		FUZZ_ASSERT(len >= 4 && len <= MIG_ABORT_MAX);
		FUZZ_ASSERT(n < sizeof(reason));
		FUZZ_ASSERT(e >= 1 && e < 4096);
		for (size_t i = 0; i < n; i++) {
			FUZZ_ASSERT((uint8_t)reason[i] >= 0x20 &&
				    (uint8_t)reason[i] != 0x7f);
		}
	} else {
		FUZZ_ASSERT(len < 4 || len > MIG_ABORT_MAX);
	}
	/* a tiny reason buffer still terminates */
	if (mig_abort_decode(p, len, &e, reason, 1) == 0) {
		FUZZ_ASSERT(reason[0] == '\0');
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const uint32_t bounds[] = { 0, 4096, 1u << 20, 16u << 20,
					   UINT32_MAX };
	uint8_t fixed[MIG_CHUNK_HDR_LEN];

	for (size_t i = 0; i < sizeof(bounds) / sizeof(bounds[0]); i++) {
		check_header(data, size, bounds[i]);
	}
	if (size >= MIG_CHUNK_HDR_LEN) {
		uint32_t crc;

		memcpy(fixed, data, sizeof(fixed));
		crc = mig_crc32c(0, fixed, 28);
		fixed[28] = (uint8_t)crc;
		fixed[29] = (uint8_t)(crc >> 8);
		fixed[30] = (uint8_t)(crc >> 16);
		fixed[31] = (uint8_t)(crc >> 24);
		for (size_t i = 0; i < sizeof(bounds) / sizeof(bounds[0]); i++) {
			check_header(fixed, sizeof(fixed), bounds[i]);
		}
		check_payloads(data + MIG_CHUNK_HDR_LEN, size - MIG_CHUNK_HDR_LEN);
	} else {
		check_payloads(data, size);
	}
	return 0;
}
