"""Device runtime: metadata read/write, backends, dtype paths, the contract check, bad models.

The tiny models (``tiny_tflite`` fixture, see tests/tiny_tflite_models.py) compute
``hair probability = sigmoid(10 * R / 255 - 5)``, so every expected output is known exactly.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import cv2
import numpy as np
import pytest

from hairseg_edge import tflite_meta
from hairseg_edge.adapters import TensorSpec, adapter_names
from hairseg_edge.contract import METADATA_NAME, Contract, quantized_threshold
from hairseg_edge.errors import InputError
from hairseg_edge.runtime import (
    BackendUnavailable,
    Segmentation,
    Segmenter,
    dequantize_output,
    find_backend,
    quantize_input,
)

REPO = Path(__file__).resolve().parents[1]


def expected_probability(red: float) -> float:
    return float(1.0 / (1.0 + np.exp(-(10.0 * red / 255.0 - 5.0))))


def half_red_image(height: int = 48, width: int = 80) -> np.ndarray:
    """Left half pure red (hair for the tiny models), right half dark grey (not hair)."""
    img = np.full((height, width, 3), 30, np.uint8)
    img[:, : width // 2] = (255, 0, 0)
    return img


def litert_outputs(model_bytes: bytes, inputs: np.ndarray) -> list[np.ndarray]:
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_content=model_bytes, num_threads=1)
    it.allocate_tensors()
    it.set_tensor(it.get_input_details()[0]["index"], inputs)
    it.invoke()
    return [it.get_tensor(d["index"]).copy() for d in it.get_output_details()]


# --------------------------------------------------------------------------------------------------
# tflite_meta
# --------------------------------------------------------------------------------------------------


def test_converted_model_metadata_is_readable(tiny_tflite):
    entries = tflite_meta.read_metadata(tiny_tflite["float32"])
    assert "min_runtime_version" in entries  # every converter writes it
    assert METADATA_NAME not in entries


@pytest.mark.parametrize("kind", ["float32", "uint8"])
def test_with_metadata_keeps_the_model_computing_identically(tiny_tflite, kind):
    original = tiny_tflite[kind].read_bytes()
    changed = tflite_meta.with_metadata(original, {"a": b"first", "b": b"\x00\x01" * 300})
    changed = tflite_meta.embed_contract(changed, Contract(input_size=32))
    entries = tflite_meta.read_metadata(changed)
    assert entries["a"] == b"first" and entries["b"] == b"\x00\x01" * 300
    assert entries["min_runtime_version"] == tflite_meta.read_metadata(original)["min_runtime_version"]
    dtype = np.uint8 if kind == "uint8" else np.float32
    x = np.random.default_rng(1).integers(0, 256, (1, 32, 32, 3)).astype(dtype)
    for before, after in zip(litert_outputs(original, x), litert_outputs(changed, x)):
        np.testing.assert_array_equal(before, after)


def test_with_metadata_replaces_same_name_without_growing(tiny_tflite):
    data = tiny_tflite["float32"].read_bytes()
    once = tflite_meta.with_metadata(data, {"note": b"x" * 1000})
    twice = tflite_meta.with_metadata(once, {"note": b"y" * 1000})
    entries = tflite_meta.read_metadata(twice)
    assert entries["note"] == b"y" * 1000
    assert list(entries).count("note") == 1
    # the old payload's buffer was reused, not left behind as a second copy
    assert len(twice) < len(once) + 200
    assert b"x" * 1000 not in twice


def test_contract_round_trip_through_metadata(tiny_tflite, tmp_path):
    contract = Contract(input_size=32, threshold=0.4)
    path = tmp_path / "with_contract.tflite"
    path.write_bytes(tflite_meta.embed_contract(tiny_tflite["uint8"].read_bytes(), contract))
    assert tflite_meta.read_contract(path) == contract
    assert tflite_meta.read_contract(tiny_tflite["uint8"]) is None
    stored = json.loads(tflite_meta.read_metadata(path)[METADATA_NAME])
    assert stored == contract.to_dict()


def test_metadata_payloads_are_16_byte_aligned(tiny_tflite):
    data = tflite_meta.with_metadata(tiny_tflite["float32"].read_bytes(), {"odd": b"123"})
    from ai_edge_litert import schema_py_generated as schema

    model = schema.Model.GetRootAs(data, 0)
    base = np.frombuffer(data, np.uint8).ctypes.data
    for i in range(model.MetadataLength()):
        buf = model.Buffers(model.Metadata(i).Buffer())
        if not buf.DataIsNone():
            assert (buf.DataAsNumpy().ctypes.data - base) % 16 == 0


def test_appended_associated_files_survive(tiny_tflite):
    data = tiny_tflite["float32"].read_bytes()
    stream = io.BytesIO(data)
    with zipfile.ZipFile(stream, "a") as archive:  # how MediaPipe models carry labels.txt
        archive.writestr("labels.txt", "background\nhair\n")
    packaged = stream.getvalue()
    changed = tflite_meta.embed_contract(packaged, Contract(input_size=32))
    with zipfile.ZipFile(io.BytesIO(changed)) as archive:
        assert archive.read("labels.txt") == b"background\nhair\n"
    assert tflite_meta.read_contract(changed) == Contract(input_size=32)
    x = np.zeros((1, 32, 32, 3), np.float32)
    np.testing.assert_array_equal(litert_outputs(data, x)[0], litert_outputs(changed, x)[0])


def test_bad_contract_entry_is_an_input_error(tiny_tflite, tmp_path):
    path = tmp_path / "bad_contract.tflite"
    path.write_bytes(tflite_meta.with_metadata(tiny_tflite["float32"].read_bytes(),
                                               {METADATA_NAME: b"{not json"}))
    with pytest.raises(InputError, match="not a valid contract"):
        tflite_meta.read_contract(path)
    with pytest.raises(InputError, match="not a valid contract"):
        Segmenter(path)


def test_metadata_of_non_models_is_an_input_error(tmp_path):
    text = tmp_path / "notes.tflite"
    text.write_text("this is not a model\n")
    with pytest.raises(InputError, match="TFL3"):
        tflite_meta.read_metadata(text)
    with pytest.raises(InputError, match="TFL3"):
        tflite_meta.with_metadata(b"\x00" * 64, {"a": b"b"})
    with pytest.raises(InputError, match="no such file"):
        tflite_meta.read_metadata(tmp_path / "missing.tflite")


# --------------------------------------------------------------------------------------------------
# Backends
# --------------------------------------------------------------------------------------------------


def test_litert_is_the_default_backend(tiny_tflite):
    assert find_backend().name == "ai_edge_litert"
    with Segmenter(tiny_tflite["float32"]) as seg:
        assert seg.backend_name == "ai_edge_litert"


def _python(code: str, **env: str) -> subprocess.CompletedProcess:
    import os

    environ = dict(os.environ, PYTHONPATH=str(REPO), **env)
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                          text=True, env=environ, timeout=300, check=False)


@pytest.mark.train
def test_tensorflow_is_the_last_resort_backend(tiny_tflite):
    """With LiteRT and tflite_runtime unavailable the runtime falls back to tf.lite and agrees."""
    proc = _python(f"""
        import sys
        for name in ("ai_edge_litert", "ai_edge_litert.interpreter", "tflite_runtime",
                     "tflite_runtime.interpreter"):
            sys.modules[name] = None  # makes the import fail, as on a machine without them
        import numpy as np
        from hairseg_edge.runtime import Segmenter
        img = np.zeros((40, 40, 3), np.uint8); img[:, :20, 0] = 255
        with Segmenter({str(tiny_tflite["uint8"])!r}) as seg:
            p = seg.segment(img).probability
            print(seg.backend_name, float(p[20, 5]), float(p[20, 35]))
    """)
    assert proc.returncode == 0, proc.stderr
    backend, hair, background = proc.stdout.split()
    assert backend == "tensorflow"
    with Segmenter(tiny_tflite["uint8"]) as seg:
        img = np.zeros((40, 40, 3), np.uint8)
        img[:, :20, 0] = 255
        p = seg.segment(img).probability
    assert float(hair) == pytest.approx(float(p[20, 5]), abs=1e-6)
    assert float(background) == pytest.approx(float(p[20, 35]), abs=1e-6)


def test_no_backend_at_all_is_one_clear_error():
    proc = _python("""
        import sys
        for name in ("ai_edge_litert", "ai_edge_litert.interpreter", "tflite_runtime",
                     "tflite_runtime.interpreter", "tensorflow"):
            sys.modules[name] = None
        from hairseg_edge.runtime import find_backend, BackendUnavailable
        try:
            find_backend()
        except BackendUnavailable as exc:
            print(exc.exit_code, exc)
    """)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("2 no TFLite interpreter could be imported (pip install ai-edge-litert)")
    assert "tflite_runtime" in proc.stdout and "tensorflow" in proc.stdout


def test_unknown_backend_name_is_an_input_error(tiny_tflite):
    with pytest.raises(InputError, match="unknown backend"):
        Segmenter(tiny_tflite["float32"], backend="onnxruntime")
    assert issubclass(BackendUnavailable, Exception)


def test_device_modules_never_import_tensorflow(tiny_tflite):
    proc = _python(f"""
        import sys
        import numpy as np
        import hairseg_edge.runtime, hairseg_edge.bench, hairseg_edge.inspect, hairseg_edge.cli
        from hairseg_edge.runtime import Segmenter
        from hairseg_edge.inspect import inspect_model
        with Segmenter({str(tiny_tflite["uint8"])!r}) as seg:
            seg.segment(np.zeros((20, 30, 3), np.uint8))
        inspect_model({str(tiny_tflite["uint8"])!r})
        assert "tensorflow" not in sys.modules, "tensorflow was imported"
        print("clean")
    """)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "clean"


# --------------------------------------------------------------------------------------------------
# dtype paths
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind,dtype,tolerance", [("float32", np.float32, 1e-5),
                                                  ("uint8", np.uint8, 0.02),
                                                  ("int8", np.int8, 0.02)])
def test_each_input_dtype_segments_exactly_as_predicted(tiny_tflite, kind, dtype, tolerance):
    with Segmenter(tiny_tflite[kind], threads=2) as seg:
        assert seg.input_dtype == np.dtype(dtype)
        assert seg.adapter_name == "hairseg"
        assert seg.input_size == 32 and seg.input_hw == (32, 32)
        assert seg.contract is None
        img = half_red_image()  # 48x80: letterboxed to 32x32 with bands above and below
        result = seg.segment(img)
    assert isinstance(result, Segmentation)
    assert result.probability.shape == (48, 80) and result.probability.dtype == np.float32
    assert result.mask.shape == (48, 80) and result.mask.dtype == bool
    inside_red, inside_dark = result.probability[:, :36], result.probability[:, 44:]
    assert np.abs(inside_red - expected_probability(255)).max() < tolerance
    assert np.abs(inside_dark - expected_probability(30)).max() < tolerance
    assert result.mask[:, :38].all() and not result.mask[:, 42:].any()


def test_quantized_models_agree_with_the_float_model(tiny_tflite):
    rng = np.random.default_rng(3)
    img = rng.integers(0, 256, (57, 91, 3)).astype(np.uint8)
    with Segmenter(tiny_tflite["float32"]) as ref:
        expected = ref.segment(img)
    for kind in ("uint8", "int8"):
        with Segmenter(tiny_tflite[kind]) as seg:
            got = seg.segment(img)
        assert np.abs(got.probability - expected.probability).max() < 0.03
        agreement = (got.mask == expected.mask).mean()
        assert agreement > 0.97, (kind, agreement)


@pytest.mark.parametrize("kind", ["uint8", "int8"])
def test_a_quantized_map_is_finished_in_integers_as_the_float_path_would(tiny_tflite, kind):
    rng = np.random.default_rng(11)
    img = cv2.GaussianBlur(rng.integers(0, 256, (57, 91, 3), dtype=np.uint8), (0, 0), 3)
    img[..., 0] = np.linspace(60, 200, 91, dtype=np.uint8)[None, :]  # crosses 0.5 along x
    with Segmenter(tiny_tflite[kind]) as seg:
        step = seg.outputs[0].scale
        model_image, box = seg.prepare(img)
        got = seg.segment(img)
        via_floats = seg.postprocess(seg.predict_input(model_image), box)
    assert got.integers is not None and got.integers.dtype == np.dtype(kind)
    assert got.probability.shape == (57, 91) and got.probability.dtype == np.float32
    np.testing.assert_array_equal(got.mask, got.probability > seg.threshold)
    # Rounded to the nearest step after resizing: at most half a step from the float path.
    assert np.abs(got.probability - via_floats.probability).max() <= step / 2 + 1e-6
    differ = got.mask != via_floats.mask
    assert differ.mean() < 0.01
    assert (np.abs(via_floats.probability[differ] - seg.threshold) <= step / 2 + 1e-6).all()
    assert got.mask.any() and not got.mask.all()


@pytest.mark.parametrize("kind", ["float32", "uint8", "int8"])
def test_flip_tta_mirrors_back_what_it_mirrored(tiny_tflite, kind):
    # The tiny models are per-pixel functions, so the mirrored pass, mirrored back, equals the plain
    # pass exactly; forgetting to mirror back would swap the red (hair) and dark halves.
    img = half_red_image(48, 80)
    img[:, :10] = (120, 40, 40)  # not symmetric either way
    with Segmenter(tiny_tflite[kind]) as plain, Segmenter(tiny_tflite[kind], flip_tta=True) as tta:
        assert tta.flip_tta and "flip_tta=True" in repr(tta)
        expected, got = plain.segment(img), tta.segment(img)
    np.testing.assert_array_equal(got.mask, expected.mask)
    np.testing.assert_array_equal(got.probability, expected.probability)


@pytest.mark.parametrize("dtype", ["uint8", "int8"])
def test_the_integer_mean_with_the_mirror_keeps_the_exact_mean_threshold(dtype):
    from hairseg_edge.runtime import mean_with_mirror

    info = np.iinfo(dtype)
    values = np.arange(info.min, info.max + 1)
    a, b = (m.astype(dtype)[None, :, :, None] for m in np.meshgrid(values, values, indexing="ij"))
    mean = mean_with_mirror(a, b[:, :, ::-1])  # b is mirrored back inside: pass it mirrored
    assert mean.dtype == np.dtype(dtype)
    exact = (a.astype(np.int32) + b) / 2
    for q0 in (info.min, -1, 0, 64, 127, 128, info.max - 1):
        np.testing.assert_array_equal(mean > q0, exact > q0)
    assert np.abs(mean - exact).max() <= 0.5


def test_a_float_model_is_finished_in_floats(tiny_tflite):
    with Segmenter(tiny_tflite["float32"]) as seg:
        result = seg.segment(half_red_image())
    assert result.integers is None
    np.testing.assert_array_equal(result.mask, result.probability > seg.threshold)


@pytest.mark.parametrize(("dtype", "scale", "zero_point", "threshold"), [
    ("uint8", 1 / 256, 0, 0.5), ("int8", 1 / 256, -128, 0.5), ("uint8", 1 / 255, 0, 0.5),
    ("uint8", 0.0123, 7, 0.37), ("int8", 0.02, 3, 0.61)])
def test_quantized_threshold_is_the_real_comparison_for_every_integer(dtype, scale, zero_point, threshold):
    info = np.iinfo(dtype)
    q = np.arange(info.min, info.max + 1)
    q0 = quantized_threshold(threshold, scale, zero_point)
    np.testing.assert_array_equal(q > q0, (q - zero_point) * scale > threshold)


def test_a_segmentation_needs_a_mask_and_one_map():
    mask = np.zeros((2, 2), bool)
    with pytest.raises(ValueError):
        Segmentation(mask=mask)
    with pytest.raises(ValueError):
        Segmentation(probability=np.zeros((2, 2), np.float32), mask=mask,
                     integers=np.zeros((2, 2), np.uint8))
    lazy = Segmentation(mask=mask, integers=np.array([[0, 128], [255, 64]], np.uint8), scale=1 / 256)
    np.testing.assert_allclose(lazy.probability, [[0, 0.5], [255 / 256, 0.25]])
    assert lazy.probability is lazy.probability  # converted once


def test_predict_input_takes_the_prepared_image(tiny_tflite):
    with Segmenter(tiny_tflite["uint8"]) as seg:
        model_image, box = seg.prepare(half_red_image(64, 64))
        assert model_image.shape == (32, 32, 3) and model_image.dtype == np.uint8
        prob = seg.predict_input(model_image)
        assert prob.shape == (32, 32) and prob.dtype == np.float32
        assert prob[:, :15].min() > 0.98 and prob[:, 17:].max() < 0.05
        full = seg.postprocess(prob, box)
        assert full.probability.shape == (64, 64)
        np.testing.assert_array_equal(full.mask, seg.segment(half_red_image(64, 64)).mask)
        with pytest.raises(InputError, match="must be 32x32"):
            seg.predict_input(np.zeros((16, 16, 3), np.uint8))


def test_quantize_input_uses_the_models_parameters():
    raw = np.array([0, 1, 128, 255], np.uint8)
    uint8_identity = TensorSpec("x", 0, (4,), "uint8", scale=1.0, zero_point=0)
    assert quantize_input(raw, uint8_identity) is raw  # camera pixels go in untouched
    int8 = TensorSpec("x", 0, (4,), "int8", scale=1.0, zero_point=-128)
    np.testing.assert_array_equal(quantize_input(raw, int8), [-128, -127, 0, 127])
    scaled = TensorSpec("x", 0, (4,), "uint8", scale=2.0, zero_point=10)
    np.testing.assert_array_equal(quantize_input(raw, scaled), [10, 10, 74, 138])
    as_float = quantize_input(raw, TensorSpec("x", 0, (4,), "float32"))
    assert as_float.dtype == np.float32
    np.testing.assert_array_equal(as_float, [0.0, 1.0, 128.0, 255.0])  # Rescaling is in the model
    out = TensorSpec("y", 1, (3,), "int8", scale=1 / 256, zero_point=-128)
    np.testing.assert_allclose(dequantize_output(np.array([-128, 0, 127], np.int8), out),
                               [0.0, 0.5, 255 / 256])
    ids = np.array([17, 3], np.int64)
    assert dequantize_output(ids, TensorSpec("y", 1, (2,), "int64")) is ids


def test_any_image_shape_and_channels(tiny_tflite):
    with Segmenter(tiny_tflite["uint8"]) as seg:
        for shape in [(1, 1, 3), (7, 300, 3), (300, 7, 3), (33, 33), (20, 24, 4)]:
            img = np.full(shape, 200, np.uint8)
            result = seg.segment(img)
            assert result.probability.shape == shape[:2]


def test_load_is_quiet_on_stderr(tiny_tflite, capfd):
    with Segmenter(tiny_tflite["float32"]) as seg:
        seg.segment(half_red_image())
    captured = capfd.readouterr()
    assert "XNNPACK" not in captured.err
    assert captured.err == ""


def test_close_releases_the_interpreter(tiny_tflite):
    seg = Segmenter(tiny_tflite["float32"])
    with seg:
        seg.segment(half_red_image())
    with pytest.raises(ValueError, match="closed"):
        seg.segment(half_red_image())
    assert "tiny_float32.tflite" in repr(seg)


# --------------------------------------------------------------------------------------------------
# The embedded contract
# --------------------------------------------------------------------------------------------------


def _with_contract(tmp_path: Path, source: Path, contract_fields: dict) -> Path:
    path = tmp_path / f"contract_{len(list(tmp_path.iterdir()))}.tflite"
    payload = json.dumps(contract_fields).encode()
    path.write_bytes(tflite_meta.with_metadata(source.read_bytes(), {METADATA_NAME: payload}))
    return path


def test_embedded_contract_is_read_and_used(tiny_tflite, tmp_path):
    path = _with_contract(tmp_path, tiny_tflite["uint8"], Contract(input_size=32, threshold=0.99).to_dict())
    with Segmenter(path) as seg:
        assert seg.contract == Contract(input_size=32, threshold=0.99)
        assert seg.adapter_name == "hairseg"
        result = seg.segment(half_red_image())
    # sigmoid(5) = 0.9933 > 0.99 only where the contract's own threshold says so
    assert result.mask[:, :38].all()
    assert (result.probability[:, :36] > 0.99).all()


def test_incompatible_contracts_are_refused(tiny_tflite, tmp_path):
    newer = dict(Contract(input_size=32).to_dict(), version=99)
    with pytest.raises(InputError, match=r"contract v99"):
        Segmenter(_with_contract(tmp_path, tiny_tflite["float32"], newer))
    bgr = dict(Contract(input_size=32).to_dict(), color_order="BGR")
    with pytest.raises(InputError, match="color_order"):
        Segmenter(_with_contract(tmp_path, tiny_tflite["float32"], bgr))
    wrong_size = Contract(input_size=64).to_dict()
    with pytest.raises(InputError, match="input size 64"):
        Segmenter(_with_contract(tmp_path, tiny_tflite["float32"], wrong_size))


# --------------------------------------------------------------------------------------------------
# Bad models and bad adapters
# --------------------------------------------------------------------------------------------------


def test_bad_model_files_are_input_errors_naming_the_file(tiny_tflite, tmp_path):
    text = tmp_path / "readme.tflite"
    text.write_text("hello, I am not a model\n")
    empty = tmp_path / "empty.tflite"
    empty.write_bytes(b"")
    data = tiny_tflite["float32"].read_bytes()
    truncated = tmp_path / "truncated.tflite"
    truncated.write_bytes(data[: len(data) // 2])
    cases = {
        text: "no 'TFL3' file identifier",
        empty: "empty file",
        truncated: "truncated",
        tmp_path / "missing.tflite": "no such file",
        tmp_path: "is a folder",
    }
    for path, reason in cases.items():
        with pytest.raises(InputError) as info:
            Segmenter(path)
        message = str(info.value)
        assert message.startswith(f"{path}: "), message
        assert reason in message, message
        assert "\n" not in message


@pytest.mark.parametrize("cut", [0.1, 0.5, 0.9, 0.99])
def test_truncated_models_never_crash(tiny_tflite, tmp_path, cut):
    data = tiny_tflite["uint8"].read_bytes()
    path = tmp_path / "cut.tflite"
    path.write_bytes(data[: int(len(data) * cut)])
    with pytest.raises(InputError, match=str(path)):
        Segmenter(path)


def test_models_whose_output_is_not_a_hair_map(tiny_tflite):
    with pytest.raises(InputError, match="not a hair segmentation model.*expected 1 output") as info:
        Segmenter(tiny_tflite["classifier"])
    assert str(info.value).startswith(str(tiny_tflite["classifier"]))
    with pytest.raises(InputError, match=r"output \[1, 16, 16, 1\] is not a hair map"):
        Segmenter(tiny_tflite["halfres"])


def test_adapters_by_name(tiny_tflite):
    assert adapter_names() == ["hairseg", "mediapipe-hair", "bisenetv2-celebamask", "community-mobile"]
    with pytest.raises(InputError, match="unknown adapter 'deeplab'; choose one of: hairseg, "
                                         "mediapipe-hair, bisenetv2-celebamask, community-mobile"):
        Segmenter(tiny_tflite["float32"], adapter="deeplab")
    with pytest.raises(InputError, match="does not fit the 'mediapipe-hair' adapter"):
        Segmenter(tiny_tflite["float32"], adapter="mediapipe-hair")
    with Segmenter(tiny_tflite["float32"], adapter="hairseg") as seg:
        assert seg.adapter_name == "hairseg"


def test_threads_must_be_positive(tiny_tflite):
    for bad in (0, -1, 1.5):
        with pytest.raises(InputError, match="threads"):
            Segmenter(tiny_tflite["float32"], threads=bad)
