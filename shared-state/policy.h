/* policy.h - the policy document: strict parse and validation.
 *
 * Validation errors name the field by its JSON path, e.g.
 *   "keys.ci.limits[1].window: must be one of minute, hour, daily, weekly, monthly, lifetime".
 * Amounts are USD in JSON and integer micro-USD here; prices are USD per
 * million tokens in JSON and micro-USD per million tokens here.
 */
#ifndef LC_POLICY_H
#define LC_POLICY_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum lc_metric { LC_METRIC_COST = 0, LC_METRIC_REQUESTS = 1, LC_METRIC_TOKENS = 2 };
enum lc_window {
	LC_WIN_MINUTE = 0, LC_WIN_HOUR, LC_WIN_DAILY, LC_WIN_WEEKLY, LC_WIN_MONTHLY, LC_WIN_LIFETIME
};
const char *lc_metric_name(enum lc_metric m);
const char *lc_window_name(enum lc_window w);
int lc_metric_parse(const char *s, enum lc_metric *out);
int lc_window_parse(const char *s, enum lc_window *out);
/* minute, hour, day, week, month, lifetime (the usage report's names); parse takes both forms */
const char *lc_window_short_name(enum lc_window w);
int lc_window_parse_any(const char *s, enum lc_window *out);
/* Bucket containing `now` (unix seconds, UTC): start, and the next reset (INT64_MAX for lifetime). */
int64_t lc_window_start(enum lc_window w, int64_t now);
int64_t lc_window_end(enum lc_window w, int64_t now);

#define LC_MAX_LIMITS 16
#define LC_NAME_MAX 63   /* key, team, customer and provider names: 1 to 63 bytes */

/* alert levels per limit ("alert_at": a number, "80%", or an array of up to this many) */
#define LC_MAX_ALERT_LEVELS 6

struct lc_limit {
	enum lc_metric metric;
	enum lc_window window;
	int64_t threshold;     /* micro-USD for cost; count for requests/tokens */
	/* alert levels in the same unit, ascending and distinct; -1 past the last (alert_at[0] -1: none).
	 * A percentage is compiled to ceil(threshold * p / 100). */
	int64_t alert_at[LC_MAX_ALERT_LEVELS];
	bool warn;             /* action "warn" (else block) */
	bool enabled;
	bool projected;        /* "alert_projected": true: the projected-exhaustion alert (rules.h) */
};
/* how many alert levels l has */
int lc_limit_alert_count(const struct lc_limit *l);

/* "alert_at" and "alert_projected" as written, before a threshold is known: the org's spend cap
 * and a customer's monthly budget carry them beside their threshold, and a customers default's
 * "80%" follows each customer's own budget. lc_alert_spec_levels turns them into a limit's levels. */
struct lc_alert_spec {
	int8_t n;                                /* levels given; -1: "alert_at" absent (inherit) */
	int8_t projected;                        /* 0 false, 1 true, -1 absent (inherit) */
	int64_t amount[LC_MAX_ALERT_LEVELS];     /* in the limit's unit; -1: a percentage */
	double pct[LC_MAX_ALERT_LEVELS];         /* of the threshold, above 0 and at most 100 */
};
/* Parse obj's "alert_at" and "alert_projected" (either may be absent) at JSON path `path` (the
 * object's). A percentage is refused when the object has no threshold to take it of
 * (threshold_field: the field's name for the message, NULL when there is one). 0 ok, -1 with err. */
int lc_alert_spec_parse(json_t *obj, const char *path, enum lc_metric m, const char *threshold_field,
			struct lc_alert_spec *out, char *err, size_t errlen);
/* The levels of spec against threshold (-1: none; its percentages then count for nothing), plus
 * `extra` (-1: none), ascending and distinct, into l->alert_at; a percentage P is
 * ceil(threshold * P / 100). Returns how many levels there would be (more than
 * LC_MAX_ALERT_LEVELS: the highest are dropped). */
int lc_alert_spec_levels(const struct lc_alert_spec *spec, int64_t threshold, int64_t extra, struct lc_limit *l);
/* what applies: the override's fields where it gives them, else the default's (either may be NULL) */
void lc_alert_spec_inherit(struct lc_alert_spec *out, const struct lc_alert_spec *ovr, const struct lc_alert_spec *dflt);

/* Parse a limits array (the policy's shape) at JSON path `path`. */
int lc_limits_parse(json_t *arr, const char *path, struct lc_limit *out, int *n, char *err, size_t errlen);

/* A parsed and validated policy. `root` is the JSON (owned). */
struct lc_policy {
	json_t *root;
	int64_t schema;
	int64_t version;
	int64_t issued_at;
	int64_t expires_at;
};

/* Strict: JSON_REJECT_DUPLICATES, unknown fields are errors, every field
 * checked. Does not check the version ratchet or expiry against the clock
 * (the store does that on apply). 0 ok, -1 with err. */
int lc_policy_parse(const void *json, size_t len, struct lc_policy **out, char *err, size_t errlen);
int lc_policy_validate(json_t *root, struct lc_policy *hdr, char *err, size_t errlen);
void lc_policy_free(struct lc_policy *p);

#endif
