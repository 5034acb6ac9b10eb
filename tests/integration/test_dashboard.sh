#!/usr/bin/env bash
# The web dashboard in a real browser: headless Chromium (apt chromium), driven over the
# DevTools protocol (tests/provider/dashboard_drive.py), signs in, creates a key with a limit,
# sends traffic through the preload, sees the usage bar move, edits the limit's alert levels and
# customers' budget alert levels in the forms (saved by the server), toggles the limit, renders
# every page at 1280x800 and at phone width (no sideways scrolling). Screenshots:
# build/test-logs/dashboard-*.png.
# Also, with curl: the session cookie's flags, CSRF and Origin checks, the files' headers.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/server_lib.sh"
SHOTS=$B/test-logs
mkdir -p "$SHOTS"

start_fleet
# the traffic below runs between `agent --once` rounds: leases (on by default, which need a running
# agent) are off here; their own suite is test_server_leases
api PUT /v1/admin/settings '{"leases":false}'
api PUT /v1/admin/providers '{"providers":[{"name":"local","format":"openai","hosts":["127.0.0.1:'"$PORT_p"'"]}]}'
api PUT /v1/admin/prices '{"prices":{"gpt-4o-mini":{"input":0,"output":1000000,"max_output_tokens":64}}}'
api PUT /v1/admin/org '{"spend_cap_usd":1000,"period":"monthly","warning_threshold_usd":800}'
api PUT /v1/admin/teams/finance '{"limits":[{"metric":"cost","window":"monthly","threshold":300,"alert_at":200}]}'
expect_code "setup" 201

# --- the files and the session, with curl
CODE=$(curl -s -D "$T/h" -o "$T/index.html" -w '%{http_code}' "$SRV_URL/")
expect_eq "GET / serves the dashboard without a token" 200 "$CODE"
check "... as HTML" grep -qi '^content-type: text/html' "$T/h"
check "... with a Content-Security-Policy that allows only the server itself" grep -qi "^content-security-policy: default-src 'self'" "$T/h"
check "... and no framing" grep -qi '^x-frame-options: DENY' "$T/h"
check "no third-party asset in the page" bash -c '! grep -Eq "(src|href)=\"(https?:)?//" "$1"' _ "$T/index.html"
CODE=$(curl -s -o /dev/null -w '%{http_code} %{content_type}' "$SRV_URL/ui/app.js")
expect_eq "the script is served by the server" "200 text/javascript; charset=utf-8" "$CODE"
CODE=$(curl -s -o /dev/null -w '%{http_code}' "$SRV_URL/ui/session")
expect_eq "no session: 401" 401 "$CODE"
CODE=$(curl -s -D "$T/h" -o "$T/resp" -w '%{http_code}' -X POST -H 'content-type: application/json' \
	--data-binary '{"token":"wrong-token-wrong-token"}' "$SRV_URL/ui/session")
expect_eq "sign in with a wrong token: 401" 401 "$CODE"
check "... and no cookie" bash -c '! grep -qi "^set-cookie" "$1"' _ "$T/h"
CODE=$(curl -s -D "$T/h" -o "$T/resp" -w '%{http_code}' -X POST -H 'content-type: application/json' \
	--data-binary '{"token":"'"$TOKEN"'"}' "$SRV_URL/ui/session")
