/* engine_run.c - ephemeral caps on one run of a program (llmcap run --budget/--max-requests).
 *
 * A run is a record in the store (meta "run:ID": the pid and start time of the `llmcap run` that
 * owns it, a budget, a request cap) and a ledger group of scope "run". `llmcap run` exports
 * LLMCAP_RUN_ID=ID to the program; every process of it that is held (the preload, the SDK) counts
 * in the run's group while the run's owner lives, and the run's rules (cost and requests over the
 * run's lifetime) are checked in the same admit transaction as every other rule. The record and
 * the group go when the run ends; a run whose owner is gone (kill -9) is ignored, and lc_prune
 * removes it.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sodium.h>

#include "engine_int.h"
#include "util.h"

#define MV(p, n) ((MDB_val){.mv_size = (n), .mv_data = (void *)(p)})
#define RUN_PREFIX "run:"

struct lc_rec_run {
	int32_t pid;
	uint32_t pad;
	uint64_t pstart;
	int64_t budget;         /* micro-USD, -1 none */
	int64_t max_requests;   /* -1 none */
	int64_t started;
};

static size_t run_key(const char *id, char out[48])
{
	return (size_t)snprintf(out, 48, RUN_PREFIX "%s", id);
}

/* an id as lc_run_begin makes them: 1 to 32 lower-case hex digits */
static bool id_ok(const char *id)
{
	size_t n = id ? strlen(id) : 0;

	if (n == 0 || n > 32)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!((id[i] >= '0' && id[i] <= '9') || (id[i] >= 'a' && id[i] <= 'f')))
			return false;
	return true;
}

const char *lc__run_id(void)
{
	const char *id = getenv("LLMCAP_RUN_ID");

	return id_ok(id) ? id : NULL;
}

static int run_get(struct lc_store *s, MDB_txn *txn, const char *id, struct lc_rec_run *r)
{
	char key[48];
	MDB_val k = MV(key, run_key(id, key)), v;
	int rc = mdb_get(txn, s->dbi[LC_DB_META], &k, &v);

	if (rc)
		return rc;
	if (v.mv_size != sizeof(*r))
		return MDB_NOTFOUND;   /* not a run record of this llmcap */
	memcpy(r, v.mv_data, sizeof(*r));
	return 0;
}

bool lc__run_live(struct lc_store *s, MDB_txn *txn, const char *id)
{
	struct lc_rec_run r;

	return run_get(s, txn, id, &r) == 0 && lc__proc_alive(r.pid, r.pstart);
}

int lc__run_rules(struct lc_store *s, MDB_txn *txn, const char *id, struct lc_rule *out, int max, int *n)
{
	struct lc_rec_run r;
	struct lc_limit l = {.window = LC_WIN_LIFETIME, .enabled = true};
	int rc = run_get(s, txn, id, &r);

	*n = 0;
	if (rc)
		return rc == MDB_NOTFOUND ? 0 : rc;
	for (int i = 0; i < LC_MAX_ALERT_LEVELS; i++)
		l.alert_at[i] = -1;
	if (r.budget >= 0 && *n < max) {
		l.metric = LC_METRIC_COST;
		l.threshold = r.budget;
		lc_rule_limit(&out[(*n)++], LC_SCOPE_RUN, id, &l);
	}
	if (r.max_requests >= 0 && *n < max) {
		l.metric = LC_METRIC_REQUESTS;
		l.threshold = r.max_requests;
		lc_rule_limit(&out[(*n)++], LC_SCOPE_RUN, id, &l);
	}
	return 0;
}

int lc__run_each(struct lc_store *s, MDB_txn *txn, bool live_only, int (*fn)(void *ctx, const char *id, bool live),
		 void *ctx)
{
	MDB_cursor *cur;
	MDB_val k = MV(RUN_PREFIX, strlen(RUN_PREFIX)), v;
	size_t pl = strlen(RUN_PREFIX);
	int rc = mdb_cursor_open(txn, s->dbi[LC_DB_META], &cur);

	if (rc)
		return rc;
	for (rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE); rc == 0 && k.mv_size > pl && k.mv_size < pl + 33 &&
	     !memcmp(k.mv_data, RUN_PREFIX, pl); rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
		struct lc_rec_run r;
		char id[33];
		bool live;

		memcpy(id, (char *)k.mv_data + pl, k.mv_size - pl);
		id[k.mv_size - pl] = '\0';
		if (v.mv_size != sizeof(r))
			continue;
		memcpy(&r, v.mv_data, sizeof(r));
		live = lc__proc_alive(r.pid, r.pstart);
		if ((live || !live_only) && (rc = fn(ctx, id, live)))
			break;
	}
	mdb_cursor_close(cur);
	return rc == MDB_NOTFOUND ? 0 : rc;
}

