// node_edge.js MODE URL KEY: one call that exercises an edge of the relay; prints one JSON line
// {status, error, ms}.
//   h2only: http2.connect (ALPN offers h2 only) and a POST on it
//   pinned: the `https` module with `ca` = the file in PINNED_CA only (it ignores NODE_EXTRA_CA_CERTS)
//   fetch:  a plain fetch (a provider that stalls: the relay's 504)
const [mode, url, key] = process.argv.slice(2);
const body = JSON.stringify({model: "gpt-4o-mini", max_tokens: 20, messages: [{role: "user", content: "hi"}]});
const hdrs = {authorization: "Bearer " + key, "content-type": "application/json"};
const t0 = Date.now();
function line(o) { o.ms = Date.now() - t0; process.stdout.write(JSON.stringify(o) + "\n"); }
function err(e) { line({status: 0, error: String((e.cause && e.cause.code) || e.code || e.message)}); }
if (mode === "h2only") {
  const http2 = require("http2");
  const c = http2.connect(new URL(url).origin);
  c.on("error", (e) => { err(e); c.destroy(); });
  const rq = c.request({":method": "POST", ":path": new URL(url).pathname, ...hdrs});
  rq.on("response", (h) => { line({status: h[":status"]}); c.close(); });
  rq.on("error", () => {});
  rq.end(body);
} else if (mode === "pinned") {
  const rq = require("https").request(url, {method: "POST", headers: hdrs,
      ca: require("fs").readFileSync(process.env.PINNED_CA)}, (res) => { res.resume(); res.on("end", () => line({status: res.statusCode})); });
  rq.on("error", err);
  rq.end(body);
} else {
  fetch(url, {method: "POST", headers: hdrs, body}).then(async (r) => { const b = await r.text(); line({status: r.status, body: b.slice(0, 300)}); }, err);
}
