// The gemgate dashboard: reads the guarded JSON API with the admin token taken from the URL
// fragment (#token=..., which browsers never send to the server) and draws it with plain DOM.
// Every value is inserted as text, never as HTML: tags and names come from clients.
"use strict";

const REFRESH_MS = 10_000;
const HOUR_MS = 3_600_000;
const token = new URLSearchParams(location.hash.slice(1)).get("token") || "";
let windowName = new URLSearchParams(location.hash.slice(1)).get("window") || "24h";
let recent = [];
let loads = 0;

async function api(path) {
  const headers = token ? { Authorization: `Bearer ${token}` } : {};
  const r = await fetch(path, { headers, cache: "no-store" });
  if (!r.ok) {
    let msg = `${r.status}`;
    try {
      msg = (await r.json()).error.message;
    } catch (_) {}
    throw new Error(`${path.split("?")[0]}: ${msg}`);
  }
  return r.json();
}

function usd(v) {
  const a = Math.abs(v);
  const digits = a >= 100 ? 2 : a >= 1 ? 4 : 6;
  return `${v < 0 ? "−" : ""}$${a.toFixed(digits)}`;
}
const pct = (v) => `${v.toFixed(1)} %`;
const int = (v) => Number(v).toLocaleString("en-US");

function el(tag, text, cls) {
  const e = document.createElement(tag);
  if (text !== undefined && text !== null) e.textContent = String(text);
  if (cls) e.className = cls;
  return e;
}

/** Fills `table` with a header row and one row per item; columns are [title, fn, kind]. */
function fillTable(table, columns, items, empty = "nothing yet") {
  table.replaceChildren();
  const head = el("tr");
  for (const [title, , kind] of columns) head.append(el("th", title, kind === "text" ? "" : "num"));
  table.append(el("thead"));
  table.tHead.append(head);
  const body = el("tbody");
  for (const item of items) {
    const tr = el("tr");
    for (const [, fn, kind] of columns) {
      const v = fn(item);
      let cls = kind === "text" ? "" : "num";
      if (kind === "saving" && typeof v === "number") cls += v < 0 ? " neg" : v > 0 ? " pos" : "";
      tr.append(el("td", kind === "usd" || kind === "saving" ? (v === undefined ? "–" : usd(v)) : v, cls));
    }
    body.append(tr);
  }
  if (!items.length) {
    const td = el("td", empty, "empty");
    td.colSpan = columns.length;
    body.append(el("tr"));
    body.lastChild.append(td);
  }
  table.append(body);
}

const FIGURE_COLUMNS = [
  ["Requests", (g) => int(g.requests), "int"],
  ["Billed", (g) => g.billedUsd, "usd"],
  ["Without gemgate", (g) => g.withoutGatewayUsd, "usd"],
  ["Net saving", (g) => g.netSavingUsd, "saving"],
  ["Saving %", (g) => pct(g.netSavingPercent), "int"],
];

const MECHANISMS = {
  explicit_cache: "Explicit caching (net of creation and storage)",
  flex: "Flex tier",
  batch: "Batch API",
  implicit: "Implicit cache hits observed",
  none: "Nothing applied",
};

function spendQuery(groupBy) {
  return `/gemgate/v1/spend?window=${encodeURIComponent(windowName)}&group_by=${groupBy}`;
}

function drawTotals(total) {
  document.getElementById("billed").textContent = usd(total.billedUsd);
  document.getElementById("without").textContent = usd(total.withoutGatewayUsd);
  const net = document.getElementById("net-saving");
  net.textContent = usd(total.netSavingUsd);
  net.dataset.usd = String(total.netSavingUsd);
  net.classList.toggle("negative", total.netSavingUsd < 0);
  document.getElementById("net-percent").textContent = pct(total.netSavingPercent);
  document.getElementById("requests").textContent = int(total.requests);
  const share = total.promptTokens ? (total.cachedTokens / total.promptTokens) * 100 : 0;
  document.getElementById("cached-share").textContent = pct(share);
}

/** Bars per hour (per day over 30 days): billed, and net saving beside it. */
function drawChart(data) {
  const svg = document.getElementById("chart");
  const ns = "http://www.w3.org/2000/svg";
  const from = Date.parse(data.from);
  const to = Date.parse(data.to);
  const step = to - from > 48 * HOUR_MS ? 24 * HOUR_MS : HOUR_MS;
  const n = Math.max(1, Math.ceil((to - from) / step));
  const billed = new Array(n).fill(0);
  const saving = new Array(n).fill(0);
  for (const g of data.groups) {
    const i = Math.min(n - 1, Math.floor((Date.parse(g.hour) - from) / step));
    billed[i] += g.billedUsd;
    saving[i] += g.netSavingUsd;
  }
  const top = Math.max(1e-12, ...billed, ...saving.map(Math.abs));
  const w = 800 / n;
  svg.replaceChildren();
  const bar = (x, value, cls) => {
    const h = (Math.abs(value) / top) * 190;
    const r = document.createElementNS(ns, "rect");
    r.setAttribute("x", x.toFixed(2));
    r.setAttribute("y", (200 - h).toFixed(2));
    r.setAttribute("width", Math.max(0.5, w * 0.4).toFixed(2));
    r.setAttribute("height", h.toFixed(2));
    r.setAttribute("class", cls);
    const t = document.createElementNS(ns, "title");
    t.textContent = `${new Date(from + (x / w) * step).toISOString()}: ${usd(value)}`;
    r.append(t);
    svg.append(r);
  };
  for (let i = 0; i < n; i++) {
    bar(i * w + w * 0.1, billed[i], "billed");
    bar(i * w + w * 0.5, saving[i], saving[i] < 0 ? "loss" : "saving");
  }
  document.getElementById("chart-from").textContent = new Date(from).toISOString().slice(0, 16).replace("T", " ");
  document.getElementById("chart-to").textContent = new Date(to).toISOString().slice(0, 16).replace("T", " ");
}

