/* test_policy.c - the policy document (shared-state/policy.c): strict parse, errors that name
 * the JSON path, defaults, and the window arithmetic (lc_window_start / lc_window_end). */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <ftw.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "engine.h"
#include "engine_int.h"
#include "policy.h"
#include "sign.h"
#include "util.h"

int lc__get_cfg(struct lc_store *s, MDB_txn *txn, struct lc_rec_cfg *cfg);

/* a fixed clock inside the example's validity (2026-11-25T00:00:00Z) */
static int64_t fixed_clock(void)
{
	return (int64_t)1795564800 * 1000;
}

/* sha256("sk-test-ci"), as `printf %s sk-test-ci | sha256sum` prints it */
#define CI_KEY "sk-test-ci"
#define CI_SHA "71f9f8358cb81324dcf86970d03195a0b8d674589021d1a1c05736ad32b8c66f"
#define OTHER_SHA "0000000000000000000000000000000000000000000000000000000000000001"

/* DESIGN.md's example, every field present, written with ' for " (see q()). A second provider,
 * a second webhook and a second key make sure every array element and object member is checked,
 * not only the first. */
static const char BASE[] =
	"{\n"
	"  'schema': 1,\n"
	"  'version': 7,\n"
	"  'issued_at': '2026-11-21T00:00:00Z',\n"
	"  'expires_at': '2026-12-21T00:00:00Z',\n"
	"  'providers': [\n"
	"    {'name': 'openai',    'format': 'openai',    'hosts': ['api.openai.com']},\n"
	"    {'name': 'anthropic', 'format': 'anthropic', 'hosts': ['api.anthropic.com']},\n"
	"    {'name': 'local',     'format': 'openai',    'hosts': ['127.0.0.1:11434']}\n"
	"  ],\n"
	"  'prices': {\n"
	"    'gpt-4o-mini': {'input': 0.15, 'cached_input': 0.075, 'output': 0.60, 'max_output_tokens': 16384},\n"
	"    'claude-x': {'input': 3, 'output': 15}\n"
	"  },\n"
	"  'unknown_keys': 'allow',\n"
	"  'unknown_models': 'block',\n"
	"  'org': {'spend_cap_usd': 1000, 'period': 'monthly', 'warning_threshold_usd': 800},\n"
	"  'teams': {\n"
	"    'research': {'limits': [{'metric': 'cost', 'window': 'monthly', 'threshold': 300}]}\n"
	"  },\n"
	"  'keys': {\n"
	"    'ci': {\n"
	"      'sha256': '" CI_SHA "',\n"
	"      'team': 'research',\n"
	"      'expires_at': '2027-01-01T00:00:00Z',\n"
	"      'revoked': false,\n"
	"      'limits': [\n"
	"        {'metric': 'cost',     'window': 'lifetime', 'threshold': 50},\n"
	"        {'metric': 'requests', 'window': 'daily',    'threshold': 10000, 'alert_at': 8000},\n"
	"        {'metric': 'tokens',   'window': 'weekly',   'threshold': 2000000, 'enabled': false}\n"
	"      ]\n"
	"    },\n"
	"    'batch': {'sha256': '" OTHER_SHA "', 'limits': [{'metric': 'requests', 'window': 'minute', "
	"'threshold': 5, 'action': 'warn'}]}\n"
	"  },\n"
	"  'customers': {\n"
	"    'identify': ['header:x-customer-id', 'body:user', 'body:safety_identifier', 'body:metadata.user_id'],\n"
	"    'monthly_budget_usd': 10,\n"
	"    'rate_limit_rpm': 60,\n"
	"    'overrides': {'acme-corp': {'monthly_budget_usd': 250, 'rate_limit_rpm': 600}}\n"
	"  },\n"
	"  'notifications': {\n"
	"    'webhooks': [\n"
	"      {'url': 'https://hooks.example.com/llmcap', 'secret': 'whsec_abc', 'events': ['*']},\n"
	"      {'url': 'http://127.0.0.1:9000/hook', 'secret': 's2'}\n"
	"    ]\n"
	"  }\n"
	"}\n";

static const char MINIMAL[] =
	"{'schema': 1, 'version': 1, 'issued_at': '2026-11-21T00:00:00Z', 'expires_at': '2026-12-21T00:00:00Z',"
	" 'providers': [{'name': 'p', 'format': 'openai', 'hosts': ['api.example.com']}],"
	" 'prices': {'m': {'input': 1, 'output': 2}},"
	" 'keys': {'k': {'sha256': '" CI_SHA "', 'limits': [{'metric': 'requests', 'window': 'daily', 'threshold': 3}]}}}";

/* ' -> " (the texts above never need a literal ') */
static char *q(const char *s)
{
	char *o = strdup(s);

	assert_non_null(o);
	for (char *c = o; *c; c++)
		if (*c == '\'')
			*c = '"';
	return o;
}

static int parse_text(const char *text, struct lc_policy **p, char *err, size_t errlen)
{
	err[0] = '\0';
	*p = NULL;
	return lc_policy_parse(text, strlen(text), p, err, errlen);
}

static json_t *base_json(void)
{
	char *t = q(BASE);
	json_error_t je;
	json_t *j = json_loads(t, JSON_REJECT_DUPLICATES, &je);

	if (!j)
		fail_msg("BASE is not JSON: %s (line %d)", je.text, je.line);
	free(t);
	return j;
}

/* Set (v != NULL, stolen) or delete (v == NULL) the value at a path like "keys.ci.limits[1].window". */
static void set_path(json_t *root, const char *path, json_t *v)
{
	json_t *cur = root;
	const char *p = path;

	while (*p) {
		char key[256] = "";
		long idx = -1;
		bool is_index = false;

		if (*p == '[') {
			char *end;

			idx = strtol(p + 1, &end, 10);
			assert_int_equal(*end, ']');
			p = end + 1;
			is_index = true;
		} else {
			size_t n = strcspn(p, ".[");

			assert_true(n > 0 && n < sizeof(key));
			memcpy(key, p, n);
			key[n] = '\0';
			p += n;
		}
		if (*p == '.')
			p++;
		if (!*p) {
			if (is_index) {
				assert_true(json_is_array(cur));
				if (!v)
					assert_int_equal(json_array_remove(cur, (size_t)idx), 0);
				else if ((size_t)idx == json_array_size(cur))
					assert_int_equal(json_array_append_new(cur, v), 0);
				else
					assert_int_equal(json_array_set_new(cur, (size_t)idx, v), 0);
			} else {
				assert_true(json_is_object(cur));
				if (!v)
					assert_int_equal(json_object_del(cur, key), 0);
				else
					assert_int_equal(json_object_set_new(cur, key, v), 0);
			}
			return;
		}
		cur = is_index ? json_array_get(cur, (size_t)idx) : json_object_get(cur, key);
		if (!cur)
			fail_msg("set_path %s: no such parent at \"%s\"", path, is_index ? "[]" : key);
	}
}

