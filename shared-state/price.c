/* price.c - price entries (check, compile), the built-in book, model matching, cost.
 *
 * See price.h for the units and the rounding rule, README "Prices" for the
 * user-facing rules. One place per rule: the policy validator, the policy
 * compiler, `llmcap prices` and the engine all come here.
 */
#include "price.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "util.h"

/* data/prices.json, embedded by the build (Makefile: $(B)/gen/price_book.c) */
extern const unsigned char lc_price_book_data[];
extern const size_t lc_price_book_size;

#define NANO_PER_USD 1000000000.0
#define MAX_RATE_USD 1.0e6        /* per million tokens: far above any model */
#define MAX_FEE_USD 1.0e3         /* per tool call */
#define MAX_SEARCH_TOKENS 1000000 /* web_search_tokens: a fixed block of input tokens a call */
#define PPM 1000000

/* JSON name of each token class's rate, in enum lc_tok order */
static const char *const tok_field[LC_TOK_N] = {
	"input", "cached_input", "cache_write_5m", "cache_write_1h", "output",
	"audio_input", "audio_cached_input", "audio_output", "image_input",
};
static const char *const tier_names[LC_TIER_N] = {"standard", "batch", "flex", "priority"};

static bool output_side(int k)
{
	return k == LC_TOK_OUTPUT || k == LC_TOK_AUDIO_OUT;
}

int lc_tier_parse(const char *s, int otherwise)
{
	if (!s)
		return otherwise;
	if (!strcmp(s, "default") || !strcmp(s, "standard") || !strcmp(s, "standard_only"))
		return LC_TIER_STANDARD;
	for (int t = 1; t < LC_TIER_N; t++)
		if (!strcmp(s, tier_names[t]))
			return t;
	if (!strcmp(s, "auto"))
		return LC_TIER_AUTO;
	return otherwise;
}

const char *lc_tier_name(int t)
{
	return t >= 0 && t < LC_TIER_N ? tier_names[t] : "auto";
}

void lc_price_none(struct lc_price *p)
{
	memset(p, 0, sizeof(*p));
	p->lc_threshold = -1;
	p->max_out = -1;
	p->req_tier = LC_TIER_AUTO;
}

/* ---- checking an entry ------------------------------------------------------- */

#define FAIL(...) do { lc_errf(err, errlen, __VA_ARGS__); return -1; } while (0)

static int check_usd(json_t *v, const char *path, double max, char *err, size_t errlen)
{
	double d;

	if (!json_is_number(v))
		FAIL("%s: must be a number (USD)", path);
	d = json_number_value(v);
	if (isnan(d) || d < 0 || d > max)
		FAIL("%s: must be a non-negative amount of at most %g", path, max);
	return 0;
}

/* `extra` (NULL-terminated) names the fields allowed besides the rates */
static int check_rates(json_t *obj, const char *path, const char *const *extra, char *err, size_t errlen)
{
	const char *k;
	json_t *v;
	char p[400];

	json_object_foreach(obj, k, v) {
		bool rate = false, other = false;

		for (int i = 0; i < LC_TOK_N; i++)
			rate |= !strcmp(k, tok_field[i]);
		for (const char *const *e = extra; *e; e++)
			other |= !strcmp(k, *e);
		snprintf(p, sizeof(p), "%s.%s", path, k);
		if (!rate && !other)
			FAIL("%s: unknown field", p);
		if (rate && check_usd(v, p, MAX_RATE_USD, err, errlen))
			return -1;
	}
	return 0;
}

static int check_required(json_t *obj, const char *path, const char *const *names, const char *what, char *err,
			  size_t errlen)
{
	for (const char *const *n = names; *n; n++)
		if (!json_object_get(obj, *n))
			FAIL("%s.%s: is required (%s)", path, *n, what);
	return 0;
}

