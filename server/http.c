/* http.c - libmicrohttpd glue: requests in, srv_route_* out.
 *
 * - The route and the caller's token are checked on the request head, in the
 *   first call of the access handler: a refused request is answered before
 *   any of its body is read, and a body is buffered only up to its route's
 *   body_max (Content-Length above it: 413 at once).
 * - Bodies buffered at once are bounded in all (--max-body-memory): a request
 *   reserves its Content-Length (its route's body_max when chunked) on the
 *   head, or is answered 503 with Retry-After before any of its body is read;
 *   the reservation is the buffer, allocated once, and returns when the
 *   request ends.
 * - Slow clients cannot hold the server: a connection limit, a per-IP limit,
 *   and a deadline for each request's head and body counted from when the
 *   connection became ready for it (a client trickling bytes cannot extend
 *   it, unlike MHD's idle timeout). A sweeper shuts down connections past it.
 * - Long-polls (GET /v1/policy?wait=N) are suspended, not parked on a pool
 *   thread, and resumed when a policy is published or their time is up.
 */
#include <errno.h>
#include <inttypes.h>
#include <malloc.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "dash.h"
#include "srv_http.h"
#include "util.h"

#define MAX_ARGS 16

enum track_state { T_REQUEST, T_WAITING, T_ANSWERING };

/* one TCP connection (MHD's socket context) */
struct track {
	int fd;
	dev_t dev;
	ino_t ino;                 /* the socket's identity: never shut down a reused fd */
	int64_t since_ms;          /* the current request's deadline counts from here */
	enum track_state state;
	bool cut;
	struct track *prev, *next;
};

/* one request (MHD's con_cls) */
struct conn {
	struct srv_match m;
	struct srv_req rq;
	const char *args[2 * MAX_ARGS + 1];
	int nargs;
	char peer[INET6_ADDRSTRLEN + 8];
	struct lc_buf body;
	size_t reserved;           /* of the body budget, returned in on_done */
	bool answered;             /* refused on the head */
	bool too_big;
	/* long-poll */
	struct MHD_Connection *mc;
	uint64_t gen;
	int64_t retry_at_ms;
	bool waiting;
	struct conn *wnext;
};

struct srv_http {
	struct srv *s;
	struct MHD_Daemon *d;
	struct srv_http_opts o;
	pthread_mutex_t mu;        /* tracks, body_inflight */
	struct track *tracks;
	size_t body_inflight;      /* bytes reserved for request bodies, at most o.max_body_memory */
	struct conn *waiters;      /* under s->pub_mu */
	pthread_t th;
	bool th_running;
	bool stop;                 /* under s->pub_mu */
};

static int64_t mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- connection tracking and the request deadline ---- */

static struct track *track_of(struct MHD_Connection *c)
{
	const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
	return ci ? ci->socket_context : NULL;
}

static void track_set(struct srv_http *h, struct MHD_Connection *c, enum track_state st)
{
	struct track *t = track_of(c);
	if (!t)
		return;
	pthread_mutex_lock(&h->mu);
	if (st == T_REQUEST && t->state != T_REQUEST)
		t->since_ms = mono_ms();
	t->state = st;
	pthread_mutex_unlock(&h->mu);
}

static void on_connection(void *cls, struct MHD_Connection *c, void **socket_context,
			  enum MHD_ConnectionNotificationCode code)
{
	struct srv_http *h = cls;
	struct track *t = *socket_context;
	if (code == MHD_CONNECTION_NOTIFY_STARTED) {
		const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
		struct stat st;
		if (!ci || !(t = calloc(1, sizeof *t)))
			return;
		t->fd = ci->connect_fd;
		if (fstat(t->fd, &st) == 0) {
			t->dev = st.st_dev;
			t->ino = st.st_ino;
		}
		t->since_ms = mono_ms();
		t->state = T_REQUEST;
		pthread_mutex_lock(&h->mu);
		t->next = h->tracks;
		if (h->tracks)
			h->tracks->prev = t;
		h->tracks = t;
		pthread_mutex_unlock(&h->mu);
		*socket_context = t;
	} else if (code == MHD_CONNECTION_NOTIFY_CLOSED && t) {
		/* MHD closes the socket after this returns: under mu, the sweeper never sees a closed fd */
		pthread_mutex_lock(&h->mu);
		if (t->prev)
			t->prev->next = t->next;
		else
			h->tracks = t->next;
		if (t->next)
			t->next->prev = t->prev;
		pthread_mutex_unlock(&h->mu);
		free(t);
		*socket_context = NULL;
	}
}

