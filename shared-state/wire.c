/* wire.c - provider wire formats: HTTP/1.1 request and response framing,
 * request fields, usage from JSON bodies and SSE streams, synthetic errors.
 *
 * Everything here reads bytes that someone else wrote (the application, the
 * provider, a man in the middle of a broken proxy), so every parser caps its
 * buffers, checks every integer, and answers LC_PARSE_ERROR instead of
 * guessing. Nothing here does I/O or keeps global state.
 */
#include "wire.h"

#include <jansson.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <zlib.h>

/* Token counts above this are nonsense from any provider; refusing them keeps
 * every later sum and product (price x tokens, input + cache) far from overflow. */
#define TOKENS_MAX ((int64_t)1 << 40)

/* The raw request keeps the framing of a chunked body too; tiny chunks can
 * cost several framing bytes per body byte, so allow twice the body cap. */
#define REQ_RAW_MAX ((size_t)LC_WIRE_MAX_HEAD + 2 * (size_t)LC_WIRE_MAX_BODY)

/* A chunk-size line with extensions, and all trailers together. */
#define CHUNK_LINE_MAX 4096
#define TRAILER_MAX LC_WIRE_MAX_HEAD

/* One SSE line. Responses' response.completed event repeats the whole
 * response on one line, so this is the body cap, not a small number. */
#define SSE_LINE_MAX ((size_t)LC_WIRE_MAX_BODY)

