// Browser test of /gemgate/ui: 40 generate requests through the gateway in front of the emulator
// with the official @google/genai SDK (30 served through a gateway-made cache, 10 at the flex
// tier, three tags, two keys), then headless Chromium loads the page with the admin token in the
// URL fragment. The page's net saving must equal the sum of the responses'
// x-gemgate-net-saving-usd headers, and so must /gemgate/v1/spend?group_by=model. Screenshots at
// 1366 px and at phone width are saved under target/ui-artifacts/.
import { GoogleGenAI } from "@google/genai";
import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { chromium } from "playwright-core";
import { BIN, EMULATOR_CONFIG, REPO, spawnGemgate } from "../js/support.mjs";

const CHROMIUM = process.env.GEMGATE_CHROMIUM || "/usr/bin/chromium";
const ARTIFACTS = join(REPO, "target", "ui-artifacts");
const TOKEN = "ui-test-admin-token";
const MODEL = "gemini-2.5-flash";

let emulator;
let gateway;
let workdir;
const sent = [];

/** About `tokens` tokens of text (the emulator counts UTF-8 bytes / 4). */
function document(seed, tokens) {
  let s = `Document ${seed}. `;
  for (let i = 0; s.length < tokens * 4; i++) s += `Clause ${i} of ${seed} sets out a rule the assistant follows. `;
  return s;
}

before(async () => {
  workdir = mkdtempSync(join(tmpdir(), "gemgate-ui-"));
  emulator = await spawnGemgate(
    "emulator",
    [BIN, "emulator", "--listen", "127.0.0.1:0", "--config", EMULATOR_CONFIG],
    "emulator listening on",
    workdir,
  );
  const config = join(workdir, "gateway.toml");
  writeFileSync(
    config,
    [
      "[server]",
      `admin_token = "${TOKEN}"`,
      "[store]",
      `sqlite_path = "${join(workdir, "gemgate.sqlite")}"`,
      "[caching.cost]",
      "implicit_probes = 0",
      "[spend]",
      'tenant_names = {}',
      "",
    ].join("\n"),
  );
  gateway = await spawnGemgate(
    "gateway",
    [BIN, "serve", "--config", config, "--listen", "127.0.0.1:0", "--upstream", emulator.url],
    "gateway listening on",
    workdir,
  );
});

after(async () => {
  if (gateway) await gateway.stop();
  if (emulator) await emulator.stop();
  if (workdir) rmSync(workdir, { recursive: true, force: true });
});

async function generate(apiKey, contents, system, headers) {
  const ai = new GoogleGenAI({ apiKey, httpOptions: { baseUrl: gateway.url } });
  const res = await ai.models.generateContent({
    model: MODEL,
    contents,
    config: { ...(system ? { systemInstruction: system } : {}), httpOptions: { headers } },
  });
  const h = res.sdkHttpResponse.headers;
  assert.ok(h["x-gemgate-net-saving-usd"] !== undefined, `no saving header: ${JSON.stringify(h)}`);
  sent.push({
    cache: h["x-gemgate-cache"],
    tier: h["x-gemgate-tier"],
    saving: Number(h["x-gemgate-net-saving-usd"]),
    tag: headers["x-gemgate-tag"],
  });
}

