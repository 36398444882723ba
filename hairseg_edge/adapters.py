"""Adapters: how each kind of model wants its pixels and what its output means.

A hairseg model follows :mod:`hairseg_edge.contract` (letterbox, raw RGB 0..255 in, one-channel hair
probability out). The public peer models in ``../shared/peers`` each follow their own published
recipe; an adapter wraps one recipe so every model runs through the same :class:`~hairseg_edge.runtime.Segmenter`
API and can be compared fairly. Adapters are looked up by name (:func:`get_adapter`) or detected from
the model's tensors (:func:`detect_adapter`).

An adapter splits the work in four steps so ``bench --end-to-end`` can time them separately:

``prepare(rgb, input_hw)``   any-size RGB uint8 -> the ``H x W x 3`` uint8 image the model sees + context
``encode(model_image, spec)``  that image -> the input tensor's *real* values (before quantization)
``decode(outputs)``          dequantized output tensors -> ``H x W`` float32 hair probability
``postprocess(prob, ctx)``    probability at the model's size -> probability at the image's size

Quantizing the input and dequantizing the outputs from the model's own parameters is done once, in
the runtime, for every adapter.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from . import contract
from .errors import InputError


@dataclass(frozen=True)
class TensorSpec:
    """One input or output tensor of a model, as far as adapters and reports care."""

    name: str
    index: int
    shape: tuple[int, ...]
    dtype: str  # numpy dtype name: "float32", "uint8", "int8", "int64", ...
    scale: float = 0.0  # per-tensor quantization; 0.0 = not quantized
    zero_point: int = 0
    per_channel: bool = False  # quantized with one scale per channel (weights, never our IO)

    @property
    def quantized(self) -> bool:
        return self.scale > 0.0

    @classmethod
    def from_details(cls, details: dict[str, Any]) -> TensorSpec:
        """From an entry of ``Interpreter.get_input_details()`` / ``get_output_details()``."""
        shape = tuple(int(d) for d in details["shape"])
        signature = details.get("shape_signature")
        if signature is not None and len(signature) == len(shape):
            # -1 in the signature = dynamic; keep it visible to the checks
            shape = tuple(int(s) if int(s) < 0 else d for s, d in zip(signature, shape))
        scale, zero_point = details.get("quantization", (0.0, 0))
        qp = details.get("quantization_parameters") or {}
        scales = np.asarray(qp.get("scales", []))
        return cls(
            name=str(details.get("name", "")),
            index=int(details["index"]),
            shape=shape,
            dtype=np.dtype(details["dtype"]).name,
            scale=float(scale),
            zero_point=int(zero_point),
            per_channel=scales.size > 1,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "shape": list(self.shape),
            "dtype": self.dtype,
            "scale": self.scale,
            "zero_point": self.zero_point,
        }


def _float_input(spec: TensorSpec) -> bool:
    return spec.dtype in ("float32", "float16") or spec.quantized


class Adapter:
    """Base class; subclasses describe one model family's recipe."""

    #: Name used on the command line (``--adapter``).
    name: str = ""
    #: One line for ``--help`` and ``info``.
    description: str = ""
    #: Whether this adapter follows the hairseg preprocessing contract.
    follows_contract: bool = False

    def mismatch(self, inputs: Sequence[TensorSpec], outputs: Sequence[TensorSpec]) -> str | None:
        """Why this model's tensors do not fit this adapter, or None when they do."""
        raise NotImplementedError

    def matches(self, inputs: Sequence[TensorSpec], outputs: Sequence[TensorSpec]) -> bool:
        return self.mismatch(inputs, outputs) is None

    def input_hw(self, inputs: Sequence[TensorSpec]) -> tuple[int, int]:
        shape = inputs[0].shape
        return int(shape[1]), int(shape[2])

    def prepare(self, rgb: np.ndarray, input_hw: tuple[int, int]) -> tuple[np.ndarray, Any]:
        raise NotImplementedError

    def encode(self, model_image: np.ndarray, spec: TensorSpec) -> np.ndarray:
        raise NotImplementedError

    def decode(self, outputs: Sequence[np.ndarray]) -> np.ndarray:
        raise NotImplementedError

    def postprocess(self, prob: np.ndarray, context: Any) -> np.ndarray:
        raise NotImplementedError


