/*
 * bal_engine.c - placement and rebalancing decisions.
 *
 * Everything works on a private working set (struct ws) built from the
 * snapshot and the policy: per node integer usage, per node group
 * ("domain") the sums that make score deltas O(1), and "items" - the units
 * that move: a guest alone, or the members of one affinity group that
 * share a node. docs/balancing.md explains the score and why the search
 * is greedy.
 *
 * Score: per resource r (CPU use, memory, vCPUs) and domain, the sum over
 * its eligible nodes of (load - mean load)^2, loads as fractions; weighted
 * by the policy and scaled to percent^2. Moving an item changes two nodes,
 * so with the domain's sum and sum of squares of loads the change is
 * computed in O(1) per resource - no full rescoring per candidate.
 *
 * Search: greedy, one best move at a time (as hbal), among the most and
 * least loaded nodes per resource, widened when those offer little;
 * see opt_balance().
 *
 * N+1: a domain passes when, for every node X, the HA guests of X fit on
 * the other nodes. We check a sufficient condition instead of packing:
 * with G(X) the largest HA unit on X, H(X) their sum and
 * S(y) = sum over the other nodes j of max(0, free_j - y), first-fit
 * decreasing places all of X's units when S(G(X) - 1) >= H(X) - G(X) + 1
 * (if a unit of size x failed, every node j would have taken more than
 * free_j - x, more than the units before it). margin(X) is the slack of
 * that inequality. A move changes the free memory of two nodes only, so
 * every margin changes by a term computable in O(1); only nodes whose
 * margin is below the moved size can turn negative, and the domain keeps
 * those ("tight") sorted. Where the bound fails we check the exact form of
 * the same argument, unit by unit (S(x - 1) > units placed before x, for
 * every unit x in decreasing order), before calling the node short.
 * docs/balancing.md has the details.
 */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "bal_int.h"
#include "util.h"

enum { R_CPU = 0, R_MEM, R_VCPU, NRES };

#define NONE (-1)
#define NO_COMP UINT32_MAX
#define GAIN_SCALE 1e4          /* load fractions^2 -> percent^2 */
#define GAIN_EPS 1e-9
#define MAX_K 64                /* widest candidate list per resource */
#define N1_FREE (INT64_MAX / 4)

/* ------------------------------------------------------------------ */
/* u64 -> count map (anti-affinity label on node)                       */

struct pmap {
	uint64_t *keys;         /* key + 1; 0 = empty */
	int32_t *vals;
	uint32_t cap, n;
};

static int pmap_init(struct pmap *m, uint32_t hint)
{
	uint32_t cap = 64;

	while (cap < hint * 2 && cap < (1u << 30)) {
		cap <<= 1;
	}
	m->keys = calloc(cap, sizeof(*m->keys));
	m->vals = calloc(cap, sizeof(*m->vals));
	m->cap = cap;
	m->n = 0;
	return m->keys && m->vals ? 0 : -ENOMEM;
}

static void pmap_fini(struct pmap *m)
{
	free(m->keys);
	free(m->vals);
	memset(m, 0, sizeof(*m));
}

static uint32_t pmap_slot(const uint64_t *keys, uint32_t cap, uint64_t key)
{
	uint64_t h = key * 0x9e3779b97f4a7c15ull;
	uint32_t i = (uint32_t)(h >> 33) & (cap - 1);

	while (keys[i] && keys[i] != key + 1) {
		i = (i + 1) & (cap - 1);
	}
	return i;
}

static int32_t pmap_get(const struct pmap *m, uint64_t key)
{
	uint32_t i = pmap_slot(m->keys, m->cap, key);

	return m->keys[i] ? m->vals[i] : 0;
}

static int pmap_add(struct pmap *m, uint64_t key, int32_t delta)
{
	uint32_t i;

	if ((m->n + 1) * 2 > m->cap) {
		struct pmap nm;

		if (pmap_init(&nm, m->cap) < 0) {
			pmap_fini(&nm);
			return -ENOMEM;
		}
		for (uint32_t j = 0; j < m->cap; j++) {
			if (m->keys[j] && m->vals[j] != 0) {
				uint32_t k = pmap_slot(nm.keys, nm.cap, m->keys[j] - 1);

				nm.keys[k] = m->keys[j];
				nm.vals[k] = m->vals[j];
				nm.n++;
			}
		}
		pmap_fini(m);
		*m = nm;
	}
	i = pmap_slot(m->keys, m->cap, key);
	if (!m->keys[i]) {
		m->keys[i] = key + 1;
		m->n++;
	}
	m->vals[i] += delta;
	return 0;
}

/* ------------------------------------------------------------------ */
/* Working set                                                          */

/* A movable item of a node, with what the balancing search needs. */
struct mv {
	int32_t item;
	double u[NRES];
	double cost;
	uint64_t copy;
};

struct wnode {
	int64_t cap[NRES];      /* milli-CPUs, MiB for guests, CPUs */
	int64_t used[NRES];
	double inv[NRES];
	double thr[NRES];       /* absolute thresholds */
	double l[NRES];         /* load fractions */
	int64_t ha_mem;
	int64_t gmax;           /* largest HA unit (item) on the node */
	int64_t margin;         /* N+1 margin; N1_FREE without HA guests */
	uint32_t dom;
	int32_t prio;
	uint32_t types;
	bool online, eligible, excluded;
	int32_t ihead;
	uint32_t n_items, n_guests;
	/* the optimiser's cache of its movable items (struct mv) */
	bool mv_valid;
	uint32_t mv_n, mv_cap;
	struct mv *mv;
	double mv_umax[NRES];   /* largest use among them */
};

struct witem {
	int64_t use[NRES];
	int64_t ha_mem;
	double copy_mib;
	int32_t node;
	int32_t prev, next;     /* the node's item list */
	int32_t ghead, gtail;   /* member guests via ws->gnext */
	uint32_t n_guests;
	int32_t prio;
	int32_t dom_req;        /* -1 any, -2 none exists, else a domain */
	uint32_t types;         /* bit per member guest type */
	uint32_t comp;
	bool pinned, hot, held, moved, has_anti, alive;
};

struct wdom {
	char name[HA_BAL_NAME_MAX];
	uint32_t *nodes;
	uint32_t n_nodes, n_elig;
	double S1[NRES], S2[NRES];
	/* N+1 */
	int64_t *fs;            /* free memory of eligible nodes, ascending */
	int64_t *fsuf;          /* fsuf[k] = sum of fs[k..] */
	uint32_t nf;
	int32_t *tight;         /* nodes with margin < Mt, ascending margin */
	uint32_t ntight;
	int64_t Mt;             /* largest item (memory) in the domain */
	int64_t deficit;        /* largest shortfall of a node (0: N+1 holds) */
	uint32_t failing;       /* nodes short */
};

struct ws {
	const struct ha_bal_cluster *c;
	const struct ha_bal_policy *p;
	enum ha_bal_op op;
	struct wnode *n;
	uint32_t nn;
	struct wdom *d;
	uint32_t nd;
	struct witem *it;
	uint32_t nit;
	uint32_t ng;
	int32_t *gitem, *gnext, *gnode;
	uint8_t *gskip;
	uint32_t *gcomp;
	uint32_t *comp_items;   /* placed live items per component root */
	uint32_t *anti_off, *anti_lab;
	struct pmap anti;
	double w[NRES], wsum;
	double cost_per_mib;
	uint64_t now_ms, hold_ms;
	/* the plan under construction */
	struct ha_bal_action *act;
	int32_t *act_item;
	uint32_t nact, capact;
	uint32_t opt_moves;
	uint64_t opt_mem;
	bool budget_hit;
	/* scratch */
	uint8_t *mark;
	int err;
};

static void ws_free(struct ws *ws)
{
	for (uint32_t i = 0; ws->n && i < ws->nn; i++) {
		free(ws->n[i].mv);
	}
	for (uint32_t i = 0; i < ws->nd; i++) {
		free(ws->d[i].nodes);
		free(ws->d[i].fs);
		free(ws->d[i].fsuf);
		free(ws->d[i].tight);
	}
	free(ws->d);
	free(ws->n);
	free(ws->it);
	free(ws->gitem);
	free(ws->gnext);
	free(ws->gnode);
	free(ws->gskip);
	free(ws->gcomp);
	free(ws->comp_items);
	free(ws->anti_off);
	free(ws->anti_lab);
	pmap_fini(&ws->anti);
	free(ws->act);
	free(ws->act_item);
	free(ws->mark);
}

static uint64_t anti_key(uint32_t label, uint32_t node)
{
	return ((uint64_t)label << 32) | node;
}

static double guest_copy_mib(const struct ws *ws, const struct ha_bal_guest *g)
{
	double bw = ws->p->bandwidth_mibps;
	double r = g->dirty_mibps / bw;

	/* pre-copy: each round resends what the last one dirtied, a
	 * geometric series; past 95% of the bandwidth it does not converge
	 * and the copy is charged as 20 times the memory */
	if (r >= 0.95) {
		return (double)g->mem_mib * 20.0;
	}
	return (double)g->mem_mib / (1.0 - r);
}

static bool guest_hot(const struct ws *ws, const struct ha_bal_guest *g)
{
	return (double)g->dirty_mibps * 100.0 >
	       ws->p->max_dirty_pct * (double)ws->p->bandwidth_mibps;
}

static bool guest_held(const struct ws *ws, const struct ha_bal_guest *g)
{
	if (g->last_move_ms == 0 || ws->hold_ms == 0) {
		return false;
	}
	return ws->now_ms < g->last_move_ms || ws->now_ms - g->last_move_ms < ws->hold_ms;
}

/* Recomputes the domain's load sums (cheap, and free of drift). */
static void dom_sums(struct ws *ws, uint32_t di)
{
	struct wdom *D = &ws->d[di];

	memset(D->S1, 0, sizeof(D->S1));
	memset(D->S2, 0, sizeof(D->S2));
	D->n_elig = 0;
	for (uint32_t k = 0; k < D->n_nodes; k++) {
		const struct wnode *n = &ws->n[D->nodes[k]];

		if (!n->eligible) {
			continue;
		}
		D->n_elig++;
		for (int r = 0; r < NRES; r++) {
			D->S1[r] += n->l[r];
			D->S2[r] += n->l[r] * n->l[r];
		}
	}
}

static int64_t pos(int64_t v)
{
	return v > 0 ? v : 0;
}

static int64_t node_free(const struct wnode *n)
{
	return n->cap[R_MEM] - n->used[R_MEM];
}

/* S(y): sum over the domain's eligible nodes of max(0, free - y). */
static int64_t n1_S(const struct wdom *D, int64_t y)
{
	uint32_t lo = 0, hi = D->nf;

	while (lo < hi) {
		uint32_t mid = (lo + hi) / 2;

		if (D->fs[mid] > y) {
			hi = mid;
		} else {
			lo = mid + 1;
		}
	}
	return D->fsuf[lo] - (int64_t)(D->nf - lo) * y;
}

/* The margin of a node with free @f, HA sum @ha and largest unit @g,
 * given S() of the domain (its own free included in @S_of_y). */
static int64_t n1_margin(int64_t S_of_y, int64_t f, int64_t ha, int64_t g)
{
	if (ha <= 0) {
		return N1_FREE;
	}
	return S_of_y - pos(f - (g - 1)) - (ha - g + 1);
}

static int64_t node_gmax(const struct ws *ws, const struct wnode *n, int32_t skip)
{
	int64_t g = 0;

	for (int32_t i = n->ihead; i != NONE; i = ws->it[i].next) {
		if (i != skip && ws->it[i].ha_mem > g) {
			g = ws->it[i].ha_mem;
		}
	}
	return g;
}

static int cmp_margin(const void *pa, const void *pb, void *arg)
{
	const struct ws *ws = arg;
	int32_t a = *(const int32_t *)pa, b = *(const int32_t *)pb;

	if (ws->n[a].margin != ws->n[b].margin) {
		return ws->n[a].margin < ws->n[b].margin ? -1 : 1;
	}
	return a < b ? -1 : a > b;
}

static void n1_suffix(struct wdom *D)
{
	D->fsuf[D->nf] = 0;
	for (uint32_t k = D->nf; k > 0; k--) {
		D->fsuf[k - 1] = D->fsuf[k] + D->fs[k - 1];
	}
}

/* Change of S(y) when one node's free goes from @f0 to @f1. */
static int64_t dS(int64_t f0, int64_t f1, int64_t y)
{
	return pos(f1 - y) - pos(f0 - y);
}

/* A hypothetical move for the N+1 checks: node d's free memory goes
 * from fd0 to fd1 and takes @item; s (may be NONE) gives it up. */
struct n1_hyp {
	int32_t d, s, item;
	int64_t fd0, fd1, fs0, fs1;
};

static int64_t hyp_S(const struct wdom *D, const struct n1_hyp *h, int64_t y)
{
	int64_t v = n1_S(D, y);

	if (h) {
		v += dS(h->fd0, h->fd1, y);
		if (h->s != NONE) {
			v += dS(h->fs0, h->fs1, y);
		}
	}
	return v;
}

