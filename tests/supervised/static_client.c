/* static_client HOST PORT KEY N [--fork]: a statically linked (musl) plain-HTTP client for the
 * supervisor tests. N POSTs to /v1/chat/completions, a fresh connection each; one JSON line per
 * call: {"status": S, "error": "...", "ms": T}. --fork: a child process makes the calls. --exec
 * CMD...: after the calls, exec CMD (a supervised program starting another). Built by
 * the test with musl-gcc -static (the preload can never see it: no dynamic loader runs).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double now_ms(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

static void one(const char *host, const char *port, const char *key)
{
	const char *body = "{\"model\":\"gpt-4o-mini\",\"max_tokens\":20,\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}";
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM }, *ai = NULL;
	char req[1024], resp[4096];
	double t0 = now_ms();
	int fd, n, st = 0, got = 0, k;

	if (getaddrinfo(host, port, &hints, &ai) != 0) {
		printf("{\"status\": 0, \"error\": \"resolve\", \"ms\": %.2f}\n", now_ms() - t0);
		return;
	}
	fd = socket(ai->ai_family, SOCK_STREAM, 0);
	if (connect(fd, ai->ai_addr, ai->ai_addrlen) != 0) {
		printf("{\"status\": 0, \"error\": \"%s\", \"ms\": %.2f}\n", strerror(errno), now_ms() - t0);
		close(fd);
		freeaddrinfo(ai);
		return;
	}
	freeaddrinfo(ai);
	n = snprintf(req, sizeof(req), "POST /v1/chat/completions HTTP/1.1\r\nHost: %s:%s\r\nAuthorization: Bearer %s\r\n"
		     "Content-Type: application/json\r\nContent-Length: %zu\r\nConnection: close\r\n\r\n%s",
		     host, port, key, strlen(body), body);
	if (write(fd, req, (size_t)n) != n) {
		printf("{\"status\": 0, \"error\": \"write\", \"ms\": %.2f}\n", now_ms() - t0);
		close(fd);
		return;
	}
	/* until the end of the stream, or the Content-Length body is complete (keep-alive servers) */
	while (got < (int)sizeof(resp) - 1 && (k = (int)read(fd, resp + got, sizeof(resp) - 1 - (size_t)got)) > 0) {
		char *eoh, *cl;

		got += k;
		resp[got] = 0;
		eoh = strstr(resp, "\r\n\r\n");
		cl = strcasestr(resp, "\r\ncontent-length:");
		if (eoh && cl && cl < eoh && (eoh + 4 - resp) + atoi(cl + 17) <= got)
			break;
	}
	resp[got] = 0;
	sscanf(resp, "HTTP/1.%*d %d", &st);
	printf("{\"status\": %d, \"ms\": %.2f}\n", st, now_ms() - t0);
	close(fd);
}

int main(int argc, char **argv)
{
	int n, i, st = 0;
	pid_t p;

	if (argc < 5)
		return 2;
	n = atoi(argv[4]);
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (argc > 6 && !strcmp(argv[5], "--exec")) {
		for (i = 0; i < n; i++)
			one(argv[1], argv[2], argv[3]);
		execvp(argv[6], argv + 6);
		return 127;
	}
	if (argc > 5 && !strcmp(argv[5], "--fork")) {
		p = fork();
		if (p == 0) {
			for (i = 0; i < n; i++)
				one(argv[1], argv[2], argv[3]);
			_exit(0);
		}
		waitpid(p, &st, 0);
		return 0;
	}
	for (i = 0; i < n; i++)
		one(argv[1], argv[2], argv[3]);
	return 0;
}
