/* supervise.h - `llmcap run` for programs the preload cannot hold (cli/supervise.c). */
#ifndef LC_SUPERVISE_H
#define LC_SUPERVISE_H

#include <stddef.h>

enum { LC_EXEC_DYNAMIC = 0, LC_EXEC_STATIC, LC_EXEC_GO };
/* What kind of program `path` is (reads its ELF headers); why: a phrase for messages. Anything
 * that is not an ELF executable (a script) is LC_EXEC_DYNAMIC: its interpreter runs. */
int lc_exec_kind(const char *path, char *why, size_t whylen);
/* Run file (of lc_exec_kind kind, why) under the connect() supervisor until it exits; returns the
 * exit status for llmcap. A dynamically linked program runs without it (with the preload alone)
 * when no policy is installed, the store is unusable, seccomp user notification is unavailable,
 * or an outer `llmcap run` supervisor already sees this process's connect()s. */
int lc_supervise_exec(const char *file, char *const argv[], int kind, const char *why);

#endif
