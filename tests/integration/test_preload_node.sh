#!/usr/bin/env bash
# The machine's nodesource `node` (OpenSSL linked in: the preload cannot hold its TLS) with the
# preload alone (LD_PRELOAD set by hand, no `llmcap run` supervisor): a call to a provider over TLS
# is refused at once, never a timeout or a hang. (Under `llmcap run` it is held: test_run_node.sh.)
# fetch, the `https` module and the `openai` npm SDK (installed into build/tests/npm when the npm
# registry answers; skipped with a note otherwise) each get an error within 100 ms of the call
# (timed after a warm-up call to a host that is not a provider, so the figure is the refusal, not
# node loading undici or TLS), one stderr line names why, and the provider gets 0 bytes.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/test_preload_lib.inc"
pl_node_init
pl_provider other $(pl_tls_args 1.3)          # not in the policy: the warm-up call goes there
P=https://localhost:$PORT_tls13/v1/chat/completions
O=https://localhost:$PORT_other/v1/chat/completions

cat >"$T/client.js" <<'EOF'
// client.js KIND PROVIDER_URL OTHER_URL: warm up on OTHER_URL, then one call to PROVIDER_URL;
// prints "warm STATUS" and "result error|status CODE MS"
const [kind, purl, ourl] = process.argv.slice(2);
const body = JSON.stringify({model: "gpt-4o-mini", max_tokens: 20, messages: [{role: "user", content: "hi"}]});
const hdrs = {"content-type": "application/json", authorization: "Bearer " + process.env.KEY};
function viaFetch(url) {
  return fetch(url, {method: "POST", headers: hdrs, body}).then(async r => { await r.text(); return r.status; });
}
function viaHttps(url) {
  const https = require("https");
  return new Promise((res, rej) => {
    const req = https.request(url, {method: "POST", headers: hdrs, agent: false}, r => { r.resume(); r.on("end", () => res(r.statusCode)); });
    req.on("error", rej);
    req.end(body);
  });
}
function viaOpenAI(url) {
  const OpenAI = require(process.env.OPENAI_DIR + "/node_modules/openai");
  const c = new OpenAI({apiKey: process.env.KEY, baseURL: url.replace(/\/chat\/completions$/, ""), maxRetries: 0, timeout: 20000});
  return c.chat.completions.create({model: "gpt-4o-mini", max_tokens: 20, messages: [{role: "user", content: "hi"}]}).then(() => 200);
}
const call = {fetch: viaFetch, https: viaHttps, openai: viaOpenAI}[kind];
(async () => {
  try { console.log("warm", await call(ourl)); } catch (e) { console.log("warm error", e.message); }
  let t0 = process.hrtime.bigint();    // a second, warm call: what one call costs on this machine now
  try { await call(ourl); } catch (e) {}
  console.log("warm2", Number(process.hrtime.bigint() - t0) / 1e6);
  t0 = process.hrtime.bigint();
  try {
    const s = await call(purl);
    console.log("result status", s, Number(process.hrtime.bigint() - t0) / 1e6);
  } catch (e) {
    console.log("result error", Number(process.hrtime.bigint() - t0) / 1e6, (e.cause && e.cause.code) || e.code || e.message);
  }
})();
EOF

# openai SDK: installed once per build directory (npm registry), else skipped
OPENAI_DIR=$B/tests/npm
if [ ! -d "$OPENAI_DIR/node_modules/openai" ]; then
	mkdir -p "$OPENAI_DIR"
	(cd "$T" && timeout 90 npm install --no-audit --no-fund --prefix "$OPENAI_DIR" openai@4) >"$T/npm.log" 2>&1
	rc=$?
	[ "$rc" = 0 ] || echo "# npm install openai failed (exit $rc$([ "$rc" = 124 ] && echo ': no answer within 90 s')): $(tail -1 "$T/npm.log")"
fi
kinds="fetch https"
if [ -d "$OPENAI_DIR/node_modules/openai" ]; then kinds="$kinds openai"
else echo "# the openai npm SDK could not be installed (no npm registry): its sub-case is skipped"; fi

for kind in $kinds; do
	pl_policy "node-$kind" "localhost:$PORT_tls13"
	pl_wait_closed "$LOG_tls13"; : >"$LOG_tls13"
	KEY=$PL_KEY OPENAI_DIR=$OPENAI_DIR LD_PRELOAD=$PRELOAD timeout 60 "$NODE" "$T/client.js" "$kind" "$P" "$O" \
		>"$T/node-$kind.out" 2>"$T/node-$kind.err"; rc=$?
	# "at once": under 100 ms, or (on a loaded machine) no longer than a whole warm call to the
	# other host plus 100 ms; a timeout or a hang is seconds
	w2=$(grep '^warm2' "$T/node-$kind.out" | cut -d' ' -f2)
	set -- $(grep '^result' "$T/node-$kind.out")
	if [ "$rc" = 0 ] && [ "${2:-}" = error ] &&
	   "$PY" -c "import sys; sys.exit(0 if float('$3') < max(100, float('${w2:-0}') + 100) else 1)"; then
		ok "nodesource node $kind: provider call refused at once ($3 ms, ${4:-}; a warm call elsewhere took ${w2:-?} ms)"
	else
		fail "nodesource node $kind: rc $rc, $(cat "$T/node-$kind.out" | tr '\n' ' ') $(head -c 300 "$T/node-$kind.err")"
	fi
	grep -q '^warm 200' "$T/node-$kind.out" && ok "nodesource node $kind: a host that is not a provider still works" ||
		fail "nodesource node $kind: warm-up call: $(head -1 "$T/node-$kind.out")"
	expect_eq "nodesource node $kind: one stderr line naming why" 1 "$(grep -c 'cannot hold' "$T/node-$kind.err")"
	pl_wait_closed "$LOG_tls13"
	expect_eq "nodesource node $kind: the provider got 0 bytes" 0 "$(pl_logstat "$LOG_tls13" bytes_total)"
	expect_eq "nodesource node $kind: nothing charged" 0 "$(pl_used requests)"
done
finish
