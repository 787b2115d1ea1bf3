/*
 * bal_policy.c - policy files (INI, libinih): one option table drives the
 * parser, the defaults, the printer and the reference in docs/balancing.md.
 *
 * Sections:
 *   [balance]            the options of the table below
 *   [group NAME]         priority, nodes (NAME or NAME:PRIORITY), guests
 *   [node NAME]          priority
 *   [affinity NAME]      guests that run on one node
 *   [anti-affinity NAME] guests that run on distinct nodes
 *
 * inih does not pass line numbers to the handler, so we feed it lines
 * through our own reader and count them; the reader also rejects what inih
 * would silently mangle (lines longer than its buffer, NUL bytes).
 */
#include <dirent.h>
#include <errno.h>
#include <ini.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "bal_int.h"
#include "util.h"

#define POLICY_MAX_BYTES (1u << 20)
#define POLICY_MAX_FILES 256

#define OPT(nm, ty, lo, hi, def, unit, field, help)                            \
	{ nm, ty, lo, hi, def, unit, offsetof(struct ha_bal_policy, field), help }

static const struct ha_bal_opt options[] = {
	OPT("enabled", HA_BAL_OPT_BOOL, 0, 1, "yes", "", enabled,
	    "rebalance periodically (repairs and placement always run)"),
	OPT("strategy", HA_BAL_OPT_STRATEGY, 0, 0, "balance", "", strategy,
	    "balance: spread load evenly; pack: fill few nodes, empty the rest"),
	OPT("interval", HA_BAL_OPT_UINT, 5, 86400, "60", "s", interval_s,
	    "period of the leader's rebalancing rounds"),
	OPT("cpu_threshold", HA_BAL_OPT_DOUBLE, 1, 100, "85", "%", cpu_threshold,
	    "a node above this CPU use is overloaded; moves never cross it; 100 = no CPU limit"),
	OPT("mem_threshold", HA_BAL_OPT_DOUBLE, 1, 100, "90", "%", mem_threshold,
	    "a node above this share of its guest memory is overloaded"),
	OPT("cpu_weight", HA_BAL_OPT_DOUBLE, 0, 100, "1", "", cpu_weight,
	    "weight of CPU load in the score"),
	OPT("mem_weight", HA_BAL_OPT_DOUBLE, 0, 100, "1", "", mem_weight,
	    "weight of memory load in the score"),
	OPT("vcpu_weight", HA_BAL_OPT_DOUBLE, 0, 100, "0", "", vcpu_weight,
	    "weight of assigned vCPUs per CPU in the score"),
	OPT("imbalance_threshold", HA_BAL_OPT_DOUBLE, 0, 100, "10", "%",
	    imbalance_threshold,
	    "rebalancing starts when the load spread exceeds this"),
	OPT("hold_rounds", HA_BAL_OPT_UINT, 1, 1000, "3", "", hold_rounds,
	    "consecutive imbalanced rounds before moves are made"),
	OPT("min_gain", HA_BAL_OPT_DOUBLE, 0, 1e6, "10", "%^2", min_gain,
	    "least score gain of one move; smaller moves are not made"),
	OPT("hold_time", HA_BAL_OPT_UINT, 0, 604800, "600", "s", hold_time_s,
	    "a moved guest is not moved again for this long"),
	OPT("max_moves", HA_BAL_OPT_UINT, 0, 1000000, "8", "", max_moves,
	    "balancing moves per round (repairs are not counted)"),
	OPT("max_move_mem", HA_BAL_OPT_MEM, 0, 1099511627776.0, "0", "MiB",
	    max_move_mem_mib, "memory copied per round; 0 = no limit"),
	OPT("max_parallel", HA_BAL_OPT_UINT, 1, 1024, "2", "", max_parallel,
	    "migrations running at once"),
	OPT("max_parallel_node", HA_BAL_OPT_UINT, 1, 64, "1", "",
	    max_parallel_node, "migrations at once into or out of one node"),
	OPT("n_plus_one", HA_BAL_OPT_BOOL, 0, 1, "yes", "", n_plus_one,
	    "keep room to restart any one node's HA guests elsewhere"),
	OPT("cost_per_gib", HA_BAL_OPT_DOUBLE, 0, 1e6, "1", "%^2", cost_per_gib,
	    "gain a move must bring per GiB it copies"),
	OPT("bandwidth", HA_BAL_OPT_UINT, 1, 1000000, "1000", "MiB/s",
	    bandwidth_mibps, "migration bandwidth, for the copy estimate"),
	OPT("max_dirty", HA_BAL_OPT_DOUBLE, 0, 100, "50", "%", max_dirty_pct,
	    "guests dirtying memory faster than this share of the bandwidth "
	    "are not moved for balance"),
	OPT("max_vcpu_ratio", HA_BAL_OPT_DOUBLE, 0, 1000, "0", "",
	    max_vcpu_ratio, "assigned vCPUs per CPU a node may take; 0 = any"),
	{ 0 },
};

