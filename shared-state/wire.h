/* wire.h - provider wire formats: HTTP/1.1 request and response parsing,
 * request fields (model, output cap, stream, customer), usage from JSON
 * bodies and SSE streams, and the synthetic 429/401 responses.
 *
 * The umbrella header of wire_request.c, wire_info.c, wire_usage.c,
 * wire_response.c and wire_synth.c, over the HTTP/1.1 framing core
 * (http1.h) and the JSON scan (jscan.h).
 *
 * Pure functions over bytes: no I/O, no LMDB, no globals. Every parser
 * takes untrusted input and answers an error, never crashes. Every buffer
 * is capped (LC_WIRE_MAX_*).
 */
#ifndef LC_WIRE_H
#define LC_WIRE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "http1.h"
#include "util.h"

#define LC_WIRE_MAX_HEAD LC_H1_MAX_HEAD       /* request/response header block (64 KiB) */
#define LC_WIRE_MAX_BODY (32 * 1024 * 1024)   /* request body we buffer / JSON response we parse */

enum lc_format { LC_FMT_OPENAI = 0, LC_FMT_ANTHROPIC = 1 };
int lc_format_parse(const char *s, enum lc_format *out);   /* "openai" | "anthropic" */
const char *lc_format_name(enum lc_format f);

enum lc_api {
	LC_API_UNKNOWN = 0,   /* provider host, but a path we do not price (GET /v1/models, ...) */
	LC_API_CHAT,          /* POST .../chat/completions */
	LC_API_RESPONSES,     /* POST .../responses */
	LC_API_EMBEDDINGS,    /* POST .../embeddings, Ollama's .../api/embed */
	LC_API_MESSAGES,      /* POST .../messages (Anthropic) */
	LC_API_COMPLETIONS,   /* POST .../completions (legacy) */
	LC_API_OLLAMA,        /* POST .../api/chat, .../api/generate (Ollama's native API) */
};
enum lc_api lc_api_from_path(const char *path);  /* ignores query string and any prefix before /v1 */

/* Parse results for the incremental parsers. */
enum { LC_PARSE_MORE = 0, LC_PARSE_DONE = 1, LC_PARSE_ERROR = -1, LC_PARSE_H2 = -2 };

/* ---- HTTP/1.1 request (what the client writes) ---------------------------
 * Feed bytes as the client writes them. DONE when the head and the whole body
 * (Content-Length, or chunked up to the terminator) are in; the raw bytes
 * are kept unchanged in `raw` so they can be forwarded byte for byte.
 * H2 when the bytes start with the HTTP/2 preface "PRI * HTTP/2.0": answered as
 * soon as "PRI " is in (the method is reserved for it); `raw` holds what was consumed.
 * ERROR for a malformed head, a head over LC_WIRE_MAX_HEAD, a body over
 * LC_WIRE_MAX_BODY, or a Transfer-Encoding that does not end in chunked.
 * `expect_continue` is set when the head says "Expect: 100-continue" and the
 * head is complete (state is then MORE until the body arrives).
 */
struct lc_reqparse {
	struct lc_buf raw;        /* every byte fed, unchanged, until DONE (bytes after DONE are not consumed) */
	int state;                /* LC_PARSE_* */
	size_t head_len;          /* bytes of head incl. final CRLFCRLF, 0 until known */
	char method[16];
	char path[2048];
	bool chunked;
	int64_t content_length;   /* -1 when absent */
	bool expect_continue;
	struct lc_buf body;       /* de-chunked body */
	/* private parse state */
	struct lc_h1_head head;   /* the head, accumulated in raw */
	struct lc_h1_chunk chunk; /* chunk.err says why a chunked body failed */
};
void lc_reqparse_init(struct lc_reqparse *p);
/* Consumes at most n bytes; *used says how many (bytes past the end of this request are left). */
int lc_reqparse_feed(struct lc_reqparse *p, const void *data, size_t n, size_t *used);
/* Header value (case-insensitive name), trimmed, copied into out; -1 when absent or too long. */
int lc_reqparse_header(const struct lc_reqparse *p, const char *name, char *out, size_t outlen);
void lc_reqparse_free(struct lc_reqparse *p);

