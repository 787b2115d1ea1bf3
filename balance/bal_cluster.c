/*
 * bal_cluster.c - the snapshot container, enum names, small parsers.
 */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "bal_int.h"
#include "util.h"

/* ------------------------------------------------------------------ */
/* Enum names                                                           */

static const char *const guest_type_names[HA_BAL_GUEST_TYPE_MAX] = {
	[HA_BAL_CONTAINER] = "container",
	[HA_BAL_DOMAIN] = "domain",
};

static const char *const strategy_names[HA_BAL_STRATEGY_MAX] = {
	[HA_BAL_STRATEGY_BALANCE] = "balance",
	[HA_BAL_STRATEGY_PACK] = "pack",
};

static const char *const label_kind_names[HA_BAL_LABEL_KIND_MAX] = {
	[HA_BAL_AFFINITY] = "affinity",
	[HA_BAL_ANTI_AFFINITY] = "anti-affinity",
};

static const char *const op_names[HA_BAL_OP_MAX] = {
	[HA_BAL_OP_REBALANCE] = "rebalance",
	[HA_BAL_OP_CREATE] = "place",
	[HA_BAL_OP_RECOVER] = "recover",
	[HA_BAL_OP_EVACUATE] = "evacuate",
	[HA_BAL_OP_RELOCATE] = "relocate",
};

static const char *const action_kind_names[HA_BAL_ACT_KIND_MAX] = {
	[HA_BAL_ACT_PLACE] = "place",
	[HA_BAL_ACT_MIGRATE] = "migrate",
	[HA_BAL_ACT_UNPLACED] = "unplaced",
};

static const char *const reason_names[HA_BAL_REASON_MAX] = {
	[HA_BAL_R_CREATE] = "create",
	[HA_BAL_R_RECOVER] = "recover",
	[HA_BAL_R_EVACUATE] = "evacuate",
	[HA_BAL_R_MAINTENANCE] = "maintenance",
	[HA_BAL_R_AFFINITY] = "affinity",
	[HA_BAL_R_ANTI_AFFINITY] = "anti-affinity",
	[HA_BAL_R_GROUP] = "group",
	[HA_BAL_R_OVERLOAD] = "overload",
	[HA_BAL_R_BALANCE] = "balance",
	[HA_BAL_R_PACK] = "pack",
	[HA_BAL_R_NO_ROOM] = "no-room",
	[HA_BAL_R_PINNED] = "pinned",
	[HA_BAL_R_NOT_HA] = "not-ha",
	[HA_BAL_R_RELOCATE] = "relocate",
};

const char *ha_bal_guest_type_str(enum ha_bal_guest_type t)
{
	return ha_enum_str(guest_type_names, HA_BAL_GUEST_TYPE_MAX, (unsigned)t);
}

const char *ha_bal_strategy_str(enum ha_bal_strategy s)
{
	return ha_enum_str(strategy_names, HA_BAL_STRATEGY_MAX, (unsigned)s);
}

const char *ha_bal_label_kind_str(enum ha_bal_label_kind k)
{
	return ha_enum_str(label_kind_names, HA_BAL_LABEL_KIND_MAX, (unsigned)k);
}

const char *ha_bal_op_str(enum ha_bal_op op)
{
	return ha_enum_str(op_names, HA_BAL_OP_MAX, (unsigned)op);
}

const char *ha_bal_action_kind_str(enum ha_bal_action_kind k)
{
	return ha_enum_str(action_kind_names, HA_BAL_ACT_KIND_MAX, (unsigned)k);
}

const char *ha_bal_reason_str(enum ha_bal_reason r)
{
	return ha_enum_str(reason_names, HA_BAL_REASON_MAX, (unsigned)r);
}

