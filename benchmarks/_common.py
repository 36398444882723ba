"""Shared machinery of the benchmark scripts (``arch_study.py``, ``sweep.py``, ``train_cost.py``).

Every heavy step runs the real ``hairseg-edge`` command in its own process (``python -m hairseg_edge
...``): training, export, evaluation and timing never share a process, so one model's memory or
thread pool cannot disturb another's numbers, and a crash loses one stage, not the study.

Stages are cached in a folder outside the repository (``$HAIRSEG_BENCH_CACHE``, default
``~/.cache/hairseg-edge/bench``): a stage whose output exists is skipped, a training run that was
interrupted is resumed from its last checkpoint. Rerunning a study after a kill therefore repeats at
most the stage that was cut.

This module imports no TensorFlow (the scripts' parent processes stay light); only the child
processes do.
"""

from __future__ import annotations

import argparse
import datetime as dt
import gzip
import importlib.metadata
import json
import os
import platform
import shlex
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # the scripts run as `python benchmarks/x.py` from a checkout
    sys.path.insert(0, str(REPO))

from hairseg_edge.errors import InputError  # noqa: E402
from hairseg_edge.imageio import write_text  # noqa: E402

BENCH_DIR = REPO / "benchmarks"
RESULTS_DIR = BENCH_DIR / "results"
SPLITS_DIR = BENCH_DIR / "splits"
SHARED = REPO.parent / "shared"
DEFAULT_CELEBA = SHARED / "data" / "celebamask-hq-hair"
DEFAULT_WILD = (SHARED / "data" / "figaro1k-hair-train", SHARED / "data" / "lfw-parts-hair-train")


@dataclass(frozen=True)
class Peer:
    """A public hair model of ``../shared/peers``: study name, file, adapter."""

    name: str
    filename: str
    adapter: str


PEERS = (
    Peer("mediapipe-hair", "hair_segmenter.tflite", "mediapipe-hair"),
    Peer("bisenetv2-celebamask", "bisenetv2_celebamaskhq_256x256_integer_quant.tflite", "bisenetv2-celebamask"),
    Peer("community-mobile", "hair_segmentation_mobile.tflite", "community-mobile"),
)

LIBRARIES = ("tensorflow", "tf-keras", "tensorflow-model-optimization", "ai-edge-litert", "numpy",
             "opencv-python-headless", "hairseg-edge")


class StageFailed(RuntimeError):
    """A child process failed; the message names the stage and the log holding its output."""


# --- test images ------------------------------------------------------------------------------------------
#: Grey of the plain canvas small heads are placed on (``zoom_out(..., border="plain")``).
PLAIN_GREY = 128


def zoom_out(rgb: np.ndarray, mask: np.ndarray, zoom: float, *, border: str = "replicate") -> tuple[np.ndarray, np.ndarray]:
    """The image and mask shrunk by ``zoom`` (INTER_AREA / nearest) and centred on a same-size canvas.

    ``border="replicate"`` repeats the image's edge pixels (no frame to give the scale away; hair at the
    edge is streaked outwards); ``"plain"`` is a uniform grey canvas, as a head in front of a wall.
    """
    if zoom >= 1.0:
        return rgb, mask
    h, w = mask.shape
    sh, sw = max(1, round(h * zoom)), max(1, round(w * zoom))
    top, left = (h - sh) // 2, (w - sw) // 2
    small = cv2.resize(rgb, (sw, sh), interpolation=cv2.INTER_AREA)
    if border == "plain":
        canvas = np.full_like(rgb, PLAIN_GREY)
        canvas[top:top + sh, left:left + sw] = small
    else:
        canvas = cv2.copyMakeBorder(small, top, h - sh - top, left, w - sw - left, cv2.BORDER_REPLICATE)
    target = np.zeros_like(mask)
    target[top:top + sh, left:left + sw] = cv2.resize(mask.astype(np.uint8), (sw, sh),
                                                      interpolation=cv2.INTER_NEAREST_EXACT).astype(mask.dtype)
    return canvas, target


