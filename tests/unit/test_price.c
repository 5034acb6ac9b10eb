/* test_price.c - the price model: the built-in book validates and prices the snapshot names
 * users send; the snapshot rule; defaults, long-context and service-tier rates; the worst-case
 * estimate; price_book and price-field validation (errors name the JSON path); a policy with
 * "price_book": "builtin" lets book models through unknown_models: "block" and policy prices win. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "engine.h"
#include "policy.h"
#include "price.h"
#include "sign.h"
#include "util.h"

static char tmpdir[256];
static struct lc_signkey skey;
static struct lc_trust trust;
static int64_t version;

#define NANO(usd) ((int64_t)((usd) * 1e9 + 0.5))

static json_t *entry(const char *js)
{
	json_error_t je;
	json_t *e = json_loads(js, 0, &je);

	if (!e)
		fail_msg("bad test JSON: %s: %s", js, je.text);
	return e;
}

static void compile(const char *js, struct lc_price *p)
{
	json_t *e = entry(js);
	char err[256] = "";

	if (lc_price_entry_check(e, "prices.m", err, sizeof(err)))
		fail_msg("%s: %s", js, err);
	lc_price_compile(e, p);
	json_decref(e);
}

static void test_book_is_valid_and_prices_snapshots(void **st)
{
	static const char *const names[] = {
		"gpt-4o-mini", "gpt-4o-mini-2024-07-18", "gpt-4o-2024-08-06", "gpt-4.1-2025-04-14", "o4-mini-2025-04-16",
		"gpt-5-mini-2025-08-07", "text-embedding-3-small", "claude-3-5-haiku-20241022", "claude-3-5-haiku-latest",
		"claude-sonnet-4-20250514", "claude-sonnet-4-0", "claude-opus-4-1-20250805", "claude-haiku-4-5-20251001",
		"claude-3-7-sonnet-latest", NULL};
	json_t *b = lc_price_book(), *policy = json_pack("{s:s}", "price_book", "builtin"), *eff;
	char err[512] = "";
	const char *matched;

	assert_non_null(b);
	if (lc_price_book_check(err, sizeof(err)))
		fail_msg("book: %s", err);
	assert_true(json_integer_value(json_object_get(b, "version")) >= 1);
	assert_int_equal(json_string_length(json_object_get(b, "date")), 10);
	assert_true(json_object_size(json_object_get(b, "sources")) >= 2);
	eff = lc_prices_effective(policy);
	for (const char *const *n = names; *n; n++)
		if (!lc_prices_match(eff, *n, &matched))
			fail_msg("the book does not price %s", *n);
	assert_null(lc_prices_match(eff, "gpt-9-turbo", &matched));      /* never a silent $0 */
	/* gpt-5-nano's output cap from OpenAI's model page (128,000), not the 16,384 default: a request
	 * naming no cap reserves what the model may really write */
	{
		struct lc_price p;

		lc_price_compile(lc_prices_match(eff, "gpt-5-nano-2025-08-07", &matched), &p);
		assert_int_equal(p.max_out, 128000);
	}
	assert_null(lc_prices_match(eff, "ft:gpt-4o-mini:acme::x1", &matched));
	json_decref(eff);
	json_decref(policy);
}

static void test_snapshot_rule(void **st)
{
	char out[128];

	assert_int_equal(lc_model_snapshot_base("gpt-4o-2024-08-06", out, sizeof(out)), 1);
	assert_string_equal(out, "gpt-4o");
	assert_int_equal(lc_model_snapshot_base("claude-3-5-haiku-20241022", out, sizeof(out)), 1);
	assert_string_equal(out, "claude-3-5-haiku");
	assert_int_equal(lc_model_snapshot_base("claude-3-7-sonnet-latest", out, sizeof(out)), 1);
	assert_string_equal(out, "claude-3-7-sonnet");
	/* not a date: month 13, too few digits, no dash, nothing before it */
	assert_int_equal(lc_model_snapshot_base("gpt-4o-2024-13-06", out, sizeof(out)), 0);
	assert_int_equal(lc_model_snapshot_base("gpt-4-0613", out, sizeof(out)), 0);
	assert_int_equal(lc_model_snapshot_base("model20241022", out, sizeof(out)), 0);
	assert_int_equal(lc_model_snapshot_base("-latest", out, sizeof(out)), 0);
	assert_int_equal(lc_model_snapshot_base("latest", out, sizeof(out)), 0);
	/* one suffix only */
	assert_int_equal(lc_model_snapshot_base("x-20240101-latest", out, sizeof(out)), 1);
	assert_string_equal(out, "x-20240101");
}

