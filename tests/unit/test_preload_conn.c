/* test_preload_conn.c - the preload's logic modules without LD_PRELOAD: classify.c (Host
 * header, URL, h2 preface, ClientHello, priced paths, provider lookup and fail modes), table.c
 * (reference counts, fd states, client_random ring) and conn.c (a request buffered across
 * writes, decided once, flushed byte for byte; response usage settled, keep-alive; the denied
 * path; h2 and pipelining refused; settle at close).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <sched.h>
#include <sys/wait.h>
#include <unistd.h>

#include "engine.h"
#include "conn_impl.h"
#include "preload.h"
#include "sign.h"
#include "util.h"
#include "state_fixture.h"

static char tmpdir[256];
static struct lc_signkey skey;
static struct lc_trust trust;
static int64_t version;

#define KEY "sk-unit-key"

static void install(int cap)
{
	char doc[4096], err[512], *env = NULL, hex[65];
	unsigned char d[32];
	size_t envlen;

	lc_sha256(KEY, strlen(KEY), d);
	lc_hex(d, 32, hex);
	snprintf(doc, sizeof(doc),
		 "{\"schema\":1,\"version\":%lld,\"issued_at\":\"2026-01-01T00:00:00Z\","
		 "\"expires_at\":\"2099-01-01T00:00:00Z\","
		 "\"providers\":[{\"name\":\"openai\",\"format\":\"openai\",\"hosts\":[\"api.openai.com\","
		 "\"127.0.0.1:11434\"]}],"
		 "\"prices\":{\"gpt-4o-mini\":{\"input\":0.15,\"cached_input\":0.075,\"output\":0.6,"
		 "\"max_output_tokens\":1000}},"
		 "\"keys\":{\"ci\":{\"sha256\":\"%s\",\"limits\":[{\"metric\":\"requests\",\"window\":\"lifetime\","
		 "\"threshold\":%d},{\"metric\":\"tokens\",\"window\":\"lifetime\",\"threshold\":100000}]}}}",
		 (long long)++version, hex, cap);
	assert_int_equal(lc_dsse_sign(&skey, doc, strlen(doc), &env, &envlen, err, sizeof(err)), 0);
	if (lc_apply_envelope(&trust, env, envlen, NULL, err, sizeof(err)))
		fail_msg("apply: %s", err);
	free(env);
}

/* used of key ci's METRIC limit, from lc_status_json */
static int64_t used(const char *metric)
{
	json_t *st = NULL, *l;
	size_t i;
	int64_t u = -1;

	assert_int_equal(lc_status_json(&st), 0);
	json_array_foreach(json_object_get(st, "limits"), i, l)
		if (!strcmp(json_string_value(json_object_get(l, "scope")), "key") &&
		    !strcmp(json_string_value(json_object_get(l, "metric")), metric))
			u = (int64_t)json_number_value(json_object_get(l, "used"));
	json_decref(st);
	return u;
}

static const char REQ[] = "POST /v1/chat/completions HTTP/1.1\r\nHost: api.openai.com\r\n"
			  "Authorization: Bearer " KEY "\r\nContent-Type: application/json\r\n"
			  "Content-Length: 68\r\n\r\n"
			  "{\"model\":\"gpt-4o-mini\",\"max_tokens\":20,\"messages\":[{\"role\":\"user\"}]}";

static const char RESP[] = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 75\r\n\r\n"
			   "{\"model\":\"gpt-4o-mini\",\"usage\":{\"prompt_tokens\":11,\"completion_tokens\":7}} ";

static size_t synth_left(struct lc_conn *c)
{
	struct lc_conn_view v;

	lc_conn_view(c, &v);
	return v.synth_left;
}

static struct lc_conn *provider_conn(void)
{
	struct lc_conn *c = lc_conn_new(-1, true);

	assert_non_null(c);
	c->cls = LC_CLS_PROVIDER;
	assert_int_equal(lc_cls_lookup("api.openai.com", 443, &c->t), 1);
	return c;
}

/* ---- classify ---- */

