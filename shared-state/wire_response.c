/* wire_response.c - the HTTP/1.1 response a provider sends back (wire.h
 * lc_resp_*): status line, interim 1xx heads, the body framed by
 * Content-Length, chunked coding or the close, Content-Encoding gzip/deflate
 * undone with zlib, and the decoded body handed to the SSE parser or kept
 * (capped) for lc_usage_from_json. Framing is http1.c's.
 */
#include "wire_int.h"

#include <limits.h>
#include <stdlib.h>
#include <zlib.h>

/* what a status line begins with: anything else (TLS bytes, HTML) fails at its first bytes */
static const char STATUS_MAGIC[] = "HTTP/";

enum { RP_HEAD = 0, RP_BODY_CL, RP_BODY_CHUNKED, RP_BODY_CLOSE, RP_DONE };
enum { ENC_NONE = 0, ENC_GZIP, ENC_DEFLATE, ENC_OTHER };

struct resp_priv {
	int phase;
	bool head_request;
	struct lc_buf head;      /* the current head (an interim 1xx head is dropped) */
	struct lc_h1_head hs;    /* its accumulator */
	int64_t left;            /* Content-Length bytes to go */
	struct lc_h1_chunk chunk; /* chunked body; chunk.err says why it failed */
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
	lc_h1_head_init(&rp->hs, STATUS_MAGIC);
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
		rp->zs.avail_in = (uInt)lc_min_sz(n, UINT_MAX);
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

/* "HTTP/1.x NNN[ reason]": the status, or -1. */
static int status_line(const char *line, size_t len)
{
	if (len < 12 || memcmp(line, "HTTP/1.", 7) != 0 || (line[7] != '0' && line[7] != '1') ||
	    line[8] != ' ' || line[9] < '1' || line[9] > '9' || line[10] < '0' || line[10] > '9' ||
	    line[11] < '0' || line[11] > '9' || (len > 12 && line[12] != ' '))
		return -1;
	return (line[9] - '0') * 100 + (line[10] - '0') * 10 + (line[11] - '0');
}

/* The fields that say how to read the body: its media type and coding. */
static void resp_field(struct lc_resp *r, struct resp_priv *rp, const struct lc_h1_field *f, int *ce_count)
{
	if (lc_h1_ieq(f->name, f->nlen, "content-type")) {
		const char *v = f->val;
		size_t vn = f->vlen;
		const char *semi = memchr(v, ';', vn);
		if (semi)
			vn = (size_t)(semi - v);
		lc_h1_trim(&v, &vn);
		/* streams read incrementally: SSE, and Ollama's NDJSON (one JSON object a line) */
		rp->sse.ndjson = lc_h1_ieq(v, vn, "application/x-ndjson");
		r->sse = lc_h1_ieq(v, vn, "text/event-stream") || rp->sse.ndjson;
	} else if (lc_h1_ieq(f->name, f->nlen, "content-encoding")) {
		if (lc_h1_ieq(f->val, f->vlen, "gzip") || lc_h1_ieq(f->val, f->vlen, "x-gzip"))
			rp->enc = ENC_GZIP;
		else if (lc_h1_ieq(f->val, f->vlen, "deflate"))
			rp->enc = ENC_DEFLATE;
		else if (!lc_h1_ieq(f->val, f->vlen, "identity") && f->vlen)
			rp->enc = ENC_OTHER;
		(*ce_count)++;
	}
}

/* Status line and framing fields of a complete head. */
static int resp_parse_head(struct lc_resp *r, struct resp_priv *rp)
{
	const char *cur = rp->head.data, *end = rp->head.data + rp->head.len, *line;
	size_t len;
	struct lc_h1_frame fr;
	struct lc_h1_field f;
	int status, ce_count = 0;

	if (!lc_h1_start_line(&cur, end, &line, &len) || (status = status_line(line, len)) < 0)
		return LC_PARSE_ERROR;
	if (status < 200 && status != 101) {
		/* interim (100 Continue, 103 Early Hints): the real head follows */
		lc_buf_reset(&rp->head);
		lc_h1_head_init(&rp->hs, STATUS_MAGIC);
		return LC_PARSE_MORE;
	}
	r->status = status;
	rp->enc = ENC_NONE;
	lc_h1_frame_init(&fr);
	while (lc_h1_next_field(&cur, end, &f)) {
		int rc = lc_h1_frame_field(&fr, &f);

		if (rc < 0)
			return LC_PARSE_ERROR;
		if (rc == 0)
			resp_field(r, rp, &f, &ce_count);
	}
	if (ce_count > 1 && rp->enc != ENC_NONE)
		rp->enc = ENC_OTHER;   /* stacked codings: framing only */
	lc_buf_free(&rp->head);

	/* RFC 9112 6.3, in order */
	if (rp->head_request || status == 101 || status == 204 || status == 304) {
		r->content_length = fr.content_length;
		resp_finish(r, rp);
		return LC_PARSE_DONE;
	}
	switch (lc_h1_frame_body(&fr)) {
	case LC_H1_BODY_CHUNKED:
		r->chunked = true;
		if (fr.te_other)
			rp->enc = ENC_OTHER;
		rp->phase = RP_BODY_CHUNKED;
		lc_h1_chunk_init(&rp->chunk);
		return LC_PARSE_MORE;
	case LC_H1_BODY_UNKNOWN:
		rp->enc = ENC_OTHER;
		rp->phase = RP_BODY_CLOSE;
		return LC_PARSE_MORE;
	case LC_H1_BODY_LENGTH:
		r->content_length = fr.content_length;
		if (fr.content_length == 0) {
			resp_finish(r, rp);
			return LC_PARSE_DONE;
		}
		rp->left = fr.content_length;
		rp->phase = RP_BODY_CL;
		return LC_PARSE_MORE;
	case LC_H1_BODY_NONE:
		break;
	}
	rp->phase = RP_BODY_CLOSE;
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
			rc = lc_h1_head_feed(&rp->hs, &rp->head, d + off, n - off, &k);
			off += k;
			if (rc == LC_H1_DONE)
				rc = resp_parse_head(r, rp);
			if (rc == LC_PARSE_ERROR)
				r->state = LC_PARSE_ERROR;
			break;
		case RP_BODY_CL:
			k = lc_min_sz(n - off, (size_t)rp->left);
			resp_body_sink(r, d + off, k);
			rp->left -= (int64_t)k;
			off += k;
			if (rp->left == 0)
				resp_finish(r, rp);
			break;
		case RP_BODY_CHUNKED:
			rc = lc_h1_chunk_feed(&rp->chunk, d + off, n - off, &k, resp_body_sink, r);
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
