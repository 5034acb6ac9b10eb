/* notify.c - the server's durable webhook outbox and its delivery thread.
 *
 * An event is written to the outbox in the same transaction as the change
 * that caused it (one entry per webhook that wants it, with the exact body
 * to send), so it survives a crash or restart. The notifier thread POSTs due
 * entries with libcurl and deletes an entry only after a 2xx: delivery is at
 * least once, and x-llmcap-delivery (stable across retries) lets the
 * receiver drop duplicates. Failures back off exponentially.
 */
#include <curl/curl.h>
#include <errno.h>
#include <inttypes.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "alert.h"
#include "email.h"
#include "metrics.h"
#include "srv.h"
#include "webhook.h"
#include "util.h"

#define DELIVER_BATCH 32

static void seq_key(uint64_t seq, unsigned char k[8])
{
	for (int i = 7; i >= 0; i--) {
		k[i] = (unsigned char)(seq & 0xff);
		seq >>= 8;
	}
}

/* Stores one outbox entry (taking `ent`) under the next sequence number. */
static int outbox_append(struct srv *s, srv_txn *txn, json_t *ent, uint64_t *seq)
{
	char *etext = ent ? json_dumps(ent, JSON_COMPACT) : NULL;
	unsigned char kb[8];
	int rc;

	json_decref(ent);
	if (!etext)
		return ENOMEM;
	seq_key(++*seq, kb);
	MDB_val k = {8, kb}, val = {strlen(etext), etext};
	rc = srv_kv_put(txn, s->db_outbox, &k, &val, 0);
	free(etext);
	return rc;
}

int srv_event_queue(struct srv *s, srv_txn *txn, const char *event, json_t *data, const char *dedup_key)
{
	return srv_event_queue_from(s, txn, NULL, event, NULL, NULL, data, dedup_key);
}

int srv_event_queue_from(struct srv *s, srv_txn *txn, const char *id, const char *event, const char *created_at,
			 const char *host, json_t *data, const char *dedup_key)
{
	MDB_val v;
	char evid[80], t[32], hx[65];
	int rc = 0;
	int64_t now_ms = lc_now_ms();

	if (dedup_key) {
		if (srv_get_raw(txn, s->db_fired, dedup_key, &v) == 0) {
			json_decref(data);
			return 0;
		}
		if ((rc = srv_put_int(txn, s->db_fired, dedup_key, now_ms / 1000)) != 0) {
			json_decref(data);
			return rc;
		}
	}
	if (id) {
		snprintf(evid, sizeof evid, "%s", id);
	} else {
		strcpy(evid, "evt_");
		srv_random_hex(evid + 4, 12);
	}
	lc_time_format(now_ms / 1000, t);
	json_t *body = json_pack("{s:s,s:s,s:s,s:s,s:o}", "id", evid, "event", event, "created_at",
				 created_at ? created_at : t, "source", host ? "host" : "llmcap-server", "data", data);
	if (host)
		json_object_set_new(body, "host_id", json_string(host));
	char *text = json_dumps(body, JSON_COMPACT | JSON_REAL_PRECISION(15));
	json_decref(body);
	json_t *hooks = srv_get_json(txn, s->db_meta, "webhooks");
	size_t i, queued = 0;
	json_t *wh;
	uint64_t seq = (uint64_t)srv_get_int(txn, s->db_meta, "outbox_seq", 0);
	json_array_foreach(hooks, i, wh) {
		const char *url = json_string_value(json_object_get(wh, "url"));
		const char *secret = json_string_value(json_object_get(wh, "secret"));
		if (!url || !lc_webhook_wants(wh, event))
			continue;
		unsigned char h[32];
		char idsrc[1024], dlv[80];
		snprintf(idsrc, sizeof idsrc, "%s|%s", evid, url);
		lc_sha256(idsrc, strlen(idsrc), h);
		lc_hex(h, 12, hx);
		snprintf(dlv, sizeof dlv, "dlv_%s", hx);
		char *payload = lc_webhook_body(wh, text ? text : "{}");   /* its format: generic, slack, teams */
		json_t *ent = json_pack("{s:s,s:s,s:s,s:s,s:s,s:s,s:i,s:I,s:I}", "delivery", dlv, "event_id", evid, "event",
					event, "url", url, "secret", secret ? secret : "", "body", payload ? payload : "{}",
					"attempts", 0, "next_at_ms", (json_int_t)now_ms, "created_ms", (json_int_t)now_ms);
		free(payload);
		if ((rc = outbox_append(s, txn, ent, &seq)) != 0)
			break;
		queued++;
	}
	/* e-mail recipients (PUT /v1/admin/emails), sent through --smtp-relay */
	json_t *emails = rc == 0 && srv_email_enabled() ? srv_get_json(txn, s->db_meta, "emails") : NULL;
	json_array_foreach(emails, i, wh) {
		const char *to = json_string_value(json_object_get(wh, "to"));
		if (!to || !lc_webhook_wants(wh, event))
			continue;
		json_t *ent = json_pack("{s:s,s:s,s:s,s:s,s:s,s:i,s:I,s:I}", "delivery", evid, "event_id", evid, "event", event,
					"email", to, "body", text ? text : "{}", "attempts", 0, "next_at_ms",
					(json_int_t)now_ms, "created_ms", (json_int_t)now_ms);
		if ((rc = outbox_append(s, txn, ent, &seq)) != 0)
			break;
		queued++;
	}
	json_decref(emails);
	if (rc == 0 && queued)
		rc = srv_put_int(txn, s->db_meta, "outbox_seq", (int64_t)seq);
	lc_log(LC_LOG_INFO, "llmcap-server: event %s %s (%zu webhook%s)", event, evid, queued, queued == 1 ? "" : "s");
	json_decref(hooks);
	free(text);
	return rc;
}

