/*
 * bal_simfile.c - described clusters for `hactl simulate` and the golden
 * tests: one directive per line, "key=value" attributes, '#' comments.
 * docs/balancing.md has the reference; in short:
 *
 *   clock SECONDS            cluster clock (for hold times)
 *   rounds N                 imbalanced rounds before this snapshot
 *   policy FILE              policy file, relative to this file
 *   node NAME cpus=N mem=SIZE [reserved=SIZE] [base=CPU] [group=G]
 *        [priority=N] [state=online|offline|maintenance] [types=LIST] [id=N]
 *   guest NAME mem=SIZE [on=NODE|-] [cpu=CPU] [vcpus=N] [dirty=MiB/s]
 *        [type=container|domain] [ha=yes|no] [priority=N] [pinned=yes|no]
 *        [group=G] [affinity=LIST] [anti=LIST] [moved=SECONDS]
 *   run rebalance | run place GUEST | run recover [NODE] | run evacuate NODE
 *   advance SECONDS
 *   set node NAME key=value...   set guest NAME key=value...
 *
 * Everything read is bounded and checked; errors say FILE:LINE.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bal_int.h"
#include "hactl_states.h"
#include "util.h"

#define SIM_MAX_LINE 8192
#define SIM_MAX_SECONDS (100ull * 365 * 86400)

static const char *const cmd_kind_names[HA_BAL_SIM_CMD_MAX] = {
	[HA_BAL_SIM_RUN] = "run",
	[HA_BAL_SIM_ADVANCE] = "advance",
	[HA_BAL_SIM_SET_NODE] = "set node",
	[HA_BAL_SIM_SET_GUEST] = "set guest",
};

const char *ha_bal_sim_cmd_kind_str(enum ha_bal_sim_cmd_kind k)
{
	return ha_enum_str(cmd_kind_names, HA_BAL_SIM_CMD_MAX, (unsigned)k);
}

struct sim_ctx {
	const char *fname;
	uint32_t line;
	char *err;
	size_t errlen;
};

static int sim_fail(struct sim_ctx *x, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static int sim_fail(struct sim_ctx *x, const char *fmt, ...)
{
	char msg[320];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	snprintf(x->err, x->errlen, "%s:%u: %s", x->fname, x->line, msg);
	return -EINVAL;
}

/* Splits @line at blanks in place; returns the number of tokens. */
static int tokenize(char *line, char **tok, int max)
{
	int n = 0;
	char *p = line;

	while (*p) {
		while (*p == ' ' || *p == '\t' || *p == '\r') {
			*p++ = 0;
		}
		if (*p == 0 || *p == '#') {
			break;
		}
		if (n == max) {
			return -1;
		}
		tok[n++] = p;
		while (*p && *p != ' ' && *p != '\t' && *p != '\r' && *p != '#') {
			p++;
		}
		if (*p == '#') {
			*p = 0;
			break;
		}
	}
	return n;
}

static int parse_u64_tok(struct sim_ctx *x, const char *what, const char *v,
			 uint64_t min, uint64_t max, uint64_t *out)
{
	if (ha_parse_u64(v, min, max, out) < 0) {
		return sim_fail(x, "%s: '%s' is not a whole number in %" PRIu64 "..%" PRIu64,
				what, v, min, max);
	}
	return 0;
}

static int parse_prio(struct sim_ctx *x, const char *v, int32_t *out)
{
	int64_t p;

	if (bal_parse_i64(v, -1000000, 1000000, &p) < 0) {
		return sim_fail(x, "priority: '%s' is not a whole number in -1000000..1000000", v);
	}
	*out = (int32_t)p;
	return 0;
}

static int parse_bool_tok(struct sim_ctx *x, const char *what, const char *v, bool *out)
{
	if (bal_parse_bool(v, out) < 0) {
		return sim_fail(x, "%s: '%s' is not yes or no", what, v);
	}
	return 0;
}

static int parse_name_tok(struct sim_ctx *x, const char *what, const char *v,
			  char dst[HA_BAL_NAME_MAX])
{
	if (!bal_name_valid(v)) {
		return sim_fail(x, "%s: '%s' is not a valid name (1..63 of A-Z a-z 0-9 . _ : @ -)",
				what, v);
	}
	snprintf(dst, HA_BAL_NAME_MAX, "%s", v);
	return 0;
}

