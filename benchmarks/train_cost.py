#!/usr/bin/env python3
"""Training cost and memory: images/s and peak RSS of the input pipeline alone and of a training epoch,
at two data-set sizes, to show that memory does not grow with the data set.

The original notebooks loaded every image into one array before training and crashed on memory; the
tf.data pipeline of ``hairseg_edge.training.pipeline`` holds only indices and decodes each image when
it is reached. This script measures that claim on the real CelebAMask-HQ folder:

* ``pipeline``: ``make_dataset(..., training=True)`` over the first N images' training split, iterated
  for ``--pipeline-batches`` batches after a warm-up (decode, augment, letterbox, batch; no model);
* ``epoch``: ``hairseg_edge.training.train()`` for two epochs of ``--train-steps`` steps (capped epochs:
  the same steps at both sizes, so time and memory compare like for like), including the validation
  pass over the N images' validation split and the checkpoint writes; images/s is the second epoch's
  (the first includes building the graph), peak RSS covers both.

Each measurement runs in its own process (peak RSS is per process: ``ru_maxrss``), and records the RSS
after TensorFlow's import and the model build (the baseline), the peak, and RSS samples taken during the
run. Results: ``benchmarks/results/train_cost.{json,md}``; measurements are cached under
``$HAIRSEG_BENCH_CACHE/train_cost``.

Usage (about 10 minutes on 2 cores)::

    python benchmarks/train_cost.py --force
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402

from hairseg_edge.errors import InputError  # noqa: E402

RESULT_STEM = "train_cost"
MODES = ("pipeline", "epoch")


def rss_mb() -> float:
    """Current resident set size (Linux /proc; 0 where unavailable)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux


# --- children --------------------------------------------------------------------------------------------
def child_pipeline(data: Path, n: int | None, img_size: int, batch: int, batches: int) -> dict[str, Any]:
    from hairseg_edge.data import open_dataset
    from hairseg_edge.training.pipeline import make_dataset

    train, _ = open_dataset(data, limit=n).split()
    baseline = rss_mb()
    ds = make_dataset(train.samples, img_size, batch, training=True, seed=0)
    it = iter(ds)
    for _ in range(5):  # warm-up: thread pools, first decodes
        next(it)
    samples = []
    started = time.perf_counter()
    for k in range(batches):
        next(it)
        if k % 10 == 0:
            samples.append(round(rss_mb(), 1))
    seconds = time.perf_counter() - started
    return {"train_images": len(train), "images": batches * batch, "seconds": round(seconds, 2),
            "images_per_s": round(batches * batch / seconds, 1), "baseline_rss_mb": round(baseline, 1),
            "rss_samples_mb": samples, "end_rss_mb": round(rss_mb(), 1), "peak_rss_mb": round(peak_rss_mb(), 1)}


def child_epoch(data: Path, n: int | None, img_size: int, batch: int, steps: int, arch: str, width: float,
                work: Path) -> dict[str, Any]:
    from hairseg_edge.training.train import TrainOptions, train

    samples: list[float] = []
    baseline: list[float] = []

    def progress(event: str, info: dict[str, Any]) -> None:
        if event == "start":
            baseline.append(rss_mb())
        elif event == "batch" and info["step"] % 10 == 0:
            samples.append(round(rss_mb(), 1))

    with tempfile.TemporaryDirectory(dir=work, prefix="epoch-") as tmp:
        # Two capped epochs; the second is reported (the first includes tracing the graph).
        options = TrainOptions(data=(str(data),), out=str(Path(tmp) / "run"), arch=arch,
                               img_size=img_size, width=width, epochs=2, batch=batch, limit=n,
                               steps_per_epoch=steps, patience=100)
        started = time.perf_counter()
        result = train(options, progress=progress)
        wall = time.perf_counter() - started
    from hairseg_edge.data import open_dataset

    row = result.history[-1]
    train_split, _ = open_dataset(data, limit=n).split()
    return {"train_images": len(train_split), "steps": steps, "images": steps * batch,
            "fit_seconds": row["seconds"], "images_per_s": row["images_per_s"], "wall_seconds": round(wall, 1),
            "baseline_rss_mb": round(baseline[0], 1) if baseline else None, "rss_samples_mb": samples,
            "end_rss_mb": round(rss_mb(), 1), "peak_rss_mb": round(peak_rss_mb(), 1),
            "val_iou": row.get("val_iou"), "params": result.params, "macs": result.macs}


