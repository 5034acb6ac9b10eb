/* relay.c - the loopback relay inside `llmcap run`'s supervisor (supervise.c).
 *
 * A provider connect() of a supervised program (static, Go) is carried out by the supervisor on
 * the program's own socket (pidfd_getfd), towards a listening socket of this relay instead of
 * the provider: same descriptor, same flags and options, a non-blocking socket gets EINPROGRESS
 * as it would from the kernel. The relay knows which provider address each connection was meant
 * for by the local port the supervisor bound the socket to before connecting it.
 *
 * A connection the supervisor cannot tell from its address (a port the policy's provider entries
 * use at an address that is not a provider's: a provider at an address not resolved yet; an HTTP
 * proxy of the program's environment) is peeked first (peek): its first bytes are read without
 * being taken off the socket, and a ClientHello whose SNI, a request whose Host, a CONNECT or an
 * absolute-form request that names a provider is held below, anything else spliced untouched to
 * the address the program asked for (splice_conn).
 *
 * Per connection (one thread): the first byte tells TLS (a ClientHello, 0x16) from plain HTTP.
 * TLS is terminated with a leaf certificate for the name the program asked for (SNI; else the
 * policy's host entry), signed on the fly by the llmcap CA of this host and cached for the run.
 * Each HTTP/1.1 request is read whole and decided by the engine (lc_admit_http), exactly as the
 * preload decides: refused -> the synthetic 429/401/503 goes back and not one byte leaves; allowed
 * -> the bytes go unchanged to the provider address the program asked for, over TLS verified
 * against the trust the user had (SSL_CERT_FILE / SSL_CERT_DIR or the system's, the name being
 * the one the program asked for), and the answer streams back as it arrives (SSE unbuffered)
 * while lc_resp reads the usage; the ticket is settled when the answer ends (lc_settle). HTTP/2
 * is not offered (ALPN http/1.1); a request llmcap cannot read closes the connection unsent.
 *
 * Trust: the CA key is created on first use in <state>/relay/ca.key (mode 0600) and never leaves
 * that file and this process; the program trusts the CA only through the variables `llmcap run`
 * sets for it (lc_relay_child_env): bundles of what it trusted before plus the llmcap CA.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "engine.h"
#include "relay.h"
#include "sniff.h"
#include "util.h"

/* ---- the llmcap CA and leaf certificates ---- */

static EVP_PKEY *ca_key, *leaf_key;
static X509 *ca_cert;
static char ca_dir[PATH_MAX], ca_pem[PATH_MAX + 16];

static int add_ext(X509 *x, X509V3_CTX *ctx, int nid, const char *val)
{
	X509_EXTENSION *e = X509V3_EXT_nconf_nid(NULL, ctx, nid, val);
	int r;

	if (!e)
		return -1;
	r = X509_add_ext(x, e, -1) ? 0 : -1;
	X509_EXTENSION_free(e);
	return r;
}

/* a certificate for pub: the CA itself (issuer NULL: self-signed) or a server leaf with san */
static X509 *make_cert(const char *cn, EVP_PKEY *pub, X509 *issuer, EVP_PKEY *ikey, const char *san, long days)
{
	unsigned char rnd[16];
	BIGNUM *bn = NULL;
	X509 *x = X509_new();
	X509_NAME *n;
	X509V3_CTX ctx;
	bool ok;

	if (!x || RAND_bytes(rnd, sizeof(rnd)) != 1)
		goto fail;
	rnd[0] &= 0x7f;
	bn = BN_bin2bn(rnd, sizeof(rnd), NULL);
	n = X509_get_subject_name(x);
	ok = bn && X509_set_version(x, 2) && BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x)) &&
	     X509_gmtime_adj(X509_getm_notBefore(x), -3600) && X509_gmtime_adj(X509_getm_notAfter(x), days * 86400) &&
	     X509_NAME_add_entry_by_txt(n, "O", MBSTRING_UTF8, (const unsigned char *)"llmcap", -1, -1, 0) &&
	     X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_UTF8, (const unsigned char *)cn, -1, -1, 0) &&
	     X509_set_issuer_name(x, issuer ? X509_get_subject_name(issuer) : n) && X509_set_pubkey(x, pub);
	BN_free(bn);
	if (!ok)
		goto fail;
	X509V3_set_ctx_nodb(&ctx);
	X509V3_set_ctx(&ctx, issuer ? issuer : x, x, NULL, NULL, 0);
	if (add_ext(x, &ctx, NID_basic_constraints, issuer ? "critical,CA:FALSE" : "critical,CA:TRUE,pathlen:0") ||
	    add_ext(x, &ctx, NID_key_usage, issuer ? "critical,digitalSignature" : "critical,keyCertSign,cRLSign") ||
	    add_ext(x, &ctx, NID_subject_key_identifier, "hash") ||
	    (issuer && (add_ext(x, &ctx, NID_authority_key_identifier, "keyid:always") ||
			add_ext(x, &ctx, NID_ext_key_usage, "serverAuth") ||
			add_ext(x, &ctx, NID_subject_alt_name, san))) ||
	    !X509_sign(x, ikey, EVP_sha256()))
		goto fail;
	return x;
fail:
	X509_free(x);
	return NULL;
}

static int pem_of(X509 *x, EVP_PKEY *k, struct lc_buf *out)
{
	BIO *b = BIO_new(BIO_s_mem());
	char *p;
	long n;
	int ok = b && (x ? PEM_write_bio_X509(b, x) : PEM_write_bio_PrivateKey(b, k, NULL, NULL, 0, NULL, NULL));

	lc_buf_init(out, 1 << 20);
	n = ok ? BIO_get_mem_data(b, &p) : 0;
	ok = ok && n > 0 && lc_buf_add(out, p, (size_t)n) == 0;
	BIO_free(b);
	return ok ? 0 : -1;
}

