/* hook_libc.c - libc sockets: plain-HTTP provider endpoints (a local Ollama/vLLM on
 * 127.0.0.1:PORT), the ClientHello client_random -> fd map the TLS layer uses, and fd
 * lifetime (close, close_range, dup2, dup3).
 *
 * Fast path: one relaxed atomic byte load (lc_fdst[fd]); untracked fds go straight to libc.
 * Only sockets this process connect()ed to an inet address are ever tracked.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <unistd.h>

#include "preload.h"

#define REAL(fn) LC_REAL(r_##fn, #fn, NULL, fn)

static int (*r_connect)(int, const struct sockaddr *, socklen_t);
static int (*r_close)(int);
static int (*r_close_range)(unsigned int, unsigned int, int);
static int (*r_dup2)(int, int);
static int (*r_dup3)(int, int, int);
static ssize_t (*r_send)(int, const void *, size_t, int);
static ssize_t (*r_sendto)(int, const void *, size_t, int, const struct sockaddr *, socklen_t);
static ssize_t (*r_sendmsg)(int, const struct msghdr *, int);
static ssize_t (*r_write)(int, const void *, size_t);
static ssize_t (*r_writev)(int, const struct iovec *, int);
static ssize_t (*r_recv)(int, void *, size_t, int);
static ssize_t (*r_recvfrom)(int, void *, size_t, int, struct sockaddr *, socklen_t *);
static ssize_t (*r_recvmsg)(int, struct msghdr *, int);
static ssize_t (*r_read)(int, void *, size_t);
static ssize_t (*r_readv)(int, const struct iovec *, int);
static ssize_t (*r_sendfile)(int, int, off_t *, size_t);
static ssize_t (*r_sendfile64)(int, int, off_t *, size_t);
static int (*r_sendmmsg)(int, struct mmsghdr *, unsigned int, int);
static int (*r_recvmmsg)(int, struct mmsghdr *, unsigned int, int, struct timespec *);
static ssize_t (*r_splice)(int, loff_t *, int, loff_t *, size_t, unsigned int);

/* ---- fd lifetime ---- */

static void fd_forget(int fd)
{
	struct lc_conn *c;
	int saved = errno;

	lc_fd_set_state(fd, LC_FD_NONE);
	c = lc_tab_take(LC_TAB_FD, (uintptr_t)fd);
	if (c) {
		lc_conn_finish(c);
		lc_conn_put(c);
	}
	errno = saved;
}

LC_EXPORT int close(int fd)
{
	if (lc_fd_state(fd) != LC_FD_NONE && !lc_pl_depth)
		fd_forget(fd);
	if (!REAL(close)) {
		errno = ENOSYS;
		return -1;
	}
	return r_close(fd);
}

LC_EXPORT int close_range(unsigned int first, unsigned int last, int flags)
{
	if (!lc_pl_depth && !(flags & 4 /* CLOSE_RANGE_CLOEXEC */)) {
		unsigned int fd;

		for (fd = first; fd <= last && fd < LC_FD_MAX; fd++)
			if (lc_fd_state((int)fd) != LC_FD_NONE)
				fd_forget((int)fd);
	}
	if (!REAL(close_range)) {
		errno = ENOSYS;
		return -1;
	}
	return r_close_range(first, last, flags);
}

LC_EXPORT int dup2(int oldfd, int newfd)
{
	if (oldfd != newfd && lc_fd_state(newfd) != LC_FD_NONE && !lc_pl_depth)
		fd_forget(newfd);
	if (!REAL(dup2)) {
		errno = ENOSYS;
		return -1;
	}
	return r_dup2(oldfd, newfd);
}

LC_EXPORT int dup3(int oldfd, int newfd, int flags)
{
	if (oldfd != newfd && lc_fd_state(newfd) != LC_FD_NONE && !lc_pl_depth)
		fd_forget(newfd);
	if (!REAL(dup3)) {
		errno = ENOSYS;
		return -1;
	}
	return r_dup3(oldfd, newfd, flags);
}

/* ---- connect: the only way an fd becomes tracked ---- */

