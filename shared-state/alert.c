/* alert.c - one event, several channels: the generic JSON body, a Slack incoming-webhook
 * message, a Microsoft Teams incoming-webhook message (an Adaptive Card), and a plain-text
 * e-mail. Every rendering says the limit, the level, used, threshold and reset time. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "alert.h"
#include "util.h"

int lc_webhook_format_parse(const char *s, enum lc_webhook_format *out)
{
	static const char *const names[] = {"generic", "slack", "teams"};
	for (int i = 0; i < 3; i++)
		if (s && !strcmp(s, names[i])) {
			*out = (enum lc_webhook_format)i;
			return 0;
		}
	return -1;
}

static const char *title_of(const char *event)
{
	static const struct { const char *ev, *title; } t[] = {
		{"limit_reached", "Limit reached"},
		{"limit_alert", "Limit alert"},
		{"limit_projected", "Limit projected to run out"},
		{"spend_cap_reached", "Spend cap reached"},
		{"spend_cap_warning_threshold_reached", "Spend cap warning"},
		{"customer_budget_limit_reached", "Customer budget reached"},
		{"key_expired", "API key expired"},
		{"policy_rejected", "Policy rejected"},
		{"policy_expired", "Policy expired"},
	};
	for (size_t i = 0; i < sizeof t / sizeof t[0]; i++)
		if (event && !strcmp(event, t[i].ev))
			return t[i].title;
	return event ? event : "llmcap event";
}

/* "$16.00" or "8000" */
static void fmt_amount(json_t *v, const char *metric, char *out, size_t n)
{
	if (!json_is_number(v)) {
		snprintf(out, n, "-");
	} else if (!metric || !strcmp(metric, "cost")) {
		int64_t micro = 0;
		char b[40];
		lc_usd_to_micro(fabs(json_number_value(v)), &micro);
		lc_micro_format(micro, b);
		snprintf(out, n, "%s", b);
	} else {
		snprintf(out, n, "%.0f", json_number_value(v));
	}
}

static const char *str(json_t *o, const char *k, const char *dflt)
{
	const char *s = json_string_value(json_object_get(o, k));
	return s ? s : dflt;
}

/* the facts every channel shows, as (title, value) pairs; returns how many */
static int facts(json_t *ev, char f[][2][160], int max)
{
	json_t *d = json_object_get(ev, "data");
	const char *metric = str(d, "metric", "cost");
	int n = 0;
	char a[64], b[64];
#define FACT(t, ...)                                                   \
	do {                                                           \
		if (n < max) {                                         \
			snprintf(f[n][0], sizeof f[n][0], "%s", t);    \
			snprintf(f[n][1], sizeof f[n][1], __VA_ARGS__); \
			n++;                                           \
		}                                                      \
	} while (0)
	if (json_object_get(d, "limit"))
		FACT("Limit", "%s", str(d, "limit", ""));
	if (json_is_number(json_object_get(d, "alert_at")) && strcmp(str(d, "level", "alert_at"), "threshold")) {
		fmt_amount(json_object_get(d, "alert_at"), metric, a, sizeof a);
		FACT("Level", "alert at %s", a);
	} else if (json_object_get(d, "level")) {
		FACT("Level", "%s", str(d, "level", ""));
	}
	if (json_object_get(d, "used") || json_object_get(d, "threshold")) {
		fmt_amount(json_object_get(d, "used"), metric, a, sizeof a);
		fmt_amount(json_object_get(d, "threshold"), metric, b, sizeof b);
		double t = json_number_value(json_object_get(d, "threshold"));
		if (t > 0)
			FACT("Used", "%s of %s (%.0f%%)", a, b, 100.0 * json_number_value(json_object_get(d, "used")) / t);
		else
			FACT("Used", "%s of %s", a, b);
	}
	if (json_is_number(json_object_get(d, "projected"))) {
		fmt_amount(json_object_get(d, "projected"), metric, a, sizeof a);
		FACT("Projected", "%s by the reset, at this window's rate", a);
	}
	if (json_object_get(d, "resets_at"))
		FACT("Resets", "%s", json_is_null(json_object_get(d, "resets_at")) ? "never (lifetime)" : str(d, "resets_at", ""));
	if (json_object_get(ev, "host_id") && !json_is_null(json_object_get(ev, "host_id")))
		FACT("Host", "%s", str(ev, "host_id", ""));
	if (json_object_get(d, "reason"))
		FACT("Reason", "%s", str(d, "reason", ""));
#undef FACT
	for (int i = 0; i < n; i++)   /* ids come from requests: no line breaks in any channel */
		for (char *c = f[i][1]; *c; c++)
			if (*c == '\r' || *c == '\n')
				*c = ' ';
	return n;
}

