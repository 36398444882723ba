"""Export stage: pruning, QAT, conversion variants, verification against the float original, the gate.

One small model is trained once per session on synthetic faces (32 px, a few seconds) and saved as a
.keras file the way ``hairseg-edge train`` saves it (batch size None). Each export test converts it
for real and runs the results through the device runtime; nothing is mocked.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from hairseg_edge.cli import app
from hairseg_edge.errors import CheckFailed, InputError
from hairseg_edge.imageio import read_image, write_image
from hairseg_edge.synth import make_dataset

pytestmark = pytest.mark.train

REPO = Path(__file__).resolve().parents[1]
SIZE = 32
REPORT_VARIANT_KEYS = {"name", "path", "size_bytes", "gzip_bytes", "sparsity", "iou", "f1", "agreement_iou",
                       "max_prob_diff", "p50_ms"}


def _tiny_unet(size: int, batch_size: int | None = None):
    """A two-level U-Net of the layer types the real architectures use (about 28k parameters)."""
    from hairseg_edge.training.keras_compat import keras

    layers = keras.layers
    inp = keras.Input((size, size, 3), batch_size=batch_size, name="image")
    x = layers.Rescaling(1.0 / 255.0, name="rescale")(inp)

    def conv_bn_relu(t, filters, name):
        t = layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"{name}_conv")(t)
        t = layers.BatchNormalization(momentum=0.9, name=f"{name}_bn")(t)
        return layers.ReLU(name=f"{name}_relu")(t)

    e0 = conv_bn_relu(x, 16, "enc0")
    e1 = conv_bn_relu(layers.MaxPooling2D(name="pool0")(e0), 32, "enc1")
    mid = conv_bn_relu(layers.MaxPooling2D(name="pool1")(e1), 32, "mid")
    d1 = layers.Concatenate(name="cat1")([layers.UpSampling2D(interpolation="bilinear", name="up1")(mid), e1])
    d1 = conv_bn_relu(d1, 16, "dec1")
    d0 = layers.Concatenate(name="cat0")([layers.UpSampling2D(interpolation="bilinear", name="up0")(d1), e0])
    d0 = conv_bn_relu(d0, 16, "dec0")
    out = layers.Conv2D(1, 1, activation="sigmoid", name="head")(d0)
    return keras.Model(inp, out, name="tiny_unet")


@pytest.fixture(scope="session")
def export_inputs(tmp_path_factory) -> dict[str, Path]:
    """Synthetic training and evaluation sets and a float .keras model trained on them."""
    from hairseg_edge.data import open_dataset
    from hairseg_edge.training import losses, pipeline
    from hairseg_edge.training.keras_compat import keras

    root = tmp_path_factory.mktemp("export")
    data = make_dataset(root / "data", n=40, size=[(48, 48), (40, 56)], seed=21)
    evaluation = make_dataset(root / "eval", n=8, size=48, seed=22)
    keras.utils.set_random_seed(0)
    model = _tiny_unet(SIZE)
    train = pipeline.make_dataset(open_dataset(data).samples, SIZE, 8, training=True, seed=0)
    model.compile(keras.optimizers.Adam(1e-2), losses.bce_dice())
    model.fit(train, epochs=1, steps_per_epoch=300, verbose=0)
    path = root / "hair.keras"
    model.save(path)
    return {"root": root, "data": data, "eval": evaluation, "model": path}


@pytest.fixture(scope="module")
def full_export(export_inputs, tmp_path_factory):
    """All four variants of the trained model, default gate."""
    from hairseg_edge.export import ExportOptions, export_model

    out = tmp_path_factory.mktemp("full") / "out"
    options = ExportOptions(export_inputs["model"], variants=("float32", "float16", "dynamic", "int8"),
                            data=export_inputs["data"], eval_data=export_inputs["eval"], out=out,
                            calib_count=24)
    return options, export_model(options)


# --- options ---------------------------------------------------------------------------------------------


def test_options_reject_impossible_combinations_when_built(tmp_path):
    from hairseg_edge.export.options import ExportOptions

    model = tmp_path / "m.keras"
    data = tmp_path / "data"
    with pytest.raises(InputError, match="--qat only changes the int8 variant"):
        ExportOptions(model, variants=("float16",), qat=True, data=data)
    with pytest.raises(InputError, match="--prune must be a sparsity strictly between 0 and 1"):
        ExportOptions(model, prune=1.0, data=data)
    with pytest.raises(InputError, match="--io int8 only applies to the int8 variant"):
        ExportOptions(model, variants=("float32",), io="int8", data=data)
    with pytest.raises(InputError, match="--prune fine-tunes the model"):
        ExportOptions(model, variants=("float32",), prune=0.5, eval_data=data)
    with pytest.raises(InputError, match="needs calibration images"):
        ExportOptions(model, variants=("int8",), eval_data=data)
    with pytest.raises(InputError, match="did you mean 'float16'"):
        ExportOptions(model, variants=("float61",), data=data)
    with pytest.raises(InputError, match="--io must be one of uint8, int8, float32"):
        ExportOptions(model, io="uint16", data=data)
    options = ExportOptions(model, variants=("int8",), prune=0.5, qat=True, data=data, out=tmp_path / "o")
    assert options.model_path("int8").name == "m-pruned50-int8-qat.tflite"
    assert options.to_dict()["io"] == "uint8"
    assert ExportOptions.from_dict(options.to_dict()) == options


def test_pruning_schedule_ends_on_a_mask_update_and_leaves_recovery_steps():
    from hairseg_edge.export.prune import schedule_for

    for total in (2, 7, 20, 100, 1000, 12345):
        s = schedule_for(0.5, total)
        assert s.end_step % s.frequency == 0, s  # the last update applies the final sparsity exactly
        assert 1 <= s.end_step <= total
        assert s.end_step <= 0.7 * total + 1
        assert s.frequency < 100 or total > 1000  # tfmot's default (100) would never fire on short runs
    with pytest.raises(InputError, match="at least 2 steps"):
        schedule_for(0.5, 1)


# --- conversion variants and the gate --------------------------------------------------------------------


def test_every_variant_is_written_loads_in_the_runtime_and_passes_the_gate(full_export, export_inputs):
    from hairseg_edge.runtime import Segmenter
    from hairseg_edge.tflite_meta import read_contract

    options, report = full_export
    assert report.gate.passed, report.gate.reason
    assert report.gate.mode == "IoU and agreement"
    assert [v.name for v in report.variants] == ["float32", "float16", "dynamic", "int8"]
    rgb = read_image(next((export_inputs["eval"] / "images").iterdir()))
    for row in report.variants:
        path = Path(row.path)
        assert path.is_absolute() and path.is_file() and path == options.model_path(row.name).resolve()
        assert path.stat().st_size == row.size_bytes
        assert read_contract(path).input_size == SIZE  # the contract travels in the file
        with Segmenter(path, threads=1) as seg:
            assert seg.inputs[0].shape == (1, SIZE, SIZE, 3)  # converted from a batch-1 graph
            result = seg.segment(rgb)
            assert result.probability.shape == rgb.shape[:2]
            assert np.all((result.probability >= 0) & (result.probability <= 1))
        assert row.agreement_iou >= options.min_agreement
        assert row.iou >= report.float.iou - options.max_drop
    int8 = report.variant("int8")
    assert int8.extra["input"]["dtype"] == "uint8" and int8.extra["output"]["dtype"] == "uint8"
    # Raw camera pixels go in as they are: the Rescaling inside the model makes the input scale 1.
    assert int8.extra["input"]["scale"] == pytest.approx(1.0) and int8.extra["input"]["zero_point"] == 0
    assert int8.size_bytes < 0.5 * report.variant("float32").size_bytes
    assert report.variant("float16").size_bytes < 0.6 * report.variant("float32").size_bytes
    # The float32 variant of an unpruned model is the reference itself: identical masks.
    assert report.variant("float32").agreement_iou == 1.0
    assert report.variant("float32").max_prob_diff == 0.0


def test_report_json_has_the_documented_schema(full_export, export_inputs):
    options, report = full_export
    data = json.loads(options.report_json_path.read_text())
    assert data == json.loads(report.to_json())
    assert set(data) >= {"float", "variants", "gate", "calibration", "evaluation", "versions", "options"}
    assert REPORT_VARIANT_KEYS <= set(data["float"])
    assert data["float"]["path"] == str(export_inputs["model"].resolve())
    assert data["float"]["agreement_iou"] == 1.0
    for row in data["variants"]:
        assert REPORT_VARIANT_KEYS <= set(row), row.keys()
        assert row["status"] == "written"
        assert row["p50_ms"] > 0 and row["gzip_bytes"] < row["size_bytes"]
        assert row["sparsity"] == pytest.approx(0.0, abs=0.01)
    assert set(data["gate"]) >= {"passed", "max_drop", "min_agreement", "reason"}
    assert data["gate"]["max_drop"] == 0.005 and data["gate"]["min_agreement"] == 0.97
    # Calibration comes from the training split of --data, evaluation from --eval: disjoint images.
    assert data["calibration"]["path"] == str(export_inputs["data"].resolve())
    assert data["calibration"]["count"] == 24 and len(data["calibration"]["ids_hash"]) == 16
    assert data["evaluation"] == {"path": str(export_inputs["eval"].resolve()), "selection": "all",
                                  "count": 8, "ids_hash": data["evaluation"]["ids_hash"],
                                  "ground_truth": True}
    assert data["versions"]["tensorflow"] and data["versions"]["ai-edge-litert"]
    md = options.report_md_path.read_text()
    assert "Gate: **PASSED**" in md and "| int8 | written |" in md


def test_existing_outputs_are_refused_without_force_and_left_untouched(full_export, export_inputs):
    options, _ = full_export
    before = {p: p.read_bytes() for p in options.out.iterdir()}
    result = CliRunner().invoke(app, ["export", str(export_inputs["model"]), "--int8", "--float32",
                                      "--data", str(export_inputs["data"]), "--out", str(options.out)])
    assert result.exit_code == 2
    assert "already exists (pass --force to overwrite)" in result.output
    assert {p: p.read_bytes() for p in options.out.iterdir()} == before


def test_force_replaces_outputs_atomically_and_prints_the_table(full_export, export_inputs, tmp_path):
    import shutil

    options, _ = full_export
    out = tmp_path / "out"
    shutil.copytree(options.out, out)
    float32 = out / "hair-float32.tflite"
    inode_before = float32.stat().st_ino
    int8_before = (out / "hair-int8.tflite").read_bytes()
    result = CliRunner().invoke(app, ["export", str(export_inputs["model"]), "--float32",
                                      "--eval", str(export_inputs["eval"]), "--out", str(out), "--force"])
    assert result.exit_code == 0, result.output
    assert "gate passed" in result.stdout and "float32  written" in result.stdout
    assert f"next: hairseg-edge bench {float32.resolve()}\n" in result.stdout  # one line, copyable
    assert float32.stat().st_ino != inode_before  # a new file renamed into place, not rewritten in place
    assert (out / "hair-int8.tflite").read_bytes() == int8_before  # not part of this export: untouched
    assert [v["name"] for v in json.loads((out / "report.json").read_text())["variants"]] == ["float32"]
    assert not [p for p in out.iterdir() if p.name.startswith(".")]


def test_broken_calibration_fails_the_gate_exits_1_and_writes_no_model(export_inputs, tmp_path):
    """Calibrating on constant black images squeezes every activation range: the int8 model is
    refused, and with --force an earlier good file at its path is not replaced."""
    black = tmp_path / "black"
    for i in range(6):
        write_image(black / "images" / f"b{i}.png", np.zeros((48, 48, 3), np.uint8))
        write_image(black / "masks" / f"b{i}.png", np.zeros((48, 48), np.uint8))
    out = tmp_path / "out"
    earlier = out / "hair-int8.tflite"
    write_image(out / "keep.png", np.zeros((4, 4), np.uint8))  # unrelated files stay
    earlier.write_bytes(b"an earlier good model")
    result = CliRunner().invoke(app, [
        "export", str(export_inputs["model"]), "--int8", "--calib", str(black),
        "--eval", str(export_inputs["eval"]), "--out", str(out), "--force", "--json"])
    assert result.exit_code == 1, result.output
    assert result.stderr.strip().splitlines()[-1].startswith("hairseg-edge: export gate failed: int8: ")
    assert earlier.read_bytes() == b"an earlier good model"
    assert sorted(p.name for p in out.iterdir() if p.suffix == ".tflite") == ["hair-int8.tflite"]
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temporary left behind
    report = json.loads((out / "report.json").read_text())
    assert json.loads(result.stdout) == report  # --json prints exactly the saved report
    assert report["gate"]["passed"] is False
    int8 = report["variants"][0]
    assert int8["status"] == "rejected" and int8["path"] is None
    assert int8["agreement_iou"] < 0.97 or int8["iou"] < report["float"]["iou"] - 0.005
    assert report["calibration"]["path"] == str(black.resolve())


# --- pruning and QAT -------------------------------------------------------------------------------------


def test_prune_half_then_qat_int8_keeps_the_sparsity_and_runs(export_inputs, tmp_path):
    """--prune 0.5 --qat --io int8 on an evaluation folder without masks: sparsity 0.5 +- 0.02 per
    the report and in the kernels, QAT with the sparsity-preserving scheme, gate on agreement only."""
    from hairseg_edge.export import ExportOptions, export_model
    from hairseg_edge.runtime import Segmenter

    images_only = tmp_path / "photos"
    for src in sorted((export_inputs["eval"] / "images").iterdir()):
        (images_only / src.name).parent.mkdir(exist_ok=True)
        (images_only / src.name).write_bytes(src.read_bytes())
    options = ExportOptions(export_inputs["model"], variants=("float16", "int8"), prune=0.5, qat=True,
                            data=export_inputs["data"], eval_data=images_only, out=tmp_path / "out",
                            finetune_epochs=1, finetune_steps=20, calib_count=16, io="int8",
                            max_drop=1.0, min_agreement=0.0)
    report = export_model(options)

    pruning = report.pruning
    assert pruning["sparsity"] == pytest.approx(0.5, abs=0.02)
    assert pruning["schedule"]["end_step"] <= 20 and pruning["schedule"]["frequency"] >= 1
    assert {row["layer"] for row in pruning["layers"]} == {"enc1_conv", "mid_conv", "dec1_conv", "dec0_conv"}
    assert pruning["left_dense"] == ["enc0_conv", "head"]  # the stem and the head
    for row in pruning["layers"]:
        assert row["sparsity"] == pytest.approx(0.5, abs=0.02), row
    assert report.qat["scheme"] == "prune_preserve_8bit" and report.qat["note"] is None
    assert report.qat["layers_left_float"] == []
    for row in report.variants:
        assert row.sparsity == pytest.approx(0.5, abs=0.02), row.name
        assert row.gzip_bytes < row.size_bytes
        assert row.iou is None and row.f1 is None and row.agreement_iou is not None
        with Segmenter(row.path) as seg:
            assert seg.predict_input(np.zeros((SIZE, SIZE, 3), np.uint8)).shape == (SIZE, SIZE)
    assert Path(report.variant("int8").path).name == "hair-pruned50-int8-qat.tflite"
    int8 = report.variant("int8")
    assert int8.extra["built_with"] == "QAT (prune_preserve_8bit)"
    assert int8.extra["input"]["dtype"] == "int8" and int8.extra["input"]["zero_point"] == -128
    assert int8.extra["input"]["scale"] == pytest.approx(1.0)
    assert report.gate.mode.startswith("agreement only")
    assert report.evaluation["ground_truth"] is False


#: Agreement floor for fine-tuned variants. Pruning and QAT fine-tune the model, which legitimately
#: moves its decisions away from the original float model's while its IoU holds (measured on the
#: bundled model with generated faces: prune 0.3 int8 IoU 0.862 vs float 0.853 at agreement 0.865; QAT
#: 0.852 vs 0.853 at 0.867), so the default 0.97 would refuse every such export: the accuracy gate
#: (--max-drop, default) is what these tests hold, with agreement kept from collapsing.
FINETUNED_MIN_AGREEMENT = 0.8


@pytest.fixture(scope="module")
def gated_inputs(tmp_path_factory) -> tuple[Path, dict]:
    """The bundled float model (a real, converged model) and data with masks: the real data when
    HAIRSEG_DATA is set, otherwise generated faces (fine-tuning/calibration and a disjoint held-out
    set for the gate)."""
    from hairseg_edge.models import bundled_model_path

    data_root = os.environ.get("HAIRSEG_DATA")
    if data_root:
        return bundled_model_path("float"), dict(data=data_root, limit=160)
    root = tmp_path_factory.mktemp("gated")
    sizes = [(256, 256), (200, 300), (320, 240)]
    return bundled_model_path("float"), dict(data=make_dataset(root / "train", n=96, size=sizes, seed=5),
                                             eval_data=make_dataset(root / "eval", n=24, size=sizes, seed=77))


@pytest.mark.parametrize("how", ["prune", "qat"])
def test_pruned_and_qat_int8_pass_the_accuracy_gate_on_ground_truth(gated_inputs, tmp_path, how):
    """The accuracy gate with its real threshold (default --max-drop) on masked images the model was
    not fine-tuned or calibrated on: a pruning or QAT change that costs accuracy turns this red."""
    from hairseg_edge.export import ExportOptions, export_model
    from hairseg_edge.export.options import DEFAULT_MAX_DROP

    model, inputs = gated_inputs
    extra = {"prune": 0.3, "finetune_steps": 120, "finetune_lr": 3e-5} if how == "prune" else \
        {"qat": True, "finetune_steps": 20, "finetune_lr": 1e-5}
    options = ExportOptions(model, variants=("int8",), out=tmp_path / "out", finetune_epochs=1, calib_count=32,
                            min_agreement=FINETUNED_MIN_AGREEMENT, **extra, **inputs)
    assert options.max_drop == DEFAULT_MAX_DROP
    report = export_model(options)
    assert report.evaluation["ground_truth"] is True and not report.gate.mode.startswith("agreement only")
    assert report.gate.passed, report.gate.reason
    int8 = report.variant("int8")
    assert Path(int8.path).is_file() and int8.iou >= report.float.iou - DEFAULT_MAX_DROP
    assert int8.agreement_iou >= FINETUNED_MIN_AGREEMENT
    if how == "prune":
        assert report.pruning["sparsity"] == pytest.approx(0.3, abs=0.02)
    else:
        assert report.qat is not None and int8.extra["built_with"].startswith("QAT")


def test_the_gate_refuses_a_pruned_model_that_lost_its_accuracy(export_inputs, tmp_path):
    """The same gate, shown to bite: 95% sparsity with two fine-tuning steps ruins the tiny model, the
    variant is refused (not written) and raise_for_gate is exit 1."""
    from hairseg_edge.export import ExportOptions, export_model

    options = ExportOptions(export_inputs["model"], variants=("int8",), prune=0.95, data=export_inputs["data"],
                            eval_data=export_inputs["eval"], out=tmp_path / "out", finetune_epochs=1,
                            finetune_steps=2, calib_count=16)
    report = export_model(options)
    assert not report.gate.passed and report.variant("int8").path is None
    with pytest.raises(CheckFailed):
        report.raise_for_gate()


def test_sparsity_preserving_qat_falls_back_and_says_which_layer_blocks_it():
    """tfmot's prune-preserving scheme has no Conv2DTranspose support: plain QAT, with a clear note."""
    from hairseg_edge.export.qat import DEFAULT_SCHEME, annotate, apply_scheme
    from hairseg_edge.training.keras_compat import keras

    layers = keras.layers
    inp = keras.Input((SIZE, SIZE, 3), name="image")
    x = layers.Rescaling(1.0 / 255.0)(inp)
    x = layers.Conv2D(8, 3, strides=2, padding="same", activation="relu")(x)
    x = layers.Conv2DTranspose(8, 3, strides=2, padding="same", activation="relu", name="up_tconv")(x)
    model = keras.Model(inp, layers.Conv2D(1, 1, activation="sigmoid")(x))
    annotated, left_float = annotate(model)
    quantized, scheme, note = apply_scheme(annotated, preserve_sparsity=True)
    assert left_float == []
    assert scheme == DEFAULT_SCHEME
    assert note.startswith("sparsity-preserving QAT is not possible for this model (layer up_tconv "
                           "(Conv2DTranspose) is not supported by it); used the default 8-bit scheme")
    assert any(layer.name == "quant_up_tconv" for layer in quantized.layers)


