#!/usr/bin/env python3
"""The region-of-interest stage (``hairseg_edge.roi``) against one pass on the whole frame, peers beside.

In one run, for every model (the bundled int8 model and the peers of ../shared/peers, all through the
same ``Segmenter``, so the stage is the same for each):

* **Small heads** — the recorded validation ids of CelebAMask-HQ faces and Figaro-1k photos (the first
  ``--limit`` of each), shrunk by 0.6 / 0.4 / 0.25 and centred on a plain grey canvas of their own size
  (``_common.zoom_out(border="plain")``); zoom 1 is the photo as it is. Global IoU, ``roi=off`` vs ``auto``
  vs ``auto`` with its crops run once (``RoiConfig(crop_flip=False)``) and also without the face fallback
  (``face_detector="off"``: the stage as it first landed).
* **Phone-size photos** — validation photos enlarged 3x (bilinear): boundary F (2 px tolerance at the
  enlarged size), where a crop should give sharper edges than a 224 px map resized 3x.
* **Latency** — mean milliseconds per photo (the 0.4x and 1x sets) and per frame of a synthetic clip.
* **Video** — a validation face shrunk to 0.4x and panned over a grey 512x512 canvas (``--clip-frames``
  frames, left to right and back, with a little vertical bob), segmented frame by frame with
  ``Segmenter.track``: IoU against the moved mask, ms per frame, and *jitter*: 1 - the IoU of
  consecutive masks shifted back into the head's own coordinates (the pan removed: what remains is
  flicker). Tracked with the default smoothing and without (smoothing = 1).
* **The sample photo** — hair pixels of ``examples/astronaut.png`` outside the largest connected
  component of the mask (the neck-ring blobs), single pass vs the stage.

    python benchmarks/roi.py [--limit 60] [--clip-frames 90] [--no-peers] [--force]

Results: ``benchmarks/results/roi.{json,md,png}``.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from pathlib import Path

import _common as C  # benchmarks/ is on sys.path when this script runs
import cv2
import numpy as np

from hairseg_edge.data import iter_samples, open_dataset, read_id_list
from hairseg_edge.errors import InputError
from hairseg_edge.imageio import read_image
from hairseg_edge.metrics import SegmentationMeter
from hairseg_edge.roi import RoiConfig
from hairseg_edge.runtime import Segmenter

SPLITS = C.REPO / "hairseg_edge" / "splits"
SETS = {"faces": ("celebamask-hq-hair", "celebamask-hq-hair_val.txt"),
        "wild": ("figaro1k-hair-train", "figaro1k-hair-train_val.txt")}
ZOOMS = (1.0, 0.6, 0.4, 0.25)
MODES = ("off", "auto")
#: Segmenter options per mode of the small-heads table: the single pass, the stage (with its face
#: fallback and mirrored crops, the default), the stage with crops run once (``crop_flip=False``),
#: and the stage locating with the hair pass alone (before the fallback).
HEAD_MODES = {"off": {"roi": "off"}, "auto": {"roi": "auto"},
              "plain-crops": {"roi": "auto", "roi_config": RoiConfig(crop_flip=False)},
              "hair-only": {"roi": "auto", "face_detector": "off", "roi_config": RoiConfig(crop_flip=False)}}
MODE_LABELS = {"off": "single pass", "auto": "stage", "plain-crops": "stage, crops not mirrored",
               "hair-only": "stage, crops not mirrored, no face fallback"}


def dataset(name: str, limit: int):
    folder, ids = SETS[name]
    return open_dataset(C.SHARED / "data" / folder).subset(read_id_list(SPLITS / ids)).limit(limit)


def small_heads(models: dict[str, Path], limit: int, flip_tta: bool = False) -> dict:
    out: dict = {}
    with contextlib.ExitStack() as stack:
        segs = {(n, m): stack.enter_context(Segmenter(p, flip_tta=flip_tta, **HEAD_MODES[m]))
                for n, p in models.items() for m in HEAD_MODES}
        for set_name in SETS:
            meters = {(k, z): SegmentationMeter() for k in segs for z in ZOOMS}
            bmeters = {k: SegmentationMeter(boundary_tolerance=2) for k in segs}
            ms = {(k, z): 0.0 for k in segs for z in ZOOMS}
            count = 0
            for _, rgb, mask in iter_samples(dataset(set_name, limit)):
                count += 1
                for z in ZOOMS:
                    image, target = C.zoom_out(rgb, mask > 0, z, border="plain")
                    for k, seg in segs.items():
                        t0 = time.perf_counter()
                        result = seg.segment(image)
                        ms[k, z] += (time.perf_counter() - t0) * 1000.0
                        meters[k, z].update(result.mask, target)
                big = cv2.resize(rgb, None, fx=3, fy=3, interpolation=cv2.INTER_LINEAR)
                big_mask = cv2.resize((mask > 0).astype(np.uint8), None, fx=3, fy=3,
                                      interpolation=cv2.INTER_NEAREST_EXACT) > 0
                for k, seg in segs.items():
                    bmeters[k].update(seg.segment(big).mask, big_mask)
            for (name, mode), _seg in segs.items():
                row = out.setdefault(set_name, {}).setdefault(name, {}).setdefault(mode, {})
                for z in ZOOMS:
                    row[f"iou@{z:g}"] = meters[(name, mode), z].result().iou
                    row[f"ms@{z:g}"] = ms[(name, mode), z] / count
                row["boundary_f@3x"] = bmeters[name, mode].result().boundary_f
                row["iou@3x"] = bmeters[name, mode].result().iou
            out[set_name]["images"] = count
    return out


SWEEP = {"box_scale": (1.3, 1.5, 1.8), "skip_share": (0.6, 0.7, 0.8, 0.9)}
SWEEP_ZOOMS = (1.0, 0.6, 0.4)


def sweep(model: Path, limit: int) -> list[dict]:
    """The stage's two geometric knobs on the bundled model: IoU at SWEEP_ZOOMS, inferences per photo."""
    from hairseg_edge.roi import RegionStage

    seg = Segmenter(model, roi="auto")
    configs = [RoiConfig(box_scale=b, skip_share=k) for b in SWEEP["box_scale"] for k in SWEEP["skip_share"]]
    rows = []
    samples = {name: list(iter_samples(dataset(name, limit))) for name in SETS}
    for config in configs:
        seg.region_stage = RegionStage(seg, config)
        row = {"box_scale": config.box_scale, "skip_share": config.skip_share}
        for set_name, items in samples.items():
            for z in SWEEP_ZOOMS:
                meter, calls = SegmentationMeter(), 0
                for _, rgb, mask in items:
                    image, target = C.zoom_out(rgb, mask > 0, z, border="plain")
                    meter.update(seg.segment(image).mask, target)
                    calls += seg.region_stage.last_inferences
                row[f"{set_name}@{z:g}"] = meter.result().iou
                row[f"{set_name}@{z:g} inferences"] = calls / len(items)
        rows.append(row)
    seg.close()
    return rows