/* an inet address as text (no brackets) and port */
static void addr_text(const struct sockaddr *addr, char *ip, size_t iplen, int *port)
{
	if (addr->sa_family == AF_INET) {
		const struct sockaddr_in *a = (const struct sockaddr_in *)addr;

		*port = ntohs(a->sin_port);
		inet_ntop(AF_INET, &a->sin_addr, ip, (socklen_t)iplen);
	} else {
		const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)addr;

		*port = ntohs(a->sin6_port);
		if (IN6_IS_ADDR_V4MAPPED(&a->sin6_addr))
			inet_ntop(AF_INET, &a->sin6_addr.s6_addr[12], ip, (socklen_t)iplen);
		else
			inet_ntop(AF_INET6, &a->sin6_addr, ip, (socklen_t)iplen);
	}
}

static void after_connect(int fd, const struct sockaddr *addr)
{
	struct lc_target t;
	struct lc_conn *c, *n;
	char ip[64];
	int port = 0, type = 0;
	socklen_t tl = sizeof(type);

	if (!addr || (addr->sa_family != AF_INET && addr->sa_family != AF_INET6) ||
	    (unsigned)fd >= LC_FD_MAX)
		return;
	if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &tl) != 0 || type != SOCK_STREAM)
		return;
	lc_pl_ensure();
	lc_pl_last_connect_fd = fd;
	if (lc_fd_state(fd) != LC_FD_NONE)
		fd_forget(fd);    /* stale state of a number closed behind our back */
	addr_text(addr, ip, sizeof(ip), &port);
	if (lc_cls_lookup(ip, port, &t) <= 0) {
		lc_fd_set_state(fd, LC_FD_CANDIDATE);
		return;
	}
	n = lc_conn_new_provider(fd, false, &t);
	if (!n)
		return;
	c = lc_tab_put(LC_TAB_FD, (uintptr_t)fd, n);
	lc_conn_put(n);
	if (c) {
		lc_fd_set_state(fd, LC_FD_PROVIDER);
		lc_conn_put(c);
	}
}

LC_EXPORT int connect(int fd, const struct sockaddr *addr, socklen_t len)
{
	int r, saved;

	if (!REAL(connect)) {
		errno = ENOSYS;
		return -1;
	}
	r = r_connect(fd, addr, len);
	if (lc_pl_depth || (r != 0 && errno != EINPROGRESS))
		return r;
	saved = errno;
	after_connect(fd, addr);
	errno = saved;
	return r;
}

/* ---- write family ---- */

/* A ClientHello to a provider that no hooked TLS library made (lc_pl_tls_in, lc_pl_tls_ours): TLS
 * of the program's own (Go, the nodesource Node build, Bun, rustls, mbed TLS, a statically linked
 * OpenSSL), whose requests no hook will ever see, whether or not libssl or GnuTLS is loaded too.
 * Decided per connection, at its first write. Fail closed: refuse the connection (the client sees
 * a connection error, not a 429). by_addr: the socket's peer is a provider's address (else the
 * SNI names the provider, or it is not one). */
static bool own_tls_to_provider(int fd, const void *buf, size_t n, const unsigned char cr[32], bool by_addr)
{
	struct lc_target t;
	char sni[256], ip[64];
	int port = 0;
	bool lib;

	if (lc_pl_tls_in > 0 || lc_pl_tls_ours(cr))
		return false;
	if (lc_cls_client_hello_sni(buf, n, sni, sizeof(sni)) != 0)
		sni[0] = 0;
	lc_cls_peer(fd, ip, sizeof(ip), &port);
	if (!by_addr && (!sni[0] || lc_cls_lookup(sni, port, &t) <= 0))
		return false;
	lib = lc_pl_have_held_tls();
	/* the remedy: without libssl/GnuTLS, `llmcap run` holds the whole process in its relay; with
	 * them the preload holds the process, and LLMCAP_RELAY_ALL=1 makes the relay take it instead */
	lc_log(LC_LOG_ERROR, "TLS to provider %s:%d from a TLS library llmcap cannot hold (%s): connection "
			     "refused; `%sllmcap run -- PROGRAM` holds it",
	       sni[0] ? sni : ip, port, lib ? "not this process's libssl or GnuTLS" : "no libssl or GnuTLS in this process",
	       lib ? "LLMCAP_RELAY_ALL=1 " : "");
	/* The refused write alone is not enough: an event loop may drop a write error and wait for
	 * the ServerHello (nodesource node: fetch until its connect timeout, `https` forever). Shut
	 * the read side too (nothing goes on the wire): every reader and poller of the socket sees
	 * the end of the stream at once, so the program fails its handshake now. */
	shutdown(fd, SHUT_RD);
	return true;
}

