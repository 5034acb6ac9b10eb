#!/usr/bin/env bash
# Debian's own node (nodejs + libnode108: the system libssl, so the preload holds its TLS) under
# `llmcap run`, with the `https` module: the calls after the cap get the 429 and nothing else (no
# 'error' event after it: the preload finishes the TLS handshake before it answers; issue 8 item 5).
# Debian's nodejs conflicts with the machine's nodesource node, so the test unpacks the packages
# (apt-get download, dpkg -x; cached in the build directory) and runs that node from there with
# LD_LIBRARY_PATH, /usr/share/nodejs (its externalised builtins) overlaid in a private mount
# namespace (unshare -m; needs root). Over TLS 1.3 and 1.2: exact charges, the 429 through the
# module's normal path, a fully blocked process sends the provider 0 bytes.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/test_preload_lib.inc"
DN=$B/tests/debian-node
if [ ! -x "$DN/root/usr/bin/node" ]; then
	rm -rf "$DN" && mkdir -p "$DN/debs"
	v=$(apt-cache madison nodejs 2>/dev/null | awk '$0 ~ /debian/ && $3 !~ /nodesource/ {print $3; exit}')
	(cd "$DN/debs" && timeout 300 apt-get download "nodejs=$v" libnode108 node-acorn node-cjs-module-lexer node-undici \
		node-busboy node-xtend) >"$T/apt.log" 2>&1
	for f in "$DN"/debs/*.deb; do dpkg -x "$f" "$DN/root" 2>>"$T/apt.log"; done
fi
if [ ! -x "$DN/root/usr/bin/node" ] || [ "$(id -u)" != 0 ]; then
	echo "# Debian's nodejs could not be unpacked from the apt mirror, or not root: $(tail -2 "$T/apt.log" 2>/dev/null)"
	ok "skipped: no Debian node"; finish; exit 0
fi
# dnode CMD...: CMD in a mount namespace where Debian's /usr/share/nodejs exists
dnode() {
	unshare -m bash -c 'mount -t overlay overlay -o lowerdir="$0"/usr/share:/usr/share /usr/share && exec "$@"' "$DN/root" "$@"
}
NODE="env LD_LIBRARY_PATH=$DN/root/usr/lib/x86_64-linux-gnu $DN/root/usr/bin/node"
v=$(dnode $NODE -e 'console.log(process.versions.openssl)' 2>&1)
check "Debian's node runs and uses the system libssl ($v)" sh -c "ldd $DN/root/usr/lib/x86_64-linux-gnu/libnode.so.108 | grep -q libssl.so"

cat >"$T/https.js" <<'EOF'
// https.js URL KEY N: N POSTs with the https module, one after the other, one JSON line each;
// an 'error' event (even after a response) is a line with status 0
const https = require("https");
const [url, key, n] = [process.argv[2], process.argv[3], +process.argv[4]];
const body = JSON.stringify({model: "gpt-4o-mini", max_tokens: 20, messages: [{role: "user", content: "hi"}]});
function one(i) {
  if (i >= n) return;
  const t0 = Date.now();
  const req = https.request(url, {method: "POST", headers: {authorization: "Bearer " + key,
      "content-type": "application/json", "content-length": Buffer.byteLength(body)}}, (res) => {
    let b = "";
    res.on("data", (d) => b += d);
    res.on("end", () => {
      console.log(JSON.stringify({status: res.statusCode, retry_after: res.headers["retry-after"],
        x_should_retry: res.headers["x-should-retry"], ms: Date.now() - t0, body: b.slice(0, 300)}));
      setTimeout(() => one(i + 1), 100);    // after any late 'error' event of this request
    });
  });
  req.on("error", (e) => console.log(JSON.stringify({status: 0, error: e.code + " " + e.message, ms: Date.now() - t0})));
  req.end(body);
}
one(0);
EOF
pl_init
pl_provider tls13 $(pl_tls_args 1.3)
pl_provider tls12 $(pl_tls_args 1.2)
export NODE_EXTRA_CA_CERTS=$PL_CERT/ca.pem
for p in tls13 tls12; do
	port_var=PORT_$p; log_var=LOG_$p; port=${!port_var}; log=${!log_var}
	pl_policy "$p" "localhost:$port"
	dnode timeout 60 "$LLMCAP" run -- $NODE "$T/https.js" "https://localhost:$port/v1/chat/completions" "$PL_KEY" \
		$((PL_CAP + 2)) >"$T/$p.out" 2>"$T/$p.err"
	pl_expect_answers "Debian node https $p" "$T/$p.out" "$PL_CAP" 2
	pl_wait_closed "$log"
	pl_expect_charged "Debian node https $p" "$log" "$PL_CAP"
	pl_expect_no_bytes "Debian node https $p" "$log" \
		dnode timeout 60 "$LLMCAP" run -- $NODE "$T/https.js" "https://localhost:$port/v1/chat/completions" "$PL_KEY" 2
	expect_eq "Debian node https $p: no error event after a 429" 0 "$(cat "$T/$p.out" "$T/blocked.out" | grep -c '"status":0')"
done
finish