static void test_host_header_and_url(void **st)
{
	const char h[] = "POST /v1/x HTTP/1.1\r\nUser-Agent: a\r\nhost:  LocalHost:8080 \r\n\r\n";
	char host[64];
	int port = -1;
	bool tls = false;

	assert_int_equal(lc_cls_host_header(h, strlen(h), host, sizeof(host), &port), 0);
	assert_string_equal(host, "localhost");
	assert_int_equal(port, 8080);
	assert_int_equal(lc_cls_host_header("GET / HTTP/1.1\r\nX: y\r\n\r\n", 23, host, sizeof(host), &port), -1);
	assert_int_equal(lc_cls_host_header("GET / HTTP/1.1\r\nHost: [::1]:9\r\n\r\n", 32, host, sizeof(host),
					    &port), 0);
	assert_string_equal(host, "::1");
	assert_int_equal(port, 9);
	/* the first write may end inside the head: only complete lines count */
	assert_int_equal(lc_cls_host_header("GET / HTTP/1.1\r\nHost: api.exam", 30, host, sizeof(host), &port), -1);
	assert_int_equal(lc_cls_host_header("GET / HTTP/1.1\nX: 1\nHOST: b:81\n", 31, host, sizeof(host), &port), 0);
	assert_string_equal(host, "b");
	assert_int_equal(port, 81);
	/* an obs-fold line and a field merely ending in "host" are not Host; nor is anything past the head */
	assert_int_equal(lc_cls_host_header("GET / HTTP/1.1\r\n Host: a\r\nX-Host: b\r\n\r\nHost: c\r\n", 48, host,
					    sizeof(host), &port), -1);
	/* "Host:" with nothing after it names nothing; a later Host still does */
	assert_int_equal(lc_cls_host_header("GET / HTTP/1.1\r\nHost:\r\nHost: c\r\n\r\n", 34, host, sizeof(host),
					    &port), 0);
	assert_string_equal(host, "c");
	assert_int_equal(lc_cls_url("https://user:pw@API.openai.com/v1/chat?x=1", host, sizeof(host), &port, &tls),
			 0);
	assert_string_equal(host, "api.openai.com");
	assert_int_equal(port, 443);
	assert_true(tls);
	assert_int_equal(lc_cls_url("http://127.0.0.1:11434", host, sizeof(host), &port, &tls), 0);
	assert_string_equal(host, "127.0.0.1");
	assert_int_equal(port, 11434);
	assert_false(tls);
	assert_int_equal(lc_cls_url("ftp://x/", host, sizeof(host), &port, &tls), -1);
}

/* A port is 1..65535 in decimal digits, checked where it enters: never atoi's wrap (4294967739 would
 * come out as 443), a sign, or a value past the range. "host:" with no digits is a port left unsaid. */
static void test_ports_are_bounds_checked(void **st)
{
	static const char *const bad[] = {"4294967739", "65536", "0", "-1", "+80", " 80", "8a", "99999999999999999999999"};
	char req[256], host[64];
	bool tls = false;
	int port;
	int64_t v;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		snprintf(req, sizeof(req), "GET / HTTP/1.1\r\nHost: api.openai.com:%s\r\n\r\n", bad[i]);
		port = -7;
		if (lc_cls_host_header(req, strlen(req), host, sizeof(host), &port) != -1)
			fail_msg("Host port '%s' read as %d", bad[i], port);
		snprintf(req, sizeof(req), "https://[::1]:%s/v1", bad[i]);
		assert_int_equal(lc_cls_url(req, host, sizeof(host), &port, &tls), -1);
		assert_int_equal(lc_parse_port(bad[i], strlen(bad[i]), &port), -1);
	}
	assert_int_equal(lc_cls_host_header("GET / HTTP/1.1\r\nHost: a:65535\r\n\r\n", 34, host, sizeof(host), &port), 0);
	assert_int_equal(port, 65535);
	assert_int_equal(lc_cls_host_header("GET / HTTP/1.1\r\nHost: a:\r\n\r\n", 29, host, sizeof(host), &port), 0);
	assert_int_equal(port, 0);
	assert_int_equal(lc_cls_url("https://a:/v1", host, sizeof(host), &port, &tls), 0);
	assert_int_equal(port, 443);
	/* the digits only, not what follows them */
	assert_int_equal(lc_parse_port("4431", 3, &port), 0);
	assert_int_equal(port, 443);
	assert_int_equal(lc_parse_dec("9223372036854775807", 19, 0, INT64_MAX, &v), 0);
	assert_true(v == INT64_MAX);
	assert_int_equal(lc_parse_dec("9223372036854775808", 19, 0, INT64_MAX, &v), -1);
	assert_int_equal(lc_parse_dec("10", 2, 0, 9, &v), -1);
	assert_int_equal(lc_parse_dec("9", 1, 0, 5, &v), -1);
	assert_int_equal(lc_parse_dec("3", 1, 4, 5, &v), -1);
	assert_int_equal(lc_parse_dec("", 0, 0, 5, &v), -1);
}

