/* static_client [--tls] [--stream] HOST PORT KEY N [--fork]: a statically linked (musl) HTTP
 * client for the supervisor tests. N POSTs to /v1/chat/completions, a fresh connection each; one
 * JSON line per call: {"status": S, "error": "...", "ms": T, "body": "..."}. --tls: HTTPS with
 * Debian's mbed TLS (static), trusting the file SSL_CERT_FILE names (else the system bundle) and
 * checking the name HOST. --stream: the request asks for SSE with usage. --fork: a child process
 * makes the calls. --exec CMD...: after the calls, exec CMD (a supervised program starting
 * another). Built by the test with musl-gcc -static (the preload can never see it: no dynamic
 * loader runs).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <mbedtls/ctr_drbg.h>
#include <mbedtls/entropy.h>
#include <mbedtls/error.h>
#include <mbedtls/net_sockets.h>
#include <mbedtls/ssl.h>

static int use_tls, use_stream;
static mbedtls_ssl_config conf;
static mbedtls_x509_crt cas;
static mbedtls_entropy_context ent;
static mbedtls_ctr_drbg_context drbg;

static int tls_setup(void)
{
	const char *ca = getenv("SSL_CERT_FILE");

	mbedtls_ssl_config_init(&conf);
	mbedtls_x509_crt_init(&cas);
	mbedtls_entropy_init(&ent);
	mbedtls_ctr_drbg_init(&drbg);
	if (mbedtls_ctr_drbg_seed(&drbg, mbedtls_entropy_func, &ent, NULL, 0) ||
	    mbedtls_x509_crt_parse_file(&cas, ca && *ca ? ca : "/etc/ssl/certs/ca-certificates.crt") < 0 ||
	    mbedtls_ssl_config_defaults(&conf, MBEDTLS_SSL_IS_CLIENT, MBEDTLS_SSL_TRANSPORT_STREAM,
					MBEDTLS_SSL_PRESET_DEFAULT))
		return -1;
	mbedtls_ssl_conf_authmode(&conf, MBEDTLS_SSL_VERIFY_REQUIRED);
	mbedtls_ssl_conf_ca_chain(&conf, &cas, NULL);
	mbedtls_ssl_conf_rng(&conf, mbedtls_ctr_drbg_random, &drbg);
	return 0;
}

/* the connection: a socket, and a TLS session over it with --tls */
struct cn {
	int fd;
	mbedtls_net_context net;
	mbedtls_ssl_context ssl;
};

