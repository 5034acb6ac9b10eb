/* test_server_api.c - llmcap-server's logic without sockets: srv_handle() over a
 * real LMDB store in a temp dir (server/api.c, usage.c, notify.c, policy_doc.c, store.c), or with
 * LLMCAP_TEST_PG_URL over that PostgreSQL database, emptied before each test (store_pg.c;
 * tests/integration/test_server_pg.sh runs it so). */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <ftw.h>
#include <inttypes.h>
#include <jansson.h>
#include <libpq-fe.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "policy.h"
#include "sign.h"
#include "srv.h"
#include "webhook.h"
#include "util.h"

#define TOKEN "unit-test-admin-token-0123456789"
#define AUTH "Bearer " TOKEN
#define SHA_A "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
#define SHA_B "88d4266fd4e6338d13b845fcf289579d209c897823b9217da3e161936f031589"

/* enrolled hosts of the current fixture (host_auth) */
static struct { char host[64]; char auth[200]; } creds[64];
static int ncreds;

struct fx {
	char dir[128];
	struct srv s;
	struct lc_trust trust;
};

static int rm_cb(const char *p, const struct stat *st, int flag, struct FTW *f)
{
	(void)st;
	(void)flag;
	(void)f;
	return remove(p);
}

/* the PostgreSQL store under test, or NULL: LMDB */
static const char *pg_url(void)
{
	const char *u = getenv("LLMCAP_TEST_PG_URL");
	return u && *u ? u : NULL;
}

/* a fresh database: no tables (the store creates them, migrating from nothing) */
static int pg_wipe(void)
{
	PGconn *c = PQconnectdb(pg_url());
	int ok = PQstatus(c) == CONNECTION_OK;
	if (ok) {
		PGresult *r = PQexec(c, "SET client_min_messages = warning; DROP TABLE IF EXISTS kv, schema_version");
		ok = PQresultStatus(r) == PGRES_COMMAND_OK;
		PQclear(r);
	}
	PQfinish(c);
	return ok ? 0 : -1;
}

static int open_fx(struct fx *fx, size_t map_initial)
{
	char err[256], path[256];
	memset(&fx->s, 0, sizeof fx->s);
	fx->s.map_initial = map_initial;
	snprintf(path, sizeof path, "%s/keys/llmcap.key", fx->dir);
	if (lc_signkey_load(path, &fx->s.key, err, sizeof err) != 0)
		return -1;
	if (srv_set_admin_token(&fx->s, TOKEN, strlen(TOKEN)) != 0)
		return -1;
	snprintf(path, sizeof path, "%s", pg_url() ? pg_url() : "");
	if (!pg_url())
		snprintf(path, sizeof path, "%s/data", fx->dir);
	if (srv_store_open(&fx->s, path, err, sizeof err) != 0)
		return -1;
	return srv_policy_maintain(&fx->s);
}

static int setup_map(void **state, size_t map_initial)
{
	struct fx *fx = calloc(1, sizeof *fx);
	char err[256], path[256];
	if (sodium_init() < 0)
		return -1;
	snprintf(fx->dir, sizeof fx->dir, "/tmp/llmcap-srvunit.XXXXXX");
	if (!mkdtemp(fx->dir))
		return -1;
	snprintf(path, sizeof path, "%s/keys", fx->dir);
	if (lc_keygen(path, err, sizeof err) != 0)
		return -1;
	snprintf(path, sizeof path, "%s/keys/llmcap.pub", fx->dir);
	if (lc_trust_load(path, &fx->trust, err, sizeof err) != 0)
		return -1;
	if (pg_url() && pg_wipe() != 0)
		return -1;
	if (open_fx(fx, map_initial) != 0)
		return -1;
	ncreds = 0;
	*state = fx;
	return 0;
}

static int setup(void **state) { return setup_map(state, 0); }
static int setup_small(void **state) { return setup_map(state, 256 * 1024); }

