/* prices.c - `llmcap prices [MODEL] [--json]`: the effective price entries
 * (the installed policy's prices over the built-in book when the policy says
 * "price_book": "builtin"; the book alone when no policy is installed). */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "engine.h"
#include "price.h"
#include "util.h"

static int fail(const char *msg, const char *arg)
{
	return lc_cli_fail("llmcap prices", "%s%s%s", msg, arg ? arg : "", arg ? "'" : "");
}

/* the installed policy (new reference), or a stand-in that reads the book when none is installed */
static json_t *policy_root(bool *installed)
{
	char *payload = NULL;
	size_t len = 0;
	json_t *root = NULL;

	*installed = lc_policy_payload(&payload, &len) == 0;
	if (*installed)
		root = json_loadb(payload, len, 0, NULL);
	free(payload);
	return root ? root : json_pack("{s:s}", "price_book", "builtin");
}

static void rate(json_t *e, const char *f, const char *dflt, char *out, size_t n)
{
	json_t *v = json_object_get(e, f);

	if (v)
		snprintf(out, n, "%g", json_number_value(v));
	else
		snprintf(out, n, "%s", dflt);
}

static void print_row(const char *name, json_t *e)
{
	char in[24], ca[24], w5[24], w1[24], out[24];
	json_t *lc = json_object_get(e, "long_context");

	rate(e, "input", "-", in, sizeof(in));
	rate(e, "cached_input", "=input", ca, sizeof(ca));
	rate(e, "cache_write_5m", "1.25x", w5, sizeof(w5));
	rate(e, "cache_write_1h", "2x", w1, sizeof(w1));
	rate(e, "output", "-", out, sizeof(out));
	printf("%-28s %9s %9s %9s %9s %9s  %-6s", name, in, ca, w5, w1, out,
	       json_string_value(json_object_get(e, "origin")));
	if (lc)
		printf(" long context > %" JSON_INTEGER_FORMAT ": %g / %g", json_integer_value(json_object_get(lc, "threshold")),
		       json_number_value(json_object_get(lc, "input")), json_number_value(json_object_get(lc, "output")));
	if (json_object_get(e, "service_tiers"))
		printf(" (service tiers)");
	if (json_object_get(e, "web_search"))
		printf(" web search $%g", json_number_value(json_object_get(e, "web_search")));
	if (json_object_get(e, "web_search_tokens"))
		printf(" + %" JSON_INTEGER_FORMAT " input tokens", json_integer_value(json_object_get(e, "web_search_tokens")));
	if (json_object_get(e, "web_search_preview"))
		printf(" web_search_preview $%g", json_number_value(json_object_get(e, "web_search_preview")));
	if (json_object_get(e, "search_request"))
		printf(" search a request $%g / %g / %g",
		       json_number_value(json_object_get(json_object_get(e, "search_request"), "low")),
		       json_number_value(json_object_get(json_object_get(e, "search_request"), "medium")),
		       json_number_value(json_object_get(json_object_get(e, "search_request"), "high")));
	putchar('\n');
}

/* the name of the entry that priced a model (an alias names another entry) */
static const char *entry_name(json_t *eff, json_t *e)
{
	const char *name;
	json_t *v;

	json_object_foreach(eff, name, v)
		if (v == e)
			return name;
	return "?";
}

static int show_one(json_t *eff, const char *model, bool as_json)
{
	const char *matched;
	json_t *e = lc_prices_match(eff, model, &matched), *out;
	const char *rule;

	if (!e)
		return fail("no price for this model: the policy's unknown_models rule applies to '", model);
	rule = strcmp(matched, model) ? "snapshot" : json_object_get(eff, model) ? "exact" : "alias";
	matched = entry_name(eff, e);
	if (as_json) {
		out = json_pack("{s:s,s:s,s:s,s:O}", "model", model, "matched", matched, "rule", rule, "price", e);
		json_dumpf(out, stdout, JSON_INDENT(2) | JSON_REAL_PRECISION(10));
		fputc('\n', stdout);
		json_decref(out);
		return 0;
	}
	printf("%s: %s (%s match)\n", model, matched, rule);
	json_dumpf(e, stdout, JSON_INDENT(2) | JSON_REAL_PRECISION(10));
	fputc('\n', stdout);
	return 0;
}

static int show_all(json_t *eff, json_t *root, bool as_json)
{
	json_t *b = lc_price_book(), *e;
	bool book = json_is_string(json_object_get(root, "price_book")) &&
		    !strcmp(json_string_value(json_object_get(root, "price_book")), "builtin");
	const char *name;

	if (as_json) {
		json_t *out = json_pack("{s:o,s:O}", "price_book",
					book ? json_pack("{s:O,s:O}", "version", json_object_get(b, "version"), "date",
							 json_object_get(b, "date"))
					     : json_null(),
					"prices", eff);

		json_dumpf(out, stdout, JSON_INDENT(2) | JSON_REAL_PRECISION(10) | JSON_SORT_KEYS);
		fputc('\n', stdout);
		json_decref(out);
		return 0;
	}
	if (book)
		printf("built-in price book version %" JSON_INTEGER_FORMAT " (%s); USD per million tokens\n",
		       json_integer_value(json_object_get(b, "version")), json_string_value(json_object_get(b, "date")));
	else
		printf("no built-in price book (the policy's price_book is \"none\"); USD per million tokens\n");
	printf("%-28s %9s %9s %9s %9s %9s  %s\n", "MODEL", "INPUT", "CACHED", "WRITE5M", "WRITE1H", "OUTPUT", "ORIGIN");
	json_object_foreach(eff, name, e)
		print_row(name, e);
	return 0;
}

int lc_cmd_prices(int argc, char **argv)
{
	const char *model = NULL;
	bool as_json = false, installed;
	json_t *root, *eff;
	int rc;

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
			printf("usage: llmcap prices [MODEL] [--json]\n"
			       "The effective price entries: the installed policy's prices over the built-in price\n"
			       "book (\"price_book\": \"builtin\"), or the book alone when no policy is installed.\n"
			       "With MODEL: the entry that prices it (exact name or alias, then the snapshot rule:\n"
			       "a trailing -YYYY-MM-DD, -YYYYMMDD or -latest is dropped); exit 1 when none does.\n");
			return 0;
		}
		if (!strcmp(argv[i], "--json"))
			as_json = true;
		else if (argv[i][0] == '-' || model)
			return fail("unexpected argument '", argv[i]);
		else
			model = argv[i];
	}
	if (!lc_price_book())
		return fail("the built-in price book does not parse (a broken build)", NULL);
	root = policy_root(&installed);
	eff = root ? lc_prices_effective(root) : NULL;
	if (!eff) {
		json_decref(root);
		return fail("out of memory", NULL);
	}
	if (!installed && !as_json)
		fprintf(stderr, "llmcap prices: no policy installed: showing the built-in book\n");
	rc = model ? show_one(eff, model, as_json) : show_all(eff, root, as_json);
	json_decref(eff);
	json_decref(root);
	return rc;
}
