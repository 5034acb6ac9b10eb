/* preload.h - internals of libllmcap_preload.so.
 *
 * Layering (torsocks style): preload/hook_*.c are the exported symbols (SSL_*, libc
 * send/recv family, curl_easy_setopt, ...), kept thin. They call the plain modules
 * below, which unit tests link directly without LD_PRELOAD:
 *
 *   shim.c      init, reentrancy guard, fork handling, the real-symbol resolver
 *   conn.c      one provider connection: buffer a request, decide, flush or deny,
 *               read the response for usage, settle (transport independent)
 *   table.c     thread-safe tables: SSL* -> conn, fd -> conn, fd state bytes,
 *               TLS client_random -> fd
 *   classify.c  is this connection a provider? (SNI, peer, Host header, URL), ALPN,
 *               HTTP/2 preface, ClientHello parsing
 *
 * Two libraries (so a program that never talks to a provider maps nothing but libc):
 *   libllmcap_preload.so         hook_*.c + shim.c: the hooks, the symbol resolver, the lock-free
 *                                fd state bytes; DT_NEEDED on libc only. hook_engine.c defines
 *                                the conn/table/classify functions below as thin forwarders.
 *   libllmcap_preload_engine.so  conn.c, table.c, classify.c, engine_api.c + shared-state (LMDB,
 *                                jansson, sodium, zlib), dlopen()ed (RTLD_NOW | RTLD_LOCAL) from the
 *                                hook library's directory on the first event that needs it; its
 *                                functions are reached through struct lc_engine_api. It uses the
 *                                hook library's lc_pl_depth and lc_pl_forkgen (exported for it).
 * Unit tests link shim.c, table.c, conn.c and classify.c directly (no forwarders).
 */
#ifndef LC_PRELOAD_H
#define LC_PRELOAD_H

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "engine.h"
#include "sniff.h"
#include "util.h"
#include "wire.h"

#define LC_EXPORT __attribute__((visibility("default")))

/* ---- shim.c ------------------------------------------------------------- */

/* >0 while the shim itself runs (engine, logging): every hook passes straight through. */
extern __thread int lc_pl_depth __attribute__((tls_model("initial-exec"), visibility("default")));
#define LC_PL_ENTER() (lc_pl_depth++)
#define LC_PL_LEAVE() (lc_pl_depth--)

extern atomic_int lc_pl_ready;
void lc_pl_init(void);                    /* idempotent, cheap after the first call */
static inline void lc_pl_ensure(void)
{
	if (__builtin_expect(!atomic_load_explicit(&lc_pl_ready, memory_order_acquire), 0))
		lc_pl_init();
}

/* Resolve a symbol of the library the program uses: dlsym(RTLD_NEXT) first, then every loaded
 * object whose name contains `lib_hint` (e.g. "libssl.so"), opened with RTLD_NOLOAD (Python
 * loads _ssl -> libssl RTLD_LOCAL, where RTLD_NEXT cannot see it). `self` is our own hook, never
 * returned. NULL when not found (callers cache non-NULL results only). */
void *lc_pl_sym(const char *name, const char *lib_hint, void *self);

/* Cached resolution into *slot (atomic pointer). */
#define LC_REAL(slot, name, hint, self)                                                       \
	((slot) ? (slot) : ((slot) = (__typeof__(slot))lc_pl_sym((name), (hint), (void *)(self))))

/* The last inet socket this thread connect()ed: a hint for the peer port of an SSL whose
 * socket is not known yet (custom or memory BIO) at handshake time. */
extern __thread int lc_pl_last_connect_fd __attribute__((tls_model("initial-exec")));

/* Is a TLS library the shim hooks (OpenSSL's libssl, GnuTLS) loaded in this process? (Only what a
 * refusal says: whether a ClientHello is held is decided per connection, below.) */
bool lc_pl_have_held_tls(void);

/* Held TLS, per connection: a ClientHello written to a provider is held only when a hooked TLS
 * library made it, so that the TLS layer will see the session's requests:
 *   - written inside a hooked call (a socket BIO: SSL_connect, SSL_do_handshake, SSL_read/write/
 *     peek and their _ex forms, gnutls_handshake, gnutls_record_send/recv): lc_pl_tls_in > 0
 *     on the writing thread;
 *   - or written later by the program (a memory BIO: Debian's node, Python's asyncio): its
 *     client_random is one a hooked call recorded when it returned (lc_pl_tls_made).
 * Anything else is TLS of the program's own (rustls, mbed TLS, a Go c-shared library, a
 * statically linked OpenSSL) even when libssl is loaded too. */
