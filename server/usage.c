/* usage.c - host usage reports in, org-wide totals out, org and team
 * notifications on the sums.
 *
 * A report is cumulative per (host_id, epoch): {"host_id","epoch","seq",
 * "counters":[{"scope","id","metric","window","bucket","used"}]}. The server
 * keeps, per (host_id, epoch), the last seq and the last cumulative value of
 * each counter, and per counter the total over every host record. A report
 * whose seq is not greater than the stored one changes nothing and is refused
 * (409: a replay), and a counter only ever moves forward, so no report is
 * counted twice. A report comes with its host's credential (hosts.c) and
 * counts only for that host. A new epoch (a host whose store was recreated) is a new
 * record: what the old one counted stays counted.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine.h"
#include "policy.h"
#include "rules.h"
#include "srv.h"
#include "util.h"

#define SEP "\x1f"
#define HOSTREC_MAX 256

/* bounds on what a report may carry (checked where it enters) */
#define SRV_USED_MAX 1000000000000000LL     /* 10^15: $10^9 in micro-USD, or 10^15 tokens */
#define SRV_SEQ_MAX (1LL << 53)
#define SRV_SEQ_STEP_MAX (1LL << 20)        /* how far one report may move a host's seq */
#define SRV_HOSTREC_COUNTERS_MAX 131072     /* live counters remembered per (host_id, epoch) */
#define SRV_HOST_RECORDS_MAX 100000
#define SRV_E_REFUSED (-29001)              /* post_txn: refused (op->refuse says why) */

static bool srv_scope_known(const char *s) { return lc_scope_parse(s) >= 0 && lc_scope_parse(s) != LC_SCOPE_RUN; }

/* the ledger's metrics, and "tokens" from older hosts */
static bool srv_metric_known(const char *m) { return lc_lmetric_parse(m) >= 0 || !strcmp(m, "tokens") ||
						      !strcmp(m, "cost") || !strcmp(m, "requests"); }

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

static int64_t get_total_raw(srv_txn *txn, struct srv *s, const char *ck)
{
	return srv_get_int(txn, s->db_totals, ck, 0);
}

int64_t srv_total(srv_txn *txn, struct srv *s, const char *scope, const char *id, const char *metric,
		  const char *window, int64_t bucket)
{
	char ck[512];
	if (srv_ckey(ck, sizeof ck, scope, id, metric, window, bucket) != 0)
		return 0;
	return get_total_raw(txn, s, ck);
}

/* One org-wide total of a scan: its key, its fields (scope, id, metric, window, bucket) and value. */
struct total {
	const char *ck;
	char **f;
	int64_t bucket, used;
};

/* Calls fn for every well-formed total of `scope`, in key order; srv_cursor_open's error, else 0. */
static int each_total(struct srv *s, srv_txn *txn, const char *scope, void (*fn)(const struct total *t, void *ctx),
		      void *ctx)
{
	char pre[64];
	size_t pl = (size_t)snprintf(pre, sizeof pre, "%s" SEP, scope);
	srv_cursor *c;
	MDB_val k, v;
	int rc;

	if ((rc = srv_cursor_open(txn, s->db_totals, &c)) != 0)
		return rc;
	k.mv_data = pre;
	k.mv_size = pl;
	for (rc = srv_cursor_get(c, &k, &v, MDB_SET_RANGE); rc == 0; rc = srv_cursor_get(c, &k, &v, MDB_NEXT)) {
		char buf[512], ck[512], num[32], *f[5];
		if (k.mv_size < pl || memcmp(k.mv_data, pre, pl) != 0)
			break;
		if (ckey_split(k.mv_data, k.mv_size, buf, sizeof buf, f) != 0)
			continue;
		snprintf(ck, sizeof ck, "%.*s", (int)k.mv_size, (char *)k.mv_data);
		snprintf(num, sizeof num, "%.*s", (int)(v.mv_size < 31 ? v.mv_size : 31), (char *)v.mv_data);
		struct total t = {ck, f, strtoll(f[4], NULL, 10), strtoll(num, NULL, 10)};
		fn(&t, ctx);
	}
	srv_cursor_close(c);
	return 0;
}

struct org_sum {
	const char *metric, *window;
	int64_t bucket, sum;
};

static void org_add(const struct total *t, void *ctx)
{
	struct org_sum *o = ctx;
	if (strcmp(t->f[2], o->metric) == 0 && strcmp(t->f[3], o->window) == 0 && t->bucket == o->bucket)
		o->sum = lc_sat_add(o->sum, t->used > 0 ? t->used : 0);
}