static int cmp_i64_desc(const void *pa, const void *pb)
{
	int64_t a = *(const int64_t *)pa, b = *(const int64_t *)pb;

	return a > b ? -1 : a < b;
}

/*
 * How short node x is of N+1 by the unit-by-unit argument: 0 when
 * first-fit decreasing surely restarts all its HA units on the others.
 */
static int64_t n1_refined(const struct ws *ws, const struct wdom *D, int32_t x,
			  const struct n1_hyp *h)
{
	const struct wnode *n = &ws->n[x];
	int64_t stack[64], *u = stack;
	int64_t fx = node_free(n), B = 0, worst = 0;
	uint32_t nu = 0, cap = n->n_items + 1;

	if (cap > 64) {
		u = malloc(cap * sizeof(*u));
		if (u == NULL) {
			return 1; /* cannot tell: call it short */
		}
	}
	for (int32_t i = n->ihead; i != NONE; i = ws->it[i].next) {
		if (ws->it[i].ha_mem > 0 && !(h && x == h->s && i == h->item)) {
			u[nu++] = ws->it[i].ha_mem;
		}
	}
	if (h && x == h->d && ws->it[h->item].ha_mem > 0) {
		u[nu++] = ws->it[h->item].ha_mem;
	}
	if (h && x == h->d) {
		fx = h->fd1;
	} else if (h && x == h->s) {
		fx = h->fs1;
	}
	qsort(u, nu, sizeof(*u), cmp_i64_desc);
	for (uint32_t k = 0; k < nu; k++) {
		int64_t y = u[k] - 1;
		int64_t need = B + 1 - (hyp_S(D, h, y) - pos(fx - y));

		if (need > worst) {
			worst = need;
		}
		B += u[k];
	}
	if (u != stack) {
		free(u);
	}
	return worst;
}

static void n1_tight(struct ws *ws, struct wdom *D)
{
	int64_t worst = 0;

	D->ntight = 0;
	D->failing = 0;
	for (uint32_t k = 0; k < D->n_nodes; k++) {
		int32_t x = (int32_t)D->nodes[k];

		if (ws->n[x].eligible && ws->n[x].margin < D->Mt + 1) {
			D->tight[D->ntight++] = x;
			if (ws->n[x].margin < 0) {
				int64_t r = n1_refined(ws, D, x, NULL);

				if (r > worst) {
					worst = r;
				}
				D->failing += r > 0;
			}
		}
	}
	qsort_r(D->tight, D->ntight, sizeof(*D->tight), cmp_margin, ws);
	D->deficit = worst;
}

/* Recomputes the domain's N+1 state from scratch: O(n log n). */
static void dom_n1(struct ws *ws, uint32_t di)
{
	struct wdom *D = &ws->d[di];

	D->nf = 0;
	D->Mt = 0;
	for (uint32_t k = 0; k < D->n_nodes; k++) {
		struct wnode *n = &ws->n[D->nodes[k]];

		if (!n->eligible) {
			continue;
		}
		D->fs[D->nf++] = node_free(n);
		n->gmax = node_gmax(ws, n, NONE);
		for (int32_t i = n->ihead; i != NONE; i = ws->it[i].next) {
			if (ws->it[i].use[R_MEM] > D->Mt) {
				D->Mt = ws->it[i].use[R_MEM];
			}
		}
	}
	for (uint32_t a = 1; a < D->nf; a++) {
		int64_t v = D->fs[a];
		uint32_t b = a;

		while (b > 0 && D->fs[b - 1] > v) {
			D->fs[b] = D->fs[b - 1];
			b--;
		}
		D->fs[b] = v;
	}
	n1_suffix(D);
	for (uint32_t k = 0; k < D->n_nodes; k++) {
		struct wnode *n = &ws->n[D->nodes[k]];

		if (n->eligible) {
			n->margin = n1_margin(n1_S(D, n->gmax - 1), node_free(n), n->ha_mem,
					      n->gmax);
		}
	}
	n1_tight(ws, D);
}

/* Replaces one value of the sorted free list. */
static void fs_replace(struct wdom *D, int64_t old, int64_t nv)
{
	uint32_t k = 0;

	while (k < D->nf && D->fs[k] != old) {
		k++;
	}
	if (k == D->nf) {
		return;
	}
	while (k > 0 && D->fs[k - 1] > nv) {
		D->fs[k] = D->fs[k - 1];
		k--;
	}
	while (k + 1 < D->nf && D->fs[k + 1] < nv) {
		D->fs[k] = D->fs[k + 1];
		k++;
	}
	D->fs[k] = nv;
}

/*
 * Updates the N+1 state after an item of @m MiB moved from @s to @d in
 * one domain (both eligible); @fs0, @fd0 are their free memory before.
 * O(n): every margin moves by the two dS terms.
 */
static void dom_n1_moved(struct ws *ws, int32_t s, int32_t d, int64_t fs0, int64_t fd0)
{
	struct wdom *D = &ws->d[ws->n[d].dom];
	int64_t fs1 = node_free(&ws->n[s]), fd1 = node_free(&ws->n[d]);

	for (uint32_t k = 0; k < D->n_nodes; k++) {
		int32_t x = (int32_t)D->nodes[k];
		struct wnode *n = &ws->n[x];
		int64_t y;

		if (!n->eligible || x == s || x == d || n->margin == N1_FREE) {
			continue;
		}
		y = n->gmax - 1;
		n->margin += dS(fs0, fs1, y) + dS(fd0, fd1, y);
	}
	fs_replace(D, fs0, fs1);
	fs_replace(D, fd0, fd1);
	n1_suffix(D);
	for (int j = 0; j < 2; j++) {
		struct wnode *n = &ws->n[j ? d : s];

		n->gmax = node_gmax(ws, n, NONE);
		n->margin = n1_margin(n1_S(D, n->gmax - 1), node_free(n), n->ha_mem, n->gmax);
	}
	n1_tight(ws, D);
}

static void node_loads(struct wnode *n)
{
	for (int r = 0; r < NRES; r++) {
		n->l[r] = (double)n->used[r] * n->inv[r];
	}
}

static void item_unlink(struct ws *ws, int32_t ii)
{
	struct witem *it = &ws->it[ii];
	struct wnode *n;

	if (it->node == NONE) {
		return;
	}
	n = &ws->n[it->node];
	if (it->prev != NONE) {
		ws->it[it->prev].next = it->next;
	} else {
		n->ihead = it->next;
	}
	if (it->next != NONE) {
		ws->it[it->next].prev = it->prev;
	}
	it->prev = it->next = NONE;
	n->mv_valid = false;
	n->n_items--;
	n->n_guests -= it->n_guests;
	for (int r = 0; r < NRES; r++) {
		n->used[r] -= it->use[r];
	}
	n->ha_mem -= it->ha_mem;
	node_loads(n);
	if (it->has_anti) {
		for (int32_t g = it->ghead; g != NONE; g = ws->gnext[g]) {
			for (uint32_t k = ws->anti_off[g]; k < ws->anti_off[g + 1]; k++) {
				if (pmap_add(&ws->anti, anti_key(ws->anti_lab[k],
								 (uint32_t)it->node), -1) < 0) {
					ws->err = -ENOMEM;
				}
			}
		}
	}
	if (it->comp != NO_COMP) {
		ws->comp_items[it->comp]--;
	}
	it->node = NONE;
}

/* Links item @ii into node @ni (at the head: the order of a node's list
 * depends on the history of moves, which is deterministic; choices that
 * compare items break ties by item index, not by list order). */
static void item_link(struct ws *ws, int32_t ii, int32_t ni)
{
	struct witem *it = &ws->it[ii];
	struct wnode *n = &ws->n[ni];

	it->prev = NONE;
	it->next = n->ihead;
	if (n->ihead != NONE) {
		ws->it[n->ihead].prev = ii;
	}
	n->ihead = ii;
	n->mv_valid = false;
	it->node = ni;
	n->n_items++;
	n->n_guests += it->n_guests;
	for (int r = 0; r < NRES; r++) {
		n->used[r] += it->use[r];
	}
	n->ha_mem += it->ha_mem;
	node_loads(n);
	for (int32_t g = it->ghead; g != NONE; g = ws->gnext[g]) {
		ws->gnode[g] = ni;
		if (!it->has_anti) {
			continue;
		}
		for (uint32_t k = ws->anti_off[g]; k < ws->anti_off[g + 1]; k++) {
			if (pmap_add(&ws->anti, anti_key(ws->anti_lab[k], (uint32_t)ni), 1) < 0) {
				ws->err = -ENOMEM;
			}
		}
	}
	if (it->comp != NO_COMP) {
		ws->comp_items[it->comp]++;
	}
}

/* Moves an item and refreshes what depends on the two nodes. */
static void ws_move(struct ws *ws, int32_t ii, int32_t to)
{
	int32_t from = ws->it[ii].node;
	int64_t ff0 = from != NONE ? node_free(&ws->n[from]) : 0;
	int64_t ft0 = to != NONE ? node_free(&ws->n[to]) : 0;
	bool local;

	item_unlink(ws, ii);
	if (to != NONE) {
		item_link(ws, ii, to);
	} else {
		for (int32_t g = ws->it[ii].ghead; g != NONE; g = ws->gnext[g]) {
			ws->gnode[g] = NONE;
		}
	}
	local = from != NONE && to != NONE && ws->n[from].dom == ws->n[to].dom &&
		ws->n[from].eligible && ws->n[to].eligible;
	if (local) {
		dom_sums(ws, ws->n[to].dom);
		dom_n1_moved(ws, from, to, ff0, ft0);
		return;
	}
	if (from != NONE) {
		dom_sums(ws, ws->n[from].dom);
		dom_n1(ws, ws->n[from].dom);
	}
	if (to != NONE && (from == NONE || ws->n[to].dom != ws->n[from].dom)) {
		dom_sums(ws, ws->n[to].dom);
		dom_n1(ws, ws->n[to].dom);
	}
}

/* Moves every member of @src into item @dst (both on one node). */
static void item_merge(struct ws *ws, int32_t dst, int32_t src)
{
	struct witem *a = &ws->it[dst], *b = &ws->it[src];
	int32_t node = a->node;

	item_unlink(ws, src);
	item_unlink(ws, dst);
	for (int r = 0; r < NRES; r++) {
		a->use[r] += b->use[r];
	}
	a->ha_mem += b->ha_mem;
	a->copy_mib += b->copy_mib;
	if (a->gtail != NONE) {
		ws->gnext[a->gtail] = b->ghead;
	} else {
		a->ghead = b->ghead;
	}
	if (b->gtail != NONE) {
		a->gtail = b->gtail;
	}
	for (int32_t g = b->ghead; g != NONE; g = ws->gnext[g]) {
		ws->gitem[g] = dst;
	}
	a->n_guests += b->n_guests;
	a->prio = b->prio > a->prio ? b->prio : a->prio;
	if (a->dom_req == -1) {
		a->dom_req = b->dom_req;
	} else if (b->dom_req != -1 && b->dom_req != a->dom_req) {
		a->dom_req = -2;
	}
	a->types |= b->types;
	a->pinned |= b->pinned;
	a->hot |= b->hot;
	a->held |= b->held;
	a->moved |= b->moved;
	a->has_anti |= b->has_anti;
	b->alive = false;
	b->ghead = b->gtail = NONE;
	b->n_guests = 0;
	memset(b->use, 0, sizeof(b->use));
	b->ha_mem = 0;
	item_link(ws, dst, node);
	dom_n1(ws, ws->n[node].dom);
}

/* ------------------------------------------------------------------ */
/* Building the working set                                             */

static uint32_t uf_root(uint32_t *parent, uint32_t x)
{
	while (parent[x] != x) {
		parent[x] = parent[parent[x]];
		x = parent[x];
	}
	return x;
}

static void uf_union(uint32_t *parent, uint32_t a, uint32_t b)
{
	a = uf_root(parent, a);
	b = uf_root(parent, b);
	if (a != b) {
		/* the lower index is the root: deterministic */
		if (a < b) {
			parent[b] = a;
		} else {
			parent[a] = b;
		}
	}
}

/* Guests the operation leaves out entirely. */
static bool op_skips(const struct ha_bal_cluster *c, enum ha_bal_op op,
		     int32_t target, uint32_t gi)
{
	const struct ha_bal_guest *g = &c->guests[gi];

	switch (op) {
	case HA_BAL_OP_CREATE:
	case HA_BAL_OP_RELOCATE:
		return g->node == NONE && (int32_t)gi != target;
	case HA_BAL_OP_RECOVER:
		/* unplaced HA guests (no room at an earlier recovery) are
		 * recovered with the lost nodes' guests */
		if (g->node == NONE) {
			return target != NONE || !g->ha;
		}
		/* non-HA guests of the lost node(s) stay down */
		if (!g->ha && ((target != NONE && g->node == target) ||
			       (target == NONE && !c->nodes[g->node].online))) {
			return true;
		}
		return false;
	default:
		return g->node == NONE;
	}
}

