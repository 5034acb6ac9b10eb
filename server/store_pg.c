/* store_pg.c - the server's store on PostgreSQL (llmcap-server --db postgresql://...).
 *
 * Several llmcap-server instances share one database. The tables of the LMDB
 * store are rows of one table, kv (db, k bytea, v bytea), keys in bytewise
 * order as in LMDB. Every write transaction takes one transaction-level
 * advisory lock first, so writes are serialised across all instances (each
 * one then reads what the previous committed: the same semantics as LMDB's
 * single writer); reads run REPEATABLE READ READ ONLY, a consistent snapshot
 * that waits for nobody. The schema is versioned (schema_version) and
 * migrated at start, under the same lock.
 *
 * Connections come from a small pool (one per concurrent transaction, opened
 * on demand). Values handed out point into libpq results kept until the
 * transaction ends. One instance at a time delivers the webhook outbox: the
 * one that holds a session-level advisory lock on its own connection.
 */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <libpq-fe.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "store_int.h"
#include "util.h"

#define PG_POOL 16
/* advisory lock keys: 7812730922086401 every write transaction (and the migrations), ...02 held by
 * the instance that delivers the outbox */
#define PG_SCHEMA_VERSION 1

struct pg_conn {
	PGconn *c;
	bool busy;
};

struct srv_pg {
	char *url;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	struct pg_conn pool[PG_POOL];
	PGconn *notifier;       /* holds PG_LOCK_NOTIFY once taken */
	bool notifier_has_lock;
};

static __thread char pg_err[512];

const char *srv_pg_strerror(void) { return pg_err[0] ? pg_err : "PostgreSQL: unknown failure"; }

static void set_err(PGconn *c, PGresult *r)
{
	const char *m = r ? PQresultErrorMessage(r) : NULL;
	if (!m || !*m)
		m = c ? PQerrorMessage(c) : "no connection";
	snprintf(pg_err, sizeof pg_err, "PostgreSQL: %s", m);
	pg_err[strcspn(pg_err, "\n")] = 0;
}

/* one statement with no result wanted; 0 or SRV_E_PG */
static int exec0(PGconn *c, const char *sql)
{
	PGresult *r = PQexec(c, sql);
	int ok = PQresultStatus(r) == PGRES_COMMAND_OK || PQresultStatus(r) == PGRES_TUPLES_OK;
	if (!ok)
		set_err(c, r);
	PQclear(r);
	return ok ? 0 : SRV_E_PG;
}

static PGconn *connect_one(struct srv_pg *p)
{
	PGconn *c = PQconnectdb(p->url);
	if (PQstatus(c) != CONNECTION_OK) {
		set_err(c, NULL);
		PQfinish(c);
		return NULL;
	}
	PQsetNoticeProcessor(c, NULL, NULL);
	exec0(c, "SET client_min_messages = warning");
	return c;
}

/* a connection of the pool, connected (NULL with pg_err when the server cannot be reached) */
static struct pg_conn *take(struct srv_pg *p)
{
	struct pg_conn *pc = NULL;
	pthread_mutex_lock(&p->mu);
	for (;;) {
		for (int i = 0; i < PG_POOL && !pc; i++)
			if (!p->pool[i].busy)
				pc = &p->pool[i];
		if (pc)
			break;
		pthread_cond_wait(&p->cv, &p->mu);
	}
	pc->busy = true;
	pthread_mutex_unlock(&p->mu);
	if (pc->c && PQstatus(pc->c) != CONNECTION_OK) {
		PQfinish(pc->c);
		pc->c = NULL;
	}
	if (!pc->c)
		pc->c = connect_one(p);
	if (!pc->c) {
		pthread_mutex_lock(&p->mu);
		pc->busy = false;
		pthread_cond_signal(&p->cv);
		pthread_mutex_unlock(&p->mu);
		return NULL;
	}
	return pc;
}

