/* engine_policy.c - install a signed policy: verify, ratchet, freeze check, compile into LMDB.
 *
 * Check order (DESIGN.md): size cap, envelope, signature by a trusted key, strict parse,
 * schema, version strictly greater than the installed one, expires_at in the future,
 * then compile and store in one transaction. A refusal leaves the installed policy as it was.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine_int.h"
#include "util.h"

#define MV(p, n) ((MDB_val){.mv_size = (n), .mv_data = (void *)(p)})
#define DEFAULT_MAX_OUTPUT 16384


static int put(MDB_txn *txn, MDB_dbi dbi, const void *k, size_t kn, const void *v, size_t vn)
{
	MDB_val key = MV(k, kn), val = MV(v, vn);

	return mdb_put(txn, dbi, &key, &val, 0);
}

static int64_t usd_or(json_t *v, int64_t dflt)
{
	int64_t m;

	if (!v || json_is_null(v))
		return v ? -1 : dflt;
	if (lc_usd_to_micro(json_number_value(v), &m))
		return dflt;
	return m;
}

static int compile(struct lc_store *s, MDB_txn *txn, const struct lc_policy *pol, const void *payload, size_t plen)
{
	static const int tables[] = {LC_DB_PROVIDERS, LC_DB_KEYS, LC_DB_KEYNAMES, LC_DB_TEAMS, LC_DB_PRICES, LC_DB_CUSTS};
	json_t *root = pol->root, *v, *o;
	struct lc_rec_cfg cfg;
	const char *name;
	size_t i, j;
	char err[256];
	int rc;

	for (i = 0; i < sizeof(tables) / sizeof(tables[0]); i++)
		if ((rc = mdb_drop(txn, s->dbi[tables[i]], 0)))
			return rc;

	memset(&cfg, 0, sizeof(cfg));
	cfg.format = LC_REC_FORMAT;
	v = json_object_get(root, "unknown_keys");
	cfg.unknown_keys_block = v && !strcmp(json_string_value(v), "block");
	v = json_object_get(root, "unknown_models");
	cfg.unknown_models_block = !v || !strcmp(json_string_value(v), "block");
	v = json_object_get(root, "web_search_unbounded");
	cfg.web_unbounded_block = v && !strcmp(json_string_value(v), "block");
	v = json_object_get(root, "web_search_max_uses");
	cfg.web_max_uses = json_is_integer(v) ? json_integer_value(v) : LC_WEB_DEFAULT_CALLS;
	o = json_object_get(root, "org");
	cfg.org_cap = usd_or(json_object_get(o, "spend_cap_usd"), -1);
	cfg.org_warn = usd_or(json_object_get(o, "warning_threshold_usd"), -1);
	if (lc_alert_spec_parse(o, "org", LC_METRIC_COST, NULL, &cfg.org_alerts, err, sizeof(err)))
		return LC_E_INVAL;
	cfg.org_period = LC_WIN_MONTHLY;
	if (json_is_string(json_object_get(o, "period"))) {
		enum lc_window w;

		lc_window_parse(json_string_value(json_object_get(o, "period")), &w);
		cfg.org_period = (uint8_t)w;
	}
	o = json_object_get(root, "customers");
	cfg.cust_budget = usd_or(json_object_get(o, "monthly_budget_usd"), -1);
	if (lc_alert_spec_parse(o, "customers", LC_METRIC_COST, NULL, &cfg.cust_alerts, err, sizeof(err)))
		return LC_E_INVAL;
	v = json_object_get(o, "rate_limit_rpm");
	cfg.cust_rpm = json_is_integer(v) ? json_integer_value(v) : -1;
	cfg.default_max_output = DEFAULT_MAX_OUTPUT;
	cfg.expires_at = pol->expires_at;
	v = json_object_get(o, "identify");
	if (v) {
		json_array_foreach(v, i, o) {
			if (cfg.nident < LC_MAX_IDENT)
				snprintf(cfg.ident[cfg.nident++], sizeof(cfg.ident[0]), "%s", json_string_value(o));
		}
	} else {
		static const char *const dflt[] = {"header:x-customer-id", "body:user", "body:safety_identifier",
						   "body:metadata.user_id"};

		for (i = 0; i < 4; i++)
			snprintf(cfg.ident[cfg.nident++], sizeof(cfg.ident[0]), "%s", dflt[i]);
	}
	if ((rc = put(txn, s->dbi[LC_DB_META], "cfg", 3, &cfg, sizeof(cfg))))
		return rc;
	/* "leases": true (a server's policy): shared block limits are spent within leased slices */
	if ((rc = lc__lease_mode_set(s, txn, json_is_true(json_object_get(root, "leases")))))
		return rc;

	json_array_foreach(json_object_get(root, "providers"), i, o) {
		struct lc_rec_provider p = {0};
		enum lc_format f;

		lc_format_parse(json_string_value(json_object_get(o, "format")), &f);
		p.format = (uint8_t)f;
		snprintf(p.name, sizeof(p.name), "%s", json_string_value(json_object_get(o, "name")));
		json_array_foreach(json_object_get(o, "hosts"), j, v) {
			char h[300];

			snprintf(h, sizeof(h), "%s", json_string_value(v));
			if ((rc = put(txn, s->dbi[LC_DB_PROVIDERS], h, lc_host_norm(h), &p, sizeof(p))))
				return rc;
		}
	}
	if ((rc = lc_prices_store(txn, s->dbi[LC_DB_PRICES], root)))
		return rc;
	json_object_foreach(json_object_get(root, "teams"), name, o) {
		struct lc_rec_limits l = {0};

		v = json_object_get(o, "limits");
		if (v && lc_limits_parse(v, "teams", l.l, &l.n, err, sizeof(err)))
			return LC_E_INVAL;
		if ((rc = put(txn, s->dbi[LC_DB_TEAMS], name, strlen(name), &l, sizeof(l))))
			return rc;
	}
	json_object_foreach(json_object_get(root, "keys"), name, o) {
		struct lc_rec_key k;
		unsigned char fp[32];

		memset(&k, 0, sizeof(k));
		snprintf(k.name, sizeof(k.name), "%s", name);
		v = json_object_get(o, "team");
		if (json_is_string(v))
			snprintf(k.team, sizeof(k.team), "%s", json_string_value(v));
		k.expires_at = -1;
		v = json_object_get(o, "expires_at");
		if (json_is_string(v))
			lc_time_parse(json_string_value(v), &k.expires_at);
		k.revoked = json_is_true(json_object_get(o, "revoked"));
		v = json_object_get(o, "limits");
		if (v && lc_limits_parse(v, "keys", k.lim.l, &k.lim.n, err, sizeof(err)))
			return LC_E_INVAL;
		lc_unhex(json_string_value(json_object_get(o, "sha256")), fp, 32);
		if ((rc = put(txn, s->dbi[LC_DB_KEYS], fp, 32, &k, sizeof(k))))
			return rc;
		/* by name too, for alerts on settled usage (counters name keys, not fingerprints) */
		if ((rc = put(txn, s->dbi[LC_DB_KEYNAMES], name, strlen(name), &k, sizeof(k))))
			return rc;
	}
	json_object_foreach(json_object_get(json_object_get(root, "customers"), "overrides"), name, o) {
		struct lc_rec_cust c;

		memset(&c, 0, sizeof(c));
		if (lc_alert_spec_parse(o, "customers.overrides", LC_METRIC_COST, NULL, &c.alerts, err, sizeof(err)))
			return LC_E_INVAL;
		v = json_object_get(o, "monthly_budget_usd");
		c.budget = v ? usd_or(v, -1) : -2;
		v = json_object_get(o, "rate_limit_rpm");
		c.rpm = !v ? -2 : json_is_integer(v) ? json_integer_value(v) : -1;
		if ((rc = put(txn, s->dbi[LC_DB_CUSTS], name, strlen(name), &c, sizeof(c))))
			return rc;
	}
	{
		json_t *wh = json_object_get(json_object_get(root, "notifications"), "webhooks");
		char *txt = wh ? json_dumps(wh, JSON_COMPACT) : strdup("[]");

		if (!txt)
			return ENOMEM;
		rc = put(txn, s->dbi[LC_DB_META], "webhooks", 8, txt, strlen(txt));
		free(txt);
		if (rc)
			return rc;
	}
	if ((rc = put(txn, s->dbi[LC_DB_META], "version", 7, &pol->version, 8)) ||
	    (rc = put(txn, s->dbi[LC_DB_META], "expires_at", 10, &pol->expires_at, 8)) ||
	    (rc = put(txn, s->dbi[LC_DB_META], "issued_at", 9, &pol->issued_at, 8)) ||
	    (rc = put(txn, s->dbi[LC_DB_META], "payload", 7, payload, plen)))
		return rc;
	return lc__ensure_identity(s, txn);
}

