/* relay.h - the loopback relay of `llmcap run`'s supervisor (cli/relay.c): holds the provider
 * connections of programs the preload cannot hold (static, Go). */
#ifndef LC_RELAY_H
#define LC_RELAY_H

#include <stddef.h>
#include <sys/socket.h>

/* Before fork: the llmcap CA (created on first use in <state>/relay, key mode 0600), the trust
 * bundles for the program and the listening sockets. 0 ok; -1 with why (holding impossible). */
int lc_relay_prepare(char *why, size_t whylen);
/* In the child, before exec: SSL_CERT_FILE, REQUESTS_CA_BUNDLE, CURL_CA_BUNDLE and
 * NODE_EXTRA_CA_CERTS point at bundles that add the llmcap CA to what they named before. */
void lc_relay_child_env(void);
/* After fork, in the supervisor: start accepting relay connections. 0 ok. */
int lc_relay_start(char *why, size_t whylen);
/* How the relay takes a connection: held (a provider address), or peeked first: the relay reads
 * the program's first bytes and holds the connection when they name a provider (a ClientHello's
 * SNI, a Host header; through an HTTP proxy: a CONNECT to a provider, an absolute-form request to
 * one), else splices it untouched to the address the program asked for. */
enum lc_relay_mode { LC_RELAY_HOLD = 0, LC_RELAY_PEEK, LC_RELAY_PEEK_PROXY };
/* Hold one connect(): sock is the program's own socket (a duplicate, pidfd_getfd), dst the
 * address it asked for, entry the policy's host entry it matched (NULL when peeked). The
 * supervisor connects that socket to the relay itself. Returns what the program's connect()
 * answers: 0, or a positive errno (EINPROGRESS for a non-blocking socket); -1 with why when it
 * cannot be held (the caller refuses it); -2 when a peeked socket is not TCP (UDP: the caller
 * lets it through). */
int lc_relay_hold(int sock, const struct sockaddr_storage *dst, socklen_t dlen, const char *entry, int port,
		  int mode, char *why, size_t whylen);

#endif