bool ha_bal_action_move(const struct ha_bal_cluster *c, const struct ha_bal_action *a,
			Hactl__JobMove *m)
{
	if (a->kind != HA_BAL_ACT_MIGRATE && a->kind != HA_BAL_ACT_UNPLACED) {
		return false;
	}
	hactl__job_move__init(m);
	m->guest = (char *)c->guests[a->guest].name;
	m->from = (char *)(a->from >= 0 ? c->nodes[a->from].name : "");
	m->to = (char *)(a->kind == HA_BAL_ACT_MIGRATE && a->to >= 0 ? c->nodes[a->to].name : "");
	m->has_wave = true;
	m->wave = a->wave ? a->wave : 1;
	m->reason = (char *)(a->detail[0] ? a->detail : ha_bal_reason_str(a->reason));
	return true;
}

int ha_bal_guest_type_parse(const char *s)
{
	return ha_enum_parse(guest_type_names, HA_BAL_GUEST_TYPE_MAX, s);
}

int ha_bal_strategy_parse(const char *s)
{
	return ha_enum_parse(strategy_names, HA_BAL_STRATEGY_MAX, s);
}

int ha_bal_op_parse(const char *s)
{
	if (s && strcmp(s, "create") == 0) {
		return HA_BAL_OP_CREATE;
	}
	return ha_enum_parse(op_names, HA_BAL_OP_MAX, s);
}

/* ------------------------------------------------------------------ */
/* Name table: open addressing, FNV-1a                                  */

static uint32_t name_hash(const char *s)
{
	uint32_t h = 2166136261u;

	for (; *s; s++) {
		h ^= (uint8_t)*s;
		h *= 16777619u;
	}
	return h;
}

struct bal_names *bal_names_new(uint32_t hint)
{
	struct bal_names *t = calloc(1, sizeof(*t));
	uint32_t cap = 16;

	if (t == NULL) {
		return NULL;
	}
	while (cap < hint * 2 && cap < (1u << 30)) {
		cap <<= 1;
	}
	t->keys = calloc(cap, sizeof(*t->keys));
	t->vals = calloc(cap, sizeof(*t->vals));
	if (t->keys == NULL || t->vals == NULL) {
		bal_names_free(t);
		return NULL;
	}
	t->cap = cap;
	return t;
}

void bal_names_free(struct bal_names *t)
{
	if (t == NULL) {
		return;
	}
	if (t->keys) {
		for (uint32_t i = 0; i < t->cap; i++) {
			free(t->keys[i]);
		}
	}
	free(t->keys);
	free(t->vals);
	free(t);
}

static uint32_t names_slot(char *const *keys, uint32_t cap, const char *key)
{
	uint32_t i = name_hash(key) & (cap - 1);

	while (keys[i] && strcmp(keys[i], key) != 0) {
		i = (i + 1) & (cap - 1);
	}
	return i;
}

static int names_grow(struct bal_names *t)
{
	uint32_t cap = t->cap * 2;
	char **keys = calloc(cap, sizeof(*keys));
	uint32_t *vals = calloc(cap, sizeof(*vals));

	if (keys == NULL || vals == NULL || cap < t->cap) {
		free(keys);
		free(vals);
		return -ENOMEM;
	}
	for (uint32_t i = 0; i < t->cap; i++) {
		if (t->keys[i]) {
			uint32_t j = names_slot(keys, cap, t->keys[i]);

			keys[j] = t->keys[i];
			vals[j] = t->vals[i];
		}
	}
	free(t->keys);
	free(t->vals);
	t->keys = keys;
	t->vals = vals;
	t->cap = cap;
	return 0;
}

int bal_names_add(struct bal_names *t, const char *key, uint32_t val, uint32_t *old)
{
	uint32_t i;

	if ((t->n + 1) * 2 > t->cap && names_grow(t) < 0) {
		return -ENOMEM;
	}
	i = names_slot(t->keys, t->cap, key);
	if (t->keys[i]) {
		if (old) {
			*old = t->vals[i];
		}
		return -EEXIST;
	}
	t->keys[i] = strdup(key);
	if (t->keys[i] == NULL) {
		return -ENOMEM;
	}
	t->vals[i] = val;
	t->n++;
	return 0;
}

int bal_names_get(const struct bal_names *t, const char *key)
{
	uint32_t i;

	if (t == NULL || key == NULL) {
		return -ENOENT;
	}
	i = names_slot(t->keys, t->cap, key);
	return t->keys[i] ? (int)t->vals[i] : -ENOENT;
}