static void test_defaults_and_tiers(void **st)
{
	struct lc_price p;
	const int64_t *std0, *std1;

	compile("{\"input\": 3, \"output\": 15}", &p);
	std0 = p.rate[LC_TIER_STANDARD][0];
	assert_int_equal(std0[LC_TOK_INPUT], NANO(3));
	assert_int_equal(std0[LC_TOK_CACHED], NANO(3));          /* cached_input = input */
	assert_int_equal(std0[LC_TOK_CW5M], NANO(3.75));         /* 1.25 x input */
	assert_int_equal(std0[LC_TOK_CW1H], NANO(6));            /* 2 x input */
	assert_int_equal(std0[LC_TOK_AUDIO_OUT], NANO(15));
	assert_int_equal(p.rate[LC_TIER_BATCH][0][LC_TOK_OUTPUT], NANO(7.5));
	assert_int_equal(p.rate[LC_TIER_FLEX][0][LC_TOK_INPUT], NANO(1.5));
	assert_int_equal(p.rate[LC_TIER_PRIORITY][0][LC_TOK_INPUT], NANO(3));  /* no priority processing */
	assert_int_equal(p.lc_threshold, -1);
	assert_int_equal(p.max_out, -1);

	/* Claude Sonnet 4: long context doubles input-side rates, output x1.5; batch halves both */
	compile("{\"input\": 3, \"cache_write_5m\": 3.75, \"cache_write_1h\": 6, \"cached_input\": 0.30, \"output\": 15,"
		" \"long_context\": {\"threshold\": 200000, \"input\": 6, \"output\": 22.50}, \"web_search\": 0.01}", &p);
	std1 = p.rate[LC_TIER_STANDARD][1];
	assert_int_equal(p.lc_threshold, 200000);
	assert_int_equal(std1[LC_TOK_INPUT], NANO(6));
	assert_int_equal(std1[LC_TOK_CACHED], NANO(0.60));
	assert_int_equal(std1[LC_TOK_CW5M], NANO(7.50));
	assert_int_equal(std1[LC_TOK_CW1H], NANO(12));
	assert_int_equal(std1[LC_TOK_OUTPUT], NANO(22.50));
	assert_int_equal(p.rate[LC_TIER_BATCH][1][LC_TOK_INPUT], NANO(3));
	assert_int_equal(p.rate[LC_TIER_BATCH][1][LC_TOK_OUTPUT], NANO(11.25));
	assert_int_equal(p.web_search, 10000);

	/* explicit priority rates; absent ones scale by the tier's input (or output) ratio */
	compile("{\"input\": 5, \"output\": 15, \"service_tiers\": {\"priority\": {\"input\": 8.75, \"output\": 26.25},"
		" \"batch\": 0.4}}", &p);
	assert_int_equal(p.rate[LC_TIER_PRIORITY][0][LC_TOK_CACHED], NANO(8.75));
	assert_int_equal(p.rate[LC_TIER_PRIORITY][0][LC_TOK_AUDIO_OUT], NANO(26.25));
	assert_int_equal(p.rate[LC_TIER_BATCH][0][LC_TOK_INPUT], NANO(2));
}

static void test_estimate_is_worst_case(void **st)
{
	struct lc_reqinfo ri;
	struct lc_price p;

	memset(&ri, 0, sizeof(ri));
	/* gpt-4o: a request naming no tier may be served at priority ($4.25 / $17.00) */
	compile("{\"input\": 2.50, \"cached_input\": 1.25, \"output\": 10.00,"
		" \"service_tiers\": {\"priority\": {\"input\": 4.25, \"cached_input\": 2.125, \"output\": 17.00}}}", &p);
	assert_int_equal(lc_cost_estimate(&p, &ri, 1000, 100), 4250 + 1700);
	/* settle without a reported tier: standard */
	{
		struct lc_usage u = {.present = true, .input = 1000, .output = 100};

		assert_int_equal(lc_cost_settle(&p, &u), 2500 + 1000);
	}
	/* long context: the whole request at the higher tier once the input bound passes the threshold */
	compile("{\"input\": 3, \"output\": 15, \"long_context\": {\"threshold\": 200000, \"input\": 6, \"output\": 22.50}}", &p);
	assert_int_equal(lc_cost_estimate(&p, &ri, 200000, 1000), 600000 + 15000);
	assert_int_equal(lc_cost_estimate(&p, &ri, 200001, 1000), 1200006 + 22500);
	/* rounding: exact sum, rounded up once to the whole micro-USD (7 tokens at $0.15/M = 1.05 micro-USD) */
	compile("{\"input\": 0.15, \"output\": 0.60}", &p);
	assert_int_equal(lc_cost_estimate(&p, &ri, 7, 0), 2);
	assert_int_equal(lc_cost_estimate(&p, &ri, 0, 0), 0);
}

static struct lc_reqinfo req(const char *path, const char *body)
{
	struct lc_reqinfo ri;
	char err[256] = "";

	if (lc_reqinfo_parse(LC_FMT_OPENAI, path, body, strlen(body), NULL, NULL, NULL, &ri, err, sizeof(err)))
		fail_msg("%s: %s", body, err);
	return ri;
}

