// Input widgets generated from a model's card. Each widget has read() -> Promise<one input row>.

import { audioUpload } from "./audio.js";
import { h } from "./charts.js";

const CANVAS_PX = 256;

const size = (shape) => shape.reduce((a, b) => a * b, 1);

/** `flat` numbers as nested lists of `shape`. */
export function reshape(flat, shape) {
  if (shape.length <= 1) return flat;
  const step = size(shape.slice(1));
  const out = [];
  for (let i = 0; i < shape[0]; i += 1) out.push(reshape(flat.slice(i * step, (i + 1) * step), shape.slice(1)));
  return out;
}

/**
 * The widget for a model, from its input kind's description (`info.input` of /v1/models):
 * image upload, audio upload, text box, drawing canvas, named fields, integer ids, a sequence
 * upload or a CSV row. `featureNames` label the fields of a tabular model.
 */
export function buildInput(input, featureNames) {
  const shape = input.shape ?? [];
  switch (input.widget) {
    case "image": return imageUpload(input.formats);
    case "audio": return audioUpload(input);
    case "text": return textBox(input.max_characters);
    case "canvas": return drawingCanvas(input.grid, shape, input.range ?? [0, 1]);
    case "fields": return namedFields(featureNames ?? shape.map((_, i) => `x${i + 1}`), shape);
    case "integers": return integerRow(shape, input.range);
    case "sequence": return sequenceUpload(shape, input.max_length);
    default: return csvRow(shape);
  }
}

const SCAN_FILES = { dicom: ".dcm,application/dicom", nifti: ".nii,.gz" };

/** An image upload; `formats` (the card's, e.g. ["png", "dicom"]) adds scan files to its filter. */
function imageUpload(formats = []) {
  const accept = ["image/*", ...formats.filter((f) => f in SCAN_FILES).map((f) => SCAN_FILES[f])].join(",");
  const file = h("input", { id: "image-file", type: "file", accept });
  const preview = h("img", { class: "preview", alt: "the chosen image", hidden: true });
  preview.addEventListener("error", () => { preview.hidden = true; }); // a scan: no browser preview
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

function integerRow(shape, range) {
  const count = size(shape);
  const [lo, hi] = range ?? [-Infinity, Infinity];
  const area = h("textarea", { id: "integer-row", rows: 2, spellcheck: "false", "aria-describedby": "integer-help" });
  const help = h("p", { id: "integer-help", class: "hint" },
    `${count} whole numbers from ${lo} to ${hi - 1}, separated by commas or spaces (shape [${shape.join(", ")}]).`);
  const read = async () => {
    const cells = area.value.split(/[,;\s]+/).filter((c) => c !== "");
    if (cells.length !== count) throw new Error(`Expected ${count} integers, got ${cells.length}.`);
    return reshape(cells.map((c, i) => {
      const value = numberOf(c, `value ${i + 1}`);
      if (!Number.isInteger(value)) throw new Error(`value ${i + 1}: "${c}" is not an integer.`);
      if (value < lo || value >= hi) throw new Error(`value ${i + 1}: ${value} is outside [${lo}, ${hi}).`);
      return value;
    }), shape);
  };
  return { kind: "integers", node: h("div", {}, h("label", { for: "integer-row" }, "Integer ids"), area, help), read };
}

/**
 * Steps of a sequence from CSV (one step per line, `width` numbers each; a header line is
 * skipped) or JSON (an array of steps); each step an array of `width` numbers, or a number when
 * `width` is 0 (a [-1] sequence of scalars).
 */
export function parseSequence(text, width, maxLength) {
  const trimmed = text.trim();
  if (!trimmed) throw new Error("Choose a CSV or JSON file, or paste the steps.");
  let steps;
  if (trimmed.startsWith("[")) {
    try { steps = JSON.parse(trimmed); } catch { throw new Error("The JSON could not be read."); }
    if (!Array.isArray(steps)) throw new Error("The JSON must be an array of steps.");
    steps.forEach((step, i) => {
      const values = width ? step : [step];
      if (!Array.isArray(values) || values.length !== Math.max(width, 1) || !values.every(Number.isFinite)) {
        throw new Error(`Step ${i + 1}: expected ${width ? `${width} numbers` : "a number"}.`);
      }
    });
  } else {
    const lines = trimmed.split(/\r?\n/).map((line) => line.split(/[,;\t]/).map((c) => c.trim()));
    if (lines[0].some((cell) => cell === "" || !Number.isFinite(Number(cell)))) lines.shift();
    steps = lines.map((cells, i) => {
      if (cells.length !== Math.max(width, 1)) throw new Error(`Line ${i + 1}: expected ${Math.max(width, 1)} numbers, got ${cells.length}.`);
      const values = cells.map((c, j) => numberOf(c, `line ${i + 1}, value ${j + 1}`));
      return width ? values : values[0];
    });
  }
  if (steps.length < 1 || steps.length > maxLength) throw new Error(`Expected 1 to ${maxLength} steps, got ${steps.length}.`);
  return steps;
}

function sequenceUpload(shape, maxLength) {
  const step = shape.slice(1);
  const width = step.length ? size(step) : 0;
  const file = h("input", { id: "sequence-file", type: "file", accept: ".csv,.json,text/csv,application/json", "aria-describedby": "sequence-help" });
  const area = h("textarea", { id: "sequence-text", rows: 6, spellcheck: "false", "aria-describedby": "sequence-help" });
  const summary = h("p", { id: "sequence-summary", class: "hint", role: "status" }, "");
  const help = h("p", { id: "sequence-help", class: "hint" },
    `A sequence of 1 to ${maxLength} steps${width ? ` of ${width} values` : ""}: a CSV file (one step per line, a header line allowed) or JSON ([[…], …]); or paste it below.`);
  const text = () => (file.files[0] ? file.files[0].text() : Promise.resolve(area.value));
  const steps = async () => parseSequence(await text(), width, maxLength);
  const show = () => steps().then((s) => { summary.textContent = `${s.length} steps read.`; }, (e) => { summary.textContent = e.message; });
  file.addEventListener("change", show);
  area.addEventListener("change", show);
  const read = async () => {
    const parsed = await steps();
    return step.length > 1 ? parsed.map((values) => reshape(values, step)) : parsed;
  };
  const node = h("div", {}, h("label", { for: "sequence-file" }, "Sequence file (CSV or JSON)"), file,
    h("label", { for: "sequence-text" }, "or the steps"), area, summary, help);
  return { kind: "sequence", node, read };
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
