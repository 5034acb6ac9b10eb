/* policy_doc.c - the policy document assembled from the store's pieces,
 * validated with the same parser the hosts use, signed, and stored as the
 * next version. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "policy.h"
#include "srv.h"
#include "util.h"

static json_t *default_providers(void)
{
	return json_pack("[{s:s,s:s,s:[s]},{s:s,s:s,s:[s]}]",
			 "name", "openai", "format", "openai", "hosts", "api.openai.com",
			 "name", "anthropic", "format", "anthropic", "hosts", "api.anthropic.com");
}

int64_t srv_policy_lifetime(struct srv *s, srv_txn *txn)
{
	json_t *set = srv_get_json(txn, s->db_meta, "settings");
	int64_t life = SRV_DEFAULT_LIFETIME_S;
	json_t *d = set ? json_object_get(set, "policy_lifetime_days") : NULL;
	if (d && json_is_number(d) && json_number_value(d) > 0)
		life = (int64_t)(json_number_value(d) * 86400.0);
	if (life < 60)
		life = 60;
	json_decref(set);
	return life;
}

/* every record of dbi as an object id -> value */
static json_t *collect(srv_txn *txn, srv_dbi dbi)
{
	json_t *obj = json_object();
	srv_cursor *c;
	MDB_val k, v;
	if (srv_cursor_open(txn, dbi, &c) != 0)
		return obj;
	for (int rc = srv_cursor_get(c, &k, &v, MDB_FIRST); rc == 0; rc = srv_cursor_get(c, &k, &v, MDB_NEXT)) {
		char id[SRV_ID_MAX + 1];
		if (k.mv_size > SRV_ID_MAX)
			continue;
		memcpy(id, k.mv_data, k.mv_size);
		id[k.mv_size] = 0;
		json_t *val = json_loadb(v.mv_data, v.mv_size, 0, NULL);
		if (val)
			json_object_set_new(obj, id, val);
	}
	srv_cursor_close(c);
	return obj;
}

json_t *srv_policy_build(struct srv *s, srv_txn *txn, int64_t version, int64_t now, char *err, size_t errlen)
{
	json_t *doc = json_object();
	char t[32];
	json_t *p;

	json_object_set_new(doc, "schema", json_integer(1));
	json_object_set_new(doc, "version", json_integer(version));
	lc_time_format(now, t);
	json_object_set_new(doc, "issued_at", json_string(t));
	lc_time_format(now + srv_policy_lifetime(s, txn), t);
	json_object_set_new(doc, "expires_at", json_string(t));

	p = srv_get_json(txn, s->db_meta, "providers");
	json_object_set_new(doc, "providers", p ? p : default_providers());
	p = srv_get_json(txn, s->db_meta, "prices");
	json_object_set_new(doc, "prices", p ? p : json_object());
	/* the built-in price book prices ordinary OpenAI and Anthropic calls from the first policy on
	 * (settings may say "price_book": "none"); the admin's prices override or add */
	json_object_set_new(doc, "price_book", json_string("builtin"));

	json_t *set = srv_get_json(txn, s->db_meta, "settings");
	if (set) {
		const char *f[] = {"unknown_keys", "unknown_models", "price_book", "web_search_max_uses",
				   "web_search_unbounded"};
		for (size_t i = 0; i < sizeof(f) / sizeof(f[0]); i++)
			if ((p = json_object_get(set, f[i])))
				json_object_set(doc, f[i], p);
	}
	/* hosts spend shared limits within slices this server leases them (lease.c), unless the
	 * settings say "leases": false */
	if (srv_leases_on(set))
		json_object_set_new(doc, "leases", json_true());
	json_decref(set);
	if ((p = srv_get_json(txn, s->db_meta, "org")))
		json_object_set_new(doc, "org", p);
	json_object_set_new(doc, "teams", collect(txn, s->db_teams));
	json_object_set_new(doc, "keys", collect(txn, s->db_keys));

	json_t *cust = srv_get_json(txn, s->db_meta, "customers");
	json_t *ovr = collect(txn, s->db_cust);
	if (json_object_size(ovr) > 0) {
		if (!cust)
			cust = json_object();
		json_object_set(cust, "overrides", ovr);
	}
	json_decref(ovr);
	if (cust)
		json_object_set_new(doc, "customers", cust);

	if ((p = srv_get_json(txn, s->db_meta, "webhooks")))
		json_object_set_new(doc, "notifications", json_pack("{s:o}", "webhooks", p));
	(void)err;
	(void)errlen;
	return doc;
}

