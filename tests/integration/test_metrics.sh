#!/usr/bin/env bash
# Prometheus metrics: llmcap-server's /metrics and `llmcap agent --metrics ADDR:PORT`, scraped
# after real traffic and parsed strictly (tests/provider/promcheck.py: grammar, HELP/TYPE,
# _total counters, llmcap_ prefix, escaping, and python3-prometheus-client's parser agreeing).
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/server_lib.sh"
PROMCHECK="$LC_ROOT/tests/provider/promcheck.py"

start_fleet
# $1 per output token: a 20-token answer costs $20
api PUT /v1/admin/providers '{"providers":[{"name":"local","format":"openai","hosts":["127.0.0.1:'"$PORT_p"'"]}]}'
# exact counts of allowed and refused calls: leases (on by default; a slice is fetched before a
# shared limit's first call) are off here, their own suite is test_server_leases
api PUT /v1/admin/settings '{"leases":false}'
api PUT /v1/admin/prices '{"prices":{"gpt-4o-mini":{"input":0,"output":1000000,"max_output_tokens":64}}}'
api PUT /v1/admin/org '{"spend_cap_usd":1000,"period":"monthly","warning_threshold_usd":20,"alert_at":["50%","90%"]}'
api PUT /v1/admin/webhooks '{"webhooks":[{"url":"http://127.0.0.1:9/never","secret":"s","events":["spend_cap_warning_threshold_reached"]}]}'
api PUT /v1/admin/teams/t '{"limits":[{"metric":"cost","window":"monthly","threshold":500,"alert_at":[300,"80%","95%"]}]}'
api POST /v1/admin/keys '{"id":"ka","sha256":"'"$(fingerprint sk-metrics-a)"'","team":"t","limits":[{"metric":"cost","window":"daily","threshold":40},{"metric":"requests","window":"hour","threshold":1000,"enabled":false}]}'
expect_code "key with limits" 201

# scrape URL OUT [AUTH]: fetch and check strictly; OUT.json holds the samples
scrape() {
	local code
	code=$(curl -s -o "$2" -w '%{http_code} %{content_type}' ${3:+-H "Authorization: Bearer $3"} "$1")
	SCRAPE_CODE=$code
	"$PY" "$PROMCHECK" "$2" >"$2.json" 2>"$2.err"
}
# scrape_ok WHO URL OUT [AUTH]: scrape, and check that the exposition parses strictly and comes as
# a 200 with its content type
scrape_ok() {
	local who=$1; shift
	scrape "$@"
	check "$who /metrics: strict parse ($(head -c 200 "$2.err"))" test ! -s "$2.err"
	expect_eq "$who /metrics: 200 and the exposition content type" "200 text/plain; version=0.0.4; charset=utf-8" "$SCRAPE_CODE"
}
# m FILE.json SERIES: one sample's value ("" when absent)
m() { "$PY" -c 'import json,sys; j=json.load(open(sys.argv[1])); v=j.get(sys.argv[2]); print("" if v is None else (int(v) if v == int(v) else v))' "$1" "$2"; }

# --- the host
enroll "$LLMCAP_STATE_DIR" || fail "enroll the host"
MPORT=$(free_port)
"$LLMCAP" agent --server "$SRV_URL" --trust "$T/keys/llmcap.pub" --metrics "127.0.0.1:x" --once >/dev/null 2>"$T/err"
expect_eq "--metrics with a bad port: exit 2" 2 $?
check "...naming the option" grep -q -- "--metrics 127.0.0.1:x" "$T/err"
"$LLMCAP" agent --server "$SRV_URL" --trust "$T/keys/llmcap.pub" --interval 1 --metrics "127.0.0.1:$MPORT" \
	>"$T/agent.out" 2>&1 &
_pids+=($!)
wait_port "$MPORT"
wait_for 20 "$LLMCAP" status >/dev/null 2>&1
"$LLMCAP" status >/dev/null 2>&1; expect_eq "agent installed the policy" 0 $?
STATUSES=$("$CHAT" --url "$PURL" --key sk-metrics-a --max-tokens 20 --count 3 2>/dev/null | tr '\n' ' ')
expect_eq "traffic: two allowed, the third refused by the key's daily limit" "200 200 429 " "$STATUSES"
LLMCAP_LOG=off "$CHAT" --url "$PURL" --key sk-unknown-to-policy --max-tokens 5 --count 1 >/dev/null 2>&1

