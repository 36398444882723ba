"""Training side: architectures, tfmot compatibility, the tf.data pipeline, fit/resume, tf.distribute, CLI."""

from __future__ import annotations

import dataclasses
import inspect
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from hairseg_edge.cli import app
from hairseg_edge.synth import make_dataset

pytestmark = pytest.mark.train

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory) -> Path:
    """40 synthetic faces, mixed aspect ratios (the validation split keeps a few)."""
    return make_dataset(tmp_path_factory.mktemp("train") / "data", n=40, size=[(72, 72), (64, 96)], seed=3)


def _subprocess_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    return env


# --- architectures ---------------------------------------------------------------------------------------
def test_every_arch_builds_batch1_with_one_channel_probability():
    from hairseg_edge.training import archs

    assert set(archs.arch_names()) >= {"custom_cnn", "unet", "deeplabv3"}
    assert any(n.startswith("mobile") for n in archs.arch_names())
    assert archs.DEFAULT_ARCH == "fused_unet"
    # The CLI spells its default out (so importing the CLI needs no TensorFlow): the same name.
    from hairseg_edge.cli.train import train

    assert inspect.signature(train).parameters["arch"].default == archs.DEFAULT_ARCH
    for name in archs.arch_names():
        model = archs.build_model(name, input_size=64, width=0.25, batch_size=1)
        assert model.input_shape == (1, 64, 64, 3), name
        assert model.output_shape == (1, 64, 64, 1), name
        out = model(np.full((1, 64, 64, 3), 255.0, np.float32)).numpy()
        assert np.all((out >= 0) & (out <= 1)), name
        assert archs.count_macs(model) > 0
        # Normalisation is inside the model: the contract feeds raw 0..255 values.
        assert model.layers[1].__class__.__name__ == "Rescaling"


def test_count_macs_matches_a_hand_computed_conv():
    from hairseg_edge.training.archs import count_macs
    from hairseg_edge.training.keras_compat import keras

    inp = keras.Input((8, 8, 3), batch_size=1)
    x = keras.layers.Conv2D(4, 3, padding="same")(inp)  # 8*8*3*3*3*4 = 6912
    x = keras.layers.DepthwiseConv2D(3, padding="same")(x)  # 8*8*3*3*4 = 2304
    assert count_macs(keras.Model(inp, x)) == 6912 + 2304


def test_unknown_arch_names_the_valid_ones():
    from hairseg_edge.training import archs

    with pytest.raises(ValueError, match="mobile_unet"):
        archs.build_model("mobile_unett")


@pytest.mark.parametrize("name", ["custom_cnn", "unet", "deeplabv3", "mobile_unet", "fused_unet",
                                  "fused_unet_ctx"])
def test_every_arch_survives_pruning_and_quantization_aware_training(name):
    """Only tfmot-supported layers: the export stage's pruning and QAT wrappers take every layer."""
    import tensorflow_model_optimization as tfmot

    from hairseg_edge.export import qat
    from hairseg_edge.export.prune import layers_to_prune
    from hairseg_edge.training import archs
    from hairseg_edge.training.keras_compat import keras

    model = archs.build_model(name, input_size=32, width=0.25, batch_size=1)
    chosen, _ = layers_to_prune(model)
    pruned = keras.models.clone_model(
        model, clone_function=lambda layer: tfmot.sparsity.keras.prune_low_magnitude(layer)
        if layer.name in chosen else layer)
    assert sum("prune_low_magnitude" in layer.name for layer in pruned.layers) == len(chosen) > 0
    annotated, left_float = qat.annotate(archs.build_model(name, input_size=32, width=0.25, batch_size=1))
    # BatchNorm right after a conv is folded into it by quantize_apply's transforms, not annotated.
    not_folded = [n for n in left_float if not n.endswith("_bn")]
    assert not_folded == [], f"layers QAT cannot quantize: {not_folded}"
    quantized, scheme, _note = qat.apply_scheme(annotated, preserve_sparsity=False)
    assert quantized(np.zeros((1, 32, 32, 3), np.float32)).shape == (1, 32, 32, 1)


def test_large_tier_arch_converts_to_int8_and_runs_on_the_device_runtime(tmp_path):
    """fused_unet_ctx (the large tier): its context module (global pooling spread back by a bilinear
    resize, a dilated conv) converts to integer-only int8 with uint8 I/O and runs in the Segmenter."""
    from hairseg_edge.export.convert import convert
    from hairseg_edge.export.options import get_variant
    from hairseg_edge.runtime import Segmenter
    from hairseg_edge.training import archs

    model = archs.build_model("fused_unet_ctx", input_size=64, width=0.25, batch_size=1)
    rng = np.random.default_rng(0)

    def representative():
        for _ in range(4):
            yield [rng.uniform(0, 255, (1, 64, 64, 3)).astype(np.float32)]

    path = tmp_path / "ctx-int8.tflite"
    path.write_bytes(convert(model, get_variant("int8"), representative=representative))
    with Segmenter(path) as seg:
        assert seg.segment(np.zeros((48, 80, 3), np.uint8)).mask.shape == (48, 80)
    # More depth at strides 16-32 than fused_unet at one width: more weights for few more MACs.
    small = archs.build_model("fused_unet", input_size=64, width=0.25, batch_size=1)
    assert model.count_params() > 2 * small.count_params()
    assert archs.count_macs(model) < 2 * archs.count_macs(small)


