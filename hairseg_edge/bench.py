"""Benchmark .tflite models on this CPU, each model and thread count in its own process.

For every (model, threads) pair a fresh worker process (``python -m hairseg_edge.bench --worker ...``)
loads the model, times it and prints one JSON line; the parent collects the lines. One process per
measurement keeps one model's warm caches, allocator state and thread pool from colouring the next
model's numbers (on a small shared VM, timing many models in one process gave erratic results).

Figures, as TFLite's ``benchmark_model`` reports them: file size, input shape and dtype, load time
(read + build interpreter + allocate tensors), first inference, then ``warmup`` untimed runs and
``runs`` timed ones (p50/p90/p99/mean/std of ``invoke()``, FPS = 1000 / mean), and the worker's peak
resident memory. ``end_to_end=True`` times the whole frame path instead: read (JPEG decode of a
camera-sized frame, or ``read_image`` of ``--image``), prepare (letterbox / resize), infer (encode,
invoke, copy the outputs) and post (decode, back to the frame's size, threshold: what
``Segmenter.segment`` does, so a quantized model's mask is made in integers), with the mean of each
stage.

Any valid .tflite can be timed on synthetic input; end-to-end mode needs a model an adapter can run.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import os
import resource
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .errors import HairsegError, InputError

#: Camera-sized synthetic frame for end-to-end mode (720p).
FRAME_HW = (720, 1280)
#: The first line of a worker's stdout that starts with this carries its result.
RESULT_PREFIX = "HAIRSEG_BENCH_RESULT "
#: Keys of every JSON record, in order (the documented schema).
RECORD_KEYS = ("model", "threads", "size_bytes", "input_shape", "input_dtype", "load_ms", "first_ms",
               "p50_ms", "p90_ms", "p99_ms", "mean_ms", "std_ms", "fps", "peak_rss_mb")
_STAGES = ("read", "prepare", "infer", "post")


@dataclass(frozen=True)
class BenchOptions:
    """How to time: thread counts, timed and warm-up runs, the frame, end-to-end or invoke only."""

    threads: tuple[int, ...] = (1,)
    runs: int = 50
    warmup: int = 5
    image: Path | None = None
    end_to_end: bool = False
    #: end to end only: each frame also runs mirrored and the outputs are averaged (``--flip-tta``).
    flip_tta: bool = False
    #: end to end only: ``"auto"`` also times the region stage (locate + full-resolution crops, stage "roi").
    roi: str = "off"
    timeout_s: float = 900.0

    def __post_init__(self) -> None:
        if self.flip_tta and not self.end_to_end:
            raise InputError("--flip-tta is timed end to end (it runs the model twice per frame): "
                             "add --end-to-end")
        if self.roi not in ("auto", "off"):
            raise InputError(f"--roi must be auto or off, got {self.roi!r}")
        if self.roi == "auto" and not self.end_to_end:
            raise InputError("--roi auto is timed end to end (it runs the model on crops of the frame): "
                             "add --end-to-end")
        if not self.threads or any(not isinstance(t, int) or t < 1 for t in self.threads):
            raise InputError(f"thread counts must be positive integers, got {list(self.threads)}")
        if self.runs < 1:
            raise InputError(f"--runs must be at least 1, got {self.runs}")
        if self.warmup < 0:
            raise InputError(f"--warmup must be 0 or more, got {self.warmup}")
        if self.timeout_s <= 0:
            raise InputError(f"timeout must be positive, got {self.timeout_s}")

    def to_dict(self) -> dict[str, Any]:
        return {"threads": list(self.threads), "runs": self.runs, "warmup": self.warmup,
                "image": None if self.image is None else str(self.image),
                "end_to_end": self.end_to_end, "flip_tta": self.flip_tta, "roi": self.roi,
                "timeout_s": self.timeout_s}


def _round(value: float | None, digits: int = 6) -> float | None:
    """Nanosecond resolution is plenty for the JSON; None stays None."""
    return None if value is None else round(float(value), digits)


@dataclass(frozen=True)
class BenchResult:
    """One (model, threads) measurement, or the reason it failed (``error``)."""

    model: str
    threads: int
    size_bytes: int | None = None
    input_shape: tuple[int, ...] | None = None
    input_dtype: str | None = None
    load_ms: float | None = None
    first_ms: float | None = None
    p50_ms: float | None = None
    p90_ms: float | None = None
    p99_ms: float | None = None
    mean_ms: float | None = None
    std_ms: float | None = None
    fps: float | None = None
    peak_rss_mb: float | None = None
    end_to_end: bool = False
    flip_tta: bool = False
    adapter: str | None = None
    runs: int | None = None
    #: "auto" when the frame went through the region stage (end to end; its time is stage "roi").
    roi: str = "off"
    stages_ms: dict[str, float] = field(default_factory=dict)
    #: end to end only: median per frame of prepare + infer + post, i.e. from decoded RGB pixels to
    #: the mask (the stage figures are means, which a few slow frames pull up).
    rgb_to_mask_p50_ms: float | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    def to_dict(self) -> dict[str, Any]:
        record: dict[str, Any] = {
            "model": self.model,
            "threads": self.threads,
            "size_bytes": self.size_bytes,
            "input_shape": None if self.input_shape is None else list(self.input_shape),
            "input_dtype": self.input_dtype,
            "load_ms": _round(self.load_ms),
            "first_ms": _round(self.first_ms),
            "p50_ms": _round(self.p50_ms),
            "p90_ms": _round(self.p90_ms),
            "p99_ms": _round(self.p99_ms),
            "mean_ms": _round(self.mean_ms),
            "std_ms": _round(self.std_ms),
            "fps": _round(self.fps, 2),
            "peak_rss_mb": _round(self.peak_rss_mb, 1),
            "end_to_end": self.end_to_end,
            "flip_tta": self.flip_tta,
            "adapter": self.adapter,
            "runs": self.runs,
        }
        if self.roi != "off":  # the region stage was timed too (stage "roi")
            record["roi"] = self.roi
        if self.stages_ms:
            record["stages_ms"] = {k: _round(v) for k, v in self.stages_ms.items()}
        if self.rgb_to_mask_p50_ms is not None:
            record["rgb_to_mask_p50_ms"] = _round(self.rgb_to_mask_p50_ms)
        if self.error is not None:
            record["error"] = self.error
        return record

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> BenchResult:
        shape = d.get("input_shape")
        return cls(
            model=str(d["model"]), threads=int(d["threads"]),
            size_bytes=d.get("size_bytes"), input_shape=None if shape is None else tuple(shape),
            input_dtype=d.get("input_dtype"), load_ms=d.get("load_ms"), first_ms=d.get("first_ms"),
            p50_ms=d.get("p50_ms"), p90_ms=d.get("p90_ms"), p99_ms=d.get("p99_ms"),
            mean_ms=d.get("mean_ms"), std_ms=d.get("std_ms"), fps=d.get("fps"),
            peak_rss_mb=d.get("peak_rss_mb"), end_to_end=bool(d.get("end_to_end", False)),
            flip_tta=bool(d.get("flip_tta", False)), adapter=d.get("adapter"), runs=d.get("runs"),
            roi=str(d.get("roi", "off")), stages_ms=dict(d.get("stages_ms") or {}),
            rgb_to_mask_p50_ms=d.get("rgb_to_mask_p50_ms"), error=d.get("error"),
        )


# ------------------------------------------------------------------------------------------------
# Measuring, inside the worker process
# ------------------------------------------------------------------------------------------------


def peak_rss_mb() -> float:
    """This process's peak resident set size in MiB.

    On Linux this is ``VmHWM`` of ``/proc/self/status``: ``ru_maxrss`` would do, except that Linux
    carries the high-water mark of the pre-exec image over ``exec``, so a worker started from a big
    parent (vfork/posix_spawn share the parent's memory until exec) would report the parent's peak.
    Elsewhere ``getrusage``'s ``ru_maxrss`` (KiB on Linux and BSD, bytes on macOS).
    """
    try:
        with open("/proc/self/status", encoding="ascii", errors="replace") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0  # kB
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024.0 * 1024.0) if sys.platform == "darwin" else peak / 1024.0


def synthetic_frame(height: int = FRAME_HW[0], width: int = FRAME_HW[1], seed: int = 0) -> np.ndarray:
    """A deterministic camera-like RGB frame: smooth gradients, a few shapes, sensor noise."""
    import cv2

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    frame = np.stack([120 + 80 * xx / width, 100 + 60 * yy / height,
                      140 - 60 * xx / width], axis=-1)
    cv2.ellipse(frame, (width // 2, height // 2), (height // 4, height // 3), 0, 0, 360,
                (220, 170, 140), -1)
    cv2.ellipse(frame, (width // 2, height // 2 - height // 6), (height // 3, height // 4), 0, 180,
                360, (50, 35, 25), -1)
    frame += rng.normal(0.0, 4.0, frame.shape).astype(np.float32)
    return np.clip(frame, 0, 255).astype(np.uint8)


def _stats(times_ms: Sequence[float]) -> dict[str, float]:
    values = np.asarray(times_ms, dtype=np.float64)
    mean = float(values.mean())
    return {
        "p50_ms": float(np.percentile(values, 50)),
        "p90_ms": float(np.percentile(values, 90)),
        "p99_ms": float(np.percentile(values, 99)),
        "mean_ms": mean,
        "std_ms": float(values.std()),
        "fps": 1000.0 / mean if mean > 0 else math.inf,
    }


def _synthetic_tensor(spec: Any, rng: np.random.Generator) -> np.ndarray:
    """Input for a model no adapter knows: values spread over the dtype's range."""
    dtype = np.dtype(spec.dtype)
    shape = [max(1, d) for d in spec.shape]
    if dtype.kind == "f":
        return rng.random(shape, dtype=np.float32).astype(dtype)
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        low, high = max(info.min, -128), min(info.max, 255)
        return rng.integers(low, high + 1, size=shape).astype(dtype)
    if dtype.kind == "b":
        return rng.integers(0, 2, size=shape).astype(bool)
    raise InputError(f"cannot make synthetic input for a {spec.dtype} tensor")


def _frame_reader(image: Path | None) -> Callable[[], np.ndarray]:
    """The 'read' stage: ``read_image`` of the given file, or a JPEG decode of the synthetic frame."""
    import cv2

    from .imageio import read_image

    if image is not None:
        read_image(image)  # fail early, with the reader's own message
        return lambda: read_image(image)
    ok, encoded = cv2.imencode(".jpg", cv2.cvtColor(synthetic_frame(), cv2.COLOR_RGB2BGR),
                               [cv2.IMWRITE_JPEG_QUALITY, 90])
    if not ok:  # pragma: no cover (OpenCV always encodes JPEG)
        raise InputError("cannot encode the synthetic frame")
    return lambda: cv2.cvtColor(cv2.imdecode(encoded, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def measure(model: str | os.PathLike[str], threads: int, *, runs: int = 50, warmup: int = 5,
            image: Path | None = None, end_to_end: bool = False, flip_tta: bool = False,
            roi: str = "off") -> BenchResult:
    """Time one model at one thread count in this process (the worker calls this)."""
    from .runtime import Segmenter, load_model, quantize_input

    shown = os.fspath(model)
    if end_to_end:
        read = _frame_reader(image)
        started = time.perf_counter()
        seg = Segmenter(model, threads=threads, flip_tta=flip_tta, roi=roi)
        stage = seg.region_stage
        load_ms = (time.perf_counter() - started) * 1000.0
        size, spec = seg.size_bytes, seg.inputs[0]
        clock = time.perf_counter

        rgb_to_mask: list[float] = []

        def one_frame(stage_sums: dict[str, float] | None) -> float:
            t0 = clock()
            rgb = read()
            t1 = clock()
            model_image, context = seg.prepare(rgb)
            t2 = clock()
            outputs = seg.infer(model_image)
            t3 = clock()
            whole = seg.finish(outputs, context)
            whole.mask  # what segment() does: a mask-only caller's frame
            t4 = clock()
            if stage is not None:  # the region stage: locate, segment full-resolution crops, paste
                stage.segment_boxes(rgb, stage.locate(whole), whole).mask
            t5 = clock()
            if stage_sums is not None:
                for name, dt in zip(_STAGES, (t1 - t0, t2 - t1, t3 - t2, t4 - t3)):
                    stage_sums[name] += dt * 1000.0
                if stage is not None:
                    stage_sums["roi"] = stage_sums.get("roi", 0.0) + (t5 - t4) * 1000.0
                rgb_to_mask.append((t5 - t1) * 1000.0)
            return (t5 - t0) * 1000.0

        first_ms = one_frame(None)
        for _ in range(warmup):
            one_frame(None)
        sums = dict.fromkeys(_STAGES, 0.0)
        times = [one_frame(sums) for _ in range(runs)]
        stages = {name: total / runs for name, total in sums.items()}
        frame_p50 = float(np.median(rgb_to_mask))
        adapter = seg.adapter_name
        seg.close()
    else:
        loaded = load_model(model, threads=threads)
        load_ms, size, spec = loaded.load_ms, loaded.size_bytes, loaded.inputs[0]
        interpreter = loaded.interpreter
        rng = np.random.default_rng(0)
        adapter = None
        try:
            from .adapters import detect_adapter

            found = detect_adapter(loaded.inputs, loaded.outputs)
        except Exception:  # detection is a nicety here; any valid .tflite is timed
            found = None
        if found is not None and image is not None:
            from .imageio import read_image

            model_image, _ = found.prepare(read_image(image), found.input_hw(loaded.inputs))
            tensor = quantize_input(found.encode(model_image, spec), spec)[np.newaxis]
        else:
            tensor = _synthetic_tensor(spec, rng)
        if found is not None:
            adapter = found.name
        for extra in loaded.inputs[1:]:
            interpreter.set_tensor(extra.index, _synthetic_tensor(extra, rng))
        interpreter.set_tensor(spec.index, tensor)
        clock = time.perf_counter
        t0 = clock()
        interpreter.invoke()
        first_ms = (clock() - t0) * 1000.0
        for _ in range(warmup):
            interpreter.invoke()
        times = []
        for _ in range(runs):
            t0 = clock()
            interpreter.invoke()
            times.append((clock() - t0) * 1000.0)
        stages = {}
        frame_p50 = None
        loaded.interpreter = None
    return BenchResult(
        model=shown, threads=threads, size_bytes=size, input_shape=tuple(spec.shape),
        input_dtype=spec.dtype, load_ms=load_ms, first_ms=first_ms, **_stats(times),
        peak_rss_mb=peak_rss_mb(), end_to_end=end_to_end, flip_tta=flip_tta, adapter=adapter, runs=runs,
        roi=roi if end_to_end else "off",
        stages_ms=stages, rgb_to_mask_p50_ms=frame_p50,
    )


# ------------------------------------------------------------------------------------------------
# Orchestrating workers, in the parent process
# ------------------------------------------------------------------------------------------------


def _worker_env() -> dict[str, str]:
    """The parent's environment; from a source checkout, with the checkout importable too."""
    env = dict(os.environ)
    package_parent = Path(__file__).resolve().parent.parent
    if (package_parent / "pyproject.toml").is_file():  # not installed: run from the repo
        paths = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
        if str(package_parent) not in paths:
            env["PYTHONPATH"] = os.pathsep.join([str(package_parent), *paths])
    env.setdefault("PYTHONHASHSEED", "0")
    return env


def worker_command(model: str, threads: int, options: BenchOptions) -> list[str]:
    cmd = [sys.executable, "-m", "hairseg_edge.bench", "--worker", model, "--threads", str(threads),
           "--runs", str(options.runs), "--warmup", str(options.warmup)]
    if options.image is not None:
        cmd += ["--image", str(options.image)]
    if options.end_to_end:
        cmd.append("--end-to-end")
    if options.flip_tta:
        cmd.append("--flip-tta")
    if options.roi != "off":
        cmd += ["--roi", options.roi]
    return cmd


def _pass_on_model_warnings(worker_stderr: str) -> None:
    """Re-issue the worker's UnverifiedModelWarning here (end-to-end timing builds a Segmenter in
    the worker), so ``bench`` says it like ``run`` and ``eval`` do, once per model."""
    import warnings

    from .errors import UnverifiedModelWarning

    marker = f"{UnverifiedModelWarning.__name__}: "
    for line in worker_stderr.splitlines():
        if marker in line:
            warnings.warn(UnverifiedModelWarning(line.split(marker, 1)[1].strip()), stacklevel=2)


def run_worker(model: str | os.PathLike[str], threads: int, options: BenchOptions) -> BenchResult:
    """Measure ``model`` at ``threads`` in a fresh process; failures come back as ``error`` rows."""
    shown = os.fspath(model)
    try:
        proc = subprocess.run(worker_command(shown, threads, options), capture_output=True,
                              text=True, env=_worker_env(), timeout=options.timeout_s, check=False)
    except subprocess.TimeoutExpired:
        return BenchResult(shown, threads, error=f"timed out after {options.timeout_s:.0f} s")
    _pass_on_model_warnings(proc.stderr)
    for line in proc.stdout.splitlines():
        if line.startswith(RESULT_PREFIX):
            try:
                return BenchResult.from_dict(json.loads(line[len(RESULT_PREFIX):]))
            except (ValueError, KeyError, TypeError) as exc:
                return BenchResult(shown, threads, error=f"unreadable worker result ({exc})")
    # No result line: the worker crashed (a native abort or a signal).
    tail = [ln.strip() for ln in proc.stderr.splitlines() if ln.strip()]
    if proc.returncode < 0:
        reason = f"worker killed by signal {-proc.returncode}"
    else:
        reason = f"worker exited with code {proc.returncode}"
    if tail:
        reason += f": {tail[-1]}"
    return BenchResult(shown, threads, error=reason)


def benchmark(models: Sequence[str | os.PathLike[str]], options: BenchOptions, *,
              progress: Callable[[str, int], None] | None = None) -> list[BenchResult]:
    """Every model at every thread count, one process each, one after the other.

    ``progress(model, threads)`` is called before each measurement starts. A model whose first
    measurement fails is not retried at its other thread counts.
    """
    if not models:
        raise InputError("no models to benchmark")
    if options.image is not None:
        from .imageio import read_image

        read_image(options.image)  # a bad --image is the user's error, not every model's
    results = []
    for model in models:
        for threads in options.threads:
            if progress is not None:
                progress(os.fspath(model), threads)
            result = run_worker(model, threads, options)
            results.append(result)
            if not result.ok:
                break  # a model that fails once fails at every thread count: one row says why
    return results


def results_json(results: Sequence[BenchResult]) -> str:
    return json.dumps([r.to_dict() for r in results], indent=2) + "\n"


def results_csv(results: Sequence[BenchResult]) -> str:
    columns = [*RECORD_KEYS, "end_to_end", "flip_tta", "adapter", "runs",
               *(f"{s}_ms" for s in _STAGES), "rgb_to_mask_p50_ms", "error"]
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for r in results:
        row = r.to_dict()
        stages = row.pop("stages_ms", {}) or {}
        row["input_shape"] = "x".join(str(d) for d in row["input_shape"]) if row["input_shape"] else ""
        for s in _STAGES:
            row[f"{s}_ms"] = stages.get(s, "")
        writer.writerow({k: ("" if row.get(k) is None else row.get(k)) for k in columns})
    return out.getvalue()


def parse_threads(text: str) -> tuple[int, ...]:
    """``"1,2,4"`` -> ``(1, 2, 4)``; anything else is an InputError."""
    try:
        values = tuple(int(part) for part in text.replace(" ", "").split(",") if part)
    except ValueError:
        raise InputError(f"--threads takes a comma-separated list of integers, got {text!r}") from None
    from .runtime import MAX_THREADS

    if not values or any(not 1 <= v <= MAX_THREADS for v in values):
        raise InputError(f"--threads values must be integers between 1 and {MAX_THREADS}, "
                         f"got {text!r}")
    return tuple(dict.fromkeys(values))


# ------------------------------------------------------------------------------------------------
# Worker entry point: python -m hairseg_edge.bench --worker MODEL ...
# ------------------------------------------------------------------------------------------------


def _worker_main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hairseg_edge.bench",
                                     description="Time one model in this process (bench worker).")
    parser.add_argument("--worker", required=True, metavar="MODEL")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--image", type=Path, default=None)
    parser.add_argument("--end-to-end", action="store_true")
    parser.add_argument("--flip-tta", action="store_true")
    parser.add_argument("--roi", choices=("auto", "off"), default="off")
    args = parser.parse_args(argv)
    try:
        result = measure(args.worker, args.threads, runs=args.runs, warmup=args.warmup,
                         image=args.image, end_to_end=args.end_to_end, flip_tta=args.flip_tta,
                         roi=args.roi)
        code = 0
    except HairsegError as exc:
        result, code = BenchResult(args.worker, args.threads, error=str(exc)), exc.exit_code
    except Exception as exc:  # report, don't hide: the parent shows it in the row
        result = BenchResult(args.worker, args.threads, error=f"{type(exc).__name__}: {exc}")
        code = 1
    sys.stdout.write(RESULT_PREFIX + json.dumps(result.to_dict()) + "\n")
    sys.stdout.flush()
    return code


if __name__ == "__main__":
    sys.exit(_worker_main())
