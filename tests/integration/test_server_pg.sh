#!/usr/bin/env bash
# llmcap-server on PostgreSQL (--db): the key server suites run again on a PostgreSQL of their own
# (LLMCAP_TEST_DB=pg), then two server instances share one database: a change made on one is
# served by the other, hosts report to either and the totals are exact, leases granted by both at
# once stay within the limit, the outbox is delivered once, the schema is versioned.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/server_lib.sh"

DIR=$(cd "$(dirname "$0")" && pwd)
# LLMCAP_PG_SUITES= (empty) runs only the two-server part
for suite in ${LLMCAP_PG_SUITES-test_server_usage test_server_hosts test_admin_cli test_failover test_server_leases}; do
	LLMCAP_TEST_DB=pg bash "$DIR/$suite.sh" >"$T/$suite.log" 2>&1
	rc=$?
	res=$(grep '^# passed' "$T/$suite.log" | tail -1)
	[ $rc -eq 0 ] && ok "$suite on PostgreSQL: ${res#\# }" ||
		fail "$suite on PostgreSQL: ${res#\# } $(grep '^not ok' "$T/$suite.log" | head -3 | tr '\n' ' ')"
done

pg_start || fail "PostgreSQL did not start"
PSQL() { "${PG_AS[@]}" "$PG_BIN/psql" -h "$T/pg" -p "$PG_PORT" -U llmcap -d postgres -Atc "$1"; }
# the server's unit suite (srv_handle over the store) on PostgreSQL
if [ -x "$B/tests/test_server_api" ]; then
	LLMCAP_TEST_PG_URL=$PG_URL "$B/tests/test_server_api" >"$T/unit.log" 2>&1
	rc=$?
	[ "$rc" = 0 ] || sed 's/^/#   /' "$T/unit.log" | grep -v '^#   \[ *\(RUN\|OK\) ' >&2
	expect_eq "test_server_api on PostgreSQL ($(grep -c '^\[       OK' "$T/unit.log") passed; the LMDB map and disk-full tests skipped)" \
		0 "$rc"
else
	ok "# SKIP test_server_api is not built (make build/tests/test_server_api)"
fi
PSQL 'SET client_min_messages = warning; DROP TABLE IF EXISTS kv, schema_version' >/dev/null   # a fresh database

# --- two servers, one database
setup_keys
start_receiver hook
start_server() { :; }   # not the helper's: two of our own
srv() { # NAME PORT
	"$SERVER" --listen "127.0.0.1:$2" --db "$PG_URL" --signing-key "$T/keys/llmcap.key" \
		--admin-token-file "$T/admin.token" --webhook-backoff-ms 200 --webhook-backoff-max-ms 1000 \
		>>"$T/server-$1.log" 2>&1 &
	_pids+=($!)
	printf -v "PID_$1" '%s' $!
	wait_port "$2"
}
PA=$(free_port); PB=$(free_port)
srv A "$PA"; srv B "$PB"
A=http://127.0.0.1:$PA; B=http://127.0.0.1:$PB
expect_eq "the schema is at version 1" 1 "$(PSQL 'SELECT max(version) FROM schema_version')"
check "...and both servers started on it (one first policy)" test "$(SRV_URL=$A; api GET /v1/admin/policy; jget 'j["version"]')" = 1

SRV_URL=$A
api PUT /v1/admin/org '{"spend_cap_usd":100,"period":"monthly","warning_threshold_usd":50}'
expect_code "a change on A" 200
VA=$(jget 'j["policy_version"]')
SRV_URL=$B
api GET /v1/admin/org; expect_code "...is read on B" 200 '"spend_cap_usd":100'
curl -s "$B/v1/policy" >"$T/envB.json"
VB=$("$PY" -c 'import json,base64,sys; print(json.loads(base64.b64decode(json.load(open(sys.argv[1]))["payload"]))["version"])' "$T/envB.json")
expect_eq "...and B serves the policy A published (version $VA)" "$VA" "$VB"
api PUT /v1/admin/webhooks '{"webhooks":[{"url":"'"$RCV_hook"'/hook","secret":"'"$WHSECRET"'","events":["*"]}]}'
expect_code "webhooks set on B" 200
SRV_URL=$A; api GET /v1/admin/audit
expect_eq "the audit log is one: A sees B's change" "PUT /v1/admin/webhooks" "$(jget 'j["entries"][0]["call"]')"

