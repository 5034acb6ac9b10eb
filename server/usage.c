/* usage.c - host usage reports in, org-wide totals out, org and team
 * notifications on the sums.
 *
 * A report is cumulative per (host_id, epoch): {"host_id","epoch","seq",
 * "counters":[{"scope","id","metric","window","bucket","used"}]}. The server
 * keeps, per (host_id, epoch), the last seq and the last cumulative value of
 * each counter, and per counter the total over every host record. A report
 * whose seq is not greater than the stored one changes nothing (a retry or a
 * late duplicate), and a counter only ever moves forward, so no report is
 * counted twice. A new epoch (a host whose store was recreated) is a new
 * record: what the old one counted stays counted.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "policy.h"
#include "srv.h"
#include "util.h"

#define SEP "\x1f"
#define HOSTREC_MAX 256

/* bounds on what a report may carry (checked where it enters) */
#define SRV_USED_MAX 1000000000000000LL     /* 10^15: $10^9 in micro-USD, or 10^15 tokens */
#define SRV_SEQ_MAX (1LL << 53)
#define SRV_SEQ_STEP_MAX (1LL << 20)        /* how far one report may move a host's seq */
#define SRV_REPORT_COUNTERS_MAX 65536
#define SRV_HOSTREC_COUNTERS_MAX 131072     /* live counters remembered per (host_id, epoch) */
#define SRV_HOST_RECORDS_MAX 100000
#define SRV_E_REFUSED (-29001)              /* post_txn: refused (op->refuse says why) */

static bool srv_scope_known(const char *s)
{
	static const char *const n[] = {"key", "team", "org", "customer", "model", "provider", NULL};
	for (const char *const *p = n; *p; p++)
		if (!strcmp(s, *p))
			return true;
	return false;
}

static bool srv_metric_known(const char *m)
{
	static const char *const n[] = {"cost", "requests", "tokens", "input_tokens", "cached_input_tokens",
					"output_tokens", NULL};
	for (const char *const *p = n; *p; p++)
		if (!strcmp(m, *p))
			return true;
	return false;
}

int srv_ckey(char *out, size_t outlen, const char *scope, const char *id, const char *metric,
	     const char *window, int64_t bucket)
{
	int n = snprintf(out, outlen, "%s" SEP "%s" SEP "%s" SEP "%s" SEP "%" PRId64, scope, id, metric, window,
			 bucket);
	return (n < 0 || (size_t)n >= outlen) ? -1 : 0;
}

/* split a ckey; fields point into buf */
static int ckey_split(const char *k, size_t klen, char *buf, size_t buflen, char **f)
{
	if (klen >= buflen)
		return -1;
	memcpy(buf, k, klen);
	buf[klen] = 0;
	int n = 0;
	f[n++] = buf;
	for (char *p = buf; *p; p++)
		if (*p == 0x1f) {
			*p = 0;
			if (n == 5)
				return -1;
			f[n++] = p + 1;
		}
	return n == 5 ? 0 : -1;
}

static int64_t get_total_raw(MDB_txn *txn, struct srv *s, const char *ck)
{
	return srv_get_int(txn, s->db_totals, ck, 0);
}

int64_t srv_total(MDB_txn *txn, struct srv *s, const char *scope, const char *id, const char *metric,
		  const char *window, int64_t bucket)
{
	char ck[512];
	if (srv_ckey(ck, sizeof ck, scope, id, metric, window, bucket) != 0)
		return 0;
	return get_total_raw(txn, s, ck);
}

/* the org's counters: whatever id the host engine uses for the org scope */
static int64_t org_total(MDB_txn *txn, struct srv *s, const char *metric, const char *window, int64_t bucket)
{
	MDB_cursor *c;
	MDB_val k, v;
	char pre[] = "org" SEP;
	int64_t sum = 0;
	if (mdb_cursor_open(txn, s->db_totals, &c) != 0)
		return 0;
	k.mv_data = pre;
	k.mv_size = strlen(pre);
	for (int rc = mdb_cursor_get(c, &k, &v, MDB_SET_RANGE); rc == 0; rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
		char buf[512], *f[5];
		if (k.mv_size < strlen(pre) || memcmp(k.mv_data, pre, strlen(pre)) != 0)
			break;
		if (ckey_split(k.mv_data, k.mv_size, buf, sizeof buf, f) != 0)
			continue;
		if (strcmp(f[2], metric) == 0 && strcmp(f[3], window) == 0 && strtoll(f[4], NULL, 10) == bucket) {
			char num[32];
			snprintf(num, sizeof num, "%.*s", (int)(v.mv_size < 31 ? v.mv_size : 31), (char *)v.mv_data);
			long long t = strtoll(num, NULL, 10);
			sum = lc_sat_add(sum, t > 0 ? t : 0);
		}
	}
	mdb_cursor_close(c);
	return sum;
}

