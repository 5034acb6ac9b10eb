/* hook_gnutls.c - the GnuTLS layer (wget, libcurl-gnutls and what uses it: pycurl, PHP on some
 * builds, ...): gnutls_record_send/recv and what their semantics need (gnutls_record_check_pending,
 * gnutls_bye, gnutls_deinit, gnutls_handshake for ALPN). Same connection logic as the OpenSSL
 * layer (conn.c); sessions share its SSL table (keys are session pointers).
 *
 * Every libgnutls function is found at run time (lc_pl_sym: RTLD_NEXT, then the loaded libgnutls
 * even when it came in RTLD_LOCAL); the shim is never linked against GnuTLS.
 *
 * GnuTLS's rules the hooks keep:
 *   - a send that returned GNUTLS_E_AGAIN/E_INTERRUPTED is retried by the program with the same
 *     arguments or with (NULL, 0): while the held request is being flushed either form continues
 *     the flush, and the flush itself always repeats its own last arguments;
 *   - recv returns 0 at the end of the stream (after the synthetic answer of a blocked call);
 *   - gnutls_record_check_pending counts the synthetic bytes not read yet, so a program that
 *     checks it before polling (wget, curl) reads them without waiting.
 */
#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>

#include <gnutls/gnutls.h>

#include "preload.h"

#define GTLSLIB "libgnutls.so"

#define REAL(fn) LC_REAL(r_##fn, #fn, GTLSLIB, fn)
#define HELPER(fn) LC_REAL(r_##fn, #fn, GTLSLIB, NULL)

static ssize_t (*r_gnutls_record_send)(gnutls_session_t, const void *, size_t);
static ssize_t (*r_gnutls_record_recv)(gnutls_session_t, void *, size_t);
static size_t (*r_gnutls_record_check_pending)(gnutls_session_t);
static int (*r_gnutls_handshake)(gnutls_session_t);
static int (*r_gnutls_bye)(gnutls_session_t, gnutls_close_request_t);
static void (*r_gnutls_deinit)(gnutls_session_t);
/* helpers (not hooked) */
static int (*r_gnutls_server_name_get)(gnutls_session_t, void *, size_t *, unsigned int *, unsigned int);
static void (*r_gnutls_session_get_random)(gnutls_session_t, gnutls_datum_t *, gnutls_datum_t *);
static gnutls_transport_ptr_t (*r_gnutls_transport_get_ptr)(gnutls_session_t);
static int (*r_gnutls_alpn_set_protocols)(gnutls_session_t, const gnutls_datum_t *, unsigned, unsigned int);
static int (*r_gnutls_alpn_get_selected_protocol)(gnutls_session_t, gnutls_datum_t *);

#define sess_rec(s, create) lc_tls_rec((s), (create))

/* the view of a session's record: false when it has none */
static bool sess_view(gnutls_session_t s, struct lc_conn_view *v)
{
	return lc_conn_view_put(lc_pl_depth || !s ? NULL : sess_rec(s, false), v);
}

/* the session's socket: the ClientHello's client_random (seen by the libc hooks), else the
 * transport pointer when it holds a socket number (wget, curl: gnutls_transport_set_ptr(fd)) */
static int sess_fd(gnutls_session_t s, int known)
{
	gnutls_datum_t cr = { 0 }, sr = { 0 };
	int fd = known, type = 0;
	socklen_t tl = sizeof(type);

	if (fd < 0 && HELPER(gnutls_session_get_random)) {
		r_gnutls_session_get_random(s, &cr, &sr);
		if (cr.data && cr.size == 32)
			fd = lc_cr_lookup(cr.data);
	}
	if (fd < 0 && HELPER(gnutls_transport_get_ptr)) {
		intptr_t p = (intptr_t)r_gnutls_transport_get_ptr(s);

		if (p > 0 && p < LC_FD_MAX && getsockopt((int)p, SOL_SOCKET, SO_TYPE, &type, &tl) == 0 &&
		    type == SOCK_STREAM)
			fd = (int)p;
	}
	return fd;
}

/* SNI, then the peer address: 1 provider (t filled), -1 store unusable */
static int sess_lookup(gnutls_session_t s, int fd, struct lc_target *t)
{
	char sni[256], ip[64];
	size_t sl = sizeof(sni) - 1;
	unsigned int type = 0;
	int port = 0, r = 0;
	bool peer = fd >= 0 && lc_cls_peer(fd, ip, sizeof(ip), &port) == 0;

	if (!peer && lc_pl_last_connect_fd >= 0)
		lc_cls_peer(lc_pl_last_connect_fd, ip, sizeof(ip), &port);
	if (HELPER(gnutls_server_name_get) && r_gnutls_server_name_get(s, sni, &sl, &type, 0) == 0 &&
	    type == GNUTLS_NAME_DNS && sl > 0 && sl < sizeof(sni)) {
		sni[sl] = 0;
		r = lc_cls_lookup(sni, port, t);
	}
	if (r == 0 && peer)
		r = lc_cls_lookup(ip, port, t);
	return r;
}

