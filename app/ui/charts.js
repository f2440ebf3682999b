// Small SVG charts: probability bars with interval whiskers, histograms, a predictive density.
// Each returns an <svg role="img"> whose aria-label states what it shows in words.

const SVG = "http://www.w3.org/2000/svg";
const W = 520;
const H = 220;
const M = { left: 48, right: 14, top: 24, bottom: 38 };
const MAX_BARS = 12;

/** An SVG element with attributes and children. */
export function s(tag, attrs = {}, ...children) {
  const node = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, value);
  for (const child of children) node.append(child);
  return node;
}

/** An HTML element with attributes and children (strings become text). */
export function h(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === false || value === null || value === undefined) continue;
    node.setAttribute(name, value === true ? "" : value);
  }
  for (const child of children) if (child !== null && child !== undefined) node.append(child);
  return node;
}

export function fmt(value, digits = 4) {
  return Number.isFinite(value) ? value.toFixed(digits) : String(value);
}

function frame(label, height = H) {
  return s("svg", { viewBox: `0 0 ${W} ${height}`, role: "img", "aria-label": label });
}

function scale(d0, d1, r0, r1) {
  const span = d1 - d0 || 1;
  return (v) => r0 + ((v - d0) / span) * (r1 - r0);
}

/** About `count` round tick values covering [lo, hi]. */
export function ticks(lo, hi, count = 5) {
  const span = hi - lo;
  if (!(span > 0)) return [lo];
  const raw = span / count;
  const power = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * power).find((m) => m >= raw);
  const out = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) out.push(+v.toPrecision(12));
  return out;
}

function axes(svg, x, y, xTicks, yTicks, xLabel, yLabel, height = H) {
  const base = height - M.bottom;
  svg.append(s("line", { class: "axis", x1: M.left, x2: W - M.right, y1: base, y2: base }));
  svg.append(s("line", { class: "axis", x1: M.left, x2: M.left, y1: M.top, y2: base }));
  for (const t of yTicks) {
    svg.append(s("line", { class: "grid", x1: M.left, x2: W - M.right, y1: y(t), y2: y(t) }));
    svg.append(s("text", { class: "tick", x: M.left - 6, y: y(t) + 4, "text-anchor": "end" }, tickText(t)));
  }
  for (const [at, text] of xTicks) {
    svg.append(s("text", { class: "tick", x: x(at), y: base + 16, "text-anchor": "middle" }, text));
  }
  if (xLabel) svg.append(s("text", { class: "label", x: (M.left + W - M.right) / 2, y: height - 4, "text-anchor": "middle" }, xLabel));
  if (yLabel) svg.append(s("text", { class: "label", x: 4, y: 11, "text-anchor": "start" }, yLabel));
}

function tickText(v) {
  return Math.abs(v) >= 1000 || (Math.abs(v) < 0.01 && v !== 0) ? v.toPrecision(2) : String(+v.toFixed(3));
}

/** The classes to draw: all, or the MAX_BARS most probable (in class order). */
function shownClasses(mean) {
  const all = mean.map((_, i) => i);
  if (all.length <= MAX_BARS) return all;
  return all.sort((a, b) => mean[b] - mean[a]).slice(0, MAX_BARS).sort((a, b) => a - b);
}

