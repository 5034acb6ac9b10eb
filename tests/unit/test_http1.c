/* test_http1.c - the HTTP/1.1 framing core (shared-state/http1.c) on its own:
 * every chunked failure reported with its own reason (in one read and byte by
 * byte), the Content-Length / Transfer-Encoding merge and body rule, and the
 * head accumulator gathering a request and a response from many small reads.
 * Also the tree's one hex decoder and one UTF-8 check (shared-state/jscan.c).
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http1.h"
#include "jscan.h"
#include "wire.h"

/* ---- chunked ------------------------------------------------------------------ */

struct sink {
	char data[256];
	size_t len;
	bool refuse;
};

static int sink_add(void *ctx, const char *p, size_t n)
{
	struct sink *s = ctx;

	if (s->refuse || s->len + n > sizeof(s->data))
		return -1;
	memcpy(s->data + s->len, p, n);
	s->len += n;
	return 0;
}

/* Feeds msg in reads of `step` bytes (0: all at once); returns the last result,
 * *at the offset where the decoder stopped (end of body or failure). */
static int chunk_run(struct lc_h1_chunk *c, struct sink *s, const char *msg, size_t n, size_t step,
		     size_t *at)
{
	size_t off = 0, used;
	int rc = LC_H1_MORE;

	lc_h1_chunk_init(c);
	while (off < n) {
		size_t k = step && step < n - off ? step : n - off;

		rc = lc_h1_chunk_feed(c, msg + off, k, &used, sink_add, s);
		off += used;
		if (rc != LC_H1_MORE)
			break;
		assert_int_equal(used, k);
	}
	*at = off;
	return rc;
}

static char *repeat(const char *head, char ch, size_t n, const char *tail)
{
	size_t hl = strlen(head), tl = strlen(tail);
	char *s = malloc(hl + n + tl + 1);

	assert_non_null(s);
	memcpy(s, head, hl);
	memset(s + hl, ch, n);
	memcpy(s + hl + n, tail, tl + 1);
	return s;
}

static void test_chunk_ok(void **state)
{
	static const char msg[] = "5;ext=1\r\nhello\r\n1\n \n0\r\nX-Trailer: a\r\n\r\nGET /next";
	size_t body_end = strlen(msg) - strlen("GET /next");

	(void)state;
	for (size_t step = 0; step <= 7; step++) {
		struct lc_h1_chunk c;
		struct sink s = {0};
		size_t at;

		assert_int_equal(chunk_run(&c, &s, msg, strlen(msg), step, &at), LC_H1_DONE);
		assert_int_equal(at, body_end);   /* pipelined bytes stay with the caller */
		assert_int_equal(s.len, 6);
		assert_memory_equal(s.data, "hello ", 6);
		assert_int_equal(c.err, LC_H1_CHUNK_OK);
	}
}