/* approximate window lengths, only to decide when a bucket can be forgotten */
static int64_t window_len(enum lc_window w)
{
	static const int64_t len[] = {60, 3600, 86400, 7 * 86400, 31 * 86400, 0};
	return len[w];
}

static bool bucket_stale(const char *window, int64_t bucket, int64_t now)
{
	enum lc_window w;
	if (lc_window_parse(window, &w) != 0 || w == LC_WIN_LIFETIME)
		return false;
	int64_t keep = 2 * window_len(w);
	if (keep < 2 * 3600)
		keep = 2 * 3600;
	return lc_window_end(w, bucket) < now - keep;
}

static bool bucket_current(const char *window, int64_t bucket, int64_t now)
{
	enum lc_window w;
	if (lc_window_parse(window, &w) != 0)
		return false;
	return lc_window_start(w, now) == bucket;
}

/* ---- POST /v1/usage ---- */

struct post_op {
	json_t *rep;
	const char *host_id, *epoch;
	int64_t seq;
	struct srv_resp *rs;
	bool duplicate;
	int64_t stored_seq;
	json_t *answer;
	const char *refuse;      /* with SRV_E_REFUSED: why (a 4xx) */
	int refuse_status;
};

/* a total only grows, and never past INT64_MAX (each report's numbers are bounded, but hosts are many) */
static int add_total(struct srv *s, MDB_txn *txn, const char *ck, int64_t delta)
{
	int64_t t = get_total_raw(txn, s, ck);
	if (t < 0)
		t = 0;
	return srv_put_int(txn, s->db_totals, ck, lc_sat_add(t, delta > 0 ? delta : 0));
}

