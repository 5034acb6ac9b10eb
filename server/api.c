/* api.c - the HTTP API as a pure function: srv_handle(request) -> response.
 *
 * Admin calls need "Authorization: Bearer <admin token>" (compared in
 * constant time on its SHA-256). Every admin change runs in one write
 * transaction that changes the piece, builds the whole policy, validates it
 * with the hosts' own parser and signs it: a refused change leaves nothing
 * behind. Errors are {"error": {"message", "type"}}.
 */
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "policy.h"
#include "srv.h"
#include "util.h"

#define INVITE_DEFAULT_TTL (7 * 86400)

/* ---- responses ---- */

void srv_resp_free(struct srv_resp *rs)
{
	free(rs->body);
	rs->body = NULL;
	rs->body_len = 0;
}

void srv_resp_json(struct srv_resp *rs, int status, json_t *v)
{
	srv_resp_free(rs);
	rs->status = status;
	rs->body = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY | JSON_REAL_PRECISION(15));
	rs->body_len = rs->body ? strlen(rs->body) : 0;
	json_decref(v);
}

void srv_resp_error(struct srv_resp *rs, int status, const char *type, const char *fmt, ...)
{
	char msg[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	srv_resp_json(rs, status, json_pack("{s:{s:s,s:s}}", "error", "message", msg, "type", type));
}

#define E400(rs, ...) srv_resp_error(rs, 400, "invalid_request_error", __VA_ARGS__)
#define E404(rs, ...) srv_resp_error(rs, 404, "not_found_error", __VA_ARGS__)
#define E409(rs, ...) srv_resp_error(rs, 409, "conflict_error", __VA_ARGS__)
#define E500(rs, ...) srv_resp_error(rs, 500, "api_error", __VA_ARGS__)

/* ---- small helpers ---- */

static int token_hash(const char *token, size_t len, unsigned char out[32])
{
	while (len > 0 && isspace((unsigned char)token[len - 1]))
		len--;
	while (len > 0 && isspace((unsigned char)*token)) {
		token++;
		len--;
	}
	if (len < 16)
		return -1;   /* refuse short tokens */
	lc_sha256(token, len, out);
	return 0;
}

int srv_set_host_token(struct srv *s, const char *token, size_t len)
{
	return token_hash(token, len, s->host_hash);
}

static bool bearer_is(const unsigned char want[32], const char *auth)
{
	unsigned char h[32];
	static const unsigned char zero[32];
	if (!auth || strncasecmp(auth, "Bearer ", 7) != 0)
		return false;
	auth += 7;
	while (*auth == ' ')
		auth++;
	size_t n = strlen(auth);
	while (n > 0 && isspace((unsigned char)auth[n - 1]))
		n--;
	lc_sha256(auth, n, h);
	if (sodium_memcmp(want, zero, 32) == 0)
		return false;
	return sodium_memcmp(h, want, 32) == 0;
}

bool srv_host_ok(const struct srv *s, const char *auth)
{
	static const unsigned char zero[32];
	if (sodium_memcmp(s->host_hash, zero, 32) == 0)
		return true;
	return bearer_is(s->host_hash, auth) || bearer_is(s->admin_hash, auth);
}

int srv_set_admin_token(struct srv *s, const char *token, size_t len)
{
	return token_hash(token, len, s->admin_hash);
}

bool srv_admin_ok(const struct srv *s, const char *auth)
{
	return bearer_is(s->admin_hash, auth);
}

bool srv_id_ok(const char *id)
{
	size_t n = strlen(id);
	if (n == 0 || n > SRV_ID_MAX)
		return false;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)id[i];
		if (!(isalnum(c) || c == '-' || c == '_' || c == '.' || c == '@' || c == ':'))
			return false;
	}
	return true;
}

void srv_random_hex(char *out, size_t nbytes)
{
	unsigned char b[64];
	if (nbytes > sizeof b)
		nbytes = sizeof b;
	randombytes_buf(b, nbytes);
	lc_hex(b, nbytes, out);
}

static bool sha_ok(const char *h)
{
	if (strlen(h) != 64)
		return false;
	for (int i = 0; i < 64; i++)
		if (!isxdigit((unsigned char)h[i]) || isupper((unsigned char)h[i]))
			return false;
	return true;
}

static json_t *parse_body(const struct srv_req *rq, struct srv_resp *rs)
{
	json_error_t je;
	json_t *j;
	if (!rq->body || rq->body_len == 0) {
		E400(rs, "request body required (JSON object)");
		return NULL;
	}
	j = json_loadb(rq->body, rq->body_len, JSON_REJECT_DUPLICATES, &je);
	if (!j) {
		E400(rs, "malformed JSON: %s (line %d, column %d)", je.text, je.line, je.column);
		return NULL;
	}
	if (!json_is_object(j)) {
		json_decref(j);
		E400(rs, "body must be a JSON object");
		return NULL;
	}
	return j;
}

