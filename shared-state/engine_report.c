/* engine_report.c - status, usage snapshots for the server, remote usage, outbox. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine_int.h"
#include "util.h"

#define MV(p, n) ((MDB_val){.mv_size = (n), .mv_data = (void *)(p)})


/* ---- status: every rule, its group's usage from the ledger ---- */

struct status_ctx {
	struct lc_store *s;
	MDB_txn *txn;
	struct lc_rec_cfg cfg;
	int64_t now, now_ms, starts[LC_WIN_COUNT];
	json_t *limits;
};

static void rule_row(struct status_ctx *c, const struct lc_rule *r, const struct lc_rec_ledger *rec)
{
	enum lc_metric m = r->lim.metric;
	int64_t used = 0, reserved = rec->reserved[m];

	if (r->kind == LC_RULE_CUST_RPM) {
		lc__rpm_used(c->s, c->txn, r->id, c->now_ms, &used);
		reserved = 0;
	} else {
		used = lc__ledger_used(rec, m, r->lim.window);
	}
	json_t *row = lc_rule_status_json(r, used, reserved, c->now), *lease;

	/* with leases: this host's slice of a shared limit */
	if (row && (lease = lc__lease_status(c->s, c->txn, r, rec, c->now_ms)))
		json_object_set_new(row, "lease", lease);
	json_array_append_new(c->limits, row);
}

/* every rule of one group, in policy order */
static int group_rows(struct status_ctx *c, int scope, const char *id)
{
	struct lc_rule rules[2 * LC_MAX_LIMITS + 4];
	struct lc_rec_ledger rec;
	struct lc_lkey k;
	int n = 0, rc;

	if ((rc = lc__group_rules(c->s, c->txn, &c->cfg, scope, id, rules, 2 * LC_MAX_LIMITS + 4, &n)) || n == 0)
		return rc;
	lc__lkey(&k, scope, id);
	if ((rc = lc__ledger_get(c->s, c->txn, &k, c->starts, &rec)))
		return rc;
	for (int i = 0; i < n; i++)
		rule_row(c, &rules[i], &rec);
	return 0;
}

static json_t *key_states(struct status_ctx *c)
{
	json_t *keys = json_array();
	MDB_cursor *cur;
	MDB_val k, v;

	if (mdb_cursor_open(c->txn, c->s->dbi[LC_DB_KEYNAMES], &cur))
		return keys;
	while (mdb_cursor_get(cur, &k, &v, MDB_NEXT) == 0) {
		struct lc_rec_key rk;
		char ts[32];
		json_t *o;

		if (v.mv_size != sizeof(rk))
			continue;
		memcpy(&rk, v.mv_data, sizeof(rk));
		o = json_pack("{s:s,s:s}", "id", rk.name, "state",
			      rk.revoked ? "revoked" : rk.expires_at >= 0 && c->now >= rk.expires_at ? "expired" : "active");
		json_object_set_new(o, "team", rk.team[0] ? json_string(rk.team) : json_null());
		if (rk.expires_at >= 0) {
			lc_time_format(rk.expires_at, ts);
			json_object_set_new(o, "expires_at", json_string(ts));
		} else {
			json_object_set_new(o, "expires_at", json_null());
		}
		json_array_append_new(keys, o);
	}
	mdb_cursor_close(cur);
	return keys;
}

/* the ids of one table (key names, teams, customers with an override), sorted */
static int each_id(struct status_ctx *c, int dbi, int scope)
{
	MDB_cursor *cur;
	MDB_val k, v;
	int rc = mdb_cursor_open(c->txn, c->s->dbi[dbi], &cur);

	if (rc)
		return rc;
	while (rc == 0 && mdb_cursor_get(cur, &k, &v, MDB_NEXT) == 0) {
		char id[128];

		if (k.mv_size >= sizeof(id))
			continue;
		memcpy(id, k.mv_data, k.mv_size);
		id[k.mv_size] = '\0';
		rc = group_rows(c, scope, id);
	}
	mdb_cursor_close(cur);
	return rc;
}

