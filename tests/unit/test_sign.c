/* test_sign.c - Ed25519 keys, trust files and the DSSE envelope (shared-state/sign.c). */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <ftw.h>
#include <jansson.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "b64.h"
#include "sign.h"

static const char POLICY[] = "{\"schema\": 1, \"version\": 7, \"note\": \"exact bytes \\u00e9 1.10\"}\n";

struct key {
	char dir[256];
	struct lc_signkey sk;
	struct lc_trust trust; /* just this key */
};

struct fx {
	char root[128];
	struct key a, b, c;
};

static int rm_cb(const char *p, const struct stat *st, int flag, struct FTW *f)
{
	(void)st; (void)flag; (void)f;
	return remove(p);
}

static void make_key(struct fx *fx, struct key *k, const char *name)
{
	char err[256] = "";
	snprintf(k->dir, sizeof k->dir, "%s/%s", fx->root, name);
	assert_int_equal(lc_keygen(k->dir, err, sizeof err), 0);
	char path[1024];
	snprintf(path, sizeof path, "%s/llmcap.key", k->dir);
	assert_int_equal(lc_signkey_load(path, &k->sk, err, sizeof err), 0);
	memset(&k->trust, 0, sizeof k->trust);
	snprintf(path, sizeof path, "%s/llmcap.pub", k->dir);
	assert_int_equal(lc_trust_load(path, &k->trust, err, sizeof err), 0);
	assert_int_equal(k->trust.n, 1);
	assert_string_equal(k->trust.keys[0].keyid, k->sk.keyid);
}

static int setup(void **state)
{
	struct fx *fx = calloc(1, sizeof *fx);
	snprintf(fx->root, sizeof fx->root, "/tmp/llmcap-test-sign.XXXXXX");
	if (!mkdtemp(fx->root))
		return -1;
	make_key(fx, &fx->a, "a");
	make_key(fx, &fx->b, "b");
	make_key(fx, &fx->c, "c");
	*state = fx;
	return 0;
}

static int teardown(void **state)
{
	struct fx *fx = *state;
	lc_signkey_wipe(&fx->a.sk);
	lc_signkey_wipe(&fx->b.sk);
	lc_signkey_wipe(&fx->c.sk);
	nftw(fx->root, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
	free(fx);
	return 0;
}

static char *sign_policy(const struct key *k, size_t *len)
{
	char err[256] = "";
	char *env = NULL;
	size_t n = 0;
	int rc = lc_dsse_sign(&k->sk, POLICY, strlen(POLICY), &env, &n, err, sizeof err);
	if (rc != 0)
		fail_msg("sign: %s", err);
	assert_non_null(env);
	assert_int_equal(strlen(env), n);
	if (len)
		*len = n;
	return env;
}

/* verify; returns rc, err in err */
static int verify(const struct lc_trust *t, const char *env, size_t len, char *err, size_t errlen)
{
	unsigned char *p = NULL;
	size_t pl = 99;
	char kid[65] = "x";
	err[0] = '\0';
	int rc = lc_dsse_verify(t, env, len, &p, &pl, kid, err, errlen);
	if (rc == 0) {
		assert_non_null(p);
		assert_int_equal(pl, strlen(POLICY));
		assert_memory_equal(p, POLICY, pl);
		assert_int_equal(p[pl], '\0');
		assert_int_equal(strlen(kid), 64);
		free(p);
	} else {
		assert_null(p);
		assert_int_equal(pl, 0);
		assert_string_equal(kid, "");
		assert_true(strlen(err) > 0);
		assert_null(strchr(err, '\n')); /* one line */
	}
	return rc;
}

static void expect_reject(const struct lc_trust *t, const char *env, size_t len, const char *prefix)
{
	char err[512];
	int rc = verify(t, env, len, err, sizeof err);
	if (rc == 0)
		fail_msg("expected rejection (%s) but envelope verified", prefix);
	if (strncmp(err, prefix, strlen(prefix)) != 0)
		fail_msg("expected error starting \"%s\", got \"%s\"", prefix, err);
}

static void expect_ok(const struct lc_trust *t, const char *env, const char *want_kid)
{
	char err[512];
	unsigned char *p = NULL;
	size_t pl = 0;
	char kid[65] = "";
	if (lc_dsse_verify(t, env, strlen(env), &p, &pl, kid, err, sizeof err) != 0)
		fail_msg("expected verify ok, got: %s", err);
	assert_int_equal(pl, strlen(POLICY));
	assert_memory_equal(p, POLICY, pl);
	free(p);
	if (want_kid)
		assert_string_equal(kid, want_kid);
}

static json_t *parse(const char *env)
{
	json_error_t je;
	json_t *j = json_loads(env, 0, &je);
	assert_non_null(j);
	return j;
}

static char *dump(json_t *j)
{
	char *s = json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER);
	json_decref(j);
	assert_non_null(s);
	return s;
}