static int label_id(const struct ha_bal_cluster *c, struct bal_names *extra,
		    uint32_t *n_extra, const char *name)
{
	int id = bal_names_get(c->label_idx, name);

	if (id >= 0) {
		return id;
	}
	id = bal_names_get(extra, name);
	if (id >= 0) {
		return id;
	}
	if (bal_names_add(extra, name, c->n_labels + *n_extra, NULL) < 0) {
		return -ENOMEM;
	}
	return (int)(c->n_labels + (*n_extra)++);
}

static int build_domains(struct ws *ws, const char **ngroup, struct bal_names *dn)
{
	const struct ha_bal_cluster *c = ws->c;
	uint32_t *cnt;

	ws->d = calloc(c->n_nodes + 1, sizeof(*ws->d));
	cnt = calloc(c->n_nodes + 1, sizeof(*cnt));
	if (ws->d == NULL || cnt == NULL) {
		free(cnt);
		return -ENOMEM;
	}
	for (uint32_t i = 0; i < c->n_nodes; i++) {
		const char *name = ngroup[i] && ngroup[i][0] ? ngroup[i] : "default";
		int d = bal_names_get(dn, name);

		if (d < 0) {
			d = (int)ws->nd++;
			if (bal_names_add(dn, name, (uint32_t)d, NULL) < 0) {
				free(cnt);
				return -ENOMEM;
			}
			snprintf(ws->d[d].name, sizeof(ws->d[d].name), "%s", name);
		}
		ws->n[i].dom = (uint32_t)d;
		cnt[d]++;
	}
	for (uint32_t d = 0; d < ws->nd; d++) {
		ws->d[d].nodes = malloc(cnt[d] * sizeof(uint32_t));
		ws->d[d].fs = malloc(cnt[d] * sizeof(int64_t));
		ws->d[d].fsuf = malloc((cnt[d] + 1) * sizeof(int64_t));
		ws->d[d].tight = malloc(cnt[d] * sizeof(int32_t));
		if (!ws->d[d].nodes || !ws->d[d].fs || !ws->d[d].fsuf || !ws->d[d].tight) {
			free(cnt);
			return -ENOMEM;
		}
	}
	for (uint32_t i = 0; i < c->n_nodes; i++) {
		struct wdom *D = &ws->d[ws->n[i].dom];

		D->nodes[D->n_nodes++] = i;
	}
	free(cnt);
	return 0;
}

/* Node groups and priorities: the policy overrides the snapshot. */
static void apply_node_rules(struct ws *ws, const char **ngroup)
{
	const struct ha_bal_cluster *c = ws->c;
	const struct bal_rules *r = ws->p->rules;

	for (uint32_t i = 0; i < c->n_nodes; i++) {
		ngroup[i] = c->nodes[i].group;
		ws->n[i].prio = c->nodes[i].priority;
	}
	for (uint32_t gi = 0; r && gi < r->n_groups; gi++) {
		const struct bal_rule_group *g = &r->groups[gi];

		for (uint32_t k = 0; k < g->nodes.n; k++) {
			char name[HA_BAL_NAME_MAX];
			const char *e = g->nodes.v[k];
			const char *colon = strrchr(e, ':');
			size_t len = colon ? (size_t)(colon - e) : strlen(e);
			int ni;

			if (len >= sizeof(name)) {
				continue;
			}
			memcpy(name, e, len);
			name[len] = 0;
			ni = ha_bal_cluster_find_node(c, name);
			if (ni < 0) {
				continue;
			}
			ngroup[ni] = g->name;
			if (colon) {
				ws->n[ni].prio = (int32_t)strtol(colon + 1, NULL, 10);
			} else if (g->has_priority) {
				ws->n[ni].prio = g->priority;
			}
		}
	}
	for (uint32_t k = 0; r && k < r->n_nodes; k++) {
		int ni = ha_bal_cluster_find_node(c, r->nodes[k].name);

		if (ni >= 0 && r->nodes[k].has_priority) {
			ws->n[ni].prio = r->nodes[k].priority;
		}
	}
}

static int build_labels(struct ws *ws, int32_t *dom_req, struct bal_names *dn)
{
	const struct ha_bal_cluster *c = ws->c;
	const struct bal_rules *r = ws->p->rules;
	struct bal_names *extra = bal_names_new(16);
	uint32_t n_extra = 0, n_lab, total = 0;
	uint32_t *parent = NULL, *size = NULL, *fill = NULL;
	int32_t *first = NULL;
	int rc = -ENOMEM;

	if (extra == NULL) {
		return -ENOMEM;
	}
	/* label ids of policy rules */
	for (uint32_t i = 0; r && i < r->n_labels; i++) {
		if (label_id(c, extra, &n_extra, r->labels[i].name) < 0) {
			goto out;
		}
	}
	n_lab = c->n_labels + n_extra;
	parent = malloc((ws->ng + 1) * sizeof(*parent));
	size = calloc(ws->ng + 1, sizeof(*size));
	first = malloc((n_lab + 1) * sizeof(*first));
	ws->gcomp = malloc((ws->ng + 1) * sizeof(*ws->gcomp));
	ws->comp_items = calloc(ws->ng + 1, sizeof(*ws->comp_items));
	ws->anti_off = calloc(ws->ng + 2, sizeof(*ws->anti_off));
	if (!parent || !size || !first || !ws->gcomp || !ws->comp_items ||
	    !ws->anti_off) {
		goto out;
	}
	for (uint32_t g = 0; g < ws->ng; g++) {
		parent[g] = g;
	}
	for (uint32_t l = 0; l < n_lab; l++) {
		first[l] = NONE;
	}
	/* affinity: union the members of every group */
	for (uint32_t g = 0; g < ws->ng; g++) {
		const struct ha_bal_guest *gu = &c->guests[g];

		for (unsigned k = 0; k < gu->n_aff; k++) {
			uint32_t l = gu->aff[k];

			if (first[l] == NONE) {
				first[l] = (int32_t)g;
			} else {
				uf_union(parent, (uint32_t)first[l], g);
			}
		}
	}
	for (uint32_t i = 0; r && i < r->n_labels; i++) {
		const struct bal_rule_label *rl = &r->labels[i];
		int l;

		if (rl->kind != HA_BAL_AFFINITY) {
			continue;
		}
		l = label_id(c, extra, &n_extra, rl->name);
		for (uint32_t k = 0; k < rl->guests.n; k++) {
			int g = ha_bal_cluster_find_guest(c, rl->guests.v[k]);

			if (g < 0) {
				continue;
			}
			if (first[l] == NONE) {
				first[l] = g;
			} else {
				uf_union(parent, (uint32_t)first[l], (uint32_t)g);
			}
		}
	}
	for (uint32_t g = 0; g < ws->ng; g++) {
		size[uf_root(parent, g)]++;
	}
	for (uint32_t g = 0; g < ws->ng; g++) {
		uint32_t root = uf_root(parent, g);

		ws->gcomp[g] = size[root] > 1 ? root : NO_COMP;
	}
	/* anti-affinity: a CSR list of label ids per guest */
	for (uint32_t g = 0; g < ws->ng; g++) {
		ws->anti_off[g + 1] = c->guests[g].n_anti;
	}
	for (uint32_t i = 0; r && i < r->n_labels; i++) {
		const struct bal_rule_label *rl = &r->labels[i];

		if (rl->kind != HA_BAL_ANTI_AFFINITY) {
			continue;
		}
		for (uint32_t k = 0; k < rl->guests.n; k++) {
			int g = ha_bal_cluster_find_guest(c, rl->guests.v[k]);

			if (g >= 0) {
				ws->anti_off[g + 1]++;
			}
		}
	}
	for (uint32_t g = 0; g < ws->ng; g++) {
		ws->anti_off[g + 1] += ws->anti_off[g];
	}
	total = ws->anti_off[ws->ng];
	ws->anti_lab = malloc((total + 1) * sizeof(*ws->anti_lab));
	fill = calloc(ws->ng + 1, sizeof(*fill));
	if (ws->anti_lab == NULL || fill == NULL) {
		goto out;
	}
	for (uint32_t g = 0; g < ws->ng; g++) {
		for (unsigned k = 0; k < c->guests[g].n_anti; k++) {
			ws->anti_lab[ws->anti_off[g] + fill[g]++] = c->guests[g].anti[k];
		}
	}
	for (uint32_t i = 0; r && i < r->n_labels; i++) {
		const struct bal_rule_label *rl = &r->labels[i];
		int l;

		if (rl->kind != HA_BAL_ANTI_AFFINITY) {
			continue;
		}
		l = label_id(c, extra, &n_extra, rl->name);
		for (uint32_t k = 0; k < rl->guests.n; k++) {
			int g = ha_bal_cluster_find_guest(c, rl->guests.v[k]);

			if (g >= 0) {
				ws->anti_lab[ws->anti_off[g] + fill[g]++] = (uint32_t)l;
			}
		}
	}
	/* node group bindings of guests */
	for (uint32_t g = 0; g < ws->ng; g++) {
		const char *grp = c->guests[g].group;

		dom_req[g] = NONE;
		if (grp[0]) {
			int d = bal_names_get(dn, grp);

			dom_req[g] = d >= 0 ? d : -2;
		}
	}
	for (uint32_t i = 0; r && i < r->n_groups; i++) {
		const struct bal_rule_group *rg = &r->groups[i];
		int d = bal_names_get(dn, rg->name);

		for (uint32_t k = 0; k < rg->guests.n; k++) {
			int g = ha_bal_cluster_find_guest(c, rg->guests.v[k]);

			if (g >= 0) {
				dom_req[g] = d >= 0 ? d : -2;
			}
		}
	}
	rc = 0;
out:
	free(parent);
	free(size);
	free(first);
	free(fill);
	bal_names_free(extra);
	return rc;
}

static int build_items(struct ws *ws, const int32_t *dom_req)
{
	const struct ha_bal_cluster *c = ws->c;
	struct pmap key2item;
	int rc;

	ws->it = calloc(ws->ng + 1, sizeof(*ws->it));
	if (ws->it == NULL || pmap_init(&key2item, 64) < 0) {
		pmap_fini(&key2item);
		return -ENOMEM;
	}
	for (uint32_t g = 0; g < ws->ng; g++) {
		const struct ha_bal_guest *gu = &c->guests[g];
		struct witem *it;
		int32_t ii = NONE;

		ws->gitem[g] = NONE;
		ws->gnext[g] = NONE;
		if (ws->gskip[g]) {
			continue;
		}
		if (ws->gcomp[g] != NO_COMP) {
			uint64_t key = ((uint64_t)ws->gcomp[g] << 32) |
				       (uint32_t)(ws->gnode[g] + 1);
			int32_t v = pmap_get(&key2item, key);

			if (v > 0) {
				ii = v - 1;
			}
		}
		if (ii == NONE) {
			ii = (int32_t)ws->nit++;
			it = &ws->it[ii];
			it->node = NONE;
			it->prev = it->next = NONE;
			it->ghead = it->gtail = NONE;
			it->prio = INT32_MIN;
			it->dom_req = NONE;
			it->comp = ws->gcomp[g];
			it->alive = true;
			if (ws->gcomp[g] != NO_COMP) {
				uint64_t key = ((uint64_t)ws->gcomp[g] << 32) |
					       (uint32_t)(ws->gnode[g] + 1);

				rc = pmap_add(&key2item, key, ii + 1);
				if (rc < 0) {
					pmap_fini(&key2item);
					return rc;
				}
			}
		}
		it = &ws->it[ii];
		ws->gitem[g] = ii;
		if (it->gtail != NONE) {
			ws->gnext[it->gtail] = (int32_t)g;
		} else {
			it->ghead = (int32_t)g;
		}
		it->gtail = (int32_t)g;
		it->n_guests++;
		it->use[R_CPU] += gu->cpu_milli;
		it->use[R_MEM] += (int64_t)gu->mem_mib;
		it->use[R_VCPU] += gu->vcpus;
		if (gu->ha) {
			it->ha_mem += (int64_t)gu->mem_mib;
		}
		it->copy_mib += guest_copy_mib(ws, gu);
		if (gu->priority > it->prio) {
			it->prio = gu->priority;
		}
		if (it->dom_req == NONE) {
			it->dom_req = dom_req[g];
		} else if (dom_req[g] != NONE && dom_req[g] != it->dom_req) {
			it->dom_req = -2;
		}
		it->types |= 1u << gu->type;
		it->pinned |= gu->pinned;
		it->hot |= guest_hot(ws, gu);
		it->held |= guest_held(ws, gu);
		if (ws->anti_off[g + 1] > ws->anti_off[g]) {
			it->has_anti = true;
		}
	}
	pmap_fini(&key2item);
	/* linked at the head in reverse: each list starts in item order */
	for (uint32_t i = ws->nit; i-- > 0;) {
		int32_t g = ws->it[i].ghead;

		if (ws->gnode[g] != NONE) {
			item_link(ws, (int32_t)i, ws->gnode[g]);
		}
	}
	return ws->err;
}

