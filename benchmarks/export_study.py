#!/usr/bin/env python3
"""Export study: PTQ vs QAT, with and without 50% pruning, on one trained float model, side by side.

What it does, for a float ``.keras`` model (the mobile-first ``mobile_unet`` trained for a few epochs
on CelebAMask-HQ is the intended subject) and a data set:

1. Runs ``hairseg-edge export`` four times, each in its own process, into ``WORK/exports/<config>/``:

   ============== ============================================ ==========================
   config         flags                                        variants
   ============== ============================================ ==========================
   ptq            (post-training quantization)                 float32, float16, dynamic, int8
   qat            ``--qat``                                    int8
   pruned50-ptq   ``--prune 0.5``                              float32, int8
   pruned50-qat   ``--prune 0.5 --qat``                        int8
   ============== ============================================ ==========================

   Every export verifies its variants against the same float original (converted to a float32
   .tflite, unpruned) on the validation split of ``--data`` through the device runtime, and writes
   ``report.json``. A variant that misses the export gate is not written; its numbers are still in the
   report and in this study's table (status ``rejected``). ``--write-all`` opens the gate instead
   (``--max-drop 1 --min-agreement 0``), so every variant is written and benched; the acceptance
   criteria below still use ``--max-drop``.
2. Times every written .tflite with ``hairseg_edge.bench`` on one thread, one process per model
   (timing many models in one process is erratic on a small shared VM), ``--bench-rounds`` times
   over all models in turn; a model's p50 is the median of its rounds' p50s. The float32 file of the
   ``ptq`` config is the float baseline of the speed-up and size ratios.
3. Writes ``--report`` (Markdown: date, machine, load, versions, the side-by-side table, the
   acceptance criteria) and the same data as JSON beside it, atomically.

Acceptance criteria (issue 3), checked on every int8 variant and required of the ``ptq`` int8:

* int8 IoU within ``--max-drop`` (0.005, half a point) of the float original's;
* int8 at least 2.5x faster than float32 on one thread, in the same run;
* int8 file at most 0.3x the float32 file.

Exit code 0 when the ``ptq`` int8 meets all three, 1 otherwise, 2 on bad input.

Usage (a few hours on a 2-core VM, most of it QAT fine-tuning; ``--finetune-steps`` shortens it)::

    python benchmarks/export_study.py runs/mobile/model.keras \\
        --data ../shared/data/celebamask-hq-hair --work export-study-work \\
        --report benchmarks/export_study.md

Quick smoke run (minutes): ``--limit 200 --finetune-epochs 1 --finetune-steps 20 --bench-rounds 1
--configs ptq,qat``. Keep ``WORK`` out of the repository: it holds the exported models.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import statistics
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run from a checkout without installing
    sys.path.insert(0, str(REPO))

from hairseg_edge.errors import HairsegError, InputError  # noqa: E402
from hairseg_edge.imageio import write_text  # noqa: E402


@dataclass(frozen=True)
class StudyConfig:
    name: str
    flags: tuple[str, ...]
    summary: str


CONFIGS: dict[str, StudyConfig] = {c.name: c for c in (
    StudyConfig("ptq", ("--float32", "--fp16", "--dynamic", "--int8"), "post-training quantization"),
    StudyConfig("qat", ("--int8", "--qat"), "quantization-aware training"),
    StudyConfig("pruned50-ptq", ("--float32", "--int8", "--prune", "0.5"), "50% pruning, then PTQ"),
    StudyConfig("pruned50-qat", ("--int8", "--prune", "0.5", "--qat"),
                "50% pruning, then sparsity-preserving QAT"),
)}
MIN_SPEEDUP = 2.5
MAX_SIZE_RATIO = 0.3


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", type=Path, help="float .keras model (from hairseg-edge train)")
    p.add_argument("--data", type=Path, required=True,
                   help="data set: training split fine-tunes/calibrates, validation split verifies")
    p.add_argument("--work", type=Path, default=Path("export-study-work"),
                   help="folder for the exports and bench results (keep it out of the repo)")
    p.add_argument("--report", type=Path, default=REPO / "benchmarks" / "export_study.md",
                   help="Markdown report; the JSON goes beside it")
    p.add_argument("--configs", default=",".join(CONFIGS),
                   help=f"comma-separated subset of: {', '.join(CONFIGS)}")
    p.add_argument("--limit", type=int, default=None, help="cap on images read from each set")
    p.add_argument("--calib-count", type=int, default=200)
    p.add_argument("--max-drop", type=float, default=0.005)
    p.add_argument("--min-agreement", type=float, default=0.97)
    p.add_argument("--finetune-epochs", type=int, default=2)
    p.add_argument("--finetune-steps", type=int, default=None)
    p.add_argument("--finetune-batch", type=int, default=16)
    p.add_argument("--finetune-lr", type=float, default=1e-4)
    p.add_argument("--bench-runs", type=int, default=100, help="timed invokes per bench measurement")
    p.add_argument("--bench-rounds", type=int, default=3, help="bench passes over all models")
    p.add_argument("--write-all", action="store_true",
                   help="run the exports with the gate open (--max-drop 1 --min-agreement 0) so every "
                        "variant is written and benched; the criteria still use --max-drop")
    p.add_argument("--force", action="store_true", help="replace earlier exports and reports")
    args = p.parse_args(argv)
    names = [n.strip() for n in args.configs.split(",") if n.strip()]
    unknown = [n for n in names if n not in CONFIGS]
    if unknown or not names:
        p.error(f"--configs: unknown {', '.join(unknown) or '(empty)'}; choose from {', '.join(CONFIGS)}")
    args.configs = names
    # The exports run with the repository as their working folder: make every path absolute first.
    for name in ("model", "data", "work", "report"):
        setattr(args, name, getattr(args, name).resolve())
    return args


def run_export(config: StudyConfig, args: argparse.Namespace) -> dict[str, Any]:
    """One ``hairseg-edge export`` in its own process; returns its report.json (gate failures included)."""
    out = args.work / "exports" / config.name
    max_drop, min_agreement = (1.0, 0.0) if args.write_all else (args.max_drop, args.min_agreement)
    argv = ["export", str(args.model), *config.flags, "--data", str(args.data), "--out", str(out),
            "--calib-count", str(args.calib_count), "--max-drop", str(max_drop),
            "--min-agreement", str(min_agreement), "--finetune-epochs", str(args.finetune_epochs),
            "--finetune-batch", str(args.finetune_batch), "--finetune-lr", str(args.finetune_lr)]
    if args.limit is not None:
        argv += ["--limit", str(args.limit)]
    if args.finetune_steps is not None:
        argv += ["--finetune-steps", str(args.finetune_steps)]
    if args.force:
        argv.append("--force")
    print(f"[{_now()}] export {config.name}: hairseg-edge {' '.join(argv)}", flush=True)
    proc = subprocess.run([sys.executable, "-m", "hairseg_edge", *argv], cwd=REPO, check=False)
    report_path = out / "report.json"
    if proc.returncode not in (0, 1) or not report_path.is_file():
        raise HairsegError(f"export {config.name} failed (exit {proc.returncode}); see the output above")
    report = json.loads(report_path.read_text())
    report["exit_code"] = proc.returncode
    return report


def bench_p50(paths: list[str], args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    """``{path: {"p50_ms", "rounds_p50_ms", "fps"}}``: one thread, one process per model and round."""
    from hairseg_edge.bench import BenchOptions, benchmark

    options = BenchOptions(threads=(1,), runs=args.bench_runs, warmup=10)
    rounds: dict[str, list[float]] = {p: [] for p in paths}
    errors: dict[str, str] = {}
    for i in range(args.bench_rounds):
        print(f"[{_now()}] bench round {i + 1}/{args.bench_rounds}: {len(paths)} models", flush=True)
        # One thread count: results come back one per model, in order.
        for path, result in zip(paths, benchmark(paths, options)):
            if result.ok and result.p50_ms is not None:
                rounds[path].append(result.p50_ms)
            else:
                errors[path] = result.error or "no timing"
    out = {}
    for path, values in rounds.items():
        if values:
            p50 = statistics.median(values)
            out[path] = {"p50_ms": p50, "rounds_p50_ms": values, "fps": 1000.0 / p50}
        else:
            out[path] = {"p50_ms": None, "rounds_p50_ms": [], "error": errors.get(path)}
    return out


def study_rows(reports: dict[str, dict[str, Any]], bench: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (config, variant), with bench timings and ratios against the ptq float32 file."""
    base = None
    if "ptq" in reports:
        for v in reports["ptq"]["variants"]:
            if v["name"] == "float32" and v["path"]:
                base = v
    base_ms = bench.get(base["path"], {}).get("p50_ms") if base else None
    rows = []
    for config, report in reports.items():
        float_iou = report["float"]["iou"]
        float_ms = report["float"]["p50_ms"]
        for v in report["variants"]:
            timing = bench.get(v["path"] or "", {})
            ms = timing.get("p50_ms")
            benched = bool(base_ms and ms)
            rows.append({
                "config": config, "variant": v["name"], "status": v["status"], "path": v["path"],
                "size_bytes": v["size_bytes"], "gzip_bytes": v["gzip_bytes"], "sparsity": v["sparsity"],
                "iou": v["iou"], "float_iou": float_iou,
                "iou_drop": None if v["iou"] is None or float_iou is None else float_iou - v["iou"],
                "f1": v["f1"], "agreement_iou": v["agreement_iou"], "max_prob_diff": v["max_prob_diff"],
                "export_p50_ms": v["p50_ms"], "bench_p50_ms": ms,
                # bench (separate processes) when the file was written; else the export's own
                # in-process timing against its float32 reference, flagged as such
                "speedup_vs_float32": (base_ms / ms) if benched else (
                    (float_ms / v["p50_ms"]) if (float_ms and v["p50_ms"]) else None),
                "speedup_source": "bench" if benched else "export",
                "size_vs_float32": (v["size_bytes"] / base["size_bytes"]) if base else None,
                "built_with": v.get("built_with"), "reason": v.get("reason", ""),
            })
    return rows


