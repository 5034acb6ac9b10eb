/* engine_int.h - compiled policy records stored in LMDB, shared by engine*.c.
 * Layouts are private to one build; "cfg" carries LC_REC_FORMAT and a store
 * compiled by another format is refused with a clear message (re-apply).
 */
#ifndef LC_ENGINE_INT_H
#define LC_ENGINE_INT_H

#include <stdint.h>

#include "engine.h"
#include "policy.h"
#include "price.h"
#include "rules.h"
#include "store.h"

#define LC_REC_FORMAT 0x4c430008u   /* 6: web search fees in the compiled price; 7: alert levels and projection on the org cap and customer budgets; 8: web_search_max_uses, web_search_unbounded, unpriced tool fees */
#define LC_MAX_IDENT 8
#define LC__E_NEWER (-1998)  /* the store was compiled by a newer llmcap than this process */

struct lc_rec_cfg {
	uint32_t format;
	uint8_t unknown_keys_block;
	uint8_t unknown_models_block;
	uint8_t org_period;          /* enum lc_window */
	uint8_t nident;
	uint8_t web_unbounded_block;  /* web_search_unbounded: "block" */
	int64_t web_max_uses;         /* web_search_max_uses: searches reserved for a request with no bound */
	int64_t org_cap;             /* micro-USD, -1 unlimited */
	int64_t org_warn;            /* micro-USD, -1 none */
	int64_t cust_budget;         /* micro-USD per month, -1 none */
	int64_t cust_rpm;            /* -1 none */
	int64_t default_max_output;  /* reservation when neither request nor price gives a cap */
	int64_t expires_at;          /* the policy's, so admit needs no extra lookup */
	char ident[LC_MAX_IDENT][124];
	struct lc_alert_spec org_alerts;   /* org's alert_at, alert_projected */
	struct lc_alert_spec cust_alerts;  /* the customers defaults' */
};

struct lc_rec_provider {
	uint8_t format;
	char name[64];
};

struct lc_rec_limits {
	int32_t n;
	struct lc_limit l[LC_MAX_LIMITS];
};

struct lc_rec_key {
	char name[64];
	char team[64];
	int64_t expires_at;          /* -1 none */
	uint8_t revoked;
	struct lc_rec_limits lim;
};

struct lc_rec_cust {
	int64_t budget;              /* micro-USD, -1 none, -2 inherit default */
	int64_t rpm;
	struct lc_alert_spec alerts; /* n, projected -1: the defaults' */
};

/* ---- the ledger (engine_ledger.c) ----
 * One record per group (key, team, org, customer, model, provider): for each of the six windows
 * the start of its current bucket and what settled requests used in it (requests, input, cached
 * input, output tokens, cost), plus what other hosts used (learned from the server), and what
 * requests in flight have reserved (per limit metric). A settle rewrites one record per group
 * (at most six puts), whatever limits exist; a window that moved on starts again at zero. Its key:
 * LC_LEDGER_PREFIX, the scope, the id. */
#define LC_LEDGER_PREFIX 0x4c  /* 'L'; the decision stats 'S' (stats.c), tickets 0xff, counters of older llmcaps 0..3 */
#define LC_WIN_COUNT 6
struct lc_ledger_win {
	int64_t bucket;
	int64_t v[LC_LM_COUNT];
	int64_t remote[LC_LM_COUNT];
};
struct lc_rec_ledger {
	struct lc_ledger_win w[LC_WIN_COUNT];
	int64_t reserved[3];                     /* per enum lc_metric */
};
#define LC_LKEY_MAX (2 + 127)
struct lc_lkey {
	uint8_t len;
	unsigned char b[LC_LKEY_MAX];
};
void lc__lkey(struct lc_lkey *k, int scope, const char *id);
void lc__lkey_id(const unsigned char *b, size_t len, char out[128]);   /* the id of a ledger key */
/* the current window starts at now */
void lc__window_starts(int64_t now, int64_t starts[LC_WIN_COUNT]);
/* read a group's record (zero when none), its windows moved to starts */
int lc__ledger_get(struct lc_store *s, MDB_txn *txn, const struct lc_lkey *k, const int64_t starts[LC_WIN_COUNT],
		   struct lc_rec_ledger *r);
int lc__ledger_put(struct lc_store *s, MDB_txn *txn, const struct lc_lkey *k, const struct lc_rec_ledger *r);
void lc__ledger_roll(struct lc_rec_ledger *r, const int64_t starts[LC_WIN_COUNT]);
/* counters of an older llmcap (one per limit and bucket) into the ledger, inside the upgrade */
int lc__ledger_migrate(struct lc_store *s, MDB_txn *txn);
/* settled (this host + others) usage of a limit metric in a window */
int64_t lc__ledger_used(const struct lc_rec_ledger *r, enum lc_metric m, enum lc_window w);

/* ---- one write transaction with grow-and-retry: every host write path runs through it ----
 * fn returns 0 to commit (LC__COMMIT_KEEP: commit and return it), anything else aborts and is
 * returned; MDB_MAP_FULL from fn or the commit grows the map and runs fn again. */
typedef int (*lc_txn_fn)(struct lc_store *s, MDB_txn *txn, void *ctx);
int lc__write(struct lc_store *s, lc_txn_fn fn, void *ctx);