static int ws_build(struct ws *ws, const struct ha_bal_cluster *c,
		    const struct ha_bal_policy *p, enum ha_bal_op op,
		    int32_t target, int32_t exclude)
{
	const char **ngroup = NULL;
	int32_t *dom_req = NULL;
	struct bal_names *dn = NULL;
	int rc = -ENOMEM;

	memset(ws, 0, sizeof(*ws));
	ws->c = c;
	ws->p = p;
	ws->op = op;
	ws->nn = c->n_nodes;
	ws->ng = c->n_guests;
	ws->now_ms = c->now_ms;
	ws->hold_ms = (uint64_t)p->hold_time_s * 1000;
	ws->w[R_CPU] = p->cpu_weight;
	ws->w[R_MEM] = p->mem_weight;
	ws->w[R_VCPU] = p->vcpu_weight;
	ws->wsum = p->cpu_weight + p->mem_weight + p->vcpu_weight;
	ws->cost_per_mib = p->cost_per_gib / 1024.0;
	ws->n = calloc(ws->nn + 1, sizeof(*ws->n));
	ws->mark = calloc(ws->nn + 1, 1);
	ngroup = calloc(ws->nn + 1, sizeof(*ngroup));
	dom_req = calloc(ws->ng + 1, sizeof(*dom_req));
	ws->gitem = calloc(ws->ng + 1, sizeof(*ws->gitem));
	ws->gnext = calloc(ws->ng + 1, sizeof(*ws->gnext));
	ws->gnode = calloc(ws->ng + 1, sizeof(*ws->gnode));
	ws->gskip = calloc(ws->ng + 1, 1);
	dn = bal_names_new(16);
	if (!ws->n || !ws->mark || !ngroup || !dom_req || !ws->gitem || !ws->gnext ||
	    !ws->gnode || !ws->gskip || !dn) {
		goto out;
	}
	apply_node_rules(ws, ngroup);
	for (uint32_t i = 0; i < ws->nn; i++) {
		const struct ha_bal_node *cn = &c->nodes[i];
		struct wnode *n = &ws->n[i];

		n->cap[R_CPU] = (int64_t)cn->cpus * 1000;
		n->cap[R_MEM] = (int64_t)(cn->mem_mib - cn->mem_reserved_mib);
		n->cap[R_VCPU] = cn->cpus;
		n->used[R_CPU] = cn->cpu_base_milli;
		for (int r = 0; r < NRES; r++) {
			n->inv[r] = 1.0 / (double)n->cap[r];
		}
		/* CPU is shared, not reserved: at 100 % it refuses nothing */
		n->thr[R_CPU] = p->cpu_threshold >= 100.0 ? INFINITY :
				(double)n->cap[R_CPU] * p->cpu_threshold / 100.0;
		n->thr[R_MEM] = (double)n->cap[R_MEM] * p->mem_threshold / 100.0;
		n->thr[R_VCPU] = p->max_vcpu_ratio > 0 ?
					 (double)cn->cpus * p->max_vcpu_ratio :
					 INFINITY;
		n->types = cn->types ? cn->types : ~0u;
		n->online = cn->online;
		n->excluded = (int32_t)i == exclude;
		n->eligible = cn->online && !cn->maintenance && !n->excluded;
		n->ihead = NONE;
		node_loads(n);
	}
	rc = build_domains(ws, ngroup, dn);
	if (rc < 0) {
		goto out;
	}
	rc = -ENOMEM;
	for (uint32_t g = 0; g < ws->ng; g++) {
		ws->gskip[g] = op_skips(c, op, target, g);
		ws->gnode[g] = ws->gskip[g] ? NONE : c->guests[g].node;
	}
	rc = build_labels(ws, dom_req, dn);
	if (rc < 0) {
		goto out;
	}
	rc = pmap_init(&ws->anti, ws->anti_off[ws->ng] + 16);
	if (rc < 0) {
		goto out;
	}
	rc = build_items(ws, dom_req);
	if (rc < 0) {
		goto out;
	}
	for (uint32_t d = 0; d < ws->nd; d++) {
		dom_sums(ws, d);
		dom_n1(ws, d);
	}
	rc = ws->err;
out:
	free(ngroup);
	free(dom_req);
	bal_names_free(dn);
	return rc;
}

/* ------------------------------------------------------------------ */
/* Score                                                                */

/* Change of the weighted sum of squared deviations (percent^2) of the
 * domain when node a gains +u (sa = +1) or loses it (sa = -1), and node b
 * (same domain, may be NONE) the opposite. */
static double dom_delta(const struct ws *ws, int32_t a, int sa, int32_t b,
			const int64_t *u)
{
	const struct wdom *D = &ws->d[ws->n[a].dom];
	double n = D->n_elig, tot = 0;

	for (int r = 0; r < NRES; r++) {
		double dS1, dS2, la, la2;

		if (ws->w[r] == 0 || u[r] == 0) {
			continue;
		}
		la = ws->n[a].l[r];
		la2 = (double)(ws->n[a].used[r] + sa * u[r]) * ws->n[a].inv[r];
		dS1 = la2 - la;
		dS2 = la2 * la2 - la * la;
		if (b != NONE) {
			double lb = ws->n[b].l[r];
			double lb2 = (double)(ws->n[b].used[r] - sa * u[r]) *
				     ws->n[b].inv[r];

			dS1 += lb2 - lb;
			dS2 += lb2 * lb2 - lb * lb;
		}
		tot += ws->w[r] * (dS2 - (2.0 * D->S1[r] * dS1 + dS1 * dS1) / n);
	}
	return tot * GAIN_SCALE / ws->wsum;
}

/* Score change of moving @u from @s to @d (either NONE or ineligible). */
static double move_delta(const struct ws *ws, int32_t s, int32_t d, const int64_t *u)
{
	bool s_in = s != NONE && ws->n[s].eligible;
	bool d_in = d != NONE && ws->n[d].eligible;
	double tot = 0;

	if (ws->wsum <= 0) {
		return 0;
	}
	if (s_in && d_in && ws->n[s].dom == ws->n[d].dom) {
		return dom_delta(ws, d, +1, s, u);
	}
	if (s_in) {
		tot += dom_delta(ws, s, -1, NONE, u);
	}
	if (d_in) {
		tot += dom_delta(ws, d, +1, NONE, u);
	}
	return tot;
}

/* Sum over resources of the share above the threshold (fraction). */
static double node_over(const struct wnode *n, const int64_t *du, int sign)
{
	double over = 0;

	for (int r = 0; r < NRES; r++) {
		double used = (double)n->used[r] + (du ? sign * (double)du[r] : 0);

		if (used > n->thr[r] + 1e-9) {
			over += (used - n->thr[r]) * n->inv[r];
		}
	}
	return over;
}

static void ws_score(const struct ws *ws, struct ha_bal_score *s)
{
	double var[NRES] = { 0 };
	uint32_t ntot = 0;
	uint32_t *split = calloc(ws->ng + 1, sizeof(*split));

	memset(s, 0, sizeof(*s));
	for (uint32_t d = 0; d < ws->nd; d++) {
		const struct wdom *D = &ws->d[d];
		double n = D->n_elig;

		if (D->n_elig == 0) {
			continue;
		}
		for (int r = 0; r < NRES; r++) {
			double mean = D->S1[r] / n;
			double v = D->S2[r] / n - mean * mean;

			var[r] += (v > 0 ? v : 0) * n;
		}
		ntot += D->n_elig;
		s->n1_failing += D->failing;
	}
	if (ntot) {
		double wv = 0;

		for (int r = 0; r < NRES; r++) {
			var[r] /= ntot;
			wv += ws->w[r] * var[r];
		}
		s->cpu_sd = sqrt(var[R_CPU]) * 100;
		s->mem_sd = sqrt(var[R_MEM]) * 100;
		s->vcpu_sd = sqrt(var[R_VCPU]) * 100;
		s->imbalance = ws->wsum > 0 ? sqrt(wv / ws->wsum) * 100 : 0;
	}
	for (uint32_t i = 0; i < ws->nn; i++) {
		const struct wnode *n = &ws->n[i];

		if (n->online && !n->eligible) {
			s->on_maintenance += n->n_guests;
		}
		if (!n->eligible) {
			continue;
		}
		s->nodes_eligible++;
		if (n->n_guests) {
			s->nodes_used++;
		}
		if (n->l[R_CPU] * 100 > s->cpu_max) {
			s->cpu_max = n->l[R_CPU] * 100;
		}
		if (n->l[R_MEM] * 100 > s->mem_max) {
			s->mem_max = n->l[R_MEM] * 100;
		}
		if (node_over(n, NULL, 0) > 0) {
			s->overloaded++;
		}
	}
	for (uint32_t i = 0; i < ws->nit; i++) {
		const struct witem *it = &ws->it[i];

		if (!it->alive) {
			continue;
		}
		if (it->node != NONE && !ws->n[it->node].online) {
			for (int32_t g = it->ghead; g != NONE; g = ws->gnext[g]) {
				s->stranded += ws->c->guests[g].ha;
			}
		}
		if (it->comp != NO_COMP && it->node != NONE &&
		    ws->n[it->node].online && split) {
			/* items of one group on online nodes, per group */
			if (split[it->comp]++ == 1) {
				s->affinity_split++;
			}
		}
	}
	free(split);
	for (uint32_t k = 0; k < ws->anti.cap; k++) {
		if (ws->anti.keys[k] && ws->anti.vals[k] > 1) {
			uint32_t node = (uint32_t)((ws->anti.keys[k] - 1) & 0xffffffffu);

			if (ws->n[node].online) {
				s->anti_affinity_conflicts += (uint32_t)ws->anti.vals[k] - 1;
			}
		}
	}
	s->value = ws->p->strategy == HA_BAL_STRATEGY_PACK ?
			   (s->nodes_eligible ? 100.0 * s->nodes_used / s->nodes_eligible : 0) :
			   s->imbalance;
}

/* ------------------------------------------------------------------ */
/* Constraints                                                          */

enum fit {
	FIT_OK = 0,
	FIT_INELIGIBLE,
	FIT_TYPE,
	FIT_GROUP,
	FIT_AFFINITY,
	FIT_ANTI,
	FIT_MEM,
	FIT_THRESHOLD,
	FIT_N1,
	FIT_MAX
};

static const char *const fit_names[FIT_MAX] = {
	[FIT_OK] = "ok",
	[FIT_INELIGIBLE] = "unavailable",
	[FIT_TYPE] = "wrong type",
	[FIT_GROUP] = "other group",
	[FIT_AFFINITY] = "not the affinity node",
	[FIT_ANTI] = "anti-affinity",
	[FIT_MEM] = "too little memory",
	[FIT_THRESHOLD] = "above a threshold",
	[FIT_N1] = "N+1 reserve",
};

static const char *fit_str(enum fit f)
{
	return ha_enum_str(fit_names, FIT_MAX, (unsigned)f);
}

#define F_THRESH 1u
#define F_N1 2u
#define F_RELAX 4u

/*
 * The domain's N+1 deficit after moving @it from @s (NONE, elsewhere or
 * in the domain) to @d. O(1) plus the tight nodes below the item's size
 * (and the exact check of nodes that fail the fast bound).
 */
static int64_t n1_after(const struct ws *ws, const struct witem *it, int32_t s,
			int32_t d)
{
	const struct wdom *D = &ws->d[ws->n[d].dom];
	bool s_in = s != NONE && ws->n[s].eligible && ws->n[s].dom == ws->n[d].dom;
	const struct wnode *nd = &ws->n[d], *ns = s_in ? &ws->n[s] : NULL;
	int64_t m = it->use[R_MEM], h = it->ha_mem;
	struct n1_hyp hy = {
		.d = d, .s = s_in ? s : NONE, .item = (int32_t)(it - ws->it),
		.fd0 = node_free(nd), .fd1 = node_free(nd) - m,
		.fs0 = ns ? node_free(ns) : 0, .fs1 = ns ? node_free(ns) + m : 0,
	};
	int64_t worst = 0, g, ha, marg;

	/* the destination */
	g = h > nd->gmax ? h : nd->gmax;
	ha = nd->ha_mem + h;
	marg = n1_margin(hyp_S(D, &hy, g - 1), hy.fd1, ha, g);
	if (marg < 0) {
		worst = n1_refined(ws, D, d, &hy);
	}
	/* the source */
	if (ns) {
		g = node_gmax(ws, ns, hy.item);
		ha = ns->ha_mem - h;
		marg = n1_margin(hyp_S(D, &hy, g - 1), hy.fs1, ha, g);
		if (marg < 0) {
			int64_t r = n1_refined(ws, D, s, &hy);

			worst = r > worst ? r : worst;
		}
	}
	/* the others lose at most m of margin: only tight ones matter */
	for (uint32_t k = 0; k < (m > D->Mt ? D->n_nodes : D->ntight); k++) {
		int32_t x = m > D->Mt ? (int32_t)D->nodes[k] : D->tight[k];
		const struct wnode *n = &ws->n[x];
		int64_t y;

		if (m <= D->Mt && n->margin >= m) {
			break;
		}
		if (!n->eligible || x == d || x == s || n->margin == N1_FREE) {
			continue;
		}
		y = n->gmax - 1;
		marg = n->margin + dS(hy.fd0, hy.fd1, y) + (ns ? dS(hy.fs0, hy.fs1, y) : 0);
		if (marg < 0) {
			int64_t r = n1_refined(ws, D, x, &hy);

			worst = r > worst ? r : worst;
		}
	}
	return worst;
}

