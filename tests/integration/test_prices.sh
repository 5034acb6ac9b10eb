#!/usr/bin/env bash
# Prices end to end: a fresh llmcap-server (no prices set, unknown_models left at "block") serves a
# policy on the built-in price book, so a host's ordinary OpenAI and Anthropic calls (snapshot
# names included) pass and are charged the book's price exactly; `llmcap prices` shows the
# effective entries; a model nobody prices is refused, never counted at $0; so is a tool the book
# has no fee for (web search on gpt-4.1-nano, code execution); web_search_max_uses is the searches a
# request without max_uses reserves, and web_search_unbounded: "block" refuses such a request.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/server_lib.sh"

setup_keys
# the stand-in reports 1000 input tokens (200 of them cached) and 100 output tokens
start_provider p --usage-in 1000 --usage-cached 200 --usage-out 100
start_server
H=$T/host
enroll "$H" || fail "enroll the host"
agent() { LLMCAP_STATE_DIR=$H "$LLMCAP" agent --server "$SRV_URL" --trust "$T/keys/llmcap.pub" --once; }
chat() { # MODEL [--anthropic] -> the status
	local m=$1; shift
	local url=http://127.0.0.1:$PORT_p/v1/chat/completions
	[ "${1:-}" = --anthropic ] && url=http://localhost:$PORT_p/v1/messages
	LLMCAP_STATE_DIR=$H "$CHAT" --url "$url" --key sk-prices --model "$m" --max-tokens 100 "$@" 2>>"$T/chat.err"
}
key_used() { # micro-USD used by key k
	LLMCAP_STATE_DIR=$H "$LLMCAP" status --json >"$T/st.json"
	jget "round([l['used'] for l in j['limits'] if l['scope']=='key' and l['id']=='k'][0] * 1e6)" "$T/st.json"
}

api PUT /v1/admin/providers '{"providers":[{"name":"openai","format":"openai","hosts":["127.0.0.1:'"$PORT_p"'"]},
	{"name":"anthropic","format":"anthropic","hosts":["localhost:'"$PORT_p"'"]}]}'
expect_code "providers" 200
api POST /v1/admin/keys '{"id":"k","sha256":"'"$(fingerprint sk-prices)"'","limits":[{"metric":"cost","window":"monthly","threshold":5}]}'
expect_code "a key with a cost limit" 201
api GET /v1/policy
expect_eq "the server's first policy uses the built-in book" builtin \
	"$(jget 'json.loads(__import__("base64").b64decode(j["payload"]))["price_book"]')"
agent 2>"$T/agent.err"; expect_eq "agent installs it" 0 $?

# gpt-4o-mini-2024-07-18 (a book alias): 800 x $0.15 + 200 x $0.075 + 100 x $0.60 per M
#   = 120 + 15 + 60 = 195 micro-USD
expect_eq "an OpenAI snapshot name passes" 200 "$(chat gpt-4o-mini-2024-07-18)"
expect_eq "...and is charged the book's price exactly" 195 "$(key_used)"
# gpt-4.1-2099-01-01 (snapshot rule -> gpt-4.1): 800 x $2 + 200 x $0.50 + 100 x $8 = 1600 + 100 + 800
expect_eq "an unseen dated snapshot passes by the snapshot rule" 200 "$(chat gpt-4.1-2099-01-01)"
expect_eq "...at gpt-4.1's price" $((195 + 2500)) "$(key_used)"
# claude-3-5-haiku-20241022: 1000 x $0.80 + 200 cache reads x $0.08 + 100 x $4 = 800 + 16 + 400
expect_eq "an Anthropic snapshot name passes" 200 "$(chat claude-3-5-haiku-20241022 --anthropic)"
expect_eq "...at the book's price" $((2695 + 1216)) "$(key_used)"
expect_eq "a model nobody prices is refused (unknown_models: block)" 400 "$(chat gpt-9000)"
expect_eq "...and costs nothing" $((2695 + 1216)) "$(key_used)"

