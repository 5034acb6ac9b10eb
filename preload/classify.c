/* classify.c - is this connection bound for a provider? Pure byte inspection plus one
 * engine lookup (lc_provider_lookup, cached per policy version by the engine).
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include "preload.h"

/* Provider hosts held when a policy is known but the store cannot be read (fail closed): we can
 * no longer read the policy's own list, so the well-known public endpoints are denied. */
static const struct {
	const char *host;
	enum lc_format fmt;
} builtin[] = {
	{ "api.openai.com", LC_FMT_OPENAI },
	{ "api.anthropic.com", LC_FMT_ANTHROPIC },
};

int lc_cls_lookup(const char *host, int port, struct lc_target *t)
{
	enum lc_format fmt = LC_FMT_OPENAI;
	char name[64] = "";
	int r;
	size_t i;

	if (!host || !host[0])
		return 0;
	LC_PL_ENTER();
	r = lc_provider_lookup(host, port, &fmt, name, sizeof(name));
	if (r < 0) {
		bool closed = lc_fail_closed();

		r = closed ? -1 : 0;
		for (i = 0; closed && i < sizeof(builtin) / sizeof(builtin[0]); i++)
			if (strcasecmp(host, builtin[i].host) == 0) {
				fmt = builtin[i].fmt;
				r = 1;
			}
		lc_log(LC_LOG_DEBUG, "provider lookup for %s:%d failed (%s)", host, port,
		       closed ? "store unusable: fail closed" : "no policy: pass");
	}
	LC_PL_LEAVE();
	if (r) {
		snprintf(t->host, sizeof(t->host), "%s", host);
		t->port = port;
		t->fmt = fmt;
		snprintf(t->name, sizeof(t->name), "%s", name[0] ? name : host);
	}
	return r;
}

bool lc_cls_priced_request(const void *buf, size_t n)
{
	const char *p = buf, *sp, *e;
	char path[512];
	size_t l;

	if (!lc_cls_is_http_request(buf, n))
		return false;
	sp = memchr(p, ' ', n);
	if (!sp)
		return false;
	sp++;
	e = memchr(sp, ' ', n - (size_t)(sp - p));
	if (!e)
		return false;
	l = (size_t)(e - sp);
	if (l >= sizeof(path))
		l = sizeof(path) - 1;
	memcpy(path, sp, l);
	path[l] = 0;
	return lc_api_from_path(path) != LC_API_UNKNOWN;
}

int lc_cls_peer(int fd, char *ip, size_t iplen, int *port)
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);

	if (fd < 0 || getpeername(fd, (struct sockaddr *)&ss, &sl) != 0)
		return -1;
	if (ss.ss_family == AF_INET) {
		struct sockaddr_in *a = (struct sockaddr_in *)&ss;

		if (!inet_ntop(AF_INET, &a->sin_addr, ip, iplen))
			return -1;
		*port = ntohs(a->sin_port);
		return 0;
	}
	if (ss.ss_family == AF_INET6) {
		struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;

		if (IN6_IS_ADDR_V4MAPPED(&a->sin6_addr)) {
			if (!inet_ntop(AF_INET, &a->sin6_addr.s6_addr[12], ip, iplen))
				return -1;
		} else if (!inet_ntop(AF_INET6, &a->sin6_addr, ip, iplen)) {
			return -1;
		}
		*port = ntohs(a->sin6_port);
		return 0;
	}
	return -1;
}
