/* supervise.c - `llmcap run` for programs the preload cannot hold.
 *
 * Which programs: an ELF executable without PT_INTERP (static, static-pie: the dynamic loader
 * never runs, so LD_PRELOAD is never read) and Go programs (a .go.buildinfo or .note.go.buildid
 * section: Go's net package makes raw system calls even when the binary is dynamically linked
 * with cgo, so no libc hook sees its sockets). lc_exec_kind() reads the file's headers.
 *
 * How: the program runs under a seccomp filter that turns every connect() into a user
 * notification (SECCOMP_RET_USER_NOTIF, SECCOMP_FILTER_FLAG_NEW_LISTENER); the filter is
 * inherited by every child and survives execve. `llmcap run` stays as the supervisor: it reads
 * the address the program passes (/proc/PID/mem, checked with SECCOMP_IOCTL_NOTIF_ID_VALID) and
 *   - lets the kernel carry out a connect to anything that is not a provider
 *     (SECCOMP_USER_NOTIF_FLAG_CONTINUE: untouched, no relay);
 *   - lets a provider connect through when the calling process is a dynamically linked program
 *     (not Go) with the preload library and libssl or GnuTLS mapped (a child such as curl: the
 *     preload holds it), unless LLMCAP_RELAY_ALL=1;
 *   - holds any other provider connect: the supervisor connects the program's own socket
 *     (pidfd_getfd) to the loopback relay of relay.c, which decides each request in the store;
 *   - hands the relay, to peek at, a connect of such a process to a port the policy's provider
 *     entries use (at an address not known as a provider's) or to an HTTP proxy of the
 *     environment: held when its first bytes name a provider, spliced untouched otherwise;
 *   - refuses it at once with ECONNREFUSED and one stderr line when it cannot be held.
 * Provider addresses: the installed policy's provider hosts, resolved when the supervisor starts
 * and every LLMCAP_RESOLVE_INTERVAL seconds after (a host entry without a port matches every port
 * of its addresses). io_uring_setup fails with
 * ENOSYS under the filter (programs fall back to plain system calls, which the filter sees).
 */
#include <arpa/inet.h>
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "engine.h"
#include "relay.h"
#include "sniff.h"
#include "store.h"
#include "supervise.h"

/* ---- which programs ---- */

int lc_exec_kind(const char *path, char *why, size_t whylen)
{
	Elf64_Ehdr eh;
	Elf64_Phdr ph;
	Elf64_Shdr sh, strsh;
	int fd = open(path, O_RDONLY | O_CLOEXEC), kind = LC_EXEC_DYNAMIC;
	bool interp = false, go = false;
	char *names = NULL;
	unsigned i;

	snprintf(why, whylen, "dynamically linked");
	if (fd < 0)
		return LC_EXEC_DYNAMIC;
	if (pread(fd, &eh, sizeof(eh), 0) != (ssize_t)sizeof(eh) || memcmp(eh.e_ident, ELFMAG, SELFMAG) != 0 ||
	    eh.e_ident[EI_CLASS] != ELFCLASS64 || eh.e_phentsize != sizeof(ph) || eh.e_phnum > 4096)
		goto out;    /* a script or something else: its interpreter is what runs */
	for (i = 0; i < eh.e_phnum; i++)
		if (pread(fd, &ph, sizeof(ph), (off_t)(eh.e_phoff + (uint64_t)i * sizeof(ph))) == (ssize_t)sizeof(ph) &&
		    ph.p_type == PT_INTERP)
			interp = true;
	if (eh.e_shentsize == sizeof(sh) && eh.e_shnum > 0 && eh.e_shstrndx < eh.e_shnum &&
	    pread(fd, &strsh, sizeof(strsh), (off_t)(eh.e_shoff + (uint64_t)eh.e_shstrndx * sizeof(sh))) ==
		    (ssize_t)sizeof(strsh) &&
	    strsh.sh_size > 0 && strsh.sh_size < (1u << 20) && (names = calloc(1, strsh.sh_size + 1)) &&
	    pread(fd, names, strsh.sh_size, (off_t)strsh.sh_offset) == (ssize_t)strsh.sh_size) {
		for (i = 0; i < eh.e_shnum && !go; i++)
			if (pread(fd, &sh, sizeof(sh), (off_t)(eh.e_shoff + (uint64_t)i * sizeof(sh))) == (ssize_t)sizeof(sh) &&
			    sh.sh_name < strsh.sh_size &&
			    (!strcmp(names + sh.sh_name, ".go.buildinfo") || !strcmp(names + sh.sh_name, ".note.go.buildid")))
				go = true;
	}
	if (go) {
		kind = LC_EXEC_GO;
		snprintf(why, whylen, "a Go program (its network calls bypass libc)");
	} else if (!interp) {
		kind = LC_EXEC_STATIC;
		snprintf(why, whylen, "statically linked (no dynamic loader, so no preload)");
	}
out:
	free(names);
	close(fd);
	return kind;
}

