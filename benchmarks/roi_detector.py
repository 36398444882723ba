#!/usr/bin/env python3
"""The ROI stage's *locate* step: the hair model's own whole-frame pass against a face detector (BlazeFace).

Issue 23 leaves the locate step to measurement: the stage in ``hairseg_edge.roi`` finds the head(s) with
the hair model's own pass on the whole frame; a small face detector is the alternative. This script runs,
on the same photos and in one process, interleaved photo by photo (so the load of the shared machine falls
on all methods alike):

* **hair pass** — what ``Segmenter(model, roi="auto")`` does: whole-frame pass, ``RegionStage.locate``,
  then ``RegionStage.segment_boxes`` (with the first pass, so face-filling boxes are not run twice);
* **BlazeFace short range** and **full range (sparse)** — the MediaPipe face detectors from the
  ``mediapipe==0.10.14`` wheel (Apache-2.0), decoded here in numpy as MediaPipe's face_detection graphs do
  (letterboxed square input in [-1, 1], SSD anchors, sigmoid scores, weighted NMS); each face box becomes a
  square ``scale`` times its side, centred ``lift`` face sides above the face's centre (hair is above the
  face), and ``RegionStage.segment_boxes(rgb, boxes, whole=None)`` segments those boxes — the same stage 2.
  The stage's rule for face-filling photos applies here too: when a box covers at least ``skip`` of the
  frame's longer side, the whole-frame pass is run and kept there (``segment_boxes(rgb, boxes, whole)``,
  which then also re-cuts a small box whose hair reaches its border, as for the hair pass); otherwise
  the detector saves the whole-frame pass. ``skip`` is the stage's ``skip_share`` (0.6, tuned for boxes
  1.3x the hair's extent) or 1.0 (only a box at least the frame's size: a crop that would gain no
  resolution), since a box around a face box is a different size for the same head.
  Every ``scale`` x ``lift`` x ``skip`` of ``SCALES`` x ``LIFTS`` x ``SKIPS`` is measured; the main table
  shows the best one (the highest mean IoU over both sets and all zooms);
* **detector, hair pass when no face** — the detector's boxes, and the hair pass on photos where it
  found no face (a back of a head, a face too small for it): computed from the same runs, its ms are the
  detector's plus, on the missed photos, the hair pass's;
* **hair pass, detector when no hair** — the other way round: main's stage, and the detector's boxes
  on the photos where the hair pass found no hair (ms: the hair pass's plus, there, the detector's);
* **single pass** (``roi="off"``), for reference.

Sets: the first ``--limit`` recorded validation ids of CelebAMask-HQ faces and Figaro-1k photos, as they
are (zoom 1) and shrunk by 0.6 / 0.4 / 0.25 onto a plain grey canvas of their own size
(``_common.zoom_out(border="plain")``, as ``benchmarks/roi.py``). Reported: global IoU per zoom, the share
of photos where the locate step found no head (then the mask is empty, except in the fallback rows), mean
ms of the locate step alone and of the whole photo, and the extra file the method needs.

The short-range file is bundled since (``hairseg_edge/models/``, the region stage's fallback locator, decoded
by ``hairseg_edge.face_detector``, which this script imports); the full-range one is not. Get both with::

    pip download mediapipe==0.10.14 --no-deps -d /tmp/mp --python-version 3.11 \\
        --platform manylinux_2_17_x86_64 --only-binary :all:
    unzip -j /tmp/mp/mediapipe-0.10.14-*.whl \\
        'mediapipe/modules/face_detection/face_detection_short_range.tflite' \\
        'mediapipe/modules/face_detection/face_detection_full_range_sparse.tflite' -d /tmp/mp/det
    python benchmarks/roi_detector.py --detector-dir /tmp/mp/det [--limit 120] [--force]

Results: ``benchmarks/results/roi_detector.{json,md}``.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import time
from dataclasses import replace
from pathlib import Path

import _common as C  # benchmarks/ is on sys.path when this script runs
import numpy as np

# The decoding is the package's (the region stage's fallback locator); this script adds the full-range spec.
from hairseg_edge.data import iter_samples, open_dataset, read_id_list
from hairseg_edge.errors import InputError
from hairseg_edge.face_detector import (ANCHOR_OFFSET, MIN_SCORE, NMS_IOU, SHORT_RANGE, DetectorSpec,
                                        FaceDetector)
from hairseg_edge.metrics import SegmentationMeter
from hairseg_edge.roi import RegionStage, face_boxes
from hairseg_edge.runtime import Segmenter

SPLITS = C.REPO / "hairseg_edge" / "splits"
SETS = {"faces": ("celebamask-hq-hair", "celebamask-hq-hair_val.txt"),
        "wild": ("figaro1k-hair-train", "figaro1k-hair-train_val.txt")}
ZOOMS = (1.0, 0.6, 0.4, 0.25)
SCALES = (1.6, 2.0, 2.4, 2.8, 3.2)   # hair box side / face box side
LIFTS = (0.0, 0.15, 0.3)              # hair box centre above the face centre, in face box sides
SKIPS = (0.6, 1.0)                    # box side / frame's longer side from which the whole-frame pass is kept
WHEEL = ("mediapipe", "0.10.14")
INSIDE_WHEEL = "mediapipe/modules/face_detection/"


DETECTORS = {
    "BlazeFace short range": SHORT_RANGE,
    "BlazeFace full range (sparse)": DetectorSpec("face_detection_full_range_sparse.tflite", 192, (4,), 0.0,
                                                  2304, 0.6),
}


# --- the measurement -------------------------------------------------------------------------------------
def dataset(name: str, limit: int):
    folder, ids = SETS[name]
    return open_dataset(C.SHARED / "data" / folder).subset(read_id_list(SPLITS / ids)).limit(limit)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


class Tally:
    """IoU meter, missed count and summed milliseconds of one method at one zoom of one set."""

    def __init__(self) -> None:
        self.meter, self.missed, self.locate_ms, self.total_ms, self.n = SegmentationMeter(), 0, 0.0, 0.0, 0
        self.inferences = 0

    def add(self, mask: np.ndarray, target: np.ndarray, missed: bool, locate_ms: float, total_ms: float,
            inferences: int) -> None:
        self.meter.update(mask, target)
        self.missed += int(missed)
        self.locate_ms += locate_ms
        self.total_ms += total_ms
        self.inferences += inferences
        self.n += 1

    def summary(self) -> dict:
        return {"iou": self.meter.result().iou, "missed": self.missed / self.n, "locate_ms": self.locate_ms / self.n,
                "total_ms": self.total_ms / self.n, "hair_inferences": self.inferences / self.n, "images": self.n}


def measure(model: Path, detectors: dict[str, FaceDetector], limit: int) -> dict:
    """Every method on every photo at every zoom, interleaved photo by photo."""
    seg = Segmenter(model, roi="auto", face_detector="off")  # "hair pass": the stage's locate step alone
    stage = seg.region_stage
    configs = [(s, lift, skip) for s in SCALES for lift in LIFTS for skip in SKIPS]
    # One stage per skip share (segment_boxes keeps the whole-frame pass for boxes from its config's share).
    stages = {skip: RegionStage(seg, replace(stage.config, skip_share=skip)) for skip in SKIPS}
    tallies: dict[tuple, Tally] = {}

    def tally(*key) -> Tally:
        return tallies.setdefault(key, Tally())

    counts = {}
    for set_name in SETS:
        count = 0
        for _, rgb, mask in iter_samples(dataset(set_name, limit)):
            count += 1
            for z in ZOOMS:
                image, target = C.zoom_out(rgb, mask > 0, z, border="plain")
                t0 = time.perf_counter()
                single = seg.segment_whole(image)
                single_ms = (time.perf_counter() - t0) * 1000.0
                tally(set_name, "single pass", z).add(single.mask, target, False, 0.0, single_ms, 1)

                t0 = time.perf_counter()
                whole = seg.segment_whole(image)
                boxes = stage.locate(whole)
                t1 = time.perf_counter()
                hair = stage.segment_boxes(image, boxes, whole)
                t2 = time.perf_counter()
                hair_locate, hair_total = (t1 - t0) * 1000.0, (t2 - t0) * 1000.0
                hair_calls = 1 + stage.last_inferences
                tally(set_name, "hair pass", z).add(hair.mask, target, not boxes, hair_locate, hair_total, hair_calls)
                frame_side = max(image.shape[:2])
                boxes_found = bool(boxes)

                for name, det in detectors.items():
                    t0 = time.perf_counter()
                    faces, _ = det.faces(image)
                    locate_ms = (time.perf_counter() - t0) * 1000.0
                    missed = len(faces) == 0
                    for scale, lift, skip in configs:
                        t0 = time.perf_counter()
                        boxes = face_boxes(faces, scale, lift, stage.config)
                        # The face-filling rule: a box this large keeps the whole-frame pass (the single
                        # pass above is that pass; its time is added, not measured twice).
                        filling = any(b.side >= skip * frame_side for b in boxes)
                        result = stages[skip].segment_boxes(image, boxes, single if filling else None)
                        total = locate_ms + (time.perf_counter() - t0) * 1000.0 + (single_ms if filling else 0.0)
                        calls = stages[skip].last_inferences + int(filling)
                        key = (z, scale, lift, skip)
                        tally(set_name, name, *key).add(result.mask, target, missed, locate_ms, total, calls)
                        if missed:  # the fallback: the hair pass's result, after the detector's time
                            tally(set_name, f"{name}, hair pass when no face", *key).add(
                                hair.mask, target, True, locate_ms + hair_locate, locate_ms + hair_total,
                                hair_calls)
                        else:
                            tally(set_name, f"{name}, hair pass when no face", *key).add(
                                result.mask, target, False, locate_ms, total, calls)
                        if not boxes_found:  # the other fallback: the detector after an empty hair pass
                            tally(set_name, f"hair pass, {name} when no hair", *key).add(
                                result.mask, target, missed, hair_locate + locate_ms, hair_total + total,
                                hair_calls + calls)
                        else:
                            tally(set_name, f"hair pass, {name} when no hair", *key).add(
                                hair.mask, target, False, hair_locate, hair_total, hair_calls)
        counts[set_name] = count
    seg.close()
    out: dict = {"images": counts, "methods": {}}
    for key, t in tallies.items():
        set_name, method, z, *config = key
        label = method if not config else f"{method} @ scale {config[0]:g}, lift {config[1]:g}, skip {config[2]:g}"
        out["methods"].setdefault(label, {"method": method, "scale": config[0] if config else None,
                                          "lift": config[1] if config else None,
                                          "skip": config[2] if config else None})
        out["methods"][label].setdefault(set_name, {})[f"{z:g}"] = t.summary()
    return out


def mean_iou(row: dict) -> float:
    return float(np.mean([row[s][f"{z:g}"]["iou"] for s in SETS for z in ZOOMS]))


def best_configs(methods: dict) -> dict[str, str]:
    """Per detector method, the label of its scale x lift x skip with the highest mean IoU over sets and zooms."""
    best: dict[str, str] = {}
    for label, row in methods.items():
        if row["scale"] is None:
            continue
        if row["method"] not in best or mean_iou(row) > mean_iou(methods[best[row["method"]]]):
            best[row["method"]] = label
    return best


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--detector-dir", type=Path, default=None,
                   help="folder holding the two BlazeFace .tflite files from the mediapipe 0.10.14 wheel")
    p.add_argument("--model", type=Path, default=C.REPO / "hairseg_edge" / "models" / "hairseg_int8.tflite",
                   help="the hair model (default: the bundled int8 model)")
    p.add_argument("--limit", type=int, default=120, help="validation images per set")
    p.add_argument("--force", action="store_true", help="Overwrite earlier results.")
    a = p.parse_args(argv)
    out_json, out_md = (C.RESULTS_DIR / f"roi_detector.{ext}" for ext in ("json", "md"))
    try:
        if a.detector_dir is None:
            raise InputError("--detector-dir is required (see this script's docstring for getting the files)")
        missing = [spec.file for spec in DETECTORS.values() if not (a.detector_dir / spec.file).is_file()]
        if missing:
            raise InputError(f"missing {', '.join(missing)} (unzip them from the {WHEEL[0]}=={WHEEL[1]} wheel, "
                             f"{INSIDE_WHEEL})", a.detector_dir)
        C.refuse_existing([out_json, out_md], a.force)
        if a.limit < 1:
            raise InputError(f"--limit must be >= 1, got {a.limit}")
        files, detectors = {}, {}
        for name, spec in DETECTORS.items():
            path = a.detector_dir / spec.file
            files[name] = {"package": f"{WHEEL[0]}=={WHEEL[1]}", "path_in_wheel": INSIDE_WHEEL + spec.file,
                           "sha256": sha256(path), "bytes": path.stat().st_size, "licence": "Apache-2.0"}
            try:
                detectors[name] = FaceDetector(path, spec=spec)
                files[name]["runs_in_ai_edge_litert"] = True
            except InputError as exc:  # reported, not fatal: whether it runs is one of the findings
                files[name]["runs_in_ai_edge_litert"] = False
                files[name]["error"] = str(exc).splitlines()[0]
        started = time.perf_counter()
        measured = measure(a.model, detectors, a.limit)
    except (InputError, ValueError) as exc:
        print(f"roi_detector: {exc}", file=sys.stderr)
        return 2
    methods = measured["methods"]
    best = best_configs(methods)
    result = {"machine": C.machine_info(), "limit": a.limit, "zooms": list(ZOOMS), "scales": list(SCALES),
              "lifts": list(LIFTS), "skips": list(SKIPS), "images": measured["images"], "detector_files": files,
              "detector_options": {n: vars(s) | {"anchor_offset": ANCHOR_OFFSET, "nms_iou": NMS_IOU, "nms": "weighted",
                                                 "min_score": MIN_SCORE} for n, s in DETECTORS.items()},
              "best": best, "methods": methods, "minutes": (time.perf_counter() - started) / 60,
              "command": C.command_line(__file__, argv)}
    extra_bytes = {name: f["bytes"] for name, f in files.items()}
    shown = ["single pass", "hair pass"] + [
        label for name in DETECTORS for label in (best.get(name), best.get(f"{name}, hair pass when no face"),
                                                  best.get(f"hair pass, {name} when no hair")) if label]
    rows = []
    for set_name in SETS:
        for label in shown:
            row = methods[label]
            cells = row[set_name]
            detector = next((n for n in DETECTORS if n in row["method"]), None)
            rows.append([set_name, label] + [C.fmt(cells[f"{z:g}"]["iou"]) for z in ZOOMS]
                        + ["/".join(C.fmt(cells[f"{z:g}"]["missed"], ".2f") for z in ZOOMS)]
                        + [C.fmt(np.mean([cells[f"{z:g}"]["locate_ms"] for z in ZOOMS]), ".1f"),
                           C.fmt(np.mean([cells[f"{z:g}"]["total_ms"] for z in ZOOMS]), ".1f"),
                           C.fmt(np.mean([cells[f"{z:g}"]["hair_inferences"] for z in ZOOMS]), ".2f"),
                           extra_bytes.get(detector, 0) if detector else 0])
    headers = (["set", "locate step"] + [f"IoU {z:g}x" for z in ZOOMS]
               + ["no head found (" + "/".join(f"{z:g}x" for z in ZOOMS) + ")", "ms locate", "ms photo",
                  "hair model runs/photo", "extra file, bytes"])
    sweep_rows = [[row["method"], row["scale"], row["lift"], row["skip"]]
                  + [C.fmt(row[s][f"{z:g}"]["iou"]) for s in SETS for z in ZOOMS] + [C.fmt(mean_iou(row))]
                  for label, row in methods.items() if row["scale"] is not None and "hair pass" not in row["method"]]
    file_rows = [[name, f["package"], f["path_in_wheel"], f["bytes"], f["sha256"],
                  "yes" if f["runs_in_ai_edge_litert"] else f"no: {f.get('error')}"] for name, f in files.items()]
    about = (f"The first {a.limit} recorded validation ids of each set (faces: {measured['images']['faces']}, "
             f"wild: {measured['images']['wild']} images), as they are (1x) and shrunk onto a plain grey canvas "
             "of their own size; global IoU of the bundled int8 model's mask. *Locate step*: how the stage finds "
             "the heads before it segments a full-resolution crop of each (`RegionStage.segment_boxes`, the "
             "same for all). *hair pass*: the model's own whole-frame pass (`roi=\"auto\"`, main); the "
             "BlazeFace rows use each detector's best box geometry of the sweep below (side = scale x the face "
             "box, centre lifted by lift x the face box, whole-frame pass kept for a box of at least skip x the "
             "frame's longer side); *hair pass when no face*: the detector, and the hair "
             "pass on the photos where it found none; *hair pass, ... when no hair*: main's stage, and the "
             "detector on the photos where the hair pass found no hair. A detector box of at least skip x the "
             "frame's longer side keeps the whole-frame pass there, as the stage does with `skip_share` 0.6 "
             "(then the hair model "
             "runs on the whole frame too). *no head found*: share of photos where the locate step gave no box "
             "(the mask is then empty), per zoom. ms: mean wall time per photo over all zooms (locate step alone "
             "/ whole photo), this run, one thread each, other jobs sharing the 2 cores. *hair model runs*: "
             "inferences of the hair model per photo (mean over zooms). Extra file: what an app ships besides "
             "the hair model."
             "\n\n## Detector files (not in this repository)\n\n"
             + C.markdown_table(["detector", "package", "path inside the wheel", "bytes", "sha256",
                                 "runs in ai-edge-litert"], file_rows)
             + "\nDecoding as MediaPipe's face_detection graphs: input letterboxed (aspect kept, centred, black "
             "border) into the square tensor as float in [-1, 1]; SSD anchors with fixed size "
             "(short range: 128 px, strides 8,16,16,16, 2 anchors per position, 896; full range: 192 px, "
             "stride 4, 1 anchor per position, 2304); sigmoid scores (logits clipped to +-100) kept at >= 0.5 "
             "for both (the short-range graph's threshold; the full-range graph's is 0.6, fewer faces); "
             "weighted NMS at IoU 0.3."
             "\n\n## Box geometry sweep (BlazeFace boxes, no fallback): IoU per set and zoom\n\n"
             + C.markdown_table(["detector", "scale", "lift", "skip"] + [f"{s} {z:g}x" for s in SETS for z in ZOOMS]
                                + ["mean"], sweep_rows)
             + "\n## Locate step, best geometry per detector")
    C.write_report(out_json, out_md, result, title="Locating heads for the ROI stage: hair pass vs BlazeFace",
                   about=about, headers=headers, rows=rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
