/* stats.c - the host's decision counters: one small record in the counters tree (beside the
 * ledger records and tickets an admit writes anyway, so counting dirties no other B-tree page),
 * bumped in the same write transaction as the decision it counts (so a crash never counts a
 * decision that did not happen), and the store figures the agent's /metrics reports. */
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "engine_int.h"
#include "stats.h"
#include "util.h"

#define STATS_KEY "S.decisions"        /* counters tree: 'S' sorts after the ledger, before tickets */
#define STATS_KEY_OLD "stats.decisions"  /* meta tree, llmcaps before: carried on by the first count */

struct rec_stats {
	uint64_t allowed;
	uint64_t denied[LC_DENY_REASONS];
};

const char *lc_deny_reason_name(enum lc_deny_reason r)
{
	static const char *const names[LC_DENY_REASONS] = {"key_limit", "team_limit", "org_limit", "customer_limit",
							    "customer_rate", "key_refused", "bad_request", "other"};
	return (unsigned)r < LC_DENY_REASONS ? names[r] : "other";
}

static enum lc_deny_reason reason_of(const struct lc_decision *d)
{
	if (d->status == 401)
		return LC_DENY_KEY_REFUSED;
	if (d->status == 400)
		return LC_DENY_BAD_REQUEST;
	if (d->status != 429)
		return LC_DENY_OTHER;
	/* the limit's name: scope:id:metric:window (rules.h; customer:ID:requests:minute for the rate) */
	const char *l = d->limit;
	size_t n = strlen(l);
	if (!strncmp(l, "key:", 4))
		return LC_DENY_KEY_LIMIT;
	if (!strncmp(l, "team:", 5))
		return LC_DENY_TEAM_LIMIT;
	if (!strncmp(l, "org:", 4))
		return LC_DENY_ORG_LIMIT;
	if (!strncmp(l, "customer:", 9))
		return n > 16 && !strcmp(l + n - 16, ":requests:minute") ? LC_DENY_CUSTOMER_RATE : LC_DENY_CUSTOMER_LIMIT;
	return LC_DENY_OTHER;
}

static void stats_read(struct lc_store *s, MDB_txn *txn, struct rec_stats *r)
{
	MDB_val k = {sizeof STATS_KEY - 1, (void *)STATS_KEY}, old = {sizeof STATS_KEY_OLD - 1, (void *)STATS_KEY_OLD}, v;
	memset(r, 0, sizeof *r);
	if ((mdb_get(txn, s->dbi[LC_DB_COUNTERS], &k, &v) == 0 ||
	     mdb_get(txn, s->dbi[LC_DB_META], &old, &v) == 0) && v.mv_size == sizeof *r)
		memcpy(r, v.mv_data, sizeof *r);
}

int lc_stats_count(struct lc_store *s, MDB_txn *txn, const struct lc_decision *d)
{
	struct rec_stats r;
	if (d->verdict != LC_ALLOW && d->verdict != LC_DENY)
		return 0;
	stats_read(s, txn, &r);
	if (d->verdict == LC_ALLOW)
		r.allowed++;
	else
		r.denied[reason_of(d)]++;
	MDB_val k = {sizeof STATS_KEY - 1, (void *)STATS_KEY}, v = {sizeof r, &r};
	return mdb_put(txn, s->dbi[LC_DB_COUNTERS], &k, &v, 0);
}

int lc_host_stats_get(struct lc_host_stats *out)
{
	struct lc_store *s;
	MDB_txn *txn;
	MDB_cursor *c;
	MDB_val k, v;
	struct rec_stats r;
	MDB_envinfo ei;
	MDB_stat st;
	char dir[4096], path[4200];
	struct stat fs;
	unsigned char first = LC_TICKET_PREFIX;
	int rc;

	memset(out, 0, sizeof *out);
	if ((rc = lc_store_open(false, &s)) != 0)
		return rc;
	if ((rc = lc_store_begin(s, false, &txn)) != 0)
		return LC_E_STORE;
	stats_read(s, txn, &r);
	out->allowed = r.allowed;
	memcpy(out->denied, r.denied, sizeof r.denied);
	if (mdb_cursor_open(txn, s->dbi[LC_DB_COUNTERS], &c) == 0) {
		k.mv_size = 1;
		k.mv_data = &first;
		for (rc = mdb_cursor_get(c, &k, &v, MDB_SET_RANGE);
		     rc == 0 && k.mv_size == 9 && ((unsigned char *)k.mv_data)[0] == LC_TICKET_PREFIX;
		     rc = mdb_cursor_get(c, &k, &v, MDB_NEXT))
			out->reservations++;
		mdb_cursor_close(c);
	}
	if (mdb_env_info(s->env, &ei) == 0 && mdb_env_stat(s->env, &st) == 0)
		out->store_used_bytes = (uint64_t)(ei.me_last_pgno + 1) * st.ms_psize;
	lc_store_end(s, txn, false);
	lc_store_path(dir, sizeof dir);
	snprintf(path, sizeof path, "%s/data.mdb", dir);
	if (stat(path, &fs) == 0)
		out->store_bytes = (uint64_t)fs.st_size;
	return LC_OK;
}