static bool anti_conflict(const struct ws *ws, const struct witem *it, int32_t d)
{
	if (!it->has_anti) {
		return false;
	}
	for (int32_t g = it->ghead; g != NONE; g = ws->gnext[g]) {
		for (uint32_t k = ws->anti_off[g]; k < ws->anti_off[g + 1]; k++) {
			if (pmap_get(&ws->anti, anti_key(ws->anti_lab[k], (uint32_t)d)) > 0) {
				return true;
			}
		}
	}
	return false;
}

/* Can item @it go to node @d (from where it is) under @flags? */
static enum fit fits(const struct ws *ws, const struct witem *it, int32_t d,
		     unsigned flags)
{
	const struct wnode *n = &ws->n[d];

	if (!n->eligible) {
		return FIT_INELIGIBLE;
	}
	if (it->types & ~n->types) {
		return FIT_TYPE;
	}
	if (it->dom_req != NONE && (it->dom_req < 0 || (uint32_t)it->dom_req != n->dom)) {
		return FIT_GROUP;
	}
	if (n->used[R_MEM] + it->use[R_MEM] > n->cap[R_MEM]) {
		return FIT_MEM;
	}
	if (anti_conflict(ws, it, d)) {
		return FIT_ANTI;
	}
	if (flags & F_THRESH) {
		for (int r = 0; r < NRES; r++) {
			if ((double)(n->used[r] + it->use[r]) > n->thr[r] + 1e-9) {
				return FIT_THRESHOLD;
			}
		}
	}
	if ((flags & F_N1) && ws->p->n_plus_one) {
		int64_t before = ws->d[n->dom].deficit;

		if (n1_after(ws, it, it->node, d) > before) {
			return FIT_N1;
		}
	}
	return FIT_OK;
}

/* ------------------------------------------------------------------ */
/* Actions                                                              */

static int act_push(struct ws *ws, enum ha_bal_action_kind kind,
		    enum ha_bal_reason reason, uint32_t guest, int32_t from,
		    int32_t to, double copy, double gain, int32_t item)
{
	struct ha_bal_action *a;

	if (ws->nact == ws->capact) {
		uint32_t cap = ws->capact ? ws->capact * 2 : 64;
		void *p1 = realloc(ws->act, cap * sizeof(*ws->act));

		if (p1 == NULL) {
			ws->err = -ENOMEM;
			return -ENOMEM;
		}
		ws->act = p1;
		p1 = realloc(ws->act_item, cap * sizeof(*ws->act_item));
		if (p1 == NULL) {
			ws->err = -ENOMEM;
			return -ENOMEM;
		}
		ws->act_item = p1;
		ws->capact = cap;
	}
	a = &ws->act[ws->nact];
	memset(a, 0, sizeof(*a));
	a->kind = kind;
	a->reason = reason;
	a->guest = guest;
	a->from = from;
	a->to = to;
	a->copy_mib = kind == HA_BAL_ACT_MIGRATE ? (uint64_t)llround(copy) : 0;
	a->gain = gain;
	ws->act_item[ws->nact] = item;
	ws->nact++;
	return 0;
}

/* Records and applies the move of a whole item, one action per guest. */
static void do_move(struct ws *ws, int32_t ii, int32_t to,
		    enum ha_bal_action_kind kind, enum ha_bal_reason reason,
		    double gain)
{
	struct witem *it = &ws->it[ii];
	int32_t from = it->node;
	bool first = true;

	for (int32_t g = it->ghead; g != NONE; g = ws->gnext[g]) {
		const struct ha_bal_guest *gu = &ws->c->guests[g];

		act_push(ws, kind, reason, (uint32_t)g,
			 from != NONE ? from : gu->node, to, guest_copy_mib(ws, gu),
			 first ? gain : 0, ii);
		first = false;
	}
	ws_move(ws, ii, to);
	it->moved = true;
}

static void unplaced(struct ws *ws, int32_t ii, enum ha_bal_reason reason,
		     const char *detail)
{
	const struct witem *it = &ws->it[ii];

	for (int32_t g = it->ghead; g != NONE; g = ws->gnext[g]) {
		if (act_push(ws, HA_BAL_ACT_UNPLACED, reason, (uint32_t)g,
			     ws->c->guests[g].node, NONE, 0, 0, ii) == 0) {
			snprintf(ws->act[ws->nact - 1].detail,
				 sizeof(ws->act[0].detail), "%s", detail);
		}
	}
}

/* ------------------------------------------------------------------ */
/* Placement                                                            */

/* How full node @d would be with @it, weighted (pack prefers fuller). */
static double fill_after(const struct ws *ws, const struct witem *it, int32_t d)
{
	const struct wnode *n = &ws->n[d];
	double f = 0, w = 0;

	for (int r = 0; r < NRES; r++) {
		if (ws->w[r] > 0) {
			f += ws->w[r] * (double)(n->used[r] + it->use[r]) * n->inv[r];
			w += ws->w[r];
		}
	}
	return w > 0 ? f / w : (double)(n->used[R_MEM] + it->use[R_MEM]) * n->inv[R_MEM];
}

/*
 * The best node for @it (other than @exclude): the highest priority among
 * the nodes that fit, then the least score increase (balance) or the
 * fullest (pack), then the lowest index. With F_RELAX a second pass drops
 * thresholds and N+1. Returns the node or NONE with @why filled.
 */
static int32_t place_best(struct ws *ws, int32_t ii, int32_t exclude,
			  unsigned flags, int32_t forced, char *why, size_t whylen)
{
	const struct witem *it = &ws->it[ii];
	bool pack = ws->p->strategy == HA_BAL_STRATEGY_PACK;
	uint32_t counts[FIT_MAX];
	int64_t most_free = -1;
	int32_t most_free_node = NONE;
	int passes = (flags & F_RELAX) ? 2 : 1;

	for (int pass = 0; pass < passes; pass++) {
		unsigned fl = pass == 0 ? flags : 0;
		int32_t best = NONE;
		int32_t best_prio = INT32_MIN;
		double best_val = -INFINITY;

		memset(counts, 0, sizeof(counts));
		for (uint32_t i = 0; i < ws->nn; i++) {
			int32_t d = (int32_t)i;
			enum fit f;
			double val;

			if (d == exclude || d == it->node) {
				continue;
			}
			if (forced != NONE && d != forced) {
				counts[FIT_AFFINITY]++;
				continue;
			}
			f = fits(ws, it, d, fl);
			if (f != FIT_OK) {
				counts[f]++;
				if (f == FIT_MEM && ws->n[d].eligible) {
					int64_t fr = ws->n[d].cap[R_MEM] - ws->n[d].used[R_MEM];

					if (fr > most_free) {
						most_free = fr;
						most_free_node = d;
					}
				}
				continue;
			}
			val = pack ? fill_after(ws, it, d) :
				     -move_delta(ws, it->node, d, it->use);
			if (ws->n[d].prio > best_prio ||
			    (ws->n[d].prio == best_prio && val > best_val + 1e-12)) {
				best = d;
				best_prio = ws->n[d].prio;
				best_val = val;
			}
		}
		if (best != NONE) {
			return best;
		}
	}
	if (why) {
		size_t off;

		off = (size_t)snprintf(why, whylen, "needs %lld MiB, %.1f CPU:",
				       (long long)it->use[R_MEM],
				       (double)it->use[R_CPU] / 1000.0);
		if (ws->nn == 0 || (exclude != NONE && ws->nn == 1)) {
			snprintf(why + off, off < whylen ? whylen - off : 0, " no nodes");
			return NONE;
		}
		for (int f = FIT_INELIGIBLE; f < FIT_MAX && off < whylen; f++) {
			if (counts[f] == 0) {
				continue;
			}
			off += (size_t)snprintf(why + off, whylen - off, " %u %s", counts[f],
						fit_str((enum fit)f));
			if (f == FIT_MEM && most_free_node != NONE && off < whylen) {
				off += (size_t)snprintf(why + off, whylen - off,
							" (most free %lld MiB on %s)",
							(long long)most_free,
							ws->c->nodes[most_free_node].name);
			}
			if (off < whylen) {
				off += (size_t)snprintf(why + off, whylen - off, ",");
			}
		}
		if (off > 0 && off < whylen && why[off - 1] == ',') {
			why[off - 1] = 0;
		}
	}
	return NONE;
}

/* The node an item must join: where most memory of its affinity group
 * already runs on an eligible node (other than @self). NONE if free. */
static int32_t affinity_node(const struct ws *ws, int32_t self)
{
	const struct witem *it = &ws->it[self];
	int32_t best = NONE;
	int64_t best_mem = -1;

	if (it->comp == NO_COMP) {
		return NONE;
	}
	for (uint32_t i = 0; i < ws->nit; i++) {
		const struct witem *o = &ws->it[i];

		if ((int32_t)i == self || !o->alive || o->comp != it->comp ||
		    o->node == NONE || !ws->n[o->node].eligible) {
			continue;
		}
		if (o->use[R_MEM] > best_mem) {
			best_mem = o->use[R_MEM];
			best = o->node;
		}
	}
	return best;
}

/* After a placement: joins the item with its affinity group's item on
 * the same node. Returns the surviving item. */
static int32_t merge_comp(struct ws *ws, int32_t ii)
{
	const struct witem *it = &ws->it[ii];

	if (it->comp == NO_COMP || it->node == NONE) {
		return ii;
	}
	for (int32_t j = ws->n[it->node].ihead; j != NONE; j = ws->it[j].next) {
		if (j != ii && ws->it[j].alive && ws->it[j].comp == it->comp) {
			int32_t keep = j < ii ? j : ii;

			item_merge(ws, keep, keep == j ? ii : j);
			return keep;
		}
	}
	return ii;
}

/* ------------------------------------------------------------------ */
/* Repairs                                                              */

/* Higher priority first, then bigger first, then lower index. */
static int cmp_items(const void *pa, const void *pb, void *arg)
{
	const struct ws *ws = arg;
	int32_t a = *(const int32_t *)pa, b = *(const int32_t *)pb;
	const struct witem *x = &ws->it[a], *y = &ws->it[b];

	if (x->prio != y->prio) {
		return x->prio > y->prio ? -1 : 1;
	}
	if (x->use[R_MEM] != y->use[R_MEM]) {
		return x->use[R_MEM] > y->use[R_MEM] ? -1 : 1;
	}
	return a < b ? -1 : a > b;
}

static void sort_items(const struct ws *ws, int32_t *v, uint32_t n)
{
	qsort_r(v, n, sizeof(*v), cmp_items, (void *)ws);
}

/* Moves items elsewhere: evacuation, maintenance, group bindings. */
static void relocate(struct ws *ws, int32_t *items, uint32_t n,
		     enum ha_bal_action_kind kind, enum ha_bal_reason reason,
		     unsigned flags)
{
	char why[160];

	sort_items(ws, items, n);
	for (uint32_t k = 0; k < n && ws->err == 0; k++) {
		int32_t ii = items[k];
		struct witem *it = &ws->it[ii];
		int32_t forced, to;

		if (it->pinned && kind == HA_BAL_ACT_MIGRATE) {
			unplaced(ws, ii, HA_BAL_R_PINNED, "stays where it is");
			continue;
		}
		forced = affinity_node(ws, ii);
		to = place_best(ws, ii, it->node, flags, forced, why, sizeof(why));
		if (to == NONE) {
			unplaced(ws, ii, HA_BAL_R_NO_ROOM, why);
			continue;
		}
		do_move(ws, ii, to, kind, reason, 0);
		merge_comp(ws, ii);
	}
}

static void repair_nodes(struct ws *ws)
{
	int32_t *v = malloc((ws->nit + 1) * sizeof(*v));
	uint32_t n = 0;

	if (v == NULL) {
		ws->err = -ENOMEM;
		return;
	}
	/* guests on online nodes that take no guests: maintenance */
	for (uint32_t i = 0; i < ws->nit; i++) {
		const struct witem *it = &ws->it[i];

		if (it->alive && it->node != NONE && ws->n[it->node].online &&
		    !ws->n[it->node].eligible) {
			v[n++] = (int32_t)i;
		}
	}
	relocate(ws, v, n, HA_BAL_ACT_MIGRATE, HA_BAL_R_MAINTENANCE,
		 F_THRESH | F_N1 | F_RELAX);
	/* guests bound to a node group running outside it */
	n = 0;
	for (uint32_t i = 0; i < ws->nit; i++) {
		const struct witem *it = &ws->it[i];

		if (it->alive && it->node != NONE && ws->n[it->node].eligible &&
		    it->dom_req != NONE &&
		    (it->dom_req < 0 || (uint32_t)it->dom_req != ws->n[it->node].dom) &&
		    !it->pinned) {
			v[n++] = (int32_t)i;
		}
	}
	relocate(ws, v, n, HA_BAL_ACT_MIGRATE, HA_BAL_R_GROUP,
		 F_THRESH | F_N1 | F_RELAX);
	free(v);
}

