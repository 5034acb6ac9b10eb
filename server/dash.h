/* dash.h - the web dashboard's files and browser sessions (dash.c). */
#ifndef LC_SRV_DASH_H
#define LC_SRV_DASH_H

#include <stdbool.h>

struct srv_resp;
struct srv_req;
struct srv_call;

#define DASH_COOKIE "llmcap_session"
#define DASH_CSRF_HEADER "X-LLMCAP-CSRF"
enum { DASH_NO_SESSION = -1, DASH_BAD_CSRF = -2 };
/* the page's Content-Security-Policy: the server's own files only (inline style attributes are
 * used for the bars' widths), no framing, forms and fetches to this origin only */
#define SRV_DASH_CSP                                                                                 \
	"default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "             \
	"frame-ancestors 'none'; base-uri 'none'; form-action 'self'"

/* GET of a dashboard file ("/", "/ui/app.js", "/ui/app.css"): 0 and rs filled, -1 no such file */
int srv_dash_asset(const char *path, struct srv_resp *rs);
/* a new session: cookie value and CSRF token (64 hex each) */
int srv_dash_session_new(char cookie[65], char csrf[65]);
/* 0: the Cookie header holds a live session (and, when write, csrf_hdr is its CSRF token);
 * DASH_NO_SESSION or DASH_BAD_CSRF. csrf_out (may be NULL) gets the session's token. */
int srv_dash_session_check(const char *cookie_hdr, const char *csrf_hdr, bool write, char csrf_out[65]);
void srv_dash_session_end(const char *cookie_hdr);
/* true when there is no Origin header or it names this Host */
bool srv_dash_same_origin(const char *origin, const char *host);

/* A request with the dashboard's session cookie in place of a bearer token: 0 allowed;
 * DASH_NO_SESSION (no or unknown session: the caller answers 401); DASH_BAD_CSRF (a change
 * without the session's CSRF token or from another Origin: rs holds the 403). */
int srv_dash_auth(const struct srv_req *rq, bool write, struct srv_resp *rs);

/* route handlers */
void srv_h_dash_file(struct srv_call *c);          /* data: the file's path */
void srv_h_dash_session_get(struct srv_call *c);
void srv_h_dash_login(struct srv_call *c);
void srv_h_dash_logout(struct srv_call *c);

#endif
