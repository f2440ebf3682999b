// The try-a-model page: model list and card, an input widget from the card, N passes vs one.

import { bindKeyForm, call } from "./api.js";
import { densityChart, entropySplit, fmt, h, histogram, probabilityBars } from "./charts.js";
import { buildInput } from "./inputs.js";
import { bindReferral } from "./referral.js";
import { renderSegmentation } from "./segmentation.js";
import { renderMultilabel, renderTokens } from "./tasks.js";

const $ = (id) => document.getElementById(id);
const state = { info: null, hints: null, widget: null, many: null, one: null, row: null, view: {} };

async function loadModels() {
  const status = $("models-status");
  status.textContent = "Loading models…";
  try {
    const { models } = await call("/v1/models");
    renderModelList(models);
    status.textContent = `${models.length} model${models.length === 1 ? "" : "s"}`;
    performance.mark("mcdrop-models-rendered");
    const wanted = decodeURIComponent(location.hash.slice(1));
    const first = models.find((m) => m.ready && m.name === wanted) ?? models.find((m) => m.ready);
    if (first) await selectModel(first.name);
  } catch (error) {
    status.textContent = error.message;
  }
}

function renderModelList(models) {
  $("model-list").replaceChildren(...models.map((model) => {
    const button = h("button", { type: "button", class: "model-button", "data-model": model.name, "aria-pressed": "false", disabled: !model.ready },
      h("strong", {}, model.name), " ", h("span", { class: "tag" }, model.ready ? model.task : "not ready"),
      h("span", { class: "desc" }, model.ready ? model.description || "" : model.error || ""));
    button.addEventListener("click", () => selectModel(model.name));
    return h("li", {}, button);
  }));
}

async function selectModel(name) {
  const path = encodeURIComponent(name);
  try {
    const [info, hints] = await Promise.all([call(`/v1/models/${path}`), call(`/ui/models/${path}/card`)]);
    Object.assign(state, { info, hints, widget: buildInput({ ...info.input, formats: hints.input?.formats }, info.feature_names), many: null, one: null, row: null, view: {} });
  } catch (error) {
    $("models-status").textContent = error.message;
    return;
  }
  for (const button of document.querySelectorAll(".model-button")) {
    button.setAttribute("aria-pressed", String(button.dataset.model === name));
  }
  history.replaceState(null, "", `#${path}`);
  $("card-title").textContent = name;
  $("card").replaceChildren(...cardEntries(state.info, state.hints).flatMap(([term, value]) => [h("dt", {}, term), h("dd", {}, value)]));
  $("input-widget").replaceChildren(state.widget.node);
  const n = $("n-samples");
  n.value = state.info.default_n_samples;
  n.max = state.info.max_n_samples;
  $("model-section").hidden = false;
  $("result").hidden = true;
  $("predict-status").textContent = "";
  $("referral-charts").replaceChildren();
  $("referral-status").textContent = "";
}

function cardEntries(info, hints) {
  const entries = [
    ["Task", info.task], ["Version", info.version], ["Description", info.description || "—"],
    ["Input", `${info.input.kind}: ${info.input.summary}` +
      (hints.value_range ? `, values ${hints.value_range[0]}…${hints.value_range[1]}` : "")],
    ["Output", info.labels ? `${info.labels.length} classes: ${info.labels.slice(0, 12).join(", ")}${info.labels.length > 12 ? ", …" : ""}`
      : `shape [${(info.output_shape ?? []).join(", ")}]${info.target ? ` (${info.target})` : ""}`],
    ["N passes", `default ${info.default_n_samples}, at most ${info.max_n_samples}`],
    ["Dropout sites", `${info.dropout_layers}: ` + info.dropout.map((d) => `${d.name} (${d.kind}, p=${d.p})`).join(", ")],
    ["Run once per row", `${fmt(info.prefix_fraction * 100, 0)}% of the model` + (info.prefix_note ? ` (${info.prefix_note})` : "")],
  ];
  if (info.feature_names) entries.push(["Features", info.feature_names.join(", ")]);
  const noise = hints.regression;
  if (noise) entries.push(["Aleatoric noise", noise.variance_head ? "predicted by the model per pass" : `tau ${noise.tau} (variance ${fmt(1 / noise.tau, 2)})`]);
  const rule = hints.abstention;
  if (rule) {
    entries.push(["Abstention", `abstains when ${rule.score.replaceAll("_", " ")} > ${rule.threshold}; ` +
      `${fmt(rule.in_distribution_share * 100, 1)}% of in-distribution rows pass` +
      (rule.calibrated_on ? ` (calibrated on ${rule.calibrated_on}${rule.n_samples ? `, N=${rule.n_samples}` : ""})` : "")]);
  }
  if (hints.conformal) entries.push(["Conformal", describe(hints.conformal)]);
  if (hints.shift) entries.push(["Shift detector", `flags rows whose shift score > ${fmt(hints.shift.threshold, 2)} or an input ` +
    `${hints.shift.margin} training stds outside its range; ${fmt(hints.shift.false_alarm_rate * 100, 1)}% false alarms on held-out rows (${hints.shift.source} features)`]);
  const unsampled = (info.unsampled || []).filter((u) => u.acknowledged);
  if (unsampled.length) entries.push(["Not sampled (acknowledged)", unsampled.map((u) => `${u.name || "the model's forward"} (${u.kind}): ${u.reason}`).join("; ")]);
  if (info.warnings?.length) entries.push(["Warnings", info.warnings.join(" ")]);
  return entries;
}

