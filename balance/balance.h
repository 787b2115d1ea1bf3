/*
 * balance.h - the load-balancing engine: a cluster snapshot and a policy
 * in, actions out.
 *
 * The engine is pure: no clock, no I/O, no globals. The same snapshot and
 * policy always give the same plan, so the leader, `hactl balance
 * --dry-run`, `hactl simulate` and the golden tests all see the same
 * decisions. Only the explicit loaders (policy files, simulation files) and
 * printers touch files.
 *
 * Units: memory in MiB, CPU in milli-CPUs (1000 = one CPU fully busy),
 * times in milliseconds, load and thresholds in percent. docs/balancing.md
 * describes the policy options, the file formats and the algorithm.
 */
#ifndef HA_BALANCE_H
#define HA_BALANCE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "proto/hactl.pb-c.h"

#define HA_BAL_NAME_MAX 64              /* bytes, with the NUL */
#define HA_BAL_MAX_NODES 16384
#define HA_BAL_MAX_GUESTS (1u << 20)
#define HA_BAL_MAX_LABELS 65536         /* distinct affinity group names */
#define HA_BAL_GUEST_LABELS 8           /* per guest and kind */
#define HA_BAL_MAX_CPUS 65536
#define HA_BAL_MAX_MEM_MIB (1ull << 40) /* 1 EiB */
#define HA_BAL_MAX_GUEST_CPU 65536000u  /* milli-CPUs */
#define HA_BAL_MAX_DIRTY 1048576u       /* MiB/s */

/* ------------------------------------------------------------------ */
/* Enums                                                                */

enum ha_bal_guest_type {
	HA_BAL_CONTAINER = 0,
	HA_BAL_DOMAIN,
	HA_BAL_GUEST_TYPE_MAX
};

enum ha_bal_strategy {
	HA_BAL_STRATEGY_BALANCE = 0, /* spread the load evenly */
	HA_BAL_STRATEGY_PACK,        /* fill few nodes, keep others empty */
	HA_BAL_STRATEGY_MAX
};

enum ha_bal_label_kind {
	HA_BAL_AFFINITY = 0,         /* members run on one node */
	HA_BAL_ANTI_AFFINITY,        /* members run on distinct nodes */
	HA_BAL_LABEL_KIND_MAX
};

/* What the engine is asked for. */
enum ha_bal_op {
	HA_BAL_OP_REBALANCE = 0,     /* periodic or `hactl balance` */
	HA_BAL_OP_CREATE,            /* a new guest needs a node */
	HA_BAL_OP_RECOVER,           /* guests of lost nodes need new nodes */
	HA_BAL_OP_EVACUATE,          /* move every guest off one node */
	HA_BAL_OP_RELOCATE,          /* restart a failing guest on another node */
	HA_BAL_OP_MAX
};

enum ha_bal_action_kind {
	HA_BAL_ACT_PLACE = 0,        /* start (create) or restart (recover) on `to` */
	HA_BAL_ACT_MIGRATE,          /* live-migrate from `from` to `to` */
	HA_BAL_ACT_UNPLACED,         /* no node: `reason` and `detail` say why */
	HA_BAL_ACT_KIND_MAX
};

enum ha_bal_reason {
	HA_BAL_R_CREATE = 0,         /* placement of a new guest */
	HA_BAL_R_RECOVER,            /* restart after its node was lost */
	HA_BAL_R_EVACUATE,           /* node being evacuated on request */
	HA_BAL_R_MAINTENANCE,        /* its node is in maintenance */
	HA_BAL_R_AFFINITY,           /* joins its affinity group */
	HA_BAL_R_ANTI_AFFINITY,      /* leaves a node with a group peer */
	HA_BAL_R_GROUP,              /* runs outside the node group it is bound to */
	HA_BAL_R_OVERLOAD,           /* its node is above a threshold */
	HA_BAL_R_BALANCE,            /* evens out the load */
	HA_BAL_R_PACK,               /* empties a node (strategy pack) */
	HA_BAL_R_NO_ROOM,            /* unplaced: no node has room */
	HA_BAL_R_PINNED,             /* unplaced: the guest is pinned */
	HA_BAL_R_NOT_HA,             /* unplaced: not HA, stays stopped */
	HA_BAL_R_RELOCATE,           /* keeps failing on its node (restart policy) */
	HA_BAL_REASON_MAX
};

