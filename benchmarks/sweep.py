#!/usr/bin/env python3
"""Input-size x width sweep of one architecture (``--arch``, default the bundled model's): validation IoU
vs int8 latency.

For every (input size, width) of the grid (default 128/160/192 x 0.35/0.5/0.75):

1. a short training on the three data sets (CelebAMask-HQ, Figaro-1k, LFW Part Labels; ``hairseg-edge
   train``, cached and resumable; each set keeps its stable hash validation split),
2. an int8 export (``hairseg-edge export --int8``, post-training quantization calibrated on CelebAMask-HQ),
3. ``hairseg-edge eval`` of the int8 model on the CelebAMask-HQ validation ids
   (``benchmarks/splits/celebamask-hq-hair_val.txt``) and on the validation split of each in-the-wild set,
4. ``hairseg-edge bench`` of the int8 model on one thread (invoke only, its own process).

The three peers are scored and timed the same way, and models trained elsewhere can join with
``--extra NAME=MODEL.keras`` (exported and measured exactly like the grid). Results:
``benchmarks/results/sweep.{json,md,png}``; the plot puts CelebAMask-HQ validation IoU against int8 p50
latency, the peers as points on the same axes, with the Pareto front.

Short trainings rank sizes and widths; they do not give the final accuracy of a long run. Every point
records its epochs, steps and training minutes.

Usage (about 9 x 25 minutes on 2 cores with the defaults)::

    python benchmarks/sweep.py --force

Smaller::

    python benchmarks/sweep.py --sizes 128,160,192 --widths 0.35,0.75 --epochs 4 --steps-per-epoch 60 --force
"""

from __future__ import annotations

import argparse
import json
import sys
import traceback
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402

from hairseg_edge.errors import InputError  # noqa: E402
from hairseg_edge.models import MODELS_DIR  # noqa: E402

RESULT_STEM = "sweep"
#: The architecture of the bundled default model.
DEFAULT_ARCH = json.loads((MODELS_DIR / "model_card.json").read_text())["architecture"]


