#!/usr/bin/env bash
# Fail-over (issue 9 item 7): `llmcap agent --server URL1 --server URL2` moves to the next server
# when one is down, for the round and for its long-running loop; nothing is lost or counted twice.
# The two servers share one store's content here by a cold copy of the data directory (a standby);
# with LLMCAP_TEST_DB=pg (test_server_pg) they share one PostgreSQL. Usage reports are cumulative per (host,
# epoch), so the server the host moves to learns everything the host spent, once.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/server_lib.sh"

start_fleet
H=$T/host
chat() { # COUNT -> the statuses, space-separated
	LLMCAP_STATE_DIR=$H "$CHAT" --url "$PURL" --key sk-failover --max-tokens 20 --count "$1" 2>>"$T/chat.err" |
		tr '\n' ' ' | sed 's/ $//'
}
agent() { LLMCAP_STATE_DIR=$H "$LLMCAP" agent "$@"; }
# used URL: the key's requests today as that server counts them
used() { curl -s -H "Authorization: Bearer $TOKEN" "$1/v1/usage" >"$T/u.json"; jget '[l["used"] for l in j["limits"] if l["scope"]=="key"][0]' "$T/u.json"; }

# usage reports' fail-over, with a host that enforces on its own between `agent --once` rounds:
# leases (on by default) need a running agent's lease thread, so they are off here (their own
# suite is test_server_leases)
api PUT /v1/admin/settings '{"leases":false}'
expect_code "settings: leases off" 200
api PUT /v1/admin/providers '{"providers":[{"name":"local","format":"openai","hosts":["127.0.0.1:'"$PORT_p"'"]}]}'
api PUT /v1/admin/prices '{"prices":{"gpt-4o-mini":{"input":0,"output":1000000,"max_output_tokens":64}}}'
api POST /v1/admin/keys '{"id":"kf","sha256":"'"$(fingerprint sk-failover)"'","limits":[{"metric":"requests","window":"daily","threshold":100}]}'
expect_code "a key with a daily request limit" 201

S1=$SRV_URL
S2PORT=$(free_port)
S2=http://127.0.0.1:$S2PORT
api POST /v1/admin/hosts/enroll
LLMCAP_STATE_DIR=$H "$LLMCAP" agent enroll --server "$S1" --server "$S2" --code "$(jget 'j["code"]')" \
	--trust "$T/keys/llmcap.pub" >/dev/null
expect_eq "the host enrolls, keeping both servers" 0 $?

# the standby: a copy of the first server's store, served on a second port (LLMCAP_TEST_DB=pg: a
# second server on the same database)
stop_server
if [ "${LLMCAP_TEST_DB:-lmdb}" = pg ]; then
	S2STORE=(--db "$PG_URL")
else
	cp -a "$T/srvdata" "$T/srvdata2"
	S2STORE=(--data "$T/srvdata2")
fi
start_server
start_s2() {
	"$SERVER" --listen "127.0.0.1:$S2PORT" "${S2STORE[@]}" --signing-key "$T/keys/llmcap.key" \
		--admin-token-file "$T/admin.token" >>"$T/server2.log" 2>&1 &
	S2PID=$!
	_pids+=("$S2PID")
	wait_port "$S2PORT"
}
start_s2

agent --once 2>"$T/a.err"; expect_eq "agent (servers from the enrolment): exit 0" 0 $?
expect_eq "two requests pass" "200 200" "$(chat 2)"
agent --once 2>>"$T/a.err"
expect_eq "the first server counts them" 2 "$(used "$S1")"

kill -9 "$SRV_PID"; wait "$SRV_PID" 2>/dev/null
expect_eq "the first server is killed; two more requests pass (the host enforces on its own)" "200 200" "$(chat 2)"
agent --once 2>"$T/a.err"; expect_eq "agent --once moves on: exit 0" 0 $?
check "...and says so" grep -q "moving to $S2" "$T/a.err"
expect_eq "the second server has all four requests: nothing lost" 4 "$(used "$S2")"
agent --once 2>>"$T/a.err"
agent --once 2>>"$T/a.err"
expect_eq "more rounds: still four, nothing counted twice" 4 "$(used "$S2")"

# the long-running agent, started while the first server is still down: it works from the second;
# then the first is back and the second goes down
(LLMCAP_STATE_DIR=$H exec "$LLMCAP" agent --interval 1 --max-backoff 2 2>"$T/loop.err") &
APID=$!
_pids+=("$APID")
expect_eq "one more request" "200" "$(chat 1)"
wait_for 30 test "$(used "$S2")" = 5
expect_eq "the loop reports to the second server: five" 5 "$(used "$S2")"
start_server
kill -9 "$S2PID"; wait "$S2PID" 2>/dev/null
expect_eq "and one more" "200" "$(chat 1)"
wait_for 30 test "$(used "$S1")" = 6
expect_eq "the loop moves back to the first server, which learns all six, once" 6 "$(used "$S1")"
check "...having said it moved" grep -q "moving to $S1" "$T/loop.err"
expect_eq "the host sees six against its limit" 6 \
	"$(LLMCAP_STATE_DIR=$H "$LLMCAP" status --json | jget '[l["used"] for l in j["limits"] if l["scope"]=="key"][0]' /dev/stdin)"
kill -TERM "$APID"; wait "$APID"
expect_eq "SIGTERM: exit 0" 0 $?

# both down: the host keeps enforcing; --once says so and exits 1
stop_server
agent --once 2>"$T/a.err"; expect_eq "both servers down: agent --once exit 1" 1 $?
check "...the host keeps its policy" bash -c 'LLMCAP_STATE_DIR=$1 "$2" status >/dev/null' _ "$H" "$LLMCAP"

finish