/* A request that enables web search reserves the dearest fees its searches could cost: its own bound
 * (max_uses, max_tool_calls), else LC_WEB_DEFAULT_CALLS; settle charges the calls the response reports
 * at the fee of the tool the request named. */
static void test_estimate_reserves_web_search(void **st)
{
	struct lc_reqinfo ri;
	struct lc_price p;
	struct lc_usage u = {.present = true, .input = 1000, .output = 100, .web_search = 2};

	/* Anthropic: max_uses 3 at $0.01: 1000 x $1 + 100 x $5 per M + 3 x 10,000 micro-USD, and 3 x 8,000
	 * tokens of search content reserved at $1/M (the usage reports the real count) */
	compile("{\"input\": 1, \"output\": 5, \"web_search\": 0.01}", &p);
	ri = req("/v1/messages", "{\"model\":\"m\",\"max_tokens\":100,\"tools\":[{\"type\":\"web_search_20250305\","
				 "\"name\":\"web_search\",\"max_uses\":3}]}");
	assert_true(ri.web & LC_WEB_SEARCH);
	assert_int_equal(ri.web_max_calls, 3);
	assert_int_equal(lc_cost_estimate(&p, &ri, 1000, 100), 1000 + 500 + 30000 + 3 * 8000);
	assert_int_equal(lc_cost_settle(&p, &u), 1000 + 500 + 20000);
	/* no max_uses: the documented default bound */
	ri = req("/v1/messages", "{\"model\":\"m\",\"tools\":[{\"type\":\"web_search_20250305\",\"name\":\"web_search\"}]}");
	assert_int_equal(ri.web_max_calls, -1);
	assert_int_equal(lc_cost_estimate(&p, &ri, 1000, 100), 1500 + LC_WEB_DEFAULT_CALLS * (10000 + 8000));
	/* no web search tool: no fee reserved */
	ri = req("/v1/messages", "{\"model\":\"m\",\"tools\":[{\"name\":\"get_weather\",\"input_schema\":{}}]}");
	assert_int_equal(ri.web, 0);
	assert_int_equal(lc_cost_estimate(&p, &ri, 1000, 100), 1500);

	/* OpenAI gpt-4.1-mini-like: web_search $0.01 + 8,000 input tokens a call at $0.40/M = 13,200 micro-USD a call;
	 * web_search_preview $0.025 a call, content free; no further search content reserved (the block is it) */
	compile("{\"input\": 0.40, \"output\": 1.60, \"web_search\": 0.01, \"web_search_tokens\": 8000,"
		" \"web_search_preview\": 0.025}", &p);
	ri = req("/v1/responses", "{\"model\":\"m\",\"tools\":[{\"type\":\"web_search\"}],\"max_tool_calls\":2}");
	assert_int_equal(ri.web_max_calls, 2);
	assert_int_equal(lc_cost_estimate(&p, &ri, 1000, 100), 400 + 160 + 2 * 13200);
	assert_int_equal(lc_cost_settle(&p, &u), 400 + 160 + 2 * 13200);
	ri = req("/v1/responses", "{\"model\":\"m\",\"tools\":[{\"type\":\"web_search_preview\"}]}");
	assert_true(ri.web == LC_WEB_PREVIEW);
	assert_int_equal(lc_cost_estimate(&p, &ri, 1000, 100), 560 + LC_WEB_DEFAULT_CALLS * 25000);
	assert_int_equal(lc_cost_settle(&p, &u), 560 + 2 * 25000);
	/* both tools: a call may be either, so each is charged at the dearer */
	ri = req("/v1/responses", "{\"model\":\"m\",\"tools\":[{\"type\":\"web_search\"},"
				  "{\"type\":\"web_search_preview_2025_03_11\"}],\"max_tool_calls\":1}");
	assert_int_equal(lc_cost_estimate(&p, &ri, 1000, 100), 560 + 25000);
	/* max_tool_calls below the sum of max_uses wins */
	ri = req("/v1/messages", "{\"tools\":[{\"type\":\"web_search_20250305\",\"max_uses\":4},"
				 "{\"type\":\"web_search_20260209\",\"max_uses\":5}]}");
	assert_int_equal(ri.web_max_calls, 9);

	/* a Chat Completions search model: one fee a request by search_context_size (default medium) */
	compile("{\"input\": 2.50, \"output\": 10, \"search_request\": {\"low\": 0.03, \"medium\": 0.035, \"high\": 0.05}}", &p);
	ri = req("/v1/chat/completions", "{\"model\":\"m\",\"web_search_options\":{}}");
	assert_int_equal(ri.search_ctx, 1);
	assert_int_equal(lc_cost_estimate(&p, &ri, 1000, 100), 2500 + 1000 + 35000);
	u.web_search = 0;
	assert_int_equal(lc_cost_settle(&p, &u), 2500 + 1000 + 35000);
	ri = req("/v1/chat/completions", "{\"model\":\"m\",\"web_search_options\":{\"search_context_size\":\"high\"}}");
	assert_int_equal(lc_cost_estimate(&p, &ri, 1000, 100), 3500 + 50000);
	assert_int_equal(lc_cost_settle(&p, &u), 3500 + 50000);

	/* code execution tools; free beside a web search or web fetch tool of 20260209 or later */
	ri = req("/v1/messages", "{\"model\":\"m\",\"tools\":[{\"type\":\"code_execution_20250825\"}]}");
	assert_int_equal(ri.web, LC_WEB_CODE);
	ri = req("/v1/messages", "{\"model\":\"m\",\"tools\":[{\"type\":\"code_execution_20250825\"},"
				 "{\"type\":\"web_fetch_20260209\",\"max_uses\":2}]}");
	assert_int_equal(ri.web, LC_WEB_CODE | LC_WEB_CODE_FREE);
	assert_int_equal(ri.web_max_calls, -1);   /* no web search: no bound on searches to keep */
	ri = req("/v1/messages", "{\"model\":\"m\",\"tools\":[{\"type\":\"code_execution_20260120\"},"
				 "{\"type\":\"web_search_20260301\",\"max_uses\":2}]}");
	assert_int_equal(ri.web, LC_WEB_CODE | LC_WEB_CODE_FREE | LC_WEB_SEARCH);
	ri = req("/v1/messages", "{\"model\":\"m\",\"tools\":[{\"type\":\"code_execution_20250825\"},"
				 "{\"type\":\"web_search_20250305\"},{\"type\":\"web_fetch_2026020\"}]}");
	assert_int_equal(ri.web, LC_WEB_CODE | LC_WEB_SEARCH);
	ri = req("/v1/responses", "{\"model\":\"m\",\"tools\":[{\"type\":\"code_interpreter\",\"container\":{\"type\":\"auto\"}}]}");
	assert_int_equal(ri.web, LC_WEB_CODE);
	/* OpenAI file_search and image_generation: tools the book has no fee for */
	ri = req("/v1/responses", "{\"model\":\"m\",\"tools\":[{\"type\":\"file_search\",\"vector_store_ids\":[\"vs_1\"]},"
				  "{\"type\":\"image_generation\"}]}");
	assert_int_equal(ri.web, LC_WEB_FILE_SEARCH | LC_WEB_IMAGE_GEN);
}

