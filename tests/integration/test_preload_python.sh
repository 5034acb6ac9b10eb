#!/usr/bin/env bash
# Python clients through the real preload (Debian's /usr/bin/python3): requests, urllib, httpx
# (sync and async) and aiohttp, over TLS 1.3 and TLS 1.2, non-streaming and streaming (SSE with
# include_usage). See test_preload_lib.inc for what each scenario checks.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/test_preload_lib.inc"
pl_init
pl_provider tls13 $(pl_tls_args 1.3)
pl_provider tls12 $(pl_tls_args 1.2) --gzip --chunked

for v in 13 12; do
	pl_endpoint "tls$v"
	for kind in requests urllib httpx httpx_async aiohttp; do
		for mode in "" --stream; do
			pl_scenario "$kind TLS1.${v#1} ${mode:---json}" "$log" "py-$kind-$v${mode}" "$host" -- \
				pl_py_n "$kind" "$url" "$mode"
		done
	done
done
finish
