#!/usr/bin/env python3
"""How the hair IoU holds up when the frame's edge cuts through the head.

CelebAMask-HQ faces are aligned with the whole head in the frame; a landscape webcam frame often cuts
the top of the hair off and puts the forehead at the top edge, and a portrait phone frame cuts the
sides. Each validation image and its mask are cut to a band of the original (the same rows or
columns of both), segmented whole through the device ``Segmenter`` (``roi="off"``: the model alone,
letterboxed as the contract does; peers through their adapters), and scored against the cut mask:
global IoU, and the share of the band's non-hair pixels marked hair (``false hair``: a forehead painted
as hair shows here). The large tier's first candidates painted such foreheads (issue 28); the
``bands`` augmentation preset is what trains against it.

    python benchmarks/cut_frames.py [--limit 300] [--model NAME=FILE.tflite ...] [--no-peers]
        [--ids FILE] [--data DIR] [--force]

With no ``--model``, the bundled int8 model is measured; the three peers join unless ``--no-peers``.
Results: ``benchmarks/results/cut_frames.{json,md}``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import _common as C  # benchmarks/ is on sys.path when this script runs
import numpy as np

from hairseg_edge.errors import InputError

IDS = C.REPO / "hairseg_edge" / "splits" / "celebamask-hq-hair_val.txt"
#: name -> (axis, start, stop) as fractions of the side: rows 0 (the top) to 1, or columns.
CUTS: dict[str, tuple[str, float, float]] = {
    "whole frame": ("rows", 0.0, 1.0),
    "rows 30-85% (forehead at the top edge)": ("rows", 0.30, 0.85),
    "rows 40-100% (top of the head cut)": ("rows", 0.40, 1.00),
    "columns 25-75% (sides cut)": ("columns", 0.25, 0.75),
}


def cut(rgb: np.ndarray, mask: np.ndarray, axis: str, start: float, stop: float) -> tuple[np.ndarray, np.ndarray]:
    """The band ``start:stop`` (fractions of the side) of rows or columns of an image and its mask."""
    side = rgb.shape[0] if axis == "rows" else rgb.shape[1]
    band = slice(round(start * side), round(stop * side))
    if axis == "rows":
        return np.ascontiguousarray(rgb[band]), mask[band]
    return np.ascontiguousarray(rgb[:, band]), mask[:, band]


def measure(models: dict[str, Path], data: Path, ids: Path, limit: int) -> dict[str, dict[str, dict[str, float]]]:
    variants = {c: (lambda rgb, mask, spec=spec: cut(rgb, mask, *spec)) for c, spec in CUTS.items()}
    meters = C.score_variants(models, data, ids, limit, variants)
    # false hair: the share of the band's non-hair pixels marked hair (false positives over negatives)
    return {name: {c: {"iou": meters[name, c].result().iou,
                       "false_hair": meters[name, c].fp / max(1, meters[name, c].fp + meters[name, c].tn)}
                   for c in CUTS} for name in models}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=C.REPO.parent / "shared" / "data" / "celebamask-hq-hair")
    p.add_argument("--ids", type=Path, default=IDS, help="which ids of --data to use (one per line)")
    p.add_argument("--limit", type=int, default=300, help="validation images to use (from the recorded ids)")
    C.add_model_options(p)
    p.add_argument("--force", action="store_true", help="Overwrite earlier results.")
    a = p.parse_args(argv)
    out_json, out_md = C.RESULTS_DIR / "cut_frames.json", C.RESULTS_DIR / "cut_frames.md"
    try:
        C.refuse_existing([out_json, out_md], a.force)
        if a.limit < 1:
            raise InputError(f"--limit must be >= 1, got {a.limit}")
        models = C.models_to_measure(a.model, "bundled int8", peers=not a.no_peers)
        if not a.data.is_dir():
            raise InputError("no such data folder", a.data)
        scores = measure(models, a.data, a.ids, a.limit)
    except (InputError, ValueError) as exc:
        print(f"cut_frames: {exc}", file=sys.stderr)
        return 2
    result = {"machine": C.machine_info(), "data": a.data.name, "ids": a.ids.name, "limit": a.limit,
              "cuts": {c: list(v) for c, v in CUTS.items()}, "scores": scores,
              "command": C.command_line(__file__, argv)}
    headers = ["model"] + [f"{c}: IoU / false hair" for c in CUTS]
    rows = [[name] + [f"{C.fmt(v[c]['iou'])} / {C.fmt(v[c]['false_hair'], '.3f')}" for c in CUTS]
            for name, v in scores.items()]
    C.write_report(out_json, out_md, result, title="Hair IoU when the frame cuts through the head",
                   about=f"The first {a.limit} ids of `{a.ids.name}` in `{a.data.name}`, each cut to a band of "
                   "rows or columns with its mask and segmented whole (`roi=\"off\"`: the model alone). Global "
                   "IoU against the cut mask; false hair = the share of the band's non-hair pixels marked hair.",
                   headers=headers, rows=rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