/* ---- provider addresses ---- */

/* The policy's provider hosts, resolved when the supervisor starts and again every
 * LLMCAP_RESOLVE_INTERVAL seconds (default 60) by a thread of the supervisor (the policy re-read
 * too): a provider whose DNS answer changes (CDN rotation) is recognised at its new addresses
 * within that interval. An address a later answer no longer gives is kept for KEEP_S more seconds
 * (programs keep connecting to what they resolved earlier). */
struct paddr {
	int family;
	unsigned char a[16];
	int port;              /* 0: every port */
	char host[128];
	int64_t seen;          /* when a resolution last gave it */
	uint8_t proxy;         /* a proxy of the program's environment (PROXY_*), not a provider: 0 */
};
enum { PROXY_HTTP = 1, PROXY_OPAQUE = 2 };    /* read by the relay; SOCKS or https://: cannot be read */
#define PEEK_REFUSE (-1)    /* provider_of: a proxy llmcap cannot read (refused for unheld programs) */
static struct paddr *paddrs;
static size_t npaddrs;
/* The ports the policy's provider entries use (an entry's own port, else 443 and 80): a
 * connection to one of them at an address that is not (yet) a provider's is peeked by the relay
 * (its SNI or Host named a provider: held), so a provider reached at an address the last
 * resolution did not give is held too. */
#define MAX_PPORTS 64
static int pports[MAX_PPORTS];
static size_t npports;
/* The HTTP proxies named by HTTPS_PROXY, HTTP_PROXY, ALL_PROXY (and lower case) when `llmcap run`
 * started, "host:port" or "host" (every port): resolved with the provider hosts, peeked by the
 * relay (a CONNECT to a provider or an absolute-form request to one is held). A SOCKS or https://
 * proxy cannot be read: connections to it from programs the preload does not hold are refused. */
#define MAX_PROXIES 6
static char proxies[MAX_PROXIES][300];
static uint8_t proxy_kind[MAX_PROXIES];
static size_t nproxies;
static pthread_mutex_t paddr_mu = PTHREAD_MUTEX_INITIALIZER;
static int resolve_s = 60;
#define KEEP_S 900

static void add_host(const char *entry, uint8_t proxy, struct paddr **arr, size_t *n, int64_t now)
{
	char host[256], *colon;
	int port = 0;
	struct addrinfo hints, *res = NULL, *ai;

	snprintf(host, sizeof(host), "%s", entry);
	colon = strrchr(host, ':');
	if (colon && !strchr(colon + 1, ']') && strchr(host, ':') == colon) {    /* host:port */
		if (lc_parse_port(colon + 1, strlen(colon + 1), &port))
			return;  /* the policy check refuses such an entry; never a wrapped port */
		*colon = 0;
	}
	if (host[0] == '[') {
		memmove(host, host + 1, strlen(host));
		host[strcspn(host, "]")] = 0;
	}
	memset(&hints, 0, sizeof(hints));
	hints.ai_socktype = SOCK_STREAM;
	if (getaddrinfo(host, NULL, &hints, &res) != 0)
		return;
	for (ai = res; ai; ai = ai->ai_next) {
		struct paddr *nw = realloc(*arr, (*n + 1) * sizeof(*nw)), *p;

		if (!nw)
			break;
		*arr = nw;
		p = &nw[(*n)++];
		memset(p, 0, sizeof(*p));
		p->family = ai->ai_family;
		p->port = port;
		p->seen = now;
		p->proxy = proxy;
		snprintf(p->host, sizeof(p->host), "%s", entry);
		if (ai->ai_family == AF_INET)
			memcpy(p->a, &((struct sockaddr_in *)ai->ai_addr)->sin_addr, 4);
		else if (ai->ai_family == AF_INET6)
			memcpy(p->a, &((struct sockaddr_in6 *)ai->ai_addr)->sin6_addr, 16);
		else
			(*n)--;
	}
	freeaddrinfo(res);
}

