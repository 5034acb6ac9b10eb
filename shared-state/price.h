/* price.h - the price model and the built-in price book.
 *
 * A price entry (policy "prices" or the book, data/prices.json) is compiled
 * into one flat record: a rate per token class, for every service tier, at
 * the normal and at the long-context tier, plus per-call tool fees. Cost
 * arithmetic lives here and nowhere else:
 *
 *   lc_cost_estimate: the worst case before the call (the most expensive
 *                     service tier the request could be served at, the
 *                     long-context tier when the input bound passes it);
 *   lc_cost_settle:   what the provider invoices for the usage it reported.
 *
 * Units: rates are integer nano-USD per million tokens (1e-15 USD a token),
 * so every published rate and every documented multiplier of it is exact;
 * tool fees are micro-USD per call. A cost is the exact sum of its parts,
 * rounded up once, to the whole micro-USD.
 */
#ifndef LC_PRICE_H
#define LC_PRICE_H

#include <jansson.h>
#include <lmdb.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "wire.h"

/* token classes, each at its own rate */
enum lc_tok {
	LC_TOK_INPUT = 0,     /* uncached text input */
	LC_TOK_CACHED,        /* cache reads (text) */
	LC_TOK_CW5M,          /* cache writes, 5-minute TTL */
	LC_TOK_CW1H,          /* cache writes, 1-hour TTL */
	LC_TOK_OUTPUT,        /* text output, reasoning included */
	LC_TOK_AUDIO_IN,
	LC_TOK_AUDIO_CACHED,
	LC_TOK_AUDIO_OUT,
	LC_TOK_IMAGE_IN,
	LC_TOK_N
};

/* service tiers; LC_TIER_AUTO: the request named none (or "auto"), so the
 * provider picks (the project default may be priority) */
enum lc_tier { LC_TIER_STANDARD = 0, LC_TIER_BATCH, LC_TIER_FLEX, LC_TIER_PRIORITY, LC_TIER_N, LC_TIER_AUTO = 255 };
/* "default"/"standard"/"standard_only" -> STANDARD, "batch", "flex", "priority", "auto" -> AUTO;
 * anything else -> `otherwise` */
int lc_tier_parse(const char *s, int otherwise);
const char *lc_tier_name(int t);

/* The compiled price of one model (stored in the policy's price table and in every ticket). */
struct lc_price {
	int64_t rate[LC_TIER_N][2][LC_TOK_N];  /* nano-USD per 1M tokens: [tier][long context][class] */
	int64_t lc_threshold;                  /* input tokens above which [..][1][..] applies; -1 never */
	int64_t max_out;                       /* max_output_tokens, -1 unknown */
	int64_t web_search;                    /* micro-USD per web search call (web_search tool, Anthropic's) */
	int64_t web_search_preview;            /* micro-USD per call of the web_search_preview tool */
	int64_t web_search_tokens;             /* input tokens billed per web_search call besides the usage */
	int64_t search_request[3];             /* Chat Completions search models: micro-USD a request by
	                                          search_context_size (low, medium, high); 0 none */
	uint8_t req_tier;                      /* the request's tier (enum lc_tier), set by lc_cost_estimate */
	uint8_t req_web;                       /* the request's LC_WEB_* tools, set by lc_cost_estimate */
	uint8_t req_ctx;                       /* the request's search_context_size, set by lc_cost_estimate */
	uint8_t unpriced;                      /* LC_UNPRICED_*: tool fees the entry lacks; the fee fields then
	                                          hold the dearest fee of that tool in the effective table */
	uint8_t pad[4];
};

/* tool fees an entry does not give (lc_price.unpriced) */
enum {
	LC_UNPRICED_SEARCH = 1,       /* no web_search */
	LC_UNPRICED_PREVIEW = 2,      /* neither web_search_preview nor web_search */
	LC_UNPRICED_SEARCH_REQ = 4,   /* no search_request */
};

/* An unpriced model (unknown_models: "allow"): every rate 0, max_out -1. */
void lc_price_none(struct lc_price *p);

/* ---- entries ----
 * Validate one entry at JSON path `path` (errors name the field). 0 ok, -1 with err. */
int lc_price_entry_check(json_t *entry, const char *path, char *err, size_t errlen);
/* Compile a valid entry. */
void lc_price_compile(json_t *entry, struct lc_price *out);

/* ---- the built-in book (data/prices.json, embedded at build time) ----
 * The whole document (borrowed reference, parsed once), or NULL if it does not parse. */
json_t *lc_price_book(void);
/* Validate the book (every entry, every alias unique). 0 ok. */
int lc_price_book_check(char *err, size_t errlen);

/* ---- the effective table: book (when the policy says "price_book": "builtin") under policy prices ----
 * Object model -> entry, each entry with "origin": "book" | "policy" added (new reference). */
json_t *lc_prices_effective(json_t *policy_root);
/* Compile the effective table into dbi (model and every alias -> struct lc_price). */
int lc_prices_store(MDB_txn *txn, MDB_dbi dbi, json_t *policy_root);

/* ---- matching ----
 * The snapshot rule: drop one trailing "-YYYY-MM-DD", "-YYYYMMDD" or "-latest".
 * Writes the shorter name and returns 1, or returns 0 (no such suffix). */
int lc_model_snapshot_base(const char *model, char *out, size_t outlen);
/* Look a model up in a compiled table: exact, then by the snapshot rule. 0 found, MDB_NOTFOUND, or an LMDB error. */
int lc_price_find(MDB_txn *txn, MDB_dbi dbi, const char *model, struct lc_price *out);
/* The same over an effective table (llmcap prices): the entry (borrowed) and the name it matched, or NULL. */
json_t *lc_prices_match(json_t *effective, const char *model, const char **matched);

/* ---- tools the price cannot charge ----
 * The first tool the request enables whose fee p lacks ("web_search", "web_search_preview",
 * "web_search_options", "code_execution", "code_interpreter", "file_search", "image_generation"),
 * or NULL when every tool it enables is priced. Code execution containers are billed by the hour,
 * which no response reports: always unpriced, except Anthropic's with web_search/web_fetch
 * 20260209 or later in the request (free then). OpenAI file_search (per call plus storage) and
 * image_generation (image tokens at the image model's rates) are not in the book: unpriced.
 * README "Prices". */
const char *lc_price_unpriced_tool(const struct lc_price *p, const struct lc_reqinfo *info);

/* ---- cost (micro-USD) ---- */
/* Worst case for a request of at most in_tokens input and out_tokens output, web search fees
 * included (the request's bound on searches, else LC_WEB_DEFAULT_CALLS, at the dearest fee of the
 * search tools it enables, plus LC_WEB_CONTENT_TOKENS of search content a search); records the request's tier and search tools in p for lc_cost_settle. */
int64_t lc_cost_estimate(struct lc_price *p, const struct lc_reqinfo *info, int64_t in_tokens, int64_t out_tokens);
/* What the usage costs: the tier the response names (else the request's, else standard). */
int64_t lc_cost_settle(const struct lc_price *p, const struct lc_usage *u);

#endif