def score_variants(models: dict[str, Path], data: Path, ids: Path, limit: int,
                   variants: dict[str, Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]],
                   ) -> dict[tuple[str, str], Any]:
    """A ``SegmentationMeter`` per (model, variant): the first ``limit`` of ``ids`` in ``data``, each photo
    and its boolean mask turned into each variant's (image, target) and segmented whole by every model
    (``roi="off"``: the model alone; peers through their adapters)."""
    import contextlib

    from hairseg_edge.data import iter_samples, open_dataset, read_id_list
    from hairseg_edge.metrics import SegmentationMeter
    from hairseg_edge.runtime import Segmenter

    ds = open_dataset(data).subset(read_id_list(ids)).limit(limit)
    meters = {(name, v): SegmentationMeter() for name in models for v in variants}
    with contextlib.ExitStack() as stack:
        segmenters = {name: stack.enter_context(Segmenter(path, roi="off")) for name, path in models.items()}
        for _, rgb, mask in iter_samples(ds):
            for v, make in variants.items():
                image, target = make(rgb, mask > 0)
                for name, seg in segmenters.items():
                    meters[name, v].update(seg.segment(image).mask, target)
    return meters


# --- places ----------------------------------------------------------------------------------------------
def cache_dir() -> Path:
    """Where checkpoints, exports and per-stage results live (never inside the repository)."""
    env = os.environ.get("HAIRSEG_BENCH_CACHE")
    path = Path(env) if env else Path.home() / ".cache" / "hairseg-edge" / "bench"
    path = path.expanduser().resolve()
    if path == REPO or REPO in path.parents:
        raise InputError("the benchmark cache must be outside the repository (it holds checkpoints)", path)
    return path


def peers_dir() -> Path:
    env = os.environ.get("HAIRSEG_PEERS")
    return Path(env) if env else SHARED / "peers"


def available_peers(folder: Path | None = None) -> list[tuple[Peer, Path]]:
    """The peers whose file exists (a missing peer is reported by the caller, not fatal)."""
    folder = folder or peers_dir()
    return [(p, folder / p.filename) for p in PEERS if (folder / p.filename).is_file()]


def add_model_options(parser: argparse.ArgumentParser) -> None:
    """The ``--model NAME=FILE.tflite`` (repeatable) and ``--no-peers`` options that
    :func:`models_to_measure` reads."""
    parser.add_argument("--model", action="append", default=[], metavar="NAME=FILE.tflite")
    parser.add_argument("--no-peers", action="store_true")


def models_to_measure(items: Sequence[str], default_name: str, *, peers: bool) -> dict[str, Path]:
    """``--model NAME=FILE.tflite`` items (the bundled int8 model as ``default_name`` when there are
    none), then the available peers unless ``peers`` is false; an InputError for a bad item."""
    from hairseg_edge.errors import InputError
    from hairseg_edge.models import default_model_path

    models: dict[str, Path] = {}
    for item in items or [f"{default_name}={default_model_path('int8')}"]:
        name, sep, path = item.partition("=")
        if not sep or not Path(path).is_file():
            raise InputError(f"--model takes NAME=FILE.tflite of an existing file, got {item!r}")
        models[name] = Path(path)
    if peers:
        models.update({peer.name: path for peer, path in available_peers()})
    return models


def slug(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-._" else "_" for c in text)


# --- child processes -------------------------------------------------------------------------------------
def hairseg(args: Sequence[str], log: Path, *, what: str, env: dict[str, str] | None = None) -> float:
    """Run ``python -m hairseg_edge ARGS`` in its own process, output appended to ``log``.

    Returns the wall time in seconds; raises :class:`StageFailed` with the log's last lines when the
    command fails.
    """
    return run_child([sys.executable, "-m", "hairseg_edge", *map(str, args)], log, what=what, env=env)


def run_child(cmd: Sequence[str], log: Path, *, what: str, env: dict[str, str] | None = None) -> float:
    log.parent.mkdir(parents=True, exist_ok=True)
    child_env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])]), "TF_CPP_MIN_LOG_LEVEL": "2",
        "COLUMNS": "160", **(env or {})}
    started = time.monotonic()
    with open(log, "a", encoding="utf-8") as fh:
        fh.write(f"\n$ {' '.join(map(str, cmd))}   # {now()}\n")
        fh.flush()
        proc = subprocess.run(list(map(str, cmd)), stdout=fh, stderr=subprocess.STDOUT, env=child_env,
                              cwd=REPO)
    seconds = time.monotonic() - started
    if proc.returncode != 0:
        tail = "\n".join(log.read_text(encoding="utf-8", errors="replace").splitlines()[-6:])
        raise StageFailed(f"{what} failed (exit {proc.returncode}); see {log}:\n{tail}")
    return seconds


# --- JSON files ------------------------------------------------------------------------------------------
def read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def write_json(path: Path, data: Any, *, force: bool = True) -> Path:
    return write_text(path, json.dumps(data, indent=1, default=str) + "\n", force=force)