/* BASE with `path` set to the JSON text `val` (NULL: deleted) must be refused with an error that
 * starts with "<want_prefix or path>: " and gives a reason, on one line. Returns 0, or -1 after
 * printing what went wrong (so a table run reports every miss at once). */
static int check_refused_at(const char *path, const char *val, const char *want_prefix)
{
	json_t *root = base_json(), *v = NULL;
	struct lc_policy *p = NULL;
	char err[512], want[512], *text;
	int rc;

	if (val) {
		char *vt = q(val);
		json_error_t je;

		v = json_loads(vt, JSON_DECODE_ANY, &je);
		if (!v)
			fail_msg("bad test value %s: %s", val, je.text);
		free(vt);
	}
	set_path(root, path, v);
	text = json_dumps(root, JSON_INDENT(1));
	json_decref(root);
	rc = parse_text(text, &p, err, sizeof(err));
	free(text);
	snprintf(want, sizeof(want), "%s: ", want_prefix ? want_prefix : path);
	if (rc == 0) {
		lc_policy_free(p);
		print_error("%s = %s: accepted, expected a refusal naming \"%s\"\n", path, val ? val : "(deleted)", want);
		return -1;
	}
	if (rc != -1 || p != NULL) {
		print_error("%s = %s: rc %d, policy %p\n", path, val ? val : "(deleted)", rc, (void *)p);
		return -1;
	}
	if (strncmp(err, want, strlen(want)) != 0 || strlen(err) <= strlen(want) || strchr(err, '\n')) {
		print_error("%s = %s: error \"%s\" does not start with \"%s\" and a reason\n", path,
			    val ? val : "(deleted)", err, want);
		return -1;
	}
	return 0;
}

static void expect_refused_at(const char *path, const char *val, const char *want_prefix)
{
	if (check_refused_at(path, val, want_prefix))
		fail_msg("%s: not refused as it should be", path);
}

static void expect_accepted_with(const char *path, const char *val)
{
	json_t *root = base_json();
	struct lc_policy *p = NULL;
	char err[512], *text, *vt = val ? q(val) : NULL;

	set_path(root, path, vt ? json_loads(vt, JSON_DECODE_ANY, NULL) : NULL);
	free(vt);
	text = json_dumps(root, 0);
	json_decref(root);
	if (parse_text(text, &p, err, sizeof(err)))
		fail_msg("%s = %s: refused (%s), expected accepted", path, val ? val : "(deleted)", err);
	free(text);
	lc_policy_free(p);
}

/* ---- a valid policy ------------------------------------------------------- */

static void test_design_example_parses(void **state)
{
	(void)state;
	char *t = q(BASE), err[512];
	struct lc_policy *p = NULL;
	unsigned char fp[32];
	char hex[65];

	/* the example's sha256 is the real fingerprint of its key */
	lc_sha256(CI_KEY, strlen(CI_KEY), fp);
	lc_hex(fp, 32, hex);
	assert_string_equal(hex, CI_SHA);

	if (parse_text(t, &p, err, sizeof(err)))
		fail_msg("DESIGN.md example refused: %s", err);
	assert_non_null(p);
	assert_non_null(p->root);
	assert_int_equal(p->schema, 1);
	assert_int_equal(p->version, 7);
	assert_int_equal(p->issued_at, 1795219200);  /* date -u -d 2026-11-21 +%s */
	assert_int_equal(p->expires_at, 1797811200); /* date -u -d 2026-12-21 +%s */
	assert_string_equal(json_string_value(json_object_get(json_object_get(json_object_get(p->root, "keys"), "ci"),
							      "sha256")),
			    CI_SHA);
	lc_policy_free(p);

	/* only the five required fields (plus nothing) is a valid policy too */
	free(t);
	t = q("{'schema': 1, 'version': 1, 'issued_at': '2026-11-21T00:00:00Z', 'expires_at': '2026-11-21T00:00:01Z',"
	      " 'providers': [{'name': 'p', 'format': 'anthropic', 'hosts': ['h']}]}");
	if (parse_text(t, &p, err, sizeof(err)))
		fail_msg("minimal policy refused: %s", err);
	assert_int_equal(p->version, 1);
	lc_policy_free(p);
	free(t);

	/* fractional seconds, nulls where the design allows them, upper-case hex */
	expect_accepted_with("issued_at", "'2026-11-21T00:00:00.123Z'");
	expect_accepted_with("org.spend_cap_usd", "null");
	expect_accepted_with("org.warning_threshold_usd", "null");
	expect_accepted_with("keys.ci.team", "null");
	expect_accepted_with("keys.ci.expires_at", "null");
	expect_accepted_with("keys.ci.limits[0].alert_at", "null");
	expect_accepted_with("keys.ci.limits[0].alert_at", "40.5");
	expect_accepted_with("keys.ci.limits[0].alert_at", "'80%'");
	expect_accepted_with("keys.ci.limits[0].alert_at", "['50%', 40, '95%']");
	expect_accepted_with("keys.ci.limits[0].alert_projected", "true");
	expect_accepted_with("org.alert_at", "['50%', 900, '95%']");
	expect_accepted_with("org.alert_at", "null");
	expect_accepted_with("org.alert_projected", "true");
	expect_accepted_with("customers.alert_at", "['50%', 8]");
	expect_accepted_with("customers.alert_projected", "false");
	expect_accepted_with("customers.overrides.acme-corp.alert_at", "'90%'");
	expect_accepted_with("customers.overrides.acme-corp.alert_projected", "true");
	expect_accepted_with("customers.rate_limit_rpm", "null");
	expect_accepted_with("customers.monthly_budget_usd", "null");
	expect_accepted_with("customers.overrides.acme-corp.rate_limit_rpm", "null");
	expect_accepted_with("keys.ci.sha256", "'71F9F8358CB81324DCF86970D03195A0B8D674589021D1A1C05736AD32B8C66F'");
	expect_accepted_with("org.period", "'lifetime'");
	expect_accepted_with("org.period", "'daily'");
	expect_accepted_with("unknown_keys", "'block'");
	expect_accepted_with("unknown_models", "'allow'");
	expect_accepted_with("keys.ci.limits[0].action", "'block'");
	expect_accepted_with("teams.research.limits", "[]");
	expect_accepted_with("notifications.webhooks[0].events",
			     "['spend_cap_warning_threshold_reached', 'spend_cap_reached', 'limit_alert', 'limit_reached',"
			     " 'customer_budget_limit_reached', 'key_expired', 'policy_rejected', 'policy_expired',"
			     " 'limit_projected']");
}

/* ---- defaults ------------------------------------------------------------- */

