/* report.c - `llmcap status` (every limit, in $COLUMNS) and `llmcap usage` (spend per group). */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli.h"
#include "engine.h"
#include "rules.h"
#include "util.h"

int lc_cmd_status(int argc, char **argv);
int lc_cmd_usage(int argc, char **argv);

/* $COLUMNS, else 80; at least 60 */
static int columns(void)
{
	const char *c = getenv("COLUMNS");
	long n = c && *c ? strtol(c, NULL, 10) : 80;

	return n < 60 ? 60 : n > 1000 ? 1000 : (int)n;
}

/* s in at most w characters: a longer one keeps its head and tail around a '~' */
static void fit(const char *s, int w, char *out, size_t n)
{
	int len = (int)strlen(s);

	if (len <= w || w < 3) {
		snprintf(out, n, "%.*s", w, s);
		return;
	}
	snprintf(out, n, "%.*s~%s", w - 1 - (w - 1) / 3, s, s + len - (w - 1) / 3);
}

/* an amount in at most 8 characters: $0.0025, $50.00, $1234.56, $12.3k, 10000, 2.0M */
/* the ALERT column: the next alert level to fire (the lowest above what is used), or the highest
 * once all have fired; a limit with one level shows it */
static json_t *next_alert(json_t *l)
{
	json_t *levels = json_object_get(l, "alert_levels"), *v;
	double used = json_number_value(json_object_get(l, "used"));
	size_t i;

	json_array_foreach(levels, i, v)
		if (json_number_value(v) > used || i + 1 == json_array_size(levels))
			return v;
	return json_object_get(l, "alert_at");
}

static void amount8(json_t *v, const char *metric, char out[16])
{
	double x = json_number_value(v);
	bool cost = !strcmp(metric, "cost");
	const char *cur = cost ? "$" : "";

	if (!v || json_is_null(v)) {
		snprintf(out, 16, "-");
		return;
	}
	if (cost && x < 10000) {
		char m[40];

		lc_micro_format((int64_t)llround(x * 1e6), m);
		if (strlen(m) <= 8) {
			snprintf(out, 16, "%s", m);
			return;
		}
		snprintf(out, 16, "$%.4g", x);
		return;
	}
	if (!cost && x < 1e7) {
		snprintf(out, 16, "%.0f", x);
		return;
	}
	if (x < 1e6)
		snprintf(out, 16, "%s%.1fk", cur, x / 1e3);
	else if (x < 1e9)
		snprintf(out, 16, "%s%.1fM", cur, x / 1e6);
	else
		snprintf(out, 16, "%s%.1fG", cur, x / 1e9);
}

static const char *short_scope(const char *s)
{
	return !strcmp(s, "customer") ? "cust" : s;
}

static void limit_label(json_t *l, char out[16])
{
	enum lc_window w;
	const char *m = json_string_value(json_object_get(l, "metric"));

	if (json_is_true(json_object_get(l, "sliding"))) {
		snprintf(out, 16, "rpm");
		return;
	}
	if (lc_window_parse(json_string_value(json_object_get(l, "window")), &w))
		w = LC_WIN_LIFETIME;
	snprintf(out, 16, "%s/%s", !strcmp(m, "requests") ? "req" : !strcmp(m, "tokens") ? "tok" : m,
		 w == LC_WIN_LIFETIME ? "life" : lc_window_short_name(w));
}

