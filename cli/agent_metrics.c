/* agent_metrics.c - `llmcap agent --metrics ADDR:PORT`: the host's Prometheus metrics.
 *
 * One thread serves GET /metrics over plain HTTP/1.0 (one request per connection, 5 s to send
 * it): decisions by verdict and reason, reservations in flight, the store's size, and every
 * limit of the installed policy (used, reserved, threshold). Everything is read from the host
 * store at scrape time, so it also counts decisions made by programs the agent never sees.
 */
#include <errno.h>
#include <netdb.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "engine.h"
#include "prom.h"
#include "stats.h"
#include "util.h"

int lc_agent_metrics_start(const char *addr, char *err, size_t errlen);
void lc_agent_metrics_report(bool ok);

static int listen_fd = -1;
static atomic_llong last_report_ok;    /* unix s of the last report the server accepted */
static atomic_ullong reports[2];       /* [0] failed, [1] accepted */

void lc_agent_metrics_report(bool ok)
{
	atomic_fetch_add(&reports[ok ? 1 : 0], 1);
	if (ok)
		atomic_store(&last_report_ok, lc_now());
}

static void render(struct lc_buf *b)
{
	struct lc_host_stats st;
	json_t *status = NULL;
	int rc = lc_host_stats_get(&st);
	lc_prom_family(b, "llmcap_host_store_ok", "gauge", "1 when the host store (and a policy) can be read.");
	lc_prom_sample(b, "llmcap_host_store_ok", NULL, rc == 0 ? 1 : 0);
	if (rc == 0) {
		lc_prom_family(b, "llmcap_decisions_total", "counter",
			       "Provider requests decided on this host, by verdict and (for deny) reason.");
		const char *al[] = {"verdict", "allow", "reason", "", NULL};
		lc_prom_sample(b, "llmcap_decisions_total", al, (double)st.allowed);
		for (int r = 0; r < LC_DENY_REASONS; r++) {
			const char *dl[] = {"verdict", "deny", "reason", lc_deny_reason_name((enum lc_deny_reason)r), NULL};
			lc_prom_sample(b, "llmcap_decisions_total", dl, (double)st.denied[r]);
		}
		lc_prom_family(b, "llmcap_reservations_in_flight", "gauge",
			       "Requests admitted and not settled yet (their worst-case cost is reserved).");
		lc_prom_sample(b, "llmcap_reservations_in_flight", NULL, (double)st.reservations);
		lc_prom_family(b, "llmcap_store_size_bytes", "gauge", "Size of the host store's data file.");
		lc_prom_sample(b, "llmcap_store_size_bytes", NULL, (double)st.store_bytes);
		lc_prom_family(b, "llmcap_store_used_bytes", "gauge", "Bytes of the host store's pages in use.");
		lc_prom_sample(b, "llmcap_store_used_bytes", NULL, (double)st.store_used_bytes);
	}
	if (lc_status_json(&status) == LC_OK) {
		json_t *pol = json_object_get(status, "policy");
		lc_prom_family(b, "llmcap_policy_version", "gauge", "Version of the policy installed on this host.");
		lc_prom_sample(b, "llmcap_policy_version", NULL, (double)json_integer_value(json_object_get(pol, "version")));
		lc_prom_limits(b, json_object_get(status, "limits"), true);
		json_decref(status);
	}
	lc_prom_family(b, "llmcap_agent_reports_total", "counter", "Usage reports sent to the server, by result.");
	const char *ok[] = {"result", "accepted", NULL}, *bad[] = {"result", "failed", NULL};
	lc_prom_sample(b, "llmcap_agent_reports_total", ok, (double)atomic_load(&reports[1]));
	lc_prom_sample(b, "llmcap_agent_reports_total", bad, (double)atomic_load(&reports[0]));
	lc_prom_family(b, "llmcap_agent_last_report_timestamp_seconds", "gauge",
		       "When the server last accepted this host's report (Unix time; 0: not yet).");
	lc_prom_sample(b, "llmcap_agent_last_report_timestamp_seconds", NULL, (double)atomic_load(&last_report_ok));
}