/* DSSE PAE written out independently of sign.c */
static unsigned char *spec_pae(const char *type, const void *body, size_t n, size_t *out_len)
{
	char head[256];
	int hl = snprintf(head, sizeof head, "DSSEv1 %zu %s %zu ", strlen(type), type, n);
	unsigned char *m = malloc((size_t)hl + n);
	memcpy(m, head, (size_t)hl);
	memcpy(m + hl, body, n);
	*out_len = (size_t)hl + n;
	return m;
}

/* an envelope with the given type, payload and one signature by k over PAE(sig_type, payload) */
static char *craft(const char *type, const char *sig_type, const struct key *k, const char *keyid)
{
	size_t ml;
	unsigned char *m = spec_pae(sig_type, POLICY, strlen(POLICY), &ml);
	unsigned char sig[64];
	crypto_sign_detached(sig, NULL, m, ml, k->sk.sk);
	free(m);
	char *pb = b64(POLICY, strlen(POLICY)), *sb = b64(sig, 64);
	json_t *j = json_pack("{s:s, s:s, s:[{s:s, s:s}]}", "payloadType", type, "payload", pb,
			      "signatures", "keyid", keyid, "sig", sb);
	free(pb);
	free(sb);
	return dump(j);
}

/* ---- tests --------------------------------------------------------------- */

static void test_roundtrip(void **state)
{
	struct fx *fx = *state;
	size_t n;
	char *env = sign_policy(&fx->a, &n);
	char err[512];
	unsigned char *p = NULL;
	size_t pl = 0;
	char kid[65];
	assert_int_equal(lc_dsse_verify(&fx->a.trust, env, n, &p, &pl, kid, err, sizeof err), 0);
	assert_int_equal(pl, strlen(POLICY));
	assert_memory_equal(p, POLICY, pl);
	assert_string_equal(kid, fx->a.sk.keyid);
	free(p);
	/* optional outputs may be NULL */
	assert_int_equal(lc_dsse_verify(&fx->a.trust, env, n, NULL, NULL, NULL, err, sizeof err), 0);
	/* signing is deterministic (Ed25519) */
	char *env2 = sign_policy(&fx->a, NULL);
	assert_string_equal(env, env2);
	free(env2);
	free(env);
}

static void test_envelope_format_and_pae(void **state)
{
	struct fx *fx = *state;
	char *env = sign_policy(&fx->a, NULL);
	json_t *j = parse(env);
	assert_int_equal(json_object_size(j), 3);
	assert_string_equal(json_string_value(json_object_get(j, "payloadType")), LC_PAYLOAD_TYPE);
	unsigned char body[512];
	size_t bl = unb64(json_string_value(json_object_get(j, "payload")), body, sizeof body);
	assert_int_equal(bl, strlen(POLICY));
	assert_memory_equal(body, POLICY, bl);
	json_t *s = json_array_get(json_object_get(j, "signatures"), 0);
	assert_int_equal(json_object_size(s), 2);
	assert_string_equal(json_string_value(json_object_get(s, "keyid")), fx->a.sk.keyid);
	/* keyid = hex sha256(pk) */
	unsigned char h[32];
	char hex[65];
	crypto_hash_sha256(h, fx->a.sk.pk, 32);
	for (int i = 0; i < 32; i++)
		sprintf(hex + 2 * i, "%02x", h[i]);
	assert_string_equal(fx->a.sk.keyid, hex);
	/* the signature is Ed25519 over PAE exactly as DSSE specifies */
	unsigned char sig[64];
	assert_int_equal(unb64(json_string_value(json_object_get(s, "sig")), sig, sizeof sig), 64);
	size_t ml;
	unsigned char *m = spec_pae(LC_PAYLOAD_TYPE, POLICY, strlen(POLICY), &ml);
	assert_int_equal(crypto_sign_verify_detached(sig, m, ml, fx->a.sk.pk), 0);
	free(m);
	json_decref(j);
	free(env);
	/* and an envelope crafted from the spec verifies */
	env = craft(LC_PAYLOAD_TYPE, LC_PAYLOAD_TYPE, &fx->a, fx->a.sk.keyid);
	expect_ok(&fx->a.trust, env, fx->a.sk.keyid);
	free(env);
}