/* customers: every override, and every customer with usage this month (the ledger) */
static int customer_rows(struct status_ctx *c)
{
	json_t *ids = json_object();
	unsigned char pre[2] = {LC_LEDGER_PREFIX, LC_SCOPE_CUSTOMER};
	MDB_cursor *cur;
	MDB_val k = MV(pre, 2), v;
	const char *id;
	json_t *tmp;
	int rc = 0;

	if (mdb_cursor_open(c->txn, c->s->dbi[LC_DB_COUNTERS], &cur) == 0) {
		for (int r = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE); r == 0 && k.mv_size >= 2 &&
		     !memcmp(k.mv_data, pre, 2); r = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
			struct lc_rec_ledger rec;
			char cid[128];

			if (v.mv_size != sizeof(rec))
				continue;
			memcpy(&rec, v.mv_data, sizeof(rec));
			lc__lkey_id(k.mv_data, k.mv_size, cid);
			if (rec.w[LC_WIN_MONTHLY].bucket == c->starts[LC_WIN_MONTHLY] &&
			    (rec.w[LC_WIN_MONTHLY].v[LC_LM_REQUESTS] || rec.reserved[LC_METRIC_REQUESTS]))
				json_object_set_new(ids, cid, json_true());
		}
		mdb_cursor_close(cur);
	}
	if (mdb_cursor_open(c->txn, c->s->dbi[LC_DB_CUSTS], &cur) == 0) {
		while (mdb_cursor_get(cur, &k, &v, MDB_NEXT) == 0) {
			char cid[128];

			if (k.mv_size >= sizeof(cid))
				continue;
			memcpy(cid, k.mv_data, k.mv_size);
			cid[k.mv_size] = '\0';
			json_object_set_new(ids, cid, json_true());
		}
		mdb_cursor_close(cur);
	}
	json_object_foreach(ids, id, tmp) {
		if (rc == 0)
			rc = group_rows(c, LC_SCOPE_CUSTOMER, id);
	}
	json_decref(ids);
	return rc;
}

/* a run of llmcap run --budget/--max-requests, while its owner lives */
static int run_rows(void *ctx, const char *id, bool live)
{
	return group_rows(ctx, LC_SCOPE_RUN, id);
}

/* sorted by scope (key, team, org, customer, run), then id (LMDB order; customers by name) */
static int cmp_rows(json_t *x, json_t *y)
{
	int sx = lc_scope_parse(json_string_value(json_object_get(x, "scope")));
	int sy = lc_scope_parse(json_string_value(json_object_get(y, "scope")));

	if (sx != sy)
		return sx < sy ? -1 : 1;
	return strcmp(json_string_value(json_object_get(x, "id")), json_string_value(json_object_get(y, "id")));
}

/* sort a JSON array by cmp, stably (equal items keep their order) */
struct sort_item {
	json_t *v;
	size_t i;
	int (*cmp)(json_t *a, json_t *b);
};

static int cmp_items(const void *a, const void *b)
{
	const struct sort_item *x = a, *y = b;
	int c = x->cmp(x->v, y->v);

	return c ? c : x->i < y->i ? -1 : 1;
}

static void sort_array(json_t *arr, int (*cmp)(json_t *a, json_t *b))
{
	size_t n = json_array_size(arr);
	struct sort_item *v = n ? malloc(n * sizeof(*v)) : NULL;

	if (!v)
		return;
	for (size_t i = 0; i < n; i++)
		v[i] = (struct sort_item){json_incref(json_array_get(arr, i)), i, cmp};
	qsort(v, n, sizeof(*v), cmp_items);
	json_array_clear(arr);
	for (size_t i = 0; i < n; i++)
		json_array_append_new(arr, v[i].v);
	free(v);
}

int lc_status_json(json_t **out)
{
	struct status_ctx c;
	MDB_val k, v;
	int64_t version = 0, expires = 0;
	json_t *root;
	char ts[32];
	int rc = lc_store_open(false, &c.s);

	if (rc)
		return rc == LC_E_NOSTATE ? LC_E_NOPOLICY : rc;
	if ((rc = lc_store_begin(c.s, false, &c.txn)))
		return LC_E_STORE;
	rc = lc__get_cfg(c.s, c.txn, &c.cfg);
	if (rc) {
		lc_store_end(c.s, c.txn, false);
		return rc;
	}
	c.now_ms = lc_now_ms();
	c.now = lc_floordiv(c.now_ms, 1000);
	lc__window_starts(c.now, c.starts);
	k = MV("version", 7);
	if (mdb_get(c.txn, c.s->dbi[LC_DB_META], &k, &v) == 0 && v.mv_size == 8)
		memcpy(&version, v.mv_data, 8);
	k = MV("expires_at", 10);
	if (mdb_get(c.txn, c.s->dbi[LC_DB_META], &k, &v) == 0 && v.mv_size == 8)
		memcpy(&expires, v.mv_data, 8);
	lc_time_format(expires, ts);
	root = json_object();
	json_object_set_new(root, "policy", json_pack("{s:I,s:s,s:b}", "version", (json_int_t)version, "expires_at",
						       ts, "expired", c.now >= expires));
	c.limits = json_array();
	json_object_set_new(root, "limits", c.limits);
	if (!rc)
		rc = each_id(&c, LC_DB_KEYNAMES, LC_SCOPE_KEY);
	if (!rc)
		rc = each_id(&c, LC_DB_TEAMS, LC_SCOPE_TEAM);
	if (!rc)
		rc = group_rows(&c, LC_SCOPE_ORG, "org");
	if (!rc)
		rc = customer_rows(&c);
	if (!rc)
		rc = lc__run_each(c.s, c.txn, true, run_rows, &c);
	json_object_set_new(root, "keys", key_states(&c));
	lc_store_end(c.s, c.txn, false);
	if (rc) {
		json_decref(root);
		return rc;
	}
	sort_array(c.limits, cmp_rows);
	*out = root;
	return LC_OK;
}

