/* engine.c - admit / settle / reclaim: one LMDB write transaction each.
 *
 * admit reserves the worst case (input upper bound + output cap) on every
 * counter an applicable limit watches, after checking that no block limit
 * would be crossed; settle swaps the reservation for the reported usage.
 * Because the check and the reservation happen in one serialized write
 * transaction, no number of parallel requests on the host can spend past a
 * block threshold.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "engine_int.h"
#include "stats.h"
#include "util.h"

#define MV(p, n) ((MDB_val){.mv_size = (n), .mv_data = (void *)(p)})

const char *lc_strerror(int rc)
{
	switch (rc) {
	case LC_OK: return "ok";
	case LC_E_NOSTATE: return "no llmcap state (no policy installed)";
	case LC_E_STORE: return lc_store_error()[0] ? lc_store_error() : "the llmcap store is unusable";
	case LC_E_NOPOLICY: return "no policy installed";
	case LC_E_INVAL: return "invalid argument";
	case LC_E_NOTFOUND: return "not found";
	case LC_E_REJECTED: return "policy rejected";
	case LC__E_NEWER: return "the store was compiled by a newer llmcap: restart this program to use it";
	default: return rc > 0 ? strerror(rc) : mdb_strerror(rc);
	}
}

/* ---- process identity: pid + start time, so a recycled pid is not "alive" ---- */

static uint64_t proc_start(pid_t pid)
{
	char path[64], buf[1024], *p;
	unsigned long long start = 0;
	FILE *f;
	size_t n;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	f = fopen(path, "re");
	if (!f)
		return 0;
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	p = strrchr(buf, ')');  /* comm may contain spaces and parens */
	if (!p)
		return 0;
	/* after ") " come fields 3..; starttime is field 22 */
	if (sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %*u %*u %*d %*d %*d %*d %*d %*d %llu",
		   &start) != 1)
		return 0;
	return start;
}

static pid_t self_pid;
static uint64_t self_start;

static void self_identity(int32_t *pid, uint64_t *start)
{
	struct lc_proc_mark *m = lc_proc_mark();
	pid_t p;

	/* no getpid() per ticket: the mark page reads zero again in a forked child */
	if (m && __atomic_load_n(&m->ident_known, __ATOMIC_ACQUIRE)) {
		*pid = m->pid;
		*start = m->pstart;
		return;
	}
	p = getpid();
	if (m) {
		m->pid = p;
		m->pstart = proc_start(p);
		__atomic_store_n(&m->ident_known, 1, __ATOMIC_RELEASE);
		*pid = p;
		*start = m->pstart;
		return;
	}

	if (p != self_pid) {
		self_start = proc_start(p);
		self_pid = p;
	}
	*pid = p;
	*start = self_start;
}

static bool proc_alive(int32_t pid, uint64_t start)
{
	uint64_t s;

	if (pid <= 0)
		return false;
	if (kill(pid, 0) != 0 && errno == ESRCH)
		return false;
	s = proc_start(pid);
	return s != 0 && s == start;
}

/* ---- small helpers ---------------------------------------------------------- */

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

static void tkey_make(unsigned char tk[9], uint64_t id)
{
	tk[0] = LC_TICKET_PREFIX;
	be64(tk + 1, id);
}

static void ckey_make(struct lc_ckey *k, int scope, enum lc_metric m, enum lc_window w, int64_t bucket,
		      const char *id)
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

static const char *scope_name(int s)
{
	static const char *const n[] = {"key", "team", "org", "customer"};

	return s >= 0 && s < 4 ? n[s] : "?";
}

static int64_t sat_add(int64_t a, int64_t b)
{
	if (b > 0 && a > INT64_MAX - b)
		return INT64_MAX;
	return a + b;
}

static int meta_get_i64(struct lc_store *s, MDB_txn *txn, const char *k, int64_t *out)
{
	MDB_val key = MV(k, strlen(k)), v;
	int rc = mdb_get(txn, s->dbi[LC_DB_META], &key, &v);

	if (rc)
		return rc;
	if (v.mv_size != 8)
		return MDB_CORRUPTED;
	memcpy(out, v.mv_data, 8);
	return 0;
}

static int meta_put(struct lc_store *s, MDB_txn *txn, const char *k, const void *p, size_t n)
{
	MDB_val key = MV(k, strlen(k)), v = MV(p, n);

	return mdb_put(txn, s->dbi[LC_DB_META], &key, &v, 0);
}

static int get_cfg(struct lc_store *s, MDB_txn *txn, struct lc_rec_cfg *cfg)
{
	MDB_val key = MV("cfg", 3), v;
	int rc = mdb_get(txn, s->dbi[LC_DB_META], &key, &v);

	if (rc == MDB_NOTFOUND)
		return LC_E_NOPOLICY;
	if (rc)
		return rc;
	if (v.mv_size != sizeof(*cfg))
		goto other_version;
	memcpy(cfg, v.mv_data, sizeof(*cfg));  /* LMDB values are not aligned */
	if (cfg->format != LC_REC_FORMAT)
		goto other_version;
	return 0;
other_version:
	/* an older compile was upgraded when this process opened the store; a newer one means this
	 * process runs an older llmcap than the one that installed the policy */
	return LC__E_NEWER;
}

/* ---- events ---------------------------------------------------------------- */

static int ensure_identity(struct lc_store *s, MDB_txn *txn)
{
	MDB_val key = MV("host_id", 7), v;
	unsigned char r[16];
	char hex[33];

	if (mdb_get(txn, s->dbi[LC_DB_META], &key, &v) == 0)
		return 0;
	randombytes_buf(r, sizeof(r));
	lc_hex(r, 16, hex);
	if (meta_put(s, txn, "host_id", hex, 32))
		return -1;
	randombytes_buf(r, sizeof(r));
	lc_hex(r, 16, hex);
	return meta_put(s, txn, "epoch", hex, 32);
}

/* Queue an event inside txn; dedup non-NULL fires once per key. Steals data. */
static int queue_event(struct lc_store *s, MDB_txn *txn, const char *event, json_t *data, const char *dedup)
{
	unsigned char id[16], seqk[8];
	char idhex[33], ts[32];
	int64_t seq = 0;
	MDB_val k, v;
	json_t *ev;
	char *txt;
	int rc;

	if (dedup) {
		k = MV(dedup, strlen(dedup));
		if (mdb_get(txn, s->dbi[LC_DB_FIRED], &k, &v) == 0) {
			json_decref(data);
			return 0;
		}
		v = MV("", 0);
		rc = mdb_put(txn, s->dbi[LC_DB_FIRED], &k, &v, 0);
		if (rc) {
			json_decref(data);
			return rc;
		}
	}
	meta_get_i64(s, txn, "outbox_seq", &seq);
	seq++;
	rc = meta_put(s, txn, "outbox_seq", &seq, 8);
	if (rc) {
		json_decref(data);
		return rc;
	}
	randombytes_buf(id, sizeof(id));
	lc_hex(id, 16, idhex);
	lc_time_format(lc_now(), ts);
	ev = json_pack("{s:I,s:s,s:s,s:s,s:o}", "seq", (json_int_t)seq, "id", idhex, "event", event,
		       "created_at", ts, "data", data ? data : json_object());
	if (!ev)
		return ENOMEM;
	k = MV("host_id", 7);
	if (mdb_get(txn, s->dbi[LC_DB_META], &k, &v) == 0)
		json_object_set_new(ev, "host_id", json_stringn(v.mv_data, v.mv_size));
	txt = json_dumps(ev, JSON_COMPACT);
	json_decref(ev);
	if (!txt)
		return ENOMEM;
	be64(seqk, (uint64_t)seq);
	k = MV(seqk, 8);
	v = MV(txt, strlen(txt));
	rc = mdb_put(txn, s->dbi[LC_DB_OUTBOX], &k, &v, 0);
	free(txt);
	lc_log(LC_LOG_INFO, "event %s queued (seq %" PRId64 ")", event, seq);
	return rc;
}

