/* reqinfo.c - fuzz target: request-info extraction (lc_reqinfo_parse) from a
 * request body on every API path and both provider formats: model, output cap,
 * stream flags, customer id from the body, the dearer token kinds it may use.
 *
 * Input: a request body (JSON, or not).
 */
#include <string.h>

#include "fuzz.h"
#include "wire.h"

static int hdr(void *ctx, const char *name, char *out, size_t outlen)
{
	(void)ctx;
	if (strcmp(name, "x-customer-id") != 0 || outlen < 5)
		return -1;
	memcpy(out, "cust", 5);
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n)
{
	static const char *const paths[] = {"/v1/chat/completions", "/v1/responses", "/v1/embeddings",
					    "/v1/messages", "/v1/completions", "/v1/models"};
	static const char *const identify[] = {"body:user", "body:metadata.user_id", "body:a.b.c.d",
					       "header:x-customer-id", NULL};
	struct lc_reqinfo ri;
	char err[256];

	for (size_t i = 0; i < sizeof paths / sizeof paths[0]; i++)
		for (int f = LC_FMT_OPENAI; f <= LC_FMT_ANTHROPIC; f++) {
			if (lc_reqinfo_parse((enum lc_format)f, paths[i], d, n, identify, hdr, NULL, &ri, err,
					     sizeof err) != 0) {
				FUZZ_CHECK(memchr(err, 0, sizeof err));
				continue;
			}
			FUZZ_CHECK(ri.api == lc_api_from_path(paths[i]));
			FUZZ_CHECK(memchr(ri.model, 0, sizeof ri.model));
			FUZZ_CHECK(memchr(ri.customer, 0, sizeof ri.customer));
			FUZZ_CHECK(memchr(ri.service_tier, 0, sizeof ri.service_tier));
			FUZZ_CHECK(ri.output_cap >= -1 && ri.output_cap <= (int64_t)1 << 40);
			FUZZ_CHECK(ri.input_estimate >= 0);
		}
	return 0;
}