/* load <state>/relay/ca.{key,pem}, creating them on first use (under a lock) */
static int ca_load(char *why, size_t wl)
{
	char path[PATH_MAX + 16], host[64] = "", cn[128], err[256] = "";
	struct lc_buf kb, cb;
	FILE *f;
	int lk;

	if (lc_state_dir(ca_dir, sizeof(ca_dir) - 8)) {
		snprintf(why, wl, "no state directory for the llmcap CA");
		return -1;
	}
	strcat(ca_dir, "/relay");
	if (mkdir(ca_dir, 0700) != 0 && errno != EEXIST) {
		snprintf(why, wl, "cannot create %s: %s", ca_dir, strerror(errno));
		return -1;
	}
	snprintf(path, sizeof(path), "%s/lock", ca_dir);
	lk = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (lk < 0 || flock(lk, LOCK_EX) != 0) {
		snprintf(why, wl, "cannot lock %s: %s", path, strerror(errno));
		if (lk >= 0)
			close(lk);
		return -1;
	}
	snprintf(ca_pem, sizeof(ca_pem), "%s/ca.pem", ca_dir);
	snprintf(path, sizeof(path), "%s/ca.key", ca_dir);
	if (access(path, F_OK) == 0 && access(ca_pem, F_OK) == 0) {
		if ((f = fopen(path, "re"))) {
			ca_key = PEM_read_PrivateKey(f, NULL, NULL, NULL);
			fclose(f);
		}
		if ((f = fopen(ca_pem, "re"))) {
			ca_cert = PEM_read_X509(f, NULL, NULL, NULL);
			fclose(f);
		}
		if (!ca_key || !ca_cert || X509_check_private_key(ca_cert, ca_key) != 1) {
			snprintf(why, wl, "the llmcap CA in %s cannot be read (%s)", ca_dir,
				 access(path, R_OK) ? strerror(errno) : "damaged: remove ca.key and ca.pem to make a new one");
			goto fail;
		}
		chmod(path, 0600);
	} else {
		gethostname(host, sizeof(host) - 1);
		snprintf(cn, sizeof(cn), "llmcap relay CA (%.60s)", host);
		ca_key = EVP_EC_gen("P-256");
		ca_cert = ca_key ? make_cert(cn, ca_key, NULL, ca_key, NULL, 3650) : NULL;
		if (!ca_cert || pem_of(NULL, ca_key, &kb)) {
			snprintf(why, wl, "cannot make the llmcap CA (OpenSSL)");
			goto fail;
		}
		if (lc_write_file_atomic(path, kb.data, kb.len, 0600, err, sizeof(err))) {
			lc_buf_free(&kb);
			snprintf(why, wl, "cannot write the llmcap CA key: %s", err);
			goto fail;
		}
		lc_buf_free(&kb);
		if (pem_of(ca_cert, NULL, &cb) || lc_write_file_atomic(ca_pem, cb.data, cb.len, 0644, err, sizeof(err))) {
			lc_buf_free(&cb);
			snprintf(why, wl, "cannot write the llmcap CA certificate: %s", err);
			goto fail;
		}
		lc_buf_free(&cb);
	}
	close(lk);
	leaf_key = EVP_EC_gen("P-256");    /* one key for this run's leaves, never written anywhere */
	if (!leaf_key) {
		snprintf(why, wl, "cannot make a key (OpenSSL)");
		return -1;
	}
	return 0;
fail:
	close(lk);
	return -1;
}

/* leaf certificates of this run, one per name */
#define MAX_LEAVES 64
static struct {
	char name[256];
	X509 *x;
} leaves[MAX_LEAVES];
static pthread_mutex_t leaf_mu = PTHREAD_MUTEX_INITIALIZER;

static X509 *leaf_for(const char *name)
{
	unsigned char ip[16];
	char san[300];
	X509 *x = NULL;
	int i;

	pthread_mutex_lock(&leaf_mu);
	for (i = 0; i < MAX_LEAVES && leaves[i].x; i++)
		if (!strcmp(leaves[i].name, name)) {
			x = leaves[i].x;
			goto out;
		}
	snprintf(san, sizeof(san), "%s:%s",
		 inet_pton(AF_INET, name, ip) == 1 || inet_pton(AF_INET6, name, ip) == 1 ? "IP" : "DNS", name);
	x = make_cert(name, leaf_key, ca_cert, ca_key, san, 7);
	if (x && i < MAX_LEAVES) {
		snprintf(leaves[i].name, sizeof(leaves[i].name), "%s", name);
		leaves[i].x = x;
	} else if (x) {
		X509_free(leaves[MAX_LEAVES - 1].x);    /* full: the last slot is reused */
		snprintf(leaves[MAX_LEAVES - 1].name, sizeof(leaves[0].name), "%s", name);
		leaves[MAX_LEAVES - 1].x = x;
	}
out:
	if (x)
		X509_up_ref(x);
	pthread_mutex_unlock(&leaf_mu);
	return x;
}

/* ---- what the program trusts ---- */

static const char *const trust_vars[] = { "SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE",
					  "NODE_EXTRA_CA_CERTS" };
#define NVARS (sizeof(trust_vars) / sizeof(trust_vars[0]))
static char trust_vals[NVARS][PATH_MAX + 64];

/* <state>/relay/bundle-<hash>.pem = base (may be NULL) + the llmcap CA */
static int bundle(const char *base, char *out, size_t outlen, char *why, size_t wl)
{
	struct lc_buf b, ca;
	unsigned char h[32];
	char hex[65], err[256] = "";
	int rc = -1;

	if (lc_read_file(ca_pem, 1 << 20, &ca, err, sizeof(err))) {
		snprintf(why, wl, "%s", err);
		return -1;
	}
	if (!base || !*base || lc_read_file(base, 16 << 20, &b, err, sizeof(err)))
		lc_buf_init(&b, 32 << 20);
	if ((b.len && b.data[b.len - 1] != '\n' && lc_buf_add(&b, "\n", 1)) || lc_buf_add(&b, ca.data, ca.len)) {
		snprintf(why, wl, "trust bundle too large");
		goto out;
	}
	lc_sha256(b.data, b.len, h);
	lc_hex(h, 8, hex);
	snprintf(out, outlen, "%s/bundle-%s.pem", ca_dir, hex);
	if (access(out, R_OK) != 0 && lc_write_file_atomic(out, b.data, b.len, 0644, err, sizeof(err))) {
		snprintf(why, wl, "%s", err);
		goto out;
	}
	rc = 0;
out:
	lc_buf_free(&b);
	lc_buf_free(&ca);
	return rc;
}

static int lfd4 = -1, lfd6 = -1;
static struct sockaddr_in addr4;
static struct sockaddr_in6 addr6;

void lc_relay_child_env(void)
{
	char a4[INET_ADDRSTRLEN], a6[INET6_ADDRSTRLEN], v[160];
	size_t i;

	for (i = 0; i < NVARS; i++)
		if (trust_vals[i][0])
			setenv(trust_vars[i], trust_vals[i], 1);
	/* the relay's addresses: the preload leaves connections to them alone (the relay holds them) */
	inet_ntop(AF_INET, &addr4.sin_addr, a4, sizeof(a4));
	inet_ntop(AF_INET6, &addr6.sin6_addr, a6, sizeof(a6));
	if (lfd6 >= 0)
		snprintf(v, sizeof(v), "%s:%d [%s]:%d", a4, ntohs(addr4.sin_port), a6, ntohs(addr6.sin6_port));
	else
		snprintf(v, sizeof(v), "%s:%d", a4, ntohs(addr4.sin_port));
	setenv("LLMCAP_RELAY", v, 1);
}

/* ---- listeners and the table of connections on their way ---- */

static SSL_CTX *sctx, *uctx;
/* LLMCAP_RELAY_TIMEOUT (seconds, 1..86400, default 600): how long the relay waits for the
 * provider's next bytes (an answer, the rest of one); connecting and the TLS handshake to it wait
 * at most 30 s, or that timeout when shorter */
