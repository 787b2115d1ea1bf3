/*
 * coord_persist.c - the local copy of the replicated state.
 *
 * File: "HASTATE1", u32 crc32 (zlib) of the rest, then one envelope
 * (HA_MSG_STATE_FILE). Written to a temporary name, fsynced, renamed. A
 * file that fails any check is moved aside (.corrupt) and the node starts
 * empty; the cluster's state sync then gives it the current state.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include <qb/qblog.h>

#include "coordinator.h"
#include "util.h"

#define STATE_MAGIC "HASTATE1"
#define STATE_MAGIC_LEN 8
#define STATE_HDR_LEN (STATE_MAGIC_LEN + 4)
#define STATE_MAX (HA_ENV_MAX_BODY + HA_ENV_HDR_LEN + STATE_HDR_LEN)

int coord_state_save(struct coord *c)
{
	Hactl__StateFile sf = HACTL__STATE_FILE__INIT;
	Hactl__ClusterState *cs = coord_state_export(&c->state);
	_cleanup_free_ uint8_t *env = NULL;
	_cleanup_free_ uint8_t *file = NULL;
	size_t env_len;
	uLong crc;
	int rc;

	if (cs == NULL) {
		return -ENOMEM;
	}
	sf.state = cs;
	sf.has_writer = true;
	sf.writer = c->local_id;
	sf.has_written_ms = true;
	sf.written_ms = ha_wall_ms();
	rc = ha_env_encode(HA_MSG_STATE_FILE, &sf.base, &env, &env_len);
	coord_state_export_free(cs);
	if (rc < 0) {
		qb_log(LOG_ERR, "cannot encode state: %s", strerror(-rc));
		return rc;
	}
	file = malloc(STATE_HDR_LEN + env_len);
	if (file == NULL) {
		return -ENOMEM;
	}
	memcpy(file, STATE_MAGIC, STATE_MAGIC_LEN);
	crc = crc32(0L, env, (uInt)env_len);
	file[8] = (uint8_t)crc;
	file[9] = (uint8_t)(crc >> 8);
	file[10] = (uint8_t)(crc >> 16);
	file[11] = (uint8_t)(crc >> 24);
	memcpy(file + STATE_HDR_LEN, env, env_len);
	rc = ha_file_write_atomic(c->state_path, file, STATE_HDR_LEN + env_len);
	if (rc < 0) {
		qb_log(LOG_ERR, "cannot write %s: %s", c->state_path, strerror(-rc));
	}
	return rc;
}

static void move_aside(const char *path)
{
	char aside[PATH_MAX + 16];

	snprintf(aside, sizeof(aside), "%s.corrupt", path);
	if (rename(path, aside) == 0) {
		qb_log(LOG_WARNING, "kept the bad state file as %s", aside);
	}
}

int coord_state_load(struct coord *c)
{
	_cleanup_free_ uint8_t *buf = NULL;
	size_t len;
	enum ha_msg_type type;
	ProtobufCMessage *msg = NULL;
	const char *why = "";
	char why2[256];
	uint32_t crc;
	int rc;

	rc = ha_file_read(c->state_path, STATE_MAX, &buf, &len);
	if (rc == -ENOENT) {
		qb_log(LOG_INFO, "no state file %s: starting empty", c->state_path);
		return 0;
	}
	if (rc < 0) {
		qb_log(LOG_ERR, "%s: %s", c->state_path, strerror(-rc));
		move_aside(c->state_path);
		return 0;
	}
	if (len < STATE_HDR_LEN || memcmp(buf, STATE_MAGIC, STATE_MAGIC_LEN) != 0) {
		qb_log(LOG_ERR, "%s: not a hactl state file", c->state_path);
		move_aside(c->state_path);
		return 0;
	}
	crc = (uint32_t)buf[8] | ((uint32_t)buf[9] << 8) | ((uint32_t)buf[10] << 16) |
	      ((uint32_t)buf[11] << 24);
	if (crc32(0L, buf + STATE_HDR_LEN, (uInt)(len - STATE_HDR_LEN)) != crc) {
		qb_log(LOG_ERR, "%s: checksum mismatch", c->state_path);
		move_aside(c->state_path);
		return 0;
	}
	rc = ha_env_decode(buf + STATE_HDR_LEN, len - STATE_HDR_LEN, HA_CHAN_FILE,
			   NULL, &type, &msg, &why);
	if (rc < 0) {
		qb_log(LOG_ERR, "%s: %s", c->state_path, why);
		move_aside(c->state_path);
		return 0;
	}
	rc = coord_state_import(&c->state, ((Hactl__StateFile *)msg)->state, why2,
				sizeof(why2));
	ha_env_msg_free(msg);
	if (rc < 0) {
		qb_log(LOG_ERR, "%s: %s", c->state_path, why2);
		move_aside(c->state_path);
		return 0;
	}
	/* Soft state from a previous life is stale. */
	for (size_t i = 0; i < c->state.n_nodes; i++) {
		c->state.nodes[i].agent_connected = false;
	}
	qb_log(LOG_NOTICE, "loaded state seq %llu (%zu nodes, %zu guests) from %s",
	       (unsigned long long)c->state.seq, c->state.n_nodes,
	       c->state.n_guests, c->state_path);
	return 0;
}
