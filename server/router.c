/* router.c - one table of (method, path pattern, handler): srv_routes in
 * routes.c. The router matches the request line, checks the caller's token
 * and the body's size before anything is buffered (the glue calls
 * srv_route_match and srv_route_auth on the request head), parses a JSON body
 * when the route wants one, and hands the handler a srv_call.
 */
#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "dash.h"
#include "jscan.h"
#include "srv.h"
#include "util.h"

#define SEG_MAX 8
#define PARAM_MAX 128

static bool ctl(unsigned char c) { return c < 0x20 || c == 0x7f; }

size_t srv_unescape(char *s)
{
	char *w = s;
	for (const char *r = s; *r;) {
		int hi, lo;
		if (r[0] == '%' && (hi = lc_hexval((unsigned char)r[1])) >= 0 && (lo = lc_hexval((unsigned char)r[2])) >= 0 &&
		    !ctl((unsigned char)(hi << 4 | lo))) {
			*w++ = (char)(hi << 4 | lo);
			r += 3;
		} else {
			*w++ = *r++;   /* kept as written: "%00" stays three characters */
		}
	}
	*w = 0;
	return (size_t)(w - s);
}

const char *srv_req_arg(const struct srv_req *rq, const char *name)
{
	for (const char *const *a = rq->args; a && a[0]; a += 2)
		if (strcmp(a[0], name) == 0)
			return a[1] ? a[1] : "";
	return NULL;
}

const char *srv_req_header(const struct srv_req *rq, const char *name)
{
	if (strcasecmp(name, "Authorization") == 0)
		return rq->authorization;
	if (strcasecmp(name, "If-None-Match") == 0)
		return rq->if_none_match;
	return rq->header ? rq->header(rq->hcls, name) : NULL;
}

/* split path into segments (empty ones skipped) in buf */
static int split(const char *path, char *buf, size_t buflen, char **seg)
{
	int n = 0;
	if (strlen(path) >= buflen)
		return -1;
	snprintf(buf, buflen, "%s", path);
	for (char *save = NULL, *t = strtok_r(buf, "/", &save); t; t = strtok_r(NULL, "/", &save)) {
		if (n == SEG_MAX)
			return -1;
		seg[n++] = t;
	}
	return n;
}

/* does pattern match the segments? captures go to param */
static bool pattern_match(const char *pattern, char **seg, int n, const char **param)
{
	char pbuf[256], *pseg[SEG_MAX];
	int pn = split(pattern, pbuf, sizeof pbuf, pseg), np = 0;
	if (pn != n)
		return false;
	for (int i = 0; i < n; i++) {
		if (pseg[i][0] == '{') {
			if (np < SRV_MAX_PARAMS)
				param[np++] = seg[i];
		} else if (strcmp(pseg[i], seg[i]) != 0) {
			return false;
		}
	}
	return true;
}

static bool method_is(const struct srv_route *r, const char *method)
{
	return strcmp(r->method, method) == 0 || (strcmp(r->method, "GET") == 0 && strcmp(method, "HEAD") == 0);
}

int srv_route_match(const char *method, const char *path, struct srv_match *m, struct srv_resp *rs)
{
	char *seg[SEG_MAX];
	char allow[64] = "";
	int n;

	memset(rs, 0, sizeof *rs);
	memset(m, 0, sizeof *m);
	for (const char *p = path; *p; p++)
		if (ctl((unsigned char)*p) || *p == '%') {
			srv_resp_error(rs, 400, "invalid_request_error",
				       "path: control characters and undecodable escapes are refused");
			return -1;
		}
	if ((n = split(path, m->buf, sizeof m->buf, seg)) < 0) {
		srv_resp_error(rs, 404, "not_found_error", "no such endpoint");
		return -1;
	}
	for (const struct srv_route *r = srv_routes; r->method; r++) {
		const char *param[SRV_MAX_PARAMS] = {0};
		if (!pattern_match(r->pattern, seg, n, param))
			continue;
		if (method_is(r, method)) {
			m->route = r;
			memcpy(m->param, param, sizeof param);
			return 0;
		}
		if (!strstr(allow, r->method))
			snprintf(allow + strlen(allow), sizeof allow - strlen(allow), "%s%s", allow[0] ? ", " : "", r->method);
	}
	if (allow[0]) {
		srv_resp_error(rs, 405, "method_not_allowed", "method not allowed here; allowed: %s", allow);
		snprintf(rs->allow, sizeof rs->allow, "%s", allow);
	} else {
		srv_resp_error(rs, 404, "not_found_error", "no such endpoint: %s", path);
	}
	return -1;
}

