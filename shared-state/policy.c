/* policy.c - strict parse and validation of the policy document.
 *
 * Every error names the offending field by its JSON path. Unknown fields and
 * duplicate keys are errors: a signed file must mean exactly one thing.
 */
#include "policy.h"

#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "alert.h"
#include "price.h"
#include "rules.h"
#include "util.h"

static const char *const metric_names[] = {"cost", "requests", "tokens"};
static const char *const window_names[] = {"minute", "hour", "daily", "weekly", "monthly", "lifetime"};

const char *lc_metric_name(enum lc_metric m)
{
	return (unsigned)m < 3 ? metric_names[m] : "?";
}

const char *lc_window_name(enum lc_window w)
{
	return (unsigned)w < 6 ? window_names[w] : "?";
}

int lc_metric_parse(const char *s, enum lc_metric *out)
{
	for (int i = 0; i < 3; i++)
		if (s && !strcmp(s, metric_names[i])) {
			*out = (enum lc_metric)i;
			return 0;
		}
	return -1;
}

int lc_window_parse(const char *s, enum lc_window *out)
{
	for (int i = 0; i < 6; i++)
		if (s && !strcmp(s, window_names[i])) {
			*out = (enum lc_window)i;
			return 0;
		}
	return -1;
}

const char *lc_window_short_name(enum lc_window w)
{
	static const char *const n[] = {"minute", "hour", "day", "week", "month", "lifetime"};

	return (int)w >= 0 && w <= LC_WIN_LIFETIME ? n[w] : "?";
}

int lc_window_parse_any(const char *s, enum lc_window *out)
{
	if (lc_window_parse(s, out) == 0)
		return 0;
	for (int i = 0; i <= LC_WIN_LIFETIME; i++)
		if (s && !strcmp(s, lc_window_short_name((enum lc_window)i))) {
			*out = (enum lc_window)i;
			return 0;
		}
	return -1;
}

static void civil_from_days(int64_t z, int64_t *y, int *m, int *d)
{
	int64_t era, doe, yoe, doy, mp;

	z += 719468;
	era = (z >= 0 ? z : z - 146096) / 146097;
	doe = z - era * 146097;
	yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
	*y = yoe + era * 400;
	doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
	mp = (5 * doy + 2) / 153;
	*d = (int)(doy - (153 * mp + 2) / 5 + 1);
	*m = (int)(mp < 10 ? mp + 3 : mp - 9);
	*y += *m <= 2;
}

int64_t lc_window_start(enum lc_window w, int64_t now)
{
	int64_t days, y;
	int m, d;

	now = now < LC_TIME_MIN ? LC_TIME_MIN : now > LC_TIME_MAX ? LC_TIME_MAX : now;
	switch (w) {
	case LC_WIN_MINUTE:
		return lc_floordiv(now, 60) * 60;
	case LC_WIN_HOUR:
		return lc_floordiv(now, 3600) * 3600;
	case LC_WIN_DAILY:
		return lc_floordiv(now, 86400) * 86400;
	case LC_WIN_WEEKLY:
		/* 1970-01-01 was a Thursday; Monday 1969-12-29 is day -3 */
		days = lc_floordiv(now, 86400);
		return (days - ((days + 3) % 7 + 7) % 7) * 86400;
	case LC_WIN_MONTHLY:
		civil_from_days(lc_floordiv(now, 86400), &y, &m, &d);
		return lc_days_from_civil(y, m, 1) * 86400;
	case LC_WIN_LIFETIME:
	default:
		return 0;
	}
}

int64_t lc_window_end(enum lc_window w, int64_t now)
{
	int64_t s = lc_window_start(w, now), y;
	int m, d;

	switch (w) {
	case LC_WIN_MINUTE:
		return s + 60;
	case LC_WIN_HOUR:
		return s + 3600;
	case LC_WIN_DAILY:
		return s + 86400;
	case LC_WIN_WEEKLY:
		return s + 7 * 86400;
	case LC_WIN_MONTHLY:
		civil_from_days(lc_floordiv(s, 86400), &y, &m, &d);
		if (++m > 12) {
			m = 1;
			y++;
		}
		return lc_days_from_civil(y, m, 1) * 86400;
	case LC_WIN_LIFETIME:
	default:
		return INT64_MAX;
	}
}

