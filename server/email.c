/* email.c - alert e-mail through the configured SMTP relay (libcurl smtp:// or smtps://). */
#include <curl/curl.h>
#include <stdio.h>
#include <string.h>

#include "alert.h"
#include "email.h"
#include "rules.h"
#include "srv.h"
#include "util.h"

struct src {
	const char *p;
	size_t left;
};

static size_t feed(char *buf, size_t sz, size_t n, void *u)
{
	struct src *s = u;
	size_t k = sz * n < s->left ? sz * n : s->left;
	memcpy(buf, s->p, k);
	s->p += k;
	s->left -= k;
	return k;
}

int srv_email_send(const struct srv_email *cfg, const char *to, const char *msg, size_t len, char *err, size_t errlen)
{
	CURL *c = curl_easy_init();
	struct curl_slist *rcpt = NULL;
	struct src s = {msg, len};
	char from[320];
	if (!c)
		return lc_errf(err, errlen, "curl: out of memory"), -1;
	snprintf(from, sizeof from, "<%s>", cfg->from);
	rcpt = curl_slist_append(rcpt, to);
	curl_easy_setopt(c, CURLOPT_URL, cfg->relay);
	curl_easy_setopt(c, CURLOPT_MAIL_FROM, from);
	curl_easy_setopt(c, CURLOPT_MAIL_RCPT, rcpt);
	curl_easy_setopt(c, CURLOPT_UPLOAD, 1L);
	curl_easy_setopt(c, CURLOPT_READFUNCTION, feed);
	curl_easy_setopt(c, CURLOPT_READDATA, &s);
	curl_easy_setopt(c, CURLOPT_INFILESIZE_LARGE, (curl_off_t)len);
	curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "smtp,smtps");
	curl_easy_setopt(c, CURLOPT_USE_SSL, cfg->starttls ? (long)CURLUSESSL_ALL : (long)CURLUSESSL_TRY);
	if (cfg->user[0]) {
		curl_easy_setopt(c, CURLOPT_USERNAME, cfg->user);
		curl_easy_setopt(c, CURLOPT_PASSWORD, cfg->password);
	}
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, 10000L);
	curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 30000L);
	CURLcode cc = curl_easy_perform(c);
	if (cc != CURLE_OK)
		lc_errf(err, errlen, "%s", curl_easy_strerror(cc));
	curl_slist_free_all(rcpt);
	curl_easy_cleanup(c);
	return cc == CURLE_OK ? 0 : -1;
}

/* ---- configuration (llmcap-server --smtp-relay, --smtp-from) ---- */

static struct srv_email cfg;

int srv_email_configure(const char *relay, const char *from, char *err, size_t errlen)
{
	if (strncmp(relay, "smtp://", 7) && strncmp(relay, "smtps://", 8))
		return lc_errf(err, errlen, "--smtp-relay: expected smtp://HOST:PORT or smtps://HOST:PORT"), -1;
	if (!from || !strchr(from, '@') || strpbrk(from, "\r\n<> "))
		return lc_errf(err, errlen, "--smtp-from: an address like llmcap@example.com is required"), -1;
	snprintf(cfg.relay, sizeof cfg.relay, "%s", relay);
	snprintf(cfg.from, sizeof cfg.from, "%s", from);
	return 0;
}

bool srv_email_enabled(void)
{
	return cfg.relay[0] != 0;
}

int srv_email_deliver(const char *to, const char *event_json, char *err, size_t errlen)
{
	struct lc_buf m;
	int rc;
	if (!cfg.relay[0])
		return lc_errf(err, errlen, "no --smtp-relay configured"), -1;
	lc_buf_init(&m, 1 << 20);
	if (lc_alert_email(event_json, cfg.from, to, &m) != 0) {
		lc_buf_free(&m);
		return lc_errf(err, errlen, "the event is not JSON"), -1;
	}
	rc = srv_email_send(&cfg, to, m.data, m.len, err, errlen);
	lc_buf_free(&m);
	return rc;
}

/* ---- PUT/GET /v1/admin/emails: {"emails": [{"to": ADDRESS, "events": [...]?}]} ---- */

static bool address_ok(const char *a)
{
	const char *at = strchr(a, '@');
	return at && at != a && at[1] && strlen(a) < 254 && !strpbrk(a, "\r\n<>, \t\"");
}

static int emails_put_txn(struct srv *s, srv_txn *txn, void *ctx)
{
	struct srv_call *c = ctx;
	int rc = srv_put_json(txn, s->db_meta, "emails", json_object_get(c->body, "emails"));
	if (rc)
		return rc;
	srv_resp_json(c->rs, 200, json_pack("{s:O}", "emails", json_object_get(c->body, "emails")));
	return 0;
}

void srv_h_emails_put(struct srv_call *c)
{
	json_t *list = json_object_get(c->body, "emails"), *e, *v;
	size_t i;
	const char *k;
	if (json_object_size(c->body) != 1 || !json_is_array(list) || json_array_size(list) > 100) {
		srv_resp_error(c->rs, 400, "invalid_request_error", "emails: required, an array of at most 100 recipients "
				"(and no other field)");
		return;
	}
	json_array_foreach(list, i, e) {
		json_object_foreach(e, k, v) {
			if (strcmp(k, "to") && strcmp(k, "events")) {
				srv_resp_error(c->rs, 400, "invalid_request_error", "emails[%zu].%s: unknown field", i, k);
				return;
			}
		}
		if (!json_is_string(json_object_get(e, "to")) || !address_ok(json_string_value(json_object_get(e, "to")))) {
			srv_resp_error(c->rs, 400, "invalid_request_error", "emails[%zu].to: an address like finance@example.com", i);
			return;
		}
		v = json_object_get(e, "events");
		if (v && !json_is_array(v)) {
			srv_resp_error(c->rs, 400, "invalid_request_error", "emails[%zu].events: an array of event names", i);
			return;
		}
		size_t j;
		json_t *ev;
		json_array_foreach(v, j, ev) {
			if (!json_is_string(ev) || !lc_event_name_known(json_string_value(ev))) {
				srv_resp_error(c->rs, 400, "invalid_request_error", "emails[%zu].events[%zu]: unknown event", i, j);
				return;
			}
		}
	}
	int rc = srv_write(c->s, emails_put_txn, c);
	if (rc != SRV_COMMIT && rc != SRV_REFUSED)
		srv_resp_store_error(c->rs, rc);
}

static int emails_get_txn(struct srv *s, srv_txn *txn, void *ctx)
{
	struct srv_call *c = ctx;
	json_t *v = srv_get_json(txn, s->db_meta, "emails");
	srv_resp_json(c->rs, 200, json_pack("{s:o,s:b}", "emails", v ? v : json_array(), "relay_configured",
					    srv_email_enabled()));
	return 0;
}

void srv_h_emails_get(struct srv_call *c)
{
	int rc = srv_read(c->s, emails_get_txn, c);
	if (rc != SRV_COMMIT && rc != SRV_REFUSED)
		srv_resp_store_error(c->rs, rc);
}
