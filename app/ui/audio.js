// The audio upload: the file is sent as it is ({b64}); the server decodes it and computes the
// model's features. For the eye only, the page decodes it too (Web Audio, resampled to the
// model's rate) and draws the waveform and the log-mel frames with the card's parameters (the
// recipe of app/engine/log_mel.py: centred periodic-Hann frames, Slaney mel, ln(mel + 1e-6)).

import { h } from "./charts.js";

const SVG = "http://www.w3.org/2000/svg";
const WAVE_W = 600;
const WAVE_H = 90;

const svg = (tag, attrs) => {
  const node = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, value);
  return node;
};

/** The widget for `info.input` of an audio model (`parameters`: sample_rate, log_mel, ...). */
export function audioUpload(input) {
  const parameters = input.parameters ?? {};
  const rate = parameters.sample_rate ?? 16000;
  const file = h("input", { id: "audio-file", type: "file", accept: "audio/*,.wav,.flac,.ogg", "aria-describedby": "audio-summary" });
  const summary = h("p", { id: "audio-summary", class: "hint", role: "status" },
    `WAV, FLAC or OGG, up to ${parameters.max_seconds ?? "?"} s; the model hears it mono at ${rate} Hz.`);
  const pictures = h("div", { class: "audio-pictures" });
  file.addEventListener("change", () => {
    if (!file.files[0]) return;
    file.files[0].arrayBuffer().then((bytes) => draw(bytes, rate, parameters, summary, pictures),
      (e) => { summary.textContent = `The file could not be read: ${e.message}`; });
  });
  const read = () => new Promise((resolve, reject) => {
    if (!file.files[0]) return reject(new Error("Choose an audio file first."));
    const reader = new FileReader();
    reader.onload = () => resolve({ b64: String(reader.result).split(",", 2)[1] });
    reader.onerror = () => reject(new Error("The audio file could not be read."));
    reader.readAsDataURL(file.files[0]);
  });
  const node = h("div", {}, h("label", { for: "audio-file" }, "Audio file"), file, summary, pictures);
  return { kind: "audio", node, read };
}

async function draw(bytes, rate, parameters, summary, pictures) {
  let samples;
  try {
    const decoded = await new OfflineAudioContext(1, 1, rate).decodeAudioData(bytes);
    samples = mono(decoded);
  } catch (e) {
    summary.textContent = "The browser cannot decode this file (the server may still take it).";
    pictures.replaceChildren();
    return;
  }
  const seconds = samples.length / rate;
  const shown = [waveform(samples, seconds)];
  let text = `${seconds.toFixed(2)} s at ${rate} Hz`;
  if (parameters.log_mel) {
    const frames = logMel(samples, rate, parameters.log_mel);
    shown.push(melPicture(frames, parameters.log_mel.n_mels));
    text += `: ${frames.length} frames of ${parameters.log_mel.n_mels} log-mel bands`;
  }
  summary.textContent = `${text}.`;
  pictures.replaceChildren(...shown);
}

function mono(buffer) {
  const out = new Float32Array(buffer.length);
  for (let c = 0; c < buffer.numberOfChannels; c += 1) {
    const channel = buffer.getChannelData(c);
    for (let i = 0; i < out.length; i += 1) out[i] += channel[i] / buffer.numberOfChannels;
  }
  return out;
}

function waveform(samples, seconds) {
  const root = svg("svg", { id: "audio-waveform", viewBox: `0 0 ${WAVE_W} ${WAVE_H}`, role: "img",
    "aria-label": `Waveform, ${seconds.toFixed(2)} seconds` });
  const per = Math.max(1, Math.floor(samples.length / WAVE_W));
  const top = [];
  const bottom = [];
  for (let x = 0; x * per < samples.length && x < WAVE_W; x += 1) {
    let lo = 0;
    let hi = 0;
    for (let i = x * per; i < Math.min(samples.length, (x + 1) * per); i += 1) {
      lo = Math.min(lo, samples[i]);
      hi = Math.max(hi, samples[i]);
    }
    top.push(`${x},${(WAVE_H / 2) * (1 - Math.min(1, hi))}`);
    bottom.unshift(`${x},${(WAVE_H / 2) * (1 - Math.max(-1, lo))}`);
  }
  root.append(svg("polygon", { class: "wave", points: top.concat(bottom).join(" ") }));
  return root;
}