function describe(section) {
  return Object.entries(section).filter(([, v]) => v !== null && typeof v !== "object")
    .map(([k, v]) => `${k.replaceAll("_", " ")} ${v}`).join(", ");
}

async function predict(event) {
  event.preventDefault();
  const status = $("predict-status");
  const n = Number($("n-samples").value);
  const seed = Number($("seed").value);
  try {
    if (!Number.isInteger(n) || n < 1 || n > state.info.max_n_samples) throw new Error(`N must be a whole number from 1 to ${state.info.max_n_samples}.`);
    if (!Number.isInteger(seed) || seed < 0) throw new Error("The seed must be a whole number, 0 or more.");
    const row = await state.widget.read();
    status.textContent = `Sampling ${n} passes…`;
    // A segmentation answer has maps instead of passes (and its passes could be large).
    const dense = state.info.task === "segmentation";
    const body = { inputs: [row], n_samples: n, seed, ...(dense ? { maps: "json" } : { return_samples: true }) };
    const path = `/v1/models/${encodeURIComponent(state.info.name)}/predict`;
    const single = { ...body, n_samples: 1 };
    const [many, one] = await Promise.all([call(path, { body }), call(path, { body: single })]);
    Object.assign(state, { many, one, row });
    await renderResult();
    status.textContent = `Done: ${many.n_samples} passes, seed ${many.seed}.`;
  } catch (error) {
    status.textContent = error.message;
  }
}

function metric(label, field, value, digits = 4, note = "") {
  return [h("dt", {}, label), h("dd", { "data-field": field, "data-value": String(value) }, fmt(value, digits), note ? h("span", { class: "hint" }, ` ${note}`) : null)];
}

function renderResult() {
  const task = state.many.task;
  const classes = task !== "regression";
  $("result").hidden = false;
  $("result-title").textContent = `${state.info.name}: ${task.replaceAll("_", " ")}`;
  const row = state.many.predictions[0];
  $("passes").hidden = task === "token_classification" || task === "segmentation";  // no per-pass values here
  if (task === "segmentation") return renderSegmentation(taskView(), row, state.one.predictions[0], state.row);
  if (task === "token_classification") return renderTokens(taskView(), row, state.one.predictions[0], state.info.labels, state.row);
  const select = $("pass-output");
  const names = classes ? labelsOf(row) : row.mean.map((_, k) => (row.mean.length === 1 && state.info.target) || `output ${k}`);
  select.replaceChildren(...names.map((name, k) => h("option", { value: k }, name)));
  select.value = task === "classification" ? row.predicted_class : 0;
  $("pass-output-label").textContent = task === "multilabel" ? "Label" : classes ? "Class" : "Output";
  if (task === "classification") renderClassification(row);
  else if (task === "multilabel") renderMultilabel(taskView(), row, state.one.predictions[0], labelsOf(row));
  else renderRegression();
  renderPasses();
}

/** What a task's view may use of the page: its sections, the answers, and a redraw. */
function taskView() {
  return Object.assign(state.view, {
    many: state.many, level: level(), metric, figure, numbers: numbersTable, rerender: renderResult,
    summary: (...nodes) => $("summary").replaceChildren(...nodes),
  });
}

const labelsOf = (row) => state.info.labels ?? row.mean.map((_, i) => String(i));
const level = () => `${fmt(state.many.ci_level * 100, 0)}%`;

