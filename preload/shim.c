/* shim.c - initialisation, the reentrancy guard, fork handling and the symbol resolver.
 *
 * Nothing here opens the store: the engine opens LMDB lazily, on the first provider
 * lookup, so a program that never connects anywhere pays for one pthread_once.
 */
#include <dlfcn.h>
#include <errno.h>
#include <link.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "preload.h"

__thread int lc_pl_depth __attribute__((tls_model("initial-exec")));
__thread int lc_pl_last_connect_fd __attribute__((tls_model("initial-exec"))) = -1;
atomic_int lc_pl_ready;
atomic_uint lc_pl_forkgen;
_Atomic unsigned char lc_fdst[LC_FD_MAX];

static pthread_once_t init_once = PTHREAD_ONCE_INIT;

/* hook_curl.c's handle table (absent from unit-test links) */
void lc_curl_atfork(int phase) __attribute__((weak));

static void atfork_prepare(void)
{
	if (lc_curl_atfork)
		lc_curl_atfork(0);
	lc_tab_atfork_prepare();
}

static void atfork_parent(void)
{
	lc_tab_atfork_parent();
	if (lc_curl_atfork)
		lc_curl_atfork(1);
}

static void atfork_child(void)
{
	atomic_fetch_add(&lc_pl_forkgen, 1);
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
