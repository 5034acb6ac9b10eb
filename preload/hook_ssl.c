/* hook_ssl.c - the OpenSSL layer: SSL_write, SSL_read and their _ex forms, and what their
 * semantics need (SSL_get_error, SSL_get_shutdown, SSL_pending, SSL_free, SNI, ALPN).
 * Every libssl function is found at run time (lc_pl_sym: RTLD_NEXT, then the loaded libssl
 * even when the program opened it RTLD_LOCAL, as Python's _ssl does); the shim is never
 * linked against libssl. Non-provider connections cost one table lookup per call.
 */
#include <errno.h>
#include <limits.h>
#include <string.h>
#include <sys/socket.h>

#include <openssl/ssl.h>

#include "preload.h"

#define SSLLIB "libssl.so"

#define REAL(fn) LC_REAL(r_##fn, #fn, SSLLIB, fn)
#define HELPER(fn) LC_REAL(r_##fn, #fn, SSLLIB, NULL)

static int (*r_SSL_write)(SSL *, const void *, int);
static int (*r_SSL_write_ex)(SSL *, const void *, size_t, size_t *);
static int (*r_SSL_read)(SSL *, void *, int);
static int (*r_SSL_read_ex)(SSL *, void *, size_t, size_t *);
static int (*r_SSL_peek)(SSL *, void *, int);
static int (*r_SSL_peek_ex)(SSL *, void *, size_t, size_t *);
static int (*r_SSL_get_error)(const SSL *, int);
static int (*r_SSL_get_shutdown)(const SSL *);
static int (*r_SSL_pending)(const SSL *);
static int (*r_SSL_has_pending)(const SSL *);
static void (*r_SSL_free)(SSL *);
static int (*r_SSL_clear)(SSL *);
static int (*r_SSL_connect)(SSL *);
static int (*r_SSL_do_handshake)(SSL *);
static int (*r_SSL_set_fd)(SSL *, int);
/* helpers (not hooked) */
static const char *(*r_SSL_get_servername)(const SSL *, const int);
static int (*r_SSL_get_fd)(const SSL *);
static size_t (*r_SSL_get_client_random)(const SSL *, unsigned char *, size_t);
static int (*r_SSL_set_alpn_protos)(SSL *, const unsigned char *, unsigned int);
static void (*r_SSL_get0_alpn_selected)(const SSL *, const unsigned char **, unsigned int *);
static int (*r_SSL_is_server)(const SSL *);
static int (*r_SSL_is_init_finished)(const SSL *);

static const unsigned char alpn_h1[] = "\x08http/1.1";

struct lc_conn *lc_tls_rec(const void *sess, bool create)
{
	struct lc_conn *c = lc_tab_get(LC_TAB_SSL, (uintptr_t)sess), *n;

	if (c || !create)
		return c;
	n = lc_conn_new(-1, true);
	if (!n)
		return NULL;
	c = lc_tab_put(LC_TAB_SSL, (uintptr_t)sess, n);
	lc_conn_put(n);
	return c;
}

/* provider or not, from r (the session's SNI/peer lookup), then the request's Host header, then
 * (store unusable, r < 0) whether it is a priced LLM API call; t filled when a provider */
static int request_class(int r, const void *buf, size_t n, struct lc_target *t)
{
	char hh[256];
	int hp = 0;

	if (r == 0 && lc_cls_is_http_request(buf, n) && lc_cls_host_header(buf, n, hh, sizeof(hh), &hp) == 0)
		r = lc_cls_lookup(hh, hp ? hp : 443, t);
	if (r < 0)    /* store unusable, policy known: LLM API calls are held (503) */
		r = lc_cls_priced_request(buf, n);
	return r;
}

