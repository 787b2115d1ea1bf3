/*
 * coord_balance.c - the balancing engine online (docs/balancing.md).
 *
 * Every coordinator keeps the policy of its [coordinator] policy path,
 * reloaded when the files change (or on SIGHUP); a bad file keeps the
 * policy in force and says why. Every coordinator can describe the
 * cluster to the engine (coord_balance_snapshot), so `hactl balance` plans
 * on the node it runs on with the same engine and input as the leader.
 * Only the leader acts by itself: each interval of an enabled policy it
 * runs one round and commits the first wave of the plan as migrations,
 * through the same transactions as `hactl migrate`. A round waits while
 * any migration is in flight, so one round's moves are over before the
 * next round looks; the engine's hold time keeps a moved guest in place.
 */
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <qb/qblog.h>

#include "coordinator.h"
#include "guestdef.h"
#include "util.h"

#define TICK_MS 1000

/* FNV-1a over what identifies the policy files' contents cheaply. */
static uint64_t fnv(uint64_t h, const void *p, size_t n)
{
	const unsigned char *b = p;

	for (size_t i = 0; i < n; i++) {
		h ^= b[i];
		h *= 0x100000001b3ull;
	}
	return h;
}

static uint64_t stat_sig(uint64_t h, const char *path)
{
	struct stat sb;

	if (stat(path, &sb) < 0) {
		return fnv(h, "-", 1);
	}
	h = fnv(h, path, strlen(path));
	h = fnv(h, &sb.st_mtim, sizeof(sb.st_mtim));
	h = fnv(h, &sb.st_size, sizeof(sb.st_size));
	h = fnv(h, &sb.st_ino, sizeof(sb.st_ino));
	return h;
}

/* Changes whenever a policy file appears, goes or is rewritten. */
static uint64_t policy_sig(const char *path)
{
	uint64_t h = stat_sig(0xcbf29ce484222325ull, path);
	struct dirent *de;
	DIR *d = opendir(path);

	if (d == NULL) {
		return h;
	}
	while ((de = readdir(d)) != NULL) {
		size_t n = strlen(de->d_name);
		char p[PATH_MAX];

		if (n < 6 || strcmp(de->d_name + n - 5, ".conf") != 0) {
			continue;
		}
		if (snprintf(p, sizeof(p), "%s/%s", path, de->d_name) < (int)sizeof(p)) {
			/* readdir order varies: combine order-independently */
			h ^= stat_sig(0xcbf29ce484222325ull, p);
		}
	}
	closedir(d);
	return h;
}

void coord_balance_reload(struct coord *c, bool force)
{
	const char *path = c->cfg.policy_path;
	uint64_t sig = policy_sig(path);
	struct ha_bal_policy *p = NULL;
	struct stat sb;
	char err[512];
	int rc;

	if (!force && c->bal.policy && sig == c->bal.policy_sig) {
		return;
	}
	c->bal.policy_sig = sig;
	if (stat(path, &sb) < 0 && errno == ENOENT) {
		/* No policy written: the defaults for placement and repairs
		 * asked for, no rounds of our own. */
		p = ha_bal_policy_new();
		rc = p ? 0 : -ENOMEM;
		snprintf(err, sizeof(err), "out of memory");
		if (p) {
			p->enabled = false;
		}
	} else {
		rc = ha_bal_policy_load(path, &p, err, sizeof(err));
	}
	if (rc < 0) {
		if (strcmp(err, c->bal.policy_err) != 0) {
			qb_log(LOG_ERR, "balancing policy refused, keeping the one in force: %s",
			       err);
			coord_event(c, "policy refused (old one kept): %s", err);
		}
		snprintf(c->bal.policy_err, sizeof(c->bal.policy_err), "%s", err);
		if (c->bal.policy == NULL) {
			c->bal.policy = ha_bal_policy_new();
		}
		return;
	}
	ha_bal_policy_free(c->bal.policy);
	c->bal.policy = p;
	c->bal.policy_err[0] = 0;
	qb_log(LOG_NOTICE, "balancing policy loaded from %s: %s, %s every %u s", path,
	       p->enabled ? "enabled" : "disabled", ha_bal_strategy_str(p->strategy),
	       p->interval_s);
	c->bal.next_ms = 0;
}

