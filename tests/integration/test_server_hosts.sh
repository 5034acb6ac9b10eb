#!/usr/bin/env bash
# llmcap agent + llmcap-server with real traffic: two hosts (two state directories, two
# agents) share team and org limits; the org's usage is the sum; each host enforces against
# the global usage it last learned plus its own since. Each host enrolled with its own
# credential. The server going away, a refused policy, host events uploaded by the agent and
# notified by the server (a receiver that fails, an agent killed mid-upload), SIGTERM; the
# policy hosts download holds no webhook secret.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/server_lib.sh"

start_fleet
start_receiver hook
HA=$T/hostA
HB=$T/hostB
agent() { # HOSTDIR [args...]
	local dir=$1; shift
	LLMCAP_STATE_DIR=$dir "$LLMCAP" agent --server "$SRV_URL" --trust "$T/keys/llmcap.pub" "$@"
}
chat() { # HOSTDIR KEY COUNT -> the statuses, space-separated
	LLMCAP_STATE_DIR=$1 "$CHAT" --url "$PURL" --key "$2" --max-tokens 20 --count "$3" 2>>"$T/chat.err" | tr '\n' ' ' |
		sed 's/ $//'
}
status_used() { # HOSTDIR SCOPE ID
	LLMCAP_STATE_DIR=$1 "$LLMCAP" status --json >"$T/st.json"
	jget "[l['used'] for l in j['limits'] if l['scope']=='$2' and l['id']=='$3'][0]" "$T/st.json"
}

# the sync without leases (each host enforces global as last learned + own, between `agent --once`
# rounds): leases, on by default, are off here (their own suite is test_server_leases)
api PUT /v1/admin/settings '{"leases":false}'
expect_code "settings: leases off" 200
# $1 per output token, no input price: a 20-token answer costs exactly $20, reserved as $20
api PUT /v1/admin/providers '{"providers":[{"name":"local","format":"openai","hosts":["127.0.0.1:'"$PORT_p"'"]}]}'
expect_code "providers" 200
api PUT /v1/admin/prices '{"prices":{"gpt-4o-mini":{"input":0,"output":1000000,"max_output_tokens":64}}}'
expect_code "prices" 200
api PUT /v1/admin/org '{"spend_cap_usd":100,"period":"monthly","warning_threshold_usd":50}'
api PUT /v1/admin/teams/t '{"limits":[{"metric":"cost","window":"monthly","threshold":80,"alert_at":30}]}'
api POST /v1/admin/keys '{"id":"ka","sha256":"'"$(fingerprint sk-host-a)"'","team":"t","limits":[]}'
api POST /v1/admin/keys '{"id":"kb","sha256":"'"$(fingerprint sk-host-b)"'","team":"t","limits":[]}'
api PUT /v1/admin/webhooks '{"webhooks":[{"url":"'"$RCV_hook"'/hook","secret":"'"$WHSECRET"'","events":["*"]}]}'
expect_code "webhooks" 200
api GET /v1/admin/policy; VER=$(jget 'j["version"]')
enroll "$HA" --trust "$T/keys/llmcap.pub" --label host-a; expect_eq "host A enrolls with a one-time code" 0 $?
enroll "$HB"; expect_eq "host B enrolls" 0 $?
check "the credential is kept 0600 in the state directory" test "$(stat -c %a "$HA/host.credential")" = 600
check "...with the server's key (--trust) next to it" cmp -s "$HA/server.pub" "$T/keys/llmcap.pub"

# --- secrets stay on the server: the policy hosts download holds no webhook URL or secret
curl -s "$SRV_URL/v1/policy" >"$T/envelope.json"
"$PY" -c 'import json,base64,sys; print(base64.b64decode(json.load(open(sys.argv[1]))["payload"]).decode())' \
	"$T/envelope.json" >"$T/payload.json"
check "GET /v1/policy: no webhook secret in the envelope or the signed payload" \
	bash -c '! grep -q "$1" "$2" && ! grep -q "$1" "$3"' _ "$WHSECRET" "$T/envelope.json" "$T/payload.json"
check "...and no webhook URL" bash -c '! grep -q "/hook" "$1"' _ "$T/payload.json"
check "...but the admin still reads them" bash -c 'curl -s -H "Authorization: Bearer $1" "$2/v1/admin/webhooks" | grep -q "$3"' \
	_ "$TOKEN" "$SRV_URL" "$WHSECRET"

