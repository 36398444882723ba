// The page: MediaPipe's ImageSegmenter (WebAssembly, CPU) on the bundled int8 hairseg model, fed the
// way the hairseg contract says (letterboxed, box-filtered to the model's input size by hairseg.js),
// and the hair recoloured like `hairseg-edge run --recolor`.
//
// Everything is loaded from this folder: the npm package from node_modules/ (installed by `make web`,
// never a CDN) and build/ (the model, its input size and the palette, written by `make web`).
//
// For scripts (scripts/check_web.py) the page publishes window.hairseg: `ready`, `error`, the last
// result (`last`), the last refusal (`message`), maskPng() and timeSegment(n).

import {
  FilesetResolver,
  ImageSegmenter,
} from "./node_modules/@mediapipe/tasks-vision/vision_bundle.mjs";
import * as hs from "./hairseg.js";

const WASM_DIR = "./node_modules/@mediapipe/tasks-vision/wasm";
const BUILD_DIR = "./build";

const $ = (id) => document.getElementById(id);
const api = { ready: false, error: null, seq: 0, last: null, message: null, messageSeq: 0 };
window.hairseg = api;

const state = {
  segmenter: null,
  size: 0,
  palette: null,
  output: null, // the model's output tensor: {threshold, scale, zero_point, integer_threshold}
  mode: "IMAGE",
  current: null, // {name, image, input, box, small, prob, mask}
  stream: null,
  lastVideoTime: -1,
  timings: [],
};

const work = document.createElement("canvas");
const workCtx = work.getContext("2d", { willReadFrequently: true });
const output = $("output");
const outputCtx = output.getContext("2d");
const before = $("before");
const beforeCtx = before.getContext("2d");

// ---- messages ----------------------------------------------------------------------------------------

function showMessage(text) {
  const box = $("message");
  box.textContent = text;
  box.hidden = false;
  api.message = text;
  api.messageSeq += 1;
}

function clearMessage() {
  $("message").hidden = true;
  $("message").textContent = "";
}

function setStatus(text) {
  $("status").textContent = text;
}

// ---- loading -----------------------------------------------------------------------------------------

async function fetchJson(path) {
  const response = await fetch(path);
  if (!response.ok) {
    throw new Error(`${path} is missing (HTTP ${response.status}): run \`make web\` from the repository`);
  }
  return response.json();
}

async function load() {
  const model = await fetchJson(`${BUILD_DIR}/model.json`);
  state.palette = await fetchJson(`${BUILD_DIR}/palette.json`);
  state.size = model.input_size;
  state.output = model.output;
  const vision = await FilesetResolver.forVisionTasks(WASM_DIR);
  state.segmenter = await ImageSegmenter.createFromOptions(vision, {
    baseOptions: { modelAssetPath: `${BUILD_DIR}/${model.file}`, delegate: "CPU" },
    runningMode: "IMAGE",
    outputConfidenceMasks: true,
    outputCategoryMask: false,
  });
  // One run on a blank frame: the first segment() sets up the graph and would otherwise count in the
  // first photo's ms/frame.
  segment({ data: new Uint8ClampedArray(state.size * state.size * 4).fill(255), width: state.size,
    height: state.size });
  warmUpJavaScript();
  fillControls();
  const labels = state.segmenter.getLabels().join(", ");
  setStatus(`Ready: ${model.file} (${state.size} px input, labels: ${labels}). Choose a photo or start the webcam.`);
  api.ready = true;
}

/**
 * The JavaScript half of a frame, three times on a made-up picture and hair map: the engine compiles
 * these loops on first use, which made the first photo's frame take 10x its real time.
 */
function warmUpJavaScript() {
  const width = 300;
  const height = 200;
  const data = new Uint8ClampedArray(width * height * 4);
  for (let i = 0; i < data.length; i++) data[i] = (i * 37) & 255;
  const small = new Float32Array(state.size * state.size);
  for (let i = 0; i < small.length; i++) small[i] = i % state.size < state.size / 2 ? 0.9 : 0.1;
  const color = Object.values(state.palette.colors)[0];
  for (let round = 0; round < 3; round++) {
    const { box } = hs.letterboxImage({ data, width, height }, state.size);
    const { prob } = hs.unletterbox(small, box, state.output);
    hs.recolor({ data, width, height }, prob, color, state.palette, 1);
  }
}

