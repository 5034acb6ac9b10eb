#!/usr/bin/env bash
# A damaged store never kills a program (issue 12): data.mdb truncated to a half, a quarter or
# 0 bytes, deleted, or its first 8 KiB intact and the rest overwritten. Every program under
# llmcap (curl and python under the preload, the SDK's examples/chat, `llmcap status`) answers
# provider calls with a 503 and ONE stderr line, and exits normally (never 128+N). A lost store
# does not fail open: the anchor keeps the installed version, re-applying it recovers, and an
# older version is refused as a rollback.
. "$(dirname "$0")/lib.sh"
PL_CAP=50
. "$(dirname "$0")/test_preload_lib.inc"
pl_init
pl_provider tls $(pl_tls_args 1.3)
U=https://localhost:$PORT_tls/v1/chat/completions
BODY='{"model":"gpt-4o-mini","max_tokens":20,"messages":[{"role":"user","content":"hi"}]}'

pl_policy good "localhost:$PORT_tls"
GOOD=$LLMCAP_STATE_DIR
v=$(LD_PRELOAD=$PRELOAD curl -sS -o /dev/null -w '%{http_code}' --cacert "$PL_CERT/ca.pem" \
	-H "Authorization: Bearer $PL_KEY" -d "$BODY" "$U")
expect_eq "an intact store: a call passes" 200 "$v"
"$PY" - "$GOOD/data.mdb" <<'PYEOF'   # some pages beyond the first 8 KiB to damage
import sys; sz = __import__("os").path.getsize(sys.argv[1]); assert sz > 8192, sz
PYEOF
cp -a "$GOOD" "$T/pristine"
[ -f "$GOOD/anchor" ] && ok "apply wrote the anchor next to data.mdb" || fail "no anchor in $GOOD"

# damage MODE DIR
damage() {
	local f=$2/data.mdb sz
	sz=$(stat -c %s "$f")
	case $1 in
	half)    truncate -s $((sz / 2)) "$f" ;;
	quarter) truncate -s $((sz / 4)) "$f" ;;
	empty)   truncate -s 0 "$f" ;;
	deleted) rm -f "$f" ;;
	zeros)   head -c $((sz - 8192)) /dev/zero | dd of="$f" bs=8192 seek=1 conv=notrunc 2>/dev/null ;;
	garbage*) # a fixed pseudo-random pattern per mode (the same bytes on every run)
		"$PY" -c 'import random,sys; r=random.Random(sys.argv[2]); f=open(sys.argv[1],"r+b"); f.seek(8192); f.write(bytes(r.getrandbits(8) for _ in range(int(sys.argv[3])-8192)))' "$f" "$1" "$sz" ;;
	esac
}

# one_line FILE: exactly one line, naming the store
one_line() { [ "$(wc -l <"$1")" -eq 1 ] && grep -q 'llmcap' "$1"; }
no_signal() { [ "$1" -lt 128 ]; }

for mode in half quarter empty deleted zeros garbage1 garbage2 garbage3; do
	rm -rf "$T/st-$mode"; cp -a "$T/pristine" "$T/st-$mode"
	damage "$mode" "$T/st-$mode"
	export LLMCAP_STATE_DIR=$T/st-$mode

	v=$(LD_PRELOAD=$PRELOAD curl -sS -o /dev/null -w '%{http_code}' --cacert "$PL_CERT/ca.pem" \
		-H "Authorization: Bearer $PL_KEY" -d "$BODY" "$U" 2>"$T/curl.err"); rc=$?
	no_signal $rc && expect_eq "$mode: curl under the preload gets a 503" 503 "$v" ||
		fail "$mode: curl died (exit $rc)"
	one_line "$T/curl.err" && ok "$mode: curl: one stderr line" || fail "$mode: curl stderr: $(head -3 "$T/curl.err")"

	pl_py requests "$U" 2 >"$T/py.out" 2>"$T/py.err"; rc=$?
	v=$("$PY" -c 'import json,sys; print(" ".join(str(json.loads(l)["status"]) for l in open(sys.argv[1])))' "$T/py.out" 2>&1)
	no_signal $rc && expect_eq "$mode: python requests under the preload gets 503, twice" "503 503" "$v" ||
		fail "$mode: python died (exit $rc)"
	one_line "$T/py.err" && ok "$mode: python: one stderr line for two calls" ||
		fail "$mode: python stderr: $(head -3 "$T/py.err")"

	v=$("$CHAT" --url "$U" --key "$PL_KEY" --cacert "$PL_CERT/ca.pem" --count 2 2>"$T/chat.err" | tr '\n' ' '); rc=${PIPESTATUS[0]}
	no_signal $rc && expect_eq "$mode: the SDK (examples/chat) gets 503, twice" "503 503 " "$v" ||
		fail "$mode: chat died (exit $rc)"
	one_line "$T/chat.err" && ok "$mode: SDK: one stderr line" || fail "$mode: chat stderr: $(head -3 "$T/chat.err")"

	"$LLMCAP" status >/dev/null 2>"$T/status.err"; rc=$?
	[ $rc -eq 1 ] && ok "$mode: llmcap status fails with exit 1" || fail "$mode: llmcap status exit $rc"
	one_line "$T/status.err" && grep -q "$LLMCAP_STATE_DIR" "$T/status.err" &&
		ok "$mode: llmcap status says what is wrong with which store ($(cut -c1-150 "$T/status.err"))" ||
		fail "$mode: status stderr: $(head -3 "$T/status.err")"