/* Each failure: the reason, the offset where it is found, the same in every split. */
static void test_chunk_reasons(void **state)
{
	char *long_line = repeat("5;", 'x', LC_H1_CHUNK_LINE_MAX, "\r\nhello\r\n0\r\n\r\n");
	char *long_trailer = repeat("0\r\nX-Big: ", 'y', LC_H1_MAX_HEAD, "\r\n\r\n");
	const struct {
		const char *msg;
		enum lc_h1_chunk_err err;
		size_t at;
		bool refuse;
	} cases[] = {
		{"x\r\n", LC_H1_CHUNK_NO_HEX, 0, false},
		{"\r\n5\r\nhello\r\n0\r\n\r\n", LC_H1_CHUNK_NO_HEX, 0, false},
		{"1\r\na\r\n;\r\n", LC_H1_CHUNK_NO_HEX, 6, false},
		{"7fffffffffffffff\r\n", LC_H1_CHUNK_OK, 0, false},   /* INT64_MAX fits: MORE */
		{"8000000000000000\r\n", LC_H1_CHUNK_TOO_BIG, 15, false},
		{"10000000000000000\r\n", LC_H1_CHUNK_TOO_BIG, 16, false},
		{"0000000000000000000000ff\r\n", LC_H1_CHUNK_OK, 0, false},   /* leading zeros are no size */
		{"5x\r\nhello\r\n", LC_H1_CHUNK_BAD_SIZE, 1, false},
		{"-5\r\nhello\r\n", LC_H1_CHUNK_NO_HEX, 0, false},
		{"5\rX\nhello\r\n", LC_H1_CHUNK_BAD_SIZE_CRLF, 2, false},
		{"5;e\r\r\nhello", LC_H1_CHUNK_BAD_SIZE_CRLF, 4, false},
		{"5\r\nhelloX\r\n0\r\n\r\n", LC_H1_CHUNK_BAD_DATA_CRLF, 8, false},
		{"5\r\nhello\rX\n0\r\n\r\n", LC_H1_CHUNK_BAD_DATA_CRLF, 9, false},
		/* a cap is passed by the byte after it, which is taken */
		{long_line, LC_H1_CHUNK_LINE_TOO_LONG, LC_H1_CHUNK_LINE_MAX + 1, false},
		{long_trailer, LC_H1_CHUNK_TRAILER_TOO_LONG, 3 + LC_H1_MAX_HEAD + 1, false},
		{"0\r\n\rX", LC_H1_CHUNK_BAD_END, 4, false},
		{"0\r\nX-T: 1\r\n\rX", LC_H1_CHUNK_BAD_END, 12, false},
		{"5\r\nhello\r\n0\r\n\r\n", LC_H1_CHUNK_SINK, 3, true},
	};
	const char *seen[LC_H1_CHUNK_LAST] = {0};

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		for (size_t step = 0; step <= 3; step++) {
			struct lc_h1_chunk c;
			struct sink s = {.refuse = cases[i].refuse};
			size_t at, n = strlen(cases[i].msg);
			int rc = chunk_run(&c, &s, cases[i].msg, n, step, &at);

			if (cases[i].err == LC_H1_CHUNK_OK) {
				assert_int_equal(rc, LC_H1_MORE);
				continue;
			}
			if (rc != LC_H1_ERROR || c.err != cases[i].err || at != cases[i].at)
				fail_msg("case %zu step %zu: rc %d err %d (%s) at %zu, want err %d at %zu", i, step, rc,
					 c.err, lc_h1_chunk_strerror(c.err), at, cases[i].err, cases[i].at);
		}
		seen[cases[i].err] = lc_h1_chunk_strerror(cases[i].err);
	}
	free(long_line);
	free(long_trailer);

	/* fed again after the end, or after a failure */
	{
		struct lc_h1_chunk c;
		struct sink s = {0};
		size_t at, used;

		assert_int_equal(chunk_run(&c, &s, "0\r\n\r\n", 5, 0, &at), LC_H1_DONE);
		assert_int_equal(lc_h1_chunk_feed(&c, "1", 1, &used, sink_add, &s), LC_H1_ERROR);
		assert_int_equal(c.err, LC_H1_CHUNK_STATE);
		assert_int_equal(used, 0);
		assert_int_equal(chunk_run(&c, &s, "z", 1, 0, &at), LC_H1_ERROR);
		assert_int_equal(lc_h1_chunk_feed(&c, "0\r\n\r\n", 5, &used, sink_add, &s), LC_H1_ERROR);
		assert_int_equal(c.err, LC_H1_CHUNK_STATE);
		seen[LC_H1_CHUNK_STATE] = lc_h1_chunk_strerror(c.err);
	}

	/* every reason was produced above, and each has a text of its own */
	for (int e = LC_H1_CHUNK_NO_HEX; e < LC_H1_CHUNK_LAST; e++) {
		if (!seen[e])
			fail_msg("reason %d never produced", e);
		for (int f = LC_H1_CHUNK_OK; f < e; f++)
			assert_string_not_equal(lc_h1_chunk_strerror((enum lc_h1_chunk_err)f), seen[e]);
	}
	assert_string_equal(lc_h1_chunk_strerror(LC_H1_CHUNK_LAST), "unknown chunked decoding error");
	assert_string_equal(lc_h1_chunk_strerror((enum lc_h1_chunk_err)-1), "unknown chunked decoding error");
}

