/* agent.c - `llmcap agent`: keeps one host in sync with llmcap-server.
 *
 *   llmcap agent --server URL --trust PUBFILE [--once] [--interval S]
 *
 * Each round: pull the signed policy (If-None-Match; the body is capped while
 * it downloads) and install it with the same checks as `llmcap apply`;
 * reclaim reservations of dead processes; push this host's cumulative usage
 * and take back the org-wide totals (the host then enforces team and org
 * limits on "global at the last report + own since"); deliver the host's
 * outbox to the policy's webhooks; flush the store.
 *
 * Nothing here is needed for enforcement: when the server is away the host
 * keeps enforcing its last trusted policy, and the agent retries with
 * exponential backoff. Usage reports are cumulative and numbered, so a
 * report that is retried or lost is never counted twice.
 */
#include <curl/curl.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "alert.h"
#include "engine.h"
#include "webhook.h"
#include "sign.h"
#include "util.h"

int lc_cmd_agent(int argc, char **argv);
int lc_agent_metrics_start(const char *addr, char *err, size_t errlen);   /* agent_metrics.c */
void lc_agent_metrics_report(bool ok);

#define AGENT_USAGE_ANSWER_MAX (64 * 1024 * 1024)
#define AGENT_OUTBOX_BATCH 64
#define AGENT_MEMO 512
#define AGENT_LONGPOLL_S 25   /* GET /v1/policy?wait=: the server holds it up to this (max 60) */

static volatile sig_atomic_t agent_stop;
static void sleep_ms(int64_t ms);

static void on_signal(int sig)
{
	(void)sig;
	agent_stop = 1;
}

struct agent {
	const char *server;         /* base URL, no trailing slash */
	struct lc_trust trust;
	char etag[128];
	unsigned char rejected[32]; /* sha256 of the last envelope refused: not retried */
	bool have_rejected;
	int64_t version;
	/* per outbox entry and webhook: delivered in this process, or backing off */
	struct memo {
		uint64_t seq;
		unsigned char url[32];
		bool done;
		int attempts;
		int64_t next_ms;
	} memo[AGENT_MEMO];
	size_t nmemo;
	bool once;
	bool touched;   /* the last outbox pass had events */
	bool refused;   /* the server's policy was refused this round */
	int kept;       /* events held because no policy is installed to name webhooks */
	char auth[600]; /* "Authorization: Bearer <host token>" or "" */
	pthread_mutex_t mu;   /* etag, version, rejected: the round and the long-poll both pull */
	double interval, max_backoff;
};

/* ---- HTTP ---- */

struct body {
	struct lc_buf b;
	bool too_big;
};

static size_t on_data(char *p, size_t sz, size_t n, void *u)
{
	struct body *bd = u;
	if (lc_buf_add(&bd->b, p, sz * n) != 0) {
		bd->too_big = true;
		return 0;   /* aborts the transfer: the cap holds while downloading */
	}
	return sz * n;
}

#define ETAG_MAX 128

static size_t on_header(char *p, size_t sz, size_t n, void *u)
{
	size_t len = sz * n;
	char *etag_buf = u;   /* ETAG_MAX bytes */
	if (len > 5 && strncasecmp(p, "etag:", 5) == 0) {
		const char *v = p + 5;
		size_t vl = len - 5;
		while (vl && (*v == ' ' || *v == '\t')) {
			v++;
			vl--;
		}
		while (vl && (v[vl - 1] == '\r' || v[vl - 1] == '\n' || v[vl - 1] == ' '))
			vl--;
		if (vl < ETAG_MAX) {
			memcpy(etag_buf, v, vl);
			etag_buf[vl] = 0;
		}
	}
	return len;
}

static int on_progress(void *u, curl_off_t dt, curl_off_t dn, curl_off_t ut, curl_off_t un)
{
	(void)u;
	(void)dt;
	(void)dn;
	(void)ut;
	(void)un;
	return agent_stop ? 1 : 0;
}

/* --cacert: the CA bundle that verifies the server (only the server: webhooks use the system's) */
static char cacert[4096];
static const char *cacert_for;   /* the server's base URL */

/* One request (timeout_ms 0: 30 s). Returns the HTTP status, or -1 with err (no answer).
 * etag (ETAG_MAX bytes, or NULL) receives the answer's ETag. */