/* Nodes are named from corosync's nodelist; one without a name gets one. */
static void node_name(const struct coord_node *n, char out[HA_BAL_NAME_MAX])
{
	if (n->name[0]) {
		snprintf(out, HA_BAL_NAME_MAX, "%s", n->name);
	} else {
		snprintf(out, HA_BAL_NAME_MAX, "node%u", n->id);
	}
}

static enum ha_bal_guest_type guest_type(const char *t)
{
	return t && strcmp(t, "domain") == 0 ? HA_BAL_DOMAIN : HA_BAL_CONTAINER;
}

/* What a guest's definition tells the engine; unplaced, no use measured. */
static void guest_from_def(struct ha_bal_guest *bg, const char *name,
			   const struct ha_guest_def *def)
{
	memset(bg, 0, sizeof(*bg));
	snprintf(bg->name, sizeof(bg->name), "%s", name);
	bg->type = guest_type(def->type);
	bg->node = -1;
	bg->mem_mib = (def->mem_kib + 1023) / 1024;
	if (bg->mem_mib == 0) {
		bg->mem_mib = 1;
	}
	bg->vcpus = def->cpus ? def->cpus : 1;
	bg->priority = (int32_t)def->priority;
	bg->ha = def->restart != HA_RESTART_NONE;
}

int coord_balance_snapshot(const struct coord *c, struct ha_bal_cluster **out,
			   char *why, size_t whylen)
{
	const struct coord_state *st = &c->state;
	struct ha_bal_cluster *cl = ha_bal_cluster_new();
	uint64_t guest_cpu[COORD_MAX_NODES] = { 0 };
	int rc = 0;

	if (cl == NULL) {
		snprintf(why, whylen, "out of memory");
		return -ENOMEM;
	}
	cl->now_ms = ha_wall_ms();
	cl->imbalanced_rounds = c->bal.imbalanced_rounds;
	for (size_t i = 0; i < st->n_guests; i++) {
		const Hactl__GuestRecord *g = st->guests[i];

		for (size_t j = 0; j < st->n_nodes; j++) {
			if (st->nodes[j].id == g->owner) {
				guest_cpu[j] += g->cpu_milli;
			}
		}
	}
	for (size_t i = 0; i < st->n_nodes && rc >= 0; i++) {
		const struct coord_node *n = &st->nodes[i];
		struct ha_bal_node bn = { 0 };
		uint64_t used;

		node_name(n, bn.name);
		bn.id = n->id;
		bn.cpus = n->facts && n->facts->cpus ? n->facts->cpus : 1;
		bn.mem_mib = n->facts && n->facts->mem_total_kib >= 1024 ?
			n->facts->mem_total_kib / 1024 : 1;
		bn.online = coord_is_member(c, n->id) && n->agent_connected && !n->fenced &&
			    n->facts != NULL;
		bn.maintenance = n->maintenance;
		/* what the host uses besides its guests (agents, daemons, others) */
		used = n->usage ? (uint64_t)n->usage->cpu_permille * bn.cpus : 0;
		bn.cpu_base_milli = used > guest_cpu[i] ? (uint32_t)(used - guest_cpu[i]) : 0;
		if (bn.cpu_base_milli > bn.cpus * 1000u) {
			bn.cpu_base_milli = bn.cpus * 1000u;
		}
		if (n->facts && (n->facts->qemu_version == NULL || !n->facts->qemu_version[0])) {
			bn.types = 1u << HA_BAL_CONTAINER;
		}
		rc = ha_bal_cluster_add_node(cl, &bn);
		if (rc < 0) {
			snprintf(why, whylen, "node '%s': %s", bn.name, strerror(-rc));
		}
	}
	for (size_t i = 0; i < st->n_guests && rc >= 0; i++) {
		const Hactl__GuestRecord *g = st->guests[i];
		const struct coord_node *owner = coord_state_node((struct coord_state *)st,
								  g->owner);
		struct ha_bal_guest bg;
		struct ha_guest_def def;
		char err[256], name[HA_BAL_NAME_MAX];

		/* Only guests that should run use room; stopped ones have none. */
		if (!g->desired || strcmp(g->desired, "running") != 0 || owner == NULL) {
			continue;
		}
		if (g->definition.data == NULL ||
		    ha_guestdef_parse((const char *)g->definition.data, g->definition.len,
				      g->name, &def, err, sizeof(err)) < 0) {
			continue; /* cannot happen: definitions are checked on define */
		}
		guest_from_def(&bg, g->name, &def);
		node_name(owner, name);
		bg.node = ha_bal_cluster_find_node(cl, name);
		if (bg.node < 0) {
			bg.node = -1;
		}
		bg.cpu_milli = g->cpu_milli;
		if (bg.cpu_milli > bg.vcpus * 1000u) {
			bg.cpu_milli = bg.vcpus * 1000u;
		}
		if (g->migration && g->migration->state &&
		    strcmp(g->migration->state, "committed") == 0) {
			bg.last_move_ms = g->migration->ended_ms;
		}
		rc = ha_bal_cluster_add_guest(cl, &bg);
		if (rc < 0) {
			snprintf(why, whylen, "guest '%s': %s", bg.name, strerror(-rc));
		}
	}
	if (rc < 0) {
		ha_bal_cluster_free(cl);
		return rc;
	}
	*out = cl;
	return 0;
}