/* ---- request fields ------------------------------------------------------ */
struct lc_reqinfo {
	enum lc_api api;
	char model[128];
	int64_t output_cap;       /* max_tokens / max_completion_tokens / max_output_tokens times n; -1 when absent */
	bool stream;
	bool include_usage;       /* stream_options.include_usage */
	char customer[128];       /* "" when none */
	int64_t input_estimate;   /* upper bound on input tokens: body bytes (see README) */
	char service_tier[16];    /* the service_tier the request asks for, "" when none */
	uint8_t may;              /* LC_MAY_*: dearer token kinds the request may be billed for */
	uint8_t web;              /* LC_WEB_*: the web search tools the request enables (a fee a search) */
	uint8_t search_ctx;       /* web_search_options.search_context_size: 0 low, 1 medium (the default), 2 high */
	int64_t web_max_calls;    /* the request's bound on searches: Anthropic max_uses (summed over its web
	                             search tools), Responses max_tool_calls; -1 when it sets none */
};
enum {
	LC_MAY_CACHE_5M = 1,      /* cache_control: cache writes (5-minute TTL) */
	LC_MAY_CACHE_1H = 2,      /* cache_control with "ttl": "1h" */
	LC_MAY_AUDIO_IN = 4,      /* input_audio content */
	LC_MAY_AUDIO_OUT = 8,     /* an "audio" output request */
};
enum {
	LC_WEB_SEARCH = 1,        /* a tool of type web_search* (OpenAI web_search, Anthropic web_search_YYYYMMDD) */
	LC_WEB_PREVIEW = 2,       /* a tool of type web_search_preview* (OpenAI Responses) */
	LC_WEB_OPTIONS = 4,       /* Chat Completions web_search_options (the search models) */
	LC_WEB_CODE = 8,          /* a code execution tool: Anthropic code_execution_*, OpenAI code_interpreter */
	LC_WEB_CODE_FREE = 16,    /* Anthropic web_search_/web_fetch_ 20260209 or later: code execution is free */
	LC_WEB_FILE_SEARCH = 32,  /* OpenAI file_search: a fee per call and vector storage by the day, not priced */
	LC_WEB_IMAGE_GEN = 64,    /* OpenAI image_generation: image tokens at the image model's rates, not priced */
};
/* searches reserved for a request that enables web search and sets no bound, unless the policy's
 * web_search_max_uses says otherwise (README "Prices") */
#define LC_WEB_DEFAULT_CALLS 10
#define LC_WEB_MAX_USES_MAX 10000   /* web_search_max_uses: at most this */
/* input tokens of search content reserved for each of those searches (README "Prices"): the block
 * OpenAI bills a gpt-4o-mini search at; the usage reports the real count at settle */
#define LC_WEB_CONTENT_TOKENS 8000
/* Header lookup used by the customer identifiers "header:NAME". */
typedef int (*lc_header_fn)(void *ctx, const char *name, char *out, size_t outlen);
/* identify: NULL-terminated list like {"header:x-customer-id","body:user","body:metadata.user_id",NULL};
 * the first that yields a non-empty string (<=127 bytes) wins.
 * Returns 0 ok; -1 when the body is not valid JSON or a field has the wrong type (err says which);
 * ENOMEM when memory ran out reading it (nothing is known about the request then).
 * An empty body (GET) is fine: api from path, model "". On a path we do not price
 * (LC_API_UNKNOWN) a body that is not a JSON object (multipart upload, audio) is fine too.
 * output_cap is clamped to 2^40 (far above any model); out is written only on success. */
int lc_reqinfo_parse(enum lc_format fmt, const char *path, const void *body, size_t len,
		     const char *const *identify, lc_header_fn hdr, void *hdr_ctx,
		     struct lc_reqinfo *out, char *err, size_t errlen);

/* ---- usage ---------------------------------------------------------------- */
struct lc_usage {
	bool present;             /* the provider reported usage */
	int64_t input;            /* uncached input tokens (incl. Anthropic cache_creation_input_tokens) */
	int64_t cached_input;     /* OpenAI cached_tokens / Anthropic cache_read_input_tokens */
	int64_t output;           /* output tokens (incl. reasoning) */
	char model[128];          /* model the response names, "" if none */
	/* parts of the counts above that take their own price (price.h); 0 when not reported */
	int64_t cache_write_5m;   /* of input: Anthropic cache writes, 5-minute TTL */
	int64_t cache_write_1h;   /* of input: cache writes, 1-hour TTL */
	int64_t audio_input;      /* of input (uncached audio) */
	int64_t image_input;      /* of input */
	int64_t audio_cached;     /* of cached_input */
	int64_t audio_output;     /* of output */
	int64_t reasoning;        /* of output (billed as output; kept for the record) */
	int64_t web_search;       /* web search calls the response reports (a fee each): Anthropic's
	                             server_tool_use.web_search_requests, OpenAI Responses' web_search_call items */
	char service_tier[16];    /* the tier the response says served the call, "" if none */
};
/* From a complete JSON response body (chat, responses, embeddings, messages). 0 ok (usage may be absent), -1 bad JSON. */
int lc_usage_from_json(const void *body, size_t len, struct lc_usage *out);

