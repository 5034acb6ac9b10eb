#!/usr/bin/env bash
# `llmcap run`'s relay in peek mode: the routes by which a supervised program (Go net/http here)
# could reach a provider at an address that is not a provider address.
#   - A provider at an address its name did not resolve to when the run started (DNS rotation,
#     LLMCAP_RESOLVE_INTERVAL long): the policy names localhost:PORT (resolved 127.0.0.1), the
#     provider answers on 127.0.0.2 and the program connects there with the provider's SNI / Host.
#     Held, over TLS (JSON and SSE) and plain HTTP: exact charges, the 429, 0 bytes of a blocked
#     process at the provider.
#   - Connections to a port of the policy's provider entries that name no provider are spliced
#     untouched: byte-exact both ways (TLS with the server's own certificate, not llmcap's; plain
#     bytes that look like HTTP to another host), half-close passed on; a server that speaks first
#     is reached, no hang.
#   - Through an HTTP proxy (HTTPS_PROXY / HTTP_PROXY, a small proxy of ours, tests/provider/proxy.py):
#     a CONNECT to a provider is held (the relay answers the CONNECT and reaches the provider through
#     the same proxy), an absolute-form plain request too; a CONNECT to another host passes.
#   - A SOCKS proxy (ALL_PROXY=socks5://...; an https:// proxy alike) cannot be read: a supervised
#     program's connections to it are refused at once with one stderr line; the proxy sees none.
#   - Dynamically linked programs (curl, the preload loaded) through the proxy are held as well.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/test_preload_lib.inc"
pl_build_go_client
check "the Go client was built (golang-go)" test -x "$GO_CLIENT" || { finish; exit 1; }
pl_init
export SSL_CERT_FILE=$PL_CERT/ca.pem          # the user's trust: the relay verifies the provider with it
unset REQUESTS_CA_BUNDLE CURL_CA_BUNDLE NODE_EXTRA_CA_CERTS SSL_CERT_DIR
export LLMCAP_RESOLVE_INTERVAL=86400          # no re-resolution during the test

# on ADDR NAME CMD...: a server of ours on loopback address ADDR, port PORT_NAME, log LOG_NAME
on() {
	local addr=$1 name=$2 port i; shift 2
	port=$(free_port)
	"$@" --host "$addr" --port "$port" --log "$T/$name.jsonl" >"$T/$name.out" 2>&1 &
	_pids+=($!)
	for i in $(seq 1 200); do (exec 3<>/dev/tcp/$addr/$port) 2>/dev/null && break; sleep 0.05; done
	printf -v "PORT_$name" '%s' "$port"; printf -v "LOG_$name" '%s' "$T/$name.jsonl"
}
PROV=("$PY" "$PROVIDER" --usage-in "$PL_IN" --usage-out "$PL_OUT")
on 127.0.0.2 tls "${PROV[@]}" $(pl_tls_args 1.3)
on 127.0.0.2 plain "${PROV[@]}"
on 127.0.0.2 etls "$PY" "$LC_ROOT/tests/provider/echo.py" --tls-cert "$PL_CERT/server.pem" --tls-key "$PL_CERT/server.key"
on 127.0.0.2 eplain "$PY" "$LC_ROOT/tests/provider/echo.py"
on 127.0.0.2 banner "$PY" "$LC_ROOT/tests/provider/echo.py" --banner "220 a server that speaks first"
# the policy: provider localhost at these ports (the echo servers' ports are provider ports too,
# so connections to them are peeked; localhost never resolves to 127.0.0.2)
policy() { pl_policy "$1" "localhost:$PORT_tls" "localhost:$PORT_plain" "localhost:$PORT_etls" "localhost:$PORT_eplain" \
	"localhost:$PORT_banner" ${2:+"$2"} ${3:+"$3"}; }
url() { echo "$1://localhost:$2/v1/chat/completions"; }

# a provider at an address its name did not resolve to: held
for t in "tls json" "tls stream" "plain json"; do
	set -- $t; p=$1; s=""; [ "$2" = stream ] && s=stream
	log=$LOG_tls port=$PORT_tls scheme=https; [ $p = plain ] && log=$LOG_plain port=$PORT_plain scheme=http
	d="new address, $t"
	pl_wait_closed "$log"; : >"$log"
	policy "new-$p-$2"
	GO_CLIENT_DIAL=127.0.0.2:$port timeout 60 "$LLMCAP" run -- "$GO_CLIENT" "$(url $scheme $port)" "$PL_KEY" $((PL_CAP + 2)) $s \
		>"$T/a.out" 2>"$T/a.err"
	pl_expect_answers "$d" "$T/a.out" "$PL_CAP" 2
	pl_wait_closed "$log"
	pl_expect_charged "$d" "$log" "$PL_CAP"
	pl_relay_no_bytes "$d" "$log" env GO_CLIENT_DIAL=127.0.0.2:$port timeout 60 "$LLMCAP" run -- "$GO_CLIENT" \
		"$(url $scheme $port)" "$PL_KEY" 2 $s
	expect_eq "$d: nothing on stderr" "" "$(cat "$T/a.err" "$T/blocked.err")"
