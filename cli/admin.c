/* admin.c - `llmcap admin`: the llmcap-server admin API from the command line.
 *
 *   llmcap admin [--server URL] [--token-file FILE] [--json] RESOURCE [ACTION] [ARGS]
 *
 * Each command is one admin call (see docs/server.md): a table by default, the server's JSON
 * with --json. A refused call prints the server's error on one line and exits 1.
 */
#include <ctype.h>
#include <curl/curl.h>
#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "util.h"

int lc_cmd_admin(int argc, char **argv);

#define ADMIN_ANSWER_MAX (64 * 1024 * 1024)
#define ADMIN_TOKEN_MAX 4096
#define ADMIN_DEFAULT_SERVER "http://127.0.0.1:8787"

struct admin {
	const char *server;
	char token[ADMIN_TOKEN_MAX];
	bool json;
};

static void admin_usage(FILE *f)
{
	fprintf(f,
		"usage: llmcap admin [--server URL] [--token-file FILE] [--json] RESOURCE [ACTION] [ARGS]\n"
		"\n"
		"  keys [list] | keys get ID | keys revoke ID\n"
		"  keys create ID --sha256 HEX [--team T] [--limit SPEC]... [--expires-at TIME]\n"
		"  keys update ID [--sha256 HEX] [--team T|none] [--limit SPEC]... [--expires-at TIME|none]\n"
		"  keys enable ID N | keys disable ID N          turn the key's limit N (from 0) on or off\n"
		"  teams [list] | teams get ID | teams set ID --limit SPEC... | teams delete ID\n"
		"  org [get] | org set [--spend-cap USD|none] [--period monthly] [--warning USD] [--alert-at LEVELS]\n"
		"                      [--projected yes|no]\n"
		"  customers [get] | customers defaults [--budget USD] [--rpm N] [--identify WHERE,...] [--alert-at LEVELS]\n"
		"                                       [--projected yes|no]\n"
		"  customers get ID | customers set ID [--budget USD] [--rpm N] [--alert-at LEVELS] [--projected yes|no]\n"
		"  customers delete ID\n"
		"  invites create --limit SPEC... [--team T] [--id KEYID] [--expires-at TIME] [--key-expires-at TIME]\n"
		"  webhooks|emails|providers|prices [get] | ... set FILE.json (- for stdin)\n"
		"  settings [get] | settings set [--unknown-keys allow|block] [--unknown-models allow|block]\n"
		"                                [--lifetime-days N]\n"
		"  hosts | hosts enroll [--expires-in S] [--label TEXT] | hosts get ID | hosts delete ID\n"
		"  usage [--by key|team|model|customer|provider] [--window W] | audit | policy\n"
		"  call METHOD PATH [JSON|@FILE]                 any other admin call, answer printed as JSON\n"
		"\n"
		"Every create/set/update also takes --body JSON|@FILE: the request body, which the flags extend.\n"
		"SPEC is METRIC:WINDOW:THRESHOLD[:warn][:alert=N[,N...]][:projected][:off], e.g. cost:daily:20,\n"
		"requests:daily:10000:alert=8000 or cost:monthly:50:alert=50%%,80%%,95%%:projected (cost in USD;\n"
		"a level N is an amount or a percentage of the threshold), or a limit as JSON. LEVELS (the org's\n"
		"spend cap, customers' monthly budget) is the same list, e.g. 50%%,80%%,900, or none.\n"
		"TIME is RFC 3339 UTC, e.g. 2027-01-01T00:00:00Z.\n"
		"\n"
		"--server URL      default $LLMCAP_SERVER, else " ADMIN_DEFAULT_SERVER "\n"
		"--token-file FILE the admin token (else $LLMCAP_ADMIN_TOKEN)\n"
		"--json            print the server's JSON answer instead of a table\n");
}

/* ---- HTTP ---- */

static size_t on_body(char *p, size_t sz, size_t n, void *u)
{
	return lc_buf_add(u, p, sz * n) == 0 ? sz * n : 0;
}

/* One admin call. *out gets the parsed answer (may be NULL if not JSON). Returns the HTTP status,
 * or -1 after printing why there was no answer. */
static long call_q(struct admin *a, const char *method, const char *path, json_t *body, json_t **out, bool quiet)
{
	char url[2048], auth[ADMIN_TOKEN_MAX + 32];
	struct lc_buf ans;
	struct curl_slist *h = NULL;
	char *payload = NULL;
	long status = -1;
	CURL *c = curl_easy_init();

	*out = NULL;
	if (!c)
		return lc_cli_fail("llmcap admin", "curl: out of memory"), -1;
	snprintf(url, sizeof url, "%s%s", a->server, path);
	snprintf(auth, sizeof auth, "Authorization: Bearer %s", a->token);
	h = curl_slist_append(h, auth);
	h = curl_slist_append(h, "Content-Type: application/json");
	lc_buf_init(&ans, ADMIN_ANSWER_MAX);
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
	if (body) {
		payload = json_dumps(body, JSON_COMPACT | JSON_REAL_PRECISION(15));
		curl_easy_setopt(c, CURLOPT_POSTFIELDS, payload ? payload : "");
	}
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, &ans);
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, 10000L);
	curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 60000L);
	curl_easy_setopt(c, CURLOPT_USERAGENT, "llmcap-admin/0.1");
	curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
	CURLcode cc = curl_easy_perform(c);
	if (cc != CURLE_OK) {
		lc_cli_fail("llmcap admin", "cannot reach %s: %s", a->server, curl_easy_strerror(cc));
	} else {
		curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
		if (ans.len)
			*out = json_loadb(ans.data, ans.len, 0, NULL);
		if (status >= 400 && !quiet) {
			json_t *e = json_object_get(*out, "error");
			const char *msg = json_string_value(json_object_get(e, "message"));
			const char *type = json_string_value(json_object_get(e, "type"));
			if (msg)
				lc_cli_fail("llmcap admin", "%s %s: %ld %s: %s", method, path, status, type ? type : "error", msg);
			else
				lc_cli_fail("llmcap admin", "%s %s: HTTP %ld%s%.200s", method, path, status, ans.len ? ": " : "",
					  ans.len ? ans.data : "");
		} else if (ans.len && !*out) {
			lc_cli_fail("llmcap admin", "%s %s: the answer is not JSON (is %s an llmcap-server?)", method, path, a->server);
			status = -1;
		}
	}
	free(payload);
	lc_buf_free(&ans);
	curl_slist_free_all(h);
	curl_easy_cleanup(c);
	return status;
}