# a host enrolled on A reports to B; 20 hosts report in parallel, half to each
SRV_URL=$A; CRED=$(host_cred h1)
M=$(month_start)
CODE=$(curl -s -o "$T/resp" -w '%{http_code}' -X POST -H "Authorization: Bearer $CRED" --data-binary \
	'{"host_id":"h1","epoch":"e","seq":1,"counters":[{"scope":"org","id":"org","metric":"cost","window":"monthly","bucket":'"$M"',"used":30000000}]}' \
	"$B/v1/usage")
expect_eq "a host enrolled on A reports to B" 200 "$CODE"
CODE=$(curl -s -o "$T/resp" -w '%{http_code}' -X POST -H "Authorization: Bearer $CRED" --data-binary \
	'{"host_id":"h1","epoch":"e","seq":1,"counters":[]}' "$A/v1/usage")
expect_eq "the same seq replayed to A is refused: one store" 409 "$CODE"
declare -A HC
for h in $(seq 1 20); do HC[$h]=$(host_cred "p$h"); done
cpids=()
for h in $(seq 1 20); do
	url=$A; [ $((h % 2)) = 0 ] && url=$B
	for seq in 1 2 3; do
		curl -s -o /dev/null -X POST -H "Authorization: Bearer ${HC[$h]}" --data-binary \
			'{"host_id":"p'"$h"'","epoch":"e","seq":'"$seq"',"counters":[{"scope":"key","id":"shared","metric":"requests","window":"lifetime","bucket":0,"used":'"$((seq * 2))"'},{"scope":"org","id":"org","metric":"cost","window":"monthly","bucket":'"$M"',"used":'"$((seq * 1000000))"'}]}' \
			"$url/v1/usage"
	done &
	cpids+=($!)
done
wait "${cpids[@]}"
SRV_URL=$A; api GET '/v1/usage?by=key&window=lifetime'
expect_eq "20 hosts x 3 cumulative reports, half on each server: 120 requests, each counted once" 120 \
	"$(jget '[r["requests"] for r in j["rows"] if r["id"]=="shared"][0]')"
SRV_URL=$B; api GET /v1/usage
expect_eq "the org total on B: 30 + 20 x 3 = 90" 90.0 "$(jget '[l["used"] for l in j["limits"] if l["scope"]=="org"][0]')"

# leases granted by both servers at once stay within the limit: 8 hosts (each reported 3 requests of
# team lt) ask for 20 more at a time, 15 times each, alternating between A and B, all concurrently;
# each host's allowance includes its own usage, so the sum of the last allowances must not pass 100
SRV_URL=$A; api PUT /v1/admin/teams/lt '{"limits":[{"metric":"requests","window":"lifetime","threshold":100}]}'
expect_code "a team limit of 100 requests" 201
cpids=()
for h in $(seq 11 18); do
	(
		curl -s -o /dev/null -X POST -H "Authorization: Bearer ${HC[$h]}" --data-binary \
			'{"host_id":"p'"$h"'","epoch":"e","seq":4,"counters":[{"scope":"team","id":"lt","metric":"requests","window":"lifetime","bucket":0,"used":3}]}' \
			"$A/v1/usage"
		held=3
		for i in $(seq 1 15); do
			url=$A; [ $(((h + i) % 2)) = 0 ] && url=$B
			ans=$(curl -s -X POST -H "Authorization: Bearer ${HC[$h]}" --data-binary \
				'{"host_id":"p'"$h"'","epoch":"e","leases":[{"limit":"team:lt:requests:lifetime","bucket":0,"used":3,"held":'"$held"',"want":20,"gen":'"$i"'}]}' \
				"$url/v1/leases")
			a=$(grep -o '"allow":[0-9]*' <<<"$ans" | cut -d: -f2)
			[ -n "$a" ] && held=$a
		done
		echo "$held" >"$T/held-$h"
	) &
	cpids+=($!)
done
wait "${cpids[@]}"
SUM=$(($(cat "$T"/held-* | paste -sd+)))
echo "# 8 hosts x 15 lease calls on two servers: allowances $(cat "$T"/held-* | tr '\n' ' ')(sum $SUM)"
check "two servers granting concurrently: the hosts' allowances sum to at most the threshold ($SUM <= 100)" test "$SUM" -le 100
check "...and the limit was contended: nearly all of it granted ($SUM >= 90)" test "$SUM" -ge 90
SRV_URL=$B; api GET /v1/admin/leases
jget '[l for l in j["leases"] if l["limit"]=="team:lt:requests:lifetime"][0]' >"$T/lt.json"
expect_eq "the server's record: 8 hosts, reported 24 (8 x 3)" "8 24" "$(jget 'str(len(j["hosts"]))+" "+str(j["reported"])' "$T/lt.json")"
check "...reported + outstanding <= threshold ($(jget 'j["reported"]+j["outstanding"]' "$T/lt.json") <= 100)" \
	test "$(jget 'j["reported"]+j["outstanding"]' "$T/lt.json")" -le 100

