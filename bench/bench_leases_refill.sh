#!/usr/bin/env bash
# bench_leases_refill: how long a host waits for a slice, end to end (real llmcap-server over
# loopback HTTP, real agent, the SDK client): a shared limit's first request on the host is refused
# and asks; the time until a request goes through. Figures, not tests.
set -u
B=$(cd "${1:-build}" && pwd)
LC_ROOT=$(cd "$(dirname "$0")/.." && pwd)
T=$(mktemp -d /tmp/llmcap-bench-refill.XXXXXX)
PY=/usr/bin/python3
pids=()
trap 'for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done; wait 2>/dev/null; rm -rf "$T"' EXIT
port() { "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }
wait_port() { for _ in $(seq 1 200); do (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0; sleep 0.05; done; return 1; }

"$B/llmcap" keygen --out "$T/keys" >/dev/null
TOKEN=bench-admin-token-0123456789abcdef
echo "$TOKEN" >"$T/admin.token"
PP=$(port); SP=$(port)
"$PY" "$LC_ROOT/tests/provider/provider.py" --port "$PP" >/dev/null 2>&1 & pids+=($!)
"$B/llmcap-server" --listen "127.0.0.1:$SP" --data "$T/srv" --signing-key "$T/keys/llmcap.key" \
	--admin-token-file "$T/admin.token" >/dev/null 2>&1 & pids+=($!)
wait_port "$PP" && wait_port "$SP" || { echo "bench_leases_refill: could not start"; exit 1; }
S=http://127.0.0.1:$SP
api() { curl -s -o /dev/null -X "$1" -H "Authorization: Bearer $TOKEN" -H 'content-type: application/json' \
	--data-binary "$3" "$S$2"; }
api PUT /v1/admin/providers '{"providers":[{"name":"local","format":"openai","hosts":["127.0.0.1:'"$PP"'"]}]}'
api PUT /v1/admin/prices '{"prices":{"gpt-4o-mini":{"input":0,"output":1,"max_output_tokens":64}}}'
api PUT /v1/admin/settings '{"leases":true}'
export LLMCAP_STATE_DIR=$T/host LLMCAP_LOG=error
code=$(curl -s -X POST -H "Authorization: Bearer $TOKEN" "$S/v1/admin/hosts/enroll" | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["code"])')
"$B/llmcap" agent enroll --server "$S" --code "$code" --trust "$T/keys/llmcap.pub" >/dev/null || { echo "bench_leases_refill: enroll failed"; exit 1; }
"$B/llmcap" agent --server "$S" --trust "$T/keys/llmcap.pub" --interval 5 2>/dev/null & pids+=($!)
times=()
for i in 1 2 3 4 5 6; do
	fp=$(printf '%s' "sk-refill-$i" | "$B/llmcap" key fingerprint)
	api POST /v1/admin/keys '{"id":"r'"$i"'","sha256":"'"$fp"'","limits":[{"metric":"requests","window":"lifetime","threshold":1000}]}'
	for _ in $(seq 1 100); do "$B/llmcap" status --json 2>/dev/null | grep -q "key:r$i:" && break; sleep 0.05; done
	t0=$(date +%s%N)
	for _ in $(seq 1 200); do
		s=$("$B/examples/chat" --url "http://127.0.0.1:$PP/v1/chat/completions" --key "sk-refill-$i" --max-tokens 5 \
			--count 1 2>/dev/null)
		[ "$s" = 200 ] && break
	done
	times+=($((($(date +%s%N) - t0) / 1000000)))
done
sorted=$(printf '%s\n' "${times[@]}" | sort -n | tr '\n' ' ')
echo "refill: a shared limit's first request on a host -> first request through: ${sorted}ms (6 limits; p50 $(printf '%s\n' "${times[@]}" | sort -n | sed -n 3p) ms; the agent's tick is 200 ms, the client's retry is a new process)"
