#!/usr/bin/env bash
# The machine's nodesource `node` (OpenSSL linked into a dynamically linked executable: the preload
# cannot hold its TLS) HELD under `llmcap run`: the supervisor sees that the process has no libssl
# or GnuTLS mapped and routes its provider connections to the loopback relay (TLS terminated with
# the llmcap CA, which node trusts through NODE_EXTRA_CA_CERTS set by `llmcap run`); the preload in
# node leaves relay connections alone. fetch and the `https`/`http` modules, over TLS and plain
# HTTP, JSON and SSE: exact charges, the 429 through the client's normal path and nothing after it,
# a fully blocked process sends the provider 0 bytes. Also held when a shell started by
# `llmcap run` starts node (children inherit the supervisor). (The preload alone, without `llmcap
# run`, refuses such calls at once: test_preload_node.sh.)
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/test_preload_lib.inc"
pl_node_init    # node trusts the stand-in directly (llmcap run adds its CA)
CLIENT=$LC_ROOT/tests/supervised/node_client.js
pl_provider plain
pl_user_trust

url() { [ "$1" = plain ] && echo "http://127.0.0.1:$PORT_plain/v1/chat/completions" ||
	echo "https://localhost:$PORT_tls13/v1/chat/completions"; }

# node_cmd N: the client's command line making N calls ($kind, $p and $mode of the loop below)
node_cmd() { echo "$NODE $CLIENT $kind $(url "$p") $PL_KEY $1 ${mode#json}"; }

for kind in fetch https; do
	for p in tls plain; do
		for mode in json stream; do
			d="nodesource node $kind $p $mode"
			pl_held_case "$d" "$kind-$p-$mode" "$p" node_cmd
			expect_eq "$d: the program exits 0 (no hang, no uncaught error)" 0 "$PL_HELD_RC"
			expect_eq "$d: no error after a 429, nothing on stderr" "0 " \
				"$(cat "$T/a.out" "$T/blocked.out" | grep -c '"status":0') $(cat "$T/a.err" "$T/blocked.err")"
		done
	done
done

# SSE streams through unbuffered: the body carries every event and the usage chunk (charged above);
# a node started by a shell that `llmcap run` started is held too (the supervisor's filter is inherited)
pl_policy shell "localhost:$PORT_tls13" "127.0.0.1:$PORT_plain"
: >"$LOG_tls13"
timeout 60 "$LLMCAP" run -- bash -c '"$@"; true' _ "$NODE" "$CLIENT" fetch "$(url tls)" "$PL_KEY" $((PL_CAP + 1)) \
	>"$T/sh.out" 2>"$T/sh.err"
pl_expect_answers "nodesource node started by a shell under llmcap run" "$T/sh.out" "$PL_CAP" 1
pl_wait_closed "$LOG_tls13"
pl_expect_charged "nodesource node started by a shell under llmcap run" "$LOG_tls13" "$PL_CAP"

# the relay, not the preload, decided: one decision per request (the charges above are exact), and
# the program's view of the trust variables names llmcap's bundle for NODE_EXTRA_CA_CERTS
v=$("$LLMCAP" run -- "$NODE" -e 'const f=require("fs").readFileSync(process.env.NODE_EXTRA_CA_CERTS,"utf8"); console.log((f.match(/BEGIN CERTIFICATE/g)||[]).length)')
expect_eq "NODE_EXTRA_CA_CERTS under llmcap run: the user's CA + the llmcap CA" 2 "$v"
finish
