#!/usr/bin/env bash
# The preload never breaks the host program: `llmcap run`, fail modes (no policy -> pass; policy
# known but store unusable -> 503 for LLM API calls, everything else untouched), errno, threads,
# exec (setuid targets refused under the shim), non-network programs, unpriced provider calls,
# non-provider hosts, the less common send paths (sendmmsg/recvmmsg, splice, TCP Fast Open).
. "$(dirname "$0")/lib.sh"
PL_CAP=5
. "$(dirname "$0")/test_preload_lib.inc"
pl_init
pl_provider tls13 $(pl_tls_args 1.3)
pl_provider other $(pl_tls_args 1.2)
pl_provider plain
U=https://localhost:$PORT_tls13/v1/chat/completions
JSON_BODY='{"model":"gpt-4o-mini","max_tokens":20,"messages":[{"role":"user","content":"hi"}]}'

# ---- llmcap run ----
v=$("$LLMCAP" run -- sh -c 'printf %s "$LD_PRELOAD"')
expect_eq "llmcap run sets LD_PRELOAD to the library's absolute path" "$PRELOAD" "$v"
v=$(LD_PRELOAD=/lib/x86_64-linux-gnu/libz.so.1 "$LLMCAP" run -- sh -c 'printf %s "$LD_PRELOAD"')
expect_eq "llmcap run keeps an existing LD_PRELOAD" "$PRELOAD:/lib/x86_64-linux-gnu/libz.so.1" "$v"
"$LLMCAP" run --help | grep -q 'usage: llmcap run' && ok "llmcap run --help" || fail "llmcap run --help"
cp /bin/true "$T/suid-true"; chmod u+s "$T/suid-true"
"$LLMCAP" run -- "$T/suid-true" 2>"$T/run.err"; rc=$?
[ "$rc" -ne 0 ] && grep -q setuid "$T/run.err" && ok "llmcap run refuses a setuid program" || fail "setuid: rc $rc $(cat "$T/run.err")"
cp /bin/true "$T/sgid-true"; chmod g+s "$T/sgid-true"
"$LLMCAP" run -- "$T/sgid-true" 2>"$T/run.err"; rc=$?
[ "$rc" -ne 0 ] && grep -q setgid "$T/run.err" && ok "llmcap run refuses a setgid program" || fail "setgid: rc $rc $(cat "$T/run.err")"
cp /bin/true "$T/cap-true"
if setcap cap_net_raw+ep "$T/cap-true" 2>/dev/null; then
	"$LLMCAP" run -- "$T/cap-true" 2>"$T/run.err"; rc=$?
	[ "$rc" -ne 0 ] && grep -q capabilities "$T/run.err" && ok "llmcap run refuses a file-capability program" ||
		fail "setcap: rc $rc $(cat "$T/run.err")"
else
	ok "# SKIP setcap unavailable here"
fi
"$LLMCAP" run -- nosuch-command-xyz 2>/dev/null; expect_eq "llmcap run: unknown command exits 127" 127 $?

# llmcap run end to end: the curl CLI is held to the cap
pl_policy run "localhost:$PORT_tls13"
for i in 1 2 3 4 5 6; do
	"$LLMCAP" run -- curl -sS -o /dev/null -w '%{http_code}\n' --cacert "$PL_CERT/ca.pem" \
		-H "Authorization: Bearer $PL_KEY" -H 'Content-Type: application/json' -d "$JSON_BODY" "$U"
done >"$T/run.out" 2>&1
expect_eq "llmcap run -- curl: 5 allowed then 429" "200 200 200 200 200 429" "$(tr '\n' ' ' <"$T/run.out" | sed 's/ $//')"

# ---- threads: 8 threads x 2 calls, separate connections, cap 5 ----
pl_policy threads "localhost:$PORT_tls13"
LD_PRELOAD=$PRELOAD "$PY" - "$U" "$PL_KEY" "$PL_CERT/ca.pem" >"$T/threads.out" 2>&1 <<'PYEOF'
import concurrent.futures, json, sys, requests
url, key, ca = sys.argv[1:4]
body = {"model": "gpt-4o-mini", "max_tokens": 20, "messages": [{"role": "user", "content": "hi"}]}
def call(i):
    with requests.Session() as s:
        return [s.post(url, json=body, headers={"Authorization": "Bearer " + key}, verify=ca, timeout=10).status_code
                for _ in range(2)]
with concurrent.futures.ThreadPoolExecutor(8) as ex:
    codes = sum(ex.map(call, range(8)), [])