/* Applies one key=value to a node. */
static int node_kv(struct sim_ctx *x, struct ha_bal_node *n, const char *k, const char *v)
{
	uint64_t u;
	int rc = 0;

	if (strcmp(k, "cpus") == 0) {
		rc = parse_u64_tok(x, "cpus", v, 1, HA_BAL_MAX_CPUS, &u);
		n->cpus = (uint32_t)u;
	} else if (strcmp(k, "mem") == 0 || strcmp(k, "reserved") == 0) {
		if (bal_parse_mem(v, HA_BAL_MAX_MEM_MIB, &u) < 0 || (k[0] == 'm' && u == 0)) {
			return sim_fail(x, "%s: '%s' is not a size (MiB, or suffix M, G, T)", k, v);
		}
		if (k[0] == 'm') {
			n->mem_mib = u;
		} else {
			n->mem_reserved_mib = u;
		}
	} else if (strcmp(k, "base") == 0) {
		if (bal_parse_cpu_milli(v, (uint64_t)HA_BAL_MAX_CPUS * 1000, &u) < 0) {
			return sim_fail(x, "base: '%s' is not a CPU amount (1.5 or 1500m)", v);
		}
		n->cpu_base_milli = (uint32_t)u;
	} else if (strcmp(k, "group") == 0) {
		rc = parse_name_tok(x, "group", v, n->group);
	} else if (strcmp(k, "priority") == 0) {
		rc = parse_prio(x, v, &n->priority);
	} else if (strcmp(k, "state") == 0) {
		/* the protocol's node states, less fenced */
		switch (ha_node_state_from_str(v)) {
		case HACTL__NODE_STATE__NODE_ONLINE:
			n->online = true;
			n->maintenance = false;
			break;
		case HACTL__NODE_STATE__NODE_OFFLINE:
			n->online = false;
			n->maintenance = false;
			break;
		case HACTL__NODE_STATE__NODE_MAINTENANCE:
			n->online = true;
			n->maintenance = true;
			break;
		default:
			return sim_fail(x, "state: '%s' is not online, offline or maintenance", v);
		}
	} else if (strcmp(k, "types") == 0) {
		char buf[64];
		char *save = NULL;

		if (strlen(v) >= sizeof(buf)) {
			return sim_fail(x, "types: '%s' too long", v);
		}
		snprintf(buf, sizeof(buf), "%s", v);
		n->types = 0;
		for (char *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
			int ty = ha_bal_guest_type_parse(t);

			if (ty < 0) {
				return sim_fail(x, "types: '%s' is not container or domain", t);
			}
			n->types |= 1u << ty;
		}
	} else if (strcmp(k, "id") == 0) {
		rc = parse_u64_tok(x, "id", v, 0, UINT32_MAX, &u);
		n->id = (uint32_t)u;
	} else {
		return sim_fail(x, "node: unknown attribute '%s' (cpus, mem, reserved, base, "
				"group, priority, state, types, id)", k);
	}
	return rc;
}

static int label_list(struct sim_ctx *x, struct ha_bal_cluster *c, uint32_t gi,
		      enum ha_bal_label_kind kind, const char *v)
{
	char buf[SIM_MAX_LINE];
	char *save = NULL;

	snprintf(buf, sizeof(buf), "%s", v);
	for (char *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
		int rc = ha_bal_guest_add_label(c, gi, kind, t);

		if (rc == -E2BIG) {
			return sim_fail(x, "%s: more than %u groups or labels",
					ha_bal_label_kind_str(kind), HA_BAL_GUEST_LABELS);
		}
		if (rc < 0) {
			return sim_fail(x, "%s: '%s' is not a valid group name",
					ha_bal_label_kind_str(kind), t);
		}
	}
	return 0;
}

/*
 * Applies one key=value to a guest. Labels need the guest in the cluster
 * (@gi >= 0); before that they are checked and deferred by the caller.
 */