int lc_tls_classify(const struct lc_tls_layer *l, void *sess, struct lc_conn *c, int fd, const void *buf, size_t n)
{
	struct lc_target t;
	bool dead = false;

	if (lc_pl_relayed(fd))    /* the supervisor's relay holds it */
		return lc_conn_classify(c, LC_CLS_PASS, NULL, false);
	if (fd >= 0)
		lc_conn_set_fd(c, fd);
	memset(&t, 0, sizeof(t));
	if (!request_class(l->lookup(sess, fd, &t), buf, n, &t))
		return lc_conn_classify(c, LC_CLS_PASS, NULL, false);
	if (l->h2(sess)) {
		lc_log(LC_LOG_ERROR, "HTTP/2 negotiated with provider %s:%d: refused", t.host, t.port);
		dead = true;
	}
	lc_log(LC_LOG_DEBUG, "%s connection to provider %s:%d (fd %d)", l->name, t.host, t.port, fd);
	return lc_conn_classify(c, LC_CLS_PROVIDER, &t, dead);
}

void lc_tls_deny_ready(struct lc_conn *c, const struct lc_conn_view *v, int fd)
{
	if (fd < 0) {
		lc_log(LC_LOG_INFO, "socket of a blocked TLS connection unknown; an event loop may wait for it");
		return;
	}
	if (v->fd < 0)
		lc_conn_set_fd(c, fd);
	if (lc_conn_once(c, LC_ONCE_SHUT))
		shutdown(fd, SHUT_RD);
}

#define ssl_rec(ssl, create) lc_tls_rec((ssl), (create))

/* Around every hooked call that may make a ClientHello and write it (lc_pl_tls_in): enter before
 * the real call, leave after it; a call made while the session's handshake was under way records
 * its client_random, which a memory-BIO program's later write of the ClientHello shows. */
static bool tls_enter(const SSL *ssl)
{
	lc_pl_tls_in++;
	return ssl && !lc_pl_depth && !(HELPER(SSL_is_init_finished) && r_SSL_is_init_finished(ssl));
}

static void tls_leave(const SSL *ssl, bool hs)
{
	unsigned char cr[32];

	if (hs && HELPER(SSL_get_client_random) && r_SSL_get_client_random(ssl, cr, 32) == 32)
		lc_pl_tls_made(cr);    /* keeps errno */
	lc_pl_tls_in--;
}

/* the socket of an SSL: known, SSL_get_fd, or the ClientHello's client_random */
static int ssl_fd(SSL *ssl, int fd)
{
	unsigned char cr[32];

	if (fd < 0 && HELPER(SSL_get_fd))
		fd = r_SSL_get_fd(ssl);
	if (fd < 0 && HELPER(SSL_get_client_random) && r_SSL_get_client_random(ssl, cr, 32) == 32)
		fd = lc_cr_lookup(cr);
	return fd;
}

/* SNI, then the peer address: 1 provider (t filled) */
static int ssl_lookup(SSL *ssl, int fd, int port_hint, struct lc_target *t)
{
	const char *sni = HELPER(SSL_get_servername) ? r_SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name)
						      : NULL;
	char ip[64];
	int port = 0, r = 0;
	bool peer = fd >= 0 && lc_cls_peer(fd, ip, sizeof(ip), &port) == 0;

	if (!peer && port_hint > 0)
		port = port_hint;
	if (sni && sni[0])
		r = lc_cls_lookup(sni, port, t);
	if (r == 0 && peer)
		r = lc_cls_lookup(ip, port, t);
	return r;
}

/* what lc_tls_classify asks of an SSL */
static int layer_lookup(void *ssl, int fd, struct lc_target *t)
{
	return ssl_lookup(ssl, fd, 0, t);
}

static bool layer_h2(void *ssl)
{
	const unsigned char *sel = NULL;
	unsigned int sl = 0;

	if (!HELPER(SSL_get0_alpn_selected))
		return false;
	r_SSL_get0_alpn_selected(ssl, &sel, &sl);
	return sel && sl == 2 && memcmp(sel, "h2", 2) == 0;
}