static void test_flipped_payload_byte(void **state)
{
	struct fx *fx = *state;
	char *env = sign_policy(&fx->a, NULL);
	/* flip one bit in several positions of the decoded payload, re-encode */
	for (size_t pos = 0; pos < strlen(POLICY); pos += 7) {
		json_t *j = parse(env);
		char body[512];
		strcpy(body, POLICY);
		body[pos] ^= 0x01;
		char *pb = b64(body, strlen(POLICY));
		json_object_set_new(j, "payload", json_string(pb));
		free(pb);
		char *bad = dump(j);
		expect_reject(&fx->a.trust, bad, strlen(bad), "signature: no signature by a trusted key");
		free(bad);
	}
	/* one byte appended */
	json_t *j = parse(env);
	char body[512];
	snprintf(body, sizeof body, "%s ", POLICY);
	char *pb = b64(body, strlen(body));
	json_object_set_new(j, "payload", json_string(pb));
	free(pb);
	char *bad = dump(j);
	expect_reject(&fx->a.trust, bad, strlen(bad), "signature:");
	free(bad);
	free(env);
}

static void test_flipped_sig_byte(void **state)
{
	struct fx *fx = *state;
	char *env = sign_policy(&fx->a, NULL);
	for (int pos = 0; pos < 64; pos += 9) {
		json_t *j = parse(env);
		json_t *s = json_array_get(json_object_get(j, "signatures"), 0);
		unsigned char sig[64];
		unb64(json_string_value(json_object_get(s, "sig")), sig, sizeof sig);
		sig[pos] ^= 0x80;
		char *sb = b64(sig, 64);
		json_object_set_new(s, "sig", json_string(sb));
		free(sb);
		char *bad = dump(j);
		expect_reject(&fx->a.trust, bad, strlen(bad), "signature: no signature by a trusted key");
		free(bad);
	}
	free(env);
}

static void test_untrusted_key(void **state)
{
	struct fx *fx = *state;
	char *env = sign_policy(&fx->b, NULL);
	expect_reject(&fx->a.trust, env, strlen(env), "signature: no signature by a trusted key");
	/* no trusted keys at all */
	struct lc_trust none;
	memset(&none, 0, sizeof none);
	expect_reject(&none, env, strlen(env), "signature: no signature by a trusted key");
	expect_reject(NULL, env, strlen(env), "signature: no signature by a trusted key");
	free(env);
}

static void test_wrong_payload_type(void **state)
{
	struct fx *fx = *state;
	char *env = sign_policy(&fx->a, NULL);
	json_t *j = parse(env);
	json_object_set_new(j, "payloadType", json_string("application/vnd.in-toto+json"));
	char *bad = dump(j);
	expect_reject(&fx->a.trust, bad, strlen(bad),
		      "envelope: payloadType must be \"" LC_PAYLOAD_TYPE "\"");
	free(bad);
	/* a genuine signature for another type is not a policy */
	bad = craft("application/json", "application/json", &fx->a, fx->a.sk.keyid);
	expect_reject(&fx->a.trust, bad, strlen(bad), "envelope: payloadType must be");
	free(bad);
	/* near misses */
	const char *near[] = {LC_PAYLOAD_TYPE " ", "APPLICATION/VND.LLMCAP.POLICY+JSON",
			      LC_PAYLOAD_TYPE "; v=2", ""};
	for (size_t i = 0; i < sizeof near / sizeof *near; i++) {
		j = parse(env);
		json_object_set_new(j, "payloadType", json_string(near[i]));
		bad = dump(j);
		expect_reject(&fx->a.trust, bad, strlen(bad), "envelope: payloadType must be");
		free(bad);
	}
	j = parse(env);
	json_object_set_new(j, "payloadType", json_integer(1));
	bad = dump(j);
	expect_reject(&fx->a.trust, bad, strlen(bad), "envelope:");
	free(bad);
	free(env);
}

static void test_type_bound_by_pae(void **state)
{
	struct fx *fx = *state;
	/* signed over another type, relabelled as a policy: the signature must not verify */
	char *bad = craft(LC_PAYLOAD_TYPE, "application/json", &fx->a, fx->a.sk.keyid);
	expect_reject(&fx->a.trust, bad, strlen(bad), "signature: no signature by a trusted key");
	free(bad);
}

static void test_extra_field(void **state)
{
	struct fx *fx = *state;
	char *env = sign_policy(&fx->a, NULL);
	json_t *j = parse(env);
	json_object_set_new(j, "payload_type", json_string("x"));
	char *bad = dump(j);
	expect_reject(&fx->a.trust, bad, strlen(bad), "envelope: unknown field \"payload_type\"");
	free(bad);
	/* an unknown field inside a signature */
	j = parse(env);
	json_object_set_new(json_array_get(json_object_get(j, "signatures"), 0), "cert",
			    json_string("x"));
	bad = dump(j);
	expect_reject(&fx->a.trust, bad, strlen(bad), "envelope: signatures[0] has unknown field");
	free(bad);
	free(env);
}

