#!/usr/bin/env python3
"""Where the CelebAMask-HQ validation error lives, and which models were trained on those photos.

Two measurements on the recorded CelebAMask-HQ validation split (``hairseg_edge/splits``), every model
through ``Segmenter.segment`` (the contract's letterbox and map-back, as ``hairseg-edge eval``):

1. **Error structure**: global IoU; the share of wrong pixels lying within 1, 2, 3 and 5 px of the
   labelled hair boundary (how much is boundary precision, where annotators disagree too); the share
   carried by the worst 10% of photos.
2. **A memorisation probe**: photos of the split whose label is plainly wrong, where an arm, hands, a
   hat or a headband is painted as hair (``benchmarks/label_errors/celebamask-hq-hair.txt``, with what
   is wrong in each). A model can agree with such a label only if it learned that very photo: a high
   IoU on them says the model was trained on the validation photos, so its IoU on the split is
   in-sample and not comparable with a model that never saw them.

The listed photos were found among the photos the bundled model gets most wrong, so the IoU "without
the listed photos" favours it by construction: it says how much a handful of bad labels weighs in the
global IoU, not which model is better.

    python benchmarks/label_noise.py [--data DIR] [--model NAME=FILE.tflite ...] [--no-peers] [--force]

Default: the bundled int8 model and the peers in ../shared/peers. Results:
``benchmarks/results/label_noise.{json,md}``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np

import _common as C  # benchmarks/ is on sys.path when this script runs

from hairseg_edge.data import iter_samples, open_dataset, read_id_list
from hairseg_edge.errors import InputError
from hairseg_edge.metrics import SegmentationMeter, iou
from hairseg_edge.runtime import Segmenter

VAL_IDS = C.REPO / "hairseg_edge" / "splits" / "celebamask-hq-hair_val.txt"
LABEL_ERRORS = C.BENCH_DIR / "label_errors" / "celebamask-hq-hair.txt"
BANDS = (1, 2, 3, 5)  # px from the labelled boundary


def read_label_errors(path: Path) -> dict[str, str]:
    """``id  # what is wrong`` lines -> {id: what is wrong}; '#' lines are comments."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise InputError(f"cannot read the list of mislabelled photos ({exc.strerror or exc})", path) from None
    entries = {}
    for line in lines:
        sample_id, _, what = line.partition("#")
        if sample_id.strip():
            entries[sample_id.strip()] = what.strip()
    if not entries:
        raise InputError("the list of mislabelled photos is empty", path)
    return entries


def boundary_distance(truth: np.ndarray) -> np.ndarray:
    """Each pixel's distance in px to the labelled hair boundary (the mask's morphological gradient)."""
    edge = cv2.morphologyEx(truth.astype(np.uint8), cv2.MORPH_GRADIENT, np.ones((3, 3), np.uint8)) > 0
    if not edge.any():  # no hair, or hair everywhere: every pixel is "far"
        return np.full(truth.shape, np.inf, np.float32)
    return cv2.distanceTransform((~edge).astype(np.uint8), cv2.DIST_L2, 3)


