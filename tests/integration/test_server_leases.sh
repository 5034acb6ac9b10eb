#!/usr/bin/env bash
# Leases make shared caps exact: llmcap-server grants each host a slice of what is left of every
# shared limit, the hosts admit within their slices (no network call on the request path), and the
# stand-in provider's log never exceeds a cap. Real server, real agents, real host stores, the SDK
# client and curl under the preload, concurrently on three hosts.
#   1. leases are on by default; with "leases": false the same hosts overshoot a shared team cap
#      (what leases fix);
#   2. with leases: every shared limit the policy names is asked for when a policy is installed, so
#      the first request goes through; a limit with no slice yet waits for a running agent's answer
#      (no 429) and is refused at once with no agent; a team cap and the org cap shared by three
#      hosts, concurrent clients: never exceeded;
#   3. the server stopped: a host spends at most the slice it holds;
#   4. a host killed holding a slice: the slice is back after its TTL, not before.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/server_lib.sh"

start_fleet
agent_once() { LLMCAP_STATE_DIR=$T/$1 "$LLMCAP" agent --server "$SRV_URL" --trust "$T/keys/llmcap.pub" --once 2>>"$T/agent-$1.err"; }
start_agent() { # HOST: a running agent; AGENT_<HOST> its pid
	(LLMCAP_STATE_DIR=$T/$1 exec "$LLMCAP" agent --server "$SRV_URL" --trust "$T/keys/llmcap.pub" --interval 1 \
		--max-backoff 2 2>>"$T/agent-$1.err") &
	_pids+=($!)
	printf -v "AGENT_$1" '%s' "$!"
}
stop_agent() { local p; p=$(eval echo "\$AGENT_$1"); kill -"${2:-TERM}" "$p" 2>/dev/null; wait "$p" 2>/dev/null; }
chat() { # HOST KEY COUNT -> statuses, space-separated (the SDK)
	LLMCAP_STATE_DIR=$T/$1 "$CHAT" --url "$PURL" --key "$2" --max-tokens 20 --count "$3" 2>>"$T/chat.err" |
		tr '\n' ' ' | sed 's/ $//'
}
ok200() { [ "$(chat "$1" "$2" 1)" = 200 ]; }   # HOST KEY: one request, served
chatc() { # HOST KEY CUSTOMER -> the status of one request for the customer (the SDK)
	LLMCAP_STATE_DIR=$T/$1 "$CHAT" --url "$PURL" --key "$2" --max-tokens 20 --count 1 --customer "$3" 2>>"$T/chat.err"
}
curl_preload() { # HOST KEY -> the status (curl under the preload)
	LLMCAP_STATE_DIR=$T/$1 LD_PRELOAD=$PRELOAD curl -s -o /dev/null -w '%{http_code}' "$PURL" \
		-H "Authorization: Bearer $2" -H 'content-type: application/json' \
		-d '{"model":"gpt-4o-mini","max_tokens":20,"messages":[{"role":"user","content":"hi"}]}'
}
# client HOST KEY TRIES: one request at a time until TRIES requests were sent; a 429 waits 0.1 s
client() {
	local i s
	for ((i = 0; i < $3; i++)); do
		if ((i % 3 == 2)); then s=$(curl_preload "$1" "sk-$2"); else s=$(chat "$1" "sk-$2" 1); fi
		echo "$s" >>"$T/client-$1.out"
		[ "$s" = 200 ] || sleep 0.1
	done
}
served() { # KEY... -> requests the provider received with these keys
	"$PY" - "$LOG_p" "$@" <<'EOF'
import json, sys
keys = {"Bearer sk-" + k for k in sys.argv[2:]}
n = 0
for line in open(sys.argv[1], "rb"):
    try:
        e = json.loads(line)
    except ValueError:
        continue
    if e.get("event") == "request" and e.get("headers", {}).get("authorization") in keys:
        n += 1
print(n)
EOF
}
lease_of() { # HOST LIMIT FIELD -> the host's slice from llmcap status --json
	LLMCAP_STATE_DIR=$T/$1 "$LLMCAP" status --json >"$T/st.json"
	jget "[l.get('lease',{}).get('$3') for l in j['limits'] if l['name']=='$2'][0]" "$T/st.json"
}
mkkey() { # ID TEAM|"" : a key named ID whose secret is sk-ID
	local team=""
	[ -n "$2" ] && team=',"team":"'"$2"'"'
	api POST /v1/admin/keys '{"id":"'"$1"'","sha256":"'"$(fingerprint "sk-$1")"'"'"$team"',"limits":[]}'
	expect_code "key $1" 201
}

# every host with its own credential (a host leases only as itself)
for h in A B C; do enroll "$T/$h" --trust "$T/keys/llmcap.pub" --label "host-$h" || fail "enroll $h"; done

