/* prom.c - the Prometheus text exposition format (version 0.0.4): families, samples with
 * escaped labels, and the limits of a status/usage JSON as gauges. Used by llmcap-server's
 * /metrics and by `llmcap agent --metrics`.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "prom.h"
#include "util.h"

void lc_prom_family(struct lc_buf *b, const char *name, const char *type, const char *help)
{
	lc_buf_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* a label value: backslash, double quote and newline escaped */
static void label_value(struct lc_buf *b, const char *v)
{
	for (; *v; v++) {
		if (*v == '\\' || *v == '"')
			lc_buf_printf(b, "\\%c", *v);
		else if (*v == '\n')
			lc_buf_addstr(b, "\\n");
		else
			lc_buf_add(b, v, 1);
	}
}

/* name{k="v",...} value; labels is NULL-terminated pairs */
void lc_prom_sample(struct lc_buf *b, const char *name, const char *const *labels, double v)
{
	lc_buf_addstr(b, name);
	if (labels && labels[0]) {
		lc_buf_addstr(b, "{");
		for (const char *const *l = labels; l[0]; l += 2) {
			lc_buf_printf(b, "%s%s=\"", l == labels ? "" : ",", l[0]);
			label_value(b, l[1] ? l[1] : "");
			lc_buf_addstr(b, "\"");
		}
		lc_buf_addstr(b, "}");
	}
	if (isnan(v))
		lc_buf_addstr(b, " NaN\n");
	else if (v == floor(v) && fabs(v) < 1e15)
		lc_buf_printf(b, " %.0f\n", v);
	else
		lc_buf_printf(b, " %.17g\n", v);
}

static const char *unit_of(const char *metric)
{
	return !strcmp(metric, "cost") ? "usd" : !strcmp(metric, "tokens") ? "tokens" : "requests";
}

static void limit_name(json_t *l, char *out, size_t n)
{
	snprintf(out, n, "%s:%s:%s:%s", json_string_value(json_object_get(l, "scope")),
		 json_string_value(json_object_get(l, "id")), json_string_value(json_object_get(l, "metric")),
		 json_string_value(json_object_get(l, "window")));
}

/* one family per (what, unit) over every limit whose metric has that unit */
static void limit_family(struct lc_buf *b, json_t *limits, const char *what, const char *field, const char *help)
{
	static const char *const units[] = {"usd", "requests", "tokens"};
	for (size_t u = 0; u < 3; u++) {
		char name[96];
		size_t i;
		json_t *l;
		bool header = false;
		snprintf(name, sizeof name, "llmcap_limit_%s_%s", what, units[u]);
		json_array_foreach(limits, i, l) {
			const char *metric = json_string_value(json_object_get(l, "metric"));
			json_t *v = json_object_get(l, field);
			if (!metric || strcmp(unit_of(metric), units[u]) || !json_is_number(v))
				continue;
			if (!header) {
				char h[256];
				snprintf(h, sizeof h, "%s, in %s.", help,
					 !strcmp(units[u], "usd") ? "US dollars" : units[u]);
				lc_prom_family(b, name, "gauge", h);
				header = true;
			}
			char lname[400];
			limit_name(l, lname, sizeof lname);
			const char *labels[] = {"limit", lname, "scope", json_string_value(json_object_get(l, "scope")),
						"id", json_string_value(json_object_get(l, "id")), "window",
						json_string_value(json_object_get(l, "window")), NULL, NULL, NULL};
			if (strcmp(field, "alert_at")) {
				lc_prom_sample(b, name, labels, json_number_value(v));
				continue;
			}
			/* every alert level, level="1" the lowest ("alert_levels" when there are several) */
			json_t *levels = json_object_get(l, "alert_levels"), *one = json_pack("[O]", v), *a;
			size_t k;
			json_array_foreach(json_is_array(levels) ? levels : one, k, a) {
				char ord[8];
				snprintf(ord, sizeof ord, "%zu", k + 1);
				labels[8] = "level";
				labels[9] = ord;
				if (json_is_number(a))
					lc_prom_sample(b, name, labels, json_number_value(a));
			}
			json_decref(one);
		}
	}
}

void lc_prom_limits(struct lc_buf *b, json_t *limits, bool with_reserved)
{
	size_t i;
	json_t *l;
	limit_family(b, limits, "used", "used", "Usage counted against the limit in its current window");
	if (with_reserved)
		limit_family(b, limits, "reserved", "reserved", "Worst-case cost of requests in flight (reserved)");
	limit_family(b, limits, "threshold", "threshold", "The limit's threshold");
	limit_family(b, limits, "alert_threshold", "alert_at",
		     "Each of the limit's alert levels (alert_at; the org's warning threshold), level 1 the lowest");
	lc_prom_family(b, "llmcap_limit_reset_timestamp_seconds", "gauge",
		       "When the limit's current window ends (Unix time); absent for lifetime windows.");
	json_array_foreach(limits, i, l) {
		int64_t t;
		char name[400];
		const char *r = json_string_value(json_object_get(l, "resets_at"));
		if (!r || lc_time_parse(r, &t) != 0)
			continue;
		limit_name(l, name, sizeof name);
		const char *labels[] = {"limit", name, NULL};
		lc_prom_sample(b, "llmcap_limit_reset_timestamp_seconds", labels, (double)t);
	}
	lc_prom_family(b, "llmcap_limit_enabled", "gauge", "1 when the limit is on, 0 when it is toggled off.");
	json_array_foreach(limits, i, l) {
		char name[400];
		limit_name(l, name, sizeof name);
		const char *labels[] = {"limit", name, "action", json_string_value(json_object_get(l, "action")), NULL};
		lc_prom_sample(b, "llmcap_limit_enabled", labels, json_is_false(json_object_get(l, "enabled")) ? 0 : 1);
	}
}

