/* engine_lease.c - this host's slices of shared limits (docs/server.md "Leases").
 *
 * llmcap-server grants each host a slice of what is left of every shared limit, so that the slices
 * outstanding plus the usage reported never pass the threshold. Admit checks the slice in its own
 * write transaction (lc__lease_check: no network call); the agent plans the calls (more before
 * the slice runs out, renewals before the TTL, give back what is not needed) and applies the answers.
 *
 * The numbers are the host's own committed usage of the rule's group in the rule's window: settled
 * (the ledger) + reserved (in flight), folded to the rule's metric. A slice is an allowance for that
 * number: "own committed may reach allow in bucket B until expires_ms".
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "engine_int.h"
#include "util.h"

#define MV(p, n) ((MDB_val){.mv_size = (n), .mv_data = (void *)(p)})
#define LEASE_HORIZON_MS 10000     /* a slice sized to last this long at the recent rate */
#define LEASE_MIN_PART 64          /* ... and at least threshold / 64 (one request at the least) */
#define LEASE_TTL_DEFAULT_MS 30000
#define LEASE_PLAN_MAX 256         /* limits per call */
#define LEASE_AMOUNT_MAX 1000000000000000000LL
#define LEASE_WAIT_MS 2000         /* a request with no slice yet waits this long at most for the agent */
#define LEASE_ALIVE_MS 2000        /* the agent's lease thread marks the store every 500 ms while it reaches a server */
#define LEASE_POLL_MS 5

bool lc__lease_mode(struct lc_store *s, MDB_txn *txn)
{
	MDB_val k = MV("leases", 6), v;

	return mdb_get(txn, s->dbi[LC_DB_META], &k, &v) == 0;
}

static int meta_del(struct lc_store *s, MDB_txn *txn, const char *name)
{
	MDB_val k = MV(name, strlen(name));
	int rc = mdb_del(txn, s->dbi[LC_DB_META], &k, NULL);

	return rc == MDB_NOTFOUND ? 0 : rc;
}

/* on: the policy's shared limits are leased, and the agent asks for a slice of each at once
 * ("lease_prefetch": a policy installed, so limits may be new) */
int lc__lease_mode_set(struct lc_store *s, MDB_txn *txn, bool on)
{
	MDB_val k = MV("leases", 6), v = MV("1", 1), pk = MV("lease_prefetch", 14);
	int rc;

	if (on)
		return (rc = mdb_put(txn, s->dbi[LC_DB_META], &k, &v, 0)) ? rc
										: mdb_put(txn, s->dbi[LC_DB_META], &pk, &v, 0);
	return (rc = meta_del(s, txn, "leases")) ? rc : meta_del(s, txn, "lease_prefetch");
}

/* how often the agent's mark is rewritten: a waiting request trusts a mark younger than
 * LEASE_ALIVE_MS, so 500 ms keeps it fresh with 2 writes a second (none with leases off) */
#define LEASE_TICK_WRITE_MS 500

/* when the agent's lease thread last reached a server (ms), 0 never */
static int64_t agent_tick(struct lc_store *s, MDB_txn *txn)
{
	MDB_val k = MV("lease_tick", 10), v;
	int64_t t = 0;

	if (mdb_get(txn, s->dbi[LC_DB_META], &k, &v) == 0 && v.mv_size == sizeof(t))
		memcpy(&t, v.mv_data, sizeof(t));
	return t;
}

#define PL (sizeof(LC_LEASE_PREFIX) - 1)

static size_t lease_key(unsigned char *out, size_t n, const char *name)
{
	size_t l = strlen(name);

	if (l + PL > n)
		l = n - PL;
	memcpy(out, LC_LEASE_PREFIX, PL);
	memcpy(out + PL, name, l);
	return l + PL;
}