/* The reason reaches the request parser's caller. */
static void test_chunk_reason_in_request(void **state)
{
	static const char req[] = "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
				  "Transfer-Encoding: chunked\r\n\r\n5\r\nhelloX";
	struct lc_reqparse p;
	size_t used;

	(void)state;
	lc_reqparse_init(&p);
	assert_int_equal(lc_reqparse_feed(&p, req, strlen(req), &used), LC_PARSE_ERROR);
	assert_int_equal(p.chunk.err, LC_H1_CHUNK_BAD_DATA_CRLF);
	lc_reqparse_free(&p);
}

/* ---- Content-Length / Transfer-Encoding ------------------------------------------- */

/* The framing of a head given as its field lines ("Name: value\r\n"...): the body
 * rule, or -1 when a field is refused; *fr_out gets the merged fields (or why one was refused). */
static int frame_of(const char *fields, struct lc_h1_frame *fr_out)
{
	char head[1024];
	const char *cur, *end, *line;
	size_t len;
	struct lc_h1_field f;
	struct lc_h1_frame fr;

	snprintf(head, sizeof(head), "GET / HTTP/1.1\r\n%s\r\n", fields);
	cur = head;
	end = head + strlen(head);
	assert_true(lc_h1_start_line(&cur, end, &line, &len));
	lc_h1_frame_init(&fr);
	while (lc_h1_next_field(&cur, end, &f))
		if (lc_h1_frame_field(&fr, &f) < 0)
			break;
	if (fr_out)
		*fr_out = fr;
	return fr.why ? -1 : (int)lc_h1_frame_body(&fr);
}

