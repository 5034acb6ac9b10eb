/* lc_multi - a libcurl multi-interface client for the preload tests.
 *
 *   lc_multi URL KEY N [--parallel P] [--stream] [--cacert F] [--fork K] [--pad BYTES] [--h2]
 *
 * Runs N POST /v1/chat/completions transfers through one multi handle, P at a time (default
 * 4), polling with curl_multi_poll. With --fork K the process forks K children that each run
 * the N transfers (the parent waits). One line per transfer on stdout:
 *   status=CODE retry_after=S should_retry=V limit=L ms=T body=FIRST_300_BYTES
 * (retry_after from CURLINFO_RETRY_AFTER, the rest from the header callback).
 */
#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

struct xfer {
	CURL *h;
	char body[4096];
	size_t blen;
	char should_retry[16];
	char limit[128];
	struct timeval t0;
};

static size_t on_body(char *p, size_t sz, size_t n, void *ud)
{
	struct xfer *x = ud;
	size_t k = sz * n, room = sizeof(x->body) - 1 - x->blen;

	memcpy(x->body + x->blen, p, k < room ? k : room);
	x->blen += k < room ? k : room;
	x->body[x->blen] = 0;
	return k;
}

static void hval(const char *line, size_t len, const char *name, char *out, size_t outlen)
{
	size_t nl = strlen(name), i;

	if (len <= nl + 1 || strncasecmp(line, name, nl) != 0 || line[nl] != ':')
		return;
	line += nl + 1;
	len -= nl + 1;
	while (len && (*line == ' ' || *line == '\t'))
		line++, len--;
	while (len && (line[len - 1] == '\r' || line[len - 1] == '\n' || line[len - 1] == ' '))
		len--;
	for (i = 0; i < len && i + 1 < outlen; i++)
		out[i] = line[i];
	out[i] = 0;
}

static size_t on_header(char *p, size_t sz, size_t n, void *ud)
{
	struct xfer *x = ud;

	hval(p, sz * n, "x-should-retry", x->should_retry, sizeof(x->should_retry));
	hval(p, sz * n, "x-llmcap-limit", x->limit, sizeof(x->limit));
	return sz * n;
}

