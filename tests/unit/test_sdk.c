/* test_sdk.c - the public SDK (sdk/llmcap.c) at its edges: response sniffing never reads past the
 * caller's buffer, llmcap_curl_post leaves no pointer into its own stack frame on the caller's
 * handle, and running out of memory is an LLMCAP_E_NOMEM, never an empty or 400 DENY.
 *
 * Out of memory is real allocation failure: this binary is linked with -Wl,--wrap=malloc (calloc,
 * realloc), so every allocation llmcap's own code makes goes through fail_next() below; jansson's
 * go through it by json_set_alloc_funcs. No hook in the library itself. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <curl/curl.h>
#include <errno.h>
#include <jansson.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "engine.h"
#include "llmcap.h"
#include "sign.h"
#include "util.h"
#include "wire.h"
#include "state_fixture.h"

/* ---- allocation failure ------------------------------------------------------- */
void *__real_malloc(size_t n);
void *__real_calloc(size_t a, size_t b);
void *__real_realloc(void *p, size_t n);

static long fail_from = -1;  /* -1: never; else the fail_from-th allocation fails, */
static bool fail_once;       /* and every one after it unless fail_once */
static long nalloc, nfailed;

static int fail_next(void)
{
	long i = nalloc++;

	if (fail_from < 0 || i < fail_from || (fail_once && i > fail_from))
		return 0;
	nfailed++;
	errno = ENOMEM;
	return 1;
}

void *__wrap_malloc(size_t n)
{
	return fail_next() ? NULL : __real_malloc(n);
}

void *__wrap_calloc(size_t a, size_t b)
{
	return fail_next() ? NULL : __real_calloc(a, b);
}

void *__wrap_realloc(void *p, size_t n)
{
	return fail_next() ? NULL : __real_realloc(p, n);
}

static bool json_fail;  /* every jansson allocation fails (ours do not) */

static void *json_alloc(size_t n)
{
	if (json_fail) {
		errno = ENOMEM;
		return NULL;
	}
	return __wrap_malloc(n);
}

/* ---- fixtures ------------------------------------------------------------------- */
static char tmpdir[256];
static struct lc_signkey skey;
static struct lc_trust trust;
static llmcap *lc;
static pid_t server_pid;
static int server_port;

static const char *fp(const char *key)
{
	static char hex[65];
	unsigned char d[32];

	lc_sha256(key, strlen(key), d);
	lc_hex(d, 32, hex);
	return hex;
}

/* a policy: key "k-deny" may make no request at all; key "k-ok" a thousand a day */
static void install_policy(void)
{
	char doc[4096], err[512], *env = NULL;
	size_t envlen;
	static bool done;

	if (done)
		return;
	done = true;
	snprintf(doc, sizeof(doc),
		 "{\"schema\":1,\"version\":1,\"issued_at\":\"2026-01-01T00:00:00Z\","
		 "\"expires_at\":\"2099-01-01T00:00:00Z\","
		 "\"providers\":[{\"name\":\"openai\",\"format\":\"openai\",\"hosts\":[\"api.openai.com\"]}],"
		 "\"prices\":{\"m\":{\"input\":1,\"cached_input\":0.5,\"output\":2,\"max_output_tokens\":1000}},"
		 "\"keys\":{\"deny\":{\"sha256\":\"%s\",\"limits\":[{\"metric\":\"requests\",\"window\":\"daily\","
		 "\"threshold\":0}]}}}",
		 fp("k-deny"));
	assert_int_equal(lc_dsse_sign(&skey, doc, strlen(doc), &env, &envlen, err, sizeof(err)), 0);
	if (lc_apply_envelope(&trust, env, envlen, NULL, err, sizeof(err)))
		fail_msg("apply: %s", err);
	free(env);
}

/* A loopback HTTP/1.1 server in a child process: answers every request with a small JSON body. */
static void serve(int ls)
{
	for (;;) {
		char buf[65536];
		size_t got = 0;
		int c = accept(ls, NULL, NULL);

		if (c < 0)
			continue;
		for (;;) {
			ssize_t r = read(c, buf + got, sizeof(buf) - 1 - got);
			char *eoh, *cl;

			if (r <= 0)
				break;
			got += (size_t)r;
			buf[got] = '\0';
			eoh = strstr(buf, "\r\n\r\n");
			if (!eoh)
				continue;
			cl = strcasestr(buf, "content-length:");
			if (cl && cl < eoh && (size_t)(eoh + 4 - buf) + strtoul(cl + 15, NULL, 10) > got)
				continue;
			static const char resp[] = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
						   "Content-Length: 11\r\nConnection: close\r\n\r\n{\"ok\":true}";
			if (write(c, resp, sizeof(resp) - 1) < 0)
				break;
			break;
		}
		close(c);
	}
}

