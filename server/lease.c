/* lease.c - slices of shared limits for hosts (docs/server.md "Leases").
 *
 * POST /v1/leases {"host_id", "epoch", "leases": [{"limit", "bucket", "used", "held", "want", "need"?, "gen"}]}
 * answers {"ttl_seconds", "grants": [{"limit", "bucket", "allow", "exhausted"}]}.
 *
 * For one rule and window bucket the server keeps, per host record (host_id|epoch), the allowance it
 * granted ("s": the host's own usage in the bucket may reach it), the host's committed usage at its
 * last call ("c") and when the grant expires ("exp", ms). A host's claim on the limit is
 * max(s while live, c, what it reported); the grant keeps
 *
 *     reported by every host + Σ (claim - reported) over the hosts with a record  <=  threshold
 *
 * in the same write transaction as it reads them, so slices outstanding plus usage reported never
 * pass the threshold. A call carries what the host holds now ("held", after it lowered what it
 * gives back) and how much more it wants; the new allowance is max(held, used, reported) + the
 * grant, at most half of what is left (or "need", the host's next request). A call older than one
 * already seen ("gen") changes nothing.
 *
 * Records live in the meta table under "lease|<limit>|<bucket>", listed in the "leases" index.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rules.h"
#include "srv.h"
#include "util.h"

#define LEASE_PER_CALL_MAX 256
#define LEASE_AMOUNT_MAX 1000000000000000LL   /* 10^15, as usage reports */
#define LEASE_SKEW_S 120                      /* a host's bucket may be this far from ours */
#define LEASE_HOSTS_MAX 4096                  /* host records (host_id|epoch) per limit and window */
#define E400(rs, ...) srv_resp_error(rs, 400, "invalid_request_error", __VA_ARGS__)

static int64_t max64(int64_t a, int64_t b) { return a > b ? a : b; }

bool srv_leases_on(const json_t *settings)
{
	return !json_is_false(json_object_get(settings, "leases"));   /* on unless said off */
}

static int64_t lease_ttl(srv_txn *txn, struct srv *s, bool *on)
{
	json_t *set = srv_get_json(txn, s->db_meta, "settings"), *t = json_object_get(set, "lease_ttl_seconds");
	int64_t ttl = json_is_integer(t) ? json_integer_value(t) : SRV_LEASE_TTL_DEFAULT;

	if (on)
		*on = srv_leases_on(set);
	json_decref(set);
	return ttl >= 1 && ttl <= SRV_LEASE_TTL_MAX ? ttl : SRV_LEASE_TTL_DEFAULT;
}

static void doc_key(char *out, size_t n, const char *limit, int64_t bucket)
{
	snprintf(out, n, "lease|%s|%" PRId64, limit, bucket);
}

/* one host's claim on the limit: what it may still spend or may have spent */
static int64_t claim_of(json_t *h, int64_t reported, int64_t now_ms)
{
	int64_t s = json_integer_value(json_object_get(h, "s")), c = json_integer_value(json_object_get(h, "c"));
	bool live = json_integer_value(json_object_get(h, "exp")) > now_ms;

	return max64(max64(live ? s : 0, c), reported);
}

/* Σ (claim - reported) over the hosts of a record, but `except` */
static int64_t claims_beyond_reported(srv_txn *txn, struct srv *s, json_t *hosts, const char *except,
				      const struct lc_rule *r, int64_t bucket, int64_t now_ms)
{
	const char *hk;
	json_t *h;
	int64_t sum = 0;

	json_object_foreach(hosts, hk, h) {
		if (except && !strcmp(hk, except))
			continue;
		int64_t u = srv_host_rule_used(txn, s, hk, r, bucket);
		sum = lc_sat_add(sum, claim_of(h, u, now_ms) - u);
	}
	return sum;
}

struct lease_op {
	json_t *req;
	json_t *grants;
	int64_t ttl;
	struct srv *s;
	struct lease_op *next;   /* in the queue, then in the batch */
	int rc;
	bool done;
};