static void test_limit_defaults(void **state)
{
	(void)state;
	json_t *arr = json_loads("[{\"metric\": \"cost\", \"window\": \"monthly\", \"threshold\": 50.25},"
				 " {\"metric\": \"tokens\", \"window\": \"hour\", \"threshold\": 7, \"action\": \"warn\","
				 "  \"alert_at\": 5, \"enabled\": false}]",
				 0, NULL);
	struct lc_limit l[LC_MAX_LIMITS];
	char err[256];
	int n = -1;

	assert_non_null(arr);
	assert_int_equal(lc_limits_parse(arr, "x.limits", l, &n, err, sizeof(err)), 0);
	assert_int_equal(n, 2);
	/* defaults: action block, no alert, enabled */
	assert_int_equal(l[0].metric, LC_METRIC_COST);
	assert_int_equal(l[0].window, LC_WIN_MONTHLY);
	assert_int_equal(l[0].threshold, 50250000); /* micro-USD */
	assert_false(l[0].warn);
	assert_int_equal(l[0].alert_at[0], -1);
	assert_true(l[0].enabled);
	/* and every explicit value is kept */
	assert_int_equal(l[1].metric, LC_METRIC_TOKENS);
	assert_int_equal(l[1].window, LC_WIN_HOUR);
	assert_int_equal(l[1].threshold, 7);
	assert_true(l[1].warn);
	assert_int_equal(l[1].alert_at[0], 5);
	assert_false(l[1].enabled);
	assert_false(l[1].projected);
	json_decref(arr);

	/* several alert levels: amounts and percentages of the threshold, kept ascending, one of each */
	arr = json_loads("[{\"metric\": \"cost\", \"window\": \"daily\", \"threshold\": 0.3,"
			 "  \"alert_at\": [\"95%\", 0.15, \"50%\", \"12.5%\"], \"alert_projected\": true},"
			 " {\"metric\": \"requests\", \"window\": \"hour\", \"threshold\": 10,"
			 "  \"alert_at\": [\"95%\", \"99%\", 3]}]", 0, NULL);
	assert_non_null(arr);
	assert_int_equal(lc_limits_parse(arr, "x.limits", l, &n, err, sizeof(err)), 0);
	assert_int_equal(lc_limit_alert_count(&l[0]), 3);
	assert_int_equal(l[0].alert_at[0], 37500);    /* 12.5% of $0.30 */
	assert_int_equal(l[0].alert_at[1], 150000);   /* 50% and $0.15: one level */
	assert_int_equal(l[0].alert_at[2], 285000);
	assert_int_equal(l[0].alert_at[3], -1);
	assert_true(l[0].projected);
	/* 95% and 99% of 10 requests are both reached at the 10th: one level */
	assert_int_equal(lc_limit_alert_count(&l[1]), 2);
	assert_int_equal(l[1].alert_at[0], 3);
	assert_int_equal(l[1].alert_at[1], 10);
	json_decref(arr);

	/* the org's and customers' levels: written before the threshold is known, resolved against it */
	{
		struct lc_alert_spec a, b, c;
		struct lc_limit x;

		arr = json_loads("{\"alert_at\": [\"80%\", 5], \"alert_projected\": true}", 0, NULL);
		assert_int_equal(lc_alert_spec_parse(arr, "org", LC_METRIC_COST, "org.spend_cap_usd", &a, err,
						     sizeof(err)), -1);
		assert_string_equal(err, "org.alert_at[0]: a percentage needs org.spend_cap_usd (the threshold it is a "
					 "percentage of); give an amount");
		assert_int_equal(lc_alert_spec_parse(arr, "customers", LC_METRIC_COST, NULL, &a, err, sizeof(err)), 0);
		assert_int_equal(a.n, 2);
		assert_int_equal(a.projected, 1);
		/* 80% of $10 and $5, plus the org's warning threshold $9: ascending */
		assert_int_equal(lc_alert_spec_levels(&a, 10000000, 9000000, &x), 3);
		assert_int_equal(x.alert_at[0], 5000000);
		assert_int_equal(x.alert_at[1], 8000000);
		assert_int_equal(x.alert_at[2], 9000000);
		assert_int_equal(x.alert_at[3], -1);
		json_decref(arr);
		arr = json_loads("{\"alert_at\": \"50%\"}", 0, NULL);
		assert_int_equal(lc_alert_spec_parse(arr, "customers.overrides.a", LC_METRIC_COST, NULL, &b, err,
						     sizeof(err)), 0);
		assert_int_equal(b.projected, -1);
		/* an override's levels replace the defaults'; what it leaves out is inherited */
		lc_alert_spec_inherit(&c, &b, &a);
		assert_int_equal(c.n, 1);
		assert_int_equal(c.projected, 1);
		assert_int_equal(lc_alert_spec_levels(&c, 250000000, -1, &x), 1);
		assert_int_equal(x.alert_at[0], 125000000);
		json_decref(arr);
		arr = json_loads("{\"alert_projected\": true}", 0, NULL);
		assert_int_equal(lc_alert_spec_parse(arr, "org", LC_METRIC_COST, "org.spend_cap_usd", &a, err,
						     sizeof(err)), -1);
		assert_string_equal(err, "org.alert_projected: needs org.spend_cap_usd (the threshold the usage is "
					 "projected against)");
		json_decref(arr);
	}

	/* LC_MAX_LIMITS is the cap, and the error names the array */
	arr = json_array();
	for (int i = 0; i <= LC_MAX_LIMITS; i++)
		json_array_append_new(arr, json_pack("{s:s,s:s,s:i}", "metric", "requests", "window", "daily",
						     "threshold", 1));
	assert_int_equal(lc_limits_parse(arr, "keys.ci.limits", l, &n, err, sizeof(err)), -1);
	assert_memory_equal(err, "keys.ci.limits: ", 16);
	json_array_remove(arr, 0);
	assert_int_equal(lc_limits_parse(arr, "keys.ci.limits", l, &n, err, sizeof(err)), 0);
	assert_int_equal(n, LC_MAX_LIMITS);
	json_decref(arr);
}

static int rm_cb(const char *p, const struct stat *st, int flag, struct FTW *f)
{
	(void)st; (void)flag; (void)f;
	return remove(p);
}