# --- pipeline --------------------------------------------------------------------------------------------
def test_pipeline_batches_follow_the_contract(tiny_data):
    from hairseg_edge.data import open_dataset
    from hairseg_edge.training.pipeline import make_dataset as make_tf_dataset

    ds = open_dataset(tiny_data)
    pipe = make_tf_dataset(ds.samples, input_size=32, batch_size=4, training=True, seed=1)
    images, masks = next(iter(pipe))
    assert images.shape == (4, 32, 32, 3) and images.dtype.name == "float32"
    assert masks.shape == (4, 32, 32, 1)
    assert float(images.numpy().max()) > 1.5  # raw 0..255, not normalised
    assert set(np.unique(masks.numpy())) <= {0.0, 1.0}
    val = make_tf_dataset(ds.samples, input_size=32, batch_size=16, training=False)
    assert sum(int(b[0].shape[0]) for b in val) == len(ds)  # validation: every image once, in order


def test_augment_is_deterministic_and_keeps_masks_binary():
    from hairseg_edge.synth import render_sample
    from hairseg_edge.training.pipeline import augment

    rgb, mask = render_sample(np.random.default_rng(0), 80, 60)
    a = augment(rgb, mask, np.random.default_rng([1, 2, 3]))
    b = augment(rgb, mask, np.random.default_rng([1, 2, 3]))
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    assert a[0].shape == rgb.shape and a[1].shape == mask.shape
    assert set(np.unique(a[1])) <= {0, 1}


def test_settle_augmentation_only_mirrors():
    """--augment settle hands back each photo and mask untouched or mirrored exactly (a flip is pixel x
    -> w-1-x, not shifted by one), in about half the samples each; the camera-style resize only applies
    when a model input size is given."""
    from hairseg_edge.synth import render_sample
    from hairseg_edge.training.pipeline import AUGMENT_PRESETS, augment

    rgb, mask = render_sample(np.random.default_rng(0), 96, 80)
    mirrored = 0
    for k in range(40):
        img, m = augment(rgb, mask, np.random.default_rng([7, k]), AUGMENT_PRESETS["settle"])
        if np.array_equal(img, rgb[:, ::-1]) and np.array_equal(m, mask[:, ::-1]):
            mirrored += 1
        else:
            np.testing.assert_array_equal(img, rgb)
            np.testing.assert_array_equal(m, mask)
    assert 10 <= mirrored <= 30


def test_wide_augmentation_shrinks_a_share_of_the_heads(monkeypatch):
    """--augment wide is light plus photos shrunk to 0.35-0.7x (heads small in the frame): about 30% of
    the samples get a zoom below light's smallest, 0.85x, which light never gives; a preset with
    zoom_out_prob 0 never uses the zoom_out range."""
    from hairseg_edge.synth import render_sample
    from hairseg_edge.training import pipeline
    from hairseg_edge.training.pipeline import AUGMENT_PRESETS, augment

    rgb, mask = render_sample(np.random.default_rng(0), 128, 128)
    zooms = []
    real = pipeline.cv2.getRotationMatrix2D
    monkeypatch.setattr(pipeline.cv2, "getRotationMatrix2D",
                        lambda centre, angle, scale: zooms.append(scale) or real(centre, angle, scale))

    def zooms_of(preset):
        zooms.clear()
        for k in range(200):
            augment(rgb, mask, np.random.default_rng([5, k]), AUGMENT_PRESETS[preset])
        return np.array(zooms)

    wide, light = zooms_of("wide"), zooms_of("light")
    assert light.min() >= 0.85
    assert 0.2 <= (wide < 0.85).mean() <= 0.36 and wide.min() >= 0.35 * 0.85
    before = dataclasses.replace(AUGMENT_PRESETS["light"], zoom_out=(0.1, 0.2))  # unused while the prob is 0
    a = augment(rgb, mask, np.random.default_rng([9, 1]), AUGMENT_PRESETS["light"])
    b = augment(rgb, mask, np.random.default_rng([9, 1]), before)
    np.testing.assert_array_equal(a[0], b[0])


