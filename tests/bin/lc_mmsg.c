/* lc_mmsg - a plain-HTTP client for the preload tests that writes its requests with the less
 * common libc calls: sendmmsg/recvmmsg, splice from a pipe, sendto(MSG_FASTOPEN).
 *
 *   lc_mmsg IP PORT KEY MODE N       MODE: mmsg | splice | fastopen | sendto-addr
 *
 * Each request on its own blocking connection ("connection: close"). mmsg: head and body as two
 * messages of one sendmmsg, the answer read with recvmmsg(MSG_WAITFORONE) until EOF. splice: head
 * with send, body spliced from a pipe. fastopen: head with sendto(MSG_FASTOPEN) on an unconnected
 * socket, body with send. The non-mmsg modes read with recv. One line per request:
 * status=CODE retry_after=V should_retry=V ms=T bytes=N usage=yes|no
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/uio.h>
#include <unistd.h>

#include "client.h"

#ifndef MSG_FASTOPEN
#define MSG_FASTOPEN 0x20000000
#endif

int main(int argc, char **argv)
{
	const char *mode;
	int n, i;

	if (argc < 6) {
		fprintf(stderr, "usage: lc_mmsg IP PORT KEY MODE N\n");
		return 2;
	}
	mode = argv[4];
	n = atoi(argv[5]);
	for (i = 0; i < n; i++) {
		struct sockaddr_in a;
		char head[1024], body[512], *resp = NULL;
		size_t rlen = 0, bl, hl;
		struct timeval t0;
		int fd, err = 0;

		ipv4_addr(&a, argv[1], argv[2]);
		fd = socket(AF_INET, SOCK_STREAM, 0);
		if (fd < 0) {
			perror("socket");
			return 1;
		}
		if (strcmp(mode, "fastopen") != 0 && connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0) {
			perror("connect");
			return 1;
		}
		bl = chat_request(argv[1], argv[2], argv[3], false, head, sizeof(head), &hl, body, sizeof(body));
		gettimeofday(&t0, NULL);
		if (!strcmp(mode, "mmsg")) {
			struct iovec iov[2] = { { head, hl }, { body, bl } };
			struct mmsghdr mm[2];
			int k;

			memset(mm, 0, sizeof(mm));
			mm[0].msg_hdr.msg_iov = &iov[0];
			mm[0].msg_hdr.msg_iovlen = 1;
			mm[1].msg_hdr.msg_iov = &iov[1];
			mm[1].msg_hdr.msg_iovlen = 1;
			k = sendmmsg(fd, mm, 2, MSG_NOSIGNAL);
			if (k != 2 || mm[0].msg_len != hl || mm[1].msg_len != bl)
				err = 1;
		} else if (!strcmp(mode, "sendto-addr")) {
			/* a connected socket written with a destination address (TCP ignores it):
			 * head with sendto(addr), body with sendmsg(msg_name) */
			struct iovec iov = {body, bl};
			struct msghdr mh;

			memset(&mh, 0, sizeof(mh));
			mh.msg_name = &a;
			mh.msg_namelen = sizeof(a);
			mh.msg_iov = &iov;
			mh.msg_iovlen = 1;
			if (sendto(fd, head, hl, MSG_NOSIGNAL, (struct sockaddr *)&a, sizeof(a)) != (ssize_t)hl ||
			    sendmsg(fd, &mh, MSG_NOSIGNAL) != (ssize_t)bl)
				err = 1;
		} else if (!strcmp(mode, "splice")) {
			int pp[2];

			if (pipe(pp) != 0 || put_all(fd, head, hl, true) != 0 || write(pp[1], body, bl) != (ssize_t)bl)
				err = 1;
			else if (close(pp[1]), splice(pp[0], NULL, fd, NULL, bl, 0) != (ssize_t)bl)
				err = 1;
			close(pp[0]);
		} else {
			if (sendto(fd, head, hl, MSG_FASTOPEN | MSG_NOSIGNAL, (struct sockaddr *)&a, sizeof(a)) !=
				    (ssize_t)hl ||
			    put_all(fd, body, bl, true) != 0)
				err = 1;
		}
		if (err) {
			printf("status=0 error=send errno=%d\n", errno);
			close(fd);
			continue;
		}
		for (;;) {
			char buf[4][1024];
			ssize_t k;

			if (!strcmp(mode, "mmsg")) {
				struct iovec iov[4];
				struct mmsghdr mm[4];
				int j, got, eof = 0;

				memset(mm, 0, sizeof(mm));
				for (j = 0; j < 4; j++) {
					iov[j].iov_base = buf[j];
					iov[j].iov_len = sizeof(buf[j]);
					mm[j].msg_hdr.msg_iov = &iov[j];
					mm[j].msg_hdr.msg_iovlen = 1;
				}
				got = recvmmsg(fd, mm, 4, MSG_WAITFORONE, NULL);
				if (got < 0 && errno == EINTR)
					continue;
				if (got <= 0)
					break;
				for (j = 0; j < got; j++) {
					if (mm[j].msg_len == 0)
						eof = 1;
					append(&resp, &rlen, buf[j], mm[j].msg_len);
				}
				if (eof)
					break;
				continue;
			}
			k = recv(fd, buf[0], sizeof(buf[0]), 0);
			if (k < 0 && errno == EINTR)
				continue;
			if (k <= 0)
				break;
			append(&resp, &rlen, buf[0], (size_t)k);
		}
		report(resp, rlen, &t0);
		free(resp);
		close(fd);
	}
	return 0;
}