static int post_txn(struct srv *s, MDB_txn *txn, void *ctx)
{
	struct post_op *op = ctx;
	char hkey[HOSTREC_MAX];
	int64_t now = lc_now();
	int rc;

	snprintf(hkey, sizeof hkey, "%s|%s", op->host_id, op->epoch);
	json_t *rec = srv_get_json(txn, s->db_hosts, hkey);
	if (!rec) {
		MDB_stat st;
		if ((rc = mdb_stat(txn, s->db_hosts, &st)) != 0)
			return rc;
		if (st.ms_entries >= SRV_HOST_RECORDS_MAX) {
			op->refuse = "too many host records on this server";
			op->refuse_status = 507;
			return SRV_E_REFUSED;
		}
		rec = json_pack("{s:I,s:{}}", "seq", (json_int_t)-1, "counters");
	}
	json_t *stored = json_object_get(rec, "counters");
	int64_t last = json_integer_value(json_object_get(rec, "seq"));
	op->duplicate = op->seq <= last;
	op->stored_seq = op->duplicate ? last : op->seq;
	/* a host counts its reports one by one: a seq far ahead of the last is not a report of its
	 * (it would make the host's genuine reports "duplicates" from then on) */
	if (last >= 0 && op->seq > last && op->seq - last > SRV_SEQ_STEP_MAX) {
		json_decref(rec);
		op->refuse = "seq: too far ahead of this host's last report";
		op->refuse_status = 409;
		return SRV_E_REFUSED;
	}

	json_t *mine = json_object();   /* ckeys this host reported: always answered */
	size_t i;
	json_t *c;
	json_array_foreach(json_object_get(op->rep, "counters"), i, c) {
		char ck[512];
		srv_ckey(ck, sizeof ck, json_string_value(json_object_get(c, "scope")),
			 json_string_value(json_object_get(c, "id")), json_string_value(json_object_get(c, "metric")),
			 json_string_value(json_object_get(c, "window")),
			 json_integer_value(json_object_get(c, "bucket")));
		json_object_set_new(mine, ck, json_true());
		if (op->duplicate)
			continue;
		int64_t used = json_integer_value(json_object_get(c, "used"));
		json_t *oldv = json_object_get(stored, ck);
		int64_t old = json_integer_value(oldv);
		if (!oldv && json_object_size(stored) >= SRV_HOSTREC_COUNTERS_MAX) {
			op->refuse = "counters: too many live counters for this host";
			op->refuse_status = 413;
			rc = SRV_E_REFUSED;
			goto fail;
		}
		if (used > old) {
			if ((rc = add_total(s, txn, ck, used - old)) != 0)
				goto fail;
			json_object_set_new(stored, ck, json_integer(used));
		}
	}
	if (!op->duplicate) {
		/* forget buckets that can no longer change */
		const char *k;
		json_t *v;
		void *tmp;
		json_object_foreach_safe(stored, tmp, k, v) {
			char buf[512], *f[5];
			if (ckey_split(k, strlen(k), buf, sizeof buf, f) == 0 &&
			    bucket_stale(f[3], strtoll(f[4], NULL, 10), now))
				json_object_del(stored, k);
		}
		json_object_set_new(rec, "seq", json_integer(op->seq));
		json_object_set_new(rec, "last_at", json_integer(now));
		if ((rc = srv_put_json(txn, s->db_hosts, hkey, rec)) != 0)
			goto fail;
		srv_usage_evaluate(s, txn, now);
	}

	/* answer: the org-wide totals of the current org and team buckets (few), and of every
	 * counter this host reported. Key and customer counters of other hosts reach a host once
	 * it has used that key or customer itself: the answer stays proportional to the host's
	 * own activity, not to the size of the organisation. */
	json_t *out = json_array();
	MDB_cursor *cur;
	MDB_val k, v;
	if ((rc = mdb_cursor_open(txn, s->db_totals, &cur)) != 0) {
		json_decref(out);
		goto fail;
	}
	static const char *const shared[] = {"org" SEP, "team" SEP};
	for (size_t p = 0; p < 2; p++) {
		size_t pl = strlen(shared[p]);
		k.mv_data = (void *)shared[p];
		k.mv_size = pl;
		for (int r = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE); r == 0; r = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
			char buf[512], *f[5];
			if (k.mv_size < pl || memcmp(k.mv_data, shared[p], pl) != 0)
				break;
			if (ckey_split(k.mv_data, k.mv_size, buf, sizeof buf, f) != 0)
				continue;
			char ck[512];
			snprintf(ck, sizeof ck, "%.*s", (int)k.mv_size, (char *)k.mv_data);
			if (bucket_current(f[3], strtoll(f[4], NULL, 10), now))
				json_object_set_new(mine, ck, json_true());
		}
	}
	mdb_cursor_close(cur);
	const char *ck;
	json_t *dummy;
	json_object_foreach(mine, ck, dummy) {
		char buf[512], *f[5];
		if (ckey_split(ck, strlen(ck), buf, sizeof buf, f) != 0)
			continue;
		json_array_append_new(out, json_pack("{s:s,s:s,s:s,s:s,s:I,s:I}", "scope", f[0], "id", f[1], "metric",
						     f[2], "window", f[3], "bucket", (json_int_t)strtoll(f[4], NULL, 10),
						     "used", (json_int_t)get_total_raw(txn, s, ck)));
	}
	json_decref(op->answer);
	op->answer = out;
	json_decref(mine);
	json_decref(rec);
	return op->duplicate ? MDB_NOTFOUND : 0;   /* a duplicate writes nothing */
fail:
	json_decref(mine);
	json_decref(rec);
	return rc;
}

/* a string of at most max bytes without the counter-key separator (and, for host ids, '|') */
static bool str_field2(json_t *o, const char *name, size_t max, bool bar_ok)
{
	json_t *v = json_object_get(o, name);
	return v && json_is_string(v) && json_string_length(v) <= max &&
	       !memchr(json_string_value(v), 0x1f, json_string_length(v)) &&
	       strlen(json_string_value(v)) == json_string_length(v) && (bar_ok || !strchr(json_string_value(v), '|'));
}

static bool str_field(json_t *o, const char *name, size_t max) { return str_field2(o, name, max, false); }

/* the first member of o not named in allowed, or NULL */
static const char *unknown_field(json_t *o, const char *const *allowed)
{
	const char *k;
	json_t *v;
	json_object_foreach(o, k, v) {
		const char *const *a = allowed;
		while (*a && strcmp(*a, k))
			a++;
		if (!*a)
			return k;
	}
	return NULL;
}