def test_pruning_leaves_the_float_original_untouched(export_inputs):
    from hairseg_edge.export.finetune import plan_finetune
    from hairseg_edge.export.image_sets import finetune_set
    from hairseg_edge.export.keras_models import load_float_model
    from hairseg_edge.export.prune import prune

    model = load_float_model(export_inputs["model"])
    before = [w.copy() for w in model.get_weights()]
    images = finetune_set(export_inputs["data"], limit=16)
    plan = plan_finetune(images, epochs=1, steps=4, batch_size=4, learning_rate=1e-4)
    result = prune(model, images, SIZE, target=0.3, plan=plan)
    assert result.overall == pytest.approx(0.3, abs=0.02)
    assert all(np.array_equal(a, b) for a, b in zip(before, model.get_weights()))
    assert not any(hasattr(layer, "pruning_vars") for layer in result.model.layers)  # stripped


# --- inputs and installs ---------------------------------------------------------------------------------


def test_a_keras_file_that_is_not_a_model_is_an_input_error(tmp_path, export_inputs):
    bad = tmp_path / "notes.keras"
    bad.write_text("not a zip archive")
    result = CliRunner().invoke(app, ["export", str(bad), "--float32", "--eval", str(export_inputs["eval"]),
                                      "--out", str(tmp_path / "out")])
    assert result.exit_code == 2
    assert f"{bad}: not a loadable Keras model" in result.output
    assert not (tmp_path / "out").exists()