bool srv_route_auth(struct srv *s, struct srv_match *m, const struct srv_req *rq, struct srv_resp *rs)
{
	const struct srv_route *r = m->route;
	m->host[0] = 0;
	switch (r->auth) {
	case SRV_AUTH_NONE:
		return true;
	case SRV_AUTH_HOST:
		if (srv_host_auth(s, rq->authorization, m->host, rs))
			return true;
		break;
	case SRV_AUTH_READ:
	case SRV_AUTH_ADMIN: {
		const struct srv_token *t = srv_token_of(s, rq->authorization);
		if (t && (r->auth == SRV_AUTH_READ || t->role == SRV_ROLE_ADMIN))
			return true;
		if (t) {
			srv_resp_error(rs, 403, "permission_error", "token '%s' may only read (role read)", t->name);
			return false;
		}
		/* the dashboard's session cookie (a change also needs its CSRF token) */
		switch (srv_dash_auth(rq, strcmp(r->method, "GET") != 0, rs)) {
		case 0:
			return true;
		case DASH_BAD_CSRF:
			return false;   /* rs holds the 403 */
		}
		srv_resp_error(rs, 401, "authentication_error",
			       "admin token required: Authorization: Bearer <token from --admin-token-file>");
		break;
	}
	}
	rs->www_auth = true;
	return false;
}

/* the route's captures are well-formed; names the bad one in rs */
static bool params_ok(const struct srv_match *m, struct srv_resp *rs, const char **id)
{
	char pbuf[256], *pseg[SEG_MAX];
	int pn = split(m->route->pattern, pbuf, sizeof pbuf, pseg), np = 0;
	*id = NULL;
	for (int i = 0; i < pn && np < SRV_MAX_PARAMS; i++) {
		if (pseg[i][0] != '{')
			continue;
		const char *v = m->param[np++];
		if (strcmp(pseg[i], "{id}") == 0) {
			if (!srv_id_ok(v)) {
				srv_resp_error(rs, 400, "invalid_request_error",
					       "id '%.80s': must be 1-%d characters of A-Z a-z 0-9 . _ - @ : "
					       "(the policy's limit for names)", v, SRV_ID_MAX);
				return false;
			}
			*id = v;
			continue;
		}
		size_t len = strlen(v);
		bool good = len > 0 && len <= PARAM_MAX;
		for (size_t j = 0; good && j < len; j++)
			good = isalnum((unsigned char)v[j]) || v[j] == '.' || v[j] == '_' || v[j] == '-';
		if (!good) {
			srv_resp_error(rs, 404, "not_found_error", "no such %.*s", (int)strlen(pseg[i]) - 2, pseg[i] + 1);
			return false;
		}
	}
	return true;
}

static json_t *parse_body(const struct srv_req *rq, struct srv_resp *rs)
{
	json_error_t je;
	json_t *j;
	if (!rq->body || rq->body_len == 0) {
		srv_resp_error(rs, 400, "invalid_request_error", "request body required (JSON object)");
		return NULL;
	}
	j = json_loadb(rq->body, rq->body_len, JSON_REJECT_DUPLICATES, &je);
	if (!j) {
		srv_resp_error(rs, 400, "invalid_request_error", "malformed JSON: %s (line %d, column %d)", je.text,
			       je.line, je.column);
		return NULL;
	}
	if (!json_is_object(j)) {
		json_decref(j);
		srv_resp_error(rs, 400, "invalid_request_error", "body must be a JSON object");
		return NULL;
	}
	return j;
}

void srv_route_run(struct srv *s, const struct srv_match *m, const struct srv_req *rq, struct srv_resp *rs)
{
	const struct srv_route *r = m->route;
	struct srv_call c = {.s = s, .rq = rq, .rs = rs, .route = r, .param = m->param,
			     .host = m->host[0] ? m->host : NULL};

	memset(rs, 0, sizeof *rs);
	if (!params_ok(m, rs, &c.id))
		return;
	if (rq->body_len > r->body_max) {
		srv_resp_error(rs, 413, "payload_too_large", "request body over %zu bytes", r->body_max);
		return;
	}
	if (r->json && !(c.body = parse_body(rq, rs)))
		return;
	c.token = r->auth >= SRV_AUTH_READ ? srv_token_of(s, rq->authorization) : NULL;
	json_t *before = r->auth == SRV_AUTH_ADMIN ? srv_audit_before(s, &c) : NULL;
	r->fn(&c);
	json_decref(c.body);
	if (rs->status == 0 && rs->retry_at_ms == 0)
		srv_resp_error(rs, 500, "api_error", "internal error: no answer");
	if (r->auth == SRV_AUTH_ADMIN && rs->status >= 200 && rs->status < 300) {
		srv_audit_record(s, &c, before);
		srv_notifier_kick(s);   /* webhooks or limits may have changed */
	} else {
		json_decref(before);
	}
}

void srv_handle(struct srv *s, const struct srv_req *rq, struct srv_resp *rs)
{
	struct srv_match *m = malloc(sizeof *m);
	if (!m) {
		memset(rs, 0, sizeof *rs);
		srv_resp_error(rs, 500, "api_error", "out of memory");
		return;
	}
	if (srv_route_match(rq->method, rq->path, m, rs) == 0 && srv_route_auth(s, m, rq, rs))
		srv_route_run(s, m, rq, rs);
	free(m);
}
