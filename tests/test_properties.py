"""Property-based tests (hypothesis) for the readers, the contract and the metrics.

They add to the properties already in test_contract.py (letterbox shapes, unletterbox size) and
test_metrics.py (IoU/F1/boundary-F ranges and symmetry, identical and complementary masks):

* readers: any bytes at all give an RGB image or an InputError, never another exception; every
  lossless image round-trips exactly; masks are "nonzero = hair" for any label values and depth;
* contract: no padding leaks into the image when un-letterboxing, masks and images share one
  geometry, any array becomes contiguous HxWx3 uint8, binarize is "strictly above", the contract
  survives its JSON form;
* metrics: one-image meters equal the per-image functions, the order and grouping of images does
  not change a meter, agreement equals IoU/accuracy with one model as the truth, and every score is
  invariant under flips and transposes (the boundary uses 4-neighbours, which those keep).
"""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from hairseg_edge import metrics
from hairseg_edge.contract import (
    Contract,
    as_rgb_uint8,
    binarize,
    letterbox_geometry,
    letterbox_image,
    letterbox_mask,
    unletterbox,
)
from hairseg_edge.errors import InputError
from hairseg_edge.imageio import read_image, read_mask
from hairseg_edge.metrics import AgreementMeter, SegmentationMeter

FAST = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

small_hw = st.tuples(st.integers(1, 24), st.integers(1, 24))
uint8_rgb = small_hw.flatmap(lambda hw: arrays(np.uint8, (*hw, 3)))
mask_pairs = small_hw.flatmap(lambda hw: st.tuples(arrays(np.bool_, hw), arrays(np.bool_, hw)))