# the warning (50) fired once: one delivery, though two servers watch the outbox
wait_for 20 test "$(rstat hook 'j["events"].get("spend_cap_warning_threshold_reached",0)')" -ge 1
sleep 2
expect_eq "the org warning reaches the webhook once" 1 "$(rstat hook 'j["events"].get("spend_cap_warning_threshold_reached",0)')"
expect_eq "no delivery twice" true "$(rstat hook 'all(v==1 for v in j["deliveries"].values())')"

# one server goes away: the other keeps serving, with everything
kill -9 "$PID_A"; wait "$PID_A" 2>/dev/null
SRV_URL=$B; api GET /v1/admin/hosts
expect_eq "A killed: B lists all 21 hosts" 21 "$(jget 'len(j["hosts"])')"
api PUT /v1/admin/teams/t '{"limits":[{"metric":"requests","window":"lifetime","threshold":5}]}'
expect_code "B takes changes alone" 201
CODE=$(curl -s -o "$T/resp" -w '%{http_code}' -X POST -H "Authorization: Bearer ${HC[1]}" --data-binary \
	'{"host_id":"p1","epoch":"e","seq":4,"counters":[{"scope":"team","id":"t","metric":"requests","window":"lifetime","bucket":0,"used":7}]}' \
	"$B/v1/usage")
expect_eq "a report to B" 200 "$CODE"
wait_for 20 test "$(rstat hook 'j["events"].get("limit_reached",0)')" -ge 1
expect_eq "B delivers the outbox once A is gone" 1 "$(rstat hook 'j["events"].get("limit_reached",0)')"

# a restart migrates nothing; a database from a newer llmcap-server is refused
srv A2 "$PA"
expect_eq "a restart on the same database: still schema version 1" 1 "$(PSQL 'SELECT count(*) FROM schema_version')"
PSQL 'INSERT INTO schema_version VALUES (99)' >/dev/null
PC=$(free_port)
ERR=$("$SERVER" --listen "127.0.0.1:$PC" --db "$PG_URL" --signing-key "$T/keys/llmcap.key" \
	--admin-token-file "$T/admin.token" 2>&1); RC=$?
expect_eq "a schema newer than the server: exit 1" 1 "$RC"
check "...saying so ($ERR)" grep -q "schema is version 99, newer" <<<"$ERR"
PSQL 'DELETE FROM schema_version WHERE version = 99' >/dev/null
ERR=$("$SERVER" --listen "127.0.0.1:$PC" --db "postgresql://llmcap@127.0.0.1:1/postgres" --signing-key "$T/keys/llmcap.key" \
	--admin-token-file "$T/admin.token" 2>&1); RC=$?
expect_eq "a database that is not there: exit 1" 1 "$RC"
check "...one line naming --db" grep -q "^llmcap-server: --db: PostgreSQL:" <<<"$ERR"
# the database goes away under a running server: changes are refused (503), nothing half-done;
# back, the server carries on (its connections re-established)
SRV_URL=http://127.0.0.1:$PA
"${PG_AS[@]}" "$PG_BIN/pg_ctl" -D "$T/pg/data" -m fast -w stop >/dev/null 2>&1
api PUT /v1/admin/org '{"spend_cap_usd":7,"period":"monthly"}'
expect_code "the database stopped: a change is a 503 naming PostgreSQL" 503 "store: PostgreSQL"
CODE=$(curl -s -o /dev/null -w '%{http_code}' "$SRV_URL/healthz")
expect_eq "...and the server itself still answers" 200 "$CODE"
"${PG_AS[@]}" "$PG_BIN/pg_ctl" -D "$T/pg/data" -l "$T/pg/log" -w -t 60 \
	-o "-p $PG_PORT -k $T/pg -c listen_addresses=127.0.0.1 -c fsync=off" start >/dev/null 2>&1
api PUT /v1/admin/org '{"spend_cap_usd":7,"period":"monthly"}'
expect_code "the database back: the change goes through" 200
api GET /v1/admin/org; expect_code "...once" 200 '"spend_cap_usd":7'

ERR=$("$SERVER" --listen "127.0.0.1:$PC" --db "$PG_URL" --data "$T/x" --signing-key "$T/keys/llmcap.key" \
	--admin-token-file "$T/admin.token" 2>&1); RC=$?
expect_eq "--data and --db together: exit 2" 2 "$RC"

finish