/* Every number of a report is bounded here, where it enters, so no sum over hosts and counters can
 * wrap (totals also add saturating) and no window computation overflows. */
static const char *counter_bad(json_t *c)
{
	static const char *const fields[] = {"scope", "id", "metric", "window", "bucket", "used", NULL};
	enum lc_window w;
	json_t *b = json_object_get(c, "bucket"), *u = json_object_get(c, "used");

	if (!json_is_object(c))
		return ": must be an object";
	if (unknown_field(c, fields))
		return ": unknown field";
	if (!json_is_string(json_object_get(c, "scope")) || !srv_scope_known(json_string_value(json_object_get(c, "scope"))))
		return ".scope: must be one of key, team, org, customer, model, provider";
	if (!json_is_string(json_object_get(c, "id")))
		return ".id: must be a string";
	if (!json_is_string(json_object_get(c, "metric")) ||
	    !srv_metric_known(json_string_value(json_object_get(c, "metric"))))
		return ".metric: unknown metric";
	if (!json_is_string(json_object_get(c, "window")) ||
	    lc_window_parse(json_string_value(json_object_get(c, "window")), &w) != 0)
		return ".window: must be one of minute, hour, daily, weekly, monthly, lifetime";
	if (!json_is_integer(b) || json_integer_value(b) < 0 || json_integer_value(b) > LC_TIME_MAX ||
	    lc_window_start(w, json_integer_value(b)) != json_integer_value(b))
		return ".bucket: must be the start of a window (unix seconds, 1970..9999)";
	if (!json_is_integer(u) || json_integer_value(u) < 0 || json_integer_value(u) > SRV_USED_MAX)
		return ".used: must be an integer from 0 to 10^15";
	return NULL;
}

void srv_usage_post(struct srv *s, const char *body, size_t len, struct srv_resp *rs)
{
	static const char *const fields[] = {"host_id", "epoch", "seq", "counters", NULL};
	json_error_t je;
	struct post_op op = {.rs = rs};
	json_t *rep;
	const char *unk;

	if (!body || len == 0) {
		srv_resp_error(rs, 400, "invalid_request_error", "request body required (a usage report)");
		return;
	}
	rep = json_loadb(body, len, JSON_REJECT_DUPLICATES, &je);
	if (!rep || !json_is_object(rep)) {
		srv_resp_error(rs, 400, "invalid_request_error", "malformed JSON: %s", rep ? "not an object" : je.text);
		json_decref(rep);
		return;
	}
	if ((unk = unknown_field(rep, fields))) {
		srv_resp_error(rs, 400, "invalid_request_error", "%.64s: unknown field", unk);
		goto out;
	}
	if (!str_field(rep, "host_id", 64) || json_string_length(json_object_get(rep, "host_id")) == 0) {
		srv_resp_error(rs, 400, "invalid_request_error", "host_id: required (string, at most 64 characters)");
		goto out;
	}
	if (!str_field(rep, "epoch", 64)) {
		srv_resp_error(rs, 400, "invalid_request_error", "epoch: required (string, at most 64 characters)");
		goto out;
	}
	json_t *seq = json_object_get(rep, "seq");
	if (!json_is_integer(seq) || json_integer_value(seq) < 0 || json_integer_value(seq) > SRV_SEQ_MAX) {
		srv_resp_error(rs, 400, "invalid_request_error", "seq: required (integer from 0 to 2^53)");
		goto out;
	}
	json_t *ctrs = json_object_get(rep, "counters");
	if (!json_is_array(ctrs)) {
		srv_resp_error(rs, 400, "invalid_request_error", "counters: required (array)");
		goto out;
	}
	if (json_array_size(ctrs) > SRV_REPORT_COUNTERS_MAX) {
		srv_resp_error(rs, 413, "invalid_request_error", "counters: at most %d per report", SRV_REPORT_COUNTERS_MAX);
		goto out;
	}
	size_t i;
	json_t *c;
	json_array_foreach(ctrs, i, c) {
		const char *bad = counter_bad(c);
		if (bad) {
			srv_resp_error(rs, 400, "invalid_request_error", "counters[%zu]%s", i, bad);
			goto out;
		}
	}
	/* ids are the host's business (a customer id comes from a request): one the counter key
	 * cannot hold is dropped, not a reason to refuse the host's whole report */
	for (i = json_array_size(ctrs); i-- > 0;) {
		c = json_array_get(ctrs, i);
		if (!str_field2(c, "id", SRV_COUNTER_ID_MAX, true)) {
			lc_log(LC_LOG_INFO, "llmcap-server: usage report: counter with an unusable id dropped");
			json_array_remove(ctrs, i);
		}
	}
	op.rep = rep;
	op.host_id = json_string_value(json_object_get(rep, "host_id"));
	op.epoch = json_string_value(json_object_get(rep, "epoch"));
	op.seq = json_integer_value(seq);
	int rc = srv_write(s, post_txn, &op);
	if (rc == SRV_E_REFUSED) {
		srv_resp_error(rs, op.refuse_status, "invalid_request_error", "%s", op.refuse);
		goto out;
	}
	if (rc != 0 && rc != MDB_NOTFOUND) {
		srv_resp_error(rs, 500, "api_error", "store: %s", mdb_strerror(rc));
		goto out;
	}
	srv_resp_json(rs, 200, json_pack("{s:s,s:s,s:I,s:b,s:o}", "host_id", op.host_id, "epoch", op.epoch, "seq",
					 (json_int_t)op.stored_seq, "duplicate", op.duplicate, "counters",
					 op.answer ? op.answer : json_array()));
	op.answer = NULL;
	if (!op.duplicate)
		srv_notifier_kick(s);
out:
	json_decref(op.answer);
	json_decref(rep);
}