static int up_timeout_s = 600;
#define CONNECT_TIMEOUT_S (up_timeout_s < 30 ? up_timeout_s : 30)

static int64_t mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void set_timeouts(int fd, int secs)
{
	struct timeval tv = { .tv_sec = secs };

	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
}

struct pending {
	int lport;                    /* the program socket's local port (key) */
	int family;
	struct sockaddr_storage dst;
	socklen_t dlen;
	char host[256];               /* the policy entry's host, for the engine ("": peeked) */
	int port;
	int mode;                     /* enum lc_relay_mode */
	int64_t since;
};
#define MAX_PENDING 256
static struct pending pend[MAX_PENDING];
static pthread_mutex_t pend_mu = PTHREAD_MUTEX_INITIALIZER;

static int listen_on(int fam)
{
	int fd = socket(fam, SOCK_STREAM | SOCK_CLOEXEC, 0), one = 1;
	socklen_t l;

	if (fd < 0)
		return -1;
	if (fam == AF_INET) {
		addr4.sin_family = AF_INET;
		addr4.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		l = sizeof(addr4);
		if (bind(fd, (struct sockaddr *)&addr4, l) || listen(fd, 512) ||
		    getsockname(fd, (struct sockaddr *)&addr4, &l))
			goto fail;
	} else {
		setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
		addr6.sin6_family = AF_INET6;
		addr6.sin6_addr = in6addr_loopback;
		l = sizeof(addr6);
		if (bind(fd, (struct sockaddr *)&addr6, l) || listen(fd, 512) ||
		    getsockname(fd, (struct sockaddr *)&addr6, &l))
			goto fail;
	}
	return fd;
fail:
	close(fd);
	return -1;
}

struct rconn;
static int sni_cb(SSL *s, int *al, void *arg);
static int alpn_cb(SSL *s, const unsigned char **out, unsigned char *outlen, const unsigned char *in,
		   unsigned int inlen, void *arg);

int lc_relay_prepare(char *why, size_t wl)
{
	char base[PATH_MAX];
	const char *ssl_file = getenv("SSL_CERT_FILE"), *v;
	size_t i;

	/* No OpenSSL clean-up at exit: the supervisor exits when the program does, and relay threads may
	 * still be inside OpenSSL then (a stream the program gave up on); freeing OpenSSL's state under
	 * them at exit is a use-after-free waiting to happen (and LeakSanitizer saw their per-thread
	 * random generators orphaned). Must come before anything else initialises OpenSSL. */
	OPENSSL_init_ssl(OPENSSL_INIT_NO_ATEXIT, NULL);
	if ((v = getenv("LLMCAP_RELAY_TIMEOUT")) && *v) {
		int64_t t;

		if (lc_parse_dec(v, strlen(v), 1, 86400, &t) == 0)
			up_timeout_s = (int)t;
		else
			fprintf(stderr, "llmcap run: LLMCAP_RELAY_TIMEOUT=%s is not a number of seconds (1-86400): "
					"using %d\n", v, up_timeout_s);
	}
	if (ca_load(why, wl))
		return -1;
	/* the program's TLS libraries: what each variable named, else SSL_CERT_FILE, else the system's */
	snprintf(base, sizeof(base), "%s", ssl_file && *ssl_file ? ssl_file : X509_get_default_cert_file());
	for (i = 0; i < NVARS; i++) {
		v = getenv(trust_vars[i]);
		if (!strcmp(trust_vars[i], "NODE_EXTRA_CA_CERTS"))    /* node adds it to its own roots */
			v = v && *v ? v : NULL;
		else
			v = v && *v ? v : base;
		if (bundle(v, trust_vals[i], sizeof(trust_vals[i]), why, wl))
			return -1;
	}
	sctx = SSL_CTX_new(TLS_server_method());
	uctx = SSL_CTX_new(TLS_client_method());
	if (!sctx || !uctx || !SSL_CTX_set_min_proto_version(sctx, TLS1_2_VERSION) ||
	    !SSL_CTX_set_min_proto_version(uctx, TLS1_2_VERSION) || SSL_CTX_set_default_verify_paths(uctx) != 1 ||
	    SSL_CTX_set_alpn_protos(uctx, (const unsigned char *)"\x08http/1.1", 9) != 0) {
		snprintf(why, wl, "cannot set up TLS (OpenSSL)");
		return -1;
	}
	SSL_CTX_set_verify(uctx, SSL_VERIFY_PEER, NULL);
	SSL_CTX_set_mode(sctx, SSL_MODE_AUTO_RETRY);
	SSL_CTX_set_mode(uctx, SSL_MODE_AUTO_RETRY);
	SSL_CTX_set_tlsext_servername_callback(sctx, sni_cb);
	SSL_CTX_set_alpn_select_cb(sctx, alpn_cb, NULL);
	lfd4 = listen_on(AF_INET);
	lfd6 = listen_on(AF_INET6);
	if (lfd4 < 0) {
		snprintf(why, wl, "cannot listen on the loopback interface: %s", strerror(errno));
		return -1;
	}
	return 0;
}

/* ---- one relayed connection ---- */

struct side {
	int fd;
	SSL *ssl;
};

struct rconn {
	struct side c, u;          /* the program, the provider */
	struct pending p;
	char name[256];            /* the name the program asked for (SNI), else the entry's host */
	bool said;                 /* a stderr line about this connection was printed */
	char *tunnel;              /* held through an HTTP proxy: the program's CONNECT head, sent to
				    * the proxy before each upstream connection (NULL: direct) */
	size_t tunnel_len;
	bool per_request;          /* plain HTTP to a proxy: each request names its host (absolute-form) */
};

/* ALPN: http/1.1 only. A program that offers protocols but not http/1.1 gets no ALPN (HTTP/1.1 it
 * is); one that offers only HTTP/2 (h2) would speak it and nothing else: refused at once in the
 * handshake (no_application_protocol alert), one stderr line. */
static int alpn_cb(SSL *s, const unsigned char **out, unsigned char *outlen, const unsigned char *in,
		   unsigned int inlen, void *arg)
{
	static const unsigned char h1[] = "\x08http/1.1";
	struct rconn *rc = SSL_get_app_data(s);
	unsigned int i;

	if (SSL_select_next_proto((unsigned char **)out, outlen, h1, sizeof(h1) - 1, in, inlen) ==
	    OPENSSL_NPN_NEGOTIATED)
		return SSL_TLSEXT_ERR_OK;
	for (i = 0; i < inlen && i + 1 + in[i] <= inlen; i += 1u + in[i])
		if (in[i] == 2 && memcmp(in + i + 1, "h2", 2) == 0) {
			fprintf(stderr, "llmcap: relay: a program offered only HTTP/2 (ALPN h2, no http/1.1) to provider %s: "
					"refused (llmcap holds provider calls over HTTP/1.1)\n", rc ? rc->name : "?");
			if (rc)
				rc->said = true;
			return SSL_TLSEXT_ERR_ALERT_FATAL;
		}
	return SSL_TLSEXT_ERR_NOACK;    /* no http/1.1 offered: no ALPN, HTTP/1.1 it is */
}