struct bal_names *bal_names_dup(const struct bal_names *t)
{
	struct bal_names *d = calloc(1, sizeof(*d));

	if (d == NULL) {
		return NULL;
	}
	d->keys = calloc(t->cap, sizeof(*d->keys));
	d->vals = calloc(t->cap, sizeof(*d->vals));
	if (d->keys == NULL || d->vals == NULL) {
		bal_names_free(d);
		return NULL;
	}
	d->cap = t->cap;
	for (uint32_t i = 0; i < t->cap; i++) {
		if (t->keys[i]) {
			d->keys[i] = strdup(t->keys[i]);
			if (d->keys[i] == NULL) {
				bal_names_free(d);
				return NULL;
			}
			d->vals[i] = t->vals[i];
		}
	}
	d->n = t->n;
	return d;
}

/* ------------------------------------------------------------------ */
/* String lists                                                         */

int bal_strv_add(struct bal_strv *s, const char *str, uint32_t line)
{
	if (s->n == s->cap) {
		uint32_t cap = s->cap ? s->cap * 2 : 8;
		char **v = realloc(s->v, cap * sizeof(*v));

		if (v == NULL) {
			return -ENOMEM;
		}
		s->v = v;
		uint32_t *l = realloc(s->line, cap * sizeof(*l));

		if (l == NULL) {
			return -ENOMEM;
		}
		s->line = l;
		s->cap = cap;
	}
	s->v[s->n] = strdup(str);
	if (s->v[s->n] == NULL) {
		return -ENOMEM;
	}
	s->line[s->n] = line;
	s->n++;
	return 0;
}

void bal_strv_clear(struct bal_strv *s)
{
	for (uint32_t i = 0; i < s->n; i++) {
		free(s->v[i]);
	}
	free(s->v);
	free(s->line);
	memset(s, 0, sizeof(*s));
}

void bal_rules_free(struct bal_rules *r)
{
	if (r == NULL) {
		return;
	}
	for (uint32_t i = 0; i < r->n_groups; i++) {
		bal_strv_clear(&r->groups[i].nodes);
		bal_strv_clear(&r->groups[i].guests);
	}
	for (uint32_t i = 0; i < r->n_labels; i++) {
		bal_strv_clear(&r->labels[i].guests);
	}
	free(r->groups);
	free(r->nodes);
	free(r->labels);
	free(r);
}

/* ------------------------------------------------------------------ */
/* Small parsers                                                        */

bool bal_name_valid(const char *s)
{
	size_t n = 0;

	if (s == NULL || *s == 0) {
		return false;
	}
	for (; *s; s++, n++) {
		char ch = *s;

		if (n >= HA_BAL_NAME_MAX - 1) {
			return false;
		}
		if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
		      (ch >= '0' && ch <= '9') || ch == '.' || ch == '_' ||
		      ch == '-' || ch == ':' || ch == '@')) {
			return false;
		}
	}
	return true;
}

int bal_name_copy(char dst[HA_BAL_NAME_MAX], const char *src)
{
	size_t n = src ? strnlen(src, HA_BAL_NAME_MAX) : 0;

	if (n == 0 || n >= HA_BAL_NAME_MAX) {
		return -EINVAL;
	}
	memcpy(dst, src, n);
	dst[n] = 0;
	return 0;
}

int bal_parse_bool(const char *s, bool *out)
{
	static const char *const yes[] = { "yes", "true", "on", "1" };
	static const char *const no[] = { "no", "false", "off", "0" };

	for (size_t i = 0; i < 4; i++) {
		if (strcmp(s, yes[i]) == 0) {
			*out = true;
			return 0;
		}
		if (strcmp(s, no[i]) == 0) {
			*out = false;
			return 0;
		}
	}
	return -EINVAL;
}