/* ---- validation helpers -------------------------------------------------- */

#define FAIL(...) do { lc_errf(err, errlen, __VA_ARGS__); return -1; } while (0)

static int only_fields(json_t *obj, const char *path, const char *const *allowed, char *err, size_t errlen)
{
	const char *k;
	json_t *v;

	json_object_foreach(obj, k, v) {
		int found = 0;

		for (const char *const *a = allowed; *a; a++)
			if (!strcmp(k, *a))
				found = 1;
		if (!found)
			FAIL("%s%s%s: unknown field", path, *path ? "." : "", k);
	}
	return 0;
}

static int want_usd(json_t *v, const char *path, bool nullable, int64_t *out, char *err, size_t errlen)
{
	if (nullable && json_is_null(v)) {
		*out = -1;
		return 0;
	}
	if (!json_is_number(v))
		FAIL("%s: must be a number (USD)%s", path, nullable ? " or null" : "");
	if (lc_usd_to_micro(json_number_value(v), out))
		FAIL("%s: must be a non-negative amount", path);
	return 0;
}

static int want_count(json_t *v, const char *path, bool nullable, int64_t *out, char *err, size_t errlen)
{
	if (nullable && json_is_null(v)) {
		*out = -1;
		return 0;
	}
	if (!json_is_integer(v) || json_integer_value(v) < 0)
		FAIL("%s: must be a non-negative integer%s", path, nullable ? " or null" : "");
	*out = json_integer_value(v);
	return 0;
}

static int want_time(json_t *v, const char *path, int64_t *out, char *err, size_t errlen)
{
	if (!json_is_string(v) || lc_time_parse(json_string_value(v), out))
		FAIL("%s: must be an RFC 3339 UTC time like 2026-12-01T00:00:00Z", path);
	return 0;
}

static int want_choice(json_t *v, const char *path, const char *a, const char *b, bool *is_b, char *err,
		       size_t errlen)
{
	if (!json_is_string(v) || (strcmp(json_string_value(v), a) && strcmp(json_string_value(v), b)))
		FAIL("%s: must be \"%s\" or \"%s\"", path, a, b);
	*is_b = !strcmp(json_string_value(v), b);
	return 0;
}

static int want_id(const char *k, const char *path, char *err, size_t errlen)
{
	size_t n = strlen(k);

	if (n == 0 || n > LC_NAME_MAX)
		FAIL("%s: names must be 1 to %d bytes", path, LC_NAME_MAX);
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)k[i] < 0x20 || k[i] == 0x7f)
			FAIL("%s: names must not contain control characters", path);
	return 0;
}

int lc_limit_alert_count(const struct lc_limit *l)
{
	int n = 0;

	while (n < LC_MAX_ALERT_LEVELS && l->alert_at[n] >= 0)
		n++;
	return n;
}

/* one alert level: an amount in the limit's unit, or "P%" of the threshold (0 < P <= 100) */
static int alert_level(json_t *v, const char *path, enum lc_metric m, const char *threshold_field, int64_t *amount,
		       double *pct, char *err, size_t errlen)
{
	const char *s = json_string_value(v);
	char *end;

	*amount = -1;
	*pct = 0;
	if (!s)
		return m == LC_METRIC_COST ? want_usd(v, path, false, amount, err, errlen)
					   : want_count(v, path, false, amount, err, errlen);
	*pct = strtod(s, &end);
	if (end == s || strcmp(end, "%") || !(*pct > 0 && *pct <= 100) || isspace((unsigned char)*s))
		FAIL("%s: must be an amount or a percentage of the threshold like \"80%%\" (above 0, at most 100)",
		     path);
	if (threshold_field)
		FAIL("%s: a percentage needs %s (the threshold it is a percentage of); give an amount", path,
		     threshold_field);
	return 0;
}