/* 0 found, MDB_NOTFOUND (zeroed), or a store error */
static int lease_get(struct lc_store *s, MDB_txn *txn, const char *name, struct lc_rec_lease *lr)
{
	unsigned char kb[256];
	MDB_val k = MV(kb, lease_key(kb, sizeof(kb), name)), v;
	int rc = mdb_get(txn, s->dbi[LC_DB_COUNTERS], &k, &v);

	memset(lr, 0, sizeof(*lr));
	if (rc)
		return rc;
	if (v.mv_size != sizeof(*lr))
		return MDB_NOTFOUND;   /* another layout: as if none (the agent asks again) */
	memcpy(lr, v.mv_data, sizeof(*lr));
	return 0;
}

static int lease_put(struct lc_store *s, MDB_txn *txn, const char *name, const struct lc_rec_lease *lr)
{
	unsigned char kb[256];
	MDB_val k = MV(kb, lease_key(kb, sizeof(kb), name)), v = MV(lr, sizeof(*lr));

	return mdb_put(txn, s->dbi[LC_DB_COUNTERS], &k, &v, 0);
}

static int lease_del(struct lc_store *s, MDB_txn *txn, const char *name)
{
	unsigned char kb[256];
	MDB_val k = MV(kb, lease_key(kb, sizeof(kb), name));
	int rc = mdb_del(txn, s->dbi[LC_DB_COUNTERS], &k, NULL);

	return rc == MDB_NOTFOUND ? 0 : rc;
}

/* this host's settled + reserved usage of r's group in r's window (rec is rolled to now) */
static int64_t own_committed(const struct lc_rec_ledger *rec, const struct lc_rule *r)
{
	return lc_sat_add(lc_lmetric_fold(r->lim.metric, rec->w[r->lim.window].v), rec->reserved[r->lim.metric]);
}

static bool lease_live(const struct lc_rec_lease *lr, const struct lc_rec_ledger *rec, const struct lc_rule *r,
		       int64_t now_ms)
{
	return lr->bucket == rec->w[r->lim.window].bucket && now_ms < lr->expires_ms;
}

int lc__lease_check(struct lc_store *s, MDB_txn *txn, const struct lc_rule *r, const struct lc_rec_ledger *rec,
		    int64_t est, int64_t now_ms, struct lc_decision *d)
{
	struct lc_rec_lease lr;
	char name[200], a[40], b[40], c[40];
	int64_t own = own_committed(rec, r), now = lc_floordiv(now_ms, 1000), end;
	bool live;
	int rc;

	lc_rule_name(r, name, sizeof(name));
	rc = lease_get(s, txn, name, &lr);
	if (rc && rc != MDB_NOTFOUND)
		return rc;
	live = rc == 0 && lease_live(&lr, rec, r, now_ms);
	if (live && lc_sat_add(own, est) <= lr.allow)
		return 0;
	/* refused: tell the agent what this request needed (it asks within a few milliseconds) */
	lr.need = est > 0 ? est : 1;
	if ((rc = lease_put(s, txn, name, &lr)))
		return rc;
	int64_t tick = agent_tick(s, txn);
	bool asking = !(lr.exhausted && live) && tick > 0 && now_ms - tick < LEASE_ALIVE_MS && tick - now_ms < LEASE_ALIVE_MS;
	d->verdict = LC_DENY;
	d->status = 429;
	snprintf(d->limit, sizeof(d->limit), "%s", name);
	lc_amount_text(r->lim.metric, r->lim.threshold, a);
	lc_amount_text(r->lim.metric, own, b);
	lc_amount_text(r->lim.metric, est, c);
	end = lc_window_end(r->lim.window, now);
	if (lr.exhausted && live) {
		/* the server had nothing left to grant: the limit is spent across the hosts */
		snprintf(d->message, sizeof(d->message),
			 "llmcap: %s limit of %s for %s '%s' reached across all hosts (every share is granted; %s used here + "
			 "%s this request (worst case) would exceed this host's share)",
			 lc_window_name(r->lim.window), a, lc_scope_name(r->scope), r->id, b, c);
		d->retry_after = end == INT64_MAX ? 86400 * 365 : end - now;
		if (d->retry_after > 5)
			d->retry_after = 5;   /* another host may give its share back */
	} else {
		snprintf(d->message, sizeof(d->message),
			 "llmcap: this host's share of the %s %s limit of %s for %s '%s' is %s (%s used here + %s this "
			 "request (worst case)); %s",
			 lc_window_name(r->lim.window), lc_metric_name(r->lim.metric), a, lc_scope_name(r->scope), r->id,
			 live ? "used up" : "not granted yet", b, c,
			 asking ? "the agent is asking llmcap-server for more, retry shortly"
				: "no running, enrolled `llmcap agent` on this host reaches llmcap-server to ask for more");
		d->retry_after = 1;
	}
	d->should_retry = true;
	return asking ? 2 : 1;
}