/* the org's counters: whatever id the host engine uses for the org scope */
static int64_t org_total(srv_txn *txn, struct srv *s, const char *metric, const char *window, int64_t bucket)
{
	struct org_sum o = {metric, window, bucket, 0};
	each_total(s, txn, "org", org_add, &o);
	return o.sum;
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

/* a counter key whose bucket can no longer change */
static bool ckey_stale(const char *k, size_t klen, int64_t now)
{
	char buf[512], *f[5];
	return ckey_split(k, klen, buf, sizeof buf, f) == 0 && bucket_stale(f[3], strtoll(f[4], NULL, 10), now);
}

static bool bucket_current(const char *window, int64_t bucket, int64_t now)
{
	enum lc_window w;
	if (lc_window_parse(window, &w) != 0)
		return false;
	return lc_window_start(w, now) == bucket;
}

/* the ids of the totals of current buckets, into a set */
struct current {
	json_t *set;
	int64_t now;
};

static void add_current(const struct total *t, void *ctx)
{
	struct current *c = ctx;
	if (bucket_current(t->f[3], t->bucket, c->now))
		json_object_set_new(c->set, t->f[1], json_true());
}

/* ---- POST /v1/usage ---- */

/* A report's counters, compact: their keys sorted and unique (NUL-terminated in `keys`), each with
 * the largest `used` reported for it. The report's jansson tree (five to six times the body) is
 * freed before the write transaction, and the answer is written as text, not built as a tree. */
struct ctr {
	size_t off;   /* the counter key at keys.data + off */
	int64_t used;
};
struct ctrs {
	struct lc_buf keys;
	struct ctr *v;
	size_t n;
};

static int ctr_cmp(const void *a, const void *b, void *keys)
{
	return strcmp((char *)keys + ((const struct ctr *)a)->off, (char *)keys + ((const struct ctr *)b)->off);
}

/* the report's (validated) counters into cs: 0, or ENOMEM */
static int ctrs_from(json_t *arr, struct ctrs *cs)
{
	size_t i, n = json_array_size(arr), k;
	json_t *c;

	lc_buf_init(&cs->keys, n * 512 + 1);
	cs->n = 0;
	if (n && !(cs->v = malloc(n * sizeof *cs->v)))
		return ENOMEM;
	json_array_foreach(arr, i, c) {
		char ck[512];
		if (srv_ckey(ck, sizeof ck, json_string_value(json_object_get(c, "scope")),
			     json_string_value(json_object_get(c, "id")), json_string_value(json_object_get(c, "metric")),
			     json_string_value(json_object_get(c, "window")), json_integer_value(json_object_get(c, "bucket"))))
			continue;
		cs->v[cs->n] = (struct ctr){cs->keys.len, json_integer_value(json_object_get(c, "used"))};
		if (lc_buf_add(&cs->keys, ck, strlen(ck) + 1))
			return ENOMEM;
		cs->n++;
	}
	if (!cs->n)
		return 0;
	qsort_r(cs->v, cs->n, sizeof *cs->v, ctr_cmp, cs->keys.data);
	for (i = 1, k = 0; i < cs->n; i++) {   /* one per key, the largest used */
		if (ctr_cmp(&cs->v[k], &cs->v[i], cs->keys.data) == 0) {
			if (cs->v[i].used > cs->v[k].used)
				cs->v[k].used = cs->v[i].used;
		} else {
			cs->v[++k] = cs->v[i];
		}
	}
	cs->n = k + 1;
	return 0;
}

static bool ctrs_have(const struct ctrs *cs, const char *ck)
{
	size_t lo = 0, hi = cs->n;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int d = strcmp(ck, cs->keys.data + cs->v[mid].off);
		if (d == 0)
			return true;
		if (d < 0)
			hi = mid;
		else
			lo = mid + 1;
	}
	return false;
}

static void ctrs_free(struct ctrs *cs)
{
	lc_buf_free(&cs->keys);
	free(cs->v);
	cs->v = NULL;
	cs->n = 0;
}

struct post_op {
	struct ctrs ctrs;
	char host_id[65], epoch[65];
	int64_t seq;
	struct srv_resp *rs;
	bool duplicate;
	int64_t stored_seq;
	struct lc_buf answer;    /* the whole answer's text */
	const char *refuse;      /* with SRV_E_REFUSED: why (a 4xx) */
	char why[160];
	int refuse_status;
};

/* a JSON string (escaped by jansson), or -1 */
static int add_jstr(struct lc_buf *b, const char *v)
{
	json_t *j = json_string(v);
	char *t = j ? json_dumps(j, JSON_ENCODE_ANY) : NULL;
	int rc = t ? lc_buf_addstr(b, t) : -1;
	json_decref(j);
	free(t);
	return rc;
}

