#!/usr/bin/env bash
# The relay of `llmcap run`'s supervisor at its edges, with the machine's nodesource `node` (held by
# the relay: TLS linked in):
#   - a provider that accepts the request and then sends nothing: after LLMCAP_RELAY_TIMEOUT the
#     program gets a 504 from the relay and one stderr line, no hang;
#   - a program that offers only HTTP/2 in ALPN (node's http2): refused in the handshake, one
#     stderr line naming why, the provider gets nothing;
#   - a program that ignores the CA variables (its own `ca`): its handshake fails, one stderr line
#     naming why (the alert it sent), the provider gets nothing;
#   - provider addresses are re-resolved while the program runs (LLMCAP_RESOLVE_INTERVAL): an
#     address the provider's name gets after the start is held from the next resolution on (a
#     private /etc/hosts in a mount namespace plays the DNS change; needs root).
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/test_preload_lib.inc"
pl_node_init
EDGE=$LC_ROOT/tests/supervised/node_edge.js
pl_provider stall $(pl_tls_args 1.3) --delay-ms 60000
pl_user_trust
P=https://localhost:$PORT_tls13/v1/chat/completions

# a stalled provider: 504 after the timeout, one stderr line, the program goes on
pl_policy stall "localhost:$PORT_stall"
v=$(LLMCAP_RELAY_TIMEOUT=2 timeout 60 "$LLMCAP" run -- "$NODE" "$EDGE" fetch "https://localhost:$PORT_stall/v1/chat/completions" \
	"$PL_KEY" 2>"$T/stall.err" | "$PY" -c 'import json,sys; d=json.loads(sys.stdin.readline()); print(d["status"], "relay" in d.get("body", ""))'; echo "${PIPESTATUS[0]}")
expect_eq "a provider that sends nothing: 504 from the relay after LLMCAP_RELAY_TIMEOUT, the program exits 0" "504 True 0" "$(echo $v)"
expect_eq "...one stderr line naming why" 1 "$(grep -c 'llmcap: relay: the provider localhost sent nothing for 2 s' "$T/stall.err")"
expect_eq "...charged as a request whose answer never came (the estimate: the provider got it)" 1 "$(pl_used requests)"

# h2 only: refused in the handshake, one line
pl_policy h2 "localhost:$PORT_tls13"
: >"$LOG_tls13"
v=$(timeout 60 "$LLMCAP" run -- "$NODE" "$EDGE" h2only "$P" "$PL_KEY" 2>"$T/h2.err" |
	"$PY" -c 'import json,sys; d=json.loads(sys.stdin.readline()); print(d["status"], d.get("error", ""))')
case "$v" in "0 "*ALPN*|"0 "*APPLICATION_PROTOCOL*) ok "a program offering only h2 is refused in its handshake ($v)" ;;
	*) fail "h2 only: $v $(head -c 300 "$T/h2.err")" ;; esac
expect_eq "...one stderr line naming why" 1 "$(grep -c 'llmcap: relay: a program offered only HTTP/2 (ALPN h2, no http/1.1) to provider localhost: refused' "$T/h2.err")"
pl_wait_closed "$LOG_tls13"
expect_eq "...the provider saw no connection, nothing charged" "0 0" "$(pl_logstat "$LOG_tls13" conns) $(pl_used requests)"

# a program with its own roots (ignores NODE_EXTRA_CA_CERTS): handshake fails, one line
pl_policy pinned "localhost:$PORT_tls13"
v=$(PINNED_CA=$PL_CERT/ca.pem timeout 60 "$LLMCAP" run -- "$NODE" "$EDGE" pinned "$P" "$PL_KEY" 2>"$T/pin.err" |
	"$PY" -c 'import json,sys; d=json.loads(sys.stdin.readline()); print(d["status"], d.get("error", ""))')
case "$v" in "0 "?*) ok "a program that ignores the CA variables fails its handshake ($v)" ;;
	*) fail "pinned: $v $(head -c 300 "$T/pin.err")" ;; esac
expect_eq "...one stderr line naming why" 1 "$(grep -c 'llmcap: relay: the program .* for provider localhost .*not trust the llmcap CA' "$T/pin.err")"
pl_wait_closed "$LOG_tls13"
expect_eq "...the provider saw no connection, nothing charged" "0 0" "$(pl_logstat "$LOG_tls13" conns) $(pl_used requests)"

# re-resolution: llmcap-rr.test is 127.0.0.2 when the run starts, 127.0.0.1 (where the provider
# listens) from the middle of it; calls to 127.0.0.1 pass unheld until the supervisor resolves again
if [ "$(id -u)" = 0 ] && unshare -m true 2>/dev/null; then
	pl_provider rr
	PL_CAP=1 pl_policy rr "llmcap-rr.test:$PORT_rr"
	printf '127.0.0.1 localhost\n127.0.0.2 llmcap-rr.test\n' >"$T/hosts"
	cat >"$T/rr.sh" <<RR
# one call before the change (not a provider address yet: unheld), then the DNS change, then calls
# until one is held (the 429 after the policy's single request), at most 60 of them
"$NODE" "$EDGE" fetch "http://127.0.0.1:$PORT_rr/v1/chat/completions" "$PL_KEY"
printf '127.0.0.1 localhost\n127.0.0.1 llmcap-rr.test\n' >/etc/hosts
for i in \$(seq 1 60); do
	"$NODE" "$EDGE" fetch "http://127.0.0.1:$PORT_rr/v1/chat/completions" "$PL_KEY" | tee -a "$T/rr.calls"
	grep -q '"status":429' "$T/rr.calls" && break
	sleep 0.5
done
RR
	# the mount is made before llmcap run (mount is setuid: refused under the preload)
	unshare -m bash -c 'mount --bind "$1" /etc/hosts && shift && exec "$@"' _ "$T/hosts" \
		env LLMCAP_RESOLVE_INTERVAL=1 timeout 120 "$LLMCAP" run -- bash "$T/rr.sh" >"$T/rr.out" 2>"$T/rr.err"
	v=$("$PY" -c '
import json, sys
st = [json.loads(l)["status"] for l in open(sys.argv[1]) if l.startswith("{")]
print(st[0], st[-1], len(st))' "$T/rr.out")
	set -- $v
	expect_eq "re-resolution: before the change unheld (200), after it held (a 429 once the cap of 1 is used)" "200 429" "${1:-} ${2:-}"
	expect_eq "...exactly one held call charged (every call before it passed unheld, uncharged)" 1 "$(pl_used requests)"
else
	ok "skipped: re-resolution (needs root and unshare -m)"
fi
finish
