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
#include "rules.h"
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

uint64_t lc__proc_start(int pid)
{
	return proc_start(pid);
}

bool lc__proc_alive(int32_t pid, uint64_t start)
{
	return proc_alive(pid, start);
}

/* ---- small helpers ---------------------------------------------------------- */

/* ---- small helpers ---------------------------------------------------------- */

static void tkey_make(unsigned char tk[9], uint64_t id)
{
	tk[0] = LC_TICKET_PREFIX;
	lc_be64(tk + 1, id);
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
	lc_be64(seqk, (uint64_t)seq);
	k = MV(seqk, 8);
	v = MV(txt, strlen(txt));
	rc = mdb_put(txn, s->dbi[LC_DB_OUTBOX], &k, &v, 0);
	free(txt);
	lc_log(LC_LOG_INFO, "event %s queued (seq %" PRId64 ")", event, seq);
	return rc;
}


static int provider_get(struct lc_store *s, MDB_txn *txn, const char *host, int port, struct lc_rec_provider *p)
{
	char hk[300];
	MDB_val k, v;
	int rc = MDB_NOTFOUND;

	if (port > 0) {
		snprintf(hk, sizeof(hk), "%s:%d", host, port);
		k = MV(hk, lc_host_norm(hk));
		rc = mdb_get(txn, s->dbi[LC_DB_PROVIDERS], &k, &v);
	}
	if (rc == MDB_NOTFOUND) {
		snprintf(hk, sizeof(hk), "%s", host);
		k = MV(hk, lc_host_norm(hk));
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
		int64_t S = lc_floordiv(now_ms, 1000), sum = 0, first = INT64_MAX;

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

/* admissions of a customer in the last 60 seconds (status) */
int lc__rpm_used(struct lc_store *s, MDB_txn *txn, const char *cust, int64_t now_ms, int64_t *used)
{
	MDB_val k = MV(cust, strlen(cust)), v;
	struct rpm_buckets b;
	int rc = mdb_get(txn, s->dbi[LC_DB_RPM], &k, &v);

	*used = 0;
	if (rc)
		return rc == MDB_NOTFOUND ? 0 : rc;
	if (v.mv_size == sizeof(b) && (memcpy(&b, v.mv_data, sizeof(b)), b.magic == LC_RPM_MAGIC)) {
		int64_t S = lc_floordiv(now_ms, 1000);

		for (int i = 0; i < 61; i++)
			if (b.sec[i] >= S - 60 && b.sec[i] <= S && b.cnt[i] > 0)
				*used += b.cnt[i];
		return 0;
	}
	for (size_t i = 0; v.mv_size % 8 == 0 && i < v.mv_size / 8; i++) {
		int64_t t;

		memcpy(&t, (char *)v.mv_data + i * 8, 8);
		if (now_ms - t < 60000)
			(*used)++;
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


/* ---- one decision ------------------------------------------------------------
 * admit: identify (provider, key, groups), estimate (worst case), collect the rules that watch the
 * request's groups, check each (one loop: limits, budgets, the org cap and the customer's rpm),
 * reserve. settle: the ticket's groups take the actual usage in every window (the ledger), the
 * reservation goes, and rules whose levels the settled usage reached fire their events. */

#define MAX_RULES (2 * LC_MAX_LIMITS + 4)

struct group {
	struct lc_lkey k;
	struct lc_rec_ledger rec;
};

struct decision {
	struct lc_rec_cfg cfg;
	int64_t now_ms, now, starts[LC_WIN_COUNT];
	const struct lc_reqinfo *info;
	struct lc_rec_key key;
	bool have_key;
	struct lc_price price;
	int64_t est[3], est_in, est_out;
	struct group g[LC_SCOPE_COUNT];
	uint32_t present;            /* groups the request counts in: 1 << scope */
	uint32_t watched;            /* groups some rule watches: loaded at admit, reserved on */
	struct lc_rule rules[MAX_RULES];
	int nr;
	bool lease_asking;           /* refused for a slice the agent is asking for now */
};

enum { GO_ON = 0, DECIDED = 1 };

static void set_deny(struct lc_decision *d, int status, const char *msg)
{
	d->verdict = LC_DENY;
	d->status = status;
	snprintf(d->message, sizeof(d->message), "%s", msg);
	d->limit[0] = '\0';
	d->retry_after = 0;
	d->should_retry = false;
}

static void group_set(struct decision *x, int scope, const char *id)
{
	lc__lkey(&x->g[scope].k, scope, id);
	x->present |= 1u << scope;
}

/* the id an unknown key is counted under: a fingerprint prefix, never the key */
static void unknown_key_id(const unsigned char *fp, char out[32])
{
	char hex[65];

	if (!fp) {
		snprintf(out, 32, "-");
		return;
	}
	lc_hex(fp, 32, hex);
	snprintf(out, 32, "sha256:%.12s", hex);
}

/* 1. who: the provider, the key and its state, the request's groups */
static int identify(struct lc_store *s, MDB_txn *txn, struct decision *x, const struct lc_admit_req *r,
		    const unsigned char *keyfp, struct lc_decision *d, struct parse_basis *basis)
{
	struct lc_rec_provider prov;
	const struct lc_reqinfo *info = r->info;
	char ts[32], dk[200], kid[32];
	int rc = get_cfg(s, txn, &x->cfg);

	if (rc == LC_E_NOPOLICY) {
		d->verdict = LC_PASS;
		return DECIDED;
	}
	if (rc)
		return rc;
	rc = provider_get(s, txn, r->host, r->port, &prov);
	if (rc == MDB_NOTFOUND) {
		d->verdict = LC_PASS;
		return DECIDED;
	}
	if (rc)
		return rc;
	d->format = (enum lc_format)prov.format;
	if (basis && !basis_same(basis, &x->cfg, prov.format)) {
		basis_set(basis, &x->cfg, prov.format);   /* parse again on this basis */
		return LC__E_REPARSE;
	}
	if (keyfp) {
		MDB_val k = MV(keyfp, 32), v;

		rc = mdb_get(txn, s->dbi[LC_DB_KEYS], &k, &v);
		if (rc && rc != MDB_NOTFOUND)
			return rc;
		if (rc == 0 && v.mv_size != sizeof(x->key))
			return MDB_CORRUPTED;
		if (rc == 0)
			memcpy(&x->key, v.mv_data, sizeof(x->key));
		x->have_key = rc == 0;
	}
	if (!x->have_key && x->cfg.unknown_keys_block) {
		set_deny(d, 401, "llmcap: this API key is not in the policy (unknown_keys: block)");
		return DECIDED;
	}
	if (x->have_key && x->key.revoked) {
		set_deny(d, 401, "");
		snprintf(d->message, sizeof(d->message), "llmcap: API key '%s' has been revoked", x->key.name);
		return DECIDED;
	}
	if (x->have_key && x->key.expires_at >= 0 && x->now >= x->key.expires_at) {
		lc_time_format(x->key.expires_at, ts);
		set_deny(d, 401, "");
		snprintf(d->message, sizeof(d->message), "llmcap: API key '%s' expired at %s", x->key.name, ts);
		snprintf(dk, sizeof(dk), "key_expired|%s", x->key.name);
		rc = queue_event(s, txn, lc_event_name(LC_EV_KEY_EXPIRED),
				 json_pack("{s:s,s:s}", "key", x->key.name, "expired_at", ts), dk);
		return rc ? rc : DECIDED;
	}
	if (info->api == LC_API_UNKNOWN) {
		/* a provider call we do not price (GET /v1/models, files, ...): not counted */
		d->verdict = LC_ALLOW;
		d->ticket = 0;
		return DECIDED;
	}
	if (!x->have_key)
		unknown_key_id(keyfp, kid);
	group_set(x, LC_SCOPE_KEY, x->have_key ? x->key.name : kid);
	if (x->have_key && x->key.team[0])
		group_set(x, LC_SCOPE_TEAM, x->key.team);
	group_set(x, LC_SCOPE_ORG, "org");
	if (info->customer[0])
		group_set(x, LC_SCOPE_CUSTOMER, info->customer);
	group_set(x, LC_SCOPE_MODEL, info->model[0] ? info->model : "-");
	group_set(x, LC_SCOPE_PROVIDER, prov.name);
	if (lc__run_id() && lc__run_live(s, txn, lc__run_id()))
		group_set(x, LC_SCOPE_RUN, lc__run_id());   /* under llmcap run --budget: the run's caps too */
	return GO_ON;
}

/* 2. what: the model's price and the worst case (input upper bound + output cap) */
static int estimate(struct lc_store *s, MDB_txn *txn, struct decision *x, struct lc_decision *d)
{
	const struct lc_reqinfo *info = x->info;
	struct lc_reqinfo bounded;
	bool have_price = false;
	const char *tool;

	have_price = lc_price_find(txn, s->dbi[LC_DB_PRICES], info->model, &x->price) == 0;
	if (!have_price)
		lc_price_none(&x->price);
	if (!have_price && x->cfg.unknown_models_block) {
		set_deny(d, 400, "");
		snprintf(d->message, sizeof(d->message),
			 "llmcap: model '%s' has no price in the policy (unknown_models: block)", info->model);
		return DECIDED;
	}
	/* a tool the model's price has no fee for: unpriced like an unknown model (README "Prices") */
	if (have_price && (tool = lc_price_unpriced_tool(&x->price, info))) {
		if (x->cfg.unknown_models_block) {
			set_deny(d, 400, "");
			snprintf(d->message, sizeof(d->message),
				 "llmcap: model '%s' has no price for the %s tool in the policy (unknown_models: block)",
				 info->model, tool);
			return DECIDED;
		}
		lc_log(LC_LOG_ERROR, "warning: model '%s' has no price for the %s tool (unknown_models: allow): %s",
		       info->model, tool, !strncmp(tool, "web_search", 10) ? "its calls are charged at the dearest fee in "
		       "the price table" : "its fees are not counted, only the tokens the usage reports");
	}
	/* a web search request with no bound of its own: the policy's bound, or refused */
	if (have_price && (info->web & (LC_WEB_SEARCH | LC_WEB_PREVIEW)) && info->web_max_calls < 0) {
		if (x->cfg.web_unbounded_block) {
			set_deny(d, 400, "");
			snprintf(d->message, sizeof(d->message),
				 "llmcap: this request enables web search with no bound on its searches: set %s "
				 "(web_search_unbounded: block)",
				 info->api == LC_API_MESSAGES ? "max_uses on its web search tool" : "max_tool_calls");
			return DECIDED;
		}
		bounded = *info;
		bounded.web_max_calls = x->cfg.web_max_uses;
		info = &bounded;
	}
	x->est_in = info->input_estimate > 0 ? info->input_estimate : 0;
	if (info->api == LC_API_EMBEDDINGS)
		x->est_out = 0;
	else if (info->output_cap >= 0)
		x->est_out = info->output_cap;
	else if (x->price.max_out >= 0)
		x->est_out = x->price.max_out;
	else
		x->est_out = x->cfg.default_max_output;
	x->est[LC_METRIC_REQUESTS] = 1;
	x->est[LC_METRIC_TOKENS] = lc_sat_add(x->est_in, x->est_out);
	/* the one place admit prices a request (price.c); settle's is lc_cost_settle */
	x->est[LC_METRIC_COST] = lc_cost_estimate(&x->price, info, x->est_in, x->est_out);
	return GO_ON;
}

static char *group_id(const struct group *g, char out[128])
{
	lc__lkey_id(g->k.b, g->k.len, out);
	return out;
}

/* 3. which rules watch the request's groups; their ledger records */
static int collect_rules(struct lc_store *s, MDB_txn *txn, struct decision *x)
{
	static const int watched_scopes[] = {LC_SCOPE_KEY, LC_SCOPE_TEAM, LC_SCOPE_ORG, LC_SCOPE_CUSTOMER, LC_SCOPE_RUN};
	char id[128];
	int rc, n;

	for (size_t i = 0; i < sizeof(watched_scopes) / sizeof(watched_scopes[0]); i++) {
		int sc = watched_scopes[i], first = x->nr;

		if (!(x->present & (1u << sc)))
			continue;
		if (sc == LC_SCOPE_KEY) {
			n = 0;
			for (int j = 0; x->have_key && j < x->key.lim.n && j < LC_MAX_LIMITS; j++)
				lc_rule_limit(&x->rules[x->nr + n++], sc, x->key.name, &x->key.lim.l[j]);
		} else if ((rc = lc__group_rules(s, txn, &x->cfg, sc, group_id(&x->g[sc], id), x->rules + x->nr,
						 MAX_RULES - x->nr, &n))) {
			return rc;
		}
		x->nr += n;
		for (int j = first; j < x->nr; j++)
			if (x->rules[j].lim.enabled && x->rules[j].kind != LC_RULE_CUST_RPM)
				x->watched |= 1u << sc;
		if ((x->watched & (1u << sc)) &&
		    (rc = lc__ledger_get(s, txn, &x->g[sc].k, x->starts, &x->g[sc].rec)))
			return rc;
	}
	return 0;
}

/* used + reserved of a rule's group, in the rule's window */
static int64_t committed(const struct decision *x, const struct lc_rule *r)
{
	const struct lc_rec_ledger *rec = &x->g[r->scope].rec;

	return lc_sat_add(lc__ledger_used(rec, r->lim.metric, r->lim.window), rec->reserved[r->lim.metric]);
}

static void deny_limit(struct decision *x, const struct lc_rule *r, int64_t used, int64_t wait_ms,
		       struct lc_decision *d)
{
	int64_t end = lc_window_end(r->lim.window, x->now);

	set_deny(d, 429, "");
	lc_rule_name(r, d->limit, sizeof(d->limit));
	if (r->kind == LC_RULE_CUST_RPM) {
		d->retry_after = (wait_ms + 999) / 1000;
		snprintf(d->message, sizeof(d->message),
			 "llmcap: rate limit of %" PRId64 " requests per minute for customer '%s' reached; retry in %" PRId64 "s",
			 r->lim.threshold, r->id, d->retry_after);
	} else {
		lc_rule_refusal(r, used, x->est[r->lim.metric], x->now, d->message, sizeof(d->message));
		d->retry_after = end == INT64_MAX ? 86400 * 365 : end - x->now;
	}
	if (d->retry_after < 1)
		d->retry_after = 1;
	d->should_retry = d->retry_after <= 60;
}

static int reclaim_txn(struct lc_store *s, MDB_txn *txn, unsigned *count, int64_t now);

/* 4. check every rule; one reclaim pass when reservations stand in the way */
static int check(struct lc_store *s, MDB_txn *txn, struct decision *x, struct lc_decision *d)
{
	for (int pass = 0; pass < 2; pass++) {
		const struct lc_rule *hit = NULL;
		int64_t used = 0, wait_ms = 0;
		int rc;

		for (int i = 0; i < x->nr && !hit; i++) {
			const struct lc_rule *r = &x->rules[i];

			if (!r->lim.enabled)
				continue;
			if (r->kind == LC_RULE_CUST_RPM) {
				int rerr = 0;

				rc = rpm_check(s, txn, r->id, r->lim.threshold, x->now_ms, &wait_ms, false, &rerr);
				if (rc < 0)
					return rerr;
				if (rc == 1)
					hit = r;
			} else if (lc_rule_blocks(r, committed(x, r), x->est[r->lim.metric])) {
				hit = r;
				used = committed(x, r);
			}
		}
		if (!hit)
			return GO_ON;
		if (pass == 0 && hit->kind != LC_RULE_CUST_RPM && x->g[hit->scope].rec.reserved[hit->lim.metric] > 0) {
			unsigned n = 0;

			if ((rc = reclaim_txn(s, txn, &n, x->now)))
				return rc;
			if (n) {
				for (int sc = 0; sc < LC_SCOPE_COUNT; sc++)
					if ((x->watched & (1u << sc)) &&
					    (rc = lc__ledger_get(s, txn, &x->g[sc].k, x->starts, &x->g[sc].rec)))
						return rc;
				continue;
			}
		}
		deny_limit(x, hit, used, wait_ms, d);
		if (hit->kind != LC_RULE_CUST_RPM &&
		    (rc = lc__rule_event(s, txn, lc_rule_deny_event(hit), hit, "threshold", used, x->now)))
			return rc;
		return DECIDED;
	}
	return GO_ON;
}

/* 4b. a shared limit under a server's policy with "leases": within this host's slice (engine_lease.c) */
static int check_leases(struct lc_store *s, MDB_txn *txn, struct decision *x, struct lc_decision *d)
{
	bool any = false;

	for (int i = 0; i < x->nr && !any; i++)
		any = lc_rule_leased(&x->rules[i]);
	if (!any || !lc__lease_mode(s, txn))
		return GO_ON;
	for (int i = 0; i < x->nr; i++) {
		const struct lc_rule *r = &x->rules[i];
		int rc;

		if (!lc_rule_leased(r))
			continue;
		rc = lc__lease_check(s, txn, r, &x->g[r->scope].rec, x->est[r->lim.metric], x->now_ms, d);
		x->lease_asking = rc == 2;
		if (rc == 1 || rc == 2)
			return DECIDED;
		if (rc)
			return rc;
	}
	return GO_ON;
}

/* warn rules this request takes past their threshold: it goes through, they tell once per window */
static int warn_rules(struct lc_store *s, MDB_txn *txn, struct decision *x)
{
	for (int i = 0; i < x->nr; i++) {
		const struct lc_rule *r = &x->rules[i];
		int rc;

		if (!r->lim.enabled || r->kind == LC_RULE_CUST_RPM)
			continue;
		if (lc_rule_warns(r, committed(x, r), x->est[r->lim.metric]) &&
		    (rc = lc__rule_event(s, txn, LC_EV_LIMIT_ALERT, r, "threshold", committed(x, r), x->now)))
			return rc;
	}
	return 0;
}

/* 5. reserve the worst case on every watched group, note the rpm admission, write the ticket */
static int reserve(struct lc_store *s, MDB_txn *txn, struct decision *x, struct lc_decision *d)
{
	unsigned char tbuf[sizeof(struct lc_rec_ticket_hdr) + LC_SCOPE_COUNT * (LC_LKEY_MAX + 1)];
	struct lc_rec_ticket_hdr h = {0};
	unsigned char tk[9];
	size_t off = sizeof(h);
	uint64_t tid;
	MDB_val k, v;
	int rc;

	for (int sc = 0; sc < LC_SCOPE_COUNT; sc++) {
		struct group *g = &x->g[sc];

		if (!(x->present & (1u << sc)))
			continue;
		if (x->watched & (1u << sc)) {
			for (int m = 0; m < 3; m++)
				g->rec.reserved[m] = lc_sat_add(g->rec.reserved[m], x->est[m]);
			if ((rc = lc__ledger_put(s, txn, &g->k, &g->rec)))
				return rc;
		}
		tbuf[off++] = g->k.len;
		memcpy(tbuf + off, g->k.b, g->k.len);
		off += g->k.len;
		h.ng++;
	}
	for (int i = 0; i < x->nr; i++) {
		const struct lc_rule *r = &x->rules[i];
		int64_t wait_ms;
		int rerr = 0;

		if (r->kind == LC_RULE_CUST_RPM && r->lim.enabled && r->lim.threshold > 0) {
			rc = rpm_check(s, txn, r->id, r->lim.threshold, x->now_ms, &wait_ms, true, &rerr);
			if (rc)
				return rc < 0 ? rerr : MDB_BAD_TXN;  /* limited on commit cannot happen: checked */
		}
	}
	h.magic = LC_TICKET_MAGIC;
	self_identity(&h.pid, &h.pstart);
	h.created_ms = x->now_ms;
	memcpy(h.est, x->est, sizeof(h.est));
	h.est_in = x->est_in;
	h.est_out = x->est_out;
	h.price = x->price;
	h.reserved_mask = x->watched;
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
		return rc;
	d->verdict = LC_ALLOW;
	d->ticket = tid;
	return 0;
}

/* an expired policy keeps being enforced; say so once */
static int expired_policy_event(struct lc_store *s, MDB_txn *txn, struct decision *x)
{
	int64_t ver = 0;
	char dk[64];

	if (x->now < x->cfg.expires_at)
		return 0;
	meta_get_i64(s, txn, "version", &ver);
	snprintf(dk, sizeof(dk), "policy_expired|%" PRId64, ver);
	return queue_event(s, txn, lc_event_name(LC_EV_POLICY_EXPIRED), json_pack("{s:I}", "version", (json_int_t)ver),
			   dk);
}

static int admit_txn(struct lc_store *s, MDB_txn *txn, const struct lc_admit_req *r, const unsigned char *keyfp,
		     struct lc_decision *d, struct parse_basis *basis, bool *lease_asking)
{
	struct decision *x = malloc(sizeof(*x));  /* large; only the counts need zeroing */
	int rc;

	if (!x)
		return ENOMEM;
	x->now_ms = lc_now_ms();
	x->now = lc_floordiv(x->now_ms, 1000);
	lc__window_starts(x->now, x->starts);
	x->info = r->info;
	x->have_key = false;
	x->present = x->watched = 0;
	x->nr = 0;
	x->lease_asking = false;
	if ((rc = identify(s, txn, x, r, keyfp, d, basis)) == GO_ON && (rc = estimate(s, txn, x, d)) == GO_ON &&
	    (rc = collect_rules(s, txn, x)) == GO_ON && (rc = check(s, txn, x, d)) == GO_ON &&
	    (rc = check_leases(s, txn, x, d)) == GO_ON &&
	    (rc = warn_rules(s, txn, x)) == GO_ON && (rc = reserve(s, txn, x, d)) == GO_ON)
		rc = expired_policy_event(s, txn, x);
	*lease_asking = rc == DECIDED && x->lease_asking;
	free(x);
	return rc == DECIDED ? 0 : rc;
}

/* ---- settle ------------------------------------------------------------------- */

/* rules of a group whose levels the settled usage reached: their events, once per window */
static int alerts_after_settle(struct lc_store *s, MDB_txn *txn, const struct lc_rec_cfg *cfg,
			       const struct lc_lkey *k, const struct lc_rec_ledger *before,
			       const struct lc_rec_ledger *after, int64_t now)
{
	struct lc_rule rules[MAX_RULES];
	char id[128];
	int n = 0, rc;

	lc__lkey_id(k->b, k->len, id);
	if ((rc = lc__group_rules(s, txn, cfg, k->b[1], id, rules, MAX_RULES, &n)))
		return rc;
	for (int i = 0; i < n; i++) {
		const struct lc_rule *r = &rules[i];
		struct lc_crossing cr[LC_MAX_CROSSINGS];
		int64_t was = lc__ledger_used(before, r->lim.metric, r->lim.window);
		int64_t used = lc__ledger_used(after, r->lim.metric, r->lim.window);
		int nc = lc_rule_reached(r, was, used, false, now, cr);

		for (int j = 0; j < nc; j++)
			if ((rc = lc__crossing_event(s, txn, r, &cr[j], used, now)))
				return rc;
	}
	return 0;
}

/* what a settled request used, per ledger metric */
static void actual_usage(const struct lc_rec_ticket_hdr *h, const struct lc_usage *u, int http_status,
			 int64_t a[LC_LM_COUNT])
{
	memset(a, 0, sizeof(int64_t) * LC_LM_COUNT);
	a[LC_LM_REQUESTS] = 1;
	if (u && u->present) {
		a[LC_LM_INPUT] = u->input > 0 ? u->input : 0;
		a[LC_LM_CACHED] = u->cached_input > 0 ? u->cached_input : 0;
		a[LC_LM_OUTPUT] = u->output > 0 ? u->output : 0;
		a[LC_LM_COST] = lc_cost_settle(&h->price, u);
	} else if (http_status < 400) {
		/* no usage came back: charge the estimate (providers do not bill failed requests) */
		a[LC_LM_INPUT] = h->est_in;
		a[LC_LM_OUTPUT] = h->est_out;
		a[LC_LM_COST] = h->est[LC_METRIC_COST];
	}
}

static int ticket_settle(struct lc_store *s, MDB_txn *txn, uint64_t id, const struct lc_usage *u, int http_status,
			 int64_t now)
{
	unsigned char tk[9], copy[sizeof(struct lc_rec_ticket_hdr) + LC_SCOPE_COUNT * (LC_LKEY_MAX + 1)];
	struct lc_rec_ticket_hdr h;
	struct lc_rec_cfg cfg;
	int64_t actual[LC_LM_COUNT], starts[LC_WIN_COUNT];
	const unsigned char *p, *end;
	bool have_cfg = false;
	MDB_val k, v;
	int rc;

	tkey_make(tk, id);
	k = MV(tk, 9);
	rc = mdb_get(txn, s->dbi[LC_DB_COUNTERS], &k, &v);
	if (rc == MDB_NOTFOUND)
		return LC_E_NOTFOUND;
	if (rc)
		return rc;
	if (v.mv_size < sizeof(h) || v.mv_size > sizeof(copy) ||
	    (memcpy(&h, v.mv_data, sizeof(h)), h.magic != LC_TICKET_MAGIC)) {
		/* a ticket of an older llmcap: its counters are gone with its format */
		rc = mdb_del(txn, s->dbi[LC_DB_COUNTERS], &k, NULL);
		return rc ? rc : LC_E_NOTFOUND;
	}
	memcpy(copy, v.mv_data, v.mv_size);
	actual_usage(&h, u, http_status, actual);
	lc__window_starts(now, starts);
	p = copy + sizeof(h);
	end = copy + v.mv_size;
	for (uint32_t i = 0; i < h.ng && p < end; i++) {
		struct lc_lkey gk;
		struct lc_rec_ledger rec, before;
		bool watched;

		gk.len = *p++;
		if (gk.len < 2 || gk.len > LC_LKEY_MAX || p + gk.len > end)
			return MDB_CORRUPTED;
		memcpy(gk.b, p, gk.len);
		p += gk.len;
		watched = gk.b[1] < LC_SCOPE_COUNT && (h.reserved_mask & (1u << gk.b[1]));
		if ((rc = lc__ledger_get(s, txn, &gk, starts, &rec)))
			return rc;
		before = rec;
		if (watched)
			for (int m = 0; m < 3; m++)
				rec.reserved[m] = rec.reserved[m] > h.est[m] ? rec.reserved[m] - h.est[m] : 0;
		for (int w = 0; w < LC_WIN_COUNT; w++)
			for (int m = 0; m < LC_LM_COUNT; m++)
				rec.w[w].v[m] = lc_sat_add(rec.w[w].v[m], actual[m]);
		if ((rc = lc__ledger_put(s, txn, &gk, &rec)))
			return rc;
		if (!watched)
			continue;
		if (!have_cfg && (rc = get_cfg(s, txn, &cfg)))
			return rc == LC_E_NOPOLICY ? mdb_del(txn, s->dbi[LC_DB_COUNTERS], &k, NULL) : rc;
		have_cfg = true;
		if ((rc = alerts_after_settle(s, txn, &cfg, &gk, &before, &rec, now)))
			return rc;
	}
	return mdb_del(txn, s->dbi[LC_DB_COUNTERS], &k, NULL);
}

/* Charge at their estimate the tickets of processes that are gone. */
static int reclaim_txn(struct lc_store *s, MDB_txn *txn, unsigned *count, int64_t now)
{
	MDB_cursor *cur;
	MDB_val k, v;
	uint64_t dead[256];
	unsigned nd = 0;
	unsigned char first = LC_TICKET_PREFIX;
	int rc = mdb_cursor_open(txn, s->dbi[LC_DB_COUNTERS], &cur);

	if (rc)
		return rc;
	k = MV(&first, 1);
	rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
	while (rc == 0 && nd < 256 && k.mv_size == 9 && ((unsigned char *)k.mv_data)[0] == LC_TICKET_PREFIX) {
		struct lc_rec_ticket_hdr h;

		if (v.mv_size >= sizeof(h)) {
			memcpy(&h, v.mv_data, sizeof(h));
			if (h.magic != LC_TICKET_MAGIC || !proc_alive(h.pid, h.pstart))
				dead[nd++] = lc_rbe64((unsigned char *)k.mv_data + 1);
		}
		rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
	}
	mdb_cursor_close(cur);
	if (rc && rc != MDB_NOTFOUND)
		return rc;
	for (unsigned i = 0; i < nd; i++) {
		rc = ticket_settle(s, txn, dead[i], NULL, 0, now);
		if (rc && rc != LC_E_NOTFOUND)
			return rc;
	}
	if (count)
		*count += nd;
	if (nd)
		lc_log(LC_LOG_INFO, "reclaimed %u reservation(s) of dead processes", nd);
	return 0;
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
	if (lc_store_poisoned())
		rc = LC_E_STORE;  /* whatever LMDB said about our zero page: one message, naming the cause */
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

/* Out of memory deciding: no verdict on the request, and nothing wrong with the store. Held with a
 * 503 worth retrying; callers that can say so (the SDK) report ENOMEM instead. */
static int nomem_decision(struct lc_decision *d, enum lc_format fmt)
{
	memset(d, 0, sizeof(*d));
	d->format = fmt;
	set_deny(d, 503, "llmcap: out of memory deciding on this request");
	d->retry_after = 1;
	d->should_retry = true;
	return ENOMEM;
}

static int admit_common(const struct lc_admit_req *r, struct lc_decision *d, struct parse_basis *basis);

int lc_admit(const struct lc_admit_req *r, struct lc_decision *d)
{
	return admit_common(r, d, NULL);
}

struct admit_op {
	const struct lc_admit_req *r;
	const unsigned char *fp;
	struct lc_decision *d;
	struct parse_basis *basis;
	bool may_wait;       /* a refusal for a slice the agent is asking for may wait for it */
	bool wait;           /* ... and this one does: decided again after the wait */
};

static int admit_fn(struct lc_store *s, MDB_txn *txn, void *ctx)
{
	struct admit_op *op = ctx;
	bool asking = false;
	int rc;

	memset(op->d, 0, sizeof(*op->d));
	/* a denial commits too: its events (and reclaimed tickets) must persist */
	rc = admit_txn(s, txn, op->r, op->fp, op->d, op->basis, &asking);
	op->wait = rc == 0 && asking && op->may_wait;
	/* a decision counts once: a request that waits for its slice is counted when decided again */
	return rc || op->wait ? rc : lc_stats_count(s, txn, op->d);
}

/* Decide; a request refused only because this host's slice of a shared limit is not granted yet
 * (or used up) while the agent is asking for it waits for the answer (bounded, no network here),
 * then is decided again. */
static int admit_decide(struct lc_store *s, struct admit_op *op)
{
	int polls = lc__lease_wait_polls(), rc;

	op->may_wait = true;
	for (;;) {
		rc = lc__write(s, admit_fn, op);
		if (rc || !op->wait)
			return rc;
		rc = lc__lease_wait(s, op->d->limit, &polls);
		if (rc && rc != ETIMEDOUT)
			return rc;
		op->may_wait = rc == 0 && polls > 0;
	}
}

static int admit_common(const struct lc_admit_req *r, struct lc_decision *d, struct parse_basis *basis)
{
	struct lc_store *s;
	unsigned char fp[32];
	struct admit_op op = {r, NULL, d, basis, false, false};
	int rc;

	memset(d, 0, sizeof(*d));
	if (!r || !r->host || !r->info) {
		d->verdict = LC_PASS;
		return LC_E_INVAL;
	}
	if (r->api_key && r->api_key_len) {
		lc_sha256(r->api_key, r->api_key_len, fp);  /* outside the write lock */
		op.fp = fp;
	}
	rc = lc_store_open(false, &s);
	if (rc) {
		fail_decision(rc, d);
		return rc;
	}
	rc = admit_decide(s, &op);
	if (rc == LC__E_REPARSE) {
		memset(d, 0, sizeof(*d));
		return rc;
	}
	if (rc == ENOMEM)
		return nomem_decision(d, basis ? basis->fmt : LC_FMT_OPENAI);
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

struct settle_op {
	uint64_t ticket;
	const struct lc_usage *u;
	int http_status;
	unsigned reclaimed;
};

static int settle_fn(struct lc_store *s, MDB_txn *txn, void *ctx)
{
	struct settle_op *op = ctx;

	return ticket_settle(s, txn, op->ticket, op->u, op->http_status, lc_floordiv(lc_now_ms(), 1000));
}

int lc_settle(uint64_t ticket, const struct lc_usage *u, int http_status)
{
	struct lc_store *s;
	struct settle_op op = {ticket, u, http_status, 0};
	int rc;

	if (ticket == 0)
		return LC_OK;  /* an allowed request that was not counted */
	rc = lc_store_open(false, &s);
	return rc ? rc : lc__write(s, settle_fn, &op);
}

static int reclaim_fn(struct lc_store *s, MDB_txn *txn, void *ctx)
{
	struct settle_op *op = ctx;

	op->reclaimed = 0;
	return reclaim_txn(s, txn, &op->reclaimed, lc_now());
}

int lc_reclaim(unsigned *reclaimed)
{
	struct lc_store *s;
	struct settle_op op = {0};
	int rc = lc_store_open(false, &s);

	if (reclaimed)
		*reclaimed = 0;
	if (rc)
		return rc;
	rc = lc__write(s, reclaim_fn, &op);
	if (!rc && reclaimed)
		*reclaimed = op.reclaimed;
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
	rc = lc_reqinfo_parse(b->fmt, req->path, req->body.data, req->body.len, ident, hdr_cb, &hc, &info, err,
			      errlen);
	if (rc == ENOMEM)
		return ENOMEM;
	if (rc)
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
		if (rc == ENOMEM)  /* never a 400 for a request nobody could read */
			return nomem_decision(d, b.fmt);
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
int lc__queue_event(struct lc_store *s, MDB_txn *txn, const char *event, json_t *data, const char *dedup)
{
	return queue_event(s, txn, event, data, dedup);
}
int lc__ensure_identity(struct lc_store *s, MDB_txn *txn)
{
	return ensure_identity(s, txn);
}
int lc__get_cfg(struct lc_store *s, MDB_txn *txn, struct lc_rec_cfg *cfg)
{
	return get_cfg(s, txn, cfg);
}