static int sni_cb(SSL *s, int *al, void *arg)
{
	struct rconn *rc = SSL_get_app_data(s);
	const char *sni = SSL_get_servername(s, TLSEXT_NAMETYPE_host_name);
	X509 *x;

	if (sni && *sni && strlen(sni) < sizeof(rc->name))
		snprintf(rc->name, sizeof(rc->name), "%s", sni);
	x = leaf_for(rc->name);
	if (!x || SSL_use_certificate(s, x) != 1 || SSL_use_PrivateKey(s, leaf_key) != 1) {
		X509_free(x);
		*al = SSL_AD_INTERNAL_ERROR;
		return SSL_TLSEXT_ERR_ALERT_FATAL;
	}
	X509_free(x);
	return SSL_TLSEXT_ERR_OK;
}

static ssize_t side_read(struct side *s, void *buf, size_t n)
{
	ssize_t r;

	if (s->ssl) {
		size_t got = 0;

		if (SSL_read_ex(s->ssl, buf, n, &got) == 1)
			return (ssize_t)got;
		switch (SSL_get_error(s->ssl, 0)) {
		case SSL_ERROR_ZERO_RETURN:
			return 0;
		case SSL_ERROR_WANT_READ:
		case SSL_ERROR_WANT_WRITE:
			return -2;    /* the socket's receive timeout (SO_RCVTIMEO) */
		default:
			return -1;
		}
	}
	do
		r = recv(s->fd, buf, n, 0);
	while (r < 0 && errno == EINTR);
	return r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) ? -2 : r;
}

static int side_write(struct side *s, const void *buf, size_t n)
{
	const char *p = buf;

	while (n) {
		ssize_t w;

		if (s->ssl) {
			size_t k = 0;

			w = SSL_write_ex(s->ssl, p, n, &k) == 1 ? (ssize_t)k : -1;
		} else {
			w = send(s->fd, p, n, MSG_NOSIGNAL);
			if (w < 0 && errno == EINTR)
				continue;
		}
		if (w <= 0)
			return -1;
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

static void side_close(struct side *s)
{
	if (s->ssl) {
		SSL_shutdown(s->ssl);
		SSL_free(s->ssl);
	}
	if (s->fd >= 0)
		close(s->fd);
	s->ssl = NULL;
	s->fd = -1;
}

/* a short answer of the relay's own (no ticket: it never reached the provider) */
static void answer(struct rconn *rc, int status, const char *reason, const char *msg)
{
	char b[1024], body[600];
	int n = snprintf(body, sizeof(body), "{\"error\":{\"message\":\"llmcap relay: %s\",\"type\":\"llmcap_relay\"}}",
			 msg);

	n = snprintf(b, sizeof(b), "HTTP/1.1 %d %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\n"
		     "connection: close\r\n\r\n%s", status, reason, n, body);
	side_write(&rc->c, b, (size_t)n);
}

/* through the program's HTTP proxy: its own CONNECT head (Proxy-Authorization and all) goes to
 * the proxy, whose answer head is read byte by byte (nothing of the tunnel is read ahead); 0 when
 * the proxy answered 2xx */
static int tunnel_open(struct rconn *rc, char *why, size_t wl)
{
	char head[8192];
	size_t n = 0;

	if (side_write(&rc->u, rc->tunnel, rc->tunnel_len) != 0) {
		snprintf(why, wl, "cannot reach the HTTP proxy for %s: %s", rc->name, strerror(errno));
		return -1;
	}
	while (n < sizeof(head) - 1 && (n < 4 || memcmp(head + n - 4, "\r\n\r\n", 4) != 0) &&
	       (n < 2 || memcmp(head + n - 2, "\n\n", 2) != 0)) {
		ssize_t r = recv(rc->u.fd, head + n, 1, 0);

		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0) {
			snprintf(why, wl, "the HTTP proxy closed the tunnel to %s before answering", rc->name);
			return -1;
		}
		n++;
	}
	head[n] = 0;
	if (n < 12 || memcmp(head, "HTTP/1.", 7) != 0 || head[9] != '2') {
		snprintf(why, wl, "the HTTP proxy refused the tunnel to %s: %.*s", rc->name, (int)strcspn(head, "\r\n"),
			 head);
		return -1;
	}
	return 0;
}

/* connect to the provider address the program asked for (its proxy when it asked through one),
 * TLS when the program spoke TLS */
static int up_connect(struct rconn *rc, bool tls, char *why, size_t wl)
{
	int fd = socket(rc->p.dst.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0), one = 1, err = 0;
	unsigned char ip[16];
	socklen_t el = sizeof(err);

	if (fd >= 0 && connect(fd, (struct sockaddr *)&rc->p.dst, rc->p.dlen) != 0) {
		struct pollfd p = { .fd = fd, .events = POLLOUT };
		int r;

		err = errno;
		if (err == EINPROGRESS) {
			do
				r = poll(&p, 1, CONNECT_TIMEOUT_S * 1000);
			while (r < 0 && errno == EINTR);
			if (r == 0)
				err = ETIMEDOUT;
			else if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &el) != 0)
				err = errno;
		}
	}
	if (fd < 0 || err) {
		snprintf(why, wl, "cannot connect to the provider %s: %s%s", rc->name, strerror(fd < 0 ? errno : err),
			 err == ETIMEDOUT ? " (no answer to connect)" : "");
		if (fd >= 0)
			close(fd);
		return -1;
	}
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	set_timeouts(fd, CONNECT_TIMEOUT_S);
	rc->u.fd = fd;
	if (rc->tunnel && tunnel_open(rc, why, wl))
		return -1;
	if (!tls) {
		set_timeouts(fd, up_timeout_s);
		return 0;
	}
	rc->u.ssl = SSL_new(uctx);
	if (!rc->u.ssl || !SSL_set_fd(rc->u.ssl, fd) || !SSL_set1_host(rc->u.ssl, rc->name) ||
	    (inet_pton(AF_INET, rc->name, ip) != 1 && inet_pton(AF_INET6, rc->name, ip) != 1 &&
	     !SSL_set_tlsext_host_name(rc->u.ssl, rc->name))) {
		snprintf(why, wl, "cannot set up TLS to the provider");
		return -1;
	}
	errno = 0;
	if (SSL_connect(rc->u.ssl) != 1) {
		long v = SSL_get_verify_result(rc->u.ssl);

		snprintf(why, wl, "TLS to the provider %s failed: %s", rc->name,
			 v != X509_V_OK ? X509_verify_cert_error_string(v)
			 : errno == EAGAIN || errno == EWOULDBLOCK ? "no answer to the handshake" : "handshake failed");
		return -1;
	}
	set_timeouts(fd, up_timeout_s);
	return 0;
}