int lc_alert_spec_parse(json_t *obj, const char *path, enum lc_metric m, const char *threshold_field,
			struct lc_alert_spec *out, char *err, size_t errlen)
{
	json_t *v = json_object_get(obj, "alert_at"), *e;
	char p[600];
	size_t i;

	memset(out, 0, sizeof(*out));
	out->n = v ? 0 : -1;
	out->projected = -1;
	if (v && !json_is_null(v)) {
		if (json_is_array(v) && (json_array_size(v) == 0 || json_array_size(v) > LC_MAX_ALERT_LEVELS))
			FAIL("%s%salert_at: must hold 1 to %d alert levels", path, *path ? "." : "", LC_MAX_ALERT_LEVELS);
		if (!json_is_array(v)) {
			snprintf(p, sizeof(p), "%s%salert_at", path, *path ? "." : "");
			if (alert_level(v, p, m, threshold_field, &out->amount[0], &out->pct[0], err, errlen))
				return -1;
			out->n = 1;
		}
		json_array_foreach(json_is_array(v) ? v : NULL, i, e) {
			snprintf(p, sizeof(p), "%s%salert_at[%zu]", path, *path ? "." : "", i);
			if (alert_level(e, p, m, threshold_field, &out->amount[i], &out->pct[i], err, errlen))
				return -1;
			out->n++;
		}
	}
	v = json_object_get(obj, "alert_projected");
	if (v && !json_is_boolean(v))
		FAIL("%s%salert_projected: must be true or false", path, *path ? "." : "");
	if (json_is_true(v) && threshold_field)
		FAIL("%s%salert_projected: needs %s (the threshold the usage is projected against)", path,
		     *path ? "." : "", threshold_field);
	if (v)
		out->projected = json_is_true(v);
	return 0;
}

int lc_alert_spec_levels(const struct lc_alert_spec *spec, int64_t threshold, int64_t extra, struct lc_limit *l)
{
	int64_t a[LC_MAX_ALERT_LEVELS + 1];
	int n = 0, total = 0;

	for (int i = 0; spec && i < spec->n && i < LC_MAX_ALERT_LEVELS; i++) {
		int64_t x = spec->amount[i];

		if (x < 0 && threshold >= 0) {
			/* threshold <= 2^63 / 1e6 USD or a count below 2^63: the product stays finite; ceil
			 * keeps "used >= level" the same as "used >= threshold * p / 100" */
			x = (int64_t)ceil((double)threshold * spec->pct[i] / 100.0);
			if (x > threshold)
				x = threshold;
		}
		if (x >= 0)
			a[n++] = x;
	}
	if (extra >= 0)
		a[n++] = extra;
	for (int i = 0; i < LC_MAX_ALERT_LEVELS; i++)
		l->alert_at[i] = -1;
	for (int i = 0; i < n; i++) {   /* ascending, two spellings of one level once */
		int j, k = total < LC_MAX_ALERT_LEVELS ? total : LC_MAX_ALERT_LEVELS;

		for (j = 0; j < k && l->alert_at[j] < a[i]; j++)
			;
		if (j < k && l->alert_at[j] == a[i])
			continue;
		total++;
		if (j >= LC_MAX_ALERT_LEVELS)
			continue;
		memmove(&l->alert_at[j + 1], &l->alert_at[j],
			(size_t)(LC_MAX_ALERT_LEVELS - 1 - j) * sizeof(l->alert_at[0]));
		l->alert_at[j] = a[i];
	}
	return total;
}

