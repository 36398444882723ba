#!/usr/bin/env python3
"""Architecture study: every registry architecture x {float32, int8, int8-qat, pruned50-int8}, and the
three public hair models, measured side by side on one machine.

For each architecture of ``hairseg_edge.training.archs`` at one input size (160) and a width that
trains in about 30 minutes on a 2-core CPU (:data:`ARCH_PLANS`):

1. train on CelebAMask-HQ (``hairseg-edge train``; a finished run in the cache is reused, an
   interrupted one resumed),
2. export (``hairseg-edge export``, three runs): ``--float32 --int8`` (post-training quantization),
   ``--int8 --qat`` and ``--prune 0.5 --int8``,
3. score every .tflite and the peers with ``hairseg-edge eval`` on the fixed validation id list
   ``benchmarks/splits/celebamask-hq-hair_val.txt`` (global IoU, F1, boundary F), one thread,
4. time them with ``hairseg-edge bench`` at 1 and 2 threads (invoke only; each model and thread count in
   its own process; p50 latency and peak RSS),
5. write ``benchmarks/results/arch_study.{json,md,png}``: date, CPU, versions, the table and an
   IoU-vs-latency plot with the Pareto front.

Every stage is cached under ``$HAIRSEG_BENCH_CACHE/arch_study`` (default ``~/.cache/hairseg-edge/bench``),
so an interrupted study continues where it stopped; the results files are rewritten after every
architecture, so a partial study is readable.

Usage (hours on 2 cores; ``make bench`` runs this)::

    python benchmarks/arch_study.py --force

A shorter study with the same structure (what the committed results used when time was short; the
results record the actual plan)::

    python benchmarks/arch_study.py --steps-per-epoch 60 --plan mobile_unet=0.5:12 --plan unet=0.125:3 --force
"""

from __future__ import annotations

import argparse
import sys
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402

from hairseg_edge.errors import InputError  # noqa: E402


@dataclass(frozen=True)
class ArchPlan:
    """How one architecture is trained for the study."""

    width: float
    epochs: int


#: Widths and epochs that train in about 30 minutes each on a 2-core x86 CPU at 160x160 with one full
#: pass (4,331 training images) per epoch. MACs at 160 px (``hairseg-edge train --list-archs``):
#: custom_cnn 0.25 -> 194 M, unet 0.125 -> 345 M, deeplabv3 0.25 -> 265 M, mobile_unet 0.5 -> 48 M,
#: fused_unet 0.75 -> 94 M.
#: The full-width U-Net (22 G MACs) and DeepLabV3 do not fit 2 cores.
ARCH_PLANS: dict[str, ArchPlan] = {
    "custom_cnn": ArchPlan(width=0.25, epochs=6),
    "unet": ArchPlan(width=0.125, epochs=4),
    "deeplabv3": ArchPlan(width=0.25, epochs=4),
    "mobile_unet": ArchPlan(width=0.5, epochs=16),
    "fused_unet": ArchPlan(width=0.75, epochs=16),
    "fused_unet_ctx": ArchPlan(width=1.0, epochs=16),  # the large tier's architecture (issue 28)
}

#: Export runs per architecture: (config name, export flags, {study variant: file name in the export}).
EXPORTS = (
    ("ptq", ("--float32", "--int8"), {"float32": "model-float32.tflite", "int8": "model-int8.tflite"}),
    ("qat", ("--int8", "--qat"), {"int8-qat": "model-int8-qat.tflite"}),
    ("pruned50", ("--prune", "0.5", "--int8"), {"pruned50-int8": "model-pruned50-int8.tflite"}),
)
VARIANTS = ("float32", "int8", "int8-qat", "pruned50-int8")

RESULT_STEM = "arch_study"


