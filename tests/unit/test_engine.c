/* test_engine.c - decisions against a real LMDB store: every scope, metric and
 * window; warn/block/alert_at/enabled; key states; settle; reclaim of dead
 * processes; 16 processes racing on one cap; window boundaries with a test clock. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "engine.h"
#include "rules.h"
#include "store.h"
#include "sign.h"
#include "stats.h"
#include "util.h"
#include "state_fixture.h"

static char tmpdir[256];
static struct lc_signkey skey;
static struct lc_trust trust;
static int64_t version = 0;
static int64_t fake_now_ms;
static pid_t main_pid;

/* In a forked child a failed cmocka assert would jump back into the runner and run the rest of
 * the suite twice: children exit with a distinct status instead. */
#define CHILD_SAFE_ASSERT_OK(expr)                                          \
	do {                                                                \
		int rc_ = (expr);                                           \
		if (rc_ != LC_OK && getpid() != main_pid)                   \
			_exit(99);                                          \
		assert_int_equal(rc_, LC_OK);                               \
	} while (0)

static int64_t fake_clock(void)
{
	return fake_now_ms;
}

static void set_time(const char *rfc3339)
{
	int64_t t;

	assert_int_equal(lc_time_parse(rfc3339, &t), 0);
	fake_now_ms = t * 1000;
	lc_clock_hook = fake_clock;
}

static const char *fp(const char *key)
{
	static char hex[4][65];
	static int i;
	unsigned char d[32];

	i = (i + 1) % 4;
	lc_sha256(key, strlen(key), d);
	lc_hex(d, 32, hex[i]);
	return hex[i];
}

/* Install a policy: `body` is everything after the header fields. */
static void install(const char *fmt, ...)
{
	char body[16384], doc[20000], err[512], *env = NULL;
	size_t envlen;
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(body, sizeof(body), fmt, ap);
	va_end(ap);
	snprintf(doc, sizeof(doc),
		 "{\"schema\":1,\"version\":%lld,\"issued_at\":\"2026-01-01T00:00:00Z\","
		 "\"expires_at\":\"2099-01-01T00:00:00Z\","
		 "\"providers\":[{\"name\":\"openai\",\"format\":\"openai\",\"hosts\":[\"api.openai.com\"]},"
		 "{\"name\":\"anthropic\",\"format\":\"anthropic\",\"hosts\":[\"api.anthropic.com\"]}],"
		 "\"prices\":{\"m\":{\"input\":1,\"cached_input\":0.5,\"output\":2,\"max_output_tokens\":1000}}%s%s}",
		 (long long)++version, body[0] ? "," : "", body);
	assert_int_equal(lc_dsse_sign(&skey, doc, strlen(doc), &env, &envlen, err, sizeof(err)), 0);
	if (lc_apply_envelope(&trust, env, envlen, NULL, err, sizeof(err)))
		fail_msg("apply: %s\n%s", err, doc);
	free(env);
}

static struct lc_reqinfo req(const char *model, int64_t in, int64_t cap, const char *customer)
{
	struct lc_reqinfo r;

	memset(&r, 0, sizeof(r));
	r.api = LC_API_CHAT;
	snprintf(r.model, sizeof(r.model), "%s", model);
	r.input_estimate = in;
	r.output_cap = cap;
	snprintf(r.customer, sizeof(r.customer), "%s", customer ? customer : "");
	return r;
}

/* a policy with one key: ID, the API key KEY, at most THRESHOLD requests a day */
static void install_daily_requests(const char *id, const char *key, int threshold)
{
	install("\"keys\":{\"%s\":{\"sha256\":\"%s\",\"limits\":[{\"metric\":\"requests\",\"window\":\"daily\","
		"\"threshold\":%d}]}}", id, fp(key), threshold);
}

static struct lc_decision admit_as(const char *host, const char *key, struct lc_reqinfo r)
{
	struct lc_admit_req a = {.host = host, .port = 443, .api_key = key, .api_key_len = key ? strlen(key) : 0,
				 .info = &r};
	struct lc_decision d;

	CHILD_SAFE_ASSERT_OK(lc_admit(&a, &d));
	return d;
}

static struct lc_decision admit(const char *key, struct lc_reqinfo r)
{
	return admit_as("api.openai.com", key, r);
}

static void settle_usage(uint64_t t, int64_t in, int64_t cached, int64_t out)
{
	struct lc_usage u = {.present = true, .input = in, .cached_input = cached, .output = out};

	CHILD_SAFE_ASSERT_OK(lc_settle(t, &u, 200));
}

/* one small request with key `key`, allowed and settled (1 input and 1 output token) */
static void allow_one(const char *key)
{
	struct lc_decision d = admit(key, req("m", 1, 1, NULL));

	assert_int_equal(d.verdict, LC_ALLOW);
	settle_usage(d.ticket, 1, 0, 1);
}

/* used / reserved of a limit in `llmcap status --json` */
static void status_of(const char *scope, const char *id, const char *metric, const char *window, double *used,
		      double *reserved)
{
	json_t *st, *l;
	size_t i;

	assert_int_equal(lc_status_json(&st), LC_OK);
	json_array_foreach(json_object_get(st, "limits"), i, l) {
		if (!strcmp(json_string_value(json_object_get(l, "scope")), scope) &&
		    !strcmp(json_string_value(json_object_get(l, "id")), id) &&
		    !strcmp(json_string_value(json_object_get(l, "metric")), metric) &&
		    !strcmp(json_string_value(json_object_get(l, "window")), window)) {
			*used = json_number_value(json_object_get(l, "used"));
			if (reserved)
				*reserved = json_number_value(json_object_get(l, "reserved"));
			json_decref(st);
			return;
		}
	}
	json_decref(st);
	fail_msg("no %s %s %s %s in status", scope, id, metric, window);
}

/* events of this kind in the outbox (of this limit, unless NULL) */
static int outbox_count_limit(const char *event, const char *limit)
{
	json_t *arr, *e;
	size_t i;
	int n = 0;

	assert_int_equal(lc_outbox_list(0, 100000, &arr), LC_OK);
	json_array_foreach(arr, i, e)
		if (!strcmp(json_string_value(json_object_get(e, "event")), event) &&
		    (!limit || !strcmp(json_string_value(json_object_get(json_object_get(e, "data"), "limit")), limit)))
			n++;
	json_decref(arr);
	return n;
}

static int outbox_count(const char *event)
{
	return outbox_count_limit(event, NULL);
}

/* ---- tests -------------------------------------------------------------------- */

static void test_not_a_provider_passes(void **st)
{
	struct lc_decision d;

	install_daily_requests("a", "ka", 0);
	d = admit_as("example.com", "ka", req("m", 10, 10, NULL));
	assert_int_equal(d.verdict, LC_PASS);
	d = admit("ka", req("m", 10, 10, NULL));
	assert_int_equal(d.verdict, LC_DENY);
	assert_int_equal(d.status, 429);
}

static void test_requests_cap_exact(void **st)
{
	struct lc_decision d;
	int allowed = 0;

	install_daily_requests("ci", "k-req", 5);
	for (int i = 0; i < 8; i++) {
		d = admit("k-req", req("m", 10, 10, NULL));
		if (d.verdict == LC_ALLOW) {
			allowed++;
			settle_usage(d.ticket, 1, 0, 1);
		} else {
			assert_int_equal(d.status, 429);
			assert_string_equal(d.limit, "key:ci:requests:daily");
			assert_non_null(strstr(d.message, "daily requests limit of 5 for key 'ci' reached (5 used + 1 this request (worst case) would exceed it)"));
			assert_false(d.should_retry);
			assert_true(d.retry_after > 0 && d.retry_after <= 86400);
		}
	}
	assert_int_equal(allowed, 5);
	assert_int_equal(outbox_count("limit_reached") >= 1, 1);
}

static void test_cost_reserve_worst_case_then_settle(void **st)
{
	struct lc_decision d1, d2, d3;
	double used, reserved;

	/* price: input $1/M, output $2/M. estimate = 1000 in + 1000 out = $0.003 */
	install("\"keys\":{\"c\":{\"sha256\":\"%s\",\"limits\":[{\"metric\":\"cost\",\"window\":\"monthly\","
		"\"threshold\":0.005}]}}", fp("k-cost"));
	d1 = admit("k-cost", req("m", 1000, 1000, NULL));
	assert_int_equal(d1.verdict, LC_ALLOW);
	status_of("key", "c", "cost", "monthly", &used, &reserved);
	assert_true(used == 0 && reserved > 0.0029 && reserved < 0.0031);
	/* a second worst case would cross $0.005 while the first is in flight */
	d2 = admit("k-cost", req("m", 1000, 1000, NULL));
	assert_int_equal(d2.verdict, LC_DENY);
	assert_non_null(strstr(d2.message, "monthly cost limit of $0.005 for key 'c' reached"));
	/* settle with real usage: 100 in, 200 cached (half price), 50 out = 100 + 100 + 100 = 300 micro */
	settle_usage(d1.ticket, 100, 200, 50);
	status_of("key", "c", "cost", "monthly", &used, &reserved);
	assert_true(used > 0.000299 && used < 0.000301);
	assert_true(reserved == 0);
	d3 = admit("k-cost", req("m", 1000, 1000, NULL));
	assert_int_equal(d3.verdict, LC_ALLOW);
	/* no usage came back on a 200: the estimate is charged */
	assert_int_equal(lc_settle(d3.ticket, NULL, 200), LC_OK);
	status_of("key", "c", "cost", "monthly", &used, &reserved);
	assert_true(used > 0.003299 && used < 0.003301);
	/* a provider error without usage: the request counts, nothing is charged */
	d3 = admit("k-cost", req("m", 100, 100, NULL));
	assert_int_equal(d3.verdict, LC_ALLOW);
	assert_int_equal(lc_settle(d3.ticket, NULL, 500), LC_OK);
	status_of("key", "c", "cost", "monthly", &used, &reserved);
	assert_true(used > 0.003299 && used < 0.003301);
	assert_int_equal(lc_settle(d3.ticket, NULL, 200), LC_E_NOTFOUND);  /* settles once */
}