/* the upstream connection is usable for one more request: idle and quiet (anything readable on
 * an idle HTTP/1.1 connection is its end: EOF, a TLS close_notify; a new connection is cheaper
 * than a request written into a closing one) */
static bool up_alive(struct rconn *rc)
{
	struct pollfd p = { .fd = rc->u.fd, .events = POLLIN };

	return rc->u.fd >= 0 && poll(&p, 1, 0) == 0 && (!rc->u.ssl || SSL_pending(rc->u.ssl) == 0);
}

/* the provider sent nothing for up_timeout_s: a 504 of the relay's own when nothing of the answer
 * reached the program yet (else the connection closes), one stderr line; false (the connection ends) */
static bool stalled(struct rconn *rc, struct lc_resp *resp, bool sent)
{
	char why[300];

	snprintf(why, sizeof(why), "the provider %s sent nothing for %d s (LLMCAP_RELAY_TIMEOUT)%s", rc->name,
		 up_timeout_s, sent ? ": connection closed mid-answer" : "");
	fprintf(stderr, "llmcap: relay: %s\n", why);
	if (!sent)
		answer(rc, 504, "Gateway Timeout", why);
	lc_resp_eof(resp);
	return false;
}

/* the provider's answer to one request: streamed to the program, fed to lc_resp; true: go on.
 * The provider sending nothing for up_timeout_s ends it: a 504 from the relay when nothing of the
 * answer reached the program yet, else the connection closes (one stderr line either way). */
static bool relay_response(struct rconn *rc, struct lc_resp *resp)
{
	char buf[16384];
	bool client_quiet = false, sent = false;
	int64_t last = mono_ms();

	for (;;) {
		ssize_t n;
		size_t used = 0;
		int pr;

		if (!rc->u.ssl || SSL_pending(rc->u.ssl) == 0) {
			struct pollfd p[2] = { { .fd = rc->u.fd, .events = POLLIN }, { .fd = rc->c.fd, .events = POLLIN } };
			int64_t left = last + (int64_t)up_timeout_s * 1000 - mono_ms();

			if (left <= 0)
				return stalled(rc, resp, sent);
			if (poll(p, client_quiet ? 1 : 2, (int)(left < INT_MAX ? left : INT_MAX)) < 0 && errno != EINTR)
				return false;
			if (!client_quiet && (p[1].revents & (POLLIN | POLLHUP | POLLERR))) {
				if (recv(rc->c.fd, buf, 1, MSG_PEEK | MSG_DONTWAIT) == 0)
					return false;    /* the program went away mid-answer */
				client_quiet = true;     /* it sent more (the next request): read it later */
			}
			if (!(p[0].revents & (POLLIN | POLLHUP | POLLERR)))
				continue;
		}
		n = side_read(&rc->u, buf, sizeof(buf));
		if (n == -2)    /* a read blocked up_timeout_s (SO_RCVTIMEO): a partial record, or nothing after TLS tickets */
			return stalled(rc, resp, sent);
		if (n <= 0) {
			lc_resp_eof(resp);
			return false;
		}
		last = mono_ms();
		sent = true;
		if (side_write(&rc->c, buf, (size_t)n) != 0)
			return false;
		if (resp->state == LC_PARSE_MORE) {
			pr = lc_resp_feed(resp, buf, (size_t)n, &used);
			if (pr == LC_PARSE_DONE)
				return true;
			if (pr != LC_PARSE_MORE)
				return false;    /* not HTTP/1.1 we can frame: relay until it closes */
		}
	}
}

/* ---- peeked connections: hold what names a provider, splice the rest untouched ---- */

#define PEEK_MAX LC_WIRE_MAX_HEAD    /* a request head; a TLS record (the ClientHello) is 5 + 16384 */
#define PEEK_QUIET_MS 100            /* a program quiet this long may wait for its server to speak */

/* host:port is one of the policy's providers (the engine's matching, as the preload's): it becomes
 * this connection's provider. A store that cannot be read counts as a provider (fail closed: the
 * held path answers 503, as the preload does). */
static bool peek_provider(struct rconn *rc, const char *host, int port)
{
	if (lc_provider_lookup(host, port, NULL, NULL, 0) == 0)
		return false;
	snprintf(rc->p.host, sizeof(rc->p.host), "%s", host);
	snprintf(rc->name, sizeof(rc->name), "%s", host);
	rc->p.port = port;
	return true;
}

/* the start of an HTTP/1.x request, or of the CONNECT of a proxy client, too short to tell yet */
static bool http_prefix(const char *b, size_t n)
{
	static const char *const starts[] = { "GET ", "POST ", "PUT ", "PATCH ", "DELETE ", "HEAD ", "OPTIONS ",
					      "CONNECT " };
	size_t i;

	for (i = 0; i < sizeof(starts) / sizeof(starts[0]); i++)
		if (n < strlen(starts[i]) && memcmp(b, starts[i], n) == 0)
			return true;
	return false;
}

/* A CONNECT to a provider, through the program's proxy: the relay takes the head off the socket,
 * keeps it for the proxy (tunnel_open) and answers the program itself; -1 when it cannot */
static int peek_connect(struct rconn *rc, size_t headlen)
{
	static const char ok[] = "HTTP/1.1 200 Connection established\r\n\r\n";
	size_t got = 0;

	rc->tunnel = malloc(headlen);
	if (!rc->tunnel)
		return -1;
	while (got < headlen) {
		ssize_t r = recv(rc->c.fd, rc->tunnel + got, headlen - got, 0);

		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return -1;
		got += (size_t)r;
	}
	rc->tunnel_len = headlen;
	return side_write(&rc->c, ok, sizeof(ok) - 1) == 0 ? 1 : -1;
}

/* what the program's first n bytes say: 1 hold (rc->p.host, port and name set), 0 splice, 2 more
 * bytes are needed, -1 close */