static void test_missing_and_mistyped_fields(void **state)
{
	struct fx *fx = *state;
	char *env = sign_policy(&fx->a, NULL);
	const char *fields[] = {"payloadType", "payload", "signatures"};
	for (int i = 0; i < 3; i++) {
		json_t *j = parse(env);
		json_object_del(j, fields[i]);
		char *bad = dump(j);
		expect_reject(&fx->a.trust, bad, strlen(bad), "envelope:");
		assert_non_null(strstr(bad, "{")); /* sanity */
		free(bad);
	}
	const char *cases[] = {
		"[]", "\"x\"", "null", "{}",
		"{\"payloadType\":\"" LC_PAYLOAD_TYPE "\",\"payload\":\"e30=\",\"signatures\":[]}",
		"{\"payloadType\":\"" LC_PAYLOAD_TYPE "\",\"payload\":\"e30=\",\"signatures\":{}}",
		"{\"payloadType\":\"" LC_PAYLOAD_TYPE "\",\"payload\":\"e30=\",\"signatures\":[1]}",
		"{\"payloadType\":\"" LC_PAYLOAD_TYPE "\",\"payload\":\"e30=\",\"signatures\":[{}]}",
		"{\"payloadType\":\"" LC_PAYLOAD_TYPE "\",\"payload\":\"e30=\",\"signatures\":[{\"keyid\":\"ab\"}]}",
		"{\"payloadType\":\"" LC_PAYLOAD_TYPE "\",\"payload\":\"e30=\",\"signatures\":[{\"keyid\":1,\"sig\":\"\"}]}",
		"{\"payloadType\":\"" LC_PAYLOAD_TYPE "\",\"payload\":\"e30=\",\"signatures\":[{\"keyid\":\"ab\",\"sig\":\"AAAA\"}]}",
		"{\"payloadType\":\"" LC_PAYLOAD_TYPE "\",\"payload\":7,\"signatures\":[{\"keyid\":\"ab\",\"sig\":\"AAAA\"}]}",
	};
	for (size_t i = 0; i < sizeof cases / sizeof *cases; i++)
		expect_reject(&fx->a.trust, cases[i], strlen(cases[i]), "envelope:");
	free(env);
}

static void test_bad_base64(void **state)
{
	struct fx *fx = *state;
	char *env = sign_policy(&fx->a, NULL);
	const char *bad_payloads[] = {"e30", "e3 0=", "e30=\n", "!!!!", "e31=" /* non-canonical bits */, ""};
	for (size_t i = 0; i < sizeof bad_payloads / sizeof *bad_payloads; i++) {
		json_t *j = parse(env);
		json_object_set_new(j, "payload", json_string(bad_payloads[i]));
		char *bad = dump(j);
		expect_reject(&fx->a.trust, bad, strlen(bad), "envelope: payload");
		free(bad);
	}
	/* URL-safe alphabet is not the ORIGINAL variant */
	json_t *j = parse(env);
	json_t *s = json_array_get(json_object_get(j, "signatures"), 0);
	char sig[128];
	strcpy(sig, json_string_value(json_object_get(s, "sig")));
	for (char *p = sig; *p; p++)
		if (*p == '+')
			*p = '-';
		else if (*p == '/')
			*p = '_';
	json_object_set_new(s, "sig", json_string(sig));
	char *bad = dump(j);
	if (strchr(sig, '-') || strchr(sig, '_'))
		expect_reject(&fx->a.trust, bad, strlen(bad), "envelope: signatures[0].sig");
	free(bad);
	free(env);
}

static void test_duplicate_keys(void **state)
{
	struct fx *fx = *state;
	char *env = sign_policy(&fx->a, NULL);
	json_t *j = parse(env);
	const char *pb = json_string_value(json_object_get(j, "payload"));
	json_t *s = json_array_get(json_object_get(j, "signatures"), 0);
	const char *kid = json_string_value(json_object_get(s, "keyid"));
	const char *sg = json_string_value(json_object_get(s, "sig"));
	char buf[2048];
	/* payload twice: the second (attacker's) must not win silently */
	snprintf(buf, sizeof buf,
		 "{\"payloadType\":\"%s\",\"payload\":\"%s\",\"payload\":\"e30=\",\"signatures\":[{\"keyid\":\"%s\",\"sig\":\"%s\"}]}",
		 LC_PAYLOAD_TYPE, pb, kid, sg);
	expect_reject(&fx->a.trust, buf, strlen(buf), "envelope: duplicate key");
	snprintf(buf, sizeof buf,
		 "{\"payloadType\":\"x\",\"payloadType\":\"%s\",\"payload\":\"%s\",\"signatures\":[{\"keyid\":\"%s\",\"sig\":\"%s\"}]}",
		 LC_PAYLOAD_TYPE, pb, kid, sg);
	expect_reject(&fx->a.trust, buf, strlen(buf), "envelope: duplicate key");
	/* inside a signature */
	snprintf(buf, sizeof buf,
		 "{\"payloadType\":\"%s\",\"payload\":\"%s\",\"signatures\":[{\"keyid\":\"%s\",\"sig\":\"%s\",\"sig\":\"%s\"}]}",
		 LC_PAYLOAD_TYPE, pb, kid, sg, sg);
	expect_reject(&fx->a.trust, buf, strlen(buf), "envelope: duplicate key");
	/* the same bytes without the duplicate verify (control) */
	snprintf(buf, sizeof buf,
		 "{\"payloadType\":\"%s\",\"payload\":\"%s\",\"signatures\":[{\"keyid\":\"%s\",\"sig\":\"%s\"}]}",
		 LC_PAYLOAD_TYPE, pb, kid, sg);
	expect_ok(&fx->a.trust, buf, fx->a.sk.keyid);
	json_decref(j);
	free(env);
}

