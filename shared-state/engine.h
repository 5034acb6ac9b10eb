/* engine.h - the host-wide decision engine over one LMDB store.
 *
 * One store per process, opened lazily on first use, reopened after fork()
 * (never used across it). Every function is thread-safe. No function does
 * network I/O.
 *
 * State directory: $LLMCAP_STATE_DIR, else /var/lib/llmcap when writable,
 * else $XDG_STATE_HOME/llmcap (~/.local/state/llmcap).
 */
#ifndef LC_ENGINE_H
#define LC_ENGINE_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "policy.h"
#include "sign.h"
#include "wire.h"

/* ---- errors (negative; >0 are errno values) ---- */
enum {
	LC_OK = 0,
	LC_E_NOSTATE = -1001,     /* no state directory / store: no policy was ever installed */
	LC_E_STORE = -1002,       /* store exists but is unusable (corrupt, read-only, full) */
	LC_E_NOPOLICY = -1003,    /* store fine, no policy installed */
	LC_E_INVAL = -1004,
	LC_E_NOTFOUND = -1005,
	LC_E_REJECTED = -1006,    /* a policy was refused (err says why) */
};

/* Resolve the state directory (does not create it). 0 ok. */
int lc_state_dir(char *out, size_t outlen);
/* Override for this process (SDK llmcap_open with an explicit dir; tests). NULL resets. */
void lc_state_dir_set(const char *dir);

/* ---- providers ----
 * Is host[:port] a provider in the installed policy? Matches "host:port" first,
 * then "host". port 0 = unknown. Returns 1 (fmt/name filled), 0 not a provider
 * (or no policy), <0 store error (the caller treats it per fail mode, see lc_fail_closed()).
 * Cheap: one read transaction, cached per policy version. */
int lc_provider_lookup(const char *host, int port, enum lc_format *fmt, char *name, size_t namelen);
/* true when a policy is known to exist (data file present) but the store cannot be used:
 * callers then block provider traffic. false: no policy ever installed -> allow. */
bool lc_fail_closed(void);

/* ---- decisions ---- */
enum lc_verdict { LC_PASS = 0, LC_ALLOW = 1, LC_DENY = 2 };

struct lc_admit_req {
	const char *host;          /* provider host, no port */
	int port;                  /* 0 = unknown */
	const char *api_key;       /* raw credential (never stored; hashed); NULL if none */
	size_t api_key_len;
	const struct lc_reqinfo *info;
};

struct lc_decision {
	enum lc_verdict verdict;
	enum lc_format format;
	int status;                /* on DENY: 429 limit, 401 key, 503 store unusable */
	uint64_t ticket;           /* on ALLOW: pass to lc_settle() exactly once */
	char message[512];         /* "llmcap: monthly cost limit of $50.00 for key 'ci' reached (...)" */
	char limit[192];           /* x-llmcap-limit, e.g. "key:ci:cost:monthly" */
	int64_t retry_after;       /* seconds to the reset */
	bool should_retry;         /* false when waiting a minute will not help */
};

/* Always fills *d (PASS for non-providers, DENY 503 when fail-closed). Returns LC_OK or a store error
 * (d is then already set according to the fail mode). */
int lc_admit(const struct lc_admit_req *r, struct lc_decision *d);

/* Convenience for HTTP/1.1 requests: credential from Authorization: Bearer, x-api-key or api-key;
 * request fields via lc_reqinfo_parse with the policy's customer identifiers. A body that is not
 * valid JSON on a priced API is denied with status 400 and a message. Out of memory reading the
 * body returns ENOMEM with a 503 DENY (should_retry): never a 400 for a request nobody read. */
int lc_admit_http(const char *host, int port, const struct lc_reqparse *req, struct lc_decision *d);

/* Settle a ticket: usage present -> charge it (cached input at its own price);
 * else http_status >= 400 -> charge the request only (0 tokens, $0: providers do not bill errors);
 * else (no usage came back) -> charge the reserved estimate. Unknown ticket -> LC_E_NOTFOUND. */
int lc_settle(uint64_t ticket, const struct lc_usage *u, int http_status);

/* Reclaim tickets whose process (pid + start time) is gone: charged at their estimate. */
int lc_reclaim(unsigned *reclaimed);
/* Drop counters of windows that ended over two days ago and stale once-per-window markers
 * (the agent runs it every round). */
int lc_prune(unsigned *removed);

/* ---- policy ---- */
/* Verify (lc_dsse_verify), parse, version ratchet (strictly greater), expiry (future), compile and
 * store in one transaction. On refusal returns LC_E_REJECTED, queues a policy_rejected event, and
 * leaves the installed policy untouched. */
int lc_apply_envelope(const struct lc_trust *t, const void *env, size_t len, int64_t *version_out,
		      char *err, size_t errlen);
