#!/usr/bin/env bash
# bench_supervised.sh BUILD_DIR: what the `llmcap run` supervisor (seccomp user notification on
# connect, for static and Go programs) adds per request.
#
# One run on loopback: the C stand-in server (build/bench/preload_bench server, plain HTTP, not a
# provider in the policy) and the static musl test client (tests/supervised/static_client.c), which
# makes every call on a fresh connection (so every call pays one connect notification), run
# alternately directly and under `llmcap run` (ROUNDS rounds of N calls, latencies pooled). A
# supervised program's provider calls are refused (not held yet), so the figure is the cost of a
# request that goes through: p50/p99 per request, direct vs supervised, the difference.
set -u
B=$(cd "${1:-build}" && pwd)
ROOT=$(cd "$(dirname "$0")/.." && pwd)
N=${N:-300}
ROUNDS=${ROUNDS:-5}
PY=/usr/bin/python3
T=$(mktemp -d /tmp/llmcap-bench.XXXXXX)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done; wait 2>/dev/null; rm -rf "$T"; }
trap cleanup EXIT
command -v musl-gcc >/dev/null || { echo "bench_supervised: musl-gcc missing (apt musl-tools)"; exit 0; }
musl-gcc -static -O2 -o "$T/static_client" "$ROOT/tests/supervised/static_client.c" || exit 1
free_port() { "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }
export LLMCAP_STATE_DIR=$T/state LLMCAP_LOG=error
"$B/llmcap" keygen --out "$T/keys" >/dev/null 2>&1
P=$(free_port)
cat >"$T/policy.json" <<JSON
{"schema": 1, "version": 1, "issued_at": "2026-01-01T00:00:00Z", "expires_at": "$(date -u -d '+30 days' +%Y-%m-%dT%H:%M:%SZ)",
 "providers": [{"name": "elsewhere", "format": "openai", "hosts": ["127.0.0.1:1"]}],
 "prices": {"gpt-4o-mini": {"input": 0.15, "cached_input": 0.075, "output": 0.60, "max_output_tokens": 16384}},
 "keys": {}}
JSON
"$B/llmcap" sign --key "$T/keys/llmcap.key" "$T/policy.json" >"$T/policy.signed" &&
	"$B/llmcap" apply --trust "$T/keys/llmcap.pub" "$T/policy.signed" >/dev/null 2>&1 || { echo "bench_supervised: apply failed"; exit 1; }
"$B/bench/preload_bench" server "$P" & pids+=($!)
sleep 0.3
: >"$T/off"; : >"$T/on"
for r in $(seq 1 "$ROUNDS"); do
	"$T/static_client" 127.0.0.1 "$P" k "$N" >>"$T/off"
	"$B/llmcap" run -- "$T/static_client" 127.0.0.1 "$P" k "$N" >>"$T/on"
done
"$PY" - "$T/off" "$T/on" <<'PYEOF'
import json, sys
def load(f):
    v = [json.loads(l) for l in open(f) if l.startswith("{")]
    bad = sum(1 for d in v if d["status"] != 200)
    return sorted(d["ms"] * 1000 for d in v), bad
def q(v, p): return v[min(len(v) - 1, int(p * len(v)))]
off, b0 = load(sys.argv[1]); on, b1 = load(sys.argv[2])
if b0 or b1 or not off or not on:
    print("bench_supervised: failed calls (direct %d, supervised %d)" % (b0, b1)); sys.exit(1)
for name, p in (("p50", 0.5), ("p99", 0.99)):
    print("supervised, fresh connection per request (%d calls each): %s direct %.0f us, supervised %.0f us, +%.0f us"
          % (len(off), name, q(off, p), q(on, p), q(on, p) - q(off, p)))
PYEOF