static void nap_ms(int64_t ms)
{
	struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
	int e = errno;   /* the caller's errno is the host program's */

	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
	errno = e;
}

int lc__lease_wait(struct lc_store *s, const char *name, int *polls)
{
	struct lc_rec_lease lr;
	int64_t granted = -1;

	for (;;) {
		MDB_txn *txn;
		int rc = lc_store_begin(s, false, &txn), alive;

		if (rc)
			return rc;
		rc = lease_get(s, txn, name, &lr);
		alive = lc_now_ms() - agent_tick(s, txn) < LEASE_ALIVE_MS;
		lc_store_end(s, txn, false);
		if (rc && rc != MDB_NOTFOUND)
			return rc;
		if (rc == MDB_NOTFOUND || lr.need == 0 || (granted >= 0 && lr.granted_ms != granted))
			return 0;   /* an answer was applied (or the record dropped): decide again */
		if (!alive || *polls <= 0)
			return ETIMEDOUT;
		(*polls)--;   /* counted, not timed: a clock that jumps does not stretch the wait */
		granted = lr.granted_ms;
		nap_ms(LEASE_POLL_MS);
	}
}

int lc__lease_wait_polls(void) { return LEASE_WAIT_MS / LEASE_POLL_MS; }

json_t *lc__lease_status(struct lc_store *s, MDB_txn *txn, const struct lc_rule *r, const struct lc_rec_ledger *rec,
			 int64_t now_ms)
{
	struct lc_rec_lease lr;
	char name[200], ts[32];
	bool live;
	json_t *o;

	if (!lc_rule_leased(r) || !lc__lease_mode(s, txn))
		return NULL;
	lc_rule_name(r, name, sizeof(name));
	if (lease_get(s, txn, name, &lr))
		return json_pack("{s:o,s:o,s:n}", "allowance", lc_amount_json(r->lim.metric, 0), "used_here",
				 lc_amount_json(r->lim.metric, own_committed(rec, r)), "expires_at");
	live = lease_live(&lr, rec, r, now_ms);
	o = json_pack("{s:o,s:o}", "allowance", lc_amount_json(r->lim.metric, live ? lr.allow : 0), "used_here",
		      lc_amount_json(r->lim.metric, own_committed(rec, r)));
	lc_time_format(lc_floordiv(lr.expires_ms, 1000), ts);
	json_object_set_new(o, "expires_at", live ? json_string(ts) : json_null());
	json_object_set_new(o, "exhausted", json_boolean(live && lr.exhausted));
	return o;
}

/* ---- the agent's side ---- */

/* the leased rule of this name under the installed policy; 0 found */
static int rule_of(struct lc_store *s, MDB_txn *txn, const struct lc_rec_cfg *cfg, const char *name,
		   struct lc_rule *out)
{
	struct lc_rule rules[2 * LC_MAX_LIMITS + 4];
	enum lc_metric m;
	enum lc_window w;
	char id[128];
	int scope, n = 0, rc;

	if (lc_rule_name_parse(name, &scope, id, &m, &w))
		return MDB_NOTFOUND;
	if ((rc = lc__group_rules(s, txn, cfg, scope, id, rules, 2 * LC_MAX_LIMITS + 4, &n)))
		return rc;
	for (int i = 0; i < n; i++)
		if (lc_rule_leased(&rules[i]) && rules[i].lim.metric == m && rules[i].lim.window == w) {
			*out = rules[i];
			return 0;
		}
	return MDB_NOTFOUND;
}

static int64_t max64(int64_t a, int64_t b) { return a > b ? a : b; }

