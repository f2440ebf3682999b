// Result view of the segmentation task (app/tasks/segmentation.py on the server): the image with
// the predicted mask's contour and a mutual-information heatmap (opacity slider), and each
// class's area with its interval over passes.

import { fmt, h } from "./charts.js";

const CONTOUR = [0, 230, 64];
const HEAT = [255, 32, 0];
const DRAWN_PX = 320;  // the longer side of a drawn map, in canvas pixels

/** Grey levels (H x W, 0..255) of the input row: a nested [C][H][W] list scaled by its own range,
 * or an uploaded image ({b64}) drawn at the map size. */
async function baseImage(input, width, height) {
  if (input && typeof input === "object" && "b64" in input) {
    const image = new Image();
    image.src = `data:image;base64,${input.b64}`;
    await image.decode();
    const canvas = h("canvas", { width, height });
    const ctx = canvas.getContext("2d");
    ctx.drawImage(image, 0, 0, width, height);
    const rgba = ctx.getImageData(0, 0, width, height).data;
    return Array.from({ length: width * height }, (_, i) => (rgba[i * 4] + rgba[i * 4 + 1] + rgba[i * 4 + 2]) / 3);
  }
  const plane = Array.isArray(input?.[0]?.[0]) ? input[0] : input;
  const values = Array.isArray(plane) ? plane.flat() : [];
  if (values.length !== width * height) return new Array(width * height).fill(0);
  const lo = Math.min(...values);
  const hi = Math.max(...values);
  return values.map((v) => (hi > lo ? ((v - lo) / (hi - lo)) * 255 : 0));
}

/** Foreground pixels (class != 0) with a 4-neighbour of another class. */
export function contourOf(mask) {
  const rows = mask.length;
  const cols = mask[0].length;
  const at = (r, c) => mask[Math.min(rows - 1, Math.max(0, r))][Math.min(cols - 1, Math.max(0, c))];
  return mask.map((line, r) => line.map((k, c) => k !== 0 &&
    [[r - 1, c], [r + 1, c], [r, c - 1], [r, c + 1]].some(([y, x]) => at(y, x) !== k)));
}

function draw(canvas, grey, maps, classes, opacity) {
  const { mask, mutual_information: mi } = maps;
  const rows = mask.length;
  const cols = mask[0].length;
  const edge = contourOf(mask);
  const most = Math.log(Math.max(classes, 2));
  const small = h("canvas", { width: cols, height: rows });
  const ctx = small.getContext("2d");
  const image = ctx.createImageData(cols, rows);
  for (let r = 0; r < rows; r += 1) {
    for (let c = 0; c < cols; c += 1) {
      const i = r * cols + c;
      const alpha = opacity * Math.min(1, mi[r][c] / most);
      const rgb = edge[r][c] ? CONTOUR : HEAT.map((v) => grey[i] * (1 - alpha) + v * alpha);
      image.data.set([...rgb.map(Math.round), 255], i * 4);
    }
  }
  ctx.putImageData(image, 0, 0);
  const big = canvas.getContext("2d");
  big.imageSmoothingEnabled = false;
  big.drawImage(small, 0, 0, canvas.width, canvas.height);
}

function areaText(area, level) {
  return `${area.label}: ${area.pixels} px (passes: ${fmt(area.mean, 1)} [${fmt(area.lower, 1)}, ${fmt(area.upper, 1)}] at ${level})`;
}

function overlayCanvas(id, row) {
  const scale = Math.max(1, Math.floor(DRAWN_PX / Math.max(row.width, row.height)));
  return h("canvas", { id, width: row.width * scale, height: row.height * scale, role: "img", "data-field": "overlay",
    "aria-label": "The image, the predicted mask's contour in green and the mutual information in red" });
}

export async function renderSegmentation(view, row, one, input) {
  const { width, height } = row;
  const classes = row.areas.length;
  const foreground = row.areas.slice(1);
  const opacity = view.segmentationOpacity ?? 0.6;
  const canvas = overlayCanvas("segmentation-overlay", row);
  const single = overlayCanvas("segmentation-one", one);
  const many = overlayCanvas("segmentation-many", row);
  const slider = h("input", { type: "range", id: "mi-opacity", min: 0, max: 100, value: Math.round(opacity * 100),
    "aria-label": "Heatmap opacity" });
  const grey = await baseImage(input, width, height);
  const redraw = () => {
    const alpha = Number(slider.value) / 100;
    canvas.dataset.opacity = String(alpha);
    draw(canvas, grey, row.maps, classes, alpha);
    draw(single, grey, one.maps, classes, alpha);
    draw(many, grey, row.maps, classes, alpha);
  };
  slider.addEventListener("input", () => { view.segmentationOpacity = Number(slider.value) / 100; redraw(); });
  redraw();
  view.summary(
    h("p", { class: "verdict" }, ...foreground.map((area) => h("span", { class: "big", "data-field": "area",
      "data-label": String(area.label), "data-pixels": String(area.pixels), "data-mean": String(area.mean),
      "data-lower": String(area.lower), "data-upper": String(area.upper) }, areaText(area, view.level))),
    h("span", { class: "hint" }, `the mask is the argmax of the mean probabilities; the interval: each pass's own mask`)),
    h("dl", { class: "metrics" },
      ...view.metric("Mean MI", "mean_mutual_information", row.mean_mutual_information, 4, "nats"),
      ...view.metric("Foreground MI", "foreground_mutual_information", row.foreground_mutual_information, 4, "nats"),
      ...view.metric("Uncertain pixels", "uncertain_share", row.uncertain_share, 4, `MI > ${row.uncertainty_threshold}`),
      ...view.metric("Passes", "n_samples", view.many.n_samples, 0), ...view.metric("Seed", "seed", view.many.seed, 0)));
  const figure = h("div", { class: "segmentation" }, canvas,
    h("p", { class: "colouring" }, h("label", { for: "mi-opacity" }, "Heatmap opacity "), slider));
  view.figure("main-chart", figure, `Green: the predicted mask's contour; red: mutual information as a share of ln ${classes} (the passes disagree), ${view.many.n_samples} passes.`);
  const lesion = (r) => r.areas.slice(1).map((a) => `${a.label} ${a.pixels} px`).join(", ");
  view.figure("one-pass", single, `1 pass: one network's mask (${lesion(one)}), no mutual information.`);
  view.figure("n-pass", many, `${view.many.n_samples} passes: the mask of the mean probabilities (${lesion(row)}).`);
  view.numbers(["class", "pixels", "mean over passes", "lower", "upper"],
    row.areas.map((a) => [String(a.label), a.pixels, a.mean, a.lower, a.upper]));
}
