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

int ha_ipcc_send(qb_ipcc_connection_t *c, enum ha_msg_type type,
		 const ProtobufCMessage *req)
{
	struct qb_ipc_request_header hdr;
	_cleanup_free_ uint8_t *env = NULL;
	size_t env_len;
	struct iovec iov[2];
	ssize_t rc;
	int r = ha_env_encode(type, req, &env, &env_len);

	if (r < 0) {
		return r;
	}
	if (env_len + sizeof(hdr) > HA_IPC_MAX_MSG) {
		return -EMSGSIZE;
	}
	hdr.id = HA_IPC_REQ_ID;
	hdr.size = (int32_t)(sizeof(hdr) + env_len);
	iov[0].iov_base = &hdr;
	iov[0].iov_len = sizeof(hdr);
	iov[1].iov_base = env;
	iov[1].iov_len = env_len;
	rc = qb_ipcc_sendv(c, iov, 2);
	return rc < 0 ? (int)rc : 0;
}

int ha_ipcc_call(qb_ipcc_connection_t *c, enum ha_msg_type type,
		 const ProtobufCMessage *req, int timeout_ms,
		 enum ha_msg_type *rtype, ProtobufCMessage **reply)
{
	struct qb_ipc_request_header hdr;
	struct qb_ipc_response_header *rh;
	_cleanup_free_ uint8_t *env = NULL;
	_cleanup_free_ uint8_t *rbuf = NULL;
	size_t env_len;
	struct iovec iov[2];
	ssize_t n;
	int r = ha_env_encode(type, req, &env, &env_len);

