/* stats.h - the host's decision counters and store figures, for `llmcap agent --metrics`.
 * Internal to llmcap. */
#ifndef LC_STATS_H
#define LC_STATS_H

#include <lmdb.h>
#include <stdint.h>

#include "engine.h"
#include "store.h"

/* why a request was refused (the label of llmcap_decisions_total{verdict="deny"}) */
enum lc_deny_reason {
	LC_DENY_KEY_LIMIT, LC_DENY_TEAM_LIMIT, LC_DENY_ORG_LIMIT, LC_DENY_CUSTOMER_LIMIT, LC_DENY_CUSTOMER_RATE,
	LC_DENY_KEY_REFUSED,    /* unknown (unknown_keys: block), revoked or expired key: 401 */
	LC_DENY_BAD_REQUEST,    /* 400: e.g. an unknown model with unknown_models: block */
	LC_DENY_OTHER,
	LC_DENY_REASONS
};
const char *lc_deny_reason_name(enum lc_deny_reason r);

struct lc_host_stats {
	uint64_t allowed;
	uint64_t denied[LC_DENY_REASONS];
	uint64_t reservations;   /* requests in flight (tickets not settled yet) */
	uint64_t store_bytes;    /* data.mdb on disk */
	uint64_t store_used_bytes; /* pages in use (last txn's high-water mark) */
};

/* Count one decision inside the admitting write transaction (ALLOW and DENY only). */
int lc_stats_count(struct lc_store *s, MDB_txn *txn, const struct lc_decision *d);
/* Read the counters and figures (one read transaction). */
int lc_host_stats_get(struct lc_host_stats *out);

#endif
