#!/usr/bin/env bash
# A libcurl multi-interface C program (tests/bin/lc_multi: 4 transfers in flight, curl_multi_poll)
# through the real preload, over TLS 1.3 and 1.2 and plain HTTP, non-streaming and streaming.
# The program asks for h2 (CURLOPT_HTTP_VERSION = 2TLS) and the provider offers it: the shim
# holds the provider handles to HTTP/1.1.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/test_preload_lib.inc"
pl_init
pl_provider tls13 $(pl_tls_args 1.3) --alpn h2,http/1.1
pl_provider tls12 $(pl_tls_args 1.2) --alpn h2,http/1.1 --gzip --chunked
pl_provider plain
LC_MULTI=$B/tests/bin/lc_multi

multi() { local url=$1; shift; local n=${!#}; set -- "${@:1:$(($# - 1))}"
	LD_PRELOAD=$PRELOAD timeout 30 "$LC_MULTI" "$url" "$PL_KEY" "$n" --cacert "$PL_CERT/ca.pem" --h2 "$@"; }

for p in tls13 tls12 plain; do
	pl_endpoint "$p"
	pl_scenario "libcurl multi $p json" "$log" "multi-$p-j" "$host" -- multi "$url"
	pl_scenario "libcurl multi $p stream" "$log" "multi-$p-s" "$host" -- multi "$url" --stream
done
expect_eq "no h2 reached the provider (TLS 1.3)" 0 "$(pl_logstat "$LOG_tls13" h2)"
expect_eq "no h2 reached the provider (TLS 1.2)" 0 "$(pl_logstat "$LOG_tls12" h2)"

# 1 KiB bodies and 12 transfers, 6 in flight, cap 3: exactly 3 allowed
pl_wait_closed "$LOG_tls13"; : >"$LOG_tls13"
pl_policy multi-wide "localhost:$PORT_tls13"
multi "https://localhost:$PORT_tls13/v1/chat/completions" --parallel 6 --pad 1024 12 >"$T/wide.out" 2>&1
pl_expect_answers "libcurl multi, 6 in flight" "$T/wide.out" 3 9
pl_expect_charged "libcurl multi, 6 in flight" "$LOG_tls13" 3
finish