def parse_plan(text: str) -> tuple[str, ArchPlan]:
    """``arch=width:epochs`` -> (arch, plan)."""
    try:
        arch, rest = text.split("=", 1)
        width, epochs = rest.split(":", 1)
        plan = ArchPlan(float(width), int(epochs))
    except ValueError:
        raise InputError(f"--plan takes ARCH=WIDTH:EPOCHS, e.g. unet=0.125:4; got {text!r}") from None
    if arch not in ARCH_PLANS:
        raise InputError(f"--plan: unknown architecture {arch!r}; choose from {', '.join(ARCH_PLANS)}")
    if plan.epochs < 1 or not 0.05 <= plan.width <= 4:
        raise InputError(f"--plan {text!r}: epochs must be >= 1 and width in [0.05, 4]")
    return arch, plan


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=C.DEFAULT_CELEBA, help="CelebAMask-HQ hair folder.")
    p.add_argument("--archs", default=",".join(ARCH_PLANS), help="Comma-separated architectures.")
    p.add_argument("--img-size", type=int, default=160, help="Common input size.")
    p.add_argument("--plan", action="append", default=[], metavar="ARCH=WIDTH:EPOCHS",
                   help="Override an architecture's width and epochs (repeatable).")
    p.add_argument("--steps-per-epoch", type=int, default=None,
                   help="Cap the steps per epoch (default: one pass over the training split).")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--seed", type=int, default=1234)
    p.add_argument("--limit", type=int, default=None, help="Train on the first N images only (smoke runs).")
    p.add_argument("--export-limit", type=int, default=600,
                   help="Images the export reads (fine-tuning/calibration from its train split, its own "
                        "verification from its val split); the study's scores come from eval.")
    p.add_argument("--finetune-steps", type=int, default=100, help="Pruning / QAT fine-tune steps.")
    p.add_argument("--eval-limit", type=int, default=None, help="Score only the first N validation ids.")
    p.add_argument("--bench-runs", type=int, default=100)
    p.add_argument("--threads", default="1,2", help="Thread counts to time.")
    p.add_argument("--no-peers", action="store_true", help="Leave the peers out.")
    p.add_argument("--ids", type=Path, default=C.SPLITS_DIR / "celebamask-hq-hair_val.txt",
                   help="The fixed validation id list (written from the hash split when missing).")
    p.add_argument("--results", type=Path, default=C.RESULTS_DIR, help="Where the json/md/png go.")
    p.add_argument("--force", action="store_true", help="Overwrite the results of an earlier study.")
    args = p.parse_args(argv)
    args.archs = [a.strip() for a in args.archs.split(",") if a.strip()]
    for a in args.archs:
        if a not in ARCH_PLANS:
            raise InputError(f"unknown architecture {a!r}; choose from {', '.join(ARCH_PLANS)}")
    plans = dict(ARCH_PLANS)
    for text in args.plan:
        arch, plan = parse_plan(text)
        plans[arch] = plan
    args.plans = plans
    args.threads = tuple(int(t) for t in args.threads.split(","))
    return args