# --- first contact
LLMCAP_STATE_DIR=$HA "$LLMCAP" agent --once 2>"$T/a.err"
expect_eq "agent A --once with only what enroll kept (no --server, no --trust): exit 0" 0 $?
check "agent A installed the server's policy" grep -q "policy version $VER" "$T/a.err"
agent "$HA" --once 2>"$T/a.err"; expect_eq "agent A again: the same version is a no-op, exit 0" 0 $?
check "...and says nothing about it" test ! -s "$T/a.err"

# --- host A spends $40, reports it
expect_eq "host A: two requests pass" "200 200" "$(chat "$HA" sk-host-a 2)"
agent "$HA" --once 2>>"$T/a.err"
api GET /v1/usage
expect_eq "server: org usage 40 after host A reports" 40.0 "$(jget '[l["used"] for l in j["limits"] if l["scope"]=="org"][0]')"

# --- host B learns the global usage, then enforces the team limit on global + own
agent "$HB" --once 2>"$T/b.err"; expect_eq "agent B --once: exit 0" 0 $?
expect_eq "host B sees the team at 40 before spending anything" 40.0 "$(status_used "$HB" team t)"
expect_eq "host B: team limit 80 = 40 (A, global) + 2 x 20 (own), the third is refused" "200 200 429" \
	"$(chat "$HB" sk-host-b 3)"
agent "$HB" --once 2>>"$T/b.err"
api GET /v1/usage
expect_eq "server: org usage is the sum 40 + 40" 80.0 "$(jget '[l["used"] for l in j["limits"] if l["scope"]=="org"][0]')"
expect_eq "server: team usage is the sum" 80.0 "$(jget '[l["used"] for l in j["limits"] if l["scope"]=="team"][0]')"
expect_eq "server: two hosts reported" 2 "$(jget 'len(j["hosts"])')"
agent "$HB" --once 2>>"$T/b.err"
agent "$HB" --once 2>>"$T/b.err"
api GET /v1/usage
expect_eq "repeated agent runs do not double count" 80.0 "$(jget '[l["used"] for l in j["limits"] if l["scope"]=="org"][0]')"

agent "$HA" --once 2>>"$T/a.err"
expect_eq "host A learns B's spend: team at 80" 80.0 "$(status_used "$HA" team t)"
expect_eq "host A is now refused by the team limit" "429" "$(chat "$HA" sk-host-a 1)"
agent "$HA" --once 2>>"$T/a.err"

# --- notifications: org-wide from the server (on the sum), host events from the agents
wait_for 10 test "$(rstat hook 'j["sources"].get("llmcap-server",{}).get("limit_reached",0)')" = 1
expect_eq "server: spend_cap_warning_threshold_reached once (80 >= 50)" 1 \
	"$(rstat hook 'j["sources"].get("llmcap-server",{}).get("spend_cap_warning_threshold_reached",0)')"
expect_eq "server: team limit_alert once (alert_at 30)" 1 \
	"$(rstat hook 'j["sources"].get("llmcap-server",{}).get("limit_alert",0)')"
expect_eq "server: team limit_reached once (80)" 1 \
	"$(rstat hook 'j["sources"].get("llmcap-server",{}).get("limit_reached",0)')"
expect_eq "server: no spend_cap_reached below the cap" 0 \
	"$(rstat hook 'j["sources"].get("llmcap-server",{}).get("spend_cap_reached",0)')"
# hosts that sync leave org and team events to the server: each reaches the webhook once
expect_eq "hosts: no team limit_reached from the hosts (the server's is the one)" 0 \
	"$(rstat hook 'j["sources"].get("host",{}).get("limit_reached",0)')"
expect_eq "hosts: no org warning from the hosts" 0 \
	"$(rstat hook 'j["sources"].get("host",{}).get("spend_cap_warning_threshold_reached",0)')"
check "the org warning: one delivery, the full payload (limit, scope, id, metric, window, threshold, alert_at, used, window_start, resets_at, policy_version)" "$PY" -c '
import json,sys
rows=[json.loads(l) for l in open(sys.argv[1])]
w=[r for r in rows if r["event"]=="spend_cap_warning_threshold_reached" and r["status"]==200]
if len(w)!=1: sys.exit("%d deliveries" % len(w))
d=json.loads(w[0]["body"])["data"]
want={"limit":"org:org:cost:monthly","scope":"org","id":"org","metric":"cost","window":"monthly","level":"alert_at"}
for k,v in want.items():
    if d.get(k)!=v: sys.exit("%s=%r" % (k,d.get(k)))
