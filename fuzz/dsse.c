/* dsse.c - fuzz target: DSSE envelope verification (lc_dsse_verify), and the
 * policy parser on what verifies, as `llmcap apply` and the host run them.
 *
 * Input: an envelope. The trusted key is made from a fixed seed (below), so a
 * seed envelope signed with it (fuzz/corpus/dsse/, made with lc_dsse_sign and
 * this key) reaches the payload checks. Every input is also signed as a payload
 * and verified back: the round trip must give the same bytes.
 */
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "policy.h"
#include "sign.h"

/* the fuzz key's seed: not a secret, only the corpus's envelopes are signed with it */
static const unsigned char seed[crypto_sign_SEEDBYTES] = "llmcap fuzz key, not a secret!!";
static struct lc_signkey key;
static struct lc_trust trust;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	unsigned char h[crypto_hash_sha256_BYTES];
	(void)argc;
	(void)argv;
	if (sodium_init() < 0)
		abort();
	crypto_sign_seed_keypair(key.pk, key.sk, seed);
	crypto_hash_sha256(h, key.pk, sizeof key.pk);
	sodium_bin2hex(key.keyid, sizeof key.keyid, h, sizeof h);
	if (lc_trust_add_pub(&trust, key.pk) != 0)
		abort();
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n)
{
	unsigned char *payload = NULL;
	char *env = NULL, signer[65], err[512];
	size_t plen = 0, elen = 0;

	if (lc_dsse_verify(&trust, d, n, &payload, &plen, signer, err, sizeof err) == 0) {
		struct lc_policy *p = NULL;
		FUZZ_CHECK(payload && payload[plen] == 0);
		FUZZ_CHECK(strcmp(signer, key.keyid) == 0);
		if (lc_policy_parse(payload, plen, &p, err, sizeof err) == 0)
			lc_policy_free(p);
		free(payload);
	} else {
		FUZZ_CHECK(memchr(err, 0, sizeof err) && err[0]);
	}

	if (n == 0)
		return 0;   /* an empty payload is refused by design */
	payload = NULL;
	FUZZ_CHECK(lc_dsse_sign(&key, d, n, &env, &elen, err, sizeof err) == 0);
	FUZZ_CHECK(env && strlen(env) == elen);
	FUZZ_CHECK(lc_dsse_verify(&trust, env, elen, &payload, &plen, signer, err, sizeof err) == 0);
	FUZZ_CHECK(plen == n && (n == 0 || memcmp(payload, d, n) == 0));
	free(payload);
	free(env);
	return 0;
}