void lc_alert_spec_inherit(struct lc_alert_spec *out, const struct lc_alert_spec *ovr, const struct lc_alert_spec *dflt)
{
	struct lc_alert_spec none = {.n = -1, .projected = -1}, o = ovr ? *ovr : none, d = dflt ? *dflt : none;

	*out = o.n >= 0 ? o : d;
	out->projected = o.projected >= 0 ? o.projected : d.projected;
}

int lc_limits_parse(json_t *arr, const char *path, struct lc_limit *out, int *n, char *err, size_t errlen)
{
	static const char *const fields[] = {"metric",  "window",  "threshold",       "action",
					     "alert_at", "enabled", "alert_projected", NULL};
	struct lc_alert_spec spec;
	char p[512];
	size_t i;
	json_t *l, *v;

	if (!json_is_array(arr))
		FAIL("%s: must be an array of limits", path);
	if (json_array_size(arr) > LC_MAX_LIMITS)
		FAIL("%s: at most %d limits", path, LC_MAX_LIMITS);
	*n = 0;
	json_array_foreach(arr, i, l) {
		struct lc_limit *x = &out[i];

		snprintf(p, sizeof(p), "%s[%zu]", path, i);
		if (!json_is_object(l))
			FAIL("%s: must be an object", p);
		if (only_fields(l, p, fields, err, errlen))
			return -1;
		v = json_object_get(l, "metric");
		if (!json_is_string(v) || lc_metric_parse(json_string_value(v), &x->metric))
			FAIL("%s.metric: must be one of cost, requests, tokens", p);
		v = json_object_get(l, "window");
		if (!json_is_string(v) || lc_window_parse(json_string_value(v), &x->window))
			FAIL("%s.window: must be one of minute, hour, daily, weekly, monthly, lifetime", p);
		snprintf(p, sizeof(p), "%s[%zu].threshold", path, i);
		v = json_object_get(l, "threshold");
		if (!v)
			FAIL("%s: is required", p);
		if (x->metric == LC_METRIC_COST ? want_usd(v, p, false, &x->threshold, err, errlen)
						 : want_count(v, p, false, &x->threshold, err, errlen))
			return -1;
		snprintf(p, sizeof(p), "%s[%zu]", path, i);
		if (lc_alert_spec_parse(l, p, x->metric, NULL, &spec, err, errlen))
			return -1;
		lc_alert_spec_levels(&spec, x->threshold, -1, x);
		x->projected = spec.projected == 1;
		x->warn = false;
		v = json_object_get(l, "action");
		snprintf(p, sizeof(p), "%s[%zu].action", path, i);
		if (v && want_choice(v, p, "block", "warn", &x->warn, err, errlen))
			return -1;
		x->enabled = true;
		v = json_object_get(l, "enabled");
		snprintf(p, sizeof(p), "%s[%zu].enabled", path, i);
		if (v && !json_is_boolean(v))
			FAIL("%s: must be true or false", p);
		if (v)
			x->enabled = json_is_true(v);
		(*n)++;
	}
	return 0;
}

static int check_limits_field(json_t *obj, const char *path, char *err, size_t errlen)
{
	struct lc_limit l[LC_MAX_LIMITS];
	char p[512];
	int n;
	json_t *v = json_object_get(obj, "limits");

	if (!v)
		return 0;
	snprintf(p, sizeof(p), "%s.limits", path);
	return lc_limits_parse(v, p, l, &n, err, errlen);
}

