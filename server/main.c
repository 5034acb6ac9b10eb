/* main.c - llmcap-server: the command line (http.c is the libmicrohttpd glue).
 *
 *   llmcap-server --listen ADDR:PORT --data DIR | --db postgresql://... --signing-key KEYFILE --admin-token-file FILE
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
#include <unistd.h>

#include "email.h"
#include "llmcap.h"
#include "srv.h"
#include "srv_http.h"
#include "util.h"

static void usage(FILE *f)
{
	fprintf(f,
		"usage: llmcap-server --listen ADDR:PORT (--data DIR | --db URL) --signing-key KEYFILE --admin-token-file FILE\n"
		"                     [options]\n"
		"\n"
		"  --listen ADDR:PORT        address to serve HTTP on (e.g. 127.0.0.1:8787, [::1]:8787, 0.0.0.0:8787)\n"
		"  --data DIR                the server's LMDB store (created if missing; one server per DIR)\n"
		"  --db URL                  instead: a PostgreSQL store (postgresql://USER@HOST:PORT/DB), which\n"
		"                            several servers can share (behind one address)\n"
		"  --signing-key KEYFILE     Ed25519 secret key from `llmcap keygen` (hosts trust its .pub)\n"
		"  --admin-token-file FILE   the admin bearer token (at least 16 characters)\n"
		"  --admin-tokens-file FILE  named admin tokens, one \"NAME ROLE TOKEN\" a line (ROLE admin or read);\n"
		"                            with it, --admin-token-file is optional\n"
		"  --host-token-file FILE    deprecated and ignored: every host enrols for its own credential\n"
		"                            (POST /v1/admin/hosts/enroll, llmcap agent enroll)\n"
		"  --threads N               worker threads (default 4, 1-64)\n"
		"  --max-connections N       open connections in all (default 1000)\n"
		"  --max-connections-per-ip N  open connections from one client address (default 64)\n"
		"  --request-timeout S       a request's head and body must arrive within S seconds (default 30)\n"
		"  --max-body-memory MIB     request bodies buffered at once, in all (default 256, at least 16);\n"
		"                            past it a request gets 503 with Retry-After before its body is read\n"
		"  --webhook-backoff-ms MS   first webhook retry delay, doubling per attempt (default 1000)\n"
		"  --webhook-backoff-max-ms MS  cap on the retry delay (default 300000)\n"
		"  --tls-cert FILE           serve HTTPS with this PEM certificate (chain) ...\n"
		"  --tls-key FILE            ... and this PEM private key (agents: llmcap agent --cacert)\n"
		"  --smtp-relay URL          send alert e-mail (PUT /v1/admin/emails) through smtp://HOST:PORT\n"
		"  --smtp-from ADDR          the alert e-mail's sender (with --smtp-relay)\n"
		"  --version                 print the version and exit\n"
		"\n"
		"Environment: LLMCAP_LOG=off|error|info|debug. See docs/server.md.\n");
}

/* a whole number in [min, max] for option name, or a clear error */
static int num_arg(const char *name, const char *arg, long long min, long long max, long long *out)
{
	char *end;
	errno = 0;
	long long v = strtoll(arg, &end, 10);
	if (errno || end == arg || *end || v < min || v > max) {
		fprintf(stderr, "llmcap-server: --%s %s: expected a whole number from %lld to %lld\n", name, arg, min, max);
		return -1;
	}
	*out = v;
	return 0;
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

/* a listening TCP socket on ss, or -1 with one clear line on stderr */
static int listen_on(const char *arg, const struct sockaddr_storage *ss, socklen_t sslen)
{
	int fd = socket(ss->ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0), one = 1;
	if (fd < 0) {
		fprintf(stderr, "llmcap-server: --listen %s: %s\n", arg, strerror(errno));
		return -1;
	}
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	if (ss->ss_family == AF_INET6)
		setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
	if (bind(fd, (const struct sockaddr *)ss, sslen) != 0 || listen(fd, 128) != 0) {
		int e = errno;
		fprintf(stderr, "llmcap-server: cannot listen on %s: %s%s\n", arg, strerror(e),
			e == EADDRINUSE ? " (another llmcap-server, or another program, has this port)" : "");
		close(fd);
		return -1;
	}
	return fd;
}

/* a PEM file as a NUL-terminated string (malloc'd), or NULL with a message */
static char *load_pem(const char *opt, const char *file)
{
	char err[512];
	struct lc_buf b;
	char *out = NULL;
	lc_buf_init(&b, 1 << 20);
	if (lc_read_file(file, 1 << 20, &b, err, sizeof err) != 0)
		fprintf(stderr, "llmcap-server: --%s %s: %s\n", opt, file, err);
	else if (b.len == 0 || !memmem(b.data, b.len, "-----BEGIN ", 11))
		fprintf(stderr, "llmcap-server: --%s %s: not a PEM file\n", opt, file);
	else if ((out = malloc(b.len + 1))) {
		memcpy(out, b.data, b.len);
		out[b.len] = 0;
	}
	if (b.data)
		sodium_memzero(b.data, b.len);
	lc_buf_free(&b);
	return out;
}

static bool loopback(const struct sockaddr_storage *ss)
{
	if (ss->ss_family == AF_INET)
		return (ntohl(((const struct sockaddr_in *)ss)->sin_addr.s_addr) >> 24) == 127;
	return ss->ss_family == AF_INET6 && IN6_IS_ADDR_LOOPBACK(&((const struct sockaddr_in6 *)ss)->sin6_addr);
}

/* FILE's text (up to max bytes) handed to use(); a message naming --opt FILE when either fails */
typedef int (*use_fn)(struct srv *s, const char *text, size_t len, char *err, size_t errlen);
static int load_secret(struct srv *s, const char *opt, const char *file, size_t max, use_fn use)
{
	char err[512];
	struct lc_buf b;
	int rc = 0;
	lc_buf_init(&b, max);
	if (lc_read_file(file, max, &b, err, sizeof err) != 0 || use(s, b.data ? b.data : "", b.len, err, sizeof err) != 0) {
		fprintf(stderr, "llmcap-server: --%s %s: %s\n", opt, file, err);
		rc = -1;
	}
	if (b.data)
		sodium_memzero(b.data, b.len);
	lc_buf_free(&b);
	return rc;
}

static int use_admin(struct srv *s, const char *t, size_t n, char *err, size_t errlen)
{
	return srv_add_token(s, "admin", SRV_ROLE_ADMIN, t, n, err, errlen);
}

int main(int argc, char **argv)
{
	static struct option opts[] = {
		{"listen", required_argument, 0, 'l'},
		{"data", required_argument, 0, 'd'},
		{"db", required_argument, 0, 'D'},
		{"signing-key", required_argument, 0, 'k'},
		{"admin-token-file", required_argument, 0, 't'},
		{"threads", required_argument, 0, 'n'},
		{"host-token-file", required_argument, 0, 'H'},
		{"webhook-backoff-ms", required_argument, 0, 'b'},
		{"webhook-backoff-max-ms", required_argument, 0, 'B'},
		{"max-connections", required_argument, 0, 'C'},
		{"max-connections-per-ip", required_argument, 0, 'P'},
		{"request-timeout", required_argument, 0, 'T'},
		{"max-body-memory", required_argument, 0, 'M'},
		{"admin-tokens-file", required_argument, 0, 'A'},
		{"tls-cert", required_argument, 0, 'c'},
		{"tls-key", required_argument, 0, 'K'},
		{"smtp-relay", required_argument, 0, 'R'},
		{"smtp-from", required_argument, 0, 'F'},
		{"version", no_argument, 0, 'V'},
		{"help", no_argument, 0, 'h'},
		{0, 0, 0, 0},
	};
	const char *smtp_relay = NULL, *smtp_from = NULL;
	const char *dburl = NULL;
	const char *listen_arg = NULL, *data = NULL, *keyfile = NULL, *tokfile = NULL, *hostfile = NULL;
	const char *certfile = NULL, *tlskeyfile = NULL, *tokensfile = NULL;
	struct srv_http_opts ho = {.threads = 4, .max_connections = 1000, .max_connections_per_ip = 64,
				   .request_timeout_s = 30, .idle_timeout_s = 30};
	static struct srv s;
	char err[512];
	long long v;
	int c;

	while ((c = getopt_long(argc, argv, "hV", opts, NULL)) != -1) {
		int bad = 0;
		switch (c) {
		case 'l': listen_arg = optarg; break;
		case 'd': data = optarg; break;
		case 'D': dburl = optarg; break;
		case 'k': keyfile = optarg; break;
		case 't': tokfile = optarg; break;
		case 'H': hostfile = optarg; break;
		case 'c': certfile = optarg; break;
		case 'A': tokensfile = optarg; break;
		case 'K': tlskeyfile = optarg; break;
		case 'n': bad = num_arg("threads", optarg, 1, 64, &v); ho.threads = (unsigned)v; break;
		case 'C': bad = num_arg("max-connections", optarg, 1, 100000, &v); ho.max_connections = (unsigned)v; break;
		case 'P': bad = num_arg("max-connections-per-ip", optarg, 1, 100000, &v); ho.max_connections_per_ip = (unsigned)v; break;
		case 'T': bad = num_arg("request-timeout", optarg, 1, 3600, &v); ho.request_timeout_s = (unsigned)v; break;
		case 'M': /* at least the largest body a route takes (a usage report: 16 MiB) */
			bad = num_arg("max-body-memory", optarg, SRV_USAGE_MAX >> 20, 1 << 20, &v);
			ho.max_body_memory = (size_t)v << 20;
			break;
		case 'b': bad = num_arg("webhook-backoff-ms", optarg, 1, 86400000, &v); s.backoff_base_ms = v; break;
		case 'B': bad = num_arg("webhook-backoff-max-ms", optarg, 1, 86400000, &v); s.backoff_max_ms = v; break;
		case 'R': smtp_relay = optarg; break;
		case 'F': smtp_from = optarg; break;
		case 'V': printf("llmcap-server %s\n", LLMCAP_VERSION_STRING); return 0;
		case 'h': usage(stdout); return 0;
		default:
			fprintf(stderr, "llmcap-server: run llmcap-server --help for the options\n");
			return 2;
		}
		if (bad)
			return 2;
	}
	if ((smtp_relay || smtp_from) && srv_email_configure(smtp_relay ? smtp_relay : "", smtp_from, err, sizeof err) != 0) {
		fprintf(stderr, "llmcap-server: %s\n", err);
		return 2;
	}
	if (optind != argc) {
		fprintf(stderr, "llmcap-server: unexpected argument '%s' (run llmcap-server --help)\n", argv[optind]);
		return 2;
	}
	const struct { const char *val, *flag, *what; } required[] = {
		{listen_arg, "--listen ADDR:PORT", "the address to serve on"},
		{data ? data : dburl, "--data DIR", "the server's store directory"},
		{keyfile, "--signing-key KEYFILE", "the Ed25519 key from `llmcap keygen`"},
		{tokfile ? tokfile : tokensfile, "--admin-token-file FILE", "the admin bearer token"},
	};
	for (size_t i = 0; i < sizeof required / sizeof required[0]; i++)
		if (!required[i].val) {
			fprintf(stderr, "llmcap-server: missing %s (%s); run llmcap-server --help for every option\n",
				required[i].flag, required[i].what);
			return 2;
		}
	if (data && dburl) {
		fprintf(stderr, "llmcap-server: --data and --db: one store or the other\n");
		return 2;
	}
	if (dburl && !srv_store_is_url(dburl)) {
		fprintf(stderr, "llmcap-server: --db %s: expected a postgresql:// URL\n", dburl);
		return 2;
	}
	struct sockaddr_storage ss;
	socklen_t sslen;
	if (parse_listen(listen_arg, &ss, &sslen) != 0) {
		fprintf(stderr, "llmcap-server: --listen %s: expected ADDR:PORT (IPv6 as [ADDR]:PORT)\n", listen_arg);
		return 2;
	}
	if (!certfile != !tlskeyfile) {
		fprintf(stderr, "llmcap-server: --tls-cert and --tls-key go together (HTTPS needs both)\n");
		return 2;
	}
	if (certfile && !srv_http_tls_supported()) {
		fprintf(stderr, "llmcap-server: this libmicrohttpd was built without TLS; cannot serve HTTPS\n");
		return 1;
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
	if ((tokfile && load_secret(&s, "admin-token-file", tokfile, 4096, use_admin) != 0) ||
	    (tokensfile && load_secret(&s, "admin-tokens-file", tokensfile, 1 << 20, srv_load_tokens) != 0))
		return 1;
	if (hostfile)
		fprintf(stderr, "llmcap-server: warning: --host-token-file is deprecated and ignored: a shared token let any "
			"host report as any other. Every host now needs its own credential: POST /v1/admin/hosts/enroll "
			"answers a one-time code, and `llmcap agent enroll --server URL --code CODE` on the host uses it\n");
	char *cert_pem = NULL, *key_pem = NULL;
	if (certfile && (!(cert_pem = load_pem("tls-cert", certfile)) || !(key_pem = load_pem("tls-key", tlskeyfile))))
		return 1;
	ho.tls_cert_pem = cert_pem;
	ho.tls_key_pem = key_pem;
	if (!certfile && !loopback(&ss))
		fprintf(stderr, "llmcap-server: warning: plain HTTP on %s, which is not a loopback address: tokens and "
			"usage cross the network in clear; use --tls-cert/--tls-key (or a TLS proxy in front)\n",
			listen_arg);
	if (srv_store_open(&s, dburl ? dburl : data, err, sizeof err) != 0) {
		fprintf(stderr, "llmcap-server: %s: %s\n", dburl ? "--db" : "--data", err);
		return 1;
	}
	if ((ho.listen_fd = listen_on(listen_arg, &ss, sslen)) < 0) {
		srv_store_close(&s);
		return 1;
	}
	ho.ipv6 = ss.ss_family == AF_INET6;
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
	struct srv_http *h = srv_http_start(&s, &ho, err, sizeof err);
	if (!h) {
		fprintf(stderr, "llmcap-server: %s on %s\n", err, listen_arg);
		srv_notifier_stop(&s);
		srv_store_close(&s);
		return 1;
	}
	fprintf(stderr, "llmcap-server: listening on %s, %s %s, signing key %.16s\n", listen_arg, data ? "data" : "store",
		data ? data : "PostgreSQL (--db)", s.key.keyid);

	int sig = 0;
	while (sigwait(&set, &sig) == 0 && sig == SIGHUP)
		;   /* SIGHUP: nothing to reload yet */
	fprintf(stderr, "llmcap-server: signal %d, shutting down\n", sig);
	srv_http_stop(h);
	close(ho.listen_fd);
	srv_notifier_stop(&s);
	srv_store_close(&s);
	lc_signkey_wipe(&s.key);
	if (key_pem)
		sodium_memzero(key_pem, strlen(key_pem));
	free(key_pem);
	free(cert_pem);
	curl_global_cleanup();
	return 0;
}
