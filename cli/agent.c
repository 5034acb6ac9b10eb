/* agent.c - `llmcap agent`: keeps one host in sync with llmcap-server.
 *
 *   llmcap agent enroll --server URL --code CODE [--trust PUBFILE] [--cacert FILE]
 *   llmcap agent [--server URL [--server URL2 ...]] [--trust PUBFILE] [--once] [--interval S]
 *
 * Enrolment exchanges a one-time code for this host's own credential (host id
 * + secret), kept in the state directory (host.credential, 0600); every write
 * to the server carries it.
 *
 * Each round: pull the signed policy (If-None-Match; the body is capped while
 * it downloads) and install it with the same checks as `llmcap apply`;
 * reclaim reservations of dead processes; push this host's cumulative usage
 * and take back the org-wide totals (the host then enforces team and org
 * limits on "global at the last report + own since"); upload the host's
 * outbox (its events) to the server, which notifies; flush the store. With
 * several --server URLs, a call that finds its server down moves to the next.
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

#include "engine.h"
#include "sign.h"
#include "util.h"

int lc_cmd_agent(int argc, char **argv);
int lc_agent_metrics_start(const char *addr, char *err, size_t errlen);   /* agent_metrics.c */
void lc_agent_metrics_report(bool ok);

#define AGENT_USAGE_ANSWER_MAX (64 * 1024 * 1024)
#define AGENT_OUTBOX_BATCH 64
#define AGENT_LONGPOLL_S 25   /* GET /v1/policy?wait=: the server holds it up to this (max 60) */

static volatile sig_atomic_t agent_stop;
static void sleep_ms(int64_t ms);

static void on_signal(int sig)
{
	(void)sig;
	agent_stop = 1;
}

#define AGENT_SERVERS_MAX 8
#define CRED_FILE "host.credential"
#define TRUST_FILE "server.pub"

struct agent {
	char servers[AGENT_SERVERS_MAX][2048];   /* base URLs, no trailing slash */
	int nservers;
	int cur;                    /* the server in use (a->mu) */
	char host_id[128];          /* from the credential: reports are this host's */
	struct lc_trust trust;
	char etag[128];
	unsigned char rejected[32]; /* sha256 of the last envelope refused: not retried */
	bool have_rejected;
	int64_t version;
	bool once;
	bool touched;   /* the last outbox pass had events */
	bool refused;   /* the server's policy was refused this round */
	int kept;       /* events held because this host is not enrolled */
	char auth[600]; /* "Authorization: Bearer <host id>.<secret>" or "" (not enrolled) */
	bool lease_down;      /* the last lease call failed (said once per outage) */
	bool lease_started;   /* the first lease round (a slice of every shared limit) was planned */
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

/* --cacert: the CA bundle that verifies the servers (the agent talks to nobody else) */
static char cacert[4096];

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
	if (cacert[0])
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

/* ---- servers: fail-over ---- */

/* the server in use, into base (2048 bytes); returns its index */
static int server_cur(struct agent *a, char *base)
{
	pthread_mutex_lock(&a->mu);
	int i = a->cur;
	snprintf(base, 2048, "%s", a->servers[i]);
	pthread_mutex_unlock(&a->mu);
	return i;
}

/* server i did not answer (st < 0, err says why) or answered 5xx (st) to `call`: the next one from
 * now on (unless another call moved on already). Reports are cumulative and numbered, events carry
 * their ids: nothing sent to the old server is counted twice by the next (they share one store), and
 * nothing is lost. */
static void server_failed(struct agent *a, int i, const char *call, long st, const char *err)
{
	pthread_mutex_lock(&a->mu);
	if (a->nservers > 1 && a->cur == i) {
		a->cur = (i + 1) % a->nservers;
		if (st < 0)
			fprintf(stderr, "llmcap agent: %s is not answering (%s: %s); moving to %s\n", a->servers[i], call, err,
				a->servers[a->cur]);
		else
			fprintf(stderr, "llmcap agent: %s is not answering (%s: HTTP %ld); moving to %s\n", a->servers[i], call,
				st, a->servers[a->cur]);
		a->etag[0] = 0;   /* ask the next one for its policy outright */
	}
	pthread_mutex_unlock(&a->mu);
}

static bool server_down(long st) { return st < 0 || st >= 500; }

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