static void test_frame_merge(void **state)
{
	const struct {
		const char *fields;
		int body;        /* enum lc_h1_body, or -1 refused */
		int64_t cl;
		bool other;
	} cases[] = {
		{"", LC_H1_BODY_NONE, -1, false},
		{"Host: x\r\n", LC_H1_BODY_NONE, -1, false},
		{"Content-Length: 5\r\n", LC_H1_BODY_LENGTH, 5, false},
		{"content-LENGTH:0\r\n", LC_H1_BODY_LENGTH, 0, false},
		{"Content-Length: 5\r\nContent-Length: 5\r\n", LC_H1_BODY_LENGTH, 5, false},
		{"Content-Length: 5, 5\r\n", LC_H1_BODY_LENGTH, 5, false},
		{"Content-Length: 5,\r\n", LC_H1_BODY_LENGTH, 5, false},
		{"Content-Length:\r\n", LC_H1_BODY_NONE, -1, false},   /* an empty value says nothing */
		{"Content-Length: 999999999999999999\r\n", LC_H1_BODY_LENGTH, 999999999999999999LL, false},
		{"Content-Length: 5\r\nContent-Length: 6\r\n", -1, 0, false},
		{"Content-Length: 5, 6\r\n", -1, 0, false},
		{"Content-Length: 5,,5\r\n", -1, 0, false},
		{"Content-Length: +5\r\n", -1, 0, false},
		{"Content-Length: -1\r\n", -1, 0, false},
		{"Content-Length: 0x5\r\n", -1, 0, false},
		{"Content-Length: 5 5\r\n", -1, 0, false},
		{"Content-Length: 1000000000000000000\r\n", -1, 0, false},   /* 10^18: past LC_H1_CL_MAX */
		{"Content-Length: 9223372036854775808\r\n", -1, 0, false},   /* 2^63: would wrap an int64 */
		{"Content-Length: 99999999999999999999999999\r\n", -1, 0, false},
		{"Content-Length: 0000000000000000000000042\r\n", LC_H1_BODY_LENGTH, 42, false},   /* the value counts */
		{"Transfer-Encoding: chunked\r\n", LC_H1_BODY_CHUNKED, -1, false},
		{"Transfer-Encoding: Chunked;x=1\r\n", LC_H1_BODY_CHUNKED, -1, false},
		{"Transfer-Encoding: gzip, chunked\r\n", LC_H1_BODY_CHUNKED, -1, true},
		{"Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n", LC_H1_BODY_CHUNKED, -1, true},
		{"Transfer-Encoding: identity, chunked\r\n", LC_H1_BODY_CHUNKED, -1, false},
		{"Transfer-Encoding: chunked, gzip\r\n", LC_H1_BODY_UNKNOWN, -1, true},
		{"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n", LC_H1_BODY_UNKNOWN, -1, false},
		{"Transfer-Encoding: gzip\r\n", LC_H1_BODY_UNKNOWN, -1, true},
		{"Transfer-Encoding:\r\n", LC_H1_BODY_UNKNOWN, -1, false},
		/* Transfer-Encoding overrides Content-Length, in either order */
		{"Content-Length: 10\r\nTransfer-Encoding: chunked\r\n", LC_H1_BODY_CHUNKED, 10, false},
		{"Transfer-Encoding: chunked\r\nContent-Length: 10\r\n", LC_H1_BODY_CHUNKED, 10, false},
		{"Content-Length: 10\r\nTransfer-Encoding: gzip\r\n", LC_H1_BODY_UNKNOWN, 10, true},
		/* a bad Content-Length is refused even beside Transfer-Encoding */
		{"Transfer-Encoding: chunked\r\nContent-Length: 1, 2\r\n", -1, 0, false},
		/* obs-fold and colon-less lines carry nothing */
		{"X-A: 1\r\n Content-Length: 7\r\nnocolon\r\n", LC_H1_BODY_NONE, -1, false},
	};

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct lc_h1_frame fr;
		int body = frame_of(cases[i].fields, &fr);

		if (body != cases[i].body)
			fail_msg("case %zu (%s): body %d, want %d", i, cases[i].fields, body, cases[i].body);
		if (body < 0) {
			assert_non_null(fr.why);   /* a refusal says why */
			continue;
		}
		assert_null(fr.why);
		assert_int_equal(fr.content_length, cases[i].cl);
		assert_int_equal(fr.te_other, cases[i].other);
	}
	/* the reasons: an overflow and a disagreement are told apart */
	{
		struct lc_h1_frame fr;
		assert_int_equal(frame_of("Content-Length: 18446744073709551621\r\n", &fr), -1);
		assert_non_null(strstr(fr.why, "not a decimal number"));
		assert_int_equal(frame_of("Content-Length: 5\r\nContent-Length: 6\r\n", &fr), -1);
		assert_non_null(strstr(fr.why, "disagree"));
	}
}

/* What each parser makes of the merged framing (the same rule, two answers). */
static void test_frame_in_parsers(void **state)
{
	static const char body_te_cl[] = "POST /v1/chat/completions HTTP/1.1\r\nContent-Length: 3\r\n"
					 "Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n";
	static const char req_te_gzip[] = "POST /v1/chat/completions HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n";
	static const char resp_te_gzip[] = "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nabc";
	static const char resp_cl_bad[] = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nab";
	struct lc_reqparse p;
	struct lc_resp r;
	size_t used;

	(void)state;
	lc_reqparse_init(&p);
	assert_int_equal(lc_reqparse_feed(&p, body_te_cl, strlen(body_te_cl), &used), LC_PARSE_DONE);
	assert_true(p.chunked);
	assert_int_equal(p.content_length, -1);
	assert_int_equal(p.body.len, 5);
	assert_int_equal(used, strlen(body_te_cl));
	lc_reqparse_free(&p);

	lc_reqparse_init(&p);   /* a request body of unknown length: 400, not a guess */
	assert_int_equal(lc_reqparse_feed(&p, req_te_gzip, strlen(req_te_gzip), &used), LC_PARSE_ERROR);
	lc_reqparse_free(&p);

	lc_resp_init(&r, false);   /* a response body of unknown coding: read to the close */
	assert_int_equal(lc_resp_feed(&r, resp_te_gzip, strlen(resp_te_gzip), &used), LC_PARSE_MORE);
	assert_int_equal(used, strlen(resp_te_gzip));
	assert_int_equal(lc_resp_eof(&r), LC_PARSE_DONE);
	assert_int_equal(r.status, 200);
	lc_resp_free(&r);

	lc_resp_init(&r, false);
	assert_int_equal(lc_resp_feed(&r, resp_cl_bad, strlen(resp_cl_bad), &used), LC_PARSE_ERROR);
	lc_resp_free(&r);
}