/* The documented defaults land in the compiled policy: apply MINIMAL and read the tables back. */
static void test_compiled_defaults(void **state)
{
	(void)state;
	char root[] = "/tmp/llmcap-test-policy.XXXXXX", dir[256], path[300], err[512];
	struct lc_signkey k;
	struct lc_trust t = {0};
	struct lc_store *s;
	struct lc_rec_cfg cfg;
	struct lc_price pr;
	struct lc_rec_key key;
	MDB_txn *txn;
	MDB_val mk, mv;
	unsigned char fp[32];
	char *text = q(MINIMAL), *env = NULL;
	size_t envlen;
	int64_t version = 0;

	assert_non_null(mkdtemp(root));
	lc_clock_hook = fixed_clock;
	snprintf(dir, sizeof(dir), "%s/state", root);
	lc_state_dir_set(dir);
	snprintf(path, sizeof(path), "%s/keys", root);
	assert_int_equal(lc_keygen(path, err, sizeof(err)), 0);
	snprintf(path, sizeof(path), "%s/keys/llmcap.key", root);
	assert_int_equal(lc_signkey_load(path, &k, err, sizeof(err)), 0);
	snprintf(path, sizeof(path), "%s/keys/llmcap.pub", root);
	assert_int_equal(lc_trust_load(path, &t, err, sizeof(err)), 0);
	assert_int_equal(lc_dsse_sign(&k, text, strlen(text), &env, &envlen, err, sizeof(err)), 0);
	if (lc_apply_envelope(&t, env, envlen, &version, err, sizeof(err)) != LC_OK)
		fail_msg("apply MINIMAL: %s", err);
	assert_int_equal(version, 1);

	assert_int_equal(lc_store_open(false, &s), LC_OK);
	assert_int_equal(lc_store_begin(s, false, &txn), 0);
	assert_int_equal(lc__get_cfg(s, txn, &cfg), 0);
	assert_int_equal(cfg.unknown_keys_block, 0);     /* unknown_keys: allow */
	assert_int_equal(cfg.unknown_models_block, 1);   /* unknown_models: block */
	assert_int_equal(cfg.org_cap, -1);               /* no org cap */
	assert_int_equal(cfg.org_warn, -1);
	assert_int_equal(cfg.org_period, LC_WIN_MONTHLY);
	assert_int_equal(cfg.cust_budget, -1);           /* no customer budget */
	assert_int_equal(cfg.cust_rpm, -1);              /* no customer rpm */
	assert_int_equal(cfg.nident, 4);                 /* DESIGN.md's identifiers */
	assert_string_equal(cfg.ident[0], "header:x-customer-id");
	assert_string_equal(cfg.ident[1], "body:user");
	assert_string_equal(cfg.ident[2], "body:safety_identifier");
	assert_string_equal(cfg.ident[3], "body:metadata.user_id");
	mk = (MDB_val){.mv_size = 1, .mv_data = "m"};
	assert_int_equal(mdb_get(txn, s->dbi[LC_DB_PRICES], &mk, &mv), 0);
	assert_int_equal(mv.mv_size, sizeof(pr));
	memcpy(&pr, mv.mv_data, sizeof(pr));
	assert_int_equal(pr.rate[LC_TIER_STANDARD][0][LC_TOK_INPUT], 1000000000);  /* nano-USD per 1M tokens */
	assert_int_equal(pr.rate[LC_TIER_STANDARD][0][LC_TOK_CACHED], 1000000000); /* cached_input defaults to input */
	assert_int_equal(pr.rate[LC_TIER_STANDARD][0][LC_TOK_OUTPUT], 2000000000);
	assert_int_equal(pr.max_out, -1);
	lc_unhex(CI_SHA, fp, 32);
	mk = (MDB_val){.mv_size = 32, .mv_data = fp};
	assert_int_equal(mdb_get(txn, s->dbi[LC_DB_KEYS], &mk, &mv), 0);
	memcpy(&key, mv.mv_data, sizeof(key));
	assert_string_equal(key.name, "k");
	assert_string_equal(key.team, "");               /* no team */
	assert_int_equal(key.expires_at, -1);            /* never expires */
	assert_int_equal(key.revoked, 0);
	assert_int_equal(key.lim.n, 1);
	assert_false(key.lim.l[0].warn);
	assert_true(key.lim.l[0].enabled);
	lc_store_end(s, txn, false);

	free(env);
	free(text);
	lc_signkey_wipe(&k);
	lc_clock_hook = NULL;
	nftw(root, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
}

/* ---- every field: a wrong value names its path ---------------------------- */

struct bad {
	const char *path;
	const char *val;   /* JSON text with ' for ", NULL = delete the field */
	const char *want;  /* expected path in the error, NULL = path */
};

static const struct bad BAD[] = {
	/* header */
	{"schema", "2", NULL},
	{"schema", "'1'", NULL},
	{"schema", "1.0", NULL},
	{"version", "0", NULL},
	{"version", "-3", NULL},
	{"version", "'7'", NULL},
	{"version", "7.5", NULL},
	{"issued_at", "'2026-11-21'", NULL},
	{"issued_at", "'2026-11-21T00:00:00+01:00'", NULL},
	{"issued_at", "'2026-02-30T00:00:00Z'", NULL},
	{"issued_at", "1795219200", NULL},
	{"expires_at", "'tomorrow'", NULL},
	{"expires_at", "'2026-11-21T00:00:00Z'", NULL},  /* not after issued_at */
	{"expires_at", "'2026-11-20T00:00:00Z'", NULL},
	{"expires_at", "null", NULL},
	/* providers */
	{"providers", "[]", NULL},
	{"providers", "{}", NULL},
	{"providers", "'openai'", NULL},
	{"providers[0]", "'openai'", NULL},
	{"providers[0].name", "''", NULL},
	{"providers[0].name", "5", NULL},
	{"providers[0].name", NULL, NULL},
	{"providers[0].format", "'gemini'", NULL},
	{"providers[0].format", NULL, NULL},
	{"providers[1].format", "'OpenAI'", NULL},
	{"providers[2].format", "'gemini'", NULL},
	{"providers[2].name", "''", NULL},
	{"providers[2].hosts", "[]", NULL},
	{"providers[0].hosts", "[]", NULL},
	{"providers[0].hosts", "'api.openai.com'", NULL},
	{"providers[0].hosts", NULL, NULL},
	{"providers[0].hosts[0]", "'https://api.openai.com'", NULL},
	{"providers[0].hosts[0]", "''", NULL},
	{"providers[0].hosts[0]", "5", NULL},
	{"providers[0].hosts[1]", "'a b'", NULL},
	{"providers[1].hosts[0]", "'api.anthropic.com/v1'", NULL},
	{"providers[0].port", "443", "providers[0].port"},
	{"providers[2].extra", "1", "providers[2].extra"},
	/* prices */
	{"prices", "[]", NULL},
	{"prices.gpt-4o-mini", "5", NULL},
	{"prices.gpt-4o-mini.input", "-0.15", NULL},
	{"prices.gpt-4o-mini.input", "'0.15'", NULL},
	{"prices.gpt-4o-mini.input", NULL, NULL},
	{"prices.gpt-4o-mini.cached_input", "-1", NULL},
	{"prices.gpt-4o-mini.cached_input", "null", NULL},
	{"prices.gpt-4o-mini.output", "'0.60'", NULL},
	{"prices.gpt-4o-mini.output", NULL, NULL},
	{"prices.gpt-4o-mini.max_output_tokens", "-1", NULL},
	{"prices.gpt-4o-mini.max_output_tokens", "1.5", NULL},
	{"prices.gpt-4o-mini.max_output_tokens", "'16384'", NULL},
	{"prices.gpt-4o-mini.batch", "0.1", NULL},
	{"prices.claude-x.output", "-15", NULL},
	{"prices.claude-x.input", "true", NULL},
	/* switches */
	{"unknown_keys", "'deny'", NULL},
	{"unknown_keys", "true", NULL},
	{"unknown_models", "'warn'", NULL},
	{"unknown_models", "null", NULL},
	/* org */
	{"org", "'big'", NULL},
	{"org.spend_cap_usd", "-1", NULL},
	{"org.spend_cap_usd", "'1000'", NULL},
	{"org.period", "'hour'", NULL},
	{"org.period", "'minute'", NULL},
	{"org.period", "'yearly'", NULL},
	{"org.period", "30", NULL},
	{"org.warning_threshold_usd", "-800", NULL},
	{"org.warning_threshold_usd", "'800'", NULL},
	{"org.currency", "'EUR'", NULL},
	{"org.alert_at", "['50%', '120%']", "org.alert_at[1]"},
	{"org.alert_at", "[]", NULL},
	{"org.alert_at", "'80'", NULL},
	{"org.alert_at", "-5", NULL},
	{"org.alert_at", "[1, 2, 3, 4, 5, 6]", NULL},   /* 7 levels with warning_threshold_usd */
	{"org.alert_projected", "'yes'", NULL},
	/* teams and limits */
	{"teams", "[]", NULL},
	{"teams.research", "5", NULL},
	{"teams.research.limits", "{}", NULL},
	{"teams.research.budget", "5", NULL},
	{"teams.research.limits[0]", "'cost'", NULL},
	{"teams.research.limits[0].threshold", "-1", NULL},
	{"teams.research.limits[0].threshold", "'300'", NULL},
	{"teams.research.limits[0].threshold", "null", NULL},
	{"teams.research.limits[0].threshold", NULL, NULL},
	{"teams.research.limits[0].metric", "'dollars'", NULL},
	{"teams.research.limits[0].metric", NULL, NULL},
	{"teams.research.limits[0].window", "'yearly'", NULL},
	{"teams.research.limits[0].window", NULL, NULL},
	{"teams.research.limits[0].action", "'deny'", NULL},
	{"teams.research.limits[0].alert_at", "-1", NULL},
	{"teams.research.limits[0].enabled", "'yes'", NULL},
	{"teams.research.limits[0].reset", "'daily'", NULL},
	{"teams.research.limits[1]", "{'metric': 'tokens', 'window': 'daily', 'threshold': 1.5}",
	 "teams.research.limits[1].threshold"},
	/* keys */
	{"keys", "[]", NULL},
	{"keys.ci", "'sk-test-ci'", NULL},
	{"keys.ci.sha256", "'71f9f8358cb81324'", NULL},
	{"keys.ci.sha256", "'zzf9f8358cb81324dcf86970d03195a0b8d674589021d1a1c05736ad32b8c66f'", NULL},
	{"keys.ci.sha256", "'71f9f8358cb81324dcf86970d03195a0b8d674589021d1a1c05736ad32b8c66f0'", NULL},
	{"keys.ci.sha256", "5", NULL},
	{"keys.ci.sha256", NULL, NULL},
	{"keys.ci.team", "'ghost'", NULL},
	{"keys.ci.team", "5", NULL},
	{"keys.ci.expires_at", "'2027-01-01'", NULL},
	{"keys.ci.expires_at", "1798761600", NULL},
	{"keys.ci.revoked", "'no'", NULL},
	{"keys.ci.revoked", "0", NULL},
	{"keys.ci.limits", "5", NULL},
	{"keys.ci.limit", "[]", NULL},
	{"keys.ci.raw_key", "'sk-test-ci'", NULL},
	{"keys.ci.limits[0].threshold", "'50'", NULL},
	{"keys.ci.limits[0].threshold", "-50", NULL},
	{"keys.ci.limits[0].metric", "'usd'", NULL},
	{"keys.ci.limits[1].window", "'fortnightly'", NULL},
	{"keys.ci.limits[1].window", "'Daily'", NULL},
	{"keys.ci.limits[1].window", "7", NULL},
	{"keys.ci.limits[1].alert_at", "-5", NULL},
	{"keys.ci.limits[1].alert_at", "80.5", NULL},
	{"keys.ci.limits[1].alert_at", "[]", NULL},
	{"keys.ci.limits[1].alert_at", "'80'", NULL},
	{"keys.ci.limits[1].alert_at", "'0%'", NULL},
	{"keys.ci.limits[1].alert_at", "' 80%'", NULL},
	{"keys.ci.limits[1].alert_at", "[1, 2, 3, 4, 5, 6, 7]", NULL},
	{"keys.ci.limits[1].alert_at", "['50%', '101%']", "keys.ci.limits[1].alert_at[1]"},
	{"keys.ci.limits[1].alert_at", "[8000, 80.5]", "keys.ci.limits[1].alert_at[1]"},
	{"keys.ci.limits[1].alert_at", "['80%', null]", "keys.ci.limits[1].alert_at[1]"},
	{"keys.ci.limits[1].alert_at", "[[5]]", "keys.ci.limits[1].alert_at[0]"},
	{"keys.ci.limits[1].alert_projected", "'yes'", NULL},
	{"keys.ci.limits[1].alert_projected", "null", NULL},
	{"keys.ci.limits[1].threshold", "10000.5", NULL},
	{"keys.ci.limits[1].action", "'stop'", NULL},
	{"keys.ci.limits[1].action", "null", NULL},
	{"keys.ci.limits[2].enabled", "0", NULL},
	{"keys.ci.limits[2].enabled", "null", NULL},
	{"keys.ci.limits[2].threshold", "-1", NULL},
	{"keys.ci.limits[2].note", "'x'", NULL},
	{"keys.batch.limits[0].action", "'throttle'", NULL},
	{"keys.batch.sha256", "'short'", NULL},
	{"keys.batch.team", "'nope'", NULL},
	/* customers */
	{"customers", "[]", NULL},
	{"customers.identify", "'header:x-customer-id'", NULL},
	{"customers.identify", "['a','b','c','d','e','f','g','h','i']", NULL},
	{"customers.identify[0]", "'cookie:id'", NULL},
	{"customers.identify[1]", "'body:'", NULL},
	{"customers.identify[3]", "5", NULL},
	{"customers.monthly_budget_usd", "-10", NULL},
	{"customers.monthly_budget_usd", "'10'", NULL},
	{"customers.rate_limit_rpm", "-1", NULL},
	{"customers.rate_limit_rpm", "1.5", NULL},
	{"customers.rate_limit_rpm", "100001", NULL},
	{"customers.overrides", "[]", NULL},
	{"customers.overrides.acme-corp", "250", NULL},
	{"customers.overrides.acme-corp.rate_limit_rpm", "-600", NULL},
	{"customers.overrides.acme-corp.rate_limit_rpm", "'600'", NULL},
	{"customers.overrides.acme-corp.rate_limit_rpm", "100001", NULL},
	{"customers.overrides.acme-corp.monthly_budget_usd", "-250", NULL},
	{"customers.overrides.acme-corp.monthly_budget_usd", "'250'", NULL},
	{"customers.overrides.acme-corp.identify", "[]", NULL},
	{"customers.blocked", "[]", NULL},
	{"customers.alert_at", "['50%', -1]", "customers.alert_at[1]"},
	{"customers.alert_projected", "1", NULL},
	{"customers.overrides.acme-corp.alert_at", "'101%'", NULL},
	{"customers.overrides.acme-corp.alert_at", "[1, 2, 3, 4, 5, 6, 7]", NULL},
	{"customers.overrides.acme-corp.alert_projected", "'true'", NULL},
	/* notifications */
	{"notifications", "[]", NULL},
	{"notifications.webhooks", "{}", NULL},
	{"notifications.email", "'a@b'", NULL},
	{"notifications.webhooks[0]", "'https://x'", NULL},
	{"notifications.webhooks[0].url", "'ftp://hooks.example.com'", NULL},
	{"notifications.webhooks[0].url", "'hooks.example.com/llmcap'", NULL},
	{"notifications.webhooks[0].url", NULL, NULL},
	{"notifications.webhooks[0].secret", "''", NULL},
	{"notifications.webhooks[0].secret", NULL, NULL},
	{"notifications.webhooks[0].events", "'*'", NULL},
	{"notifications.webhooks[0].events[0]", "'everything'", NULL},
	{"notifications.webhooks[0].method", "'PUT'", NULL},
	{"notifications.webhooks[1].url", "'gopher://x'", NULL},
	{"notifications.webhooks[1].secret", "5", NULL},
	{"notifications.webhooks[1].events", "['limit_alert', 'nope']", "notifications.webhooks[1].events[1]"},
	/* unknown top-level fields */
	{"bogus", "1", NULL},
	{"Version", "7", NULL},
	{"signature", "'x'", NULL},
};

static void test_every_field_refused_by_path(void **state)
{
	(void)state;
	int misses = 0;

	for (size_t i = 0; i < sizeof(BAD) / sizeof(BAD[0]); i++)
		misses += check_refused_at(BAD[i].path, BAD[i].val, BAD[i].want) != 0;
	if (misses)
		fail_msg("%d of %zu wrong values were not refused by path", misses, sizeof(BAD) / sizeof(BAD[0]));
}

static void test_required_fields(void **state)
{
	(void)state;
	static const char *const req[] = {"schema", "version", "issued_at", "expires_at", "providers"};

	for (size_t i = 0; i < 5; i++) {
		json_t *root = base_json();
		struct lc_policy *p = NULL;
		char err[512], want[64], *text;

		json_object_del(root, req[i]);
		text = json_dumps(root, 0);
		json_decref(root);
		assert_int_equal(parse_text(text, &p, err, sizeof(err)), -1);
		free(text);
		snprintf(want, sizeof(want), "%s: is required", req[i]);
		assert_string_equal(err, want);
	}
	/* and the rest is optional: drop everything else at once */
	{
		static const char *const opt[] = {"prices", "unknown_keys", "unknown_models", "org", "teams",
						  "keys", "customers", "notifications"};
		json_t *root = base_json();
		struct lc_policy *p = NULL;
		char err[512], *text;

		for (size_t i = 0; i < sizeof(opt) / sizeof(opt[0]); i++)
			assert_int_equal(json_object_del(root, opt[i]), 0);
		assert_int_equal(json_object_size(root), 5);
		text = json_dumps(root, 0);
		json_decref(root);
		if (parse_text(text, &p, err, sizeof(err)))
			fail_msg("required fields only: %s", err);
		lc_policy_free(p);
		free(text);
	}
	/* not an object at all */
	{
		struct lc_policy *p = NULL;
		char err[512];

		assert_int_equal(parse_text("[1]", &p, err, sizeof(err)), -1);
		assert_memory_equal(err, "policy: ", 8);
		assert_int_equal(parse_text("", &p, err, sizeof(err)), -1);
		assert_memory_equal(err, "policy: ", 8);
		assert_int_equal(parse_text("{\"schema\": 1,", &p, err, sizeof(err)), -1);
		assert_memory_equal(err, "policy: ", 8);
		assert_null(p);
	}
}

static char *replace_once(const char *src, const char *find, const char *repl)
{
	const char *at = strstr(src, find);
	char *o;

	if (!at)
		fail_msg("replace_once: \"%s\" not in the text", find);
	o = malloc(strlen(src) + strlen(repl) + 1);
	memcpy(o, src, (size_t)(at - src));
	strcpy(o + (at - src), repl);
	strcat(o, at + strlen(find));
	return o;
}

static void test_duplicate_keys(void **state)
{
	(void)state;
	static const struct {
		const char *find, *repl, *dup;
	} cases[] = {
		{"'version': 7,", "'version': 7, 'version': 8,", "version"},
		{"'version': 7,", "'version': 7, 'version': 7,", "version"},  /* even with the same value */
		{"'schema': 1,", "'schema': 1, 'schema': 1,", "schema"},
		{"'name': 'anthropic', ", "'name': 'anthropic', 'name': 'openai', ", "name"},
		{"'output': 0.60,", "'output': 0.60, 'output': 0.01,", "output"},
		{"'claude-x':", "'gpt-4o-mini': {'input': 0, 'output': 0}, 'claude-x':", "gpt-4o-mini"},
		{"'period': 'monthly',", "'period': 'monthly', 'period': 'daily',", "period"},
		{"'research': {'limits'", "'research': {'limits': [], 'limits'", "limits"},
		{"'threshold': 50}", "'threshold': 50, 'threshold': 5000}", "threshold"},
		{"'window': 'daily',", "'window': 'daily', 'window': 'lifetime',", "window"},
		{"'team': 'research',", "'team': 'research', 'team': null,", "team"},
		{"'batch': {", "'ci': {'sha256': '" OTHER_SHA "'}, 'batch': {", "ci"},
		{"'rate_limit_rpm': 600}", "'rate_limit_rpm': 600, 'rate_limit_rpm': 6}", "rate_limit_rpm"},
		{"'secret': 's2'", "'secret': 's2', 'url': 'http://evil.example'", "url"},
		{"'research': {", "'research': {'limits': []}, 'research': {", "research"},
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char *rep = replace_once(BASE, cases[i].find, cases[i].repl), *text = q(rep), err[512];
		struct lc_policy *p = NULL;

		if (parse_text(text, &p, err, sizeof(err)) == 0) {
			lc_policy_free(p);
			fail_msg("duplicate \"%s\" accepted", cases[i].dup);
		}
		assert_null(p);
		assert_memory_equal(err, "policy: ", 8);
		if (!strstr(err, "duplicate") || !strstr(err, cases[i].dup))
			fail_msg("duplicate \"%s\": error does not say so: %s", cases[i].dup, err);
		assert_null(strchr(err, '\n'));
		free(rep);
		free(text);
	}
}

static void test_key_team_must_exist(void **state)
{
	(void)state;
	json_t *root = base_json();
	struct lc_policy *p = NULL;
	char err[512], *text;

	expect_refused_at("keys.ci.team", "'Research'", NULL);  /* names are exact */
	/* no teams object at all */
	json_object_del(root, "teams");
	text = json_dumps(root, 0);
	assert_int_equal(parse_text(text, &p, err, sizeof(err)), -1);
	assert_string_equal(err, "keys.ci.team: no team \"research\" in teams");
	free(text);
	/* and without the team reference it is fine */
	json_object_del(json_object_get(json_object_get(root, "keys"), "ci"), "team");
	text = json_dumps(root, 0);
	if (parse_text(text, &p, err, sizeof(err)))
		fail_msg("%s", err);
	lc_policy_free(p);
	free(text);
	json_decref(root);
}

static void test_same_sha256_twice(void **state)
{
	(void)state;
	const char *variants[] = {CI_SHA, "71F9F8358CB81324DCF86970D03195A0B8D674589021D1A1C05736AD32B8C66F"};

	for (int i = 0; i < 2; i++) {
		json_t *root = base_json();
		struct lc_policy *p = NULL;
		char err[512], *text;

		json_object_set_new(json_object_get(root, "keys"), "ci-copy", json_pack("{s:s}", "sha256", variants[i]));
		text = json_dumps(root, 0);
		json_decref(root);
		assert_int_equal(parse_text(text, &p, err, sizeof(err)), -1);
		assert_string_equal(err, "keys.ci-copy.sha256: the same key is already named keys.ci");
		free(text);
	}
}

static void test_names(void **state)
{
	(void)state;
	json_t *root = base_json();
	struct lc_policy *p = NULL;
	char err[512], *text, longname[80];

	/* a control character in a key name */
	json_object_set_new(json_object_get(root, "keys"), "bad\x01name", json_pack("{s:s}", "sha256", OTHER_SHA));
	json_object_del(json_object_get(root, "keys"), "batch");
	text = json_dumps(root, 0);
	assert_int_equal(parse_text(text, &p, err, sizeof(err)), -1);
	assert_memory_equal(err, "keys.bad\x01name: ", 15);
	free(text);
	json_decref(root);
	/* a 64-byte team name */
	root = base_json();
	memset(longname, 't', 64);
	longname[64] = '\0';
	json_object_set_new(json_object_get(root, "teams"), longname, json_pack("{s:[]}", "limits"));
	text = json_dumps(root, 0);
	assert_int_equal(parse_text(text, &p, err, sizeof(err)), -1);
	assert_memory_equal(err, "teams.tttt", 10);
	free(text);
	json_decref(root);
}

/* ---- windows --------------------------------------------------------------- */

static int64_t utc(int y, int mo, int d, int h, int mi, int s)
{
	struct tm tm = {.tm_year = y - 1900, .tm_mon = mo - 1, .tm_mday = d, .tm_hour = h, .tm_min = mi, .tm_sec = s};

	return (int64_t)timegm(&tm);
}

#define WIN(w, now, start, end) do { \
		assert_int_equal(lc_window_start((w), (now)), (start)); \
		assert_int_equal(lc_window_end((w), (now)), (end)); \
	} while (0)

