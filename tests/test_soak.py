"""Soak: long streams through ``run`` and 10,000 ``bench`` runs, with memory (RSS) sampled throughout.

What must hold for a device that runs for hours: every frame is accounted for (read = processed =
written), and the resident memory stops growing once warmed up. The only growth allowed is FFmpeg's
in-memory MP4 index (about 100 bytes per frame per output video, written at the end of each file),
plus allocator noise; the bounds below leave room for that and nothing like a per-frame leak (a
64x48 RGB frame kept per frame would add 46 MB over 5,000 frames).

Frames are small (64x48) and the model tiny (``tiny_tflite``, hair = red) so each soak takes well
under a few minutes even on a loaded 2-core machine; they are marked slow (``.ci/run`` runs them).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest

from hairseg_edge.runner import video_codec
from hairseg_edge.synth import render_sample

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
FRAMES = 5_000
WIDTH, HEIGHT = 64, 48
BENCH_RUNS = 10_000
#: Largest RSS growth allowed after warm-up, in MB (the MP4 index of 5,000 frames is ~1 MB).
GROWTH_BOUND_MB = 8.0


def rss_kb(pid: int | str = "self") -> int | None:
    """VmRSS of a process in kB (None once it is gone)."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError):
        return None
    return None


def descendants(pid: int) -> list[int]:
    """The process's children, grandchildren, ... (Linux /proc)."""
    found, todo = [], [pid]
    while todo:
        parent = todo.pop()
        try:
            tasks = os.listdir(f"/proc/{parent}/task")
        except FileNotFoundError:
            continue
        for task in tasks:
            try:
                with open(f"/proc/{parent}/task/{task}/children", encoding="ascii") as fh:
                    kids = [int(k) for k in fh.read().split()]
            except FileNotFoundError:
                continue
            found.extend(kids)
            todo.extend(kids)
    return found