static void test_output_cap_defaults_to_model_max(void **st)
{
	struct lc_decision d;
	double used, reserved;

	/* no max_tokens: reserve the model's max_output_tokens (1000) */
	install("\"keys\":{\"t\":{\"sha256\":\"%s\",\"limits\":[{\"metric\":\"tokens\",\"window\":\"weekly\","
		"\"threshold\":1500}]}}", fp("k-tok"));
	d = admit("k-tok", req("m", 100, -1, NULL));
	assert_int_equal(d.verdict, LC_ALLOW);
	status_of("key", "t", "tokens", "weekly", &used, &reserved);
	assert_true(reserved == 1100);
	d = admit("k-tok", req("m", 100, -1, NULL));
	assert_int_equal(d.verdict, LC_DENY);
}

static void test_team_org_and_toggles(void **st)
{
	struct lc_decision d;

	install("\"org\":{\"spend_cap_usd\":1000,\"warning_threshold_usd\":0.00001},"
		"\"teams\":{\"r\":{\"limits\":[{\"metric\":\"requests\",\"window\":\"hour\",\"threshold\":3}]}},"
		"\"keys\":{\"a\":{\"sha256\":\"%s\",\"team\":\"r\"},\"b\":{\"sha256\":\"%s\",\"team\":\"r\","
		"\"limits\":[{\"metric\":\"requests\",\"window\":\"minute\",\"threshold\":0,\"enabled\":false},"
		"{\"metric\":\"requests\",\"window\":\"daily\",\"threshold\":0,\"action\":\"warn\"}]}}",
		fp("ta"), fp("tb"));
	/* the team's 3 requests are shared by keys a and b; b's disabled limit and warn limit do not block */
	assert_int_equal(admit("ta", req("m", 1, 1, NULL)).verdict, LC_ALLOW);
	assert_int_equal(admit("tb", req("m", 1, 1, NULL)).verdict, LC_ALLOW);
	d = admit("ta", req("m", 1, 1, NULL));
	assert_int_equal(d.verdict, LC_ALLOW);
	settle_usage(d.ticket, 10, 0, 10);
	d = admit("tb", req("m", 1, 1, NULL));
	assert_int_equal(d.verdict, LC_DENY);
	assert_string_equal(d.limit, "team:r:requests:hour");
	assert_true(d.should_retry == (d.retry_after <= 60));
	assert_true(outbox_count("limit_alert") >= 1);              /* b's warn limit */
	assert_int_equal(outbox_count("spend_cap_warning_threshold_reached"), 1);
}

static void test_org_cap(void **st)
{
	struct lc_decision d;

	install("\"org\":{\"spend_cap_usd\":0.0025,\"period\":\"daily\"}");
	set_time("2031-03-03T10:00:00Z");   /* a day the earlier tests spent nothing in (the ledger counts all) */
	d = admit("anyone", req("m", 500, 500, NULL));  /* $0.0015 */
	assert_int_equal(d.verdict, LC_ALLOW);
	d = admit("anyone", req("m", 500, 500, NULL));
	assert_int_equal(d.verdict, LC_DENY);
	assert_string_equal(d.limit, "org:org:cost:daily");
	assert_non_null(strstr(d.message, "daily organisation spend cap of $0.0025 reached"));
	assert_int_equal(outbox_count("spend_cap_reached"), 1);
	/* once per limit per window */
	admit("anyone", req("m", 500, 500, NULL));
	assert_int_equal(outbox_count("spend_cap_reached"), 1);
	lc_clock_hook = NULL;
}

static void test_key_states(void **st)
{
	struct lc_decision d;

	set_time("2026-06-01T00:00:00Z");
	install("\"unknown_keys\":\"block\",\"keys\":{\"rev\":{\"sha256\":\"%s\",\"revoked\":true},"
		"\"exp\":{\"sha256\":\"%s\",\"expires_at\":\"2026-06-01T00:00:00Z\"},"
		"\"ok\":{\"sha256\":\"%s\",\"expires_at\":\"2026-06-01T00:00:01Z\"}}",
		fp("k-rev"), fp("k-exp"), fp("k-ok"));
	d = admit("k-rev", req("m", 1, 1, NULL));
	assert_int_equal(d.verdict, LC_DENY);
	assert_int_equal(d.status, 401);
	assert_non_null(strstr(d.message, "revoked"));
	d = admit("k-exp", req("m", 1, 1, NULL));  /* expires_at is exclusive: expired at that second */
	assert_int_equal(d.status, 401);
	assert_non_null(strstr(d.message, "expired"));
	assert_int_equal(outbox_count("key_expired"), 1);
	allow_one("k-ok");
	d = admit("stranger", req("m", 1, 1, NULL));
	assert_int_equal(d.status, 401);
	d = admit(NULL, req("m", 1, 1, NULL));
	assert_int_equal(d.status, 401);
	lc_clock_hook = NULL;
}

static void test_unknown_models(void **st)
{
	struct lc_decision d;

	install("\"unknown_models\":\"block\"");
	d = admit("x", req("gpt-unpriced", 1, 1, NULL));
	assert_int_equal(d.verdict, LC_DENY);
	assert_int_equal(d.status, 400);
	install("\"unknown_models\":\"allow\",\"keys\":{\"u\":{\"sha256\":\"%s\",\"limits\":[{\"metric\":\"tokens\","
		"\"window\":\"lifetime\",\"threshold\":100}]}}", fp("k-um"));
	d = admit("k-um", req("gpt-unpriced", 10, 10, NULL));
	assert_int_equal(d.verdict, LC_ALLOW);
	settle_usage(d.ticket, 10, 0, 10);
	d = admit("k-um", req("gpt-unpriced", 50, 50, NULL));  /* tokens still count for unpriced models */
	assert_int_equal(d.verdict, LC_DENY);
	assert_int_equal(d.retry_after > 86400, 1);              /* lifetime: never resets */
	assert_non_null(strstr(d.message, "never resets"));
}

static void test_customer_budget_override_and_rpm(void **st)
{
	struct lc_decision d;
	int allowed = 0;

	set_time("2026-03-10T12:00:00Z");
	install("\"customers\":{\"monthly_budget_usd\":0.0025,\"rate_limit_rpm\":3,"
		"\"overrides\":{\"big\":{\"monthly_budget_usd\":1,\"rate_limit_rpm\":5}}}");
	/* default budget: $0.0025, each request reserves $0.0015 */
	assert_int_equal(admit("k", req("m", 500, 500, "small")).verdict, LC_ALLOW);
	d = admit("k", req("m", 500, 500, "small"));
	assert_int_equal(d.verdict, LC_DENY);
	assert_string_equal(d.limit, "customer:small:cost:monthly");
	assert_int_equal(outbox_count("customer_budget_limit_reached"), 1);
	/* the override: budget $1, rpm 5 */
	for (int i = 0; i < 7; i++) {
		d = admit("k", req("m", 1, 1, "big"));
		if (d.verdict == LC_ALLOW) {
			allowed++;
			settle_usage(d.ticket, 1, 0, 1);
		} else {
			assert_string_equal(d.limit, "customer:big:requests:minute");
			assert_true(d.should_retry);
		}
		fake_now_ms += 1000;
	}
	assert_int_equal(allowed, 5);
	/* sliding window: 60 s after the first admission one more fits, not before */
	set_time("2026-03-10T12:00:59Z");
	assert_int_equal(admit("k", req("m", 1, 1, "big")).verdict, LC_DENY);
	set_time("2026-03-10T12:01:00Z");
	d = admit("k", req("m", 1, 1, "big"));
	assert_int_equal(d.verdict, LC_ALLOW);
	assert_int_equal(admit("k", req("m", 1, 1, "big")).verdict, LC_DENY);
	lc_clock_hook = NULL;
}

static void test_window_boundaries(void **st)
{
	struct lc_decision d;

	install("\"keys\":{\"w\":{\"sha256\":\"%s\",\"limits\":["
		"{\"metric\":\"requests\",\"window\":\"weekly\",\"threshold\":1}]},"
		"\"mo\":{\"sha256\":\"%s\",\"limits\":[{\"metric\":\"requests\",\"window\":\"monthly\",\"threshold\":1}]},"
		"\"dy\":{\"sha256\":\"%s\",\"limits\":[{\"metric\":\"requests\",\"window\":\"daily\",\"threshold\":1}]}}",
		fp("k-w"), fp("k-mo"), fp("k-dy"));
	/* weekly: Sunday 2026-11-22 23:59:59 is in the week of Monday 16th */
	set_time("2026-11-16T00:00:00Z");
	allow_one("k-w");   /* a request in flight counts in every window until it settles */
	set_time("2026-11-22T23:59:59Z");
	d = admit("k-w", req("m", 1, 1, NULL));
	assert_int_equal(d.verdict, LC_DENY);
	assert_int_equal(d.retry_after, 1);
	assert_non_null(strstr(d.message, "resets 2026-11-23T00:00:00Z"));
	set_time("2026-11-23T00:00:00Z");
	allow_one("k-w");
	/* monthly: Dec 31 23:59:59 vs Jan 1 */
	set_time("2026-12-31T23:59:59Z");
	allow_one("k-mo");
	assert_int_equal(admit("k-mo", req("m", 1, 1, NULL)).verdict, LC_DENY);
	set_time("2027-01-01T00:00:00Z");
	allow_one("k-mo");
	/* daily: leap day */
	set_time("2028-02-29T23:59:59Z");
	allow_one("k-dy");
	d = admit("k-dy", req("m", 1, 1, NULL));
	assert_non_null(strstr(d.message, "resets 2028-03-01T00:00:00Z"));
	lc_clock_hook = NULL;
}

/* A process that admits and dies without settling: its reservation is reclaimed,
 * and the next decision goes on at once. */
static void test_reclaim_dead_process(void **st)
{
	struct lc_decision d;
	int status;
	pid_t pid;
	double used, reserved;

	install("\"keys\":{\"rc\":{\"sha256\":\"%s\",\"limits\":[{\"metric\":\"requests\",\"window\":\"daily\","
		"\"threshold\":1},{\"metric\":\"cost\",\"window\":\"daily\",\"threshold\":1}]}}", fp("k-rc"));
	pid = fork();
	if (pid == 0) {
		struct lc_decision cd = admit("k-rc", req("m", 100, 100, NULL));

		if (cd.verdict != LC_ALLOW)
			_exit(3);
		raise(SIGKILL);  /* die holding the reservation */
		_exit(4);
	}
	waitpid(pid, &status, 0);
	assert_true(WIFSIGNALED(status));
	status_of("key", "rc", "requests", "daily", &used, &reserved);
	assert_true(reserved == 1);
	/* the cap is full with the dead process's reservation: reclaim happens inside admit */
	d = admit("k-rc", req("m", 100, 100, NULL));
	status_of("key", "rc", "requests", "daily", &used, &reserved);
	assert_true(used == 1);    /* charged at its estimate */
	assert_int_equal(d.verdict, LC_DENY);  /* 1 used of 1 */
	assert_true(reserved == 0);
}