print(codes.count(200), codes.count(429), len(codes))
PYEOF
expect_eq "8 threads x 2 calls against cap 5: 5 allowed, 11 blocked" "5 11 16" "$(cat "$T/threads.out")"
expect_eq "threads: requests charged" 5 "$(pl_used requests)"

# ---- errno and plain programs ----
v=$(LD_PRELOAD=$PRELOAD "$PY" -c '
import errno, os, socket
r = []
for f in (lambda: os.close(987), lambda: os.read(987, 1), lambda: os.write(987, b"x")):
    try: f()
    except OSError as e: r.append(e.errno == errno.EBADF)
s = socket.socket()
try: s.connect(("127.0.0.1", 1))
except OSError as e: r.append(e.errno == errno.ECONNREFUSED)
print(all(r) and len(r) == 4)')
expect_eq "errno preserved through close/read/write/connect hooks" True "$v"
out=$(printf 'a\nb\n' | LD_PRELOAD=$PRELOAD sort -r | LD_PRELOAD=$PRELOAD cat)
expect_eq "non-network programs run unchanged" "b a" "$(echo $out)"

# ---- unpriced provider call and non-provider host: passed, not charged ----
pl_policy unpriced "localhost:$PORT_tls13"
v=$(LD_PRELOAD=$PRELOAD curl -sS -o /dev/null -w '%{http_code}' --cacert "$PL_CERT/ca.pem" \
	-H "Authorization: Bearer $PL_KEY" "https://localhost:$PORT_tls13/v1/models")
expect_eq "GET /v1/models on a provider passes" 200 "$v"
v=$(LD_PRELOAD=$PRELOAD curl -sS -o /dev/null -w '%{http_code}' --cacert "$PL_CERT/ca.pem" \
	-H "Authorization: Bearer $PL_KEY" -H 'Content-Type: application/json' -d "$JSON_BODY" \
	"https://localhost:$PORT_other/v1/chat/completions")
expect_eq "a chat call to a host that is not a provider passes" 200 "$v"
expect_eq "neither is charged" 0 "$(pl_used requests)"

# ---- a 2 MiB body through curl (Expect: 100-continue): allowed without curl's 1 s wait ----
pl_policy big "localhost:$PORT_tls13"
"$PY" -c 'import json; print(json.dumps({"model": "gpt-4o-mini", "max_tokens": 20, "messages": [{"role": "user", "content": "x" * 2000000}]}))' >"$T/big.json"
v=$(LD_PRELOAD=$PRELOAD curl -sS -o /dev/null -w '%{http_code} %{time_total}' --cacert "$PL_CERT/ca.pem" \
	-H "Authorization: Bearer $PL_KEY" -H 'Content-Type: application/json' --data-binary @"$T/big.json" "$U")
set -- $v
expect_eq "2 MiB request body: allowed" 200 "$1"
expect_eq "2 MiB request body: charged once" 1 "$(pl_used requests)"
# the same request without the Expect header (so nothing to wait for), to the same provider: on a
# loaded machine the 2 MiB call itself can take most of a second, so the wait is what is compared
t2=$2
v=$(LD_PRELOAD=$PRELOAD curl -sS -o /dev/null -w '%{time_total}' --cacert "$PL_CERT/ca.pem" -H 'Expect:' \
	-H "Authorization: Bearer $PL_KEY" -H 'Content-Type: application/json' --data-binary @"$T/big.json" "$U")
"$PY" -c "import sys; sys.exit(0 if float('$t2') < 0.8 or float('$t2') < float('$v') + 0.8 else 1)" &&
	ok "2 MiB request body: no 1 s Expect wait ($t2 s; without the Expect header $v s)" ||
	fail "2 MiB request body took $t2 s (without the Expect header $v s)"

# ---- TLS the shim cannot see into (no libssl in the process: Go, static Node, ...): refused ----
"$PY" -c '
import ssl, sys
i, o = ssl.MemoryBIO(), ssl.MemoryBIO()
s = ssl.create_default_context().wrap_bio(i, o, server_hostname="localhost")
try: s.do_handshake()
except ssl.SSLWantReadError: pass
open(sys.argv[1], "wb").write(o.read())' "$T/hello.bin"
pl_wait_closed "$LOG_tls13"; : >"$LOG_tls13"
LD_PRELOAD=$PRELOAD "$PY" - "$T/hello.bin" "$PORT_tls13" "$PORT_other" >"$T/opaque.out" 2>"$T/opaque.err" <<'PYEOF'
import socket, sys
hello = open(sys.argv[1], "rb").read()
assert "ssl" not in sys.modules and "_ssl" not in sys.modules
for port in sys.argv[2:]:
    s = socket.create_connection(("127.0.0.1", int(port)))
    try:
        s.sendall(hello); print("sent")
    except OSError as e:
        print("refused", e.errno)
    s.close()
PYEOF
expect_eq "ClientHello to a provider from a process without libssl: refused (EACCES); other hosts pass" \
	"refused 13 sent" "$(tr '\n' ' ' <"$T/opaque.out" | sed 's/ $//')"
grep -q 'cannot hold' "$T/opaque.err" && ok "... with one line on stderr" || fail "no stderr line: $(cat "$T/opaque.err")"
pl_wait_closed "$LOG_tls13"
expect_eq "... and the provider got no byte" 0 "$(pl_logstat "$LOG_tls13" bytes_total)"

# ---- exec of a setuid program from a process under the shim: refused (EPERM), others run ----
v=$("$LLMCAP" run -- bash -c '"$1"; echo "rc=$?"; /bin/true; echo "true=$?"' _ "$T/suid-true" 2>"$T/exec.err")
expect_eq "under the shim: exec of a setuid program fails (126), a normal exec works" "rc=126 true=0" "$(echo $v)"
grep -q 'Operation not permitted' "$T/exec.err" && grep -q 'llmcap: refusing to exec .*setuid' "$T/exec.err" &&
	ok "... with EPERM and one llmcap line on stderr" || fail "exec stderr: $(cat "$T/exec.err")"
v=$("$LLMCAP" run -- "$PY" -c '
import errno, os, subprocess, sys
r = []
for f in (lambda: os.posix_spawn(sys.argv[1], [sys.argv[1]], dict(os.environ)),
          lambda: (os.environ.update(PATH=os.path.dirname(sys.argv[1]) + ":/usr/bin:/bin"),
                   os.posix_spawnp(os.path.basename(sys.argv[1]), ["x"], dict(os.environ))),
          lambda: subprocess.run([sys.argv[1]])):
    try: f(); r.append("ran")
    except OSError as e: r.append(errno.errorcode.get(e.errno, e.errno))
r.append(subprocess.run(["/bin/true"]).returncode)
print(*r)' "$T/sgid-true" 2>/dev/null)
expect_eq "under the shim: posix_spawn, posix_spawnp, subprocess of a setgid program: EPERM; /bin/true runs" \
	"EPERM EPERM EPERM 0" "$v"
v=$(env -u LD_PRELOAD "$T/suid-true"; echo $?)
expect_eq "without the shim in LD_PRELOAD the setuid program runs" 0 "$v"

# ---- sendmmsg/recvmmsg, splice from a pipe, sendto(MSG_FASTOPEN) to a plain-HTTP provider ----
mmsg_c() { local mode=$1 n=$2; LD_PRELOAD=$PRELOAD timeout 30 "$B/tests/bin/lc_mmsg" 127.0.0.1 "$PORT_plain" "$PL_KEY" "$mode" "$n"; }
for mode in mmsg splice fastopen sendto-addr; do
	pl_scenario "lc_mmsg $mode (plain HTTP)" "$LOG_plain" "mm-$mode" "127.0.0.1:$PORT_plain" -- mmsg_c "$mode"
done
# untracked fds: splice and sendmmsg between ordinary descriptors pass straight through
v=$(LD_PRELOAD=$PRELOAD "$PY" -c '
import os, socket
r, w = os.pipe(); os.write(w, b"hello"); os.close(w)
a, b = socket.socketpair()
n = os.splice(r, a.fileno(), 5)
print(n, b.recv(16).decode())')
expect_eq "splice from a pipe into an untracked socket passes" "5 hello" "$v"

# the engine library's objects, named from the sources as the Makefile names them (a stale
# object of a file since removed or split is not one of them)
engine_objs() {
	local f
	for f in "$LC_ROOT"/preload/*.c "$LC_ROOT"/shared-state/*.c; do
		f=${f#"$LC_ROOT"/}
		case $f in preload/hook_* | preload/shim.c | preload/engine_api.c) continue ;; esac
		echo "$B/obj-preload/${f%.c}.o"
	done
	echo "$B"/obj-preload/gen/*.o
}

# ---- an engine library built from a different preload.h is refused, not misread ----
# (struct lc_target gets one more field in a copy of the header; only engine_api.c is rebuilt
# against it, so the table's version and size are unchanged and only the layout value differs)
mkdir -p "$T/skew"
sed 's/^\tint port;$/\tint port;\n\tint added_by_test;/' "$LC_ROOT/preload/preload.h" >"$T/skew/preload.h"
cp "$LC_ROOT/preload/engine_api.c" "$T/skew/"
if grep -q added_by_test "$T/skew/preload.h" &&
   cc -std=gnu11 -O2 -fPIC -fvisibility=hidden -D_GNU_SOURCE -I"$LC_ROOT/shared-state" -I"$LC_ROOT/preload" \
	-c "$T/skew/engine_api.c" -o "$T/skew/engine_api.o" &&
   cc -shared -o "$T/skew/libllmcap_preload_engine.so" "$T/skew/engine_api.o" \
	$(engine_objs) \
	-llmdb -ljansson -lsodium -lz -lpthread -ldl -lm; then
	cp "$PRELOAD" "$T/skew/libllmcap_preload.so"
	pl_policy skew "localhost:$PORT_tls13"
	v=$(LD_PRELOAD=$T/skew/libllmcap_preload.so curl -sS -o /dev/null -w '%{http_code}' --cacert "$PL_CERT/ca.pem" \
		-H "Authorization: Bearer $PL_KEY" -H 'Content-Type: application/json' -d "$JSON_BODY" "$U" 2>"$T/skew.err")
	grep -q 'engine library does not match' "$T/skew.err" &&
		ok "engine with another struct layout: refused at load with one line ($(head -1 "$T/skew.err" | cut -c1-90))" ||
		fail "engine with another struct layout was loaded (status $v, stderr: $(head -c 300 "$T/skew.err"))"
	expect_eq "engine with another struct layout: one stderr line" 1 "$(wc -l <"$T/skew.err")"
	expect_eq "engine with another struct layout: nothing was charged through it" 0 "$(pl_used requests)"
	v=$(LD_PRELOAD=$PRELOAD curl -sS -o /dev/null -w '%{http_code}' --cacert "$PL_CERT/ca.pem" \
		-H "Authorization: Bearer $PL_KEY" -H 'Content-Type: application/json' -d "$JSON_BODY" "$U" 2>"$T/skew.err")
	expect_eq "the matching engine next to it holds the same call (charged)" "200 1" "$v $(pl_used requests)"
else
	fail "could not build the skewed engine library"
fi

# ---- fail modes ----
export LLMCAP_STATE_DIR=$T/no-such-state
v=$(LD_PRELOAD=$PRELOAD curl -sS -o /dev/null -w '%{http_code}' --cacert "$PL_CERT/ca.pem" \
	-H "Authorization: Bearer $PL_KEY" -d "$JSON_BODY" "$U" 2>"$T/nostate.err")
expect_eq "no policy ever installed: provider calls pass" 200 "$v"
expect_eq "no policy ever installed: nothing on stderr" "" "$(cat "$T/nostate.err")"
[ ! -e "$T/no-such-state" ] && ok "the shim did not create a state directory" || fail "state dir created"

pl_policy corrupt "localhost:$PORT_tls13"
pl_wait_closed "$LOG_tls13"; : >"$LOG_tls13"
dd if=/dev/urandom of="$LLMCAP_STATE_DIR/data.mdb" bs=4096 count=4 conv=notrunc 2>/dev/null
LD_PRELOAD=$PRELOAD true 2>"$T/true.err"
expect_eq "store unusable: a program that never connects prints nothing" "" "$(cat "$T/true.err")"
pl_py requests "$U" 1 >"$T/corrupt.out" 2>"$T/corrupt.err"
v=$("$PY" -c 'import json,sys; d=json.loads(open(sys.argv[1]).readline()); print(d["status"], d["retry_after"], d["x_should_retry"])' "$T/corrupt.out" 2>&1)
expect_eq "store unusable, policy known: LLM call answered 503 with retry-after, x-should-retry false" "503 60 false" "$v"
[ "$(wc -l <"$T/corrupt.err")" -ge 1 ] && [ "$(wc -l <"$T/corrupt.err")" -le 3 ] &&
	ok "store unusable: a short error on stderr ($(head -1 "$T/corrupt.err" | cut -c1-100))" ||
	fail "store unusable stderr: $(head -5 "$T/corrupt.err")"
v=$(LD_PRELOAD=$PRELOAD curl -sS -o /dev/null -w '%{http_code}' --cacert "$PL_CERT/ca.pem" \
	"https://localhost:$PORT_tls13/v1/models" 2>/dev/null)
expect_eq "store unusable: non-LLM calls still pass" 200 "$v"
pl_wait_closed "$LOG_tls13"
expect_eq "store unusable: the provider got no LLM call" 0 \
	"$("$PY" "$LC_ROOT/tests/provider/logstat.py" "$LOG_tls13" --path /v1/chat/completions | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["requests"])')"
finish