static size_t migrations_in_flight(const struct coord *c)
{
	size_t n = 0;

	for (size_t i = 0; i < c->state.n_guests; i++) {
		const Hactl__Migration *m = c->state.guests[i]->migration;

		n += m && m->state && strcmp(m->state, "transferring") == 0;
	}
	return n;
}

static bool fencing_busy(const struct coord *c)
{
	for (size_t i = 0; i < COORD_MAX_NODES; i++) {
		if (c->fence_ops[i].node && c->fence_ops[i].state != COORD_FENCE_IDLE) {
			return true;
		}
	}
	return false;
}

/* Commits the migrations of the plan's first wave; returns how many. */
static unsigned run_wave(struct coord *c, const struct ha_bal_cluster *cl,
			 const struct ha_bal_plan *plan)
{
	struct coord_view v = { .members = c->members, .n_members = c->n_members };
	unsigned sent = 0;

	for (uint32_t i = 0; i < plan->n_actions; i++) {
		const struct ha_bal_action *a = &plan->actions[i];
		Hactl__CpgCommit cm = HACTL__CPG_COMMIT__INIT;
		Hactl__Change ch = HACTL__CHANGE__INIT;
		Hactl__MigrateStartChange ms = HACTL__MIGRATE_START_CHANGE__INIT;
		Hactl__MigrationOptions mo = HACTL__MIGRATION_OPTIONS__INIT;
		char why[256], node[COORD_NAME_MAX + 1];

		if (a->kind != HA_BAL_ACT_MIGRATE || a->wave != 1) {
			continue;
		}
		mo.mode = "auto";
		mo.transport = "tcp";
		ms.guest = (char *)cl->guests[a->guest].name;
		ms.node = (char *)cl->nodes[a->to].name;
		ms.options = &mo;
		ch.kind_case = HACTL__CHANGE__KIND_MIGRATE_START;
		ch.migrate_start = &ms;
		if (coord_change_prepare(&c->state, &v, &ch, node, sizeof(node), why,
					 sizeof(why)) < 0) {
			qb_log(LOG_WARNING, "balance: not moving %s to %s: %s", ms.guest, ms.node,
			       why);
			continue;
		}
		cm.leader = c->local_id;
		cm.seq = c->state.seq + 1;
		cm.change = &ch;
		if (coord_cpg_send(c, HA_MSG_CPG_COMMIT, &cm.base) == 0) {
			qb_log(LOG_NOTICE, "balance: moving %s from %s to %s (%s)", ms.guest,
			       cl->nodes[a->from].name, ms.node, ha_bal_reason_str(a->reason));
			sent++;
		}
	}
	return sent;
}