/* ---- limit bookkeeping for one decision --------------------------------------- */

struct applied {
	int scope;
	char id[128];
	struct lc_limit lim;
	int ci;                      /* index into the distinct counter list */
	bool is_org_cap;
};

struct decision_ctx {
	struct lc_rec_cfg cfg;
	struct applied a[2 * LC_MAX_LIMITS + 4];
	int na;
	struct lc_ckey ck[LC_TICKET_MAXC];
	struct lc_rec_counter cv[LC_TICKET_MAXC];
	int nc;
	int64_t now;
};

static int counter_get(struct lc_store *s, MDB_txn *txn, const struct lc_ckey *k, struct lc_rec_counter *c)
{
	MDB_val key = MV(k->b, k->len), v;
	int rc = mdb_get(txn, s->dbi[LC_DB_COUNTERS], &key, &v);

	memset(c, 0, sizeof(*c));
	if (rc == MDB_NOTFOUND)
		return 0;
	if (rc)
		return rc;
	if (v.mv_size != sizeof(*c))
		return MDB_CORRUPTED;
	memcpy(c, v.mv_data, sizeof(*c));
	return 0;
}

static int counter_put(struct lc_store *s, MDB_txn *txn, const unsigned char *k, size_t klen,
		       const struct lc_rec_counter *c)
{
	MDB_val key = MV(k, klen), v = MV(c, sizeof(*c));

	return mdb_put(txn, s->dbi[LC_DB_COUNTERS], &key, &v, 0);
}

static int add_applied(struct lc_store *s, MDB_txn *txn, struct decision_ctx *x, int scope, const char *id,
		       const struct lc_limit *l, bool org)
{
	struct applied *a;
	struct lc_ckey k;
	int i, rc;

	if (!l->enabled || x->na >= (int)(sizeof(x->a) / sizeof(x->a[0])))
		return 0;
	ckey_make(&k, scope, l->metric, l->window, lc_window_start(l->window, x->now), id);
	for (i = 0; i < x->nc; i++)
		if (x->ck[i].len == k.len && !memcmp(x->ck[i].b, k.b, k.len))
			break;
	if (i == x->nc) {
		if (x->nc >= LC_TICKET_MAXC)
			return 0;
		x->ck[i] = k;
		rc = counter_get(s, txn, &k, &x->cv[i]);
		if (rc)
			return rc;
		x->nc++;
	}
	a = &x->a[x->na++];
	a->scope = scope;
	snprintf(a->id, sizeof(a->id), "%s", id);
	a->lim = *l;
	a->ci = i;
	a->is_org_cap = org;
	return 0;
}

static void limit_label(const struct applied *a, char *out, size_t n)
{
	if (a->scope == LC_SCOPE_ORG)
		snprintf(out, n, "org:%s:%s", lc_metric_name(a->lim.metric), lc_window_name(a->lim.window));
	else
		snprintf(out, n, "%s:%s:%s:%s", scope_name(a->scope), a->id, lc_metric_name(a->lim.metric),
			 lc_window_name(a->lim.window));
}

static void amount_fmt(enum lc_metric m, int64_t v, char out[40])
{
	if (m == LC_METRIC_COST)
		lc_micro_format(v, out);
	else
		snprintf(out, 40, "%" PRId64, v);
}

static json_t *limit_event_data(const struct applied *a, int64_t used, int64_t now)
{
	char label[192], ts[32];
	json_t *d;
	bool cost = a->lim.metric == LC_METRIC_COST;

	limit_label(a, label, sizeof(label));
	d = json_pack("{s:s,s:s,s:s,s:s,s:s}", "limit", label, "scope", scope_name(a->scope), "id", a->id,
		      "metric", lc_metric_name(a->lim.metric), "window", lc_window_name(a->lim.window));
	if (!d)
		return NULL;
	json_object_set_new(d, "threshold", cost ? json_real(a->lim.threshold / 1e6) : json_integer(a->lim.threshold));
	json_object_set_new(d, "used", cost ? json_real(used / 1e6) : json_integer(used));
	if (a->lim.window != LC_WIN_LIFETIME) {
		lc_time_format(lc_window_end(a->lim.window, now), ts);
		json_object_set_new(d, "resets_at", json_string(ts));
	}
	return d;
}

static void dedup_key(char *out, size_t n, const char *event, const struct applied *a, int64_t now)
{
	char label[192];

	limit_label(a, label, sizeof(label));
	snprintf(out, n, "%s|%s|%" PRId64, event, label, lc_window_start(a->lim.window, now));
}

static void deny_message(struct lc_decision *d, const struct applied *a, int64_t used, int64_t now)
{
	char thr[40], u[40], ts[32], resets[64];
	const char *w = lc_window_name(a->lim.window);
	int64_t end = lc_window_end(a->lim.window, now);

	amount_fmt(a->lim.metric, a->lim.threshold, thr);
	amount_fmt(a->lim.metric, used, u);
	if (end == INT64_MAX)
		snprintf(resets, sizeof(resets), "it never resets");
	else {
		lc_time_format(end, ts);
		snprintf(resets, sizeof(resets), "resets %s", ts);
	}
	if (a->is_org_cap)
		snprintf(d->message, sizeof(d->message),
			 "llmcap: %s organisation spend cap of %s reached (%s used); %s", w, thr, u, resets);
	else if (a->scope == LC_SCOPE_CUSTOMER && a->lim.metric == LC_METRIC_COST)
		snprintf(d->message, sizeof(d->message), "llmcap: %s budget of %s for customer '%s' reached (%s used); %s",
			 w, thr, a->id, u, resets);
	else
		snprintf(d->message, sizeof(d->message), "llmcap: %s %s limit of %s for %s '%s' reached (%s used); %s", w,
			 lc_metric_name(a->lim.metric), thr, scope_name(a->scope), a->id, u, resets);
	limit_label(a, d->limit, sizeof(d->limit));
	d->status = 429;
	d->retry_after = end == INT64_MAX ? 86400 * 365 : end - now;
	if (d->retry_after < 1)
		d->retry_after = 1;
	d->should_retry = d->retry_after <= 60;
}

/* ---- tickets ----------------------------------------------------------------- */