/* shut down every connection whose request is past its deadline */
static void sweep(struct srv_http *h)
{
	int64_t now = mono_ms(), limit = (int64_t)h->o.request_timeout_s * 1000;
	pthread_mutex_lock(&h->mu);
	for (struct track *t = h->tracks; t; t = t->next) {
		struct stat st;
		if (t->cut || t->state != T_REQUEST || now - t->since_ms < limit)
			continue;
		if (fstat(t->fd, &st) == 0 && st.st_dev == t->dev && st.st_ino == t->ino) {
			shutdown(t->fd, SHUT_RDWR);
			lc_log(LC_LOG_DEBUG, "llmcap-server: a request took over %us: connection closed",
			       h->o.request_timeout_s);
		}
		t->cut = true;
	}
	pthread_mutex_unlock(&h->mu);
}

/* ---- long-poll waiters and the sweeper: one thread ---- */

static void *waiter_thread(void *arg)
{
	struct srv_http *h = arg;
	struct srv *s = h->s;
	int64_t next_sweep = mono_ms() + 1000;
	pthread_mutex_lock(&s->pub_mu);
	while (!h->stop) {
		int64_t now = lc_now_ms(), next = now + 1000;
		for (struct conn **pp = &h->waiters; *pp;) {
			struct conn *w = *pp;
			if (w->gen != s->pub_gen || now >= w->retry_at_ms || s->pub_stopping) {
				*pp = w->wnext;
				w->waiting = false;
				MHD_resume_connection(w->mc);
				continue;
			}
			if (w->retry_at_ms < next)
				next = w->retry_at_ms;
			pp = &w->wnext;
		}
		if (mono_ms() >= next_sweep) {
			pthread_mutex_unlock(&s->pub_mu);
			sweep(h);
			pthread_mutex_lock(&s->pub_mu);
			next_sweep = mono_ms() + 1000;
		}
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		int64_t wait_ms = next - now;
		if (wait_ms < 1)
			wait_ms = 1;
		ts.tv_sec += wait_ms / 1000;
		ts.tv_nsec += (long)(wait_ms % 1000) * 1000000;
		if (ts.tv_nsec >= 1000000000) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000;
		}
		pthread_cond_timedwait(&s->pub_cv, &s->pub_mu, &ts);
	}
	/* shutting down: let every waiter answer */
	for (struct conn *w = h->waiters; w; w = w->wnext) {
		w->waiting = false;
		MHD_resume_connection(w->mc);
	}
	h->waiters = NULL;
	pthread_mutex_unlock(&s->pub_mu);
	return NULL;
}

static void wait_for_publish(struct srv_http *h, struct conn *cn)
{
	struct srv *s = h->s;
	MHD_suspend_connection(cn->mc);
	pthread_mutex_lock(&s->pub_mu);
	cn->waiting = true;
	cn->wnext = h->waiters;
	h->waiters = cn;
	pthread_cond_broadcast(&s->pub_cv);
	pthread_mutex_unlock(&s->pub_mu);
}

/* ---- requests ---- */

