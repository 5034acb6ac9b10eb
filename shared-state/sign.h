/* sign.h - Ed25519 keys (libsodium) and the DSSE envelope around a policy.
 *
 * Envelope: {"payloadType": LC_PAYLOAD_TYPE, "payload": base64(exact bytes),
 *            "signatures": [{"keyid": hex(sha256(pub)), "sig": base64(Ed25519(PAE))}]}
 * PAE(type, body) = "DSSEv1" SP LEN(type) SP type SP LEN(body) SP body  (LEN in ASCII decimal)
 *
 * Key files (text, one line each):
 *   secret  DIR/llmcap.key  mode 0600  "llmcap-ed25519-secret <base64 of 64-byte sk>\n"
 *   public  DIR/llmcap.pub             "llmcap-ed25519 <base64 of 32-byte pk> <keyid-hex>\n"
 * A trust file may hold several public-key lines (key rotation); blank lines
 * and lines starting with '#' are ignored. Several --trust files add up.
 */
#ifndef LC_SIGN_H
#define LC_SIGN_H

#include <stddef.h>

#include "util.h"

#define LC_PAYLOAD_TYPE "application/vnd.llmcap.policy+json"
#define LC_ENVELOPE_MAX (64 * 1024 * 1024)    /* size cap checked before anything else (a 100,000-key policy is ~20 MiB) */
#define LC_TRUST_MAX 16

struct lc_signkey {
	unsigned char sk[64];
	unsigned char pk[32];
	char keyid[65];
};

struct lc_trust {
	size_t n;
	struct {
		unsigned char pk[32];
		char keyid[65];
	} keys[LC_TRUST_MAX];
};

/* All return 0 on success, -1 with a one-line reason in err. */
int lc_keygen(const char *dir, char *err, size_t errlen);  /* refuses to overwrite an existing key */
int lc_signkey_load(const char *path, struct lc_signkey *out, char *err, size_t errlen);
void lc_signkey_wipe(struct lc_signkey *k);
int lc_trust_load(const char *path, struct lc_trust *t, char *err, size_t errlen); /* appends */
int lc_trust_add_pub(struct lc_trust *t, const unsigned char pk[32]);
/* envelope_out: malloc'd, NUL-terminated JSON, caller frees. */
int lc_dsse_sign(const struct lc_signkey *k, const void *payload, size_t len,
		 char **envelope_out, size_t *envelope_len, char *err, size_t errlen);
/* Checks, in order: size cap, envelope shape (exact fields, payloadType), at
 * least one signature by a trusted key (a keyid that does not match its key
 * does not count). payload_out: malloc'd exact payload bytes (NUL-terminated
 * for convenience), caller frees. signer_keyid (optional, 65 bytes) gets the
 * keyid that verified. */
int lc_dsse_verify(const struct lc_trust *t, const void *envelope, size_t len,
		   unsigned char **payload_out, size_t *payload_len, char *signer_keyid,
		   char *err, size_t errlen);

#endif