static int ticket_settle(struct lc_store *s, MDB_txn *txn, uint64_t id, const int64_t *actual_or_null,
			 const struct lc_usage *u, int http_status, int64_t now);

/* Charge at their estimate the tickets of processes that are gone. */
static int reclaim_txn(struct lc_store *s, MDB_txn *txn, unsigned *count, int64_t now)
{
	MDB_cursor *cur;
	MDB_val k, v;
	uint64_t dead[256];
	unsigned nd = 0;
	int rc;

	unsigned char first = LC_TICKET_PREFIX;

	rc = mdb_cursor_open(txn, s->dbi[LC_DB_COUNTERS], &cur);
	if (rc)
		return rc;
	k = MV(&first, 1);
	rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
	while (rc == 0 && nd < 256 && k.mv_size == 9 && ((unsigned char *)k.mv_data)[0] == LC_TICKET_PREFIX) {
		struct lc_rec_ticket_hdr h;

		if (v.mv_size >= sizeof(h)) {
			memcpy(&h, v.mv_data, sizeof(h));
			if (!proc_alive(h.pid, h.pstart))
				dead[nd++] = rbe64((unsigned char *)k.mv_data + 1);
		}
		rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
	}
	mdb_cursor_close(cur);
	if (rc && rc != MDB_NOTFOUND)
		return rc;
	for (unsigned i = 0; i < nd; i++) {
		rc = ticket_settle(s, txn, dead[i], NULL, NULL, 0, now);
		if (rc && rc != LC_E_NOTFOUND)
			return rc;
	}
	if (count)
		*count += nd;
	if (nd)
		lc_log(LC_LOG_INFO, "reclaimed %u reservation(s) of dead processes", nd);
	return 0;
}

static void alerts_after_settle(struct lc_store *s, MDB_txn *txn, const struct lc_ckey *k,
				const struct lc_rec_counter *before, const struct lc_rec_counter *after, int64_t now);

static int ticket_settle(struct lc_store *s, MDB_txn *txn, uint64_t id, const int64_t *actual_in,
			 const struct lc_usage *u, int http_status, int64_t now)
{
	unsigned char tk[9];
	MDB_val k, v;
	struct lc_rec_ticket_hdr h;
	int64_t actual[3];
	const unsigned char *p, *end;
	unsigned char *copy, stackbuf[sizeof(struct lc_rec_ticket_hdr) + LC_TICKET_MAXC * (LC_CKEY_MAX + 1)];
	int rc;

	tkey_make(tk, id);
	k = MV(tk, 9);
	rc = mdb_get(txn, s->dbi[LC_DB_COUNTERS], &k, &v);
	if (rc == MDB_NOTFOUND)
		return LC_E_NOTFOUND;
	if (rc)
		return rc;
	if (v.mv_size < sizeof(h))
		return MDB_CORRUPTED;
	copy = v.mv_size <= sizeof(stackbuf) ? stackbuf : malloc(v.mv_size);
	if (!copy)
		return ENOMEM;
	memcpy(copy, v.mv_data, v.mv_size);
	memcpy(&h, copy, sizeof(h));
	if (actual_in)
		memcpy(actual, actual_in, sizeof(actual));
	else if (u && u->present) {
		actual[LC_METRIC_REQUESTS] = 1;
		actual[LC_METRIC_TOKENS] = sat_add(sat_add(u->input, u->cached_input), u->output);
		actual[LC_METRIC_COST] = lc_cost_settle(&h.price, u);
	} else if (http_status >= 400) {
		/* providers do not bill failed requests: count the request, charge nothing */
		actual[LC_METRIC_REQUESTS] = 1;
		actual[LC_METRIC_TOKENS] = 0;
		actual[LC_METRIC_COST] = 0;
	} else {
		memcpy(actual, h.est, sizeof(actual));  /* no usage came back: charge the estimate */
	}
	p = copy + sizeof(h);
	end = copy + v.mv_size;
	for (int i = 0; i < h.nc && p < end; i++) {
		struct lc_ckey ck;
		struct lc_rec_counter c, before;
		enum lc_metric m;

		ck.len = *p++;
		if (ck.len > LC_CKEY_MAX || p + ck.len > end) {
			rc = MDB_CORRUPTED;
			goto out;
		}
		memcpy(ck.b, p, ck.len);
		p += ck.len;
		m = (enum lc_metric)ck.b[1];
		rc = counter_get(s, txn, &ck, &c);
		if (rc)
			goto out;
		before = c;
		c.reserved -= h.est[m];
		if (c.reserved < 0)
			c.reserved = 0;
		c.used = sat_add(c.used, actual[m]);
		rc = counter_put(s, txn, ck.b, ck.len, &c);
		if (rc)
			goto out;
		alerts_after_settle(s, txn, &ck, &before, &c, now);
	}
	rc = mdb_del(txn, s->dbi[LC_DB_COUNTERS], &k, NULL);
out:
	if (copy != stackbuf)
		free(copy);
	return rc;
}

/* ---- limits that apply to a key / team / org / customer ------------------------- */

static int key_lookup(struct lc_store *s, MDB_txn *txn, const unsigned char fp[32], struct lc_rec_key *out)
{
	MDB_val k = MV(fp, 32), v;
	int rc = mdb_get(txn, s->dbi[LC_DB_KEYS], &k, &v);

	if (rc)
		return rc;
	if (v.mv_size != sizeof(*out))
		return MDB_CORRUPTED;
	memcpy(out, v.mv_data, sizeof(*out));
	return 0;
}

static int team_lookup(struct lc_store *s, MDB_txn *txn, const char *team, struct lc_rec_limits *out)
{
	MDB_val k = MV(team, strlen(team)), v;
	int rc = mdb_get(txn, s->dbi[LC_DB_TEAMS], &k, &v);

	if (rc)
		return rc;
	if (v.mv_size != sizeof(*out))
		return MDB_CORRUPTED;
	memcpy(out, v.mv_data, sizeof(*out));
	return 0;
}

static void cust_limits(struct lc_store *s, MDB_txn *txn, const struct lc_rec_cfg *cfg, const char *cust,
			int64_t *budget, int64_t *rpm)
{
	MDB_val k = MV(cust, strlen(cust)), v;
	struct lc_rec_cust c;

	*budget = cfg->cust_budget;
	*rpm = cfg->cust_rpm;
	if (mdb_get(txn, s->dbi[LC_DB_CUSTS], &k, &v) == 0 && v.mv_size == sizeof(c)) {
		memcpy(&c, v.mv_data, sizeof(c));
		if (c.budget != -2)
			*budget = c.budget;
		if (c.rpm != -2)
			*rpm = c.rpm;
	}
}