static const char H2_PREFACE[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/* ---- small helpers ------------------------------------------------------ */

static size_t min_sz(size_t a, size_t b)
{
	return a < b ? a : b;
}

static bool is_tchar(unsigned char c)
{
	if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
		return true;
	return c && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

static bool ieq(const char *a, size_t alen, const char *b)
{
	size_t blen = strlen(b);
	return alen == blen && strncasecmp(a, b, blen) == 0;
}

static void trim(const char **p, size_t *n)
{
	while (*n && (**p == ' ' || **p == '\t')) {
		(*p)++;
		(*n)--;
	}
	while (*n && ((*p)[*n - 1] == ' ' || (*p)[*n - 1] == '\t'))
		(*n)--;
}

/* Copies a string into a fixed field; false when it does not fit. */
static bool copy_field(char *dst, size_t dstlen, const char *src, size_t n)
{
	if (n >= dstlen)
		return false;
	memcpy(dst, src, n);
	dst[n] = '\0';
	return true;
}

/* Strict decimal for Content-Length: digits only, no sign, no overflow. */
static int parse_dec(const char *p, size_t n, int64_t *out)
{
	int64_t v = 0;
	size_t i;

	if (n == 0 || n > 18)
		return -1;
	for (i = 0; i < n; i++) {
		if (p[i] < '0' || p[i] > '9')
			return -1;
		v = v * 10 + (p[i] - '0');
	}
	*out = v;
	return 0;
}

/* ---- header block iteration ----------------------------------------------
 * A head is lines ending in LF (a CR before it is dropped). Leading empty
 * lines are skipped (RFC 9112 2.2 lets a recipient ignore them), the first
 * non-empty line is the start line, then header fields up to the empty line.
 */
struct hdr {
	const char *name;
	size_t nlen;
	const char *val;
	size_t vlen;
};

static bool next_line(const char **cur, const char *end, const char **line, size_t *len)
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

/* Positions *cur after the start line and returns it. */
static bool start_line(const char **cur, const char *end, const char **line, size_t *len)
{
	while (next_line(cur, end, line, len))
		if (*len)
			return true;
	return false;
}

/* Next "name: value" field; lines without a colon and obs-fold continuation
 * lines carry nothing we read and are skipped. */
static bool next_header(const char **cur, const char *end, struct hdr *h)
{
	const char *line, *colon;
	size_t len;

	while (next_line(cur, end, &line, &len)) {
		if (len == 0)
			return false;
		if (line[0] == ' ' || line[0] == '\t')
			continue;
		colon = memchr(line, ':', len);
		if (!colon)
			continue;
		h->name = line;
		h->nlen = (size_t)(colon - line);
		h->val = colon + 1;
		h->vlen = len - h->nlen - 1;
		trim(&h->val, &h->vlen);
		return true;
	}
	return false;
}

static int head_header(const char *head, size_t len, const char *name, char *out, size_t outlen)
{
	const char *cur = head, *end = head + len, *line;
	size_t llen;
	struct hdr h;

	if (!head || !len || !start_line(&cur, end, &line, &llen))
		return -1;
	while (next_header(&cur, end, &h))
		if (ieq(h.name, h.nlen, name))
			return copy_field(out, outlen, h.val, h.vlen) ? 0 : -1;
	return -1;
}

/* Content-Length, possibly repeated or a list ("5, 5"): every value must agree. */
static int merge_content_length(const char *v, size_t n, int64_t *cl)
{
	while (n) {
		const char *comma = memchr(v, ',', n);
		size_t part = comma ? (size_t)(comma - v) : n;
		const char *p = v;
		size_t pn = part;
		int64_t x;

		trim(&p, &pn);
		if (parse_dec(p, pn, &x))
			return -1;
		if (*cl >= 0 && *cl != x)
			return -1;
		*cl = x;
		if (!comma)
			break;
		v = comma + 1;
		n -= part + 1;
	}
	return 0;
}

/* Transfer-Encoding codings, in order across repeated fields. */
struct te {
	bool any;          /* a Transfer-Encoding field was present */
	bool last_chunked; /* the final coding is chunked */
	bool bad;          /* chunked not last, or an empty list element */
	bool other;        /* a coding other than chunked/identity is applied */
};

static void merge_te(const char *v, size_t n, struct te *te)
{
	te->any = true;
	while (true) {
		const char *comma = memchr(v, ',', n);
		size_t part = comma ? (size_t)(comma - v) : n;
		const char *p = v;
		size_t pn = part;
		const char *semi = memchr(p, ';', pn);

		if (semi)
			pn = (size_t)(semi - p);
		trim(&p, &pn);
		if (pn) {
			if (te->last_chunked)
				te->bad = true;   /* chunked must be the final coding */
			te->last_chunked = ieq(p, pn, "chunked");
			if (!te->last_chunked && !ieq(p, pn, "identity"))
				te->other = true;
		}
		if (!comma)
			break;
		v = comma + 1;
		n -= part + 1;
	}
}

/* ---- chunked transfer coding ----------------------------------------------
 * One decoder for requests and responses. It stops right after the final
 * CRLF so pipelined bytes stay unconsumed, passes chunk data to `sink`, and
 * accepts a bare LF where CRLF is due (lenient like curl; a stray CR that is
 * not followed by LF is an error).
 */
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
};

typedef int (*sink_fn)(void *ctx, const char *p, size_t n);

static int hexval(unsigned char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* Returns LC_PARSE_MORE (all n bytes consumed), LC_PARSE_DONE (*used bytes up
 * to the end of the body) or LC_PARSE_ERROR. `cnt` counts line bytes (size
 * line, then trailers) against their caps. */
static int chunk_feed(int *cs, int64_t *left, size_t *cnt, const char *d, size_t n, size_t *used,
		      sink_fn sink, void *ctx)
{
	size_t i = 0;

	while (i < n) {
		unsigned char c = (unsigned char)d[i];

		switch (*cs) {
		case CS_DATA: {
			size_t take = min_sz(n - i, (size_t)*left);
			if (sink(ctx, d + i, take))
				goto fail;
			*left -= (int64_t)take;
			i += take;
			if (*left == 0)
				*cs = CS_DATA_CR;
			continue;
		}
		case CS_SIZE0:
		case CS_SIZE: {
			int h = hexval(c);
			if (h >= 0) {
				if (*left > (INT64_MAX >> 4))
					goto fail;
				*left = (*left << 4) | h;
				*cs = CS_SIZE;
			} else if (*cs == CS_SIZE0) {
				goto fail;
			} else if (c == ';' || c == ' ' || c == '\t') {
				*cs = CS_EXT;
			} else if (c == '\r') {
				*cs = CS_SIZE_LF;
			} else if (c == '\n') {
				goto size_done;
			} else {
				goto fail;
			}
			break;
		}
		case CS_EXT:
			if (c == '\r')
				*cs = CS_SIZE_LF;
			else if (c == '\n')
				goto size_done;
			break;
		case CS_SIZE_LF:
			if (c != '\n')
				goto fail;
			goto size_done;
		case CS_DATA_CR:
			if (c == '\r')
				*cs = CS_DATA_LF;
			else if (c == '\n')
				*cs = CS_SIZE0;
			else
				goto fail;
			break;
		case CS_DATA_LF:
			if (c != '\n')
				goto fail;
			*cs = CS_SIZE0;
			*cnt = 0;
			break;
		case CS_TRL_START:
			if (c == '\r')
				*cs = CS_TRL_END_LF;
			else if (c == '\n')
				goto end;
			else
				*cs = CS_TRL_LINE;
			break;
		case CS_TRL_LINE:
			if (c == '\n')
				*cs = CS_TRL_START;
			break;
		case CS_TRL_END_LF:
			if (c != '\n')
				goto fail;
			goto end;
		default:
			goto fail;
		}
		i++;
		if (++*cnt > (*cs >= CS_TRL_START ? (size_t)TRAILER_MAX : (size_t)CHUNK_LINE_MAX))
			goto fail;
		continue;
size_done:
		i++;
		*cnt = 0;
		*cs = *left == 0 ? CS_TRL_START : CS_DATA;
	}
	*used = n;
	return LC_PARSE_MORE;
end:
	*cs = CS_END;
	*used = i + 1;
	return LC_PARSE_DONE;
fail:
	*used = i;
	return LC_PARSE_ERROR;
}

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
	if (path_ends(path, n, "/embeddings"))
		return LC_API_EMBEDDINGS;
	if (path_ends(path, n, "/v1/messages"))
		return LC_API_MESSAGES;
	if (path_ends(path, n, "/completions"))
		return LC_API_COMPLETIONS;
	return LC_API_UNKNOWN;
}

/* ---- HTTP/1.1 request -------------------------------------------------------
 * Private fields while the head is read: `pos` is where the next LF scan
 * starts, `chunk_left` is the offset of the current line, `cstate` says
 * whether a non-empty line was seen yet. Once the head is in, `cstate`,
 * `chunk_left` and `pos` belong to chunk_feed (state, size, line bytes).
 */
enum { RH_LEAD = 0, RH_IN = 1 };

void lc_reqparse_init(struct lc_reqparse *p)
{
	memset(p, 0, sizeof(*p));
	lc_buf_init(&p->raw, REQ_RAW_MAX);
	lc_buf_init(&p->body, LC_WIRE_MAX_BODY);
	p->state = LC_PARSE_MORE;
	p->content_length = -1;
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
	return head_header(p->raw.data, p->head_len, name, out, outlen);
}

/* Request line and the fields that frame the body. Returns DONE when the
 * request has no body, MORE when one follows, ERROR otherwise. */
static int req_parse_head(struct lc_reqparse *p)
{
	const char *cur = p->raw.data, *end = p->raw.data + p->head_len;
	const char *line, *sp1, *sp2, *target;
	size_t len, tlen, i;
	int64_t cl = -1;
	struct te te = {0};
	struct hdr h;

	if (!start_line(&cur, end, &line, &len))
		return LC_PARSE_ERROR;
	sp1 = memchr(line, ' ', len);
	if (!sp1 || sp1 == line)
		return LC_PARSE_ERROR;
	sp2 = memchr(sp1 + 1, ' ', len - (size_t)(sp1 + 1 - line));
	if (!sp2 || sp2 == sp1 + 1)
		return LC_PARSE_ERROR;
	if (len - (size_t)(sp2 + 1 - line) != 8 ||
	    (memcmp(sp2 + 1, "HTTP/1.1", 8) != 0 && memcmp(sp2 + 1, "HTTP/1.0", 8) != 0))
		return LC_PARSE_ERROR;
	for (i = 0; line + i < sp1; i++)
		if (!is_tchar((unsigned char)line[i]))
			return LC_PARSE_ERROR;
	if (!copy_field(p->method, sizeof(p->method), line, (size_t)(sp1 - line)))
		return LC_PARSE_ERROR;
	target = sp1 + 1;
	tlen = (size_t)(sp2 - target);
	for (i = 0; i < tlen; i++)
		if ((unsigned char)target[i] <= 0x20 || target[i] == 0x7f)
			return LC_PARSE_ERROR;
	/* A target longer than the field usually has a long query string, which
	 * lc_api_from_path ignores anyway: keep the path part when that fits. */
	if (!copy_field(p->path, sizeof(p->path), target, tlen)) {
		const char *q = memchr(target, '?', tlen);
		if (!q || !copy_field(p->path, sizeof(p->path), target, (size_t)(q - target)))
			return LC_PARSE_ERROR;
	}

	while (next_header(&cur, end, &h)) {
		if (ieq(h.name, h.nlen, "content-length")) {
			if (merge_content_length(h.val, h.vlen, &cl))
				return LC_PARSE_ERROR;
		} else if (ieq(h.name, h.nlen, "transfer-encoding")) {
			merge_te(h.val, h.vlen, &te);
		} else if (ieq(h.name, h.nlen, "expect")) {
			if (ieq(h.val, h.vlen, "100-continue"))
				p->expect_continue = true;
		}
	}
	/* A request body whose length we cannot know would make us forward a
	 * different message than the one we judged (RFC 9112 6.3 says 400). */
	if (te.any) {
		if (!te.last_chunked || te.bad)
			return LC_PARSE_ERROR;
		p->chunked = true;
		p->content_length = -1;   /* Transfer-Encoding overrides Content-Length */
		p->cstate = CS_SIZE0;
		p->chunk_left = 0;
		p->pos = 0;
		return LC_PARSE_MORE;
	}
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
	size_t old = p->raw.len;
	size_t take = min_sz(n, LC_WIRE_MAX_HEAD - old);
	size_t i, cmp;

	*off = 0;
	if (take && lc_buf_add(&p->raw, d, take))
		return LC_PARSE_ERROR;

	/* HTTP/2 prior knowledge: "PRI" is reserved (RFC 9113 3.4), so once "PRI "
	 * is in, this is not a request we can parse; say so before the rest of
	 * the preface arrives. */
	cmp = min_sz(p->raw.len, 4);
	if (cmp && memcmp(p->raw.data, H2_PREFACE, cmp) == 0) {
		if (cmp == 4) {
			*off = take;
			return LC_PARSE_H2;
		}
		*off = take;
		return LC_PARSE_MORE;
	}

	for (i = p->pos; i < p->raw.len; i++) {
		const char *nl = memchr(p->raw.data + i, '\n', p->raw.len - i);
		size_t ls = (size_t)p->chunk_left, llen;

		if (!nl)
			break;
		i = (size_t)(nl - p->raw.data);
		llen = i - ls;
		if (llen == 0 || (llen == 1 && p->raw.data[ls] == '\r')) {
			if (p->cstate == RH_IN) {
				p->head_len = i + 1;
				p->raw.len = i + 1;
				p->raw.data[p->raw.len] = '\0';
				*off = p->head_len - old;
				return req_parse_head(p);
			}
		} else {
			p->cstate = RH_IN;
		}
		p->chunk_left = (int64_t)(i + 1);
	}
	p->pos = p->raw.len;
	*off = take;
	if (p->raw.len >= LC_WIRE_MAX_HEAD)
		return LC_PARSE_ERROR;
	return LC_PARSE_MORE;
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
		rc = chunk_feed(&p->cstate, &p->chunk_left, &p->pos, d + off, n - off, &k,
				req_body_sink, p);
		if (rc != LC_PARSE_ERROR && lc_buf_add(&p->raw, d + off, k))
			rc = LC_PARSE_ERROR;
	} else {
		k = min_sz(n - off, (size_t)(p->content_length - (int64_t)p->body.len));
		rc = LC_PARSE_MORE;
		if (lc_buf_add(&p->raw, d + off, k) || lc_buf_add(&p->body, d + off, k))
			rc = LC_PARSE_ERROR;
		else if ((int64_t)p->body.len == p->content_length)
			rc = LC_PARSE_DONE;
	}
	*used = off + k;
	return p->state = rc;
}