extern __thread int lc_pl_tls_in __attribute__((tls_model("initial-exec")));
void lc_pl_tls_made(const unsigned char cr[32]);    /* all zero: ignored; errno kept */
bool lc_pl_tls_ours(const unsigned char cr[32]);

/* Is socket fd connected to the loopback relay of the `llmcap run` supervisor this process runs
 * under (LLMCAP_RELAY)? Such a connection is held by the relay (it decides every request on it),
 * so the shim leaves it alone: one decision per request, never two. */
bool lc_pl_relayed(int fd);

/* Fork generation: bumped in the child; conns of an older generation are never settled there. */
extern atomic_uint lc_pl_forkgen __attribute__((visibility("default")));

/* ---- table.c ------------------------------------------------------------ */

#define LC_FD_MAX 65536
/* fd state byte, read without a lock on every libc I/O hook */
enum {
	LC_FD_NONE = 0,      /* untracked: every hook passes straight through */
	LC_FD_CANDIDATE = 1, /* connected inet stream, first write not seen yet */
	LC_FD_PROVIDER = 2,  /* plain-HTTP provider connection: conn in the fd table */
};
extern _Atomic unsigned char lc_fdst[LC_FD_MAX];
static inline int lc_fd_state(int fd)
{
	if ((unsigned)fd >= LC_FD_MAX)
		return LC_FD_NONE;
	return atomic_load_explicit(&lc_fdst[fd], memory_order_relaxed);
}
static inline void lc_fd_set_state(int fd, int st)
{
	if ((unsigned)fd < LC_FD_MAX)
		atomic_store_explicit(&lc_fdst[fd], (unsigned char)st, memory_order_relaxed);
}

struct lc_conn;
/* key: (uintptr_t)SSL* for the SSL table, (uintptr_t)fd for the fd table. get: new reference. */
enum { LC_TAB_SSL = 0, LC_TAB_FD = 1, LC_TAB_N };
struct lc_conn *lc_tab_get(int tab, uintptr_t key);
/* Insert c (the table takes a reference) unless the key exists: returns the existing entry
 * (new ref) in that case, else c (new ref for the caller too). */
struct lc_conn *lc_tab_put(int tab, uintptr_t key, struct lc_conn *c);
/* Remove and return (the table's reference now belongs to the caller), NULL when absent. */
struct lc_conn *lc_tab_take(int tab, uintptr_t key);
size_t lc_tab_count(int tab);
void lc_tab_atfork_prepare(void);
void lc_tab_atfork_parent(void);
void lc_tab_atfork_child(void);    /* inherited entries are replaced on first use, never settled */

/* ClientHello client_random -> fd, to find the socket of a memory/custom-BIO SSL. */
void lc_cr_record(int fd, const unsigned char cr[32]);
int lc_cr_lookup(const unsigned char cr[32]);    /* fd or -1 */
void lc_cr_forget_fd(int fd);

/* ---- classify.c ----------------------------------------------------------- */

struct lc_target {
	char host[256];            /* provider host as matched (no port) */
	int port;
	enum lc_format fmt;
	char name[64];
};
/* 1 provider (t filled), 0 not. -1: a policy is known but the store is unusable, so the
 * provider list cannot be read (t filled): callers treat the connection as a provider when its
 * request is a priced LLM API call (lc_cls_priced_request), and lc_admit_http answers 503.
 * The well-known public provider hosts are providers (1) in that state. */
int lc_cls_lookup(const char *host, int port, struct lc_target *t);
/* An HTTP request whose path is an LLM API the engine prices (chat, responses, messages, ...). */
bool lc_cls_priced_request(const void *buf, size_t n);
/* Peer address of a socket as text (no brackets) and port; 0 ok. */
int lc_cls_peer(int fd, char *ip, size_t iplen, int *port);
/* the byte inspection (lc_cls_is_http_request, lc_cls_host_header, lc_cls_client_hello_sni, ...)
 * is shared with the relay: sniff.h */

