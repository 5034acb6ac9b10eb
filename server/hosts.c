/* hosts.c - every host has its own credential.
 *
 * An admin asks for a one-time enrolment code (POST /v1/admin/hosts/enroll);
 * the host exchanges it (POST /v1/hosts/enroll {"code"}) for a host id and a
 * secret, which `llmcap agent enroll` keeps in the state directory. Every
 * host write (usage reports, events) then carries "Authorization: Bearer
 * <host id>.<secret>". The store keeps the SHA-256 of the code and of the
 * secret, never either one. Removing a host (DELETE /v1/admin/hosts/{id})
 * refuses its credential from then on; what it reported stays counted.
 *
 * POST /v1/events: a host's events (its outbox), notified by the server as
 * the one sender of every notification; idempotent by (host, event id), so
 * the agent may upload the same event again after a crash.
 */
#include <ctype.h>
#include <inttypes.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "srv.h"
#include "util.h"

#define ENROLL_TTL_DEFAULT (24 * 3600)
#define ENROLL_TTL_MAX (30 * 86400)
#define SECRET_HEX 64              /* 32 random bytes */
#define LABEL_MAX 128
#define EVENTS_MAX 256             /* per upload */
#define EVENT_ID_MAX 64

#define E400(rs, ...) srv_resp_error(rs, 400, "invalid_request_error", __VA_ARGS__)

static void hash_hex(const char *s, size_t n, char out[65])
{
	unsigned char h[32];
	lc_sha256(s, n, h);
	lc_hex(h, 32, out);
}

/* ---- authentication ---- */

struct auth_op {
	const char *host;
	const char *secret_hash;   /* hex */
	int verdict;               /* 0 ok, 1 unknown, 2 wrong secret, 3 removed */
};

static int auth_txn(struct srv *s, srv_txn *txn, void *ctx)
{
	struct auth_op *op = ctx;
	json_t *rec = srv_get_json(txn, s->db_hostcreds, op->host);
	const char *h = json_string_value(json_object_get(rec, "hash"));
	char want[65] = {0};
	op->verdict = 1;
	if (h && strlen(h) == 64) {
		memcpy(want, h, 64);
		op->verdict = sodium_memcmp(want, op->secret_hash, 64) == 0 ? 0 : 2;
		if (op->verdict == 0 && json_object_get(rec, "removed_at"))
			op->verdict = 3;
	}
	json_decref(rec);
	return SRV_COMMIT;
}

bool srv_host_auth(struct srv *s, const char *auth, char *host, struct srv_resp *rs)
{
	char tok[SRV_ID_MAX + SECRET_HEX + 8], hx[65];
	host[0] = 0;
	if (!auth || strncasecmp(auth, "Bearer ", 7) != 0) {
		srv_resp_error(rs, 401, "authentication_error",
			       "host credential required: Authorization: Bearer <host id>.<secret> (llmcap agent enroll)");
		rs->www_auth = true;
		return false;
	}
	auth += 7;
	while (*auth == ' ')
		auth++;
	size_t n = strcspn(auth, " \t\r\n");
	char *dot;
	if (n >= sizeof tok || n < SECRET_HEX + 2) {
		srv_resp_error(rs, 401, "authentication_error", "not a host credential (llmcap agent enroll)");
		rs->www_auth = true;
		return false;
	}
	memcpy(tok, auth, n);
	tok[n] = 0;
	dot = strrchr(tok, '.');
	if (!dot || strlen(dot + 1) != SECRET_HEX || (*dot = 0, !srv_id_ok(tok))) {
		sodium_memzero(tok, sizeof tok);
		srv_resp_error(rs, 401, "authentication_error", "not a host credential (llmcap agent enroll)");
		rs->www_auth = true;
		return false;
	}
	hash_hex(dot + 1, SECRET_HEX, hx);
	sodium_memzero(dot + 1, SECRET_HEX);
	struct auth_op op = {.host = tok, .secret_hash = hx};
	int rc = srv_read(s, auth_txn, &op);
	if (rc != 0) {
		srv_resp_store_error(rs, rc);
		return false;
	}
	if (op.verdict == 0) {
		snprintf(host, SRV_ID_MAX + 1, "%s", tok);
		return true;
	}
	if (op.verdict == 3)
		srv_resp_error(rs, 401, "authentication_error", "host '%s' was removed (DELETE /v1/admin/hosts); enrol it "
			       "again with a new code", tok);
	else
		srv_resp_error(rs, 401, "authentication_error", "unknown host credential");
	rs->www_auth = true;
	return false;
}