static bool same_paddr(const struct paddr *a, const struct paddr *b)
{
	return a->family == b->family && a->port == b->port && !memcmp(a->a, b->a, 16) && !strcmp(a->host, b->host) &&
	       a->proxy == b->proxy;
}

/* (Re)load the policy's provider hosts, resolved; 1 a policy is installed, 0 none, -1 store
 * unusable (the table is then left as it was) */
static int load_providers(void)
{
	struct lc_store *s;
	MDB_txn *txn;
	MDB_cursor *cur;
	MDB_val k, v;
	struct paddr *arr = NULL, *old;
	size_t n = 0, i, j;
	int rc = lc_store_open(false, &s), op = MDB_FIRST;
	int64_t now = lc_now();
	char (*entries)[256] = NULL;
	size_t ne = 0;

	if (rc == LC_E_NOSTATE)
		return 0;
	if (rc || lc_store_begin(s, false, &txn))
		return -1;
	if (mdb_cursor_open(txn, s->dbi[LC_DB_PROVIDERS], &cur) == 0) {
		while (mdb_cursor_get(cur, &k, &v, op) == 0) {
			void *ne2;

			op = MDB_NEXT;
			if (k.mv_size == 0 || k.mv_size >= 256 || !(ne2 = realloc(entries, (ne + 1) * 256)))
				continue;
			entries = ne2;
			memcpy(entries[ne], k.mv_data, k.mv_size);
			entries[ne++][k.mv_size] = 0;
		}
		mdb_cursor_close(cur);
	}
	lc_store_end(s, txn, false);
	for (i = 0; i < ne; i++)    /* DNS outside the store's transaction */
		add_host(entries[i], false, &arr, &n, now);
	for (i = 0; i < nproxies; i++)
		add_host(proxies[i], proxy_kind[i], &arr, &n, now);
	pthread_mutex_lock(&paddr_mu);
	npports = 0;
	for (i = 0; i < ne; i++) {
		const char *colon = strrchr(entries[i], ':'), *rb = strrchr(entries[i], ']');
		int ps[2] = { 443, 80 }, np = 2, q;

		if (colon && (rb ? colon > rb : strchr(entries[i], ':') == colon) &&
		    lc_parse_port(colon + 1, strlen(colon + 1), &ps[0]) == 0)
			np = 1;
		for (q = 0; q < np; q++) {
			for (j = 0; j < npports && pports[j] != ps[q]; j++)
				;
			if (j == npports && npports < MAX_PPORTS)
				pports[npports++] = ps[q];
		}
	}
	free(entries);
	for (i = 0; i < npaddrs; i++) {    /* keep what an earlier answer gave, for a while */
		bool again = false;

		for (j = 0; j < n && !again; j++)
			again = same_paddr(&paddrs[i], &arr[j]);
		if (!again && now - paddrs[i].seen < KEEP_S) {
			struct paddr *nw = realloc(arr, (n + 1) * sizeof(*nw));

			if (nw) {
				arr = nw;
				arr[n++] = paddrs[i];
			}
		} else if (!again) {
			lc_log(LC_LOG_INFO, "supervisor: provider %s no longer at one of its earlier addresses", paddrs[i].host);
		}
	}
	old = paddrs;
	paddrs = arr;
	npaddrs = n;
	pthread_mutex_unlock(&paddr_mu);
	free(old);
	return 1;
}