done

# not a provider, on a provider port: spliced, byte-exact both ways
policy splice
"$PY" -c 'import os,sys; sys.stdout.buffer.write(os.urandom(300000))' >"$T/rand"
"$PY" -c 'import os,sys; sys.stdout.buffer.write(os.urandom(8 << 20))' >"$T/big"
{ printf 'POST /upload HTTP/1.1\r\nHost: other.test\r\nContent-Length: 300000\r\n\r\n'; cat "$T/rand"; } >"$T/http"
# (big: 8 MiB back to a program that starts reading 500 ms after the server sent it all and closed:
# the relay holds what the program has not read yet and still passes it all on)
for t in "etls $T/rand other.test" "etls $T/rand localhost.example" "eplain $T/http" "eplain $T/rand" "eplain $T/big"; do
	set -- $t; n=$1 f=$2 sni=${3:-}; port=PORT_$n log=LOG_$n
	: >"${!log}"
	v=$(GO_CLIENT_READ_DELAY_MS=$([ "$f" = "$T/big" ] && echo 500 || echo 0) \
		timeout 60 "$LLMCAP" run -- "$GO_CLIENT" raw "127.0.0.2:${!port}" "$f" $sni 2>"$T/s.err")
	want=$(sha256sum <"$f" | cut -d' ' -f1)
	got=$(printf '%s' "$v" | "$PY" -c 'import json,sys; d=json.load(sys.stdin); print(d.get("sha256"), d.get("len"), d.get("error", ""), "llmcap relay" in d.get("issuer", ""))')
	expect_eq "spliced ($n ${sni:-plain}, $(basename "$f")): the program gets back exactly what it sent, half-close passed on" \
		"$want $(stat -c %s "$f")  False" "$got"
	sleep 0.2
	expect_eq "...the server got exactly the program's bytes" "$want" "$("$PY" -c 'import json,sys; print(json.loads(open(sys.argv[1]).readline()).get("sha256"))' "${!log}")"
	expect_eq "...nothing on stderr, nothing charged" " 0" "$(cat "$T/s.err") $(pl_used requests)"
done
t0=$(date +%s%N)
v=$(timeout 60 "$LLMCAP" run -- "$GO_CLIENT" raw "127.0.0.2:$PORT_banner" - |
	"$PY" -c 'import json,sys; d=json.load(sys.stdin); print(d.get("len"), d.get("error", ""))')
ms=$(( ($(date +%s%N) - t0) / 1000000 ))
expect_eq "a server that speaks first, on a provider port: reached (its banner, then its close)" "30 " "$v"
check "...within 2 s ($ms ms)" test "$ms" -lt 2000

# through an HTTP proxy: the provider on 127.0.0.1 (its name's address), the proxy on 127.0.0.3
pl_provider ptls $(pl_tls_args 1.3)
pl_provider pplain
pl_provider other $(pl_tls_args 1.3)           # not in the policy
on 127.0.0.3 proxy "$PY" "$LC_ROOT/tests/provider/proxy.py"
PX=http://127.0.0.3:$PORT_proxy
for t in "tls json" "tls stream" "plain json"; do
	set -- $t; p=$1; s=""; [ "$2" = stream ] && s=stream
	log=$LOG_ptls port=$PORT_ptls scheme=https; [ $p = plain ] && log=$LOG_pplain port=$PORT_pplain scheme=http
	d="Go through HTTPS_PROXY, $t"
	pl_wait_closed "$log"; : >"$log"; : >"$LOG_proxy"
	policy "proxy-$p-$2" "localhost:$PORT_ptls" "localhost:$PORT_pplain"
	HTTPS_PROXY=$PX HTTP_PROXY=$PX GO_CLIENT_PROXY=$PX timeout 60 "$LLMCAP" run -- "$GO_CLIENT" "$(url $scheme $port)" "$PL_KEY" \
		$((PL_CAP + 2)) $s >"$T/a.out" 2>"$T/a.err"
	pl_expect_answers "$d" "$T/a.out" "$PL_CAP" 2
	pl_wait_closed "$log"
	pl_expect_charged "$d" "$log" "$PL_CAP"
	pl_relay_no_bytes "$d" "$log" env HTTPS_PROXY=$PX HTTP_PROXY=$PX GO_CLIENT_PROXY=$PX timeout 60 "$LLMCAP" run -- "$GO_CLIENT" \
		"$(url $scheme $port)" "$PL_KEY" 2 $s
	expect_eq "$d: nothing on stderr" "" "$(cat "$T/a.err" "$T/blocked.err")"
	sleep 0.2
	v=$("$PY" -c 'import json,sys; print(sorted(set(json.loads(l)["method"] for l in open(sys.argv[1]))))' "$LOG_proxy")
	expect_eq "$d: upstream through the same proxy" "$([ $p = tls ] && echo "['CONNECT']" || echo "['POST']")" "$v"
