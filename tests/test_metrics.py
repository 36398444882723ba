"""Metrics against hand-computed cases, streaming against batch, and properties that must always hold."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from hairseg_edge import metrics
from hairseg_edge.metrics import AgreementMeter, SegmentationMeter, mask_boundary


def M(rows: str) -> np.ndarray:
    """A mask drawn as text: '#' = hair, '.' = not hair, one row per whitespace-separated word."""
    return np.array([[c == "#" for c in row] for row in rows.split()], dtype=bool)


# ---------------------------------------------------------------------------------------------
# Hand-computed cases
# ---------------------------------------------------------------------------------------------


def test_3x3_overlap_worked_out_by_hand():
    pred = M("##. ##. ...")
    target = M(".## .## ...")
    # intersection 2 (middle column, top two rows), union 6, tp=2 fp=2 fn=2 tn=3
    assert metrics.iou(pred, target) == pytest.approx(2 / 6)
    assert metrics.f1(pred, target) == pytest.approx(2 * 2 / (4 + 4))
    assert metrics.precision(pred, target) == pytest.approx(0.5)
    assert metrics.recall(pred, target) == pytest.approx(0.5)
    assert metrics.pixel_accuracy(pred, target) == pytest.approx(5 / 9)


def test_4x4_asymmetric_case_precision_and_recall_differ():
    pred = M("#### #### .... ....")  # 8 pixels
    target = M("##.. ##.. ##.. ....")  # 6 pixels
    # intersection 4, union 10
    assert metrics.iou(pred, target) == pytest.approx(0.4)
    assert metrics.f1(pred, target) == pytest.approx(8 / 14)
    assert metrics.precision(pred, target) == pytest.approx(4 / 8)
    assert metrics.recall(pred, target) == pytest.approx(4 / 6)
    assert metrics.pixel_accuracy(pred, target) == pytest.approx((4 + 6) / 16)


def test_empty_vs_empty_is_perfect_everywhere():
    empty = np.zeros((3, 3), bool)
    assert metrics.iou(empty, empty) == 1.0
    assert metrics.f1(empty, empty) == 1.0
    assert metrics.precision(empty, empty) == 1.0
    assert metrics.recall(empty, empty) == 1.0
    assert metrics.pixel_accuracy(empty, empty) == 1.0
    assert metrics.boundary_f(empty, empty) == 1.0
    meter = SegmentationMeter()
    meter.update(empty, empty)
    r = meter.result()
    assert (r.iou, r.mean_iou, r.f1, r.precision, r.recall, r.accuracy, r.boundary_f) == (1, 1, 1, 1, 1, 1, 1)


def test_empty_prediction_against_full_target_scores_zero():
    empty = np.zeros((4, 4), bool)
    full = np.ones((4, 4), bool)
    assert metrics.iou(empty, full) == 0.0
    assert metrics.f1(empty, full) == 0.0
    assert metrics.precision(empty, full) == 0.0  # nothing predicted, but there was hair
    assert metrics.recall(empty, full) == 0.0
    assert metrics.pixel_accuracy(empty, full) == 0.0
    assert metrics.boundary_f(empty, full) == 0.0
    # and the reverse: hair predicted on a bald head
    assert metrics.precision(full, empty) == 0.0
    assert metrics.recall(full, empty) == 0.0
    assert metrics.boundary_f(full, empty) == 0.0


def test_boundary_is_hair_pixels_with_a_non_hair_4_neighbour_and_frame_counts_as_outside():
    square = M("..... .###. .###. .###. .....")
    assert np.array_equal(mask_boundary(square), M("..... .###. .#.#. .###. ....."))
    full = np.ones((4, 4), bool)
    assert np.array_equal(mask_boundary(full), M("#### #..# #..# ####"))
    # A diagonal neighbour does not make a pixel boundary (4-connectivity).
    plus = M("..... ..#.. .###. ..#.. .....")
    assert np.array_equal(mask_boundary(plus), M("..... ..#.. .#.#. ..#.. ....."))


def test_boundary_f_tolerance_worked_out_by_hand():
    pred = M(".... .##. .##. ....")  # all 4 pixels are boundary
    target = np.ones((4, 4), bool)  # boundary = the 12-pixel frame ring
    # tol 0: no pixel of one boundary lies on the other
    assert metrics.boundary_f(pred, target, tolerance=0) == 0.0
    # tol 1: every pred pixel touches the ring (precision 1); 8 of 12 ring pixels are within 1 of
    # the pred square, the 4 corners are sqrt(2) away (recall 2/3) -> F = 2*1*(2/3)/(1+2/3) = 0.8
    assert metrics.boundary_f(pred, target, tolerance=1) == pytest.approx(0.8)
    # tol 2: the corners (sqrt 2 away) match too
    assert metrics.boundary_f(pred, target, tolerance=2) == pytest.approx(1.0)


def _square(shift: int) -> np.ndarray:
    m = np.zeros((20, 24), bool)
    m[5:15, 5 + shift : 15 + shift] = True
    return m


@pytest.mark.parametrize("shift", [0, 1, 2])
def test_boundary_shifted_within_tolerance_is_perfect(shift):
    assert metrics.boundary_f(_square(shift), _square(0), tolerance=2) == pytest.approx(1.0)
    # while the pixel IoU already drops
    assert metrics.iou(_square(shift), _square(0)) == pytest.approx((10 - shift) / (10 + shift))


def test_boundary_shifted_outside_tolerance_worked_out_by_hand():
    # 10x10 squares shifted by 3 px, tolerance 2. Of the predicted square's 36 boundary pixels,
    # unmatched are: its right column (10, all 3 px from the target's right edge), and 4 pixels of
    # its left column (rows 8..11, 3 px from the target's left edge and >= 3 from its top/bottom).
    # So 22/36 matched; by symmetry the same for recall -> F = 22/36.
    pred, target = _square(3), _square(0)
    assert metrics.boundary_f(pred, target, tolerance=2) == pytest.approx(22 / 36)
    assert metrics.boundary_f(pred, target, tolerance=3) == pytest.approx(1.0)
    assert metrics.boundary_f(pred, target, tolerance=0) < metrics.boundary_f(pred, target, tolerance=2)


def test_meter_global_iou_differs_from_mean_iou_as_defined():
    meter = SegmentationMeter()
    big = np.zeros((10, 10), bool)
    big[:, :5] = True  # 50 px, predicted perfectly
    small_pred = np.zeros((10, 10), bool)
    small_pred[0, 0] = True
    small_target = np.zeros((10, 10), bool)
    small_target[9, 9] = True  # 1 px, missed completely
    assert meter.update(big, big) == 1.0
    assert meter.update(small_pred, small_target) == 0.0
    r = meter.result()
    assert r.n == 2
    assert r.mean_iou == pytest.approx(0.5)
    assert r.iou == pytest.approx(50 / 52)  # global: intersection 50, union 52
    assert r.precision == pytest.approx(50 / 51)
    assert r.recall == pytest.approx(50 / 51)
    assert r.f1 == pytest.approx(100 / 102)
    assert r.accuracy == pytest.approx(198 / 200)
    d = r.to_dict()
    assert set(d) >= {"iou", "mean_iou", "f1", "precision", "recall", "accuracy", "boundary_f", "n"}
    assert d["n"] == 2 and d["boundary_tolerance"] == 2


def test_meter_with_only_empty_images_gives_the_documented_empty_values():
    meter = SegmentationMeter()
    empty = np.zeros((5, 5), bool)
    for _ in range(3):
        meter.update(empty, empty)
    r = meter.result()
    assert r.iou == 1.0 and r.f1 == 1.0 and r.precision == 1.0 and r.recall == 1.0
    assert r.boundary_f == 1.0 and r.mean_iou == 1.0 and r.n == 3


def test_meter_without_images_refuses_to_invent_a_result():
    with pytest.raises(ValueError, match="no images"):
        SegmentationMeter().result()
    with pytest.raises(ValueError, match="no images"):
        AgreementMeter().result()


# ---------------------------------------------------------------------------------------------
# Inputs
# ---------------------------------------------------------------------------------------------


def test_shape_mismatch_is_a_value_error_naming_both_shapes():
    with pytest.raises(ValueError, match=r"\(3, 3\) vs \(3, 4\)"):
        SegmentationMeter().update(np.zeros((3, 3)), np.zeros((3, 4)))
    with pytest.raises(ValueError, match="shape"):
        metrics.iou(np.zeros((3, 3)), np.zeros((4, 3)))
    with pytest.raises(ValueError, match="shape"):
        AgreementMeter().update(np.zeros((3, 3)), np.zeros((4, 3)))


def test_accepts_bool_0_1_0_255_float_0_1_and_hxwx1():
    target = M("##. ##. ...")
    as_int = target.astype(np.uint8)
    expected = metrics.iou(target, target)
    assert metrics.iou(as_int, target) == expected
    assert metrics.iou(as_int * 255, target) == expected
    assert metrics.iou(target.astype(np.float32), target) == expected
    assert metrics.iou(as_int[..., None], target) == expected


def test_rejects_probability_maps_and_non_2d_input():
    prob = np.full((3, 3), 0.7, dtype=np.float32)
    with pytest.raises(ValueError, match="probability map"):
        metrics.iou(prob, prob > 0.5)
    with pytest.raises(ValueError, match="2-D"):
        metrics.iou(np.zeros((2, 3, 3)), np.zeros((2, 3, 3)))
    with pytest.raises(ValueError, match="no pixels"):
        metrics.iou(np.zeros((0, 3)), np.zeros((0, 3)))


@pytest.mark.parametrize("bad", [-1, 1.5, True, "2"])
def test_rejects_bad_tolerance(bad):
    with pytest.raises(ValueError, match="tolerance"):
        SegmentationMeter(boundary_tolerance=bad)
    with pytest.raises(ValueError, match="tolerance"):
        metrics.boundary_f(np.ones((3, 3)), np.ones((3, 3)), tolerance=bad)


# ---------------------------------------------------------------------------------------------
# Streaming == batch, constant memory
# ---------------------------------------------------------------------------------------------


def _random_blobs(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A mask of a few rectangles (realistic boundaries, unlike per-pixel noise)."""
    m = np.zeros((h, w), bool)
    for _ in range(rng.integers(0, 4)):
        y0, x0 = rng.integers(0, h), rng.integers(0, w)
        m[y0 : y0 + rng.integers(1, h), x0 : x0 + rng.integers(1, w)] = True
    return m


