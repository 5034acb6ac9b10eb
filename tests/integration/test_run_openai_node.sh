#!/usr/bin/env bash
# The `openai` npm SDK (pinned, installed by .ci/deps into /var/cache/llmcap-npm; never downloaded
# here) on the machine's nodesource `node` under `llmcap run`: the relay holds it (see
# test_run_node.sh). `new OpenAI({baseURL: "https://localhost:PORT/v1"})` against the stand-in
# provider over TLS, JSON and `stream: true`: the allowed calls are charged exactly; a blocked call
# raises the SDK's RateLimitError (429, retry-after, x-should-retry: false) within 1 s, and the
# SDK does not retry it (it retries a 429 twice by default, unless x-should-retry says no): the
# provider saw only the allowed requests, and 0 bytes from a fully blocked process.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/test_preload_lib.inc"
pl_need_nodesource_node    # sets NODE, or skips the suite
export LLMCAP_NPM=/var/cache/llmcap-npm
CLIENT=$LC_ROOT/tests/supervised/openai_sdk.mjs
check "the openai npm SDK is installed in $LLMCAP_NPM (.ci/deps)" test -f "$LLMCAP_NPM/node_modules/openai/package.json"
pl_init
pl_provider tls13 $(pl_tls_args 1.3)
export SSL_CERT_FILE=$PL_CERT/ca.pem          # the user's trust: the relay verifies the provider with it
export NODE_EXTRA_CA_CERTS=$PL_CERT/ca.pem    # node trusts the stand-in directly (llmcap run adds its CA)
unset REQUESTS_CA_BUNDLE CURL_CA_BUNDLE SSL_CERT_DIR
BASE=https://localhost:$PORT_tls13/v1

for mode in json stream; do
	d="openai npm SDK, $mode"
	s=""; [ $mode = stream ] && s=stream
	pl_wait_closed "$LOG_tls13"; : >"$LOG_tls13"
	pl_policy "sdk-$mode" "localhost:$PORT_tls13"
	timeout 60 "$LLMCAP" run -- "$NODE" "$CLIENT" "$BASE" "$PL_KEY" $((PL_CAP + 2)) $s >"$T/a.out" 2>"$T/a.err"
	expect_eq "$d: the program exits 0" 0 "$?"
	pl_expect_answers "$d" "$T/a.out" "$PL_CAP" 2
	expect_eq "$d: each blocked call raises RateLimitError within 1 s" "2" \
		"$("$PY" -c 'import json,sys; print(sum(1 for l in open(sys.argv[1]) if (d := json.loads(l)).get("error") == "RateLimitError" and d["ms"] < 1000))' "$T/a.out")"
	pl_wait_closed "$LOG_tls13"
	pl_expect_charged "$d" "$LOG_tls13" "$PL_CAP"
	[ $mode = stream ] && expect_eq "$d: every allowed stream ends with the usage chunk" "$PL_CAP" \
		"$("$PY" -c 'import json,sys; print(sum(1 for l in open(sys.argv[1]) if json.loads(l)["status"] == 200 and json.loads(json.loads(l)["body"])["usage"]))' "$T/a.out")"
	pl_relay_no_bytes "$d" "$LOG_tls13" timeout 60 "$LLMCAP" run -- "$NODE" "$CLIENT" "$BASE" "$PL_KEY" 2 $s
	expect_eq "$d: nothing on stderr" "" "$(cat "$T/a.err" "$T/blocked.err")"
done
finish