static enum MHD_Result send_resp(struct MHD_Connection *c, struct srv_resp *rs, bool head)
{
	struct MHD_Response *r;
	enum MHD_Result ret;
	r = MHD_create_response_from_buffer(head ? 0 : rs->body_len, rs->body ? rs->body : (void *)"",
					    MHD_RESPMEM_MUST_COPY);
	if (!r)
		return MHD_NO;
	if (rs->body)
		MHD_add_response_header(r, "Content-Type", rs->content_type ? rs->content_type : "application/json");
	if (rs->etag[0])
		MHD_add_response_header(r, "ETag", rs->etag);
	if (rs->allow[0])
		MHD_add_response_header(r, "Allow", rs->allow);
	if (rs->www_auth)
		MHD_add_response_header(r, "WWW-Authenticate", "Bearer realm=\"llmcap\"");
	if (rs->set_cookie[0])
		MHD_add_response_header(r, "Set-Cookie", rs->set_cookie);
	if (rs->retry_after_s > 0) {
		char ra[16];
		snprintf(ra, sizeof ra, "%d", rs->retry_after_s);
		MHD_add_response_header(r, "Retry-After", ra);
	}
	MHD_add_response_header(r, "X-Content-Type-Options", "nosniff");
	if (rs->content_type && strncmp(rs->content_type, "text/html", 9) == 0) {
		/* the dashboard: its own files only, never framed */
		MHD_add_response_header(r, "Content-Security-Policy", SRV_DASH_CSP);
		MHD_add_response_header(r, "X-Frame-Options", "DENY");
		MHD_add_response_header(r, "Referrer-Policy", "no-referrer");
	}
	MHD_add_response_header(r, "Cache-Control", "no-store");
	ret = MHD_queue_response(c, (unsigned)rs->status, r);
	MHD_destroy_response(r);
	return ret;
}

static enum MHD_Result answer(struct srv_http *h, struct MHD_Connection *c, struct conn *cn, struct srv_resp *rs)
{
	lc_log(LC_LOG_DEBUG, "llmcap-server: %s %s -> %d", cn->rq.method, cn->rq.path, rs->status);
	track_set(h, c, T_ANSWERING);
	enum MHD_Result ret = send_resp(c, rs, strcmp(cn->rq.method, "HEAD") == 0);
	srv_resp_free(rs);
	cn->answered = true;
	return ret;
}

static enum MHD_Result collect_arg(void *cls, enum MHD_ValueKind kind, const char *key, const char *value)
{
	struct conn *cn = cls;
	(void)kind;
	if (cn->nargs == MAX_ARGS)
		return MHD_NO;
	cn->args[2 * cn->nargs] = key;
	cn->args[2 * cn->nargs + 1] = value ? value : "";
	cn->nargs++;
	return MHD_YES;
}

static const char *header_of(void *hcls, const char *name)
{
	return MHD_lookup_connection_value(hcls, MHD_HEADER_KIND, name);
}

static void peer_of(struct MHD_Connection *c, char *out, size_t outlen)
{
	const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
	out[0] = 0;
	if (!ci || !ci->client_addr)
		return;
	if (ci->client_addr->sa_family == AF_INET)
		inet_ntop(AF_INET, &((const struct sockaddr_in *)ci->client_addr)->sin_addr, out, (socklen_t)outlen);
	else if (ci->client_addr->sa_family == AF_INET6)
		inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)ci->client_addr)->sin6_addr, out, (socklen_t)outlen);
}

/* take n bytes of the body budget; false when they would pass it */
static bool body_budget_take(struct srv_http *h, size_t n)
{
	bool ok;
	pthread_mutex_lock(&h->mu);
	ok = n <= h->o.max_body_memory - h->body_inflight;
	if (ok)
		h->body_inflight += n;
	pthread_mutex_unlock(&h->mu);
	return ok;
}

static void body_budget_give(struct srv_http *h, size_t n)
{
	pthread_mutex_lock(&h->mu);
	h->body_inflight -= n;
	pthread_mutex_unlock(&h->mu);
}