/** Mean probability per class as bars, [lower, upper] as whiskers (omitted when absent). */
export function probabilityBars({ labels, mean, lower, upper, highlight, title }) {
  const shown = shownClasses(mean);
  const best = highlight ?? mean.indexOf(Math.max(...mean));
  const summary = `${title}: ${labels[best]} most probable at ${fmt(mean[best], 3)}` +
    (lower ? `, interval ${fmt(lower[best], 3)} to ${fmt(upper[best], 3)}` : "");
  const svg = frame(summary);
  const band = (W - M.left - M.right) / shown.length;
  const x = (i) => M.left + band * (i + 0.5);
  const y = scale(0, 1, H - M.bottom, M.top);
  axes(svg, x, y, shown.map((c, i) => [i, labels[c]]), [0, 0.25, 0.5, 0.75, 1], "class", "probability");
  shown.forEach((c, i) => {
    const width = band * 0.6;
    svg.append(s("rect", {
      class: c === best ? "bar best" : "bar",
      x: x(i) - width / 2, y: y(mean[c]), width, height: Math.max(0, y(0) - y(mean[c])),
    }, s("title", {}, `${labels[c]}: ${fmt(mean[c])}`)));
    if (lower) {
      const cap = width / 4;
      svg.append(s("path", {
        class: "whisker",
        d: `M${x(i)},${y(lower[c])}V${y(upper[c])}M${x(i) - cap},${y(lower[c])}h${2 * cap}M${x(i) - cap},${y(upper[c])}h${2 * cap}`,
      }));
    }
  });
  return svg;
}

/** Counts of `values` in `bins` equal bins over [lo, hi]. */
export function binCounts(values, lo, hi, bins) {
  const counts = new Array(bins).fill(0);
  const width = (hi - lo) / bins || 1;
  for (const v of values) counts[Math.min(bins - 1, Math.max(0, Math.floor((v - lo) / width)))] += 1;
  return counts;
}

/** A histogram of `values` over [lo, hi]; `marks` draws labelled vertical lines. */
export function histogram(values, { lo, hi, bins = 20, title, xLabel, marks = [] }) {
  if (!(hi > lo)) [lo, hi] = [lo - 0.5, hi + 0.5];
  const counts = binCounts(values, lo, hi, bins);
  const top = Math.max(1, ...counts);
  const svg = frame(`${title}: ${values.length} passes between ${fmt(Math.min(...values), 3)} and ${fmt(Math.max(...values), 3)}`);
  const x = scale(lo, hi, M.left, W - M.right);
  const y = scale(0, top, H - M.bottom, M.top);
  const xt = ticks(lo, hi, 5).map((t) => [t, tickText(t)]);
  axes(svg, x, y, xt, ticks(0, top, 4).filter(Number.isInteger), xLabel, "passes");
  const width = (x(hi) - x(lo)) / bins;
  counts.forEach((count, i) => {
    if (!count) return;
    svg.append(s("rect", { class: "bar", x: x(lo) + i * width + 0.5, y: y(count), width: Math.max(1, width - 1), height: y(0) - y(count) },
      s("title", {}, `${count} passes`)));
  });
  for (const mark of marks) drawMark(svg, x(mark.at), mark.text, mark.cls);
  return svg;
}

function drawMark(svg, at, text, cls = "mark") {
  svg.append(s("line", { class: cls, x1: at, x2: at, y1: M.top, y2: H - M.bottom }));
  if (text) svg.append(s("text", { class: "tick", x: at + 3, y: M.top - 4 }, text));
}

/** Density of the equal-weight Gaussian mixture of `centres` with common `variance`, on `xs`. */
export function mixtureDensity(xs, centres, variance) {
  const sd = Math.sqrt(variance);
  const norm = 1 / (Math.sqrt(2 * Math.PI) * sd * centres.length);
  return xs.map((x) => {
    let total = 0;
    for (const c of centres) total += Math.exp(-0.5 * ((x - c) / sd) ** 2);
    return total * norm;
  });
}

/** The predictive density (a mixture of one Gaussian per pass) with the mean interval (ci),
 * the predictive interval (pi) and, when given, the conformal band ({lower, upper, level})
 * drawn; `domain` fixes the x range so two views compare. */