/* only the listed fields are allowed; path names the object in errors */
static bool fields_ok(json_t *obj, const char *path, const char *const *allowed, struct srv_resp *rs)
{
	const char *k;
	json_t *v;
	json_object_foreach(obj, k, v) {
		bool found = false;
		for (const char *const *a = allowed; *a; a++)
			if (strcmp(*a, k) == 0)
				found = true;
		if (!found) {
			E400(rs, "%s%s%s: unknown field", path, *path ? "." : "", k);
			return false;
		}
	}
	return true;
}

/* publish from inside a write txn; sets rs on refusal. 0 commit, else abort */
static int publish(struct srv *s, MDB_txn *txn, struct srv_resp *rs)
{
	char err[1024];
	int rc = srv_publish(s, txn, err, sizeof err);
	if (rc == -1) {
		E400(rs, "invalid policy: %s", err);
		return 1;
	}
	if (rc == -2) {
		E500(rs, "cannot publish: %s", err);
		return 1;
	}
	return rc;   /* 0 or an LMDB error (MAP_FULL is retried) */
}

static json_t *with_version(struct srv *s, MDB_txn *txn, json_t *obj /* stolen */)
{
	json_object_set_new(obj, "policy_version", json_integer(srv_get_int(txn, s->db_meta, "version", 0)));
	return obj;
}

static const char *singular(const char *piece)
{
	return strcmp(piece, "keys") == 0 ? "key" : strcmp(piece, "teams") == 0 ? "team" : "customer";
}

struct op {
	const struct srv_req *rq;
	struct srv_resp *rs;
	json_t *body;
	const char *id;
	const char *piece;
	char code[64];
};

static int store_failed(struct srv_resp *rs, int rc)
{
	if (rc == MDB_MAP_FULL)
		return rc;
	E500(rs, "store: %s", mdb_strerror(rc));
	return 1;
}

/* ---- keys ---- */

static const char *const key_fields[] = {"sha256", "team", "expires_at", "revoked", "limits", NULL};

/* another key holding this sha256? copies its id into other */
static bool sha_taken(struct srv *s, MDB_txn *txn, const char *sha, const char *except, char *other, size_t olen)
{
	MDB_cursor *c;
	MDB_val k, v;
	bool found = false;
	if (mdb_cursor_open(txn, s->db_keys, &c) != 0)
		return false;
	for (int rc = mdb_cursor_get(c, &k, &v, MDB_FIRST); rc == 0 && !found; rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
		json_t *o = json_loadb(v.mv_data, v.mv_size, 0, NULL);
		const char *h = json_string_value(json_object_get(o, "sha256"));
		if (h && strcmp(h, sha) == 0 &&
		    !(except && k.mv_size == strlen(except) && memcmp(k.mv_data, except, k.mv_size) == 0)) {
			found = true;
			snprintf(other, olen, "%.*s", (int)k.mv_size, (char *)k.mv_data);
		}
		json_decref(o);
	}
	mdb_cursor_close(c);
	return found;
}

static int key_create_txn(struct srv *s, MDB_txn *txn, void *ctx)
{
	struct op *op = ctx;
	json_t *key = json_deep_copy(op->body);
	char id[SRV_ID_MAX + 1];
	const char *sha = json_string_value(json_object_get(key, "sha256"));
	MDB_val v;
	char other[SRV_ID_MAX + 1];
	int rc;

	snprintf(id, sizeof id, "%s", json_string_value(json_object_get(key, "id")));
	if (srv_get_raw(txn, s->db_keys, id, &v) == 0) {
		E409(op->rs, "key '%s' already exists", id);
		rc = 1;
		goto out;
	}
	if (sha && sha_taken(s, txn, sha, NULL, other, sizeof other)) {
		E409(op->rs, "a key with this sha256 already exists ('%s')", other);
		rc = 1;
		goto out;
	}
	json_object_del(key, "id");
	if ((rc = srv_put_json(txn, s->db_keys, id, key)) != 0) {
		rc = store_failed(op->rs, rc);
		goto out;
	}
	if ((rc = publish(s, txn, op->rs)) != 0)
		goto out;
	json_object_set_new(key, "id", json_string(id));
	srv_resp_json(op->rs, 201, with_version(s, txn, json_incref(key)));
out:
	json_decref(key);
	return rc;
}