static void round_note(struct coord *c, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
static void round_note(struct coord *c, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(c->bal.last_round, sizeof(c->bal.last_round), fmt, ap);
	va_end(ap);
	c->bal.last_round_ms = ha_wall_ms();
}

/* One round of the leader's periodic rebalancing. */
static void balance_round(struct coord *c)
{
	struct ha_bal_cluster *cl = NULL;
	struct ha_bal_plan *plan = NULL;
	size_t busy = migrations_in_flight(c);
	char why[256];
	unsigned sent;
	int rc;

	if (busy) {
		round_note(c, "waiting: %zu migrations in flight", busy);
		return;
	}
	if (fencing_busy(c)) {
		round_note(c, "waiting: fencing in progress");
		return;
	}
	rc = coord_balance_snapshot(c, &cl, why, sizeof(why));
	if (rc == 0) {
		rc = ha_balance_plan(cl, c->bal.policy, &plan);
		snprintf(why, sizeof(why), "%s", strerror(-rc));
	}
	if (rc < 0) {
		qb_log(LOG_ERR, "balance round failed: %s", why);
		round_note(c, "failed: %s", why);
		ha_bal_cluster_free(cl);
		return;
	}
	c->bal.imbalanced_rounds = plan->triggered ? plan->rounds : 0;
	sent = run_wave(c, cl, plan);
	round_note(c, "%s; imbalance %.1f%%, %u moves planned, %u started%s%s",
		   plan->held ? "held" : plan->triggered ? "triggered" : "balanced",
		   plan->before.imbalance, plan->n_moves, sent, plan->note[0] ? "; " : "",
		   plan->note);
	if (sent) {
		coord_event(c, "balance: %u moves started (imbalance %.1f%% -> %.1f%%)", sent,
			    plan->before.imbalance, plan->after.imbalance);
	}
	qb_log(sent ? LOG_NOTICE : LOG_DEBUG, "balance round: %s", c->bal.last_round);
	ha_bal_plan_free(plan);
	ha_bal_cluster_free(cl);
}

static void tick(void *data)
{
	struct coord *c = data;
	uint64_t now = ha_mono_ms();

	coord_balance_reload(c, false);
	if (c->leader != c->local_id || !coord_is_quorate(c) || c->syncing ||
	    !c->bal.policy->enabled) {
		c->bal.imbalanced_rounds = 0;
		c->bal.next_ms = 0;
	} else if (c->bal.next_ms == 0) {
		/* a new leader (or policy) first lets usage reports come in */
		c->bal.next_ms = now + (uint64_t)c->bal.policy->interval_s * 1000;
	} else if (now >= c->bal.next_ms) {
		c->bal.next_ms = now + (uint64_t)c->bal.policy->interval_s * 1000;
		balance_round(c);
	}
	qb_loop_timer_add(c->loop, QB_LOOP_LOW, TICK_MS * QB_TIME_NS_IN_MSEC, c, tick,
			  &c->bal.timer);
}

int coord_balance_start(struct coord *c)
{
	coord_balance_reload(c, true);
	if (c->bal.policy == NULL) {
		return -ENOMEM;
	}
	return qb_loop_timer_add(c->loop, QB_LOOP_LOW, TICK_MS * QB_TIME_NS_IN_MSEC, c, tick,
				 &c->bal.timer);
}

void coord_balance_stop(struct coord *c)
{
	qb_loop_timer_del(c->loop, c->bal.timer);
	ha_bal_policy_free(c->bal.policy);
	c->bal.policy = NULL;
}

/*
 * Placement of a guest being started without a node: the engine's CREATE
 * on the snapshot, the guest added unplaced. Writes the node into @node,
 * or returns -ENOSPC with the engine's reason (which nodes refused and
 * why). Other errors leave the caller's own choice in force.
 */
int coord_balance_place(struct coord *c, const Hactl__GuestStartChange *gs,
			char *node, size_t len, char *why, size_t whylen)
{
	const Hactl__GuestRecord *rec = coord_state_guest(&c->state, gs->name);
	const ProtobufCBinaryData *text = rec ? &rec->definition : &gs->definition;
	struct ha_bal_cluster *cl = NULL;
	struct ha_bal_plan *plan = NULL;
	struct ha_bal_guest bg = { 0 };
	struct ha_guest_def def;
	char err[256];
	int rc, idx;

	if (text->data == NULL ||
	    ha_guestdef_parse((const char *)text->data, text->len, gs->name, &def, err,
			      sizeof(err)) < 0) {
		snprintf(why, whylen, "%s", err);
		return -EINVAL;
	}
	rc = coord_balance_snapshot(c, &cl, why, whylen);
	if (rc < 0) {
		return rc;
	}
	idx = ha_bal_cluster_find_guest(cl, gs->name);
	if (idx >= 0 && cl->guests[idx].node >= 0) {
		ha_bal_cluster_free(cl);
		return -EALREADY; /* counted as placed: not ours to move */
	}
	if (idx < 0) {
		guest_from_def(&bg, gs->name, &def);
		rc = ha_bal_cluster_add_guest(cl, &bg);
	}
	if (rc >= 0) {
		rc = ha_balance_place(cl, c->bal.policy, HA_BAL_OP_CREATE, gs->name, &plan);
	}
	if (rc < 0) {
		snprintf(why, whylen, "balancing engine: %s", strerror(-rc));
		ha_bal_cluster_free(cl);
		return rc;
	}
	rc = -ENOSPC;
	snprintf(why, whylen, "no node can take '%s'", gs->name);
	for (uint32_t i = 0; i < plan->n_actions; i++) {
		const struct ha_bal_action *a = &plan->actions[i];

		if (a->kind == HA_BAL_ACT_PLACE && a->to >= 0) {
			snprintf(node, len, "%s", cl->nodes[a->to].name);
			rc = 0;
		} else if (a->kind == HA_BAL_ACT_UNPLACED && a->detail[0]) {
			snprintf(why, whylen, "no node can take '%s': %s", gs->name, a->detail);
		}
	}
	ha_bal_plan_free(plan);
	ha_bal_cluster_free(cl);
	return rc;
}

/* Reads a memstream's text into a NUL-terminated string (caller frees). */
static char *capture(void (*fn)(const void *, FILE *), const void *arg)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);

	if (f == NULL) {
		return NULL;
	}
	fn(arg, f);
	if (fclose(f) != 0) {
		free(buf);
		return NULL;
	}
	return buf;
}

