/*
 * ipc.h - envelope messages over libqb IPC (service "hactl").
 *
 * A request is a qb_ipc_request_header followed by one envelope; a reply or
 * an event is a qb_ipc_response_header followed by one envelope.
 */
#ifndef HA_IPC_H
#define HA_IPC_H

#include <qb/qbipcc.h>
#include <qb/qbipcs.h>

#include "envelope.h"

#define HA_IPC_NAME "hactl"
#define HA_IPC_MAX_MSG (1024 * 1024)
#define HA_IPC_REQ_ID 1
#define HA_IPC_RESP_ID 1
#define HA_IPC_EVENT_ID 2

/*
 * Client: sends @req as @type and waits up to @timeout_ms for the reply.
 * On success *reply (freed with ha_env_msg_free()) and *rtype are set.
 * Returns 0 or -errno (-ENOTCONN when the coordinator went away,
 * -ETIMEDOUT, -EBADMSG for a reply that does not decode).
 */
int ha_ipcc_call(qb_ipcc_connection_t *c, enum ha_msg_type type,
		 const ProtobufCMessage *req, int timeout_ms,
		 enum ha_msg_type *rtype, ProtobufCMessage **reply);

/*
 * Client: the status with every guest, asked for in pages that each fit
 * one IPC message (docs/protocol.md, "Large replies") and merged into one
 * StatusReply. A page of another state (seq or sync count changed) starts
 * over, at most 5 times (-EAGAIN). A Result answer (an error) is returned
 * as it came, with *rtype HA_MSG_RESULT. Otherwise as ha_ipcc_call().
 */
int ha_ipcc_status(qb_ipcc_connection_t *c, const char *node, int timeout_ms,
		   enum ha_msg_type *rtype, ProtobufCMessage **reply);

/*
 * Client (the agent): the guests of this host and those named in @held,
 * in pages, merged into one AgentGuestsReply (nodes from the first page,
 * quorate only when every page says so). Same rules as ha_ipcc_status().
 */
int ha_ipcc_agent_guests(qb_ipcc_connection_t *c, char **held, size_t n_held,
			 int timeout_ms, enum ha_msg_type *rtype, ProtobufCMessage **reply);

/* Client: sends @req without waiting for a reply to be read here. */
int ha_ipcc_send(qb_ipcc_connection_t *c, enum ha_msg_type type,
		 const ProtobufCMessage *req);

/* Server: the reply to the request being processed (or a pending one). */
int ha_ipcs_reply(qb_ipcs_connection_t *c, enum ha_msg_type type,
		  const ProtobufCMessage *msg);
/* Server: an event to client @c, outside any request (HA_IPC_EVENT_ID). */
int ha_ipcs_event(qb_ipcs_connection_t *c, enum ha_msg_type type,
		  const ProtobufCMessage *msg);
/* Server: a Result reply. */
int ha_ipcs_reply_result(qb_ipcs_connection_t *c, int code, const char *text,
			 uint64_t seq);

#endif