/* ---- conn.c --------------------------------------------------------------- */

enum lc_cls { LC_CLS_UNKNOWN = 0, LC_CLS_PASS = 1, LC_CLS_PROVIDER = 2 };
enum lc_st {
	LC_ST_IDLE = 0,  /* between requests */
	LC_ST_REQ,       /* buffering a request (claimed as written, not sent) */
	LC_ST_FLUSH,     /* allowed: sending the buffered request through the real write */
	LC_ST_RESP,      /* request sent: reading the response for usage */
	LC_ST_DENIED,    /* blocked: serving the synthetic response, then EOF */
	LC_ST_DEAD,      /* refused (h2, pipelining, unparseable): every write fails */
};

/* A provider connection. Its fields are private to conn.c (conn_impl.h): every read or write
 * goes through the functions below, which take the connection's mutex, so the hooks never race
 * with conn.c and the hook library never depends on the struct's layout (it lives in the engine
 * library; only struct lc_target and struct lc_conn_view cross, checked by LC_ENGINE_LAYOUT). */
struct lc_conn;

/* What the hooks look at, copied under the mutex in one go (a consistent snapshot). */
struct lc_conn_view {
	int cls;                   /* enum lc_cls */
	int st;                    /* enum lc_st */
	int fd;                    /* socket, -1 unknown */
	int synth_err;             /* SSL: what SSL_get_error answers for our last synthetic result */
	bool shut_done;            /* SHUT_RD applied */
	bool eof_served;           /* the read path returned EOF after the synthetic bytes */
	unsigned nreq;             /* requests seen on this connection */
	size_t synth_left;         /* synthetic bytes not read yet (DENIED) */
};

struct lc_conn *lc_conn_new(int fd, bool tls);
/* A connection already known to be a provider's (classified before it is published). */
struct lc_conn *lc_conn_new_provider(int fd, bool tls, const struct lc_target *t);
void lc_conn_view(struct lc_conn *c, struct lc_conn_view *v);
/* Record the classification once: sets cls/t (and st DEAD when `dead`) only while cls is still
 * LC_CLS_UNKNOWN; returns the classification in force afterwards. */
int lc_conn_classify(struct lc_conn *c, int cls, const struct lc_target *t, bool dead);
void lc_conn_set_fd(struct lc_conn *c, int fd);     /* fd >= 0 */
void lc_conn_set_synth_err(struct lc_conn *c, int e);
/* One-shot flags (test-and-set under the mutex): true for the one caller that sets it. */
enum { LC_ONCE_ALPN = 1, LC_ONCE_SHUT = 2 };
bool lc_conn_once(struct lc_conn *c, int flag);
void lc_conn_ref(struct lc_conn *c);
void lc_conn_put(struct lc_conn *c);     /* last reference: settles an open ticket, frees */
/* c (which may be NULL) when it is a provider's connection, its view in *v; else NULL, the
 * reference given back. */
/* The view of c (which may be NULL) in *v, the reference given back: false when there is no c. */
static inline bool lc_conn_view_put(struct lc_conn *c, struct lc_conn_view *v)
{
	if (!c)
		return false;
	lc_conn_view(c, v);
	lc_conn_put(c);
	return true;
}

static inline struct lc_conn *lc_conn_provider(struct lc_conn *c, struct lc_conn_view *v)
{
	if (c) {
		lc_conn_view(c, v);
		if (v->cls != LC_CLS_PROVIDER) {
			lc_conn_put(c);
			c = NULL;
		}
	}
	return c;
}

/* Write path. The hook calls lc_conn_write with the app's bytes; the answer says what to do. */
enum {
	LC_W_CLAIM = 0,   /* bytes taken into the request buffer: report them written */
	LC_W_FLUSH,       /* allowed: flush lc_conn_flush_buf(), then report the app's bytes written */
	LC_W_DENY,        /* blocked: apply SHUT_RD (lc_conn_need_shut), report the bytes written */
	LC_W_FAIL,        /* refuse this write (EPIPE) */
};
int lc_conn_write(struct lc_conn *c, const void *p, size_t n);
/* Remaining bytes to flush (NULL/0 when none). */
const void *lc_conn_flush_buf(struct lc_conn *c, size_t *len);
/* n bytes were handed to the real write; returns true when the whole request is out. */
bool lc_conn_flushed(struct lc_conn *c, size_t n);
/* The real write failed for good: settle as not delivered, connection dead. */
void lc_conn_flush_failed(struct lc_conn *c);
/* The flush of an allowed request (LC_W_FLUSH), one loop for every write hook: hands the held bytes
 * to `put` (the hook's real write: it returns the bytes taken, or <= 0 with *retry set when the
 * program may retry the same call, as on EAGAIN, GNUTLS_E_AGAIN or SSL_ERROR_WANT_*) until none
 * are left. True when the request is out; else false with *fail = put's result, the connection
 * settled as not delivered unless the call may be retried, and errno as put left it. */
