/*
 * fence_config.c - fence.conf parser.
 */
#include <errno.h>
#include <ini.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fencing.h"
#include "util.h"

static const char *const method_names[FENCE_METHOD_MAX] = {
	[FENCE_METHOD_AGENT] = "agent",
	[FENCE_METHOD_WATCHDOG] = "watchdog",
};

const char *fence_method_str(enum fence_method m)
{
	return ha_enum_str(method_names, FENCE_METHOD_MAX, (unsigned)m);
}

static int method_parse(const char *s, enum fence_method *m)
{
	for (int i = 0; i < FENCE_METHOD_MAX; i++) {
		if (strcmp(s, method_names[i]) == 0) {
			*m = (enum fence_method)i;
			return 0;
		}
	}
	return -EINVAL;
}

struct ctx {
	struct fence_config *cfg;
	/* level names are resolved after the whole file is read */
	char level_names[FENCE_MAX_NODES][FENCE_MAX_LEVELS][256];
	int level_line[FENCE_MAX_NODES][FENCE_MAX_LEVELS];
	int line;
	char why[512];
	int err_line;
};

static bool name_ok(const char *s)
{
	size_t n = strlen(s);

	if (n == 0 || n > FENCE_NAME_MAX) {
		return false;
	}
	for (size_t i = 0; i < n; i++) {
		char c = s[i];

		if (!(c == '-' || c == '_' || c == '.' || (c >= '0' && c <= '9') ||
		      (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'))) {
			return false;
		}
	}
	return true;
}

static int fail(struct ctx *c, const char *fmt, const char *a, const char *b)
{
	if (!c->err_line) {
		snprintf(c->why, sizeof(c->why), fmt, a, b);
		c->err_line = c->line;
	}
	return 0;
}

static struct fence_device *device_get(struct fence_config *cfg, const char *name, bool create)
{
	for (size_t i = 0; i < cfg->n_devices; i++) {
		if (strcmp(cfg->devices[i].name, name) == 0) {
			return &cfg->devices[i];
		}
	}
	if (!create || cfg->n_devices >= FENCE_MAX_DEVICES) {
		return NULL;
	}
	snprintf(cfg->devices[cfg->n_devices].name, FENCE_NAME_MAX + 1, "%s", name);
	return &cfg->devices[cfg->n_devices++];
}

static struct fence_node *node_get(struct fence_config *cfg, const char *name)
{
	for (size_t i = 0; i < cfg->n_nodes; i++) {
		if (strcmp(cfg->nodes[i].name, name) == 0) {
			return &cfg->nodes[i];
		}
	}
	if (cfg->n_nodes >= FENCE_MAX_NODES) {
		return NULL;
	}
	struct fence_node *n = &cfg->nodes[cfg->n_nodes++];

	memset(n, 0, sizeof(*n));
	snprintf(n->name, sizeof(n->name), "%s", name);
	snprintf(n->plug, sizeof(n->plug), "%s", name);
	n->method = cfg->default_method;
	return n;
}

static int cb(void *user, const char *section, const char *key, const char *value)
{
	struct ctx *c = user;
	struct fence_config *cfg = c->cfg;

	if (strcmp(section, "defaults") == 0) {
		if (strcmp(key, "method") == 0) {
			if (method_parse(value, &cfg->default_method) < 0) {
				return fail(c, "method: '%s' is not agent or watchdog%s", value, "");
			}
		} else if (strcmp(key, "timeout") == 0) {
			uint64_t v;

			if (ha_parse_u64(value, 1, 600, &v) < 0) {
				return fail(c, "timeout: '%s' is not seconds in 1..600%s", value, "");
			}
			cfg->timeout_s = (uint32_t)v;
		} else {
			return fail(c, "unknown option '%s' in [%s]", key, section);
		}
		return 1;
	}
	if (strncmp(section, "device ", 7) == 0) {
		struct fence_device *d;

		if (!name_ok(section + 7)) {
			return fail(c, "bad device name '%s'%s", section + 7, "");
		}
		d = device_get(cfg, section + 7, true);
		if (d == NULL) {
			return fail(c, "more than %s devices%s", "32", "");
		}
		if (strcmp(key, "agent") == 0) {
			snprintf(d->agent, sizeof(d->agent), "%s", value);
		} else if (strcmp(key, "action") == 0 || strcmp(key, "plug") == 0 ||
			   strcmp(key, "port") == 0) {
			return fail(c, "'%s' is set by hactl, not in [device %s]", key, section + 7);
		} else if (d->n_opts >= FENCE_MAX_OPTS) {
			return fail(c, "too many options in [%s]%s", section, "");
		} else if (strlen(key) >= 64 || strlen(value) >= 256 || strchr(value, '\n')) {
			return fail(c, "option '%s' too long in [%s]", key, section);
		} else {
			snprintf(d->opt_key[d->n_opts], 64, "%s", key);
			snprintf(d->opt_val[d->n_opts], 256, "%s", value);
			d->n_opts++;
		}
		return 1;
	}
	if (strncmp(section, "node ", 5) == 0) {
		struct fence_node *n;

		if (!name_ok(section + 5)) {
			return fail(c, "bad node name '%s'%s", section + 5, "");
		}
		n = node_get(cfg, section + 5);
		if (n == NULL) {
			return fail(c, "more than %s nodes%s", "128", "");
		}
		if (strcmp(key, "method") == 0) {
			if (method_parse(value, &n->method) < 0) {
				return fail(c, "method: '%s' is not agent or watchdog%s", value, "");
			}
		} else if (strcmp(key, "plug") == 0) {
			if (!name_ok(value)) {
				return fail(c, "plug: bad value '%s'%s", value, "");
			}
			snprintf(n->plug, sizeof(n->plug), "%s", value);
		} else if (strncmp(key, "level", 5) == 0 && key[5] >= '1' &&
			   key[5] < '1' + FENCE_MAX_LEVELS && key[6] == 0) {
			size_t ni = (size_t)(n - cfg->nodes), li = (size_t)(key[5] - '1');

			snprintf(c->level_names[ni][li], 256, "%s", value);
			c->level_line[ni][li] = c->line;
		} else {
			return fail(c, "unknown option '%s' in [%s]", key, section);
		}
		return 1;
	}
	return fail(c, "unknown section [%s]%s", section, "");
}

/* inih gives no line numbers to the handler: count them ourselves. */
static int line_reader_cb(void *user, const char *section, const char *key, const char *value)
{
	return cb(user, section, key, value);
}

int fence_config_load(const char *path, struct fence_config *cfg, char *err, size_t errlen)
{
	struct ctx *c;
	FILE *f;
	char buf[512];
	char section[128] = "";
	int rc = 0;

	memset(cfg, 0, sizeof(*cfg));
	cfg->default_method = FENCE_METHOD_WATCHDOG;
	cfg->timeout_s = 20;
	f = fopen(path, "re");
	if (f == NULL) {
		if (errno == ENOENT) {
			return 0;
		}
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return -errno;
	}
	c = calloc(1, sizeof(*c));
	if (c == NULL) {
		fclose(f);
		return -ENOMEM;
	}
	c->cfg = cfg;
	/* A small line parser (same syntax as INI elsewhere) so that every
	 * error names its line. */
	while (fgets(buf, sizeof(buf), f) && !c->err_line) {
		char *p = buf, *eq, *end;

		c->line++;
		if (!strchr(buf, '\n') && !feof(f)) {
			fail(c, "line longer than %s characters%s", "510", "");
			break;
		}
		while (*p == ' ' || *p == '\t') {
			p++;
		}
		end = p + strlen(p);
		while (end > p && (end[-1] == '\n' || end[-1] == '\r' || end[-1] == ' ' ||
				   end[-1] == '\t')) {
			*--end = 0;
		}
		if (*p == 0 || *p == ';' || *p == '#') {
			continue;
		}
		if (*p == '[') {
			char *close = strchr(p, ']');

			if (close == NULL || close[1] != 0) {
				fail(c, "syntax error in a section header%s%s", "", "");
				break;
			}
			*close = 0;
			snprintf(section, sizeof(section), "%s", p + 1);
			if (strcmp(section, "defaults") != 0 && strncmp(section, "device ", 7) != 0 &&
			    strncmp(section, "node ", 5) != 0) {
				fail(c, "unknown section [%s]%s", section, "");
			} else if (strncmp(section, "device ", 7) == 0 &&
				   !device_get(cfg, section + 7, true)) {
				fail(c, "more than %s devices%s", "32", "");
			} else if (strncmp(section, "node ", 5) == 0 && name_ok(section + 5) &&
				   !node_get(cfg, section + 5)) {
				fail(c, "more than %s nodes%s", "128", "");
			}
			continue;
		}
		eq = strchr(p, '=');
		if (eq == NULL) {
			fail(c, "syntax error: expected key = value%s%s", "", "");
			break;
		}
		if (!section[0]) {
			fail(c, "option before any [section]%s%s", "", "");
			break;
		}
		*eq = 0;
		for (end = eq; end > p && (end[-1] == ' ' || end[-1] == '\t');) {
			*--end = 0;
		}
		eq++;
		while (*eq == ' ' || *eq == '\t') {
			eq++;
		}
		{
			char *semi = strstr(eq, " ;");

			if (semi) {
				*semi = 0;
				for (end = semi; end > eq && (end[-1] == ' ' || end[-1] == '\t');) {
					*--end = 0;
				}
			}
		}
		line_reader_cb(c, section, p, eq);
	}
	fclose(f);
	/* resolve levels; devices need an agent */
	for (size_t i = 0; i < cfg->n_devices && !c->err_line; i++) {
		if (!cfg->devices[i].agent[0]) {
			c->line = 0;
			fail(c, "[device %s] has no agent%s", cfg->devices[i].name, "");
		}
	}
	for (size_t ni = 0; ni < cfg->n_nodes && !c->err_line; ni++) {
		struct fence_node *n = &cfg->nodes[ni];

		for (size_t li = 0; li < FENCE_MAX_LEVELS && !c->err_line; li++) {
			char *names = c->level_names[ni][li], *save = NULL, *tok;

			if (!names[0]) {
				continue;
			}
			if (li != n->n_levels) {
				c->line = c->level_line[ni][li];
				fail(c, "level%s of [node %s] without the levels before it",
				     (char[]){ (char)('1' + li), 0 }, n->name);
				break;
			}
			for (tok = strtok_r(names, ", ", &save); tok; tok = strtok_r(NULL, ", ", &save)) {
				struct fence_device *d = device_get(cfg, tok, false);

				if (d == NULL) {
					c->line = c->level_line[ni][li];
					fail(c, "unknown device '%s' in [node %s]", tok, n->name);
					break;
				}
				if (n->n_level_devs[li] >= FENCE_MAX_PER_LEVEL) {
					c->line = c->level_line[ni][li];
					fail(c, "too many devices in a level of [node %s]%s", n->name, "");
					break;
				}
				n->level_dev[li][n->n_level_devs[li]++] = (int)(d - cfg->devices);
			}
			n->n_levels++;
		}
		if (!c->err_line && n->method == FENCE_METHOD_AGENT && n->n_levels == 0) {
			c->line = 0;
			fail(c, "[node %s] uses method agent but has no level1%s", n->name, "");
		}
	}
	if (c->err_line || c->why[0]) {
		snprintf(err, errlen, "%s:%d: %s", path, c->err_line, c->why);
		rc = -EINVAL;
	}
	free(c);
	return rc;
}

void fence_config_node(const struct fence_config *cfg, const char *node, struct fence_node *out)
{
	for (size_t i = 0; i < cfg->n_nodes; i++) {
		if (strcmp(cfg->nodes[i].name, node) == 0) {
			*out = cfg->nodes[i];
			return;
		}
	}
	memset(out, 0, sizeof(*out));
	snprintf(out->name, sizeof(out->name), "%s", node);
	snprintf(out->plug, sizeof(out->plug), "%s", node);
	out->method = FENCE_METHOD_WATCHDOG; /* nothing configured: self-fence */
	if (cfg->default_method == FENCE_METHOD_AGENT) {
		out->method = FENCE_METHOD_AGENT; /* no levels: fencing fails loudly */
	}
}