/* ---- enrolment ---- */

struct enroll_op {
	struct srv_call *c;
	char code[64];
	char hash[65];
	int64_t ttl;
	const char *label;
	char host[SRV_ID_MAX + 1];
	char secret[SECRET_HEX + 1];
};

static int code_txn(struct srv *s, srv_txn *txn, void *ctx)
{
	struct enroll_op *op = ctx;
	int64_t now = lc_now();
	char t[32];
	json_t *rec = json_pack("{s:I,s:I}", "created_at", (json_int_t)now, "expires_at", (json_int_t)(now + op->ttl));
	if (op->label)
		json_object_set_new(rec, "label", json_string(op->label));
	int rc = srv_put_json(txn, s->db_enroll, op->hash, rec);
	json_decref(rec);
	if (rc == 0) {
		lc_time_format(now + op->ttl, t);
		json_t *o = json_pack("{s:s,s:s,s:s%}", "code", op->code, "expires_at", t, "id", op->hash, (size_t)16);
		if (op->label)
			json_object_set_new(o, "label", json_string(op->label));
		srv_resp_json(op->c->rs, 201, o);
	}
	return rc;
}

static bool label_ok(json_t *v)
{
	if (!json_is_string(v) || json_string_length(v) == 0 || json_string_length(v) > LABEL_MAX ||
	    strlen(json_string_value(v)) != json_string_length(v))
		return false;
	for (const char *p = json_string_value(v); *p; p++)
		if ((unsigned char)*p < 0x20 || *p == 0x7f)
			return false;
	return true;
}

/* POST /v1/admin/hosts/enroll [{"expires_in_s": N, "label": "..."}] */
void srv_h_host_enroll_code(struct srv_call *c)
{
	struct enroll_op op = {.c = c, .ttl = ENROLL_TTL_DEFAULT};
	json_t *body = NULL;
	if (c->rq->body_len) {
		json_error_t je;
		body = json_loadb(c->rq->body, c->rq->body_len, JSON_REJECT_DUPLICATES, &je);
		if (!json_is_object(body)) {
			E400(c->rs, "body: a JSON object {\"expires_in_s\"?, \"label\"?} (or none)");
			goto out;
		}
		const char *k;
		json_t *v;
		json_object_foreach(body, k, v) {
			if (strcmp(k, "expires_in_s") && strcmp(k, "label")) {
				E400(c->rs, "%.64s: unknown field", k);
				goto out;
			}
		}
		v = json_object_get(body, "expires_in_s");
		if (v && (!json_is_integer(v) || json_integer_value(v) < 60 || json_integer_value(v) > ENROLL_TTL_MAX)) {
			E400(c->rs, "expires_in_s: an integer from 60 to %d (30 days)", ENROLL_TTL_MAX);
			goto out;
		}
		if (v)
			op.ttl = json_integer_value(v);
		v = json_object_get(body, "label");
		if (v && !label_ok(v)) {
			E400(c->rs, "label: 1-%d printable characters", LABEL_MAX);
			goto out;
		}
		op.label = json_string_value(v);
	}
	srv_random_hex(op.code, 24);
	hash_hex(op.code, strlen(op.code), op.hash);
	int rc = srv_write(c->s, code_txn, &op);
	if (rc != 0 && rc != SRV_REFUSED)
		srv_resp_store_error(c->rs, rc);
out:
	sodium_memzero(op.code, sizeof op.code);
	json_decref(body);
}