function renderClassification(row) {
  const labels = labelsOf(row);
  const badges = [];
  if (row.abstain !== undefined) {
    badges.push(h("span", { class: row.abstain ? "badge abstain" : "badge ok", "data-field": "abstain", "data-value": String(row.abstain) }, row.abstain ? "Abstains: too uncertain" : "Within the abstention threshold"));
  }
  if (row.shift_flag !== undefined && row.shift_flag !== null) {
    badges.push(h("span", { class: row.shift_flag ? "badge abstain" : "badge ok", "data-field": "shift_flag", "data-value": String(row.shift_flag) },
      row.shift_flag ? `Unlike the training data (shift ${fmt(row.shift_score, 1)})` : `Like the training data (shift ${fmt(row.shift_score, 1)})`));
  }
  const set = row.prediction_set ?? null;
  const setLevel = row.conformal_level ?? state.many.conformal_level;
  const maxEntropy = Math.log(row.mean.length);
  $("summary").replaceChildren(
    h("p", { class: "verdict" }, "Predicted ", h("span", { class: "big", "data-field": "label" }, row.label ?? String(row.predicted_class)), ...badges),
    set ? h("p", { "data-field": "prediction_set" }, `Prediction set${setLevel ? ` (${fmt(setLevel * 100, 0)}% conformal)` : ""}: `,
      h("strong", {}, `{${set.map((c) => (typeof c === "number" ? labels[c] : c)).join(", ")}}`)) : "",
    h("dl", { class: "metrics" },
      ...metric("Confidence", "confidence", row.confidence),
      ...metric("Predictive entropy", "predictive_entropy", row.predictive_entropy, 4, "nats, total"),
      ...metric("Expected entropy", "expected_entropy", row.expected_entropy, 4, "aleatoric"),
      ...metric("Mutual information", "mutual_information", row.mutual_information, 4, "epistemic"),
      ...metric("Variation ratio", "variation_ratio", row.variation_ratio),
      ...metric("Passes", "n_samples", state.many.n_samples, 0),
      ...metric("Seed", "seed", state.many.seed, 0)),
    entropySplit({ expected: row.expected_entropy, mutual: row.mutual_information, total: row.predictive_entropy, max: maxEntropy }),
    h("p", { class: "legend" }, h("span", { class: "swatch aleatoric" }), " expected entropy (aleatoric) ", h("span", { class: "swatch epistemic" }), ` mutual information (epistemic); the full bar is ln ${row.mean.length} = ${fmt(maxEntropy, 3)} nats`));
  const bars = (r, title, whiskers) => probabilityBars({ labels, mean: r.mean, lower: whiskers ? r.ci_lower : null, upper: whiskers ? r.ci_upper : null, title });
  figure("main-chart", bars(row, "Mean probability per class", true), `Mean probability over ${state.many.n_samples} passes; whiskers: the ${level()} interval of each class's probability across passes.`);
  const one = state.one.predictions[0];
  figure("one-pass", bars(one, "One pass", false), `1 pass: ${one.label ?? one.predicted_class} at ${fmt(one.confidence, 3)}. One network cannot tell what it does not know: mutual information ${fmt(one.mutual_information, 3)}.`);
  figure("n-pass", bars(row, `${state.many.n_samples} passes`, true), `${state.many.n_samples} passes: ${row.label ?? row.predicted_class} at ${fmt(row.confidence, 3)}; the passes disagree by ${fmt(row.mutual_information, 3)} nats of mutual information.`);
  numbersTable(["class", "mean", "std", "ci lower", "ci upper"], labels.map((label, c) => [label, row.mean[c], row.std[c], row.ci_lower[c], row.ci_upper[c]]));
}

/** The row's conformal band for output k ({lower, upper, level}), or null when the model has
 * no conformal rule (or the band is not finite). */
function conformalBand(row, k) {
  if (!row.conformal_lower) return null;
  const band = { lower: row.conformal_lower[k], upper: row.conformal_upper[k], level: row.conformal_level ?? state.many.conformal_level };
  return Number.isFinite(band.lower) && Number.isFinite(band.upper) ? band : null;
}

function regressionDomain(rows, k) {
  const bands = rows.map((r) => conformalBand(r, k)).filter(Boolean);
  const lo = Math.min(...rows.map((r) => r.pi_lower[k]), ...bands.map((b) => b.lower), ...rows.flatMap((r) => r.samples.map((p) => p[k])));
  const hi = Math.max(...rows.map((r) => r.pi_upper[k]), ...bands.map((b) => b.upper), ...rows.flatMap((r) => r.samples.map((p) => p[k])));
  const pad = (hi - lo) * 0.15 || 1;
  return [lo - pad, hi + pad];
}

