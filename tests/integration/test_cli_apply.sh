#!/usr/bin/env bash
# The llmcap command line: keygen / sign / apply / status / key fingerprint, and every refusal of
# `llmcap apply` (non-zero exit, exactly one line on stderr, the installed policy still in force).
. "$(dirname "$0")/lib.sh"

setup_keys                                          # $T/keys: the trusted key (A)
"$LLMCAP" keygen --out "$T/keys2" 2>/dev/null       # B: the next key, for the rotation
"$LLMCAP" keygen --out "$T/evil" 2>/dev/null        # never trusted
SHA=$(fingerprint sk-test-ci)
ISSUED=$(iso_in_days -1)
EXPIRES=$(iso_in_days 30)
ENV_MAX=$((64 * 1024 * 1024))                        # LC_ENVELOPE_MAX

# policy VERSION HOST [EXTRA_JSON_MEMBERS] [ISSUED] [EXPIRES]: a valid policy on stdout
policy() {
	printf '{"schema": 1, "version": %s, "issued_at": "%s", "expires_at": "%s",\n' "$1" "${4:-$ISSUED}" "${5:-$EXPIRES}"
	printf ' "providers": [{"name": "p", "format": "openai", "hosts": ["%s"]}],\n' "$2"
	printf ' "unknown_keys": "block",\n'
	printf ' "keys": {"ci": {"sha256": "%s", "limits": [{"metric": "requests", "window": "daily", "threshold": 100}]}}%s}\n' \
		"$SHA" "${3:-}"
}

# raw_sign KEYDIR PAYLOAD: a DSSE envelope over the exact bytes of PAYLOAD, made without llmcap (Python's
# standard library + the openssl CLI), so that payloads `llmcap sign` would refuse can be signed.
cat >"$T/rawsign.py" <<'EOF'
import base64, json, subprocess, sys, tempfile
keydir, payload_file = sys.argv[1], sys.argv[2]
sk = base64.b64decode(open(keydir + "/llmcap.key").read().split()[1])
keyid = open(keydir + "/llmcap.pub").read().split()[2]
body = open(payload_file, "rb").read()
ptype = b"application/vnd.llmcap.policy+json"
pae = b"DSSEv1 %d %s %d " % (len(ptype), ptype, len(body)) + body
with tempfile.TemporaryDirectory() as d:
    # PKCS#8 DER of an Ed25519 key: fixed prefix + the 32-byte seed (libsodium's sk is seed || pk)
    open(d + "/k.der", "wb").write(bytes.fromhex("302e020100300506032b657004220420") + sk[:32])
    open(d + "/m", "wb").write(pae)
    sig = subprocess.run(["openssl", "pkeyutl", "-sign", "-keyform", "DER", "-inkey", d + "/k.der", "-rawin",
                          "-in", d + "/m"], check=True, capture_output=True).stdout
assert len(sig) == 64
sys.stdout.write(json.dumps({"payloadType": ptype.decode(), "payload": base64.b64encode(body).decode(),
                             "signatures": [{"keyid": keyid, "sig": base64.b64encode(sig).decode()}]}))
EOF
raw_sign() { "$PY" "$T/rawsign.py" "$1" "$2"; }

status_version() {
	"$LLMCAP" status --json 2>/dev/null | "$PY" -c 'import json, sys; print(json.load(sys.stdin)["policy"]["version"])' \
		2>/dev/null
}

TRUST_A=(--trust "$T/keys/llmcap.pub")
TRUST_AB=(--trust "$T/keys/llmcap.pub" --trust "$T/keys2/llmcap.pub")

