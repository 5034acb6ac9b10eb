/* request.c - fuzz target: the HTTP/1.1 request parser (lc_reqparse_*) and, on a
 * complete request, request-info extraction from its path, headers and body
 * (lc_reqinfo_parse), as the preload does for every request it holds.
 *
 * Input: the bytes a client writes. Fed whole and in pieces; both must end in
 * the same state with the same head, body and raw bytes.
 */
#include <string.h>

#include "fuzz.h"
#include "wire.h"

static int hdr(void *ctx, const char *name, char *out, size_t outlen)
{
	return lc_reqparse_header(ctx, name, out, outlen);
}

static void info(const struct lc_reqparse *p)
{
	static const char *const identify[] = {"header:x-customer-id", "body:user", "body:safety_identifier",
					       "body:metadata.user_id", NULL};
	struct lc_reqinfo ri;
	char err[256];

	for (int f = LC_FMT_OPENAI; f <= LC_FMT_ANTHROPIC; f++) {
		memset(&ri, 0xa5, sizeof ri);
		if (lc_reqinfo_parse((enum lc_format)f, p->path, p->body.data, p->body.len, identify, hdr,
				     (void *)p, &ri, err, sizeof err) == 0) {
			FUZZ_CHECK(memchr(ri.model, 0, sizeof ri.model));
			FUZZ_CHECK(memchr(ri.customer, 0, sizeof ri.customer));
			FUZZ_CHECK(memchr(ri.service_tier, 0, sizeof ri.service_tier));
			FUZZ_CHECK(ri.output_cap >= -1 && ri.output_cap <= (int64_t)1 << 40);
			FUZZ_CHECK(ri.input_estimate >= 0);
		} else {
			FUZZ_CHECK(memchr(err, 0, sizeof err));
		}
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n)
{
	struct lc_reqparse whole, split;
	struct fuzz_split sp;
	size_t used_whole, used_split = 0, k, u;
	int rw, rs = LC_PARSE_MORE;
	char v[256];

	lc_reqparse_init(&whole);
	rw = lc_reqparse_feed(&whole, d, n, &used_whole);
	FUZZ_CHECK(used_whole <= n);
	FUZZ_CHECK(rw == whole.state);

	lc_reqparse_init(&split);
	fuzz_split_init(&sp, d, n);
	while (used_split < n && rs == LC_PARSE_MORE) {
		k = fuzz_split_next(&sp, n - used_split);
		rs = lc_reqparse_feed(&split, d + used_split, k, &u);
		FUZZ_CHECK(u <= k);
		used_split += u;
		if (rs == LC_PARSE_MORE)
			FUZZ_CHECK(u == k);
	}
	if (n == 0)
		rs = split.state;
	FUZZ_CHECK(rs == rw);

	if (rw == LC_PARSE_DONE) {
		FUZZ_CHECK(used_split == used_whole);
		FUZZ_CHECK(whole.head_len == split.head_len);
		FUZZ_CHECK(strcmp(whole.method, split.method) == 0);
		FUZZ_CHECK(strcmp(whole.path, split.path) == 0);
		FUZZ_CHECK(whole.body.len == split.body.len);
		FUZZ_CHECK(whole.body.len == 0 || memcmp(whole.body.data, split.body.data, whole.body.len) == 0);
		FUZZ_CHECK(whole.raw.len == used_whole);
		FUZZ_CHECK(split.raw.len == used_split);
		FUZZ_CHECK(memcmp(whole.raw.data, d, used_whole) == 0);
		FUZZ_CHECK(memcmp(split.raw.data, d, used_split) == 0);
		if (lc_reqparse_header(&whole, "content-type", v, sizeof v) == 0)
			FUZZ_CHECK(strlen(v) < sizeof v);
		(void)lc_api_from_path(whole.path);
		info(&whole);
	}
	lc_reqparse_free(&whole);
	lc_reqparse_free(&split);
	return 0;
}
