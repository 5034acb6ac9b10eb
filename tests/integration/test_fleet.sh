#!/usr/bin/env bash
# The fleet's promise end to end (issue 9, "tests of the promise"): three hosts (each its own state
# directory, enrolled `llmcap agent` and clients) and two llmcap-server instances on one PostgreSQL,
# leases on, an org cap and a team cap shared by every host, the SDK and curl under the preload
# sending at once on every host:
#   1. GET /v1/policy holds no webhook secret (nor URL), on either server;
#   2. the stand-in provider never serves past either cap, while one server is killed (SIGKILL)
#      mid-load and the agents move to the other; the caps are spent in full (no leftover stuck);
#   3. the server's totals are what reached the provider, exactly (per key, per team, org), and stay
#      so over more reports (nothing lost, nothing counted twice);
#   4. a forged, a replayed and an other-host report (and lease call) are refused and change nothing;
#   5. a host killed holding a slice: the slice is back once its TTL has passed, what it spent counted.
# No timed assertion: every wait is a bounded poll that fails saying what it waited for.
# LLMCAP_TEST_DB=lmdb (test_fleet_lmdb.sh) runs it on one server with --data: the same, without the
# second server and its kill.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/server_lib.sh"

DB=${LLMCAP_TEST_DB:-pg}
TEAM_CAP=6         # requests, lifetime, team "fleet"
ORG_CAP=400        # USD a month: 20 requests of $20
TTL=30             # lease_ttl_seconds (the default): renewals have 15 s to reach a server
HOSTS="A B C"
echo "# store: $DB"
# poll SECONDS CMD...: until CMD succeeds, for at most SECONDS of wall time (wait_for counts
# iterations, which a loaded machine stretches)
poll() {
	local end=$((SECONDS + $1))
	shift
	until "$@"; do
		[ "$SECONDS" -lt "$end" ] || return 1
		sleep 0.2
	done
}

setup_keys
start_provider p
start_receiver hook
PURL=http://127.0.0.1:$PORT_p/v1/chat/completions

# --- the servers: two on one PostgreSQL, or one on LMDB
S1PORT=$(free_port)
S1=http://127.0.0.1:$S1PORT
server() { # NAME PORT
	"$SERVER" --listen "127.0.0.1:$2" "${STORE[@]}" --signing-key "$T/keys/llmcap.key" \
		--admin-token-file "$T/admin.token" --webhook-backoff-ms 200 --webhook-backoff-max-ms 1000 \
		>>"$T/server-$1.log" 2>&1 &
	_pids+=($!)
	printf -v "PID_$1" '%s' $!
	wait_port "$2"
}
if [ "$DB" = pg ]; then
	pg_start || { fail "PostgreSQL did not start"; finish; exit 1; }
	STORE=(--db "$PG_URL")
	S2PORT=$(free_port)
	S2=http://127.0.0.1:$S2PORT
	server S1 "$S1PORT"; server S2 "$S2PORT"
	SERVERS=("$S1" "$S2")
else
	STORE=(--data "$T/srvdata")
	server S1 "$S1PORT"
	S2=$S1
	SERVERS=("$S1")
fi
SRV_URL=$S1

api PUT /v1/admin/providers '{"providers":[{"name":"local","format":"openai","hosts":["127.0.0.1:'"$PORT_p"'"]}]}'
expect_code "providers: the stand-in" 200
# $1 per output token: every answer (20 tokens, --max-tokens 20) costs $20, reserved as $20
api PUT /v1/admin/prices '{"prices":{"gpt-4o-mini":{"input":0,"output":1000000,"max_output_tokens":64}}}'
expect_code "prices" 200
api PUT /v1/admin/settings '{"leases":true,"lease_ttl_seconds":'"$TTL"'}'
expect_code "settings: leases on, TTL $TTL s" 200
api PUT /v1/admin/org '{"spend_cap_usd":'"$ORG_CAP"',"period":"monthly"}'
expect_code "the org cap: \$$ORG_CAP a month ($((ORG_CAP / 20)) requests)" 200
api PUT /v1/admin/teams/fleet '{"limits":[{"metric":"requests","window":"lifetime","threshold":'"$TEAM_CAP"'}]}'
expect_code "team fleet: $TEAM_CAP requests" 201
WHURL="$RCV_hook/hook-fleet-$RANDOM"
api PUT /v1/admin/webhooks '{"webhooks":[{"url":"'"$WHURL"'","secret":"'"$WHSECRET"'","events":["*"]}]}'
expect_code "a webhook with a secret" 200
# per host: key t<H> in team fleet, key f<H> in no team (the org cap only); secret sk-<id>
for h in $HOSTS; do
	for k in "t$h" "f$h"; do
		team=""; [ "${k:0:1}" = t ] && team=',"team":"fleet"'
		api POST /v1/admin/keys '{"id":"'"$k"'","sha256":"'"$(fingerprint "sk-$k")"'"'"$team"'}'
		[ "$CODE" = 201 ] || fail "key $k: $CODE $RESP"
	done
