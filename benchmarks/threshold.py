#!/usr/bin/env python3
"""Is 0.5 the right threshold for a model's hair probability? Global IoU at thresholds around it.

A model that scores its training photos better at, say, 0.45 could be recalibrated for free (shift the
bias of its last layer), so this is measured before any capacity is spent. The thresholds are scored on
each data set's **training** photos (an evenly spaced sample of the ids the validation lists do not
name), never on the validation split: choosing a threshold there would tune on the test. The
validation IoU at 0.5 stands beside them, and the gap between the two says whether the model underfits
(a small gap) or overfits (a large one).

    python benchmarks/threshold.py [--model FILE.tflite] [--limit 600] [--data DIR ...] [--force]

Default: the bundled int8 model on the three data sets. Results: ``benchmarks/results/threshold.{json,md}``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

import _common as C  # benchmarks/ is on sys.path when this script runs

from hairseg_edge.data import iter_samples, open_dataset, read_id_list
from hairseg_edge.errors import InputError
from hairseg_edge.metrics import SegmentationMeter
from hairseg_edge.runtime import Segmenter

SPLITS = C.REPO / "hairseg_edge" / "splits"
SETS = (C.DEFAULT_CELEBA, *C.DEFAULT_WILD)
THRESHOLDS = tuple(round(t, 2) for t in np.arange(0.30, 0.701, 0.05))


def split_samples(data: Path, ids_file: Path, limit: int) -> tuple[list, list]:
    """(an evenly spaced sample of at most ``limit`` training samples, every validation sample)."""
    dataset = open_dataset(data)
    val_ids = set(read_id_list(ids_file))
    train = [s for s in dataset.samples if s.id not in val_ids]
    val = [s for s in dataset.samples if s.id in val_ids]
    if not train or not val:
        raise InputError(f"needs both training and validation photos (found {len(train)} and {len(val)})",
                         data)
    step = max(1, len(train) // limit)
    return train[::step][:limit], val


def iou_at(segmenter: Segmenter, samples: list, thresholds: tuple[float, ...]) -> list[float]:
    """Global IoU over ``samples`` at each threshold of the model's probability (one meter each, the
    same arithmetic as ``hairseg-edge eval``)."""
    meters = [SegmentationMeter() for _ in thresholds]
    for _, rgb, mask in iter_samples(samples):
        probability = segmenter.segment(rgb).probability
        for meter, t in zip(meters, thresholds):
            meter.update(probability > t, mask)
    return [meter.result().iou for meter in meters]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", type=Path, default=None, help="a .tflite model (default: the bundled int8)")
    p.add_argument("--data", type=Path, action="append", default=None,
                   help="a data set folder with a recorded validation list in hairseg_edge/splits "
                        "(repeatable; default: the three data sets)")
    p.add_argument("--splits", type=Path, default=SPLITS, help="where the <set>_val.txt id lists are")
    p.add_argument("--limit", type=int, default=600, help="training photos per data set")
    p.add_argument("--force", action="store_true", help="Overwrite earlier results.")
    a = p.parse_args(argv)
    out_json, out_md = C.RESULTS_DIR / "threshold.json", C.RESULTS_DIR / "threshold.md"
    sets = tuple(a.data or SETS)
    try:
        C.refuse_existing([out_json, out_md], a.force)
        if a.limit < 1:
            raise InputError(f"--limit must be at least 1, got {a.limit}")
        from hairseg_edge.models import default_model_path

        model = a.model or default_model_path("int8")
        if not Path(model).is_file():
            raise InputError("no such model file", model)
        rows, scores = [], {}
        with Segmenter(model) as segmenter:
            for data in sets:
                ids_file = a.splits / f"{data.name}_val.txt"
                if not data.is_dir() or not ids_file.is_file():
                    raise InputError("no such data folder, or no recorded validation list for it", data)
                train, val = split_samples(data, ids_file, a.limit)
                train_iou = iou_at(segmenter, train, THRESHOLDS)
                [val_iou] = iou_at(segmenter, val, (0.5,))
                best = int(np.argmax(train_iou))
                at_half = train_iou[THRESHOLDS.index(0.5)]
                scores[data.name] = {"train_images": len(train), "val_images": len(val),
                                     "train_iou": dict(zip(map(str, THRESHOLDS), train_iou)),
                                     "best_threshold": THRESHOLDS[best], "val_iou_at_0.5": val_iou}
                rows.append([data.name, len(train), *(f"{v:.4f}" for v in train_iou),
                             f"{THRESHOLDS[best]:.2f} ({100 * (train_iou[best] - at_half):+.2f})",
                             f"{val_iou:.4f} ({100 * (val_iou - at_half):+.2f})"])
                print(f"{data.name:22s} best {THRESHOLDS[best]:.2f}  train@0.5 {at_half:.4f}"
                      f"  val@0.5 {val_iou:.4f}", flush=True)
    except (InputError, ValueError) as exc:
        print(f"threshold: {exc}", file=sys.stderr)
        return 2
    result = {"machine": C.machine_info(), "model": str(model), "thresholds": list(THRESHOLDS),
              "scores": scores, "command": C.command_line(__file__, argv)}
    headers = (["data set", "train photos"] + [f"IoU @{t:.2f}" for t in THRESHOLDS]
               + ["best threshold (gain over 0.5)", "validation IoU @0.50 (vs train)"])
    shown = Path(model).resolve()
    shown = shown.relative_to(C.REPO) if C.REPO in shown.parents else shown
    C.write_report(out_json, out_md, result, title="Hair probability threshold", headers=headers, rows=rows,
                   about=f"Model: `{shown}`. Global IoU on an evenly spaced sample of each data set's training "
                   "photos (never its recorded validation ids) at each threshold of the model's probability, "
                   "through `Segmenter.segment` (the contract's letterbox and map-back); gain in points. "
                   "The last column is the validation split at the shipped threshold, 0.5, and its "
                   "difference from the training photos at 0.5.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
