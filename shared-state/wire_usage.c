/* wire_usage.c - what a provider says a call used (wire.h): usage from a
 * complete JSON response body (lc_usage_from_json) and from a text/event-stream
 * fed in any split (lc_sse_*), normalised to one lc_usage.
 */
#include "wire_int.h"

/* One SSE line. Responses' response.completed event repeats the whole
 * response on one line, so this is the body cap, not a small number. */
#define SSE_LINE_MAX ((size_t)LC_WIRE_MAX_BODY)

/* ---- usage ---------------------------------------------------------------------
 * Three shapes, normalised so that input + cached_input + output is what the
 * provider billed, and input never includes cache reads:
 *   OpenAI chat/completions/embeddings (and vLLM, Ollama's /v1): prompt_tokens
 *     includes cached_tokens; prompt_tokens_details.audio_tokens and
 *     completion_tokens_details.{reasoning,audio}_tokens are parts of the totals;
 *   Responses: input_tokens includes input_tokens_details.cached_tokens;
 *     output_tokens_details.reasoning_tokens is part of output_tokens;
 *   Anthropic: input_tokens excludes both cache fields; cache writes
 *     (cache_creation_input_tokens, split by cache_creation.ephemeral_5m/1h_input_tokens,
 *     5-minute when not split) are input at their own price, reads are cached;
 *     server_tool_use.web_search_requests counts web searches;
 *   Ollama's native API (/api/chat, /api/generate): no usage object; the final
 *     object (done: true; the last NDJSON line of a stream) has prompt_eval_count
 *     (input) and eval_count (output).
 * OpenAI web searches (a fee each) are the Responses output items of type
 * web_search_call, whatever their action (search, open_page, find).
 * The tier that served the call comes from "service_tier" (the response's, or
 * Anthropic's usage.service_tier).
 */
enum { US_CHAT, US_RESPONSES, US_ANTHROPIC };

/* Anthropic's counts as reported so far: message_delta repeats fields cumulatively */
struct anth {
	int64_t in, cc, cr, out, cw1h, web;
};

static int anth_read(json_t *u, struct anth *a)
{
	json_t *cc = json_object_get(u, "cache_creation"), *stu = json_object_get(u, "server_tool_use");

	if (lc_json_count(u, "input_tokens", &a->in) < 0 || lc_json_count(u, "output_tokens", &a->out) < 0 ||
	    lc_json_count(u, "cache_creation_input_tokens", &a->cc) < 0 ||
	    lc_json_count(u, "cache_read_input_tokens", &a->cr) < 0 ||
	    (json_is_object(cc) && lc_json_count(cc, "ephemeral_1h_input_tokens", &a->cw1h) < 0) ||
	    (json_is_object(stu) && lc_json_count(stu, "web_search_requests", &a->web) < 0))
		return -1;
	return 0;
}

static void anth_usage(const struct anth *a, struct lc_usage *out)
{
	out->input = a->in + a->cc;
	out->cached_input = a->cr;
	out->output = a->out;
	out->cache_write_1h = a->cw1h < a->cc ? a->cw1h : a->cc;
	out->cache_write_5m = a->cc - out->cache_write_1h;
	out->web_search = a->web;
	out->present = true;
}

static void copy_tier(char dst[16], json_t *v)
{
	const char *s = json_string_value(v);

	if (s && strlen(s) < 16)
		memcpy(dst, s, strlen(s) + 1);
}

static int64_t part_of(int64_t v, int64_t whole)
{
	return v < 0 ? 0 : v > whole ? whole : v;
}