int bal_parse_double(const char *s, double min, double max, double *out)
{
	char *end;
	double v;

	/* Plain decimals only: no hex, inf, nan, leading blanks. */
	if (s == NULL || !((*s >= '0' && *s <= '9') || *s == '-' || *s == '.')) {
		return -EINVAL;
	}
	for (const char *p = s; *p; p++) {
		if (!((*p >= '0' && *p <= '9') || *p == '.' || *p == '-' ||
		      *p == 'e' || *p == 'E' || *p == '+')) {
			return -EINVAL;
		}
	}
	errno = 0;
	v = strtod(s, &end);
	if (end == s || *end != 0 || errno == ERANGE || !isfinite(v)) {
		return -EINVAL;
	}
	if (v < min || v > max) {
		return -ERANGE;
	}
	*out = v;
	return 0;
}

int bal_parse_i64(const char *s, int64_t min, int64_t max, int64_t *out)
{
	char *end;
	long long v;

	if (s == NULL || !((*s >= '0' && *s <= '9') || *s == '-')) {
		return -EINVAL;
	}
	errno = 0;
	v = strtoll(s, &end, 10);
	if (end == s || *end != 0) {
		return -EINVAL;
	}
	if (errno == ERANGE || v < min || v > max) {
		return -ERANGE;
	}
	*out = v;
	return 0;
}

int bal_parse_mem(const char *s, uint64_t max, uint64_t *out_mib)
{
	char buf[32];
	size_t n = s ? strnlen(s, sizeof(buf)) : 0;
	uint64_t mul = 1;
	int64_t v;
	int rc;

	if (n == 0 || n >= sizeof(buf)) {
		return -EINVAL;
	}
	memcpy(buf, s, n + 1);
	switch (buf[n - 1]) {
	case 'M':
		buf[--n] = 0;
		break;
	case 'G':
		mul = 1024;
		buf[--n] = 0;
		break;
	case 'T':
		mul = 1024 * 1024;
		buf[--n] = 0;
		break;
	default:
		break;
	}
	if (n == 0 || buf[0] == '-') {
		return -EINVAL;
	}
	rc = bal_parse_i64(buf, 0, INT64_MAX, &v);
	if (rc < 0) {
		return rc;
	}
	if ((uint64_t)v > max / mul) {
		return -ERANGE;
	}
	*out_mib = (uint64_t)v * mul;
	return 0;
}

int bal_parse_cpu_milli(const char *s, uint64_t max_milli, uint64_t *out)
{
	uint64_t whole = 0, frac = 0;
	unsigned nfrac = 0;
	size_t n = s ? strlen(s) : 0;
	const char *p = s;

	if (n == 0) {
		return -EINVAL;
	}
	if (s[n - 1] == 'm') {
		int64_t v;
		char buf[32];

		if (n - 1 == 0 || n >= sizeof(buf) || s[0] == '-') {
			return -EINVAL;
		}
		memcpy(buf, s, n - 1);
		buf[n - 1] = 0;
		if (bal_parse_i64(buf, 0, (int64_t)max_milli, &v) < 0) {
			return -ERANGE;
		}
		*out = (uint64_t)v;
		return 0;
	}
	if (*p < '0' || *p > '9') {
		return -EINVAL;
	}
	for (; *p >= '0' && *p <= '9'; p++) {
		whole = whole * 10 + (uint64_t)(*p - '0');
		if (whole > max_milli / 1000 + 1) {
			return -ERANGE;
		}
	}
	if (*p == '.') {
		p++;
		if (*p < '0' || *p > '9') {
			return -EINVAL;
		}
		for (; *p >= '0' && *p <= '9'; p++) {
			if (nfrac == 3) {
				return -EINVAL;
			}
			frac = frac * 10 + (uint64_t)(*p - '0');
			nfrac++;
		}
		while (nfrac < 3) {
			frac *= 10;
			nfrac++;
		}
	}
	if (*p != 0) {
		return -EINVAL;
	}
	if (whole * 1000 + frac > max_milli) {
		return -ERANGE;
	}
	*out = whole * 1000 + frac;
	return 0;
}

/* ------------------------------------------------------------------ */
/* The snapshot                                                         */

struct ha_bal_cluster *ha_bal_cluster_new(void)
{
	struct ha_bal_cluster *c = calloc(1, sizeof(*c));

