// SPDX-License-Identifier: MIT
// converge dashboard: reads converge watch's JSON API (same origin) every few seconds and draws
// datasets, replicas, lag and divergence history (uPlot), business impact, alerts by stage,
// divergent keys and change events. Read-only: it never POSTs. Every value from the API goes into
// the page as text (textContent), never as HTML.
"use strict";

(function () {
  const params = new URLSearchParams(location.search);
  const REFRESH_MS = Math.max(1000, Math.min(60000, 1000 * (Number(params.get("refresh")) || 2)));
  const HISTORY = 1800; // points kept per dataset: an hour at the default refresh
  const DIV_LIMIT = 50;
  const TIERS = { critical: 0, high: 1, medium: 2, low: 3 };
  const STAGES = { late: 3, mid: 2, early: 1 };
  const STATES = { firing: 0, pending: 1, resolved: 2 }; // the alerts table's order
  const COLORS = ["#2563eb", "#16a34a", "#9333ea", "#ea580c", "#0891b2", "#be185d", "#4d7c0f", "#b45309"];

  const st = {
    status: null,
    alerts: [],
    events: [],
    lastOk: 0,
    hist: new Map(), // dataset -> {t: [], lag: Map(replica -> []), sus: [], conf: [], applied: []}
    charts: new Map(), // dataset/kind -> uPlot
    focus: "",
    shard: null,
  };

  // ---- small helpers ----
  function h(tag, attrs, ...kids) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "class") e.className = v;
      else if (k === "text") e.textContent = v;
      else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
      else e.setAttribute(k, v === true ? "" : String(v));
    }
    for (const c of kids.flat()) {
      if (c === null || c === undefined || c === false) continue;
      e.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return e;
  }
  const $ = (id) => document.getElementById(id);
  const num = (x, d = 0) =>
    x === null || x === undefined || Number.isNaN(x)
      ? "–"
      : Number(x).toLocaleString("en-US", { maximumFractionDigits: d, minimumFractionDigits: 0 });
  function secs(x) {
    if (x === null || x === undefined) return "unknown";
    if (x < 1) return `${Math.round(x * 1000)} ms`;
    if (x < 120) return `${x.toFixed(1)} s`;
    if (x < 7200) return `${(x / 60).toFixed(1)} min`;
    return `${(x / 3600).toFixed(1)} h`;
  }
  function ago(t, now) {
    if (!t) return "never";
    return `${secs(Math.max(0, now - t))} ago`;
  }
  const iso = (t) => (t ? new Date(t * 1000).toISOString() : "");
  const money = (v, unit) => `${num(v, 2)}${unit ? " " + unit : ""}`;

  async function getJSON(url) {
    const r = await fetch(url, { cache: "no-store", headers: { Accept: "application/json" } });
    let body = null;
    try {
      body = await r.json();
    } catch (e) {
      throw new Error(`${url}: answer is not JSON (HTTP ${r.status})`);
    }
    if (!r.ok) throw new Error(`${url}: HTTP ${r.status}: ${(body && body.error) || r.statusText}`);
    return body;
  }

  // ---- focus (the URL's #dataset=NAME) ----
  function readFocus() {
    const m = /(?:^#|&)dataset=([^&]*)/.exec(location.hash);
    st.focus = m ? decodeURIComponent(m[1]) : "";
    st.shard = null;
    const s = /(?:^#|&)shard=(\d+)/.exec(location.hash);
    if (s) st.shard = Number(s[1]);
    $("f-shard").value = st.shard === null ? "" : String(st.shard);
  }
  window.addEventListener("hashchange", () => {
    readFocus();
    render();
    loadDivergences();
  });

  // ---- history for the charts ----
  function record(status) {
    const now = status.now;
    const seen = new Set();
    for (const d of status.datasets) {
      seen.add(d.name);
      let hs = st.hist.get(d.name);
      if (!hs) {
        hs = { t: [], lag: new Map(), sus: [], conf: [], applied: [] };
        st.hist.set(d.name, hs);
      }
      hs.t.push(now);
      const names = new Set(d.replicas.map((r) => r.name));
      for (const r of d.replicas) {
        if (!hs.lag.has(r.name)) hs.lag.set(r.name, new Array(hs.t.length - 1).fill(null));
        hs.lag.get(r.name).push(r.up === false ? null : r.lag_seconds);
      }
      for (const [name, arr] of hs.lag) if (!names.has(name)) arr.push(null);
      hs.sus.push(d.divergences.suspected);
      hs.conf.push(d.divergences.confirmed);
      hs.applied.push(d.repair ? d.repair.applied : null);
      if (hs.t.length > HISTORY) {
        hs.t.shift();
        hs.sus.shift();
        hs.conf.shift();
        hs.applied.shift();
        for (const arr of hs.lag.values()) arr.shift();
      }
    }
    for (const name of [...st.hist.keys()]) if (!seen.has(name)) st.hist.delete(name);
  }

  // ---- alerts per dataset ----
  function alertsOf(name) {
    return st.alerts.filter((a) => a.labels && a.labels.dataset === name && a.state === "firing");
  }
  function worstStage(alerts) {
    let w = 0;
    for (const a of alerts) w = Math.max(w, STAGES[a.labels.stage] || 1);
    return w;
  }
  const stageName = (n) => ["", "early", "mid", "late"][n] || "";

  function impactOf(d) {
    const im = d.impact || { tier: "medium", per_row: null, unit: "", note: "" };
    return { ...im, value: im.per_row ? d.divergences.confirmed * im.per_row : null };
  }

  function ordered(datasets) {
    return [...datasets].sort((a, b) => {
      const sa = worstStage(alertsOf(a.name)), sb = worstStage(alertsOf(b.name));
      if (sa !== sb) return sb - sa;
      const ta = TIERS[impactOf(a).tier] ?? 2, tb = TIERS[impactOf(b).tier] ?? 2;
      if (ta !== tb) return ta - tb;
      const va = impactOf(a).value || 0, vb = impactOf(b).value || 0;
      if (va !== vb) return vb - va;
      if (a.divergences.confirmed !== b.divergences.confirmed)
        return b.divergences.confirmed - a.divergences.confirmed;
      return a.name.localeCompare(b.name);
    });
  }

  // ---- rendering ----
  function renderHeader(s) {
    $("meta").textContent =
      `${s.catalog} · converge ${s.version} · up ${secs(s.now - s.started_at)} · refresh every ${REFRESH_MS / 1000} s`;
  }

  function renderImpact(ds) {
    const box = $("impact");
    box.replaceChildren();
    const byUnit = new Map();
    let affected = [];
    for (const d of ds) {
      const im = impactOf(d);
      if (d.divergences.confirmed > 0) affected.push(d.name);
      if (im.value !== null) byUnit.set(im.unit, (byUnit.get(im.unit) || 0) + im.value);
    }
    const risk = [...byUnit.entries()].filter(([, v]) => v > 0);
    box.append(
      h("div", {},
        h("div", { class: "muted", text: "at risk now (confirmed divergent rows × value per row)" }),
        h("div", { class: `big ${risk.length ? "risk" : "zero"}`, "data-testid": "impact-total",
                   text: risk.length ? risk.map(([u, v]) => money(v, u)).join(" + ") : "nothing" })),
      h("div", {},
        h("div", { class: "muted", text: "datasets with confirmed divergence" }),
        h("div", { class: "big", text: affected.length ? affected.join(", ") : "none" })),
    );
    const crit = ds.filter((d) => impactOf(d).tier === "critical" && d.divergences.confirmed > 0);
    if (crit.length)
      box.append(h("div", {},
        h("div", { class: "muted", text: "critical datasets affected" }),
        h("div", { class: "big risk", text: crit.map((d) => d.name).join(", ") })));
  }

  function renderSummary(ds) {
    let up = 0, reps = 0, conf = 0, sus = 0, applied = 0, viol = 0;
    for (const d of ds) {
      for (const r of d.replicas) { reps++; if (r.up) up++; }
      conf += d.divergences.confirmed;
      sus += d.divergences.suspected;
      applied += d.repair ? d.repair.applied : 0;
      viol += d.invariants.filter((i) => i.status === "violated").length;
    }
    const firing = st.alerts.filter((a) => a.state === "firing");
    const byStage = { early: 0, mid: 0, late: 0 };
    for (const a of firing) byStage[a.labels.stage] = (byStage[a.labels.stage] || 0) + 1;
    const tile = (v, l, cls, id) =>
      h("div", { class: `tile ${cls || ""}`, "data-testid": id }, h("div", { class: "v", text: v }), h("div", { class: "l", text: l }));
    $("summary").replaceChildren(
      tile(`${up}/${reps}`, "replicas up", up < reps ? "bad" : "", "tile-up"),
      tile(num(conf), "confirmed divergent rows", conf ? "bad" : "", "tile-confirmed"),
      tile(num(sus), "suspected (in flight?)", sus ? "warn" : "", "tile-suspected"),
      tile(num(viol), "invariants violated", viol ? "bad" : "", "tile-invariants"),
      tile(`${byStage.early}/${byStage.mid}/${byStage.late}`, "alerts firing: early/mid/late",
           byStage.late || byStage.mid ? "bad" : byStage.early ? "warn" : "", "tile-alerts"),
      tile(num(applied), "rows repaired (this run)", "", "tile-repaired"),
    );
  }

  function renderFocus(ds) {
    const nav = $("focus");
    const link = (name, label) =>
      h("a", { href: name ? `#dataset=${encodeURIComponent(name)}` : "#", "aria-current": st.focus === name ? "true" : "false", text: label });
    nav.replaceChildren(link("", "all datasets"), ...ds.map((d) => link(d.name, d.name)));
  }

  function replicaTable(d) {
    const rows = d.replicas.map((r) => {
      const state = r.up === false ? "down" : r.state;
      const cls = state === "ok" ? "ok" : state === "down" || state === "stalled" || state === "error" ? "bad" : "warn";
      return h("tr", { class: r.up === false ? "down" : "", "data-replica": r.name },
        h("td", {}, r.name, r.authority ? h("span", { class: "badge", text: "authority" }) : null),
        h("td", { text: r.region || "" }),
        h("td", {}, h("span", { class: `badge ${cls}`, text: state })),
        h("td", { class: "num", text: r.up === false ? "–" : secs(r.lag_seconds) }),
        h("td", { class: "num", text: num(r.heartbeat_seq) }),
        h("td", { class: "num", text: `${num(r.canaries_seen)} / ${num(r.canary_failures)}` }),
        h("td", { text: r.error || (r.native ? `native ${r.native.role}: ${secs(r.native.lag_seconds)}` : "") }));
    });
    return h("table", { class: "grid replicas" },
      h("thead", {}, h("tr", {}, ...["replica", "region", "state", "lag", "heartbeat", "canaries seen / failed", ""].map((t, i) =>
        h("th", { class: i >= 3 && i <= 5 ? "num" : "", text: t })))),
      h("tbody", {}, rows));
  }

  function divergenceBlock(d) {
    const dv = d.divergences;
    const classes = Object.entries(dv.by_class).map(([c, v]) =>
      h("tr", { "data-class": c },
        h("td", { text: c }), h("td", { class: "num", text: num(v.confirmed) }), h("td", { class: "num", text: num(v.suspected) })));
    const table = h("table", { class: "grid" },
      h("thead", {}, h("tr", {}, h("th", { text: "class" }), h("th", { class: "num", text: "confirmed" }), h("th", { class: "num", text: "suspected" }))),
      h("tbody", {}, classes));
    // the shard map: one square per shard, coloured by its tracked keys
    const max = Math.max(1, ...Object.values(dv.by_shard));
    const differs = new Set(dv.digest_differs || []);
    const squares = [];
    for (let s = 0; s < d.shards; s++) {
      const n = dv.by_shard[String(s)] || 0;
      const lvl = n === 0 ? "" : n <= max / 3 ? "l1" : n <= (2 * max) / 3 ? "l2" : "l3";
      squares.push(h("button", {
        class: `shard ${lvl} ${differs.has(s) ? "digest" : ""} ${st.focus === d.name && st.shard === s ? "sel" : ""}`,
        title: `shard ${s}: ${n} divergent key(s)${differs.has(s) ? ", digests differ" : ""}`,
        "aria-label": `shard ${s}`,
        onclick: () => { location.hash = `dataset=${encodeURIComponent(d.name)}&shard=${s}`; },
      }));
    }
    return h("div", {}, table,
      h("div", { class: "muted", text: `shards (${d.shards}; darker: more divergent keys, purple edge: digests differ; click to list its keys)` }),
      h("div", { class: "shards", "data-testid": `shards-${d.name}` }, squares),
      dv.untracked ? h("p", { class: "muted", text: `${num(dv.untracked)} further divergent keys not tracked (max_tracked)` }) : null);
  }

  function invariantList(d) {
    if (!d.invariants.length) return h("p", { class: "muted", text: "no invariants declared" });
    return h("table", { class: "grid" },
      h("thead", {}, h("tr", {}, h("th", { text: "invariant" }), h("th", { text: "status" }), h("th", { class: "num", text: "value" }), h("th", { class: "num", text: "limit" }))),
      h("tbody", {}, d.invariants.map((i) => h("tr", { "data-invariant": i.name },
        h("td", { text: i.name }),
        h("td", {}, h("span", { class: `badge ${i.status === "ok" ? "ok" : i.status === "violated" ? "bad" : ""}`, text: i.status })),
        h("td", { class: "num", text: num(i.value, 3) }),
        h("td", { class: "num", text: num(i.limit, 3) })))));
  }

  function repairBlock(d, now) {
    const r = d.repair;
    if (!r || !r.policy || r.policy === "none")
      return h("p", { class: "muted", text: "no repair policy: divergences are reported, not repaired" });
    return h("dl", { class: "kv" },
      h("dt", { text: "policy" }), h("dd", { text: `${r.policy}${r.auto_repair ? ", automatic" : ", by hand (converge repair)"}${r.paused ? ", PAUSED" : ""}` }),
      h("dt", { text: "applied / skipped / failed" }), h("dd", { text: `${num(r.applied)} / ${num(r.skipped)} / ${num(r.failed)}` }),
      h("dt", { text: "backlog" }), h("dd", { text: num(r.backlog) }),
      h("dt", { text: "last run" }), h("dd", { text: `${ago(r.last_run, now)}${r.last_rows_per_second ? `, ${num(r.last_rows_per_second)} rows/s` : ""}` }),
      r.error ? h("dt", { text: "error" }) : null, r.error ? h("dd", { class: "bad", text: r.error }) : null);
  }

  function chartHolder(d, kind, title) {
    return h("div", { class: "chart", "data-chart": `${d.name}/${kind}` }, h("div", { class: "title", text: title }));
  }

  function card(d, now) {
    const im = impactOf(d);
    const alerts = alertsOf(d.name);
    const stage = worstStage(alerts);
    const head = h("h2", {},
      h("a", { href: `#dataset=${encodeURIComponent(d.name)}`, text: d.name }),
      h("span", { class: `badge tier-${im.tier}`, text: im.tier }),
      stage ? h("span", { class: `badge stage-${stageName(stage)}`, text: `${stageName(stage)} stage` }) : h("span", { class: "badge ok", text: "no alert" }),
      d.owner ? h("span", { class: "muted", text: `owner ${d.owner}` }) : null,
      d.schema_drift ? h("span", { class: "badge bad", title: d.schema_detail, text: "schema drift" }) : null);
    const impactLine = h("p", { class: "impactline", "data-testid": `impact-${d.name}` },
      im.value !== null
        ? [h("strong", { class: im.value > 0 ? "" : "zero", text: money(im.value, im.unit) }), ` at risk: ${num(d.divergences.confirmed)} confirmed divergent row(s) × ${money(im.per_row, im.unit)}`]
        : [`${num(d.divergences.confirmed)} confirmed divergent row(s); no value per row declared (catalog impact.per_row)`],
      im.note ? h("span", { class: "muted", text: ` — ${im.note}` }) : null);
    const frac = d.rows ? d.divergences.confirmed / d.rows : null;
    const facts = h("p", { class: "muted" },
      `${num(d.rows)} rows in ${d.shards} shards`,
      frac !== null ? ` · ${(100 * frac).toPrecision(2)}% divergent` : "",
      ` · full sweep ${ago(d.last_full_sweep, now)} · incremental check ${ago(d.last_incremental_sweep, now)}`);
    return h("article", { class: `card tier-${im.tier}`, "data-testid": `dataset-${d.name}`, "data-dataset": d.name },
      head, impactLine, facts,
      h("h3", { text: "replicas" }), replicaTable(d),
      h("div", { class: "charts" },
        chartHolder(d, "lag", "replication lag per replica (seconds)"),
        chartHolder(d, "div", "divergent rows (suspected, confirmed) and rows repaired")),
      h("h3", { text: "divergences" }), divergenceBlock(d),
      h("h3", { text: "invariants" }), invariantList(d),
      h("h3", { text: "repair" }), repairBlock(d, now));
  }

  function drawCharts() {
    if (typeof uPlot !== "function") return;
    const alive = new Set();
    for (const el of document.querySelectorAll("[data-chart]")) {
      const id = el.getAttribute("data-chart");
      const [name, kind] = [id.slice(0, id.lastIndexOf("/")), id.slice(id.lastIndexOf("/") + 1)];
      const hs = st.hist.get(name);
      if (!hs) continue;
      alive.add(id);
      let series, data;
      if (kind === "lag") {
        const names = [...hs.lag.keys()];
        series = [{}, ...names.map((n, i) => ({ label: n, stroke: COLORS[i % COLORS.length], width: 1.5, value: (u, v) => (v === null ? "–" : secs(v)) }))];
        data = [hs.t, ...names.map((n) => hs.lag.get(n))];
      } else {
        series = [{},
          { label: "suspected", stroke: "#eab308", width: 1.5 },
          { label: "confirmed", stroke: "#d92d20", width: 2 },
          { label: "repaired (cumulative)", stroke: "#16a34a", width: 1.5, scale: "rep" }];
        data = [hs.t, hs.sus, hs.conf, hs.applied];
      }
      const width = Math.max(300, el.clientWidth || 500);
      let u = st.charts.get(id);
      const sig = series.map((s) => s.label || "").join("|");
      if (u && u._sig !== sig) {
        u.destroy();
        u = null;
      }
      if (u && u.root.parentNode !== el) el.append(u.root); // the card was drawn anew: keep the chart
      if (!u) {
        const axes = [{}, { size: 56 }];
        if (kind === "div") axes.push({ scale: "rep", side: 1, grid: { show: false }, size: 56 });
        u = new uPlot({ width, height: 150, series, axes, scales: { x: { time: true } }, legend: { live: false } }, data, el);
        u._sig = sig;
        st.charts.set(id, u);
      } else {
        if (Math.abs(u.width - width) > 4) u.setSize({ width, height: 150 });
        u.setData(data);
      }
    }
    for (const [id, u] of st.charts) if (!alive.has(id)) { u.destroy(); st.charts.delete(id); }
  }

  function renderAlerts(now) {
    const body = $("alerts").tBodies[0];
    const list = st.alerts
      .filter((a) => !st.focus || (a.labels && a.labels.dataset === st.focus))
      .sort((a, b) => (STATES[a.state] ?? 3) - (STATES[b.state] ?? 3) ||
        (STAGES[b.labels.stage] || 0) - (STAGES[a.labels.stage] || 0));
    if (!list.length) {
      body.replaceChildren(h("tr", {}, h("td", { class: "empty", colspan: 8, text: "no alert is pending or firing" })));
      return;
    }
    body.replaceChildren(...list.map((a) => {
      const ann = a.annotations || {};
      const since = a.activeAt ? Date.parse(a.activeAt) / 1000 : 0;
      return h("tr", { "data-alert": a.labels.alertname },
        h("td", {}, h("span", { class: `badge stage-${a.labels.stage || ""}`, text: a.labels.stage || "" })),
        h("td", { text: a.labels.alertname }),
        h("td", { text: a.labels.dataset || "" }),
        h("td", { text: a.state }),
        h("td", { title: a.activeAt || "", text: ago(since, now) }),
        h("td", { text: ann.summary || "" }),
        h("td", { text: ann.likely_cause || "" }),
        h("td", {}, ann.runbook_url ? h("a", { href: ann.runbook_url, text: "runbook" }) : null));
    }));
  }

  function renderEvents() {
    const list = st.events.filter((e) => !st.focus || !e.dataset || e.dataset === st.focus).slice(-20).reverse();
    $("events").replaceChildren(...(list.length
      ? list.map((e) => h("li", {}, h("code", { text: e.time }), ` ${e.kind}`, e.dataset ? ` (${e.dataset})` : "", `: ${e.text}`, e.source ? h("span", { class: "muted", text: ` — ${e.source}` }) : null))
      : [h("li", { class: "muted", text: "none recorded" })]));
  }

  function render() {
    const s = st.status;
    if (!s) return;
    renderHeader(s);
    const ds = ordered(s.datasets);
    renderImpact(ds);
    renderSummary(ds);
    renderFocus(ds);
    const shown = st.focus ? ds.filter((d) => d.name === st.focus) : ds;
    const main = $("datasets");
    if (st.focus && !shown.length)
      main.replaceChildren(h("p", { class: "banner", text: `no dataset named ${st.focus} in this catalog` }));
    else main.replaceChildren(...shown.map((d) => card(d, s.now)));
    drawCharts();
    renderAlerts(s.now);
    renderEvents();
  }

  // ---- divergent keys (its own request: filtered on the server) ----
  async function loadDivergences() {
    const q = new URLSearchParams();
    if (st.focus) q.set("dataset", st.focus);
    if ($("f-class").value) q.set("class", $("f-class").value);
    if ($("f-state").value) q.set("state", $("f-state").value);
    const shard = $("f-shard").value;
    if (shard !== "") q.set("shard", shard);
    q.set("limit", String(DIV_LIMIT));
    const body = $("divergences").tBodies[0];
    if (st.focus && st.status && !st.status.datasets.some((d) => d.name === st.focus)) {
      $("div-count").textContent = "";
      body.replaceChildren(h("tr", {}, h("td", { class: "empty", colspan: 8, text: `no dataset named ${st.focus}` })));
      return;
    }
    let r;
    try {
      r = await getJSON(`/api/v1/divergences?${q}`);
    } catch (e) {
      body.replaceChildren(h("tr", {}, h("td", { class: "empty", colspan: 8, text: String(e.message || e) })));
      return;
    }
    $("div-count").textContent = `(${num(r.returned)} of ${num(r.total)})`;
    if (!r.divergences.length) {
      body.replaceChildren(h("tr", {}, h("td", { class: "empty", colspan: 8, text: "no divergent key matches" })));
      return;
    }
    const now = st.status ? st.status.now : Date.now() / 1000;
    body.replaceChildren(...r.divergences.map((k) =>
      h("tr", { "data-class": k.class, "data-state": k.state },
        h("td", { text: k.dataset }),
        h("td", {}, h("code", { text: JSON.stringify(k.key) })),
        h("td", { class: "num", text: k.shard }),
        h("td", { text: k.class }),
        h("td", {}, h("span", { class: `badge ${k.state === "confirmed" ? "bad" : "warn"}`, text: k.state })),
        h("td", { title: iso(k.first_seen), text: ago(k.first_seen, now) }),
        h("td", { class: "num", text: k.agreeing_replicas ?? "" }),
        h("td", {}, h("code", { text: Object.entries(k.replicas || {}).map(([n, v]) => `${n}=${v.state}@${v.version ?? "–"}`).join("  ") })))));
  }
  for (const id of ["f-class", "f-state", "f-shard"])
    $(id).addEventListener("change", () => {
      if (id === "f-shard") {
        const v = $("f-shard").value;
        st.shard = v === "" ? null : Number(v);
      }
      loadDivergences();
    });

  // ---- the poll loop ----
  async function poll() {
    try {
      const [status, alerts, events] = await Promise.all([
        getJSON("/api/v1/status"),
        getJSON("/api/v1/alerts"),
        getJSON("/api/v1/events").catch(() => ({ events: [] })),
      ]);
      st.status = status;
      st.alerts = alerts.alerts || [];
      st.events = events.events || [];
      st.lastOk = Date.now();
      record(status);
      $("banner").hidden = true;
      const conn = $("conn");
      conn.dataset.state = "live";
      conn.textContent = `live · ${new Date().toLocaleTimeString()}`;
      render();
      await loadDivergences();
    } catch (e) {
      const conn = $("conn");
      conn.dataset.state = "offline";
      conn.textContent = "offline";
      const b = $("banner");
      b.hidden = false;
      b.textContent = `Cannot reach converge watch (${e.message || e}). ` +
        (st.lastOk ? `Showing what it said at ${new Date(st.lastOk).toLocaleTimeString()}; ` : "") +
        `retrying every ${REFRESH_MS / 1000} s. Is converge watch still running?`;
    } finally {
      setTimeout(poll, REFRESH_MS);
    }
  }

  window.addEventListener("resize", () => drawCharts());
  readFocus();
  poll();
})();
