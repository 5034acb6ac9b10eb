#!/usr/bin/env bash
# `llmcap run` with programs the preload cannot hold: a Go net/http client (Debian's golang-go,
# dynamically linked with cgo; Go's net package makes raw system calls) and a statically linked
# musl C client (plain sockets, and Debian's static mbed TLS for HTTPS). Both run under the
# connect() supervisor (seccomp user notification), and their provider connections are HELD by
# the supervisor's loopback relay: TLS terminated with the llmcap CA (which the programs trust
# through SSL_CERT_FILE, set by `llmcap run`), decided in the store, forwarded to the provider
# over verified TLS. Over TLS and plain HTTP, JSON and SSE: the allowed calls pass with exact
# charges, the rest get the 429 through the client's normal path, a blocked process sends the
# provider 0 bytes. Also: other hosts pass untouched; a provider whose certificate does not
# verify is not reached; when holding is impossible the call is refused at once with one stderr
# line; children inherit the supervision; `llmcap run --budget` caps a supervised program and its
# children and shows in `llmcap status` while it runs. Both clients are built by this test (cached
# in the build dir).
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/test_preload_lib.inc"
SUP=$B/tests/supervised
pl_build_go_client    # GO_CLIENT
STATIC_CLIENT=$SUP/static_client
SRC=$LC_ROOT/tests/supervised
if [ ! -x "$STATIC_CLIENT" ] || [ "$SRC/static_client.c" -nt "$STATIC_CLIENT" ] || [ "$SRC/fortify_shim.c" -nt "$STATIC_CLIENT" ]; then
	# Debian's static mbed TLS archives, linked by path (-L would pull in glibc's libc.a)
	L=$(dirname "$(dpkg -L libmbedtls-dev 2>/dev/null | grep '/libmbedtls\.a$' | head -1)")
	musl-gcc -static -O2 -idirafter /usr/include -o "$STATIC_CLIENT" "$SRC/static_client.c" "$SRC/fortify_shim.c" \
		"$L/libmbedtls.a" "$L/libmbedx509.a" "$L/libmbedcrypto.a" 2>"$T/musl.log" ||
		echo "# musl-gcc: $(tail -3 "$T/musl.log")"
fi
check "the Go client was built (golang-go)" test -x "$GO_CLIENT"
check "the static musl client was built (musl-tools, libmbedtls-dev)" test -x "$STATIC_CLIENT"
pl_init
pl_provider tls13 $(pl_tls_args 1.3)
pl_provider plain
pl_provider other $(pl_tls_args 1.3)          # not in the policy
pl_provider otherplain                        # not in the policy
pl_user_trust
unset NODE_EXTRA_CA_CERTS

# client NAME TRANSPORT N [stream]: the command line of one client process making N calls
client() {
	local port url host=localhost
	if [ "$2" = plain ]; then port=$PORT_plain host=127.0.0.1; url=http://127.0.0.1:$port/v1/chat/completions
	else port=$PORT_tls13; url=https://localhost:$port/v1/chat/completions; fi
	case $1 in
		go) echo "$GO_CLIENT $url $PL_KEY $3 ${4:-}" ;;
		static) echo "$STATIC_CLIENT $([ "$2" = tls ] && echo --tls) $([ -n "${4:-}" ] && echo --stream) $host $port $PL_KEY $3" ;;
	esac
}

client_cmd() { client "$c" "$p" "$1" "${mode#json}"; }    # N: the loop's client making N calls

for c in go static; do
	for p in tls plain; do
		for mode in json stream; do
			d="$c $p $mode"
			pl_held_case "$d" "$c-$p-$mode" "$p" client_cmd
			expect_eq "$d: nothing on stderr" "" "$(cat "$T/a.err" "$T/blocked.err")"
		done
	done
done

# the answer streams through the relay as it comes (SSE unbuffered): with the provider pausing
# 40 ms between events, the first bytes reach the program long before the last
pl_provider slow $(pl_tls_args 1.3) --stream-delay-ms 40
PL_CAP=20 pl_policy slow "localhost:$PORT_slow"
v=$(timeout 60 "$LLMCAP" run -- "$GO_CLIENT" "https://localhost:$PORT_slow/v1/chat/completions" "$PL_KEY" 1 stream |
	"$PY" -c 'import json,sys; d=json.loads(sys.stdin.readline()); print(d["status"], d["first_ms"] * 2 < d["ms"], d["ms"] > 200)')