/* ---- limits of the current pieces ---- */

static json_t *amount(enum lc_metric m, int64_t v)
{
	if (m == LC_METRIC_COST)
		return json_real((double)v / 1e6);
	return json_integer(v);
}

static void limit_entry(json_t *arr, const char *scope, const char *id, const struct lc_limit *l, int64_t used,
			int64_t now)
{
	char t[32];
	int64_t end = lc_window_end(l->window, now);
	json_t *e = json_pack("{s:s,s:s,s:s,s:s,s:o,s:o,s:o}", "scope", scope, "id", id, "metric",
			      lc_metric_name(l->metric), "window", lc_window_name(l->window), "used",
			      amount(l->metric, used), "reserved", amount(l->metric, 0), "threshold",
			      amount(l->metric, l->threshold));
	if (end == INT64_MAX) {
		json_object_set_new(e, "resets_at", json_null());
	} else {
		lc_time_format(end, t);
		json_object_set_new(e, "resets_at", json_string(t));
	}
	if (l->alert_at >= 0)
		json_object_set_new(e, "alert_at", amount(l->metric, l->alert_at));
	json_object_set_new(e, "action", json_string(l->warn ? "warn" : "block"));
	json_object_set_new(e, "enabled", json_boolean(l->enabled));
	json_array_append_new(arr, e);
}

typedef void (*limit_cb)(struct srv *s, MDB_txn *txn, void *ctx, const char *scope, const char *id,
			 const struct lc_limit *l, int64_t used, int64_t now);

/* The org cap as limits: the cap itself, and the warning threshold as its alert_at. */
static int org_limit(MDB_txn *txn, struct srv *s, struct lc_limit *l, bool *has_cap, int64_t *warn)
{
	json_t *org = srv_get_json(txn, s->db_meta, "org");
	const char *period = json_string_value(json_object_get(org, "period"));
	json_t *cap = json_object_get(org, "spend_cap_usd");
	json_t *w = json_object_get(org, "warning_threshold_usd");
	memset(l, 0, sizeof *l);
	l->metric = LC_METRIC_COST;
	l->enabled = true;
	l->alert_at = -1;
	*warn = -1;
	*has_cap = false;
	if (!org) {
		return -1;
	}
	if (!period || lc_window_parse(period, &l->window) != 0)
		l->window = LC_WIN_MONTHLY;
	if (cap && json_is_number(cap) && lc_usd_to_micro(json_number_value(cap), &l->threshold) == 0)
		*has_cap = true;
	if (w && json_is_number(w) && lc_usd_to_micro(json_number_value(w), warn) == 0)
		l->alert_at = *warn;
	json_decref(org);
	return 0;
}

