#!/usr/bin/env bash
# llmcap-server: the admin API (every call, success and refusal), the signed policy with
# ETag/If-None-Match, invites, and a restart that loses nothing.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/server_lib.sh"

setup_keys
SHA1=$(fingerprint sk-one)
SHA2=$(fingerprint sk-two)
SHA3=$(fingerprint sk-three)

# --- command line refusals
"$SERVER" >/dev/null 2>&1; expect_eq "no arguments: usage, exit 2" 2 $?
printf 'short\n' >"$T/short.token"
"$SERVER" --listen 127.0.0.1:1 --data "$T/x" --signing-key "$T/keys/llmcap.key" --admin-token-file "$T/short.token" \
	>/dev/null 2>&1
expect_eq "a short admin token is refused" 1 $?
"$SERVER" --listen 127.0.0.1:1 --data "$T/x" --signing-key "$T/keys/llmcap.pub" --admin-token-file "$T/admin.token" \
	>/dev/null 2>&1
expect_eq "a public key as signing key is refused" 1 $?
"$SERVER" --listen nonsense --data "$T/x" --signing-key "$T/keys/llmcap.key" --admin-token-file "$T/admin.token" \
	>/dev/null 2>&1
expect_eq "a bad --listen is refused" 2 $?

start_server
noauth GET /healthz; expect_code "healthz" 200

# --- the policy: an initial version is published at once
noauth GET /v1/policy; expect_code "GET /v1/policy serves the initial policy" 200 payloadType
curl -s -D "$T/h" -o "$T/env1" "$SRV_URL/v1/policy"
ETAG1=$(grep -i '^etag:' "$T/h" | cut -d' ' -f2 | tr -d '\r')
check "the policy has an ETag" test -n "$ETAG1"
CODE=$(curl -s -o /dev/null -w '%{http_code}' -H "If-None-Match: $ETAG1" "$SRV_URL/v1/policy")
expect_eq "If-None-Match with the current ETag -> 304" 304 "$CODE"
check "the envelope verifies and installs with llmcap apply" "$LLMCAP" apply --trust "$T/keys/llmcap.pub" "$T/env1"
api GET /v1/admin/policy; expect_eq "initial policy is version 1" 1 "$(jget 'j["version"]')"

# --- authentication
for ep in "GET /v1/admin/keys" "POST /v1/admin/keys" "PUT /v1/admin/org" "GET /v1/usage" "PUT /v1/admin/teams/x" \
	"POST /v1/admin/invites" "PUT /v1/admin/settings" "DELETE /v1/admin/keys/x"; do
	set -- $ep
	noauth "$1" "$2" '{}'
	expect_code "$ep without a token -> 401" 401 authentication_error
done
CODE=$(curl -s -o "$T/resp" -w '%{http_code}' -H 'Authorization: Bearer wrong-token-wrong-token' "$SRV_URL/v1/admin/keys")
expect_eq "a wrong token -> 401" 401 "$CODE"
CODE=$(curl -s -o "$T/resp" -w '%{http_code}' -H "Authorization: Basic $TOKEN" "$SRV_URL/v1/admin/keys")
expect_eq "a non-Bearer scheme -> 401" 401 "$CODE"
check "401 body is {error:{message,type}}" grep -q '"error":{"message":' "$T/resp"

# --- teams
api PUT /v1/admin/teams/research '{"limits":[{"metric":"cost","window":"monthly","threshold":300}]}'
expect_code "PUT team -> 201" 201
api PUT /v1/admin/teams/research '{"limits":[{"metric":"cost","window":"monthly","threshold":250,"alert_at":200}]}'
expect_code "PUT the same team again -> 200" 200
api PUT /v1/admin/teams/bad '{"limits":[{"metric":"cost","window":"fortnightly","threshold":1}]}'
expect_code "invalid team limit -> 400 naming the field" 400 "teams.bad.limits[0].window"
api GET /v1/admin/teams/research; expect_code "GET team" 200 '"threshold":250'
api GET /v1/admin/teams/nope; expect_code "GET unknown team -> 404" 404 not_found_error
api GET /v1/admin/teams; expect_code "list teams" 200 research