/* OpenAI shapes: totals and their parts */
static int openai_parse(json_t *u, bool chat, struct lc_usage *out)
{
	json_t *id = json_object_get(u, chat ? "prompt_tokens_details" : "input_tokens_details");
	json_t *od = json_object_get(u, chat ? "completion_tokens_details" : "output_tokens_details");
	json_t *cd = json_is_object(id) ? json_object_get(id, "cached_tokens_details") : NULL;
	int64_t in = 0, outp = 0, cached = 0, ain = 0, acached = 0, img = 0, reason = 0, aout = 0;

	if (lc_json_count(u, chat ? "prompt_tokens" : "input_tokens", &in) != 1 ||
	    lc_json_count(u, chat ? "completion_tokens" : "output_tokens", &outp) < 0)
		return -1;
	if (json_is_object(id) && (lc_json_count(id, "cached_tokens", &cached) < 0 ||
				   lc_json_count(id, "audio_tokens", &ain) < 0 ||
				   lc_json_count(id, "image_tokens", &img) < 0))
		return -1;
	if (json_is_object(cd) && lc_json_count(cd, "audio_tokens", &acached) < 0)
		return -1;
	if (json_is_object(od) && (lc_json_count(od, "reasoning_tokens", &reason) < 0 ||
				   lc_json_count(od, "audio_tokens", &aout) < 0))
		return -1;
	cached = part_of(cached, in);
	out->input = in - cached;
	out->cached_input = cached;
	out->output = outp;
	out->audio_cached = part_of(acached, cached);
	out->audio_input = part_of(ain - out->audio_cached, out->input);
	out->image_input = part_of(img, out->input - out->audio_input);
	out->audio_output = part_of(aout, outp);
	out->reasoning = part_of(reason, outp);
	out->present = true;
	return 0;
}

/* the web_search_call items of a Responses output array */
static int64_t web_search_calls(json_t *output)
{
	size_t i;
	json_t *item;
	int64_t n = 0;

	json_array_foreach(output, i, item) {
		const char *t = json_string_value(json_object_get(item, "type"));

		if (t && strcmp(t, "web_search_call") == 0)
			n++;
	}
	return n;
}

/* Ollama's native counts: 1 when the object has them, 0 when not, -1 when unreadable */
static int ollama_parse(json_t *root, struct lc_usage *out)
{
	int64_t in = 0, outp = 0;
	int a = lc_json_count(root, "prompt_eval_count", &in), b = lc_json_count(root, "eval_count", &outp);

	if (a < 0 || b < 0)
		return -1;
	if (a == 0 && b == 0)
		return 0;
	out->input = in;
	out->cached_input = 0;
	out->output = outp;
	out->present = true;
	return 1;
}

static int usage_parse(json_t *u, int kind, struct lc_usage *out)
{
	struct anth a = {0};

	if (!json_is_object(u))
		return -1;
	if (kind != US_ANTHROPIC)
		return openai_parse(u, kind == US_CHAT, out);
	if (anth_read(u, &a) || !json_object_get(u, "input_tokens"))
		return -1;
	anth_usage(&a, out);
	copy_tier(out->service_tier, json_object_get(u, "service_tier"));
	return 0;
}

static int usage_kind(json_t *root, json_t *u)
{
	const char *type = json_string_value(json_object_get(root, "type"));
	const char *object = json_string_value(json_object_get(root, "object"));

	if (json_object_get(u, "prompt_tokens"))
		return US_CHAT;
	if ((type && strcmp(type, "message") == 0) || json_object_get(u, "cache_creation_input_tokens") ||
	    json_object_get(u, "cache_read_input_tokens"))
		return US_ANTHROPIC;
	if ((object && strcmp(object, "response") == 0) || json_object_get(u, "input_tokens_details"))
		return US_RESPONSES;
	/* input_tokens without any cache detail: both readings give the same numbers */
	return US_ANTHROPIC;
}

int lc_usage_from_json(const void *body, size_t len, struct lc_usage *out)
{
	struct lc_usage u;
	json_t *root, *usage;
	json_error_t jerr;

	if (!body || len == 0 || len > LC_WIRE_MAX_BODY)
		return -1;
	{
		struct lc_jpick pk[8] = {{"model", 5, NULL, 0},        {"usage", 5, NULL, 0},
					 {"type", 4, NULL, 0},         {"object", 6, NULL, 0},
					 {"service_tier", 12, NULL, 0}, {"output", 6, NULL, 0},
					 {"prompt_eval_count", 17, NULL, 0}, {"eval_count", 10, NULL, 0}};

		root = lc_jscan_subset(body, len, pk, 8);
	}
	if (!root)
		root = json_loadb(body, len, JSON_DECODE_ANY | JSON_ALLOW_NUL, &jerr);
	if (!root)
		return -1;
	memset(&u, 0, sizeof(u));
	if (json_is_object(root)) {
		lc_json_model(u.model, json_object_get(root, "model"));
		copy_tier(u.service_tier, json_object_get(root, "service_tier"));
		usage = json_object_get(root, "usage");
		if (json_is_object(usage)) {
			int kind = usage_kind(root, usage);

			if (usage_parse(usage, kind, &u) != 0)
				memset(&u, 0, sizeof(u));   /* usage we cannot read is no usage: settle charges the estimate */
			else if (kind == US_RESPONSES)
				u.web_search = web_search_calls(json_object_get(root, "output"));
		} else if (ollama_parse(root, &u) < 0) {
			memset(&u, 0, sizeof(u));
		}
	}
	json_decref(root);
	*out = u;
	return 0;
}

