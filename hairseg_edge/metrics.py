"""Segmentation metrics, accumulated one image at a time so memory does not grow with the data set.

Two meters:

* :class:`SegmentationMeter` scores predicted hair masks against ground truth: IoU (global over the
  data set and mean per image), F1/Dice, precision, recall, pixel accuracy and the boundary F-score.
* :class:`AgreementMeter` compares two models' masks on the same images (an int8 model against its
  float original): global IoU, per-image mean IoU, pixel agreement and the largest probability gap.

Both keep a handful of integer counters, never the masks, so scoring 30,000 images costs the same
memory as scoring one. Per-image helpers (:func:`iou`, :func:`f1`, :func:`precision`, :func:`recall`,
:func:`boundary_f`) give the same numbers for a single pair of masks.

**Masks.** A mask is a 2-D array (``HxW``; ``HxWx1`` is accepted) where hair is ``True``/nonzero:
bool, any integer type (``0/1`` and ``0/255`` both work), or float holding only 0 and 1. A float mask
with other values is almost always a probability map passed by mistake, so it is rejected; binarise it
with :func:`hairseg_edge.contract.binarize` first.

**Empty cases** (a data set of bald heads must not divide by zero, and a model that correctly predicts
"no hair" must score perfectly):

* IoU (per image or global) with an empty union (neither mask has hair) is 1.0.
* F1/Dice with no positives in either mask is 1.0.
* Precision with no predicted positives is 1.0 when the target has no positives either, else 0.0.
  Recall with no target positives is 1.0 when the prediction has no positives either, else 0.0.
  (So ``precision(a, b) == recall(b, a)`` always.)
* Boundary F-score: same rule for its boundary precision and recall, so two masks with no boundary at
  all (both empty) score 1.0, and an empty mask against a non-empty one scores 0.0.
* :meth:`SegmentationMeter.result` on a meter that saw no images raises ``ValueError`` (there is no
  meaningful mean over nothing).

**Boundary F-score** (Martin et al. / DAVIS "F"): the boundary of a mask is its hair pixels that have a
4-neighbour that is not hair, where pixels outside the image count as not hair (so a mask that reaches
the frame edge has a boundary along it; a full mask's boundary is the frame). A predicted boundary
pixel is *matched* when a target boundary pixel lies within ``tolerance`` pixels (Euclidean distance,
inclusive), and vice versa. Boundary precision = matched predicted / all predicted boundary pixels,
boundary recall = matched target / all target boundary pixels, F = their harmonic mean; the meter sums
the four counts over the data set before dividing (global, like its IoU).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

#: Default boundary tolerance in pixels (at the image's own resolution).
DEFAULT_BOUNDARY_TOLERANCE = 2


# --------------------------------------------------------------------------------------------------
# Small pieces shared by the meters and the per-image helpers
# --------------------------------------------------------------------------------------------------


def _as_mask(mask: Any, name: str) -> np.ndarray:
    """Coerce a mask to a 2-D bool array (see the module docstring for what is accepted)."""
    arr = np.asarray(mask)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[..., 0]
    if arr.ndim != 2:
        raise ValueError(f"{name} must be a 2-D mask (HxW), got shape {arr.shape}")
    if arr.size == 0:
        raise ValueError(f"{name} has no pixels (shape {arr.shape})")
    if arr.dtype == bool:
        return arr
    if np.issubdtype(arr.dtype, np.integer):
        return arr != 0
    if np.issubdtype(arr.dtype, np.floating):
        ones = arr == 1.0
        if not np.all(ones | (arr == 0.0)):
            raise ValueError(
                f"{name} is a float array with values other than 0 and 1 (a probability map?); "
                "binarise it first (hairseg_edge.contract.binarize)"
            )
        return ones
    raise ValueError(f"{name} has unsupported dtype {arr.dtype}; expected bool, integer or float")


def _pair(
    pred: Any, target: Any, names: tuple[str, str] = ("pred", "target")
) -> tuple[np.ndarray, np.ndarray]:
    a = _as_mask(pred, names[0])
    b = _as_mask(target, names[1])
    if a.shape != b.shape:
        raise ValueError(f"{names[0]} and {names[1]} differ in shape: {a.shape} vs {b.shape}")
    return a, b


def _ratio(num: int, den: int, empty: float) -> float:
    """``num / den``, or ``empty`` when the denominator is zero (the documented empty case)."""
    return float(num) / float(den) if den else float(empty)


def _precision_from_counts(tp: int, fp: int, fn: int) -> float:
    if tp + fp == 0:
        return 1.0 if tp + fn == 0 else 0.0
    return tp / (tp + fp)


def _recall_from_counts(tp: int, fp: int, fn: int) -> float:
    if tp + fn == 0:
        return 1.0 if tp + fp == 0 else 0.0
    return tp / (tp + fn)


def _f_from_pr(precision: float, recall: float) -> float:
    total = precision + recall
    return 2.0 * precision * recall / total if total > 0 else 0.0


def _confusion(pred: np.ndarray, target: np.ndarray) -> tuple[int, int, int, int]:
    """(true positives, false positives, false negatives, true negatives) of two bool masks."""
    tp = int(np.count_nonzero(pred & target))
    n_pred = int(np.count_nonzero(pred))
    n_target = int(np.count_nonzero(target))
    fp = n_pred - tp
    fn = n_target - tp
    tn = pred.size - tp - fp - fn
    return tp, fp, fn, tn


def mask_boundary(mask: Any) -> np.ndarray:
    """The boundary of a mask: hair pixels with a non-hair 4-neighbour (outside the image = non-hair)."""
    m = _as_mask(mask, "mask")
    padded = np.pad(m, 1, mode="constant", constant_values=False)
    interior = (
        padded[1:-1, 1:-1]
        & padded[:-2, 1:-1]
        & padded[2:, 1:-1]
        & padded[1:-1, :-2]
        & padded[1:-1, 2:]
    )
    return m & ~interior


def _matched(boundary: np.ndarray, other_boundary: np.ndarray, tolerance: int) -> int:
    """How many pixels of ``boundary`` lie within ``tolerance`` (Euclidean) of ``other_boundary``."""
    if not boundary.any() or not other_boundary.any():
        return 0
    if tolerance == 0:
        return int(np.count_nonzero(boundary & other_boundary))
    # Distance from every pixel to the nearest pixel of other_boundary (the zeros of this image);
    # DIST_MASK_PRECISE gives the exact Euclidean distance, so "within 2 px" means a disc of radius 2.
    zeros_at_boundary = np.where(other_boundary, 0, 1).astype(np.uint8)
    distance = cv2.distanceTransform(zeros_at_boundary, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    # A tiny slack absorbs float rounding of sqrt (a pixel at distance exactly 2 must count).
    return int(np.count_nonzero(boundary & (distance <= tolerance + 1e-4)))


def _check_tolerance(tolerance: int) -> int:
    if isinstance(tolerance, bool) or not isinstance(tolerance, (int, np.integer)) or tolerance < 0:
        raise ValueError(f"boundary tolerance must be an integer >= 0 (pixels), got {tolerance!r}")
    return int(tolerance)


def _boundary_counts(pred: np.ndarray, target: np.ndarray, tolerance: int) -> tuple[int, int, int, int]:
    """(matched predicted, all predicted, matched target, all target) boundary pixel counts."""
    pb = mask_boundary(pred)
    tb = mask_boundary(target)
    return (
        _matched(pb, tb, tolerance),
        int(np.count_nonzero(pb)),
        _matched(tb, pb, tolerance),
        int(np.count_nonzero(tb)),
    )


def _boundary_f_from_counts(matched_pred: int, n_pred: int, matched_target: int, n_target: int) -> float:
    if n_pred == 0 and n_target == 0:
        return 1.0
    precision = matched_pred / n_pred if n_pred else 0.0
    recall = matched_target / n_target if n_target else 0.0
    return _f_from_pr(precision, recall)


# --------------------------------------------------------------------------------------------------
# Per-image helpers
# --------------------------------------------------------------------------------------------------


def iou(pred: Any, target: Any) -> float:
    """Intersection over union of two masks; 1.0 when both are empty."""
    tp, fp, fn, _ = _confusion(*_pair(pred, target))
    return _ratio(tp, tp + fp + fn, empty=1.0)


def f1(pred: Any, target: Any) -> float:
    """F1 score (= Dice coefficient) of two masks; 1.0 when both are empty."""
    tp, fp, fn, _ = _confusion(*_pair(pred, target))
    return _ratio(2 * tp, 2 * tp + fp + fn, empty=1.0)


dice = f1


def precision(pred: Any, target: Any) -> float:
    """Share of predicted hair pixels that are hair; see the module docstring for the empty cases."""
    tp, fp, fn, _ = _confusion(*_pair(pred, target))
    return _precision_from_counts(tp, fp, fn)


def recall(pred: Any, target: Any) -> float:
    """Share of hair pixels that were predicted; see the module docstring for the empty cases."""
    tp, fp, fn, _ = _confusion(*_pair(pred, target))
    return _recall_from_counts(tp, fp, fn)


def pixel_accuracy(pred: Any, target: Any) -> float:
    """Share of pixels where the two masks agree."""
    tp, fp, fn, tn = _confusion(*_pair(pred, target))
    return (tp + tn) / (tp + fp + fn + tn)


def boundary_f(pred: Any, target: Any, tolerance: int = DEFAULT_BOUNDARY_TOLERANCE) -> float:
    """Boundary F-score of two masks with a tolerance in pixels (see the module docstring)."""
    a, b = _pair(pred, target)
    return _boundary_f_from_counts(*_boundary_counts(a, b, _check_tolerance(tolerance)))


# --------------------------------------------------------------------------------------------------
# Streaming meters
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SegmentationMetrics:
    """Scores of predicted masks against ground truth over a data set (see the module docstring)."""

    iou: float
    mean_iou: float
    f1: float
    precision: float
    recall: float
    accuracy: float
    boundary_f: float
    boundary_tolerance: int
    n: int

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class SegmentationMeter:
    """Accumulates segmentation metrics image by image; memory is constant in the number of images.

    >>> meter = SegmentationMeter()
    >>> for pred, target in pairs:          # doctest: +SKIP
    ...     meter.update(pred, target)
    >>> meter.result().iou                  # doctest: +SKIP
    """

    def __init__(self, boundary_tolerance: int = DEFAULT_BOUNDARY_TOLERANCE):
        self.boundary_tolerance = _check_tolerance(boundary_tolerance)
        self.reset()

    def reset(self) -> None:
        self.n = 0
        self.tp = self.fp = self.fn = self.tn = 0
        self.iou_sum = 0.0
        self.boundary_matched_pred = self.boundary_pred = 0
        self.boundary_matched_target = self.boundary_target = 0

    def update(self, pred: Any, target: Any) -> float:
        """Add one image's predicted and true masks (same shape); returns that image's IoU."""
        a, b = _pair(pred, target)
        tp, fp, fn, tn = _confusion(a, b)
        self.tp += tp
        self.fp += fp
        self.fn += fn
        self.tn += tn
        image_iou = _ratio(tp, tp + fp + fn, empty=1.0)
        self.iou_sum += image_iou
        mp, npred, mt, ntarget = _boundary_counts(a, b, self.boundary_tolerance)
        self.boundary_matched_pred += mp
        self.boundary_pred += npred
        self.boundary_matched_target += mt
        self.boundary_target += ntarget
        self.n += 1
        return image_iou

    def merge(self, other: SegmentationMeter) -> SegmentationMeter:
        """Add another meter's counts into this one (e.g. from parallel workers); returns self."""
        if other.boundary_tolerance != self.boundary_tolerance:
            raise ValueError(
                f"cannot merge meters with boundary tolerances {self.boundary_tolerance} and "
                f"{other.boundary_tolerance}"
            )
        for name in ("n", "tp", "fp", "fn", "tn", "iou_sum", "boundary_matched_pred", "boundary_pred",
                     "boundary_matched_target", "boundary_target"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        return self

    def result(self) -> SegmentationMetrics:
        if self.n == 0:
            raise ValueError("no images were scored (SegmentationMeter.update was never called)")
        tp, fp, fn, tn = self.tp, self.fp, self.fn, self.tn
        return SegmentationMetrics(
            iou=_ratio(tp, tp + fp + fn, empty=1.0),
            mean_iou=self.iou_sum / self.n,
            f1=_ratio(2 * tp, 2 * tp + fp + fn, empty=1.0),
            precision=_precision_from_counts(tp, fp, fn),
            recall=_recall_from_counts(tp, fp, fn),
            accuracy=(tp + tn) / (tp + fp + fn + tn),
            boundary_f=_boundary_f_from_counts(
                self.boundary_matched_pred, self.boundary_pred,
                self.boundary_matched_target, self.boundary_target,
            ),
            boundary_tolerance=self.boundary_tolerance,
            n=self.n,
        )


@dataclass(frozen=True)
class AgreementMetrics:
    """How closely two models agree on the same images.

    ``max_prob_diff`` / ``mean_prob_diff`` are None when no probabilities were given.
    """

    iou: float
    mean_iou: float
    pixel_agreement: float
    max_prob_diff: float | None
    mean_prob_diff: float | None
    n: int

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class AgreementMeter:
    """Accumulates agreement between two sets of masks (and optionally their probability maps).

    IoU follows the same empty-union rule as :class:`SegmentationMeter` (both empty = 1.0).
    """

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.n = 0
        self.intersection = self.union = 0
        self.agreeing_pixels = self.pixels = 0
        self.iou_sum = 0.0
        self.max_prob_diff: float | None = None
        self.prob_diff_sum = 0.0
        self.prob_pixels = 0

    def update(self, mask_a: Any, mask_b: Any, prob_a: Any = None, prob_b: Any = None) -> float:
        """Add one image's two masks (and, optionally, both probability maps); returns its IoU."""
        a, b = _pair(mask_a, mask_b, ("mask_a", "mask_b"))
        if (prob_a is None) != (prob_b is None):
            raise ValueError("give both prob_a and prob_b, or neither")
        if prob_a is not None:
            pa = np.asarray(prob_a, dtype=np.float32)
            pb = np.asarray(prob_b, dtype=np.float32)
            pa = pa.reshape(pa.shape[:2]) if pa.ndim == 3 and pa.shape[2] == 1 else pa
            pb = pb.reshape(pb.shape[:2]) if pb.ndim == 3 and pb.shape[2] == 1 else pb
            if pa.shape != a.shape or pb.shape != a.shape:
                raise ValueError(
                    f"probability maps {pa.shape} and {pb.shape} must have the masks' shape {a.shape}"
                )
            diff = np.abs(pa - pb)
            if not np.all(np.isfinite(diff)):
                raise ValueError("probability maps contain NaN or infinity")
            image_max = float(diff.max())
            self.max_prob_diff = image_max if self.max_prob_diff is None else max(self.max_prob_diff,
                                                                                   image_max)
            self.prob_diff_sum += float(diff.sum(dtype=np.float64))
            self.prob_pixels += diff.size
        inter = int(np.count_nonzero(a & b))
        union = int(np.count_nonzero(a | b))
        self.intersection += inter
        self.union += union
        self.agreeing_pixels += int(np.count_nonzero(a == b))
        self.pixels += a.size
        image_iou = _ratio(inter, union, empty=1.0)
        self.iou_sum += image_iou
        self.n += 1
        return image_iou

    def result(self) -> AgreementMetrics:
        if self.n == 0:
            raise ValueError("no images were compared (AgreementMeter.update was never called)")
        return AgreementMetrics(
            iou=_ratio(self.intersection, self.union, empty=1.0),
            mean_iou=self.iou_sum / self.n,
            pixel_agreement=self.agreeing_pixels / self.pixels,
            max_prob_diff=self.max_prob_diff,
            mean_prob_diff=(self.prob_diff_sum / self.prob_pixels) if self.prob_pixels else None,
            n=self.n,
        )
