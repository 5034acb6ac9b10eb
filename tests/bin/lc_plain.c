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

#include "client.h"

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
		char head[1024], body[512], *resp = NULL;
		size_t rlen = 0, bl, hl;
		struct timeval t0;
		struct iovec iov[2];
		int fd;

		ipv4_addr(&a, argv[1], argv[2]);
		fd = socket(AF_INET, SOCK_STREAM, 0);
		if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0) {
			perror("connect");
			return 1;
		}
		fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
		bl = chat_request(argv[1], argv[2], argv[3], stream, head, sizeof(head), &hl, body, sizeof(body));
		gettimeofday(&t0, NULL);
		if (put_all(fd, head, hl, false) != 0) {
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
			append(&resp, &rlen, buf, (size_t)k);
		}
		report(resp, rlen, &t0);
		free(resp);
		close(fd);
	}
	return 0;
}
