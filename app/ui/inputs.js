// Input widgets generated from a model's card. Each widget has read() -> Promise<one input row>.

import { h } from "./charts.js";

const CANVAS_PX = 256;
const MAX_CANVAS_SIDE = 64;

const size = (shape) => shape.reduce((a, b) => a * b, 1);

/** `flat` numbers as nested lists of `shape`. */
export function reshape(flat, shape) {
  if (shape.length <= 1) return flat;
  const step = size(shape.slice(1));
  const out = [];
  for (let i = 0; i < shape[0]; i += 1) out.push(reshape(flat.slice(i * step, (i + 1) * step), shape.slice(1)));
  return out;
}

/** [height, width] when the input looks like one small grey image, else null. */
export function imageGrid(shape, hints) {
  const dims = shape.filter((d, i) => !(d === 1 && i < shape.length - 2));
  if (dims.length === 2 && dims.every((d) => d >= 4 && d <= MAX_CANVAS_SIDE)) return dims;
  const side = Math.round(Math.sqrt(dims[0]));
  if (dims.length === 1 && side * side === dims[0] && side >= 4 && side <= MAX_CANVAS_SIDE && hints.value_range) return [side, side];
  return null;
}

/** The widget for a model: image upload, text box, named fields (the metadata's
 * `feature_names`, one per input value), drawing canvas or a CSV row. */
export function buildInput(info, hints) {
  const type = hints.input?.type ?? info.input_type;
  const shape = hints.input?.shape ?? info.input_shape ?? [];
  if (type === "image") return imageUpload();
  if (type === "text") return textBox(hints.input?.max_characters);
  if (info.feature_names?.length === size(shape)) return namedFields(info.feature_names, shape);
  const grid = imageGrid(shape, hints);
  if (grid) return drawingCanvas(grid, shape, hints.value_range ?? [0, 1]);
  return csvRow(shape);
}

function imageUpload() {
  const file = h("input", { id: "image-file", type: "file", accept: "image/*" });
  const preview = h("img", { class: "preview", alt: "the chosen image", hidden: true });
  file.addEventListener("change", () => {
    if (!file.files[0]) return;
    preview.src = URL.createObjectURL(file.files[0]);
    preview.hidden = false;
  });
  const read = () => new Promise((resolve, reject) => {
    if (!file.files[0]) return reject(new Error("Choose an image first."));
    const reader = new FileReader();
    reader.onload = () => resolve({ b64: String(reader.result).split(",", 2)[1] });
    reader.onerror = () => reject(new Error("The image could not be read."));
    reader.readAsDataURL(file.files[0]);
  });
  return { kind: "image", node: h("div", {}, h("label", { for: "image-file" }, "Image file"), file, preview), read };
}

function textBox(maxCharacters) {
  const area = h("textarea", { id: "text-input", rows: 4, maxlength: maxCharacters ?? false });
  const read = async () => {
    if (!area.value.trim()) throw new Error("Type some text first.");
    return area.value;
  };
  return { kind: "text", node: h("div", {}, h("label", { for: "text-input" }, "Text"), area), read };
}

function numberOf(text, where) {
  const value = Number(text);
  if (text.trim() === "" || !Number.isFinite(value)) throw new Error(`${where}: "${text}" is not a number.`);
  return value;
}

function namedFields(names, shape) {
  const inputs = names.map((name, i) => h("input", { id: `feature-${i}`, name, type: "text", inputmode: "decimal", value: "0", spellcheck: "false" }));
  const node = h("div", { class: "fields" }, ...names.map((name, i) => h("div", { class: "field" },
    h("label", { for: `feature-${i}` }, name), inputs[i])));
  const read = async () => reshape(inputs.map((input, i) => numberOf(input.value, names[i])), shape);
  return { kind: "fields", node, read };
}

function csvRow(shape) {
  const count = size(shape);
  const area = h("textarea", { id: "csv-row", rows: 3, spellcheck: "false", "aria-describedby": "csv-help" });
  const help = h("p", { id: "csv-help", class: "hint" }, `${count} numbers separated by commas (shape [${shape.join(", ")}], row-major).`);
  const read = async () => {
    const cells = area.value.split(/[,;\s]+/).filter((c) => c !== "");
    if (cells.length !== count) throw new Error(`Expected ${count} numbers, got ${cells.length}.`);
    return reshape(cells.map((c, i) => numberOf(c, `value ${i + 1}`)), shape);
  };
  return { kind: "csv", node: h("div", {}, h("label", { for: "csv-row" }, "CSV row"), area, help), read };
}

/** Ink per cell in [0, 1] of a square canvas divided into rows x cols cells. */
export function cellInk(context, rows, cols) {
  const pixels = context.getImageData(0, 0, CANVAS_PX, CANVAS_PX).data;
  const ink = new Array(rows * cols).fill(0);
  const cellH = CANVAS_PX / rows;
  const cellW = CANVAS_PX / cols;
  for (let py = 0; py < CANVAS_PX; py += 1) {
    const r = Math.min(rows - 1, Math.floor(py / cellH));
    for (let px = 0; px < CANVAS_PX; px += 1) {
      ink[r * cols + Math.min(cols - 1, Math.floor(px / cellW))] += pixels[(py * CANVAS_PX + px) * 4 + 3] / 255;
    }
  }
  return ink.map((v) => v / (cellH * cellW));
}

