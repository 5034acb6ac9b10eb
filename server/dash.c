/* dash.c - the web dashboard: its static files (built into the binary) and browser sessions.
 *
 * Signing in with the admin token gives an HttpOnly, SameSite=Strict session cookie and a CSRF
 * token for that session. The page's JavaScript calls the ordinary admin API with the cookie;
 * the router accepts a session in place of the bearer token, and for every change also wants
 * the session's CSRF token in X-LLMCAP-CSRF (a cross-site form can send neither). Sessions live
 * in memory: a restart signs everyone out.
 */
#include <pthread.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "dash.h"
#include "srv.h"
#include "util.h"

/* ---- the files, embedded at build time (Makefile: dash.o depends on server/dash/) ---- */
#define EMBED(sym, file)                                                                  \
	__asm__(".section .rodata\n.balign 16\n.type " #sym ", @object\n" #sym ":\n"     \
		".incbin \"" file "\"\n.byte 0\n.type " #sym "_end, @object\n" #sym "_end:\n" \
		".previous\n");                                                           \
	extern const char sym[] __attribute__((visibility("hidden")));                    \
	extern const char sym##_end[] __attribute__((visibility("hidden")))

EMBED(lc_dash_html, "server/dash/index.html");
EMBED(lc_dash_css, "server/dash/app.css");
EMBED(lc_dash_js, "server/dash/app.js");

static const struct asset {
	const char *path;
	const char *type;
	const char *data;
	const char *end;
} assets[] = {
	{"/", "text/html; charset=utf-8", lc_dash_html, lc_dash_html_end},
	{"/ui/app.css", "text/css; charset=utf-8", lc_dash_css, lc_dash_css_end},
	{"/ui/app.js", "text/javascript; charset=utf-8", lc_dash_js, lc_dash_js_end},
};

int srv_dash_asset(const char *path, struct srv_resp *rs)
{
	for (size_t i = 0; i < sizeof assets / sizeof assets[0]; i++) {
		if (strcmp(path, assets[i].path))
			continue;
		size_t n = (size_t)(assets[i].end - assets[i].data) - 1;   /* the trailing NUL */
		srv_resp_free(rs);
		rs->body = malloc(n + 1);
		if (!rs->body) {
			srv_resp_error(rs, 500, "api_error", "out of memory");
			return 0;
		}
		memcpy(rs->body, assets[i].data, n + 1);
		rs->body_len = n;
		rs->status = 200;
		rs->content_type = assets[i].type;
		return 0;
	}
	return -1;
}

/* ---- sessions ---- */

#define DASH_SESSIONS 64
#define DASH_SESSION_TTL_S (12 * 3600)   /* also the cookie's Max-Age */

struct session {
	unsigned char id_hash[32];   /* sha256 of the cookie value; zero: free slot */
	char csrf[65];
	int64_t expires;
};

static pthread_mutex_t sess_mu = PTHREAD_MUTEX_INITIALIZER;
static struct session sessions[DASH_SESSIONS];

/* the value of cookie `name` in a Cookie header, copied to out; 0 found */
static int cookie_get(const char *hdr, const char *name, char *out, size_t n)
{
	size_t nl = strlen(name);
	for (const char *p = hdr; p && *p;) {
		while (*p == ' ' || *p == ';')
			p++;
		const char *end = strchr(p, ';');
		size_t len = end ? (size_t)(end - p) : strlen(p);
		if (len > nl && strncmp(p, name, nl) == 0 && p[nl] == '=') {
			size_t vl = len - nl - 1;
			if (vl >= n)
				return -1;
			memcpy(out, p + nl + 1, vl);
			out[vl] = 0;
			return 0;
		}
		p = end;
	}
	return -1;
}

/* the live session of this Cookie header, or NULL (caller holds sess_mu) */
static struct session *session_of(const char *cookie_hdr, int64_t now)
{
	static const unsigned char zero[32];
	char v[128];
	unsigned char h[32];
	if (!cookie_hdr || cookie_get(cookie_hdr, DASH_COOKIE, v, sizeof v) != 0 || strlen(v) != 64)
		return NULL;
	lc_sha256(v, 64, h);
	for (int i = 0; i < DASH_SESSIONS; i++) {
		struct session *se = &sessions[i];
		if (sodium_memcmp(se->id_hash, zero, 32) == 0)
			continue;
		if (se->expires <= now) {
			memset(se, 0, sizeof *se);
			continue;
		}
		if (sodium_memcmp(se->id_hash, h, 32) == 0)
			return se;
	}
	return NULL;
}

int srv_dash_session_new(char cookie[65], char csrf[65])
{
	int64_t now = lc_now();
	unsigned char h[32];
	int slot = -1;
	srv_random_hex(cookie, 32);
	srv_random_hex(csrf, 32);
	lc_sha256(cookie, 64, h);
	pthread_mutex_lock(&sess_mu);
	for (int i = 0; i < DASH_SESSIONS; i++) {   /* a free or expired slot, else the oldest */
		if (sessions[i].expires <= now) {
			slot = i;
			break;
		}
		if (slot < 0 || sessions[i].expires < sessions[slot].expires)
			slot = i;
	}
	memcpy(sessions[slot].id_hash, h, 32);
	memcpy(sessions[slot].csrf, csrf, 65);
	sessions[slot].expires = now + DASH_SESSION_TTL_S;
	pthread_mutex_unlock(&sess_mu);
	return 0;
}