# $1 per output token: a 20-token answer costs $20, reserved as $20
api PUT /v1/admin/providers '{"providers":[{"name":"local","format":"openai","hosts":["127.0.0.1:'"$PORT_p"'"]}]}'
expect_code "providers" 200
api PUT /v1/admin/prices '{"prices":{"gpt-4o-mini":{"input":0,"output":1000000,"max_output_tokens":64}}}'
expect_code "prices" 200

# --- 1. leases are on by default; without them two hosts share a team cap of 4 requests and serve 8
api GET /v1/admin/policy
expect_eq "leases are on by default: the published policy says leases" true "$(jget 'j.get("leases")')"
api PUT /v1/admin/settings '{"leases":false}'
expect_code "settings: leases off" 200
api GET /v1/admin/policy
expect_eq "...\"leases\": false turns them off" null "$(jget 'j.get("leases")')"
api PUT /v1/admin/teams/t1 '{"limits":[{"metric":"requests","window":"lifetime","threshold":4}]}'
mkkey a1 t1
mkkey b1 t1
agent_once A; agent_once B
expect_eq "without leases: host A serves 4 (the cap)" "200 200 200 200" "$(chat A sk-a1 4)"
expect_eq "without leases: host B, not knowing A's spend, serves 4 more" "200 200 200 200" "$(chat B sk-b1 4)"
expect_eq "without leases the provider served 8 on a team cap of 4: the overshoot leases remove" 8 "$(served a1 b1)"
agent_once A; agent_once B

# --- 2. with leases: team t2 (10 requests a day) on hosts A and B, the org cap shared by A, B, C
api PUT /v1/admin/settings '{"lease_ttl_seconds":30}'
expect_code "settings: leases on (the default), TTL 30 s" 200
api GET /v1/admin/policy
expect_eq "the published policy says leases" true "$(jget 'j.get("leases")')"
api GET '/v1/usage?by=org&window=month'
ORG0=$(jget 'sum(r["cost"] for r in j["rows"])')
expect_eq "the org's spend so far is reported (8 x \$20)" 160.0 "$ORG0"
# the org cap leaves exactly 12 requests of $20 org-wide
api PUT /v1/admin/org '{"spend_cap_usd":400,"period":"monthly"}'
api PUT /v1/admin/teams/t2 '{"limits":[{"metric":"requests","window":"lifetime","threshold":10}]}'
mkkey a2 t2
mkkey b2 t2
mkkey c2 ""
# every customer's default monthly budget: a shared limit the policy does not name per customer
api PUT /v1/admin/customers '{"monthly_budget_usd":1000}'
expect_code "customers: a default budget" 200
for h in A B C; do agent_once "$h"; done
check "a new policy: the agent asked for a slice of each shared limit it names (host A holds one of team t2's)" \
	test "$(lease_of A team:t2:requests:lifetime allowance | cut -d. -f1)" -gt 0
expect_eq "a limit with no slice yet (a new customer's budget) and no agent running: refused at once (429)" 429 \
	"$(chatc C sk-c2 cust-1)"
for h in A B C; do start_agent "$h"; done
# host C's agent runs once it got what the refused request needed ($20: more than the 1/64 of the org
# cap that --once asked for)
agent_up() { local a; a=$(lease_of C org:org:cost:monthly allowance); [ "${a%.*}" -ge 20 ] 2>/dev/null; }
wait_for 20 agent_up || fail "host C's agent did not ask for the slice the refused request needed"
expect_eq "a limit with no slice yet while the agent runs: the request waits for its slice and goes through" 200 \
	"$(chatc C sk-c2 cust-2)"
grep -q "not granted yet" "$T/chat.err" && echo "# (a refusal was logged for cust-1, as expected)"
api PUT /v1/admin/settings '{"lease_ttl_seconds":3}'
expect_code "settings: TTL 3 s (renewals under load)" 200
client A a2 20 & P1=$!
client A a2 20 & P2=$!
client B b2 20 & P3=$!
client B b2 20 & P4=$!
client C c2 20 & P5=$!
client C c2 20 & P6=$!
wait $P1 $P2 $P3 $P4 $P5 $P6
TEAM=$(served a2 b2)
ORG=$(served a2 b2 c2)
echo "# with leases: team t2 served $TEAM of 10, org served $ORG of 12 (3 hosts, 6 concurrent clients)"
check "with leases the team cap of 10 is never exceeded at the provider (served $TEAM)" test "$TEAM" -le 10
check "with leases the org cap (12 requests left) is never exceeded at the provider (served $ORG)" test "$ORG" -le 12
check "...and the hosts did spend it (team $TEAM > 0, org $ORG > 0)" test "$TEAM" -gt 0 -a "$ORG" -gt 0
check "both clients ran: the SDK and curl under the preload got 200s" test "$(cat "$T"/client-*.out | grep -c '^200$')" -ge 2
api GET /v1/admin/leases
check "GET /v1/admin/leases: the team's slices, never more than the threshold" "$PY" -c '
import json,sys
j=json.load(open(sys.argv[1]))
t=[l for l in j["leases"] if l["limit"]=="team:t2:requests:lifetime"]
sys.exit(0 if t and t[0]["reported"]+t[0]["outstanding"]<=t[0]["threshold"]==10 else 1)' "$T/resp"