/* ---- JSON helpers ------------------------------------------------------------ */

/* A token count: absent/null -> 0 (out untouched), valid -> 1, wrong -> -1.
 * Integral reals ("1e3") are accepted: JSON does not distinguish them. */
static int get_count(json_t *obj, const char *key, int64_t *out)
{
	json_t *v = json_object_get(obj, key);
	int64_t x;

	if (!v || json_is_null(v))
		return 0;
	if (json_is_integer(v)) {
		x = json_integer_value(v);
	} else if (json_is_real(v)) {
		double r = json_real_value(v);
		if (!(r >= 0 && r <= (double)TOKENS_MAX) || r != (double)(int64_t)r)
			return -1;
		x = (int64_t)r;
	} else {
		return -1;
	}
	if (x < 0 || x > TOKENS_MAX)
		return -1;
	*out = x;
	return 1;
}

static json_t *get_path(json_t *root, const char *dotted)
{
	char key[256];
	const char *p = dotted;
	json_t *cur = root;

	while (cur && *p) {
		size_t n = strcspn(p, ".");
		if (n == 0 || n >= sizeof(key) || !json_is_object(cur))
			return NULL;
		memcpy(key, p, n);
		key[n] = '\0';
		cur = json_object_get(cur, key);
		p += n;
		if (*p == '.')
			p++;
	}
	return cur;
}

/* A non-empty string without NULs that fits a 128-byte field. */
static bool usable_string(json_t *v, const char **s, size_t *n)
{
	if (!json_is_string(v))
		return false;
	*s = json_string_value(v);
	*n = json_string_length(v);
	return *n > 0 && *n < 128 && strlen(*s) == *n;
}

static void copy_model(char dst[128], json_t *v)
{
	const char *s;
	size_t n;

	if (usable_string(v, &s, &n))
		copy_field(dst, 128, s, n);
}

/* ---- request fields ---------------------------------------------------------- */

static int get_cap_field(json_t *root, const char *key, int64_t *out, char *err, size_t errlen)
{
	int rc = get_count(root, key, out);
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
		if ((rc = get_count(root, "n", &n)) < 0 || (rc > 0 && n < 1)) {
			lc_errf(err, errlen, "n: expected a positive integer");
			return -1;
		}
		/* legacy completions generate best_of candidates server side and bill them all */
		if (ri->api == LC_API_COMPLETIONS &&
		    ((rc = get_count(root, "best_of", &best_of)) < 0 || (rc > 0 && best_of < 1))) {
			lc_errf(err, errlen, "best_of: expected a positive integer");
			return -1;
		}
		if (best_of > n)
			n = best_of;
		if (cap > 0) {
			/* both are <= 2^40: the product cannot overflow int64 */
			cap *= n;
			if (cap > TOKENS_MAX)
				cap = TOKENS_MAX;
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
			trim(&s, &n);
			if (n && copy_field(ri->customer, sizeof(ri->customer), s, n))
				return;
		} else if (strncmp(*id, "body:", 5) == 0) {
			const char *s;
			size_t n;

			if (root && usable_string(get_path(root, *id + 5), &s, &n) &&
			    copy_field(ri->customer, sizeof(ri->customer), s, n))
				return;
		}
	}
}