static long http_t(const char *method, const char *url, struct curl_slist *hdrs, const char *body, size_t blen,
		   struct body *out, size_t max, char *etag, long timeout_ms, char *err, size_t errlen)
{
	CURL *h = curl_easy_init();
	long status = -1;
	CURLcode cc;
	char etag_buf[ETAG_MAX] = "";
	lc_buf_init(&out->b, max);
	out->too_big = false;
	if (!h) {
		lc_errf(err, errlen, "curl: out of memory");
		return -1;
	}
	curl_easy_setopt(h, CURLOPT_URL, url);
	curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
	if (body) {
		curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
		curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, (long)blen);
	}
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_data);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, out);
	curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(h, CURLOPT_HEADERDATA, etag_buf);
	curl_easy_setopt(h, CURLOPT_NOPROGRESS, 0L);
	curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, on_progress);
	curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, 5000L);
	curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, timeout_ms > 0 ? timeout_ms : 30000L);
	curl_easy_setopt(h, CURLOPT_USERAGENT, "llmcap-agent/0.1");
	curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
	if (cacert[0] && cacert_for && strncmp(url, cacert_for, strlen(cacert_for)) == 0)
		curl_easy_setopt(h, CURLOPT_CAINFO, cacert);
	cc = curl_easy_perform(h);
	if (cc == CURLE_OK) {
		curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
	} else if (out->too_big) {
		lc_errf(err, errlen, "answer larger than %zu bytes", max);
	} else {
		lc_errf(err, errlen, "%s", curl_easy_strerror(cc));
	}
	curl_easy_cleanup(h);
	if (etag)
		snprintf(etag, ETAG_MAX, "%s", etag_buf);
	return status;
}

static long http(const char *method, const char *url, struct curl_slist *hdrs, const char *body, size_t blen,
		 struct body *out, size_t max, char *err, size_t errlen)
{
	return http_t(method, url, hdrs, body, blen, out, max, NULL, 0, err, errlen);
}

/* ---- policy ---- */

/* Pull the policy once; wait_s > 0: a long-poll (the server answers when the policy changes, or
 * 304 after wait_s). *status_out: the HTTP status (-1: no answer). 0 when the server answered. */
static int pull_policy_wait(struct agent *a, int wait_s, long *status_out)
{
	char url[2048], err[1024], inm[160], etag[ETAG_MAX];
	struct curl_slist *hd = NULL;
	struct body bd;
	long st;
	int rc = -1;

	snprintf(url, sizeof url, "%s/v1/policy", a->server);
	if (wait_s > 0)
		snprintf(url + strlen(url), sizeof url - strlen(url), "?wait=%d", wait_s);
	pthread_mutex_lock(&a->mu);
	if (a->etag[0]) {
		snprintf(inm, sizeof inm, "If-None-Match: %s", a->etag);
		hd = curl_slist_append(hd, inm);
	}
	pthread_mutex_unlock(&a->mu);
	st = http_t("GET", url, hd, NULL, 0, &bd, LC_ENVELOPE_MAX, etag, wait_s > 0 ? (wait_s + 30) * 1000L : 0, err,
		    sizeof err);
	curl_slist_free_all(hd);
	if (status_out)
		*status_out = st;
	if (st < 0) {
		if (!agent_stop && wait_s == 0)  /* the long-poll is quiet: the round reports the outage */
			fprintf(stderr, "llmcap agent: GET %s: %s\n", url, err);
		goto out;
	}
	if (st == 304) {
		rc = 0;
		goto out;
	}
	if (st != 200 || !bd.b.data) {
		fprintf(stderr, "llmcap agent: GET %s: HTTP %ld\n", url, st);
		goto out;
	}
	unsigned char h[32];
	lc_sha256(bd.b.data, bd.b.len, h);
	pthread_mutex_lock(&a->mu);
	if (a->have_rejected && memcmp(h, a->rejected, 32) == 0) {
		pthread_mutex_unlock(&a->mu);
		rc = 0;   /* refused before, reported then; wait for a new one */
		goto out;
	}
	int64_t v = 0;
	err[0] = 0;
	int r = lc_apply_envelope(&a->trust, bd.b.data, bd.b.len, &v, err, sizeof err);
	if (r == LC_OK) {
		if (v != a->version)
			fprintf(stderr, "llmcap agent: policy version %" PRId64 " in force\n", v);
		a->version = v;
		snprintf(a->etag, sizeof a->etag, "%s", etag);
		rc = 0;
	} else if (r == LC_E_REJECTED) {
		fprintf(stderr, "llmcap agent: policy from %s refused, the installed one stays in force: %s%s\n",
			a->server, err,
			strstr(err, "rollback refused")
				? " (a host that had its own policy before joining this server: llmcap reset-policy --yes, "
				  "then run the agent again)"
				: "");
		memcpy(a->rejected, h, 32);
		a->have_rejected = true;
		a->refused = true;
		rc = 0;   /* the server answered; the refusal is queued as policy_rejected */
	} else {
		fprintf(stderr, "llmcap agent: cannot install the policy: %s (%s)\n", err, lc_strerror(r));
	}
	pthread_mutex_unlock(&a->mu);
out:
	lc_buf_free(&bd.b);
	return rc;
}