/* the first call, on the request head: route, token and size, before any body */
static enum MHD_Result on_head(struct srv_http *h, struct MHD_Connection *c, const char *url, const char *method,
			       void **con_cls)
{
	struct conn *cn = calloc(1, sizeof *cn);
	struct srv_resp rs = {0};
	if (!cn)
		return MHD_NO;
	*con_cls = cn;
	cn->mc = c;
	MHD_get_connection_values(c, MHD_GET_ARGUMENT_KIND, collect_arg, cn);
	peer_of(c, cn->peer, sizeof cn->peer);
	cn->rq = (struct srv_req){
		.method = method,
		.path = url,
		.authorization = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Authorization"),
		.if_none_match = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "If-None-Match"),
		.args = cn->args,
		.header = header_of,
		.hcls = c,
		.peer = cn->peer,
		.start_ms = lc_now_ms(),
	};
	if (srv_route_match(method, url, &cn->m, &rs) != 0 || !srv_route_auth(h->s, &cn->m, &cn->rq, &rs))
		return answer(h, c, cn, &rs);
	size_t cap = cn->m.route->body_max;
	const char *cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Content-Length");
	int64_t len = (int64_t)cap;   /* chunked: up to the route's maximum */
	if (cl && lc_parse_dec(cl, strlen(cl), 0, (int64_t)cap, &len)) {
		srv_resp_error(&rs, 413, "payload_too_large", "request body over %zu bytes", cap);
		return answer(h, c, cn, &rs);
	}
	lc_buf_init(&cn->body, (size_t)len);
	if (len == 0)
		return MHD_YES;
	if (!body_budget_take(h, (size_t)len)) {
		srv_resp_error(&rs, 503, "overloaded_error",
			       "request bodies in flight fill the server's memory budget (--max-body-memory): retry later");
		rs.retry_after_s = 1;
		return answer(h, c, cn, &rs);
	}
	cn->reserved = (size_t)len;
	if (lc_buf_reserve(&cn->body, (size_t)len)) {
		srv_resp_error(&rs, 503, "overloaded_error", "out of memory for the request body: retry later");
		rs.retry_after_s = 1;
		return answer(h, c, cn, &rs);
	}
	return MHD_YES;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url, const char *method,
				  const char *version, const char *upload, size_t *upload_size, void **con_cls)
{
	struct srv_http *h = cls;
	struct conn *cn = *con_cls;
	struct srv_resp rs = {0};
	(void)version;

	if (!cn)
		return on_head(h, c, url, method, con_cls);
	if (cn->answered) {   /* refused on the head: whatever body follows is not read */
		*upload_size = 0;
		return MHD_YES;
	}
	if (*upload_size) {
		if (lc_buf_add(&cn->body, upload, *upload_size) != 0) {
			*upload_size = 0;
			srv_resp_error(&rs, 413, "payload_too_large", "request body over %zu bytes", cn->m.route->body_max);
			return answer(h, c, cn, &rs);
		}
		*upload_size = 0;
		return MHD_YES;
	}
	cn->rq.body = cn->body.data;
	cn->rq.body_len = cn->body.len;
	/* the request is in: --request-timeout bounds its arrival, not the handler (a large usage report
	 * takes seconds to apply; cutting it then would lose an answer whose change is stored) */
	track_set(h, c, T_ANSWERING);
	pthread_mutex_lock(&h->s->pub_mu);
	cn->gen = h->s->pub_gen;   /* before the handler reads: a publish after this wakes the wait */
	pthread_mutex_unlock(&h->s->pub_mu);
	srv_route_run(h->s, &cn->m, &cn->rq, &rs);
	if (rs.status == 0 && rs.retry_at_ms) {
		srv_resp_free(&rs);
		cn->retry_at_ms = rs.retry_at_ms;
		track_set(h, c, T_WAITING);
		wait_for_publish(h, cn);
		return MHD_YES;
	}
	return answer(h, c, cn, &rs);
}

static void on_done(void *cls, struct MHD_Connection *c, void **con_cls, enum MHD_RequestTerminationCode toe)
{
	struct srv_http *h = cls;
	struct conn *cn = *con_cls;
	(void)toe;
	if (cn) {
		bool large = cn->reserved >= SRV_TRIM_AFTER;
		lc_buf_free(&cn->body);
		body_budget_give(h, cn->reserved);
		free(cn);
		/* a large body (a usage report of many counters) leaves its parse tree's memory free but
		 * kept by this thread's malloc arena; give it back, or every worker thread keeps its own
		 * high-water mark (about 6 x the largest body it handled) */
		if (large)
			malloc_trim(0);
	}
	*con_cls = NULL;
	track_set(h, c, T_REQUEST);   /* the next request on this connection: a new deadline */
}