class RssSampler:
    """Samples the RSS of the processes ``targets()`` names every ``interval`` seconds, in a thread."""

    def __init__(self, targets: Callable[[], list[int | str]], interval: float = 0.05):
        self.targets = targets
        self.interval = interval
        self.samples: dict[int | str, list[tuple[float, int]]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self._stop.is_set():
            now = time.monotonic()
            for pid in self.targets():
                value = rss_kb(pid)
                if value is not None:
                    self.samples.setdefault(pid, []).append((now, value))
            self._stop.wait(self.interval)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def longest(self) -> list[int]:
        """The RSS series (kB) of the process sampled most often (the one doing the work)."""
        series = max(self.samples.values(), key=len)
        return [kb for _, kb in series]


def growth_mb(series: list[int], *, warmup: float = 0.2) -> float:
    """Largest RSS after warm-up minus the median RSS just after warm-up, in MB."""
    assert len(series) >= 20, f"too few RSS samples ({len(series)}) to judge growth"
    start = int(len(series) * warmup)
    baseline = statistics.median(series[start:start + max(5, len(series) // 10)])
    return (max(series[start:]) - baseline) / 1024.0


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}


def scene(seed: int = 3) -> np.ndarray:
    rgb, _ = render_sample(np.random.default_rng(seed), 2 * HEIGHT, 2 * WIDTH, hair=True)
    return rgb


def moving_frame(background: np.ndarray, i: int) -> np.ndarray:
    """Frame ``i`` of a head drifting around (RGB, HEIGHT x WIDTH)."""
    x = int(WIDTH // 2 + (WIDTH // 4) * np.sin(i / 20))
    y = int(HEIGHT // 2 + (HEIGHT // 4) * np.cos(i / 25))
    return background[y:y + HEIGHT, x:x + WIDTH]


def write_video(path: Path, frames: int) -> Path:
    background = scene()
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"mp4v"), 25.0, (WIDTH, HEIGHT))
    assert writer.isOpened()
    for i in range(frames):
        writer.write(cv2.cvtColor(moving_frame(background, i), cv2.COLOR_RGB2BGR))
    writer.release()
    return path


def count_frames(path: Path) -> int:
    capture = cv2.VideoCapture(str(path))
    assert capture.isOpened(), path
    n = 0
    while capture.grab():
        n += 1
    capture.release()
    return n


# ==================================================================================================
# run: a 5,000-frame video through the real command
# ==================================================================================================


def test_run_over_a_5000_frame_video_keeps_every_frame_and_flat_memory(tmp_path, tiny_tflite):
    video = write_video(tmp_path / "long.mp4", FRAMES)
    assert count_frames(video) == FRAMES
    out = tmp_path / "out"
    summary = tmp_path / "summary.json"
    cmd = [sys.executable, "-m", "hairseg_edge", "run", str(video), "--model", str(tiny_tflite["uint8"]),
           "--out", str(out), "--overlay", "--json", str(summary)]
    proc = subprocess.Popen(cmd, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    with RssSampler(lambda: [proc.pid], interval=0.02) as sampler:
        stdout, stderr = proc.communicate(timeout=900)
    assert proc.returncode == 0, stderr[-3000:]
    report = json.loads(summary.read_text())
    assert report["frames"] == FRAMES, report
    (item,) = report["items"]
    assert item["frames"] == FRAMES and item["error"] is None
    for role in ("mask", "overlay"):
        assert count_frames(out / f"long_{role}{video_codec(role)[1]}") == FRAMES, role  # mask: lossless .mkv
    growth = growth_mb(sampler.longest())
    assert growth < GROWTH_BOUND_MB, (growth, sampler.longest()[::10])
    assert f"{FRAMES} frames" in stdout


# ==================================================================================================
# run: a camera-like source (frames produced on the fly, no length known in advance)
# ==================================================================================================


class GeneratedCamera:
    """A cv2.VideoCapture stand-in that produces frames like a webcam: no frame count, a nominal
    30 FPS, a new frame on every read, until it is unplugged after ``frames`` frames."""

    def __init__(self, frames: int):
        self.frames = frames
        self.served = 0
        self.background = scene(seed=8)
        self.released = False

    def isOpened(self) -> bool:  # noqa: N802 - OpenCV's name
        return not self.released

    def get(self, prop: int) -> float:
        return {cv2.CAP_PROP_FPS: 30.0, cv2.CAP_PROP_FRAME_WIDTH: float(WIDTH),
                cv2.CAP_PROP_FRAME_HEIGHT: float(HEIGHT), cv2.CAP_PROP_FRAME_COUNT: -1.0}.get(prop, 0.0)

    def read(self):
        if self.served >= self.frames:
            return False, None
        rgb = moving_frame(self.background, self.served)
        # Sensor noise: every frame is new data, as from a real camera.
        noise = np.random.default_rng(self.served).integers(-3, 4, rgb.shape)
        self.served += 1
        return True, cv2.cvtColor(np.clip(rgb + noise, 0, 255).astype(np.uint8), cv2.COLOR_RGB2BGR)

    def release(self) -> None:
        self.released = True


@pytest.mark.parametrize("limit", [None, FRAMES - 1])
def test_a_camera_stream_of_5000_frames_keeps_every_frame_and_flat_memory(tmp_path, tiny_tflite,
                                                                        monkeypatch, limit):
    """Through run_source, as ``hairseg-edge run 0`` does: until the camera stops (unplugged), or
    until ``--frames`` stops the run one frame earlier."""
    from hairseg_edge.runner import RunObserver, RunOptions, run_source
    from hairseg_edge.sources import VideoStream

    camera = GeneratedCamera(FRAMES)
    monkeypatch.setattr(VideoStream, "open_camera",
                        classmethod(lambda cls, index: cls(camera, f"camera {index}", is_camera=True)))

    class Counter(RunObserver):
        processed = 0

        def advance(self, n: int = 1) -> None:
            self.processed += n

    counter = Counter()
    options = RunOptions(out_dir=tmp_path / "out", model=tiny_tflite["float32"], recolor="copper",
                         max_frames=limit)
    with RssSampler(lambda: ["self"], interval=0.05) as sampler:
        result = run_source("0", options, observer=counter)
    expected = FRAMES if limit is None else limit
    (item,) = result.items
    assert result.exit_code == 0 and item.kind == "camera", item
    assert camera.served == expected and counter.processed == expected and item.frames == expected
    assert camera.released
    for role in ("mask", "recolor"):
        assert count_frames(tmp_path / "out" / f"camera0_{role}{video_codec(role)[1]}") == expected, role
    growth = growth_mb(sampler.longest())
    assert growth < GROWTH_BOUND_MB, (growth, sampler.longest()[::20])


# ==================================================================================================
# bench: 10,000 runs
# ==================================================================================================


def _bench(tmp_path: Path, model: Path, runs: int, end_to_end: bool, *, sample: bool
           ) -> tuple[dict, list[int]]:
    """``hairseg-edge bench`` through the real command; (its JSON record, the worker's RSS series).
    The worker is a grandchild process: it is found through /proc and sampled every 10 ms."""
    report = tmp_path / f"bench-{runs}-{end_to_end}.json"
    cmd = [sys.executable, "-m", "hairseg_edge", "bench", str(model), "--runs", str(runs), "--warmup", "5",
           "--json", str(report)]
    if end_to_end:
        frame = tmp_path / "frame.png"
        cv2.imwrite(str(frame), cv2.cvtColor(moving_frame(scene(), 0), cv2.COLOR_RGB2BGR))
        cmd += ["--end-to-end", "--image", str(frame)]
    proc = subprocess.Popen(cmd, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    with RssSampler(lambda: descendants(proc.pid) if sample else [], interval=0.01) as sampler:
        _, stderr = proc.communicate(timeout=900)
    assert proc.returncode == 0, stderr[-3000:]
    (record,) = json.loads(report.read_text())
    return record, (sampler.longest() if sample else [])


@pytest.mark.parametrize("end_to_end", [False, True])
def test_bench_10000_runs_accounts_for_every_run_and_memory_stays_flat(tmp_path, tiny_tflite, end_to_end):
    """Every run is counted, and the worker's peak RSS after 10,000 runs is that of a 10-run worker
    (a per-run leak would show there, whatever the timing of the samples). End to end, where the
    loop lasts seconds, the sampled RSS must also stay flat after warm-up."""
    model = tiny_tflite["uint8"]
    short, _ = _bench(tmp_path, model, 10, end_to_end, sample=False)
    record, series = _bench(tmp_path, model, BENCH_RUNS, end_to_end, sample=end_to_end)
    assert record["runs"] == BENCH_RUNS and short["runs"] == 10
    assert 0 < record["p50_ms"] <= record["p90_ms"] <= record["p99_ms"]
    assert record["fps"] > 0
    extra_peak_mb = record["peak_rss_mb"] - short["peak_rss_mb"]
    assert extra_peak_mb < GROWTH_BOUND_MB, (record["peak_rss_mb"], short["peak_rss_mb"])
    if end_to_end:
        # The loop is most of the worker's life here; start judging after the first half.
        growth = growth_mb(series, warmup=0.5)
        assert growth < GROWTH_BOUND_MB, (growth, series[::20])