def test_bands_augmentation_cuts_a_share_of_frames_through_the_head():
    """--augment bands is wide plus about 30% of the photos cut to a band of whole rows (or columns),
    45-80% of the side: the image and its mask are cut alike (the same rows of the same photo), and
    the rest of the augmentation stream is wide's."""
    from hairseg_edge.synth import render_sample
    from hairseg_edge.training.pipeline import AUGMENT_PRESETS, _band_crop, augment

    rgb, mask = render_sample(np.random.default_rng(0), 120, 100)
    shapes = [augment(rgb, mask, np.random.default_rng([4, k]), AUGMENT_PRESETS["bands"], 256)[1].shape
              for k in range(300)]
    rows = [h for h, w in shapes if w == 100 and h < 120]
    cols = [w for h, w in shapes if h == 120 and w < 100]
    assert len(rows) + len(cols) + shapes.count((120, 100)) == 300
    assert 0.22 <= (len(rows) + len(cols)) / 300 <= 0.38 and len(rows) > len(cols) > 0
    assert min(rows) >= round(0.45 * 120) and max(rows) <= round(0.8 * 120)
    # the crop keeps image and mask together: the mask of the cut photo is the cut of the mask
    band_img, band_mask = _band_crop(rgb, mask, np.random.default_rng(1), (0.5, 0.5))
    offsets = [y for y in range(0, 61) if np.array_equal(rgb[y:y + 60], band_img)]
    assert band_img.shape[:2] == band_mask.shape and len(offsets) == 1
    np.testing.assert_array_equal(band_mask, mask[offsets[0]:offsets[0] + 60])
    assert dataclasses.replace(AUGMENT_PRESETS["bands"], band_crop_prob=0.0) == AUGMENT_PRESETS["wide"]
    # bands-light: the same band crops over light, without wide's zoom-out
    assert dataclasses.replace(AUGMENT_PRESETS["bands-light"], band_crop_prob=0.0) == AUGMENT_PRESETS["light"]
    assert AUGMENT_PRESETS["bands-light"].band_crop_prob == AUGMENT_PRESETS["bands"].band_crop_prob


def test_light_augmentation_moves_pixels_less_than_full(tiny_data):
    """--augment light keeps masks closer to the unaugmented photo than full (geometry), and light
    photometric changes are smaller; none leaves a training sample as the contract prepares it."""
    from hairseg_edge.synth import render_sample
    from hairseg_edge.training.pipeline import AUGMENT_PRESETS, augment, make_dataset, prepare_pair

    rgb, mask = render_sample(np.random.default_rng(0), 96, 96)

    def mean_change(preset):
        ious, shifts = [], []
        for k in range(60):
            img, m = augment(rgb, mask, np.random.default_rng([7, k]), AUGMENT_PRESETS[preset])
            union = np.logical_or(m, mask).sum()
            ious.append(np.logical_and(m, mask).sum() / max(union, 1))
            shifts.append(abs(float(img.mean()) - float(rgb.mean())))
        return float(np.mean(ious)), float(np.mean(shifts))

    full_iou, full_shift = mean_change("full")
    light_iou, light_shift = mean_change("light")
    assert light_iou > full_iou + 0.05
    assert light_shift < full_shift

    from hairseg_edge.data import load_sample, open_dataset
    sample = open_dataset(tiny_data).samples[0]
    image, target = next(iter(make_dataset([sample], 64, 1, training=True, augmented=False)))
    expected_image, expected_target = prepare_pair(*load_sample(sample), 64)
    np.testing.assert_array_equal(image[0].numpy(), expected_image)
    np.testing.assert_array_equal(target[0].numpy(), expected_target)


def test_validation_matches_the_training_pipeline_letterbox(tiny_data):
    """Validation images are exactly the contract's letterbox of the decoded file."""
    from hairseg_edge import contract
    from hairseg_edge.data import load_sample, open_dataset
    from hairseg_edge.training.pipeline import make_dataset as make_tf_dataset

    ds = open_dataset(tiny_data)
    images, _ = next(iter(make_tf_dataset(ds.samples[:1], 32, 1, training=False)))
    rgb, _ = load_sample(ds.samples[0])
    expected, _ = contract.letterbox_image(rgb, 32)
    assert np.array_equal(images.numpy()[0].astype(np.uint8), expected)


# --- fit, outputs, resume ---------------------------------------------------------------------------------
def _train_args(data: Path, out: Path, epochs: int, extra: list[str] | None = None) -> list[str]:
    return ["train", "--data", str(data), "--arch", "mobile_unet", "--img-size", "32", "--width", "0.25",
            "--epochs", str(epochs), "--batch", "4", "--out", str(out), *(extra or [])]