static void test_live_reservation_is_not_reclaimed(void **st)
{
	struct lc_decision d;
	unsigned n = 99;

	install_daily_requests("lv", "k-lv", 1);
	d = admit("k-lv", req("m", 1, 1, NULL));
	assert_int_equal(d.verdict, LC_ALLOW);
	assert_int_equal(lc_reclaim(&n), LC_OK);
	assert_int_equal(n, 0);
	assert_int_equal(admit("k-lv", req("m", 1, 1, NULL)).verdict, LC_DENY);
	settle_usage(d.ticket, 1, 0, 1);
}

/* 16 processes race on one requests cap and one cost cap: exactly the cap is admitted. */
static void test_sixteen_processes_race(void **st)
{
	int *shared_allowed;
	long long *shared_cost;
	pid_t pids[16];
	double used, reserved;

	install("\"keys\":{\"race\":{\"sha256\":\"%s\",\"limits\":[{\"metric\":\"requests\",\"window\":\"daily\","
		"\"threshold\":100},{\"metric\":\"cost\",\"window\":\"daily\",\"threshold\":0.25}]}}", fp("k-race"));
	shared_allowed = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	assert_true(shared_allowed != MAP_FAILED);
	shared_cost = (long long *)(shared_allowed + 16);
	for (int i = 0; i < 16; i++) {
		pids[i] = fork();
		if (pids[i] == 0) {
			for (int j = 0; j < 20; j++) {
				struct lc_decision d = admit("k-race", req("m", 1000, 1000, NULL));

				if (d.verdict == LC_ALLOW) {
					/* actual usage: 500 in, 500 out = $0.0015 */
					settle_usage(d.ticket, 500, 0, 500);
					__atomic_add_fetch(shared_allowed, 1, __ATOMIC_SEQ_CST);
					__atomic_add_fetch(shared_cost, 1500, __ATOMIC_SEQ_CST);
				}
			}
			_exit(0);
		}
	}
	for (int i = 0; i < 16; i++)
		waitpid(pids[i], NULL, 0);
	/* each request reserves $0.003 and uses $0.0015: the cost cap of $0.25 binds before 100 requests
	 * only through in-flight reservations; the used cost never passes $0.25 */
	status_of("key", "race", "requests", "daily", &used, &reserved);
	assert_int_equal((int)used, *shared_allowed);
	assert_true(reserved == 0);
	assert_true(*shared_allowed <= 100);
	assert_true(*shared_cost <= 250000);
	status_of("key", "race", "cost", "daily", &used, &reserved);
	assert_true(used * 1e6 <= 250000.5);
	assert_true((long long)(used * 1e6 + 0.5) == *shared_cost);
	/* 320 attempts at $0.0015 each would be $0.48: the requests cap (100) binds exactly */
	assert_int_equal(*shared_allowed, 100);
	munmap(shared_allowed, 4096);
}

static int thread_allowed;

static void *race_thread(void *arg)
{
	for (int j = 0; j < 30; j++) {
		struct lc_reqinfo r = req("m", 10, 10, NULL);
		struct lc_admit_req a = {.host = "api.openai.com", .port = 443, .api_key = "k-thr", .api_key_len = 5,
					 .info = &r};
		struct lc_decision d;
		struct lc_usage u = {.present = true, .input = 1, .output = 1};

		if (lc_admit(&a, &d) == LC_OK && d.verdict == LC_ALLOW) {
			__atomic_add_fetch(&thread_allowed, 1, __ATOMIC_SEQ_CST);
			lc_settle(d.ticket, &u, 200);
		}
	}
	return arg;
}

/* 8 threads of one process share the store handle: the cap holds exactly */
static void test_threads_race(void **st)
{
	pthread_t th[8];
	double used, reserved;

	install_daily_requests("thr", "k-thr", 100);
	thread_allowed = 0;
	for (int i = 0; i < 8; i++)
		assert_int_equal(pthread_create(&th[i], NULL, race_thread, NULL), 0);
	for (int i = 0; i < 8; i++)
		pthread_join(th[i], NULL);
	assert_int_equal(thread_allowed, 100);
	status_of("key", "thr", "requests", "daily", &used, &reserved);
	assert_true(used == 100 && reserved == 0);
}

static size_t counter_records(void)
{
	struct lc_store *s;
	MDB_txn *txn;
	MDB_stat stt;

	assert_int_equal(lc_store_open(false, &s), LC_OK);
	assert_int_equal(lc_store_begin(s, false, &txn), 0);
	assert_int_equal(mdb_stat(txn, s->dbi[LC_DB_COUNTERS], &stt), 0);
	lc_store_end(s, txn, false);
	return stt.ms_entries;
}

/* the ledger keeps one record per group: minutes going by add nothing to the store, the minute
 * window starts again at zero, lifetime usage stays */
static void test_ledger_does_not_grow(void **st)
{
	unsigned n = 0;
	double used, reserved;
	size_t before = 0;

	install("\"keys\":{\"pr\":{\"sha256\":\"%s\",\"limits\":[{\"metric\":\"requests\",\"window\":\"minute\","
		"\"threshold\":1},{\"metric\":\"requests\",\"window\":\"lifetime\",\"threshold\":100}]}}", fp("k-pr"));
	set_time("2026-05-01T10:00:00Z");
	for (int i = 0; i < 5; i++) {
		allow_one("k-pr");
		if (i == 0)
			before = counter_records();
		fake_now_ms += 60000;
	}
	assert_int_equal(counter_records(), before);
	status_of("key", "pr", "requests", "minute", &used, &reserved);
	assert_true(used == 0 && reserved == 0);  /* a new minute */
	status_of("key", "pr", "requests", "lifetime", &used, &reserved);
	assert_true(used == 5);
	set_time("2026-05-04T10:00:00Z");
	assert_int_equal(lc_prune(&n), LC_OK);
	status_of("key", "pr", "requests", "lifetime", &used, &reserved);
	assert_true(used == 5);                  /* lifetime usage is kept */
	lc_clock_hook = NULL;
}

/* A store whose map is too small for a policy grows on MDB_MAP_FULL instead of failing. */
static void test_map_full_grows(void **st)
{
	pid_t pid = fork();
	int status;

	if (pid == 0) {
		char dir[400], err[256], *env = NULL;
		struct lc_buf b;
		struct lc_store *s;
		MDB_envinfo info;
		size_t envlen;
		int64_t v = 0;

		snprintf(dir, sizeof(dir), "%s/mapfull", tmpdir);
		lc_state_dir_set(dir);
		lc_store_initial_map = 128 * 1024;  /* 128 KiB: far too small for 3000 keys (about 8 MiB) */
		lc_buf_init(&b, 8u << 20);
		lc_buf_printf(&b, "{\"schema\":1,\"version\":1,\"issued_at\":\"2026-01-01T00:00:00Z\","
				  "\"expires_at\":\"2099-01-01T00:00:00Z\",\"unknown_models\":\"allow\","
				  "\"providers\":[{\"name\":\"o\",\"format\":"
				  "\"openai\",\"hosts\":[\"api.openai.com\"]}],\"keys\":{");
		for (int i = 0; i < 3000; i++) {
			char k[32];

			snprintf(k, sizeof(k), "mapfull-%d", i);
			lc_buf_printf(&b, "%s\"k%d\":{\"sha256\":\"%s\",\"limits\":[{\"metric\":\"requests\","
					  "\"window\":\"daily\",\"threshold\":5}]}", i ? "," : "", i, fp(k));
		}
		lc_buf_addstr(&b, "}}");
		if (lc_dsse_sign(&skey, b.data, b.len, &env, &envlen, err, sizeof(err)))
			_exit(2);
		if (lc_apply_envelope(&trust, env, envlen, &v, err, sizeof(err)) || v != 1)
			_exit(3);
		if (lc_store_open(false, &s) || mdb_env_info(s->env, &info) || info.me_mapsize <= 128 * 1024)
			_exit(4);
		{
			struct lc_decision d = admit("mapfull-2999", req("m", 1, 1, NULL));

			_exit(d.verdict == LC_ALLOW ? 0 : 5);
		}
	}
	waitpid(pid, &status, 0);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
}

/* An event queued inside a decision can be the write that finds the map full: the transaction
 * must say so (not commit a poisoned transaction, which LMDB refuses with MDB_BAD_TXN), so the one
 * runner grows the map and decides again. Every refusal below queues a customer_budget event (a new
 * customer each time) into a store that starts at 64 KiB: the map has to grow during decisions,
 * every decision is still the 429, and every event is in the outbox. */
static void test_map_full_in_an_event_grows(void **st)
{
	pid_t pid = fork();
	int status;

	if (pid == 0) {
		char dir[400], doc[1024], err[256], *env = NULL;
		struct lc_store *s;
		MDB_envinfo info;
		size_t envlen, grown = 0, last;
		json_t *arr, *e;
		int n = 0, events = 0;

		snprintf(dir, sizeof(dir), "%s/mapfull-event", tmpdir);
		lc_state_dir_set(dir);
		setenv("LLMCAP_LOG", "off", 1);
		lc_store_initial_map = 64 * 1024;
		snprintf(doc, sizeof(doc),
			 "{\"schema\":1,\"version\":1,\"issued_at\":\"2026-01-01T00:00:00Z\","
			 "\"expires_at\":\"2099-01-01T00:00:00Z\",\"providers\":[{\"name\":\"openai\","
			 "\"format\":\"openai\",\"hosts\":[\"api.openai.com\"]}],\"prices\":{\"m\":{\"input\":1,"
			 "\"cached_input\":0.5,\"output\":2,\"max_output_tokens\":1000}},"
			 "\"customers\":{\"monthly_budget_usd\":0.000001}}");
		if (lc_dsse_sign(&skey, doc, strlen(doc), &env, &envlen, err, sizeof(err)) ||
		    lc_apply_envelope(&trust, env, envlen, NULL, err, sizeof(err)))
			_exit(2);
		free(env);
		if (lc_store_open(false, &s) || mdb_env_info(s->env, &info))
			_exit(3);
		last = info.me_mapsize;
		for (n = 0; n < 100000 && grown < 3; n++) {
			char cust[128];
			struct lc_decision d;

			snprintf(cust, sizeof(cust), "customer-%06d-%0100d", n, 0);
			d = admit("k-any", req("m", 500, 500, cust));
			if (d.verdict != LC_DENY || d.status != 429)
				_exit(4);
			if (mdb_env_info(s->env, &info))
				_exit(3);
			if (info.me_mapsize > last)
				grown++;
			last = info.me_mapsize;
		}
		if (grown < 3)
			_exit(5);  /* the test never filled the map */
		if (lc_outbox_list(0, 1000000, &arr))
			_exit(6);
		json_array_foreach(arr, envlen, e)
			events += !strcmp(json_string_value(json_object_get(e, "event")), "customer_budget_limit_reached");
		json_decref(arr);
		_exit(events == n ? 0 : 7);
	}
	waitpid(pid, &status, 0);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
}

