/* llmcap.c - the public SDK: a thin layer over the engine (shared-state/). */
#include "llmcap.h"

#include <curl/curl.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "engine.h"
#include "util.h"
#include "wire.h"

struct llmcap {
	int unused;
};

struct llmcap_call {
	struct lc_decision d;
	bool settled;
	struct lc_buf body;      /* synthetic body (DENY) */
	struct lc_buf response;  /* synthetic HTTP response (DENY) */
};

LLMCAP_EXPORT const char *llmcap_strerror(llmcap_err err)
{
	switch (err) {
	case LLMCAP_OK: return "ok";
	case LLMCAP_E_INVAL: return "invalid argument";
	case LLMCAP_E_NOMEM: return "out of memory";
	case LLMCAP_E_STORE: return "the llmcap state store is unusable";
	case LLMCAP_E_NOPOLICY: return "no llmcap policy installed";
	case LLMCAP_E_STATE: return "the call is not in a state that allows this";
	case LLMCAP_E_RESPONSE: return "the response could not be read for usage";
	case LLMCAP_E_CURL: return "libcurl transfer failed";
	}
	return "unknown llmcap error";
}

LLMCAP_EXPORT const char *llmcap_version(void)
{
	return LLMCAP_VERSION_STRING;
}

LLMCAP_EXPORT unsigned llmcap_version_num(void)
{
	return LLMCAP_VERSION_NUM;
}

LLMCAP_EXPORT llmcap_err llmcap_open(llmcap **out, const char *state_dir)
{
	llmcap *lc;

	if (!out)
		return LLMCAP_E_INVAL;
	lc = calloc(1, sizeof(*lc));
	if (!lc)
		return LLMCAP_E_NOMEM;
	if (state_dir)
		lc_state_dir_set(state_dir);
	*out = lc;
	return LLMCAP_OK;
}

LLMCAP_EXPORT void llmcap_close(llmcap *lc)
{
	free(lc);
}

/* Split a URL into host, port, path with libcurl's own parser. */
static int split_url(const char *url, char *host, size_t hn, int *port, char *path, size_t pn)
{
	CURLU *u = curl_url();
	char *h = NULL, *p = NULL, *q = NULL, *portstr = NULL;
	int rc = -1;

	if (!u)
		return -1;
	if (curl_url_set(u, CURLUPART_URL, url, 0) || curl_url_get(u, CURLUPART_HOST, &h, 0) ||
	    curl_url_get(u, CURLUPART_PATH, &p, 0))
		goto out;
	curl_url_get(u, CURLUPART_QUERY, &q, 0);
	if (curl_url_get(u, CURLUPART_PORT, &portstr, CURLU_DEFAULT_PORT) == 0 &&
	    lc_parse_port(portstr, strlen(portstr), port))
		goto out;
	/* IPv6 literals come back bracketed; the policy names them bare */
	if (h[0] == '[') {
		size_t n = strlen(h);

		snprintf(host, hn, "%.*s", (int)(n - 2), h + 1);
	} else
		snprintf(host, hn, "%s", h);
	snprintf(path, pn, "%s%s%s", p, q ? "?" : "", q ? q : "");
	rc = 0;
out:
	curl_free(h);
	curl_free(p);
	curl_free(q);
	curl_free(portstr);
	curl_url_cleanup(u);
	return rc;
}

LLMCAP_EXPORT llmcap_err llmcap_admit(llmcap *lc, const char *url, const char *const *headers, const void *body,
				      size_t body_len, llmcap_call **out)
{
	char host[256], path[2048];
	int port = 0;
	struct lc_buf raw;
	struct lc_reqparse rp;
	llmcap_call *call;
	size_t used;
	int rc;

	if (!lc || !url || !out || (body_len && !body))
		return LLMCAP_E_INVAL;
	if (split_url(url, host, sizeof(host), &port, path, sizeof(path)))
		return LLMCAP_E_INVAL;
	call = calloc(1, sizeof(*call));
	if (!call)
		return LLMCAP_E_NOMEM;
	lc_buf_init(&call->body, 1 << 16);
	lc_buf_init(&call->response, 1 << 16);
	/* Present the request to the engine exactly as it goes on the wire, so the SDK and the
	 * preload identify keys, customers and models by the same code. */
	lc_buf_init(&raw, LC_WIRE_MAX_HEAD + LC_WIRE_MAX_BODY);
	errno = 0;  /* a buffer that fails says why: E2BIG (the caller's request is too big) or ENOMEM */
	rc = lc_buf_printf(&raw, "POST %s HTTP/1.1\r\nHost: %s\r\n", path, host);
	for (size_t i = 0; headers && headers[i] && !rc; i++) {
		if (!strncasecmp(headers[i], "content-length:", 15) || !strncasecmp(headers[i], "transfer-encoding:", 18) ||
		    !strncasecmp(headers[i], "host:", 5))
			continue;
		rc = lc_buf_printf(&raw, "%s\r\n", headers[i]);
	}
	if (!rc)
		rc = lc_buf_printf(&raw, "Content-Length: %zu\r\n\r\n", body_len);
	if (!rc)
		rc = lc_buf_add(&raw, body, body_len);
	if (rc) {
		lc_buf_free(&raw);
		llmcap_call_free(call);
		return errno == ENOMEM ? LLMCAP_E_NOMEM : LLMCAP_E_INVAL;
	}
	lc_reqparse_init(&rp);
	rc = lc_reqparse_feed(&rp, raw.data, raw.len, &used);
	lc_buf_free(&raw);
	if (rc != LC_PARSE_DONE) {
		lc_reqparse_free(&rp);
		llmcap_call_free(call);
		return errno == ENOMEM ? LLMCAP_E_NOMEM : LLMCAP_E_INVAL;
	}
	rc = lc_admit_http(host, port, &rp, &call->d);
	lc_reqparse_free(&rp);
	/* Store errors come back as a decision (a 503 DENY when fail-closed); running out of memory
	 * is the caller's to know, never an empty DENY. */
	if (rc == ENOMEM ||
	    (call->d.verdict == LC_DENY &&
	     (lc_synth_body(call->d.format, call->d.status, call->d.message, &call->body) ||
	      lc_synth_response(call->d.format, call->d.status, call->d.message, call->d.limit,
				call->d.retry_after, call->d.should_retry, &call->response)))) {
		llmcap_call_free(call);
		return LLMCAP_E_NOMEM;
	}
	*out = call;
	return LLMCAP_OK;
}