static void each_limit(struct srv *s, MDB_txn *txn, int64_t now, bool keys, limit_cb cb, void *ctx)
{
	struct { MDB_dbi dbi; const char *scope; } sc[] = {{s->db_keys, "key"}, {s->db_teams, "team"}};
	for (size_t j = keys ? 0 : 1; j < 2; j++) {
		MDB_cursor *c;
		MDB_val k, v;
		if (mdb_cursor_open(txn, sc[j].dbi, &c) != 0)
			continue;
		for (int rc = mdb_cursor_get(c, &k, &v, MDB_FIRST); rc == 0; rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
			char id[SRV_ID_MAX + 1], err[256];
			struct lc_limit lim[LC_MAX_LIMITS];
			int n = 0;
			snprintf(id, sizeof id, "%.*s", (int)k.mv_size, (char *)k.mv_data);
			json_t *o = json_loadb(v.mv_data, v.mv_size, 0, NULL);
			json_t *arr = json_object_get(o, "limits");
			if (arr && lc_limits_parse(arr, "limits", lim, &n, err, sizeof err) == 0) {
				for (int i = 0; i < n; i++) {
					int64_t bucket = lc_window_start(lim[i].window, now);
					int64_t used = srv_total(txn, s, sc[j].scope, id, lc_metric_name(lim[i].metric),
								 lc_window_name(lim[i].window), bucket);
					cb(s, txn, ctx, sc[j].scope, id, &lim[i], used, now);
				}
			}
			json_decref(o);
		}
		mdb_cursor_close(c);
	}
}

/* ---- GET /v1/usage ---- */

static void status_cb(struct srv *s, MDB_txn *txn, void *ctx, const char *scope, const char *id,
		      const struct lc_limit *l, int64_t used, int64_t now)
{
	limit_entry(ctx, scope, id, l, used, now);
}

static int customer_limits(struct srv *s, MDB_txn *txn, json_t *arr, int64_t now)
{
	json_t *cust = srv_get_json(txn, s->db_meta, "customers");
	json_t *ids = json_object();
	/* every customer with usage in this month, plus every override */
	MDB_cursor *c;
	MDB_val k, v;
	char pre[] = "customer" SEP;
	if (mdb_cursor_open(txn, s->db_totals, &c) == 0) {
		k.mv_data = pre;
		k.mv_size = strlen(pre);
		for (int rc = mdb_cursor_get(c, &k, &v, MDB_SET_RANGE); rc == 0; rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
			char buf[512], *f[5];
			if (k.mv_size < strlen(pre) || memcmp(k.mv_data, pre, strlen(pre)) != 0)
				break;
			if (ckey_split(k.mv_data, k.mv_size, buf, sizeof buf, f) == 0 &&
			    bucket_current(f[3], strtoll(f[4], NULL, 10), now))
				json_object_set_new(ids, f[1], json_true());
		}
		mdb_cursor_close(c);
	}
	if (mdb_cursor_open(txn, s->db_cust, &c) == 0) {
		for (int rc = mdb_cursor_get(c, &k, &v, MDB_FIRST); rc == 0; rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
			char id[SRV_ID_MAX + 1];
			snprintf(id, sizeof id, "%.*s", (int)k.mv_size, (char *)k.mv_data);
			json_object_set_new(ids, id, json_true());
		}
		mdb_cursor_close(c);
	}
	const char *id;
	json_t *dummy;
	json_object_foreach(ids, id, dummy) {
		json_t *ovr = srv_get_json(txn, s->db_cust, id);
		json_t *b = json_object_get(ovr, "monthly_budget_usd");
		json_t *r = json_object_get(ovr, "rate_limit_rpm");
		if (!b)
			b = json_object_get(cust, "monthly_budget_usd");
		if (!r)
			r = json_object_get(cust, "rate_limit_rpm");
		struct lc_limit l = {.enabled = true, .alert_at = -1};
		if (b && json_is_number(b) && lc_usd_to_micro(json_number_value(b), &l.threshold) == 0) {
			l.metric = LC_METRIC_COST;
			l.window = LC_WIN_MONTHLY;
			limit_entry(arr, "customer", id, &l,
				    srv_total(txn, s, "customer", id, "cost", "monthly", lc_window_start(LC_WIN_MONTHLY, now)),
				    now);
		}
		if (r && json_is_integer(r)) {
			l.metric = LC_METRIC_REQUESTS;
			l.window = LC_WIN_MINUTE;
			l.threshold = json_integer_value(r);
			limit_entry(arr, "customer", id, &l,
				    srv_total(txn, s, "customer", id, "requests", "minute", lc_window_start(LC_WIN_MINUTE, now)),
				    now);
		}
		json_decref(ovr);
	}
	json_decref(ids);
	json_decref(cust);
	return 0;
}

