/* llmcap - the command-line tool: keygen, sign, apply, status, run, key fingerprint, agent. */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"
#include "engine.h"
#include "llmcap.h"
#include "sign.h"
#include "util.h"

/* provided by cli/run.c and cli/agent.c */
int lc_cmd_run(int argc, char **argv) __attribute__((weak));
int lc_cmd_agent(int argc, char **argv) __attribute__((weak));
int lc_cmd_admin(int argc, char **argv);
int lc_cmd_prices(int argc, char **argv);  /* cli/prices.c */
/* cli/report.c */
int lc_cmd_status(int argc, char **argv);
int lc_cmd_usage(int argc, char **argv);

static const char *prog = "llmcap";

static void usage(FILE *f)
{
	fprintf(f,
		"usage: llmcap COMMAND [ARGS]\n"
		"\n"
		"  keygen --out DIR                       make DIR/llmcap.key (secret, 0600) and DIR/llmcap.pub\n"
		"  sign --key KEYFILE POLICY.json         print the signed policy (DSSE envelope) on stdout\n"
		"  apply --trust PUBFILE POLICY.signed    verify and install into the state directory\n"
		"  status [--json]                        every limit: usage / threshold, window, reset time\n"
		"  usage --by key|team|model|customer|provider [--window W] [--json]   spend per group\n"
		"  run -- CMD [ARGS...]                   run CMD with the preload library\n"
		"  key fingerprint                        read an API key on stdin, print its sha256\n"
		"  prices [MODEL] [--json]                the effective prices (policy prices over the built-in book)\n"
		"  reset-policy --yes                     forget the installed policy and its version ratchet\n"
		"  agent enroll --server URL --code CODE [--trust PUBFILE]   this host's own credential\n"
		"  agent [--server URL ...] [--trust PUBFILE] [--once] [--interval S]   sync with llmcap-server\n"
		"  admin RESOURCE [ACTION] [ARGS] [--json]   the llmcap-server admin API (keys, teams, usage, ...)\n"
		"  version                                print the version\n"
		"\n"
		"environment: LLMCAP_STATE_DIR (state directory), LLMCAP_LOG (off|error|info|debug)\n"
		"Each command takes --help.\n");
}

static int cmd_keygen(int argc, char **argv)
{
	const char *out = NULL;
	char err[512];

	if (lc_cli_help(argc, argv,
		"usage: llmcap keygen --out DIR\n"
		"Makes a new Ed25519 policy signing key: DIR/llmcap.key (secret, mode 0600) and\n"
		"DIR/llmcap.pub (give this one to hosts: llmcap apply --trust DIR/llmcap.pub).\n"
		"Refuses to overwrite an existing key.\n"))
		return 0;
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--out") && i + 1 < argc)
			out = argv[++i];
		else
			return lc_cli_fail(prog, "keygen: unexpected argument '%s' (see llmcap keygen --help)", argv[i]);
	}
	if (!out)
		return lc_cli_fail(prog, "keygen: --out DIR is required");
	if (lc_keygen(out, err, sizeof(err)))
		return lc_cli_fail(prog, "%s", err);  /* lc_keygen's errors already say "keygen: " */
	fprintf(stderr, "wrote %s/llmcap.key and %s/llmcap.pub\n", out, out);
	return 0;
}

static int cmd_sign(int argc, char **argv)
{
	const char *key = NULL, *file = NULL;
	struct lc_signkey k;
	struct lc_buf b;
	struct lc_policy *p = NULL;
	char err[512], *env = NULL;
	size_t envlen;

	if (lc_cli_help(argc, argv,
		"usage: llmcap sign --key KEYFILE POLICY.json > POLICY.signed\n"
		"Validates POLICY.json (errors name the field) and wraps its exact bytes in a signed\n"
		"DSSE envelope.\n"))
		return 0;
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--key") && i + 1 < argc)
			key = argv[++i];
		else if (argv[i][0] != '-' && !file)
			file = argv[i];
		else
			return lc_cli_fail(prog, "sign: unexpected argument '%s' (see llmcap sign --help)", argv[i]);
	}
	if (!key || !file)
		return lc_cli_fail(prog, "sign: --key KEYFILE and POLICY.json are required");
	if (lc_read_file(file, LC_ENVELOPE_MAX / 2, &b, err, sizeof(err)))
		return lc_cli_fail(prog, "sign: %s", err);
	if (lc_policy_parse(b.data, b.len, &p, err, sizeof(err))) {
		lc_buf_free(&b);
		return lc_cli_fail(prog, "sign: %s: %s", file, err);
	}
	lc_policy_free(p);
	if (lc_signkey_load(key, &k, err, sizeof(err))) {
		lc_buf_free(&b);
		return lc_cli_fail(prog, "sign: %s", err);
	}
	if (lc_dsse_sign(&k, b.data, b.len, &env, &envlen, err, sizeof(err))) {
		lc_signkey_wipe(&k);
		lc_buf_free(&b);
		return lc_cli_fail(prog, "sign: %s", err);
	}
	lc_signkey_wipe(&k);
	lc_buf_free(&b);
	fwrite(env, 1, envlen, stdout);
	fputc('\n', stdout);
	free(env);
	return fflush(stdout) ? lc_cli_fail(prog, "sign: stdout: %s", strerror(errno)) : 0;
}