/* one entry of the answer's counters: the org-wide total of ck (a key that does not split is skipped) */
static int answer_add(struct srv *s, srv_txn *txn, struct lc_buf *b, const char *ck, bool *first)
{
	char buf[512], *f[5];
	if (ckey_split(ck, strlen(ck), buf, sizeof buf, f) != 0)
		return 0;
	if (lc_buf_addstr(b, *first ? "{\"scope\":" : ",{\"scope\":") || add_jstr(b, f[0]) ||
	    lc_buf_addstr(b, ",\"id\":") || add_jstr(b, f[1]) || lc_buf_addstr(b, ",\"metric\":") || add_jstr(b, f[2]) ||
	    lc_buf_addstr(b, ",\"window\":") || add_jstr(b, f[3]) ||
	    lc_buf_printf(b, ",\"bucket\":%lld,\"used\":%" PRId64 "}", strtoll(f[4], NULL, 10), get_total_raw(txn, s, ck)))
		return ENOMEM;
	*first = false;
	return 0;
}

/* the current org and team totals the report did not name, into a set */
struct extra {
	const struct ctrs *cs;
	json_t *set;
	int64_t now;
};

static void add_extra(const struct total *t, void *ctx)
{
	struct extra *x = ctx;
	if (bucket_current(t->f[3], t->bucket, x->now) && !ctrs_have(x->cs, t->ck))
		json_object_set_new(x->set, t->ck, json_true());
}

/* a total only grows, and never past INT64_MAX (each report's numbers are bounded, but hosts are many) */
static int add_total(struct srv *s, srv_txn *txn, const char *ck, int64_t delta)
{
	int64_t t = get_total_raw(txn, s, ck);
	if (t < 0)
		t = 0;
	return srv_put_int(txn, s->db_totals, ck, lc_sat_add(t, delta > 0 ? delta : 0));
}

