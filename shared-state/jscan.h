/* jscan.h - text checks and JSON reading for the wire formats: the one hex
 * digit decoder and the one UTF-8 check of the tree, the fast validating
 * scan that picks a few top-level members out of a request or response
 * body, and the jansson readers the request-info and usage code share.
 *
 * Internal to llmcap (never installed). Pure functions, no globals.
 */
#ifndef LC_JSCAN_H
#define LC_JSCAN_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- bytes ------------------------------------------------------------------ */
/* The value of one hex digit (0-9, a-f, A-F), -1 for any other byte. */
int lc_hexval(int c);
/* Length of the valid UTF-8 sequence at p (at most n bytes, n >= 1): 1 for
 * ASCII, 2 to 4 for a strict multi-byte sequence (no overlongs, no
 * surrogates, nothing above U+10FFFF), 0 when invalid or cut short. */
size_t lc_utf8_len(const unsigned char *p, size_t n);

/* ---- the fast scan -------------------------------------------------------------
 * Request and response bodies are mostly text we never look at (messages,
 * choices). Parsing all of it into a jansson tree costs more than the whole
 * LMDB transaction, so a validating scanner walks the body once, accepting
 * only a strict subset of what json_loadb accepts (ASCII-safe whitespace,
 * strict UTF-8, valid escapes and surrogate pairs, numbers that cannot
 * overflow, bounded depth, object keys without escapes), and remembers where
 * the last occurrence of each wanted top-level key's value lies (jansson keeps
 * the last duplicate). A small object holding just those values, each parsed
 * by jansson itself, then stands in for the full tree. Anything outside the
 * subset gives NULL and the caller parses the body with json_loadb, so
 * results and error messages are the same either way.
 */
struct lc_jpick {
	const char *key;        /* not NUL-terminated */
	size_t klen;
	const unsigned char *v; /* value span, NULL when absent */
	size_t vlen;
};
#define LC_JPICK_MAX 24
/* Appends a wanted key; returns the new count, or -1 past LC_JPICK_MAX (or when n < 0). */
int lc_jpick_add(struct lc_jpick *pk, int n, const char *key, size_t klen);
/* An object holding the picked top-level members of body, or NULL: parse it all with jansson. */
json_t *lc_jscan_subset(const void *body, size_t len, struct lc_jpick *pk, int npk);

/* ---- jansson readers ---------------------------------------------------------- */
/* Token counts above this are nonsense from any provider; refusing them keeps
 * every later sum and product (price x tokens, input + cache) far from overflow. */
#define LC_TOKENS_MAX ((int64_t)1 << 40)
/* A token count: absent/null -> 0 (out untouched), valid -> 1, wrong -> -1.
 * Integral reals ("1e3") are accepted: JSON does not distinguish them. */
int lc_json_count(json_t *obj, const char *key, int64_t *out);
/* The member at a dotted path ("metadata.user_id"), or NULL. */
json_t *lc_json_path(json_t *root, const char *dotted);
/* A non-empty string without NULs that fits a 128-byte field. */
bool lc_json_name(json_t *v, const char **s, size_t *n);
/* A model name into a 128-byte field; dst unchanged unless lc_json_name accepts v. */
void lc_json_model(char dst[128], json_t *v);

#endif