done

# --- 1. the policy hosts download holds no secret
for s in "${SERVERS[@]}"; do
	curl -s "$s/v1/policy" >"$T/env.json"
	"$PY" -c 'import json,base64,sys; sys.stdout.write(base64.b64decode(json.load(open(sys.argv[1]))["payload"]).decode())' \
		"$T/env.json" >"$T/policy.json"
	check "GET /v1/policy on $s is a signed policy with leases" grep -q '"leases":true' "$T/policy.json"
	check "...holding no webhook secret nor URL" bash -c '! grep -q -e "$1" -e "$2" "$3" "$4"' _ "$WHSECRET" "$WHURL" \
		"$T/policy.json" "$T/env.json"
done

# --- three hosts, each enrolled with both servers (host C lists them the other way round)
for h in $HOSTS; do
	sv=(--server "$S1"); [ "$DB" = pg ] && sv=(--server "$S1" --server "$S2")
	[ "$DB" = pg ] && [ "$h" = C ] && sv=(--server "$S2" --server "$S1")
	SRV_URL=$S1
	api POST /v1/admin/hosts/enroll '{"label":"host-'"$h"'"}'
	LLMCAP_STATE_DIR=$T/$h "$LLMCAP" agent enroll "${sv[@]}" --code "$(jget 'j["code"]')" \
		--trust "$T/keys/llmcap.pub" >/dev/null 2>>"$T/enroll.err" || fail "enroll host $h: $(cat "$T/enroll.err")"
	printf -v "HID_$h" '%s' "$(jget 'j["host_id"]' "$T/$h/host.credential")"
	printf -v "CRED_$h" '%s' "$(jget 'j["credential"]' "$T/$h/host.credential")"
done
start_agent() { # HOST
	(LLMCAP_STATE_DIR=$T/$1 exec "$LLMCAP" agent --interval 1 --max-backoff 2 2>>"$T/agent-$1.err") &
	_pids+=($!)
	printf -v "AGENT_$1" '%s' "$!"
}
for h in $HOSTS; do start_agent "$h"; done
installed() { LLMCAP_STATE_DIR=$T/$1 "$LLMCAP" status --json 2>/dev/null | grep -q '"team:fleet:requests:lifetime"'; }
for h in $HOSTS; do
	poll 20 installed "$h" || fail "host $h never installed the policy (agent: $(tail -2 "$T/agent-$h.err"))"
done

