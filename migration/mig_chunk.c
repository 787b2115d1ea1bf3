/*
 * mig_chunk.c - the chunk header and the small fixed payloads (HELLO,
 * ABORT): encoding, and decoding that trusts nothing. Pure functions; the
 * fuzz target tests/fuzz/fuzz_chunk.c drives them.
 *
 * CRC-32C is written here because none of the project's libraries offers
 * it (zlib has the IEEE polynomial, without the CPU's instruction): the
 * SSE4.2 instruction where the CPU has it, a table otherwise.
 */
#include <errno.h>
#include <pthread.h>
#include <string.h>

#include "mig_private.h"

static inline void put_le16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
}

static inline void put_le32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
	p[2] = (uint8_t)(v >> 16);
	p[3] = (uint8_t)(v >> 24);
}

static inline void put_le64(uint8_t *p, uint64_t v)
{
	put_le32(p, (uint32_t)v);
	put_le32(p + 4, (uint32_t)(v >> 32));
}

static inline uint16_t get_le16(const uint8_t *p)
{
	return (uint16_t)(p[0] | (p[1] << 8));
}

static inline uint32_t get_le32(const uint8_t *p)
{
	return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) |
	       ((uint32_t)p[3] << 24);
}

static inline uint64_t get_le64(const uint8_t *p)
{
	return (uint64_t)get_le32(p) | ((uint64_t)get_le32(p + 4) << 32);
}

/* ---- CRC-32C ----------------------------------------------------------- */

#define CRC32C_POLY 0x82f63b78u /* reflected Castagnoli */

static uint32_t crc_table[256];
static pthread_once_t crc_once = PTHREAD_ONCE_INIT;
static uint32_t (*crc_impl)(uint32_t crc, const uint8_t *p, size_t len);

static uint32_t crc32c_sw(uint32_t crc, const uint8_t *p, size_t len)
{
	while (len--) {
		crc = crc_table[(crc ^ *p++) & 0xff] ^ (crc >> 8);
	}
	return crc;
}

#if defined(__x86_64__)
__attribute__((target("sse4.2"))) static uint32_t
crc32c_hw(uint32_t crc, const uint8_t *p, size_t len)
{
	uint64_t c = crc;

	while (len && ((uintptr_t)p & 7)) {
		c = __builtin_ia32_crc32qi((uint32_t)c, *p++);
		len--;
	}
	while (len >= 8) {
		uint64_t v;

		memcpy(&v, p, 8);
		c = __builtin_ia32_crc32di(c, v);
		p += 8;
		len -= 8;
	}
	while (len--) {
		c = __builtin_ia32_crc32qi((uint32_t)c, *p++);
	}
	return (uint32_t)c;
}
#endif

static void crc_init(void)
{
	for (uint32_t i = 0; i < 256; i++) {
		uint32_t c = i;

		for (int k = 0; k < 8; k++) {
			c = (c & 1) ? (c >> 1) ^ CRC32C_POLY : c >> 1;
		}
		crc_table[i] = c;
	}
	crc_impl = crc32c_sw;
#if defined(__x86_64__)
	__builtin_cpu_init();
	if (__builtin_cpu_supports("sse4.2")) {
		crc_impl = crc32c_hw;
	}
#endif
}

uint32_t mig_crc32c(uint32_t crc, const void *buf, size_t len)
{
	pthread_once(&crc_once, crc_init);
	return ~crc_impl(~crc, buf, len);
}

/* ---- names ------------------------------------------------------------- */

static const char *const type_names[MIG_CHUNK_TYPE_MAX] = {
	[MIG_CHUNK_NONE] = "none",	 [MIG_CHUNK_HELLO] = "hello",
	[MIG_CHUNK_AUTH] = "auth",	 [MIG_CHUNK_CONTROL] = "control",
	[MIG_CHUNK_DATA] = "data",	 [MIG_CHUNK_END] = "end",
	[MIG_CHUNK_ABORT] = "abort",
};

const char *mig_chunk_type_str(unsigned type)
{
	return type < MIG_CHUNK_TYPE_MAX ? type_names[type] : "unknown";
}

static const char *const reject_names[MIG_CHUNK_REJ_MAX] = {
	[MIG_CHUNK_REJ_SHORT] = "short header",
	[MIG_CHUNK_REJ_MAGIC] = "bad magic",
	[MIG_CHUNK_REJ_VERSION] = "unsupported chunk version",
	[MIG_CHUNK_REJ_HDR_CRC] = "header checksum mismatch",
	[MIG_CHUNK_REJ_TYPE] = "unknown chunk type",
	[MIG_CHUNK_REJ_FLAGS] = "unknown or reserved flags",
	[MIG_CHUNK_REJ_RESERVED] = "reserved field not zero",
	[MIG_CHUNK_REJ_TOO_LONG] = "payload too long",
};

const char *mig_chunk_reject_str(enum mig_chunk_reject r)
{
	return (unsigned)r < MIG_CHUNK_REJ_MAX ? reject_names[r] : "unknown";
}

/* ---- header ------------------------------------------------------------ */

uint32_t mig_chunk_type_max_len(unsigned type)
{
	switch (type) {
	case MIG_CHUNK_HELLO:
		return MIG_HELLO_MAX;
	case MIG_CHUNK_AUTH:
		return MIG_AUTH_LEN;
	case MIG_CHUNK_CONTROL:
	case MIG_CHUNK_DATA:
		return MIG_CHUNK_MAX_LEN;
	case MIG_CHUNK_END:
		return 0;
	case MIG_CHUNK_ABORT:
		return MIG_ABORT_MAX;
	default:
		return 0;
	}
}