static void *resolve_thread(void *arg)
{
	(void)arg;
	for (;;) {
		sleep((unsigned)resolve_s);
		load_providers();
	}
	return NULL;
}

/* the provider entry an address belongs to (copied to host), false when none; then *peek (when
 * not NULL) says whether the relay peeks at it (enum lc_relay_mode: a proxy of the environment, a
 * port of the policy's provider entries) or not (0) */
static bool provider_of(const struct sockaddr_storage *ss, socklen_t len, int *port, char *host, size_t hl,
			int *peek)
{
	const unsigned char *a;
	int fam = ss->ss_family;
	size_t i, al;
	bool found = false;

	if (fam == AF_INET && len >= sizeof(struct sockaddr_in)) {
		const struct sockaddr_in *in = (const struct sockaddr_in *)ss;

		a = (const unsigned char *)&in->sin_addr;
		al = 4;
		*port = ntohs(in->sin_port);
	} else if (fam == AF_INET6 && len >= sizeof(struct sockaddr_in6)) {
		const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)ss;

		*port = ntohs(in6->sin6_port);
		if (IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr)) {
			a = in6->sin6_addr.s6_addr + 12;
			al = 4;
			fam = AF_INET;
		} else {
			a = in6->sin6_addr.s6_addr;
			al = 16;
		}
	} else {
		return false;
	}
	pthread_mutex_lock(&paddr_mu);
	for (i = 0; i < npaddrs && !found; i++)
		if (!paddrs[i].proxy && paddrs[i].family == fam && memcmp(paddrs[i].a, a, al) == 0 &&
		    (paddrs[i].port == 0 || paddrs[i].port == *port)) {
			snprintf(host, hl, "%s", paddrs[i].host);
			found = true;
		}
	if (!found && peek) {
		for (i = 0; i < npaddrs && !*peek; i++)
			if (paddrs[i].proxy && paddrs[i].family == fam && memcmp(paddrs[i].a, a, al) == 0 &&
			    (paddrs[i].port == 0 || paddrs[i].port == *port))
				*peek = paddrs[i].proxy == PROXY_OPAQUE ? PEEK_REFUSE : LC_RELAY_PEEK_PROXY;
		for (i = 0; i < npports && !*peek; i++)
			if (pports[i] == *port)
				*peek = LC_RELAY_PEEK;
	}
	pthread_mutex_unlock(&paddr_mu);
	return found;
}

/* the proxies of the environment (see proxies[]): http:// or no scheme, read by the relay; an
 * https:// proxy (TLS to the proxy itself) or a SOCKS one cannot be read: named on stderr, and
 * refused to the programs the preload does not hold (their calls could leave through it unheld) */
static void read_proxies(void)
{
	static const char *const vars[] = { "HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY",
					    "all_proxy" };
	size_t i, j;

	for (i = 0; i < sizeof(vars) / sizeof(vars[0]) && nproxies < MAX_PROXIES; i++) {
		const char *v = getenv(vars[i]), *a, *at;
		char url[300], host[256], e[300];
		size_t al;
		int port = 0;
		uint8_t kind;

		if (!v || !*v)
			continue;
		snprintf(url, sizeof(url), "%s%s", strstr(v, "://") ? "" : "http://", v);
		a = strstr(url, "://") + 3;
		al = strcspn(a, "/?#");
		if ((at = memchr(a, '@', al))) {    /* user:password@ */
			al -= (size_t)(at + 1 - a);
			a = at + 1;
		}
		if (lc_cls_hostport(a, al, host, sizeof(host), &port) != 0) {
			fprintf(stderr, "llmcap run: %s=%s: no proxy host in it; ignored\n", vars[i], v);
			continue;
		}
		kind = strncasecmp(url, "http://", 7) == 0 ? PROXY_HTTP : PROXY_OPAQUE;
		if (kind == PROXY_OPAQUE)
			fprintf(stderr, "llmcap run: %s=%s is not an http:// proxy: llmcap cannot see which host a "
					"connection through it reaches, so programs the preload does not hold (static, Go, "
					"own TLS) are refused there (docs/preload.md)\n", vars[i], v);
		/* no port in the variable: clients disagree on the default (80, 1080): every port */
		snprintf(e, sizeof(e), strchr(host, ':') ? "[%s]" : "%s", host);
		if (port)
			snprintf(e + strlen(e), sizeof(e) - strlen(e), ":%d", port);
		for (j = 0; j < nproxies && strcmp(proxies[j], e); j++)
			;
		if (j == nproxies) {
			proxy_kind[nproxies] = kind;
			snprintf(proxies[nproxies++], sizeof(proxies[0]), "%s", e);
		} else if (kind == PROXY_OPAQUE) {
			proxy_kind[j] = kind;    /* the same address named twice: the stricter reading */
		}
	}
}

