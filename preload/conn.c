/* conn.c - one provider connection, independent of the transport (OpenSSL or a plain socket).
 *
 * The request is buffered until it is complete (the engine needs the body for max_tokens and
 * the model), then decided in one engine call:
 *   DENY  -> not one byte is written; the synthetic response is served from the read path.
 *   ALLOW -> the buffered bytes go out unchanged through the real write; the response is fed
 *            to lc_resp and the ticket is settled when it is complete (keep-alive aware), or at
 *            EOF / close / SSL_free with whatever usage came back.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "conn_impl.h"

struct lc_conn *lc_conn_new(int fd, bool tls)
{
	struct lc_conn *c = calloc(1, sizeof(*c));

	if (!c)
		return NULL;
	pthread_mutex_init(&c->mu, NULL);
	atomic_init(&c->refs, 1);
	c->forkgen = atomic_load(&lc_pl_forkgen);
	c->fd = fd;
	c->tls = tls;
	return c;
}

struct lc_conn *lc_conn_new_provider(int fd, bool tls, const struct lc_target *t)
{
	struct lc_conn *c = lc_conn_new(fd, tls);

	if (c) {
		c->cls = LC_CLS_PROVIDER;
		c->t = *t;
	}
	return c;
}

void lc_conn_view(struct lc_conn *c, struct lc_conn_view *v)
{
	pthread_mutex_lock(&c->mu);
	v->cls = c->cls;
	v->st = c->st;
	v->fd = c->fd;
	v->synth_err = c->synth_err;
	v->shut_done = c->shut_done;
	v->eof_served = c->eof_served;
	v->nreq = c->nreq;
	v->synth_left = c->st == LC_ST_DENIED && c->synth_off < c->synth.len ? c->synth.len - c->synth_off : 0;
	pthread_mutex_unlock(&c->mu);
}

int lc_conn_classify(struct lc_conn *c, int cls, const struct lc_target *t, bool dead)
{
	int r;

	pthread_mutex_lock(&c->mu);
	if (c->cls == LC_CLS_UNKNOWN) {
		c->cls = cls;
		if (t)
			c->t = *t;
		if (dead && cls == LC_CLS_PROVIDER)
			c->st = LC_ST_DEAD;
	}
	r = c->cls;
	pthread_mutex_unlock(&c->mu);
	return r;
}

void lc_conn_set_fd(struct lc_conn *c, int fd)
{
	pthread_mutex_lock(&c->mu);
	c->fd = fd;
	pthread_mutex_unlock(&c->mu);
}

void lc_conn_set_synth_err(struct lc_conn *c, int e)
{
	pthread_mutex_lock(&c->mu);
	c->synth_err = e;
	pthread_mutex_unlock(&c->mu);
}

bool lc_conn_once(struct lc_conn *c, int flag)
{
	bool *f, first;

	pthread_mutex_lock(&c->mu);
	f = flag == LC_ONCE_ALPN ? &c->alpn_done : &c->shut_done;
	first = !*f;
	*f = true;
	pthread_mutex_unlock(&c->mu);
	return first;
}

void lc_conn_ref(struct lc_conn *c)
{
	atomic_fetch_add_explicit(&c->refs, 1, memory_order_relaxed);
}

/* settle the open ticket (caller holds c->mu) */
static void settle_locked(struct lc_conn *c)
{
	struct lc_usage none;
	const struct lc_usage *u = &none;
	int status = 0;
	int rc;

	if (!c->ticket_open)
		return;
	c->ticket_open = false;
	if (c->forkgen != atomic_load(&lc_pl_forkgen))
		return;    /* the parent's ticket: the parent settles it */
	memset(&none, 0, sizeof(none));
	if (c->resp_live) {
		u = &c->resp.usage;
		status = c->resp.status;
	}
	LC_PL_ENTER();
	rc = lc_settle(c->ticket, u, status);
	if (rc != LC_OK)
		lc_log(LC_LOG_ERROR, "settle failed: %s", lc_strerror(rc));
	else
		lc_log(LC_LOG_DEBUG, "settled %s:%d status %d usage %s in=%lld cached=%lld out=%lld",
		       c->t.host, c->t.port, status, u->present ? "reported" : "absent",
		       (long long)u->input, (long long)u->cached_input, (long long)u->output);
	LC_PL_LEAVE();
}

static void resp_end_locked(struct lc_conn *c)
{
	settle_locked(c);
	if (c->resp_live) {
		lc_resp_free(&c->resp);
		c->resp_live = false;
	}
	c->resp_broken = false;
}