static long call(struct admin *a, const char *method, const char *path, json_t *body, json_t **out)
{
	return call_q(a, method, path, body, out, false);
}

/* ---- arguments ---- */

static json_t *load_json_arg(const char *arg, const char *what)
{
	json_error_t je;
	json_t *j;
	if (arg[0] == '@' || strcmp(arg, "-") == 0) {
		const char *file = arg[0] == '@' ? arg + 1 : "/dev/stdin";
		struct lc_buf b;
		char err[512];
		if (lc_read_file(file, ADMIN_ANSWER_MAX, &b, err, sizeof err) != 0) {
			lc_cli_fail("llmcap admin", "%s: %s", what, err);
			return NULL;
		}
		j = json_loadb(b.data ? b.data : "", b.len, JSON_REJECT_DUPLICATES, &je);
		lc_buf_free(&b);
	} else {
		j = json_loads(arg, JSON_REJECT_DUPLICATES, &je);
	}
	if (!j)
		lc_cli_fail("llmcap admin", "%s: not JSON: %s (line %d, column %d)", what, je.text, je.line, je.column);
	return j;
}

static bool number_arg(const char *s, double *out)
{
	char *end;
	errno = 0;
	double d = strtod(s, &end);
	if (!*s || *end || errno || !isfinite(d) || d < 0 || d > 1e15)
		return false;
	*out = d;
	return true;
}

static json_t *number_json(double d)
{
	return d == floor(d) && d < 9e15 ? json_integer((json_int_t)d) : json_real(d);
}

/* alert=N[,N...]: each an amount or "P%"; one level is a value, several an array. NULL: malformed */
static json_t *alert_levels_arg(const char *s)
{
	char buf[256];
	json_t *arr = json_array();
	double d;

	snprintf(buf, sizeof buf, "%s", s);
	for (char *save = NULL, *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
		size_t n = strlen(t);
		if (n > 1 && t[n - 1] == '%') {
			t[n - 1] = 0;
			if (!number_arg(t, &d))
				break;
			t[n - 1] = '%';
			json_array_append_new(arr, json_string(t));
		} else if (number_arg(t, &d)) {
			json_array_append_new(arr, number_json(d));
		} else {
			break;
		}
	}
	size_t want = 1;
	for (const char *c = s; *c; c++)
		want += *c == ',';
	if (json_array_size(arr) != want) {
		json_decref(arr);
		return NULL;
	}
	if (want == 1) {
		json_t *one = json_incref(json_array_get(arr, 0));
		json_decref(arr);
		return one;
	}
	return arr;
}

/* METRIC:WINDOW:THRESHOLD[:warn|:block][:alert=N[,N...]][:projected][:off], or a JSON object */
static json_t *limit_spec(const char *spec)
{
	if (spec[0] == '{')
		return load_json_arg(spec, "--limit");
	char buf[256];
	char *part[8];
	int n = 0;
	double d;
	if (strlen(spec) >= sizeof buf) {
		lc_cli_fail("llmcap admin", "--limit %s: too long", spec);
		return NULL;
	}
	snprintf(buf, sizeof buf, "%s", spec);
	for (char *save = NULL, *t = strtok_r(buf, ":", &save); t && n < 8; t = strtok_r(NULL, ":", &save))
		part[n++] = t;
	if (n < 3 || !number_arg(part[2], &d)) {
		lc_cli_fail("llmcap admin", "--limit %s: expected METRIC:WINDOW:THRESHOLD[:warn][:alert=N[,N...]][:projected][:off], e.g. cost:daily:20",
			  spec);
		return NULL;
	}
	json_t *l = json_pack("{s:s,s:s,s:o}", "metric", part[0], "window", part[1], "threshold", number_json(d));
	json_t *al;
	for (int i = 3; i < n; i++) {
		if (!strcmp(part[i], "warn") || !strcmp(part[i], "block")) {
			json_object_set_new(l, "action", json_string(part[i]));
		} else if (!strcmp(part[i], "off")) {
			json_object_set_new(l, "enabled", json_false());
		} else if (!strcmp(part[i], "projected")) {
			json_object_set_new(l, "alert_projected", json_true());
		} else if (!strncmp(part[i], "alert=", 6) && (al = alert_levels_arg(part[i] + 6))) {
			json_object_set_new(l, "alert_at", al);
		} else {
			lc_cli_fail("llmcap admin", "--limit %s: unknown part '%s' (warn, block, alert=N[,N...], projected or off)", spec,
				  part[i]);
			json_decref(l);
			return NULL;
		}
	}
	return l;
}

/* Flags of create/set/update commands, collected into one body. Each flag names a JSON field and
 * how to read its value. */