def test_train_writes_model_history_and_curve(tiny_data, tmp_path):
    out = tmp_path / "run"
    result = CliRunner().invoke(app, _train_args(tiny_data, out, 2))
    assert result.exit_code == 0, result.output
    for name in ("model.keras", "history.csv", "history.json", "training_curve.png", "state.json",
                 "train_options.json"):
        assert (out / name).is_file(), name
    history = json.loads((out / "history.json").read_text())
    assert [row["epoch"] for row in history] == [1, 2]
    assert all(0.0 <= row["val_iou"] <= 1.0 and row["images_per_s"] > 0 for row in history)
    assert "best val IoU" in result.output

    from hairseg_edge.training.keras_compat import keras

    model = keras.models.load_model(out / "model.keras", safe_mode=True, compile=False)
    assert model.output_shape == (None, 32, 32, 1)
    # A second run into the same folder is refused (nothing is overwritten unasked).
    again = CliRunner().invoke(app, _train_args(tiny_data, out, 2))
    assert again.exit_code == 2
    assert "--resume" in again.output


def test_keep_last_holds_the_final_epoch_whatever_its_score(tiny_data, tmp_path):
    """--keep last: model.keras is the end of the schedule (the last checkpoint's weights), recorded in
    state.json and the options, so a model card can say which epoch it ships."""
    out = tmp_path / "run"
    result = CliRunner().invoke(app, _train_args(tiny_data, out, 3, ["--keep", "last"]))
    assert result.exit_code == 0, result.output
    state = json.loads((out / "state.json").read_text())
    assert state["kept_epoch"] == 3 and state["kept_val_iou"] == state["history"][-1]["val_iou"]
    assert json.loads((out / "train_options.json").read_text())["keep"] == "last"

    from hairseg_edge.training.keras_compat import keras

    kept = keras.models.load_model(out / "model.keras", safe_mode=True, compile=False)
    last = keras.models.load_model(out / "checkpoint-epoch-0003.keras", safe_mode=True, compile=False)
    for a, b in zip(kept.get_weights(), last.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_cosine_schedule_holds_its_rate_over_the_averaging_window():
    from hairseg_edge.training.train import cosine_lr

    plain = [cosine_lr(1.0, e, 10) for e in range(10)]
    held = [cosine_lr(1.0, e, 10, hold_last=4) for e in range(10)]
    assert held[:7] == plain[:7]  # the schedule is untouched before the window
    assert held[6:] == [plain[6]] * 4  # then keeps the rate it had reached
    assert plain[9] < 0.1 < held[9]


def _snapshot_epochs(trainer, snapshots, stop_after: int | None = None):
    """A progress callback that keeps each epoch's trainable weights (and can interrupt the run)."""
    def progress(event, info):
        if event == "epoch":
            snapshots[info["epoch"]] = [w.copy() for w in trainer.model.get_weights()]
            if info["epoch"] == stop_after:
                raise KeyboardInterrupt
    return progress


def test_average_last_ships_the_mean_of_the_window_also_across_a_resume(tiny_data, tmp_path):
    """--average-last 2 of 3 epochs: model.keras's weights (BatchNorm statistics too) are the mean of
    epochs 2 and 3, also when the run is killed after epoch 2 and resumed; the average is validated and
    recorded."""
    from hairseg_edge.training.keras_compat import keras
    from hairseg_edge.training.train import Trainer, TrainOptions

    options = TrainOptions(data=(str(tiny_data),), out=str(tmp_path / "run"), arch="fused_unet",
                           img_size=32, width=0.25, epochs=3, batch=4, average_last=2, patience=10)
    snapshots: dict[int, list[np.ndarray]] = {}
    first = Trainer(options)
    first.progress = _snapshot_epochs(first, snapshots, stop_after=2)
    with pytest.raises(KeyboardInterrupt):
        first.run()
    state = json.loads((tmp_path / "run" / "state.json").read_text())
    assert state["average_count"] == 1 and (tmp_path / "run" / state["average_file"]).is_file()

    second = Trainer(options, resume=True)
    second.progress = _snapshot_epochs(second, snapshots)
    result = second.run()
    assert sorted(snapshots) == [1, 2, 3]
    assert result.averaged["first_epoch"] == 2 and result.averaged["last_epoch"] == 3
    assert 0.0 <= result.averaged["val_iou"] <= 1.0 and result.kept_val_iou == result.averaged["val_iou"]

    kept = keras.models.load_model(tmp_path / "run" / "model.keras", safe_mode=True, compile=False)
    got = kept.get_weights()
    assert len(got) == len(snapshots[3]) > len(kept.trainable_weights)  # moving statistics included
    for w, w2, w3 in zip(got, snapshots[2], snapshots[3]):
        np.testing.assert_allclose(w, (w2 + w3) / 2, rtol=1e-5, atol=1e-6)
    assert any(not np.allclose(w, w3) for w, w3 in zip(got, snapshots[3]))  # not simply the last epoch
    saved = json.loads((tmp_path / "run" / "state.json").read_text())
    assert saved["averaged"] == result.averaged and saved["kept_epoch"] == 3

    # Moving the window under a resumed run would average epochs of two schedules: refused.
    from hairseg_edge.errors import InputError

    before = (tmp_path / "run" / "train_options.json").read_text()
    moved = TrainOptions(**{**options.to_dict(), "data": tuple(options.data), "epochs": 4})
    with pytest.raises(InputError, match="averaging window, which began at epoch 2"):
        Trainer(moved, resume=True).run()
    assert (tmp_path / "run" / "train_options.json").read_text() == before  # nothing rewritten


def test_average_last_out_of_range_is_one_line(tiny_data, tmp_path):
    result = CliRunner().invoke(app, _train_args(tiny_data, tmp_path / "run", 2, ["--average-last", "3"]))
    assert result.exit_code == 2
    assert "--average-last must be in [0, --epochs], got 3" in result.output


def _ramp_teacher(size: int):
    """A 'teacher' whose map rises left to right whatever the image: not mirror-symmetric."""
    from hairseg_edge.training.keras_compat import keras, tf

    ramp = tf.reshape(tf.linspace(0.0, 1.0, size), (1, 1, size, 1))
    inp = keras.Input((size, size, 3))
    out = keras.layers.Lambda(lambda x: tf.zeros_like(x[..., :1]) + ramp)(inp)
    return keras.Model(inp, out)


def test_soft_targets_mix_the_mask_with_the_mirror_averaged_teacher():
    from hairseg_edge.training.keras_compat import tf
    from hairseg_edge.training.distill import soft_targets

    images = tf.random.uniform((2, 8, 8, 3), 0, 255, seed=1)
    masks = tf.cast(tf.random.uniform((2, 8, 8, 1), seed=2) > 0.5, tf.float32)
    got = soft_targets(_ramp_teacher(8), images, masks, 0.25).numpy()
    # The ramp and its mirror image, mirrored back, average to 0.5 everywhere; one pass would not.
    np.testing.assert_allclose(got, 0.75 * masks.numpy() + 0.25 * 0.5, atol=1e-6)


def test_a_distilled_step_trains_on_the_soft_targets(tiny_data):
    from hairseg_edge.training import archs
    from hairseg_edge.training.keras_compat import keras, tf
    from hairseg_edge.training.losses import BceDiceLoss
    from hairseg_edge.training.distill import distil_into, soft_targets

    keras.utils.set_random_seed(0)
    student = archs.build_model("fused_unet", 32, 0.25)
    student.compile(optimizer=keras.optimizers.SGD(0.0), loss=BceDiceLoss())  # rate 0: weights stay
    teacher = _ramp_teacher(32)
    images = tf.random.uniform((4, 32, 32, 3), 0, 255, seed=3)
    masks = tf.ones((4, 32, 32, 1))
    prediction = student(images, training=True)
    on_masks = float(BceDiceLoss()(masks, prediction))
    on_soft = float(BceDiceLoss()(soft_targets(teacher, images, masks, 0.7), prediction))
    assert abs(on_masks - on_soft) > 0.05  # the test can tell the two apart
    distil_into(student, teacher, 0.7)
    logs = student.train_on_batch(images, masks, return_dict=True)
    assert logs["loss"] == pytest.approx(on_soft, rel=1e-4)


def test_train_with_a_teacher_records_it_and_a_bad_teacher_is_one_line(tiny_data, tmp_path):
    from hairseg_edge.training import archs

    teacher = tmp_path / "teacher.keras"
    archs.build_model("mobile_unet", 32, 0.25).save(teacher)
    out = tmp_path / "run"
    result = CliRunner().invoke(app, _train_args(tiny_data, out, 1, ["--teacher", str(teacher),
                                                                      "--distill-weight", "0.3"]))
    assert result.exit_code == 0, result.output
    options = json.loads((out / "train_options.json").read_text())
    assert options["teacher"] == str(teacher) and options["distill_weight"] == 0.3

    broken = tmp_path / "broken.keras"
    broken.write_text("not a model")
    result = CliRunner().invoke(app, _train_args(tiny_data, tmp_path / "run2", 1, ["--teacher", str(broken)]))
    assert result.exit_code == 2
    assert "--teacher: cannot load the model" in result.output and str(broken) in result.output
    assert "Traceback" not in result.output
    result = CliRunner().invoke(app, _train_args(tiny_data, tmp_path / "run3", 1,
                                                 ["--teacher", str(teacher), "--img-size", "64"]))
    assert result.exit_code == 2
    assert "--teacher: does not take a 64 px input" in result.output and "Traceback" not in result.output


def test_a_teacher_trained_at_another_size_is_rebuilt_from_its_run(tiny_data, tmp_path):
    """A teacher saved at 32 px teaches a 64 px student: its run's train_options.json names the
    architecture, rebuilt at 64 px with the teacher's weights (the large tier's graph is fixed to 256 px)."""
    import numpy as np

    from hairseg_edge.training import archs
    from hairseg_edge.training.distill import load_teacher

    run = tmp_path / "teacher-run"
    assert CliRunner().invoke(app, _train_args(tiny_data, run, 1)).exit_code == 0
    saved = keras_load(run / "model.keras")
    teacher = load_teacher(run / "model.keras", 64)
    assert teacher.input_shape == (None, 64, 64, 3) and not teacher.trainable
    for a, b in zip(saved.get_weights(), teacher.get_weights()):
        np.testing.assert_array_equal(a, b)
    reference = archs.build_model("mobile_unet", 64, 0.25)
    reference.set_weights(saved.get_weights())
    images = np.random.default_rng(0).random((2, 64, 64, 3)).astype("float32") * 255
    np.testing.assert_allclose(teacher(images, training=False), reference(images, training=False), atol=1e-5)
    result = CliRunner().invoke(app, _train_args(tiny_data, tmp_path / "student", 1,
                                                 ["--teacher", str(run / "model.keras"), "--img-size", "64"]))
    assert result.exit_code == 0, result.output


def keras_load(path):
    from hairseg_edge.training.keras_compat import keras

    return keras.models.load_model(path, compile=False, safe_mode=True)


def test_resume_continues_to_the_total_epochs(tiny_data, tmp_path):
    out = tmp_path / "run"
    assert CliRunner().invoke(app, _train_args(tiny_data, out, 1)).exit_code == 0
    result = CliRunner().invoke(app, _train_args(tiny_data, out, 3, ["--resume"]))
    assert result.exit_code == 0, result.output
    history = json.loads((out / "history.json").read_text())
    assert [row["epoch"] for row in history] == [1, 2, 3]
    checkpoints = sorted(out.glob("checkpoint-epoch-*.keras"))
    assert [p.name for p in checkpoints] == ["checkpoint-epoch-0003.keras"]
    assert not list(out.glob(".*tmp*"))  # no temporary files left behind


def test_init_from_copies_the_weights_at_another_input_size(tiny_data, tmp_path):
    """Fine-tuning: a model trained at 32 px seeds a run at 64 px (weights do not depend on the size)."""
    first = tmp_path / "first"
    assert CliRunner().invoke(app, _train_args(tiny_data, first, 1)).exit_code == 0

    from hairseg_edge.training import archs
    from hairseg_edge.training.keras_compat import keras
    from hairseg_edge.training.runfolder import init_weights_from

    source = keras.models.load_model(first / "model.keras", safe_mode=True, compile=False)
    bigger = archs.build_model("mobile_unet", 64, 0.25)
    init_weights_from(bigger, first / "model.keras")
    assert bigger.input_shape[1:3] == (64, 64)
    for a, b in zip(source.get_weights(), bigger.get_weights()):
        np.testing.assert_array_equal(a, b)

    tuned = tmp_path / "tuned"
    result = CliRunner().invoke(app, _train_args(tiny_data, tuned, 1, [
        "--img-size", "64", "--init-from", str(first / "model.keras")]))
    assert result.exit_code == 0, result.output
    options = json.loads((tuned / "train_options.json").read_text())
    assert options["init_from"] == str(first / "model.keras")  # recorded: the run can be reproduced
    # ... with the digest of the exact file it started from, which a later model at that path will not have.
    from hairseg_edge.imageio import file_sha256

    assert options["init_from_sha256"] == file_sha256(first / "model.keras")


@pytest.mark.parametrize("init, message", [
    ("default", "do not fit"),  # the bundled model is another architecture than this run's mobile_unet
    ("{missing}", "no such model file"),
    ("{not_a_model}", "not a readable Keras model"),
])
def test_bad_init_from_is_one_line_exit_2(tiny_data, tmp_path, init, message):
    junk = tmp_path / "junk.keras"
    junk.write_bytes(b"not a zip")
    init = init.replace("{missing}", str(tmp_path / "nope.keras")).replace("{not_a_model}", str(junk))
    result = CliRunner().invoke(app, _train_args(tiny_data, tmp_path / "o", 1, ["--init-from", init]))
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "o" / "model.keras").exists()


