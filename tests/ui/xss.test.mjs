// Stored XSS through every value a client controls that the page shows: the model name in the
// path, x-gemgate-tag, a tenant name (from the config), an error message and a deferred request,
// each carrying markup. Real headless Chromium loads /gemgate/ui; the test asserts that none of the
// markup became an element (nothing injected, nothing ran) while the text itself is on the page.
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { chromium } from "playwright-core";
import { BIN, EMULATOR_CONFIG, REPO, spawnGemgate } from "../js/support.mjs";

const CHROMIUM = process.env.GEMGATE_CHROMIUM || "/usr/bin/chromium";
const ARTIFACTS = join(REPO, "target", "ui-artifacts");
const TOKEN = "xss-test-admin-token";
const KEY = "xss-tenant-key";
const MARK = `<img src=x id=xss-img onerror="window.__xss=(window.__xss||0)+1"><script id=xss-script>window.__xss=1</script>`;
const tenantId = createHash("sha256").update(KEY).digest("hex").slice(0, 16);

let emulator;
let gateway;
let workdir;

before(async () => {
  workdir = mkdtempSync(join(tmpdir(), "gemgate-xss-"));
  emulator = await spawnGemgate("emulator", [BIN, "emulator", "--listen", "127.0.0.1:0", "--config", EMULATOR_CONFIG], "emulator listening on", workdir);
  const config = join(workdir, "gateway.toml");
  writeFileSync(
    config,
    [
      "[server]",
      `admin_token = "${TOKEN}"`,
      "[store]",
      `sqlite_path = "${join(workdir, "gemgate.sqlite")}"`,
      "[spend]",
      `tenant_names = { "${tenantId}" = ${JSON.stringify(`tenant ${MARK}`)} }`,
      "",
    ].join("\n"),
  );
  gateway = await spawnGemgate("gateway", [BIN, "serve", "--config", config, "--listen", "127.0.0.1:0", "--upstream", emulator.url], "gateway listening on", workdir);
});

after(async () => {
  if (gateway) await gateway.stop();
  if (emulator) await emulator.stop();
  if (workdir) rmSync(workdir, { recursive: true, force: true });
});

async function post(path, body, headers = {}) {
  const res = await fetch(`${gateway.url}${path}`, {
    method: "POST",
    headers: { "x-goog-api-key": KEY, "content-type": "application/json", ...headers },
    body,
  });
  await res.text();
  return res.status;
}

test("markup in every client-controlled value is shown as text, never run", async () => {
  const ok = JSON.stringify({ contents: [{ role: "user", parts: [{ text: "hello" }] }] });
  // The tag (a header, so printable ASCII), on a served call.
  assert.equal(await post("/v1beta/models/gemini-2.5-flash:generateContent", ok, { "x-gemgate-tag": `tag ${MARK}` }), 200);
  // The model name in the path: the upstream refuses it, the page lists the failed call.
  const model = encodeURIComponent(`m${MARK}`);
  const status = await post(`/v1beta/models/${model}:generateContent`, ok, { "x-gemgate-tag": "model-path" });
  assert.ok(status >= 400, `unknown model answered ${status}`);
  // An error message of the gateway's own (malformed JSON) and a deferred request.
  await post("/v1beta/models/gemini-2.5-flash:generateContent", `{"contents": ${MARK}`);
  assert.equal(await post(`/v1beta/models/gemini-2.5-flash:generateContent`, ok, { "x-gemgate-defer": "batch", "x-gemgate-tag": `batch ${MARK}` }), 202);

  mkdirSync(ARTIFACTS, { recursive: true });
  const browser = await chromium.launch({ executablePath: CHROMIUM, args: ["--no-sandbox"] });
  try {
    const page = await browser.newPage({ viewport: { width: 1366, height: 900 } });
    const violations = [];
    page.on("console", (m) => m.type() === "error" && violations.push(m.text()));
    await page.goto(`${gateway.url}/gemgate/ui#token=${TOKEN}&window=24h`);
    const deadline = Date.now() + 15_000;
    while (!(await page.evaluate(() => Number(document.body.dataset.loads || 0) >= 1))) {
      assert.ok(Date.now() < deadline, "the page never loaded its data");
      await new Promise((r) => setTimeout(r, 100));
    }
    const found = await page.evaluate(() => ({
      ran: window.__xss || 0,
      injected: document.querySelectorAll("#xss-img, #xss-script, img[src='x'], [onerror]").length,
      text: document.body.innerText,
    }));
    await page.screenshot({ path: join(ARTIFACTS, "xss-1366.png"), fullPage: true });
    const shown = ["tag <img", "m<img", "tenant <img"].filter((s) => found.text.includes(s));
    console.log(`# markup values on the page as text: ${shown.join(", ")}; elements injected: ${found.injected}; scripts run: ${found.ran}`);
    assert.equal(found.injected, 0, "markup became elements");
    assert.equal(found.ran, 0, "a payload ran");
    // Tags are limited to [A-Za-z0-9._:/-] (others count as untagged), so the tenant name, free
    // text from the config, is the value that must reach the page as text.
    assert.ok(shown.includes("tenant <img"), `the hostile tenant name is shown as text: ${found.text.slice(0, 2000)}`);
  } finally {
    await browser.close();
  }
});
