"""The preprocessing contract: the one place that says what a hairseg model eats and returns.

Training, calibration, evaluation, benchmarking and the device runtime all call this module, so the
pixels a model sees in training are the pixels it sees on a phone (no train/serve skew).

The contract (version 1):

* **Colour order**: RGB, uint8, values 0..255. Images read by OpenCV (BGR) are converted on read.
* **Geometry**: *letterbox*. The image is scaled so its longer side equals the model's input size,
  keeping the aspect ratio, and centred on a square canvas of ``PAD_VALUE`` (black). The square
  photos of CelebAMask-HQ are simply resized; tall or wide photos are not distorted.
* **Resampling**: when shrinking, halve with a 2x2 box filter while the image is still at least
  twice the target, then take one bilinear step (a factor in (0.5, 1], where only pixel-level
  patterns could alias, and camera photos carry little of them). On photos this stays within a
  median 41-52 dB PSNR of ``INTER_AREA`` and is 2.5-8x faster, since OpenCV's area filter is slow
  for non-integer ratios (1280x720 -> 224x126: 2.8 ms against 0.38 ms;
  ``benchmarks/results/resample_cost.md``). Bilinear when growing. Masks use centre-aligned
  nearest-neighbour so labels stay binary and aligned.
* **Bit-exact everywhere**: every bilinear step on the image is OpenCV's ``INTER_LINEAR_EXACT``, which
  gives the same bytes on x86 and arm64. Plain ``INTER_LINEAR`` does not: OpenCV hands it to
  platform code, and on arm64 about half of a 224x224 model input came out 1-2 values away from
  x86's, enough to flip mask pixels of a sensitive model (``make check-arm64`` compares the prepared
  inputs byte for byte). It costs about 0.08 ms more per 256x256 frame.
* **Model input**: float32 or uint8 tensor ``[1, S, S, 3]`` holding the raw RGB values 0..255.
  Normalisation lives *inside* the model (a Rescaling layer), so an int8 model with uint8 input takes
  a camera frame with no arithmetic.
* **Model output**: ``[1, S, S, 1]`` hair probability in [0, 1] (sigmoid already applied).
* **Back to the image**: the padding is cropped away and the probability map resized bilinearly to
  the original image size; ``mask = probability > THRESHOLD``. A quantized (uint8/int8) output is
  resized as its integers with the bit-exact bilinear, rounded to the nearest step, and the mask is
  ``integer > quantized_threshold(...)``: the same test, with no full-size float map to make (a
  camera loop that needs only the mask saves its memory traffic; ``hairseg_edge.runtime``).

This module is numpy + OpenCV only: it must import on a device with no TensorFlow.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

CONTRACT_VERSION = 1
#: Side of the square model input used when a caller does not say otherwise.
DEFAULT_INPUT_SIZE = 160
#: A pixel is hair when its probability is strictly above this value.
THRESHOLD = 0.5
#: Value of the letterbox border, per channel (black).
PAD_VALUE = 0
#: Name under which the contract is stored in a .tflite file's metadata.
METADATA_NAME = "hairseg_contract"
#: OpenCV's bilinear mode for the image: the bit-exact one, so x86 and arm64 feed a model the same
#: bytes (see the module docstring).
IMAGE_INTERPOLATION = cv2.INTER_LINEAR_EXACT


@dataclass(frozen=True)
class Contract:
    """What a hairseg model promises; stored as JSON in every exported .tflite."""

    input_size: int = DEFAULT_INPUT_SIZE
    threshold: float = THRESHOLD
    version: int = CONTRACT_VERSION
    color_order: str = "RGB"
    input_range: tuple[int, int] = (0, 255)
    resize: str = "letterbox"
    pad_value: int = PAD_VALUE
    output: str = "hair_probability"

    def __post_init__(self) -> None:
        if not isinstance(self.input_size, int) or self.input_size < 16:
            raise ValueError(f"input_size must be an integer >= 16, got {self.input_size!r}")
        if not 0.0 < self.threshold < 1.0:
            raise ValueError(f"threshold must be in (0, 1), got {self.threshold!r}")

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["input_range"] = list(self.input_range)
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Contract:
        known = {f.name for f in dataclasses.fields(cls)}
        kwargs = {k: v for k, v in d.items() if k in known}
        if "input_range" in kwargs:
            kwargs["input_range"] = tuple(kwargs["input_range"])
        return cls(**kwargs)

    def check_compatible(self) -> None:
        """Raise ValueError when a model was made for a contract this runtime does not speak."""
        current = Contract(input_size=self.input_size)
        if self.version != CONTRACT_VERSION:
            raise ValueError(
                f"model uses preprocessing contract v{self.version}, this hairseg-edge speaks "
                f"v{CONTRACT_VERSION}"
            )
        for field in ("color_order", "input_range", "resize", "pad_value", "output"):
            if getattr(self, field) != getattr(current, field):
                raise ValueError(
                    f"model contract has {field}={getattr(self, field)!r}, "
                    f"expected {getattr(current, field)!r}"
                )


@dataclass(frozen=True)
class Letterbox:
    """Where an image of ``src_h x src_w`` sits inside the ``size x size`` model input."""

    src_h: int
    src_w: int
    size: int
    top: int
    left: int
    new_h: int
    new_w: int


def letterbox_geometry(src_h: int, src_w: int, size: int) -> Letterbox:
    if src_h < 1 or src_w < 1:
        raise ValueError(f"image has no pixels ({src_w}x{src_h})")
    scale = size / max(src_h, src_w)
    new_h = max(1, min(size, round(src_h * scale)))
    new_w = max(1, min(size, round(src_w * scale)))
    top = (size - new_h) // 2
    left = (size - new_w) // 2
    return Letterbox(src_h, src_w, size, top, left, new_h, new_w)


def resize_image(rgb: np.ndarray, width: int, height: int) -> np.ndarray:
    """The contract's image resampling (see the module docstring) to ``width x height``."""
    # Bilinear at exactly half the size samples between 4 pixels with equal weights: a 2x2 box
    # filter, i.e. area averaging, on OpenCV's fast path.
    while rgb.shape[1] >= 2 * width and rgb.shape[0] >= 2 * height:
        rgb = cv2.resize(rgb, (rgb.shape[1] // 2, rgb.shape[0] // 2), interpolation=IMAGE_INTERPOLATION)
    if rgb.shape[:2] == (height, width):
        return rgb
    return cv2.resize(rgb, (width, height), interpolation=IMAGE_INTERPOLATION)


def letterbox_image(rgb: np.ndarray, size: int) -> tuple[np.ndarray, Letterbox]:
    """An RGB uint8 image (any size) -> the ``size x size x 3`` uint8 model input and its geometry."""
    rgb = as_rgb_uint8(rgb)
    box = letterbox_geometry(rgb.shape[0], rgb.shape[1], size)
    if box.new_w == size and box.new_h == size and rgb.shape[:2] != (size, size):
        # A square frame fills the input: no padding, so no canvas to fill and copy into (a camera
        # loop at 256x256 -> 224 saves both on every frame).
        return resize_image(rgb, size, size), box
    canvas = np.full((size, size, 3), PAD_VALUE, dtype=np.uint8)
    inside = (slice(box.top, box.top + box.new_h), slice(box.left, box.left + box.new_w))
    canvas[inside] = resize_image(rgb, box.new_w, box.new_h)  # returns rgb itself when already at size
    return canvas, box


def letterbox_mask(mask: np.ndarray, size: int) -> np.ndarray:
    """A label mask (nonzero = hair) -> the ``size x size`` float32 {0, 1} training target."""
    if mask.ndim == 3:
        mask = mask[..., 0]
    box = letterbox_geometry(mask.shape[0], mask.shape[1], size)
    binary = (mask > 0).astype(np.uint8)
    canvas = np.zeros((size, size), dtype=np.uint8)
    # NEAREST_EXACT samples each output pixel's centre; plain INTER_NEAREST takes the top-left source
    # pixel of each cell and shifts the labels by about half a model pixel against the image.
    resized = cv2.resize(binary, (box.new_w, box.new_h), interpolation=cv2.INTER_NEAREST_EXACT)
    canvas[box.top : box.top + box.new_h, box.left : box.left + box.new_w] = resized
    return canvas.astype(np.float32)


def _crop_map(values: np.ndarray, box: Letterbox) -> np.ndarray:
    """A model's map (``[1, S, S, 1]``, ``[S, S]``, ...) as ``S x S``, without the letterbox padding."""
    while values.ndim > 2:
        values = values[0] if values.shape[0] == 1 else values[..., 0]
    return values[box.top : box.top + box.new_h, box.left : box.left + box.new_w]


def unletterbox(prob: np.ndarray, box: Letterbox) -> np.ndarray:
    """The model's ``size x size`` probability map -> float32 probabilities at the image's size."""
    crop = _crop_map(np.asarray(prob, dtype=np.float32), box)
    if crop.shape == (box.src_h, box.src_w):
        return np.clip(crop, 0.0, 1.0)
    full = cv2.resize(crop, (box.src_w, box.src_h), interpolation=cv2.INTER_LINEAR)
    # In place: a second full-size float32 array costs more than the clip itself (fresh pages).
    return np.clip(full, 0.0, 1.0, out=full)


#: Integer dtypes whose maps :func:`unletterbox_integers` resizes (OpenCV's bit-exact bilinear takes both).
INTEGER_MAP_DTYPES = (np.dtype(np.uint8), np.dtype(np.int8))


def unletterbox_integers(values: np.ndarray, box: Letterbox) -> np.ndarray:
    """A quantized model's ``size x size`` integer map -> integers of the same dtype at the image's size.

    Bit-exact bilinear on the integers, rounded to the nearest step: the result differs from resizing
    the dequantized map by at most half a quantization step (1/512 for a uint8 probability).
    """
    values = np.asarray(values)
    if values.dtype not in INTEGER_MAP_DTYPES:
        raise ValueError(f"expected a uint8 or int8 map, got {values.dtype}")
    crop = _crop_map(values, box)
    if crop.shape == (box.src_h, box.src_w):
        return np.ascontiguousarray(crop)
    return cv2.resize(crop, (box.src_w, box.src_h), interpolation=IMAGE_INTERPOLATION)


def quantized_threshold(threshold: float, scale: float, zero_point: int) -> int:
    """The integer ``q0`` with ``q > q0`` exactly when ``(q - zero_point) * scale > threshold``."""
    if scale <= 0:
        raise ValueError(f"quantization scale must be > 0, got {scale!r}")
    # For integer q, q > c holds exactly when q > floor(c), whether or not c is itself an integer.
    return int(np.floor(zero_point + threshold / scale))


def binarize(prob: np.ndarray, threshold: float = THRESHOLD) -> np.ndarray:
    """Hair probability -> boolean mask (hair where probability > threshold)."""
    return np.asarray(prob) > threshold


def as_rgb_uint8(image: np.ndarray) -> np.ndarray:
    """Coerce an already-decoded RGB(A)/gray array of any integer depth to contiguous HxWx3 uint8."""
    img = np.asarray(image)
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=2)
    if img.ndim != 3 or img.shape[2] not in (1, 3, 4):
        raise ValueError(f"expected an HxW, HxWx3 or HxWx4 image, got shape {img.shape}")
    if img.shape[2] == 1:
        img = np.repeat(img, 3, axis=2)
    elif img.shape[2] == 4:
        img = img[..., :3]
    if img.dtype == np.uint16:
        img = (img >> 8).astype(np.uint8)
    elif img.dtype != np.uint8:
        if np.issubdtype(img.dtype, np.floating) and img.size and float(np.nanmax(img)) <= 1.0:
            img = img * 255.0
        img = np.clip(np.nan_to_num(img), 0, 255).astype(np.uint8)
    return np.ascontiguousarray(img)