static int peek_decide(struct rconn *rc, const char *b, size_t n)
{
	char host[256];
	const char *eoh, *sp, *tg;
	int port = 0;
	bool tls;

	if (rc->p.mode == LC_RELAY_PEEK && (unsigned char)b[0] == 0x16) {    /* TLS: the ClientHello's SNI */
		size_t rl = n < 5 ? 0 : ((size_t)(unsigned char)b[3] << 8) | (unsigned char)b[4];

		if (n >= 5 && rl > 16384)
			return 0;    /* no TLS record: not TLS */
		if (n < 5 || n < 5 + rl)
			return 2;
		return lc_cls_client_hello_sni(b, n, host, sizeof(host)) == 0 && peek_provider(rc, host, rc->p.port);
	}
	if (!lc_cls_is_http_request(b, n) && !(rc->p.mode == LC_RELAY_PEEK_PROXY && n >= 8 && !memcmp(b, "CONNECT ", 8)))
		return http_prefix(b, n) ? 2 : 0;
	eoh = memmem(b, n, "\r\n\r\n", 4);
	eoh = eoh ? eoh + 4 : memmem(b, n, "\n\n", 2) ? (const char *)memmem(b, n, "\n\n", 2) + 2 : NULL;
	if (rc->p.mode == LC_RELAY_PEEK) {    /* plain HTTP: its Host header */
		if (lc_cls_host_header(b, n, host, sizeof(host), &port) == 0)
			return peek_provider(rc, host, port ? port : 80);
		return eoh || n >= PEEK_MAX ? 0 : 2;
	}
	/* to an HTTP proxy: CONNECT host:port, or an absolute-form request line */
	if (!memchr(b, '\n', n))
		return n >= PEEK_MAX ? 0 : 2;
	sp = memchr(b, ' ', n);
	tg = sp + 1;
	sp = memchr(tg, ' ', (size_t)(b + n - tg));
	if (!sp || memchr(tg, '\n', (size_t)(sp - tg)))
		return 0;
	if (!memcmp(b, "CONNECT ", 8)) {
		if (lc_cls_hostport(tg, (size_t)(sp - tg), host, sizeof(host), &port) != 0)
			return 0;
		if (!eoh)
			return n >= PEEK_MAX ? 0 : 2;
		return peek_provider(rc, host, port ? port : 443) ? peek_connect(rc, (size_t)(eoh - b)) : 0;
	}
	{
		char url[2048];

		if ((size_t)(sp - tg) >= sizeof(url))
			return 0;
		memcpy(url, tg, (size_t)(sp - tg));
		url[sp - tg] = 0;
		if (lc_cls_url(url, host, sizeof(host), &port, &tls) != 0 || tls)
			return 0;    /* origin-form: a request for the proxy itself */
	}
	/* plain HTTP through the proxy: every request on the connection names its host; held
	 * request by request (serve), the first one's host being the connection's until then */
	rc->per_request = true;
	snprintf(rc->p.host, sizeof(rc->p.host), "%s", host);
	snprintf(rc->name, sizeof(rc->name), "%s", host);
	rc->p.port = port;
	return 1;
}

/* Read the program's first bytes without taking them off the socket (MSG_PEEK) until they decide:
 * 1 hold, 0 splice, -1 close. A program that sends nothing may be waiting for its server to speak
 * first: after PEEK_QUIET_MS the relay connects upstream, and the server speaking first splices the
 * connection (the program's own first bytes are still decided when they come first). */
static int peek(struct rconn *rc)
{
	char *b = malloc(PEEK_MAX), why[300];
	size_t last = 0;
	int64_t t0 = mono_ms();
	int r = -1;
	const void *a = rc->p.dst.ss_family == AF_INET ? (const void *)&((struct sockaddr_in *)&rc->p.dst)->sin_addr
						      : (const void *)&((struct sockaddr_in6 *)&rc->p.dst)->sin6_addr;

	inet_ntop(rc->p.dst.ss_family, a, rc->name, sizeof(rc->name));    /* for messages, until decided */

	while (b) {
		ssize_t n = recv(rc->c.fd, b, PEEK_MAX, MSG_PEEK | MSG_DONTWAIT);

		if (n == 0) {    /* closed before saying anything: the EOF is passed on */
			r = last ? -1 : 0;
			break;
		}
		if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
			break;
		if (n > 0 && (size_t)n != last) {
			last = (size_t)n;
			if ((r = peek_decide(rc, b, last)) != 2)
				break;
			r = -1;
		}
		if (mono_ms() - t0 > (int64_t)CONNECT_TIMEOUT_S * 1000) {
			lc_log(LC_LOG_INFO, "relay: a connection sent %zu bytes llmcap cannot classify in %d s: closed",
			       last, CONNECT_TIMEOUT_S);
			break;
		}
		if (last) {    /* part of a ClientHello or a head: the rest is on its way */
			poll(NULL, 0, 2);
			continue;
		}
		if (rc->u.fd < 0 && mono_ms() - t0 >= PEEK_QUIET_MS && up_connect(rc, false, why, sizeof(why))) {
			lc_log(LC_LOG_INFO, "relay: %s", why);
			break;
		}
		{
			struct pollfd p[2] = { { .fd = rc->c.fd, .events = POLLIN }, { .fd = rc->u.fd, .events = POLLIN } };

			if (poll(p, rc->u.fd >= 0 ? 2 : 1, rc->u.fd >= 0 ? 1000 : PEEK_QUIET_MS) > 0 && rc->u.fd >= 0 &&
			    !(p[0].revents & (POLLIN | POLLHUP | POLLERR)) && (p[1].revents & (POLLIN | POLLHUP | POLLERR))) {
				r = 0;    /* the server spoke first */
				break;
			}
		}
	}
	free(b);
	if (r == 1)
		side_close(&rc->u);    /* a probe of a quiet program: the held path connects anew */
	return r;
}

/* Splice the program and the address it asked for: each direction forwarded as it comes (nothing
 * is held back), an EOF passed on as a half-close, a reset as a reset. */
static void splice_conn(struct rconn *rc)
{
	struct {
		char buf[16384];
		size_t off, len;
		bool eof;
	} d[2];    /* d[0]: program -> upstream, d[1]: upstream -> program */
	char why[300];
	int fd[2], i;
	struct linger rst = { 1, 0 };

	if (rc->u.fd < 0 && up_connect(rc, false, why, sizeof(why))) {
		lc_log(LC_LOG_INFO, "relay: %s", why);
		setsockopt(rc->c.fd, SOL_SOCKET, SO_LINGER, &rst, sizeof(rst));    /* the program sees a reset */
		return;
	}
	fd[0] = rc->c.fd;
	fd[1] = rc->u.fd;
	memset(d, 0, sizeof(d));
	while (!(d[0].eof && d[1].eof && !d[0].len && !d[1].len)) {
		struct pollfd p[2];

		for (i = 0; i < 2; i++) {    /* a socket with nothing to read or write now is not watched */
			p[i].events = (short)((!d[i].eof && !d[i].len ? POLLIN : 0) | (d[1 - i].len ? POLLOUT : 0));
			p[i].fd = p[i].events ? fd[i] : -1;
			p[i].revents = 0;
		}
		if (poll(p, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			break;
		}
		for (i = 0; i < 2; i++) {
			if (p[i].revents & POLLERR)
				goto reset;
			if ((p[i].events & POLLIN) && (p[i].revents & (POLLIN | POLLHUP))) {
				ssize_t k = recv(fd[i], d[i].buf, sizeof(d[i].buf), MSG_DONTWAIT);

				if (k > 0) {
					d[i].off = 0;
					d[i].len = (size_t)k;
				} else if (k == 0) {
					d[i].eof = true;
					shutdown(fd[1 - i], SHUT_WR);
				} else if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
					goto reset;
				}
			}
			if (d[i].len) {    /* straight on: most writes complete here, POLLOUT covers the rest */
				ssize_t w = send(fd[1 - i], d[i].buf + d[i].off, d[i].len, MSG_DONTWAIT | MSG_NOSIGNAL);

				if (w > 0) {
					d[i].off += (size_t)w;
					d[i].len -= (size_t)w;
				} else if (w < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
					goto reset;
				}
			}
		}
	}
	return;
reset:
	for (i = 0; i < 2; i++)
		setsockopt(fd[i], SOL_SOCKET, SO_LINGER, &rst, sizeof(rst));
}