static void give_back(struct srv_pg *p, struct pg_conn *pc)
{
	pthread_mutex_lock(&p->mu);
	pc->busy = false;
	pthread_cond_signal(&p->cv);
	pthread_mutex_unlock(&p->mu);
}

static void keep(srv_txn *t, PGresult *r)
{
	if (t->nkeep == t->capkeep) {
		size_t n = t->capkeep ? t->capkeep * 2 : 16;
		void **k = realloc(t->keep, n * sizeof *k);
		if (!k) {   /* cannot keep it: the value would dangle, so fail the transaction */
			PQclear(r);
			snprintf(pg_err, sizeof pg_err, "PostgreSQL: out of memory");
			t->err = SRV_E_PG;
			return;
		}
		t->keep = k;
		t->capkeep = n;
	}
	t->keep[t->nkeep++] = r;
}

static void release_kept(srv_txn *t)
{
	for (size_t i = 0; i < t->nkeep; i++)
		PQclear(t->keep[i]);
	free(t->keep);
	t->keep = NULL;
	t->nkeep = t->capkeep = 0;
}

/* a statement with binary parameters and results; NULL (and t->err) on failure */
static PGresult *q(srv_txn *t, const char *sql, int n, const char *const *vals, const int *lens)
{
	static const int fmts[4] = {1, 1, 1, 1};
	if (t->err)
		return NULL;
	PGresult *r = PQexecParams(t->pc->c, sql, n, NULL, vals, lens, fmts, 1);
	ExecStatusType st = PQresultStatus(r);
	if (st != PGRES_TUPLES_OK && st != PGRES_COMMAND_OK) {
		set_err(t->pc->c, r);
		PQclear(r);
		t->err = SRV_E_PG;
		return NULL;
	}
	return r;
}

static const char *dbname(srv_dbi dbi) { return dbi < SRV_DB_COUNT ? srv_db_names[dbi] : "?"; }

int srv_pg_get(srv_txn *t, srv_dbi dbi, MDB_val *k, MDB_val *v)
{
	const char *vals[2] = {dbname(dbi), k->mv_data ? k->mv_data : ""};
	int lens[2] = {(int)strlen(vals[0]), (int)k->mv_size};
	PGresult *r = q(t, "SELECT v FROM kv WHERE db = $1::text AND k = $2::bytea", 2, vals, lens);
	if (!r)
		return t->err;
	if (PQntuples(r) == 0) {
		PQclear(r);
		return MDB_NOTFOUND;
	}
	v->mv_data = PQgetvalue(r, 0, 0);
	v->mv_size = (size_t)PQgetlength(r, 0, 0);
	keep(t, r);
	return t->err;
}

int srv_pg_put(srv_txn *t, srv_dbi dbi, MDB_val *k, MDB_val *v)
{
	const char *vals[3] = {dbname(dbi), k->mv_data ? k->mv_data : "", v->mv_data ? v->mv_data : ""};
	int lens[3] = {(int)strlen(vals[0]), (int)k->mv_size, (int)v->mv_size};
	if (t->rdonly)
		return EACCES;
	if (k->mv_size > INT32_MAX || v->mv_size > INT32_MAX)
		return EINVAL;
	PGresult *r = q(t, "INSERT INTO kv (db, k, v) VALUES ($1::text, $2::bytea, $3::bytea) "
			   "ON CONFLICT (db, k) DO UPDATE SET v = EXCLUDED.v", 3, vals, lens);
	PQclear(r);
	return r ? 0 : t->err;
}

int srv_pg_del(srv_txn *t, srv_dbi dbi, MDB_val *k)
{
	const char *vals[2] = {dbname(dbi), k->mv_data ? k->mv_data : ""};
	int lens[2] = {(int)strlen(vals[0]), (int)k->mv_size};
	if (t->rdonly)
		return EACCES;
	PGresult *r = q(t, "DELETE FROM kv WHERE db = $1::text AND k = $2::bytea", 2, vals, lens);
	if (!r)
		return t->err;
	int n = atoi(PQcmdTuples(r));
	PQclear(r);
	return n > 0 ? 0 : MDB_NOTFOUND;
}