/* Ollama's /api/embed (and the legacy /api/embeddings) are embeddings: no output reserved, the
 * input is prompt_eval_count */
static void test_ollama_embed(void **st)
{
	static const char body[] = "{\"model\":\"all-minilm\",\"embeddings\":[[0.1,0.2]],\"total_duration\":14143917,"
				   "\"load_duration\":1019500,\"prompt_eval_count\":8}";
	struct lc_reqinfo ri = req("/api/embed", "{\"model\":\"all-minilm\",\"input\":\"Why is the sky blue?\"}");
	struct lc_usage u;

	assert_int_equal(ri.api, LC_API_EMBEDDINGS);
	assert_int_equal(ri.output_cap, 0);
	assert_false(ri.stream);
	assert_int_equal(lc_api_from_path("/api/embeddings"), LC_API_EMBEDDINGS);
	assert_int_equal(lc_api_from_path("/api/embedx"), LC_API_UNKNOWN);
	assert_int_equal(lc_usage_from_json(body, strlen(body), &u), 0);
	assert_true(u.present);
	assert_int_equal(u.input, 8);
	assert_int_equal(u.output, 0);
}

static void expect_invalid(const char *prices, const char *path)
{
	char doc[2048], err[512] = "";
	struct lc_policy *pol = NULL;

	snprintf(doc, sizeof(doc),
		 "{\"schema\":1,\"version\":1,\"issued_at\":\"2026-01-01T00:00:00Z\",\"expires_at\":\"2099-01-01T00:00:00Z\","
		 "\"providers\":[{\"name\":\"openai\",\"format\":\"openai\",\"hosts\":[\"api.openai.com\"]}],%s}", prices);
	if (lc_policy_parse(doc, strlen(doc), &pol, err, sizeof(err)) == 0) {
		lc_policy_free(pol);
		fail_msg("accepted: %s", prices);
	}
	if (strncmp(err, path, strlen(path)) || err[strlen(path)] != ':')
		fail_msg("error for %s names the wrong path: %s (want %s)", prices, err, path);
}

