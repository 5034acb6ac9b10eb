#!/usr/bin/env bash
# The ledger, end to end (issue 7): examples/chat (SDK + libcurl) against the stand-in provider.
# `llmcap usage --by key` and `--by model` equal what the provider's log says it served, exactly,
# with no limit watching any of it; unknown keys appear by a fingerprint prefix, never the key;
# the org's spend is tracked with no cap; `llmcap status` fits 80 columns (and $COLUMNS).
. "$(dirname "$0")/lib.sh"

setup_keys
start_provider p --usage-in 40 --usage-cached 8 --usage-out 20 || exit 1
URL=http://127.0.0.1:$PORT_p/v1/chat/completions
LONG=research-and-development-platform-team-with-a-very-long-name

cat > "$T/p1.json" <<JSON
{"schema":1,"version":1,"issued_at":"2026-01-01T00:00:00Z","expires_at":"$(iso_in_days 30)",
 "providers":[{"name":"local","format":"openai","hosts":["127.0.0.1:$PORT_p"]}],
 "prices":{"gpt-4o-mini":{"input":0.15,"cached_input":0.075,"output":0.60,"max_output_tokens":64},
           "gpt-4o":{"input":2.5,"cached_input":1.25,"output":10,"max_output_tokens":64}},
 "unknown_keys":"allow",
 "teams":{"$LONG":{"limits":[{"metric":"cost","window":"monthly","threshold":1000,"alert_at":900}]}},
 "customers":{"identify":["header:x-customer-id"],"rate_limit_rpm":600,"monthly_budget_usd":5},
 "keys":{
   "alpha":{"sha256":"$(fingerprint sk-alpha)"},
   "beta":{"sha256":"$(fingerprint sk-beta)","team":"$LONG",
           "limits":[{"metric":"requests","window":"daily","threshold":100000,"alert_at":[2,90000,3]},
                     {"metric":"tokens","window":"weekly","threshold":5000000,"enabled":false}]},
   "gone":{"sha256":"$(fingerprint sk-gone)","revoked":true},
   "old":{"sha256":"$(fingerprint sk-old)","expires_at":"2026-01-02T00:00:00Z"}
 }}
JSON
check "policy applies" apply_policy "$T/p1.json"

"$CHAT" --url "$URL" --key sk-alpha --count 3 >/dev/null
"$CHAT" --url "$URL" --key sk-alpha --model gpt-4o --count 2 >/dev/null
"$CHAT" --url "$URL" --key sk-beta --model gpt-4o --count 4 --customer acme >/dev/null
"$CHAT" --url "$URL" --key sk-stranger --count 5 >/dev/null

"$LLMCAP" usage --by key --json >"$T/by-key.json"; expect_eq "usage --by key: exit 0" 0 $?
"$LLMCAP" usage --by model --window month --json >"$T/by-model.json"; expect_eq "usage --by model: exit 0" 0 $?

# what the provider served, grouped the same way (its "input" counts cached tokens too)
cat >"$T/compare.py" <<'PY'
import hashlib, json, sys
log, rep, by = sys.argv[1], json.load(open(sys.argv[2])), sys.argv[3]
names = {"sk-alpha": "alpha", "sk-beta": "beta"}
want = {}
for line in open(log):
    e = json.loads(line)
    if e.get("event") != "request":
        continue
    if by == "key":
        k = e["headers"]["authorization"].split(" ", 1)[1]
        g = names.get(k) or "sha256:" + hashlib.sha256(k.encode()).hexdigest()[:12]
    else:
        g = e["model"]
    u = e["usage"]
    r = want.setdefault(g, {"requests": 0, "input_tokens": 0, "cached_input_tokens": 0, "output_tokens": 0})
    r["requests"] += 1
    r["input_tokens"] += u["input"] - u["cached"]
    r["cached_input_tokens"] += u["cached"]
    r["output_tokens"] += u["output"]
got = {r["id"]: {k: r[k] for k in ("requests", "input_tokens", "cached_input_tokens", "output_tokens")}
       for r in rep["rows"]}
if got != want:
    sys.exit("llmcap %r != provider %r" % (got, want))
costs = [r["cost"] for r in rep["rows"]]
if costs != sorted(costs, reverse=True):
    sys.exit("rows not by cost descending: %r" % costs)
