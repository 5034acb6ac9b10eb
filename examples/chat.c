/* chat - send chat-completion requests through libllmcap and libcurl.
 *
 *   chat --url URL --key KEY [--model M] [--max-tokens N] [--count N] [--customer ID]
 *        [--cacert FILE] [--stream] [--anthropic] [--verbose]
 *
 * Prints each response's HTTP status on its own line (200, 429, ...). With
 * --verbose the body follows on stderr. This is the SDK's showcase: the
 * limits are the host's policy; the program only calls llmcap_curl_post().
 */
#include <curl/curl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "llmcap.h"

static void usage(FILE *f)
{
	fprintf(f, "usage: chat --url URL --key KEY [--model M] [--max-tokens N] [--count N] [--customer ID]\n"
		   "            [--cacert FILE] [--stream] [--anthropic] [--verbose]\n");
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{"url", required_argument, 0, 'u'},	  {"key", required_argument, 0, 'k'},
		{"model", required_argument, 0, 'm'},	  {"max-tokens", required_argument, 0, 't'},
		{"count", required_argument, 0, 'n'},	  {"customer", required_argument, 0, 'c'},
		{"cacert", required_argument, 0, 'a'},	  {"stream", no_argument, 0, 's'},
		{"anthropic", no_argument, 0, 'A'},	  {"verbose", no_argument, 0, 'v'},
		{"help", no_argument, 0, 'h'},		  {0, 0, 0, 0},
	};
	const char *url = NULL, *key = NULL, *model = "gpt-4o-mini", *customer = NULL, *cacert = NULL;
	long max_tokens = 64, count = 1;
	int stream = 0, anthropic = 0, verbose = 0, c, failures = 0;
	char auth[1024], cust[300], body[2048];
	llmcap *lc;
	CURL *easy;

	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (c) {
		case 'u': url = optarg; break;
		case 'k': key = optarg; break;
		case 'm': model = optarg; break;
		case 't': max_tokens = strtol(optarg, NULL, 10); break;
		case 'n': count = strtol(optarg, NULL, 10); break;
		case 'c': customer = optarg; break;
		case 'a': cacert = optarg; break;
		case 's': stream = 1; break;
		case 'A': anthropic = 1; break;
		case 'v': verbose = 1; break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (!url || !key || count < 1 || max_tokens < 0) {
		usage(stderr);
		return 2;
	}
	curl_global_init(CURL_GLOBAL_DEFAULT);
	if (llmcap_open(&lc, NULL) != LLMCAP_OK) {
		fprintf(stderr, "chat: llmcap_open failed\n");
		return 1;
	}
	easy = curl_easy_init();
	if (!easy)
		return 1;
	for (long i = 0; i < count; i++) {
		struct curl_slist *h = NULL;
		long status = 0;
		char *resp = NULL;
		size_t len = 0;
		llmcap_err e;

		if (anthropic) {
			snprintf(auth, sizeof(auth), "x-api-key: %s", key);
			h = curl_slist_append(h, "anthropic-version: 2023-06-01");
			snprintf(body, sizeof(body),
				 "{\"model\":\"%s\",\"max_tokens\":%ld,\"stream\":%s,"
				 "\"messages\":[{\"role\":\"user\",\"content\":\"Say hello (request %ld)\"}]}",
				 model, max_tokens, stream ? "true" : "false", i + 1);
		} else {
			snprintf(auth, sizeof(auth), "Authorization: Bearer %s", key);
			snprintf(body, sizeof(body),
				 "{\"model\":\"%s\",\"max_tokens\":%ld,%s"
				 "\"messages\":[{\"role\":\"user\",\"content\":\"Say hello (request %ld)\"}]}",
				 model, max_tokens,
				 stream ? "\"stream\":true,\"stream_options\":{\"include_usage\":true}," : "", i + 1);
		}
		h = curl_slist_append(h, auth);
		h = curl_slist_append(h, "Content-Type: application/json");
		if (customer) {
			snprintf(cust, sizeof(cust), "x-customer-id: %s", customer);
			h = curl_slist_append(h, cust);
		}
		curl_easy_reset(easy);
		curl_easy_setopt(easy, CURLOPT_TIMEOUT, 30L);
		if (cacert)
			curl_easy_setopt(easy, CURLOPT_CAINFO, cacert);
		e = llmcap_curl_post(lc, easy, url, h, body, strlen(body), &status, &resp, &len, NULL);
		curl_slist_free_all(h);
		if (e != LLMCAP_OK) {
			printf("error\n");
			fprintf(stderr, "chat: %s\n", llmcap_strerror(e));
			failures++;
		} else {
			printf("%ld\n", status);
			if (verbose)
				fprintf(stderr, "%s\n", resp);
		}
		fflush(stdout);
		llmcap_free(resp);
	}
	curl_easy_cleanup(easy);
	llmcap_close(lc);
	curl_global_cleanup();
	return failures ? 1 : 0;
}
