/* hook_engine.c - the hook library's side of the split: loads libllmcap_preload_engine.so on the
 * first event that needs it and forwards the conn/table/classify functions of preload.h to it.
 *
 * Nothing is loaded at exec: a program that never connects a socket, starts a TLS handshake or
 * sets a curl URL maps nothing beyond libc. The first classifying call (lc_cls_*, lc_conn_new,
 * lc_tab_put, lc_cr_record) dlopen()s the engine from the directory this library was loaded
 * from (dladdr). Lookups that only ask "is this tracked?" (lc_tab_get, lc_cr_lookup, ...) never
 * load it: with no engine there is no connection state, so the answer is "no".
 *
 * Loading takes no lock of ours: concurrent first calls may both dlopen (the loader's refcount
 * makes that one mapping) and publish the same table, so there is no lock order against the
 * loader's own lock (a library constructor that connects while another thread loads the engine)
 * and nothing to repair after fork(). lc_pl_depth is raised around dlopen so the loader's own
 * I/O goes to the real functions.
 *
 * Engine missing or unusable: one line on stderr, then every connection passes (as when no
 * policy is installed): without the engine the shim can neither read the policy nor answer.
 */
#include <dlfcn.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "preload.h"

static const struct lc_engine_api *_Atomic eng;
static atomic_int eng_failed;
static atomic_int eng_warned;
static bool fork_had_eng;    /* prepare saw an engine: parent/child hooks run for it */

static void eng_warn(const char *what, const char *detail)
{
	char line[1024];
	const char *lv = getenv("LLMCAP_LOG");
	int n;

	if (atomic_exchange(&eng_warned, 1) || (lv && strcmp(lv, "off") == 0))
		return;
	n = snprintf(line, sizeof(line), "llmcap[%d]: %s (%s); provider calls in this process are not held\n",
		     (int)getpid(), what, detail ? detail : "?");
	if (n > 0)
		(void)!write(2, line, (size_t)n < sizeof(line) ? (size_t)n : sizeof(line) - 1);
}

static const struct lc_engine_api *eng_load(void)
{
	const struct lc_engine_api *e = NULL;
	char path[4096];
	Dl_info di;
	void *h;
	int saved = errno;

	LC_PL_ENTER();
	path[0] = 0;
	if (dladdr((void *)eng_load, &di) && di.dli_fname && strchr(di.dli_fname, '/')) {
		const char *slash = strrchr(di.dli_fname, '/');
		int dl = (int)(slash - di.dli_fname);

		snprintf(path, sizeof(path), "%.*s/%s", dl, di.dli_fname, LC_ENGINE_LIB);
	} else {
		snprintf(path, sizeof(path), "%s", LC_ENGINE_LIB);
	}
	h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
	if (!h) {
		eng_warn("cannot load the llmcap engine library", dlerror());
	} else {
		lc_engine_entry_fn fn = (lc_engine_entry_fn)dlsym(h, LC_ENGINE_ENTRY);

		e = fn ? fn(LC_ENGINE_API_VERSION) : NULL;
		if (!e || e->size != sizeof(struct lc_engine_api) || e->layout != LC_ENGINE_LAYOUT) {
			e = NULL;
			eng_warn("llmcap engine library does not match the preload library", path);
			dlclose(h);
		}
	}
	if (e) {
		const struct lc_engine_api *expect = NULL;

		/* a concurrent loader may have won: same mapping, same table */
		if (!atomic_compare_exchange_strong(&eng, &expect, e))
			e = expect;
	} else {
		atomic_store(&eng_failed, 1);
	}
	LC_PL_LEAVE();
	errno = saved;
	return e;
}

/* the engine, loading it when needed; NULL when it cannot be loaded */
static inline const struct lc_engine_api *eng_need(void)
{
	const struct lc_engine_api *e = atomic_load_explicit(&eng, memory_order_acquire);

	if (__builtin_expect(e != NULL, 1))
		return e;
	if (atomic_load_explicit(&eng_failed, memory_order_relaxed))
		return NULL;
	return eng_load();
}

/* the engine if already loaded (no state exists without it) */
static inline const struct lc_engine_api *eng_have(void)
{
	return atomic_load_explicit(&eng, memory_order_acquire);
}

/* ---- classify: needs the engine (policy, parsers) ---- */

int lc_cls_lookup(const char *host, int port, struct lc_target *t)
{
	const struct lc_engine_api *e = eng_need();

	return e ? e->cls_lookup(host, port, t) : 0;
}

bool lc_cls_priced_request(const void *buf, size_t n)
{
	const struct lc_engine_api *e = eng_need();

	return e ? e->cls_priced_request(buf, n) : false;
}

int lc_cls_peer(int fd, char *ip, size_t iplen, int *port)
{
	const struct lc_engine_api *e = eng_need();

	return e ? e->cls_peer(fd, ip, iplen, port) : -1;
}

bool lc_cls_is_http_request(const void *buf, size_t n)
{
	const struct lc_engine_api *e = eng_need();

	return e ? e->cls_is_http_request(buf, n) : false;
}

int lc_cls_host_header(const void *buf, size_t n, char *host, size_t hostlen, int *port)
{
	const struct lc_engine_api *e = eng_need();

	return e ? e->cls_host_header(buf, n, host, hostlen, port) : -1;
}

bool lc_cls_is_h2_preface(const void *buf, size_t n)
{
	const struct lc_engine_api *e = eng_need();

	return e ? e->cls_is_h2_preface(buf, n) : false;
}

