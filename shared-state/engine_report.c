/* engine_report.c - status, usage snapshots for the server, remote usage, outbox. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine_int.h"
#include "util.h"

#define MV(p, n) ((MDB_val){.mv_size = (n), .mv_data = (void *)(p)})

int lc__queue_event(struct lc_store *s, MDB_txn *txn, const char *event, json_t *data, const char *dedup);
int lc__ensure_identity(struct lc_store *s, MDB_txn *txn);
int lc__get_cfg(struct lc_store *s, MDB_txn *txn, struct lc_rec_cfg *cfg);

static const char *const scope_names[] = {"key", "team", "org", "customer"};

static void be64(unsigned char *o, uint64_t v)
{
	for (int i = 7; i >= 0; i--, v >>= 8)
		o[i] = (unsigned char)v;
}

static uint64_t rbe64(const unsigned char *o)
{
	uint64_t v = 0;

	for (int i = 0; i < 8; i++)
		v = v << 8 | o[i];
	return v;
}

static int scope_parse(const char *s)
{
	for (int i = 0; i < 4; i++)
		if (s && !strcmp(s, scope_names[i]))
			return i;
	return -1;
}

static void ckey(struct lc_ckey *k, int scope, int m, int w, int64_t bucket, const char *id)
{
	size_t n = strlen(id);

	if (n > 127)
		n = 127;
	k->b[0] = (unsigned char)scope;
	k->b[1] = (unsigned char)m;
	k->b[2] = (unsigned char)w;
	be64(k->b + 3, (uint64_t)bucket);
	memcpy(k->b + 11, id, n);
	k->len = (uint8_t)(11 + n);
}

static void counter_read(struct lc_store *s, MDB_txn *txn, const struct lc_ckey *k, struct lc_rec_counter *c)
{
	MDB_val key = MV(k->b, k->len), v;

	memset(c, 0, sizeof(*c));
	if (mdb_get(txn, s->dbi[LC_DB_COUNTERS], &key, &v) == 0 && v.mv_size == sizeof(*c))
		memcpy(c, v.mv_data, sizeof(*c));
}

static json_t *amount(int m, int64_t v)
{
	return m == LC_METRIC_COST ? json_real((double)v / 1e6) : json_integer(v);
}

static void add_limit(json_t *arr, struct lc_store *s, MDB_txn *txn, int scope, const char *id,
		      const struct lc_limit *l, int64_t now, const char *extra_key, json_t *extra)
{
	struct lc_ckey k;
	struct lc_rec_counter c;
	int64_t end = lc_window_end(l->window, now);
	char ts[32];
	json_t *o;

	ckey(&k, scope, l->metric, l->window, lc_window_start(l->window, now), id);
	counter_read(s, txn, &k, &c);
	o = json_pack("{s:s,s:s,s:s,s:s}", "scope", scope_names[scope], "id", id, "metric",
		      lc_metric_name(l->metric), "window", lc_window_name(l->window));
	json_object_set_new(o, "used", amount(l->metric, c.used + c.remote));
	json_object_set_new(o, "reserved", amount(l->metric, c.reserved));
	json_object_set_new(o, "threshold", amount(l->metric, l->threshold));
	if (end == INT64_MAX)
		json_object_set_new(o, "resets_at", json_null());
	else {
		lc_time_format(end, ts);
		json_object_set_new(o, "resets_at", json_string(ts));
	}
	json_object_set_new(o, "action", json_string(l->warn ? "warn" : "block"));
	json_object_set_new(o, "enabled", json_boolean(l->enabled));
	if (l->alert_at >= 0)
		json_object_set_new(o, "alert_at", amount(l->metric, l->alert_at));
	if (extra_key)
		json_object_set_new(o, extra_key, extra);
	json_array_append_new(arr, o);
}

int lc_status_json(json_t **out)
{
	struct lc_store *s;
	struct lc_rec_cfg cfg;
	MDB_txn *txn;
	MDB_cursor *cur;
	MDB_val k, v;
	int64_t version = 0, expires = 0, now = lc_now();
	json_t *root, *limits, *seen;
	char ts[32];
	int rc = lc_store_open(false, &s);

	if (rc)
		return rc == LC_E_NOSTATE ? LC_E_NOPOLICY : rc;
	if ((rc = lc_store_begin(s, false, &txn)))
		return LC_E_STORE;
	rc = lc__get_cfg(s, txn, &cfg);
	if (rc) {
		lc_store_end(s, txn, false);
		return rc;
	}
	k = MV("version", 7);
	if (mdb_get(txn, s->dbi[LC_DB_META], &k, &v) == 0 && v.mv_size == 8)
		memcpy(&version, v.mv_data, 8);
	k = MV("expires_at", 10);
	if (mdb_get(txn, s->dbi[LC_DB_META], &k, &v) == 0 && v.mv_size == 8)
		memcpy(&expires, v.mv_data, 8);
	lc_time_format(expires, ts);
	root = json_object();
	json_object_set_new(root, "policy", json_pack("{s:I,s:s,s:b}", "version", (json_int_t)version, "expires_at",
						       ts, "expired", now >= expires));
	limits = json_array();
	json_object_set_new(root, "limits", limits);

	/* keys (and, once each, their teams) */
	seen = json_object();
	if (mdb_cursor_open(txn, s->dbi[LC_DB_KEYS], &cur) == 0) {
		while (mdb_cursor_get(cur, &k, &v, MDB_NEXT) == 0) {
			struct lc_rec_key rk;

			if (v.mv_size != sizeof(rk))
				continue;
			memcpy(&rk, v.mv_data, sizeof(rk));
			for (int i = 0; i < rk.lim.n; i++)
				add_limit(limits, s, txn, LC_SCOPE_KEY, rk.name, &rk.lim.l[i], now, NULL, NULL);
		}
		mdb_cursor_close(cur);
	}
	if (mdb_cursor_open(txn, s->dbi[LC_DB_TEAMS], &cur) == 0) {
		while (mdb_cursor_get(cur, &k, &v, MDB_NEXT) == 0) {
			struct lc_rec_limits tl;
			char name[128];

			if (v.mv_size != sizeof(tl) || k.mv_size >= sizeof(name))
				continue;
			memcpy(&tl, v.mv_data, sizeof(tl));
			memcpy(name, k.mv_data, k.mv_size);
			name[k.mv_size] = '\0';
			for (int i = 0; i < tl.n; i++)
				add_limit(limits, s, txn, LC_SCOPE_TEAM, name, &tl.l[i], now, NULL, NULL);
		}
		mdb_cursor_close(cur);
	}
	if (cfg.org_cap >= 0 || cfg.org_warn >= 0) {
		struct lc_limit l = {.metric = LC_METRIC_COST, .window = (enum lc_window)cfg.org_period,
				     .threshold = cfg.org_cap, .alert_at = cfg.org_warn, .enabled = true};

		if (cfg.org_cap < 0) {
			l.threshold = 0;
			l.warn = true;
		}
		add_limit(limits, s, txn, LC_SCOPE_ORG, "org", &l, now, NULL, NULL);
		if (cfg.org_cap < 0)
			json_object_set_new(json_array_get(limits, json_array_size(limits) - 1), "threshold", json_null());
	}
	/* customers: overrides, and every customer with usage this month */
	if (mdb_cursor_open(txn, s->dbi[LC_DB_COUNTERS], &cur) == 0) {
		int64_t month = lc_window_start(LC_WIN_MONTHLY, now);

		while (mdb_cursor_get(cur, &k, &v, MDB_NEXT) == 0) {
			const unsigned char *b = k.mv_data;
			char id[128];

			if (k.mv_size < 11 || b[0] != LC_SCOPE_CUSTOMER || (int64_t)rbe64(b + 3) != month)
				continue;
			memcpy(id, b + 11, k.mv_size - 11);
			id[k.mv_size - 11] = '\0';
			json_object_set_new(seen, id, json_true());
		}
		mdb_cursor_close(cur);
	}
	if (mdb_cursor_open(txn, s->dbi[LC_DB_CUSTS], &cur) == 0) {
		while (mdb_cursor_get(cur, &k, &v, MDB_NEXT) == 0) {
			char id[128];

			if (k.mv_size >= sizeof(id))
				continue;
			memcpy(id, k.mv_data, k.mv_size);
			id[k.mv_size] = '\0';
			json_object_set_new(seen, id, json_true());
		}
		mdb_cursor_close(cur);
	}
	{
		const char *id;
		json_t *tmp;

		json_object_foreach(seen, id, tmp) {
			struct lc_rec_cust c = {-2, -2};
			int64_t budget = cfg.cust_budget, rpm = cfg.cust_rpm;

			k = MV(id, strlen(id));
			if (mdb_get(txn, s->dbi[LC_DB_CUSTS], &k, &v) == 0 && v.mv_size == sizeof(c)) {
				memcpy(&c, v.mv_data, sizeof(c));
				if (c.budget != -2)
					budget = c.budget;
				if (c.rpm != -2)
					rpm = c.rpm;
			}
			if (budget >= 0) {
				struct lc_limit l = {.metric = LC_METRIC_COST, .window = LC_WIN_MONTHLY,
						     .threshold = budget, .alert_at = -1, .enabled = true};

				add_limit(limits, s, txn, LC_SCOPE_CUSTOMER, id, &l, now, "rate_limit_rpm",
					  rpm >= 0 ? json_integer(rpm) : json_null());
			}
		}
	}
	json_decref(seen);
	lc_store_end(s, txn, false);
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

