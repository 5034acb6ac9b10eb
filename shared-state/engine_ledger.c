/* engine_ledger.c - the host's ledger records (layout in engine_int.h), the write-transaction
 * runner, and the rules that watch a group. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "engine_int.h"
#include "util.h"

#define MV(p, n) ((MDB_val){.mv_size = (n), .mv_data = (void *)(p)})

void lc__lkey(struct lc_lkey *k, int scope, const char *id)
{
	size_t n = strlen(id);

	if (n > LC_LKEY_MAX - 2)
		n = LC_LKEY_MAX - 2;
	k->b[0] = LC_LEDGER_PREFIX;
	k->b[1] = (unsigned char)scope;
	memcpy(k->b + 2, id, n);
	k->len = (uint8_t)(2 + n);
}

void lc__lkey_id(const unsigned char *b, size_t len, char out[128])
{
	size_t n = len > 2 ? len - 2 : 0;

	if (n > 127)
		n = 127;
	memcpy(out, b + 2, n);
	out[n] = '\0';
}

void lc__window_starts(int64_t now, int64_t starts[LC_WIN_COUNT])
{
	for (int w = 0; w < LC_WIN_COUNT; w++)
		starts[w] = lc_window_start((enum lc_window)w, now);
}

void lc__ledger_roll(struct lc_rec_ledger *r, const int64_t starts[LC_WIN_COUNT])
{
	/* a window whose bucket is over starts again; a clock that went back keeps the newer bucket */
	for (int w = 0; w < LC_WIN_COUNT; w++)
		if (starts[w] > r->w[w].bucket) {
			memset(&r->w[w], 0, sizeof(r->w[w]));
			r->w[w].bucket = starts[w];
		}
}

int lc__ledger_get(struct lc_store *s, MDB_txn *txn, const struct lc_lkey *k, const int64_t starts[LC_WIN_COUNT],
		   struct lc_rec_ledger *r)
{
	MDB_val key = MV(k->b, k->len), v;
	int rc = mdb_get(txn, s->dbi[LC_DB_COUNTERS], &key, &v);

	if (rc == MDB_NOTFOUND) {
		memset(r, 0, sizeof(*r));
		for (int w = 0; w < LC_WIN_COUNT; w++)
			r->w[w].bucket = starts[w];
		return 0;
	}
	if (rc)
		return rc;
	if (v.mv_size != sizeof(*r))
		return MDB_CORRUPTED;
	memcpy(r, v.mv_data, sizeof(*r));  /* LMDB values are not aligned */
	lc__ledger_roll(r, starts);
	return 0;
}

int lc__ledger_put(struct lc_store *s, MDB_txn *txn, const struct lc_lkey *k, const struct lc_rec_ledger *r)
{
	MDB_val key = MV(k->b, k->len), v = MV(r, sizeof(*r));

	return mdb_put(txn, s->dbi[LC_DB_COUNTERS], &key, &v, 0);
}

int lc__ledger_migrate(struct lc_store *s, MDB_txn *txn)
{
	/* the old layout: [scope 0..3][metric][window][bucket, 8 bytes BE][id] -> {used, reserved, remote};
	 * usage of current buckets carries over (tokens as input tokens), so no limit loosens */
	int64_t starts[LC_WIN_COUNT];
	unsigned char first = 0;
	MDB_cursor *cur;
	MDB_val k = MV(&first, 1), v;
	int rc = mdb_cursor_open(txn, s->dbi[LC_DB_COUNTERS], &cur);

	if (rc)
		return rc;
	lc__window_starts(lc_now(), starts);
	for (rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE); rc == 0; rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
		const unsigned char *b = k.mv_data;
		static const int lm[3] = {LC_LM_COST, LC_LM_REQUESTS, LC_LM_INPUT};
		struct lc_rec_ledger rec;
		struct lc_lkey lk;
		unsigned char old[11 + 127];
		size_t oldlen = k.mv_size;
		int64_t used;
		char id[128];

		if (b[0] > 3)
			break;
		if (k.mv_size < 11 || k.mv_size > 11 + 127 || v.mv_size != 24 || b[1] > 2 || b[2] >= LC_WIN_COUNT)
			continue;
		memcpy(&used, v.mv_data, 8);
		memcpy(old, b, oldlen);
		memcpy(id, b + 11, k.mv_size - 11);
		id[k.mv_size - 11] = '\0';
		if ((int64_t)lc_rbe64(b + 3) == starts[b[2]] && used > 0) {
			lc__lkey(&lk, b[0], id);
			if ((rc = lc__ledger_get(s, txn, &lk, starts, &rec)))
				break;
			if (rec.w[b[2]].v[lm[b[1]]] < used)
				rec.w[b[2]].v[lm[b[1]]] = used;
			if ((rc = lc__ledger_put(s, txn, &lk, &rec)))
				break;
			/* the put may have moved the cursor's page: find this key again */
			k = MV(old, oldlen);
			if ((rc = mdb_cursor_get(cur, &k, &v, MDB_SET)))
				break;
		}
		if ((rc = mdb_cursor_del(cur, 0)))
			break;
	}
	mdb_cursor_close(cur);
	return rc == MDB_NOTFOUND ? 0 : rc;
}

int64_t lc__ledger_used(const struct lc_rec_ledger *r, enum lc_metric m, enum lc_window w)
{
	return lc_sat_add(lc_lmetric_fold(m, r->w[w].v), lc_lmetric_fold(m, r->w[w].remote));
}