/* Map counter key -> the limits watching it, to fire alert events when settled usage crosses them. */
static void alerts_after_settle(struct lc_store *s, MDB_txn *txn, const struct lc_ckey *k,
				const struct lc_rec_counter *before, const struct lc_rec_counter *after, int64_t now)
{
	int scope = k->b[0];
	enum lc_metric m = (enum lc_metric)k->b[1];
	enum lc_window w = (enum lc_window)k->b[2];
	char id[128], dk[400];
	struct lc_rec_limits lims = {0};
	struct lc_rec_cfg cfg;
	int64_t was = sat_add(before->used, before->remote), now_used = sat_add(after->used, after->remote);
	size_t idlen = (size_t)k->len - 11;

	if (now_used == was)
		return;
	memcpy(id, k->b + 11, idlen);
	id[idlen] = '\0';
	if (scope == LC_SCOPE_ORG) {
		struct applied a = {.scope = LC_SCOPE_ORG, .is_org_cap = true};

		if (get_cfg(s, txn, &cfg))
			return;
		snprintf(a.id, sizeof(a.id), "org");
		a.lim = (struct lc_limit){.metric = LC_METRIC_COST, .window = (enum lc_window)cfg.org_period,
					  .threshold = cfg.org_cap, .alert_at = cfg.org_warn, .enabled = true};
		if (m == LC_METRIC_COST && w == a.lim.window && cfg.org_warn >= 0 && was <= cfg.org_warn &&
		    now_used > cfg.org_warn) {
			dedup_key(dk, sizeof(dk), "spend_cap_warning_threshold_reached", &a, now);
			queue_event(s, txn, "spend_cap_warning_threshold_reached", limit_event_data(&a, now_used, now),
				    dk);
		}
		return;
	}
	if (scope == LC_SCOPE_KEY) {
		MDB_val kk = MV(id, strlen(id)), v;
		struct lc_rec_key rk;

		if (mdb_get(txn, s->dbi[LC_DB_KEYNAMES], &kk, &v) || v.mv_size != sizeof(rk))
			return;
		memcpy(&rk, v.mv_data, sizeof(rk));
		lims = rk.lim;
	} else if (scope == LC_SCOPE_TEAM) {
		team_lookup(s, txn, id, &lims);
	} else {
		return;
	}
	for (int i = 0; i < lims.n; i++) {
		struct lc_limit *l = &lims.l[i];
		struct applied a = {.scope = scope, .lim = *l};

		if (!l->enabled || l->metric != m || l->window != w)
			continue;
		snprintf(a.id, sizeof(a.id), "%s", id);
		if ((l->alert_at >= 0 && was <= l->alert_at && now_used > l->alert_at) ||
		    (l->warn && was <= l->threshold && now_used > l->threshold)) {
			dedup_key(dk, sizeof(dk), "limit_alert", &a, now);
			queue_event(s, txn, "limit_alert", limit_event_data(&a, now_used, now), dk);
		}
	}
}

/* ---- admit ------------------------------------------------------------------- */

static void set_deny(struct lc_decision *d, int status, const char *msg)
{
	d->verdict = LC_DENY;
	d->status = status;
	snprintf(d->message, sizeof(d->message), "%s", msg);
	d->limit[0] = '\0';
	d->retry_after = 0;
	d->should_retry = false;
}

static int provider_get(struct lc_store *s, MDB_txn *txn, const char *host, int port, struct lc_rec_provider *p)
{
	char hk[300];
	MDB_val k, v;
	int rc = MDB_NOTFOUND;
	size_t n;

	if (port > 0) {
		snprintf(hk, sizeof(hk), "%s:%d", host, port);
		for (char *c = hk; *c; c++)
			*c = (char)(*c >= 'A' && *c <= 'Z' ? *c + 32 : *c);
		k = MV(hk, strlen(hk));
		rc = mdb_get(txn, s->dbi[LC_DB_PROVIDERS], &k, &v);
	}
	if (rc == MDB_NOTFOUND) {
		snprintf(hk, sizeof(hk), "%s", host);
		for (char *c = hk; *c; c++)
			*c = (char)(*c >= 'A' && *c <= 'Z' ? *c + 32 : *c);
		n = strlen(hk);
		if (n && hk[n - 1] == '.')  /* "api.openai.com." is the same host */
			hk[--n] = '\0';
		k = MV(hk, n);
		rc = mdb_get(txn, s->dbi[LC_DB_PROVIDERS], &k, &v);
	}
	if (rc)
		return rc;
	if (v.mv_size != sizeof(*p))
		return MDB_CORRUPTED;
	memcpy(p, v.mv_data, sizeof(*p));
	return 0;
}

/* Customer requests-per-minute: no 60-second interval admits more than rpm.
 * Up to LC_RPM_EXACT_MAX the record is the ring of the last rpm admission times (ms), exact.
 * Above it a ring of 61 one-second buckets keeps the record small (a 100,000-rpm ring would
 * rewrite 800 KB per request): the seconds S-60..S are summed, so an admission is refused up to
 * one second longer than the exact rule would, never earlier than it allows.
 * Returns 0 (admit), 1 (limited: *wait_ms), or -1 with *err set. */
#define LC_RPM_EXACT_MAX 256
#define LC_RPM_MAGIC ((int64_t)0x8000000052504d31LL)  /* a negative first word: never a time */
struct rpm_buckets {
	int64_t magic;
	int64_t sec[61];
	int32_t cnt[61];
};

static int rpm_check(struct lc_store *s, MDB_txn *txn, const char *cust, int64_t rpm, int64_t now_ms,
		     int64_t *wait_ms, bool commit, int *err)
{
	MDB_val k = MV(cust, strlen(cust)), v, nv;
	int rc;

	*wait_ms = 0;
	if (rpm <= 0) {
		*wait_ms = 60000;
		return rpm == 0 ? 1 : 0;
	}
	rc = mdb_get(txn, s->dbi[LC_DB_RPM], &k, &v);
	if (rc && rc != MDB_NOTFOUND) {
		*err = rc;
		return -1;
	}
	if (rc == MDB_NOTFOUND)
		v.mv_size = 0;
	if (rpm > LC_RPM_EXACT_MAX) {
		struct rpm_buckets b;
		int64_t S = now_ms >= 0 ? now_ms / 1000 : -((-now_ms + 999) / 1000), sum = 0, first = INT64_MAX;

		if (v.mv_size == sizeof(b) && (memcpy(&b, v.mv_data, sizeof(b)), b.magic == LC_RPM_MAGIC)) {
			/* ours */
		} else {
			memset(&b, 0, sizeof(b));  /* none yet, or an exact ring from a smaller rpm */
			b.magic = LC_RPM_MAGIC;
			for (int i = 0; i < 61; i++)
				b.sec[i] = INT64_MIN;
		}
		for (int i = 0; i < 61; i++)
			if (b.sec[i] >= S - 60 && b.sec[i] <= S && b.cnt[i] > 0) {
				sum += b.cnt[i];
				if (b.sec[i] < first)
					first = b.sec[i];
			}
		if (sum >= rpm) {
			*wait_ms = (first + 61) * 1000 - now_ms;  /* when the oldest second leaves the window */
			if (*wait_ms < 1)
				*wait_ms = 1;
			return 1;
		}
		if (!commit)
			return 0;
		{
			int slot = (int)(((S % 61) + 61) % 61);

			if (b.sec[slot] != S) {
				b.sec[slot] = S;
				b.cnt[slot] = 0;
			}
			b.cnt[slot]++;
		}
		nv = MV(&b, sizeof(b));
		rc = mdb_put(txn, s->dbi[LC_DB_RPM], &k, &nv, 0);
	} else {
		int64_t ring[LC_RPM_EXACT_MAX], oldest;
		size_t n = v.mv_size % 8 == 0 && v.mv_size / 8 <= LC_RPM_EXACT_MAX ? v.mv_size / 8 : 0;
		size_t keep;

		if (n && (memcpy(&oldest, v.mv_data, 8), oldest == LC_RPM_MAGIC))
			n = 0;  /* a bucket record from a larger rpm: start over */
		/* the ring holds the last min(n, rpm) admission times, oldest first */
		if (n >= (size_t)rpm) {
			memcpy(&oldest, (char *)v.mv_data + (n - (size_t)rpm) * 8, 8);
			if (now_ms - oldest < 60000) {
				*wait_ms = 60000 - (now_ms - oldest);
				return 1;
			}
		}
		if (!commit)
			return 0;
		keep = n >= (size_t)rpm ? (size_t)rpm - 1 : n;
		if (keep)
			memcpy(ring, (char *)v.mv_data + (n - keep) * 8, keep * 8);
		ring[keep] = now_ms;
		nv = MV(ring, (keep + 1) * 8);
		rc = mdb_put(txn, s->dbi[LC_DB_RPM], &k, &nv, 0);
	}
	if (rc) {
		*err = rc;
		return -1;
	}
	return 0;
}

