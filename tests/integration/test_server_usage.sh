#!/usr/bin/env bash
# llmcap-server: usage reports (each host with its own credential, as itself only; idempotent by
# host, epoch, seq, a replayed seq refused), org-wide usage, and the server's notifications: once
# per limit per window, signed, retried, durable across restarts.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/server_lib.sh"

setup_keys
M=$(month_start)
start_receiver ok
start_receiver flaky --fail-first 3
start_server

api PUT /v1/admin/org '{"spend_cap_usd":100,"period":"monthly","warning_threshold_usd":50}'
api PUT /v1/admin/teams/t '{"limits":[{"metric":"cost","window":"monthly","threshold":80,"alert_at":30}]}'
api PUT /v1/admin/webhooks '{"webhooks":[{"url":"'"$RCV_ok"'/hook","secret":"'"$WHSECRET"'","events":["*"]},{"url":"'"$RCV_flaky"'/hook","secret":"'"$WHSECRET"'","events":["spend_cap_reached","spend_cap_warning_threshold_reached"]}]}'
expect_code "webhooks set" 200

# every host that reports here is enrolled: its own credential
declare -A HC
for h in h1 h2 h3 h cust $(seq -f 'c%g' 1 20); do HC[$h]=$(host_cred "$h"); done
check "enrolment: a credential per host" test -n "${HC[c20]}"
# hpost HOST BODY: POST /v1/usage as HOST; sets CODE, RESP
hpost() {
	CODE=$(curl -s -o "$T/resp" -w '%{http_code}' -X POST -H "Authorization: Bearer ${HC[$1]}" \
		-H 'content-type: application/json' --data-binary "$2" "$SRV_URL/v1/usage")
	RESP=$(cat "$T/resp")
}
# report HOST EPOCH SEQ ORG_USD TEAM_USD
report() {
	local o t
	o=$("$PY" -c "print(int($4*1000000))"); t=$("$PY" -c "print(int($5*1000000))")
	hpost "$1" '{"host_id":"'"$1"'","epoch":"'"$2"'","seq":'"$3"',"counters":[
		{"scope":"org","id":"org","metric":"cost","window":"monthly","bucket":'"$M"',"used":'"$o"'},
		{"scope":"team","id":"t","metric":"cost","window":"monthly","bucket":'"$M"',"used":'"$t"'},
		{"scope":"key","id":"k-'"$1"'","metric":"requests","window":"lifetime","bucket":0,"used":'"$3"'}]}'
}
orgused() { jget '[c["used"] for c in j["counters"] if c["scope"]=="org"][0]'; }

# --- ingestion
BODY1='{"host_id":"h1","epoch":"e1","seq":1,"counters":[]}'
noauth POST /v1/usage "$BODY1"; expect_code "a report without a credential -> 401" 401 "llmcap agent enroll"
api POST /v1/usage "$BODY1"; expect_code "the admin token is no host credential -> 401" 401
CODE=$(curl -s -o "$T/resp" -w '%{http_code}' -X POST -H "Authorization: Bearer ${HC[h1]%?}$([ "${HC[h1]: -1}" = 0 ] && echo 1 || echo 0)" --data-binary "$BODY1" "$SRV_URL/v1/usage")
expect_eq "a forged secret -> 401" 401 "$CODE"
hpost h2 "$BODY1"; expect_code "another host's report (h2's credential, h1's id) -> 403" 403 "only as itself"
report h1 e1 1 20 20
expect_code "POST /v1/usage with the host's own credential -> 200" 200 '"counters"'
expect_eq "answer: org-wide org counter" 20000000 "$(orgused)"
report h1 e1 1 20 20
expect_code "a replayed seq is refused" 409 "replayed"
report h1 e1 0 45 45
expect_code "an older seq is refused too" 409 "replayed"
report h1 e1 2 25 25
expect_eq "cumulative: seq 2 moves the total to 25, not 45" 25000000 "$(orgused)"
report h2 e9 1 10 10
expect_eq "a second host adds up: 25 + 10" 35000000 "$(orgused)"
expect_eq "the answer carries the team total too" 35000000 "$(jget '[c["used"] for c in j["counters"] if c["scope"]=="team"][0]')"
expect_eq "and this host's own key counter" 1 "$(jget '[c["used"] for c in j["counters"] if c["id"]=="k-h2"][0]')"
report h2 e10 1 3 3
expect_eq "a new epoch of a host is a new record (35 + 3)" 38000000 "$(orgused)"

