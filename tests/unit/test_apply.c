/* test_apply.c - installing a signed policy (shared-state/engine_policy.c, lc_apply_envelope).
 *
 * One store per process: every case runs in order in one state directory. Each refusal must
 * return LC_E_REJECTED with one line in err, leave the installed policy (version and exact payload
 * bytes) as it was and still enforced, and queue a policy_rejected event in the outbox.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <ftw.h>
#include <jansson.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "b64.h"
#include "engine.h"
#include "policy.h"
#include "sign.h"
#include "util.h"
#include "wire.h"

#define CI_KEY "sk-test-ci"
#define CI_SHA "71f9f8358cb81324dcf86970d03195a0b8d674589021d1a1c05736ad32b8c66f"
#define NOW_S INT64_C(1795564800) /* 2026-11-25T00:00:00Z */

static int64_t fixed_clock(void)
{
	return NOW_S * 1000;
}

struct key {
	struct lc_signkey sk;
	char pub[300];
};

static struct {
	char root[64];
	struct key a, b, c;
	struct lc_trust trust_a, trust_b, trust_ab;
	/* what must be in force */
	int64_t version;
	char *payload;
	char host[64];
} fx;

static int rm_cb(const char *p, const struct stat *st, int flag, struct FTW *f)
{
	(void)st; (void)flag; (void)f;
	return remove(p);
}

static void make_key(struct key *k, const char *name)
{
	char dir[256], path[300], err[256];

	snprintf(dir, sizeof(dir), "%s/%s", fx.root, name);
	if (lc_keygen(dir, err, sizeof(err)))
		fail_msg("keygen: %s", err);
	snprintf(path, sizeof(path), "%s/llmcap.key", dir);
	if (lc_signkey_load(path, &k->sk, err, sizeof(err)))
		fail_msg("load: %s", err);
	snprintf(k->pub, sizeof(k->pub), "%s/llmcap.pub", dir);
}

static void trust(struct lc_trust *t, const struct key *k1, const struct key *k2)
{
	char err[256];

	memset(t, 0, sizeof(*t));
	assert_int_equal(lc_trust_load(k1->pub, t, err, sizeof(err)), 0);
	if (k2)
		assert_int_equal(lc_trust_load(k2->pub, t, err, sizeof(err)), 0);
	assert_int_equal(t->n, k2 ? 2 : 1);
}