def make_clip(rgb: np.ndarray, mask: np.ndarray, frames: int, size: int = 512, zoom: float = 0.4):
    """A face shrunk to ``zoom`` of ``size`` panned over a grey canvas: frames, masks, offsets."""
    side = round(size * zoom)
    face = cv2.resize(rgb, (side, side), interpolation=cv2.INTER_AREA)
    fmask = cv2.resize(mask.astype(np.uint8), (side, side), interpolation=cv2.INTER_NEAREST_EXACT) > 0
    for t in range(frames):
        phase = t / max(1, frames - 1)
        x = round((size - side) * (1 - abs(2 * phase - 1)))          # left to right and back
        y = round((size - side) / 2 + 20 * np.sin(2 * np.pi * 3 * phase))
        canvas = np.full((size, size, 3), C.PLAIN_GREY, np.uint8)
        target = np.zeros((size, size), bool)
        canvas[y:y + side, x:x + side] = face
        target[y:y + side, x:x + side] = fmask
        yield canvas, target, (x, y, side)


def video(model: Path, frames: int, limit: int) -> dict:
    """The clip through every variant, frame by frame in turn (so the load of the shared machine falls
    on all of them alike); ms per frame is the median of the per-frame times."""
    from hairseg_edge.roi import RegionStage

    ds = dataset("faces", limit)
    variants = {"single pass": ("off", None), "tracked, smoothed": ("auto", RoiConfig()),
                "tracked, no smoothing": ("auto", RoiConfig(smoothing=1.0)),
                "stage per frame (no tracking)": ("auto-photo", RoiConfig())}
    clips = [(rgb, mask > 0) for _, rgb, mask in iter_samples(ds.limit(3))]
    segs = {}
    for label, (mode, config) in variants.items():
        segs[label] = Segmenter(model, roi="off" if mode == "off" else "auto")
        if config is not None:
            segs[label].region_stage = RegionStage(segs[label], config)
    meters = {label: SegmentationMeter() for label in variants}
    jitter: dict[str, list[float]] = {label: [] for label in variants}
    times: dict[str, list[float]] = {label: [] for label in variants}
    for rgb, mask in clips:
        prev: dict[str, np.ndarray] = {}
        for seg in segs.values():
            seg.reset_tracking()
        for canvas, target, (x, y, side) in make_clip(rgb, mask, frames):
            for label, (mode, _) in variants.items():
                seg = segs[label]
                t0 = time.perf_counter()
                result = seg.segment(canvas) if mode == "auto-photo" else seg.track(canvas)
                times[label].append((time.perf_counter() - t0) * 1000.0)
                meters[label].update(result.mask, target)
                own = result.mask[y:y + side, x:x + side]  # the head's own coordinates
                if label in prev:
                    union = np.count_nonzero(own | prev[label])
                    jitter[label].append(1.0 - (np.count_nonzero(own & prev[label]) / union if union else 1.0))
                prev[label] = own
    for seg in segs.values():
        seg.close()
    return {label: {"iou": meters[label].result().iou, "ms_per_frame": float(np.median(times[label])),
                    "ms_mean": float(np.mean(times[label])), "jitter": float(np.mean(jitter[label])),
                    "frames": len(times[label])} for label in variants}