def test_streaming_equals_batch_over_the_whole_data_set():
    rng = np.random.default_rng(7)
    tol = 2
    pairs = []
    for _ in range(12):
        h, w = int(rng.integers(5, 40)), int(rng.integers(5, 40))
        pairs.append((_random_blobs(rng, h, w), _random_blobs(rng, h, w)))
    meter = SegmentationMeter(boundary_tolerance=tol)
    per_image = [meter.update(p, t) for p, t in pairs]
    r = meter.result()

    # Batch: every image in one canvas, separated by tol+1 empty rows/columns. Zero padding is what
    # the boundary definition uses at the frame, and the gaps keep boundaries of different images
    # further apart than the tolerance, so the canvas has exactly the same counts.
    gap = tol + 1
    width = max(p.shape[1] for p, _ in pairs)
    rows_p, rows_t = [], []
    for p, t in pairs:
        pad = ((0, gap), (0, width - p.shape[1] + gap))
        rows_p.append(np.pad(p, pad))
        rows_t.append(np.pad(t, pad))
    big_p, big_t = np.vstack(rows_p), np.vstack(rows_t)
    assert r.iou == pytest.approx(metrics.iou(big_p, big_t))
    assert r.f1 == pytest.approx(metrics.f1(big_p, big_t))
    assert r.precision == pytest.approx(metrics.precision(big_p, big_t))
    assert r.recall == pytest.approx(metrics.recall(big_p, big_t))
    assert r.boundary_f == pytest.approx(metrics.boundary_f(big_p, big_t, tolerance=tol))
    flat_p = np.concatenate([p.ravel() for p, _ in pairs])[None]
    flat_t = np.concatenate([t.ravel() for _, t in pairs])[None]
    assert r.accuracy == pytest.approx(metrics.pixel_accuracy(flat_p, flat_t))
    assert r.mean_iou == pytest.approx(np.mean([metrics.iou(p, t) for p, t in pairs]))
    assert per_image == [metrics.iou(p, t) for p, t in pairs]
    assert r.n == len(pairs)