def criteria(rows: list[dict[str, Any]], max_drop: float) -> list[dict[str, Any]]:
    """The three acceptance checks on every int8 row."""
    checks = []
    for row in rows:
        if row["variant"] != "int8":
            continue
        drop, speed, size = row["iou_drop"], row["speedup_vs_float32"], row["size_vs_float32"]
        checks.append({
            "config": row["config"],
            "iou_within_max_drop": None if drop is None else drop <= max_drop + 1e-12,
            "speedup_at_least_2_5x": None if speed is None else speed >= MIN_SPEEDUP,
            "size_at_most_0_3x": None if size is None else size <= MAX_SIZE_RATIO,
            "iou_drop": drop, "speedup": speed, "size_ratio": size,
        })
    return checks


def machine() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": cpu, "logical_cpus": os.cpu_count(), "system": f"{platform.system()} {platform.release()}",
            "python": platform.python_version(), "load_average": list(os.getloadavg())}


def model_summary(path: Path) -> dict[str, Any]:
    """Name and size of the .keras model, read from its config.json (no TensorFlow needed)."""
    info: dict[str, Any] = {"path": str(path.resolve()), "bytes": path.stat().st_size}
    try:
        with zipfile.ZipFile(path) as archive:
            config = json.loads(archive.read("config.json"))
        info["name"] = config.get("config", {}).get("name") or config.get("name")
        layers = config.get("config", {}).get("layers", [])
        shapes = [lay["config"].get("batch_input_shape") for lay in layers
                  if lay.get("class_name") == "InputLayer"]
        if shapes and shapes[0]:
            info["input_shape"] = shapes[0]
    except (OSError, KeyError, ValueError, zipfile.BadZipFile):
        pass
    return info