static int setup(void **st)
{
	char sd[300];
	struct sockaddr_in a = {.sin_family = AF_INET};
	socklen_t alen = sizeof(a);
	int ls;

	setenv("LLMCAP_LOG", "off", 1);
	if (lc_fixture_setup("sdk", tmpdir, sizeof(tmpdir), &skey, &trust))
		return -1;
	snprintf(sd, sizeof(sd), "%s/state", tmpdir);
	json_set_alloc_funcs(json_alloc, free);
	curl_global_init(CURL_GLOBAL_DEFAULT);

	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	ls = socket(AF_INET, SOCK_STREAM, 0);
	if (ls < 0 || bind(ls, (struct sockaddr *)&a, sizeof(a)) || listen(ls, 16) ||
	    getsockname(ls, (struct sockaddr *)&a, &alen))
		return -1;
	server_port = ntohs(a.sin_port);
	server_pid = fork();
	if (server_pid == 0) {
		serve(ls);
		_exit(0);
	}
	close(ls);
	return llmcap_open(&lc, sd) == LLMCAP_OK ? 0 : -1;
}

static int teardown(void **st)
{
	llmcap_close(lc);
	if (server_pid > 0) {
		kill(server_pid, SIGKILL);
		waitpid(server_pid, NULL, 0);
	}
	curl_global_cleanup();
	return lc_fixture_teardown(tmpdir);
}

/* ---- tests ------------------------------------------------------------------------ */

/* A 5-byte body "event" with no content type: sniffing for "event:" must not read a sixth byte.
 * The body ends right at a page that cannot be read, so an over-read is a SIGSEGV with or without
 * AddressSanitizer. */
static void test_sniff_stays_inside_the_body(void **st)
{
	long pg = sysconf(_SC_PAGESIZE);
	char *map = mmap(NULL, (size_t)pg * 2, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	llmcap_call *call = NULL;
	char *body;

	assert_true(map != MAP_FAILED);
	assert_int_equal(mprotect(map + pg, (size_t)pg, PROT_NONE), 0);
	body = map + pg - 5;
	memcpy(body, "event", 5);
	assert_int_equal(llmcap_admit(lc, "http://example.com/v1/chat/completions", NULL, "{}", 2, &call), LLMCAP_OK);
	assert_int_equal(llmcap_call_verdict(call), LLMCAP_PASS);
	/* a PASS call is not settled (E_STATE), but the body is sniffed first */
	assert_int_equal(llmcap_settle_response(call, 200, NULL, body, 5), LLMCAP_E_STATE);
	body = map + pg - 4;
	memcpy(body, "data", 4);
	assert_int_equal(llmcap_settle_response(call, 200, NULL, body, 4), LLMCAP_E_STATE);
	llmcap_call_free(call);
	munmap(map, (size_t)pg * 2);
}

static void *seen_write_ud, *seen_header_ud;
static int nwrites, nheaders;

static size_t my_write(char *p, size_t sz, size_t n, void *ud)
{
	seen_write_ud = ud;
	nwrites++;
	return sz * n;
}

static size_t my_header(char *p, size_t sz, size_t n, void *ud)
{
	seen_header_ud = ud;
	nheaders++;
	return sz * n;
}

/* After llmcap_curl_post the caller's handle carries no pointer into the call's dead stack frame:
 * a caller that sets only its callbacks (as libcurl allows) gets libcurl's default data pointers
 * (stdout for the body, NULL for headers), not the SDK's sink. */
static void test_curl_post_leaves_no_dangling_pointers(void **st)
{
	char url[128], *resp = NULL;
	size_t len = 0;
	long status = 0;
	llmcap_verdict v;
	CURL *h = curl_easy_init();

	assert_non_null(h);
	snprintf(url, sizeof(url), "http://127.0.0.1:%d/v1/chat/completions", server_port);
	assert_int_equal(llmcap_curl_post(lc, h, url, NULL, "{\"model\":\"m\"}", 13, &status, &resp, &len, &v),
			 LLMCAP_OK);
	assert_int_equal(v, LLMCAP_PASS);
	assert_int_equal(status, 200);
	assert_int_equal(len, 11);
	assert_string_equal(resp, "{\"ok\":true}");
	llmcap_free(resp);

	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, my_write);
	curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, my_header);
	assert_int_equal(curl_easy_perform(h), CURLE_OK);
	assert_true(nwrites > 0 && nheaders > 0);
	assert_ptr_equal(seen_write_ud, stdout);
	assert_null(seen_header_ud);
	curl_easy_cleanup(h);
}