int lc__queue_event(struct lc_store *s, MDB_txn *txn, const char *event, json_t *data, const char *dedup);
int lc__ensure_identity(struct lc_store *s, MDB_txn *txn);
int lc__get_cfg(struct lc_store *s, MDB_txn *txn, struct lc_rec_cfg *cfg);
/* the rules watching one group (key by name, team, org, customer); 0 ok */
int lc__group_rules(struct lc_store *s, MDB_txn *txn, const struct lc_rec_cfg *cfg, int scope, const char *id,
		    struct lc_rule *out, int max, int *n);
/* queue an event of rule r (org and team events stay with the server when this host syncs with one) */
int lc__rule_event(struct lc_store *s, MDB_txn *txn, enum lc_event e, const struct lc_rule *r, const char *level,
		   int64_t used, int64_t now);
/* the same for a level that settled usage reached (lc_rule_reached) */
int lc__crossing_event(struct lc_store *s, MDB_txn *txn, const struct lc_rule *r, const struct lc_crossing *c,
		       int64_t used, int64_t now);

/* ---- runs (engine_run.c) ---- */
/* LLMCAP_RUN_ID of this process when well-formed, else NULL */
const char *lc__run_id(void);
/* the run's record exists and its owner (`llmcap run`) lives */
bool lc__run_live(struct lc_store *s, MDB_txn *txn, const char *id);
/* the run's rules: its budget (cost) and request cap, over the run's lifetime */
int lc__run_rules(struct lc_store *s, MDB_txn *txn, const char *id, struct lc_rule *out, int max, int *n);
/* each run record (only those whose owner lives, or all) */
int lc__run_each(struct lc_store *s, MDB_txn *txn, bool live_only, int (*fn)(void *ctx, const char *id, bool live),
		 void *ctx);
/* remove runs whose owner is gone and run groups without a run; *n counts them */
int lc__run_prune(struct lc_store *s, MDB_txn *txn, unsigned *n);
/* process identity (engine.c): start time from /proc (0: none), alive = same pid and start time */
uint64_t lc__proc_start(int pid);
bool lc__proc_alive(int32_t pid, uint64_t start);

/* ---- leases (engine_lease.c): this host's slices of shared limits ----
 * With a policy that says "leases": true, a rule lc_rule_leased() admits only while this host's own
 * committed usage (settled + reserved, this bucket) plus the request's worst case stays within the
 * slice llmcap-server granted it, checked in admit's write transaction: no network call. One record
 * per rule: LC_LEASE_PREFIX, the rule's name. The agent (lc_lease_plan / lc_lease_apply) keeps them. */
#define LC_LEASE_PREFIX "lease:"  /* in the counters tree, apart from 'L' ledger, "S." stats, "run:" runs */
struct lc_rec_lease {
	int64_t bucket;       /* the window bucket the slice is for */
	int64_t allow;        /* own committed usage in the bucket may reach this */
	int64_t expires_ms;   /* local clock: when the call that got it was sent + the TTL */
	int64_t slice;        /* the last grant: allow - own committed then */
	int64_t base;         /* own committed when the last grant was asked for */
	int64_t granted_ms;   /* when it was asked for (the rate is measured from here) */
	int64_t need;         /* the worst case of the last request refused for want of a slice; 0: none */
	int64_t seen;         /* own committed at the agent's last look */
	int64_t ttl_ms;       /* the server's lease TTL */
	int64_t gen;          /* the last call's generation (the server ignores older ones) */
	int64_t exhausted;    /* 1: the server had nothing left at the last grant */
};
bool lc__lease_mode(struct lc_store *s, MDB_txn *txn);
int lc__lease_mode_set(struct lc_store *s, MDB_txn *txn, bool on);
/* 0: within the slice; 1: refused (d filled: 429 naming the rule); 2: refused, but the agent's lease
 * thread reaches a server and is asking for this slice now (a caller may lc__lease_wait, then decide
 * again); else a store error */
int lc__lease_check(struct lc_store *s, MDB_txn *txn, const struct lc_rule *r, const struct lc_rec_ledger *rec,
		    int64_t est, int64_t now_ms, struct lc_decision *d);
/* Wait (no network: the agent asks) until the agent applied an answer for the named slice, or it
 * stops reaching a server, or *polls (each a few ms) run out. 0: decide again; ETIMEDOUT; or a
 * store error. */
int lc__lease_wait(struct lc_store *s, const char *name, int *polls);
/* the polls a request may wait at most for a slice the agent is asking for (2 seconds' worth) */
int lc__lease_wait_polls(void);
/* the slice of rule r as status shows it, or NULL when none */
json_t *lc__lease_status(struct lc_store *s, MDB_txn *txn, const struct lc_rule *r, const struct lc_rec_ledger *rec,
			 int64_t now_ms);

/* a customer's admissions in the last 60 seconds */
int lc__rpm_used(struct lc_store *s, MDB_txn *txn, const char *cust, int64_t now_ms, int64_t *used);

/* tickets live in the counters tree under 0xff + id (ledger keys start with 'L'), so admit and
 * settle dirty one B-tree */
#define LC_TICKET_PREFIX 0xff
#define LC_TICKET_MAGIC 0x4c435432u   /* 2: struct lc_price grew (format 6) */
struct lc_rec_ticket_hdr {
	uint32_t magic;
	int32_t pid;
	uint64_t pstart;
	int64_t created_ms;
	int64_t est[3];              /* per limit metric: cost (micro), requests, tokens */
	int64_t est_in, est_out;     /* the estimate's input and output tokens */
	struct lc_price price;       /* the model's compiled price and the request's tier */
	uint32_t reserved_mask;      /* groups (1 << scope) the estimate is reserved on */
	uint32_t ng;
	/* followed by ng x (u8 len, bytes) ledger keys */
};

#endif
