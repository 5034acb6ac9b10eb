#!/usr/bin/env bash
# llmcap-server against hostile and careless use: the command line (--version, a missing flag
# named, a port in use, a second server on a data directory in use), the token checked before a
# body is read (memory stays flat), %00 in a path, slow clients that cannot starve the server
# (per-IP limit, a request deadline a trickle cannot extend), and the policy long-poll.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/server_lib.sh"
HOSTILE="$LC_ROOT/tests/integration/slow_clients.py"
setup_keys

# --- command line
OUT=$("$SERVER" --version 2>&1); RC=$?
expect_eq "--version exits 0" 0 "$RC"
check "--version prints the version" grep -qE '^llmcap-server [0-9]+\.[0-9]+\.[0-9]+$' <<<"$OUT"
ERR=$("$SERVER" --listen 127.0.0.1:1 --signing-key "$T/keys/llmcap.key" --admin-token-file "$T/admin.token" 2>&1); RC=$?
expect_eq "a missing --data: exit 2" 2 "$RC"
check "the missing flag is named" grep -q 'missing --data DIR' <<<"$ERR"
ERR=$("$SERVER" --listen 127.0.0.1:1 --data "$T/x" --signing-key "$T/keys/llmcap.key" --admin-token-file \
	"$T/admin.token" --threads lots 2>&1); RC=$?
expect_eq "a bad number: exit 2" 2 "$RC"
check "a bad number is named with its range" grep -q -- '--threads lots: expected a whole number from 1 to 64' <<<"$ERR"

start_server
ERR=$("$SERVER" --listen "127.0.0.1:$(free_port)" --data "$T/srvdata" --signing-key "$T/keys/llmcap.key" \
	--admin-token-file "$T/admin.token" 2>&1); RC=$?
expect_eq "a second server on a --data dir in use: exit 1" 1 "$RC"
check "... says so, with the pid of the first" grep -q "is in use by another llmcap-server (pid $SRV_PID)" <<<"$ERR"
ERR=$("$SERVER" --listen "127.0.0.1:$SRV_PORT" --data "$T/other" --signing-key "$T/keys/llmcap.key" \
	--admin-token-file "$T/admin.token" 2>&1); RC=$?
expect_eq "a port in use: exit 1" 1 "$RC"
expect_eq "a port in use: one line" 1 "$(grep -c . <<<"$ERR")"
check "... naming the address and the cause" grep -q "cannot listen on 127.0.0.1:$SRV_PORT: Address already in use" <<<"$ERR"
check "... and nothing from libmicrohttpd" bash -c '! grep -qi "failed to bind" <<<"$1"' _ "$ERR"
noauth GET /healthz; expect_code "the first server still answers" 200

# --- %00 and control characters in a path are refused, not truncated
api PUT /v1/admin/teams/- '{"limits":[]}'; expect_code "team '-' created" 201
CODE=$(curl -s --path-as-is -o "$T/resp" -w '%{http_code}' -X DELETE -H "Authorization: Bearer $TOKEN" \
	"$SRV_URL/v1/admin/teams/-%00zzz"); RESP=$(cat "$T/resp")