def _floats(text: str) -> list[float]:
    try:
        return [float(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise InputError(f"expected comma-separated numbers, got {text!r}") from None


def parse_extra(text: str) -> tuple[str, Path]:
    name, sep, path = text.partition("=")
    if not sep or not name or not path:
        raise InputError(f"--extra takes NAME=MODEL.keras, got {text!r}")
    if not Path(path).is_file():
        raise InputError("no such model", path)
    return C.slug(name), Path(path)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--arch", default=DEFAULT_ARCH, help="Architecture from the registry (default: %(default)s, "
                   "the bundled model's).")
    p.add_argument("--sizes", default="128,160,192", help="Input sizes (multiples of 32).")
    p.add_argument("--widths", default="0.35,0.5,0.75", help="Width multipliers.")
    p.add_argument("--points", default=None,
                   help="Explicit SIZExWIDTH points instead of the full grid, e.g. 128x0.35,192x0.75.")
    p.add_argument("--data", type=Path, action="append", default=None,
                   help="Training folders (repeat; default: the three shared sets). The first is the "
                        "CelebAMask-HQ set the plot's IoU and the int8 calibration use.")
    p.add_argument("--data-weights", default="1,2,1", help="Oversampling per --data folder.")
    p.add_argument("--epochs", type=int, default=6)
    p.add_argument("--steps-per-epoch", type=int, default=150)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--seed", type=int, default=1234)
    p.add_argument("--limit", type=int, default=None, help="First N images of each set (smoke runs).")
    p.add_argument("--export-limit", type=int, default=600, help="Images the int8 export reads.")
    p.add_argument("--eval-limit", type=int, default=None, help="Score only the first N validation ids.")
    p.add_argument("--bench-runs", type=int, default=100)
    p.add_argument("--extra", action="append", default=[], metavar="NAME=MODEL.keras",
                   help="Also export and measure this trained model (repeatable).")
    p.add_argument("--no-peers", action="store_true")
    p.add_argument("--ids", type=Path, default=C.SPLITS_DIR / "celebamask-hq-hair_val.txt")
    p.add_argument("--results", type=Path, default=C.RESULTS_DIR)
    p.add_argument("--force", action="store_true", help="Overwrite the results of an earlier sweep.")
    args = p.parse_args(argv)
    args.data = args.data or [C.DEFAULT_CELEBA, *C.DEFAULT_WILD]
    weights = [int(w) for w in args.data_weights.split(",")] if args.data_weights else None
    if weights is not None and len(weights) != len(args.data):
        weights = None if len(args.data) == 1 else weights
        if weights is not None:
            raise InputError("--data-weights needs one integer per --data folder")
    args.weights = weights
    if args.points:
        pts = []
        for item in args.points.split(","):
            s, _, w = item.partition("x")
            try:
                pts.append((int(s), float(w)))
            except ValueError:
                raise InputError(f"--points takes SIZExWIDTH items, got {item!r}") from None
        args.grid = pts
    else:
        args.grid = [(int(s), w) for s in _floats(args.sizes) for w in _floats(args.widths)]
    for s, w in args.grid:
        if s < 32 or s % 32:
            raise InputError(f"input size must be a multiple of 32, got {s}")
    args.extras = [parse_extra(e) for e in args.extra]
    return args


class Sweep:
    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.cache = C.cache_dir() / "sweep"
        self.logs = self.cache / "logs"
        self.points: list[dict[str, Any]] = []
        self.failures: list[str] = []
        self.paths = {ext: args.results / f"{RESULT_STEM}.{ext}" for ext in ("json", "md", "png")}

    def eval_sets(self) -> list[tuple[str, Path, Path | None, str | None]]:
        """(name, folder, ids file, split) of every validation set the points are scored on."""
        a = self.args
        ids = C.validation_ids(a.data[0], a.ids)
        if a.eval_limit:
            sub = self.cache / f"val-first{a.eval_limit}.txt"
            C.write_text(sub, "\n".join(ids[:a.eval_limit]) + "\n", force=True)
            first = (a.data[0].name, a.data[0], sub, None)
        else:
            first = (a.data[0].name, a.data[0], a.ids, None)
        # The in-the-wild sets: their own hash split (the one training kept out), scored whole.
        return [first] + [(d.name, d, None, "val") for d in a.data[1:]]

    def measure(self, path: Path, key: str, adapter: str | None = None) -> dict[str, Any]:
        a = self.args
        suffix = f"-first{a.eval_limit}" if a.eval_limit else ""
        row: dict[str, Any] = {"path": str(path), "iou": {}, "f1": {}, "boundary_f": {}, "eval_images": {}}
        for name, folder, ids, split in self.sets:
            ev = C.eval_stage(path, self.cache / "eval" / f"{key}-{name}{suffix}.json", data=folder, ids=ids,
                              split=split, adapter=adapter, limit=a.eval_limit if split else None,
                              log=self.logs / "eval.log")
            row["iou"][name] = ev["iou"]
            row["f1"][name] = ev["f1"]
            row["boundary_f"][name] = ev["boundary_f"]
            row["eval_images"][name] = ev["n"]
        bench = C.bench_stage(path, self.cache / "bench" / f"{key}-r{a.bench_runs}.json", threads=(1,),
                              runs=a.bench_runs, log=self.logs / "bench.log")
        row["p50_ms_1t"] = bench[1].get("p50_ms")
        row["peak_rss_mb"] = bench[1].get("peak_rss_mb")
        row.update(C.tflite_facts(path))
        return row

    def export_int8(self, model: Path, key: str) -> Path:
        a = self.args
        out = self.cache / "exports" / f"{key}-el{a.export_limit}"
        C.export_stage(model, out, ("--int8",), data=a.data[0], limit=a.export_limit, finetune_steps=1,
                       log=self.logs / "export.log")
        path = out / f"{model.stem}-int8.tflite"
        if not path.exists():
            raise C.StageFailed(f"the export wrote no {path.name} (see {out / 'report.md'})")
        return path

    def grid_point(self, size: int, width: float) -> None:
        a = self.args
        tag = "-".join(d.name.split("-")[0] for d in a.data)
        key = (f"{a.arch}-s{size}-w{width:g}-e{a.epochs}x{a.steps_per_epoch}-b{a.batch}-{tag}"
               f"-dw{'-'.join(map(str, a.weights or []))}-seed{a.seed}" + (f"-limit{a.limit}" if a.limit else ""))
        train = C.train_stage(self.cache / "runs" / key, data=a.data, arch=a.arch, img_size=size, width=width,
                              epochs=a.epochs, steps_per_epoch=a.steps_per_epoch, batch=a.batch, seed=a.seed,
                              limit=a.limit, data_weights=a.weights, log=self.logs / f"train-{key}.log")
        path = self.export_int8(Path(train["model"]), key)
        row = self.measure(path, f"{key}-int8")
        self.points.append({"name": f"{size}px w{width:g}", "kind": "grid", "img_size": size, "width": width,
                            "training": train, **row})

    def extra(self, name: str, model: Path) -> None:
        path = self.export_int8(model, f"extra-{name}")
        row = self.measure(path, f"extra-{name}-int8")
        self.points.append({"name": name, "kind": "extra", "keras_model": str(model.resolve()), **row})

    def peers(self) -> None:
        for peer, path in C.available_peers():
            try:
                row = self.measure(path, f"peer-{peer.name}", adapter=peer.adapter)
            except (C.StageFailed, InputError) as exc:
                self.failures.append(f"peer {peer.name}: {exc}")
                continue
            self.points.append({"name": peer.name, "kind": "peer", **row})

    def write(self, final: bool) -> None:
        a = self.args
        main_set = self.sets[0][0]
        points = sorted(self.points, key=lambda p: (p["kind"] == "peer", p.get("img_size") or 0,
                                                    p.get("width") or 0, p["name"]))
        front = C.pareto_front([(p.get("p50_ms_1t"), p["iou"].get(main_set)) for p in points])
        for i, p in enumerate(points):
            p["pareto"] = i in front
        done = {(p["img_size"], p["width"]) for p in points if p["kind"] == "grid"}
        sweep = {
            "study": f"{a.arch} input size x width sweep: validation IoU vs int8 latency", "arch": a.arch,
            "complete": final and not self.failures and done == set(a.grid),
            "machine": C.machine_info(), "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
            "grid": [list(g) for g in a.grid], "missing": [list(g) for g in a.grid if g not in done],
            "training": {"data": [str(d) for d in a.data], "data_weights": a.weights, "epochs": a.epochs,
                         "steps_per_epoch": a.steps_per_epoch, "batch": a.batch, "seed": a.seed,
                         "limit": a.limit},
            "eval_sets": [{"name": n, "data": str(f), "ids": None if i is None else str(i), "split": s}
                          for n, f, i, s in self.sets],
            "plot_iou_set": main_set, "points": points, "failures": self.failures,
        }
        a.results.mkdir(parents=True, exist_ok=True)
        C.write_json(self.paths["json"], sweep)
        if points:
            C.scatter_with_front(
                [{"label": p["name"], "x": p.get("p50_ms_1t"), "y": p["iou"].get(main_set),
                  "group": {"grid": f"{a.arch} int8 (short training)", "extra": "trained elsewhere, int8",
                            "peer": "peers"}[p["kind"]]} for p in points],
                self.paths["png"], xlabel="int8 p50 latency, 1 thread, invoke only (ms, log scale); peers as shipped",
                ylabel=f"global IoU, {main_set} validation ids",
                title=f"{a.arch} sweep: {a.epochs} epochs x {a.steps_per_epoch} steps each, "
                      f"{sweep['machine']['cpu']}")
        C.write_text(self.paths["md"], to_markdown(sweep, self.paths["png"].name), force=True)

    def run(self) -> int:
        a = self.args
        C.refuse_existing(list(self.paths.values()), a.force)
        self.sets = self.eval_sets()
        if not a.no_peers:
            self.peers()
        for name, model in a.extras:
            self._guard(f"extra {name}", self.extra, name, model)
        for size, width in a.grid:
            self._guard(f"{size}px w{width:g}", self.grid_point, size, width)
        self.write(final=True)
        for f in self.failures:
            print(f"[sweep] FAILED: {f}", file=sys.stderr)
        return 1 if self.failures else 0

    def _guard(self, what: str, fn, *args) -> None:
        try:
            fn(*args)
        except (C.StageFailed, InputError) as exc:
            self.failures.append(f"{what}: {exc}")
        except Exception:
            self.failures.append(f"{what}: {traceback.format_exc(limit=3)}")
        self.write(final=False)
        print(f"[sweep] {what} done; results so far in {self.paths['md']}", flush=True)


def to_markdown(sweep: dict[str, Any], png_name: str) -> str:
    sets = [s["name"] for s in sweep["eval_sets"]]
    t = sweep["training"]
    out = [f"# {sweep.get('arch', 'mobile_unet')} sweep: validation IoU vs int8 latency\n\n",
           "" if sweep["complete"] else "**Partial results**: see *Failures and gaps* below.\n\n",
           "## Machine\n\n", C.machine_markdown(sweep["machine"]),
           f"\nCommand: `python benchmarks/{sweep['command']}`\n\n",
           f"Training per grid point: {t['epochs']} epochs x {t['steps_per_epoch']} steps x batch {t['batch']} on "
           f"{', '.join(Path(d).name for d in t['data'])} (weights {t['data_weights']}), seed {t['seed']}. "
           "int8: post-training quantization calibrated on CelebAMask-HQ training images. IoU: "
           f"`hairseg-edge eval` on the {sets[0]} validation ids and the validation split of each other set. "
           "Latency: `hairseg-edge bench`, one thread, invoke only.\n\n"]
    headers = ["model", "input", "MACs (M)", "int8 KB", *[f"IoU {s}" for s in sets],
               f"F1 {sets[0]}", "p50 ms 1T", "train min", "Pareto"]
    rows = []
    for p in sweep["points"]:
        inp = p.get("input") or {}
        shape = inp.get("shape")
        tr = p.get("training") or {}
        rows.append([p["name"], "x".join(map(str, shape[1:3])) if shape else "",
                     C.fmt(p["tflite_macs"] / 1e6, ".1f"), C.fmt(p["size_bytes"] / 1024, ".0f"),
                     *[C.fmt(p["iou"].get(s)) for s in sets], C.fmt(p["f1"].get(sets[0])),
                     C.fmt(p.get("p50_ms_1t"), ".2f"), C.fmt(tr.get("wall_minutes"), ".1f"),
                     "yes" if p.get("pareto") else ""])
    out.append(C.markdown_table(headers, rows))
    out.append(f"\n![IoU vs int8 latency]({png_name})\n\n## Failures and gaps\n\n")
    out.append("".join(f"- {f}\n" for f in sweep["failures"]) or "")
    if sweep["missing"]:
        out.append("- grid points not measured in this run: "
                   + ", ".join(f"{s}px w{w:g}" for s, w in sweep["missing"]) + "\n")
    if not sweep["failures"] and not sweep["missing"]:
        out.append("none\n")
    return "".join(out)


def main(argv: list[str] | None = None) -> int:
    try:
        return Sweep(parse_args(argv)).run()
    except InputError as exc:
        print(f"sweep: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