int lc__store_upgrade(struct lc_store *s, MDB_txn *txn)
{
	MDB_val k = MV("cfg", 3), v;
	struct lc_policy *pol = NULL;
	uint32_t fmt;
	char err[256];
	int rc;

	if (mdb_get(txn, s->dbi[LC_DB_META], &k, &v) || v.mv_size < sizeof(fmt))
		return 0;  /* no policy yet */
	memcpy(&fmt, v.mv_data, sizeof(fmt));
	if (fmt >= LC_REC_FORMAT || (fmt >> 16) != (LC_REC_FORMAT >> 16))
		return 0;  /* current, or newer (get_cfg refuses that with a message) */
	k = MV("payload", 7);
	if (mdb_get(txn, s->dbi[LC_DB_META], &k, &v))
		return 0;
	if (lc_policy_parse(v.mv_data, v.mv_size, &pol, err, sizeof(err))) {
		lc_log(LC_LOG_ERROR, "cannot recompile the installed policy: %s", err);
		return 0;
	}
	{
		/* compile() overwrites meta "payload" from the same bytes: copy them out of the map first */
		char *copy = malloc(v.mv_size);

		if (!copy) {
			lc_policy_free(pol);
			return ENOMEM;
		}
		memcpy(copy, v.mv_data, v.mv_size);
		rc = compile(s, txn, pol, copy, v.mv_size);
		free(copy);
	}
	lc_policy_free(pol);
	if (rc == 0 && fmt < 0x4c430004u)
		rc = lc__ledger_migrate(s, txn);   /* limit counters of older llmcaps -> the ledger */
	if (rc == 0)
		lc_log(LC_LOG_INFO, "recompiled the installed policy for this llmcap version");
	return rc;
}