static int enroll_txn(struct srv *s, srv_txn *txn, void *ctx)
{
	struct enroll_op *op = ctx;
	struct srv_resp *rs = op->c->rs;
	int64_t now = lc_now();
	json_t *code = srv_get_json(txn, s->db_enroll, op->hash), *rec = NULL;
	char sh[65];
	int rc;

	if (!code) {
		srv_resp_error(rs, 404, "not_found_error", "no such enrolment code");
		return SRV_REFUSED;
	}
	if (json_object_get(code, "used_at")) {
		json_decref(code);
		srv_resp_error(rs, 410, "gone", "this enrolment code was already used");
		return SRV_REFUSED;
	}
	if (json_integer_value(json_object_get(code, "expires_at")) <= now) {
		json_decref(code);
		srv_resp_error(rs, 410, "gone", "this enrolment code has expired");
		return SRV_REFUSED;
	}
	if (op->host[0]) {
		rec = srv_get_json(txn, s->db_hostcreds, op->host);
		if (rec && json_object_get(rec, "hash") && !json_object_get(rec, "removed_at")) {
			json_decref(rec);
			json_decref(code);
			srv_resp_error(rs, 409, "conflict_error", "host '%s' is enrolled already (DELETE /v1/admin/hosts/%s "
				       "first to enrol it again)", op->host, op->host);
			return SRV_REFUSED;
		}
		json_decref(rec);   /* a removed host enrolled again: a new secret, the old one stays refused */
	} else {
		srv_random_hex(op->host, 16);
	}
	srv_random_hex(op->secret, SECRET_HEX / 2);
	hash_hex(op->secret, SECRET_HEX, sh);
	rec = json_pack("{s:s,s:I}", "hash", sh, "enrolled_at", (json_int_t)now);
	/* the admin's label (on the code) before the host's own (its hostname) */
	const char *label = json_string_value(json_object_get(code, "label"));
	if (!label)
		label = op->label;
	if (label)
		json_object_set_new(rec, "label", json_string(label));
	json_object_set_new(code, "used_at", json_integer(now));
	json_object_set_new(code, "host_id", json_string(op->host));
	if ((rc = srv_put_json(txn, s->db_hostcreds, op->host, rec)) == 0 &&
	    (rc = srv_put_json(txn, s->db_enroll, op->hash, code)) == 0) {
		char cred[SRV_ID_MAX + SECRET_HEX + 2];
		snprintf(cred, sizeof cred, "%s.%s", op->host, op->secret);
		srv_resp_json(rs, 201, json_pack("{s:s,s:s}", "host_id", op->host, "credential", cred));
		sodium_memzero(cred, sizeof cred);
	}
	json_decref(rec);
	json_decref(code);
	return rc;
}

/* POST /v1/hosts/enroll {"code", "host_id"?, "label"?}: no token, the code is the secret */
void srv_h_host_enroll(struct srv_call *c)
{
	struct enroll_op op = {.c = c};
	const char *k;
	json_t *v;
	json_object_foreach(c->body, k, v) {
		if (strcmp(k, "code") && strcmp(k, "host_id") && strcmp(k, "label")) {
			E400(c->rs, "%.64s: unknown field", k);
			return;
		}
	}
	v = json_object_get(c->body, "code");
	if (!json_is_string(v) || json_string_length(v) == 0 || json_string_length(v) > 128) {
		E400(c->rs, "code: required (the code from POST /v1/admin/hosts/enroll)");
		return;
	}
	hash_hex(json_string_value(v), json_string_length(v), op.hash);
	v = json_object_get(c->body, "host_id");
	if (v) {
		if (!json_is_string(v) || !srv_id_ok(json_string_value(v)) || strchr(json_string_value(v), '|')) {
			E400(c->rs, "host_id: 1-%d characters of A-Z a-z 0-9 . _ - @ :", SRV_ID_MAX);
			return;
		}
		snprintf(op.host, sizeof op.host, "%s", json_string_value(v));
	}
	v = json_object_get(c->body, "label");
	if (v && !label_ok(v)) {
		E400(c->rs, "label: 1-%d printable characters", LABEL_MAX);
		return;
	}
	op.label = json_string_value(v);
	int rc = srv_write(c->s, enroll_txn, &op);
	sodium_memzero(op.secret, sizeof op.secret);
	if (rc != 0 && rc != SRV_REFUSED)
		srv_resp_store_error(c->rs, rc);
	else if (rc == 0)
		lc_log(LC_LOG_INFO, "llmcap-server: host %s enrolled", op.host);
}

/* ---- listing and removal ---- */

