/* alert.h - rendering one llmcap event for each alert channel (alert.c). */
#ifndef LC_ALERT_H
#define LC_ALERT_H

#include <jansson.h>
#include <stddef.h>

#include "util.h"

enum lc_webhook_format { LC_WEBHOOK_GENERIC = 0, LC_WEBHOOK_SLACK = 1, LC_WEBHOOK_TEAMS = 2 };
/* "generic" | "slack" | "teams"; 0 ok, -1 unknown */
int lc_webhook_format_parse(const char *s, enum lc_webhook_format *out) LC_HIDDEN;
/* The body to POST for the event (its generic JSON): the same JSON, a Slack incoming-webhook
 * message ({"text", "blocks"}) or a Teams one ({"type": "message", "attachments": [Adaptive
 * Card]}). malloc'd; NULL when event_json is not JSON. */
char *lc_webhook_payload(enum lc_webhook_format fmt, const char *event_json) LC_HIDDEN;
/* The same for a webhook object of the policy: its "format" (default generic). */
char *lc_webhook_body(json_t *wh, const char *event_json) LC_HIDDEN;
/* One line: the event's title, limit, level, used / threshold, reset time. */
void lc_alert_summary(json_t *event, char *out, size_t n) LC_HIDDEN;
/* An RFC 5322 plain-text message for the event (headers and body, CRLF). 0 ok. */
int lc_alert_email(const char *event_json, const char *from, const char *to, struct lc_buf *out) LC_HIDDEN;

#endif