/* 0 ok (policy installed), LC_E_NOPOLICY, or a store error. */
int lc_policy_info(int64_t *version, int64_t *expires_at);
/* Forget the installed policy and its version ratchet (the store's and the anchor's): provider calls
 * pass until the next apply, which may then be any version (a host joining a server whose policy
 * versions start lower). Counters, reservations and host identity stay. *was: the version it had. */
int lc_policy_reset(int64_t *was);
/* The installed policy JSON (exact payload bytes), malloc'd. */
int lc_policy_payload(char **out, size_t *len);

/* ---- reporting ---- */
/* {"policy": {"version": N, "expires_at": T}, "limits": [{scope,id,metric,window,used,reserved,threshold,resets_at}]}
 * DESIGN.md's shape; amounts in the metric unit (USD for cost, as JSON reals). */
int lc_status_json(json_t **out);

/* Usage per group, no limit needed: {"by": "key", "window": "day", "window_start": T, "rows": [{"id",
 * "requests", "input_tokens", "cached_input_tokens", "output_tokens", "cost" (USD)}]}, rows by cost
 * descending. scope: enum lc_scope (rules.h); this host's usage plus other hosts' as last learned. */
int lc_usage_report(int scope, enum lc_window w, json_t **out);
/* sort usage rows by cost descending, then id (the server's report uses it too) */
void lc_usage_rows_sort(json_t *rows);

/* Host identity for usage reports: host_id (stable, random hex), epoch (random per store). */
int lc_host_identity(char host_id[33], char epoch[33]);
/* Cumulative counters of this host, from the ledger: {"host_id","epoch","seq","counters":[{"scope" (key,
 * team, org, customer, model, provider), "id", "metric" (requests, input_tokens, cached_input_tokens,
 * output_tokens, cost), "window", "bucket": T, "used": N (integer, micro-USD for cost)}]}: every
 * group's current buckets. seq increments per call (persisted). */
int lc_usage_snapshot(json_t **out);
/* Global usage learned from the server, same "counters" shape with "used" = org-wide total. The
 * host then enforces limits against (global - own at report time) + own, and from then on leaves
 * org and team events to the server. */
int lc_remote_usage_set(json_t *counters, json_t *own_snapshot_counters);

/* ---- leases (policy "leases": true): slices of shared limits, kept by the agent ----
 * lc_lease_plan looks at every slice this host holds or needs and answers the body of POST /v1/leases
 * ({"host_id", "epoch", "leases": [{"limit", "bucket", "used", "held", "want", "gen"}]}), or *out =
 * NULL when nothing needs asking; a slice it gives back is lowered here first, so the host never
 * spends what the server may grant elsewhere. lc_lease_apply installs the server's answer to that
 * body (sent_ms: when it was sent; the slice expires TTL after it, before the server's copy does). */
#define LC_LEASE_UP 1u         /* the caller reaches a server: refused requests may wait for its answer */
#define LC_LEASE_PREFETCH 2u   /* ask for a slice of every shared limit the policy names (agent start) */
int lc_lease_plan(unsigned flags, json_t **out);
/* a refused request or a new policy waits for a call (a cheap read: the agent polls it often) */
bool lc_lease_pending(void);
int lc_lease_apply(const json_t *request, const json_t *answer, int64_t sent_ms);

/* ---- outbox (events for the agent to deliver) ----
 * Each: {"seq": N, "id": "<delivery id>", "event": "<type>", "created_at": T, "data": {...}} */
int lc_outbox_list(uint64_t after_seq, size_t max, json_t **out);
int lc_outbox_delete(uint64_t seq);
/* Queue an event (dedup_key non-NULL: fires once per key, e.g. "limit_alert|key:ci:cost:monthly|<bucket>"). */
int lc_event_queue(const char *event, json_t *data /* stolen */, const char *dedup_key);
/* Webhooks of the installed policy: the "webhooks" array (new ref) or NULL. */
json_t *lc_webhooks(void);

/* ---- runs: an ephemeral cap on one run of a program (llmcap run --budget/--max-requests) ----
 * lc_run_begin records a run owned by this process (budget in micro-USD, -1 none; max_requests,
 * -1 none) and writes its id (hex); a process with LLMCAP_RUN_ID=id in its environment then counts
 * in the run's group (scope "run"), checked with its other limits in the same admit, while this
 * process lives. lc_run_end removes the run and its usage. LC_E_NOPOLICY without a policy. */
int lc_run_begin(int64_t budget, int64_t max_requests, char id[33]);
int lc_run_end(const char *id);

/* Flush the store to disk (the store runs MDB_NOSYNC; see README). */
int lc_store_sync(void);
const char *lc_strerror(int rc);

#endif