/* Every allocation failure while admitting a request the policy refuses, alone or with every
 * allocation after it failing too: the answer is either LLMCAP_E_NOMEM or the real DENY (429,
 * with its body and response). Never an empty DENY, never a 400 "cannot read this request" for a
 * request nobody could read. */
static void oom_sweep(bool once)
{
	static const char body[] = "{\"model\":\"m\",\"max_tokens\":10,\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}";
	const char *const hdrs[] = {"Authorization: Bearer k-deny", "Content-Type: application/json", NULL};
	const char *url = "https://api.openai.com/v1/chat/completions";
	llmcap_call *call = NULL;
	int nomem = 0, denied = 0;

	install_policy();
	/* open the store and warm the caches first */
	assert_int_equal(llmcap_admit(lc, url, hdrs, body, sizeof(body) - 1, &call), LLMCAP_OK);
	assert_int_equal(llmcap_call_status(call), 429);
	llmcap_call_free(call);

	for (long n = 0; n < 100000; n++) {
		llmcap_err e;

		call = NULL;
		nalloc = nfailed = 0;
		fail_once = once;
		fail_from = n;
		e = llmcap_admit(lc, url, hdrs, body, sizeof(body) - 1, &call);
		fail_from = -1;
		if (e == LLMCAP_E_NOMEM) {
			assert_null(call);
			nomem++;
		} else {
			size_t blen = 0, rlen = 0;

			assert_int_equal(e, LLMCAP_OK);
			if (llmcap_call_status(call) != 429)
				fail_msg("allocation %ld failing: status %d, %s", n, llmcap_call_status(call),
					 llmcap_call_message(call));
			assert_int_equal(llmcap_call_verdict(call), LLMCAP_DENY);
			llmcap_call_body(call, &blen);
			llmcap_call_response(call, &rlen);
			assert_true(blen > 0 && rlen > blen);
			denied++;
		}
		llmcap_call_free(call);
		if (nfailed == 0)
			break;  /* the whole admit ran without hitting the failure: every point was tried */
	}
	assert_true(nomem > 0);
	assert_true(denied > 0);
	print_message("%s: %d allocation points fail with LLMCAP_E_NOMEM\n", once ? "one failure" : "failures from",
		      nomem);
}

/* The engine itself: a request body jansson had no memory to read is ENOMEM with a 503 worth
 * retrying, for the preload as for the SDK; never the 400 a body that is not JSON earns. */
static void test_engine_oom_reading_body_is_not_a_400(void **st)
{
	static const char raw[] = "POST /v1/chat/completions HTTP/1.1\r\nHost: api.openai.com\r\n"
				  "Authorization: Bearer k-deny\r\nContent-Length: 13\r\n\r\n{\"model\":\"m\"}";
	struct lc_reqparse rp;
	struct lc_reqinfo ri;
	struct lc_decision d;
	char err[256];
	size_t used;

	install_policy();
	lc_reqparse_init(&rp);
	assert_int_equal(lc_reqparse_feed(&rp, raw, sizeof(raw) - 1, &used), LC_PARSE_DONE);
	json_fail = true;
	assert_int_equal(lc_reqinfo_parse(LC_FMT_OPENAI, rp.path, rp.body.data, rp.body.len, NULL, NULL, NULL, &ri,
					  err, sizeof(err)), ENOMEM);
	assert_int_equal(lc_admit_http("api.openai.com", 443, &rp, &d), ENOMEM);
	json_fail = false;
	assert_int_equal(d.verdict, LC_DENY);
	assert_int_equal(d.status, 503);
	assert_true(d.should_retry);
	assert_non_null(strstr(d.message, "out of memory"));
	/* with memory, the same request is read and refused by the policy */
	assert_int_equal(lc_admit_http("api.openai.com", 443, &rp, &d), LC_OK);
	assert_int_equal(d.status, 429);
	lc_reqparse_free(&rp);
}

static void test_out_of_memory_is_an_error(void **st)
{
	oom_sweep(false);
	oom_sweep(true);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_sniff_stays_inside_the_body),
		cmocka_unit_test(test_curl_post_leaves_no_dangling_pointers),
		cmocka_unit_test(test_engine_oom_reading_body_is_not_a_400),
		cmocka_unit_test(test_out_of_memory_is_an_error),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
