"""BlazeFace short range on the device runtime: the region stage's fallback locator (numpy + OpenCV + LiteRT).

When the hair model's whole-frame pass finds no hair (a small head whose hair the coarse pass misses),
:class:`hairseg_edge.roi.RegionStage` asks this detector for faces and segments a box around each
(``benchmarks/results/roi_detector.md``). The model is MediaPipe's ``face_detection_short_range.tflite``
(Apache-2.0, bundled: ``hairseg_edge/models/NOTICE-face-detector.md``); it is decoded here as MediaPipe's
face_detection graphs do (``mediapipe/modules/face_detection/face_detection_short_range.pbtxt``): the frame
letterboxed into a square float tensor in [-1, 1], SSD anchors of fixed size, sigmoid scores, weighted NMS.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from .errors import InputError

# Shared by MediaPipe's face graphs (face_detection.pbtxt).
ANCHOR_OFFSET = 0.5
#: The short-range graph's ``min_score_thresh``. The locate step wants recall: a false face costs one
#: crop, a missed one the head.
MIN_SCORE = 0.5
ASPECT_RATIOS = (1.0,)
SCORE_CLIP = 100.0
NMS_IOU = 0.3


@dataclass(frozen=True)
class DetectorSpec:
    """One BlazeFace model and the options of its MediaPipe graph
    (mediapipe/modules/face_detection/face_detection_{short,full}_range.pbtxt and face_detection.pbtxt)."""

    file: str
    size: int                            # square input tensor side
    strides: tuple[int, ...]             # SsdAnchorsCalculator strides (num_layers = len)
    interpolated_scale_aspect_ratio: float
    num_boxes: int
    graph_min_score: float               # the graph's min_score_thresh


#: The bundled detector.
SHORT_RANGE = DetectorSpec("face_detection_short_range.tflite", 128, (8, 16, 16, 16), 1.0, 896, 0.5)


def ssd_anchor_centres(size: int, strides: tuple[int, ...], interpolated_scale_aspect_ratio: float,
                       aspect_ratios: tuple[float, ...] = ASPECT_RATIOS, offset: float = ANCHOR_OFFSET) -> np.ndarray:
    """Anchor centres ``(N, 2)`` as ``(x, y)`` in [0, 1] of the input tensor, in the model's output order.

    With ``fixed_anchor_size: true`` (both face graphs) every anchor's width and height are 1, so only the
    centres matter. Consecutive layers with the same stride share one feature map; per map position there
    is one anchor per aspect ratio per layer, plus one more per layer when
    ``interpolated_scale_aspect_ratio > 0``. Order: rows, then columns, then the anchors of a position.
    """
    centres: list[np.ndarray] = []
    layer = 0
    while layer < len(strides):
        per_position, last = 0, layer
        while last < len(strides) and strides[last] == strides[layer]:
            per_position += len(aspect_ratios) + (1 if interpolated_scale_aspect_ratio > 0.0 else 0)
            last += 1
        side = math.ceil(size / strides[layer])
        grid = (np.arange(side, dtype=np.float32) + offset) / side
        ys, xs = np.meshgrid(grid, grid, indexing="ij")
        cells = np.stack([xs.ravel(), ys.ravel()], axis=1)
        centres.append(np.repeat(cells, per_position, axis=0))
        layer = last
    return np.concatenate(centres).astype(np.float32)


def decode(regressors: np.ndarray, logits: np.ndarray, anchors: np.ndarray, size: int,
           min_score: float) -> tuple[np.ndarray, np.ndarray]:
    """Boxes ``(K, 4)`` as ``x0, y0, x1, y1`` in [0, 1] of the input tensor, and their scores ``(K,)``.

    ``regressors`` ``(N, 16)``: centre offset x, y, width, height (input pixels, ``reverse_output_order``),
    then 6 keypoints (unused here); ``logits`` ``(N,)``: one class. Score = sigmoid of the logit clipped
    to +-100; anchors below ``min_score`` are dropped.
    """
    scores = 1.0 / (1.0 + np.exp(-np.clip(logits.astype(np.float64), -SCORE_CLIP, SCORE_CLIP)))
    keep = scores >= min_score
    raw, centre = regressors[keep, :4].astype(np.float64), anchors[keep].astype(np.float64)
    cx = raw[:, 0] / size + centre[:, 0]
    cy = raw[:, 1] / size + centre[:, 1]
    w, h = raw[:, 2] / size, raw[:, 3] / size
    boxes = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1)
    return boxes, scores[keep]


def box_iou(box: np.ndarray, others: np.ndarray) -> np.ndarray:
    """IoU of one ``x0, y0, x1, y1`` box with each row of ``others``."""
    x0 = np.maximum(box[0], others[:, 0])
    y0 = np.maximum(box[1], others[:, 1])
    x1 = np.minimum(box[2], others[:, 2])
    y1 = np.minimum(box[3], others[:, 3])
    inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)

    def area(b: np.ndarray) -> np.ndarray:
        return np.clip(b[..., 2] - b[..., 0], 0, None) * np.clip(b[..., 3] - b[..., 1], 0, None)

    union = area(box) + area(others) - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def weighted_nms(boxes: np.ndarray, scores: np.ndarray, iou: float = NMS_IOU) -> tuple[np.ndarray, np.ndarray]:
    """MediaPipe's WEIGHTED non-max suppression: the best remaining box takes every remaining box that
    overlaps it by IoU > ``iou`` and becomes their score-weighted mean (keeping its own score)."""
    order = np.argsort(-scores, kind="stable")
    boxes, scores = boxes[order], scores[order]
    out_boxes, out_scores = [], []
    remaining = np.arange(len(scores))
    while remaining.size:
        top = remaining[0]
        overlap = box_iou(boxes[top], boxes[remaining]) > iou
        group = remaining[overlap]
        weights = scores[group]
        out_boxes.append((boxes[group] * weights[:, None]).sum(axis=0) / weights.sum())
        out_scores.append(scores[top])
        remaining = remaining[~overlap]
    if not out_boxes:
        return np.zeros((0, 4)), np.zeros(0)
    return np.array(out_boxes), np.array(out_scores)


@dataclass(frozen=True)
class Letterbox:
    """How a frame was fitted into the detector's square tensor: ``scale`` and padding (tensor pixels)."""

    size: int
    scale: float
    pad_x: int
    pad_y: int

    def to_frame(self, boxes: np.ndarray) -> np.ndarray:
        """Boxes in [0, 1] of the tensor to frame pixels (MediaPipe's letterbox removal + projection)."""
        px = boxes * self.size - np.array([self.pad_x, self.pad_y, self.pad_x, self.pad_y])
        return px / self.scale


