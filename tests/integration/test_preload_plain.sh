#!/usr/bin/env bash
# Plain-HTTP provider endpoints (a local Ollama/vLLM style "127.0.0.1:PORT" in the policy) held
# at the libc socket layer: the curl CLI, Python requests/httpx/aiohttp/urllib (send/recv),
# and tests/bin/lc_plain (write/writev/read on a non-blocking socket with poll), non-streaming
# and streaming, with a gzip+chunked provider variant; h2c prior knowledge is refused.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/test_preload_lib.inc"
pl_init
pl_provider plain
pl_provider gzchunk --gzip --chunked
LC_PLAIN=$B/tests/bin/lc_plain

JSON_BODY='{"model":"gpt-4o-mini","max_tokens":20,"messages":[{"role":"user","content":"hi"}]}'
STREAM_BODY='{"model":"gpt-4o-mini","max_tokens":20,"stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"hi"}]}'

plain_c() { local port=$1 mode=$2 n=$3; LD_PRELOAD=$PRELOAD timeout 30 "$LC_PLAIN" 127.0.0.1 "$port" "$PL_KEY" "$n" $mode; }
curl_plain() { local url=$1 body=$2; shift 2; pl_curl_n "$url" -d "$body" "$@"; }

for p in plain gzchunk; do
	pl_endpoint "$p"
	extra=(); [ "$p" = gzchunk ] && extra=(--compressed)
	pl_scenario "curl http $p json" "$log" "curl-$p-j" "$host" -- curl_plain "$url" "$JSON_BODY" "${extra[@]}"
	pl_scenario "curl http $p stream" "$log" "curl-$p-s" "$host" -- curl_plain "$url" "$STREAM_BODY" "${extra[@]}"
	kinds="requests urllib httpx httpx_async aiohttp"
	[ "$p" = gzchunk ] && kinds="requests httpx_async aiohttp"    # the decoding path, not every client again
	for kind in $kinds; do
		for mode in "" --stream; do
			pl_scenario "$kind http $p ${mode:---json}" "$log" "py-$kind-$p$mode" "$host" -- \
				pl_py_n "$kind" "$url" "$mode"
		done
	done
	pl_scenario "lc_plain (write/writev/read, non-blocking) $p json" "$log" "c-$p-j" "$host" -- plain_c "$port" ""
	pl_scenario "lc_plain (write/writev/read, non-blocking) $p stream" "$log" "c-$p-s" "$host" -- plain_c "$port" --stream
done

# a provider named by host name: matched from the Host header on the first write
pl_scenario "requests http, provider listed as localhost:PORT" "$LOG_plain" "py-hosthdr" "localhost:$PORT_plain" -- \
	pl_py_n requests "http://localhost:$PORT_plain/v1/chat/completions" ""

# a body sent with sendfile(2) (Python's socket.sendfile -> sendfile64) is held with its head
pl_policy sendfile "127.0.0.1:$PORT_plain"
pl_wait_closed "$LOG_plain"; : >"$LOG_plain"
printf '%s' "$JSON_BODY" >"$T/body.json"
LD_PRELOAD=$PRELOAD "$PY" - "$PORT_plain" "$PL_KEY" "$T/body.json" >"$T/sendfile.out" 2>&1 <<'PYEOF'
import os, socket, sys
port, key, body = int(sys.argv[1]), sys.argv[2], sys.argv[3]
codes = []
for i in range(5):
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(("POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nAuthorization: Bearer %s\r\n"
               "Content-Type: application/json\r\nContent-Length: %d\r\nConnection: close\r\n\r\n"
               % (port, key, os.path.getsize(body))).encode())
    with open(body, "rb") as f:
        s.sendfile(f)
    d = b""
    while True:
        c = s.recv(65536)
        if not c:
            break
        d += c
    codes.append(d.split(b" ", 2)[1].decode() if d else "none")
    s.close()
print(" ".join(codes))
PYEOF
expect_eq "sendfile bodies: 3 allowed, then 429" "200 200 200 429 429" "$(cat "$T/sendfile.out")"
pl_wait_closed "$LOG_plain"
expect_eq "sendfile bodies: the provider got exactly the 3 allowed requests" 3 "$(pl_logstat "$LOG_plain" requests)"

# h2c: curl --http2-prior-knowledge to a plain provider is held to HTTP/1.1 (curl_easy_setopt hook)
pl_policy h2c "127.0.0.1:$PORT_plain"
v=$(LD_PRELOAD=$PRELOAD curl -sS --http2-prior-knowledge -o /dev/null -w '%{http_code} %{http_version}' \
	-H "Authorization: Bearer $PL_KEY" -d "$JSON_BODY" "http://127.0.0.1:$PORT_plain/v1/chat/completions" 2>"$T/h2c.err")
expect_eq "curl --http2-prior-knowledge to a plain provider is held to HTTP/1.1" "200 1.1" "$v"
# ... and a raw h2c preface written on the socket is refused, nothing reaches the provider
pl_wait_closed "$LOG_plain"; : >"$LOG_plain"
pl_h2_preface "$PORT_plain" >"$T/pri.out" 2>&1
grep -q '^refused' "$T/pri.out" && ok "h2c preface to a plain provider refused with an error" || fail "h2c preface: $(cat "$T/pri.out")"
pl_wait_closed "$LOG_plain"
expect_eq "provider saw no h2 preface" 0 "$(pl_logstat "$LOG_plain" h2)"
expect_eq "provider got 0 bytes from the h2c attempt" 0 "$(pl_logstat "$LOG_plain" bytes_total)"
finish
