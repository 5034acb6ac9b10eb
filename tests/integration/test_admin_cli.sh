#!/usr/bin/env bash
# `llmcap admin` against a real llmcap-server: every resource, tables and --json, the token from
# --token-file or LLMCAP_ADMIN_TOKEN, server errors on one line, and the docs/server.md examples.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/server_lib.sh"

setup_keys
start_server
export LLMCAP_SERVER=$SRV_URL
ADM=("$LLMCAP" admin --token-file "$T/admin.token")
# run_adm ARGS...: sets OUT (stdout), ERR (stderr), RC
run_adm() { "${ADM[@]}" "$@" >"$T/out" 2>"$T/err"; RC=$?; OUT=$(cat "$T/out"); ERR=$(cat "$T/err"); }
SHA1=$(fingerprint sk-admin-one)
SHA2=$(fingerprint sk-admin-two)

# --- token and server
env -u LLMCAP_ADMIN_TOKEN "$LLMCAP" admin keys >/dev/null 2>"$T/err"; RC=$?
expect_eq "no token: exit 1" 1 "$RC"
check "no token: says how to pass one" grep -q "LLMCAP_ADMIN_TOKEN" "$T/err"
LLMCAP_ADMIN_TOKEN=$TOKEN "$LLMCAP" admin keys >"$T/out" 2>&1
expect_eq "LLMCAP_ADMIN_TOKEN works" 0 $?
LLMCAP_ADMIN_TOKEN=wrong-token-wrong-token "$LLMCAP" admin keys >"$T/out" 2>"$T/err"; RC=$?
expect_eq "wrong token: exit 1" 1 "$RC"
expect_eq "wrong token: one line" 1 "$(wc -l <"$T/err")"
check "wrong token: the server's 401 and message" grep -q "401 authentication_error: admin token required" "$T/err"
"$LLMCAP" admin --server "http://127.0.0.1:$(free_port)" --token-file "$T/admin.token" keys >/dev/null 2>"$T/err"
expect_eq "server down: exit 1" 1 $?
check "server down: says it cannot reach it" grep -q "cannot reach http://127.0.0.1" "$T/err"
"$LLMCAP" admin --server ftp://x --token-file "$T/admin.token" keys >/dev/null 2>"$T/err"
check "a non-http --server is refused" grep -q "expected http" "$T/err"

# --- the docs/server.md example, step by step (curl equivalents in the docs)
run_adm org set --spend-cap 1000 --period monthly --warning 800
expect_eq "org set" 0 "$RC"
api GET /v1/admin/org
expect_eq "org stored: spend cap" 1000 "$(jget 'j["spend_cap_usd"]')"
expect_eq "org stored: warning" 800 "$(jget 'j["warning_threshold_usd"]')"
run_adm org set --warning 900
api GET /v1/admin/org
expect_eq "org set keeps the fields it did not name" "1000 900" "$(jget 'j["spend_cap_usd"]') $(jget 'j["warning_threshold_usd"]')"
run_adm org set --alert-at 50%,80% --projected yes
api GET /v1/admin/org
expect_eq "org set --alert-at --projected: the org's levels and projection" '1000 900 ["50%", "80%"] true' \
	"$(jget 'j["spend_cap_usd"]') $(jget 'j["warning_threshold_usd"]') $(jget 'json.dumps(j["alert_at"])') $(jget 'j["alert_projected"]')"