function fillControls() {
  const select = $("color");
  for (const name of hs.colorNames(state.palette)) {
    const option = document.createElement("option");
    option.value = name;
    option.textContent = name;
    select.append(option);
  }
  const custom = document.createElement("option");
  custom.value = "custom";
  custom.textContent = "custom (picker)";
  select.append(custom);
  select.value = state.palette.colors.copper ? "copper" : select.options[0].value;
  $("strength").value = String(state.palette.strength);
  $("strength-value").textContent = Number(state.palette.strength).toFixed(2);
  for (const id of ["file", "camera", "color", "custom", "strength", "view"]) $(id).disabled = false;
}

// ---- one frame: letterbox -> MediaPipe -> back to the image -> recolour --------------------------------

function segment(input, timestamp) {
  const frame = new ImageData(input.data, input.width, input.height);
  const result = state.mode === "VIDEO"
    ? state.segmenter.segmentForVideo(frame, timestamp)
    : state.segmenter.segment(frame);
  try {
    const mask = result.confidenceMasks[0]; // the model's one channel: the hair probability
    const values = mask.getAsFloat32Array();
    if (mask.width === input.width && mask.height === input.height) return Float32Array.from(values);
    return hs.resizeBilinear(values, mask.width, mask.height, 1, input.width, input.height);
  } finally {
    result.close();
  }
}

function processImage(name, image, timestamp) {
  const t0 = performance.now();
  const { input, box } = hs.letterboxImage(image, state.size);
  const t1 = performance.now();
  const small = segment(input, timestamp);
  const t2 = performance.now();
  const { prob, mask } = hs.unletterbox(small, box, state.output);
  state.current = { name, image, input, box, small, prob, mask };
  render();
  const t3 = performance.now();
  return { letterboxMs: t1 - t0, segmentMs: t2 - t1, frameMs: t3 - t0 };
}

function currentColor() {
  const choice = $("color").value;
  return choice === "custom" ? hs.parseColor($("custom").value, state.palette) : state.palette.colors[choice];
}

function render() {
  const cur = state.current;
  if (!cur) return;
  const { image, prob, mask } = cur;
  let shown;
  const view = $("view").value;
  if (view === "mask") {
    const data = new Uint8ClampedArray(image.width * image.height * 4);
    for (let i = 0; i < mask.length; i++) {
      data[4 * i] = data[4 * i + 1] = data[4 * i + 2] = mask[i];
      data[4 * i + 3] = 255;
    }
    shown = { data, width: image.width, height: image.height };
  } else if (view === "original") {
    shown = image;
  } else {
    shown = hs.recolor(image, prob, currentColor(), state.palette, Number($("strength").value));
  }
  for (const canvas of [output, before]) {
    if (canvas.width !== image.width || canvas.height !== image.height) {
      canvas.width = image.width;
      canvas.height = image.height;
    }
  }
  beforeCtx.putImageData(new ImageData(image.data, image.width, image.height), 0, 0);
  outputCtx.putImageData(new ImageData(shown.data, shown.width, shown.height), 0, 0);
}

function publish(timing) {
  const cur = state.current;
  let hairPixels = 0;
  for (let i = 0; i < cur.mask.length; i++) if (cur.mask[i]) hairPixels++;
  api.seq += 1;
  api.last = {
    seq: api.seq,
    name: cur.name,
    width: cur.image.width,
    height: cur.image.height,
    hairPixels,
    segmentMs: timing.segmentMs,
    frameMs: timing.frameMs,
    mode: state.mode,
  };
}

function showTiming(timing, prefix = "") {
  $("timing").textContent = `${prefix}${timing.frameMs.toFixed(1)} ms/frame: ` +
    `MediaPipe segment ${timing.segmentMs.toFixed(1)} ms (WASM, CPU) + ` +
    `${(timing.frameMs - timing.segmentMs).toFixed(1)} ms letterbox, resize back and recolour (JS)`;
}

// ---- photos ------------------------------------------------------------------------------------------

function readPixels(source, width, height) {
  if (work.width !== width || work.height !== height) {
    work.width = width;
    work.height = height;
  }
  workCtx.drawImage(source, 0, 0);
  const pixels = workCtx.getImageData(0, 0, width, height);
  return { data: pixels.data, width, height };
}