static void test_window_names(void **state)
{
	(void)state;
	static const char *const names[] = {"minute", "hour", "daily", "weekly", "monthly", "lifetime"};
	enum lc_window w;
	enum lc_metric m;

	for (int i = 0; i < 6; i++) {
		assert_int_equal(lc_window_parse(names[i], &w), 0);
		assert_int_equal(w, i);
		assert_string_equal(lc_window_name(w), names[i]);
	}
	assert_int_equal(lc_window_parse("day", &w), -1);
	assert_int_equal(lc_window_parse(NULL, &w), -1);
	assert_int_equal(lc_metric_parse("tokens", &m), 0);
	assert_int_equal(m, LC_METRIC_TOKENS);
	assert_int_equal(lc_metric_parse("token", &m), -1);
}

static void test_window_minute_hour_daily(void **state)
{
	(void)state;
	int64_t t = utc(2026, 11, 21, 10, 17, 42);

	WIN(LC_WIN_MINUTE, t, utc(2026, 11, 21, 10, 17, 0), utc(2026, 11, 21, 10, 18, 0));
	WIN(LC_WIN_HOUR, t, utc(2026, 11, 21, 10, 0, 0), utc(2026, 11, 21, 11, 0, 0));
	WIN(LC_WIN_DAILY, t, utc(2026, 11, 21, 0, 0, 0), utc(2026, 11, 22, 0, 0, 0));
	/* exact at the boundary second: the last second is in, the reset second starts the next bucket */
	t = utc(2026, 11, 21, 10, 17, 59);
	WIN(LC_WIN_MINUTE, t, utc(2026, 11, 21, 10, 17, 0), utc(2026, 11, 21, 10, 18, 0));
	WIN(LC_WIN_MINUTE, t + 1, utc(2026, 11, 21, 10, 18, 0), utc(2026, 11, 21, 10, 19, 0));
	t = utc(2026, 11, 21, 10, 59, 59);
	WIN(LC_WIN_HOUR, t, utc(2026, 11, 21, 10, 0, 0), utc(2026, 11, 21, 11, 0, 0));
	WIN(LC_WIN_HOUR, t + 1, utc(2026, 11, 21, 11, 0, 0), utc(2026, 11, 21, 12, 0, 0));
	t = utc(2026, 11, 21, 23, 59, 59);
	WIN(LC_WIN_DAILY, t, utc(2026, 11, 21, 0, 0, 0), utc(2026, 11, 22, 0, 0, 0));
	WIN(LC_WIN_DAILY, t + 1, utc(2026, 11, 22, 0, 0, 0), utc(2026, 11, 23, 0, 0, 0));
	/* daily across a year end */
	t = utc(2026, 12, 31, 12, 0, 0);
	WIN(LC_WIN_DAILY, t, utc(2026, 12, 31, 0, 0, 0), utc(2027, 1, 1, 0, 0, 0));
}