/* ---- begin and end (the `llmcap run` that owns the run) ---- */

struct run_op {
	const char *id;
	struct lc_rec_run rec;
};

static int begin_fn(struct lc_store *s, MDB_txn *txn, void *ctx)
{
	struct run_op *op = ctx;
	struct lc_rec_cfg cfg;
	char key[48];
	MDB_val k = MV(key, run_key(op->id, key)), v = MV(&op->rec, sizeof(op->rec));
	int rc = lc__get_cfg(s, txn, &cfg);

	if (rc)
		return rc;
	return mdb_put(txn, s->dbi[LC_DB_META], &k, &v, 0);
}

/* the record and the run's ledger group */
static int forget(struct lc_store *s, MDB_txn *txn, const char *id)
{
	char key[48];
	MDB_val k = MV(key, run_key(id, key));
	struct lc_lkey lk;
	int rc = mdb_del(txn, s->dbi[LC_DB_META], &k, NULL);

	if (rc && rc != MDB_NOTFOUND)
		return rc;
	lc__lkey(&lk, LC_SCOPE_RUN, id);
	k = MV(lk.b, lk.len);
	rc = mdb_del(txn, s->dbi[LC_DB_COUNTERS], &k, NULL);
	return rc == MDB_NOTFOUND ? 0 : rc;
}

static int end_fn(struct lc_store *s, MDB_txn *txn, void *ctx)
{
	return forget(s, txn, ((struct run_op *)ctx)->id);
}

int lc_run_begin(int64_t budget, int64_t max_requests, char id[33])
{
	struct lc_store *s;
	unsigned char r[8];
	struct run_op op = {.id = id};
	int rc = lc_store_open(false, &s);

	if (rc)
		return rc == LC_E_NOSTATE ? LC_E_NOPOLICY : rc;
	if (sodium_init() < 0)
		return LC_E_STORE;
	randombytes_buf(r, sizeof(r));
	lc_hex(r, sizeof(r), id);
	op.rec.pid = (int32_t)getpid();
	op.rec.pstart = lc__proc_start(getpid());
	op.rec.budget = budget;
	op.rec.max_requests = max_requests;
	op.rec.started = lc_now();
	if (op.rec.pstart == 0)
		return LC_E_STORE;   /* no /proc: a run could not be told from a dead one */
	return lc__write(s, begin_fn, &op);
}

int lc_run_end(const char *id)
{
	struct lc_store *s;
	struct run_op op = {.id = id};
	int rc;

	if (!id_ok(id))
		return LC_E_INVAL;
	if ((rc = lc_store_open(false, &s)))
		return rc;
	return lc__write(s, end_fn, &op);
}

/* runs whose owner is gone (collected first: deleting under the cursor's feet is not done) */
struct stale_ctx {
	char ids[64][33];
	int n;
};

static int stale_run(void *ctx, const char *id, bool live)
{
	struct stale_ctx *c = ctx;

	if (!live && c->n < 64)
		snprintf(c->ids[c->n++], sizeof(c->ids[0]), "%s", id);
	return 0;
}

int lc__run_prune(struct lc_store *s, MDB_txn *txn, unsigned *n)
{
	struct stale_ctx c = {.n = 0};
	unsigned char pre[2] = {LC_LEDGER_PREFIX, LC_SCOPE_RUN};
	MDB_cursor *cur;
	MDB_val k = MV(pre, 2), v;
	int rc = lc__run_each(s, txn, false, stale_run, &c);

	for (int i = 0; rc == 0 && i < c.n; i++, (*n)++)
		rc = forget(s, txn, c.ids[i]);
	if (rc || (rc = mdb_cursor_open(txn, s->dbi[LC_DB_COUNTERS], &cur)))
		return rc;
	for (rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE); rc == 0 && k.mv_size >= 2 && !memcmp(k.mv_data, pre, 2);
	     rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
		struct lc_rec_run r;
		char id[128];

		lc__lkey_id(k.mv_data, k.mv_size, id);
		if (id_ok(id) && run_get(s, txn, id, &r) == 0)
			continue;
		if ((rc = mdb_cursor_del(cur, 0)))
			break;
		(*n)++;
	}
	mdb_cursor_close(cur);
	return rc == MDB_NOTFOUND ? 0 : rc;
}