function drawingCanvas([rows, cols], shape, [lo, hi]) {
  const canvas = h("canvas", {
    id: "draw", width: CANVAS_PX, height: CANVAS_PX, tabindex: 0, class: "draw",
    "aria-describedby": "draw-help", role: "application", "aria-roledescription": "drawing grid",
    "aria-label": `Drawing area, ${rows} by ${cols} cells`,
  });
  const ctx = canvas.getContext("2d", { willReadFrequently: true });
  const preview = h("canvas", { width: cols, height: rows, class: "pixels", role: "img", "aria-label": "What the model sees" });
  const clear = h("button", { type: "button", id: "clear-drawing" }, "Clear");
  const help = h("p", { id: "draw-help", class: "hint" },
    `Draw with the mouse or a finger; or with the keyboard: arrows move, Space inks a cell, Delete clears it. Sent as ${rows}×${cols} values from ${lo} to ${hi}.`);
  const cursor = { r: Math.floor(rows / 2), c: Math.floor(cols / 2), shown: false };
  const cellW = CANVAS_PX / cols;
  const cellH = CANVAS_PX / rows;
  const overlay = h("span", { class: "cursor", style: `width:${cellW}px;height:${cellH}px` });
  const integers = Number.isInteger(lo) && Number.isInteger(hi);
  const values = () => cellInk(ctx, rows, cols).map((ink) => {
    const v = lo + ink * (hi - lo);
    return integers ? Math.round(v) : v;
  });
  const refresh = () => {
    const vals = values();
    const pctx = preview.getContext("2d");
    const image = pctx.createImageData(cols, rows);
    vals.forEach((v, i) => {
      const shade = 255 - Math.round(((v - lo) / (hi - lo)) * 255);
      image.data.set([shade, shade, shade, 255], i * 4);
    });
    pctx.putImageData(image, 0, 0);
    canvas.dataset.values = JSON.stringify(vals);
    overlay.style.display = cursor.shown ? "block" : "none";
    overlay.style.left = `${cursor.c * cellW}px`;
    overlay.style.top = `${cursor.r * cellH}px`;
  };
  let drawing = false;
  const point = (event) => {
    const box = canvas.getBoundingClientRect();
    return [((event.clientX - box.left) / box.width) * CANVAS_PX, ((event.clientY - box.top) / box.height) * CANVAS_PX];
  };
  ctx.lineWidth = Math.min(cellW, cellH) * 1.2;
  ctx.lineCap = ctx.lineJoin = "round";
  canvas.addEventListener("pointerdown", (event) => {
    drawing = true;
    canvas.setPointerCapture?.(event.pointerId);
    ctx.beginPath();
    ctx.moveTo(...point(event));
    ctx.lineTo(...point(event));
    ctx.stroke();
  });
  canvas.addEventListener("pointermove", (event) => {
    if (!drawing) return;
    ctx.lineTo(...point(event));
    ctx.stroke();
  });
  const stop = () => { if (drawing) { drawing = false; refresh(); } };
  canvas.addEventListener("pointerup", stop);
  canvas.addEventListener("pointerleave", stop);
  canvas.addEventListener("focus", () => { cursor.shown = true; refresh(); });
  canvas.addEventListener("blur", () => { cursor.shown = false; refresh(); });
  canvas.addEventListener("keydown", (event) => {
    const moves = { ArrowUp: [-1, 0], ArrowDown: [1, 0], ArrowLeft: [0, -1], ArrowRight: [0, 1] };
    if (moves[event.key]) {
      cursor.r = Math.min(rows - 1, Math.max(0, cursor.r + moves[event.key][0]));
      cursor.c = Math.min(cols - 1, Math.max(0, cursor.c + moves[event.key][1]));
    } else if (event.key === " " || event.key === "Enter") {
      ctx.fillRect(cursor.c * cellW, cursor.r * cellH, cellW, cellH);
    } else if (event.key === "Delete" || event.key === "Backspace") {
      ctx.clearRect(cursor.c * cellW, cursor.r * cellH, cellW, cellH);
    } else return;
    event.preventDefault();
    refresh();
  });
  clear.addEventListener("click", () => { ctx.clearRect(0, 0, CANVAS_PX, CANVAS_PX); refresh(); });
  refresh();
  const read = async () => {
    const vals = values();
    if (vals.every((v) => v === lo)) throw new Error("Draw something first.");
    return reshape(vals, shape);
  };
  const node = h("div", { class: "drawing" },
    h("div", { class: "canvas-wrap" }, canvas, overlay),
    h("div", { class: "side" }, h("p", { class: "hint" }, "The model sees:"), preview, clear),
    help);
  return { kind: "canvas", node, read };
}