/* how much this host should hold: its recent rate over the horizon, at least threshold / 64 */
static int64_t lease_target(const struct lc_rule *r, const struct lc_rec_lease *lr, int64_t own, bool same_bucket,
			    int64_t now_ms)
{
	int64_t t = max64(r->lim.threshold / LEASE_MIN_PART, 1);

	if (same_bucket && lr->granted_ms > 0 && now_ms - lr->granted_ms >= 500 && own > lr->base) {
		double rate = (double)(own - lr->base) / (double)(now_ms - lr->granted_ms);   /* per ms */
		double want = rate * LEASE_HORIZON_MS;

		if (want > (double)t)
			t = want >= (double)r->lim.threshold ? r->lim.threshold : (int64_t)want;
	} else if (lr->slice > t) {
		t = lr->slice;   /* no rate measured yet: as much as last time */
	}
	return t > r->lim.threshold ? max64(r->lim.threshold, 1) : t;
}

struct plan_op {
	json_t *leases;
	int64_t now_ms;
	unsigned flags;
};

static int plan_one(struct lc_store *s, MDB_txn *txn, const struct lc_rec_cfg *cfg, const char *name,
		    struct plan_op *op)
{
	int64_t starts[LC_WIN_COUNT], now_ms = op->now_ms, own, held, want = 0, target, remaining, ttl;
	struct lc_rec_lease lr;
	struct lc_rec_ledger rec;
	struct lc_rule r;
	struct lc_lkey k;
	bool live, same, quiet, send = false, drop = false;
	int rc;

	if ((rc = lease_get(s, txn, name, &lr)) == MDB_NOTFOUND)
		return 0;
	if (rc)
		return rc;
	rc = rule_of(s, txn, cfg, name, &r);
	if (rc && rc != MDB_NOTFOUND)
		return rc;
	if (rc == MDB_NOTFOUND)
		return lease_del(s, txn, name);   /* no longer a shared limit here; its slice expires at the server */
	lc__window_starts(lc_floordiv(now_ms, 1000), starts);
	lc__lkey(&k, r.scope, r.id);
	if ((rc = lc__ledger_get(s, txn, &k, starts, &rec)))
		return rc;
	own = own_committed(&rec, &r);
	live = lease_live(&lr, &rec, &r, now_ms);
	same = lr.bucket == starts[r.lim.window];
	ttl = lr.ttl_ms > 0 ? lr.ttl_ms : LEASE_TTL_DEFAULT_MS;
	target = lease_target(&r, &lr, own, same, now_ms);
	held = live ? max64(lr.allow, own) : own;
	remaining = held - own;
	/* after an answer that had less than asked for, ask again only after a while */
	quiet = lr.exhausted && now_ms - lr.granted_ms < (ttl / 4 < 1000 ? ttl / 4 : 1000);
	if (lr.need > 0) {
		/* a request was refused for want of a slice: ask now */
		if (!quiet) {
			/* the server had no more last time and what is left here cannot admit the request:
			 * give it back with the ask (the server grants a need whole or not at all), so that
			 * the hosts' leftovers gather where a request fits instead of each host keeping one */
			if (lr.exhausted && live && remaining < lr.need) {
				held = own;
				lr.allow = own;   /* not spent here meanwhile */
			}
			want = max64(lc_sat_add(own, max64(target, lr.need)) - held, 0);
			send = true;
		}
	} else if (!live) {
		/* expired (the server was away), or a new window: ask again if it was in use, else forget it */
		if (same ? own > lr.base : lr.seen > 0) {
			want = target;
			send = true;
		} else {
			drop = true;   /* nothing is held: nothing to give back */
		}
	} else if (own == lr.base && now_ms - lr.granted_ms > ttl) {
		/* idle for a whole TTL: give it all back */
		held = own;
		want = 0;
		drop = true;
		send = true;
	} else if (!quiet && (remaining * 2 < lr.slice || remaining < target / 2)) {
		want = max64(target - remaining, 0);   /* less than half left: refill ahead of running out */
		send = true;
	} else if (lr.expires_ms - now_ms < ttl / 2) {
		want = max64(target - remaining, 0);   /* renew before the TTL */
		send = true;
	} else if (remaining > 2 * target && now_ms - lr.granted_ms >= 2000) {
		held = own + target;                    /* far more than the rate needs: give the excess back */
		lr.allow = held;
		send = true;
	}
	if (drop) {
		if ((rc = lease_del(s, txn, name)))
			return rc;
	} else {
		lr.seen = own;
		if (send)
			lr.gen = max64(lr.gen + 1, now_ms * 1000);
		if ((rc = lease_put(s, txn, name, &lr)))
			return rc;
	}
	if (!send)
		return 0;
	return json_array_append_new(op->leases,
				     json_pack("{s:s,s:I,s:I,s:I,s:I,s:I,s:I}", "limit", name, "bucket",
					       (json_int_t)starts[r.lim.window], "used", (json_int_t)own, "held",
					       (json_int_t)held, "want", (json_int_t)want, "need",
					       (json_int_t)(lr.need > held - own ? lr.need - (held - own) : 0), "gen",
					       (json_int_t)(drop ? now_ms * 1000 : lr.gen)))
		       ? ENOMEM
		       : 0;
}

