"""SIGKILL at a random moment during ``export`` and ``train``: nothing at a final path is ever partial.

A kill -9 gives the process no chance to clean up, so this is what a power cut or the OOM killer
does. Afterwards every file at a final path must be either the previous good one or a new complete
one (each checked by parsing it: .tflite flatbuffers, .keras zips, JSON, CSV, PNG), the only other
files allowed are hidden temporary files of the atomic writers (``.<stem>.<random>.tmp<suffix>``,
never read by anything), and the command must work again: ``export --force`` rewrites everything
and ``train --resume`` continues to the total epoch count.

The kill moment is random; the seed is printed in every assertion message and can be fixed with
``HAIRSEG_KILL_SEED`` to replay a failure. The default tests kill once each; the slow ones kill
several more times at spread-out moments.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import cv2
import numpy as np
import pytest

from hairseg_edge.synth import make_dataset

pytestmark = pytest.mark.train

REPO = Path(__file__).resolve().parents[1]
SIZE = 32
SEED = int(os.environ.get("HAIRSEG_KILL_SEED", random.SystemRandom().randrange(1_000_000)))


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
            "TF_CPP_MIN_LOG_LEVEL": "3"}


def _cli(*args: object) -> list[str]:
    return [sys.executable, "-m", "hairseg_edge", *map(str, args)]


def _run(*args: object, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(_cli(*args), env=_env(), capture_output=True, text=True, timeout=timeout,
                          check=False)


def _kill_after(args: list[object], delay_s: float, *, timeout: float = 600) -> bool:
    """Start the command, SIGKILL it after ``delay_s``; True when it was still running then."""
    proc = subprocess.Popen(_cli(*args), env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        proc.wait(timeout=delay_s)
        return False  # it finished first
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=timeout)
        return True


def _is_temporary(path: Path) -> bool:
    """A file of the atomic writers (imageio.atomic_path): hidden, ``.tmp`` before the suffix."""
    return path.name.startswith(".") and ".tmp" in path.name


def check_complete(path: Path) -> None:
    """Raise AssertionError unless ``path`` is a complete file of its kind."""
    data = path.read_bytes()
    assert data, f"{path} is empty"
    suffix = path.suffix.lower()
    if suffix == ".tflite":
        from hairseg_edge.runtime import load_model
        from hairseg_edge.tflite_meta import check_tflite_bytes, read_metadata_bytes

        check_tflite_bytes(data, path)
        read_metadata_bytes(data, path)  # walks the whole flatbuffer
        load_model(path)
    elif suffix == ".keras":
        with zipfile.ZipFile(path) as zf:
            assert zf.testzip() is None, f"{path}: a member's CRC is wrong"
            names = set(zf.namelist())
        assert {"config.json", "model.weights.h5"} <= names, (path, names)
    elif suffix == ".json":
        json.loads(data.decode("utf-8"))
    elif suffix == ".csv":
        rows = data.decode("utf-8").splitlines()
        assert data.endswith(b"\n") and len({row.count(",") for row in rows}) == 1, path
    elif suffix == ".png":
        from hairseg_edge.imageio import read_image

        read_image(path)  # refuses a truncated PNG
    elif suffix == ".md":
        assert data.decode("utf-8").strip(), path
    else:
        raise AssertionError(f"unexpected output file {path}")


def check_folder(folder: Path, previous: dict[str, bytes], context: str) -> list[Path]:
    """Every non-temporary file complete; each previous file still there (old or new). Returns
    the temporary files left by the kill."""
    leftovers = []
    for path in sorted(folder.iterdir()):
        if _is_temporary(path):
            leftovers.append(path)
            continue
        try:
            check_complete(path)
        except Exception as exc:  # noqa: BLE001 - any failure to parse is a partial file
            raise AssertionError(f"{context}: {path.name} is not a complete file ({exc})") from None
    for name in previous:
        assert (folder / name).exists(), f"{context}: the previous {name} is gone"
    return leftovers


# ==================================================================================================
# export
# ==================================================================================================


@pytest.fixture(scope="module")
def export_setup(tmp_path_factory) -> dict[str, Path]:
    """A tiny float .keras model (hair = red) and a small data set."""
    from hairseg_edge.training.keras_compat import keras

    root = tmp_path_factory.mktemp("kill_export")
    inp = keras.Input((SIZE, SIZE, 3), name="image")
    x = keras.layers.Rescaling(1.0 / 255.0)(inp)
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="features")(x)
    out = keras.layers.Conv2D(1, 1, activation="sigmoid", name="head")(x)
    model = keras.Model(inp, out)
    model.save(root / "hair.keras")
    return {"model": root / "hair.keras", "data": make_dataset(root / "data", n=8, size=(40, 56), seed=4)}


def _export_args(setup: dict[str, Path], out: Path, *extra: str) -> list[object]:
    return ["export", setup["model"], "--float32", "--int8", "--data", setup["data"], "--eval",
            setup["data"], "--calib-count", "4", "--max-drop", "1", "--min-agreement", "0", "--out", out,
            *extra]


def _export_kill_cycle(setup: dict[str, Path], tmp_path: Path, kills: int, *, rerun: bool) -> None:
    rng = random.Random(SEED)
    out = tmp_path / "out"
    started = time.monotonic()
    first = _run(*_export_args(setup, out))
    duration = time.monotonic() - started
    assert first.returncode == 0, first.stderr[-3000:]
    previous = {p.name: p.read_bytes() for p in out.iterdir()}
    assert {"hair-float32.tflite", "hair-int8.tflite", "report.json", "report.md"} <= set(previous)
    for k in range(kills):
        # Spread over the whole run; the models and reports are written in its last second or so,
        # so every other kill aims at the end.
        delay = rng.uniform(0.3, duration) if k % 2 == 0 else rng.uniform(0.8, 1.05) * duration
        context = f"export kill {k + 1} at {delay:.2f}s of a {duration:.1f}s run (HAIRSEG_KILL_SEED={SEED})"
        _kill_after(_export_args(setup, out, "--force"), delay)
        check_folder(out, previous, context)
    if not rerun:
        return
    # The tool works again after the kills (temporary leftovers do not get in its way).
    final = _run(*_export_args(setup, out, "--force"))
    assert final.returncode == 0, final.stderr[-3000:]
    check_folder(out, previous, "after the final export")
    report = json.loads((out / "report.json").read_text())
    assert report["gate"]["passed"] is True


def test_export_killed_at_a_random_moment_leaves_old_or_new_complete_files(export_setup, tmp_path):
    _export_kill_cycle(export_setup, tmp_path, kills=1, rerun=False)


@pytest.mark.slow
def test_export_killed_many_times(export_setup, tmp_path):
    _export_kill_cycle(export_setup, tmp_path, kills=6, rerun=True)


# ==================================================================================================
# train
# ==================================================================================================


def _train_args(data: Path, out: Path, epochs: int, *extra: str) -> list[object]:
    # Many short epochs: most of an epoch's time is spent saving (model, checkpoint, state, history,
    # curve), so a random kill often lands in the middle of a write.
    return ["train", "--data", data, "--out", out, "--arch", "custom_cnn", "--img-size", SIZE,
            "--width", "0.25", "--epochs", epochs, "--batch", "4", "--steps-per-epoch", "2",
            "--patience", "100", *extra]


def _check_run_folder(out: Path, context: str) -> int:
    """Every file complete and state.json consistent; returns the number of finished epochs."""
    check_folder(out, {}, context)
    state_path = out / "state.json"
    if not state_path.exists():
        return 0
    state = json.loads(state_path.read_text())
    assert (out / state["checkpoint"]).exists(), f"{context}: state names a missing checkpoint"
    done = int(state["epoch"]) + 1
    history = json.loads((out / "history.json").read_text())
    assert len(history) >= done, f"{context}: history lost an epoch"
    assert (out / "model.keras").exists(), f"{context}: an epoch finished but no model.keras"
    return done


def _train_kill_cycle(tmp_path: Path, kills: int, epochs: int) -> None:
    rng = random.Random(SEED + 1)
    data = make_dataset(tmp_path / "data", n=16, size=(40, 56), seed=6)
    out = tmp_path / "run"
    epochs_seen = 0
    for k in range(kills):
        resume = ["--resume"] if (out / "train_options.json").exists() else []
        # TensorFlow takes a few seconds to start; the first epoch ends after about 5-10 s here.
        delay = rng.uniform(4.0, 12.0)
        context = f"train kill {k + 1} at {delay:.2f}s (HAIRSEG_KILL_SEED={SEED})"
        _kill_after(_train_args(data, out, epochs, *resume), delay)
        if not out.exists():
            continue  # killed before the run folder was made
        done = _check_run_folder(out, context)
        assert done >= epochs_seen, f"{context}: finished epochs went from {epochs_seen} to {done}"
        epochs_seen = done
        if done >= epochs:
            break
    # What a user does after a crash: --resume when the run folder exists (even a run killed
    # before its first epoch was saved resumes, from epoch 0).
    resume = ["--resume"] if (out / "train_options.json").exists() else []
    final = _run(*_train_args(data, out, epochs, *resume))
    assert final.returncode == 0, final.stderr[-3000:]
    assert _check_run_folder(out, "after resuming") == epochs
    history = json.loads((out / "history.json").read_text())
    assert [row["epoch"] for row in history] == list(range(1, epochs + 1))
    curve = cv2.imread(str(out / "training_curve.png"))
    assert curve is not None and curve.shape[0] > 100

    from hairseg_edge.training.keras_compat import keras

    model = keras.models.load_model(out / "model.keras", safe_mode=True, compile=False)
    assert model.output_shape[-1] == 1
    assert np.isfinite(model(np.zeros((1, SIZE, SIZE, 3), np.float32)).numpy()).all()


def test_train_killed_at_a_random_moment_then_resume_continues(tmp_path):
    _train_kill_cycle(tmp_path, kills=1, epochs=3)


@pytest.mark.slow
def test_train_killed_many_times_then_resume_continues(tmp_path):
    _train_kill_cycle(tmp_path, kills=5, epochs=8)
