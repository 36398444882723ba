"""``hairseg-edge package``: MediaPipe Tasks metadata on hairseg models.

Two groups:

* checks that need no MediaPipe (model I/O rules, the zip of associated files, the missing-extra
  message) run in the dev environment;
* checks that need MediaPipe (the metadata itself, verification in ImageSegmenter) skip there: the
  [mobile] extra can never share an environment with the [train] extra (absl-py pins), so
  tests/test_mobile_venv.py runs this file again inside ``.venv-mobile`` and requires them to pass.
"""

from __future__ import annotations

import importlib.util
import json
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from hairseg_edge import mediapipe_meta
from hairseg_edge.contract import METADATA_NAME
from hairseg_edge.errors import CheckFailed, InputError, MissingExtraError
from hairseg_edge.tflite_meta import MEDIAPIPE_METADATA_NAME, read_metadata

HAVE_MEDIAPIPE = importlib.util.find_spec("mediapipe") is not None
needs_mediapipe = pytest.mark.skipif(
    not HAVE_MEDIAPIPE,
    reason="needs the [mobile] extra (mediapipe); tests/test_mobile_venv.py runs these in .venv-mobile",
)


def _cli(args: list[str]):
    from hairseg_edge.cli import app

    return CliRunner().invoke(app, args)


def _litert_output(model_path: Path, model_input: np.ndarray) -> np.ndarray:
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(model_path))
    interpreter.allocate_tensors()
    detail = interpreter.get_input_details()[0]
    interpreter.set_tensor(detail["index"], model_input.astype(detail["dtype"])[None])
    interpreter.invoke()
    return interpreter.get_tensor(interpreter.get_output_details()[0]["index"]).copy()


# --------------------------------------------------------------------------------------------------
# Without MediaPipe
# --------------------------------------------------------------------------------------------------


def test_importing_the_package_module_and_cli_does_not_import_mediapipe():
    import subprocess

    code = ("import sys, hairseg_edge.cli, hairseg_edge.mediapipe_meta; "
            "assert 'mediapipe' not in sys.modules, 'mediapipe imported eagerly'; "
            "assert 'tensorflow' not in sys.modules, 'tensorflow imported'")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_package_without_the_mobile_extra_prints_the_install_line_and_exits_2(tmp_path, monkeypatch):
    # A None entry in sys.modules makes `import mediapipe` raise ImportError, as on a core install
    # (submodules too: an already imported one would otherwise be found without its parent).
    for name in [m for m in sys.modules if m == "mediapipe" or m.startswith("mediapipe.")]:
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setitem(sys.modules, "mediapipe", None)
    model = tmp_path / "model.tflite"
    model.write_bytes(b"not even read")
    result = _cli(["package", str(model)])
    assert result.exit_code == 2
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert lines == ['hairseg-edge: hairseg-edge package (MediaPipe metadata) needs the \'mobile\' '
                     'extra: pip install "hairseg-edge[mobile]"']
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.tflite"]
    with pytest.raises(MissingExtraError):
        mediapipe_meta.build_metadata(None, None)  # type: ignore[arg-type]


def test_model_io_reads_float_and_uint8_models(tiny_packaging_models):
    f32 = mediapipe_meta.model_io(tiny_packaging_models["float32"].read_bytes())
    assert (f32.input.shape, f32.input.dtype) == ((1, 64, 64, 3), "float32")
    assert (f32.output.shape, f32.output.dtype) == ((1, 64, 64, 1), "float32")
    assert mediapipe_meta.normalization_for(f32) == ((0.0,), (1.0,))
    q = mediapipe_meta.model_io(tiny_packaging_models["int8"].read_bytes())
    assert (q.input.dtype, q.input.scale, q.input.zero_point) == ("uint8", 1.0, 0)
    assert q.output.dtype == "uint8"
    assert q.output.scale == pytest.approx(1 / 256) and q.output.zero_point == 0
    assert mediapipe_meta.normalization_for(q) is None  # uint8 pixels go in as they are


@pytest.mark.parametrize("kind, message", [
    ("int8_input", "export int8 models with uint8 input"),
    ("two_channel", "one hair-probability channel"),
])
def test_model_io_rejects_models_mediapipe_cannot_use_as_a_hair_segmenter(tiny_packaging_models, kind,
                                                                          message):
    with pytest.raises(InputError, match=message):
        mediapipe_meta.model_io(tiny_packaging_models[kind].read_bytes(), tiny_packaging_models[kind])


