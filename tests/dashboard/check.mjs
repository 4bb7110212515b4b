// SPDX-License-Identifier: MIT
// The dashboard in headless Chromium (Debian's /usr/bin/chromium) through playwright-core.
// Run by tests/dashboard/run with the watch's base URL; WATCH_PID is the watch to stop at the
// end (the page must then say it cannot reach it), SHOT a screenshot path. Prints one
// "ok ..." or "FAIL ..." line per check.
import { chromium } from "../../web/node_modules/playwright-core/index.mjs";

const base = process.argv[2];
const problems = [];
let failed = 0;
const ok = (name) => console.log(`ok   browser: ${name}`);
const bad = (name, detail) => {
  failed++;
  console.log(`FAIL browser: ${name}${detail ? `\n     ${detail}` : ""}`);
};
async function check(name, fn) {
  try {
    const detail = await fn();
    if (detail === true || detail === undefined) ok(name);
    else bad(name, detail);
  } catch (e) {
    bad(name, String(e.message || e).split("\n")[0]);
  }
}

const browser = await chromium.launch({
  executablePath: "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
const page = await browser.newPage({ viewport: { width: 1400, height: 1600 } });
page.on("pageerror", (e) => problems.push(`page error: ${e.message}`));
page.on("console", (m) => { if (m.type() === "error") problems.push(`console error: ${m.text()}`); });
page.on("response", (r) => { if (r.status() >= 400) problems.push(`HTTP ${r.status()} for ${r.url()}`); });
page.on("requestfailed", (r) => problems.push(`request failed: ${r.url()}`));
page.on("dialog", (d) => { problems.push(`a dialog opened: ${d.message()}`); d.dismiss(); });
const T = { timeout: 15000 };

await check("the page loads and shows the dataset", async () => {
  await page.goto(`${base}/dashboard/`);
  await page.waitForSelector('[data-testid="dataset-accounts"]', T);
});

await check("two replicas: primary (authority, eu-west) and replica (us-east), both ok", async () => {
  const rows = await page.$$eval('[data-testid="dataset-accounts"] tr[data-replica]', (trs) =>
    trs.map((tr) => [tr.getAttribute("data-replica"), tr.cells[1].textContent, tr.cells[2].textContent,
      tr.cells[0].textContent.includes("authority")]));
  const want = JSON.stringify([["primary", "eu-west", "ok", true], ["replica", "us-east", "ok", false]]);
  return JSON.stringify(rows) === want || `got ${JSON.stringify(rows)}`;
});

await check("the tiles agree with the API: 2/2 up, 3 confirmed", async () => {
  await page.waitForFunction(() => document.querySelector('[data-testid="tile-confirmed"] .v')?.textContent === "3", null, T);
  const up = await page.textContent('[data-testid="tile-up"] .v');
  return up === "2/2" || `replicas up tile says ${up}`;
});

await check("business impact: 75 USD at risk, 3 rows x 25 USD, tier critical, the note", async () => {
  const total = await page.textContent('[data-testid="impact-total"]');
  const line = await page.textContent('[data-testid="impact-accounts"]');
  const tier = await page.getAttribute('[data-testid="dataset-accounts"]', "class");
  if (total !== "75 USD") return `total says "${total}"`;
  if (!line.includes("75 USD") || !line.includes("3 confirmed") || !line.includes("25 USD") || !line.includes("balances shown in the app"))
    return `impact line says "${line}"`;
  return tier.includes("tier-critical") || `card class "${tier}"`;
});

await check("catalog text is shown as text, never as HTML (owner \"<b>payments</b>\")", async () => {
  const txt = await page.textContent('[data-testid="dataset-accounts"] h2');
  const bold = await page.$$('[data-testid="dataset-accounts"] h2 b');
  return (txt.includes("owner <b>payments</b>") && bold.length === 0) || `heading "${txt}", ${bold.length} <b>`;
});

await check("the firing alert is listed with its stage and a runbook link", async () => {
  await page.waitForSelector('#alerts tr[data-alert] a[href*="/runbooks/"]', T);
  const rows = await page.$$eval("#alerts tr[data-alert]", (trs) => trs.map((tr) => [tr.cells[0].textContent, tr.cells[1].textContent, tr.cells[3].textContent]));
  return rows.some(([stage, , state]) => ["early", "mid", "late"].includes(stage) && state === "firing") || JSON.stringify(rows);
});

await check("divergent keys: the 3 corrupted ids, class conflict, confirmed", async () => {
  await page.waitForFunction(() => document.querySelectorAll("#divergences tr[data-class]").length === 3, null, T);
  const rows = await page.$$eval("#divergences tr[data-class]", (trs) => trs.map((tr) => [tr.cells[1].textContent, tr.getAttribute("data-class"), tr.getAttribute("data-state")]));
  const ids = rows.map((r) => JSON.parse(r[0]).id).sort((a, b) => a - b);
  return (JSON.stringify(ids) === "[17,404,777]" && rows.every((r) => r[1] === "conflict" && r[2] === "confirmed")) || JSON.stringify(rows);
});

await check("the class filter asks the server: missing -> none, conflict -> 3", async () => {
  await page.selectOption("#f-class", "missing");
  await page.waitForSelector("#divergences td.empty", T);
  await page.selectOption("#f-class", "conflict");
  await page.waitForFunction(() => document.querySelectorAll('#divergences tr[data-class="conflict"]').length === 3, null, T);
  await page.selectOption("#f-class", "");
});

await check("a click on a divergent shard lists that shard's keys only", async () => {
  const shard = await page.$$eval("#divergences tr[data-class]", (trs) => Number(trs[0].cells[2].textContent));
  const want = await page.$$eval("#divergences tr[data-class]", (trs, s) => trs.filter((tr) => Number(tr.cells[2].textContent) === s).length, shard);
  await page.click(`[data-testid="shards-accounts"] button[aria-label="shard ${shard}"]`);
  await page.waitForFunction((s) => location.hash === `#dataset=accounts&shard=${s}`, shard, T);
  await page.waitForFunction(([s, n]) => {
    const trs = [...document.querySelectorAll("#divergences tr[data-class]")];
    return trs.length === n && trs.every((tr) => Number(tr.cells[2].textContent) === s);
  }, [shard, want], T);
});

await check("the charts are drawn (uPlot canvases, a series per replica)", async () => {
  await page.waitForTimeout(4500); // two more polls: the lines have points
  const charts = await page.$$eval('[data-chart^="accounts/"]', (els) => els.map((e) => {
    const c = e.querySelector("canvas");
    return [e.getAttribute("data-chart"), c ? c.width : 0, [...e.querySelectorAll(".u-legend .u-label")].map((l) => l.textContent)];
  }));
  const lag = charts.find((c) => c[0] === "accounts/lag"), dv = charts.find((c) => c[0] === "accounts/div");
  if (!lag || !dv || lag[1] < 100 || dv[1] < 100) return JSON.stringify(charts);
  return (lag[2].includes("primary") && lag[2].includes("replica") && dv[2].includes("confirmed")) || JSON.stringify(charts);
});

await check("an unknown dataset in the address is named, not a blank page", async () => {
  await page.goto(`${base}/dashboard/#dataset=nope`);
  await page.waitForFunction(() => document.querySelector("#datasets")?.textContent.includes("no dataset named nope"), null, T);
  await page.goto(`${base}/dashboard/#dataset=accounts`);
  await page.waitForSelector('[data-testid="dataset-accounts"]', T);
});

if (process.env.SHOT) await page.screenshot({ path: process.env.SHOT, fullPage: true });

await check("no script error, failed request or dialog while the watch ran", async () =>
  problems.length === 0 || problems.join("; "));

await check("converge watch stopped: the page says it cannot reach it and keeps the last data", async () => {
  process.kill(Number(process.env.WATCH_PID), "SIGTERM");
  await page.waitForFunction(() => document.querySelector("#conn")?.dataset.state === "offline", null, T);
  const banner = await page.textContent("#banner");
  const still = await page.$('[data-testid="dataset-accounts"]');
  return (banner.includes("Cannot reach converge watch") && still !== null) || `banner "${banner}"`;
});

await browser.close();
console.log(failed ? `FAIL browser: ${failed} check(s) failed` : "ok   browser: done");