expect_eq "SSE through the relay: the first event arrives before the stream ends (not buffered)" "200 True True" "$v"
# streams one after the other on a keep-alive connection (the provider closes after each), and a
# program that gives up mid-stream: the supervisor stays (no SIGPIPE), the program's status is its own
v=$(timeout 60 "$LLMCAP" run -- "$GO_CLIENT" "https://localhost:$PORT_slow/v1/chat/completions" "$PL_KEY" 3 stream |
	"$PY" -c 'import json,sys; print(" ".join(str(json.loads(l)["status"]) + ("" if "error" not in json.loads(l) else "!") for l in sys.stdin))')
expect_eq "three streams in a row through the relay" "200 200 200" "$v"
v=$(timeout 60 "$LLMCAP" run -- "$GO_CLIENT" "https://localhost:$PORT_slow/v1/chat/completions" "$PL_KEY" 2 abort 2>"$T/ab.err" |
	"$PY" -c 'import json,sys; print(" ".join(str(json.loads(l)["status"]) + json.loads(l).get("error", "") for l in sys.stdin))'; echo "${PIPESTATUS[0]}")
expect_eq "a program that gives up mid-stream, twice: the supervisor lives on (no SIGPIPE), exit 0" "200aborted 200aborted 0" "$(echo $v)"

# the trust model: the CA key stays in the state directory (0600); one CA per state directory,
# made on first use and kept; the program's trust variables point at bundles with the llmcap CA
CA=$LLMCAP_STATE_DIR/relay
expect_eq "the llmcap CA key is mode 0600, the CA certificate 0644" "600 644" "$(stat -c %a "$CA/ca.key") $(stat -c %a "$CA/ca.pem")"
h1=$(sha256sum <"$CA/ca.pem")
v=$("$LLMCAP" run -- "$GO_CLIENT" "https://localhost:$PORT_slow/v1/chat/completions" "$PL_KEY" 1 2>/dev/null |
	"$PY" -c 'import json,sys; print(json.loads(sys.stdin.readline())["status"])')
expect_eq "a second run keeps the same CA" "200 $h1" "$v $(sha256sum <"$CA/ca.pem")"
v=$("$LLMCAP" run -- "$STATIC_CLIENT" 127.0.0.1 1 k 0 --exec \
	sh -c 'for v in SSL_CERT_FILE REQUESTS_CA_BUNDLE CURL_CA_BUNDLE NODE_EXTRA_CA_CERTS; do f=$(printenv $v); \
	grep -c "BEGIN CERTIFICATE" "$f"; done' | tr '\n' ' ')
expect_eq "SSL_CERT_FILE, REQUESTS_CA_BUNDLE, CURL_CA_BUNDLE: the user's CA + the llmcap CA; NODE_EXTRA_CA_CERTS: the llmcap CA" \
	"2 2 2 1 " "$v"
