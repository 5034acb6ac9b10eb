/* test_wire.c - provider wire formats (shared-state/wire.c): request and
 * response framing fed in every split, request fields, usage from JSON and
 * SSE, gzip/deflate bodies made here with zlib, and the exact synthetic bytes. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "wire.h"

/* ---- helpers ------------------------------------------------------------- */

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static uint32_t rnd(void)
{
	/* xorshift64*: deterministic, so a failure reproduces */
	rng_state ^= rng_state >> 12;
	rng_state ^= rng_state << 25;
	rng_state ^= rng_state >> 27;
	return (uint32_t)((rng_state * 2685821657736338717ull) >> 32);
}

struct bytes {
	char *p;
	size_t n;
};

static void b_add(struct bytes *b, const void *p, size_t n)
{
	b->p = realloc(b->p, b->n + n + 1);
	assert_non_null(b->p);
	memcpy(b->p + b->n, p, n);
	b->n += n;
	b->p[b->n] = '\0';
}

static void b_str(struct bytes *b, const char *s)
{
	b_add(b, s, strlen(s));
}

static void b_printf(struct bytes *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void b_printf(struct bytes *b, const char *fmt, ...)
{
	char tmp[4096];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
	va_end(ap);
	assert_true(n >= 0 && (size_t)n < sizeof(tmp));
	b_add(b, tmp, (size_t)n);
}

static void b_free(struct bytes *b)
{
	free(b->p);
	b->p = NULL;
	b->n = 0;
}

/* body as chunked coding, chunk sizes cycling through `sizes` (0-terminated) */
static void chunk_encode(struct bytes *out, const char *body, size_t n, const size_t *sizes, bool ext)
{
	size_t off = 0, k = 0;

	while (off < n) {
		size_t c = sizes[k];
		if (!sizes[++k])
			k = 0;
		if (c > n - off)
			c = n - off;
		if (ext && (k & 1))
			b_printf(out, "%zX;name=\"v\"\r\n", c);
		else
			b_printf(out, "%zx\r\n", c);
		b_add(out, body + off, c);
		b_str(out, "\r\n");
		off += c;
	}
	b_str(out, "0\r\n");
}

/* zlib-compress with the given windowBits (31 gzip, 15 zlib, -15 raw) */
static void zcompress(struct bytes *out, const char *in, size_t n, int wbits)
{
	z_stream zs;
	unsigned char buf[4096];
	int rc;

	memset(&zs, 0, sizeof(zs));
	assert_int_equal(deflateInit2(&zs, 6, Z_DEFLATED, wbits, 8, Z_DEFAULT_STRATEGY), Z_OK);
	zs.next_in = (unsigned char *)in;
	zs.avail_in = (uInt)n;
	do {
		zs.next_out = buf;
		zs.avail_out = sizeof(buf);
		rc = deflate(&zs, Z_FINISH);
		assert_true(rc == Z_OK || rc == Z_STREAM_END || rc == Z_BUF_ERROR);
		b_add(out, buf, sizeof(buf) - zs.avail_out);
	} while (rc != Z_STREAM_END);
	deflateEnd(&zs);
}

/* Feeds a whole buffer in pieces of `step` (0 = random sizes from 1 to rmax) through feed; returns
 * the final state and the total consumed. A feed that is not done takes every byte it is given. */
static int feed_steps(int (*feed)(void *, const char *, size_t, size_t *), void *parser, const char *msg, size_t n,
		      size_t step, size_t rmax, size_t *consumed)
{
	size_t off = 0, used;
	int rc = LC_PARSE_MORE;

	while (off < n) {
		size_t k = step ? step : 1 + rnd() % rmax;
		if (k > n - off)
			k = n - off;
		used = 12345;
		rc = feed(parser, msg + off, k, &used);
		assert_true(used <= k);
		off += used;
		if (rc != LC_PARSE_MORE)
			break;
		assert_int_equal(used, k);   /* MORE consumes everything */
	}
	*consumed = off;
	return rc;
}

static int req_feed(void *p, const char *d, size_t n, size_t *used) { return lc_reqparse_feed(p, d, n, used); }
static int resp_feed(void *r, const char *d, size_t n, size_t *used) { return lc_resp_feed(r, d, n, used); }

static int req_feed_steps(struct lc_reqparse *p, const char *msg, size_t n, size_t step, size_t *consumed)
{
	return feed_steps(req_feed, p, msg, n, step, 37, consumed);
}

static int resp_feed_steps(struct lc_resp *r, const char *msg, size_t n, size_t step, size_t *consumed)
{
	return feed_steps(resp_feed, r, msg, n, step, 61, consumed);
}

static int sse_feed_steps(struct lc_sse *s, const char *msg, size_t n, size_t step)
{
	size_t off = 0;
	int rc = 0;

	while (off < n) {
		size_t k = step ? step : 1 + rnd() % 23;
		if (k > n - off)
			k = n - off;
		if (lc_sse_feed(s, msg + off, k))
			rc = -1;
		off += k;
	}
	return rc;
}

/* N bytes: PREFIX, then FILL to the end (the caller frees it) */
static char *padded(const char *prefix, char fill, size_t n)
{
	char *p = malloc(n);
	size_t k = strlen(prefix);

	assert_non_null(p);
	assert_true(k <= n);
	memcpy(p, prefix, k);
	memset(p + k, fill, n - k);
	return p;
}

/* TEXT fed to a fresh SSE parser in pieces of STEP: the stream ends with this usage, no errors */
static void expect_sse_steps(const char *text, size_t step, int64_t input, int64_t cached, int64_t output,
			     const char *model)
{
	struct lc_sse s;

	lc_sse_init(&s);
	assert_int_equal(sse_feed_steps(&s, text, strlen(text), step), 0);
	assert_true(s.done);
	assert_true(s.usage.present);
	assert_int_equal(s.usage.input, input);
	assert_int_equal(s.usage.cached_input, cached);
	assert_int_equal(s.usage.output, output);
	assert_string_equal(s.usage.model, model);
	assert_int_equal(s.errors, 0);
	lc_sse_free(&s);
}

/* a fresh response parser fed B in pieces of STEP: the message ends after MSGLEN bytes (R is left
 * for the caller's checks and lc_resp_free) */
static void resp_steps_done(struct lc_resp *r, const struct bytes *b, size_t step, size_t msglen)
{
	size_t consumed;

	lc_resp_init(r, false);
	assert_int_equal(resp_feed_steps(r, b->p, b->n, step, &consumed), LC_PARSE_DONE);
	assert_int_equal(consumed, msglen);
}

/* the whole response B in one piece: framed to its end, without usage; B is freed */
static void expect_framed_no_usage(struct bytes *b)
{
	struct lc_resp r;
	size_t used;

	lc_resp_init(&r, false);
	assert_int_equal(lc_resp_feed(&r, b->p, b->n, &used), LC_PARSE_DONE);
	assert_int_equal(used, b->n);
	assert_false(r.usage.present);
	lc_resp_free(&r);
	b_free(b);
}

/* ---- format / api ----------------------------------------------------------- */

static void test_format(void **state)
{
	enum lc_format f = LC_FMT_ANTHROPIC;
	(void)state;

	assert_int_equal(lc_format_parse("openai", &f), 0);
	assert_int_equal(f, LC_FMT_OPENAI);
	assert_int_equal(lc_format_parse("anthropic", &f), 0);
	assert_int_equal(f, LC_FMT_ANTHROPIC);
	f = LC_FMT_OPENAI;
	assert_int_equal(lc_format_parse("OpenAI", &f), -1);
	assert_int_equal(lc_format_parse("", &f), -1);
	assert_int_equal(lc_format_parse(NULL, &f), -1);
	assert_int_equal(f, LC_FMT_OPENAI);   /* untouched on failure */
	assert_string_equal(lc_format_name(LC_FMT_OPENAI), "openai");
	assert_string_equal(lc_format_name(LC_FMT_ANTHROPIC), "anthropic");
	assert_string_equal(lc_format_name((enum lc_format)7), "unknown");
}

static void test_api_from_path(void **state)
{
	(void)state;
	assert_int_equal(lc_api_from_path("/v1/chat/completions"), LC_API_CHAT);
	assert_int_equal(lc_api_from_path("/v1/chat/completions?x=1"), LC_API_CHAT);
	assert_int_equal(lc_api_from_path("/v1/chat/completions/"), LC_API_CHAT);
	assert_int_equal(lc_api_from_path("/openai/v1/chat/completions"), LC_API_CHAT);
	assert_int_equal(lc_api_from_path("/openai/deployments/gpt4/chat/completions?api-version=2024-10-21"),
			 LC_API_CHAT);
	assert_int_equal(lc_api_from_path("https://api.openai.com/v1/chat/completions"), LC_API_CHAT);
	assert_int_equal(lc_api_from_path("/v1/responses"), LC_API_RESPONSES);
	assert_int_equal(lc_api_from_path("/v1/embeddings"), LC_API_EMBEDDINGS);
	assert_int_equal(lc_api_from_path("/v1/messages"), LC_API_MESSAGES);
	assert_int_equal(lc_api_from_path("/anthropic/v1/messages?beta=true"), LC_API_MESSAGES);
	assert_int_equal(lc_api_from_path("/v1/completions"), LC_API_COMPLETIONS);
	/* unpriced */
	assert_int_equal(lc_api_from_path("/v1/models"), LC_API_UNKNOWN);
	assert_int_equal(lc_api_from_path("/v1/messages/count_tokens"), LC_API_UNKNOWN);
	assert_int_equal(lc_api_from_path("/v1/threads/thread_1/messages"), LC_API_UNKNOWN);
	assert_int_equal(lc_api_from_path("/v1/responses/resp_123"), LC_API_UNKNOWN);
	assert_int_equal(lc_api_from_path("/v1/chat/completions/chatcmpl-1"), LC_API_UNKNOWN);
	assert_int_equal(lc_api_from_path("/?q=/v1/chat/completions"), LC_API_UNKNOWN);
	assert_int_equal(lc_api_from_path(""), LC_API_UNKNOWN);
	assert_int_equal(lc_api_from_path("/"), LC_API_UNKNOWN);
	assert_int_equal(lc_api_from_path(NULL), LC_API_UNKNOWN);
}

/* ---- HTTP/1.1 request ------------------------------------------------------------ */

static const char REQ_BODY[] = "{\"model\":\"gpt-4o-mini\",\"max_tokens\":100,"
			       "\"messages\":[{\"role\":\"user\",\"content\":\"hi \\r\\n\\r\\n there\"}]}";

static void make_cl_request(struct bytes *b)
{
	b_printf(b,
		 "POST /v1/chat/completions HTTP/1.1\r\n"
		 "Host: api.openai.com\r\n"
		 "Authorization: Bearer sk-test\r\n"
		 "Content-Type: application/json\r\n"
		 "content-length: %zu\r\n"
		 "\r\n%s",
		 strlen(REQ_BODY), REQ_BODY);
}

static void test_req_content_length_every_split(void **state)
{
	struct bytes b = {0};
	size_t step, consumed;
	(void)state;

	make_cl_request(&b);
	for (step = 0; step <= b.n; step++) {
		struct lc_reqparse p;
		int rounds = step == 0 ? 50 : 1;   /* step 0: random splits */
		while (rounds--) {
			lc_reqparse_init(&p);
			assert_int_equal(req_feed_steps(&p, b.p, b.n, step, &consumed), LC_PARSE_DONE);
			assert_int_equal(consumed, b.n);
			assert_int_equal(p.state, LC_PARSE_DONE);
			assert_int_equal(p.raw.len, b.n);
			assert_memory_equal(p.raw.data, b.p, b.n);
			assert_int_equal(p.body.len, strlen(REQ_BODY));
			assert_memory_equal(p.body.data, REQ_BODY, p.body.len);
			assert_string_equal(p.method, "POST");
			assert_string_equal(p.path, "/v1/chat/completions");
			assert_false(p.chunked);
			assert_false(p.expect_continue);
			assert_int_equal(p.content_length, (int64_t)strlen(REQ_BODY));
			assert_int_equal(p.head_len, b.n - strlen(REQ_BODY));
			lc_reqparse_free(&p);
		}
	}
	b_free(&b);
}

static void test_req_pipelined(void **state)
{
	struct bytes b = {0};
	struct lc_reqparse p;
	size_t used, first, off;
	char v[64];
	(void)state;

	make_cl_request(&b);
	first = b.n;
	b_str(&b, "GET /v1/models HTTP/1.1\r\nHost: x\r\n\r\nPOST /v1/embeddings HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}");

	lc_reqparse_init(&p);
	assert_int_equal(lc_reqparse_feed(&p, b.p, b.n, &used), LC_PARSE_DONE);
	assert_int_equal(used, first);
	assert_int_equal(p.raw.len, first);
	/* after DONE nothing more is taken */
	assert_int_equal(lc_reqparse_feed(&p, b.p + used, b.n - used, &used), LC_PARSE_DONE);
	assert_int_equal(used, 0);
	lc_reqparse_free(&p);

	off = first;
	lc_reqparse_init(&p);
	assert_int_equal(lc_reqparse_feed(&p, b.p + off, b.n - off, &used), LC_PARSE_DONE);
	assert_string_equal(p.method, "GET");
	assert_string_equal(p.path, "/v1/models");
	assert_int_equal(p.content_length, -1);
	assert_int_equal(p.body.len, 0);
	assert_int_equal(lc_reqparse_header(&p, "host", v, sizeof(v)), 0);
	assert_string_equal(v, "x");
	off += used;
	lc_reqparse_free(&p);

	lc_reqparse_init(&p);
	assert_int_equal(lc_reqparse_feed(&p, b.p + off, b.n - off, &used), LC_PARSE_DONE);
	assert_int_equal(off + used, b.n);
	assert_string_equal(p.path, "/v1/embeddings");
	assert_int_equal(p.body.len, 2);
	assert_memory_equal(p.body.data, "{}", 2);
	lc_reqparse_free(&p);
	b_free(&b);
}

static void test_req_chunked_odd_sizes(void **state)
{
	static const size_t sizes[][6] = {
		{1, 0}, {7, 3, 0x1a, 1, 0}, {0x100, 0}, {5000, 0}, {2, 13, 0},
	};
	const char *tail = "POST /next HTTP/1.1\r\n";
	size_t s, step, consumed;
	(void)state;

	for (s = 0; s < sizeof(sizes) / sizeof(sizes[0]); s++) {
		struct bytes b = {0};
		size_t msglen;

		b_str(&b, "POST /v1/messages HTTP/1.1\r\nHost: api.anthropic.com\r\n"
			  "Transfer-Encoding: chunked\r\nx-api-key: k\r\n\r\n");
		chunk_encode(&b, REQ_BODY, strlen(REQ_BODY), sizes[s], s % 2 == 1);
		if (s == 1)
			b_str(&b, "X-Trailer: yes\r\nX-Other: 1\r\n");
		b_str(&b, "\r\n");
		msglen = b.n;
		b_str(&b, tail);   /* pipelined: must stay unconsumed */

		for (step = 0; step <= 40; step++) {
			struct lc_reqparse p;
			lc_reqparse_init(&p);
			assert_int_equal(req_feed_steps(&p, b.p, b.n, step ? step : 1, &consumed), LC_PARSE_DONE);
			assert_int_equal(consumed, msglen);
			assert_true(p.chunked);
			assert_int_equal(p.content_length, -1);
			assert_int_equal(p.raw.len, msglen);
			assert_memory_equal(p.raw.data, b.p, msglen);
			assert_int_equal(p.body.len, strlen(REQ_BODY));
			assert_memory_equal(p.body.data, REQ_BODY, p.body.len);
			lc_reqparse_free(&p);

			lc_reqparse_init(&p);   /* random splits too */
			assert_int_equal(req_feed_steps(&p, b.p, b.n, 0, &consumed), LC_PARSE_DONE);
			assert_int_equal(consumed, msglen);
			assert_memory_equal(p.body.data, REQ_BODY, p.body.len);
			lc_reqparse_free(&p);
		}
		b_free(&b);
	}
}

static void test_req_te_overrides_cl_and_reuse(void **state)
{
	static const char req[] = "POST /v1/responses HTTP/1.1\r\nContent-Length: 3\r\n"
				  "Transfer-Encoding: identity, chunked\r\nExpect: 100-continue\r\n\r\n"
				  "4\r\n{\"a\"\r\n2\r\n:1\r\n1\r\n}\r\n0\r\n\r\n";
	struct lc_reqparse p;
	size_t used;
	(void)state;

	lc_reqparse_init(&p);
	for (int round = 0; round < 2; round++) {   /* free() leaves it ready for the next request */
		assert_int_equal(lc_reqparse_feed(&p, req, sizeof(req) - 1, &used), LC_PARSE_DONE);
		assert_int_equal(used, sizeof(req) - 1);
		assert_true(p.chunked);
		assert_true(p.expect_continue);
		assert_int_equal(p.content_length, -1);
		assert_int_equal(p.body.len, 7);
		assert_memory_equal(p.body.data, "{\"a\":1}", 7);
		lc_reqparse_free(&p);
	}
	lc_reqparse_free(&p);   /* twice is harmless */
}

static void test_req_expect_continue(void **state)
{
	struct bytes b = {0};
	struct lc_reqparse p;
	size_t used, head;
	(void)state;

	b_printf(&b, "POST /v1/chat/completions HTTP/1.1\r\nHost: h\r\nContent-Length: %zu\r\n"
		     "Expect: 100-Continue\r\n\r\n", strlen(REQ_BODY));
	head = b.n;
	lc_reqparse_init(&p);
	assert_int_equal(lc_reqparse_feed(&p, b.p, b.n, &used), LC_PARSE_MORE);
	assert_int_equal(used, head);
	assert_true(p.expect_continue);
	assert_int_equal(p.head_len, head);
	assert_int_equal(p.content_length, (int64_t)strlen(REQ_BODY));
	assert_int_equal(p.body.len, 0);
	/* the client waits for 100 Continue; the body comes later, in pieces */
	assert_int_equal(lc_reqparse_feed(&p, REQ_BODY, 10, &used), LC_PARSE_MORE);
	assert_int_equal(used, 10);
	assert_int_equal(lc_reqparse_feed(&p, REQ_BODY + 10, strlen(REQ_BODY) - 10, &used), LC_PARSE_DONE);
	assert_memory_equal(p.body.data, REQ_BODY, strlen(REQ_BODY));
	assert_int_equal(p.raw.len, head + strlen(REQ_BODY));
	lc_reqparse_free(&p);

	/* head split byte by byte: the flag appears only once the head is complete */
	lc_reqparse_init(&p);
	for (size_t i = 0; i < head; i++) {
		assert_false(p.expect_continue);
		assert_int_equal(lc_reqparse_feed(&p, b.p + i, 1, &used), LC_PARSE_MORE);
		assert_int_equal(used, 1);
	}
	assert_true(p.expect_continue);
	lc_reqparse_free(&p);
	b_free(&b);
}

static void test_req_h2_preface(void **state)
{
	static const char preface[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
	struct lc_reqparse p;
	size_t used;
	(void)state;

	lc_reqparse_init(&p);
	assert_int_equal(lc_reqparse_feed(&p, preface, sizeof(preface) - 1, &used), LC_PARSE_H2);
	assert_int_equal(used, sizeof(preface) - 1);
	assert_int_equal(p.raw.len, used);
	assert_int_equal(lc_reqparse_feed(&p, "x", 1, &used), LC_PARSE_H2);
	assert_int_equal(used, 0);
	lc_reqparse_free(&p);

	/* byte by byte: undecided until "PRI " is in */
	lc_reqparse_init(&p);
	for (int i = 0; i < 3; i++) {
		assert_int_equal(lc_reqparse_feed(&p, preface + i, 1, &used), LC_PARSE_MORE);
		assert_int_equal(used, 1);
	}
	assert_int_equal(lc_reqparse_feed(&p, preface + 3, 1, &used), LC_PARSE_H2);
	assert_int_equal(p.state, LC_PARSE_H2);
	lc_reqparse_free(&p);

	/* "PR" then something else is not the preface */
	lc_reqparse_init(&p);
	assert_int_equal(lc_reqparse_feed(&p, "PR", 2, &used), LC_PARSE_MORE);
	assert_int_equal(lc_reqparse_feed(&p, "OPFIND / HTTP/1.1\r\n\r\n", 21, &used), LC_PARSE_DONE);
	assert_string_equal(p.method, "PROPFIND");
	lc_reqparse_free(&p);

	lc_reqparse_init(&p);
	assert_int_equal(lc_reqparse_feed(&p, "PRIX / HTTP/1.1\r\n\r\n", 19, &used), LC_PARSE_DONE);
	assert_string_equal(p.method, "PRIX");
	lc_reqparse_free(&p);
}

static void expect_req_error(const char *msg, size_t n)
{
	struct lc_reqparse p;
	size_t used, consumed, step;

	for (step = 0; step < 3; step++) {
		lc_reqparse_init(&p);
		assert_int_equal(req_feed_steps(&p, msg, n, step == 0 ? n : step, &consumed), LC_PARSE_ERROR);
		assert_int_equal(p.state, LC_PARSE_ERROR);
		assert_int_equal(lc_reqparse_feed(&p, "GET / HTTP/1.1\r\n\r\n", 18, &used), LC_PARSE_ERROR);
		assert_int_equal(used, 0);
		lc_reqparse_free(&p);
	}
}

#define REQ_ERR(s) expect_req_error(s, sizeof(s) - 1)

static void test_req_malformed(void **state)
{
	(void)state;
	REQ_ERR("POST /v1/chat/completions HTTP/1.1\r\nContent-Length: abc\r\n\r\n");
	REQ_ERR("POST /v1/chat/completions HTTP/1.1\r\nContent-Length: -1\r\n\r\n");
	REQ_ERR("POST /v1/chat/completions HTTP/1.1\r\nContent-Length: 1 2\r\n\r\n");
	REQ_ERR("POST /v1/chat/completions HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n");
	REQ_ERR("POST /v1/chat/completions HTTP/1.1\r\nContent-Length: 5, 6\r\n\r\n");
	REQ_ERR("POST /v1/chat/completions HTTP/1.1\r\nContent-Length: 99999999999999999999\r\n\r\n");
	REQ_ERR("POST /v1/chat/completions HTTP/1.1\r\nContent-Length: 33554433\r\n\r\n");   /* > body cap */
	REQ_ERR("POST /v1/chat/completions HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n");
	REQ_ERR("POST /v1/chat/completions HTTP/1.1\r\nTransfer-Encoding: chunked, gzip\r\n\r\n");
	REQ_ERR("POST /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n");
	REQ_ERR("POST /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n\r\n");
	REQ_ERR("POST /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcX");      /* no CRLF after data */
	REQ_ERR("POST /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\rXabc\r\n");
	REQ_ERR("POST /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nfffffffffffffffffff\r\n");
	REQ_ERR("POST /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\rX");
	REQ_ERR("POST /x HTTP/2\r\n\r\n");
	REQ_ERR("POST /x\r\n\r\n");
	REQ_ERR("POST  /x HTTP/1.1\r\n\r\n");
	REQ_ERR("PO\"ST /x HTTP/1.1\r\n\r\n");
	REQ_ERR("AVERYVERYLONGMETHOD /x HTTP/1.1\r\n\r\n");
	REQ_ERR("GET /x HTTP/1.1 extra\r\n\r\n");
	REQ_ERR("\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n");   /* TLS on a plain socket */
}

static void test_req_caps(void **state)
{
	struct lc_reqparse p;
	size_t used, i;
	char *big;
	(void)state;

	/* a head that never ends */
	big = malloc(LC_WIRE_MAX_HEAD + 100);
	assert_non_null(big);
	memcpy(big, "GET / HTTP/1.1\r\n", 16);
	for (i = 16; i < LC_WIRE_MAX_HEAD + 100; i++)
		big[i] = (i % 80 == 79) ? '\n' : 'a';
	lc_reqparse_init(&p);
	assert_int_equal(lc_reqparse_feed(&p, big, LC_WIRE_MAX_HEAD + 100, &used), LC_PARSE_ERROR);
	lc_reqparse_free(&p);
	/* the same, in pieces */
	lc_reqparse_init(&p);
	{
		size_t consumed;
		assert_int_equal(req_feed_steps(&p, big, LC_WIRE_MAX_HEAD + 100, 4000, &consumed), LC_PARSE_ERROR);
	}
	lc_reqparse_free(&p);
	/* a head just under the cap is fine */
	memcpy(big, "GET / HTTP/1.1\r\nX: ", 19);
	memset(big + 19, 'b', LC_WIRE_MAX_HEAD - 19 - 4);
	memcpy(big + LC_WIRE_MAX_HEAD - 4, "\r\n\r\n", 4);
	lc_reqparse_init(&p);
	assert_int_equal(lc_reqparse_feed(&p, big, LC_WIRE_MAX_HEAD, &used), LC_PARSE_DONE);
	assert_int_equal(used, LC_WIRE_MAX_HEAD);
	lc_reqparse_free(&p);
	free(big);

	/* a chunked body that grows past the body cap */
	{
		size_t n = LC_WIRE_MAX_BODY / 2 + 10;
		char *chunk = malloc(n);
		char hdr[32];
		int rc = LC_PARSE_MORE;

		assert_non_null(chunk);
		memset(chunk, 'x', n);
		lc_reqparse_init(&p);
		const char *h = "POST /v1/chat/completions HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n";
		assert_int_equal(lc_reqparse_feed(&p, h, strlen(h), &used), LC_PARSE_MORE);
		for (i = 0; i < 3 && rc == LC_PARSE_MORE; i++) {
			snprintf(hdr, sizeof(hdr), "%zx\r\n", n);
			rc = lc_reqparse_feed(&p, hdr, strlen(hdr), &used);
			if (rc == LC_PARSE_MORE)
				rc = lc_reqparse_feed(&p, chunk, n, &used);
			if (rc == LC_PARSE_MORE)
				rc = lc_reqparse_feed(&p, "\r\n", 2, &used);
		}
		assert_int_equal(rc, LC_PARSE_ERROR);
		assert_int_equal(i, 2);   /* the second chunk crossed the cap */
		lc_reqparse_free(&p);
		free(chunk);
	}
}

static void test_req_header_lookup(void **state)
{
	static const char req[] = "\r\nPOST /v1/messages?beta=1 HTTP/1.1\r\n"
				  "Host:  api.anthropic.com \r\n"
				  "X-Api-Key:\tsk-ant-1\t\r\n"
				  "x-customer-id: acme\r\n"
				  "X-Customer-Id: second\r\n"
				  "Empty:\r\n"
				  "Content-Length: 0\r\n\r\n";
	struct lc_reqparse p;
	char v[16], tiny[5];
	size_t used;
	(void)state;

	lc_reqparse_init(&p);
	assert_int_equal(lc_reqparse_header(&p, "host", v, sizeof(v)), -1);   /* no head yet */
	assert_int_equal(lc_reqparse_feed(&p, req, sizeof(req) - 1, &used), LC_PARSE_DONE);
	assert_int_equal(used, sizeof(req) - 1);
	assert_string_equal(p.path, "/v1/messages?beta=1");
	assert_int_equal(lc_reqparse_header(&p, "HOST", v, sizeof(v)), -1);   /* 17 bytes: too long */
	{
		char w[64];
		assert_int_equal(lc_reqparse_header(&p, "HOST", w, sizeof(w)), 0);
		assert_string_equal(w, "api.anthropic.com");
	}
	assert_int_equal(lc_reqparse_header(&p, "x-api-key", v, sizeof(v)), 0);
	assert_string_equal(v, "sk-ant-1");
	assert_int_equal(lc_reqparse_header(&p, "X-CUSTOMER-ID", v, sizeof(v)), 0);
	assert_string_equal(v, "acme");   /* first occurrence */
	assert_int_equal(lc_reqparse_header(&p, "empty", v, sizeof(v)), 0);
	assert_string_equal(v, "");
	assert_int_equal(lc_reqparse_header(&p, "x-customer", v, sizeof(v)), -1);
	assert_int_equal(lc_reqparse_header(&p, "authorization", v, sizeof(v)), -1);
	assert_int_equal(lc_reqparse_header(&p, "x-customer-id", tiny, 4), -1);
	assert_int_equal(lc_reqparse_header(&p, "x-customer-id", tiny, 5), 0);
	lc_reqparse_free(&p);
}

/* a request head: START, then SEG 300 times, then the version: a target of some 3,000 bytes */
static void long_target(struct bytes *b, const char *start, const char *seg)
{
	b_str(b, start);
	for (int i = 0; i < 300; i++)
		b_str(b, seg);
	b_str(b, " HTTP/1.1\r\n\r\n");
}

static void test_req_long_target(void **state)
{
	struct bytes b = {0};
	struct lc_reqparse p;
	size_t used;
	(void)state;

	long_target(&b, "POST /v1/chat/completions?", "key=value&");
	lc_reqparse_init(&p);
	assert_int_equal(lc_reqparse_feed(&p, b.p, b.n, &used), LC_PARSE_DONE);
	assert_string_equal(p.path, "/v1/chat/completions");   /* query dropped to fit */
	lc_reqparse_free(&p);
	b_free(&b);

	long_target(&b, "POST /", "abcdefgh/");
	lc_reqparse_init(&p);
	assert_int_equal(lc_reqparse_feed(&p, b.p, b.n, &used), LC_PARSE_ERROR);
	lc_reqparse_free(&p);
	b_free(&b);
}

/* ---- request fields -------------------------------------------------------------- */

struct hdrs {
	const char *name[4];
	const char *value[4];
};

static int hdr_cb(void *ctx, const char *name, char *out, size_t outlen)
{
	struct hdrs *h = ctx;
	for (int i = 0; i < 4 && h->name[i]; i++) {
		if (strcasecmp(h->name[i], name) == 0) {
			if (strlen(h->value[i]) >= outlen)
				return -1;
			strcpy(out, h->value[i]);
			return 0;
		}
	}
	return -1;
}

static int reqinfo(const char *path, const char *body, struct lc_reqinfo *ri, char *err)
{
	return lc_reqinfo_parse(LC_FMT_OPENAI, path, body, strlen(body), NULL, NULL, NULL, ri, err, 256);
}

static void test_reqinfo_chat(void **state)
{
	struct lc_reqinfo ri;
	char err[256];
	(void)state;

	assert_int_equal(reqinfo("/v1/chat/completions",
				 "{\"model\":\"gpt-4o\",\"max_tokens\":100,\"max_completion_tokens\":300,\"n\":3,"
				 "\"stream\":true,\"stream_options\":{\"include_usage\":true},\"messages\":[]}",
				 &ri, err), 0);
	assert_int_equal(ri.api, LC_API_CHAT);
	assert_string_equal(ri.model, "gpt-4o");
	assert_int_equal(ri.output_cap, 900);   /* max_completion_tokens wins, times n */
	assert_true(ri.stream);
	assert_true(ri.include_usage);
	assert_string_equal(ri.customer, "");

	const char *b2 = "{\"model\":\"gpt-4o\",\"max_tokens\":100, \"n\": 2.0, \"stream\": false}";
	assert_int_equal(reqinfo("/v1/chat/completions", b2, &ri, err), 0);
	assert_int_equal(ri.output_cap, 200);
	assert_false(ri.stream);
	assert_false(ri.include_usage);
	assert_int_equal(ri.input_estimate, (int64_t)strlen(b2));

	assert_int_equal(reqinfo("/v1/chat/completions", "{\"model\":\"o3\",\"stream\":true,\"stream_options\":null,"
				 "\"max_tokens\":null}", &ri, err), 0);
	assert_int_equal(ri.output_cap, -1);
	assert_true(ri.stream);
	assert_false(ri.include_usage);

	assert_int_equal(reqinfo("/v1/chat/completions", "{\"max_completion_tokens\":0,\"n\":5}", &ri, err), 0);
	assert_int_equal(ri.output_cap, 0);
	assert_string_equal(ri.model, "");

	/* absurd caps are clamped, never overflow */
	assert_int_equal(reqinfo("/v1/chat/completions", "{\"max_tokens\":1099511627776,\"n\":128}", &ri, err), 0);
	assert_int_equal(ri.output_cap, (int64_t)1 << 40);
}

static void test_reqinfo_other_apis(void **state)
{
	struct lc_reqinfo ri;
	char err[256];
	(void)state;

	assert_int_equal(reqinfo("/v1/responses", "{\"model\":\"gpt-5\",\"max_output_tokens\":64,\"max_tokens\":9,"
				 "\"n\":4,\"stream\":true}", &ri, err), 0);
	assert_int_equal(ri.api, LC_API_RESPONSES);
	assert_int_equal(ri.output_cap, 64);
	assert_true(ri.stream);

	assert_int_equal(reqinfo("/v1/responses", "{\"model\":\"gpt-5\",\"input\":\"x\"}", &ri, err), 0);
	assert_int_equal(ri.output_cap, -1);

	assert_int_equal(reqinfo("/v1/embeddings", "{\"model\":\"text-embedding-3-small\",\"input\":\"abc\","
				 "\"max_tokens\":100}", &ri, err), 0);
	assert_int_equal(ri.api, LC_API_EMBEDDINGS);
	assert_int_equal(ri.output_cap, 0);
	assert_string_equal(ri.model, "text-embedding-3-small");

	assert_int_equal(reqinfo("/v1/completions", "{\"model\":\"gpt-3.5-turbo-instruct\",\"max_tokens\":50,"
				 "\"n\":2,\"best_of\":5}", &ri, err), 0);
	assert_int_equal(ri.api, LC_API_COMPLETIONS);
	assert_int_equal(ri.output_cap, 250);   /* best_of candidates are billed */

	const char *msgs = "{\"model\":\"claude-sonnet-4-5\",\"max_tokens\":1024,\"stream\":true,"
			   "\"messages\":[{\"role\":\"user\",\"content\":\"hi \\u0000 there\"}]}";
	assert_int_equal(lc_reqinfo_parse(LC_FMT_ANTHROPIC, "/v1/messages", msgs, strlen(msgs), NULL, NULL, NULL,
					  &ri, err, sizeof(err)), 0);
	assert_int_equal(ri.api, LC_API_MESSAGES);
	assert_string_equal(ri.model, "claude-sonnet-4-5");
	assert_int_equal(ri.output_cap, 1024);
	assert_true(ri.stream);
	assert_int_equal(ri.input_estimate, (int64_t)strlen(msgs));

	/* GET: empty body */
	memset(&ri, 0x55, sizeof(ri));
	assert_int_equal(lc_reqinfo_parse(LC_FMT_OPENAI, "/v1/models", NULL, 0, NULL, NULL, NULL, &ri, err,
					  sizeof(err)), 0);
	assert_int_equal(ri.api, LC_API_UNKNOWN);
	assert_string_equal(ri.model, "");
	assert_int_equal(ri.output_cap, -1);
	assert_false(ri.stream);
	assert_int_equal(ri.input_estimate, 0);
	assert_string_equal(ri.customer, "");

	/* an unpriced path may carry a non-JSON body (multipart upload) */
	assert_int_equal(reqinfo("/v1/files", "--boundary\r\nContent-Disposition: form-data\r\n", &ri, err), 0);
	assert_int_equal(ri.api, LC_API_UNKNOWN);
	assert_int_equal(ri.output_cap, -1);
	/* but if it is JSON, the model is still read */
	assert_int_equal(reqinfo("/api/show", "{\"model\":\"llama3\",\"stream\":true}", &ri, err), 0);
	assert_int_equal(ri.api, LC_API_UNKNOWN);
	assert_string_equal(ri.model, "llama3");
	assert_int_equal(ri.output_cap, -1);
}

static void expect_reqinfo_err(const char *path, const char *body, const char *needle)
{
	struct lc_reqinfo ri;
	char err[256] = "";

	memset(&ri, 0x5a, sizeof(ri));
	ri.output_cap = 777;
	assert_int_equal(reqinfo(path, body, &ri, err), -1);
	if (!strstr(err, needle))
		fail_msg("err \"%s\" does not name \"%s\" for %s", err, needle, body);
	assert_int_equal(ri.output_cap, 777);   /* out untouched */
}

static void test_reqinfo_errors(void **state)
{
	(void)state;
	expect_reqinfo_err("/v1/chat/completions", "{\"max_tokens\":\"100\"}", "max_tokens");
	expect_reqinfo_err("/v1/chat/completions", "{\"max_tokens\":-1}", "max_tokens");
	expect_reqinfo_err("/v1/chat/completions", "{\"max_tokens\":1.5}", "max_tokens");
	expect_reqinfo_err("/v1/chat/completions", "{\"max_completion_tokens\":true}", "max_completion_tokens");
	expect_reqinfo_err("/v1/chat/completions", "{\"max_tokens\":1e300}", "max_tokens");
	expect_reqinfo_err("/v1/chat/completions", "{\"max_tokens\":10,\"n\":0}", "n");
	expect_reqinfo_err("/v1/chat/completions", "{\"max_tokens\":10,\"n\":\"2\"}", "n");
	expect_reqinfo_err("/v1/completions", "{\"max_tokens\":10,\"best_of\":-3}", "best_of");
	expect_reqinfo_err("/v1/responses", "{\"max_output_tokens\":[1]}", "max_output_tokens");
	expect_reqinfo_err("/v1/messages", "{\"max_tokens\":{}}", "max_tokens");
	expect_reqinfo_err("/v1/chat/completions", "{\"stream\":\"yes\"}", "stream");
	expect_reqinfo_err("/v1/chat/completions", "{\"stream_options\":true}", "stream_options");
	expect_reqinfo_err("/v1/chat/completions", "{\"stream_options\":{\"include_usage\":1}}",
			   "stream_options.include_usage");
	expect_reqinfo_err("/v1/chat/completions", "{\"model\":42}", "model");
	expect_reqinfo_err("/v1/chat/completions",
			   "{\"model\":\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
			   "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\"}", "model");
	expect_reqinfo_err("/v1/chat/completions", "{\"model\":\"x\"", "JSON");
	expect_reqinfo_err("/v1/chat/completions", "not json", "JSON");
	expect_reqinfo_err("/v1/chat/completions", "[1,2]", "object");
	expect_reqinfo_err("/v1/messages", "\"str\"", "object");
	/* the web search and tool bounds (README "Prices"): the error names the JSON path */
	expect_reqinfo_err("/v1/messages", "{\"tools\":[{\"type\":\"text_editor\"},{\"type\":\"web_search_20250305\",\"max_uses\":0}]}",
			   "tools[1].max_uses:");
	expect_reqinfo_err("/v1/messages", "{\"tools\":[{\"type\":\"web_search_20250305\",\"max_uses\":1.5}]}", "tools[0].max_uses:");
	expect_reqinfo_err("/v1/responses", "{\"tools\":[],\"max_tool_calls\":-1}", "max_tool_calls:");
	expect_reqinfo_err("/v1/responses", "{\"tools\":{}}", "tools:");
	expect_reqinfo_err("/v1/chat/completions", "{\"web_search_options\":{\"search_context_size\":\"huge\"}}",
			   "web_search_options.search_context_size:");
	expect_reqinfo_err("/v1/chat/completions", "{\"web_search_options\":[]}", "web_search_options:");
}

static void test_reqinfo_customer(void **state)
{
	const char *ids[] = {"header:x-customer-id", "body:user", "body:metadata.user_id",
			     "body:safety_identifier", "bogus:thing", NULL};
	struct hdrs h = {{NULL}, {NULL}};
	struct lc_reqinfo ri;
	char err[256];
	char long_id[200];
	const char *body;
	(void)state;

#define RI(b) lc_reqinfo_parse(LC_FMT_OPENAI, "/v1/chat/completions", b, strlen(b), ids, hdr_cb, &h, &ri, err, \
			       sizeof(err))
	body = "{\"user\":\"u-1\",\"metadata\":{\"user_id\":\"m-1\"},\"safety_identifier\":\"s-1\"}";
	h.name[0] = "X-Customer-Id";
	h.value[0] = "acme";
	assert_int_equal(RI(body), 0);
	assert_string_equal(ri.customer, "acme");   /* first in the list wins */

	h.value[0] = "";   /* empty header: next identifier */
	assert_int_equal(RI(body), 0);
	assert_string_equal(ri.customer, "u-1");

	memset(long_id, 'z', 150);
	long_id[150] = '\0';
	h.value[0] = long_id;   /* too long for the field: skipped */
	assert_int_equal(RI(body), 0);
	assert_string_equal(ri.customer, "u-1");

	h.name[0] = NULL;
	body = "{\"user\":12,\"metadata\":{\"user_id\":\"m-1\"}}";   /* not a string: skipped */
	assert_int_equal(RI(body), 0);
	assert_string_equal(ri.customer, "m-1");

	body = "{\"user\":\"\",\"metadata\":\"m\",\"safety_identifier\":\"s-1\"}";
	assert_int_equal(RI(body), 0);
	assert_string_equal(ri.customer, "s-1");

	body = "{\"user\":null,\"metadata\":{\"user_id\":{\"deeper\":\"x\"}}}";
	assert_int_equal(RI(body), 0);
	assert_string_equal(ri.customer, "");

	body = "{\"user\":\"a\\u0000b\",\"safety_identifier\":\"ok\"}";   /* embedded NUL: skipped */
	assert_int_equal(RI(body), 0);
	assert_string_equal(ri.customer, "ok");

	/* 127 bytes fits, 128 does not */
	{
		struct bytes b = {0};
		char id[129];
		memset(id, 'q', 128);
		id[127] = '\0';
		b_printf(&b, "{\"user\":\"%s\"}", id);
		assert_int_equal(RI(b.p), 0);
		assert_int_equal(strlen(ri.customer), 127);
		b_free(&b);
		id[127] = 'q';
		id[128] = '\0';
		b_printf(&b, "{\"user\":\"%s\"}", id);
		assert_int_equal(RI(b.p), 0);
		assert_string_equal(ri.customer, "");
		b_free(&b);
	}

	/* no body: headers still identify; no header callback: body only */
	h.name[0] = "x-customer-id";
	h.value[0] = "from-header";
	assert_int_equal(lc_reqinfo_parse(LC_FMT_OPENAI, "/v1/models", "", 0, ids, hdr_cb, &h, &ri, err, sizeof(err)), 0);
	assert_string_equal(ri.customer, "from-header");
	assert_int_equal(lc_reqinfo_parse(LC_FMT_OPENAI, "/v1/chat/completions", "{\"user\":\"b\"}", 12, ids, NULL,
					  NULL, &ri, err, sizeof(err)), 0);
	assert_string_equal(ri.customer, "b");
#undef RI
}

/* ---- usage from JSON --------------------------------------------------------------- */

static void usage_json(const char *body, struct lc_usage *u)
{
	assert_int_equal(lc_usage_from_json(body, strlen(body), u), 0);
}

/* the usage read from a response body: input, cached input, output and the model (NULL: not checked) */
static void expect_usage(const char *body, int64_t input, int64_t cached, int64_t output, const char *model)
{
	struct lc_usage u;

	usage_json(body, &u);
	assert_true(u.present);
	assert_int_equal(u.input, input);
	assert_int_equal(u.cached_input, cached);
	assert_int_equal(u.output, output);
	if (model)
		assert_string_equal(u.model, model);
}

static void test_usage_json(void **state)
{
	struct lc_usage u;
	(void)state;

	expect_usage("{\"id\":\"chatcmpl-1\",\"object\":\"chat.completion\",\"model\":\"gpt-4o-mini-2024-07-18\","
		     "\"choices\":[],\"usage\":{\"prompt_tokens\":1200,\"completion_tokens\":300,\"total_tokens\":1500,"
		     "\"prompt_tokens_details\":{\"cached_tokens\":1024,\"audio_tokens\":0},"
		     "\"completion_tokens_details\":{\"reasoning_tokens\":100}}}",
		     176, 1024, 300, "gpt-4o-mini-2024-07-18");
	expect_usage("{\"id\":\"resp_1\",\"object\":\"response\",\"model\":\"gpt-5\",\"usage\":{\"input_tokens\":500,"
		     "\"input_tokens_details\":{\"cached_tokens\":200},\"output_tokens\":80,"
		     "\"output_tokens_details\":{\"reasoning_tokens\":40},\"total_tokens\":580}}",
		     300, 200, 80, "gpt-5");
	expect_usage("{\"object\":\"list\",\"data\":[],\"model\":\"text-embedding-3-small\","
		     "\"usage\":{\"prompt_tokens\":8,\"total_tokens\":8}}", 8, 0, 0, NULL);
	expect_usage("{\"id\":\"msg_1\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"claude-sonnet-4-5\","
		     "\"content\":[],\"usage\":{\"input_tokens\":20,\"cache_creation_input_tokens\":1000,"
		     "\"cache_read_input_tokens\":3000,\"output_tokens\":55}}", 1020, 3000, 55, "claude-sonnet-4-5");
	expect_usage("{\"type\":\"message\",\"usage\":{\"input_tokens\":7,\"cache_creation_input_tokens\":null,"
		     "\"cache_read_input_tokens\":null,\"output_tokens\":3}}", 7, 0, 3, NULL);

	/* provider errors carry no usage */
	usage_json("{\"error\":{\"message\":\"Rate limit reached\",\"type\":\"requests\",\"param\":null,"
		   "\"code\":\"rate_limit_exceeded\"}}", &u);
	assert_false(u.present);
	assert_int_equal(u.input + u.output + u.cached_input, 0);
	assert_string_equal(u.model, "");
	usage_json("{\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}", &u);
	assert_false(u.present);
	usage_json("{\"model\":\"m\",\"usage\":null}", &u);
	assert_false(u.present);
	assert_string_equal(u.model, "m");
	usage_json("[1,2,3]", &u);
	assert_false(u.present);

	/* malformed usage counts as none */
	usage_json("{\"usage\":{\"prompt_tokens\":\"12\",\"completion_tokens\":3}}", &u);
	assert_false(u.present);
	usage_json("{\"usage\":{\"prompt_tokens\":-5}}", &u);
	assert_false(u.present);
	/* cached beyond prompt is clamped, never negative input */
	expect_usage("{\"usage\":{\"prompt_tokens\":10,\"completion_tokens\":1,"
		     "\"prompt_tokens_details\":{\"cached_tokens\":50}}}", 0, 10, 1, NULL);

	/* bad JSON: -1, out untouched */
	memset(&u, 0x33, sizeof(u));
	assert_int_equal(lc_usage_from_json("{\"usage\":", 9, &u), -1);
	assert_int_equal(u.input, 0x3333333333333333ll);
	assert_int_equal(lc_usage_from_json("", 0, &u), -1);
	assert_int_equal(lc_usage_from_json("<html>502</html>", 16, &u), -1);
}

/* ---- SSE ---------------------------------------------------------------------- */

static const char OPENAI_SSE[] =
	"data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"model\":\"gpt-4o-mini\",\"choices\":[{\"index\":0,"
	"\"delta\":{\"role\":\"assistant\",\"content\":\"\"}}],\"usage\":null}\n\n"
	": keep-alive comment\n\n"
	"data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"model\":\"gpt-4o-mini\",\"choices\":[{\"index\":0,"
	"\"delta\":{\"content\":\"Hello\\n\\ndata: not an event\"}}],\"usage\":null}\n\n"
	"data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"model\":\"gpt-4o-mini\",\"choices\":[{\"index\":0,"
	"\"delta\":{},\"finish_reason\":\"stop\"}],\"usage\":null}\n\n"
	"data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"model\":\"gpt-4o-mini\",\"choices\":[],"
	"\"usage\":{\"prompt_tokens\":2000,\"completion_tokens\":7,\"total_tokens\":2007,"
	"\"prompt_tokens_details\":{\"cached_tokens\":1920}}}\n\n"
	"data: [DONE]\n\n";

static char *crlf(const char *s)
{
	size_t n = strlen(s), k = 0;
	char *o = malloc(2 * n + 1);
	assert_non_null(o);
	for (size_t i = 0; i < n; i++) {
		if (s[i] == '\n')
			o[k++] = '\r';
		o[k++] = s[i];
	}
	o[k] = '\0';
	return o;
}

static char *cr_only(const char *s)
{
	char *o = strdup(s);
	assert_non_null(o);
	for (char *p = o; *p; p++)
		if (*p == '\n')
			*p = '\r';
	return o;
}

static void check_openai_sse(const char *text, size_t step)
{
	expect_sse_steps(text, step, 80, 1920, 7, "gpt-4o-mini");
}

static void test_sse_openai_chat(void **state)
{
	char *c = crlf(OPENAI_SSE), *r = cr_only(OPENAI_SSE);
	struct lc_sse s;
	(void)state;

	for (size_t step = 0; step <= 64; step++) {
		check_openai_sse(OPENAI_SSE, step);
		check_openai_sse(c, step);
		check_openai_sse(r, step);
	}
	check_openai_sse(OPENAI_SSE, strlen(OPENAI_SSE));

	/* usage is only on the final chunk: before it, nothing is present */
	lc_sse_init(&s);
	const char *cut = strstr(OPENAI_SSE, "\"choices\":[],");
	assert_non_null(cut);
	assert_int_equal(lc_sse_feed(&s, OPENAI_SSE, (size_t)(cut - OPENAI_SSE)), 0);
	assert_false(s.usage.present);
	assert_false(s.done);
	assert_string_equal(s.usage.model, "gpt-4o-mini");
	lc_sse_free(&s);

	/* without include_usage: [DONE] and no usage */
	lc_sse_init(&s);
	const char *nousage = "data: {\"object\":\"chat.completion.chunk\",\"choices\":[],\"usage\":null}\n\ndata: [DONE]\n\n";
	assert_int_equal(lc_sse_feed(&s, nousage, strlen(nousage)), 0);
	assert_true(s.done);
	assert_false(s.usage.present);
	lc_sse_free(&s);
	free(c);
	free(r);
}

static const char RESPONSES_SSE[] =
	"event: response.created\n"
	"data: {\"type\":\"response.created\",\"sequence_number\":0,\"response\":{\"id\":\"resp_1\",\"object\":\"response\","
	"\"model\":\"gpt-5-2025-08-07\",\"status\":\"in_progress\",\"usage\":null}}\n\n"
	"event: response.output_text.delta\n"
	"data: {\"type\":\"response.output_text.delta\",\"delta\":\"Hi\",\"sequence_number\":4}\n\n"
	"event: response.completed\n"
	"data: {\"type\":\"response.completed\",\"sequence_number\":9,\"response\":{\"id\":\"resp_1\",\"object\":\"response\","
	"\"model\":\"gpt-5-2025-08-07\",\"status\":\"completed\",\"output\":[{\"type\":\"message\",\"content\":[{\"type\":"
	"\"output_text\",\"text\":\"Hi\"}]}],\"usage\":{\"input_tokens\":900,\"input_tokens_details\":{\"cached_tokens\":"
	"512},\"output_tokens\":140,\"output_tokens_details\":{\"reasoning_tokens\":128},\"total_tokens\":1040}}}\n\n";

static void test_sse_responses(void **state)
{
	struct lc_sse s;
	(void)state;

	for (size_t step = 0; step <= 50; step++) {
		expect_sse_steps(RESPONSES_SSE, step, 388, 512, 140, "gpt-5-2025-08-07");
	}

	/* response.incomplete (max_output_tokens hit) also carries usage */
	const char *inc = "event: response.incomplete\r\ndata: {\"type\":\"response.incomplete\",\"response\":{\"model\":\"gpt-5\","
			  "\"status\":\"incomplete\",\"usage\":{\"input_tokens\":10,\"output_tokens\":64}}}\r\n\r\n";
	lc_sse_init(&s);
	assert_int_equal(lc_sse_feed(&s, inc, strlen(inc)), 0);
	assert_true(s.done);
	assert_true(s.usage.present);
	assert_int_equal(s.usage.input, 10);
	assert_int_equal(s.usage.output, 64);
	lc_sse_free(&s);
}

static const char ANTHROPIC_SSE[] =
	"event: message_start\n"
	"data: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"type\":\"message\",\"role\":\"assistant\","
	"\"model\":\"claude-sonnet-4-5-20250929\",\"content\":[],\"stop_reason\":null,\"usage\":{\"input_tokens\":25,"
	"\"cache_creation_input_tokens\":100,\"cache_read_input_tokens\":2000,\"output_tokens\":1}}}\n\n"
	"event: ping\n"
	"data: {\"type\": \"ping\"}\n\n"
	"event: content_block_start\n"
	"data: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n"
	"event: content_block_delta\n"
	"data: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Hello\"}}\n\n"
	"event: content_block_stop\n"
	"data: {\"type\":\"content_block_stop\",\"index\":0}\n\n"
	"event: message_delta\n"
	"data: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\"},\"usage\":{\"output_tokens\":15}}\n\n"
	"event: message_delta\n"
	"data: {\"type\":\"message_delta\",\"delta\":{},\"usage\":{\"output_tokens\":42}}\n\n"
	"event: message_stop\n"
	"data: {\"type\":\"message_stop\"}\n\n";

static void test_sse_anthropic(void **state)
{
	struct lc_sse s;
	const char *mark;
	(void)state;

	for (size_t step = 0; step <= 50; step++) {
		expect_sse_steps(ANTHROPIC_SSE, step, 125, 2000, 42, "claude-sonnet-4-5-20250929");   /* cumulative: assigned, not added */
	}

	/* incrementally: after message_start the input side is known */
	mark = strstr(ANTHROPIC_SSE, "event: ping");
	lc_sse_init(&s);
	assert_int_equal(lc_sse_feed(&s, ANTHROPIC_SSE, (size_t)(mark - ANTHROPIC_SSE)), 0);
	assert_true(s.usage.present);
	assert_int_equal(s.usage.input, 125);
	assert_int_equal(s.usage.output, 1);
	assert_false(s.done);
	lc_sse_free(&s);

	/* message_delta with cumulative input fields (server tools) replaces them */
	const char *more = "data: {\"type\":\"message_start\",\"message\":{\"model\":\"claude-opus-4-1\",\"usage\":"
			   "{\"input_tokens\":10,\"cache_creation_input_tokens\":5,\"cache_read_input_tokens\":0,"
			   "\"output_tokens\":1}}}\n\n"
			   "data: {\"type\":\"message_delta\",\"usage\":{\"input_tokens\":300,\"cache_read_input_tokens\":40,"
			   "\"output_tokens\":20,\"server_tool_use\":{\"web_search_requests\":1}}}\n\n"
			   "data: {\"type\":\"message_delta\",\"usage\":{\"output_tokens\":25,\"cache_creation_input_tokens\":"
			   "null}}\n\n";
	lc_sse_init(&s);
	assert_int_equal(lc_sse_feed(&s, more, strlen(more)), 0);
	assert_int_equal(s.usage.input, 305);   /* 300 input + 5 cache creation kept from message_start */
	assert_int_equal(s.usage.cached_input, 40);
	assert_int_equal(s.usage.output, 25);
	assert_false(s.done);
	lc_sse_free(&s);
}

static void test_sse_robustness(void **state)
{
	struct lc_sse s;
	(void)state;

	/* non-JSON data, JSON that is not an object, empty data, unknown fields */
	const char *junk = "data: hello world\n\n"
			   "data: [1,2]\n\n"
			   "data:\n\n"
			   "data\n\n"
			   "retry: 1000\nid: 7\nevent: whatever\n\n"
			   "foo: bar\n\n"
			   "data: {\"usage\":{\"prompt_tokens\":\"x\"}}\n\n"
			   "data: {\"type\":\"message_delta\",\"usage\":{\"output_tokens\":-4}}\n\n"
			   "\n\n\n";
	lc_sse_init(&s);
	assert_int_equal(lc_sse_feed(&s, junk, strlen(junk)), 0);
	assert_int_equal(s.errors, 4);
	assert_false(s.usage.present);
	assert_false(s.done);
	lc_sse_free(&s);

	/* one event over several data: lines is joined with LF */
	const char *multi = "event: message_start\n"
			    "data: {\"type\":\"message_start\",\n"
			    "data:\"message\":{\"model\":\"claude\",\n"
			    "data: \"usage\":{\"input_tokens\":3,\"output_tokens\":1}}}\n"
			    ": comment inside the event\n"
			    "\n";
	for (size_t step = 1; step < 8; step++) {
		lc_sse_init(&s);
		assert_int_equal(sse_feed_steps(&s, multi, strlen(multi), step), 0);
		assert_true(s.usage.present);
		assert_int_equal(s.usage.input, 3);
		assert_string_equal(s.usage.model, "claude");
		lc_sse_free(&s);
	}

	/* a last event without its blank line counts only after lc_sse_finish */
	const char *open = "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":4,\"completion_tokens\":2}}";
	lc_sse_init(&s);
	assert_int_equal(lc_sse_feed(&s, open, strlen(open)), 0);
	assert_false(s.usage.present);
	lc_sse_finish(&s);
	assert_true(s.usage.present);
	assert_int_equal(s.usage.output, 2);
	lc_sse_free(&s);

	/* a line over the cap is dropped and counted; the next events still parse */
	{
		size_t n = LC_WIRE_MAX_BODY + 100;
		char *big = padded("data: ", 'a', n);
		lc_sse_init(&s);
		assert_int_equal(lc_sse_feed(&s, big, 1000), 0);
		assert_int_equal(lc_sse_feed(&s, big + 1000, n - 1000), -1);
		assert_int_equal(lc_sse_feed(&s, "aaaa\n\n", 6), 0);
		assert_int_equal(s.errors, 1);
		assert_int_equal(lc_sse_feed(&s, OPENAI_SSE, strlen(OPENAI_SSE)), 0);
		assert_true(s.usage.present);
		assert_int_equal(s.usage.output, 7);
		lc_sse_free(&s);

		/* the same through many data lines: the event's data is capped */
		lc_sse_init(&s);
		big[n - 1] = '\n';
		int rc = 0;
		for (int i = 0; i < 3; i++) {
			size_t line = LC_WIRE_MAX_BODY / 2;
			memcpy(big, "data: ", 6);
			big[line - 1] = '\n';
			if (lc_sse_feed(&s, big, line))
				rc = -1;
		}
		assert_int_equal(rc, -1);
		assert_int_equal(lc_sse_feed(&s, "data: more\n\n", 12), 0);
		assert_int_equal(s.errors, 1);
		assert_int_equal(lc_sse_feed(&s, ANTHROPIC_SSE, strlen(ANTHROPIC_SSE)), 0);
		assert_int_equal(s.usage.output, 42);
		lc_sse_free(&s);
		free(big);
	}
}

/* ---- HTTP/1.1 response ------------------------------------------------------------- */

static const char CHAT_JSON[] = "{\"id\":\"chatcmpl-9\",\"object\":\"chat.completion\",\"model\":\"gpt-4o-mini\","
				"\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":\"Hi\"}}],"
				"\"usage\":{\"prompt_tokens\":31,\"completion_tokens\":9,\"total_tokens\":40,"
				"\"prompt_tokens_details\":{\"cached_tokens\":0}}}";

static void check_chat_usage(const struct lc_usage *u)
{
	assert_true(u->present);
	assert_int_equal(u->input, 31);
	assert_int_equal(u->cached_input, 0);
	assert_int_equal(u->output, 9);
	assert_string_equal(u->model, "gpt-4o-mini");
}

/* Ollama's native API: /api/chat and /api/generate are priced; options.num_predict caps the output
 * (-1, its default, and -2 set no cap); a stream unless "stream": false; the usage is in the final
 * object (done: true), the last NDJSON line of a stream, read in any split. */
#define OLLAMA_NDJSON                                                                                         \
	"{\"model\":\"llama3.2\",\"created_at\":\"2023-08-04T08:52:19.385406455-07:00\",\"response\":\"The\",\"done\":false}\n" \
	"{\"model\":\"llama3.2\",\"created_at\":\"2023-08-04T08:52:19.385406455-07:00\",\"response\":\" sky\",\"done\":false}\r\n" \
	"\n"                                                                                                   \
	"{\"model\":\"llama3.2\",\"created_at\":\"2023-08-04T19:22:45.499127Z\",\"response\":\"\",\"done\":true,"              \
	"\"total_duration\":10706818083,\"prompt_eval_count\":26,\"eval_count\":259,\"eval_duration\":4232710000}\n"
static void test_ollama_native(void **state)
{
	static const size_t sizes[] = {1, 7, 3, 0x40, 0};
	struct lc_reqinfo ri;
	struct lc_usage u;
	struct bytes b = {0};
	size_t msglen;
	char err[256];
	(void)state;

	assert_int_equal(lc_api_from_path("/api/chat"), LC_API_OLLAMA);
	assert_int_equal(lc_api_from_path("/api/generate"), LC_API_OLLAMA);
	assert_int_equal(lc_api_from_path("/ollama/api/chat/"), LC_API_OLLAMA);
	assert_int_equal(lc_api_from_path("/api/tags"), LC_API_UNKNOWN);

	assert_int_equal(reqinfo("/api/chat", "{\"model\":\"llama3.2\",\"messages\":[],\"options\":{\"num_predict\":100}}",
				 &ri, err), 0);
	assert_int_equal(ri.api, LC_API_OLLAMA);
	assert_string_equal(ri.model, "llama3.2");
	assert_int_equal(ri.output_cap, 100);
	assert_true(ri.stream);
	assert_int_equal(reqinfo("/api/generate", "{\"model\":\"llama3.2\",\"prompt\":\"x\",\"stream\":false,"
				 "\"options\":{\"num_predict\":-1,\"temperature\":0}}", &ri, err), 0);
	assert_int_equal(ri.output_cap, -1);
	assert_false(ri.stream);
	assert_int_equal(reqinfo("/api/generate", "{\"model\":\"m\",\"options\":{\"num_predict\":-2}}", &ri, err), 0);
	assert_int_equal(ri.output_cap, -1);
	assert_int_equal(reqinfo("/api/generate", "{\"model\":\"m\",\"options\":{\"num_predict\":99999999999999999}}", &ri,
				 err), 0);
	assert_int_equal(ri.output_cap, (int64_t)1 << 40);   /* the cap every count is clamped to */
	assert_int_equal(reqinfo("/api/generate", "{\"model\":\"m\"}", &ri, err), 0);
	assert_int_equal(ri.output_cap, -1);
	expect_reqinfo_err("/api/chat", "{\"options\":{\"num_predict\":\"100\"}}", "options.num_predict");
	expect_reqinfo_err("/api/chat", "{\"options\":{\"num_predict\":1.5}}", "options.num_predict");
	expect_reqinfo_err("/api/chat", "{\"options\":[1]}", "options");

	/* the JSON answer (stream false) */
	usage_json("{\"model\":\"llama3.2\",\"created_at\":\"2023-08-04T19:22:45.499127Z\",\"response\":\"x\",\"done\":true,"
		   "\"context\":[1,2,3],\"prompt_eval_count\":26,\"eval_count\":290}", &u);
	assert_true(u.present);
	assert_int_equal(u.input, 26);
	assert_int_equal(u.cached_input, 0);
	assert_int_equal(u.output, 290);
	assert_string_equal(u.model, "llama3.2");
	/* a count that is not a count is no usage (settle charges the estimate) */
	usage_json("{\"model\":\"llama3.2\",\"done\":true,\"prompt_eval_count\":-3,\"eval_count\":290}", &u);
	assert_false(u.present);
	usage_json("{\"model\":\"llama3.2\",\"embeddings\":[[0.1]],\"prompt_eval_count\":8}", &u);
	assert_true(u.present);
	assert_int_equal(u.input, 8);
	assert_int_equal(u.output, 0);

	/* the stream: NDJSON, chunked, in every split */
	b_str(&b, "HTTP/1.1 200 OK\r\nContent-Type: application/x-ndjson\r\nTransfer-Encoding: chunked\r\n\r\n");
	chunk_encode(&b, OLLAMA_NDJSON, strlen(OLLAMA_NDJSON), sizes, false);
	b_str(&b, "\r\n");
	msglen = b.n;
	for (size_t step = 0; step <= 40; step++) {
		struct lc_resp r;

		resp_steps_done(&r, &b, step, msglen);
		assert_true(r.sse);
		assert_true(r.usage.present);
		assert_int_equal(r.usage.input, 26);
		assert_int_equal(r.usage.output, 259);
		assert_string_equal(r.usage.model, "llama3.2");
		lc_resp_free(&r);
	}
	free(b.p);
	/* the same bytes as SSE are not NDJSON: no usage */
	{
		struct lc_sse sse;

		lc_sse_init(&sse);
		lc_sse_feed(&sse, OLLAMA_NDJSON, strlen(OLLAMA_NDJSON));
		lc_sse_finish(&sse);
		assert_false(sse.usage.present);
		lc_sse_free(&sse);
		sse.ndjson = true;
		lc_sse_feed(&sse, OLLAMA_NDJSON, strlen(OLLAMA_NDJSON) - 1);   /* no final newline */
		lc_sse_finish(&sse);
		assert_true(sse.usage.present);
		assert_true(sse.done);
		assert_int_equal(sse.usage.output, 259);
		lc_sse_free(&sse);
	}
}

/* OpenAI's web search: each web_search_call output item of a Responses answer is a call (a fee) */
static void test_usage_web_search_calls(void **state)
{
	struct lc_usage u;
	(void)state;

	usage_json("{\"id\":\"resp_1\",\"object\":\"response\",\"model\":\"gpt-4.1\",\"output\":["
		   "{\"type\":\"web_search_call\",\"id\":\"ws_1\",\"status\":\"completed\",\"action\":{\"type\":\"search\"}},"
		   "{\"type\":\"web_search_call\",\"id\":\"ws_2\",\"status\":\"completed\",\"action\":{\"type\":\"open_page\"}},"
		   "{\"type\":\"message\",\"id\":\"m\",\"content\":[{\"type\":\"output_text\",\"text\":\"web_search_call\"}]}],"
		   "\"usage\":{\"input_tokens\":100,\"input_tokens_details\":{\"cached_tokens\":0},\"output_tokens\":10}}", &u);
	assert_true(u.present);
	assert_int_equal(u.web_search, 2);
	/* a chat completion's annotations are no count of searches */
	usage_json("{\"object\":\"chat.completion\",\"model\":\"gpt-4o-search-preview\",\"choices\":[{\"message\":{"
		   "\"annotations\":[{\"type\":\"url_citation\"}]}}],\"usage\":{\"prompt_tokens\":10,\"completion_tokens\":5}}",
		   &u);
	assert_true(u.present);
	assert_int_equal(u.web_search, 0);
}

static void test_resp_json_content_length(void **state)
{
	struct bytes b = {0};
	size_t msglen;
	(void)state;

	b_printf(&b, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n"
		     "openai-processing-ms: 200\r\n\r\n%s", strlen(CHAT_JSON), CHAT_JSON);
	msglen = b.n;
	b_str(&b, "HTTP/1.1 200 OK\r\n");   /* next response on the connection */
	for (size_t step = 0; step <= b.n; step++) {
		struct lc_resp r;
		resp_steps_done(&r, &b, step, msglen);
		assert_int_equal(r.status, 200);
		assert_false(r.sse);
		assert_false(r.chunked);
		assert_int_equal(r.content_length, (int64_t)strlen(CHAT_JSON));
		check_chat_usage(&r.usage);
		lc_resp_free(&r);
	}
	b_free(&b);
}

static void test_resp_sse_chunked(void **state)
{
	static const size_t sizes[] = {1, 17, 3, 0x1ff, 64, 0};
	struct bytes b = {0};
	size_t msglen;
	(void)state;

	b_str(&b, "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream; charset=utf-8\r\n"
		  "Transfer-Encoding: chunked\r\ncache-control: no-cache\r\n\r\n");
	chunk_encode(&b, ANTHROPIC_SSE, strlen(ANTHROPIC_SSE), sizes, true);
	b_str(&b, "\r\n");
	msglen = b.n;
	b_str(&b, "XYZ");
	for (size_t step = 0; step <= 70; step++) {
		struct lc_resp r;
		resp_steps_done(&r, &b, step, msglen);
		assert_true(r.sse);
		assert_true(r.chunked);
		assert_int_equal(r.content_length, -1);
		assert_true(r.usage.present);
		assert_int_equal(r.usage.input, 125);
		assert_int_equal(r.usage.cached_input, 2000);
		assert_int_equal(r.usage.output, 42);
		lc_resp_free(&r);
	}

	/* usage is there while the stream is still open */
	{
		struct lc_resp r;
		const char *mark = strstr(b.p, "content_block_start");
		size_t used;
		assert_non_null(mark);
		lc_resp_init(&r, false);
		assert_int_equal(lc_resp_feed(&r, b.p, (size_t)(mark - b.p), &used), LC_PARSE_MORE);
		assert_true(r.usage.present);
		assert_int_equal(r.usage.input, 125);
		assert_int_equal(r.usage.output, 1);
		/* and the connection dies: ERROR, but what arrived is kept */
		assert_int_equal(lc_resp_eof(&r), LC_PARSE_ERROR);
		assert_int_equal(r.state, LC_PARSE_ERROR);
		assert_true(r.usage.present);
		assert_int_equal(r.usage.input, 125);
		lc_resp_free(&r);
	}
	b_free(&b);
}

static void gzip_case(const char *ctype, const char *body, int wbits, const char *ce, bool chunked,
		      void (*check)(const struct lc_usage *))
{
	static const size_t sizes[] = {5, 1, 33, 0};
	struct bytes z = {0}, b = {0};
	size_t msglen;

	zcompress(&z, body, strlen(body), wbits);
	b_printf(&b, "HTTP/1.1 200 OK\r\nContent-Type: %s\r\nContent-Encoding: %s\r\n", ctype, ce);
	if (chunked) {
		b_str(&b, "Transfer-Encoding: chunked\r\n\r\n");
		chunk_encode(&b, z.p, z.n, sizes, false);
		b_str(&b, "\r\n");
	} else {
		b_printf(&b, "Content-Length: %zu\r\n\r\n", z.n);
		b_add(&b, z.p, z.n);
	}
	msglen = b.n;
	b_str(&b, "HTTP/1.1 ");
	for (size_t step = 0; step <= 40; step++) {
		struct lc_resp r;
		resp_steps_done(&r, &b, step, msglen);
		check(&r.usage);
		lc_resp_free(&r);
	}
	b_free(&z);
	b_free(&b);
}

static void check_anthropic_stream(const struct lc_usage *u)
{
	assert_true(u->present);
	assert_int_equal(u->input, 125);
	assert_int_equal(u->cached_input, 2000);
	assert_int_equal(u->output, 42);
}

static void test_resp_gzip_deflate(void **state)
{
	(void)state;
	gzip_case("application/json", CHAT_JSON, 15 + 16, "gzip", true, check_chat_usage);
	gzip_case("application/json", CHAT_JSON, 15 + 16, "gzip", false, check_chat_usage);
	gzip_case("application/json", CHAT_JSON, 15 + 16, "x-gzip", false, check_chat_usage);
	gzip_case("application/json", CHAT_JSON, 15, "deflate", true, check_chat_usage);   /* zlib-wrapped */
	gzip_case("application/json", CHAT_JSON, -15, "deflate", true, check_chat_usage);  /* raw deflate */
	gzip_case("application/json", CHAT_JSON, -15, "Deflate", false, check_chat_usage);
	gzip_case("text/event-stream", ANTHROPIC_SSE, 15 + 16, "gzip", true, check_anthropic_stream);
	gzip_case("text/event-stream", ANTHROPIC_SSE, -15, "deflate", false, check_anthropic_stream);
}

static void test_resp_gzip_members_and_garbage(void **state)
{
	struct bytes z = {0}, b = {0};
	struct lc_resp r;
	size_t used, half = strlen(CHAT_JSON) / 2;
	(void)state;

	/* two gzip members back to back make one body */
	zcompress(&z, CHAT_JSON, half, 31);
	zcompress(&z, CHAT_JSON + half, strlen(CHAT_JSON) - half, 31);
	b_printf(&b, "HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: %zu\r\n\r\n", z.n);
	b_add(&b, z.p, z.n);
	lc_resp_init(&r, false);
	assert_int_equal(lc_resp_feed(&r, b.p, b.n, &used), LC_PARSE_DONE);
	check_chat_usage(&r.usage);
	lc_resp_free(&r);
	b_free(&b);

	/* zero padding after the last member (seen from some servers) is ignored */
	b_printf(&b, "HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n%zx\r\n", z.n + 16);
	b_add(&b, z.p, z.n);
	b_add(&b, "\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0", 16);
	b_str(&b, "\r\n0\r\n\r\n");
	lc_resp_init(&r, false);
	{
		size_t consumed;
		assert_int_equal(resp_feed_steps(&r, b.p, b.n, 3, &consumed), LC_PARSE_DONE);
		assert_int_equal(consumed, b.n);
	}
	check_chat_usage(&r.usage);
	lc_resp_free(&r);
	b_free(&b);

	/* a corrupt gzip body is framed to its end, only without usage */
	z.p[z.n / 2] ^= 0x55;
	z.p[z.n / 2 + 1] ^= 0xff;
	z.p[3] = (char)0xff;   /* FLG with reserved bits: header error */
	b_printf(&b, "HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: %zu\r\n\r\n", z.n);
	b_add(&b, z.p, z.n);
	expect_framed_no_usage(&b);
	b_free(&z);

	/* an encoding we lack: framed, no usage */
	b_printf(&b, "HTTP/1.1 200 OK\r\nContent-Encoding: br\r\nContent-Length: %zu\r\n\r\n%s", strlen(CHAT_JSON),
		 CHAT_JSON);
	expect_framed_no_usage(&b);

	/* a gzip bomb cannot grow memory past the cap: usage is given up */
	{
		size_t n = LC_WIRE_MAX_BODY + 4096;
		char *zeros = calloc(1, n);
		assert_non_null(zeros);
		zcompress(&z, zeros, n, 31);
		free(zeros);
		assert_true(z.n < 100000);
		b_printf(&b, "HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: %zu\r\n\r\n", z.n);
		b_add(&b, z.p, z.n);
		expect_framed_no_usage(&b);
		b_free(&z);
	}
}

static void test_resp_interim_and_no_body(void **state)
{
	struct bytes b = {0};
	struct lc_resp r;
	size_t used, msglen;
	(void)state;

	b_str(&b, "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>; rel=preload\r\n\r\n");
	b_printf(&b, "HTTP/1.1 200 OK\r\nContent-Length: %zu\r\n\r\n%s", strlen(CHAT_JSON), CHAT_JSON);
	for (size_t step = 0; step < 30; step++) {
		resp_steps_done(&r, &b, step, b.n);
		assert_int_equal(r.status, 200);
		check_chat_usage(&r.usage);
		lc_resp_free(&r);
	}
	b_free(&b);

	/* after 100 Continue alone, the final status is not known yet */
	lc_resp_init(&r, false);
	assert_int_equal(lc_resp_feed(&r, "HTTP/1.1 100 Continue\r\n\r\n", 25, &used), LC_PARSE_MORE);
	assert_int_equal(used, 25);
	assert_int_equal(r.status, 0);
	lc_resp_free(&r);

	/* HEAD: Content-Length describes a body that is not sent */
	b_str(&b, "HTTP/1.1 200 OK\r\nContent-Length: 500\r\n\r\n");
	msglen = b.n;
	b_str(&b, "HTTP/1.1 204 No Content\r\n\r\n");
	lc_resp_init(&r, true);
	assert_int_equal(lc_resp_feed(&r, b.p, b.n, &used), LC_PARSE_DONE);
	assert_int_equal(used, msglen);
	assert_int_equal(r.content_length, 500);
	assert_false(r.usage.present);
	lc_resp_free(&r);

	/* 204 and 304: no body whatever the headers say */
	lc_resp_init(&r, false);
	assert_int_equal(lc_resp_feed(&r, b.p + msglen, b.n - msglen, &used), LC_PARSE_DONE);
	assert_int_equal(r.status, 204);
	lc_resp_free(&r);
	const char *nm = "HTTP/1.1 304 Not Modified\r\nETag: \"v7\"\r\nTransfer-Encoding: chunked\r\n\r\nrest";
	lc_resp_init(&r, false);
	assert_int_equal(lc_resp_feed(&r, nm, strlen(nm), &used), LC_PARSE_DONE);
	assert_int_equal(used, strlen(nm) - 4);
	assert_int_equal(r.status, 304);
	lc_resp_free(&r);

	/* Content-Length: 0 */
	lc_resp_init(&r, false);
	assert_int_equal(lc_resp_feed(&r, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", 38, &used), LC_PARSE_DONE);
	assert_false(r.usage.present);
	lc_resp_free(&r);
	b_free(&b);
}

static void test_resp_close_delimited(void **state)
{
	struct bytes b = {0};
	struct lc_resp r;
	size_t consumed;
	(void)state;

	b_printf(&b, "HTTP/1.0 200 OK\nContent-Type: application/json\n\n%s", CHAT_JSON);   /* bare LF head */
	for (size_t step = 0; step < 20; step++) {
		lc_resp_init(&r, false);
		assert_int_equal(resp_feed_steps(&r, b.p, b.n, step, &consumed), LC_PARSE_MORE);
		assert_int_equal(consumed, b.n);
		assert_false(r.usage.present);
		assert_int_equal(lc_resp_eof(&r), LC_PARSE_DONE);
		assert_int_equal(r.state, LC_PARSE_DONE);
		check_chat_usage(&r.usage);
		assert_int_equal(lc_resp_eof(&r), LC_PARSE_DONE);
		lc_resp_free(&r);
	}
	b_free(&b);

	/* close-delimited SSE: the last event lacks its blank line */
	b_str(&b, "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n");
	b_str(&b, "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":6}}");
	lc_resp_init(&r, false);
	assert_int_equal(resp_feed_steps(&r, b.p, b.n, 3, &consumed), LC_PARSE_MORE);
	assert_int_equal(lc_resp_eof(&r), LC_PARSE_DONE);
	assert_true(r.usage.present);
	assert_int_equal(r.usage.input, 5);
	assert_int_equal(r.usage.output, 6);
	lc_resp_free(&r);
	b_free(&b);
}

static void test_resp_provider_error(void **state)
{
	static const char body[] = "{\"type\":\"error\",\"error\":{\"type\":\"rate_limit_error\",\"message\":\"slow down\"}}";
	struct bytes b = {0};
	struct lc_resp r;
	size_t used;
	(void)state;

	b_printf(&b, "HTTP/1.1 429 Too Many Requests\r\nretry-after: 7\r\ncontent-type: application/json\r\n"
		     "content-length: %zu\r\n\r\n%s", strlen(body), body);
	lc_resp_init(&r, false);
	assert_int_equal(lc_resp_feed(&r, b.p, b.n, &used), LC_PARSE_DONE);
	assert_int_equal(r.status, 429);
	assert_false(r.usage.present);
	lc_resp_free(&r);
	b_free(&b);
}

static void expect_resp_error(const char *msg, size_t n, bool eof)
{
	for (size_t step = 0; step < 4; step++) {
		struct lc_resp r;
		size_t consumed, used;
		int rc;

		lc_resp_init(&r, false);
		rc = resp_feed_steps(&r, msg, n, step ? step : n, &consumed);
		if (eof && rc == LC_PARSE_MORE)
			rc = lc_resp_eof(&r);
		assert_int_equal(rc, LC_PARSE_ERROR);
		assert_int_equal(r.state, LC_PARSE_ERROR);
		assert_int_equal(lc_resp_feed(&r, "x", 1, &used), LC_PARSE_ERROR);
		assert_int_equal(used, 0);
		assert_int_equal(lc_resp_eof(&r), LC_PARSE_ERROR);
		lc_resp_free(&r);
	}
}

#define RESP_ERR(s) expect_resp_error(s, sizeof(s) - 1, false)
#define RESP_ERR_EOF(s) expect_resp_error(s, sizeof(s) - 1, true)

static void test_resp_malformed(void **state)
{
	(void)state;
	RESP_ERR("<html><body>502 Bad Gateway</body></html>");
	RESP_ERR("\x16\x03\x03\x00\x2a\x02\x00\x00");
	RESP_ERR("HTTP/2 200\r\n\r\n");
	RESP_ERR("HTTP/1.1 20 OK\r\n\r\n");
	RESP_ERR("HTTP/1.1 2000 OK\r\n\r\n");
	RESP_ERR("HTTP/1.1 abc OK\r\n\r\n");
	RESP_ERR("HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n");
	RESP_ERR("HTTP/1.1 200 OK\r\nContent-Length: 4\r\nContent-Length: 5\r\n\r\n");
	RESP_ERR("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nq\r\n");
	RESP_ERR("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabc\r\n");
	RESP_ERR("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n8000000000000000\r\n");
	/* cut short */
	RESP_ERR_EOF("");
	RESP_ERR_EOF("HTTP/1.1 200 OK\r\nContent-Le");
	RESP_ERR_EOF("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n12345");
	RESP_ERR_EOF("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n12345\r\n");
	RESP_ERR_EOF("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nTrailer: x\r\n");
	RESP_ERR_EOF("HTTP/1.1 100 Continue\r\n\r\n");
}

static void test_resp_chunked_trailers_and_caps(void **state)
{
	struct lc_resp r;
	struct bytes b = {0};
	size_t used, consumed;
	(void)state;

	b_printf(&b, "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n");   /* TE coding we do not decode */
	b_str(&b, "3;x=y\r\nabc\r\n0\r\nX-Trailer: 1\r\nServer-Timing: db;dur=53\r\n\r\nNEXT");
	lc_resp_init(&r, false);
	assert_int_equal(resp_feed_steps(&r, b.p, b.n, 1, &consumed), LC_PARSE_DONE);
	assert_int_equal(consumed, b.n - 4);
	assert_true(r.chunked);
	assert_false(r.usage.present);
	lc_resp_free(&r);
	b_free(&b);

	/* bare LF framing (lenient, like curl) and stacked codings (framed, no usage) */
	b_printf(&b, "HTTP/1.1 200 OK\nTransfer-Encoding: chunked\n\n%zx\n%s\n0\nX-T: 1\n\nNEXT",
		 strlen(CHAT_JSON), CHAT_JSON);
	lc_resp_init(&r, false);
	assert_int_equal(resp_feed_steps(&r, b.p, b.n, 1, &consumed), LC_PARSE_DONE);
	assert_int_equal(consumed, b.n - 4);
	check_chat_usage(&r.usage);
	lc_resp_free(&r);
	b_free(&b);
	b_printf(&b, "HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Encoding: gzip\r\n"
		     "Content-Length: %zu\r\n\r\n%s", strlen(CHAT_JSON), CHAT_JSON);
	expect_framed_no_usage(&b);

	/* a head that never ends */
	{
		size_t n = LC_WIRE_MAX_HEAD + 10;
		char *big = padded("HTTP/1.1 200 OK\r\nX: ", 'a', n);
		lc_resp_init(&r, false);
		assert_int_equal(lc_resp_feed(&r, big, n, &used), LC_PARSE_ERROR);
		lc_resp_free(&r);
		free(big);
	}

	/* a JSON body over the cap: framed to the end, usage given up */
	{
		size_t n = LC_WIRE_MAX_BODY + 10;
		char *big = padded("", ' ', n);
		char head[128];
		memcpy(big + n - strlen(CHAT_JSON), CHAT_JSON, strlen(CHAT_JSON));
		snprintf(head, sizeof(head), "HTTP/1.1 200 OK\r\nContent-Length: %zu\r\n\r\n", n);
		lc_resp_init(&r, false);
		assert_int_equal(lc_resp_feed(&r, head, strlen(head), &used), LC_PARSE_MORE);
		assert_int_equal(lc_resp_feed(&r, big, n, &used), LC_PARSE_DONE);
		assert_int_equal(used, n);
		assert_false(r.usage.present);
		lc_resp_free(&r);
		/* just under the cap it is read */
		snprintf(head, sizeof(head), "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n", LC_WIRE_MAX_BODY);
		lc_resp_init(&r, false);
		assert_int_equal(lc_resp_feed(&r, head, strlen(head), &used), LC_PARSE_MORE);
		assert_int_equal(lc_resp_feed(&r, big + 10, LC_WIRE_MAX_BODY, &used), LC_PARSE_DONE);
		check_chat_usage(&r.usage);
		lc_resp_free(&r);
		free(big);
	}

	/* a long SSE stream stays bounded: many events, usage at the end */
	{
		struct bytes s = {0};
		b_str(&s, "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\r\n");
		lc_resp_init(&r, false);
		assert_int_equal(lc_resp_feed(&r, s.p, s.n, &used), LC_PARSE_MORE);
		const char *ev = "data: {\"object\":\"chat.completion.chunk\",\"choices\":[{\"delta\":{\"content\":\"tok\"}}],"
				 "\"usage\":null}\n\n";
		for (int i = 0; i < 100000; i++)
			assert_int_equal(lc_resp_feed(&r, ev, strlen(ev), &used), LC_PARSE_MORE);
		assert_int_equal(lc_resp_feed(&r, OPENAI_SSE, strlen(OPENAI_SSE), &used), LC_PARSE_MORE);
		assert_int_equal(r.usage.output, 7);
		assert_int_equal(lc_resp_eof(&r), LC_PARSE_DONE);
		assert_int_equal(r.usage.output, 7);
		lc_resp_free(&r);
		b_free(&s);
	}
}

/* Garbage and damaged messages in random splits: any state is fine, a crash
 * (or an ASan report) is not. */
static void test_fuzz_no_crash(void **state)
{
	struct bytes seeds[4] = {{0}};
	(void)state;

	make_cl_request(&seeds[0]);
	b_str(&seeds[1], "POST /v1/messages HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n");
	b_printf(&seeds[2], "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
			    "%zx\r\n%s\r\n0\r\n\r\n", strlen(ANTHROPIC_SSE), ANTHROPIC_SSE);
	{
		struct bytes z = {0};
		zcompress(&z, CHAT_JSON, strlen(CHAT_JSON), 31);
		b_printf(&seeds[3], "HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: %zu\r\n\r\n", z.n);
		b_add(&seeds[3], z.p, z.n);
		b_free(&z);
	}

	for (int iter = 0; iter < 3000; iter++) {
		struct bytes *seed = &seeds[iter % 4];
		char *m = malloc(seed->n + 64);
		size_t n = seed->n, consumed;
		assert_non_null(m);
		memcpy(m, seed->p, n);
		if (iter % 7 == 0) {
			n = rnd() % (seed->n + 64);
			for (size_t i = 0; i < n; i++)
				m[i] = (char)rnd();
		} else {
			for (int k = 1 + rnd() % 4; k > 0; k--)
				m[rnd() % n] = (char)rnd();
			if (iter % 3 == 0)
				n = rnd() % (n + 1);   /* truncate */
		}

		struct lc_reqparse p;
		lc_reqparse_init(&p);
		int rc = req_feed_steps(&p, m, n, 0, &consumed);
		assert_true(rc >= LC_PARSE_H2 && rc <= LC_PARSE_DONE);
		if (rc == LC_PARSE_DONE) {
			struct lc_reqinfo ri;
			char err[128];
			const char *ids[] = {"body:user", "body:a.b", NULL};
			lc_reqinfo_parse(LC_FMT_OPENAI, p.path, p.body.data, p.body.len, ids, NULL, NULL, &ri, err,
					 sizeof(err));
		}
		lc_reqparse_free(&p);

		struct lc_resp r;
		lc_resp_init(&r, iter % 11 == 0);
		rc = resp_feed_steps(&r, m, n, 0, &consumed);
		if (rc == LC_PARSE_MORE)
			rc = lc_resp_eof(&r);
		assert_true(rc == LC_PARSE_DONE || rc == LC_PARSE_ERROR);
		assert_true(r.usage.input >= 0 && r.usage.output >= 0 && r.usage.cached_input >= 0);
		lc_resp_free(&r);

		struct lc_sse s;
		lc_sse_init(&s);
		sse_feed_steps(&s, m, n, 0);
		lc_sse_finish(&s);
		lc_sse_free(&s);

		struct lc_usage u;
		lc_usage_from_json(m, n, &u);
		free(m);
	}
	for (int i = 0; i < 4; i++)
		b_free(&seeds[i]);
}

/* ---- synthetic responses ---------------------------------------------------------- */

static const char MSG[] = "llmcap: monthly cost limit of $50.00 for key 'ci' reached ($50.02 used); "
			  "resets 2026-12-01T00:00:00Z";

static void expect_response(enum lc_format fmt, int status, const char *limit, int64_t ra, bool retry,
			    const char *want)
{
	struct lc_buf out;
	lc_buf_init(&out, 1 << 20);
	assert_int_equal(lc_synth_response(fmt, status, MSG, limit, ra, retry, &out), 0);
	assert_string_equal(out.data, want);
	assert_int_equal(out.len, strlen(want));

	/* and it is a response our own parser (and so any HTTP client) reads to the end */
	struct lc_resp r;
	size_t used;
	lc_resp_init(&r, false);
	assert_int_equal(lc_resp_feed(&r, out.data, out.len, &used), LC_PARSE_DONE);
	assert_int_equal(used, out.len);
	assert_int_equal(r.status, status);
	assert_false(r.usage.present);
	lc_resp_free(&r);
	lc_buf_free(&out);
}

static void test_synth_429(void **state)
{
	(void)state;
	expect_response(LC_FMT_OPENAI, 429, "key:ci:cost:lifetime", 86400, false,
			"HTTP/1.1 429 Too Many Requests\r\n"
			"content-type: application/json\r\n"
			"content-length: 195\r\n"
			"retry-after: 86400\r\n"
			"x-should-retry: false\r\n"
			"x-llmcap-limit: key:ci:cost:lifetime\r\n"
			"connection: close\r\n"
			"\r\n"
			"{\"error\":{\"message\":\"llmcap: monthly cost limit of $50.00 for key 'ci' reached ($50.02 used); "
			"resets 2026-12-01T00:00:00Z\",\"type\":\"insufficient_quota\",\"param\":null,"
			"\"code\":\"llmcap_limit_reached\"}}");
	expect_response(LC_FMT_ANTHROPIC, 429, NULL, 0, true,
			"HTTP/1.1 429 Too Many Requests\r\n"
			"content-type: application/json\r\n"
			"content-length: 165\r\n"
			"retry-after: 1\r\n"
			"connection: close\r\n"
			"\r\n"
			"{\"type\":\"error\",\"error\":{\"type\":\"rate_limit_error\",\"message\":\"llmcap: monthly cost limit "
			"of $50.00 for key 'ci' reached ($50.02 used); resets 2026-12-01T00:00:00Z\"}}");
	/* a minute limit: worth retrying, and the reset is near */
	expect_response(LC_FMT_OPENAI, 429, "", -5, true,
			"HTTP/1.1 429 Too Many Requests\r\n"
			"content-type: application/json\r\n"
			"content-length: 195\r\n"
			"retry-after: 1\r\n"
			"connection: close\r\n"
			"\r\n"
			"{\"error\":{\"message\":\"llmcap: monthly cost limit of $50.00 for key 'ci' reached ($50.02 used); "
			"resets 2026-12-01T00:00:00Z\",\"type\":\"insufficient_quota\",\"param\":null,"
			"\"code\":\"llmcap_limit_reached\"}}");
}

static void test_synth_401_503_400(void **state)
{
	(void)state;
	expect_response(LC_FMT_OPENAI, 401, NULL, 99, false,
			"HTTP/1.1 401 Unauthorized\r\n"
			"content-type: application/json\r\n"
			"content-length: 193\r\n"
			"x-should-retry: false\r\n"
			"connection: close\r\n"
			"\r\n"
			"{\"error\":{\"message\":\"llmcap: monthly cost limit of $50.00 for key 'ci' reached ($50.02 used); "
			"resets 2026-12-01T00:00:00Z\",\"type\":\"invalid_request_error\",\"param\":null,"
			"\"code\":\"invalid_api_key\"}}");
	expect_response(LC_FMT_ANTHROPIC, 401, NULL, 99, false,
			"HTTP/1.1 401 Unauthorized\r\n"
			"content-type: application/json\r\n"
			"content-length: 169\r\n"
			"x-should-retry: false\r\n"
			"connection: close\r\n"
			"\r\n"
			"{\"type\":\"error\",\"error\":{\"type\":\"authentication_error\",\"message\":\"llmcap: monthly cost "
			"limit of $50.00 for key 'ci' reached ($50.02 used); resets 2026-12-01T00:00:00Z\"}}");
	expect_response(LC_FMT_OPENAI, 503, NULL, 30, true,
			"HTTP/1.1 503 Service Unavailable\r\n"
			"content-type: application/json\r\n"
			"content-length: 187\r\n"
			"retry-after: 30\r\n"
			"connection: close\r\n"
			"\r\n"
			"{\"error\":{\"message\":\"llmcap: monthly cost limit of $50.00 for key 'ci' reached ($50.02 used); "
			"resets 2026-12-01T00:00:00Z\",\"type\":\"server_error\",\"param\":null,"
			"\"code\":\"llmcap_unavailable\"}}");
	expect_response(LC_FMT_ANTHROPIC, 503, NULL, 30, true,
			"HTTP/1.1 503 Service Unavailable\r\n"
			"content-type: application/json\r\n"
			"content-length: 158\r\n"
			"retry-after: 30\r\n"
			"connection: close\r\n"
			"\r\n"
			"{\"type\":\"error\",\"error\":{\"type\":\"api_error\",\"message\":\"llmcap: monthly cost "
			"limit of $50.00 for key 'ci' reached ($50.02 used); resets 2026-12-01T00:00:00Z\"}}");
	expect_response(LC_FMT_OPENAI, 400, NULL, 30, false,
			"HTTP/1.1 400 Bad Request\r\n"
			"content-type: application/json\r\n"
			"content-length: 196\r\n"
			"x-should-retry: false\r\n"
			"connection: close\r\n"
			"\r\n"
			"{\"error\":{\"message\":\"llmcap: monthly cost limit of $50.00 for key 'ci' reached ($50.02 used); "
			"resets 2026-12-01T00:00:00Z\",\"type\":\"invalid_request_error\",\"param\":null,"
			"\"code\":\"llmcap_bad_request\"}}");
	expect_response(LC_FMT_ANTHROPIC, 400, NULL, 30, false,
			"HTTP/1.1 400 Bad Request\r\n"
			"content-type: application/json\r\n"
			"content-length: 170\r\n"
			"x-should-retry: false\r\n"
			"connection: close\r\n"
			"\r\n"
			"{\"type\":\"error\",\"error\":{\"type\":\"invalid_request_error\",\"message\":\"llmcap: monthly cost "
			"limit of $50.00 for key 'ci' reached ($50.02 used); resets 2026-12-01T00:00:00Z\"}}");
}

static void test_synth_escaping_and_errors(void **state)
{
	struct lc_buf out;
	json_t *j;
	json_error_t e;
	(void)state;

	/* quotes, backslashes, control bytes and invalid UTF-8 still give valid JSON */
	lc_buf_init(&out, 1 << 16);
	assert_int_equal(lc_synth_body(LC_FMT_OPENAI, 429, "a \"q\" \\ \n\t caf\xc3\xa9 bad\xff\xfe end", &out), 0);
	j = json_loadb(out.data, out.len, 0, &e);
	assert_non_null(j);
	assert_string_equal(json_string_value(json_object_get(json_object_get(j, "error"), "message")),
			    "a \"q\" \\ \n\t caf\xc3\xa9 bad?? end");
	assert_true(json_is_null(json_object_get(json_object_get(j, "error"), "param")));
	json_decref(j);
	/* it appends */
	size_t before = out.len;
	assert_int_equal(lc_synth_body(LC_FMT_ANTHROPIC, 429, NULL, &out), 0);
	assert_string_equal(out.data + before,
			    "{\"type\":\"error\",\"error\":{\"type\":\"rate_limit_error\",\"message\":\"\"}}");

	/* unknown status or format: -1, out untouched */
	before = out.len;
	assert_int_equal(lc_synth_body(LC_FMT_OPENAI, 418, "x", &out), -1);
	assert_int_equal(lc_synth_body((enum lc_format)9, 429, "x", &out), -1);
	assert_int_equal(lc_synth_response(LC_FMT_OPENAI, 200, "x", NULL, 1, true, &out), -1);
	assert_int_equal(out.len, before);
	lc_buf_free(&out);

	/* too small an output buffer: -1, untouched */
	lc_buf_init(&out, 64);
	assert_int_equal(lc_buf_addstr(&out, "keep"), 0);
	assert_int_equal(lc_synth_response(LC_FMT_OPENAI, 429, MSG, NULL, 1, false, &out), -1);
	assert_string_equal(out.data, "keep");
	lc_buf_free(&out);

	/* a limit name cannot inject headers */
	lc_buf_init(&out, 1 << 16);
	assert_int_equal(lc_synth_response(LC_FMT_OPENAI, 429, "m", "evil\r\nset-cookie: x\x7f\xc3\xa9", 5, false, &out), 0);
	assert_non_null(strstr(out.data, "x-llmcap-limit: evil__set-cookie: x___\r\nconnection: close\r\n\r\n"));
	assert_null(strstr(out.data, "\r\nset-cookie"));
	lc_buf_free(&out);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_format),
		cmocka_unit_test(test_api_from_path),
		cmocka_unit_test(test_req_content_length_every_split),
		cmocka_unit_test(test_req_pipelined),
		cmocka_unit_test(test_req_chunked_odd_sizes),
		cmocka_unit_test(test_req_te_overrides_cl_and_reuse),
		cmocka_unit_test(test_req_expect_continue),
		cmocka_unit_test(test_req_h2_preface),
		cmocka_unit_test(test_req_malformed),
		cmocka_unit_test(test_req_caps),
		cmocka_unit_test(test_req_header_lookup),
		cmocka_unit_test(test_req_long_target),
		cmocka_unit_test(test_reqinfo_chat),
		cmocka_unit_test(test_reqinfo_other_apis),
		cmocka_unit_test(test_reqinfo_errors),
		cmocka_unit_test(test_reqinfo_customer),
		cmocka_unit_test(test_usage_json),
		cmocka_unit_test(test_sse_openai_chat),
		cmocka_unit_test(test_sse_responses),
		cmocka_unit_test(test_sse_anthropic),
		cmocka_unit_test(test_sse_robustness),
		cmocka_unit_test(test_ollama_native),
		cmocka_unit_test(test_usage_web_search_calls),
		cmocka_unit_test(test_resp_json_content_length),
		cmocka_unit_test(test_resp_sse_chunked),
		cmocka_unit_test(test_resp_gzip_deflate),
		cmocka_unit_test(test_resp_gzip_members_and_garbage),
		cmocka_unit_test(test_resp_interim_and_no_body),
		cmocka_unit_test(test_resp_close_delimited),
		cmocka_unit_test(test_resp_provider_error),
		cmocka_unit_test(test_resp_malformed),
		cmocka_unit_test(test_resp_chunked_trailers_and_caps),
		cmocka_unit_test(test_fuzz_no_crash),
		cmocka_unit_test(test_synth_429),
		cmocka_unit_test(test_synth_401_503_400),
		cmocka_unit_test(test_synth_escaping_and_errors),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
