/* rules.h - the one limit model, shared by the host engine and the server.
 *
 * A rule is a limit on one ledger group: (scope, id, metric, window, threshold, action, alert_at,
 * enabled). Its one name is "scope:id:metric:window" (e.g. "key:ci:cost:monthly",
 * "org:org:cost:monthly", "customer:acme:requests:minute" for a customer's rpm), used by status,
 * the 429's x-llmcap-limit, events and the server's usage alike.
 *
 * Crossing semantics (one place):
 *   - a block rule refuses a request when used + reserved + this request's worst case > threshold;
 *   - a warn rule (action "warn", or the org's warning threshold without a cap) never refuses;
 *   - a level (each of alert_at's levels, or the threshold of a warn rule, or of a block rule on
 *     summed usage at the server) is reached when settled usage >= the level and > 0; each event
 *     fires once per rule, level and window (its dedup key names all three);
 *   - the projection (a limit with "alert_projected": true, a window that resets, threshold > 0):
 *     with e = seconds elapsed in the window, L = the window's length and u = settled usage,
 *     projected = u * L / e; it fires limit_projected when projected >= threshold while u < threshold,
 *     once e >= L / 20 (5% of the window) and u >= threshold / 10 (so the first requests of a window
 *     do not extrapolate to noise).
 *
 * The event table below is the only list of event names; the policy validator checks webhook
 * "events" against it.
 */
#ifndef LC_RULES_H
#define LC_RULES_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "policy.h"

/* ledger groups: every settled request counts in one group of each scope that applies */
enum lc_scope {
	LC_SCOPE_KEY = 0, LC_SCOPE_TEAM, LC_SCOPE_ORG, LC_SCOPE_CUSTOMER, LC_SCOPE_MODEL, LC_SCOPE_PROVIDER,
	LC_SCOPE_RUN,      /* one run of `llmcap run --budget/--max-requests` (engine_run.c): host-only, never reported */
	LC_SCOPE_COUNT
};
const char *lc_scope_name(int scope);
int lc_scope_parse(const char *s);            /* -1 unknown */

/* what the ledger counts per group and window */
enum lc_lmetric { LC_LM_REQUESTS = 0, LC_LM_INPUT, LC_LM_CACHED, LC_LM_OUTPUT, LC_LM_COST, LC_LM_COUNT };
const char *lc_lmetric_name(int m);           /* requests, input_tokens, cached_input_tokens, output_tokens, cost */
int lc_lmetric_parse(const char *s);          /* -1 unknown */
/* a limit metric from ledger values: cost, requests, or tokens = input + cached input + output */
int64_t lc_lmetric_fold(enum lc_metric m, const int64_t v[LC_LM_COUNT]);

/* ---- events ---- */
enum lc_event {
	LC_EV_SPEND_CAP_WARNING = 0,   /* spend_cap_warning_threshold_reached */
	LC_EV_SPEND_CAP_REACHED,       /* spend_cap_reached */
	LC_EV_LIMIT_ALERT,             /* limit_alert: alert_at reached, or a warn rule's threshold */
	LC_EV_LIMIT_REACHED,           /* limit_reached: a block rule reached / refused a request */
	LC_EV_CUSTOMER_BUDGET,         /* customer_budget_limit_reached */
	LC_EV_KEY_EXPIRED,
	LC_EV_POLICY_REJECTED,
	LC_EV_POLICY_EXPIRED,
	LC_EV_LIMIT_PROJECTED,         /* limit_projected: at the window's rate so far the limit runs out before the reset */
	LC_EV_COUNT
};
const char *lc_event_name(enum lc_event e);
/* a name a webhook's "events" may list: an event of the table, or "*" */
bool lc_event_name_known(const char *name);

/* ---- rules ---- */
enum lc_rule_kind {
	LC_RULE_LIMIT = 0,     /* a key's or team's limit */
	LC_RULE_ORG_CAP,       /* the org spend cap (threshold -1: none); its warning threshold and alert_at are its levels */
	LC_RULE_CUST_BUDGET,   /* a customer's monthly budget */
	LC_RULE_CUST_RPM,      /* a customer's requests per minute: a sliding 60-second window */
};

struct lc_rule {
	uint8_t scope;         /* enum lc_scope */
	uint8_t kind;          /* enum lc_rule_kind */
	char id[128];
	struct lc_limit lim;   /* threshold -1: none (an org warning without a cap) */
};

void lc_rule_limit(struct lc_rule *r, int scope, const char *id, const struct lc_limit *l);
/* the org cap (-1: none) with its warning threshold (-1: none) and alert levels (a: the org object's
 * "alert_at", "alert_projected"; NULL: none) */