/* first write on a connected inet socket: TLS (remember its client_random), an HTTP request to a
 * provider named by its Host header, or anything else (untracked from now on). -1: refuse. */
static int first_write(int fd, const void *buf, size_t n)
{
	unsigned char cr[32];
	struct lc_target t;
	struct lc_conn *c, *nc;
	char hh[256], ip[64];
	int hp = 0, pp = 0, r = 0;

	if (lc_cls_client_hello(buf, n, cr)) {
		lc_cr_record(fd, cr);
		lc_fd_set_state(fd, LC_FD_NONE);
		return own_tls_to_provider(fd, buf, n, cr, false) ? -1 : 0;
	}
	if (n >= 8 && memcmp(buf, "CONNECT ", 8) == 0)
		return 0;    /* an HTTP proxy tunnel: the ClientHello comes next */
	if (!lc_cls_is_http_request(buf, n)) {
		lc_fd_set_state(fd, LC_FD_NONE);
		return 0;
	}
	memset(&t, 0, sizeof(t));
	if (lc_cls_host_header(buf, n, hh, sizeof(hh), &hp) == 0)
		r = lc_cls_lookup(hh, hp ? hp : 80, &t);
	if (r == 0 && lc_cls_peer(fd, ip, sizeof(ip), &pp) == 0)
		r = lc_cls_lookup(ip, pp, &t);
	if (r < 0)    /* store unusable, policy known: LLM API calls are held (503) */
		r = lc_cls_priced_request(buf, n);
	if (r <= 0) {
		lc_fd_set_state(fd, LC_FD_NONE);
		return 0;
	}
	nc = lc_conn_new_provider(fd, false, &t);
	if (!nc) {
		lc_fd_set_state(fd, LC_FD_NONE);
		return 0;
	}
	c = lc_tab_put(LC_TAB_FD, (uintptr_t)fd, nc);
	lc_conn_put(nc);
	lc_fd_set_state(fd, c ? LC_FD_PROVIDER : LC_FD_NONE);
	if (c)
		lc_conn_put(c);
	return 0;
}

/* the real send, for lc_conn_flush_all: -1 with errno on failure */
struct put_ctx {
	int fd, flags;
};
static ssize_t put_send(void *ctx, const void *p, size_t len, bool *retry)
{
	struct put_ctx *x = ctx;
	ssize_t k;

	if (!REAL(send)) {
		errno = EIO;
		return -1;
	}
	do
		k = r_send(x->fd, p, len, MSG_NOSIGNAL | (x->flags & MSG_DONTWAIT));
	while (k < 0 && errno == EINTR);
	if (k == 0)
		errno = EPIPE;
	/* EAGAIN: the app polls and retries the same write */
	*retry = k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
	return k > 0 ? k : -1;
}

/* A socket the supervisor's relay holds: untracked from now on. A ClientHello's client_random is
 * recorded, so that a TLS layer whose socket is known only by it (a custom BIO: curl) finds the
 * relay's socket and steps aside too (one decision per request, the relay's). */
static void relay_holds(int fd, const void *buf, size_t n)
{
	unsigned char cr[32];

	if (lc_cls_client_hello(buf, n, cr))
		lc_cr_record(fd, cr);
	fd_forget(fd);
}