/* ---- a fast path for the few top-level fields we read ----------------------------
 * Request and response bodies are mostly text we never look at (messages, choices). Parsing
 * all of it into a jansson tree costs more than the whole LMDB transaction, so a validating
 * scanner first walks the body once, accepting only a strict subset of what json_loadb
 * accepts (ASCII-safe whitespace, strict UTF-8, valid escapes and surrogate pairs, numbers
 * that cannot overflow, bounded depth, object keys without escapes), and remembers where the
 * last occurrence of each wanted top-level key's value lies (jansson keeps the last duplicate).
 * A small object holding just those values, each parsed by jansson itself, then stands in for
 * the full tree. Anything outside the subset returns NULL and the caller parses the body with
 * json_loadb as before, so results and error messages are unchanged. */
struct fj_pick {
	const char *key;        /* not NUL-terminated */
	size_t klen;
	const unsigned char *v; /* value span, NULL when absent */
	size_t vlen;
};

struct fj {
	const unsigned char *p, *e;
	int depth;
};

#define FJ_MAX_DEPTH 64
#define FJ_MAX_PICKS 24

static inline void fj_ws(struct fj *s)
{
	while (s->p < s->e && (*s->p == ' ' || *s->p == '\n' || *s->p == '\r' || *s->p == '\t'))
		s->p++;
}

static int fj_hex4(const unsigned char *p, const unsigned char *e, unsigned *out)
{
	unsigned v = 0;

	if (e - p < 4)
		return -1;
	for (int i = 0; i < 4; i++) {
		unsigned c = p[i], d;

		if (c >= '0' && c <= '9')
			d = c - '0';
		else if (c >= 'a' && c <= 'f')
			d = c - 'a' + 10;
		else if (c >= 'A' && c <= 'F')
			d = c - 'A' + 10;
		else
			return -1;
		v = v << 4 | d;
	}
	*out = v;
	return 0;
}

/* s->p at the opening quote; *esc: the string holds a backslash */
static int fj_string(struct fj *s, bool *esc)
{
	const unsigned char *p = s->p + 1, *e = s->e;

	*esc = false;
	for (;;) {
		unsigned c, v, v2;
		int need;

		while (p < e && *p >= 0x20 && *p < 0x80 && *p != '"' && *p != '\\')
			p++;
		if (p >= e)
			return -1;
		c = *p;
		if (c == '"') {
			s->p = p + 1;
			return 0;
		}
		if (c < 0x20)
			return -1;
		if (c == '\\') {
			*esc = true;
			if (e - p < 2)
				return -1;
			c = p[1];
			if (c == 'u') {
				if (fj_hex4(p + 2, e, &v))
					return -1;
				p += 6;
				if (v >= 0xD800 && v <= 0xDBFF) {
					if (e - p < 2 || p[0] != '\\' || p[1] != 'u' || fj_hex4(p + 2, e, &v2) ||
					    v2 < 0xDC00 || v2 > 0xDFFF)
						return -1;
					p += 6;
				} else if (v >= 0xDC00 && v <= 0xDFFF) {
					return -1;
				}
			} else if (c == '"' || c == '\\' || c == '/' || c == 'b' || c == 'f' || c == 'n' || c == 'r' ||
				   c == 't') {
				p += 2;
			} else {
				return -1;
			}
			continue;
		}
		/* strict UTF-8: no overlongs, no surrogates, nothing above U+10FFFF */
		if (c >= 0xC2 && c <= 0xDF) {
			need = 1;
			v = c & 0x1F;
		} else if (c >= 0xE0 && c <= 0xEF) {
			need = 2;
			v = c & 0x0F;
		} else if (c >= 0xF0 && c <= 0xF4) {
			need = 3;
			v = c & 0x07;
		} else {
			return -1;
		}
		if (e - p <= need)
			return -1;
		for (int i = 1; i <= need; i++) {
			if ((p[i] & 0xC0) != 0x80)
				return -1;
			v = v << 6 | (p[i] & 0x3F);
		}
		if (v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF) || (need == 2 && v < 0x800) ||
		    (need == 3 && v < 0x10000))
			return -1;
		p += need + 1;
	}
}

static int fj_number(struct fj *s)
{
	const unsigned char *p = s->p, *e = s->e, *d0;
	size_t nd;
	bool real = false;

	if (p < e && *p == '-')
		p++;
	if (p >= e)
		return -1;
	d0 = p;
	if (*p == '0') {
		p++;
		if (p < e && *p >= '0' && *p <= '9')
			return -1;
	} else if (*p >= '1' && *p <= '9') {
		while (p < e && *p >= '0' && *p <= '9')
			p++;
	} else {
		return -1;
	}
	nd = (size_t)(p - d0);
	if (p < e && *p == '.') {
		p++;
		if (p >= e || *p < '0' || *p > '9')
			return -1;
		while (p < e && *p >= '0' && *p <= '9')
			p++;
		real = true;
	}
	if (p < e && (*p == 'e' || *p == 'E')) {
		long x = 0;
		bool neg = false;
		const unsigned char *x0;

		p++;
		if (p < e && (*p == '+' || *p == '-'))
			neg = *p++ == '-';
		x0 = p;
		while (p < e && *p >= '0' && *p <= '9' && p - x0 < 5)
			x = x * 10 + (*p++ - '0');
		if (p == x0 || (p < e && *p >= '0' && *p <= '9'))
			return -1;  /* no digits, or an exponent too long to judge here */
		if (!neg && (long)nd + x > 300)
			return -1;  /* might overflow a double: jansson's verdict */
		real = true;
	}
	if (!real && nd > 18)
		return -1;  /* might not fit json_int_t: jansson's verdict */
	if (real && nd > 300)
		return -1;
	s->p = p;
	return 0;
}

static int fj_value(struct fj *s);