static int guest_kv(struct sim_ctx *x, struct ha_bal_cluster *c, struct ha_bal_guest *g,
		    int gi, const char *k, const char *v)
{
	uint64_t u;
	int rc = 0;

	if (strcmp(k, "on") == 0) {
		if (strcmp(v, "-") == 0) {
			g->node = -1;
		} else {
			int n = ha_bal_cluster_find_node(c, v);

			if (n < 0) {
				return sim_fail(x, "on: no node '%s'", v);
			}
			g->node = n;
		}
	} else if (strcmp(k, "mem") == 0) {
		if (bal_parse_mem(v, HA_BAL_MAX_MEM_MIB, &u) < 0 || u == 0) {
			return sim_fail(x, "mem: '%s' is not a size (MiB, or suffix M, G, T)", v);
		}
		g->mem_mib = u;
	} else if (strcmp(k, "cpu") == 0) {
		if (bal_parse_cpu_milli(v, HA_BAL_MAX_GUEST_CPU, &u) < 0) {
			return sim_fail(x, "cpu: '%s' is not a CPU amount (1.5 or 1500m)", v);
		}
		g->cpu_milli = (uint32_t)u;
	} else if (strcmp(k, "vcpus") == 0) {
		rc = parse_u64_tok(x, "vcpus", v, 1, HA_BAL_MAX_CPUS, &u);
		g->vcpus = (uint32_t)u;
	} else if (strcmp(k, "dirty") == 0) {
		rc = parse_u64_tok(x, "dirty", v, 0, HA_BAL_MAX_DIRTY, &u);
		g->dirty_mibps = (uint32_t)u;
	} else if (strcmp(k, "type") == 0) {
		int t = ha_bal_guest_type_parse(v);

		if (t < 0) {
			return sim_fail(x, "type: '%s' is not container or domain", v);
		}
		g->type = (enum ha_bal_guest_type)t;
	} else if (strcmp(k, "ha") == 0) {
		rc = parse_bool_tok(x, "ha", v, &g->ha);
	} else if (strcmp(k, "pinned") == 0) {
		rc = parse_bool_tok(x, "pinned", v, &g->pinned);
	} else if (strcmp(k, "priority") == 0) {
		rc = parse_prio(x, v, &g->priority);
	} else if (strcmp(k, "group") == 0) {
		if (strcmp(v, "-") == 0) {
			g->group[0] = 0;
		} else {
			rc = parse_name_tok(x, "group", v, g->group);
		}
	} else if (strcmp(k, "moved") == 0) {
		rc = parse_u64_tok(x, "moved", v, 0, SIM_MAX_SECONDS, &u);
		g->last_move_ms = u * 1000;
	} else if (strcmp(k, "affinity") == 0 || strcmp(k, "anti") == 0) {
		enum ha_bal_label_kind kind = k[1] == 'f' ? HA_BAL_AFFINITY :
							    HA_BAL_ANTI_AFFINITY;

		if (gi >= 0) {
			return label_list(x, c, (uint32_t)gi, kind, v);
		}
	} else {
		return sim_fail(x, "guest: unknown attribute '%s' (on, mem, cpu, vcpus, dirty, "
				"type, ha, priority, pinned, group, affinity, anti, moved)", k);
	}
	return rc;
}

static int split_kv(struct sim_ctx *x, char *tok, char **k, char **v)
{
	char *eq = strchr(tok, '=');

	if (eq == NULL || eq == tok || eq[1] == 0) {
		return sim_fail(x, "'%s' is not key=value", tok);
	}
	*eq = 0;
	*k = tok;
	*v = eq + 1;
	return 0;
}

/* Why the @what (node, guest) called @name could not be added (@rc of
 * ha_bal_cluster_add_*(), at most @max of them). */
static int add_failed(struct sim_ctx *x, int rc, const char *what, const char *name,
		      uint32_t max)
{
	if (rc == -EEXIST) {
		return sim_fail(x, "%s %s is defined twice", what, name);
	}
	if (rc == -E2BIG) {
		return sim_fail(x, "more than %u %ss", max, what);
	}
	return sim_fail(x, "%s %s: %s", what, name, strerror(-rc));
}

static int add_node(struct sim_ctx *x, struct ha_bal_cluster *c, char **tok, int n)
{
	struct ha_bal_node nd;
	char *k = NULL, *v = NULL;
	int rc;

	memset(&nd, 0, sizeof(nd));
	nd.online = true;
	if (n < 2) {
		return sim_fail(x, "node: a name is missing");
	}
	rc = parse_name_tok(x, "node", tok[1], nd.name);
	for (int i = 2; i < n && rc == 0; i++) {
		rc = split_kv(x, tok[i], &k, &v);
		if (rc == 0) {
			rc = node_kv(x, &nd, k, v);
		}
	}
	if (rc < 0) {
		return rc;
	}
	if (nd.cpus == 0 || nd.mem_mib == 0) {
		return sim_fail(x, "node %s: cpus= and mem= are required", nd.name);
	}
	if (nd.mem_reserved_mib >= nd.mem_mib) {
		return sim_fail(x, "node %s: reserved must be below mem", nd.name);
	}
	if (nd.cpu_base_milli > nd.cpus * 1000u) {
		return sim_fail(x, "node %s: base is more than its CPUs", nd.name);
	}
	rc = ha_bal_cluster_add_node(c, &nd);
	return rc < 0 ? add_failed(x, rc, "node", nd.name, HA_BAL_MAX_NODES) : 0;
}