static void test_bytes_predicates(void **st)
{
	unsigned char hello[64] = { 0x16, 0x03, 0x01, 0x00, 0x3b, 0x01, 0, 0, 0x37, 0x03, 0x03 }, cr[32];
	int i;

	for (i = 0; i < 32; i++)
		hello[11 + i] = (unsigned char)(i + 1);
	assert_int_equal(lc_cls_client_hello(hello, sizeof(hello), cr), 1);
	assert_int_equal(cr[0], 1);
	assert_int_equal(cr[31], 32);
	assert_int_equal(lc_cls_client_hello(REQ, sizeof(REQ) - 1, cr), 0);
	assert_true(lc_cls_is_h2_preface("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 24));
	assert_true(lc_cls_is_h2_preface("PRI * HT", 8));
	assert_false(lc_cls_is_h2_preface("POST /", 6));
	assert_true(lc_cls_is_http_request(REQ, sizeof(REQ) - 1));
	assert_false(lc_cls_is_http_request("\x16\x03\x01", 3));
	assert_true(lc_cls_priced_request(REQ, sizeof(REQ) - 1));
	assert_false(lc_cls_priced_request("GET /v1/models HTTP/1.1\r\n", 25));
}

static void test_lookup(void **st)
{
	struct lc_target t;

	install(100);
	assert_int_equal(lc_cls_lookup("api.openai.com", 443, &t), 1);
	assert_string_equal(t.host, "api.openai.com");
	assert_int_equal(t.fmt, LC_FMT_OPENAI);
	assert_int_equal(lc_cls_lookup("127.0.0.1", 11434, &t), 1);
	assert_int_equal(lc_cls_lookup("127.0.0.1", 11435, &t), 0);
	assert_int_equal(lc_cls_lookup("example.com", 443, &t), 0);
	assert_int_equal(lc_cls_lookup("", 443, &t), 0);
}

/* ---- table ---- */

static void test_table_refs_and_fd_state(void **st)
{
	struct lc_conn *c = lc_conn_new(7, false), *g, *c2;
	unsigned char cr[32];

	assert_non_null(c);
	g = lc_tab_put(LC_TAB_FD, 7, c);
	assert_ptr_equal(g, c);
	lc_conn_put(c);                         /* the creator's reference */
	c2 = lc_conn_new(7, false);
	g = lc_tab_put(LC_TAB_FD, 7, c2);       /* key exists: the existing entry comes back */
	assert_ptr_equal(g, c);
	lc_conn_put(c2);
	lc_conn_put(g);
	g = lc_tab_get(LC_TAB_FD, 7);
	assert_ptr_equal(g, c);
	assert_int_equal(atomic_load(&c->refs), 3);   /* table + put's caller ref + get */
	lc_conn_put(g);
	lc_conn_put(g);
	assert_null(lc_tab_get(LC_TAB_SSL, 7));       /* tables are separate */
	g = lc_tab_take(LC_TAB_FD, 7);
	assert_ptr_equal(g, c);
	assert_null(lc_tab_get(LC_TAB_FD, 7));
	lc_conn_put(g);                                /* freed */

	assert_int_equal(lc_fd_state(5), LC_FD_NONE);
	lc_fd_set_state(5, LC_FD_PROVIDER);
	assert_int_equal(lc_fd_state(5), LC_FD_PROVIDER);
	lc_fd_set_state(5, LC_FD_NONE);
	assert_int_equal(lc_fd_state(-1), LC_FD_NONE);
	assert_int_equal(lc_fd_state(LC_FD_MAX + 10), LC_FD_NONE);

	memset(cr, 0xab, sizeof(cr));
	lc_cr_record(9, cr);
	assert_int_equal(lc_cr_lookup(cr), 9);
	cr[0] = 0;
	assert_int_equal(lc_cr_lookup(cr), -1);
	cr[0] = 0xab;
	lc_cr_forget_fd(9);
	assert_int_equal(lc_cr_lookup(cr), -1);
}

/* ---- conn ---- */

/* the ClientHellos hooked TLS calls made (shim.c): all-zero randoms are ignored, a repeated one is
 * kept once, and the ring keeps the last 512 distinct ones */
static void test_tls_made_ring(void **st)
{
	unsigned char cr[32], first[32], zero[32] = { 0 };
	int i;

	(void)st;
	memset(first, 0xa5, 32);
	assert_false(lc_pl_tls_ours(first));
	lc_pl_tls_made(zero);
	assert_false(lc_pl_tls_ours(zero));
	errno = 1234;
	lc_pl_tls_made(first);
	assert_int_equal(errno, 1234);
	assert_true(lc_pl_tls_ours(first));
	for (i = 0; i < 600; i++)    /* repeats of the newest take no slot */
		lc_pl_tls_made(first);
	for (i = 0; i < 511; i++) {
		memset(cr, 0, 32);
		memcpy(cr, &i, sizeof(i));
		cr[31] = 1;
		lc_pl_tls_made(cr);
	}
	assert_true(lc_pl_tls_ours(first));    /* 512 distinct: still there */
	assert_true(lc_pl_tls_ours(cr));
	cr[31] = 2;
	lc_pl_tls_made(cr);
	assert_false(lc_pl_tls_ours(first));   /* the 513th pushed the oldest out */
	assert_true(lc_pl_tls_ours(cr));
}

static void test_allowed_split_request_flushed_exactly_and_settled(void **st)
{
	struct lc_conn *c;
	const void *p;
	size_t len, cut1 = 20, cut2 = sizeof(REQ) - 1 - 10, i;
	char out[1024];
	int64_t r0 = used("requests"), t0 = used("tokens");

	install(1000);
	c = provider_conn();
	/* three writes: claimed until the body is complete */
	assert_int_equal(lc_conn_write(c, REQ, cut1), LC_W_CLAIM);
	assert_int_equal(lc_conn_read_mode(c), LC_R_PASS);
	assert_int_equal(lc_conn_write(c, REQ + cut1, cut2 - cut1), LC_W_CLAIM);
	assert_int_equal(lc_conn_write(c, REQ + cut2, sizeof(REQ) - 1 - cut2), LC_W_FLUSH);
	/* a retry of the completing call while flushing: still FLUSH, nothing fed twice */
	assert_int_equal(lc_conn_write(c, REQ + cut2, sizeof(REQ) - 1 - cut2), LC_W_FLUSH);
	/* the flush hands out the exact bytes, in pieces */
	len = 0;
	for (i = 0; (p = lc_conn_flush_buf(c, &len)); ) {
		size_t k = len > 50 ? 50 : len;

		memcpy(out + i, p, k);
		i += k;
		lc_conn_flushed(c, k);
	}
	assert_int_equal(i, sizeof(REQ) - 1);
	assert_memory_equal(out, REQ, sizeof(REQ) - 1);
	assert_int_equal(c->st, LC_ST_RESP);
	assert_int_equal(used("requests"), r0);
	/* the response, in two reads */
	assert_int_equal(lc_conn_read_mode(c), LC_R_FEED);
	lc_conn_feed(c, RESP, 40);
	assert_int_equal(c->st, LC_ST_RESP);
	lc_conn_feed(c, RESP + 40, sizeof(RESP) - 1 - 40);
	assert_int_equal(c->st, LC_ST_IDLE);
	assert_int_equal(used("requests"), r0 + 1);
	assert_int_equal(used("tokens"), t0 + 18);
	/* keep-alive: a second request on the same connection */
	assert_int_equal(lc_conn_write(c, REQ, sizeof(REQ) - 1), LC_W_FLUSH);
	p = lc_conn_flush_buf(c, &len);
	assert_int_equal(len, sizeof(REQ) - 1);
	assert_true(lc_conn_flushed(c, len));
	lc_conn_feed(c, RESP, sizeof(RESP) - 1);
	assert_int_equal(used("requests"), r0 + 2);
	assert_int_equal(used("tokens"), t0 + 36);
	lc_conn_put(c);
}

static void test_denied_serves_synthetic_then_eof(void **st)
{
	struct lc_conn *c;
	char buf[4096];
	size_t n, total = 0;
	int64_t r0 = used("requests");

	install((int)r0 + 1);
	c = provider_conn();
	assert_int_equal(lc_conn_write(c, REQ, sizeof(REQ) - 1), LC_W_FLUSH);
	lc_conn_flushed(c, sizeof(REQ) - 1);
	lc_conn_feed(c, RESP, sizeof(RESP) - 1);
	assert_int_equal(used("requests"), r0 + 1);
	/* over the cap: denied, nothing to flush */
	assert_int_equal(lc_conn_write(c, REQ, sizeof(REQ) - 1), LC_W_DENY);
	assert_null(lc_conn_flush_buf(c, &n));
	assert_int_equal(lc_conn_read_mode(c), LC_R_SYNTH);
	assert_true(synth_left(c) > 0);
	/* peek does not consume */
	n = lc_conn_synth_read(c, buf, 12, true);
	assert_int_equal(n, 12);
	assert_memory_equal(buf, "HTTP/1.1 429", 12);
	while ((n = lc_conn_synth_read(c, buf + total, 100, false)) > 0)
		total += n;
	buf[total] = 0;
	assert_non_null(strstr(buf, "retry-after:"));
	assert_non_null(strstr(buf, "x-should-retry: false"));
	assert_non_null(strstr(buf, "llmcap_limit_reached"));
	assert_true(c->eof_served);
	assert_int_equal(synth_left(c), 0);
	/* a later write on the connection fails */
	assert_int_equal(lc_conn_write(c, REQ, sizeof(REQ) - 1), LC_W_FAIL);
	assert_int_equal(used("requests"), r0 + 1);
	lc_conn_put(c);
}

static void test_h2_and_pipelining_refused(void **st)
{
	struct lc_conn *c;
	char two[1024];
	int64_t r0 = used("requests");

	install(1000);
	c = provider_conn();
	assert_int_equal(lc_conn_write(c, "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 24), LC_W_FAIL);
	assert_int_equal(c->st, LC_ST_DEAD);
	assert_int_equal(lc_conn_write(c, REQ, sizeof(REQ) - 1), LC_W_FAIL);
	lc_conn_put(c);

	c = provider_conn();
	snprintf(two, sizeof(two), "%s%s", REQ, REQ);
	assert_int_equal(lc_conn_write(c, two, strlen(two)), LC_W_FAIL);
	lc_conn_put(c);

	c = provider_conn();
	assert_int_equal(lc_conn_write(c, "\x16\x03\x01garbage\r\n\r\n", 14), LC_W_FAIL);
	lc_conn_put(c);
	assert_int_equal(used("requests"), r0);
}

static void test_close_settles_with_estimate_and_flush_failure(void **st)
{
	struct lc_conn *c;
	size_t n;
	int64_t r0 = used("requests"), t0 = used("tokens");

	install(1000);
	c = provider_conn();
	assert_int_equal(lc_conn_write(c, REQ, sizeof(REQ) - 1), LC_W_FLUSH);
	lc_conn_flush_buf(c, &n);
	lc_conn_flushed(c, n);
	/* the connection goes away before any response: the reservation is charged (estimate) */
	lc_conn_put(c);
	assert_int_equal(used("requests"), r0 + 1);
	assert_true(used("tokens") > t0 + 20);    /* input estimate + the 20-token output cap */

	r0 = used("requests");
	t0 = used("tokens");
	c = provider_conn();
	assert_int_equal(lc_conn_write(c, REQ, sizeof(REQ) - 1), LC_W_FLUSH);
	lc_conn_flush_failed(c);            /* never delivered: request counted, no tokens */
	assert_int_equal(c->st, LC_ST_DEAD);
	lc_conn_put(c);
	assert_int_equal(used("requests"), r0 + 1);
	assert_int_equal(used("tokens"), t0);
}

/* in a child: the engine keeps one store per process, opened once */
/* The hooks see a connection only through locked accessors (struct lc_conn is private to
 * conn.c): threads reading views and setting the hook-side fields while another drives requests
 * through it never see a torn state, and every request is charged exactly once. */
struct stress {
	struct lc_conn *c;
	atomic_int stop;
	atomic_int bad;
	atomic_long views;
};

static void *stress_observer(void *arg)
{
	struct stress *s = arg;
	struct lc_conn_view v;

	while (!atomic_load(&s->stop)) {
		lc_conn_view(s->c, &v);
		if (v.cls != LC_CLS_PROVIDER || v.st < LC_ST_IDLE || v.st > LC_ST_DEAD ||
		    (v.st != LC_ST_DENIED && v.synth_left != 0) || v.fd != 7)
			atomic_fetch_add(&s->bad, 1);
		lc_conn_set_synth_err(s->c, 0);
		lc_conn_set_fd(s->c, 7);
		(void)lc_conn_once(s->c, LC_ONCE_ALPN);
		(void)lc_conn_classify(s->c, LC_CLS_PASS, NULL, false);    /* already classified: no-op */
		atomic_fetch_add(&s->views, 1);
	}
	return NULL;
}

static void test_accessors_under_threads(void **st)
{
	struct stress s = { .c = NULL };
	struct lc_target t;
	pthread_t th[3];
	int64_t r0 = used("requests");
	const int n = 300;
	size_t len;
	int i;

	install(100000);
	assert_int_equal(lc_cls_lookup("api.openai.com", 443, &t), 1);
	s.c = lc_conn_new_provider(7, true, &t);
	assert_non_null(s.c);
	for (i = 0; i < 3; i++)
		assert_int_equal(pthread_create(&th[i], NULL, stress_observer, &s), 0);
	while (atomic_load(&s.views) < 3)   /* on a loaded machine the observers may start late */
		sched_yield();
	for (i = 0; i < n; i++) {
		assert_int_equal(lc_conn_write(s.c, REQ, sizeof(REQ) - 1), LC_W_FLUSH);
		assert_non_null(lc_conn_flush_buf(s.c, &len));
		assert_true(lc_conn_flushed(s.c, len));
		assert_int_equal(lc_conn_read_mode(s.c), LC_R_FEED);
		lc_conn_feed(s.c, RESP, sizeof(RESP) - 1);
	}
	atomic_store(&s.stop, 1);
	for (i = 0; i < 3; i++)
		pthread_join(th[i], NULL);
	assert_int_equal(atomic_load(&s.bad), 0);
	assert_int_equal(used("requests"), r0 + n);
	lc_conn_put(s.c);
}

static void test_fail_modes(void **st)
{
	pid_t pid = fork();
	int status;

	if (pid == 0) {
		struct lc_target t;
		char path[400];
		FILE *f;
		int i, bad = 0;

		/* no state directory at all: nothing is a provider, nothing is created */
		snprintf(path, sizeof(path), "%s/none", tmpdir);
		lc_state_dir_set(path);
		bad |= lc_cls_lookup("api.openai.com", 443, &t) != 0;
		bad |= access(path, F_OK) == 0;
		/* a policy was installed, then the store became garbage: fail closed */
		snprintf(path, sizeof(path), "%s/corrupt/data.mdb", tmpdir);
		{
			char d[400];

			snprintf(d, sizeof(d), "%s/corrupt", tmpdir);
			if (fork() == 0) {
				lc_state_dir_set(d);
				version = 0;
				install(100);
				_exit(0);
			}
			wait(NULL);
			lc_state_dir_set(d);
		}
		f = fopen(path, "r+");
		if (!f)
			_exit(10);
		for (i = 0; i < 16384; i++)
			fputc(0x5a, f);
		fclose(f);
		if (fork() == 0) {    /* a fresh process: the store is opened after the damage */
			bad = 0;
			bad |= (lc_cls_lookup("api.openai.com", 443, &t) != 1) << 1;   /* well-known host */
			bad |= (lc_cls_lookup("127.0.0.1", 11434, &t) != -1) << 2;      /* unknown: caller decides */
			bad |= (!lc_fail_closed()) << 3;
			_exit(bad);
		}
		wait(&status);
		_exit(bad | (WIFEXITED(status) ? WEXITSTATUS(status) : 99));
	}
	assert_true(pid > 0);
	waitpid(pid, &status, 0);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
}

static int setup(void **st)
{
	setenv("LLMCAP_LOG", "off", 1);
	return lc_fixture_setup("preload", tmpdir, sizeof(tmpdir), &skey, &trust);
}

static int teardown(void **st)
{
	return lc_fixture_teardown(tmpdir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_host_header_and_url),
		cmocka_unit_test(test_ports_are_bounds_checked),
		cmocka_unit_test(test_bytes_predicates),
		cmocka_unit_test(test_lookup),
		cmocka_unit_test(test_table_refs_and_fd_state),
		cmocka_unit_test(test_tls_made_ring),
		cmocka_unit_test(test_allowed_split_request_flushed_exactly_and_settled),
		cmocka_unit_test(test_denied_serves_synthetic_then_eof),
		cmocka_unit_test(test_h2_and_pipelining_refused),
		cmocka_unit_test(test_close_settles_with_estimate_and_flush_failure),
		cmocka_unit_test(test_accessors_under_threads),
		cmocka_unit_test(test_fail_modes),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