/* A ticket id without a getrandom() per admit: the write transaction's id is unique among
 * committed write transactions of this store (low 48 bits), and per-process random bits (high 16)
 * keep ids apart across a re-created store. A collision (MDB_KEYEXIST) falls back to random ids. */
static uint64_t ticket_id(MDB_txn *txn)
{
	struct lc_proc_mark *m = lc_proc_mark();
	uint64_t salt = m ? __atomic_load_n(&m->salt, __ATOMIC_RELAXED) : 0;

	if (!salt) {
		do {
			randombytes_buf(&salt, sizeof(salt));
		} while (!salt);
		if (m)
			__atomic_store_n(&m->salt, salt, __ATOMIC_RELAXED);
	}
	return (salt & 0xffff000000000000ull) | ((uint64_t)mdb_txn_id(txn) & 0xffffffffffffull) |
	       ((uint64_t)mdb_txn_id(txn) & 0xffffffffffffull ? 0 : 1);
}

/* What lc_admit_http parsed the body with, before its write transaction: the policy's
 * customer identifiers and the provider's format. Checked inside the transaction. */
struct parse_basis {
	enum lc_format fmt;
	int nident;
	char ident[LC_MAX_IDENT][124];
};
#define LC__E_REPARSE (-1999)   /* internal: the body was parsed on a stale basis */

static bool basis_same(const struct parse_basis *b, const struct lc_rec_cfg *cfg, uint8_t fmt)
{
	if (b->fmt != (enum lc_format)fmt || b->nident != cfg->nident)
		return false;
	for (int i = 0; i < cfg->nident; i++)
		if (strncmp(b->ident[i], cfg->ident[i], sizeof(b->ident[i])) != 0)
			return false;
	return true;
}

static void basis_set(struct parse_basis *b, const struct lc_rec_cfg *cfg, uint8_t fmt)
{
	b->fmt = (enum lc_format)fmt;
	b->nident = cfg->nident;
	memcpy(b->ident, cfg->ident, sizeof(b->ident));
}

static int admit_txn(struct lc_store *s, MDB_txn *txn, const struct lc_admit_req *r, const unsigned char *keyfp,
		     struct lc_decision *d, int *events_only, struct parse_basis *basis)
{
	struct decision_ctx *x;
	struct lc_rec_provider prov;
	struct lc_rec_key key;
	struct lc_price price;
	bool have_key = false, have_price = false;
	const struct lc_reqinfo *info = r->info;
	int64_t est[3], now_ms = lc_now_ms(), out_tokens, in_tokens, cust_budget = -1, cust_rpm = -1, wait_ms;
	char dk[400];
	int rc, i;

	*events_only = 0;
	x = malloc(sizeof(*x));  /* large; only the counts need zeroing */
	if (!x)
		return ENOMEM;
	x->na = 0;
	x->nc = 0;
	x->now = now_ms >= 0 ? now_ms / 1000 : -((-now_ms + 999) / 1000);
	rc = get_cfg(s, txn, &x->cfg);
	if (rc == LC_E_NOPOLICY) {
		d->verdict = LC_PASS;
		rc = 0;
		goto out;
	}
	if (rc)
		goto out;
	rc = provider_get(s, txn, r->host, r->port, &prov);
	if (rc == MDB_NOTFOUND) {
		d->verdict = LC_PASS;
		rc = 0;
		goto out;
	}
	if (rc)
		goto out;
	d->format = (enum lc_format)prov.format;
	if (basis && !basis_same(basis, &x->cfg, prov.format)) {
		basis_set(basis, &x->cfg, prov.format);   /* parse again on this basis */
		rc = LC__E_REPARSE;
		goto out;
	}

	/* who: the key */
	if (keyfp) {
		rc = key_lookup(s, txn, keyfp, &key);
		if (rc && rc != MDB_NOTFOUND)
			goto out;
		have_key = rc == 0;
		rc = 0;
	}
	if (!have_key && x->cfg.unknown_keys_block) {
		set_deny(d, 401, "llmcap: this API key is not in the policy (unknown_keys: block)");
		goto out;
	}
	if (have_key && key.revoked) {
		set_deny(d, 401, "");
		snprintf(d->message, sizeof(d->message), "llmcap: API key '%s' has been revoked", key.name);
		goto out;
	}
	if (have_key && key.expires_at >= 0 && x->now >= key.expires_at) {
		char ts[32];

		lc_time_format(key.expires_at, ts);
		set_deny(d, 401, "");
		snprintf(d->message, sizeof(d->message), "llmcap: API key '%s' expired at %s", key.name, ts);
		snprintf(dk, sizeof(dk), "key_expired|%s", key.name);
		queue_event(s, txn, "key_expired", json_pack("{s:s,s:s}", "key", key.name, "expired_at", ts), dk);
		*events_only = 1;
		goto out;
	}
	if (info->api == LC_API_UNKNOWN) {
		/* a provider call we do not price (GET /v1/models, files, ...): not counted */
		d->verdict = LC_ALLOW;
		d->ticket = 0;
		goto out;
	}

	/* what: model price and the worst-case estimate */
	have_price = lc_price_find(txn, s->dbi[LC_DB_PRICES], info->model, &price) == 0;
	if (!have_price)
		lc_price_none(&price);
	if (!have_price && x->cfg.unknown_models_block) {
		set_deny(d, 400, "");
		snprintf(d->message, sizeof(d->message),
			 "llmcap: model '%s' has no price in the policy (unknown_models: block)", info->model);
		goto out;
	}
	in_tokens = info->input_estimate > 0 ? info->input_estimate : 0;
	if (info->api == LC_API_EMBEDDINGS)
		out_tokens = 0;
	else if (info->output_cap >= 0)
		out_tokens = info->output_cap;
	else if (price.max_out >= 0)
		out_tokens = price.max_out;
	else
		out_tokens = x->cfg.default_max_output;
	est[LC_METRIC_REQUESTS] = 1;
	est[LC_METRIC_TOKENS] = sat_add(in_tokens, out_tokens);
	est[LC_METRIC_COST] = lc_cost_estimate(&price, info, in_tokens, out_tokens);