/* Can all of @items (not on @t) go onto node @t together? */
static bool group_fits(struct ws *ws, const int32_t *items, uint32_t n, int32_t t,
		       unsigned flags)
{
	const struct wnode *nt = &ws->n[t];
	int64_t add[NRES] = { 0 };

	for (uint32_t k = 0; k < n; k++) {
		const struct witem *it = &ws->it[items[k]];

		if (it->node == t) {
			continue;
		}
		if (it->pinned || fits(ws, it, t, flags) != FIT_OK) {
			return false;
		}
		for (int r = 0; r < NRES; r++) {
			add[r] += it->use[r];
		}
	}
	if (nt->used[R_MEM] + add[R_MEM] > nt->cap[R_MEM]) {
		return false;
	}
	if (flags & F_THRESH) {
		for (int r = 0; r < NRES; r++) {
			if ((double)(nt->used[r] + add[r]) > nt->thr[r] + 1e-9) {
				return false;
			}
		}
	}
	return true;
}

static int cmp_comp(const void *pa, const void *pb, void *arg)
{
	const struct ws *ws = arg;
	int32_t a = *(const int32_t *)pa, b = *(const int32_t *)pb;

	if (ws->it[a].comp != ws->it[b].comp) {
		return ws->it[a].comp < ws->it[b].comp ? -1 : 1;
	}
	return a < b ? -1 : a > b;
}

/* Picks the node a split affinity group gathers on, or NONE. */
static int32_t affinity_target(struct ws *ws, const int32_t *members, uint32_t n)
{
	int32_t pinned_node = NONE;

	for (uint32_t k = 0; k < n; k++) {
		if (ws->it[members[k]].pinned) {
			pinned_node = ws->it[members[k]].node;
		}
	}
	/* nodes already holding members first (biggest first), then any */
	for (unsigned fl = F_THRESH | F_N1;; fl = 0) {
		for (uint32_t k = 0; k < n; k++) {
			int32_t t = ws->it[members[k]].node;

			if ((pinned_node == NONE || t == pinned_node) &&
			    ws->n[t].eligible && group_fits(ws, members, n, t, fl)) {
				return t;
			}
		}
		for (uint32_t t = 0; t < ws->nn && pinned_node == NONE; t++) {
			if (group_fits(ws, members, n, (int32_t)t, fl)) {
				return (int32_t)t;
			}
		}
		if (fl == 0) {
			return NONE;
		}
	}
}

/* Brings split affinity groups together on one node. */
static void repair_affinity(struct ws *ws)
{
	int32_t *v = malloc((ws->nit + 1) * sizeof(*v));
	uint32_t n = 0;

	if (v == NULL) {
		ws->err = -ENOMEM;
		return;
	}
	for (uint32_t i = 0; i < ws->nit; i++) {
		const struct witem *it = &ws->it[i];

		if (it->alive && it->comp != NO_COMP && ws->comp_items[it->comp] > 1 &&
		    it->node != NONE && ws->n[it->node].online) {
			v[n++] = (int32_t)i;
		}
	}
	qsort_r(v, n, sizeof(*v), cmp_comp, ws);
	for (uint32_t a = 0, b; a < n && ws->err == 0; a = b) {
		int32_t target, keep = NONE;

		for (b = a + 1; b < n && ws->it[v[b]].comp == ws->it[v[a]].comp; b++) {
		}
		if (b - a < 2) {
			continue;
		}
		sort_items(ws, v + a, b - a);
		target = affinity_target(ws, v + a, b - a);
		if (target == NONE) {
			continue; /* stays split; counted in the score */
		}
		for (uint32_t k = a; k < b; k++) {
			int32_t ii = v[k];

			if (ws->it[ii].node != target) {
				do_move(ws, ii, target, HA_BAL_ACT_MIGRATE,
					HA_BAL_R_AFFINITY, 0);
			}
			if (keep == NONE) {
				keep = ii;
			} else {
				item_merge(ws, keep, ii);
			}
		}
	}
	free(v);
}

/*
 * Moves guests that share a node with an anti-affinity peer. Per group,
 * the member with the lowest index keeps its node; the others move.
 */
static void repair_anti(struct ws *ws)
{
	uint32_t nlab = 0, total = ws->anti_off[ws->ng];
	uint32_t *off = NULL, *mem = NULL, *fill = NULL, *seen = NULL;
	int32_t *todo = NULL;
	uint32_t ntodo = 0;
	char why[160];

	for (uint32_t k = 0; k < total; k++) {
		if (ws->anti_lab[k] + 1 > nlab) {
			nlab = ws->anti_lab[k] + 1;
		}
	}
	if (total == 0) {
		return;
	}
	off = calloc(nlab + 2, sizeof(*off));
	fill = calloc(nlab + 1, sizeof(*fill));
	mem = malloc(total * sizeof(*mem));
	seen = calloc(ws->nn + 1, sizeof(*seen));
	todo = malloc(total * sizeof(*todo));
	if (!off || !fill || !mem || !seen || !todo) {
		ws->err = -ENOMEM;
		goto out;
	}
	/* members per label, in guest order */
	for (uint32_t k = 0; k < total; k++) {
		off[ws->anti_lab[k] + 1]++;
	}
	for (uint32_t l = 0; l < nlab; l++) {
		off[l + 1] += off[l];
	}
	for (uint32_t g = 0; g < ws->ng; g++) {
		for (uint32_t k = ws->anti_off[g]; k < ws->anti_off[g + 1]; k++) {
			uint32_t l = ws->anti_lab[k];

			mem[off[l] + fill[l]++] = g;
		}
	}
	for (uint32_t l = 0; l < nlab; l++) {
		for (uint32_t k = off[l]; k < off[l + 1]; k++) {
			uint32_t g = mem[k];
			int32_t node = ws->gnode[g];

			if (ws->gskip[g] || node == NONE || !ws->n[node].eligible) {
				continue;
			}
			if (seen[node] == l + 1) {
				todo[ntodo++] = (int32_t)g;
			} else {
				seen[node] = l + 1;
			}
		}
	}
	for (uint32_t k = 0; k < ntodo && ws->err == 0; k++) {
		uint32_t g = (uint32_t)todo[k];
		int32_t ii = ws->gitem[g], node = ws->gnode[g], to;
		bool conflict = false;

		/* earlier moves may have solved it */
		for (uint32_t m = ws->anti_off[g]; m < ws->anti_off[g + 1]; m++) {
			if (pmap_get(&ws->anti, anti_key(ws->anti_lab[m], (uint32_t)node)) > 1) {
				conflict = true;
			}
		}
		if (!conflict || ws->it[ii].pinned || ws->it[ii].moved) {
			continue;
		}
		to = place_best(ws, ii, node, F_THRESH | F_N1 | F_RELAX, NONE, why,
				sizeof(why));
		if (to != NONE) {
			do_move(ws, ii, to, HA_BAL_ACT_MIGRATE, HA_BAL_R_ANTI_AFFINITY, 0);
		}
	}
out:
	free(off);
	free(fill);
	free(mem);
	free(seen);
	free(todo);
}

/* ------------------------------------------------------------------ */
/* Optimisation: overload relief, balance, pack                         */

static bool budget_left(struct ws *ws)
{
	if (ws->opt_moves >= ws->p->max_moves) {
		ws->budget_hit = true;
		return false;
	}
	return true;
}

static bool mem_budget_ok(struct ws *ws, const struct witem *it)
{
	if (ws->p->max_move_mem_mib == 0 ||
	    ws->opt_mem + (uint64_t)llround(it->copy_mib) <= ws->p->max_move_mem_mib) {
		return true;
	}
	ws->budget_hit = true;
	return false;
}

/* May the optimiser move this item at all? */
static bool movable(const struct ws *ws, const struct witem *it)
{
	if (!it->alive || it->pinned || it->held || it->hot || it->moved ||
	    it->node == NONE) {
		return false;
	}
	if (it->comp != NO_COMP && ws->comp_items[it->comp] > 1) {
		return false; /* a split affinity group: repairs only */
	}
	return true;
}

static void opt_commit(struct ws *ws, int32_t ii, int32_t to,
		       enum ha_bal_reason reason, double gain)
{
	ws->opt_moves++;
	ws->opt_mem += (uint64_t)llround(ws->it[ii].copy_mib);
	do_move(ws, ii, to, HA_BAL_ACT_MIGRATE, reason, gain);
}

static void opt_overload(struct ws *ws)
{
	bool pack = ws->p->strategy == HA_BAL_STRATEGY_PACK;
	unsigned flags = F_THRESH | F_N1;

	memset(ws->mark, 0, ws->nn);
	while (ws->err == 0 && budget_left(ws)) {
		int32_t s = NONE, best_item = NONE, best_d = NONE;
		double worst = 0, best_relief = 0, best_sec = -INFINITY, best_gain = 0;

		for (uint32_t i = 0; i < ws->nn; i++) {
			double o;

			if (!ws->n[i].eligible || ws->mark[i]) {
				continue;
			}
			o = node_over(&ws->n[i], NULL, 0);
			if (o > worst + 1e-12) {
				worst = o;
				s = (int32_t)i;
			}
		}
		if (s == NONE) {
			break;
		}
		const struct wdom *D = &ws->d[ws->n[s].dom];

		for (int32_t ii = ws->n[s].ihead; ii != NONE; ii = ws->it[ii].next) {
			const struct witem *it = &ws->it[ii];
			double relief, cost;

			if (!movable(ws, it) || !mem_budget_ok(ws, it)) {
				continue;
			}
			relief = worst - node_over(&ws->n[s], it->use, -1);
			if (relief <= 1e-12) {
				continue;
			}
			/* compared in hundredths of a percent: near-ties go to the
			 * cheaper move (+1: a relief below that still counts) */
			relief = floor(relief * 1e4) + 1;
			cost = it->copy_mib * ws->cost_per_mib;
			for (uint32_t k = 0; k < D->n_nodes; k++) {
				int32_t d = (int32_t)D->nodes[k];
				double gain, sec;

				if (d == s || !ws->n[d].eligible) {
					continue;
				}
				gain = -move_delta(ws, s, d, it->use);
				sec = pack ? fill_after(ws, it, d) * 1e4 - cost : gain - cost;
				if (relief < best_relief ||
				    (relief == best_relief && sec <= best_sec)) {
					continue;
				}
				if (fits(ws, it, d, flags) != FIT_OK) {
					continue;
				}
				best_relief = relief;
				best_sec = sec;
				best_item = ii;
				best_d = d;
				best_gain = gain;
			}
		}
		if (best_item == NONE) {
			ws->mark[s] = 1; /* nothing helps this node */
			continue;
		}
		opt_commit(ws, best_item, best_d, HA_BAL_R_OVERLOAD, best_gain);
	}
}

/* The K most and least loaded eligible nodes of a domain per key. */
struct top {
	int32_t node[MAX_K];
	double key[MAX_K];
	uint32_t n;
};

static void top_push(struct top *t, uint32_t K, int32_t node, double key)
{
	uint32_t pos;

	if (t->n == K && key <= t->key[K - 1]) {
		return;
	}
	pos = t->n < K ? t->n++ : K - 1;
	while (pos > 0 && t->key[pos - 1] < key) {
		t->key[pos] = t->key[pos - 1];
		t->node[pos] = t->node[pos - 1];
		pos--;
	}
	t->key[pos] = key;
	t->node[pos] = node;
}

static uint32_t pick_extremes(struct ws *ws, const struct wdom *D, uint32_t K,
			      int32_t *src, uint32_t *nsrc, int32_t *dst,
			      uint32_t *ndst)
{
	struct top hi, lo;
	double mean[NRES];

	*nsrc = *ndst = 0;
	for (int r = 0; r < NRES; r++) {
		mean[r] = D->S1[r] / D->n_elig;
	}
	/* the combined key first: its extremes are the likeliest best pair */
	for (int pass = 0; pass <= NRES; pass++) {
		int key = pass == 0 ? NRES : pass - 1;

		if (key < NRES && ws->w[key] == 0) {
			continue;
		}
		hi.n = lo.n = 0;
		for (uint32_t k = 0; k < D->n_nodes; k++) {
			int32_t i = (int32_t)D->nodes[k];
			const struct wnode *n = &ws->n[i];
			double v = 0;

			if (!n->eligible) {
				continue;
			}
			if (key < NRES) {
				v = n->l[key];
			} else {
				for (int r = 0; r < NRES; r++) {
					v += ws->w[r] * (n->l[r] - mean[r]);
				}
			}
			top_push(&hi, K, i, v);
			top_push(&lo, K, i, -v);
		}
		for (uint32_t j = 0; j < hi.n; j++) {
			if (!(ws->mark[hi.node[j]] & 1)) {
				ws->mark[hi.node[j]] |= 1;
				src[(*nsrc)++] = hi.node[j];
			}
		}
		for (uint32_t j = 0; j < lo.n; j++) {
			if (!(ws->mark[lo.node[j]] & 2)) {
				ws->mark[lo.node[j]] |= 2;
				dst[(*ndst)++] = lo.node[j];
			}
		}
	}
	for (uint32_t j = 0; j < *nsrc; j++) {
		ws->mark[src[j]] = 0;
	}
	for (uint32_t j = 0; j < *ndst; j++) {
		ws->mark[dst[j]] = 0;
	}
	return D->n_elig;
}

