#!/usr/bin/env bash
# A program that has libssl loaded (so hooked OpenSSL calls would be held) but speaks TLS to a
# provider through a TLS library of its own (here Debian's mbed TLS, dynamically linked; in the
# wild rustls in a Python extension, a Go c-shared library, a statically linked OpenSSL). No
# SSL_write hook ever sees its requests, so the preload decides per connection: a ClientHello to a
# provider that no hooked TLS call made is refused at once (EACCES, one stderr line naming the
# remedy), with the plain preload and under `llmcap run`; under `LLMCAP_RELAY_ALL=1 llmcap run`
# the supervisor's relay holds it (exact charges, 429s, 0 bytes of a blocked process). Other hosts
# pass untouched. The client is tests/supervised/static_client.c built dynamically by this test.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/test_preload_lib.inc"
SUP=$B/tests/supervised
mkdir -p "$SUP"
CLIENT=$SUP/owntls_client
SRC=$LC_ROOT/tests/supervised/static_client.c
if [ ! -x "$CLIENT" ] || [ "$SRC" -nt "$CLIENT" ]; then
	# --no-as-needed: libssl is mapped although the client never calls it (as a Python process
	# that imported ssl and also loads a rustls extension)
	gcc -O2 -o "$CLIENT" "$SRC" -Wl,--no-as-needed -lssl -Wl,--as-needed -lmbedtls -lmbedx509 -lmbedcrypto \
		2>"$T/cc.log" || echo "# gcc: $(tail -3 "$T/cc.log")"
fi
check "the mbed TLS client was built (libmbedtls-dev) and maps libssl" \
	bash -c 'ldd "$1" | grep -q "libssl\.so" && ldd "$1" | grep -q libmbedtls' _ "$CLIENT"
pl_init
pl_provider tls13 $(pl_tls_args 1.2)    # Debian's mbed TLS 2 speaks TLS 1.2
pl_provider other $(pl_tls_args 1.2)          # not in the policy
pl_policy owntls "localhost:$PORT_tls13"
export SSL_CERT_FILE=$PL_CERT/ca.pem          # the client's trust (the relay's too)
unset REQUESTS_CA_BUNDLE CURL_CA_BUNDLE NODE_EXTRA_CA_CERTS SSL_CERT_DIR

# the client works: without llmcap it reaches the provider (the leak this test guards against)
: >"$LOG_tls13"
v=$(timeout 30 "$CLIENT" --tls localhost "$PORT_tls13" "$PL_KEY" 1 | "$PY" -c 'import json,sys; print(json.loads(sys.stdin.readline())["status"])')
expect_eq "without llmcap the mbed TLS client gets its 200" 200 "$v"
pl_wait_closed "$LOG_tls13"; : >"$LOG_tls13"

# refused: $1 description, then the command (its output and stderr checked)
refused() {
	local desc=$1 b0; shift
	pl_wait_closed "$LOG_tls13"
	b0=$(pl_logstat "$LOG_tls13" bytes_total)
	"$@" >"$T/r.out" 2>"$T/r.err"
	pl_wait_closed "$LOG_tls13"
	expect_eq "$desc: the call fails with a connection error within 100 ms" "0 True" \
		"$("$PY" -c 'import json,sys; d=json.loads(open(sys.argv[1]).readline()); print(d["status"], d["ms"] < 100)' "$T/r.out" 2>&1)"
	expect_eq "$desc: the provider got 0 bytes" "$b0" "$(pl_logstat "$LOG_tls13" bytes_total)"
	expect_eq "$desc: one stderr line naming why and the remedy" "1 1" \
		"$(wc -l <"$T/r.err") $(grep -c "TLS to provider localhost:$PORT_tls13 from a TLS library llmcap cannot hold (not this process's libssl or GnuTLS): connection refused; \`LLMCAP_RELAY_ALL=1 llmcap run -- PROGRAM\` holds it" "$T/r.err")"
}
refused "plain preload" env LD_PRELOAD="$PRELOAD" timeout 30 "$CLIENT" --tls localhost "$PORT_tls13" "$PL_KEY" 1
refused "llmcap run" timeout 30 "$LLMCAP" run -- "$CLIENT" --tls localhost "$PORT_tls13" "$PL_KEY" 1
expect_eq "nothing was charged" 0 "$(pl_used requests)"

# other hosts pass untouched
v=$(LD_PRELOAD=$PRELOAD timeout 30 "$CLIENT" --tls localhost "$PORT_other" "$PL_KEY" 1 2>"$T/o.err" |
	"$PY" -c 'import json,sys; print(json.loads(sys.stdin.readline())["status"])')
expect_eq "own TLS to a host not in the policy passes, nothing on stderr" "200 " "$v $(cat "$T/o.err")"

# held under LLMCAP_RELAY_ALL=1 llmcap run: JSON and SSE
for mode in json stream; do
	s=""; [ $mode = stream ] && s=--stream
	pl_wait_closed "$LOG_tls13"; : >"$LOG_tls13"
	pl_policy "relay-$mode" "localhost:$PORT_tls13"
	LLMCAP_RELAY_ALL=1 timeout 60 "$LLMCAP" run -- "$CLIENT" --tls $s localhost "$PORT_tls13" "$PL_KEY" $((PL_CAP + 2)) \
		>"$T/a.out" 2>"$T/a.err"
	pl_expect_answers "LLMCAP_RELAY_ALL=1 llmcap run, $mode" "$T/a.out" "$PL_CAP" 2
	pl_wait_closed "$LOG_tls13"
	pl_expect_charged "LLMCAP_RELAY_ALL=1 llmcap run, $mode" "$LOG_tls13" "$PL_CAP"
	pl_relay_no_bytes "LLMCAP_RELAY_ALL=1 llmcap run, $mode" "$LOG_tls13" \
		env LLMCAP_RELAY_ALL=1 timeout 60 "$LLMCAP" run -- "$CLIENT" --tls $s localhost "$PORT_tls13" "$PL_KEY" 2
	expect_eq "LLMCAP_RELAY_ALL=1 llmcap run, $mode: nothing on stderr" "" "$(cat "$T/a.err" "$T/blocked.err")"
done

# under LLMCAP_RELAY_ALL=1 a libssl client (curl, trusting the llmcap CA through CURL_CA_BUNDLE
# as `llmcap run` sets it) is held by the relay alone: one call, charged once
pl_wait_closed "$LOG_tls13"; : >"$LOG_tls13"
pl_policy relay-curl "localhost:$PORT_tls13"
v=$(LLMCAP_RELAY_ALL=1 timeout 30 "$LLMCAP" run -- curl -sS -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $PL_KEY" \
	-H 'Content-Type: application/json' \
	--data '{"model":"gpt-4o-mini","max_tokens":20,"messages":[{"role":"user","content":"hi"}]}' \
	"https://localhost:$PORT_tls13/v1/chat/completions" 2>"$T/c.err")
pl_wait_closed "$LOG_tls13"
expect_eq "LLMCAP_RELAY_ALL=1: curl (libssl) is held by the relay, charged once" "200 1 1" \
	"$v $(pl_used requests) $(pl_logstat "$LOG_tls13" requests)"

finish
