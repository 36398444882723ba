// Runs one function of examples/web/hairseg.js under Node for tests/test_web.py: a JSON request on
// stdin, a JSON answer on stdout. Pixel arrays travel as base64 (bytes, or little-endian float32).
//
//   {"op": "letterbox", "image": IMAGE, "size": 224}            -> {"input": B64 RGBA, "box": {...}}
//   {"op": "unletterbox", "small": B64 F32, "box": {...}, "output": {...}} -> {"prob": B64 F32, "mask": B64}
//   {"op": "recolor", "image": IMAGE, "weight": B64 F32, "color": [r,g,b], "palette": {...}, "strength": 1}
//                                                                -> {"image": B64 RGBA}
//   {"op": "parse", "values": [...], "palette": {...}}          -> {"results": [[r,g,b] | {"error": "..."}]}
//   {"op": "names", "palette": {...}}                           -> {"names": [...]}
// IMAGE = {"width": W, "height": H, "data": B64 RGBA}

import * as hs from "../examples/web/hairseg.js";

const bytes = (b64) => new Uint8ClampedArray(Buffer.from(b64, "base64"));
const floats = (b64) => {
  const buf = Buffer.from(b64, "base64");
  return new Float32Array(buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength));
};
const b64 = (typed) => Buffer.from(typed.buffer, typed.byteOffset, typed.byteLength).toString("base64");
const image = (img) => ({ width: img.width, height: img.height, data: bytes(img.data) });

const ops = {
  letterbox: (req) => {
    const { input, box } = hs.letterboxImage(image(req.image), req.size);
    return { input: b64(input.data), box };
  },
  unletterbox: (req) => {
    const { prob, mask } = hs.unletterbox(floats(req.small), req.box, req.output);
    return { prob: b64(prob), mask: b64(mask) };
  },
  recolor: (req) => {
    const out = hs.recolor(image(req.image), floats(req.weight), req.color, req.palette, req.strength);
    return { image: b64(out.data) };
  },
  parse: (req) => ({
    results: req.values.map((v) => {
      try {
        return hs.parseColor(v, req.palette);
      } catch (err) {
        return { error: err.message };
      }
    }),
  }),
  names: (req) => ({ names: hs.colorNames(req.palette) }),
};

const chunks = [];
for await (const chunk of process.stdin) chunks.push(chunk);
const request = JSON.parse(Buffer.concat(chunks).toString("utf8"));
process.stdout.write(JSON.stringify(ops[request.op](request)));