/* Incremental SSE: feed decoded body bytes of a text/event-stream in any split. */
struct lc_sse {
	struct lc_buf line;       /* partial line */
	struct lc_buf data;       /* data: lines of the current event */
	struct lc_usage usage;    /* accumulated (chat include_usage chunk, response.completed,
	                             message_start + message_delta cumulative) */
	bool done;                /* saw [DONE] / response.completed / message_stop */
	int errors;               /* events that were not valid JSON (ignored) */
	bool ndjson;              /* set before feeding: one JSON object a line (Ollama's native streams), not SSE */
	/* private parse state */
	bool cr;                  /* last byte was a CR: an LF right after it ends no second line */
	bool skip_line;           /* current line overflowed its cap: drop it up to its end */
	bool drop_event;          /* current event's data overflowed its cap: drop it up to the blank line */
	int64_t a_input;          /* Anthropic input_tokens so far (message_delta repeats it cumulatively) */
	int64_t a_cache_creation; /* Anthropic cache_creation_input_tokens so far */
	int64_t a_cache_1h;       /* Anthropic cache_creation.ephemeral_1h_input_tokens so far */
};
void lc_sse_init(struct lc_sse *s);
/* 0 ok; -1 when a line or an event passed its cap (that line/event is dropped, counted in
 * `errors`, and parsing goes on with the next one). */
int lc_sse_feed(struct lc_sse *s, const void *data, size_t n);
/* End of stream: dispatches a last event that was not closed by a blank line (servers that
 * close right after the final data line). Stricter SSE would drop it; we want its usage. */
void lc_sse_finish(struct lc_sse *s);
void lc_sse_free(struct lc_sse *s);

/* ---- HTTP/1.1 response (what the provider sends back) ---------------------
 * Feed raw bytes as read. Handles status line, headers, 1xx interim
 * responses, Content-Length, chunked, close-delimited (call lc_resp_eof),
 * Content-Encoding gzip/deflate (zlib), and text/event-stream bodies (fed to
 * an lc_sse as they arrive) or JSON bodies (parsed at the end, capped).
 * DONE when the response message is complete. On ERROR (garbage, or cut short
 * before its end: lc_resp_eof) `usage` keeps what an SSE stream delivered so far.
 * A body that cannot be decoded (br, corrupt gzip) or is over LC_WIRE_MAX_BODY
 * (JSON only) is still framed to its end, only without usage.
 */
struct lc_resp {
	int state;                /* LC_PARSE_* */
	int status;               /* 0 until the status line is in */
	bool sse;
	bool chunked;
	int64_t content_length;   /* -1 when absent */
	struct lc_usage usage;    /* valid after DONE (or partial for SSE) */
	void *priv;               /* private: head buffer, inflate stream, body buffer, sse */
};
void lc_resp_init(struct lc_resp *r, bool head_request);
/* Consumes at most n bytes; *used says how many (pipelined bytes after DONE are not consumed). */
int lc_resp_feed(struct lc_resp *r, const void *data, size_t n, size_t *used);
int lc_resp_eof(struct lc_resp *r);       /* connection closed: completes a close-delimited body */
void lc_resp_free(struct lc_resp *r);

/* ---- synthetic responses ---------------------------------------------------
 * status 429: limit reached; 401: revoked/expired/unknown key; 503: store unusable.
 * Builds a complete HTTP/1.1 response (status line, content-type: application/json,
 * content-length, retry-after (429/503 only, seconds, >= 1), x-should-retry: false when
 * !should_retry, x-llmcap-limit when limit != NULL/"", connection: close) with the
 * body in the provider's shape (see DESIGN.md "What a blocked caller sees").
 * Also used by the SDK: lc_synth_body() gives only the JSON body.
 * status: 429, 401, 503, or 400 (a request body llmcap cannot read); others -> -1.
 * Both append to out (initialised by the caller) and leave it unchanged on failure.
 * The message is escaped by jansson (invalid UTF-8 bytes become '?'); the limit
 * name has control and non-ASCII bytes replaced by '_' and is cut at 255 bytes.
 */
int lc_synth_body(enum lc_format fmt, int status, const char *message, struct lc_buf *out);
int lc_synth_response(enum lc_format fmt, int status, const char *message, const char *limit,
		      int64_t retry_after, bool should_retry, struct lc_buf *out);

#endif