static int validate_providers(json_t *v, char *err, size_t errlen)
{
	static const char *const fields[] = {"name", "format", "hosts", NULL};
	char p[256];
	size_t i, j;
	json_t *pr, *h, *hv;

	if (!v)
		FAIL("providers: is required");
	if (!json_is_array(v) || json_array_size(v) == 0)
		FAIL("providers: must be a non-empty array");
	json_array_foreach(v, i, pr) {
		snprintf(p, sizeof(p), "providers[%zu]", i);
		if (!json_is_object(pr))
			FAIL("%s: must be an object", p);
		if (only_fields(pr, p, fields, err, errlen))
			return -1;
		if (!json_is_string(json_object_get(pr, "name")) || !*json_string_value(json_object_get(pr, "name")))
			FAIL("%s.name: must be a non-empty string", p);
		if (!json_is_string(json_object_get(pr, "format")) ||
		    (strcmp(json_string_value(json_object_get(pr, "format")), "openai") &&
		     strcmp(json_string_value(json_object_get(pr, "format")), "anthropic")))
			FAIL("%s.format: must be \"openai\" or \"anthropic\"", p);
		h = json_object_get(pr, "hosts");
		if (!json_is_array(h) || json_array_size(h) == 0)
			FAIL("%s.hosts: must be a non-empty array of \"host\" or \"host:port\"", p);
		json_array_foreach(h, j, hv) {
			const char *s = json_string_value(hv);

			if (!s || !*s || strlen(s) > 255 || strchr(s, '/') || strchr(s, ' '))
				FAIL("%s.hosts[%zu]: must be \"host\" or \"host:port\"", p, j);
		}
	}
	return 0;
}

static int validate_prices(json_t *v, char *err, size_t errlen)
{
	char p[256];
	const char *model;
	json_t *pr;

	if (!v)
		return 0;
	if (!json_is_object(v))
		FAIL("prices: must be an object of model -> prices");
	json_object_foreach(v, model, pr) {
		snprintf(p, sizeof(p), "prices.%s", model);
		if (strlen(model) == 0 || strlen(model) > 127)
			FAIL("%s: model names must be 1 to 127 bytes", p);
		if (lc_price_entry_check(pr, p, err, errlen))
			return -1;
	}
	return 0;
}

static int validate_teams(json_t *v, char *err, size_t errlen)
{
	static const char *const fields[] = {"limits", NULL};
	char p[256];
	const char *name;
	json_t *t;

	if (!v)
		return 0;
	if (!json_is_object(v))
		FAIL("teams: must be an object of team -> {limits}");
	json_object_foreach(v, name, t) {
		snprintf(p, sizeof(p), "teams.%s", name);
		if (want_id(name, p, err, errlen))
			return -1;
		if (!json_is_object(t))
			FAIL("%s: must be an object", p);
		if (only_fields(t, p, fields, err, errlen) || check_limits_field(t, p, err, errlen))
			return -1;
	}
	return 0;
}

static int validate_keys_in(json_t *v, json_t *teams, json_t *seen, char *err, size_t errlen)
{
	static const char *const fields[] = {"sha256", "team", "expires_at", "revoked", "limits", NULL};
	char p[256], q[300], hexfp[65];
	const char *name;
	json_t *k, *k2, *x;
	unsigned char fp[32];
	int64_t t;

	if (!v)
		return 0;
	if (!json_is_object(v))
		FAIL("keys: must be an object of key name -> key");
	json_object_foreach(v, name, k) {
		snprintf(p, sizeof(p), "keys.%s", name);
		if (want_id(name, p, err, errlen))
			return -1;
		if (!json_is_object(k))
			FAIL("%s: must be an object", p);
		if (only_fields(k, p, fields, err, errlen))
			return -1;
		x = json_object_get(k, "sha256");
		if (!json_is_string(x) || lc_unhex(json_string_value(x), fp, 32))
			FAIL("%s.sha256: must be the 64-hex-digit SHA-256 of the raw key", p);
		/* the same raw key under two names would make decisions ambiguous (hash set: O(n)) */
		lc_hex(fp, 32, hexfp);
		k2 = json_object_get(seen, hexfp);
		if (k2)
			FAIL("%s.sha256: the same key is already named keys.%s", p, json_string_value(k2));
		json_object_set_new(seen, hexfp, json_string(name));
		x = json_object_get(k, "team");
		if (x && !json_is_null(x)) {
			if (!json_is_string(x))
				FAIL("%s.team: must be a team name", p);
			if (!json_object_get(teams, json_string_value(x)))
				FAIL("%s.team: no team \"%s\" in teams", p, json_string_value(x));
		}
		x = json_object_get(k, "expires_at");
		snprintf(q, sizeof(q), "%s.expires_at", p);
		if (x && !json_is_null(x) && want_time(x, q, &t, err, errlen))
			return -1;
		x = json_object_get(k, "revoked");
		if (x && !json_is_boolean(x))
			FAIL("%s.revoked: must be true or false", p);
		if (check_limits_field(k, p, err, errlen))
			return -1;
	}
	return 0;
}