int srv_pg_count(srv_txn *t, srv_dbi dbi, size_t *n)
{
	const char *vals[1] = {dbname(dbi)};
	int lens[1] = {(int)strlen(vals[0])};
	PGresult *r = q(t, "SELECT count(*)::text FROM kv WHERE db = $1::text", 1, vals, lens);
	if (!r)
		return t->err;
	char num[32] = "0";
	if (PQntuples(r) == 1 && PQgetlength(r, 0, 0) < (int)sizeof num)
		snprintf(num, sizeof num, "%.*s", PQgetlength(r, 0, 0), PQgetvalue(r, 0, 0));
	*n = (size_t)strtoull(num, NULL, 10);
	PQclear(r);
	return 0;
}

/* The cursor reads its table a page at a time, in the direction it walks: MDB_FIRST/MDB_SET_RANGE
 * and MDB_NEXT ascending, MDB_LAST and MDB_PREV descending (c->desc), so a walk of a few rows or
 * the last row (the audit trail's next number) costs one short query, not the whole table. A page
 * handed out stays valid until the transaction ends (keep). */
#define PG_CURSOR_PAGE 256

enum pg_from { PG_ALL, PG_GE, PG_GT, PG_LT };

static int cursor_query(srv_cursor *c, enum pg_from how, const void *key, size_t klen, bool desc)
{
	static const char *const sql[2][4] = {
		{"SELECT k, v FROM kv WHERE db = $1::text ORDER BY k LIMIT 256",
		 "SELECT k, v FROM kv WHERE db = $1::text AND k >= $2::bytea ORDER BY k LIMIT 256",
		 "SELECT k, v FROM kv WHERE db = $1::text AND k > $2::bytea ORDER BY k LIMIT 256",
		 "SELECT k, v FROM kv WHERE db = $1::text AND k < $2::bytea ORDER BY k LIMIT 256"},
		{"SELECT k, v FROM kv WHERE db = $1::text ORDER BY k DESC LIMIT 256",
		 "SELECT k, v FROM kv WHERE db = $1::text AND k >= $2::bytea ORDER BY k DESC LIMIT 256",
		 "SELECT k, v FROM kv WHERE db = $1::text AND k > $2::bytea ORDER BY k DESC LIMIT 256",
		 "SELECT k, v FROM kv WHERE db = $1::text AND k < $2::bytea ORDER BY k DESC LIMIT 256"}};
	const char *vals[2] = {dbname(c->dbi), key ? key : ""};
	int lens[2] = {(int)strlen(vals[0]), (int)klen};
	if (klen > INT_MAX)
		return EINVAL;
	PGresult *r = q(c->t, sql[desc][how], how == PG_ALL ? 1 : 2, vals, lens);
	if (!r)
		return c->t->err;
	if (c->res)
		keep(c->t, c->res);   /* values already handed out stay valid */
	c->res = r;
	c->n = PQntuples(r);
	c->desc = desc;
	return 0;
}

/* one step along the key order (dir +1 next, -1 previous), fetching the next page past the
 * current row's key when the step leaves the page */
static int cursor_step(srv_cursor *c, int dir)
{
	int along = c->desc ? -dir : dir;   /* +1: further into this page's order */
	int rc;
	if (c->row + along >= 0 && c->row + along < c->n) {
		c->row += along;
		return 0;
	}
	if (c->row < 0 || c->row >= c->n || (along > 0 && c->n < PG_CURSOR_PAGE && (dir > 0) != c->desc)) {
		/* off either end already, or past the last row of a short (final) page */
		c->row = along > 0 ? c->n : -1;
		return MDB_NOTFOUND;
	}
	int at = c->row;
	const char *key = PQgetvalue(c->res, at, 0);
	size_t klen = (size_t)PQgetlength(c->res, at, 0);
	if ((rc = cursor_query(c, dir > 0 ? PG_GT : PG_LT, key, klen, dir < 0)) != 0)
		return rc;
	c->row = 0;
	return c->n ? 0 : MDB_NOTFOUND;
}