void lc_alert_summary(json_t *ev, char *out, size_t n)
{
	json_t *d = json_object_get(ev, "data");
	const char *limit = str(d, "limit", NULL);
	char f[8][2][160];
	int nf = facts(ev, f, 8);
	int k = snprintf(out, n, "llmcap: %s%s%s", title_of(str(ev, "event", NULL)), limit ? ": " : "", limit ? limit : "");
	for (int i = 0; i < nf && k > 0 && (size_t)k < n; i++) {
		if (!strcmp(f[i][0], "Limit"))
			continue;
		k += snprintf(out + k, n - (size_t)k, "; %s %s", f[i][0], f[i][1]);
	}
}

static json_t *slack(json_t *ev)
{
	char text[1024], f[8][2][160];
	int nf = facts(ev, f, 8);
	lc_alert_summary(ev, text, sizeof text);
	json_t *fields = json_array();
	for (int i = 0; i < nf; i++) {
		char t[400];
		snprintf(t, sizeof t, "*%s*\n%s", f[i][0], f[i][1]);
		json_array_append_new(fields, json_pack("{s:s,s:s}", "type", "mrkdwn", "text", t));
	}
	char head[200];
	snprintf(head, sizeof head, "%s", title_of(str(ev, "event", NULL)));
	return json_pack("{s:s,s:[{s:s,s:{s:s,s:s}},{s:s,s:o}]}", "text", text, "blocks", "type", "header", "text", "type",
			 "plain_text", "text", head, "type", "section", "fields", fields);
}

static json_t *teams(json_t *ev)
{
	char text[1024], f[8][2][160];
	int nf = facts(ev, f, 8);
	lc_alert_summary(ev, text, sizeof text);
	json_t *fs = json_array();
	for (int i = 0; i < nf; i++)
		json_array_append_new(fs, json_pack("{s:s,s:s}", "title", f[i][0], "value", f[i][1]));
	json_t *card = json_pack("{s:s,s:s,s:s,s:[{s:s,s:s,s:s,s:s,s:b},{s:s,s:o}]}", "$schema",
				 "http://adaptivecards.io/schemas/adaptive-card.json", "type", "AdaptiveCard", "version",
				 "1.2", "body", "type", "TextBlock", "size", "Medium", "weight", "Bolder", "text",
				 title_of(str(ev, "event", NULL)), "wrap", 1, "type", "FactSet", "facts", fs);
	return json_pack("{s:s,s:s,s:[{s:s,s:n,s:o}]}", "type", "message", "summary", text, "attachments", "contentType",
			 "application/vnd.microsoft.card.adaptive", "contentUrl", "content", card);
}

char *lc_webhook_payload(enum lc_webhook_format fmt, const char *event_json)
{
	if (fmt == LC_WEBHOOK_GENERIC)
		return strdup(event_json);
	json_t *ev = json_loads(event_json, 0, NULL);
	if (!ev)
		return NULL;
	json_t *out = fmt == LC_WEBHOOK_SLACK ? slack(ev) : teams(ev);
	char *txt = out ? json_dumps(out, JSON_COMPACT) : NULL;
	json_decref(out);
	json_decref(ev);
	return txt;
}

int lc_alert_email(const char *event_json, const char *from, const char *to, struct lc_buf *out)
{
	json_t *ev = json_loads(event_json, 0, NULL);
	char subject[512], f[8][2][160], date[64];
	if (!ev)
		return -1;
	int nf = facts(ev, f, 8);
	json_t *d = json_object_get(ev, "data");
	const char *limit = str(d, "limit", NULL);
	snprintf(subject, sizeof subject, "[llmcap] %s%s%s", title_of(str(ev, "event", NULL)), limit ? ": " : "",
		 limit ? limit : "");
	for (char *p = subject; *p; p++)   /* no header injection through an id */
		if (*p == '\r' || *p == '\n')
			*p = ' ';
	time_t now = (time_t)lc_now();
	struct tm tm;
	gmtime_r(&now, &tm);
	strftime(date, sizeof date, "%a, %d %b %Y %H:%M:%S +0000", &tm);
	lc_buf_printf(out,
		      "Date: %s\r\nFrom: %s\r\nTo: %s\r\nSubject: %s\r\nMessage-ID: <%s@llmcap>\r\nMIME-Version: 1.0\r\n"
		      "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n",
		      date, from, to, subject, str(ev, "id", "event"));
	lc_buf_printf(out, "%s\r\n\r\n", title_of(str(ev, "event", NULL)));
	for (int i = 0; i < nf; i++)
		lc_buf_printf(out, "%-10s %s\r\n", f[i][0], f[i][1]);
	lc_buf_printf(out, "\r\nEvent %s at %s.\r\n", str(ev, "id", "-"), str(ev, "created_at", "-"));
	json_decref(ev);
	return 0;
}

char *lc_webhook_body(json_t *wh, const char *event_json)
{
	enum lc_webhook_format f = LC_WEBHOOK_GENERIC;
	json_t *v = json_object_get(wh, "format");
	if (v && lc_webhook_format_parse(json_string_value(v), &f) != 0)
		f = LC_WEBHOOK_GENERIC;   /* the policy parser refuses unknown formats */
	return lc_webhook_payload(f, event_json);
}