const struct ha_bal_opt *ha_bal_policy_options(void)
{
	return options;
}

static int opt_set(struct ha_bal_policy *p, const struct ha_bal_opt *o,
		   const char *value, char *why, size_t whylen)
{
	char *dst = (char *)p + o->offset;
	double d;
	uint64_t m;
	bool b;
	int s;

	switch (o->type) {
	case HA_BAL_OPT_BOOL:
		if (bal_parse_bool(value, &b) < 0) {
			snprintf(why, whylen, "%s: '%s' is not yes or no", o->name,
				 value);
			return -EINVAL;
		}
		*(bool *)dst = b;
		return 0;
	case HA_BAL_OPT_UINT:
		if (ha_parse_u64(value, (uint64_t)o->min, (uint64_t)o->max, &m) < 0) {
			snprintf(why, whylen, "%s: '%s' is not a whole number in %.0f..%.0f",
				 o->name, value, o->min, o->max);
			return -EINVAL;
		}
		*(uint32_t *)dst = (uint32_t)m;
		return 0;
	case HA_BAL_OPT_DOUBLE:
		if (bal_parse_double(value, o->min, o->max, &d) < 0) {
			snprintf(why, whylen, "%s: '%s' is not a number in %.15g..%.15g",
				 o->name, value, o->min, o->max);
			return -EINVAL;
		}
		*(double *)dst = d;
		return 0;
	case HA_BAL_OPT_MEM:
		if (bal_parse_mem(value, (uint64_t)o->max, &m) < 0) {
			snprintf(why, whylen,
				 "%s: '%s' is not a size in MiB (suffix M, G, T allowed) up to %.0f",
				 o->name, value, o->max);
			return -EINVAL;
		}
		*(uint64_t *)dst = m;
		return 0;
	case HA_BAL_OPT_STRATEGY:
		s = ha_bal_strategy_parse(value);
		if (s < 0) {
			snprintf(why, whylen, "%s: '%s' is not balance or pack",
				 o->name, value);
			return -EINVAL;
		}
		*(enum ha_bal_strategy *)dst = (enum ha_bal_strategy)s;
		return 0;
	default:
		snprintf(why, whylen, "internal: bad option type");
		return -EINVAL;
	}
}

struct ha_bal_policy *ha_bal_policy_new(void)
{
	struct ha_bal_policy *p = calloc(1, sizeof(*p));
	char why[256];

	if (p == NULL) {
		return NULL;
	}
	p->rules = calloc(1, sizeof(*p->rules));
	if (p->rules == NULL) {
		free(p);
		return NULL;
	}
	for (const struct ha_bal_opt *o = options; o->name; o++) {
		opt_set(p, o, o->def, why, sizeof(why));
	}
	return p;
}

void ha_bal_policy_free(struct ha_bal_policy *p)
{
	if (p == NULL) {
		return;
	}
	bal_rules_free(p->rules);
	free(p);
}

/* ------------------------------------------------------------------ */
/* Parsing                                                              */

enum sect_kind {
	SECT_NONE = 0,
	SECT_BALANCE,
	SECT_GROUP,
	SECT_NODE,
	SECT_AFFINITY,
	SECT_ANTI,
	SECT_KIND_MAX
};

static const char *const sect_names[SECT_KIND_MAX] = {
	[SECT_NONE] = "none",
	[SECT_BALANCE] = "balance",
	[SECT_GROUP] = "group",
	[SECT_NODE] = "node",
	[SECT_AFFINITY] = "affinity",
	[SECT_ANTI] = "anti-affinity",
};

