/* preload_bench - latency the preload adds per allowed request (bench/bench_preload.sh).
 *
 *   preload_bench server PORT [CERT KEY]     a fast stand-in provider (HTTP/1.1 keep-alive, TLS when
 *                                            CERT/KEY are given; libssl loaded with dlopen so this
 *                                            file links like every bench program)
 *   preload_bench client URL KEY N [--cacert F] [--stream] [--pad BYTES]
 *                                            N POSTs on one keep-alive libcurl handle (after 50 warm-up
 *                                            calls); prints one latency per line in microseconds
 *   preload_bench engine HOST PORT KEY N     the engine's part of one allowed request, in process:
 *                                            parse the same 1 KiB request, lc_admit_http, parse the
 *                                            response, lc_settle; one latency per line
 *
 * The server answers a chat completion with usage; with "stream":true in the body it answers an
 * SSE stream (chunked) whose last event carries the usage.
 */
#include <arpa/inet.h>
#include <curl/curl.h>
#include <dlfcn.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "engine.h"
#include "wire.h"

/* ---- server ---- */

static void *(*p_TLS_server_method)(void);
static void *(*p_SSL_CTX_new)(void *);
static int (*p_SSL_CTX_use_certificate_chain_file)(void *, const char *);
static int (*p_SSL_CTX_use_PrivateKey_file)(void *, const char *, int);
static void *(*p_SSL_new)(void *);
static int (*p_SSL_set_fd)(void *, int);
static int (*p_SSL_accept)(void *);
static int (*p_SSL_read)(void *, void *, int);
static int (*p_SSL_write)(void *, const void *, int);
static void (*p_SSL_free)(void *);
static void *ctx;

struct srv_conn {
	int fd;
	void *ssl;
};

static int c_read(struct srv_conn *c, char *b, int n)
{
	return c->ssl ? p_SSL_read(c->ssl, b, n) : (int)read(c->fd, b, (size_t)n);
}

static int c_write_all(struct srv_conn *c, const char *b, size_t n)
{
	while (n) {
		int k = c->ssl ? p_SSL_write(c->ssl, b, (int)n) : (int)write(c->fd, b, n);

		if (k <= 0)
			return -1;
		b += k;
		n -= (size_t)k;
	}
	return 0;
}

static const char JSON_BODY[] =
	"{\"id\":\"chatcmpl-bench\",\"object\":\"chat.completion\",\"model\":\"gpt-4o-mini\",\"choices\":[{\"index\":0,"
	"\"message\":{\"role\":\"assistant\",\"content\":\"Hello from the bench provider.\"},\"finish_reason\":\"stop\"}],"
	"\"usage\":{\"prompt_tokens\":300,\"completion_tokens\":7,\"total_tokens\":307}}";

static void answer(struct srv_conn *c, int stream)
{
	char buf[8192];
	int n;

	if (!stream) {
		n = snprintf(buf, sizeof(buf),
			     "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %zu\r\n"
			     "connection: keep-alive\r\n\r\n%s",
			     sizeof(JSON_BODY) - 1, JSON_BODY);
		c_write_all(c, buf, (size_t)n);
		return;
	}
	{
		static const char *const ev[] = {
			"data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"model\":\"gpt-4o-mini\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hello\"}}]}\n\n",
			"data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"model\":\"gpt-4o-mini\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\" there\"}}]}\n\n",
			"data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"model\":\"gpt-4o-mini\",\"choices\":[],\"usage\":{\"prompt_tokens\":300,\"completion_tokens\":2,\"total_tokens\":302}}\n\n",
			"data: [DONE]\n\n",
		};
		size_t i, off;

		off = (size_t)snprintf(buf, sizeof(buf),
				       "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
				       "transfer-encoding: chunked\r\nconnection: keep-alive\r\n\r\n");
		for (i = 0; i < sizeof(ev) / sizeof(ev[0]); i++)
			off += (size_t)snprintf(buf + off, sizeof(buf) - off, "%zx\r\n%s\r\n", strlen(ev[i]), ev[i]);
		off += (size_t)snprintf(buf + off, sizeof(buf) - off, "0\r\n\r\n");
		c_write_all(c, buf, off);
	}
}

