/* llmcap dashboard: vanilla JS over the server's own admin API. The session is an HttpOnly,
 * SameSite=Strict cookie; every change carries the session's CSRF token in X-LLMCAP-CSRF. */
"use strict";
(function () {
  let csrf = null;
  const $ = (s, el) => (el || document).querySelector(s);
  const $$ = (s, el) => Array.from((el || document).querySelectorAll(s));
  const esc = (v) => String(v === undefined || v === null ? "" : v).replace(/[&<>"']/g,
    (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
  const METRICS = ["cost", "requests", "tokens"];
  const WINDOWS = ["minute", "hour", "daily", "weekly", "monthly", "lifetime"];
  const COLORS = ["#2454d6", "#1f9d55", "#d08a00", "#8e44ad", "#d0342c", "#16a2b8", "#6b7585", "#e67e22"];

  function money(v) {
    const n = Number(v || 0);
    return "$" + n.toLocaleString("en-US", { minimumFractionDigits: 2, maximumFractionDigits: n !== 0 && Math.abs(n) < 0.01 ? 6 : 2 });
  }
  function amount(v, metric) { return metric === "cost" ? money(v) : Number(v || 0).toLocaleString("en-US"); }
  function when(t) {
    if (!t) return "never";
    const d = new Date(t);
    return isNaN(d) ? esc(t) : d.toLocaleString("en-GB", { timeZone: "UTC", day: "2-digit", month: "short", hour: "2-digit", minute: "2-digit" }) + " UTC";
  }
  function ago(sec) {
    if (sec < 0 || !isFinite(sec)) return "-";
    if (sec < 90) return Math.round(sec) + " s";
    if (sec < 5400) return Math.round(sec / 60) + " min";
    if (sec < 172800) return Math.round(sec / 3600) + " h";
    return Math.round(sec / 86400) + " d";
  }
  function toast(msg, bad) {
    const t = $("#toast");
    t.textContent = msg;
    t.className = "toast" + (bad ? " bad" : "");
    t.hidden = false;
    clearTimeout(toast.timer);
    toast.timer = setTimeout(() => { t.hidden = true; }, bad ? 6000 : 2500);
  }

  async function api(method, path, body) {
    const h = {};
    if (body !== undefined) h["Content-Type"] = "application/json";
    if (method !== "GET" && csrf) h["X-LLMCAP-CSRF"] = csrf;
    const r = await fetch(path, { method, headers: h, credentials: "same-origin",
      body: body === undefined ? undefined : JSON.stringify(body) });
    let j = null;
    try { j = await r.json(); } catch (e) { j = null; }
    if (r.status === 401 && path !== "/ui/session") { showSignin(); throw new Error("signed out"); }
    if (!r.ok) throw new Error((j && j.error && j.error.message) || ("HTTP " + r.status));
    return j;
  }

  /* ---- sign in / out ---- */
  function showSignin() {
    csrf = null;
    $("#app").hidden = true;
    $("#signin").hidden = false;
    $("#token").focus();
  }
  async function start() {
    try {
      const s = await api("GET", "/ui/session");
      csrf = s.csrf;
      $("#signin").hidden = true;
      $("#app").hidden = false;
      route();
    } catch (e) { showSignin(); }
  }
  $("#signin-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    $("#signin-error").textContent = "";
    try {
      const s = await api("POST", "/ui/session", { token: $("#token").value });
      csrf = s.csrf;
      $("#token").value = "";
      $("#signin").hidden = true;
      $("#app").hidden = false;
      if (!location.hash) location.hash = "#limits";
      route();
    } catch (e) { $("#signin-error").textContent = e.message; }
  });
  $("#signout").addEventListener("click", async () => {
    try { await api("DELETE", "/ui/session"); } catch (e) { /* signed out anyway */ }
    showSignin();
  });

  /* ---- pages ---- */
  const pages = { limits, spend, keys, teams, customers, invites, hosts };
  let refreshTimer = null;
  async function route() {
    const page = (location.hash || "#limits").slice(1).split("/")[0];
    const fn = pages[page] || limits;
    $$("#nav a").forEach((a) => a.classList.toggle("active", a.dataset.page === (pages[page] ? page : "limits")));
    clearInterval(refreshTimer);
    /* each page renders into a #main of its own: a page still waiting for the server when the next
     * one is chosen finishes into its detached element, never over the page shown now */
    const main = $("#main").cloneNode(false);
    $("#main").replaceWith(main);
    try { await fn(main); } catch (e) { if (e.message !== "signed out") main.innerHTML = `<div class="card error">${esc(e.message)}</div>`; }
  }
  window.addEventListener("hashchange", route);

  function level(l) {
    if (l.enabled === false) return "off";
    const used = Number(l.used) + Number(l.reserved || 0);
    if (l.threshold > 0 && used >= l.threshold) return "reached";
    if (l.alert_at !== undefined && used >= l.alert_at) return "alert";
    if (l.threshold > 0 && used >= 0.8 * l.threshold) return "alert";
    return "ok";
  }
  const PERIOD = { minute: "minute", hour: "hour", daily: "day", weekly: "week", monthly: "month", lifetime: "lifetime" };
  const LEVEL_TEXT = { ok: "OK", alert: "Alert", reached: "Reached", off: "Off" };
  function bar(l) {
    const t = Number(l.threshold) || 0, u = Number(l.used) || 0, r = Number(l.reserved) || 0;
    const pu = t > 0 ? Math.min(100, (100 * u) / t) : 0, pr = t > 0 ? Math.min(100 - pu, (100 * r) / t) : 0;
    /* a mark at each alert level */
    const marks = t > 0 ? [].concat(l.alert_levels || (l.alert_at !== undefined ? l.alert_at : [])).map((a) => Math.min(100, (100 * a) / t)) : [];
    return `<div class="bar ${level(l)}" role="progressbar" aria-valuenow="${pu.toFixed(1)}" aria-valuemin="0" aria-valuemax="100"
      data-limit="${esc(l.scope + ":" + l.id + ":" + l.metric + ":" + l.window)}" data-used="${u}" title="${pu.toFixed(1)}% used">
      <i class="used" style="width:${pu}%"></i><i class="res" style="left:${pu}%;width:${pr}%"></i>${marks.map((a) => `<b style="left:${a}%"></b>`).join("")}</div>`;
  }

  async function limits(main) {
    const scope = new URLSearchParams(location.hash.split("?")[1] || "").get("scope") || "";
    const draw = async () => {
      const u = await api("GET", "/v1/usage");
      $("#policy-version").textContent = "policy v" + u.policy.version;
      const ls = u.limits.filter((l) => !scope || l.scope === scope);
      const reached = u.limits.filter((l) => level(l) === "reached").length;
      const alerting = u.limits.filter((l) => level(l) === "alert").length;
      const org = u.org || {};
      main.innerHTML = `
        <div class="head"><div><h1>Limits</h1><div class="muted">Usage against every limit, this window. Updated ${when(new Date().toISOString())}.</div></div>
          <div><label for="scope">Scope</label><select id="scope">
            ${["", "key", "team", "org", "customer"].map((s) => `<option value="${s}" ${s === scope ? "selected" : ""}>${s ? s[0].toUpperCase() + s.slice(1) + "s" : "All scopes"}</option>`).join("")}
          </select></div></div>
        <div class="kpis">
          <div class="card kpi"><div class="l">Org spend this ${esc(PERIOD[org.period] || "period")}</div><div class="v">${money(org.used_usd)}</div>
            <div class="muted">${org.spend_cap_usd === null || org.spend_cap_usd === undefined ? "no cap" : "of " + money(org.spend_cap_usd) + " cap"}</div></div>
          <div class="card kpi"><div class="l">Limits</div><div class="v">${u.limits.length}</div><div class="muted">${u.limits.filter((l) => l.enabled !== false).length} on</div></div>
          <div class="card kpi"><div class="l">Alerting</div><div class="v" style="color:var(--warn)">${alerting}</div><div class="muted">past the alert level</div></div>
          <div class="card kpi"><div class="l">Reached</div><div class="v" style="color:var(--bad)">${reached}</div><div class="muted">refusing (block) or warning</div></div>
        </div>
        <div class="card tbl"><table id="limits-table"><thead><tr><th>Limit</th><th>Usage</th><th class="num">Used</th><th class="num">Limit</th>
          <th class="num hide-sm">Reserved</th><th class="hide-sm">Window</th><th class="hide-sm">Resets</th><th>Level</th></tr></thead><tbody>
          ${ls.map((l) => `<tr data-limit="${esc(l.scope + ":" + l.id + ":" + l.metric + ":" + l.window)}">
            <td><div class="scope">${esc(l.scope)} · ${esc(l.metric)}${l.action === "warn" ? " · warn" : ""}</div><strong>${esc(l.id)}</strong></td>
            <td>${bar(l)}</td><td class="num">${amount(l.used, l.metric)}</td><td class="num">${amount(l.threshold, l.metric)}${l.alert_at !== undefined ? `<div class="muted">alert ${[].concat(l.alert_levels || l.alert_at).map((a) => amount(a, l.metric)).join(" / ")}</div>` : ""}</td>
            <td class="num hide-sm">${amount(l.reserved, l.metric)}</td><td class="hide-sm">${esc(l.window)}</td><td class="hide-sm">${when(l.resets_at)}</td>
            <td><span class="pill ${level(l)}">${LEVEL_TEXT[level(l)]}</span></td></tr>`).join("") ||
            `<tr><td colspan="8" class="empty">No limits${scope ? " for this scope" : ""} yet. Add one on the Keys or Teams page.</td></tr>`}
        </tbody></table></div>`;
      $("#scope").addEventListener("change", (e) => { location.hash = "#limits" + (e.target.value ? "?scope=" + e.target.value : ""); });
    };
    await draw();
    refreshTimer = setInterval(() => draw().catch(() => {}), 5000);
  }

  /* spend: GET /v1/usage?by=G&window=W (the ledger); a series when the server gives buckets */
  async function spend(main) {
    const q = new URLSearchParams(location.hash.split("?")[1] || "");
    const by = q.get("by") || "key", win = q.get("window") || "daily";
    let rows = [], series = null, err = null;
    try {
      const u = await api("GET", `/v1/usage?by=${encodeURIComponent(by)}&window=${encodeURIComponent(win)}`);
      rows = u.rows || [];
      series = u.series || null;
    } catch (e) { err = e.message; }
    if (!rows.length && !series && !err) {
      /* a server without the ledger: the cost limits of the chosen scope */
      const u = await api("GET", "/v1/usage");
      rows = u.limits.filter((l) => l.metric === "cost" && l.scope === by).map((l) => ({ id: l.id, cost: l.used, requests: null }));
    }
    rows.sort((a, b) => (b.cost || 0) - (a.cost || 0));
    const total = rows.reduce((s, r) => s + Number(r.cost || 0), 0);
    main.innerHTML = `
      <div class="head"><div><h1>Spend</h1><div class="muted">Spend ${win === "hour" ? "this hour" : win === "daily" ? "today" : "this " + esc(win.replace("ly", ""))}, split by ${esc(by)}.</div></div>
        <div class="row"><div><label for="by">Split by</label><select id="by">${["key", "team", "model", "customer", "provider"].map((b) => `<option ${b === by ? "selected" : ""}>${b}</option>`).join("")}</select></div>
        <div><label for="win">Per</label><select id="win">${[["hour", "Hour"], ["daily", "Day"], ["weekly", "Week"], ["monthly", "Month"]].map(([w, t]) => `<option value="${w}" ${w === win ? "selected" : ""}>${t}</option>`).join("")}</select></div></div></div>
      <div class="kpis"><div class="card kpi"><div class="l">Total</div><div class="v">${money(total)}</div></div>
        <div class="card kpi"><div class="l">Largest</div><div class="v">${rows[0] ? esc(rows[0].id) : "-"}</div><div class="muted">${rows[0] ? money(rows[0].cost) : ""}</div></div></div>
      <div class="card chart"><h2>Spend by ${esc(by)}</h2><div id="chart"></div>${err ? `<p class="error">${esc(err)}</p>` : ""}</div>
      <div class="card tbl"><table><thead><tr><th>${esc(by)}</th><th class="num">Requests</th><th class="num hide-sm">Input tokens</th><th class="num hide-sm">Output tokens</th><th class="num">Spend</th><th class="num">Share</th></tr></thead><tbody>
        ${rows.map((r) => `<tr><td>${esc(r.id)}</td><td class="num">${r.requests === null || r.requests === undefined ? "-" : Number(r.requests).toLocaleString()}</td>
          <td class="num hide-sm">${r.input_tokens === undefined ? "-" : Number(r.input_tokens).toLocaleString()}</td><td class="num hide-sm">${r.output_tokens === undefined ? "-" : Number(r.output_tokens).toLocaleString()}</td>
          <td class="num">${money(r.cost)}</td><td class="num">${total > 0 ? ((100 * r.cost) / total).toFixed(1) + "%" : "-"}</td></tr>`).join("") || `<tr><td colspan="6" class="empty">No spend yet in this window.</td></tr>`}
      </tbody></table></div>`;
    $("#chart").innerHTML = series ? seriesChart(series) : barChart(rows);
    const go = () => { location.hash = `#spend?by=${$("#by").value}&window=${$("#win").value}`; };
    $("#by").addEventListener("change", go);
    $("#win").addEventListener("change", go);
  }
  /* horizontal bars, one per group: inline SVG */
  function barChart(rows) {
    if (!rows.length) return `<div class="empty">Nothing to chart yet.</div>`;
    const top = rows.slice(0, 10), max = Math.max(...top.map((r) => Number(r.cost || 0)), 1e-9);
    const H = 30, W = 800, L = 160;
    return `<svg viewBox="0 0 ${W} ${top.length * H + 10}" role="img" aria-label="spend per group">${top.map((r, i) => {
      const w = ((W - L - 90) * Number(r.cost || 0)) / max;
      return `<text x="${L - 8}" y="${i * H + 20}" text-anchor="end" font-size="13" fill="#1c2430">${esc(String(r.id).slice(0, 22))}</text>
        <rect x="${L}" y="${i * H + 6}" width="${Math.max(w, 1)}" height="18" rx="3" fill="${COLORS[i % COLORS.length]}"></rect>
        <text x="${L + w + 6}" y="${i * H + 20}" font-size="12" fill="#6b7585">${money(r.cost)}</text>`;
    }).join("")}</svg>`;
  }
  /* stacked columns over time: series = [{"start", "rows": [{"id", "cost"}]}] */
  function seriesChart(series) {
    const ids = [...new Set(series.flatMap((b) => (b.rows || []).map((r) => r.id)))].slice(0, 8);
    const tot = series.map((b) => (b.rows || []).reduce((s, r) => s + Number(r.cost || 0), 0));
    const max = Math.max(...tot, 1e-9), W = 800, H = 240, n = series.length, bw = (W - 60) / Math.max(n, 1);
    let svg = `<svg viewBox="0 0 ${W} ${H + 30}" role="img" aria-label="spend over time">`;
    series.forEach((b, i) => {
      let y = H;
      ids.forEach((id, k) => {
        const r = (b.rows || []).find((x) => x.id === id);
        const h = r ? ((H - 10) * Number(r.cost || 0)) / max : 0;
        y -= h;
        if (h > 0) svg += `<rect x="${50 + i * bw + 2}" y="${y}" width="${Math.max(bw - 4, 1)}" height="${h}" fill="${COLORS[k % COLORS.length]}"><title>${esc(id)}: ${money(r.cost)}</title></rect>`;
      });
      if (n <= 31 || i % Math.ceil(n / 12) === 0) svg += `<text x="${50 + i * bw + bw / 2}" y="${H + 16}" font-size="11" text-anchor="middle" fill="#6b7585">${esc(String(b.start || "").slice(5, 13).replace("T", " "))}</text>`;
    });
    svg += `<text x="4" y="14" font-size="11" fill="#6b7585">${money(max)}</text></svg>`;
    return svg + `<div class="legend">${ids.map((id, k) => `<span><i style="background:${COLORS[k % COLORS.length]}"></i>${esc(id)}</span>`).join("")}</div>`;
  }

  /* alert levels as typed, "40" or "50%, 80%, 95%" (amounts or percentages of the threshold), and back */
  function parseLevels(text) {
    const levels = String(text).split(",").map((x) => x.trim()).filter((x) => x !== "").map((x) => (x.endsWith("%") ? x : Number(x)));
    return levels.length === 0 ? undefined : levels.length === 1 ? levels[0] : levels;
  }
  function levelsText(v) { return v === undefined || v === null ? "" : [].concat(v).join(", "); }

  /* ---- limits editor (keys, teams, invites) ---- */
  function limitRow(l) {
    l = l || { metric: "cost", window: "daily", threshold: "" };
    return `<div class="lim"><select class="l-metric" aria-label="metric">${METRICS.map((m) => `<option ${m === l.metric ? "selected" : ""}>${m}</option>`).join("")}</select>
      <select class="l-window" aria-label="window">${WINDOWS.map((w) => `<option ${w === l.window ? "selected" : ""}>${w}</option>`).join("")}</select>
      <input class="l-threshold" type="number" min="0" step="any" placeholder="threshold" aria-label="threshold" value="${esc(l.threshold)}">
      <input class="l-alert" type="text" placeholder="alert at: 40 or 50%, 80%, 95%" aria-label="alert levels" value="${esc(levelsText(l.alert_at))}">
      <button type="button" class="l-del" aria-label="remove limit">✕</button><input type="hidden" class="l-keep" value="${esc(JSON.stringify({ action: l.action, enabled: l.enabled, alert_projected: l.alert_projected }))}"></div>`;
  }
  function limitsEditor(ls) {
    return `<div class="limits-edit"><div class="lims">${(ls || []).map(limitRow).join("")}</div><button type="button" class="l-add">+ Add a limit</button></div>`;
  }
  function wireEditor(root) {
    root.addEventListener("click", (e) => {
      if (e.target.classList.contains("l-add")) $(".lims", root).insertAdjacentHTML("beforeend", limitRow());
      if (e.target.classList.contains("l-del")) e.target.closest(".lim").remove();
    });
  }
  function readLimits(root) {
    return $$(".lim", root).map((row) => {
      const l = { metric: $(".l-metric", row).value, window: $(".l-window", row).value, threshold: Number($(".l-threshold", row).value) };
      const levels = parseLevels($(".l-alert", row).value);
      if (levels !== undefined) l.alert_at = levels;
      /* what the editor does not show stays as it was */
      const keep = $(".l-keep", row) ? JSON.parse($(".l-keep", row).value) : {};
      for (const k of ["action", "enabled", "alert_projected"]) if (keep[k] !== undefined) l[k] = keep[k];
      return l;
    }).filter((l) => !isNaN(l.threshold));
  }
  function limitText(l) {
    return `${esc(l.metric)} / ${esc(l.window)}: ${amount(l.threshold, l.metric)}${l.alert_at !== undefined && l.alert_at !== null ? `, alert ${[].concat(l.alert_at).map((a) => (typeof a === "string" ? esc(a) : amount(a, l.metric))).join(" / ")}` : ""}${l.alert_projected ? ", projected" : ""}${l.action === "warn" ? ", warn" : ""}`;
  }
  async function sha256hex(s) {
    if (!(window.crypto && crypto.subtle)) throw new Error("this browser cannot hash here: paste the key's fingerprint (llmcap key fingerprint)");
    const d = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(s));
    return Array.from(new Uint8Array(d)).map((b) => b.toString(16).padStart(2, "0")).join("");
  }

  async function keys(main) {
    const [k, t] = await Promise.all([api("GET", "/v1/admin/keys"), api("GET", "/v1/admin/teams")]);
    const teamOpts = (sel) => `<option value="">(no team)</option>` + Object.keys(t.teams).map((id) => `<option ${id === sel ? "selected" : ""}>${esc(id)}</option>`).join("");
    main.innerHTML = `
      <div class="head"><div><h1>API keys</h1><div class="muted">Keys are known by the SHA-256 of the raw key; the raw key never leaves this page.</div></div></div>
      <form id="key-new" class="card"><h2>New key</h2>
        <div class="row"><div><label for="k-id">Name</label><input id="k-id" required pattern="[A-Za-z0-9._@:-]+" placeholder="ci"></div>
        <div><label for="k-secret">API key or its SHA-256 fingerprint</label><input id="k-secret" required autocomplete="off" placeholder="sk-… or 64 hex digits"></div>
        <div><label for="k-team">Team</label><select id="k-team">${teamOpts("")}</select></div></div>
        <label>Limits</label>${limitsEditor([{ metric: "cost", window: "daily", threshold: "" }])}
        <div style="margin-top:14px"><button class="primary" type="submit">Create key</button></div></form>
      <div class="card tbl"><table id="keys-table"><thead><tr><th>Key</th><th>Team</th><th>Limits (on/off)</th><th class="hide-sm">Expires</th><th></th></tr></thead><tbody>
      ${Object.entries(k.keys).map(([id, key]) => `<tr data-key="${esc(id)}"><td><strong>${esc(id)}</strong>${key.revoked ? ` <span class="pill reached">revoked</span>` : ""}<div class="muted hide-sm"><code>${esc((key.sha256 || "").slice(0, 12))}…</code></div></td>
        <td>${esc(key.team || "-")}</td>
        <td>${(key.limits || []).map((l, i) => `<div class="row" style="align-items:center;gap:8px;margin:3px 0"><label class="switch" title="turn this limit on or off"><input type="checkbox" class="toggle" data-i="${i}" ${l.enabled === false ? "" : "checked"} ${key.revoked ? "disabled" : ""}><span></span></label> ${limitText(l)}</div>`).join("") || `<span class="muted">no limits</span>`}</td>
        <td class="hide-sm">${key.expires_at ? when(key.expires_at) : "never"}</td>
        <td class="num">${key.revoked ? "" : `<button class="edit">Edit limits</button> <button class="danger revoke">Revoke</button>`}</td></tr>`).join("") || `<tr><td colspan="5" class="empty">No keys yet.</td></tr>`}
      </tbody></table></div>`;
    wireEditor($("#key-new"));
    $("#key-new").addEventListener("submit", async (e) => {
      e.preventDefault();
      try {
        const secret = $("#k-secret").value.trim();
        const sha = /^[0-9a-f]{64}$/.test(secret) ? secret : await sha256hex(secret);
        const body = { id: $("#k-id").value.trim(), sha256: sha, limits: readLimits($("#key-new")) };
        if ($("#k-team").value) body.team = $("#k-team").value;
        await api("POST", "/v1/admin/keys", body);
        toast(`Key ${body.id} created`);
        keys(main);
      } catch (err) { toast(err.message, true); }
    });
    $("#keys-table").addEventListener("change", async (e) => {
      if (!e.target.classList.contains("toggle")) return;
      const id = e.target.closest("tr").dataset.key, i = e.target.dataset.i;
      try {
        await api("PATCH", `/v1/admin/keys/${encodeURIComponent(id)}`, { limits: { [i]: { enabled: e.target.checked } } });
        toast(`Limit ${Number(i) + 1} of ${id} turned ${e.target.checked ? "on" : "off"}`);
      } catch (err) { e.target.checked = !e.target.checked; toast(err.message, true); }
    });
    $("#keys-table").addEventListener("click", async (e) => {
      const tr = e.target.closest("tr"); if (!tr) return;
      const id = tr.dataset.key;
      if (e.target.classList.contains("revoke")) {
        if (!confirm(`Revoke key ${id}? Hosts refuse it from their next policy.`)) return;
        try { await api("DELETE", `/v1/admin/keys/${encodeURIComponent(id)}`); toast(`Key ${id} revoked`); keys(main); } catch (err) { toast(err.message, true); }
      }
      if (e.target.classList.contains("edit")) editLimits(`/v1/admin/keys/${encodeURIComponent(id)}`, "PATCH", k.keys[id].limits, `key ${id}`, () => keys(main), tr);
    });
  }
  function editLimits(path, method, ls, what, done, tr) {
    const old = $(".edit-row"); if (old) old.remove();
    tr.insertAdjacentHTML("afterend", `<tr class="edit-row"><td colspan="5"><form class="edit-form">${limitsEditor(ls)}
      <div style="margin-top:10px"><button class="primary" type="submit">Save limits</button> <button type="button" class="cancel">Cancel</button></div></form></td></tr>`);
    const f = $(".edit-row form");
    wireEditor(f);
    $(".cancel", f).addEventListener("click", () => $(".edit-row").remove());
    f.addEventListener("submit", async (e) => {
      e.preventDefault();
      try { await api(method, path, { limits: readLimits(f) }); toast(`Limits of ${what} saved`); done(); } catch (err) { toast(err.message, true); }
    });
  }

  async function teams(main) {
    const t = await api("GET", "/v1/admin/teams");
    main.innerHTML = `
      <div class="head"><div><h1>Teams</h1><div class="muted">A team's limits hold the combined usage of every key on the team.</div></div></div>
      <form id="team-new" class="card"><h2>New team</h2><div class="row"><div><label for="t-id">Name</label><input id="t-id" required placeholder="research"></div></div>
        <label>Limits</label>${limitsEditor([{ metric: "cost", window: "monthly", threshold: "" }])}<div style="margin-top:14px"><button class="primary" type="submit">Create team</button></div></form>
      <div class="card tbl"><table id="teams-table"><thead><tr><th>Team</th><th>Limits</th><th></th></tr></thead><tbody>
      ${Object.entries(t.teams).map(([id, team]) => `<tr data-team="${esc(id)}"><td><strong>${esc(id)}</strong></td><td>${(team.limits || []).map((l) => `<div>${limitText(l)}${l.enabled === false ? " (off)" : ""}</div>`).join("") || "-"}</td>
        <td class="num"><button class="edit">Edit limits</button> <button class="danger del">Delete</button></td></tr>`).join("") || `<tr><td colspan="3" class="empty">No teams yet.</td></tr>`}
      </tbody></table></div>`;
    wireEditor($("#team-new"));
    $("#team-new").addEventListener("submit", async (e) => {
      e.preventDefault();
      const id = $("#t-id").value.trim();
      try { await api("PUT", `/v1/admin/teams/${encodeURIComponent(id)}`, { limits: readLimits($("#team-new")) }); toast(`Team ${id} saved`); teams(main); } catch (err) { toast(err.message, true); }
    });
    $("#teams-table").addEventListener("click", async (e) => {
      const tr = e.target.closest("tr"); if (!tr || !tr.dataset.team) return;
      const id = tr.dataset.team;
      if (e.target.classList.contains("del")) {
        if (!confirm(`Delete team ${id}?`)) return;
        try { await api("DELETE", `/v1/admin/teams/${encodeURIComponent(id)}`); toast(`Team ${id} deleted`); teams(main); } catch (err) { toast(err.message, true); }
      }
      if (e.target.classList.contains("edit")) editLimits(`/v1/admin/teams/${encodeURIComponent(id)}`, "PUT", t.teams[id].limits, `team ${id}`, () => teams(main), tr);
    });
  }

  async function customers(main) {
    const c = await api("GET", "/v1/admin/customers");
    const u = await api("GET", "/v1/usage");
    const cl = u.limits.filter((l) => l.scope === "customer");
    main.innerHTML = `
      <div class="head"><div><h1>Customers</h1><div class="muted">Per-customer monthly budget and requests per minute; overrides for single customers.</div></div></div>
      <form id="cust-def" class="card"><h2>Defaults</h2><div class="row">
        <div><label for="c-budget">Monthly budget (USD)</label><input id="c-budget" type="number" min="0" step="any" value="${esc(c.monthly_budget_usd === undefined ? "" : c.monthly_budget_usd)}"></div>
        <div><label for="c-rpm">Requests per minute</label><input id="c-rpm" type="number" min="0" step="1" value="${esc(c.rate_limit_rpm === undefined ? "" : c.rate_limit_rpm)}"></div>
        <div><label for="c-alert">Budget alert levels</label><input id="c-alert" type="text" placeholder="50%, 80%, 95%" value="${esc(levelsText(c.alert_at))}"></div>
        <div><label for="c-proj">Alert when projected to run out</label><select id="c-proj"><option value="no" ${c.alert_projected ? "" : "selected"}>no</option><option value="yes" ${c.alert_projected ? "selected" : ""}>yes</option></select></div>
        <div><button class="primary" type="submit">Save defaults</button></div></div></form>
      <form id="cust-ovr" class="card"><h2>Override one customer</h2><div class="row">
        <div><label for="o-id">Customer id</label><input id="o-id" required placeholder="acme-corp"></div>
        <div><label for="o-budget">Monthly budget (USD)</label><input id="o-budget" type="number" min="0" step="any"></div>
        <div><label for="o-rpm">Requests per minute</label><input id="o-rpm" type="number" min="0" step="1"></div>
        <div><label for="o-alert">Budget alert levels</label><input id="o-alert" type="text" placeholder="defaults'"></div>
        <div><label for="o-proj">Projected alert</label><select id="o-proj"><option value="">as the defaults</option><option value="yes">yes</option><option value="no">no</option></select></div>
        <div><button class="primary" type="submit">Save override</button></div></div></form>
      <div class="card tbl"><table id="cust-table"><thead><tr><th>Customer</th><th>Usage</th><th class="num">Used</th><th class="num">Limit</th><th class="hide-sm">Window</th><th></th></tr></thead><tbody>
      ${cl.map((l) => `<tr data-cust="${esc(l.id)}"><td><strong>${esc(l.id)}</strong><div class="scope">${esc(l.metric)}</div></td><td>${bar(l)}</td><td class="num">${amount(l.used, l.metric)}</td><td class="num">${amount(l.threshold, l.metric)}</td><td class="hide-sm">${esc(l.window)}</td>
        <td class="num"><button class="danger del" title="remove this customer's override">Remove</button></td></tr>`).join("") || `<tr><td colspan="6" class="empty">No customer has used the API this month.</td></tr>`}
      </tbody></table></div>`;
    const num = (v) => (v === "" ? undefined : Number(v));
    $("#cust-def").addEventListener("submit", async (e) => {
      e.preventDefault();
      /* what the form does not show stays as it was; overrides are set one customer at a time */
      const body = Object.assign({}, c);
      delete body.monthly_budget_usd; delete body.rate_limit_rpm; delete body.alert_at; delete body.alert_projected; delete body.overrides;
      if ($("#c-proj").value === "yes") body.alert_projected = true;
      if (num($("#c-budget").value) !== undefined) body.monthly_budget_usd = num($("#c-budget").value);
      if (num($("#c-rpm").value) !== undefined) body.rate_limit_rpm = num($("#c-rpm").value);
      if (parseLevels($("#c-alert").value) !== undefined) body.alert_at = parseLevels($("#c-alert").value);
      try { await api("PUT", "/v1/admin/customers", body); toast("Customer defaults saved"); customers(main); } catch (err) { toast(err.message, true); }
    });
    $("#cust-ovr").addEventListener("submit", async (e) => {
      e.preventDefault();
      const id = $("#o-id").value.trim(), body = {};
      if (num($("#o-budget").value) !== undefined) body.monthly_budget_usd = num($("#o-budget").value);
      if (num($("#o-rpm").value) !== undefined) body.rate_limit_rpm = num($("#o-rpm").value);
      if (parseLevels($("#o-alert").value) !== undefined) body.alert_at = parseLevels($("#o-alert").value);
      if ($("#o-proj").value) body.alert_projected = $("#o-proj").value === "yes";
      try { await api("PUT", `/v1/admin/customers/${encodeURIComponent(id)}`, body); toast(`Override for ${id} saved`); customers(main); } catch (err) { toast(err.message, true); }
    });
    $("#cust-table").addEventListener("click", async (e) => {
      if (!e.target.classList.contains("del")) return;
      const id = e.target.closest("tr").dataset.cust;
      try { await api("DELETE", `/v1/admin/customers/${encodeURIComponent(id)}`); toast(`Override for ${id} removed`); customers(main); } catch (err) { toast(err.message, true); }
    });
  }

  async function invites(main) {
    const t = await api("GET", "/v1/admin/teams");
    main.innerHTML = `
      <div class="head"><div><h1>Invites</h1><div class="muted">A one-time code that creates a key with these limits when its holder redeems it with their key's fingerprint.</div></div></div>
      <form id="inv-new" class="card"><h2>New invite</h2><div class="row">
        <div><label for="i-id">Key name (optional)</label><input id="i-id" placeholder="alice-laptop"></div>
        <div><label for="i-team">Team</label><select id="i-team"><option value="">(no team)</option>${Object.keys(t.teams).map((id) => `<option>${esc(id)}</option>`).join("")}</select></div></div>
        <label>Limits</label>${limitsEditor([{ metric: "cost", window: "monthly", threshold: "" }])}
        <div style="margin-top:14px"><button class="primary" type="submit">Create invite</button></div></form>
      <div id="inv-out"></div>`;
    wireEditor($("#inv-new"));
    $("#inv-new").addEventListener("submit", async (e) => {
      e.preventDefault();
      const body = { limits: readLimits($("#inv-new")) };
      if ($("#i-id").value.trim()) body.id = $("#i-id").value.trim();
      if ($("#i-team").value) body.team = $("#i-team").value;
      try {
        const r = await api("POST", "/v1/admin/invites", body);
        $("#inv-out").innerHTML = `<div class="card"><h2>Invite created</h2><p>Send this code to its holder; it works once, until ${when(r.expires_at)}.</p>
          <div class="code" id="inv-code">${esc(r.code)}</div><p class="muted">They redeem it with <code>POST ${esc(r.redeem)}</code> and <code>{"sha256": "&lt;llmcap key fingerprint&gt;"}</code>.</p></div>`;
      } catch (err) { toast(err.message, true); }
    });
  }

  async function hosts(main) {
    let hs = null;
    try { const h = await api("GET", "/v1/admin/hosts"); hs = Array.isArray(h) ? h : h.hosts; } catch (e) { hs = null; }
    if (!hs) hs = (await api("GET", "/v1/usage")).hosts || [];
    const now = Date.now() / 1000;
    main.innerHTML = `
      <div class="head"><div><h1>Hosts</h1><div class="muted">Every host whose agent reports usage. Lag is the time since its last report.</div></div></div>
      <div class="card tbl"><table id="hosts-table"><thead><tr><th>Host</th><th class="hide-sm">Store epoch</th><th>Last report</th><th class="num">Lag</th><th class="num hide-sm">Reports</th><th>Version</th></tr></thead><tbody>
      ${hs.map((h) => {
        const t = h.last_report_at ? Date.parse(h.last_report_at) / 1000 : NaN, lag = now - t;
        return `<tr><td><strong>${esc(h.name || h.host_id || h.id)}</strong></td><td class="hide-sm"><code>${esc(String(h.epoch || "").slice(0, 12))}</code></td><td>${when(h.last_report_at)}</td>
          <td class="num"><span class="pill ${lag > 600 ? "reached" : lag > 120 ? "alert" : "ok"}">${ago(lag)}</span></td><td class="num hide-sm">${esc(h.seq === undefined ? "-" : h.seq)}</td><td>${esc(h.version || h.policy_version || "-")}</td></tr>`;
      }).join("") || `<tr><td colspan="6" class="empty">No host has reported yet. Run <code>llmcap agent --server …</code> on each host.</td></tr>`}
      </tbody></table></div>`;
  }

  start();
})();