def now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


# --- the fixed validation id list ------------------------------------------------------------------------
def validation_ids(data: Path, out: Path) -> list[str]:
    """The stable hash validation split of ``data`` (``Dataset.split()``), written to ``out``.

    An existing list is kept as it is (it is the study's fixed split) after checking that every id is
    still in the data set; a new one is written with a header naming its source.
    """
    from hairseg_edge.data import id_list_hash, open_dataset, read_id_list

    ds = open_dataset(data)
    if out.exists():
        ids = read_id_list(out)
        ds.subset(ids)  # raises InputError naming missing ids
        return ids
    _, val = ds.split()
    ids = val.ids
    header = (f"# validation ids of {Path(data).name}: the stable hash split of hairseg_edge.data."
              f"Dataset.split() (10%), {len(ids)} of {len(ds)} ids, fingerprint {id_list_hash(ids)}\n")
    write_text(out, header + "\n".join(ids) + "\n")
    return ids


# --- stages ----------------------------------------------------------------------------------------------
def train_stage(run_dir: Path, *, data: Sequence[Path], arch: str, img_size: int, width: float, epochs: int,
                steps_per_epoch: int | None, batch: int = 16, seed: int = 1234, limit: int | None = None,
                data_weights: Sequence[int] | None = None, lr: float = 3e-3, patience: int = 100,
                log: Path) -> dict[str, Any]:
    """Train (or resume, or reuse) a run in ``run_dir``; returns what the study records about it."""
    state_path = run_dir / "state.json"
    wall_path = run_dir / "bench-wall.json"
    state = read_json(state_path) if state_path.exists() else None
    if state is None or not state.get("finished"):
        args = ["train", "--arch", arch, "--img-size", img_size, "--width", width, "--epochs", epochs,
                "--batch", batch, "--seed", seed, "--lr", lr, "--patience", patience, "--out", run_dir]
        for d in data:
            args += ["--data", d]
        if steps_per_epoch:
            args += ["--steps-per-epoch", steps_per_epoch]
        if limit:
            args += ["--limit", limit]
        if data_weights:
            args += ["--data-weights", ",".join(map(str, data_weights))]
        if state is not None:
            args.append("--resume")
        seconds = hairseg(args, log, what=f"training {arch} in {run_dir}")
        wall = read_json(wall_path) if wall_path.exists() else {"seconds": 0.0, "sessions": 0}
        wall = {"seconds": wall["seconds"] + seconds, "sessions": wall["sessions"] + 1}
        write_json(wall_path, wall)
        state = read_json(state_path)
    history = state.get("history", [])
    wall = read_json(wall_path) if wall_path.exists() else {"seconds": None}
    options = read_json(run_dir / "train_options.json")
    return {
        "run_dir": str(run_dir), "model": str(run_dir / "model.keras"), "arch": arch, "img_size": img_size,
        "width": width, "epochs": len(history), "epochs_planned": epochs,
        "steps_per_epoch": steps_per_epoch, "batch": batch, "seed": seed, "data": [str(d) for d in data],
        "data_weights": options.get("data_weights"),
        # images/s x seconds is steps x batch of each epoch (train.py), so this is exact for full passes too.
        "images_seen": (steps_per_epoch * batch * len(history)) if steps_per_epoch else
        (sum(round(r["images_per_s"] * r["seconds"] / batch) * batch for r in history
             if r.get("images_per_s") and r.get("seconds")) or None),
        "best_epoch": state.get("best_epoch"), "best_train_val_iou": state.get("best_val_iou"),
        "fit_minutes": round(sum(r.get("seconds", 0.0) for r in history) / 60, 2),
        "wall_minutes": None if wall.get("seconds") is None else round(wall["seconds"] / 60, 2),
        "images_per_s": _median([r.get("images_per_s") for r in history]),
        "stopped_early": state.get("stopped_early", False),
    }


def export_stage(model: Path, out: Path, flags: Sequence[str], *, data: Path, limit: int | None,
                 finetune_steps: int, finetune_epochs: int = 1, log: Path) -> dict[str, Any]:
    """``hairseg-edge export MODEL FLAGS`` into ``out`` unless its report.json exists; returns the report.

    The study measures, it does not gate: ``--max-drop 1 --min-agreement 0`` make the export write every
    variant, and the drop is reported in the study's table instead.
    """
    report = out / "report.json"
    if not report.exists():
        args = ["export", model, *flags, "--data", data, "--out", out, "--max-drop", "1", "--min-agreement", "0",
                "--finetune-steps", finetune_steps, "--finetune-epochs", finetune_epochs, "--force"]
        if limit:
            args += ["--limit", limit]
        hairseg(args, log, what=f"export {' '.join(flags)} of {model}")
    return read_json(report)


