/* hook_init.c - the constructor: cheap (no store, no config), see shim.c. Every hook also
 * initialises on first use, since other libraries' constructors may run before this one. */
#include "preload.h"

void lc_exec_resolve(void);    /* hook_exec.c: resolve the real exec family before any vfork */

__attribute__((constructor)) static void lc_preload_ctor(void)
{
	lc_pl_init();
	lc_exec_resolve();
}
