/* test_golden.c - the golden price corpus (tests/golden/prices, one JSON file a case) through the real path:
 * the request's HTTP/1.1 bytes through lc_reqparse_feed and lc_admit_http (a policy with
 * "price_book": "builtin"), the provider's documented response (JSON or SSE) through
 * lc_resp_feed, then lc_settle. The charge must equal the invoice worked out by hand in the
 * case file, to the micro-USD; a "refused" case (a tool the book has no fee for) must be refused
 * with its status and message, and nothing counted. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "engine.h"
#include "sign.h"
#include "util.h"
#include "wire.h"
#include "state_fixture.h"

#define CORPUS "tests/golden/prices"

static char tmpdir[256];
static struct lc_signkey skey;
static struct lc_trust trust;

static void install(void)
{
	static const char doc[] =
		"{\"schema\":1,\"version\":1,\"issued_at\":\"2026-01-01T00:00:00Z\",\"expires_at\":\"2099-01-01T00:00:00Z\","
		"\"providers\":[{\"name\":\"openai\",\"format\":\"openai\",\"hosts\":[\"api.openai.com\"]},"
		"{\"name\":\"anthropic\",\"format\":\"anthropic\",\"hosts\":[\"api.anthropic.com\"]},"
		"{\"name\":\"ollama\",\"format\":\"openai\",\"hosts\":[\"localhost:11434\"]},"
		"{\"name\":\"vllm\",\"format\":\"openai\",\"hosts\":[\"localhost:8000\"]}],"
		"\"price_book\":\"builtin\",\"unknown_models\":\"block\",\"org\":{\"spend_cap_usd\":100000},"
		/* self-hosted models: no provider invoice, the operator's own rates (cited in those cases) */
		"\"prices\":{\"llama3.2\":{\"input\":0.10,\"output\":0.40},"
		"\"meta-llama/Llama-3.1-8B-Instruct\":{\"input\":0.05,\"cached_input\":0.025,\"output\":0.20},"
		"\"nomic-embed-text\":{\"input\":0.01,\"output\":0}}}";
	char err[512], *env = NULL;
	size_t envlen;

	assert_int_equal(lc_dsse_sign(&skey, doc, strlen(doc), &env, &envlen, err, sizeof(err)), 0);
	if (lc_apply_envelope(&trust, env, envlen, NULL, err, sizeof(err)))
		fail_msg("apply: %s", err);
	free(env);
}

/* the org's settled usage, micro-USD */
static int64_t org_used(void)
{
	json_t *st, *l;
	size_t i;
	int64_t used = -1;

	assert_int_equal(lc_status_json(&st), 0);
	json_array_foreach(json_object_get(st, "limits"), i, l)
		if (!strcmp(json_string_value(json_object_get(l, "scope")), "org"))
			used = (int64_t)(json_number_value(json_object_get(l, "used")) * 1e6 + 0.5);
	json_decref(st);
	return used;
}