/* Which TLS and preload libraries process pid has mapped (/proc/PID/maps) */
static void mapped_libs(pid_t pid, bool *preload, bool *tls)
{
	char path[64], line[1024];
	FILE *f;

	*preload = *tls = false;
	snprintf(path, sizeof(path), "/proc/%d/maps", (int)pid);
	f = fopen(path, "re");
	if (!f)
		return;
	while (!(*preload && *tls) && fgets(line, sizeof(line), f)) {
		if (strstr(line, "/libllmcap_preload.so"))
			*preload = true;
		if (strstr(line, "/libssl.so") || strstr(line, "/libgnutls.so"))
			*tls = true;
	}
	fclose(f);
}

/* Is process pid held by the preload: a dynamically linked program (not Go) with the library
 * mapped, and a TLS library its hooks hold (libssl, GnuTLS) mapped too? A program with its TLS
 * linked in (the nodesource node, uv's Python, Bun) maps neither, whatever it speaks: the relay
 * holds all its provider connections (plain HTTP too: one rule per process, one decision per
 * request, the preload stepping aside on relay connections). A Go program built with cgo maps the
 * preload, but its network calls bypass it. Under LLMCAP_RELAY_ALL=1 no process is: the relay holds
 * them all (for a program that speaks a TLS of its own beside libssl, which the preload refuses).
 * why: what the process is, for a refusal. */
static bool relay_all;    /* LLMCAP_RELAY_ALL=1: the relay holds every process's provider connections */

static bool preload_holds(pid_t pid, char *why, size_t wl)
{
	char path[64];
	bool pre, tls;

	if (relay_all) {
		snprintf(why, wl, "run with LLMCAP_RELAY_ALL=1 (the relay holds every provider connection)");
		return false;
	}
	snprintf(path, sizeof(path), "/proc/%d/exe", (int)pid);
	if (lc_exec_kind(path, why, wl) != LC_EXEC_DYNAMIC)
		return false;
	mapped_libs(pid, &pre, &tls);
	if (!pre)
		snprintf(why, wl, "a process without the llmcap preload (LD_PRELOAD cleared)");
	else if (!tls)
		snprintf(why, wl, "a program with its TLS linked in or without TLS (no libssl or GnuTLS loaded)");
	return pre && tls;
}

/* ---- the filter and the supervisor loop ---- */

static int install_filter(void)
{
	struct sock_filter f[] = {
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 4, 0),
		/* 32-bit calls (int 0x80): socketcall and connect are refused, the rest allowed */
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, 102 /* i386 socketcall */, 1, 0),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, 362 /* i386 connect */, 0, 8),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EACCES),
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_connect, 2, 0),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_connect | 0x40000000 /* x32 */, 1, 0),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_io_uring_setup, 2, 1),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_USER_NOTIF),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | ENOSYS),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
	};
	struct sock_fprog prog = { .len = sizeof(f) / sizeof(f[0]), .filter = f };

	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0)
		return -1;
	return (int)syscall(__NR_seccomp, SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_NEW_LISTENER, &prog);
}