	char base[2048];
	int si = server_cur(a, base);
	snprintf(url, sizeof url, "%s/v1/policy", base);
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
	if (server_down(st))
		server_failed(a, si, "GET /v1/policy", st, err);
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
			base, err,
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

/* one pull; a server that is down: the next one, each at most once */
static int pull_policy(struct agent *a)
{
	int rc = -1;
	for (int i = 0; i < a->nservers && rc != 0 && !agent_stop; i++)
		rc = pull_policy_wait(a, 0, NULL);
	return rc;
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

/* POST a JSON body (NULL: out of memory) to `path` of the server in use, with this host's credential
 * (timeout_ms 0: 30 s). A server that does not answer is marked failed, so that the next try goes to
 * the next one, and *down is set. url (AGENT_URL_MAX bytes) gets the URL. The status, or -1 with err. */
#define AGENT_URL_MAX 2200
static long post_host(struct agent *a, const char *path, const char *txt, struct body *bd, size_t max,
		      long timeout_ms, char *url, char *err, size_t errlen, bool *down)
{
	char base[2048];
	int si = server_cur(a, base);
	struct curl_slist *hd = curl_slist_append(NULL, "Content-Type: application/json");
	long st = -1;

	snprintf(url, AGENT_URL_MAX, "%s%s", base, path);
	hd = curl_slist_append(hd, a->auth);
	hd = curl_slist_append(hd, "Expect:");
	if (txt)
		st = http_t("POST", url, hd, txt, strlen(txt), bd, max, NULL, timeout_ms, err, errlen);
	else
		lc_errf(err, errlen, "out of memory");
	curl_slist_free_all(hd);
	if (server_down(st)) {
		char call[128];
		snprintf(call, sizeof call, "POST %s", path);
		*down = true;
		server_failed(a, si, call, st, err);
	}
	return st;
}

/* ---- usage ---- */

static int push_usage_once(struct agent *a, bool *down)
{
	json_t *snap = NULL, *ans = NULL;
	char url[AGENT_URL_MAX], err[1024];
	struct body bd = {0};
	int rc = -1, r;

	*down = false;
	if ((r = lc_usage_snapshot(&snap)) != LC_OK) {
		if (r == LC_E_NOSTATE || r == LC_E_NOPOLICY)
			return 0;   /* nothing installed yet: nothing to report */
		fprintf(stderr, "llmcap agent: usage snapshot: %s\n", lc_strerror(r));
		return -1;
	}
	json_object_set_new(snap, "host_id", json_string(a->host_id));   /* the credential's host */
	char *txt = json_dumps(snap, JSON_COMPACT);
	long st = post_host(a, "/v1/usage", txt, &bd, AGENT_USAGE_ANSWER_MAX, 0, url, err, sizeof err, down);
	free(txt);
	if (st < 0) {
		fprintf(stderr, "llmcap agent: POST %s: %s\n", url, err);
		goto out;
	}
	if (st != 200 || !bd.b.data) {
		fprintf(stderr, "llmcap agent: POST %s: HTTP %ld %.300s%s\n", url, st, bd.b.data ? bd.b.data : "",
			st == 401 ? " (enrol this host again: llmcap agent enroll --server URL --code CODE)" : "");
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
	lc_buf_free(&bd.b);
	json_decref(ans);
	json_decref(snap);
	return rc;
}

/* Each attempt is a new snapshot with the next seq: a report that reached a server whose answer was
 * lost is never sent again as such (the server refuses a replayed seq), and the next one, cumulative,
 * carries everything. */
static int push_usage(struct agent *a)
{
	int rc = -1;
	bool down = true;
	if (!a->auth[0]) {
		fprintf(stderr, "llmcap agent: this host is not enrolled, so its usage is not reported: llmcap agent enroll "
			"--server URL --code CODE (the code from POST /v1/admin/hosts/enroll)\n");
		lc_agent_metrics_report(false);
		return -1;
	}
	for (int i = 0; i < a->nservers && down && !agent_stop; i++)
		rc = push_usage_once(a, &down);
	lc_agent_metrics_report(rc == 0);
	return rc;
}

/* ---- leases: slices of shared limits (policy "leases": true) ---- */

#define AGENT_LEASE_TICK_MS 200
#define AGENT_LEASE_POLL_MS 10

/* One call when a slice needs one (lc_lease_plan decides: a refused request, less than half left,
 * a renewal before the TTL, something to give back). 1 called, 0 nothing to ask, -1 failed. */
static int lease_round(struct agent *a)
{
	json_t *req = NULL, *ans = NULL;
	char url[2200], base[2048], err[1024];
	struct curl_slist *hd = NULL;
	struct body bd = {0};
	int rc = -1, r;

	if (!a->auth[0])
		return 0;   /* not enrolled: no slices (shared limits refuse) */
	/* requests refused for want of a slice wait for this thread (lc_admit) unless the last call
	 * failed; the first round asks for a slice of every shared limit the policy names */
	if ((r = lc_lease_plan((a->lease_down || a->once ? 0 : LC_LEASE_UP) | (a->lease_started ? 0 : LC_LEASE_PREFETCH), &req)) !=
		    LC_OK ||
	    !req) {
		a->lease_started = r == LC_OK || a->lease_started;
		if (r != LC_OK && r != LC_E_NOPOLICY && !a->lease_down)
			fprintf(stderr, "llmcap agent: leases: %s\n", lc_strerror(r));
		return r == LC_OK || r == LC_E_NOPOLICY ? 0 : -1;
	}
	a->lease_started = true;
	json_object_set_new(req, "host_id", json_string(a->host_id));   /* the credential's host */
	char *txt = json_dumps(req, JSON_COMPACT);
	int64_t sent = lc_now_ms();
	int si = server_cur(a, base);
	snprintf(url, sizeof url, "%s/v1/leases", base);
	hd = curl_slist_append(hd, "Content-Type: application/json");
	hd = curl_slist_append(hd, a->auth);
	hd = curl_slist_append(hd, "Expect:");
	long st = http_t("POST", url, hd, txt, txt ? strlen(txt) : 0, &bd, 4 * 1024 * 1024, NULL, 10000, err, sizeof err);
	curl_slist_free_all(hd);
	free(txt);
	if (server_down(st))
		server_failed(a, si, "POST /v1/leases", st, err);
	if (st != 200 || !bd.b.data) {
		if (!a->lease_down && !agent_stop) {
			if (st < 0)
				fprintf(stderr, "llmcap agent: POST %s: %s (hosts spend at most the slices they hold)\n", url, err);
			else
				fprintf(stderr, "llmcap agent: POST %s: HTTP %ld %.300s\n", url, st, bd.b.data ? bd.b.data : "");
		}
		a->lease_down = true;
		goto out;
	}
	ans = json_loadb(bd.b.data, bd.b.len, 0, NULL);
	if ((r = lc_lease_apply(req, ans, sent)) != LC_OK) {
		fprintf(stderr, "llmcap agent: POST %s: answer not applied: %s\n", url, lc_strerror(r));
		goto out;
	}
	a->lease_down = false;
	rc = 1;
out:
	lc_buf_free(&bd.b);
	json_decref(ans);
	json_decref(req);
	return rc;
}

/* The lease thread: a round every tick (refills, renewals, give-backs); a refused request or a new
 * policy is seen within AGENT_LEASE_POLL_MS (a read of the store) and asked for at once. */
static void *lease_loop(void *arg)
{
	struct agent *a = arg;

	while (!agent_stop) {
		int r = lease_round(a);
		int64_t until = lc_now_ms() + (r < 0 ? 1000 : r > 0 ? 20 : AGENT_LEASE_TICK_MS);
		while (!agent_stop && lc_now_ms() < until && (r < 0 || !lc_lease_pending()))
			sleep_ms(AGENT_LEASE_POLL_MS);
	}
	return NULL;
}

/* ---- outbox -> the server, which notifies ---- */

/* Upload one batch of the host's events; delete each from the outbox once the server has it (it
 * keeps them by (host, event id), so an upload repeated after a crash notifies once). Returns the
 * number of events still pending, or -1 when the server could not be reached. */
static int upload_events_once(struct agent *a, bool *down)
{
	json_t *evs = NULL, *e, *up = json_array();
	char url[AGENT_URL_MAX], err[512];
	size_t i;
	int pending = 0;
	struct body bd = {0};

	*down = false;
	a->kept = 0;
	if (lc_outbox_list(0, AGENT_OUTBOX_BATCH, &evs) != LC_OK || !evs) {
		json_decref(up);
		return 0;
	}
	a->touched = json_array_size(evs) > 0;
	if (!a->touched)
		goto out;
	if (!a->auth[0]) {
		a->kept = (int)json_array_size(evs);   /* until this host is enrolled */
		pending = a->kept;
		goto out;
	}
	json_array_foreach(evs, i, e) {
		const char *id = json_string_value(json_object_get(e, "id"));
		const char *ev = json_string_value(json_object_get(e, "event"));
		const char *at = json_string_value(json_object_get(e, "created_at"));
		if (!id || !ev || !at) {
			lc_outbox_delete((uint64_t)json_integer_value(json_object_get(e, "seq")));   /* malformed */
			continue;
		}
		json_t *data = json_object_get(e, "data");
		json_array_append_new(up, json_pack("{s:s,s:s,s:s,s:O}", "id", id, "event", ev, "created_at", at, "data",
						    json_is_object(data) ? data : json_object()));
	}
	if (json_array_size(up) == 0)
		goto out;
	json_t *body = json_pack("{s:O}", "events", up);
	char *txt = json_dumps(body, JSON_COMPACT | JSON_REAL_PRECISION(15));
	json_decref(body);
	long st = post_host(a, "/v1/events", txt, &bd, 64 * 1024, 0, url, err, sizeof err, down);
	free(txt);
	if (st == 200) {
		/* a crash here (the test hook below) leaves the events in the outbox: uploaded again, notified once */
		const char *die = getenv("LLMCAP_TEST_AGENT_DIE_AFTER_UPLOAD");
		if (die && *die == '1')
			_exit(3);
		json_array_foreach(evs, i, e)
			lc_outbox_delete((uint64_t)json_integer_value(json_object_get(e, "seq")));
		goto out;
	}
	pending = (int)json_array_size(up);
	if (st < 0)
		fprintf(stderr, "llmcap agent: POST %s: %s\n", url, err);
	else
		fprintf(stderr, "llmcap agent: POST %s: HTTP %ld %.300s\n", url, st, bd.b.data ? bd.b.data : "");
out:
	lc_buf_free(&bd.b);
	json_decref(up);
	json_decref(evs);
	return pending;
}

static int upload_events(struct agent *a)
{
	int pending = 0;
	bool down = true;
	for (int i = 0; i < a->nservers && down && !agent_stop; i++)
		pending = upload_events_once(a, &down);
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
		"usage: llmcap agent enroll --server URL --code CODE [--trust PUBFILE] [--cacert FILE] [--label TEXT]\n"
		"       llmcap agent [--server URL [--server URL2 ...]] [--trust PUBFILE] [--once] [--interval S]\n"
		"                    [--max-backoff S] [--metrics ADDR:PORT] [--cacert FILE]\n"
		"\n"
		"Keeps this host in sync with llmcap-server: pulls and installs the signed policy (same\n"
		"checks as `llmcap apply`), reports this host's usage and learns the org-wide totals,\n"
		"uploads the host's events to the server (which sends every notification), and reclaims\n"
		"reservations of dead processes. While the server is unreachable the host keeps enforcing\n"
		"its last trusted policy and the agent retries with exponential backoff (capped at\n"
		"--max-backoff). A new policy arrives by long-poll (GET /v1/policy?wait=25, a thread of its\n"
		"own) within about a second of the admin change; usage and events keep the --interval pace.\n"
		"\n"
		"enroll exchanges a one-time code (POST /v1/admin/hosts/enroll on the server) for this\n"
		"host's own credential, kept in the state directory (" CRED_FILE ", mode 0600) with the\n"
		"server URL(s); --trust copies the server's public key there (" TRUST_FILE "). The agent\n"
		"then needs neither --server nor --trust. Usage reports and events need the credential.\n"
		"\n"
		"  --server URL       e.g. https://llmcap.internal:8787; several: when one is down the agent\n"
		"                     moves to the next (they must share one store: llmcap-server --db)\n"
		"  --trust PUBFILE    the server's signing public key (llmcap keygen's .pub)\n"
		"  --code CODE        (enroll) the one-time enrolment code\n"
		"  --label TEXT       (enroll) how GET /v1/admin/hosts names this host (default: hostname)\n"
		"  --once             one round, then exit: 0 when the server was reached and its policy\n"
		"                     is in force, 1 when not\n"
		"  --interval S       seconds between rounds (default 30)\n"
		"  --max-backoff S    cap on the retry delay while the server is away (default 300)\n"
		"  --token-file FILE  deprecated and ignored (the shared host token): enrol instead\n"
		"  --metrics ADDR:PORT  serve this host's Prometheus metrics at http://ADDR:PORT/metrics\n"
		"  --cacert FILE      PEM CA certificate(s) that verify an https:// server (its --tls-cert)\n"
		"\n"
		"State directory: $LLMCAP_STATE_DIR (see llmcap --help). SIGTERM or SIGINT: clean exit.\n");
}

static int state_path(const char *name, char *out, size_t outlen)
{
	char dir[4096];
	if (lc_state_dir(dir, sizeof dir) != 0)
		return -1;
	int n = snprintf(out, outlen, "%s/%s", dir, name);
	return n < 0 || (size_t)n >= outlen ? -1 : 0;
}

/* a server URL as given: http(s)://, no trailing slash; 0 ok */
static int add_server(struct agent *a, const char *url)
{
	if (strncmp(url, "http://", 7) != 0 && strncmp(url, "https://", 8) != 0) {
		fprintf(stderr, "llmcap agent: --server %s: must be an http:// or https:// URL\n", url);
		return -1;
	}
	if (a->nservers == AGENT_SERVERS_MAX) {
		fprintf(stderr, "llmcap agent: at most %d --server URLs\n", AGENT_SERVERS_MAX);
		return -1;
	}
	if (strlen(url) >= sizeof a->servers[0] - 64) {
		fprintf(stderr, "llmcap agent: --server: URL too long\n");
		return -1;
	}
	char *sv = a->servers[a->nservers++];
	snprintf(sv, sizeof a->servers[0], "%s", url);
	size_t sl = strlen(sv);
	while (sl > 0 && sv[sl - 1] == '/')
		sv[--sl] = 0;
	return 0;
}

/* The options `agent` and `agent enroll` share: --help, --server URL, --trust PUBFILE (*trust
 * names the file), --cacert FILE (it must be readable). *i moves past a value taken. */
enum { OPT_OTHER, OPT_TAKEN, OPT_HELP, OPT_BAD };
static int shared_opt(struct agent *a, int argc, char **argv, int *i, const char *who, const char **trust)
{
	const char *o = argv[*i];
	char err[512];

	if (!strcmp(o, "--help") || !strcmp(o, "-h")) {
		help(stdout);
		return OPT_HELP;
	}
	if (*i + 1 >= argc)
		return OPT_OTHER;
	if (!strcmp(o, "--server"))
		return add_server(a, argv[++*i]) == 0 ? OPT_TAKEN : OPT_BAD;
	if (!strcmp(o, "--trust")) {
		*trust = argv[++*i];
		if (lc_trust_load(*trust, &a->trust, err, sizeof err) == 0)
			return OPT_TAKEN;
		fprintf(stderr, "%s: %s\n", who, err);
		return OPT_BAD;
	}
	if (!strcmp(o, "--cacert")) {
		snprintf(cacert, sizeof cacert, "%s", argv[++*i]);
		if (access(cacert, R_OK) == 0)
			return OPT_TAKEN;
		fprintf(stderr, "%s: --cacert %s: %s\n", who, cacert, strerror(errno));
		return OPT_BAD;
	}
	return OPT_OTHER;
}

/* the credential from the state directory: 1 loaded, 0 none, -1 unusable (said why) */
static int load_credential(struct agent *a, bool want_servers)
{
	char path[4200], err[512];
	struct lc_buf b;
	int rc = -1;
	if (state_path(CRED_FILE, path, sizeof path) != 0 || access(path, F_OK) != 0)
		return 0;
	lc_buf_init(&b, 64 * 1024);
	if (lc_read_file(path, 64 * 1024, &b, err, sizeof err) != 0) {
		fprintf(stderr, "llmcap agent: %s\n", err);
		lc_buf_free(&b);
		return -1;
	}
	json_t *j = json_loadb(b.data ? b.data : "", b.len, 0, NULL);
	const char *hid = json_string_value(json_object_get(j, "host_id"));
	const char *cred = json_string_value(json_object_get(j, "credential"));
	if (!hid || !cred || strlen(hid) >= sizeof a->host_id || strlen(cred) > 400) {
		fprintf(stderr, "llmcap agent: %s: not a host credential (enrol again: llmcap agent enroll)\n", path);
		goto out;
	}
	snprintf(a->host_id, sizeof a->host_id, "%s", hid);
	snprintf(a->auth, sizeof a->auth, "Authorization: Bearer %s", cred);
	if (want_servers) {
		size_t i;
		json_t *u;
		json_array_foreach(json_object_get(j, "servers"), i, u)
			if (json_is_string(u) && add_server(a, json_string_value(u)) != 0)
				goto out;
	}
	rc = 1;
out:
	if (b.data)
		sodium_memzero(b.data, b.len);
	lc_buf_free(&b);
	json_decref(j);
	return rc;
}

/* llmcap agent enroll --server URL [--server URL2 ...] --code CODE [--trust PUBFILE] [--cacert FILE] */
static int cmd_enroll(int argc, char **argv)
{
	static struct agent a;
	const char *code = NULL, *trust = NULL, *label = NULL;
	char err[1024], host_id[33], epoch[33], path[4200], url[2200], hn[256] = "";
	int rc = 1;

	memset(&a, 0, sizeof a);
	for (int i = 2; i < argc; i++) {
		const char *o = argv[i];
		int so = shared_opt(&a, argc, argv, &i, "llmcap agent enroll", &trust);
		if (so == OPT_HELP || so == OPT_BAD)
			return so == OPT_HELP ? 0 : 2;
		if (so == OPT_TAKEN)
			continue;
		if (!strcmp(o, "--code") && i + 1 < argc) {
			code = argv[++i];
		} else if (!strcmp(o, "--label") && i + 1 < argc) {
			label = argv[++i];
		} else {
			fprintf(stderr, "llmcap agent enroll: unexpected argument '%s' (see llmcap agent --help)\n", o);
			return 2;
		}
	}
	if (!a.nservers || !code) {
		fprintf(stderr, "llmcap agent enroll: --server URL and --code CODE are required\n");
		return 2;
	}
	if (sodium_init() < 0 || curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
		fprintf(stderr, "llmcap agent enroll: cannot initialise libsodium/libcurl\n");
		return 1;
	}
	int r = lc_host_identity(host_id, epoch);   /* creates the state directory and store when new */
	if (r != LC_OK) {
		fprintf(stderr, "llmcap agent enroll: the state directory: %s\n", lc_strerror(r));
		return 1;
	}
	if (!label && gethostname(hn, sizeof hn - 1) == 0 && hn[0])
		label = hn;
	json_t *req = json_pack("{s:s,s:s}", "code", code, "host_id", host_id);
	if (label)
		json_object_set_new(req, "label", json_stringn(label, strnlen(label, 128)));
	char *txt = json_dumps(req, JSON_COMPACT);
	json_decref(req);
	struct curl_slist *hd = curl_slist_append(NULL, "Content-Type: application/json");
	hd = curl_slist_append(hd, "Expect:");
	struct body bd = {0};
	long st = -1;
	for (int i = 0; i < a.nservers && server_down(st); i++) {   /* the first server that answers */
		lc_buf_free(&bd.b);
		snprintf(url, sizeof url, "%s/v1/hosts/enroll", a.servers[i]);
		st = http("POST", url, hd, txt, strlen(txt), &bd, 64 * 1024, err, sizeof err);
		if (st < 0)
			fprintf(stderr, "llmcap agent enroll: POST %s: %s\n", url, err);
	}
	curl_slist_free_all(hd);
	sodium_memzero(txt, strlen(txt));
	free(txt);
	json_t *ans = st == 201 && bd.b.data ? json_loadb(bd.b.data, bd.b.len, 0, NULL) : NULL;
	const char *hid = json_string_value(json_object_get(ans, "host_id"));
	const char *cred = json_string_value(json_object_get(ans, "credential"));
	if (st >= 0 && (!hid || !cred)) {
		json_t *e = bd.b.data ? json_loadb(bd.b.data, bd.b.len, 0, NULL) : NULL;
		const char *msg = json_string_value(json_object_get(json_object_get(e, "error"), "message"));
		fprintf(stderr, "llmcap agent enroll: the server refused the code: HTTP %ld%s%s\n", st, msg ? ": " : "",
			msg ? msg : "");
		json_decref(e);
	}
	if (!hid || !cred)
		goto out;
	json_t *file = json_pack("{s:s,s:s,s:[]}", "host_id", hid, "credential", cred, "servers");
	for (int i = 0; i < a.nservers; i++)
		json_array_append_new(json_object_get(file, "servers"), json_string(a.servers[i]));
	char *ftxt = json_dumps(file, JSON_INDENT(2));
	json_decref(file);
	if (state_path(CRED_FILE, path, sizeof path) != 0 || !ftxt ||
	    lc_write_file_atomic(path, ftxt, strlen(ftxt), 0600, err, sizeof err) != 0) {
		fprintf(stderr, "llmcap agent enroll: cannot write the credential: %s\n", ftxt ? err : "out of memory");
		if (ftxt)
			sodium_memzero(ftxt, strlen(ftxt));
		free(ftxt);
		goto out;
	}
	sodium_memzero(ftxt, strlen(ftxt));
	free(ftxt);
	if (trust) {
		struct lc_buf tb;
		char tp[4200];
		lc_buf_init(&tb, 64 * 1024);
		if (lc_read_file(trust, 64 * 1024, &tb, err, sizeof err) != 0 || state_path(TRUST_FILE, tp, sizeof tp) != 0 ||
		    lc_write_file_atomic(tp, tb.data ? tb.data : "", tb.len, 0644, err, sizeof err) != 0) {
			fprintf(stderr, "llmcap agent enroll: cannot keep the trusted key: %s\n", err);
			lc_buf_free(&tb);
			goto out;
		}
		lc_buf_free(&tb);
	}
	printf("enrolled as host %s; credential in %s\n", hid, path);
	rc = 0;
out:
	json_decref(ans);
	if (bd.b.data)
		sodium_memzero(bd.b.data, bd.b.len);
	lc_buf_free(&bd.b);
	curl_global_cleanup();
	return rc;
}

int lc_cmd_agent(int argc, char **argv)
{
	static struct agent a;
	char err[512];
	double interval = 30, max_backoff = 300;
	const char *metrics = NULL, *trust = NULL;

	if (argc > 1 && !strcmp(argv[1], "enroll"))
		return cmd_enroll(argc, argv);
	memset(&a, 0, sizeof a);
	for (int i = 1; i < argc; i++) {
		const char *o = argv[i];
		int so = shared_opt(&a, argc, argv, &i, "llmcap agent", &trust);
		if (so == OPT_HELP || so == OPT_BAD)
			return so == OPT_HELP ? 0 : 2;
		if (so == OPT_TAKEN)
			continue;
		if (!strcmp(o, "--token-file") && i + 1 < argc) {
			i++;
			fprintf(stderr, "llmcap agent: --token-file is deprecated and ignored (a shared host token let any "
				"host report as any other): enrol this host instead, llmcap agent enroll --server URL --code "
				"CODE\n");
		} else if (!strcmp(o, "--metrics") && i + 1 < argc) {
			metrics = argv[++i];
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
	/* the enrolment's credential; its servers when none is given here */
	if (load_credential(&a, a.nservers == 0) < 0)
		return 2;
	if (a.trust.n == 0) {
		char tp[4200];
		if (state_path(TRUST_FILE, tp, sizeof tp) == 0 && access(tp, F_OK) == 0 &&
		    lc_trust_load(tp, &a.trust, err, sizeof err) != 0) {
			fprintf(stderr, "llmcap agent: %s\n", err);
			return 2;
		}
	}
	if (!a.nservers || a.trust.n == 0) {
		fprintf(stderr, "llmcap agent: --server URL and --trust PUBFILE are required unless `llmcap agent enroll` "
			"kept them (see llmcap agent --help)\n");
		return 2;
	}
	if (!a.auth[0])
		fprintf(stderr, "llmcap agent: this host is not enrolled: the policy is pulled, but usage and events wait for "
			"a credential (llmcap agent enroll --server URL --code CODE)\n");
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
	pthread_t leaser;
	bool leasing = !a.once && pthread_create(&leaser, NULL, lease_loop, &a) == 0;
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
			/* not enrolled: the policy is in force all the same (said once at start) */
			if (ok && !agent_stop && a.auth[0])
				ok = push_usage(&a) == 0;
			if (ok && a.once && !agent_stop)
				ok = lease_round(&a) >= 0;   /* --once: the slices refused requests asked for */
			int pending = agent_stop ? 0 : upload_events(&a);
			lc_store_sync();
			if (a.once) {
				if (pending && !a.kept)
					fprintf(stderr, "llmcap agent: %d event%s not uploaded yet (the server did not take them)\n",
						pending, pending == 1 ? "" : "s");
				if (a.kept)
					fprintf(stderr, "llmcap agent: %d event%s kept until this host is enrolled\n",
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
			/* between rounds: hand host events to the server promptly */
			upload_events(&a);
			if (a.touched)
				lc_store_sync();
		}
		int64_t wait = next_sync - lc_now_ms();
		sleep_ms(wait > 1000 ? 1000 : wait);
	}
	agent_stop = 1;
	if (polling)
		pthread_join(poller, NULL);
	if (leasing)
		pthread_join(leaser, NULL);
	lc_store_sync();
	curl_global_cleanup();
	return rc;
}