static int get_txn(struct srv *s, MDB_txn *txn, void *ctx)
{
	json_t **out = ctx;
	int64_t now = lc_now();
	json_t *limits = json_array();
	char t[32];

	each_limit(s, txn, now, true, status_cb, limits);
	struct lc_limit l;
	bool has_cap;
	int64_t warn;
	json_t *org = NULL;
	if (org_limit(txn, s, &l, &has_cap, &warn) == 0) {
		int64_t bucket = lc_window_start(l.window, now);
		int64_t used = org_total(txn, s, "cost", lc_window_name(l.window), bucket);
		if (has_cap)
			limit_entry(limits, "org", "org", &l, used, now);
		org = json_pack("{s:s,s:o,s:o,s:o}", "period", lc_window_name(l.window), "used_usd", amount(LC_METRIC_COST, used),
				"spend_cap_usd", has_cap ? amount(LC_METRIC_COST, l.threshold) : json_null(),
				"warning_threshold_usd", warn >= 0 ? amount(LC_METRIC_COST, warn) : json_null());
	}
	customer_limits(s, txn, limits, now);

	json_t *hosts = json_array();
	MDB_cursor *c;
	MDB_val k, v;
	if (mdb_cursor_open(txn, s->db_hosts, &c) == 0) {
		for (int rc = mdb_cursor_get(c, &k, &v, MDB_FIRST); rc == 0; rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
			char hk[HOSTREC_MAX];
			snprintf(hk, sizeof hk, "%.*s", (int)k.mv_size, (char *)k.mv_data);
			char *bar = strchr(hk, '|');
			json_t *rec = json_loadb(v.mv_data, v.mv_size, 0, NULL);
			if (!bar || !rec) {
				json_decref(rec);
				continue;
			}
			*bar = 0;
			lc_time_format(json_integer_value(json_object_get(rec, "last_at")), t);
			json_array_append_new(hosts, json_pack("{s:s,s:s,s:O,s:s}", "host_id", hk, "epoch", bar + 1, "seq",
							       json_object_get(rec, "seq"), "last_report_at", t));
			json_decref(rec);
		}
		mdb_cursor_close(c);
	}
	int64_t exp = srv_get_int(txn, s->db_meta, "expires_at", 0);
	lc_time_format(exp, t);
	*out = json_pack("{s:{s:I,s:s,s:b},s:o,s:o,s:o}", "policy", "version",
			 (json_int_t)srv_get_int(txn, s->db_meta, "version", 0), "expires_at", t, "expired", exp <= now,
			 "limits", limits,
			 "org", org ? org : json_null(), "hosts", hosts);
	return 0;
}

void srv_usage_get(struct srv *s, struct srv_resp *rs)
{
	json_t *out = NULL;
	int rc = srv_read(s, get_txn, &out);
	if (rc != 0 || !out) {
		srv_resp_error(rs, 500, "api_error", "store: %s", mdb_strerror(rc));
		json_decref(out);
		return;
	}
	srv_resp_json(rs, 200, out);
}

/* ---- notifications on the sums ---- */

struct eval_ctx {
	int queued;
	int64_t version;
};

static void fire(struct srv *s, MDB_txn *txn, struct eval_ctx *ec, const char *event, const char *scope,
		 const char *id, const struct lc_limit *l, int64_t used, int64_t threshold, const char *kind, int64_t now)
{
	char dedup[600], lim[300], t[32];
	int64_t bucket = lc_window_start(l->window, now), end = lc_window_end(l->window, now);
	snprintf(lim, sizeof lim, "%s:%s:%s:%s", scope, id, lc_metric_name(l->metric), lc_window_name(l->window));
	snprintf(dedup, sizeof dedup, "%s|%s|%s|%" PRId64, event, lim, kind, bucket);
	MDB_val v;
	if (srv_get_raw(txn, s->db_fired, dedup, &v) == 0)
		return;
	json_t *d = json_pack("{s:s,s:s,s:s,s:s,s:s,s:o,s:o,s:I}", "scope", scope, "id", id, "limit", lim, "metric",
			      lc_metric_name(l->metric), "window", lc_window_name(l->window), "used",
			      amount(l->metric, used), "threshold", amount(l->metric, threshold), "policy_version",
			      (json_int_t)ec->version);
	lc_time_format(bucket, t);
	json_object_set_new(d, "window_start", json_string(t));
	if (end != INT64_MAX) {
		lc_time_format(end, t);
		json_object_set_new(d, "resets_at", json_string(t));
	}
	if (l->alert_at >= 0 && strcmp(kind, "alert_at") == 0)
		json_object_set_new(d, "alert_at", amount(l->metric, l->alert_at));
	srv_event_queue(s, txn, event, d, dedup);
	ec->queued++;
}