/** (T, n_mels) log-mel frames: app/engine/log_mel.py's recipe, for the picture. */
export function logMel(samples, rate, { n_mels: mels, win_ms: winMs, hop_ms: hopMs, f_min: fMin = 0, f_max: fMax = null }) {
  const win = Math.max(2, Math.round((rate * winMs) / 1000));
  const hop = Math.max(1, Math.round((rate * hopMs) / 1000));
  const half = Math.floor(win / 2);
  const padded = new Float64Array(samples.length + 2 * half);
  padded.set(samples, half);
  const count = 1 + Math.floor((padded.length - win) / hop);
  const bins = Math.floor(win / 2) + 1;
  const bank = melBank(rate, win, mels, fMin, fMax ?? rate / 2);
  const cos = new Float64Array(bins * win);
  const sin = new Float64Array(bins * win);
  for (let k = 0; k < bins; k += 1) {
    for (let n = 0; n < win; n += 1) {
      cos[k * win + n] = Math.cos((2 * Math.PI * k * n) / win);
      sin[k * win + n] = Math.sin((2 * Math.PI * k * n) / win);
    }
  }
  const frames = [];
  const windowed = new Float64Array(win);
  for (let t = 0; t < count; t += 1) {
    for (let n = 0; n < win; n += 1) windowed[n] = padded[t * hop + n] * (0.5 - 0.5 * Math.cos((2 * Math.PI * n) / win));
    const power = new Float64Array(bins);
    for (let k = 0; k < bins; k += 1) {
      let re = 0;
      let im = 0;
      for (let n = 0; n < win; n += 1) {
        re += windowed[n] * cos[k * win + n];
        im -= windowed[n] * sin[k * win + n];
      }
      power[k] = re * re + im * im;
    }
    frames.push(bank.map((weights) => Math.log(weights.reduce((sum, w, k) => sum + w * power[k], 0) + 1e-6)));
  }
  return frames;
}

const toMel = (hz) => (hz >= 1000 ? 15 + Math.log(hz / 1000) / (Math.log(6.4) / 27) : (3 * hz) / 200);
const toHz = (mel) => (mel >= 15 ? 1000 * Math.exp((Math.log(6.4) / 27) * (mel - 15)) : (200 * mel) / 3);

function melBank(rate, win, mels, fMin, fMax) {
  const bins = Math.floor(win / 2) + 1;
  const lo = toMel(fMin);
  const hi = toMel(fMax);
  const edges = Array.from({ length: mels + 2 }, (_, i) => toHz(lo + ((hi - lo) * i) / (mels + 1)));
  return Array.from({ length: mels }, (_, m) => Array.from({ length: bins }, (_, k) => {
    const f = (k * rate) / win;
    const rise = (f - edges[m]) / (edges[m + 1] - edges[m]);
    const fall = (edges[m + 2] - f) / (edges[m + 2] - edges[m + 1]);
    return Math.max(0, Math.min(rise, fall)) * (2 / (edges[m + 2] - edges[m]));
  }));
}

function melPicture(frames, mels) {
  const canvas = h("canvas", { id: "audio-log-mel", width: frames.length, height: mels, role: "img",
    "aria-label": `Log-mel frames: ${frames.length} frames (time, left to right) of ${mels} bands (low at the bottom)` });
  const ctx = canvas.getContext("2d");
  const flat = frames.flat();
  const lo = Math.min(...flat);
  const span = Math.max(...flat) - lo || 1;
  const image = ctx.createImageData(frames.length, mels);
  frames.forEach((frame, t) => frame.forEach((value, m) => {
    const shade = Math.round((255 * (value - lo)) / span);
    image.data.set([shade, shade, Math.min(255, shade + 40), 255], ((mels - 1 - m) * frames.length + t) * 4);
  }));
  ctx.putImageData(image, 0, 0);
  canvas.dataset.frames = String(frames.length);
  return canvas;
}