def _shape_text(specs: Sequence[TensorSpec]) -> str:
    return ", ".join(f"{list(s.shape)} {s.dtype}" for s in specs) or "none"


class HairsegAdapter(Adapter):
    """Our own models: the contract in :mod:`hairseg_edge.contract`, nothing else."""

    name = "hairseg"
    description = "hairseg-edge models: letterbox, raw RGB 0..255 in, hair probability out"
    follows_contract = True

    def mismatch(self, inputs, outputs):
        if len(inputs) != 1:
            return f"expected 1 input, the model has {len(inputs)}"
        shape = inputs[0].shape
        if len(shape) != 4 or shape[0] not in (1, -1) or shape[3] != 3 or shape[1] != shape[2]:
            return f"expected a [1, S, S, 3] input, got {list(shape)}"
        if inputs[0].dtype not in ("uint8", "int8", "float32", "float16"):
            return f"expected a uint8, int8 or float32 input, got {inputs[0].dtype}"
        if len(outputs) != 1:
            return f"expected 1 output (a hair map), the model has {len(outputs)}: {_shape_text(outputs)}"
        out = outputs[0].shape
        if len(out) != 4 or out[3] != 1 or out[1:3] != shape[1:3]:
            side = shape[1]
            return (f"output {list(out)} is not a hair map "
                    f"(expected [1, {side}, {side}, 1], a probability per input pixel)")
        if outputs[0].dtype not in ("uint8", "int8", "float32", "float16"):
            return f"output dtype {outputs[0].dtype} is not a probability"
        return None

    def prepare(self, rgb, input_hw):
        if input_hw[0] != input_hw[1]:
            raise InputError(f"hairseg models take a square input, got {input_hw}")
        return contract.letterbox_image(rgb, input_hw[0])

    def encode(self, model_image, spec):
        # Rescaling lives inside the model: the input tensor holds the raw values 0..255.
        return model_image

    def decode(self, outputs):
        prob = np.asarray(outputs[0], dtype=np.float32).reshape(outputs[0].shape[1:3])
        return np.clip(prob, 0.0, 1.0)

    def postprocess(self, prob, context):
        return contract.unletterbox(prob, context)


@dataclass(frozen=True)
class _StretchContext:
    src_h: int
    src_w: int


class _StretchAdapter(Adapter):
    """Peers resize the whole frame to their input (no letterbox) and back, bilinearly."""

    def prepare(self, rgb, input_hw):
        rgb = contract.as_rgb_uint8(rgb)
        h, w = input_hw
        if rgb.shape[:2] == (h, w):
            return rgb, _StretchContext(h, w)
        resized = cv2.resize(rgb, (w, h), interpolation=cv2.INTER_LINEAR)
        return resized, _StretchContext(rgb.shape[0], rgb.shape[1])

    def postprocess(self, prob, context):
        prob = np.asarray(prob, dtype=np.float32)
        if prob.shape != (context.src_h, context.src_w):
            prob = cv2.resize(prob, (context.src_w, context.src_h), interpolation=cv2.INTER_LINEAR)
        return np.clip(prob, 0.0, 1.0)


def _two_class_mismatch(inputs, outputs, channels_in: int) -> str | None:
    if len(inputs) != 1 or len(outputs) != 1:
        return f"expected 1 input and 1 output, got {len(inputs)} and {len(outputs)}"
    shape, out = inputs[0].shape, outputs[0].shape
    if len(shape) != 4 or shape[0] != 1 or shape[3] != channels_in:
        return f"expected a [1, H, W, {channels_in}] input, got {list(shape)}"
    if not _float_input(inputs[0]):
        return f"expected a float input, got {inputs[0].dtype}"
    if len(out) != 4 or out[3] != 2 or out[1:3] != shape[1:3]:
        return f"expected a [1, H, W, 2] output, got {list(out)}"
    return None


