/* server.c - fuzz target: llmcap-server's request handler without a socket
 * (srv_handle: the router's match, token check and body limits, then every
 * handler) on a real LMDB store in a temp directory, opened once, with a
 * signing key and an admin token, as unit tests drive it (emptied every
 * RESET_EVERY inputs).
 *
 * Input: one request, in the shape the HTTP glue hands over:
 *   METHOD SP TARGET LF          TARGET = path, "?" and query ("a=1&b=%20")
 *   (Name: value LF)*            Authorization and If-None-Match, or any other header
 *   LF
 *   body
 * The path and the query are %-decoded as the glue's unescape callback does.
 * The admin token is FUZZ_TOKEN (the seeds carry it); the store keeps what one
 * input changed for the next, so sequences of changes are explored too.
 * FUZZ_DEBUG=1 in the environment prints each answer (to check what the seeds reach).
 */
#include <ftw.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "fuzz.h"
#include "sign.h"
#include "srv.h"

#define FUZZ_TOKEN "fuzz-admin-token-0123456789abcdef"
#define MAX_ARGS 16
#define MAX_HEADERS 16

static struct srv srv;
static char dir[64];

static int rm_cb(const char *p, const struct stat *st, int flag, struct FTW *f)
{
	(void)st;
	(void)flag;
	(void)f;
	return remove(p);
}

static void cleanup(void)
{
	srv_store_close(&srv);
	if (dir[0])
		nftw(dir, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
}

/* a fresh store in DIR/data with an initial policy; 0, or -1 with err */
static int store_open(char *err, size_t errlen)
{
	char path[128];
	snprintf(path, sizeof path, "%s/data", dir);
	if (srv_store_open(&srv, path, err, errlen) != 0)
		return -1;
	if (srv_policy_maintain(&srv) != 0) {
		snprintf(err, errlen, "srv_policy_maintain failed");
		return -1;
	}
	return 0;
}

/* Every RESET_EVERY inputs the store starts again empty: what the inputs pile up (keys, audit
 * records, usage totals) would otherwise slow every later change, the policy being rebuilt and
 * signed whole each time. */
#define RESET_EVERY 2000

static void store_reset(void)
{
	char err[256], path[128];
	srv_store_close(&srv);
	snprintf(path, sizeof path, "%s/data", dir);
	nftw(path, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
	if (store_open(err, sizeof err) != 0) {
		fprintf(stderr, "fuzz server: %s\n", err);
		abort();
	}
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	char err[256], path[128];
	(void)argc;
	(void)argv;
	if (sodium_init() < 0)
		abort();
	snprintf(dir, sizeof dir, "%s/llmcap-fuzz.XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
	if (!mkdtemp(dir))
		abort();
	snprintf(path, sizeof path, "%s/keys", dir);
	if (lc_keygen(path, err, sizeof err) != 0)
		goto fail;
	snprintf(path, sizeof path, "%s/keys/llmcap.key", dir);
	if (lc_signkey_load(path, &srv.key, err, sizeof err) != 0)
		goto fail;
	if (srv_set_admin_token(&srv, FUZZ_TOKEN, strlen(FUZZ_TOKEN)) != 0)
		goto fail;
	if (store_open(err, sizeof err) != 0)
		goto fail;
	atexit(cleanup);
	return 0;
fail:
	fprintf(stderr, "fuzz server: %s\n", err);
	abort();
}

struct req {
	char *hname[MAX_HEADERS], *hval[MAX_HEADERS];
	int nh;
};

static const char *header_of(void *hcls, const char *name)
{
	struct req *r = hcls;
	for (int i = 0; i < r->nh; i++)
		if (strcasecmp(r->hname[i], name) == 0)
			return r->hval[i];
	return NULL;
}

/* next line of [*p, end) without its LF, NUL-terminated in place (the copy is ours); NULL at the
 * end or when the line holds a NUL (the HTTP layer never hands one over) */
static char *line(char **p, char *end)
{
	char *s = *p, *lf;
	if (s >= end)
		return NULL;
	lf = memchr(s, '\n', (size_t)(end - s));
	if (!lf)
		return NULL;
	*lf = 0;
	*p = lf + 1;
	return strlen(s) == (size_t)(lf - s) ? s : NULL;
}

int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n)
{
	char *buf = malloc(n + 1), *p = buf, *end = buf + n, *l, *sp, *q;
	const char *args[2 * MAX_ARGS + 1];
	const char *auth = NULL, *inm = NULL;
	struct req r = {.nh = 0};
	struct srv_resp rs;
	int na = 0;

	static unsigned runs;
	if (++runs % RESET_EVERY == 0)
		store_reset();
	if (!buf)
		return 0;
	memcpy(buf, d, n);
	buf[n] = 0;
	if (!(l = line(&p, end)) || !(sp = strchr(l, ' '))) {
		free(buf);
		return 0;   /* no request line */
	}
	*sp = 0;
	char *target = sp + 1;
	if ((q = strchr(target, '?'))) {
		*q++ = 0;
		for (char *save = NULL, *a = strtok_r(q, "&", &save); a && na < MAX_ARGS; a = strtok_r(NULL, "&", &save)) {
			char *eq = strchr(a, '=');
			if (eq)
				*eq++ = 0;
			srv_unescape(a);
			if (eq)
				srv_unescape(eq);
			args[2 * na] = a;
			args[2 * na + 1] = eq ? eq : "";
			na++;
		}
	}
	args[2 * na] = NULL;
	srv_unescape(target);
	while ((l = line(&p, end)) && *l) {
		char *colon = strchr(l, ':');
		if (!colon)
			continue;
		*colon++ = 0;
		colon += strspn(colon, " \t");
		if (strcasecmp(l, "Authorization") == 0)
			auth = colon;
		else if (strcasecmp(l, "If-None-Match") == 0)
			inm = colon;
		else if (r.nh < MAX_HEADERS) {
			r.hname[r.nh] = l;
			r.hval[r.nh++] = colon;
		}
	}

	struct srv_req rq = {
		.method = buf,
		.path = target,
		.authorization = auth,
		.if_none_match = inm,
		.body = p < end ? p : NULL,
		.body_len = p < end ? (size_t)(end - p) : 0,
		.args = args,
		.header = header_of,
		.hcls = &r,
		.peer = "127.0.0.1",
	};
	srv_handle(&srv, &rq, &rs);
	if (getenv("FUZZ_DEBUG"))   /* to check what the seeds reach */
		fprintf(stderr, "%s %s -> %d %.*s\n", rq.method, rq.path, rs.status,
			(int)(rs.body_len < 200 ? rs.body_len : 200), rs.body ? rs.body : "");
	FUZZ_CHECK((rs.status >= 100 && rs.status <= 599) || (rs.status == 0 && rs.retry_at_ms > 0));
	FUZZ_CHECK(rs.body || rs.body_len == 0);
	FUZZ_CHECK(memchr(rs.etag, 0, sizeof rs.etag) && memchr(rs.allow, 0, sizeof rs.allow));
	srv_resp_free(&rs);
	free(buf);
	return 0;
}