static void print_status(json_t *st, int cols)
{
	json_t *pol = json_object_get(st, "policy"), *l, *k;
	int idw = cols - 70;
	char line[1200];
	size_t i;

	if (idw < 6)
		idw = 6;
	if (idw > 64)
		idw = 64;
	snprintf(line, sizeof(line), "policy version %" JSON_INTEGER_FORMAT ", expires %s%s",
		 json_integer_value(json_object_get(pol, "version")), json_string_value(json_object_get(pol, "expires_at")),
		 json_is_true(json_object_get(pol, "expired")) ? " (EXPIRED: still enforced)" : "");
	printf("%.*s\n", cols, line);
	printf("%-5s %-*s %-9s %8s %8s %8s %8s %-11s %s\n", "SCOPE", idw, "ID", "LIMIT", "USED", "RESERVED", "MAX",
	       "ALERT", "RESETS", "NOTE");
	json_array_foreach(json_object_get(st, "limits"), i, l) {
		const char *metric = json_string_value(json_object_get(l, "metric"));
		const char *resets = json_string_value(json_object_get(l, "resets_at"));
		char id[64], lab[16], u[16], r[16], t[16], a[16], rs[16];

		fit(json_string_value(json_object_get(l, "id")), idw, id, sizeof(id));
		limit_label(l, lab);
		amount8(json_object_get(l, "used"), metric, u);
		amount8(json_object_get(l, "reserved"), metric, r);
		amount8(json_object_get(l, "threshold"), metric, t);
		amount8(next_alert(l), metric, a);
		/* "2026-12-01T00:00:00Z" -> "12-01 00:00" */
		if (resets && strlen(resets) >= 16)
			snprintf(rs, sizeof(rs), "%.5s %.5s", resets + 5, resets + 11);
		else if (!strcmp(json_string_value(json_object_get(l, "scope")), "run"))
			snprintf(rs, sizeof(rs), "end of run");   /* llmcap run --budget/--max-requests */
		else
			snprintf(rs, sizeof(rs), "never");
		printf("%-5s %-*s %-9s %8s %8s %8s %8s %-11s %s\n",
		       short_scope(json_string_value(json_object_get(l, "scope"))), idw, id, lab, u, r, t, a, rs,
		       json_is_false(json_object_get(l, "enabled")) ? "off"
		       : !strcmp(json_string_value(json_object_get(l, "action")), "warn") ? "warn"
											: "");
	}
	/* keys that refuse every request */
	json_array_foreach(json_object_get(st, "keys"), i, k) {
		const char *state = json_string_value(json_object_get(k, "state"));
		const char *exp = json_string_value(json_object_get(k, "expires_at"));
		char id[64];

		if (!state || !strcmp(state, "active"))
			continue;
		fit(json_string_value(json_object_get(k, "id")), idw, id, sizeof(id));
		snprintf(line, sizeof(line), "key   %-*s %s%s%s", idw, id, state, exp && !strcmp(state, "expired") ? " at " : "",
			 exp && !strcmp(state, "expired") ? exp : "");
		printf("%.*s\n", cols, line);
	}
}

int lc_cmd_status(int argc, char **argv)
{
	bool as_json = false;
	json_t *st = NULL;
	char dir[4096];
	struct stat sb;
	int rc;

	if (lc_cli_help(argc, argv,
		"usage: llmcap status [--json]\n"
		"Every limit of the installed policy, sorted by scope then id: used, reserved (in flight),\n"
		"threshold (MAX), the next alert level (ALERT), reset time; customers' rpm; the caps of runs of\n"
		"`llmcap run --budget/--max-requests` while they run; revoked and expired keys.\n"
		"The table fits $COLUMNS (default 80; long ids are shortened with '~').\n"
		"--json prints {\"policy\": {...}, \"limits\": [...], \"keys\": [...]} for scripts.\n"))
		return 0;
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--json"))
			as_json = true;
		else
			return lc_cli_fail("llmcap", "status: unexpected argument '%s'", argv[i]);
	}
	if (lc_state_dir(dir, sizeof(dir)))
		return lc_cli_fail("llmcap", "status: no state directory (set LLMCAP_STATE_DIR, or HOME)");
	if (stat(dir, &sb) == 0 && !S_ISDIR(sb.st_mode))
		return lc_cli_fail("llmcap", "status: the state directory %s is not a directory%s", dir,
			    getenv("LLMCAP_STATE_DIR") && *getenv("LLMCAP_STATE_DIR") ? " (LLMCAP_STATE_DIR)" : "");
	lc_reclaim(NULL);
	rc = lc_status_json(&st);
	if (rc == LC_E_NOPOLICY || rc == LC_E_NOSTATE)
		return lc_cli_fail("llmcap", "status: no policy installed in %s (llmcap apply --trust PUBFILE POLICY.signed)", dir);
	if (rc)
		return lc_cli_fail("llmcap", "status: %s", lc_strerror(rc));
	if (as_json) {
		json_dumpf(st, stdout, JSON_INDENT(2) | JSON_REAL_PRECISION(10));
		fputc('\n', stdout);
	} else {
		print_status(st, columns());
	}
	json_decref(st);
	return 0;
}