typedef ssize_t (*lc_put_fn)(void *ctx, const void *p, size_t len, bool *retry);
static inline bool lc_conn_flush_all(struct lc_conn *c, lc_put_fn put, void *ctx, ssize_t *fail)
{
	for (;;) {
		size_t len = 0;
		const void *p = lc_conn_flush_buf(c, &len);
		bool retry = false;
		ssize_t k;

		if (!p)
			return true;
		k = put(ctx, p, len, &retry);
		if (k > 0) {
			lc_conn_flushed(c, (size_t)k);
			continue;
		}
		if (!retry) {
			int e = errno;
			lc_conn_flush_failed(c);
			errno = e;
		}
		*fail = k;
		return false;
	}
}

/* Read path. */
enum { LC_R_PASS = 0, LC_R_FEED, LC_R_SYNTH };
int lc_conn_read_mode(struct lc_conn *c);
/* Copy synthetic bytes; returns count, 0 at EOF (then eof_served). peek: do not consume. */
size_t lc_conn_synth_read(struct lc_conn *c, void *buf, size_t n, bool peek);
void lc_conn_feed(struct lc_conn *c, const void *p, size_t n);
void lc_conn_eof(struct lc_conn *c);    /* the peer closed (or the connection failed) */
/* Settle any open ticket with what we have (close, SSL_free). Idempotent. */
void lc_conn_finish(struct lc_conn *c);

/* ---- hook_ssl.c: what the TLS layers (OpenSSL, GnuTLS) share ---- */

/* The record of a TLS session (SSL*, gnutls_session_t): a new reference, NULL when absent (and
 * !create) or on ENOMEM. */
struct lc_conn *lc_tls_rec(const void *sess, bool create) __attribute__((visibility("hidden")));
/* What a TLS layer tells lc_tls_classify about one of its sessions. */
struct lc_tls_layer {
	const char *name;                                          /* in the log: "TLS", "GnuTLS" */
	int (*lookup)(void *sess, int fd, struct lc_target *t);    /* SNI/peer: lc_cls_lookup's answer */
	bool (*h2)(void *sess);                                    /* HTTP/2 negotiated (ALPN) */
};
/* The first application write on a session (buf, n), provider or not, decided once: a socket (fd,
 * -1 unknown) the supervisor's relay holds passes; else the session's lookup, then the request's
 * Host header, then (store unusable) whether it is a priced LLM API call; a provider's connection
 * that negotiated HTTP/2 is recorded dead. Returns the classification in force (lc_conn_classify). */
int lc_tls_classify(const struct lc_tls_layer *l, void *sess, struct lc_conn *c, int fd, const void *buf, size_t n)
	__attribute__((visibility("hidden")));
/* A blocked call: shut the read side of its socket once (nothing goes on the wire), so every
 * poller wakes. v: the conn's view; fd: the socket as the layer found it (-1 unknown). */
void lc_tls_deny_ready(struct lc_conn *c, const struct lc_conn_view *v, int fd)
	__attribute__((visibility("hidden")));

/* ---- the engine library's entry table (engine_api.c; forwarders in hook_engine.c) ---- */

#define LC_ENGINE_API_VERSION 2
#define LC_ENGINE_LIB "libllmcap_preload_engine.so"
#define LC_ENGINE_ENTRY "lc_preload_engine_api"

/* The layout of everything that crosses the two libraries besides function signatures: the
 * structs the hook library allocates and the engine fills (lc_target, lc_conn_view), the entry
 * table and the enum values both sides switch on. Computed by each library from the header it
 * was built with; the hook library refuses an engine whose value differs (one stderr line, then
 * every connection passes, as with a missing engine) rather than read fields at wrong offsets. */