static int cn_write(struct cn *c, const char *p, size_t n)
{
	while (n) {
		int w = use_tls ? mbedtls_ssl_write(&c->ssl, (const unsigned char *)p, n) : (int)write(c->fd, p, n);

		if (w <= 0)
			return -1;
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

static int cn_read(struct cn *c, char *p, size_t n)
{
	int r;

	if (!use_tls)
		return (int)read(c->fd, p, n);
	r = mbedtls_ssl_read(&c->ssl, (unsigned char *)p, n);
	return r == MBEDTLS_ERR_SSL_PEER_CLOSE_NOTIFY ? 0 : r;
}

static double now_ms(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

/* a header's value from the response head (CRs and LFs already blanked), "" when absent */
static const char *header(const char *resp, const char *name, char *out, size_t outlen)
{
	char pat[64];
	const char *p;
	size_t n = 0;

	snprintf(pat, sizeof(pat), "  %s:", name);
	out[0] = 0;
	p = strcasestr(resp, pat);
	if (!p)
		return out;
	for (p += strlen(pat); *p == ' '; p++)
		;
	while (n + 1 < outlen && p[n] && p[n] != ' ')
		n++;
	memcpy(out, p, n);
	out[n] = 0;
	return out;
}

static void one(const char *host, const char *port, const char *key)
{
	const char *body = "{\"model\":\"gpt-4o-mini\",\"max_tokens\":20,\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}";
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM }, *ai = NULL;
	const char *sbody = "{\"model\":\"gpt-4o-mini\",\"max_tokens\":20,\"stream\":true,"
			    "\"stream_options\":{\"include_usage\":true},\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}";
	char req[1024], resp[16384], err[128], ra[32], xs[32];
	double t0 = now_ms();
	int fd, n, st = 0, got = 0, k = 0, i;
	struct cn c;

	if (getaddrinfo(host, port, &hints, &ai) != 0) {
		printf("{\"status\": 0, \"error\": \"resolve\", \"ms\": %.2f}\n", now_ms() - t0);
		return;
	}
	fd = socket(ai->ai_family, SOCK_STREAM, 0);
	if (connect(fd, ai->ai_addr, ai->ai_addrlen) != 0) {
		printf("{\"status\": 0, \"error\": \"%s\", \"ms\": %.2f}\n", strerror(errno), now_ms() - t0);
		close(fd);
		freeaddrinfo(ai);
		return;
	}
	freeaddrinfo(ai);
	c.fd = fd;
	if (use_stream)
		body = sbody;
	if (use_tls) {
		mbedtls_ssl_init(&c.ssl);
		c.net.fd = fd;
		if (mbedtls_ssl_setup(&c.ssl, &conf) || mbedtls_ssl_set_hostname(&c.ssl, host) ||
		    (mbedtls_ssl_set_bio(&c.ssl, &c.net, mbedtls_net_send, mbedtls_net_recv, NULL),
		     (k = mbedtls_ssl_handshake(&c.ssl)) != 0)) {
			mbedtls_strerror(k, err, sizeof(err));
			printf("{\"status\": 0, \"error\": \"tls: %s\", \"ms\": %.2f}\n", err, now_ms() - t0);
			mbedtls_ssl_free(&c.ssl);
			close(fd);
			return;
		}
	}
	n = snprintf(req, sizeof(req), "POST /v1/chat/completions HTTP/1.1\r\nHost: %s:%s\r\nAuthorization: Bearer %s\r\n"
		     "Content-Type: application/json\r\nContent-Length: %zu\r\nConnection: close\r\n\r\n%s",
		     host, port, key, strlen(body), body);
	if (cn_write(&c, req, (size_t)n) != 0) {
		printf("{\"status\": 0, \"error\": \"write\", \"ms\": %.2f}\n", now_ms() - t0);
		if (use_tls)
			mbedtls_ssl_free(&c.ssl);
		close(fd);
		return;
	}
	/* until the end of the stream, or the Content-Length body is complete (keep-alive servers) */
	while (got < (int)sizeof(resp) - 1 && (k = cn_read(&c, resp + got, sizeof(resp) - 1 - (size_t)got)) > 0) {
		char *eoh, *cl;

		got += k;
		resp[got] = 0;
		eoh = strstr(resp, "\r\n\r\n");
		cl = strcasestr(resp, "\r\ncontent-length:");
		if (eoh && cl && cl < eoh && (eoh + 4 - resp) + atoi(cl + 17) <= got)
			break;
	}
	resp[got] = 0;
	sscanf(resp, "HTTP/1.%*d %d", &st);
	for (i = 0; i < got; i++)    /* the body as a JSON string: keep it simple, no quotes or controls */
		if (resp[i] == '"' || resp[i] == '\\' || (unsigned char)resp[i] < 0x20)
			resp[i] = ' ';
	printf("{\"status\": %d, \"ms\": %.2f, \"retry_after\": \"%s\", \"x_should_retry\": \"%s\", \"body\": \"%s\"}\n",
	       st, now_ms() - t0, header(resp, "retry-after", ra, sizeof(ra)), header(resp, "x-should-retry", xs, sizeof(xs)),
	       strstr(resp, "    ") ? strstr(resp, "    ") + 4 : "");
	if (use_tls) {
		mbedtls_ssl_close_notify(&c.ssl);
		mbedtls_ssl_free(&c.ssl);
	}
	close(fd);
}

int main(int argc, char **argv)
{
	int n, i, st = 0;
	pid_t p;

	for (; argc > 1 && (!strcmp(argv[1], "--tls") || !strcmp(argv[1], "--stream")); argc--, argv++)
		*(argv[1][2] == 't' ? &use_tls : &use_stream) = 1;
	if (argc < 5)
		return 2;
	if (use_tls && tls_setup() != 0) {
		printf("{\"status\": 0, \"error\": \"tls setup (SSL_CERT_FILE)\"}\n");
		return 1;
	}
	n = atoi(argv[4]);
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (argc > 6 && !strcmp(argv[5], "--exec")) {
		for (i = 0; i < n; i++)
			one(argv[1], argv[2], argv[3]);
		execvp(argv[6], argv + 6);
		return 127;
	}
	if (argc > 5 && !strcmp(argv[5], "--fork")) {
		p = fork();
		if (p == 0) {
			for (i = 0; i < n; i++)
				one(argv[1], argv[2], argv[3]);
			_exit(0);
		}
		waitpid(p, &st, 0);
		return 0;
	}
	for (i = 0; i < n; i++)
		one(argv[1], argv[2], argv[3]);
	return 0;
}
