/* main.c - llmcap-server: command line and libmicrohttpd glue.
 *
 *   llmcap-server --listen ADDR:PORT --data DIR --signing-key KEYFILE --admin-token-file FILE
 *
 * Everything else lives in the logic modules (api.c, usage.c, notify.c,
 * policy_doc.c, store.c), which unit tests link directly.
 */
#include <arpa/inet.h>
#include <curl/curl.h>
#include <errno.h>
#include <getopt.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <signal.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "srv.h"
#include "util.h"

static void usage(FILE *f)
{
	fprintf(f,
		"usage: llmcap-server --listen ADDR:PORT --data DIR --signing-key KEYFILE --admin-token-file FILE\n"
		"\n"
		"  --listen ADDR:PORT        address to serve HTTP on (e.g. 127.0.0.1:8787, [::1]:8787, 0.0.0.0:8787)\n"
		"  --data DIR                the server's LMDB store (created if missing)\n"
		"  --signing-key KEYFILE     Ed25519 secret key from `llmcap keygen` (hosts trust its .pub)\n"
		"  --admin-token-file FILE   the admin bearer token (at least 16 characters)\n"
		"  --host-token-file FILE    optional: POST /v1/usage then needs this bearer token\n"
		"                            (llmcap agent --token-file FILE)\n"
		"  --threads N               worker threads (default 4)\n"
		"  --webhook-backoff-ms MS   first webhook retry delay, doubling per attempt (default 1000)\n"
		"  --webhook-backoff-max-ms MS  cap on the retry delay (default 300000)\n"
		"\n"
		"Environment: LLMCAP_LOG=off|error|info|debug. See docs/server.md.\n");
}

struct conn {
	struct lc_buf body;
	bool too_big;
};

static enum MHD_Result send_resp(struct MHD_Connection *c, struct srv_resp *rs, bool head)
{
	struct MHD_Response *r;
	enum MHD_Result ret;
	r = MHD_create_response_from_buffer(head ? 0 : rs->body_len, rs->body ? rs->body : (void *)"",
					    MHD_RESPMEM_MUST_COPY);
	if (!r)
		return MHD_NO;
	if (rs->body)
		MHD_add_response_header(r, "Content-Type", "application/json");
	if (rs->etag[0])
		MHD_add_response_header(r, "ETag", rs->etag);
	if (rs->allow[0])
		MHD_add_response_header(r, "Allow", rs->allow);
	if (rs->www_auth)
		MHD_add_response_header(r, "WWW-Authenticate", "Bearer realm=\"llmcap\"");
	MHD_add_response_header(r, "Cache-Control", "no-store");
	ret = MHD_queue_response(c, (unsigned)rs->status, r);
	MHD_destroy_response(r);
	return ret;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url, const char *method,
				  const char *version, const char *upload, size_t *upload_size, void **con_cls)
{
	struct srv *s = cls;
	struct conn *cn = *con_cls;
	(void)version;

	if (!cn) {
		cn = calloc(1, sizeof *cn);
		if (!cn)
			return MHD_NO;
		size_t cap = strcmp(url, "/v1/usage") == 0 ? SRV_USAGE_MAX : SRV_BODY_MAX;
		lc_buf_init(&cn->body, cap);
		*con_cls = cn;
		const char *cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Content-Length");
		if (cl && strtoull(cl, NULL, 10) > cap) {
			struct srv_resp rs = {0};
			srv_resp_error(&rs, 413, "payload_too_large", "request body over %zu bytes", cap);
			enum MHD_Result ret = send_resp(c, &rs, false);
			srv_resp_free(&rs);
			cn->too_big = true;
			return ret;
		}
		return MHD_YES;
	}
	if (*upload_size) {
		if (!cn->too_big && lc_buf_add(&cn->body, upload, *upload_size) != 0)
			cn->too_big = true;
		*upload_size = 0;
		return MHD_YES;
	}
	struct srv_resp rs = {0};
	if (cn->too_big) {
		srv_resp_error(&rs, 413, "payload_too_large", "request body over %zu bytes", cn->body.max);
	} else {
		struct srv_req rq = {
			.method = method,
			.path = url,
			.authorization = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Authorization"),
			.if_none_match = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "If-None-Match"),
			.body = cn->body.data,
			.body_len = cn->body.len,
		};
		srv_handle(s, &rq, &rs);
	}
	lc_log(LC_LOG_DEBUG, "llmcap-server: %s %s -> %d", method, url, rs.status);
	enum MHD_Result ret = send_resp(c, &rs, strcmp(method, "HEAD") == 0);
	srv_resp_free(&rs);
	return ret;
}