#define LC_LAYOUT_MIX(h, v) (((h) ^ (uint64_t)(v)) * 0x100000001b3ull)
#define LC_ENGINE_LAYOUT                                                                       \
	LC_LAYOUT_MIX(LC_LAYOUT_MIX(LC_LAYOUT_MIX(LC_LAYOUT_MIX(LC_LAYOUT_MIX(LC_LAYOUT_MIX(     \
	LC_LAYOUT_MIX(LC_LAYOUT_MIX(LC_LAYOUT_MIX(LC_LAYOUT_MIX(LC_LAYOUT_MIX(LC_LAYOUT_MIX(     \
	LC_LAYOUT_MIX(LC_LAYOUT_MIX(0xcbf29ce484222325ull,                                       \
	sizeof(struct lc_target)), offsetof(struct lc_target, port)),                            \
	offsetof(struct lc_target, fmt)), offsetof(struct lc_target, name)),                     \
	sizeof(struct lc_conn_view)), offsetof(struct lc_conn_view, synth_err)),                 \
	offsetof(struct lc_conn_view, shut_done)), offsetof(struct lc_conn_view, nreq)),          \
	offsetof(struct lc_conn_view, synth_left)), sizeof(struct lc_engine_api)),               \
	LC_ST_DEAD), LC_W_FAIL), LC_R_SYNTH), LC_TAB_N)

struct lc_engine_api {
	unsigned version;
	size_t size;
	uint64_t layout;           /* LC_ENGINE_LAYOUT as the engine was built */
	int (*cls_lookup)(const char *, int, struct lc_target *);
	bool (*cls_priced_request)(const void *, size_t);
	int (*cls_peer)(int, char *, size_t, int *);
	bool (*cls_is_http_request)(const void *, size_t);
	int (*cls_host_header)(const void *, size_t, char *, size_t, int *);
	bool (*cls_is_h2_preface)(const void *, size_t);
	int (*cls_client_hello)(const void *, size_t, unsigned char *);
	int (*cls_client_hello_sni)(const void *, size_t, char *, size_t);
	int (*cls_url)(const char *, char *, size_t, int *, bool *);
	struct lc_conn *(*conn_new)(int, bool);
	struct lc_conn *(*conn_new_provider)(int, bool, const struct lc_target *);
	void (*conn_view)(struct lc_conn *, struct lc_conn_view *);
	int (*conn_classify)(struct lc_conn *, int, const struct lc_target *, bool);
	void (*conn_set_fd)(struct lc_conn *, int);
	void (*conn_set_synth_err)(struct lc_conn *, int);
	bool (*conn_once)(struct lc_conn *, int);
	void (*conn_ref)(struct lc_conn *);
	void (*conn_put)(struct lc_conn *);
	int (*conn_write)(struct lc_conn *, const void *, size_t);
	const void *(*conn_flush_buf)(struct lc_conn *, size_t *);
	bool (*conn_flushed)(struct lc_conn *, size_t);
	void (*conn_flush_failed)(struct lc_conn *);
	int (*conn_read_mode)(struct lc_conn *);
	size_t (*conn_synth_read)(struct lc_conn *, void *, size_t, bool);
	void (*conn_feed)(struct lc_conn *, const void *, size_t);
	void (*conn_eof)(struct lc_conn *);
	void (*conn_finish)(struct lc_conn *);
	struct lc_conn *(*tab_get)(int, uintptr_t);
	struct lc_conn *(*tab_put)(int, uintptr_t, struct lc_conn *);
	struct lc_conn *(*tab_take)(int, uintptr_t);
	size_t (*tab_count)(int);
	void (*tab_atfork_prepare)(void);
	void (*tab_atfork_parent)(void);
	void (*tab_atfork_child)(void);
	void (*cr_record)(int, const unsigned char *);
	int (*cr_lookup)(const unsigned char *);
	void (*cr_forget_fd)(int);
	int (*log_level)(void);
	void (*log)(int level, const char *msg);
};
/* exported by the engine library: the table, NULL when `version` differs */
typedef const struct lc_engine_api *(*lc_engine_entry_fn)(unsigned version);

#endif