static int teardown(void **state)
{
	struct fx *fx = *state;
	srv_store_close(&fx->s);
	nftw(fx->dir, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
	free(fx);
	return 0;
}

/* one request; returns the status, *out the parsed body (caller decrefs) */
static int req(struct fx *fx, const char *method, const char *path, const char *auth, const char *body,
	       json_t **out, struct srv_resp *keep)
{
	struct srv_req rq = {.method = method, .path = path, .authorization = auth, .body = body,
			     .body_len = body ? strlen(body) : 0};
	struct srv_resp rs;
	srv_handle(&fx->s, &rq, &rs);
	int st = rs.status;
	if (out)
		*out = rs.body ? json_loads(rs.body, 0, NULL) : NULL;
	if (keep)
		*keep = rs;
	else
		srv_resp_free(&rs);
	return st;
}

/* ---- enrolled hosts: every usage report carries its host's own credential ---- */

/* "Bearer <id>.<secret>" for host (enrolled on first use, through the API) */
static const char *host_auth(struct fx *fx, const char *host)
{
	for (int i = 0; i < ncreds; i++)
		if (!strcmp(creds[i].host, host))
			return creds[i].auth;
	json_t *j;
	char body[256];
	assert_int_equal(req(fx, "POST", "/v1/admin/hosts/enroll", AUTH, NULL, &j, NULL), 201);
	snprintf(body, sizeof body, "{\"code\":\"%s\",\"host_id\":\"%s\"}", json_string_value(json_object_get(j, "code")),
		 host);
	json_decref(j);
	assert_int_equal(req(fx, "POST", "/v1/hosts/enroll", NULL, body, &j, NULL), 201);
	assert_string_equal(json_string_value(json_object_get(j, "host_id")), host);
	assert_true(ncreds < 64);
	snprintf(creds[ncreds].host, sizeof creds[ncreds].host, "%s", host);
	snprintf(creds[ncreds].auth, sizeof creds[ncreds].auth, "Bearer %s",
		 json_string_value(json_object_get(j, "credential")));
	json_decref(j);
	return creds[ncreds++].auth;
}

/* POST /v1/usage as the host the report names (h when it names none) */
static int report(struct fx *fx, const char *body, json_t **out, struct srv_resp *keep)
{
	char host[64] = "h";
	const char *p = strstr(body, "\"host_id\":\"");
	if (p) {
		p += 11;
		size_t n = strcspn(p, "\"");
		snprintf(host, sizeof host, "%.*s", (int)(n < 63 ? n : 63), p);
	}
	return req(fx, "POST", "/v1/usage", host_auth(fx, host), body, out, keep);
}

static int64_t version(struct fx *fx)
{
	json_t *j;
	assert_int_equal(req(fx, "GET", "/v1/admin/policy", AUTH, NULL, &j, NULL), 200);
	int64_t v = json_integer_value(json_object_get(j, "version"));
	json_decref(j);
	return v;
}

static void assert_error(json_t *j, const char *type, const char *needle)
{
	json_t *e = json_object_get(j, "error");
	assert_non_null(e);
	assert_string_equal(json_string_value(json_object_get(e, "type")), type);
	const char *m = json_string_value(json_object_get(e, "message"));
	assert_non_null(m);
	if (needle && !strstr(m, needle))
		fail_msg("error message '%s' lacks '%s'", m, needle);
}

static void test_policy_signed_and_etag(void **state)
{
	struct fx *fx = *state;
	struct srv_resp rs;
	unsigned char *payload = NULL;
	size_t plen;
	char err[256];

	assert_int_equal(req(fx, "GET", "/v1/policy", NULL, NULL, NULL, &rs), 200);
	assert_true(rs.etag[0] == '"');
	assert_int_equal(lc_dsse_verify(&fx->trust, rs.body, rs.body_len, &payload, &plen, NULL, err, sizeof err), 0);
	struct lc_policy *p;
	assert_int_equal(lc_policy_parse(payload, plen, &p, err, sizeof err), 0);
	assert_int_equal(p->version, 1);
	assert_true(p->expires_at - p->issued_at == SRV_DEFAULT_LIFETIME_S);
	lc_policy_free(p);
	free(payload);

	struct srv_req rq = {.method = "GET", .path = "/v1/policy", .if_none_match = rs.etag};
	struct srv_resp r2;
	srv_handle(&fx->s, &rq, &r2);
	assert_int_equal(r2.status, 304);
	assert_null(r2.body);
	assert_string_equal(r2.etag, rs.etag);
	srv_resp_free(&r2);

	/* a change moves the ETag */
	assert_int_equal(req(fx, "PUT", "/v1/admin/org", AUTH, "{\"spend_cap_usd\": 10, \"period\": \"daily\"}", NULL, NULL), 200);
	srv_handle(&fx->s, &rq, &r2);
	assert_int_equal(r2.status, 200);
	assert_string_not_equal(r2.etag, rs.etag);
	srv_resp_free(&r2);
	srv_resp_free(&rs);
}

static void test_auth(void **state)
{
	struct fx *fx = *state;
	json_t *j;
	assert_int_equal(req(fx, "GET", "/v1/admin/keys", NULL, NULL, &j, NULL), 401);
	assert_error(j, "authentication_error", NULL);
	json_decref(j);
	assert_int_equal(req(fx, "GET", "/v1/admin/keys", "Bearer " TOKEN "x", NULL, NULL, NULL), 401);
	assert_int_equal(req(fx, "GET", "/v1/admin/keys", "Bearer unit-test-admin-token-012345678", NULL, NULL, NULL), 401);
	assert_int_equal(req(fx, "GET", "/v1/admin/keys", "bearer " TOKEN, NULL, NULL, NULL), 200);
	assert_int_equal(req(fx, "GET", "/v1/usage", "Basic " TOKEN, NULL, NULL, NULL), 401);
	/* host calls need no token */
	assert_int_equal(req(fx, "GET", "/v1/policy", NULL, NULL, NULL, NULL), 200);
	assert_false(srv_admin_ok(&fx->s, NULL));
	assert_int_equal(srv_set_admin_token(&fx->s, "short", 5), -1);
}

static void test_key_lifecycle(void **state)
{
	struct fx *fx = *state;
	json_t *j;
	int64_t v0 = version(fx);

	assert_int_equal(req(fx, "POST", "/v1/admin/keys", AUTH,
			     "{\"id\":\"ci\",\"sha256\":\"" SHA_A "\",\"limits\":[{\"metric\":\"cost\",\"window\":\"daily\",\"threshold\":5}]}",
			     &j, NULL), 201);
	assert_int_equal(json_integer_value(json_object_get(j, "policy_version")), v0 + 1);
	json_decref(j);
	assert_int_equal(req(fx, "POST", "/v1/admin/keys", AUTH, "{\"id\":\"ci\",\"sha256\":\"" SHA_B "\"}", &j, NULL), 409);
	assert_error(j, "conflict_error", "ci");
	json_decref(j);
	assert_int_equal(req(fx, "POST", "/v1/admin/keys", AUTH, "{\"id\":\"x\",\"sha256\":\"" SHA_A "\"}", NULL, NULL), 409);
	assert_int_equal(req(fx, "POST", "/v1/admin/keys", AUTH,
			     "{\"id\":\"x\",\"sha256\":\"" SHA_B "\",\"limits\":[{\"metric\":\"cost\",\"window\":\"daily\",\"threshold\":5,\"alert_at\":\"soon\"}]}",
			     &j, NULL), 400);
	assert_error(j, "invalid_request_error", "keys.x.limits[0].alert_at");
	json_decref(j);
	assert_int_equal(version(fx), v0 + 1);   /* refused: nothing published */
	assert_int_equal(req(fx, "POST", "/v1/admin/keys", AUTH, "{\"id\":", &j, NULL), 400);
	assert_error(j, "invalid_request_error", "malformed JSON");
	json_decref(j);

	assert_int_equal(req(fx, "PATCH", "/v1/admin/keys/ci", AUTH, "{\"limits\":{\"0\":{\"enabled\":false}}}", &j, NULL), 200);
	json_decref(j);
	assert_int_equal(req(fx, "GET", "/v1/admin/policy", AUTH, NULL, &j, NULL), 200);
	assert_true(json_is_false(json_object_get(json_array_get(json_object_get(json_object_get(json_object_get(j, "keys"), "ci"), "limits"), 0), "enabled")));
	json_decref(j);
	assert_int_equal(req(fx, "DELETE", "/v1/admin/keys/ci", AUTH, NULL, &j, NULL), 200);
	assert_true(json_is_true(json_object_get(j, "revoked")));
	json_decref(j);
	assert_int_equal(req(fx, "DELETE", "/v1/admin/keys/nope", AUTH, NULL, &j, NULL), 404);
	assert_error(j, "not_found_error", "nope");
	json_decref(j);
	assert_int_equal(req(fx, "PATCH", "/v1/admin/keys/ci", AUTH, "{\"limits\":{\"3\":{}}}", NULL, NULL), 400);
	assert_int_equal(req(fx, "GET", "/v1/admin/keys/b%2Fd", AUTH, NULL, NULL, NULL), 400);
	assert_int_equal(req(fx, "PUT", "/v1/admin/keys/ci", AUTH, "{}", NULL, NULL), 405);
	assert_int_equal(req(fx, "GET", "/v1/admin/whatever", AUTH, NULL, NULL, NULL), 404);
}

static void test_invites(void **state)
{
	struct fx *fx = *state;
	json_t *j;
	char path[256];

	assert_int_equal(req(fx, "POST", "/v1/admin/invites", AUTH,
			     "{\"limits\":[{\"metric\":\"requests\",\"window\":\"daily\",\"threshold\":100}],\"id\":\"newbie\"}",
			     &j, NULL), 201);
	const char *code = json_string_value(json_object_get(j, "code"));
	assert_non_null(code);
	assert_int_equal(strlen(code), 48);
	snprintf(path, sizeof path, "/v1/invites/%s/redeem", code);
	json_decref(j);
	assert_int_equal(req(fx, "POST", path, NULL, "{\"sha256\":\"" SHA_B "\"}", &j, NULL), 201);
	assert_string_equal(json_string_value(json_object_get(j, "id")), "newbie");
	json_decref(j);
	assert_int_equal(req(fx, "POST", path, NULL, "{\"sha256\":\"" SHA_A "\"}", NULL, NULL), 410);
	assert_int_equal(req(fx, "POST", "/v1/invites/abc/redeem", NULL, "{\"sha256\":\"" SHA_A "\"}", NULL, NULL), 404);
	assert_int_equal(req(fx, "GET", "/v1/admin/keys/newbie", AUTH, NULL, &j, NULL), 200);
	assert_string_equal(json_string_value(json_object_get(j, "sha256")), SHA_B);
	json_decref(j);
	/* the code itself is not stored: only its hash */
	struct srv_resp rs;
	assert_int_equal(req(fx, "POST", "/v1/admin/invites", AUTH, "{\"limits\":[]}", NULL, &rs), 201);
	assert_null(strstr(rs.body, "limits\":[{"));
	srv_resp_free(&rs);
}

static int64_t month(void) { return lc_window_start(LC_WIN_MONTHLY, lc_now()); }

static int post_usage(struct fx *fx, const char *host, int64_t seq, int64_t used_micro, int64_t *total)
{
	char body[1024];
	json_t *j;
	snprintf(body, sizeof body,
		 "{\"host_id\":\"%s\",\"epoch\":\"e\",\"seq\":%" PRId64 ",\"counters\":[{\"scope\":\"org\",\"id\":\"org\","
		 "\"metric\":\"cost\",\"window\":\"monthly\",\"bucket\":%" PRId64 ",\"used\":%" PRId64 "}]}",
		 host, seq, month(), used_micro);
	int st = report(fx, body, &j, NULL);
	if (st == 200 && total) {
		json_t *c = json_array_get(json_object_get(j, "counters"), 0);
		*total = json_integer_value(json_object_get(c, "used"));
	}
	json_decref(j);
	return st;
}

static int count_outbox(struct srv *s, srv_txn *txn, void *ctx)
{
	MDB_stat st;
	srv_kv_stat(txn, s->db_outbox, &st);
	*(size_t *)ctx = st.ms_entries;
	return 0;
}

static size_t outbox(struct fx *fx)
{
	size_t n = 0;
	srv_read(&fx->s, count_outbox, &n);
	return n;
}

static void test_usage_idempotent_and_events_once(void **state)
{
	struct fx *fx = *state;
	int64_t total = 0;

	assert_int_equal(req(fx, "PUT", "/v1/admin/org", AUTH,
			     "{\"spend_cap_usd\":10,\"period\":\"monthly\",\"warning_threshold_usd\":5}", NULL, NULL), 200);
	assert_int_equal(req(fx, "PUT", "/v1/admin/webhooks", AUTH,
			     "{\"webhooks\":[{\"url\":\"http://127.0.0.1:9/a\",\"secret\":\"s\",\"events\":[\"*\"]},"
			     "{\"url\":\"http://127.0.0.1:9/b\",\"secret\":\"s\",\"events\":[\"spend_cap_reached\"]}]}",
			     NULL, NULL), 200);
	assert_int_equal(post_usage(fx, "h1", 1, 3000000, &total), 200);
	assert_int_equal(total, 3000000);
	assert_int_equal(outbox(fx), 0);
	assert_int_equal(post_usage(fx, "h1", 1, 9000000, &total), 409);   /* replayed seq: refused, ignored */
	assert_int_equal(total, 3000000);
	assert_int_equal(post_usage(fx, "h2", 5, 3000000, &total), 200);
	assert_int_equal(total, 6000000);
	assert_int_equal(outbox(fx), 1);   /* warning, to the "*" webhook only */
	assert_int_equal(post_usage(fx, "h1", 2, 8000000, &total), 200);
	assert_int_equal(total, 11000000);
	assert_int_equal(outbox(fx), 3);   /* the cap, to both */
	assert_int_equal(post_usage(fx, "h1", 3, 9000000, &total), 200);
	assert_int_equal(post_usage(fx, "h2", 6, 4000000, &total), 200);
	assert_int_equal(total, 13000000);
	assert_int_equal(outbox(fx), 3);   /* once per window */
	/* a report may not make a counter go backwards */
	assert_int_equal(post_usage(fx, "h2", 7, 1000000, &total), 200);
	assert_int_equal(total, 13000000);

	json_t *j;
	assert_int_equal(req(fx, "GET", "/v1/usage", AUTH, NULL, &j, NULL), 200);
	json_t *l;
	size_t i;
	bool seen = false;
	json_array_foreach(json_object_get(j, "limits"), i, l) {
		if (!strcmp(json_string_value(json_object_get(l, "scope")), "org")) {
			assert_true(json_real_value(json_object_get(l, "used")) == 13.0);
			assert_true(json_real_value(json_object_get(l, "threshold")) == 10.0);
			seen = true;
		}
	}
	assert_true(seen);
	json_decref(j);
	assert_int_equal(report(fx, "{\"host_id\":\"h\",\"epoch\":\"e\",\"seq\":1}", &j, NULL), 400);
	assert_error(j, "invalid_request_error", "counters");
	json_decref(j);

	/* durability: close and reopen the store, nothing lost */
	srv_store_close(&fx->s);
	assert_int_equal(open_fx(fx, 0), 0);
	assert_int_equal(outbox(fx), 3);
	assert_int_equal(post_usage(fx, "h1", 4, 9000000, &total), 200);
	assert_int_equal(total, 13000000);
}

static void test_webhook_signature(void **state)
{
	(void)state;
	char sig[160];
	lc_webhook_sign("whsec_test", 1700000000, "{\"a\":1}", 7, sig, sizeof sig);
	assert_string_equal(sig, "t=1700000000,v1=38877139021993b830af32feea6e18a8da83eb2f6e49ee50bd9e4cf4ca4d3789");
	json_t *wh = json_pack("{s:[s,s]}", "events", "limit_alert", "spend_cap_reached");
	assert_true(lc_webhook_wants(wh, "limit_alert"));
	assert_false(lc_webhook_wants(wh, "key_expired"));
	json_decref(wh);
}

static void test_map_grows(void **state)
{
	struct fx *fx = *state;
	if (pg_url())
		skip();   /* LMDB's map */
	char *body = malloc(200000);
	size_t off = 0;
	int64_t total;
	/* about 6 MiB of counters into a 256 KiB map */
	for (int h = 0; h < 12; h++) {
		off = (size_t)snprintf(body, 200000, "{\"host_id\":\"h%d\",\"epoch\":\"e\",\"seq\":1,\"counters\":[", h);
		for (int i = 0; i < 1000; i++)
			off += (size_t)snprintf(body + off, 200000 - off,
						"%s{\"scope\":\"customer\",\"id\":\"customer-%d-%d-padding-padding-padding\","
						"\"metric\":\"requests\",\"window\":\"lifetime\",\"bucket\":0,\"used\":%d}",
						i ? "," : "", h, i, i + 1);
		snprintf(body + off, 200000 - off, "]}");
		json_t *j;
		assert_int_equal(report(fx, body, &j, NULL), 200);
		json_decref(j);
	}
	free(body);
	assert_true(fx->s.mapsize > 256 * 1024);
	assert_int_equal(post_usage(fx, "h1", 2, 1, &total), 200);
}

static int64_t fake_ms;
static int64_t fake_clock(void) { return fake_ms; }

static void test_resign_at_half_life(void **state)
{
	struct fx *fx = *state;
	fake_ms = lc_now_ms();
	lc_clock_hook = fake_clock;
	/* 0.01 day = 864 s lifetime */
	assert_int_equal(req(fx, "PUT", "/v1/admin/settings", AUTH, "{\"policy_lifetime_days\": 0.01}", NULL, NULL), 200);
	int64_t v = version(fx);
	fake_ms += 400 * 1000;
	assert_int_equal(srv_policy_maintain(&fx->s), 0);
	assert_int_equal(version(fx), v);         /* before half the lifetime: nothing */
	fake_ms += 40 * 1000;
	assert_int_equal(srv_policy_maintain(&fx->s), 0);
	assert_int_equal(version(fx), v + 1);     /* past it: re-signed */
	json_t *j;
	assert_int_equal(req(fx, "GET", "/v1/admin/policy", AUTH, NULL, &j, NULL), 200);
	int64_t iss, exp;
	lc_time_parse(json_string_value(json_object_get(j, "issued_at")), &iss);
	lc_time_parse(json_string_value(json_object_get(j, "expires_at")), &exp);
	assert_int_equal(iss, fake_ms / 1000);
	assert_int_equal(exp - iss, 864);
	json_decref(j);
	lc_clock_hook = NULL;
}

/* ---- leases: slices of a shared limit never add up past its threshold ---- */

/* one lease call of host `host` for team `team`'s lifetime requests limit, with `need` (its next refused
 * request's worst case): the new allowance (-1: refused); *flag gets "exhausted", "stale" or "unknown"
 * when the answer says so */
static int64_t lease_of(struct fx *fx, const char *team, const char *host, int64_t used, int64_t held, int64_t want,
			int64_t need, int64_t gen, const char **flag)
{
	char body[1024];
	json_t *j;
	snprintf(body, sizeof body,
		 "{\"host_id\":\"%s\",\"epoch\":\"e\",\"leases\":[{\"limit\":\"team:%s:requests:lifetime\",\"bucket\":0,"
		 "\"used\":%" PRId64 ",\"held\":%" PRId64 ",\"want\":%" PRId64 ",\"need\":%" PRId64 ",\"gen\":%" PRId64 "}]}",
		 host, team, used, held, want, need, gen);
	if (req(fx, "POST", "/v1/leases", host_auth(fx, host), body, &j, NULL) != 200) {
		json_decref(j);
		return -1;
	}
	json_t *g = json_array_get(json_object_get(j, "grants"), 0);
	int64_t allow = json_integer_value(json_object_get(g, "allow"));
	if (flag)
		*flag = json_is_true(json_object_get(g, "stale"))       ? "stale"
			: json_is_true(json_object_get(g, "unknown"))   ? "unknown"
			: json_is_true(json_object_get(g, "exhausted")) ? "exhausted"
									: "";
	assert_int_equal(json_integer_value(json_object_get(j, "ttl_seconds")), 5);
	json_decref(j);
	return allow;
}

/* the same for team t, no need */
static int64_t lease(struct fx *fx, const char *host, int64_t used, int64_t held, int64_t want, int64_t gen,
		     const char **flag)
{
	return lease_of(fx, "t", host, used, held, want, 0, gen, flag);
}

/* the fake clock from now on, and team ID with one limit: THRESHOLD requests a WINDOW */
static void team_on_fake_clock(struct fx *fx, const char *id, const char *window, int threshold)
{
	char path[128], body[160];

	fake_ms = lc_now_ms();
	lc_clock_hook = fake_clock;
	snprintf(path, sizeof(path), "/v1/admin/teams/%s", id);
	snprintf(body, sizeof(body), "{\"limits\":[{\"metric\":\"requests\",\"window\":\"%s\",\"threshold\":%d}]}",
		 window, threshold);
	assert_int_equal(req(fx, "PUT", path, AUTH, body, NULL, NULL), 201);
}

static void test_leases(void **state)
{
	struct fx *fx = *state;
	const char *flag;
	json_t *j;

	team_on_fake_clock(fx, "t", "lifetime", 10);
	/* leases on by default: the published policy says so */
	assert_int_equal(req(fx, "GET", "/v1/admin/policy", AUTH, NULL, &j, NULL), 200);
	assert_true(json_is_true(json_object_get(j, "leases")));
	json_decref(j);
	/* leases off ("leases": false): nothing beyond what the host holds, and the policy does not say leases */
	assert_int_equal(req(fx, "PUT", "/v1/admin/settings", AUTH, "{\"leases\": false, \"lease_ttl_seconds\": 5}",
			     NULL, NULL), 200);
	assert_int_equal(lease(fx, "a", 0, 0, 4, 1, &flag), 0);
	assert_string_equal(flag, "unknown");
	assert_int_equal(req(fx, "GET", "/v1/admin/policy", AUTH, NULL, &j, NULL), 200);
	assert_null(json_object_get(j, "leases"));
	json_decref(j);
	/* a settings body without "leases": on again */
	assert_int_equal(req(fx, "PUT", "/v1/admin/settings", AUTH, "{\"lease_ttl_seconds\": 5}", NULL, NULL), 200);
	assert_int_equal(req(fx, "GET", "/v1/admin/policy", AUTH, NULL, &j, NULL), 200);
	assert_true(json_is_true(json_object_get(j, "leases")));
	json_decref(j);
	assert_int_equal(req(fx, "PUT", "/v1/admin/settings", AUTH, "{\"leases\": 1}", &j, NULL), 400);
	json_decref(j);

	/* three hosts each want everything: at most half of what is left per call, never more in all */
	assert_int_equal(lease(fx, "a", 0, 0, 100, 10, &flag), 5);
	assert_string_equal(flag, "exhausted");
	assert_int_equal(lease(fx, "b", 0, 0, 100, 10, NULL), 3);
	assert_int_equal(lease(fx, "c", 0, 0, 100, 10, NULL), 1);
	assert_int_equal(lease(fx, "c", 0, 1, 100, 11, NULL), 2);
	assert_int_equal(lease(fx, "c", 0, 2, 100, 12, NULL), 2);   /* nothing left: 5 + 3 + 2 = 10 */
	/* a call older than one already seen changes nothing */
	assert_int_equal(lease(fx, "a", 0, 0, 100, 9, &flag), 0);
	assert_string_equal(flag, "stale");
	/* a returns 3 of its 5 (it has spent 2): b can have them */
	assert_int_equal(lease(fx, "a", 2, 2, 0, 11, NULL), 2);
	assert_int_equal(lease(fx, "b", 0, 3, 100, 11, NULL), 5);   /* half of the 3 left, rounded up */
	/* a host that vanishes: its slice comes back after the TTL, what it committed stays counted */
	assert_int_equal(lease(fx, "c", 1, 2, 0, 13, NULL), 2);
	assert_int_equal(lease(fx, "b", 0, 5, 100, 12, NULL), 6);   /* a: 2, b: 6, c: 2 */
	fake_ms += 4000;
	assert_int_equal(lease(fx, "b", 0, 6, 100, 13, NULL), 6);   /* c's slice still live */
	fake_ms += 2000;
	assert_int_equal(lease(fx, "b", 0, 6, 100, 14, NULL), 7);   /* c's TTL passed: its unspent 1 is back */
	/* usage reported by a host without a lease counts too */
	assert_int_equal(req(fx, "GET", "/v1/admin/leases", AUTH, NULL, &j, NULL), 200);
	json_t *l = json_array_get(json_object_get(j, "leases"), 0);
	assert_string_equal(json_string_value(json_object_get(l, "limit")), "team:t:requests:lifetime");
	assert_int_equal(json_integer_value(json_object_get(l, "outstanding")), 10);
	json_decref(j);
	/* bodies are checked where they enter */
	assert_int_equal(req(fx, "POST", "/v1/leases", host_auth(fx, "a"),
			     "{\"host_id\":\"a\",\"epoch\":\"e\",\"leases\":[{\"limit\":\"team:t:requests:lifetime\","
			     "\"bucket\":0,\"used\":-1,\"held\":0,\"want\":1,\"gen\":1}]}", &j, NULL), 400);
	assert_error(j, "invalid_request_error", "leases[0].used");
	json_decref(j);
	assert_int_equal(req(fx, "POST", "/v1/leases", host_auth(fx, "a"), "{\"host_id\":\"a|b\",\"epoch\":\"e\",\"leases\":[]}", &j,
			     NULL), 400);
	json_decref(j);
	assert_int_equal(req(fx, "POST", "/v1/leases", host_auth(fx, "a"), "{\"host_id\":\"a\",\"epoch\":\"e\",\"leases\":[],\"x\":1}",
			     &j, NULL), 400);
	json_decref(j);
	/* a host leases only as itself */
	assert_int_equal(req(fx, "POST", "/v1/leases", host_auth(fx, "b"), "{\"host_id\":\"a\",\"epoch\":\"e\",\"leases\":[]}",
			     &j, NULL), 403);
	json_decref(j);
	assert_int_equal(req(fx, "POST", "/v1/leases", NULL, "{\"host_id\":\"a\",\"epoch\":\"e\",\"leases\":[]}", &j, NULL),
			 401);
	json_decref(j);
	lc_clock_hook = NULL;
}

static int64_t lease_need(struct fx *fx, const char *host, int64_t used, int64_t held, int64_t want, int64_t need,
			  int64_t gen)
{
	return lease_of(fx, "f", host, used, held, want, need, gen, NULL);
}

/* A call that reaches the server after the host's slice expired there does not take back what was
 * granted to other hosts since (a slow host, or one failing over to another server); a need the rest
 * cannot cover gets nothing rather than a leftover no request fits in. */
static void test_leases_late_call_and_leftovers(void **state)
{
	struct fx *fx = *state;
	json_t *j;

	team_on_fake_clock(fx, "f", "lifetime", 10);
	assert_int_equal(req(fx, "PUT", "/v1/admin/settings", AUTH, "{\"leases\": true, \"lease_ttl_seconds\": 5}",
			     NULL, NULL), 200);
	assert_int_equal(lease_need(fx, "a", 0, 0, 4, 0, 1), 4);
	fake_ms += 6000;   /* a's slice expires here; b and c share what is left */
	assert_int_equal(lease_need(fx, "b", 0, 0, 100, 0, 1), 5);
	assert_int_equal(lease_need(fx, "c", 0, 0, 100, 0, 1), 3);
	/* a's renewal, sent while its own copy was live, arrives late: it gets part of the 2 left, not its 4 */
	assert_int_equal(lease_need(fx, "a", 0, 4, 0, 0, 2), 1);
	assert_int_equal(req(fx, "GET", "/v1/admin/leases", AUTH, NULL, &j, NULL), 200);
	json_t *l = json_array_get(json_object_get(j, "leases"), 0);
	assert_int_equal(json_integer_value(json_object_get(l, "outstanding")), 9);   /* 1 + 5 + 3 <= 10 */
	json_decref(j);
	/* each request needs 3 now: b holds 5 (spent 4), c 3, a 1; b's refused request gets no
	 * leftover of the 1 left; c gives its 3 back with its ask and gets them again, a request's worth */
	assert_int_equal(lease_need(fx, "b", 4, 5, 3, 2, 2), 5);
	assert_int_equal(lease_need(fx, "a", 0, 0, 3, 3, 3), 0);   /* 1 given back, 2 left: not a leftover */
	assert_int_equal(lease_need(fx, "c", 0, 0, 3, 3, 2), 3);
	lc_clock_hook = NULL;
}

/* one report of team t's daily requests by host `host` in the fake clock's day */
static int post_daily(struct fx *fx, const char *host, int seq, int used)
{
	char body[512];
	snprintf(body, sizeof body,
		 "{\"host_id\":\"%s\",\"epoch\":\"e\",\"seq\":%d,\"counters\":[{\"scope\":\"team\",\"id\":\"t\","
		 "\"metric\":\"requests\",\"window\":\"daily\",\"bucket\":%" PRId64 ",\"used\":%d}]}",
		 host, seq, lc_window_start(LC_WIN_DAILY, fake_ms / 1000), used);
	return report(fx, body, NULL, NULL);
}

static void test_event_once_per_window(void **state)
{
	struct fx *fx = *state;
	team_on_fake_clock(fx, "t", "daily", 5);
	assert_int_equal(req(fx, "PUT", "/v1/admin/webhooks", AUTH,
			     "{\"webhooks\":[{\"url\":\"http://127.0.0.1:9/a\",\"secret\":\"s\",\"events\":[\"limit_reached\"]}]}",
			     NULL, NULL), 200);
	for (int day = 0; day < 2; day++) {
		for (int seq = 1; seq <= 3; seq++)
			assert_int_equal(post_daily(fx, "h", day * 10 + seq, 4 + seq), 200);
		assert_int_equal(outbox(fx), (size_t)day + 1);   /* once in this window */
		fake_ms += 86400 * 1000;
	}
	lc_clock_hook = NULL;
}

static int count_pruned(struct srv *s, srv_txn *txn, void *ctx)
{
	MDB_stat st;
	size_t *n = ctx;
	srv_kv_stat(txn, s->db_totals, &st);
	n[0] = st.ms_entries;
	srv_kv_stat(txn, s->db_fired, &st);
	n[1] = st.ms_entries;
	return 0;
}

/* srv_prune forgets totals of windows long over and once-per-window markers older than 62 days;
 * what is current stays */
static void test_prune_forgets_past_windows(void **state)
{
	struct fx *fx = *state;
	size_t n[2];
	team_on_fake_clock(fx, "t", "daily", 5);
	assert_int_equal(post_daily(fx, "h1", 1, 6), 200);
	srv_read(&fx->s, count_pruned, n);
	assert_int_equal(n[0], 1);
	assert_int_equal(n[1], 1);   /* limit_reached fired for today */
	assert_int_equal(srv_prune(&fx->s), 0);
	srv_read(&fx->s, count_pruned, n);
	assert_int_equal(n[0], 1);   /* current: kept */
	assert_int_equal(n[1], 1);
	fake_ms += 63 * 86400 * 1000LL;
	assert_int_equal(post_daily(fx, "h2", 1, 7), 200);
	srv_read(&fx->s, count_pruned, n);
	assert_int_equal(n[0], 2);
	assert_int_equal(n[1], 2);
	assert_int_equal(srv_prune(&fx->s), 0);
	srv_read(&fx->s, count_pruned, n);
	assert_int_equal(n[0], 1);   /* the old day's total and marker are gone, today's stay */
	assert_int_equal(n[1], 1);
	lc_clock_hook = NULL;
}

/* one report of one org cost counter with the given raw JSON numbers; returns the status */
static int post_raw(struct fx *fx, const char *host, const char *seq, const char *scope, const char *bucket,
		    const char *used, const char *extra)
{
	char body[1024];
	snprintf(body, sizeof body,
		 "{\"host_id\":\"%s\",\"epoch\":\"e\",\"seq\":%s,\"counters\":[{\"scope\":\"%s\",\"id\":\"org\","
		 "\"metric\":\"cost\",\"window\":\"monthly\",\"bucket\":%s,\"used\":%s%s}]}",
		 host, seq, scope, bucket, used, extra);
	return report(fx, body, NULL, NULL);
}

/* issue 12: no report can wrap a total, overflow a window, freeze a host or carry unknown things */
static void test_usage_report_bounds(void **state)
{
	struct fx *fx = *state;
	char b[32];
	int64_t total = 0;

	snprintf(b, sizeof b, "%" PRId64, month());
	assert_int_equal(req(fx, "PUT", "/v1/admin/org", AUTH, "{\"spend_cap_usd\":0.01,\"period\":\"monthly\"}", NULL,
			     NULL), 200);
	assert_int_equal(post_usage(fx, "h1", 1, 5000, &total), 200);
	/* 2^63-1 used would wrap the org total negative once a second host reports: refused */
	assert_int_equal(post_raw(fx, "h2", "1", "org", b, "9223372036854775807", ""), 400);
	assert_int_equal(post_raw(fx, "h2", "1", "org", b, "1000000000000001", ""), 400);
	assert_int_equal(post_raw(fx, "h2", "1", "org", b, "-1", ""), 400);
	assert_int_equal(post_usage(fx, "h3", 1, 4000, &total), 200);
	assert_int_equal(total, 9000);   /* the hosts still see what the others spent */
	/* buckets: extreme, negative or not a window start */
	assert_int_equal(post_raw(fx, "h2", "1", "org", "9223372036854775807", "1", ""), 400);
	assert_int_equal(post_raw(fx, "h2", "1", "org", "-9223372036854775808", "1", ""), 400);
	assert_int_equal(post_raw(fx, "h2", "1", "org", "253402300800", "1", ""), 400);
	snprintf(b, sizeof b, "%" PRId64, month() + 1);
	assert_int_equal(post_raw(fx, "h2", "1", "org", b, "1", ""), 400);
	snprintf(b, sizeof b, "%" PRId64, month());
	/* unknown scope, unknown fields */
	assert_int_equal(post_raw(fx, "h2", "1", "everything", b, "1", ""), 400);
	assert_int_equal(post_raw(fx, "h2", "1", "org", b, "1", ",\"extra\":1"), 400);
	assert_int_equal(report(fx,
			     "{\"host_id\":\"h2\",\"epoch\":\"e\",\"seq\":1,\"counters\":[],\"admin\":true}", NULL, NULL),
			 400);
	/* seq: 2^63-1 would freeze the host's record (its genuine reports all "duplicates") */
	assert_int_equal(post_raw(fx, "h1", "9223372036854775807", "org", b, "6000", ""), 400);
	assert_int_equal(post_raw(fx, "h1", "100000000", "org", b, "6000", ""), 409);
	assert_int_equal(post_usage(fx, "h1", 2, 6000, &total), 200);
	assert_int_equal(total, 10000);
	/* the number of counters in one report is bounded */
	{
		struct lc_buf big;
		lc_buf_init(&big, 64u << 20);
		lc_buf_printf(&big, "{\"host_id\":\"h4\",\"epoch\":\"e\",\"seq\":1,\"counters\":[");
		for (int i = 0; i < 65537; i++)
			lc_buf_printf(&big, "%s{\"scope\":\"customer\",\"id\":\"c%d\",\"metric\":\"cost\","
				      "\"window\":\"lifetime\",\"bucket\":0,\"used\":1}", i ? "," : "", i);
		lc_buf_addstr(&big, "]}");
		assert_int_equal(report(fx, big.data, NULL, NULL), 413);
		lc_buf_free(&big);
	}
}

/* window arithmetic never overflows, whatever time it is given */
static void test_window_bounds(void **state)
{
	(void)state;
	for (int w = LC_WIN_MINUTE; w <= LC_WIN_LIFETIME; w++) {
		int64_t ext[] = {INT64_MIN, INT64_MIN + 1, -1, 0, INT64_MAX - 1, INT64_MAX};
		for (size_t i = 0; i < sizeof ext / sizeof ext[0]; i++) {
			int64_t st = lc_window_start((enum lc_window)w, ext[i]), en = lc_window_end((enum lc_window)w, ext[i]);
			assert_true(st <= en);
		}
	}
	assert_int_equal(lc_window_start(LC_WIN_MONTHLY, -1), -31 * 86400);
	assert_int_equal(lc_window_end(LC_WIN_MONTHLY, -1), 0);
}

/* every row of the route table is reachable by its method and pattern; HEAD rides on GET;
 * a path that matches with another method is 405 with Allow, anything else 404 */
static void test_route_table(void **state)
{
	(void)state;
	struct srv_match m;
	struct srv_resp rs;
	for (const struct srv_route *r = srv_routes; r->method; r++) {
		char path[256], *o = path;
		for (const char *p = r->pattern; *p; p++) {
			if (*p == '{') {
				o += sprintf(o, "x1");
				p = strchr(p, '}');
			} else {
				*o++ = *p;
			}
		}
		*o = 0;
		assert_int_equal(srv_route_match(r->method, path, &m, &rs), 0);
		assert_ptr_equal(m.route, r);
		srv_resp_free(&rs);
	}
	assert_int_equal(srv_route_match("HEAD", "/healthz", &m, &rs), 0);
	assert_int_equal(srv_route_match("POST", "/v1/admin/org", &m, &rs), -1);
	assert_int_equal(rs.status, 405);
	assert_string_equal(rs.allow, "GET, PUT");
	srv_resp_free(&rs);
	assert_int_equal(srv_route_match("GET", "/v1/admin/keys/a/b", &m, &rs), -1);
	assert_int_equal(rs.status, 404);
	srv_resp_free(&rs);
}

/* %00 (and any escaped control byte) is never decoded: the router refuses the path instead of
 * acting on a truncated id (DELETE /v1/admin/teams/-%00zzz deleted team "-") */
static void test_path_control_bytes(void **state)
{
	struct fx *fx = *state;
	char path[64];
	json_t *j;

	snprintf(path, sizeof path, "/v1/admin/teams/-%%00zzz");
	assert_int_equal(srv_unescape(path), strlen("/v1/admin/teams/-%00zzz"));
	assert_string_equal(path, "/v1/admin/teams/-%00zzz");
	snprintf(path, sizeof path, "/v1/admin/teams/a%%2eb%%09%%7f%%zz%%4");
	srv_unescape(path);
	assert_string_equal(path, "/v1/admin/teams/a.b%09%7f%zz%4");

	assert_int_equal(req(fx, "PUT", "/v1/admin/teams/-", AUTH, "{\"limits\":[]}", NULL, NULL), 201);
	assert_int_equal(req(fx, "DELETE", "/v1/admin/teams/-%00zzz", AUTH, NULL, &j, NULL), 400);
	assert_error(j, "invalid_request_error", "control characters");
	json_decref(j);
	assert_int_equal(req(fx, "DELETE", "/v1/admin/teams/-\tx", AUTH, NULL, NULL, NULL), 400);
	assert_int_equal(req(fx, "GET", "/v1/admin/teams/-", AUTH, NULL, NULL, NULL), 200);   /* still there */
}

/* ids: the API takes what the policy takes (1-63), and says so */
static void test_id_limit(void **state)
{
	struct fx *fx = *state;
	char id[80], path[128], body[256];
	json_t *j;

	memset(id, 'a', 64);
	id[64] = 0;
	snprintf(path, sizeof path, "/v1/admin/teams/%s", id);
	assert_int_equal(req(fx, "PUT", path, AUTH, "{\"limits\":[]}", &j, NULL), 400);
	assert_error(j, "invalid_request_error", "1-63 characters");
	json_decref(j);
	snprintf(body, sizeof body, "{\"id\":\"%s\",\"sha256\":\"" SHA_A "\"}", id);
	assert_int_equal(req(fx, "POST", "/v1/admin/keys", AUTH, body, &j, NULL), 400);
	assert_error(j, "invalid_request_error", "1-63 characters");
	json_decref(j);
	id[63] = 0;
	snprintf(path, sizeof path, "/v1/admin/teams/%s", id);
	assert_int_equal(req(fx, "PUT", path, AUTH, "{\"limits\":[]}", NULL, NULL), 201);
	snprintf(body, sizeof body, "{\"id\":\"%s\",\"sha256\":\"" SHA_A "\"}", id);
	assert_int_equal(req(fx, "POST", "/v1/admin/keys", AUTH, body, NULL, NULL), 201);
}

/* A write the disk refuses (RLIMIT_FSIZE 0: every write fails with EFBIG, as a full disk fails
 * with ENOSPC) is answered 503 naming the cause, never 200/201, and nothing is stored. */
static void test_store_failure_is_5xx(void **state)
{
	struct fx *fx = *state;
	if (pg_url())
		skip();   /* a full disk under LMDB; test_server_pg stops the database instead */
	const char *const calls[][3] = {
		{"PUT", "/v1/admin/teams/t", "{\"limits\":[]}"},
		{"POST", "/v1/admin/keys", "{\"id\":\"k\",\"sha256\":\"" SHA_A "\"}"},
		{"PUT", "/v1/admin/org", "{\"spend_cap_usd\":5,\"period\":\"monthly\"}"},
		{"POST", "/v1/admin/invites", "{\"limits\":[]}"},
		{"PATCH", "/v1/admin/keys/ci", "{\"revoked\":true}"},
	};
	int status;
	int64_t v0;

	assert_int_equal(req(fx, "POST", "/v1/admin/keys", AUTH, "{\"id\":\"ci\",\"sha256\":\"" SHA_B "\"}", NULL, NULL), 201);
	v0 = version(fx);
	srv_store_close(&fx->s);   /* the child opens its own (an LMDB env does not cross fork) */
	pid_t pid = fork();
	if (pid == 0) {
		struct rlimit rl = {0, 0};
		int bad = 0;
		signal(SIGXFSZ, SIG_IGN);
		setenv("LLMCAP_LOG", "off", 1);
		if (open_fx(fx, 0) != 0 || setrlimit(RLIMIT_FSIZE, &rl) != 0)
			_exit(100);
		/* no cmocka asserts in a forked child */
		for (size_t i = 0; i < sizeof calls / sizeof calls[0]; i++) {
			struct srv_req rq = {.method = calls[i][0], .path = calls[i][1], .authorization = AUTH,
					     .body = calls[i][2], .body_len = strlen(calls[i][2])};
			struct srv_resp rs;
			srv_handle(&fx->s, &rq, &rs);
			if (rs.status != 503 || !rs.body || !strstr(rs.body, "store: File too large"))
				bad |= 1 << i;
			srv_resp_free(&rs);
		}
		_exit(bad);
	}
	waitpid(pid, &status, 0);
	assert_int_equal(open_fx(fx, 0), 0);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
	assert_int_equal(version(fx), v0);
	assert_int_equal(req(fx, "GET", "/v1/admin/teams/t", AUTH, NULL, NULL, NULL), 404);
	assert_int_equal(req(fx, "GET", "/v1/admin/keys/k", AUTH, NULL, NULL, NULL), 404);
}

static struct srv_resp policy_req(struct fx *fx, const char *etag, const char *const *args, int64_t start_ms)
{
	struct srv_req rq = {.method = "GET", .path = "/v1/policy", .if_none_match = etag, .args = args,
			     .start_ms = start_ms};
	struct srv_resp rs;
	srv_handle(&fx->s, &rq, &rs);
	return rs;
}

/* GET /v1/policy?wait=N with the current ETag: no answer yet (retry_at), 200 once a change is
 * committed (pub_gen moves only on a commit), 304 when the wait is over */
static void test_policy_long_poll(void **state)
{
	struct fx *fx = *state;
	const char *wait5[] = {"wait", "5", NULL}, *wait999[] = {"wait", "999", NULL}, *bad[] = {"wait", "x", NULL};
	struct srv_resp rs = policy_req(fx, NULL, NULL, 0), r2;
	char etag[96];
	int64_t now = lc_now_ms();

	assert_int_equal(rs.status, 200);
	snprintf(etag, sizeof etag, "%s", rs.etag);
	srv_resp_free(&rs);

	r2 = policy_req(fx, etag, wait5, now);
	assert_int_equal(r2.status, 0);
	assert_int_equal(r2.retry_at_ms, now + 5000);
	r2 = policy_req(fx, etag, wait999, now);
	assert_int_equal(r2.retry_at_ms, now + SRV_LONGPOLL_MAX_S * 1000);
	r2 = policy_req(fx, etag, NULL, now);
	assert_int_equal(r2.status, 304);
	r2 = policy_req(fx, etag, wait5, now - 6000);   /* the wait is over */
	assert_int_equal(r2.status, 304);
	assert_string_equal(r2.etag, etag);
	r2 = policy_req(fx, etag, bad, now);
	assert_int_equal(r2.status, 400);
	srv_resp_free(&r2);

	uint64_t gen = fx->s.pub_gen;
	assert_int_equal(req(fx, "PUT", "/v1/admin/teams/bad", AUTH, "{\"limits\":[{\"metric\":\"x\"}]}", NULL, NULL), 400);
	assert_true(fx->s.pub_gen == gen);   /* refused: nothing published */
	assert_int_equal(req(fx, "PUT", "/v1/admin/teams/t", AUTH, "{\"limits\":[]}", NULL, NULL), 201);
	assert_true(fx->s.pub_gen == gen + 1);
	r2 = policy_req(fx, etag, wait5, now);
	assert_int_equal(r2.status, 200);
	assert_string_not_equal(r2.etag, etag);
	srv_resp_free(&r2);
}

static int req_dbg(struct fx *fx, const char *method, const char *path, const char *body, json_t **out)
{
	int st = req(fx, method, path, AUTH, body, out, NULL);
	if (st >= 300 && *out)
		print_message("%s %s -> %d %s\n", method, path, st,
			      json_string_value(json_object_get(json_object_get(*out, "error"), "message")));
	return st;
}

/* PATCH a team's limits in place; GET customers lists the overrides; invites are listed and revoked */
static void test_team_patch_customers_invites(void **state)
{
	struct fx *fx = *state;
	json_t *j, *l;
	char path[128];

	assert_int_equal(req(fx, "PUT", "/v1/admin/teams/t", AUTH,
			     "{\"limits\":[{\"metric\":\"cost\",\"window\":\"daily\",\"threshold\":5},"
			     "{\"metric\":\"requests\",\"window\":\"daily\",\"threshold\":9}]}", NULL, NULL), 201);
	assert_int_equal(req_dbg(fx, "PATCH", "/v1/admin/teams/t",
				 "{\"limits\":{\"0\":{\"threshold\":7},\"1\":null,\"2\":{\"metric\":\"requests\",\"window\":\"hour\",\"threshold\":3}}}",
				 &j), 200);
	l = json_object_get(j, "limits");
	assert_int_equal(json_array_size(l), 2);
	assert_true(json_number_value(json_object_get(json_array_get(l, 0), "threshold")) == 7);
	assert_string_equal(json_string_value(json_object_get(json_array_get(l, 1), "window")), "hour");
	json_decref(j);
	assert_int_equal(req(fx, "PATCH", "/v1/admin/teams/t", AUTH, "{\"limits\":{\"5\":{}}}", &j, NULL), 400);
	assert_error(j, "invalid_request_error", "limits.5");
	json_decref(j);
	assert_int_equal(req(fx, "PATCH", "/v1/admin/teams/t", AUTH, "{\"limits\":{\"0\":{\"window\":\"weekly-ish\"}}}", &j, NULL), 400);
	assert_error(j, "invalid_request_error", "teams.t.limits[0].window");
	json_decref(j);
	assert_int_equal(req(fx, "PATCH", "/v1/admin/teams/t", AUTH, "{\"name\":1}", NULL, NULL), 400);
	assert_int_equal(req(fx, "PATCH", "/v1/admin/teams/nope", AUTH, "{\"limits\":[]}", NULL, NULL), 404);

	assert_int_equal(req_dbg(fx, "PUT", "/v1/admin/customers", "{\"monthly_budget_usd\":10}", &j), 200);
	json_decref(j);
	assert_int_equal(req_dbg(fx, "PUT", "/v1/admin/customers/acme", "{\"monthly_budget_usd\":50}", &j), 201);
	json_decref(j);
	assert_int_equal(req(fx, "GET", "/v1/admin/customers", AUTH, NULL, &j, NULL), 200);
	assert_true(json_number_value(json_object_get(j, "monthly_budget_usd")) == 10);
	assert_true(json_number_value(json_object_get(json_object_get(json_object_get(j, "overrides"), "acme"),
						      "monthly_budget_usd")) == 50);
	json_decref(j);

	assert_int_equal(req_dbg(fx, "POST", "/v1/admin/invites", "{\"limits\":[],\"id\":\"bob\"}", &j), 201);
	char code[64], id[32];
	snprintf(code, sizeof code, "%s", json_string_value(json_object_get(j, "code")));
	snprintf(id, sizeof id, "%s", json_string_value(json_object_get(j, "id")));
	assert_int_equal(strlen(id), 16);
	json_decref(j);
	struct srv_resp keep;
	assert_int_equal(req(fx, "GET", "/v1/admin/invites", AUTH, NULL, &j, &keep), 200);
	assert_null(strstr(keep.body, code));   /* the code is never shown again */
	srv_resp_free(&keep);
	json_t *inv = json_array_get(json_object_get(j, "invites"), 0);
	assert_string_equal(json_string_value(json_object_get(inv, "id")), id);
	assert_string_equal(json_string_value(json_object_get(inv, "status")), "open");
	assert_string_equal(json_string_value(json_object_get(inv, "key")), "bob");
	json_decref(j);
	snprintf(path, sizeof path, "/v1/invites/%s/redeem", id);
	assert_int_equal(req(fx, "POST", path, NULL, "{\"sha256\":\"" SHA_A "\"}", NULL, NULL), 404);   /* the id is no code */
	snprintf(path, sizeof path, "/v1/admin/invites/%s", id);
	assert_int_equal(req_dbg(fx, "DELETE", path, NULL, &j), 200);
	assert_string_equal(json_string_value(json_object_get(j, "status")), "revoked");
	json_decref(j);
	snprintf(path, sizeof path, "/v1/invites/%s/redeem", code);
	assert_int_equal(req(fx, "POST", path, NULL, "{\"sha256\":\"" SHA_A "\"}", &j, NULL), 410);
	assert_error(j, "gone", "revoked");
	json_decref(j);
	/* revoking by code; a redeemed invite is not revoked (the key is) */
	assert_int_equal(req(fx, "POST", "/v1/admin/invites", AUTH, "{\"limits\":[]}", &j, NULL), 201);
	snprintf(code, sizeof code, "%s", json_string_value(json_object_get(j, "code")));
	json_decref(j);
	snprintf(path, sizeof path, "/v1/invites/%s/redeem", code);
	assert_int_equal(req(fx, "POST", path, NULL, "{\"sha256\":\"" SHA_B "\"}", NULL, NULL), 201);
	snprintf(path, sizeof path, "/v1/admin/invites/%s", code);
	assert_int_equal(req(fx, "DELETE", path, AUTH, NULL, &j, NULL), 409);
	assert_error(j, "conflict_error", "revoke the key");
	json_decref(j);
	assert_int_equal(req(fx, "DELETE", "/v1/admin/invites/0000000000000000", AUTH, NULL, NULL, NULL), 404);
}

/* named admin tokens: a read token reads and is refused changes (403 naming it); every change is
 * in the audit log with the token's name, the call, before and after, and no secret */
static void test_tokens_and_audit(void **state)
{
	struct fx *fx = *state;
	char err[256];
	json_t *j, *e;
	struct srv_resp keep;
	const char *tokens = "# name role token\n\nreader read reader-token-0123456789\n  ops admin ops-token-0123456789abcd\n";

	assert_int_equal(srv_load_tokens(&fx->s, tokens, strlen(tokens), err, sizeof err), 0);
	assert_int_equal(srv_load_tokens(&fx->s, "x writer long-enough-token-000\n", 31, err, sizeof err), -1);
	assert_non_null(strstr(err, "line 1: role 'writer'"));
	assert_int_equal(srv_load_tokens(&fx->s, "\ny read short\n", 14, err, sizeof err), -1);
	assert_non_null(strstr(err, "line 2: token 'y': must be at least 16"));
	assert_int_equal(srv_load_tokens(&fx->s, "ops read other-token-0123456789\n", 32, err, sizeof err), -1);
	assert_non_null(strstr(err, "used twice"));

	assert_int_equal(req(fx, "GET", "/v1/admin/keys", "Bearer reader-token-0123456789", NULL, NULL, NULL), 200);
	assert_int_equal(req(fx, "GET", "/v1/usage", "Bearer reader-token-0123456789", NULL, NULL, NULL), 200);
	assert_int_equal(req(fx, "PUT", "/v1/admin/org", "Bearer reader-token-0123456789",
			     "{\"spend_cap_usd\":5,\"period\":\"monthly\"}", &j, NULL), 403);
	assert_error(j, "permission_error", "'reader' may only read");
	json_decref(j);
	assert_int_equal(req(fx, "PUT", "/v1/admin/teams/t", "Bearer ops-token-0123456789abcd",
			     "{\"limits\":[{\"metric\":\"cost\",\"window\":\"daily\",\"threshold\":5}]}", NULL, NULL), 201);
	assert_int_equal(req(fx, "PATCH", "/v1/admin/teams/t", AUTH, "{\"limits\":{\"0\":{\"threshold\":9}}}", NULL, NULL), 200);
	assert_int_equal(req(fx, "PATCH", "/v1/admin/teams/t", AUTH, "{\"limits\":{\"0\":{\"window\":\"x\"}}}", NULL, NULL), 400);
	assert_int_equal(req(fx, "PUT", "/v1/admin/webhooks", "Bearer ops-token-0123456789abcd",
			     "{\"webhooks\":[{\"url\":\"http://127.0.0.1:9/a\",\"secret\":\"whsec_topsecret\",\"events\":[\"*\"]}]}",
			     NULL, NULL), 200);

	assert_int_equal(req(fx, "GET", "/v1/admin/audit", "Bearer reader-token-0123456789", NULL, &j, &keep), 200);
	assert_null(strstr(keep.body, "whsec_topsecret"));
	srv_resp_free(&keep);
	json_t *ent = json_object_get(j, "entries");
	assert_int_equal(json_array_size(ent), 3);   /* the refused change is not there */
	e = json_array_get(ent, 0);                  /* newest first */
	assert_string_equal(json_string_value(json_object_get(e, "token")), "ops");
	assert_string_equal(json_string_value(json_object_get(e, "call")), "PUT /v1/admin/webhooks");
	assert_non_null(json_object_get(e, "time"));
	e = json_array_get(ent, 1);
	assert_string_equal(json_string_value(json_object_get(e, "token")), "admin");
	assert_string_equal(json_string_value(json_object_get(e, "call")), "PATCH /v1/admin/teams/t");
	assert_true(json_number_value(json_object_get(json_array_get(json_object_get(json_object_get(e, "before"), "limits"), 0),
						      "threshold")) == 5);
	assert_true(json_number_value(json_object_get(json_array_get(json_object_get(json_object_get(e, "after"), "limits"), 0),
						      "threshold")) == 9);
	e = json_array_get(ent, 2);
	assert_true(json_is_null(json_object_get(e, "before")));
	assert_int_equal(json_integer_value(json_object_get(e, "status")), 201);
	json_decref(j);
	const char *lim[] = {"limit", "1", NULL};
	struct srv_req rq = {.method = "GET", .path = "/v1/admin/audit", .authorization = AUTH, .args = lim};
	srv_handle(&fx->s, &rq, &keep);
	j = json_loads(keep.body, 0, NULL);
	assert_int_equal(json_array_size(json_object_get(j, "entries")), 1);
	json_decref(j);
	srv_resp_free(&keep);
}

/* Walks longer than the PostgreSQL cursor's page (256 rows), both ways: a listing of 300 teams in
 * full, the audit trail newest first across pages, its numbering (the last record) exact */
static void test_long_walks(void **state)
{
	struct fx *fx = *state;
	char path[64];
	json_t *j;
	enum { N = 300 };

	for (int i = 0; i < N; i++) {
		snprintf(path, sizeof path, "/v1/admin/teams/t%03d", i);
		assert_int_equal(req(fx, "PUT", path, AUTH, "{\"limits\":[{\"metric\":\"requests\",\"window\":\"daily\",\"threshold\":5}]}",
				     NULL, NULL), 201);
	}
	assert_int_equal(req(fx, "GET", "/v1/admin/teams", AUTH, NULL, &j, NULL), 200);
	json_t *teams = json_object_get(j, "teams");   /* {id: team}: every one of them */
	assert_int_equal(json_object_size(teams), N);
	for (int i = 0; i < N; i++) {
		snprintf(path, sizeof path, "t%03d", i);
		assert_non_null(json_object_get(teams, path));
	}
	json_decref(j);

	const char *lim[] = {"limit", "1000", NULL};
	struct srv_req rq = {.method = "GET", .path = "/v1/admin/audit", .authorization = AUTH, .args = lim};
	struct srv_resp rs;
	srv_handle(&fx->s, &rq, &rs);
	assert_int_equal(rs.status, 200);
	j = json_loads(rs.body, 0, NULL);
	srv_resp_free(&rs);
	json_t *ent = json_object_get(j, "entries");
	assert_int_equal(json_array_size(ent), N);
	for (int i = 0; i < N; i++)   /* newest first: numbered N..1 with no gap or repeat */
		assert_int_equal(json_integer_value(json_object_get(json_array_get(ent, (size_t)i), "seq")), N - i);
	json_decref(j);
}

/* issue 9: every host has its own credential; a forged, replayed or other-host report is refused */
static int find_secret(struct srv *s, srv_txn *txn, void *ctx)
{
	const char *secret = ctx;
	srv_dbi dbs[] = {s->db_hostcreds, s->db_enroll, s->db_meta, s->db_hosts, s->db_audit};
	for (size_t i = 0; i < sizeof dbs / sizeof dbs[0]; i++) {
		srv_cursor *c;
		MDB_val k, v;
		srv_cursor_open(txn, dbs[i], &c);
		for (int rc = srv_cursor_get(c, &k, &v, MDB_FIRST); rc == 0; rc = srv_cursor_get(c, &k, &v, MDB_NEXT))
			if (memmem(v.mv_data, v.mv_size, secret, strlen(secret))) {
				srv_cursor_close(c);
				return 1;
			}
		srv_cursor_close(c);
	}
	return 0;
}

static void test_host_credentials(void **state)
{
	struct fx *fx = *state;
	json_t *j;
	char body[512], code[80], cred[200], bearer[220], forged[220];
	int64_t total = 0;

	/* a one-time code, exchanged once for a host id and a secret */
	assert_int_equal(req(fx, "POST", "/v1/admin/hosts/enroll", AUTH, "{\"label\":\"web-1\",\"expires_in_s\":600}",
			     &j, NULL), 201);
	snprintf(code, sizeof code, "%s", json_string_value(json_object_get(j, "code")));
	assert_int_equal(strlen(code), 48);
	json_decref(j);
	assert_int_equal(req(fx, "POST", "/v1/admin/hosts/enroll", NULL, NULL, NULL, NULL), 401);
	assert_int_equal(req(fx, "POST", "/v1/admin/hosts/enroll", AUTH, "{\"expires_in_s\":5}", NULL, NULL), 400);
	snprintf(body, sizeof body, "{\"code\":\"%s\"}", code);
	assert_int_equal(req(fx, "POST", "/v1/hosts/enroll", NULL, body, &j, NULL), 201);
	const char *hid = json_string_value(json_object_get(j, "host_id"));
	assert_non_null(hid);
	snprintf(cred, sizeof cred, "%s", json_string_value(json_object_get(j, "credential")));
	char host[64];
	snprintf(host, sizeof host, "%s", hid);
	json_decref(j);
	assert_int_equal(strncmp(cred, host, strlen(host)), 0);
	assert_int_equal(req(fx, "POST", "/v1/hosts/enroll", NULL, body, &j, NULL), 410);   /* one time */
	assert_error(j, "gone", "already used");
	json_decref(j);
	assert_int_equal(req(fx, "POST", "/v1/hosts/enroll", NULL, "{\"code\":\"00112233\"}", NULL, NULL), 404);
	/* the store keeps only hashes: neither the secret nor the code is in it */
	assert_int_equal(srv_read(&fx->s, find_secret, strchr(cred, '.') + 1), 0);
	assert_int_equal(srv_read(&fx->s, find_secret, code), 0);

	snprintf(bearer, sizeof bearer, "Bearer %s", cred);
	snprintf(body, sizeof body,
		 "{\"host_id\":\"%s\",\"epoch\":\"e\",\"seq\":1,\"counters\":[{\"scope\":\"org\",\"id\":\"org\","
		 "\"metric\":\"cost\",\"window\":\"monthly\",\"bucket\":%" PRId64 ",\"used\":5}]}", host, month());
	/* no credential, the admin token, a wrong secret: refused */
	assert_int_equal(req(fx, "POST", "/v1/usage", NULL, body, &j, NULL), 401);
	assert_error(j, "authentication_error", "llmcap agent enroll");
	json_decref(j);
	assert_int_equal(req(fx, "POST", "/v1/usage", AUTH, body, NULL, NULL), 401);
	snprintf(forged, sizeof forged, "%s", bearer);
	forged[strlen(forged) - 1] = forged[strlen(forged) - 1] == '0' ? '1' : '0';
	assert_int_equal(req(fx, "POST", "/v1/usage", forged, body, NULL, NULL), 401);
	/* its own report: accepted; the same seq again (a replay): refused */
	assert_int_equal(req(fx, "POST", "/v1/usage", bearer, body, NULL, NULL), 200);
	assert_int_equal(req(fx, "POST", "/v1/usage", bearer, body, &j, NULL), 409);
	assert_error(j, "conflict_error", "replayed");
	json_decref(j);
	/* reporting as another host: refused, also for an enrolled one */
	host_auth(fx, "other");
	assert_int_equal(req(fx, "POST", "/v1/usage", host_auth(fx, "other"), body, &j, NULL), 403);
	assert_error(j, "permission_error", "only as itself");
	json_decref(j);
	assert_int_equal(post_usage(fx, "other", 1, 7, &total), 200);
	assert_int_equal(total, 12);
	/* a host id already enrolled cannot be claimed with a new code */
	assert_int_equal(req(fx, "POST", "/v1/admin/hosts/enroll", AUTH, NULL, &j, NULL), 201);
	snprintf(body, sizeof body, "{\"code\":\"%s\",\"host_id\":\"other\"}", json_string_value(json_object_get(j, "code")));
	json_decref(j);
	assert_int_equal(req(fx, "POST", "/v1/hosts/enroll", NULL, body, NULL, NULL), 409);

	/* the list; removal refuses its reports from then on, and what it reported stays counted */
	assert_int_equal(req(fx, "GET", "/v1/admin/hosts", AUTH, NULL, &j, NULL), 200);
	assert_int_equal(json_array_size(json_object_get(j, "hosts")), 2);
	json_decref(j);
	snprintf(body, sizeof body, "/v1/admin/hosts/%s", host);
	assert_int_equal(req(fx, "GET", body, AUTH, NULL, &j, NULL), 200);
	assert_string_equal(json_string_value(json_object_get(j, "status")), "active");
	assert_string_equal(json_string_value(json_object_get(j, "label")), "web-1");
	assert_int_equal(json_integer_value(json_object_get(j, "seq")), 1);
	json_decref(j);
	assert_int_equal(req(fx, "DELETE", "/v1/admin/hosts/other", AUTH, NULL, &j, NULL), 200);
	assert_string_equal(json_string_value(json_object_get(j, "status")), "removed");
	json_decref(j);
	assert_int_equal(post_usage(fx, "other", 2, 100, &total), 401);
	assert_int_equal(req(fx, "DELETE", "/v1/admin/hosts/nope", AUTH, NULL, NULL, NULL), 404);
	/* the org total still holds what "other" reported before it was removed */
	snprintf(body, sizeof body,
		 "{\"host_id\":\"%s\",\"epoch\":\"e\",\"seq\":2,\"counters\":[{\"scope\":\"org\",\"id\":\"org\","
		 "\"metric\":\"cost\",\"window\":\"monthly\",\"bucket\":%" PRId64 ",\"used\":5}]}", host, month());
	assert_int_equal(req(fx, "POST", "/v1/usage", bearer, body, &j, NULL), 200);
	assert_int_equal(json_integer_value(json_object_get(json_array_get(json_object_get(j, "counters"), 0), "used")), 12);
	json_decref(j);
	/* the admin answers carry the code, the audit log does not */
	assert_int_equal(req(fx, "GET", "/v1/admin/audit", AUTH, NULL, &j, NULL), 200);
	char *dump = json_dumps(j, 0);
	assert_null(strstr(dump, code));
	free(dump);
	json_decref(j);
}

/* an expired code enrols nobody */
static void test_enroll_code_expires(void **state)
{
	struct fx *fx = *state;
	json_t *j;
	char body[256];
	fake_ms = lc_now_ms();
	lc_clock_hook = fake_clock;
	assert_int_equal(req(fx, "POST", "/v1/admin/hosts/enroll", AUTH, "{\"expires_in_s\":60}", &j, NULL), 201);
	snprintf(body, sizeof body, "{\"code\":\"%s\"}", json_string_value(json_object_get(j, "code")));
	json_decref(j);
	fake_ms += 61 * 1000;
	assert_int_equal(req(fx, "POST", "/v1/hosts/enroll", NULL, body, &j, NULL), 410);
	assert_error(j, "gone", "expired");
	json_decref(j);
	lc_clock_hook = NULL;
}

/* issue 9: the policy hosts download holds no webhook secret; host events are notified by the
 * server once per (host, event id) */
static void test_secrets_stay_and_host_events(void **state)
{
	struct fx *fx = *state;
	struct srv_resp rs;
	json_t *j;
	assert_int_equal(req(fx, "PUT", "/v1/admin/webhooks", AUTH,
			     "{\"webhooks\":[{\"url\":\"http://127.0.0.1:9/hook-path-secret\",\"secret\":\"whsec_topsecret\","
			     "\"events\":[\"*\"]}]}", NULL, NULL), 200);
	/* still validated: a bad webhook is a 400 naming it */
	assert_int_equal(req(fx, "PUT", "/v1/admin/webhooks", AUTH, "{\"webhooks\":[{\"url\":\"ftp://x\",\"secret\":\"s\"}]}",
			     &j, NULL), 400);
	assert_error(j, "invalid_request_error", "notifications.webhooks[0].url");
	json_decref(j);
	assert_int_equal(req(fx, "GET", "/v1/policy", NULL, NULL, NULL, &rs), 200);
	assert_null(memmem(rs.body, rs.body_len, "whsec_topsecret", 15));
	unsigned char *payload = NULL;
	size_t plen;
	char err[256];
	assert_int_equal(lc_dsse_verify(&fx->trust, rs.body, rs.body_len, &payload, &plen, NULL, err, sizeof err), 0);
	assert_null(memmem(payload, plen, "whsec_topsecret", 15));
	assert_null(memmem(payload, plen, "hook-path-secret", 16));
	struct lc_policy *p;
	assert_int_equal(lc_policy_parse(payload, plen, &p, err, sizeof err), 0);   /* the host's parser takes it */
	lc_policy_free(p);
	free(payload);
	srv_resp_free(&rs);

	const char *ev = "{\"events\":[{\"id\":\"0123abcd\",\"event\":\"key_expired\",\"created_at\":\"2026-01-01T00:00:00Z\","
			 "\"data\":{\"key\":\"ci\"}}]}";
	assert_int_equal(req(fx, "POST", "/v1/events", NULL, ev, NULL, NULL), 401);
	assert_int_equal(req(fx, "POST", "/v1/events", host_auth(fx, "h1"), ev, &j, NULL), 200);
	assert_int_equal(json_integer_value(json_object_get(j, "accepted")), 1);
	json_decref(j);
	assert_int_equal(outbox(fx), 1);
	/* uploaded again (an agent killed before it forgot them): notified once */
	assert_int_equal(req(fx, "POST", "/v1/events", host_auth(fx, "h1"), ev, &j, NULL), 200);
	assert_int_equal(json_integer_value(json_object_get(j, "duplicates")), 1);
	json_decref(j);
	assert_int_equal(outbox(fx), 1);
	/* another host's event with the same id is its own */
	assert_int_equal(req(fx, "POST", "/v1/events", host_auth(fx, "h2"), ev, NULL, NULL), 200);
	assert_int_equal(outbox(fx), 2);
	/* a host cannot send events as another */
	assert_int_equal(req(fx, "POST", "/v1/events", host_auth(fx, "h2"),
			     "{\"events\":[{\"id\":\"x1\",\"event\":\"key_expired\",\"created_at\":\"2026-01-01T00:00:00Z\","
			     "\"host_id\":\"h1\"}]}", NULL, NULL), 403);
	assert_int_equal(req(fx, "POST", "/v1/events", host_auth(fx, "h2"), "{\"events\":[{\"id\":\"x1\"}]}", NULL, NULL),
			 400);

	/* a limit's crossing seen by several hosts (a customer served by two) is notified once per level
	 * and window; another level, or the next window, is news */
	size_t before = outbox(fx);
	struct { const char *host, *id, *level, *at, *ws; size_t outbox; } up[] = {
		{"h1", "c1", "alert_at", "0.5", "2026-12-01T00:00:00Z", 1},
		{"h2", "c2", "alert_at", "0.5", "2026-12-01T00:00:00Z", 1},   /* h2 crossed it too: once */
		{"h2", "c3", "alert_at", "0.8", "2026-12-01T00:00:00Z", 2},   /* the next level */
		{"h1", "c4", "alert_at", "0.8", "2026-12-01T00:00:00Z", 2},
		{"h1", "c5", "projected", "0.9", "2026-12-01T00:00:00Z", 3},
		{"h2", "c6", "alert_at", "0.5", "2027-01-01T00:00:00Z", 4},   /* next month's window */
	};
	for (size_t i = 0; i < sizeof up / sizeof up[0]; i++) {
		char body[1024];
		snprintf(body, sizeof body,
			 "{\"events\":[{\"id\":\"%s\",\"event\":\"%s\",\"created_at\":\"2026-12-02T00:00:00Z\","
			 "\"data\":{\"limit\":\"customer:acme:cost:monthly\",\"level\":\"%s\",\"%s\":%s,"
			 "\"used\":0.6,\"window_start\":\"%s\"}}]}",
			 up[i].id, strcmp(up[i].level, "projected") ? "limit_alert" : "limit_projected", up[i].level,
			 strcmp(up[i].level, "projected") ? "alert_at" : "projected", up[i].at, up[i].ws);
		assert_int_equal(req(fx, "POST", "/v1/events", host_auth(fx, up[i].host), body, NULL, NULL), 200);
		assert_int_equal(outbox(fx), before + up[i].outbox);
	}
}

/* a test on a fresh store */
#define FX(test) cmocka_unit_test_setup_teardown(test, setup, teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
		FX(test_policy_signed_and_etag),
		FX(test_auth),
		FX(test_key_lifecycle),
		FX(test_invites),
		FX(test_usage_idempotent_and_events_once),
		cmocka_unit_test(test_webhook_signature),
		cmocka_unit_test_setup_teardown(test_map_grows, setup_small, teardown),
		FX(test_resign_at_half_life),
		FX(test_event_once_per_window),
		FX(test_prune_forgets_past_windows),
		FX(test_usage_report_bounds),
		cmocka_unit_test(test_window_bounds),
		cmocka_unit_test(test_route_table),
		FX(test_path_control_bytes),
		FX(test_id_limit),
		FX(test_store_failure_is_5xx),
		FX(test_policy_long_poll),
		FX(test_team_patch_customers_invites),
		FX(test_tokens_and_audit),
		FX(test_long_walks),
		FX(test_leases),
		FX(test_leases_late_call_and_leftovers),
		FX(test_host_credentials),
		FX(test_enroll_code_expires),
		FX(test_secrets_stay_and_host_events),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