	if (r < 0) {
		return r;
	}
	if (env_len + sizeof(hdr) > HA_IPC_MAX_MSG) {
		return -EMSGSIZE;
	}
	rbuf = malloc(HA_IPC_MAX_MSG);
	if (rbuf == NULL) {
		return -ENOMEM;
	}
	hdr.id = HA_IPC_REQ_ID;
	hdr.size = (int32_t)(sizeof(hdr) + env_len);
	iov[0].iov_base = &hdr;
	iov[0].iov_len = sizeof(hdr);
	iov[1].iov_base = env;
	iov[1].iov_len = env_len;
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

int ha_ipcc_status(qb_ipcc_connection_t *c, const char *node, int timeout_ms,
		   enum ha_msg_type *rtype, ProtobufCMessage **reply)
{
	*reply = NULL;
	for (int attempt = 0; attempt < PAGED_ATTEMPTS; attempt++) {
		Hactl__StatusRequest req = HACTL__STATUS_REQUEST__INIT;
		Hactl__StatusReply *first = NULL;

		req.node = (char *)node;
		req.has_paged = true;
		req.paged = true;
		req.has_guest_offset = true;
		for (;;) {
			ProtobufCMessage *m = NULL;
			Hactl__StatusReply *page;
			uint32_t next;
			int rc = ha_ipcc_call(c, HA_MSG_STATUS_REQUEST, &req.base, timeout_ms,
					      rtype, &m);

			if (rc < 0 || *rtype != HA_MSG_STATUS_REPLY) {
				if (rc == 0 && first == NULL) {
					*reply = m; /* an error Result */
					return 0;
				}
				ha_env_msg_free(m);
				ha_env_msg_free(first ? &first->base : NULL);
				return rc < 0 ? rc : -EPROTO;
			}
			page = (Hactl__StatusReply *)m;
			next = page->has_next_guest_offset ? page->next_guest_offset : 0;
			if (first == NULL) {
				first = page;
			} else if (page->seq != first->seq || page->syncs != first->syncs) {
				/* the state changed between the pages */
				ha_env_msg_free(m);
				ha_env_msg_free(&first->base);
				first = NULL;
				break;
			} else {
				rc = append_ptrs((void ***)&first->guests, &first->n_guests,
						 (void ***)&page->guests, &page->n_guests);
				ha_env_msg_free(m);
				if (rc < 0) {
					ha_env_msg_free(&first->base);
					return rc;
				}
			}
			if (next == 0) {
				first->has_next_guest_offset = false;
				*rtype = HA_MSG_STATUS_REPLY;
				*reply = &first->base;
				return 0;
			}
			if (next <= req.guest_offset) {
				ha_env_msg_free(&first->base);
				return -EPROTO; /* no progress */
			}
			req.guest_offset = next;
		}
	}
	return -EAGAIN;
}

int ha_ipcc_agent_guests(qb_ipcc_connection_t *c, char **held, size_t n_held,
			 int timeout_ms, enum ha_msg_type *rtype, ProtobufCMessage **reply)
{
	*reply = NULL;
	for (int attempt = 0; attempt < PAGED_ATTEMPTS; attempt++) {
		Hactl__AgentGuestsRequest req = HACTL__AGENT_GUESTS_REQUEST__INIT;
		Hactl__AgentGuestsReply *first = NULL;

		req.has_paged = true;
		req.paged = true;
		req.has_offset = true;
		req.held = held;
		req.n_held = n_held;
		for (;;) {
			ProtobufCMessage *m = NULL;
			Hactl__AgentGuestsReply *page;
			uint32_t next;
			int rc = ha_ipcc_call(c, HA_MSG_AGENT_GUESTS_REQUEST, &req.base, timeout_ms,
					      rtype, &m);

			if (rc < 0 || *rtype != HA_MSG_AGENT_GUESTS_REPLY) {
				if (rc == 0 && first == NULL) {
					*reply = m;
					return 0;
				}
				ha_env_msg_free(m);
				ha_env_msg_free(first ? &first->base : NULL);
				return rc < 0 ? rc : -EPROTO;
			}
			page = (Hactl__AgentGuestsReply *)m;
			next = page->has_next_offset ? page->next_offset : 0;
			if (first == NULL) {
				first = page;
			} else if (page->seq != first->seq || page->syncs != first->syncs ||
				   page->local_id != first->local_id) {
				ha_env_msg_free(m);
				ha_env_msg_free(&first->base);
				first = NULL;
				break;
			} else {
				first->quorate = first->quorate && page->quorate;
				rc = append_ptrs((void ***)&first->guests, &first->n_guests,
						 (void ***)&page->guests, &page->n_guests);
				ha_env_msg_free(m);
				if (rc < 0) {
					ha_env_msg_free(&first->base);
					return rc;
				}
			}
			if (next == 0) {
				first->has_next_offset = false;
				*rtype = HA_MSG_AGENT_GUESTS_REPLY;
				*reply = &first->base;
				return 0;
			}
			if (next <= req.offset) {
				ha_env_msg_free(&first->base);
				return -EPROTO;
			}
			req.offset = next;
		}
	}
	return -EAGAIN;
}

int ha_ipcs_reply(qb_ipcs_connection_t *c, enum ha_msg_type type,
		  const ProtobufCMessage *msg)
{
	struct qb_ipc_response_header hdr;
	_cleanup_free_ uint8_t *env = NULL;
	size_t env_len;
	struct iovec iov[2];
	ssize_t rc;
	int r = ha_env_encode(type, msg, &env, &env_len);

	if (r < 0) {
		return r;
	}
	if (env_len + sizeof(hdr) > HA_IPC_MAX_MSG) {
		return -EMSGSIZE;
	}
	hdr.id = HA_IPC_RESP_ID;
	hdr.size = (int32_t)(sizeof(hdr) + env_len);
	hdr.error = 0;
	iov[0].iov_base = &hdr;
	iov[0].iov_len = sizeof(hdr);
	iov[1].iov_base = env;
	iov[1].iov_len = env_len;
	rc = qb_ipcs_response_sendv(c, iov, 2);
	return rc < 0 ? (int)rc : 0;
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