int lc_host_identity(char host_id[33], char epoch[33])
{
	struct lc_store *s;
	MDB_txn *txn;
	int rc = lc_store_open(true, &s);

	if (rc)
		return rc;
	if ((rc = lc_store_begin(s, true, &txn)))
		return LC_E_STORE;
	rc = lc__ensure_identity(s, txn);
	if (!rc && (meta_str(s, txn, "host_id", host_id, 33) || meta_str(s, txn, "epoch", epoch, 33)))
		rc = LC_E_STORE;
	rc = lc_store_finish(s, txn, rc);
	return rc;
}

int lc_usage_snapshot(json_t **out)
{
	struct lc_store *s;
	MDB_txn *txn;
	MDB_cursor *cur;
	MDB_val k, v;
	char host_id[33], epoch[33];
	int64_t seq = 0, now = lc_now();
	json_t *arr;
	int rc = lc_store_open(true, &s);

	if (rc)
		return rc;
	if ((rc = lc_store_begin(s, true, &txn)))
		return LC_E_STORE;
	if ((rc = lc__ensure_identity(s, txn)) || meta_str(s, txn, "host_id", host_id, 33) ||
	    meta_str(s, txn, "epoch", epoch, 33)) {
		lc_store_end(s, txn, false);
		return rc ? rc : LC_E_STORE;
	}
	k = MV("seq", 3);
	if (mdb_get(txn, s->dbi[LC_DB_META], &k, &v) == 0 && v.mv_size == 8)
		memcpy(&seq, v.mv_data, 8);
	seq++;
	v = MV(&seq, 8);
	if ((rc = mdb_put(txn, s->dbi[LC_DB_META], &k, &v, 0))) {
		lc_store_end(s, txn, false);
		return rc;
	}
	arr = json_array();
	if (mdb_cursor_open(txn, s->dbi[LC_DB_COUNTERS], &cur) == 0) {
		while (mdb_cursor_get(cur, &k, &v, MDB_NEXT) == 0) {
			const unsigned char *b = k.mv_data;
			struct lc_rec_counter c;
			int64_t bucket;
			char id[128];
			int w;

			if (k.mv_size < 11 || k.mv_size > LC_CKEY_MAX || v.mv_size != sizeof(c) || b[0] > 3 ||
			    b[1] > 2 || b[2] > LC_WIN_LIFETIME)
				continue;
			w = b[2];
			bucket = (int64_t)rbe64(b + 3);
			if (bucket != lc_window_start((enum lc_window)w, now))
				continue;  /* past windows no longer matter for enforcement */
			memcpy(&c, v.mv_data, sizeof(c));
			memcpy(id, b + 11, k.mv_size - 11);
			id[k.mv_size - 11] = '\0';
			json_array_append_new(arr, json_pack("{s:s,s:s,s:s,s:s,s:I,s:I}", "scope", scope_names[b[0]],
							     "id", id, "metric", lc_metric_name((enum lc_metric)b[1]),
							     "window", lc_window_name((enum lc_window)w), "bucket",
							     (json_int_t)bucket, "used", (json_int_t)c.used));
		}
		mdb_cursor_close(cur);
	}
	rc = lc_store_finish(s, txn, 0);
	if (rc) {
		json_decref(arr);
		return rc;
	}
	*out = json_pack("{s:s,s:s,s:I,s:o}", "host_id", host_id, "epoch", epoch, "seq", (json_int_t)seq, "counters",
			 arr);
	return *out ? LC_OK : ENOMEM;
}

