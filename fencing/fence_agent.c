/*
 * fence_agent.c - runs ClusterLabs fence agents: options on stdin, one
 * key=value per line; exit 0 = done, for status 0 = on, 2 = off. The agent
 * runs through ha_spawn_run (common/ha_spawn.h): the input is in its pipe
 * before it starts, its process group is killed at the timeout, and the
 * last line of its output (stdout and stderr) is its message.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fencing.h"
#include "ha_spawn.h"

static void last_line(const char *buf, char *out, size_t len)
{
	const char *end = buf + strlen(buf), *start;

	while (end > buf && (end[-1] == '\n' || end[-1] == '\r')) {
		end--;
	}
	start = end;
	while (start > buf && start[-1] != '\n') {
		start--;
	}
	snprintf(out, len, "%.*s", (int)(end - start), start);
}

int fence_agent_run(const struct fence_device *dev, const char *action, const char *plug,
		    uint32_t timeout_s, struct fence_result *res)
{
	struct ha_spawn_result r;
	char input[8192], buf[4096];
	size_t n = 0;
	int rc;

	memset(res, 0, sizeof(*res));
	res->exit_code = -1;
	n += (size_t)snprintf(input + n, sizeof(input) - n, "action=%s\n", action);
	if (plug && plug[0]) {
		n += (size_t)snprintf(input + n, sizeof(input) - n, "plug=%s\n", plug);
	}
	for (size_t i = 0; i < dev->n_opts && n < sizeof(input); i++) {
		n += (size_t)snprintf(input + n, sizeof(input) - n, "%s=%s\n", dev->opt_key[i],
				      dev->opt_val[i]);
	}
	if (n >= sizeof(input)) {
		return -E2BIG;
	}
	{
		/* the agent's last output line is its message: keep the tail */
		char *argv[] = { (char *)dev->agent, NULL };
		/* 0 s means at once, not without a deadline */
		uint32_t ms = timeout_s > UINT32_MAX / 1000u ? UINT32_MAX : timeout_s * 1000u;
		struct ha_spawn sp = {
			.argv = argv,
			.input = input,
			.input_len = n,
			.out = buf,
			.out_len = sizeof(buf),
			.keep_tail = true,
			.err = HA_SPAWN_ERR_TO_OUT,
			.timeout_ms = ms,
		};

		if (ms == 0) {
			sp.timeout_ms = 1;
		}
		rc = ha_spawn_run(&sp, &r);
		if (rc < 0 && rc != -ETIMEDOUT) {
			return rc;
		}
	}
	res->timed_out = r.timed_out;
	last_line(buf, res->output, sizeof(res->output));
	if (res->timed_out) {
		return 0;
	}
	res->exit_code = ha_spawn_status(&r);
	return 0;
}

int fence_node_run(const struct fence_config *cfg, const struct fence_node *node,
		   char *log, size_t loglen)
{
	size_t used = 0;

	log[0] = 0;
#define LOG(...)                                                                   \
	do {                                                                       \
		if (used < loglen) {                                               \
			used += (size_t)snprintf(log + used, loglen - used, __VA_ARGS__); \
		}                                                                  \
	} while (0)
	if (node->n_levels == 0) {
		LOG("no fence device configured for %s", node->name);
		return -EIO;
	}
	for (size_t li = 0; li < node->n_levels; li++) {
		bool ok = true;

		for (size_t di = 0; di < node->n_level_devs[li] && ok; di++) {
			const struct fence_device *d = &cfg->devices[node->level_dev[li][di]];
			struct fence_result r;
			int rc = fence_agent_run(d, "off", node->plug, cfg->timeout_s, &r);

			if (rc < 0 || r.exit_code != 0) {
				LOG("%slevel %zu %s off: %s%s%s", used ? "; " : "", li + 1, d->name,
				    rc < 0 ? strerror(-rc) : r.timed_out ? "timed out" : "failed",
				    r.output[0] ? ": " : "", r.output);
				ok = false;
				break;
			}
			rc = fence_agent_run(d, "status", node->plug, cfg->timeout_s, &r);
			if (rc < 0 || r.exit_code != 2) {
				LOG("%slevel %zu %s: off not confirmed (status exit %d)%s%s",
				    used ? "; " : "", li + 1, d->name, r.exit_code,
				    r.output[0] ? ": " : "", r.output);
				ok = false;
				break;
			}
		}
		if (ok) {
			LOG("%s%s fenced by level %zu (off confirmed)", used ? "; " : "", node->name,
			    li + 1);
			return 0;
		}
	}
#undef LOG
	return -EIO;
}
