#!/usr/bin/env bash
# The curl CLI (Debian's 7.88.1: libcurl + OpenSSL, offers h2) through the real preload, over
# TLS 1.3 and 1.2 against a provider that offers h2 (--alpn h2,http/1.1), non-streaming and
# streaming, plus gzip and chunked provider variants; h2 is held to HTTP/1.1 for the provider and
# left alone for other hosts; an h2 preface to a provider is refused, never passed.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/test_preload_lib.inc"
pl_init
pl_provider tls13 $(pl_tls_args 1.3) --alpn h2,http/1.1
pl_provider tls12 $(pl_tls_args 1.2) --alpn h2,http/1.1
pl_provider gzip $(pl_tls_args 1.3) --gzip
pl_provider chunked $(pl_tls_args 1.2) --chunked
pl_provider other $(pl_tls_args 1.3) --alpn h2,http/1.1     # not in any policy

STREAM_BODY='{"model":"gpt-4o-mini","max_tokens":20,"stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"hi"}]}'
JSON_BODY='{"model":"gpt-4o-mini","max_tokens":20,"messages":[{"role":"user","content":"hi"}]}'

for p in tls13 tls12 gzip chunked; do
	pl_endpoint "$p"
	extra=(); [ "$p" = gzip ] && extra=(--compressed)
	pl_scenario "curl $p json" "$log" "curl-$p-json" "$host" -- \
		pl_curl_n "$url" -d "$JSON_BODY" "${extra[@]}"
	pl_scenario "curl $p stream" "$log" "curl-$p-stream" "$host" -- \
		pl_curl_n "$url" -d "$STREAM_BODY" "${extra[@]}"
done

# h2: the provider offered h2 to every curl above; none of them spoke it
expect_eq "curl never negotiated h2 with the provider (TLS 1.3)" 0 "$(pl_logstat "$LOG_tls13" h2)"
expect_eq "curl never negotiated h2 with the provider (TLS 1.2)" 0 "$(pl_logstat "$LOG_tls12" h2)"
grep -q '"alpn": *"http/1.1"' "$LOG_tls13" && ok "provider saw ALPN http/1.1 from curl" || fail "no ALPN http/1.1 seen"

# ... while a host that is not a provider keeps the program's ALPN (curl negotiates h2 there)
pl_policy other-h2 "localhost:$PORT_tls13"
# (the stand-in provider does not speak h2; it logs that h2 was negotiated, then closes)
LD_PRELOAD=$PRELOAD curl -sS -o /dev/null --cacert "$PL_CERT/ca.pem" "https://localhost:$PORT_other/v1/models" \
	2>"$T/other.err"
pl_wait_closed "$LOG_other"
expect_eq "non-provider host: curl's h2 offer is left alone (ALPN h2 negotiated)" 1 "$(pl_logstat "$LOG_other" h2)"

# ... and --http2 (explicit) is held to HTTP/1.1 for the provider too
v=$(LD_PRELOAD=$PRELOAD curl -sS --http2 -o /dev/null -w '%{http_version}' --cacert "$PL_CERT/ca.pem" \
	-H "Authorization: Bearer $PL_KEY" "https://localhost:$PORT_tls13/v1/models" 2>>"$T/other.err")
expect_eq "curl --http2 to a provider is held to HTTP/1.1" 1.1 "$v"

# an h2 preface written to a provider over TLS is refused by the shim (never reaches the provider)
pl_wait_closed "$LOG_tls13"; : >"$LOG_tls13"
pl_h2_preface "$PORT_tls13" "$PL_CERT/ca.pem" >"$T/pri.out" 2>&1
grep -q '^alpn http/1.1' "$T/pri.out" && ok "TLS client offering h2 gets http/1.1 from a provider" || fail "alpn: $(cat "$T/pri.out")"
grep -q '^refused' "$T/pri.out" && ok "h2 preface to a provider refused with an error" || fail "h2 preface: $(cat "$T/pri.out")"
pl_wait_closed "$LOG_tls13"
expect_eq "provider saw no h2 preface" 0 "$(pl_logstat "$LOG_tls13" h2)"
expect_eq "provider got 0 bytes from the h2 attempt" 0 "$(pl_logstat "$LOG_tls13" bytes_total)"
finish