/* MHD's unescape callback: decode, but never a control byte (a %00 stays "%00" and is refused) */
static size_t unescape(void *cls, struct MHD_Connection *c, char *uri)
{
	(void)cls;
	(void)c;
	return srv_unescape(uri);
}

static void mhd_log(void *cls, const char *fmt, va_list ap)
{
	char msg[512];
	(void)cls;
	vsnprintf(msg, sizeof msg, fmt, ap);
	msg[strcspn(msg, "\n")] = 0;
	lc_log(LC_LOG_INFO, "llmcap-server: http: %s", msg);
}

bool srv_http_tls_supported(void) { return MHD_is_feature_supported(MHD_FEATURE_TLS) == MHD_YES; }

struct srv_http *srv_http_start(struct srv *s, const struct srv_http_opts *o, char *err, size_t errlen)
{
	struct srv_http *h = calloc(1, sizeof *h);
	if (!h) {
		lc_errf(err, errlen, "out of memory");
		return NULL;
	}
	h->s = s;
	h->o = *o;
	if (!h->o.max_body_memory)
		h->o.max_body_memory = SRV_BODY_MEMORY_DEFAULT;
	pthread_mutex_init(&h->mu, NULL);
	unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG | MHD_ALLOW_SUSPEND_RESUME;
	if (o->ipv6)
		flags |= MHD_USE_IPv6;
#ifdef MHD_USE_EPOLL
	flags |= MHD_USE_EPOLL;
#endif
	bool tls = o->tls_cert_pem && o->tls_key_pem;
	if (tls)
		flags |= MHD_USE_TLS;
	h->d = MHD_start_daemon(
		flags, 0, NULL, NULL, on_request, h, MHD_OPTION_LISTEN_SOCKET, o->listen_fd,
		MHD_OPTION_THREAD_POOL_SIZE, o->threads, MHD_OPTION_NOTIFY_COMPLETED, on_done, h,
		MHD_OPTION_NOTIFY_CONNECTION, on_connection, h, MHD_OPTION_UNESCAPE_CALLBACK, unescape, NULL,
		MHD_OPTION_EXTERNAL_LOGGER, mhd_log, NULL, MHD_OPTION_CONNECTION_TIMEOUT, o->idle_timeout_s,
		MHD_OPTION_CONNECTION_LIMIT, o->max_connections, MHD_OPTION_PER_IP_CONNECTION_LIMIT,
		o->max_connections_per_ip, MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)(64 * 1024),
		/* the TLS options last: when not serving TLS, the list ends before them */
		tls ? MHD_OPTION_HTTPS_MEM_CERT : MHD_OPTION_END, o->tls_cert_pem, MHD_OPTION_HTTPS_MEM_KEY,
		o->tls_key_pem, MHD_OPTION_END);
	if (!h->d) {
		lc_errf(err, errlen, tls ? "cannot start the HTTPS server (is the --tls-key the key of the --tls-cert?)"
				: "cannot start the HTTP server");
		pthread_mutex_destroy(&h->mu);
		free(h);
		return NULL;
	}
	if (pthread_create(&h->th, NULL, waiter_thread, h) == 0)
		h->th_running = true;
	return h;
}

void srv_http_stop(struct srv_http *h)
{
	if (!h)
		return;
	pthread_mutex_lock(&h->s->pub_mu);
	h->stop = true;
	h->s->pub_stopping = true;
	pthread_cond_broadcast(&h->s->pub_cv);
	pthread_mutex_unlock(&h->s->pub_mu);
	if (h->th_running)
		pthread_join(h->th, NULL);
	MHD_stop_daemon(h->d);
	for (struct track *t = h->tracks, *n; t; t = n) {
		n = t->next;
		free(t);
	}
	pthread_mutex_destroy(&h->mu);
	free(h);
}
