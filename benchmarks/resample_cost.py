#!/usr/bin/env python3
"""What the contract's shrink costs, and how close it stays to area averaging.

The contract shrinks a frame to the model input by 2x2 box-filter halvings while the image is at least
twice the target, then one bilinear step (``hairseg_edge.contract.resize_image``). Before 2026-11-26 it
called OpenCV's ``INTER_AREA`` directly, which is exact area averaging but takes a slow path for
non-integer ratios. For each (source size, target size) pair this script times both on the same frame
and reports the PSNR of the contract's result against ``INTER_AREA`` on real photos: the sample photo
and, with ``--data``, images of a data set folder (each resized to the source size first, so the
content is real even when the frame size is not).

    python benchmarks/resample_cost.py [--data DIR] [--limit 40] [--runs 300] [--force]

Results: ``benchmarks/results/resample_cost.{json,md}``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import _common as C  # benchmarks/ is on sys.path when this script runs
import cv2
import numpy as np

from hairseg_edge.contract import resize_image
from hairseg_edge.data import iter_samples, open_dataset
from hairseg_edge.errors import InputError
from hairseg_edge.imageio import read_image

SAMPLE = C.REPO / "examples" / "astronaut.png"
#: (source height, width) -> (target height, width): a CelebAMask-HQ face and camera frames, each
#: letterboxed into the bundled model's input (224) and the previous one's (192).
CASES = [((256, 256), (224, 224)), ((256, 256), (192, 192)), ((512, 512), (224, 224)),
         ((720, 1280), (126, 224)), ((720, 1280), (108, 192)), ((1080, 1920), (126, 224))]


def _median_ms(fn, runs: int) -> float:
    fn()
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return float(np.median(times) * 1e3)


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


def measure(photos: list[np.ndarray], runs: int) -> list[dict]:
    rows = []
    for (sh, sw), (th, tw) in CASES:
        frames = [cv2.resize(p, (sw, sh), interpolation=cv2.INTER_CUBIC) for p in photos]
        area = lambda f: cv2.resize(f, (tw, th), interpolation=cv2.INTER_AREA)  # noqa: E731
        psnr = [_psnr(resize_image(f, tw, th), area(f)) for f in frames]
        frame = frames[0]
        rows.append({"source": f"{sw}x{sh}", "target": f"{tw}x{th}",
                     "inter_area_ms": _median_ms(lambda: area(frame), runs),
                     "contract_ms": _median_ms(lambda: resize_image(frame, tw, th), runs),
                     "psnr_db_median": float(np.median(psnr)), "psnr_db_min": float(np.min(psnr)),
                     "photos": len(frames)})
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=None, help="a data set folder whose images join the photos")
    p.add_argument("--limit", type=int, default=40, help="images of --data to use")
    p.add_argument("--runs", type=int, default=300, help="timed runs per measurement")
    p.add_argument("--force", action="store_true", help="Overwrite earlier results.")
    a = p.parse_args(argv)
    out_json, out_md = C.RESULTS_DIR / "resample_cost.json", C.RESULTS_DIR / "resample_cost.md"
    try:
        C.refuse_existing([out_json, out_md], a.force)
        if a.runs < 1 or a.limit < 1:
            raise InputError("--runs and --limit must be >= 1")
        photos = [read_image(SAMPLE)]
        if a.data is not None:
            if not a.data.is_dir():
                raise InputError("no such data folder", a.data)
            photos += [rgb for _, rgb, _ in iter_samples(open_dataset(a.data).limit(a.limit))]
        threads = cv2.getNumThreads()
        cv2.setNumThreads(1)  # one core, like the one-thread model timings it is added to
        try:
            rows = measure(photos, a.runs)
        finally:
            cv2.setNumThreads(threads)  # main() may run inside a longer process (the tests)
    except (InputError, ValueError) as exc:
        print(f"resample_cost: {exc}", file=sys.stderr)
        return 2
    result = {"machine": C.machine_info(), "data": a.data.name if a.data else None, "runs": a.runs,
              "rows": rows, "command": C.command_line(__file__, argv)}
    headers = ["source", "target", "INTER_AREA ms", "contract ms", "speed-up", "PSNR dB (median / min)"]
    table = [[r["source"], r["target"], C.fmt(r["inter_area_ms"], ".3f"), C.fmt(r["contract_ms"], ".3f"),
              f"{r['inter_area_ms'] / r['contract_ms']:.1f}x",
              f"{r['psnr_db_median']:.1f} / {r['psnr_db_min']:.1f}"] for r in rows]
    source = "the sample photo" + (f" and the first {a.limit} images of `{a.data.name}`" if a.data else "")
    C.write_report(out_json, out_md, result, title="The contract's shrink vs INTER_AREA",
                   about=f"One thread, median of {a.runs} runs on one frame; PSNR of the contract's result "
                   f"against `INTER_AREA` over {source}, each resized (bicubic) to the source size.",
                   headers=headers, rows=table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