for k in ("threshold","alert_at","used","window_start","resets_at","policy_version"):
    if d.get(k) is None: sys.exit("no "+k)
sys.exit(0 if d["used"]>=d["alert_at"]==50 else "used %r alert_at %r" % (d["used"],d["alert_at"]))' "$T/receiver-hook.jsonl"
expect_eq "all signatures verified" 0 "$(rstat hook 'j["bad_signature"]')"
expect_eq "no delivery received twice" true "$(rstat hook 'all(v==1 for v in j["deliveries"].values())')"

# --- the server goes away: the host keeps enforcing its last trusted policy
stop_server
agent "$HA" --once 2>"$T/a.err"; expect_eq "agent --once with the server down: exit 1" 1 $?
expect_eq "host A still refuses over the team limit" "429" "$(chat "$HA" sk-host-a 1)"
LLMCAP_STATE_DIR=$HA "$LLMCAP" status --json >"$T/st.json"
expect_eq "host A keeps its policy version" "$VER" "$(jget 'j["policy"]["version"]' "$T/st.json")"
(LLMCAP_STATE_DIR=$HA exec "$LLMCAP" agent --server "$SRV_URL" --trust "$T/keys/llmcap.pub" --interval 1 --max-backoff 4 \
	2>"$T/loop.err") &
APID=$!
sleep 2.5
kill -TERM "$APID"
T0=$(date +%s%N)
wait "$APID"; RC=$?
T1=$(date +%s%N)
expect_eq "agent loop: SIGTERM -> exit 0" 0 "$RC"
check "agent loop: exits within 1.5 s of SIGTERM" test $(((T1 - T0) / 1000000)) -lt 1500
check "agent loop: backs off while the server is away" grep -q "retry in" "$T/loop.err"
start_server
agent "$HA" --once 2>>"$T/a.err"; expect_eq "server back: agent --once exit 0" 0 $?
api GET /v1/usage
expect_eq "server back: nothing double counted" 80.0 "$(jget '[l["used"] for l in j["limits"] if l["scope"]=="org"][0]')"

# --- a policy the host does not trust is refused; the installed one stays
mkdir -p "$T/other"; "$LLMCAP" keygen --out "$T/other" >/dev/null
LLMCAP_STATE_DIR=$HA "$LLMCAP" agent --server "$SRV_URL" --trust "$T/other/llmcap.pub" --once 2>"$T/a.err"
expect_eq "agent with the wrong trust key: exit 1" 1 $?
check "...and says the policy was refused" grep -q "refused" "$T/a.err"
LLMCAP_STATE_DIR=$HA "$LLMCAP" status --json >"$T/st.json"
expect_eq "...and the trusted policy stays in force" "$VER" "$(jget 'j["policy"]["version"]' "$T/st.json")"

# --- an oversized answer is cut off while it downloads
mkdir -p "$T/big/v1"
CAP=$(sed -n 's/^#define LC_ENVELOPE_MAX (\([0-9 *]*\)).*/\1/p' "$LC_ROOT/shared-state/sign.h")
truncate -s $((CAP + 1024 * 1024)) "$T/big/v1/policy"
BIGPORT=$(free_port)
"$PY" -m http.server "$BIGPORT" --bind 127.0.0.1 --directory "$T/big" >/dev/null 2>&1 &
_pids+=($!)
wait_port "$BIGPORT"
LLMCAP_STATE_DIR=$HA "$LLMCAP" agent --server "http://127.0.0.1:$BIGPORT" --trust "$T/keys/llmcap.pub" --once 2>"$T/a.err"
expect_eq "a policy answer 1 MiB over the cap: agent exit 1" 1 $?
check "...cut off as too large" grep -q "larger than" "$T/a.err"
LLMCAP_STATE_DIR=$HA "$LLMCAP" status --json >"$T/st.json"
expect_eq "...and the trusted policy stays" "$VER" "$(jget 'j["policy"]["version"]' "$T/st.json")"