static void test_validation_names_the_path(void **st)
{
	expect_invalid("\"price_book\": \"latest\"", "price_book");
	expect_invalid("\"price_book\": true", "price_book");
	expect_invalid("\"prices\": {\"m\": {\"input\": 1}}", "prices.m.output");
	expect_invalid("\"prices\": {\"m\": {\"input\": 1, \"output\": 2, \"cache_write_1h\": -2}}", "prices.m.cache_write_1h");
	expect_invalid("\"prices\": {\"m\": {\"input\": 1, \"output\": 2, \"audio_input\": \"40\"}}", "prices.m.audio_input");
	expect_invalid("\"prices\": {\"m\": {\"input\": 1, \"output\": 2, \"long_context\": {\"input\": 2, \"output\": 3}}}",
		       "prices.m.long_context.threshold");
	expect_invalid("\"prices\": {\"m\": {\"input\": 1, \"output\": 2, \"long_context\": {\"threshold\": 0, \"input\": 2,"
		       " \"output\": 3}}}", "prices.m.long_context.threshold");
	expect_invalid("\"prices\": {\"m\": {\"input\": 1, \"output\": 2, \"long_context\": {\"threshold\": 9, \"input\": 2,"
		       " \"output\": 3, \"turbo\": 1}}}", "prices.m.long_context.turbo");
	expect_invalid("\"prices\": {\"m\": {\"input\": 1, \"output\": 2, \"service_tiers\": {\"turbo\": 2}}}",
		       "prices.m.service_tiers.turbo");
	expect_invalid("\"prices\": {\"m\": {\"input\": 1, \"output\": 2, \"service_tiers\": {\"batch\": 0}}}",
		       "prices.m.service_tiers.batch");
	expect_invalid("\"prices\": {\"m\": {\"input\": 1, \"output\": 2, \"service_tiers\": {\"priority\": {\"input\": -1}}}}",
		       "prices.m.service_tiers.priority.input");
	expect_invalid("\"prices\": {\"m\": {\"input\": 1, \"output\": 2, \"web_search\": -0.01}}", "prices.m.web_search");
	expect_invalid("\"prices\": {\"m\": {\"input\": 1, \"output\": 2, \"web_search_preview\": 2000}}",
		       "prices.m.web_search_preview");
	expect_invalid("\"prices\": {\"m\": {\"input\": 1, \"output\": 2, \"web_search_tokens\": -1}}",
		       "prices.m.web_search_tokens");
	expect_invalid("\"prices\": {\"m\": {\"input\": 1, \"output\": 2, \"web_search_tokens\": 8000.5}}",
		       "prices.m.web_search_tokens");
	expect_invalid("\"prices\": {\"m\": {\"input\": 1, \"output\": 2, \"search_request\": {\"low\": 0.03,"
		       " \"medium\": 0.035}}}", "prices.m.search_request.high");
	expect_invalid("\"prices\": {\"m\": {\"input\": 1, \"output\": 2, \"search_request\": {\"low\": 0.03,"
		       " \"medium\": \"x\", \"high\": 0.05}}}", "prices.m.search_request.medium");
	expect_invalid("\"prices\": {\"m\": {\"input\": 1, \"output\": 2, \"search_request\": {\"low\": 0.03,"
		       " \"medium\": 0.035, \"high\": 0.05, \"max\": 1}}}", "prices.m.search_request.max");
	expect_invalid("\"prices\": {\"m\": {\"input\": 1, \"output\": 2, \"search_request\": 0.03}}",
		       "prices.m.search_request");
	expect_invalid("\"prices\": {\"m\": {\"input\": 1, \"output\": 2, \"aliases\": [\"\"]}}", "prices.m.aliases[0]");
	expect_invalid("\"prices\": {\"m\": {\"input\": 1, \"output\": 2, \"input_audio\": 1}}", "prices.m.input_audio");
	expect_invalid("\"prices\": {\"m\": {\"input\": 1e300, \"output\": 2}}", "prices.m.input");
	expect_invalid("\"web_search_max_uses\": 0", "web_search_max_uses");
	expect_invalid("\"web_search_max_uses\": 2.5", "web_search_max_uses");
	expect_invalid("\"web_search_max_uses\": 10001", "web_search_max_uses");
	expect_invalid("\"web_search_max_uses\": \"10\"", "web_search_max_uses");
	expect_invalid("\"web_search_unbounded\": \"refuse\"", "web_search_unbounded");
}

