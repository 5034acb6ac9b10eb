/* hook_curl.c - the libcurl API layer: a handle whose URL names a provider is held to
 * HTTP/1.1 (curl offers h2 by default; h2 would bypass the HTTP/1.1 reader). The request
 * itself is held at the OpenSSL / socket layer, so every getinfo and callback stays native.
 *
 * libcurl is resolved at run time (the shim never links it).
 */
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#define CURL_DISABLE_TYPECHECK 1
#include <curl/curl.h>
#undef curl_easy_setopt

#include "preload.h"

#define CURLLIB "libcurl"

static CURLcode (*r_curl_easy_setopt)(CURL *, CURLoption, ...);
static void (*r_curl_easy_cleanup)(CURL *);
static void (*r_curl_easy_reset)(CURL *);
static CURL *(*r_curl_easy_duphandle)(CURL *);
static CURLUcode (*r_curl_url_get)(const CURLU *, CURLUPart, char **, unsigned int);
static void (*r_curl_free)(void *);

/* handles whose URL is a provider: CURL* -> the app's own CURLOPT_HTTP_VERSION */
#define NH 256
struct hent {
	struct hent *next;
	CURL *h;
	long app_version;
};
static struct hent *hb[NH];
static pthread_mutex_t hmu = PTHREAD_MUTEX_INITIALIZER;

/* fork: 0 prepare, 1 parent, 2 child (called from shim.c's pthread_atfork handlers) */
void lc_curl_atfork(int phase);
void lc_curl_atfork(int phase)
{
	if (phase == 0)
		pthread_mutex_lock(&hmu);
	else if (phase == 1)
		pthread_mutex_unlock(&hmu);
	else
		pthread_mutex_init(&hmu, NULL);
}

static unsigned hslot(CURL *h)
{
	return (unsigned)(((uintptr_t)h >> 4) * 2654435761u) % NH;
}

/* found: *ver set, 1 */
static int hget(CURL *h, long *ver)
{
	struct hent *e;
	int r = 0;

	pthread_mutex_lock(&hmu);
	for (e = hb[hslot(h)]; e; e = e->next)
		if (e->h == h) {
			if (ver)
				*ver = e->app_version;
			r = 1;
			break;
		}
	pthread_mutex_unlock(&hmu);
	return r;
}

static void hset(CURL *h, int mark, long ver, bool set_ver)
{
	struct hent **pp, *e;
	unsigned s = hslot(h);

	pthread_mutex_lock(&hmu);
	for (pp = &hb[s]; (e = *pp); pp = &e->next)
		if (e->h == h)
			break;
	if (mark) {
		if (!e && (e = calloc(1, sizeof(*e)))) {
			e->h = h;
			e->next = hb[s];
			hb[s] = e;
		}
		if (e && set_ver)
			e->app_version = ver;
	} else if (e) {
		*pp = e->next;
		free(e);
	}
	pthread_mutex_unlock(&hmu);
}

static void on_url(CURL *h, const char *url)
{
	struct lc_target t;
	char host[256];
	int port = 0;
	bool tls = false;
	long appv = CURL_HTTP_VERSION_NONE;
	int was = hget(h, &appv);

	if (lc_cls_url(url, host, sizeof(host), &port, &tls) == 0 && lc_cls_lookup(host, port, &t) != 0) {
		if (!was)
			hset(h, 1, CURL_HTTP_VERSION_NONE, true);
		r_curl_easy_setopt(h, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
		/* the shim holds the request until its body is complete, so waiting for a
		 * "100 Continue" (curl's default for bodies over 1 MiB) would only add a second */
		r_curl_easy_setopt(h, CURLOPT_EXPECT_100_TIMEOUT_MS, 0L);
		lc_log(LC_LOG_DEBUG, "curl handle for provider %s:%d held to HTTP/1.1", host, port);
	} else if (was) {
		hset(h, 0, 0, false);
		r_curl_easy_setopt(h, CURLOPT_HTTP_VERSION, appv);
	}
}

LC_EXPORT CURLcode curl_easy_setopt(CURL *h, CURLoption opt, ...)
{
	va_list ap;
	CURLcode r;
	int saved;

	if (!LC_REAL(r_curl_easy_setopt, "curl_easy_setopt", CURLLIB, curl_easy_setopt))
		return CURLE_FAILED_INIT;
	va_start(ap, opt);
	if (opt < CURLOPTTYPE_OBJECTPOINT) {
		long v = va_arg(ap, long);

		if (opt == CURLOPT_HTTP_VERSION && !lc_pl_depth && h && hget(h, NULL)) {
			hset(h, 1, v, true);
			if (v != CURL_HTTP_VERSION_1_0)
				v = CURL_HTTP_VERSION_1_1;
		}
		r = r_curl_easy_setopt(h, opt, v);
	} else if (opt < CURLOPTTYPE_FUNCTIONPOINT) {
		void *p = va_arg(ap, void *);

		r = r_curl_easy_setopt(h, opt, p);
		if (r == CURLE_OK && !lc_pl_depth && h && p && (opt == CURLOPT_URL || opt == CURLOPT_CURLU)) {
			saved = errno;
			lc_pl_ensure();
			if (opt == CURLOPT_URL) {
				on_url(h, p);
			} else if (LC_REAL(r_curl_url_get, "curl_url_get", CURLLIB, NULL) &&
				   LC_REAL(r_curl_free, "curl_free", CURLLIB, NULL)) {
				char *u = NULL;

				if (r_curl_url_get(p, CURLUPART_URL, &u, 0) == CURLUE_OK && u) {
					on_url(h, u);
					r_curl_free(u);
				}
			}
			errno = saved;
		}
	} else if (opt < CURLOPTTYPE_OFF_T) {
		void (*f)(void) = va_arg(ap, void (*)(void));

		r = r_curl_easy_setopt(h, opt, f);
	} else if (opt < CURLOPTTYPE_BLOB) {
		curl_off_t v = va_arg(ap, curl_off_t);

		r = r_curl_easy_setopt(h, opt, v);
	} else {
		void *p = va_arg(ap, void *);

		r = r_curl_easy_setopt(h, opt, p);
	}
	va_end(ap);
	return r;
}

LC_EXPORT void curl_easy_cleanup(CURL *h)
{
	if (h && !lc_pl_depth)
		hset(h, 0, 0, false);
	if (LC_REAL(r_curl_easy_cleanup, "curl_easy_cleanup", CURLLIB, curl_easy_cleanup))
		r_curl_easy_cleanup(h);
}

LC_EXPORT void curl_easy_reset(CURL *h)
{
	if (h && !lc_pl_depth)
		hset(h, 0, 0, false);
	if (LC_REAL(r_curl_easy_reset, "curl_easy_reset", CURLLIB, curl_easy_reset))
		r_curl_easy_reset(h);
}

LC_EXPORT CURL *curl_easy_duphandle(CURL *h)
{
	CURL *d;
	long v = 0;

	if (!LC_REAL(r_curl_easy_duphandle, "curl_easy_duphandle", CURLLIB, curl_easy_duphandle))
		return NULL;
	d = r_curl_easy_duphandle(h);
	if (d && h && !lc_pl_depth && hget(h, &v))
		hset(d, 1, v, true);
	return d;
}
