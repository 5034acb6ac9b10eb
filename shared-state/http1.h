/* http1.h - the HTTP/1.1 framing core under the request and response parsers
 * (wire_request.c, wire_response.c): line and header-field iteration, the
 * Content-Length / Transfer-Encoding merge and the body-length rule, one head
 * accumulator for requests and responses, and the chunked decoder with a
 * reason for each failure.
 *
 * Internal to llmcap (never installed). Pure functions over bytes: no I/O,
 * no globals. Every input is untrusted; every buffer and line is capped.
 */
#ifndef LC_HTTP1_H
#define LC_HTTP1_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util.h"

/* The cap on a request or response head, its start line included. */
#define LC_H1_MAX_HEAD (64 * 1024)

/* What a client speaking HTTP/2 with prior knowledge sends first (RFC 9113 3.4). */
#define LC_H2_PREFACE "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

/* Results (the same values as wire.h's LC_PARSE_*). */
enum { LC_H1_MORE = 0, LC_H1_DONE = 1, LC_H1_ERROR = -1 };

/* SP / HTAB around *p..*p+*n removed (RFC 9110 OWS). */
void lc_h1_trim(const char **p, size_t *n);
/* Case-insensitive: a[0..alen) is exactly the string b. */
bool lc_h1_ieq(const char *a, size_t alen, const char *b);

/* ---- lines and header fields ----------------------------------------------
 * A head is lines ending in LF (a CR before it is dropped). Leading empty
 * lines are skipped (RFC 9112 2.2 lets a recipient ignore them), the first
 * non-empty line is the start line, then header fields up to the empty line.
 * *cur walks from the head's start to end.
 */
struct lc_h1_field {
	const char *name;
	size_t nlen;
	const char *val;   /* trimmed */
	size_t vlen;
};
/* The next line (CR LF or LF stripped); false at the end. */
bool lc_h1_next_line(const char **cur, const char *end, const char **line, size_t *len);
/* The start line; *cur is left after it. */
bool lc_h1_start_line(const char **cur, const char *end, const char **line, size_t *len);
/* The next "name: value" field up to the empty line; lines without a colon
 * and obs-fold continuation lines carry nothing we read and are skipped. */
bool lc_h1_next_field(const char **cur, const char *end, struct lc_h1_field *f);
/* The value of the first field called `name` (any case) in a complete head,
 * copied NUL-terminated into out; -1 when absent or longer than outlen - 1. */
int lc_h1_header(const char *head, size_t len, const char *name, char *out, size_t outlen);

/* ---- message framing: Content-Length and Transfer-Encoding -----------------
 * Feed every field of a head to lc_h1_frame_field; lc_h1_frame_body then
 * says how the body is delimited (RFC 9112 6.3 steps 3 to 5). Repeated or
 * listed Content-Length values must all agree; Transfer-Encoding codings are
 * read in order across repeated fields.
 */
#define LC_H1_CL_MAX 999999999999999999LL   /* the largest Content-Length taken: 10^18 - 1 */
struct lc_h1_frame {
	int64_t content_length;   /* -1 when absent */
	const char *why;          /* why lc_h1_frame_field refused a field (static text), else NULL */
	bool te;                  /* a Transfer-Encoding field was present */
	bool te_chunked;          /* its final coding is chunked */
	bool te_bad;              /* chunked not last */
	bool te_other;            /* a coding other than chunked/identity is applied */
};
void lc_h1_frame_init(struct lc_h1_frame *fr);
/* 1: the field was Content-Length or Transfer-Encoding and is merged in;
 * 0: some other field; -1 (fr->why says which): a Content-Length that is not
 * a decimal up to LC_H1_CL_MAX (lc_parse_dec), or that disagrees with an
 * earlier one. */
int lc_h1_frame_field(struct lc_h1_frame *fr, const struct lc_h1_field *f);
enum lc_h1_body {
	LC_H1_BODY_NONE = 0,   /* neither field: no body (request) or to the close (response) */
	LC_H1_BODY_LENGTH,     /* content_length bytes (may be 0) */
	LC_H1_BODY_CHUNKED,    /* Transfer-Encoding ending in chunked: overrides Content-Length */
	LC_H1_BODY_UNKNOWN,    /* Transfer-Encoding not ending in chunked: 400 (request) or to the close */
};
enum lc_h1_body lc_h1_frame_body(const struct lc_h1_frame *fr);