	/* which limits apply */
	if (have_key) {
		for (i = 0; i < key.lim.n && !rc; i++)
			rc = add_applied(s, txn, x, LC_SCOPE_KEY, key.name, &key.lim.l[i], false);
		if (!rc && key.team[0]) {
			struct lc_rec_limits tl;

			if (team_lookup(s, txn, key.team, &tl) == 0)
				for (i = 0; i < tl.n && !rc; i++)
					rc = add_applied(s, txn, x, LC_SCOPE_TEAM, key.team, &tl.l[i], false);
		}
	}
	if (!rc && (x->cfg.org_cap >= 0 || x->cfg.org_warn >= 0)) {
		struct lc_limit l = {.metric = LC_METRIC_COST, .window = (enum lc_window)x->cfg.org_period,
				     .threshold = x->cfg.org_cap >= 0 ? x->cfg.org_cap : INT64_MAX,
				     .alert_at = x->cfg.org_warn, .warn = x->cfg.org_cap < 0, .enabled = true};

		rc = add_applied(s, txn, x, LC_SCOPE_ORG, "org", &l, true);
	}
	if (!rc && info->customer[0]) {
		cust_limits(s, txn, &x->cfg, info->customer, &cust_budget, &cust_rpm);
		if (cust_budget >= 0) {
			struct lc_limit l = {.metric = LC_METRIC_COST, .window = LC_WIN_MONTHLY,
					     .threshold = cust_budget, .alert_at = -1, .enabled = true};

			rc = add_applied(s, txn, x, LC_SCOPE_CUSTOMER, info->customer, &l, false);
		}
	}
	if (rc)
		goto out;

	/* check every block limit; one reclaim pass if reservations stand in the way */
	for (int pass = 0; pass < 2; pass++) {
		const struct applied *hit = NULL;
		int64_t hit_used = 0;
		bool reserved_in_way = false;

		for (i = 0; i < x->na; i++) {
			const struct applied *a = &x->a[i];
			const struct lc_rec_counter *c = &x->cv[a->ci];
			int64_t committed = sat_add(sat_add(c->used, c->reserved), c->remote);

			if (a->lim.warn)
				continue;
			if (sat_add(committed, est[a->lim.metric]) > a->lim.threshold) {
				hit = a;
				hit_used = committed;
				reserved_in_way = c->reserved > 0;
				break;
			}
		}
		if (!hit)
			break;
		if (pass == 0 && reserved_in_way) {
			unsigned n = 0;

			rc = reclaim_txn(s, txn, &n, x->now);
			if (rc)
				goto out;
			if (n) {
				for (i = 0; i < x->nc; i++)
					if ((rc = counter_get(s, txn, &x->ck[i], &x->cv[i])))
						goto out;
				continue;
			}
		}
		deny_message(d, hit, hit_used, x->now);
		d->verdict = LC_DENY;
		{
			const char *ev = hit->is_org_cap ? "spend_cap_reached"
					 : (hit->scope == LC_SCOPE_CUSTOMER) ? "customer_budget_limit_reached"
									     : "limit_reached";

			dedup_key(dk, sizeof(dk), ev, hit, x->now);
			queue_event(s, txn, ev, limit_event_data(hit, hit_used, x->now), dk);
		}
		*events_only = 1;
		goto out;
	}
	if (info->customer[0] && cust_rpm >= 0) {
		int rerr = 0;

		rc = rpm_check(s, txn, info->customer, cust_rpm, now_ms, &wait_ms, false, &rerr);
		if (rc < 0) {
			rc = rerr;
			goto out;
		}
		if (rc == 1) {
			struct applied a = {.scope = LC_SCOPE_CUSTOMER,
					    .lim = {.metric = LC_METRIC_REQUESTS, .window = LC_WIN_MINUTE,
						    .threshold = cust_rpm, .enabled = true}};

			snprintf(a.id, sizeof(a.id), "%s", info->customer);
			rc = 0;
			d->verdict = LC_DENY;
			d->status = 429;
			snprintf(d->message, sizeof(d->message),
				 "llmcap: rate limit of %" PRId64 " requests per minute for customer '%s' reached; retry in %" PRId64 "s",
				 cust_rpm, info->customer, (wait_ms + 999) / 1000);
			snprintf(d->limit, sizeof(d->limit), "customer:%s:rpm", info->customer);
			d->retry_after = (wait_ms + 999) / 1000;
			if (d->retry_after < 1)
				d->retry_after = 1;
			d->should_retry = true;
			goto out;
		}
	}

	/* warn limits reached: let through, tell once per window */
	for (i = 0; i < x->na; i++) {
		const struct applied *a = &x->a[i];
		const struct lc_rec_counter *c = &x->cv[a->ci];
		int64_t committed = sat_add(sat_add(c->used, c->reserved), c->remote);

		if (a->lim.warn && !a->is_org_cap && sat_add(committed, est[a->lim.metric]) > a->lim.threshold) {
			dedup_key(dk, sizeof(dk), "limit_alert", a, x->now);
			queue_event(s, txn, "limit_alert", limit_event_data(a, committed, x->now), dk);
		}
	}

	/* reserve */
	{
		unsigned char tbuf[sizeof(struct lc_rec_ticket_hdr) + LC_TICKET_MAXC * (LC_CKEY_MAX + 1)];
		struct lc_rec_ticket_hdr h = {0};
		unsigned char tk[9];
		size_t off = sizeof(h);
		uint64_t tid;
		MDB_val k, v;

		for (i = 0; i < x->nc; i++) {
			enum lc_metric m = (enum lc_metric)x->ck[i].b[1];

			x->cv[i].reserved = sat_add(x->cv[i].reserved, est[m]);
			rc = counter_put(s, txn, x->ck[i].b, x->ck[i].len, &x->cv[i]);
			if (rc)
				goto out;
			tbuf[off++] = x->ck[i].len;
			memcpy(tbuf + off, x->ck[i].b, x->ck[i].len);
			off += x->ck[i].len;
		}
		if (info->customer[0] && cust_rpm > 0) {
			int rerr = 0;

			rc = rpm_check(s, txn, info->customer, cust_rpm, now_ms, &wait_ms, true, &rerr);
			if (rc) {
				rc = rc < 0 ? rerr : MDB_BAD_TXN;  /* limited on commit cannot happen: checked above */
				goto out;
			}
		}
		self_identity(&h.pid, &h.pstart);
		h.nc = x->nc;
		h.created_ms = now_ms;
		memcpy(h.est, est, sizeof(est));
		h.price = price;
		memcpy(tbuf, &h, sizeof(h));
		tid = ticket_id(txn);
		tkey_make(tk, tid);
		k = MV(tk, 9);
		v = MV(tbuf, off);
		rc = mdb_put(txn, s->dbi[LC_DB_COUNTERS], &k, &v, MDB_NOOVERWRITE);
		while (rc == MDB_KEYEXIST) {
			do {
				randombytes_buf(&tid, sizeof(tid));
			} while (tid == 0);
			tkey_make(tk, tid);
			rc = mdb_put(txn, s->dbi[LC_DB_COUNTERS], &k, &v, MDB_NOOVERWRITE);
		}
		if (rc)
			goto out;
		d->verdict = LC_ALLOW;
		d->ticket = tid;
	}
	/* an expired policy keeps being enforced; say so once */
	{
		if (x->now >= x->cfg.expires_at) {
			int64_t ver = 0;

			meta_get_i64(s, txn, "version", &ver);
			snprintf(dk, sizeof(dk), "policy_expired|%" PRId64, ver);
			queue_event(s, txn, "policy_expired", json_pack("{s:I}", "version", (json_int_t)ver), dk);
		}
	}
out:
	free(x);
	return rc;
}

