// recoforge dashboard: plain JavaScript, no dependencies. Every value from the server is
// written with textContent (never innerHTML): item attributes are user data.
"use strict";

const PREFIX = document.body.dataset.prefix;
const API = PREFIX + "/api";
const SVG_NS = "http://www.w3.org/2000/svg";
const COLOURS = ["#3b6fb6", "#d1603d", "#3f9b5b", "#8e5bb5", "#c59a21", "#2a9d9b"];
const $ = (id) => document.getElementById(id);

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  for (const child of children) {
    node.append(child instanceof Node ? child : document.createTextNode(String(child ?? "")));
  }
  return node;
}

function svg(tag, attrs = {}, text) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  if (text !== undefined) node.textContent = text;
  return node;
}

function status(id, message, isError = false) {
  const node = $(id);
  node.textContent = message;
  node.classList.toggle("error", isError);
}

const keyInput = $("api-key");
keyInput.value = sessionStorage.getItem("recoforge-api-key") || "";
keyInput.addEventListener("change", () => {
  sessionStorage.setItem("recoforge-api-key", keyInput.value);
  loadAll();
});

async function getJSON(path) {
  const headers = keyInput.value ? { "X-API-Key": keyInput.value } : {};
  const response = await fetch(API + path, { headers });
  let body = null;
  try { body = await response.json(); } catch (e) { body = null; }
  if (!response.ok) {
    const message = (body && (body.error || body.detail)) || response.statusText;
    throw new Error(`${response.status}: ${typeof message === "string" ? message : JSON.stringify(message)}`);
  }
  return body;
}

const fmtTime = (t) => (t === null || t === undefined) ? "" :
  new Date(t * 1000).toISOString().replace("T", " ").slice(0, 19);
const fmtNum = (x, digits = 3) => (x === null || x === undefined) ? "–" : Number(x).toFixed(digits);
const fmtPct = (x) => (x === null || x === undefined) ? "–" : (100 * x).toFixed(2) + "%";

function fillRows(tbody, rows) {
  tbody.replaceChildren(...rows.map((cells) => el("tr", {}, ...cells.map((c) => el("td", {}, c)))));
}

// ---------------------------------------------------------------- model
async function loadModels() {
  try {
    const data = await getJSON("/models");
    const s = data.serving;
    status("model-serving", s ? `Serving ${s.name}` + (s.version !== null ? ` version ${s.version}` : "") +
      ` (${s.n_items} items)` : "No model is loaded.");
    const active = data.active;
    if (active && s && s.version !== null && active.id !== s.version) {
      $("model-serving").textContent += ` — the database marks version ${active.id} active`;
    }
    fillRows($("model-versions").querySelector("tbody"), data.versions.map((v) => [
      String(v.id), v.name, fmtTime(v.created),
      Object.entries(v.metrics || {}).map(([k, x]) => `${k}=${typeof x === "number" ? fmtNum(x) : x}`).join(", "),
      v.note || "", v.active ? "active" : ""]));
  } catch (err) {
    status("model-serving", "Could not load models: " + err.message, true);
  }
}

// ---------------------------------------------------------------- experiments
function niceMax(value) {
  if (!(value > 0)) return 1;
  const step = Math.pow(10, Math.floor(Math.log10(value)));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * step >= value) return m * step;
  return 10 * step;
}

// series: [{label, values: [number|null per day]}]
function lineChart(node, days, series, format) {
  node.replaceChildren();
  const W = 560, H = 240, left = 52, right = 96, top = 12, bottom = 32;
  const width = W - left - right, height = H - top - bottom;
  const all = series.flatMap((s) => s.values.filter((v) => v !== null));
  if (!days.length || !all.length) {
    node.append(svg("text", { x: W / 2, y: H / 2, "text-anchor": "middle", class: "empty" },
      "no impressions yet"));
    node.dataset.points = "0";
    return;
  }
  const ymax = niceMax(Math.max(...all));
  const x = (i) => left + (days.length === 1 ? width / 2 : (i * width) / (days.length - 1));
  const y = (v) => top + height - (v / ymax) * height;
  for (let t = 0; t <= 4; t++) {
    const v = (ymax * t) / 4;
    node.append(svg("line", { x1: left, x2: left + width, y1: y(v), y2: y(v), class: t ? "grid" : "axis" }));
    node.append(svg("text", { x: left - 6, y: y(v) + 3, "text-anchor": "end" }, format(v)));
  }
  node.append(svg("line", { x1: left, x2: left, y1: top, y2: top + height, class: "axis" }));
  const labelled = new Set([0, Math.floor((days.length - 1) / 2), days.length - 1]);
  for (const i of labelled) {
    node.append(svg("text", { x: x(i), y: top + height + 16, "text-anchor": "middle" }, days[i]));
  }
  let points = 0;
  series.forEach((s, k) => {
    const colour = COLOURS[k % COLOURS.length];
    let d = "", pen = "M";
    s.values.forEach((v, i) => {
      if (v === null) { pen = "M"; return; }
      d += `${pen}${x(i).toFixed(1)},${y(v).toFixed(1)} `;
      pen = "L";
      const dot = svg("circle", { cx: x(i), cy: y(v), r: 2.5, fill: colour, class: "point" });
      dot.append(svg("title", {}, `${s.label} ${days[i]}: ${format(v)}`));
      node.append(dot);
      points += 1;
    });
    node.append(svg("path", { d: d.trim(), stroke: colour, class: "series", "data-variant": s.label }));
    const ly = top + 10 + 16 * k;
    node.append(svg("rect", { x: left + width + 12, y: ly - 8, width: 10, height: 10, fill: colour }));
    node.append(svg("text", { x: left + width + 26, y: ly + 1 }, s.label));
  });
  node.dataset.points = String(points);
}