void lc_rule_org(struct lc_rule *r, int64_t cap, int64_t warn, enum lc_window period, const struct lc_alert_spec *a);
/* a customer's monthly budget; its alert levels are the override's (ovr) where it gives them, else
 * the customers defaults' (dflt); either may be NULL */
void lc_rule_customer_budget(struct lc_rule *r, const char *id, int64_t budget, const struct lc_alert_spec *ovr,
			     const struct lc_alert_spec *dflt);
void lc_rule_customer_rpm(struct lc_rule *r, const char *id, int64_t rpm);

/* "scope:id:metric:window" */
void lc_rule_name(const struct lc_rule *r, char *out, size_t n);
/* would refuse: a block rule, enabled, with committed + est > threshold */
bool lc_rule_blocks(const struct lc_rule *r, int64_t committed, int64_t est);
/* a warn rule that this request takes past its threshold (the request goes through) */
bool lc_rule_warns(const struct lc_rule *r, int64_t committed, int64_t est);
/* Spent within leased slices when the policy says "leases": an enabled block rule with a threshold on
 * a group several hosts can spend against (key, team, org, a customer's budget). A customer's rpm (a
 * sliding minute) and warn rules stay local. Host and server decide with this one test. */
bool lc_rule_leased(const struct lc_rule *r);
/* "scope:id:metric:window" back into scope, id, metric and window (the id may hold ':'). 0 ok. */
int lc_rule_name_parse(const char *name, int *scope, char id[128], enum lc_metric *m, enum lc_window *w);
/* the event a refusal by r fires */
enum lc_event lc_rule_deny_event(const struct lc_rule *r);

/* Levels of r reached by settled usage `used` at `now` (was: before this change, -1 unknown): each
 * alert level, the threshold, the projection. Returns how many were written to out. */
#define LC_MAX_CROSSINGS (LC_MAX_ALERT_LEVELS + 2)
struct lc_crossing {
	enum lc_event event;
	const char *level;     /* "alert_at", "threshold" or "projected" */
	int64_t value;         /* the level reached (alert_at, threshold); the projected usage (projected) */
};
int lc_rule_reached(const struct lc_rule *r, int64_t was, int64_t used, bool block_reached, int64_t now,
		    struct lc_crossing out[LC_MAX_CROSSINGS]);
/* usage projected to the window's end at its rate so far (the rule above); -1 when not applicable */
int64_t lc_rule_projection(const struct lc_rule *r, int64_t used, int64_t now);
/* a crossing's payload (lc_rule_event_data with the level's own alert_at, or "projected") and its
 * dedup key (the lowest alert level keeps the key "alert_at"; higher ones "alert_at:AMOUNT") */
json_t *lc_crossing_event_data(const struct lc_rule *r, const struct lc_crossing *c, int64_t used, int64_t now,
			       int64_t policy_version);
void lc_crossing_dedup(char *out, size_t n, const struct lc_rule *r, const struct lc_crossing *c, int64_t now);

/* The one event payload: limit, scope, id, metric, window, threshold (null: none), alert_at (if
 * any: the lowest level, or the level reached), alert_levels (when several), action, level, used,
 * window_start, resets_at (null: lifetime), policy_version; projected (limit_projected). Amounts in the
 * metric's unit (USD for cost). */
json_t *lc_rule_event_data(const struct lc_rule *r, const char *level, int64_t used, int64_t now,
			   int64_t policy_version);
/* "event|name|level|window_start": fires once per rule, level and window */
void lc_rule_dedup(char *out, size_t n, enum lc_event e, const struct lc_rule *r, const char *level, int64_t now);

/* An amount in the metric's unit as JSON (USD reals for cost) and as text ("$0.30", "10000"). */
json_t *lc_amount_json(enum lc_metric m, int64_t v);
void lc_amount_text(enum lc_metric m, int64_t v, char out[40]);

/* A rule with its usage, as status and the server's usage show it: {name, scope, id, metric, window,
 * used, reserved, threshold (null: none), resets_at (null: lifetime), action, enabled, alert_at? (the
 * lowest level), alert_levels? (when several), alert_projected?, sliding? (customer rpm)} */
json_t *lc_rule_status_json(const struct lc_rule *r, int64_t used, int64_t reserved, int64_t now);

/* Why a request is refused, in numbers: "llmcap: $0.192 used + $0.135 this request (worst case)
 * would exceed the daily cost limit of $0.30 for key 'ci'; resets 2026-12-02T00:00:00Z". */
void lc_rule_refusal(const struct lc_rule *r, int64_t used, int64_t est, int64_t now, char *out, size_t n);

#endif
