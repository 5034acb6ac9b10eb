#!/usr/bin/env bash
# llmcap run --budget USD / --max-requests N: an ephemeral cap on one run of a program and every
# process it starts (real curl from a shell loop, real python), with no key or policy change; the
# 429 names the run; a process outside the run is unaffected; llmcap status shows the run while it
# runs and not after; a run whose llmcap was killed is ignored.
. "$(dirname "$0")/lib.sh"

setup_keys
start_provider p --usage-in 0 --usage-out 20
URL=http://127.0.0.1:$PORT_p/v1/chat/completions
BODY='{"model":"gpt-4o-mini","max_tokens":20,"messages":[{"role":"user","content":"hi"}]}'
# $250 per million output tokens, input free: a 20-token answer costs $0.005, reserved as $0.005
cat >"$T/policy.json" <<EOF
{"schema": 1, "version": 1, "issued_at": "$(iso_in_days 0)", "expires_at": "$(iso_in_days 30)",
 "providers": [{"name": "local", "format": "openai", "hosts": ["127.0.0.1:$PORT_p"]}],
 "prices": {"gpt-4o-mini": {"input": 0, "output": 250, "max_output_tokens": 64}},
 "keys": {"ci": {"sha256": "$(fingerprint sk-run-ci)", "limits": [{"metric": "cost", "window": "daily", "threshold": 100}]}}}
EOF

"$LLMCAP" run --budget 0.01 -- true 2>"$T/err"
expect_eq "no policy installed: --budget refuses to run (exit 1)" 1 $?
check "... saying why" grep -q "need an installed policy" "$T/err"
apply_policy "$T/policy.json" >/dev/null 2>&1 || fail "apply"
"$LLMCAP" run --budget abc -- true 2>"$T/err"
expect_eq "--budget abc: exit 2" 2 $?
check "... saying what it wants" grep -q "needs an amount in USD" "$T/err"
"$LLMCAP" run --max-requests -1 -- true 2>"$T/err"
expect_eq "--max-requests -1: exit 2" 2 $?

status_runs() { "$LLMCAP" status --json >"$T/st.json" && "$PY" -c '
import json,sys
j=json.load(open(sys.argv[1]))
print(" ".join("%s:%s/%s" % (l["metric"], l["used"], l["threshold"]) for l in j["limits"] if l["scope"]=="run"))' "$T/st.json"; }

# --- a shell loop of curl calls under a $0.01 budget: two pass ($0.005 each), then 429s naming the run
cat >"$T/loop.sh" <<'EOF'
for i in 1 2 3 4 5; do
	curl -s -o "$T/body$i" -D "$T/head$i" -w '%{http_code}\n' -H 'Authorization: Bearer sk-run-ci' \
		-H 'content-type: application/json' -d "$BODY" "$URL" >>"$T/loop.out"
done
echo "$LLMCAP_RUN_ID" >"$T/run.id"
touch "$T/ready"
while [ ! -e "$T/go" ]; do sleep 0.05; done
EOF
export T URL BODY
"$LLMCAP" run --budget 0.01 -- bash "$T/loop.sh" 2>"$T/run.err" &
RUN_PID=$!
for i in $(seq 1 400); do [ -e "$T/ready" ] && break; sleep 0.05; done
RID=$(cat "$T/run.id" 2>/dev/null)
expect_eq "the loop under the run: two calls pass, then the budget refuses" "200 200 429 429 429" "$(tr '\n' ' ' <"$T/loop.out" | sed 's/ $//')"
check "the 429 names the run's budget" grep -q "llmcap: the budget of \$0.01 for this run (llmcap run --budget, run '$RID') reached (\$0.01 used + \$0.005 this request" "$T/body3"
check "x-llmcap-limit names the run" grep -qi "^x-llmcap-limit: run:$RID:cost:lifetime" "$T/head3"
expect_eq "the provider saw only the two calls that passed" 2 "$(grep -c '"event": *"request"' "$LOG_p")"
expect_eq "status shows the run while it runs: its budget and what it used" "cost:0.01/0.01" "$(status_runs)"
COLUMNS=120 "$LLMCAP" status >"$T/status.txt"
check "... in the table too" grep -qE "^run +$RID +cost/life .* end of run" "$T/status.txt"
CODE=$(LD_PRELOAD=$PRELOAD curl -s -o "$T/outside.body" -w '%{http_code}' -H 'Authorization: Bearer sk-run-ci' \
	-H 'content-type: application/json' -d "$BODY" "$URL")
expect_eq "a process outside the run is unaffected (same key, same provider)" 200 "$CODE"
touch "$T/go"
wait "$RUN_PID"
expect_eq "llmcap run exits with the program's status" 0 $?
expect_eq "status no longer shows the run after it ends" "" "$(status_runs)"
check "the run's usage still counts for the key (\$0.015 of its daily limit)" "$PY" -c '
import json,sys
j=json.load(open(sys.argv[1]))
u=[l["used"] for l in j["limits"] if l["scope"]=="key" and l["id"]=="ci"][0]
sys.exit(0 if abs(u-0.015)<1e-9 else "used %r" % u)' "$T/st.json"

# --- python under --max-requests 3: exactly three calls
cat >"$T/calls.py" <<'EOF'
import json, os, sys, urllib.error, urllib.request
out = []
for i in range(5):
    req = urllib.request.Request(os.environ["URL"], data=os.environ["BODY"].encode(),
                                 headers={"Authorization": "Bearer sk-run-ci", "content-type": "application/json"})
    try:
        with urllib.request.urlopen(req) as r:
            out.append(str(r.status))
    except urllib.error.HTTPError as e:
        out.append(str(e.code))
        last = json.loads(e.read())["error"]["message"]
print(" ".join(out))
print(last)
EOF
"$LLMCAP" run --max-requests 3 -- "$PY" "$T/calls.py" >"$T/py.out" 2>"$T/py.err"
expect_eq "python under --max-requests 3: exactly three calls pass" "200 200 200 429 429" "$(head -1 "$T/py.out")"
check "... the 429 names the run's request cap" grep -q "llmcap: the request cap of 3 for this run (llmcap run --max-requests, run '[0-9a-f]*') reached (3 used + 1 this request" "$T/py.out"
expect_eq "... and the run is gone after it" "" "$(status_runs)"

# --- status during a run, before any call; a run whose llmcap is killed is ignored
"$LLMCAP" run --budget 1 --max-requests 10 -- sleep 30 &
RUN_PID=$!
for i in $(seq 1 200); do [ -n "$(status_runs)" ] && break; sleep 0.05; done
expect_eq "status shows a fresh run's budget and request cap" "cost:0.0/1.0 requests:0/10" "$(status_runs)"
CHILD=$(pgrep -P "$RUN_PID" sleep)
kill -9 "$RUN_PID"; wait "$RUN_PID" 2>/dev/null
expect_eq "its llmcap killed: status ignores the run" "" "$(status_runs)"
[ -n "$CHILD" ] && kill "$CHILD" 2>/dev/null
finish
