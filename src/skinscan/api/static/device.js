// Judging a photo in the browser itself: the photo is decoded, prepared and judged here, and never sent anywhere.
// Everything a judgement is made of comes from the server's GET device/spec.json (taken from the Python that makes
// the server's own results: calibration, threshold, input-check limits and reasons, severity scale and verdicts,
// heatmap scale and legends); the pixel steps are Pillow's (imaging.js) and the ONNX pixel graph's (prepare.onnx:
// colour constancy, quality measures, normalisation). This module adds only the glue between them.
import * as ort from "./vendor/ort/ort.wasm.min.mjs";
import { analysedBox, modelPixels, newImage, reduce, reduceFactor, resize } from "./imaging.js";

const OUTSIDE = -1e6; // the logit of pixels outside the analysed region: never coloured (runtime/engine.py)
const here = (path) => new URL(path, import.meta.url).href;

/** Fetches the spec, the model and ONNX Runtime Web; rejects with an Error whose message says why it cannot. */
export async function loadDevice(onProgress = () => {}) {
  const response = await fetch(here("../device/spec.json"), { cache: "no-cache" });
  if (!response.ok) throw new Error(`the server has no on-device model (error ${response.status})`);
  const spec = await response.json();
  if (!spec.available) throw new Error(spec.reason);
  ort.env.wasm.numThreads = self.crossOriginIsolated ? Math.min(4, navigator.hardwareConcurrency || 1) : 1;
  ort.env.wasm.proxy = false;
  ort.env.wasm.wasmPaths = { mjs: here("vendor/ort/ort-wasm-simd-threaded.mjs"), wasm: here("../device/ort-wasm-simd-threaded.wasm") };
  onProgress("Loading the model onto this device…");
  const options = { executionProviders: ["wasm"], graphOptimizationLevel: "all" };
  const [prepare, model] = await Promise.all([
    fetchBytes(here(spec.pixels_graph.replace(/^static\//, ""))).then((b) => ort.InferenceSession.create(b, options)),
    fetchBytes(here(`../${spec.model.url}`)).then((b) => ort.InferenceSession.create(b, options)),
  ]);
  return new Device(spec, prepare, model);
}

async function fetchBytes(url) {
  const response = await fetch(url);
  if (!response.ok) throw new Error(`cannot fetch ${url} (error ${response.status})`);
  return new Uint8Array(await response.arrayBuffer());
}

/** Why a photo cannot be judged, with the words the server uses (InvalidImageError's). */
export class DeviceImageError extends Error {}

class Device {
  constructor(spec, prepare, model) {
    this.spec = spec;
    this.prepare = prepare;
    this.model = model;
    this.running = Promise.resolve(); // one run at a time: a WebAssembly session is not re-entrant
  }

  /** A result shaped like the server's POST /predict answer, with `where: "device"`. */
  judge(file) {
    const run = this.running.then(() => this.judgeNow(file));
    this.running = run.catch(() => {});
    return run;
  }

  async judgeNow(file) {
    const start = performance.now();
    const spec = this.spec;
    const { image, size } = await decode(file, spec);
    const pixels = modelPixels(image, spec.crop, spec.input_size);
    const S = spec.input_size;
    const prepared = await this.prepare.run({
      pixels: new ort.Tensor("uint8", pixels, [1, S, S, 3]),
      mean: new ort.Tensor("float32", Float32Array.from(spec.mean), [3]),
      std: new ort.Tensor("float32", Float32Array.from(spec.std), [3]),
      colour_constancy: new ort.Tensor("bool", Uint8Array.from([spec.colour_constancy === "shades_of_gray" ? 1 : 0]), [1]),
    });
    const quality = Object.fromEntries(spec.quality_measures.map((name, i) => [name, prepared.quality.data[i]]));
    const base = { where: "device", model: { id: spec.model.id, version: spec.model.version }, threshold: spec.threshold,
      quality, image_size: size, disclaimer: spec.disclaimer };
    let reason = qualityProblem(quality, spec);
    if (reason) return this.rejected(base, reason, null, start);
    const outputs = await this.model.run({ [this.model.inputNames[0]]: prepared.input });
    const logit = outputs.logit.data[0];
    const distance = outputs.ood ? outputs.ood.data[0] : null;
    if (distance !== null && spec.ood_threshold !== null && distance > spec.ood_threshold) {
      return this.rejected(base, spec.reasons.not_a_lesion, distance, start);
    }
    const { temperature, bias } = spec.calibration;
    const probability = 1 / (1 + Math.exp(-Math.min(60, Math.max(-60, (logit - bias) / temperature))));
    const step = severityFor(probability, spec.threshold, spec.scale);
    const malignant = probability >= spec.threshold;
    const result = {
      ...base, status: "ok", probability, ood_distance: distance,
      label: spec.class_names[malignant ? 1 : 0], verdict: step.verdict.headline, verdict_code: step.verdict.code,
      severity: step.level, severity_name: step.name, description: step.description,
      recommendation: step.recommendation, colour: step.colour,
      heatmap_png: heatmapPng(image, size, outputs.cam, logit, malignant, spec),
      heatmap_legend: malignant ? spec.heatmap.legend : spec.heatmap.below_threshold_legend,
    };
    if (outputs.diagnosis) result.diagnoses = mostLikely(outputs.diagnosis.data, spec.diagnoses);
    result.latency_ms = performance.now() - start;
    return result;
  }

  rejected(base, reason, distance, start) {
    return { ...base, status: "rejected", verdict: this.spec.cannot_judge.headline, verdict_code: this.spec.cannot_judge.code,
      reason, ood_distance: distance, latency_ms: performance.now() - start };
  }
}

/** The photo upright (its EXIF orientation applied, as the engine does), alpha over white, reduced by the
 * engine's draft rule; and its size before the reduction. */
async function decode(file, spec) {
  let bitmap;
  try {
    // colour profiles left alone and no premultiplied alpha: Pillow converts neither
    bitmap = await createImageBitmap(file, { imageOrientation: "from-image", colorSpaceConversion: "none", premultiplyAlpha: "none" });
  } catch {
    throw new DeviceImageError("This browser cannot read this file. Formats such as HEIC, TIFF and DICOM can be " +
      "judged by the server: switch off “judge on this device” to send it there.");
  }
  const { width, height } = bitmap;
  const { min_side: minSide, max_pixels: maxPixels } = spec.decoding;
  if (Math.min(width, height) < minSide) {
    bitmap.close();
    throw new DeviceImageError(`Image too small: ${width}×${height} pixels; the smallest side accepted is ${minSide} pixels.`);
  }
  if (width * height > maxPixels) {
    bitmap.close();
    throw new DeviceImageError(`Image too large: over the limit of ${maxPixels.toLocaleString("en")} pixels.`);
  }
  const canvas = new OffscreenCanvas(width, height);
  const context = canvas.getContext("2d", { willReadFrequently: true });
  context.fillStyle = "#fff";
  context.fillRect(0, 0, width, height);
  context.drawImage(bitmap, 0, 0);
  bitmap.close();
  const full = { width, height, bands: 4, data: context.getImageData(0, 0, width, height).data };
  const factor = reduceFactor(width, height, spec.input_size);
  return { image: factor > 1 ? reduce(full, factor, factor) : full, size: [width, height] };
}

/** runtime/checks.py's quality_problem, in its order. */
export function qualityProblem(q, spec) {
  const limits = spec.quality;
  const reasons = spec.reasons;
  if (q.brightness < limits.min_brightness) return reasons.too_dark;
  if (q.saturation > limits.max_saturation) return reasons.not_a_lesion;
  if (q.contrast < limits.min_contrast) return reasons.nearly_blank;
  if (q.chroma < limits.min_chroma) return reasons.not_in_colour;
  if (q.sharpness < limits.min_sharpness) return reasons.too_blurred;
  return null;
}

/** core/severity.py's severity_for over the server's scale. */
export function severityFor(probability, threshold, scale) {
  if (probability < threshold) return scale[0];
  const p = Math.min(Math.max(probability, 0), 1);
  const t = Math.min(Math.max(threshold, 1e-6), 1 - 1e-6);
  const rescaled = p < t ? (0.5 * p) / t : 0.5 + (0.5 * (p - t)) / (1 - t);
  return scale.slice(1).find((step) => rescaled <= step.upper) || scale[scale.length - 1];
}

function mostLikely(probabilities, diagnoses, k = 3) {
  return diagnoses.map((d, i) => ({ ...d, probability: probabilities[i] }))
    .sort((a, b) => b.probability - a.probability).slice(0, k);
}

// --- the heatmap (runtime/engine.py's render_heatmap, core/heatmap.py) ------------------------------------------

function heatmapPng(image, [w, h], cam, logit, above, spec) {
  const { low_logit: low, high_logit: high, ramp, max_side: maxSide } = spec.heatmap;
  const [rows, cols] = cam.dims.slice(-2);
  const values = cam.data;
  const mean = values.reduce((a, b) => a + b, 0) / values.length;
  // a map whose mean is the logit gives each cell's logit directly; one that sums contributions is rescaled
  const perCell = Math.abs(mean - logit) <= 1e-3 * Math.max(1, Math.abs(logit)) ? 1 : values.length;
  const cells = newImage(cols, rows, 1, true);
  for (let i = 0; i < values.length; i++) cells.data[i] = logit + perCell * (values[i] - mean);
  const factor = Math.min(1, maxSide / Math.max(w, h));
  const outW = Math.max(1, Math.round(w * factor));
  const outH = Math.max(1, Math.round(h * factor));
  // the analysed region, found on the decoded image, in original pixels, then at display size
  const sx = w / image.width;
  const sy = h / image.height;
  const [l, t, r, b] = analysedBox(image, spec.crop);
  const box = [Math.round(l * sx), Math.round(t * sy), Math.round(r * sx), Math.round(b * sy)].map((v) => Math.round(v * factor));
  const region = resize(cells, Math.max(1, box[2] - box[0]), Math.max(1, box[3] - box[1]));
  const photo = resize(image, outW, outH, undefined, 2.0);
  const colours = ramp.map((hex) => [1, 3, 5].map((i) => parseInt(hex.slice(i, i + 2), 16)));
  const span = Math.max(high - low, 1e-6);
  const out = new ImageData(outW, outH);
  for (let y = 0; y < outH; y++) {
    for (let x = 0; x < outW; x++) {
      const rx = x - box[0];
      const ry = y - box[1];
      const inside = rx >= 0 && ry >= 0 && rx < region.width && ry < region.height;
      const cell = inside ? region.data[ry * region.width + rx] : OUTSIDE;
      const heat = above && cell >= low ? Math.min(1, Math.max(0, (cell - low) / span)) : -1;
      const at = (y * outW + x) * 4;
      const from = (y * outW + x) * photo.bands;
      for (let c = 0; c < 3; c++) out.data[at + c] = photo.data[from + c];
      out.data[at + 3] = 255;
      if (heat < 0) continue;
      const pos = heat * (colours.length - 1);
      const lo = Math.floor(pos);
      const hi = Math.min(lo + 1, colours.length - 1);
      const alpha = 0.35 + 0.3 * heat;
      for (let c = 0; c < 3; c++) {
        const colour = Math.trunc(colours[lo][c] * (1 - (pos - lo)) + colours[hi][c] * (pos - lo));
        const base = photo.data[from + c];
        out.data[at + c] = Math.trunc(base + (colour - base) * alpha);
      }
    }
  }
  const canvas = document.createElement("canvas");
  canvas.width = outW;
  canvas.height = outH;
  canvas.getContext("2d").putImageData(out, 0, 0);
  return canvas.toDataURL("image/png").replace(/^data:image\/png;base64,/, "");
}