static int add_guest(struct sim_ctx *x, struct ha_bal_cluster *c, char **tok, int n)
{
	struct ha_bal_guest g;
	char *k = NULL, *v = NULL;
	int rc, gi;

	memset(&g, 0, sizeof(g));
	g.node = -1;
	g.vcpus = 1;
	g.ha = true;
	if (n < 2) {
		return sim_fail(x, "guest: a name is missing");
	}
	rc = parse_name_tok(x, "guest", tok[1], g.name);
	for (int i = 2; i < n && rc == 0; i++) {
		rc = split_kv(x, tok[i], &k, &v);
		if (rc == 0) {
			rc = guest_kv(x, c, &g, -1, k, v);
		}
		if (rc == 0) {
			v[-1] = '='; /* labels are applied in a second pass */
		}
	}
	if (rc < 0) {
		return rc;
	}
	if (g.mem_mib == 0) {
		return sim_fail(x, "guest %s: mem= is required", g.name);
	}
	gi = ha_bal_cluster_add_guest(c, &g);
	if (gi < 0) {
		return add_failed(x, gi, "guest", g.name, HA_BAL_MAX_GUESTS);
	}
	for (int i = 2; i < n; i++) {
		if (strncmp(tok[i], "affinity=", 9) == 0) {
			rc = label_list(x, c, (uint32_t)gi, HA_BAL_AFFINITY, tok[i] + 9);
		} else if (strncmp(tok[i], "anti=", 5) == 0) {
			rc = label_list(x, c, (uint32_t)gi, HA_BAL_ANTI_AFFINITY, tok[i] + 5);
		}
		if (rc < 0) {
			return rc;
		}
	}
	return 0;
}

/* Applies "set node|guest NAME k=v..." (parse time: to check it). */
static int apply_set(struct sim_ctx *x, struct ha_bal_cluster *c, bool node,
		     const char *name, char *assign)
{
	char *tok[64];
	char buf[SIM_MAX_LINE];
	int n, idx, rc = 0;

	snprintf(buf, sizeof(buf), "%s", assign);
	n = tokenize(buf, tok, 64);
	if (n <= 0) {
		return sim_fail(x, "set: key=value pairs expected (at most 64)");
	}
	idx = node ? ha_bal_cluster_find_node(c, name) : ha_bal_cluster_find_guest(c, name);
	if (idx < 0) {
		return sim_fail(x, "set: no %s '%s'", node ? "node" : "guest", name);
	}
	if (node) {
		struct ha_bal_node nd = c->nodes[idx];

		for (int i = 0; i < n && rc == 0; i++) {
			char *k = NULL, *v = NULL;

			rc = split_kv(x, tok[i], &k, &v);
			if (rc == 0 && strcmp(k, "group") != 0 && strcmp(k, "cpus") != 0 &&
			    strcmp(k, "mem") != 0 && strcmp(k, "reserved") != 0 &&
			    strcmp(k, "base") != 0 && strcmp(k, "priority") != 0 &&
			    strcmp(k, "state") != 0 && strcmp(k, "types") != 0) {
				return sim_fail(x, "set node: '%s' cannot be changed", k);
			}
			if (rc == 0) {
				rc = node_kv(x, &nd, k, v);
			}
		}
		if (rc == 0 && (nd.mem_reserved_mib >= nd.mem_mib ||
				nd.cpu_base_milli > nd.cpus * 1000u)) {
			return sim_fail(x, "set node %s: reserved or base too large", name);
		}
		if (rc == 0) {
			c->nodes[idx] = nd;
		}
		return rc;
	}
	struct ha_bal_guest g = c->guests[idx];

	for (int i = 0; i < n && rc == 0; i++) {
		char *k = NULL, *v = NULL;

		rc = split_kv(x, tok[i], &k, &v);
		if (rc == 0) {
			rc = guest_kv(x, c, &g, -1, k, v);
		}
	}
	if (rc == 0) {
		c->guests[idx] = g;
		snprintf(buf, sizeof(buf), "%s", assign);
		n = tokenize(buf, tok, 64);
		for (int i = 0; i < n && rc == 0; i++) {
			if (strncmp(tok[i], "affinity=", 9) == 0) {
				rc = label_list(x, c, (uint32_t)idx, HA_BAL_AFFINITY, tok[i] + 9);
			} else if (strncmp(tok[i], "anti=", 5) == 0) {
				rc = label_list(x, c, (uint32_t)idx, HA_BAL_ANTI_AFFINITY,
						tok[i] + 5);
			}
		}
	}
	return rc;
}