# --- 2. the load: on every host the SDK (examples/chat) and curl under the preload, each
# alternating the host's team key and its org-only key (a refusal waits 0.1 s), until the org cap
# is spent (the team's, smaller, is spent long before); then 3 attempts more each
sdk() { LLMCAP_STATE_DIR=$T/$1 "$CHAT" --url "$PURL" --key "$2" --max-tokens 20 --count 1 2>>"$T/chat.err"; }
preload() {
	LLMCAP_STATE_DIR=$T/$1 LD_PRELOAD=$PRELOAD curl -s -o /dev/null -w '%{http_code}\n' "$PURL" \
		-H "Authorization: Bearer $2" -H 'content-type: application/json' \
		-d '{"model":"gpt-4o-mini","max_tokens":20,"messages":[{"role":"user","content":"hi"}]}'
}
client() { # HOST sdk|preload
	local i k s more=3
	for ((i = 0; i < 400 && more > 0; i++)); do
		[ -e "$T/stop" ] && more=$((more - 1))
		k=sk-t$1; ((i % 2)) && k=sk-f$1
		s=$($2 "$1" "$k")
		echo "$s $k $(date +%s.%N)" >>"$T/client-$1-$2.out"
		[ "$s" = 200 ] || sleep 0.1
	done
}
# count [KEYID...]: requests the provider received (with these keys; none: all)
count() {
	local pat='"event":"request"'
	[ $# -gt 0 ] && pat='"authorization":"Bearer sk-('"$(IFS='|'; echo "$*")"')"'
	grep -cE "$pat" "$LOG_p"
}
count_ge() { local n=$1; shift; [ "$(count "$@")" -ge "$n" ]; }
served_cost() { # USD: the output tokens of every request served, at $1 each
	"$PY" -c 'import json,sys; print(sum(e["usage"]["output"] for e in map(json.loads, open(sys.argv[1])) if e.get("event")=="request"))' "$LOG_p"
}
TEAMKEYS="tA tB tC"
ORG_N=$((ORG_CAP / 20))

t0=$SECONDS
cpids=()
for h in $HOSTS; do
	client "$h" sdk & cpids+=($!)
	client "$h" preload & cpids+=($!)
done
KILLED_AT=-
if [ "$DB" = pg ]; then
	# one server goes away mid-load (SIGKILL): hosts A and B use it, C the other one
	if poll 60 count_ge $((ORG_N / 4)); then
		kill -9 "$PID_S1"; wait "$PID_S1" 2>/dev/null
		KILLED_AT=$(count)
		echo "# server 1 killed after $KILLED_AT requests reached the provider ($((SECONDS - t0)) s into the load)"
	else
		fail "the load never reached $((ORG_N / 4)) requests at the provider ($(count))"
	fi
fi
poll 120 count_ge "$ORG_N" ||
	fail "the org cap was not spent in full within 120 s: $(count) of $ORG_N requests (leftovers stuck on hosts?)"
SPENT_S=$((SECONDS - t0))
touch "$T/stop"
wait "${cpids[@]}"
LOAD_S=$((SECONDS - t0))
TEAM=$(count $TEAMKEYS)
ALL=$(count)
COST=$(served_cost)
ATTEMPTS=$(cat "$T"/client-*.out | wc -l)
REFUSED=$(cat "$T"/client-*.out | grep -c '^429 ')
echo "# load: $ATTEMPTS attempts, $REFUSED refused (429); caps spent after ${SPENT_S}s, clients done after ${LOAD_S}s;" \
	"provider: team $TEAM of $TEAM_CAP, all $ALL (\$$COST of \$$ORG_CAP)"
check "the team cap is never exceeded at the provider ($TEAM <= $TEAM_CAP)" test "$TEAM" -le "$TEAM_CAP"
check "the org cap is never exceeded at the provider (\$$COST <= \$$ORG_CAP)" test "$COST" -le "$ORG_CAP"
check "every answer is a 200 or a 429 (no error passes as a refusal)" test "$(cat "$T"/client-*.out | grep -cv -e '^200 ' -e '^429 ')" = 0
check "every host spent (A $(count tA fA), B $(count tB fB), C $(count tC fC)), with both clients: the SDK and curl under the preload" \
	test "$(count tA fA)" -gt 0 -a "$(count tB fB)" -gt 0 -a "$(count tC fC)" -gt 0 -a \
	"$(cat "$T"/client-*-sdk.out | grep -c '^200 ')" -gt 0 -a "$(cat "$T"/client-*-preload.out | grep -c '^200 ')" -gt 0
if [ "$DB" = pg ]; then
	check "...and the load went on after the kill ($KILLED_AT before, $ALL in all)" test "$ALL" -gt "$KILLED_AT"
	check "hosts A and B moved to the second server" grep -q "moving to $S2" "$T/agent-A.err"
	check "...both" grep -q "moving to $S2" "$T/agent-B.err"
fi

# --- 3. the server's totals: exactly what reached the provider
SRV_URL=$S2
totals() { # -> "team ORG_USD k1=N k2=N ..." as the server counts them
	curl -s -H "Authorization: Bearer $TOKEN" "$SRV_URL/v1/usage" >"$T/u.json" &&
		curl -s -H "Authorization: Bearer $TOKEN" "$SRV_URL/v1/usage?by=key&window=lifetime" >"$T/k.json" &&
		"$PY" - "$T/u.json" "$T/k.json" <<'EOF'
import json, sys
u = json.load(open(sys.argv[1])); k = json.load(open(sys.argv[2]))
lim = {l["name"]: l["used"] for l in u["limits"]}
team = lim.get("team:fleet:requests:lifetime", 0)
org = [l["used"] for l in u["limits"] if l["scope"] == "org"]
keys = sorted((r["id"], r["requests"]) for r in k["rows"])
print("%d %g %s" % (team, org[0] if org else 0, " ".join("%s=%d" % kv for kv in keys)))
EOF
}
EXPECT="$TEAM $COST $(for k in fA fB fC tA tB tC; do n=$(count "$k"); [ "$n" -gt 0 ] && printf '%s=%s ' "$k" "$n"; done)"
EXPECT=${EXPECT% }
exact() { [ "$(totals)" = "$EXPECT" ]; }
if poll 30 exact; then
	ok "the server's totals are what reached the provider, per key, team and org: $EXPECT"
else
	fail "the server's totals are what reached the provider (expected '$EXPECT', got '$(totals)')"
fi
seqs() { curl -s -H "Authorization: Bearer $TOKEN" "$SRV_URL/v1/admin/hosts" >"$T/h.json"; jget '" ".join(str(h.get("seq",0)) for h in sorted(j["hosts"], key=lambda h: h["id"]))' "$T/h.json"; }
SEQ0=($(seqs))
advanced() { local s=($(seqs)) i; for i in "${!SEQ0[@]}"; do [ "${s[$i]:-0}" -ge $((SEQ0[i] + 2)) ] || return 1; done; }
poll 30 advanced || fail "the agents did not report twice more (seq ${SEQ0[*]} -> $(seqs))"
expect_eq "two more reports from every host: still exact (nothing counted twice)" "$EXPECT" "$(totals)"
api GET /v1/admin/leases
check "GET /v1/admin/leases: reported + outstanding within each threshold" "$PY" -c '
import json,sys
j=json.load(open(sys.argv[1]))
sys.exit(0 if j["leases"] and all(l["reported"]+l["outstanding"]<=l["threshold"] for l in j["leases"]) else 1)' "$T/resp"

# --- 4. forged, replayed and other-host reports and lease calls: refused, nothing changes
post() { # PATH CREDENTIAL|"" BODY -> the status
	local a=()
	[ -n "$2" ] && a=(-H "Authorization: Bearer $2")
	curl -s -o "$T/resp" -w '%{http_code}' -X POST "${a[@]}" -H 'content-type: application/json' --data-binary "$3" "$SRV_URL$1"
}
M=$(month_start)
jget '[h for h in j["hosts"] if h["id"]=="'"$HID_A"'"][0]' "$T/h.json" >"$T/hA.json"
EPOCH_A=$(jget 'j["epoch"]' "$T/hA.json")
SEQ_A=$(jget 'j["seq"]' "$T/hA.json")
big() { # HOST_ID EPOCH SEQ: a report that would blow both caps
	echo '{"host_id":"'"$1"'","epoch":"'"$2"'","seq":'"$3"',"counters":[{"scope":"team","id":"fleet","metric":"requests","window":"lifetime","bucket":0,"used":1000},{"scope":"org","id":"org","metric":"cost","window":"monthly","bucket":'"$M"',"used":999000000000},{"scope":"key","id":"tA","metric":"requests","window":"lifetime","bucket":0,"used":1000}]}'
}
BEFORE=$(totals)
expect_eq "a report with no credential: 401" 401 "$(post /v1/usage "" "$(big "$HID_A" "$EPOCH_A" 1000000)")"
expect_eq "a report with a forged credential (host A's id, another secret): 401" 401 \
	"$(post /v1/usage "$HID_A.$(printf '%064d' 0)" "$(big "$HID_A" "$EPOCH_A" 1000000)")"
expect_eq "host A's report replayed (seq $SEQ_A again, with more in it): 409" 409 \
	"$(post /v1/usage "$CRED_A" "$(big "$HID_A" "$EPOCH_A" "$SEQ_A")")"
expect_eq "host A reporting as host B: 403" 403 "$(post /v1/usage "$CRED_A" "$(big "$HID_B" "$EPOCH_A" 1000000)")"
expect_eq "a lease call with no credential: 401" 401 \
	"$(post /v1/leases "" '{"host_id":"'"$HID_A"'","epoch":"'"$EPOCH_A"'","leases":[]}')"
expect_eq "host A asking for a slice as host B: 403" 403 \
	"$(post /v1/leases "$CRED_A" '{"host_id":"'"$HID_B"'","epoch":"x","leases":[{"limit":"team:fleet:requests:lifetime","bucket":0,"used":0,"held":0,"want":100,"gen":1}]}')"
expect_eq "...and none of them changed a total" "$BEFORE" "$(totals)"
expect_eq "...nor the host list (3 hosts, no new one)" 3 "$(api GET /v1/admin/hosts; jget 'len(j["hosts"])')"

# --- 5. a host killed holding a slice: back once its TTL has passed
SRV_URL=$S2
TTL3=8
api PUT /v1/admin/settings '{"leases":true,"lease_ttl_seconds":'"$TTL3"'}'
expect_code "settings: TTL $TTL3 s" 200
api PUT /v1/admin/org '{"spend_cap_usd":null,"period":"monthly"}'
api PUT /v1/admin/teams/spare '{"limits":[{"metric":"requests","window":"lifetime","threshold":1000}]}'
expect_code "team spare: 1000 requests" 201
api POST /v1/admin/keys '{"id":"sC","sha256":"'"$(fingerprint sk-sC)"'","team":"spare"}'
expect_code "key sC in team spare" 201
rm -f "$T/stop"
busy() { while [ ! -e "$T/stop" ]; do sdk C sk-sC >/dev/null || sleep 0.1; done; }
busy & BUSY=$!
spare_busy() { count_ge 6 sC; }
poll 30 spare_busy || fail "host C never got a slice of team spare ($(tail -2 "$T/agent-C.err"))"
touch "$T/stop"; wait "$BUSY"
# the host dies: its agent (and its clients, stopped above) killed while it holds its slice
curl -s -H "Authorization: Bearer $TOKEN" "$SRV_URL/v1/admin/leases" >"$T/l0.json"
kill -9 "$AGENT_C"; wait "$AGENT_C" 2>/dev/null
C_SERVED=$(count sC)
spare() { # FILE FIELD: host C's slice (FIELD), or the limit's (limit.FIELD)
	jget '[l for l in j["leases"] if l["limit"]=="team:spare:requests:lifetime"][0]' "$1" >"$T/spare.json"
	case $2 in
	limit.*) jget "j['${2#limit.}']" "$T/spare.json" ;;
	*) jget "[h['$2'] for h in j['hosts'] if h['host_id']=='$HID_C'][0]" "$T/spare.json" ;;
	esac
}
HELD=$(spare "$T/l0.json" allowance); COMMITTED=$(spare "$T/l0.json" committed); EXP=$(spare "$T/l0.json" expires_at)
OUT0=$(spare "$T/l0.json" limit.outstanding)
echo "# host C killed after $C_SERVED requests of team spare, holding $HELD (committed $COMMITTED) until $EXP; outstanding $OUT0"
check "host C was killed holding a live slice larger than what it spent ($HELD > $COMMITTED)" \
	test "$(spare "$T/l0.json" live)" = true -a "${HELD%.*}" -gt "${COMMITTED%.*}"