# --- keys
V0=$(curl -s -H "Authorization: Bearer $TOKEN" "$SRV_URL/v1/admin/policy" | jget 'j["version"]' /dev/stdin)
api POST /v1/admin/keys '{"id":"ci","sha256":"'"$SHA1"'","team":"research","limits":[{"metric":"cost","window":"lifetime","threshold":50},{"metric":"requests","window":"daily","threshold":10000,"alert_at":8000}]}'
expect_code "POST key -> 201" 201 '"id":"ci"'
expect_eq "the change published version+1" $((V0 + 1)) "$(jget 'j["policy_version"]')"
api POST /v1/admin/keys '{"id":"ci","sha256":"'"$SHA2"'"}'
expect_code "duplicate key id -> 409" 409 conflict_error
api POST /v1/admin/keys '{"id":"other","sha256":"'"$SHA1"'"}'
expect_code "duplicate sha256 -> 409" 409 "already exists"
api POST /v1/admin/keys '{"id":"k2"}'
expect_code "key without sha256 -> 400" 400 sha256
api POST /v1/admin/keys '{"id":"k2","sha256":"nothex"}'
expect_code "bad sha256 -> 400" 400 sha256
api POST /v1/admin/keys '{"id":"bad/id","sha256":"'"$SHA2"'"}'
expect_code "bad key id -> 400" 400 "id:"
api POST /v1/admin/keys '{"id":"k2","sha256":"'"$SHA2"'","limits":[{"metric":"cost","window":"daily","threshold":-1}]}'
expect_code "negative threshold -> 400 naming the field" 400 "keys.k2.limits[0].threshold"
api POST /v1/admin/keys '{"id":"k2","sha256":"'"$SHA2"'","team":"ghost"}'
expect_code "key naming an unknown team -> 400" 400 "keys.k2.team"
api POST /v1/admin/keys '{"id":"k2","sha256":"'"$SHA2"'","colour":"red"}'
expect_code "unknown field -> 400" 400 "colour"
api POST /v1/admin/keys '{"id":"k2",'
expect_code "malformed JSON -> 400" 400 "malformed JSON"
api POST /v1/admin/keys '{"id":"k2","id":"k3","sha256":"'"$SHA2"'"}'
expect_code "duplicate JSON keys -> 400" 400 "malformed JSON"
api POST /v1/admin/keys '[1,2]'
expect_code "a non-object body -> 400" 400 "object"
api GET /v1/admin/policy
expect_eq "refused changes published nothing" $((V0 + 1)) "$(jget 'j["version"]')"
api GET /v1/admin/keys/ci; expect_code "GET key" 200 "$SHA1"
api GET /v1/admin/keys/nope; expect_code "GET unknown key -> 404" 404 "no key 'nope'"
api PATCH /v1/admin/keys/ci '{"limits":{"1":{"enabled":false}},"expires_at":"2099-01-01T00:00:00Z"}'
expect_code "PATCH toggles a limit off and sets expiry" 200 '"enabled":false'
api GET /v1/admin/policy
expect_eq "the policy carries the toggle" false "$(jget 'j["keys"]["ci"]["limits"][1]["enabled"]')"
expect_eq "the policy carries the expiry" 2099-01-01T00:00:00Z "$(jget 'j["keys"]["ci"]["expires_at"]')"
api PATCH /v1/admin/keys/ci '{"limits":[{"metric":"cost","window":"monthly","threshold":40}],"expires_at":null}'
expect_code "PATCH replaces limits and clears expiry" 200 '"threshold":40'
api PATCH /v1/admin/keys/ci '{"limits":{"7":{"enabled":false}}}'
expect_code "PATCH of a missing limit index -> 400" 400 "limits.7"
api PATCH /v1/admin/keys/ci '{"limits":[{"metric":"money","window":"monthly","threshold":40}]}'
expect_code "PATCH with an invalid limit -> 400" 400 "keys.ci.limits[0].metric"
api PATCH /v1/admin/keys/ci '{"owner":"x"}'
expect_code "PATCH unknown field -> 400" 400 owner
api PATCH /v1/admin/keys/nope '{"revoked":false}'
expect_code "PATCH unknown key -> 404" 404
api POST /v1/admin/keys '{"id":"tmp","sha256":"'"$SHA2"'","limits":[]}'
expect_code "second key" 201
api DELETE /v1/admin/keys/tmp; expect_code "DELETE revokes" 200 '"revoked":true'
api GET /v1/admin/policy
expect_eq "revoked key stays in the policy, revoked" true "$(jget 'j["keys"]["tmp"]["revoked"]')"
api DELETE /v1/admin/keys/nope; expect_code "DELETE unknown key -> 404" 404
api GET /v1/admin/keys; expect_code "list keys" 200 '"tmp"'
api DELETE /v1/admin/teams/research; expect_code "DELETE a team still in use -> 409" 409 "still used"
api PUT /v1/admin/teams/empty '{"limits":[]}'
api DELETE /v1/admin/teams/empty; expect_code "DELETE an unused team" 200
api DELETE /v1/admin/teams/empty; expect_code "DELETE it again -> 404" 404

