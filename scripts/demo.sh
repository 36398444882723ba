#!/usr/bin/env sh
# `make demo`: the main job on the bundled model and the sample photo. Rerunnable (passes --force).
#   1. re-export the bundled float model to float32 + int8, proving int8 against the float original
#   2. bench float32 vs int8 side by side (each in its own process, one thread)
#   3. segment examples/astronaut.png: mask, overlay, soft matte and a recoloured version
#      then the same photo shrunk to 0.4x on a grey canvas (a small head): one pass vs the region stage
set -eu
OUT="${OUT:-demo-out}"
PHOTO="${PHOTO:-examples/astronaut.png}"
mkdir -p "$OUT"

echo "== 1/3  export the bundled float model to int8, with the accuracy gate"
set +e
if [ -n "${HAIRSEG_DATA:-}" ]; then
    echo "calibrating on the training split and checking on the validation split of $HAIRSEG_DATA"
    hairseg-edge export --float32 --int8 --data "$HAIRSEG_DATA" --limit 400 --out "$OUT/export" --force
else
    python scripts/demo_images.py "$PHOTO" "$OUT/smoke-images" || exit 2
    echo "WARNING: HAIRSEG_DATA is not set, so this is a SMOKE calibration (the sample"
    echo "         photo, augmented variants of it and generated faces) and the gate"
    echo "         checks agreement with the float model only (>= 0.97). Set"
    echo "         HAIRSEG_DATA=/path/to/celebamask-hq-hair for a real accuracy check."
    hairseg-edge export --float32 --int8 --calib "$OUT/smoke-images" --eval "$OUT/smoke-images" \
        --out "$OUT/export" --force
fi
rc=$?
set -e
INT8="$OUT/export/hairseg_float-int8.tflite"
if [ "$rc" -eq 1 ]; then
    # The gate did its job: the re-exported int8 was refused and not written. The rest of the demo uses
    # the bundled int8 model, which passed the same gate on real data (see its MODEL_CARD.md).
    INT8="$(python -c 'from hairseg_edge.models import default_model_path; print(default_model_path("int8"))')"
    echo "NOTE: the gate refused this re-export (see above), so nothing was written for int8;"
    echo "      continuing with the bundled int8 model: $INT8"
elif [ "$rc" -ne 0 ]; then
    exit "$rc"
fi

echo "== 2/3  bench float32 vs int8 (one thread, each model in its own process)"
hairseg-edge bench "$OUT/export/hairseg_float-float32.tflite" "$INT8" --threads 1 --runs 200 \
    --json "$OUT/bench.json" --force

echo "== 3/3  segment and recolour $PHOTO"
hairseg-edge run "$PHOTO" --out "$OUT/run" --overlay --soft --recolor auburn --force
echo "-- and a small head: $PHOTO at 0.4x on a grey canvas, --roi off vs --roi auto"
python - "$PHOTO" "$OUT/small-head.png" <<'PY'
import sys
import cv2
import numpy as np
from hairseg_edge.imageio import read_image
rgb = read_image(sys.argv[1])
h, w = rgb.shape[:2]
sh, sw = round(h * 0.4), round(w * 0.4)
canvas = np.full_like(rgb, 128)
canvas[(h - sh) // 2:(h - sh) // 2 + sh, (w - sw) // 2:(w - sw) // 2 + sw] = cv2.resize(rgb, (sw, sh), interpolation=cv2.INTER_AREA)
cv2.imwrite(sys.argv[2], cv2.cvtColor(canvas, cv2.COLOR_RGB2BGR))
PY
hairseg-edge run "$OUT/small-head.png" --roi off --out "$OUT/run-small-roi-off" --overlay --force
hairseg-edge run "$OUT/small-head.png" --roi auto --out "$OUT/run-small-roi-auto" --overlay --force
python - "$PHOTO" "$OUT" <<'PY'
# The full-size photo's own mask, shrunk like the photo, is the reference for the small head.
import sys
import cv2
import numpy as np
from hairseg_edge.imageio import read_image
from hairseg_edge.models import default_model_path
from hairseg_edge.runtime import Segmenter
photo, out = sys.argv[1], sys.argv[2]
with Segmenter(default_model_path("int8"), roi="off") as seg:
    full = seg.segment(read_image(photo)).mask.astype(np.uint8)
h, w = full.shape
sh, sw = round(h * 0.4), round(w * 0.4)
ref = np.zeros_like(full)
ref[(h - sh) // 2:(h - sh) // 2 + sh, (w - sw) // 2:(w - sw) // 2 + sw] = cv2.resize(full, (sw, sh), interpolation=cv2.INTER_NEAREST_EXACT)
for mode in ("off", "auto"):
    mask = cv2.imread(f"{out}/run-small-roi-{mode}/small-head_mask.png", cv2.IMREAD_GRAYSCALE) > 0
    iou = (mask & (ref > 0)).sum() / max(1, (mask | (ref > 0)).sum())
    print(f"--roi {mode:4}: {int(mask.sum()):6d} hair pixels, IoU {iou:.3f} with the full-size photo's mask shrunk alike")
PY
echo "done: see $OUT/run/ (mask, overlay, matte, recolour), $OUT/export/report.md, $OUT/bench.json and $OUT/run-small-roi-{off,auto}/ (the small head)"