static int run(const char *url, const char *key, int n, int par, int stream, const char *ca, int pad,
	       int h2)
{
	CURLM *m = curl_multi_init();
	struct xfer *xs = calloc((size_t)n, sizeof(*xs));
	struct curl_slist *hdrs = NULL;
	char auth[512], *body;
	int started = 0, running = 0, done = 0, i;

	snprintf(auth, sizeof(auth), "Authorization: Bearer %s", key);
	hdrs = curl_slist_append(hdrs, auth);
	hdrs = curl_slist_append(hdrs, "Content-Type: application/json");
	body = malloc((size_t)pad + 512);
	snprintf(body, (size_t)pad + 512,
		 "{\"model\":\"gpt-4o-mini\",\"max_tokens\":20,%s\"messages\":[{\"role\":\"user\","
		 "\"content\":\"hi%*s\"}]}",
		 stream ? "\"stream\":true,\"stream_options\":{\"include_usage\":true}," : "", pad, "");
	curl_multi_setopt(m, CURLMOPT_MAX_HOST_CONNECTIONS, (long)par);
	while (done < n) {
		CURLMsg *msg;
		int q;

		while (started < n && started - done < par) {
			struct xfer *x = &xs[started++];

			x->h = curl_easy_init();
			curl_easy_setopt(x->h, CURLOPT_URL, url);
			curl_easy_setopt(x->h, CURLOPT_HTTPHEADER, hdrs);
			curl_easy_setopt(x->h, CURLOPT_POSTFIELDS, body);
			curl_easy_setopt(x->h, CURLOPT_WRITEFUNCTION, on_body);
			curl_easy_setopt(x->h, CURLOPT_WRITEDATA, x);
			curl_easy_setopt(x->h, CURLOPT_HEADERFUNCTION, on_header);
			curl_easy_setopt(x->h, CURLOPT_HEADERDATA, x);
			curl_easy_setopt(x->h, CURLOPT_TIMEOUT, 10L);
			curl_easy_setopt(x->h, CURLOPT_ACCEPT_ENCODING, "");
			if (h2)
				curl_easy_setopt(x->h, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_2TLS);
			if (ca)
				curl_easy_setopt(x->h, CURLOPT_CAINFO, ca);
			gettimeofday(&x->t0, NULL);
			curl_multi_add_handle(m, x->h);
		}
		curl_multi_perform(m, &running);
		while ((msg = curl_multi_info_read(m, &q))) {
			struct xfer *x = NULL;
			long code = 0;
			curl_off_t ra = -1;
			struct timeval t1;

			if (msg->msg != CURLMSG_DONE)
				continue;
			for (i = 0; i < started; i++)
				if (xs[i].h == msg->easy_handle)
					x = &xs[i];
			gettimeofday(&t1, NULL);
			curl_easy_getinfo(msg->easy_handle, CURLINFO_RESPONSE_CODE, &code);
			curl_easy_getinfo(msg->easy_handle, CURLINFO_RETRY_AFTER, &ra);
			for (i = 0; x && i < (int)x->blen && i < 300; i++)
				if (x->body[i] == '\n' || x->body[i] == '\r')
					x->body[i] = ' ';
			printf("status=%ld result=%d retry_after=%lld should_retry=%s limit=%s ms=%ld body=%.300s\n",
			       code, (int)msg->data.result, (long long)ra,
			       x && x->should_retry[0] ? x->should_retry : "-", x && x->limit[0] ? x->limit : "-",
			       x ? (long)((t1.tv_sec - x->t0.tv_sec) * 1000 + (t1.tv_usec - x->t0.tv_usec) / 1000)
				 : -1L,
			       x ? x->body : "");
			fflush(stdout);
			curl_multi_remove_handle(m, msg->easy_handle);
			curl_easy_cleanup(msg->easy_handle);
			done++;
		}
		if (done < n)
			curl_multi_poll(m, NULL, 0, 100, NULL);
	}
	curl_multi_cleanup(m);
	curl_slist_free_all(hdrs);
	free(body);
	free(xs);
	return 0;
}

int main(int argc, char **argv)
{
	const char *ca = NULL;
	int par = 4, stream = 0, nfork = 0, pad = 0, h2 = 0, i, n;

	if (argc < 4) {
		fprintf(stderr, "usage: lc_multi URL KEY N [--parallel P] [--stream] [--cacert F] [--fork K] "
				"[--pad BYTES] [--h2]\n");
		return 2;
	}
	n = atoi(argv[3]);
	for (i = 4; i < argc; i++) {
		if (!strcmp(argv[i], "--parallel") && i + 1 < argc)
			par = atoi(argv[++i]);
		else if (!strcmp(argv[i], "--stream"))
			stream = 1;
		else if (!strcmp(argv[i], "--cacert") && i + 1 < argc)
			ca = argv[++i];
		else if (!strcmp(argv[i], "--fork") && i + 1 < argc)
			nfork = atoi(argv[++i]);
		else if (!strcmp(argv[i], "--pad") && i + 1 < argc)
			pad = atoi(argv[++i]);
		else if (!strcmp(argv[i], "--h2"))
			h2 = 1;
	}
	if (par < 1)
		par = 1;
	curl_global_init(CURL_GLOBAL_DEFAULT);
	if (nfork > 0) {
		int k, st, rc = 0;

		fflush(stdout);
		for (k = 0; k < nfork; k++) {
			pid_t p = fork();

			if (p == 0) {
				run(argv[1], argv[2], n, par, stream, ca, pad, h2);
				fflush(stdout);
				_exit(0);
			}
		}
		while (wait(&st) > 0)
			if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
				rc = 1;
		return rc;
	}
	return run(argv[1], argv[2], n, par, stream, ca, pad, h2);
}