LLMCAP_STATE_DIR=$H "$LLMCAP" prices claude-3-5-haiku-latest --json >"$T/pr.json"
expect_eq "llmcap prices MODEL: the snapshot rule" claude-3-5-haiku "$(jget 'j["matched"]' "$T/pr.json")"
expect_eq "llmcap prices MODEL: the book's price" 0.8 "$(jget 'j["price"]["input"]' "$T/pr.json")"
LLMCAP_STATE_DIR=$H "$LLMCAP" prices gpt-9000 >/dev/null 2>&1
expect_eq "llmcap prices on an unpriced model: exit 1" 1 $?
LLMCAP_STATE_DIR=$H "$LLMCAP" prices --json >"$T/all.json"
check "llmcap prices --json: the whole effective table" \
	test "$(jget 'len(j["prices"]) > 20 and j["price_book"]["version"] >= 1' "$T/all.json")" = true

# the admin's prices override the book; settings can switch the book off
api PUT /v1/admin/prices '{"prices":{"gpt-4o-mini":{"input":1,"output":1}}}'
expect_code "admin prices" 200
agent 2>>"$T/agent.err"
expect_eq "policy price beats the book" 200 "$(chat gpt-4o-mini-2024-07-18)"
expect_eq "...charged at it: 1100 tokens x \$1/M" $((3911 + 1100)) "$(key_used)"
api PUT /v1/admin/settings '{"price_book":"none"}'
expect_code "settings price_book none" 200
agent 2>>"$T/agent.err"
expect_eq "without the book, gpt-4.1 is unknown again" 400 "$(chat gpt-4.1)"
api PUT /v1/admin/settings '{"price_book":"latest"}'
expect_code "a bad price_book value is refused, naming the field" 400 "price_book"
api PUT /v1/admin/settings '{"web_search_max_uses":0}'
expect_code "a bad web_search_max_uses is refused, naming the field" 400 "web_search_max_uses"
api PUT /v1/admin/settings '{"price_book":"none","web_search_max_uses":3,"web_search_unbounded":"block"}'
expect_code "settings web_search_max_uses and web_search_unbounded" 200
api GET /v1/policy
expect_eq "...they reach the hosts' policy" "3 block" \
	"$(jget '(lambda p: "%d %s" % (p["web_search_max_uses"], p["web_search_unbounded"]))(json.loads(__import__("base64").b64decode(j["payload"])))')"

# --- golden cases through the preload: the stand-in provider answers each case's documented
# response (JSON or SSE); the charge in `llmcap status` is the invoice worked out in the file
start_provider g --replay "$LC_ROOT/tests/golden/prices"
start_provider o --replay "$LC_ROOT/tests/golden/prices"   # an Ollama server (native /api/* paths)
export LLMCAP_STATE_DIR=$T/golden
cat >"$T/golden.json" <<EOF
{"schema": 1, "version": 1, "issued_at": "2026-01-01T00:00:00Z", "expires_at": "$(iso_in_days 30)",
 "providers": [{"name": "openai", "format": "openai", "hosts": ["127.0.0.1:$PORT_g"]},
               {"name": "anthropic", "format": "anthropic", "hosts": ["localhost:$PORT_g"]},
               {"name": "ollama", "format": "openai", "hosts": ["127.0.0.1:$PORT_o"]}],
 "prices": {"llama3.2": {"input": 0.10, "output": 0.40}, "nomic-embed-text": {"input": 0.01, "output": 0}},
 "price_book": "builtin", "org": {"spend_cap_usd": 1000}}
