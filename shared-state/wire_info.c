/* wire_info.c - what a request asks for (wire.h lc_reqinfo_parse): the API
 * from the path, the model, the output cap, stream flags, the service tier,
 * the dearer token kinds it may be billed for, and the customer it names.
 * The body is read through the fast scan (jscan.h), jansson when that
 * declines.
 */
#include "wire_int.h"

#include <errno.h>
#include <jansson.h>

/* ---- format / api ---------------------------------------------------------- */

int lc_format_parse(const char *s, enum lc_format *out)
{
	if (!s)
		return -1;
	if (strcmp(s, "openai") == 0) {
		*out = LC_FMT_OPENAI;
		return 0;
	}
	if (strcmp(s, "anthropic") == 0) {
		*out = LC_FMT_ANTHROPIC;
		return 0;
	}
	return -1;
}

const char *lc_format_name(enum lc_format f)
{
	switch (f) {
	case LC_FMT_OPENAI:
		return "openai";
	case LC_FMT_ANTHROPIC:
		return "anthropic";
	}
	return "unknown";
}

static bool path_ends(const char *p, size_t n, const char *suffix)
{
	size_t sn = strlen(suffix);
	return n >= sn && memcmp(p + n - sn, suffix, sn) == 0;
}

/* Matching on the suffix covers "/v1/...", proxies' prefixes ("/openai/v1/..."),
 * Azure deployments ("/openai/deployments/D/chat/completions") and absolute-form
 * targets ("https://host/v1/..."). Messages must be "/v1/messages": a bare
 * "/messages" suffix would also catch OpenAI's free "/v1/threads/T/messages". */
enum lc_api lc_api_from_path(const char *path)
{
	size_t n;

	if (!path)
		return LC_API_UNKNOWN;
	n = strcspn(path, "?#");
	while (n > 1 && path[n - 1] == '/')
		n--;
	if (path_ends(path, n, "/chat/completions"))
		return LC_API_CHAT;
	if (path_ends(path, n, "/responses"))
		return LC_API_RESPONSES;
	/* OpenAI's, Ollama's legacy /api/embeddings and its /api/embed (prompt_eval_count, no output) */
	if (path_ends(path, n, "/embeddings") || path_ends(path, n, "/api/embed"))
		return LC_API_EMBEDDINGS;
	if (path_ends(path, n, "/v1/messages"))
		return LC_API_MESSAGES;
	if (path_ends(path, n, "/completions"))
		return LC_API_COMPLETIONS;
	if (path_ends(path, n, "/api/chat") || path_ends(path, n, "/api/generate"))
		return LC_API_OLLAMA;
	return LC_API_UNKNOWN;
}

/* ---- request fields ---------------------------------------------------------- */

static int get_cap_field(json_t *root, const char *key, int64_t *out, char *err, size_t errlen)
{
	int rc = lc_json_count(root, key, out);
	if (rc < 0)
		lc_errf(err, errlen, "%s: expected a non-negative integer", key);
	return rc;
}

static int get_bool_field(json_t *obj, const char *key, const char *what, bool *out, char *err,
			  size_t errlen)
{
	json_t *v = json_object_get(obj, key);

	if (!v || json_is_null(v))
		return 0;
	if (!json_is_boolean(v)) {
		lc_errf(err, errlen, "%s: expected a boolean", what);
		return -1;
	}
	*out = json_is_true(v);
	return 1;
}

/* Output cap of the body, by API. -1 stays when the caller gave none: the
 * engine then reserves the model's max_output_tokens. */
