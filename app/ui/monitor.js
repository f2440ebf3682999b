// The monitor page: the uncertainty histograms of /metrics per model, refreshed every few seconds.

import { bindKeyForm, call } from "./api.js";
import { bucketBars, fmt, h } from "./charts.js";

const $ = (id) => document.getElementById(id);
const FAMILIES = {
  mcdrop_predictive_entropy: "Predictive entropy (nats)",
  mcdrop_mutual_information: "Mutual information (nats)",
  mcdrop_regression_std: "Regression std",
};
let timer = null;
let paused = false;

/** Samples of the Prometheus text format: [{name, labels, value}]. */
export function parseMetrics(text) {
  const samples = [];
  for (const line of text.split("\n")) {
    const match = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})?\s+(\S+)/.exec(line);
    if (!match || line.startsWith("#")) continue;
    const labels = {};
    for (const [, key, value] of (match[2] ?? "").matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) labels[key] = value.replace(/\\(.)/g, (_, c) => (c === "n" ? "\n" : c));
    samples.push({ name: match[1], labels, value: Number(match[3]) });
  }
  return samples;
}

/** {family: {model: {bounds, counts, count, sum}}} from the `_bucket`, `_count`, `_sum` samples. */
export function histograms(samples) {
  const out = {};
  for (const { name, labels, value } of samples) {
    const family = Object.keys(FAMILIES).find((f) => name.startsWith(`${f}_`));
    if (!family || !labels.model) continue;
    const entry = ((out[family] ??= {})[labels.model] ??= { cumulative: [], count: 0, sum: 0 });
    if (name.endsWith("_bucket")) entry.cumulative.push([labels.le === "+Inf" ? Infinity : Number(labels.le), value]);
    else if (name.endsWith("_count")) entry.count = value;
    else if (name.endsWith("_sum")) entry.sum = value;
  }
  for (const models of Object.values(out)) {
    for (const entry of Object.values(models)) {
      entry.cumulative.sort((a, b) => a[0] - b[0]);
      entry.bounds = entry.cumulative.map(([bound]) => bound);
      entry.counts = entry.cumulative.map(([, c], i) => c - (i ? entry.cumulative[i - 1][1] : 0));
    }
  }
  return out;
}

function render(found) {
  const models = [...new Set(Object.values(found).flatMap((byModel) => Object.keys(byModel)))].sort();
  if (!models.length) {
    $("panels").replaceChildren(h("p", {}, "No predictions yet: uncertainty appears here once a model answers."));
    return;
  }
  $("panels").replaceChildren(...models.map((model) => h("section", { class: "panel", "data-model": model, "aria-label": model },
    h("h3", {}, model),
    h("div", { class: "compare" }, ...Object.entries(FAMILIES).filter(([family]) => found[family]?.[model]?.count).map(([family, title]) => {
      const entry = found[family][model];
      return h("figure", { class: "chart", "data-family": family, "data-count": String(entry.count) },
        bucketBars({ bounds: entry.bounds, counts: entry.counts, title: `${model} ${title}`, xLabel: title }),
        h("figcaption", {}, `${title}: ${entry.count} rows, mean ${fmt(entry.sum / entry.count, 3)}`));
    })))));
}

async function refresh() {
  clearTimeout(timer);
  const status = $("monitor-status");
  try {
    render(histograms(parseMetrics(await call("/metrics", { text: true }))));
    status.textContent = `Updated ${new Date().toLocaleTimeString()}`;
  } catch (error) {
    status.textContent = error.message;
  }
  if (!paused) timer = setTimeout(refresh, Number($("every").value) * 1000);
}

$("every").addEventListener("change", refresh);
$("pause").addEventListener("click", () => {
  paused = !paused;
  $("pause").setAttribute("aria-pressed", String(paused));
  $("pause").textContent = paused ? "Resume" : "Pause";
  if (!paused) refresh();
  else clearTimeout(timer);
});
bindKeyForm($("key-form"), $("api-key"), refresh);
refresh();
