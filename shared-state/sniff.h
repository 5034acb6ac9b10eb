/* sniff.h - what the first bytes of a connection say (shared-state/sniff.c): pure byte inspection
 * shared by the preload's classifier and the relay of `llmcap run`'s supervisor.
 */
#ifndef LC_SNIFF_H
#define LC_SNIFF_H

#include <stdbool.h>
#include <stddef.h>

/* Does buf start like an HTTP/1.x request ("GET ", "POST ", ...)? */
bool lc_cls_is_http_request(const void *buf, size_t n);
/* "host:port", "[v6]:port" or "host" (s[0..len)) -> host (lower case) and port (0 when absent);
 * 0 ok, -1 unreadable (a port outside 1..65535, a host that does not fit). */
int lc_cls_hostport(const char *s, size_t len, char *host, size_t hostlen, int *port);
/* Host header of a request head (possibly partial); 0 found. port 0 when absent. */
int lc_cls_host_header(const void *buf, size_t n, char *host, size_t hostlen, int *port);
/* Starts with (a prefix of) "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"? */
bool lc_cls_is_h2_preface(const void *buf, size_t n);
/* A TLS ClientHello record: 1 and client_random copied, else 0. */
int lc_cls_client_hello(const void *buf, size_t n, unsigned char cr[32]);
/* The SNI host name of a ClientHello record (first record only); 0 found. */
int lc_cls_client_hello_sni(const void *buf, size_t n, char *out, size_t outlen);
/* URL -> scheme/host/port ("https://h:1/p"); 0 ok. */
int lc_cls_url(const char *url, char *host, size_t hostlen, int *port, bool *tls);

#endif