static int check_long_context(json_t *v, const char *path, char *err, size_t errlen)
{
	static const char *const extra[] = {"threshold", NULL};
	static const char *const req[] = {"threshold", "input", "output", NULL};
	json_t *t;

	if (!json_is_object(v))
		FAIL("%s: must be an object {threshold, input, output, ...}", path);
	if (check_rates(v, path, extra, err, errlen) || check_required(v, path, req, "long-context tier", err, errlen))
		return -1;
	t = json_object_get(v, "threshold");
	if (!json_is_integer(t) || json_integer_value(t) < 1 || json_integer_value(t) > ((int64_t)1 << 40))
		FAIL("%s.threshold: must be a positive integer (input tokens)", path);
	return 0;
}

static int check_tiers(json_t *v, const char *path, char *err, size_t errlen)
{
	static const char *const none[] = {NULL};
	const char *k;
	json_t *t;
	char p[400];

	if (!json_is_object(v))
		FAIL("%s: must be an object of tier -> multiplier or rates", path);
	json_object_foreach(v, k, t) {
		int tier = lc_tier_parse(k, -1);

		snprintf(p, sizeof(p), "%s.%s", path, k);
		if (tier <= LC_TIER_STANDARD || tier >= LC_TIER_N)
			FAIL("%s: unknown service tier (batch, flex or priority)", p);
		if (json_is_number(t)) {
			if (isnan(json_number_value(t)) || json_number_value(t) <= 0 || json_number_value(t) > 100)
				FAIL("%s: a multiplier must be above 0 and at most 100", p);
		} else if (!json_is_object(t)) {
			FAIL("%s: must be a multiplier or an object of rates", p);
		} else if (check_rates(t, p, none, err, errlen)) {
			return -1;
		}
	}
	return 0;
}

/* search_request's fields, in search_context_size order (NULL-terminated for check_required) */
static const char *const ctx_names[4] = {"low", "medium", "high", NULL};

/* {"low", "medium", "high"}: USD a request, each required */
static int check_search_request(json_t *v, const char *path, char *err, size_t errlen)
{
	const char *k;
	json_t *x;
	char p[400];

	if (!json_is_object(v))
		FAIL("%s: must be an object {low, medium, high} (USD a request)", path);
	if (check_required(v, path, ctx_names, "USD a request at that search_context_size", err, errlen))
		return -1;
	json_object_foreach(v, k, x) {
		snprintf(p, sizeof(p), "%s.%s", path, k);
		if (strcmp(k, "low") && strcmp(k, "medium") && strcmp(k, "high"))
			FAIL("%s: unknown field (low, medium or high)", p);
		if (check_usd(x, p, MAX_FEE_USD, err, errlen))
			return -1;
	}
	return 0;
}

static int check_aliases(json_t *v, const char *path, char *err, size_t errlen)
{
	size_t i;
	json_t *a;

	if (!json_is_array(v) || json_array_size(v) > 32)
		FAIL("%s: must be an array of at most 32 model names", path);
	json_array_foreach(v, i, a) {
		if (!json_is_string(a) || !json_string_length(a) || json_string_length(a) > 127)
			FAIL("%s[%zu]: must be a model name of 1 to 127 bytes", path, i);
	}
	return 0;
}

int lc_price_entry_check(json_t *e, const char *path, char *err, size_t errlen)
{
	static const char *const extra[] = {"max_output_tokens", "long_context", "service_tiers", "web_search",
					    "web_search_preview", "web_search_tokens", "search_request",
					    "aliases", "source", NULL};
	static const char *const req[] = {"input", "output", NULL};
	char p[400];
	json_t *v;

	if (!json_is_object(e))
		FAIL("%s: must be an object", path);
	if (check_rates(e, path, extra, err, errlen) ||
	    check_required(e, path, req, "USD per million tokens", err, errlen))
		return -1;
	v = json_object_get(e, "max_output_tokens");
	if (v && (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > ((int64_t)1 << 40)))
		FAIL("%s.max_output_tokens: must be a non-negative integer", path);
	snprintf(p, sizeof(p), "%s.long_context", path);
	if ((v = json_object_get(e, "long_context")) && check_long_context(v, p, err, errlen))
		return -1;
	snprintf(p, sizeof(p), "%s.service_tiers", path);
	if ((v = json_object_get(e, "service_tiers")) && check_tiers(v, p, err, errlen))
		return -1;
	snprintf(p, sizeof(p), "%s.web_search", path);
	if ((v = json_object_get(e, "web_search")) && check_usd(v, p, MAX_FEE_USD, err, errlen))
		return -1;
	snprintf(p, sizeof(p), "%s.web_search_preview", path);
	if ((v = json_object_get(e, "web_search_preview")) && check_usd(v, p, MAX_FEE_USD, err, errlen))
		return -1;
	v = json_object_get(e, "web_search_tokens");
	if (v && (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > MAX_SEARCH_TOKENS))
		FAIL("%s.web_search_tokens: must be an integer from 0 to %d (input tokens a call)", path, MAX_SEARCH_TOKENS);
	snprintf(p, sizeof(p), "%s.search_request", path);
	if ((v = json_object_get(e, "search_request")) && check_search_request(v, p, err, errlen))
		return -1;
	snprintf(p, sizeof(p), "%s.aliases", path);
	if ((v = json_object_get(e, "aliases")) && check_aliases(v, p, err, errlen))
		return -1;
	v = json_object_get(e, "source");
	if (v && (!json_is_string(v) || json_string_length(v) > 1000))
		FAIL("%s.source: must be a string (at most 1000 bytes)", path);
	return 0;
}

