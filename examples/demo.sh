#!/usr/bin/env bash
# make demo: the stand-in provider on loopback, a signed policy, examples/chat until the limit
# answers 429, then `llmcap status`. Everything lives in a temporary directory.
set -euo pipefail
B=$(cd "${1:-build}" && pwd)
ROOT=$(cd "$(dirname "$0")/.." && pwd)
D=$(mktemp -d /tmp/llmcap-demo.XXXXXX)
export LLMCAP_STATE_DIR=$D/state
PY=/usr/bin/python3
trap 'kill $prov 2>/dev/null; wait $prov 2>/dev/null; rm -rf "$D"' EXIT

port=$("$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()')
"$PY" "$ROOT/tests/provider/provider.py" --port "$port" --log "$D/provider.jsonl" >"$D/provider.out" 2>&1 &
prov=$!
for _ in $(seq 1 100); do (exec 3<>/dev/tcp/127.0.0.1/"$port") 2>/dev/null && break; sleep 0.05; done

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
run() { printf '$ %s\n' "$*" >&2; "$@"; }

say "1. a signing key (the organisation keeps llmcap.key; hosts trust llmcap.pub)"
run "$B/llmcap" keygen --out "$D/keys"

say "2. a policy: key 'demo-app' may make 5 requests a day and spend \$0.50 a month"
FP=$(printf 'sk-demo-0001' | "$B/llmcap" key fingerprint)
cat > "$D/policy.json" <<JSON
{
  "schema": 1, "version": 1,
  "issued_at": "$(date -u +%Y-%m-%dT%H:%M:%SZ)",
  "expires_at": "$(date -u -d '+30 days' +%Y-%m-%dT%H:%M:%SZ)",
  "providers": [{"name": "stand-in", "format": "openai", "hosts": ["127.0.0.1:$port"]}],
  "prices": {"gpt-4o-mini": {"input": 0.15, "cached_input": 0.075, "output": 0.60, "max_output_tokens": 16384}},
  "org": {"spend_cap_usd": 100, "period": "monthly", "warning_threshold_usd": 80},
  "keys": {
    "demo-app": {"sha256": "$FP", "limits": [
      {"metric": "requests", "window": "daily", "threshold": 5},
      {"metric": "cost", "window": "monthly", "threshold": 0.50, "alert_at": 0.40}
    ]}
  }
}
JSON
sed 's/^/    /' "$D/policy.json"

say "3. sign it and install it on this host"
run "$B/llmcap" sign --key "$D/keys/llmcap.key" "$D/policy.json" > "$D/policy.signed"
run "$B/llmcap" apply --trust "$D/keys/llmcap.pub" "$D/policy.signed"

say "4. examples/chat sends 8 chat completions through libllmcap + libcurl (one status per line)"
run "$B/examples/chat" --url "http://127.0.0.1:$port/v1/chat/completions" --key sk-demo-0001 --count 8

say "5. what the caller got for the 6th request (nothing of it reached the provider)"
"$B/examples/chat" --url "http://127.0.0.1:$port/v1/chat/completions" --key sk-demo-0001 --count 1 --verbose 2>&1 | sed 's/^/    /'
echo "    provider received: $(grep -c '"event": *"request"' "$D/provider.jsonl") requests"

say "6. llmcap status"
run "$B/llmcap" status