/* The ratchet also holds against the anchor (README "Recovery"): a store that lost its policy
 * takes back the anchored version only with the anchored content, or a newer version. */
static int anchor_floor(int64_t *cur, int64_t version, const void *payload, size_t plen)
{
	unsigned char ad[32], d[32];
	int64_t av = 0;
	int r = lc_anchor_read(&av, ad);

	if (r < 0)
		return -1;
	if (r > 0 || av <= *cur)
		return 0;
	lc_sha256(payload, plen, d);
	if (version == av && !memcmp(d, ad, 32))
		return 0;  /* the very policy the store lost: install it again */
	*cur = av;
	return 0;
}

static void record_rejection(const char *why)
{
	lc_event_queue(lc_event_name(LC_EV_POLICY_REJECTED), json_pack("{s:s}", "reason", why), NULL);
}

#define APPLY_SAME (-1990)     /* this exact policy is installed already */
#define APPLY_REFUSED (-1991)  /* ratchet or freeze: err says why */

struct apply_op {
	const struct lc_policy *pol;
	const unsigned char *payload;
	size_t plen;
	int64_t cur;
	char *err;
	size_t errlen;
};

/* ratchet and freeze against the installed version, then compile: in one transaction */
static int apply_fn(struct lc_store *s, MDB_txn *txn, void *ctx)
{
	struct apply_op *op = ctx;
	const struct lc_policy *pol = op->pol;
	MDB_val k = MV("version", 7), v;
	char ts[32];

	op->cur = 0;
	if (mdb_get(txn, s->dbi[LC_DB_META], &k, &v) == 0 && v.mv_size == 8)
		memcpy(&op->cur, v.mv_data, 8);
	if (anchor_floor(&op->cur, pol->version, op->payload, op->plen)) {
		lc_errf(op->err, op->errlen, "state: the anchor file is unreadable or damaged (README \"Recovery\")");
		return APPLY_REFUSED;
	}
	if (pol->version <= op->cur) {
		k = MV("payload", 7);
		if (pol->version == op->cur && mdb_get(txn, s->dbi[LC_DB_META], &k, &v) == 0 && v.mv_size == op->plen &&
		    !memcmp(v.mv_data, op->payload, op->plen)) {
			lc_errf(op->err, op->errlen, "policy version %" PRId64 " is already installed", op->cur);
			return APPLY_SAME;
		}
		lc_errf(op->err, op->errlen,
			pol->version == op->cur
				? "version: %" PRId64 " is already installed with different content (substitution refused)"
				: "version: %" PRId64 " is older than the installed version %" PRId64 " (rollback refused)",
			pol->version, op->cur);
		return APPLY_REFUSED;
	}
	if (pol->expires_at <= lc_now()) {
		lc_time_format(pol->expires_at, ts);
		lc_errf(op->err, op->errlen, "expires_at: the policy expired at %s (freeze refused)", ts);
		return APPLY_REFUSED;
	}
	return compile(s, txn, pol, op->payload, op->plen);
}

