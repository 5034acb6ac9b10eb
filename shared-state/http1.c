/* http1.c - the HTTP/1.1 framing core (http1.h): lines and header fields,
 * the Content-Length / Transfer-Encoding merge, the head accumulator and the
 * chunked decoder, shared by the request and the response parser.
 *
 * Everything here reads bytes someone else wrote, so every line is capped,
 * every integer checked, and a failure is an answer, never a guess.
 */
#include "http1.h"

#include <string.h>
#include <strings.h>

#include "jscan.h"

void lc_h1_trim(const char **p, size_t *n)
{
	while (*n && (**p == ' ' || **p == '\t')) {
		(*p)++;
		(*n)--;
	}
	while (*n && ((*p)[*n - 1] == ' ' || (*p)[*n - 1] == '\t'))
		(*n)--;
}

bool lc_h1_ieq(const char *a, size_t alen, const char *b)
{
	size_t blen = strlen(b);
	return alen == blen && strncasecmp(a, b, blen) == 0;
}

/* ---- lines and header fields ------------------------------------------------ */

bool lc_h1_next_line(const char **cur, const char *end, const char **line, size_t *len)
{
	const char *nl;

	if (*cur >= end)
		return false;
	nl = memchr(*cur, '\n', (size_t)(end - *cur));
	if (!nl)
		nl = end;
	*line = *cur;
	*len = (size_t)(nl - *cur);
	if (*len && (*line)[*len - 1] == '\r')
		(*len)--;
	*cur = nl < end ? nl + 1 : end;
	return true;
}

bool lc_h1_start_line(const char **cur, const char *end, const char **line, size_t *len)
{
	while (lc_h1_next_line(cur, end, line, len))
		if (*len)
			return true;
	return false;
}

bool lc_h1_next_field(const char **cur, const char *end, struct lc_h1_field *f)
{
	const char *line, *colon;
	size_t len;

	while (lc_h1_next_line(cur, end, &line, &len)) {
		if (len == 0)
			return false;
		if (line[0] == ' ' || line[0] == '\t')
			continue;
		colon = memchr(line, ':', len);
		if (!colon)
			continue;
		f->name = line;
		f->nlen = (size_t)(colon - line);
		f->val = colon + 1;
		f->vlen = len - f->nlen - 1;
		lc_h1_trim(&f->val, &f->vlen);
		return true;
	}
	return false;
}

int lc_h1_header(const char *head, size_t len, const char *name, char *out, size_t outlen)
{
	const char *cur = head, *end = head + len, *line;
	size_t llen;
	struct lc_h1_field f;

	if (!head || !len || !lc_h1_start_line(&cur, end, &line, &llen))
		return -1;
	while (lc_h1_next_field(&cur, end, &f)) {
		if (!lc_h1_ieq(f.name, f.nlen, name))
			continue;
		if (f.vlen >= outlen)
			return -1;
		memcpy(out, f.val, f.vlen);
		out[f.vlen] = '\0';
		return 0;
	}
	return -1;
}

/* ---- framing -------------------------------------------------------------------- */

void lc_h1_frame_init(struct lc_h1_frame *fr)
{
	memset(fr, 0, sizeof(*fr));
	fr->content_length = -1;
}

/* Calls fn on each element of a comma-separated list value (untrimmed; an
 * empty value or an empty last element is no element); stops at the first
 * nonzero answer and returns it. */
static int each_elem(const char *v, size_t n, int (*fn)(struct lc_h1_frame *, const char *, size_t),
		     struct lc_h1_frame *fr)
{
	while (n) {
		const char *comma = memchr(v, ',', n);
		size_t part = comma ? (size_t)(comma - v) : n;
		int rc = fn(fr, v, part);

		if (rc || !comma)
			return rc;
		v = comma + 1;
		n -= part + 1;
	}
	return 0;
}

/* Content-Length, possibly repeated or a list ("5, 5"): every value must agree. */
static int cl_elem(struct lc_h1_frame *fr, const char *p, size_t n)
{
	int64_t x;

	lc_h1_trim(&p, &n);
	if (lc_parse_dec(p, n, 0, LC_H1_CL_MAX, &x)) {
		fr->why = "Content-Length is not a decimal number up to 10^18 - 1";
		return -1;
	}
	if (fr->content_length >= 0 && fr->content_length != x) {
		fr->why = "Content-Length values disagree";
		return -1;
	}
	fr->content_length = x;
	return 0;
}

/* One transfer coding (parameters after ';' ignored; empty elements skipped). */
static int te_elem(struct lc_h1_frame *fr, const char *p, size_t n)
{
	const char *semi = memchr(p, ';', n);

	if (semi)
		n = (size_t)(semi - p);
	lc_h1_trim(&p, &n);
	if (n) {
		if (fr->te_chunked)
			fr->te_bad = true;   /* chunked must be the final coding */
		fr->te_chunked = lc_h1_ieq(p, n, "chunked");
		if (!fr->te_chunked && !lc_h1_ieq(p, n, "identity"))
			fr->te_other = true;
	}
	return 0;
}