static const struct lc_tls_layer openssl_layer = { "TLS", layer_lookup, layer_h2 };

/* first application write on an SSL: provider or not, decided once (concurrent first writes
 * may both look; the first to record its answer wins, and the answers are the same) */
static int ssl_classify(SSL *ssl, struct lc_conn *c, int fd, const void *buf, size_t n)
{
	if (HELPER(SSL_is_server) && r_SSL_is_server(ssl))    /* a TLS server in this process */
		return lc_conn_classify(c, LC_CLS_PASS, NULL, false);
	return lc_tls_classify(&openssl_layer, ssl, c, ssl_fd(ssl, fd), buf, n);
}

/* Before the first handshake step: a provider connection offers http/1.1 only (h2 would bypass
 * the HTTP/1.1 reader; issue "h2 is never a hole"). The per-SSL list overrides the SSL_CTX one,
 * so other hosts keep the ALPN the program chose. Also run from the first SSL_write/SSL_read, for
 * programs that let those start the handshake implicitly. */
static void before_handshake_c(SSL *ssl, struct lc_conn *c)
{
	struct lc_conn_view v;
	struct lc_target t;
	int hint = 0, fd;
	char ip[64];

	if (!lc_conn_once(c, LC_ONCE_ALPN))
		return;
	if (!(HELPER(SSL_is_server) && r_SSL_is_server(ssl))) {
		lc_conn_view(c, &v);
		fd = v.fd >= 0 ? v.fd : (HELPER(SSL_get_fd) ? r_SSL_get_fd(ssl) : -1);
		if (fd < 0 && lc_pl_last_connect_fd >= 0)
			lc_cls_peer(lc_pl_last_connect_fd, ip, sizeof(ip), &hint);
		if (ssl_lookup(ssl, fd, hint, &t) > 0 && HELPER(SSL_set_alpn_protos)) {
			r_SSL_set_alpn_protos(ssl, alpn_h1, sizeof(alpn_h1) - 1);
			lc_log(LC_LOG_DEBUG, "ALPN held to http/1.1 for %s:%d", t.host, t.port);
		}
	} else {
		lc_conn_classify(c, LC_CLS_PASS, NULL, false);
	}
}

static void before_handshake(SSL *ssl)
{
	struct lc_conn *c;
	int saved = errno;

	if (lc_pl_depth || !ssl)
		return;
	lc_pl_ensure();
	c = ssl_rec(ssl, true);
	if (!c)
		return;
	before_handshake_c(ssl, c);
	lc_conn_put(c);
	errno = saved;
}

/* provider conn for a write (new ref), or NULL: pass through */
static struct lc_conn *ssl_provider(SSL *ssl, const void *buf, size_t n)
{
	struct lc_conn *c = ssl_rec(ssl, true);
	struct lc_conn_view v;

	if (!c)
		return NULL;
	before_handshake_c(ssl, c);
	lc_conn_view(c, &v);
	if (v.cls == LC_CLS_UNKNOWN)
		v.cls = ssl_classify(ssl, c, v.fd, buf, n);
	if (v.cls != LC_CLS_PROVIDER) {
		lc_conn_put(c);
		return NULL;
	}
	return c;
}

static void deny_ready(SSL *ssl, struct lc_conn *c)
{
	struct lc_conn_view v;

	lc_conn_view(c, &v);
	if (!v.shut_done)
		lc_tls_deny_ready(c, &v, ssl_fd(ssl, v.fd));
}

/* the real write, for lc_conn_flush_all */
static ssize_t put_ssl(void *ssl, const void *p, size_t len, bool *retry)
{
	int k, e;

	if (!REAL(SSL_write)) {
		errno = EIO;
		return -1;
	}
	k = r_SSL_write(ssl, p, len > INT_MAX ? INT_MAX : (int)len);
	if (k > 0)
		return k;
	e = REAL(SSL_get_error) ? r_SSL_get_error(ssl, k) : SSL_ERROR_SSL;
	*retry = e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_ASYNC ||
		 e == SSL_ERROR_WANT_X509_LOOKUP;
	return k;
}

