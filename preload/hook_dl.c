/* hook_dl.c - dlopen without RTLD_DEEPBIND.
 *
 * A library opened with RTLD_DEEPBIND (PHP opens every extension that way) resolves its own
 * symbols and those of its dependencies before the global scope, where LD_PRELOAD puts the shim:
 * PHP's curl.so -> libcurl -> libssl and libc would call the real SSL_write/send and never the
 * hooks. The flag is dropped, so such a library binds like any other: global scope first (the
 * program, the shim, libraries opened RTLD_GLOBAL), then its own dependencies.
 *
 * What that changes for the program: a library that relied on DEEPBIND to prefer its own copy of
 * a symbol that the program (or an RTLD_GLOBAL library) also defines now binds to the program's
 * copy, as it would without the flag. Nothing else: the mode's other bits are kept.
 *
 * glibc's dlopen takes the caller's address for the RPATH of the calling object and $ORIGIN in
 * the file name: the real dlopen is reached by a tail call (a jump), so it sees the program's
 * caller, not the shim.
 */
#include <dlfcn.h>

#include "preload.h"

static void *(*r_dlopen)(const char *, int);

LC_EXPORT void *dlopen(const char *file, int mode)
{
	if (__builtin_expect(!r_dlopen, 0))
		r_dlopen = (void *(*)(const char *, int))dlsym(RTLD_NEXT, "dlopen");
	if (!r_dlopen)
		return NULL;
	return r_dlopen(file, mode & ~RTLD_DEEPBIND);    /* a sibling call: keep it the last thing */
}