static int pull_policy(struct agent *a)
{
	return pull_policy_wait(a, 0, NULL);
}

/* The long-poll thread: a new policy (an invite's limits, a revocation) is installed within about
 * a second of the admin change, while the main loop keeps its own pace for usage and events. A
 * server that answers 304 at once does not hold long-polls: then this polls once per interval. */
static void *longpoll(void *arg)
{
	struct agent *a = arg;
	double backoff = 1;

	while (!agent_stop) {
		int64_t t0 = lc_now_ms();
		long st = -1;
		int rc = pull_policy_wait(a, AGENT_LONGPOLL_S, &st);
		int64_t took = lc_now_ms() - t0;

		if (agent_stop)
			break;
		if (rc != 0) {
			sleep_ms((int64_t)(backoff * 1000));
			backoff = backoff * 2 > a->max_backoff ? a->max_backoff : backoff * 2;
			continue;
		}
		backoff = 1;
		if (st == 304 && took < AGENT_LONGPOLL_S * 1000 / 2)
			sleep_ms((int64_t)(a->interval * 1000));
	}
	return NULL;
}

/* ---- usage ---- */

static int push_usage(struct agent *a)
{
	json_t *snap = NULL, *ans = NULL;
	char url[2048], err[1024];
	struct curl_slist *hd = NULL;
	struct body bd = {0};
	int rc = -1, r;

	if ((r = lc_usage_snapshot(&snap)) != LC_OK) {
		if (r == LC_E_NOSTATE || r == LC_E_NOPOLICY)
			return 0;   /* nothing installed yet: nothing to report */
		fprintf(stderr, "llmcap agent: usage snapshot: %s\n", lc_strerror(r));
		return -1;
	}
	char *txt = json_dumps(snap, JSON_COMPACT);
	snprintf(url, sizeof url, "%s/v1/usage", a->server);
	hd = curl_slist_append(hd, "Content-Type: application/json");
	if (a->auth[0])
		hd = curl_slist_append(hd, a->auth);
	hd = curl_slist_append(hd, "Expect:");
	long st = http("POST", url, hd, txt, txt ? strlen(txt) : 0, &bd, AGENT_USAGE_ANSWER_MAX, err, sizeof err);
	curl_slist_free_all(hd);
	free(txt);
	if (st < 0) {
		fprintf(stderr, "llmcap agent: POST %s: %s\n", url, err);
		goto out;
	}
	if (st != 200 || !bd.b.data) {
		fprintf(stderr, "llmcap agent: POST %s: HTTP %ld %.300s\n", url, st, bd.b.data ? bd.b.data : "");
		goto out;
	}
	ans = json_loadb(bd.b.data, bd.b.len, 0, NULL);
	if (!ans || !json_is_array(json_object_get(ans, "counters"))) {
		fprintf(stderr, "llmcap agent: POST %s: malformed answer\n", url);
		goto out;
	}
	if ((r = lc_remote_usage_set(json_object_get(ans, "counters"), json_object_get(snap, "counters"))) != LC_OK) {
		fprintf(stderr, "llmcap agent: cannot record org-wide usage: %s\n", lc_strerror(r));
		goto out;
	}
	rc = 0;
out:
	lc_agent_metrics_report(rc == 0);
	lc_buf_free(&bd.b);
	json_decref(ans);
	json_decref(snap);
	return rc;
}

/* ---- outbox -> webhooks ---- */

static struct memo *memo_get(struct agent *a, uint64_t seq, const char *url)
{
	unsigned char h[32];
	lc_sha256(url, strlen(url), h);
	for (size_t i = 0; i < a->nmemo; i++)
		if (a->memo[i].seq == seq && !memcmp(a->memo[i].url, h, 32))
			return &a->memo[i];
	if (a->nmemo == AGENT_MEMO) {   /* forget the oldest */
		memmove(a->memo, a->memo + 1, sizeof a->memo[0] * (AGENT_MEMO - 1));
		a->nmemo--;
	}
	struct memo *m = &a->memo[a->nmemo++];
	memset(m, 0, sizeof *m);
	m->seq = seq;
	memcpy(m->url, h, 32);
	return m;
}