v=$(grep -l "PRIVATE KEY" "$CA"/* | xargs -n1 basename | tr '\n' ' ')
expect_eq "no private key anywhere but ca.key" "ca.key " "$v"

# forwarded over VERIFIED TLS: without the user's CA the relay does not reach the provider
pl_policy verify "localhost:$PORT_tls13"
: >"$LOG_tls13"
v=$(env -u SSL_CERT_FILE timeout 60 "$LLMCAP" run -- "$GO_CLIENT" "https://localhost:$PORT_tls13/v1/chat/completions" \
	"$PL_KEY" 1 2>"$T/v.err" | "$PY" -c 'import json,sys; print(json.loads(sys.stdin.readline())["status"])')
pl_wait_closed "$LOG_tls13"
expect_eq "a provider certificate that does not verify: 502 from the relay, no request at the provider" \
	"502 0" "$v $(pl_logstat "$LOG_tls13" requests)"
expect_eq "...and one stderr line naming why" 1 "$(grep -c 'llmcap: relay: TLS to the provider localhost failed: .*certificate' "$T/v.err")"
expect_eq "...and no tokens, no cost charged (the request itself counts, as when a provider cannot be reached)" \
	"0 0" "$(pl_used tokens) $("$PY" -c "print(int(float('$(pl_used cost)') * 1e6))")"

# holding impossible (the relay's directory cannot be made): refused at once, one stderr line
pl_policy refuse "localhost:$PORT_tls13" "127.0.0.1:$PORT_plain"
touch "$LLMCAP_STATE_DIR/relay"
: >"$LOG_tls13"; : >"$LOG_plain"
refused() {
	local desc=$1 out=$2 err=$3 v
	v=$("$PY" - "$out" <<'EOF'
import json, sys
ls = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
ok = ls and all(d["status"] == 0 and "refused" in d.get("error", "") for d in ls)
print("yes" if ok else "no", len(ls), max([d["ms"] for d in ls] or [0]))
EOF
)
	set -- $v
	if [ "$1" = yes ] && "$PY" -c "import sys; sys.exit(0 if $3 < 100 else 1)"; then
		ok "$desc: $2 provider calls refused at once (connection refused, max $3 ms)"
	else
		fail "$desc: $(head -c 400 "$out")"
	fi
	expect_eq "$desc: one stderr line per refused connection, naming why" "$2" \
		"$(grep -c 'llmcap: refused a connection to provider .*cannot hold its calls (.*relay' "$err")"
}
timeout 60 "$LLMCAP" run -- "$GO_CLIENT" "https://localhost:$PORT_tls13/v1/chat/completions" "$PL_KEY" 2 >"$T/r.out" 2>"$T/r.err"
refused "relay impossible: Go net/http tls" "$T/r.out" "$T/r.err"
timeout 60 "$LLMCAP" run -- "$STATIC_CLIENT" 127.0.0.1 "$PORT_plain" "$PL_KEY" 2 --fork >"$T/r.out" 2>"$T/r.err"
refused "relay impossible: static client plain, calls from a forked child" "$T/r.out" "$T/r.err"
pl_wait_closed "$LOG_tls13"; pl_wait_closed "$LOG_plain"
expect_eq "relay impossible: the provider saw no connection at all" "0 0" "$(pl_logstat "$LOG_tls13" conns) $(pl_logstat "$LOG_plain" conns)"

# children inherit the supervision: a forked child's calls are held as well
pl_policy fork "localhost:$PORT_tls13" "127.0.0.1:$PORT_plain"
: >"$LOG_plain"
timeout 60 "$LLMCAP" run -- "$STATIC_CLIENT" 127.0.0.1 "$PORT_plain" "$PL_KEY" $((PL_CAP + 1)) --fork >"$T/f.out" 2>&1
pl_expect_answers "static client, calls from a forked child" "$T/f.out" "$PL_CAP" 1
expect_eq "static client, forked child: charged" "$PL_CAP" "$(pl_used requests)"

# other hosts pass untouched under the supervisor
v=$(timeout 60 "$LLMCAP" run -- "$GO_CLIENT" "https://localhost:$PORT_other/v1/chat/completions" "$PL_KEY" 2 2>"$T/o.err" |
	"$PY" -c 'import json,sys; print(" ".join(str(json.loads(l)["status"]) for l in sys.stdin))')
expect_eq "Go net/http to a host that is not a provider: answered" "200 200" "$v"
expect_eq "...and nothing on stderr" "" "$(cat "$T/o.err")"
v=$("$LLMCAP" run -- "$STATIC_CLIENT" 127.0.0.1 "$PORT_otherplain" "$PL_KEY" 1 2>&1 | head -1)
case "$v" in *'"status": 200'*) ok "static client to a host that is not a provider: answered" ;;
	*) fail "static client to a non-provider: $v" ;; esac

# a dynamically linked child of a supervised program is held by the preload (it trusts the bundle too)
pl_policy child "localhost:$PORT_tls13" "127.0.0.1:$PORT_plain"
v=$(timeout 60 "$LLMCAP" run -- "$STATIC_CLIENT" 127.0.0.1 "$PORT_plain" "$PL_KEY" 0 --exec curl -sS -o /dev/null \
	-w '%{http_code}' -H "Authorization: Bearer $PL_KEY" -H 'Content-Type: application/json' \
	-d '{"model":"gpt-4o-mini","max_tokens":20,"messages":[{"role":"user","content":"hi"}]}' \
	"https://localhost:$PORT_tls13/v1/chat/completions" 2>"$T/child.err")
expect_eq "curl started by a supervised static program: held by the preload (allowed, charged)" "200 1" "$v $(pl_used requests)"

# llmcap run --budget with supervised programs: the run's cap holds for the program, the child it
# forks and the program it execs (their calls held by the relay, which runs inside the run), and
# llmcap status shows the run's budget while it runs. A call costs $0.000162 (1000 input tokens and
# 20 output, its max_tokens, at $0.15 and $0.60 per million) and reserves about $0.00003 (its body's
# bytes and max_tokens 20), so a $0.0004 budget admits three ($0.000324 + the third's reservation
# fits; $0.000486 + a fourth's does not)
PL_CAP=100 pl_policy budget "localhost:$PORT_tls13" "127.0.0.1:$PORT_plain"
run_status() { "$LLMCAP" status --json | "$PY" -c '
import json,sys
print(" ".join("%s:%s/%s" % (l["metric"], l["used"], l["threshold"]) for l in json.load(sys.stdin)["limits"] if l["scope"]=="run"))'; }
pl_wait_closed "$LOG_tls13"; : >"$LOG_tls13"
timeout 60 "$LLMCAP" run --budget 0.0004 -- "$STATIC_CLIENT" --tls localhost "$PORT_tls13" "$PL_KEY" 5 --fork >"$T/b.out" 2>"$T/b.err"
expect_eq "--budget, static client over TLS, calls from a forked child: three pass, then 429s" "3 2 0" \
	"$(pl_answers "$T/b.out" | cut -d' ' -f1-3)"
check "... the 429 names the run's budget" grep -q "the budget of \$0.0004 for this run (llmcap run --budget, run '[0-9a-f]*') reached" "$T/b.out"
pl_wait_closed "$LOG_tls13"
expect_eq "... and the provider served exactly the three" 3 "$(pl_logstat "$LOG_tls13" requests)"
expect_eq "... charged to the key as well (the run's usage counts for it)" 3 "$(pl_used requests)"
expect_eq "... nothing on stderr" "" "$(cat "$T/b.err")"
pl_reset_pair
timeout 60 "$LLMCAP" run --budget 0.0004 -- "$STATIC_CLIENT" 127.0.0.1 "$PORT_plain" "$PL_KEY" 2 \
	--exec "$GO_CLIENT" "https://localhost:$PORT_tls13/v1/chat/completions" "$PL_KEY" 3 >"$T/b.out" 2>"$T/b.err"
expect_eq "--budget, static client (plain HTTP) then the Go client it execs (TLS): one budget, three pass in all" \
	"200 200 200 429 429" "$("$PY" -c 'import json,sys; print(" ".join(str(json.loads(l)["status"]) for l in open(sys.argv[1]) if l.startswith("{")))' "$T/b.out")"
pl_wait_closed "$LOG_tls13"; pl_wait_closed "$LOG_plain"
expect_eq "... the providers served two plain calls and one TLS call" "2 1" "$(pl_logstat "$LOG_plain" requests) $(pl_logstat "$LOG_tls13" requests)"
rm -f "$T/ready" "$T/go"
timeout 60 "$LLMCAP" run --budget 0.0004 --max-requests 50 -- "$STATIC_CLIENT" 127.0.0.1 "$PORT_plain" "$PL_KEY" 1 \
	--exec sh -c "touch '$T/ready'; while [ ! -e '$T/go' ]; do sleep 0.05; done" >"$T/b.out" 2>"$T/b.err" &
BPID=$!
for i in $(seq 1 400); do [ -e "$T/ready" ] && break; sleep 0.05; done
expect_eq "llmcap status shows the supervised run while it runs: its budget, its request cap, what it used" \
	"cost:0.000162/0.0004 requests:1/50" "$(run_status)"
touch "$T/go"
wait "$BPID"
expect_eq "... the run ends with the program's status" 0 $?
expect_eq "... and is gone from status after it" "" "$(run_status)"

# exit status is the program's; no policy installed -> not supervised (llmcap not configured)
"$LLMCAP" run -- "$STATIC_CLIENT" 2>/dev/null; expect_eq "the program's exit status comes back" 2 "$?"
v=$(LLMCAP_STATE_DIR=$T/none timeout 60 "$LLMCAP" run -- "$GO_CLIENT" "http://127.0.0.1:$PORT_plain/v1/chat/completions" "$PL_KEY" 1 2>&1 |
	"$PY" -c 'import json,sys; print(json.loads(sys.stdin.readline())["status"])')
expect_eq "no policy ever installed: the Go program runs unsupervised" 200 "$v"
# a dynamically linked program runs under the supervisor too (so that what it starts is supervised),
# with the preload (which holds its own calls); a nested `llmcap run` does not stack a second
# supervisor (the kernel allows one listener per filter chain): the outer one sees that subtree
v=$("$LLMCAP" run -- sh -c 'grep "^Seccomp:" /proc/self/status | cut -f2; case $LD_PRELOAD in *libllmcap_preload.so*) echo preload;; esac')
expect_eq "a dynamically linked program runs under the supervisor's filter, with the preload" "2 preload" "$(echo $v)"
v=$("$LLMCAP" run -- "$LLMCAP" run -- sh -c 'grep "^Seccomp:" /proc/self/status | cut -f2' 2>&1)
expect_eq "a nested llmcap run runs its program under the outer supervisor" "2" "$(echo $v)"
pl_policy nested "localhost:$PORT_tls13" "127.0.0.1:$PORT_plain"
timeout 60 "$LLMCAP" run -- sh -c '"$@"' _ "$LLMCAP" run -- $(client go plain $((PL_CAP + 1))) >"$T/n.out" 2>"$T/n.err"
pl_expect_answers "Go started by a nested llmcap run inside a shell: held by the outer supervisor" "$T/n.out" "$PL_CAP" 1
finish