static int add_cmd(struct sim_ctx *x, struct ha_bal_sim *sim, uint32_t *cap,
		   const struct ha_bal_sim_cmd *cmd)
{
	if (sim->n_cmds >= HA_BAL_SIM_MAX_CMDS) {
		return sim_fail(x, "more than %u commands", HA_BAL_SIM_MAX_CMDS);
	}
	if (sim->n_cmds == *cap) {
		uint32_t ncap = *cap ? *cap * 2 : 16;
		void *p = realloc(sim->cmds, ncap * sizeof(*sim->cmds));

		if (p == NULL) {
			return -ENOMEM;
		}
		sim->cmds = p;
		*cap = ncap;
	}
	sim->cmds[sim->n_cmds++] = *cmd;
	return 0;
}

static int parse_line(struct sim_ctx *x, struct ha_bal_sim *sim, uint32_t *cap,
		      char *line)
{
	struct ha_bal_cluster *c = sim->cluster;
	char *tok[256];
	int n = tokenize(line, tok, 256);
	uint64_t u;
	int rc;

	if (n < 0) {
		return sim_fail(x, "more than 256 words on a line");
	}
	if (n == 0) {
		return 0;
	}
	if (strcmp(tok[0], "node") == 0 || strcmp(tok[0], "guest") == 0 ||
	    strcmp(tok[0], "clock") == 0 || strcmp(tok[0], "rounds") == 0 ||
	    strcmp(tok[0], "policy") == 0) {
		if (sim->n_cmds) {
			return sim_fail(x, "'%s' must come before the first command", tok[0]);
		}
	}
	if (strcmp(tok[0], "node") == 0) {
		return add_node(x, c, tok, n);
	}
	if (strcmp(tok[0], "guest") == 0) {
		return add_guest(x, c, tok, n);
	}
	if (strcmp(tok[0], "clock") == 0 || strcmp(tok[0], "rounds") == 0) {
		if (n != 2) {
			return sim_fail(x, "%s: one number expected", tok[0]);
		}
		if (tok[0][0] == 'c') {
			rc = parse_u64_tok(x, "clock", tok[1], 0, SIM_MAX_SECONDS, &u);
			c->now_ms = u * 1000;
		} else {
			rc = parse_u64_tok(x, "rounds", tok[1], 0, 1000000, &u);
			c->imbalanced_rounds = (uint32_t)u;
		}
		return rc;
	}
	if (strcmp(tok[0], "policy") == 0) {
		if (n != 2 || strlen(tok[1]) >= sizeof(sim->policy_file)) {
			return sim_fail(x, "policy: one file name (< %zu bytes) expected",
					sizeof(sim->policy_file));
		}
		snprintf(sim->policy_file, sizeof(sim->policy_file), "%s", tok[1]);
		return 0;
	}

	struct ha_bal_sim_cmd cmd;

	memset(&cmd, 0, sizeof(cmd));
	cmd.line = x->line;
	if (strcmp(tok[0], "run") == 0) {
		int op = n >= 2 ? ha_bal_op_parse(tok[1]) : -EINVAL;

		cmd.kind = HA_BAL_SIM_RUN;
		if (op < 0) {
			return sim_fail(x, "run: rebalance, place GUEST, recover [NODE], "
					"evacuate NODE or relocate GUEST expected");
		}
		cmd.op = (enum ha_bal_op)op;
		if (n > 3 ||
		    (n == 2 && (op == HA_BAL_OP_CREATE || op == HA_BAL_OP_EVACUATE ||
				op == HA_BAL_OP_RELOCATE)) ||
		    (n == 3 && op == HA_BAL_OP_REBALANCE)) {
			return sim_fail(x, "run %s: wrong number of arguments", tok[1]);
		}
		if (n == 3) {
			if (!bal_name_valid(tok[2])) {
				return sim_fail(x, "run %s: '%s' is not a valid name", tok[1], tok[2]);
			}
			snprintf(cmd.arg, sizeof(cmd.arg), "%s", tok[2]);
			bool by_guest = op == HA_BAL_OP_CREATE || op == HA_BAL_OP_RELOCATE;

			if ((by_guest ? ha_bal_cluster_find_guest(c, cmd.arg) :
					ha_bal_cluster_find_node(c, cmd.arg)) < 0) {
				return sim_fail(x, "run %s: no %s '%s'", tok[1],
						by_guest ? "guest" : "node", cmd.arg);
			}
		}
	} else if (strcmp(tok[0], "advance") == 0) {
		cmd.kind = HA_BAL_SIM_ADVANCE;
		if (n != 2) {
			return sim_fail(x, "advance: SECONDS expected");
		}
		rc = parse_u64_tok(x, "advance", tok[1], 0, SIM_MAX_SECONDS, &cmd.seconds);
		if (rc < 0) {
			return rc;
		}
	} else if (strcmp(tok[0], "set") == 0) {
		size_t len = 0;

		if (n < 4 || (strcmp(tok[1], "node") != 0 && strcmp(tok[1], "guest") != 0)) {
			return sim_fail(x, "set node|guest NAME key=value... expected");
		}
		cmd.kind = tok[1][0] == 'n' ? HA_BAL_SIM_SET_NODE : HA_BAL_SIM_SET_GUEST;
		if (!bal_name_valid(tok[2])) {
			return sim_fail(x, "set: '%s' is not a valid name", tok[2]);
		}
		snprintf(cmd.arg, sizeof(cmd.arg), "%s", tok[2]);
		for (int i = 3; i < n; i++) {
			len += strlen(tok[i]) + 1;
		}
		cmd.assign = malloc(len + 1);
		if (cmd.assign == NULL) {
			return -ENOMEM;
		}
		cmd.assign[0] = 0;
		for (int i = 3; i < n; i++) {
			strcat(cmd.assign, tok[i]);
			strcat(cmd.assign, " ");
		}
		/* check it now against a copy, so that errors name this line */
		struct ha_bal_cluster *copy = ha_bal_cluster_dup(c);

		if (copy == NULL) {
			free(cmd.assign);
			return -ENOMEM;
		}
		rc = apply_set(x, copy, cmd.kind == HA_BAL_SIM_SET_NODE, cmd.arg, cmd.assign);
		ha_bal_cluster_free(copy);
		if (rc < 0) {
			free(cmd.assign);
			return rc;
		}
	} else {
		return sim_fail(x, "unknown directive '%s' (clock, rounds, policy, node, guest, "
				"run, advance, set)", tok[0]);
	}
	rc = add_cmd(x, sim, cap, &cmd);
	if (rc < 0) {
		free(cmd.assign);
	}
	return rc;
}