	if (c == NULL) {
		return NULL;
	}
	c->node_idx = bal_names_new(16);
	c->guest_idx = bal_names_new(64);
	c->label_idx = bal_names_new(16);
	if (!c->node_idx || !c->guest_idx || !c->label_idx) {
		ha_bal_cluster_free(c);
		return NULL;
	}
	return c;
}

void ha_bal_cluster_free(struct ha_bal_cluster *c)
{
	if (c == NULL) {
		return;
	}
	free(c->nodes);
	free(c->guests);
	free(c->labels);
	bal_names_free(c->node_idx);
	bal_names_free(c->guest_idx);
	bal_names_free(c->label_idx);
	free(c);
}

struct ha_bal_cluster *ha_bal_cluster_dup(const struct ha_bal_cluster *c)
{
	struct ha_bal_cluster *d = calloc(1, sizeof(*d));

	if (d == NULL) {
		return NULL;
	}
	*d = *c;
	d->nodes = NULL;
	d->guests = NULL;
	d->labels = NULL;
	d->node_idx = d->guest_idx = d->label_idx = NULL;
	if (c->cap_nodes) {
		d->nodes = malloc(c->cap_nodes * sizeof(*d->nodes));
		if (d->nodes == NULL) {
			goto fail;
		}
		memcpy(d->nodes, c->nodes, c->n_nodes * sizeof(*d->nodes));
	}
	if (c->cap_guests) {
		d->guests = malloc(c->cap_guests * sizeof(*d->guests));
		if (d->guests == NULL) {
			goto fail;
		}
		memcpy(d->guests, c->guests, c->n_guests * sizeof(*d->guests));
	}
	if (c->cap_labels) {
		d->labels = malloc(c->cap_labels * sizeof(*d->labels));
		if (d->labels == NULL) {
			goto fail;
		}
		memcpy(d->labels, c->labels, c->n_labels * sizeof(*d->labels));
	}
	d->node_idx = bal_names_dup(c->node_idx);
	d->guest_idx = bal_names_dup(c->guest_idx);
	d->label_idx = bal_names_dup(c->label_idx);
	if (!d->node_idx || !d->guest_idx || !d->label_idx) {
		goto fail;
	}
	return d;
fail:
	ha_bal_cluster_free(d);
	return NULL;
}

static int grow(void **arr, uint32_t *cap, uint32_t need, size_t elem)
{
	uint32_t ncap;
	void *p;

	if (need <= *cap) {
		return 0;
	}
	ncap = *cap ? *cap : 16;
	while (ncap < need) {
		ncap *= 2;
	}
	p = realloc(*arr, (size_t)ncap * elem);
	if (p == NULL) {
		return -ENOMEM;
	}
	*arr = p;
	*cap = ncap;
	return 0;
}

static bool str_terminated(const char *s, size_t max)
{
	return memchr(s, 0, max) != NULL;
}

int ha_bal_cluster_add_node(struct ha_bal_cluster *c, const struct ha_bal_node *n)
{
	struct ha_bal_node *dst;
	int rc;

	if (!str_terminated(n->name, sizeof(n->name)) ||
	    !str_terminated(n->group, sizeof(n->group)) ||
	    !bal_name_valid(n->name) ||
	    (n->group[0] && !bal_name_valid(n->group))) {
		return -EINVAL;
	}
	if (n->cpus == 0 || n->cpus > HA_BAL_MAX_CPUS || n->mem_mib == 0 ||
	    n->mem_mib > HA_BAL_MAX_MEM_MIB || n->mem_reserved_mib >= n->mem_mib ||
	    n->cpu_base_milli > n->cpus * 1000u ||
	    (n->types >> HA_BAL_GUEST_TYPE_MAX) != 0) {
		return -EINVAL;
	}
	if (c->n_nodes >= HA_BAL_MAX_NODES) {
		return -E2BIG;
	}
	rc = grow((void **)&c->nodes, &c->cap_nodes, c->n_nodes + 1, sizeof(*c->nodes));
	if (rc < 0) {
		return rc;
	}
	rc = bal_names_add(c->node_idx, n->name, c->n_nodes, NULL);
	if (rc < 0) {
		return rc;
	}
	dst = &c->nodes[c->n_nodes];
	*dst = *n;
	return (int)c->n_nodes++;
}

