/* usage.c - fuzz target: usage from a complete JSON response body
 * (lc_usage_from_json) and from a text/event-stream (lc_sse_*), the two ways
 * the engine learns what a call cost.
 *
 * Input: a response body. The SSE parser is fed it whole and in pieces; both
 * must find the same usage, the same end and the same number of bad events.
 */
#include <string.h>

#include "fuzz.h"
#include "wire.h"

static void usage_ok(const struct lc_usage *u)
{
	FUZZ_CHECK(memchr(u->model, 0, sizeof u->model));
	FUZZ_CHECK(memchr(u->service_tier, 0, sizeof u->service_tier));
}

int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n)
{
	struct lc_usage u;
	struct lc_sse whole, split;
	struct fuzz_split sp;
	size_t off = 0, k;

	memset(&u, 0, sizeof u);
	if (lc_usage_from_json(d, n, &u) == 0)
		usage_ok(&u);

	lc_sse_init(&whole);
	(void)lc_sse_feed(&whole, d, n);
	lc_sse_finish(&whole);
	lc_sse_init(&split);
	fuzz_split_init(&sp, d, n);
	while (off < n) {
		k = fuzz_split_next(&sp, n - off);
		(void)lc_sse_feed(&split, d + off, k);
		off += k;
	}
	lc_sse_finish(&split);

	usage_ok(&whole.usage);
	FUZZ_CHECK(whole.done == split.done);
	FUZZ_CHECK(whole.errors == split.errors);
	FUZZ_CHECK(whole.usage.present == split.usage.present);
	FUZZ_CHECK(whole.usage.input == split.usage.input);
	FUZZ_CHECK(whole.usage.cached_input == split.usage.cached_input);
	FUZZ_CHECK(whole.usage.output == split.usage.output);
	FUZZ_CHECK(whole.usage.reasoning == split.usage.reasoning);
	FUZZ_CHECK(strcmp(whole.usage.model, split.usage.model) == 0);
	lc_sse_free(&whole);
	lc_sse_free(&split);
	return 0;
}
