// Result views of the multi-label and token classification tasks (app/tasks/ on the server).

import { fmt, h, s } from "./charts.js";

const SVG_W = 520;
const SVG_H = 220;
const M = { left: 48, right: 14, top: 24, bottom: 38 };
const TAG_COLOURS = 6;

/** Independent per-label bars (each its own probability, not a share of one), interval
 * whiskers, and the card's threshold as a dashed line: bars at or over it are predicted. */
export function labelBars({ labels, mean, lower, upper, threshold, title }) {
  const on = labels.filter((_, k) => mean[k] >= threshold);
  const svg = s("svg", { viewBox: `0 0 ${SVG_W} ${SVG_H}`, role: "img",
    "aria-label": `${title}: ${on.length ? on.join(", ") : "no label"} at or over the threshold ${fmt(threshold, 2)}` });
  const band = (SVG_W - M.left - M.right) / labels.length;
  const x = (k) => M.left + band * (k + 0.5);
  const y = (p) => SVG_H - M.bottom - p * (SVG_H - M.bottom - M.top);
  svg.append(s("line", { class: "axis", x1: M.left, x2: SVG_W - M.right, y1: y(0), y2: y(0) }));
  svg.append(s("line", { class: "axis", x1: M.left, x2: M.left, y1: M.top, y2: y(0) }));
  for (const t of [0, 0.5, 1]) svg.append(s("text", { class: "tick", x: M.left - 6, y: y(t) + 4, "text-anchor": "end" }, String(t)));
  labels.forEach((label, k) => {
    const width = band * 0.6;
    svg.append(s("rect", { class: mean[k] >= threshold ? "bar best" : "bar", "data-label": label,
      x: x(k) - width / 2, y: y(mean[k]), width, height: Math.max(0, y(0) - y(mean[k])) },
    s("title", {}, `${label}: ${fmt(mean[k])}`)));
    if (lower) svg.append(s("path", { class: "whisker", d: `M${x(k)},${y(lower[k])}V${y(upper[k])}` }));
    svg.append(s("text", { class: "tick", x: x(k), y: y(0) + 16, "text-anchor": "middle" }, label));
  });
  svg.append(s("line", { class: "mark threshold", x1: M.left, x2: SVG_W - M.right, y1: y(threshold), y2: y(threshold) }));
  svg.append(s("text", { class: "label", x: SVG_W - M.right, y: y(threshold) - 4, "text-anchor": "end" }, `threshold ${fmt(threshold, 2)}`));
  return svg;
}

export function renderMultilabel(view, row, one, labels) {
  const predicted = row.predicted_labels.map((c) => (typeof c === "number" ? labels[c] : c));
  view.summary(
    h("p", { class: "verdict" }, "Labels ", h("span", { class: "big", "data-field": "predicted_labels", "data-value": JSON.stringify(predicted) },
      predicted.length ? predicted.join(", ") : "none"), h("span", { class: "hint" }, `each label on its own: mean probability ≥ ${fmt(row.threshold, 2)}`)),
    h("dl", { class: "metrics" }, ...view.metric("Threshold", "threshold", row.threshold, 2),
      ...view.metric("Passes", "n_samples", view.many.n_samples, 0), ...view.metric("Seed", "seed", view.many.seed, 0)));
  const bars = (r, title, whiskers) => labelBars({ labels, mean: r.mean, lower: whiskers ? r.ci_lower : null, upper: whiskers ? r.ci_upper : null, threshold: row.threshold, title });
  view.figure("main-chart", bars(row, "Mean probability per label", true), `Each label's own probability (a sigmoid, they need not sum to 1), mean over ${view.many.n_samples} passes; whiskers: the ${view.level} interval; dashed: the threshold.`);
  view.figure("one-pass", bars(one, "One pass", false), "1 pass: no spread, no mutual information.");
  view.figure("n-pass", bars(row, `${view.many.n_samples} passes`, true), `${view.many.n_samples} passes: the largest mutual information is ${fmt(Math.max(...row.mutual_information), 3)} nats (at most ln 2 per label).`);
  view.numbers(["label", "mean", "std", "ci lower", "ci upper", "entropy", "MI"],
    labels.map((label, k) => [label, row.mean[k], row.std[k], row.ci_lower[k], row.ci_upper[k], row.predictive_entropy[k], row.mutual_information[k]]));
}

/** The input text with each word marked: by its label's colour, or shaded by its mutual
 * information (share of ln C, the most a word can have). */
export function tokenText(text, tokens, labels, by) {
  const nodes = [];
  let at = 0;
  const most = Math.log(labels.length);
  for (const token of tokens) {
    if (token.start > at) nodes.push(text.slice(at, token.start));
    const k = labels.indexOf(String(token.label));
    const share = Math.min(1, token.mutual_information / most);
    const attrs = { class: by === "label" ? `token tag-${k % TAG_COLOURS}` : "token mi", "data-field": "token",
      "data-label": String(token.label), "data-mi": String(token.mutual_information),
      title: `${token.label} at ${fmt(token.confidence, 3)}; mutual information ${fmt(token.mutual_information, 3)} nats` };
    if (by === "mi") attrs.style = `--share: ${fmt(share * 0.6, 3)}`;
    const word = h("span", { class: "word" }, text.slice(token.start, token.end));
    nodes.push(h("mark", attrs, word, by === "label" ? h("sub", {}, String(token.label)) : null));
    at = token.end;
  }
  if (at < text.length) nodes.push(text.slice(at));
  return h("p", { class: "tokens", "data-by": by }, ...nodes);
}

export function renderTokens(view, row, one, labels, text) {
  const by = view.tokenColouring ?? "label";
  const choice = h("p", { class: "colouring" }, "Colour words by ",
    ...["label", "mi"].flatMap((value) => {
      const input = h("input", { type: "radio", name: "token-colour", id: `colour-${value}`, value, checked: value === by });
      input.addEventListener("change", () => { view.tokenColouring = value; view.rerender(); });
      return [input, h("label", { for: `colour-${value}` }, value === "label" ? "label" : "mutual information")];
    }));
  view.summary(choice, tokenText(text, row.tokens, labels, by),
    h("dl", { class: "metrics" }, ...view.metric("Words", "words", row.tokens.length, 0),
      ...view.metric("Largest MI", "max_mutual_information", Math.max(0, ...row.tokens.map((t) => t.mutual_information)), 4, "nats"),
      ...view.metric("Passes", "n_samples", view.many.n_samples, 0), ...view.metric("Seed", "seed", view.many.seed, 0)));
  view.figure("main-chart", tokenText(text, row.tokens, labels, "mi"), `Shade: each word's mutual information as a share of ln ${labels.length} (epistemic: the passes disagree on its label).`);
  view.figure("one-pass", tokenText(text, one.tokens, labels, "label"), "1 pass: each word's label from one network.");
  view.figure("n-pass", tokenText(text, row.tokens, labels, "label"), `${view.many.n_samples} passes: each word's label from the mean probabilities.`);
  view.numbers(["word", "label", "confidence", "entropy", "MI", "start", "end"],
    row.tokens.map((t) => [t.text, t.label, t.confidence, t.predictive_entropy, t.mutual_information, t.start, t.end]));
}
