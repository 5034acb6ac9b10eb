/* rules.c - the one limit model: names, crossing semantics, the event table and payload. */
#include "rules.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "util.h"

static const char *const scope_names[LC_SCOPE_COUNT] = {"key",   "team",     "org", "customer",
								     "model", "provider", "run"};
static const char *const lmetric_names[LC_LM_COUNT] = {"requests", "input_tokens", "cached_input_tokens",
						       "output_tokens", "cost"};
static const char *const event_names[LC_EV_COUNT] = {
	"spend_cap_warning_threshold_reached", "spend_cap_reached", "limit_alert", "limit_reached",
	"customer_budget_limit_reached", "key_expired", "policy_rejected", "policy_expired", "limit_projected"};

static int name_index(const char *const *names, int n, const char *s)
{
	for (int i = 0; s && i < n; i++)
		if (!strcmp(s, names[i]))
			return i;
	return -1;
}

const char *lc_scope_name(int scope)
{
	return scope >= 0 && scope < LC_SCOPE_COUNT ? scope_names[scope] : "?";
}

int lc_scope_parse(const char *s)
{
	return name_index(scope_names, LC_SCOPE_COUNT, s);
}

const char *lc_lmetric_name(int m)
{
	return m >= 0 && m < LC_LM_COUNT ? lmetric_names[m] : "?";
}

int lc_lmetric_parse(const char *s)
{
	return name_index(lmetric_names, LC_LM_COUNT, s);
}

int64_t lc_lmetric_fold(enum lc_metric m, const int64_t v[LC_LM_COUNT])
{
	switch (m) {
	case LC_METRIC_COST: return v[LC_LM_COST];
	case LC_METRIC_REQUESTS: return v[LC_LM_REQUESTS];
	case LC_METRIC_TOKENS: return lc_sat_add(lc_sat_add(v[LC_LM_INPUT], v[LC_LM_CACHED]), v[LC_LM_OUTPUT]);
	}
	return 0;
}

const char *lc_event_name(enum lc_event e)
{
	return (int)e >= 0 && e < LC_EV_COUNT ? event_names[e] : "?";
}

bool lc_event_name_known(const char *name)
{
	return name && (!strcmp(name, "*") || name_index(event_names, LC_EV_COUNT, name) >= 0);
}

/* ---- rules ---- */

void lc_rule_limit(struct lc_rule *r, int scope, const char *id, const struct lc_limit *l)
{
	memset(r, 0, sizeof(*r));
	r->scope = (uint8_t)scope;
	r->kind = LC_RULE_LIMIT;
	snprintf(r->id, sizeof(r->id), "%s", id);
	r->lim = *l;
}

static void no_alerts(struct lc_limit *l)
{
	for (int i = 0; i < LC_MAX_ALERT_LEVELS; i++)
		l->alert_at[i] = -1;
}

void lc_rule_org(struct lc_rule *r, int64_t cap, int64_t warn, enum lc_window period, const struct lc_alert_spec *a)
{
	struct lc_limit l = {.metric = LC_METRIC_COST, .window = period, .threshold = cap, .warn = cap < 0,
			     .enabled = true};

	/* the warning threshold is one more level; percentages are of the cap */
	lc_alert_spec_levels(a, cap, warn, &l);
	l.projected = a && a->projected == 1 && cap > 0;
	lc_rule_limit(r, LC_SCOPE_ORG, "org", &l);
	r->kind = LC_RULE_ORG_CAP;
}

void lc_rule_customer_budget(struct lc_rule *r, const char *id, int64_t budget, const struct lc_alert_spec *ovr,
			     const struct lc_alert_spec *dflt)
{
	struct lc_limit l = {.metric = LC_METRIC_COST, .window = LC_WIN_MONTHLY, .threshold = budget, .enabled = true};
	struct lc_alert_spec a;

	lc_alert_spec_inherit(&a, ovr, dflt);
	lc_alert_spec_levels(&a, budget, -1, &l);
	l.projected = a.projected == 1;
	lc_rule_limit(r, LC_SCOPE_CUSTOMER, id, &l);
	r->kind = LC_RULE_CUST_BUDGET;
}