enum ftype { F_STR, F_STR_NONE, F_USD_NONE, F_NUM, F_TIME_NONE, F_LIST, F_LEVELS, F_BOOL };
struct flag {
	const char *name;
	const char *field;
	enum ftype type;
};

static const struct flag key_flags[] = {
	{"--sha256", "sha256", F_STR}, {"--team", "team", F_STR_NONE}, {"--expires-at", "expires_at", F_TIME_NONE}, {0}};
static const struct flag org_flags[] = {{"--spend-cap", "spend_cap_usd", F_USD_NONE},
					{"--period", "period", F_STR},
					{"--warning", "warning_threshold_usd", F_USD_NONE},
					{"--alert-at", "alert_at", F_LEVELS},
					{"--projected", "alert_projected", F_BOOL},
					{0}};
static const struct flag cust_flags[] = {{"--budget", "monthly_budget_usd", F_USD_NONE},
					 {"--rpm", "rate_limit_rpm", F_NUM},
					 {"--alert-at", "alert_at", F_LEVELS},
					 {"--projected", "alert_projected", F_BOOL},
					 {0}};
static const struct flag custdef_flags[] = {{"--budget", "monthly_budget_usd", F_USD_NONE},
					    {"--rpm", "rate_limit_rpm", F_NUM},
					    {"--identify", "identify", F_LIST},
					    {"--alert-at", "alert_at", F_LEVELS},
					    {"--projected", "alert_projected", F_BOOL},
					    {0}};
static const struct flag settings_flags[] = {{"--unknown-keys", "unknown_keys", F_STR},
					     {"--unknown-models", "unknown_models", F_STR},
					     {"--lifetime-days", "policy_lifetime_days", F_NUM},
					     {0}};
static const struct flag invite_flags[] = {{"--team", "team", F_STR},
					   {"--id", "id", F_STR},
					   {"--expires-at", "expires_at", F_TIME_NONE},
					   {"--key-expires-at", "key_expires_at", F_TIME_NONE},
					   {0}};
static const struct flag enroll_flags[] = {{"--expires-in", "expires_in_s", F_NUM}, {"--label", "label", F_STR}, {0}};
static const struct flag no_flags[] = {{0}};

static json_t *flag_value(const struct flag *f, const char *v)
{
	double d;
	int64_t t;
	bool none = !strcmp(v, "none") || !strcmp(v, "null");
	switch (f->type) {
	case F_STR:
		return json_string(v);
	case F_STR_NONE:
		return none ? json_null() : json_string(v);
	case F_USD_NONE:
	case F_NUM:
		if (f->type == F_USD_NONE && none)
			return json_null();
		if (!number_arg(v, &d))
			break;
		return number_json(d);
	case F_TIME_NONE:
		if (none)
			return json_null();
		if (lc_time_parse(v, &t) != 0)
			break;
		return json_string(v);
	case F_LIST: {
		json_t *a = json_array();
		char buf[1024];
		snprintf(buf, sizeof buf, "%s", v);
		for (char *save = NULL, *p = strtok_r(buf, ",", &save); p; p = strtok_r(NULL, ",", &save))
			json_array_append_new(a, json_string(p));
		return a;
	}
	case F_LEVELS: {
		json_t *al = none ? json_null() : alert_levels_arg(v);
		if (al)
			return al;
		break;
	}
	case F_BOOL:
		if (!strcmp(v, "yes") || !strcmp(v, "on") || !strcmp(v, "true"))
			return json_true();
		if (!strcmp(v, "no") || !strcmp(v, "off") || !strcmp(v, "false"))
			return json_false();
		break;
	}
	lc_cli_fail("llmcap admin", "%s %s: expected %s", f->name, v,
		  f->type == F_TIME_NONE ? "an RFC 3339 UTC time like 2027-01-01T00:00:00Z (or none)"
		  : f->type == F_LEVELS  ? "alert levels like 50%,80%,900 (amounts or percentages of the threshold; or none)"
		  : f->type == F_BOOL	 ? "yes or no"
					 : "a number at least 0");
	return NULL;
}

/* Parse argv[from..] as --body, --limit and the command's flags into *body. limits: NULL when no
 * --limit was given. Returns 0, or 1 after printing the error. */
static int parse_body_flags(int argc, char **argv, int from, const struct flag *flags, bool takes_limits,
			    json_t **body)
{
	json_t *limits = NULL;
	*body = NULL;
	for (int i = from; i < argc; i++) {
		const char *arg = argv[i];
		const char *val = i + 1 < argc ? argv[i + 1] : NULL;
		const struct flag *f = NULL;
		for (const struct flag *g = flags; g->name; g++)
			if (!strcmp(g->name, arg))
				f = g;
		if (!f && strcmp(arg, "--body") && !(takes_limits && !strcmp(arg, "--limit"))) {
			lc_cli_fail("llmcap admin", "unexpected argument '%s' (see llmcap admin --help)", arg);
			goto fail;
		}
		if (!val) {
			lc_cli_fail("llmcap admin", "%s: a value is required", arg);
			goto fail;
		}
		i++;
		if (!strcmp(arg, "--body")) {
			json_t *b = load_json_arg(val, "--body");
			if (!b)
				goto fail;
			if (!json_is_object(b)) {
				json_decref(b);
				lc_cli_fail("llmcap admin", "--body: must be a JSON object");
				goto fail;
			}
			if (!*body)
				*body = json_object();
			json_object_update_missing(*body, b);
			json_decref(b);
			continue;
		}
		json_t *v = !strcmp(arg, "--limit") ? limit_spec(val) : flag_value(f, val);
		if (!v)
			goto fail;
		if (!*body)
			*body = json_object();
		if (!strcmp(arg, "--limit")) {
			if (!limits)
				limits = json_array();
			json_array_append_new(limits, v);
		} else {
			json_object_set_new(*body, f->field, v);
		}
	}
	if (limits)
		json_object_set_new(*body, "limits", limits);
	return 0;
fail:
	json_decref(limits);
	json_decref(*body);
	*body = NULL;
	return 1;
}