/* a record asking for a slice of each leased rule of a group that has none yet */
static int prefetch_group(struct lc_store *s, MDB_txn *txn, const struct lc_rec_cfg *cfg, int scope, const char *id,
			  int *room)
{
	struct lc_rule rules[2 * LC_MAX_LIMITS + 4];
	struct lc_rec_lease lr;
	char name[200];
	int n = 0, rc;

	if ((rc = lc__group_rules(s, txn, cfg, scope, id, rules, 2 * LC_MAX_LIMITS + 4, &n)))
		return rc;
	for (int i = 0; i < n && *room > 0; i++) {
		if (!lc_rule_leased(&rules[i]))
			continue;
		lc_rule_name(&rules[i], name, sizeof(name));
		if ((rc = lease_get(s, txn, name, &lr)) == 0)
			continue;
		if (rc != MDB_NOTFOUND)
			return rc;
		lr.need = 1;   /* ask now, for what the rate needs (no rate yet: threshold / 64) */
		if ((rc = lease_put(s, txn, name, &lr)))
			return rc;
		(*room)--;
	}
	return 0;
}

/* each group of one table of the policy (keys by name, teams, customers with their own limits) */
static int prefetch_table(struct lc_store *s, MDB_txn *txn, const struct lc_rec_cfg *cfg, int dbi, int scope,
			  int *room)
{
	MDB_cursor *cur;
	MDB_val k, v;
	char id[128];
	int rc;

	if ((rc = mdb_cursor_open(txn, s->dbi[dbi], &cur)))
		return rc;
	for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0 && *room > 0; rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
		if (k.mv_size == 0 || k.mv_size >= sizeof(id))
			continue;
		memcpy(id, k.mv_data, k.mv_size);
		id[k.mv_size] = '\0';
		if (strlen(id) != k.mv_size)
			continue;
		if ((rc = prefetch_group(s, txn, cfg, scope, id, room)))
			break;
	}
	mdb_cursor_close(cur);
	return rc == MDB_NOTFOUND ? 0 : rc;
}

/* A policy was installed (or the agent started): a slice of every shared limit the policy names is
 * asked for at once, so a limit's first request on this host finds one. Limits of customers the
 * policy does not name (the default budget) are asked for on their first request. */