run_adm org set --alert-at 50%,120%
expect_eq "a level above 100%: exit 1" 1 "$RC"
check "... with the server's message naming the field" grep -q "400 invalid_request_error: invalid policy: org.alert_at\[1\]: must be an amount or a percentage" "$T/err"
run_adm teams set research --limit cost:monthly:300
expect_eq "teams set" 0 "$RC"
api GET /v1/admin/teams/research; expect_code "team stored with its limit" 200 '"threshold":300'
run_adm keys create ci --sha256 "$SHA1" --team research --limit cost:daily:20 --limit requests:daily:10000:alert=8000:warn
expect_eq "keys create" 0 "$RC"
api GET /v1/admin/keys/ci
expect_eq "key: limits as given" '[{"metric": "cost", "window": "daily", "threshold": 20}, {"metric": "requests", "window": "daily", "threshold": 10000, "alert_at": 8000, "action": "warn"}]' "$(jget 'j["limits"]')"
expect_eq "key: team" research "$(jget 'j["team"]')"
run_adm keys create lv --sha256 "$(printf 'sk-levels' | "$LLMCAP" key fingerprint)" --limit 'cost:monthly:50:alert=50%,80%,47.5:projected'
expect_eq "keys create with alert levels" 0 "$RC"
api GET /v1/admin/keys/lv
expect_eq "key: levels and the projection as given" '[{"metric": "cost", "window": "monthly", "threshold": 50, "alert_at": ["50%", "80%", 47.5], "alert_projected": true}]' "$(jget 'j["limits"]')"
run_adm keys list
check "keys list: the levels" grep -qE '^lv .*cost/monthly \$50.00 alert 50%/80%/\$47.50 projected' "$T/out"
run_adm keys create lv2 --sha256 "$SHA2" --limit 'cost:monthly:50:alert=50%,x'
check "a malformed alert level is refused before any call" grep -q "unknown part 'alert=50%,x'" "$T/err"
run_adm keys disable ci 0
expect_eq "keys disable" 0 "$RC"
api GET /v1/admin/keys/ci
expect_eq "limit 0 is off" false "$(jget 'j["limits"][0]["enabled"]')"
run_adm keys enable ci 0
api GET /v1/admin/keys/ci
expect_eq "limit 0 is on again" true "$(jget 'j["limits"][0]["enabled"]')"
run_adm keys list
check "keys list: a table with a header" grep -q "^ID .*TEAM .*LIMITS" "$T/out"
check "keys list: the key, its team and its limits" grep -qE "^ci +research .*cost/daily \\\$20.00" "$T/out"
run_adm --json keys list
expect_eq "--json: the server's JSON" research "$(jget 'j["keys"]["ci"]["team"]' "$T/out")"
run_adm keys get ci --json
expect_eq "--json after the command" "$SHA1" "$(jget 'j["sha256"]' "$T/out")"
run_adm keys update ci --team none --expires-at 2030-01-01T00:00:00Z
api GET /v1/admin/keys/ci
expect_eq "keys update: none removes a field" "null 2030-01-01T00:00:00Z" "$(jget 'j.get("team")') $(jget 'j["expires_at"]')"

# --- refusals: one clear line from the server, exit 1
run_adm keys create ci --sha256 "$SHA2"
expect_eq "duplicate key: exit 1" 1 "$RC"
expect_eq "duplicate key: one line" "llmcap admin: POST /v1/admin/keys: 409 conflict_error: key 'ci' already exists" "$ERR"
run_adm teams set bad --limit cost:fortnightly:1
check "invalid limit: the server names the JSON path" grep -q "400 invalid_request_error: invalid policy: teams.bad.limits\[0\].window" "$T/err"
run_adm keys get nope
expect_eq "unknown key: 404 line" "llmcap admin: GET /v1/admin/keys/nope: 404 not_found_error: no key 'nope'" "$ERR"
run_adm keys create k3 --sha256 "$SHA2" --limit cost:daily
check "a bad --limit is refused before any call" grep -q "expected METRIC:WINDOW:THRESHOLD" "$T/err"
run_adm keys enable ci x
check "enable with a bad index is refused" grep -q "limit's index" "$T/err"
run_adm frobnicate
check "unknown resource" grep -q "unknown resource 'frobnicate'" "$T/err"

# --- customers, settings, webhooks, prices, providers, invites
run_adm customers defaults --budget 10 --rpm 60
api GET /v1/admin/customers
expect_eq "customer defaults" "10 60" "$(jget 'j["monthly_budget_usd"]') $(jget 'j["rate_limit_rpm"]')"
run_adm customers defaults --alert-at 80% --projected yes
api GET /v1/admin/customers
expect_eq "customer defaults keep their budget and rpm and gain levels" '10 60 "80%" true' \
	"$(jget 'j["monthly_budget_usd"]') $(jget 'j["rate_limit_rpm"]') $(jget 'json.dumps(j["alert_at"])') $(jget 'j["alert_projected"]')"