static int meta_str(struct lc_store *s, MDB_txn *txn, const char *key, char *out, size_t n)
{
	MDB_val k = MV(key, strlen(key)), v;

	if (mdb_get(txn, s->dbi[LC_DB_META], &k, &v) || v.mv_size >= n)
		return -1;
	memcpy(out, v.mv_data, v.mv_size);
	out[v.mv_size] = '\0';
	return 0;
}

struct ident_op {
	char *host_id, *epoch;
};

static int identity_fn(struct lc_store *s, MDB_txn *txn, void *ctx)
{
	struct ident_op *op = ctx;
	int rc = lc__ensure_identity(s, txn);

	if (!rc && (meta_str(s, txn, "host_id", op->host_id, 33) || meta_str(s, txn, "epoch", op->epoch, 33)))
		rc = LC_E_STORE;
	return rc;
}

int lc_host_identity(char host_id[33], char epoch[33])
{
	struct lc_store *s;
	struct ident_op op = {host_id, epoch};
	int rc = lc_store_open(true, &s);

	return rc ? rc : lc__write(s, identity_fn, &op);
}

/* each ledger record (prefix: none, or one scope), in key order; stops when fn returns non-zero */
typedef int (*ledger_fn)(void *ctx, int scope, const char *id, const struct lc_rec_ledger *rec);
static int each_ledger(struct lc_store *s, MDB_txn *txn, int scope, const int64_t starts[LC_WIN_COUNT], ledger_fn fn,
		       void *ctx)
{
	unsigned char pre[2] = {LC_LEDGER_PREFIX, (unsigned char)(scope < 0 ? 0 : scope)};
	size_t pl = scope < 0 ? 1 : 2;
	MDB_cursor *cur;
	MDB_val k = MV(pre, 2), v;
	int rc = mdb_cursor_open(txn, s->dbi[LC_DB_COUNTERS], &cur);

	if (rc)
		return rc;
	for (rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE); rc == 0 && k.mv_size >= 2 && !memcmp(k.mv_data, pre, pl);
	     rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
		struct lc_rec_ledger rec;
		char id[128];
		int sc = ((unsigned char *)k.mv_data)[1];

		if (v.mv_size != sizeof(rec) || sc >= LC_SCOPE_COUNT)
			continue;
		memcpy(&rec, v.mv_data, sizeof(rec));
		lc__ledger_roll(&rec, starts);
		lc__lkey_id(k.mv_data, k.mv_size, id);
		if ((rc = fn(ctx, sc, id, &rec)))
			break;
	}
	mdb_cursor_close(cur);
	return rc == MDB_NOTFOUND ? 0 : rc;
}

/* snapshot: every group's current buckets, each ledger metric with usage */
static int snap_group(void *ctx, int scope, const char *id, const struct lc_rec_ledger *rec)
{
	json_t *arr = ctx;

	if (scope == LC_SCOPE_RUN)
		return 0;   /* a run is this host's alone */
	for (int w = 0; w < LC_WIN_COUNT; w++)
		for (int m = 0; m < LC_LM_COUNT; m++)
			if (rec->w[w].v[m] > 0)
				json_array_append_new(arr, json_pack("{s:s,s:s,s:s,s:s,s:I,s:I}", "scope",
								     lc_scope_name(scope), "id", id, "metric",
								     lc_lmetric_name(m), "window",
								     lc_window_name((enum lc_window)w), "bucket",
								     (json_int_t)rec->w[w].bucket, "used",
								     (json_int_t)rec->w[w].v[m]));
	return 0;
}

