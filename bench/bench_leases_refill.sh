#!/usr/bin/env bash
# bench_leases_refill: how long a host waits for a slice, end to end (real llmcap-server over
# loopback HTTP, real agent, the SDK client): a request that holds its slice; a new key's first
# request just after the policy naming it is installed (the agent asks at once); a new customer's
# first request (no slice: it waits for the agent's call). Figures, not tests.
set -u
. "$(dirname "$0")/lib.sh"

"$B/llmcap" keygen --out "$T/keys" >/dev/null
TOKEN=bench-admin-token-0123456789abcdef
echo "$TOKEN" >"$T/admin.token"
PP=$(free_port); SP=$(free_port)
"$PY" "$LC_ROOT/tests/provider/provider.py" --port "$PP" >/dev/null 2>&1 & pids+=($!)
"$B/llmcap-server" --listen "127.0.0.1:$SP" --data "$T/srv" --signing-key "$T/keys/llmcap.key" \
	--admin-token-file "$T/admin.token" >/dev/null 2>&1 & pids+=($!)
wait_port "$PP" && wait_port "$SP" || { echo "bench_leases_refill: could not start"; exit 1; }
S=http://127.0.0.1:$SP
api() { curl -s -o /dev/null -X "$1" -H "Authorization: Bearer $TOKEN" -H 'content-type: application/json' \
	--data-binary "$3" "$S$2"; }
api PUT /v1/admin/providers '{"providers":[{"name":"local","format":"openai","hosts":["127.0.0.1:'"$PP"'"]}]}'
api PUT /v1/admin/prices '{"prices":{"gpt-4o-mini":{"input":0,"output":1,"max_output_tokens":64}}}'
export LLMCAP_STATE_DIR=$T/host LLMCAP_LOG=error
code=$(curl -s -X POST -H "Authorization: Bearer $TOKEN" "$S/v1/admin/hosts/enroll" | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["code"])')
"$B/llmcap" agent enroll --server "$S" --code "$code" --trust "$T/keys/llmcap.pub" >/dev/null || { echo "bench_leases_refill: enroll failed"; exit 1; }
"$B/llmcap" agent --server "$S" --trust "$T/keys/llmcap.pub" --interval 5 2>/dev/null & pids+=($!)
ms() { echo $((($(date +%s%N) - $1) / 1000000)); }
p50() { printf '%s\n' "$@" | sort -n | sed -n "$((($# + 1) / 2))p"; }
one() { # KEY [CUSTOMER] -> the status of one request (a new process: the SDK's example client)
	"$B/examples/chat" --url "http://127.0.0.1:$PP/v1/chat/completions" --key "$1" --max-tokens 5 --count 1 \
		${2:+--customer "$2"} 2>/dev/null
}
api PUT /v1/admin/customers '{"monthly_budget_usd":1000000}'
first=(); fails=0
for i in 1 2 3 4 5 6; do
	fp=$(printf '%s' "sk-refill-$i" | "$B/llmcap" key fingerprint)
	api POST /v1/admin/keys '{"id":"r'"$i"'","sha256":"'"$fp"'","limits":[{"metric":"requests","window":"lifetime","threshold":1000}]}'
	for _ in $(seq 1 100); do "$B/llmcap" status --json 2>/dev/null | grep -q "key:r$i:" && break; sleep 0.05; done
	t0=$(date +%s%N)
	[ "$(one "sk-refill-$i")" = 200 ] || fails=$((fails + 1))
	first+=($(ms "$t0"))
done
held=(); waited=()
for i in 1 2 3 4 5 6; do
	t0=$(date +%s%N); one sk-refill-1 >/dev/null; held+=($(ms "$t0"))
	t0=$(date +%s%N)
	[ "$(one sk-refill-1 "cust-$i")" = 200 ] || fails=$((fails + 1))
	waited+=($(ms "$t0"))
done
echo "refill: a request holding its slice: p50 $(p50 "${held[@]}") ms (${held[*]}; a new client process each time)"
echo "refill: a new key's first request, just after its policy is installed (the agent asks for its slice at once): p50 $(p50 "${first[@]}") ms (${first[*]})"
echo "refill: a new customer's first request (no slice: it waits for the agent's call, no 429): p50 $(p50 "${waited[@]}") ms (${waited[*]}); the wait itself ~ $(($(p50 "${waited[@]}") - $(p50 "${held[@]}"))) ms; refused: $fails of 12"
