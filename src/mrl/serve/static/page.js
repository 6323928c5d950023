// The page at /: one query, its top-k at several prefix sizes, their overlap with full D, the funnel's answer.
// Plain browser JavaScript; everything goes through the public API with the key the user types.
"use strict";

const $ = (id) => document.getElementById(id);
let info = null;

function key() { return sessionStorage.getItem("mrl-key") || ""; }

async function api(path, body) {
  const headers = { "content-type": "application/json" };
  if (key()) headers["authorization"] = "Bearer " + key();
  const res = await fetch(path, body === undefined ? { headers } : { method: "POST", headers, body: JSON.stringify(body) });
  let json = null;
  try { json = await res.json(); } catch (e) { /* not JSON */ }
  if (res.status === 401) {
    $("key-box").hidden = false;
    throw new Error("this server needs an API key: type it in the API key box, then search again.");
  }
  if (!res.ok) throw new Error((json && json.error && json.error.message) || ("HTTP " + res.status));
  return json;
}

function showError(msg) { const e = $("error"); e.textContent = msg || ""; e.hidden = !msg; }

function el(tag, cls, text) {
  const n = document.createElement(tag);
  if (cls) n.className = cls;
  if (text !== undefined) n.textContent = text;  // never innerHTML: passages are untrusted text
  return n;
}

async function loadInfo() {
  info = await api("/v1/info");
  const m = info.model, ix = info.index;
  const parts = [];
  if (m) parts.push(`model ${m.id} (D = ${m.dim}${m.is_matryoshka ? ", Matryoshka-trained" : ""}${m.adaptor ? ", with adaptor" : ""}${!m.nested ? ", not Matryoshka-trained: small prefixes are expected to be poor" : ""})`);
  if (ix) parts.push(`index of ${ix.count.toLocaleString()} vectors, funnel ${ix.funnel || ("exact " + ix.dim + ":k")}`);
  else parts.push("no index served: start with --index DIR to search");
  $("served").textContent = parts.join(" · ");
  drawQuality(info.quality);
}

function column(title, meta, res, fullIds, cls) {
  const col = el("div", "col" + (cls ? " " + cls : ""));
  col.appendChild(el("h3", "", title));
  const k = res.data[0].ids.length;
  const ids = res.data[0].ids;
  const inFull = ids.filter((i) => fullIds.has(i)).length;
  const m = el("div", "meta");
  m.appendChild(el("span", "overlap", `overlap with full: ${inFull}/${k}`));
  m.appendChild(el("span", "", " · " + meta));
  col.appendChild(m);
  const bar = el("div", "bar"); const fill = el("div"); fill.style.width = (100 * inFull / Math.max(k, 1)) + "%"; bar.appendChild(fill); col.appendChild(bar);
  const ol = el("ol", "hits");
  ids.forEach((id, j) => {
    const li = el("li", fullIds.has(id) ? "hit" : "miss");
    const texts = res.data[0].texts;
    li.appendChild(el("span", "", texts && texts[j] != null ? texts[j] : `id ${id}`));
    li.appendChild(el("span", "score", ` ${res.data[0].scores[j].toFixed(3)}`));
    ol.appendChild(li);
  });
  col.appendChild(ol);
  return col;
}

function errorColumn(title, msg) {
  const col = el("div", "col");
  col.appendChild(el("h3", "", title));
  col.appendChild(el("p", "colerr", msg));
  return col;
}

async function timed(path, body) {
  const t0 = performance.now();
  const res = await api(path, body);
  return { res, ms: performance.now() - t0 };
}