/* ---- compiling an entry ------------------------------------------------------ */

static int64_t nano(json_t *v)
{
	return llround(json_number_value(v) * NANO_PER_USD);
}

/* r * num / den, rounded half up; den <= 0 keeps r (no ratio to scale by) */
static int64_t scale(int64_t r, int64_t num, int64_t den)
{
	__int128 x;

	if (den <= 0)
		return r;
	x = ((__int128)r * num + den / 2) / den;
	return x > INT64_MAX ? INT64_MAX : (int64_t)x;
}

/* Rates given in obj; the others scale from base by obj's input (or output) over base's. */
static void rates_over(json_t *obj, const int64_t *base, int64_t *out)
{
	json_t *in = json_object_get(obj, "input"), *op = json_object_get(obj, "output");
	int64_t in_num = in ? nano(in) : base[LC_TOK_INPUT], out_num = op ? nano(op) : base[LC_TOK_OUTPUT];

	for (int k = 0; k < LC_TOK_N; k++) {
		json_t *v = json_object_get(obj, tok_field[k]);

		if (v)
			out[k] = nano(v);
		else if (output_side(k))
			out[k] = scale(base[k], out_num, base[LC_TOK_OUTPUT]);
		else
			out[k] = scale(base[k], in_num, base[LC_TOK_INPUT]);
	}
}

/* The entry's own rates with the documented defaults. */
static void base_rates(json_t *e, int64_t *r)
{
	static const struct { int k, from, num, den; } dflt[] = {
		{LC_TOK_CACHED, LC_TOK_INPUT, 1, 1},       {LC_TOK_CW5M, LC_TOK_INPUT, 5, 4},
		{LC_TOK_CW1H, LC_TOK_INPUT, 2, 1},         {LC_TOK_AUDIO_IN, LC_TOK_INPUT, 1, 1},
		{LC_TOK_AUDIO_CACHED, LC_TOK_CACHED, 1, 1}, {LC_TOK_AUDIO_OUT, LC_TOK_OUTPUT, 1, 1},
		{LC_TOK_IMAGE_IN, LC_TOK_INPUT, 1, 1},
	};

	for (int k = 0; k < LC_TOK_N; k++)
		r[k] = json_object_get(e, tok_field[k]) ? nano(json_object_get(e, tok_field[k])) : -1;
	for (size_t i = 0; i < sizeof(dflt) / sizeof(dflt[0]); i++)
		if (r[dflt[i].k] < 0)
			r[dflt[i].k] = scale(r[dflt[i].from], dflt[i].num, dflt[i].den);
}