/* ---- head accumulator -------------------------------------------------------------- */

static const char REQ_HEAD[] = "\r\nPOST /v1/messages HTTP/1.1\r\nHost: api.example\r\n"
			       "Content-Length: 4\r\nX-Long: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n";
static const char RESP_HEAD[] = "HTTP/1.1 200 OK\nContent-Type: text/event-stream\r\n"
				"Transfer-Encoding: chunked\n\n";

/* Feeds head + tail through one accumulator in reads of `step` bytes (0: random
 * sizes from `seed`); checks that exactly the head is taken and kept. */
static void accumulate(const char *magic, const char *head, const char *tail, size_t step, unsigned seed)
{
	size_t hl = strlen(head), n = hl + strlen(tail), off = 0, used, reads = 0;
	char *msg = malloc(n + 1);
	struct lc_h1_head h;
	struct lc_buf b;
	int rc = LC_H1_MORE;

	assert_non_null(msg);
	memcpy(msg, head, hl);
	memcpy(msg + hl, tail, n - hl + 1);
	lc_buf_init(&b, 1 << 20);
	lc_h1_head_init(&h, magic);
	while (off < n) {
		size_t k = step ? step : 1 + (seed = seed * 1103515245u + 12345u) % 5;

		if (k > n - off)
			k = n - off;
		rc = lc_h1_head_feed(&h, &b, msg + off, k, &used);
		reads++;
		off += used;
		if (rc != LC_H1_MORE)
			break;
		assert_int_equal(used, k);
		assert_int_equal(h.len, 0);
	}
	assert_int_equal(rc, LC_H1_DONE);
	assert_true(reads > 1 || step == 0 || step >= n);
	assert_int_equal(off, hl);   /* the body's bytes stay with the caller */
	assert_int_equal(h.len, hl);
	assert_int_equal(b.len, hl);
	assert_memory_equal(b.data, head, hl);
	assert_int_equal(b.data[hl], '\0');
	lc_buf_free(&b);
	free(msg);
}

static void test_head_request_small_reads(void **state)
{
	char v[64];

	(void)state;
	for (size_t step = 1; step <= 9; step++)
		accumulate(NULL, REQ_HEAD, "body", step, 0);
	for (unsigned seed = 1; seed <= 50; seed++)
		accumulate(NULL, REQ_HEAD, "body", 0, seed);
	accumulate(NULL, REQ_HEAD, "", 1, 0);
	accumulate(NULL, REQ_HEAD, "body", strlen(REQ_HEAD) + 4, 0);   /* one read */
	assert_int_equal(lc_h1_header(REQ_HEAD, strlen(REQ_HEAD), "content-length", v, sizeof(v)), 0);
	assert_string_equal(v, "4");
	assert_int_equal(lc_h1_header(REQ_HEAD, strlen(REQ_HEAD), "x-long", v, 8), -1);   /* too long */
	assert_int_equal(lc_h1_header(REQ_HEAD, strlen(REQ_HEAD), "absent", v, sizeof(v)), -1);
}