static int fj_object(struct fj *s, struct fj_pick *pk, int npk)
{
	if (++s->depth > FJ_MAX_DEPTH)
		return -1;
	s->p++;
	fj_ws(s);
	if (s->p < s->e && *s->p == '}') {
		s->p++;
		s->depth--;
		return 0;
	}
	for (;;) {
		const unsigned char *k, *v;
		size_t kl;
		bool esc;

		fj_ws(s);
		if (s->p >= s->e || *s->p != '"')
			return -1;
		k = s->p + 1;
		if (fj_string(s, &esc) || esc)
			return -1;  /* keys with escapes (maybe \u0000): jansson decides */
		kl = (size_t)(s->p - 1 - k);
		fj_ws(s);
		if (s->p >= s->e || *s->p != ':')
			return -1;
		s->p++;
		fj_ws(s);
		v = s->p;
		if (fj_value(s))
			return -1;
		for (int i = 0; i < npk; i++)
			if (pk[i].klen == kl && memcmp(pk[i].key, k, kl) == 0) {
				pk[i].v = v;
				pk[i].vlen = (size_t)(s->p - v);
			}
		fj_ws(s);
		if (s->p >= s->e)
			return -1;
		if (*s->p == ',') {
			s->p++;
			continue;
		}
		if (*s->p != '}')
			return -1;
		s->p++;
		s->depth--;
		return 0;
	}
}

static int fj_array(struct fj *s)
{
	if (++s->depth > FJ_MAX_DEPTH)
		return -1;
	s->p++;
	fj_ws(s);
	if (s->p < s->e && *s->p == ']') {
		s->p++;
		s->depth--;
		return 0;
	}
	for (;;) {
		if (fj_value(s))
			return -1;
		fj_ws(s);
		if (s->p >= s->e)
			return -1;
		if (*s->p == ',') {
			s->p++;
			continue;
		}
		if (*s->p != ']')
			return -1;
		s->p++;
		s->depth--;
		return 0;
	}
}

static int fj_literal(struct fj *s, const char *lit, size_t n)
{
	if ((size_t)(s->e - s->p) < n || memcmp(s->p, lit, n) != 0)
		return -1;
	s->p += n;
	return 0;
}

static int fj_value(struct fj *s)
{
	bool esc;

	fj_ws(s);
	if (s->p >= s->e)
		return -1;
	switch (*s->p) {
	case '"':
		return fj_string(s, &esc);
	case '{':
		return fj_object(s, NULL, 0);
	case '[':
		return fj_array(s);
	case 't':
		return fj_literal(s, "true", 4);
	case 'f':
		return fj_literal(s, "false", 5);
	case 'n':
		return fj_literal(s, "null", 4);
	default:
		return fj_number(s);
	}
}

/* one validated value span as jansson would have built it */
static json_t *fj_make(const unsigned char *v, size_t n)
{
	switch (v[0]) {
	case '"':
		if (!memchr(v, '\\', n))
			return json_stringn((const char *)v + 1, n - 2);
		break;
	case 't':
		return json_true();
	case 'f':
		return json_false();
	case 'n':
		return json_null();
	case '{':
	case '[':
		break;
	default:
		if (n < 24 && !memchr(v, '.', n) && !memchr(v, 'e', n) && !memchr(v, 'E', n)) {
			char b[24];

			memcpy(b, v, n);
			b[n] = '\0';
			return json_integer((json_int_t)strtoll(b, NULL, 10));
		}
		break;
	}
	return json_loadb((const char *)v, n, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
}

/* An object holding the picked top-level members of body, or NULL: parse it all with jansson. */
static json_t *fj_subset(const void *body, size_t len, struct fj_pick *pk, int npk)
{
	struct fj s = {.p = body, .e = (const unsigned char *)body + len, .depth = 0};
	json_t *root;

	fj_ws(&s);
	if (s.p >= s.e || *s.p != '{' || fj_object(&s, pk, npk))
		return NULL;
	fj_ws(&s);
	if (s.p != s.e)
		return NULL;
	root = json_object();
	if (!root)
		return NULL;
	for (int i = 0; i < npk; i++) {
		char key[256];
		json_t *v;

		if (!pk[i].v || pk[i].klen >= sizeof(key))
			continue;
		v = fj_make(pk[i].v, pk[i].vlen);
		memcpy(key, pk[i].key, pk[i].klen);
		key[pk[i].klen] = '\0';
		if (!v || json_object_set_new(root, key, v)) {
			json_decref(root);
			return NULL;
		}
	}
	return root;
}

static int fj_add(struct fj_pick *pk, int n, const char *key, size_t klen)
{
	if (n >= FJ_MAX_PICKS)
		return -1;
	pk[n] = (struct fj_pick){.key = key, .klen = klen};
	return n + 1;
}

/* the top-level members lc_reqinfo_parse reads (get_path reads a body: identifier's first component) */
static json_t *reqinfo_subset(const void *body, size_t len, const char *const *identify)
{
	static const char *const fixed[] = {"model", "stream", "stream_options", "max_completion_tokens",
					    "max_tokens", "n", "best_of", "max_output_tokens", "service_tier",
					    "audio"};
	struct fj_pick pk[FJ_MAX_PICKS];
	int np = 0;

	for (size_t i = 0; i < sizeof(fixed) / sizeof(fixed[0]); i++)
		np = fj_add(pk, np, fixed[i], strlen(fixed[i]));
	for (const char *const *id = identify; id && *id && np >= 0; id++) {
		size_t n;

		if (strncmp(*id, "body:", 5) != 0)
			continue;
		n = strcspn(*id + 5, ".");
		if (n > 0 && n < 256)
			np = fj_add(pk, np, *id + 5, n);
	}
	if (np < 0)
		return NULL;
	return fj_subset(body, len, pk, np);
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
	ri.input_estimate = (int64_t)len;
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
				if (root)
					lc_errf(err, errlen, "request body is not a JSON object");
				else
					lc_errf(err, errlen, "request body is not valid JSON: %s", jerr.text);
				goto out;
			}
		}
	}

	if (root) {
		json_t *m = json_object_get(root, "model");
		if (m && !json_is_null(m)) {
			if (!json_is_string(m) ||
			    !copy_field(ri.model, sizeof(ri.model), json_string_value(m), strlen(json_string_value(m)))) {
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
	}
	reqinfo_customer(root, identify, hdr, hdr_ctx, &ri);
	*out = ri;
	rc = 0;
out:
	json_decref(root);
	return rc;
}

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
 *     server_tool_use.web_search_requests counts web searches.
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

	if (get_count(u, "input_tokens", &a->in) < 0 || get_count(u, "output_tokens", &a->out) < 0 ||
	    get_count(u, "cache_creation_input_tokens", &a->cc) < 0 ||
	    get_count(u, "cache_read_input_tokens", &a->cr) < 0 ||
	    (json_is_object(cc) && get_count(cc, "ephemeral_1h_input_tokens", &a->cw1h) < 0) ||
	    (json_is_object(stu) && get_count(stu, "web_search_requests", &a->web) < 0))
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

	if (get_count(u, chat ? "prompt_tokens" : "input_tokens", &in) != 1 ||
	    get_count(u, chat ? "completion_tokens" : "output_tokens", &outp) < 0)
		return -1;
	if (json_is_object(id) && (get_count(id, "cached_tokens", &cached) < 0 ||
				   get_count(id, "audio_tokens", &ain) < 0 ||
				   get_count(id, "image_tokens", &img) < 0))
		return -1;
	if (json_is_object(cd) && get_count(cd, "audio_tokens", &acached) < 0)
		return -1;
	if (json_is_object(od) && (get_count(od, "reasoning_tokens", &reason) < 0 ||
				   get_count(od, "audio_tokens", &aout) < 0))
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
		struct fj_pick pk[5] = {{"model", 5, NULL, 0}, {"usage", 5, NULL, 0}, {"type", 4, NULL, 0},
					 {"object", 6, NULL, 0}, {"service_tier", 12, NULL, 0}};

		root = fj_subset(body, len, pk, 5);
	}
	if (!root)
		root = json_loadb(body, len, JSON_DECODE_ANY | JSON_ALLOW_NUL, &jerr);
	if (!root)
		return -1;
	memset(&u, 0, sizeof(u));
	if (json_is_object(root)) {
		copy_model(u.model, json_object_get(root, "model"));
		copy_tier(u.service_tier, json_object_get(root, "service_tier"));
		usage = json_object_get(root, "usage");
		if (json_is_object(usage) && usage_parse(usage, usage_kind(root, usage), &u) != 0) {
			/* usage we cannot read is no usage: settle charges the estimate */
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
				copy_model(s->usage.model, json_object_get(m, "model"));
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
			copy_model(s->usage.model, json_object_get(r, "model"));
			if (strcmp(type, "response.completed") == 0 || strcmp(type, "response.incomplete") == 0 ||
			    strcmp(type, "response.failed") == 0) {
				struct lc_usage nu = s->usage;
				u = json_object_get(r, "usage");
				if (json_is_object(u) && usage_parse(u, US_RESPONSES, &nu) == 0)
					s->usage = nu;
				copy_tier(s->usage.service_tier, json_object_get(r, "service_tier"));
				s->done = true;
			}
		}
		return;
	}
	/* chat.completion.chunk / text_completion: usage is null until the last chunk */
	if (!s->usage.model[0])
		copy_model(s->usage.model, json_object_get(o, "model"));
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
	trim(&p, &n);
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