scrape_ok host "http://127.0.0.1:$MPORT/metrics" "$T/host.prom"
H=$T/host.prom.json
expect_eq "decisions: 3 allowed (2 + the key the policy does not name)" 3 "$(m "$H" 'llmcap_decisions_total{reason=,verdict=allow}')"
expect_eq "decisions: 1 refused by the key's limit" 1 "$(m "$H" 'llmcap_decisions_total{reason=key_limit,verdict=deny}')"
expect_eq "decisions: none refused by the team's limit" 0 "$(m "$H" 'llmcap_decisions_total{reason=team_limit,verdict=deny}')"
expect_eq "reservations in flight: 0 after the calls ended" 0 "$(m "$H" 'llmcap_reservations_in_flight{}')"
check "store size in bytes" test "$(m "$H" 'llmcap_store_size_bytes{}')" -gt 0
expect_eq "key limit used, USD" 40 "$(m "$H" 'llmcap_limit_used_usd{id=ka,limit=key:ka:cost:daily,scope=key,window=daily}')"
expect_eq "key limit threshold, USD" 40 "$(m "$H" 'llmcap_limit_threshold_usd{id=ka,limit=key:ka:cost:daily,scope=key,window=daily}')"
# every alert level is a series of its own (level="1" the lowest)
levels() { # FILE.json SERIES-PREFIX: "level=value ..." of one limit's llmcap_limit_alert_threshold_usd
	"$PY" -c 'import json,re,sys
j=json.load(open(sys.argv[1])); p=sys.argv[2]
print(" ".join("%s=%g" % (re.search(r"level=(\d+)", k).group(1), v) for k, v in sorted(j.items()) if k.startswith(p)))' "$1" "$2"; }
expect_eq "team alert levels, USD: 300, 80%, 95% of 500" "1=300 2=400 3=475" \
	"$(levels "$H" 'llmcap_limit_alert_threshold_usd{id=t,level=')"
expect_eq "team alert level 2 as one series" 400 "$(m "$H" 'llmcap_limit_alert_threshold_usd{id=t,level=2,limit=team:t:cost:monthly,scope=team,window=monthly}')"
expect_eq "org alert levels: the warning threshold 20 and alert_at 50%, 90% of the 1000 cap" "1=20 2=500 3=900" \
	"$(levels "$H" 'llmcap_limit_alert_threshold_usd{id=org,level=')"
expect_eq "a toggled-off limit: enabled 0" 0 "$(m "$H" 'llmcap_limit_enabled{action=block,limit=key:ka:requests:hour}')"
check "reset time of the daily limit is the next 00:00 UTC" test "$(m "$H" 'llmcap_limit_reset_timestamp_seconds{limit=key:ka:cost:daily}')" = \
	"$(date -u -d "$(date -u -d tomorrow +%Y-%m-%d)T00:00:00Z" +%s)"
wait_for 20 grep -q '^llmcap_agent_reports_total{result="accepted"} [1-9]' <(curl -s "http://127.0.0.1:$MPORT/metrics")
scrape "http://127.0.0.1:$MPORT/metrics" "$T/host.prom"
check "the agent counts its accepted reports" test "$(m "$H" 'llmcap_agent_reports_total{result=accepted}')" -ge 1
CODE=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$MPORT/other")
expect_eq "host: any other path is 404" 404 "$CODE"

# --- the server (after the agent reported the host's usage)
wait_for 20 bash -c "curl -s -H 'Authorization: Bearer $TOKEN' $SRV_URL/v1/usage | grep -q '\"used\":40'"
CODE=$(curl -s -o /dev/null -w '%{http_code}' "$SRV_URL/metrics")
expect_eq "server /metrics without the admin token: 401" 401 "$CODE"
wait_for 20 bash -c "curl -s -H 'Authorization: Bearer $TOKEN' $SRV_URL/metrics | grep -q '^llmcap_webhook_deliveries_total{result=\"failed\"} [1-9]'"
scrape_ok server "$SRV_URL/metrics" "$T/srv.prom" "$TOKEN"
S=$T/srv.prom.json
expect_eq "server: the key's usage summed from the host's report, USD" 40 "$(m "$S" 'llmcap_limit_used_usd{id=ka,limit=key:ka:cost:daily,scope=key,window=daily}')"
expect_eq "server: the team's usage" 40 "$(m "$S" 'llmcap_limit_used_usd{id=t,limit=team:t:cost:monthly,scope=team,window=monthly}')"
expect_eq "server: the team's threshold" 500 "$(m "$S" 'llmcap_limit_threshold_usd{id=t,limit=team:t:cost:monthly,scope=team,window=monthly}')"
expect_eq "server: team alert levels" "1=300 2=400 3=475" "$(levels "$S" 'llmcap_limit_alert_threshold_usd{id=t,level=')"
expect_eq "server: org alert levels" "1=20 2=500 3=900" "$(levels "$S" 'llmcap_limit_alert_threshold_usd{id=org,level=')"
expect_eq "server: the org cap as a limit" 1000 "$(m "$S" 'llmcap_limit_threshold_usd{id=org,limit=org:org:cost:monthly,scope=org,window=monthly}')"
expect_eq "server: org spend this period (40 + the unnamed key's 5)" 45 "$(m "$S" 'llmcap_org_spend_usd{period=monthly}')"
expect_eq "server: one host" 1 "$(m "$S" 'llmcap_hosts{}')"
HID=$(curl -s -H "Authorization: Bearer $TOKEN" "$SRV_URL/v1/usage" | jget 'j["hosts"][0]["host_id"]' /dev/stdin)
EP=$(curl -s -H "Authorization: Bearer $TOKEN" "$SRV_URL/v1/usage" | jget 'j["hosts"][0]["epoch"]' /dev/stdin)
AGE=$(m "$S" "llmcap_host_last_report_age_seconds{epoch=$EP,host_id=$HID}")
check "server: the host's report age is known and recent ($AGE s)" test -n "$AGE" -a "${AGE:-99}" -lt 30
check "server: webhook outbox depth (the org warning waits for an unreachable receiver)" test "$(m "$S" 'llmcap_webhook_outbox_entries{}')" -ge 1
check "server: failed webhook deliveries counted" test "$(m "$S" 'llmcap_webhook_deliveries_total{result=failed}')" -ge 1
finish
