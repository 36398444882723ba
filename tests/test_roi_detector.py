"""The BlazeFace decoding of hairseg_edge/face_detector.py (the ROI stage's fallback locator, shared with
benchmarks/roi_detector.py): SSD anchors as MediaPipe's face graphs make them, box decoding, weighted NMS,
the letterbox mapping back to frame pixels and the face box -> hair box geometry (hairseg_edge.roi).
Synthetic tensors only: no detector file."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

from hairseg_edge import face_detector as F
from hairseg_edge.roi import Box, RoiConfig, face_boxes

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


def _load():
    spec = importlib.util.spec_from_file_location("bench_roi_detector", BENCH / "roi_detector.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    sys.path.insert(0, str(BENCH))
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(BENCH))
    return module


R = _load()
SHORT = F.SHORT_RANGE
FULL = R.DETECTORS["BlazeFace full range (sparse)"]


def test_benchmark_decodes_with_the_package_code():
    assert R.DETECTORS["BlazeFace short range"] is F.SHORT_RANGE
    assert R.FaceDetector is F.FaceDetector and R.face_boxes is face_boxes


def test_short_range_anchors_match_the_graph():
    anchors = F.ssd_anchor_centres(SHORT.size, SHORT.strides, SHORT.interpolated_scale_aspect_ratio)
    assert anchors.shape == (896, 2)
    # stride 8: a 16x16 map, 2 anchors per position (aspect 1 + the interpolated one) -> 512 anchors
    np.testing.assert_allclose(anchors[0], [0.5 / 16, 0.5 / 16])
    np.testing.assert_allclose(anchors[1], [0.5 / 16, 0.5 / 16])
    np.testing.assert_allclose(anchors[2], [1.5 / 16, 0.5 / 16])      # x runs fastest
    np.testing.assert_allclose(anchors[32], [0.5 / 16, 1.5 / 16])     # then the next row
    np.testing.assert_allclose(anchors[511], [15.5 / 16, 15.5 / 16])
    # strides 16, 16, 16: one 8x8 map, 3 layers x 2 anchors = 6 per position -> 384 anchors
    np.testing.assert_allclose(anchors[512:518], [[0.5 / 8, 0.5 / 8]] * 6)
    np.testing.assert_allclose(anchors[518], [1.5 / 8, 0.5 / 8])
    np.testing.assert_allclose(anchors[-1], [7.5 / 8, 7.5 / 8])


def test_full_range_anchors_match_the_graph():
    anchors = F.ssd_anchor_centres(FULL.size, FULL.strides, FULL.interpolated_scale_aspect_ratio)
    assert anchors.shape == (2304, 2)  # stride 4 on 192 px: 48x48, no interpolated anchor
    np.testing.assert_allclose(anchors[0], [0.5 / 48, 0.5 / 48])
    np.testing.assert_allclose(anchors[1], [1.5 / 48, 0.5 / 48])
    np.testing.assert_allclose(anchors[-1], [47.5 / 48, 47.5 / 48])


def test_decode_turns_regressors_into_the_expected_box():
    anchors = F.ssd_anchor_centres(SHORT.size, SHORT.strides, SHORT.interpolated_scale_aspect_ratio)
    regressors = np.zeros((896, 16), np.float32)
    logits = np.full(896, -8.0, np.float32)
    k = 600  # on the 8x8 map: position (600 - 512) // 6 = 14 -> column 6, row 1; centre (6.5/8, 1.5/8)
    regressors[k, :4] = [6.4, -12.8, 32.0, 48.0]  # centre +0.05, -0.1; size 0.25 x 0.375 of 128 px
    logits[k] = 2.0
    boxes, scores = F.decode(regressors, logits, anchors, SHORT.size, F.MIN_SCORE)
    cx, cy = 6.5 / 8 + 0.05, 1.5 / 8 - 0.1
    np.testing.assert_allclose(boxes, [[cx - 0.125, cy - 0.1875, cx + 0.125, cy + 0.1875]], atol=1e-6)
    np.testing.assert_allclose(scores, [1 / (1 + np.exp(-2.0))])
    # at the threshold's edge: sigmoid(0) = 0.5 is kept by the short-range graph, not by the full range's 0.6
    logits[k] = 0.0
    assert len(F.decode(regressors, logits, anchors, SHORT.size, 0.5)[0]) == 1
    assert len(F.decode(regressors, logits, anchors, SHORT.size, 0.6)[0]) == 0


def test_weighted_nms_merges_overlaps_and_keeps_separate_faces():
    boxes = np.array([[0.10, 0.10, 0.30, 0.30],    # best
                      [0.12, 0.10, 0.32, 0.30],    # overlaps the best (IoU 0.82): merged into it
                      [0.60, 0.60, 0.80, 0.80]])   # another face
    scores = np.array([0.9, 0.6, 0.7])
    out, out_scores = F.weighted_nms(boxes, scores)
    np.testing.assert_allclose(out_scores, [0.9, 0.7])
    np.testing.assert_allclose(out[0], (boxes[0] * 0.9 + boxes[1] * 0.6) / 1.5)
    np.testing.assert_allclose(out[1], boxes[2])
    assert F.weighted_nms(np.zeros((0, 4)), np.zeros(0))[0].shape == (0, 4)


def test_letterbox_maps_tensor_boxes_back_to_frame_pixels():
    rgb = np.zeros((200, 400, 3), np.uint8)  # wide: fitted to 128 x 64, 32 rows of black above and below
    rgb[50:150, 100:200] = 255
    tensor, fit = F.letterbox(rgb, 128)
    assert tensor.shape == (1, 128, 128, 3)
    assert (fit.scale, fit.pad_x, fit.pad_y) == (0.32, 0, 32)
    assert tensor[0, 0, 0, 0] == -1.0 and tensor[0, 64, 48, 0] == 1.0  # border black; the white square white
    white = (np.array([[32, 48, 64, 80]]) / 128.0)  # the white square's rectangle in the tensor
    np.testing.assert_allclose(fit.to_frame(white), [[100, 50, 200, 150]])


def test_hair_box_is_scaled_lifted_and_merged():
    config = RoiConfig()
    face = np.array([[100.0, 200.0, 140.0, 240.0]])  # 40 px, centre (120, 220)
    assert face_boxes(face, 2.5, 0.0, config) == [Box(70, 170, 100)]
    assert face_boxes(face, 2.5, 0.25, config) == [Box(70, 160, 100)]  # 10 px up
    two = np.array([[100.0, 200.0, 140.0, 240.0], [150.0, 200.0, 190.0, 240.0], [400.0, 0, 440, 40]])
    merged = face_boxes(two, 2.0, 0.0, config)  # the first two overlap -> one; the third stays (max 2)
    assert merged == [Box(80, 155, 130), Box(380, -20, 80)]
    assert face_boxes(np.zeros((0, 4)), 2.5, 0.0, config) == []


@pytest.mark.parametrize("missing", ["face_detection_short_range.tflite", "face_detection_full_range_sparse.tflite"])
def test_missing_detector_file_is_one_line_exit_2(tmp_path, capsys, missing):
    for spec in R.DETECTORS.values():
        if spec.file != missing:
            (tmp_path / spec.file).write_bytes(b"x")
    assert R.main(["--detector-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and missing in err and str(tmp_path) in err


# --- the bundled detector file --------------------------------------------------------------------------
SAMPLE = Path(__file__).resolve().parents[1] / "examples" / "astronaut.png"


@pytest.fixture(scope="module")
def sample():
    from hairseg_edge.imageio import read_image

    return read_image(SAMPLE)


def test_bundled_detector_finds_the_sample_face_in_frame_pixels(sample):
    from hairseg_edge.models import FACE_DETECTOR_PATH

    detector = F.FaceDetector()
    assert detector.path == FACE_DETECTOR_PATH
    (score, x0, y0, x1, y1), = detector.detect(sample)
    # The face (eyebrows to chin, ear to ear) of the 512x512 photo: about (178, 81) - (272, 175).
    assert score > 0.9
    np.testing.assert_allclose([x0, y0, x1, y1], [178, 81, 272, 175], atol=6)
    # In a wider frame (letterboxed with a border above and below) the box moves with the photo.
    wide = np.zeros((512, 640, 3), np.uint8)
    wide[:, 100:612] = sample
    (_, wx0, wy0, wx1, wy1), = detector.detect(wide)
    np.testing.assert_allclose([wx0 - 100, wy0, wx1 - 100, wy1], [x0, y0, x1, y1], atol=6)
    assert detector.detect(np.full((200, 300, 3), 128, np.uint8)) == []


def test_info_names_the_bundled_detector():
    import json

    from typer.testing import CliRunner

    from hairseg_edge.cli import app
    from hairseg_edge.models import FACE_DETECTOR_PATH

    result = CliRunner().invoke(app, ["info", "--json", "--no-gpu"])
    assert result.exit_code == 0, result.output
    face = json.loads(result.output)["face_detector"]
    assert face["present"] and face["path"] == str(FACE_DETECTOR_PATH)
    assert face["bytes"] == FACE_DETECTOR_PATH.stat().st_size and "Apache-2.0" in face["name"]


def _bad_detector_files(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    """Each kind of bad --face-detector file, with a word its one-line error must contain."""
    from hairseg_edge.models import FACE_DETECTOR_PATH, default_model_path

    text = tmp_path / "notes.tflite"
    text.write_text("not a model\n")
    truncated = tmp_path / "truncated.tflite"
    truncated.write_bytes(FACE_DETECTOR_PATH.read_bytes()[:20000])
    return {"missing": (tmp_path / "nope.tflite", "nope.tflite"), "text": (text, "notes.tflite"),
            "truncated": (truncated, "truncated.tflite"),
            "wrong tensors": (default_model_path("int8"), "not a BlazeFace")}


def test_bad_detector_files_are_input_errors_naming_the_file(tmp_path):
    from hairseg_edge.errors import InputError
    from hairseg_edge.models import default_model_path
    from hairseg_edge.runtime import Segmenter

    for kind, (path, needle) in _bad_detector_files(tmp_path).items():
        with pytest.raises(InputError) as caught:
            F.FaceDetector(path)
        message = str(caught.value)
        assert str(path) in message and needle in message and "\n" not in message, (kind, message)
        with pytest.raises(InputError):  # an explicit file is checked when the Segmenter opens
            Segmenter(default_model_path("int8"), roi="auto", face_detector=path)


@pytest.mark.parametrize("command", ["run", "eval"])
def test_cli_bad_face_detector_is_one_line_exit_2_and_writes_nothing(tmp_path, command):
    from typer.testing import CliRunner

    from hairseg_edge.cli import app

    bad = _bad_detector_files(tmp_path)
    data = tmp_path / "data"  # eval: a one-image data set
    (data / "images").mkdir(parents=True)
    (data / "masks").mkdir()
    import shutil

    import cv2

    shutil.copy(SAMPLE, data / "images" / "a.png")
    cv2.imwrite(str(data / "masks" / "a.png"), np.zeros((512, 512), np.uint8))
    for kind, (path, needle) in bad.items():
        out = tmp_path / f"out-{kind.replace(' ', '-')}"
        args = (["run", str(SAMPLE), "-o", str(out)] if command == "run"
                else ["eval", "--data", str(data), "--json", str(out / "eval.json")])
        result = CliRunner().invoke(app, [*args, "--face-detector", str(path)], terminal_width=300)
        assert result.exit_code == 2, (kind, result.output)
        lines = [line for line in result.output.splitlines() if line.strip()]
        assert len(lines) == 1 and needle in lines[0] and "Traceback" not in result.output, (kind, result.output)
        assert not out.exists(), kind