static int sse_line(struct lc_sse *s, const char *l, size_t n)
{
	const char *colon, *v;
	size_t vn;

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

/* ---- HTTP/1.1 response ------------------------------------------------------------ */

enum { RP_HEAD = 0, RP_BODY_CL, RP_BODY_CHUNKED, RP_BODY_CLOSE, RP_DONE };
enum { ENC_NONE = 0, ENC_GZIP, ENC_DEFLATE, ENC_OTHER };

struct resp_priv {
	int phase;
	bool head_request;
	struct lc_buf head;      /* the current head (an interim 1xx head is dropped) */
	size_t scan;             /* LF scan resumes here */
	size_t line_start;
	bool head_started;       /* a non-empty line was seen */
	int64_t left;            /* Content-Length bytes to go */
	int cs;                  /* chunk_feed state */
	int64_t cleft;
	size_t ccnt;
	int enc;
	z_stream zs;
	bool z_live;             /* inflateInit2 done */
	bool z_ended;            /* a deflate stream or gzip member ended */
	int z_members;           /* gzip members completed */
	unsigned char zhead[2];  /* deflate: the first two bytes decide zlib vs raw */
	size_t zhead_n;
	bool usage_lost;         /* body over the cap, undecodable, or an encoding we lack */
	struct lc_buf body;      /* decoded non-SSE body */
	struct lc_sse sse;
};

void lc_resp_init(struct lc_resp *r, bool head_request)
{
	struct resp_priv *rp;

	memset(r, 0, sizeof(*r));
	r->state = LC_PARSE_MORE;
	r->content_length = -1;
	rp = calloc(1, sizeof(*rp));
	if (!rp) {
		r->state = LC_PARSE_ERROR;
		return;
	}
	rp->head_request = head_request;
	lc_buf_init(&rp->head, LC_WIRE_MAX_HEAD);
	lc_buf_init(&rp->body, LC_WIRE_MAX_BODY);
	lc_sse_init(&rp->sse);
	r->priv = rp;
}

static void resp_release(struct resp_priv *rp)
{
	if (rp->z_live)
		inflateEnd(&rp->zs);
	rp->z_live = false;
	lc_buf_free(&rp->head);
	lc_buf_free(&rp->body);
	lc_sse_free(&rp->sse);
}

void lc_resp_free(struct lc_resp *r)
{
	struct resp_priv *rp = r->priv;

	if (rp) {
		resp_release(rp);
		free(rp);
	}
	r->priv = NULL;
}

/* Decoded body bytes: into the SSE parser or the capped JSON buffer. */
static void resp_deliver(struct lc_resp *r, struct resp_priv *rp, const char *p, size_t n)
{
	if (r->sse) {
		lc_sse_feed(&rp->sse, p, n);   /* an overlong line is dropped; later events still count */
		r->usage = rp->sse.usage;
		return;
	}
	if (rp->usage_lost)
		return;
	if (lc_buf_add(&rp->body, p, n)) {
		rp->usage_lost = true;
		lc_buf_free(&rp->body);
	}
}

/* Undecodable content: stop decoding. A JSON body's usage is gone; an SSE
 * stream keeps what its events delivered before the damage. */
static void z_lost(struct resp_priv *rp)
{
	rp->usage_lost = true;
	rp->enc = ENC_OTHER;
	lc_buf_free(&rp->body);
}

/* Inflates one input span. Content that does not decode loses only the usage
 * (the framing is independent of it and the caller still gets every byte). */
static void resp_inflate(struct lc_resp *r, struct resp_priv *rp, const unsigned char *p, size_t n)
{
	unsigned char out[16384];
	int zrc;

	if (!rp->z_live) {
		int wbits = 15 + 32;   /* gzip, auto-detecting a zlib header too */

		if (rp->enc == ENC_DEFLATE) {
			/* "deflate" is meant to be zlib (RFC 9110 8.4.1.2) but some servers
			 * send raw deflate. Try zlib on the 2-byte header, where zlib fails
			 * first, then fall back to raw with the same bytes. */
			while (rp->zhead_n < 2 && n) {
				rp->zhead[rp->zhead_n++] = *p++;
				n--;
			}
			if (rp->zhead_n < 2)
				return;
			wbits = 15;
		}
		memset(&rp->zs, 0, sizeof(rp->zs));
		if (inflateInit2(&rp->zs, wbits) != Z_OK) {
			z_lost(rp);
			return;
		}
		rp->z_live = true;
		if (rp->enc == ENC_DEFLATE) {
			rp->zs.next_in = rp->zhead;
			rp->zs.avail_in = 2;
			rp->zs.next_out = out;
			rp->zs.avail_out = sizeof(out);
			zrc = inflate(&rp->zs, Z_NO_FLUSH);
			if (zrc == Z_DATA_ERROR) {
				inflateEnd(&rp->zs);
				memset(&rp->zs, 0, sizeof(rp->zs));
				rp->z_live = false;
				if (inflateInit2(&rp->zs, -15) != Z_OK) {
					z_lost(rp);
					return;
				}
				rp->z_live = true;
				rp->zs.next_in = rp->zhead;
				rp->zs.avail_in = 2;
				rp->zs.next_out = out;
				rp->zs.avail_out = sizeof(out);
				zrc = inflate(&rp->zs, Z_NO_FLUSH);
			}
			if (zrc != Z_OK && zrc != Z_BUF_ERROR && zrc != Z_STREAM_END) {
				z_lost(rp);
				return;
			}
			if (sizeof(out) - rp->zs.avail_out)
				resp_deliver(r, rp, (const char *)out, sizeof(out) - rp->zs.avail_out);
			if (zrc == Z_STREAM_END)
				rp->z_ended = true;
		}
	}

	while (n && !(rp->usage_lost && !r->sse)) {
		if (rp->z_ended) {
			/* a gzip body may be several members back to back; anything
			 * after a deflate stream is ignored */
			if (rp->enc != ENC_GZIP || inflateReset(&rp->zs) != Z_OK)
				return;
			rp->z_ended = false;
		}
		size_t consumed, produced;

		rp->zs.next_in = (unsigned char *)p;
		rp->zs.avail_in = (uInt)min_sz(n, UINT_MAX);
		rp->zs.next_out = out;
		rp->zs.avail_out = sizeof(out);
		zrc = inflate(&rp->zs, Z_NO_FLUSH);
		produced = sizeof(out) - rp->zs.avail_out;
		consumed = (size_t)(rp->zs.next_in - (const unsigned char *)p);
		if (produced)
			resp_deliver(r, rp, (const char *)out, produced);
		p += consumed;
		n -= consumed;
		if (zrc == Z_STREAM_END) {
			rp->z_ended = true;
			rp->z_members++;
		} else if (zrc == Z_DATA_ERROR && rp->enc == ENC_GZIP && rp->z_members > 0 &&
			   rp->zs.total_out == 0) {
			/* bytes after a complete gzip member that are no member (some
			 * servers pad): the members before them are the whole body */
			rp->enc = ENC_OTHER;
			return;
		} else if ((zrc != Z_OK && zrc != Z_BUF_ERROR) || (!consumed && !produced)) {
			z_lost(rp);
			return;
		}
	}
}

static int resp_body_sink(void *ctx, const char *p, size_t n)
{
	struct lc_resp *r = ctx;
	struct resp_priv *rp = r->priv;

	if (n == 0)
		return 0;
	if (rp->enc == ENC_NONE)
		resp_deliver(r, rp, p, n);
	else if (rp->enc != ENC_OTHER && (!rp->usage_lost || r->sse))
		resp_inflate(r, rp, (const unsigned char *)p, n);
	/* ENC_OTHER (br, zstd, stacked or broken codings): framing only */
	return 0;
}

static void resp_finish(struct lc_resp *r, struct resp_priv *rp)
{
	if (r->sse) {
		lc_sse_finish(&rp->sse);
		r->usage = rp->sse.usage;
	} else if (!rp->usage_lost && rp->body.len) {
		struct lc_usage u;
		if (lc_usage_from_json(rp->body.data, rp->body.len, &u) == 0)
			r->usage = u;
	}
	resp_release(rp);
	rp->phase = RP_DONE;
	r->state = LC_PARSE_DONE;
}

/* Status line and framing fields of a complete head. */
static int resp_parse_head(struct lc_resp *r, struct resp_priv *rp)
{
	const char *cur = rp->head.data, *end = rp->head.data + rp->head.len, *line;
	size_t len;
	int64_t cl = -1;
	struct te te = {0};
	struct hdr h;
	int status, ce_count = 0;

	if (!start_line(&cur, end, &line, &len) || len < 12 || memcmp(line, "HTTP/1.", 7) != 0 ||
	    (line[7] != '0' && line[7] != '1') || line[8] != ' ' || line[9] < '1' || line[9] > '9' ||
	    line[10] < '0' || line[10] > '9' || line[11] < '0' || line[11] > '9' ||
	    (len > 12 && line[12] != ' '))
		return LC_PARSE_ERROR;
	status = (line[9] - '0') * 100 + (line[10] - '0') * 10 + (line[11] - '0');

	if (status < 200 && status != 101) {
		/* interim (100 Continue, 103 Early Hints): the real head follows */
		lc_buf_reset(&rp->head);
		rp->scan = rp->line_start = 0;
		rp->head_started = false;
		return LC_PARSE_MORE;
	}
	r->status = status;
	rp->enc = ENC_NONE;
	while (next_header(&cur, end, &h)) {
		if (ieq(h.name, h.nlen, "content-length")) {
			if (merge_content_length(h.val, h.vlen, &cl))
				return LC_PARSE_ERROR;
		} else if (ieq(h.name, h.nlen, "transfer-encoding")) {
			merge_te(h.val, h.vlen, &te);
		} else if (ieq(h.name, h.nlen, "content-type")) {
			const char *v = h.val;
			size_t vn = h.vlen;
			const char *semi = memchr(v, ';', vn);
			if (semi)
				vn = (size_t)(semi - v);
			trim(&v, &vn);
			r->sse = ieq(v, vn, "text/event-stream");
		} else if (ieq(h.name, h.nlen, "content-encoding")) {
			if (ieq(h.val, h.vlen, "gzip") || ieq(h.val, h.vlen, "x-gzip"))
				rp->enc = ENC_GZIP;
			else if (ieq(h.val, h.vlen, "deflate"))
				rp->enc = ENC_DEFLATE;
			else if (!ieq(h.val, h.vlen, "identity") && h.vlen)
				rp->enc = ENC_OTHER;
			ce_count++;
		}
	}
	if (ce_count > 1 && rp->enc != ENC_NONE)
		rp->enc = ENC_OTHER;   /* stacked codings: framing only */
	lc_buf_free(&rp->head);

	/* RFC 9112 6.3, in order */
	if (rp->head_request || status == 101 || status == 204 || status == 304) {
		r->content_length = cl;
		resp_finish(r, rp);
		return LC_PARSE_DONE;
	}
	if (te.any && te.last_chunked && !te.bad) {
		r->chunked = true;
		if (te.other)
			rp->enc = ENC_OTHER;
		rp->phase = RP_BODY_CHUNKED;
		rp->cs = CS_SIZE0;
		return LC_PARSE_MORE;
	}
	if (te.any) {
		rp->enc = ENC_OTHER;
		rp->phase = RP_BODY_CLOSE;
		return LC_PARSE_MORE;
	}
	r->content_length = cl;
	if (cl == 0) {
		resp_finish(r, rp);
		return LC_PARSE_DONE;
	}
	if (cl > 0) {
		rp->left = cl;
		rp->phase = RP_BODY_CL;
		return LC_PARSE_MORE;
	}
	rp->phase = RP_BODY_CLOSE;
	return LC_PARSE_MORE;
}

static int resp_head(struct lc_resp *r, struct resp_priv *rp, const char *d, size_t n, size_t *off)
{
	size_t old = rp->head.len;
	size_t take = min_sz(n, LC_WIRE_MAX_HEAD - old);
	size_t i;

	*off = 0;
	if (take && lc_buf_add(&rp->head, d, take))
		return LC_PARSE_ERROR;

	for (i = rp->scan; i < rp->head.len; i++) {
		const char *nl;
		size_t llen;

		/* garbage (TLS bytes, HTML) fails here, long before the head cap */
		if (!rp->head_started && i - rp->line_start < 5) {
			char c = rp->head.data[i];
			if (c != '\r' && c != '\n') {
				if (c != "HTTP/"[i - rp->line_start])
					return LC_PARSE_ERROR;
				continue;
			}
		}
		nl = memchr(rp->head.data + i, '\n', rp->head.len - i);
		if (!nl)
			break;
		i = (size_t)(nl - rp->head.data);
		llen = i - rp->line_start;
		if (llen == 0 || (llen == 1 && rp->head.data[rp->line_start] == '\r')) {
			if (rp->head_started) {
				size_t hl = i + 1;
				rp->head.len = hl;
				rp->head.data[hl] = '\0';
				*off = hl - old;
				return resp_parse_head(r, rp);
			}
		} else {
			rp->head_started = true;
		}
		rp->line_start = i + 1;
	}
	rp->scan = rp->head.len;
	*off = take;
	if (rp->head.len >= LC_WIRE_MAX_HEAD)
		return LC_PARSE_ERROR;
	return LC_PARSE_MORE;
}

int lc_resp_feed(struct lc_resp *r, const void *data, size_t n, size_t *used)
{
	struct resp_priv *rp = r->priv;
	const char *d = data;
	size_t off = 0, k;
	int rc;

	*used = 0;
	if (r->state != LC_PARSE_MORE || !rp)
		return r->state;
	while (off < n && r->state == LC_PARSE_MORE) {
		switch (rp->phase) {
		case RP_HEAD:
			rc = resp_head(r, rp, d + off, n - off, &k);
			off += k;
			if (rc == LC_PARSE_ERROR)
				r->state = LC_PARSE_ERROR;
			break;
		case RP_BODY_CL:
			k = min_sz(n - off, (size_t)rp->left);
			resp_body_sink(r, d + off, k);
			rp->left -= (int64_t)k;
			off += k;
			if (rp->left == 0)
				resp_finish(r, rp);
			break;
		case RP_BODY_CHUNKED:
			rc = chunk_feed(&rp->cs, &rp->cleft, &rp->ccnt, d + off, n - off, &k,
					resp_body_sink, r);
			off += k;
			if (rc == LC_PARSE_DONE)
				resp_finish(r, rp);
			else if (rc == LC_PARSE_ERROR)
				r->state = LC_PARSE_ERROR;
			break;
		case RP_BODY_CLOSE:
			resp_body_sink(r, d + off, n - off);
			off = n;
			break;
		default:
			r->state = LC_PARSE_ERROR;
		}
	}
	*used = off;
	return r->state;
}

int lc_resp_eof(struct lc_resp *r)
{
	struct resp_priv *rp = r->priv;

	if (r->state != LC_PARSE_MORE || !rp)
		return r->state;
	if (rp->phase == RP_BODY_CLOSE) {
		resp_finish(r, rp);
		return r->state;
	}
	/* cut short: what an SSE stream delivered so far stays in r->usage */
	if (r->sse)
		r->usage = rp->sse.usage;
	return r->state = LC_PARSE_ERROR;
}

/* ---- synthetic responses --------------------------------------------------------- */

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

/* Length of a valid UTF-8 sequence at p (at most n bytes), 0 if invalid. */
static size_t utf8_len(const unsigned char *p, size_t n)
{
	size_t len, i;
	uint32_t cp;

	if (p[0] < 0x80)
		return 1;
	if (p[0] >= 0xc2 && p[0] <= 0xdf)
		len = 2, cp = p[0] & 0x1f;
	else if (p[0] >= 0xe0 && p[0] <= 0xef)
		len = 3, cp = p[0] & 0x0f;
	else if (p[0] >= 0xf0 && p[0] <= 0xf4)
		len = 4, cp = p[0] & 0x07;
	else
		return 0;
	if (len > n)
		return 0;
	for (i = 1; i < len; i++) {
		if ((p[i] & 0xc0) != 0x80)
			return 0;
		cp = (cp << 6) | (p[i] & 0x3f);
	}
	if ((len == 3 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) ||
	    (len == 4 && (cp < 0x10000 || cp > 0x10ffff)))
		return 0;
	return len;
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
		k = utf8_len((const unsigned char *)s + i, n - i);
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
