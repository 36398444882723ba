"""``hairseg-edge average``: the weighted mean of trained models' weights (a model soup), and its refusals."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from hairseg_edge.cli import app

pytestmark = pytest.mark.train


def _model(path: Path, seed: int, *, arch: str = "mobile_unet", size: int = 32, width: float = 0.25) -> Path:
    """A small model with its own random weights, BatchNorm statistics made distinct too."""
    from hairseg_edge.training import archs
    from hairseg_edge.training.keras_compat import keras

    keras.utils.set_random_seed(seed)
    model = archs.build_model(arch, size, width)
    rng = np.random.default_rng(seed)
    # Moving variances stay positive; every other tensor gets seed-specific values.
    model.set_weights([rng.uniform(0.5, 1.5, w.shape).astype(w.dtype) for w in model.get_weights()])
    model.save(path)
    return path


def _weights(path: Path) -> list[np.ndarray]:
    from hairseg_edge.training.keras_compat import keras

    return keras.models.load_model(path, safe_mode=True, compile=False).get_weights()


def test_average_is_the_weighted_mean_and_records_its_ingredients(tmp_path):
    a, b = _model(tmp_path / "a.keras", 1), _model(tmp_path / "b.keras", 2)
    out = tmp_path / "soup"
    result = CliRunner().invoke(app, ["average", str(a), str(b), "--out", str(out), "--weights", "1,3"])
    assert result.exit_code == 0, result.output
    for got, wa, wb in zip(_weights(out / "model.keras"), _weights(a), _weights(b)):
        np.testing.assert_allclose(got, 0.25 * wa + 0.75 * wb, rtol=1e-6, atol=1e-7)

    from hairseg_edge.imageio import file_sha256

    record = json.loads((out / "average.json").read_text())
    assert [(m["path"], m["sha256"], m["weight"]) for m in record["models"]] == [
        (str(a.resolve()), file_sha256(a), 0.25), (str(b.resolve()), file_sha256(b), 0.75)]
    assert record["input_size"] == 32
    assert "next: hairseg-edge export" in result.output

    # Equal weights by default; an existing average is replaced only with --force.
    again = CliRunner().invoke(app, ["average", str(a), str(b), "--out", str(out)])
    assert again.exit_code == 2 and "already exists (pass --force" in again.output
    assert CliRunner().invoke(app, ["average", str(a), str(b), "--out", str(out), "--force"]).exit_code == 0
    for got, wa, wb in zip(_weights(out / "model.keras"), _weights(a), _weights(b)):
        np.testing.assert_allclose(got, 0.5 * (wa + wb), rtol=1e-6, atol=1e-7)
    assert not list(out.glob(".*tmp*"))  # written atomically: no temporary files left


def test_averaging_the_bundled_model_with_a_copy_of_itself_changes_nothing(tmp_path):
    """'default' names the bundled float model; the mean of a model and its copy is that model."""
    from hairseg_edge.models import default_model_path

    copy = tmp_path / "copy.keras"
    copy.write_bytes(default_model_path("float").read_bytes())
    out = tmp_path / "soup"
    result = CliRunner().invoke(app, ["average", "default", str(copy), "--out", str(out)])
    assert result.exit_code == 0, result.output
    for got, want in zip(_weights(out / "model.keras"), _weights(copy)):
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("case, message", [
    ("one model", "at least two models"),
    ("other width", "is not the architecture and width of"),
    ("other arch", "is not the architecture and width of"),
    ("other input size", "takes 64 px inputs"),
    ("missing", "no such model file"),
    ("not a model", "not a readable Keras model"),
    ("named twice", "named twice"),
    ("bad weights", "--weights needs one number per model"),
    ("negative weight", "--weights must be >= 0"),
    ("training run", "holds a training run"),
    ("out is a file", "is a file; --out names the folder"),
])
def test_bad_average_is_one_line_exit_2_and_writes_nothing(tmp_path, case, message):
    a = _model(tmp_path / "a.keras", 1)
    b = _second_model(case, tmp_path, a)
    out = tmp_path / "soup"
    models = [str(a)] if case == "one model" else [str(a), str(b)]
    extra = {"bad weights": ["--weights", "1,2,3"], "negative weight": ["--weights", "1,-1"]}.get(case, [])
    if case == "training run":
        out.mkdir()
        (out / "state.json").write_text("{}")
    if case == "out is a file":
        out.write_text("mine")
    result = CliRunner().invoke(app, ["average", *models, "--out", str(out), *extra])
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert "Traceback" not in result.output and len(result.output.strip().splitlines()) <= 2
    assert not (out / "model.keras").exists() and not (out / "average.json").exists()
    if case == "out is a file":
        assert out.read_text() == "mine"  # what the user gave is left as it was
    if case in ("other width", "other arch", "other input size", "missing", "not a model"):
        assert str(b) in " ".join(result.output.split())  # names the model that is wrong


def _second_model(case: str, tmp_path: Path, first: Path) -> Path:
    b = tmp_path / "b.keras"
    if case == "other width":
        return _model(b, 2, width=0.5)
    if case == "other arch":
        return _model(b, 2, arch="fused_unet")
    if case == "other input size":
        return _model(b, 2, size=64)
    if case == "missing":
        return tmp_path / "nope.keras"
    if case == "not a model":
        b.write_bytes(b"not a zip")
        return b
    if case == "named twice":
        return first
    return _model(b, 2)
