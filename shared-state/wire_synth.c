/* wire_synth.c - the responses llmcap writes itself (wire.h lc_synth_*):
 * 400/401/429/503 in the provider's error shape, as a JSON body (the SDK) or
 * a complete HTTP/1.1 response (the preload).
 */
#include "wire_int.h"

#include <stdlib.h>

struct synth_kind {
	int status;
	const char *reason;
	const char *oa_type, *oa_code;
	const char *an_type;
};

static const struct synth_kind SYNTH[] = {
	{400, "Bad Request", "invalid_request_error", "llmcap_bad_request", "invalid_request_error"},
	{401, "Unauthorized", "invalid_request_error", "invalid_api_key", "authentication_error"},
	{429, "Too Many Requests", "insufficient_quota", "llmcap_limit_reached", "rate_limit_error"},
	{503, "Service Unavailable", "server_error", "llmcap_unavailable", "api_error"},
};

static const struct synth_kind *synth_kind(int status)
{
	size_t i;

	for (i = 0; i < sizeof(SYNTH) / sizeof(SYNTH[0]); i++)
		if (SYNTH[i].status == status)
			return &SYNTH[i];
	return NULL;
}

/* jansson refuses invalid UTF-8; a message is ours to show, so replace the
 * bad bytes instead of failing the whole response. Caller frees. */
static char *utf8_clean(const char *s)
{
	size_t n = strlen(s), i = 0, k;
	char *out = malloc(n + 1);

	if (!out)
		return NULL;
	while (i < n) {
		k = lc_utf8_len((const unsigned char *)s + i, n - i);
		if (k == 0) {
			out[i++] = '?';
			continue;
		}
		memcpy(out + i, s + i, k);
		i += k;
	}
	out[n] = '\0';
	return out;
}

static char *synth_json(enum lc_format fmt, const struct synth_kind *k, const char *message)
{
	char *msg = utf8_clean(message ? message : "");
	json_t *root = NULL;
	char *s = NULL;

	if (!msg)
		return NULL;
	if (fmt == LC_FMT_ANTHROPIC)
		root = json_pack("{s:s, s:{s:s, s:s}}", "type", "error", "error", "type", k->an_type,
				 "message", msg);
	else if (fmt == LC_FMT_OPENAI)
		root = json_pack("{s:{s:s, s:s, s:n, s:s}}", "error", "message", msg, "type", k->oa_type,
				 "param", "code", k->oa_code);
	if (root)
		s = json_dumps(root, JSON_COMPACT);
	json_decref(root);
	free(msg);
	return s;
}

int lc_synth_body(enum lc_format fmt, int status, const char *message, struct lc_buf *out)
{
	const struct synth_kind *k = synth_kind(status);
	char *s;
	int rc;

	if (!k || !(s = synth_json(fmt, k, message)))
		return -1;
	rc = lc_buf_addstr(out, s);
	free(s);
	return rc;
}

int lc_synth_response(enum lc_format fmt, int status, const char *message, const char *limit,
		      int64_t retry_after, bool should_retry, struct lc_buf *out)
{
	const struct synth_kind *k = synth_kind(status);
	struct lc_buf b;
	char *body = NULL;
	int rc = -1;

	lc_buf_init(&b, LC_WIRE_MAX_HEAD + strlen(message ? message : "") * 6 + 1024);
	if (!k || !(body = synth_json(fmt, k, message)))
		goto out;
	if (lc_buf_printf(&b, "HTTP/1.1 %d %s\r\ncontent-type: application/json\r\ncontent-length: %zu\r\n",
			  k->status, k->reason, strlen(body)))
		goto out;
	if ((status == 429 || status == 503) &&
	    lc_buf_printf(&b, "retry-after: %lld\r\n", (long long)(retry_after < 1 ? 1 : retry_after)))
		goto out;
	if (!should_retry && lc_buf_addstr(&b, "x-should-retry: false\r\n"))
		goto out;
	if (limit && *limit) {
		/* the name comes from the policy: never let it break the header block */
		char v[256];
		size_t i;

		for (i = 0; limit[i] && i < sizeof(v) - 1; i++) {
			unsigned char c = (unsigned char)limit[i];
			v[i] = (c < 0x20 || c >= 0x7f) ? '_' : (char)c;
		}
		v[i] = '\0';
		if (lc_buf_printf(&b, "x-llmcap-limit: %s\r\n", v))
			goto out;
	}
	if (lc_buf_addstr(&b, "connection: close\r\n\r\n") || lc_buf_addstr(&b, body))
		goto out;
	rc = lc_buf_add(out, b.data, b.len);
out:
	free(body);
	lc_buf_free(&b);
	return rc;
}