int ha_bal_cluster_add_guest(struct ha_bal_cluster *c, const struct ha_bal_guest *g)
{
	struct ha_bal_guest *dst;
	int rc;

	if (!str_terminated(g->name, sizeof(g->name)) ||
	    !str_terminated(g->group, sizeof(g->group)) ||
	    !bal_name_valid(g->name) ||
	    (g->group[0] && !bal_name_valid(g->group))) {
		return -EINVAL;
	}
	if ((unsigned)g->type >= HA_BAL_GUEST_TYPE_MAX ||
	    (g->node != -1 && (g->node < 0 || (uint32_t)g->node >= c->n_nodes)) ||
	    g->mem_mib == 0 || g->mem_mib > HA_BAL_MAX_MEM_MIB ||
	    g->cpu_milli > HA_BAL_MAX_GUEST_CPU || g->vcpus == 0 ||
	    g->vcpus > HA_BAL_MAX_CPUS || g->dirty_mibps > HA_BAL_MAX_DIRTY) {
		return -EINVAL;
	}
	if (c->n_guests >= HA_BAL_MAX_GUESTS) {
		return -E2BIG;
	}
	rc = grow((void **)&c->guests, &c->cap_guests, c->n_guests + 1,
		  sizeof(*c->guests));
	if (rc < 0) {
		return rc;
	}
	rc = bal_names_add(c->guest_idx, g->name, c->n_guests, NULL);
	if (rc < 0) {
		return rc;
	}
	dst = &c->guests[c->n_guests];
	*dst = *g;
	dst->n_aff = dst->n_anti = 0;
	return (int)c->n_guests++;
}

int ha_bal_guest_add_label(struct ha_bal_cluster *c, uint32_t guest,
			   enum ha_bal_label_kind kind, const char *label)
{
	struct ha_bal_guest *g;
	int idx;
	int rc;

	if (guest >= c->n_guests || (unsigned)kind >= HA_BAL_LABEL_KIND_MAX ||
	    !bal_name_valid(label)) {
		return -EINVAL;
	}
	g = &c->guests[guest];
	idx = bal_names_get(c->label_idx, label);
	if (idx < 0) {
		if (c->n_labels >= HA_BAL_MAX_LABELS) {
			return -E2BIG;
		}
		rc = grow((void **)&c->labels, &c->cap_labels, c->n_labels + 1,
			  sizeof(*c->labels));
		if (rc < 0) {
			return rc;
		}
		rc = bal_names_add(c->label_idx, label, c->n_labels, NULL);
		if (rc < 0) {
			return rc;
		}
		snprintf(c->labels[c->n_labels], HA_BAL_NAME_MAX, "%s", label);
		idx = (int)c->n_labels++;
	}
	if (kind == HA_BAL_AFFINITY) {
		for (unsigned i = 0; i < g->n_aff; i++) {
			if (g->aff[i] == (uint32_t)idx) {
				return 0;
			}
		}
		if (g->n_aff >= HA_BAL_GUEST_LABELS) {
			return -E2BIG;
		}
		g->aff[g->n_aff++] = (uint32_t)idx;
	} else {
		for (unsigned i = 0; i < g->n_anti; i++) {
			if (g->anti[i] == (uint32_t)idx) {
				return 0;
			}
		}
		if (g->n_anti >= HA_BAL_GUEST_LABELS) {
			return -E2BIG;
		}
		g->anti[g->n_anti++] = (uint32_t)idx;
	}
	return 0;
}

int ha_bal_cluster_find_node(const struct ha_bal_cluster *c, const char *name)
{
	return bal_names_get(c->node_idx, name);
}

int ha_bal_cluster_find_guest(const struct ha_bal_cluster *c, const char *name)
{
	return bal_names_get(c->guest_idx, name);
}
