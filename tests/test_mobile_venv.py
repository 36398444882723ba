"""MediaPipe Tasks loads our models as they are, and its masks agree with ``hairseg-edge run`` (slow).

mediapipe (the [mobile] extra) pins absl-py>=2 and tfmot (the [train] extra) absl-py<2, so these checks
run in their own virtual environment, ``.venv-mobile`` at the repo root, which
``scripts/mobile_venv.sh`` creates on first use (about a minute with a warm pip cache) and reuses after.

For each model (the bundled int8 model once it ships, and tiny float32 / int8 models that
``hairseg-edge package`` wraps here) the test, inside that venv:

1. runs ``hairseg-edge run`` on the sample photo (``examples/astronaut.png``, or a synthetic face);
2. runs this file as a script, which segments the same photo with
   ``mediapipe.tasks.python.vision.ImageSegmenter`` on the CPU, twice:

   * *matched*: MediaPipe is given the photo already resized to the model's input with our contract
     (for a square photo, letterbox = plain resize), and its confidence mask is scaled back with our
     contract. Only the resampling, which is cheap to match, is ours; the model input, the
     normalisation or raw uint8 feed, the dequantisation and the output channel are MediaPipe's,
     read from the metadata. Must agree with ``run``: IoU >= 0.97.
   * *direct*: the photo as it is, so MediaPipe stretches it with its own bilinear sampling (no
     area filter) and scales its output back with its own. Reported, and held to a floor for the
     bundled model on the real photo: the model shipped on 2026-11-25 was trained on area-filtered
     inputs only and agrees at IoU 0.55 on the astronaut (short hair, 8% of the image) when MediaPipe
     subsamples 512 -> 160 px without a filter; docs/mobile.md tells apps to pre-resize. Training now
     also sees unfiltered downsampling, and the floor goes up with the next model.

   and checks MediaPipe's labels (hair, background) and its one-channel category mask (0 = hair,
   255 = background; exactly confidence > 0.5 at the model's size, nearly so when it resizes).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from hairseg_edge.models import bundled_tiers

REPO = Path(__file__).resolve().parents[1]
BUNDLED_INT8 = REPO / "hairseg_edge" / "models" / "hairseg_int8.tflite"
SAMPLE_PHOTO = REPO / "examples" / "astronaut.png"
VENV_SCRIPT = REPO / "scripts" / "mobile_venv.sh"
#: Agreement required between MediaPipe's mask (matched resampling) and ``hairseg-edge run``'s.
MIN_IOU = 0.97
#: Floor when MediaPipe resizes the photo itself (bundled model, real photo): a guard against the
#: measured 0.55 getting worse, not a quality claim (see the module docstring).
MIN_DIRECT_IOU = 0.5
#: Creating the venv downloads mediapipe (~45 MB) once; later runs reuse it in seconds.
VENV_TIMEOUT_S = 20 * 60

pytestmark = pytest.mark.slow


def _clean_env(**extra: str) -> dict[str, str]:
    """The environment for a process in the mobile venv: nothing from the dev venv leaks in."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    env.update(extra)
    return env


def _run(args: list[str], *, timeout: float = 300, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout, env=_clean_env(**env),
                          cwd=REPO, stdin=subprocess.DEVNULL)


def _tail(text: str, lines: int = 25) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


@pytest.fixture(scope="module")
def mobile_python() -> Path:
    """The [mobile] venv's python, created by scripts/mobile_venv.sh when missing or stale."""
    proc = _run(["bash", str(VENV_SCRIPT)], timeout=VENV_TIMEOUT_S)
    if proc.returncode != 0:
        pytest.fail(f"scripts/mobile_venv.sh failed (exit {proc.returncode}):\n{_tail(proc.stderr)}")
    python = Path(proc.stdout.strip().splitlines()[-1])
    assert python.is_file(), proc.stdout
    return python


@pytest.fixture(scope="module")
def sample_photo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sample photo, or a square synthetic face with hair while the repo has no photo yet."""
    if SAMPLE_PHOTO.is_file():
        return SAMPLE_PHOTO
    from hairseg_edge.imageio import write_image
    from hairseg_edge.synth import render_sample

    rgb, mask = render_sample(np.random.default_rng([2024, 1]), 256, 256, hair=True)
    assert 0.1 < mask.mean() < 0.6  # a photo with plenty of hair and of background
    return write_image(tmp_path_factory.mktemp("sample") / "synthetic_face.png", rgb)


def _hairseg_edge(python: Path) -> str:
    return str(python.parent / "hairseg-edge")


def _agreement(mobile_python: Path, model: Path, photo: Path, work: Path) -> dict:
    """Run ``hairseg-edge run`` and the MediaPipe check in the mobile venv; return the IoUs."""
    from hairseg_edge.imageio import read_mask
    from hairseg_edge.metrics import iou

    run_dir = work / "run"
    # --roi off: MediaPipe's ImageSegmenter runs one pass on the whole frame, and so must run here.
    proc = _run([_hairseg_edge(mobile_python), "run", str(photo), "--model", str(model), "--roi", "off",
                 "--out", str(run_dir)])
    assert proc.returncode == 0, f"hairseg-edge run failed:\n{_tail(proc.stderr)}"
    ours = read_mask(run_dir / f"{photo.stem}_mask.png").astype(bool)

    mp_dir = work / "mediapipe"
    proc = _run([str(mobile_python), str(Path(__file__).resolve()), str(model), str(photo), str(mp_dir)])
    assert proc.returncode == 0, f"MediaPipe check failed:\n{_tail(proc.stderr)}"
    report = json.loads((mp_dir / "report.json").read_text())
    assert report["labels"] == ["hair", "background"]
    assert report["category_is_zero_exactly_where_confidence_above_half"]
    assert set(report["category_values"]) <= {0, 255}
    assert report["direct_category_vs_confidence_iou"] >= MIN_DIRECT_IOU, report
    matched = read_mask(mp_dir / "matched_mask.png").astype(bool)
    direct = read_mask(mp_dir / "direct_mask.png").astype(bool)
    assert matched.shape == direct.shape == ours.shape
    result = {"matched_iou": iou(matched, ours), "direct_iou": iou(direct, ours),
              "hair_fraction": float(ours.mean())}
    print(f"{model.name} on {photo.name}: {result}")  # shown with -s / in the CI log on failure
    return result


def test_package_checks_pass_inside_the_mobile_venv(mobile_python, tiny_packaging_models):
    """tests/test_package.py's MediaPipe half, which skips in the dev venv, must pass here."""
    folder = tiny_packaging_models["float32"].parent
    proc = _run([str(mobile_python), "-m", "pytest", "tests/test_package.py", "-q", "-rs",
                 "-p", "no:cacheprovider"], timeout=600, HAIRSEG_TINY_MODELS=str(folder))
    assert proc.returncode == 0, _tail(proc.stdout, 60)
    summary = proc.stdout.strip().splitlines()[-1]
    assert re.search(r"\d+ passed", summary) and "skipped" not in summary and "failed" not in summary, \
        summary