done
d="Go through HTTPS_PROXY to a host that is not a provider"
: >"$LOG_other"
policy proxy-other "localhost:$PORT_ptls"
v=$(HTTPS_PROXY=$PX GO_CLIENT_PROXY=$PX timeout 60 "$LLMCAP" run -- "$GO_CLIENT" "https://127.0.0.1:$PORT_other/v1/chat/completions" \
	"$PL_KEY" 5 2>"$T/o.err" | "$PY" -c 'import json,sys; print(" ".join(str(json.loads(l)["status"]) for l in sys.stdin))')
pl_wait_closed "$LOG_other"
expect_eq "$d: passes (5 x 200, the host got 5 requests, nothing charged, nothing on stderr)" \
	"200 200 200 200 200 5 0 " "$v $(pl_logstat "$LOG_other" requests) $(pl_used requests) $(cat "$T/o.err")"

# a proxy llmcap cannot read (SOCKS; https:// alike): a program the preload does not hold is
# refused there at once, one stderr line, and the proxy sees no connection (its calls could leave
# through it unheld); a SOCKS listener of ours that would accept
on 127.0.0.3 socks "$PY" "$LC_ROOT/tests/provider/echo.py"
SX=socks5://127.0.0.3:$PORT_socks
sleep 0.2; : >"$LOG_socks"    # the readiness probe of `on`
d="Go through a SOCKS proxy (ALL_PROXY=$SX)"
policy socks
ALL_PROXY=$SX GO_CLIENT_PROXY=$SX timeout 60 "$LLMCAP" run -- "$GO_CLIENT" "$(url https $PORT_tls)" "$PL_KEY" 2 \
	>"$T/s.out" 2>"$T/s.err"
v=$("$PY" - "$T/s.out" <<'EOF2'
import json, sys
ls = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
ok = len(ls) == 2 and all(d["status"] == 0 and "refused" in d.get("error", "") and d["ms"] < 100 for d in ls)
print("yes" if ok else "no: %r" % ls[:2])
EOF2
)
expect_eq "$d: both calls refused at once (connection refused, < 100 ms)" "yes" "$v"
expect_eq "$d: one line when llmcap run starts, one per refused connection, naming why" "1 2" \
	"$(grep -c 'is not an http:// proxy' "$T/s.err") $(grep -c 'refused a connection to provider (a proxy).*SOCKS or https:// proxy' "$T/s.err")"
sleep 0.2
expect_eq "$d: the proxy saw no connection" "0" "$(wc -l <"$LOG_socks")"

# the preload's programs through the proxy (dynamically linked, libssl: the supervisor leaves them
# to the preload): curl -x (held by the URL of its handle; the policy names the provider without a
# port, as "api.openai.com") and python requests (by the SNI; the policy names host:port)
for c in curl requests; do
	for p in tls plain; do
		log=$LOG_ptls port=$PORT_ptls scheme=https; [ $p = plain ] && log=$LOG_pplain port=$PORT_pplain scheme=http
		d="$c through the proxy (the preload), $p"
		pl_wait_closed "$log"; : >"$log"
		if [ $c = curl ]; then pl_policy "pre-$c-$p" localhost
		else pl_policy "pre-$c-$p" "localhost:$PORT_ptls" "localhost:$PORT_pplain"; fi
		if [ $c = requests ]; then
			HTTPS_PROXY=$PX HTTP_PROXY=$PX timeout 60 "$LLMCAP" run -- "$PY" "$CLIENT_PY" requests "$(url $scheme $port)" \
				-n $((PL_CAP + 2)) --key "$PL_KEY" >"$T/a.out" 2>"$T/a.err"
		else
			: >"$T/a.out"; : >"$T/a.err"
			for i in $(seq 1 $((PL_CAP + 2))); do
				HTTPS_PROXY=$PX HTTP_PROXY=$PX timeout 60 "$LLMCAP" run -- curl -sS -x "$PX" -o "$T/body" -D "$T/hdr" \
					-H "Authorization: Bearer $PL_KEY" -H 'Content-Type: application/json' \
					-d '{"model":"gpt-4o-mini","max_tokens":20,"messages":[{"role":"user","content":"hi"}]}' \
					"$(url $scheme $port)" 2>>"$T/a.err"
				"$PY" -c '
import json, sys
blocks = open(sys.argv[1], errors="replace", newline="").read().split("\r\n\r\n")
h = [b for b in blocks if b.startswith("HTTP/")][-1].split("\r\n")    # the last: after the proxy'"'"'s CONNECT answer
hd = {l.split(":", 1)[0].lower(): l.split(":", 1)[1].strip() for l in h[1:] if ":" in l}
print(json.dumps({"status": int(h[0].split()[1]), "retry_after": hd.get("retry-after"),
                  "x_should_retry": hd.get("x-should-retry"), "body": open(sys.argv[2], errors="replace").read()}))' \
					"$T/hdr" "$T/body" >>"$T/a.out"
			done
		fi
		pl_expect_answers "$d" "$T/a.out" "$PL_CAP" 2
		pl_wait_closed "$log"
		pl_expect_charged "$d" "$log" "$PL_CAP"
		expect_eq "$d: nothing on stderr" "" "$(cat "$T/a.err")"
	done
done
finish