struct snap_op {
	json_t *arr;
	char host_id[33], epoch[33];
	int64_t seq;
};

static int snapshot_fn(struct lc_store *s, MDB_txn *txn, void *ctx)
{
	struct snap_op *op = ctx;
	int64_t starts[LC_WIN_COUNT];
	MDB_val k = MV("seq", 3), v;
	int rc;

	if ((rc = lc__ensure_identity(s, txn)))
		return rc;
	if (meta_str(s, txn, "host_id", op->host_id, 33) || meta_str(s, txn, "epoch", op->epoch, 33))
		return LC_E_STORE;
	op->seq = 0;
	if (mdb_get(txn, s->dbi[LC_DB_META], &k, &v) == 0 && v.mv_size == 8)
		memcpy(&op->seq, v.mv_data, 8);
	op->seq++;
	v = MV(&op->seq, 8);
	if ((rc = mdb_put(txn, s->dbi[LC_DB_META], &k, &v, 0)))
		return rc;
	json_array_clear(op->arr);
	lc__window_starts(lc_now(), starts);
	return each_ledger(s, txn, -1, starts, snap_group, op->arr);
}

int lc_usage_snapshot(json_t **out)
{
	struct lc_store *s;
	struct snap_op op = {.arr = json_array()};
	int rc = lc_store_open(true, &s);

	if (!rc)
		rc = lc__write(s, snapshot_fn, &op);
	if (rc) {
		json_decref(op.arr);
		return rc;
	}
	*out = json_pack("{s:s,s:s,s:I,s:o}", "host_id", op.host_id, "epoch", op.epoch, "seq", (json_int_t)op.seq,
			 "counters", op.arr);
	return *out ? LC_OK : ENOMEM;
}

/* one counter of a report: its group, ledger metric, window, bucket and value */
struct rcounter {
	struct lc_lkey k;
	int m;
	enum lc_window w;
	int64_t bucket, used;
};

static int parse_counter(json_t *c, struct rcounter *rc)
{
	int scope = lc_scope_parse(json_string_value(json_object_get(c, "scope")));
	const char *id = json_string_value(json_object_get(c, "id"));
	json_t *b = json_object_get(c, "bucket"), *u = json_object_get(c, "used");

	rc->m = lc_lmetric_parse(json_string_value(json_object_get(c, "metric")));
	if (scope < 0 || !id || rc->m < 0 || lc_window_parse(json_string_value(json_object_get(c, "window")), &rc->w) ||
	    !json_is_integer(b) || !json_is_integer(u) || json_integer_value(u) < 0)
		return -1;
	lc__lkey(&rc->k, scope, id);
	rc->bucket = json_integer_value(b);
	rc->used = json_integer_value(u);
	return 0;
}

/* a counter's identity as text (the ledger key holds a scope byte that may be 0) */
static void counter_name(const struct rcounter *c, char *out, size_t n)
{
	char id[128];

	lc__lkey_id(c->k.b, c->k.len, id);
	snprintf(out, n, "%d|%d|%d|%lld|%s", c->k.b[1], c->m, c->w, (long long)c->bucket, id);
}

struct remote_op {
	json_t *counters, *own;
};

static int remote_fn(struct lc_store *s, MDB_txn *txn, void *ctx)
{
	struct remote_op *op = ctx;
	int64_t starts[LC_WIN_COUNT];
	json_t *c, *o, *mine = json_object();
	size_t i;
	int rc = 0;

	lc__window_starts(lc_now(), starts);
	/* what this host reported, by counter */
	json_array_foreach(op->own, i, o) {
		struct rcounter rc1;
		char key[300];

		if (parse_counter(o, &rc1) == 0) {
			counter_name(&rc1, key, sizeof(key));
			json_object_set_new(mine, key, json_integer(rc1.used));
		}
	}
	json_array_foreach(op->counters, i, c) {
		struct rcounter g;
		struct lc_rec_ledger rec;
		char key[300];
		int64_t own;

		if (parse_counter(c, &g))
			continue;
		counter_name(&g, key, sizeof(key));
		own = json_integer_value(json_object_get(mine, key));
		if ((rc = lc__ledger_get(s, txn, &g.k, starts, &rec)))
			break;
		if (rec.w[g.w].bucket != g.bucket)
			continue;   /* a window that is over here, or not begun */
		rec.w[g.w].remote[g.m] = g.used > own ? g.used - own : 0;
		if ((rc = lc__ledger_put(s, txn, &g.k, &rec)))
			break;
	}
	json_decref(mine);
	if (rc == 0) {
		/* this host syncs with a server: org and team events are the server's */
		MDB_val k = MV("synced", 6), v = MV("1", 1);

		rc = mdb_put(txn, s->dbi[LC_DB_META], &k, &v, 0);
	}
	return rc;
}

