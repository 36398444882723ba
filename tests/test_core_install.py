"""The light install works on its own: wheel -> fresh venv with core dependencies only (slow).

What a Raspberry Pi user gets from ``pip install hairseg-edge``: ``info``, ``bench``, ``run`` and
``eval`` work on the bundled model (or, until it ships, a tiny model converted here), TensorFlow is not
installed and never imported, the heavy commands answer with one line naming the extra to install,
and nothing lands under a generic top-level name (``training``, ``export``).

The venv uses the normal pip configuration (pip cache, configured indexes), so after the first run it
installs from the cache in well under a minute.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
BUNDLED_INT8 = REPO / "hairseg_edge" / "models" / "hairseg_int8.tflite"
SAMPLE_PHOTO = REPO / "examples" / "astronaut.png"
HEAVY = ("tensorflow", "tf_keras", "tensorflow_model_optimization", "mediapipe", "keras")

pytestmark = pytest.mark.slow


def _env() -> dict[str, str]:
    """No PYTHONPATH or dev venv leaking into the fresh install."""
    return {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}


def _tail(text: str, lines: int = 30) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


@pytest.fixture(scope="module")
def core_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv holding the hairseg-edge wheel and its core dependencies, nothing else."""
    work = tmp_path_factory.mktemp("core_install")
    # Build from a clean copy: setuptools keeps a build/ folder in the source tree, and a stale one
    # would put files deleted from the repo into the wheel.
    source = work / "source"
    shutil.copytree(REPO, source, ignore=shutil.ignore_patterns(
        ".git", ".venv*", "build", "dist", "*.egg-info", "__pycache__", ".pytest_cache", ".hypothesis",
        "runs", "out", "hairseg-out"))
    wheels = work / "wheels"
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(wheels),
                            str(source)], capture_output=True, text=True, timeout=600, env=_env(),
                           cwd=work, stdin=subprocess.DEVNULL)
    assert build.returncode == 0, f"pip wheel failed:\n{_tail(build.stderr)}"
    (wheel,) = wheels.glob("hairseg_edge-*.whl")

    with zipfile.ZipFile(wheel) as archive:
        top_level = {name.split("/")[0] for name in archive.namelist()}
        info = next(name.split("/")[0] for name in archive.namelist() if name.endswith(".dist-info/METADATA"))
        metadata = archive.read(f"{info}/METADATA").decode()
        weights_terms = archive.read(f"{info}/licenses/LICENSE-WEIGHTS.md").decode()
        splits = [name for name in archive.namelist() if name.startswith("hairseg_edge/splits/")]
        names = set(archive.namelist())
    assert not top_level & {"training", "export"}, f"generic top-level packages in the wheel: {top_level}"
    # The wheel's metadata says what the README and the model card say: MIT code, research-only weights.
    assert "License-Expression: MIT AND LicenseRef-hairseg-edge-weights-noncommercial-research" in metadata
    assert "License-File: LICENSE-WEIGHTS.md" in metadata and "non-commercial research" in weights_terms
    assert len(splits) == 4  # the recorded validation ids travel with the package
    # The region stage's fallback locator and its Apache-2.0 notice ship too.
    assert {"hairseg_edge/models/face_detection_short_range.tflite",
            "hairseg_edge/models/NOTICE-face-detector.md"} <= names
    assert metadata.count("License-Expression:") == 1 and "AND Apache-2.0" in metadata

    venv = work / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300, env=_env())
    install = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", str(wheel)],
                             capture_output=True, text=True, timeout=1200, env=_env(), cwd=work,
                             stdin=subprocess.DEVNULL)
    assert install.returncode == 0, f"pip install of the wheel failed:\n{_tail(install.stderr)}"
    return venv


@pytest.fixture(scope="module")
def model_args(request: pytest.FixtureRequest) -> list[str]:
    """No argument for the bundled model (the commands' default); else a tiny int8 model's path."""
    if BUNDLED_INT8.is_file():
        return []
    return [str(request.getfixturevalue("tiny_packaging_models")["int8"])]


@pytest.fixture(scope="module")
def photo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if SAMPLE_PHOTO.is_file():
        return SAMPLE_PHOTO
    import numpy as np

    from hairseg_edge.imageio import write_image
    from hairseg_edge.synth import render_sample

    rgb, _ = render_sample(np.random.default_rng([2024, 1]), 240, 320, hair=True)
    return write_image(tmp_path_factory.mktemp("photo") / "face.jpg", rgb)