/* ---- output ---- */

static void print_json(json_t *j)
{
	json_dumpf(j, stdout, JSON_INDENT(2) | JSON_REAL_PRECISION(15) | JSON_ENCODE_ANY);
	fputc('\n', stdout);
}

static const char *str(json_t *o, const char *k)
{
	const char *s = json_string_value(json_object_get(o, k));
	return s ? s : "-";
}

/* "$20.00" for cost, "10000" else */
static void amount(json_t *v, const char *metric, char *out, size_t n)
{
	if (!v || json_is_null(v)) {
		snprintf(out, n, "-");
	} else if (metric && !strcmp(metric, "cost")) {
		int64_t micro = 0;
		char b[40];
		lc_usd_to_micro(json_number_value(v), &micro);
		lc_micro_format(micro, b);
		snprintf(out, n, "%s", b);
	} else {
		snprintf(out, n, "%.15g", json_number_value(v));
	}
}

/* "cost/daily $20.00 (alert $16.00, warn, off)" */
static void limit_text(json_t *l, char *out, size_t n)
{
	const char *metric = str(l, "metric");
	char thr[48], al[48];
	amount(json_object_get(l, "threshold"), metric, thr, sizeof thr);
	int k = snprintf(out, n, "%s/%s %s", metric, str(l, "window"), thr);
	json_t *levels = json_object_get(l, "alert_at"), *a;
	size_t i;
	if (levels && !json_is_array(levels))
		levels = json_pack("[O]", levels);
	else
		json_incref(levels);
	json_array_foreach(levels, i, a) {   /* an amount, or a percentage as written */
		if (json_is_string(a))
			snprintf(al, sizeof al, "%s", json_string_value(a));
		else
			amount(a, metric, al, sizeof al);
		if (k > 0 && (size_t)k < n)
			k += snprintf(out + k, n - (size_t)k, "%s%s", i ? "/" : " alert ", al);
	}
	json_decref(levels);
	if (json_is_true(json_object_get(l, "alert_projected")) && k > 0 && (size_t)k < n)
		k += snprintf(out + k, n - (size_t)k, " projected");
	if (!strcmp(str(l, "action"), "warn") && k > 0 && (size_t)k < n)
		k += snprintf(out + k, n - (size_t)k, " warn");
	if (json_is_false(json_object_get(l, "enabled")) && k > 0 && (size_t)k < n)
		snprintf(out + k, n - (size_t)k, " (off)");
}

static void limits_text(json_t *limits, char *out, size_t n)
{
	size_t i, k = 0;
	json_t *l;
	out[0] = 0;
	if (!json_array_size(limits)) {
		snprintf(out, n, "-");
		return;
	}
	json_array_foreach(limits, i, l) {
		char one[160];
		limit_text(l, one, sizeof one);
		int w = snprintf(out + k, n - k, "%s[%zu] %s", i ? "; " : "", i, one);
		if (w < 0 || (size_t)w >= n - k)
			return;
		k += (size_t)w;
	}
}

static void table_objects(json_t *all, bool keys)
{
	const char *id;
	json_t *o;
	char lim[1024];
	if (keys)
		printf("%-20s %-14s %-20s %-8s %s\n", "ID", "TEAM", "EXPIRES", "REVOKED", "LIMITS");
	else
		printf("%-20s %s\n", "ID", "LIMITS");
	json_object_foreach(all, id, o) {
		limits_text(json_object_get(o, "limits"), lim, sizeof lim);
		if (keys)
			printf("%-20s %-14s %-20s %-8s %s\n", id, str(o, "team"), str(o, "expires_at"),
			       json_is_true(json_object_get(o, "revoked")) ? "yes" : "no", lim);
		else
			printf("%-20s %s\n", id, lim);
	}
}

static void print_fields(json_t *o)
{
	const char *k;
	json_t *v;
	json_object_foreach(o, k, v) {
		if (!strcmp(k, "limits") && json_is_array(v)) {
			size_t i;
			json_t *l;
			char one[160];
			printf("%-22s %s\n", "limits", json_array_size(v) ? "" : "-");
			json_array_foreach(v, i, l) {
				limit_text(l, one, sizeof one);
				printf("  [%zu] %s\n", i, one);
			}
			continue;
		}
		char *s = json_is_string(v) ? strdup(json_string_value(v))
					    : json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY | JSON_REAL_PRECISION(15));
		printf("%-22s %s\n", k, s ? s : "?");
		free(s);
	}
}