# --- parent ----------------------------------------------------------------------------------------------
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=C.DEFAULT_CELEBA)
    p.add_argument("--sizes", default="500,all", help="Data-set sizes (first N images; 'all' = every image).")
    # Defaults: the bundled model's architecture, input size and width.
    p.add_argument("--arch", default="fused_unet", help="architecture for the epoch measurement.")
    p.add_argument("--img-size", type=int, default=224)
    p.add_argument("--width", type=float, default=0.75, help="width for the epoch measurement.")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--pipeline-batches", type=int, default=60)
    p.add_argument("--train-steps", type=int, default=40)
    p.add_argument("--modes", default=",".join(MODES))
    p.add_argument("--results", type=Path, default=C.RESULTS_DIR)
    p.add_argument("--force", action="store_true", help="Overwrite earlier results.")
    p.add_argument("--child", choices=MODES, help=argparse.SUPPRESS)
    p.add_argument("--n", type=int, default=None, help=argparse.SUPPRESS)
    p.add_argument("--out-json", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    sizes: list[int | None] = []
    for t in args.sizes.split(","):
        t = t.strip()
        if t == "all":
            sizes.append(None)
        else:
            try:
                sizes.append(int(t))
            except ValueError:
                raise InputError(f"--sizes takes integers or 'all', got {t!r}") from None
    args.size_list = sizes
    args.mode_list = [m for m in args.modes.split(",") if m]
    for m in args.mode_list:
        if m not in MODES:
            raise InputError(f"unknown mode {m!r}; choose from {', '.join(MODES)}")
    return args


def measure(args: argparse.Namespace, mode: str, n: int | None, cache: Path) -> dict[str, Any]:
    """One measurement in its own process (cached)."""
    steps = args.pipeline_batches if mode == "pipeline" else args.train_steps
    key = (f"{mode}-n{n or 'all'}-s{args.img_size}-b{args.batch}-k{steps}"
           + (f"-{args.arch}-w{args.width:g}" if mode == "epoch" else "") + f"-{args.data.name}")
    out = cache / f"{key}.json"
    if not out.exists():
        cmd = [sys.executable, str(Path(__file__).resolve()), "--child", mode, "--data", str(args.data),
               "--img-size", str(args.img_size), "--batch", str(args.batch), "--arch", args.arch,
               "--width", str(args.width),
               "--pipeline-batches", str(args.pipeline_batches), "--train-steps", str(args.train_steps),
               "--out-json", str(out)]
        if n is not None:
            cmd += ["--n", str(n)]
        C.run_child(cmd, cache / "logs" / f"{key}.log", what=f"{mode} measurement at {n or 'all'} images")
    return C.read_json(out)


def to_markdown(study: dict[str, Any]) -> str:
    out = ["# Training cost and memory vs data-set size\n\n## Machine\n\n", C.machine_markdown(study["machine"]),
           f"\nCommand: `python benchmarks/{study['command']}`\n\n",
           f"{study['arch']} width {study['width']:g} at {study['img_size']} px, batch {study['batch']}, on "
           f"`{Path(study['data']).name}`. *pipeline*: {study['pipeline_batches']} batches of the training "
           f"input pipeline alone after 5 warm-up batches. *epoch*: two training epochs capped at "
           f"{study['train_steps']} steps, each with the validation pass and checkpoint writes (images/s: the "
           "second epoch). Each row is its own "
           "process; RSS baseline = after importing TensorFlow (and, for *epoch*, building the model).\n\n"]
    headers = ["mode", "data set", "train images", "images/s", "baseline RSS MB", "peak RSS MB",
               "RSS during run MB (min..max)", "wall s"]
    rows = []
    for r in study["rows"]:
        s = r.get("rss_samples_mb") or []
        rows.append([r["mode"], r["dataset_images"], r.get("train_images") or "", C.fmt(r["images_per_s"], ".1f"),
                     C.fmt(r.get("baseline_rss_mb"), ".0f"), C.fmt(r["peak_rss_mb"], ".0f"),
                     f"{min(s):.0f}..{max(s):.0f}" if s else "",
                     C.fmt(r.get("wall_seconds") or r.get("seconds"), ".1f")])
    out.append(C.markdown_table(headers, rows))
    out.append("\n## Memory vs data-set size\n\n")
    for mode, c in study["comparison"].items():
        out.append(f"- {mode}: peak RSS {c['small_peak_mb']:.0f} MB at {c['small']} images vs "
                   f"{c['large_peak_mb']:.0f} MB at {c['large']} images ({c['growth_mb']:+.0f} MB for "
                   f"{c['large'] / max(c['small'], 1):.1f}x the images).\n")
    out.append("\n" + (study.get("verdict") or "") + "\n")
    if study["failures"]:
        out.append("\n## Failures\n\n" + "".join(f"- {f}\n" for f in study["failures"]))
    return "".join(out)


def main(argv: list[str] | None = None) -> int:
    try:
        args = parse_args(argv)
    except InputError as exc:
        print(f"train_cost: {exc}", file=sys.stderr)
        return 2
    if args.child:
        cache = C.cache_dir() / "train_cost"
        cache.mkdir(parents=True, exist_ok=True)
        if args.child == "pipeline":
            row = child_pipeline(args.data, args.n, args.img_size, args.batch, args.pipeline_batches)
        else:
            row = child_epoch(args.data, args.n, args.img_size, args.batch, args.train_steps, args.arch,
                              args.width, cache)
        C.write_json(args.out_json, row)
        return 0

    paths = {ext: args.results / f"{RESULT_STEM}.{ext}" for ext in ("json", "md")}
    try:
        C.refuse_existing(list(paths.values()), args.force)
        from hairseg_edge.data import open_dataset

        total = len(open_dataset(args.data))
        cache = C.cache_dir() / "train_cost"
    except InputError as exc:
        print(f"train_cost: {exc}", file=sys.stderr)
        return 2
    rows, failures = [], []
    for mode in args.mode_list:
        for n in args.size_list:
            try:
                row = measure(args, mode, n, cache)
            except C.StageFailed as exc:
                failures.append(str(exc))
                continue
            rows.append({"mode": mode, "dataset_images": min(n, total) if n else total, **row})
    comparison = {}
    for mode in args.mode_list:
        mine = sorted((r for r in rows if r["mode"] == mode), key=lambda r: r["dataset_images"])
        if len(mine) >= 2:
            small, large = mine[0], mine[-1]
            comparison[mode] = {"small": small["dataset_images"], "large": large["dataset_images"],
                                "small_peak_mb": small["peak_rss_mb"], "large_peak_mb": large["peak_rss_mb"],
                                "growth_mb": round(large["peak_rss_mb"] - small["peak_rss_mb"], 1)}
    # What growth would mean if images were held in memory: the larger set's decoded pixels at 256x256x3.
    verdict = None
    if comparison:
        worst = max(c["growth_mb"] for c in comparison.values())
        extra = max(c["large"] - c["small"] for c in comparison.values())
        in_memory = extra * 256 * 256 * 4 / 2**20  # RGB + mask, uint8
        verdict = (f"Largest peak-RSS difference between the sizes: {worst:+.0f} MB. Holding the extra "
                   f"{extra} decoded 256x256 images and masks in memory would add about {in_memory:.0f} MB "
                   f"(and float32 copies four times that), so "
                   + ("memory does not grow with the data set." if worst < 0.25 * in_memory else
                      "memory DOES grow with the data set: investigate."))
    study = {"study": "training input pipeline and epoch: images/s and peak RSS vs data-set size",
             "machine": C.machine_info(), "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
             "data": str(args.data), "img_size": args.img_size, "arch": args.arch, "width": args.width,
             "batch": args.batch,
             "pipeline_batches": args.pipeline_batches, "train_steps": args.train_steps,
             "rows": rows, "comparison": comparison, "verdict": verdict, "failures": failures}
    args.results.mkdir(parents=True, exist_ok=True)
    C.write_json(paths["json"], study)
    C.write_text(paths["md"], to_markdown(study), force=True)
    print(json.dumps(comparison, indent=1))
    if verdict:
        print(verdict)
    for f in failures:
        print(f"[train_cost] FAILED: {f}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
