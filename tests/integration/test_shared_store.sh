#!/usr/bin/env bash
# A store shared by several users (README "A store shared by several users"): root makes a setgid
# state directory owned by a group and applies; the files become group read-write, so a member's
# program under llmcap is held to the policy (200, then 429), never answered 503; a user outside
# the group gets the 503 of an unusable store. Users are plain numeric ids (setpriv), no accounts.
. "$(dirname "$0")/lib.sh"
PL_CAP=2
. "$(dirname "$0")/test_preload_lib.inc"
if [ "$(id -u)" -ne 0 ] || ! command -v setpriv >/dev/null; then
	ok "# SKIP needs root and setpriv"; finish; exit 0
fi
GID=4242; MEMBER=4243; OTHER=4244
chmod 755 "$T"
pl_init
chmod -R a+rX "$PL_CERT"
pl_provider tls $(pl_tls_args 1.3)
U=https://localhost:$PORT_tls/v1/chat/completions
BODY='{"model":"gpt-4o-mini","max_tokens":20,"messages":[{"role":"user","content":"hi"}]}'

D=$T/state-shared
mkdir "$D"; chgrp "$GID" "$D"; chmod 2755 "$D"
umask 022
pl_policy shared "localhost:$PORT_tls"          # as root, into the setgid directory
expect_eq "apply used the prepared directory" "$D" "$LLMCAP_STATE_DIR"
for f in data.mdb lock.mdb; do
	expect_eq "$f: group $GID, group read-write" "$GID rw" "$(stat -c '%g %A' "$D/$f" | sed 's/ ....\(..\).*/ \1/')"
done

as() { # UID GROUPS CMD...: run CMD as a plain numeric user
	local u=$1 g=$2 grp=--clear-groups; shift 2
	[ -n "$g" ] && grp=--groups=$g
	setpriv --reuid="$u" --regid="$u" "$grp" env LLMCAP_STATE_DIR="$D" HOME=/nonexistent "$@"
}
call() { # UID GROUPS: one chat call under the preload as that user -> its status
	as "$1" "$2" env LD_PRELOAD="$PRELOAD" curl -sS -o /dev/null -w '%{http_code}' --cacert "$PL_CERT/ca.pem" \
		-H "Authorization: Bearer $PL_KEY" -H 'Content-Type: application/json' -d "$BODY" "$U" 2>>"$T/calls.err"
}
v="$(call $MEMBER $GID) $(call $MEMBER $GID) $(call $MEMBER $GID)"
expect_eq "a group member's curl is held to the policy (cap 2): 200 200 429, no 503" "200 200 429" "$v"
expect_eq "the member's calls printed nothing" "" "$(cat "$T/calls.err")"
v=$(as $MEMBER $GID "$LLMCAP" status --json | "$PY" -c 'import json,sys; print([l["used"] for l in json.load(sys.stdin)["limits"] if l["metric"]=="requests"][0])')
expect_eq "the member's llmcap status reads the shared counters" 2 "$v"
v=$(LD_PRELOAD=$PRELOAD curl -sS -o /dev/null -w '%{http_code}' --cacert "$PL_CERT/ca.pem" \
	-H "Authorization: Bearer $PL_KEY" -d "$BODY" "$U" 2>/dev/null)
expect_eq "root's own call counts against the same cap" 429 "$v"
: >"$T/calls.err"
v=$(call $OTHER "")
expect_eq "a user outside the group gets the 503 of an unusable store (not a pass)" 503 "$v"
[ "$(wc -l <"$T/calls.err")" -eq 1 ] && ok "outsider: one stderr line ($(cut -c1-120 "$T/calls.err"))" ||
	fail "outsider stderr: $(cat "$T/calls.err")"
as $MEMBER $GID rm -f "$D/anchor" 2>/dev/null
[ -f "$D/anchor" ] && ok "a member cannot remove the anchor (directory 2755)" || fail "the member removed the anchor"
finish
