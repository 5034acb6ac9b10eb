/* bench_leases - leases (docs/server.md "Leases"), figures not tests:
 *   - lease grants per second on the server's store, LMDB and PostgreSQL (POST /v1/leases through
 *     srv_handle, no socket): 8 hosts on one team limit taking turns (one durable write transaction
 *     per call), then calling at once (calls arriving during a commit share the next one);
 *   - a refill's own cost on a host: plan (store) + grant (server) + apply (store), in one process;
 *     the agent adds its tick (200 ms at most) and the network round trip;
 *   - decisions (admit + settle) per second on a host holding a slice of a shared team limit, and
 *     the same policy without leases, in the same run. */
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bench.h"
#include "engine.h"
#include "sign.h"
#include "srv.h"
#include "util.h"

#define AUTH "Bearer bench-admin-token-0123456789"

static int call(struct srv *s, const char *method, const char *path, const char *auth, const char *body, json_t **out)
{
	struct srv_req rq = {.method = method, .path = path, .authorization = auth, .body = body,
			     .body_len = body ? strlen(body) : 0};
	struct srv_resp rs;

	srv_handle(s, &rq, &rs);
	if (out)
		*out = rs.body ? json_loads(rs.body, 0, NULL) : NULL;
	int st = rs.status;
	srv_resp_free(&rs);
	return st;
}

/* a server on `where` (a directory: LMDB; postgresql://...: PostgreSQL), its keys in keydir */
static void server_open(struct srv *s, const char *where, const char *keydir)
{
	char err[512], path[600];

	memset(s, 0, sizeof(*s));
	if (srv_store_open(s, where, err, sizeof err))
		die(err);
	snprintf(path, sizeof path, "%s/keys", keydir);
	if (lc_keygen(path, err, sizeof err))
		die(err);
	snprintf(path, sizeof path, "%s/keys/llmcap.key", keydir);
	if (lc_signkey_load(path, &s->key, err, sizeof err))
		die(err);
	if (srv_set_admin_token(s, AUTH + 7, strlen(AUTH + 7)))
		die("admin token");
	if (call(s, "PUT", "/v1/admin/settings", AUTH, "{\"leases\":true}", NULL) != 200 ||
	    call(s, "PUT", "/v1/admin/teams/t", AUTH,
		 "{\"limits\":[{\"metric\":\"requests\",\"window\":\"lifetime\",\"threshold\":1000000000000}]}", NULL) != 201)
		die("server setup");
}

/* an enrolled host's "Bearer <credential>" (out: 600 bytes) */
static void enroll(struct srv *s, const char *host, char *out)
{
	char body[256];
	json_t *j = NULL;

	if (call(s, "POST", "/v1/admin/hosts/enroll", AUTH, NULL, &j) != 201)
		die("enroll code");
	snprintf(body, sizeof body, "{\"code\":\"%s\",\"host_id\":\"%s\"}", json_string_value(json_object_get(j, "code")),
		 host);
	json_decref(j);
	if (call(s, "POST", "/v1/hosts/enroll", NULL, body, &j) != 201)
		die("enroll");
	snprintf(out, 600, "Bearer %s", json_string_value(json_object_get(j, "credential")));
	json_decref(j);
}

#define GRANT_HOSTS 8

struct granter {
	struct srv *s;
	int host;
	char auth[600];
	int64_t held;
	long calls, gen;
	double until;
};

/* one lease call of a host: it wants 10 more, having spent what it held */
static void grant_call(struct granter *g)
{
	char body[512];
	json_t *a = NULL;

	snprintf(body, sizeof body,
		 "{\"host_id\":\"host%d\",\"epoch\":\"e\",\"leases\":[{\"limit\":\"team:t:requests:lifetime\","
		 "\"bucket\":0,\"used\":%" PRId64 ",\"held\":%" PRId64 ",\"want\":10,\"gen\":%ld}]}",
		 g->host, g->held, g->held, ++g->gen);
	if (call(g->s, "POST", "/v1/leases", g->auth, body, &a) != 200)
		die("lease call refused");
	g->held = json_integer_value(json_object_get(json_array_get(json_object_get(a, "grants"), 0), "allow"));
	json_decref(a);
	g->calls++;
}

/* one host's lease calls, back to back, until g->until */
static void *grant_loop(void *arg)
{
	struct granter *g = arg;

	while (now_s() < g->until)
		grant_call(g);
	return NULL;
}

/* grants per second: one host calling at a time (a transaction per call), then eight hosts calling
 * at once (calls that arrive during a commit share the next one: lease.c's group commit) */