static int grant_one(struct srv *s, srv_txn *txn, struct lease_op *op, const char *hk, json_t *e, bool on,
		     int64_t now_ms)
{
	const char *limit = json_string_value(json_object_get(e, "limit"));
	int64_t bucket = json_integer_value(json_object_get(e, "bucket"));
	int64_t used = json_integer_value(json_object_get(e, "used")), held = json_integer_value(json_object_get(e, "held"));
	int64_t want = json_integer_value(json_object_get(e, "want")), gen = json_integer_value(json_object_get(e, "gen"));
	int64_t now = lc_floordiv(now_ms, 1000);
	struct lc_rule r;
	char dk[400];
	json_t *doc, *hosts, *me;
	bool fresh = false;
	int rc;

	/* nothing more than the host holds: leases off, no such shared limit, a bucket that is not
	 * (about) ours */
	json_t *g = json_pack("{s:s,s:I,s:I,s:b}", "limit", limit, "bucket", (json_int_t)bucket, "allow",
			      (json_int_t)max64(held, used), "exhausted", 0);
	if (!g)
		return ENOMEM;
	json_array_append_new(op->grants, g);
	if (!on || srv_rule_find(txn, s, limit, &r) != 0) {
		json_object_set_new(g, "unknown", json_true());
		return 0;
	}
	if (bucket != lc_window_start(r.lim.window, now) && bucket != lc_window_start(r.lim.window, now - LEASE_SKEW_S) &&
	    bucket != lc_window_start(r.lim.window, now + LEASE_SKEW_S))
		return 0;
	doc_key(dk, sizeof dk, limit, bucket);
	doc = srv_get_json(txn, s->db_meta, dk);
	if (!doc) {
		fresh = true;
		doc = json_pack("{s:s,s:I,s:{}}", "limit", limit, "bucket", (json_int_t)bucket, "hosts");
		if (!doc)
			return ENOMEM;
	}
	hosts = json_object_get(doc, "hosts");
	me = json_object_get(hosts, hk);
	if (!me && json_object_size(hosts) >= LEASE_HOSTS_MAX) {
		json_decref(doc);   /* a record stays small: a host past this many gets nothing more */
		return 0;
	}
	if (me && gen <= json_integer_value(json_object_get(me, "g"))) {
		json_object_set_new(g, "stale", json_true());   /* a newer call of this host was seen */
		json_decref(doc);
		return 0;
	}
	int64_t reported = srv_rule_used(txn, s, &r, bucket);
	int64_t mine = srv_host_rule_used(txn, s, hk, &r, bucket);
	int64_t others = lc_sat_add(reported - mine, claims_beyond_reported(txn, s, hosts, hk, &r, bucket, now_ms));
	/* what the host says it holds counts only as far as its slice here is still live: a call that
	 * arrives after the slice expired (a slow or failed-over host) may not take back what other
	 * hosts were granted since */
	int64_t kept = me && json_integer_value(json_object_get(me, "exp")) > now_ms
			       ? json_integer_value(json_object_get(me, "s"))
			       : 0;
	int64_t base = max64(max64(held < kept ? held : kept, used), mine);
	int64_t avail = r.lim.threshold - others - base;
	/* the host's want and need are on top of what it holds: on top of base, what it lost too */
	int64_t lost = held > base ? held - base : 0, need = json_integer_value(json_object_get(e, "need"));
	want = lc_sat_add(want, lost);
	if (need > 0)
		need = lc_sat_add(need, lost);
	/* at most half of what is left per call (at least what the host's next request needs), so the
	 * first host to ask does not take everything from the hosts that ask next */
	int64_t half = max64((avail + 1) / 2, need);
	int64_t give = want < half ? want : half;
	if (give > avail)
		give = avail;
	/* a refused request that what is left cannot admit gets nothing rather than a fragment no
	 * request fits in: hosts give such leftovers back (lc_lease_plan), so that they gather in one
	 * host instead of holding the limit's last units between them */
	if (need > 0 && give < need)
		give = 0;
	if (give < 0)
		give = 0;
	json_object_set_new(g, "allow", json_integer(base + give));
	json_object_set_new(g, "exhausted", json_boolean(want > give));
	json_object_set_new(doc, "threshold", json_integer(r.lim.threshold));
	json_object_set_new(hosts, hk, json_pack("{s:I,s:I,s:I,s:I}", "s", (json_int_t)(base + give), "c",
						   (json_int_t)max64(used, mine), "exp", (json_int_t)(now_ms + op->ttl * 1000),
						   "g", (json_int_t)gen));
	rc = srv_put_json(txn, s->db_meta, dk, doc);
	json_decref(doc);
	if (rc == 0 && fresh) {
		json_t *idx = srv_get_json(txn, s->db_meta, "leases");
		if (!idx)
			idx = json_object();
		json_object_set_new(idx, dk, json_true());
		rc = srv_put_json(txn, s->db_meta, "leases", idx);
		json_decref(idx);
	}
	return rc;
}