def test_merged_meters_equal_one_meter():
    rng = np.random.default_rng(3)
    pairs = [(_random_blobs(rng, 16, 16), _random_blobs(rng, 16, 16)) for _ in range(8)]
    whole, left, right = SegmentationMeter(), SegmentationMeter(), SegmentationMeter()
    for i, (p, t) in enumerate(pairs):
        whole.update(p, t)
        (left if i % 2 else right).update(p, t)
    merged = left.merge(right).result().to_dict()
    assert merged == pytest.approx(whole.result().to_dict())  # sums in another order: float rounding
    with pytest.raises(ValueError, match="tolerance"):
        SegmentationMeter(1).merge(SegmentationMeter(2))


def test_meter_state_stays_a_few_numbers_however_many_images():
    meter = SegmentationMeter()
    rng = np.random.default_rng(0)
    for _ in range(50):
        meter.update(rng.random((32, 32)) > 0.5, rng.random((32, 32)) > 0.5)
    state = vars(meter)
    assert all(isinstance(v, (int, float)) for v in state.values()), state
    assert len(state) < 16
    meter.reset()
    assert meter.n == 0 and meter.tp == 0


# ---------------------------------------------------------------------------------------------
# Agreement between two models
# ---------------------------------------------------------------------------------------------


def test_agreement_meter_hand_case_with_probabilities():
    a = M("##. ##. ...")
    b = M("### ##. ...")
    prob_a = np.where(a, 0.9, 0.1).astype(np.float32)
    prob_b = np.where(b, 0.8, 0.1).astype(np.float32)
    meter = AgreementMeter()
    assert meter.update(a, b, prob_a, prob_b) == pytest.approx(4 / 5)
    r = meter.result()
    assert r.iou == pytest.approx(4 / 5)
    assert r.pixel_agreement == pytest.approx(8 / 9)
    # the top-right pixel: 0.1 vs 0.8; the four shared pixels differ by 0.1
    assert r.max_prob_diff == pytest.approx(0.7)
    assert r.mean_prob_diff == pytest.approx((0.7 + 4 * 0.1) / 9, rel=1e-5)
    assert r.to_dict()["n"] == 1