async function onFile(file) {
  if (!file) return;
  stopCamera();
  clearMessage();
  let bitmap;
  try {
    // No colour management: the model gets the file's own RGB values, as hairseg-edge run reads them.
    bitmap = await createImageBitmap(file, { colorSpaceConversion: "none", premultiplyAlpha: "none" });
  } catch (err) {
    const kind = file.type ? `type ${file.type}` : "unknown type";
    showMessage(file.type.startsWith("image/")
      ? `${file.name}: the browser could not decode this image (${kind}); nothing was segmented.`
      : `${file.name}: not an image (${kind}); choose a photo (JPEG, PNG, WebP, ...).`);
    return;
  }
  try {
    const image = readPixels(bitmap, bitmap.width, bitmap.height);
    bitmap.close();
    const timing = processImage(file.name, image);
    showTiming(timing);
    setStatus(`${file.name}: ${image.width}×${image.height}`);
    publish(timing);
  } catch (err) {
    showMessage(`${file.name}: segmentation failed: ${err.message || err}`);
  }
}

// ---- webcam (live) -------------------------------------------------------------------------------------

async function startCamera() {
  clearMessage();
  const video = $("video");
  try {
    state.stream = await navigator.mediaDevices.getUserMedia({
      video: { width: { ideal: 640 }, height: { ideal: 480 } },
      audio: false,
    });
  } catch (err) {
    showMessage(`No webcam: ${err.name || "error"}: ${err.message || err}`);
    return;
  }
  video.srcObject = state.stream;
  await video.play();
  await state.segmenter.setOptions({ runningMode: "VIDEO" });
  state.mode = "VIDEO";
  state.timings = [];
  state.lastVideoTime = -1;
  $("camera").textContent = "Stop webcam";
  setStatus(`Webcam: ${video.videoWidth}×${video.videoHeight}, live`);
  requestAnimationFrame(cameraFrame);
}

function cameraFrame() {
  if (!state.stream) return;
  const video = $("video");
  if (video.readyState >= 2 && video.currentTime !== state.lastVideoTime && video.videoWidth > 0) {
    state.lastVideoTime = video.currentTime;
    try {
      const image = readPixels(video, video.videoWidth, video.videoHeight);
      const timing = processImage("webcam", image, performance.now());
      state.timings.push(timing);
      if (state.timings.length > 30) state.timings.shift();
      const mean = (key) => state.timings.reduce((s, t) => s + t[key], 0) / state.timings.length;
      showTiming({ frameMs: mean("frameMs"), segmentMs: mean("segmentMs") }, "live, mean of 30: ");
      publish(timing);
    } catch (err) {
      showMessage(`webcam frame failed: ${err.message || err}`);
      stopCamera();
      return;
    }
  }
  requestAnimationFrame(cameraFrame);
}

function stopCamera() {
  if (!state.stream) return;
  for (const track of state.stream.getTracks()) track.stop();
  state.stream = null;
  $("video").srcObject = null;
  $("camera").textContent = "Start webcam";
  // A promise, but segment() after it is safe: setOptions applies before the next graph run.
  state.segmenter.setOptions({ runningMode: "IMAGE" });
  state.mode = "IMAGE";
}

// ---- for scripts ------------------------------------------------------------------------------------

/** The current 0/255 mask (hair = 255, at the image's size) as a PNG data URL. */
api.maskPng = () => {
  const cur = state.current;
  if (!cur) return null;
  const { mask } = cur;
  const canvas = document.createElement("canvas");
  canvas.width = cur.image.width;
  canvas.height = cur.image.height;
  const ctx = canvas.getContext("2d");
  const data = new Uint8ClampedArray(mask.length * 4);
  for (let i = 0; i < mask.length; i++) {
    data[4 * i] = data[4 * i + 1] = data[4 * i + 2] = mask[i];
    data[4 * i + 3] = 255;
  }
  ctx.putImageData(new ImageData(data, canvas.width, canvas.height), 0, 0);
  return canvas.toDataURL("image/png");
};

/** MediaPipe segment() on the current photo's model input, n times: the times in ms. */
api.timeSegment = (n) => {
  if (!state.current || state.mode !== "IMAGE") return [];
  const times = [];
  for (let i = 0; i < n; i++) {
    const t0 = performance.now();
    segment(state.current.input);
    times.push(performance.now() - t0);
  }
  return times;
};

// ---- wiring ---------------------------------------------------------------------------------------------

$("file").addEventListener("change", (event) => onFile(event.target.files[0]));
$("camera").addEventListener("click", () => (state.stream ? stopCamera() : startCamera()));
$("color").addEventListener("change", render);
$("custom").addEventListener("input", () => {
  $("color").value = "custom";
  render();
});
$("strength").addEventListener("input", () => {
  $("strength-value").textContent = Number($("strength").value).toFixed(2);
  render();
});
$("view").addEventListener("change", render);

load().catch((err) => {
  api.error = String(err.message || err);
  setStatus("Not ready.");
  showMessage(`Could not start: ${api.error}`);
});
