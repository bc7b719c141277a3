// A small SVG line chart of rates over the last minutes: no library, no network, a few dozen lines.

const NS = "http://www.w3.org/2000/svg";
const WIDTH = 640;
const HEIGHT = 180;
const PAD = { left: 48, right: 12, top: 12, bottom: 24 };
export const COLORS = { published: "#2f6fdf", delivered: "#e08a1e", acked: "#2a9d58", nacked: "#b34fc4", dead_lettered: "#d64545" };

function el(tag, attrs, text) {
  const node = document.createElementNS(NS, tag);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, value);
  if (text !== undefined) node.textContent = text;
  return node;
}

function niceMax(value) {
  if (value <= 0) return 1;
  const power = 10 ** Math.floor(Math.log10(value));
  const step = [1, 2, 5, 10].find((s) => s * power >= value);
  return step * power;
}

// series: [{name, points: [[t, value], ...]}]; draws the last `windowMs` up to `now`.
export function drawChart(svg, series, { windowMs = 5 * 60 * 1000, now = Date.now() } = {}) {
  svg.replaceChildren();
  svg.setAttribute("viewBox", `0 0 ${WIDTH} ${HEIGHT}`);
  svg.setAttribute("role", "img");
  const start = now - windowMs;
  const top = niceMax(Math.max(0, ...series.flatMap((s) => s.points.filter(([t]) => t >= start).map(([, v]) => v))));
  const x = (t) => PAD.left + ((t - start) / windowMs) * (WIDTH - PAD.left - PAD.right);
  const y = (v) => HEIGHT - PAD.bottom - (v / top) * (HEIGHT - PAD.top - PAD.bottom);
  for (const fraction of [0, 0.5, 1]) {
    const value = top * fraction;
    svg.append(el("line", { x1: PAD.left, x2: WIDTH - PAD.right, y1: y(value), y2: y(value), class: "grid" }));
    svg.append(el("text", { x: PAD.left - 6, y: y(value) + 4, "text-anchor": "end", class: "axis" }, `${+value.toPrecision(3)}/s`));
  }
  const minutes = Math.round(windowMs / 60000);
  svg.append(el("text", { x: PAD.left, y: HEIGHT - 6, class: "axis" }, `-${minutes} min`));
  svg.append(el("text", { x: WIDTH - PAD.right, y: HEIGHT - 6, "text-anchor": "end", class: "axis" }, "now"));
  for (const { name, points } of series) {
    const shown = points.filter(([t]) => t >= start);
    if (shown.length === 0) continue;
    const path = shown.map(([t, v], i) => `${i ? "L" : "M"}${x(t).toFixed(1)},${y(v).toFixed(1)}`).join(" ");
    svg.append(el("path", { d: path, fill: "none", stroke: COLORS[name] || "#555", "stroke-width": 2, "data-series": name }));
  }
}

export function legend(names) {
  const box = document.createElement("div");
  box.className = "legend";
  for (const name of names) {
    const item = document.createElement("span");
    const swatch = document.createElement("i");
    swatch.style.background = COLORS[name];
    item.append(swatch, document.createTextNode(`${name.replace("_", " ")}/s`));
    box.append(item);
  }
  return box;
}