static int post_txn(struct srv *s, srv_txn *txn, void *ctx)
{
	struct lease_op *op = ctx;
	char hk[160];
	bool on = false;
	int64_t now_ms = lc_now_ms();
	size_t i;
	json_t *e;
	int rc;

	json_array_clear(op->grants);   /* the function may run again (the map grew) */
	op->ttl = lease_ttl(txn, s, &on);
	snprintf(hk, sizeof hk, "%s|%s", json_string_value(json_object_get(op->req, "host_id")),
		 json_string_value(json_object_get(op->req, "epoch")));
	json_array_foreach(json_object_get(op->req, "leases"), i, e)
		if ((rc = grant_one(s, txn, op, hk, e, on, now_ms)) != 0)
			return rc;
	return SRV_COMMIT;
}

/* ---- group commit: calls that arrive while a write is in progress share the next transaction ----
 * A durable commit costs a disk flush (LMDB) or a round trip and the lock (PostgreSQL); under load
 * one leader runs every waiting call in one transaction, each call's grants seeing the ones before. */

#define LEASE_BATCH_MAX 64

static struct {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	struct lease_op *head, **tail;
	bool busy;
} lq = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, NULL, &lq.head, false};

static int batch_txn(struct srv *s, srv_txn *txn, void *ctx)
{
	for (struct lease_op *op = ctx; op; op = op->next) {
		int rc = post_txn(s, txn, op);
		if (rc != SRV_COMMIT)
			return rc;
	}
	return SRV_COMMIT;
}

/* the waiting calls of server s, in arrival order (at most LEASE_BATCH_MAX); lq.mu held */
static struct lease_op *take_batch(struct srv *s)
{
	struct lease_op *batch = NULL, **bt = &batch, **pp = &lq.head;
	int n = 0;

	while (*pp && n < LEASE_BATCH_MAX) {
		struct lease_op *o = *pp;
		if (o->s != s) {
			pp = &o->next;
			continue;
		}
		*pp = o->next;
		o->next = NULL;
		*bt = o;
		bt = &o->next;
		n++;
	}
	lq.tail = &lq.head;
	while (*lq.tail)
		lq.tail = &(*lq.tail)->next;
	return batch;
}

static int lease_submit(struct srv *s, struct lease_op *op)
{
	pthread_mutex_lock(&lq.mu);
	op->s = s;
	op->next = NULL;
	op->done = false;
	*lq.tail = op;
	lq.tail = &op->next;
	while (!op->done) {
		if (lq.busy) {
			pthread_cond_wait(&lq.cv, &lq.mu);
			continue;
		}
		struct lease_op *batch = take_batch(s), *o, *next;
		lq.busy = true;
		pthread_mutex_unlock(&lq.mu);
		int rc = srv_write(s, batch_txn, batch);
		if (rc != 0 && batch->next) {
			for (o = batch; o; o = o->next)   /* one failed: each on its own, so the others go through */
				o->rc = srv_write(s, post_txn, o);
		} else {
			for (o = batch; o; o = o->next)
				o->rc = rc;
		}
		pthread_mutex_lock(&lq.mu);
		for (o = batch; o; o = next) {
			next = o->next;
			o->next = NULL;
			o->done = true;
		}
		lq.busy = false;
		pthread_cond_broadcast(&lq.cv);
	}
	pthread_mutex_unlock(&lq.mu);
	return op->rc;
}

static bool amount(json_t *o, const char *name, int64_t max)
{
	json_t *v = json_object_get(o, name);
	return json_is_integer(v) && json_integer_value(v) >= 0 && json_integer_value(v) <= max;
}

