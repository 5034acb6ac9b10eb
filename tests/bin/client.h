/* client.h - what the raw-socket test clients (lc_plain, lc_mmsg) share: the request they send and
 * the loop that writes it, the response they collect, and the one line they print per request:
 *   status=CODE retry_after=V should_retry=V ms=T bytes=N usage=yes|no
 * Header-only: each client is one program built from one .c file. */
#ifndef LC_TEST_CLIENT_H
#define LC_TEST_CLIENT_H

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

/* the chat request (body, then head naming IP:PORT and the key); returns the body's length, *hl the head's */
static size_t chat_request(const char *ip, const char *port, const char *key, bool stream, char *head, size_t headlen,
			   size_t *hl, char *body, size_t bodylen)
{
	size_t bl = (size_t)snprintf(body, bodylen,
				     "{\"model\":\"gpt-4o-mini\",\"max_tokens\":20,%s\"messages\":[{\"role\":"
				     "\"user\",\"content\":\"hi\"}]}",
				     stream ? "\"stream\":true,\"stream_options\":{\"include_usage\":true}," : "");

	*hl = (size_t)snprintf(head, headlen,
			       "POST /v1/chat/completions HTTP/1.1\r\nHost: %s:%s\r\nAuthorization: Bearer %s\r\n"
			       "Content-Type: application/json\r\nContent-Length: %zu\r\nConnection: close\r\n\r\n",
			       ip, port, key, bl);
	return bl;
}

/* all N bytes of P on FD, by send(2) with MSG_NOSIGNAL when VIA_SEND, else by write(2) (the shim
 * hooks both); a full non-blocking socket is waited for. 0, or -1 on an error. */
static int put_all(int fd, const char *p, size_t n, bool via_send)
{
	while (n) {
		ssize_t k = via_send ? send(fd, p, n, MSG_NOSIGNAL) : write(fd, p, n);

		if (k < 0 && (errno == EAGAIN || errno == EINTR)) {
			struct pollfd pf = { fd, POLLOUT, 0 };

			poll(&pf, 1, 1000);
			continue;
		}
		if (k <= 0)
			return -1;
		p += k;
		n -= (size_t)k;
	}
	return 0;
}

static void ipv4_addr(struct sockaddr_in *a, const char *ip, const char *port)
{
	memset(a, 0, sizeof(*a));
	a->sin_family = AF_INET;
	a->sin_port = htons((unsigned short)atoi(port));
	inet_pton(AF_INET, ip, &a->sin_addr);
}

static void append(char **resp, size_t *rlen, const char *p, size_t k)
{
	*resp = realloc(*resp, *rlen + k + 1);
	memcpy(*resp + *rlen, p, k);
	*rlen += k;
	(*resp)[*rlen] = 0;
}

static void hdr(const char *resp, const char *name, char *out, size_t outlen)
{
	const char *p = strcasestr(resp, name);
	size_t i = 0;

	snprintf(out, outlen, "-");
	if (!p)
		return;
	p += strlen(name);
	while (*p == ' ')
		p++;
	while (p[i] && p[i] != '\r' && p[i] != '\n' && i + 1 < outlen) {
		out[i] = p[i];
		i++;
	}
	out[i] = 0;
}

/* the line for one answered request (resp may be NULL: nothing came back) */
static void report(const char *resp, size_t rlen, const struct timeval *t0)
{
	struct timeval t1;
	char ra[64], sr[64];
	int status = 0;

	gettimeofday(&t1, NULL);
	if (resp)
		sscanf(resp, "HTTP/1.1 %d", &status);
	hdr(resp ? resp : "", "retry-after:", ra, sizeof(ra));
	hdr(resp ? resp : "", "x-should-retry:", sr, sizeof(sr));
	printf("status=%d retry_after=%s should_retry=%s ms=%ld bytes=%zu usage=%s\n", status, ra, sr,
	       (long)((t1.tv_sec - t0->tv_sec) * 1000 + (t1.tv_usec - t0->tv_usec) / 1000), rlen,
	       resp && strstr(resp, "\"usage\"") ? "yes" : "no");
	fflush(stdout);
}

#endif