int srv_dash_session_check(const char *cookie_hdr, const char *csrf_hdr, bool write, char csrf_out[65])
{
	int rc = DASH_NO_SESSION;
	pthread_mutex_lock(&sess_mu);
	struct session *se = session_of(cookie_hdr, lc_now());
	if (se) {
		rc = 0;
		if (write && (!csrf_hdr || strlen(csrf_hdr) != 64 || sodium_memcmp(csrf_hdr, se->csrf, 64) != 0))
			rc = DASH_BAD_CSRF;
		if (csrf_out)
			memcpy(csrf_out, se->csrf, 65);
	}
	pthread_mutex_unlock(&sess_mu);
	return rc;
}

void srv_dash_session_end(const char *cookie_hdr)
{
	pthread_mutex_lock(&sess_mu);
	struct session *se = session_of(cookie_hdr, lc_now());
	if (se)
		memset(se, 0, sizeof *se);
	pthread_mutex_unlock(&sess_mu);
}

/* Origin, when the browser sends one, must be this server (Host) */
bool srv_dash_same_origin(const char *origin, const char *host)
{
	if (!origin)
		return true;
	const char *p = strstr(origin, "://");
	return host && p && strcmp(p + 3, host) == 0;
}

/* ---- route handlers ---- */

/* GET /, /ui/app.js, /ui/app.css (route data: the path) */
void srv_h_dash_file(struct srv_call *c)
{
	if (srv_dash_asset(c->route->data, c->rs) != 0)
		srv_resp_error(c->rs, 404, "not_found_error", "no such file");
}

static void session_answer(struct srv_call *c, const char *csrf)
{
	srv_resp_json(c->rs, 200, json_pack("{s:s}", "csrf", csrf));
}

/* GET /ui/session: the CSRF token of the caller's session (the page asks after a reload) */
void srv_h_dash_session_get(struct srv_call *c)
{
	char csrf[65];
	if (srv_dash_session_check(srv_req_header(c->rq, "Cookie"), NULL, false, csrf) != 0) {
		srv_resp_error(c->rs, 401, "authentication_error", "not signed in");
		return;
	}
	session_answer(c, csrf);
}

/* POST /ui/session {"token": ADMIN TOKEN}: a session cookie and its CSRF token */
void srv_h_dash_login(struct srv_call *c)
{
	json_t *tok = json_object_get(c->body, "token");
	char auth[600], cookie[65], csrf[65];
	if (!srv_dash_same_origin(srv_req_header(c->rq, "Origin"), srv_req_header(c->rq, "Host"))) {
		srv_resp_error(c->rs, 403, "permission_error", "sign in from this server's own page");
		return;
	}
	if (!json_is_string(tok) || json_string_length(tok) > 512) {
		srv_resp_error(c->rs, 400, "invalid_request_error", "token: required (the admin token)");
		return;
	}
	snprintf(auth, sizeof auth, "Bearer %s", json_string_value(tok));
	bool good = srv_admin_ok(c->s, auth);
	sodium_memzero(auth, sizeof auth);
	if (!good) {
		srv_resp_error(c->rs, 401, "authentication_error", "this is not the server's admin token");
		return;
	}
	srv_dash_session_new(cookie, csrf);
	snprintf(c->rs->set_cookie, sizeof c->rs->set_cookie,
		 DASH_COOKIE "=%s; Path=/; HttpOnly; SameSite=Strict; Max-Age=%d", cookie, DASH_SESSION_TTL_S);
	session_answer(c, csrf);
	lc_log(LC_LOG_INFO, "llmcap-server: dashboard sign-in from %s", c->rq->peer ? c->rq->peer : "?");
}

/* DELETE /ui/session: sign out (the CSRF token is required, as for every change) */
void srv_h_dash_logout(struct srv_call *c)
{
	const char *cookie = srv_req_header(c->rq, "Cookie");
	int rc = srv_dash_session_check(cookie, srv_req_header(c->rq, DASH_CSRF_HEADER), true, NULL);
	if (rc == DASH_NO_SESSION) {
		srv_resp_error(c->rs, 401, "authentication_error", "not signed in");
		return;
	}
	if (rc == DASH_BAD_CSRF) {
		srv_resp_error(c->rs, 403, "permission_error", "missing or wrong " DASH_CSRF_HEADER " header");
		return;
	}
	srv_dash_session_end(cookie);
	snprintf(c->rs->set_cookie, sizeof c->rs->set_cookie, DASH_COOKIE "=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0");
	srv_resp_json(c->rs, 200, json_pack("{s:b}", "signed_out", 1));
}

int srv_dash_auth(const struct srv_req *rq, bool write, struct srv_resp *rs)
{
	const char *cookie = srv_req_header(rq, "Cookie");
	if (!cookie || !strstr(cookie, DASH_COOKIE "="))
		return DASH_NO_SESSION;
	int rc = srv_dash_session_check(cookie, srv_req_header(rq, DASH_CSRF_HEADER), write, NULL);
	if (rc == 0 && write && !srv_dash_same_origin(srv_req_header(rq, "Origin"), srv_req_header(rq, "Host")))
		rc = DASH_BAD_CSRF;
	if (rc == DASH_BAD_CSRF)
		srv_resp_error(rs, 403, "permission_error",
			       "a change from the dashboard needs its session's " DASH_CSRF_HEADER " header and its own Origin");
	return rc;
}