/* the usage shapes OpenAI-compatible servers send, and the request fields the estimate reads */
static void test_compatible_usage_shapes(void **st)
{
	struct lc_usage u;
	struct lc_reqinfo ri;
	char err[256];
	/* vLLM: prompt_tokens_details null */
	static const char vllm[] = "{\"id\":\"cmpl-1\",\"object\":\"chat.completion\",\"model\":\"meta-llama/Llama-3.1-8B\","
		"\"choices\":[],\"usage\":{\"prompt_tokens\":40,\"total_tokens\":50,\"completion_tokens\":10,"
		"\"prompt_tokens_details\":null}}";
	/* Ollama's /v1 endpoint: the bare three counts */
	static const char ollama[] = "{\"id\":\"chatcmpl-9\",\"object\":\"chat.completion\",\"model\":\"llama3.2\","
		"\"system_fingerprint\":\"fp_ollama\",\"choices\":[],\"usage\":{\"prompt_tokens\":26,"
		"\"completion_tokens\":169,\"total_tokens\":195}}";
	static const char req[] = "{\"model\":\"claude-sonnet-4-5\",\"service_tier\":\"priority\",\"max_tokens\":9,"
		"\"system\":[{\"type\":\"text\",\"text\":\"x\",\"cache_control\":{\"type\":\"ephemeral\",\"ttl\":\"1h\"}}],"
		"\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"input_audio\",\"input_audio\":{}}]}],"
		"\"audio\":{\"voice\":\"alloy\"}}";

	assert_int_equal(lc_usage_from_json(vllm, strlen(vllm), &u), 0);
	assert_true(u.present);
	assert_int_equal(u.input, 40);
	assert_int_equal(u.cached_input, 0);
	assert_int_equal(u.output, 10);
	assert_int_equal(lc_usage_from_json(ollama, strlen(ollama), &u), 0);
	assert_true(u.present);
	assert_int_equal(u.input + u.output, 195);
	assert_int_equal(lc_reqinfo_parse(LC_FMT_ANTHROPIC, "/v1/messages", req, strlen(req), NULL, NULL, NULL, &ri,
					  err, sizeof(err)), 0);
	assert_string_equal(ri.service_tier, "priority");
	assert_int_equal(ri.may, LC_MAY_CACHE_5M | LC_MAY_CACHE_1H | LC_MAY_AUDIO_IN | LC_MAY_AUDIO_OUT);
	{
		/* the worst case covers a 1-hour cache write of the whole input, at the tier asked for */
		struct lc_price p;

		compile("{\"input\": 3, \"output\": 15}", &p);
		ri.may = LC_MAY_CACHE_1H;
		assert_int_equal(lc_cost_estimate(&p, &ri, 1000000, 0), 6000000);
		assert_int_equal(p.req_tier, LC_TIER_PRIORITY);
	}
}

/* ---- against a real store ---- */

/* a policy with these fields (unknown_models: block unless they say) */
static void install(const char *body)
{
	char doc[8192], err[512], *env = NULL;
	size_t envlen;

	snprintf(doc, sizeof(doc),
		 "{\"schema\":1,\"version\":%lld,\"issued_at\":\"2026-01-01T00:00:00Z\",\"expires_at\":\"2099-01-01T00:00:00Z\","
		 "\"providers\":[{\"name\":\"openai\",\"format\":\"openai\",\"hosts\":[\"api.openai.com\"]},"
		 "{\"name\":\"anthropic\",\"format\":\"anthropic\",\"hosts\":[\"api.anthropic.com\"]}],"
		 "%s\"org\":{\"spend_cap_usd\":1000}%s%s}",
		 (long long)++version, strstr(body, "unknown_models") ? "" : "\"unknown_models\":\"block\",",
		 *body ? "," : "", body);
	assert_int_equal(lc_dsse_sign(&skey, doc, strlen(doc), &env, &envlen, err, sizeof(err)), 0);
	if (lc_apply_envelope(&trust, env, envlen, NULL, err, sizeof(err)))
		fail_msg("apply: %s\n%s", err, doc);
	free(env);
}

/* the tools a call enables (LC_WEB_*), its bound on searches (-1 none) and the searches its usage reports */
struct tools {
	enum lc_api api;   /* 0: chat, or messages for an Anthropic host */
	uint8_t web;
	int64_t max_calls, searches;
};

/* admit one call with these tools and settle it with this usage; returns the org's settled micro-USD
 * delta, or -1 if denied (*dp says why) */
static int64_t call_tools(const char *host, const char *model, int64_t in, int64_t cached, int64_t out,
			  const struct tools *t, struct lc_decision *dp)
{
	struct lc_reqinfo ri;
	struct lc_admit_req a = {.host = host, .port = 443, .info = &ri};
	struct lc_decision dd, *d = dp ? dp : &dd;
	struct lc_usage u = {.present = true, .input = in, .cached_input = cached, .output = out,
			     .web_search = t ? t->searches : 0};
	json_t *st, *l;
	size_t i;
	double before = 0, after = 0;

	memset(&ri, 0, sizeof(ri));
	ri.api = t && t->api ? t->api : strstr(host, "anthropic") ? LC_API_MESSAGES : LC_API_CHAT;
	snprintf(ri.model, sizeof(ri.model), "%s", model);
	ri.input_estimate = in + cached;
	ri.output_cap = out;
	ri.web = t ? t->web : 0;
	ri.web_max_calls = t ? t->max_calls : -1;
	ri.search_ctx = 1;
	for (int pass = 0; pass < 2; pass++) {
		assert_int_equal(lc_status_json(&st), 0);
		json_array_foreach(json_object_get(st, "limits"), i, l)
			if (!strcmp(json_string_value(json_object_get(l, "scope")), "org"))
				*(pass ? &after : &before) = json_number_value(json_object_get(l, "used"));
		json_decref(st);
		if (pass)
			break;
		assert_int_equal(lc_admit(&a, d), LC_OK);
		if (d->verdict != LC_ALLOW)
			return -1;
		assert_int_equal(lc_settle(d->ticket, &u, 200), LC_OK);
	}
	return (int64_t)((after - before) * 1e6 + 0.5);
}