/* ---- head accumulator --------------------------------------------------------
 * Gathers a head from reads of any size into a caller's lc_buf, up to the
 * empty line that ends it. The buffer may already hold bytes and may be
 * allowed to grow past the head (a request keeps its raw bytes in one
 * buffer): the accumulator takes at most LC_H1_MAX_HEAD bytes in all.
 *   add:  appends what fits of this read (LC_H1_ERROR only when out of memory);
 *   scan: looks for the end of the head in what was added. DONE: the buffer
 *         is cut right after the empty line (NUL-terminated), h->len is the
 *         head's length and *used says how many bytes of this read belong to
 *         it (the rest stay with the caller). MORE: the whole read was taken.
 *         ERROR: the head passed LC_H1_MAX_HEAD, or the start line does not
 *         begin with `magic` (checked as bytes arrive, so garbage fails on
 *         its first bytes, not at the cap).
 *   feed: add then scan.
 */
struct lc_h1_head {
	const char *magic;        /* what the start line begins with ("HTTP/"), or NULL */
	size_t len;               /* length of the complete head, 0 until it is in */
	/* private */
	size_t fed;               /* buffer length before the current read */
	size_t scan;              /* the LF scan resumes here */
	size_t line_start;        /* offset of the current line */
	bool started;             /* a non-empty line was seen */
};
void lc_h1_head_init(struct lc_h1_head *h, const char *magic);
int lc_h1_head_add(struct lc_h1_head *h, struct lc_buf *b, const char *d, size_t n);
int lc_h1_head_scan(struct lc_h1_head *h, struct lc_buf *b, size_t *used);
int lc_h1_head_feed(struct lc_h1_head *h, struct lc_buf *b, const char *d, size_t n, size_t *used);

/* ---- chunked transfer coding -------------------------------------------------
 * One decoder for requests and responses. It stops right after the final
 * CRLF so pipelined bytes stay unconsumed, passes chunk data to `sink`, and
 * accepts a bare LF where CRLF is due (lenient like curl; a CR not followed
 * by LF is an error). A chunk-size line with its extensions is capped at
 * LC_H1_CHUNK_LINE_MAX bytes, the trailer section at LC_H1_MAX_HEAD.
 * Each failure says why (lc_h1_chunk_strerror), in the manner of curl's
 * lib/http_chunks.c.
 */
#define LC_H1_CHUNK_LINE_MAX 4096

enum lc_h1_chunk_err {
	LC_H1_CHUNK_OK = 0,
	LC_H1_CHUNK_NO_HEX,          /* a chunk-size line does not start with a hex digit */
	LC_H1_CHUNK_TOO_BIG,         /* the chunk size does not fit 63 bits */
	LC_H1_CHUNK_BAD_SIZE,        /* a byte after the size digits that starts no extension or line end */
	LC_H1_CHUNK_BAD_SIZE_CRLF,   /* a CR on the size line not followed by LF */
	LC_H1_CHUNK_BAD_DATA_CRLF,   /* chunk data not followed by CRLF */
	LC_H1_CHUNK_LINE_TOO_LONG,   /* a chunk-size line over LC_H1_CHUNK_LINE_MAX */
	LC_H1_CHUNK_TRAILER_TOO_LONG,/* the trailer section over LC_H1_MAX_HEAD */
	LC_H1_CHUNK_BAD_END,         /* the CR of the final empty line not followed by LF */
	LC_H1_CHUNK_SINK,            /* the sink refused the data (over its cap, out of memory) */
	LC_H1_CHUNK_STATE,           /* fed again after the end or after a failure */
	LC_H1_CHUNK_LAST             /* never used */
};

/* Where decoded chunk data goes; nonzero stops the decoder (LC_H1_CHUNK_SINK). */
typedef int (*lc_h1_sink)(void *ctx, const char *p, size_t n);

struct lc_h1_chunk {
	enum lc_h1_chunk_err err; /* why the last feed failed, LC_H1_CHUNK_OK otherwise */
	/* private */
	int state;
	int64_t left;             /* chunk size being read, then data bytes to go */
	size_t cnt;               /* line bytes (size line, then trailers) against their caps */
};
void lc_h1_chunk_init(struct lc_h1_chunk *c);
/* MORE (all n bytes consumed), DONE (*used bytes, up to the end of the body)
 * or ERROR (c->err says why; *used is the offset of the offending byte, or
 * just past it when it is the byte that passed a cap). */
int lc_h1_chunk_feed(struct lc_h1_chunk *c, const char *d, size_t n, size_t *used, lc_h1_sink sink,
		     void *ctx);
const char *lc_h1_chunk_strerror(enum lc_h1_chunk_err e);

#endif