// Polls a predicate in the page until it holds. page.evaluate runs through the DevTools protocol,
// which the page's Content-Security-Policy does not restrict; Playwright's waitForFunction may
// compile its predicate with eval inside the page, which that policy (rightly) forbids.
async function waitInPage(page, predicate, timeoutMs = 5_000) {
  const deadline = Date.now() + timeoutMs;
  while (!(await page.evaluate(predicate))) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${predicate}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

test("40 requests, then the page and the spend API show the sum of the responses' savings", async (t) => {
  const system = document("ui-policy", 9000);
  for (let i = 0; i < 30; i++) {
    await generate("ui-key-cached", `Question ${i} about the policy?`, system, { "x-gemgate-tag": i % 2 ? "search" : "chat" });
  }
  for (let i = 0; i < 10; i++) {
    await generate("ui-key-flex", `Summarise item ${i} overnight.`, null, { "x-gemgate-tag": "nightly", "x-gemgate-defer": "flex" });
  }
  assert.equal(sent.length, 40);
  const hits = sent.filter((s) => s.cache === "hit").length;
  const flex = sent.filter((s) => s.tier === "flex").length;
  assert.ok(hits >= 25, `cache outcomes: ${sent.map((s) => s.cache).join(",")}`);
  assert.equal(flex, 10);
  const headerSum = sent.reduce((a, s) => a + s.saving, 0);
  assert.ok(headerSum > 0, `net saving ${headerSum}`);

  const auth = { Authorization: `Bearer ${TOKEN}` };
  const unauth = await fetch(`${gateway.url}/gemgate/v1/spend?group_by=model`);
  assert.equal(unauth.status, 401, "the data endpoints stay behind the admin token");
  const byModel = await (await fetch(`${gateway.url}/gemgate/v1/spend?group_by=model`, { headers: auth })).json();
  const apiSum = byModel.groups.reduce((a, g) => a + g.netSavingUsd, 0);
  assert.equal(byModel.total.requests, 40, JSON.stringify(byModel));
  assert.ok(Math.abs(apiSum - headerSum) <= 1e-6, `API ${apiSum} vs headers ${headerSum}`);

  mkdirSync(ARTIFACTS, { recursive: true });
  const browser = await chromium.launch({ executablePath: CHROMIUM, args: ["--no-sandbox"] });
  t.after(() => browser.close());
  const page = await browser.newPage({ viewport: { width: 1366, height: 900 } });
  const errors = [];
  page.on("pageerror", (e) => errors.push(String(e)));

  // Without the token the page loads but shows no figures.
  await page.goto(`${gateway.url}/gemgate/ui`);
  await waitInPage(page, () => document.getElementById("status").textContent.includes("#token="));
  assert.equal(await page.textContent("#net-saving"), "–");

  await page.goto(`${gateway.url}/gemgate/ui#token=${TOKEN}&window=24h`);
  await page.reload();
  await waitInPage(page, () => Number(document.body.dataset.loads || 0) >= 1, 15_000);
  const shown = Number(await page.getAttribute("#net-saving", "data-usd"));
  const text = (await page.textContent("#net-saving")).trim();
  const fromText = Number(text.replace(/[^0-9.]/g, "")) * (text.startsWith("−") ? -1 : 1);
  const off = (v) => Math.abs(v - headerSum) / Math.abs(headerSum);
  console.log(
    `# 40 responses: ${hits} cache hits, ${flex} flex; sum of x-gemgate-net-saving-usd = ${headerSum.toFixed(8)}; ` +
      `spend API by model = ${apiSum.toFixed(8)}; page shows ${text} (data ${shown.toFixed(8)}, ${(off(fromText) * 100).toFixed(4)} % off)`,
  );
  assert.ok(off(shown) < 0.02 && off(fromText) < 0.02, `page ${text} / ${shown} vs headers ${headerSum}`);
  assert.equal(await page.textContent("#requests"), "40");
  const tags = await page.$$eval("#by-tag tbody td:first-child", (tds) => tds.map((td) => td.textContent));
  assert.deepEqual([...tags].sort(), ["chat", "nightly", "search"]);
  const recentRows = await page.$$eval("#recent tbody tr", (rows) => rows.length);
  assert.equal(recentRows, 40);
  await page.fill("#filter", "nightly");
  assert.equal(await page.$$eval("#recent tbody tr", (rows) => rows.length), 10, "the filter narrows the list");
  await page.fill("#filter", "");
  const cacheRows = await page.$$eval("#caches tbody tr td:not(.empty)", (tds) => tds.length);
  assert.ok(cacheRows > 0, "the cache made is listed as alive");
  const wide = await page.evaluate(() => document.documentElement.scrollWidth);
  assert.ok(wide <= 1366, `no horizontal scroll at 1366 px (${wide})`);
  await page.screenshot({ path: join(ARTIFACTS, "dashboard-1366.png"), fullPage: true });

  await page.setViewportSize({ width: 390, height: 844 });
  await page.waitForTimeout(200);
  const phone = await page.evaluate(() => document.documentElement.scrollWidth);
  assert.ok(phone <= 390, `tables scroll inside their boxes at phone width (${phone})`);
  await page.screenshot({ path: join(ARTIFACTS, "dashboard-phone.png"), fullPage: true });
  assert.deepEqual(errors, []);
});
