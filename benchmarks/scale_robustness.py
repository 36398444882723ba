#!/usr/bin/env python3
"""How the hair IoU holds up when the head is small in the frame: CelebAMask-HQ faces, zoomed out.

CelebAMask-HQ faces fill most of the frame; photos from phones and webcams often do not (the sample
photo's head is a third of its width). For each zoom factor, every validation image and its mask are
shrunk by that factor (INTER_AREA / nearest) and centred on a canvas of the original size whose border
repeats the image's edge pixels, so there is no black frame to give the scale away. Each model then
segments the canvas through the device ``Segmenter`` (peers through their adapters) and the global IoU
is taken against the shrunk mask. Zoom 1.0 is the plain validation set.

    python benchmarks/scale_robustness.py [--zooms 1.0,0.6,0.4] [--limit 200]
        [--model NAME=FILE.tflite ...] [--no-peers] [--ids FILE] [--data DIR] [--force]

With no ``--model``, the bundled int8 model is measured; the three peers join unless ``--no-peers``.
Results: ``benchmarks/results/scale_robustness.{json,md}``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import _common as C  # benchmarks/ is on sys.path when this script runs

from hairseg_edge.errors import InputError

IDS = C.REPO / "hairseg_edge" / "splits" / "celebamask-hq-hair_val.txt"


def measure(models: dict[str, Path], data: Path, ids: Path, zooms: list[float],
            limit: int) -> dict[str, dict[str, float]]:
    variants = {f"{z:g}": (lambda rgb, mask, z=z: C.zoom_out(rgb, mask, z)) for z in zooms}
    meters = C.score_variants(models, data, ids, limit, variants)
    return {name: {v: meters[name, v].result().iou for v in variants} for name in models}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=C.REPO.parent / "shared" / "data" / "celebamask-hq-hair")
    p.add_argument("--ids", type=Path, default=IDS, help="which ids of --data to use (one per line)")
    p.add_argument("--zooms", default="1.0,0.6,0.4")
    p.add_argument("--limit", type=int, default=200, help="validation images to use (from the recorded ids)")
    C.add_model_options(p)
    p.add_argument("--force", action="store_true", help="Overwrite earlier results.")
    a = p.parse_args(argv)
    out_json, out_md = C.RESULTS_DIR / "scale_robustness.json", C.RESULTS_DIR / "scale_robustness.md"
    try:
        C.refuse_existing([out_json, out_md], a.force)
        zooms = [float(z) for z in a.zooms.split(",")]
        if not all(0.1 <= z <= 1.0 for z in zooms):
            raise InputError(f"--zooms must lie in [0.1, 1], got {a.zooms}")
        models = C.models_to_measure(a.model, "bundled int8", peers=not a.no_peers)
        if not a.data.is_dir():
            raise InputError("no such data folder", a.data)
        iou = measure(models, a.data, a.ids, zooms, a.limit)
    except (InputError, ValueError) as exc:
        print(f"scale_robustness: {exc}", file=sys.stderr)
        return 2
    result = {"machine": C.machine_info(), "data": a.data.name, "ids": a.ids.name,
              "limit": a.limit, "zooms": zooms, "iou": iou,
              "command": C.command_line(__file__, argv)}
    headers = ["model"] + [f"IoU, head at {z:g}x" for z in zooms]
    rows = [[name] + [C.fmt(v[f"{z:g}"]) for z in zooms] for name, v in iou.items()]
    C.write_report(out_json, out_md, result, title="Hair IoU when the head is small in the frame",
                   about=f"The first {a.limit} ids of `{a.ids.name}` in `{a.data.name}`, each shrunk by the zoom "
                   "factor and centred on a canvas of its own size with the edge pixels repeated (see the "
                   "script's docstring). Global IoU against the shrunk mask.", headers=headers, rows=rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
