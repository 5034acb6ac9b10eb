#!/usr/bin/env bash
# Several alert levels per limit and the projected-exhaustion alert, end to end into a real webhook
# receiver: a key's three levels fire once each on the host (real requests through the SDK to the
# stand-in provider, delivered by the agent); a team's three levels and a team's projection fire
# once each on llmcap-server (hosts' usage reports); the organisation's warning threshold and
# alert_at levels and its projection fire once each on the server; customers' monthly budgets (the
# defaults' levels, and an override's own) fire once per level on the host; every alert says
# limit, level, used, threshold and reset time (the event's data, and a Slack message).
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/server_lib.sh"

start_fleet
start_receiver hook
start_receiver slack
H=$T/host
enroll "$H" --trust "$T/keys/llmcap.pub" || fail "the host enrols"
agent() { LLMCAP_STATE_DIR=$H "$LLMCAP" agent "$@"; }
chat() { # KEY COUNT -> the statuses, space-separated
	LLMCAP_STATE_DIR=$H "$CHAT" --url "$PURL" --key "$1" --max-tokens 20 --count "$2" 2>>"$T/chat.err" | tr '\n' ' ' |
		sed 's/ $//'
}
# the deliveries of one event from one source: [data, ...] in arrival order, as JSON
delivered() { # EVENT SOURCE LIMIT
	"$PY" -c '
import json,sys
out=[]
for l in open(sys.argv[1]):
    r=json.loads(l)
    if r.get("event")!=sys.argv[2] or r.get("status")!=200: continue
    b=json.loads(r["body"])
    if b.get("source")!=sys.argv[3] or b["data"].get("limit")!=sys.argv[4]: continue
    out.append(b["data"])
print(json.dumps(out))' "$T/receiver-hook.jsonl" "$@"
}
HCRED=$(host_cred h1)
report() { # SEQ TEAM WINDOW BUCKET USED_MICRO [SCOPE]
	curl -s -o /dev/null -w '%{http_code}' -X POST -H "Authorization: Bearer $HCRED" "$SRV_URL/v1/usage" --data-binary \
		'{"host_id":"h1","epoch":"e1","seq":'"$1"',"counters":[{"scope":"'"${6:-team}"'","id":"'"$2"'","metric":"cost","window":"'"$3"'","bucket":'"$4"',"used":'"$5"'}]}'
}

# the host's requests run between `agent --once` rounds: leases (on by default, which need a running
# agent) are off here; their own suite is test_server_leases
api PUT /v1/admin/settings '{"leases":false}'
api PUT /v1/admin/providers '{"providers":[{"name":"local","format":"openai","hosts":["127.0.0.1:'"$PORT_p"'"]}]}'
api PUT /v1/admin/prices '{"prices":{"gpt-4o-mini":{"input":0,"output":1,"max_output_tokens":64}}}'
api PUT /v1/admin/webhooks '{"webhooks":[{"url":"'"$RCV_hook"'/hook","secret":"'"$WHSECRET"'","events":["*"]},
 {"url":"'"$RCV_slack"'/s","secret":"'"$WHSECRET"'","format":"slack","events":["spend_cap_warning_threshold_reached","limit_alert"]}]}'