int lc_remote_usage_set(json_t *counters, json_t *own)
{
	struct lc_store *s;
	struct remote_op op = {counters, own};
	int rc = lc_store_open(true, &s);

	if (rc)
		return rc;
	if (!json_is_array(counters))
		return LC_E_INVAL;
	return lc__write(s, remote_fn, &op);
}

/* ---- usage report: every group of one scope in one window, by cost ---- */

struct report_ctx {
	enum lc_window w;
	json_t *rows;
};

static int report_group(void *ctx, int scope, const char *id, const struct lc_rec_ledger *rec)
{
	struct report_ctx *c = ctx;
	const struct lc_ledger_win *w = &rec->w[c->w];
	json_t *row;

	(void)scope;
	if (w->v[LC_LM_REQUESTS] <= 0 && w->remote[LC_LM_REQUESTS] <= 0)
		return 0;
	row = json_pack("{s:s}", "id", id);
	for (int m = 0; m < LC_LM_COUNT; m++) {
		int64_t t = lc_sat_add(w->v[m], w->remote[m]);

		json_object_set_new(row, lc_lmetric_name(m), m == LC_LM_COST ? json_real((double)t / 1e6) : json_integer(t));
	}
	json_array_append_new(c->rows, row);
	return 0;
}

static int cmp_cost(json_t *x, json_t *y)
{
	double cx = json_real_value(json_object_get(x, "cost")), cy = json_real_value(json_object_get(y, "cost"));

	if (cx != cy)
		return cx > cy ? -1 : 1;
	return strcmp(json_string_value(json_object_get(x, "id")), json_string_value(json_object_get(y, "id")));
}

void lc_usage_rows_sort(json_t *rows)
{
	sort_array(rows, cmp_cost);
}

int lc_usage_report(int scope, enum lc_window w, json_t **out)
{
	struct lc_store *s;
	MDB_txn *txn;
	int64_t starts[LC_WIN_COUNT], now = lc_now();
	struct report_ctx c = {w, json_array()};
	char ts[32];
	int rc;

	if (scope < 0 || scope >= LC_SCOPE_COUNT || (int)w < 0 || w >= LC_WIN_COUNT) {
		json_decref(c.rows);
		return LC_E_INVAL;
	}
	rc = lc_store_open(false, &s);
	if (rc) {
		json_decref(c.rows);
		return rc == LC_E_NOSTATE ? LC_E_NOPOLICY : rc;
	}
	if ((rc = lc_store_begin(s, false, &txn))) {
		json_decref(c.rows);
		return LC_E_STORE;
	}
	lc__window_starts(now, starts);
	rc = each_ledger(s, txn, scope, starts, report_group, &c);
	lc_store_end(s, txn, false);
	if (rc) {
		json_decref(c.rows);
		return rc;
	}
	lc_usage_rows_sort(c.rows);
	lc_time_format(starts[w], ts);
	*out = json_pack("{s:s,s:s,s:s,s:o}", "by", lc_scope_name(scope), "window", lc_window_short_name(w),
			 "window_start", ts, "rows", c.rows);
	return *out ? LC_OK : ENOMEM;
}

int lc_outbox_list(uint64_t after_seq, size_t max, json_t **out)
{
	struct lc_store *s;
	MDB_txn *txn;
	MDB_cursor *cur;
	unsigned char sk[8];
	MDB_val k, v;
	json_t *arr;
	int rc = lc_store_open(false, &s), op = MDB_SET_RANGE;

	if (rc)
		return rc;
	if ((rc = lc_store_begin(s, false, &txn)))
		return LC_E_STORE;
	arr = json_array();
	lc_be64(sk, after_seq + 1);
	k = MV(sk, 8);
	if (mdb_cursor_open(txn, s->dbi[LC_DB_OUTBOX], &cur) == 0) {
		while (json_array_size(arr) < max && mdb_cursor_get(cur, &k, &v, (MDB_cursor_op)op) == 0) {
			json_t *ev = json_loadb(v.mv_data, v.mv_size, 0, NULL);

			op = MDB_NEXT;
			if (ev)
				json_array_append_new(arr, ev);
		}
		mdb_cursor_close(cur);
	}
	lc_store_end(s, txn, false);
	*out = arr;
	return LC_OK;
}

