#!/usr/bin/env bash
# 8 forked children under the shim are held to the same cap as one process: the reservation is
# taken in one LMDB write transaction shared by every process, so however the 8 race, exactly
# CAP calls go out. Python (os.fork after the parent already used the store: the children reopen
# it), the libcurl multi program (fork), the curl CLI and the plain-HTTP client (8 processes
# started from one shell under the shim).
. "$(dirname "$0")/lib.sh"
PL_CAP=10
. "$(dirname "$0")/test_preload_lib.inc"
pl_init
pl_provider tls13 $(pl_tls_args 1.3)
pl_provider tls12 $(pl_tls_args 1.2)
pl_provider plain
JSON_BODY='{"model":"gpt-4o-mini","max_tokens":20,"messages":[{"role":"user","content":"hi"}]}'

# fork_case DESC LOG HOST N_ATTEMPTS CMD...
fork_case() {
	local desc=$1 log=$2 host=$3 n=$4; shift 4
	pl_wait_closed "$log"; : >"$log"
	local name; name=fork-$(echo "$desc" | tr -c 'a-z0-9' '-')
	pl_policy "$name" "$host"
	"$@" >"$T/$name.out" 2>"$T/$name.err"
	cp "$T/$name.out" "$T/fork.out"
	PL_NO_TIMING=1 pl_expect_answers "$desc" "$T/$name.out" "$PL_CAP" $((n - PL_CAP))
	pl_expect_charged "$desc" "$log" "$PL_CAP"
}

U13=https://localhost:$PORT_tls13/v1/chat/completions
U12=https://localhost:$PORT_tls12/v1/chat/completions
UP=http://127.0.0.1:$PORT_plain/v1/chat/completions

fork_case "requests, parent + 8 forked children" "$LOG_tls13" "localhost:$PORT_tls13" 26 \
	pl_py requests "$U13" 3 --fork 8
first=$(head -1 "$T/fork.out" | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["status"])')
last=$(tail -1 "$T/fork.out" | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["status"])')
expect_eq "the parent's call before fork() was allowed" 200 "$first"
expect_eq "the parent's call after its children was blocked (cap shared)" 429 "$last"

fork_case "aiohttp TLS 1.2 streaming, parent + 8 forked children" "$LOG_tls12" "localhost:$PORT_tls12" 26 \
	pl_py aiohttp "$U12" 3 --fork 8 --stream
fork_case "httpx plain HTTP, parent + 8 forked children" "$LOG_plain" "127.0.0.1:$PORT_plain" 26 \
	pl_py httpx "$UP" 3 --fork 8

fork_case "libcurl multi, 8 forked children" "$LOG_tls13" "localhost:$PORT_tls13" 24 \
	env LD_PRELOAD="$PRELOAD" timeout 30 "$B/tests/bin/lc_multi" "$U13" "$PL_KEY" 3 --cacert "$PL_CERT/ca.pem" --fork 8

curl8() {
	LD_PRELOAD=$PRELOAD bash -c '
		for i in 1 2 3 4 5 6 7 8; do
			curl -sS --cacert "$1" -H "Authorization: Bearer $2" -H "Content-Type: application/json" -d "$3" \
			  -o /dev/null -w "{\"status\": %{http_code}, \"ms\": 0, \"retry_after\": \"%header{retry-after}\", \"x_should_retry\": \"%header{x-should-retry}\", \"body\": \"\"}\n" \
			  "$4" -o /dev/null "$4" -o /dev/null "$4" &
		done; wait' _ "$PL_CERT/ca.pem" "$PL_KEY" "$JSON_BODY" "$1"
}
fork_case "curl CLI, 8 processes from one shell" "$LOG_tls12" "localhost:$PORT_tls12" 24 curl8 "$U12"

plain8() {
	LD_PRELOAD=$PRELOAD bash -c 'for i in 1 2 3 4 5 6 7 8; do "$1" 127.0.0.1 "$2" "$3" 3 & done; wait' \
		_ "$B/tests/bin/lc_plain" "$PORT_plain" "$PL_KEY"
}
fork_case "lc_plain (plain HTTP), 8 processes from one shell" "$LOG_plain" "127.0.0.1:$PORT_plain" 24 plain8
finish