int ha_bal_sim_parse(const char *fname, const char *buf, size_t len,
		     struct ha_bal_sim **out, char *err, size_t errlen)
{
	struct sim_ctx x = { .fname = fname, .line = 0, .err = err, .errlen = errlen };
	struct ha_bal_sim *sim;
	char *line = NULL;
	uint32_t cap = 0;
	size_t pos = 0;
	int rc = 0;

	if (len > HA_BAL_SIM_MAX_BYTES) {
		snprintf(err, errlen, "%s: larger than %u bytes", fname, HA_BAL_SIM_MAX_BYTES);
		return -EFBIG;
	}
	sim = calloc(1, sizeof(*sim));
	line = malloc(SIM_MAX_LINE + 1);
	if (sim == NULL || line == NULL ||
	    (sim->cluster = ha_bal_cluster_new()) == NULL) {
		free(line);
		ha_bal_sim_free(sim);
		snprintf(err, errlen, "%s: out of memory", fname);
		return -ENOMEM;
	}
	while (pos < len && rc == 0) {
		size_t n = 0;

		x.line++;
		while (pos + n < len && buf[pos + n] != '\n') {
			if (buf[pos + n] == 0) {
				rc = sim_fail(&x, "NUL byte in the file");
				break;
			}
			n++;
		}
		if (rc < 0) {
			break;
		}
		if (n > SIM_MAX_LINE) {
			rc = sim_fail(&x, "line longer than %u characters", SIM_MAX_LINE);
			break;
		}
		memcpy(line, buf + pos, n);
		line[n] = 0;
		pos += n + 1;
		rc = parse_line(&x, sim, &cap, line);
		if (rc == -ENOMEM) {
			snprintf(err, errlen, "%s:%u: out of memory", fname, x.line);
		}
	}
	free(line);
	if (rc < 0) {
		ha_bal_sim_free(sim);
		return rc;
	}
	*out = sim;
	return 0;
}