int srv_pg_cursor_get(srv_cursor *c, MDB_val *k, MDB_val *v, MDB_cursor_op op)
{
	int rc;
	switch (op) {
	case MDB_FIRST:
	case MDB_LAST:
		if ((rc = cursor_query(c, PG_ALL, NULL, 0, op == MDB_LAST)) != 0)
			return rc;
		c->row = 0;
		break;
	case MDB_SET_RANGE:
		if ((rc = cursor_query(c, PG_GE, k->mv_data, k->mv_data ? k->mv_size : 0, false)) != 0)
			return rc;
		c->row = 0;
		break;
	case MDB_NEXT:
	case MDB_PREV:
		if (!c->res)
			return srv_pg_cursor_get(c, k, v, op == MDB_NEXT ? MDB_FIRST : MDB_LAST);
		if ((rc = cursor_step(c, op == MDB_NEXT ? 1 : -1)) != 0)
			return rc;
		break;
	case MDB_GET_CURRENT:
		break;
	default:
		return EINVAL;
	}
	if (!c->res || c->row < 0 || c->row >= c->n)
		return MDB_NOTFOUND;
	k->mv_data = PQgetvalue(c->res, c->row, 0);
	k->mv_size = (size_t)PQgetlength(c->res, c->row, 0);
	v->mv_data = PQgetvalue(c->res, c->row, 1);
	v->mv_size = (size_t)PQgetlength(c->res, c->row, 1);
	return 0;
}

void srv_pg_cursor_close(srv_cursor *c)
{
	if (c->res)
		keep(c->t, c->res);   /* the caller may still read what it got */
	c->res = NULL;
}

int srv_pg_run(struct srv *s, srv_txn_fn fn, void *ctx, bool rdonly)
{
	struct srv_pg *p = s->pg;
	struct pg_conn *pc = take(p);
	if (!pc)
		return SRV_E_PG;
	srv_txn t = {.s = s, .pc = pc, .rdonly = rdonly};
	const char *begin = rdonly ? "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY" : "BEGIN";
	int rc = exec0(pc->c, begin);
	if (rc != 0 && PQstatus(pc->c) != CONNECTION_OK) {
		/* a connection the database dropped (it restarted): once more on a new one */
		PQfinish(pc->c);
		if ((pc->c = connect_one(p)) == NULL) {
			give_back(p, pc);
			return SRV_E_PG;
		}
		rc = exec0(pc->c, begin);
	}
	if (rc == 0 && !rdonly)
		rc = exec0(pc->c, "SELECT pg_advisory_xact_lock(7812730922086401)");
	if (rc != 0) {
		exec0(pc->c, "ROLLBACK");
		give_back(p, pc);
		return rc;
	}
	srv_take_published();
	rc = fn(s, &t, ctx);
	if (rc == SRV_COMMIT && t.err)
		rc = t.err;
	bool published = srv_take_published();
	if (rc == SRV_COMMIT && !rdonly) {
		rc = exec0(pc->c, "COMMIT");
	} else {
		exec0(pc->c, "ROLLBACK");
		if (rc == SRV_COMMIT)
			rc = 0;
	}
	release_kept(&t);
	give_back(p, pc);
	if (rc == SRV_COMMIT && published)
		srv_publish_done(s);
	return rc;
}

/* ---- schema ---- */

static const char *const migrations[PG_SCHEMA_VERSION] = {
	/* 1: the tables of the LMDB store, as rows */
	"CREATE TABLE kv (db text NOT NULL, k bytea NOT NULL, v bytea NOT NULL, PRIMARY KEY (db, k))",
};

