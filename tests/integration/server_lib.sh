# Helpers for the llmcap-server tests (test_server_*.sh). Source after lib.sh.
SERVER=$B/llmcap-server
RECEIVER="$LC_ROOT/tests/provider/webhook_receiver.py"
TOKEN=test-admin-token-0123456789abcdef
WHSECRET=whsec_test_secret
printf '%s\n' "$TOKEN" >"$T/admin.token"

# pg_start: a PostgreSQL cluster of this test's own (Debian's postgresql: initdb in $T/pg as an
# unprivileged user, a free port, its unix socket in $T/pg); sets PG_URL. Stopped at exit.
pg_start() {
	[ -n "${PG_URL:-}" ] && return 0
	local bin; bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
	[ -x "$bin/initdb" ] || { echo "pg_start: no PostgreSQL server (apt-get install postgresql)" >&2; return 1; }
	local as=()
	mkdir -p "$T/pg"
	if [ "$(id -u)" = 0 ]; then   # initdb refuses root: run it as postgres (or nobody)
		local u=postgres; id -u postgres >/dev/null 2>&1 || u=nobody
		chmod 711 "$T"; chown "$u" "$T/pg"
		as=(setpriv --reuid="$u" --regid="$(id -g "$u")" --clear-groups)
	fi
	PG_PORT=$(free_port)
	"${as[@]}" "$bin/initdb" -D "$T/pg/data" -A trust -U llmcap -E UTF8 --no-sync >"$T/pg.init.log" 2>&1 ||
		{ echo "pg_start: initdb failed: $(tail -3 "$T/pg.init.log")" >&2; return 1; }
	"${as[@]}" "$bin/pg_ctl" -D "$T/pg/data" -l "$T/pg/log" -w -t 60 \
		-o "-p $PG_PORT -k $T/pg -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=100" start \
		>"$T/pg.start.log" 2>&1 || { echo "pg_start: pg_ctl start failed: $(tail -3 "$T/pg/log")" >&2; return 1; }
	PG_AS=("${as[@]}"); PG_BIN=$bin
	PG_URL="postgresql://llmcap@127.0.0.1:$PG_PORT/postgres"
}
_cleanup_extra() {
	[ -n "${PG_URL:-}" ] && "${PG_AS[@]}" "$PG_BIN/pg_ctl" -D "$T/pg/data" -m immediate -w stop >/dev/null 2>&1
	return 0
}
# the store start_server uses: LMDB in $T/srvdata, or with LLMCAP_TEST_DB=pg this test's PostgreSQL
store_args() {
	if [ "${LLMCAP_TEST_DB:-lmdb}" = pg ]; then
		pg_start || return 1
		STORE=(--db "$PG_URL")
	else
		STORE=(--data "$T/srvdata")
	fi
}

# start_server [extra args...]: (re)start llmcap-server on $SRV_PORT (a free port the first time)
# with data in $T/srvdata (LLMCAP_TEST_DB=pg: in a PostgreSQL of the test's own). Sets SRV_PID, SRV_URL.
start_server() {
	SRV_PORT=${SRV_PORT:-$(free_port)}
	store_args || return 1
	"$SERVER" --listen "127.0.0.1:$SRV_PORT" "${STORE[@]}" --signing-key "$T/keys/llmcap.key" \
		--admin-token-file "$T/admin.token" --webhook-backoff-ms 200 --webhook-backoff-max-ms 1000 "$@" \
		>>"$T/server.log" 2>&1 &
	SRV_PID=$!
	_pids+=("$SRV_PID")
	SRV_URL=http://127.0.0.1:$SRV_PORT
	wait_port "$SRV_PORT"
}
stop_server() { kill -TERM "$SRV_PID" 2>/dev/null; wait "$SRV_PID" 2>/dev/null; }
# start_fleet [start_server args...]: the signing keys, the stand-in provider p and llmcap-server;
# PURL is p's chat completions URL
start_fleet() {
	setup_keys
	start_provider p
	start_server "$@"
	PURL=http://127.0.0.1:$PORT_p/v1/chat/completions
}