static bool host_str(json_t *o, const char *name)
{
	json_t *v = json_object_get(o, name);
	return json_is_string(v) && json_string_length(v) >= 1 && json_string_length(v) <= 64 &&
	       strlen(json_string_value(v)) == json_string_length(v) && !strchr(json_string_value(v), '|');
}

/* every field checked where it enters: the arithmetic above stays far from overflow */
static const char *entry_bad(json_t *e)
{
	static const char *const fields[] = {"limit", "bucket", "used", "held", "want", "need", "gen", NULL};
	json_t *l = json_object_get(e, "limit");
	const char *k;
	json_t *v;

	if (!json_is_object(e))
		return ": must be an object";
	json_object_foreach(e, k, v) {
		const char *const *f = fields;
		while (*f && strcmp(*f, k))
			f++;
		if (!*f)
			return ": unknown field";
	}
	if (!json_is_string(l) || json_string_length(l) > 200 || strlen(json_string_value(l)) != json_string_length(l) ||
	    strchr(json_string_value(l), '|'))
		return ".limit: a limit's name (scope:id:metric:window)";
	if (!amount(e, "bucket", LC_TIME_MAX))
		return ".bucket: the start of a window (unix seconds)";
	if (!amount(e, "used", LEASE_AMOUNT_MAX) || !amount(e, "held", LEASE_AMOUNT_MAX) ||
	    !amount(e, "want", LEASE_AMOUNT_MAX) || (json_object_get(e, "need") && !amount(e, "need", LEASE_AMOUNT_MAX)))
		return ".used, .held, .want, .need: integers from 0 to 10^15";
	if (!amount(e, "gen", (int64_t)1 << 62))
		return ".gen: an integer from 0 to 2^62";
	return NULL;
}

void srv_h_leases_post(struct srv_call *c)
{
	json_t *b = c->body, *ls = json_object_get(b, "leases"), *e;
	struct lease_op op = {b, json_array(), 0, NULL, NULL, 0, false};
	const char *k;
	size_t i;
	int rc;

	json_object_foreach(b, k, e)
		if (strcmp(k, "host_id") && strcmp(k, "epoch") && strcmp(k, "leases")) {
			E400(c->rs, "%.64s: unknown field", k);
			goto out;
		}
	if (!host_str(b, "host_id") || !host_str(b, "epoch")) {
		E400(c->rs, "host_id, epoch: required (1 to 64 characters, no '|')");
		goto out;
	}
	if (!c->host || strcmp(c->host, json_string_value(json_object_get(b, "host_id"))) != 0) {
		srv_resp_error(c->rs, 403, "permission_error", "host_id: a host leases only as itself (its credential)");
		goto out;
	}
	if (!json_is_array(ls) || json_array_size(ls) > LEASE_PER_CALL_MAX) {
		E400(c->rs, "leases: required (an array of at most %d)", LEASE_PER_CALL_MAX);
		goto out;
	}
	json_array_foreach(ls, i, e) {
		const char *bad = entry_bad(e);
		if (bad) {
			E400(c->rs, "leases[%zu]%s", i, bad);
			goto out;
		}
	}
	rc = lease_submit(c->s, &op);
	if (rc != 0) {
		srv_resp_store_error(c->rs, rc);
		goto out;
	}
	srv_resp_json(c->rs, 200, json_pack("{s:I,s:O}", "ttl_seconds", (json_int_t)op.ttl, "grants", op.grants));
out:
	json_decref(op.grants);
}

/* ---- GET /v1/admin/leases ---- */