const char *ha_bal_guest_type_str(enum ha_bal_guest_type t);
const char *ha_bal_strategy_str(enum ha_bal_strategy s);
const char *ha_bal_label_kind_str(enum ha_bal_label_kind k);
const char *ha_bal_op_str(enum ha_bal_op op);
const char *ha_bal_action_kind_str(enum ha_bal_action_kind k);
const char *ha_bal_reason_str(enum ha_bal_reason r);
/* Parse the _str() names back; return the value or -EINVAL. */
int ha_bal_guest_type_parse(const char *s);
int ha_bal_strategy_parse(const char *s);
int ha_bal_op_parse(const char *s);

/* ------------------------------------------------------------------ */
/* Cluster snapshot                                                     */

struct ha_bal_node {
	char name[HA_BAL_NAME_MAX];
	char group[HA_BAL_NAME_MAX];  /* node group; "" = "default" */
	uint32_t id;                  /* corosync node id (shown only) */
	uint32_t cpus;                /* 1 .. HA_BAL_MAX_CPUS */
	uint64_t mem_mib;             /* total memory */
	uint64_t mem_reserved_mib;    /* kept for the host itself */
	uint32_t cpu_base_milli;      /* CPU used outside the guests */
	int32_t priority;             /* placement prefers higher */
	bool online;                  /* member with a connected agent */
	bool maintenance;             /* takes no guests, is evacuated */
	uint32_t types;               /* bit (1 << type) it runs; 0 = all */
};

struct ha_bal_guest {
	char name[HA_BAL_NAME_MAX];
	char group[HA_BAL_NAME_MAX];  /* runs only in this node group; "" = any */
	enum ha_bal_guest_type type;
	int32_t node;                 /* index in nodes[]; -1 = not placed */
	uint64_t mem_mib;             /* assigned memory (reserved, copied) */
	uint32_t cpu_milli;           /* measured CPU use */
	uint32_t vcpus;               /* assigned virtual CPUs, >= 1 */
	uint32_t dirty_mibps;         /* measured memory dirty rate */
	int32_t priority;             /* recovery order: higher first */
	bool ha;                      /* restarted elsewhere when its node dies */
	bool pinned;                  /* never moved by the engine */
	uint64_t last_move_ms;        /* cluster clock of its last move; 0 never */
	/* Label indexes into cluster->labels; set by ha_bal_guest_add_label(). */
	uint8_t n_aff, n_anti;
	uint32_t aff[HA_BAL_GUEST_LABELS];
	uint32_t anti[HA_BAL_GUEST_LABELS];
};

struct bal_names;

/*
 * A snapshot: what the leader knows now. Arrays are owned by the cluster;
 * fill it through the functions below (they check bounds and duplicate
 * names); read the arrays directly.
 */
struct ha_bal_cluster {
	struct ha_bal_node *nodes;
	uint32_t n_nodes;
	struct ha_bal_guest *guests;
	uint32_t n_guests;
	char (*labels)[HA_BAL_NAME_MAX];  /* interned group names */
	uint32_t n_labels;
	uint64_t now_ms;              /* cluster clock (hold times) */
	/* Consecutive earlier rounds found imbalanced (hold_rounds); the
	 * caller keeps it, ha_bal_plan_apply() updates it. */
	uint32_t imbalanced_rounds;
	/* private */
	uint32_t cap_nodes, cap_guests, cap_labels;
	struct bal_names *node_idx, *guest_idx, *label_idx;
};

/* Returns NULL on allocation failure. Free with ha_bal_cluster_free(). */
struct ha_bal_cluster *ha_bal_cluster_new(void);
void ha_bal_cluster_free(struct ha_bal_cluster *c);
/* A deep copy; NULL on allocation failure. */
struct ha_bal_cluster *ha_bal_cluster_dup(const struct ha_bal_cluster *c);

/*
 * Copies @n in. Returns its index, -EEXIST for a duplicate name, -EINVAL
 * for an empty or unterminated name or out-of-bound values, -E2BIG past
 * HA_BAL_MAX_NODES, -ENOMEM.
 */
int ha_bal_cluster_add_node(struct ha_bal_cluster *c, const struct ha_bal_node *n);
/* Names are 1..63 bytes of [A-Za-z0-9._:@-] (group: same or "").
 * Same for guests; g->node must be -1 or an existing node index. Labels
 * in @g are ignored: add them with ha_bal_guest_add_label(). */
