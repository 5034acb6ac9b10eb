#!/usr/bin/env bash
# `llmcap run` with programs the preload cannot hold: a Go net/http client (Debian's golang-go,
# dynamically linked with cgo; Go's net package makes raw system calls) and a statically linked
# musl C client. Both run under the connect() supervisor (seccomp user notification): a
# connection to a provider is refused at once (ECONNREFUSED within 100 ms, one stderr line; the
# provider never even sees a connection), over TLS and plain HTTP; other hosts pass untouched;
# children inherit the supervision. Both clients are built by this test (cached in the build dir).
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/test_preload_lib.inc"
SUP=$B/tests/supervised
mkdir -p "$SUP"
GO_CLIENT=$SUP/go_client STATIC_CLIENT=$SUP/static_client
if [ ! -x "$GO_CLIENT" ] || [ "$LC_ROOT/tests/supervised/go_client.go" -nt "$GO_CLIENT" ]; then
	(cd "$LC_ROOT/tests/supervised" && GOCACHE=$SUP/go-cache GOPATH=$SUP/gopath GOFLAGS=-mod=mod \
		go build -o "$GO_CLIENT" go_client.go) >"$T/go-build.log" 2>&1 || echo "# go build: $(tail -3 "$T/go-build.log")"
fi
if [ ! -x "$STATIC_CLIENT" ] || [ "$LC_ROOT/tests/supervised/static_client.c" -nt "$STATIC_CLIENT" ]; then
	musl-gcc -static -O2 -o "$STATIC_CLIENT" "$LC_ROOT/tests/supervised/static_client.c" 2>"$T/musl.log" ||
		echo "# musl-gcc: $(tail -3 "$T/musl.log")"
fi
check "the Go client was built (golang-go)" test -x "$GO_CLIENT"
check "the static musl client was built (musl-tools)" test -x "$STATIC_CLIENT"
pl_init
pl_provider tls13 $(pl_tls_args 1.3)
pl_provider plain
pl_provider other $(pl_tls_args 1.3)          # not in the policy
pl_provider otherplain                        # not in the policy
pl_policy sup "localhost:$PORT_tls13" "127.0.0.1:$PORT_plain"
export SSL_CERT_FILE=$PL_CERT/ca.pem

# refused DESC OUT ERR: every call refused within 100 ms, one stderr line per call naming why
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
		"$(grep -c 'llmcap: refused a connection to provider .*cannot hold its calls' "$err")"
}

for p in tls13 plain; do
	port_var=PORT_$p; log_var=LOG_$p; port=${!port_var}; log=${!log_var}
	if [ "$p" = plain ]; then url=http://127.0.0.1:$port/v1/chat/completions; else url=https://localhost:$port/v1/chat/completions; fi
	: >"$log"
	timeout 60 "$LLMCAP" run -- "$GO_CLIENT" "$url" "$PL_KEY" 3 >"$T/go.out" 2>"$T/go.err"
	refused "Go net/http $p" "$T/go.out" "$T/go.err"
	host=localhost; [ "$p" = plain ] && host=127.0.0.1
	timeout 60 "$LLMCAP" run -- "$STATIC_CLIENT" "$host" "$port" "$PL_KEY" 3 >"$T/st.out" 2>"$T/st.err"
	refused "static musl client $p" "$T/st.out" "$T/st.err"
	timeout 60 "$LLMCAP" run -- "$STATIC_CLIENT" "$host" "$port" "$PL_KEY" 2 --fork >"$T/stf.out" 2>"$T/stf.err"
	refused "static musl client $p, calls from a forked child" "$T/stf.out" "$T/stf.err"
	pl_wait_closed "$log"
	expect_eq "$p: the provider saw no connection at all" "0 0" "$(pl_logstat "$log" conns) $(pl_logstat "$log" bytes_total)"
done
expect_eq "nothing was charged" 0 "$(pl_used requests)"

# other hosts pass untouched under the supervisor
v=$(timeout 60 "$LLMCAP" run -- "$GO_CLIENT" "https://localhost:$PORT_other/v1/chat/completions" "$PL_KEY" 2 2>"$T/o.err" |
	"$PY" -c 'import json,sys; print(" ".join(str(json.loads(l)["status"]) for l in sys.stdin))')
expect_eq "Go net/http to a host that is not a provider: answered" "200 200" "$v"
expect_eq "...and nothing on stderr" "" "$(cat "$T/o.err")"
v=$("$LLMCAP" run -- "$STATIC_CLIENT" 127.0.0.1 "$PORT_otherplain" "$PL_KEY" 1 2>&1 | head -1)
case "$v" in *'"status": 200'*) ok "static client to a host that is not a provider: answered ($v)" ;;
	*) fail "static client to a non-provider: $v" ;; esac

# a dynamically linked child of a supervised program is held by the preload, not refused
: >"$LOG_plain"
v=$(timeout 60 "$LLMCAP" run -- "$STATIC_CLIENT" 127.0.0.1 "$PORT_plain" "$PL_KEY" 0 --exec curl -sS -o /dev/null \
	-w '%{http_code}' -H "Authorization: Bearer $PL_KEY" -H 'Content-Type: application/json' \
	-d '{"model":"gpt-4o-mini","max_tokens":20,"messages":[{"role":"user","content":"hi"}]}' \
	"http://127.0.0.1:$PORT_plain/v1/chat/completions" 2>"$T/child.err")
expect_eq "curl started by a supervised static program: held by the preload (allowed, charged)" "200 1" "$v $(pl_used requests)"

# exit status is the program's; no policy installed -> not supervised (llmcap not configured)
"$LLMCAP" run -- "$STATIC_CLIENT" 2>/dev/null; expect_eq "the program's exit status comes back" 2 "$?"
v=$(LLMCAP_STATE_DIR=$T/none timeout 60 "$LLMCAP" run -- "$GO_CLIENT" "http://127.0.0.1:$PORT_plain/v1/chat/completions" "$PL_KEY" 1 2>&1 |
	"$PY" -c 'import json,sys; print(json.loads(sys.stdin.readline())["status"])')
expect_eq "no policy ever installed: the Go program runs unsupervised" 200 "$v"
# a dynamically linked program is not supervised (the preload holds it)
v=$("$LLMCAP" run -- sh -c 'grep -c Seccomp: /proc/self/status; grep "^Seccomp:" /proc/self/status | cut -f2')
expect_eq "a dynamically linked program runs with the preload, not under seccomp" "1 0" "$(echo $v)"
finish
