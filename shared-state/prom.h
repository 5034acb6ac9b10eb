/* prom.h - writing the Prometheus text exposition format (text/plain; version=0.0.4). */
#ifndef LC_PROM_H
#define LC_PROM_H

#include <jansson.h>
#include <stdbool.h>

#include "util.h"

#define LC_PROM_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

/* "# HELP name help" and "# TYPE name type" */
void lc_prom_family(struct lc_buf *b, const char *name, const char *type, const char *help) LC_HIDDEN;
/* name{k="v",...} value; labels: NULL-terminated name, value pairs (or NULL); values escaped */
void lc_prom_sample(struct lc_buf *b, const char *name, const char *const *labels, double v) LC_HIDDEN;
/* The limits of a `llmcap status --json` / GET /v1/usage answer as gauges:
 * llmcap_limit_{used,reserved,threshold}_{usd,requests,tokens}{limit,scope,id,window},
 * llmcap_limit_alert_threshold_{usd,requests,tokens}{limit,scope,id,window,level} (one per alert level, "1" the lowest),
 * llmcap_limit_reset_timestamp_seconds{limit}, llmcap_limit_enabled{limit,action}. */
void lc_prom_limits(struct lc_buf *b, json_t *limits, bool with_reserved) LC_HIDDEN;

#endif