# expect_refused DESC FILE WANT [apply args...]: apply refuses FILE (default trust: A)
expect_refused() {
	local d=$1 f=$2 want=$3 rc before after
	shift 3
	[ $# -gt 0 ] || set -- "${TRUST_A[@]}"
	"$LLMCAP" status --json >"$T/status.before" 2>/dev/null
	"$LLMCAP" apply "$@" "$f" >"$T/out" 2>"$T/err"
	rc=$?
	"$LLMCAP" status --json >"$T/status.after" 2>/dev/null
	if [ "$rc" -ne 0 ]; then ok "$d: refused (exit $rc)"; else fail "$d: apply exited 0"; fi
	if [ "$(wc -l <"$T/err")" -eq 1 ] && [ -s "$T/err" ] && [ "$(tail -c1 "$T/err" | od -An -c | tr -d ' ')" = '\n' ]; then
		ok "$d: exactly one line on stderr"
	else
		fail "$d: stderr is not one line: $(cat "$T/err")"
	fi
	if grep -q -- "$want" "$T/err"; then ok "$d: says why"; else fail "$d: stderr lacks '$want': $(cat "$T/err")"; fi
	expect_eq "$d: nothing on stdout" 0 "$(wc -c <"$T/out")"
	before=$("$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))["policy"]["version"])' "$T/status.before")
	after=$(status_version)
	expect_eq "$d: status --json still shows version $INSTALLED" "$INSTALLED" "$after"
	if cmp -s "$T/status.before" "$T/status.after"; then
		ok "$d: status unchanged"
	else
		fail "$d: status changed (before: version $before)"
	fi
}

# expect_applied DESC FILE VERSION [apply args...]
expect_applied() {
	local d=$1 f=$2 v=$3 rc
	shift 3
	[ $# -gt 0 ] || set -- "${TRUST_A[@]}"
	"$LLMCAP" apply "$@" "$f" >"$T/out" 2>"$T/err"
	rc=$?
	expect_eq "$d: exit 0" 0 "$rc"
	expect_eq "$d: status --json shows version $v" "$v" "$(status_version)"
	[ "$rc" -eq 0 ] && INSTALLED=$v
}

# ---- --help, usage errors ---------------------------------------------------------------------
for c in keygen sign apply status key run agent; do
	"$LLMCAP" "$c" --help >"$T/out" 2>"$T/err"
	rc=$?
	expect_eq "llmcap $c --help exits 0" 0 "$rc"
	if grep -q "usage: llmcap $c" "$T/out"; then ok "llmcap $c --help prints its usage on stdout"
	else fail "llmcap $c --help: no usage on stdout: $(cat "$T/out" "$T/err")"; fi
done
"$LLMCAP" --help >"$T/out" 2>&1; expect_eq "llmcap --help exits 0" 0 $?
for c in keygen sign apply status key run agent; do
	grep -q "^  $c" "$T/out" && ok "llmcap --help lists $c" || fail "llmcap --help does not list $c"
done

# usage_error DESC ARGS...: non-zero exit, a message on stderr, nothing on stdout
usage_error() {
	local d=$1 rc
	shift
	"$LLMCAP" "$@" </dev/null >"$T/out" 2>"$T/err"
	rc=$?
	if [ "$rc" -ne 0 ]; then ok "$d: exit $rc"; else fail "$d: exit 0"; fi
	if [ -s "$T/err" ]; then ok "$d: message on stderr"; else fail "$d: nothing on stderr"; fi
	expect_eq "$d: nothing on stdout" 0 "$(wc -c <"$T/out")"
}
usage_error "no command"
usage_error "unknown command" frobnicate
usage_error "keygen without --out" keygen
usage_error "keygen with a stray argument" keygen --out "$T/k3" extra
usage_error "sign without arguments" sign
usage_error "sign without --key" sign "$T/nothing.json"
usage_error "sign without a policy" sign --key "$T/keys/llmcap.key"
usage_error "apply without arguments" apply
usage_error "apply without --trust" apply "$T/nothing.signed"
usage_error "apply without a policy" apply --trust "$T/keys/llmcap.pub"
usage_error "apply with a missing trust file" apply --trust "$T/none.pub" "$T/nothing.signed"
usage_error "status with a stray argument" status --yaml
usage_error "key without a subcommand" key
usage_error "key with an unknown subcommand" key print
usage_error "key fingerprint with nothing on stdin" key fingerprint
usage_error "keygen refuses to overwrite a key" keygen --out "$T/keys"
usage_error "status before any policy" status --json

# ---- key fingerprint ----------------------------------------------------------------------------
for k in sk-test-ci 'sk-ant-api03-AbC_dEf-123' 'x'; do
	want=$(printf %s "$k" | sha256sum | cut -d' ' -f1)
	expect_eq "key fingerprint of '$k' = sha256sum" "$want" "$(printf %s "$k" | "$LLMCAP" key fingerprint)"
	expect_eq "key fingerprint ignores a trailing newline" "$want" "$(printf '%s\n' "$k" | "$LLMCAP" key fingerprint)"
done

# ---- keygen -------------------------------------------------------------------------------------
expect_eq "keygen: the secret key is mode 0600" 600 "$(stat -c %a "$T/keys/llmcap.key")"
check "keygen: the public key file has one key line" grep -qE '^llmcap-ed25519 [A-Za-z0-9+/=]+ [0-9a-f]{64}$' \
	"$T/keys/llmcap.pub"

# ---- sign refuses an invalid policy, naming the field ------------------------------------------
policy 1 v1.example >"$T/v1.json.tmp"
policy 1 v1.example ', "teams": {"t": {"limits": [{"metric": "cost", "window": "fortnightly", "threshold": 1}]}}' \
	>"$T/bad-window.json"
"$LLMCAP" sign --key "$T/keys/llmcap.key" "$T/bad-window.json" >"$T/out" 2>"$T/err"
rc=$?
if [ "$rc" -ne 0 ]; then ok "sign refuses an invalid window"; else fail "sign signed an invalid window"; fi
check "sign names teams.t.limits[0].window" grep -qF 'teams.t.limits[0].window' "$T/err"
expect_eq "sign: one line on stderr" 1 "$(wc -l <"$T/err")"
expect_eq "sign: no envelope on stdout" 0 "$(wc -c <"$T/out")"
policy 1 v1.example ', "keys2": {}' >"$T/bad-unknown.json"
"$LLMCAP" sign --key "$T/keys/llmcap.key" "$T/bad-unknown.json" >/dev/null 2>"$T/err"
check "sign names an unknown field" grep -qF 'keys2: unknown field' "$T/err"
sed 's/"version": 1,/"version": 1, "version": 2,/' "$T/bad-unknown.json" >"$T/bad-dup.json"
"$LLMCAP" sign --key "$T/keys/llmcap.key" "$T/bad-dup.json" >/dev/null 2>"$T/err"
check "sign refuses duplicate keys" grep -q 'duplicate' "$T/err"
# every element is checked, not only the first
sed 's/"hosts": \["v1.example"\]}\]/"hosts": ["v1.example"]}, {"name": "q", "format": "gemini", "hosts": ["q.example"]}]/' \
	"$T/v1.json.tmp" >"$T/bad-provider.json"
"$LLMCAP" sign --key "$T/keys/llmcap.key" "$T/bad-provider.json" >/dev/null 2>"$T/err"
check "sign names providers[1].format" grep -qF 'providers[1].format' "$T/err"
"$LLMCAP" sign --key "$T/keys/llmcap.pub" "$T/bad-window.json" >/dev/null 2>"$T/err"
if [ -s "$T/err" ]; then ok "sign refuses a public key as the signing key"; else fail "sign with a .pub key"; fi

# ---- first install ------------------------------------------------------------------------------
INSTALLED=none
policy 1 v1.example >"$T/v1.json"
"$LLMCAP" sign --key "$T/keys/llmcap.key" "$T/v1.json" >"$T/v1.signed"
expect_applied "apply v1" "$T/v1.signed" 1
check "status (table) names the version" sh -c "'$LLMCAP' status | grep -q 'policy version 1'"
# the raw signer used below agrees with llmcap (same bytes, same key -> same signature)
raw_sign "$T/keys" "$T/v1.json" >"$T/v1.raw"
"$PY" - "$T/v1.signed" "$T/v1.raw" <<'EOF' && ok "raw_sign makes llmcap's own envelope" || fail "raw_sign differs from llmcap sign"
import json, sys
a, b = (json.load(open(p)) for p in sys.argv[1:3])
sys.exit(0 if a == b else 1)
EOF

# ---- refusals -----------------------------------------------------------------------------------
policy 5 rogue.example >"$T/v5.json"
"$LLMCAP" sign --key "$T/keys/llmcap.key" "$T/v5.json" >"$T/v5.signed"

# bad signature: one payload byte flipped
"$PY" - "$T/v5.signed" >"$T/v5.flipped" <<'EOF'
import base64, json, sys
e = json.load(open(sys.argv[1]))
p = bytearray(base64.b64decode(e["payload"]))
i = p.index(b"rogue")
p[i] ^= 1
e["payload"] = base64.b64encode(bytes(p)).decode()
sys.stdout.write(json.dumps(e))
EOF
expect_refused "bad signature (flipped payload byte)" "$T/v5.flipped" "signature"
"$PY" - "$T/v5.signed" >"$T/v5.badsig" <<'EOF'
import base64, json, sys
e = json.load(open(sys.argv[1]))
s = bytearray(base64.b64decode(e["signatures"][0]["sig"]))
s[3] ^= 0x80
e["signatures"][0]["sig"] = base64.b64encode(bytes(s)).decode()
sys.stdout.write(json.dumps(e))
EOF
expect_refused "bad signature (flipped signature byte)" "$T/v5.badsig" "signature"

# untrusted key
"$LLMCAP" sign --key "$T/evil/llmcap.key" "$T/v5.json" >"$T/v5.evil"
expect_refused "untrusted key" "$T/v5.evil" "signature"
expect_refused "untrusted key (trust holding A and B)" "$T/v5.evil" "signature" "${TRUST_AB[@]}"

# truncated
size=$(stat -c %s "$T/v5.signed")
head -c $((size / 2)) "$T/v5.signed" >"$T/v5.half"
expect_refused "truncated file (half)" "$T/v5.half" "envelope"
head -c $((size - 4)) "$T/v5.signed" >"$T/v5.short"
expect_refused "truncated file (last bytes cut)" "$T/v5.short" "envelope"
: >"$T/empty.signed"
expect_refused "empty file" "$T/empty.signed" "envelope"

# oversized: a genuine envelope padded with JSON whitespace to one byte over the cap, and far over it
"$PY" -c 'import sys; d = open(sys.argv[1], "rb").read(); sys.stdout.buffer.write(d + b" " * (int(sys.argv[2]) + 1 - len(d)))' \
	"$T/v5.signed" "$ENV_MAX" >"$T/v5.big"
expect_eq "the oversized file is one byte over the cap" $((ENV_MAX + 1)) "$(stat -c %s "$T/v5.big")"
expect_refused "oversized file (cap + 1 byte)" "$T/v5.big" "over the $ENV_MAX-byte cap"
head -c $((ENV_MAX * 2)) /dev/zero | tr '\0' ' ' >>"$T/v5.big"
expect_refused "oversized file (3 x cap)" "$T/v5.big" "over the $ENV_MAX-byte cap"

# duplicate JSON keys inside the signed payload
sed 's/"version": 5,/"version": 5, "version": 6,/' "$T/v5.json" >"$T/v5dup.json"
raw_sign "$T/keys" "$T/v5dup.json" >"$T/v5dup.signed"
expect_refused "duplicate JSON keys in the signed payload" "$T/v5dup.signed" "duplicate"

# unknown fields inside the signed payload
policy 5 rogue.example ', "bogus": true' >"$T/v5unk.json"
raw_sign "$T/keys" "$T/v5unk.json" >"$T/v5unk.signed"
expect_refused "unknown field in the signed payload" "$T/v5unk.signed" "bogus: unknown field"
policy 5 rogue.example ', "org": {"period": "monthly", "cap": 1}' >"$T/v5unk2.json"
raw_sign "$T/keys" "$T/v5unk2.json" >"$T/v5unk2.signed"
expect_refused "unknown nested field in the signed payload" "$T/v5unk2.signed" "org.cap: unknown field"

# expired
policy 5 rogue.example '' "$(iso_in_days -60)" "$(iso_in_days -1)" >"$T/v5old.json"
"$LLMCAP" sign --key "$T/keys/llmcap.key" "$T/v5old.json" >"$T/v5old.signed"
expect_refused "expired policy" "$T/v5old.signed" "expires_at"

# ---- a higher version, then a rotation ---------------------------------------------------------
policy 2 v2.example >"$T/v2.json"
"$LLMCAP" sign --key "$T/keys/llmcap.key" "$T/v2.json" >"$T/v2.signed"
expect_applied "a higher version (v2, key A)" "$T/v2.signed" 2 "${TRUST_AB[@]}"
policy 3 v3.example >"$T/v3.json"
"$LLMCAP" sign --key "$T/keys2/llmcap.key" "$T/v3.json" >"$T/v3.signed"
expect_refused "v3 signed by B, host trusts only A" "$T/v3.signed" "signature"
expect_applied "rotation: v3 signed by B, trust holds A and B" "$T/v3.signed" 3 "${TRUST_AB[@]}"
cat "$T/keys/llmcap.pub" "$T/keys2/llmcap.pub" >"$T/both.pub"
policy 4 v4.example >"$T/v4.json"
"$LLMCAP" sign --key "$T/keys/llmcap.key" "$T/v4.json" >"$T/v4.signed"
expect_applied "rotation: v4 signed by A, one trust file holding A and B" "$T/v4.signed" 4 --trust "$T/both.pub"

# ---- rollback, substitution, re-apply ----------------------------------------------------------
expect_refused "rollback to v1" "$T/v1.signed" "rollback" "${TRUST_AB[@]}"
expect_refused "rollback to v3" "$T/v3.signed" "rollback" "${TRUST_AB[@]}"
policy 4 rogue.example >"$T/v4sub.json"
"$LLMCAP" sign --key "$T/keys/llmcap.key" "$T/v4sub.json" >"$T/v4sub.signed"
expect_refused "same version, different bytes (substitution)" "$T/v4sub.signed" "substitution" "${TRUST_AB[@]}"

"$LLMCAP" status --json >"$T/status.before"
"$LLMCAP" apply --trust "$T/both.pub" "$T/v4.signed" >"$T/out" 2>"$T/err"
expect_eq "re-applying identical bytes: exit 0" 0 $?
check "re-applying identical bytes says it is already installed" grep -q 'already installed' "$T/err"
"$LLMCAP" status --json >"$T/status.after"
check "re-applying identical bytes changes nothing" cmp -s "$T/status.before" "$T/status.after"

# status --json has DESIGN.md's shape
"$PY" - "$T/status.after" <<'EOF' && ok "status --json has the documented shape" || fail "status --json shape"
import json, sys
s = json.load(open(sys.argv[1]))
assert s["policy"]["version"] == 4 and isinstance(s["policy"]["expires_at"], str)
lim = [l for l in s["limits"] if l["scope"] == "key" and l["id"] == "ci"]
assert len(lim) == 1, s["limits"]
l = lim[0]
assert (l["metric"], l["window"], l["threshold"]) == ("requests", "daily", 100), l
for k in ("used", "reserved", "resets_at"):
    assert k in l, k
EOF

# the example policies users copy from are valid
for f in "$LC_ROOT"/examples/policies/*.json; do
	check "examples/policies/$(basename "$f") signs (it validates)" \
		sh -c '"$1" sign --key "$2" "$3" > /dev/null' _ "$LLMCAP" "$T/keys/llmcap.key" "$f"
done

finish
