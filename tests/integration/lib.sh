# Shared helpers for integration tests. Source it: `. "$(dirname "$0")/lib.sh"`.
# Each test script: calls ok/fail (or check), and ends with `finish` which prints
# "# passed N failed M" (the runner sums these) and cleans up.
set -u
LC_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
B=${LLMCAP_BUILD:-$LC_ROOT/build}
B=$(cd "$B" && pwd)
LLMCAP=$B/llmcap
PRELOAD=$B/libllmcap_preload.so
CHAT=$B/examples/chat
PY=/usr/bin/python3                       # Debian's python, with python3-requests/httpx/aiohttp
PROVIDER="$LC_ROOT/tests/provider/provider.py"
T=$(mktemp -d /tmp/llmcap-test.XXXXXX)
export LLMCAP_STATE_DIR=$T/state
export LLMCAP_LOG=${LLMCAP_LOG:-error}
unset LD_PRELOAD http_proxy https_proxy HTTP_PROXY HTTPS_PROXY ALL_PROXY all_proxy
_passed=0; _failed=0; _pids=()

ok()   { _passed=$((_passed + 1)); echo "ok - $*"; }
fail() { _failed=$((_failed + 1)); echo "not ok - $*"; }
# check "description" command...   (passes when the command exits 0)
check() { local d=$1; shift; if "$@"; then ok "$d"; else fail "$d"; fi; }
# expect_eq "description" expected actual
expect_eq() { if [ "$2" = "$3" ]; then ok "$1"; else fail "$1 (expected '$2', got '$3')"; fi; }

cleanup() {
	local p
	for p in "${_pids[@]}"; do kill "$p" 2>/dev/null; done
	for p in "${_pids[@]}"; do wait "$p" 2>/dev/null; done
	declare -F _cleanup_extra >/dev/null && _cleanup_extra   # e.g. server_lib.sh's PostgreSQL
	[ -n "${KEEP_TMP:-}" ] || rm -rf "$T"
}
trap cleanup EXIT
finish() { echo "# passed $_passed failed $_failed"; cleanup; trap - EXIT; [ "$_failed" -eq 0 ]; }

# free_port: an unused loopback TCP port
free_port() { "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }

# wait_port PORT: until something listens (max 10 s)
wait_port() {
	local i
	for i in $(seq 1 200); do
		(exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0
		sleep 0.05
	done
	echo "port $1 never opened" >&2; return 1
}

# make_cert DIR: self-signed CA + server cert for localhost/127.0.0.1 -> DIR/ca.pem DIR/server.pem DIR/server.key
make_cert() { bash "$LC_ROOT/tests/provider/mkcert.sh" "$1" >/dev/null 2>&1; }

# start_provider NAME [provider.py args...]: starts the stand-in provider on a free port.
# Sets PORT_<NAME> and LOG_<NAME> (JSON lines, one per request received, see provider.py).
start_provider() {
	local name=$1; shift
	local port; port=$(free_port)
	local log=$T/provider-$name.jsonl
	"$PY" "$PROVIDER" --port "$port" --log "$log" "$@" >"$T/provider-$name.out" 2>&1 &
	_pids+=($!)
	wait_port "$port" || return 1
	printf -v "PORT_$name" '%s' "$port"
	printf -v "LOG_$name" '%s' "$log"
}

# keys and policies
setup_keys() { "$LLMCAP" keygen --out "$T/keys" >/dev/null; }
# apply_policy FILE.json: sign with $T/keys and apply into $LLMCAP_STATE_DIR
apply_policy() {
	"$LLMCAP" sign --key "$T/keys/llmcap.key" "$1" >"$1.signed" &&
	"$LLMCAP" apply --trust "$T/keys/llmcap.pub" "$1.signed"
}
fingerprint() { printf '%s' "$1" | "$LLMCAP" key fingerprint; }
iso_in_days() { date -u -d "+$1 days" +%Y-%m-%dT%H:%M:%SZ; }
