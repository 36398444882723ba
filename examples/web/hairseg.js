// The hairseg contract and `hairseg-edge run --recolor` in plain JavaScript, with no DOM and no
// MediaPipe: pixels in, pixels out. app.js wires it to MediaPipe's ImageSegmenter and the page;
// tests/test_web.py runs these functions under Node against the Python package's own results.
//
// Images are {data, width, height} with 4 bytes per pixel (RGBA, as in a canvas ImageData).

/** Python's round(): half to even, so the letterbox geometry matches hairseg_edge.contract exactly. */
export function roundHalfEven(x) {
  const r = Math.round(x);
  return Math.abs(x % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/** Where an image of srcW x srcH sits inside the size x size model input (contract.letterbox_geometry). */
export function letterboxGeometry(srcW, srcH, size) {
  if (srcW < 1 || srcH < 1) throw new Error(`image has no pixels (${srcW}x${srcH})`);
  const scale = size / Math.max(srcW, srcH);
  const newH = Math.max(1, Math.min(size, roundHalfEven(srcH * scale)));
  const newW = Math.max(1, Math.min(size, roundHalfEven(srcW * scale)));
  return {
    srcW, srcH, size, newW, newH,
    top: Math.floor((size - newH) / 2),
    left: Math.floor((size - newW) / 2),
  };
}

/**
 * Bilinear resize with pixel centres aligned (OpenCV's INTER_LINEAR convention, borders clamped).
 * At exactly half the size it averages 2x2 blocks: the box filter of the contract's halving steps.
 */
export function resizeBilinear(src, srcW, srcH, channels, dstW, dstH, out = null) {
  const dst = out || new Float32Array(dstW * dstH * channels);
  const sx = srcW / dstW;
  const sy = srcH / dstH;
  const x0s = new Int32Array(dstW);
  const x1s = new Int32Array(dstW);
  const fxs = new Float32Array(dstW);
  for (let x = 0; x < dstW; x++) {
    let fx = (x + 0.5) * sx - 0.5;
    let x0 = Math.floor(fx);
    fx -= x0;
    if (x0 < 0) { x0 = 0; fx = 0; }
    if (x0 >= srcW - 1) { x0 = srcW - 1; fx = 0; }
    x0s[x] = x0;
    x1s[x] = Math.min(x0 + 1, srcW - 1);
    fxs[x] = fx;
  }
  for (let y = 0; y < dstH; y++) {
    let fy = (y + 0.5) * sy - 0.5;
    let y0 = Math.floor(fy);
    fy -= y0;
    if (y0 < 0) { y0 = 0; fy = 0; }
    if (y0 >= srcH - 1) { y0 = srcH - 1; fy = 0; }
    const y1 = Math.min(y0 + 1, srcH - 1);
    const row0 = y0 * srcW;
    const row1 = y1 * srcW;
    for (let x = 0; x < dstW; x++) {
      const fx = fxs[x];
      const a = (row0 + x0s[x]) * channels;
      const b = (row0 + x1s[x]) * channels;
      const c = (row1 + x0s[x]) * channels;
      const d = (row1 + x1s[x]) * channels;
      const o = (y * dstW + x) * channels;
      for (let k = 0; k < channels; k++) {
        const top = src[a + k] + (src[b + k] - src[a + k]) * fx;
        const bottom = src[c + k] + (src[d + k] - src[c + k]) * fx;
        dst[o + k] = top + (bottom - top) * fy;
      }
    }
  }
  return dst;
}

/** Per output pixel along one axis: the two source indices and the 8-bit fixed-point weight of the second. */
function exactTaps(srcLen, dstLen) {
  const i0 = new Int32Array(dstLen);
  const i1 = new Int32Array(dstLen);
  const w1 = new Int32Array(dstLen);
  const scale = srcLen / dstLen;
  for (let d = 0; d < dstLen; d++) {
    const f = (d + 0.5) * scale - 0.5;
    const i = Math.floor(f);
    if (i < 0) {
      i0[d] = i1[d] = 0; // left/top border: the edge pixel, weight one
    } else if (i >= srcLen - 1) {
      i0[d] = i1[d] = srcLen - 1;
    } else {
      i0[d] = i;
      i1[d] = i + 1;
      w1[d] = roundHalfEven((f - i) * 256); // OpenCV rounds these half to even too
    }
  }
  return { i0, i1, w1 };
}

/**
 * OpenCV's bit-exact bilinear resize of 8-bit pixels (INTER_LINEAR_EXACT, the contract's
 * IMAGE_INTERPOLATION): weights in 8-bit fixed point, the horizontal pass kept exact, the vertical
 * one rounded half up to 8 bits. Same bytes as cv2.resize on any machine, so the model gets the very
 * input `hairseg-edge run` gives it; the model is sensitive enough that 1-level differences on a few
 * percent of the input moved its 224 px mask by dozens of pixels on the sample photo.
 */
export function resizeExact(src, srcW, srcH, channels, dstW, dstH) {
  const xs = exactTaps(srcW, dstW);
  const ys = exactTaps(srcH, dstH);
  const dst = new Uint8ClampedArray(dstW * dstH * channels);
  const row0 = new Int32Array(dstW * channels);
  const row1 = new Int32Array(dstW * channels);
  const horizontal = (y, out) => {
    const base = y * srcW;
    for (let x = 0; x < dstW; x++) {
      const a = (base + xs.i0[x]) * channels;
      const b = (base + xs.i1[x]) * channels;
      const w1 = xs.w1[x];
      const w0 = 256 - w1;
      for (let k = 0; k < channels; k++) out[x * channels + k] = src[a + k] * w0 + src[b + k] * w1;
    }
  };
  for (let y = 0; y < dstH; y++) {
    horizontal(ys.i0[y], row0);
    horizontal(ys.i1[y], row1);
    const w1 = ys.w1[y];
    const w0 = 256 - w1;
    const o = y * dstW * channels;
    for (let i = 0; i < dstW * channels; i++) {
      dst[o + i] = Math.floor((row0[i] * w0 + row1[i] * w1 + 32768) / 65536);
    }
  }
  return dst;
}

/**
 * The contract's image resampling (contract.resize_image): halve with a 2x2 box filter while the
 * image is at least twice the target, then one bilinear step. Works on RGBA bytes.
 */
export function resizeImage(image, width, height) {
  let { data, width: w, height: h } = image;
  while (w >= 2 * width && h >= 2 * height) {
    const hw = Math.floor(w / 2);
    const hh = Math.floor(h / 2);
    data = resizeExact(data, w, h, 4, hw, hh);
    w = hw;
    h = hh;
  }
  if (w === width && h === height) return { data, width: w, height: h };
  return { data: resizeExact(data, w, h, 4, width, height), width, height };
}

/**
 * An RGBA image of any size -> the size x size model input (RGBA bytes, opaque black padding) and
 * its letterbox geometry (contract.letterbox_image).
 */
export function letterboxImage(image, size) {
  const box = letterboxGeometry(image.width, image.height, size);
  const inner = resizeImage(image, box.newW, box.newH);
  const data = new Uint8ClampedArray(size * size * 4);
  for (let i = 3; i < data.length; i += 4) data[i] = 255;
  for (let y = 0; y < box.newH; y++) {
    const from = y * box.newW * 4;
    data.set(inner.data.subarray(from, from + box.newW * 4), ((box.top + y) * size + box.left) * 4);
  }
  // The model sees RGB only: an image's transparency is dropped as contract.as_rgb_uint8 does.
  for (let i = 3; i < data.length; i += 4) data[i] = 255;
  return { input: { data, width: size, height: size }, box };
}

/**
 * The model's size x size probability map -> {prob, mask} at the image's size, as hairseg-edge run
 * finishes a frame (contract.unletterbox and runtime.Segmenter.finish): crop the padding, resize
 * bilinearly, clamp to [0, 1]; mask (0/255 bytes) where the probability is above the threshold.
 *
 * `output` describes the model's output tensor ({scale, zero_point, integer_threshold} from
 * build/model.json). When it is quantized, the map is taken back to the model's integers (MediaPipe
 * hands out q * scale), resized as integers with the bit-exact bilinear and thresholded as integers,
 * exactly as run does: a float resize would put the edge of a 224 px map upsampled 2-5x half a
 * quantization step away, about a pixel on a small head.
 */
export function unletterbox(small, box, output = { threshold: 0.5 }) {
  const quantized = Boolean(output.scale);
  const same = box.newW === box.srcW && box.newH === box.srcH;
  const crop = quantized ? new Uint8Array(box.newW * box.newH) : new Float32Array(box.newW * box.newH);
  for (let y = 0; y < box.newH; y++) {
    const from = (box.top + y) * box.size + box.left;
    for (let x = 0; x < box.newW; x++) {
      const p = small[from + x];
      crop[y * box.newW + x] = quantized
        ? Math.min(255, Math.max(0, Math.round(p / output.scale + output.zero_point)))
        : p;
    }
  }
  let full;
  if (same) full = crop;
  else if (quantized) full = resizeExact(crop, box.newW, box.newH, 1, box.srcW, box.srcH);
  else full = resizeBilinear(crop, box.newW, box.newH, 1, box.srcW, box.srcH);
  const prob = new Float32Array(full.length);
  const mask = new Uint8Array(full.length);
  for (let i = 0; i < full.length; i++) {
    if (quantized) {
      mask[i] = full[i] > output.integer_threshold ? 255 : 0;
      prob[i] = Math.min(1, Math.max(0, (full[i] - output.zero_point) * output.scale));
    } else {
      mask[i] = full[i] > output.threshold ? 255 : 0;
      prob[i] = Math.min(1, Math.max(0, full[i]));
    }
  }
  return { prob, mask };
}

// ---- colour: sRGB <-> CIE LAB (D65), the conversion OpenCV's COLOR_RGB2LAB does on float input ----

const WHITE = [0.950456, 1.0, 1.088754];
//: sRGB byte -> linear light, and linear light -> sRGB (0..255) on a fine grid: the recolour converts
// every hair pixel both ways, and Math.pow per channel made a 640x480 frame take 250 ms.
const TO_LINEAR = new Float64Array(256);
for (let i = 0; i < 256; i++) {
  const c = i / 255;
  TO_LINEAR[i] = c <= 0.04045 ? c / 12.92 : Math.pow((c + 0.055) / 1.055, 2.4);
}
const GRID = 8192;
const FROM_LINEAR = new Float64Array(GRID + 2);
for (let i = 0; i <= GRID + 1; i++) {
  const c = Math.min(1, i / GRID);
  FROM_LINEAR[i] = 255 * (c <= 0.0031308 ? 12.92 * c : 1.055 * Math.pow(c, 1 / 2.4) - 0.055);
}

function linearToByte(v) {
  if (!(v > 0)) return 0;
  if (v >= 1) return 255;
  const x = v * GRID;
  const i = Math.floor(x);
  return FROM_LINEAR[i] + (FROM_LINEAR[i + 1] - FROM_LINEAR[i]) * (x - i);
}

function labF(t) {
  return t > 0.008856 ? Math.cbrt(t) : 7.787 * t + 16 / 116;
}

function labInv(f) {
  return f > 0.206893 ? f * f * f : (f - 16 / 116) / 7.787;
}

/** Bytes r, g, b -> L, a, b (L 0..100) into out[at..at+2]. */
function labInto(r, g, b, out, at) {
  const R = TO_LINEAR[r];
  const G = TO_LINEAR[g];
  const B = TO_LINEAR[b];
  const X = (0.412453 * R + 0.35758 * G + 0.180423 * B) / WHITE[0];
  const Y = (0.212671 * R + 0.71516 * G + 0.072169 * B) / WHITE[1];
  const Z = (0.019334 * R + 0.119193 * G + 0.950227 * B) / WHITE[2];
  const fy = labF(Y);
  out[at] = Y > 0.008856 ? 116 * fy - 16 : 903.3 * Y;
  out[at + 1] = 500 * (labF(X) - fy);
  out[at + 2] = 200 * (fy - labF(Z));
}

/** L, a, b -> r, g, b (0..255 floats, clamped) into out[0..2]. */
function rgbInto(L, a, b, out) {
  const fy = (L + 16) / 116;
  const Y = L > 7.9996 ? fy * fy * fy : L / 903.3;
  const X = labInv(fy + a / 500) * WHITE[0];
  const Z = labInv(fy - b / 200) * WHITE[2];
  out[0] = linearToByte(3.240479 * X - 1.53715 * Y - 0.498535 * Z);
  out[1] = linearToByte(-0.969256 * X + 1.875991 * Y + 0.041556 * Z);
  out[2] = linearToByte(0.055648 * X - 0.204043 * Y + 1.057311 * Z);
}

/** r, g, b bytes -> [L, a, b] (L 0..100), OpenCV's COLOR_RGB2LAB on float input. */
export function rgbToLab(r, g, b) {
  const out = [0, 0, 0];
  labInto(r, g, b, out, 0);
  return out;
}

/** [L, a, b] -> [r, g, b] in 0..255 (floats, clamped). */
export function labToRgb(L, a, b) {
  const out = [0, 0, 0];
  rgbInto(L, a, b, out);
  return out;
}

// ---- the palette and the recolour ------------------------------------------------------------------

/**
 * A colour as `hairseg-edge run --recolor` takes it: a name from the palette (spaces, '-' and '_'
 * ignored), #rrggbb, #rgb or r,g,b. Returns [r, g, b] or throws an Error with one line.
 */
export function parseColor(value, palette) {
  const text = String(value).trim().toLowerCase();
  const key = text.replace(/[\s_-]/g, "");
  if (Object.prototype.hasOwnProperty.call(palette.colors, key)) return palette.colors[key].slice();
  const hex = /^#?([0-9a-f]{6}|[0-9a-f]{3})$/.exec(text);
  if (hex) {
    let digits = hex[1];
    if (digits.length === 3) digits = [...digits].map((c) => c + c).join("");
    return [0, 2, 4].map((i) => parseInt(digits.slice(i, i + 2), 16));
  }
  const parts = text.split(",").map((p) => p.trim());
  if (parts.length === 3 && parts.every((p) => /^\d{1,3}$/.test(p))) {
    const rgb = parts.map(Number);
    if (rgb.every((c) => c <= 255)) return rgb;
  }
  throw new Error(`not a colour: '${value}' (use a name, #rrggbb or r,g,b)`);
}

/** The palette's names for a menu: one name per colour (the first, e.g. "blonde" not "blond"). */
export function colorNames(palette) {
  const seen = new Set();
  const names = [];
  for (const [name, rgb] of Object.entries(palette.colors)) {
    const key = rgb.join(",");
    if (!seen.has(key)) {
      seen.add(key);
      names.push(name);
    }
  }
  return names;
}

/**
 * Recolour the hair of an RGBA image the way hairseg_edge.render.recolor does: in LAB, shift the
 * hair's mean a/b onto the target's, move its lightness to the target's with the deviations scaled
 * by a clamped gain, then blend with the original by the per-pixel weight (the soft matte).
 * `weight` is a Float32Array of width*height values in [0, 1]; `palette` is build/palette.json.
 */
export function recolor(image, weight, color, palette, strength = palette.strength) {
  const { data, width, height } = image;
  const out = new Uint8ClampedArray(data);
  if (!(strength >= 0 && strength <= 1)) throw new Error(`strength must be in [0, 1], got ${strength}`);
  const n = width * height;
  const w = new Float32Array(n);
  for (let i = 0; i < n; i++) w[i] = Math.min(1, Math.max(0, weight[i])) * strength;
  const cut = palette.threshold * strength;
  // Mean LAB over confident hair pixels; the LAB of every pixel that will change is kept.
  const lab = new Float32Array(n * 3);
  let sumL = 0, sumA = 0, sumB = 0, count = 0;
  for (let i = 0; i < n; i++) {
    if (w[i] < palette.min_weight) continue;
    labInto(data[4 * i], data[4 * i + 1], data[4 * i + 2], lab, 3 * i);
    if (strength > 0 && w[i] > cut) {
      sumL += lab[3 * i]; sumA += lab[3 * i + 1]; sumB += lab[3 * i + 2]; count++;
    }
  }
  if (count === 0) return { data: out, width, height };
  const mean = [sumL / count, sumA / count, sumB / count];
  const target = rgbToLab(color[0], color[1], color[2]);
  const ratio = target[0] / Math.max(mean[0], 1);
  const gain = Math.min(palette.max_gain, Math.max(palette.min_gain, ratio));
  const shiftA = target[1] - mean[1];
  const shiftB = target[2] - mean[2];
  const rgb = [0, 0, 0];
  for (let i = 0; i < n; i++) {
    const wi = w[i];
    if (wi < palette.min_weight) continue;
    const L = Math.min(100, Math.max(0, (lab[3 * i] - mean[0]) * gain + target[0]));
    rgbInto(L, lab[3 * i + 1] + shiftA, lab[3 * i + 2] + shiftB, rgb);
    for (let k = 0; k < 3; k++) {
      out[4 * i + k] = Math.round(data[4 * i + k] * (1 - wi) + Math.round(rgb[k]) * wi);
    }
  }
  return { data: out, width, height };
}

/** Median of a list of numbers (the ms/frame figure). */
export function median(values) {
  if (!values.length) return NaN;
  const s = [...values].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}