static int setup(void **state)
{
	char dir[128];

	(void)state;
	snprintf(fx.root, sizeof(fx.root), "/tmp/llmcap-test-apply.XXXXXX");
	if (!mkdtemp(fx.root))
		return -1;
	snprintf(dir, sizeof(dir), "%s/state", fx.root);
	setenv("LLMCAP_STATE_DIR", dir, 1);
	setenv("LLMCAP_LOG", "off", 1);
	lc_clock_hook = fixed_clock;
	make_key(&fx.a, "a");
	make_key(&fx.b, "b");
	make_key(&fx.c, "c");
	trust(&fx.trust_a, &fx.a, NULL);
	trust(&fx.trust_b, &fx.b, NULL);
	trust(&fx.trust_ab, &fx.a, &fx.b);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	lc_signkey_wipe(&fx.a.sk);
	lc_signkey_wipe(&fx.b.sk);
	lc_signkey_wipe(&fx.c.sk);
	free(fx.payload);
	nftw(fx.root, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
	return 0;
}

/* ---- policies and envelopes ------------------------------------------------ */

/* A valid policy: version v, provider host `host`, unknown keys blocked (the enforcement probe
 * relies on it), the ci key with a generous limit. `extra` is spliced in before the final brace. */
static char *policy_ex(int64_t v, const char *host, const char *issued, const char *expires, const char *extra)
{
	char *s = NULL;

	assert_true(asprintf(&s,
			     "{\"schema\": 1, \"version\": %lld, \"issued_at\": \"%s\", \"expires_at\": \"%s\",\n"
			     " \"providers\": [{\"name\": \"p\", \"format\": \"openai\", \"hosts\": [\"%s\"]}],\n"
			     " \"prices\": {\"m\": {\"input\": 1, \"output\": 1}},\n"
			     " \"unknown_keys\": \"block\",\n"
			     " \"keys\": {\"ci\": {\"sha256\": \"" CI_SHA "\", \"limits\": [{\"metric\": \"requests\","
			     " \"window\": \"daily\", \"threshold\": 100000}]}}%s}\n",
			     (long long)v, issued, expires, host, extra ? extra : "") > 0);
	return s;
}

static char *policy(int64_t v, const char *host)
{
	return policy_ex(v, host, "2026-11-21T00:00:00Z", "2026-12-21T00:00:00Z", NULL);
}

static char *sign_text(const struct key *k, const char *text, size_t *len)
{
	char err[256], *env = NULL;
	size_t n = 0;

	if (lc_dsse_sign(&k->sk, text, strlen(text), &env, &n, err, sizeof(err)))
		fail_msg("sign: %s", err);
	if (len)
		*len = n;
	return env;
}

/* ---- what is installed, and is it enforced ---------------------------------- */

static void probe(const char *host, int expect_provider)
{
	enum lc_format fmt;
	char name[64] = "";

	assert_int_equal(lc_provider_lookup(host, 443, &fmt, name, sizeof(name)), expect_provider);
	if (expect_provider)
		assert_string_equal(name, "p");
}

static void expect_enforced(void)
{
	struct lc_reqinfo info;
	struct lc_admit_req r;
	struct lc_decision d;
	static const char unknown[] = "sk-not-in-the-policy";
	int64_t version = -1, exp = -1;
	char *payload = NULL;
	size_t plen = 0;

	/* the installed version and its exact bytes */
	assert_int_equal(lc_policy_info(&version, &exp), LC_OK);
	assert_int_equal(version, fx.version);
	assert_int_equal(lc_policy_payload(&payload, &plen), LC_OK);
	assert_int_equal(plen, strlen(fx.payload));
	assert_memory_equal(payload, fx.payload, plen);
	free(payload);

	/* its compiled tables answer the decisions: its provider, nobody else's */
	probe(fx.host, 1);
	probe("rogue.example", 0);

	memset(&info, 0, sizeof(info));
	info.api = LC_API_CHAT;
	snprintf(info.model, sizeof(info.model), "m");
	info.output_cap = 10;
	info.input_estimate = 10;
	memset(&r, 0, sizeof(r));
	r.host = fx.host;
	r.port = 443;
	r.info = &info;
	/* unknown_keys: block is enforced */
	r.api_key = unknown;
	r.api_key_len = strlen(unknown);
	assert_int_equal(lc_admit(&r, &d), LC_OK);
	assert_int_equal(d.verdict, LC_DENY);
	assert_int_equal(d.status, 401);
	/* the policy's key is let through */
	r.api_key = CI_KEY;
	r.api_key_len = strlen(CI_KEY);
	assert_int_equal(lc_admit(&r, &d), LC_OK);
	if (d.verdict != LC_ALLOW)
		fail_msg("ci key not allowed: %d %s", d.verdict, d.message);
	assert_int_equal(lc_settle(d.ticket, NULL, 200), LC_OK);
}

/* policy_rejected events in the outbox; *last_reason (malloc'd) is the newest one's reason */
static size_t rejections(char **last_reason)
{
	json_t *arr = NULL, *ev;
	size_t i, n = 0;

	if (last_reason)
		*last_reason = NULL;
	if (fx.version == 0 && lc_outbox_list(0, 100000, &arr) == LC_E_NOSTATE)
		return 0; /* nothing installed yet, not even a store */
	json_decref(arr);
	assert_int_equal(lc_outbox_list(0, 100000, &arr), LC_OK);
	json_array_foreach(arr, i, ev) {
		if (strcmp(json_string_value(json_object_get(ev, "event")), "policy_rejected"))
			continue;
		n++;
		if (last_reason) {
			free(*last_reason);
			*last_reason = strdup(json_string_value(json_object_get(json_object_get(ev, "data"), "reason")));
		}
	}
	json_decref(arr);
	return n;
}

static void installed(int64_t version, const char *payload, const char *host)
{
	free(fx.payload);
	fx.payload = strdup(payload);
	fx.version = version;
	snprintf(fx.host, sizeof(fx.host), "%s", host);
}

static void expect_applied(const struct lc_trust *t, const char *env, size_t len, int64_t version,
			   const char *payload, const char *host)
{
	char err[512] = "";
	int64_t v = -1;
	size_t before = rejections(NULL);
	int rc = lc_apply_envelope(t, env, len, &v, err, sizeof(err));

	if (rc != LC_OK)
		fail_msg("apply v%lld refused (%d): %s", (long long)version, rc, err);
	assert_int_equal(v, version);
	installed(version, payload, host);
	expect_enforced();
	assert_int_equal(rejections(NULL), before);
}

static void expect_refused(const struct lc_trust *t, const void *env, size_t len, const char *want)
{
	char err[512] = "", *reason = NULL;
	size_t before = rejections(NULL);
	int64_t v = 0;
	int rc;

	expect_enforced();
	rc = lc_apply_envelope(t, env, len, &v, err, sizeof(err));
	if (rc != LC_E_REJECTED)
		fail_msg("expected LC_E_REJECTED (%s), got %d: %s", want, rc, err);
	if (!err[0] || strchr(err, '\n') || !strstr(err, want))
		fail_msg("error \"%s\" is not one line saying \"%s\"", err, want);
	expect_enforced();
	assert_int_equal(rejections(&reason), before + 1);
	assert_non_null(reason);
	assert_string_equal(reason, err);
	free(reason);
}

/* `payload` (freed here), signed by key A, is refused under the trust in A, saying `want` */
static void refuse_signed(char *payload, const char *want)
{
	char *env = sign_text(&fx.a, payload, NULL);

	expect_refused(&fx.trust_a, env, strlen(env), want);
	free(env);
	free(payload);
}

/* an envelope (j, taken) whose payload or signature was changed is refused for its signature */
static void refuse_forged(json_t *j)
{
	char *bad = json_dumps(j, JSON_COMPACT);

	expect_refused(&fx.trust_a, bad, strlen(bad), "signature");
	free(bad);
	json_decref(j);
}

/* ---- the cases, in order ------------------------------------------------------ */

static void test_first_install(void **state)
{
	(void)state;
	char *p = policy(1, "v1.example"), *env, path[128];
	int64_t v = -1;
	size_t n;
	struct stat st;

	assert_int_equal(lc_policy_info(&v, NULL), LC_E_NOPOLICY);
	env = sign_text(&fx.a, p, &n);
	expect_applied(&fx.trust_a, env, n, 1, p, "v1.example");
	/* it went to $LLMCAP_STATE_DIR */
	snprintf(path, sizeof(path), "%s/state/data.mdb", fx.root);
	assert_int_equal(stat(path, &st), 0);
	free(env);
	free(p);
}

static void test_refuse_bad_signature(void **state)
{
	(void)state;
	char *p = policy(5, "rogue.example"), *env = sign_text(&fx.a, p, NULL), *pb;
	json_t *j;
	size_t len = strlen(p);

	/* one payload byte flipped: "rogue" -> "rogud" ... and each of a few other positions */
	for (size_t pos = 0; pos < len; pos += len / 5) {
		char *body = strdup(p);

		body[pos] ^= 0x01;
		j = json_loads(env, 0, NULL);
		pb = b64(body, len);
		json_object_set_new(j, "payload", json_string(pb));
		refuse_forged(j);
		free(pb);
		free(body);
	}
	/* a flipped signature byte */
	{
		json_t *s;
		unsigned char sig[64];
		size_t n;

		j = json_loads(env, 0, NULL);
		s = json_array_get(json_object_get(j, "signatures"), 0);
		assert_int_equal(sodium_base642bin(sig, sizeof(sig), json_string_value(json_object_get(s, "sig")),
						   strlen(json_string_value(json_object_get(s, "sig"))), NULL, &n, NULL,
						   sodium_base64_VARIANT_ORIGINAL),
				 0);
		sig[10] ^= 0x40;
		pb = b64(sig, 64);
		json_object_set_new(s, "sig", json_string(pb));
		refuse_forged(j);
		free(pb);
	}
	free(env);
	free(p);
}

static void test_refuse_untrusted_key(void **state)
{
	(void)state;
	char *p = policy(5, "rogue.example"), *env = sign_text(&fx.c, p, NULL), *bad;
	json_t *j;

	expect_refused(&fx.trust_a, env, strlen(env), "signature");
	expect_refused(&fx.trust_ab, env, strlen(env), "signature");
	/* claiming a trusted keyid does not help */
	j = json_loads(env, 0, NULL);
	json_object_set_new(json_array_get(json_object_get(j, "signatures"), 0), "keyid", json_string(fx.a.sk.keyid));
	bad = json_dumps(j, JSON_COMPACT);
	expect_refused(&fx.trust_a, bad, strlen(bad), "signature");
	free(bad);
	json_decref(j);
	/* nor does an empty trust */
	{
		struct lc_trust none;

		memset(&none, 0, sizeof(none));
		free(env);
		env = sign_text(&fx.a, p, NULL);
		expect_refused(&none, env, strlen(env), "signature");
	}
	free(env);
	free(p);
}

static void test_refuse_truncated(void **state)
{
	(void)state;
	char *p = policy(5, "rogue.example"), *env;
	size_t n;
	size_t cuts[] = {0, 1, 2, 10, 0 /* n/2 */, 0 /* without the last } */, 0 /* and the ] */};

	env = sign_text(&fx.a, p, &n);
	cuts[4] = n / 2;
	cuts[5] = (size_t)(strrchr(env, '}') - env);
	cuts[6] = cuts[5] - 1;
	assert_int_equal(env[cuts[6]], ']');
	for (size_t i = 0; i < sizeof(cuts) / sizeof(cuts[0]); i++) {
		char *cut = malloc(cuts[i] + 1);

		memcpy(cut, env, cuts[i]);
		cut[cuts[i]] = '\0';
		expect_refused(&fx.trust_a, cut, cuts[i], "envelope");
		free(cut);
	}
	free(env);
	free(p);
}

static void test_refuse_oversized(void **state)
{
	(void)state;
	char *p = policy(5, "rogue.example"), *env, *big, *again;
	size_t n;

	/* a genuine envelope padded with JSON whitespace past the cap: the size alone refuses it */
	env = sign_text(&fx.a, p, &n);
	big = malloc((size_t)LC_ENVELOPE_MAX + 2);
	memcpy(big, env, n);
	memset(big + n, ' ', (size_t)LC_ENVELOPE_MAX + 1 - n);
	big[LC_ENVELOPE_MAX + 1] = '\0';
	expect_refused(&fx.trust_a, big, (size_t)LC_ENVELOPE_MAX + 1, "cap");
	free(env);

	/* exactly at the cap is not over it: the installed policy's own envelope, padded, is a no-op */
	again = sign_text(&fx.a, fx.payload, &n);
	memcpy(big, again, n);
	memset(big + n, ' ', (size_t)LC_ENVELOPE_MAX - n);
	{
		char err[512] = "";
		int64_t v = -1;

		assert_int_equal(lc_apply_envelope(&fx.trust_a, big, LC_ENVELOPE_MAX, &v, err, sizeof(err)), LC_OK);
		assert_int_equal(v, fx.version);
	}
	expect_enforced();
	free(again);
	free(big);
	free(p);
}

static void test_refuse_duplicate_keys_in_payload(void **state)
{
	(void)state;
	char *p = policy(5, "rogue.example"), *env, *dup;

	/* the signature is good: the payload itself must be refused */
	assert_true(asprintf(&dup, "{\"version\": 6, %s", p + 1) > 0);
	env = sign_text(&fx.a, dup, NULL);
	expect_refused(&fx.trust_a, env, strlen(env), "duplicate");
	free(env);
	free(dup);
	/* deeper down, in a key */
	refuse_signed(policy_ex(5, "rogue.example", "2026-11-21T00:00:00Z", "2026-12-21T00:00:00Z",
				", \"teams\": {\"t\": {\"limits\": []}, \"t\": {\"limits\": []}}"),
		      "duplicate");
	free(p);
}

static void test_refuse_unknown_field_in_payload(void **state)
{
	(void)state;
	char *env;

	refuse_signed(policy_ex(5, "rogue.example", "2026-11-21T00:00:00Z", "2026-12-21T00:00:00Z", ", \"bogus\": true"),
		      "bogus: unknown field");
	refuse_signed(policy_ex(5, "rogue.example", "2026-11-21T00:00:00Z", "2026-12-21T00:00:00Z",
				", \"org\": {\"spend_cap_usd\": 1, \"spend_cap_eur\": 1}"),
		      "org.spend_cap_eur: unknown field");
	/* and any other invalid field, by its path */
	refuse_signed(policy_ex(5, "rogue.example", "2026-11-21T00:00:00Z", "2026-12-21T00:00:00Z",
				", \"teams\": {\"t\": {\"limits\": [{\"metric\": \"cost\", \"window\": \"yearly\", \"threshold\": 1}]}}"),
		      "teams.t.limits[0].window");
	/* a payload that is not a policy at all */
	env = sign_text(&fx.a, "[1, 2, 3]", NULL);
	expect_refused(&fx.trust_a, env, strlen(env), "policy");
	free(env);
}

static void test_refuse_expired(void **state)
{
	(void)state;

	refuse_signed(policy_ex(5, "rogue.example", "2026-10-01T00:00:00Z", "2026-11-01T00:00:00Z", NULL),
		      "expires_at");
	/* expiring this very second is expired */
	refuse_signed(policy_ex(5, "rogue.example", "2026-10-01T00:00:00Z", "2026-11-25T00:00:00Z", NULL),
		      "expires_at");
}

/* a higher version is accepted */
static void test_accept_higher_version(void **state)
{
	(void)state;
	char *p = policy(2, "v2.example"), *env;
	size_t n;

	env = sign_text(&fx.a, p, &n);
	expect_applied(&fx.trust_a, env, n, 2, p, "v2.example");
	probe("v1.example", 0); /* the old policy's tables are gone */
	free(env);
	free(p);
}

/* two trusted keys during a rotation */
static void test_key_rotation(void **state)
{
	(void)state;
	char *p3 = policy(3, "v3.example"), *p4 = policy(4, "v4.example"), *p5 = policy(5, "rogue.example");
	char *e3 = sign_text(&fx.a, p3, NULL), *e4 = sign_text(&fx.b, p4, NULL), *e5;

	/* B's signature means nothing to a host that trusts only A */
	expect_refused(&fx.trust_a, e4, strlen(e4), "signature");
	/* a host that trusts both takes the old key's v3 and the new key's v4 */
	expect_applied(&fx.trust_ab, e3, strlen(e3), 3, p3, "v3.example");
	expect_applied(&fx.trust_ab, e4, strlen(e4), 4, p4, "v4.example");
	/* once A is retired, A's signature is refused */
	e5 = sign_text(&fx.a, p5, NULL);
	expect_refused(&fx.trust_b, e5, strlen(e5), "signature");
	free(e3);
	free(e4);
	free(e5);
	free(p3);
	free(p4);
	free(p5);
}

static void test_refuse_rollback(void **state)
{
	(void)state;
	/* genuine, trusted, unexpired, but older than v4 */
	for (int v = 1; v <= 3; v++) {
		char host[32], *p, *env;

		snprintf(host, sizeof(host), "v%d.example", v);
		p = policy(v, host);
		env = sign_text(&fx.a, p, NULL);
		expect_refused(&fx.trust_ab, env, strlen(env), "rollback");
		free(env);
		free(p);
	}
}

static void test_refuse_substitution(void **state)
{
	(void)state;
	char *p = policy(4, "rogue.example"), *env, *ws;

	env = sign_text(&fx.b, p, NULL);
	expect_refused(&fx.trust_ab, env, strlen(env), "substitution");
	free(env);
	env = sign_text(&fx.a, p, NULL);
	expect_refused(&fx.trust_ab, env, strlen(env), "substitution");
	free(env);
	/* the same document with one more space is other bytes: refused too */
	assert_true(asprintf(&ws, "%s ", fx.payload) > 0);
	env = sign_text(&fx.b, ws, NULL);
	expect_refused(&fx.trust_ab, env, strlen(env), "substitution");
	free(env);
	free(ws);
	free(p);
}

static void test_reapply_identical_is_noop(void **state)
{
	(void)state;
	const struct key *signers[] = {&fx.b, &fx.a};

	for (int i = 0; i < 2; i++) {
		char *env = sign_text(signers[i], fx.payload, NULL), err[512] = "";
		size_t before = rejections(NULL);
		int64_t v = -1;

		expect_enforced();
		assert_int_equal(lc_apply_envelope(&fx.trust_ab, env, strlen(env), &v, err, sizeof(err)), LC_OK);
		assert_int_equal(v, 4);
		assert_non_null(strstr(err, "already installed"));
		assert_null(strchr(err, '\n'));
		expect_enforced();
		assert_int_equal(rejections(NULL), before);
		free(env);
	}
}

/* the refusals above left events behind, and each one names its reason */
static void test_outbox_has_rejections(void **state)
{
	(void)state;
	json_t *arr = NULL, *ev;
	size_t i, n = 0;

	assert_int_equal(lc_outbox_list(0, 100000, &arr), LC_OK);
	json_array_foreach(arr, i, ev) {
		if (strcmp(json_string_value(json_object_get(ev, "event")), "policy_rejected"))
			continue;
		n++;
		assert_true(json_integer_value(json_object_get(ev, "seq")) > 0);
		assert_true(json_is_string(json_object_get(ev, "id")));
		assert_true(strlen(json_string_value(json_object_get(json_object_get(ev, "data"), "reason"))) > 0);
	}
	json_decref(arr);
	assert_true(n >= 30);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_first_install),
		cmocka_unit_test(test_refuse_bad_signature),
		cmocka_unit_test(test_refuse_untrusted_key),
		cmocka_unit_test(test_refuse_truncated),
		cmocka_unit_test(test_refuse_oversized),
		cmocka_unit_test(test_refuse_duplicate_keys_in_payload),
		cmocka_unit_test(test_refuse_unknown_field_in_payload),
		cmocka_unit_test(test_refuse_expired),
		cmocka_unit_test(test_accept_higher_version),
		cmocka_unit_test(test_key_rotation),
		cmocka_unit_test(test_refuse_rollback),
		cmocka_unit_test(test_refuse_substitution),
		cmocka_unit_test(test_reapply_identical_is_noop),
		cmocka_unit_test(test_outbox_has_rejections),
	};

	return cmocka_run_group_tests_name("apply", tests, setup, teardown);
}