static int get_txn(struct srv *s, srv_txn *txn, void *ctx)
{
	json_t **out = ctx, *idx = srv_get_json(txn, s->db_meta, "leases"), *list = json_array(), *v;
	int64_t now_ms = lc_now_ms(), now = lc_floordiv(now_ms, 1000);
	bool on = false;
	int64_t ttl = lease_ttl(txn, s, &on);
	const char *dk;

	json_object_foreach(idx, dk, v) {
		json_t *doc = srv_get_json(txn, s->db_meta, dk), *hosts = json_object_get(doc, "hosts"), *h;
		const char *limit = json_string_value(json_object_get(doc, "limit")), *hk;
		int64_t bucket = json_integer_value(json_object_get(doc, "bucket"));
		struct lc_rule r;
		char ts[32];

		if (!limit || srv_rule_find(txn, s, limit, &r) != 0 || lc_window_start(r.lim.window, now) != bucket) {
			json_decref(doc);
			continue;   /* a window that is over, or a limit no longer shared */
		}
		int64_t reported = srv_rule_used(txn, s, &r, bucket), outstanding = 0;
		json_t *hl = json_array();
		json_object_foreach(hosts, hk, h) {
			int64_t u = srv_host_rule_used(txn, s, hk, &r, bucket), exp = json_integer_value(json_object_get(h, "exp"));
			char host[160], *bar;
			snprintf(host, sizeof host, "%s", hk);
			if ((bar = strchr(host, '|')))
				*bar++ = '\0';
			outstanding = lc_sat_add(outstanding, claim_of(h, u, now_ms) - u);
			lc_time_format(lc_floordiv(exp, 1000), ts);
			json_array_append_new(hl, json_pack("{s:s,s:s,s:o,s:o,s:o,s:s,s:b}", "host_id", host, "epoch",
							    bar ? bar : "", "allowance",
							    lc_amount_json(r.lim.metric, json_integer_value(json_object_get(h, "s"))),
							    "committed",
							    lc_amount_json(r.lim.metric, json_integer_value(json_object_get(h, "c"))),
							    "reported", lc_amount_json(r.lim.metric, u), "expires_at", ts, "live",
							    exp > now_ms));
		}
		lc_time_format(bucket, ts);
		json_array_append_new(list, json_pack("{s:s,s:s,s:o,s:o,s:o,s:o}", "limit", limit, "window_start", ts,
						      "threshold", lc_amount_json(r.lim.metric, r.lim.threshold), "reported",
						      lc_amount_json(r.lim.metric, reported), "outstanding",
						      lc_amount_json(r.lim.metric, outstanding), "hosts", hl));
		json_decref(doc);
	}
	json_decref(idx);
	*out = json_pack("{s:b,s:I,s:o}", "enabled", on, "ttl_seconds", (json_int_t)ttl, "leases", list);
	return 0;
}

void srv_h_leases_get(struct srv_call *c)
{
	json_t *out = NULL;
	int rc = srv_read(c->s, get_txn, &out);

	if (rc != 0 || !out) {
		json_decref(out);
		srv_resp_store_error(c->rs, rc ? rc : ENOMEM);
		return;
	}
	srv_resp_json(c->rs, 200, out);
}

/* ---- forgetting windows that are over ---- */

static int prune_txn(struct srv *s, srv_txn *txn, void *ctx)
{
	int *n = ctx, rc = 0;
	json_t *idx = srv_get_json(txn, s->db_meta, "leases"), *v;
	int64_t now = lc_now();
	const char *dk;
	void *tmp;

	*n = 0;
	json_object_foreach_safe(idx, tmp, dk, v) {
		json_t *doc = srv_get_json(txn, s->db_meta, dk);
		const char *limit = json_string_value(json_object_get(doc, "limit"));
		enum lc_metric m;
		enum lc_window w;
		char id[128];
		int scope;
		bool over = !limit || lc_rule_name_parse(limit, &scope, id, &m, &w) != 0 ||
			    lc_window_end(w, json_integer_value(json_object_get(doc, "bucket"))) < now - LEASE_SKEW_S;
		json_decref(doc);
		if (!over)
			continue;
		if ((rc = srv_del(txn, s->db_meta, dk)) != 0 && rc != MDB_NOTFOUND)
			break;
		rc = 0;
		json_object_del(idx, dk);
		(*n)++;
	}
	if (rc == 0 && *n)
		rc = srv_put_json(txn, s->db_meta, "leases", idx);
	json_decref(idx);
	return rc ? rc : *n ? SRV_COMMIT : MDB_NOTFOUND;
}

int srv_leases_prune(struct srv *s)
{
	int n = 0, rc = srv_write(s, prune_txn, &n);
	return rc == MDB_NOTFOUND ? 0 : rc;
}