static int validate_keys(json_t *v, json_t *teams, char *err, size_t errlen)
{
	json_t *seen = json_object();
	int rc;

	if (!seen)
		FAIL("keys: out of memory");
	rc = validate_keys_in(v, teams, seen, err, errlen);
	json_decref(seen);
	return rc;
}

static int validate_org(json_t *v, char *err, size_t errlen)
{
	static const char *const fields[] = {"spend_cap_usd", "period", "warning_threshold_usd", "alert_at",
					     "alert_projected", NULL};
	struct lc_alert_spec spec;
	struct lc_limit l;
	enum lc_window w;
	int64_t cap = -1, warn = -1;
	json_t *x;

	if (!v)
		return 0;
	if (!json_is_object(v))
		FAIL("org: must be an object");
	if (only_fields(v, "org", fields, err, errlen))
		return -1;
	x = json_object_get(v, "spend_cap_usd");
	if (x && want_usd(x, "org.spend_cap_usd", true, &cap, err, errlen))
		return -1;
	x = json_object_get(v, "period");
	if (x && (!json_is_string(x) || lc_window_parse(json_string_value(x), &w) || w < LC_WIN_DAILY))
		FAIL("org.period: must be one of daily, weekly, monthly, lifetime");
	x = json_object_get(v, "warning_threshold_usd");
	if (x && want_usd(x, "org.warning_threshold_usd", true, &warn, err, errlen))
		return -1;
	if (lc_alert_spec_parse(v, "org", LC_METRIC_COST, cap >= 0 ? NULL : "org.spend_cap_usd", &spec, err, errlen))
		return -1;
	if (lc_alert_spec_levels(&spec, cap, warn, &l) > LC_MAX_ALERT_LEVELS)
		FAIL("org.alert_at: at most %d alert levels, warning_threshold_usd included", LC_MAX_ALERT_LEVELS);
	return 0;
}

/* a monthly budget and its alert levels: the customers' defaults, or one customer's override */
static int validate_budget(json_t *obj, const char *path, char *err, size_t errlen)
{
	struct lc_alert_spec spec;
	char q[300];
	int64_t t = -1;
	json_t *x;

	x = json_object_get(obj, "monthly_budget_usd");
	snprintf(q, sizeof(q), "%s%smonthly_budget_usd", path, *path ? "." : "");
	if (x && want_usd(x, q, true, &t, err, errlen))
		return -1;
	/* percentages are of the budget that applies to each customer (an override's, else the
	 * defaults'): a customer without one has no budget rule, and no alerts */
	if (lc_alert_spec_parse(obj, path, LC_METRIC_COST, NULL, &spec, err, errlen))
		return -1;
	x = json_object_get(obj, "rate_limit_rpm");
	snprintf(q, sizeof(q), "%s%srate_limit_rpm", path, *path ? "." : "");
	if (x && want_count(x, q, true, &t, err, errlen))
		return -1;
	if (x && t > 100000)
		FAIL("%s: at most 100000", q);
	return 0;
}

