/* webhook.h - the webhook contract shared by the host agent and the server:
 * x-llmcap-signature: t=UNIX,v1=hex(HMAC-SHA256(secret, "t.body")), and event filters. */
#ifndef LC_WEBHOOK_H
#define LC_WEBHOOK_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* out: "t=<t>,v1=<hex>" (at least 100 bytes) */
void lc_webhook_sign(const char *secret, int64_t t, const char *body, size_t len, char *out, size_t outlen);
/* Does webhook object `wh` ({"url","secret","events"?}) want `event`? No "events" or "*" = all. */
bool lc_webhook_wants(json_t *wh, const char *event);

#endif