# --- host events: uploaded by the agent, notified by the server, exactly once, also when the
# agent dies after the server took them and before it forgot them
api POST /v1/admin/keys '{"id":"kc","sha256":"'"$(fingerprint sk-host-c)"'","limits":[{"metric":"requests","window":"lifetime","threshold":1}]}'
agent "$HA" --once 2>>"$T/a.err"
curl -s -X POST "$RCV_hook/fail?n=3" >/dev/null
FAILED0=$(rstat hook 'j["failed"]')
expect_eq "key kc: one request, then refused" "200 429" "$(chat "$HA" sk-host-c 2)"
LLMCAP_STATE_DIR=$HA LLMCAP_TEST_AGENT_DIE_AFTER_UPLOAD=1 "$LLMCAP" agent --once 2>>"$T/a.err"
expect_eq "the agent dies after the upload, before it forgets the events (exit 3)" 3 $?
agent "$HA" --once 2>>"$T/a.err"; expect_eq "restarted, it uploads them again (exit 0)" 0 $?
agent "$HA" --once 2>>"$T/a.err"
wait_for 20 "$PY" -c '
import json,sys
rows=[json.loads(l) for l in open(sys.argv[1])]
sys.exit(0 if any(r["event"]=="limit_reached" and "key:kc" in r["body"] and r["status"]==200 for r in rows) else 1)' \
	"$T/receiver-hook.jsonl"
check "the key's limit_reached reaches the webhook once, from the server, with the delivery id of the failed tries" "$PY" -c '
import json,sys
rows=[json.loads(l) for l in open(sys.argv[1])]
mine=[r for r in rows if r["event"]=="limit_reached" and "key:kc" in r["body"]]
failed={r["delivery"] for r in mine if r["status"]==500}
ok=[r for r in mine if r["status"]==200]
b=json.loads(ok[0]["body"]) if ok else {}
sys.exit(0 if failed and len(ok)==1 and {o["delivery"] for o in ok}==failed and b.get("source")=="host" and b.get("host_id") else
         "failed %r ok %r" % (failed, ok))' "$T/receiver-hook.jsonl"
check "the receiver failed first (the server retried)" test "$(rstat hook 'j["failed"]')" -gt "$FAILED0"

# --- the shared host token is gone: --host-token-file and --token-file are ignored, with a word
api GET /v1/usage; UBEFORE=$(jget '[l["used"] for l in j["limits"] if l["scope"]=="org"][0]')
stop_server
printf 'host-token-0123456789abcdef\n' >"$T/host.token"
start_server --host-token-file "$T/host.token"
check "--host-token-file: deprecated, said at start" grep -q "host-token-file is deprecated" "$T/server.log"
agent "$HB" --once --token-file "$T/host.token" 2>"$T/b.err"; expect_eq "an enrolled host reports (exit 0)" 0 $?
check "...and --token-file is said to be ignored" grep -q "token-file is deprecated" "$T/b.err"
api GET /v1/usage
expect_eq "...still nothing double counted" "$UBEFORE" "$(jget '[l["used"] for l in j["limits"] if l["scope"]=="org"][0]')"
curl -s -o /dev/null -w '%{http_code}' -X POST -H "Authorization: Bearer host-token-0123456789abcdef" \
	--data-binary '{"host_id":"x","epoch":"e","seq":1,"counters":[]}' "$SRV_URL/v1/usage" >"$T/code"
expect_eq "the old shared token is no credential (401)" 401 "$(cat "$T/code")"
HC=$T/hostC
LLMCAP_STATE_DIR=$HC "$LLMCAP" agent --server "$SRV_URL" --trust "$T/keys/llmcap.pub" --once 2>"$T/c.err"
expect_eq "a host not enrolled still gets the policy (exit 0)" 0 $?
check "...and is told its usage waits for enrolment" grep -q "not enrolled" "$T/c.err"

# --- removal: host B's reports are refused from then on; what it reported stays counted
HBID=$("$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))["host_id"])' "$HB/host.credential")
api DELETE "/v1/admin/hosts/$HBID"; expect_code "DELETE /v1/admin/hosts/B" 200 '"removed"'
agent "$HB" --once 2>"$T/b.err"
check "host B's report is refused with a 401" grep -q "HTTP 401" "$T/b.err"
api GET /v1/usage
expect_eq "what B reported stays counted" "$UBEFORE" "$(jget '[l["used"] for l in j["limits"] if l["scope"]=="org"][0]')"
api GET /v1/admin/hosts
expect_eq "GET /v1/admin/hosts: A active (label host-a), B removed" "active host-a removed" \
	"$(jget '" ".join([h["status"]+" "+h.get("label","") for h in j["hosts"] if h.get("label")=="host-a"]+[h["status"] for h in j["hosts"] if h["id"]=="'"$HBID"'"])')"
stop_server

finish