static int outbox_del_fn(struct lc_store *s, MDB_txn *txn, void *ctx)
{
	unsigned char sk[8];
	MDB_val k = MV(sk, 8);
	int rc;

	lc_be64(sk, *(uint64_t *)ctx);
	rc = mdb_del(txn, s->dbi[LC_DB_OUTBOX], &k, NULL);
	return rc == MDB_NOTFOUND ? 0 : rc;
}

int lc_outbox_delete(uint64_t seq)
{
	struct lc_store *s;
	int rc = lc_store_open(false, &s);

	return rc ? rc : lc__write(s, outbox_del_fn, &seq);
}

struct event_op {
	const char *event, *dedup;
	json_t *data;
};

static int event_fn(struct lc_store *s, MDB_txn *txn, void *ctx)
{
	struct event_op *op = ctx;

	/* queue_event steals data; a retry after MAP_FULL needs it again */
	return lc__queue_event(s, txn, op->event, json_incref(op->data), op->dedup);
}

int lc_event_queue(const char *event, json_t *data, const char *dedup_key)
{
	struct lc_store *s;
	struct event_op op = {event, dedup_key, data};
	int rc = lc_store_open(true, &s);

	if (!rc)
		rc = lc__write(s, event_fn, &op);
	json_decref(data);
	return rc;
}

json_t *lc_webhooks(void)
{
	struct lc_store *s;
	MDB_txn *txn;
	MDB_val k = MV("webhooks", 8), v;
	json_t *w = NULL;

	if (lc_store_open(false, &s) || lc_store_begin(s, false, &txn))
		return NULL;
	if (mdb_get(txn, s->dbi[LC_DB_META], &k, &v) == 0)
		w = json_loadb(v.mv_data, v.mv_size, 0, NULL);
	lc_store_end(s, txn, false);
	return w;
}

/* Drop what no decision will read again: limit counters of older llmcaps (the ledger replaced them)
 * and once-per-window event markers older than any window. Ledger records are one per group and
 * keep their lifetime usage: they are never pruned. */
static int prune_fn(struct lc_store *s, MDB_txn *txn, void *ctx)
{
	unsigned *n = ctx;
	int64_t now = lc_now();
	MDB_cursor *cur;
	MDB_val k, v;
	int rc;

	*n = 0;
	if ((rc = mdb_cursor_open(txn, s->dbi[LC_DB_COUNTERS], &cur)))
		return rc;
	while (mdb_cursor_get(cur, &k, &v, MDB_NEXT) == 0) {
		if (((unsigned char *)k.mv_data)[0] > 3)
			break;   /* ledger records ('L') and tickets (0xff) follow */
		if ((rc = mdb_cursor_del(cur, 0)))
			break;
		(*n)++;
	}
	mdb_cursor_close(cur);
	if (rc)
		return rc;
	if ((rc = mdb_cursor_open(txn, s->dbi[LC_DB_FIRED], &cur)))
		return rc;
	while (mdb_cursor_get(cur, &k, &v, MDB_NEXT) == 0) {
		char key[512], *bar, *end;
		long long bucket;

		if (k.mv_size >= sizeof(key))
			continue;
		memcpy(key, k.mv_data, k.mv_size);
		key[k.mv_size] = '\0';
		bar = strrchr(key, '|');
		if (!bar || bar == strchr(key, '|'))
			continue;  /* no window bucket (key_expired|NAME, policy_expired|N): keep */
		bucket = strtoll(bar + 1, &end, 10);
		if (*end == '\0' && bucket > 0 && bucket + 40 * 86400 < now) {
			if ((rc = mdb_cursor_del(cur, 0)))
				break;
			(*n)++;
		}
	}
	mdb_cursor_close(cur);
	return rc ? rc : lc__run_prune(s, txn, n);
}

int lc_prune(unsigned *removed)
{
	struct lc_store *s;
	unsigned n = 0;
	int rc = lc_store_open(false, &s);

	if (removed)
		*removed = 0;
	if (rc)
		return rc;
	rc = lc__write(s, prune_fn, &n);
	if (!rc && removed)
		*removed = n;
	return rc;
}