/* ---- delivery ---- */

struct due {
	unsigned char key[8];
	json_t *ent;
};

struct scan_ctx {
	struct due d[DELIVER_BATCH];
	int n;
	int64_t now_ms, next_ms;
};

static int scan_txn(struct srv *s, srv_txn *txn, void *ctx)
{
	struct scan_ctx *sc = ctx;
	srv_cursor *c;
	MDB_val k, v;
	int rc = srv_cursor_open(txn, s->db_outbox, &c);
	if (rc)
		return rc;
	for (rc = srv_cursor_get(c, &k, &v, MDB_FIRST); rc == 0; rc = srv_cursor_get(c, &k, &v, MDB_NEXT)) {
		if (k.mv_size != 8)
			continue;
		json_t *e = json_loadb(v.mv_data, v.mv_size, 0, NULL);
		if (!e)
			continue;
		int64_t at = json_integer_value(json_object_get(e, "next_at_ms"));
		if (at <= sc->now_ms && sc->n < DELIVER_BATCH) {
			memcpy(sc->d[sc->n].key, k.mv_data, 8);
			sc->d[sc->n++].ent = e;
			continue;
		}
		if (sc->next_ms == 0 || at < sc->next_ms)
			sc->next_ms = at;
		json_decref(e);
	}
	srv_cursor_close(c);
	return 0;
}

static size_t sink(char *p, size_t sz, size_t n, void *u)
{
	(void)p;
	(void)u;
	return sz * n;
}

static int on_progress(void *u, curl_off_t dt, curl_off_t dn, curl_off_t ut, curl_off_t un)
{
	struct srv *s = u;
	(void)dt;
	(void)dn;
	(void)ut;
	(void)un;
	return __atomic_load_n(&s->stopping, __ATOMIC_RELAXED) ? 1 : 0;   /* shutting down: retry after restart */
}

