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

#include "jscan.h"
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
		if (lc_hexval((unsigned char)h[i]) < 0 || isupper((unsigned char)h[i]))
			return false;
	return true;
}

void srv_resp_store_error(struct srv_resp *rs, int rc)
{
	srv_resp_error(rs, 503, "api_error", "store: %s (nothing was changed)", srv_strerror(rc));
	rs->etag[0] = 0;
	rs->retry_at_ms = 0;
}

/* Run a transaction; a store failure replaces whatever fn answered (a failed
 * commit stored nothing, so a 200/201 from fn would be a lie). */
static void run_write(struct srv_call *c, srv_txn_fn fn, void *ctx)
{
	int rc = srv_write(c->s, fn, ctx);
	if (rc != SRV_COMMIT && rc != SRV_REFUSED)
		srv_resp_store_error(c->rs, rc);
}

static void run_read(struct srv_call *c, srv_txn_fn fn, void *ctx)
{
	int rc = srv_read(c->s, fn, ctx);
	if (rc != SRV_COMMIT && rc != SRV_REFUSED)
		srv_resp_store_error(c->rs, rc);
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

/* publish from inside a write txn: SRV_COMMIT, SRV_REFUSED (rs says why) or the store's code */
static int publish(struct srv *s, srv_txn *txn, struct srv_resp *rs)
{
	char err[1024];
	int rc = srv_publish(s, txn, err, sizeof err);
	if (rc == SRV_PUB_INVALID) {
		E400(rs, "invalid policy: %s", err);
		return SRV_REFUSED;
	}
	if (rc == SRV_PUB_FAILED) {
		E500(rs, "cannot publish: %s", err);
		return SRV_REFUSED;
	}
	return rc;
}

static json_t *with_version(struct srv *s, srv_txn *txn, json_t *obj /* stolen */)
{
	json_object_set_new(obj, "policy_version", json_integer(srv_get_int(txn, s->db_meta, "version", 0)));
	return obj;
}

/* {"id": id, ...obj} */
static json_t *with_id(const char *id, json_t *obj /* borrowed */)
{
	json_t *o = json_pack("{s:s}", "id", id);
	json_object_update(o, obj);
	return o;
}

static srv_dbi dbi_of(struct srv *s, const char *piece)
{
	return strcmp(piece, "keys") == 0 ? s->db_keys : strcmp(piece, "teams") == 0 ? s->db_teams : s->db_cust;
}

static const char *singular(const char *piece)
{
	return strcmp(piece, "keys") == 0 ? "key" : strcmp(piece, "teams") == 0 ? "team" : "customer";
}

static const char *const key_fields[] = {"sha256", "team", "expires_at", "revoked", "limits", NULL};
static const char *const team_fields[] = {"limits", NULL};

/* another key holding this sha256? copies its id into other */
static bool sha_taken(struct srv *s, srv_txn *txn, const char *sha, const char *except, char *other, size_t olen)
{
	srv_cursor *c;
	MDB_val k, v;
	bool found = false;
	if (srv_cursor_open(txn, s->db_keys, &c) != 0)
		return false;
	for (int rc = srv_cursor_get(c, &k, &v, MDB_FIRST); rc == 0 && !found; rc = srv_cursor_get(c, &k, &v, MDB_NEXT)) {
		json_t *o = json_loadb(v.mv_data, v.mv_size, 0, NULL);
		const char *h = json_string_value(json_object_get(o, "sha256"));
		if (h && strcmp(h, sha) == 0 &&
		    !(except && k.mv_size == strlen(except) && memcmp(k.mv_data, except, k.mv_size) == 0)) {
			found = true;
			snprintf(other, olen, "%.*s", (int)k.mv_size, (char *)k.mv_data);
		}
		json_decref(o);
	}
	srv_cursor_close(c);
	return found;
}

static bool sha_field_ok(json_t *body, bool required, struct srv_resp *rs)
{
	json_t *sha = json_object_get(body, "sha256");
	if ((!sha && !required) || (sha && json_is_string(sha) && sha_ok(json_string_value(sha))))
		return true;
	E400(rs, "sha256: %s64 lowercase hex digits (llmcap key fingerprint)", required ? "required, " : "");
	return false;
}

static bool id_field_ok(json_t *body, bool required, struct srv_resp *rs)
{
	json_t *id = json_object_get(body, "id");
	if ((!id && !required) || (id && json_is_string(id) && srv_id_ok(json_string_value(id))))
		return true;
	E400(rs, "id: %s1-%d characters of A-Z a-z 0-9 . _ - @ : (the policy's limit for names)",
	     required ? "required, " : "", SRV_ID_MAX);
	return false;
}

/* ---- keys, teams, customer overrides: one record per id ---- */

static int key_create_txn(struct srv *s, srv_txn *txn, void *ctx)
{
	struct srv_call *c = ctx;
	json_t *key = json_deep_copy(c->body);
	char id[SRV_ID_MAX + 1], other[SRV_ID_MAX + 1];
	const char *sha = json_string_value(json_object_get(key, "sha256"));
	MDB_val v;
	int rc = SRV_REFUSED;

	snprintf(id, sizeof id, "%s", json_string_value(json_object_get(key, "id")));
	if (srv_get_raw(txn, s->db_keys, id, &v) == 0) {
		E409(c->rs, "key '%s' already exists", id);
		goto out;
	}
	if (sha_taken(s, txn, sha, NULL, other, sizeof other)) {
		E409(c->rs, "a key with this sha256 already exists ('%s')", other);
		goto out;
	}
	json_object_del(key, "id");
	if ((rc = srv_put_json(txn, s->db_keys, id, key)) != 0 || (rc = publish(s, txn, c->rs)) != 0)
		goto out;
	srv_resp_json(c->rs, 201, with_version(s, txn, with_id(id, key)));
out:
	json_decref(key);
	return rc;
}

void srv_h_key_create(struct srv_call *c)
{
	static const char *const allowed[] = {"id", "sha256", "team", "expires_at", "revoked", "limits", NULL};
	if (id_field_ok(c->body, true, c->rs) && fields_ok(c->body, "", allowed, c->rs) &&
	    sha_field_ok(c->body, true, c->rs))
		run_write(c, key_create_txn, c);
}

static int obj_get_txn(struct srv *s, srv_txn *txn, void *ctx)
{
	struct srv_call *c = ctx;
	const char *piece = c->route->data;
	json_t *o = srv_get_json(txn, dbi_of(s, piece), c->id);
	if (!o) {
		E404(c->rs, "no %s '%s'", singular(piece), c->id);
		return SRV_REFUSED;
	}
	srv_resp_json(c->rs, 200, with_id(c->id, o));
	json_decref(o);
	return SRV_COMMIT;
}

void srv_h_obj_get(struct srv_call *c) { run_read(c, obj_get_txn, c); }

/* every record of dbi as an object id -> value */
static json_t *all_records(srv_txn *txn, srv_dbi dbi)
{
	json_t *all = json_object();
	srv_cursor *cur;
	MDB_val k, v;
	if (srv_cursor_open(txn, dbi, &cur) != 0)
		return all;
	for (int rc = srv_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0; rc = srv_cursor_get(cur, &k, &v, MDB_NEXT)) {
		char id[SRV_ID_MAX + 1];
		json_t *o = json_loadb(v.mv_data, v.mv_size, 0, NULL);
		snprintf(id, sizeof id, "%.*s", (int)k.mv_size, (char *)k.mv_data);
		if (o)
			json_object_set_new(all, id, o);
	}
	srv_cursor_close(cur);
	return all;
}

static int obj_list_txn(struct srv *s, srv_txn *txn, void *ctx)
{
	struct srv_call *c = ctx;
	const char *piece = c->route->data;
	srv_resp_json(c->rs, 200, json_pack("{s:o}", piece, all_records(txn, dbi_of(s, piece))));
	return SRV_COMMIT;
}

void srv_h_obj_list(struct srv_call *c) { run_read(c, obj_list_txn, c); }

/* Apply a PATCH body: a field replaces, null removes it. "limits" as an array
 * replaces the list; as an object it edits limits by index: {"1": {...}}
 * merges into limit 1 (null removes one of its fields), {"1": null} removes
 * limit 1, {"<number of limits>": {...}} appends one. */
static bool patch_apply(json_t *obj, json_t *patch, struct srv_resp *rs)
{
	const char *k, *idx;
	json_t *v, *chg;
	json_object_foreach(patch, k, v) {
		if (strcmp(k, "limits") != 0 || !json_is_object(v)) {
			if (json_is_null(v))
				json_object_del(obj, k);
			else
				json_object_set(obj, k, v);
			continue;
		}
		json_t *arr = json_object_get(obj, "limits");
		if (!arr) {
			arr = json_array();
			json_object_set_new(obj, "limits", arr);
		}
		size_t n = json_array_size(arr);
		bool drop[LC_MAX_LIMITS + 1] = {0};
		json_object_foreach(v, idx, chg) {
			char *end;
			long i = strtol(idx, &end, 10);
			if (*end || !*idx || i < 0 || (size_t)i > n || i > LC_MAX_LIMITS) {
				E400(rs, "limits.%s: no such limit (an index into the %zu limits, or %zu to add one)", idx, n, n);
				return false;
			}
			if ((size_t)i == n) {
				if (!json_is_object(chg)) {
					E400(rs, "limits.%s: a new limit must be an object", idx);
					return false;
				}
				json_array_append(arr, chg);
			} else if (json_is_null(chg)) {
				drop[i] = true;
			} else if (json_is_object(chg)) {
				json_t *lim = json_array_get(arr, (size_t)i);
				const char *f;
				json_t *fv;
				json_object_foreach(chg, f, fv) {
					if (json_is_null(fv))
						json_object_del(lim, f);
					else
						json_object_set(lim, f, fv);
				}
			} else {
				E400(rs, "limits.%s: must be an object (changed fields) or null (remove the limit)", idx);
				return false;
			}
		}
		for (size_t i = n; i-- > 0;)
			if (drop[i])
				json_array_remove(arr, i);
	}
	return true;
}

static int obj_patch_txn(struct srv *s, srv_txn *txn, void *ctx)
{
	struct srv_call *c = ctx;
	const char *piece = c->route->data;
	srv_dbi dbi = dbi_of(s, piece);
	json_t *o = srv_get_json(txn, dbi, c->id);
	char other[SRV_ID_MAX + 1];
	int rc = SRV_REFUSED;
	if (!o) {
		E404(c->rs, "no %s '%s'", singular(piece), c->id);
		return SRV_REFUSED;
	}
	if (!patch_apply(o, c->body, c->rs))
		goto out;
	const char *sha = json_string_value(json_object_get(o, "sha256"));
	if (dbi == s->db_keys && sha && sha_taken(s, txn, sha, c->id, other, sizeof other)) {
		E409(c->rs, "a key with this sha256 already exists ('%s')", other);
		goto out;
	}
	if ((rc = srv_put_json(txn, dbi, c->id, o)) != 0 || (rc = publish(s, txn, c->rs)) != 0)
		goto out;
	srv_resp_json(c->rs, 200, with_version(s, txn, with_id(c->id, o)));
out:
	json_decref(o);
	return rc;
}

void srv_h_obj_patch(struct srv_call *c)
{
	bool keys = strcmp(c->route->data, "keys") == 0;
	if (fields_ok(c->body, "", keys ? key_fields : team_fields, c->rs) && (!keys || sha_field_ok(c->body, false, c->rs)))
		run_write(c, obj_patch_txn, c);
}

static int key_revoke_txn(struct srv *s, srv_txn *txn, void *ctx)
{
	struct srv_call *c = ctx;
	json_t *key = srv_get_json(txn, s->db_keys, c->id);
	int rc;
	if (!key) {
		E404(c->rs, "no key '%s'", c->id);
		return SRV_REFUSED;
	}
	json_object_set_new(key, "revoked", json_true());
	if ((rc = srv_put_json(txn, s->db_keys, c->id, key)) == 0 && (rc = publish(s, txn, c->rs)) == 0)
		srv_resp_json(c->rs, 200, with_version(s, txn, with_id(c->id, key)));
	json_decref(key);
	return rc;
}

void srv_h_key_revoke(struct srv_call *c) { run_write(c, key_revoke_txn, c); }

/* PUT replaces a team or a customer override */
static int obj_put_txn(struct srv *s, srv_txn *txn, void *ctx)
{
	struct srv_call *c = ctx;
	srv_dbi dbi = dbi_of(s, c->route->data);
	MDB_val v;
	bool existed = srv_get_raw(txn, dbi, c->id, &v) == 0;
	int rc;
	if ((rc = srv_put_json(txn, dbi, c->id, c->body)) != 0 || (rc = publish(s, txn, c->rs)) != 0)
		return rc;
	srv_resp_json(c->rs, existed ? 200 : 201, with_version(s, txn, with_id(c->id, c->body)));
	return SRV_COMMIT;
}

void srv_h_obj_put(struct srv_call *c) { run_write(c, obj_put_txn, c); }

/* the first key naming team, into key (refuse deleting a team in use: clearer than the parser) */
static bool team_in_use(struct srv *s, srv_txn *txn, const char *team, char *key, size_t keylen)
{
	srv_cursor *cur;
	MDB_val k, v;
	bool uses = false;
	if (srv_cursor_open(txn, s->db_keys, &cur) != 0)
		return false;
	for (int r = srv_cursor_get(cur, &k, &v, MDB_FIRST); r == 0 && !uses; r = srv_cursor_get(cur, &k, &v, MDB_NEXT)) {
		json_t *o = json_loadb(v.mv_data, v.mv_size, 0, NULL);
		const char *t = json_string_value(json_object_get(o, "team"));
		if ((uses = t && strcmp(t, team) == 0))
			snprintf(key, keylen, "%.*s", (int)k.mv_size, (char *)k.mv_data);
		json_decref(o);
	}
	srv_cursor_close(cur);
	return uses;
}

static int obj_del_txn(struct srv *s, srv_txn *txn, void *ctx)
{
	struct srv_call *c = ctx;
	const char *piece = c->route->data;
	char key[SRV_ID_MAX + 1];
	int rc = srv_del(txn, dbi_of(s, piece), c->id);
	if (rc == MDB_NOTFOUND) {
		E404(c->rs, "no %s '%s'", singular(piece), c->id);
		return SRV_REFUSED;
	}
	if (rc)
		return rc;
	if (strcmp(piece, "teams") == 0 && team_in_use(s, txn, c->id, key, sizeof key)) {
		E409(c->rs, "team '%s' is still used by key '%s'", c->id, key);
		return SRV_REFUSED;
	}
	if ((rc = publish(s, txn, c->rs)) != 0)
		return rc;
	srv_resp_json(c->rs, 200, with_version(s, txn, json_pack("{s:s,s:b}", "id", c->id, "deleted", 1)));
	return SRV_COMMIT;
}

void srv_h_obj_del(struct srv_call *c) { run_write(c, obj_del_txn, c); }

/* ---- whole pieces: org, customers, webhooks, providers, prices, settings ---- */

/* pieces sent wrapped: {"webhooks": [...]}, {"providers": [...]}, {"prices": {...}} */
static bool wrapped(const char *piece)
{
	return strcmp(piece, "webhooks") == 0 || strcmp(piece, "providers") == 0 || strcmp(piece, "prices") == 0;
}

static int piece_put_txn(struct srv *s, srv_txn *txn, void *ctx)
{
	struct srv_call *c = ctx;
	const char *piece = c->route->data;
	json_t *val = wrapped(piece) ? json_object_get(c->body, piece) : c->body;
	int rc;
	if ((rc = srv_put_json(txn, s->db_meta, piece, val)) != 0 || (rc = publish(s, txn, c->rs)) != 0)
		return rc;
	srv_resp_json(c->rs, 200, with_version(s, txn, json_pack("{s:O}", piece, val)));
	return SRV_COMMIT;
}

void srv_h_piece_put(struct srv_call *c)
{
	const char *p = c->route->data;
	if (wrapped(p)) {
		const char *const allowed[] = {p, NULL};
		json_t *v = json_object_get(c->body, p);
		if (!fields_ok(c->body, "", allowed, c->rs))
			return;
		if (strcmp(p, "prices") == 0 ? !json_is_object(v) : !json_is_array(v)) {
			E400(c->rs, "%s: required (%s)", p, strcmp(p, "prices") == 0 ? "object" : "array");
			return;
		}
	} else if (strcmp(p, "settings") == 0) {
		static const char *const allowed[] = {"unknown_keys", "unknown_models", "price_book", "web_search_max_uses",
						      "web_search_unbounded", "policy_lifetime_days", "leases",
						      "lease_ttl_seconds", NULL};
		if (!fields_ok(c->body, "settings", allowed, c->rs))
			return;
		json_t *l = json_object_get(c->body, "leases"), *t = json_object_get(c->body, "lease_ttl_seconds");
		if (l && !json_is_boolean(l)) {
			E400(c->rs, "settings.leases: must be true or false");
			return;
		}
		if (t && (!json_is_integer(t) || json_integer_value(t) < 1 || json_integer_value(t) > SRV_LEASE_TTL_MAX)) {
			E400(c->rs, "settings.lease_ttl_seconds: an integer from 1 to %d", SRV_LEASE_TTL_MAX);
			return;
		}
		json_t *d = json_object_get(c->body, "policy_lifetime_days");
		if (d && (!json_is_number(d) || json_number_value(d) * 86400 < 60 || json_number_value(d) > 3650)) {
			E400(c->rs, "settings.policy_lifetime_days: a number of days, at least 60 seconds' worth, at most 3650");
			return;
		}
	} else if (strcmp(p, "customers") == 0 && json_object_get(c->body, "overrides")) {
		E400(c->rs, "customers.overrides: set one customer with PUT /v1/admin/customers/{id}");
		return;
	}
	run_write(c, piece_put_txn, c);
}

static int piece_get_txn(struct srv *s, srv_txn *txn, void *ctx)
{
	struct srv_call *c = ctx;
	const char *piece = c->route->data;
	json_t *v = srv_get_json(txn, s->db_meta, piece);
	if (strcmp(piece, "providers") == 0 && json_array_size(v) == 0) {
		/* none stored: the defaults the policy carries */
		json_t *doc = srv_policy_build(s, txn, 0, lc_now(), NULL, 0);
		json_decref(v);
		v = json_incref(json_object_get(doc, "providers"));
		json_decref(doc);
	}
	if (wrapped(piece)) {
		if (!v)
			v = strcmp(piece, "prices") == 0 ? json_object() : json_array();
		srv_resp_json(c->rs, 200, json_pack("{s:o}", piece, v));
		return SRV_COMMIT;
	}
	if (!v)
		v = json_object();
	if (strcmp(piece, "customers") == 0)   /* the defaults and every per-customer override */
		json_object_set_new(v, "overrides", all_records(txn, s->db_cust));
	srv_resp_json(c->rs, 200, v);
	return SRV_COMMIT;
}

void srv_h_piece_get(struct srv_call *c) { run_read(c, piece_get_txn, c); }

/* ---- invites: stored under hex(sha256(code)); their id is its first 16 hex digits ---- */

#define INVITE_ID_LEN 16

struct invite_op {
	struct srv_call *c;
	char code[64];
	char hash[65];
};

static json_t *invite_view(const char *hash, json_t *inv, int64_t now)
{
	char t[32];
	json_t *o = json_pack("{s:s%}", "id", hash, (size_t)INVITE_ID_LEN);
	const char *status = json_object_get(inv, "revoked_at")    ? "revoked"
			     : json_object_get(inv, "redeemed_at") ? "redeemed"
			     : json_integer_value(json_object_get(inv, "expires_at")) <= now ? "expired" : "open";
	json_object_set_new(o, "status", json_string(status));
	const char *const copy[] = {"team", "limits", "key_expires_at", "key"};
	for (size_t i = 0; i < sizeof copy / sizeof copy[0]; i++)
		if (json_object_get(inv, copy[i]))
			json_object_set(o, copy[i], json_object_get(inv, copy[i]));
	if (!json_object_get(o, "key") && json_object_get(inv, "id"))
		json_object_set(o, "key", json_object_get(inv, "id"));   /* the id the key will get */
	const char *const times[] = {"created_at", "expires_at", "redeemed_at", "revoked_at"};
	for (size_t i = 0; i < sizeof times / sizeof times[0]; i++) {
		json_t *x = json_object_get(inv, times[i]);
		if (json_is_integer(x)) {
			lc_time_format(json_integer_value(x), t);
			json_object_set_new(o, times[i], json_string(t));
		}
	}
	return o;
}

static int invite_create_txn(struct srv *s, srv_txn *txn, void *ctx)
{
	struct invite_op *op = ctx;
	struct srv_call *c = op->c;
	json_t *team = json_object_get(c->body, "team");
	json_t *kid = json_object_get(c->body, "id");
	MDB_val v;
	unsigned char h[32];
	int rc;

	if (team && srv_get_raw(txn, s->db_teams, json_string_value(team), &v) != 0) {
		E400(c->rs, "team: no team '%s'", json_string_value(team));
		return SRV_REFUSED;
	}
	if (kid && srv_get_raw(txn, s->db_keys, json_string_value(kid), &v) == 0) {
		E409(c->rs, "key '%s' already exists", json_string_value(kid));
		return SRV_REFUSED;
	}
	int64_t now = lc_now(), exp = now + INVITE_DEFAULT_TTL;
	json_t *e = json_object_get(c->body, "expires_at");
	if (e)
		lc_time_parse(json_string_value(e), &exp);
	json_t *inv = json_deep_copy(c->body);
	json_object_set_new(inv, "expires_at", json_integer(exp));
	json_object_set_new(inv, "created_at", json_integer(now));
	lc_sha256(op->code, strlen(op->code), h);
	lc_hex(h, 32, op->hash);
	rc = srv_put_json(txn, s->db_invites, op->hash, inv);
	if (rc == 0) {
		char path[160];
		json_t *o = invite_view(op->hash, inv, now);
		snprintf(path, sizeof path, "/v1/invites/%s/redeem", op->code);
		json_object_set_new(o, "code", json_string(op->code));
		json_object_set_new(o, "redeem", json_string(path));
		srv_resp_json(c->rs, 201, o);
	}
	json_decref(inv);
	return rc;
}

void srv_h_invite_create(struct srv_call *c)
{
	static const char *const allowed[] = {"limits", "team", "expires_at", "key_expires_at", "id", NULL};
	struct lc_limit lim[LC_MAX_LIMITS];
	struct invite_op op = {.c = c};
	int n = 0;
	char err[512];
	int64_t t;

	if (!fields_ok(c->body, "", allowed, c->rs))
		return;
	json_t *l = json_object_get(c->body, "limits");
	if (!l) {
		E400(c->rs, "limits: required (array of limits)");
		return;
	}
	if (lc_limits_parse(l, "limits", lim, &n, err, sizeof err) != 0) {
		E400(c->rs, "%s", err);
		return;
	}
	json_t *v = json_object_get(c->body, "team");
	if (v && !json_is_string(v)) {
		E400(c->rs, "team: must be a string");
		return;
	}
	if (!id_field_ok(c->body, false, c->rs))
		return;
	const char *tf[] = {"expires_at", "key_expires_at"};
	for (int i = 0; i < 2; i++) {
		v = json_object_get(c->body, tf[i]);
		if (v && (!json_is_string(v) || lc_time_parse(json_string_value(v), &t) != 0)) {
			E400(c->rs, "%s: must be an RFC 3339 UTC time like 2027-01-01T00:00:00Z", tf[i]);
			return;
		}
		if (v && t <= lc_now()) {
			E400(c->rs, "%s: must be in the future", tf[i]);
			return;
		}
	}
	srv_random_hex(op.code, 24);
	run_write(c, invite_create_txn, &op);
}

static int invite_list_txn(struct srv *s, srv_txn *txn, void *ctx)
{
	struct srv_call *c = ctx;
	json_t *arr = json_array();
	srv_cursor *cur;
	MDB_val k, v;
	int64_t now = lc_now();
	int rc;
	if ((rc = srv_cursor_open(txn, s->db_invites, &cur)) != 0) {
		json_decref(arr);
		return rc;
	}
	for (int r = srv_cursor_get(cur, &k, &v, MDB_FIRST); r == 0; r = srv_cursor_get(cur, &k, &v, MDB_NEXT)) {
		char hash[65];
		json_t *inv = json_loadb(v.mv_data, v.mv_size, 0, NULL);
		snprintf(hash, sizeof hash, "%.*s", (int)k.mv_size, (char *)k.mv_data);
		if (inv)
			json_array_append_new(arr, invite_view(hash, inv, now));
		json_decref(inv);
	}
	srv_cursor_close(cur);
	srv_resp_json(c->rs, 200, json_pack("{s:o}", "invites", arr));
	return SRV_COMMIT;
}

void srv_h_invite_list(struct srv_call *c) { run_read(c, invite_list_txn, c); }

/* the stored invite for a code or an invite id; its hash into op->hash */
static json_t *invite_find(struct srv *s, srv_txn *txn, const char *code_or_id, struct invite_op *op)
{
	size_t n = strlen(code_or_id);
	if (n == INVITE_ID_LEN) {
		srv_cursor *cur;
		MDB_val k = {n, (void *)code_or_id}, v;
		json_t *inv = NULL;
		if (srv_cursor_open(txn, s->db_invites, &cur) != 0)
			return NULL;
		if (srv_cursor_get(cur, &k, &v, MDB_SET_RANGE) == 0 && k.mv_size == 64 &&
		    memcmp(k.mv_data, code_or_id, n) == 0) {
			snprintf(op->hash, sizeof op->hash, "%.*s", (int)k.mv_size, (char *)k.mv_data);
			inv = json_loadb(v.mv_data, v.mv_size, 0, NULL);
		}
		srv_cursor_close(cur);
		return inv;
	}
	unsigned char h[32];
	lc_sha256(code_or_id, n, h);
	lc_hex(h, 32, op->hash);
	return srv_get_json(txn, s->db_invites, op->hash);
}

static int invite_revoke_txn(struct srv *s, srv_txn *txn, void *ctx)
{
	struct invite_op *op = ctx;
	struct srv_call *c = op->c;
	json_t *inv = invite_find(s, txn, c->param[0], op);
	int rc = SRV_REFUSED;
	if (!inv) {
		E404(c->rs, "no such invite");
		return SRV_REFUSED;
	}
	if (json_object_get(inv, "redeemed_at")) {
		E409(c->rs, "this invite was already redeemed (key '%s'): revoke the key instead",
		     json_string_value(json_object_get(inv, "key")));
		goto out;
	}
	if (!json_object_get(inv, "revoked_at"))
		json_object_set_new(inv, "revoked_at", json_integer(lc_now()));
	if ((rc = srv_put_json(txn, s->db_invites, op->hash, inv)) == 0)
		srv_resp_json(c->rs, 200, invite_view(op->hash, inv, lc_now()));
out:
	json_decref(inv);
	return rc;
}

void srv_h_invite_revoke(struct srv_call *c)
{
	struct invite_op op = {.c = c};
	run_write(c, invite_revoke_txn, &op);
}

static int invite_redeem_txn(struct srv *s, srv_txn *txn, void *ctx)
{
	struct invite_op *op = ctx;
	struct srv_call *c = op->c;
	char kid[SRV_ID_MAX + 1], other[SRV_ID_MAX + 1];
	int rc = SRV_REFUSED;
	MDB_val v;
	const char *sha = json_string_value(json_object_get(c->body, "sha256"));
	json_t *inv = NULL, *key = NULL, *x;

	if (strlen(c->param[0]) == INVITE_ID_LEN || !(inv = invite_find(s, txn, c->param[0], op))) {
		E404(c->rs, "no such invite");   /* only the code redeems, never the id */
		return SRV_REFUSED;
	}
	if (json_object_get(inv, "revoked_at")) {
		srv_resp_error(c->rs, 410, "gone", "this invite was revoked");
		goto out;
	}
	if (json_object_get(inv, "redeemed_at")) {
		srv_resp_error(c->rs, 410, "gone", "this invite was already redeemed");
		goto out;
	}
	if (json_integer_value(json_object_get(inv, "expires_at")) <= lc_now()) {
		srv_resp_error(c->rs, 410, "gone", "this invite has expired");
		goto out;
	}
	const char *want = json_string_value(json_object_get(inv, "id"));
	if (want)
		snprintf(kid, sizeof kid, "%s", want);
	else
		snprintf(kid, sizeof kid, "key-%.12s", sha);
	if (srv_get_raw(txn, s->db_keys, kid, &v) == 0) {
		E409(c->rs, "key '%s' already exists", kid);
		goto out;
	}
	if (sha_taken(s, txn, sha, NULL, other, sizeof other)) {
		E409(c->rs, "a key with this sha256 already exists ('%s')", other);
		goto out;
	}
	key = json_pack("{s:s}", "sha256", sha);
	if ((x = json_object_get(inv, "team")))
		json_object_set(key, "team", x);
	if ((x = json_object_get(inv, "key_expires_at")))
		json_object_set(key, "expires_at", x);
	json_object_set(key, "limits", json_object_get(inv, "limits"));
	json_object_set_new(inv, "redeemed_at", json_integer(lc_now()));
	json_object_set_new(inv, "key", json_string(kid));
	if ((rc = srv_put_json(txn, s->db_keys, kid, key)) != 0 || (rc = srv_put_json(txn, s->db_invites, op->hash, inv)) != 0 ||
	    (rc = publish(s, txn, c->rs)) != 0)
		goto out;
	srv_resp_json(c->rs, 201, with_version(s, txn, with_id(kid, key)));
out:
	json_decref(key);
	json_decref(inv);
	return rc;
}

void srv_h_invite_redeem(struct srv_call *c)
{
	static const char *const allowed[] = {"sha256", NULL};
	struct invite_op op = {.c = c};
	if (fields_ok(c->body, "", allowed, c->rs) && sha_field_ok(c->body, true, c->rs))
		run_write(c, invite_redeem_txn, &op);
}

/* ---- policy ---- */

static bool etag_match(const char *inm, const char *etag)
{
	if (!inm || !*etag)
		return false;
	if (strcmp(inm, "*") == 0)
		return true;
	return strstr(inm, etag) != NULL;   /* a list of tags, possibly weak (W/"...") */
}

static int policy_get_txn(struct srv *s, srv_txn *txn, void *ctx)
{
	struct srv_call *c = ctx;
	struct srv_resp *rs = c->rs;
	MDB_val env, etag;
	if (srv_get_raw(txn, s->db_meta, "envelope", &env) != 0 || srv_get_raw(txn, s->db_meta, "etag", &etag) != 0) {
		srv_resp_error(rs, 503, "api_error", "no policy published yet");
		return SRV_COMMIT;
	}
	srv_resp_free(rs);
	snprintf(rs->etag, sizeof rs->etag, "%.*s", (int)etag.mv_size, (char *)etag.mv_data);
	if (etag_match(c->rq->if_none_match, rs->etag)) {
		rs->status = 304;
		return SRV_COMMIT;
	}
	if (!(rs->body = malloc(env.mv_size + 1))) {
		E500(rs, "out of memory");
		return SRV_COMMIT;
	}
	rs->status = 200;
	memcpy(rs->body, env.mv_data, env.mv_size);
	rs->body[env.mv_size] = 0;
	rs->body_len = env.mv_size;
	return SRV_COMMIT;
}

/* GET /v1/policy[?wait=N]: with If-None-Match naming the current policy and
 * a wait, no answer until the policy changes or N seconds have passed (304). */
void srv_h_policy(struct srv_call *c)
{
	const char *w = srv_req_arg(c->rq, "wait");
	long wait_s = 0;
	if (w) {
		char *end;
		wait_s = strtol(w, &end, 10);
		if (!*w || *end || wait_s < 0) {
			E400(c->rs, "wait: whole seconds, 0 to %d", SRV_LONGPOLL_MAX_S);
			return;
		}
		if (wait_s > SRV_LONGPOLL_MAX_S)
			wait_s = SRV_LONGPOLL_MAX_S;
	}
	run_read(c, policy_get_txn, c);
	if (c->rs->status != 304 || wait_s == 0)
		return;
	int64_t now = lc_now_ms(), start = c->rq->start_ms ? c->rq->start_ms : now;
	pthread_mutex_lock(&c->s->pub_mu);
	bool stopping = c->s->pub_stopping;
	pthread_mutex_unlock(&c->s->pub_mu);
	if (now < start + wait_s * 1000 && !stopping) {
		c->rs->status = 0;
		c->rs->retry_at_ms = start + wait_s * 1000;
	}
}

static int admin_policy_txn(struct srv *s, srv_txn *txn, void *ctx)
{
	struct srv_call *c = ctx;
	MDB_val p;
	if (srv_get_raw(txn, s->db_meta, "payload", &p) != 0) {
		srv_resp_error(c->rs, 503, "api_error", "no policy published yet");
		return SRV_COMMIT;
	}
	json_t *j = json_loadb(p.mv_data, p.mv_size, 0, NULL);
	srv_resp_json(c->rs, 200, j ? j : json_null());
	return SRV_COMMIT;
}

void srv_h_admin_policy(struct srv_call *c) { run_read(c, admin_policy_txn, c); }

/* ---- health and usage ---- */

void srv_h_healthz(struct srv_call *c) { srv_resp_json(c->rs, 200, json_pack("{s:b}", "ok", 1)); }
void srv_h_usage_post(struct srv_call *c) { srv_usage_post(c->s, c->host, c->rq->body, c->rq->body_len, c->rs); }
void srv_h_usage_get(struct srv_call *c)
{
	srv_usage_get(c->s, srv_req_arg(c->rq, "by"), srv_req_arg(c->rq, "window"), c->rs);
}