PY
check "usage --by key equals the provider's log exactly (no limits needed; unknown key by fingerprint)" \
	"$PY" "$T/compare.py" "$LOG_p" "$T/by-key.json" key
check "usage --by model equals the provider's log exactly" "$PY" "$T/compare.py" "$LOG_p" "$T/by-model.json" model
check "the raw unknown key appears nowhere in the report" sh -c "! grep -q sk-stranger '$T/by-key.json'"
check "usage --json: the documented shape" "$PY" -c '
import json,sys
j=json.load(open(sys.argv[1]))
assert set(j)=={"by","window","window_start","rows"} and j["by"]=="model" and j["window"]=="month", j
assert j["window_start"].endswith("-01T00:00:00Z"), j
for r in j["rows"]: assert set(r)=={"id","requests","input_tokens","cached_input_tokens","output_tokens","cost"}, r' "$T/by-model.json"
org=$("$LLMCAP" usage --by org --json | "$PY" -c 'import json,sys; r=json.load(sys.stdin)["rows"]; print(r[0]["requests"] if r else 0)')
expect_eq "org spend is tracked with no org cap" 14 "$org"
"$LLMCAP" usage --by customer --window lifetime >"$T/by-cust.txt"
check "usage (table) lists the customer" grep -q "^acme " "$T/by-cust.txt"
"$LLMCAP" usage --by nothing >/dev/null 2>"$T/err"; expect_eq "usage --by nothing: exit 1" 1 $?
check "...says what --by takes" grep -q "key, team, model" "$T/err"

# status: 80 columns (and $COLUMNS), sorted by scope then id, used and reserved, alert_at, rpm, key states
COLUMNS=80 "$LLMCAP" status >"$T/st80.txt"; expect_eq "status: exit 0" 0 $?
cat "$T/st80.txt"
check "status: no line longer than 80 columns" awk 'length > 80 { exit 1 }' "$T/st80.txt"
check "status: the long team id is shortened" grep -qE "^team +resear[a-z-]*~[a-z]+ +cost/month" "$T/st80.txt"
check "status: columns for used, reserved, threshold and alert_at" grep -q "USED *RESERVED *MAX *ALERT" "$T/st80.txt"
check "status: the customer's rpm is a limit row" grep -qE "^cust +acme +rpm " "$T/st80.txt"
check "status: ALERT is the next level to fire (beta's 2 and 3 are behind it at 4 requests)" grep -qE "^key +beta +req/day +4 +0 +100000 +90000 " "$T/st80.txt"
check "status: the disabled limit says off" grep -qE "^key +beta +tok/week .* off$" "$T/st80.txt"
check "status: the revoked key" grep -qE "^key +gone +revoked" "$T/st80.txt"
check "status: the expired key" grep -qE "^key +old +expired at 2026-01-02T00:00:00Z" "$T/st80.txt"
check "status: rows sorted by scope, then id" "$PY" -c '
import sys
order={"key":0,"team":1,"org":2,"cust":3}
rows=[l.split() for l in open(sys.argv[1]).read().splitlines()[2:] if l.split() and l.split()[0] in order and len(l.split())>3 and "/" in l.split()[2] or (l.split() and l.split()[0]=="cust")]
keys=[(order[r[0]],r[1]) for r in rows]
sys.exit(0 if keys==sorted(keys) else "%r" % keys)' "$T/st80.txt"
COLUMNS=140 "$LLMCAP" status >"$T/st140.txt"
check "status at COLUMNS=140: the long id shows in full, lines fit" \
	sh -c "grep -q '$LONG' '$T/st140.txt' && awk 'length > 140 { exit 1 }' '$T/st140.txt'"
"$LLMCAP" status --json >"$T/st.json"
check "status --json: the shape is unchanged (fields added: name, keys)" "$PY" -c '
import json,sys
j=json.load(open(sys.argv[1]))
for l in j["limits"]:
    for k in ("scope","id","metric","window","used","reserved","threshold","resets_at"): assert k in l, (k, l)
assert {k["id"]:k["state"] for k in j["keys"]}=={"alpha":"active","beta":"active","gone":"revoked","old":"expired"}
names=[l["name"] for l in j["limits"]]
assert "key:beta:requests:daily" in names and "customer:acme:requests:minute" in names, names' "$T/st.json"
finish