void lc_price_compile(json_t *e, struct lc_price *p)
{
	int64_t base[LC_TOK_N], lcb[LC_TOK_N];
	json_t *lc = json_object_get(e, "long_context"), *tiers = json_object_get(e, "service_tiers"), *v;

	lc_price_none(p);
	base_rates(e, base);
	if (lc) {
		rates_over(lc, base, lcb);
		p->lc_threshold = json_integer_value(json_object_get(lc, "threshold"));
	} else {
		memcpy(lcb, base, sizeof(lcb));
	}
	for (int t = 0; t < LC_TIER_N; t++) {
		int64_t *r = p->rate[t][0];
		json_t *tv = t ? json_object_get(tiers, tier_names[t]) : NULL;

		if (json_is_object(tv)) {
			rates_over(tv, base, r);
		} else {
			int64_t ppm = json_is_number(tv) ? llround(json_number_value(tv) * PPM)
				      : t == LC_TIER_BATCH || t == LC_TIER_FLEX ? PPM / 2 : PPM;

			for (int k = 0; k < LC_TOK_N; k++)
				r[k] = scale(base[k], ppm, PPM);
		}
		/* long context on top of the tier: each class by its own long-context factor */
		for (int k = 0; k < LC_TOK_N; k++)
			p->rate[t][1][k] = base[k] > 0 ? scale(r[k], lcb[k], base[k]) : lcb[k];
	}
	v = json_object_get(e, "max_output_tokens");
	p->max_out = v ? json_integer_value(v) : -1;
	v = json_object_get(e, "web_search");
	p->web_search = v ? llround(json_number_value(v) * 1e6) : 0;
	if (!v)
		p->unpriced |= LC_UNPRICED_SEARCH;
	v = json_object_get(e, "web_search_preview");
	p->web_search_preview = v ? llround(json_number_value(v) * 1e6) : p->web_search;
	if (!v && !json_object_get(e, "web_search"))
		p->unpriced |= LC_UNPRICED_PREVIEW;
	v = json_object_get(e, "web_search_tokens");
	p->web_search_tokens = v ? json_integer_value(v) : 0;
	v = json_object_get(e, "search_request");
	for (int i = 0; i < 3; i++)
		p->search_request[i] = v ? llround(json_number_value(json_object_get(v, ctx_names[i])) * 1e6) : 0;
	if (!v)
		p->unpriced |= LC_UNPRICED_SEARCH_REQ;
}

/* The dearest fee of each tool over a compiled table: what an entry that lacks it is charged
 * (README "Prices": never a silent $0). */
struct dearest {
	int64_t web_search, web_search_preview, search_request[3];
};

static void dearest_add(struct dearest *d, const struct lc_price *p)
{
	if (!(p->unpriced & LC_UNPRICED_SEARCH) && p->web_search > d->web_search)
		d->web_search = p->web_search;
	if (!(p->unpriced & LC_UNPRICED_PREVIEW) && p->web_search_preview > d->web_search_preview)
		d->web_search_preview = p->web_search_preview;
	for (int i = 0; !(p->unpriced & LC_UNPRICED_SEARCH_REQ) && i < 3; i++)
		if (p->search_request[i] > d->search_request[i])
			d->search_request[i] = p->search_request[i];
}

static void dearest_fill(const struct dearest *d, struct lc_price *p)
{
	if (p->unpriced & LC_UNPRICED_SEARCH)
		p->web_search = d->web_search;
	if (p->unpriced & LC_UNPRICED_PREVIEW)
		p->web_search_preview = d->web_search_preview;
	for (int i = 0; (p->unpriced & LC_UNPRICED_SEARCH_REQ) && i < 3; i++)
		p->search_request[i] = d->search_request[i];
}

/* ---- the built-in book ------------------------------------------------------- */

static json_t *book;
static pthread_once_t book_once = PTHREAD_ONCE_INIT;

static void book_load(void)
{
	json_error_t je;

	book = json_loadb((const char *)lc_price_book_data, lc_price_book_size, JSON_REJECT_DUPLICATES, &je);
	if (!book)
		lc_log(LC_LOG_ERROR, "built-in price book: line %d: %s", je.line, je.text);
}

json_t *lc_price_book(void)
{
	pthread_once(&book_once, book_load);
	return book;
}

static json_t *book_models(void)
{
	return json_object_get(lc_price_book(), "models");
}

/* name -> entry for every model name and alias, in precedence order: aliases, then
 * names; book, then policy (later wins). New reference. */