LLMCAP_EXPORT llmcap_verdict llmcap_call_verdict(const llmcap_call *call)
{
	return call ? (llmcap_verdict)call->d.verdict : LLMCAP_PASS;
}

LLMCAP_EXPORT int llmcap_call_status(const llmcap_call *call)
{
	return call && call->d.verdict == LC_DENY ? call->d.status : 0;
}

LLMCAP_EXPORT const char *llmcap_call_message(const llmcap_call *call)
{
	return call ? call->d.message : "";
}

LLMCAP_EXPORT const char *llmcap_call_limit(const llmcap_call *call)
{
	return call ? call->d.limit : "";
}

LLMCAP_EXPORT long llmcap_call_retry_after(const llmcap_call *call)
{
	return call ? (long)call->d.retry_after : 0;
}

LLMCAP_EXPORT int llmcap_call_should_retry(const llmcap_call *call)
{
	return call ? call->d.should_retry : 1;
}

LLMCAP_EXPORT const char *llmcap_call_body(const llmcap_call *call, size_t *len)
{
	if (len)
		*len = call && call->body.data ? call->body.len : 0;
	return call && call->body.data ? call->body.data : "";
}

LLMCAP_EXPORT const char *llmcap_call_response(const llmcap_call *call, size_t *len)
{
	if (len)
		*len = call && call->response.data ? call->response.len : 0;
	return call && call->response.data ? call->response.data : "";
}

static llmcap_err settle(llmcap_call *call, const struct lc_usage *u, int status)
{
	int rc;

	if (!call)
		return LLMCAP_E_INVAL;
	if (call->d.verdict != LC_ALLOW || call->settled)
		return LLMCAP_E_STATE;
	call->settled = true;
	rc = lc_settle(call->d.ticket, u, status);
	return rc == 0 || rc == LC_E_NOTFOUND ? LLMCAP_OK : LLMCAP_E_STORE;
}

LLMCAP_EXPORT llmcap_err llmcap_settle_usage(llmcap_call *call, int http_status, long long input,
					     long long cached_input, long long output)
{
	struct lc_usage u = {.present = true};

	if (input < 0 || cached_input < 0 || output < 0)
		return LLMCAP_E_INVAL;
	u.input = input;
	u.cached_input = cached_input;
	u.output = output;
	return settle(call, &u, http_status);
}

LLMCAP_EXPORT llmcap_err llmcap_settle_response(llmcap_call *call, int http_status, const char *content_type,
						const void *body, size_t len)
{
	struct lc_usage u = {0};
	bool sse = content_type && strcasestr(content_type, "text/event-stream");
	llmcap_err e;
	int bad = 0;

	if (!call || (len && !body))
		return LLMCAP_E_INVAL;
	if (!content_type && ((len >= 5 && !memcmp(body, "data:", 5)) || (len >= 6 && !memcmp(body, "event:", 6))))
		sse = true;
	if (sse) {
		struct lc_sse s;

		lc_sse_init(&s);
		bad = lc_sse_feed(&s, body, len) != 0;
		lc_sse_finish(&s);  /* a final event without its blank line */
		u = s.usage;
		lc_sse_free(&s);
	} else if (len) {
		bad = lc_usage_from_json(body, len, &u) != 0;
	}
	e = settle(call, &u, http_status);
	return e == LLMCAP_OK && bad && !u.present && http_status < 400 ? LLMCAP_E_RESPONSE : e;
}