def test_package_refuses_a_model_without_the_hairseg_contract(tiny_packaging_models):
    path = tiny_packaging_models["no_contract"]
    with pytest.raises(InputError, match="hairseg_contract"):
        mediapipe_meta.package_bytes(path.read_bytes(), path)


def test_package_refuses_files_that_are_not_tflite(tmp_path):
    bad = tmp_path / "photo.tflite"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 64)
    with pytest.raises(InputError, match="not a TFLite model"):
        mediapipe_meta.package_bytes(bad.read_bytes(), bad)


def test_associated_files_are_a_zip_after_the_model_and_litert_ignores_them(tiny_packaging_models,
                                                                           tmp_path):
    original = tiny_packaging_models["int8"]
    data = original.read_bytes()
    with_files = mediapipe_meta.append_associated_files(data, {"labels.txt": b"hair\nbackground\n"})
    assert with_files.startswith(data)  # the model bytes are untouched, the archive follows
    packed = tmp_path / "packed.tflite"
    packed.write_bytes(with_files)
    with zipfile.ZipFile(packed) as archive:
        (info,) = archive.infolist()
        assert (info.filename, info.compress_type) == ("labels.txt", zipfile.ZIP_STORED)
    assert mediapipe_meta.packed_files(packed) == {"labels.txt": b"hair\nbackground\n"}
    assert mediapipe_meta.packed_files(original) == {}
    assert not mediapipe_meta.is_packaged(packed)  # labels alone are not MediaPipe metadata
    image = np.random.default_rng(3).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    np.testing.assert_array_equal(_litert_output(packed, image), _litert_output(original, image))


def test_default_output_sits_next_to_the_model():
    assert mediapipe_meta.default_output_path(Path("models/hair_int8.tflite")) == Path(
        "models/hair_int8.task-ready.tflite")


# --------------------------------------------------------------------------------------------------
# With MediaPipe (run inside .venv-mobile by tests/test_mobile_venv.py)
# --------------------------------------------------------------------------------------------------


def _decode_metadata(model_path: Path):
    from mediapipe.tasks.metadata import image_segmenter_metadata_schema_py_generated as seg_fb
    from mediapipe.tasks.metadata import metadata_schema_py_generated as meta_fb

    payload = read_metadata(model_path)[MEDIAPIPE_METADATA_NAME]
    assert meta_fb.ModelMetadata.ModelMetadataBufferHasIdentifier(payload, 0)
    metadata = meta_fb.ModelMetadataT.InitFromPackedBuf(bytearray(payload), 0)
    (subgraph,) = metadata.subgraphMetadata
    (custom,) = subgraph.customMetadata
    options_buf = bytes(bytearray(custom.data))
    assert seg_fb.ImageSegmenterOptions.ImageSegmenterOptionsBufferHasIdentifier(options_buf, 0)
    options = seg_fb.ImageSegmenterOptionsT.InitFromPackedBuf(bytearray(options_buf), 0)
    return meta_fb, seg_fb, metadata, subgraph, custom, options


@needs_mediapipe
@pytest.mark.parametrize("kind", ["float32", "int8"])
def test_packaged_metadata_describes_input_output_labels_and_activation(tiny_packaging_models, tmp_path,
                                                                        kind):
    source = tiny_packaging_models[kind]
    result = mediapipe_meta.package_model(source, tmp_path / "out.tflite")
    assert result.verified and result.max_abs_diff is not None
    assert result.max_abs_diff <= mediapipe_meta.VERIFY_TOLERANCE
    meta_fb, seg_fb, metadata, subgraph, custom, options = _decode_metadata(result.output)

    assert metadata.minParserVersion.decode() == mediapipe_meta.METADATA_MIN_PARSER_VERSION
    (image,) = subgraph.inputTensorMetadata
    props = image.content.contentProperties
    assert image.content.contentPropertiesType == meta_fb.ContentProperties.ImageProperties
    assert props.colorSpace == meta_fb.ColorSpaceType.RGB
    assert (props.defaultSize.width, props.defaultSize.height) == (64, 64)
    assert (list(image.stats.min), list(image.stats.max)) == ([0.0], [255.0])
    if kind == "float32":  # raw 0..255 into the model: identity normalisation
        (unit,) = image.processUnits
        assert unit.optionsType == meta_fb.ProcessUnitOptions.NormalizationOptions
        assert (list(unit.options.mean), list(unit.options.std)) == ([0.0], [1.0])
    else:
        assert not image.processUnits

    (mask,) = subgraph.outputTensorMetadata
    assert mask.content.contentProperties.colorSpace == meta_fb.ColorSpaceType.GRAYSCALE
    (labels,) = mask.associatedFiles
    assert labels.name.decode() == "labels.txt"
    assert labels.type == meta_fb.AssociatedFileType.TENSOR_AXIS_LABELS
    assert custom.name.decode() == "SEGMENTER_METADATA"
    assert options.activation == seg_fb.Activation.NONE  # the output is already a probability

    assert mediapipe_meta.packed_files(result.output) == {"labels.txt": b"hair\nbackground\n"}
    assert mediapipe_meta.is_packaged(result.output)
    # Our contract entry is carried over byte for byte.
    assert read_metadata(result.output)[METADATA_NAME] == read_metadata(source)[METADATA_NAME]