static void test_truncated(void **state)
{
	struct fx *fx = *state;
	size_t n;
	char *env = sign_policy(&fx->a, &n);
	/* every proper prefix is rejected (the trailing newline alone is optional) */
	size_t body = n - 1; /* without the '\n' */
	for (size_t cut = 0; cut < body; cut++)
		expect_reject(&fx->a.trust, env, cut, "envelope:");
	char err[512];
	assert_int_equal(verify(&fx->a.trust, env, body, err, sizeof err), 0);
	expect_reject(&fx->a.trust, env, n / 2, "envelope: not JSON (line 1:");
	/* trailing garbage */
	char *more = malloc(n + 8);
	memcpy(more, env, n);
	memcpy(more + n, "{}", 3);
	expect_reject(&fx->a.trust, more, n + 2, "envelope: not JSON");
	free(more);
	free(env);
}

static void test_oversized(void **state)
{
	struct fx *fx = *state;
	size_t big = (size_t)LC_ENVELOPE_MAX + 1000;
	char *buf = malloc(big);
	memset(buf, ' ', big);
	char *env = sign_policy(&fx->a, NULL);
	memcpy(buf, env, strlen(env)); /* a valid envelope padded with whitespace */
	char err[512];
	assert_int_equal(verify(&fx->a.trust, buf, big, err, sizeof err), -1);
	char want[128];
	snprintf(want, sizeof want, "envelope: file is %zu bytes, over the %d-byte cap", big, LC_ENVELOPE_MAX);
	assert_string_equal(err, want);
	assert_int_equal(verify(&fx->a.trust, buf, (size_t)LC_ENVELOPE_MAX + 1, err, sizeof err), -1);
	snprintf(want, sizeof want, "over the %d-byte cap", LC_ENVELOPE_MAX);
	assert_non_null(strstr(err, want));
	/* exactly at the cap is fine */
	assert_int_equal(verify(&fx->a.trust, buf, LC_ENVELOPE_MAX, err, sizeof err), 0);
	free(env);
	free(buf);
	/* sign refuses a payload whose envelope would be over the cap */
	size_t pl = (size_t)LC_ENVELOPE_MAX;
	char *payload = calloc(1, pl);
	char *out = NULL;
	size_t ol = 0;
	assert_int_equal(lc_dsse_sign(&fx->a.sk, payload, pl, &out, &ol, err, sizeof err), -1);
	assert_null(out);
	assert_non_null(strstr(err, "cap"));
	free(payload);
}

static void test_rotation_two_trusted(void **state)
{
	struct fx *fx = *state;
	struct lc_trust t;
	memset(&t, 0, sizeof t);
	char err[256], path[1024];
	snprintf(path, sizeof path, "%s/llmcap.pub", fx->a.dir);
	assert_int_equal(lc_trust_load(path, &t, err, sizeof err), 0);
	snprintf(path, sizeof path, "%s/llmcap.pub", fx->b.dir);
	assert_int_equal(lc_trust_load(path, &t, err, sizeof err), 0);
	assert_int_equal(t.n, 2);
	/* loading the same file again does not duplicate */
	assert_int_equal(lc_trust_load(path, &t, err, sizeof err), 0);
	assert_int_equal(t.n, 2);

	char *ea = sign_policy(&fx->a, NULL), *eb = sign_policy(&fx->b, NULL),
	     *ec = sign_policy(&fx->c, NULL);
	expect_ok(&t, ea, fx->a.sk.keyid);
	expect_ok(&t, eb, fx->b.sk.keyid);
	expect_reject(&t, ec, strlen(ec), "signature: no signature by a trusted key");

	/* one envelope, two signatures (old key and new key): verifies under either trust */
	json_t *ja = parse(ea), *jb = parse(eb);
	json_array_append(json_object_get(ja, "signatures"),
			  json_array_get(json_object_get(jb, "signatures"), 0));
	json_decref(jb);
	char *both = dump(ja);
	expect_ok(&t, both, fx->a.sk.keyid);
	expect_ok(&fx->a.trust, both, fx->a.sk.keyid);
	expect_ok(&fx->b.trust, both, fx->b.sk.keyid);
	expect_reject(&fx->c.trust, both, strlen(both), "signature: no signature by a trusted key");

	/* an unknown key's signature first is ignored when a trusted one verifies */
	json_t *jc = parse(ec);
	jb = parse(eb);
	json_array_append(json_object_get(jc, "signatures"),
			  json_array_get(json_object_get(jb, "signatures"), 0));
	json_decref(jb);
	char *cb = dump(jc);
	expect_ok(&fx->b.trust, cb, fx->b.sk.keyid);
	expect_reject(&fx->a.trust, cb, strlen(cb), "signature: no signature by a trusted key");

	/* a broken signature by a trusted key does not spoil a good one after it */
	json_t *jx = parse(both);
	json_t *s0 = json_array_get(json_object_get(jx, "signatures"), 0);
	unsigned char sig[64];
	unb64(json_string_value(json_object_get(s0, "sig")), sig, sizeof sig);
	sig[3] ^= 1;
	char *sb = b64(sig, 64);
	json_object_set_new(s0, "sig", json_string(sb));
	free(sb);
	char *brokenfirst = dump(jx);
	expect_ok(&t, brokenfirst, fx->b.sk.keyid);
	expect_reject(&fx->a.trust, brokenfirst, strlen(brokenfirst), "signature:");

	free(brokenfirst);
	free(cb);
	free(both);
	free(ea);
	free(eb);
	free(ec);
}