static json_t *flat_table(json_t *effective)
{
	json_t *flat = json_object(), *e, *a;
	const char *name;
	size_t i;

	if (!flat)
		return NULL;
	for (int pass = 0; pass < 4; pass++) {
		bool policy = pass >= 2, names = pass % 2;

		json_object_foreach(effective, name, e) {
			if (!strcmp(json_string_value(json_object_get(e, "origin")), "policy") != policy)
				continue;
			if (names) {
				json_object_set(flat, name, e);
				continue;
			}
			json_array_foreach(json_object_get(e, "aliases"), i, a)
				json_object_set(flat, json_string_value(a), e);
		}
	}
	return flat;
}

static int book_name(json_t *seen, const char *path, const char *name, char *err, size_t errlen)
{
	if (json_object_get(seen, name))
		FAIL("%s: the name %s is already taken", path, name);
	json_object_set_new(seen, name, json_true());
	return 0;
}

static int book_check_in(json_t *seen, char *err, size_t errlen)
{
	json_t *b = lc_price_book(), *e, *a;
	const char *name;
	char p[300];
	size_t i;

	if (!json_is_object(b) || !json_is_integer(json_object_get(b, "version")) ||
	    !json_is_string(json_object_get(b, "date")) || !json_is_object(book_models()))
		FAIL("price book: must be an object with version, date and models");
	json_object_foreach(book_models(), name, e) {
		snprintf(p, sizeof(p), "models.%s", name);
		if (lc_price_entry_check(e, p, err, errlen) || book_name(seen, p, name, err, errlen))
			return -1;
		if (!json_is_string(json_object_get(e, "source")))
			FAIL("%s.source: the book cites a source for every entry", p);
		json_array_foreach(json_object_get(e, "aliases"), i, a)
			if (book_name(seen, p, json_string_value(a), err, errlen))
				return -1;
	}
	return 0;
}

int lc_price_book_check(char *err, size_t errlen)
{
	json_t *seen = json_object();
	int rc = seen ? book_check_in(seen, err, errlen) : -1;

	json_decref(seen);
	return rc;
}

static bool uses_book(json_t *policy_root)
{
	json_t *v = json_object_get(policy_root, "price_book");

	return json_is_string(v) && !strcmp(json_string_value(v), "builtin");
}

json_t *lc_prices_effective(json_t *policy_root)
{
	json_t *out = json_object(), *e, *c;
	const char *name;

	if (!out)
		return NULL;
	for (int pass = 0; pass < 2; pass++) {
		json_t *src = pass ? json_object_get(policy_root, "prices") : uses_book(policy_root) ? book_models() : NULL;

		json_object_foreach(src, name, e) {
			c = json_copy(e);
			if (!c)
				continue;
			json_object_set_new(c, "origin", json_string(pass ? "policy" : "book"));
			json_object_set_new(out, name, c);
		}
	}
	return out;
}

int lc_prices_store(MDB_txn *txn, MDB_dbi dbi, json_t *policy_root)
{
	json_t *eff = lc_prices_effective(policy_root), *flat = eff ? flat_table(eff) : NULL, *e;
	struct dearest d = {0};
	struct lc_price p;
	const char *name;
	int rc = 0;

	if (!flat) {
		json_decref(eff);
		return ENOMEM;
	}

	json_object_foreach(flat, name, e) {
		lc_price_compile(e, &p);
		dearest_add(&d, &p);
	}
	json_object_foreach(flat, name, e) {
		MDB_val k = {.mv_size = strlen(name), .mv_data = (void *)name}, v = {.mv_size = sizeof(p), .mv_data = &p};

		lc_price_compile(e, &p);
		dearest_fill(&d, &p);
		if ((rc = mdb_put(txn, dbi, &k, &v, 0)))
			break;
	}
	json_decref(flat);
	json_decref(eff);
	return rc;
}

/* ---- matching ---------------------------------------------------------------- */

static bool digits(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (s[i] < '0' || s[i] > '9')
			return false;
	return true;
}

static bool date_ok(const char *y, const char *m, const char *d)
{
	int mm = (m[0] - '0') * 10 + m[1] - '0', dd = (d[0] - '0') * 10 + d[1] - '0';

	return (y[0] == '1' || y[0] == '2') && mm >= 1 && mm <= 12 && dd >= 1 && dd <= 31;
}

