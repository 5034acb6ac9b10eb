/* cli.h - what the llmcap commands share: the one error printer and the --help test. */
#ifndef LC_CLI_H
#define LC_CLI_H

#include <stdbool.h>

/* Prints "WHO: message\n" to stderr; returns 1, the commands' failure status. */
int lc_cli_fail(const char *who, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* When --help or -h stands among the arguments (before any "--"): prints `text` on stdout and
 * returns true (the command then exits 0). */
bool lc_cli_help(int argc, char **argv, const char *text);

#endif