bool lc_fail_closed(void)
{
	struct lc_store *s;
	int rc = lc_store_open(false, &s);

	return rc == LC_E_STORE;
}

static pthread_mutex_t fail_log_mu = PTHREAD_MUTEX_INITIALIZER;
static char fail_logged[512];

static void fail_decision(int rc, struct lc_decision *d)
{
	if (rc == LC_E_NOSTATE || rc == LC_E_NOPOLICY) {
		d->verdict = LC_PASS;
		return;
	}
	set_deny(d, 503, "");
	snprintf(d->message, sizeof(d->message), "llmcap: the limits store is unusable, refusing provider calls (%s)",
		 lc_strerror(rc));
	d->retry_after = 60;
	d->should_retry = false;
	/* one stderr line per cause, not one per request */
	pthread_mutex_lock(&fail_log_mu);
	if (strcmp(fail_logged, d->message)) {
		snprintf(fail_logged, sizeof(fail_logged), "%s", d->message);
		lc_log(LC_LOG_ERROR, "%s", d->message + strlen("llmcap: "));
	}
	pthread_mutex_unlock(&fail_log_mu);
}

static int admit_common(const struct lc_admit_req *r, struct lc_decision *d, struct parse_basis *basis);

int lc_admit(const struct lc_admit_req *r, struct lc_decision *d)
{
	return admit_common(r, d, NULL);
}

static int admit_common(const struct lc_admit_req *r, struct lc_decision *d, struct parse_basis *basis)
{
	struct lc_store *s;
	MDB_txn *txn;
	unsigned char fp[32];
	bool have_fp = false;
	int rc, events_only;

	memset(d, 0, sizeof(*d));
	if (!r || !r->host || !r->info) {
		d->verdict = LC_PASS;
		return LC_E_INVAL;
	}
	if (r->api_key && r->api_key_len) {
		lc_sha256(r->api_key, r->api_key_len, fp);  /* outside the write lock */
		have_fp = true;
	}
	rc = lc_store_open(false, &s);
	if (rc) {
		fail_decision(rc, d);
		return rc;
	}
	for (int attempt = 0; attempt < 4; attempt++) {
		memset(d, 0, sizeof(*d));
		rc = lc_store_begin(s, true, &txn);
		if (rc)
			break;
		rc = admit_txn(s, txn, r, have_fp ? fp : NULL, d, &events_only, basis);
		if (rc == MDB_MAP_FULL) {
			lc_store_grow(s, txn);
			continue;
		}
		if (rc == LC__E_REPARSE) {
			lc_store_end(s, txn, false);
			memset(d, 0, sizeof(*d));
			return rc;
		}
		if (rc) {
			lc_store_end(s, txn, false);
			break;
		}
		/* a denial still commits: its events (and reclaimed tickets) must persist */
		if ((rc = lc_stats_count(s, txn, d)) == MDB_MAP_FULL) {
			lc_store_grow(s, txn);
			continue;
		}
		if (rc) {
			lc_store_end(s, txn, false);
			break;
		}
		rc = lc_store_end(s, txn, d->verdict == LC_ALLOW || events_only || d->verdict == LC_DENY);
		if (rc != MDB_MAP_FULL)
			break;
	}
	if (rc) {
		fail_decision(rc, d);  /* one stderr line, naming the cause (e.g. "File too large") */
		return LC_E_STORE;
	}
	if (lc_log_level() >= LC_LOG_DEBUG)  /* never the raw key: host, model, verdict, limit */
		lc_log(LC_LOG_DEBUG, "admit %s%s%.0d model=%s -> %s%s%s", r->host, r->port ? ":" : "", r->port,
		       r->info->model, d->verdict == LC_PASS ? "pass" : d->verdict == LC_ALLOW ? "allow" : "deny",
		       d->verdict == LC_DENY ? " " : "", d->verdict == LC_DENY ? d->message : "");
	return LC_OK;
}

int lc_settle(uint64_t ticket, const struct lc_usage *u, int http_status)
{
	struct lc_store *s;
	MDB_txn *txn;
	int rc;

	if (ticket == 0)
		return LC_OK;  /* an allowed request that was not counted */
	rc = lc_store_open(false, &s);
	if (rc)
		return rc;
	for (int attempt = 0; attempt < 4; attempt++) {
		rc = lc_store_begin(s, true, &txn);
		if (rc)
			return rc;
		rc = ticket_settle(s, txn, ticket, NULL, u, http_status, lc_now());
		if (rc == MDB_MAP_FULL) {
			lc_store_grow(s, txn);
			continue;
		}
		if (rc) {
			lc_store_end(s, txn, false);
			return rc;
		}
		rc = lc_store_end(s, txn, true);
		if (rc != MDB_MAP_FULL)
			break;
	}
	return rc;
}

int lc_reclaim(unsigned *reclaimed)
{
	struct lc_store *s;
	MDB_txn *txn;
	unsigned n = 0;
	int rc = lc_store_open(false, &s);

	if (reclaimed)
		*reclaimed = 0;
	if (rc)
		return rc;
	rc = lc_store_begin(s, true, &txn);
	if (rc)
		return rc;
	rc = reclaim_txn(s, txn, &n, lc_now());
	rc = lc_store_finish(s, txn, rc);
	if (!rc && reclaimed)
		*reclaimed = n;
	return rc;
}

/* ---- HTTP convenience ---------------------------------------------------------- */

struct hdr_ctx {
	const struct lc_reqparse *req;
};

static int hdr_cb(void *ctx, const char *name, char *out, size_t outlen)
{
	return lc_reqparse_header(((struct hdr_ctx *)ctx)->req, name, out, outlen);
}

/* The credential of the request (points into auth), or NULL. */
static const char *req_key(const struct lc_reqparse *req, char *auth, size_t authlen)
{
	const char *key = NULL;

	if (lc_reqparse_header(req, "authorization", auth, authlen) == 0 && !strncasecmp(auth, "bearer ", 7)) {
		key = auth + 7;
		while (*key == ' ')
			key++;
	} else if (lc_reqparse_header(req, "x-api-key", auth, authlen) == 0 ||
		   lc_reqparse_header(req, "api-key", auth, authlen) == 0) {
		key = auth;
	}
	return key;
}