class MediaPipeHairAdapter(_StretchAdapter):
    """MediaPipe hair segmenter: RGB/255 plus a zero 4th channel in, 2-class logits out."""

    name = "mediapipe-hair"
    description = "MediaPipe hair segmenter: [1,512,512,4] RGB/255 + zero channel, softmax channel 1"

    def mismatch(self, inputs, outputs):
        return _two_class_mismatch(inputs, outputs, channels_in=4)

    def encode(self, model_image, spec):
        values = np.zeros(model_image.shape[:2] + (4,), dtype=np.float32)
        # The 4th channel was the previous frame's mask in MediaPipe's legacy video graph; the
        # Tasks API feeds zeros, and so do we.
        values[..., :3] = model_image.astype(np.float32) * (1.0 / 255.0)
        return values

    def decode(self, outputs):
        logits = np.asarray(outputs[0], dtype=np.float32)[0]
        # softmax over 2 channels, channel 1 = hair: sigmoid of the logit difference (stable)
        return (1.0 / (1.0 + np.exp(logits[..., 0] - logits[..., 1]))).astype(np.float32)


class BiSeNetV2CelebAMaskAdapter(_StretchAdapter):
    """BiSeNetV2 CelebAMask-HQ face parser: (x-128)/128 in, 19 class ids out, hair = 17."""

    name = "bisenetv2-celebamask"
    description = "BiSeNetV2 CelebAMask-HQ face parser: (x-128)/128 in, class ids out, hair = 17"
    HAIR_CLASS = 17

    def mismatch(self, inputs, outputs):
        if len(inputs) != 1 or len(outputs) != 1:
            return f"expected 1 input and 1 output, got {len(inputs)} and {len(outputs)}"
        shape, out = inputs[0].shape, outputs[0].shape
        if len(shape) != 4 or shape[0] != 1 or shape[3] != 3:
            return f"expected a [1, H, W, 3] input, got {list(shape)}"
        if not _float_input(inputs[0]):
            return f"expected a float input, got {inputs[0].dtype}"
        if outputs[0].dtype not in ("int64", "int32") or outputs[0].quantized:
            return f"expected integer class ids out, got {outputs[0].dtype}"
        if tuple(out) not in (tuple(shape[1:3]), (1, *shape[1:3])):
            return f"expected an [H, W] map of class ids, got {list(out)}"
        return None

    def encode(self, model_image, spec):
        return (model_image.astype(np.float32) - 128.0) * (1.0 / 128.0)

    def decode(self, outputs):
        ids = np.asarray(outputs[0])
        ids = ids.reshape([d for d in ids.shape if d != 1] or [1])
        return (ids == self.HAIR_CLASS).astype(np.float32)


class CommunityMobileAdapter(_StretchAdapter):
    """Community MobileNetV1 hair model: RGB/255 in, 2-channel softmax out, hair = channel 0."""

    name = "community-mobile"
    description = "community mobile hair model: [1,160,160,3] RGB/255, softmax channel 0 = hair"

    def mismatch(self, inputs, outputs):
        return _two_class_mismatch(inputs, outputs, channels_in=3)

    def encode(self, model_image, spec):
        return model_image.astype(np.float32) * (1.0 / 255.0)

    def decode(self, outputs):
        return np.clip(np.asarray(outputs[0], dtype=np.float32)[0, ..., 0], 0.0, 1.0)


#: name -> adapter. Detection tries hairseg first: our own models must never be taken for a peer.
ADAPTERS: dict[str, Adapter] = {
    adapter.name: adapter
    for adapter in (
        HairsegAdapter(),
        MediaPipeHairAdapter(),
        BiSeNetV2CelebAMaskAdapter(),
        CommunityMobileAdapter(),
    )
}
_DETECTION_ORDER = ("hairseg", "mediapipe-hair", "bisenetv2-celebamask", "community-mobile")


def adapter_names() -> list[str]:
    return list(ADAPTERS)


def get_adapter(name: str) -> Adapter:
    """The adapter called ``name``; an unknown name lists the valid ones."""
    try:
        return ADAPTERS[name]
    except KeyError:
        raise InputError(
            f"unknown adapter {name!r}; choose one of: {', '.join(ADAPTERS)}"
        ) from None


def detect_adapter(inputs: Sequence[TensorSpec], outputs: Sequence[TensorSpec]) -> Adapter | None:
    """The first adapter whose recipe fits these tensors, or None."""
    for name in _DETECTION_ORDER:
        if ADAPTERS[name].matches(inputs, outputs):
            return ADAPTERS[name]
    return None