static void test_keyid_mismatch(void **state)
{
	struct fx *fx = *state;
	struct lc_trust t = fx->a.trust;
	assert_int_equal(lc_trust_add_pub(&t, fx->b.sk.pk), 0);
	assert_int_equal(t.n, 2);
	/* signed by A, labelled as B: must not count even though A is trusted */
	char *bad = craft(LC_PAYLOAD_TYPE, LC_PAYLOAD_TYPE, &fx->a, fx->b.sk.keyid);
	expect_reject(&t, bad, strlen(bad), "signature: no signature by a trusted key");
	free(bad);
	/* signed by C (untrusted), labelled as A */
	bad = craft(LC_PAYLOAD_TYPE, LC_PAYLOAD_TYPE, &fx->c, fx->a.sk.keyid);
	expect_reject(&t, bad, strlen(bad), "signature: no signature by a trusted key");
	free(bad);
	/* signed by A with an uppercase keyid: keyids are exact lowercase hex */
	char up[65];
	for (int i = 0; i < 65; i++)
		up[i] = (char)((fx->a.sk.keyid[i] >= 'a' && fx->a.sk.keyid[i] <= 'f')
				       ? fx->a.sk.keyid[i] - 32 : fx->a.sk.keyid[i]);
	bad = craft(LC_PAYLOAD_TYPE, LC_PAYLOAD_TYPE, &fx->a, up);
	expect_reject(&t, bad, strlen(bad), "signature: no signature by a trusted key");
	free(bad);
	/* correctly labelled: fine */
	bad = craft(LC_PAYLOAD_TYPE, LC_PAYLOAD_TYPE, &fx->a, fx->a.sk.keyid);
	expect_ok(&t, bad, fx->a.sk.keyid);
	free(bad);
}

static void test_keygen_refuses_overwrite(void **state)
{
	struct fx *fx = *state;
	char path[1024], err[512] = "";
	snprintf(path, sizeof path, "%s/llmcap.key", fx->a.dir);
	struct lc_signkey before, after;
	assert_int_equal(lc_signkey_load(path, &before, err, sizeof err), 0);
	assert_int_equal(lc_keygen(fx->a.dir, err, sizeof err), -1);
	assert_non_null(strstr(err, "refusing to overwrite"));
	assert_int_equal(lc_signkey_load(path, &after, err, sizeof err), 0);
	assert_memory_equal(before.sk, after.sk, 64);
	lc_signkey_wipe(&before);
	lc_signkey_wipe(&after);

	/* only the .pub present: still refuses, and creates no secret key */
	char dir[512];
	snprintf(dir, sizeof dir, "%s/onlypub", fx->root);
	assert_int_equal(mkdir(dir, 0700), 0);
	snprintf(path, sizeof path, "%s/llmcap.pub", dir);
	FILE *f = fopen(path, "w");
	fputs("x\n", f);
	fclose(f);
	assert_int_equal(lc_keygen(dir, err, sizeof err), -1);
	snprintf(path, sizeof path, "%s/llmcap.key", dir);
	assert_int_equal(access(path, F_OK), -1);

	/* a symlink in place of the key is not followed */
	snprintf(dir, sizeof dir, "%s/link", fx->root);
	assert_int_equal(mkdir(dir, 0700), 0);
	snprintf(path, sizeof path, "%s/llmcap.key", dir);
	char target[1024];
	snprintf(target, sizeof target, "%s/target", fx->root);
	assert_int_equal(symlink(target, path), 0);
	assert_int_equal(lc_keygen(dir, err, sizeof err), -1);
	assert_int_equal(access(target, F_OK), -1);
}