# api METHOD PATH [BODY]: admin call; sets CODE, writes the body to $T/resp (RESP holds it)
api() {
	local m=$1 p=$2
	shift 2
	if [ $# -gt 0 ]; then
		CODE=$(curl -s -o "$T/resp" -w '%{http_code}' -X "$m" -H "Authorization: Bearer $TOKEN" \
			-H 'content-type: application/json' --data-binary "$1" "$SRV_URL$p")
	else
		CODE=$(curl -s -o "$T/resp" -w '%{http_code}' -X "$m" -H "Authorization: Bearer $TOKEN" "$SRV_URL$p")
	fi
	RESP=$(cat "$T/resp")
}
# noauth METHOD PATH [BODY]: the same without the admin token
noauth() {
	local m=$1 p=$2
	shift 2
	if [ $# -gt 0 ]; then
		CODE=$(curl -s -o "$T/resp" -w '%{http_code}' -X "$m" -H 'content-type: application/json' \
			--data-binary "$1" "$SRV_URL$p")
	else
		CODE=$(curl -s -o "$T/resp" -w '%{http_code}' -X "$m" "$SRV_URL$p")
	fi
	RESP=$(cat "$T/resp")
}
# jget PYEXPR [FILE]: evaluate a Python expression on the JSON in FILE (default $T/resp) as `j`
jget() { "$PY" -c 'import json,sys; j=json.load(open(sys.argv[2])); v=eval(sys.argv[1]); print(json.dumps(v) if isinstance(v,(dict,list,bool)) or v is None else v)' "$1" "${2:-$T/resp}"; }
# expect_code "desc" CODE [substring of the body]
expect_code() {
	if [ "$CODE" = "$2" ] && { [ $# -lt 3 ] || [[ $RESP == *"$3"* ]]; }; then ok "$1"
	else fail "$1 (expected $2${3:+ with '$3'}, got $CODE: ${RESP:0:300})"; fi
}

# start_receiver NAME [webhook_receiver.py args...]: sets RCV_<NAME> (URL), RCVPORT_<NAME>
start_receiver() {
	local name=$1; shift
	local port; port=$(free_port)
	"$PY" "$RECEIVER" --port "$port" --secret "$WHSECRET" --log "$T/receiver-$name.jsonl" "$@" \
		>"$T/receiver-$name.out" 2>&1 &
	_pids+=($!)
	wait_port "$port" || return 1
	printf -v "RCV_$name" '%s' "http://127.0.0.1:$port"
}
# rstat NAME PYEXPR: evaluate on the receiver's /stats as `j`
rstat() {
	local url; url=$(eval echo "\$RCV_$1")
	curl -s "$url/stats" >"$T/rstat.json"
	jget "$2" "$T/rstat.json"
}
# wait_for SECONDS CMD...: poll until CMD succeeds
wait_for() {
	local limit=$1; shift
	local i n=$((limit * 10))
	for ((i = 0; i < n; i++)); do
		"$@" && return 0
		sleep 0.1
	done
	return 1
}
month_start() { date -u -d "$(date -u +%Y-%m-01)" +%s; }

# enroll STATEDIR [llmcap agent enroll args...]: a one-time code from the server, exchanged by
# `llmcap agent enroll` for the host's own credential (kept in STATEDIR)
enroll() {
	local dir=$1; shift
	api POST /v1/admin/hosts/enroll
	[ "$CODE" = 201 ] || { echo "enroll: POST /v1/admin/hosts/enroll: $CODE $RESP" >&2; return 1; }
	LLMCAP_STATE_DIR=$dir "$LLMCAP" agent enroll --server "$SRV_URL" --code "$(jget 'j["code"]')" "$@" >/dev/null
}
# host_cred HOSTID: enrol a host by hand (HTTP); prints its credential (for curl: Bearer <it>)
host_cred() {
	api POST /v1/admin/hosts/enroll
	curl -s -X POST -H 'content-type: application/json' \
		-d '{"code":"'"$(jget 'j["code"]')"'","host_id":"'"$1"'"}' "$SRV_URL/v1/hosts/enroll" >"$T/cred.json"
	jget 'j["credential"]' "$T/cred.json"
}