int lc__write(struct lc_store *s, lc_txn_fn fn, void *ctx)
{
	MDB_txn *txn;
	int rc = MDB_MAP_FULL;

	for (int attempt = 0; attempt < 8 && rc == MDB_MAP_FULL; attempt++) {
		rc = lc_store_begin(s, true, &txn);
		if (rc)
			return rc;
		rc = fn(s, txn, ctx);
		if (rc == MDB_MAP_FULL) {
			lc_store_grow(s, txn);   /* aborts, grows; run fn again */
			continue;
		}
		/* commit when fn says so; lc_store_end grows the map on a full commit (then run again) */
		rc = rc ? (lc_store_end(s, txn, false), rc) : lc_store_end(s, txn, true);
	}
	return rc;
}

/* ---- the rules watching a group ---- */

static int rules_of_limits(const struct lc_rec_limits *l, int scope, const char *id, struct lc_rule *out, int max,
			   int *n)
{
	for (int i = 0; i < l->n && i < LC_MAX_LIMITS && *n < max; i++)
		lc_rule_limit(&out[(*n)++], scope, id, &l->l[i]);
	return 0;
}

int lc__group_rules(struct lc_store *s, MDB_txn *txn, const struct lc_rec_cfg *cfg, int scope, const char *id,
		    struct lc_rule *out, int max, int *n)
{
	MDB_val k = MV(id, strlen(id)), v;
	int rc;

	*n = 0;
	switch (scope) {
	case LC_SCOPE_KEY: {
		struct lc_rec_key rk;

		rc = mdb_get(txn, s->dbi[LC_DB_KEYNAMES], &k, &v);
		if (rc)
			return rc == MDB_NOTFOUND ? 0 : rc;
		if (v.mv_size != sizeof(rk))
			return MDB_CORRUPTED;
		memcpy(&rk, v.mv_data, sizeof(rk));
		return rules_of_limits(&rk.lim, scope, id, out, max, n);
	}
	case LC_SCOPE_TEAM: {
		struct lc_rec_limits tl;

		rc = mdb_get(txn, s->dbi[LC_DB_TEAMS], &k, &v);
		if (rc)
			return rc == MDB_NOTFOUND ? 0 : rc;
		if (v.mv_size != sizeof(tl))
			return MDB_CORRUPTED;
		memcpy(&tl, v.mv_data, sizeof(tl));
		return rules_of_limits(&tl, scope, id, out, max, n);
	}
	case LC_SCOPE_ORG:
		if ((cfg->org_cap >= 0 || cfg->org_warn >= 0) && max > 0)
			lc_rule_org(&out[(*n)++], cfg->org_cap, cfg->org_warn, (enum lc_window)cfg->org_period,
				    &cfg->org_alerts);
		return 0;
	case LC_SCOPE_CUSTOMER: {
		struct lc_rec_cust c = {.alerts = {.n = -1, .projected = -1}};
		int64_t budget = cfg->cust_budget, rpm = cfg->cust_rpm;

		rc = mdb_get(txn, s->dbi[LC_DB_CUSTS], &k, &v);
		if (rc && rc != MDB_NOTFOUND)
			return rc;
		if (rc == 0 && v.mv_size == sizeof(c)) {
			memcpy(&c, v.mv_data, sizeof(c));
			if (c.budget != -2)
				budget = c.budget;
			if (c.rpm != -2)
				rpm = c.rpm;
		}
		if (budget >= 0 && *n < max)
			lc_rule_customer_budget(&out[(*n)++], id, budget, &c.alerts, &cfg->cust_alerts);
		if (rpm >= 0 && *n < max)
			lc_rule_customer_rpm(&out[(*n)++], id, rpm);
		return 0;
	}
	case LC_SCOPE_RUN:
		return lc__run_rules(s, txn, id, out, max, n);
	default:
		return 0;   /* models and providers are counted, not limited */
	}
}

/* A host that syncs with a server (the agent recorded the server's org-wide usage) leaves the
 * events of shared scopes (org, team) to the server, which sees every host's usage: each such
 * event then reaches each webhook once. A standalone host emits them itself. */
static bool synced(struct lc_store *s, MDB_txn *txn)
{
	MDB_val k = MV("synced", 6), v;

	return mdb_get(txn, s->dbi[LC_DB_META], &k, &v) == 0;
}

/* the version the events name */
static int64_t policy_version(struct lc_store *s, MDB_txn *txn)
{
	MDB_val k = MV("version", 7), v;
	int64_t ver = 0;

	if (mdb_get(txn, s->dbi[LC_DB_META], &k, &v) == 0 && v.mv_size == 8)
		memcpy(&ver, v.mv_data, 8);
	return ver;
}

/* org and team events stay with the server when this host syncs with one; a run's caps are the
 * run's own business (its 429 says so), not the operators' */
static bool server_tells(struct lc_store *s, MDB_txn *txn, const struct lc_rule *r)
{
	return r->scope == LC_SCOPE_RUN || ((r->scope == LC_SCOPE_ORG || r->scope == LC_SCOPE_TEAM) && synced(s, txn));
}

int lc__rule_event(struct lc_store *s, MDB_txn *txn, enum lc_event e, const struct lc_rule *r, const char *level,
		   int64_t used, int64_t now)
{
	char dk[400];

	if (server_tells(s, txn, r))
		return 0;
	lc_rule_dedup(dk, sizeof(dk), e, r, level, now);
	return lc__queue_event(s, txn, lc_event_name(e), lc_rule_event_data(r, level, used, now, policy_version(s, txn)),
			       dk);
}

int lc__crossing_event(struct lc_store *s, MDB_txn *txn, const struct lc_rule *r, const struct lc_crossing *c,
		       int64_t used, int64_t now)
{
	char dk[400];

	if (server_tells(s, txn, r))
		return 0;
	lc_crossing_dedup(dk, sizeof(dk), r, c, now);
	return lc__queue_event(s, txn, lc_event_name(c->event),
			       lc_crossing_event_data(r, c, used, now, policy_version(s, txn)), dk);
}
