#!/usr/bin/env bash
# bench_supervised.sh BUILD_DIR: what `llmcap run`'s supervisor adds per allowed request for the
# programs the preload cannot hold (static and Go programs: seccomp user notification on connect,
# provider connections held by the supervisor's loopback relay).
#
# One run on loopback: the C stand-in provider (build/bench/preload_bench server), plain HTTP and
# TLS (a test CA from tests/provider/mkcert.sh; the clients and the relay trust it through
# SSL_CERT_FILE), both providers of the policy, so every supervised call is held: the relay
# terminates TLS, admits the request in the store, forwards it over verified TLS, streams the
# answer back and settles. Clients, each run alternately directly and under `llmcap run`
# (ROUNDS rounds, latencies pooled):
#   - the static musl client (tests/supervised/static_client.c; mbed TLS), a fresh connection per
#     call: every call pays the connect notification, the relay's two TLS handshakes and a decision;
#   - the Go net/http client (tests/supervised/go_client.go), keep-alive: the relay's per-request
#     cost once the connection is up;
#   - the machine's nodesource node (OpenSSL linked in; tests/supervised/node_client.js), fetch,
#     keep-alive, when there is such a node.
# The splice path: the same servers at ports the policy's provider entries use but at an address
# that is not a provider's (the policy names 127.0.0.2 at those ports): the relay reads the first
# bytes (no provider SNI or Host) and splices the connection untouched to where the program asked.
# Figures: p50/p99 per request, direct vs supervised, the difference.
set -u
. "$(dirname "$0")/lib.sh"
ROOT=$LC_ROOT
N=${N:-200}
ROUNDS=${ROUNDS:-3}
command -v musl-gcc >/dev/null || { echo "bench_supervised: musl-gcc missing (apt musl-tools)"; exit 0; }
L=$(dirname "$(dpkg -L libmbedtls-dev 2>/dev/null | grep '/libmbedtls\.a$' | head -1)")
musl-gcc -static -O2 -idirafter /usr/include -o "$T/static_client" "$ROOT/tests/supervised/static_client.c" \
	"$ROOT/tests/supervised/fortify_shim.c" "$L/libmbedtls.a" "$L/libmbedx509.a" "$L/libmbedcrypto.a" || exit 1
(cd "$ROOT/tests/supervised" && GOCACHE=$T/go-cache GOPATH=$T/gopath GOFLAGS=-mod=mod go build -o "$T/go_client" go_client.go) ||
	{ echo "bench_supervised: go build failed (apt golang-go)"; exit 1; }
bash "$ROOT/tests/provider/mkcert.sh" "$T/cert" || exit 1
export LLMCAP_STATE_DIR=$T/state LLMCAP_LOG=error SSL_CERT_FILE=$T/cert/ca.pem
unset REQUESTS_CA_BUNDLE CURL_CA_BUNDLE NODE_EXTRA_CA_CERTS SSL_CERT_DIR
"$B/llmcap" keygen --out "$T/keys" >/dev/null 2>&1
P=$(free_port); PT=$(free_port); PS=$(free_port); PTS=$(free_port)
cat >"$T/policy.json" <<JSON
{"schema": 1, "version": 1, "issued_at": "2026-01-01T00:00:00Z", "expires_at": "$(date -u -d '+30 days' +%Y-%m-%dT%H:%M:%SZ)",
 "providers": [{"name": "stand-in", "format": "openai", "hosts": ["127.0.0.1:$P", "localhost:$PT", "127.0.0.2:$PS", "127.0.0.2:$PTS"]}],
 "prices": {"gpt-4o-mini": {"input": 0.15, "cached_input": 0.075, "output": 0.60, "max_output_tokens": 16384}},
 "unknown_keys": "allow", "keys": {}}
JSON
"$B/llmcap" sign --key "$T/keys/llmcap.key" "$T/policy.json" >"$T/policy.signed" &&
	"$B/llmcap" apply --trust "$T/keys/llmcap.pub" "$T/policy.signed" >/dev/null 2>&1 || { echo "bench_supervised: apply failed"; exit 1; }
"$B/bench/preload_bench" server "$P" & pids+=($!)
"$B/bench/preload_bench" server "$PT" "$T/cert/server.pem" "$T/cert/server.key" & pids+=($!)
"$B/bench/preload_bench" server "$PS" & pids+=($!)
"$B/bench/preload_bench" server "$PTS" "$T/cert/server.pem" "$T/cert/server.key" & pids+=($!)
sleep 0.3
# one row: [HOW] NAME CMD... (run ROUNDS times directly and under llmcap run, alternately; HOW
# "held" unless given: held, spliced)
row() {
	local how=held name r
	case $1 in held|spliced) how=$1; shift ;; esac
	name=$1; shift
	: >"$T/off"; : >"$T/on"
	for r in $(seq 1 "$ROUNDS"); do
		"$@" >>"$T/off"
		"$B/llmcap" run -- "$@" >>"$T/on"
	done
	"$PY" - "$T/off" "$T/on" "$name" "$how" <<'PYEOF'
import json, sys
def load(f):
    v = [json.loads(l) for l in open(f) if l.startswith("{")]
    bad = sum(1 for d in v if d["status"] != 200)
    return sorted(d["ms"] * 1000 for d in v), bad
def q(v, p): return v[min(len(v) - 1, int(p * len(v)))]
off, b0 = load(sys.argv[1]); on, b1 = load(sys.argv[2])
if b0 or b1 or not off or not on:
    print("%s: failed calls (direct %d, supervised %d)" % (sys.argv[3], b0, b1)); sys.exit(1)
for name, p in (("p50", 0.5), ("p99", 0.99)):
    print("supervised, %s, %s (%d calls each): %s direct %.0f us, supervised %.0f us, %+.0f us"
          % (sys.argv[4], sys.argv[3], len(off), name, q(off, p), q(on, p), q(on, p) - q(off, p)))
PYEOF
}
row "static musl, plain HTTP, fresh connection per call" "$T/static_client" 127.0.0.1 "$P" k "$N"
row "static musl, TLS 1.2, fresh connection per call" "$T/static_client" --tls localhost "$PT" k "$N"
row "Go net/http, plain HTTP, keep-alive" "$T/go_client" "http://127.0.0.1:$P/v1/chat/completions" k "$N"
row "Go net/http, TLS, keep-alive" "$T/go_client" "https://localhost:$PT/v1/chat/completions" k "$N"
row spliced "static musl, plain HTTP, fresh connection per call" "$T/static_client" 127.0.0.1 "$PS" k "$N"
row spliced "Go net/http, plain HTTP, keep-alive" "$T/go_client" "http://127.0.0.1:$PS/v1/chat/completions" k "$N"
row spliced "Go net/http, TLS, keep-alive" "$T/go_client" "https://127.0.0.1:$PTS/v1/chat/completions" k "$N"
NODE=$(command -v node || true)
if [ -n "$NODE" ] && ! ldd "$NODE" | grep -q 'libssl\.so'; then
	export NODE_EXTRA_CA_CERTS=$T/cert/ca.pem    # llmcap run adds its CA to it
	row "nodesource node fetch, plain HTTP, keep-alive" "$NODE" "$ROOT/tests/supervised/node_client.js" fetch \
		"http://127.0.0.1:$P/v1/chat/completions" k "$N"
	row "nodesource node fetch, TLS, keep-alive" "$NODE" "$ROOT/tests/supervised/node_client.js" fetch \
		"https://localhost:$PT/v1/chat/completions" k "$N"
fi
