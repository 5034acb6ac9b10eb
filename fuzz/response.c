/* response.c - fuzz target: the HTTP/1.1 response parser (lc_resp_*): status line,
 * 1xx interim responses, Content-Length, chunked and close-delimited bodies,
 * gzip/deflate, and the usage it reads from a JSON or text/event-stream body.
 *
 * Input: the bytes a provider sends back ("HEAD\n" in front: the answer to a
 * HEAD request). Fed whole and in pieces, then the connection is closed; both
 * runs must end alike.
 */
#include <string.h>

#include "fuzz.h"
#include "wire.h"

static int run(struct lc_resp *r, const uint8_t *d, size_t n, struct fuzz_split *sp, size_t *used)
{
	size_t k, u;
	int rc = r->state;

	*used = 0;
	while (*used < n && rc == LC_PARSE_MORE) {
		k = sp ? fuzz_split_next(sp, n - *used) : n - *used;
		rc = lc_resp_feed(r, d + *used, k, &u);
		FUZZ_CHECK(u <= k);
		FUZZ_CHECK(rc == r->state);
		*used += u;
		if (rc == LC_PARSE_MORE)
			FUZZ_CHECK(u == k);
	}
	if (rc == LC_PARSE_MORE)
		rc = lc_resp_eof(r);
	FUZZ_CHECK(rc == r->state && rc != LC_PARSE_MORE);
	return rc;
}

static void same_usage(const struct lc_usage *a, const struct lc_usage *b)
{
	FUZZ_CHECK(a->present == b->present);
	FUZZ_CHECK(a->input == b->input && a->cached_input == b->cached_input && a->output == b->output);
	FUZZ_CHECK(a->cache_write_5m == b->cache_write_5m && a->cache_write_1h == b->cache_write_1h);
	FUZZ_CHECK(a->audio_input == b->audio_input && a->image_input == b->image_input);
	FUZZ_CHECK(a->audio_cached == b->audio_cached && a->audio_output == b->audio_output);
	FUZZ_CHECK(a->reasoning == b->reasoning && a->web_search == b->web_search);
	FUZZ_CHECK(memchr(a->model, 0, sizeof a->model) && memchr(b->model, 0, sizeof b->model));
	FUZZ_CHECK(strcmp(a->model, b->model) == 0);
	FUZZ_CHECK(memchr(a->service_tier, 0, sizeof a->service_tier));
	FUZZ_CHECK(strcmp(a->service_tier, b->service_tier) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n)
{
	struct lc_resp whole, split;
	struct fuzz_split sp;
	size_t uw, us;
	bool head;
	int rw, rs;

	head = n >= 5 && memcmp(d, "HEAD\n", 5) == 0;
	if (head) {
		d += 5;
		n -= 5;
	}
	lc_resp_init(&whole, head);
	rw = run(&whole, d, n, NULL, &uw);
	lc_resp_init(&split, head);
	fuzz_split_init(&sp, d, n);
	rs = run(&split, d, n, &sp, &us);

	FUZZ_CHECK(rw == rs);
	FUZZ_CHECK(whole.status == split.status);
	if (rw == LC_PARSE_DONE) {
		FUZZ_CHECK(uw == us);
		FUZZ_CHECK(whole.sse == split.sse && whole.chunked == split.chunked);
		FUZZ_CHECK(whole.content_length == split.content_length);
		same_usage(&whole.usage, &split.usage);
	}
	lc_resp_free(&whole);
	lc_resp_free(&split);
	return 0;
}