static void *serve(void *arg)
{
	struct srv_conn *c = arg;
	static __thread char buf[1 << 17];
	size_t have = 0;

	if (ctx) {
		c->ssl = p_SSL_new(ctx);
		p_SSL_set_fd(c->ssl, c->fd);
		if (p_SSL_accept(c->ssl) != 1)
			goto out;
	}
	for (;;) {
		char *eoh;
		size_t head, clen = 0, need;
		const char *cl;
		int k;

		while (!(eoh = memmem(buf, have, "\r\n\r\n", 4))) {
			if (have == sizeof(buf) || (k = c_read(c, buf + have, (int)(sizeof(buf) - have))) <= 0)
				goto out;
			have += (size_t)k;
		}
		head = (size_t)(eoh - buf) + 4;
		cl = strcasestr(buf, "content-length:");
		if (cl && cl < eoh)
			clen = strtoul(cl + 15, NULL, 10);
		need = head + clen;
		if (need > sizeof(buf))
			goto out;
		while (have < need) {
			if ((k = c_read(c, buf + have, (int)(sizeof(buf) - have))) <= 0)
				goto out;
			have += (size_t)k;
		}
		answer(c, memmem(buf + head, clen, "\"stream\":true", 13) != NULL);
		memmove(buf, buf + need, have - need);
		have -= need;
	}
out:
	if (c->ssl)
		p_SSL_free(c->ssl);
	close(c->fd);
	free(c);
	return NULL;
}

#define SYM(name)                                                            \
	do {                                                                 \
		*(void **)&p_##name = dlsym(h, #name);                        \
		if (!p_##name) {                                              \
			fprintf(stderr, "preload_bench: no %s in libssl\n", #name); \
			return 1;                                             \
		}                                                             \
	} while (0)

static int server(int argc, char **argv)
{
	struct sockaddr_in a;
	int one = 1, ls;

	signal(SIGPIPE, SIG_IGN);
	if (argc >= 5) {
		void *h = dlopen("libssl.so.3", RTLD_NOW | RTLD_GLOBAL);

		if (!h)
			h = dlopen("libssl.so", RTLD_NOW | RTLD_GLOBAL);
		if (!h) {
			fprintf(stderr, "preload_bench: cannot load libssl: %s\n", dlerror());
			return 1;
		}
		SYM(TLS_server_method);
		SYM(SSL_CTX_new);
		SYM(SSL_CTX_use_certificate_chain_file);
		SYM(SSL_CTX_use_PrivateKey_file);
		SYM(SSL_new);
		SYM(SSL_set_fd);
		SYM(SSL_accept);
		SYM(SSL_read);
		SYM(SSL_write);
		SYM(SSL_free);
		ctx = p_SSL_CTX_new(p_TLS_server_method());
		if (!ctx || p_SSL_CTX_use_certificate_chain_file(ctx, argv[3]) != 1 ||
		    p_SSL_CTX_use_PrivateKey_file(ctx, argv[4], 1) != 1) {
			fprintf(stderr, "preload_bench: bad certificate or key\n");
			return 1;
		}
	}
	ls = socket(AF_INET, SOCK_STREAM, 0);
	setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	memset(&a, 0, sizeof(a));
	a.sin_family = AF_INET;
	a.sin_port = htons((unsigned short)atoi(argv[2]));
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (bind(ls, (struct sockaddr *)&a, sizeof(a)) != 0 || listen(ls, 64) != 0) {
		perror("preload_bench: bind");
		return 1;
	}
	for (;;) {
		int fd = accept(ls, NULL, NULL);
		struct srv_conn *c;
		pthread_t t;

		if (fd < 0)
			continue;
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		c = calloc(1, sizeof(*c));
		c->fd = fd;
		if (pthread_create(&t, NULL, serve, c) == 0)
			pthread_detach(t);
	}
	return 0;
}

/* ---- client ---- */

static size_t sink(char *p, size_t sz, size_t n, void *ud)
{
	(void)p;
	(void)ud;
	return sz * n;
}

static int client(int argc, char **argv)
{
	const char *ca = NULL;
	int n = atoi(argv[4]), stream = 0, pad = 1024 - 120, i;
	struct curl_slist *hdrs = NULL;
	char auth[256], *body;
	double *lat;
	CURL *h;

	for (i = 5; i < argc; i++) {
		if (!strcmp(argv[i], "--cacert") && i + 1 < argc)
			ca = argv[++i];
		else if (!strcmp(argv[i], "--stream"))
			stream = 1;
		else if (!strcmp(argv[i], "--pad") && i + 1 < argc)
			pad = atoi(argv[++i]);
	}
	/* a 1 KiB request body */
	body = malloc((size_t)pad + 256);
	snprintf(body, (size_t)pad + 256,
		 "{\"model\":\"gpt-4o-mini\",\"max_tokens\":16,%s\"messages\":[{\"role\":\"user\",\"content\":\"%0*d\"}]}",
		 stream ? "\"stream\":true,\"stream_options\":{\"include_usage\":true}," : "", pad, 0);
	snprintf(auth, sizeof(auth), "Authorization: Bearer %s", argv[3]);
	hdrs = curl_slist_append(hdrs, auth);
	hdrs = curl_slist_append(hdrs, "Content-Type: application/json");
	curl_global_init(CURL_GLOBAL_DEFAULT);
	h = curl_easy_init();
	curl_easy_setopt(h, CURLOPT_URL, argv[2]);
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
	curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, sink);
	curl_easy_setopt(h, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
	if (ca)
		curl_easy_setopt(h, CURLOPT_CAINFO, ca);
	lat = calloc((size_t)n, sizeof(*lat));
	for (i = -50; i < n; i++) {
		struct timespec t0, t1;
		long code = 0;

		clock_gettime(CLOCK_MONOTONIC, &t0);
		if (curl_easy_perform(h) != CURLE_OK) {
			fprintf(stderr, "preload_bench: transfer failed\n");
			return 1;
		}
		clock_gettime(CLOCK_MONOTONIC, &t1);
		curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &code);
		if (code != 200) {
			fprintf(stderr, "preload_bench: status %ld\n", code);
			return 1;
		}
		if (i >= 0)
			lat[i] = (double)(t1.tv_sec - t0.tv_sec) * 1e6 + (double)(t1.tv_nsec - t0.tv_nsec) / 1e3;
	}
	for (i = 0; i < n; i++)
		printf("%.2f\n", lat[i]);
	curl_easy_cleanup(h);
	curl_slist_free_all(hdrs);
	free(body);
	free(lat);
	return 0;
}