EOF
apply_policy "$T/golden.json" >/dev/null 2>&1; expect_eq "golden policy applied" 0 $?
org_used() {
	"$LLMCAP" status --json >"$T/gst.json"
	jget "round([l['used'] for l in j['limits'] if l['scope']=='org'][0] * 1e6)" "$T/gst.json"
}
total=0
for c in openai-02-chat-cached openai-06-chat-reasoning-stream openai-07-chat-priority openai-11-chat-audio \
	openai-14-responses-stream anthropic-04-opus-4-1-mixed-ttl anthropic-07-long-context-cache-1h \
	anthropic-10-stream-cache-web openai-23-responses-web-search-stream openai-25-responses-web-search-preview-gpt-4o \
	openai-28-chat-gpt-4o-search-preview openai-31-responses-web-search-gpt-5-nano-stream \
	anthropic-17-stream-code-execution-web-fetch ollama-02-generate-stream ollama-04-chat ollama-05-embed; do
	f=$LC_ROOT/tests/golden/prices/$c.json
	jget 'j["request"]["body"]' "$f" >"$T/body.json"
	host=127.0.0.1:$PORT_g
	case $c in anthropic-*) host=localhost:$PORT_g ;; ollama-*) host=127.0.0.1:$PORT_o ;; esac
	code=$("$LLMCAP" run -- curl -s -o "$T/out" -w '%{http_code}' -H "x-golden-case: $c" \
		-H 'content-type: application/json' -H 'x-api-key: sk-golden' --data-binary @"$T/body.json" \
		"http://$host$(jget 'j["request"]["path"]' "$f")")
	want=$(jget 'j["invoice"]["micro_usd"]' "$f")
	total=$((total + want))
	expect_eq "golden $c: 200 through the preload" 200 "$code"
	expect_eq "golden $c: charged exactly the invoice ($want micro-USD)" "$total" "$(org_used)"
done

# --- a tool the book has no fee for is unpriced like an unknown model (unknown_models: block): a 400
# naming the tool before the provider sees the request, never a search at $0
g_requests() { "$PY" "$LC_ROOT/tests/provider/logstat.py" "$LOG_g" | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["requests"])'; }
g_before=$(g_requests); used_before=$(org_used)
for c in openai-32-refused-web-search-gpt-4-1-nano anthropic-19-refused-code-execution; do
	f=$LC_ROOT/tests/golden/prices/$c.json
	jget 'j["request"]["body"]' "$f" >"$T/body.json"
	host=127.0.0.1:$PORT_g; case $c in anthropic-*) host=localhost:$PORT_g ;; esac
	code=$("$LLMCAP" run -- curl -s -o "$T/out" -w '%{http_code}' -H "x-golden-case: $c" \
		-H 'content-type: application/json' -H 'x-api-key: sk-golden' --data-binary @"$T/body.json" \
		"http://$host$(jget 'j["request"]["path"]' "$f")")
	expect_eq "refused $c: a 400 through the preload" 400 "$code"
	check "...its message names the tool ($(jget 'j["refused"]["message"]' "$f"))" \
		grep -q "$(jget 'j["refused"]["message"]' "$f")" "$T/out"
done
expect_eq "...the provider saw neither request" "$g_before" "$(g_requests)"
expect_eq "...and nothing was counted" "$used_before" "$(org_used)"

# --- web search fees are part of the worst case: an org cap of $0.05 sits above the token worst case of
# a claude-3-5-haiku call with 5 searches (a ~250-byte body at $0.80/M + 100 output tokens at $4/M: under
# 700 micro-USD; 5 x 8,000 tokens of search content at $0.80/M: 32,000) but below it plus their fees
# (max_uses 5 x $0.01 = 50,000): refused before the provider sees a byte
start_provider w --usage-in 1000 --usage-out 100
export LLMCAP_STATE_DIR=$T/websearch
cat >"$T/ws.json" <<EOF
{"schema": 1, "version": 1, "issued_at": "2026-01-01T00:00:00Z", "expires_at": "$(iso_in_days 30)",
 "providers": [{"name": "anthropic", "format": "anthropic", "hosts": ["localhost:$PORT_w"]}],
 "price_book": "builtin", "org": {"spend_cap_usd": 0.05}}