int lc_cmd_usage(int argc, char **argv)
{
	const char *by = NULL, *win = "day";
	bool as_json = false;
	enum lc_window w;
	json_t *rep = NULL, *row;
	int scope, rc, cols = columns(), idw;
	size_t i;

	if (lc_cli_help(argc, argv,
		"usage: llmcap usage --by key|team|model|customer|provider|org\n"
		"                    [--window minute|hour|day|week|month|lifetime] [--json]\n"
		"What every key (team, model, ...) used in the current window (default: day), from the\n"
		"ledger: no limit is needed for a row to appear. Unknown keys show as sha256:PREFIX.\n"
		"Rows by cost, descending. --json prints {\"by\", \"window\", \"window_start\", \"rows\":\n"
		"[{\"id\", \"requests\", \"input_tokens\", \"cached_input_tokens\", \"output_tokens\", \"cost\"}]}.\n"))
		return 0;
	for (int i2 = 1; i2 < argc; i2++) {
		if (!strcmp(argv[i2], "--json"))
			as_json = true;
		else if (!strcmp(argv[i2], "--by") && i2 + 1 < argc)
			by = argv[++i2];
		else if (!strcmp(argv[i2], "--window") && i2 + 1 < argc)
			win = argv[++i2];
		else
			return lc_cli_fail("llmcap", "usage: unexpected argument '%s' (see llmcap usage --help)", argv[i2]);
	}
	if (!by)
		return lc_cli_fail("llmcap", "usage: --by key|team|model|customer|provider|org is required");
	if ((scope = lc_scope_parse(by)) < 0)
		return lc_cli_fail("llmcap", "usage: --by: '%s' is not one of key, team, model, customer, provider, org", by);
	if (lc_window_parse_any(win, &w))
		return lc_cli_fail("llmcap", "usage: --window: '%s' is not one of minute, hour, day, week, month, lifetime", win);
	rc = lc_usage_report(scope, w, &rep);
	if (rc == LC_E_NOPOLICY)
		return lc_cli_fail("llmcap", "usage: no policy installed (llmcap apply --trust PUBFILE POLICY.signed)");
	if (rc)
		return lc_cli_fail("llmcap", "usage: %s", lc_strerror(rc));
	if (as_json) {
		json_dumpf(rep, stdout, JSON_INDENT(2) | JSON_REAL_PRECISION(10));
		fputc('\n', stdout);
		json_decref(rep);
		return 0;
	}
	idw = cols - 56;
	if (idw > 60)
		idw = 60;
	printf("%s by %s since %s\n", json_string_value(json_object_get(rep, "window")), by,
	       json_string_value(json_object_get(rep, "window_start")));
	printf("%-*s %9s %10s %10s %10s %12s\n", idw, by[0] == 'k' ? "KEY" : "ID", "REQUESTS", "INPUT", "CACHED", "OUTPUT",
	       "COST");
	json_array_foreach(json_object_get(rep, "rows"), i, row) {
		char id[80], m[40];

		fit(json_string_value(json_object_get(row, "id")), idw, id, sizeof(id));
		lc_micro_format((int64_t)llround(json_real_value(json_object_get(row, "cost")) * 1e6), m);
		printf("%-*s %9" JSON_INTEGER_FORMAT " %10" JSON_INTEGER_FORMAT " %10" JSON_INTEGER_FORMAT
		       " %10" JSON_INTEGER_FORMAT " %12s\n",
		       idw, id, json_integer_value(json_object_get(row, "requests")),
		       json_integer_value(json_object_get(row, "input_tokens")),
		       json_integer_value(json_object_get(row, "cached_input_tokens")),
		       json_integer_value(json_object_get(row, "output_tokens")), m);
	}
	json_decref(rep);
	return 0;
}