def test_a_model_with_the_wrong_output_is_refused(tmp_path):
    from hairseg_edge.export.keras_models import load_float_model
    from hairseg_edge.training.keras_compat import keras

    inp = keras.Input((SIZE, SIZE, 3))
    two_class = keras.Model(inp, keras.layers.Conv2D(2, 1, activation="softmax")(inp))
    path = tmp_path / "two.keras"
    two_class.save(path)
    with pytest.raises(InputError, match=r"expected a one-channel output"):
        load_float_model(path)


def test_gate_failure_is_check_failed_with_exit_code_1():
    from hairseg_edge.export.verify import Scores, judge

    float_scores = Scores(iou=0.80, f1=0.89, agreement_iou=None, max_prob_diff=None, images=10)
    ok = judge(Scores(0.797, 0.88, 0.985, 0.05, 10), float_scores, max_drop=0.005, min_agreement=0.97)
    assert ok.passed and "IoU drop +0.0030" in ok.reason
    at_limit = judge(Scores(0.795, 0.88, 0.97, 0.05, 10), float_scores, max_drop=0.005, min_agreement=0.97)
    assert at_limit.passed
    too_low = judge(Scores(0.79, 0.88, 0.99, 0.05, 10), float_scores, max_drop=0.005, min_agreement=0.97)
    assert not too_low.passed and "0.0100 under the float model's 0.8000" in too_low.reason
    disagree = judge(Scores(0.80, 0.88, 0.90, 0.4, 10), float_scores, max_drop=0.005, min_agreement=0.97)
    assert not disagree.passed and "agreement IoU 0.9000" in disagree.reason
    no_truth = judge(Scores(None, None, 0.99, 0.02, 10), Scores(None, None, None, None, 10),
                     max_drop=0.005, min_agreement=0.97)
    assert no_truth.passed and "IoU" not in no_truth.reason.replace("agreement", "")
    assert CheckFailed.exit_code == 1