static void on_done(void *cls, struct MHD_Connection *c, void **con_cls, enum MHD_RequestTerminationCode toe)
{
	struct conn *cn = *con_cls;
	(void)cls;
	(void)c;
	(void)toe;
	if (cn) {
		lc_buf_free(&cn->body);
		free(cn);
	}
	*con_cls = NULL;
}

static int parse_listen(const char *arg, struct sockaddr_storage *ss, socklen_t *len)
{
	char host[256];
	const char *colon;
	memset(ss, 0, sizeof *ss);
	if (arg[0] == '[') {
		const char *end = strchr(arg, ']');
		if (!end || end[1] != ':' || (size_t)(end - arg - 1) >= sizeof host)
			return -1;
		memcpy(host, arg + 1, (size_t)(end - arg - 1));
		host[end - arg - 1] = 0;
		colon = end + 1;
	} else {
		colon = strrchr(arg, ':');
		if (!colon || (size_t)(colon - arg) >= sizeof host)
			return -1;
		memcpy(host, arg, (size_t)(colon - arg));
		host[colon - arg] = 0;
	}
	char *e;
	long port = strtol(colon + 1, &e, 10);
	if (*e || port < 0 || port > 65535 || colon[1] == 0)
		return -1;
	struct sockaddr_in *a4 = (struct sockaddr_in *)ss;
	struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)ss;
	if (host[0] == 0 || inet_pton(AF_INET, host, &a4->sin_addr) == 1) {
		a4->sin_family = AF_INET;
		a4->sin_port = htons((uint16_t)port);
		if (host[0] == 0)
			a4->sin_addr.s_addr = htonl(INADDR_ANY);
		*len = sizeof *a4;
		return 0;
	}
	if (inet_pton(AF_INET6, host, &a6->sin6_addr) == 1) {
		a6->sin6_family = AF_INET6;
		a6->sin6_port = htons((uint16_t)port);
		*len = sizeof *a6;
		return 0;
	}
	if (strcmp(host, "localhost") == 0) {
		a4->sin_family = AF_INET;
		a4->sin_port = htons((uint16_t)port);
		a4->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		*len = sizeof *a4;
		return 0;
	}
	return -1;
}

