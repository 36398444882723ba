"""``hairseg-edge eval`` as a library: score a model on a data set, optionally against a reference.

>>> from hairseg_edge.evaluate import evaluate, select_dataset
>>> ds = select_dataset("../shared/data/celebamask-hq-hair", split="val")      # doctest: +SKIP
>>> result = evaluate("hair_int8.tflite", ds, reference="hair_float32.tflite")  # doctest: +SKIP
>>> result.metrics.iou, result.agreement.iou, result.agreement.max_prob_diff, result.passed  # doctest: +SKIP

Each image goes through :meth:`Segmenter.segment <hairseg_edge.runtime.Segmenter.segment>` at its own
resolution (the preprocessing contract letterboxes it and maps the probability back), and the binary
mask is scored against the image's ground-truth mask with the streaming meters of
:mod:`hairseg_edge.metrics`. One image is decoded at a time, so memory does not grow with the data set.

With a reference model (e.g. the float original of an int8 model), the same images go through both
models; the result also holds the reference's own scores and the agreement of the two (IoU of the two
masks, largest probability difference). The candidate *passes* when its IoU is at least the reference's
IoU minus ``max_drop``.
"""

from __future__ import annotations

import contextlib
import os
import statistics
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from .data import Dataset, id_list_hash, iter_samples, open_dataset, read_id_list
from .errors import CheckFailed, InputError
from .metrics import (
    DEFAULT_BOUNDARY_TOLERANCE,
    AgreementMeter,
    AgreementMetrics,
    SegmentationMeter,
    SegmentationMetrics,
)

if TYPE_CHECKING:
    from .runtime import Segmentation, Segmenter

#: Default largest IoU drop (absolute) a candidate may show against its reference.
DEFAULT_MAX_DROP = 0.005
SPLITS = ("all", "val", "train")

#: ``progress(done, total)`` after each image.
ProgressCallback = Callable[[int, int], None]


# --------------------------------------------------------------------------------------------------
# Choosing the images
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SplitChoice:
    """Which split ``eval`` scores and why: ``split`` is one of :data:`SPLITS`; ``warning`` is set when
    the scores will be inflated because the model trained on these photos."""

    split: str
    reason: str
    warning: str | None = None


def bundled_training_sets() -> tuple[str, ...]:
    """Folder names of the data sets the bundled model trained on (from its model card)."""
    import json

    from .models import MODELS_DIR

    card = MODELS_DIR / "model_card.json"
    if not card.is_file():
        return ()
    data = json.loads(card.read_text()).get("training", {}).get("data", [])
    return tuple(os.path.basename(os.path.normpath(d)) for d in data)


def _is_bundled(model: str | os.PathLike[str]) -> bool:
    """A file of any bundled tier (they all trained on the card's data sets)."""
    from . import models

    try:
        return os.path.realpath(model) in {os.path.realpath(tier.path(kind)) for tier in models.TIERS.values()
                                           for kind in tier.files}
    except OSError:
        return False


def choose_split(split: str, model: str | os.PathLike[str], data: str | os.PathLike[str], *,
                 ids_given: bool = False) -> SplitChoice:
    """Resolve ``--split`` (``auto`` by default) for ``model`` on the data set at ``data``.

    A model scored on photos it trained on looks better than it is (the bundled model: 0.939 IoU on all
    of figaro1k-hair-train against 0.897 on its validation split). So ``auto`` picks the recorded
    validation split (the stable hash split the bundled model never trained on, listed in
    ``hairseg_edge/splits/``) when the bundled model meets one of its training sets, and every photo
    otherwise; with an id list (``ids_given``) ``auto`` scores exactly those ids. An explicit ``all``
    or ``train`` on a training set of the bundled model is honoured with a warning.
    """
    if split not in (*SPLITS, "auto"):
        raise InputError(f"--split must be one of auto, {', '.join(SPLITS)}, got {split!r}")
    name = os.path.basename(os.path.normpath(os.path.abspath(data)))
    trained_on = _is_bundled(model) and name in bundled_training_sets()
    if split == "auto":
        if ids_given:
            return SplitChoice("all", "the listed ids")
        if trained_on:
            return SplitChoice("val", f"validation split: the bundled model trained on the rest of {name}")
        return SplitChoice("all", "all photos")
    reason = {"all": "all photos", "val": "validation split", "train": "training split"}[split]
    warning = None
    if trained_on and split != "val":
        warning = (f"WARNING: the bundled model trained on {name}; --split {split} scores photos it has "
                   "seen and inflates every figure. Use --split val (the default here) to quote a result.")
    return SplitChoice(split, reason, warning)


