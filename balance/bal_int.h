/*
 * bal_int.h - private to balance/: name tables, string lists, the parsed
 * policy sections.
 */
#ifndef HA_BAL_INT_H
#define HA_BAL_INT_H

#include <stdbool.h>
#include <stdint.h>

#include "balance.h"

/* Bounds of what a policy may declare (checked before allocating). */
#define BAL_MAX_SECTIONS 4096
#define BAL_MAX_LIST_ITEMS 65536

/* A name -> index table; keys are copied. */
struct bal_names {
	char **keys;
	uint32_t *vals;
	uint32_t cap;                 /* power of two */
	uint32_t n;
};

struct bal_names *bal_names_new(uint32_t hint);
void bal_names_free(struct bal_names *t);
/* 0, -EEXIST (the existing index in *old when non-NULL), -ENOMEM. */
int bal_names_add(struct bal_names *t, const char *key, uint32_t val, uint32_t *old);
/* The index or -ENOENT. */
int bal_names_get(const struct bal_names *t, const char *key);
struct bal_names *bal_names_dup(const struct bal_names *t);

/* A growable list of owned strings, with the line each came from. */
struct bal_strv {
	char **v;
	uint32_t *line;
	uint32_t n, cap;
};

int bal_strv_add(struct bal_strv *s, const char *str, uint32_t line);
void bal_strv_clear(struct bal_strv *s);

struct bal_rule_group {
	char name[HA_BAL_NAME_MAX];
	bool has_priority;
	int32_t priority;
	struct bal_strv nodes;        /* nodes that belong to the group */
	struct bal_strv guests;       /* guests restricted to the group */
};

struct bal_rule_node {
	char name[HA_BAL_NAME_MAX];
	bool has_priority;
	int32_t priority;
};

struct bal_rule_label {
	char name[HA_BAL_NAME_MAX];
	enum ha_bal_label_kind kind;
	struct bal_strv guests;
	char file[128];
	uint32_t line;
};

struct bal_rules {
	struct bal_rule_group *groups;
	uint32_t n_groups;
	struct bal_rule_node *nodes;
	uint32_t n_nodes;
	struct bal_rule_label *labels;
	uint32_t n_labels;
	uint32_t n_items;             /* list entries over all sections */
};

void bal_rules_free(struct bal_rules *r);

/* Bounded copy; returns -EINVAL when @src does not fit or is empty. */
int bal_name_copy(char dst[HA_BAL_NAME_MAX], const char *src);
/* A name is 1..63 bytes of [A-Za-z0-9._:@-]. */
bool bal_name_valid(const char *s);

/* Parses "yes|no|true|false|on|off|1|0". */
int bal_parse_bool(const char *s, bool *out);
/* Decimal number in [min, max]; -EINVAL / -ERANGE. */
int bal_parse_double(const char *s, double min, double max, double *out);
/* Signed integer in [min, max]. */
int bal_parse_i64(const char *s, int64_t min, int64_t max, int64_t *out);
/* Memory: integer MiB or with suffix M, G, T (binary). */
int bal_parse_mem(const char *s, uint64_t max, uint64_t *out_mib);
/* CPU amount in CPUs with up to 3 decimals ("1.5") or "1500m". */
int bal_parse_cpu_milli(const char *s, uint64_t max_milli, uint64_t *out);

#endif
