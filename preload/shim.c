/* shim.c - initialisation, the reentrancy guard, fork handling and the symbol resolver.
 *
 * Nothing here opens the store: the engine opens LMDB lazily, on the first provider
 * lookup, so a program that never connects anywhere pays for one pthread_once.
 */
#include <arpa/inet.h>
#include <dlfcn.h>
#include <errno.h>
#include <link.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "preload.h"

__thread int lc_pl_depth __attribute__((tls_model("initial-exec")));
__thread int lc_pl_last_connect_fd __attribute__((tls_model("initial-exec"))) = -1;
__thread int lc_pl_tls_in __attribute__((tls_model("initial-exec")));
atomic_int lc_pl_ready;
atomic_uint lc_pl_forkgen;
_Atomic unsigned char lc_fdst[LC_FD_MAX];

static pthread_once_t init_once = PTHREAD_ONCE_INIT;

/* hook_curl.c's handle table (absent from unit-test links) */
void lc_curl_atfork(int phase) __attribute__((weak));

static pthread_mutex_t made_mu = PTHREAD_MUTEX_INITIALIZER;

static void atfork_prepare(void)
{
	if (lc_curl_atfork)
		lc_curl_atfork(0);
	lc_tab_atfork_prepare();
	pthread_mutex_lock(&made_mu);
}

static void atfork_parent(void)
{
	pthread_mutex_unlock(&made_mu);
	lc_tab_atfork_parent();
	if (lc_curl_atfork)
		lc_curl_atfork(1);
}

static void atfork_child(void)
{
	atomic_fetch_add(&lc_pl_forkgen, 1);
	pthread_mutex_init(&made_mu, NULL);
	lc_tab_atfork_child();
	if (lc_curl_atfork)
		lc_curl_atfork(2);
}

static void do_init(void)
{
	int saved = errno;

	LC_PL_ENTER();
	pthread_atfork(atfork_prepare, atfork_parent, atfork_child);
	atomic_store_explicit(&lc_pl_ready, 1, memory_order_release);
	LC_PL_LEAVE();
	errno = saved;
}

void lc_pl_init(void)
{
	/* a hook called from inside our own init (pthread_atfork may allocate) passes through */
	if (lc_pl_depth)
		return;
	pthread_once(&init_once, do_init);
}

struct find_ctx {
	const char *hint;
	const char *names[16];
	int n;
};

/* collect names only: dlopen is called after the walk, outside the loader's iteration lock */
static int find_cb(struct dl_phdr_info *info, size_t size, void *arg)
{
	struct find_ctx *f = arg;

	(void)size;
	if (info->dlpi_name && info->dlpi_name[0] && strstr(info->dlpi_name, f->hint) &&
	    f->n < (int)(sizeof(f->names) / sizeof(f->names[0])))
		f->names[f->n++] = info->dlpi_name;
	return 0;
}

void *lc_pl_sym(const char *name, const char *lib_hint, void *self)
{
	int saved = errno;
	void *p;

	LC_PL_ENTER();
	p = dlsym(RTLD_NEXT, name);
	if (p == self)
		p = NULL;
	if (!p && lib_hint) {
		struct find_ctx f;
		int i;

		memset(&f, 0, sizeof(f));
		f.hint = lib_hint;
		dl_iterate_phdr(find_cb, &f);
		for (i = 0; i < f.n && !p; i++) {
			void *h = dlopen(f.names[i], RTLD_NOLOAD | RTLD_LAZY);

			if (!h)
				continue;
			p = dlsym(h, name);
			if (p == self)
				p = NULL;
			dlclose(h);
		}
	}
	LC_PL_LEAVE();
	errno = saved;
	return p;
}

static int ssl_cb(struct dl_phdr_info *info, size_t size, void *arg)
{
	(void)size;
	if (info->dlpi_name && (strstr(info->dlpi_name, "libssl.so") || strstr(info->dlpi_name, "libgnutls.so"))) {
		*(bool *)arg = true;
		return 1;
	}
	return 0;
}

bool lc_pl_have_held_tls(void)
{
	static atomic_bool seen;
	bool found = false;

	if (atomic_load(&seen))
		return true;    /* libssl is never unloaded in practice */
	dl_iterate_phdr(ssl_cb, &found);
	if (found)
		atomic_store(&seen, true);
	return found;
}

/* ---- ClientHellos the hooked TLS libraries made ---- */

/* The client_randoms of the last NMADE sessions a hooked call began (a fixed ring: no
 * allocation). A memory-BIO program writes its ClientHello after the call that made it returned;
 * NMADE handshakes may start between the two before one is forgotten. */