static void key_create(struct srv *s, struct op *op)
{
	json_t *id = json_object_get(op->body, "id");
	static const char *const allowed[] = {"id", "sha256", "team", "expires_at", "revoked", "limits", NULL};
	if (!id || !json_is_string(id)) {
		E400(op->rs, "id: required (string)");
		return;
	}
	if (!srv_id_ok(json_string_value(id))) {
		E400(op->rs, "id: must be 1-%d characters of A-Z a-z 0-9 . _ - @ :", SRV_ID_MAX);
		return;
	}
	if (!fields_ok(op->body, "", allowed, op->rs))
		return;
	json_t *sha = json_object_get(op->body, "sha256");
	if (!sha || !json_is_string(sha) || !sha_ok(json_string_value(sha))) {
		E400(op->rs, "sha256: required, 64 lowercase hex digits (llmcap key fingerprint)");
		return;
	}
	int rc = srv_write(s, key_create_txn, op);
	if (rc < 0 && rc != 1)
		E500(op->rs, "store: %s", mdb_strerror(rc));
}

static int obj_get_txn(struct srv *s, MDB_txn *txn, void *ctx)
{
	struct op *op = ctx;
	MDB_dbi dbi = strcmp(op->piece, "keys") == 0 ? s->db_keys
		    : strcmp(op->piece, "teams") == 0 ? s->db_teams : s->db_cust;
	if (op->id) {
		json_t *o = srv_get_json(txn, dbi, op->id);
		if (!o) {
			E404(op->rs, "no %s '%s'", singular(op->piece), op->id);
			return 0;
		}
		json_t *out = json_pack("{s:s}", "id", op->id);
		json_object_update(out, o);
		json_decref(o);
		srv_resp_json(op->rs, 200, out);
		return 0;
	}
	json_t *all = json_object();
	MDB_cursor *c;
	MDB_val k, v;
	if (mdb_cursor_open(txn, dbi, &c) == 0) {
		for (int rc = mdb_cursor_get(c, &k, &v, MDB_FIRST); rc == 0; rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
			char id[SRV_ID_MAX + 1];
			json_t *o = json_loadb(v.mv_data, v.mv_size, 0, NULL);
			snprintf(id, sizeof id, "%.*s", (int)k.mv_size, (char *)k.mv_data);
			if (o)
				json_object_set_new(all, id, o);
		}
		mdb_cursor_close(c);
	}
	srv_resp_json(op->rs, 200, json_pack("{s:o}", op->piece, all));
	return 0;
}

/* RFC 7396-style merge at one level: null deletes */
static void merge(json_t *dst, json_t *patch)
{
	const char *k;
	json_t *v;
	json_object_foreach(patch, k, v) {
		if (json_is_null(v))
			json_object_del(dst, k);
		else
			json_object_set(dst, k, v);
	}
}

static int key_patch_txn(struct srv *s, MDB_txn *txn, void *ctx)
{
	struct op *op = ctx;
	json_t *key = srv_get_json(txn, s->db_keys, op->id);
	int rc = 1;
	if (!key) {
		E404(op->rs, "no key '%s'", op->id);
		return 1;
	}
	const char *k;
	json_t *v;
	json_object_foreach(op->body, k, v) {
		if (strcmp(k, "limits") == 0 && json_is_object(v)) {
			/* {"limits": {"1": {"enabled": false}}}: change one limit in place */
			json_t *arr = json_object_get(key, "limits");
			const char *idx;
			json_t *chg;
			json_object_foreach(v, idx, chg) {
				char *end;
				long i = strtol(idx, &end, 10);
				json_t *lim = (*end || !*idx || i < 0 || !arr) ? NULL : json_array_get(arr, (size_t)i);
				if (!lim) {
					E400(op->rs, "limits.%s: no such limit (index into the key's limits)", idx);
					goto out;
				}
				if (!json_is_object(chg)) {
					E400(op->rs, "limits.%s: must be an object", idx);
					goto out;
				}
				merge(lim, chg);
			}
		} else if (json_is_null(v)) {
			json_object_del(key, k);
		} else {
			json_object_set(key, k, v);
		}
	}
	const char *sha = json_string_value(json_object_get(key, "sha256"));
	char other[SRV_ID_MAX + 1];
	if (sha && sha_taken(s, txn, sha, op->id, other, sizeof other)) {
		E409(op->rs, "a key with this sha256 already exists ('%s')", other);
		goto out;
	}
	if ((rc = srv_put_json(txn, s->db_keys, op->id, key)) != 0) {
		rc = store_failed(op->rs, rc);
		goto out;
	}
	if ((rc = publish(s, txn, op->rs)) != 0)
		goto out;
	json_t *o = json_pack("{s:s}", "id", op->id);
	json_object_update(o, key);
	srv_resp_json(op->rs, 200, with_version(s, txn, o));
out:
	json_decref(key);
	return rc;
}