export function densityChart({ centres, variance, ci, pi, conformal, mean, domain, title, xLabel }) {
  const [lo, hi] = domain;
  const xs = Array.from({ length: 201 }, (_, i) => lo + ((hi - lo) * i) / 200);
  const ys = mixtureDensity(xs, centres, variance);
  const top = Math.max(...ys) * 1.1;
  const band = conformal ? `${fmt(conformal.level * 100, 0)}% conformal band ${fmt(conformal.lower, 2)} to ${fmt(conformal.upper, 2)}` : "";
  const label = `${title}: mean ${fmt(mean, 2)}` + (ci ? `, mean interval ${fmt(ci[0], 2)} to ${fmt(ci[1], 2)}` : "") +
    `, predictive interval ${fmt(pi[0], 2)} to ${fmt(pi[1], 2)}` + (band ? `, ${band}` : "");
  const svg = frame(label);
  const x = scale(lo, hi, M.left, W - M.right);
  const y = scale(0, top, H - M.bottom, M.top);
  axes(svg, x, y, ticks(lo, hi, 6).map((t) => [t, tickText(t)]), [], xLabel, "density");
  svg.append(s("rect", { class: "pi", x: x(pi[0]), y: M.top, width: Math.max(1, x(pi[1]) - x(pi[0])), height: H - M.bottom - M.top },
    s("title", {}, `predictive interval ${fmt(pi[0], 2)} to ${fmt(pi[1], 2)}`)));
  const line = xs.map((v, i) => `${i ? "L" : "M"}${x(v).toFixed(1)},${y(ys[i]).toFixed(1)}`).join("");
  svg.append(s("path", { class: "area", d: `${line}L${x(hi)},${y(0)}L${x(lo)},${y(0)}Z` }));
  svg.append(s("path", { class: "density", d: line }));
  if (conformal) {
    svg.append(s("rect", {
      class: "conformal", x: x(conformal.lower), y: M.top + 2, width: Math.max(1, x(conformal.upper) - x(conformal.lower)),
      height: H - M.bottom - M.top - 2, "data-lower": conformal.lower, "data-upper": conformal.upper,
    }, s("title", {}, band)));
  }
  if (ci) {
    svg.append(s("rect", { class: "ci", x: x(ci[0]), y: H - M.bottom - 10, width: Math.max(2, x(ci[1]) - x(ci[0])), height: 10 },
      s("title", {}, `mean interval ${fmt(ci[0], 2)} to ${fmt(ci[1], 2)}`)));
  }
  for (const c of centres.length <= 400 ? centres : []) {
    svg.append(s("line", { class: "rug", x1: x(c), x2: x(c), y1: H - M.bottom, y2: H - M.bottom + 5 }));
  }
  drawMark(svg, x(mean), "mean");
  return svg;
}

/** A stacked bar: expected entropy (aleatoric) + mutual information (epistemic) = total. */
export function entropySplit({ expected, mutual, total, max }) {
  const width = 100 / (max || 1);
  return h("div", { class: "split", role: "img",
    "aria-label": `predictive entropy ${fmt(total)} = expected entropy ${fmt(expected)} + mutual information ${fmt(mutual)} (of at most ${fmt(max)})` },
  h("span", { class: "aleatoric", style: `width:${Math.min(100, expected * width)}%` }),
  h("span", { class: "epistemic", style: `width:${Math.min(100, mutual * width)}%` }));
}

/** A Prometheus histogram: one bar per bucket (`bounds` are the upper bounds, the last +Inf). */
export function bucketBars({ bounds, counts, title, xLabel }) {
  const total = counts.reduce((a, b) => a + b, 0);
  const top = Math.max(1, ...counts);
  const svg = frame(`${title}: ${total} rows in ${counts.filter((c) => c).length} of ${counts.length} buckets`);
  const band = (W - M.left - M.right) / counts.length;
  const x = (i) => M.left + band * (i + 0.5);
  const y = scale(0, top, H - M.bottom, M.top);
  const labels = bounds.map((b) => (b === Infinity ? "+Inf" : tickText(b)));
  axes(svg, x, y, labels.map((label, i) => [i, label]), ticks(0, top, 4).filter(Number.isInteger), `${xLabel}, bucket upper bound`, "rows");
  counts.forEach((count, i) => {
    svg.append(s("rect", { class: "bar", x: x(i) - band * 0.4, y: y(count), width: band * 0.8, height: y(0) - y(count) },
      s("title", {}, `up to ${labels[i]}: ${count} rows`)));
  });
  return svg;
}