int lc_h1_frame_field(struct lc_h1_frame *fr, const struct lc_h1_field *f)
{
	if (lc_h1_ieq(f->name, f->nlen, "content-length")) {
		return each_elem(f->val, f->vlen, cl_elem, fr) ? -1 : 1;
	}
	if (lc_h1_ieq(f->name, f->nlen, "transfer-encoding")) {
		fr->te = true;
		each_elem(f->val, f->vlen, te_elem, fr);
		return 1;
	}
	return 0;
}

enum lc_h1_body lc_h1_frame_body(const struct lc_h1_frame *fr)
{
	if (fr->te)
		return fr->te_chunked && !fr->te_bad ? LC_H1_BODY_CHUNKED : LC_H1_BODY_UNKNOWN;
	return fr->content_length >= 0 ? LC_H1_BODY_LENGTH : LC_H1_BODY_NONE;
}

/* ---- head accumulator --------------------------------------------------------------- */

void lc_h1_head_init(struct lc_h1_head *h, const char *magic)
{
	memset(h, 0, sizeof(*h));
	h->magic = magic;
}

int lc_h1_head_add(struct lc_h1_head *h, struct lc_buf *b, const char *d, size_t n)
{
	size_t room = b->len < LC_H1_MAX_HEAD ? LC_H1_MAX_HEAD - b->len : 0;

	h->fed = b->len;
	if (n > room)
		n = room;
	return n && lc_buf_add(b, d, n) ? LC_H1_ERROR : LC_H1_MORE;
}

int lc_h1_head_scan(struct lc_h1_head *h, struct lc_buf *b, size_t *used)
{
	size_t mlen = h->magic ? strlen(h->magic) : 0;
	size_t i;

	*used = 0;
	for (i = h->scan; i < b->len; i++) {
		const char *nl;
		size_t llen;

		/* garbage (TLS bytes, HTML) fails here, long before the head cap */
		if (!h->started && i - h->line_start < mlen) {
			char c = b->data[i];
			if (c != '\r' && c != '\n') {
				if (c != h->magic[i - h->line_start])
					return LC_H1_ERROR;
				continue;
			}
		}
		nl = memchr(b->data + i, '\n', b->len - i);
		if (!nl)
			break;
		i = (size_t)(nl - b->data);
		llen = i - h->line_start;
		if (llen == 0 || (llen == 1 && b->data[h->line_start] == '\r')) {
			if (h->started) {
				h->len = i + 1;
				b->len = h->len;
				b->data[b->len] = '\0';
				*used = h->len - h->fed;
				return LC_H1_DONE;
			}
		} else {
			h->started = true;
		}
		h->line_start = i + 1;
	}
	h->scan = b->len;
	*used = b->len - h->fed;
	return b->len >= LC_H1_MAX_HEAD ? LC_H1_ERROR : LC_H1_MORE;
}

int lc_h1_head_feed(struct lc_h1_head *h, struct lc_buf *b, const char *d, size_t n, size_t *used)
{
	*used = 0;
	if (lc_h1_head_add(h, b, d, n))
		return LC_H1_ERROR;
	return lc_h1_head_scan(h, b, used);
}

/* ---- chunked transfer coding ---------------------------------------------------------- */

enum {
	CS_SIZE0 = 0,  /* start of a chunk-size line: a hex digit is due */
	CS_SIZE,       /* in the hex digits */
	CS_EXT,        /* in a chunk extension, up to the line end */
	CS_SIZE_LF,    /* CR seen at the end of the size line */
	CS_DATA,       /* chunk data, `left` bytes to go */
	CS_DATA_CR,    /* CRLF after the data is due */
	CS_DATA_LF,
	CS_TRL_START,  /* start of a trailer line (or the final empty line) */
	CS_TRL_LINE,   /* inside a trailer line */
	CS_TRL_END_LF, /* CR of the final empty line seen */
	CS_END,
	CS_FAILED,
};

static const char *const CHUNK_ERR[LC_H1_CHUNK_LAST] = {
	[LC_H1_CHUNK_OK] = "no error",
	[LC_H1_CHUNK_NO_HEX] = "chunk size line does not start with a hex digit",
	[LC_H1_CHUNK_TOO_BIG] = "chunk size too large",
	[LC_H1_CHUNK_BAD_SIZE] = "invalid character after the chunk size",
	[LC_H1_CHUNK_BAD_SIZE_CRLF] = "CR not followed by LF after the chunk size",
	[LC_H1_CHUNK_BAD_DATA_CRLF] = "chunk data not followed by CRLF",
	[LC_H1_CHUNK_LINE_TOO_LONG] = "chunk size line too long",
	[LC_H1_CHUNK_TRAILER_TOO_LONG] = "chunked trailers too long",
	[LC_H1_CHUNK_BAD_END] = "CR not followed by LF at the end of the chunked body",
	[LC_H1_CHUNK_SINK] = "chunk data refused (body too large or out of memory)",
	[LC_H1_CHUNK_STATE] = "chunked body fed after its end or after an error",
};

