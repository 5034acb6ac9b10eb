#!/usr/bin/env bash
# GnuTLS programs through the real preload (the OpenSSL-free TLS layer, preload/hook_gnutls.c):
# Debian's wget (GnuTLS), the libcurl multi client built on Debian's libcurl-gnutls
# (tests/bin/lc_multi_gnutls: asks for h2, the provider offers it), and pycurl (libcurl-gnutls)
# in a Python process that imported ssl first (so OpenSSL's libssl is loaded too). Over TLS 1.3
# and 1.2, JSON and SSE: exact charges, the 429 through the client's normal path, 0 bytes of a
# blocked request at the provider.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/test_preload_lib.inc"
pl_init
pl_provider tls13 $(pl_tls_args 1.3) --alpn h2,http/1.1
pl_provider tls12 $(pl_tls_args 1.2) --alpn h2,http/1.1 --gzip --chunked
LC_MULTI=$B/tests/bin/lc_multi_gnutls

JSON_BODY='{"model":"gpt-4o-mini","max_tokens":20,"messages":[{"role":"user","content":"hi"}]}'
STREAM_BODY='{"model":"gpt-4o-mini","max_tokens":20,"stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"hi"}]}'

# wget_n URL BODY N: N wget processes (wget makes one POST per run), one JSON line each; ms is the
# whole run (exec, TLS handshake included)
wget_n() {
	local url=$1 body=$2 n=$3 i t0 t1
	for i in $(seq 1 "$n"); do
		t0=$(date +%s%N)
		LD_PRELOAD=$PRELOAD timeout 30 wget -q -S --content-on-error -O "$T/wget-body" \
			--ca-certificate="$PL_CERT/ca.pem" --header "Authorization: Bearer $PL_KEY" \
			--header 'Content-Type: application/json' --post-data "$body" "$url" 2>"$T/wget-hdr"
		t1=$(date +%s%N)
		"$PY" - "$T/wget-hdr" "$T/wget-body" $(((t1 - t0) / 1000000)) <<'EOF'
import json, re, sys
st, h = 0, {}
for line in open(sys.argv[1], errors="replace"):
    line = line.strip()
    m = re.match(r"HTTP/1\.[01] (\d+)", line)
    if m:
        st, h = int(m.group(1)), {}
    elif ":" in line:
        k, v = line.split(":", 1); h[k.strip().lower()] = v.strip()
body = open(sys.argv[2], errors="replace").read()
print(json.dumps({"status": st, "retry_after": h.get("retry-after"), "x_should_retry": h.get("x-should-retry"),
                  "ms": int(sys.argv[3]), "body": body[:300]}))
EOF
	done
}

# pycurl N [--stream]: one Curl handle (keep-alive), after `import ssl`
PYCURL=$T/pycurl_client.py
cat >"$PYCURL" <<'EOF'
import ssl, json, sys, time, io    # ssl first: OpenSSL's libssl is in the process too
import pycurl
url, key, ca, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
stream = "--stream" in sys.argv
body = {"model": "gpt-4o-mini", "max_tokens": 20, "messages": [{"role": "user", "content": "hi"}]}
if stream:
    body["stream"] = True; body["stream_options"] = {"include_usage": True}
c = pycurl.Curl()
assert "GnuTLS" in pycurl.version, pycurl.version
for i in range(n):
    buf, hdrs = io.BytesIO(), {}
    def hf(line):
        line = line.decode("latin-1").strip()
        if line.startswith("HTTP/"):
            hdrs.clear()
        elif ":" in line:
            k, v = line.split(":", 1); hdrs[k.strip().lower()] = v.strip()
    c.setopt(pycurl.URL, url); c.setopt(pycurl.POSTFIELDS, json.dumps(body))
    c.setopt(pycurl.HTTPHEADER, ["Authorization: Bearer " + key, "Content-Type: application/json"])
    c.setopt(pycurl.CAINFO, ca); c.setopt(pycurl.WRITEDATA, buf); c.setopt(pycurl.HEADERFUNCTION, hf)
    c.setopt(pycurl.TIMEOUT, 10)
    t0 = time.monotonic()
    c.perform()
    print(json.dumps({"status": c.getinfo(pycurl.RESPONSE_CODE), "retry_after": hdrs.get("retry-after"),
                      "x_should_retry": hdrs.get("x-should-retry"), "ms": round((time.monotonic() - t0) * 1000, 2),
                      "body": buf.getvalue().decode(errors="replace")[:300]}), flush=True)
EOF
pycurl_n() { local url=$1; shift; local n=${!#}; set -- "${@:1:$(($# - 1))}"
	LD_PRELOAD=$PRELOAD timeout 30 "$PY" "$PYCURL" "$url" "$PL_KEY" "$PL_CERT/ca.pem" "$n" "$@"; }
multi() { local url=$1; shift; local n=${!#}; set -- "${@:1:$(($# - 1))}"
	LD_PRELOAD=$PRELOAD timeout 30 "$LC_MULTI" "$url" "$PL_KEY" "$n" --cacert "$PL_CERT/ca.pem" --h2 "$@"; }


for p in tls13 tls12; do
	pl_endpoint "$p"
	pl_scenario "libcurl-gnutls multi $p json" "$log" "gm-$p-j" "$host" -- multi "$url"
	pl_scenario "libcurl-gnutls multi $p stream" "$log" "gm-$p-s" "$host" -- multi "$url" --stream
	pl_scenario "pycurl (GnuTLS, ssl imported) $p json" "$log" "pc-$p-j" "$host" -- pycurl_n "$url"
	pl_scenario "pycurl (GnuTLS, ssl imported) $p stream" "$log" "pc-$p-s" "$host" -- pycurl_n "$url" --stream
	pl_scenario "wget $p json" "$log" "wg-$p-j" "$host" -- wget_n "$url" "$JSON_BODY"
	pl_scenario "wget $p stream" "$log" "wg-$p-s" "$host" -- wget_n "$url" "$STREAM_BODY"
done
expect_eq "no h2 reached the provider from GnuTLS clients (TLS 1.3)" 0 "$(pl_logstat "$LOG_tls13" h2)"
expect_eq "no h2 reached the provider from GnuTLS clients (TLS 1.2)" 0 "$(pl_logstat "$LOG_tls12" h2)"
finish