def select_dataset(root: str | os.PathLike[str] | Dataset, *, split: str = "all",
                   ids_file: str | os.PathLike[str] | None = None,
                   limit: int | None = None) -> Dataset:
    """The images to score: a split of the data set (``all`` by default), restricted to the ids in
    ``ids_file`` (one per line, ``#`` comments) when given, then the first ``limit`` of them."""
    if split not in SPLITS:
        raise InputError(f"--split must be one of {', '.join(SPLITS)}, got {split!r}")
    if limit is not None and limit < 1:
        raise InputError(f"--limit must be >= 1, got {limit}")
    ds = root if isinstance(root, Dataset) else open_dataset(root)
    if ids_file is not None:
        ids = read_id_list(ids_file)
        if not ids:
            raise InputError("the id list is empty", ids_file)
        ds = ds.subset(ids)
    if split != "all":
        train, val = ds.split()
        ds = val if split == "val" else train
    ds = ds.limit(limit)
    if len(ds) == 0:
        raise InputError(f"no images selected (split {split!r})", ds.root)
    return ds


# --------------------------------------------------------------------------------------------------
# Results
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelScore:
    """One model's scores on the images: metrics against ground truth and invoke timings."""

    model: str
    adapter: str
    metrics: SegmentationMetrics
    p50_ms: float
    p90_ms: float
    mean_ms: float
    flip_tta: bool = False  # scored with mirror test-time augmentation (p50_ms covers both passes)
    roi: str = "off"  # "auto": through the region stage (p50_ms covers the whole of segment())

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "adapter": self.adapter, **self.metrics.to_dict(),
                "p50_ms": self.p50_ms, "p90_ms": self.p90_ms, "mean_ms": self.mean_ms,
                "flip_tta": self.flip_tta, "roi": self.roi}


@dataclass(frozen=True)
class EvalResult:
    """Scores of a model on a data set, and (with a reference) the comparison with the reference.

    ``to_dict()`` gives the flat JSON of ``hairseg-edge eval --json``: ``iou``, ``mean_iou``, ``f1``,
    ``precision``, ``recall``, ``accuracy``, ``boundary_f``, ``n``, ``p50_ms`` and, with a reference,
    ``reference_iou``, ``agreement_iou``, ``passed`` (plus details).
    """

    score: ModelScore
    data: str
    layout: str
    ids_hash: str
    reference: ModelScore | None = None
    agreement: AgreementMetrics | None = None
    max_drop: float = DEFAULT_MAX_DROP

    @property
    def metrics(self) -> SegmentationMetrics:
        return self.score.metrics

    @property
    def iou_drop(self) -> float | None:
        """Reference IoU minus candidate IoU (positive = the candidate is worse)."""
        return None if self.reference is None else self.reference.metrics.iou - self.metrics.iou

    @property
    def passed(self) -> bool | None:
        """True/False with a reference (IoU >= reference IoU - max_drop), None without one."""
        drop = self.iou_drop
        # A hair of float slack, so a drop of exactly max_drop passes as documented.
        return None if drop is None else drop <= self.max_drop + 1e-12

    def check(self) -> None:
        """Raise CheckFailed (exit 1) when the candidate fell more than ``max_drop`` below the reference."""
        if self.passed is False:
            assert self.reference is not None and self.iou_drop is not None
            raise CheckFailed(
                f"IoU {self.metrics.iou:.4f} is {self.iou_drop:.4f} below the reference's "
                f"{self.reference.metrics.iou:.4f} ({self.reference.model}); allowed drop "
                f"{self.max_drop:.4f}"
            )

    def to_dict(self) -> dict[str, Any]:
        m = self.metrics
        out: dict[str, Any] = {
            "iou": m.iou, "mean_iou": m.mean_iou, "f1": m.f1, "precision": m.precision,
            "recall": m.recall, "accuracy": m.accuracy, "boundary_f": m.boundary_f, "n": m.n,
            "p50_ms": self.score.p50_ms, "p90_ms": self.score.p90_ms, "mean_ms": self.score.mean_ms,
            "boundary_tolerance": m.boundary_tolerance,
            "model": self.score.model, "adapter": self.score.adapter, "flip_tta": self.score.flip_tta,
            "data": self.data, "layout": self.layout, "ids_hash": self.ids_hash,
        }
        if self.reference is not None and self.agreement is not None:
            out.update({
                "reference_iou": self.reference.metrics.iou,
                "agreement_iou": self.agreement.iou,
                "passed": self.passed,
                "max_drop": self.max_drop,
                "iou_drop": self.iou_drop,
                "agreement_mean_iou": self.agreement.mean_iou,
                "pixel_agreement": self.agreement.pixel_agreement,
                "max_prob_diff": self.agreement.max_prob_diff,
                "mean_prob_diff": self.agreement.mean_prob_diff,
                "reference": self.reference.to_dict(),
            })
        return out


# --------------------------------------------------------------------------------------------------
# Scoring
# --------------------------------------------------------------------------------------------------