static const char *sect_kind_str(enum sect_kind k)
{
	return ha_enum_str(sect_names, SECT_KIND_MAX, (unsigned)k);
}

struct parse_ctx {
	struct ha_bal_policy *p;
	const char *fname;
	/* reader */
	const char *buf;
	size_t len, pos;
	uint32_t line;
	/* current section, cached across keys */
	char sect_text[256];
	enum sect_kind sect;
	uint32_t sect_idx;
	/* first error */
	bool failed;
	uint32_t err_line;
	char why[384];
};

static void ctx_fail(struct parse_ctx *ctx, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void ctx_fail(struct parse_ctx *ctx, const char *fmt, ...)
{
	va_list ap;

	if (ctx->failed) {
		return;
	}
	ctx->failed = true;
	ctx->err_line = ctx->line;
	va_start(ap, fmt);
	vsnprintf(ctx->why, sizeof(ctx->why), fmt, ap);
	va_end(ap);
}

/* One line per call, counting; rejects what inih would split or cut. */
static char *policy_reader(char *str, int num, void *stream)
{
	struct parse_ctx *ctx = stream;
	size_t n = 0;

	if (ctx->failed || ctx->pos >= ctx->len || num < 2) {
		return NULL;
	}
	ctx->line++;
	while (ctx->pos + n < ctx->len && ctx->buf[ctx->pos + n] != '\n') {
		if (ctx->buf[ctx->pos + n] == 0) {
			ctx_fail(ctx, "NUL byte in the file");
			return NULL;
		}
		n++;
	}
	if (n > (size_t)num - 2) {
		ctx_fail(ctx, "line longer than %d characters", num - 2);
		return NULL;
	}
	memcpy(str, ctx->buf + ctx->pos, n);
	str[n] = 0;
	ctx->pos += n;
	if (ctx->pos < ctx->len) {
		ctx->pos++; /* the newline */
	}
	return str;
}

/* Appends @item to @v, counted against BAL_MAX_LIST_ITEMS of the policy. */
static int item_keep(struct parse_ctx *ctx, struct bal_strv *v, const char *item)
{
	if (ctx->p->rules->n_items >= BAL_MAX_LIST_ITEMS) {
		ctx_fail(ctx, "more than %u list entries in the policy",
			 BAL_MAX_LIST_ITEMS);
		return -E2BIG;
	}
	ctx->p->rules->n_items++;
	if (bal_strv_add(v, item, ctx->line) < 0) {
		ctx_fail(ctx, "out of memory");
		return -ENOMEM;
	}
	return 0;
}

/* A guest named in a list ("guests = ..."). */
static int guest_item_valid(struct parse_ctx *ctx, const char *item)
{
	if (!bal_name_valid(item)) {
		ctx_fail(ctx, "guests: '%s' is not a valid guest name", item);
		return -EINVAL;
	}
	return 0;
}

static int find_or_add(void **arr, uint32_t *n, size_t elem, const char *name,
		       struct parse_ctx *ctx)
{
	char *base = *arr;
	void *np;

	for (uint32_t i = 0; i < *n; i++) {
		if (strcmp(base + (size_t)i * elem, name) == 0) {
			return (int)i;
		}
	}
	if (*n >= BAL_MAX_SECTIONS) {
		ctx_fail(ctx, "more than %u sections of one kind", BAL_MAX_SECTIONS);
		return -E2BIG;
	}
	np = realloc(*arr, ((size_t)*n + 1) * elem);
	if (np == NULL) {
		ctx_fail(ctx, "out of memory");
		return -ENOMEM;
	}
	*arr = np;
	memset((char *)np + (size_t)*n * elem, 0, elem);
	/* every rule struct starts with its name */
	snprintf((char *)np + (size_t)*n * elem, HA_BAL_NAME_MAX, "%s", name);
	return (int)(*n)++;
}

static int section_enter(struct parse_ctx *ctx, const char *section)
{
	struct bal_rules *r = ctx->p->rules;
	char kind[32], name[HA_BAL_NAME_MAX];
	const char *sp;
	size_t klen;
	int idx;

	if (strcmp(section, ctx->sect_text) == 0 && ctx->sect != SECT_NONE) {
		return 0;
	}
	snprintf(ctx->sect_text, sizeof(ctx->sect_text), "%s", section);
	ctx->sect = SECT_NONE;
	if (strcmp(section, "balance") == 0) {
		ctx->sect = SECT_BALANCE;
		return 0;
	}
	sp = strchr(section, ' ');
	klen = sp ? (size_t)(sp - section) : strlen(section);
	if (sp == NULL || klen >= sizeof(kind)) {
		ctx_fail(ctx, "unknown section [%s] (balance, group NAME, node NAME, "
			 "affinity NAME, anti-affinity NAME)", section);
		return -EINVAL;
	}
	memcpy(kind, section, klen);
	kind[klen] = 0;
	while (*sp == ' ') {
		sp++;
	}
	if (strlen(sp) > HA_BAL_NAME_MAX - 1 || !bal_name_valid(sp)) {
		ctx_fail(ctx, "[%s]: '%s' is not a valid name (1..63 of A-Z a-z 0-9 . _ : @ -)",
			 kind, sp);
		return -EINVAL;
	}
	snprintf(name, sizeof(name), "%s", sp);
	if (strcmp(kind, "group") == 0) {
		idx = find_or_add((void **)&r->groups, &r->n_groups,
				  sizeof(*r->groups), name, ctx);
		ctx->sect = SECT_GROUP;
	} else if (strcmp(kind, "node") == 0) {
		idx = find_or_add((void **)&r->nodes, &r->n_nodes,
				  sizeof(*r->nodes), name, ctx);
		ctx->sect = SECT_NODE;
	} else if (strcmp(kind, "affinity") == 0 ||
		   strcmp(kind, "anti-affinity") == 0) {
		enum ha_bal_label_kind lk = kind[0] == 'a' && kind[1] == 'f' ?
						    HA_BAL_AFFINITY :
						    HA_BAL_ANTI_AFFINITY;
		struct bal_rule_label *l;

		/* one namespace per kind: [affinity x] and [anti-affinity x]
		 * are different groups */
		idx = -1;
		for (uint32_t i = 0; i < r->n_labels; i++) {
			if (r->labels[i].kind == lk &&
			    strcmp(r->labels[i].name, name) == 0) {
				idx = (int)i;
				break;
			}
		}
		if (idx < 0) {
			void *np;

			if (r->n_labels >= BAL_MAX_SECTIONS) {
				ctx_fail(ctx, "more than %u sections of one kind",
					 BAL_MAX_SECTIONS);
				return -E2BIG;
			}
			np = realloc(r->labels, (r->n_labels + 1) * sizeof(*r->labels));
			if (np == NULL) {
				ctx_fail(ctx, "out of memory");
				return -ENOMEM;
			}
			r->labels = np;
			l = &r->labels[r->n_labels];
			memset(l, 0, sizeof(*l));
			snprintf(l->name, sizeof(l->name), "%s", name);
			l->kind = lk;
			l->line = ctx->line;
			snprintf(l->file, sizeof(l->file), "%s", ctx->fname);
			idx = (int)r->n_labels++;
		}
		ctx->sect = lk == HA_BAL_AFFINITY ? SECT_AFFINITY : SECT_ANTI;
	} else {
		ctx_fail(ctx, "unknown section [%s] (balance, group NAME, node NAME, "
			 "affinity NAME, anti-affinity NAME)", section);
		return -EINVAL;
	}
	if (idx < 0) {
		ctx->sect = SECT_NONE;
		return idx;
	}
	ctx->sect_idx = (uint32_t)idx;
	return 0;
}

/* Calls @fn for every item of a comma and/or blank separated list. */
static int list_each(struct parse_ctx *ctx, const char *value,
		     int (*fn)(struct parse_ctx *ctx, const char *item, void *arg),
		     void *arg)
{
	char item[HA_BAL_NAME_MAX + 16];
	const char *p = value;
	int rc;

	while (*p) {
		size_t n = 0;

		while (*p == ' ' || *p == '\t' || *p == ',') {
			p++;
		}
		if (*p == 0) {
			break;
		}
		while (p[n] && p[n] != ' ' && p[n] != '\t' && p[n] != ',') {
			n++;
		}
		if (n >= sizeof(item)) {
			ctx_fail(ctx, "list entry '%.20s...' too long", p);
			return -EINVAL;
		}
		memcpy(item, p, n);
		item[n] = 0;
		p += n;
		rc = fn(ctx, item, arg);
		if (rc < 0) {
			return rc;
		}
	}
	return 0;
}

static int parse_priority(struct parse_ctx *ctx, const char *what,
			  const char *value, int32_t *out)
{
	int64_t v;

	if (bal_parse_i64(value, -1000000, 1000000, &v) < 0) {
		ctx_fail(ctx, "%s: '%s' is not a whole number in -1000000..1000000",
			 what, value);
		return -EINVAL;
	}
	*out = (int32_t)v;
	return 0;
}

/* A node listed in a group; "NAME" or "NAME:PRIORITY". */
static int group_node_add(struct parse_ctx *ctx, const char *item, void *arg)
{
	struct bal_rules *r = ctx->p->rules;
	struct bal_rule_group *g = arg;
	char name[HA_BAL_NAME_MAX];
	const char *colon = strrchr(item, ':');
	size_t n = colon ? (size_t)(colon - item) : strlen(item);
	int32_t prio = 0;

	if (n == 0 || n >= sizeof(name)) {
		ctx_fail(ctx, "nodes: '%s' is not NAME or NAME:PRIORITY", item);
		return -EINVAL;
	}
	memcpy(name, item, n);
	name[n] = 0;
	if (!bal_name_valid(name)) {
		ctx_fail(ctx, "nodes: '%s' is not a valid node name", name);
		return -EINVAL;
	}
	if (colon && parse_priority(ctx, "nodes", colon + 1, &prio) < 0) {
		return -EINVAL;
	}
	for (uint32_t i = 0; i < r->n_groups; i++) {
		for (uint32_t j = 0; j < r->groups[i].nodes.n; j++) {
			const char *other = r->groups[i].nodes.v[j];

			if (strncmp(other, name, n) == 0 &&
			    (other[n] == 0 || other[n] == ':')) {
				ctx_fail(ctx, "node %s is already in group %s (line %u)",
					 name, r->groups[i].name,
					 r->groups[i].nodes.line[j]);
				return -EINVAL;
			}
		}
	}
	/* kept as written; the priority is split off when applied */
	return item_keep(ctx, &g->nodes, item);
}

static int group_guest_add(struct parse_ctx *ctx, const char *item, void *arg)
{
	struct bal_rules *r = ctx->p->rules;
	struct bal_rule_group *g = arg;

	if (guest_item_valid(ctx, item) < 0) {
		return -EINVAL;
	}
	for (uint32_t i = 0; i < r->n_groups; i++) {
		for (uint32_t j = 0; j < r->groups[i].guests.n; j++) {
			if (strcmp(r->groups[i].guests.v[j], item) == 0) {
				if (&r->groups[i] == g) {
					return 0;
				}
				ctx_fail(ctx, "guest %s is already bound to group %s (line %u)",
					 item, r->groups[i].name,
					 r->groups[i].guests.line[j]);
				return -EINVAL;
			}
		}
	}
	return item_keep(ctx, &g->guests, item);
}

static int label_guest_add(struct parse_ctx *ctx, const char *item, void *arg)
{
	struct bal_rule_label *l = arg;

	if (guest_item_valid(ctx, item) < 0) {
		return -EINVAL;
	}
	for (uint32_t j = 0; j < l->guests.n; j++) {
		if (strcmp(l->guests.v[j], item) == 0) {
			return 0;
		}
	}
	return item_keep(ctx, &l->guests, item);
}

static int ini_cb(void *user, const char *section, const char *name,
		  const char *value)
{
	struct parse_ctx *ctx = user;
	struct bal_rules *r = ctx->p->rules;
	char why[320];

	if (ctx->failed) {
		return 0;
	}
	if (section[0] == 0) {
		ctx_fail(ctx, "'%s' outside a section; options go under [balance]",
			 name);
		return 0;
	}
	if (section_enter(ctx, section) < 0) {
		return 0;
	}
	switch (ctx->sect) {
	case SECT_BALANCE:
		for (const struct ha_bal_opt *o = options; o->name; o++) {
			if (strcmp(o->name, name) == 0) {
				if (opt_set(ctx->p, o, value, why, sizeof(why)) < 0) {
					ctx_fail(ctx, "%s", why);
				}
				return 1;
			}
		}
		ctx_fail(ctx, "[balance]: unknown option '%s'", name);
		return 0;
	case SECT_GROUP: {
		struct bal_rule_group *g = &r->groups[ctx->sect_idx];

		if (strcmp(name, "priority") == 0) {
			if (parse_priority(ctx, "priority", value, &g->priority) == 0) {
				g->has_priority = true;
			}
		} else if (strcmp(name, "nodes") == 0) {
			list_each(ctx, value, group_node_add, g);
		} else if (strcmp(name, "guests") == 0) {
			list_each(ctx, value, group_guest_add, g);
		} else {
			ctx_fail(ctx, "[group %s]: unknown key '%s' (priority, nodes, guests)",
				 g->name, name);
		}
		return ctx->failed ? 0 : 1;
	}
	case SECT_NODE: {
		struct bal_rule_node *n = &r->nodes[ctx->sect_idx];

		if (strcmp(name, "priority") == 0) {
			if (parse_priority(ctx, "priority", value, &n->priority) == 0) {
				n->has_priority = true;
			}
		} else {
			ctx_fail(ctx, "[node %s]: unknown key '%s' (priority)", n->name,
				 name);
		}
		return ctx->failed ? 0 : 1;
	}
	case SECT_AFFINITY:
	case SECT_ANTI: {
		struct bal_rule_label *l = &r->labels[ctx->sect_idx];

		if (strcmp(name, "guests") == 0) {
			list_each(ctx, value, label_guest_add, l);
		} else {
			ctx_fail(ctx, "[%s %s]: unknown key '%s' (guests)",
				 ha_bal_label_kind_str(l->kind), l->name, name);
		}
		return ctx->failed ? 0 : 1;
	}
	default:
		ctx_fail(ctx, "internal: section kind %s", sect_kind_str(ctx->sect));
		return 0;
	}
}

int ha_bal_policy_parse(struct ha_bal_policy *p, const char *fname,
			const char *buf, size_t len, char *err, size_t errlen)
{
	struct parse_ctx *ctx = calloc(1, sizeof(*ctx));
	int rc;

	if (ctx == NULL) {
		snprintf(err, errlen, "%s: out of memory", fname);
		return -ENOMEM;
	}
	ctx->p = p;
	ctx->fname = fname;
	ctx->buf = buf;
	ctx->len = len;
	rc = ini_parse_stream(policy_reader, ctx, ini_cb, ctx);
	if (ctx->failed) {
		snprintf(err, errlen, "%s:%u: %s", fname, ctx->err_line, ctx->why);
		rc = -EINVAL;
	} else if (rc != 0) {
		snprintf(err, errlen, "%s:%d: syntax error (expected [section] or name = value)",
			 fname, rc);
		rc = -EINVAL;
	}
	free(ctx);
	return rc;
}

/* ------------------------------------------------------------------ */
/* Checks across sections and files                                     */

struct uf {
	uint32_t *parent;
	uint32_t n;
};

static uint32_t uf_find(struct uf *u, uint32_t x)
{
	while (u->parent[x] != x) {
		u->parent[x] = u->parent[u->parent[x]];
		x = u->parent[x];
	}
	return x;
}

/*
 * Two guests that an affinity rule keeps together and an anti-affinity
 * rule keeps apart cannot both be satisfied: refuse the policy, naming the
 * anti-affinity line.
 */
static int check_conflicts(const struct ha_bal_policy *p, char *err, size_t errlen)
{
	const struct bal_rules *r = p->rules;
	struct bal_names *names = bal_names_new(64);
	struct uf u = { 0 };
	uint32_t n = 0;
	int rc = 0;

	if (names == NULL) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	/* number the guests named in affinity rules */
	for (uint32_t i = 0; i < r->n_labels; i++) {
		if (r->labels[i].kind != HA_BAL_AFFINITY) {
			continue;
		}
		for (uint32_t j = 0; j < r->labels[i].guests.n; j++) {
			if (bal_names_add(names, r->labels[i].guests.v[j], n, NULL) == 0) {
				n++;
			}
		}
	}
	if (n == 0) {
		goto out;
	}
	u.parent = malloc(n * sizeof(*u.parent));
	if (u.parent == NULL) {
		snprintf(err, errlen, "out of memory");
		rc = -ENOMEM;
		goto out;
	}
	for (uint32_t i = 0; i < n; i++) {
		u.parent[i] = i;
	}
	for (uint32_t i = 0; i < r->n_labels; i++) {
		const struct bal_rule_label *l = &r->labels[i];

		if (l->kind != HA_BAL_AFFINITY || l->guests.n == 0) {
			continue;
		}
		uint32_t a = uf_find(&u, (uint32_t)bal_names_get(names, l->guests.v[0]));

		for (uint32_t j = 1; j < l->guests.n; j++) {
			uint32_t b = uf_find(&u, (uint32_t)bal_names_get(names, l->guests.v[j]));

			u.parent[b] = a;
		}
	}
	for (uint32_t i = 0; i < r->n_labels && rc == 0; i++) {
		const struct bal_rule_label *l = &r->labels[i];

		if (l->kind != HA_BAL_ANTI_AFFINITY) {
			continue;
		}
		for (uint32_t j = 0; j < l->guests.n && rc == 0; j++) {
			int a = bal_names_get(names, l->guests.v[j]);

			if (a < 0) {
				continue;
			}
			for (uint32_t k = 0; k < j; k++) {
				int b = bal_names_get(names, l->guests.v[k]);

				if (b >= 0 && uf_find(&u, (uint32_t)a) ==
						      uf_find(&u, (uint32_t)b)) {
					snprintf(err, errlen,
						 "%s:%u: guests %s and %s must share a node (affinity) "
						 "and must not (anti-affinity %s)",
						 l->file, l->guests.line[j], l->guests.v[k],
						 l->guests.v[j], l->name);
					rc = -EINVAL;
					break;
				}
			}
		}
	}
out:
	free(u.parent);
	bal_names_free(names);
	return rc;
}

static int parse_file(struct ha_bal_policy *p, const char *path, char *err,
		      size_t errlen)
{
	uint8_t *buf = NULL;
	size_t len = 0;
	int rc = ha_file_read(path, POLICY_MAX_BYTES, &buf, &len);

	if (rc < 0) {
		if (rc == -EFBIG) {
			snprintf(err, errlen, "%s: larger than %u bytes", path,
				 POLICY_MAX_BYTES);
		} else {
			snprintf(err, errlen, "%s: %s", path, strerror(-rc));
		}
		return rc;
	}
	rc = ha_bal_policy_parse(p, path, (const char *)buf, len, err, errlen);
	free(buf);
	return rc;
}

static int conf_filter(const struct dirent *e)
{
	size_t n = strlen(e->d_name);

	return e->d_name[0] != '.' && n > 5 && strcmp(e->d_name + n - 5, ".conf") == 0;
}

int ha_bal_policy_load(const char *path, struct ha_bal_policy **out, char *err,
		       size_t errlen)
{
	struct ha_bal_policy *p;
	struct stat st;
	int rc = 0;

	if (stat(path, &st) < 0) {
		rc = -errno;
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return rc;
	}
	p = ha_bal_policy_new();
	if (p == NULL) {
		snprintf(err, errlen, "%s: out of memory", path);
		return -ENOMEM;
	}
	if (S_ISDIR(st.st_mode)) {
		struct dirent **list = NULL;
		int n = scandir(path, &list, conf_filter, alphasort);

		if (n < 0) {
			rc = -errno;
			snprintf(err, errlen, "%s: %s", path, strerror(errno));
		} else if (n > POLICY_MAX_FILES) {
			rc = -E2BIG;
			snprintf(err, errlen, "%s: more than %u policy files", path,
				 POLICY_MAX_FILES);
		}
		for (int i = 0; i < n; i++) {
			if (rc == 0) {
				char file[4096];

				snprintf(file, sizeof(file), "%s/%s", path,
					 list[i]->d_name);
				rc = parse_file(p, file, err, errlen);
			}
			free(list[i]);
		}
		free(list);
	} else {
		rc = parse_file(p, path, err, errlen);
	}
	if (rc == 0) {
		rc = check_conflicts(p, err, errlen);
	}
	if (rc < 0) {
		ha_bal_policy_free(p);
		return rc;
	}
	*out = p;
	return 0;
}

/* ------------------------------------------------------------------ */
/* Printing                                                             */

static void opt_print(FILE *out, const struct ha_bal_policy *p,
		      const struct ha_bal_opt *o)
{
	const char *src = (const char *)p + o->offset;

	switch (o->type) {
	case HA_BAL_OPT_BOOL:
		fprintf(out, "%s = %s", o->name, *(const bool *)src ? "yes" : "no");
		break;
	case HA_BAL_OPT_UINT:
		fprintf(out, "%s = %u", o->name, *(const uint32_t *)src);
		break;
	case HA_BAL_OPT_DOUBLE:
		fprintf(out, "%s = %g", o->name, *(const double *)src);
		break;
	case HA_BAL_OPT_MEM:
		fprintf(out, "%s = %llu", o->name,
			(unsigned long long)*(const uint64_t *)src);
		break;
	case HA_BAL_OPT_STRATEGY:
		fprintf(out, "%s = %s", o->name,
			ha_bal_strategy_str(*(const enum ha_bal_strategy *)src));
		break;
	default:
		break;
	}
	if (o->unit[0]) {
		fprintf(out, " ; (%s) %s\n", o->unit, o->help);
	} else {
		fprintf(out, " ; %s\n", o->help);
	}
}

static const char *const type_names[HA_BAL_OPT_TYPE_MAX] = {
	[HA_BAL_OPT_BOOL] = "yes/no",
	[HA_BAL_OPT_UINT] = "whole number",
	[HA_BAL_OPT_DOUBLE] = "number",
	[HA_BAL_OPT_MEM] = "size",
	[HA_BAL_OPT_STRATEGY] = "balance/pack",
};

const char *ha_bal_opt_type_str(enum ha_bal_opt_type t)
{
	return ha_enum_str(type_names, HA_BAL_OPT_TYPE_MAX, (unsigned)t);
}

void ha_bal_policy_options_markdown(FILE *out)
{
	fprintf(out, "| option | type | default | range | unit | meaning |\n");
	fprintf(out, "|---|---|---|---|---|---|\n");
	for (const struct ha_bal_opt *o = options; o->name; o++) {
		char range[64] = "";

		if (o->type == HA_BAL_OPT_UINT || o->type == HA_BAL_OPT_DOUBLE ||
		    o->type == HA_BAL_OPT_MEM) {
			snprintf(range, sizeof(range), "%.15g..%.15g", o->min, o->max);
		}
		fprintf(out, "| %s | %s | %s | %s | %s | %s |\n", o->name,
			ha_bal_opt_type_str(o->type), o->def, range, o->unit, o->help);
	}
}

static void strv_print(FILE *out, const char *key, const struct bal_strv *s)
{
	if (s->n == 0) {
		return;
	}
	size_t col = (size_t)fprintf(out, "%s =", key);

	for (uint32_t i = 0; i < s->n; i++) {
		size_t w = strlen(s->v[i]) + 1;

		/* continuation lines keep each line within inih's limit */
		if (col + w > 120) {
			fprintf(out, "\n\t");
			col = 8;
		}
		col += (size_t)fprintf(out, " %s", s->v[i]);
	}
	fprintf(out, "\n");
}

void ha_bal_policy_print(const struct ha_bal_policy *p, FILE *out)
{
	const struct bal_rules *r = p->rules;

	fprintf(out, "[balance]\n");
	for (const struct ha_bal_opt *o = options; o->name; o++) {
		opt_print(out, p, o);
	}
	for (uint32_t i = 0; i < r->n_groups; i++) {
		fprintf(out, "\n[group %s]\n", r->groups[i].name);
		if (r->groups[i].has_priority) {
			fprintf(out, "priority = %d\n", r->groups[i].priority);
		}
		strv_print(out, "nodes", &r->groups[i].nodes);
		strv_print(out, "guests", &r->groups[i].guests);
	}
	for (uint32_t i = 0; i < r->n_nodes; i++) {
		fprintf(out, "\n[node %s]\n", r->nodes[i].name);
		if (r->nodes[i].has_priority) {
			fprintf(out, "priority = %d\n", r->nodes[i].priority);
		}
	}
	for (uint32_t i = 0; i < r->n_labels; i++) {
		fprintf(out, "\n[%s %s]\n", ha_bal_label_kind_str(r->labels[i].kind),
			r->labels[i].name);
		strv_print(out, "guests", &r->labels[i].guests);
	}
}
