// node_client.js KIND URL KEY N [stream]: N POSTs with fetch or the `https` module (KIND), one after
// the other, one JSON line each (status, retry_after, x_should_retry, ms, body). stream: the request
// asks for SSE with usage. An 'error' event or a rejected fetch, even after a response, is a line
// with status 0 (a 429 must come with nothing else). ms: the call's time (fractional milliseconds).
const [kind, url, key, n, mode] = [process.argv[2], process.argv[3], process.argv[4], +process.argv[5], process.argv[6]];
const req = {model: "gpt-4o-mini", max_tokens: 20, messages: [{role: "user", content: "hi"}]};
if (mode === "stream") { req.stream = true; req.stream_options = {include_usage: true}; }
const body = JSON.stringify(req);
const hdrs = {authorization: "Bearer " + key, "content-type": "application/json"};
function line(o) { process.stdout.write(JSON.stringify(o) + "\n"); }
async function viaFetch(t0) {
  const r = await fetch(url, {method: "POST", headers: hdrs, body});
  const b = await r.text();
  line({status: r.status, retry_after: r.headers.get("retry-after"), x_should_retry: r.headers.get("x-should-retry"),
        ms: performance.now() - t0, body: b.slice(0, 300)});
}
function viaHttps(t0) {
  const mod = require(url.startsWith("https:") ? "https" : "http");
  return new Promise((resolve) => {
    const rq = mod.request(url, {method: "POST", headers: {...hdrs, "content-length": Buffer.byteLength(body)}}, (res) => {
      let b = "";
      res.on("data", (d) => b += d);
      res.on("end", () => {
        line({status: res.statusCode, retry_after: res.headers["retry-after"], x_should_retry: res.headers["x-should-retry"],
              ms: performance.now() - t0, body: b.slice(0, 300)});
        setTimeout(resolve, 100);    // after any late 'error' event of this request
      });
    });
    rq.on("error", (e) => { line({status: 0, error: e.code + " " + e.message, ms: performance.now() - t0}); resolve(); });
    rq.end(body);
  });
}
(async () => {
  for (let i = 0; i < n; i++) {
    const t0 = performance.now();
    try { await (kind === "fetch" ? viaFetch : viaHttps)(t0); }
    catch (e) { line({status: 0, error: String((e.cause && e.cause.code) || e.code || e.message), ms: performance.now() - t0}); }
  }
})();