static void test_window_weekly_monday(void **state)
{
	(void)state;
	int64_t sun = utc(2026, 11, 22, 23, 59, 59);  /* a Sunday */
	int64_t mon = utc(2026, 11, 23, 0, 0, 0);     /* the Monday after */
	struct tm tm;
	time_t tt = (time_t)mon;

	gmtime_r(&tt, &tm);
	assert_int_equal(tm.tm_wday, 1);
	assert_int_equal(mon - sun, 1);
	WIN(LC_WIN_WEEKLY, sun, utc(2026, 11, 16, 0, 0, 0), mon);
	WIN(LC_WIN_WEEKLY, mon, mon, utc(2026, 11, 30, 0, 0, 0));
	WIN(LC_WIN_WEEKLY, mon + 1, mon, utc(2026, 11, 30, 0, 0, 0));
	/* every day of that week maps to the same Monday */
	for (int d = 0; d < 7; d++)
		WIN(LC_WIN_WEEKLY, mon + d * 86400 + 43200, mon, mon + 7 * 86400);
	/* a week across a year end: Mon 2026-12-28 .. Mon 2027-01-04 */
	WIN(LC_WIN_WEEKLY, utc(2027, 1, 1, 8, 0, 0), utc(2026, 12, 28, 0, 0, 0), utc(2027, 1, 4, 0, 0, 0));
	/* the epoch itself was a Thursday: its week began Monday 1969-12-29 */
	WIN(LC_WIN_WEEKLY, 0, -3 * 86400, 4 * 86400);
}