static void write_cluster(const void *cl, FILE *f)
{
	ha_bal_sim_write(f, cl);
}

static void write_policy(const void *p, FILE *f)
{
	ha_bal_policy_print(p, f);
}

int coord_balance_reply(struct coord *c, Hactl__BalanceReply *r, char *why, size_t whylen)
{
	struct ha_bal_cluster *cl = NULL;
	int rc;

	coord_balance_reload(c, false);
	rc = coord_balance_snapshot(c, &cl, why, whylen);
	if (rc < 0) {
		return rc;
	}
	r->cluster = capture(write_cluster, cl);
	r->policy = capture(write_policy, c->bal.policy);
	ha_bal_cluster_free(cl);
	if (r->cluster == NULL || r->policy == NULL) {
		free(r->cluster);
		free(r->policy);
		snprintf(why, whylen, "out of memory");
		return -ENOMEM;
	}
	r->policy_source = c->cfg.policy_path;
	r->policy_error = c->bal.policy_err;
	r->is_leader = c->leader == c->local_id;
	r->has_is_leader = true;
	if (r->is_leader) {
		r->has_imbalanced_rounds = true;
		r->imbalanced_rounds = c->bal.imbalanced_rounds;
		r->has_last_round_ms = c->bal.last_round_ms != 0;
		r->last_round_ms = c->bal.last_round_ms;
		r->last_round = c->bal.last_round;
	}
	return 0;
}