/* 1 handled (*ret, *written set), 0 pass through */
static int write_common(SSL *ssl, const void *buf, size_t num, bool ex, int *ret, size_t *written)
{
	struct lc_conn *c;
	ssize_t fail;
	int a, saved = errno;

	if (lc_pl_depth || !ssl || num == 0)
		return 0;
	lc_pl_ensure();
	c = ssl_provider(ssl, buf, num);
	if (!c) {
		errno = saved;
		return 0;
	}
	/* A write before the handshake finished (node's TLSWrap writes the request as soon as it
	 * has it; SSL_write would drive the handshake first): finish it before claiming the bytes, so
	 * a refused request is answered after the handshake, never instead of it. An unfinished step
	 * (WANT_READ on a non-blocking socket or a memory BIO) goes back to the program, which retries
	 * the same write, as with OpenSSL's own SSL_write. */
	if (HELPER(SSL_is_init_finished) && !r_SSL_is_init_finished(ssl) && REAL(SSL_do_handshake)) {
		int k = r_SSL_do_handshake(ssl);

		if (k != 1) {
			lc_conn_set_synth_err(c, 0);
			lc_conn_put(c);
			*written = 0;
			*ret = ex ? 0 : (k < 0 ? k : -1);
			return 1;
		}
		errno = saved;
	}
	a = lc_conn_write(c, buf, num);
	*written = 0;
	switch (a) {
	case LC_W_CLAIM:
		lc_conn_set_synth_err(c, 0);
		*written = num;
		*ret = ex ? 1 : (int)num;
		errno = saved;
		break;
	case LC_W_DENY:
		deny_ready(ssl, c);
		lc_conn_set_synth_err(c, 0);
		*written = num;
		*ret = ex ? 1 : (int)num;
		errno = saved;
		break;
	case LC_W_FAIL:
		lc_conn_set_synth_err(c, SSL_ERROR_SYSCALL);
		*ret = ex ? 0 : -1;
		errno = EPIPE;
		break;
	case LC_W_FLUSH:
	default:
		lc_conn_set_synth_err(c, 0);
		if (lc_conn_flush_all(c, put_ssl, ssl, &fail)) {
			*written = num;
			*ret = ex ? 1 : (int)num;
			errno = saved;
		} else {
			/* the app sees the real result and retries the same call (OpenSSL's rule) */
			*ret = ex ? 0 : (int)fail;
		}
		break;
	}
	lc_conn_put(c);
	return 1;
}

LC_EXPORT int SSL_write(SSL *ssl, const void *buf, int num)
{
	bool hs = tls_enter(ssl);
	int ret;
	size_t w;

	if (!(num > 0 && write_common(ssl, buf, (size_t)num, false, &ret, &w)))
		ret = REAL(SSL_write) ? r_SSL_write(ssl, buf, num) : -1;
	tls_leave(ssl, hs);
	return ret;
}

LC_EXPORT int SSL_write_ex(SSL *ssl, const void *buf, size_t num, size_t *written)
{
	bool hs = tls_enter(ssl);
	int ret;
	size_t w = 0;

	if (write_common(ssl, buf, num, true, &ret, &w)) {
		if (written)
			*written = w;
	} else {
		ret = REAL(SSL_write_ex) ? r_SSL_write_ex(ssl, buf, num, written) : 0;
	}
	tls_leave(ssl, hs);
	return ret;
}

enum { RD_READ, RD_READ_EX, RD_PEEK, RD_PEEK_EX };