int ha_bal_sim_load(const char *path, struct ha_bal_sim **out, char *err, size_t errlen)
{
	uint8_t *buf = NULL;
	size_t len = 0;
	int rc = ha_file_read(path, HA_BAL_SIM_MAX_BYTES, &buf, &len);

	if (rc < 0) {
		snprintf(err, errlen, "%s: %s", path,
			 rc == -EFBIG ? "file too large" : strerror(-rc));
		return rc;
	}
	rc = ha_bal_sim_parse(path, (const char *)buf, len, out, err, errlen);
	free(buf);
	return rc;
}

void ha_bal_sim_free(struct ha_bal_sim *sim)
{
	if (sim == NULL) {
		return;
	}
	for (uint32_t i = 0; i < sim->n_cmds; i++) {
		free(sim->cmds[i].assign);
	}
	free(sim->cmds);
	ha_bal_cluster_free(sim->cluster);
	free(sim);
}

/* CPU time of this thread: the engine is single-threaded, and a busy
 * machine must not inflate the figure. */
static uint64_t mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static int run_one(struct ha_bal_sim *sim, const struct ha_bal_policy *p,
		   const struct ha_bal_sim_cmd *cmd, struct ha_bal_plan **plan,
		   uint64_t *ns)
{
	const char *arg = cmd->arg[0] ? cmd->arg : NULL;
	uint64_t t0 = mono_ns();
	int rc;

	if (cmd->op == HA_BAL_OP_REBALANCE) {
		rc = ha_balance_plan(sim->cluster, p, plan);
	} else {
		rc = ha_balance_place(sim->cluster, p, cmd->op, arg, plan);
	}
	*ns += mono_ns() - t0;
	return rc;
}

int ha_bal_sim_run(struct ha_bal_sim *sim, const struct ha_bal_policy *p,
		   const char *fname, ha_bal_sim_step_fn step, void *user,
		   uint64_t *plan_ns, char *err, size_t errlen)
{
	struct sim_ctx x = { .fname = fname, .err = err, .errlen = errlen };
	struct ha_bal_sim_cmd dflt = { .kind = HA_BAL_SIM_RUN, .op = HA_BAL_OP_REBALANCE };
	bool any_run = false;
	uint64_t ns = 0;
	uint32_t steps = 0;
	int rc = 0;

	for (uint32_t i = 0; i < sim->n_cmds; i++) {
		any_run |= sim->cmds[i].kind == HA_BAL_SIM_RUN;
	}
	for (uint32_t i = 0; i < (any_run ? sim->n_cmds : 1) && rc == 0; i++) {
		const struct ha_bal_sim_cmd *cmd = any_run ? &sim->cmds[i] : &dflt;
		struct ha_bal_plan *plan = NULL;

		x.line = cmd->line;
		switch (cmd->kind) {
		case HA_BAL_SIM_RUN:
			rc = run_one(sim, p, cmd, &plan, &ns);
			if (rc < 0) {
				sim_fail(&x, "run %s%s%s: %s", ha_bal_op_str(cmd->op),
					 cmd->arg[0] ? " " : "", cmd->arg, strerror(-rc));
				break;
			}
			rc = ha_bal_plan_apply(sim->cluster, plan);
			if (rc == 0 && step) {
				step(user, ++steps, cmd, sim->cluster, plan);
			}
			ha_bal_plan_free(plan);
			break;
		case HA_BAL_SIM_ADVANCE:
			sim->cluster->now_ms += cmd->seconds * 1000;
			break;
		case HA_BAL_SIM_SET_NODE:
		case HA_BAL_SIM_SET_GUEST:
			rc = apply_set(&x, sim->cluster, cmd->kind == HA_BAL_SIM_SET_NODE,
				       cmd->arg, cmd->assign);
			break;
		default:
			rc = sim_fail(&x, "internal: bad command");
			break;
		}
	}
	if (plan_ns) {
		*plan_ns = ns;
	}
	return rc;
}