static void answer(int fd, const char *status, const char *type, const char *body, size_t len)
{
	char head[256];
	int n = snprintf(head, sizeof head,
			 "HTTP/1.0 %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\nConnection: close\r\n\r\n", status,
			 type, len);
	if (write(fd, head, (size_t)n) == n && len)
		(void)!write(fd, body, len);
}

static void serve(int fd)
{
	char req[4096];
	size_t got = 0;
	struct timeval tv = {5, 0};
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
	while (got < sizeof req - 1) {
		ssize_t n = read(fd, req + got, sizeof req - 1 - got);
		if (n <= 0)
			return;
		got += (size_t)n;
		req[got] = 0;
		if (strstr(req, "\r\n\r\n") || strstr(req, "\n\n"))
			break;
	}
	req[got] = 0;
	bool head = !strncmp(req, "HEAD ", 5);
	if (strncmp(req, "GET ", 4) && !head) {
		answer(fd, "405 Method Not Allowed", "text/plain", "GET /metrics\n", 13);
		return;
	}
	const char *path = req + (head ? 5 : 4);
	if (strncmp(path, "/metrics", 8) || (path[8] != ' ' && path[8] != '?')) {
		answer(fd, "404 Not Found", "text/plain", "GET /metrics\n", 13);
		return;
	}
	struct lc_buf b;
	lc_buf_init(&b, 64 * 1024 * 1024);
	render(&b);
	answer(fd, "200 OK", LC_PROM_CONTENT_TYPE, b.data ? b.data : "", head ? 0 : b.len);
	lc_buf_free(&b);
}

static void *metrics_thread(void *arg)
{
	(void)arg;
	for (;;) {
		int fd = accept(listen_fd, NULL, NULL);
		if (fd < 0) {
			if (errno == EINTR || errno == ECONNABORTED || errno == EMFILE || errno == ENFILE) {
				usleep(10000);
				continue;
			}
			return NULL;
		}
		serve(fd);
		close(fd);
	}
}

int lc_agent_metrics_start(const char *addr, char *err, size_t errlen)
{
	char host[256];
	const char *port;
	struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICHOST | AI_NUMERICSERV}, *ai;
	if (addr[0] == '[') {
		const char *e = strchr(addr, ']');
		if (!e || e[1] != ':' || (size_t)(e - addr - 1) >= sizeof host)
			return lc_errf(err, errlen, "expected ADDR:PORT ([ADDR]:PORT for IPv6)"), -1;
		snprintf(host, sizeof host, "%.*s", (int)(e - addr - 1), addr + 1);
		port = e + 2;
	} else {
		const char *c = strrchr(addr, ':');
		if (!c || (size_t)(c - addr) >= sizeof host)
			return lc_errf(err, errlen, "expected ADDR:PORT, e.g. 127.0.0.1:9464"), -1;
		snprintf(host, sizeof host, "%.*s", (int)(c - addr), addr);
		port = c + 1;
	}
	char *end;
	long p = strtol(port, &end, 10);
	if (!*port || *end || p < 1 || p > 65535)
		return lc_errf(err, errlen, "port: 1-65535"), -1;
	int rc = getaddrinfo(host[0] ? host : "0.0.0.0", port, &hints, &ai);
	if (rc)
		return lc_errf(err, errlen, "%s: %s", host, gai_strerror(rc)), -1;
	int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0), one = 1;
	if (fd >= 0)
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	if (fd < 0 || bind(fd, ai->ai_addr, ai->ai_addrlen) != 0 || listen(fd, 16) != 0) {
		lc_errf(err, errlen, "cannot listen: %s", strerror(errno));
		if (fd >= 0)
			close(fd);
		freeaddrinfo(ai);
		return -1;
	}
	freeaddrinfo(ai);
	listen_fd = fd;
	pthread_t t;
	if (pthread_create(&t, NULL, metrics_thread, NULL) != 0) {
		close(fd);
		listen_fd = -1;
		return lc_errf(err, errlen, "cannot start a thread"), -1;
	}
	pthread_detach(t);
	return 0;
}