static json_t *host_view(struct srv *s, srv_txn *txn, const char *id, json_t *rec)
{
	char t[32], pre[SRV_ID_MAX + 2];
	json_t *o = json_pack("{s:s}", "id", id);
	const char *status = !rec || !json_object_get(rec, "hash") ? "not_enrolled"
			     : json_object_get(rec, "removed_at")  ? "removed" : "active";
	if (rec && json_object_get(rec, "removed_at") && !json_object_get(rec, "hash"))
		status = "removed";
	json_object_set_new(o, "status", json_string(status));
	if (json_object_get(rec, "label"))
		json_object_set(o, "label", json_object_get(rec, "label"));
	const char *const times[] = {"enrolled_at", "removed_at"};
	for (size_t i = 0; i < 2; i++) {
		json_t *x = json_object_get(rec, times[i]);
		if (json_is_integer(x)) {
			lc_time_format(json_integer_value(x), t);
			json_object_set_new(o, times[i], json_string(t));
		}
	}
	/* its usage records (one per epoch): the newest report */
	srv_cursor *cur;
	MDB_val k, v;
	int64_t last = 0;
	json_int_t seq = -1;
	char epoch[80] = "";
	snprintf(pre, sizeof pre, "%s|", id);
	if (srv_cursor_open(txn, s->db_hosts, &cur) == 0) {
		k.mv_data = pre;
		k.mv_size = strlen(pre);
		for (int rc = srv_cursor_get(cur, &k, &v, MDB_SET_RANGE);
		     rc == 0 && k.mv_size >= strlen(pre) && !memcmp(k.mv_data, pre, strlen(pre));
		     rc = srv_cursor_get(cur, &k, &v, MDB_NEXT)) {
			json_t *hr = json_loadb(v.mv_data, v.mv_size, 0, NULL);
			int64_t at = json_integer_value(json_object_get(hr, "last_at"));
			if (at >= last) {
				last = at;
				seq = json_integer_value(json_object_get(hr, "seq"));
				size_t pl = strlen(pre), el = k.mv_size - pl;
				snprintf(epoch, sizeof epoch, "%.*s", (int)(el < sizeof epoch ? el : sizeof epoch - 1),
					 (char *)k.mv_data + pl);
			}
			json_decref(hr);
		}
		srv_cursor_close(cur);
	}
	if (last > 0) {
		lc_time_format(last, t);
		json_object_set_new(o, "last_report_at", json_string(t));
		json_object_set_new(o, "epoch", json_string(epoch));
		json_object_set_new(o, "seq", json_integer(seq));
	}
	return o;
}

static int list_txn(struct srv *s, srv_txn *txn, void *ctx)
{
	struct srv_call *c = ctx;
	json_t *arr = json_array(), *seen = json_object();
	srv_cursor *cur;
	MDB_val k, v;
	int rc;
	if ((rc = srv_cursor_open(txn, s->db_hostcreds, &cur)) != 0)
		goto fail;
	for (int r = srv_cursor_get(cur, &k, &v, MDB_FIRST); r == 0; r = srv_cursor_get(cur, &k, &v, MDB_NEXT)) {
		char id[SRV_ID_MAX + 1];
		snprintf(id, sizeof id, "%.*s", (int)k.mv_size, (char *)k.mv_data);
		json_t *rec = json_loadb(v.mv_data, v.mv_size, 0, NULL);
		json_array_append_new(arr, host_view(s, txn, id, rec));
		json_object_set_new(seen, id, json_true());
		json_decref(rec);
	}
	srv_cursor_close(cur);
	/* hosts that reported before enrolment existed (or without it): listed, and removable */
	if ((rc = srv_cursor_open(txn, s->db_hosts, &cur)) != 0)
		goto fail;
	for (int r = srv_cursor_get(cur, &k, &v, MDB_FIRST); r == 0; r = srv_cursor_get(cur, &k, &v, MDB_NEXT)) {
		char id[SRV_ID_MAX + 2];
		snprintf(id, sizeof id, "%.*s", (int)(k.mv_size < SRV_ID_MAX + 1 ? k.mv_size : SRV_ID_MAX + 1),
			 (char *)k.mv_data);
		id[strcspn(id, "|")] = 0;
		if (!json_object_get(seen, id) && srv_id_ok(id)) {
			json_array_append_new(arr, host_view(s, txn, id, NULL));
			json_object_set_new(seen, id, json_true());
		}
	}
	srv_cursor_close(cur);
	json_decref(seen);
	srv_resp_json(c->rs, 200, json_pack("{s:o}", "hosts", arr));
	return SRV_COMMIT;
fail:
	json_decref(seen);
	json_decref(arr);
	return rc;
}