/* ---- SSE ---------------------------------------------------------------------- */

void lc_sse_init(struct lc_sse *s)
{
	memset(s, 0, sizeof(*s));
	lc_buf_init(&s->line, SSE_LINE_MAX);
	lc_buf_init(&s->data, LC_WIRE_MAX_BODY);
}

void lc_sse_free(struct lc_sse *s)
{
	lc_buf_free(&s->line);
	lc_buf_free(&s->data);
	lc_sse_init(s);
}

static void sse_anthropic(struct lc_sse *s, json_t *u, bool start)
{
	struct anth a = {s->a_input, s->a_cache_creation, s->usage.cached_input, s->usage.output, s->a_cache_1h,
			 s->usage.web_search};

	if (!json_is_object(u))
		return;
	/* message_start carries the whole usage; message_delta repeats only the
	 * fields that changed, each cumulative (so assign, never add). */
	if (anth_read(u, &a) || (start && !json_object_get(u, "input_tokens"))) {
		s->errors++;
		return;
	}
	s->a_input = a.in;
	s->a_cache_creation = a.cc;
	s->a_cache_1h = a.cw1h;
	anth_usage(&a, &s->usage);
	copy_tier(s->usage.service_tier, json_object_get(u, "service_tier"));
}

static void sse_event(struct lc_sse *s, json_t *o)
{
	const char *type = json_string_value(json_object_get(o, "type"));
	json_t *u;

	if (type) {
		if (strcmp(type, "message_start") == 0) {
			json_t *m = json_object_get(o, "message");
			if (json_is_object(m)) {
				lc_json_model(s->usage.model, json_object_get(m, "model"));
				sse_anthropic(s, json_object_get(m, "usage"), true);
			}
		} else if (strcmp(type, "message_delta") == 0) {
			sse_anthropic(s, json_object_get(o, "usage"), false);
		} else if (strcmp(type, "message_stop") == 0) {
			s->done = true;
		} else if (strncmp(type, "response.", 9) == 0) {
			json_t *r = json_object_get(o, "response");
			if (!json_is_object(r))
				return;
			lc_json_model(s->usage.model, json_object_get(r, "model"));
			if (strcmp(type, "response.completed") == 0 || strcmp(type, "response.incomplete") == 0 ||
			    strcmp(type, "response.failed") == 0) {
				struct lc_usage nu = s->usage;
				u = json_object_get(r, "usage");
				if (json_is_object(u) && usage_parse(u, US_RESPONSES, &nu) == 0) {
					/* the completed response lists every output item: each search once */
					nu.web_search = web_search_calls(json_object_get(r, "output"));
					s->usage = nu;
				}
				copy_tier(s->usage.service_tier, json_object_get(r, "service_tier"));
				s->done = true;
			}
		}
		return;
	}
	/* chat.completion.chunk / text_completion: usage is null until the last chunk */
	if (!s->usage.model[0])
		lc_json_model(s->usage.model, json_object_get(o, "model"));
	copy_tier(s->usage.service_tier, json_object_get(o, "service_tier"));
	u = json_object_get(o, "usage");
	if (json_is_object(u)) {
		struct lc_usage nu = s->usage;
		if (usage_parse(u, US_CHAT, &nu) == 0)
			s->usage = nu;
		else
			s->errors++;
	}
}

