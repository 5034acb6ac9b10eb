/* srv_http.h - llmcap-server's HTTP front (http.c, libmicrohttpd). */
#ifndef LC_SRV_HTTP_H
#define LC_SRV_HTTP_H

#include "srv.h"

struct srv_http_opts {
	int listen_fd;                  /* bound and listening */
	bool ipv6;
	unsigned threads;
	unsigned max_connections;       /* in all */
	unsigned max_connections_per_ip;
	unsigned request_timeout_s;     /* a request's head and body must arrive within this */
	unsigned idle_timeout_s;        /* no byte either way for this long: closed */
	size_t max_body_memory;         /* request bodies buffered at once, in all (0: the default) */
	const char *tls_cert_pem;       /* both set: HTTPS (PEM text, kept until srv_http_stop) */
	const char *tls_key_pem;
};
/* libmicrohttpd here was built with TLS (GnuTLS) */
bool srv_http_tls_supported(void);

struct srv_http;
struct srv_http *srv_http_start(struct srv *s, const struct srv_http_opts *o, char *err, size_t errlen);
/* Answers every waiting long-poll, then stops. */
void srv_http_stop(struct srv_http *h);

#endif
