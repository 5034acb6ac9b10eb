/* metrics.h - llmcap-server's Prometheus metrics (metrics.c). */
#ifndef LC_SRV_METRICS_H
#define LC_SRV_METRICS_H

#include "util.h"

struct srv;
enum srv_webhook_result { SRV_WEBHOOK_DELIVERED, SRV_WEBHOOK_FAILED, SRV_WEBHOOK_DROPPED, SRV_WEBHOOK_RESULTS };
/* count one delivery attempt (the notifier calls it) */
void srv_metric_webhook(enum srv_webhook_result r);
/* the whole exposition; 0 ok, -1 the store could not be read */
int srv_metrics_render(struct srv *s, struct lc_buf *b);

struct srv_call;
void srv_h_metrics(struct srv_call *c);   /* GET /metrics */

#endif