def test_core_only_install_says_which_extra_to_install(tmp_path):
    """With TensorFlow not importable (as on a device install) export prints one line, exit 2."""
    blocker = tmp_path / "site"
    blocker.mkdir()
    (blocker / "sitecustomize.py").write_text(textwrap.dedent("""
        import sys

        class _NoTensorFlow:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in ("tensorflow", "tf_keras", "tensorflow_model_optimization"):
                    raise ModuleNotFoundError(f"No module named {name!r}", name=name)
                return None

        sys.meta_path.insert(0, _NoTensorFlow())
    """))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(blocker), str(REPO)]))
    code = ("import sys\nfrom hairseg_edge.cli import main\n"
            f"sys.argv = ['hairseg-edge', 'export', {str(tmp_path / 'm.keras')!r}, '--int8', "
            f"'--data', {str(tmp_path)!r}]\nmain()\n")
    proc = subprocess.run([sys.executable, "-c", code],
                          capture_output=True, text=True, env=env, timeout=120, check=False)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip() == ('hairseg-edge: hairseg-edge export needs the \'train\' extra: '
                                   'pip install "hairseg-edge[train]"')


@pytest.mark.slow
def test_mobile_unet_prunes_quantizes_and_converts_end_to_end(tmp_path):
    """The shipped architecture (depthwise convs, residual adds, float32 sigmoid) through the whole
    path: a short training, --prune 0.5 --qat --int8 --float32, both variants run in the runtime."""
    from hairseg_edge.data import open_dataset
    from hairseg_edge.export import ExportOptions, export_model
    from hairseg_edge.runtime import Segmenter
    from hairseg_edge.training import losses, pipeline
    from hairseg_edge.training.archs import build_model
    from hairseg_edge.training.keras_compat import keras

    data = make_dataset(tmp_path / "data", n=48, size=64, seed=31)
    evaluation = make_dataset(tmp_path / "eval", n=8, size=64, seed=32)
    keras.utils.set_random_seed(0)
    model = build_model("mobile_unet", input_size=64, width=0.35)
    model.compile(keras.optimizers.Adam(3e-3), losses.bce_dice())
    model.fit(pipeline.make_dataset(open_dataset(data).samples, 64, 8, training=True), epochs=1,
              steps_per_epoch=60, verbose=0)
    model.save(tmp_path / "mobile.keras")
    report = export_model(ExportOptions(
        tmp_path / "mobile.keras", variants=("float32", "int8"), prune=0.5, qat=True, data=data,
        eval_data=evaluation, out=tmp_path / "out", finetune_epochs=1, finetune_steps=30, calib_count=32,
        max_drop=1.0, min_agreement=0.0))
    assert report.pruning["sparsity"] == pytest.approx(0.5, abs=0.02)
    assert report.qat["scheme"] == "prune_preserve_8bit" and report.qat["layers_left_float"] == []
    for row in report.variants:
        assert row.sparsity == pytest.approx(0.5, abs=0.03), row.name
        with Segmenter(row.path) as seg:
            assert seg.segment(np.zeros((50, 70, 3), np.uint8)).mask.shape == (50, 70)
    # Not 0.25x: on a model this small the per-channel scales and zero points (12 bytes a channel)
    # and int32 biases are a large part of the int8 file (0.5x measured at 64 px, width 0.35).
    assert report.variant("int8").size_bytes < 0.6 * report.variant("float32").size_bytes