def _encoded(suffix: str, image: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(suffix, image)
    assert ok
    return buf.tobytes()


# ==================================================================================================
# Readers
# ==================================================================================================


@FAST
@given(data=st.binary(max_size=3000))
def test_any_bytes_give_an_image_or_an_input_error(tmp_path, data):
    path = tmp_path / "fuzz.jpg"
    path.write_bytes(data)
    for reader, ndim in ((read_image, 3), (read_mask, 2)):
        try:
            out = reader(path)
        except InputError as err:
            assert str(path) in str(err) and "\n" not in str(err)
        else:
            assert out.dtype == np.uint8 and out.ndim == ndim


@FAST
@given(image=uint8_rgb, suffix=st.sampled_from([".png", ".jpg"]), cut=st.floats(0.0, 1.0),
       flips=st.lists(st.integers(0, 10_000), max_size=8))
def test_damaged_real_images_give_an_image_or_an_input_error(tmp_path, image, suffix, cut, flips):
    """A real PNG/JPEG cut anywhere and with bytes flipped anywhere: never a crash."""
    data = bytearray(_encoded(suffix, image))
    for k in flips:
        data[k % len(data)] ^= 0xA5
    data = data[: max(1, int(len(data) * cut))] if cut < 1.0 else data
    path = tmp_path / f"damaged{suffix}"
    path.write_bytes(bytes(data))
    try:
        out = read_image(path)
    except InputError as err:
        assert str(path) in str(err)
    else:
        assert out.ndim == 3 and out.shape[2] == 3 and out.dtype == np.uint8


@FAST
@given(image=uint8_rgb, alpha=st.booleans())
def test_lossless_images_round_trip_exactly_in_rgb_order(tmp_path, image, alpha):
    bgr = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    if alpha:  # the alpha channel is dropped, the colours kept
        bgr = np.dstack([bgr, np.full(image.shape[:2], 7, np.uint8)])
    path = tmp_path / "lossless.png"
    path.write_bytes(_encoded(".png", bgr))
    assert np.array_equal(read_image(path), image)


@FAST
@given(gray=small_hw.flatmap(lambda hw: arrays(np.uint16, hw)))
def test_16_bit_gray_reads_as_three_equal_channels_of_the_high_byte(tmp_path, gray):
    path = tmp_path / "deep.png"
    path.write_bytes(_encoded(".png", gray))
    out = read_image(path)
    expected = (gray >> 8).astype(np.uint8)
    assert np.array_equal(out[..., 0], expected)
    assert np.array_equal(out[..., 1], expected) and np.array_equal(out[..., 2], expected)


@FAST
@given(labels=small_hw.flatmap(lambda hw: arrays(st.sampled_from([np.uint8, np.uint16]), hw)),
       as_colour=st.booleans())
def test_masks_are_nonzero_is_hair_for_any_labels(tmp_path, labels, as_colour):
    image = labels
    if as_colour:  # a colour label map: hair wherever any channel is nonzero
        image = np.dstack([np.zeros_like(labels), labels, np.zeros_like(labels)])
    path = tmp_path / "mask.png"
    path.write_bytes(_encoded(".png", image))
    out = read_mask(path)
    assert out.dtype == np.uint8 and out.shape == labels.shape
    assert np.array_equal(out, (labels > 0).astype(np.uint8))


# ==================================================================================================
# Contract
# ==================================================================================================


sizes = st.sampled_from([16, 32, 33, 64, 160])
sides = st.integers(1, 400)


@FAST
@given(h=sides, w=sides, size=sizes)
def test_no_padding_leaks_into_the_image_when_unletterboxing(h, w, size):
    """A probability that is 1 inside the placed image and 0 in the bars comes back as 1 everywhere:
    the crop takes exactly the image, not a row or column of bar."""
    box = letterbox_geometry(h, w, size)
    prob = np.zeros((size, size), np.float32)
    prob[box.top:box.top + box.new_h, box.left:box.left + box.new_w] = 1.0
    back = unletterbox(prob, box)
    assert back.shape == (h, w) and back.min() == pytest.approx(1.0)
    bars_only = 1.0 - prob
    assert unletterbox(bars_only, box).max() == pytest.approx(0.0)


@FAST
@given(h=sides, w=sides, size=sizes)
def test_image_and_mask_share_one_geometry(h, w, size):
    """The image's pixels and the mask's hair land in the same place of the model input."""
    image, box = letterbox_image(np.full((h, w, 3), 200, np.uint8), size)
    target = letterbox_mask(np.ones((h, w), np.uint8), size)
    assert target.dtype == np.float32 and set(np.unique(target)) <= {0.0, 1.0}
    assert np.array_equal(target > 0, image[..., 0] > 0)
    assert int(target.sum()) == box.new_h * box.new_w


@FAST
@given(h=st.integers(1, 60), w=st.integers(1, 60), size=sizes)
def test_an_all_hair_or_no_hair_mask_survives_the_round_trip(h, w, size):
    for value in (0, 1):
        target = letterbox_mask(np.full((h, w), value, np.uint8), size)
        back = binarize(unletterbox(target, letterbox_geometry(h, w, size)))
        assert back.shape == (h, w) and bool(back.all() if value else not back.any())


dtypes = st.sampled_from([np.uint8, np.uint16, np.int32, np.float32, np.float64, np.bool_])
channels = st.sampled_from([None, 1, 3, 4])


@FAST
@given(hw=small_hw, dtype=dtypes, c=channels, data=st.data())
def test_as_rgb_uint8_makes_any_array_contiguous_hxwx3_uint8(hw, dtype, c, data):
    shape = hw if c is None else (*hw, c)
    # Floats anywhere, NaN and infinities included (a broken decoder or a user's array).
    elements = st.floats(width=32) if np.issubdtype(dtype, np.floating) else None
    array = data.draw(arrays(dtype, shape, elements=elements))
    out = as_rgb_uint8(array)
    assert out.shape == (*hw, 3) and out.dtype == np.uint8 and out.flags["C_CONTIGUOUS"]
    if dtype is np.uint8 and c in (3, 4):
        assert np.array_equal(out, array[..., :3])


@FAST
@given(prob=small_hw.flatmap(lambda hw: arrays(np.float32, hw, elements=st.floats(0, 1, width=32))),
       t1=st.floats(0.01, 0.99), t2=st.floats(0.01, 0.99))
def test_binarize_is_strictly_above_and_monotonic_in_the_threshold(prob, t1, t2):
    low, high = sorted((t1, t2))
    assert np.array_equal(binarize(prob, low), prob > low)
    assert not np.any(binarize(prob, high) & ~binarize(prob, low))  # a higher threshold only removes hair


@FAST
@given(size=st.integers(16, 1024), threshold=st.floats(0.01, 0.99))
def test_the_contract_survives_its_json_form(size, threshold):
    contract = Contract(input_size=size, threshold=threshold)
    again = Contract.from_dict(json.loads(contract.to_json()))
    assert again == contract
    again.check_compatible()


# ==================================================================================================
# Metrics
# ==================================================================================================


@FAST
@given(pair=mask_pairs)
def test_a_one_image_meter_equals_the_per_image_functions(pair):
    pred, target = pair
    meter = SegmentationMeter()
    assert meter.update(pred, target) == metrics.iou(pred, target)
    r = meter.result()
    assert r.iou == r.mean_iou == metrics.iou(pred, target)
    assert r.f1 == pytest.approx(metrics.f1(pred, target))
    assert r.precision == pytest.approx(metrics.precision(pred, target))
    assert r.recall == pytest.approx(metrics.recall(pred, target))
    assert r.accuracy == pytest.approx(metrics.pixel_accuracy(pred, target))
    assert r.boundary_f == pytest.approx(metrics.boundary_f(pred, target))
    assert r.n == 1


@FAST
@given(pairs=st.lists(mask_pairs, min_size=1, max_size=6), data=st.data())
def test_order_and_grouping_of_images_do_not_change_a_meter(pairs, data):
    whole = SegmentationMeter()
    for pred, target in pairs:
        whole.update(pred, target)
    order = data.draw(st.permutations(range(len(pairs))))
    cut = data.draw(st.integers(0, len(pairs)))
    left, right = SegmentationMeter(), SegmentationMeter()
    for k, i in enumerate(order):
        (left if k < cut else right).update(*pairs[i])
    merged = right.merge(left) if right.n else left
    a, b = whole.result().to_dict(), merged.result().to_dict()
    assert a.keys() == b.keys()
    for key in a:
        assert a[key] == pytest.approx(b[key]), key


@FAST
@given(pairs=st.lists(mask_pairs, min_size=1, max_size=5))
def test_agreement_is_iou_and_accuracy_with_one_model_as_the_truth(pairs):
    agreement, score, reverse = AgreementMeter(), SegmentationMeter(), AgreementMeter()
    for a, b in pairs:
        agreement.update(a, b)
        reverse.update(b, a)
        score.update(a, b)
    agree, scored = agreement.result(), score.result()
    assert agree.iou == pytest.approx(scored.iou)
    assert agree.mean_iou == pytest.approx(scored.mean_iou)
    assert agree.pixel_agreement == pytest.approx(scored.accuracy)
    assert reverse.result().to_dict() == agree.to_dict()  # symmetric


@FAST
@given(pair=small_hw.flatmap(lambda hw: st.tuples(
    arrays(np.bool_, hw), arrays(np.float32, hw, elements=st.floats(0, 1, width=32)),
    arrays(np.float32, hw, elements=st.floats(0, 1, width=32)))))
def test_probability_gaps_are_bounded_and_ordered(pair):
    mask, pa, pb = pair
    meter = AgreementMeter()
    meter.update(mask, mask, pa, pb)
    r = meter.result()
    assert 0.0 <= r.mean_prob_diff <= r.max_prob_diff <= 1.0
    assert r.max_prob_diff == pytest.approx(float(np.abs(pa - pb).max()))


transforms = st.sampled_from([
    lambda m: m, np.fliplr, np.flipud, np.transpose, lambda m: np.rot90(m, 1), lambda m: np.rot90(m, 2),
])


@FAST
@given(pair=mask_pairs, transform=transforms, tolerance=st.integers(0, 3))
def test_scores_do_not_depend_on_orientation(pair, transform, tolerance):
    pred, target = pair
    tp, tt = np.ascontiguousarray(transform(pred)), np.ascontiguousarray(transform(target))
    assert metrics.iou(tp, tt) == metrics.iou(pred, target)
    assert metrics.f1(tp, tt) == metrics.f1(pred, target)
    assert metrics.pixel_accuracy(tp, tt) == metrics.pixel_accuracy(pred, target)
    assert metrics.boundary_f(tp, tt, tolerance) == pytest.approx(metrics.boundary_f(pred, target, tolerance))


@FAST
@given(pair=mask_pairs)
def test_adding_true_hair_to_a_prediction_never_lowers_recall(pair):
    pred, target = pair
    assume(target.any())
    better = pred | target
    assert metrics.recall(better, target) == 1.0
    assert metrics.recall(better, target) >= metrics.recall(pred, target)
    assert metrics.iou(better & target, target) >= metrics.iou(pred & target, target)