static int real_read(int kind, SSL *ssl, void *buf, size_t num, size_t *got)
{
	int k;

	*got = 0;
	switch (kind) {
	case RD_READ:
		if (!REAL(SSL_read))
			return -1;
		k = r_SSL_read(ssl, buf, num > INT_MAX ? INT_MAX : (int)num);
		if (k > 0)
			*got = (size_t)k;
		return k;
	case RD_PEEK:
		if (!REAL(SSL_peek))
			return -1;
		k = r_SSL_peek(ssl, buf, num > INT_MAX ? INT_MAX : (int)num);
		if (k > 0)
			*got = (size_t)k;
		return k;
	case RD_READ_EX:
		if (!REAL(SSL_read_ex))
			return 0;
		return r_SSL_read_ex(ssl, buf, num, got);
	default:
		if (!REAL(SSL_peek_ex))
			return 0;
		return r_SSL_peek_ex(ssl, buf, num, got);
	}
}

static int read_common(int kind, SSL *ssl, void *buf, size_t num, size_t *got)
{
	bool ex = kind == RD_READ_EX || kind == RD_PEEK_EX;
	bool peek = kind == RD_PEEK || kind == RD_PEEK_EX;
	struct lc_conn_view v;
	struct lc_conn *c;
	int mode, k, saved = errno;

	*got = 0;
	if (lc_pl_depth || !ssl)
		return real_read(kind, ssl, buf, num, got);
	c = lc_conn_provider(ssl_rec(ssl, false), &v);
	if (!c) {
		errno = saved;
		return real_read(kind, ssl, buf, num, got);
	}
	mode = lc_conn_read_mode(c);
	if (mode == LC_R_SYNTH) {
		size_t n = lc_conn_synth_read(c, buf, num, peek);

		errno = saved;
		lc_conn_set_synth_err(c, n > 0 ? 0 : SSL_ERROR_ZERO_RETURN);
		*got = n;
		k = n > 0 ? (ex ? 1 : (int)n) : 0;
		lc_conn_put(c);
		return k;
	}
	if (v.synth_err)
		lc_conn_set_synth_err(c, 0);
	errno = saved;
	k = real_read(kind, ssl, buf, num, got);
	if (mode == LC_R_FEED && !peek) {
		saved = errno;
		if (*got > 0) {
			lc_conn_feed(c, buf, *got);
		} else if (REAL(SSL_get_error)) {
			int e = r_SSL_get_error(ssl, k);

			if (e == SSL_ERROR_ZERO_RETURN || e == SSL_ERROR_SYSCALL || e == SSL_ERROR_SSL)
				lc_conn_eof(c);
		}
		errno = saved;
	}
	lc_conn_put(c);
	return k;
}

/* the int-sized calls (a negative num reads nothing) and the _ex ones */
static int read_int(int kind, SSL *ssl, void *buf, int num)
{
	bool hs = tls_enter(ssl);
	size_t got;
	int r = read_common(kind, ssl, buf, num < 0 ? 0 : (size_t)num, &got);

	tls_leave(ssl, hs);
	return r;
}

static int read_ex(int kind, SSL *ssl, void *buf, size_t num, size_t *readbytes)
{
	bool hs = tls_enter(ssl);
	size_t got = 0;
	int r = read_common(kind, ssl, buf, num, &got);

	tls_leave(ssl, hs);

	if (readbytes)
		*readbytes = got;
	return r;
}

LC_EXPORT int SSL_read(SSL *ssl, void *buf, int num)
{
	return read_int(RD_READ, ssl, buf, num);
}

LC_EXPORT int SSL_read_ex(SSL *ssl, void *buf, size_t num, size_t *readbytes)
{
	return read_ex(RD_READ_EX, ssl, buf, num, readbytes);
}

LC_EXPORT int SSL_peek(SSL *ssl, void *buf, int num)
{
	return read_int(RD_PEEK, ssl, buf, num);
}

LC_EXPORT int SSL_peek_ex(SSL *ssl, void *buf, size_t num, size_t *readbytes)
{
	return read_ex(RD_PEEK_EX, ssl, buf, num, readbytes);
}