static int post_txn(struct srv *s, srv_txn *txn, void *ctx)
{
	struct post_op *op = ctx;
	char hkey[HOSTREC_MAX];
	int64_t now = lc_now();
	int rc;

	snprintf(hkey, sizeof hkey, "%s|%s", op->host_id, op->epoch);
	json_t *rec = srv_get_json(txn, s->db_hosts, hkey);
	if (!rec) {
		MDB_stat st;
		if ((rc = srv_kv_stat(txn, s->db_hosts, &st)) != 0)
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
	/* the agent numbers every report anew (a retry is a new snapshot with the next seq): a seq
	 * already seen is a replay, refused so that the sender learns it */
	if (op->duplicate) {
		json_decref(rec);
		snprintf(op->why, sizeof op->why, "seq %" PRId64 ": already reported (a replayed report); this host's "
			 "last seq is %" PRId64, op->seq, last);
		op->refuse = op->why;
		op->refuse_status = 409;
		return SRV_E_REFUSED;
	}
	/* a host counts its reports one by one: a seq far ahead of the last is not a report of its
	 * (it would make the host's genuine reports "duplicates" from then on) */
	if (last >= 0 && op->seq > last && op->seq - last > SRV_SEQ_STEP_MAX) {
		json_decref(rec);
		op->refuse = "seq: too far ahead of this host's last report";
		op->refuse_status = 409;
		return SRV_E_REFUSED;
	}

	json_t *extra = json_object();   /* current org and team totals the report did not name */
	for (size_t i = 0; i < op->ctrs.n; i++) {
		const char *ck = op->ctrs.keys.data + op->ctrs.v[i].off;
		int64_t used = op->ctrs.v[i].used;
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
			if (ckey_stale(k, strlen(k), now))
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
	struct extra x = {&op->ctrs, extra, now};
	if ((rc = each_total(s, txn, "org", add_extra, &x)) != 0 || (rc = each_total(s, txn, "team", add_extra, &x)) != 0)
		goto fail;
	struct lc_buf *b = &op->answer;
	bool first = true;
	const char *ck;
	json_t *dummy;
	lc_buf_reset(b);   /* a retried transaction writes it anew */
	rc = ENOMEM;
	if (lc_buf_addstr(b, "{\"host_id\":") || add_jstr(b, op->host_id) || lc_buf_addstr(b, ",\"epoch\":") ||
	    add_jstr(b, op->epoch) ||
	    lc_buf_printf(b, ",\"seq\":%" PRId64 ",\"duplicate\":false,\"counters\":[", op->stored_seq))
		goto fail;
	for (size_t i = 0; i < op->ctrs.n; i++)
		if (answer_add(s, txn, b, op->ctrs.keys.data + op->ctrs.v[i].off, &first))
			goto fail;
	json_object_foreach(extra, ck, dummy)
		if (answer_add(s, txn, b, ck, &first))
			goto fail;
	if (lc_buf_addstr(b, "]}"))
		goto fail;
	rc = 0;
fail:
	json_decref(extra);
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

void srv_usage_post(struct srv *s, const char *host, const char *body, size_t len, struct srv_resp *rs)
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
	if (!host || strcmp(host, json_string_value(json_object_get(rep, "host_id"))) != 0) {
		srv_resp_error(rs, 403, "permission_error", "host_id: this credential is host '%s'; a host reports only "
			       "as itself", host ? host : "(none)");
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
	snprintf(op.host_id, sizeof op.host_id, "%s", json_string_value(json_object_get(rep, "host_id")));
	snprintf(op.epoch, sizeof op.epoch, "%s", json_string_value(json_object_get(rep, "epoch")));
	op.seq = json_integer_value(seq);
	int rc = ctrs_from(ctrs, &op.ctrs);
	json_decref(rep);   /* the compact counters stand in for the tree from here */
	rep = NULL;
	if (rc) {
		srv_resp_error(rs, 503, "overloaded_error", "out of memory for the report: retry later");
		rs->retry_after_s = 1;
		goto out;
	}
	lc_buf_init(&op.answer, SRV_USAGE_ANSWER_MAX);
	rc = srv_write(s, post_txn, &op);
	if (rc == SRV_E_REFUSED) {
		srv_resp_error(rs, op.refuse_status, op.refuse_status == 409 ? "conflict_error" : "invalid_request_error",
			       "%s", op.refuse);
		goto out;
	}
	if (rc != 0 && rc != MDB_NOTFOUND) {
		srv_resp_error(rs, 500, "api_error", "store: %s", srv_strerror(rc));
		goto out;
	}
	srv_resp_free(rs);
	rs->status = 200;
	rs->body = op.answer.data;   /* taken */
	rs->body_len = op.answer.len;
	op.answer.data = NULL;
	srv_notifier_kick(s);
out:
	lc_buf_free(&op.answer);
	ctrs_free(&op.ctrs);
	json_decref(rep);
}

/* ---- the org's rules, from the stored pieces: the host's limit model (rules.h) ---- */

/* summed usage of a rule's group in its current bucket; tokens = input + cached input + output */
static int64_t group_total(srv_txn *txn, struct srv *s, const struct lc_rule *r, const char *metric, int64_t bucket)
{
	const char *window = lc_window_name(r->lim.window);
	if (r->scope == LC_SCOPE_ORG)
		return org_total(txn, s, metric, window, bucket);
	return srv_total(txn, s, lc_scope_name(r->scope), r->id, metric, window, bucket);
}

static size_t metric_parts(enum lc_metric m, const char *const **parts);

int64_t srv_rule_used(srv_txn *txn, struct srv *s, const struct lc_rule *r, int64_t now)
{
	int64_t bucket = lc_window_start(r->lim.window, now), t = 0;
	const char *const *parts;
	size_t n = metric_parts(r->lim.metric, &parts);

	for (size_t i = 0; i < n; i++)
		t = lc_sat_add(t, group_total(txn, s, r, parts[i], bucket));
	return t;
}

/* the ledger metrics a limit metric folds (tokens: input + cached input + output, and "tokens" from
 * older hosts) */
static size_t metric_parts(enum lc_metric m, const char *const **parts)
{
	static const char *const cost[] = {"cost"}, *const requests[] = {"requests"},
			  *const tokens[] = {"input_tokens", "cached_input_tokens", "output_tokens", "tokens"};
	switch (m) {
	case LC_METRIC_COST: *parts = cost; return 1;
	case LC_METRIC_REQUESTS: *parts = requests; return 1;
	case LC_METRIC_TOKENS: *parts = tokens; return 4;
	}
	return 0;
}

int64_t srv_host_rule_used(srv_txn *txn, struct srv *s, const char *host_key, const struct lc_rule *r, int64_t bucket)
{
	json_t *rec = srv_get_json(txn, s->db_hosts, host_key), *ctrs = json_object_get(rec, "counters");
	const char *const *parts;
	size_t n = metric_parts(r->lim.metric, &parts);
	int64_t t = 0;

	for (size_t i = 0; ctrs && i < n; i++) {
		char ck[512];
		if (srv_ckey(ck, sizeof ck, lc_scope_name(r->scope), r->id, parts[i], lc_window_name(r->lim.window),
			     bucket) == 0)
			t = lc_sat_add(t, json_integer_value(json_object_get(ctrs, ck)));
	}
	json_decref(rec);
	return t;
}

static bool org_rule(srv_txn *txn, struct srv *s, struct lc_rule *r);

/* A customer's monthly budget as a rule, from the customers defaults and the customer's override
 * (either may be NULL): the override's budget and alert levels where it gives them. */
static bool customer_budget_rule(json_t *cust, json_t *ovr, const char *id, struct lc_rule *out)
{
	json_t *b = json_object_get(ovr, "monthly_budget_usd");
	struct lc_alert_spec ds, os;
	int64_t budget;
	char err[256];

	if (!b)
		b = json_object_get(cust, "monthly_budget_usd");
	if (!b || !json_is_number(b) || lc_usd_to_micro(json_number_value(b), &budget) != 0)
		return false;
	/* stored pieces passed the policy validator: a parse error here leaves the levels out */
	if (lc_alert_spec_parse(cust, "customers", LC_METRIC_COST, NULL, &ds, err, sizeof err) != 0)
		ds = (struct lc_alert_spec){.n = -1, .projected = -1};
	if (lc_alert_spec_parse(ovr, "customers.overrides", LC_METRIC_COST, NULL, &os, err, sizeof err) != 0)
		os = (struct lc_alert_spec){.n = -1, .projected = -1};
	lc_rule_customer_budget(out, id, budget, &os, &ds);
	return true;
}

/* the first leased rule among a key's or team's limits with this metric and window (the tightest
 * when several are) */
static int limits_rule(json_t *o, int scope, const char *id, enum lc_metric m, enum lc_window w, struct lc_rule *out)
{
	struct lc_limit lim[LC_MAX_LIMITS];
	char err[256];
	int n = 0, found = -1;

	if (!o || lc_limits_parse(json_object_get(o, "limits"), "limits", lim, &n, err, sizeof err) != 0)
		return -1;
	for (int i = 0; i < n; i++) {
		struct lc_rule r;
		if (lim[i].metric != m || lim[i].window != w)
			continue;
		lc_rule_limit(&r, scope, id, &lim[i]);
		if (lc_rule_leased(&r) && (found < 0 || r.lim.threshold < out->lim.threshold)) {
			*out = r;
			found = 0;
		}
	}
	return found;
}

int srv_rule_find(srv_txn *txn, struct srv *s, const char *name, struct lc_rule *out)
{
	enum lc_metric m;
	enum lc_window w;
	char id[128];
	int scope, rc = -1;

	if (lc_rule_name_parse(name, &scope, id, &m, &w) != 0)
		return -1;
	if (scope == LC_SCOPE_KEY || scope == LC_SCOPE_TEAM) {
		json_t *o = srv_get_json(txn, scope == LC_SCOPE_KEY ? s->db_keys : s->db_teams, id);
		rc = limits_rule(o, scope, id, m, w, out);
		json_decref(o);
	} else if (scope == LC_SCOPE_ORG) {
		rc = strcmp(id, "org") == 0 && org_rule(txn, s, out) && out->lim.metric == m && out->lim.window == w ? 0 : -1;
	} else if (scope == LC_SCOPE_CUSTOMER && m == LC_METRIC_COST && w == LC_WIN_MONTHLY) {
		json_t *ovr = srv_get_json(txn, s->db_cust, id), *cust = srv_get_json(txn, s->db_meta, "customers");
		rc = customer_budget_rule(cust, ovr, id, out) ? 0 : -1;
		json_decref(ovr);
		json_decref(cust);
	}
	return rc == 0 && lc_rule_leased(out) ? 0 : -1;
}

enum { RULES_ORG = 1, RULES_TEAM = 2, RULES_KEY = 4, RULES_CUSTOMER = 8 };
typedef void (*rule_cb)(struct srv *s, srv_txn *txn, void *ctx, const struct lc_rule *r, int64_t now);

/* The org cap as a rule: the cap itself (none: threshold -1), the warning threshold its alert_at.
 * *org_json (when asked) gets the org object's summary for GET /v1/usage. */
static bool org_rule(srv_txn *txn, struct srv *s, struct lc_rule *r)
{
	json_t *org = srv_get_json(txn, s->db_meta, "org");
	const char *period = json_string_value(json_object_get(org, "period"));
	json_t *cap = json_object_get(org, "spend_cap_usd"), *w = json_object_get(org, "warning_threshold_usd");
	int64_t capm = -1, warnm = -1;
	struct lc_alert_spec a;
	enum lc_window win;
	char err[256];

	if (!org)
		return false;
	if (lc_alert_spec_parse(org, "org", LC_METRIC_COST, NULL, &a, err, sizeof err) != 0)
		a = (struct lc_alert_spec){.n = -1, .projected = -1};
	if (!period || lc_window_parse(period, &win) != 0)
		win = LC_WIN_MONTHLY;
	if (!cap || !json_is_number(cap) || lc_usd_to_micro(json_number_value(cap), &capm) != 0)
		capm = -1;
	if (!w || !json_is_number(w) || lc_usd_to_micro(json_number_value(w), &warnm) != 0)
		warnm = -1;
	lc_rule_org(r, capm, warnm, win, &a);
	json_decref(org);
	return true;
}

static void table_rules(struct srv *s, srv_txn *txn, srv_dbi dbi, int scope, int64_t now, rule_cb cb, void *ctx)
{
	srv_cursor *c;
	MDB_val k, v;
	if (srv_cursor_open(txn, dbi, &c) != 0)
		return;
	for (int rc = srv_cursor_get(c, &k, &v, MDB_FIRST); rc == 0; rc = srv_cursor_get(c, &k, &v, MDB_NEXT)) {
		char id[SRV_ID_MAX + 1], err[256];
		struct lc_limit lim[LC_MAX_LIMITS];
		int n = 0;
		snprintf(id, sizeof id, "%.*s", (int)k.mv_size, (char *)k.mv_data);
		json_t *o = json_loadb(v.mv_data, v.mv_size, 0, NULL);
		json_t *arr = json_object_get(o, "limits");
		if (arr && lc_limits_parse(arr, "limits", lim, &n, err, sizeof err) == 0) {
			for (int i = 0; i < n; i++) {
				struct lc_rule r;
				lc_rule_limit(&r, scope, id, &lim[i]);
				cb(s, txn, ctx, &r, now);
			}
		}
		json_decref(o);
	}
	srv_cursor_close(c);
}

/* customers: every override, and every customer with usage in this month */
static void customer_rules(struct srv *s, srv_txn *txn, int64_t now, rule_cb cb, void *ctx)
{
	json_t *cust = srv_get_json(txn, s->db_meta, "customers");
	json_t *ids = json_object();
	struct current cur = {ids, now};
	srv_cursor *c;
	MDB_val k, v;
	each_total(s, txn, "customer", add_current, &cur);
	if (srv_cursor_open(txn, s->db_cust, &c) == 0) {
		for (int rc = srv_cursor_get(c, &k, &v, MDB_FIRST); rc == 0; rc = srv_cursor_get(c, &k, &v, MDB_NEXT)) {
			char id[SRV_ID_MAX + 1];
			snprintf(id, sizeof id, "%.*s", (int)k.mv_size, (char *)k.mv_data);
			json_object_set_new(ids, id, json_true());
		}
		srv_cursor_close(c);
	}
	const char *id;
	json_t *dummy;
	json_object_foreach(ids, id, dummy) {
		json_t *ovr = srv_get_json(txn, s->db_cust, id);
		json_t *r = json_object_get(ovr, "rate_limit_rpm");
		struct lc_rule rule;
		if (!r)
			r = json_object_get(cust, "rate_limit_rpm");
		if (customer_budget_rule(cust, ovr, id, &rule))
			cb(s, txn, ctx, &rule, now);
		if (r && json_is_integer(r) && json_integer_value(r) >= 0) {
			lc_rule_customer_rpm(&rule, id, json_integer_value(r));
			cb(s, txn, ctx, &rule, now);
		}
		json_decref(ovr);
	}
	json_decref(ids);
	json_decref(cust);
}

/* every rule of the given scopes, sorted by scope then id (the tables' order) */
static void each_rule(struct srv *s, srv_txn *txn, int64_t now, unsigned scopes, rule_cb cb, void *ctx)
{
	struct lc_rule r;
	if (scopes & RULES_KEY)
		table_rules(s, txn, s->db_keys, LC_SCOPE_KEY, now, cb, ctx);
	if (scopes & RULES_TEAM)
		table_rules(s, txn, s->db_teams, LC_SCOPE_TEAM, now, cb, ctx);
	if ((scopes & RULES_ORG) && org_rule(txn, s, &r))
		cb(s, txn, ctx, &r, now);
	if (scopes & RULES_CUSTOMER)
		customer_rules(s, txn, now, cb, ctx);
}

/* ---- GET /v1/usage ---- */

static void status_cb(struct srv *s, srv_txn *txn, void *ctx, const struct lc_rule *r, int64_t now)
{
	/* a customer's rpm is a sliding window on the hosts: here the current minute's sum */
	json_array_append_new(ctx, lc_rule_status_json(r, srv_rule_used(txn, s, r, now), 0, now));
}

static int get_txn(struct srv *s, srv_txn *txn, void *ctx)
{
	json_t **out = ctx;
	int64_t now = lc_now();
	json_t *limits = json_array();
	char t[32];
	struct lc_rule org;
	json_t *orgj = NULL;

	each_rule(s, txn, now, RULES_KEY | RULES_TEAM | RULES_ORG | RULES_CUSTOMER, status_cb, limits);
	if (org_rule(txn, s, &org)) {
		enum lc_metric m = LC_METRIC_COST;
		/* the warning threshold itself: the rule's levels hold alert_at's as well */
		json_t *piece = srv_get_json(txn, s->db_meta, "org"), *warn = json_object_get(piece, "warning_threshold_usd");
		int64_t wm = -1;
		if (!json_is_number(warn) || lc_usd_to_micro(json_number_value(warn), &wm) != 0)
			wm = -1;
		json_decref(piece);
		orgj = json_pack("{s:s,s:o,s:o,s:o}", "period", lc_window_name(org.lim.window), "used_usd",
				 lc_amount_json(m, srv_rule_used(txn, s, &org, now)), "spend_cap_usd",
				 org.lim.threshold >= 0 ? lc_amount_json(m, org.lim.threshold) : json_null(),
				 "warning_threshold_usd", wm >= 0 ? lc_amount_json(m, wm) : json_null());
	}

	json_t *hosts = json_array();
	srv_cursor *c;
	MDB_val k, v;
	if (srv_cursor_open(txn, s->db_hosts, &c) == 0) {
		for (int rc = srv_cursor_get(c, &k, &v, MDB_FIRST); rc == 0; rc = srv_cursor_get(c, &k, &v, MDB_NEXT)) {
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
		srv_cursor_close(c);
	}
	int64_t exp = srv_get_int(txn, s->db_meta, "expires_at", 0);
	lc_time_format(exp, t);
	*out = json_pack("{s:{s:I,s:s,s:b},s:o,s:o,s:o}", "policy", "version",
			 (json_int_t)srv_get_int(txn, s->db_meta, "version", 0), "expires_at", t, "expired", exp <= now,
			 "limits", limits,
			 "org", orgj ? orgj : json_null(), "hosts", hosts);
	return 0;
}

/* one row per id of the totals of one window's bucket */
struct group_sum {
	json_t *byid;
	const char *window;
	int64_t bucket;
};

static void group_add(const struct total *t, void *ctx)
{
	struct group_sum *g = ctx;
	int m;
	if (strcmp(t->f[3], g->window) || t->bucket != g->bucket || (m = lc_lmetric_parse(t->f[2])) < 0)
		return;
	json_t *row = json_object_get(g->byid, t->f[1]);
	if (!row) {
		row = json_pack("{s:s,s:I,s:I,s:I,s:I,s:f}", "id", t->f[1], "requests", (json_int_t)0, "input_tokens",
				(json_int_t)0, "cached_input_tokens", (json_int_t)0, "output_tokens", (json_int_t)0, "cost",
				0.0);
		json_object_set_new(g->byid, t->f[1], row);
	}
	json_object_set_new(row, lc_lmetric_name(m),
			    m == LC_LM_COST ? json_real((double)t->used / 1e6) : json_integer(t->used));
}

/* ?by=SCOPE&window=W: every group of one scope in the current window, org-wide, by cost */
struct report_op {
	int scope;
	enum lc_window w;
	json_t *out;
};

static int report_txn(struct srv *s, srv_txn *txn, void *ctx)
{
	struct report_op *op = ctx;
	int64_t now = lc_now(), bucket = lc_window_start(op->w, now);
	json_t *byid = json_object(), *rows = json_array();
	char t[32];
	struct group_sum g = {byid, lc_window_name(op->w), bucket};
	int rc;

	if ((rc = each_total(s, txn, lc_scope_name(op->scope), group_add, &g)) != 0) {
		json_decref(byid);
		json_decref(rows);
		return rc;
	}
	const char *id;
	json_t *row;
	json_object_foreach(byid, id, row) {
		if (json_integer_value(json_object_get(row, "requests")) > 0)
			json_array_append(rows, row);
	}
	json_decref(byid);
	lc_usage_rows_sort(rows);
	lc_time_format(bucket, t);
	op->out = json_pack("{s:s,s:s,s:s,s:o}", "by", lc_scope_name(op->scope), "window", lc_window_short_name(op->w),
			    "window_start", t, "rows", rows);
	return 0;
}

void srv_usage_get(struct srv *s, const char *by, const char *window, struct srv_resp *rs)
{
	json_t *out = NULL;
	int rc;
	if (by || window) {
		struct report_op op = {.scope = lc_scope_parse(by ? by : "key"), .w = LC_WIN_DAILY};
		if (op.scope < 0) {
			srv_resp_error(rs, 400, "invalid_request_error",
				       "by: must be one of key, team, org, customer, model, provider");
			return;
		}
		if (window && lc_window_parse_any(window, &op.w) != 0) {
			srv_resp_error(rs, 400, "invalid_request_error",
				       "window: must be one of minute, hour, day, week, month, lifetime");
			return;
		}
		rc = srv_read(s, report_txn, &op);
		out = op.out;
	} else {
		rc = srv_read(s, get_txn, &out);
	}
	if (rc != 0 || !out) {
		srv_resp_error(rs, 500, "api_error", "store: %s", srv_strerror(rc));
		json_decref(out);
		return;
	}
	srv_resp_json(rs, 200, out);
}

/* ---- notifications on the sums: org and team rules (hosts that sync leave these to us) ---- */

struct eval_ctx {
	int queued;
	int64_t version;
};

static void eval_cb(struct srv *s, srv_txn *txn, void *ctx, const struct lc_rule *r, int64_t now)
{
	struct eval_ctx *ec = ctx;
	struct lc_crossing cr[LC_MAX_CROSSINGS];
	int64_t used = srv_rule_used(txn, s, r, now);
	int n = lc_rule_reached(r, -1, used, true, now, cr);
	for (int i = 0; i < n; i++) {
		char dedup[600];
		lc_crossing_dedup(dedup, sizeof dedup, r, &cr[i], now);
		MDB_val v;
		if (srv_get_raw(txn, s->db_fired, dedup, &v) == 0)
			continue;
		srv_event_queue(s, txn, lc_event_name(cr[i].event), lc_crossing_event_data(r, &cr[i], used, now, ec->version),
				dedup);
		ec->queued++;
	}
}

int srv_usage_evaluate(struct srv *s, srv_txn *txn, int64_t now)
{
	struct eval_ctx ec = {0, srv_get_int(txn, s->db_meta, "version", 0)};
	each_rule(s, txn, now, RULES_ORG | RULES_TEAM, eval_cb, &ec);
	return ec.queued;
}

/* ---- forgetting what can no longer matter ---- */

/* Deletes every entry of `dbi` that `stale` names, counting them in *n. */
static int prune_table(srv_txn *txn, srv_dbi dbi, bool (*stale)(const MDB_val *k, const MDB_val *v, int64_t now),
		       int64_t now, int *n)
{
	srv_cursor *c;
	MDB_val k, v;
	int rc;

	if ((rc = srv_cursor_open(txn, dbi, &c)) != 0)
		return rc;
	for (rc = srv_cursor_get(c, &k, &v, MDB_FIRST); rc == 0; rc = srv_cursor_get(c, &k, &v, MDB_NEXT)) {
		if (stale(&k, &v, now)) {
			if ((rc = srv_cursor_del(c, 0)) != 0)
				break;
			(*n)++;
		}
	}
	srv_cursor_close(c);
	return rc == MDB_NOTFOUND ? 0 : rc;
}

static bool total_stale(const MDB_val *k, const MDB_val *v, int64_t now)
{
	return ckey_stale(k->mv_data, k->mv_size, now);
}

/* fired-once markers: the window they name is long over after 62 days */
static bool marker_stale(const MDB_val *k, const MDB_val *v, int64_t now)
{
	char num[32];
	snprintf(num, sizeof num, "%.*s", (int)(v->mv_size < 31 ? v->mv_size : 31), (char *)v->mv_data);
	return !memmem(k->mv_data, k->mv_size, "lifetime", 8) && strtoll(num, NULL, 10) < now - 62 * 86400;
}

static int prune_txn(struct srv *s, srv_txn *txn, void *ctx)
{
	int *n = ctx;
	int64_t now = lc_now();
	int rc;

	*n = 0;
	if ((rc = prune_table(txn, s->db_totals, total_stale, now, n)) != 0 ||
	    (rc = prune_table(txn, s->db_fired, marker_stale, now, n)) != 0)
		return rc;
	return *n ? 0 : MDB_NOTFOUND;
}

int srv_prune(struct srv *s)
{
	int n = 0;
	int rc = srv_write(s, prune_txn, &n);
	if (rc == 0 && n)
		lc_log(LC_LOG_INFO, "llmcap-server: pruned %d stale counters and markers", n);
	if (rc == 0 || rc == MDB_NOTFOUND)
		rc = srv_leases_prune(s);   /* lease records of windows that are over */
	return rc == MDB_NOTFOUND ? 0 : rc;
}