int lc_model_snapshot_base(const char *model, char *out, size_t outlen)
{
	size_t n = strlen(model), cut = 0;
	const char *s;

	if (n > 7 && !strcmp(model + n - 7, "-latest")) {
		cut = 7;
	} else if (n > 11) {
		s = model + n - 11;  /* -YYYY-MM-DD */
		if (s[0] == '-' && digits(s + 1, 4) && s[5] == '-' && digits(s + 6, 2) && s[8] == '-' &&
		    digits(s + 9, 2) && date_ok(s + 1, s + 6, s + 9))
			cut = 11;
	}
	if (!cut && n > 9) {
		s = model + n - 9;   /* -YYYYMMDD */
		if (s[0] == '-' && digits(s + 1, 8) && date_ok(s + 1, s + 5, s + 7))
			cut = 9;
	}
	if (!cut || n - cut + 1 > outlen)
		return 0;
	memcpy(out, model, n - cut);
	out[n - cut] = '\0';
	return 1;
}

int lc_price_find(MDB_txn *txn, MDB_dbi dbi, const char *model, struct lc_price *out)
{
	char base[128];
	const char *names[2] = {model, NULL};
	int rc = MDB_NOTFOUND;

	if (!model || !*model)
		return MDB_NOTFOUND;
	if (lc_model_snapshot_base(model, base, sizeof(base)))
		names[1] = base;
	for (int i = 0; i < 2 && names[i] && rc == MDB_NOTFOUND; i++) {
		MDB_val k = {.mv_size = strlen(names[i]), .mv_data = (void *)names[i]}, v;

		rc = mdb_get(txn, dbi, &k, &v);
		if (rc == 0 && v.mv_size != sizeof(*out))
			rc = MDB_CORRUPTED;
		if (rc == 0)
			memcpy(out, v.mv_data, sizeof(*out));
	}
	return rc;
}

json_t *lc_prices_match(json_t *effective, const char *model, const char **matched)
{
	static __thread char base[128];
	json_t *flat = flat_table(effective), *e;

	*matched = model;
	e = json_object_get(flat, model);
	if (!e && lc_model_snapshot_base(model, base, sizeof(base)) && (e = json_object_get(flat, base)))
		*matched = base;
	json_decref(flat);  /* the entry is still held by `effective` */
	return e;
}

/* ---- cost -------------------------------------------------------------------- */

/* tokens x nano-USD per million tokens = 1e-15 USD (femto-USD); costs are summed in those */
#define FEMTO_PER_MICRO 1000000000

static int64_t to_micro(__int128 femto)
{
	__int128 c = (femto + FEMTO_PER_MICRO - 1) / FEMTO_PER_MICRO;  /* rounded up once */

	return c > INT64_MAX ? INT64_MAX : c < 0 ? 0 : (int64_t)c;
}

static __int128 part(int64_t tokens, int64_t rate)
{
	return tokens > 0 && rate > 0 ? (__int128)tokens * rate : 0;
}

/* the dearest rate of one side a request may be billed at */
static int64_t worst_rate(const int64_t *r, bool output, uint8_t may)
{
	int64_t w = r[output ? LC_TOK_OUTPUT : LC_TOK_INPUT];

	if (!output && (may & (LC_MAY_CACHE_5M | LC_MAY_CACHE_1H)) && r[LC_TOK_CW5M] > w)
		w = r[LC_TOK_CW5M];
	if (!output && (may & LC_MAY_CACHE_1H) && r[LC_TOK_CW1H] > w)
		w = r[LC_TOK_CW1H];
	if (!output && (may & LC_MAY_AUDIO_IN) && r[LC_TOK_AUDIO_IN] > w)
		w = r[LC_TOK_AUDIO_IN];
	if (output && (may & LC_MAY_AUDIO_OUT) && r[LC_TOK_AUDIO_OUT] > w)
		w = r[LC_TOK_AUDIO_OUT];
	return w;
}

/* p->req_web: the request went to a Chat Completions search model (a fee a request) */
#define REQ_SEARCH_MODEL 0x80

