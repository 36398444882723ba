"""The public peer models in ../shared/peers run through the same Segmenter, info and bench.

Skipped when the peers folder is absent (``peers_dir`` fixture; ``$HAIRSEG_PEERS`` points elsewhere).
The synthetic portrait below is drawn so that all three hair peers recognise its hair: a face with
eyes, brows, nose and mouth framed by dark strand-textured hair, on a soft background.
"""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from hairseg_edge import tflite_meta
from hairseg_edge.cli import app
from hairseg_edge.contract import Contract
from hairseg_edge.errors import InputError
from hairseg_edge.inspect import inspect_model
from hairseg_edge.runtime import Segmenter

HAIR_PEERS = {
    "hair_segmenter.tflite": "mediapipe-hair",
    "hair_segmentation_mobile.tflite": "community-mobile",
    "bisenetv2_celebamaskhq_256x256_integer_quant.tflite": "bisenetv2-celebamask",
}
runner = CliRunner()


def synthetic_portrait(size: int = 512, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(RGB uint8 ``size x size``, bool hair mask) of a drawn head-and-shoulders portrait."""
    rng = np.random.default_rng(seed)
    h = w = size
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32) / size
    img = np.empty((h, w, 3), np.float32)
    img[:] = np.array([180, 190, 200], np.float32) * (0.85 + 0.15 * yy[..., None])
    cx, cy = w // 2, int(h * 0.55)

    def shape(draw) -> np.ndarray:
        canvas = np.zeros((h, w), np.uint8)
        draw(canvas)
        return canvas > 0

    hair = shape(lambda c: (
        cv2.ellipse(c, (cx, int(h * 0.45)), (int(w * 0.36), int(h * 0.40)), 0, 0, 360, 1, -1),
        cv2.rectangle(c, (cx - int(w * 0.36), int(h * 0.45)), (cx + int(w * 0.36), int(h * 0.85)),
                      1, -1)))
    face = shape(lambda c: cv2.ellipse(c, (cx, cy), (int(w * 0.22), int(h * 0.30)), 0, 0, 360, 1, -1))
    neck = shape(lambda c: cv2.rectangle(c, (cx - int(w * 0.11), cy), (cx + int(w * 0.11), h), 1, -1))
    shirt = shape(lambda c: cv2.ellipse(c, (cx, h + int(h * 0.05)), (int(w * 0.45), int(h * 0.18)),
                                        0, 0, 360, 1, -1))
    strands = cv2.GaussianBlur(rng.normal(0, 1, (h, w)).astype(np.float32), (1, 31), 0,
                               sigmaY=12) * 8
    hair_only = hair & ~face & ~neck
    img[hair_only] = (np.array([55, 38, 28], np.float32) * (1 + 0.25 * strands[..., None]))[hair_only]
    skin = np.array([225, 175, 145], np.float32) * (1.0 - 2.0 * (xx - 0.5) ** 2)[..., None]
    img[face | neck] = skin[face | neck]
    img[shirt] = (60, 80, 140)
    thick = max(2, size // 100)
    for dx in (-1, 1):
        ex, ey = cx + dx * int(w * 0.09), cy - int(h * 0.03)
        cv2.ellipse(img, (ex, ey), (int(w * 0.035), int(h * 0.015)), 0, 0, 360, (250, 250, 250), -1)
        cv2.circle(img, (ex, ey), int(w * 0.014), (70, 50, 40), -1)
        cv2.line(img, (ex - int(w * 0.045), cy - int(h * 0.075)),
                 (ex + int(w * 0.045), cy - int(h * 0.08)), (60, 40, 30), thick)
    cv2.line(img, (cx, cy - int(h * 0.02)), (cx - int(w * 0.015), cy + int(h * 0.07)),
             (190, 140, 115), max(2, size // 150))
    cv2.ellipse(img, (cx, cy + int(h * 0.15)), (int(w * 0.07), int(h * 0.02)), 0, 0, 360,
                (170, 80, 80), -1)
    img += rng.normal(0, 4, img.shape)
    rgb = cv2.GaussianBlur(np.clip(img, 0, 255).astype(np.uint8), (3, 3), 0)
    return rgb, hair_only & ~shirt


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max((a | b).sum(), 1))


@pytest.fixture(scope="module")
def portrait() -> tuple[np.ndarray, np.ndarray]:
    return synthetic_portrait(512)


@pytest.mark.parametrize("filename,adapter", HAIR_PEERS.items())
def test_hair_peers_load_by_detection_and_find_the_hair(peers_dir, portrait, filename, adapter):
    rgb, hair = portrait
    with Segmenter(peers_dir / filename) as seg:
        assert seg.adapter_name == adapter
        assert seg.contract is None
        result = seg.segment(rgb)
    assert result.probability.shape == hair.shape and result.mask.shape == hair.shape
    assert 0.0 <= result.probability.min() and result.probability.max() <= 1.0
    precision = (result.mask & hair).sum() / max(result.mask.sum(), 1)
    assert iou(result.mask, hair) > 0.75, (filename, iou(result.mask, hair))
    assert precision > 0.85, (filename, precision)


@pytest.mark.parametrize("filename,adapter", HAIR_PEERS.items())
def test_hair_peers_on_a_wide_frame(peers_dir, portrait, filename, adapter):
    """Peers stretch the whole frame to their input and back; the mask keeps the frame's size."""
    rgb, hair = portrait
    pad = 128  # the portrait in the middle of a 512x768 frame of background
    frame = np.concatenate([np.repeat(rgb[:, :1], pad, axis=1), rgb,
                            np.repeat(rgb[:, -1:], pad, axis=1)], axis=1)
    truth = np.pad(hair, ((0, 0), (pad, pad)))
    with Segmenter(peers_dir / filename, adapter=adapter) as seg:
        result = seg.segment(frame)
    assert result.mask.shape == (512, 768)
    assert iou(result.mask, truth) > 0.7, (filename, iou(result.mask, truth))


def test_both_mediapipe_hair_files_hold_the_same_network(peers_dir, portrait):
    rgb, _ = portrait
    with Segmenter(peers_dir / "hair_segmenter.tflite") as a, \
            Segmenter(peers_dir / "hair_segmentation.tflite") as b:
        np.testing.assert_array_equal(a.segment(rgb).probability, b.segment(rgb).probability)


def test_peer_adapters_check_the_tensors(peers_dir):
    with pytest.raises(InputError, match="does not fit the 'community-mobile' adapter"):
        Segmenter(peers_dir / "hair_segmenter.tflite", adapter="community-mobile")
    with pytest.raises(InputError, match="does not fit the 'hairseg' adapter"):
        Segmenter(peers_dir / "bisenetv2_celebamaskhq_256x256_integer_quant.tflite", adapter="hairseg")
    # a person segmenter with 21 PASCAL classes has no hair channel at all
    with pytest.raises(InputError, match="not a hair segmentation model"):
        Segmenter(peers_dir / "deeplabv3_257_mv_gpu.tflite")


def test_info_on_peers(peers_dir):
    mediapipe = inspect_model(peers_dir / "hair_segmenter.tflite")
    assert mediapipe.adapter == "mediapipe-hair"
    assert mediapipe.mediapipe_metadata and mediapipe.associated_files == ("labels.txt",)
    assert {"MaxPoolingWithArgmax2D", "MaxUnpooling2D", "Convolution2DTransposeBias"} <= set(mediapipe.ops)
    assert mediapipe.gpu.compatible  # MediaPipe's custom ops are GPU-delegate ops
    bisenet = inspect_model(peers_dir / "bisenetv2_celebamaskhq_256x256_integer_quant.tflite")
    assert bisenet.adapter == "bisenetv2-celebamask"
    assert bisenet.outputs[0].dtype == "int64"
    assert not bisenet.gpu.compatible
    assert "ARG_MAX" in {i.op for i in bisenet.gpu.issues}
    result = runner.invoke(app, ["info", str(peers_dir / "hair_segmentation_mobile.tflite"), "--json"])
    assert result.exit_code == 0
    report = json.loads(result.stdout)
    assert report["adapter"] == "community-mobile" and report["inputs"][0]["shape"] == [1, 160, 160, 3]


def test_metadata_writes_keep_a_mediapipe_model_intact(peers_dir, portrait, tmp_path):
    rgb, _ = portrait
    original = peers_dir / "hair_segmenter.tflite"
    copy = tmp_path / "hair_segmenter_tagged.tflite"
    copy.write_bytes(tflite_meta.with_metadata(original.read_bytes(), {"note": b"re-packed"}))
    entries = tflite_meta.read_metadata(copy)
    assert entries["TFLITE_METADATA"] == tflite_meta.read_metadata(original)["TFLITE_METADATA"]
    assert inspect_model(copy, check_gpu=False).associated_files == ("labels.txt",)
    with Segmenter(original) as a, Segmenter(copy) as b:
        np.testing.assert_array_equal(a.segment(rgb).probability, b.segment(rgb).probability)
    # a contract turns any matching model into a hairseg model: here the tensors do not match
    wrong = tmp_path / "contract_on_peer.tflite"
    wrong.write_bytes(tflite_meta.embed_contract(original.read_bytes(), Contract(input_size=512)))
    with pytest.raises(InputError, match="does not fit the 'hairseg' adapter"):
        Segmenter(wrong)


def test_bench_peers_side_by_side(peers_dir, tmp_path):
    out = tmp_path / "peers.json"
    models = [str(peers_dir / name) for name in HAIR_PEERS]
    result = runner.invoke(app, ["bench", *models, "--runs", "3", "--warmup", "1", "--json", str(out)],
                           env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    records = json.loads(out.read_text())
    assert [r["model"] for r in records] == models
    assert [r["adapter"] for r in records] == list(HAIR_PEERS.values())
    assert [r["input_shape"] for r in records] == [[1, 512, 512, 4], [1, 160, 160, 3], [1, 256, 256, 3]]
    assert all(r["p50_ms"] > 0 for r in records)


def test_bench_end_to_end_on_a_peer(peers_dir, tmp_path):
    out = tmp_path / "e2e.json"
    result = runner.invoke(app, ["bench", str(peers_dir / "hair_segmentation_mobile.tflite"),
                                 "--end-to-end", "--runs", "3", "--warmup", "1", "--json", str(out)])
    assert result.exit_code == 0, result.output
    [record] = json.loads(out.read_text())
    assert record["end_to_end"] and record["adapter"] == "community-mobile"
    assert record["stages_ms"]["infer"] > 0


def test_flip_tta_helps_a_score_peer_and_refuses_a_class_index_one(peers_dir, portrait):
    rgb, hair = portrait
    with Segmenter(peers_dir / "hair_segmentation_mobile.tflite", flip_tta=True) as seg:
        result = seg.segment(rgb)
    assert result.mask.shape == hair.shape and iou(result.mask, hair) > 0.75
    with pytest.raises(InputError, match="--flip-tta needs outputs that are maps .* is \\[256, 256\\]"):
        Segmenter(peers_dir / "bisenetv2_celebamaskhq_256x256_integer_quant.tflite", flip_tta=True)