static void key_patch(struct srv *s, struct op *op)
{
	if (!fields_ok(op->body, "", key_fields, op->rs))
		return;
	json_t *sha = json_object_get(op->body, "sha256");
	if (sha && (!json_is_string(sha) || !sha_ok(json_string_value(sha)))) {
		E400(op->rs, "sha256: 64 lowercase hex digits");
		return;
	}
	srv_write(s, key_patch_txn, op);
}

static int key_revoke_txn(struct srv *s, MDB_txn *txn, void *ctx)
{
	struct op *op = ctx;
	json_t *key = srv_get_json(txn, s->db_keys, op->id);
	int rc;
	if (!key) {
		E404(op->rs, "no key '%s'", op->id);
		return 1;
	}
	json_object_set_new(key, "revoked", json_true());
	if ((rc = srv_put_json(txn, s->db_keys, op->id, key)) != 0) {
		json_decref(key);
		return store_failed(op->rs, rc);
	}
	if ((rc = publish(s, txn, op->rs)) == 0) {
		json_t *o = json_pack("{s:s}", "id", op->id);
		json_object_update(o, key);
		srv_resp_json(op->rs, 200, with_version(s, txn, o));
	}
	json_decref(key);
	return rc;
}

/* ---- teams and customer overrides: PUT replaces, DELETE removes ---- */

static int obj_put_txn(struct srv *s, MDB_txn *txn, void *ctx)
{
	struct op *op = ctx;
	MDB_dbi dbi = strcmp(op->piece, "teams") == 0 ? s->db_teams : s->db_cust;
	MDB_val v;
	bool existed = srv_get_raw(txn, dbi, op->id, &v) == 0;
	int rc;
	if ((rc = srv_put_json(txn, dbi, op->id, op->body)) != 0)
		return store_failed(op->rs, rc);
	if ((rc = publish(s, txn, op->rs)) != 0)
		return rc;
	json_t *o = json_pack("{s:s}", "id", op->id);
	json_object_update(o, op->body);
	srv_resp_json(op->rs, existed ? 200 : 201, with_version(s, txn, o));
	return 0;
}

static void obj_put(struct srv *s, struct op *op)
{
	srv_write(s, obj_put_txn, op);
}

static int obj_del_txn(struct srv *s, MDB_txn *txn, void *ctx)
{
	struct op *op = ctx;
	MDB_dbi dbi = strcmp(op->piece, "teams") == 0 ? s->db_teams : s->db_cust;
	int rc = srv_del(txn, dbi, op->id);
	if (rc == MDB_NOTFOUND) {
		E404(op->rs, "no %s '%s'", singular(op->piece), op->id);
		return 1;
	}
	if (rc)
		return store_failed(op->rs, rc);
	if (strcmp(op->piece, "teams") == 0) {
		/* refuse while a key still names the team: clearer than the parser's message */
		MDB_cursor *c;
		MDB_val k, val;
		if (mdb_cursor_open(txn, s->db_keys, &c) == 0) {
			for (int r = mdb_cursor_get(c, &k, &val, MDB_FIRST); r == 0; r = mdb_cursor_get(c, &k, &val, MDB_NEXT)) {
				json_t *o = json_loadb(val.mv_data, val.mv_size, 0, NULL);
				const char *t = json_string_value(json_object_get(o, "team"));
				bool uses = t && strcmp(t, op->id) == 0;
				json_decref(o);
				if (uses) {
					E409(op->rs, "team '%s' is still used by key '%.*s'", op->id, (int)k.mv_size,
					     (char *)k.mv_data);
					mdb_cursor_close(c);
					return 1;
				}
			}
			mdb_cursor_close(c);
		}
	}
	if ((rc = publish(s, txn, op->rs)) != 0)
		return rc;
	srv_resp_json(op->rs, 200, with_version(s, txn, json_pack("{s:s,s:b}", "id", op->id, "deleted", 1)));
	return 0;
}

/* ---- whole pieces: org, customers, webhooks, providers, prices, settings ---- */

static int piece_put_txn(struct srv *s, MDB_txn *txn, void *ctx)
{
	struct op *op = ctx;
	json_t *val = op->body;
	int rc;
	/* wrapped bodies: {"webhooks": [...]}, {"providers": [...]}, {"prices": {...}} */
	if (strcmp(op->piece, "webhooks") == 0 || strcmp(op->piece, "providers") == 0 ||
	    strcmp(op->piece, "prices") == 0)
		val = json_object_get(op->body, op->piece);
	if ((rc = srv_put_json(txn, s->db_meta, op->piece, val)) != 0)
		return store_failed(op->rs, rc);
	if ((rc = publish(s, txn, op->rs)) != 0)
		return rc;
	srv_resp_json(op->rs, 200, with_version(s, txn, json_pack("{s:O}", op->piece, val)));
	return 0;
}