/* Returns the number of events still pending. */
static int deliver_outbox(struct agent *a)
{
	json_t *evs = NULL, *hooks = NULL, *e;
	size_t i;
	int pending = 0;

	a->kept = 0;
	if (lc_outbox_list(0, AGENT_OUTBOX_BATCH, &evs) != LC_OK || !evs)
		return 0;
	a->touched = json_array_size(evs) > 0;
	if (!a->touched)
		goto out;
	hooks = lc_webhooks();
	int64_t v = 0;
	if (!hooks && lc_policy_info(&v, NULL) == LC_OK)
		hooks = json_array();   /* a policy without webhooks: nobody to tell */
	json_array_foreach(evs, i, e) {
		uint64_t seq = (uint64_t)json_integer_value(json_object_get(e, "seq"));
		const char *id = json_string_value(json_object_get(e, "id"));
		const char *ev = json_string_value(json_object_get(e, "event"));
		bool all_ok = true;
		size_t j;
		json_t *wh;
		if (!id || !ev) {
			lc_outbox_delete(seq);   /* malformed: nothing sensible to send */
			continue;
		}
		json_t *body = json_pack("{s:s,s:s,s:O,s:s,s:O,s:O}", "id", id, "event", ev, "created_at",
					 json_object_get(e, "created_at"), "source", "host", "host_id",
					 json_object_get(e, "host_id") ? json_object_get(e, "host_id") : json_null(),
					 "data", json_object_get(e, "data") ? json_object_get(e, "data") : json_object());
		char *txt = json_dumps(body, JSON_COMPACT | JSON_REAL_PRECISION(15));
		json_decref(body);
		if (!txt) {
			pending++;
			continue;
		}
		if (!hooks) {
			/* no policy yet (e.g. the first one was refused): keep it for when one names webhooks */
			a->kept++;
			free(txt);
			continue;
		}
		json_array_foreach(hooks, j, wh) {
			const char *url = json_string_value(json_object_get(wh, "url"));
			const char *secret = json_string_value(json_object_get(wh, "secret"));
			if (!url || !lc_webhook_wants(wh, ev))
				continue;
			struct memo *m = memo_get(a, seq, url);
			if (m->done)
				continue;
			if (!a->once && m->next_ms > lc_now_ms()) {
				all_ok = false;
				continue;
			}
			unsigned char h[32];
			char src[2200], hx[25], line[600], sig[160];
			snprintf(src, sizeof src, "%s|%s", id, url);
			lc_sha256(src, strlen(src), h);
			lc_hex(h, 12, hx);
			struct curl_slist *hd = curl_slist_append(NULL, "Content-Type: application/json");
			hd = curl_slist_append(hd, "Expect:");
			snprintf(line, sizeof line, "x-llmcap-event: %s", ev);
			hd = curl_slist_append(hd, line);
			snprintf(line, sizeof line, "x-llmcap-delivery: dlv_%s", hx);
			hd = curl_slist_append(hd, line);
			char *payload = lc_webhook_body(wh, txt);   /* the webhook's format: generic, slack, teams */
			if (!payload) {
				curl_slist_free_all(hd);
				all_ok = false;
				continue;
			}
			lc_webhook_sign(secret ? secret : "", lc_now(), payload, strlen(payload), sig, sizeof sig);
			snprintf(line, sizeof line, "x-llmcap-signature: %s", sig);
			hd = curl_slist_append(hd, line);
			struct body bd;
			char err[512];
			long st = http("POST", url, hd, payload, strlen(payload), &bd, 64 * 1024, err, sizeof err);
			free(payload);
			curl_slist_free_all(hd);
			lc_buf_free(&bd.b);
			if (st >= 200 && st < 300) {
				m->done = true;
			} else {
				all_ok = false;
				m->attempts++;
				int64_t delay = 1000;
				for (int k = 1; k < m->attempts && delay < 300000; k++)
					delay *= 2;
				if (delay > 300000)
					delay = 300000;
				m->next_ms = lc_now_ms() + delay;
				if (st < 0)
					fprintf(stderr, "llmcap agent: webhook %s (%s): %s; retry in %" PRId64 " s\n", url, ev, err,
						delay / 1000);
				else
					fprintf(stderr, "llmcap agent: webhook %s (%s): HTTP %ld; retry in %" PRId64 " s\n", url,
						ev, st, delay / 1000);
			}
		}
		free(txt);
		if (all_ok)
			lc_outbox_delete(seq);   /* every webhook that wanted it answered 2xx */
		else
			pending++;
	}
out:
	json_decref(hooks);
	json_decref(evs);
	return pending;
}