static void eval_cb(struct srv *s, MDB_txn *txn, void *ctx, const char *scope, const char *id,
		    const struct lc_limit *l, int64_t used, int64_t now)
{
	struct eval_ctx *ec = ctx;
	if (!l->enabled)
		return;
	if (l->alert_at >= 0 && used >= l->alert_at)
		fire(s, txn, ec, "limit_alert", scope, id, l, used, l->threshold, "alert_at", now);
	if (used >= l->threshold)
		fire(s, txn, ec, l->warn ? "limit_alert" : "limit_reached", scope, id, l, used, l->threshold,
		     "threshold", now);
}

int srv_usage_evaluate(struct srv *s, MDB_txn *txn, int64_t now)
{
	struct eval_ctx ec = {0, srv_get_int(txn, s->db_meta, "version", 0)};
	struct lc_limit l;
	bool has_cap;
	int64_t warn;

	if (org_limit(txn, s, &l, &has_cap, &warn) == 0) {
		int64_t used = org_total(txn, s, "cost", lc_window_name(l.window), lc_window_start(l.window, now));
		if (warn >= 0 && used >= warn)
			fire(s, txn, &ec, "spend_cap_warning_threshold_reached", "org", "org", &l, used, warn, "warning", now);
		if (has_cap && used >= l.threshold)
			fire(s, txn, &ec, "spend_cap_reached", "org", "org", &l, used, l.threshold, "cap", now);
	}
	each_limit(s, txn, now, false, eval_cb, &ec);
	return ec.queued;
}

/* ---- forgetting what can no longer matter ---- */

static int prune_txn(struct srv *s, MDB_txn *txn, void *ctx)
{
	int *n = ctx;
	int64_t now = lc_now();
	MDB_cursor *c;
	MDB_val k, v;
	int rc;

	*n = 0;
	if ((rc = mdb_cursor_open(txn, s->db_totals, &c)) != 0)
		return rc;
	for (rc = mdb_cursor_get(c, &k, &v, MDB_FIRST); rc == 0; rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
		char buf[512], *f[5];
		if (ckey_split(k.mv_data, k.mv_size, buf, sizeof buf, f) == 0 &&
		    bucket_stale(f[3], strtoll(f[4], NULL, 10), now)) {
			if ((rc = mdb_cursor_del(c, 0)) != 0)
				break;
			(*n)++;
		}
	}
	mdb_cursor_close(c);
	if (rc != MDB_NOTFOUND && rc != 0)
		return rc;
	/* fired-once markers: the window they name is long over after 62 days */
	if ((rc = mdb_cursor_open(txn, s->db_fired, &c)) != 0)
		return rc;
	for (rc = mdb_cursor_get(c, &k, &v, MDB_FIRST); rc == 0; rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
		char num[32];
		snprintf(num, sizeof num, "%.*s", (int)(v.mv_size < 31 ? v.mv_size : 31), (char *)v.mv_data);
		if (!memmem(k.mv_data, k.mv_size, "lifetime", 8) && strtoll(num, NULL, 10) < now - 62 * 86400) {
			if ((rc = mdb_cursor_del(c, 0)) != 0)
				break;
			(*n)++;
		}
	}
	mdb_cursor_close(c);
	if (rc != MDB_NOTFOUND && rc != 0)
		return rc;
	return *n ? 0 : MDB_NOTFOUND;
}

int srv_prune(struct srv *s)
{
	int n = 0;
	int rc = srv_write(s, prune_txn, &n);
	if (rc == 0 && n)
		lc_log(LC_LOG_INFO, "llmcap-server: pruned %d stale counters and markers", n);
	return rc == MDB_NOTFOUND ? 0 : rc;
}
