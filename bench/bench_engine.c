/* bench_engine - admit+settle pairs per second (1 and 2 processes) and the cost of one decision,
 * beside a raw LMDB write transaction touching the same number of records, the two alternating in
 * one run (medians), for policies of 10 and 100,000 keys. Figures, not tests. */
#include <fcntl.h>
#include <lmdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bench.h"
#include "engine.h"
#include "engine_int.h"
#include "sign.h"
#include "util.h"

static void deny_die(const struct lc_decision *d)
{
	fprintf(stderr, "bench: unexpected verdict %d (%d): %s\n", (int)d->verdict, d->status, d->message);
	exit(1);
}

static void make_policy(const char *dir, int nkeys)
{
	struct lc_buf b;
	struct lc_signkey sk;
	struct lc_trust t = {0};
	char err[512], path[600], *env;
	size_t envlen;

	snprintf(path, sizeof(path), "%s/keys", dir);
	if (lc_keygen(path, err, sizeof(err)))
		die(err);
	snprintf(path, sizeof(path), "%s/keys/llmcap.key", dir);
	if (lc_signkey_load(path, &sk, err, sizeof(err)))
		die(err);
	snprintf(path, sizeof(path), "%s/keys/llmcap.pub", dir);
	if (lc_trust_load(path, &t, err, sizeof(err)))
		die(err);
	lc_buf_init(&b, 256u << 20);
	lc_buf_printf(&b, "{\"schema\":1,\"version\":1,\"issued_at\":\"2026-01-01T00:00:00Z\","
			  "\"expires_at\":\"2099-01-01T00:00:00Z\","
			  "\"providers\":[{\"name\":\"openai\",\"format\":\"openai\",\"hosts\":[\"api.openai.com\"]}],"
			  "\"prices\":{\"gpt-4o-mini\":{\"input\":0.15,\"output\":0.6}},\"keys\":{");
	for (int i = 0; i < nkeys; i++) {
		char key[64], hex[65];
		unsigned char d[32];

		snprintf(key, sizeof(key), "sk-bench-%d", i);
		lc_sha256(key, strlen(key), d);
		lc_hex(d, 32, hex);
		lc_buf_printf(&b, "%s\"k%d\":{\"sha256\":\"%s\",\"limits\":[{\"metric\":\"requests\",\"window\":\"daily\","
				  "\"threshold\":1000000000000},{\"metric\":\"cost\",\"window\":\"monthly\",\"threshold\":1e9}]}",
			      i ? "," : "", i, hex);
	}
	lc_buf_addstr(&b, "}}");
	if (lc_dsse_sign(&sk, b.data, b.len, &env, &envlen, err, sizeof(err)))
		die(err);
	if (lc_apply_envelope(&t, env, envlen, NULL, err, sizeof(err)))
		die(err);
	free(env);
	lc_buf_free(&b);
}

static long pairs(int n, const char *key)
{
	struct lc_reqinfo info = {.api = LC_API_CHAT, .model = "gpt-4o-mini", .input_estimate = 1024, .output_cap = 256};
	struct lc_admit_req r = {.host = "api.openai.com", .port = 443, .api_key = key, .api_key_len = strlen(key),
				 .info = &info};
	struct lc_usage u = {.present = true, .input = 200, .output = 100};
	struct lc_decision d;
	long ok = 0;

	for (int i = 0; i < n; i++) {
		lc_admit(&r, &d);
		if (d.verdict != LC_ALLOW)
			deny_die(&d);
		lc_settle(d.ticket, &u, 200);
		ok++;
	}
	return ok;
}

/* one admit, timed (its settle is not) */
static double admit_one_us(const char *key)
{
	struct lc_reqinfo info = {.api = LC_API_CHAT, .model = "gpt-4o-mini", .input_estimate = 1024, .output_cap = 256};
	struct lc_admit_req r = {.host = "api.openai.com", .port = 443, .api_key = key, .api_key_len = strlen(key),
				 .info = &info};
	struct lc_usage u = {.present = true, .input = 200, .output = 100};
	struct lc_decision d;
	double t0 = now_s(), t;

	lc_admit(&r, &d);
	t = now_s() - t0;
	if (d.verdict != LC_ALLOW)
		deny_die(&d);
	lc_settle(d.ticket, &u, 200);
	return t * 1e6;
}

/* the baseline: one LMDB write transaction that reads and writes two records the size of a ledger
 * record (an admit reads and writes its key's ledger record and puts a ticket) */
#define RAW_REC 552
_Static_assert(RAW_REC == sizeof(struct lc_rec_ledger), "the raw baseline's record is a ledger record");
struct raw {
	MDB_env *env;
	MDB_dbi dbi;
};

static void raw_open(struct raw *w, const char *dir)
{
	MDB_txn *txn;
	char path[600];

	snprintf(path, sizeof(path), "%s/raw", dir);
	mkdir(path, 0755);
	mdb_env_create(&w->env);
	mdb_env_set_mapsize(w->env, 256u << 20);
	mdb_env_set_maxdbs(w->env, 4);
	if (mdb_env_open(w->env, path, MDB_NOTLS | MDB_NOSYNC, 0644))
		die("raw env");
	mdb_txn_begin(w->env, NULL, 0, &txn);
	mdb_dbi_open(txn, "counters", MDB_CREATE, &w->dbi);
	mdb_txn_commit(txn);
}