def test_export_keeps_the_converters_native_log_from_the_user_unless_verbose(export_inputs, tmp_path):
    """The TFLite converter logs "fully_quantize: 0, inference_type: 6, ..." on file descriptor 2:
    a real process (the capture is of the fd, which CliRunner cannot see), quiet by default, and the
    same line shown with -v (so this test would see it if it leaked)."""
    env = dict(os.environ, PYTHONPATH=str(REPO), COLUMNS="80")
    outputs = {}
    for flags in ([], ["-v"]):
        out = tmp_path / ("verbose" if flags else "quiet")
        proc = subprocess.run([sys.executable, "-m", "hairseg_edge", *flags, "export", str(export_inputs["model"]),
                               "--int8", "--calib", str(export_inputs["data"]), "--eval",
                               str(export_inputs["eval"]), "--out", str(out)],
                              capture_output=True, text=True, env=env, timeout=600, check=False)
        assert proc.returncode == 0, proc.stderr
        outputs[bool(flags)] = proc
    quiet, verbose = outputs[False], outputs[True]
    for noise in ("fully_quantize", "inference_type", "absl::InitializeLog", "I0000", "W0000"):
        assert noise not in quiet.stdout + quiet.stderr, noise
    assert quiet.stderr.strip() == ""
    assert "fully_quantize" in verbose.stderr
    assert "converting int8" in quiet.stdout and "gate passed" in quiet.stdout
