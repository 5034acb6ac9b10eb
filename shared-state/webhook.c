/* webhook.c - signing and filtering of webhook deliveries (agent and server share them). */
#include "webhook.h"

#include <inttypes.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>

#include "util.h"

void lc_webhook_sign(const char *secret, int64_t t, const char *body, size_t len, char *out, size_t outlen)
{
	crypto_auth_hmacsha256_state st;
	unsigned char mac[crypto_auth_hmacsha256_BYTES];
	char ts[32], hex[2 * crypto_auth_hmacsha256_BYTES + 1];
	int n = snprintf(ts, sizeof ts, "%" PRId64 ".", t);

	crypto_auth_hmacsha256_init(&st, (const unsigned char *)secret, strlen(secret));
	crypto_auth_hmacsha256_update(&st, (const unsigned char *)ts, (unsigned long long)n);
	crypto_auth_hmacsha256_update(&st, (const unsigned char *)body, len);
	crypto_auth_hmacsha256_final(&st, mac);
	lc_hex(mac, sizeof mac, hex);
	snprintf(out, outlen, "t=%" PRId64 ",v1=%s", t, hex);
	sodium_memzero(&st, sizeof st);
}

bool lc_webhook_wants(json_t *wh, const char *event)
{
	json_t *ev = json_object_get(wh, "events"), *e;
	size_t i;

	if (!ev)
		return true;  /* no filter: everything */
	json_array_foreach(ev, i, e) {
		const char *s = json_string_value(e);

		if (s && (!strcmp(s, "*") || !strcmp(s, event)))
			return true;
	}
	return false;
}