static void req_end_locked(struct lc_conn *c)
{
	if (c->req_live) {
		lc_reqparse_free(&c->req);
		c->req_live = false;
	}
}

void lc_conn_put(struct lc_conn *c)
{
	if (!c || atomic_fetch_sub_explicit(&c->refs, 1, memory_order_acq_rel) != 1)
		return;
	if (c->forkgen == atomic_load(&lc_pl_forkgen)) {
		pthread_mutex_lock(&c->mu);
		if (c->resp_live && !c->resp_broken)
			lc_resp_eof(&c->resp);
		resp_end_locked(c);
		pthread_mutex_unlock(&c->mu);
	}
	req_end_locked(c);
	if (c->resp_live)
		lc_resp_free(&c->resp);
	lc_buf_free(&c->synth);
	pthread_mutex_destroy(&c->mu);
	free(c);
}

static int dead_locked(struct lc_conn *c, const char *why)
{
	lc_log(LC_LOG_ERROR, "%s to provider %s:%d refused (%s)", c->tls ? "TLS write" : "write",
	       c->t.host, c->t.port, why);
	req_end_locked(c);
	resp_end_locked(c);
	c->st = LC_ST_DEAD;
	return LC_W_FAIL;
}

static int decide_locked(struct lc_conn *c)
{
	struct lc_decision d;
	int rc;

	memset(&d, 0, sizeof(d));
	LC_PL_ENTER();
	rc = lc_admit_http(c->t.host, c->t.port, &c->req, &d);
	LC_PL_LEAVE();
	if (rc != LC_OK)
		lc_log(LC_LOG_DEBUG, "admit: %s (verdict %d)", lc_strerror(rc), (int)d.verdict);
	if (d.verdict == LC_DENY) {
		lc_buf_init(&c->synth, 1 << 20);
		if (lc_synth_response(d.format, d.status ? d.status : 429, d.message, d.limit,
				      d.retry_after, d.should_retry, &c->synth) != 0 || !c->synth.len) {
			lc_buf_reset(&c->synth);
			lc_buf_addstr(&c->synth, "HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\n"
						 "connection: close\r\n\r\n");
		}
		c->synth_off = 0;
		lc_log(LC_LOG_INFO, "blocked %s %s to %s:%d: %d %s", c->req.method, c->req.path,
		       c->t.host, c->t.port, d.status, d.message);
		req_end_locked(c);
		c->st = LC_ST_DENIED;
		return LC_W_DENY;
	}
	if (d.verdict == LC_ALLOW && d.ticket != 0) {    /* 0: an unpriced call (GET /v1/models) */
		c->ticket_open = true;
		c->ticket = d.ticket;
	}
	lc_resp_init(&c->resp, strcmp(c->req.method, "HEAD") == 0);
	c->resp_live = true;
	c->resp_broken = false;
	c->flush_off = 0;
	c->st = LC_ST_FLUSH;
	return LC_W_FLUSH;
}

int lc_conn_write(struct lc_conn *c, const void *p, size_t n)
{
	size_t used = 0;
	int r, pr;

	pthread_mutex_lock(&c->mu);
	switch (c->st) {
	case LC_ST_DENIED:
	case LC_ST_DEAD:
		r = LC_W_FAIL;
		goto out;
	case LC_ST_FLUSH:
		r = LC_W_FLUSH;    /* the app retries the call that completed the request */
		goto out;
	case LC_ST_RESP:
		/* a new request before the previous response ended: settle with what we have */
		resp_end_locked(c);
		c->st = LC_ST_IDLE;
		/* fallthrough */
	case LC_ST_IDLE:
		if (n == 0) {
			r = LC_W_CLAIM;
			goto out;
		}
		if (lc_cls_is_h2_preface(p, n)) {
			r = dead_locked(c, "HTTP/2 preface");
			goto out;
		}
		lc_reqparse_init(&c->req);
		c->req_live = true;
		c->nreq++;
		c->st = LC_ST_REQ;
		/* fallthrough */
	case LC_ST_REQ:
	default:
		break;
	}
	pr = lc_reqparse_feed(&c->req, p, n, &used);
	if (pr == LC_PARSE_MORE) {
		r = LC_W_CLAIM;
	} else if (pr == LC_PARSE_H2) {
		r = dead_locked(c, "HTTP/2 preface");
	} else if (pr != LC_PARSE_DONE) {
		r = dead_locked(c, "not an HTTP/1.1 request llmcap can read");
	} else if (used < n) {
		r = dead_locked(c, "pipelined requests");
	} else {
		r = decide_locked(c);
	}
out:
	pthread_mutex_unlock(&c->mu);
	return r;
}

