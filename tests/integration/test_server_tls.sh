#!/usr/bin/env bash
# llmcap-server over HTTPS (--tls-cert/--tls-key, a certificate the test makes), the agent verifying
# it with --cacert, and the warning for plain HTTP on a non-loopback address.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/server_lib.sh"
setup_keys
make_cert "$T/tls"

ERR=$("$SERVER" --listen 127.0.0.1:1 --data "$T/x" --signing-key "$T/keys/llmcap.key" \
	--admin-token-file "$T/admin.token" --tls-cert "$T/tls/server.pem" 2>&1); RC=$?
expect_eq "--tls-cert without --tls-key: exit 2" 2 "$RC"
check "... saying both are needed" grep -q -- '--tls-cert and --tls-key go together' <<<"$ERR"
ERR=$("$SERVER" --listen 127.0.0.1:1 --data "$T/x" --signing-key "$T/keys/llmcap.key" \
	--admin-token-file "$T/admin.token" --tls-cert "$T/admin.token" --tls-key "$T/tls/server.key" 2>&1); RC=$?
expect_eq "a certificate that is not PEM: exit 1" 1 "$RC"
check "... named" grep -q -- '--tls-cert .*: not a PEM file' <<<"$ERR"

start_server --tls-cert "$T/tls/server.pem" --tls-key "$T/tls/server.key"
HTTPS=https://127.0.0.1:$SRV_PORT
CODE=$(curl -s -o /dev/null -w '%{http_code}' --cacert "$T/tls/ca.pem" "$HTTPS/healthz")
expect_eq "HTTPS with the CA: healthz 200" 200 "$CODE"
CODE=$(curl -s -o "$T/resp" -w '%{http_code}' --cacert "$T/tls/ca.pem" -X PUT -H "Authorization: Bearer $TOKEN" \
	--data-binary '{"spend_cap_usd": 5, "period": "monthly"}' "$HTTPS/v1/admin/org")
expect_eq "an admin change over HTTPS" 200 "$CODE"
curl -s -o /dev/null "$HTTPS/healthz"; RC=$?
check "a client without the CA refuses the certificate (curl exit $RC)" test "$RC" -ne 0
CODE=$(curl -s -o /dev/null -w '%{http_code}' -m 5 "http://127.0.0.1:$SRV_PORT/healthz")
check "plain HTTP to the HTTPS port gets no answer (got $CODE)" test "$CODE" != 200
ECODE=$(curl -s --cacert "$T/tls/ca.pem" -X POST -H "Authorization: Bearer $TOKEN" "$HTTPS/v1/admin/hosts/enroll" |
	jget 'j["code"]' /dev/stdin)
"$LLMCAP" agent enroll --server "$HTTPS" --cacert "$T/tls/ca.pem" --code "$ECODE" >"$T/enroll.out" 2>&1
expect_eq "the host enrolls over HTTPS with --cacert" 0 $?
"$LLMCAP" agent --server "$HTTPS" --trust "$T/keys/llmcap.pub" --cacert "$T/tls/ca.pem" --once >"$T/agent.out" 2>&1
expect_eq "the agent syncs over HTTPS with --cacert" 0 $?
check "...and reports as the enrolled host" bash -c 'curl -s --cacert "$1" -H "Authorization: Bearer $2" "$3/v1/admin/hosts" | grep -q "\"seq\""' \
	_ "$T/tls/ca.pem" "$TOKEN" "$HTTPS"
check "... and installs the server's policy" bash -c '"$1" status --json | grep -q "\"version\": *2"' _ "$LLMCAP"
LLMCAP_STATE_DIR=$T/state2 "$LLMCAP" agent --server "$HTTPS" --trust "$T/keys/llmcap.pub" --once >"$T/agent2.out" 2>&1
expect_eq "without --cacert the agent does not trust the server" 1 $?
"$LLMCAP" agent --server "$HTTPS" --trust "$T/keys/llmcap.pub" --cacert "$T/nope.pem" --once >/dev/null 2>&1
expect_eq "a missing --cacert file: exit 2" 2 $?
check "plain HTTP on loopback: no warning" bash -c '! grep -q "plain HTTP" "$1"' _ "$T/server.log"
stop_server

PORT=$(free_port)
"$SERVER" --listen "0.0.0.0:$PORT" --data "$T/srv2" --signing-key "$T/keys/llmcap.key" \
	--admin-token-file "$T/admin.token" >"$T/server2.log" 2>&1 &
P2=$!; _pids+=("$P2")
wait_port "$PORT"
kill -TERM "$P2"; wait "$P2" 2>/dev/null
check "plain HTTP on 0.0.0.0: a warning naming --tls-cert" grep -q "warning: plain HTTP on 0.0.0.0:$PORT.*--tls-cert" "$T/server2.log"

finish
