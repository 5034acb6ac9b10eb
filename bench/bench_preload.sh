#!/usr/bin/env bash
# bench_preload.sh BUILD_DIR: the latency libllmcap_preload.so adds per allowed request.
#
# One run on loopback: a fast C stand-in provider (build/bench/preload_bench server) and a libcurl
# client that makes N POSTs with a 1 KiB body on one keep-alive connection, run alternately
# without and with the shim (ROUNDS rounds each, latencies pooled). Reports p50 and p99 per
# request, the difference (what the shim adds: the buffered request, one admit and one settle
# transaction in LMDB, the response read for usage) and the ratio, for TLS non-streaming, TLS
# streaming (SSE) and plain HTTP. Then what a program that never talks to a provider pays: an
# exec of /bin/true (the hook library alone: the engine library is only loaded by a process that
# connects), and a write(2) to /dev/null.
set -u
. "$(dirname "$0")/lib.sh"
ROOT=$LC_ROOT
N=${N:-400}
ROUNDS=${ROUNDS:-5}
BIN=$B/bench/preload_bench
PRELOAD=$B/libllmcap_preload.so
ENGINE=$B/libllmcap_preload_engine.so
[ -x "$BIN" ] && [ -f "$PRELOAD" ] && [ -f "$ENGINE" ] || { echo "bench_preload: build $BIN, $PRELOAD and $ENGINE first (make bench)"; exit 1; }

export LLMCAP_STATE_DIR=$T/state LLMCAP_LOG=error
unset LD_PRELOAD
bash "$ROOT/tests/provider/mkcert.sh" "$T/cert" >/dev/null 2>&1 || { echo "bench_preload: mkcert failed"; exit 1; }
"$B/llmcap" keygen --out "$T/keys" >/dev/null 2>&1
KEY=sk-bench-key
FP=$(printf %s "$KEY" | "$B/llmcap" key fingerprint)
PT=$(free_port); PP=$(free_port)
cat >"$T/policy.json" <<JSON
{"schema": 1, "version": 1, "issued_at": "2026-01-01T00:00:00Z", "expires_at": "$(date -u -d '+30 days' +%Y-%m-%dT%H:%M:%SZ)",
 "providers": [{"name": "bench", "format": "openai", "hosts": ["localhost:$PT", "127.0.0.1:$PP"]}],
 "prices": {"gpt-4o-mini": {"input": 0.15, "cached_input": 0.075, "output": 0.60, "max_output_tokens": 16384}},
 "keys": {"bench": {"sha256": "$FP", "limits": [
   {"metric": "requests", "window": "lifetime", "threshold": 1000000000},
   {"metric": "cost", "window": "monthly", "threshold": 1000000}]}}}
JSON
"$B/llmcap" sign --key "$T/keys/llmcap.key" "$T/policy.json" >"$T/policy.signed" &&
	"$B/llmcap" apply --trust "$T/keys/llmcap.pub" "$T/policy.signed" >/dev/null || { echo "bench_preload: apply failed"; exit 1; }
"$BIN" server "$PT" "$T/cert/server.pem" "$T/cert/server.key" & pids+=($!)
"$BIN" server "$PP" & pids+=($!)
sleep 0.3

run_mode() { # name url args...
	local name=$1 url=$2 r; shift 2
	: >"$T/$name.off"; : >"$T/$name.on"
	for r in $(seq 1 "$ROUNDS"); do
		"$BIN" client "$url" "$KEY" "$N" "$@" >>"$T/$name.off" || return 1
		LD_PRELOAD=$PRELOAD "$BIN" client "$url" "$KEY" "$N" "$@" >>"$T/$name.on" || return 1
	done
}
stats() { # name label
	"$PY" - "$T/$1.off" "$T/$1.on" "$2" <<'PYEOF'
import sys
def q(v, p):
    v = sorted(v); return v[min(len(v) - 1, int(round(p / 100.0 * (len(v) - 1))))]
off = [float(x) for x in open(sys.argv[1])]; on = [float(x) for x in open(sys.argv[2])]
p50o, p50n, p99o, p99n = q(off, 50), q(on, 50), q(off, 99), q(on, 99)
print("%-28s %6d  %9.1f %9.1f %+9.1f %6.3f   %9.1f %9.1f %+9.1f %6.3f" % (sys.argv[3], len(on),
      p50o, p50n, p50n - p50o, p50n / p50o, p99o, p99n, p99n - p99o, p99n / p99o))
PYEOF
}