/* A full disk (every write to the store fails: RLIMIT_FSIZE 0) refuses provider calls with a 503
 * and no crash; nothing already counted is lost, and the next process decides normally. */
static void test_full_disk_fails_closed(void **st)
{
	double used_before, used_after, reserved;
	pid_t pid;
	int status;

	install_daily_requests("fd", "k-fd", 100);
	allow_one("k-fd");
	status_of("key", "fd", "requests", "daily", &used_before, &reserved);
	pid = fork();
	if (pid == 0) {
		struct rlimit rl = {0, 0};
		struct lc_decision cd;
		int denied = 0;

		signal(SIGXFSZ, SIG_IGN);
		setenv("LLMCAP_LOG", "off", 1);
		if (setrlimit(RLIMIT_FSIZE, &rl))
			_exit(2);
		for (int i = 0; i < 5; i++) {
			struct lc_reqinfo ri = req("m", 1, 1, NULL);
			struct lc_admit_req a = {.host = "api.openai.com", .port = 443, .api_key = "k-fd",
						 .api_key_len = 4, .info = &ri};

			/* no cmocka asserts in a forked child: they would jump back into the test runner */
			lc_admit(&a, &cd);
			if (cd.verdict == LC_DENY && cd.status == 503 && strstr(cd.message, "store is unusable"))
				denied++;
		}
		_exit(denied == 5 ? 0 : 3);
	}
	waitpid(pid, &status, 0);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
	status_of("key", "fd", "requests", "daily", &used_after, &reserved);
	assert_true(used_after == used_before && reserved == 0);
	allow_one("k-fd");

	/* a policy install on a full disk is refused with a clear error; the installed one stays */
	{
		int64_t v_before = 0, v_after = 0;
		const char *doc = "{\"schema\":1,\"version\":999999,\"issued_at\":\"2026-01-01T00:00:00Z\","
				  "\"expires_at\":\"2099-01-01T00:00:00Z\",\"providers\":[{\"name\":\"x\","
				  "\"format\":\"openai\",\"hosts\":[\"x.example\"]}]}";
		char *env = NULL, err[256];
		size_t envlen;

		assert_int_equal(lc_policy_info(&v_before, NULL), LC_OK);
		assert_int_equal(lc_dsse_sign(&skey, doc, strlen(doc), &env, &envlen, err, sizeof(err)), 0);
		pid = fork();
		if (pid == 0) {
			struct rlimit rl = {0, 0};
			int rc;

			signal(SIGXFSZ, SIG_IGN);
			setenv("LLMCAP_LOG", "off", 1);
			if (setrlimit(RLIMIT_FSIZE, &rl))
				_exit(2);
			rc = lc_apply_envelope(&trust, env, envlen, NULL, err, sizeof(err));
			_exit(rc == LC_E_STORE && strstr(err, "state store") ? 0 : 3);
		}
		waitpid(pid, &status, 0);
		free(env);
		assert_true(WIFEXITED(status));
		assert_int_equal(WEXITSTATUS(status), 0);
		assert_int_equal(lc_policy_info(&v_after, NULL), LC_OK);
		assert_int_equal(v_after, v_before);
		assert_int_equal(admit("k-fd", req("m", 1, 1, NULL)).verdict, LC_ALLOW);
	}
}

static struct lc_decision admit_raw_http(const char *host, const char *raw)
{
	struct lc_reqparse rp;
	struct lc_decision d;
	size_t used;

	lc_reqparse_init(&rp);
	assert_int_equal(lc_reqparse_feed(&rp, raw, strlen(raw), &used), LC_PARSE_DONE);
	assert_int_equal(lc_admit_http(host, 443, &rp, &d), LC_OK);
	lc_reqparse_free(&rp);
	return d;
}

/* lc_admit_http: key from the header, customer by the policy's identifiers (and by the new ones
 * right after a policy changes them), 400 for a body it cannot read, PASS for other hosts. */
static void test_admit_http(void **st)
{
	char raw[1024];
	struct lc_decision d;
	const char *body = "{\"model\":\"m\",\"max_tokens\":5,\"user\":\"u1\",\"metadata\":{\"user_id\":\"u2\"},"
			   "\"messages\":[]}";

	install("\"customers\":{\"identify\":[\"body:user\"],\"rate_limit_rpm\":0}");
	snprintf(raw, sizeof(raw), "POST /v1/chat/completions HTTP/1.1\r\nHost: api.openai.com\r\n"
		 "Authorization: Bearer k-http\r\nContent-Length: %zu\r\n\r\n%s", strlen(body), body);
	d = admit_raw_http("api.openai.com", raw);
	assert_int_equal(d.verdict, LC_DENY);          /* rpm 0 for customer u1 */
	assert_string_equal(d.limit, "customer:u1:requests:minute");
	install("\"customers\":{\"identify\":[\"body:metadata.user_id\"],\"rate_limit_rpm\":0}");
	d = admit_raw_http("api.openai.com", raw);
	assert_int_equal(d.verdict, LC_DENY);
	assert_string_equal(d.limit, "customer:u2:requests:minute");  /* the new identifier, at once */
	install("\"customers\":{\"identify\":[\"header:x-nobody\"],\"rate_limit_rpm\":0}");
	d = admit_raw_http("api.openai.com", raw);
	assert_int_equal(d.verdict, LC_ALLOW);
	assert_int_equal(lc_settle(d.ticket, NULL, 200), LC_OK);
	snprintf(raw, sizeof(raw), "POST /v1/chat/completions HTTP/1.1\r\nHost: api.openai.com\r\n"
		 "Authorization: Bearer k-http\r\nContent-Length: 9\r\n\r\n{\"model\":");
	d = admit_raw_http("api.openai.com", raw);
	assert_int_equal(d.verdict, LC_DENY);
	assert_int_equal(d.status, 400);
	assert_non_null(strstr(d.message, "cannot read this request"));
	d = admit_raw_http("example.com", raw);
	assert_int_equal(d.verdict, LC_PASS);
}

static void set_compiled_format(uint32_t fmt)
{
	struct lc_store *s;
	MDB_txn *txn;
	MDB_val k = {.mv_size = 3, .mv_data = "cfg"}, v;
	unsigned char buf[4096];

	assert_int_equal(lc_store_open(false, &s), LC_OK);
	assert_int_equal(lc_store_begin(s, true, &txn), 0);
	assert_int_equal(mdb_get(txn, s->dbi[LC_DB_META], &k, &v), 0);
	assert_true(v.mv_size <= sizeof(buf));
	memcpy(buf, v.mv_data, v.mv_size);
	memcpy(buf, &fmt, sizeof(fmt));
	v.mv_data = buf;
	assert_int_equal(mdb_put(txn, s->dbi[LC_DB_META], &k, &v, 0), 0);
	assert_int_equal(lc_store_end(s, txn, true), 0);
}