static int64_t call(const char *host, const char *model, int64_t in, int64_t cached, int64_t out)
{
	return call_tools(host, model, in, cached, out, NULL, NULL);
}

/* refused with this status and a message naming `what` */
static void expect_refused(const char *host, const char *model, const struct tools *t, int status, const char *what)
{
	struct lc_decision d;

	assert_int_equal(call_tools(host, model, 1000, 0, 100, t, &d), -1);
	assert_int_equal(d.status, status);
	if (!strstr(d.message, what))
		fail_msg("%s: refused with \"%s\", which does not name %s", model, d.message, what);
}

/* README "Prices": a tool the model's price has no fee for is unpriced like an unknown model (never a
 * silent $0); web_search_unbounded: "block" makes the searches reserved a bound */
static void test_unpriced_tools(void **st)
{
	const struct tools search = {LC_API_RESPONSES, LC_WEB_SEARCH, 2, 2}, preview = {LC_API_RESPONSES, LC_WEB_PREVIEW, 1, 1};
	const struct tools a_search = {0, LC_WEB_SEARCH, 1, 1}, a_code = {0, LC_WEB_CODE, -1, 0};
	const struct tools a_code_free = {0, LC_WEB_CODE | LC_WEB_CODE_FREE | LC_WEB_SEARCH, 1, 1};
	const struct tools o_code = {LC_API_RESPONSES, LC_WEB_CODE, -1, 0}, silent = {LC_API_RESPONSES, 0, -1, 1};
	const struct tools options = {LC_API_CHAT, LC_WEB_OPTIONS, -1, 0}, unbounded = {0, LC_WEB_SEARCH, -1, 1};
	const struct tools r_unbounded = {LC_API_RESPONSES, LC_WEB_SEARCH, -1, 1};
	const struct tools files = {LC_API_RESPONSES, LC_WEB_FILE_SEARCH, -1, 0}, images = {LC_API_RESPONSES, LC_WEB_IMAGE_GEN, -1, 0};

	install("\"price_book\":\"builtin\"");
	/* unknown_models: block refuses a tool the book has no fee for, naming it */
	expect_refused("api.openai.com", "gpt-4.1-nano", &search, 400, "no price for the web_search tool");
	expect_refused("api.openai.com", "o3-mini-2025-01-31", &preview, 400, "web_search_preview tool");
	expect_refused("api.openai.com", "gpt-4o", &options, 400, "web_search_options tool");
	expect_refused("api.anthropic.com", "claude-3-haiku-20240307", &a_search, 400, "web_search tool");
	expect_refused("api.anthropic.com", "claude-sonnet-4-5", &a_code, 400, "code_execution tool");
	expect_refused("api.openai.com", "gpt-4.1", &o_code, 400, "code_interpreter tool");
	expect_refused("api.openai.com", "gpt-4.1", &files, 400, "file_search tool");
	expect_refused("api.openai.com", "gpt-4o", &images, 400, "image_generation tool");
	/* priced tools pass: gpt-4.1 1000 x $2/M + 100 x $8/M + 2 x $0.01; gpt-5-nano (book v4):
	 * 1000 x $0.05/M + 100 x $0.40/M + 2 x $0.01 */
	assert_int_equal(call_tools("api.openai.com", "gpt-4.1", 1000, 0, 100, &search, NULL), 2000 + 800 + 20000);
	assert_int_equal(call_tools("api.openai.com", "gpt-5-nano", 1000, 0, 100, &search, NULL), 50 + 40 + 20000);
	/* code execution with web_search_20260209 in the request is free: claude-sonnet-4-5 1000 x $3/M +
	 * 100 x $15/M + 1 search */
	assert_int_equal(call_tools("api.anthropic.com", "claude-sonnet-4-5", 1000, 0, 100, &a_code_free, NULL),
			 3000 + 1500 + 10000);
	/* a response reporting searches the request did not show, on an entry with no fee: the dearest
	 * web_search fee in the table ($0.01), not $0: gpt-4.1-nano 1000 x $0.10/M + 100 x $0.40/M */
	assert_int_equal(call_tools("api.openai.com", "gpt-4.1-nano", 1000, 0, 100, &silent, NULL), 100 + 40 + 10000);

	/* unknown_models: allow lets them through, charged at the dearest fee of the tool in the table:
	 * web_search $0.01 (every book fee), web_search_preview $0.025 (gpt-4o's) */
	install("\"price_book\":\"builtin\",\"unknown_models\":\"allow\"");
	assert_int_equal(call_tools("api.openai.com", "gpt-4.1-nano", 1000, 0, 100, &search, NULL), 140 + 20000);
	assert_int_equal(call_tools("api.openai.com", "gpt-4.1-nano", 1000, 0, 100, &preview, NULL), 140 + 25000);
	/* a policy price with a dearer fee raises the fallback: $0.05 a search */
	install("\"price_book\":\"builtin\",\"unknown_models\":\"allow\",\"prices\":{\"mine\":{\"input\":1,"
		"\"output\":1,\"web_search\":0.05}}");
	assert_int_equal(call_tools("api.openai.com", "gpt-4.1-nano", 1000, 0, 100, &search, NULL), 140 + 100000);
	/* code execution is let through (its container time cannot be counted; logged) */
	assert_int_equal(call_tools("api.anthropic.com", "claude-sonnet-4-5", 1000, 0, 100, &a_code, NULL), 4500);

	/* web_search_unbounded: block refuses a web search request with no bound, naming the field to set */
	install("\"price_book\":\"builtin\",\"web_search_unbounded\":\"block\"");
	expect_refused("api.anthropic.com", "claude-3-5-haiku", &unbounded, 400, "max_uses");
	expect_refused("api.openai.com", "gpt-4.1", &r_unbounded, 400, "max_tool_calls");
	/* with a bound it passes: claude-3-5-haiku 1000 x $0.80/M + 100 x $4/M + 1 search */
	assert_int_equal(call_tools("api.anthropic.com", "claude-3-5-haiku", 1000, 0, 100, &a_search, NULL), 1200 + 10000);
}