echo "llmcap preload latency bench: $ROUNDS rounds x $N requests per configuration, 1 KiB request body,"
echo "keep-alive, loopback; times in microseconds per request (without shim / with shim / added / ratio)"
printf '%-28s %6s  %9s %9s %9s %6s   %9s %9s %9s %6s\n' mode n p50-off p50-on p50-add ratio p99-off p99-on p99-add ratio
run_mode tls "https://localhost:$PT/v1/chat/completions" --cacert "$T/cert/ca.pem" && stats tls "TLS 1.3, JSON" || echo "TLS JSON: failed"
run_mode tlss "https://localhost:$PT/v1/chat/completions" --cacert "$T/cert/ca.pem" --stream && stats tlss "TLS 1.3, SSE stream" || echo "TLS stream: failed"
run_mode plain "http://127.0.0.1:$PP/v1/chat/completions" && stats plain "plain HTTP, JSON" || echo "plain: failed"
"$BIN" engine localhost "$PT" "$KEY" $((ROUNDS * N)) >"$T/engine.lat" &&
	"$PY" - "$T/engine.lat" <<'PYEOF'
import sys
v = sorted(float(x) for x in open(sys.argv[1]))
q = lambda p: v[min(len(v) - 1, int(round(p / 100.0 * (len(v) - 1))))]
print("of which the engine (request parse + lc_admit_http + response parse + lc_settle, in process): "
      "p50 %.1f us, p99 %.1f us" % (q(50), q(99)))
PYEOF
used=$("$B/llmcap" status --json | "$PY" -c 'import json,sys; print([l["used"] for l in json.load(sys.stdin)["limits"] if l["metric"]=="requests"][0])')
echo "requests charged: $used (expected $((4 * ROUNDS * N + 3 * ROUNDS * 50 + 50)): shim runs incl. warm-up, and the engine run)"

# programs that never talk to a provider
exec_cost() {
	# interleaved runs (without, with, with, without, ...), medians: this machine is noisy. The
	# floor is what any LD_PRELOAD costs (the loader opens and maps one more file): an empty library.
	printf 'void lc_bench_empty(void) {}\n' >"$T/empty.c"
	cc -shared -fPIC -o "$T/empty.so" "$T/empty.c" 2>/dev/null || : >"$T/empty.so"
	"$PY" - "$PRELOAD" "$T/empty.so" <<'PYEOF'
import os, statistics, subprocess, sys, time
def one(env):
    t = time.perf_counter(); subprocess.run(["/bin/true"], env=env); return (time.perf_counter() - t) * 1e6
base = dict(os.environ)
def cost(lib, n=1000):
    pre = dict(base, LD_PRELOAD=lib); a = []; b = []
    for _ in range(30): one(base); one(pre)
    for i in range(n):
        if i & 1: b.append(one(pre)); a.append(one(base))
        else: a.append(one(base)); b.append(one(pre))
    return statistics.median(a), statistics.median(b)
a, b = cost(sys.argv[1])
print("exec /bin/true: %.0f us without, %.0f us with the shim (%+.0f us per exec)" % (a, b, b - a))
if os.path.getsize(sys.argv[2]):
    a, b = cost(sys.argv[2])
    print("  floor, an empty LD_PRELOAD library: %.0f us without, %.0f us with (%+.0f us per exec)" % (a, b, b - a))
PYEOF
}
write_cost() {
	"$PY" - "$PRELOAD" <<'PYEOF'
import os, subprocess, sys, time
cmd = ["dd", "if=/dev/zero", "of=/dev/null", "bs=64", "count=1000000"]
def run(env):
    t = time.perf_counter(); subprocess.run(cmd, env=env, stderr=subprocess.DEVNULL); return time.perf_counter() - t
base = dict(os.environ); pre = dict(base, LD_PRELOAD=sys.argv[1])
a = min(run(base) for _ in range(3)); b = min(run(pre) for _ in range(3))
print("dd, 1e6 read+write pairs of 64 B: %.0f ns per pair without, %.0f ns with the shim (%+.0f ns)" %
      (a * 1e3, b * 1e3, (b - a) * 1e3))
PYEOF
}
exec_cost
write_cost