static int child_admit_verdict(const char *key)
{
	pid_t pid = fork();
	int status;

	if (pid == 0) {
		struct lc_reqinfo r = req("m", 1, 1, NULL);
		struct lc_admit_req a = {.host = "api.openai.com", .port = 443, .api_key = key,
					 .api_key_len = strlen(key), .info = &r};
		struct lc_decision d;

		setenv("LLMCAP_LOG", "off", 1);
		lc_admit(&a, &d);
		if (d.verdict == LC_ALLOW)
			lc_settle(d.ticket, NULL, 200);
		_exit(d.verdict == LC_ALLOW ? 10 : d.verdict == LC_DENY ? 20 + (d.status == 503) : 30);
	}
	waitpid(pid, &status, 0);
	return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/* Upgrading llmcap: a store compiled by an older version is recompiled from the stored payload
 * when a newer process opens it; a process older than the store refuses (fail closed). */
static void test_compiled_format_upgrade(void **st)
{
	install_daily_requests("up", "k-up", 100);
	assert_int_equal(child_admit_verdict("k-up"), 10);
	set_compiled_format(0x4c430001u);          /* as an older llmcap left it */
	assert_int_equal(child_admit_verdict("k-up"), 10);   /* the child's fresh open recompiled it */
	set_compiled_format(0x4c43ffffu);          /* as a newer llmcap left it */
	assert_int_equal(child_admit_verdict("k-up"), 21);   /* DENY 503 */
	install("\"keys\":{\"up\":{\"sha256\":\"%s\"}}", fp("k-up"));  /* re-apply repairs it */
	assert_int_equal(child_admit_verdict("k-up"), 10);
}

/* an alert event's data: its level, the usage and threshold it names, when the window resets */
static void expect_level(json_t *data, const char *level, int64_t used, int64_t threshold, const char *resets_at)
{
	assert_non_null(data);
	assert_string_equal(json_string_value(json_object_get(data, "level")), level);
	assert_int_equal(json_integer_value(json_object_get(data, "used")), used);
	assert_int_equal(json_integer_value(json_object_get(data, "threshold")), threshold);
	assert_string_equal(json_string_value(json_object_get(data, "resets_at")), resets_at);
}

/* alert_at fires limit_alert once when *settled* usage crosses it (key and team scopes) */
static void test_alert_at_on_settle(void **st)
{
	struct lc_decision d;

	install("\"teams\":{\"al\":{\"limits\":[{\"metric\":\"tokens\",\"window\":\"monthly\",\"threshold\":100000,"
		"\"alert_at\":250}]}},\"keys\":{\"alk\":{\"sha256\":\"%s\",\"team\":\"al\",\"limits\":["
		"{\"metric\":\"tokens\",\"window\":\"daily\",\"threshold\":100000,\"alert_at\":150}]}}", fp("k-al"));
	d = admit("k-al", req("m", 1000, 1000, NULL));  /* the estimate (2000) is far above alert_at */
	assert_int_equal(d.verdict, LC_ALLOW);
	assert_int_equal(outbox_count_limit("limit_alert", "key:alk:tokens:daily"), 0);  /* not on the estimate */
	settle_usage(d.ticket, 50, 0, 50);                 /* 100 tokens: below both */
	assert_int_equal(outbox_count_limit("limit_alert", "key:alk:tokens:daily"), 0);
	d = admit("k-al", req("m", 10, 10, NULL));
	settle_usage(d.ticket, 50, 0, 50);                 /* 200: crosses the key's 150 */
	assert_int_equal(outbox_count_limit("limit_alert", "key:alk:tokens:daily"), 1);
	assert_int_equal(outbox_count_limit("limit_alert", "team:al:tokens:monthly"), 0);
	d = admit("k-al", req("m", 10, 10, NULL));
	settle_usage(d.ticket, 50, 0, 50);                 /* 300: crosses the team's 250 */
	assert_int_equal(outbox_count_limit("limit_alert", "team:al:tokens:monthly"), 1);
	d = admit("k-al", req("m", 10, 10, NULL));
	settle_usage(d.ticket, 50, 0, 50);                 /* once per window */
	assert_int_equal(outbox_count_limit("limit_alert", "key:alk:tokens:daily"), 1);
	assert_int_equal(outbox_count_limit("limit_alert", "team:al:tokens:monthly"), 1);
}

/* the data of the n-th (from 0) event of this name and limit; NULL when none (a new reference) */
static json_t *outbox_event_data(const char *event, const char *limit, int nth)
{
	json_t *arr, *e, *out = NULL;
	size_t i;

	assert_int_equal(lc_outbox_list(0, 100000, &arr), LC_OK);
	json_array_foreach(arr, i, e)
		if (!strcmp(json_string_value(json_object_get(e, "event")), event) &&
		    !strcmp(json_string_value(json_object_get(json_object_get(e, "data"), "limit")), limit) &&
		    nth-- == 0) {
			out = json_incref(json_object_get(e, "data"));
			break;
		}
	json_decref(arr);
	return out;
}

/* three alert levels fire once each per window, the projection once per window (not at the
 * window's start), each event naming its level, used, threshold and reset time */
static void test_alert_levels_and_projection(void **st)
{
	static const char *const lim = "key:lv:tokens:daily";
	struct lc_decision d;
	json_t *data;
	static const struct {
		const char *at;
		int64_t tokens;
		int alerts, projected;
	} steps[] = {
		{"2032-03-03T12:00:00Z", 100, 0, 0},  /* 100: projected 200, below 1000 */
		{"2032-03-03T12:00:00Z", 400, 1, 1},  /* 500: 50%; at this rate 1000 by the reset */
		{"2032-03-03T12:00:00Z", 300, 2, 1},  /* 800: 80% */
		{"2032-03-03T12:00:00Z", 150, 3, 1},  /* 950: 95% */
		{"2032-03-03T18:00:00Z", 10, 3, 1},   /* 960: every level has told once */
		{"2032-03-04T00:30:00Z", 600, 4, 1},  /* next window: 50% again; 30 minutes in is too early to project */
		{"2032-03-04T12:00:00Z", 10, 4, 2},   /* 610 by noon: projected 1220 */
	};

	install("\"keys\":{\"lv\":{\"sha256\":\"%s\",\"limits\":[{\"metric\":\"tokens\",\"window\":\"daily\","
		"\"threshold\":1000,\"alert_at\":[\"50%%\",\"95%%\",800],\"alert_projected\":true}]}}", fp("k-lv"));
	for (size_t i = 0; i < sizeof(steps) / sizeof(steps[0]); i++) {
		set_time(steps[i].at);
		d = admit("k-lv", req("m", 1, 1, NULL));
		assert_int_equal(d.verdict, LC_ALLOW);
		settle_usage(d.ticket, steps[i].tokens, 0, 0);
		assert_int_equal(outbox_count_limit("limit_alert", lim), steps[i].alerts);
		assert_int_equal(outbox_count_limit("limit_projected", lim), steps[i].projected);
	}
	data = outbox_event_data("limit_alert", lim, 1);
	expect_level(data, "alert_at", 800, 1000, "2032-03-04T00:00:00Z");
	assert_int_equal(json_integer_value(json_object_get(data, "alert_at")), 800);
	assert_int_equal(json_array_size(json_object_get(data, "alert_levels")), 3);
	json_decref(data);
	data = outbox_event_data("limit_projected", lim, 0);
	expect_level(data, "projected", 500, 1000, "2032-03-04T00:00:00Z");
	assert_int_equal(json_integer_value(json_object_get(data, "projected")), 1000);
	json_decref(data);
	data = outbox_event_data("limit_projected", lim, 1);
	assert_non_null(data);
	assert_int_equal(json_integer_value(json_object_get(data, "projected")), 1220);
	json_decref(data);
	lc_clock_hook = NULL;
}

/* the org's warning threshold and alert_at, and customers' monthly budgets (defaults and an
 * override), fire each level once per window and the projection once, through the same rules as a
 * key's limit; each event names limit, level, used, threshold and reset time */
static void test_org_and_customer_levels(void **st)
{
	static const char *const org = "org:org:cost:monthly", *small = "customer:small:cost:monthly",
			  *big = "customer:big:cost:monthly";
	struct lc_decision d;
	json_t *data;
	int org_warn0;
	/* prices: $1 per million input tokens, so N input tokens cost N micro-USD; half of May is over
	 * (a usage u projects to u * 31 / 15) */
	static const struct {
		const char *at, *cust;
		int64_t in;
		int org_warn, org_proj, small_alert, small_proj, big_alert, big_proj;
	} steps[] = {
		{"2033-05-16T12:00:00Z", "small", 1000, 0, 0, 1, 0, 0, 0},  /* small 1000: 25% of $0.004 */
		{"2033-05-16T12:00:00Z", "small", 1000, 0, 0, 2, 1, 0, 0},  /* small 2000: 50%; projects 4133 >= 4000 */
		{"2033-05-16T12:00:00Z", "big", 3000, 1, 0, 2, 1, 0, 0},    /* org 5000: 12.5% of $0.04 */
		{"2033-05-16T12:00:00Z", "big", 5000, 2, 0, 2, 1, 0, 0},    /* org 10000: 25% */
		{"2033-05-16T12:00:00Z", "big", 7000, 2, 0, 2, 1, 1, 1},    /* big 15000: its own 75% of $0.02 */
		{"2033-05-16T12:00:00Z", "big", 1500, 3, 0, 2, 1, 1, 1},    /* org 18500: the warning threshold $0.018 */
		{"2033-05-16T12:00:00Z", "big", 2000, 3, 1, 2, 1, 1, 1},    /* org 20500 projects 42367 >= 40000 */
		{"2033-05-20T12:00:00Z", "small", 500, 3, 1, 2, 1, 1, 1},   /* nothing fires twice in a window */
		{"2033-06-02T00:00:00Z", "small", 2000, 3, 1, 4, 1, 1, 1},  /* June: both levels again, too early to project */
	};

	install("\"org\":{\"spend_cap_usd\":0.04,\"warning_threshold_usd\":0.018,\"alert_at\":[\"25%%\",\"12.5%%\"],"
		"\"alert_projected\":true},"
		"\"customers\":{\"monthly_budget_usd\":0.004,\"alert_at\":[\"25%%\",\"50%%\"],\"alert_projected\":true,"
		"\"overrides\":{\"big\":{\"monthly_budget_usd\":0.02,\"alert_at\":[\"75%%\"]}}}");
	org_warn0 = outbox_count_limit("spend_cap_warning_threshold_reached", org);   /* earlier tests' months */
	for (size_t i = 0; i < sizeof(steps) / sizeof(steps[0]); i++) {
		set_time(steps[i].at);
		d = admit("anyone", req("m", 1, 1, steps[i].cust));
		if (d.verdict != LC_ALLOW)
			print_message("step %zu refused by %s: %s\n", i, d.limit, d.message);
		assert_int_equal(d.verdict, LC_ALLOW);
		settle_usage(d.ticket, steps[i].in, 0, 0);
		assert_int_equal(outbox_count_limit("spend_cap_warning_threshold_reached", org), org_warn0 + steps[i].org_warn);
		assert_int_equal(outbox_count_limit("limit_projected", org), steps[i].org_proj);
		assert_int_equal(outbox_count_limit("limit_alert", small), steps[i].small_alert);
		assert_int_equal(outbox_count_limit("limit_projected", small), steps[i].small_proj);
		assert_int_equal(outbox_count_limit("limit_alert", big), steps[i].big_alert);
		assert_int_equal(outbox_count_limit("limit_projected", big), steps[i].big_proj);
	}
	data = outbox_event_data("spend_cap_warning_threshold_reached", org, org_warn0 + 1);
	assert_non_null(data);
	assert_string_equal(json_string_value(json_object_get(data, "level")), "alert_at");
	assert_true(json_real_value(json_object_get(data, "alert_at")) == 0.01);
	assert_true(json_real_value(json_object_get(data, "used")) == 0.01);
	assert_true(json_real_value(json_object_get(data, "threshold")) == 0.04);
	assert_int_equal(json_array_size(json_object_get(data, "alert_levels")), 3);
	assert_string_equal(json_string_value(json_object_get(data, "resets_at")), "2033-06-01T00:00:00Z");
	json_decref(data);
	data = outbox_event_data("limit_alert", big, 0);
	assert_non_null(data);
	assert_true(json_real_value(json_object_get(data, "alert_at")) == 0.015);
	assert_true(json_real_value(json_object_get(data, "threshold")) == 0.02);
	assert_true(json_real_value(json_object_get(data, "used")) == 0.015);
	json_decref(data);
	data = outbox_event_data("limit_projected", small, 0);
	assert_non_null(data);
	assert_string_equal(json_string_value(json_object_get(data, "level")), "projected");
	assert_true(json_real_value(json_object_get(data, "used")) == 0.002);
	assert_true(json_real_value(json_object_get(data, "projected")) >= 0.004);
	assert_string_equal(json_string_value(json_object_get(data, "resets_at")), "2033-06-01T00:00:00Z");
	json_decref(data);
	lc_clock_hook = NULL;
}

/* a run (llmcap run --max-requests): its cap holds for processes with its LLMCAP_RUN_ID while its
 * owner lives, and not for others; once its owner is gone it is ignored and pruned */
static void test_run_caps(void **st)
{
	char id[33], dead[33];
	struct lc_decision d;
	unsigned removed = 0;
	int status;
	pid_t pid;

	lc_clock_hook = NULL;
	install("");
	assert_int_equal(lc_run_begin(-1, 1, id), LC_OK);
	d = admit("k-run", req("m", 1, 1, NULL));
	assert_int_equal(d.verdict, LC_ALLOW);               /* not in the run: no cap */
	settle_usage(d.ticket, 1, 0, 1);
	allow_one("k-run");
	setenv("LLMCAP_RUN_ID", id, 1);
	d = admit("k-run", req("m", 1, 1, NULL));
	assert_int_equal(d.verdict, LC_ALLOW);               /* the run's one request */
	settle_usage(d.ticket, 1, 0, 1);
	d = admit("k-run", req("m", 1, 1, NULL));
	assert_int_equal(d.verdict, LC_DENY);
	assert_int_equal(d.status, 429);
	assert_non_null(strstr(d.limit, ":requests:lifetime"));
	assert_memory_equal(d.limit, "run:", 4);
	assert_non_null(strstr(d.message, "request cap of 1 for this run (llmcap run --max-requests"));
	assert_false(d.should_retry);
	assert_int_equal(lc_run_end(id), LC_OK);
	d = admit("k-run", req("m", 1, 1, NULL));
	assert_int_equal(d.verdict, LC_ALLOW);               /* the run is over: its cap with it */
	settle_usage(d.ticket, 1, 0, 1);

	/* a run whose owner died (kill -9 of llmcap run): ignored, then pruned */
	unsetenv("LLMCAP_RUN_ID");
	assert_int_equal(lc_prune(&removed), LC_OK);         /* whatever else was stale */
	pid = fork();
	if (pid == 0) {
		char cid[33];

		_exit(lc_run_begin(-1, 0, cid) == LC_OK ? 0 : 1);
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	{
		json_t *stj = NULL, *l;
		size_t i;

		assert_int_equal(lc_status_json(&stj), LC_OK);
		json_array_foreach(json_object_get(stj, "limits"), i, l)
			assert_string_not_equal(json_string_value(json_object_get(l, "scope")), "run");
		json_decref(stj);
	}
	/* a request in flight when its run ends settles into a group with no run (pruned below) */
	assert_int_equal(lc_run_begin(-1, 5, id), LC_OK);
	setenv("LLMCAP_RUN_ID", id, 1);
	d = admit("k-run", req("m", 1, 1, NULL));
	assert_int_equal(d.verdict, LC_ALLOW);
	assert_int_equal(lc_run_end(id), LC_OK);
	settle_usage(d.ticket, 1, 0, 1);
	unsetenv("LLMCAP_RUN_ID");
	assert_int_equal(lc_prune(&removed), LC_OK);
	assert_int_equal(removed, 2);   /* the dead run's record, and the group the late settle wrote */
	assert_int_equal(lc_prune(&removed), LC_OK);
	assert_int_equal(removed, 0);
	snprintf(dead, sizeof(dead), "%s", id);
	setenv("LLMCAP_RUN_ID", dead, 1);
	d = admit("k-run", req("m", 1, 1, NULL));
	assert_int_equal(d.verdict, LC_ALLOW);               /* an id with no run is no cap */
	settle_usage(d.ticket, 1, 0, 1);
	unsetenv("LLMCAP_RUN_ID");
}

/* Large rpm (bucketed): never more than rpm admissions in any 60-second interval, checked over
 * 5 minutes of bursty traffic; and a burst is held until its second leaves the window. */
static void test_customer_rpm_large(void **st)
{
	static int64_t admitted[20000];
	int na = 0;
	struct lc_decision d;
	int64_t t0;

	install("\"customers\":{\"rate_limit_rpm\":300}");
	set_time("2026-04-01T00:00:00Z");
	t0 = fake_now_ms;
	for (int i = 0; i < 400; i++) {  /* a burst in the first second */
		d = admit("k", req("m", 1, 1, "bulk"));
		if (d.verdict == LC_ALLOW) {
			admitted[na++] = fake_now_ms;
			settle_usage(d.ticket, 1, 0, 1);
		}
	}
	assert_int_equal(na, 300);
	fake_now_ms = t0 + 60 * 1000;  /* second 60: second 0 is still inside [S-60, S] */
	d = admit("k", req("m", 1, 1, "bulk"));
	assert_int_equal(d.verdict, LC_DENY);
	assert_string_equal(d.limit, "customer:bulk:requests:minute");
	assert_true(d.retry_after >= 1 && d.retry_after <= 2);
	fake_now_ms = t0 + 61 * 1000;
	d = admit("k", req("m", 1, 1, "bulk"));
	assert_int_equal(d.verdict, LC_ALLOW);
	admitted[na++] = fake_now_ms;
	settle_usage(d.ticket, 1, 0, 1);
	/* then 5 minutes of requests every 37..473 ms */
	srand(7);
	for (int i = 0; i < 3000; i++) {
		fake_now_ms += 37 + rand() % 437;
		d = admit("k", req("m", 1, 1, "bulk"));
		if (d.verdict == LC_ALLOW) {
			admitted[na++] = fake_now_ms;
			settle_usage(d.ticket, 1, 0, 1);
		}
	}
	for (int i = 0, j = 0; i < na; i++) {  /* every 60 s interval ending at an admission */
		while (admitted[j] <= admitted[i] - 60000)
			j++;
		if (i - j + 1 > 300)
			fail_msg("%d admissions in the 60 s ending at +%lld ms", i - j + 1, (long long)(admitted[i] - t0));
	}
	assert_true(na > 1000);  /* and it did admit steadily */
	lc_clock_hook = NULL;
}

static void test_anthropic_format(void **st)
{
	struct lc_decision d;

	install_daily_requests("an", "k-an", 0);
	d = admit_as("API.Anthropic.com", "k-an", req("m", 1, 1, NULL));
	assert_int_equal(d.verdict, LC_DENY);
	assert_int_equal(d.format, LC_FMT_ANTHROPIC);
}

static void test_store_missing_passes_and_corrupt_fails_closed(void **st)
{
	char dir[300], path[400];
	pid_t pid;
	int status;

	/* a fresh process with no state directory at all: provider calls pass */
	pid = fork();
	if (pid == 0) {
		struct lc_reqinfo r = req("m", 1, 1, NULL);
		struct lc_admit_req a = {.host = "api.openai.com", .info = &r};
		struct lc_decision d;

		snprintf(dir, sizeof(dir), "%s/nonexistent", tmpdir);
		lc_state_dir_set(dir);
		lc_admit(&a, &d);
		_exit(d.verdict == LC_PASS ? 0 : 1);
	}
	waitpid(pid, &status, 0);
	assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	/* a store that exists but is garbage: provider calls are refused with 503, no crash */
	snprintf(dir, sizeof(dir), "%s/corrupt", tmpdir);
	assert_int_equal(mkdir(dir, 0755), 0);
	snprintf(path, sizeof(path), "%s/data.mdb", dir);
	{
		FILE *f = fopen(path, "w");

		for (int i = 0; i < 10000; i++)
			fputs("garbage!", f);
		fclose(f);
	}
	pid = fork();
	if (pid == 0) {
		struct lc_reqinfo r = req("m", 1, 1, NULL);
		struct lc_admit_req a = {.host = "api.openai.com", .info = &r};
		struct lc_decision d;

		lc_state_dir_set(dir);
		setenv("LLMCAP_LOG", "off", 1);
		lc_admit(&a, &d);
		_exit(d.verdict == LC_DENY && d.status == 503 ? 0 : 1);
	}
	waitpid(pid, &status, 0);
	assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

/* The decision counters (llmcap agent --metrics) moved from the meta tree into the counters tree
 * (an admit then dirties no other B-tree); a store written by an older llmcap keeps counting
 * from its total, never from zero. */
static void test_decision_stats_carry_over(void **st)
{
	uint64_t old[1 + LC_DENY_REASONS] = {41, 0, 0, 0, 0, 0, 3};
	struct lc_host_stats hs;
	struct lc_decision d;
	struct lc_store *s;
	MDB_txn *txn;
	MDB_val k = {.mv_size = 15, .mv_data = "stats.decisions"}, v = {.mv_size = sizeof(old), .mv_data = old};
	MDB_val nk = {.mv_size = 11, .mv_data = "S.decisions"};
	int rc;

	install("\"keys\":{\"a\":{\"sha256\":\"%s\",\"limits\":[]}}", fp("k-stats"));
	/* the store as an older llmcap left it: the counters in the meta tree only */
	assert_int_equal(lc_store_open(false, &s), LC_OK);
	assert_int_equal(lc_store_begin(s, true, &txn), 0);
	rc = mdb_del(txn, s->dbi[LC_DB_COUNTERS], &nk, NULL);
	assert_true(rc == 0 || rc == MDB_NOTFOUND);
	assert_int_equal(mdb_put(txn, s->dbi[LC_DB_META], &k, &v, 0), 0);
	assert_int_equal(lc_store_end(s, txn, true), 0);
	for (int i = 0; i < 2; i++) {
		d = admit("k-stats", req("m", 10, 10, NULL));
		assert_int_equal(d.verdict, LC_ALLOW);
		settle_usage(d.ticket, 1, 0, 1);
		assert_int_equal(lc_host_stats_get(&hs), LC_OK);
		assert_int_equal(hs.allowed, 42 + i);
		assert_int_equal(hs.denied[LC_DENY_KEY_REFUSED], 3);
	}
}

static void test_fork_child_reopens(void **st)
{
	struct lc_decision d;
	pid_t pid;
	int status;

	install_daily_requests("fk", "k-fk", 2);
	d = admit("k-fk", req("m", 1, 1, NULL));  /* the parent's env is open */
	assert_int_equal(d.verdict, LC_ALLOW);
	settle_usage(d.ticket, 1, 0, 1);
	pid = fork();
	if (pid == 0) {
		struct lc_decision cd = admit("k-fk", req("m", 1, 1, NULL));

		if (cd.verdict != LC_ALLOW)
			_exit(1);
		settle_usage(cd.ticket, 1, 0, 1);
		_exit(0);
	}
	waitpid(pid, &status, 0);
	assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	/* the parent sees the child's usage and keeps working */
	assert_int_equal(admit("k-fk", req("m", 1, 1, NULL)).verdict, LC_DENY);
}

/* Leases (policy "leases": true): a shared limit admits only within the slice granted to this
 * host, checked in admit's transaction; the plan asks for what a refused request needed; an
 * answer for an older call is ignored; a slice expires after its TTL. */
static void test_leases_slice(void **st)
{
	struct lc_decision d;
	json_t *plan = NULL, *e, *ans;
	int allowed = 0;

	set_time("2026-12-01T10:00:00Z");
	install("\"leases\":true,\"teams\":{\"t\":{\"limits\":[{\"metric\":\"requests\",\"window\":\"daily\","
		"\"threshold\":100}]}},\"keys\":{\"ci\":{\"sha256\":\"%s\",\"team\":\"t\",\"limits\":[{\"metric\":\"cost\","
		"\"window\":\"daily\",\"threshold\":5,\"action\":\"warn\"}]}}", fp("k-lease"));
	/* the policy was installed: the first plan asks for a slice of every shared limit it names, the
	 * team's (the key's warn limit is not shared) */
	assert_int_equal(lc_lease_plan(0, &plan), LC_OK);
	assert_non_null(plan);
	assert_int_equal(json_array_size(json_object_get(plan, "leases")), 1);
	e = json_array_get(json_object_get(plan, "leases"), 0);
	assert_string_equal(json_string_value(json_object_get(e, "limit")), "team:t:requests:daily");
	assert_true(json_integer_value(json_object_get(e, "want")) >= 1);
	json_decref(plan);
	/* no answer yet, no agent reaching a server (no LC_LEASE_UP tick): refused at once */
	d = admit("k-lease", req("m", 10, 10, NULL));
	assert_int_equal(d.verdict, LC_DENY);
	assert_int_equal(d.status, 429);
	assert_string_equal(d.limit, "team:t:requests:daily");
	assert_non_null(strstr(d.message, "this host's share of the daily requests limit of 100 for team 't' is not granted yet"));
	assert_true(d.should_retry);
	assert_int_equal(d.retry_after, 1);
	/* the plan asks again, for what the refused request needed */
	assert_int_equal(lc_lease_plan(0, &plan), LC_OK);
	assert_non_null(plan);
	assert_int_equal(json_array_size(json_object_get(plan, "leases")), 1);
	e = json_array_get(json_object_get(plan, "leases"), 0);
	assert_string_equal(json_string_value(json_object_get(e, "limit")), "team:t:requests:daily");
	assert_int_equal(json_integer_value(json_object_get(e, "used")), 0);
	assert_int_equal(json_integer_value(json_object_get(e, "held")), 0);
	assert_true(json_integer_value(json_object_get(e, "want")) >= 1);
	assert_int_equal(json_integer_value(json_object_get(e, "need")), 1);
	ans = json_pack("{s:i,s:[{s:s,s:O,s:i,s:b}]}", "ttl_seconds", 30, "grants", "limit", "team:t:requests:daily",
			"bucket", json_object_get(e, "bucket"), "allow", 3, "exhausted", 0);
	assert_int_equal(lc_lease_apply(plan, ans, fake_now_ms), LC_OK);
	for (int i = 0; i < 5; i++) {
		d = admit("k-lease", req("m", 10, 10, NULL));
		if (d.verdict == LC_ALLOW) {
			allowed++;
			settle_usage(d.ticket, 1, 0, 1);
		}
	}
	assert_int_equal(allowed, 3);   /* exactly the slice */
	assert_non_null(strstr(d.message, "is used up (3 used here + 1 this request"));
	/* an answer to an older call changes nothing */
	json_t *old = plan;
	assert_int_equal(lc_lease_plan(0, &plan), LC_OK);
	assert_non_null(plan);
	json_object_set_new(json_array_get(json_object_get(ans, "grants"), 0), "allow", json_integer(50));
	assert_int_equal(lc_lease_apply(old, ans, fake_now_ms), LC_OK);
	assert_int_equal(admit("k-lease", req("m", 10, 10, NULL)).verdict, LC_DENY);
	/* the current one does; the slice ends with its TTL */
	json_object_set_new(json_array_get(json_object_get(ans, "grants"), 0), "bucket",
			    json_incref(json_object_get(json_array_get(json_object_get(plan, "leases"), 0), "bucket")));
	assert_int_equal(lc_lease_apply(plan, ans, fake_now_ms), LC_OK);
	d = admit("k-lease", req("m", 10, 10, NULL));
	assert_int_equal(d.verdict, LC_ALLOW);
	settle_usage(d.ticket, 1, 0, 1);
	fake_now_ms += 31000;
	assert_int_equal(admit("k-lease", req("m", 10, 10, NULL)).verdict, LC_DENY);
	json_decref(old);
	json_decref(plan);
	json_decref(ans);
	/* a policy without "leases": the same limit is enforced locally, as a standalone host does */
	install("\"teams\":{\"t\":{\"limits\":[{\"metric\":\"requests\",\"window\":\"daily\",\"threshold\":100}]}},"
		"\"keys\":{\"ci\":{\"sha256\":\"%s\",\"team\":\"t\"}}", fp("k-lease"));
	assert_int_equal(admit("k-lease", req("m", 10, 10, NULL)).verdict, LC_ALLOW);
	assert_int_equal(lc_lease_plan(0, &plan), LC_OK);
	assert_null(plan);
	lc_clock_hook = NULL;
}

/* the agent's lease thread: answers the call the plan makes when a request waits for its slice */
static void *lease_agent(void *arg)
{
	int *granted = arg;

	for (int i = 0; i < 2000 && !*granted; i++) {
		json_t *plan = NULL, *ans;

		usleep(2000);
		if (lc_lease_plan(LC_LEASE_UP, &plan) != LC_OK || !plan)
			continue;
		json_t *e = json_array_get(json_object_get(plan, "leases"), 0);
		if (json_integer_value(json_object_get(e, "need")) > 0) {
			ans = json_pack("{s:i,s:[{s:O,s:O,s:i,s:b}]}", "ttl_seconds", 30, "grants", "limit",
					json_object_get(e, "limit"), "bucket", json_object_get(e, "bucket"), "allow", 5,
					"exhausted", 0);
			*granted = lc_lease_apply(plan, ans, lc_now_ms()) == LC_OK;
			json_decref(ans);
		}
		json_decref(plan);
	}
	return NULL;
}

/* A request with no slice yet while the agent reaches a server (its plan ran with LC_LEASE_UP) waits
 * for the agent's answer instead of a 429, and is decided again; with the agent away it is refused at
 * once. */
static void test_leases_first_request_waits(void **st)
{
	struct lc_decision d;
	json_t *plan = NULL;
	pthread_t th;
	int granted = 0;

	install("\"leases\":true,\"teams\":{\"w\":{\"limits\":[{\"metric\":\"requests\",\"window\":\"daily\","
		"\"threshold\":100}]}},\"keys\":{\"cw\":{\"sha256\":\"%s\",\"team\":\"w\"}}", fp("k-wait"));
	assert_int_equal(lc_lease_plan(0, &plan), LC_OK);   /* the prefetch, never answered; no tick */
	json_decref(plan);
	d = admit("k-wait", req("m", 10, 10, NULL));
	assert_int_equal(d.verdict, LC_DENY);              /* no agent reaching a server: at once */
	assert_int_equal(d.status, 429);
	assert_int_equal(lc_lease_plan(LC_LEASE_UP, &plan), LC_OK);   /* an agent that reaches a server */
	json_decref(plan);
	assert_int_equal(pthread_create(&th, NULL, lease_agent, &granted), 0);
	d = admit("k-wait", req("m", 10, 10, NULL));
	pthread_join(th, NULL);
	assert_true(granted);
	assert_int_equal(d.verdict, LC_ALLOW);             /* waited for the slice, then admitted */
	settle_usage(d.ticket, 1, 0, 1);
	/* the agent stops reaching the server (its plan without LC_LEASE_UP): refusals come at once again */
	assert_int_equal(lc_lease_plan(0, &plan), LC_OK);
	json_decref(plan);
	for (int i = 0; i < 5; i++) {
		d = admit("k-wait", req("m", 10, 10, NULL));
		if (d.verdict == LC_ALLOW)
			settle_usage(d.ticket, 1, 0, 1);
	}
	assert_int_equal(d.verdict, LC_DENY);              /* 5 granted, all spent */
	assert_non_null(strstr(d.message, "is used up"));
}

/* A host whose slice cannot admit its refused request, after the server said it had nothing more,
 * gives the slice back with its next ask and stops spending it: leftovers too small for a request
 * gather where one fits instead of each host keeping its own (the fleet's last units, deadlocked). */
static void test_leases_give_back_leftover(void **st)
{
	struct lc_decision d;
	json_t *plan = NULL, *e, *ans;

	set_time("2026-12-01T10:00:00Z");
	install("\"leases\":true,\"teams\":{\"g\":{\"limits\":[{\"metric\":\"cost\",\"window\":\"daily\","
		"\"threshold\":1}]}},\"keys\":{\"cg\":{\"sha256\":\"%s\",\"team\":\"g\"}}", fp("k-give"));
	assert_int_equal(admit("k-give", req("m", 1000, 1000, NULL)).verdict, LC_DENY);   /* no slice: $0.003 needed */
	assert_int_equal(lc_lease_plan(0, &plan), LC_OK);
	assert_non_null(plan);
	e = json_array_get(json_object_get(plan, "leases"), 0);
	assert_int_equal(json_integer_value(json_object_get(e, "need")), 3000);
	/* the server had only $0.002 left */
	ans = json_pack("{s:i,s:[{s:s,s:O,s:i,s:b}]}", "ttl_seconds", 30, "grants", "limit", "team:g:cost:daily",
			"bucket", json_object_get(e, "bucket"), "allow", 2000, "exhausted", 1);
	assert_int_equal(lc_lease_apply(plan, ans, fake_now_ms), LC_OK);
	json_decref(plan);
	json_decref(ans);
	d = admit("k-give", req("m", 1000, 1000, NULL));
	assert_int_equal(d.verdict, LC_DENY);
	assert_non_null(strstr(d.message, "reached across all hosts"));
	fake_now_ms += 1500;   /* past the quiet spell after an exhausted answer */
	assert_int_equal(lc_lease_plan(0, &plan), LC_OK);
	assert_non_null(plan);
	e = json_array_get(json_object_get(plan, "leases"), 0);
	assert_int_equal(json_integer_value(json_object_get(e, "used")), 0);
	assert_int_equal(json_integer_value(json_object_get(e, "held")), 0);   /* the $0.002 given back */
	assert_int_equal(json_integer_value(json_object_get(e, "need")), 3000);
	/* ... and not spent meanwhile, even by a request that would fit in it */
	assert_int_equal(admit("k-give", req("m", 500, 500, NULL)).verdict, LC_DENY);
	json_decref(plan);
	lc_clock_hook = NULL;
}

static int setup(void **st)
{
	main_pid = getpid();
	return lc_fixture_setup("engine", tmpdir, sizeof(tmpdir), &skey, &trust);
}

static int teardown(void **st)
{
	return lc_fixture_teardown(tmpdir);
}

/* one row of lc_usage_report */
static json_t *usage_row(int scope, enum lc_window w, const char *id)
{
	static json_t *last;
	json_t *r, *row;
	size_t i;

	json_decref(last);
	last = NULL;
	assert_int_equal(lc_usage_report(scope, w, &r), LC_OK);
	last = r;
	json_array_foreach(json_object_get(r, "rows"), i, row)
		if (!strcmp(json_string_value(json_object_get(row, "id")), id))
			return row;
	return NULL;
}

/* issue 7: the ledger counts every request, limits or not; a limit added, raised or re-enabled
 * mid-window sees the window's usage so far */
static void test_ledger_limit_added_mid_window(void **st)
{
	struct lc_decision d;
	const char *nolimit = "\"keys\":{\"mid\":{\"sha256\":\"%s\"}}";
	const char *cap3 = "\"keys\":{\"mid\":{\"sha256\":\"%s\",\"limits\":[{\"metric\":\"requests\","
			   "\"window\":\"daily\",\"threshold\":3%s}]}}";

	set_time("2031-05-05T10:00:00Z");
	install(nolimit, fp("k-mid"));
	for (int i = 0; i < 3; i++) {
		allow_one("k-mid");
	}
	install(cap3, fp("k-mid"), "");      /* a daily cap of 3 added after 3 requests */
	d = admit("k-mid", req("m", 1, 1, NULL));
	assert_int_equal(d.verdict, LC_DENY);
	assert_string_equal(d.limit, "key:mid:requests:daily");
	/* toggled off: requests go through and are counted; on again: they count */
	install(cap3, fp("k-mid"), ",\"enabled\":false");
	for (int i = 0; i < 2; i++) {
		allow_one("k-mid");
	}
	assert_int_equal(json_integer_value(json_object_get(usage_row(LC_SCOPE_KEY, LC_WIN_DAILY, "mid"), "requests")), 5);
	install("\"keys\":{\"mid\":{\"sha256\":\"%s\",\"limits\":[{\"metric\":\"requests\","
		"\"window\":\"daily\",\"threshold\":6}]}}", fp("k-mid"));  /* raised, back on */
	allow_one("k-mid");
	d = admit("k-mid", req("m", 1, 1, NULL));
	assert_int_equal(d.verdict, LC_DENY);     /* 6 of 6 */
	assert_non_null(strstr(d.message, "(6 used + 1 this request (worst case) would exceed it)"));
	lc_clock_hook = NULL;
}

/* org spend is tracked with no cap; every group (key, unknown key, team, customer, model, provider) */
static void test_ledger_counts_every_group(void **st)
{
	struct lc_decision d;
	json_t *row;
	char hex[65], kid[32];
	unsigned char h[32];

	set_time("2031-06-06T10:00:00Z");
	install("\"unknown_keys\":\"allow\",\"teams\":{\"tm\":{}},\"keys\":{\"g1\":{\"sha256\":\"%s\",\"team\":\"tm\"}}",
		fp("k-g1"));
	d = admit("k-g1", req("m", 1000, 10, "cust-a"));
	assert_int_equal(d.verdict, LC_ALLOW);
	settle_usage(d.ticket, 100, 20, 30);   /* $ (100*1 + 20*0.5 + 30*2) / 1e6 = 170 micro */
	d = admit("sk-not-in-policy", req("m", 1, 1, NULL));
	assert_int_equal(d.verdict, LC_ALLOW);
	settle_usage(d.ticket, 10, 0, 5);      /* 20 micro */
	row = usage_row(LC_SCOPE_ORG, LC_WIN_MONTHLY, "org");
	assert_non_null(row);
	assert_int_equal(json_integer_value(json_object_get(row, "requests")), 2);
	assert_true(json_real_value(json_object_get(row, "cost")) > 0.000189 &&
		    json_real_value(json_object_get(row, "cost")) < 0.000191);
	row = usage_row(LC_SCOPE_KEY, LC_WIN_LIFETIME, "g1");
	assert_int_equal(json_integer_value(json_object_get(row, "input_tokens")), 100);
	assert_int_equal(json_integer_value(json_object_get(row, "cached_input_tokens")), 20);
	assert_int_equal(json_integer_value(json_object_get(row, "output_tokens")), 30);
	assert_non_null(usage_row(LC_SCOPE_TEAM, LC_WIN_MINUTE, "tm"));
	assert_non_null(usage_row(LC_SCOPE_CUSTOMER, LC_WIN_HOUR, "cust-a"));
	assert_non_null(usage_row(LC_SCOPE_PROVIDER, LC_WIN_WEEKLY, "openai"));
	row = usage_row(LC_SCOPE_MODEL, LC_WIN_DAILY, "m");
	assert_int_equal(json_integer_value(json_object_get(row, "requests")), 2);
	/* the unknown key by a fingerprint prefix, never the key */
	lc_sha256("sk-not-in-policy", 16, h);
	lc_hex(h, 32, hex);
	snprintf(kid, sizeof(kid), "sha256:%.12s", hex);
	row = usage_row(LC_SCOPE_KEY, LC_WIN_DAILY, kid);
	assert_non_null(row);
	assert_int_equal(json_integer_value(json_object_get(row, "output_tokens")), 5);
	assert_null(usage_row(LC_SCOPE_KEY, LC_WIN_DAILY, "sk-not-in-policy"));
	/* rows by cost, descending */
	{
		json_t *r, *rows;
		assert_int_equal(lc_usage_report(LC_SCOPE_KEY, LC_WIN_DAILY, &r), LC_OK);
		rows = json_object_get(r, "rows");
		assert_string_equal(json_string_value(json_object_get(r, "by")), "key");
		assert_string_equal(json_string_value(json_object_get(r, "window")), "day");
		assert_string_equal(json_string_value(json_object_get(r, "window_start")), "2031-06-06T00:00:00Z");
		assert_string_equal(json_string_value(json_object_get(json_array_get(rows, 0), "id")), "g1");
		assert_string_equal(json_string_value(json_object_get(json_array_get(rows, 1), "id")), kid);
		json_decref(r);
	}
	lc_clock_hook = NULL;
}

/* one payload for every limit event: the org warning has its threshold, alert_at, window and version */
static void test_event_payload(void **st)
{
	json_t *arr, *e, *data = NULL;
	struct lc_decision d;
	size_t i;

	set_time("2031-07-07T10:00:00Z");
	install("\"org\":{\"spend_cap_usd\":100,\"period\":\"daily\",\"warning_threshold_usd\":0.0001}");
	d = admit("anyone", req("m", 100, 100, NULL));
	settle_usage(d.ticket, 100, 0, 100);   /* 300 micro > 100 */
	assert_int_equal(lc_outbox_list(0, 100000, &arr), LC_OK);
	json_array_foreach(arr, i, e)
		if (!strcmp(json_string_value(json_object_get(e, "event")), "spend_cap_warning_threshold_reached"))
			data = json_object_get(e, "data");
	assert_non_null(data);
	assert_string_equal(json_string_value(json_object_get(data, "limit")), "org:org:cost:daily");
	assert_string_equal(json_string_value(json_object_get(data, "scope")), "org");
	assert_true(json_real_value(json_object_get(data, "threshold")) == 100.0);
	assert_true(json_real_value(json_object_get(data, "alert_at")) == 0.0001);
	assert_string_equal(json_string_value(json_object_get(data, "level")), "alert_at");
	assert_string_equal(json_string_value(json_object_get(data, "window_start")), "2031-07-07T00:00:00Z");
	assert_string_equal(json_string_value(json_object_get(data, "resets_at")), "2031-07-08T00:00:00Z");
	assert_true(json_real_value(json_object_get(data, "used")) >= 0.0003);
	assert_int_equal(json_integer_value(json_object_get(data, "policy_version")), version);
	json_decref(arr);
	lc_clock_hook = NULL;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_not_a_provider_passes),
		cmocka_unit_test(test_requests_cap_exact),
		cmocka_unit_test(test_cost_reserve_worst_case_then_settle),
		cmocka_unit_test(test_output_cap_defaults_to_model_max),
		cmocka_unit_test(test_team_org_and_toggles),
		cmocka_unit_test(test_org_cap),
		cmocka_unit_test(test_key_states),
		cmocka_unit_test(test_unknown_models),
		cmocka_unit_test(test_customer_budget_override_and_rpm),
		cmocka_unit_test(test_window_boundaries),
		cmocka_unit_test(test_reclaim_dead_process),
		cmocka_unit_test(test_live_reservation_is_not_reclaimed),
		cmocka_unit_test(test_sixteen_processes_race),
		cmocka_unit_test(test_threads_race),
		cmocka_unit_test(test_ledger_does_not_grow),
		cmocka_unit_test(test_map_full_grows),
		cmocka_unit_test(test_map_full_in_an_event_grows),
		cmocka_unit_test(test_full_disk_fails_closed),
		cmocka_unit_test(test_admit_http),
		cmocka_unit_test(test_compiled_format_upgrade),
		cmocka_unit_test(test_alert_at_on_settle),
		cmocka_unit_test(test_run_caps),
		cmocka_unit_test(test_customer_rpm_large),
		cmocka_unit_test(test_anthropic_format),
		cmocka_unit_test(test_store_missing_passes_and_corrupt_fails_closed),
		cmocka_unit_test(test_fork_child_reopens),
		cmocka_unit_test(test_decision_stats_carry_over),
		cmocka_unit_test(test_leases_slice),
		cmocka_unit_test(test_leases_first_request_waits),
		cmocka_unit_test(test_leases_give_back_leftover),
		/* these move the test clock to 2031: last */
		cmocka_unit_test(test_ledger_limit_added_mid_window),
		cmocka_unit_test(test_ledger_counts_every_group),
		cmocka_unit_test(test_event_payload),
		cmocka_unit_test(test_alert_levels_and_projection),
		cmocka_unit_test(test_org_and_customer_levels),   /* last: its clock is the latest */
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