/* A policy document (it has "schema") given where a signed envelope was expected. */
static bool unsigned_policy(const char *data, size_t len)
{
	json_t *j = json_loadb(data, len, 0, NULL);
	bool yes = json_is_object(j) && json_object_get(j, "schema") && !json_object_get(j, "payloadType");

	json_decref(j);
	return yes;
}

static int cmd_apply(int argc, char **argv)
{
	struct lc_trust t = {0};
	const char *file = NULL;
	struct lc_buf b;
	struct stat st;
	char err[1024] = "";
	int64_t version = 0;
	int rc;

	if (lc_cli_help(argc, argv,
		"usage: llmcap apply --trust PUBFILE [--trust PUBFILE2] POLICY.signed\n"
		"Verifies and installs a signed policy into the state directory ($LLMCAP_STATE_DIR).\n"
		"Refused (exit 1, the installed policy stays in force): a bad or untrusted signature, a\n"
		"malformed, truncated or oversized file, duplicate or unknown fields, a version at or\n"
		"below the installed one, an expired policy. Several --trust keys (or a PUBFILE with\n"
		"several keys) are accepted during a key rotation.\n"))
		return 0;
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--trust") && i + 1 < argc) {
			if (lc_trust_load(argv[++i], &t, err, sizeof(err)))
				return lc_cli_fail(prog, "apply: %s", err);
		} else if (argv[i][0] != '-' && !file)
			file = argv[i];
		else
			return lc_cli_fail(prog, "apply: unexpected argument '%s' (see llmcap apply --help)", argv[i]);
	}
	if (!t.n || !file)
		return lc_cli_fail(prog, "apply: --trust PUBFILE and POLICY.signed are required");
	if (stat(file, &st) == 0 && S_ISREG(st.st_mode) && st.st_size > LC_ENVELOPE_MAX) {
		/* the size cap comes first: refuse without reading, as lc_apply_envelope would */
		lc_errf(err, sizeof(err), "envelope: file is %lld bytes, over the %d-byte cap", (long long)st.st_size,
			LC_ENVELOPE_MAX);
		lc_event_queue("policy_rejected", json_pack("{s:s}", "reason", err), NULL);
		return lc_cli_fail(prog, "apply: refused: %s", err);
	}
	if (lc_read_file(file, LC_ENVELOPE_MAX + 1, &b, err, sizeof(err)))
		return lc_cli_fail(prog, "apply: %s", err);
	rc = lc_apply_envelope(&t, b.data, b.len, &version, err, sizeof(err));
	if (rc && unsigned_policy(b.data, b.len)) {
		lc_buf_free(&b);
		return lc_cli_fail(prog, "apply: refused: %s is a policy, not a signed one; sign it first: "
			   "llmcap sign --key KEYFILE %s > %s.signed", file, file, file);
	}
	lc_buf_free(&b);
	if (rc)
		return lc_cli_fail(prog, "apply: refused: %s", err);
	if (err[0] && version)
		fprintf(stderr, "%s\n", err);
	else
		fprintf(stderr, "policy version %" PRId64 " installed\n", version);
	return 0;
}