static double raw_one_us(struct raw *w)
{
	MDB_txn *txn;
	double t0 = now_s();

	mdb_txn_begin(w->env, NULL, 0, &txn);
	for (int c = 0; c < 2; c++) {  /* both counters in one transaction */
		char k[32];
		int64_t v[RAW_REC / 8] = {0};
		MDB_val key = {.mv_size = (size_t)snprintf(k, sizeof(k), "counter-%d", c), .mv_data = k}, val;

		if (mdb_get(txn, w->dbi, &key, &val) == 0)
			memcpy(v, val.mv_data, sizeof(v));
		v[0]++;
		val.mv_size = sizeof(v);
		val.mv_data = v;
		mdb_put(txn, w->dbi, &key, &val, 0);
	}
	mdb_txn_commit(txn);
	return (now_s() - t0) * 1e6;
}

static int cmp_d(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

static double median(double *v, int n)
{
	qsort(v, (size_t)n, sizeof(*v), cmp_d);
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/* Decisions and raw transactions alternate one by one (a loaded machine slows both alike);
 * figures are medians of per-transaction times. */
static void decision_vs_raw(const char *dir, const char *key, int n, double *dec, double *raw)
{
	double *a = calloc((size_t)n, sizeof(double)), *b = calloc((size_t)n, sizeof(double));
	struct raw w;

	if (!a || !b)
		die("out of memory");
	raw_open(&w, dir);
	for (int i = 0; i < 200; i++) {  /* warm up both */
		admit_one_us(key);
		raw_one_us(&w);
	}
	for (int i = 0; i < n; i++) {
		a[i] = admit_one_us(key);
		b[i] = raw_one_us(&w);
	}
	*dec = median(a, n);
	*raw = median(b, n);
	mdb_env_close(w.env);
	free(a);
	free(b);
}

static void run_config(const char *base, int nkeys, int n)
{
	char dir[512], key[64];
	double t0, one, two, dec, raw;
	int fds[2];

	snprintf(dir, sizeof(dir), "%s/k%d", base, nkeys);
	mkdir(dir, 0755);
	char sd[600];
	snprintf(sd, sizeof(sd), "%s/state", dir);
	lc_state_dir_set(sd);
	t0 = now_s();
	make_policy(dir, nkeys);
	fprintf(stderr, "  (applied a %d-key policy in %.2f s)\n", nkeys, now_s() - t0);
	{
		/* the store is written without fsync (MDB_NOSYNC): put the policy's pages on disk now, or
		 * the kernel's write-back of them (240 MB at 100,000 keys) slows the figures that follow */
		char sp[4096], path[4200];
		int fd;

		lc_store_path(sp, sizeof(sp));
		snprintf(path, sizeof(path), "%s/data.mdb", sp);
		if ((fd = open(path, O_RDONLY)) >= 0) {
			fdatasync(fd);
			close(fd);
		}
	}
	snprintf(key, sizeof(key), "sk-bench-%d", nkeys / 2);
	pairs(1000, key);  /* warm up */
	t0 = now_s();
	pairs(n, key);
	one = n / (now_s() - t0);
	/* before the 2-process run: each child checks the store at open, pinning a snapshot while it
	 * reads it (seconds at 100,000 keys), and commits made meanwhile cannot reuse pages; the free
	 * list they leave behind makes every later commit touch more pages for a while */
	decision_vs_raw(dir, key, n / 4, &dec, &raw);
	if (pipe(fds))
		die("pipe");
	t0 = now_s();
	for (int p = 0; p < 2; p++) {
		if (fork() == 0) {
			char k2[64];

			snprintf(k2, sizeof(k2), "sk-bench-%d", p ? nkeys / 3 : nkeys / 2);
			pairs(n / 2, k2);
			_exit(0);
		}
	}
	while (wait(NULL) > 0)
		;
	two = n / (now_s() - t0);
	printf("%8d keys  %10.0f pairs/s (1 proc)  %10.0f pairs/s (2 procs)  decision %6.2f us  "
	       "raw LMDB write txn %6.2f us  ratio %.2fx (medians, interleaved)\n",
	       nkeys, one, two, dec, raw, dec / raw);
	fflush(stdout);
}

int main(int argc, char **argv)
{
	char base[] = "/tmp/llmcap-bench.XXXXXX";
	int n = argc > 1 ? atoi(argv[1]) : 200000;
	char cmd[300];

	if (!mkdtemp(base))
		die("mkdtemp");
	setenv("LLMCAP_LOG", "off", 1);
	printf("engine: admit+settle on one LMDB store (MDB_NOSYNC), %d pairs per figure, %ld cores\n", n,
	       sysconf(_SC_NPROCESSORS_ONLN));
	fflush(stdout);
	/* one store per process: each configuration runs in its own child */
	int sizes[] = {10, 100000};
	for (int i = 0; i < 2; i++) {
		pid_t p = fork();

		if (p == 0) {
			run_config(base, sizes[i], n);
			_exit(0);
		}
		waitpid(p, NULL, 0);
	}
	snprintf(cmd, sizeof(cmd), "rm -rf %s", base);
	return system(cmd) != 0;
}