static void piece_put(struct srv *s, struct op *op)
{
	const char *p = op->piece;
	if (strcmp(p, "webhooks") == 0 || strcmp(p, "providers") == 0) {
		const char *const allowed[] = {p, NULL};
		if (!fields_ok(op->body, "", allowed, op->rs))
			return;
		if (!json_is_array(json_object_get(op->body, p))) {
			E400(op->rs, "%s: required (array)", p);
			return;
		}
	} else if (strcmp(p, "prices") == 0) {
		const char *const allowed[] = {p, NULL};
		if (!fields_ok(op->body, "", allowed, op->rs))
			return;
		if (!json_is_object(json_object_get(op->body, p))) {
			E400(op->rs, "prices: required (object)");
			return;
		}
	} else if (strcmp(p, "settings") == 0) {
		static const char *const allowed[] = {"unknown_keys", "unknown_models", "policy_lifetime_days", NULL};
		if (!fields_ok(op->body, "settings", allowed, op->rs))
			return;
		json_t *d = json_object_get(op->body, "policy_lifetime_days");
		if (d && (!json_is_number(d) || json_number_value(d) * 86400 < 60 || json_number_value(d) > 3650)) {
			E400(op->rs, "settings.policy_lifetime_days: a number of days, at least 60 seconds' worth, at most 3650");
			return;
		}
	} else if (strcmp(p, "customers") == 0) {
		if (json_object_get(op->body, "overrides")) {
			E400(op->rs, "customers.overrides: set one customer with PUT /v1/admin/customers/{id}");
			return;
		}
	}
	srv_write(s, piece_put_txn, op);
}

static int piece_get_txn(struct srv *s, MDB_txn *txn, void *ctx)
{
	struct op *op = ctx;
	json_t *v = srv_get_json(txn, s->db_meta, op->piece);
	if (strcmp(op->piece, "webhooks") == 0 || strcmp(op->piece, "providers") == 0 ||
	    strcmp(op->piece, "prices") == 0) {
		if (!v)
			v = strcmp(op->piece, "prices") == 0 ? json_object() : json_array();
		if (strcmp(op->piece, "providers") == 0 && json_array_size(v) == 0) {
			json_t *doc = srv_policy_build(s, txn, 0, lc_now(), NULL, 0);
			json_decref(v);
			v = json_incref(json_object_get(doc, "providers"));
			json_decref(doc);
		}
		srv_resp_json(op->rs, 200, json_pack("{s:o}", op->piece, v));
	} else {
		srv_resp_json(op->rs, 200, v ? v : json_object());
	}
	return 0;
}

/* ---- invites ---- */

static int invite_create_txn(struct srv *s, MDB_txn *txn, void *ctx)
{
	struct op *op = ctx;
	json_t *team = json_object_get(op->body, "team");
	json_t *kid = json_object_get(op->body, "id");
	MDB_val v;
	unsigned char h[32];
	char hx[65], t[32];
	int rc;

	if (team && srv_get_raw(txn, s->db_teams, json_string_value(team), &v) != 0) {
		E400(op->rs, "team: no team '%s'", json_string_value(team));
		return 1;
	}
	if (kid && srv_get_raw(txn, s->db_keys, json_string_value(kid), &v) == 0) {
		E409(op->rs, "key '%s' already exists", json_string_value(kid));
		return 1;
	}
	int64_t now = lc_now(), exp = now + INVITE_DEFAULT_TTL;
	json_t *e = json_object_get(op->body, "expires_at");
	if (e)
		lc_time_parse(json_string_value(e), &exp);
	json_t *inv = json_deep_copy(op->body);
	json_object_set_new(inv, "expires_at", json_integer(exp));
	json_object_set_new(inv, "created_at", json_integer(now));
	lc_sha256(op->code, strlen(op->code), h);
	lc_hex(h, 32, hx);
	rc = srv_put_json(txn, s->db_invites, hx, inv);
	json_decref(inv);
	if (rc)
		return store_failed(op->rs, rc);
	lc_time_format(exp, t);
	char path[160];
	snprintf(path, sizeof path, "/v1/invites/%s/redeem", op->code);
	srv_resp_json(op->rs, 201, json_pack("{s:s,s:s,s:s}", "code", op->code, "expires_at", t, "redeem", path));
	return 0;
}