/* The basis the last admit of this process parsed with: a seqlock, so readers never block (and a
 * fork while a writer held it leaves the child only without the cache). */
static struct parse_basis basis_cache;
static unsigned basis_seq;      /* odd while written; 0: never filled */
static int basis_wlock;

static bool basis_load(struct parse_basis *out)
{
	unsigned a = __atomic_load_n(&basis_seq, __ATOMIC_ACQUIRE), b;

	if (a == 0 || (a & 1))
		return false;
	memcpy(out, &basis_cache, sizeof(*out));
	__atomic_thread_fence(__ATOMIC_ACQUIRE);
	b = __atomic_load_n(&basis_seq, __ATOMIC_RELAXED);
	return a == b && out->nident >= 0 && out->nident <= LC_MAX_IDENT;
}

static void basis_store(const struct parse_basis *b)
{
	if (__atomic_exchange_n(&basis_wlock, 1, __ATOMIC_ACQUIRE))
		return;  /* another thread is publishing */
	__atomic_store_n(&basis_seq, basis_seq + 1, __ATOMIC_RELAXED);   /* odd */
	__atomic_thread_fence(__ATOMIC_RELEASE);
	memcpy(&basis_cache, b, sizeof(*b));
	__atomic_store_n(&basis_seq, basis_seq + 1 == 0 ? 2 : basis_seq + 1, __ATOMIC_RELEASE);
	__atomic_store_n(&basis_wlock, 0, __ATOMIC_RELEASE);
}

/* Parse on basis b and admit in one write transaction that re-checks b. Returns LC__E_REPARSE
 * (b updated) when the policy or the provider's format differ, or -2 when the body cannot be
 * parsed (the caller decides that the slow way, as before). */
static int admit_http_on(const char *host, int port, const struct lc_reqparse *req, struct lc_decision *d,
			 struct parse_basis *b, char *err, size_t errlen)
{
	struct lc_reqinfo info;
	struct lc_admit_req ar = {0};
	struct hdr_ctx hc = {req};
	const char *ident[LC_MAX_IDENT + 1];
	char auth[4096];
	const char *key;
	int rc;

	for (int i = 0; i < b->nident; i++)
		ident[i] = b->ident[i];
	ident[b->nident] = NULL;
	if (lc_reqinfo_parse(b->fmt, req->path, req->body.data, req->body.len, ident, hdr_cb, &hc, &info, err,
			     errlen))
		return -2;
	key = req_key(req, auth, sizeof(auth));
	ar.host = host;
	ar.port = port;
	ar.api_key = key;
	ar.api_key_len = key ? strlen(key) : 0;
	ar.info = &info;
	rc = admit_common(&ar, d, b);
	sodium_memzero(auth, sizeof(auth));
	return rc;
}

/* The basis straight from the store (one read transaction). 1: not a provider / no policy. */
static int basis_from_store(struct lc_store *s, const char *host, int port, struct parse_basis *b)
{
	struct lc_rec_cfg cfg;
	struct lc_rec_provider prov;
	MDB_txn *txn;
	int rc = lc_store_begin(s, false, &txn);

	if (rc)
		return LC_E_STORE;
	rc = get_cfg(s, txn, &cfg);
	if (rc == 0)
		rc = provider_get(s, txn, host, port, &prov);
	lc_store_end(s, txn, false);
	if (rc == LC_E_NOPOLICY || rc == MDB_NOTFOUND)
		return 1;
	if (rc)
		return rc;
	basis_set(b, &cfg, prov.format);
	return 0;
}

int lc_admit_http(const char *host, int port, const struct lc_reqparse *req, struct lc_decision *d)
{
	struct lc_store *s;
	struct parse_basis b;
	char err[256];
	bool fresh = false;
	int rc;

	memset(d, 0, sizeof(*d));
	rc = lc_store_open(false, &s);
	if (rc) {
		fail_decision(rc, d);
		return rc;
	}
	/* Parse with the identifiers and format the last admit saw, then decide in one write
	 * transaction that re-checks them (no read transaction first). A stale basis, or a body that
	 * does not parse on it, sends us to the store for the basis, and we parse again. */
	for (int attempt = 0; attempt < 3; attempt++) {
		if (!fresh && (attempt > 0 || !basis_load(&b))) {
			rc = basis_from_store(s, host, port, &b);
			if (rc == 1) {
				d->verdict = LC_PASS;
				return LC_OK;
			}
			if (rc) {
				fail_decision(rc, d);
				return LC_E_STORE;
			}
			basis_store(&b);
			fresh = true;
		}
		rc = admit_http_on(host, port, req, d, &b, err, sizeof(err));
		if (rc == LC__E_REPARSE) {  /* b now holds the store's basis */
			basis_store(&b);
			fresh = true;
			continue;
		}
		if (rc == -2) {
			if (!fresh)
				continue;
			memset(d, 0, sizeof(*d));
			d->format = b.fmt;
			set_deny(d, 400, "");
			snprintf(d->message, sizeof(d->message), "llmcap: cannot read this request (%s)", err);
			return LC_OK;
		}
		return rc;
	}
	fail_decision(LC_E_STORE, d);  /* the policy kept changing under us */
	return LC_E_STORE;
}

int lc_provider_lookup(const char *host, int port, enum lc_format *fmt, char *name, size_t namelen)
{
	struct lc_store *s;
	struct lc_rec_provider p;
	MDB_txn *txn;
	int rc = lc_store_open(false, &s);

	if (rc == LC_E_NOSTATE)
		return 0;
	if (rc)
		return rc;
	rc = lc_store_begin(s, false, &txn);
	if (rc)
		return LC_E_STORE;
	rc = provider_get(s, txn, host, port, &p);
	lc_store_end(s, txn, false);
	if (rc == MDB_NOTFOUND)
		return 0;
	if (rc)
		return LC_E_STORE;
	if (fmt)
		*fmt = (enum lc_format)p.format;
	if (name && namelen)
		snprintf(name, namelen, "%s", p.name);
	return 1;
}

/* exported for engine_policy.c / engine_report.c */
int lc__queue_event(struct lc_store *s, MDB_txn *txn, const char *event, json_t *data, const char *dedup);
int lc__queue_event(struct lc_store *s, MDB_txn *txn, const char *event, json_t *data, const char *dedup)
{
	return queue_event(s, txn, event, data, dedup);
}
int lc__ensure_identity(struct lc_store *s, MDB_txn *txn);
int lc__ensure_identity(struct lc_store *s, MDB_txn *txn)
{
	return ensure_identity(s, txn);
}
int lc__get_cfg(struct lc_store *s, MDB_txn *txn, struct lc_rec_cfg *cfg);
int lc__get_cfg(struct lc_store *s, MDB_txn *txn, struct lc_rec_cfg *cfg)
{
	return get_cfg(s, txn, cfg);
}