struct cand {
	int32_t item, to;
	double gain, net;
};

/*
 * Best move from the @src nodes to the @dst nodes (one domain). For a
 * fixed pair (s, d) the gain of moving u is, per resource,
 *   w * (u * alpha - u^2 * beta)   with   a = 1/cap_s, b = 1/cap_d,
 *   alpha = 2 (l_s a - l_d b) + 2 S1 (b - a) / n,
 *   beta = a^2 + b^2 - (b - a)^2 / n
 * (dom_delta() expanded), so each item costs three multiply-adds.
 */
/* The node's movable items, cached until the node changes. */
static const struct mv *node_mv(struct ws *ws, int32_t ni, uint32_t *n)
{
	struct wnode *nd = &ws->n[ni];

	if (!nd->mv_valid) {
		nd->mv_n = 0;
		memset(nd->mv_umax, 0, sizeof(nd->mv_umax));
		if (nd->mv_cap < nd->n_items) {
			struct mv *p = realloc(nd->mv, nd->n_items * sizeof(*p));

			if (p == NULL) {
				ws->err = -ENOMEM;
				*n = 0;
				return NULL;
			}
			nd->mv = p;
			nd->mv_cap = nd->n_items;
		}
		for (int32_t ii = nd->ihead; ii != NONE; ii = ws->it[ii].next) {
			const struct witem *it = &ws->it[ii];
			struct mv *m;

			if (!movable(ws, it)) {
				continue;
			}
			m = &nd->mv[nd->mv_n++];
			m->item = ii;
			for (int r = 0; r < NRES; r++) {
				m->u[r] = (double)it->use[r];
				if (m->u[r] > nd->mv_umax[r]) {
					nd->mv_umax[r] = m->u[r];
				}
			}
			m->cost = it->copy_mib * ws->cost_per_mib;
			m->copy = (uint64_t)llround(it->copy_mib);
		}
		nd->mv_valid = true;
	}
	*n = nd->mv_n;
	return nd->mv;
}

static void eval_pairs(struct ws *ws, const int32_t *src, uint32_t nsrc,
		       const int32_t *dst, uint32_t ndst, struct cand *best)
{
	uint64_t mem_left = ws->p->max_move_mem_mib ?
				    ws->p->max_move_mem_mib - ws->opt_mem : UINT64_MAX;
	double min_gain = ws->p->min_gain > GAIN_EPS ? ws->p->min_gain : GAIN_EPS;
	double wk[NRES];

	for (int r = 0; r < NRES; r++) {
		wk[r] = ws->wsum > 0 ? ws->w[r] * GAIN_SCALE / ws->wsum : 0;
	}
	for (uint32_t i = 0; i < nsrc; i++) {
		int32_t s = src[i];
		const struct wnode *ns = &ws->n[s];
		const struct wdom *D = &ws->d[ns->dom];
		uint32_t nm = 0;
		const struct mv *mv = node_mv(ws, s, &nm);

		if (nm == 0) {
			continue;
		}
		for (uint32_t j = 0; j < ndst; j++) {
			int32_t d = dst[j];
			const struct wnode *nd = &ws->n[d];
			double alpha[NRES], beta[NRES];

			if (d == s) {
				continue;
			}
			double bound = 0;

			for (int r = 0; r < NRES; r++) {
				double a = ns->inv[r], b = nd->inv[r];

				alpha[r] = wk[r] * (2.0 * (ns->l[r] * a - nd->l[r] * b) +
						    2.0 * D->S1[r] * (b - a) / D->n_elig);
				beta[r] = wk[r] * (a * a + b * b - (b - a) * (b - a) / D->n_elig);
				/* no item of s can gain more than this (beta >= 0) */
				if (alpha[r] > 0) {
					double top = alpha[r] * ns->mv_umax[r];

					if (beta[r] > 0 && alpha[r] * alpha[r] / (4 * beta[r]) < top) {
						top = alpha[r] * alpha[r] / (4 * beta[r]);
					}
					bound += top;
				}
			}
			if (bound < min_gain || bound < best->net) {
				continue;
			}
			for (uint32_t k = 0; k < nm; k++) {
				const double *u = mv[k].u;
				double gain = 0, net;
				int32_t ii = mv[k].item;

				for (int r = 0; r < NRES; r++) {
					gain += u[r] * (alpha[r] - u[r] * beta[r]);
				}
				if (gain < min_gain) {
					continue;
				}
				if (mv[k].copy > mem_left) {
					ws->budget_hit = true;
					continue;
				}
				net = gain - mv[k].cost;
				if (net <= GAIN_EPS || net < best->net ||
				    (net == best->net &&
				     (ii > best->item || (ii == best->item && d >= best->to)))) {
					continue;
				}
				if (fits(ws, &ws->it[ii], d, F_THRESH | F_N1) != FIT_OK) {
					continue;
				}
				best->item = ii;
				best->to = d;
				best->gain = gain;
				best->net = net;
			}
		}
	}
}

static void opt_balance(struct ws *ws)
{
	uint32_t maxdom = 0;
	int32_t *src, *dst;
	double last_gain = INFINITY;

	for (uint32_t d = 0; d < ws->nd; d++) {
		if (ws->d[d].n_elig > maxdom) {
			maxdom = ws->d[d].n_elig;
		}
	}
	src = malloc((NRES + 1) * MAX_K * sizeof(*src));
	dst = malloc((NRES + 1) * MAX_K * sizeof(*dst));
	if (src == NULL || dst == NULL) {
		ws->err = -ENOMEM;
		goto out;
	}
	memset(ws->mark, 0, ws->nn);
	while (ws->err == 0 && budget_left(ws)) {
		struct cand best = { NONE, NONE, 0, -INFINITY };

		/* Widen the candidate lists when the extremes offer nothing
		 * (all blocked by constraints) or only a move that gains less
		 * than half of the previous one: then the best move is likely
		 * between nodes nearer the middle. */
		for (uint32_t K = 4;; K *= 4) {
			uint32_t k = K > MAX_K ? MAX_K : K;

			for (uint32_t d = 0; d < ws->nd; d++) {
				uint32_t ns, nd;

				if (ws->d[d].n_elig < 2) {
					continue;
				}
				pick_extremes(ws, &ws->d[d], k, src, &ns, dst, &nd);
				eval_pairs(ws, src, ns, dst, nd, &best);
			}
			if ((best.item != NONE && best.gain >= last_gain / 2) || k >= maxdom ||
			    k == MAX_K) {
				break;
			}
		}
		if (best.item == NONE) {
			break;
		}
		last_gain = best.gain;
		opt_commit(ws, best.item, best.to, HA_BAL_R_BALANCE, best.gain);
	}
out:
	free(src);
	free(dst);
}

/* Pack: empty the least useful nodes onto the fullest that fit. */
static bool drain_node(struct ws *ws, int32_t s, uint32_t budget)
{
	int32_t *v = malloc((ws->n[s].n_items + 1) * sizeof(*v));
	uint32_t n = 0, start = ws->nact;
	const struct wdom *D = &ws->d[ws->n[s].dom];
	bool ok = true;

	if (v == NULL) {
		ws->err = -ENOMEM;
		return false;
	}
	for (int32_t ii = ws->n[s].ihead; ii != NONE; ii = ws->it[ii].next) {
		if (!movable(ws, &ws->it[ii]) || n >= budget) {
			ok = false;
			break;
		}
		v[n++] = ii;
	}
	if (ok) {
		sort_items(ws, v, n);
	}
	for (uint32_t k = 0; ok && k < n; k++) {
		const struct witem *it = &ws->it[v[k]];
		int32_t best = NONE, best_prio = INT32_MIN;
		double best_fill = -INFINITY;

		if (!mem_budget_ok(ws, it)) {
			ok = false;
			break;
		}
		for (uint32_t j = 0; j < D->n_nodes; j++) {
			int32_t d = (int32_t)D->nodes[j];
			double f;

			if (d == s || !ws->n[d].eligible || ws->n[d].n_guests == 0) {
				continue;
			}
			if (ws->n[d].prio < best_prio) {
				continue;
			}
			f = fill_after(ws, it, d);
			if (ws->n[d].prio == best_prio && f <= best_fill) {
				continue;
			}
			if (fits(ws, it, d, F_THRESH | F_N1) != FIT_OK) {
				continue;
			}
			best = d;
			best_prio = ws->n[d].prio;
			best_fill = f;
		}
		if (best == NONE) {
			ok = false;
			break;
		}
		opt_commit(ws, v[k], best, HA_BAL_R_PACK, 0);
	}
	if (!ok) {
		/* undo this node's moves */
		while (ws->nact > start) {
			uint32_t a = --ws->nact;
			int32_t ii = ws->act_item[a];

			if (ws->act[a].guest == (uint32_t)ws->it[ii].ghead) {
				ws_move(ws, ii, s);
				ws->it[ii].moved = false;
				ws->opt_moves--;
				ws->opt_mem -= (uint64_t)llround(ws->it[ii].copy_mib);
			}
		}
	}
	free(v);
	return ok;
}

struct pack_cand {
	int32_t node;
	int32_t prio;
	double cost;
};

static int cmp_pack(const void *pa, const void *pb)
{
	const struct pack_cand *a = pa, *b = pb;

	if (a->prio != b->prio) {
		return a->prio < b->prio ? -1 : 1;
	}
	if (a->cost != b->cost) {
		return a->cost < b->cost ? -1 : 1;
	}
	return a->node < b->node ? -1 : a->node > b->node;
}

static void opt_pack(struct ws *ws)
{
	struct pack_cand *c = malloc((ws->nn + 1) * sizeof(*c));

	if (c == NULL) {
		ws->err = -ENOMEM;
		return;
	}
	memset(ws->mark, 0, ws->nn);
	for (;;) {
		uint32_t n = 0;
		bool drained = false;

		for (uint32_t i = 0; i < ws->nn; i++) {
			const struct wnode *nd = &ws->n[i];
			double cost = 0;

			if (!nd->eligible || nd->n_guests == 0 || ws->mark[i] ||
			    ws->d[nd->dom].n_elig < 2) {
				continue;
			}
			for (int32_t ii = nd->ihead; ii != NONE; ii = ws->it[ii].next) {
				cost += ws->it[ii].copy_mib;
			}
			c[n].node = (int32_t)i;
			c[n].prio = nd->prio;
			c[n].cost = cost;
			n++;
		}
		qsort(c, n, sizeof(*c), cmp_pack);
		for (uint32_t k = 0; k < n && ws->err == 0; k++) {
			uint32_t left = ws->p->max_moves - ws->opt_moves;

			if (ws->opt_moves >= ws->p->max_moves) {
				ws->budget_hit = true;
				break;
			}
			if (drain_node(ws, c[k].node, left)) {
				drained = true;
				break;
			}
			ws->mark[c[k].node] = 1; /* cannot be emptied now */
		}
		if (!drained || ws->err) {
			break;
		}
	}
	free(c);
}

/* ------------------------------------------------------------------ */
/* Waves and the plan                                                   */

static uint32_t assign_waves(struct ws *ws)
{
	uint32_t *src = calloc(ws->nn + 1, sizeof(*src));
	uint32_t *dst = calloc(ws->nn + 1, sizeof(*dst));
	uint32_t *gw = calloc(ws->ng + 1, sizeof(*gw));
	uint32_t wave = 0, count = 0;
	uint32_t per_node = ws->p->max_parallel_node;

	if (src == NULL || dst == NULL || gw == NULL) {
		ws->err = -ENOMEM;
		goto out;
	}
	for (uint32_t a = 0; a < ws->nact; a++) {
		struct ha_bal_action *x = &ws->act[a];
		uint32_t f, t;
		bool conflict;

		if (x->kind != HA_BAL_ACT_MIGRATE) {
			continue;
		}
		f = (uint32_t)x->from;
		t = (uint32_t)x->to;
		conflict = wave == 0 || count >= ws->p->max_parallel ||
			   src[f] + dst[f] >= per_node || src[t] + dst[t] >= per_node ||
			   dst[f] > 0 || src[t] > 0 || gw[x->guest] == wave;
		if (conflict) {
			wave++;
			count = 0;
			memset(src, 0, ws->nn * sizeof(*src));
			memset(dst, 0, ws->nn * sizeof(*dst));
		}
		src[f]++;
		dst[t]++;
		count++;
		gw[x->guest] = wave;
		x->wave = wave;
	}
out:
	free(src);
	free(dst);
	free(gw);
	return wave;
}