const void *lc_conn_flush_buf(struct lc_conn *c, size_t *len)
{
	const void *p = NULL;

	pthread_mutex_lock(&c->mu);
	*len = 0;
	if (c->st == LC_ST_FLUSH && c->req_live && c->flush_off < c->req.raw.len) {
		p = c->req.raw.data + c->flush_off;
		*len = c->req.raw.len - c->flush_off;
	}
	pthread_mutex_unlock(&c->mu);
	return p;
}

bool lc_conn_flushed(struct lc_conn *c, size_t n)
{
	bool done = false;

	pthread_mutex_lock(&c->mu);
	if (c->st == LC_ST_FLUSH) {
		c->flush_off += n;
		if (!c->req_live || c->flush_off >= c->req.raw.len) {
			req_end_locked(c);
			/* an early, complete response (e.g. 413 before the body) already ended it */
			c->st = c->resp_live ? LC_ST_RESP : LC_ST_IDLE;
			done = true;
		}
	} else {
		done = true;
	}
	pthread_mutex_unlock(&c->mu);
	return done;
}

void lc_conn_flush_failed(struct lc_conn *c)
{
	pthread_mutex_lock(&c->mu);
	if (c->st == LC_ST_FLUSH) {
		/* the provider never got the whole request: it cannot bill it; charge the request only */
		if (c->resp_live && c->resp.status == 0)
			c->resp.status = 599;
		req_end_locked(c);
		resp_end_locked(c);
		c->st = LC_ST_DEAD;
	}
	pthread_mutex_unlock(&c->mu);
}

int lc_conn_read_mode(struct lc_conn *c)
{
	int m = LC_R_PASS;

	pthread_mutex_lock(&c->mu);
	if (c->st == LC_ST_DENIED)
		m = LC_R_SYNTH;
	else if ((c->st == LC_ST_RESP || c->st == LC_ST_FLUSH) && c->resp_live && !c->resp_broken)
		m = LC_R_FEED;
	pthread_mutex_unlock(&c->mu);
	return m;
}

size_t lc_conn_synth_read(struct lc_conn *c, void *buf, size_t n, bool peek)
{
	size_t k = 0;

	pthread_mutex_lock(&c->mu);
	if (c->synth_off < c->synth.len) {
		k = c->synth.len - c->synth_off;
		if (k > n)
			k = n;
		memcpy(buf, c->synth.data + c->synth_off, k);
		if (!peek)
			c->synth_off += k;
	}
	if (k == 0 && n > 0)
		c->eof_served = true;
	pthread_mutex_unlock(&c->mu);
	return k;
}

void lc_conn_feed(struct lc_conn *c, const void *p, size_t n)
{
	size_t used = 0;
	int pr;

	pthread_mutex_lock(&c->mu);
	if (!c->resp_live || c->resp_broken || n == 0)
		goto out;
	pr = lc_resp_feed(&c->resp, p, n, &used);
	if (pr == LC_PARSE_DONE) {
		resp_end_locked(c);
		if (c->st == LC_ST_RESP)
			c->st = LC_ST_IDLE;
	} else if (pr != LC_PARSE_MORE) {
		/* keep the ticket; it is settled at close with what we have */
		lc_log(LC_LOG_DEBUG, "response from %s:%d not parseable, usage estimated",
		       c->t.host, c->t.port);
		c->resp_broken = true;
	}
out:
	pthread_mutex_unlock(&c->mu);
}

void lc_conn_eof(struct lc_conn *c)
{
	pthread_mutex_lock(&c->mu);
	if (c->resp_live && !c->resp_broken)
		lc_resp_eof(&c->resp);
	resp_end_locked(c);
	if (c->st == LC_ST_RESP)
		c->st = LC_ST_IDLE;
	pthread_mutex_unlock(&c->mu);
}

void lc_conn_finish(struct lc_conn *c)
{
	pthread_mutex_lock(&c->mu);
	if (c->forkgen == atomic_load(&lc_pl_forkgen)) {
		if (c->resp_live && !c->resp_broken)
			lc_resp_eof(&c->resp);
		resp_end_locked(c);
	}
	pthread_mutex_unlock(&c->mu);
}