const char *lc_h1_chunk_strerror(enum lc_h1_chunk_err e)
{
	return (unsigned)e < LC_H1_CHUNK_LAST ? CHUNK_ERR[e] : "unknown chunked decoding error";
}

void lc_h1_chunk_init(struct lc_h1_chunk *c)
{
	memset(c, 0, sizeof(*c));
	c->state = CS_SIZE0;
}

int lc_h1_chunk_feed(struct lc_h1_chunk *c, const char *d, size_t n, size_t *used, lc_h1_sink sink,
		     void *ctx)
{
	enum lc_h1_chunk_err err = LC_H1_CHUNK_STATE;
	size_t i = 0;

	while (i < n) {
		unsigned char ch = (unsigned char)d[i];

		switch (c->state) {
		case CS_DATA: {
			size_t take = n - i < (uint64_t)c->left ? n - i : (size_t)c->left;
			if (sink(ctx, d + i, take)) {
				err = LC_H1_CHUNK_SINK;
				goto fail;
			}
			c->left -= (int64_t)take;
			i += take;
			if (c->left == 0)
				c->state = CS_DATA_CR;
			continue;
		}
		case CS_SIZE0:
		case CS_SIZE: {
			int h = lc_hexval(ch);
			if (h >= 0) {
				if (c->left > (INT64_MAX >> 4)) {
					err = LC_H1_CHUNK_TOO_BIG;
					goto fail;
				}
				c->left = (c->left << 4) | h;
				c->state = CS_SIZE;
			} else if (c->state == CS_SIZE0) {
				err = LC_H1_CHUNK_NO_HEX;
				goto fail;
			} else if (ch == ';' || ch == ' ' || ch == '\t') {
				c->state = CS_EXT;
			} else if (ch == '\r') {
				c->state = CS_SIZE_LF;
			} else if (ch == '\n') {
				goto size_done;
			} else {
				err = LC_H1_CHUNK_BAD_SIZE;
				goto fail;
			}
			break;
		}
		case CS_EXT:
			if (ch == '\r')
				c->state = CS_SIZE_LF;
			else if (ch == '\n')
				goto size_done;
			break;
		case CS_SIZE_LF:
			if (ch != '\n') {
				err = LC_H1_CHUNK_BAD_SIZE_CRLF;
				goto fail;
			}
			goto size_done;
		case CS_DATA_CR:
			if (ch == '\r') {
				c->state = CS_DATA_LF;
			} else if (ch == '\n') {
				c->state = CS_SIZE0;
			} else {
				err = LC_H1_CHUNK_BAD_DATA_CRLF;
				goto fail;
			}
			break;
		case CS_DATA_LF:
			if (ch != '\n') {
				err = LC_H1_CHUNK_BAD_DATA_CRLF;
				goto fail;
			}
			c->state = CS_SIZE0;
			c->cnt = 0;
			break;
		case CS_TRL_START:
			if (ch == '\r')
				c->state = CS_TRL_END_LF;
			else if (ch == '\n')
				goto end;
			else
				c->state = CS_TRL_LINE;
			break;
		case CS_TRL_LINE:
			if (ch == '\n')
				c->state = CS_TRL_START;
			break;
		case CS_TRL_END_LF:
			if (ch != '\n') {
				err = LC_H1_CHUNK_BAD_END;
				goto fail;
			}
			goto end;
		default:
			goto fail;
		}
		i++;
		if (c->state >= CS_TRL_START ? ++c->cnt > (size_t)LC_H1_MAX_HEAD
					     : ++c->cnt > (size_t)LC_H1_CHUNK_LINE_MAX) {
			err = c->state >= CS_TRL_START ? LC_H1_CHUNK_TRAILER_TOO_LONG
						       : LC_H1_CHUNK_LINE_TOO_LONG;
			goto fail;
		}
		continue;
size_done:
		i++;
		c->cnt = 0;
		c->state = c->left == 0 ? CS_TRL_START : CS_DATA;
	}
	*used = n;
	return LC_H1_MORE;
end:
	c->state = CS_END;
	*used = i + 1;
	return LC_H1_DONE;
fail:
	c->state = CS_FAILED;
	c->err = err;
	*used = i;
	return LC_H1_ERROR;
}
