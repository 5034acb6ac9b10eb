#!/usr/bin/env bash
# The heart, with real processes: examples/chat (SDK + libcurl) against the stand-in provider.
# (a) 16 processes race on one requests cap and one cost cap: the provider receives exactly the
#     requests cap, and the cost of what it reports never exceeds the cost cap;
# (b) kill -9 of processes holding reservations: nothing leaks, the next decision goes on at once.
. "$(dirname "$0")/lib.sh"

setup_keys
start_provider p --usage-in 12 --usage-out 20 || exit 1
URL=http://127.0.0.1:$PORT_p/v1/chat/completions

# (a) requests cap 40 for key "race"; cost cap for key "spend".
# price: input $0.15/M, output $0.60/M; each request: body ~200 bytes in + 64 out reserved,
# reported usage 12 in + 20 out = 1.8 + 12 = 13.8 micro-USD.
cat > "$T/p1.json" <<JSON
{"schema":1,"version":1,"issued_at":"2026-01-01T00:00:00Z","expires_at":"$(iso_in_days 30)",
 "providers":[{"name":"local","format":"openai","hosts":["127.0.0.1:$PORT_p"]}],
 "prices":{"gpt-4o-mini":{"input":0.15,"cached_input":0.075,"output":0.60,"max_output_tokens":16384}},
 "keys":{
   "race":{"sha256":"$(fingerprint sk-race)","limits":[{"metric":"requests","window":"daily","threshold":40}]},
   "spend":{"sha256":"$(fingerprint sk-spend)","limits":[{"metric":"cost","window":"monthly","threshold":0.0005}]}
 }}
JSON
check "policy applies" apply_policy "$T/p1.json"

cp=()
for i in $(seq 1 16); do "$CHAT" --url "$URL" --key sk-race --count 5 > "$T/race.$i" & cp+=($!); done
wait "${cp[@]}"
allowed=$(cat "$T"/race.* | grep -c '^200$')
denied=$(cat "$T"/race.* | grep -c '^429$')
received=$("$PY" "$LC_ROOT/tests/provider/logstat.py" "$LOG_p" | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["requests"])')
expect_eq "16 racing processes: exactly the requests cap (40) answered 200" 40 "$allowed"
expect_eq "the other 40 answered 429" 40 "$denied"
expect_eq "the provider received exactly the requests cap" 40 "$received"
used=$("$LLMCAP" status --json | "$PY" -c 'import json,sys
for l in json.load(sys.stdin)["limits"]:
    if l["id"]=="race" and l["metric"]=="requests": print(l["used"], l["reserved"])')
expect_eq "status: 40 used, 0 reserved" "40 0" "$used"

: > "$LOG_p.before"; cp "$LOG_p" "$LOG_p.before"
cp=()
for i in $(seq 1 16); do "$CHAT" --url "$URL" --key sk-spend --count 5 > "$T/spend.$i" & cp+=($!); done
wait "${cp[@]}"
ok200=$(cat "$T"/spend.* | grep -c '^200$')
cost=$("$PY" - "$LOG_p" "$LOG_p.before" <<'PY'
import json, math, sys
seen = sum(1 for _ in open(sys.argv[2]))
total = 0.0
for n, line in enumerate(open(sys.argv[1])):
    if n < seen: continue
    e = json.loads(line)
    if e.get("event") == "request" and e.get("headers", {}).get("authorization") == "Bearer sk-spend":
        u = e["usage"]
        # each request's cost is rounded up once to the whole micro-USD (README: money)
        total += math.ceil((u["input"] - u["cached"]) * 0.15 + u["cached"] * 0.075 + u["output"] * 0.60 - 1e-9) / 1e6
print(f"{total:.7f}")
PY
)
check "cost cap: some requests were allowed ($ok200)" test "$ok200" -gt 0
check "cost cap: the cost the provider reports (\$$cost) never exceeds \$0.0005" \
	"$PY" -c "import sys; sys.exit(0 if $cost <= 0.0005 else 1)"
spent=$("$LLMCAP" status --json | "$PY" -c 'import json,sys
for l in json.load(sys.stdin)["limits"]:
    if l["id"]=="spend": print("%.7f %g" % (l["used"], l["reserved"]))')
expect_eq "status charges exactly the reported usage" "$cost 0" "$spent"

# (b) kill -9 while holding reservations: a slow provider keeps requests in flight
start_provider slow --delay-ms 3000 || exit 1
SURL=http://127.0.0.1:$PORT_slow/v1/chat/completions
cat > "$T/p2.json" <<JSON
{"schema":1,"version":2,"issued_at":"2026-01-01T00:00:00Z","expires_at":"$(iso_in_days 30)",
 "providers":[{"name":"local","format":"openai","hosts":["127.0.0.1:$PORT_p","127.0.0.1:$PORT_slow"]}],
 "prices":{"gpt-4o-mini":{"input":0.15,"cached_input":0.075,"output":0.60,"max_output_tokens":16384}},
 "keys":{"kill":{"sha256":"$(fingerprint sk-kill)","limits":[{"metric":"requests","window":"daily","threshold":6}]}}}
JSON
check "policy v2 applies" apply_policy "$T/p2.json"
pids=()
for i in 1 2 3 4; do "$CHAT" --url "$SURL" --key sk-kill --count 1 > /dev/null 2>&1 & pids+=($!); done
sleep 1
reserved=$("$LLMCAP" status --json | "$PY" -c 'import json,sys
for l in json.load(sys.stdin)["limits"]:
    if l["id"]=="kill": print(l["reserved"])')
expect_eq "4 requests in flight hold 4 reservations" 4 "$reserved"
kill -9 "${pids[@]}"; wait "${pids[@]}" 2>/dev/null
# 6 allowed in all: 4 dead (charged at the estimate), so 2 more are allowed at once, then 429
t0=$(date +%s%N)
out=$("$CHAT" --url "$URL" --key sk-kill --count 3 | tr '\n' ' ')
t1=$(date +%s%N)
expect_eq "after kill -9 the next decisions go on at once: 200 200 429" "200 200 429 " "$out"
check "...without waiting for a timeout ($(( (t1 - t0) / 1000000 )) ms)" test $(( (t1 - t0) / 1000000 )) -lt 2000
left=$("$LLMCAP" status --json | "$PY" -c 'import json,sys
for l in json.load(sys.stdin)["limits"]:
    if l["id"]=="kill": print(l["used"], l["reserved"])')
expect_eq "nothing leaks: 6 used, 0 reserved" "6 0" "$left"

finish