class Study:
    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.cache = C.cache_dir() / "arch_study"
        self.logs = self.cache / "logs"
        self.rows: list[dict[str, Any]] = []
        self.training: dict[str, dict[str, Any]] = {}
        self.failures: list[str] = []
        self.paths = {ext: args.results / f"{RESULT_STEM}.{ext}" for ext in ("json", "md", "png")}

    # Measurements ---------------------------------------------------------------------------------
    def ids_file(self) -> Path:
        a = self.args
        ids = C.validation_ids(a.data, a.ids)
        if a.eval_limit:  # a smoke run scores a prefix of the fixed list, recorded as its own file
            sub = self.cache / f"val-first{a.eval_limit}.txt"
            C.write_text(sub, "\n".join(ids[:a.eval_limit]) + "\n", force=True)
            return sub
        return a.ids

    def measure(self, path: Path, key: str, adapter: str | None = None) -> dict[str, Any]:
        """eval + bench + file facts of one .tflite; each cached under its key."""
        a = self.args
        suffix = f"-first{a.eval_limit}" if a.eval_limit else ""
        ev = C.eval_stage(path, self.cache / "eval" / f"{key}{suffix}.json", data=a.data, ids=self.ids,
                          adapter=adapter, log=self.logs / "eval.log")
        bench = C.bench_stage(path, self.cache / "bench" / f"{key}-r{a.bench_runs}.json", threads=a.threads,
                              runs=a.bench_runs, log=self.logs / "bench.log")
        facts = C.tflite_facts(path)
        row = {"path": str(path), **facts,
               "iou": ev["iou"], "f1": ev["f1"], "boundary_f": ev["boundary_f"], "mean_iou": ev["mean_iou"],
               "precision": ev["precision"], "recall": ev["recall"], "eval_images": ev["n"],
               "eval_ids_hash": ev["ids_hash"], "adapter": ev["adapter"]}
        for t in a.threads:
            b = bench.get(t, {})
            row[f"p50_ms_{t}t"] = b.get("p50_ms")
            row[f"p90_ms_{t}t"] = b.get("p90_ms")
            row[f"peak_rss_mb_{t}t"] = b.get("peak_rss_mb")
        row["peak_rss_mb"] = max((v for k, v in row.items() if k.startswith("peak_rss_mb_") and v), default=None)
        return row

    def peers(self) -> None:
        found = C.available_peers()
        missing = {p.name for p in C.PEERS} - {p.name for p, _ in found}
        for name in sorted(missing):
            self.failures.append(f"peer {name}: file not found in {C.peers_dir()}")
        for peer, path in found:
            try:
                row = self.measure(path, f"peer-{peer.name}", adapter=peer.adapter)
            except (C.StageFailed, InputError) as exc:
                self.failures.append(f"peer {peer.name}: {exc}")
                continue
            self.rows.append({"name": peer.name, "kind": "peer", "arch": None, "variant": None, **row})

    def arch(self, arch: str) -> None:
        a = self.args
        plan = a.plans[arch]
        steps = a.steps_per_epoch
        run_name = (f"{arch}-w{plan.width:g}-s{a.img_size}-e{plan.epochs}"
                    + (f"x{steps}" if steps else "") + f"-b{a.batch}-seed{a.seed}"
                    + (f"-limit{a.limit}" if a.limit else ""))
        run_dir = self.cache / "runs" / run_name
        train = C.train_stage(run_dir, data=[a.data], arch=arch, img_size=a.img_size, width=plan.width,
                              epochs=plan.epochs, steps_per_epoch=steps, batch=a.batch, seed=a.seed,
                              limit=a.limit, log=self.logs / f"train-{arch}.log")
        self.training[arch] = train
        model = Path(train["model"])
        for config, flags, files in EXPORTS:
            out = self.cache / "exports" / f"{run_name}-ft{a.finetune_steps}-el{a.export_limit}" / config
            try:
                report = C.export_stage(model, out, flags, data=a.data, limit=a.export_limit,
                                        finetune_steps=a.finetune_steps, log=self.logs / f"export-{arch}.log")
            except C.StageFailed as exc:
                self.failures.append(f"{arch} export {config}: {exc}")
                continue
            by_name = {v["name"]: v for v in report.get("variants", [])}
            for variant, filename in files.items():
                path = out / filename
                base = "int8" if variant != "float32" else "float32"
                vrep = by_name.get(base, {})
                if not path.exists():
                    self.failures.append(f"{arch}/{variant}: the export wrote no {filename} "
                                         f"({vrep.get('reason', 'see the export log')})")
                    continue
                try:
                    row = self.measure(path, f"{run_name}-ft{a.finetune_steps}-{variant}")
                except (C.StageFailed, InputError) as exc:
                    self.failures.append(f"{arch}/{variant}: {exc}")
                    continue
                self.rows.append({
                    "name": f"{arch}/{variant}", "kind": "ours", "arch": arch, "variant": variant,
                    "width": plan.width, "img_size": a.img_size, **row,
                    "sparsity": vrep.get("sparsity"),
                    "export_agreement_iou": vrep.get("agreement_iou"),
                    "export_built_with": (vrep.get("extra") or {}).get("built_with"),
                })

    # Results --------------------------------------------------------------------------------------
    def write(self, final: bool) -> None:
        rows = order_rows(self.rows)
        front = C.pareto_front([(r.get("p50_ms_1t"), r.get("iou")) for r in rows])
        for i, r in enumerate(rows):
            r["pareto"] = i in front
        study = {
            "study": "architectures x variants vs the public hair models",
            "complete": final and not self.failures and all(a in self.training for a in self.args.archs),
            "machine": C.machine_info(),
            "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
            "data": str(self.args.data), "val_ids": str(self.args.ids),
            "eval_limit": self.args.eval_limit, "img_size": self.args.img_size,
            "threads": list(self.args.threads), "bench_runs": self.args.bench_runs,
            "export": {"limit": self.args.export_limit, "finetune_steps": self.args.finetune_steps,
                       "finetune_epochs": 1, "prune": 0.5},
            "training": self.training, "rows": rows, "failures": self.failures,
        }
        self.args.results.mkdir(parents=True, exist_ok=True)
        C.write_json(self.paths["json"], study)
        if rows:
            C.scatter_with_front(
                [{"label": r["name"], "x": r.get("p50_ms_1t"), "y": r.get("iou"),
                  "group": "peers" if r["kind"] == "peer" else r["variant"]} for r in rows],
                self.paths["png"], xlabel="p50 latency, 1 thread, invoke only (ms, log scale)",
                ylabel="global IoU, CelebAMask-HQ validation ids",
                title=f"hairseg-edge architecture study at {self.args.img_size}px: {study['machine']['cpu']}")
        C.write_text(self.paths["md"], to_markdown(study, self.paths["png"].name), force=True)

    def run(self) -> int:
        a = self.args
        C.refuse_existing(list(self.paths.values()), a.force)
        self.ids = self.ids_file()
        if not a.no_peers:
            self.peers()
        self.write(final=False)
        for arch in a.archs:
            try:
                self.arch(arch)
            except (C.StageFailed, InputError) as exc:
                self.failures.append(f"{arch}: {exc}")
            except Exception:  # keep the other architectures' results; the trace goes to the results
                self.failures.append(f"{arch}: {traceback.format_exc(limit=3)}")
            self.write(final=False)
            print(f"[arch_study] {arch} done; results so far in {self.paths['md']}", flush=True)
        self.write(final=True)
        for f in self.failures:
            print(f"[arch_study] FAILED: {f}", file=sys.stderr)
        return 1 if self.failures else 0