void ha_bal_sim_print_step(void *out_file, uint32_t step,
			   const struct ha_bal_sim_cmd *cmd,
			   const struct ha_bal_cluster *c,
			   const struct ha_bal_plan *plan)
{
	FILE *out = out_file;

	fprintf(out, "== %u: run %s%s%s\n", step, ha_bal_op_str(cmd->op),
		cmd->arg[0] ? " " : "", cmd->arg);
	ha_bal_plan_print(out, c, plan);
	fprintf(out, "\n");
}

static void write_cpu(FILE *out, const char *key, uint64_t milli)
{
	if (milli % 1000 == 0) {
		fprintf(out, " %s=%" PRIu64, key, milli / 1000);
	} else {
		fprintf(out, " %s=%" PRIu64 "m", key, milli);
	}
}

int ha_bal_sim_write(FILE *out, const struct ha_bal_cluster *c)
{
	fprintf(out, "clock %" PRIu64 "\n", c->now_ms / 1000);
	if (c->imbalanced_rounds) {
		fprintf(out, "rounds %u\n", c->imbalanced_rounds);
	}
	for (uint32_t i = 0; i < c->n_nodes; i++) {
		const struct ha_bal_node *n = &c->nodes[i];

		fprintf(out, "node %s cpus=%u mem=%" PRIu64, n->name, n->cpus, n->mem_mib);
		if (n->mem_reserved_mib) {
			fprintf(out, " reserved=%" PRIu64, n->mem_reserved_mib);
		}
		if (n->cpu_base_milli) {
			write_cpu(out, "base", n->cpu_base_milli);
		}
		if (n->group[0]) {
			fprintf(out, " group=%s", n->group);
		}
		if (n->priority) {
			fprintf(out, " priority=%d", n->priority);
		}
		if (!n->online || n->maintenance) {
			fprintf(out, " state=%s", !n->online ? "offline" : "maintenance");
		}
		if (n->types) {
			fprintf(out, " types=");
			for (int t = 0, first = 1; t < HA_BAL_GUEST_TYPE_MAX; t++) {
				if (n->types & (1u << t)) {
					fprintf(out, "%s%s", first ? "" : ",",
						ha_bal_guest_type_str((enum ha_bal_guest_type)t));
					first = 0;
				}
			}
		}
		if (n->id) {
			fprintf(out, " id=%u", n->id);
		}
		fprintf(out, "\n");
	}
	for (uint32_t i = 0; i < c->n_guests; i++) {
		const struct ha_bal_guest *g = &c->guests[i];

		fprintf(out, "guest %s on=%s mem=%" PRIu64, g->name,
			g->node >= 0 ? c->nodes[g->node].name : "-", g->mem_mib);
		write_cpu(out, "cpu", g->cpu_milli);
		if (g->vcpus != 1) {
			fprintf(out, " vcpus=%u", g->vcpus);
		}
		if (g->dirty_mibps) {
			fprintf(out, " dirty=%u", g->dirty_mibps);
		}
		if (g->type != HA_BAL_CONTAINER) {
			fprintf(out, " type=%s", ha_bal_guest_type_str(g->type));
		}
		if (!g->ha) {
			fprintf(out, " ha=no");
		}
		if (g->priority) {
			fprintf(out, " priority=%d", g->priority);
		}
		if (g->pinned) {
			fprintf(out, " pinned=yes");
		}
		if (g->group[0]) {
			fprintf(out, " group=%s", g->group);
		}
		for (int kind = 0; kind < 2; kind++) {
			unsigned n = kind ? g->n_anti : g->n_aff;
			const uint32_t *l = kind ? g->anti : g->aff;

			for (unsigned k = 0; k < n; k++) {
				fprintf(out, "%s%s", k ? "," : (kind ? " anti=" : " affinity="),
					c->labels[l[k]]);
			}
		}
		if (g->last_move_ms) {
			fprintf(out, " moved=%" PRIu64, g->last_move_ms / 1000);
		}
		fprintf(out, "\n");
	}
	return ferror(out) ? -EIO : 0;
}