int ha_bal_cluster_add_guest(struct ha_bal_cluster *c, const struct ha_bal_guest *g);
/* Adds guest @guest to group @label of @kind. 0, -EINVAL, -E2BIG (more
 * than HA_BAL_GUEST_LABELS or HA_BAL_MAX_LABELS), -ENOMEM. */
int ha_bal_guest_add_label(struct ha_bal_cluster *c, uint32_t guest,
			   enum ha_bal_label_kind kind, const char *label);
/* Index of the node / guest with that name, or -ENOENT. */
int ha_bal_cluster_find_node(const struct ha_bal_cluster *c, const char *name);
int ha_bal_cluster_find_guest(const struct ha_bal_cluster *c, const char *name);

/* ------------------------------------------------------------------ */
/* Policy                                                               */

struct bal_rules;

struct ha_bal_policy {
	bool enabled;                 /* periodic rebalancing on */
	enum ha_bal_strategy strategy;
	uint32_t interval_s;          /* period of the leader's rounds */
	double cpu_threshold;         /* percent of a node's CPUs */
	double mem_threshold;         /* percent of a node's guest memory */
	double cpu_weight, mem_weight, vcpu_weight;
	double imbalance_threshold;   /* percent; starts a rebalance */
	uint32_t hold_rounds;         /* rounds imbalanced before acting */
	double min_gain;              /* least gain of a move (percent^2) */
	uint32_t hold_time_s;         /* a moved guest stays this long */
	uint32_t max_moves;           /* per round */
	uint64_t max_move_mem_mib;    /* memory copied per round; 0 = no limit */
	uint32_t max_parallel;        /* migrations at once */
	uint32_t max_parallel_node;   /* migrations at once touching one node */
	bool n_plus_one;              /* keep room for any one node's HA guests */
	double cost_per_gib;          /* gain a move must pay per GiB copied */
	uint32_t bandwidth_mibps;     /* migration bandwidth estimate */
	double max_dirty_pct;         /* hotter guests (pct of bandwidth) stay */
	double max_vcpu_ratio;        /* vCPUs per CPU; 0 = unlimited */
	/* [group], [node], [affinity], [anti-affinity] sections */
	struct bal_rules *rules;
};

/* Types of the option table. */
enum ha_bal_opt_type {
	HA_BAL_OPT_BOOL = 0,
	HA_BAL_OPT_UINT,
	HA_BAL_OPT_DOUBLE,
	HA_BAL_OPT_MEM,               /* uint64_t MiB, suffix M/G/T allowed */
	HA_BAL_OPT_STRATEGY,
	HA_BAL_OPT_TYPE_MAX
};

/* One option of section [balance]; the table drives parser and docs. */
struct ha_bal_opt {
	const char *name;
	enum ha_bal_opt_type type;
	double min, max;
	const char *def;
	const char *unit;
	size_t offset;
	const char *help;
};

const char *ha_bal_opt_type_str(enum ha_bal_opt_type t);

/* The [balance] option table, ended by an entry with name == NULL. */
const struct ha_bal_opt *ha_bal_policy_options(void);

/* A policy with the defaults; NULL on allocation failure. */
struct ha_bal_policy *ha_bal_policy_new(void);
void ha_bal_policy_free(struct ha_bal_policy *p);

/*
 * Parses INI text @buf (@len bytes; need not be NUL-terminated) named
 * @fname into @p, over what it already holds. Returns 0, or -EINVAL and
 * "FNAME:LINE: message" in @err (the first error). @p may be half
 * updated on error: parse into a fresh policy and swap on success.
 */
int ha_bal_policy_parse(struct ha_bal_policy *p, const char *fname,
			const char *buf, size_t len, char *err, size_t errlen);

/*
 * Loads one file, or every "*.conf" file of a directory in name order
 * (later files override single options; sections add up), over the
 * defaults. On success *out is a new policy (caller frees). On error
 * *out is untouched, the return is -errno and @err says "FILE:LINE: why"
 * (or "FILE: why"): keep the old policy.
 */
int ha_bal_policy_load(const char *path, struct ha_bal_policy **out,
		       char *err, size_t errlen);

/* Writes the effective policy as INI (comments carry the help). */
void ha_bal_policy_print(const struct ha_bal_policy *p, FILE *out);

/* The option table as Markdown (docs/balancing.md holds a copy that a
 * test keeps equal). */
void ha_bal_policy_options_markdown(FILE *out);

/* ------------------------------------------------------------------ */
/* Scores and plans                                                     */