def eval_stage(model: Path, out_json: Path, *, data: Path, ids: Path | None = None, split: str | None = None,
               adapter: str | None = None, limit: int | None = None, log: Path) -> dict[str, Any]:
    """``hairseg-edge eval`` (one thread) unless ``out_json`` exists; returns its JSON."""
    if not out_json.exists():
        args = ["eval", model, "--data", data, "--json", out_json, "--threads", 1, "--force"]
        if limit:
            args += ["--limit", limit]
        if ids is not None:
            args += ["--ids", ids]
        if split is not None:
            args += ["--split", split]
        if adapter:
            args += ["--adapter", adapter]
        hairseg(args, log, what=f"eval of {model}")
    return read_json(out_json)


def bench_stage(model: Path, out_json: Path, *, threads: Sequence[int] = (1, 2), runs: int = 100,
                log: Path) -> dict[int, dict[str, Any]]:
    """``hairseg-edge bench`` (each thread count in its own process) unless cached; ``{threads: row}``."""
    if not out_json.exists():
        hairseg(["bench", model, "--threads", ",".join(map(str, threads)), "--runs", runs, "--warmup", 10,
                 "--json", out_json, "--force"], log, what=f"bench of {model}")
    return {int(r["threads"]): r for r in read_json(out_json)}


def tflite_facts(path: Path) -> dict[str, Any]:
    """Parameters and MACs read from the .tflite itself (the same count for ours and the peers),
    file size and gzip size (level 9: what a download or an app bundle costs)."""
    from hairseg_edge.inspect import inspect_model

    data = path.read_bytes()
    info = inspect_model(path, check_gpu=False)
    return {"size_bytes": len(data), "gzip_bytes": len(gzip.compress(data, 9)),
            "tflite_parameters": info.parameters, "tflite_macs": info.macs,
            "input": [t.to_dict() for t in info.inputs][0] if info.inputs else None}


# --- machine and versions --------------------------------------------------------------------------------
def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info() -> dict[str, Any]:
    versions = {}
    for lib in LIBRARIES:
        try:
            versions[lib] = importlib.metadata.version(lib)
        except importlib.metadata.PackageNotFoundError:
            versions[lib] = None
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True,
                            text=True).stdout.strip() or None
    return {"date": now(), "cpu": cpu_model(), "logical_cpus": os.cpu_count(),
            "system": f"{platform.system()} {platform.release()} {platform.machine()}",
            "python": platform.python_version(), "versions": versions, "git_commit": commit,
            "load_average": [round(x, 2) for x in os.getloadavg()]}


def machine_markdown(m: dict[str, Any]) -> str:
    libs = ", ".join(f"{k} {v}" for k, v in m["versions"].items() if v)
    return (f"- date: {m['date']}\n- CPU: {m['cpu']} ({m['logical_cpus']} logical CPUs), {m['system']}\n"
            f"- Python {m['python']}; {libs}\n- git commit: {m.get('git_commit')}; load average at the end: "
            f"{m['load_average']}\n")


def command_line(script: str, argv: Sequence[str] | None) -> str:
    """How a results page names the command that made it: ``python benchmarks/<script> ARGS``, each argument
    quoted as a shell needs it (model names such as ``"v17 (bundled)=FILE"`` hold spaces)."""
    return f"python benchmarks/{Path(script).name} " + shlex.join(argv or sys.argv[1:])


def report_markdown(title: str, result: dict[str, Any], about: str, headers: Sequence[str],
                    rows: Sequence[Sequence[Any]]) -> str:
    """A one-table results page: title, the machine, the command, what was measured, the table."""
    return (f"# {title}\n\n" + machine_markdown(result["machine"]) + f"\nCommand: `{result['command']}`\n\n"
            + about + "\n\n" + markdown_table(headers, rows))