void lc_rule_customer_rpm(struct lc_rule *r, const char *id, int64_t rpm)
{
	struct lc_limit l = {.metric = LC_METRIC_REQUESTS, .window = LC_WIN_MINUTE, .threshold = rpm, .enabled = true};

	no_alerts(&l);
	lc_rule_limit(r, LC_SCOPE_CUSTOMER, id, &l);
	r->kind = LC_RULE_CUST_RPM;
}

void lc_rule_name(const struct lc_rule *r, char *out, size_t n)
{
	snprintf(out, n, "%s:%s:%s:%s", lc_scope_name(r->scope), r->id, lc_metric_name(r->lim.metric),
		 lc_window_name(r->lim.window));
}

bool lc_rule_blocks(const struct lc_rule *r, int64_t committed, int64_t est)
{
	return r->lim.enabled && !r->lim.warn && r->lim.threshold >= 0 &&
	       lc_sat_add(committed, est) > r->lim.threshold;
}

bool lc_rule_warns(const struct lc_rule *r, int64_t committed, int64_t est)
{
	return r->lim.enabled && r->lim.warn && r->lim.threshold >= 0 && lc_sat_add(committed, est) > r->lim.threshold;
}

bool lc_rule_leased(const struct lc_rule *r)
{
	return r->lim.enabled && !r->lim.warn && r->lim.threshold >= 0 && r->kind != LC_RULE_CUST_RPM &&
	       (r->scope == LC_SCOPE_KEY || r->scope == LC_SCOPE_TEAM || r->scope == LC_SCOPE_ORG ||
		r->scope == LC_SCOPE_CUSTOMER);
}

int lc_rule_name_parse(const char *name, int *scope, char id[128], enum lc_metric *m, enum lc_window *w)
{
	const char *a = name ? strchr(name, ':') : NULL, *z = name ? strrchr(name, ':') : NULL, *y;
	char sc[16], met[16];

	if (!a || z == a)
		return -1;
	for (y = z - 1; y > a && *y != ':'; y--)
		;
	if (y == a || (size_t)(a - name) >= sizeof(sc) || (size_t)(z - y - 1) >= sizeof(met) ||
	    y - a - 1 < 1 || y - a - 1 > 127)
		return -1;
	memcpy(sc, name, (size_t)(a - name));
	sc[a - name] = '\0';
	memcpy(met, y + 1, (size_t)(z - y - 1));
	met[z - y - 1] = '\0';
	memcpy(id, a + 1, (size_t)(y - a - 1));
	id[y - a - 1] = '\0';
	*scope = lc_scope_parse(sc);
	return *scope < 0 || lc_metric_parse(met, m) || lc_window_parse(z + 1, w) ? -1 : 0;
}

enum lc_event lc_rule_deny_event(const struct lc_rule *r)
{
	switch (r->kind) {
	case LC_RULE_ORG_CAP: return LC_EV_SPEND_CAP_REACHED;
	case LC_RULE_CUST_BUDGET: return LC_EV_CUSTOMER_BUDGET;
	default: return LC_EV_LIMIT_REACHED;
	}
}

static bool reached(int64_t level, int64_t was, int64_t used)
{
	return level >= 0 && used > 0 && used >= level && (was < 0 || was < used);
}

int64_t lc_rule_projection(const struct lc_rule *r, int64_t used, int64_t now)
{
	int64_t start = lc_window_start(r->lim.window, now), end = lc_window_end(r->lim.window, now);
	int64_t len = end - start, elapsed = now - start;
	__int128 p;

	if (end == INT64_MAX || r->lim.threshold <= 0 || used < 0 || elapsed <= 0 || elapsed >= len)
		return -1;
	if (elapsed < len / 20 || used < r->lim.threshold / 10)
		return -1;   /* too early in the window, or too little used, to extrapolate */
	p = (__int128)used * len / elapsed;
	return p > INT64_MAX ? INT64_MAX : (int64_t)p;
}