static void test_policy_uses_the_book(void **st)
{
	/* without the book, unknown_models: block refuses an ordinary model */
	install("\"prices\":{\"mine\":{\"input\":1,\"output\":1}}");
	assert_int_equal(call("api.openai.com", "gpt-4o-mini-2024-07-18", 1000, 0, 100), -1);
	assert_int_equal(call("api.openai.com", "mine-latest", 1000000, 0, 0), 1000000);

	/* with it: snapshot names priced from the book, policy prices override and add */
	install("\"price_book\":\"builtin\",\"prices\":{\"gpt-4o\":{\"input\":1,\"output\":1},\"mine\":{\"input\":1,\"output\":1}}");
	/* gpt-4o-mini: 1000 x $0.15/M + 500 cached x $0.075/M + 100 x $0.60/M = 150 + 37.5 + 60 -> 248 (rounded up) */
	assert_int_equal(call("api.openai.com", "gpt-4o-mini-2024-07-18", 1000, 500, 100), 248);
	/* claude-3-5-haiku-20241022 (alias): 2000 x $0.80 + 300 x $4 = 1600 + 1200 */
	assert_int_equal(call("api.anthropic.com", "claude-3-5-haiku-20241022", 2000, 0, 300), 2800);
	/* the snapshot rule on an alias-less name, and the policy entry beats the book's gpt-4o (and its aliases) */
	assert_int_equal(call("api.openai.com", "gpt-4o-2024-08-06", 1000000, 0, 0), 1000000);
	assert_int_equal(call("api.openai.com", "gpt-4o", 0, 0, 1000000), 1000000);
	assert_int_equal(call("api.openai.com", "mine", 2000000, 0, 0), 2000000);
	assert_int_equal(call("api.openai.com", "gpt-7", 10, 0, 10), -1);
}

static int setup(void **st)
{
	char err[256], sd[300], kd[300], f[400];

	snprintf(tmpdir, sizeof(tmpdir), "/tmp/llmcap-unit-price.XXXXXX");
	if (!mkdtemp(tmpdir))
		return -1;
	snprintf(sd, sizeof(sd), "%s/state", tmpdir);
	snprintf(kd, sizeof(kd), "%s/keys", tmpdir);
	setenv("LLMCAP_STATE_DIR", sd, 1);
	if (lc_keygen(kd, err, sizeof(err)))
		return -1;
	snprintf(f, sizeof(f), "%s/llmcap.key", kd);
	if (lc_signkey_load(f, &skey, err, sizeof(err)))
		return -1;
	snprintf(f, sizeof(f), "%s/llmcap.pub", kd);
	return lc_trust_load(f, &trust, err, sizeof(err));
}

static int teardown(void **st)
{
	char cmd[400];

	snprintf(cmd, sizeof(cmd), "rm -rf %s", tmpdir);
	return system(cmd) == 0 ? 0 : -1;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_book_is_valid_and_prices_snapshots),
		cmocka_unit_test(test_snapshot_rule),
		cmocka_unit_test(test_defaults_and_tiers),
		cmocka_unit_test(test_estimate_is_worst_case),
		cmocka_unit_test(test_estimate_reserves_web_search),
		cmocka_unit_test(test_ollama_embed),
		cmocka_unit_test(test_validation_names_the_path),
		cmocka_unit_test(test_compatible_usage_shapes),
		cmocka_unit_test(test_policy_uses_the_book),
		cmocka_unit_test(test_unpriced_tools),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