# --- org
api PUT /v1/admin/org '{"spend_cap_usd":1000,"period":"monthly","warning_threshold_usd":800}'
expect_code "PUT org" 200 '"spend_cap_usd":1000'
api PUT /v1/admin/org '{"spend_cap_usd":null,"period":"monthly"}'
expect_code "PUT org with an unlimited cap" 200 '"spend_cap_usd":null'
api PUT /v1/admin/org '{"spend_cap_usd":-3}'
expect_code "negative cap -> 400" 400 "org.spend_cap_usd"
api PUT /v1/admin/org '{"spend_cap_usd":100,"period":"yearly"}'
expect_code "bad period -> 400" 400 "org.period"
api PUT /v1/admin/org '{"spend_cap_usd":500,"period":"monthly","warning_threshold_usd":400}'
api GET /v1/admin/org; expect_code "GET org" 200 '"spend_cap_usd":500'

# --- customers
api PUT /v1/admin/customers '{"identify":["header:x-customer-id"],"monthly_budget_usd":10,"rate_limit_rpm":60}'
expect_code "PUT customer defaults" 200 monthly_budget_usd
api PUT /v1/admin/customers '{"monthly_budget_usd":"ten"}'
expect_code "bad customer budget -> 400" 400 "customers.monthly_budget_usd"
api PUT /v1/admin/customers/acme '{"monthly_budget_usd":250,"rate_limit_rpm":600}'
expect_code "PUT a customer override -> 201" 201 acme
api PUT /v1/admin/customers/acme '{"monthly_budget_usd":-1}'
expect_code "bad override -> 400" 400 "customers.overrides.acme"
api GET /v1/admin/customers/acme; expect_code "GET override" 200 250
api GET /v1/admin/customers; expect_code "GET defaults" 200 '"rate_limit_rpm":60'
api DELETE /v1/admin/customers/nobody; expect_code "DELETE unknown override -> 404" 404

# --- webhooks, providers, prices, settings
api PUT /v1/admin/webhooks '{"webhooks":[{"url":"http://127.0.0.1:9/hook","secret":"whsec_x","events":["*"]}]}'
expect_code "PUT webhooks" 200 whsec_x
api PUT /v1/admin/webhooks '{"webhooks":{}}'
expect_code "webhooks not an array -> 400" 400 webhooks
api PUT /v1/admin/webhooks '{"webhooks":[{"url":"http://x","secret":"s","events":["*"],"retries":3}]}'
expect_code "webhook unknown field -> 400" 400 "notifications.webhooks[0]"
api PUT /v1/admin/providers '{"providers":[{"name":"local","format":"openai","hosts":["127.0.0.1:9999"]}]}'
expect_code "PUT providers" 200 local
api PUT /v1/admin/providers '{"providers":[{"name":"x","format":"gopher","hosts":["a"]}]}'
expect_code "bad provider format -> 400" 400 "providers[0].format"
api PUT /v1/admin/prices '{"prices":{"gpt-4o-mini":{"input":0.15,"cached_input":0.075,"output":0.6,"max_output_tokens":16384}}}'
expect_code "PUT prices" 200 '"input":0.15'
api PUT /v1/admin/prices '{"prices":{"m":{"input":"cheap"}}}'
expect_code "bad price -> 400" 400 "prices.m"
api PUT /v1/admin/settings '{"unknown_keys":"block","unknown_models":"allow","policy_lifetime_days":10}'
expect_code "PUT settings" 200 policy_lifetime_days
api GET /v1/admin/policy
EXP=$(jget 'j["expires_at"]'); ISS=$(jget 'j["issued_at"]')
expect_eq "the lifetime setting sets expires_at" 864000 $(($(date -u -d "$EXP" +%s) - $(date -u -d "$ISS" +%s)))
api PUT /v1/admin/settings '{"unknown_keys":"sometimes"}'
expect_code "bad unknown_keys -> 400" 400 unknown_keys
api PUT /v1/admin/settings '{"policy_lifetime_days":0}'
expect_code "zero lifetime -> 400" 400 policy_lifetime_days
api PUT /v1/admin/settings '{"unknown_keys":"allow","unknown_models":"allow"}'