static int migrate(PGconn *c, char *err, size_t errlen)
{
	int have = 0, rc;
	if ((rc = exec0(c, "BEGIN")) != 0 || (rc = exec0(c, "SELECT pg_advisory_xact_lock(7812730922086401)")) != 0 ||
	    (rc = exec0(c, "CREATE TABLE IF NOT EXISTS schema_version (version int NOT NULL)")) != 0)
		goto fail;
	PGresult *r = PQexec(c, "SELECT max(version) FROM schema_version");
	if (PQresultStatus(r) != PGRES_TUPLES_OK) {
		set_err(c, r);
		PQclear(r);
		goto fail;
	}
	if (PQntuples(r) == 1 && !PQgetisnull(r, 0, 0))
		have = atoi(PQgetvalue(r, 0, 0));
	PQclear(r);
	if (have > PG_SCHEMA_VERSION) {
		exec0(c, "ROLLBACK");
		lc_errf(err, errlen, "the database's schema is version %d, newer than this llmcap-server knows (%d)", have,
			PG_SCHEMA_VERSION);
		return -1;
	}
	for (int v = have + 1; v <= PG_SCHEMA_VERSION; v++) {
		char sql[64];
		snprintf(sql, sizeof sql, "INSERT INTO schema_version VALUES (%d)", v);
		if (exec0(c, migrations[v - 1]) != 0 || exec0(c, sql) != 0)
			goto fail;
		lc_log(LC_LOG_INFO, "llmcap-server: database schema migrated to version %d", v);
	}
	if (exec0(c, "COMMIT") == 0)
		return 0;
fail:
	exec0(c, "ROLLBACK");
	lc_errf(err, errlen, "%s", srv_pg_strerror());
	return -1;
}

int srv_pg_open(struct srv *s, const char *url, char *err, size_t errlen)
{
	struct srv_pg *p = calloc(1, sizeof *p);
	if (!p || !(p->url = strdup(url))) {
		free(p);
		lc_errf(err, errlen, "out of memory");
		return -1;
	}
	pthread_mutex_init(&p->mu, NULL);
	pthread_cond_init(&p->cv, NULL);
	s->pg = p;
	PGconn *c = connect_one(p);
	if (!c) {
		lc_errf(err, errlen, "%s", srv_pg_strerror());
		srv_pg_close(s);
		return -1;
	}
	if (migrate(c, err, errlen) != 0) {
		PQfinish(c);
		srv_pg_close(s);
		return -1;
	}
	p->pool[0].c = c;
	return 0;
}

void srv_pg_close(struct srv *s)
{
	struct srv_pg *p = s->pg;
	if (!p)
		return;
	for (int i = 0; i < PG_POOL; i++)
		if (p->pool[i].c)
			PQfinish(p->pool[i].c);
	if (p->notifier)
		PQfinish(p->notifier);   /* drops the outbox lock: another instance takes over */
	pthread_cond_destroy(&p->cv);
	pthread_mutex_destroy(&p->mu);
	free(p->url);
	free(p);
	s->pg = NULL;
}

/* Only the notifier thread calls this. */
bool srv_pg_notifier_turn(struct srv *s)
{
	struct srv_pg *p = s->pg;
	if (p->notifier && PQstatus(p->notifier) != CONNECTION_OK) {
		PQfinish(p->notifier);
		p->notifier = NULL;
		p->notifier_has_lock = false;
	}
	if (!p->notifier && !(p->notifier = connect_one(p)))
		return false;
	if (p->notifier_has_lock)
		return true;
	PGresult *r = PQexec(p->notifier, "SELECT pg_try_advisory_lock(7812730922086402)");
	p->notifier_has_lock = PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1 && PQgetvalue(r, 0, 0)[0] == 't';
	PQclear(r);
	return p->notifier_has_lock;
}