static int send_fd(int sock, int fd)
{
	char dummy = 'x', cbuf[CMSG_SPACE(sizeof(int))];
	struct iovec iov = { &dummy, 1 };
	struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf, .msg_controllen = sizeof(cbuf) };
	struct cmsghdr *c = CMSG_FIRSTHDR(&m);

	c->cmsg_level = SOL_SOCKET;
	c->cmsg_type = SCM_RIGHTS;
	c->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(c), &fd, sizeof(int));
	return sendmsg(sock, &m, 0) == 1 ? 0 : -1;
}

static int recv_fd(int sock)
{
	char dummy, cbuf[CMSG_SPACE(sizeof(int))];
	struct iovec iov = { &dummy, 1 };
	struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf, .msg_controllen = sizeof(cbuf) };
	struct cmsghdr *c;
	int fd = -1;

	if (recvmsg(sock, &m, 0) != 1)
		return -1;
	c = CMSG_FIRSTHDR(&m);
	if (c && c->cmsg_type == SCM_RIGHTS)
		memcpy(&fd, CMSG_DATA(c), sizeof(int));
	return fd;
}

static char relay_off[256];    /* why the relay is not there ("": it is) */

/* the thread-group id of thread tid, -1 unknown */
static pid_t tgid_of(pid_t tid)
{
	char path[64], line[256];
	FILE *f;
	pid_t t = -1;

	snprintf(path, sizeof(path), "/proc/%d/status", (int)tid);
	f = fopen(path, "re");
	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "Tgid: %d", &t) == 1)
			break;
	fclose(f);
	return t;
}

/* Hold a provider connect through the relay: the supervisor connects the program's own socket
 * (taken with pidfd_getfd) to it. Returns the errno the program's connect() gets (0 connected,
 * EINPROGRESS non-blocking), -1 when it cannot be held (why), -2 a peeked socket that is not TCP. */
static int hold(int lfd, const struct seccomp_notif *req, const struct sockaddr_storage *ss, socklen_t len,
		const char *prov, int port, int mode, char *why, size_t wl)
{
	pid_t tg;
	int pfd, sock, r;

	if (relay_off[0]) {
		snprintf(why, wl, "%s", relay_off);
		return -1;
	}
	tg = tgid_of((pid_t)req->pid);
	pfd = tg > 0 ? (int)syscall(SYS_pidfd_open, tg, 0) : -1;
	sock = pfd >= 0 ? (int)syscall(SYS_pidfd_getfd, pfd, (int)req->data.args[0], 0) : -1;
	if (sock < 0) {
		snprintf(why, wl, "cannot take the program's socket: %s", strerror(errno));
		if (pfd >= 0)
			close(pfd);
		return -1;
	}
	close(pfd);
	if (ioctl(lfd, SECCOMP_IOCTL_NOTIF_ID_VALID, &req->id) != 0) {    /* gone meanwhile */
		close(sock);
		snprintf(why, wl, "the process went away");
		return -1;
	}
	r = lc_relay_hold(sock, ss, len, prov, port, mode, why, wl);
	close(sock);
	return r;
}