back() { curl -s -H "Authorization: Bearer $TOKEN" "$SRV_URL/v1/admin/leases" >"$T/l1.json" && [ "$(spare "$T/l1.json" live)" = false ]; }
if poll $((TTL3 + 20)) back; then
	NOW=$(date -u +%s)
	OUT1=$(spare "$T/l1.json" limit.outstanding)
	C1=$(spare "$T/l1.json" committed); R1=$(spare "$T/l1.json" reported)
	ok "host C's slice is no longer live $((NOW - $(date -u -d "$EXP" +%s))) s after it expired"
	check "...not before its TTL ($EXP)" test "$NOW" -ge "$(date -u -d "$EXP" +%s)"
	# outstanding is each host's claim beyond what it reported (the other hosts may hold prefetched
	# slices of the team too): host C's is now only what it committed and did not report
	expect_eq "...its unspent slice is back: outstanding $OUT0 -> $OUT1, of which host C's is what it committed and did not report" \
		"$("$PY" -c "print(max(0, $C1 - $R1))")" "$(jget "int(j['outstanding'] - sum(max(h['allowance'] if h['live'] else 0, h['committed'], h['reported']) - h['reported'] for h in j['hosts'] if h['host_id'] != '$HID_C'))" "$T/spare.json")"
else
	fail "host C's slice is still live $((TTL3 + 20)) s after the kill (expires $EXP)"
fi
# the host comes back: its agent reports what it spent, once
start_agent C
c_back() { api GET /v1/usage; [ "$(jget '[l["used"] for l in j["limits"] if l["name"]=="team:spare:requests:lifetime"][0]')" = "$C_SERVED" ]; }
poll 30 c_back || fail "host C back: the server never counted its $C_SERVED requests"
ok "host C back: the server counts all its $C_SERVED requests"

echo "# run time: $SECONDS s"
finish