run_adm customers set acme --budget 250 --rpm 600 --alert-at 50%,200
api GET /v1/admin/customers/acme; expect_code "customer override" 200 '"monthly_budget_usd":250'
expect_eq "customer override's own levels" '["50%", 200]' "$(jget 'json.dumps(j["alert_at"])')"
run_adm customers delete acme
api GET /v1/admin/customers/acme; expect_code "customer override deleted" 404
run_adm settings set --unknown-keys block --lifetime-days 10
api GET /v1/admin/settings
expect_eq "settings set" "block 10" "$(jget 'j["unknown_keys"]') $(jget 'j["policy_lifetime_days"]')"
printf '{"webhooks":[{"url":"http://127.0.0.1:9/hook","secret":"s3cret","events":["*"]}]}' >"$T/wh.json"
run_adm webhooks set "$T/wh.json"
api GET /v1/admin/webhooks; expect_code "webhooks set from a file" 200 '127.0.0.1:9/hook'
printf '{"my-model":{"input":1,"output":2}}' | "${ADM[@]}" prices set - >/dev/null
api GET /v1/admin/prices; expect_code "prices set from stdin (bare object wrapped)" 200 'my-model'
run_adm prices
check "prices get: the model" grep -q "my-model" "$T/out"
run_adm providers
check "providers get" grep -q "api.openai.com" "$T/out"
run_adm invites create --limit cost:daily:5 --team research
expect_eq "invites create" 0 "$RC"
CODE_INV=$(sed -n 's/^invite code \([0-9a-f]*\) .*/\1/p' "$T/out")
check "invite: a 48-hex code" test ${#CODE_INV} -eq 48
noauth POST "/v1/invites/$CODE_INV/redeem" '{"sha256":"'"$SHA2"'"}'
expect_code "the invite redeems" 201 '"threshold":5'

# --- usage, hosts, policy, call
HCRED=$(host_cred h-1)
curl -s -o /dev/null -X POST -H "Authorization: Bearer $HCRED" "$SRV_URL/v1/usage" -d '{"host_id":"h-1","epoch":"e1","seq":1,"counters":[{"scope":"team","id":"research","metric":"cost","window":"monthly","bucket":'"$(month_start)"',"used":150000000}]}'
run_adm usage
check "usage: a table of limits" grep -qE "^team +research +cost +monthly +\\\$150.00 +\\\$300.00 +50" "$T/out"
run_adm --json usage
expect_eq "usage --json" 150 "$(jget '[int(l["used"]) for l in j["limits"] if l["scope"]=="team"][0]' "$T/out")"
run_adm hosts
check "hosts: the reporting host, enrolled" grep -qE "^h-1 +e1 +1 .* active$" "$T/out"
run_adm hosts enroll --label web-9 --expires-in 600
check "hosts enroll: a one-time code and the command for the host" grep -qE "^enrolment code [0-9a-f]{48} \(one use" "$T/out"
ECODE=$(sed -n 's/^enrolment code \([0-9a-f]*\).*/\1/p' "$T/out")
LLMCAP_STATE_DIR=$T/h9 "$LLMCAP" agent enroll --server "$SRV_URL" --code "$ECODE" >/dev/null 2>&1
run_adm --json hosts
expect_eq "...which enrols a host labelled web-9" active "$(jget '[h["status"] for h in j["hosts"] if h.get("label")=="web-9"][0]' "$T/out")"
run_adm hosts delete h-1
check "hosts delete: the host is removed" grep -qE "^status: +removed|removed" "$T/out"
run_adm hosts get h-1
check "hosts get: one host" grep -q "removed" "$T/out"
run_adm policy
expect_eq "policy: the current policy" research "$(jget 'j["keys"]["ci"]["limits"] and j["teams"] and "research"' "$T/out")"
run_adm call GET /v1/admin/teams/research
check "call: any admin call" grep -q '"threshold": 300' "$T/out"
run_adm call DELETE /v1/admin/teams/research
check "call: refusals too, one line" grep -q "409 conflict_error: team 'research' is still used by key" "$T/err"
run_adm keys revoke ci
api GET /v1/admin/keys/ci; expect_eq "keys revoke" true "$(jget 'j["revoked"]')"

# --- docs: every curl example of docs/server.md has its llmcap admin line beside it
ncurl=$(grep -c '^curl -H "\$A"' "$LC_ROOT/docs/server.md")
nadm=$(grep -c '^llmcap admin ' "$LC_ROOT/docs/server.md")
check "docs/server.md: an llmcap admin line for each of the $ncurl curl examples" test "$nadm" -ge "$ncurl"
finish