static int reqinfo_cap(json_t *root, struct lc_reqinfo *ri, char *err, size_t errlen)
{
	int64_t cap = -1, a = -1, b = -1, n = 1, best_of = 1;
	int rc;

	switch (ri->api) {
	case LC_API_CHAT:
	case LC_API_COMPLETIONS:
		if (get_cap_field(root, "max_completion_tokens", &a, err, errlen) < 0 ||
		    get_cap_field(root, "max_tokens", &b, err, errlen) < 0)
			return -1;
		cap = a >= 0 ? a : b;
		if ((rc = lc_json_count(root, "n", &n)) < 0 || (rc > 0 && n < 1)) {
			lc_errf(err, errlen, "n: expected a positive integer");
			return -1;
		}
		/* legacy completions generate best_of candidates server side and bill them all */
		if (ri->api == LC_API_COMPLETIONS &&
		    ((rc = lc_json_count(root, "best_of", &best_of)) < 0 || (rc > 0 && best_of < 1))) {
			lc_errf(err, errlen, "best_of: expected a positive integer");
			return -1;
		}
		if (best_of > n)
			n = best_of;
		if (cap > 0) {
			/* both are <= 2^40: the product cannot overflow int64 */
			cap *= n;
			if (cap > LC_TOKENS_MAX)
				cap = LC_TOKENS_MAX;
		}
		break;
	case LC_API_RESPONSES:
		if (get_cap_field(root, "max_output_tokens", &cap, err, errlen) < 0)
			return -1;
		break;
	case LC_API_MESSAGES:
		if (get_cap_field(root, "max_tokens", &cap, err, errlen) < 0)
			return -1;
		break;
	case LC_API_EMBEDDINGS:
		cap = 0;   /* embeddings produce no output tokens */
		break;
	case LC_API_OLLAMA: {
		/* options.num_predict; -1 (the default: until the model stops) and -2 (fill the
		 * context) set no cap, so the model's max_output_tokens is reserved */
		json_t *o = json_object_get(root, "options"), *np = json_object_get(o, "num_predict");

		if (o && !json_is_null(o) && !json_is_object(o)) {
			lc_errf(err, errlen, "options: expected an object");
			return -1;
		}
		if (np && !json_is_null(np) && !json_is_integer(np)) {
			lc_errf(err, errlen, "options.num_predict: expected an integer");
			return -1;
		}
		if (json_integer_value(np) >= 0 && np)
			cap = json_integer_value(np) > LC_TOKENS_MAX ? LC_TOKENS_MAX : json_integer_value(np);
		break;
	}
	case LC_API_UNKNOWN:
		break;
	}
	ri->output_cap = cap;
	return 0;
}

/* First identifier that yields a usable string. root may be NULL (no body). */
static void reqinfo_customer(json_t *root, const char *const *identify, lc_header_fn hdr,
			     void *hdr_ctx, struct lc_reqinfo *ri)
{
	const char *const *id;

	for (id = identify; id && *id; id++) {
		if (strncmp(*id, "header:", 7) == 0) {
			char v[128];
			const char *s = v;
			size_t n;

			if (!hdr || hdr(hdr_ctx, *id + 7, v, sizeof(v)) != 0)
				continue;
			v[sizeof(v) - 1] = '\0';
			n = strlen(v);
			lc_h1_trim(&s, &n);
			if (n && lc_copy_field(ri->customer, sizeof(ri->customer), s, n))
				return;
		} else if (strncmp(*id, "body:", 5) == 0) {
			const char *s;
			size_t n;

			if (root && lc_json_name(lc_json_path(root, *id + 5), &s, &n) &&
			    lc_copy_field(ri->customer, sizeof(ri->customer), s, n))
				return;
		}
	}
}

/* the top-level members lc_reqinfo_parse reads (lc_json_path reads a body: identifier's first component) */
static json_t *reqinfo_subset(const void *body, size_t len, const char *const *identify)
{
	static const char *const fixed[] = {"model", "stream", "stream_options", "max_completion_tokens",
					    "max_tokens", "n", "best_of", "max_output_tokens", "service_tier",
					    "audio", "options", "tools", "max_tool_calls", "web_search_options"};
	struct lc_jpick pk[LC_JPICK_MAX];
	int np = 0;

	for (size_t i = 0; i < sizeof(fixed) / sizeof(fixed[0]); i++)
		np = lc_jpick_add(pk, np, fixed[i], strlen(fixed[i]));
	for (const char *const *id = identify; id && *id && np >= 0; id++) {
		size_t n;

		if (strncmp(*id, "body:", 5) != 0)
			continue;
		n = strcspn(*id + 5, ".");
		if (n > 0 && n < 256)
			np = lc_jpick_add(pk, np, *id + 5, n);
	}
	if (np < 0)
		return NULL;
	return lc_jscan_subset(body, len, pk, np);
}