static int prefetch(struct lc_store *s, MDB_txn *txn, const struct lc_rec_cfg *cfg)
{
	int room = LEASE_PLAN_MAX, rc;
	MDB_cursor *cur;
	MDB_val k = MV(LC_LEASE_PREFIX, PL), v;

	if ((rc = mdb_cursor_open(txn, s->dbi[LC_DB_COUNTERS], &cur)))
		return rc;
	for (rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
	     rc == 0 && room > 0 && k.mv_size > PL && !memcmp(k.mv_data, LC_LEASE_PREFIX, PL);
	     rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT))
		room--;   /* records already there */
	mdb_cursor_close(cur);
	if (rc && rc != MDB_NOTFOUND)
		return rc;
	if ((rc = prefetch_group(s, txn, cfg, LC_SCOPE_ORG, "org", &room)) ||
	    (rc = prefetch_table(s, txn, cfg, LC_DB_TEAMS, LC_SCOPE_TEAM, &room)) ||
	    (rc = prefetch_table(s, txn, cfg, LC_DB_KEYNAMES, LC_SCOPE_KEY, &room)) ||
	    (rc = prefetch_table(s, txn, cfg, LC_DB_CUSTS, LC_SCOPE_CUSTOMER, &room)))
		return rc;
	return meta_del(s, txn, "lease_prefetch");
}

static int plan_fn(struct lc_store *s, MDB_txn *txn, void *ctx)
{
	struct plan_op *op = ctx;
	char names[LEASE_PLAN_MAX][200];
	struct lc_rec_cfg cfg;
	MDB_cursor *cur;
	MDB_val k = MV(LC_LEASE_PREFIX, PL), v, pk = MV("lease_prefetch", 14);
	int n = 0, rc;
	bool on = lc__lease_mode(s, txn);

	json_array_clear(op->leases);
	if ((rc = lc__get_cfg(s, txn, &cfg)))
		return rc == LC_E_NOPOLICY ? 0 : rc;
	if (on && (op->flags & LC_LEASE_UP)) {
		/* requests refused for want of a slice wait for this thread while it reaches a server;
		 * the mark is refreshed at most every LEASE_TICK_WRITE_MS (a write and a sync each) */
		MDB_val tk = MV("lease_tick", 10), tv = MV(&op->now_ms, sizeof(op->now_ms));
		int64_t last = agent_tick(s, txn);
		if ((last <= 0 || op->now_ms - last >= LEASE_TICK_WRITE_MS || op->now_ms < last) &&
		    (rc = mdb_put(txn, s->dbi[LC_DB_META], &tk, &tv, 0)))
			return rc;
	} else if ((rc = meta_del(s, txn, "lease_tick"))) {   /* nothing written when absent */
		return rc;
	}
	if (on && ((op->flags & LC_LEASE_PREFETCH) || mdb_get(txn, s->dbi[LC_DB_META], &pk, &v) == 0) &&
	    (rc = prefetch(s, txn, &cfg)))
		return rc;
	if ((rc = mdb_cursor_open(txn, s->dbi[LC_DB_COUNTERS], &cur)))
		return rc;
	for (rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
	     rc == 0 && n < LEASE_PLAN_MAX && k.mv_size > PL && !memcmp(k.mv_data, LC_LEASE_PREFIX, PL);
	     rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
		size_t l = k.mv_size - PL < sizeof(names[0]) - 1 ? k.mv_size - PL : sizeof(names[0]) - 1;

		memcpy(names[n], (char *)k.mv_data + PL, l);
		names[n++][l] = '\0';
	}
	mdb_cursor_close(cur);
	if (rc && rc != MDB_NOTFOUND)
		return rc;
	for (int i = 0; i < n; i++)
		if ((rc = on ? plan_one(s, txn, &cfg, names[i], op) : lease_del(s, txn, names[i])))
			return rc;
	return 0;
}

int lc_lease_plan(unsigned flags, json_t **out)
{
	struct lc_store *s;
	struct plan_op op = {json_array(), lc_now_ms(), flags};
	char host[33], epoch[33];
	int rc;

	*out = NULL;
	if (!op.leases)
		return ENOMEM;
	if ((rc = lc_store_open(false, &s)) || (rc = lc__write(s, plan_fn, &op)) ||
	    (json_array_size(op.leases) && (rc = lc_host_identity(host, epoch)))) {
		json_decref(op.leases);
		return rc == LC_E_NOSTATE ? LC_OK : rc;
	}
	if (json_array_size(op.leases) == 0) {
		json_decref(op.leases);
		return LC_OK;
	}
	*out = json_pack("{s:s,s:s,s:o}", "host_id", host, "epoch", epoch, "leases", op.leases);
	return *out ? LC_OK : ENOMEM;
}