static void test_key_file_modes(void **state)
{
	struct fx *fx = *state;
	char dir[512], path[1024], err[256];
	snprintf(dir, sizeof dir, "%s/new/nested/keys", fx->root);
	mode_t old = umask(0);
	int rc = lc_keygen(dir, err, sizeof err);
	umask(old);
	assert_int_equal(rc, 0);
	struct stat st;
	assert_int_equal(stat(dir, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0700);
	snprintf(path, sizeof path, "%s/llmcap.key", dir);
	assert_int_equal(stat(path, &st), 0);
	assert_true(S_ISREG(st.st_mode));
	assert_int_equal(st.st_mode & 07777, 0600);
	/* secret file: one line, the header's format */
	char line[256];
	FILE *f = fopen(path, "r");
	assert_non_null(fgets(line, sizeof line, f));
	fclose(f);
	assert_int_equal(strncmp(line, "llmcap-ed25519-secret ", 22), 0);
	assert_int_equal(strlen(line), 22 + 88 + 1);
	sodium_memzero(line, sizeof line);
	/* public file */
	snprintf(path, sizeof path, "%s/llmcap.pub", dir);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 0077 & ~0044, 0); /* not writable by others */
	f = fopen(path, "r");
	assert_non_null(fgets(line, sizeof line, f));
	fclose(f);
	assert_int_equal(strncmp(line, "llmcap-ed25519 ", 15), 0);
	assert_int_equal(strlen(line), 15 + 44 + 1 + 64 + 1);
	/* existing directory keeps its mode */
	snprintf(dir, sizeof dir, "%s/existing", fx->root);
	assert_int_equal(mkdir(dir, 0755), 0);
	assert_int_equal(chmod(dir, 0755), 0);
	assert_int_equal(lc_keygen(dir, err, sizeof err), 0);
	assert_int_equal(stat(dir, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0755);
	snprintf(path, sizeof path, "%s/llmcap.key", dir);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0600);
}

static void write_file(const char *path, const char *s)
{
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	fputs(s, f);
	fclose(f);
}

static char *slurp(const char *path)
{
	static char buf[1024];
	FILE *f = fopen(path, "r");
	assert_non_null(f);
	size_t n = fread(buf, 1, sizeof buf - 1, f);
	fclose(f);
	buf[n] = '\0';
	return buf;
}

static void test_trust_file(void **state)
{
	struct fx *fx = *state;
	char pa[1024], pb[1024], path[1024], content[2048], err[512];
	snprintf(pa, sizeof pa, "%s/llmcap.pub", fx->a.dir);
	snprintf(pb, sizeof pb, "%s/llmcap.pub", fx->b.dir);
	char la[256], lb[256];
	strcpy(la, slurp(pa));
	strcpy(lb, slurp(pb));
	/* several keys, comments, blank lines, CRLF */
	snprintf(content, sizeof content, "# org keys\n\n%s  \r\n# next\n%s", la, lb);
	snprintf(path, sizeof path, "%s/multi.pub", fx->root);
	write_file(path, content);
	struct lc_trust t;
	memset(&t, 0, sizeof t);
	assert_int_equal(lc_trust_load(path, &t, err, sizeof err), 0);
	assert_int_equal(t.n, 2);
	char *eb = sign_policy(&fx->b, NULL);
	expect_ok(&t, eb, fx->b.sk.keyid);
	free(eb);

	/* a keyid that does not belong to the key: the whole file is refused, t unchanged */
	char tampered[256];
	strcpy(tampered, lb);
	char *sp = strrchr(tampered, ' ');
	sp[1] = sp[1] == '0' ? '1' : '0';
	snprintf(content, sizeof content, "%s%s", la, tampered);
	write_file(path, content);
	memset(&t, 0, sizeof t);
	assert_int_equal(lc_trust_load(path, &t, err, sizeof err), -1);
	assert_non_null(strstr(err, "line 2"));
	assert_non_null(strstr(err, "keyid"));
	assert_int_equal(t.n, 0);

	/* empty / comment-only file */
	write_file(path, "# nothing\n\n");
	assert_int_equal(lc_trust_load(path, &t, err, sizeof err), -1);
	assert_non_null(strstr(err, "no public key"));
	/* garbage */
	write_file(path, "ssh-ed25519 AAAA user@host\n");
	assert_int_equal(lc_trust_load(path, &t, err, sizeof err), -1);
	assert_int_equal(strncmp(err, "trust:", 6), 0);
	write_file(path, "llmcap-ed25519 AAAA\n");
	assert_int_equal(lc_trust_load(path, &t, err, sizeof err), -1);
	/* a secret key given as trust */
	snprintf(path, sizeof path, "%s/llmcap.key", fx->a.dir);
	assert_int_equal(lc_trust_load(path, &t, err, sizeof err), -1);
	assert_non_null(strstr(err, "secret key"));
	/* missing file */
	snprintf(path, sizeof path, "%s/nope.pub", fx->root);
	assert_int_equal(lc_trust_load(path, &t, err, sizeof err), -1);
	assert_int_equal(strncmp(err, "trust:", 6), 0);
	assert_int_equal(t.n, 0);

	/* capacity */
	memset(&t, 0, sizeof t);
	unsigned char pk[32];
	for (int i = 0; i < LC_TRUST_MAX; i++) {
		memset(pk, i + 1, sizeof pk);
		assert_int_equal(lc_trust_add_pub(&t, pk), 0);
	}
	memset(pk, 1, sizeof pk);
	assert_int_equal(lc_trust_add_pub(&t, pk), 0); /* duplicate: no-op */
	memset(pk, 0xee, sizeof pk);
	assert_int_equal(lc_trust_add_pub(&t, pk), -1);
	assert_int_equal(t.n, LC_TRUST_MAX);
}