@needs_mediapipe
@pytest.mark.parametrize("kind", ["float32", "int8"])
def test_packaged_model_computes_exactly_what_the_original_computes(tiny_packaging_models, tmp_path,
                                                                    kind):
    source = tiny_packaging_models[kind]
    out = mediapipe_meta.package_model(source, tmp_path / "out.tflite").output
    image = np.random.default_rng(4).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    np.testing.assert_array_equal(_litert_output(out, image), _litert_output(source, image))


@needs_mediapipe
def test_mediapipe_reads_labels_and_marks_hair_as_category_zero(tiny_packaging_models, tmp_path):
    from hairseg_edge.runtime import Segmenter
    from hairseg_edge.synth import render_sample

    out = mediapipe_meta.package_model(tiny_packaging_models["int8"], tmp_path / "out.tflite").output
    rgb, _ = render_sample(np.random.default_rng([9, 1]), 64, 64, hair=True)
    confidence, category, labels = mediapipe_meta.mediapipe_confidence(out, rgb)
    assert labels == ["hair", "background"]
    assert set(np.unique(category)) <= {0, 255}
    np.testing.assert_array_equal(category == 0, confidence > 0.5)
    with Segmenter(out) as segmenter:  # at the model's own size neither side resizes
        ours = segmenter.segment(rgb)
    np.testing.assert_allclose(confidence, ours.probability, atol=1e-6)
    assert 0.02 < ours.mask.mean() < 0.98  # the probe image really has both classes


@needs_mediapipe
def test_packaging_twice_gives_the_same_bytes(tiny_packaging_models, tmp_path):
    once = mediapipe_meta.package_model(tiny_packaging_models["int8"], tmp_path / "once.tflite").output
    twice = mediapipe_meta.package_model(once, tmp_path / "twice.tflite").output
    assert twice.read_bytes() == once.read_bytes()
    with zipfile.ZipFile(twice) as archive:
        assert archive.namelist() == ["labels.txt"]


@needs_mediapipe
def test_existing_output_is_kept_unless_forced(tiny_packaging_models, tmp_path):
    source = tiny_packaging_models["float32"]
    target = tmp_path / "out.tflite"
    target.write_bytes(b"keep me")
    with pytest.raises(InputError, match="already exists"):
        mediapipe_meta.package_model(source, target)
    assert target.read_bytes() == b"keep me"
    mediapipe_meta.package_model(source, target, force=True)
    assert mediapipe_meta.is_packaged(target)
    with pytest.raises(InputError, match="must differ"):
        mediapipe_meta.package_model(target, target, force=True)


@needs_mediapipe
def test_verification_fails_and_writes_nothing_when_metadata_misdescribes_the_model(
        tiny_packaging_models, tmp_path, monkeypatch):
    # MobileNet-style (x - 127.5) / 127.5 is wrong for a model that rescales inside itself.
    monkeypatch.setattr(mediapipe_meta, "normalization_for", lambda _io: ((127.5,), (127.5,)))
    target = tmp_path / "out.tflite"
    with pytest.raises(CheckFailed, match="differs from LiteRT"):
        mediapipe_meta.package_model(tiny_packaging_models["float32"], target)
    assert list(tmp_path.iterdir()) == []


@needs_mediapipe
def test_cli_package_writes_the_default_output_and_reports_json(tiny_packaging_models, tmp_path):
    source = tmp_path / "hair_int8.tflite"
    source.write_bytes(tiny_packaging_models["int8"].read_bytes())
    result = _cli(["package", str(source), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout[result.stdout.index("{"):])
    expected = tmp_path / "hair_int8.task-ready.tflite"
    assert report["output"] == str(expected) and expected.is_file()
    assert report["verified"] is True and report["labels"] == ["hair", "background"]
    again = _cli(["package", str(source)])
    assert again.exit_code == 2 and "already exists" in again.output
    forced = _cli(["package", str(source), "--force"])
    assert forced.exit_code == 0 and "verified in MediaPipe" in forced.output