/* 1 handled (*ret, errno set), 0 pass through */
static int write_slow(int fd, const void *buf, size_t n, int flags, ssize_t *ret)
{
	struct lc_conn_view v;
	struct lc_conn *c;
	int a, saved = errno;
	unsigned char cr[32];

	lc_pl_ensure();
	if (lc_fd_state(fd) == LC_FD_CANDIDATE) {
		if (n == 0)
			return 0;
		if (lc_pl_relayed(fd)) {    /* the supervisor's relay holds it */
			relay_holds(fd, buf, n);
			errno = saved;
			return 0;
		}
		if (first_write(fd, buf, n) < 0) {
			*ret = -1;
			errno = EACCES;
			return 1;
		}
		errno = saved;
		if (lc_fd_state(fd) != LC_FD_PROVIDER)
			return 0;
	}
	c = lc_tab_get(LC_TAB_FD, (uintptr_t)fd);
	if (!c) {
		lc_fd_set_state(fd, LC_FD_NONE);
		errno = saved;
		return 0;
	}
	lc_conn_view(c, &v);
	if (v.nreq == 0 && v.st == LC_ST_IDLE && n > 0 && lc_pl_relayed(fd)) {    /* the relay holds it */
		lc_conn_put(c);
		relay_holds(fd, buf, n);
		errno = saved;
		return 0;
	}
	if (v.nreq == 0 && v.st == LC_ST_IDLE && lc_cls_client_hello(buf, n, cr)) {
		/* TLS to a provider listed by address: the TLS layer holds it */
		lc_cr_record(fd, cr);
		lc_conn_put(c);
		fd_forget(fd);
		if (own_tls_to_provider(fd, buf, n, cr, true)) {
			*ret = -1;
			errno = EACCES;
			return 1;
		}
		errno = saved;
		return 0;
	}
	a = lc_conn_write(c, buf, n);
	switch (a) {
	case LC_W_CLAIM:
		*ret = (ssize_t)n;
		errno = saved;
		break;
	case LC_W_DENY:
		if (lc_conn_once(c, LC_ONCE_SHUT))
			shutdown(fd, SHUT_RD);
		*ret = (ssize_t)n;
		errno = saved;
		break;
	case LC_W_FAIL:
		*ret = -1;
		errno = EPIPE;
		break;
	case LC_W_FLUSH:
	default: {
		struct put_ctx x = {fd, flags};

		if (lc_conn_flush_all(c, put_send, &x, ret)) {
			*ret = (ssize_t)n;
			errno = saved;
		}
		break;
	}
	}
	lc_conn_put(c);
	return 1;
}

/* gather an iovec into one buffer (tracked fds only) */
static void *gather(const struct iovec *iov, int cnt, size_t *len)
{
	size_t n = 0, off = 0;
	char *b;
	int i;

	for (i = 0; i < cnt; i++)
		n += iov[i].iov_len;
	b = malloc(n ? n : 1);
	if (!b)
		return NULL;
	for (i = 0; i < cnt; i++) {
		if (iov[i].iov_len)
			memcpy(b + off, iov[i].iov_base, iov[i].iov_len);
		off += iov[i].iov_len;
	}
	*len = n;
	return b;
}

LC_EXPORT ssize_t write(int fd, const void *buf, size_t n)
{
	ssize_t r;

	if (lc_fd_state(fd) != LC_FD_NONE && !lc_pl_depth && write_slow(fd, buf, n, 0, &r))
		return r;
	if (!REAL(write)) {
		errno = ENOSYS;
		return -1;
	}
	return r_write(fd, buf, n);
}

LC_EXPORT ssize_t send(int fd, const void *buf, size_t n, int flags)
{
	ssize_t r;

	if (lc_fd_state(fd) != LC_FD_NONE && !lc_pl_depth && write_slow(fd, buf, n, flags, &r))
		return r;
	if (!REAL(send)) {
		errno = ENOSYS;
		return -1;
	}
	return r_send(fd, buf, n, flags);
}

/* sendto(MSG_FASTOPEN) connects and sends in one call, so connect() never sees it. When the
 * destination is a provider endpoint (the classification connect() uses), do what torsocks does:
 * connect() (which tracks the socket), then send() through the held path. A non-blocking socket
 * gets connect()'s EINPROGRESS with nothing sent, which is also what TCP Fast Open answers without
 * a cookie. Other destinations pass straight to libc. 1 handled (*ret, errno), 0 pass through. */
static int fastopen_slow(int fd, const void *buf, size_t n, int flags, const struct sockaddr *to,
			 socklen_t tolen, ssize_t *ret)
{
	struct lc_target t;
	char ip[64];
	int port = 0, type = 0, saved = errno;
	socklen_t tl = sizeof(type);

	if ((unsigned)fd >= LC_FD_MAX ||
	    !((to->sa_family == AF_INET && tolen >= sizeof(struct sockaddr_in)) ||
	      (to->sa_family == AF_INET6 && tolen >= sizeof(struct sockaddr_in6))))
		return 0;
	if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &tl) != 0 || type != SOCK_STREAM) {
		errno = saved;
		return 0;
	}
	lc_pl_ensure();
	addr_text(to, ip, sizeof(ip), &port);
	if (lc_cls_lookup(ip, port, &t) == 0) {
		errno = saved;
		return 0;
	}
	if (connect(fd, to, tolen) != 0) {
		*ret = -1;    /* connect's errno (EINPROGRESS, ECONNREFUSED, EISCONN, ...) */
		return 1;
	}
	*ret = send(fd, buf, n, flags & ~MSG_FASTOPEN);
	return 1;
}