/* one notification: fill resp */
static void decide(int lfd, const struct seccomp_notif *req, struct seccomp_notif_resp *resp)
{
	char pwhy[160], prov[128];
	struct sockaddr_storage ss;
	socklen_t len = (socklen_t)req->data.args[2];
	char path[64], ip[64];
	char hwhy[512];
	int mfd, port = 0, held, peek = 0;
	ssize_t k = -1;

	resp->id = req->id;
	resp->flags = SECCOMP_USER_NOTIF_FLAG_CONTINUE;
	resp->error = 0;
	resp->val = 0;
	memset(&ss, 0, sizeof(ss));
	if (len > sizeof(ss))
		len = sizeof(ss);
	snprintf(path, sizeof(path), "/proc/%d/mem", (int)req->pid);
	mfd = open(path, O_RDONLY | O_CLOEXEC);
	if (mfd >= 0) {
		k = pread(mfd, &ss, len, (off_t)req->data.args[1]);
		close(mfd);
	}
	/* the process may have died and its pid been reused: the answer would go nowhere */
	if (k != (ssize_t)len || ioctl(lfd, SECCOMP_IOCTL_NOTIF_ID_VALID, &req->id) != 0)
		return;
	/* the preload holds its programs' provider connections, and classifies those to a new address
	 * or a proxy itself (the SNI, the Host, the URL of a curl handle) */
	if ((!provider_of(&ss, len, &port, prov, sizeof(prov), &peek) && !peek) ||
	    preload_holds((pid_t)req->pid, pwhy, sizeof(pwhy)))
		return;
	if (peek == PEEK_REFUSE) {
		snprintf(hwhy, sizeof(hwhy), "a SOCKS or https:// proxy: llmcap cannot see which host a connection "
					     "through it reaches");
		held = -1;
	} else {
		held = hold(lfd, req, &ss, len, peek ? NULL : prov, port, peek, hwhy, sizeof(hwhy));
	}
	if (held == -2)    /* UDP to a provider port (a QUIC attempt, the "which interface" idiom) */
		return;
	if (held >= 0) {
		resp->flags = 0;
		resp->error = held ? -held : 0;
		return;
	}
	if (ss.ss_family == AF_INET)
		inet_ntop(AF_INET, &((struct sockaddr_in *)&ss)->sin_addr, ip, sizeof(ip));
	else
		inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&ss)->sin6_addr, ip, sizeof(ip));
	if (peek)    /* it may be a provider at an address not resolved yet, or a proxy to one */
		snprintf(prov, sizeof(prov), "%s", peek == LC_RELAY_PEEK_PROXY ? "(an HTTP proxy)"
						 : peek == PEEK_REFUSE ? "(a proxy)" : "(unknown: a provider port)");
	fprintf(stderr, "llmcap: refused a connection to provider %s (%s port %d) from pid %d: the program is %s, "
			"and llmcap cannot hold its calls (%s)\n", prov, ip, port, (int)req->pid, pwhy, hwhy);
	resp->flags = 0;
	resp->error = -ECONNREFUSED;
}

static pid_t child_pid;
static void forward(int sig)
{
	if (child_pid > 0)
		kill(child_pid, sig);
}

/* Is this process already under the connect() filter of an `llmcap run` supervisor (a nested
 * `llmcap run`)? A second listener cannot be stacked on it (EBUSY), and the outer supervisor
 * already sees every connect() of this subtree. */
static bool already_supervised(void)
{
	char line[256];
	FILE *f;
	int mode = 0;

	if (!getenv("LLMCAP_SUPERVISOR"))
		return false;
	f = fopen("/proc/self/status", "re");
	if (!f)
		return false;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "Seccomp: %d", &mode) == 1)
			break;
	fclose(f);
	return mode == 2;
}

static int exec_plain(const char *file, char *const argv[])
{
	execv(file, argv);
	fprintf(stderr, "llmcap run: %s: %s\n", file, strerror(errno));
	return errno == ENOENT ? 127 : 126;
}