/* the limits table of GET /v1/usage (also `llmcap status`'s columns) */
static void table_usage(json_t *u)
{
	size_t i;
	json_t *l;
	json_t *pol = json_object_get(u, "policy");
	if (pol)
		printf("policy version %" JSON_INTEGER_FORMAT ", expires %s\n",
		       json_integer_value(json_object_get(pol, "version")), str(pol, "expires_at"));
	printf("%-9s %-16s %-8s %-8s %-14s %-14s %5s  %s\n", "SCOPE", "ID", "METRIC", "WINDOW", "USED", "LIMIT", "USE%",
	       "RESETS");
	json_array_foreach(json_object_get(u, "limits"), i, l) {
		const char *metric = str(l, "metric");
		char used[48], thr[48], pct[16] = "-";
		json_t *t = json_object_get(l, "threshold");
		amount(json_object_get(l, "used"), metric, used, sizeof used);
		amount(t, metric, thr, sizeof thr);
		if (json_number_value(t) > 0)
			snprintf(pct, sizeof pct, "%.0f", 100.0 * json_number_value(json_object_get(l, "used")) /
							  json_number_value(t));
		printf("%-9s %-16s %-8s %-8s %-14s %-14s %5s  %s%s\n", str(l, "scope"), str(l, "id"), metric,
		       str(l, "window"), used, thr, pct, json_is_null(json_object_get(l, "resets_at")) ? "never"
												 : str(l, "resets_at"),
		       json_is_false(json_object_get(l, "enabled")) ? " (off)" : "");
	}
	json_t *org = json_object_get(u, "org");
	if (org) {
		char used[48], cap[48];
		amount(json_object_get(org, "used_usd"), "cost", used, sizeof used);
		amount(json_object_get(org, "spend_cap_usd"), "cost", cap, sizeof cap);
		printf("org spend this %s period: %s of %s\n", str(org, "period"), used,
		       json_is_null(json_object_get(org, "spend_cap_usd")) ? "no cap" : cap);
	}
}

/* GET /v1/usage?by=: {"by", "window", "rows": [{"id", "requests", ..., "cost"}]} */
static void table_rows(json_t *u)
{
	size_t i;
	json_t *r;
	printf("spend by %s, window %s%s%s\n", str(u, "by"), str(u, "window"),
	       json_object_get(u, "window_start") ? " from " : "", json_object_get(u, "window_start") ? str(u, "window_start") : "");
	printf("%-24s %10s %14s %14s %12s\n", "ID", "REQUESTS", "INPUT TOKENS", "OUTPUT TOKENS", "COST");
	json_array_foreach(json_object_get(u, "rows"), i, r) {
		char cost[48];
		amount(json_object_get(r, "cost"), "cost", cost, sizeof cost);
		printf("%-24s %10.0f %14.0f %14.0f %12s\n", str(r, "id"), json_number_value(json_object_get(r, "requests")),
		       json_number_value(json_object_get(r, "input_tokens")),
		       json_number_value(json_object_get(r, "output_tokens")), cost);
	}
}

static void table_hosts(json_t *hosts)
{
	size_t i;
	json_t *h;
	int64_t now = lc_now();
	printf("%-34s %-18s %8s %-20s %10s %-8s %s\n", "HOST", "EPOCH", "SEQ", "LAST REPORT", "AGE", "VERSION", "STATUS");
	json_array_foreach(hosts, i, h) {
		const char *last = json_string_value(json_object_get(h, "last_report_at"));
		int64_t t = 0;
		char age[32] = "-";
		if (last && lc_time_parse(last, &t) == 0)
			snprintf(age, sizeof age, "%" PRId64 "s", now - t > 0 ? now - t : 0);
		printf("%-34s %-18.18s %8" JSON_INTEGER_FORMAT " %-20s %10s %-8s %s\n",
		       json_string_value(json_object_get(h, "host_id")) ? str(h, "host_id") : str(h, "id"), str(h, "epoch"),
		       json_integer_value(json_object_get(h, "seq")), last ? last : "-", age, str(h, "version"),
		       str(h, "status"));
	}
}

static void table_pairs(json_t *o)
{
	if (json_is_object(o) && json_object_size(o))
		print_fields(o);
	else
		printf("(none)\n");
}

/* print an answer: --json, or fn, or its fields */
static int show(struct admin *a, json_t *ans, void (*fn)(json_t *))
{
	if (a->json || !fn)
		print_json(ans);
	else
		fn(ans);
	return 0;
}

/* run one call, print its answer through fn; 0 ok, 1 refused */
static int do_call(struct admin *a, const char *method, const char *path, json_t *body /* stolen */,
		   void (*fn)(json_t *))
{
	json_t *ans;
	long st = call(a, method, path, body, &ans);
	json_decref(body);
	int rc = st >= 200 && st < 300 ? show(a, ans, fn) : 1;
	json_decref(ans);
	return rc;
}

/* ---- resources ---- */

static void show_keys(json_t *ans) { table_objects(json_object_get(ans, "keys"), true); }
static void show_teams(json_t *ans) { table_objects(json_object_get(ans, "teams"), false); }
static void show_customers_all(json_t *ans) { table_pairs(ans); }

static void show_changed(json_t *ans)
{
	print_fields(ans);
}

static void show_invite(json_t *ans)
{
	printf("invite code %s (expires %s)\n", str(ans, "code"), str(ans, "expires_at"));
	printf("redeem: llmcap key fingerprint < KEYFILE, then POST %s {\"sha256\": ...}\n", str(ans, "redeem"));
}

static void show_enroll(json_t *ans)
{
	printf("enrolment code %s (one use, expires %s)\n", str(ans, "code"), str(ans, "expires_at"));
	printf("on the host: llmcap agent enroll --server URL --code %s --trust SERVER.pub\n", str(ans, "code"));
}

static void show_usage(json_t *ans)
{
	if (json_object_get(ans, "rows"))
		table_rows(ans);
	else
		table_usage(ans);
}

static void show_hosts(json_t *ans)
{
	table_hosts(json_is_array(ans) ? ans : json_object_get(ans, "hosts"));
}