static void test_window_monthly(void **state)
{
	(void)state;
	WIN(LC_WIN_MONTHLY, utc(2026, 11, 21, 10, 0, 0), utc(2026, 11, 1, 0, 0, 0), utc(2026, 12, 1, 0, 0, 0));
	/* Dec -> Jan */
	WIN(LC_WIN_MONTHLY, utc(2026, 12, 31, 23, 59, 59), utc(2026, 12, 1, 0, 0, 0), utc(2027, 1, 1, 0, 0, 0));
	WIN(LC_WIN_MONTHLY, utc(2027, 1, 1, 0, 0, 0), utc(2027, 1, 1, 0, 0, 0), utc(2027, 2, 1, 0, 0, 0));
	/* February in a leap year has 29 days */
	WIN(LC_WIN_MONTHLY, utc(2028, 2, 29, 23, 59, 59), utc(2028, 2, 1, 0, 0, 0), utc(2028, 3, 1, 0, 0, 0));
	assert_int_equal(utc(2028, 3, 1, 0, 0, 0) - utc(2028, 2, 1, 0, 0, 0), 29 * 86400);
	WIN(LC_WIN_MONTHLY, utc(2028, 3, 1, 0, 0, 0), utc(2028, 3, 1, 0, 0, 0), utc(2028, 4, 1, 0, 0, 0));
	/* and 28 in a common year (and in 2100) */
	WIN(LC_WIN_MONTHLY, utc(2027, 2, 28, 23, 59, 59), utc(2027, 2, 1, 0, 0, 0), utc(2027, 3, 1, 0, 0, 0));
	WIN(LC_WIN_MONTHLY, utc(2100, 2, 28, 12, 0, 0), utc(2100, 2, 1, 0, 0, 0), utc(2100, 3, 1, 0, 0, 0));
	WIN(LC_WIN_MONTHLY, utc(2000, 2, 29, 12, 0, 0), utc(2000, 2, 1, 0, 0, 0), utc(2000, 3, 1, 0, 0, 0));
	/* 30- and 31-day months, at the boundary second */
	WIN(LC_WIN_MONTHLY, utc(2026, 4, 30, 23, 59, 59), utc(2026, 4, 1, 0, 0, 0), utc(2026, 5, 1, 0, 0, 0));
	WIN(LC_WIN_MONTHLY, utc(2026, 5, 1, 0, 0, 0), utc(2026, 5, 1, 0, 0, 0), utc(2026, 6, 1, 0, 0, 0));
}

