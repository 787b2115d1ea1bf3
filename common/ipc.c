/*
 * ipc.c - envelope framing on libqb IPC.
 */
#include <errno.h>
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
