/* audit.c - who changed what: one record per successful admin change (the
 * token's name, the call, the answer's status, the object before and after,
 * secrets redacted), kept in the store, newest last; GET /v1/admin/audit.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "srv.h"
#include "util.h"

#define AUDIT_KEEP 100000        /* older records are dropped */
#define AUDIT_LIST_DEFAULT 100
#define AUDIT_LIST_MAX 1000

/* secrets never reach the log: webhook secrets, invite codes */
static json_t *redact(json_t *v)
{
	const char *k;
	json_t *x;
	size_t i;
	if (json_is_object(v)) {
		json_object_foreach(v, k, x) {
			if (!strcmp(k, "secret") || !strcmp(k, "code") || !strcmp(k, "redeem"))
				json_object_set_new(v, k, json_string("[redacted]"));
			else
				redact(x);
		}
	} else if (json_is_array(v)) {
		json_array_foreach(v, i, x)
			redact(x);
	}
	return v;
}

static bool is_record_piece(const char *p)
{
	return !strcmp(p, "keys") || !strcmp(p, "teams") || !strcmp(p, "customers");
}

struct before_op {
	const struct srv_call *c;
	json_t *out;
};

static int before_txn(struct srv *s, srv_txn *txn, void *ctx)
{
	struct before_op *op = ctx;
	const char *piece = op->c->route->data;
	if (op->c->id && is_record_piece(piece))
		op->out = srv_get_json(txn, !strcmp(piece, "keys") ? s->db_keys : !strcmp(piece, "teams") ? s->db_teams
										: s->db_cust, op->c->id);
	else if (!op->c->id)
		op->out = srv_get_json(txn, s->db_meta, piece);
	return SRV_COMMIT;
}

json_t *srv_audit_before(struct srv *s, const struct srv_call *c)
{
	struct before_op op = {.c = c};
	if (!c->route->data)
		return NULL;
	srv_read(s, before_txn, &op);
	return op.out;
}

struct record_op {
	json_t *rec;
};

static int record_txn(struct srv *s, srv_txn *txn, void *ctx)
{
	struct record_op *op = ctx;
	srv_cursor *cur;
	MDB_val k, v;
	unsigned char key[8];
	uint64_t seq = 1;
	int rc;
	if ((rc = srv_cursor_open(txn, s->db_audit, &cur)) != 0)
		return rc;
	if (srv_cursor_get(cur, &k, &v, MDB_LAST) == 0 && k.mv_size == 8) {
		seq = 0;
		for (int i = 0; i < 8; i++)
			seq = seq << 8 | ((unsigned char *)k.mv_data)[i];
		seq++;
	}
	for (int i = 0; i < 8; i++)
		key[i] = (unsigned char)(seq >> (56 - 8 * i));
	json_object_set_new(op->rec, "seq", json_integer((json_int_t)seq));
	char *txt = json_dumps(op->rec, JSON_COMPACT);
	k = (MDB_val){8, key};
	v = (MDB_val){txt ? strlen(txt) : 0, txt};
	rc = txt ? srv_cursor_put(cur, &k, &v, MDB_APPEND) : ENOMEM;
	free(txt);
	MDB_stat st;
	if (rc == 0 && srv_kv_stat(txn, s->db_audit, &st) == 0 && st.ms_entries > AUDIT_KEEP &&
	    srv_cursor_get(cur, &k, &v, MDB_FIRST) == 0)
		rc = srv_cursor_del(cur, 0);
	srv_cursor_close(cur);
	return rc;
}

void srv_audit_record(struct srv *s, const struct srv_call *c, json_t *before)
{
	char t[32], call[SRV_PATH_MAX + 16];
	json_t *after = c->rs->body ? json_loadb(c->rs->body, c->rs->body_len, 0, NULL) : NULL;
	lc_time_format(lc_now(), t);
	snprintf(call, sizeof call, "%s %s", c->rq->method, c->rq->path);
	struct record_op op = {
		.rec = json_pack("{s:s,s:s,s:s,s:i,s:o,s:o}", "time", t, "token", c->token ? c->token->name : "",
				 "call", call, "status", c->rs->status, "before",
				 before ? redact(before) : json_null(), "after", after ? redact(after) : json_null()),
	};
	int rc = op.rec ? srv_write(s, record_txn, &op) : ENOMEM;
	if (rc != 0)
		lc_log(LC_LOG_ERROR, "llmcap-server: audit: cannot record %s by '%s': %s", call,
		       c->token ? c->token->name : "", srv_strerror(rc));
	json_decref(op.rec);
}

struct list_op {
	struct srv_call *c;
	long limit;
};

static int list_txn(struct srv *s, srv_txn *txn, void *ctx)
{
	struct list_op *op = ctx;
	srv_cursor *cur;
	MDB_val k, v;
	int rc;
	json_t *arr = json_array();
	if ((rc = srv_cursor_open(txn, s->db_audit, &cur)) != 0) {
		json_decref(arr);
		return rc;
	}
	long n = 0;
	for (int r = srv_cursor_get(cur, &k, &v, MDB_LAST); r == 0 && n < op->limit;
	     r = srv_cursor_get(cur, &k, &v, MDB_PREV), n++) {
		json_t *e = json_loadb(v.mv_data, v.mv_size, 0, NULL);
		if (e)
			json_array_append_new(arr, e);
	}
	srv_cursor_close(cur);
	srv_resp_json(op->c->rs, 200, json_pack("{s:o}", "entries", arr));
	return SRV_COMMIT;
}

/* GET /v1/admin/audit[?limit=N]: the newest N records first */
void srv_h_audit(struct srv_call *c)
{
	struct list_op op = {.c = c, .limit = AUDIT_LIST_DEFAULT};
	const char *l = srv_req_arg(c->rq, "limit");
	if (l) {
		char *end;
		op.limit = strtol(l, &end, 10);
		if (!*l || *end || op.limit < 1 || op.limit > AUDIT_LIST_MAX) {
			srv_resp_error(c->rs, 400, "invalid_request_error", "limit: a whole number from 1 to %d",
				       AUDIT_LIST_MAX);
			return;
		}
	}
	int rc = srv_read(c->s, list_txn, &op);
	if (rc != 0)
		srv_resp_store_error(c->rs, rc);
}