/* ---- the loop ---- */

static void sleep_ms(int64_t ms)
{
	while (ms > 0 && !agent_stop) {
		int64_t step = ms > 200 ? 200 : ms;
		struct timespec ts = {step / 1000, (long)(step % 1000) * 1000000L};
		nanosleep(&ts, NULL);
		ms -= step;
	}
}

static void help(FILE *f)
{
	fprintf(f,
		"usage: llmcap agent --server URL --trust PUBFILE [--trust PUBFILE2] [--once] [--interval S]\n"
		"                    [--max-backoff S] [--token-file FILE] [--metrics ADDR:PORT] [--cacert FILE]\n"
		"\n"
		"Keeps this host in sync with llmcap-server: pulls and installs the signed policy (same\n"
		"checks as `llmcap apply`), reports this host's usage and learns the org-wide totals,\n"
		"delivers the host's events to the policy's webhooks, and reclaims reservations of dead\n"
		"processes. While the server is unreachable the host keeps enforcing its last trusted\n"
		"policy and the agent retries with exponential backoff (capped at --max-backoff).\n"
		"A new policy arrives by long-poll (GET /v1/policy?wait=25, a thread of its own) within\n"
		"about a second of the admin change; usage and events keep the --interval pace.\n"
		"\n"
		"  --server URL       e.g. http://llmcap.internal:8787\n"
		"  --trust PUBFILE    the server's signing public key (llmcap keygen's .pub)\n"
		"  --once             one round, then exit: 0 when the server was reached and its policy\n"
		"                     is in force, 1 when not\n"
		"  --interval S       seconds between rounds (default 30)\n"
		"  --max-backoff S    cap on the retry delay while the server is away (default 300)\n"
		"  --token-file FILE  bearer token for usage reports (the server's --host-token-file)\n"
		"  --metrics ADDR:PORT  serve this host's Prometheus metrics at http://ADDR:PORT/metrics\n"
		"  --cacert FILE      PEM CA certificate(s) that verify an https:// server (its --tls-cert)\n"
		"\n"
		"State directory: $LLMCAP_STATE_DIR (see llmcap --help). SIGTERM or SIGINT: clean exit.\n");
}