LC_EXPORT ssize_t sendto(int fd, const void *buf, size_t n, int flags, const struct sockaddr *to,
			 socklen_t tolen)
{
	ssize_t r;

	/* a tracked fd is a connected stream socket: TCP ignores a destination address there, so
	 * sendto(fd, ..., addr) must not be a way around the hold */
	if (lc_fd_state(fd) != LC_FD_NONE && !lc_pl_depth && write_slow(fd, buf, n, flags & ~MSG_FASTOPEN, &r))
		return r;
	if (__builtin_expect((flags & MSG_FASTOPEN) != 0, 0) && to && !lc_pl_depth &&
	    fastopen_slow(fd, buf, n, flags, to, tolen, &r))
		return r;
	if (!REAL(sendto)) {
		errno = ENOSYS;
		return -1;
	}
	return r_sendto(fd, buf, n, flags, to, tolen);
}

LC_EXPORT ssize_t writev(int fd, const struct iovec *iov, int cnt)
{
	if (lc_fd_state(fd) != LC_FD_NONE && !lc_pl_depth && cnt > 0) {
		size_t len = 0;
		ssize_t r;
		void *b = gather(iov, cnt, &len);

		if (b) {
			int h = write_slow(fd, b, len, 0, &r), saved = errno;

			free(b);
			errno = saved;
			if (h)
				return r;
		}
	}
	if (!REAL(writev)) {
		errno = ENOSYS;
		return -1;
	}
	return r_writev(fd, iov, cnt);
}

LC_EXPORT ssize_t sendmsg(int fd, const struct msghdr *msg, int flags)
{
	if (lc_fd_state(fd) != LC_FD_NONE && !lc_pl_depth && msg && msg->msg_iovlen > 0) {  /* name ignored: as sendto */
		size_t len = 0;
		ssize_t r;
		void *b = gather(msg->msg_iov, (int)msg->msg_iovlen, &len);

		if (b) {
			int h = write_slow(fd, b, len, flags, &r), saved = errno;

			free(b);
			errno = saved;
			if (h)
				return r;
		}
	}
	if (!REAL(sendmsg)) {
		errno = ENOSYS;
		return -1;
	}
	return r_sendmsg(fd, msg, flags);
}

static size_t iov_total(const struct msghdr *m)
{
	size_t n = 0, i;

	for (i = 0; i < m->msg_iovlen; i++)
		n += m->msg_iov[i].iov_len;
	return n;
}

/* A tracked socket: message by message through the sendmsg path above; stop at the first one
 * that fails or is sent partly, and return the count done (as the kernel does: an error after
 * the first message is dropped, the next call sees it again). */
LC_EXPORT int sendmmsg(int fd, struct mmsghdr *vec, unsigned int vlen, int flags)
{
	if (lc_fd_state(fd) != LC_FD_NONE && !lc_pl_depth && vec) {
		unsigned int i;

		for (i = 0; i < vlen; i++) {
			ssize_t r = sendmsg(fd, &vec[i].msg_hdr, flags);

			if (r < 0)
				return i ? (int)i : -1;
			vec[i].msg_len = (unsigned int)r;
			if ((size_t)r < iov_total(&vec[i].msg_hdr))
				return (int)i + 1;
		}
		return (int)i;
	}
	if (!REAL(sendmmsg)) {
		errno = ENOSYS;
		return -1;
	}
	return r_sendmmsg(fd, vec, vlen, flags);
}

/* sendfile to a provider socket would put the body on the wire ahead of the held head: read the
 * file data into the request buffer instead (bounded like any request body) */