void srv_h_host_list(struct srv_call *c)
{
	int rc = srv_read(c->s, list_txn, c);
	if (rc != 0 && rc != SRV_REFUSED)
		srv_resp_store_error(c->rs, rc);
}

static bool has_usage(struct srv *s, srv_txn *txn, const char *id)
{
	char pre[SRV_ID_MAX + 2];
	srv_cursor *cur;
	MDB_val k, v;
	bool found = false;
	snprintf(pre, sizeof pre, "%s|", id);
	if (srv_cursor_open(txn, s->db_hosts, &cur) != 0)
		return false;
	k.mv_data = pre;
	k.mv_size = strlen(pre);
	if (srv_cursor_get(cur, &k, &v, MDB_SET_RANGE) == 0 && k.mv_size >= strlen(pre) &&
	    !memcmp(k.mv_data, pre, strlen(pre)))
		found = true;
	srv_cursor_close(cur);
	return found;
}

static int get_txn(struct srv *s, srv_txn *txn, void *ctx)
{
	struct srv_call *c = ctx;
	json_t *rec = srv_get_json(txn, s->db_hostcreds, c->id);
	if (!rec && !has_usage(s, txn, c->id))
		srv_resp_error(c->rs, 404, "not_found_error", "no such host");
	else
		srv_resp_json(c->rs, 200, host_view(s, txn, c->id, rec));
	json_decref(rec);
	return SRV_COMMIT;
}

void srv_h_host_get(struct srv_call *c)
{
	int rc = srv_read(c->s, get_txn, c);
	if (rc != 0 && rc != SRV_REFUSED)
		srv_resp_store_error(c->rs, rc);
}

static int delete_txn(struct srv *s, srv_txn *txn, void *ctx)
{
	struct srv_call *c = ctx;
	json_t *rec = srv_get_json(txn, s->db_hostcreds, c->id);
	int rc;
	if (!rec && !has_usage(s, txn, c->id)) {
		srv_resp_error(c->rs, 404, "not_found_error", "no such host");
		return SRV_REFUSED;
	}
	if (!rec)
		rec = json_object();
	if (!json_object_get(rec, "removed_at"))
		json_object_set_new(rec, "removed_at", json_integer(lc_now()));
	if ((rc = srv_put_json(txn, s->db_hostcreds, c->id, rec)) == 0)
		srv_resp_json(c->rs, 200, host_view(s, txn, c->id, rec));
	json_decref(rec);
	return rc;
}

void srv_h_host_delete(struct srv_call *c)
{
	int rc = srv_write(c->s, delete_txn, c);
	if (rc != 0 && rc != SRV_REFUSED)
		srv_resp_store_error(c->rs, rc);
}

/* ---- POST /v1/events ---- */

struct events_op {
	struct srv_call *c;
	json_t *events;
	int queued, duplicates;
};

/* A limit's crossing (an alert level, the projection, the threshold) is one fact of the fleet, not
 * of a host: several hosts that see the same key, customer or team cross the same level in the
 * same window and each upload it. The first is notified, the others are kept as duplicates, so
 * each level fires once per window. The key: event, limit, level (and its amount), window start.
 * 0 and *key empty for events that are not a limit's crossing (key_expired, policy_*). */
static void crossing_key(const json_t *e, char *key, size_t n)
{
	const json_t *d = json_object_get(e, "data");
	const char *ev = json_string_value(json_object_get(e, "event"));
	const char *lim = json_string_value(json_object_get(d, "limit"));
	const char *lvl = json_string_value(json_object_get(d, "level"));
	const char *ws = json_string_value(json_object_get(d, "window_start"));
	char amount[64] = "";
	key[0] = '\0';
	if (!ev || !lim || !lvl || !ws)
		return;
	const json_t *a = json_object_get(d, !strcmp(lvl, "projected") ? "projected" : "alert_at");
	if (json_is_number(a))
		snprintf(amount, sizeof amount, "%.17g", json_number_value(a));
	snprintf(key, n, "crossing|%.64s|%.200s|%.48s|%s|%.40s", ev, lim, lvl, amount, ws);
}