int lc_cmd_agent(int argc, char **argv)
{
	static struct agent a;
	char err[512];
	double interval = 30, max_backoff = 300;
	char server[2048] = "";
	const char *metrics = NULL;

	memset(&a, 0, sizeof a);
	for (int i = 1; i < argc; i++) {
		const char *o = argv[i];
		if (!strcmp(o, "--help") || !strcmp(o, "-h")) {
			help(stdout);
			return 0;
		} else if (!strcmp(o, "--server") && i + 1 < argc) {
			snprintf(server, sizeof server, "%s", argv[++i]);
		} else if (!strcmp(o, "--trust") && i + 1 < argc) {
			if (lc_trust_load(argv[++i], &a.trust, err, sizeof err) != 0) {
				fprintf(stderr, "llmcap agent: %s\n", err);
				return 2;
			}
		} else if (!strcmp(o, "--token-file") && i + 1 < argc) {
			struct lc_buf tb;
			lc_buf_init(&tb, 512);
			if (lc_read_file(argv[++i], 512, &tb, err, sizeof err) != 0) {
				fprintf(stderr, "llmcap agent: --token-file: %s\n", err);
				return 2;
			}
			size_t n = tb.len;
			while (n > 0 && (tb.data[n - 1] == '\n' || tb.data[n - 1] == '\r' || tb.data[n - 1] == ' '))
				n--;
			snprintf(a.auth, sizeof a.auth, "Authorization: Bearer %.*s", (int)n, tb.data ? tb.data : "");
			sodium_memzero(tb.data, tb.len);
			lc_buf_free(&tb);
		} else if (!strcmp(o, "--metrics") && i + 1 < argc) {
			metrics = argv[++i];
		} else if (!strcmp(o, "--cacert") && i + 1 < argc) {
			snprintf(cacert, sizeof cacert, "%s", argv[++i]);
			if (access(cacert, R_OK) != 0) {
				fprintf(stderr, "llmcap agent: --cacert %s: %s\n", cacert, strerror(errno));
				return 2;
			}
		} else if (!strcmp(o, "--once")) {
			a.once = true;
		} else if (!strcmp(o, "--interval") && i + 1 < argc) {
			interval = strtod(argv[++i], NULL);
		} else if (!strcmp(o, "--max-backoff") && i + 1 < argc) {
			max_backoff = strtod(argv[++i], NULL);
		} else {
			fprintf(stderr, "llmcap agent: unexpected argument '%s' (see llmcap agent --help)\n", o);
			return 2;
		}
	}
	if (!server[0] || a.trust.n == 0) {
		fprintf(stderr, "llmcap agent: --server URL and --trust PUBFILE are required (see llmcap agent --help)\n");
		return 2;
	}
	if (strncmp(server, "http://", 7) != 0 && strncmp(server, "https://", 8) != 0) {
		fprintf(stderr, "llmcap agent: --server must be an http:// or https:// URL\n");
		return 2;
	}
	size_t sl = strlen(server);
	while (sl > 0 && server[sl - 1] == '/')
		server[--sl] = 0;
	a.server = server;
	cacert_for = server;
	if (!(interval > 0) || interval > 86400)
		interval = 30;
	if (max_backoff < interval)
		max_backoff = interval;
	if (sodium_init() < 0 || curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
		fprintf(stderr, "llmcap agent: cannot initialise libsodium/libcurl\n");
		return 1;
	}

	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_signal;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
	if (metrics && lc_agent_metrics_start(metrics, err, sizeof err) != 0) {
		fprintf(stderr, "llmcap agent: --metrics %s: %s\n", metrics, err);
		return 2;
	}

	int64_t installed = 0;
	if (lc_policy_info(&installed, NULL) == LC_OK)
		a.version = installed;
	pthread_mutex_init(&a.mu, NULL);
	a.interval = interval;
	a.max_backoff = max_backoff;
	pthread_t poller;
	bool polling = !a.once && pthread_create(&poller, NULL, longpoll, &a) == 0;
	int fails = 0, rc = 0;
	int64_t next_sync = 0;
	while (!agent_stop) {
		int64_t now = lc_now_ms();
		if (now >= next_sync) {
			unsigned reclaimed = 0;
			bool ok = pull_policy(&a) == 0;
			if (!agent_stop) {
				lc_reclaim(&reclaimed);
				lc_prune(NULL);
			}
			if (reclaimed)
				fprintf(stderr, "llmcap agent: reclaimed %u reservation%s of dead processes\n", reclaimed,
					reclaimed == 1 ? "" : "s");
			if (ok && !agent_stop)
				ok = push_usage(&a) == 0;
			int pending = agent_stop ? 0 : deliver_outbox(&a);
			lc_store_sync();
			if (a.once) {
				if (pending)
					fprintf(stderr, "llmcap agent: %d event%s not delivered yet (webhooks failing)\n",
						pending, pending == 1 ? "" : "s");
				if (a.kept)
					fprintf(stderr, "llmcap agent: %d event%s kept until a policy names webhooks\n",
						a.kept, a.kept == 1 ? "" : "s");
				rc = ok && !a.refused ? 0 : 1;
				break;
			}
			double delay = interval;
			if (ok) {
				fails = 0;
			} else {
				fails++;
				for (int i = 0; i < fails && delay < max_backoff; i++)
					delay *= 2;
				if (delay > max_backoff)
					delay = max_backoff;
				delay *= 0.75 + 0.5 * ((double)randombytes_uniform(1000) / 1000.0);   /* jitter */
				int64_t iv = 0;
				fprintf(stderr, "llmcap agent: server unreachable, %s; retry in %.0f s\n",
					lc_policy_info(&iv, NULL) == LC_OK ? "enforcing the installed policy"
									   : "no policy installed yet (provider calls pass)",
					delay);
			}
			next_sync = lc_now_ms() + (int64_t)(delay * 1000);
		} else {
			/* between rounds: hand host events to webhooks promptly */
			deliver_outbox(&a);
			if (a.touched)
				lc_store_sync();
		}
		int64_t wait = next_sync - lc_now_ms();
		sleep_ms(wait > 1000 ? 1000 : wait);
	}
	agent_stop = 1;
	if (polling)
		pthread_join(poller, NULL);
	lc_store_sync();
	curl_global_cleanup();
	return rc;
}
