/*
 * ipc.c - envelope framing on libqb IPC.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>

#include "ipc.h"
#include "proto/hactl.pb-c.h"
#include "util.h"

/*
 * Frames @msg as @type for libqb: iov[0] is the caller's header (request
 * or response, both begin with id and size), iov[1] gets the envelope
 * (*@env, the caller frees it) and *@size the header's size field.
 * Returns 0, -EMSGSIZE for more than HA_IPC_MAX_MSG, or the encoder's
 * error.
 */
static int frame(enum ha_msg_type type, const ProtobufCMessage *msg, struct iovec iov[2],
		 int32_t *size, uint8_t **env)
{
	size_t env_len;
	int r = ha_env_encode(type, msg, env, &env_len);

	if (r < 0) {
		return r;
	}
	if (env_len + iov[0].iov_len > HA_IPC_MAX_MSG) {
		return -EMSGSIZE;
	}
	*size = (int32_t)(iov[0].iov_len + env_len);
	iov[1].iov_base = *env;
	iov[1].iov_len = env_len;
	return 0;
}

int ha_ipcc_send(qb_ipcc_connection_t *c, enum ha_msg_type type,
		 const ProtobufCMessage *req)
{
	struct qb_ipc_request_header hdr = { .id = HA_IPC_REQ_ID };
	struct iovec iov[2] = { { .iov_base = &hdr, .iov_len = sizeof(hdr) } };
	_cleanup_free_ uint8_t *env = NULL;
	ssize_t rc;
	int r = frame(type, req, iov, &hdr.size, &env);

	if (r < 0) {
		return r;
	}
	rc = qb_ipcc_sendv(c, iov, 2);
	return rc < 0 ? (int)rc : 0;
}

int ha_ipcc_call(qb_ipcc_connection_t *c, enum ha_msg_type type,
		 const ProtobufCMessage *req, int timeout_ms,
		 enum ha_msg_type *rtype, ProtobufCMessage **reply)
{
	struct qb_ipc_request_header hdr = { .id = HA_IPC_REQ_ID };
	struct iovec iov[2] = { { .iov_base = &hdr, .iov_len = sizeof(hdr) } };
	struct qb_ipc_response_header *rh;
	_cleanup_free_ uint8_t *env = NULL;
	_cleanup_free_ uint8_t *rbuf = NULL;
	ssize_t n;
	int r = frame(type, req, iov, &hdr.size, &env);

	if (r < 0) {
		return r;
	}
	rbuf = malloc(HA_IPC_MAX_MSG);
	if (rbuf == NULL) {
		return -ENOMEM;
	}
	n = qb_ipcc_sendv_recv(c, iov, 2, rbuf, HA_IPC_MAX_MSG, timeout_ms);
	if (n < 0) {
		return n == -EAGAIN ? -ETIMEDOUT : (int)n;
	}
	if ((size_t)n < sizeof(*rh)) {
		return -EBADMSG;
	}
	rh = (struct qb_ipc_response_header *)rbuf;
	if (rh->size != n || rh->id != HA_IPC_RESP_ID) {
		return -EBADMSG;
	}
	return ha_env_decode(rbuf + sizeof(*rh), (size_t)n - sizeof(*rh),
			     HA_CHAN_REPLY, NULL, rtype, reply, NULL);
}

#define PAGED_ATTEMPTS 5

/* Moves the @n elements of @from behind the @*n_to of *@to (both arrays
 * of an unpacked message: malloc'd). Returns 0 or -ENOMEM. */
static int append_ptrs(void ***to, size_t *n_to, void ***from, size_t *n_from)
{
	void **grown;

	if (*n_from == 0) {
		return 0;
	}
	grown = realloc(*to, (*n_to + *n_from) * sizeof(void *));
	if (grown == NULL) {
		return -ENOMEM;
	}
	memcpy(grown + *n_to, *from, *n_from * sizeof(void *));
	*to = grown;
	*n_to += *n_from;
	free(*from);
	*from = NULL;
	*n_from = 0;
	return 0;
}