def blobs(models: dict[str, Path]) -> dict:
    image = read_image(C.REPO / "examples" / "astronaut.png")
    out = {}
    for name, path in models.items():
        for mode in MODES:
            with Segmenter(path, roi=mode) as seg:
                mask = seg.segment(image).mask.astype(np.uint8)
            count, labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
            areas = sorted((int(a) for a in stats[1:, cv2.CC_STAT_AREA]), reverse=True)
            out.setdefault(name, {})[mode] = {"hair_px": int(mask.sum()), "outside_largest_px": sum(areas[1:]),
                                              "components": count - 1}
    return out


def plot(heads: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
    for ax, set_name in zip(axes, SETS):
        for name, modes in heads[set_name].items():
            if name == "images":
                continue
            for mode, style in (("off", "--"), ("auto", "-")):
                ys = [modes[mode][f"iou@{z:g}"] for z in ZOOMS]
                ax.plot(ZOOMS, ys, style, marker="o", label=f"{name} ({'stage' if mode == 'auto' else 'single'})")
        ax.set_title(f"{set_name}: hair IoU vs head size")
        ax.set_xlabel("head size (zoom of the frame)")
        ax.invert_xaxis()
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("global IoU")
    axes[1].legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--limit", type=int, default=60, help="validation images per set")
    p.add_argument("--sweep-limit", type=int, default=40, help="images per set for the knob sweep")
    p.add_argument("--clip-frames", type=int, default=90, help="frames per synthetic clip (3 clips)")
    C.add_model_options(p)
    p.add_argument("--force", action="store_true", help="Overwrite earlier results.")
    a = p.parse_args(argv)
    out_json, out_md, out_png = (C.RESULTS_DIR / f"roi.{ext}" for ext in ("json", "md", "png"))
    try:
        C.refuse_existing([out_json, out_md, out_png], a.force)
        models = C.models_to_measure(a.model, "bundled int8", peers=not a.no_peers)
        started = time.perf_counter()
        heads = small_heads(models, a.limit)
        first = next(iter(models.values()))
        # Mirror test-time augmentation (`--flip-tta`): what a user who can spend two inferences per
        # pass gets, for the first (bundled) model only.
        flipped = small_heads({f"{next(iter(models))} --flip-tta": first}, a.limit, flip_tta=True)
        for set_name in SETS:
            heads[set_name].update({k: v for k, v in flipped[set_name].items() if k != "images"})
        clip = video(first, a.clip_frames, a.limit)
        knobs = sweep(first, a.sweep_limit)
        sample = blobs(models)
    except (InputError, ValueError) as exc:
        print(f"roi: {exc}", file=sys.stderr)
        return 2
    result = {"machine": C.machine_info(), "limit": a.limit, "zooms": list(ZOOMS), "small_heads": heads,
              "video": clip, "astronaut": sample, "sweep": knobs, "minutes": (time.perf_counter() - started) / 60,
              "command": C.command_line(__file__, argv)}
    rows = []
    for set_name in SETS:
        for name, modes in heads[set_name].items():
            if name == "images":
                continue
            for mode in HEAD_MODES:
                r = modes[mode]
                rows.append([set_name, name, MODE_LABELS[mode]]
                            + [C.fmt(r[f"iou@{z:g}"]) for z in ZOOMS]
                            + [C.fmt(r["boundary_f@3x"]), C.fmt(r["ms@1"], ".1f"), C.fmt(r["ms@0.4"], ".1f")])
    headers = (["set", "model", "mode"] + [f"IoU {z:g}x" for z in ZOOMS]
               + ["boundary F, 3x photo", "ms/photo 1x", "ms/photo 0.4x"])
    single_ms = clip["single pass"]["ms_per_frame"]
    video_rows = [[label, C.fmt(v["iou"]), C.fmt(v["jitter"]), C.fmt(v["ms_per_frame"], ".2f"),
                   f'{v["ms_per_frame"] / single_ms:.2f}x', C.fmt(v["ms_mean"], ".2f")]
                  for label, v in clip.items()]
    blob_rows = [[name, mode, v["hair_px"], v["outside_largest_px"], v["components"]]
                 for name, modes in sample.items() for mode, v in modes.items()]
    sweep_rows = [[k["box_scale"], k["skip_share"]]
                  + [f'{C.fmt(k[f"{s}@{z:g}"])} ({k[f"{s}@{z:g} inferences"]:.2f})'
                     for s in SETS for z in SWEEP_ZOOMS] for k in knobs]
    extra = ("\n\n## The knobs (bundled int8, first %d ids per set; IoU, model invocations per photo)\n\n" % a.sweep_limit
             + C.markdown_table(["box_scale", "skip_share"] + [f"{s} {z:g}x" for s in SETS for z in SWEEP_ZOOMS],
                                sweep_rows)
             + "\n\n## Video: a 0.4x face panned over a 512x512 canvas "
             f"({clip['single pass']['frames']} frames, {next(iter(models))})\n\n"
             + C.markdown_table(["variant", "IoU", "jitter (1 - IoU of consecutive masks, pan removed)",
                                 "ms per frame (median)", "median vs single pass", "ms per frame (mean)"],
                                video_rows)
             + "\n\n## The sample photo (examples/astronaut.png)\n\n"
             + C.markdown_table(["model", "roi", "hair px", "px outside the largest component", "components"],
                                blob_rows))
    C.write_report(out_json, out_md, result, title="Find the head, then segment it: the ROI stage",
                   about=f"The first {a.limit} recorded validation ids of each set "
                   f"(faces: {heads['faces']['images']}, wild: {heads['wild']['images']} images), shrunk "
                   "and centred on a plain grey canvas (zoom 1 = as they are); global IoU. Boundary F: the "
                   "same photos enlarged 3x, 2 px tolerance. ms: mean wall time of `Segmenter.segment` per "
                   "image, this run (other jobs shared the 2 cores)." + extra,
                   headers=headers, rows=rows)
    plot(heads, out_png)
    return 0


if __name__ == "__main__":
    sys.exit(main())