EOF
apply_policy "$T/ws.json" >/dev/null 2>&1; expect_eq "web search policy applied" 0 $?
messages() { # BODY -> the status
	"$LLMCAP" run -- curl -s -o "$T/out" -w '%{http_code}' -H 'content-type: application/json' \
		-H 'x-api-key: sk-ws' -H 'anthropic-version: 2023-06-01' --data-binary "$1" "http://localhost:$PORT_w/v1/messages"
}
ws_stat() { "$PY" "$LC_ROOT/tests/provider/logstat.py" "$LOG_w" | "$PY" -c 'import json,sys; print(json.load(sys.stdin)[sys.argv[1]])' "$1"; }
ask='"model": "claude-3-5-haiku-20241022", "max_tokens": 100, "messages": [{"role": "user", "content": "Any news today?"}]'
expect_eq "a request that may run 5 web searches is refused by the \$0.05 cap" 429 \
	"$(messages '{'"$ask"', "tools": [{"type": "web_search_20250305", "name": "web_search", "max_uses": 5}]}')"
for i in $(seq 1 100); do [ "$(ws_stat conns)" = "$(ws_stat conns_closed)" ] && break; sleep 0.1; done
expect_eq "...before the provider saw a request" 0 "$(ws_stat requests)"
expect_eq "...or a byte" 0 "$(ws_stat bytes_total)"
expect_eq "...and nothing is charged" 0 "$(org_used)"
expect_eq "the same request without the tool fits under the cap" 200 "$(messages '{'"$ask"'}')"
expect_eq "...charged 1000 x \$0.80/M + 100 x \$4/M = 1200 micro-USD" 1200 "$(org_used)"

# a request with no max_uses reserves web_search_max_uses searches: the default 10 (10 x ($0.01 + 8,000 x
# $0.80/M) = 164,000 micro-USD) is over the cap; the policy's 2 (32,800 + the tokens) is under it
unbounded='{'"$ask"', "tools": [{"type": "web_search_20250305", "name": "web_search"}]}'
expect_eq "a web search request with no max_uses reserves 10 searches: refused by the \$0.05 cap" 429 "$(messages "$unbounded")"
sed -i 's/"version": 1,/"version": 2, "web_search_max_uses": 2,/' "$T/ws.json"
apply_policy "$T/ws.json" >/dev/null 2>&1; expect_eq "web_search_max_uses 2 applied" 0 $?
expect_eq "...with web_search_max_uses 2 it reserves 2 and fits" 200 "$(messages "$unbounded")"
expect_eq "...charged what the usage says: 1200 micro-USD more" 2400 "$(org_used)"
# web_search_unbounded: "block" makes the reservation a bound: a request without max_uses is refused
sed -i 's/"version": 2,/"version": 3, "web_search_unbounded": "block",/' "$T/ws.json"
apply_policy "$T/ws.json" >/dev/null 2>&1; expect_eq "web_search_unbounded block applied" 0 $?
ws_before=$(ws_stat requests)
expect_eq "web_search_unbounded block: a web search request with no max_uses is refused" 400 "$(messages "$unbounded")"
check "...the message says to set max_uses" grep -q "set max_uses" "$T/out"
expect_eq "...before the provider saw it" "$ws_before" "$(ws_stat requests)"
expect_eq "...the same request with max_uses 2 passes" 200 \
	"$(messages '{'"$ask"', "tools": [{"type": "web_search_20250305", "name": "web_search", "max_uses": 2}]}')"
expect_eq "...charged exactly: 1200 micro-USD more" 3600 "$(org_used)"
sed 's/"web_search_max_uses": 2/"web_search_max_uses": 0/; s/"version": 3,/"version": 4,/' "$T/ws.json" >"$T/ws-bad.json"
apply_policy "$T/ws-bad.json" >"$T/ws-bad.out" 2>&1
check "a web_search_max_uses of 0 is refused, naming the field" grep -q "web_search_max_uses" "$T/ws-bad.out"

finish