static void test_head_response_small_reads(void **state)
{
	(void)state;
	for (size_t step = 1; step <= 9; step++)
		accumulate("HTTP/", RESP_HEAD, "5\r\nhello\r\n0\r\n\r\n", step, 0);
	for (unsigned seed = 1; seed <= 50; seed++)
		accumulate("HTTP/", RESP_HEAD, "5\r\nhello\r\n", 0, seed);
	accumulate("HTTP/", "\r\n\nHTTP/1.0 204 No Content\r\n\r\n", "", 1, 0);   /* leading empty lines */
}

/* The start line must begin with the magic: garbage fails on its first bytes, one byte at a time too. */
static void test_head_magic(void **state)
{
	const char *bad[] = {"<html>", "\x16\x03\x01\x02\x00", "HTTP 200", "http/1.1 200 OK\r\n\r\n", "\r\nHTX"};

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct lc_h1_head h;
		struct lc_buf b;
		size_t used, off = 0, n = strlen(bad[i]);
		int rc = LC_H1_MORE;

		lc_buf_init(&b, LC_H1_MAX_HEAD);
		lc_h1_head_init(&h, "HTTP/");
		while (off < n && rc == LC_H1_MORE) {
			rc = lc_h1_head_feed(&h, &b, bad[i] + off, 1, &used);
			off += 1;
		}
		if (rc != LC_H1_ERROR)
			fail_msg("garbage %zu accepted", i);
		assert_int_equal(used, 0);
		lc_buf_free(&b);
	}
}

/* The cap: a head that reaches LC_H1_MAX_HEAD without its empty line fails, one
 * of exactly LC_H1_MAX_HEAD bytes is taken, and a buffer that may grow further (a request's raw
 * bytes) still gives the head no more room. */
static void test_head_cap(void **state)
{
	char *near = repeat("GET / HTTP/1.1\r\nX: ", 'a', LC_H1_MAX_HEAD - 19 - 4, "\r\n\r\n");
	char *over = repeat("GET / HTTP/1.1\r\nX: ", 'a', LC_H1_MAX_HEAD, "\r\n\r\n");
	struct lc_h1_head h;
	struct lc_buf b;
	size_t used, off = 0;
	int rc = LC_H1_MORE;

	(void)state;
	assert_int_equal(strlen(near), LC_H1_MAX_HEAD);
	lc_buf_init(&b, 4 * LC_H1_MAX_HEAD);
	lc_h1_head_init(&h, NULL);
	while (rc == LC_H1_MORE) {
		rc = lc_h1_head_feed(&h, &b, near + off, 1000, &used);
		off += used;
	}
	assert_int_equal(rc, LC_H1_DONE);
	assert_int_equal(h.len, LC_H1_MAX_HEAD);
	lc_buf_free(&b);

	lc_buf_init(&b, 4 * LC_H1_MAX_HEAD);
	lc_h1_head_init(&h, NULL);
	off = 0;
	rc = LC_H1_MORE;
	while (rc == LC_H1_MORE && off < strlen(over)) {
		rc = lc_h1_head_feed(&h, &b, over + off, 4096, &used);
		off += used;
	}
	assert_int_equal(rc, LC_H1_ERROR);
	assert_int_equal(b.len, LC_H1_MAX_HEAD);
	lc_buf_free(&b);
	free(near);
	free(over);
}

/* Through the parsers: a request and a response (with an interim 100 and 103
 * before it, which the accumulator starts over after) in reads of 1 to 5 bytes. */