function drawExperiment(data) {
  const exp = data.experiment;
  const variants = exp.variants || {};
  status("experiment-status", `${exp.name}: started ${fmtTime(exp.started)}` +
    (exp.stopped ? `, stopped ${fmtTime(exp.stopped)}` : ", running") +
    `. The first variant is the control; tests treat impressions as independent.`);
  fillRows($("experiment-report").querySelector("tbody"), data.report.map((r) => [
    r.variant, String((variants[r.variant] || {}).version ?? ""),
    fmtPct((variants[r.variant] || {}).share), String(r.impressions), String(r.users),
    String(r.clicks), `${fmtPct(r.ctr)} (${fmtPct(r.ctr_low)} – ${fmtPct(r.ctr_high)})`,
    r.ctr_lift === null ? "–" : fmtPct(r.ctr_lift),
    r.p_value === null ? "–" : Number(r.p_value).toPrecision(3), String(r.conversions)]));
  const days = [...new Set(data.daily.map((d) => d.day))].sort();
  const labels = data.report.map((r) => r.variant);
  const at = new Map(data.daily.map((d) => [d.day + "\u0000" + d.variant, d]));
  const series = (field) => labels.map((label) => ({
    label, values: days.map((day) => { const d = at.get(day + "\u0000" + label); return d ? d[field] : null; }),
  }));
  lineChart($("ctr-chart"), days, series("ctr"), (v) => (100 * v).toFixed(1) + "%");
  lineChart($("traffic-chart"), days, series("impressions"), (v) => String(Math.round(v)));
}

async function loadExperiment(id) {
  try {
    drawExperiment(await getJSON(`/experiments/${encodeURIComponent(id)}`));
  } catch (err) {
    status("experiment-status", "Could not load the experiment: " + err.message, true);
  }
}

async function loadExperiments() {
  try {
    const data = await getJSON("/experiments");
    const select = $("experiment-select");
    select.replaceChildren(...data.experiments.map((e) =>
      el("option", { value: String(e.id) }, `${e.name} (#${e.id}${e.stopped ? ", stopped" : ""})`)));
    if (!data.experiments.length) {
      status("experiment-status", "No experiment yet (POST /experiments starts one).");
      lineChart($("ctr-chart"), [], [], String);
      lineChart($("traffic-chart"), [], [], String);
      return;
    }
    await loadExperiment(select.value);
  } catch (err) {
    status("experiment-status", "Could not load experiments: " + err.message, true);
  }
}
$("experiment-select").addEventListener("change", (e) => loadExperiment(e.target.value));

// ---------------------------------------------------------------- users
function explanationNode(entry) {
  if (!entry.explanation) {
    return el("div", { class: "why none" }, entry.explanation_error ? "no explanation: " + entry.explanation_error : "");
  }
  const parts = entry.explanation.contributions || [];
  const biggest = Math.max(1e-12, ...parts.map((p) => Math.abs(p.contribution)));
  return el("ul", { class: "why" }, ...parts.map((p) => el("li", {},
    el("span", { class: "bar" + (p.contribution < 0 ? " negative" : ""),
                 style: `width:${(40 * Math.abs(p.contribution)) / biggest}px` }),
    (p.label && p.label !== p.id ? `${p.label} (${p.id})` : `${p.source} ${p.id}`) +
      `: ${fmtNum(p.contribution)}`)));
}

async function loadUser(user) {
  status("user-status", "Loading…");
  try {
    const data = await getJSON(`/users/${encodeURIComponent(user)}`);
    fillRows($("user-history").querySelector("tbody"), data.history.map((h) => [
      h.label === h.item ? h.item : `${h.label} (${h.item})`, h.type, fmtNum(h.weight, 2), fmtTime(h.time)]));
    const recs = data.recommendations;
    $("user-source").textContent = recs.source ? `(${recs.source}` +
      (recs.version !== null ? `, version ${recs.version})` : ")") : "";
    $("user-recs").replaceChildren(...recs.items.map((r) => el("li", { "data-item": r.item },
      el("span", { class: "label" }, r.label === r.item ? r.item : `${r.label} (${r.item})`),
      el("span", { class: "score" }, fmtNum(r.score)), explanationNode(r))));
    status("user-status", (data.known ? "" : "Unknown user. ") +
      `${data.history.length} events shown, ${recs.items.length} recommendations` +
      (recs.error ? ` (${recs.error})` : "."), Boolean(recs.error));
  } catch (err) {
    status("user-status", "Could not load the user: " + err.message, true);
  }
}
$("user-form").addEventListener("submit", (e) => { e.preventDefault(); loadUser($("user-id").value.trim()); });

// ---------------------------------------------------------------- items
async function searchItems(q) {
  status("item-status", "Searching…");
  try {
    const data = await getJSON(`/items?q=${encodeURIComponent(q)}`);
    fillRows($("item-results").querySelector("tbody"), data.items.map((i) => [
      i.item, i.label, (i.categories || []).join(", "), i.hidden ? "hidden" : ""]));
    status("item-status", `${data.items.length} item(s) match “${data.query}”.`);
  } catch (err) {
    status("item-status", "Search failed: " + err.message, true);
  }
}
$("item-form").addEventListener("submit", (e) => { e.preventDefault(); searchItems($("item-query").value.trim()); });

function loadAll() { loadModels(); loadExperiments(); }
loadAll();