void mig_chunk_hdr_encode(const struct mig_chunk_hdr *h,
			  uint8_t out[MIG_CHUNK_HDR_LEN])
{
	put_le32(out, MIG_CHUNK_MAGIC);
	out[4] = MIG_CHUNK_VERSION;
	out[5] = h->type;
	put_le16(out + 6, h->flags);
	put_le32(out + 8, h->length);
	put_le32(out + 12, h->data_crc);
	put_le64(out + 16, h->seq);
	put_le32(out + 24, 0);
	put_le32(out + 28, mig_crc32c(0, out, 28));
}

int mig_chunk_hdr_decode(const void *buf, size_t len, uint32_t max_len,
			 struct mig_chunk_hdr *h, enum mig_chunk_reject *rej)
{
	const uint8_t *p = buf;
	enum mig_chunk_reject r;
	uint32_t bound;
	int rc = -EBADMSG;

	if (len < MIG_CHUNK_HDR_LEN) {
		r = MIG_CHUNK_REJ_SHORT;
		goto reject;
	}
	if (get_le32(p) != MIG_CHUNK_MAGIC) {
		r = MIG_CHUNK_REJ_MAGIC;
		goto reject;
	}
	if (p[4] != MIG_CHUNK_VERSION) {
		r = MIG_CHUNK_REJ_VERSION;
		rc = -EPROTONOSUPPORT;
		goto reject;
	}
	if (get_le32(p + 28) != mig_crc32c(0, p, 28)) {
		r = MIG_CHUNK_REJ_HDR_CRC;
		goto reject;
	}
	if (p[5] == MIG_CHUNK_NONE || p[5] >= MIG_CHUNK_TYPE_MAX) {
		r = MIG_CHUNK_REJ_TYPE;
		goto reject;
	}
	if (get_le16(p + 6) & ~MIG_CHUNK_F_KNOWN) {
		r = MIG_CHUNK_REJ_FLAGS;
		goto reject;
	}
	if (get_le32(p + 24) != 0) {
		r = MIG_CHUNK_REJ_RESERVED;
		goto reject;
	}
	bound = mig_chunk_type_max_len(p[5]);
	if (bound > max_len) {
		bound = max_len;
	}
	if (get_le32(p + 8) > bound) {
		r = MIG_CHUNK_REJ_TOO_LONG;
		rc = -EMSGSIZE;
		goto reject;
	}
	h->version = p[4];
	h->type = p[5];
	h->flags = get_le16(p + 6);
	h->length = get_le32(p + 8);
	h->data_crc = get_le32(p + 12);
	h->seq = get_le64(p + 16);
	return 0;

reject:
	if (rej != NULL) {
		*rej = r;
	}
	return rc;
}

/* ---- HELLO and ABORT payloads ------------------------------------------- */

void mig_hello_encode(const struct mig_hello *h, uint8_t out[MIG_HELLO_LEN])
{
	put_le16(out, h->proto_min);
	put_le16(out + 2, h->proto_max);
	put_le32(out + 4, h->features);
	put_le32(out + 8, h->max_chunk);
	put_le32(out + 12, 0);
	memcpy(out + 16, h->nonce, MIG_NONCE_LEN);
}

int mig_hello_decode(const void *buf, size_t len, struct mig_hello *h,
		     const char **why)
{
	const uint8_t *p = buf;
	const char *w;

	if (len < MIG_HELLO_LEN) {
		w = "hello too short";
		goto bad;
	}
	if (len > MIG_HELLO_MAX) {
		w = "hello too long";
		goto bad;
	}
	h->proto_min = get_le16(p);
	h->proto_max = get_le16(p + 2);
	h->features = get_le32(p + 4);
	h->max_chunk = get_le32(p + 8);
	memcpy(h->nonce, p + 16, MIG_NONCE_LEN);
	if (get_le32(p + 12) != 0) {
		w = "hello reserved field not zero";
		goto bad;
	}
	if (h->proto_min == 0 || h->proto_min > h->proto_max) {
		w = "hello protocol range empty";
		goto bad;
	}
	if (h->max_chunk < MIG_CHUNK_MIN_LEN || h->max_chunk > MIG_CHUNK_MAX_LEN) {
		w = "hello max_chunk out of bounds";
		goto bad;
	}
	return 0;

bad:
	if (why != NULL) {
		*why = w;
	}
	return -EBADMSG;
}

int mig_abort_decode(const void *buf, size_t len, int *errnum, char *reason,
		     size_t reasonlen)
{
	const uint8_t *p = buf;
	uint32_t e;
	size_t n, i;

	if (len < 4 || len > MIG_ABORT_MAX || reasonlen == 0) {
		return -EBADMSG;
	}
	e = get_le32(p);
	/* Anything else would not be an errno; keep it recognisable. */
	*errnum = (e > 0 && e < 4096) ? (int)e : ECONNABORTED;
	n = len - 4;
	if (n > reasonlen - 1) {
		n = reasonlen - 1;
	}
	for (i = 0; i < n; i++) {
		uint8_t c = p[4 + i];

		if (c == 0) {
			break;
		}
		reason[i] = (c < 0x20 || c == 0x7f) ? '?' : (char)c;
	}
	reason[i] = '\0';
	return 0;
}