static int cmd_reset_policy(int argc, char **argv)
{
	char dir[4096] = "?";
	int64_t was = 0;
	int rc;

	if (lc_cli_help(argc, argv,
		"usage: llmcap reset-policy --yes\n"
		"Forgets the installed policy and its version ratchet, so that the next `llmcap apply`\n"
		"or `llmcap agent` may install any version (e.g. a host that had a local policy joins\n"
		"a server whose policy versions start lower). Until then provider calls are not held.\n"
		"Counters, reservations and the host identity stay.\n"))
		return 0;
	if (argc != 2 || strcmp(argv[1], "--yes"))
		return lc_cli_fail(prog, "reset-policy: this stops enforcement until the next apply; confirm with --yes");
	lc_state_dir(dir, sizeof(dir));
	rc = lc_policy_reset(&was);
	if (rc)
		return lc_cli_fail(prog, "reset-policy: %s: %s", dir, lc_strerror(rc));
	if (was)
		fprintf(stderr, "policy version %" PRId64 " forgotten in %s; apply or run the agent now\n", was, dir);
	else
		fprintf(stderr, "no policy was installed in %s; the version ratchet is cleared\n", dir);
	return 0;
}

static int cmd_key(int argc, char **argv)
{
	char line[8192], hex[65];
	unsigned char fp[32];
	size_t n;

	if (lc_cli_help(argc, argv,
		"usage: llmcap key fingerprint < KEYFILE\n"
		"Reads one API key on stdin (a trailing newline is ignored) and prints the hex SHA-256\n"
		"the policy's keys.NAME.sha256 field wants. The raw key is never stored.\n"))
		return 0;
	if (argc < 2)
		return lc_cli_fail(prog, "key: a subcommand is required: llmcap key fingerprint < KEYFILE");
	if (strcmp(argv[1], "fingerprint") || argc > 2)
		return lc_cli_fail(prog, "key: unexpected argument '%s' (usage: llmcap key fingerprint < KEYFILE)",
			   argv[strcmp(argv[1], "fingerprint") ? 1 : 2]);
	n = fread(line, 1, sizeof(line) - 1, stdin);
	while (n && (line[n - 1] == '\n' || line[n - 1] == '\r'))
		n--;
	if (!n)
		return lc_cli_fail(prog, "key fingerprint: no key on stdin");
	lc_sha256(line, n, fp);
	lc_hex(fp, 32, hex);
	printf("%s\n", hex);
	return 0;
}

int main(int argc, char **argv)
{
	const char *cmd;

	if (argc < 2) {
		usage(stderr);
		return 2;
	}
	cmd = argv[1];
	argc--;
	argv++;
	if (!strcmp(cmd, "--help") || !strcmp(cmd, "-h") || !strcmp(cmd, "help")) {
		usage(stdout);
		return 0;
	}
	if (!strcmp(cmd, "version") || !strcmp(cmd, "--version")) {
		printf("llmcap %s\n", LLMCAP_VERSION_STRING);
		return 0;
	}
	if (!strcmp(cmd, "keygen"))
		return cmd_keygen(argc, argv);
	if (!strcmp(cmd, "sign"))
		return cmd_sign(argc, argv);
	if (!strcmp(cmd, "apply"))
		return cmd_apply(argc, argv);
	if (!strcmp(cmd, "status"))
		return lc_cmd_status(argc, argv);
	if (!strcmp(cmd, "usage"))
		return lc_cmd_usage(argc, argv);
	if (!strcmp(cmd, "key"))
		return cmd_key(argc, argv);
	if (!strcmp(cmd, "prices"))
		return lc_cmd_prices(argc, argv);
	if (!strcmp(cmd, "reset-policy"))
		return cmd_reset_policy(argc, argv);
	if (!strcmp(cmd, "run")) {
		if (!lc_cmd_run && lc_cli_help(argc, argv,
			"usage: llmcap run -- CMD [ARGS...]\n"
			"Runs CMD with the preload library, so its LLM API calls are held to the policy.\n"
			"(This build has no preload support.)\n"))
			return 0;
		if (!lc_cmd_run)
			return lc_cli_fail(prog, "run: this build has no preload support");
		return lc_cmd_run(argc, argv);
	}
	if (!strcmp(cmd, "admin"))
		return lc_cmd_admin(argc, argv);
	if (!strcmp(cmd, "agent")) {
		if (!lc_cmd_agent && lc_cli_help(argc, argv,
			"usage: llmcap agent --server URL --trust PUBFILE [--once] [--interval S]\n"
			"Syncs with llmcap-server. (This build has no agent support.)\n"))
			return 0;
		if (!lc_cmd_agent)
			return lc_cli_fail(prog, "agent: this build has no agent support");
		return lc_cmd_agent(argc, argv);
	}
	usage(stderr);
	return lc_cli_fail(prog, "unknown command '%s'", cmd);
}