static int validate_customers(json_t *v, char *err, size_t errlen)
{
	static const char *const fields[] = {"identify",	"monthly_budget_usd", "rate_limit_rpm", "overrides",
					     "alert_at", "alert_projected", NULL};
	static const char *const ofields[] = {"monthly_budget_usd", "rate_limit_rpm", "alert_at", "alert_projected",
					      NULL};
	char p[256];
	size_t i;
	const char *id;
	json_t *x, *o;

	if (!v)
		return 0;
	if (!json_is_object(v))
		FAIL("customers: must be an object");
	if (only_fields(v, "customers", fields, err, errlen))
		return -1;
	x = json_object_get(v, "identify");
	if (x) {
		if (!json_is_array(x) || json_array_size(x) > 8)
			FAIL("customers.identify: must be an array of at most 8 identifiers");
		json_array_foreach(x, i, o) {
			const char *s = json_string_value(o);

			if (!s || strlen(s) > 120 ||
			    !((!strncmp(s, "header:", 7) && s[7]) || (!strncmp(s, "body:", 5) && s[5])))
				FAIL("customers.identify[%zu]: must be \"header:NAME\" or \"body:FIELD[.FIELD...]\"", i);
		}
	}
	if (validate_budget(v, "customers", err, errlen))
		return -1;
	x = json_object_get(v, "overrides");
	if (x) {
		if (!json_is_object(x))
			FAIL("customers.overrides: must be an object of customer id -> override");
		json_object_foreach(x, id, o) {
			snprintf(p, sizeof(p), "customers.overrides.%s", id);
			if (strlen(id) == 0 || strlen(id) > 127)
				FAIL("%s: customer ids must be 1 to 127 bytes", p);
			if (!json_is_object(o))
				FAIL("%s: must be an object", p);
			if (only_fields(o, p, ofields, err, errlen) || validate_budget(o, p, err, errlen))
				return -1;
		}
	}
	return 0;
}

static int validate_notifications(json_t *v, char *err, size_t errlen)
{
	static const char *const fields[] = {"webhooks", NULL};
	static const char *const wfields[] = {"url", "secret", "events", "format", NULL};
	enum lc_webhook_format fmt;
	char p[256];
	size_t i, j;
	json_t *w, *x, *e, *ev;

	if (!v)
		return 0;
	if (!json_is_object(v))
		FAIL("notifications: must be an object");
	if (only_fields(v, "notifications", fields, err, errlen))
		return -1;
	x = json_object_get(v, "webhooks");
	if (!x)
		return 0;
	if (!json_is_array(x))
		FAIL("notifications.webhooks: must be an array");
	json_array_foreach(x, i, w) {
		snprintf(p, sizeof(p), "notifications.webhooks[%zu]", i);
		if (!json_is_object(w))
			FAIL("%s: must be an object", p);
		if (only_fields(w, p, wfields, err, errlen))
			return -1;
		e = json_object_get(w, "url");
		if (!json_is_string(e) || (strncmp(json_string_value(e), "http://", 7) &&
					   strncmp(json_string_value(e), "https://", 8)))
			FAIL("%s.url: must be an http:// or https:// URL", p);
		e = json_object_get(w, "secret");
		if (!json_is_string(e) || !*json_string_value(e))
			FAIL("%s.secret: must be a non-empty string", p);
		e = json_object_get(w, "format");
		if (e && lc_webhook_format_parse(json_string_value(e), &fmt) != 0)
			FAIL("%s.format: must be one of generic, slack, teams", p);
		e = json_object_get(w, "events");
		if (e) {
			if (!json_is_array(e))
				FAIL("%s.events: must be an array of event names", p);
			json_array_foreach(e, j, ev) {
				if (!lc_event_name_known(json_string_value(ev)))  /* the event table: rules.c */
					FAIL("%s.events[%zu]: unknown event", p, j);
			}
		}
	}
	return 0;
}