/* plain HTTP through a proxy: the host this request names (absolute-form) is the provider it is
 * decided for; false when it names none of the policy's providers (it passes) */
static bool per_request_provider(struct rconn *rc, const struct lc_reqparse *req)
{
	char host[256];
	int port = 0;
	bool tls;

	if (lc_cls_url(req->path, host, sizeof(host), &port, &tls) != 0 || tls)
		return false;
	snprintf(rc->name, sizeof(rc->name), "%s", host);
	return peek_provider(rc, host, port);
}

static void serve(struct rconn *rc)
{
	char buf[16384], why[512];
	struct lc_buf left;
	unsigned char first1;
	bool tls, first = true, h2 = false;
	ssize_t n;

	lc_buf_init(&left, LC_WIRE_MAX_HEAD + LC_WIRE_MAX_BODY);
	if (rc->p.mode != LC_RELAY_HOLD) {    /* held only when its first bytes name a provider */
		int k = peek(rc);

		if (k == 0)
			splice_conn(rc);
		if (k != 1)
			goto out;
	}
	n = recv(rc->c.fd, &first1, 1, MSG_PEEK);
	if (n != 1)
		goto out;
	tls = first1 == 0x16;
	if (tls) {
		rc->c.ssl = SSL_new(sctx);
		if (!rc->c.ssl || !SSL_set_fd(rc->c.ssl, rc->c.fd))
			goto out;
		SSL_set_app_data(rc->c.ssl, rc);
		ERR_clear_error();
		if (SSL_accept(rc->c.ssl) != 1) {
			const char *r = ERR_reason_error_string(ERR_peek_last_error());

			/* the program sent an alert (unknown ca, bad certificate) or dropped the connection
			 * once it had the llmcap certificate (node checks it after the handshake): it
			 * ignores the CA variables llmcap run set */
			if (!rc->said && r && (strstr(r, "alert") || strstr(r, "unexpected eof")))
				fprintf(stderr, "llmcap: relay: the program ended its TLS handshake for provider %s with "
						"\"%s\": it most likely does not trust the llmcap CA (it ignores "
						"SSL_CERT_FILE, NODE_EXTRA_CA_CERTS, ...); its call was not made\n", rc->name, r);
			else
				lc_log(LC_LOG_INFO, "relay: TLS from the program for %s failed (%s)", rc->name, r ? r : "closed");
			goto out;
		}
	}
	for (;;) {
		struct lc_reqparse req;
		struct lc_decision d;
		struct lc_resp resp;
		bool cont_sent = false, go_on;
		size_t used = 0;
		int pr = LC_PARSE_MORE;

		lc_reqparse_init(&req);
		while (pr == LC_PARSE_MORE) {
			if (left.len) {
				pr = lc_reqparse_feed(&req, left.data, left.len, &used);
				lc_buf_consume(&left, used);
				continue;
			}
			if (req.expect_continue && !cont_sent) {
				cont_sent = true;
				side_write(&rc->c, "HTTP/1.1 100 Continue\r\n\r\n", 25);
			}
			n = side_read(&rc->c, buf, sizeof(buf));
			if (n < 0 && first && tls && !rc->said) {
				/* closed right after the handshake, without a request or a close_notify: what a
				 * client that verifies the certificate after the handshake (node) does when it
				 * does not trust it */
				fprintf(stderr, "llmcap: relay: the program dropped its TLS connection for provider %s right "
						"after the handshake, sending nothing: it most likely does not trust the llmcap "
						"CA (it ignores SSL_CERT_FILE, NODE_EXTRA_CA_CERTS, ...); its call was not made\n",
					rc->name);
				rc->said = true;
			}
			if (n > 0 && first)
				h2 = n >= 3 && memcmp(buf, "PRI", 3) == 0;    /* the HTTP/2 preface */
			first = false;
			if (n <= 0 || lc_buf_add(&left, buf, (size_t)n))
				break;
		}
		if (pr != LC_PARSE_DONE) {    /* closed, or nothing llmcap can read: nothing leaves */
			if (h2)
				fprintf(stderr, "llmcap: relay: a program spoke HTTP/2 to provider %s without ALPN "
						"(prior knowledge): refused, nothing sent (llmcap holds provider calls over "
						"HTTP/1.1)\n", rc->name);
			else if (pr != LC_PARSE_MORE || req.raw.len)
				lc_log(LC_LOG_INFO, "relay: a request to %s llmcap cannot read: connection closed unsent",
				       rc->name);
			lc_reqparse_free(&req);
			break;
		}
		memset(&d, 0, sizeof(d));    /* LC_PASS */
		if (!rc->per_request || per_request_provider(rc, &req))
			lc_admit_http(rc->p.host, rc->p.port, &req, &d);
		if (d.verdict == LC_DENY) {
			struct lc_buf s;

			lc_buf_init(&s, 1 << 20);
			if (lc_synth_response(d.format, d.status ? d.status : 429, d.message, d.limit, d.retry_after,
					      d.should_retry, &s) == 0)
				side_write(&rc->c, s.data, s.len);
			lc_buf_free(&s);
			lc_reqparse_free(&req);
			break;
		}
		if (!up_alive(rc)) {
			side_close(&rc->u);
			if (up_connect(rc, tls, why, sizeof(why))) {
				fprintf(stderr, "llmcap: relay: %s\n", why);
				if (d.ticket)
					lc_settle(d.ticket, NULL, 599);
				answer(rc, 502, "Bad Gateway", why);
				lc_reqparse_free(&req);
				break;
			}
		}
		lc_resp_init(&resp, !strcmp(req.method, "HEAD"));
		go_on = side_write(&rc->u, req.raw.data, req.raw.len) == 0;
		lc_reqparse_free(&req);
		if (go_on)
			go_on = relay_response(rc, &resp);
		else
			resp.status = 599;    /* the provider never got the whole request */
		if (d.ticket && lc_settle(d.ticket, &resp.usage, resp.status) != LC_OK)
			lc_log(LC_LOG_ERROR, "relay: settle failed");
		lc_resp_free(&resp);
		if (!go_on)
			break;
	}
out:
	lc_buf_free(&left);
	side_close(&rc->c);
	side_close(&rc->u);
	free(rc->tunnel);
	free(rc);
}

static void *serve_thread(void *arg)
{
	serve(arg);
	OPENSSL_thread_stop();    /* this thread's OpenSSL state (random generators), now */
	return NULL;
}