/* The dearest one web search call may cost at rates r (femto-USD), among the search tools `web`
 * (LC_WEB_*) names: the web_search tool's fee plus its fixed block of input tokens, or the
 * web_search_preview tool's fee. A response's calls do not say which tool made them. */
static __int128 search_call(const struct lc_price *p, const int64_t *r, uint8_t web)
{
	__int128 s = (__int128)p->web_search * FEMTO_PER_MICRO + part(p->web_search_tokens, r[LC_TOK_INPUT]);
	__int128 v = (__int128)p->web_search_preview * FEMTO_PER_MICRO;

	if (!(web & LC_WEB_PREVIEW))
		return s;
	if (!(web & LC_WEB_SEARCH))
		return v;
	return s > v ? s : v;
}

/* the request's search fees at rates r: `calls` web search calls plus a search model's request fee */
static __int128 search_fees(const struct lc_price *p, const int64_t *r, int64_t calls)
{
	__int128 c = calls > 0 ? calls * search_call(p, r, p->req_web) : 0;

	if (p->req_web & REQ_SEARCH_MODEL)
		c += (__int128)p->search_request[p->req_ctx < 3 ? p->req_ctx : 1] * FEMTO_PER_MICRO;
	return c;
}

/* Estimate only: the search content `calls` searches may add to the input (LC_WEB_CONTENT_TOKENS a
 * call at the dearest input rate `in_rate`); the usage reports it at settle. None for a model
 * whose search content is a fixed block (web_search_tokens, in search_call already). */
static __int128 search_content(const struct lc_price *p, int64_t in_rate, int64_t calls)
{
	if (calls <= 0 || p->web_search_tokens > 0)
		return 0;
	return calls * part(LC_WEB_CONTENT_TOKENS, in_rate);
}

const char *lc_price_unpriced_tool(const struct lc_price *p, const struct lc_reqinfo *info)
{
	if (!info)
		return NULL;
	if ((info->web & LC_WEB_SEARCH) && (p->unpriced & LC_UNPRICED_SEARCH))
		return "web_search";
	if ((info->web & LC_WEB_PREVIEW) && (p->unpriced & LC_UNPRICED_PREVIEW))
		return "web_search_preview";
	if ((info->web & LC_WEB_OPTIONS) && info->api == LC_API_CHAT && (p->unpriced & LC_UNPRICED_SEARCH_REQ))
		return "web_search_options";
	if ((info->web & LC_WEB_CODE) && !(info->web & LC_WEB_CODE_FREE))
		return info->api == LC_API_MESSAGES ? "code_execution" : "code_interpreter";
	if (info->web & LC_WEB_FILE_SEARCH)
		return "file_search";
	if (info->web & LC_WEB_IMAGE_GEN)
		return "image_generation";
	return NULL;
}

int64_t lc_cost_estimate(struct lc_price *p, const struct lc_reqinfo *info, int64_t in_tokens, int64_t out_tokens)
{
	int lc = p->lc_threshold >= 0 && in_tokens > p->lc_threshold;
	uint8_t web = info ? info->web & (LC_WEB_SEARCH | LC_WEB_PREVIEW | LC_WEB_OPTIONS) : 0;
	/* searches a request may run: its own bound, else the documented default */
	int64_t calls = !(web & (LC_WEB_SEARCH | LC_WEB_PREVIEW)) ? 0
			: info->web_max_calls >= 0 ? info->web_max_calls : LC_WEB_DEFAULT_CALLS;
	__int128 worst = 0;

	p->req_ctx = info && info->search_ctx < 3 ? info->search_ctx : 1;
	/* a search model pays its fee on every Chat Completions call; a model without the fee only
	 * when web_search_options asks for a search (at the dearest fee, lc_price_unpriced_tool) */
	if (info && info->api == LC_API_CHAT && p->search_request[p->req_ctx] > 0 &&
	    (!(p->unpriced & LC_UNPRICED_SEARCH_REQ) || (web & LC_WEB_OPTIONS)))
		web |= REQ_SEARCH_MODEL;
	p->req_web = web;
	p->req_tier = (uint8_t)lc_tier_parse(info ? info->service_tier : NULL, LC_TIER_AUTO);
	for (int t = 0; t < LC_TIER_N; t++) {
		const int64_t *r = p->rate[t][lc];
		uint8_t may = info ? info->may : 0;
		__int128 c;

		/* a request that names no tier may be served at priority (a project default) */
		if (p->req_tier == LC_TIER_AUTO ? (t != LC_TIER_STANDARD && t != LC_TIER_PRIORITY) : t != p->req_tier)
			continue;
		c = part(in_tokens, worst_rate(r, false, may)) + part(out_tokens, worst_rate(r, true, may)) +
		    search_fees(p, r, calls) + search_content(p, worst_rate(r, false, may), calls);
		if (c > worst)
			worst = c;
	}
	return to_micro(worst);
}