/* 1 handled (*ret), 0 pass through */
static int sendfile_slow(int out_fd, int in_fd, off_t *offset, size_t count, ssize_t *ret)
{
	size_t n = count < LC_WIRE_MAX_BODY ? count : LC_WIRE_MAX_BODY;
	char *b = malloc(n);
	ssize_t got, r = -1;
	int h, saved;

	if (!b) {
		errno = ENOMEM;
		*ret = -1;
		return 1;
	}
	got = offset ? pread(in_fd, b, n, *offset) : read(in_fd, b, n);
	if (got <= 0) {
		saved = errno;
		free(b);
		errno = saved;
		*ret = got;
		return 1;
	}
	h = write_slow(out_fd, b, (size_t)got, 0, &r);
	saved = errno;
	free(b);
	/* the file position moves by what was taken, as with the real sendfile */
	if (h && r > 0) {
		if (offset)
			*offset += r;
		else if (r < got)
			lseek(in_fd, (off_t)(r - got), SEEK_CUR);
	} else if (!offset) {
		lseek(in_fd, -(off_t)got, SEEK_CUR);
	}
	errno = saved;
	*ret = r;
	return h;
}

LC_EXPORT ssize_t sendfile(int out_fd, int in_fd, off_t *offset, size_t count)
{
	ssize_t r;

	if (lc_fd_state(out_fd) == LC_FD_PROVIDER && !lc_pl_depth && count > 0 &&
	    sendfile_slow(out_fd, in_fd, offset, count, &r))
		return r;
	if (!REAL(sendfile)) {
		errno = ENOSYS;
		return -1;
	}
	return r_sendfile(out_fd, in_fd, offset, count);
}

/* the same function under its large-file name (what programs built with
 * _FILE_OFFSET_BITS=64, Python among them, call) */
LC_EXPORT ssize_t sendfile64(int out_fd, int in_fd, off_t *offset, size_t count)
{
	ssize_t r;

	if (lc_fd_state(out_fd) == LC_FD_PROVIDER && !lc_pl_depth && count > 0 &&
	    sendfile_slow(out_fd, in_fd, offset, count, &r))
		return r;
	if (!REAL(sendfile64)) {
		errno = ENOSYS;
		return -1;
	}
	return r_sendfile64(out_fd, in_fd, offset, count);
}

/* splice from a pipe into a provider socket would put the bytes on the wire ahead of the held
 * request, like sendfile. The pipe's data is copied without consuming it (tee into a private
 * pipe), handed to the write path, and only what that path took is then consumed from the pipe,
 * so a retried splice (EAGAIN while flushing) finds its data still there. At most one pipe's
 * worth per call, as with the real splice. 1 handled (*ret, errno), 0 pass through. */
static int splice_slow(int in_fd, int out_fd, size_t len, unsigned int flags, ssize_t *ret)
{
	int pp[2], saved = errno, h;
	ssize_t got, k, r = -1;
	size_t off = 0;
	char *b;

	if (pipe2(pp, O_CLOEXEC) != 0)
		return 0;
	got = tee(in_fd, pp[1], len, flags & SPLICE_F_NONBLOCK);
	if (got <= 0) {
		saved = errno;
		close(pp[0]);
		close(pp[1]);
		errno = saved;
		if (got < 0 && errno == EINVAL)
			return 0;    /* not a pipe: the real splice answers */
		*ret = got;      /* 0: the writers are gone (EOF); -1: EAGAIN, EINTR, ... */
		return 1;
	}
	close(pp[1]);
	b = malloc((size_t)got);
	if (!b) {
		close(pp[0]);
		*ret = -1;
		errno = ENOMEM;
		return 1;
	}
	while (off < (size_t)got) {
		k = read(pp[0], b + off, (size_t)got - off);
		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0)
			break;
		off += (size_t)k;
	}
	close(pp[0]);
	errno = saved;
	h = write_slow(out_fd, b, off, (int)((flags & SPLICE_F_NONBLOCK) ? MSG_DONTWAIT : 0), &r);
	saved = errno;
	if (h && r > 0) {
		/* consume what was taken (the data is there: we saw it) */
		size_t left = (size_t)r;

		while (left) {
			k = read(in_fd, b, left);
			if (k < 0 && errno == EINTR)
				continue;
			if (k <= 0)
				break;
			left -= (size_t)k;
		}
	}
	free(b);
	errno = saved;
	*ret = r;
	return h;
}

