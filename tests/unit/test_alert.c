/* test_alert.c - one event rendered for each alert channel (shared-state/alert.c): the generic
 * JSON unchanged, Slack's and Teams' incoming-webhook shapes, a plain-text e-mail; every one
 * says the limit, the level, used, threshold and reset time. And the policy's webhook "format". */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "alert.h"
#include "policy.h"
#include "util.h"

static const char EVENT[] =
	"{\"id\":\"evt_1\",\"event\":\"limit_alert\",\"created_at\":\"2026-11-21T23:00:00Z\",\"source\":\"llmcap-server\","
	"\"data\":{\"scope\":\"key\",\"id\":\"ci\",\"limit\":\"key:ci:cost:daily\",\"metric\":\"cost\",\"window\":\"daily\","
	"\"used\":16.5,\"threshold\":20.0,\"alert_at\":16.0,\"resets_at\":\"2026-11-22T00:00:00Z\"}}";

static void must_say_everything(const char *s)
{
	assert_non_null(strstr(s, "key:ci:cost:daily"));   /* limit */
	assert_non_null(strstr(s, "alert at $16.00"));     /* level */
	assert_non_null(strstr(s, "$16.50 of $20.00"));    /* used, threshold */
	assert_non_null(strstr(s, "82%"));
	assert_non_null(strstr(s, "2026-11-22T00:00:00Z")); /* reset time */
}

/* the same of a JSON value's text */
static void must_say_everything_json(const json_t *v)
{
	char *all = json_dumps(v, 0);

	assert_non_null(all);
	must_say_everything(all);
	free(all);
}

static void test_generic_unchanged(void **st)
{
	(void)st;
	char *b = lc_webhook_payload(LC_WEBHOOK_GENERIC, EVENT);
	assert_string_equal(b, EVENT);
	free(b);
	json_t *wh = json_pack("{s:s,s:s}", "url", "http://x", "secret", "s");   /* no format: generic */
	b = lc_webhook_body(wh, EVENT);
	assert_string_equal(b, EVENT);
	free(b);
	json_decref(wh);
}

static void test_slack(void **st)
{
	(void)st;
	json_t *wh = json_pack("{s:s,s:s,s:s}", "url", "http://x", "secret", "s", "format", "slack");
	char *b = lc_webhook_body(wh, EVENT);
	json_t *j = json_loads(b, 0, NULL);
	assert_non_null(j);
	/* an incoming-webhook message: "text" (the notification fallback) and Block Kit "blocks" */
	const char *text = json_string_value(json_object_get(j, "text"));
	assert_non_null(text);
	must_say_everything(text);
	json_t *blocks = json_object_get(j, "blocks");
	assert_int_equal(json_array_size(blocks), 2);
	assert_string_equal(json_string_value(json_object_get(json_array_get(blocks, 0), "type")), "header");
	json_t *fields = json_object_get(json_array_get(blocks, 1), "fields");
	assert_true(json_array_size(fields) >= 4);
	assert_string_equal(json_string_value(json_object_get(json_array_get(fields, 0), "type")), "mrkdwn");
	must_say_everything_json(fields);
	json_decref(j);
	json_decref(wh);
	free(b);
}

static void test_teams(void **st)
{
	(void)st;
	char *b = lc_webhook_payload(LC_WEBHOOK_TEAMS, EVENT);
	json_t *j = json_loads(b, 0, NULL);
	assert_string_equal(json_string_value(json_object_get(j, "type")), "message");
	json_t *att = json_array_get(json_object_get(j, "attachments"), 0);
	assert_string_equal(json_string_value(json_object_get(att, "contentType")), "application/vnd.microsoft.card.adaptive");
	assert_true(json_is_null(json_object_get(att, "contentUrl")));
	json_t *card = json_object_get(att, "content");
	assert_string_equal(json_string_value(json_object_get(card, "type")), "AdaptiveCard");
	assert_string_equal(json_string_value(json_object_get(card, "version")), "1.2");
	json_t *facts = json_object_get(json_array_get(json_object_get(card, "body"), 1), "facts");
	assert_string_equal(json_string_value(json_object_get(json_array_get(facts, 0), "title")), "Limit");
	must_say_everything_json(facts);
	json_decref(j);
	free(b);
}

static void test_email(void **st)
{
	(void)st;
	struct lc_buf m;
	lc_buf_init(&m, 1 << 20);
	/* an id with a line break cannot add a header */
	json_t *ev = json_loads(EVENT, 0, NULL);
	json_object_set_new(json_object_get(ev, "data"), "limit", json_string("key:ci\r\nBcc: x@evil:cost:daily"));
	char *txt = json_dumps(ev, 0);
	assert_int_equal(lc_alert_email(txt, "llmcap@example.com", "finance@example.com", &m), 0);
	assert_non_null(strstr(m.data, "From: llmcap@example.com\r\n"));
	assert_non_null(strstr(m.data, "To: finance@example.com\r\n"));
	assert_non_null(strstr(m.data, "Subject: [llmcap] Limit alert: key:ci  Bcc: x@evil:cost:daily\r\n"));
	assert_null(strstr(m.data, "\r\nBcc:"));
	lc_buf_free(&m);
	lc_buf_init(&m, 1 << 20);
	assert_int_equal(lc_alert_email(EVENT, "a@b", "c@d", &m), 0);
	must_say_everything(strstr(m.data, "\r\n\r\n"));   /* the body */
	lc_buf_free(&m);
	free(txt);
	json_decref(ev);
}

static void test_policy_format(void **st)
{
	(void)st;
	char err[512];
	struct lc_policy hdr;
	const char *base = "{\"schema\":1,\"version\":1,\"issued_at\":\"2026-01-01T00:00:00Z\",\"expires_at\":\"2099-01-01T00:00:00Z\",\"providers\":[{\"name\":\"openai\",\"format\":\"openai\",\"hosts\":[\"api.openai.com\"]}],"
			   "\"notifications\":{\"webhooks\":[{\"url\":\"https://hooks.slack.com/x\",\"secret\":\"s\",\"format\":\"%s\"}]}}";
	char doc[1024];
	const char *good[] = {"generic", "slack", "teams"};
	for (int i = 0; i < 3; i++) {
		snprintf(doc, sizeof doc, base, good[i]);
		json_t *j = json_loads(doc, 0, NULL);
		if (lc_policy_validate(j, &hdr, err, sizeof err) != 0)
			fail_msg("%s: %s", good[i], err);
		json_decref(j);
	}
	snprintf(doc, sizeof doc, base, "discord");
	json_t *j = json_loads(doc, 0, NULL);
	assert_int_not_equal(lc_policy_validate(j, &hdr, err, sizeof err), 0);
	assert_non_null(strstr(err, "notifications.webhooks[0].format: must be one of generic, slack, teams"));
	json_decref(j);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_generic_unchanged), cmocka_unit_test(test_slack), cmocka_unit_test(test_teams),
		cmocka_unit_test(test_email),             cmocka_unit_test(test_policy_format),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