def letterbox(rgb: np.ndarray, size: int) -> tuple[np.ndarray, Letterbox]:
    """The frame fitted (aspect ratio kept, centred) into a ``size`` square float tensor in [-1, 1];
    the border is black (-1), as the graph's ``BORDER_ZERO``. Shrunk with INTER_AREA (the graph samples
    bilinearly; area averaging does not alias a 1024 px photo brought down to 128 px)."""
    h, w = rgb.shape[:2]
    scale = size / max(h, w)
    nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
    small = cv2.resize(rgb, (nw, nh), interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    tensor = np.full((1, size, size, 3), -1.0, np.float32)
    px, py = (size - nw) // 2, (size - nh) // 2
    tensor[0, py:py + nh, px:px + nw] = small.reshape(nh, nw, 3).astype(np.float32) / 127.5 - 1.0
    return tensor, Letterbox(size, scale, px, py)


def bundled_path() -> Path:
    """Where the bundled short-range detector lives (whether or not this install has it)."""
    from .models import FACE_DETECTOR_PATH

    return FACE_DETECTOR_PATH


#: What ``info`` calls the bundled detector.
BUNDLED_NAME = "BlazeFace short range (MediaPipe 0.10.14, Apache-2.0)"


def bundled_summary() -> dict[str, object]:
    """The region stage's fallback locator in this install, for ``info``: name, path, whether present."""
    path = bundled_path()
    return {"name": BUNDLED_NAME, "path": str(path), "present": path.is_file(),
            "bytes": path.stat().st_size if path.is_file() else None}


class FaceDetector:
    """A BlazeFace .tflite on the device runtime (``runtime.load_model``: LiteRT, no TensorFlow).

    Args:
        path: the .tflite file (default: the bundled short-range detector).
        threads: interpreter threads.
        spec: the graph options the file was exported with (default: short range).

    Raises:
        InputError naming the file: missing, not a .tflite, fails to load, or tensors that are not the
        BlazeFace ``spec`` describes.
    """

    def __init__(self, path: str | os.PathLike[str] | None = None, *, threads: int = 1,
                 spec: DetectorSpec = SHORT_RANGE):
        from .runtime import load_model

        self.path = Path(path) if path is not None else bundled_path()
        self.spec = spec
        try:
            loaded = load_model(self.path, threads=threads)
        except InputError as exc:  # say which file this is: the hair model has its own errors
            problem = str(exc).removeprefix(f"{exc.path}: ") if exc.path else str(exc)
            raise InputError(f"face detector: {problem}", self.path) from None
        self.interpreter = loaded.interpreter
        self.input = self.interpreter.get_input_details()[0]
        outputs = self.interpreter.get_output_details()
        by_width = {int(o["shape"][-1]): o["index"] for o in outputs}
        if (tuple(self.input["shape"]) != (1, spec.size, spec.size, 3) or self.input["dtype"] != np.float32
                or len(outputs) != 2 or set(by_width) != {16, 1}
                or any(int(np.prod(o["shape"])) != spec.num_boxes * int(o["shape"][-1]) for o in outputs)):
            shapes = [[int(d) for d in o["shape"]] for o in outputs]
            raise InputError(f"face detector: not a BlazeFace model with a {spec.size}x{spec.size} input "
                             f"(input {[int(d) for d in self.input['shape']]}, outputs {shapes})", self.path)
        self.regressors, self.logits = by_width[16], by_width[1]
        self.anchors = ssd_anchor_centres(spec.size, spec.strides, spec.interpolated_scale_aspect_ratio)
        if len(self.anchors) != spec.num_boxes:
            raise InputError(f"face detector: {len(self.anchors)} anchors, the graph says {spec.num_boxes}",
                             self.path)

    def faces(self, rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Face boxes in frame pixels ``(K, 4)`` (x0, y0, x1, y1), best first, and their scores."""
        tensor, fit = letterbox(rgb, self.spec.size)
        self.interpreter.set_tensor(self.input["index"], tensor)
        self.interpreter.invoke()
        boxes, scores = decode(self.interpreter.get_tensor(self.regressors).reshape(-1, 16),
                               self.interpreter.get_tensor(self.logits).reshape(-1), self.anchors,
                               self.spec.size, MIN_SCORE)
        boxes, scores = weighted_nms(boxes, scores)
        return fit.to_frame(boxes), scores

    def detect(self, rgb: np.ndarray) -> list[tuple[float, float, float, float, float]]:
        """The faces of an RGB uint8 frame as ``(score, x0, y0, x1, y1)`` in frame pixels, best first."""
        boxes, scores = self.faces(rgb)
        return [(float(s), *(float(v) for v in b)) for b, s in zip(boxes, scores)]


__all__ = ["SHORT_RANGE", "DetectorSpec", "FaceDetector", "Letterbox", "decode", "letterbox",
           "ssd_anchor_centres", "weighted_nms"]