LLMCAP_EXPORT void llmcap_call_free(llmcap_call *call)
{
	if (!call)
		return;
	if (call->d.verdict == LC_ALLOW && !call->settled)
		lc_settle(call->d.ticket, NULL, 0);  /* never leak a reservation: charge the estimate */
	lc_buf_free(&call->body);
	lc_buf_free(&call->response);
	free(call);
}

LLMCAP_EXPORT void llmcap_free(void *p)
{
	free(p);
}

/* ---- libcurl convenience ------------------------------------------------------ */

struct sink {
	struct lc_buf body;
	char ctype[256];
};

static size_t on_body(char *p, size_t sz, size_t n, void *ud)
{
	struct sink *s = ud;

	return lc_buf_add(&s->body, p, sz * n) ? 0 : sz * n;
}

static size_t on_header(char *p, size_t sz, size_t n, void *ud)
{
	struct sink *s = ud;
	size_t len = sz * n;

	if (len > 13 && !strncasecmp(p, "content-type:", 13)) {
		size_t off = 13;

		while (off < len && (p[off] == ' ' || p[off] == '\t'))
			off++;
		snprintf(s->ctype, sizeof(s->ctype), "%.*s", (int)(len - off), p + off);
		s->ctype[strcspn(s->ctype, "\r\n")] = '\0';
	}
	return len;
}

LLMCAP_EXPORT llmcap_err llmcap_curl_post(llmcap *lc, void *curl_easy, const char *url, const void *headers,
					  const void *body, size_t body_len, long *status, char **response,
					  size_t *response_len, llmcap_verdict *verdict)
{
	const struct curl_slist *h;
	const char **hv = NULL;
	size_t nh = 0, i = 0;
	llmcap_call *call = NULL;
	struct sink s;
	llmcap_err e;
	CURLcode cc;

	if (!lc || !curl_easy || !url || !status)
		return LLMCAP_E_INVAL;
	for (h = headers; h; h = h->next)
		nh++;
	hv = calloc(nh + 1, sizeof(*hv));
	if (!hv)
		return LLMCAP_E_NOMEM;
	for (h = headers; h; h = h->next)
		hv[i++] = h->data;
	e = llmcap_admit(lc, url, hv, body, body_len, &call);
	free(hv);
	if (e)
		return e;
	if (verdict)
		*verdict = llmcap_call_verdict(call);
	lc_buf_init(&s.body, LC_WIRE_MAX_BODY);
	s.ctype[0] = '\0';
	if (call->d.verdict == LC_DENY) {
		*status = call->d.status;
		if (response && lc_buf_add(&s.body, call->body.data ? call->body.data : "", call->body.len)) {
			llmcap_call_free(call);
			return LLMCAP_E_NOMEM;
		}
		if (response_len)
			*response_len = call->body.len;
		llmcap_call_free(call);
		goto out;
	}
	curl_easy_setopt(curl_easy, CURLOPT_URL, url);
	curl_easy_setopt(curl_easy, CURLOPT_HTTPHEADER, headers);
	curl_easy_setopt(curl_easy, CURLOPT_POSTFIELDS, body);
	curl_easy_setopt(curl_easy, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)body_len);
	curl_easy_setopt(curl_easy, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(curl_easy, CURLOPT_WRITEDATA, &s);
	curl_easy_setopt(curl_easy, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(curl_easy, CURLOPT_HEADERDATA, &s);
	cc = curl_easy_perform(curl_easy);
	/* &s dies with this frame: leave the handle's callbacks at libcurl's defaults (libcurl cannot
	 * tell us what the caller had set), never pointing here */
	curl_easy_setopt(curl_easy, CURLOPT_WRITEFUNCTION, NULL);
	curl_easy_setopt(curl_easy, CURLOPT_WRITEDATA, stdout);
	curl_easy_setopt(curl_easy, CURLOPT_HEADERFUNCTION, NULL);
	curl_easy_setopt(curl_easy, CURLOPT_HEADERDATA, NULL);
	if (cc != CURLE_OK) {
		settle(call, NULL, 599);  /* transport failure: counted, not charged */
		llmcap_call_free(call);
		lc_buf_free(&s.body);
		return LLMCAP_E_CURL;
	}
	curl_easy_getinfo(curl_easy, CURLINFO_RESPONSE_CODE, status);
	if (call->d.verdict == LC_ALLOW)
		llmcap_settle_response(call, (int)*status, s.ctype[0] ? s.ctype : NULL, s.body.data, s.body.len);
	llmcap_call_free(call);
	if (response_len)
		*response_len = s.body.len;
out:
	if (response && !s.body.data && lc_buf_add(&s.body, "", 0))
		return LLMCAP_E_NOMEM;
	if (response)
		*response = s.body.data;
	else
		lc_buf_free(&s.body);
	return LLMCAP_OK;
}