static void sse_dispatch(struct lc_sse *s)
{
	const char *p = s->data.data;
	size_t n = s->data.len;
	json_t *o;

	if (s->drop_event || n == 0)
		goto out;
	n--;   /* the LF after the last data line is not part of the data */
	lc_h1_trim(&p, &n);
	if (n == 0)
		goto out;
	if (n == 6 && memcmp(p, "[DONE]", 6) == 0) {
		s->done = true;
		goto out;
	}
	o = json_loadb(p, n, JSON_ALLOW_NUL, NULL);
	if (json_is_object(o))
		sse_event(s, o);
	else
		s->errors++;
	json_decref(o);
out:
	s->drop_event = false;
	lc_buf_reset(&s->data);
}

/* One NDJSON line of an Ollama stream: the usage is in the object with done: true */
static void ndjson_line(struct lc_sse *s, const char *l, size_t n)
{
	json_t *o;
	struct lc_usage nu;

	lc_h1_trim(&l, &n);
	if (n == 0)
		return;
	o = json_loadb(l, n, JSON_ALLOW_NUL, NULL);
	if (!json_is_object(o)) {
		s->errors++;
		json_decref(o);
		return;
	}
	if (!s->usage.model[0])
		lc_json_model(s->usage.model, json_object_get(o, "model"));
	nu = s->usage;
	if (ollama_parse(o, &nu) > 0)
		s->usage = nu;
	else if (json_is_true(json_object_get(o, "done")))
		s->errors++;   /* a final object without readable counts */
	if (json_is_true(json_object_get(o, "done")))
		s->done = true;
	json_decref(o);
}

static int sse_line(struct lc_sse *s, const char *l, size_t n)
{
	const char *colon, *v;
	size_t vn;

	if (s->ndjson) {
		ndjson_line(s, l, n);
		return 0;
	}
	if (n == 0) {
		sse_dispatch(s);
		return 0;
	}
	if (l[0] == ':' || s->drop_event)
		return 0;
	colon = memchr(l, ':', n);
	if (colon) {
		v = colon + 1;
		vn = n - (size_t)(v - l);
		if (vn && *v == ' ') {
			v++;
			vn--;
		}
	} else {
		colon = l + n;
		v = colon;
		vn = 0;
	}
	/* event:, id: and retry: are not needed: every payload we read names its
	 * own type in the JSON. */
	if ((size_t)(colon - l) == 4 && memcmp(l, "data", 4) == 0) {
		if (lc_buf_add(&s->data, v, vn) || lc_buf_add(&s->data, "\n", 1)) {
			s->drop_event = true;
			s->errors++;
			lc_buf_reset(&s->data);
			return -1;
		}
	}
	return 0;
}

int lc_sse_feed(struct lc_sse *s, const void *data, size_t n)
{
	const char *d = data;
	size_t i = 0, j;
	int rc = 0;

	while (i < n) {
		if (s->cr) {
			s->cr = false;
			if (d[i] == '\n') {
				i++;
				continue;
			}
		}
		for (j = i; j < n && d[j] != '\n' && d[j] != '\r'; j++)
			;
		if (s->skip_line) {
			if (j < n) {
				s->skip_line = false;
				s->cr = d[j] == '\r';
			}
			i = j < n ? j + 1 : n;
			continue;
		}
		if (j == n) {
			if (lc_buf_add(&s->line, d + i, n - i)) {
				s->skip_line = true;
				s->errors++;
				lc_buf_reset(&s->line);
				rc = -1;
			}
			break;
		}
		if (s->line.len) {
			if (lc_buf_add(&s->line, d + i, j - i)) {
				s->errors++;
				rc = -1;
			} else if (sse_line(s, s->line.data, s->line.len)) {
				rc = -1;
			}
			lc_buf_reset(&s->line);
		} else if (sse_line(s, d + i, j - i)) {
			rc = -1;
		}
		s->cr = d[j] == '\r';
		i = j + 1;
	}
	return rc;
}

void lc_sse_finish(struct lc_sse *s)
{
	if (s->line.len && !s->skip_line)
		sse_line(s, s->line.data, s->line.len);
	lc_buf_reset(&s->line);
	s->skip_line = false;
	sse_dispatch(s);
}