def write_report(json_path: Path, md_path: Path, result: dict[str, Any], *, title: str, about: str,
                 headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """``result`` as JSON, its :func:`report_markdown` page beside it, and the table on stdout."""
    write_json(json_path, result)
    write_text(md_path, report_markdown(title, result, about, headers, rows), force=True)
    print(markdown_table(headers, rows))


# --- tables and plots ------------------------------------------------------------------------------------
def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of the points no other point beats: lower x (latency) and higher y (accuracy).

    A point is dominated when another is at least as good on both axes and better on one. Points with
    a missing coordinate (None/NaN) are never on the front. Returned in increasing x.
    """
    valid = [(i, x, y) for i, (x, y) in enumerate(points)
             if x is not None and y is not None and x == x and y == y]
    front = []
    for i, x, y in valid:
        dominated = any((x2 <= x and y2 >= y) and (x2 < x or y2 > y) for j, x2, y2 in valid if j != i)
        if not dominated:
            front.append((x, i))
    return [i for _, i in sorted(front)]


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    def cell(v: Any) -> str:
        return "" if v is None else str(v).replace("|", "\\|")
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join(" --- " for _ in headers) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def fmt(value: Any, spec: str = ".4f") -> str:
    if value is None or (isinstance(value, float) and value != value):
        return ""
    return format(value, spec)


def _annotate_apart(ax: Any, points: Sequence[dict[str, Any]]) -> None:
    """Label each point beside it; a label that would cover an earlier one moves to the nearest free
    line above or below (models of the same size and speed land on top of each other)."""
    ax.autoscale_view()  # the limits the points will be drawn with (autoscaling is lazy)
    to_pt = 72.0 / ax.figure.dpi
    placed: list[tuple[float, float, float]] = []  # left, right, baseline of each label, in points
    for p in sorted(points, key=lambda p: (-p["y"], p["x"])):
        x, y = (v * to_pt for v in ax.transData.transform((p["x"], p["y"])))
        left, right = x + 5, x + 5 + 4.2 * len(str(p["label"]))  # ~4.2 pt per character at size 7
        for dy in (4.0, -6.0, 13.0, -15.0, 22.0, -24.0, 31.0, -33.0):
            if not any(left < r and l < right and abs(y + dy - b) < 8 for l, r, b in placed):
                break
        placed.append((left, right, y + dy))
        ax.annotate(p["label"], (p["x"], p["y"]), textcoords="offset points", xytext=(5, dy), fontsize=7)


def scatter_with_front(points: Sequence[dict[str, Any]], path: Path, *, title: str, xlabel: str,
                       ylabel: str, force: bool = True) -> Path:
    """Accuracy (y) vs latency (x) scatter; each point ``{"label", "x", "y", "group"}``; the Pareto
    front over all points is drawn as a step line and its points ringed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from hairseg_edge.imageio import atomic_path

    fig, ax = plt.subplots(figsize=(9, 6))
    groups = list(dict.fromkeys(p["group"] for p in points))
    markers = "osD^vP*Xh<>"
    for k, group in enumerate(groups):
        pts = [p for p in points if p["group"] == group and p["x"] is not None and p["y"] is not None]
        ax.scatter([p["x"] for p in pts], [p["y"] for p in pts], marker=markers[k % len(markers)], s=55,
                   label=group, zorder=3)
    front = pareto_front([(p["x"], p["y"]) for p in points])
    if front:
        fx = [points[i]["x"] for i in front]
        fy = [points[i]["y"] for i in front]
        ax.step(fx, fy, where="post", color="black", lw=1, ls="--", label="Pareto front", zorder=2)
        ax.scatter(fx, fy, s=180, facecolors="none", edgecolors="black", lw=1.2, zorder=4)
    ax.set_xscale("log")
    _annotate_apart(ax, [p for p in points if p["x"] is not None and p["y"] is not None])
    from matplotlib.ticker import FormatStrFormatter

    ax.xaxis.set_major_formatter(FormatStrFormatter("%g"))
    ax.xaxis.set_minor_formatter(FormatStrFormatter("%g"))
    ax.tick_params(axis="x", which="minor", labelsize=7)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    with atomic_path(path, force=force) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    return path


def refuse_existing(paths: Sequence[Path], force: bool) -> None:
    """Results are not overwritten unless ``--force`` (checked before hours of work, not after)."""
    if force:
        return
    for p in paths:
        if p.exists():
            raise InputError("already exists (pass --force to overwrite)", p)


def _median(values: Sequence[Any]) -> float | None:
    vals = sorted(v for v in values if isinstance(v, (int, float)))
    if not vals:
        return None
    mid = len(vals) // 2
    return float(vals[mid] if len(vals) % 2 else (vals[mid - 1] + vals[mid]) / 2)