static void show_audit(json_t *ans)
{
	size_t i;
	json_t *e, *all = json_is_array(ans) ? ans : json_object_get(ans, "entries");
	if (!all)
		all = json_object_get(ans, "audit");
	printf("%-20s %-14s %-8s %-36s %s\n", "AT", "WHO", "METHOD", "PATH", "STATUS");
	json_array_foreach(all, i, e)
		printf("%-20s %-14s %-8s %-36s %" JSON_INTEGER_FORMAT "\n", str(e, "at"),
		       json_string_value(json_object_get(e, "token")) ? str(e, "token") : str(e, "who"), str(e, "method"),
		       str(e, "path"), json_integer_value(json_object_get(e, "status")));
}

static int need_id(int argc, char **argv, int i, const char *what)
{
	if (i >= argc || argv[i][0] == '-')
		return lc_cli_fail("llmcap admin", "%s: an id is required", what), 0;
	return 1;
}

/* keys and teams and customers: one path per object */
static void obj_path(char *out, size_t n, const char *piece, const char *id)
{
	char *e = curl_easy_escape(NULL, id, 0);
	snprintf(out, n, "/v1/admin/%s/%s", piece, e ? e : id);
	curl_free(e);
}

static int cmd_keys(struct admin *a, int argc, char **argv)
{
	const char *act = argc > 1 ? argv[1] : "list";
	char path[512];
	json_t *body;
	if (!strcmp(act, "list") && argc <= 2)
		return do_call(a, "GET", "/v1/admin/keys", NULL, show_keys);
	if (!need_id(argc, argv, 2, act))
		return 1;
	obj_path(path, sizeof path, "keys", argv[2]);
	if (!strcmp(act, "get") && argc == 3)
		return do_call(a, "GET", path, NULL, print_fields);
	if (!strcmp(act, "revoke") && argc == 3)
		return do_call(a, "DELETE", path, NULL, show_changed);
	if ((!strcmp(act, "enable") || !strcmp(act, "disable")) && argc == 4) {
		char *end;
		long n = strtol(argv[3], &end, 10);
		if (*end || n < 0 || n > 1000)
			return lc_cli_fail("llmcap admin", "keys %s ID N: N is the limit's index (0, 1, ...), not '%s'", act, argv[3]);
		body = json_pack("{s:{s:{s:b}}}", "limits", argv[3], "enabled", !strcmp(act, "enable"));
		return do_call(a, "PATCH", path, body, show_changed);
	}
	if (!strcmp(act, "create") || !strcmp(act, "update")) {
		if (parse_body_flags(argc, argv, 3, key_flags, true, &body))
			return 1;
		if (!strcmp(act, "update")) {
			if (!body)
				return lc_cli_fail("llmcap admin", "keys update: nothing to change (see llmcap admin --help)");
			return do_call(a, "PATCH", path, body, show_changed);
		}
		if (!body)
			body = json_object();
		json_object_set_new(body, "id", json_string(argv[2]));
		return do_call(a, "POST", "/v1/admin/keys", body, show_changed);
	}
	return lc_cli_fail("llmcap admin", "keys: unknown action or arguments '%s' (list, get, create, update, enable, disable, revoke)",
			 act);
}

static int cmd_teams(struct admin *a, int argc, char **argv)
{
	const char *act = argc > 1 ? argv[1] : "list";
	char path[512];
	json_t *body;
	if (!strcmp(act, "list") && argc <= 2)
		return do_call(a, "GET", "/v1/admin/teams", NULL, show_teams);
	if (!need_id(argc, argv, 2, act))
		return 1;
	obj_path(path, sizeof path, "teams", argv[2]);
	if (!strcmp(act, "get") && argc == 3)
		return do_call(a, "GET", path, NULL, print_fields);
	if (!strcmp(act, "delete") && argc == 3)
		return do_call(a, "DELETE", path, NULL, show_changed);
	if (!strcmp(act, "set")) {
		if (parse_body_flags(argc, argv, 3, no_flags, true, &body))
			return 1;
		if (!body)
			body = json_pack("{s:[]}", "limits");
		return do_call(a, "PUT", path, body, show_changed);
	}
	return lc_cli_fail("llmcap admin", "teams: unknown action or arguments '%s' (list, get, set, delete)", act);
}

static int put_keeping(struct admin *a, const char *path, json_t *body, const char *skip);

static int cmd_customers(struct admin *a, int argc, char **argv)
{
	const char *act = argc > 1 ? argv[1] : "get";
	char path[512];
	json_t *body;
	if ((!strcmp(act, "get") || !strcmp(act, "list")) && argc <= 2)
		return do_call(a, "GET", "/v1/admin/customers", NULL, show_customers_all);
	if (!strcmp(act, "defaults")) {
		if (parse_body_flags(argc, argv, 2, custdef_flags, false, &body))
			return 1;
		/* the overrides are set one customer at a time */
		return put_keeping(a, "/v1/admin/customers", body ? body : json_object(), "overrides");
	}
	if (!need_id(argc, argv, 2, act))
		return 1;
	obj_path(path, sizeof path, "customers", argv[2]);
	if (!strcmp(act, "get") && argc == 3)
		return do_call(a, "GET", path, NULL, print_fields);
	if (!strcmp(act, "delete") && argc == 3)
		return do_call(a, "DELETE", path, NULL, show_changed);
	if (!strcmp(act, "set")) {
		if (parse_body_flags(argc, argv, 3, cust_flags, false, &body))
			return 1;
		return do_call(a, "PUT", path, body ? body : json_object(), show_changed);
	}
	return lc_cli_fail("llmcap admin", "customers: unknown action or arguments '%s' (get, defaults, set, delete)", act);
}