@pytest.mark.parametrize("kind", ["int8", "float32"])
def test_model_wrapped_by_package_loads_in_mediapipe_and_agrees_with_run(
        mobile_python, tiny_packaging_models, sample_photo, tmp_path, kind):
    packaged = tmp_path / f"tiny_{kind}.task-ready.tflite"
    proc = _run([_hairseg_edge(mobile_python), "package", str(tiny_packaging_models[kind]),
                 "--out", str(packaged), "--json"])
    assert proc.returncode == 0, _tail(proc.stderr)
    report = json.loads(proc.stdout[proc.stdout.index("{"):])
    assert report["verified"] is True and report["output"] == str(packaged)
    result = _agreement(mobile_python, packaged, sample_photo, tmp_path)
    assert 0.02 < result["hair_fraction"] < 0.98  # the comparison is not between two empty masks
    assert result["matched_iou"] >= MIN_IOU, result


#: Every bundled tier's int8 file ships packaged and loads in MediaPipe's ImageSegmenter
#: (tests/test_regression.py checks which tiers must be bundled).
TIER_FILES = tuple(tier.files["int8"] for tier in bundled_tiers())


@pytest.mark.parametrize("name", TIER_FILES)
def test_bundled_int8_model_ships_packaged(name):
    model = BUNDLED_INT8.parent / name
    if not model.is_file():
        pytest.fail(f"{model.relative_to(REPO)} is missing: every tier ships")
    from hairseg_edge.mediapipe_meta import is_packaged, model_io

    assert is_packaged(model), "run: hairseg-edge package on it before shipping"
    assert model_io(model.read_bytes()).input.dtype == "uint8"


@pytest.mark.parametrize("name", TIER_FILES)
def test_bundled_int8_model_loads_in_mediapipe_and_agrees_with_run(name, mobile_python, sample_photo,
                                                                    tmp_path):
    model = BUNDLED_INT8.parent / name
    if not model.is_file():
        pytest.fail(f"{model.relative_to(REPO)} is missing: every tier ships")
    result = _agreement(mobile_python, model, sample_photo, tmp_path)
    assert 0.02 < result["hair_fraction"] < 0.98
    assert result["matched_iou"] >= MIN_IOU, result
    if sample_photo == SAMPLE_PHOTO:
        assert result["direct_iou"] >= MIN_DIRECT_IOU, result


# --------------------------------------------------------------------------------------------------
# The part that runs inside the mobile venv: python tests/test_mobile_venv.py MODEL PHOTO OUT_DIR
# --------------------------------------------------------------------------------------------------


def _segment_with_mediapipe(model: Path, photo: Path, out_dir: Path) -> None:
    from hairseg_edge import contract
    from hairseg_edge.imageio import read_image, write_image, write_text
    from hairseg_edge.mediapipe_meta import mediapipe_confidence, model_io

    rgb = read_image(photo)
    size = model_io(model.read_bytes(), model).input_size
    threshold = contract.THRESHOLD

    direct_conf, direct_cat, labels = mediapipe_confidence(model, rgb)
    model_image, box = contract.letterbox_image(rgb, size)
    small_conf, small_cat, _ = mediapipe_confidence(model, model_image)
    matched_conf = contract.unletterbox(small_conf, box)

    from hairseg_edge.metrics import iou

    # At the model's size nothing is resized, so the category mask is exactly confidence > 0.5.
    # Bigger, MediaPipe scales the category mask with align-corners bilinear sampling and the
    # confidence mask with OpenCV's half-pixel one: they differ a little along edges.
    consistent = bool(np.array_equal(small_cat == 0, small_conf > 0.5))
    direct_category_iou = iou(direct_cat == 0, direct_conf > 0.5)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_image(out_dir / "direct_mask.png", contract.binarize(direct_conf, threshold).astype(np.uint8) * 255)
    write_image(out_dir / "matched_mask.png",
                contract.binarize(matched_conf, threshold).astype(np.uint8) * 255)
    write_text(out_dir / "report.json", json.dumps({
        "labels": labels,
        "category_is_zero_exactly_where_confidence_above_half": consistent,
        "direct_category_vs_confidence_iou": direct_category_iou,
        "category_values": sorted(int(v) for v in np.unique(direct_cat)),
    }))


if __name__ == "__main__":
    _model, _photo, _out = (Path(a) for a in sys.argv[1:4])
    _segment_with_mediapipe(_model, _photo, _out)
