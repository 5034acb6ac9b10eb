/* policy.c - fuzz target: the strict policy parser and validator (lc_policy_parse)
 * and, on a valid policy, the effective price table built from it
 * (lc_prices_effective over the built-in price book), compiled entry by entry.
 *
 * Input: a policy document (JSON).
 */
#include <string.h>

#include "fuzz.h"
#include "policy.h"
#include "price.h"

int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n)
{
	struct lc_policy *p = NULL;
	char err[512];

	if (lc_policy_parse(d, n, &p, err, sizeof err) != 0) {
		FUZZ_CHECK(memchr(err, 0, sizeof err) && err[0]);
		return 0;
	}
	FUZZ_CHECK(p && json_is_object(p->root));
	json_t *prices = lc_prices_effective(p->root);
	if (prices) {
		const char *model;
		json_t *entry;
		struct lc_price pr;
		json_object_foreach(prices, model, entry)
			lc_price_compile(entry, &pr);   /* as lc_prices_store does for every entry */
		json_decref(prices);
	}
	lc_policy_free(p);
	return 0;
}
