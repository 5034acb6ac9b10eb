/* run.c - `llmcap run -- CMD [ARGS...]`: run CMD with libllmcap_preload.so.
 *
 * The library is found next to the llmcap binary (the build directory) or in ../lib/ (an
 * installed prefix). Its absolute path goes first in LD_PRELOAD, an existing LD_PRELOAD is kept
 * after it. A setuid, setgid or file-capability target is refused (as torsocks does): the
 * dynamic loader runs those in secure-execution mode and drops a preload given by path, so the
 * program would run without limits.
 *
 * A program the preload cannot hold (statically linked, or Go: lc_exec_kind) runs under the
 * connect() supervisor of supervise.c instead: its connections to providers are held by the
 * supervisor's relay (relay.c), everything else passes. LD_PRELOAD is set for it as well, so its dynamically linked children
 * are held by the preload as usual.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "secure_exec.h"
#include "supervise.h"

#define PRELOAD_NAME "libllmcap_preload.so"

int lc_cmd_run(int argc, char **argv);

static void run_usage(FILE *f)
{
	fprintf(f,
		"usage: llmcap run [--] CMD [ARGS...]\n"
		"\n"
		"Runs CMD with the llmcap preload library (" PRELOAD_NAME "), so its calls to the\n"
		"providers of the installed policy are held to its limits. A call that would cross a limit is\n"
		"answered inside the process with a 429 and never reaches the provider.\n"
		"\n"
		"The library is taken from the directory of this llmcap binary or from ../lib/ next to it;\n"
		"an existing LD_PRELOAD is kept (after it). Setuid, setgid and file-capability programs are\n"
		"refused: the dynamic loader would drop the library and the program would run without limits.\n"
		"\n"
		"Programs the library cannot hold (statically linked executables, Go programs) run under a\n"
		"supervisor that sees every connect(): their connections to providers are held by its\n"
		"loopback relay (TLS terminated with the llmcap CA of this host, which the program trusts\n"
		"through SSL_CERT_FILE, REQUESTS_CA_BUNDLE, CURL_CA_BUNDLE and NODE_EXTRA_CA_CERTS, set for\n"
		"it), or refused at once when they cannot be held; every other connection passes untouched.\n"
		"\n"
		"environment: LLMCAP_STATE_DIR (state directory), LLMCAP_LOG (off|error|info|debug)\n");
}

/* absolute path of the preload library, 0 ok */
static int find_preload(char *out, size_t outlen)
{
	char exe[PATH_MAX], *slash;
	ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	const char *const rel[] = { "/" PRELOAD_NAME, "/../lib/" PRELOAD_NAME };
	size_t i;

	if (n <= 0)
		return -1;
	exe[n] = 0;
	slash = strrchr(exe, '/');
	if (!slash)
		return -1;
	*slash = 0;
	for (i = 0; i < sizeof(rel) / sizeof(rel[0]); i++) {
		char cand[PATH_MAX + 64], real[PATH_MAX];

		snprintf(cand, sizeof(cand), "%s%s", exe, rel[i]);
		if (access(cand, R_OK) == 0 && realpath(cand, real)) {
			if (strlen(real) + 1 > outlen)
				return -1;
			strcpy(out, real);
			return 0;
		}
	}
	return -1;
}

/* the file execvp would run, 0 found */
static int resolve_cmd(const char *cmd, char *out, size_t outlen)
{
	const char *path, *p;

	if (strchr(cmd, '/')) {
		if (strlen(cmd) + 1 > outlen)
			return -1;
		strcpy(out, cmd);
		return access(out, X_OK) == 0 ? 0 : -1;
	}
	path = getenv("PATH");
	if (!path || !*path)
		path = "/usr/local/bin:/usr/bin:/bin";
	for (p = path;;) {
		const char *e = strchr(p, ':');
		size_t dl = e ? (size_t)(e - p) : strlen(p);
		struct stat st;

		if (dl == 0)
			snprintf(out, outlen, "./%s", cmd);
		else
			snprintf(out, outlen, "%.*s/%s", (int)dl, p, cmd);
		if (access(out, X_OK) == 0 && stat(out, &st) == 0 && S_ISREG(st.st_mode))
			return 0;
		if (!e)
			break;
		p = e + 1;
	}
	return -1;
}

int lc_cmd_run(int argc, char **argv)
{
	char lib[PATH_MAX], file[PATH_MAX], kwhy[128];
	const char *old, *why;
	char *val;
	int i = 1, kind;

	/* options before the command (add new ones here) */
	for (; i < argc && argv[i][0] == '-'; i++) {
		if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
			run_usage(stdout);
			return 0;
		}
		if (!strcmp(argv[i], "--")) {
			i++;
			break;
		}
		fprintf(stderr, "llmcap run: unknown option %s (put the command after --)\n", argv[i]);
		return 2;
	}
	if (i >= argc) {
		run_usage(stderr);
		return 2;
	}
	if (find_preload(lib, sizeof(lib)) != 0) {
		fprintf(stderr, "llmcap run: %s not found next to the llmcap binary or in ../lib/\n",
			PRELOAD_NAME);
		return 1;
	}
	if (resolve_cmd(argv[i], file, sizeof(file)) != 0) {
		fprintf(stderr, "llmcap run: %s: command not found\n", argv[i]);
		return 127;
	}
	why = lc_secure_exec_reason_at(AT_FDCWD, file, 0);
	if (why) {
		fprintf(stderr,
			"llmcap run: refusing to run %s: it is %s, so the dynamic loader would drop the llmcap "
			"library and it would run without limits\n",
			file, why);
		return 1;
	}
	old = getenv("LD_PRELOAD");
	if (old && *old) {
		size_t n = strlen(lib) + strlen(old) + 2;
		const char *p = strstr(old, lib);
		size_t ll = strlen(lib);

		/* already there (a nested llmcap run): keep the variable as it is */
		if (p && (p == old || p[-1] == ':' || p[-1] == ' ') && (p[ll] == 0 || p[ll] == ':' || p[ll] == ' ')) {
			val = strdup(old);
		} else {
			val = malloc(n);
			if (val)
				snprintf(val, n, "%s:%s", lib, old);
		}
	} else {
		val = strdup(lib);
	}
	if (!val || setenv("LD_PRELOAD", val, 1) != 0) {
		fprintf(stderr, "llmcap run: cannot set LD_PRELOAD: %s\n", strerror(errno));
		free(val);
		return 1;
	}
	free(val);
	kind = lc_exec_kind(file, kwhy, sizeof(kwhy));
	if (kind != LC_EXEC_DYNAMIC)
		return lc_supervise_exec(file, argv + i, kwhy);
	execv(file, argv + i);
	fprintf(stderr, "llmcap run: %s: %s\n", file, strerror(errno));
	return errno == ENOENT ? 127 : 126;
}