int srv_publish(struct srv *s, srv_txn *txn, char *err, size_t errlen)
{
	int64_t now = lc_now();
	int64_t version = srv_get_int(txn, s->db_meta, "version", 0) + 1;
	json_t *doc = srv_policy_build(s, txn, version, now, err, errlen);
	char *bytes = NULL, *env = NULL;
	size_t envlen = 0;
	struct lc_policy *pol = NULL;
	int rc = SRV_PUB_INVALID;

	if (!doc)
		return SRV_PUB_INVALID;
	/* the whole document is validated (the webhooks too: a bad one is a 400 naming it), but what
	 * is signed for the hosts leaves the notifications out: webhook URLs and secrets stay on the
	 * server, which sends every notification (hosts upload their events, POST /v1/events) */
	bytes = json_dumps(doc, JSON_COMPACT | JSON_REAL_PRECISION(15));
	if (!bytes) {
		json_decref(doc);
		lc_errf(err, errlen, "out of memory");
		return SRV_PUB_FAILED;
	}
	if (lc_policy_parse(bytes, strlen(bytes), &pol, err, errlen) != 0) {
		json_decref(doc);
		rc = SRV_PUB_INVALID;
		goto out;
	}
	lc_policy_free(pol);
	pol = NULL;
	free(bytes);
	json_object_del(doc, "notifications");
	bytes = json_dumps(doc, JSON_COMPACT | JSON_REAL_PRECISION(15));
	json_decref(doc);
	if (!bytes) {
		lc_errf(err, errlen, "out of memory");
		return SRV_PUB_FAILED;
	}
	size_t len = strlen(bytes);
	if (lc_policy_parse(bytes, len, &pol, err, errlen) != 0) {
		rc = SRV_PUB_INVALID;
		goto out;
	}
	if (lc_dsse_sign(&s->key, bytes, len, &env, &envlen, err, errlen) != 0) {
		rc = SRV_PUB_FAILED;
		goto out;
	}
	unsigned char h[32];
	char hex[65], etag[96];
	lc_sha256(env, envlen, h);
	lc_hex(h, 32, hex);
	snprintf(etag, sizeof etag, "\"v%" PRId64 "-%.16s\"", version, hex);
	if ((rc = srv_put_int(txn, s->db_meta, "version", version)) ||
	    (rc = srv_put_raw(txn, s->db_meta, "envelope", env, envlen)) ||
	    (rc = srv_put_raw(txn, s->db_meta, "payload", bytes, len)) ||
	    (rc = srv_put_raw(txn, s->db_meta, "etag", etag, strlen(etag))) ||
	    (rc = srv_put_int(txn, s->db_meta, "issued_at", pol->issued_at)) ||
	    (rc = srv_put_int(txn, s->db_meta, "expires_at", pol->expires_at)) ||
	    (rc = srv_put_raw(txn, s->db_meta, "signer", s->key.keyid, strlen(s->key.keyid)))) {
		lc_errf(err, errlen, "store: %s", srv_strerror(rc));
		goto out;   /* the store's code: MAP_FULL is retried, anything else fails the txn */
	}
	lc_log(LC_LOG_INFO, "llmcap-server: published policy version %" PRId64, version);
	srv_note_publish();
	rc = 0;
out:
	lc_policy_free(pol);
	free(bytes);
	free(env);
	return rc;
}

static int maintain_txn(struct srv *s, srv_txn *txn, void *ctx)
{
	char *why = ctx;
	int64_t version = srv_get_int(txn, s->db_meta, "version", 0);
	int64_t issued = srv_get_int(txn, s->db_meta, "issued_at", 0);
	int64_t expires = srv_get_int(txn, s->db_meta, "expires_at", 0);
	MDB_val signer;
	int64_t now = lc_now();
	char err[512];

	why[0] = 0;
	if (version == 0)
		snprintf(why, 64, "initial policy");
	else if (srv_get_raw(txn, s->db_meta, "signer", &signer) != 0 ||
		 signer.mv_size != strlen(s->key.keyid) || memcmp(signer.mv_data, s->key.keyid, signer.mv_size))
		snprintf(why, 64, "signing key changed");
	else if (now >= issued + (expires - issued) / 2)
		snprintf(why, 64, "half the lifetime passed");
	else
		return MDB_NOTFOUND;   /* nothing to do: abort the txn */
	int rc = srv_publish(s, txn, err, sizeof err);
	if (rc != 0 && rc != MDB_MAP_FULL)
		lc_log(LC_LOG_ERROR, "llmcap-server: cannot publish (%s): %s", why, err);
	return rc;
}

int srv_policy_maintain(struct srv *s)
{
	char why[64];
	int rc = srv_write(s, maintain_txn, why);
	if (rc == MDB_NOTFOUND)
		return 0;
	if (rc == 0)
		lc_log(LC_LOG_INFO, "llmcap-server: re-signed the policy: %s", why);
	return rc;
}