static int post(struct srv *s, const char *url, const char *secret, const char *event, const char *dlv, const char *body,
		long *status, char *err, size_t errlen)
{
	CURL *h = curl_easy_init();
	struct curl_slist *hd = NULL;
	char line[512], sig[160];
	CURLcode cc;
	if (!h)
		return -1;
	lc_webhook_sign(secret, lc_now(), body, strlen(body), sig, sizeof sig);
	hd = curl_slist_append(hd, "content-type: application/json");
	snprintf(line, sizeof line, "x-llmcap-event: %s", event);
	hd = curl_slist_append(hd, line);
	snprintf(line, sizeof line, "x-llmcap-delivery: %s", dlv);
	hd = curl_slist_append(hd, line);
	snprintf(line, sizeof line, "x-llmcap-signature: %s", sig);
	hd = curl_slist_append(hd, line);
	hd = curl_slist_append(hd, "expect:");
	curl_easy_setopt(h, CURLOPT_URL, url);
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, hd);
	curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
	curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, (long)strlen(body));
	curl_easy_setopt(h, CURLOPT_USERAGENT, "llmcap-server/0.1");
	curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, 5000L);
	curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, 15000L);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, sink);
	curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(h, CURLOPT_NOPROGRESS, 0L);
	curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, on_progress);
	curl_easy_setopt(h, CURLOPT_XFERINFODATA, s);
	cc = curl_easy_perform(h);
	*status = 0;
	if (cc == CURLE_OK)
		curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, status);
	else
		snprintf(err, errlen, "%s", curl_easy_strerror(cc));
	curl_slist_free_all(hd);
	curl_easy_cleanup(h);
	return cc == CURLE_OK ? 0 : -1;
}

struct done_ctx {
	unsigned char key[8];
	bool ok;
	json_t *ent;
};

static int done_txn(struct srv *s, srv_txn *txn, void *ctx)
{
	struct done_ctx *dc = ctx;
	MDB_val k = {8, dc->key};
	if (dc->ok) {
		int rc = srv_kv_del(txn, s->db_outbox, &k, NULL);
		return rc == MDB_NOTFOUND ? 0 : rc;
	}
	char *t = json_dumps(dc->ent, JSON_COMPACT);
	MDB_val v = {strlen(t), t};
	int rc = srv_kv_put(txn, s->db_outbox, &k, &v, 0);
	free(t);
	return rc;
}

int srv_deliver_due(struct srv *s, int64_t *next_due_ms)
{
	struct scan_ctx sc = {.now_ms = lc_now_ms()};
	int delivered = 0;
	if (next_due_ms)
		*next_due_ms = 0;
	if (!srv_store_notifier_turn(s))   /* another server on the same database delivers */
		return 0;
	if (srv_read(s, scan_txn, &sc) != 0)
		return 0;
	for (int i = 0; i < sc.n; i++) {
		json_t *e = sc.d[i].ent;
		const char *url = json_string_value(json_object_get(e, "url"));
		const char *dlv = json_string_value(json_object_get(e, "delivery"));
		const char *ev = json_string_value(json_object_get(e, "event"));
		const char *body = json_string_value(json_object_get(e, "body"));
		const char *secret = json_string_value(json_object_get(e, "secret"));
		long status = 0;
		char err[256] = "";
		struct done_ctx dc = {.ent = e};
		memcpy(dc.key, sc.d[i].key, 8);
		const char *to = json_string_value(json_object_get(e, "email"));
		if (to) {   /* an e-mail: 200 when the relay accepted it */
			status = srv_email_deliver(to, body ? body : "{}", err, sizeof err) == 0 ? 200 : 0;
			url = to;
		} else {
			post(s, url ? url : "", secret ? secret : "", ev ? ev : "", dlv ? dlv : "", body ? body : "{}", &status,
			     err, sizeof err);
		}
		dc.ok = status >= 200 && status < 300;
		if (dc.ok) {
			delivered++;
			srv_metric_webhook(SRV_WEBHOOK_DELIVERED);
			lc_log(LC_LOG_INFO, "llmcap-server: delivered %s (%s) to %s", dlv, ev, url);
		} else {
			int64_t attempts = json_integer_value(json_object_get(e, "attempts")) + 1;
			int64_t delay = s->backoff_base_ms;
			for (int64_t a = 1; a < attempts && delay < s->backoff_max_ms; a++)
				delay *= 2;
			if (delay > s->backoff_max_ms)
				delay = s->backoff_max_ms;
			int64_t now = lc_now_ms();
			srv_metric_webhook(SRV_WEBHOOK_FAILED);
			json_object_set_new(e, "attempts", json_integer(attempts));
			json_object_set_new(e, "next_at_ms", json_integer(now + delay));
			if (status)
				snprintf(err, sizeof err, "HTTP %ld", status);
			json_object_set_new(e, "last_error", json_string(err));
			if (now - json_integer_value(json_object_get(e, "created_ms")) > s->give_up_s * 1000) {
				srv_metric_webhook(SRV_WEBHOOK_DROPPED);
				lc_log(LC_LOG_ERROR, "llmcap-server: giving up on %s (%s) to %s after %" PRId64 " attempts: %s",
				       dlv, ev, url, attempts, err);
				dc.ok = true;   /* drop it */
			} else {
				lc_log(LC_LOG_INFO, "llmcap-server: delivery %s to %s failed (%s), retry in %" PRId64 " ms", dlv,
				       url, err, delay);
				if (sc.next_ms == 0 || now + delay < sc.next_ms)
					sc.next_ms = now + delay;
			}
		}
		srv_write(s, done_txn, &dc);
		json_decref(e);
	}
	if (next_due_ms)
		*next_due_ms = sc.n == DELIVER_BATCH ? lc_now_ms() : sc.next_ms;
	return delivered;
}