static void test_head_in_parsers(void **state)
{
	static const char resp[] = "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n"
				   "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 78\r\n\r\n"
				   "{\"model\":\"m\",\"usage\":{\"prompt_tokens\":11,\"completion_tokens\":7}}"
				   "              ";
	static const char req[] = "POST /v1/chat/completions HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\n\r\n{}";

	(void)state;
	for (size_t step = 1; step <= 5; step++) {
		struct lc_resp r;
		struct lc_reqparse p;
		size_t off = 0, used;
		int rc = LC_PARSE_MORE;

		lc_resp_init(&r, false);
		while (off < strlen(resp) && rc == LC_PARSE_MORE) {
			size_t k = step < strlen(resp) - off ? step : strlen(resp) - off;
			rc = lc_resp_feed(&r, resp + off, k, &used);
			off += used;
		}
		assert_int_equal(rc, LC_PARSE_DONE);
		assert_int_equal(off, strlen(resp));
		assert_int_equal(r.status, 200);
		assert_true(r.usage.present);
		assert_int_equal(r.usage.input, 11);
		assert_int_equal(r.usage.output, 7);
		lc_resp_free(&r);

		lc_reqparse_init(&p);
		off = 0;
		rc = LC_PARSE_MORE;
		while (off < strlen(req) && rc == LC_PARSE_MORE) {
			size_t k = step < strlen(req) - off ? step : strlen(req) - off;
			rc = lc_reqparse_feed(&p, req + off, k, &used);
			off += used;
		}
		assert_int_equal(rc, LC_PARSE_DONE);
		assert_int_equal(p.head_len, strlen(req) - 2);
		assert_int_equal(p.raw.len, strlen(req));
		assert_memory_equal(p.raw.data, req, strlen(req));
		assert_string_equal(p.path, "/v1/chat/completions");
		lc_reqparse_free(&p);
	}
}

/* ---- hex and UTF-8 ------------------------------------------------------------------- */

static void test_hexval(void **state)
{
	(void)state;
	for (int c = -1; c < 256; c++) {
		int want = -1;

		if (c >= '0' && c <= '9')
			want = c - '0';
		else if (c >= 'a' && c <= 'f')
			want = c - 'a' + 10;
		else if (c >= 'A' && c <= 'F')
			want = c - 'A' + 10;
		assert_int_equal(lc_hexval(c), want);
	}
}

static void test_utf8_len(void **state)
{
	const struct {
		const char *s;
		size_t n, want;
	} cases[] = {
		{"a", 1, 1},
		{"\x7f", 1, 1},
		{"\xc3\xa9", 2, 2},             /* é */
		{"\xe2\x82\xac", 3, 3},         /* € */
		{"\xf0\x9f\x98\x80", 4, 4},     /* U+1F600 */
		{"\xf4\x8f\xbf\xbf", 4, 4},     /* U+10FFFF */
		{"\xc3\xa9", 1, 0},             /* cut short */
		{"\xe2\x82", 2, 0},
		{"\x80", 1, 0},                 /* a continuation byte first */
		{"\xc0\xaf", 2, 0},             /* overlong '/' */
		{"\xc1\xbf", 2, 0},
		{"\xe0\x80\xaf", 3, 0},         /* overlong */
		{"\xf0\x80\x80\xaf", 4, 0},     /* overlong */
		{"\xed\xa0\x80", 3, 0},         /* surrogate U+D800 */
		{"\xed\xbf\xbf", 3, 0},         /* surrogate U+DFFF */
		{"\xf4\x90\x80\x80", 4, 0},     /* above U+10FFFF */
		{"\xf5\x80\x80\x80", 4, 0},
		{"\xff", 1, 0},
		{"\xc3\x28", 2, 0},             /* a continuation byte missing */
	};

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		if (lc_utf8_len((const unsigned char *)cases[i].s, cases[i].n) != cases[i].want)
			fail_msg("case %zu: %zu, want %zu", i,
				 lc_utf8_len((const unsigned char *)cases[i].s, cases[i].n), cases[i].want);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_chunk_ok),
		cmocka_unit_test(test_chunk_reasons),
		cmocka_unit_test(test_chunk_reason_in_request),
		cmocka_unit_test(test_frame_merge),
		cmocka_unit_test(test_frame_in_parsers),
		cmocka_unit_test(test_head_request_small_reads),
		cmocka_unit_test(test_head_response_small_reads),
		cmocka_unit_test(test_head_magic),
		cmocka_unit_test(test_head_cap),
		cmocka_unit_test(test_head_in_parsers),
		cmocka_unit_test(test_hexval),
		cmocka_unit_test(test_utf8_len),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