/* PUT replaces a piece: send body with the fields the command did not name as they are now (but
 * `skip`, a field the GET answers and the PUT does not take) */
static int put_keeping(struct admin *a, const char *path, json_t *body, const char *skip)
{
	json_t *cur;
	if (call(a, "GET", path, NULL, &cur) != 200) {
		json_decref(body);
		json_decref(cur);
		return 1;
	}
	if (json_is_object(cur)) {
		if (skip)
			json_object_del(cur, skip);
		json_object_update_missing(body, cur);
	}
	json_decref(cur);
	return do_call(a, "PUT", path, body, show_changed);
}

/* org and settings: GET, or PUT of the flags; webhooks/providers/prices: PUT of a file */
static int cmd_piece(struct admin *a, const char *piece, const struct flag *flags, int argc, char **argv)
{
	const char *act = argc > 1 ? argv[1] : "get";
	char path[128];
	json_t *body;
	snprintf(path, sizeof path, "/v1/admin/%s", piece);
	if (!strcmp(act, "get") && argc <= 2)
		return do_call(a, "GET", path, NULL, table_pairs);
	if (strcmp(act, "set"))
		return lc_cli_fail("llmcap admin", "%s: unknown action '%s' (get, set)", piece, act);
	if (!flags) {   /* a whole piece from a file: {"webhooks": [...]} or the array alone */
		if (argc != 3)
			return lc_cli_fail("llmcap admin", "%s set FILE.json: one file (- for stdin)", piece);
		char at[1024];
		snprintf(at, sizeof at, "%s%s", strcmp(argv[2], "-") && argv[2][0] != '@' ? "@" : "", argv[2]);
		body = load_json_arg(at, piece);
		if (!body)
			return 1;
		if (!json_is_object(body) || !json_object_get(body, piece)) {
			json_t *w = json_object();
			json_object_set_new(w, piece, body);
			body = w;
		}
		return do_call(a, "PUT", path, body, print_json);
	}
	if (parse_body_flags(argc, argv, 2, flags, false, &body))
		return 1;
	if (!body)
		return lc_cli_fail("llmcap admin", "%s set: nothing to set (see llmcap admin --help)", piece);
	return put_keeping(a, path, body, NULL);
}

static int cmd_invites(struct admin *a, int argc, char **argv)
{
	json_t *body;
	if (argc < 2 || strcmp(argv[1], "create"))
		return lc_cli_fail("llmcap admin", "invites: the action is create (llmcap admin invites create --limit SPEC ...)");
	if (parse_body_flags(argc, argv, 2, invite_flags, true, &body))
		return 1;
	return do_call(a, "POST", "/v1/admin/invites", body ? body : json_object(), show_invite);
}

static int cmd_usage(struct admin *a, int argc, char **argv)
{
	char path[512] = "/v1/usage";
	size_t k = strlen(path);
	for (int i = 1; i < argc; i++) {
		if ((!strcmp(argv[i], "--by") || !strcmp(argv[i], "--window")) && i + 1 < argc) {
			char *e = curl_easy_escape(NULL, argv[i + 1], 0);
			k += (size_t)snprintf(path + k, sizeof path - k, "%c%s=%s", strchr(path, '?') ? '&' : '?',
					      argv[i] + 2, e ? e : "");
			curl_free(e);
			i++;
			if (k >= sizeof path)
				return lc_cli_fail("llmcap admin", "usage: arguments too long");
		} else {
			return lc_cli_fail("llmcap admin", "usage: unexpected argument '%s' (--by GROUP, --window W)", argv[i]);
		}
	}
	return do_call(a, "GET", path, NULL, show_usage);
}

/* hosts: /v1/admin/hosts when the server has it, else the hosts of /v1/usage */
static int cmd_hosts(struct admin *a, int argc, char **argv)
{
	json_t *ans;
	long st;
	if (argc > 1 && !strcmp(argv[1], "enroll")) {
		json_t *body;
		if (parse_body_flags(argc, argv, 2, enroll_flags, false, &body))
			return 1;
		return do_call(a, "POST", "/v1/admin/hosts/enroll", body ? body : json_object(), show_enroll);
	}
	if (argc == 3 && (!strcmp(argv[1], "get") || !strcmp(argv[1], "delete"))) {
		char path[512];
		obj_path(path, sizeof path, "hosts", argv[2]);
		return do_call(a, !strcmp(argv[1], "get") ? "GET" : "DELETE", path, NULL, print_fields);
	}
	if (argc > 1)
		return lc_cli_fail("llmcap admin", "hosts: unexpected argument '%s' (hosts, hosts enroll [--expires-in S] [--label TEXT], "
				 "hosts get ID, hosts delete ID)", argv[1]);
	/* a 404 here only means a server without host enrollment: ask /v1/usage */
	st = call_q(a, "GET", "/v1/admin/hosts", NULL, &ans, true);
	if (st == 404 || st == 405) {
		json_decref(ans);
		return do_call(a, "GET", "/v1/usage", NULL, show_hosts);
	}
	if (st < 200 || st >= 300) {
		json_decref(ans);
		return do_call(a, "GET", "/v1/admin/hosts", NULL, show_hosts);   /* prints the error */
	}
	if (a->json)
		print_json(ans);
	else
		show_hosts(ans);
	json_decref(ans);
	return 0;
}