int lc_rule_reached(const struct lc_rule *r, int64_t was, int64_t used, bool block_reached, int64_t now,
		    struct lc_crossing out[LC_MAX_CROSSINGS])
{
	enum lc_event alert = r->kind == LC_RULE_ORG_CAP ? LC_EV_SPEND_CAP_WARNING : LC_EV_LIMIT_ALERT;
	int n = 0;

	if (!r->lim.enabled || r->kind == LC_RULE_CUST_RPM)
		return 0;
	for (int i = 0; i < LC_MAX_ALERT_LEVELS && r->lim.alert_at[i] >= 0; i++)
		if (reached(r->lim.alert_at[i], was, used))
			out[n++] = (struct lc_crossing){alert, "alert_at", r->lim.alert_at[i]};
	if (reached(r->lim.threshold, was, used) && (r->lim.warn || block_reached))
		out[n++] = (struct lc_crossing){r->lim.warn ? LC_EV_LIMIT_ALERT : lc_rule_deny_event(r), "threshold",
						r->lim.threshold};
	if (r->lim.projected && used < r->lim.threshold && (was < 0 || was < used)) {
		int64_t p = lc_rule_projection(r, used, now);

		if (p >= 0 && p >= r->lim.threshold)
			out[n++] = (struct lc_crossing){LC_EV_LIMIT_PROJECTED, "projected", p};
	}
	return n;
}

json_t *lc_amount_json(enum lc_metric m, int64_t v)
{
	return m == LC_METRIC_COST ? json_real((double)v / 1e6) : json_integer(v);
}

void lc_amount_text(enum lc_metric m, int64_t v, char out[40])
{
	if (m == LC_METRIC_COST)
		lc_micro_format(v, out);
	else
		snprintf(out, 40, "%" PRId64, v);
}

static json_t *time_json(int64_t t)
{
	char ts[32];

	if (t == INT64_MAX)
		return json_null();
	lc_time_format(t, ts);
	return json_string(ts);
}

/* the fields a rule's event and status row share: first_name (limit, name), scope, id, metric,
 * window, threshold (null: none), alert_at (if any) */
static json_t *rule_json(const struct lc_rule *r, const char *first_name)
{
	enum lc_metric m = r->lim.metric;
	char name[200];
	json_t *o;

	lc_rule_name(r, name, sizeof(name));
	o = json_pack("{s:s,s:s,s:s,s:s,s:s}", first_name, name, "scope", lc_scope_name(r->scope), "id", r->id,
		      "metric", lc_metric_name(m), "window", lc_window_name(r->lim.window));
	if (!o)
		return NULL;
	json_object_set_new(o, "threshold", r->lim.threshold >= 0 ? lc_amount_json(m, r->lim.threshold) : json_null());
	if (r->lim.alert_at[0] >= 0)
		json_object_set_new(o, "alert_at", lc_amount_json(m, r->lim.alert_at[0]));
	if (lc_limit_alert_count(&r->lim) > 1) {
		json_t *a = json_array();

		for (int i = 0; i < LC_MAX_ALERT_LEVELS && r->lim.alert_at[i] >= 0; i++)
			json_array_append_new(a, lc_amount_json(m, r->lim.alert_at[i]));
		json_object_set_new(o, "alert_levels", a);
	}
	if (r->lim.projected)
		json_object_set_new(o, "alert_projected", json_true());
	json_object_set_new(o, "action", json_string(r->lim.warn ? "warn" : "block"));
	return o;
}

json_t *lc_rule_event_data(const struct lc_rule *r, const char *level, int64_t used, int64_t now,
			   int64_t policy_version)
{
	enum lc_metric m = r->lim.metric;
	json_t *d = rule_json(r, "limit");

	if (!d)
		return NULL;
	json_object_set_new(d, "level", json_string(level ? level : "threshold"));
	json_object_set_new(d, "used", lc_amount_json(m, used));
	json_object_set_new(d, "window_start", time_json(lc_window_start(r->lim.window, now)));
	json_object_set_new(d, "resets_at", time_json(lc_window_end(r->lim.window, now)));
	json_object_set_new(d, "policy_version", json_integer(policy_version));
	return d;
}