hpost h '{"epoch":"e","seq":1,"counters":[]}'; expect_code "report without host_id -> 400" 400 host_id
hpost h '{"host_id":"h","epoch":"e","seq":-1,"counters":[]}'; expect_code "negative seq -> 400" 400 seq
hpost h '{"host_id":"h","epoch":"e","seq":1,"counters":[{"scope":"org","id":"org","metric":"joules","window":"monthly","bucket":0,"used":1}]}'
expect_code "bad metric -> 400 naming the counter" 400 "counters[0].metric"
hpost h '{"host_id":"h","epoch":"e","seq":1,"counters":[{"scope":"org","id":"org","metric":"cost","window":"monthly","bucket":0,"used":-5}]}'
expect_code "negative usage -> 400" 400 "counters[0].used"
hpost cust '{"host_id":"cust","epoch":"e","seq":1,"counters":[{"scope":"customer","id":"user|7","metric":"requests","window":"lifetime","bucket":0,"used":2}]}'
expect_code "a customer id with any characters is accepted" 200 '"user|7"'
hpost h '{"host_id":"h",'; expect_code "malformed report -> 400" 400 malformed
hpost h ''; expect_code "empty report -> 400" 400

# --- GET /v1/usage: org-wide, status --json shape
noauth GET /v1/usage; expect_code "GET /v1/usage needs the admin token" 401
api GET /v1/usage; expect_code "GET /v1/usage" 200 '"limits"'
expect_eq "org limit used (USD)" 38.0 "$(jget '[l["used"] for l in j["limits"] if l["scope"]=="org"][0]')"
expect_eq "org limit threshold (USD)" 100.0 "$(jget '[l["threshold"] for l in j["limits"] if l["scope"]=="org"][0]')"
expect_eq "team limit used" 38.0 "$(jget '[l["used"] for l in j["limits"] if l["scope"]=="team"][0]')"
expect_eq "every limit has the status fields" true \
	"$(jget 'all(set(["scope","id","metric","window","used","reserved","threshold","resets_at"]) <= set(l) for l in j["limits"])')"
expect_eq "four host records (h1, h2 in two epochs, cust)" 4 "$(jget 'len(j["hosts"])')"

# --- notifications: the warning (50) and the team alert (30) are crossed at 38? only the alert
wait_for 10 test "$(rstat ok 'j["events"].get("limit_alert",0)')" = 1
expect_eq "team alert_at crossed on the sum -> limit_alert" 1 "$(rstat ok 'j["events"].get("limit_alert",0)')"
expect_eq "no warning below 50" 0 "$(rstat ok 'j["events"].get("spend_cap_warning_threshold_reached",0)')"
report h2 e9 2 30 30     # total 25 + 30 + 3 = 58: warning
report h1 e1 3 70 70     # total 70 + 30 + 3 = 103: the cap, and the team's 80
expect_eq "total now 103" 103000000 "$(orgused)"
wait_for 10 test "$(rstat ok 'j["events"].get("spend_cap_reached",0)')" = 1
expect_eq "spend_cap_warning_threshold_reached once" 1 "$(rstat ok 'j["events"].get("spend_cap_warning_threshold_reached",0)')"
expect_eq "spend_cap_reached once" 1 "$(rstat ok 'j["events"].get("spend_cap_reached",0)')"
expect_eq "team limit_reached once" 1 "$(rstat ok 'j["events"].get("limit_reached",0)')"
# more reports in the same window fire nothing new
report h1 e1 4 90 90
report h2 e9 3 40 40
sleep 1.5
expect_eq "still one spend_cap_reached after more reports" 1 "$(rstat ok 'j["events"].get("spend_cap_reached",0)')"
expect_eq "still one limit_reached" 1 "$(rstat ok 'j["events"].get("limit_reached",0)')"
expect_eq "every delivery verified (no bad signatures)" 0 "$(rstat ok 'j["bad_signature"]')"
expect_eq "each delivery id received once" true "$(rstat ok 'all(v==1 for v in j["deliveries"].values())')"
expect_eq "the event body names the limit" "team:t:cost:monthly" "$(rstat ok 'j["last"]["limit_reached"]["data"]["limit"]')"
expect_eq "the event body says where it came from" llmcap-server "$(rstat ok 'j["last"]["spend_cap_reached"]["source"]')"
check "headers: event and delivery id logged" grep -q '"delivery": "dlv_' "$T/receiver-ok.jsonl"