/*
 * A paged read (docs/protocol.md, "Large replies"): asks for the pages of
 * one reply from offset 0 on and joins their guests into the first page.
 * Pages belong together only while the state they come from is the same
 * (@same); when it changed between two pages, the read starts over, at
 * most PAGED_ATTEMPTS times. The parts that differ by message type are
 * the callbacks.
 */
struct paged_read {
	enum ha_msg_type req_type, reply_type;
	ProtobufCMessage *req;
	uint32_t *offset;                                         /* in req */
	uint32_t (*next)(const ProtobufCMessage *page);           /* 0 = last page */
	bool (*same)(ProtobufCMessage *first, const ProtobufCMessage *page);
	int (*append)(ProtobufCMessage *first, ProtobufCMessage *page); /* 0, -ENOMEM */
	void (*done)(ProtobufCMessage *first);                    /* clear its offset */
};

static int paged_call(qb_ipcc_connection_t *c, const struct paged_read *pr, int timeout_ms,
		      enum ha_msg_type *rtype, ProtobufCMessage **reply)
{
	*reply = NULL;
	for (int attempt = 0; attempt < PAGED_ATTEMPTS; attempt++) {
		ProtobufCMessage *first = NULL;

		*pr->offset = 0;
		for (;;) {
			ProtobufCMessage *m = NULL;
			uint32_t next;
			int rc = ha_ipcc_call(c, pr->req_type, pr->req, timeout_ms, rtype, &m);

			if (rc < 0 || *rtype != pr->reply_type) {
				if (rc == 0 && first == NULL) {
					*reply = m; /* an error Result */
					return 0;
				}
				ha_env_msg_free(m);
				ha_env_msg_free(first);
				return rc < 0 ? rc : -EPROTO;
			}
			next = pr->next(m);
			if (first == NULL) {
				first = m;
			} else if (!pr->same(first, m)) {
				/* the state changed between the pages */
				ha_env_msg_free(m);
				ha_env_msg_free(first);
				first = NULL;
				break;
			} else {
				rc = pr->append(first, m);
				ha_env_msg_free(m);
				if (rc < 0) {
					ha_env_msg_free(first);
					return rc;
				}
			}
			if (next == 0) {
				pr->done(first);
				*rtype = pr->reply_type;
				*reply = first;
				return 0;
			}
			if (next <= *pr->offset) {
				ha_env_msg_free(first);
				return -EPROTO; /* no progress */
			}
			*pr->offset = next;
		}
	}
	return -EAGAIN;
}

static uint32_t status_next(const ProtobufCMessage *m)
{
	const Hactl__StatusReply *p = (const Hactl__StatusReply *)m;

	return p->has_next_guest_offset ? p->next_guest_offset : 0;
}

static bool status_same(ProtobufCMessage *f, const ProtobufCMessage *m)
{
	const Hactl__StatusReply *a = (const Hactl__StatusReply *)f;
	const Hactl__StatusReply *b = (const Hactl__StatusReply *)m;

	return a->seq == b->seq && a->syncs == b->syncs;
}

static int status_append(ProtobufCMessage *f, ProtobufCMessage *m)
{
	Hactl__StatusReply *a = (Hactl__StatusReply *)f, *b = (Hactl__StatusReply *)m;

	return append_ptrs((void ***)&a->guests, &a->n_guests, (void ***)&b->guests,
			   &b->n_guests);
}

static void status_done(ProtobufCMessage *f)
{
	((Hactl__StatusReply *)f)->has_next_guest_offset = false;
}

int ha_ipcc_status(qb_ipcc_connection_t *c, const char *node, int timeout_ms,
		   enum ha_msg_type *rtype, ProtobufCMessage **reply)
{
	Hactl__StatusRequest req = HACTL__STATUS_REQUEST__INIT;
	struct paged_read pr = { HA_MSG_STATUS_REQUEST, HA_MSG_STATUS_REPLY, &req.base,
				 &req.guest_offset, status_next, status_same, status_append,
				 status_done };