def test_resume_without_a_run_is_one_line_exit_2(tiny_data, tmp_path):
    result = CliRunner().invoke(app, _train_args(tiny_data, tmp_path / "empty", 1, ["--resume"]))
    assert result.exit_code == 2
    assert "nothing to resume" in result.output


def test_kill_9_mid_training_then_resume_loses_no_finished_epoch(tiny_data, tmp_path):
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "hairseg_edge", *_train_args(tiny_data, out, 6)]
    proc = subprocess.Popen(cmd, env=_subprocess_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 180
    try:
        while time.time() < deadline:
            state = out / "state.json"
            if state.exists() and json.loads(state.read_text())["epoch"] >= 1:  # two epochs done
                break
            assert proc.poll() is None, "training ended before it could be killed"
            time.sleep(0.2)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    done = json.loads((out / "state.json").read_text())["epoch"] + 1
    assert 2 <= done < 6
    result = CliRunner().invoke(app, _train_args(tiny_data, out, 6, ["--resume"]))
    assert result.exit_code == 0, result.output
    history = json.loads((out / "history.json").read_text())
    assert [row["epoch"] for row in history] == list(range(1, 7))


# --- CLI -------------------------------------------------------------------------------------------------
def test_list_archs_reports_params_and_macs():
    result = CliRunner().invoke(app, ["train", "--list-archs", "--img-size", "64"])
    assert result.exit_code == 0, result.output
    for name in ("custom_cnn", "unet", "deeplabv3", "mobile_unet", "fused_unet"):
        assert name in result.output
    assert "MACs" in result.output


@pytest.mark.parametrize("args, message", [
    (["--data", "/no/such/folder"], "no such folder"),
    (["--data", "{data}", "--arch", "resnet"], "unknown architecture"),
    (["--data", "{data}", "--img-size", "50"], "multiple of 32"),
    (["--data", "{data}", "--epochs", "0"], "--epochs"),
    (["--data", "{data}", "--augment", "heavy"], "unknown --augment 'heavy'"),
    (["--data", "{data}", "--keep", "worst"], "unknown --keep 'worst'"),
    ([], "--data"),
])
def test_bad_train_arguments_are_one_line_exit_2(tiny_data, tmp_path, args, message):
    args = [a.replace("{data}", str(tiny_data)) for a in args]
    result = CliRunner().invoke(app, ["train", *args, "--out", str(tmp_path / "o")])
    assert result.exit_code == 2
    assert message in result.output
    assert "Traceback" not in result.output


def test_train_without_the_train_extra_says_what_to_install(tmp_path):
    """A core-only install: TensorFlow missing -> one line naming hairseg-edge[train], exit 2."""
    blocker = tmp_path / "block"
    blocker.mkdir()
    (blocker / "sitecustomize.py").write_text(textwrap.dedent("""
        import importlib.abc, sys
        class _Block(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in ("tensorflow", "tf_keras", "tensorflow_model_optimization"):
                    raise ModuleNotFoundError(name)
                return None
        sys.meta_path.insert(0, _Block())
    """))
    env = _subprocess_env()
    env["PYTHONPATH"] = os.pathsep.join([str(blocker), env["PYTHONPATH"]])
    proc = subprocess.run([sys.executable, "-m", "hairseg_edge", "train", "--data", str(tmp_path)],
                          env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "hairseg-edge[train]" in lines[0], proc.stderr


def test_crops_augmentation_takes_detail_away_but_not_the_mask():
    """--augment crops is light plus 30% of photos shrunk to 0.25-0.6x and enlarged back: those lose
    fine detail (the high-frequency energy drops) while the mask is the one light gives; a preset with
    reenlarge_prob 0 draws nothing for it (light's random streams are unchanged)."""
    import cv2

    from hairseg_edge.synth import render_sample
    from hairseg_edge.training.pipeline import AUGMENT_PRESETS, augment

    rgb, mask = render_sample(np.random.default_rng(0), 128, 128)
    no_photometric = dataclasses.replace(AUGMENT_PRESETS["light"], color_jitter=0.0, hue_shift_deg=0.0,
                                         gray_prob=0.0, blur_prob=0.0, noise_prob=0.0, jpeg_prob=0.0)
    always = dataclasses.replace(no_photometric, reenlarge_prob=1.0)

    def detail(img):
        return float(np.abs(cv2.Laplacian(cv2.cvtColor(img, cv2.COLOR_RGB2GRAY), cv2.CV_32F)).mean())

    softer = 0
    for k in range(20):
        plain_img, plain_mask = augment(rgb, mask, np.random.default_rng([3, k]), no_photometric)
        img, m = augment(rgb, mask, np.random.default_rng([3, k]), always)
        np.testing.assert_array_equal(m, plain_mask)
        softer += detail(img) < 0.8 * detail(plain_img)
    assert softer >= 18
    crops = AUGMENT_PRESETS["crops"]
    assert crops.reenlarge_prob == 0.3 and dataclasses.replace(crops, reenlarge_prob=0.0) == AUGMENT_PRESETS["light"]


# --- learning, mixed precision -------------------------------------------------------------------------------
def test_validation_iou_rises_well_above_its_first_epoch(tmp_path):
    """The loop learns: on generated faces the validation IoU (inference mode) climbs from about 0 after
    the first epoch to about 0.5 after twelve (measured 0.0 -> 0.49); a broken loss, target, schedule or
    BatchNorm mode leaves it near its start."""
    from hairseg_edge.training.train import TrainOptions, Trainer

    data = make_dataset(tmp_path / "data", n=96, size=[(64, 64)], seed=5)
    options = TrainOptions(data=(str(data),), out=str(tmp_path / "run"), arch="mobile_unet", img_size=64,
                           width=0.35, epochs=12, batch=8, augment="none", lr=0.005, val_fraction=0.2,
                           patience=99)
    history = Trainer(options).run().history
    ious = [row["val_iou"] for row in history]
    assert len(ious) == 12
    assert max(ious[-3:]) >= ious[0] + 0.25 and max(ious[-3:]) >= 0.3, ious
    assert history[-1]["loss"] < 0.6 * history[0]["loss"], [row["loss"] for row in history]


def test_mixed_precision_on_trains_in_float16_and_saves_float32(tiny_data, tmp_path):
    """--mixed-precision on, for real on the CPU (TensorFlow runs float16 compute there, slowly): the
    training model computes in float16 with float32 weights and a loss-scaling optimizer; model.keras
    and the checkpoint load back; model.keras is the float32 inference copy export expects."""
    from hairseg_edge.training.keras_compat import keras
    from hairseg_edge.training.train import TrainOptions, Trainer

    out = tmp_path / "run"
    options = TrainOptions(data=(str(tiny_data),), out=str(out), arch="mobile_unet", img_size=32, width=0.25,
                           epochs=1, batch=4, steps_per_epoch=3, mixed_precision="on", strategy="default")
    try:
        trainer = Trainer(options)
        result = trainer.run()
        assert keras.mixed_precision.global_policy().name == "mixed_float16"
        conv = next(layer for layer in trainer.model.layers if isinstance(layer, keras.layers.Conv2D))
        assert conv.compute_dtype == "float16" and conv.variable_dtype == "float32"
        assert isinstance(trainer.model.optimizer, keras.mixed_precision.LossScaleOptimizer)
        assert np.isfinite(result.history[0]["loss"])
    finally:
        keras.mixed_precision.set_global_policy("float32")
    saved = keras.models.load_model(out / "model.keras", safe_mode=True, compile=False)
    assert all(layer.compute_dtype == "float32" for layer in saved.layers if layer.weights)
    probability = saved(np.zeros((1, 32, 32, 3), np.float32), training=False)
    assert probability.dtype == "float32"


def test_losses_and_target_modes_are_chosen_by_registered_name(tiny_data, tmp_path):
    """The seams a study uses instead of patching: a registered loss trains, a registered target mode
    shapes the targets, the default stays the contract's letterbox, and unknown names are one line."""
    from hairseg_edge import contract
    from hairseg_edge.errors import InputError
    from hairseg_edge.training import losses, pipeline
    from hairseg_edge.training.keras_compat import keras
    from hairseg_edge.training.train import TrainOptions, Trainer

    mask = np.zeros((50, 70), np.uint8)
    mask[10:30, 5:41] = 1
    image = np.zeros((50, 70, 3), np.uint8)
    assert np.array_equal(pipeline.prepare_pair(image, mask, 32)[1][..., 0], contract.letterbox_mask(mask, 32))
    pipeline.register_target_mode("inverted", pipeline.TargetMode(
        letterbox=lambda m, size: 1.0 - contract.letterbox_mask(m, size), shrink=pipeline.TARGET_MODES[
            "nearest"].shrink))
    calls = []

    def bce_only(dice_weight: float) -> keras.losses.Loss:
        calls.append(dice_weight)
        return keras.losses.BinaryCrossentropy()

    losses.register_loss("bce_only_for_test", bce_only)
    try:
        inverted = pipeline.prepare_pair(image, mask, 32, "inverted")[1][..., 0]
        assert np.array_equal(inverted, 1.0 - contract.letterbox_mask(mask, 32))
        options = TrainOptions(data=(str(tiny_data),), out=str(tmp_path / "run"), arch="mobile_unet",
                               img_size=32, width=0.25, epochs=1, batch=4, steps_per_epoch=2,
                               loss="bce_only_for_test", targets="inverted", dice_weight=0.5)
        trainer = Trainer(options)
        trainer.run()
        assert calls == [0.5] and isinstance(trainer.model.loss, keras.losses.BinaryCrossentropy)
        recorded = json.loads((tmp_path / "run" / "train_options.json").read_text())
        assert recorded["loss"] == "bce_only_for_test" and recorded["targets"] == "inverted"
    finally:
        losses.LOSSES.pop("bce_only_for_test")
        pipeline.TARGET_MODES.pop("inverted")
    with pytest.raises(InputError, match="unknown loss 'nope'; choose from bce_dice"):
        TrainOptions(data=(str(tiny_data),), loss="nope")
    with pytest.raises(InputError, match="unknown target mode"):
        TrainOptions(data=(str(tiny_data),), targets="nope")