#define NMADE 512
static unsigned char made[NMADE][32];
static unsigned made_next;

/* is cr in the ring (made_mu held)? the newest first: a handshake's repeated steps record the same value */
static bool made_has(const unsigned char cr[32])
{
	for (unsigned i = 1; i <= NMADE && i <= made_next; i++)
		if (memcmp(made[(made_next - i) % NMADE], cr, 32) == 0)
			return true;
	return false;
}

void lc_pl_tls_made(const unsigned char cr[32])
{
	static const unsigned char zero[32];
	int saved = errno;

	if (memcmp(cr, zero, 32) == 0)
		return;    /* no ClientHello made yet */
	pthread_mutex_lock(&made_mu);
	if (!made_has(cr))
		memcpy(made[made_next++ % NMADE], cr, 32);
	pthread_mutex_unlock(&made_mu);
	errno = saved;
}

bool lc_pl_tls_ours(const unsigned char cr[32])
{
	bool found;

	pthread_mutex_lock(&made_mu);
	found = made_has(cr);
	pthread_mutex_unlock(&made_mu);
	return found;
}

/* ---- the relay of `llmcap run`'s supervisor ---- */

/* LLMCAP_RELAY="IP:PORT [IP6]:PORT", set by the supervisor for the programs it runs: the loopback
 * addresses of its relay. Parsed once; 1 parsed, -1 absent or unreadable. */
static struct sockaddr_storage relay_addr[2];
static int relay_n;
static pthread_once_t relay_once = PTHREAD_ONCE_INIT;

static void relay_parse(void)
{
	const char *v = getenv("LLMCAP_RELAY");
	char tok[80];

	while (v && *v && relay_n < 2) {
		size_t l = strcspn(v, " ");
		char *colon;
		long port;

		if (l > 0 && l < sizeof(tok)) {
			memcpy(tok, v, l);
			tok[l] = 0;
			colon = strrchr(tok, ':');
			port = colon ? strtol(colon + 1, NULL, 10) : 0;
			if (colon && port > 0 && port < 65536) {
				struct sockaddr_storage *ss = &relay_addr[relay_n];

				*colon = 0;
				if (tok[0] == '[' && colon > tok + 1 && colon[-1] == ']') {
					struct sockaddr_in6 *a = (struct sockaddr_in6 *)ss;

					colon[-1] = 0;
					if (inet_pton(AF_INET6, tok + 1, &a->sin6_addr) == 1) {
						a->sin6_family = AF_INET6;
						a->sin6_port = htons((uint16_t)port);
						relay_n++;
					}
				} else {
					struct sockaddr_in *a = (struct sockaddr_in *)ss;

					if (inet_pton(AF_INET, tok, &a->sin_addr) == 1) {
						a->sin_family = AF_INET;
						a->sin_port = htons((uint16_t)port);
						relay_n++;
					}
				}
			}
		}
		v += l;
		v += strspn(v, " ");
	}
}

bool lc_pl_relayed(int fd)
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	int i, saved = errno;
	bool r = false;

	pthread_once(&relay_once, relay_parse);
	if (relay_n == 0 || fd < 0 || getpeername(fd, (struct sockaddr *)&ss, &sl) != 0) {
		errno = saved;
		return false;
	}
	for (i = 0; i < relay_n && !r; i++) {
		const struct sockaddr_storage *ra = &relay_addr[i];

		if (ra->ss_family == AF_INET && ss.ss_family == AF_INET) {
			const struct sockaddr_in *a = (const struct sockaddr_in *)ra, *b = (const struct sockaddr_in *)&ss;

			r = a->sin_port == b->sin_port && a->sin_addr.s_addr == b->sin_addr.s_addr;
		} else if (ra->ss_family == AF_INET && ss.ss_family == AF_INET6) {    /* v4-mapped */
			const struct sockaddr_in *a = (const struct sockaddr_in *)ra;
			const struct sockaddr_in6 *b = (const struct sockaddr_in6 *)&ss;

			r = a->sin_port == b->sin6_port && IN6_IS_ADDR_V4MAPPED(&b->sin6_addr) &&
			    memcmp(&b->sin6_addr.s6_addr[12], &a->sin_addr, 4) == 0;
		} else if (ra->ss_family == AF_INET6 && ss.ss_family == AF_INET6) {
			const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)ra, *b = (const struct sockaddr_in6 *)&ss;

			r = a->sin6_port == b->sin6_port && memcmp(&a->sin6_addr, &b->sin6_addr, 16) == 0;
		}
	}
	errno = saved;
	return r;
}