/* the view of a tracked SSL's connection: false when it is not tracked (or the shim itself runs) */
static bool ssl_view(const SSL *ssl, struct lc_conn_view *v)
{
	return lc_conn_view_put(lc_pl_depth || !ssl ? NULL : ssl_rec(ssl, false), v);
}

LC_EXPORT int SSL_get_error(const SSL *ssl, int ret)
{
	struct lc_conn_view v;

	if (ret <= 0 && ssl_view(ssl, &v) && v.synth_err)
		return v.synth_err;
	if (!REAL(SSL_get_error))
		return SSL_ERROR_SSL;
	return r_SSL_get_error(ssl, ret);
}

LC_EXPORT int SSL_get_shutdown(const SSL *ssl)
{
	struct lc_conn_view v;
	int extra = 0;

	if (!REAL(SSL_get_shutdown))
		return 0;
	if (ssl_view(ssl, &v) && v.st == LC_ST_DENIED && v.eof_served)
		extra = SSL_RECEIVED_SHUTDOWN;
	return r_SSL_get_shutdown(ssl) | extra;
}

LC_EXPORT int SSL_pending(const SSL *ssl)
{
	struct lc_conn_view v;

	if (ssl_view(ssl, &v) && v.st == LC_ST_DENIED)
		return v.synth_left > INT_MAX ? INT_MAX : (int)v.synth_left;
	if (!REAL(SSL_pending))
		return 0;
	return r_SSL_pending(ssl);
}

LC_EXPORT int SSL_has_pending(const SSL *ssl)
{
	struct lc_conn_view v;

	if (ssl_view(ssl, &v) && v.st == LC_ST_DENIED)
		return v.synth_left > 0;
	if (!REAL(SSL_has_pending))
		return 0;
	return r_SSL_has_pending(ssl);
}

static void forget(SSL *ssl)
{
	struct lc_conn *c;
	int saved = errno;

	if (lc_pl_depth || !ssl)
		return;
	c = lc_tab_take(LC_TAB_SSL, (uintptr_t)ssl);
	if (c) {
		lc_conn_finish(c);
		lc_conn_put(c);
	}
	errno = saved;
}

LC_EXPORT void SSL_free(SSL *ssl)
{
	forget(ssl);
	if (REAL(SSL_free))
		r_SSL_free(ssl);
}

LC_EXPORT int SSL_clear(SSL *ssl)
{
	forget(ssl);
	if (!REAL(SSL_clear))
		return 0;
	return r_SSL_clear(ssl);
}

LC_EXPORT int SSL_set_fd(SSL *ssl, int fd)
{
	int r;

	if (!REAL(SSL_set_fd))
		return 0;
	r = r_SSL_set_fd(ssl, fd);
	if (r == 1 && !lc_pl_depth && ssl) {
		int saved = errno;
		struct lc_conn *c;

		lc_pl_ensure();
		c = ssl_rec(ssl, true);
		if (c) {
			lc_conn_set_fd(c, fd);
			lc_conn_put(c);
		}
		errno = saved;
	}
	return r;
}

/* SSL_connect and SSL_do_handshake: the real call (NULL: not found) inside the hooked-TLS marks */
static int handshake(SSL *ssl, int (*real)(SSL *))
{
	bool hs;
	int r;

	before_handshake(ssl);
	hs = tls_enter(ssl);
	r = real ? real(ssl) : -1;
	tls_leave(ssl, hs);
	return r;
}

LC_EXPORT int SSL_connect(SSL *ssl)
{
	return handshake(ssl, REAL(SSL_connect) ? r_SSL_connect : NULL);
}

LC_EXPORT int SSL_do_handshake(SSL *ssl)
{
	return handshake(ssl, REAL(SSL_do_handshake) ? r_SSL_do_handshake : NULL);
}
