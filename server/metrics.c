/* metrics.c - GET /metrics: llmcap-server's state in the Prometheus text exposition format.
 *
 * The limits come from the same function that answers GET /v1/usage (one place computes usage
 * against a threshold); this module only renders them. Names follow Prometheus conventions:
 * the llmcap_ prefix, a unit suffix (usd, requests, tokens, seconds), _total on counters.
 */
#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include "metrics.h"
#include "prom.h"
#include "srv.h"
#include "util.h"

static atomic_uint_fast64_t webhook_count[SRV_WEBHOOK_RESULTS];

void srv_metric_webhook(enum srv_webhook_result r)
{
	if ((unsigned)r < SRV_WEBHOOK_RESULTS)
		atomic_fetch_add(&webhook_count[r], 1);
}

/* ---- the server's families ---- */

/* one gauge per host: its last report time (age: seconds since it, else the time itself) */
static void host_family(struct lc_buf *b, json_t *hosts, const char *name, const char *help, bool age)
{
	size_t i;
	json_t *h;
	int64_t now = lc_now();
	lc_prom_family(b, name, "gauge", help);
	json_array_foreach(hosts, i, h) {
		int64_t t = 0;
		lc_time_parse(json_string_value(json_object_get(h, "last_report_at")) ?: "", &t);
		const char *labels[] = {"host_id", json_string_value(json_object_get(h, "host_id")), "epoch",
					json_string_value(json_object_get(h, "epoch")), NULL};
		lc_prom_sample(b, name, labels, age ? (double)(now > t ? now - t : 0) : (double)t);
	}
}

static void hosts_families(struct lc_buf *b, json_t *hosts)
{
	lc_prom_family(b, "llmcap_hosts", "gauge", "Hosts (host id and store epoch) that have reported usage.");
	lc_prom_sample(b, "llmcap_hosts", NULL, (double)json_array_size(hosts));
	host_family(b, hosts, "llmcap_host_last_report_timestamp_seconds", "When the host last reported (Unix time).",
		    false);
	host_family(b, hosts, "llmcap_host_last_report_age_seconds", "Seconds since the host's last report.", true);
}

static int outbox_txn(struct srv *s, srv_txn *txn, void *ctx)
{
	MDB_stat st;
	int rc = srv_kv_stat(txn, s->db_outbox, &st);
	if (rc == 0)
		*(size_t *)ctx = st.ms_entries;
	return rc;
}

static void webhook_families(struct srv *s, struct lc_buf *b)
{
	static const char *const results[SRV_WEBHOOK_RESULTS] = {"delivered", "failed", "dropped"};
	size_t depth = 0;
	srv_read(s, outbox_txn, &depth);
	lc_prom_family(b, "llmcap_webhook_outbox_entries", "gauge", "Webhook deliveries waiting in the outbox.");
	lc_prom_sample(b, "llmcap_webhook_outbox_entries", NULL, (double)depth);
	lc_prom_family(b, "llmcap_webhook_deliveries_total", "counter",
		       "Webhook delivery attempts by result (failed: retried later; dropped: given up).");
	for (int r = 0; r < SRV_WEBHOOK_RESULTS; r++) {
		const char *labels[] = {"result", results[r], NULL};
		lc_prom_sample(b, "llmcap_webhook_deliveries_total", labels, (double)atomic_load(&webhook_count[r]));
	}
}

int srv_metrics_render(struct srv *s, struct lc_buf *b)
{
	struct srv_resp u = {0};
	srv_usage_get(s, NULL, NULL, &u);
	json_t *usage = u.status == 200 ? json_loadb(u.body, u.body_len, 0, NULL) : NULL;
	srv_resp_free(&u);
	if (!usage)
		return -1;
	json_t *pol = json_object_get(usage, "policy");
	json_t *org = json_object_get(usage, "org");
	int64_t exp = 0;
	lc_prom_family(b, "llmcap_policy_version", "gauge", "Version of the policy the server publishes.");
	lc_prom_sample(b, "llmcap_policy_version", NULL, (double)json_integer_value(json_object_get(pol, "version")));
	lc_time_parse(json_string_value(json_object_get(pol, "expires_at")) ?: "", &exp);
	lc_prom_family(b, "llmcap_policy_expiry_timestamp_seconds", "gauge", "When the published policy expires (Unix time).");
	lc_prom_sample(b, "llmcap_policy_expiry_timestamp_seconds", NULL, (double)exp);
	lc_prom_limits(b, json_object_get(usage, "limits"), false);
	if (json_is_object(org)) {
		const char *labels[] = {"period", json_string_value(json_object_get(org, "period")), NULL};
		lc_prom_family(b, "llmcap_org_spend_usd", "gauge", "The organisation's spend in its current period, in US dollars.");
		lc_prom_sample(b, "llmcap_org_spend_usd", labels, json_number_value(json_object_get(org, "used_usd")));
	}
	hosts_families(b, json_object_get(usage, "hosts"));
	webhook_families(s, b);
	json_decref(usage);
	return 0;
}

/* GET /metrics */
void srv_h_metrics(struct srv_call *c)
{
	struct lc_buf b;
	lc_buf_init(&b, 256 * 1024 * 1024);
	if (srv_metrics_render(c->s, &b) != 0 || !b.data) {
		lc_buf_free(&b);
		srv_resp_error(c->rs, 503, "api_error", "the store cannot be read");
		return;
	}
	srv_resp_free(c->rs);
	c->rs->status = 200;
	c->rs->body = b.data;   /* taken over */
	c->rs->body_len = b.len;
	c->rs->content_type = LC_PROM_CONTENT_TYPE;
}