int lc_cls_client_hello(const void *buf, size_t n, unsigned char cr[32])
{
	const struct lc_engine_api *e = eng_need();

	return e ? e->cls_client_hello(buf, n, cr) : 0;
}

int lc_cls_client_hello_sni(const void *buf, size_t n, char *out, size_t outlen)
{
	const struct lc_engine_api *e = eng_need();

	return e ? e->cls_client_hello_sni(buf, n, out, outlen) : -1;
}

int lc_cls_url(const char *url, char *host, size_t hostlen, int *port, bool *tls)
{
	const struct lc_engine_api *e = eng_need();

	return e ? e->cls_url(url, host, hostlen, port, tls) : -1;
}

/* ---- connections: a conn exists only once the engine is loaded ---- */

struct lc_conn *lc_conn_new(int fd, bool tls)
{
	const struct lc_engine_api *e = eng_need();

	if (!e) {
		errno = ENOMEM;
		return NULL;
	}
	return e->conn_new(fd, tls);
}

struct lc_conn *lc_conn_new_provider(int fd, bool tls, const struct lc_target *t)
{
	const struct lc_engine_api *e = eng_need();

	if (!e) {
		errno = ENOMEM;
		return NULL;
	}
	return e->conn_new_provider(fd, tls, t);
}

/* no engine, no connection: an empty view says "not a provider" */
void lc_conn_view(struct lc_conn *c, struct lc_conn_view *v)
{
	const struct lc_engine_api *e = eng_have();

	if (e) {
		e->conn_view(c, v);
		return;
	}
	memset(v, 0, sizeof(*v));
	v->cls = LC_CLS_PASS;
	v->fd = -1;
}

#define FWD_VOID(name, decl, args)                                                            \
	void lc_##name decl                                                                   \
	{                                                                                     \
		const struct lc_engine_api *e = eng_have();                                   \
		if (e)                                                                        \
			e->name args;                                                         \
	}
#define FWD(type, dflt, name, decl, args)                                                     \
	type lc_##name decl                                                                   \
	{                                                                                     \
		const struct lc_engine_api *e = eng_have();                                   \
		return e ? e->name args : (dflt);                                             \
	}

FWD_VOID(conn_ref, (struct lc_conn *c), (c))
FWD_VOID(conn_put, (struct lc_conn *c), (c))
FWD(int, LC_W_FAIL, conn_write, (struct lc_conn *c, const void *p, size_t n), (c, p, n))
FWD(bool, true, conn_flushed, (struct lc_conn *c, size_t n), (c, n))
FWD_VOID(conn_flush_failed, (struct lc_conn *c), (c))
FWD(int, LC_R_PASS, conn_read_mode, (struct lc_conn *c), (c))
FWD(size_t, 0, conn_synth_read, (struct lc_conn *c, void *buf, size_t n, bool peek), (c, buf, n, peek))
FWD_VOID(conn_set_fd, (struct lc_conn *c, int fd), (c, fd))
FWD_VOID(conn_set_synth_err, (struct lc_conn *c, int err), (c, err))
FWD(bool, false, conn_once, (struct lc_conn *c, int flag), (c, flag))
FWD(int, LC_CLS_PASS, conn_classify, (struct lc_conn *c, int cls, const struct lc_target *t, bool dead),
    (c, cls, t, dead))
FWD_VOID(conn_feed, (struct lc_conn *c, const void *p, size_t n), (c, p, n))
FWD_VOID(conn_eof, (struct lc_conn *c), (c))
FWD_VOID(conn_finish, (struct lc_conn *c), (c))
FWD(struct lc_conn *, NULL, tab_get, (int tab, uintptr_t key), (tab, key))
FWD(struct lc_conn *, NULL, tab_take, (int tab, uintptr_t key), (tab, key))
FWD(size_t, 0, tab_count, (int tab), (tab))
FWD(int, -1, cr_lookup, (const unsigned char cr[32]), (cr))
FWD_VOID(cr_forget_fd, (int fd), (fd))

const void *lc_conn_flush_buf(struct lc_conn *c, size_t *len)
{
	const struct lc_engine_api *e = eng_have();

	if (!e) {
		*len = 0;
		return NULL;
	}
	return e->conn_flush_buf(c, len);
}

struct lc_conn *lc_tab_put(int tab, uintptr_t key, struct lc_conn *c)
{
	const struct lc_engine_api *e = eng_need();

	return e ? e->tab_put(tab, key, c) : NULL;
}

void lc_cr_record(int fd, const unsigned char cr[32])
{
	const struct lc_engine_api *e = eng_need();

	if (e)
		e->cr_record(fd, cr);
}

/* fork: the tables' locks are taken in prepare only if the engine was there then */
void lc_tab_atfork_prepare(void)
{
	const struct lc_engine_api *e = eng_have();

	fork_had_eng = e != NULL;
	if (e)
		e->tab_atfork_prepare();
}

void lc_tab_atfork_parent(void)
{
	if (fork_had_eng)
		eng_have()->tab_atfork_parent();
}

void lc_tab_atfork_child(void)
{
	if (fork_had_eng)
		eng_have()->tab_atfork_child();
}

/* ---- logging: the engine's logger (level from LLMCAP_LOG); nothing to log without it ---- */

void lc_log(int level, const char *fmt, ...)
{
	const struct lc_engine_api *e = eng_have();
	char msg[1024];
	int saved = errno;
	va_list ap;

	if (!e || level > e->log_level())
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	e->log(level, msg);
	errno = saved;
}