expect_code "webhooks" 200
# the Slack message lines whose text names LIMIT, in arrival order
slack_lines() { "$PY" -c '
import json,sys
for l in open(sys.argv[1]):
    r=json.loads(l)
    if r.get("status")!=200: continue
    t=json.loads(r["body"]).get("text","")
    if sys.argv[2] in t: print(t)' "$T/receiver-slack.jsonl" "$1"; }
# window_inside WINDOW...: "name start end" of the first of these windows the clock is 6% to 85%
# into (so a projection is neither too early nor too late), else "none 0 0"
window_inside() { "$PY" - "$@" <<'EOF2'
import calendar, datetime as dt, sys, time
now = int(time.time()); d = dt.datetime.utcfromtimestamp(now)
def ts(x): return calendar.timegm(x.timetuple())
day = dt.datetime(d.year, d.month, d.day); mon = dt.datetime(d.year, d.month, 1)
nxt = dt.datetime(d.year + (d.month == 12), d.month % 12 + 1, 1)
wk = day - dt.timedelta(days=d.weekday())
spans = {"hour": (now - now % 3600, now - now % 3600 + 3600), "daily": (ts(day), ts(day) + 86400),
         "weekly": (ts(wk), ts(wk) + 7 * 86400), "monthly": (ts(mon), ts(nxt))}
for name in sys.argv[1:]:
    s, e = spans[name]
    if 0.06 <= (now - s) / (e - s) <= 0.85:
        print(name, s, dt.datetime.utcfromtimestamp(e).strftime("%Y-%m-%dT%H:%M:%SZ")); break
else:
    print("none 0 0")
EOF2
}

# --- validation: errors name the JSON path; old policies stay valid
api POST /v1/admin/keys '{"id":"bad","sha256":"'"$(fingerprint sk-bad)"'","limits":[{"metric":"requests","window":"lifetime","threshold":10,"alert_at":["30%","120%"]}]}'
expect_code "a level above 100% is refused, naming its path" 400 'keys.bad.limits[0].alert_at[1]: must be an amount or a percentage'
api POST /v1/admin/keys '{"id":"bad","sha256":"'"$(fingerprint sk-bad)"'","limits":[{"metric":"requests","window":"lifetime","threshold":10,"alert_projected":"yes"}]}'
expect_code "alert_projected must be a boolean" 400 'keys.bad.limits[0].alert_projected: must be true or false'
api PUT /v1/admin/org '{"spend_cap_usd":null,"warning_threshold_usd":100,"alert_at":["80%"]}'
expect_code "org: a percentage without a cap to take it of is refused, naming its path" 400 'org.alert_at[0]: a percentage needs org.spend_cap_usd'
api PUT /v1/admin/org '{"spend_cap_usd":1000,"alert_projected":1}'
expect_code "org: alert_projected must be a boolean" 400 'org.alert_projected: must be true or false'
api PUT /v1/admin/customers/acme '{"alert_at":["50%","150%"]}'
expect_code "a customer override's level above 100% is refused, naming its path" 400 'customers.overrides.acme.alert_at[1]: must be an amount or a percentage'
api PUT /v1/admin/customers '{"monthly_budget_usd":5,"alert_at":[1,2,3,4,5,6,7]}'
expect_code "customers: at most 6 levels" 400 'customers.alert_at: must hold 1 to 6 alert levels'
api POST /v1/admin/keys '{"id":"old","sha256":"'"$(fingerprint sk-old)"'","limits":[{"metric":"requests","window":"daily","threshold":10,"alert_at":8}]}'
expect_code "a single alert_at number is still a limit" 201

# --- host: a key's three levels (3, 6 and 9 of 10 requests), each once
api POST /v1/admin/keys '{"id":"lv","sha256":"'"$(fingerprint sk-lv)"'","limits":[{"metric":"requests","window":"lifetime","threshold":10,"alert_at":["30%","60%",9]}]}'
expect_code "a key with three alert levels" 201
agent --once 2>"$T/a.err"; expect_eq "agent installs the policy" 0 $?
LLMCAP_STATE_DIR=$H "$LLMCAP" status --json >"$T/st.json"
expect_eq "status lists the levels" "[3, 6, 9]" "$(jget '[l["alert_levels"] for l in j["limits"] if l["id"]=="lv"][0]' "$T/st.json")"
expect_eq "ten requests pass (threshold 10)" "200 200 200 200 200 200 200 200 200 200" "$(chat sk-lv 10)"
agent --once 2>>"$T/a.err"
wait_for 20 test "$(delivered limit_alert host key:lv:requests:lifetime | jget 'len(j)' /dev/stdin)" -ge 3
D=$(delivered limit_alert host key:lv:requests:lifetime)
expect_eq "host: limit_alert once per level, at 3, 6 and 9 requests" "3,6,9 used 3,6,9" \
	"$(jget '",".join(str(d["alert_at"]) for d in j) + " used " + ",".join(str(d["used"]) for d in j)' <(echo "$D"))"
expect_eq "host: each says level, threshold and reset time (never, lifetime)" "alert_at 10 None" \
	"$(jget '" ".join(str(x) for x in {(d["level"], d["threshold"], d["resets_at"]) for d in j}.pop())' <(echo "$D"))"
expect_eq "the 11th request is refused" "429" "$(chat sk-lv 1)"
agent --once 2>>"$T/a.err"
wait_for 20 test "$(delivered limit_reached host key:lv:requests:lifetime | jget 'len(j)' /dev/stdin)" -ge 1
expect_eq "host: still three level alerts after the refusal and another round" 3 \
	"$(delivered limit_alert host key:lv:requests:lifetime | jget 'len(j)' /dev/stdin)"

# --- server: a team's three levels on the summed usage, each once
api PUT /v1/admin/teams/tl '{"limits":[{"metric":"cost","window":"monthly","threshold":100,"alert_at":["50%","80%","95%"]}]}'
expect_code "a team with three alert levels" 201
M=$(month_start)
seq=1
for used in 10000000 60000000 85000000 85000000 97000000 99000000; do   # $10 $60 $85 $85 $97 $99
	expect_eq "report \$$((used / 1000000)) accepted" 200 "$(report $seq tl monthly "$M" $used)"
	seq=$((seq + 1))
done
wait_for 20 test "$(delivered limit_alert llmcap-server team:tl:cost:monthly | jget 'len(j)' /dev/stdin)" -ge 3
sleep 1   # a fourth would come with the third: none may
D=$(delivered limit_alert llmcap-server team:tl:cost:monthly)
expect_eq "server: limit_alert once per level (50, 80, 95), each with the usage that reached it" \
	"50.0/60.0 80.0/85.0 95.0/97.0" "$(jget '" ".join("%s/%s" % (d["alert_at"], d["used"]) for d in j)' <(echo "$D"))"
RESET=$(date -u -d "$(date -u +%Y-%m-01) +1 month" +%Y-%m-01T00:00:00Z)
expect_eq "server: each names level, threshold and reset" "alert_at 100.0 $RESET" \
	"$(jget '" ".join(str(x) for x in {(d["level"], d["threshold"], d["resets_at"]) for d in j}.pop())' <(echo "$D"))"

# --- server: the projection. A window the clock is well inside (5% to 85% elapsed), so that
# $90 of $100 projects past the threshold while $5 is too little to project at all.
read -r WIN BUCKET END <<<"$(window_inside hour daily weekly monthly)"
if [ "$WIN" = none ]; then
	fail "no window is 6% to 85% elapsed right now (the first minutes of an hour on a month's first Monday)"
else
	api PUT /v1/admin/teams/tp '{"limits":[{"metric":"cost","window":"'"$WIN"'","threshold":100,"alert_projected":true}]}'
	expect_code "a team with the projected-exhaustion alert ($WIN window)" 201
	expect_eq "\$5 of \$100: too little to project" 200 "$(report $seq tp "$WIN" "$BUCKET" 5000000)"; seq=$((seq + 1))
	expect_eq "\$90 of \$100" 200 "$(report $seq tp "$WIN" "$BUCKET" 90000000)"; seq=$((seq + 1))
	expect_eq "\$95 of \$100" 200 "$(report $seq tp "$WIN" "$BUCKET" 95000000)"; seq=$((seq + 1))
	wait_for 20 test "$(delivered limit_projected llmcap-server "team:tp:cost:$WIN" | jget 'len(j)' /dev/stdin)" -ge 1
	sleep 1
	D=$(delivered limit_projected llmcap-server "team:tp:cost:$WIN")
	expect_eq "server: limit_projected once, at \$90, projecting past \$100, naming level, threshold and reset" \
		"1 projected 90.0 100.0 True $END" \
		"$(jget '"%d %s %s %s %s %s" % (len(j), j[0]["level"], j[0]["used"], j[0]["threshold"], j[0]["projected"] >= 100, j[0]["resets_at"])' <(echo "$D"))"
fi
# --- host: customers' monthly budgets. The defaults' level (50% of $0.0002) for any customer, an
# override's own three levels (30%, 60%, $0.00018) for acme; 20 output tokens at $1 per million:
# $0.00002 a request, so the budget allows 10
api PUT /v1/admin/customers '{"identify":["header:x-customer-id"],"monthly_budget_usd":0.0002,"alert_at":["50%"],"alert_projected":true}'
expect_code "customer defaults with a budget and alert levels" 200
api PUT /v1/admin/customers/acme '{"alert_at":["30%","60%",0.00018]}'
expect_code "acme's own levels on the default budget" 201
api POST /v1/admin/keys '{"id":"cu","sha256":"'"$(fingerprint sk-cu)"'"}'
expect_code "a key without limits for the customers' calls" 201
agent --once 2>>"$T/a.err"
cchat() { # CUSTOMER COUNT
	LLMCAP_STATE_DIR=$H "$CHAT" --url "$PURL" --key sk-cu --customer "$1" --max-tokens 20 --count "$2" 2>>"$T/chat.err" |
		tr '\n' ' ' | sed 's/ $//'
}
LLMCAP_STATE_DIR=$H "$LLMCAP" status --json >"$T/st.json"
expect_eq "status: acme's budget has its own levels (30%, 60%, \$0.00018 of \$0.0002)" "60 120 180" \
	"$(jget '" ".join(str(round(a*1e6)) for a in [l for l in j["limits"] if l["id"]=="acme" and l["metric"]=="cost"][0]["alert_levels"])' "$T/st.json")"
expect_eq "acme: ten requests within its \$0.0002, the eleventh refused" "200 200 200 200 200 200 200 200 200 200 429" \
	"$(cchat acme 11)"
expect_eq "beta (the defaults): six requests" "200 200 200 200 200 200" "$(cchat beta 6)"
agent --once 2>>"$T/a.err"
wait_for 20 test "$(delivered limit_alert host customer:acme:cost:monthly | jget 'len(j)' /dev/stdin)" -ge 3
wait_for 20 test "$(delivered limit_alert host customer:beta:cost:monthly | jget 'len(j)' /dev/stdin)" -ge 1
agent --once 2>>"$T/a.err"; sleep 1   # no level may come twice
D=$(delivered limit_alert host customer:acme:cost:monthly)
expect_eq "host: acme's limit_alert once per level, at \$0.00006, \$0.00012, \$0.00018, each with the usage that reached it" \
	"60/60 120/120 180/180" "$(jget '" ".join("%d/%d" % (round(d["alert_at"]*1e6), round(d["used"]*1e6)) for d in j)' <(echo "$D"))"
expect_eq "host: each names level, threshold and reset" "alert_at 200 $RESET" \
	"$(jget '" ".join(str(x) for x in {(d["level"], round(d["threshold"]*1e6), d["resets_at"]) for d in j}.pop())' <(echo "$D"))"
D=$(delivered limit_alert host customer:beta:cost:monthly)
expect_eq "host: beta's one default level (50%) once, at \$0.0001" "100/100" \
	"$(jget '" ".join("%d/%d" % (round(d["alert_at"]*1e6), round(d["used"]*1e6)) for d in j)' <(echo "$D"))"
expect_eq "host: acme's refusal fires customer_budget_limit_reached once" 1 \
	"$(delivered customer_budget_limit_reached host customer:acme:cost:monthly | jget 'len(j)' /dev/stdin)"
wait_for 20 test "$(slack_lines customer:acme:cost:monthly | wc -l)" -ge 3
expect_eq "Slack: acme's second level says limit, level, used of threshold, reset (and the host)" \
	"llmcap: Limit alert: customer:acme:cost:monthly; Level alert at \$0.00012; Used \$0.00012 of \$0.0002 (60%); Resets $RESET; Host" \
	"$(slack_lines customer:acme:cost:monthly | sed -n 2p | sed 's/; Host .*/; Host/')"

# --- server: the organisation's warning threshold ($900) and alert_at (50%, 80% of the $1000 cap)
# each once, and its projection once, on the summed usage; in a window the clock is well inside
# (6% to 85% elapsed), so $850 projects past $1000 whatever the hour, and $50 is too little to project
read -r OWIN OBUCKET OEND <<<"$(window_inside daily weekly monthly)"
if [ "$OWIN" = none ]; then
	fail "no org period is 6% to 85% elapsed right now (the first 86 minutes of a Monday that starts a month)"
else
	api PUT /v1/admin/org '{"spend_cap_usd":1000,"period":"'"$OWIN"'","warning_threshold_usd":900,"alert_at":["80%","50%"],"alert_projected":true}'
	expect_code "org: a cap, a warning threshold, two alert levels and the projection ($OWIN)" 200
	api GET /v1/usage
	expect_eq "GET /v1/usage: the org limit lists its three levels, the warning threshold apart" "500.0 800.0 900.0 True 900.0" \
		"$(jget '" ".join(str(x) for x in [l for l in j["limits"] if l["scope"]=="org"][0]["alert_levels"]) + " " + str([l for l in j["limits"] if l["scope"]=="org"][0]["alert_projected"]) + " " + str(j["org"]["warning_threshold_usd"])')"
	O=org:org:cost:$OWIN
	# the host's own requests count for the org too (a few micro-USD): amounts are compared in cents
	for used in 50000000 850000000 920000000 990000000; do   # $50 $850 $920 $990
		expect_eq "org report \$$((used / 1000000)) accepted" 200 "$(report $seq org "$OWIN" "$OBUCKET" $used org)"
		seq=$((seq + 1))
	done
	wait_for 20 test "$(delivered spend_cap_warning_threshold_reached llmcap-server "$O" | jget 'len(j)' /dev/stdin)" -ge 3
	wait_for 20 test "$(delivered limit_projected llmcap-server "$O" | jget 'len(j)' /dev/stdin)" -ge 1
	sleep 1
	D=$(delivered spend_cap_warning_threshold_reached llmcap-server "$O")
	expect_eq "server: the org's levels once each (50%, 80% at \$850; the warning \$900 at \$920)" \
		"500/850 800/850 900/920" "$(jget '" ".join("%.0f/%.0f" % (d["alert_at"], d["used"]) for d in sorted(j, key=lambda d: d["alert_at"]))' <(echo "$D"))"
	expect_eq "server: each names level, threshold and reset" "alert_at 1000.0 $OEND" \
		"$(jget '" ".join(str(x) for x in {(d["level"], d["threshold"], d["resets_at"]) for d in j}.pop())' <(echo "$D"))"
	D=$(delivered limit_projected llmcap-server "$O")
	expect_eq "server: the org's limit_projected once, at \$850, projecting past \$1000" "1 projected 850 1000.0 True $OEND" \
		"$(jget '"%d %s %.0f %s %s %s" % (len(j), j[0]["level"], j[0]["used"], j[0]["threshold"], j[0]["projected"] >= 1000, j[0]["resets_at"])' <(echo "$D"))"
	wait_for 20 test "$(slack_lines "$O" | wc -l)" -ge 3
	expect_eq "Slack: the org's warning threshold says limit, level, used of threshold, reset" \
		"llmcap: Spend cap warning: $O; Level alert at \$900.00; Used \$920.00 of \$1000.00 (92%); Resets $OEND" \
		"$(slack_lines "$O" | grep 'alert at \$900' | sed 's/Used \$920\.00[0-9]*/Used $920.00/')"
fi
expect_eq "all signatures verified" 0 "$(rstat hook 'j["bad_signature"]')"
finish
