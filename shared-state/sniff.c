/* sniff.c - what the first bytes of a connection say: an HTTP/1.x request and its Host, a TLS
 * ClientHello and its SNI, a URL's host and port. Pure byte inspection (no I/O, no globals, every
 * input untrusted), shared by the preload (preload/classify.c) and the relay of `llmcap run`'s
 * supervisor (cli/relay.c), so both classify a connection the same way.
 */
#include <ctype.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "http1.h"
#include "sniff.h"
#include "util.h"

bool lc_cls_is_http_request(const void *buf, size_t n)
{
	static const char *const methods[] = { "GET ", "POST ", "PUT ", "PATCH ", "DELETE ",
					       "HEAD ", "OPTIONS " };
	const char *p = buf;
	size_t i, l;

	for (i = 0; i < sizeof(methods) / sizeof(methods[0]); i++) {
		l = strlen(methods[i]);
		if (n >= l && memcmp(p, methods[i], l) == 0)
			return true;
	}
	return false;
}

/* the digits after "host:": none leaves the port unknown (0), as RFC 3986 allows; anything but
 * 1..65535 makes the whole authority unreadable */
static int port_part(const char *p, size_t n, int *port)
{
	return n == 0 ? 0 : lc_parse_port(p, n, port);
}

/* split "host:port", "[v6]:port", "host" */
int lc_cls_hostport(const char *s, size_t len, char *host, size_t hostlen, int *port)
{
	const char *colon = NULL;
	size_t hl;
	size_t i;

	*port = 0;
	if (len && s[0] == '[') {
		const char *rb = memchr(s, ']', len);

		if (!rb)
			return -1;
		hl = (size_t)(rb - s - 1);
		if (hl + 1 > hostlen)
			return -1;
		memcpy(host, s + 1, hl);
		host[hl] = 0;
		if ((size_t)(rb - s + 1) < len && rb[1] == ':')
			return port_part(rb + 2, (size_t)(s + len - rb - 2), port);
		return 0;
	}
	for (i = 0; i < len; i++)
		if (s[i] == ':')
			colon = s + i;
	hl = colon ? (size_t)(colon - s) : len;
	if (hl == 0 || hl + 1 > hostlen)
		return -1;
	memcpy(host, s, hl);
	host[hl] = 0;
	for (i = 0; i < hl; i++)
		host[i] = (char)tolower((unsigned char)host[i]);
	if (colon)
		return port_part(colon + 1, (size_t)(s + len - colon - 1), port);
	return 0;
}

int lc_cls_host_header(const void *buf, size_t n, char *host, size_t hostlen, int *port)
{
	const char *p = buf, *last = memrchr(buf, '\n', n), *end, *line;
	size_t len;
	struct lc_h1_field f;

	if (!last)
		return -1;
	end = last + 1;   /* complete lines only: a Host line still being written names no host yet */
	if (!lc_h1_next_line(&p, end, &line, &len))   /* the request line */
		return -1;
	while (lc_h1_next_field(&p, end, &f)) {
		if (!lc_h1_ieq(f.name, f.nlen, "host"))
			continue;
		if (f.vlen == 0 && f.val == f.name + f.nlen + 1)
			continue;   /* "Host:" and nothing else: a later Host may still name one */
		return lc_cls_hostport(f.val, f.vlen, host, hostlen, port);
	}
	return -1;
}

bool lc_cls_is_h2_preface(const void *buf, size_t n)
{
	size_t l = n < sizeof(LC_H2_PREFACE) - 1 ? n : sizeof(LC_H2_PREFACE) - 1;

	return n >= 3 && memcmp(buf, LC_H2_PREFACE, l) == 0;
}

int lc_cls_client_hello(const void *buf, size_t n, unsigned char cr[32])
{
	const unsigned char *p = buf;

	/* record: type 22, version 3.x, length; handshake: type 1 (ClientHello), len(3), version(2),
	 * random(32) */
	if (n < 5 + 4 + 2 + 32 || p[0] != 0x16 || p[1] != 0x03 || p[5] != 0x01)
		return 0;
	memcpy(cr, p + 11, 32);
	return 1;
}

int lc_cls_client_hello_sni(const void *buf, size_t n, char *out, size_t outlen)
{
	const unsigned char *p = buf, *end;
	size_t off, l;

	if (n < 5 + 4 + 2 + 32 + 1 || p[0] != 0x16 || p[1] != 0x03 || p[5] != 0x01)
		return -1;
	l = ((size_t)p[3] << 8) | p[4];
	end = p + (5 + l < n ? 5 + l : n);
	off = 5 + 4 + 2 + 32;
#define NEED(k) do { if (p + off + (k) > end) return -1; } while (0)
	NEED(1);
	off += 1 + p[off];                                   /* session id */
	NEED(2);
	off += 2 + (((size_t)p[off] << 8) | p[off + 1]);     /* cipher suites */
	NEED(1);
	off += 1 + p[off];                                   /* compression methods */
	NEED(2);
	off += 2;                                            /* extensions length */
	while (p + off + 4 <= end) {
		unsigned type = ((unsigned)p[off] << 8) | p[off + 1];
		size_t el = ((size_t)p[off + 2] << 8) | p[off + 3];

		off += 4;
		NEED(el);
		if (type == 0 && el >= 5 && p[off + 2] == 0) {    /* server_name, host_name */
			size_t nl = ((size_t)p[off + 3] << 8) | p[off + 4];

			if (nl + 5 > el || nl + 1 > outlen || nl == 0)
				return -1;
			memcpy(out, p + off + 5, nl);
			out[nl] = 0;
			return 0;
		}
		off += el;
	}
#undef NEED
	return -1;
}

int lc_cls_url(const char *url, char *host, size_t hostlen, int *port, bool *tls)
{
	const char *p, *e, *at;
	size_t len;

	if (!url)
		return -1;
	if (strncasecmp(url, "https://", 8) == 0) {
		*tls = true;
		p = url + 8;
	} else if (strncasecmp(url, "http://", 7) == 0) {
		*tls = false;
		p = url + 7;
	} else {
		return -1;
	}
	len = strcspn(p, "/?#");
	e = p + len;
	at = memchr(p, '@', len);
	if (at)
		p = at + 1;
	if (lc_cls_hostport(p, (size_t)(e - p), host, hostlen, port) != 0)
		return -1;
	if (*port == 0)
		*port = *tls ? 443 : 80;
	return 0;
}