async function run(query, k) {
  if (!info) await loadInfo();
  if (!info.model) throw new Error("this server has no text model (started without --model), so it cannot encode a query.");
  if (!info.index) throw new Error("this server has no index (started without --index), so there is nothing to search.");
  const withText = !!info.index.texts;
  const emb = await timed("/v1/embeddings", { input: query, encoding_format: "float" });
  const v = emb.res.data[0].embedding;
  const D = info.index.dim;
  const dims = info.page_dims.filter((d) => d <= D);
  const perDim = [];
  for (const d of dims) {  // one at a time, so each latency is its own
    try { perDim.push({ d, ...(await timed("/v1/search", { vectors: [v], k, funnel: `${d}:${k}`, return_text: withText })) }); }
    catch (e) { perDim.push({ d, error: e.message }); }
  }
  const funnel = await timed("/v1/search", { vectors: [v], k, return_text: withText });
  const full = perDim.find((p) => p.d === D && p.res);
  const fullIds = new Set(full ? full.res.data[0].ids : []);
  const out = $("results");
  out.replaceChildren();
  for (const p of perDim) {
    const title = p.d === D ? `full (${D} dims)` : `${p.d} dims`;
    if (p.error) { out.appendChild(errorColumn(title, p.error)); continue; }
    out.appendChild(column(title, `exact ${p.d}:${k}, ${p.res.timings.search_ms.toFixed(2)} ms search`, p.res, fullIds));
  }
  const f = funnel.res;
  let recall = "";
  if (f.expected_recall != null) {  // measured by the tuner at recall_measured_at_k results, which may differ from this k
    const at = f.recall_measured_at_k;
    recall = `, tuned recall@${at != null ? at : "?"} ${f.expected_recall.toFixed(3)}` + (at != null && at !== k ? ` (measured at k=${at}, not at this k=${k})` : "");
  }
  const meta = `${f.funnel} (${f.chosen_by}${recall}), ` +
    `${f.timings.search_ms.toFixed(2)} ms search, ${funnel.ms.toFixed(1)} ms round trip; query encoded in ${emb.ms.toFixed(1)} ms`;
  out.appendChild(column("funnel answer", meta, f, fullIds, "funnel"));
}

function drawQuality(q) {
  if (!q || !q.curves || !q.curves.length) return;
  $("quality-box").hidden = false;
  $("quality-note").textContent = `${q.metric} per prefix size (log scale), from ${q.source}`;
  const W = 640, H = 300, L = 50, R = 160, T = 15, B = 40;
  const pts = q.curves.flatMap((c) => c.points);
  const xs = pts.map((p) => Math.log2(p[0])), ys = pts.map((p) => p[1]);
  const x0 = Math.min(...xs), x1 = Math.max(...xs) || 1, y0 = Math.min(0, Math.min(...ys)), y1 = Math.max(...ys) || 1;
  const sx = (x) => L + (W - L - R) * (x - x0) / Math.max(x1 - x0, 1e-9);
  const sy = (y) => H - B - (H - T - B) * (y - y0) / Math.max(y1 - y0, 1e-9);
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("width", W); svg.setAttribute("height", H); svg.setAttribute("role", "img");
  const add = (tag, attrs, text) => { const n = document.createElementNS(ns, tag); for (const [a, b] of Object.entries(attrs)) n.setAttribute(a, b); if (text) n.textContent = text; svg.appendChild(n); return n; };
  add("line", { x1: L, y1: H - B, x2: W - R, y2: H - B, stroke: "#888" });
  add("line", { x1: L, y1: T, x2: L, y2: H - B, stroke: "#888" });
  const dims = [...new Set(pts.map((p) => p[0]))].sort((a, b) => a - b);
  dims.forEach((d) => add("text", { x: sx(Math.log2(d)), y: H - B + 16, "text-anchor": "middle", "font-size": 11 }, String(d)));
  add("text", { x: (L + W - R) / 2, y: H - 5, "text-anchor": "middle", "font-size": 12 }, "dims");
  [y0, (y0 + y1) / 2, y1].forEach((y) => add("text", { x: L - 6, y: sy(y) + 4, "text-anchor": "end", "font-size": 11 }, y.toFixed(2)));
  const colors = ["#2457c5", "#2f9e5b", "#c5472f", "#8a4fc5", "#c59a24", "#333"];
  q.curves.forEach((c, i) => {
    const col = colors[i % colors.length];
    add("polyline", { points: c.points.map((p) => `${sx(Math.log2(p[0]))},${sy(p[1])}`).join(" "), fill: "none", stroke: col, "stroke-width": 2 });
    add("text", { x: W - R + 8, y: T + 14 + 16 * i, fill: col, "font-size": 12 }, c.label);
  });
  $("quality").replaceChildren(svg);
}

$("apikey").addEventListener("change", (e) => { sessionStorage.setItem("mrl-key", e.target.value); info = null; });
$("search-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  const q = $("query").value.trim();
  const k = Math.max(1, Math.min(100, parseInt($("k").value, 10) || 10));
  if (!q) return;
  $("go").disabled = true;
  showError("");
  try { await run(q, k); } catch (err) { showError(err.message); } finally { $("go").disabled = false; }
});
loadInfo().catch((err) => showError(err.message));