int lc_apply_envelope(const struct lc_trust *t, const void *env, size_t len, int64_t *version_out, char *err,
		      size_t errlen)
{
	unsigned char *payload = NULL;
	size_t plen = 0;
	struct lc_policy *pol = NULL;
	struct lc_store *s;
	struct apply_op op;
	int rc;

	if (lc_dsse_verify(t, env, len, &payload, &plen, NULL, err, errlen))
		goto rejected;
	if (lc_policy_parse(payload, plen, &pol, err, errlen))
		goto rejected;
	rc = lc_store_open(true, &s);
	if (rc) {
		lc_errf(err, errlen, "state store: %s", lc_strerror(rc));
		free(payload);
		lc_policy_free(pol);
		return rc;
	}
	op = (struct apply_op){pol, payload, plen, 0, err, errlen};
	rc = lc__write(s, apply_fn, &op);   /* the map doubles per MDB_MAP_FULL */
	if (rc == APPLY_SAME) {
		lc_anchor_write(op.cur, payload, plen);  /* a store from before the anchor gets one */
		if (version_out)
			*version_out = op.cur;
		free(payload);
		lc_policy_free(pol);
		return LC_OK;
	}
	if (rc == APPLY_REFUSED)
		goto rejected;
	if (rc) {
		lc_errf(err, errlen, "state store: %s", lc_strerror(rc));
		free(payload);
		lc_policy_free(pol);
		return LC_E_STORE;
	}
	mdb_env_sync(s->env, 1);  /* a new policy is durable at once */
	if (lc_anchor_write(pol->version, payload, plen)) {
		lc_errf(err, errlen, "state: installed, but the anchor file could not be written: %s", strerror(errno));
		free(payload);
		lc_policy_free(pol);
		return LC_E_STORE;
	}
	if (version_out)
		*version_out = pol->version;
	lc_log(LC_LOG_INFO, "policy version %" PRId64 " installed", pol->version);
	free(payload);
	lc_policy_free(pol);
	return LC_OK;
rejected:
	record_rejection(err);
	free(payload);
	lc_policy_free(pol);
	return LC_E_REJECTED;
}

int lc_policy_info(int64_t *version, int64_t *expires_at)
{
	struct lc_store *s;
	MDB_txn *txn;
	MDB_val k, v;
	int rc = lc_store_open(false, &s);

	if (rc == LC_E_NOSTATE)
		return LC_E_NOPOLICY;
	if (rc)
		return rc;
	if ((rc = lc_store_begin(s, false, &txn)))
		return LC_E_STORE;
	k = MV("version", 7);
	rc = mdb_get(txn, s->dbi[LC_DB_META], &k, &v);
	if (rc == 0 && v.mv_size == 8 && version)
		memcpy(version, v.mv_data, 8);
	if (rc == 0) {
		k = MV("expires_at", 10);
		if (mdb_get(txn, s->dbi[LC_DB_META], &k, &v) == 0 && v.mv_size == 8 && expires_at)
			memcpy(expires_at, v.mv_data, 8);
	}
	lc_store_end(s, txn, false);
	return rc == MDB_NOTFOUND ? LC_E_NOPOLICY : rc ? LC_E_STORE : LC_OK;
}

int lc_policy_payload(char **out, size_t *len)
{
	struct lc_store *s;
	MDB_txn *txn;
	MDB_val k = MV("payload", 7), v;
	int rc = lc_store_open(false, &s);

	if (rc)
		return rc == LC_E_NOSTATE ? LC_E_NOPOLICY : rc;
	if ((rc = lc_store_begin(s, false, &txn)))
		return LC_E_STORE;
	rc = mdb_get(txn, s->dbi[LC_DB_META], &k, &v);
	if (rc == 0) {
		*out = malloc(v.mv_size + 1);
		if (*out) {
			memcpy(*out, v.mv_data, v.mv_size);
			(*out)[v.mv_size] = '\0';
			*len = v.mv_size;
		} else
			rc = ENOMEM;
	}
	lc_store_end(s, txn, false);
	return rc == MDB_NOTFOUND ? LC_E_NOPOLICY : rc;
}

int lc_policy_reset(int64_t *was)
{
	static const char *const keys[] = {"cfg", "version", "expires_at", "issued_at", "payload", "webhooks"};
	struct lc_store *s;
	MDB_txn *txn;
	MDB_val k, v;
	int rc = lc_store_open(true, &s);

	if (was)
		*was = 0;
	if (rc)
		return rc;
	for (int attempt = 0; attempt < 8; attempt++) {
		if ((rc = lc_store_begin(s, true, &txn)))
			return LC_E_STORE;
		k = MV("version", 7);
		if (was && mdb_get(txn, s->dbi[LC_DB_META], &k, &v) == 0 && v.mv_size == 8)
			memcpy(was, v.mv_data, 8);
		rc = 0;
		for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]) && !rc; i++) {
			k = MV(keys[i], strlen(keys[i]));
			rc = mdb_del(txn, s->dbi[LC_DB_META], &k, NULL);
			if (rc == MDB_NOTFOUND)
				rc = 0;
		}
		if (rc == MDB_MAP_FULL) {
			lc_store_grow(s, txn);
			continue;
		}
		if ((rc = lc_store_finish(s, txn, rc)) != MDB_MAP_FULL)
			break;
	}
	if (rc)
		return rc;
	mdb_env_sync(s->env, 1);
	return lc_anchor_remove() ? errno : LC_OK;
}