LC_EXPORT ssize_t splice(int fd_in, loff_t *off_in, int fd_out, loff_t *off_out, size_t len,
			 unsigned int flags)
{
	ssize_t r;

	if (lc_fd_state(fd_out) != LC_FD_NONE && !lc_pl_depth && len > 0 && !off_in && !off_out &&
	    splice_slow(fd_in, fd_out, len, flags, &r))
		return r;
	if (!REAL(splice)) {
		errno = ENOSYS;
		return -1;
	}
	return r_splice(fd_in, off_in, fd_out, off_out, len, flags);
}

/* ---- read family ---- */

enum { K_READ, K_RECV, K_RECVFROM, K_READV, K_RECVMSG };

struct rd {
	int kind;
	int fd;
	void *buf;
	size_t n;
	int flags;
	const struct iovec *iov;
	int iovcnt;
	struct msghdr *msg;
	struct sockaddr *from;
	socklen_t *fromlen;
};

static ssize_t rd_real(struct rd *r)
{
	switch (r->kind) {
	case K_READ:
		return REAL(read) ? r_read(r->fd, r->buf, r->n) : -1;
	case K_RECV:
		return REAL(recv) ? r_recv(r->fd, r->buf, r->n, r->flags) : -1;
	case K_RECVFROM:
		return REAL(recvfrom) ? r_recvfrom(r->fd, r->buf, r->n, r->flags, r->from, r->fromlen) : -1;
	case K_READV:
		return REAL(readv) ? r_readv(r->fd, r->iov, r->iovcnt) : -1;
	default:
		return REAL(recvmsg) ? r_recvmsg(r->fd, r->msg, r->flags) : -1;
	}
}

static ssize_t rd_slow(struct rd *r)
{
	struct lc_conn *c = lc_tab_get(LC_TAB_FD, (uintptr_t)r->fd);
	bool peek = (r->flags & MSG_PEEK) != 0;
	int mode, saved = errno;
	ssize_t k;

	if (!c)
		return rd_real(r);
	mode = lc_conn_read_mode(c);
	if (mode == LC_R_SYNTH) {
		size_t got = 0;

		if (r->kind == K_READV || r->kind == K_RECVMSG) {
			const struct iovec *iov = r->kind == K_READV ? r->iov : r->msg->msg_iov;
			int cnt = r->kind == K_READV ? r->iovcnt : (int)r->msg->msg_iovlen, i;

			/* peeking into several buffers: copy the same prefix (rare, correct enough) */
			for (i = 0; i < cnt; i++) {
				size_t g = lc_conn_synth_read(c, iov[i].iov_base, iov[i].iov_len, peek);

				got += g;
				if (g < iov[i].iov_len || peek)
					break;
			}
			if (r->kind == K_RECVMSG) {
				r->msg->msg_controllen = 0;
				r->msg->msg_flags = 0;
				r->msg->msg_namelen = 0;
			}
		} else {
			got = lc_conn_synth_read(c, r->buf, r->n, peek);
			if (r->kind == K_RECVFROM && r->fromlen)
				*r->fromlen = 0;
		}
		lc_conn_put(c);
		errno = saved;
		return (ssize_t)got;
	}
	k = rd_real(r);
	if (mode == LC_R_FEED && !peek) {
		saved = errno;
		if (k > 0) {
			if (r->kind == K_READV || r->kind == K_RECVMSG) {
				const struct iovec *iov = r->kind == K_READV ? r->iov : r->msg->msg_iov;
				int cnt = r->kind == K_READV ? r->iovcnt : (int)r->msg->msg_iovlen, i;
				size_t left = (size_t)k;

				for (i = 0; i < cnt && left; i++) {
					size_t g = iov[i].iov_len < left ? iov[i].iov_len : left;

					lc_conn_feed(c, iov[i].iov_base, g);
					left -= g;
				}
			} else {
				lc_conn_feed(c, r->buf, (size_t)k);
			}
		} else if (k == 0 && (r->n > 0 || r->iovcnt > 0)) {
			lc_conn_eof(c);
		}
		errno = saved;
	}
	lc_conn_put(c);
	return k;
}

#define TRACKED(fd) (lc_fd_state(fd) == LC_FD_PROVIDER && !lc_pl_depth)

LC_EXPORT ssize_t read(int fd, void *buf, size_t n)
{
	if (TRACKED(fd)) {
		struct rd r = { .kind = K_READ, .fd = fd, .buf = buf, .n = n };

		return rd_slow(&r);
	}
	if (!REAL(read)) {
		errno = ENOSYS;
		return -1;
	}
	return r_read(fd, buf, n);
}