int lc_policy_validate(json_t *root, struct lc_policy *hdr, char *err, size_t errlen)
{
	static const char *const fields[] = {"schema", "version", "issued_at", "expires_at", "providers", "prices",
					     "price_book", "unknown_keys", "unknown_models", "web_search_max_uses",
					     "web_search_unbounded", "org", "teams", "keys", "customers", "notifications", "leases",
					     NULL};
	json_t *v;
	bool b;

	if (!json_is_object(root))
		FAIL("policy: must be a JSON object");
	if (only_fields(root, "", fields, err, errlen))
		return -1;
	v = json_object_get(root, "schema");
	if (!v)
		FAIL("schema: is required");
	if (!json_is_integer(v) || json_integer_value(v) != 1)
		FAIL("schema: must be 1 (this llmcap reads schema 1)");
	hdr->schema = 1;
	v = json_object_get(root, "version");
	if (!v)
		FAIL("version: is required");
	if (!json_is_integer(v) || json_integer_value(v) < 1)
		FAIL("version: must be a positive integer");
	hdr->version = json_integer_value(v);
	if (!json_object_get(root, "issued_at"))
		FAIL("issued_at: is required");
	if (want_time(json_object_get(root, "issued_at"), "issued_at", &hdr->issued_at, err, errlen))
		return -1;
	if (!json_object_get(root, "expires_at"))
		FAIL("expires_at: is required");
	if (want_time(json_object_get(root, "expires_at"), "expires_at", &hdr->expires_at, err, errlen))
		return -1;
	if (hdr->expires_at <= hdr->issued_at)
		FAIL("expires_at: must be after issued_at");
	if (validate_providers(json_object_get(root, "providers"), err, errlen))
		return -1;
	if (validate_prices(json_object_get(root, "prices"), err, errlen))
		return -1;
	v = json_object_get(root, "price_book");
	if (v && want_choice(v, "price_book", "none", "builtin", &b, err, errlen))
		return -1;
	v = json_object_get(root, "unknown_keys");
	if (v && want_choice(v, "unknown_keys", "allow", "block", &b, err, errlen))
		return -1;
	v = json_object_get(root, "unknown_models");
	if (v && want_choice(v, "unknown_models", "allow", "block", &b, err, errlen))
		return -1;
	v = json_object_get(root, "web_search_max_uses");
	if (v && (!json_is_integer(v) || json_integer_value(v) < 1 || json_integer_value(v) > LC_WEB_MAX_USES_MAX))
		FAIL("web_search_max_uses: must be an integer from 1 to %d (searches reserved for a request that sets no "
		     "bound)", LC_WEB_MAX_USES_MAX);
	v = json_object_get(root, "web_search_unbounded");
	if (v && want_choice(v, "web_search_unbounded", "allow", "block", &b, err, errlen))
		return -1;
	v = json_object_get(root, "leases");
	if (v && !json_is_boolean(v))
		FAIL("leases: must be true or false");
	if (validate_org(json_object_get(root, "org"), err, errlen) ||
	    validate_teams(json_object_get(root, "teams"), err, errlen) ||
	    validate_keys(json_object_get(root, "keys"), json_object_get(root, "teams"), err, errlen) ||
	    validate_customers(json_object_get(root, "customers"), err, errlen) ||
	    validate_notifications(json_object_get(root, "notifications"), err, errlen))
		return -1;
	return 0;
}

int lc_policy_parse(const void *json, size_t len, struct lc_policy **out, char *err, size_t errlen)
{
	json_error_t je;
	struct lc_policy *p;
	json_t *root;

	root = json_loadb(json, len, JSON_REJECT_DUPLICATES, &je);
	if (!root && json_error_code(&je) == json_error_duplicate_key)
		FAIL("policy: duplicate key (line %d, column %d: %s)", je.line, je.column, je.text);
	if (!root)
		FAIL("policy: not valid JSON (line %d, column %d: %s)", je.line, je.column, je.text);
	p = calloc(1, sizeof(*p));
	if (!p) {
		json_decref(root);
		FAIL("policy: out of memory");
	}
	if (lc_policy_validate(root, p, err, errlen)) {
		json_decref(root);
		free(p);
		return -1;
	}
	p->root = root;
	*out = p;
	return 0;
}

void lc_policy_free(struct lc_policy *p)
{
	if (!p)
		return;
	json_decref(p->root);
	free(p);
}