json_t *lc_rule_status_json(const struct lc_rule *r, int64_t used, int64_t reserved, int64_t now)
{
	enum lc_metric m = r->lim.metric;
	json_t *o = rule_json(r, "name");

	if (!o)
		return NULL;
	json_object_set_new(o, "used", lc_amount_json(m, used));
	json_object_set_new(o, "reserved", lc_amount_json(m, reserved));
	json_object_set_new(o, "resets_at", time_json(lc_window_end(r->lim.window, now)));
	json_object_set_new(o, "enabled", json_boolean(r->lim.enabled));
	if (r->kind == LC_RULE_CUST_RPM)
		json_object_set_new(o, "sliding", json_true());
	return o;
}

void lc_rule_dedup(char *out, size_t n, enum lc_event e, const struct lc_rule *r, const char *level, int64_t now)
{
	char name[200];

	lc_rule_name(r, name, sizeof(name));
	snprintf(out, n, "%s|%s|%s|%" PRId64, lc_event_name(e), name, level ? level : "threshold",
		 lc_window_start(r->lim.window, now));
}

json_t *lc_crossing_event_data(const struct lc_rule *r, const struct lc_crossing *c, int64_t used, int64_t now,
			       int64_t policy_version)
{
	json_t *d = lc_rule_event_data(r, c->level, used, now, policy_version);

	if (d && !strcmp(c->level, "alert_at"))
		json_object_set_new(d, "alert_at", lc_amount_json(r->lim.metric, c->value));
	if (d && !strcmp(c->level, "projected"))
		json_object_set_new(d, "projected", lc_amount_json(r->lim.metric, c->value));
	return d;
}

void lc_crossing_dedup(char *out, size_t n, const struct lc_rule *r, const struct lc_crossing *c, int64_t now)
{
	char level[48];

	if (!strcmp(c->level, "alert_at") && c->value != r->lim.alert_at[0])
		snprintf(level, sizeof(level), "alert_at:%" PRId64, c->value);
	else
		snprintf(level, sizeof(level), "%s", c->level);
	lc_rule_dedup(out, n, c->event, r, level, now);
}

void lc_rule_refusal(const struct lc_rule *r, int64_t used, int64_t est, int64_t now, char *out, size_t n)
{
	char thr[40], u[40], e[40], ts[32], resets[64], what[200];
	const char *w = lc_window_name(r->lim.window);
	int64_t end = lc_window_end(r->lim.window, now);

	lc_amount_text(r->lim.metric, r->lim.threshold, thr);
	lc_amount_text(r->lim.metric, used, u);
	lc_amount_text(r->lim.metric, est, e);
	if (end == INT64_MAX)
		snprintf(resets, sizeof(resets), "it never resets");
	else {
		lc_time_format(end, ts);
		snprintf(resets, sizeof(resets), "resets %s", ts);
	}
	if (r->scope == LC_SCOPE_RUN) {
		snprintf(out, n, "llmcap: the %s of %s for this run (llmcap run %s, run '%s') reached (%s used + %s this "
			 "request (worst case) would exceed it); it ends with the run",
			 r->lim.metric == LC_METRIC_COST ? "budget" : "request cap", thr,
			 r->lim.metric == LC_METRIC_COST ? "--budget" : "--max-requests", r->id, u, e);
		return;
	}
	if (r->kind == LC_RULE_ORG_CAP)
		snprintf(what, sizeof(what), "%s organisation spend cap of %s", w, thr);
	else if (r->kind == LC_RULE_CUST_BUDGET)
		snprintf(what, sizeof(what), "%s budget of %s for customer '%s'", w, thr, r->id);
	else
		snprintf(what, sizeof(what), "%s %s limit of %s for %s '%s'", w, lc_metric_name(r->lim.metric), thr,
			 lc_scope_name(r->scope), r->id);
	snprintf(out, n, "llmcap: %s reached (%s used + %s this request (worst case) would exceed it); %s", what, u, e,
		 resets);
}