/* Before the first handshake: a provider session offers http/1.1 only (h2 would bypass the
 * HTTP/1.1 reader). Set on the session, so other hosts keep the program's ALPN. */
static int handshake(gnutls_session_t s)
{
	struct lc_conn *c;
	struct lc_target t;
	int saved = errno;

	if (!lc_pl_depth && s) {
		lc_pl_ensure();
		c = sess_rec(s, true);
		if (c && lc_conn_once(c, LC_ONCE_ALPN) && sess_lookup(s, sess_fd(s, -1), &t) > 0 &&
		    HELPER(gnutls_alpn_set_protocols)) {
			static const gnutls_datum_t h1 = { (unsigned char *)"http/1.1", 8 };

			r_gnutls_alpn_set_protocols(s, &h1, 1, 0);
			lc_log(LC_LOG_DEBUG, "ALPN held to http/1.1 for %s:%d (GnuTLS)", t.host, t.port);
		}
		if (c)
			lc_conn_put(c);
		errno = saved;
	}
	if (!REAL(gnutls_handshake))
		return GNUTLS_E_INTERNAL_ERROR;
	return r_gnutls_handshake(s);
}

/* The ClientHello is made and written inside the handshake (lc_pl_tls_in); its client_random is
 * recorded when the call returns, for a program that writes it later from its own push buffer. */
LC_EXPORT int gnutls_handshake(gnutls_session_t s)
{
	gnutls_datum_t cr = { 0 }, sr = { 0 };
	int r;

	lc_pl_tls_in++;
	r = handshake(s);
	if (s && !lc_pl_depth && HELPER(gnutls_session_get_random)) {
		r_gnutls_session_get_random(s, &cr, &sr);
		if (cr.data && cr.size == 32)
			lc_pl_tls_made(cr.data);
	}
	lc_pl_tls_in--;
	return r;
}

/* what lc_tls_classify asks of a session */
static int layer_lookup(void *s, int fd, struct lc_target *t)
{
	return sess_lookup(s, fd, t);
}

static bool layer_h2(void *s)
{
	gnutls_datum_t sel = { 0 };

	return HELPER(gnutls_alpn_get_selected_protocol) && r_gnutls_alpn_get_selected_protocol(s, &sel) == 0 &&
	       sel.size == 2 && memcmp(sel.data, "h2", 2) == 0;
}

static const struct lc_tls_layer gnutls_layer = { "GnuTLS", layer_lookup, layer_h2 };

/* first application write on a session: provider or not, decided once */
static int sess_classify(gnutls_session_t s, struct lc_conn *c, int fd, const void *buf, size_t n)
{
	return lc_tls_classify(&gnutls_layer, s, c, sess_fd(s, fd), buf, n);
}

/* a blocked call: wake every poller of the socket (nothing goes on the wire) */
static void deny_ready(gnutls_session_t s, struct lc_conn *c)
{
	struct lc_conn_view v;

	lc_conn_view(c, &v);
	if (!v.shut_done)
		lc_tls_deny_ready(c, &v, sess_fd(s, v.fd));
}

/* the real send, for lc_conn_flush_all */
static ssize_t put_record(void *s, const void *p, size_t len, bool *retry)
{
	ssize_t k;

	if (!REAL(gnutls_record_send))
		return GNUTLS_E_PUSH_ERROR;
	k = r_gnutls_record_send(s, p, len);
	/* E_AGAIN/E_INTERRUPTED: the program retries; the flush repeats these arguments */
	*retry = k == GNUTLS_E_AGAIN || k == GNUTLS_E_INTERRUPTED;
	return k;
}