static void test_window_lifetime(void **state)
{
	(void)state;
	WIN(LC_WIN_LIFETIME, 0, 0, INT64_MAX);
	WIN(LC_WIN_LIFETIME, utc(2026, 11, 21, 10, 0, 0), 0, INT64_MAX);
	WIN(LC_WIN_LIFETIME, utc(2099, 1, 1, 0, 0, 0), 0, INT64_MAX);
}

/* Properties over many instants, against the C library's calendar. */
static void test_window_properties(void **state)
{
	(void)state;
	uint64_t x = 88172645463325252ull;

	for (int i = 0; i < 20000; i++) {
		int64_t t;

		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		t = (int64_t)(x % (uint64_t)utc(2100, 1, 1, 0, 0, 0));
		if (i < 64)  /* and a few exact boundaries */
			t = lc_window_start(LC_WIN_MONTHLY, t);
		for (int w = LC_WIN_MINUTE; w <= LC_WIN_MONTHLY; w++) {
			int64_t s = lc_window_start((enum lc_window)w, t), e = lc_window_end((enum lc_window)w, t);
			struct tm tm;
			time_t tt = (time_t)s;

			if (!(s <= t && t < e))
				fail_msg("%s: %lld not in [%lld, %lld)", lc_window_name(w), (long long)t, (long long)s,
					 (long long)e);
			assert_int_equal(lc_window_start((enum lc_window)w, e), e);      /* next bucket starts at end */
			assert_int_equal(lc_window_start((enum lc_window)w, e - 1), s);  /* last second is in */
			assert_int_equal(lc_window_start((enum lc_window)w, s), s);
			gmtime_r(&tt, &tm);
			assert_int_equal(tm.tm_sec, 0);
			if (w >= LC_WIN_HOUR)
				assert_int_equal(tm.tm_min, 0);
			if (w >= LC_WIN_DAILY)
				assert_int_equal(tm.tm_hour, 0);
			if (w == LC_WIN_WEEKLY) {
				assert_int_equal(tm.tm_wday, 1);
				assert_int_equal(e - s, 7 * 86400);
			}
			if (w == LC_WIN_MONTHLY) {
				struct tm te;
				time_t et = (time_t)e;

				assert_int_equal(tm.tm_mday, 1);
				gmtime_r(&et, &te);
				assert_int_equal(te.tm_mday, 1);
				assert_int_equal((te.tm_year * 12 + te.tm_mon) - (tm.tm_year * 12 + tm.tm_mon), 1);
			}
		}
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_design_example_parses),
		cmocka_unit_test(test_limit_defaults),
		cmocka_unit_test(test_compiled_defaults),
		cmocka_unit_test(test_every_field_refused_by_path),
		cmocka_unit_test(test_required_fields),
		cmocka_unit_test(test_duplicate_keys),
		cmocka_unit_test(test_key_team_must_exist),
		cmocka_unit_test(test_same_sha256_twice),
		cmocka_unit_test(test_names),
		cmocka_unit_test(test_window_names),
		cmocka_unit_test(test_window_minute_hour_daily),
		cmocka_unit_test(test_window_weekly_monday),
		cmocka_unit_test(test_window_monthly),
		cmocka_unit_test(test_window_lifetime),
		cmocka_unit_test(test_window_properties),
	};

	setenv("LLMCAP_LOG", "off", 1);
	return cmocka_run_group_tests_name("policy", tests, NULL, NULL);
}