	req.node = (char *)node;
	req.has_paged = true;
	req.paged = true;
	req.has_guest_offset = true;
	return paged_call(c, &pr, timeout_ms, rtype, reply);
}

static uint32_t agent_next(const ProtobufCMessage *m)
{
	const Hactl__AgentGuestsReply *p = (const Hactl__AgentGuestsReply *)m;

	return p->has_next_offset ? p->next_offset : 0;
}

static bool agent_same(ProtobufCMessage *f, const ProtobufCMessage *m)
{
	const Hactl__AgentGuestsReply *a = (const Hactl__AgentGuestsReply *)f;
	const Hactl__AgentGuestsReply *b = (const Hactl__AgentGuestsReply *)m;

	return a->seq == b->seq && a->syncs == b->syncs && a->local_id == b->local_id;
}

static int agent_append(ProtobufCMessage *f, ProtobufCMessage *m)
{
	Hactl__AgentGuestsReply *a = (Hactl__AgentGuestsReply *)f;
	Hactl__AgentGuestsReply *b = (Hactl__AgentGuestsReply *)m;

	a->quorate = a->quorate && b->quorate;
	return append_ptrs((void ***)&a->guests, &a->n_guests, (void ***)&b->guests,
			   &b->n_guests);
}

static void agent_done(ProtobufCMessage *f)
{
	((Hactl__AgentGuestsReply *)f)->has_next_offset = false;
}

int ha_ipcc_agent_guests(qb_ipcc_connection_t *c, char **held, size_t n_held,
			 int timeout_ms, enum ha_msg_type *rtype, ProtobufCMessage **reply)
{
	Hactl__AgentGuestsRequest req = HACTL__AGENT_GUESTS_REQUEST__INIT;
	struct paged_read pr = { HA_MSG_AGENT_GUESTS_REQUEST, HA_MSG_AGENT_GUESTS_REPLY,
				 &req.base, &req.offset, agent_next, agent_same, agent_append,
				 agent_done };

	req.has_paged = true;
	req.paged = true;
	req.has_offset = true;
	req.held = held;
	req.n_held = n_held;
	return paged_call(c, &pr, timeout_ms, rtype, reply);
}

/* A reply (HA_IPC_RESP_ID) or an event (HA_IPC_EVENT_ID) to client @c. */
static int ipcs_send(qb_ipcs_connection_t *c, int32_t id, enum ha_msg_type type,
		     const ProtobufCMessage *msg)
{
	struct qb_ipc_response_header hdr = { .id = id, .error = 0 };
	struct iovec iov[2] = { { .iov_base = &hdr, .iov_len = sizeof(hdr) } };
	_cleanup_free_ uint8_t *env = NULL;
	ssize_t rc;
	int r = frame(type, msg, iov, &hdr.size, &env);

	if (r < 0) {
		return r;
	}
	rc = id == HA_IPC_EVENT_ID ? qb_ipcs_event_sendv(c, iov, 2) :
				     qb_ipcs_response_sendv(c, iov, 2);
	return rc < 0 ? (int)rc : 0;
}

int ha_ipcs_reply(qb_ipcs_connection_t *c, enum ha_msg_type type,
		  const ProtobufCMessage *msg)
{
	return ipcs_send(c, HA_IPC_RESP_ID, type, msg);
}

int ha_ipcs_event(qb_ipcs_connection_t *c, enum ha_msg_type type,
		  const ProtobufCMessage *msg)
{
	return ipcs_send(c, HA_IPC_EVENT_ID, type, msg);
}

int ha_ipcs_reply_result(qb_ipcs_connection_t *c, int code, const char *text,
			 uint64_t seq)
{
	Hactl__Result res = HACTL__RESULT__INIT;

	res.code = code;
	res.message = (char *)(text ? text : "");
	res.has_seq = seq != 0;
	res.seq = seq;
	return ha_ipcs_reply(c, HA_MSG_RESULT, &res.base);
}