static int plan_finish(struct ws *ws, struct ha_bal_plan *plan)
{
	plan->waves = assign_waves(ws);
	if (ws->err) {
		return ws->err;
	}
	ws_score(ws, &plan->after);
	plan->actions = ws->act;
	plan->n_actions = ws->nact;
	ws->act = NULL;
	ws->nact = ws->capact = 0;
	for (uint32_t a = 0; a < plan->n_actions; a++) {
		const struct ha_bal_action *x = &plan->actions[a];

		switch (x->kind) {
		case HA_BAL_ACT_MIGRATE:
			plan->n_moves++;
			plan->copy_mib += x->copy_mib;
			break;
		case HA_BAL_ACT_PLACE:
			plan->n_places++;
			break;
		default:
			plan->n_unplaced++;
			break;
		}
	}
	plan->budget_hit = ws->budget_hit;
	return 0;
}

static struct ha_bal_plan *plan_new(enum ha_bal_op op, const struct ha_bal_policy *p)
{
	struct ha_bal_plan *plan = calloc(1, sizeof(*plan));

	if (plan) {
		plan->op = op;
		plan->strategy = p->strategy;
	}
	return plan;
}

void ha_bal_plan_free(struct ha_bal_plan *plan)
{
	if (plan == NULL) {
		return;
	}
	free(plan->actions);
	free(plan);
}

static void count_skipped(const struct ws *ws, struct ha_bal_plan *plan)
{
	for (uint32_t g = 0; g < ws->ng; g++) {
		int32_t n = ws->gnode[g];

		if (ws->gskip[g] || n == NONE || !ws->n[n].eligible) {
			continue;
		}
		if (guest_held(ws, &ws->c->guests[g])) {
			plan->skipped_hold++;
		} else if (guest_hot(ws, &ws->c->guests[g])) {
			plan->skipped_hot++;
		}
	}
}

int ha_balance_plan(const struct ha_bal_cluster *c, const struct ha_bal_policy *p,
		    struct ha_bal_plan **out)
{
	struct ha_bal_plan *plan = plan_new(HA_BAL_OP_REBALANCE, p);
	struct ha_bal_score mid;
	struct ws ws;
	uint32_t mark;
	int rc;

	if (plan == NULL) {
		return -ENOMEM;
	}
	rc = ws_build(&ws, c, p, HA_BAL_OP_REBALANCE, NONE, NONE);
	if (rc < 0) {
		goto fail;
	}
	ws_score(&ws, &plan->before);
	repair_nodes(&ws);
	repair_affinity(&ws);
	repair_anti(&ws);
	if (ws.err) {
		rc = ws.err;
		goto fail;
	}
	ws_score(&ws, &mid);
	plan->triggered = mid.overloaded > 0 ||
			  (p->strategy == HA_BAL_STRATEGY_BALANCE &&
			   mid.imbalance > p->imbalance_threshold);
	mark = ws.nact;
	if (!p->enabled) {
		plan->triggered = false;
		snprintf(plan->note, sizeof(plan->note), "balancing disabled by policy");
	} else if (plan->triggered || p->strategy == HA_BAL_STRATEGY_PACK) {
		opt_overload(&ws);
		if (p->strategy == HA_BAL_STRATEGY_PACK) {
			opt_pack(&ws);
			if (ws.nact > mark) {
				plan->triggered = true;
			}
		} else {
			opt_balance(&ws);
		}
	}
	if (ws.err) {
		rc = ws.err;
		goto fail;
	}
	plan->rounds = plan->triggered ? c->imbalanced_rounds + 1 : 0;
	if (plan->triggered && plan->rounds < p->hold_rounds) {
		/* not yet: say what would move, then undo it */
		plan->held = true;
		plan->held_moves = ws.nact - mark;
		while (ws.nact > mark) {
			uint32_t a = --ws.nact;
			int32_t ii = ws.act_item[a];

			if (ws.act[a].guest == (uint32_t)ws.it[ii].ghead) {
				ws_move(&ws, ii, ws.act[a].from);
				ws.it[ii].moved = false;
			}
		}
		ws.budget_hit = false;
		snprintf(plan->note, sizeof(plan->note),
			 "imbalanced %u of %u rounds; would move %u guests",
			 plan->rounds, p->hold_rounds, plan->held_moves);
	}
	if (plan->triggered) {
		count_skipped(&ws, plan);
	}
	rc = plan_finish(&ws, plan);
	if (rc < 0) {
		goto fail;
	}
	ws_free(&ws);
	*out = plan;
	return 0;
fail:
	ws_free(&ws);
	ha_bal_plan_free(plan);
	return rc;
}

static int place_run(const struct ha_bal_cluster *c, const struct ha_bal_policy *p,
		     enum ha_bal_op op, int32_t target, int32_t exclude,
		     struct ha_bal_plan **out);

/*
 * RELOCATE: the guest as if not placed, its node taking nothing, then a
 * CREATE; the plan names the node it leaves. On a copy: @c is const.
 */
static int relocate_run(const struct ha_bal_cluster *c, const struct ha_bal_policy *p,
			const char *name, struct ha_bal_plan **out)
{
	int32_t target = name ? ha_bal_cluster_find_guest(c, name) : -ENOENT;
	struct ha_bal_cluster *dup;
	struct ha_bal_plan *plan = NULL;
	int32_t from;
	int rc;

	if (target < 0) {
		return -ENOENT;
	}
	from = c->guests[target].node;
	if (from == NONE) {
		return -EINVAL;
	}
	dup = ha_bal_cluster_dup(c);
	if (dup == NULL) {
		return -ENOMEM;
	}
	dup->guests[target].node = NONE;
	rc = place_run(dup, p, HA_BAL_OP_RELOCATE, target, from, &plan);
	ha_bal_cluster_free(dup);
	if (rc < 0) {
		return rc;
	}
	for (uint32_t i = 0; i < plan->n_actions; i++) {
		struct ha_bal_action *a = &plan->actions[i];

		a->from = c->guests[a->guest].node;
	}
	*out = plan;
	return 0;
}

int ha_balance_place(const struct ha_bal_cluster *c, const struct ha_bal_policy *p,
		     enum ha_bal_op op, const char *name, struct ha_bal_plan **out)
{
	int32_t target = NONE, exclude = NONE;

	switch (op) {
	case HA_BAL_OP_CREATE:
		target = name ? ha_bal_cluster_find_guest(c, name) : -ENOENT;
		if (target < 0) {
			return -ENOENT;
		}
		if (c->guests[target].node != NONE) {
			return -EINVAL;
		}
		break;
	case HA_BAL_OP_RECOVER:
	case HA_BAL_OP_EVACUATE:
		if (name) {
			target = ha_bal_cluster_find_node(c, name);
			if (target < 0) {
				return -ENOENT;
			}
			exclude = target;
		} else if (op == HA_BAL_OP_EVACUATE) {
			return -EINVAL;
		}
		break;
	case HA_BAL_OP_RELOCATE:
		return relocate_run(c, p, name, out);
	default:
		return -EINVAL;
	}
	return place_run(c, p, op, target, exclude, out);
}

/* CREATE, RECOVER, EVACUATE on checked arguments; @exclude takes nothing. */
static int place_run(const struct ha_bal_cluster *c, const struct ha_bal_policy *p,
		     enum ha_bal_op op, int32_t target, int32_t exclude,
		     struct ha_bal_plan **out)
{
	struct ha_bal_plan *plan;
	int32_t *v = NULL;
	uint32_t n = 0;
	struct ws ws;
	char why[160];
	int rc;

	plan = plan_new(op, p);
	if (plan == NULL) {
		return -ENOMEM;
	}
	rc = ws_build(&ws, c, p, op, target, exclude);
	if (rc < 0) {
		goto out;
	}
	ws_score(&ws, &plan->before);
	v = malloc((ws.nit + 1) * sizeof(*v));
	if (v == NULL) {
		rc = -ENOMEM;
		goto out;
	}
	if (op == HA_BAL_OP_RECOVER) {
		/* non-HA guests of the lost node(s) stay down */
		for (uint32_t g = 0; g < ws.ng; g++) {
			const struct ha_bal_guest *gu = &c->guests[g];

			if (ws.gskip[g] && gu->node != NONE && !gu->ha) {
				act_push(&ws, HA_BAL_ACT_UNPLACED, HA_BAL_R_NOT_HA, g,
					 gu->node, NONE, 0, 0, NONE);
				snprintf(ws.act[ws.nact - 1].detail,
					 sizeof(ws.act[0].detail),
					 "stays stopped");
			}
		}
	}
	for (uint32_t i = 0; i < ws.nit; i++) {
		const struct witem *it = &ws.it[i];
		bool take;

		if (!it->alive) {
			continue;
		}
		switch (op) {
		case HA_BAL_OP_CREATE:
		case HA_BAL_OP_RELOCATE:
			take = it->node == NONE;
			break;
		case HA_BAL_OP_RECOVER:
			take = target != NONE ? it->node == target :
			       it->node == NONE || !ws.n[it->node].online;
			break;
		default:
			take = it->node == target;
			break;
		}
		if (take) {
			v[n++] = (int32_t)i;
		}
	}
	switch (op) {
	case HA_BAL_OP_CREATE:
	case HA_BAL_OP_RELOCATE:
		/* a relocation is a recovery: it may use the N+1 reserve */
		for (uint32_t k = 0; k < n; k++) {
			int32_t to = place_best(&ws, v[k], NONE,
						op == HA_BAL_OP_CREATE ? F_THRESH | F_N1 :
									 F_THRESH | F_RELAX,
						affinity_node(&ws, v[k]), why, sizeof(why));

			if (to == NONE) {
				unplaced(&ws, v[k], HA_BAL_R_NO_ROOM, why);
			} else {
				do_move(&ws, v[k], to, HA_BAL_ACT_PLACE,
					op == HA_BAL_OP_CREATE ? HA_BAL_R_CREATE :
								 HA_BAL_R_RELOCATE, 0);
				merge_comp(&ws, v[k]);
			}
		}
		break;
	case HA_BAL_OP_RECOVER:
		/* the N+1 reserve exists for this: recovery may use it */
		sort_items(&ws, v, n);
		for (uint32_t k = 0; k < n && ws.err == 0; k++) {
			int32_t ii = v[k], from = ws.it[ii].node, to;

			to = place_best(&ws, ii, from, F_THRESH | F_RELAX,
					affinity_node(&ws, ii), why, sizeof(why));
			if (to == NONE) {
				unplaced(&ws, ii, HA_BAL_R_NO_ROOM, why);
			} else {
				do_move(&ws, ii, to, HA_BAL_ACT_PLACE, HA_BAL_R_RECOVER, 0);
				merge_comp(&ws, ii);
			}
		}
		break;
	default:
		relocate(&ws, v, n, HA_BAL_ACT_MIGRATE, HA_BAL_R_EVACUATE,
			 F_THRESH | F_N1 | F_RELAX);
		break;
	}
	rc = ws.err ? ws.err : plan_finish(&ws, plan);
out:
	free(v);
	ws_free(&ws);
	if (rc < 0) {
		ha_bal_plan_free(plan);
		return rc;
	}
	*out = plan;
	return 0;
}

int ha_balance_score(const struct ha_bal_cluster *c, const struct ha_bal_policy *p,
		     struct ha_bal_score *out)
{
	struct ws ws;
	int rc = ws_build(&ws, c, p, HA_BAL_OP_REBALANCE, NONE, NONE);

	if (rc == 0) {
		ws_score(&ws, out);
	}
	ws_free(&ws);
	return rc;
}

int ha_bal_plan_apply(struct ha_bal_cluster *c, const struct ha_bal_plan *plan)
{
	for (uint32_t a = 0; a < plan->n_actions; a++) {
		const struct ha_bal_action *x = &plan->actions[a];

		if (x->guest >= c->n_guests ||
		    (x->kind != HA_BAL_ACT_UNPLACED &&
		     (x->to < 0 || (uint32_t)x->to >= c->n_nodes))) {
			return -EINVAL;
		}
	}
	for (uint32_t a = 0; a < plan->n_actions; a++) {
		const struct ha_bal_action *x = &plan->actions[a];

		if (x->kind == HA_BAL_ACT_UNPLACED) {
			continue;
		}
		c->guests[x->guest].node = x->to;
		c->guests[x->guest].last_move_ms = c->now_ms ? c->now_ms : 1;
	}
	if (plan->op == HA_BAL_OP_REBALANCE) {
		c->imbalanced_rounds = plan->triggered ? plan->rounds : 0;
	}
	return 0;
}