class _Scorer:
    """A Segmenter, its meter and its invoke times (a list of floats: 8 bytes per image)."""

    def __init__(self, segmenter: Segmenter, boundary_tolerance: int):
        self.segmenter = segmenter
        self.meter = SegmentationMeter(boundary_tolerance)
        self.invoke_ms: list[float] = []

    def segment(self, rgb: np.ndarray, target: np.ndarray) -> Segmentation:
        """``Segmenter.segment`` in its three public steps, so the model invoke alone is timed.

        With the region stage (``roi="auto"``) the time is the whole of ``segment`` (both passes,
        crops and paste), since the stage's work is the point of timing it."""
        if getattr(self.segmenter, "region_stage", None) is not None:
            started = time.perf_counter()
            seg = self.segmenter.segment(rgb)
            self.invoke_ms.append((time.perf_counter() - started) * 1000.0)
            self.meter.update(seg.mask, target)
            return seg
        model_image, context = self.segmenter.prepare(rgb)
        started = time.perf_counter()
        outputs = self.segmenter.infer(model_image)
        self.invoke_ms.append((time.perf_counter() - started) * 1000.0)
        seg = self.segmenter.finish(outputs, context)
        self.meter.update(seg.mask, target)
        return seg

    def score(self) -> ModelScore:
        times = self.invoke_ms
        return ModelScore(
            model=str(self.segmenter.path),
            adapter=str(self.segmenter.adapter_name),
            metrics=self.meter.result(),
            p50_ms=float(np.percentile(times, 50)),
            p90_ms=float(np.percentile(times, 90)),
            mean_ms=float(statistics.fmean(times)),
            flip_tta=bool(getattr(self.segmenter, "flip_tta", False)),
            roi=str(getattr(self.segmenter, "roi", "off")),
        )


def _open(model: Any, threads: int, adapter: str | None, stack: contextlib.ExitStack) -> Segmenter:
    """An open Segmenter: ``model`` itself when it is one (the caller keeps ownership), else loaded."""
    if hasattr(model, "segment") and hasattr(model, "adapter_name"):
        return model
    from .runtime import Segmenter

    return stack.enter_context(Segmenter(model, threads=threads, adapter=adapter))


def agreement(model: Any, reference: Any, images: Iterable[np.ndarray], *, threads: int = 1) -> AgreementMetrics:
    """How far two models' masks and probabilities agree on the same RGB images (no ground truth):
    each image through both, the way ``segment`` runs them. ``model``/``reference``: a path or an open
    Segmenter."""
    meter = AgreementMeter()
    with contextlib.ExitStack() as stack:
        a, b = _open(model, threads, None, stack), _open(reference, threads, None, stack)
        for rgb in images:
            ra, rb = a.segment(rgb), b.segment(rgb)
            meter.update(ra.mask, rb.mask, ra.probability, rb.probability)
    return meter.result()


def evaluate(model: Any, dataset: Dataset | str | os.PathLike[str], *, threads: int = 1,
             adapter: str | None = None, reference: Any = None,
             reference_adapter: str | None = None, max_drop: float = DEFAULT_MAX_DROP,
             boundary_tolerance: int = DEFAULT_BOUNDARY_TOLERANCE,
             progress: ProgressCallback | None = None) -> EvalResult:
    """Score ``model`` (a .tflite path or an open Segmenter) on ``dataset`` (a Dataset or a folder).

    ``adapter`` / ``reference_adapter`` pick a peer adapter (None = detect from the model's tensors).
    ``threads`` and the adapters apply to models given as paths; an open Segmenter is used as it is
    and left open (so a caller scoring several candidates can load the reference once).
    With ``reference``, both models see the same images and the result carries the reference's
    scores, their agreement and ``passed``; call :meth:`EvalResult.check` to turn a failure into
    :class:`~hairseg_edge.errors.CheckFailed`. Raises InputError for an unusable model or data set,
    including an image or mask that cannot be read (scores over a silently smaller set would lie).
    """
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise InputError(f"--threads must be an integer >= 1, got {threads!r}")
    if not max_drop >= 0.0:
        raise InputError(f"--max-drop must be >= 0, got {max_drop}")
    ds = dataset if isinstance(dataset, Dataset) else open_dataset(dataset)
    if len(ds) == 0:
        raise InputError("the data set has no images", ds.root)
    with contextlib.ExitStack() as stack:
        candidate = _Scorer(_open(model, threads, adapter, stack), boundary_tolerance)
        ref = None
        agreement = None
        if reference is not None:
            ref = _Scorer(_open(reference, threads, reference_adapter, stack), boundary_tolerance)
            agreement = AgreementMeter()
        total = len(ds)
        for done, (_sample, rgb, target) in enumerate(iter_samples(ds), start=1):
            seg = candidate.segment(rgb, target)
            if ref is not None and agreement is not None:
                ref_seg = ref.segment(rgb, target)
                agreement.update(seg.mask, ref_seg.mask, seg.probability, ref_seg.probability)
            if progress is not None:
                progress(done, total)
        return EvalResult(
            score=candidate.score(),
            data=str(ds.root),
            layout=ds.layout,
            ids_hash=id_list_hash(ds.ids),
            reference=None if ref is None else ref.score(),
            agreement=None if agreement is None else agreement.result(),
            max_drop=float(max_drop),
        )


__all__ = ["DEFAULT_MAX_DROP", "SPLITS", "EvalResult", "ModelScore", "SplitChoice", "agreement", "choose_split",
           "evaluate",
           "select_dataset"]