function drawCaches(caches) {
  const now = Date.now();
  fillTable(
    document.getElementById("caches"),
    [
      ["Model", (c) => c.model.replace(/^models\//, ""), "text"],
      ["Tenant", (c) => c.scope, "text"],
      ["Prefix tokens", (c) => int(c.tokens), "int"],
      ["Hits", (c) => int(c.hits), "int"],
      ["TTL left", (c) => `${Math.max(0, Math.round((Date.parse(c.expireTime) - now) / 1000))} s`, "int"],
      ["Last used", (c) => c.lastUsedTime.slice(11, 19), "text"],
    ],
    caches,
    "no caches alive",
  );
}

function drawQueue(q) {
  const dl = document.getElementById("queue");
  dl.replaceChildren();
  const rows = q.enabled
    ? [
        ["Queued", int(q.queued)],
        ["Submitted, awaiting result", int(q.submitted)],
        ["Jobs opening", int(q.jobsOpening)],
        ["Jobs submitted", int(q.jobsSubmitted)],
        ["Oldest queued", q.oldestQueuedAgeSeconds == null ? "–" : `${Math.round(q.oldestQueuedAgeSeconds)} s`],
      ]
    : [["Deferral", "off"]];
  for (const [k, v] of rows) dl.append(el("dt", k), el("dd", v));
}

function drawRecent() {
  const text = document.getElementById("filter").value.trim().toLowerCase();
  const outcome = document.getElementById("outcome").value;
  const shown = recent.filter(
    (r) =>
      (!outcome || r.outcome === outcome) &&
      (!text || [r.model, r.tenant, r.tenantName, r.tag, r.route, r.mechanism].some((f) => f && f.toLowerCase().includes(text))),
  );
  fillTable(
    document.getElementById("recent"),
    [
      ["Time", (r) => r.time.slice(11, 19), "text"],
      ["Route", (r) => r.route, "text"],
      ["Model", (r) => r.model, "text"],
      ["Tenant", (r) => r.tenantName || r.tenant, "text"],
      ["Tag", (r) => r.tag, "text"],
      ["Status", (r) => r.status, "int"],
      ["Cache", (r) => r.outcome, "text"],
      ["Why", (r) => MECHANISMS[r.mechanism] || r.mechanism, "text"],
      ["Prompt", (r) => int(r.promptTokens), "int"],
      ["Cached", (r) => int(r.cachedTokens), "int"],
      ["Output", (r) => int(r.outputTokens), "int"],
      ["Cost", (r) => r.costUsd, "usd"],
      ["Saving", (r) => r.netSavingUsd, "saving"],
      ["Latency", (r) => `${r.latencyMs.toFixed(0)} ms`, "int"],
    ],
    shown,
    "no requests match",
  );
}

async function load() {
  const status = document.getElementById("status");
  try {
    const [totals, hours, mech, models, tenants, tags, caches, queue, reqs] = await Promise.all([
      api(spendQuery("")),
      api(spendQuery("hour")),
      api(spendQuery("mechanism")),
      api(spendQuery("model")),
      api(spendQuery("tenant")),
      api(spendQuery("tag")),
      api("/gemgate/v1/caches"),
      api("/gemgate/v1/queue"),
      api("/gemgate/v1/requests?limit=200"),
    ]);
    drawTotals(totals.total);
    drawChart(hours);
    const byNet = (a, b) => b.netSavingUsd - a.netSavingUsd;
    fillTable(document.getElementById("by-mechanism"), [["Mechanism", (g) => MECHANISMS[g.mechanism] || g.mechanism, "text"], ...FIGURE_COLUMNS], mech.groups.sort(byNet));
    fillTable(document.getElementById("by-model"), [["Model", (g) => g.model, "text"], ...FIGURE_COLUMNS], models.groups.sort(byNet));
    fillTable(document.getElementById("by-tenant"), [["Tenant", (g) => (g.tenantName ? `${g.tenantName} (${g.tenant})` : g.tenant), "text"], ...FIGURE_COLUMNS], tenants.groups.sort(byNet));
    fillTable(document.getElementById("by-tag"), [["Tag", (g) => g.tag, "text"], ...FIGURE_COLUMNS], tags.groups.sort(byNet));
    drawCaches(caches.caches);
    drawQueue(queue);
    recent = reqs.requests;
    drawRecent();
    loads += 1;
    document.body.dataset.loads = String(loads);
    status.className = "";
    status.textContent = `Updated ${new Date().toLocaleTimeString()} · refreshes every ${REFRESH_MS / 1000} s`;
  } catch (e) {
    status.className = "error";
    status.textContent = token || !String(e.message).includes("admin token") ? String(e.message) : "Add #token=<admin token> to the address to see the figures.";
  }
}

document.getElementById("windows").addEventListener("click", (ev) => {
  const w = ev.target.dataset && ev.target.dataset.window;
  if (!w) return;
  windowName = w;
  for (const b of document.querySelectorAll("#windows button")) b.classList.toggle("on", b.dataset.window === w);
  load();
});
for (const b of document.querySelectorAll("#windows button")) b.classList.toggle("on", b.dataset.window === windowName);
document.getElementById("filter").addEventListener("input", drawRecent);
document.getElementById("outcome").addEventListener("change", drawRecent);
load();
setInterval(load, REFRESH_MS);