def _cli(venv: Path, args: list[str], cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([str(venv / "bin" / "hairseg-edge"), *args], capture_output=True, text=True,
                          timeout=timeout, env=_env(), cwd=cwd, stdin=subprocess.DEVNULL)


def _python(venv: Path, code: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(venv / "bin" / "python"), "-c", code], capture_output=True, text=True,
                          timeout=120, env=_env(), cwd=cwd, stdin=subprocess.DEVNULL)


def test_core_install_has_no_tensorflow_and_no_generic_top_level_packages(core_venv, tmp_path):
    installed = subprocess.run([str(core_venv / "bin" / "python"), "-m", "pip", "list", "--format=json"],
                               capture_output=True, text=True, check=True, env=_env())
    names = {p["name"].lower().replace("_", "-") for p in json.loads(installed.stdout)}
    assert "hairseg-edge" in names and "ai-edge-litert" in names
    heavy = {"tensorflow", "tf-keras", "tensorflow-model-optimization", "mediapipe", "keras"}
    assert not names & heavy, names
    # Run from an empty folder: the repo's own training/ and export/ folders must not be on the path.
    code = ("import importlib.util, sys\n"
            f"heavy = [m for m in {HEAVY!r} if importlib.util.find_spec(m)]\n"
            "generic = [m for m in ('training', 'export') if importlib.util.find_spec(m)]\n"
            "assert not heavy, heavy\n"
            "assert not generic, generic\n"
            "import hairseg_edge, hairseg_edge.runtime, hairseg_edge.cli\n"
            "assert 'tensorflow' not in sys.modules\n")
    proc = _python(core_venv, code, tmp_path)
    assert proc.returncode == 0, proc.stderr


def test_info_describes_the_model(core_venv, model_args, tmp_path):
    proc = _cli(core_venv, ["info", *model_args, "--json"], tmp_path)
    assert proc.returncode == 0, _tail(proc.stderr)
    report = json.loads(proc.stdout[proc.stdout.index("{"):])
    (model_input,), (model_output,) = report["inputs"], report["outputs"]
    assert model_input["dtype"] == "uint8"  # the int8 model takes uint8 RGB as it is
    assert model_input["shape"][0] == 1 and model_input["shape"][3] == 3
    assert model_output["shape"][3] == 1  # one hair-probability channel


def test_bench_times_the_model_and_writes_json(core_venv, model_args, tmp_path):
    out = tmp_path / "bench.json"
    proc = _cli(core_venv, ["bench", *model_args, "--runs", "3", "--warmup", "1", "--json", str(out)],
                tmp_path)
    assert proc.returncode == 0, _tail(proc.stderr)
    (row,) = json.loads(out.read_text())
    assert row["runs"] == 3 and row["threads"] == 1
    assert 0 < row["p50_ms"] <= row["p99_ms"] and row["fps"] > 0


def test_run_writes_a_mask_the_size_of_the_photo(core_venv, model_args, photo, tmp_path):
    from hairseg_edge.imageio import read_image, read_mask

    model_option = ["--model", model_args[0]] if model_args else []
    proc = _cli(core_venv, ["run", str(photo), *model_option, "--out", str(tmp_path / "out")], tmp_path)
    assert proc.returncode == 0, _tail(proc.stderr)
    mask = read_mask(tmp_path / "out" / f"{photo.stem}_mask.png")
    assert mask.shape == read_image(photo).shape[:2]
    assert 0 < mask.mean() < 1  # a real segmentation, not an empty or full frame


def test_eval_scores_the_model_on_a_small_data_set(core_venv, model_args, tmp_path):
    from hairseg_edge.synth import make_dataset

    data = make_dataset(tmp_path / "ds", n=6, size=96, seed=3)
    out = tmp_path / "eval.json"
    proc = _cli(core_venv, ["eval", *model_args, "--data", str(data), "--json", str(out)], tmp_path)
    assert proc.returncode == 0, _tail(proc.stderr)
    scores = json.loads(out.read_text())
    assert scores["n"] == 6
    assert 0.0 <= scores["iou"] <= 1.0 and 0.0 <= scores["f1"] <= 1.0


@pytest.mark.parametrize("args, extra", [
    (["train", "--data", "ds"], "train"),
    (["average", "a.keras", "b.keras", "--out", "soup"], "train"),
    (["package", "model.tflite"], "mobile"),
])
def test_heavy_commands_name_the_extra_in_one_line_and_exit_2(core_venv, tmp_path, args, extra):
    proc = _cli(core_venv, args, tmp_path)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert f'pip install "hairseg-edge[{extra}]"' in lines[0]
    assert "Traceback" not in proc.stdout + proc.stderr
