// openai_sdk.mjs BASE_URL KEY N [stream]: N chat completions through the `openai` npm SDK (from the
// npm prefix LLMCAP_NPM, installed by .ci/deps), one after the other, with the SDK's defaults
// (2 retries, its own timeout). One JSON line per call: status (200, or the APIError's status),
// error (the SDK's error class), retry_after, x_should_retry, ms, body. stream: `stream: true`
// with usage, every chunk read.
import { createRequire } from "node:module";
const { OpenAI } = createRequire(process.env.LLMCAP_NPM + "/")("openai");
const [baseURL, apiKey, n, mode] = [process.argv[2], process.argv[3], +process.argv[4], process.argv[5]];
const client = new OpenAI({ baseURL, apiKey });
const req = { model: "gpt-4o-mini", max_tokens: 20, messages: [{ role: "user", content: "hi" }] };
if (mode === "stream") { req.stream = true; req.stream_options = { include_usage: true }; }
const line = (o) => process.stdout.write(JSON.stringify(o) + "\n");
for (let i = 0; i < n; i++) {
  const t0 = performance.now();
  try {
    let body;
    if (mode === "stream") {
      let chunks = 0, usage = null;
      for await (const c of await client.chat.completions.create(req)) { chunks++; if (c.usage) usage = c.usage; }
      body = JSON.stringify({ chunks, usage });
    } else {
      body = JSON.stringify((await client.chat.completions.create(req)).usage);
    }
    line({ status: 200, ms: performance.now() - t0, body });
  } catch (e) {
    const h = e.headers;
    line({ status: e.status || 0, error: e.constructor.name, ms: performance.now() - t0,
           retry_after: h && h.get ? h.get("retry-after") : null,
           x_should_retry: h && h.get ? h.get("x-should-retry") : null,
           body: JSON.stringify(e.error || e.message).slice(0, 300) });
  }
}