static void grants_per_second(const char *base, const char *where, const char *store)
{
	static struct granter g[GRANT_HOSTS];
	pthread_t th[GRANT_HOSTS];
	struct srv s;
	char keydir[600];
	long n;
	double t0;

	snprintf(keydir, sizeof keydir, "%s/srv-grants-%s", base, store);
	mkdir(keydir, 0755);
	server_open(&s, where ? where : keydir, keydir);
	for (int h = 0; h < GRANT_HOSTS; h++) {
		char id[16];
		snprintf(id, sizeof id, "host%d", h);
		memset(&g[h], 0, sizeof g[h]);
		g[h].s = &s;
		g[h].host = h;
		enroll(&s, id, g[h].auth);
	}
	/* one at a time: the hosts take turns */
	t0 = now_s();
	n = 0;
	while (now_s() - t0 < 2.0)
		grant_call(&g[n++ % GRANT_HOSTS]);
	double one = n / (now_s() - t0);
	/* all at once */
	for (int h = 0; h < GRANT_HOSTS; h++) {
		g[h].calls = 0;
		g[h].until = now_s() + 2.0;
	}
	t0 = now_s();
	for (int h = 0; h < GRANT_HOSTS; h++)
		if (pthread_create(&th[h], NULL, grant_loop, &g[h]))
			die("thread");
	n = 0;
	for (int h = 0; h < GRANT_HOSTS; h++) {
		pthread_join(th[h], NULL);
		n += g[h].calls;
	}
	printf("server: %8.0f lease grants/s one call at a time, %8.0f with %d hosts calling at once (%s store, durable "
	       "commits, one team limit)\n",
	       one, n / (now_s() - t0), GRANT_HOSTS, store);
	srv_store_close(&s);
}

static void make_host_policy(const char *dir, struct srv *s, bool leases)
{
	struct lc_trust t = {0};
	char err[512], path[600], *env;
	size_t envlen;
	struct lc_buf b;
	unsigned char d[32];
	char hex[65];

	(void)s;
	snprintf(path, sizeof path, "%s/hk", dir);
	if (lc_keygen(path, err, sizeof err))
		die(err);
	struct lc_signkey sk;
	snprintf(path, sizeof path, "%s/hk/llmcap.key", dir);
	if (lc_signkey_load(path, &sk, err, sizeof err))
		die(err);
	snprintf(path, sizeof path, "%s/hk/llmcap.pub", dir);
	if (lc_trust_load(path, &t, err, sizeof err))
		die(err);
	lc_sha256("sk-bench", 8, d);
	lc_hex(d, 32, hex);
	lc_buf_init(&b, 1 << 20);
	lc_buf_printf(&b, "{\"schema\":1,\"version\":1,\"issued_at\":\"2026-01-01T00:00:00Z\","
			  "\"expires_at\":\"2099-01-01T00:00:00Z\",%s"
			  "\"providers\":[{\"name\":\"openai\",\"format\":\"openai\",\"hosts\":[\"api.openai.com\"]}],"
			  "\"prices\":{\"gpt-4o-mini\":{\"input\":0.15,\"output\":0.6}},"
			  "\"teams\":{\"t\":{\"limits\":[{\"metric\":\"requests\",\"window\":\"lifetime\",\"threshold\":1000000000000}]}},"
			  "\"keys\":{\"k\":{\"sha256\":\"%s\",\"team\":\"t\"}}}",
		      leases ? "\"leases\":true," : "", hex);
	if (lc_dsse_sign(&sk, b.data, b.len, &env, &envlen, err, sizeof err))
		die(err);
	if (lc_apply_envelope(&t, env, envlen, NULL, err, sizeof err))
		die(err);
	free(env);
	lc_buf_free(&b);
}

/* one refill: plan, grant, apply; false when the plan had nothing to ask */
static char host_auth[600];

static bool refill(struct srv *s)
{
	json_t *plan = NULL, *ans = NULL;
	int64_t sent = lc_now_ms();
	char *txt;

	if (lc_lease_plan(0, &plan) != LC_OK)
		die("plan");
	if (!plan)
		return false;
	json_object_set_new(plan, "host_id", json_string("bench-host"));   /* the credential's host */
	txt = json_dumps(plan, JSON_COMPACT);
	if (call(s, "POST", "/v1/leases", host_auth, txt, &ans) != 200 || lc_lease_apply(plan, ans, sent) != LC_OK)
		die("refill");
	free(txt);
	json_decref(plan);
	json_decref(ans);
	return true;
}