static void invite_create(struct srv *s, struct op *op)
{
	static const char *const allowed[] = {"limits", "team", "expires_at", "key_expires_at", "id", NULL};
	struct lc_limit lim[LC_MAX_LIMITS];
	int n = 0;
	char err[512];
	int64_t t;

	if (!fields_ok(op->body, "", allowed, op->rs))
		return;
	json_t *l = json_object_get(op->body, "limits");
	if (!l) {
		E400(op->rs, "limits: required (array of limits)");
		return;
	}
	if (lc_limits_parse(l, "limits", lim, &n, err, sizeof err) != 0) {
		E400(op->rs, "%s", err);
		return;
	}
	json_t *v = json_object_get(op->body, "team");
	if (v && !json_is_string(v)) {
		E400(op->rs, "team: must be a string");
		return;
	}
	v = json_object_get(op->body, "id");
	if (v && (!json_is_string(v) || !srv_id_ok(json_string_value(v)))) {
		E400(op->rs, "id: must be 1-%d characters of A-Z a-z 0-9 . _ - @ :", SRV_ID_MAX);
		return;
	}
	const char *tf[] = {"expires_at", "key_expires_at"};
	for (int i = 0; i < 2; i++) {
		v = json_object_get(op->body, tf[i]);
		if (v && (!json_is_string(v) || lc_time_parse(json_string_value(v), &t) != 0)) {
			E400(op->rs, "%s: must be an RFC 3339 UTC time like 2027-01-01T00:00:00Z", tf[i]);
			return;
		}
		if (v && t <= lc_now()) {
			E400(op->rs, "%s: must be in the future", tf[i]);
			return;
		}
	}
	srv_random_hex(op->code, 24);
	srv_write(s, invite_create_txn, op);
}

static int invite_redeem_txn(struct srv *s, MDB_txn *txn, void *ctx)
{
	struct op *op = ctx;
	unsigned char h[32];
	char hx[65], kid[SRV_ID_MAX + 1], other[SRV_ID_MAX + 1];
	int rc = 1;
	MDB_val v;
	const char *sha = json_string_value(json_object_get(op->body, "sha256"));

	lc_sha256(op->id, strlen(op->id), h);
	lc_hex(h, 32, hx);
	json_t *inv = srv_get_json(txn, s->db_invites, hx);
	if (!inv) {
		E404(op->rs, "no such invite");
		return 1;
	}
	if (json_object_get(inv, "redeemed_at")) {
		srv_resp_error(op->rs, 410, "gone", "this invite was already redeemed");
		goto out;
	}
	if (json_integer_value(json_object_get(inv, "expires_at")) <= lc_now()) {
		srv_resp_error(op->rs, 410, "gone", "this invite has expired");
		goto out;
	}
	const char *want = json_string_value(json_object_get(inv, "id"));
	if (want)
		snprintf(kid, sizeof kid, "%s", want);
	else
		snprintf(kid, sizeof kid, "key-%.12s", sha);
	if (srv_get_raw(txn, s->db_keys, kid, &v) == 0) {
		E409(op->rs, "key '%s' already exists", kid);
		goto out;
	}
	if (sha_taken(s, txn, sha, NULL, other, sizeof other)) {
		E409(op->rs, "a key with this sha256 already exists ('%s')", other);
		goto out;
	}
	json_t *key = json_pack("{s:s}", "sha256", sha);
	json_t *x;
	if ((x = json_object_get(inv, "team")))
		json_object_set(key, "team", x);
	if ((x = json_object_get(inv, "key_expires_at")))
		json_object_set(key, "expires_at", x);
	json_object_set(key, "limits", json_object_get(inv, "limits"));
	rc = srv_put_json(txn, s->db_keys, kid, key);
	if (rc) {
		json_decref(key);
		rc = store_failed(op->rs, rc);
		goto out;
	}
	json_object_set_new(inv, "redeemed_at", json_integer(lc_now()));
	json_object_set_new(inv, "key", json_string(kid));
	if ((rc = srv_put_json(txn, s->db_invites, hx, inv)) != 0) {
		json_decref(key);
		rc = store_failed(op->rs, rc);
		goto out;
	}
	if ((rc = publish(s, txn, op->rs)) != 0) {
		json_decref(key);
		goto out;
	}
	json_t *o = json_pack("{s:s}", "id", kid);
	json_object_update(o, key);
	json_decref(key);
	srv_resp_json(op->rs, 201, with_version(s, txn, o));
out:
	json_decref(inv);
	return rc;
}