struct ha_bal_score {
	double value;                 /* the strategy's objective, lower better */
	double imbalance;             /* weighted load spread, percent */
	double cpu_sd, mem_sd, vcpu_sd; /* pooled per-group std dev, percent */
	double cpu_max, mem_max;      /* highest node load, percent */
	uint32_t nodes_eligible;      /* online, not in maintenance */
	uint32_t nodes_used;          /* eligible nodes running a guest */
	uint32_t overloaded;          /* nodes above a threshold */
	uint32_t affinity_split;      /* affinity groups spread over nodes */
	uint32_t anti_affinity_conflicts; /* extra members sharing a node */
	uint32_t on_maintenance;      /* guests on online nodes that take none
					 * (maintenance, being evacuated) */
	uint32_t stranded;            /* HA guests on lost nodes or nowhere */
	uint32_t n1_failing;          /* nodes whose HA guests might not all
					 * restart on the others (N+1), whether
					 * or not the policy keeps the reserve */
};

struct ha_bal_action {
	enum ha_bal_action_kind kind;
	enum ha_bal_reason reason;
	uint32_t guest;               /* index in cluster->guests */
	int32_t from, to;             /* node indexes; -1 = none */
	uint32_t wave;                /* migrations: 1.. ; run wave by wave */
	uint64_t copy_mib;            /* estimated memory to transfer */
	double gain;                  /* score gain credited to this move */
	char detail[160];             /* why, for UNPLACED */
};

/* Initialises @m as the job move (Hactl__JobMove, coordinator/coord_job.c)
 * of a MIGRATE action, or of an UNPLACED one (to "": the plan found no
 * place), with the wave (1..) and the reason (an unplaced one's detail);
 * its strings point into @c and @a, which must outlive it. False, @m
 * untouched, for any other action. */
bool ha_bal_action_move(const struct ha_bal_cluster *c, const struct ha_bal_action *a,
			Hactl__JobMove *m);

struct ha_bal_plan {
	enum ha_bal_op op;
	enum ha_bal_strategy strategy;
	struct ha_bal_action *actions;
	uint32_t n_actions;
	struct ha_bal_score before, after;
	bool triggered;               /* imbalanced or overloaded this round */
	bool held;                    /* triggered, waiting for hold_rounds */
	uint32_t held_moves;          /* moves it would have made */
	uint32_t rounds;              /* imbalanced rounds including this one */
	uint32_t n_moves;             /* migrations in actions[] */
	uint32_t n_places;
	uint32_t n_unplaced;
	uint32_t waves;
	uint64_t copy_mib;            /* sum over migrations */
	uint32_t skipped_hold;        /* guests skipped: moved too recently */
	uint32_t skipped_hot;         /* guests skipped: dirty too fast */
	bool budget_hit;              /* stopped by max_moves / max_move_mem */
	char note[160];
};

/*
 * Rebalance: repairs (guests on nodes in maintenance, split affinity
 * groups, anti-affinity conflicts) then, when the policy is enabled and
 * the cluster has been imbalanced or overloaded for hold_rounds rounds,
 * relief of overloaded nodes and balancing or packing moves within the
 * move budget. Guests on lost nodes are left to HA_BAL_OP_RECOVER.
 * Returns 0 and *out (caller frees with ha_bal_plan_free()), or -errno.
 */
int ha_balance_plan(const struct ha_bal_cluster *c, const struct ha_bal_policy *p,
		    struct ha_bal_plan **out);

/*
 * Placement:
 *  CREATE   @name = a guest of @c with node -1: one PLACE or UNPLACED.
 *  RECOVER  @name = a lost node, or NULL for every HA guest whose node is
 *           offline or missing: PLACE actions in guest priority order;
 *           UNPLACED for those without room and for non-HA guests.
 *  RECOVER  NULL also places HA guests that are not placed (no room at an
 *           earlier recovery).
 *  EVACUATE @name = a node: MIGRATE every guest off it (the node takes
 *           nothing meanwhile), UNPLACED for pinned guests and no room.
 *  RELOCATE @name = a placed guest: one PLACE (restart) on another node,
 *           chosen as for CREATE with its node taking nothing, or UNPLACED.
 * Returns 0 and *out, -ENOENT for an unknown name, -EINVAL for a bad
 * request (CREATE of a placed guest, REBALANCE), -ENOMEM.
 */
int ha_balance_place(const struct ha_bal_cluster *c, const struct ha_bal_policy *p,
		     enum ha_bal_op op, const char *name, struct ha_bal_plan **out);