/* ---- the thread ---- */

static int eval_txn(struct srv *s, srv_txn *txn, void *ctx)
{
	(void)ctx;
	return srv_usage_evaluate(s, txn, lc_now()) > 0 ? 0 : MDB_NOTFOUND;
}

static void *notifier_main(void *arg)
{
	struct srv *s = arg;
	int64_t last_maint = 0, last_prune = 0;
	bool evaluate = true;
	for (;;) {
		int64_t now = lc_now_ms(), next = 0;
		if (now - last_maint >= 5000) {
			srv_policy_maintain(s);
			evaluate = true;   /* windows roll over with time, not only with reports */
			last_maint = now;
		}
		if (now - last_prune >= 600000) {
			srv_prune(s);
			last_prune = now;
		}
		if (evaluate)
			srv_write(s, eval_txn, NULL);
		srv_deliver_due(s, &next);

		pthread_mutex_lock(&s->mu);
		if (s->stopping) {
			pthread_mutex_unlock(&s->mu);
			break;
		}
		if (!s->kick) {
			int64_t wake = lc_now_ms() + 1000;
			if (next && next < wake)
				wake = next;
			struct timespec ts;
			clock_gettime(CLOCK_REALTIME, &ts);
			int64_t delta = wake - lc_now_ms();
			if (delta < 0)
				delta = 0;
			ts.tv_sec += delta / 1000;
			ts.tv_nsec += (delta % 1000) * 1000000;
			if (ts.tv_nsec >= 1000000000) {
				ts.tv_sec++;
				ts.tv_nsec -= 1000000000;
			}
			pthread_cond_timedwait(&s->cv, &s->mu, &ts);
		}
		evaluate = s->kick;
		s->kick = false;
		bool stop = s->stopping;
		pthread_mutex_unlock(&s->mu);
		if (stop)
			break;
	}
	return NULL;
}

int srv_notifier_start(struct srv *s)
{
	pthread_mutex_init(&s->mu, NULL);
	pthread_cond_init(&s->cv, NULL);
	s->stopping = false;
	if (s->backoff_base_ms <= 0)
		s->backoff_base_ms = 1000;
	if (s->backoff_max_ms <= 0)
		s->backoff_max_ms = 300000;
	if (s->give_up_s <= 0)
		s->give_up_s = 3 * 86400;
	if (pthread_create(&s->notifier, NULL, notifier_main, s) != 0)
		return -1;
	s->notifier_running = true;
	return 0;
}

void srv_notifier_kick(struct srv *s)
{
	if (!s->notifier_running)
		return;
	pthread_mutex_lock(&s->mu);
	s->kick = true;
	pthread_cond_signal(&s->cv);
	pthread_mutex_unlock(&s->mu);
}

void srv_notifier_stop(struct srv *s)
{
	if (!s->notifier_running)
		return;
	pthread_mutex_lock(&s->mu);
	__atomic_store_n(&s->stopping, true, __ATOMIC_RELAXED);
	pthread_cond_signal(&s->cv);
	pthread_mutex_unlock(&s->mu);
	pthread_join(s->notifier, NULL);
	s->notifier_running = false;
}
