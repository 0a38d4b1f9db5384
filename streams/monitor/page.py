"""The monitor's page: one HTML document with its own script and inline SVG (no CDN, no files).

The script fetches ``/api/series`` every ``poll_ms`` and redraws one SVG per panel: a polyline and
a circle per point for each series (``circle.pt``, with ``data-series`` and ``data-batch``), the
axes' range, a dashed reference line where the panel has one (the budget's limit), and a legend.
``<body data-batches=N>`` says how many batches the last draw showed, for a headless browser's
DOM dump.
"""

from __future__ import annotations

import html

PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>banditlp monitor</title>
<style>
body { font-family: sans-serif; margin: 16px; background: #fff; color: #222; }
h1 { font-size: 20px; margin: 0 0 4px 0; }
#status { color: #666; font-size: 13px; margin-bottom: 12px; }
#plots { display: grid; grid-template-columns: repeat(auto-fill, minmax(560px, 1fr)); gap: 14px; }
.panel { border: 1px solid #ddd; border-radius: 4px; padding: 8px; }
.panel h2 { font-size: 14px; margin: 0 0 4px 0; }
.legend { font-size: 12px; } .legend span { margin-right: 12px; white-space: nowrap; }
.legend i { display: inline-block; width: 12px; height: 3px; margin-right: 4px; vertical-align: middle; }
svg text { font-size: 11px; fill: #555; }
</style></head>
<body data-batches="0">
<h1>banditlp monitor</h1>
<div id="status">waiting for allocation reports on __SOURCE__</div>
<div id="plots"></div>
<script>
"use strict";
const POLL_MS = __POLL_MS__;
const COLOURS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
                 "#bcbd22", "#17becf"];
const W = 540, H = 220, L = 56, R = 10, T = 10, B = 28;
const NS = "http://www.w3.org/2000/svg";

function el(name, attrs, parent) {
  const node = document.createElementNS(NS, name);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  if (parent) parent.appendChild(node);
  return node;
}

function fmt(v) {
  const a = Math.abs(v);
  return (a !== 0 && (a < 0.01 || a >= 1e5)) ? v.toExponential(2) : v.toPrecision(3);
}

function panel(p, batches) {
  const box = document.createElement("div");
  box.className = "panel";
  const h = document.createElement("h2");
  h.textContent = p.title + " (" + p.unit + ")";
  box.appendChild(h);
  const names = Object.keys(p.series);
  const values = names.flatMap(n => p.series[n].filter(v => v !== null));
  if (p.ref !== null && p.ref !== undefined) values.push(p.ref);
  let lo = Math.min(...values), hi = Math.max(...values);
  if (!isFinite(lo)) { lo = 0; hi = 1; }
  if (hi === lo) { hi = lo + (Math.abs(lo) || 1) * 0.5; lo = lo - (hi - lo); }
  const n = batches.length;
  const x = i => L + (n > 1 ? i * (W - L - R) / (n - 1) : (W - L - R) / 2);
  const y = v => T + (hi - v) * (H - T - B) / (hi - lo);
  const svg = el("svg", {class: "plot", width: W, height: H, viewBox: `0 0 ${W} ${H}`,
                          "data-title": p.title}, box);
  el("rect", {x: L, y: T, width: W - L - R, height: H - T - B, fill: "#fafafa", stroke: "#ccc"}, svg);
  for (const v of [lo, (lo + hi) / 2, hi]) {
    el("line", {x1: L, x2: W - R, y1: y(v), y2: y(v), stroke: "#e5e5e5"}, svg);
    el("text", {x: L - 4, y: y(v) + 4, "text-anchor": "end"}, svg).textContent = fmt(v);
  }
  if (p.ref !== null && p.ref !== undefined) {
    el("line", {class: "ref", x1: L, x2: W - R, y1: y(p.ref), y2: y(p.ref), stroke: "#d62728",
                "stroke-dasharray": "4 3"}, svg);
  }
  el("text", {x: L, y: H - 8}, svg).textContent = n ? batches[0] : "";
  el("text", {x: W - R, y: H - 8, "text-anchor": "end"}, svg).textContent = n ? batches[n - 1] : "";
  const legend = document.createElement("div");
  legend.className = "legend";
  names.forEach((name, k) => {
    const colour = COLOURS[k % COLOURS.length];
    const pts = p.series[name].map((v, i) => [i, v]).filter(([, v]) => v !== null);
    el("polyline", {class: "line", "data-series": name, fill: "none", stroke: colour, "stroke-width": 2,
                    points: pts.map(([i, v]) => `${x(i)},${y(v)}`).join(" ")}, svg);
    for (const [i, v] of pts) {
      const c = el("circle", {class: "pt", cx: x(i), cy: y(v), r: 3, fill: colour,
                              "data-series": name, "data-batch": batches[i]}, svg);
      el("title", {}, c).textContent = `${name} @ ${batches[i]}: ${v}`;
    }
    const item = document.createElement("span");
    item.innerHTML = `<i style="background:${colour}"></i>`;
    item.appendChild(document.createTextNode(name));
    legend.appendChild(item);
  });
  box.appendChild(legend);
  return box;
}

function draw(data) {
  const plots = document.getElementById("plots");
  plots.replaceChildren(...data.panels.map(p => panel(p, data.batches)));
  document.body.dataset.batches = String(data.batches.length);
  document.getElementById("status").textContent =
    `${data.batches.length} batches; last ${data.batches[data.batches.length - 1] || "-"}; ` +
    `updated ${new Date().toLocaleTimeString()}`;
}

async function poll() {
  try {
    const response = await fetch("api/series", {cache: "no-store"});
    if (response.ok) draw(await response.json());
  } catch (e) {
    document.getElementById("status").textContent = "monitor unreachable: " + e;
  }
  setTimeout(poll, POLL_MS);
}
poll();
</script>
</body></html>
"""


def render_page(source: str, poll_ms: int) -> str:
    """The page, naming ``source`` (the topics it follows) and polling every ``poll_ms``."""
    return PAGE.replace("__SOURCE__", html.escape(source)).replace("__POLL_MS__", str(int(poll_ms)))