int lc_supervise_exec(const char *file, char *const argv[], int kind, const char *why)
{
	struct seccomp_notif_sizes sz;
	struct seccomp_notif *req;
	struct seccomp_notif_resp *resp;
	int sp[2], lfd, st = 0, pol;
	char me[32];

	if (already_supervised())    /* the outer supervisor holds this subtree */
		return exec_plain(file, argv);
	relay_all = getenv("LLMCAP_RELAY_ALL") && !strcmp(getenv("LLMCAP_RELAY_ALL"), "1");
	read_proxies();
	pol = load_providers();
	if (pol < 0 && kind == LC_EXEC_DYNAMIC)    /* the preload answers provider calls with 503 */
		return exec_plain(file, argv);
	if (pol < 0) {
		fprintf(stderr, "llmcap run: the store is unusable (%s): refusing to run %s unheld\n",
			lc_store_error(), file);
		return 1;
	}
	if (pol == 0)    /* llmcap is not configured: nothing to hold, as with the preload */
		return exec_plain(file, argv);
	if (syscall(__NR_seccomp, SECCOMP_GET_NOTIF_SIZES, 0, &sz) != 0 ||
	    socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp) != 0) {
		if (kind == LC_EXEC_DYNAMIC) {
			fprintf(stderr, "llmcap run: seccomp user notification unavailable (%s): %s runs with the preload "
					"alone (programs it starts that the preload cannot hold are not supervised)\n",
				strerror(errno), file);
			return exec_plain(file, argv);
		}
		fprintf(stderr, "llmcap run: seccomp user notification unavailable (%s): refusing to run %s, which "
				"is %s\n", strerror(errno), file, why);
		return 1;
	}
	snprintf(me, sizeof(me), "%d", (int)getpid());
	if (lc_relay_prepare(relay_off, sizeof(relay_off)) == 0)
		relay_off[0] = 0;
	else if (!relay_off[0])
		snprintf(relay_off, sizeof(relay_off), "the relay could not start");
	fflush(NULL);
	child_pid = fork();
	if (child_pid < 0) {
		fprintf(stderr, "llmcap run: fork: %s\n", strerror(errno));
		return 1;
	}
	if (child_pid == 0) {
		close(sp[0]);
		setenv("LLMCAP_SUPERVISOR", me, 1);
		if (!relay_off[0])
			lc_relay_child_env();
		lfd = install_filter();
		if (lfd < 0 || send_fd(sp[1], lfd) != 0) {
			fprintf(stderr, "llmcap run: cannot install the supervisor's filter (%s): refusing to run %s\n",
				strerror(errno), file);
			_exit(1);
		}
		close(lfd);
		close(sp[1]);
		execv(file, argv);
		fprintf(stderr, "llmcap run: %s: %s\n", file, strerror(errno));
		_exit(errno == ENOENT ? 127 : 126);
	}
	close(sp[1]);
	if (!relay_off[0] && lc_relay_start(relay_off, sizeof(relay_off)) != 0 && !relay_off[0])
		snprintf(relay_off, sizeof(relay_off), "the relay could not start");
	lfd = recv_fd(sp[0]);
	close(sp[0]);
	{
		const char *ri = getenv("LLMCAP_RESOLVE_INTERVAL");
		int64_t t;
		pthread_t rt;

		if (ri && *ri && lc_parse_dec(ri, strlen(ri), 1, 86400, &t) == 0)
			resolve_s = (int)t;
		else if (ri && *ri)
			fprintf(stderr, "llmcap run: LLMCAP_RESOLVE_INTERVAL=%s is not a number of seconds (1-86400): "
					"using %d\n", ri, resolve_s);
		if (pthread_create(&rt, NULL, resolve_thread, NULL) == 0)
			pthread_detach(rt);
	}
	signal(SIGTERM, forward);
	signal(SIGHUP, forward);
	signal(SIGINT, SIG_IGN);     /* the terminal sends it to the program too */
	signal(SIGQUIT, SIG_IGN);
	req = calloc(1, sz.seccomp_notif > sizeof(*req) ? sz.seccomp_notif : sizeof(*req));
	resp = calloc(1, sz.seccomp_notif_resp > sizeof(*resp) ? sz.seccomp_notif_resp : sizeof(*resp));
	while (lfd >= 0 && req && resp) {
		struct pollfd p = { .fd = lfd, .events = POLLIN };
		int r = poll(&p, 1, 250);

		if (waitpid(child_pid, &st, WNOHANG) == child_pid)
			goto done;
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			continue;
		if (p.revents & (POLLHUP | POLLERR))
			break;
		memset(req, 0, sz.seccomp_notif);
		if (ioctl(lfd, SECCOMP_IOCTL_NOTIF_RECV, req) != 0)
			continue;    /* the caller died meanwhile (ENOENT), or EINTR */
		decide(lfd, req, resp);
		(void)ioctl(lfd, SECCOMP_IOCTL_NOTIF_SEND, resp);
	}
	while (waitpid(child_pid, &st, 0) < 0 && errno == EINTR)
		;
done:
	free(req);
	free(resp);
	if (lfd >= 0)
		close(lfd);
	if (WIFSIGNALED(st))
		return 128 + WTERMSIG(st);
	return WIFEXITED(st) ? WEXITSTATUS(st) : 1;
}