struct apply_op {
	const json_t *req, *ans;
	int64_t sent_ms;
};

static bool amount_ok(json_t *v)
{
	return json_is_integer(v) && json_integer_value(v) >= 0 && json_integer_value(v) <= LEASE_AMOUNT_MAX;
}

static int apply_fn(struct lc_store *s, MDB_txn *txn, void *ctx)
{
	struct apply_op *op = ctx;
	json_t *grants = json_object_get(op->ans, "grants"), *sent = json_object_get(op->req, "leases"), *g;
	json_t *ttlj = json_object_get(op->ans, "ttl_seconds");
	int64_t ttl_ms;
	size_t i;
	int rc;

	if (!json_is_integer(ttlj) || json_integer_value(ttlj) < 1 || json_integer_value(ttlj) > 86400)
		return LC_E_INVAL;
	ttl_ms = json_integer_value(ttlj) * 1000;
	json_array_foreach(grants, i, g) {
		const char *name = json_string_value(json_object_get(g, "limit"));
		json_t *q = NULL, *e;
		struct lc_rec_lease lr;
		size_t j;

		if (!name || !amount_ok(json_object_get(g, "allow")) || !amount_ok(json_object_get(g, "bucket")))
			continue;
		json_array_foreach(sent, j, e)
			if (json_is_string(json_object_get(e, "limit")) &&
			    !strcmp(json_string_value(json_object_get(e, "limit")), name))
				q = e;
		if (!q || json_integer_value(json_object_get(q, "bucket")) != json_integer_value(json_object_get(g, "bucket")))
			continue;
		if ((rc = lease_get(s, txn, name, &lr)) == MDB_NOTFOUND)
			continue;   /* given back meanwhile */
		if (rc)
			return rc;
		if (lr.gen != json_integer_value(json_object_get(q, "gen")))
			continue;   /* a newer call went out since: its answer is the one that counts */
		lr.bucket = json_integer_value(json_object_get(q, "bucket"));
		lr.allow = json_integer_value(json_object_get(g, "allow"));
		lr.base = json_integer_value(json_object_get(q, "used"));
		lr.slice = lr.allow > lr.base ? lr.allow - lr.base : 0;
		lr.granted_ms = op->sent_ms;
		lr.expires_ms = op->sent_ms + ttl_ms;   /* the server counts from when it got the call: later */
		lr.ttl_ms = ttl_ms;
		lr.need = 0;
		lr.exhausted = json_is_true(json_object_get(g, "exhausted"));
		if ((rc = lease_put(s, txn, name, &lr)))
			return rc;
	}
	return 0;
}

int lc_lease_apply(const json_t *request, const json_t *answer, int64_t sent_ms)
{
	struct lc_store *s;
	struct apply_op op = {request, answer, sent_ms};
	int rc = lc_store_open(false, &s);

	if (!json_is_array(json_object_get(answer, "grants")))
		return LC_E_INVAL;
	return rc ? rc : lc__write(s, apply_fn, &op);
}

bool lc_lease_pending(void)
{
	struct lc_store *s;
	MDB_txn *txn;
	MDB_cursor *cur;
	MDB_val k = MV(LC_LEASE_PREFIX, PL), v, pk = MV("lease_prefetch", 14);
	bool pending = false;
	int rc;

	if (lc_store_open(false, &s) || lc_store_begin(s, false, &txn))
		return false;
	pending = mdb_get(txn, s->dbi[LC_DB_META], &pk, &v) == 0;
	if (!pending && mdb_cursor_open(txn, s->dbi[LC_DB_COUNTERS], &cur) == 0) {
		for (rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
		     rc == 0 && !pending && k.mv_size > PL && !memcmp(k.mv_data, LC_LEASE_PREFIX, PL);
		     rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
			struct lc_rec_lease lr;
			if (v.mv_size == sizeof(lr)) {
				memcpy(&lr, v.mv_data, sizeof(lr));
				pending = lr.need > 0;
			}
		}
		mdb_cursor_close(cur);
	}
	lc_store_end(s, txn, false);
	return pending;
}