def order_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Ours by registry order then variant order, then the peers."""
    arch_order = {a: i for i, a in enumerate(ARCH_PLANS)}
    var_order = {v: i for i, v in enumerate(VARIANTS)}
    return sorted(rows, key=lambda r: (r["kind"] == "peer", arch_order.get(r.get("arch"), 99),
                                       var_order.get(r.get("variant"), 99), r["name"]))


def to_markdown(study: dict[str, Any], png_name: str) -> str:
    rows = study["rows"]
    threads = study["threads"]
    out = ["# Architecture study: accuracy, size and speed of every architecture and variant vs the peers\n",
           "" if study["complete"] else
           "**Partial results**: not every stage finished (see *Failures and gaps* below).\n",
           "## Machine\n", C.machine_markdown(study["machine"]),
           f"\nCommand: `python benchmarks/{study['command']}`\n",
           f"\nScores: `hairseg-edge eval` (one thread, each image at its own 256x256 resolution) on "
           f"{rows[0]['eval_images'] if rows else '?'} ids of `{Path(study['val_ids']).name}` "
           f"({Path(study['data']).name}). Times: `hairseg-edge bench`, invoke only, "
           f"{study['bench_runs']} runs, each model and thread count in its own process. Parameters and "
           "MACs are counted from each .tflite (constant tensor elements; conv/dense MACs), the same way "
           "for ours and the peers.\n"]
    out.append("\n## Training (CelebAMask-HQ training split)\n\n")
    trows = []
    for arch, t in study["training"].items():
        steps = t["steps_per_epoch"] or "full pass"
        trows.append([arch, f"{t['width']:g}", t["img_size"], f"{t['epochs']} x {steps}", t["batch"],
                      t["images_seen"] or "", C.fmt(t["fit_minutes"], ".1f"), C.fmt(t["wall_minutes"], ".1f"),
                      C.fmt(t["images_per_s"], ".1f"), C.fmt(t["best_train_val_iou"], ".4f")])
    out.append(C.markdown_table(["arch", "width", "input", "epochs x steps", "batch", "images seen",
                                 "fit min", "wall min", "img/s", "val IoU (Keras, during training)"], trows))
    out.append("\n## Results\n\n")
    headers = ["model", "params", "MACs (M)", "size KB", "gzip KB", "IoU", "F1", "boundary F",
               *[f"p50 ms {t}T" for t in threads], "peak RSS MB", "Pareto"]
    table = []
    for r in rows:
        table.append([r["name"], f"{r['tflite_parameters']:,}", C.fmt(r["tflite_macs"] / 1e6, ".1f"),
                      C.fmt(r["size_bytes"] / 1024, ".0f"), C.fmt(r["gzip_bytes"] / 1024, ".0f"),
                      C.fmt(r["iou"]), C.fmt(r["f1"]), C.fmt(r["boundary_f"]),
                      *[C.fmt(r.get(f"p50_ms_{t}t"), ".2f") for t in threads],
                      C.fmt(r.get("peak_rss_mb"), ".0f"), "yes" if r.get("pareto") else ""])
    out.append(C.markdown_table(headers, table))
    out.append(f"\n![IoU vs latency]({png_name})\n")
    out.append("\n## Quantization and pruning against each float32 model\n\n")
    out.append(C.markdown_table(["arch", "variant", "IoU", "IoU - float32", "p50 1T speed-up", "size ratio",
                                 "sparsity"], variant_deltas(rows)))
    out.append("\n## Failures and gaps\n\n")
    out.append("".join(f"- {f}\n" for f in study["failures"]))
    missing = [a for a in ARCH_PLANS if a not in study["training"]]
    if missing:
        out.append(f"- not trained/measured in this run: {', '.join(missing)}\n")
    if not study["failures"] and not missing:
        out.append("none\n")
    return "".join(out)


def variant_deltas(rows: list[dict[str, Any]]) -> list[list[Any]]:
    """Each compressed variant against its architecture's float32 row."""
    floats = {r["arch"]: r for r in rows if r["kind"] == "ours" and r["variant"] == "float32"}
    out = []
    for r in rows:
        if r["kind"] != "ours" or r["variant"] == "float32" or r["arch"] not in floats:
            continue
        f = floats[r["arch"]]
        speed = (f["p50_ms_1t"] / r["p50_ms_1t"]) if f.get("p50_ms_1t") and r.get("p50_ms_1t") else None
        out.append([r["arch"], r["variant"], C.fmt(r["iou"]), C.fmt(r["iou"] - f["iou"], "+.4f"),
                    C.fmt(speed, ".2f"), C.fmt(r["size_bytes"] / f["size_bytes"], ".2f"),
                    C.fmt(r.get("sparsity"), ".2f")])
    return out


def main(argv: list[str] | None = None) -> int:
    try:
        args = parse_args(argv)
        return Study(args).run()
    except InputError as exc:
        print(f"arch_study: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