def _f(value: Any, spec: str, unit: str = "") -> str:
    return "n/a" if value is None else format(value, spec) + unit


def _yes(value: bool | None) -> str:
    return "n/a" if value is None else ("yes" if value else "**NO**")


def to_markdown(study: dict[str, Any]) -> str:
    m, mdl = study["machine"], study["model"]
    lines = [
        "# Export study: PTQ vs QAT, with and without 50% pruning", "",
        f"- Date: {study['date']}",
        f"- Machine: {m['cpu']}, {m['logical_cpus']} logical CPUs, {m['system']}, Python {m['python']}; "
        f"load average {', '.join(f'{x:.2f}' for x in m['load_average'])} at the start, "
        f"{', '.join(f'{x:.2f}' for x in study['load_average_end'])} at the end",
        f"- Versions: {', '.join(f'{k} {v}' for k, v in study['versions'].items())}",
        f"- Model: `{mdl['path']}` ({mdl.get('name', '?')}, input {mdl.get('input_shape', '?')}, "
        f"{mdl['bytes'] / 1024:.0f} KB .keras)",
        f"- Data: `{study['data']}`; evaluation: {study['evaluation']['count']} images "
        f"({study['evaluation']['selection']}, id hash {study['evaluation']['ids_hash']}); "
        f"calibration: {study['calibration_count']} images",
        f"- Float original (float32 .tflite, unpruned): IoU {_f(study['float_iou'], '.4f')}, "
        f"F1 {_f(study['float_f1'], '.4f')}",
        f"- Command: `{study['command']}`", "",
        "Latency: `hairseg_edge.bench`, one thread, one process per model, "
        f"{study['bench_runs']} timed invokes after warm-up, median of {study['bench_rounds']} rounds. "
        "Speed-up and size ratio are against the `ptq` float32 file. Sparsity is the share of zeros "
        "over the pruned kernels (the same kernels for every row).", "",
        "| config | variant | status | KB | gzip KB | size vs f32 | sparsity | IoU | IoU drop | F1 "
        "| agreement | max prob diff | p50 ms | speed-up |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in study["rows"]:
        star = "" if r["speedup_source"] == "bench" else "*"
        ms = r["bench_p50_ms"] if r["bench_p50_ms"] is not None else r["export_p50_ms"]
        lines.append(
            f"| {r['config']} | {r['variant']} | {r['status']} | {r['size_bytes'] / 1024:.1f} | "
            f"{r['gzip_bytes'] / 1024:.1f} | {_f(r['size_vs_float32'], '.2f', 'x')} | "
            f"{_f(r['sparsity'], '.3f')} | {_f(r['iou'], '.4f')} | {_f(r['iou_drop'], '+.4f')} | "
            f"{_f(r['f1'], '.4f')} | {_f(r['agreement_iou'], '.4f')} | {_f(r['max_prob_diff'], '.3f')} | "
            f"{_f(ms, '.2f')}{star} | {_f(r['speedup_vs_float32'], '.2f', 'x')}{star} |")
    lines += ["", "\\* not written (rejected by the export gate), so not benched: latency and speed-up "
              "come from the export's own timing, in one process, against its float32 reference.",
              "", "## Acceptance criteria (int8)", "",
              "| config | IoU within max drop | >= 2.5x faster than float32 | <= 0.3x float32 size |",
              "|---|---|---|---|"]
    for c in study["criteria"]:
        lines.append(f"| {c['config']} | {_yes(c['iou_within_max_drop'])} ({_f(c['iou_drop'], '+.4f')}) | "
                     f"{_yes(c['speedup_at_least_2_5x'])} ({_f(c['speedup'], '.2f', 'x')}) | "
                     f"{_yes(c['size_at_most_0_3x'])} ({_f(c['size_ratio'], '.2f', 'x')}) |")
    lines += ["", f"Headline (ptq int8): **{'met' if study['headline_met'] else 'NOT met'}**.", ""]
    notes = [f"- {cfg}: {note}" for cfg, rep in study["reports"].items() for note in rep.get("notes", [])]
    gates = [f"- {cfg}: gate {'passed' if rep['gate']['passed'] else 'FAILED'}: {rep['gate']['reason']}"
             for cfg, rep in study["reports"].items()]
    opened = " (opened with --write-all: every variant written; judge by the criteria above)" \
        if study.get("write_all") else ""
    lines += [f"## Export gates{opened}", "", *gates, ""]
    if notes:
        lines += ["## Notes", "", *notes, ""]
    return "\n".join(lines)


def _now() -> str:
    return dt.datetime.now().strftime("%H:%M:%S")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        if not args.model.is_file():
            raise InputError("no such file", args.model)
        json_path = args.report.with_suffix(".json")
        for path in (args.report, json_path):
            if path.exists() and not args.force:
                raise InputError("already exists (pass --force to overwrite)", path)
        start_machine = machine()
        reports = {name: run_export(CONFIGS[name], args) for name in args.configs}
        written = [v["path"] for rep in reports.values() for v in rep["variants"] if v["path"]]
        bench = bench_p50(written, args) if written else {}
        rows = study_rows(reports, bench)
        checks = criteria(rows, args.max_drop)
        headline = next((c for c in checks if c["config"] == "ptq"), None)
        first = next(iter(reports.values()))
        study = {
            "date": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
            "command": " ".join([Path(sys.argv[0]).name, *(argv if argv is not None else sys.argv[1:])]),
            "machine": start_machine,
            "load_average_end": list(os.getloadavg()),
            "versions": first["versions"],
            "model": model_summary(args.model),
            "data": str(args.data.resolve()),
            "evaluation": first["evaluation"],
            "calibration_count": (first.get("calibration") or {}).get("count"),
            "float_iou": first["float"]["iou"], "float_f1": first["float"]["f1"],
            "bench_runs": args.bench_runs, "bench_rounds": args.bench_rounds, "write_all": args.write_all,
            "max_drop": args.max_drop,
            "rows": rows, "criteria": checks,
            "headline_met": bool(headline and all(headline[k] for k in (
                "iou_within_max_drop", "speedup_at_least_2_5x", "size_at_most_0_3x"))),
            "bench": bench, "reports": reports,
        }
        write_text(json_path, json.dumps(study, indent=2) + "\n", force=args.force)
        write_text(args.report, to_markdown(study), force=args.force)
        print(f"[{_now()}] wrote {args.report} and {json_path}")
        print(f"headline (ptq int8): {'met' if study['headline_met'] else 'NOT met'}")
        return 0 if study["headline_met"] else 1
    except HairsegError as err:
        print(f"export_study: {err}", file=sys.stderr)
        return err.exit_code


if __name__ == "__main__":
    sys.exit(main())