static void invite_redeem(struct srv *s, struct op *op)
{
	static const char *const allowed[] = {"sha256", NULL};
	if (!fields_ok(op->body, "", allowed, op->rs))
		return;
	json_t *sha = json_object_get(op->body, "sha256");
	if (!sha || !json_is_string(sha) || !sha_ok(json_string_value(sha))) {
		E400(op->rs, "sha256: required, 64 lowercase hex digits (llmcap key fingerprint)");
		return;
	}
	if (strlen(op->id) > 128) {
		E404(op->rs, "no such invite");
		return;
	}
	srv_write(s, invite_redeem_txn, op);
}

/* ---- policy ---- */

static bool etag_match(const char *inm, const char *etag)
{
	if (!inm || !*etag)
		return false;
	if (strcmp(inm, "*") == 0)
		return true;
	/* a list of tags, possibly weak (W/"...") */
	const char *p = strstr(inm, etag);
	return p != NULL;
}

static int policy_get_txn(struct srv *s, MDB_txn *txn, void *ctx)
{
	struct op *op = ctx;
	MDB_val env, etag;
	if (srv_get_raw(txn, s->db_meta, "envelope", &env) != 0 || srv_get_raw(txn, s->db_meta, "etag", &etag) != 0) {
		srv_resp_error(op->rs, 503, "api_error", "no policy published yet");
		return 0;
	}
	snprintf(op->rs->etag, sizeof op->rs->etag, "%.*s", (int)etag.mv_size, (char *)etag.mv_data);
	srv_resp_free(op->rs);
	if (etag_match(op->rq->if_none_match, op->rs->etag)) {
		op->rs->status = 304;
		return 0;
	}
	op->rs->status = 200;
	op->rs->body = malloc(env.mv_size + 1);
	if (!op->rs->body) {
		E500(op->rs, "out of memory");
		return 0;
	}
	memcpy(op->rs->body, env.mv_data, env.mv_size);
	op->rs->body[env.mv_size] = 0;
	op->rs->body_len = env.mv_size;
	return 0;
}

static int admin_policy_txn(struct srv *s, MDB_txn *txn, void *ctx)
{
	struct op *op = ctx;
	MDB_val p;
	if (srv_get_raw(txn, s->db_meta, "payload", &p) != 0) {
		srv_resp_error(op->rs, 503, "api_error", "no policy published yet");
		return 0;
	}
	json_t *j = json_loadb(p.mv_data, p.mv_size, 0, NULL);
	srv_resp_json(op->rs, 200, j ? j : json_null());
	return 0;
}

/* ---- routing ---- */

static void method_not_allowed(struct srv_resp *rs, const char *allow)
{
	srv_resp_error(rs, 405, "method_not_allowed", "method not allowed here; allowed: %s", allow);
	snprintf(rs->allow, sizeof rs->allow, "%s", allow);
}

#define MAXSEG 6