/* What a request may be billed for beyond text in and out: the price model's worst case
 * (price.h). A plain substring test: a false positive only raises the reservation. */
static uint8_t reqinfo_may(json_t *root, const void *body, size_t len)
{
	uint8_t may = 0;

	if (memmem(body, len, "\"cache_control\"", 15))
		may |= LC_MAY_CACHE_5M;
	if (may && memmem(body, len, "\"1h\"", 4))
		may |= LC_MAY_CACHE_1H;
	if (memmem(body, len, "\"input_audio\"", 13))
		may |= LC_MAY_AUDIO_IN;
	if (json_is_object(json_object_get(root, "audio")))
		may |= LC_MAY_AUDIO_OUT;
	return may;
}

/* Anthropic's versioned tool type PREFIX + YYYYMMDD, of version `since` or later */
static bool tool_since(const char *type, const char *prefix, const char *since)
{
	size_t n = strlen(prefix);

	if (strncmp(type, prefix, n) || strlen(type + n) != 8)
		return false;
	for (size_t i = 0; i < 8; i++)
		if (type[n + i] < '0' || type[n + i] > '9')
			return false;
	return strcmp(type + n, since) >= 0;
}

/* The web search a request enables (price.h reserves its fees): tools of type web_search*
 * (OpenAI web_search, Anthropic web_search_YYYYMMDD, each with an optional max_uses) or
 * web_search_preview*, and Chat Completions' web_search_options (the search models);
 * and the code execution, file search and image generation tools, which price.c cannot charge
 * (lc_price_unpriced_tool). */
static int reqinfo_web(json_t *root, struct lc_reqinfo *ri, char *err, size_t errlen)
{
	static const char *const ctx[] = {"low", "medium", "high"};
	json_t *tools = json_object_get(root, "tools"), *t, *wo = json_object_get(root, "web_search_options");
	int64_t uses = 0, n;
	bool unbounded = false;
	size_t i;
	int rc;

	ri->web_max_calls = -1;
	ri->search_ctx = 1;
	if (tools && !json_is_null(tools) && !json_is_array(tools)) {
		lc_errf(err, errlen, "tools: expected an array");
		return -1;
	}
	json_array_foreach(tools, i, t) {
		const char *type = json_string_value(json_object_get(t, "type"));

		if (type && (!strncmp(type, "code_execution", 14) || !strcmp(type, "code_interpreter")))
			ri->web |= LC_WEB_CODE;
		if (type && !strcmp(type, "file_search"))
			ri->web |= LC_WEB_FILE_SEARCH;
		if (type && !strcmp(type, "image_generation"))
			ri->web |= LC_WEB_IMAGE_GEN;
		if (type && (tool_since(type, "web_search_", "20260209") || tool_since(type, "web_fetch_", "20260209")))
			ri->web |= LC_WEB_CODE_FREE;
		if (!type || strncmp(type, "web_search", 10) != 0)
			continue;
		ri->web |= strncmp(type, "web_search_preview", 18) == 0 ? LC_WEB_PREVIEW : LC_WEB_SEARCH;
		if ((rc = lc_json_count(t, "max_uses", &n)) < 0 || (rc > 0 && n < 1)) {
			lc_errf(err, errlen, "tools[%zu].max_uses: expected a positive integer", i);
			return -1;
		}
		if (rc > 0)
			uses += n;   /* each at most 2^40: no overflow over any realistic count of tools */
		else
			unbounded = true;
	}
	if ((ri->web & (LC_WEB_SEARCH | LC_WEB_PREVIEW)) && !unbounded)
		ri->web_max_calls = uses > LC_TOKENS_MAX ? LC_TOKENS_MAX : uses;
	if ((rc = lc_json_count(root, "max_tool_calls", &n)) < 0) {
		lc_errf(err, errlen, "max_tool_calls: expected a non-negative integer");
		return -1;
	}
	if (rc > 0 && (ri->web_max_calls < 0 || n < ri->web_max_calls))
		ri->web_max_calls = n;   /* Responses: every built-in tool call counts towards it */
	if (wo && !json_is_null(wo)) {
		json_t *sz;

		if (!json_is_object(wo)) {
			lc_errf(err, errlen, "web_search_options: expected an object");
			return -1;
		}
		ri->web |= LC_WEB_OPTIONS;
		sz = json_object_get(wo, "search_context_size");
		if (sz && !json_is_null(sz)) {
			int k = -1;

			for (int j = 0; j < 3; j++)
				if (json_is_string(sz) && !strcmp(json_string_value(sz), ctx[j]))
					k = j;
			if (k < 0) {
				lc_errf(err, errlen, "web_search_options.search_context_size: expected low, medium or high");
				return -1;
			}
			ri->search_ctx = (uint8_t)k;
		}
	}
	return 0;
}