function renderRegression() {
  const k = Number($("pass-output").value);
  const row = state.many.predictions[0];
  const one = state.one.predictions[0];
  const xLabel = $("pass-output").selectedOptions[0].textContent;
  const band = conformalBand(row, k);
  const bandLevel = band ? `${fmt(band.level * 100, 0)}%` : "";
  $("summary").replaceChildren(h("dl", { class: "metrics" },
    ...metric("Mean", "mean", row.mean[k], 3),
    ...metric("Std", "std", row.std[k], 3, "total"),
    ...metric("Epistemic variance", "epistemic_variance", row.epistemic_variance[k], 3, "between passes"),
    ...metric("Aleatoric variance", "aleatoric_variance", row.aleatoric_variance[k], 3, "noise"),
    ...metric(`Mean interval (${level()}) from`, "ci_lower", row.ci_lower[k], 3), ...metric("to", "ci_upper", row.ci_upper[k], 3),
    ...metric(`Predictive interval (${level()}) from`, "pi_lower", row.pi_lower[k], 3), ...metric("to", "pi_upper", row.pi_upper[k], 3),
    ...(band ? [...metric(`Conformal band (${bandLevel}) from`, "conformal_lower", band.lower, 3), ...metric("to", "conformal_upper", band.upper, 3)] : []),
    ...metric("Passes", "n_samples", state.many.n_samples, 0), ...metric("Seed", "seed", state.many.seed, 0)));
  const domain = regressionDomain([row, one], k);
  // The band's quantile was calibrated on the card's N passes: drawn on the N-pass views only.
  const density = (r, title, many) => densityChart({ centres: r.samples.map((p) => p[k]), variance: r.aleatoric_variance[k], mean: r.mean[k],
    ci: many ? [r.ci_lower[k], r.ci_upper[k]] : null, pi: [r.pi_lower[k], r.pi_upper[k]], conformal: many ? conformalBand(r, k) : null, domain, title, xLabel });
  const bandNote = band ? ` Dashed outline: the ${bandLevel} conformal band, mean ± q·std with q calibrated on held-out rows (it holds at least ${bandLevel} of new exchangeable rows).` : "";
  figure("main-chart", density(row, "Predictive density", true), `The predictive density: one Gaussian per pass (variance ${fmt(row.aleatoric_variance[k], 2)}) averaged over ${state.many.n_samples} passes. Light band: the ${level()} predictive interval; dark bar: the ${level()} interval of the mean; ticks: the passes.${bandNote}`);
  figure("one-pass", density(one, "One pass", false), `1 pass: noise only, ${fmt(one.pi_lower[k], 1)} to ${fmt(one.pi_upper[k], 1)}.`);
  figure("n-pass", density(row, `${state.many.n_samples} passes`, true), `${state.many.n_samples} passes: noise and model uncertainty, ${fmt(row.pi_lower[k], 1)} to ${fmt(row.pi_upper[k], 1)}.`);
  const bandHead = row.conformal_lower ? ["conformal lower", "conformal upper"] : [];
  numbersTable(["output", "mean", "std", "ci lower", "ci upper", "pi lower", "pi upper", ...bandHead], row.mean.map((m, j) => [$("pass-output").options[j].textContent, m, row.std[j], row.ci_lower[j], row.ci_upper[j], row.pi_lower[j], row.pi_upper[j],
    ...(row.conformal_lower ? [row.conformal_lower[j], row.conformal_upper[j]] : [])]));
}

function renderPasses() {
  const k = Number($("pass-output").value);
  const row = state.many.predictions[0];
  const values = row.samples.map((pass) => pass[k]);
  const name = $("pass-output").selectedOptions[0].textContent;
  const classification = state.many.task !== "regression";
  const [lo, hi] = classification ? [0, 1] : [Math.min(...values), Math.max(...values)];
  const marks = [{ at: row.mean[k], text: "mean" }, { at: row.ci_lower[k], text: "", cls: "mark ci" }, { at: row.ci_upper[k], text: "", cls: "mark ci" }];
  figure("pass-histogram", histogram(values, { lo, hi, bins: classification ? 20 : 24, title: `Passes for ${name}`, xLabel: classification ? `probability of ${name}` : name, marks }),
    `${values.length} passes for ${name}; lines: the mean and the ${level()} interval.`);
}

function figure(id, svg, caption) {
  $(id).replaceChildren(svg, h("figcaption", {}, caption));
}

function numbersTable(head, rows) {
  $("numbers").replaceChildren(h("table", {},
    h("thead", {}, h("tr", {}, ...head.map((c) => h("th", { scope: "col" }, c)))),
    h("tbody", {}, ...rows.map((cells) => h("tr", {}, ...cells.map((c, i) => (i ? h("td", {}, fmt(c)) : h("th", { scope: "row" }, c))))))));
}

$("predict-form").addEventListener("submit", predict);
$("pass-output").addEventListener("change", () => {
  if (state.many?.task === "regression") renderRegression();
  renderPasses();
});
window.addEventListener("hashchange", () => {
  const name = decodeURIComponent(location.hash.slice(1));
  if (name && name !== state.info?.name) selectModel(name);
});
bindReferral($("referral-form"), $("referral-file"), $("referral-status"), $("referral-charts"), () => state.info?.name);
bindKeyForm($("key-form"), $("api-key"), loadModels);
loadModels();