# --- the flaky receiver: 3 failures first, then both of its events arrive, retried with backoff
wait_for 15 test "$(rstat flaky 'len(j["deliveries"])')" = 2
expect_eq "flaky receiver: both org events delivered after failures" 2 "$(rstat flaky 'len(j["deliveries"])')"
expect_eq "flaky receiver: it failed 3 times first" 3 "$(rstat flaky 'j["failed"]')"
expect_eq "flaky receiver: only the events it subscribed to" 0 "$(rstat flaky 'j["events"].get("limit_alert",0)')"
check "a retried delivery keeps its delivery id" "$PY" -c '
import json,sys
rows=[json.loads(l) for l in open(sys.argv[1])]
failed={r["delivery"] for r in rows if r["status"]==500}
okd={r["delivery"] for r in rows if r["status"]==200}
sys.exit(0 if failed and failed <= okd else 1)' "$T/receiver-flaky.jsonl"

# --- durability: events queued while the receiver is down survive a server restart
curl -s -X POST "$RCV_ok/fail?n=1000" >/dev/null
api PUT /v1/admin/teams/u '{"limits":[{"metric":"requests","window":"lifetime","threshold":5}]}'
hpost h3 '{"host_id":"h3","epoch":"e","seq":1,"counters":[{"scope":"team","id":"u","metric":"requests","window":"lifetime","bucket":0,"used":7}]}'
wait_for 10 test "$(rstat ok 'j["failed"]')" -ge 1
stop_server
POSTS=$(rstat ok 'j["ok"]')
curl -s -X POST "$RCV_ok/fail?n=0" >/dev/null
start_server
wait_for 10 test "$(rstat ok 'j["events"].get("limit_reached",0)')" = 2
expect_eq "an event queued before a restart is delivered after it" 2 "$(rstat ok 'j["events"].get("limit_reached",0)')"
expect_eq "and delivered once" $((POSTS + 1)) "$(rstat ok 'j["ok"]')"

# --- usage survives the restart; a replay after the restart is still a duplicate
report h1 e1 4 90 90
expect_code "after a restart: a replayed seq is still refused" 409 "replayed"
report h1 e1 5 90 90
expect_eq "after a restart: totals kept" 133000000 "$(orgused)"
api GET /v1/usage
expect_eq "after a restart: GET /v1/usage" 133.0 "$(jget '[l["used"] for l in j["limits"] if l["scope"]=="org"][0]')"
sleep 1.2
expect_eq "after a restart: no event fired again" 1 "$(rstat ok 'j["events"].get("spend_cap_reached",0)')"

# --- concurrent reports from many hosts add up exactly
cpids=()
for h in $(seq 1 20); do
	curl -s -o /dev/null -X POST -H "Authorization: Bearer ${HC[c$h]}" --data-binary '{"host_id":"c'"$h"'","epoch":"e","seq":1,"counters":[{"scope":"key","id":"shared","metric":"requests","window":"lifetime","bucket":0,"used":5}]}' "$SRV_URL/v1/usage" &
	cpids+=($!)
done
wait "${cpids[@]}"
hpost c1 '{"host_id":"c1","epoch":"e","seq":2,"counters":[{"scope":"key","id":"shared","metric":"requests","window":"lifetime","bucket":0,"used":5}]}'
expect_eq "20 hosts in parallel: 100, each counted once" 100 "$(jget '[c["used"] for c in j["counters"] if c["id"]=="shared"][0]')"

# --- a removed host: its reports are refused from then on, what it reported stays counted
api DELETE /v1/admin/hosts/c1; expect_code "DELETE /v1/admin/hosts/c1" 200 '"removed"'
hpost c1 '{"host_id":"c1","epoch":"e","seq":3,"counters":[{"scope":"key","id":"shared","metric":"requests","window":"lifetime","bucket":0,"used":50}]}'
expect_code "the removed host's report -> 401" 401 "was removed"
hpost c2 '{"host_id":"c2","epoch":"e","seq":2,"counters":[{"scope":"key","id":"shared","metric":"requests","window":"lifetime","bucket":0,"used":5}]}'
expect_eq "what it reported before stays counted (100)" 100 "$(jget '[c["used"] for c in j["counters"] if c["id"]=="shared"][0]')"
api GET /v1/admin/hosts
expect_eq "GET /v1/admin/hosts: 25 hosts, c1 removed" "25 removed" "$(jget 'str(len(j["hosts"]))+" "+[h["status"] for h in j["hosts"] if h["id"]=="c1"][0]')"
api DELETE /v1/admin/hosts/nobody; expect_code "DELETE an unknown host -> 404" 404
stop_server

finish