/* The score of @c under @p. Returns 0 or -ENOMEM. */
int ha_balance_score(const struct ha_bal_cluster *c, const struct ha_bal_policy *p,
		     struct ha_bal_score *out);

void ha_bal_plan_free(struct ha_bal_plan *plan);

/*
 * Applies @plan to @c as if executed: moves and places guests, sets their
 * last_move_ms to c->now_ms and updates c->imbalanced_rounds. For
 * simulations and tests. Returns 0 or -EINVAL if the plan does not match.
 */
int ha_bal_plan_apply(struct ha_bal_cluster *c, const struct ha_bal_plan *plan);

/* Human-readable plan, the format of the golden files and dry runs. */
void ha_bal_score_print(FILE *out, const char *label, const struct ha_bal_score *s);
void ha_bal_plan_print(FILE *out, const struct ha_bal_cluster *c,
		       const struct ha_bal_plan *plan);

/* ------------------------------------------------------------------ */
/* Simulation files (`hactl simulate`)                                  */

enum ha_bal_sim_cmd_kind {
	HA_BAL_SIM_RUN = 0,           /* run an op (arg: guest or node) */
	HA_BAL_SIM_ADVANCE,           /* advance the clock by `seconds` */
	HA_BAL_SIM_SET_NODE,          /* change a node (set node N k=v...) */
	HA_BAL_SIM_SET_GUEST,         /* change a guest */
	HA_BAL_SIM_CMD_MAX
};

const char *ha_bal_sim_cmd_kind_str(enum ha_bal_sim_cmd_kind k);

struct ha_bal_sim_cmd {
	enum ha_bal_sim_cmd_kind kind;
	enum ha_bal_op op;            /* RUN */
	char arg[HA_BAL_NAME_MAX];    /* RUN (may be ""), SET_*: the name */
	uint64_t seconds;             /* ADVANCE */
	char *assign;                 /* SET_*: the "k=v ..." text (owned) */
	uint32_t line;
};

struct ha_bal_sim {
	struct ha_bal_cluster *cluster;
	char policy_file[256];        /* "policy" line, relative to the file; "" */
	struct ha_bal_sim_cmd *cmds;
	uint32_t n_cmds;
};

#define HA_BAL_SIM_MAX_BYTES (256u << 20)
#define HA_BAL_SIM_MAX_CMDS 100000

/*
 * Parses a simulation (docs/balancing.md) from @buf. Returns 0 and *out
 * (free with ha_bal_sim_free()), or -EINVAL with "FNAME:LINE: message" in
 * @err, or -ENOMEM.
 */
int ha_bal_sim_parse(const char *fname, const char *buf, size_t len,
		     struct ha_bal_sim **out, char *err, size_t errlen);
/* Reads and parses @path; -errno and "PATH: why" on I/O errors. */
int ha_bal_sim_load(const char *path, struct ha_bal_sim **out, char *err,
		    size_t errlen);
void ha_bal_sim_free(struct ha_bal_sim *sim);

/* Called after each RUN command with the plan (already applied to c). */
typedef void (*ha_bal_sim_step_fn)(void *user, uint32_t step,
				   const struct ha_bal_sim_cmd *cmd,
				   const struct ha_bal_cluster *c,
				   const struct ha_bal_plan *plan);

/*
 * Runs the commands of @sim (one "run rebalance" when there are none) with
 * policy @p, changing sim->cluster as it goes. @step (may be NULL) sees
 * every plan; *plan_ns (may be NULL) gets the CPU time in nanoseconds
 * spent inside the engine (the only clock use, for benchmarks). Returns 0, or -errno with
 * "FILE:LINE: message" in @err for a command that cannot run.
 */
int ha_bal_sim_run(struct ha_bal_sim *sim, const struct ha_bal_policy *p,
		   const char *fname, ha_bal_sim_step_fn step, void *user,
		   uint64_t *plan_ns, char *err, size_t errlen);

/* The text printer used as @step by simulate and the golden tests. */
void ha_bal_sim_print_step(void *out_file, uint32_t step,
			   const struct ha_bal_sim_cmd *cmd,
			   const struct ha_bal_cluster *c,
			   const struct ha_bal_plan *plan);

/* Writes @c in the simulation format (nodes, guests; no commands). */
int ha_bal_sim_write(FILE *out, const struct ha_bal_cluster *c);

#endif