def measure(segmenter: Segmenter, samples: list, listed: set[str]) -> dict:
    """One model over the split: global IoU with and without the listed photos, the error structure and
    the IoU of every listed photo."""
    every, rest = SegmentationMeter(), SegmentationMeter()
    near = dict.fromkeys(BANDS, 0)
    wrong_per_photo, photo_iou = [], {}
    for sample, rgb, mask in iter_samples(samples):
        pred, truth = segmenter.segment(rgb).mask > 0, mask > 0
        wrong = pred ^ truth
        every.update(pred, truth)
        if sample.id in listed:
            photo_iou[sample.id] = iou(pred, truth)
        else:
            rest.update(pred, truth)
        distance = boundary_distance(truth)
        for band in BANDS:
            near[band] += int((wrong & (distance <= band)).sum())
        wrong_per_photo.append(int(wrong.sum()))
    total = max(sum(wrong_per_photo), 1)
    worst = sorted(wrong_per_photo, reverse=True)[:max(1, len(wrong_per_photo) // 10)]
    rest_iou = rest.result().iou if len(photo_iou) < len(wrong_per_photo) else None  # every photo listed
    return {"iou": every.result().iou, "iou_without_listed": rest_iou, "photos": len(wrong_per_photo),
            "wrong_within_px": {str(b): near[b] / total for b in BANDS},
            "wrong_in_worst_tenth": sum(worst) / total, "listed_iou": photo_iou}


def mean_listed_iou(scores: dict) -> float:
    """A model's mean IoU over the listed photos (a :func:`measure` result)."""
    return float(np.mean(list(scores["listed_iou"].values())))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=C.DEFAULT_CELEBA, help="the CelebAMask-HQ hair data set")
    p.add_argument("--val-ids", type=Path, default=VAL_IDS, help="the validation id list")
    p.add_argument("--label-errors", type=Path, default=LABEL_ERRORS, help="the mislabelled photos")
    C.add_model_options(p)
    p.add_argument("--force", action="store_true", help="Overwrite earlier results.")
    a = p.parse_args(argv)
    out_json, out_md = C.RESULTS_DIR / "label_noise.json", C.RESULTS_DIR / "label_noise.md"
    try:
        C.refuse_existing([out_json, out_md], a.force)
        models = C.models_to_measure(a.model, "hairseg int8 (bundled)", peers=not a.no_peers)
        if not a.data.is_dir():
            raise InputError("no such data folder", a.data)
        listed = read_label_errors(a.label_errors)
        val_ids = set(read_id_list(a.val_ids))
        samples = [s for s in open_dataset(a.data).samples if s.id in val_ids]
        if not samples:
            raise InputError("none of the validation ids is in this data set", a.data)
        missing = sorted(set(listed) - {s.id for s in samples})
        if missing:
            raise InputError(f"listed as mislabelled but not in the validation split: {', '.join(missing)}",
                             a.label_errors)
        scores = {}
        for name, path in models.items():
            with Segmenter(path) as segmenter:
                scores[name] = s = measure(segmenter, samples, set(listed))
            print(f"{name:28s} IoU {s['iou']:.4f}  without the listed {s['iou_without_listed']:.4f}  "
                  f"listed photos {mean_listed_iou(s):.3f}", flush=True)
    except (InputError, ValueError) as exc:
        print(f"label_noise: {exc}", file=sys.stderr)
        return 2
    result = {"machine": C.machine_info(), "data": a.data.name, "label_errors": listed, "scores": scores,
              "command": C.command_line(__file__, argv)}
    page = report(result)
    C.write_json(out_json, result)
    C.write_text(out_md, page, force=True)
    print(page.split("\n## ", 1)[1])
    return 0


def report(result: dict) -> str:
    scores, listed = result["scores"], result["label_errors"]
    n = next(iter(scores.values()))["photos"]
    structure = C.markdown_table(
        ["model", f"global IoU ({n} photos)", f"without the {len(listed)} listed", "mean IoU on the listed"]
        + [f"wrong px within {b} px of the label's boundary" for b in BANDS] + ["wrong px in the worst 10% of photos"],
        [[name, f"{s['iou']:.4f}", f"{s['iou_without_listed']:.4f}",
          f"{mean_listed_iou(s):.3f}",
          *(f"{s['wrong_within_px'][str(b)]:.0%}" for b in BANDS), f"{s['wrong_in_worst_tenth']:.0%}"]
         for name, s in scores.items()])
    photos = C.markdown_table(
        ["photo", "what the label gets wrong", *scores],
        [[sample_id, what, *(f"{s['listed_iou'][sample_id]:.3f}" for s in scores.values())]
         for sample_id, what in listed.items()])
    return (f"# CelebAMask-HQ validation error: where it lives, and label noise\n\n"
            + C.machine_markdown(result["machine"]) + f"\nCommand: `{result['command']}`\n\n"
            "Every model through `Segmenter.segment` (the contract's letterbox and map-back), on the recorded "
            f"validation split of `{result['data']}`; the listed photos are `benchmarks/label_errors/"
            "celebamask-hq-hair.txt`, photos whose hair label covers something that is not hair. They were found "
            "among the bundled model's worst photos, so the column without them favours it by construction: it "
            "shows what a few bad labels weigh, not which model is better.\n\n"
            "## Error structure\n\n" + structure + "\n\n"
            "## The mislabelled photos: IoU of each model against the wrong label\n\n"
            "A model can match these labels only if it was trained on these very photos.\n\n" + photos + "\n")


if __name__ == "__main__":
    sys.exit(main())