static int port_of(const struct sockaddr_storage *ss)
{
	return ss->ss_family == AF_INET ? ntohs(((const struct sockaddr_in *)ss)->sin_port)
					: ntohs(((const struct sockaddr_in6 *)ss)->sin6_port);
}

static void *accept_thread(void *arg)
{
	int lfd = (int)(intptr_t)arg;

	for (;;) {
		struct sockaddr_storage peer;
		socklen_t pl = sizeof(peer);
		int fd = accept4(lfd, (struct sockaddr *)&peer, &pl, SOCK_CLOEXEC), i, one = 1;
		struct rconn *rc = NULL;
		pthread_t t;
		pthread_attr_t at;

		if (fd < 0) {
			if (errno == EINTR || errno == ECONNABORTED || errno == EMFILE || errno == ENFILE)
				continue;
			return NULL;
		}
		pthread_mutex_lock(&pend_mu);
		for (i = 0; i < MAX_PENDING; i++)
			if (pend[i].lport && pend[i].lport == port_of(&peer)) {
				rc = calloc(1, sizeof(*rc));
				if (rc)
					rc->p = pend[i];
				pend[i].lport = 0;
				break;
			}
		pthread_mutex_unlock(&pend_mu);
		if (!rc) {    /* not a connection the supervisor made */
			close(fd);
			continue;
		}
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		rc->c.fd = fd;
		rc->u.fd = -1;
		snprintf(rc->name, sizeof(rc->name), "%s", rc->p.host);
		pthread_attr_init(&at);
		pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
		if (pthread_create(&t, &at, serve_thread, rc) != 0) {
			close(fd);
			free(rc);
		}
		pthread_attr_destroy(&at);
	}
}

int lc_relay_start(char *why, size_t wl)
{
	pthread_t t;
	int i, fds[2] = { lfd4, lfd6 };

	/* a program that closes mid-answer must not kill the supervisor (OpenSSL writes with write()):
	 * set here, after the fork, so the program keeps its own SIGPIPE disposition */
	signal(SIGPIPE, SIG_IGN);
	for (i = 0; i < 2; i++)
		if (fds[i] >= 0 && pthread_create(&t, NULL, accept_thread, (void *)(intptr_t)fds[i]) == 0)
			pthread_detach(t);
		else if (fds[i] >= 0) {
			snprintf(why, wl, "cannot start the relay: %s", strerror(errno));
			return -1;
		}
	return 0;
}

int lc_relay_hold(int sock, const struct sockaddr_storage *dst, socklen_t dlen, const char *entry, int port,
		  int mode, char *why, size_t wl)
{
	struct sockaddr_storage me;
	socklen_t ml = sizeof(me);
	int type = 0, i, slot = -1, lport, e;
	bool fresh = false;
	socklen_t tl = sizeof(type);
	const struct sockaddr *to;
	socklen_t tolen;
	char host[256], *colon;

	if (getsockopt(sock, SOL_SOCKET, SO_TYPE, &type, &tl) != 0 || type != SOCK_STREAM) {
		snprintf(why, wl, "not a stream socket");
		return mode == LC_RELAY_HOLD ? -1 : -2;
	}
	if (getsockname(sock, (struct sockaddr *)&me, &ml) != 0 || (me.ss_family != AF_INET && me.ss_family != AF_INET6)) {
		snprintf(why, wl, "not an internet socket");
		return -1;
	}
	if (me.ss_family == AF_INET6 && lfd6 >= 0) {
		to = (const struct sockaddr *)&addr6;
		tolen = sizeof(addr6);
	} else if (me.ss_family == AF_INET6) {
		static struct sockaddr_in6 mapped;

		mapped.sin6_family = AF_INET6;
		mapped.sin6_port = addr4.sin_port;
		mapped.sin6_addr.s6_addr[10] = mapped.sin6_addr.s6_addr[11] = 0xff;
		memcpy(mapped.sin6_addr.s6_addr + 12, &addr4.sin_addr, 4);
		to = (const struct sockaddr *)&mapped;
		tolen = sizeof(mapped);
	} else {
		to = (const struct sockaddr *)&addr4;
		tolen = sizeof(addr4);
	}
	lport = port_of(&me);
	pthread_mutex_lock(&pend_mu);
	for (i = 0; lport && i < MAX_PENDING; i++)
		if (pend[i].lport == lport)
			slot = i;    /* a second connect() on a socket already on its way */
	pthread_mutex_unlock(&pend_mu);
	if (slot < 0) {
		if (lport == 0) {    /* bind it to the loopback address the relay is reached from */
			struct sockaddr_storage b;

			memcpy(&b, to, tolen);
			if (b.ss_family == AF_INET)
				((struct sockaddr_in *)&b)->sin_port = 0;
			else
				((struct sockaddr_in6 *)&b)->sin6_port = 0;
			ml = sizeof(me);
			if (bind(sock, (struct sockaddr *)&b, tolen) != 0 ||
			    getsockname(sock, (struct sockaddr *)&me, &ml) != 0) {
				snprintf(why, wl, "cannot bind the socket to the loopback relay: %s", strerror(errno));
				return -1;
			}
			lport = port_of(&me);
		}
		snprintf(host, sizeof(host), "%s", entry ? entry : "");
		colon = strrchr(host, ':');
		if (host[0] == '[') {
			memmove(host, host + 1, strlen(host));
			host[strcspn(host, "]")] = 0;
		} else if (colon && strchr(host, ':') == colon) {
			*colon = 0;
		}
		pthread_mutex_lock(&pend_mu);
		for (i = 0; i < MAX_PENDING && slot < 0; i++)
			if (!pend[i].lport || lc_now() - pend[i].since > 60)
				slot = i;
		if (slot >= 0) {
			struct pending *p = &pend[slot];

			memset(p, 0, sizeof(*p));
			p->lport = lport;
			memcpy(&p->dst, dst, dlen < sizeof(p->dst) ? dlen : sizeof(p->dst));
			p->dlen = dlen < sizeof(p->dst) ? dlen : sizeof(p->dst);
			snprintf(p->host, sizeof(p->host), "%s", host);
			p->port = port;
			p->mode = mode;
			p->since = lc_now();
			fresh = true;
		}
		pthread_mutex_unlock(&pend_mu);
		if (slot < 0) {
			snprintf(why, wl, "too many connections on their way to the relay");
			return -1;
		}
	}
	if (connect(sock, to, tolen) == 0)
		return 0;
	e = errno;
	if (e == EINPROGRESS || e == EALREADY || e == EINTR)
		return e;
	if (e != EISCONN)
		snprintf(why, wl, "cannot connect the socket to the loopback relay: %s", strerror(e));
	pthread_mutex_lock(&pend_mu);
	if (fresh && pend[slot].lport == lport)
		pend[slot].lport = 0;
	pthread_mutex_unlock(&pend_mu);
	return e == EISCONN ? e : -1;
}