static int cmd_call(struct admin *a, int argc, char **argv)
{
	json_t *body = NULL;
	if (argc < 3 || argc > 4)
		return lc_cli_fail("llmcap admin", "call METHOD PATH [JSON|@FILE]");
	if (argv[2][0] != '/')
		return lc_cli_fail("llmcap admin", "call: PATH starts with / (e.g. /v1/admin/keys)");
	if (argc == 4 && !(body = load_json_arg(argv[3], "call")))
		return 1;
	a->json = true;
	return do_call(a, argv[1], argv[2], body, NULL);
}

/* ---- entry ---- */

static int load_token(struct admin *a, const char *file)
{
	const char *src = file ? file : getenv("LLMCAP_ADMIN_TOKEN");
	size_t n;
	if (file) {
		struct lc_buf b;
		char err[512];
		if (lc_read_file(file, sizeof a->token - 1, &b, err, sizeof err) != 0)
			return lc_cli_fail("llmcap admin", "--token-file %s: %s", file, err);
		n = b.len;
		memcpy(a->token, b.data ? b.data : "", n);
		a->token[n] = 0;
		lc_buf_free(&b);
	} else if (src && *src) {
		snprintf(a->token, sizeof a->token, "%s", src);
	} else {
		return lc_cli_fail("llmcap admin", "no admin token: pass --token-file FILE or set LLMCAP_ADMIN_TOKEN");
	}
	/* trim surrounding whitespace, as the server does with its token file */
	char *p = a->token;
	while (isspace((unsigned char)*p))
		p++;
	memmove(a->token, p, strlen(p) + 1);
	n = strlen(a->token);
	while (n && isspace((unsigned char)a->token[n - 1]))
		a->token[--n] = 0;
	if (!n)
		return lc_cli_fail("llmcap admin", "%s: the admin token is empty", file ? file : "LLMCAP_ADMIN_TOKEN");
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)a->token[i] < 0x20)
			return lc_cli_fail("llmcap admin", "%s: the admin token has a control character", file ? file : "LLMCAP_ADMIN_TOKEN");
	return 0;
}

int lc_cmd_admin(int argc, char **argv)
{
	static struct admin a;
	const char *tokfile = NULL;
	char *rest[256];
	int n = 0;

	a.server = getenv("LLMCAP_SERVER");
	if (!a.server || !*a.server)
		a.server = ADMIN_DEFAULT_SERVER;
	/* global options may come anywhere; the rest is RESOURCE [ACTION] [ARGS] */
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
			admin_usage(stdout);
			return 0;
		} else if (!strcmp(argv[i], "--json")) {
			a.json = true;
		} else if (!strcmp(argv[i], "--server") || !strcmp(argv[i], "--token-file")) {
			if (i + 1 >= argc)
				return lc_cli_fail("llmcap admin", "%s: a value is required", argv[i]);
			if (!strcmp(argv[i], "--server"))
				a.server = argv[++i];
			else
				tokfile = argv[++i];
		} else if (n < (int)(sizeof rest / sizeof rest[0]) - 1) {
			rest[n++] = argv[i];
		} else {
			return lc_cli_fail("llmcap admin", "too many arguments");
		}
	}
	rest[n] = NULL;
	if (n == 0) {
		admin_usage(stderr);
		return 2;
	}
	if (strncmp(a.server, "http://", 7) && strncmp(a.server, "https://", 8))
		return lc_cli_fail("llmcap admin", "--server %s: expected http://HOST:PORT or https://HOST:PORT", a.server);
	size_t sl = strlen(a.server);
	static char server[1024];
	if (sl >= sizeof server)
		return lc_cli_fail("llmcap admin", "--server: too long");
	snprintf(server, sizeof server, "%s", a.server);
	while (sl > 0 && server[sl - 1] == '/')
		server[--sl] = 0;
	a.server = server;
	if (load_token(&a, tokfile))
		return 1;
	curl_global_init(CURL_GLOBAL_DEFAULT);

	const char *r = rest[0];
	int rc;
	if (!strcmp(r, "keys"))
		rc = cmd_keys(&a, n, rest);
	else if (!strcmp(r, "teams"))
		rc = cmd_teams(&a, n, rest);
	else if (!strcmp(r, "customers"))
		rc = cmd_customers(&a, n, rest);
	else if (!strcmp(r, "org"))
		rc = cmd_piece(&a, "org", org_flags, n, rest);
	else if (!strcmp(r, "settings"))
		rc = cmd_piece(&a, "settings", settings_flags, n, rest);
	else if (!strcmp(r, "webhooks") || !strcmp(r, "providers") || !strcmp(r, "prices") || !strcmp(r, "emails"))
		rc = cmd_piece(&a, r, NULL, n, rest);
	else if (!strcmp(r, "invites"))
		rc = cmd_invites(&a, n, rest);
	else if (!strcmp(r, "usage"))
		rc = cmd_usage(&a, n, rest);
	else if (!strcmp(r, "hosts"))
		rc = cmd_hosts(&a, n, rest);
	else if (!strcmp(r, "audit"))
		rc = n == 1 ? do_call(&a, "GET", "/v1/admin/audit", NULL, show_audit)
			    : lc_cli_fail("llmcap admin", "audit: unexpected argument '%s'", rest[1]);
	else if (!strcmp(r, "policy"))
		rc = n == 1 ? do_call(&a, "GET", "/v1/admin/policy", NULL, print_json)
			    : lc_cli_fail("llmcap admin", "policy: unexpected argument '%s'", rest[1]);
	else if (!strcmp(r, "call"))
		rc = cmd_call(&a, n, rest);
	else
		rc = lc_cli_fail("llmcap admin", "unknown resource '%s' (see llmcap admin --help)", r);
	curl_global_cleanup();
	return rc;
}