static int events_txn(struct srv *s, srv_txn *txn, void *ctx)
{
	struct events_op *op = ctx;
	size_t i;
	json_t *e;
	int rc;
	op->queued = op->duplicates = 0;
	json_array_foreach(op->events, i, e) {
		char dedup[SRV_ID_MAX + EVENT_ID_MAX + 16];
		const char *id = json_string_value(json_object_get(e, "id"));
		MDB_val v;
		snprintf(dedup, sizeof dedup, "host-event|%s|%s", op->c->host, id);
		if (srv_get_raw(txn, s->db_fired, dedup, &v) == 0) {
			op->duplicates++;
			continue;
		}
		char crossing[512];
		crossing_key(e, crossing, sizeof crossing);
		if (crossing[0] && srv_get_raw(txn, s->db_fired, crossing, &v) == 0) {
			/* another host told of this crossing first: kept as seen, not notified again */
			if ((rc = srv_put_int(txn, s->db_fired, dedup, lc_now_ms() / 1000)) != 0)
				return rc;
			op->duplicates++;
			continue;
		}
		if (crossing[0] && (rc = srv_put_int(txn, s->db_fired, crossing, lc_now_ms() / 1000)) != 0)
			return rc;
		json_t *data = json_object_get(e, "data");
		rc = srv_event_queue_from(s, txn, id, json_string_value(json_object_get(e, "event")),
					  json_string_value(json_object_get(e, "created_at")), op->c->host,
					  data ? json_incref(data) : json_object(), dedup);
		if (rc != 0)
			return rc;
		op->queued++;
	}
	return SRV_COMMIT;
}

/* {"events": [{"id", "event", "created_at", "data"?, "host_id"?}]} */
void srv_h_events_post(struct srv_call *c)
{
	struct events_op op = {.c = c, .events = json_object_get(c->body, "events")};
	size_t i;
	json_t *e;
	if (!json_is_array(op.events) || json_object_size(c->body) != 1) {
		E400(c->rs, "events: required (an array), and nothing else");
		return;
	}
	if (json_array_size(op.events) > EVENTS_MAX) {
		srv_resp_error(c->rs, 413, "invalid_request_error", "events: at most %d per upload", EVENTS_MAX);
		return;
	}
	json_array_foreach(op.events, i, e) {
		json_t *id = json_object_get(e, "id"), *ev = json_object_get(e, "event"), *at = json_object_get(e, "created_at");
		json_t *hid = json_object_get(e, "host_id"), *data = json_object_get(e, "data");
		const char *k;
		json_t *x;
		int64_t t;
		if (!json_is_object(e)) {
			E400(c->rs, "events[%zu]: must be an object", i);
			return;
		}
		json_object_foreach(e, k, x) {
			if (strcmp(k, "id") && strcmp(k, "event") && strcmp(k, "created_at") && strcmp(k, "data") &&
			    strcmp(k, "host_id") && strcmp(k, "seq")) {
				E400(c->rs, "events[%zu].%.64s: unknown field", i, k);
				return;
			}
		}
		if (!json_is_string(id) || !srv_id_ok(json_string_value(id)) || json_string_length(id) > EVENT_ID_MAX) {
			E400(c->rs, "events[%zu].id: required (1-%d characters of A-Z a-z 0-9 . _ - @ :)", i, EVENT_ID_MAX);
			return;
		}
		if (!json_is_string(ev) || json_string_length(ev) == 0 || json_string_length(ev) > 64 ||
		    strspn(json_string_value(ev), "abcdefghijklmnopqrstuvwxyz_") != json_string_length(ev)) {
			E400(c->rs, "events[%zu].event: an event name (a-z and _)", i);
			return;
		}
		if (!json_is_string(at) || lc_time_parse(json_string_value(at), &t) != 0) {
			E400(c->rs, "events[%zu].created_at: an RFC 3339 UTC time", i);
			return;
		}
		if (hid && (!json_is_string(hid) || strcmp(json_string_value(hid), c->host) != 0)) {
			srv_resp_error(c->rs, 403, "permission_error", "events[%zu].host_id: this credential is host '%s'", i,
				       c->host);
			return;
		}
		if (data && !json_is_object(data)) {
			E400(c->rs, "events[%zu].data: must be an object", i);
			return;
		}
	}
	int rc = srv_write(c->s, events_txn, &op);
	if (rc != 0 && rc != SRV_REFUSED) {
		srv_resp_store_error(c->rs, rc);
		return;
	}
	srv_resp_json(c->rs, 200, json_pack("{s:i,s:i}", "accepted", op.queued, "duplicates", op.duplicates));
	if (op.queued)
		srv_notifier_kick(c->s);
}
