/* run.c - `llmcap run -- CMD [ARGS...]`: run CMD with libllmcap_preload.so.
 *
 * The library is found next to the llmcap binary (the build directory) or in ../lib/ (an
 * installed prefix). Its absolute path goes first in LD_PRELOAD, an existing LD_PRELOAD is kept
 * after it. A setuid, setgid or file-capability target is refused (as torsocks does): the
 * dynamic loader runs those in secure-execution mode and drops a preload given by path, so the
 * program would run without limits.
 *
 * Every program runs under the connect() supervisor of supervise.c as well (when a policy is
 * installed), so that whatever it starts is seen too: the provider connections of processes the
 * preload cannot hold (static, Go, TLS linked in) are held by the supervisor's relay (relay.c),
 * everything else passes (the preload holds the rest).
 *
 * --budget USD / --max-requests N: an ephemeral cap on this one run (engine_run.c). llmcap run
 * records the run in the store, exports LLMCAP_RUN_ID to the program, stays as its parent, and
 * removes the run when the program exits; every held process of the run counts against the cap.
 */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "engine.h"
#include "secure_exec.h"
#include "supervise.h"
#include "util.h"

#define PRELOAD_NAME "libllmcap_preload.so"

int lc_cmd_run(int argc, char **argv);

static void run_usage(FILE *f)
{
	fprintf(f,
		"usage: llmcap run [--budget USD] [--max-requests N] [--] CMD [ARGS...]\n"
		"\n"
		"Runs CMD with the llmcap preload library (" PRELOAD_NAME "), so its calls to the\n"
		"providers of the installed policy are held to its limits. A call that would cross a limit is\n"
		"answered inside the process with a 429 and never reaches the provider.\n"
		"\n"
		"The library is taken from the directory of this llmcap binary or from ../lib/ next to it;\n"
		"an existing LD_PRELOAD is kept (after it). Setuid, setgid and file-capability programs are\n"
		"refused: the dynamic loader would drop the library and the program would run without limits.\n"
		"\n"
		"CMD and every process it starts run under a supervisor that sees every connect(). The\n"
		"provider connections of processes the library cannot hold (statically linked executables,\n"
		"Go programs, programs with their TLS linked in such as the nodesource node) are held by its\n"
		"loopback relay (TLS terminated with the llmcap CA of this host, which the program trusts\n"
		"through SSL_CERT_FILE, REQUESTS_CA_BUNDLE, CURL_CA_BUNDLE and NODE_EXTRA_CA_CERTS, set for\n"
		"it), or refused at once when they cannot be held; every other connection passes untouched.\n"
		"\n"
		"--budget USD, --max-requests N: an ephemeral cap on this one run of CMD and every process it\n"
		"starts, on top of the policy's limits (no key or policy change). A call that would take the\n"
		"run past its budget (worst case, as every limit) or its request count gets a 429 naming the\n"
		"run. `llmcap status` shows the run while it runs. Needs an installed policy (it names the\n"
		"providers). A supervised program's calls are decided by the relay, which carries the run:\n"
		"they count against it too.\n"
		"\n"
		"environment: LLMCAP_STATE_DIR (state directory), LLMCAP_LOG (off|error|info|debug),\n"
		"LLMCAP_RELAY_TIMEOUT (seconds the relay waits for a provider, default 600),\n"
		"LLMCAP_RESOLVE_INTERVAL (seconds between resolutions of the provider hosts, default 60),\n"
		"LLMCAP_RELAY_ALL=1 (the relay holds every process's provider connections, for a program\n"
		"that speaks a TLS of its own beside libssl, which the library refuses);\n"
		"the program gets LLMCAP_RUN_ID under --budget/--max-requests\n");
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

static pid_t run_child;

static void forward_signal(int sig)
{
	if (run_child > 0)
		kill(run_child, sig);
}

/* the option's value: a USD amount (micro-USD) or a count; -1 malformed */
static int64_t run_amount(const char *opt, const char *v, bool usd)
{
	char *end;
	int64_t out = -1;

	errno = 0;
	if (usd) {
		double d = v ? strtod(v, &end) : NAN;

		if (v && *v && !*end && !errno && isfinite(d) && lc_usd_to_micro(d, &out) == 0)
			return out;
	} else {
		long long n = v ? strtoll(v, &end, 10) : -1;

		if (v && *v && !*end && !errno && n >= 0)
			return n;
	}
	fprintf(stderr, "llmcap run: %s needs %s\n", opt, usd ? "an amount in USD (e.g. 0.50)" : "a count (e.g. 100)");
	return -1;
}

/* Run the program as a child (cmd: what it does after the fork) under a run record; returns the
 * exit status for llmcap (the child's, or 128 + its signal). */
static int run_capped(int64_t budget, int64_t max_requests, int (*cmd)(void *), void *arg)
{
	char id[33];
	int rc = lc_run_begin(budget, max_requests, id), st = 0;
	struct sigaction sa = {.sa_handler = forward_signal}, ign = {.sa_handler = SIG_IGN};

	if (rc == LC_E_NOPOLICY) {
		fprintf(stderr, "llmcap run: --budget/--max-requests need an installed policy (it names the providers "
				"to hold); run `llmcap apply` or the agent first\n");
		return 1;
	}
	if (rc) {
		fprintf(stderr, "llmcap run: cannot record the run: %s\n", lc_strerror(rc));
		return 1;
	}
	if (setenv("LLMCAP_RUN_ID", id, 1) != 0) {
		fprintf(stderr, "llmcap run: cannot set LLMCAP_RUN_ID: %s\n", strerror(errno));
		lc_run_end(id);
		return 1;
	}
	/* the terminal's ^C and ^\ reach the program (same process group); a kill of llmcap run reaches it too */
	sigaction(SIGINT, &ign, NULL);
	sigaction(SIGQUIT, &ign, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);
	run_child = fork();
	if (run_child < 0) {
		fprintf(stderr, "llmcap run: fork: %s\n", strerror(errno));
		lc_run_end(id);
		return 1;
	}
	if (run_child == 0) {
		signal(SIGINT, SIG_DFL);
		signal(SIGQUIT, SIG_DFL);
		signal(SIGTERM, SIG_DFL);
		signal(SIGHUP, SIG_DFL);
		_exit(cmd(arg));
	}
	while (waitpid(run_child, &st, 0) < 0 && errno == EINTR)
		;
	if ((rc = lc_run_end(id)))
		fprintf(stderr, "llmcap run: cannot remove run %s: %s (llmcap status ignores it now its owner is gone)\n", id,
			lc_strerror(rc));
	if (WIFSIGNALED(st))
		return 128 + WTERMSIG(st);
	return WIFEXITED(st) ? WEXITSTATUS(st) : 1;
}

struct exec_args {
	const char *file;
	char **argv;
	int kind;
	const char *kwhy;
};

static int exec_program(void *p)
{
	struct exec_args *a = p;

	return lc_supervise_exec(a->file, a->argv, a->kind, a->kwhy);
}

int lc_cmd_run(int argc, char **argv)
{
	int64_t budget = -1, max_requests = -1;
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
		if (!strcmp(argv[i], "--budget") || !strcmp(argv[i], "--max-requests")) {
			bool usd = !strcmp(argv[i], "--budget");
			int64_t v = run_amount(argv[i], i + 1 < argc ? argv[i + 1] : NULL, usd);

			if (v < 0)
				return 2;
			*(usd ? &budget : &max_requests) = v;
			i++;
			continue;
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
	{
		struct exec_args a = {file, argv + i, kind, kwhy};

		if (budget >= 0 || max_requests >= 0)
			return run_capped(budget, max_requests, exec_program, &a);
		return exec_program(&a);
	}
}