int main(int argc, char **argv)
{
	static struct option opts[] = {
		{"listen", required_argument, 0, 'l'},
		{"data", required_argument, 0, 'd'},
		{"signing-key", required_argument, 0, 'k'},
		{"admin-token-file", required_argument, 0, 't'},
		{"threads", required_argument, 0, 'n'},
		{"host-token-file", required_argument, 0, 'H'},
		{"webhook-backoff-ms", required_argument, 0, 'b'},
		{"webhook-backoff-max-ms", required_argument, 0, 'B'},
		{"help", no_argument, 0, 'h'},
		{0, 0, 0, 0},
	};
	const char *listen = NULL, *data = NULL, *keyfile = NULL, *tokfile = NULL, *hostfile = NULL;
	unsigned threads = 4;
	static struct srv s;
	char err[512];
	int c;

	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 'l': listen = optarg; break;
		case 'd': data = optarg; break;
		case 'k': keyfile = optarg; break;
		case 't': tokfile = optarg; break;
		case 'n': threads = (unsigned)strtoul(optarg, NULL, 10); break;
		case 'H': hostfile = optarg; break;
		case 'b': s.backoff_base_ms = strtoll(optarg, NULL, 10); break;
		case 'B': s.backoff_max_ms = strtoll(optarg, NULL, 10); break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (optind != argc || !listen || !data || !keyfile || !tokfile) {
		usage(stderr);
		return 2;
	}
	if (threads < 1 || threads > 64)
		threads = 4;
	struct sockaddr_storage ss;
	socklen_t sslen;
	if (parse_listen(listen, &ss, &sslen) != 0) {
		fprintf(stderr, "llmcap-server: --listen %s: expected ADDR:PORT (IPv6 as [ADDR]:PORT)\n", listen);
		return 2;
	}
	if (sodium_init() < 0) {
		fprintf(stderr, "llmcap-server: libsodium failed to initialise\n");
		return 1;
	}
	curl_global_init(CURL_GLOBAL_DEFAULT);
	if (lc_signkey_load(keyfile, &s.key, err, sizeof err) != 0) {
		fprintf(stderr, "llmcap-server: --signing-key %s: %s\n", keyfile, err);
		return 1;
	}
	struct lc_buf tok;
	lc_buf_init(&tok, 4096);
	if (lc_read_file(tokfile, 4096, &tok, err, sizeof err) != 0) {
		fprintf(stderr, "llmcap-server: --admin-token-file %s: %s\n", tokfile, err);
		return 1;
	}
	if (srv_set_admin_token(&s, tok.data ? tok.data : "", tok.len) != 0) {
		fprintf(stderr, "llmcap-server: --admin-token-file %s: the token must be at least 16 characters\n", tokfile);
		return 1;
	}
	sodium_memzero(tok.data, tok.len);
	lc_buf_free(&tok);
	if (hostfile) {
		lc_buf_init(&tok, 4096);
		if (lc_read_file(hostfile, 4096, &tok, err, sizeof err) != 0) {
			fprintf(stderr, "llmcap-server: --host-token-file %s: %s\n", hostfile, err);
			return 1;
		}
		if (srv_set_host_token(&s, tok.data ? tok.data : "", tok.len) != 0) {
			fprintf(stderr, "llmcap-server: --host-token-file %s: the token must be at least 16 characters\n",
				hostfile);
			return 1;
		}
		sodium_memzero(tok.data, tok.len);
		lc_buf_free(&tok);
	}
	if (srv_store_open(&s, data, err, sizeof err) != 0) {
		fprintf(stderr, "llmcap-server: --data: %s\n", err);
		return 1;
	}
	if (srv_policy_maintain(&s) != 0) {
		fprintf(stderr, "llmcap-server: cannot publish the initial policy (see above)\n");
		srv_store_close(&s);
		return 1;
	}

	/* signals: only the main thread takes SIGTERM/SIGINT */
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	signal(SIGPIPE, SIG_IGN);

	if (srv_notifier_start(&s) != 0) {
		fprintf(stderr, "llmcap-server: cannot start the notifier thread\n");
		return 1;
	}
	unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG;
	if (ss.ss_family == AF_INET6)
		flags |= MHD_USE_IPv6;
#ifdef MHD_USE_EPOLL
	flags |= MHD_USE_EPOLL;
#endif
	struct MHD_Daemon *d = MHD_start_daemon(
		flags, 0, NULL, NULL, on_request, &s, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&ss,
		MHD_OPTION_THREAD_POOL_SIZE, threads, MHD_OPTION_NOTIFY_COMPLETED, on_done, NULL,
		MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)30, MHD_OPTION_CONNECTION_LIMIT, (unsigned)1000,
		MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)(64 * 1024), MHD_OPTION_END);
	if (!d) {
		fprintf(stderr, "llmcap-server: cannot listen on %s: %s\n", listen, strerror(errno));
		srv_notifier_stop(&s);
		srv_store_close(&s);
		return 1;
	}
	fprintf(stderr, "llmcap-server: listening on %s, data %s, signing key %.16s\n", listen, data, s.key.keyid);

	int sig = 0;
	while (sigwait(&set, &sig) == 0 && sig == SIGHUP)
		;   /* SIGHUP: nothing to reload yet */
	fprintf(stderr, "llmcap-server: signal %d, shutting down\n", sig);
	MHD_stop_daemon(d);
	srv_notifier_stop(&s);
	srv_store_close(&s);
	lc_signkey_wipe(&s.key);
	curl_global_cleanup();
	return 0;
}