static ssize_t record_send(gnutls_session_t s, const void *data, size_t n)
{
	struct lc_conn_view v;
	struct lc_conn *c;
	ssize_t r;
	int saved = errno;

	if (lc_pl_depth || !s)
		goto pass;
	lc_pl_ensure();
	c = sess_rec(s, true);
	if (!c)
		goto pass;
	lc_conn_view(c, &v);
	if (v.cls == LC_CLS_UNKNOWN && n > 0)
		v.cls = sess_classify(s, c, v.fd, data, n);
	if (v.cls != LC_CLS_PROVIDER || (n == 0 && v.st != LC_ST_FLUSH)) {
		lc_conn_put(c);
		errno = saved;
		goto pass;
	}
	switch (lc_conn_write(c, data, n)) {
	case LC_W_CLAIM:
		r = (ssize_t)n;
		errno = saved;
		break;
	case LC_W_DENY:
		deny_ready(s, c);
		r = (ssize_t)n;
		errno = saved;
		break;
	case LC_W_FAIL:
		r = GNUTLS_E_PUSH_ERROR;
		errno = EPIPE;
		break;
	case LC_W_FLUSH:
	default:
		/* the held request's bytes through the real send; the program's call reports n on completion */
		if (lc_conn_flush_all(c, put_record, s, &r)) {
			r = (ssize_t)n;
			errno = saved;
		}
		break;
	}
	lc_conn_put(c);
	return r;
pass:
	if (!REAL(gnutls_record_send))
		return GNUTLS_E_PUSH_ERROR;
	return r_gnutls_record_send(s, data, n);
}

static ssize_t record_recv(gnutls_session_t s, void *data, size_t n)
{
	struct lc_conn_view v;
	struct lc_conn *c;
	ssize_t k;
	int mode, saved = errno;

	c = lc_pl_depth || !s ? NULL : lc_conn_provider(sess_rec(s, false), &v);
	if (!c) {
		errno = saved;
		if (!REAL(gnutls_record_recv))
			return GNUTLS_E_PULL_ERROR;
		return r_gnutls_record_recv(s, data, n);
	}
	mode = lc_conn_read_mode(c);
	if (mode == LC_R_SYNTH) {
		k = (ssize_t)lc_conn_synth_read(c, data, n, false);    /* 0: end of stream */
		lc_conn_put(c);
		errno = saved;
		return k;
	}
	k = REAL(gnutls_record_recv) ? r_gnutls_record_recv(s, data, n) : GNUTLS_E_PULL_ERROR;
	if (mode == LC_R_FEED) {
		saved = errno;
		if (k > 0)
			lc_conn_feed(c, data, (size_t)k);
		else if (k == 0 || (k != GNUTLS_E_AGAIN && k != GNUTLS_E_INTERRUPTED &&
				    k != GNUTLS_E_REHANDSHAKE && k != GNUTLS_E_WARNING_ALERT_RECEIVED))
			lc_conn_eof(c);
		errno = saved;
	}
	lc_conn_put(c);
	return k;
}

/* inside these a rehandshake may write (lc_pl_tls_in) */
LC_EXPORT ssize_t gnutls_record_send(gnutls_session_t s, const void *data, size_t n)
{
	ssize_t r;

	lc_pl_tls_in++;
	r = record_send(s, data, n);
	lc_pl_tls_in--;
	return r;
}

LC_EXPORT ssize_t gnutls_record_recv(gnutls_session_t s, void *data, size_t n)
{
	ssize_t r;

	lc_pl_tls_in++;
	r = record_recv(s, data, n);
	lc_pl_tls_in--;
	return r;
}

LC_EXPORT size_t gnutls_record_check_pending(gnutls_session_t s)
{
	struct lc_conn_view v;

	if (sess_view(s, &v) && v.st == LC_ST_DENIED)
		return v.synth_left;
	if (!REAL(gnutls_record_check_pending))
		return 0;
	return r_gnutls_record_check_pending(s);
}

/* A blocked session never sent its request and its socket's read side is shut: there is no
 * close_notify to wait for. Answer at once, without any I/O. */
LC_EXPORT int gnutls_bye(gnutls_session_t s, gnutls_close_request_t how)
{
	struct lc_conn_view v;

	if (sess_view(s, &v) && v.cls == LC_CLS_PROVIDER && v.st == LC_ST_DENIED)
		return GNUTLS_E_SUCCESS;
	if (!REAL(gnutls_bye))
		return GNUTLS_E_INTERNAL_ERROR;
	return r_gnutls_bye(s, how);
}

LC_EXPORT void gnutls_deinit(gnutls_session_t s)
{
	if (!lc_pl_depth && s) {
		int saved = errno;
		struct lc_conn *c = lc_tab_take(LC_TAB_SSL, (uintptr_t)s);

		if (c) {
			lc_conn_finish(c);
			lc_conn_put(c);
		}
		errno = saved;
	}
	if (REAL(gnutls_deinit))
		r_gnutls_deinit(s);
}