void srv_handle(struct srv *s, const struct srv_req *rq, struct srv_resp *rs)
{
	char path[1024];
	char *seg[MAXSEG + 1];
	int n = 0;
	const char *m = rq->method;
	struct op op = {.rq = rq, .rs = rs};

	memset(rs, 0, sizeof *rs);
	if (strlen(rq->path) >= sizeof path) {
		E404(rs, "no such endpoint");
		return;
	}
	snprintf(path, sizeof path, "%s", rq->path);
	for (char *save = NULL, *tok = strtok_r(path, "/", &save); tok; tok = strtok_r(NULL, "/", &save)) {
		if (n == MAXSEG) {
			E404(rs, "no such endpoint");
			return;
		}
		seg[n++] = tok;
	}
	seg[n] = NULL;
#define IS(i, str) (n > (i) && strcmp(seg[i], str) == 0)
#define METHOD(str) (strcmp(m, str) == 0)

	if (n == 1 && IS(0, "healthz")) {
		if (!METHOD("GET") && !METHOD("HEAD"))
			return method_not_allowed(rs, "GET");
		srv_resp_json(rs, 200, json_pack("{s:b}", "ok", 1));
		return;
	}
	if (!IS(0, "v1")) {
		E404(rs, "no such endpoint: %s", rq->path);
		return;
	}
	/* host calls: no admin token */
	if (n == 2 && IS(1, "policy")) {
		if (!METHOD("GET") && !METHOD("HEAD"))
			return method_not_allowed(rs, "GET");
		srv_read(s, policy_get_txn, &op);
		return;
	}
	if (n == 4 && IS(1, "invites") && IS(3, "redeem")) {
		if (!METHOD("POST"))
			return method_not_allowed(rs, "POST");
		op.id = seg[2];
		if (!(op.body = parse_body(rq, rs)))
			return;
		invite_redeem(s, &op);
		json_decref(op.body);
		return;
	}
	if (n == 2 && IS(1, "usage") && METHOD("POST")) {
		if (!srv_host_ok(s, rq->authorization)) {
			srv_resp_error(rs, 401, "authentication_error",
				       "host token required: Authorization: Bearer <token from --host-token-file>");
			rs->www_auth = true;
			return;
		}
		srv_usage_post(s, rq->body, rq->body_len, rs);
		return;
	}
	/* everything else is admin */
	bool known = (n == 2 && IS(1, "usage")) || (n >= 3 && IS(1, "admin"));
	if (!known) {
		E404(rs, "no such endpoint: %s", rq->path);
		return;
	}
	if (!srv_admin_ok(s, rq->authorization)) {
		srv_resp_error(rs, 401, "authentication_error",
			       "admin token required: Authorization: Bearer <token from --admin-token-file>");
		rs->www_auth = true;
		return;
	}
	if (n == 2) {   /* /v1/usage */
		if (!METHOD("GET"))
			return method_not_allowed(rs, "GET, POST");
		srv_usage_get(s, rs);
		return;
	}
	const char *what = seg[2];
	const char *id = n > 3 ? seg[3] : NULL;
	if (n > 4) {
		E404(rs, "no such endpoint: %s", rq->path);
		return;
	}
	if (id && !srv_id_ok(id)) {
		E400(rs, "id '%s': must be 1-%d characters of A-Z a-z 0-9 . _ - @ :", id, SRV_ID_MAX);
		return;
	}
	op.id = id;
	op.piece = what;
	bool wants_body = METHOD("POST") || METHOD("PUT") || METHOD("PATCH");

	if (strcmp(what, "keys") == 0) {
		const char *allow = id ? "GET, PATCH, DELETE" : "GET, POST";
		if (id ? !(METHOD("GET") || METHOD("PATCH") || METHOD("DELETE")) : !(METHOD("GET") || METHOD("POST")))
			return method_not_allowed(rs, allow);
	} else if (strcmp(what, "teams") == 0 || (strcmp(what, "customers") == 0 && id)) {
		const char *allow = id ? "GET, PUT, DELETE" : "GET";
		if (id ? !(METHOD("GET") || METHOD("PUT") || METHOD("DELETE")) : !METHOD("GET"))
			return method_not_allowed(rs, allow);
	} else if (strcmp(what, "org") == 0 || strcmp(what, "customers") == 0 || strcmp(what, "webhooks") == 0 ||
		   strcmp(what, "providers") == 0 || strcmp(what, "prices") == 0 || strcmp(what, "settings") == 0) {
		if (id) {
			E404(rs, "no such endpoint: %s", rq->path);
			return;
		}
		if (!(METHOD("GET") || METHOD("PUT")))
			return method_not_allowed(rs, "GET, PUT");
	} else if (strcmp(what, "invites") == 0) {
		if (id) {
			E404(rs, "no such endpoint: %s", rq->path);
			return;
		}
		if (!METHOD("POST"))
			return method_not_allowed(rs, "POST");
	} else if (strcmp(what, "policy") == 0) {
		if (id) {
			E404(rs, "no such endpoint: %s", rq->path);
			return;
		}
		if (!METHOD("GET"))
			return method_not_allowed(rs, "GET");
		srv_read(s, admin_policy_txn, &op);
		return;
	} else {
		E404(rs, "no such endpoint: %s", rq->path);
		return;
	}
	if (wants_body && !(op.body = parse_body(rq, rs)))
		return;

	if (strcmp(what, "keys") == 0) {
		if (METHOD("POST"))
			key_create(s, &op);
		else if (METHOD("GET"))
			srv_read(s, obj_get_txn, &op);
		else if (METHOD("PATCH"))
			key_patch(s, &op);
		else
			srv_write(s, key_revoke_txn, &op);
	} else if (strcmp(what, "teams") == 0 || (strcmp(what, "customers") == 0 && id)) {
		if (METHOD("GET"))
			srv_read(s, obj_get_txn, &op);
		else if (METHOD("PUT"))
			obj_put(s, &op);
		else
			srv_write(s, obj_del_txn, &op);
	} else if (strcmp(what, "invites") == 0) {
		invite_create(s, &op);
	} else if (METHOD("PUT")) {
		piece_put(s, &op);
	} else {
		srv_read(s, piece_get_txn, &op);
	}
	json_decref(op.body);
	if (rs->status == 0)
		E500(rs, "internal error");
	if (METHOD("PUT") || METHOD("POST") || METHOD("PATCH") || METHOD("DELETE"))
		srv_notifier_kick(s);   /* webhooks or limits may have changed */
#undef IS
#undef METHOD
}