done
expect_eq "no damaged store let a call reach the provider" 1 \
	"$("$PY" "$LC_ROOT/tests/provider/logstat.py" "$LOG_tls" --path /v1/chat/completions | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["requests"])')"

# ---- many damages (fixed patterns): llmcap status never dies of one ----
died=""
for i in $(seq 1 40); do
	rm -rf "$T/st-many"; cp -a "$T/pristine" "$T/st-many"
	"$PY" -c '
import random, sys
f, seed = sys.argv[1], int(sys.argv[2])
r = random.Random(seed); data = bytearray(open(f, "rb").read()); n = len(data) // 4096
if seed % 2:    # everything past the meta pages
    data[8192:] = bytes(r.getrandbits(8) for _ in range(len(data) - 8192))
else:           # one page, or a few bytes
    p = r.randrange(2, n)
    if seed % 4: data[p * 4096:(p + 1) * 4096] = bytes(r.getrandbits(8) for _ in range(4096))
    else:
        for _ in range(8): data[r.randrange(8192, len(data))] = r.getrandbits(8)
open(f, "wb").write(data)' "$T/st-many/data.mdb" "$i"
	LLMCAP_STATE_DIR=$T/st-many timeout 30 "$LLMCAP" status >/dev/null 2>"$T/many.err"; rc=$?
	{ [ $rc -ge 128 ] || [ "$(wc -l <"$T/many.err")" -gt 1 ]; } && died="$died $i(exit $rc: $(head -c 80 "$T/many.err"))"
done
expect_eq "40 damaged stores: llmcap status exits normally with at most one line, every time" "" "$died"

# ---- a store damaged under a running program: the next call is a 503, not a SIGBUS ----
rm -rf "$T/st-live"; cp -a "$T/pristine" "$T/st-live"
export LLMCAP_STATE_DIR=$T/st-live
cat >"$T/live.py" <<PYEOF
import json, os, ssl, sys, urllib.request
ctx = ssl.create_default_context(cafile="$PL_CERT/ca.pem")
def call():
    req = urllib.request.Request("$U", data=b'$BODY', headers={"Authorization": "Bearer $PL_KEY", "Content-Type": "application/json"})
    try:
        return urllib.request.urlopen(req, context=ctx).status
    except urllib.error.HTTPError as e:
        return e.code
a = call()
f = "$T/st-live/data.mdb"
os.truncate(f, os.path.getsize(f) // 2)
print(a, call(), call())
PYEOF
v=$(LD_PRELOAD=$PRELOAD timeout 30 "$PY" "$T/live.py" 2>"$T/live.err"); rc=$?
no_signal $rc && expect_eq "truncated under a running python: 200, then 503 503" "200 503 503" "$v" ||
	fail "running python died (exit $rc): $(head -3 "$T/live.err")"
[ "$(wc -l <"$T/live.err")" -le 1 ] && ok "running python: at most one stderr line" || fail "live stderr: $(head -3 "$T/live.err")"

# ---- a lost store does not fail open; the anchor's ratchet survives it ----
export LLMCAP_STATE_DIR=$T/st-empty
pol=$T/policy-good.json
"$LLMCAP" apply --trust "$T/keys/llmcap.pub" "$pol.signed" >"$T/reapply.out" 2>&1 &&
	ok "re-applying the installed policy recovers an emptied store" || fail "re-apply: $(cat "$T/reapply.out")"
v=$(LD_PRELOAD=$PRELOAD curl -sS -o /dev/null -w '%{http_code}' --cacert "$PL_CERT/ca.pem" \
	-H "Authorization: Bearer $PL_KEY" -d "$BODY" "$U" 2>/dev/null)
expect_eq "after the re-apply: calls pass again" 200 "$v"

export LLMCAP_STATE_DIR=$T/st-deleted
sed 's/"version": 1,/"version": 2,/' "$pol" >"$T/v2.json"
"$LLMCAP" sign --key "$T/keys/llmcap.key" "$T/v2.json" >"$T/v2.json.signed"
"$LLMCAP" apply --trust "$T/keys/llmcap.pub" "$T/v2.json.signed" >/dev/null 2>&1 || fail "apply v2 after deletion"
rm -f "$LLMCAP_STATE_DIR/data.mdb"
"$LLMCAP" apply --trust "$T/keys/llmcap.pub" "$pol.signed" 2>"$T/rollback.err"; rc=$?
[ $rc -ne 0 ] && grep -q "rollback refused" "$T/rollback.err" &&
	ok "a deleted store does not reset the ratchet: version 1 after 2 is a rollback" ||
	fail "rollback after deletion: rc $rc $(cat "$T/rollback.err")"
sed 's/"version": 1,/"version": 2, "unknown_keys": "block",/; s/"unknown_keys": "allow", //' "$pol" >"$T/v2b.json"
"$LLMCAP" sign --key "$T/keys/llmcap.key" "$T/v2b.json" >"$T/v2b.json.signed"
"$LLMCAP" apply --trust "$T/keys/llmcap.pub" "$T/v2b.json.signed" 2>"$T/subst.err"; rc=$?
[ $rc -ne 0 ] && grep -q "substitution refused" "$T/subst.err" &&
	ok "a deleted store: another policy with the anchored version is refused" ||
	fail "substitution after deletion: rc $rc $(cat "$T/subst.err")"
"$LLMCAP" apply --trust "$T/keys/llmcap.pub" "$T/v2.json.signed" >/dev/null 2>&1 &&
	"$LLMCAP" status >/dev/null 2>&1 && ok "the anchored policy itself restores the deleted store" ||
	fail "re-apply v2 after deletion"
finish