expect_eq "sign in with the admin token: 200" 200 "$CODE"
COOKIE=$(grep -i '^set-cookie:' "$T/h" | tr -d '\r')
check "session cookie: HttpOnly" grep -qi 'httponly' <<<"$COOKIE"
check "session cookie: SameSite=Strict" grep -qi 'samesite=strict' <<<"$COOKIE"
check "session cookie: Path=/" grep -qi 'path=/' <<<"$COOKIE"
SID=$(sed -n 's/.*llmcap_session=\([0-9a-f]*\).*/\1/p' <<<"$COOKIE")
CSRF=$(jget 'j["csrf"]')
check "a 64-hex session id and CSRF token" test ${#SID} -eq 64 -a ${#CSRF} -eq 64
C=(-H "Cookie: llmcap_session=$SID")
CODE=$(curl -s -o "$T/resp" -w '%{http_code}' "${C[@]}" "$SRV_URL/v1/admin/teams")
expect_eq "the session reads the admin API" 200 "$CODE"
CODE=$(curl -s -o "$T/resp" -w '%{http_code}' "${C[@]}" -X PUT --data-binary '{"limits":[]}' "$SRV_URL/v1/admin/teams/x")
expect_eq "a change with the session but no CSRF token: 403" 403 "$CODE"
CODE=$(curl -s -o "$T/resp" -w '%{http_code}' "${C[@]}" -H "X-LLMCAP-CSRF: ${CSRF%?}$([ "${CSRF: -1}" = 0 ] && echo 1 || echo 0)" -X PUT --data-binary '{"limits":[]}' "$SRV_URL/v1/admin/teams/x")
expect_eq "a wrong CSRF token: 403" 403 "$CODE"
CODE=$(curl -s -o "$T/resp" -w '%{http_code}' "${C[@]}" -H "X-LLMCAP-CSRF: $CSRF" -H "Origin: http://evil.example" \
	-X PUT --data-binary '{"limits":[]}' "$SRV_URL/v1/admin/teams/x")
expect_eq "another site's Origin: 403" 403 "$CODE"
CODE=$(curl -s -o "$T/resp" -w '%{http_code}' "${C[@]}" -H "X-LLMCAP-CSRF: $CSRF" -H "Origin: $SRV_URL" \
	-X PUT --data-binary '{"limits":[]}' "$SRV_URL/v1/admin/teams/x")
expect_eq "session + CSRF token + same Origin: the change is made" 201 "$CODE"
CODE=$(curl -s -o "$T/resp" -w '%{http_code}' -H "Cookie: llmcap_session=$(printf '%064d' 0)" "$SRV_URL/v1/admin/teams")
expect_eq "an unknown session: 401" 401 "$CODE"
CODE=$(curl -s -o /dev/null -w '%{http_code}' "${C[@]}" -X DELETE "$SRV_URL/ui/session")
expect_eq "sign out needs the CSRF token too" 403 "$CODE"
CODE=$(curl -s -o /dev/null -w '%{http_code}' "${C[@]}" -H "X-LLMCAP-CSRF: $CSRF" -X DELETE "$SRV_URL/ui/session")
expect_eq "sign out" 200 "$CODE"
CODE=$(curl -s -o /dev/null -w '%{http_code}' "${C[@]}" "$SRV_URL/v1/admin/teams")
expect_eq "the session is gone after signing out" 401 "$CODE"

# --- the browser
enroll "$LLMCAP_STATE_DIR" || fail "enroll the host"
cat >"$T/traffic.sh" <<TRAFFIC
set -e
export LLMCAP_STATE_DIR=$LLMCAP_STATE_DIR
"$LLMCAP" agent --server "$SRV_URL" --trust "$T/keys/llmcap.pub" --once 2>>"$T/agent.err"
out=\$("$CHAT" --url "$PURL" --key sk-dashboard-key --max-tokens 20 --count 2 2>>"$T/chat.err" | tr '\n' ' ')
echo "statuses: \$out"
[ "\$out" = "200 200 " ]
"$LLMCAP" agent --server "$SRV_URL" --trust "$T/keys/llmcap.pub" --once 2>>"$T/agent.err"
TRAFFIC
timeout 600 "$PY" "$LC_ROOT/tests/provider/dashboard_drive.py" "$SRV_URL" "$TOKEN" "$SHOTS" "$T/traffic.sh" >"$T/drive.out" 2>&1
rc=$?
while IFS= read -r line; do
	case $line in
	"ok - "*) ok "browser: ${line#ok - }" ;;
	"not ok - "*) fail "browser: ${line#not ok - }" ;;
	esac
done <"$T/drive.out"
[ $rc -eq 0 ] || { fail "the browser run ended with $rc"; tail -20 "$T/drive.out"; }
for p in signin limits keys keys-alert-levels keys-toggled customers-levels limits-1280 spend-1280 keys-1280 \
	teams-1280 customers-1280 invites-1280 hosts-1280 limits-phone spend-phone keys-phone teams-phone \
	customers-phone invites-phone hosts-phone; do
	check "screenshot dashboard-$p.png saved" test -s "$SHOTS/dashboard-$p.png"
done
finish