int lc_reqinfo_parse(enum lc_format fmt, const char *path, const void *body, size_t len,
		     const char *const *identify, lc_header_fn hdr, void *hdr_ctx,
		     struct lc_reqinfo *out, char *err, size_t errlen)
{
	struct lc_reqinfo ri;
	json_t *root = NULL, *so;
	json_error_t jerr;
	int rc = -1;

	(void)fmt;   /* the path decides the API; both formats share field names */
	memset(&ri, 0, sizeof(ri));
	ri.api = lc_api_from_path(path);
	ri.output_cap = -1;
	ri.web_max_calls = -1;
	ri.search_ctx = 1;
	ri.input_estimate = (int64_t)len;
	ri.stream = ri.api == LC_API_OLLAMA;   /* Ollama streams unless "stream": false */
	if (ri.api == LC_API_EMBEDDINGS)
		ri.output_cap = 0;

	if (len > LC_WIRE_MAX_BODY) {
		lc_errf(err, errlen, "request body larger than %d bytes", LC_WIRE_MAX_BODY);
		goto out;
	}
	if (len > 0 && body) {
		root = reqinfo_subset(body, len, identify);
		if (!root)
			root = json_loadb(body, len, JSON_DECODE_ANY | JSON_ALLOW_NUL, &jerr);
		if (!json_is_object(root)) {
			/* Paths we do not price may carry anything (multipart uploads to
			 * /v1/files, audio): only the headers can name the customer. */
			if (ri.api == LC_API_UNKNOWN) {
				json_decref(root);
				root = NULL;
			} else {
				if (root) {
					lc_errf(err, errlen, "request body is not a JSON object");
				} else if (json_error_code(&jerr) == json_error_out_of_memory || !jerr.text[0]) {
					/* jansson leaves the text empty when it could not allocate its lexer */
					lc_errf(err, errlen, "out of memory reading the request body");
					rc = ENOMEM;  /* says nothing about the request */
				} else {
					lc_errf(err, errlen, "request body is not valid JSON: %s", jerr.text);
				}
				goto out;
			}
		}
	}

	if (root) {
		json_t *m = json_object_get(root, "model");
		if (m && !json_is_null(m)) {
			if (!json_is_string(m) ||
			    !lc_copy_field(ri.model, sizeof(ri.model), json_string_value(m), strlen(json_string_value(m)))) {
				lc_errf(err, errlen, "model: expected a string of at most %zu bytes",
					sizeof(ri.model) - 1);
				goto out;
			}
		}
		if (get_bool_field(root, "stream", "stream", &ri.stream, err, errlen) < 0)
			goto out;
		so = json_object_get(root, "stream_options");
		if (so && !json_is_null(so)) {
			if (!json_is_object(so)) {
				lc_errf(err, errlen, "stream_options: expected an object");
				goto out;
			}
			if (get_bool_field(so, "include_usage", "stream_options.include_usage",
					   &ri.include_usage, err, errlen) < 0)
				goto out;
		}
		if (reqinfo_cap(root, &ri, err, errlen))
			goto out;
		so = json_object_get(root, "service_tier");
		if (json_is_string(so) && json_string_length(so) < sizeof(ri.service_tier))
			memcpy(ri.service_tier, json_string_value(so), json_string_length(so) + 1);
		ri.may = reqinfo_may(root, body, len);
		if (ri.api != LC_API_UNKNOWN && reqinfo_web(root, &ri, err, errlen))
			goto out;
	}
	reqinfo_customer(root, identify, hdr, hdr_ctx, &ri);
	*out = ri;
	rc = 0;
out:
	json_decref(root);
	return rc;
}