/* one case: 0 when the charge matches, else -1 with why */
static int run_case(const char *file, json_t *c, char *why, size_t whylen)
{
	json_t *rq = json_object_get(c, "request"), *rs = json_object_get(c, "response"), *refused = json_object_get(c, "refused");
	static const struct {
		const char *provider, *host;
		int port;
	} hosts[] = {{"anthropic", "api.anthropic.com", 443}, {"ollama", "localhost", 11434}, {"vllm", "localhost", 8000}};
	const char *prov = json_string_value(json_object_get(c, "provider")), *host = "api.openai.com";
	int port = 443;
	char *body = json_dumps(json_object_get(rq, "body"), JSON_COMPACT), *rbody;
	int64_t want = json_integer_value(json_object_get(json_object_get(c, "invoice"), "micro_usd")), before, got;
	struct lc_reqparse rp;
	struct lc_decision d;
	struct lc_resp resp;
	struct lc_buf head;
	size_t used;
	int rc = -1;

	for (size_t i = 0; i < sizeof(hosts) / sizeof(hosts[0]); i++)
		if (!strcmp(prov, hosts[i].provider)) {
			host = hosts[i].host;
			port = hosts[i].port;
		}
	/* the request, as the client writes it */
	lc_buf_init(&head, 1 << 20);
	lc_buf_printf(&head, "%s %s HTTP/1.1\r\nhost: %s:%d\r\ncontent-type: application/json\r\ncontent-length: %zu\r\n\r\n%s",
		      json_string_value(json_object_get(rq, "method")), json_string_value(json_object_get(rq, "path")), host,
		      port, strlen(body), body);
	free(body);
	lc_reqparse_init(&rp);
	if (lc_reqparse_feed(&rp, head.data, head.len, &used) != LC_PARSE_DONE) {
		snprintf(why, whylen, "%s: the request does not parse", file);
		goto out_req;
	}
	before = org_used();
	if (refused) {
		/* a case the price cannot charge: refused before the provider, nothing counted */
		const char *what = json_string_value(json_object_get(refused, "message"));

		if (lc_admit_http(host, port, &rp, &d) != LC_OK || d.verdict == LC_ALLOW ||
		    d.status != json_integer_value(json_object_get(refused, "status")) || !strstr(d.message, what))
			snprintf(why, whylen, "%s: want a %lld naming \"%s\", got verdict %d status %d (%s)", file,
				 (long long)json_integer_value(json_object_get(refused, "status")), what, d.verdict, d.status,
				 d.message);
		else if (org_used() != before)
			snprintf(why, whylen, "%s: refused, yet %lld micro-USD counted", file, (long long)(org_used() - before));
		else
			rc = 0;
		if (d.verdict == LC_ALLOW)
			lc_settle(d.ticket, NULL, 500);
		goto out_req;
	}
	if (lc_admit_http(host, port, &rp, &d) != LC_OK || d.verdict != LC_ALLOW) {
		snprintf(why, whylen, "%s: not admitted (%d: %s)", file, d.status, d.message);
		goto out_req;
	}
	/* the response, as the provider documents it: a JSON body, or a stream's text (SSE or NDJSON) */
	if (json_is_string(json_object_get(rs, "sse")))
		rbody = strdup(json_string_value(json_object_get(rs, "sse")));
	else if (json_is_string(json_object_get(rs, "ndjson")))
		rbody = strdup(json_string_value(json_object_get(rs, "ndjson")));
	else
		rbody = json_dumps(json_object_get(rs, "body"), JSON_COMPACT);
	lc_buf_reset(&head);
	lc_buf_printf(&head, "HTTP/1.1 200 OK\r\ncontent-type: %s\r\ncontent-length: %zu\r\n\r\n%s",
		      json_string_value(json_object_get(rs, "content_type")), strlen(rbody), rbody);
	free(rbody);
	lc_resp_init(&resp, false);
	if (lc_resp_feed(&resp, head.data, head.len, &used) != LC_PARSE_DONE || !resp.usage.present) {
		snprintf(why, whylen, "%s: the response does not parse to usage", file);
		lc_settle(d.ticket, NULL, 500);
		goto out_resp;
	}
	assert_int_equal(lc_settle(d.ticket, &resp.usage, resp.status), LC_OK);
	got = org_used() - before;
	if (got != want)
		snprintf(why, whylen, "%s: charged %lld micro-USD, the invoice says %lld (usage in=%lld cached=%lld out=%lld)",
			 file, (long long)got, (long long)want, (long long)resp.usage.input,
			 (long long)resp.usage.cached_input, (long long)resp.usage.output);
	else
		rc = 0;
out_resp:
	lc_resp_free(&resp);
out_req:
	lc_reqparse_free(&rp);
	lc_buf_free(&head);
	return rc;
}

static int name_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static void test_golden_corpus(void **st)
{
	DIR *dir = opendir(CORPUS);
	struct dirent *de;
	char *names[256], path[512], why[1024];
	int n = 0, bad = 0, openai = 0, anthropic = 0, selfhosted = 0, refusals = 0;

	assert_non_null(dir);
	while ((de = readdir(dir)) && n < 256)
		if (strlen(de->d_name) > 5 && !strcmp(de->d_name + strlen(de->d_name) - 5, ".json"))
			names[n++] = strdup(de->d_name);
	closedir(dir);
	qsort(names, (size_t)n, sizeof(names[0]), name_cmp);
	install();
	for (int i = 0; i < n; i++) {
		json_error_t je;
		json_t *c;

		snprintf(path, sizeof(path), "%s/%s", CORPUS, names[i]);
		c = json_load_file(path, JSON_REJECT_DUPLICATES, &je);
		if (!c)
			fail_msg("%s: %s", path, je.text);
		/* every case cites the published price it is worked out from */
		assert_true(json_array_size(json_object_get(c, "prices")) >= 1);
		if (json_object_get(c, "refused"))
			refusals++;
		else
			assert_true(json_array_size(json_object_get(json_object_get(c, "invoice"), "work")) >= 2);
		if (!strcmp(json_string_value(json_object_get(c, "provider")), "anthropic"))
			anthropic++;
		else if (!strcmp(json_string_value(json_object_get(c, "provider")), "openai"))
			openai++;
		else
			selfhosted++;
		if (run_case(names[i], c, why, sizeof(why))) {
			print_message("%s\n", why);
			bad++;
		}
		json_decref(c);
		free(names[i]);
	}
	print_message("golden corpus: %d cases (%d OpenAI, %d Anthropic, %d self-hosted; %d of them refused as unpriced), "
		      "%d wrong\n", n, openai, anthropic, selfhosted, refusals, bad);
	assert_true(n - refusals >= 30);
	assert_true(openai >= 10 && anthropic >= 10);
	assert_int_equal(bad, 0);
}

static int setup(void **st)
{
	return lc_fixture_setup("golden", tmpdir, sizeof(tmpdir), &skey, &trust);
}

static int teardown(void **st)
{
	return lc_fixture_teardown(tmpdir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_golden_corpus),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
