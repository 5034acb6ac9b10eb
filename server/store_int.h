/* store_int.h - the store's insides, shared by store.c (LMDB, and the dispatch) and store_pg.c
 * (PostgreSQL). Nothing else includes this. */
#ifndef LC_STORE_INT_H
#define LC_STORE_INT_H

#include "srv.h"

struct srv_txn {
	struct srv *s;
	MDB_txn *mdb;          /* LMDB */
	struct pg_conn *pc;    /* PostgreSQL: the connection this transaction runs on */
	bool rdonly;
	int err;               /* PostgreSQL: the first failure (the transaction then rolls back) */
	void **keep;           /* PostgreSQL: results that values handed out point into */
	size_t nkeep, capkeep;
};

struct srv_cursor {
	srv_txn *t;
	MDB_cursor *mc;        /* LMDB */
	srv_dbi dbi;           /* PostgreSQL: the rows of one query, in key order */
	void *res;
	int row, n;
	bool desc;             /* PostgreSQL: this page is in descending key order */
};

int srv_pg_open(struct srv *s, const char *url, char *err, size_t errlen);
void srv_pg_close(struct srv *s);
int srv_pg_run(struct srv *s, srv_txn_fn fn, void *ctx, bool rdonly);
int srv_pg_get(srv_txn *t, srv_dbi dbi, MDB_val *k, MDB_val *v);
int srv_pg_put(srv_txn *t, srv_dbi dbi, MDB_val *k, MDB_val *v);
int srv_pg_del(srv_txn *t, srv_dbi dbi, MDB_val *k);
int srv_pg_count(srv_txn *t, srv_dbi dbi, size_t *n);
int srv_pg_cursor_get(srv_cursor *c, MDB_val *k, MDB_val *v, MDB_cursor_op op);
void srv_pg_cursor_close(srv_cursor *c);
const char *srv_pg_strerror(void);
bool srv_pg_notifier_turn(struct srv *s);

#endif
