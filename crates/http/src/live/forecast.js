// callgate's live page: today's forecast against the arrivals so far, and the reserve of
// the intervals ahead, as one SVG per pool whose reserve follows the forecast (from
// GET /v1/forecast/today). Loaded before live.js, which calls forecastChart().
// Every text from the server is set with textContent; numbers are checked before use.
"use strict";

const SVG = "http://www.w3.org/2000/svg";

function svg(tag, attrs, ...children) {
  const n = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) n.setAttribute(k, String(v));
  for (const c of children) if (c !== null && c !== undefined) n.append(c);
  return n;
}

function svgText(x, y, text, attrs) {
  const t = svg("text", Object.assign({ x, y }, attrs || {}));
  t.textContent = text;
  return t;
}

function utcHHMM(ms) {
  return new Date(ms).toISOString().slice(11, 16);
}

// The chart of one pool's day: the forecast's band and line, the arrivals counted so far as
// bars, a line at the server's now, and below a strip with the reserve held back from the
// interval in force on (a step line, its own scale). `now` is the server's time (ms).
function forecastChart(view, now) {
  const rows = Array.isArray(view.intervals) ? view.intervals : [];
  const W = 760, H = 150, STRIP = 46, LEFT = 34, RIGHT = 8, TOP = 8, AXIS = 16;
  const n = Math.max(rows.length, 1);
  const step = (W - LEFT - RIGHT) / n;
  const x = (i) => LEFT + i * step;
  const num = (v) => (typeof v === "number" && Number.isFinite(v) ? v : null);
  let top = 1;
  for (const r of rows) top = Math.max(top, num(r.high) || 0, num(r.arrivals) || 0, num(r.actual) || 0);
  top = Math.ceil(top * 1.1);
  const y = (v) => TOP + (H - TOP - AXIS) * (1 - v / top);
  const root = svg("svg", {
    viewBox: `0 0 ${W} ${H + STRIP}`,
    class: "forecast-chart",
    role: "img",
    "data-forecast-chart": view.pool,
    "aria-label": `${view.pool}: forecast against arrivals today`,
  });
  // Grid: every three hours, and the scale.
  for (let h = 0; h <= 24; h += 3) {
    const gx = x(h * 4);
    root.append(svg("line", { x1: gx, x2: gx, y1: TOP, y2: H + STRIP - 12, class: "grid" }));
    if (h < 24) root.append(svgText(gx + 2, H - 3, String(h).padStart(2, "0") + ":00", { class: "axis" }));
  }
  root.append(svgText(2, TOP + 8, String(top), { class: "axis" }));
  root.append(svgText(2, H - AXIS, "0", { class: "axis" }));

  // The band (high along, low back) and the forecast line, where there is a forecast.
  const fc = rows.map((r, i) => [i, num(r.arrivals), num(r.low), num(r.high)]).filter(([, a, l, h]) => a !== null && l !== null && h !== null);
  if (fc.length) {
    const mid = (i) => x(i) + step / 2;
    const upper = fc.map(([i, , , h]) => `${mid(i).toFixed(1)},${y(h).toFixed(1)}`);
    const lower = fc.slice().reverse().map(([i, , l]) => `${mid(i).toFixed(1)},${y(l).toFixed(1)}`);
    root.append(svg("polygon", { points: upper.concat(lower).join(" "), class: "band", "data-band-points": upper.length + lower.length }));
    root.append(svg("polyline", { points: fc.map(([i, a]) => `${mid(i).toFixed(1)},${y(a).toFixed(1)}`).join(" "), class: "forecast" }));
  }
  // The arrivals so far.
  let actual = 0, forecastSoFar = 0;
  rows.forEach((r, i) => {
    const a = num(r.actual);
    if (a === null) return;
    actual += a;
    forecastSoFar += num(r.arrivals) || 0;
    const bar = svg("rect", {
      x: (x(i) + 0.5).toFixed(1),
      y: y(a).toFixed(1),
      width: Math.max(step - 1, 0.5).toFixed(1),
      height: Math.max(y(0) - y(a), 0).toFixed(1),
      class: "actual",
      "data-start": r.start_ms,
      "data-actual": a,
    });
    const f = num(r.arrivals);
    bar.append(svg("title", {}));
    bar.lastChild.textContent =
      `${utcHHMM(r.start_ms)}: ${a} arrived` + (f === null ? "" : `, forecast ${f} (${r.low}–${r.high})`);
    root.append(bar);
  });
  // Now.
  const start = num(view.start_ms) || 0;
  const nowX = LEFT + ((now - start) / (15 * 60 * 1000)) * step;
  if (nowX >= LEFT && nowX <= W - RIGHT) root.append(svg("line", { x1: nowX, x2: nowX, y1: TOP, y2: H + STRIP - 12, class: "now" }));

  // The reserve ahead, as a step line on its own scale.
  const res = rows.map((r, i) => [i, num(r.reserve), r]).filter(([, u]) => u !== null);
  const strip = (v, most) => H + 6 + (STRIP - 20) * (1 - v / Math.max(most, 1));
  root.append(svgText(2, H + 14, "reserve", { class: "axis" }));
  if (res.length) {
    const most = Math.max(...res.map(([, u]) => u));
    const pts = [];
    for (const [i, u] of res) pts.push(`${x(i).toFixed(1)},${strip(u, most).toFixed(1)}`, `${(x(i) + step).toFixed(1)},${strip(u, most).toFixed(1)}`);
    root.append(svg("polyline", { points: pts.join(" "), class: "reserve", "data-reserve": res.map(([, u]) => u).join(",") }));
    // The value at each change.
    let last = null;
    for (const [i, u, r] of res) {
      if (u !== last) root.append(svgText(x(i) + 1, strip(u, most) - 2, String(u), { class: "reserve-label", "data-reserve-at": r.start_ms }));
      last = u;
    }
  }

  const caption = document.createElement("div");
  caption.className = "forecast-caption";
  caption.dataset.forecastSummary = view.pool;
  caption.dataset.actual = String(actual);
  caption.textContent =
    `${view.pool} · ${view.class} · ${view.date} (UTC): ${actual} arrived so far` +
    (fc.length ? `, ${forecastSoFar.toFixed(0)} forecast for the same intervals` : "") +
    (view.note ? ` · ${view.note}` : "");
  const legend = document.createElement("div");
  legend.className = "forecast-legend";
  legend.textContent = `forecast with its ${Math.round((num(view.level) || 0.8) * 100)}% band · bars: arrivals per 15 min · lower strip: lines held back for inbound`;
  const box = document.createElement("div");
  box.className = "forecast-day";
  box.append(caption, root, legend);
  return box;
}