stop_agent B; stop_agent C

# --- 3. the server stopped: a host spends at most the slice it holds
api PUT /v1/admin/settings '{"lease_ttl_seconds":30}'
api PUT /v1/admin/teams/t3 '{"limits":[{"metric":"requests","window":"lifetime","threshold":1000}]}'
mkkey a3 t3
api PUT /v1/admin/org '{"spend_cap_usd":null,"period":"monthly"}'
stop_agent A; agent_once A
chat A sk-a3 1 >/dev/null   # asks for a slice
start_agent A
wait_for 20 ok200 A sk-a3
stop_agent A
stop_server
HELD=$(lease_of A team:t3:requests:lifetime allowance)
BEFORE=$(served a3)
check "host A holds a slice of team t3 ($HELD) smaller than the limit" test "${HELD%.*}" -gt 0 -a "${HELD%.*}" -lt 1000
OUT=$(chat A sk-a3 $((HELD + 5)))
AFTER=$(served a3)
echo "# server down: host A held $HELD, the provider had $BEFORE from it before and $AFTER after"
check "server down: host A spent at most its slice (provider total $AFTER <= $HELD)" test "$AFTER" -le "$HELD"
check "...and then refused (429)" grep -q 429 <<<"$OUT"
start_server

# --- 4. a host killed holding a slice: the slice is back after its TTL, not before
api PUT /v1/admin/settings '{"lease_ttl_seconds":10}'
api PUT /v1/admin/teams/t4 '{"limits":[{"metric":"requests","window":"lifetime","threshold":10}]}'
mkkey a4 t4
mkkey b4 t4
agent_once A; agent_once B
start_agent A
chat A sk-a4 1 >/dev/null
wait_for 20 ok200 A sk-a4
for i in 1 2 3; do chat A sk-a4 1 >/dev/null; done
A_SERVED=$(served a4)
team_used() { api GET /v1/usage; test "$(jget '[l["used"] for l in j["limits"] if l["name"]=="team:t4:requests:lifetime"][0]')" = "$1"; }
# what a host spent and never reported before it vanished is not counted (docs/server.md): wait for
# the report, then kill it
wait_for 20 team_used "$A_SERVED"
stop_agent A KILL   # the host vanishes holding its slice
api GET /v1/admin/leases
jget '[l for l in j["leases"] if l["limit"]=="team:t4:requests:lifetime"][0]' >"$T/t4.json"
A_HELD=$(jget '[h["allowance"] for h in j["hosts"]][0]' "$T/t4.json")
A_EXP=$(jget '[h["expires_at"] for h in j["hosts"]][0]' "$T/t4.json")
echo "# host A killed after $A_SERVED requests, holding $A_HELD of 10 until $A_EXP"
check "host A held more than it spent (a slice outstanding)" test "${A_HELD%.*}" -gt "$A_SERVED"
start_agent B
B1=0
for i in 1 2 3 4; do
	[ "$(chat B sk-b4 1)" = 200 ] && B1=$((B1 + 1))
	sleep 0.2
done
api GET /v1/admin/leases
STILL=$(jget '[h["live"] for l in j["leases"] if l["limit"]=="team:t4:requests:lifetime" for h in l["hosts"] if h["allowance"]=='"$A_HELD"'] == [True]')
if [ "$STILL" = true ]; then
	check "while A's slice is live B gets only the rest ($B1 <= 10 - $A_HELD)" test "$B1" -le $((10 - ${A_HELD%.*}))
else
	echo "# (A's slice expired before B was done: the before-TTL check is skipped under this load)"
fi
END=$(date -u -d "$A_EXP" +%s)
while [ "$(date -u +%s)" -le "$END" ]; do sleep 0.2; done
wait_for 20 ok200 B sk-b4
# the last units come in smaller slices (at most half of what is left per call): keep asking a while
for i in $(seq 1 40); do [ "$(chat B sk-b4 1)" = 200 ] || sleep 0.2; done
B_SERVED=$(served b4)
echo "# after A's TTL: B served $B_SERVED in all; A $A_SERVED"
expect_eq "after the TTL A's unspent slice came back: A + B served exactly the cap" 10 $((A_SERVED + B_SERVED))
for h in A B C; do stop_agent "$h"; done

finish