static int parse_counter(json_t *c, struct lc_ckey *k, int64_t *used)
{
	enum lc_metric m;
	enum lc_window w;
	int scope = scope_parse(json_string_value(json_object_get(c, "scope")));
	const char *id = json_string_value(json_object_get(c, "id"));

	if (scope < 0 || !id || lc_metric_parse(json_string_value(json_object_get(c, "metric")), &m) ||
	    lc_window_parse(json_string_value(json_object_get(c, "window")), &w) ||
	    !json_is_integer(json_object_get(c, "bucket")) || !json_is_integer(json_object_get(c, "used")))
		return -1;
	ckey(k, scope, m, w, json_integer_value(json_object_get(c, "bucket")), id);
	*used = json_integer_value(json_object_get(c, "used"));
	return 0;
}

int lc_remote_usage_set(json_t *counters, json_t *own)
{
	struct lc_store *s;
	MDB_txn *txn;
	size_t i, j;
	json_t *c, *o;
	int rc = lc_store_open(true, &s);

	if (rc)
		return rc;
	if (!json_is_array(counters))
		return LC_E_INVAL;
	if ((rc = lc_store_begin(s, true, &txn)))
		return LC_E_STORE;
	json_array_foreach(counters, i, c) {
		struct lc_ckey k, ok;
		struct lc_rec_counter cv;
		int64_t global, mine = 0, u;
		MDB_val key, val;

		if (parse_counter(c, &k, &global))
			continue;
		json_array_foreach(own, j, o) {
			if (parse_counter(o, &ok, &u) == 0 && ok.len == k.len && !memcmp(ok.b, k.b, k.len)) {
				mine = u;
				break;
			}
		}
		counter_read(s, txn, &k, &cv);
		cv.remote = global > mine ? global - mine : 0;
		key = MV(k.b, k.len);
		val = MV(&cv, sizeof(cv));
		if ((rc = mdb_put(txn, s->dbi[LC_DB_COUNTERS], &key, &val, 0)))
			break;
	}
	return lc_store_finish(s, txn, rc);
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
	be64(sk, after_seq + 1);
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

int lc_outbox_delete(uint64_t seq)
{
	struct lc_store *s;
	MDB_txn *txn;
	unsigned char sk[8];
	MDB_val k;
	int rc = lc_store_open(false, &s);

	if (rc)
		return rc;
	if ((rc = lc_store_begin(s, true, &txn)))
		return LC_E_STORE;
	be64(sk, seq);
	k = MV(sk, 8);
	rc = mdb_del(txn, s->dbi[LC_DB_OUTBOX], &k, NULL);
	if (rc == MDB_NOTFOUND)
		rc = 0;
	return lc_store_finish(s, txn, rc);
}

int lc_event_queue(const char *event, json_t *data, const char *dedup_key)
{
	struct lc_store *s;
	MDB_txn *txn;
	int rc = lc_store_open(true, &s);

	if (rc) {
		json_decref(data);
		return rc;
	}
	if ((rc = lc_store_begin(s, true, &txn))) {
		json_decref(data);
		return LC_E_STORE;
	}
	rc = lc__queue_event(s, txn, event, data, dedup_key);
	return lc_store_finish(s, txn, rc);
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

/* Drop what no decision will read again: counters of windows that ended more than two days ago
 * (with nothing reserved; the server has the totals), and once-per-window event markers older
 * than any window. Without this a minute limit would leave 1,440 counters a day behind. */
int lc_prune(unsigned *removed)
{
	struct lc_store *s;
	MDB_txn *txn;
	MDB_cursor *cur;
	MDB_val k, v;
	int64_t now = lc_now();
	unsigned n = 0;
	int rc = lc_store_open(false, &s);

	if (removed)
		*removed = 0;
	if (rc)
		return rc;
	if ((rc = lc_store_begin(s, true, &txn)))
		return LC_E_STORE;
	if ((rc = mdb_cursor_open(txn, s->dbi[LC_DB_COUNTERS], &cur)) == 0) {
		while (mdb_cursor_get(cur, &k, &v, MDB_NEXT) == 0) {
			const unsigned char *b = k.mv_data;
			struct lc_rec_counter c;
			int64_t bucket;

			if (k.mv_size < 11 || b[0] > 3 || b[2] >= LC_WIN_LIFETIME || v.mv_size != sizeof(c))
				continue;
			memcpy(&c, v.mv_data, sizeof(c));
			bucket = (int64_t)rbe64(b + 3);
			if (c.reserved == 0 && lc_window_end((enum lc_window)b[2], bucket) + 2 * 86400 < now &&
			    mdb_cursor_del(cur, 0) == 0)
				n++;
		}
		mdb_cursor_close(cur);
	}
	if (rc == 0 && (rc = mdb_cursor_open(txn, s->dbi[LC_DB_FIRED], &cur)) == 0) {
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
			if (*end == '\0' && bucket > 0 && bucket + 40 * 86400 < now && mdb_cursor_del(cur, 0) == 0)
				n++;
		}
		mdb_cursor_close(cur);
	}
	rc = lc_store_finish(s, txn, rc);
	if (!rc && removed)
		*removed = n;
	return rc;
}