def test_agreement_meter_accumulates_globally_and_tracks_the_largest_gap():
    meter = AgreementMeter()
    empty = np.zeros((4, 4), bool)
    full = np.ones((4, 4), bool)
    meter.update(empty, empty)  # no probabilities for this one
    meter.update(full, full, np.full((4, 4, 1), 0.6), np.full((4, 4, 1), 0.95))
    meter.update(full, empty, np.full((4, 4), 0.51), np.full((4, 4), 0.49))
    r = meter.result()
    assert r.n == 3
    assert r.iou == pytest.approx(16 / 32)
    assert r.mean_iou == pytest.approx((1 + 1 + 0) / 3)
    assert r.pixel_agreement == pytest.approx(32 / 48)
    assert r.max_prob_diff == pytest.approx(0.35)
    assert r.mean_prob_diff == pytest.approx((16 * 0.35 + 16 * 0.02) / 32)


def test_agreement_without_probabilities_reports_none():
    meter = AgreementMeter()
    meter.update(np.ones((2, 2)), np.ones((2, 2)))
    r = meter.result()
    assert r.max_prob_diff is None and r.mean_prob_diff is None and r.iou == 1.0


def test_agreement_probabilities_must_come_in_pairs_of_the_right_shape():
    meter = AgreementMeter()
    m = np.ones((3, 3), bool)
    with pytest.raises(ValueError, match="both"):
        meter.update(m, m, prob_a=np.ones((3, 3)))
    with pytest.raises(ValueError, match="shape"):
        meter.update(m, m, np.ones((3, 3)), np.ones((3, 4)))
    with pytest.raises(ValueError, match="NaN"):
        meter.update(m, m, np.full((3, 3), np.nan), np.ones((3, 3)))
    assert meter.n == 0  # nothing was half-counted


# ---------------------------------------------------------------------------------------------
# Properties
# ---------------------------------------------------------------------------------------------

mask_pairs = st.tuples(st.integers(1, 12), st.integers(1, 12)).flatmap(
    lambda hw: st.tuples(arrays(np.bool_, hw), arrays(np.bool_, hw))
)


@settings(max_examples=150, deadline=None)
@given(mask_pairs)
def test_properties_of_iou_f1_and_boundary_f(pair):
    a, b = pair
    j = metrics.iou(a, b)
    f = metrics.f1(a, b)
    assert 0.0 <= j <= 1.0
    assert j == metrics.iou(b, a)
    assert f == metrics.f1(b, a)
    assert j <= f + 1e-12
    assert f == pytest.approx(2 * j / (1 + j))  # Dice and Jaccard are tied
    assert metrics.precision(a, b) == metrics.recall(b, a)
    bf = metrics.boundary_f(a, b)
    assert 0.0 <= bf <= 1.0
    assert bf == pytest.approx(metrics.boundary_f(b, a))
    assert metrics.boundary_f(a, b, tolerance=0) <= metrics.boundary_f(a, b, tolerance=3) + 1e-12


@settings(max_examples=100, deadline=None)
@given(arrays(np.bool_, st.tuples(st.integers(1, 12), st.integers(1, 12))))
def test_identical_masks_score_one_and_complements_score_zero(a):
    assert metrics.iou(a, a) == 1.0
    assert metrics.f1(a, a) == 1.0
    assert metrics.boundary_f(a, a, tolerance=0) == 1.0
    assert metrics.pixel_accuracy(a, a) == 1.0
    # a mask and its complement never overlap, and their union is the whole image (never empty)
    assert metrics.iou(a, ~a) == 0.0
    assert metrics.f1(a, ~a) == 0.0
    assert metrics.pixel_accuracy(a, ~a) == 0.0