expect_code "DELETE /v1/admin/teams/-%00zzz -> 400" 400 "control characters"
api GET /v1/admin/teams/-; expect_code "team '-' is still there" 200
CODE=$(curl -s --path-as-is -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $TOKEN" \
	"$SRV_URL/v1/admin/teams/a%0ab"); expect_eq "%0a in a path -> 400" 400 "$CODE"
api GET "/v1/admin/teams/$(printf 'a%.0s' $(seq 64))"; expect_code "a 64-character id -> 400 naming 63" 400 "1-63 characters"

# --- the token before the body
OUT=$("$PY" "$HOSTILE" head_only 127.0.0.1 "$SRV_PORT" /v1/admin/prices)
check "no token: 401 on the head, no body awaited (got '$OUT')" grep -q '^HTTP/1.1 401' <<<"$OUT"
OUT=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $TOKEN" -X GET -H 'Content-Length: 10' \
	--data-binary 0123456789 "$SRV_URL/v1/admin/org")
expect_eq "a body where the route takes none -> 413" 413 "$OUT"
rss() { awk '/^VmRSS/ {print $2}' "/proc/$SRV_PID/status"; }
R0=$(rss)
OUT=$("$PY" "$HOSTILE" unauth_bodies 127.0.0.1 "$SRV_PORT" 16 4000000 /v1/admin/prices)
R1=$(rss)
check "16 unauthenticated 4 MB bodies are refused (got '$OUT')" bash -c '! grep -q "HTTP/1.1 [25]" <<<"$1"' _ "$OUT"
check "... and memory stays flat (RSS ${R0} -> ${R1} kB)" test $((R1 - R0)) -lt 16000

# --- request bodies in flight are bounded in all: 16 clients of an enrolled host post the largest usage
# report (16 MiB) at once, 1 MB/s each, to a server with --max-body-memory 32: two bodies fit, the others
# are answered 503 with Retry-After on their head, and the server's peak memory stays near 32 MiB
# (without the budget: 16 x 16 MiB)
stop_server
check "--max-body-memory below the largest body is refused" bash -c \
	'"$1" --listen 127.0.0.1:1 --data "$2/x" --signing-key "$2/keys/llmcap.key" --admin-token-file "$2/admin.token" \
	--max-body-memory 8 2>&1 | grep -q -- "--max-body-memory 8: expected a whole number from 16 to"' _ "$SERVER" "$T"
start_server --max-body-memory 32 --threads 4
HCRED=$(host_cred h-big)
"$PY" -c 'import sys; sys.stdout.write("[" + "," * ((16 << 20) - 1))' >"$T/big16"   # not JSON at its 2nd byte
CODE=$(curl -s -o /dev/null -w '%{http_code}' --data-binary @"$T/big16" -H 'Content-Type: application/json' \
	-H "Authorization: Bearer $HCRED" --data-binary x "$SRV_URL/v1/usage")
expect_eq "a usage report over 16 MiB -> 413" 413 "$CODE"
hwm() { awk '/^VmHWM/ {print $2}' "/proc/$SRV_PID/status"; }
H0=$(hwm)
for i in $(seq 16); do
	curl -s -o /dev/null -D "$T/bh$i" -w '%{http_code}\n' --limit-rate 1M -m 60 -H 'Content-Type: application/json' \
		-H "Authorization: Bearer $HCRED" --data-binary @"$T/big16" "$SRV_URL/v1/usage" >"$T/bc$i" &
	_pids+=($!)
done
for i in $(seq 16); do wait "${_pids[-1]}" 2>/dev/null; unset '_pids[-1]'; done
H1=$(hwm)
BUSY=$(cat "$T"/bc* | grep -c '^503$'); READ=$(cat "$T"/bc* | grep -c '^400$')
check "16 x 16 MiB at once: some read in full (400: not JSON) ($READ), the rest 503 ($BUSY)" \
	test "$READ" -ge 2 -a "$BUSY" -ge 1 -a $((READ + BUSY)) -eq 16
check "... the 503s say Retry-After" bash -c 'grep -l "^HTTP/1.1 503" "$@" | xargs grep -qi "^retry-after: 1"' _ "$T"/bh*
check "... and the peak memory grew by less than 64 MiB (VmHWM ${H0} -> ${H1} kB)" test $((H1 - H0)) -lt 65536
CODE=$(curl -s -o "$T/resp" -w '%{http_code}' -H "Authorization: Bearer $HCRED" -H 'Content-Type: application/json' \
	--data-binary '{"host_id":"h-big","epoch":"e","seq":1,"counters":[]}' "$SRV_URL/v1/usage"); RESP=$(cat "$T/resp")
expect_code "the budget is back afterwards: a report is read" 200
stop_server
start_server

# --- the policy long-poll
curl -s -D "$T/h" -o /dev/null "$SRV_URL/v1/policy"; ETAG=$(grep -i '^etag:' "$T/h" | cut -d' ' -f2 | tr -d '\r')
S0=$(date +%s%N)
CODE=$(curl -s -o /dev/null -w '%{http_code}' -m 20 -H "If-None-Match: $ETAG" "$SRV_URL/v1/policy?wait=1")
S1=$(date +%s%N)
expect_eq "long-poll, nothing changes: 304" 304 "$CODE"
check "... after the wait ($(( (S1 - S0) / 1000000 )) ms)" test $(( (S1 - S0) / 1000000 )) -ge 900
for i in 1 2 3 4 5 6 7 8; do   # more waiting polls than worker threads
	curl -s -o "$T/lp$i" -D "$T/lph$i" -w '%{http_code} %{time_total}\n' -m 40 -H "If-None-Match: $ETAG" \
		"$SRV_URL/v1/policy?wait=30" >"$T/lpc$i" &
	_pids+=($!)
done
sleep 1
CODE=$(curl -s -o /dev/null -w '%{http_code}' -m 5 "$SRV_URL/healthz")
expect_eq "healthz answers while 8 long-polls wait (4 threads)" 200 "$CODE"
api PUT /v1/admin/org '{"spend_cap_usd": 50, "period": "monthly"}'; expect_code "an admin change" 200
for i in 1 2 3 4 5 6 7 8; do wait "${_pids[-1]}" 2>/dev/null; unset '_pids[-1]'; done
read -r CODE SECS <"$T/lpc8"
expect_eq "a waiting long-poll answers 200 on the change" 200 "$CODE"
check "... within seconds of it, not at the wait's end (${SECS}s)" "$PY" -c "import sys; sys.exit(float('$SECS') >= 15)"
check "... with the new ETag" bash -c '! grep -qi "^etag: $1" "$2"' _ "$ETAG" "$T/lph8"
check "... and the new policy" "$LLMCAP" apply --trust "$T/keys/llmcap.pub" "$T/lp8"
check "every waiting long-poll got it" bash -c 'cat "$@" | grep -c "^200 " | grep -qx 8' _ "$T"/lpc*
stop_server

# --- named admin tokens with roles, and the audit log
printf '# NAME ROLE TOKEN\nreader read reader-token-0123456789\nops admin ops-token-0123456789abcd\n' >"$T/tokens"
printf 'x writer long-enough-token-000\n' >"$T/badtokens"
ERR=$("$SERVER" --listen "127.0.0.1:$(free_port)" --data "$T/x" --signing-key "$T/keys/llmcap.key" \
	--admin-tokens-file "$T/badtokens" 2>&1); RC=$?
expect_eq "a bad tokens file: exit 1" 1 "$RC"
check "... naming the line and the role" grep -q "badtokens: line 1: role 'writer': must be admin or read" <<<"$ERR"
start_server --admin-tokens-file "$T/tokens"
CODE=$(curl -s -o /dev/null -w '%{http_code}' -H 'Authorization: Bearer reader-token-0123456789' "$SRV_URL/v1/admin/keys")
expect_eq "a read token reads" 200 "$CODE"
CODE=$(curl -s -o "$T/resp" -w '%{http_code}' -X PUT -H 'Authorization: Bearer reader-token-0123456789' \
	--data-binary '{"spend_cap_usd": 7, "period": "monthly"}' "$SRV_URL/v1/admin/org"); RESP=$(cat "$T/resp")
expect_code "a read token cannot change (403)" 403 "may only read"
CODE=$(curl -s -o /dev/null -w '%{http_code}' -X PUT -H 'Authorization: Bearer ops-token-0123456789abcd' \
	--data-binary '{"spend_cap_usd": 7, "period": "monthly"}' "$SRV_URL/v1/admin/org")
expect_eq "an admin token changes" 200 "$CODE"
api GET '/v1/admin/audit?limit=1'; expect_code "the audit log" 200 '"token":"ops"'
expect_eq "... names the call" "PUT /v1/admin/org" "$(jget 'j["entries"][0]["call"]')"
expect_eq "... with the value after" 7 "$(jget 'j["entries"][0]["after"]["org"]["spend_cap_usd"]')"
expect_eq "... and before" 50 "$(jget 'j["entries"][0]["before"]["spend_cap_usd"]')"
stop_server

# --- the largest usage report (16 MiB, 65,536 counters): applied and answered even when applying it
# takes longer than --request-timeout (the deadline bounds its arrival, not its handling: 3 s for the
# body to arrive, and applying it takes 2 s of CPU and a commit of 30 MB), its peak memory a bounded
# multiple of its body (it was 10.6 x), the heap given back afterwards
start_server --request-timeout 3 --threads 2
HCRED=$(host_cred h-max)
"$PY" - "$T/max.json" <<'EOF'
import sys
ctrs = ['{"scope":"customer","id":"%s","metric":"cost","window":"lifetime","bucket":0,"used":%d}'
        % (("c%07d" % i) * 16, i + 1) for i in range(65536)]
body = '{"host_id":"h-max","epoch":"e","seq":1,"counters":[%s]}' % ",".join(ctrs)
open(sys.argv[1], "w").write(body + " " * (65536 * 256 - len(body)))
EOF
H0=$(hwm)
CODE=$(curl -s -o "$T/resp" -w '%{http_code}' -m 900 -H "Authorization: Bearer $HCRED" \
	-H 'Content-Type: application/json' --data-binary @"$T/max.json" "$SRV_URL/v1/usage")
H1=$(hwm)
expect_eq "a 16 MiB usage report is answered 200 (--request-timeout 3)" 200 "$CODE"
expect_eq "... with every counter" 65536 "$(jget 'len(j["counters"])')"
expect_eq "... and its org-wide total" 65536 "$(jget '[c["used"] for c in j["counters"] if c["id"].startswith("c0065535")][0]')"
if [ -z "${LLMCAP_SAN:-}" ]; then   # (a sanitizer's allocator has other figures)
	check "... at a peak under 8 x its body (+$((H1 - H0)) kB)" test $((H1 - H0)) -lt $((8 * 16384))
	ANON=$(awk '/^RssAnon/ {print $2}' "/proc/$SRV_PID/status")
	check "... and the heap is given back afterwards (RssAnon $ANON kB)" test "$ANON" -lt 65536
fi
stop_server

# --- slow clients: 60 trickling connections from one address (127.0.0.2) against 40 slots, 8 per address
start_server --max-connections 40 --max-connections-per-ip 8 --request-timeout 3 --threads 2
"$PY" "$HOSTILE" trickle 127.0.0.1 "$SRV_PORT" 60 127.0.0.2 12 >"$T/trickle.out" 2>&1 &
TPID=$!
sleep 2
good=0
for i in 1 2 3 4 5; do
	CODE=$(curl -s -o /dev/null -w '%{http_code}' -m 3 "$SRV_URL/healthz")
	[ "$CODE" = 200 ] && good=$((good + 1))
	sleep 0.5
done
expect_eq "healthz from another address answers while 60 slow clients trickle" 5 "$good"
wait "$TPID"
OUT=$(cat "$T/trickle.out")
check "the trickling connections are cut at the request deadline, trickle or not ($OUT)" \
	"$PY" -c 'import sys; f=sys.argv[1].split(); sys.exit(not (int(f[3]) == int(f[1]) and float(f[5]) < 9))' "$OUT"
stop_server

finish
