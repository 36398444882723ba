"""Proving converted models against the float original, through the device runtime only.

The float original is converted to a float32 .tflite first (unpruned, as given), so the reference
and every candidate run through the same :class:`~hairseg_edge.runtime.Segmenter` (contract
letterbox, the runtime's own input quantization) and the same meters of :mod:`hairseg_edge.metrics`
on the same images. With ground truth, :func:`hairseg_edge.evaluate.evaluate` does the scoring;
on an images-only folder the two models' masks are compared with the same ``AgreementMeter``
(``hairseg_edge.evaluate.agreement``).

The gate (:func:`judge`): a candidate fails when its IoU is more than ``max_drop`` under the float
original's, or when its agreement IoU with the float original is under ``min_agreement``. Without
ground truth only the agreement is checked, and the decision says so.
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from hairseg_edge.evaluate import agreement, evaluate
from hairseg_edge.runtime import Segmenter

from .image_sets import ImageSet, load_rgb

#: ``progress(done, total)`` after each image.
ImageProgress = Callable[[int, int], None]
#: Invokes per model before timing starts (allocations, XNNPACK packing, caches).
WARMUP_INVOKES = 3
#: The timed invokes are spread over this many round-robin rounds across all models, so a burst of
#: load from other processes on a shared machine hits every model alike.
LATENCY_ROUNDS = 5


@dataclass(frozen=True)
class Scores:
    """One model's numbers on the evaluation images (None where they cannot be measured)."""

    iou: float | None
    f1: float | None
    agreement_iou: float | None
    max_prob_diff: float | None
    images: int

    def to_dict(self) -> dict[str, Any]:
        return {"iou": self.iou, "f1": self.f1, "agreement_iou": self.agreement_iou,
                "max_prob_diff": self.max_prob_diff, "images": self.images}


def score(model: str | os.PathLike[str], images: ImageSet, *,
          reference: str | os.PathLike[str] | None = None,
          progress: ImageProgress | None = None) -> Scores:
    """Score ``model`` on ``images`` (one thread) and, with ``reference``, its agreement with it."""
    if images.ground_truth:
        result = evaluate(os.fspath(model), images.dataset, threads=1,
                          reference=None if reference is None else os.fspath(reference),
                          progress=progress)
        agreement = result.agreement
        return Scores(
            iou=result.metrics.iou,
            f1=result.metrics.f1,
            agreement_iou=None if agreement is None else agreement.iou,
            max_prob_diff=None if agreement is None else agreement.max_prob_diff,
            images=result.metrics.n,
        )
    if reference is None:  # nothing to measure a lone model against without masks
        return Scores(None, None, None, None, len(images))
    return _agreement_only(model, reference, images, progress)


def _agreement_only(model: str | os.PathLike[str], reference: str | os.PathLike[str], images: ImageSet,
                    progress: ImageProgress | None) -> Scores:
    def rgbs() -> Iterator[np.ndarray]:
        for done, sample in enumerate(images.samples, start=1):
            yield load_rgb(sample)
            if progress is not None:  # resumed once both models have segmented this image
                progress(done, len(images))

    result = agreement(model, reference, rgbs(), threads=1)
    return Scores(None, None, result.iou, result.max_prob_diff, result.n)


@dataclass(frozen=True)
class Decision:
    """The gate's verdict on one candidate."""

    passed: bool
    reason: str


def judge(candidate: Scores, reference: Scores, *, max_drop: float, min_agreement: float) -> Decision:
    """Apply the gate (see the module docstring); the reason names the numbers either way."""
    failures = []
    checks = []
    if candidate.iou is not None and reference.iou is not None:
        drop = reference.iou - candidate.iou
        checks.append(f"IoU drop {drop:+.4f} (max {max_drop:.4f})")
        # A hair of float slack, so a drop of exactly max_drop passes as documented.
        if drop > max_drop + 1e-12:
            failures.append(f"IoU {candidate.iou:.4f} is {drop:.4f} under the float model's "
                            f"{reference.iou:.4f} (allowed {max_drop:.4f})")
    if candidate.agreement_iou is None:
        failures.append("no agreement with the float model could be measured")
    else:
        checks.append(f"agreement {candidate.agreement_iou:.4f} (min {min_agreement:.4f})")
        if candidate.agreement_iou < min_agreement:
            failures.append(f"agreement IoU {candidate.agreement_iou:.4f} with the float model is under "
                            f"{min_agreement:.4f}")
    if failures:
        return Decision(False, "; ".join(failures))
    return Decision(True, ", ".join(checks))


def measure_p50_ms(models: Mapping[str, str | os.PathLike[str]], images: ImageSet, *,
                   runs: int) -> dict[str, float]:
    """Median invoke time in ms of each model on one thread, on a real evaluation image.

    Each model is warmed up, then timed ``runs`` times in :data:`LATENCY_ROUNDS` round-robin
    rounds. The time covers what a device pays per frame at the model's size: input quantization,
    invoke and output dequantization (not the letterbox, which is the same for every model).
    """
    per_round = max(1, math.ceil(runs / LATENCY_ROUNDS))
    times: dict[str, list[float]] = {name: [] for name in models}
    with contextlib.ExitStack() as stack:
        segmenters = {name: stack.enter_context(Segmenter(path, threads=1))
                      for name, path in models.items()}
        inputs = {}
        rgb = load_rgb(images.samples[0])
        for name, seg in segmenters.items():
            inputs[name], _ = seg.prepare(rgb)
            for _ in range(WARMUP_INVOKES):
                seg.predict_input(inputs[name])
        for _ in range(LATENCY_ROUNDS):
            for name, seg in segmenters.items():
                for _ in range(per_round):
                    started = time.perf_counter()
                    seg.predict_input(inputs[name])
                    times[name].append((time.perf_counter() - started) * 1000.0)
    return {name: float(np.percentile(values, 50)) for name, values in times.items()}


def io_summary(model: str | os.PathLike[str]) -> dict[str, Any]:
    """The model's input and output tensors (dtype, shape, scale, zero point) as the runtime sees them."""
    with Segmenter(model, threads=1) as seg:
        return {"input": seg.inputs[0].to_dict(), "output": seg.outputs[0].to_dict()}