/* ---- engine only ---- */

static int engine(int argc, char **argv)
{
	const char *resp = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 58\r\n\r\n"
			   "{\"usage\":{\"prompt_tokens\":300,\"completion_tokens\":7}}    ";
	int port = atoi(argv[3]), n = atoi(argv[5]), i, pad = 1024 - 120;
	char body[2048], req[4096];
	int rl;

	snprintf(body, sizeof(body),
		 "{\"model\":\"gpt-4o-mini\",\"max_tokens\":16,\"messages\":[{\"role\":\"user\",\"content\":\"%0*d\"}]}",
		 pad, 0);
	rl = snprintf(req, sizeof(req),
		      "POST /v1/chat/completions HTTP/1.1\r\nHost: %s:%d\r\nAuthorization: Bearer %s\r\n"
		      "Content-Type: application/json\r\nContent-Length: %zu\r\n\r\n%s",
		      argv[2], port, argv[4], strlen(body), body);
	for (i = -50; i < n; i++) {
		struct lc_reqparse p;
		struct lc_resp r;
		struct lc_decision d;
		struct timespec t0, t1;
		size_t used;

		clock_gettime(CLOCK_MONOTONIC, &t0);
		lc_reqparse_init(&p);
		lc_reqparse_feed(&p, req, (size_t)rl, &used);
		memset(&d, 0, sizeof(d));
		lc_admit_http(argv[2], port, &p, &d);
		lc_resp_init(&r, false);
		lc_resp_feed(&r, resp, strlen(resp), &used);
		if (d.ticket)
			lc_settle(d.ticket, &r.usage, r.status);
		clock_gettime(CLOCK_MONOTONIC, &t1);
		lc_resp_free(&r);
		lc_reqparse_free(&p);
		if (d.verdict != LC_ALLOW) {
			fprintf(stderr, "preload_bench: engine verdict %d: %s\n", (int)d.verdict, d.message);
			return 1;
		}
		if (i >= 0)
			printf("%.2f\n", (double)(t1.tv_sec - t0.tv_sec) * 1e6 + (double)(t1.tv_nsec - t0.tv_nsec) / 1e3);
	}
	return 0;
}

int main(int argc, char **argv)
{
	if (argc == 1) {    /* bench/run.sh runs every bench program bare */
		printf("preload_bench: the helper of bench/bench_preload.sh (its figures follow)\n");
		return 0;
	}
	if (argc >= 6 && !strcmp(argv[1], "engine"))
		return engine(argc, argv);
	if (argc >= 3 && !strcmp(argv[1], "server"))
		return server(argc, argv);
	if (argc >= 5 && !strcmp(argv[1], "client"))
		return client(argc, argv);
	fprintf(stderr, "usage: preload_bench server PORT [CERT KEY] | client URL KEY N [--cacert F] [--stream] "
			"[--pad BYTES] | engine HOST PORT KEY N\n");
	return 2;
}