static void test_signkey_load_errors(void **state)
{
	struct fx *fx = *state;
	char path[1024], err[512];
	struct lc_signkey k;
	snprintf(path, sizeof path, "%s/llmcap.pub", fx->a.dir);
	assert_int_equal(lc_signkey_load(path, &k, err, sizeof err), -1);
	assert_non_null(strstr(err, "public key"));
	snprintf(path, sizeof path, "%s/none.key", fx->root);
	assert_int_equal(lc_signkey_load(path, &k, err, sizeof err), -1);
	/* secret key whose public half does not match its seed */
	unsigned char sk[64];
	memcpy(sk, fx->a.sk.sk, 32);
	memcpy(sk + 32, fx->b.sk.pk, 32);
	char *sb = b64(sk, 64), line[256];
	snprintf(line, sizeof line, "llmcap-ed25519-secret %s\n", sb);
	free(sb);
	snprintf(path, sizeof path, "%s/mixed.key", fx->root);
	write_file(path, line);
	assert_int_equal(lc_signkey_load(path, &k, err, sizeof err), -1);
	assert_non_null(strstr(err, "corrupt"));
	write_file(path, "llmcap-ed25519-secret AAAA\n");
	assert_int_equal(lc_signkey_load(path, &k, err, sizeof err), -1);
	write_file(path, "");
	assert_int_equal(lc_signkey_load(path, &k, err, sizeof err), -1);
	sodium_memzero(sk, sizeof sk);
	sodium_memzero(line, sizeof line);
}

static void test_wipe(void **state)
{
	struct fx *fx = *state;
	struct lc_signkey k = fx->a.sk;
	lc_signkey_wipe(&k);
	unsigned char zero[sizeof k];
	memset(zero, 0, sizeof zero);
	assert_memory_equal(&k, zero, sizeof k);
	lc_signkey_wipe(NULL);
}

static void test_too_many_signatures(void **state)
{
	struct fx *fx = *state;
	char *env = sign_policy(&fx->a, NULL);
	json_t *j = parse(env);
	json_t *arr = json_object_get(j, "signatures");
	json_t *s0 = json_array_get(arr, 0);
	for (int i = 0; i < 40; i++)
		json_array_append(arr, s0);
	char *bad = dump(j);
	expect_reject(&fx->a.trust, bad, strlen(bad), "envelope:");
	free(bad);
	free(env);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_roundtrip),
		cmocka_unit_test(test_envelope_format_and_pae),
		cmocka_unit_test(test_flipped_payload_byte),
		cmocka_unit_test(test_flipped_sig_byte),
		cmocka_unit_test(test_untrusted_key),
		cmocka_unit_test(test_wrong_payload_type),
		cmocka_unit_test(test_type_bound_by_pae),
		cmocka_unit_test(test_extra_field),
		cmocka_unit_test(test_missing_and_mistyped_fields),
		cmocka_unit_test(test_bad_base64),
		cmocka_unit_test(test_duplicate_keys),
		cmocka_unit_test(test_truncated),
		cmocka_unit_test(test_oversized),
		cmocka_unit_test(test_rotation_two_trusted),
		cmocka_unit_test(test_keyid_mismatch),
		cmocka_unit_test(test_keygen_refuses_overwrite),
		cmocka_unit_test(test_key_file_modes),
		cmocka_unit_test(test_trust_file),
		cmocka_unit_test(test_signkey_load_errors),
		cmocka_unit_test(test_wipe),
		cmocka_unit_test(test_too_many_signatures),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