# --- invites
api POST /v1/admin/invites '{"limits":[{"metric":"cost","window":"monthly","threshold":5}],"team":"research"}'
expect_code "POST invite -> 201 with a code" 201 '"code"'
ICODE=$(jget 'j["code"]')
api POST /v1/admin/invites '{"limits":[{"metric":"cost","window":"sometimes","threshold":5}]}'
expect_code "invite with an invalid limit -> 400" 400 "limits[0].window"
api POST /v1/admin/invites '{"limits":[],"team":"ghost"}'
expect_code "invite naming an unknown team -> 400" 400 team
api POST /v1/admin/invites '{"team":"research"}'
expect_code "invite without limits -> 400" 400 limits
api POST /v1/admin/invites '{"limits":[],"expires_at":"2001-01-01T00:00:00Z"}'
expect_code "invite expiring in the past -> 400" 400 expires_at
noauth POST "/v1/invites/$ICODE/redeem" '{"sha256":"zz"}'
expect_code "redeem with a bad sha256 -> 400" 400 sha256
noauth POST "/v1/invites/$ICODE/redeem" '{"sha256":"'"$SHA1"'"}'
expect_code "redeem with a fingerprint already used -> 409" 409
noauth POST "/v1/invites/$ICODE/redeem" '{"sha256":"'"$SHA3"'"}'
expect_code "redeem (no admin token) -> 201" 201 '"threshold":5'
KID=$(jget 'j["id"]')
noauth POST "/v1/invites/$ICODE/redeem" '{"sha256":"'"$SHA3"'"}'
expect_code "second redeem -> 410" 410 "already redeemed"
noauth POST "/v1/invites/0123456789abcdef/redeem" '{"sha256":"'"$SHA3"'"}'
expect_code "unknown invite -> 404" 404
noauth GET "/v1/invites/$ICODE/redeem"
expect_code "GET on redeem -> 405" 405
# the redeemed key is in the signed policy before its first request
curl -s -o "$T/env2" "$SRV_URL/v1/policy"
check "the new policy installs" "$LLMCAP" apply --trust "$T/keys/llmcap.pub" "$T/env2"
"$LLMCAP" status --json >"$T/status.json"
expect_eq "the invited key's limit is on the host" 5.0 "$("$PY" -c 'import json,sys; j=json.load(open(sys.argv[1]))
print([l["threshold"] for l in j["limits"] if l["scope"]=="key" and l["id"]==sys.argv[2]][0])' "$T/status.json" "$KID")"

# --- ETag moves with the version
CODE=$(curl -s -o /dev/null -w '%{http_code}' -H "If-None-Match: $ETAG1" "$SRV_URL/v1/policy")
expect_eq "the old ETag no longer matches -> 200" 200 "$CODE"

# --- method and path refusals
noauth PUT /v1/policy '{}'; expect_code "PUT /v1/policy -> 405" 405 method_not_allowed
api PUT /v1/admin/invites '{}'; expect_code "PUT invites -> 405" 405
api POST /v1/admin/org '{}'; expect_code "POST org -> 405" 405
api DELETE /v1/usage; expect_code "DELETE usage -> 405" 405
api GET /v1/admin/nothing; expect_code "unknown admin path -> 404" 404
noauth GET /v2/policy; expect_code "unknown path -> 404" 404
head -c 5000000 /dev/zero | tr '\0' 'a' >"$T/big"
CODE=$(curl -s -o "$T/resp" -w '%{http_code}' -X PUT -H "Authorization: Bearer $TOKEN" --data-binary @"$T/big" \
	"$SRV_URL/v1/admin/prices")
expect_eq "a body over the cap -> 413" 413 "$CODE"

# --- restart: nothing lost
api GET /v1/admin/policy; VBEFORE=$(jget 'j["version"]')
curl -s -D "$T/h" -o /dev/null "$SRV_URL/v1/policy"; ETAGB=$(grep -i '^etag:' "$T/h" | cut -d' ' -f2 | tr -d '\r')
stop_server
start_server
api GET /v1/admin/policy
expect_eq "after a restart: same version" "$VBEFORE" "$(jget 'j["version"]')"
expect_eq "after a restart: keys kept" "$SHA1" "$(jget 'j["keys"]["ci"]["sha256"]')"
expect_eq "after a restart: org kept" 500 "$(jget 'j["org"]["spend_cap_usd"]')"
CODE=$(curl -s -o /dev/null -w '%{http_code}' -H "If-None-Match: $ETAGB" "$SRV_URL/v1/policy")
expect_eq "after a restart: same ETag -> 304" 304 "$CODE"
noauth POST "/v1/invites/$ICODE/redeem" '{"sha256":"'"$(fingerprint sk-four)"'"}'
expect_code "after a restart: a redeemed invite stays redeemed" 410

# --- a new signing key re-signs at start; hosts trusting only the old key refuse it
mkdir -p "$T/keys2"
"$LLMCAP" keygen --out "$T/keys2" >/dev/null
stop_server
"$SERVER" --listen "127.0.0.1:$SRV_PORT" --data "$T/srvdata" --signing-key "$T/keys2/llmcap.key" \
	--admin-token-file "$T/admin.token" >>"$T/server.log" 2>&1 &
SRV_PID=$!; _pids+=("$SRV_PID"); wait_port "$SRV_PORT"
api GET /v1/admin/policy
expect_eq "a new signing key publishes version+1" $((VBEFORE + 1)) "$(jget 'j["version"]')"
curl -s -o "$T/env3" "$SRV_URL/v1/policy"
"$LLMCAP" apply --trust "$T/keys/llmcap.pub" "$T/env3" 2>/dev/null
expect_eq "a host trusting only the old key refuses it" 1 $?
check "a host trusting the new key installs it" "$LLMCAP" apply --trust "$T/keys2/llmcap.pub" "$T/env3"
stop_server

finish
