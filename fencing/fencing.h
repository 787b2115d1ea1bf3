/*
 * fencing.h - fence devices and their configuration (fence.conf), and
 * running ClusterLabs fence agents (the stdin protocol).
 *
 * fence.conf:
 *
 *   [defaults]
 *   method = agent            ; agent | watchdog
 *   timeout = 20              ; seconds per agent call
 *   [device lc]
 *   agent = fence_hactl_lc    ; program; other keys are passed on stdin
 *   [node node2]
 *   method = agent
 *   level1 = lc               ; devices of a level, comma-separated; all
 *   level2 = ipmi2            ; must succeed; levels are tried in order
 *   plug = node2              ; default: the node's name
 */
#ifndef HA_FENCING_H
#define HA_FENCING_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define FENCE_MAX_DEVICES 32
#define FENCE_MAX_NODES 128
#define FENCE_MAX_LEVELS 4
#define FENCE_MAX_PER_LEVEL 4
#define FENCE_MAX_OPTS 16
#define FENCE_NAME_MAX 63

enum fence_method {
	FENCE_METHOD_AGENT = 0, /* fence devices, confirmed with status */
	FENCE_METHOD_WATCHDOG,  /* wait out the node's self-fence deadline */
	FENCE_METHOD_MAX
};

const char *fence_method_str(enum fence_method m);

struct fence_device {
	char name[FENCE_NAME_MAX + 1];
	char agent[256];
	size_t n_opts;
	char opt_key[FENCE_MAX_OPTS][64];
	char opt_val[FENCE_MAX_OPTS][256];
};

struct fence_node {
	char name[FENCE_NAME_MAX + 1];
	enum fence_method method;
	char plug[FENCE_NAME_MAX + 1];
	size_t n_levels;
	size_t n_level_devs[FENCE_MAX_LEVELS];
	int level_dev[FENCE_MAX_LEVELS][FENCE_MAX_PER_LEVEL]; /* index into devices */
};

struct fence_config {
	enum fence_method default_method;
	uint32_t timeout_s;
	size_t n_devices;
	struct fence_device devices[FENCE_MAX_DEVICES];
	size_t n_nodes;
	struct fence_node nodes[FENCE_MAX_NODES];
};

/*
 * Loads @path; a missing file gives the defaults (every node self-fences
 * by watchdog). Errors: -EINVAL with "FILE:LINE: what" in @err.
 */
int fence_config_load(const char *path, struct fence_config *cfg, char *err, size_t errlen);

/* How @node is fenced: its section, or the defaults (plug = its name). */
void fence_config_node(const struct fence_config *cfg, const char *node,
		       struct fence_node *out);

/* Result of one agent call. */
struct fence_result {
	int exit_code;    /* the agent's exit status; -1 when it did not run */
	bool timed_out;
	char output[512]; /* the last line it printed */
};

/*
 * Runs @dev's agent with action=@action and plug=@plug plus the device's
 * options on stdin (one key=value per line), waiting at most @timeout_s.
 * Blocking: call it from a worker thread. Returns 0 when it ran (see
 * res->exit_code), -errno when it could not be started.
 */
int fence_agent_run(const struct fence_device *dev, const char *action, const char *plug,
		    uint32_t timeout_s, struct fence_result *res);

/*
 * Fences @node: for each level in order, "off" on every device of the
 * level, then "status" on each must report off (exit 2). The first level
 * that succeeds confirms the fencing. Blocking. Returns 0 when confirmed,
 * -EIO otherwise, with a one-line account in @log.
 */
int fence_node_run(const struct fence_config *cfg, const struct fence_node *node,
		   char *log, size_t loglen);

#endif
