// Referral (Leibig et al. 2017): evaluate a labelled set, draw the metric on the retained cases
// against the share referred (the most uncertain first), one line per uncertainty ordering.

import { call } from "./api.js";
import { fmt, h, s, ticks } from "./charts.js";

const W = 520;
const H = 240;
const M = { left: 52, right: 14, top: 20, bottom: 40 };
const COLOURS = { mutual_information: "#1f77b4", predictive_entropy: "#d62728", confidence: "#2ca02c" };
const NAMES = { mutual_information: "MI", predictive_entropy: "entropy", confidence: "1 − confidence" };

/** The referral reports of an evaluate answer (classification: accuracy, AUROC; segmentation: Dice). */
export function referralsOf(answer) {
  return (answer.classification ?? answer.segmentation ?? {}).referral ?? [];
}

/** An SVG line chart of one referral report; its aria-label lists the numbers drawn. */
export function referralChart(referral) {
  const values = Object.values(referral.curves).flat().filter((v) => v !== null);
  const lo = Math.min(...values);
  const hi = Math.max(...values);
  const pad = (hi - lo) * 0.1 || 0.05;
  const x = (r) => M.left + (r / 0.9) * (W - M.left - M.right);
  const y = (v) => H - M.bottom - ((v - (lo - pad)) / (hi - lo + 2 * pad)) * (H - M.top - M.bottom);
  const words = Object.entries(referral.curves).map(([name, curve]) =>
    `${NAMES[name] ?? name}: ${referral.rates.map((r, i) => `${fmt(r * 100, 0)}% ${curve[i] === null ? "-" : fmt(curve[i])}`).join(", ")}`);
  const svg = s("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", class: "referral-chart",
    "aria-label": `${referral.metric} on the retained cases by share referred; ${words.join("; ")}` });
  for (const t of ticks(lo - pad, hi + pad, 4)) {
    svg.append(s("line", { class: "grid", x1: M.left, x2: W - M.right, y1: y(t), y2: y(t) }));
    svg.append(s("text", { class: "tick", x: M.left - 6, y: y(t) + 4, "text-anchor": "end" }, fmt(t, 3)));
  }
  for (const r of [0, 0.3, 0.6, 0.9]) {
    svg.append(s("text", { class: "tick", x: x(r), y: H - M.bottom + 16, "text-anchor": "middle" }, `${fmt(r * 100, 0)}%`));
  }
  svg.append(s("text", { class: "label", x: (M.left + W) / 2, y: H - 6, "text-anchor": "middle" }, "share referred (most uncertain first)"));
  svg.append(s("line", { class: "axis", x1: M.left, x2: W - M.right, y1: H - M.bottom, y2: H - M.bottom }));
  for (const [name, curve] of Object.entries(referral.curves)) {
    const points = referral.rates.map((r, i) => [r, curve[i]]).filter(([, v]) => v !== null);
    svg.append(s("polyline", { fill: "none", stroke: COLOURS[name] ?? "#555", "stroke-width": 2, "data-ordering": name,
      "data-values": JSON.stringify(curve), points: points.map(([r, v]) => `${x(r)},${y(v)}`).join(" ") }));
  }
  return svg;
}

function legend(referral) {
  return h("p", { class: "hint" }, ...Object.keys(referral.curves).flatMap((name) => [
    h("span", { style: `color: ${COLOURS[name] ?? "#555"}` }, "■ "), `${NAMES[name] ?? name}  `]));
}

/** Wire the referral form: ``modelName()`` is the selected model's name. */
export function bindReferral(form, file, status, out, modelName) {
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    try {
      if (!file.files.length) throw new Error("Choose a JSON file of {\"inputs\": [...], \"targets\": [...]}.");
      const body = JSON.parse(await file.files[0].text());
      status.textContent = `Evaluating ${body.inputs?.length ?? 0} cases…`;
      const answer = await call(`/v1/models/${encodeURIComponent(modelName())}/evaluate`, { body });
      const referrals = referralsOf(answer);
      out.replaceChildren(...referrals.flatMap((referral) => [
        h("h3", {}, `${referral.metric} on the retained cases`), referralChart(referral), legend(referral)]));
      status.textContent = `Done: ${answer.rows} cases, N = ${answer.n_samples}.`;
    } catch (error) {
      status.textContent = error.message;
    }
  });
}