LC_EXPORT ssize_t recv(int fd, void *buf, size_t n, int flags)
{
	if (TRACKED(fd)) {
		struct rd r = { .kind = K_RECV, .fd = fd, .buf = buf, .n = n, .flags = flags };

		return rd_slow(&r);
	}
	if (!REAL(recv)) {
		errno = ENOSYS;
		return -1;
	}
	return r_recv(fd, buf, n, flags);
}

LC_EXPORT ssize_t recvfrom(int fd, void *buf, size_t n, int flags, struct sockaddr *from,
			   socklen_t *fromlen)
{
	if (TRACKED(fd)) {
		struct rd r = { .kind = K_RECVFROM, .fd = fd, .buf = buf, .n = n, .flags = flags,
				.from = from, .fromlen = fromlen };

		return rd_slow(&r);
	}
	if (!REAL(recvfrom)) {
		errno = ENOSYS;
		return -1;
	}
	return r_recvfrom(fd, buf, n, flags, from, fromlen);
}

LC_EXPORT ssize_t readv(int fd, const struct iovec *iov, int cnt)
{
	if (TRACKED(fd)) {
		struct rd r = { .kind = K_READV, .fd = fd, .iov = iov, .iovcnt = cnt };

		return rd_slow(&r);
	}
	if (!REAL(readv)) {
		errno = ENOSYS;
		return -1;
	}
	return r_readv(fd, iov, cnt);
}

LC_EXPORT ssize_t recvmsg(int fd, struct msghdr *msg, int flags)
{
	if (TRACKED(fd) && msg) {
		struct rd r = { .kind = K_RECVMSG, .fd = fd, .msg = msg, .flags = flags,
				.iovcnt = (int)msg->msg_iovlen };

		return rd_slow(&r);
	}
	if (!REAL(recvmsg)) {
		errno = ENOSYS;
		return -1;
	}
	return r_recvmsg(fd, msg, flags);
}

/* A tracked socket: message by message through the recvmsg path above. The first may block
 * (unless the caller asked otherwise); the rest are taken only when ready (MSG_DONTWAIT), and
 * the call stops at the first that would block, ends the stream or fills its buffers partly:
 * an HTTP response never waits for vlen reads. The timeout is not applied (the kernel checks it
 * only between messages). */
LC_EXPORT int recvmmsg(int fd, struct mmsghdr *vec, unsigned int vlen, int flags,
		       struct timespec *timeout)
{
	if (TRACKED(fd) && vec) {
		unsigned int i;
		int f = flags & ~MSG_WAITFORONE;

		for (i = 0; i < vlen; i++) {
			ssize_t r = recvmsg(fd, &vec[i].msg_hdr, i ? (f | MSG_DONTWAIT) : f);

			if (r < 0)
				return i ? (int)i : -1;
			vec[i].msg_len = (unsigned int)r;
			if (r == 0 || (size_t)r < iov_total(&vec[i].msg_hdr))
				return (int)i + 1;
		}
		return (int)i;
	}
	if (!REAL(recvmmsg)) {
		errno = ENOSYS;
		return -1;
	}
	return r_recvmmsg(fd, vec, vlen, flags, timeout);
}

/* _FORTIFY_SOURCE variants: the size check first (glibc aborts the same way), then our path */
static void (*r___chk_fail)(void);
__attribute__((noreturn)) static void chk_fail(void)
{
	if (LC_REAL(r___chk_fail, "__chk_fail", NULL, NULL))
		r___chk_fail();
	abort();
}

LC_EXPORT ssize_t __read_chk(int fd, void *buf, size_t n, size_t buflen)
{
	if (n > buflen)
		chk_fail();
	return read(fd, buf, n);
}

LC_EXPORT ssize_t __recv_chk(int fd, void *buf, size_t n, size_t buflen, int flags)
{
	if (n > buflen)
		chk_fail();
	return recv(fd, buf, n, flags);
}

LC_EXPORT ssize_t __recvfrom_chk(int fd, void *buf, size_t n, size_t buflen, int flags,
				 struct sockaddr *from, socklen_t *fromlen)
{
	if (n > buflen)
		chk_fail();
	return recvfrom(fd, buf, n, flags, from, fromlen);
}
