# bench/lib.sh - what the shell benchmarks share (sourced after `set -u`, with the build directory as
# $1): B the build, LC_ROOT the tree, PY, T a temporary directory, pids (killed and T removed at exit),
# free_port (a free loopback port) and wait_port PORT.
B=$(cd "${1:-build}" && pwd)
LC_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PY=/usr/bin/python3
T=$(mktemp -d /tmp/llmcap-bench.XXXXXX)
pids=()
trap 'for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done; wait 2>/dev/null; rm -rf "$T"' EXIT
free_port() { "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }
wait_port() { for _ in $(seq 1 200); do (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0; sleep 0.05; done; return 1; }