static struct lc_decision decide(void)
{
	struct lc_reqinfo info = {.api = LC_API_CHAT, .model = "gpt-4o-mini", .input_estimate = 1024, .output_cap = 256};
	struct lc_admit_req r = {.host = "api.openai.com", .port = 443, .api_key = "sk-bench", .api_key_len = 8,
				 .info = &info};
	struct lc_decision d;

	lc_admit(&r, &d);
	return d;
}

static double pairs_per_s(long n)
{
	struct lc_usage u = {.present = true, .input = 200, .output = 100};
	double t0 = now_s();

	for (long i = 0; i < n; i++) {
		struct lc_decision d = decide();

		if (d.verdict != LC_ALLOW)
			die("unexpected denial (the slice ran out: raise the threshold)");
		lc_settle(d.ticket, &u, 200);
	}
	return n / (now_s() - t0);
}

static void host_run(const char *base, int run, bool leases, long n)
{
	struct srv s;
	char dir[600], sd[700];

	snprintf(dir, sizeof dir, "%s/host-%d", base, run);
	mkdir(dir, 0755);
	snprintf(sd, sizeof sd, "%s/state", dir);
	lc_state_dir_set(sd);
	server_open(&s, dir, dir);
	make_host_policy(dir, &s, leases);
	enroll(&s, "bench-host", host_auth);
	if (leases) {
		/* the first request is refused and asks; time the refills it takes to get going */
		double t0, tot = 0;
		int k = 0;

		if (decide().verdict != LC_DENY)
			die("no refusal before the first slice");
		for (; k < 20; k++) {
			t0 = now_s();
			if (!refill(&s))
				break;
			tot += now_s() - t0;
			if (decide().verdict != LC_ALLOW)
				die("refused after a refill");
		}
		printf("host:   refill (plan + grant + apply, in process) %.3f ms on average over %d; the agent adds up to "
		       "10 ms to see the refusal and one round trip (bench_leases_refill: end to end)\n",
		       k ? tot / k * 1e3 : 0.0, k);
		for (int i = 0; i < 40 && refill(&s); i++)   /* a slice for the run */
			;
	}
	/* a store in use holds many groups: 300 other keys' ledger records, so that both runs write a
	 * B-tree of the same shape (a nearly empty store would make one extra record look costly) */
	for (int i = 0; i < 300; i++) {
		char key[32];
		struct lc_reqinfo info = {.api = LC_API_CHAT, .model = "gpt-4o-mini", .input_estimate = 10, .output_cap = 10};
		struct lc_admit_req r = {.host = "api.openai.com", .port = 443, .api_key = key, .info = &info};
		struct lc_usage u = {.present = true, .input = 1, .output = 1};
		struct lc_decision d;

		snprintf(key, sizeof key, "sk-other-%d", i);
		r.api_key_len = strlen(key);
		lc_admit(&r, &d);
		lc_settle(d.ticket, &u, 200);
	}
	pairs_per_s(n / 10);   /* warm up */
	printf("host:   %8.0f admit+settle pairs/s %s\n", pairs_per_s(n),
	       leases ? "holding a slice of a shared team limit (leases)" : "same team limit, no leases");
	fflush(stdout);
	srv_store_close(&s);
}

int main(int argc, char **argv)
{
	char base[] = "/tmp/llmcap-bench-leases.XXXXXX", cmd[300];
	long n = argc > 1 ? atol(argv[1]) : 100000;

	if (!mkdtemp(base))
		die("mkdtemp");
	setenv("LLMCAP_LOG", "off", 1);
	grants_per_second(base, NULL, "LMDB");
	/* LLMCAP_BENCH_PG_URL (bench/run.sh starts a PostgreSQL of its own): the same on PostgreSQL */
	if (getenv("LLMCAP_BENCH_PG_URL"))
		grants_per_second(base, getenv("LLMCAP_BENCH_PG_URL"), "PostgreSQL");
	else
		printf("server: (PostgreSQL lease grants skipped: no LLMCAP_BENCH_PG_URL)\n");
	fflush(stdout);
	/* one host store per process; with and without leases twice, alternating */
	for (int i = 0; i < 4; i++) {
		int leases = i % 2 == 0;
		pid_t p = fork();

		if (p == 0) {
			host_run(base, i, leases, n);
			_exit(0);
		}
		waitpid(p, NULL, 0);
	}
	snprintf(cmd, sizeof cmd, "rm -rf %s", base);
	return system(cmd) != 0;
}