static int64_t clamp(int64_t v, int64_t hi)
{
	return v < 0 ? 0 : v > hi ? hi : v;
}

/* The usage split into token classes: every count is a part of input, cached_input or output,
 * and the text class is what is left of its total. */
static void usage_classes(const struct lc_usage *u, int64_t n[LC_TOK_N])
{
	int64_t in = u->input > 0 ? u->input : 0, ca = u->cached_input > 0 ? u->cached_input : 0;
	int64_t out = u->output > 0 ? u->output : 0;

	memset(n, 0, sizeof(int64_t) * LC_TOK_N);
	n[LC_TOK_CW1H] = clamp(u->cache_write_1h, in);
	n[LC_TOK_CW5M] = clamp(u->cache_write_5m, in - n[LC_TOK_CW1H]);
	n[LC_TOK_AUDIO_IN] = clamp(u->audio_input, in - n[LC_TOK_CW1H] - n[LC_TOK_CW5M]);
	n[LC_TOK_IMAGE_IN] = clamp(u->image_input, in - n[LC_TOK_CW1H] - n[LC_TOK_CW5M] - n[LC_TOK_AUDIO_IN]);
	n[LC_TOK_INPUT] = in - n[LC_TOK_CW1H] - n[LC_TOK_CW5M] - n[LC_TOK_AUDIO_IN] - n[LC_TOK_IMAGE_IN];
	n[LC_TOK_AUDIO_CACHED] = clamp(u->audio_cached, ca);
	n[LC_TOK_CACHED] = ca - n[LC_TOK_AUDIO_CACHED];
	n[LC_TOK_AUDIO_OUT] = clamp(u->audio_output, out);
	n[LC_TOK_OUTPUT] = out - n[LC_TOK_AUDIO_OUT];
}

int64_t lc_cost_settle(const struct lc_price *p, const struct lc_usage *u)
{
	/* the tier the response names; else the one asked for; else standard */
	int tier = lc_tier_parse(u->service_tier[0] ? u->service_tier : NULL, LC_TIER_AUTO);
	int64_t n[LC_TOK_N], in_all = 0;
	const int64_t *r;
	__int128 c = 0;
	uint8_t unpriced;

	if (tier == LC_TIER_AUTO)
		tier = p->req_tier < LC_TIER_N ? p->req_tier : LC_TIER_STANDARD;
	usage_classes(u, n);
	for (int k = 0; k < LC_TOK_N; k++)
		if (!output_side(k))
			in_all += n[k];
	/* past the threshold the whole request is priced at the long-context tier */
	r = p->rate[tier][p->lc_threshold >= 0 && in_all > p->lc_threshold];
	for (int k = 0; k < LC_TOK_N; k++)
		c += part(n[k], r[k]);
	c += search_fees(p, r, u->web_search);
	/* calls the entry has no fee for: charged at the dearest fee of the table, said out loud */
	unpriced = (p->req_web & LC_WEB_PREVIEW) && !(p->req_web & LC_WEB_SEARCH) ? LC_UNPRICED_PREVIEW : LC_UNPRICED_SEARCH;
	if (u->web_search > 0 && (p->unpriced & unpriced))
		lc_log(LC_LOG_ERROR, "warning: %s: %lld web search call(s) the model's price has no fee for, charged at "
		       "the dearest fee in the price table (%lld micro-USD a call)", u->model[0] ? u->model : "a model",
		       (long long)u->web_search, (long long)(unpriced == LC_UNPRICED_PREVIEW ? p->web_search_preview : p->web_search));
	return to_micro(c);
}
