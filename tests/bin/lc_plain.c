/* lc_plain - a raw-socket plain-HTTP client for the preload tests: the libc write/writev and
 * read paths (curl and Python use send/recv), non-blocking with poll().
 *
 *   lc_plain IP PORT KEY N [--stream]
 *
 * Each request on its own connection ("connection: close"), head written with write(), body
 * with writev() in two pieces, the answer read with read() after poll() until EOF. One line per
 * request: status=CODE retry_after=V should_retry=V ms=T bytes=N usage=yes|no
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/uio.h>
#include <unistd.h>

static long ms_since(struct timeval *t0)
{
	struct timeval t1;

	gettimeofday(&t1, NULL);
	return (t1.tv_sec - t0->tv_sec) * 1000 + (t1.tv_usec - t0->tv_usec) / 1000;
}

static int write_all(int fd, const char *p, size_t n)
{
	while (n) {
		ssize_t k = write(fd, p, n);

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

int main(int argc, char **argv)
{
	int n, stream = 0, i;

	if (argc < 5) {
		fprintf(stderr, "usage: lc_plain IP PORT KEY N [--stream]\n");
		return 2;
	}
	n = atoi(argv[4]);
	if (argc > 5 && !strcmp(argv[5], "--stream"))
		stream = 1;
	for (i = 0; i < n; i++) {
		struct sockaddr_in a;
		char head[1024], body[512], *resp = NULL, ra[64], sr[64];
		size_t rlen = 0, bl;
		struct timeval t0;
		struct iovec iov[2];
		int fd, status = 0;

		memset(&a, 0, sizeof(a));
		a.sin_family = AF_INET;
		a.sin_port = htons((unsigned short)atoi(argv[2]));
		inet_pton(AF_INET, argv[1], &a.sin_addr);
		fd = socket(AF_INET, SOCK_STREAM, 0);
		if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0) {
			perror("connect");
			return 1;
		}
		fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
		bl = (size_t)snprintf(body, sizeof(body),
				      "{\"model\":\"gpt-4o-mini\",\"max_tokens\":20,%s\"messages\":[{\"role\":"
				      "\"user\",\"content\":\"hi\"}]}",
				      stream ? "\"stream\":true,\"stream_options\":{\"include_usage\":true}," : "");
		snprintf(head, sizeof(head),
			 "POST /v1/chat/completions HTTP/1.1\r\nHost: %s:%s\r\nAuthorization: Bearer %s\r\n"
			 "Content-Type: application/json\r\nContent-Length: %zu\r\nConnection: close\r\n\r\n",
			 argv[1], argv[2], argv[3], bl);
		gettimeofday(&t0, NULL);
		if (write_all(fd, head, strlen(head)) != 0) {
			printf("status=0 error=write\n");
			close(fd);
			continue;
		}
		iov[0].iov_base = body;
		iov[0].iov_len = bl / 2;
		iov[1].iov_base = body + bl / 2;
		iov[1].iov_len = bl - bl / 2;
		if (writev(fd, iov, 2) != (ssize_t)bl) {
			printf("status=0 error=writev errno=%d\n", errno);
			close(fd);
			continue;
		}
		for (;;) {
			struct pollfd pf = { fd, POLLIN, 0 };
			char buf[4096];
			ssize_t k;

			if (poll(&pf, 1, 5000) <= 0) {
				printf("status=0 error=timeout\n");
				break;
			}
			k = read(fd, buf, sizeof(buf));
			if (k < 0 && (errno == EAGAIN || errno == EINTR))
				continue;
			if (k <= 0)
				break;
			resp = realloc(resp, rlen + (size_t)k + 1);
			memcpy(resp + rlen, buf, (size_t)k);
			rlen += (size_t)k;
			resp[rlen] = 0;
		}
		if (resp)
			sscanf(resp, "HTTP/1.1 %d", &status);
		hdr(resp ? resp : "", "retry-after:", ra, sizeof(ra));
		hdr(resp ? resp : "", "x-should-retry:", sr, sizeof(sr));
		printf("status=%d retry_after=%s should_retry=%s ms=%ld bytes=%zu usage=%s\n", status, ra, sr,
		       ms_since(&t0), rlen, resp && strstr(resp, "\"usage\"") ? "yes" : "no");
		fflush(stdout);
		free(resp);
		close(fd);
	}
	return 0;
}
