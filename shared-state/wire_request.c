/* wire_request.c - the HTTP/1.1 request a client writes (wire.h
 * lc_reqparse_*): the request line, the fields that frame the body, and the
 * body, Content-Length or chunked, kept byte for byte for forwarding.
 * Framing is http1.c's; this file only knows what a request looks like.
 */
#include "wire_int.h"

/* The raw request keeps the framing of a chunked body too; tiny chunks can
 * cost several framing bytes per body byte, so allow twice the body cap. */
#define REQ_RAW_MAX ((size_t)LC_WIRE_MAX_HEAD + 2 * (size_t)LC_WIRE_MAX_BODY)

static bool is_tchar(unsigned char c)
{
	if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
		return true;
	return c && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

void lc_reqparse_init(struct lc_reqparse *p)
{
	memset(p, 0, sizeof(*p));
	lc_buf_init(&p->raw, REQ_RAW_MAX);
	lc_buf_init(&p->body, LC_WIRE_MAX_BODY);
	p->state = LC_PARSE_MORE;
	p->content_length = -1;
	lc_h1_head_init(&p->head, NULL);
	lc_h1_chunk_init(&p->chunk);
}

void lc_reqparse_free(struct lc_reqparse *p)
{
	lc_buf_free(&p->raw);
	lc_buf_free(&p->body);
	lc_reqparse_init(p);
}

int lc_reqparse_header(const struct lc_reqparse *p, const char *name, char *out, size_t outlen)
{
	if (p->head_len == 0 || !p->raw.data)
		return -1;
	return lc_h1_header(p->raw.data, p->head_len, name, out, outlen);
}

/* "METHOD SP target SP HTTP/1.x": method and target into p. */
static int req_line(struct lc_reqparse *p, const char *line, size_t len)
{
	const char *sp1, *sp2, *target;
	size_t tlen, i;

	sp1 = memchr(line, ' ', len);
	if (!sp1 || sp1 == line)
		return -1;
	sp2 = memchr(sp1 + 1, ' ', len - (size_t)(sp1 + 1 - line));
	if (!sp2 || sp2 == sp1 + 1)
		return -1;
	if (len - (size_t)(sp2 + 1 - line) != 8 ||
	    (memcmp(sp2 + 1, "HTTP/1.1", 8) != 0 && memcmp(sp2 + 1, "HTTP/1.0", 8) != 0))
		return -1;
	for (i = 0; line + i < sp1; i++)
		if (!is_tchar((unsigned char)line[i]))
			return -1;
	if (!lc_copy_field(p->method, sizeof(p->method), line, (size_t)(sp1 - line)))
		return -1;
	target = sp1 + 1;
	tlen = (size_t)(sp2 - target);
	for (i = 0; i < tlen; i++)
		if ((unsigned char)target[i] <= 0x20 || target[i] == 0x7f)
			return -1;
	/* A target longer than the field usually has a long query string, which
	 * lc_api_from_path ignores anyway: keep the path part when that fits. */
	if (!lc_copy_field(p->path, sizeof(p->path), target, tlen)) {
		const char *q = memchr(target, '?', tlen);
		if (!q || !lc_copy_field(p->path, sizeof(p->path), target, (size_t)(q - target)))
			return -1;
	}
	return 0;
}

/* Request line and the fields that frame the body. Returns DONE when the
 * request has no body, MORE when one follows, ERROR otherwise. */
static int req_parse_head(struct lc_reqparse *p)
{
	const char *cur = p->raw.data, *end = p->raw.data + p->head_len, *line;
	size_t len;
	struct lc_h1_frame fr;
	struct lc_h1_field f;
	int64_t cl;

	if (!lc_h1_start_line(&cur, end, &line, &len) || req_line(p, line, len))
		return LC_PARSE_ERROR;
	lc_h1_frame_init(&fr);
	while (lc_h1_next_field(&cur, end, &f)) {
		int rc = lc_h1_frame_field(&fr, &f);

		if (rc < 0)
			return LC_PARSE_ERROR;
		if (rc == 0 && lc_h1_ieq(f.name, f.nlen, "expect") && lc_h1_ieq(f.val, f.vlen, "100-continue"))
			p->expect_continue = true;
	}
	switch (lc_h1_frame_body(&fr)) {
	case LC_H1_BODY_UNKNOWN:
		/* A request body whose length we cannot know would make us forward a
		 * different message than the one we judged (RFC 9112 6.3 says 400). */
		return LC_PARSE_ERROR;
	case LC_H1_BODY_CHUNKED:
		p->chunked = true;
		p->content_length = -1;   /* Transfer-Encoding overrides Content-Length */
		lc_h1_chunk_init(&p->chunk);
		return LC_PARSE_MORE;
	case LC_H1_BODY_LENGTH:
	case LC_H1_BODY_NONE:
		break;
	}
	cl = fr.content_length;
	if (cl > LC_WIRE_MAX_BODY)
		return LC_PARSE_ERROR;
	p->content_length = cl;
	if (cl <= 0) {
		p->expect_continue = p->expect_continue && cl > 0;
		return LC_PARSE_DONE;
	}
	return LC_PARSE_MORE;
}

/* Head bytes: appended to raw, scanned for the empty line. *off is what was
 * consumed (bytes after the head stay with the caller). */
static int req_head(struct lc_reqparse *p, const char *d, size_t n, size_t *off)
{
	size_t cmp;
	int rc;

	*off = 0;
	if (lc_h1_head_add(&p->head, &p->raw, d, n))
		return LC_PARSE_ERROR;

	/* HTTP/2 prior knowledge: "PRI" is reserved (RFC 9113 3.4), so once "PRI "
	 * is in, this is not a request we can parse; say so before the rest of
	 * the preface arrives. */
	cmp = lc_min_sz(p->raw.len, 4);
	if (cmp && memcmp(p->raw.data, LC_H2_PREFACE, cmp) == 0) {
		*off = p->raw.len - p->head.fed;
		return cmp == 4 ? LC_PARSE_H2 : LC_PARSE_MORE;
	}
	rc = lc_h1_head_scan(&p->head, &p->raw, off);
	if (rc != LC_H1_DONE)
		return rc;
	p->head_len = p->head.len;
	return req_parse_head(p);
}

static int req_body_sink(void *ctx, const char *d, size_t n)
{
	struct lc_reqparse *p = ctx;
	return lc_buf_add(&p->body, d, n);
}

int lc_reqparse_feed(struct lc_reqparse *p, const void *data, size_t n, size_t *used)
{
	const char *d = data;
	size_t off = 0, k;
	int rc;

	*used = 0;
	if (p->state != LC_PARSE_MORE)
		return p->state;
	if (p->head_len == 0) {
		rc = req_head(p, d, n, &off);
		if (rc != LC_PARSE_MORE || p->head_len == 0) {
			*used = off;
			return p->state = rc;
		}
	}
	if (off == n) {
		*used = off;
		return LC_PARSE_MORE;
	}

	if (p->chunked) {
		rc = lc_h1_chunk_feed(&p->chunk, d + off, n - off, &k, req_body_sink, p);
		if (rc != LC_PARSE_ERROR && lc_buf_add(&p->raw, d + off, k))
			rc = LC_PARSE_ERROR;
	} else {
		k = lc_min_sz(n - off, (size_t)(p->content_length - (int64_t)p->body.len));
		rc = LC_PARSE_MORE;
		if (lc_buf_add(&p->raw, d + off, k) || lc_buf_add(&p->body, d + off, k))
			rc = LC_PARSE_ERROR;
		else if ((int64_t)p->body.len == p->content_length)
			rc = LC_PARSE_DONE;
	}
	*used = off + k;
	return p->state = rc;
}
