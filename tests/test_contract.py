"""The preprocessing contract: letterbox geometry, pixel coercion, and the stored contract record."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hairseg_edge import contract, metrics
from hairseg_edge.contract import (
    PAD_VALUE,
    THRESHOLD,
    Contract,
    as_rgb_uint8,
    binarize,
    letterbox_geometry,
    letterbox_image,
    letterbox_mask,
    resize_image,
    unletterbox,
)

# ---------------------------------------------------------------------------------------------
# Geometry
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("h", "w", "size", "expected"),
    [
        # (top, left, new_h, new_w)
        (256, 256, 160, (0, 0, 160, 160)),  # square: plain resize
        (1024, 1024, 160, (0, 0, 160, 160)),
        (200, 100, 64, (0, 16, 64, 32)),  # tall: bars left and right
        (100, 300, 60, (20, 0, 20, 60)),  # wide: bars top and bottom
        (1080, 1920, 160, (35, 0, 90, 160)),  # a 16:9 video frame
        (1, 1, 64, (0, 0, 64, 64)),  # a single pixel fills the canvas
        (1, 600, 64, (31, 0, 1, 64)),  # extreme aspect: still at least one row
        (3, 2, 16, (0, 2, 16, 11)),  # rounding of the short side
    ],
)
def test_letterbox_geometry(h, w, size, expected):
    box = letterbox_geometry(h, w, size)
    assert (box.top, box.left, box.new_h, box.new_w) == expected
    assert (box.src_h, box.src_w, box.size) == (h, w, size)
    # centred: the bars on both sides differ by at most one pixel
    assert abs((size - box.new_h - box.top) - box.top) <= 1
    assert abs((size - box.new_w - box.left) - box.left) <= 1


def test_letterbox_geometry_rejects_an_image_without_pixels():
    with pytest.raises(ValueError, match="no pixels"):
        letterbox_geometry(0, 10, 64)


def test_letterbox_pads_with_the_pad_value_and_keeps_the_image_inside():
    rgb = np.full((100, 300, 3), (200, 100, 50), np.uint8)
    canvas, box = letterbox_image(rgb, 60)
    assert canvas.shape == (60, 60, 3) and canvas.dtype == np.uint8
    inside = canvas[box.top : box.top + box.new_h, box.left : box.left + box.new_w]
    assert np.all(inside == (200, 100, 50))  # a flat colour stays exact through area resampling
    assert np.all(canvas[: box.top] == PAD_VALUE)
    assert np.all(canvas[box.top + box.new_h :] == PAD_VALUE)
    assert PAD_VALUE == 0


def test_letterbox_of_an_image_already_at_size_is_unchanged():
    rgb = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    canvas, box = letterbox_image(rgb, 64)
    assert np.array_equal(canvas, rgb)
    assert (box.top, box.left) == (0, 0)
    canvas[:] = 0  # the model input is the caller's to keep: never the image it was given
    assert rgb.any()


def test_letterbox_of_a_square_image_is_the_plain_resize():
    """A square frame fills the input (no padding): the fast path gives exactly the canvas path's pixels."""
    from hairseg_edge.contract import resize_image

    rgb = np.random.default_rng(1).integers(0, 256, (256, 256, 3), dtype=np.uint8)
    canvas, box = letterbox_image(rgb, 224)
    assert (box.top, box.left, box.new_h, box.new_w) == (0, 0, 224, 224)
    assert canvas.shape == (224, 224, 3) and canvas.flags.c_contiguous
    assert np.array_equal(canvas, resize_image(rgb, 224, 224))


@pytest.mark.parametrize(("src", "dst"), [((720, 1280), (108, 192)), ((1080, 1920), (126, 224)),
                                          ((512, 512), (192, 192))])
def test_resize_image_filters_like_area_averaging(src, dst):
    # A one-pixel checkerboard is pure high frequency: an anti-aliased shrink is flat mid-grey, while
    # bilinear sampling alone (no filter) lands on pixel centres and keeps black/white speckle.
    yy, xx = np.mgrid[: src[0], : src[1]]
    board = np.repeat((((yy + xx) % 2) * 255).astype(np.uint8)[..., None], 3, axis=2)
    out = resize_image(board, dst[1], dst[0])
    assert out.shape == (*dst, 3) and out.dtype == np.uint8
    area = cv2.resize(board, (dst[1], dst[0]), interpolation=cv2.INTER_AREA)
    assert np.abs(out.astype(int) - 127.5).max() <= 64, "aliasing: the checkerboard survived the shrink"
    assert np.abs(out.astype(int) - area.astype(int)).mean() < 8


@pytest.mark.parametrize(("src", "dst"), [((720, 1280), (108, 192)), ((256, 256), (192, 192))])
def test_resize_image_matches_area_averaging_on_photo_like_content(src, dst):
    # Under a 2x shrink there is no halving step and bilinear alone would alias pixel-level
    # patterns (the checkerboard above); camera photos carry little energy there, as here.
    rng = np.random.default_rng(3)
    smooth = cv2.GaussianBlur(rng.integers(0, 256, (*src, 3), dtype=np.uint8), (0, 0), 2)
    out = resize_image(smooth, dst[1], dst[0]).astype(np.float64)
    area = cv2.resize(smooth, (dst[1], dst[0]), interpolation=cv2.INTER_AREA).astype(np.float64)
    assert 10 * np.log10(255.0**2 / np.mean((out - area) ** 2)) > 35  # dB


def test_resize_image_grows_bilinearly_and_keeps_an_exact_size():
    rgb = np.random.default_rng(4).integers(0, 256, (50, 40, 3), dtype=np.uint8)
    assert resize_image(rgb, 40, 50) is rgb
    grown = resize_image(rgb, 80, 100)
    assert np.array_equal(grown, cv2.resize(rgb, (80, 100), interpolation=cv2.INTER_LINEAR_EXACT))


@pytest.mark.parametrize(("src", "dst"), [((256, 256), (224, 224)), ((720, 1280), (126, 224)),
                                          ((100, 80), (224, 179))])
def test_every_image_resampling_step_is_the_bit_exact_bilinear(src, dst):
    # INTER_LINEAR gives different bytes on arm64 than on x86 (OpenCV's platform code); the
    # contract must use the bit-exact mode for the halvings and the last step alike.
    rgb = cv2.GaussianBlur(np.random.default_rng(5).integers(0, 256, (*src, 3), dtype=np.uint8),
                           (0, 0), 1)
    expected = rgb
    while expected.shape[1] >= 2 * dst[1] and expected.shape[0] >= 2 * dst[0]:
        expected = cv2.resize(expected, (expected.shape[1] // 2, expected.shape[0] // 2),
                              interpolation=cv2.INTER_LINEAR_EXACT)
    expected = cv2.resize(expected, (dst[1], dst[0]), interpolation=cv2.INTER_LINEAR_EXACT)
    assert np.array_equal(resize_image(rgb, dst[1], dst[0]), expected)


def test_letterbox_keeps_rgb_order_and_does_not_distort():
    # A tall image: top half red, bottom half blue. Distortion or BGR would show.
    rgb = np.zeros((200, 100, 3), np.uint8)
    rgb[:100] = (255, 0, 0)
    rgb[100:] = (0, 0, 255)
    canvas, box = letterbox_image(rgb, 64)
    assert canvas[10, 32].tolist() == [255, 0, 0]
    assert canvas[54, 32].tolist() == [0, 0, 255]
    assert box.new_w == 32 and box.new_h == 64


def test_letterbox_mask_is_binary_float_with_nearest_neighbour():
    mask = np.zeros((200, 100), np.uint8)
    mask[50:150, 25:75] = 255
    out = letterbox_mask(mask, 64)
    assert out.shape == (64, 64) and out.dtype == np.float32
    assert set(np.unique(out)) == {0.0, 1.0}
    assert out[:, :16].sum() == 0 and out[:, 48:].sum() == 0  # the bars are never hair
    assert out.sum() == pytest.approx(mask.astype(bool).sum() * (64 / 200) ** 2, rel=0.1)
    assert np.array_equal(letterbox_mask(mask[..., None], 64), out)  # HxWx1 works too


def test_unletterbox_crops_the_bars_and_returns_the_image_size():
    box = letterbox_geometry(100, 300, 60)
    prob = np.zeros((60, 60), np.float32)
    prob[box.top : box.top + box.new_h, box.left : box.left + box.new_w] = 0.8
    prob[: box.top] = 1.0  # the bars must be discarded
    out = unletterbox(prob, box)
    assert out.shape == (100, 300) and out.dtype == np.float32
    assert np.allclose(out, 0.8)
    # model outputs [1, S, S, 1] are accepted; values are clipped to [0, 1]
    out4 = unletterbox(prob[None, ..., None] * 2 - 0.5, box)
    assert out4.shape == (100, 300) and out4.min() >= 0.0 and out4.max() <= 1.0


@pytest.mark.parametrize("shape", [(256, 256), (300, 200), (120, 400), (1, 1), (7, 3)])
def test_round_trip_restores_the_size_and_the_mask(shape):
    h, w = shape
    mask = np.zeros(shape, np.uint8)
    mask[h // 4 : max(h // 4 + 1, 3 * h // 4), w // 4 : max(w // 4 + 1, 3 * w // 4)] = 1
    size = 64
    box = letterbox_geometry(h, w, size)
    _, image_box = letterbox_image(np.zeros((h, w, 3), np.uint8), size)
    assert image_box == box
    prob = letterbox_mask(mask, size)  # a perfect model's output
    back = binarize(unletterbox(prob, box))
    assert back.shape == shape
    # At 64 px each outline can move by up to one model pixel, i.e. `cell` source pixels.
    cell = int(np.ceil(max(h, w) / size))
    assert metrics.boundary_f(back, mask, tolerance=cell) == 1.0
    if min(shape) >= 200:
        assert metrics.iou(back, mask) > 0.95


def test_mask_and_image_stay_aligned_when_shrunk():
    """Labels must sit where the pixels they label end up (no half-pixel drift from resampling)."""
    rng = np.random.default_rng(0)
    offsets = []
    ys = np.arange(64, dtype=np.float64)[:, None]
    for _ in range(30):
        mask = np.zeros((1024, 1024), np.uint8)
        y0, x0 = rng.integers(100, 500, 2)
        mask[y0 : y0 + 300, x0 : x0 + 300] = 1
        label = letterbox_mask(mask, 64).astype(np.float64)
        image = letterbox_image(mask * 255, 64)[0][..., 0].astype(np.float64)
        offsets.append((ys * label).sum() / label.sum() - (ys * image).sum() / image.sum())
    assert abs(np.mean(offsets)) < 0.15  # plain INTER_NEAREST drifts by about 0.5 px here


def test_binarize_is_strictly_above_the_threshold():
    assert THRESHOLD == 0.5
    assert binarize(np.array([0.0, 0.5, 0.5001, 1.0])).tolist() == [False, False, True, True]
    assert binarize(np.array([0.3, 0.7]), threshold=0.25).tolist() == [True, True]


# ---------------------------------------------------------------------------------------------
# Pixel coercion
# ---------------------------------------------------------------------------------------------


def test_as_rgb_uint8_gray_and_single_channel():
    gray = np.arange(12, dtype=np.uint8).reshape(3, 4)
    for img in (gray, gray[..., None]):
        out = as_rgb_uint8(img)
        assert out.shape == (3, 4, 3) and out.dtype == np.uint8
        assert all(np.array_equal(out[..., c], gray) for c in range(3))


def test_as_rgb_uint8_rgba_drops_alpha():
    rgba = np.zeros((2, 2, 4), np.uint8)
    rgba[..., 0] = 9
    rgba[..., 3] = 255
    out = as_rgb_uint8(rgba)
    assert out.shape == (2, 2, 3) and np.all(out[..., 0] == 9) and np.all(out[..., 1:] == 0)


def test_as_rgb_uint8_uint16_keeps_the_high_byte():
    deep = np.array([[0, 255, 256, 65535]], np.uint16)
    assert as_rgb_uint8(deep)[0, :, 0].tolist() == [0, 0, 1, 255]


def test_as_rgb_uint8_float_in_0_1_and_in_0_255():
    unit = np.array([[0.0, 0.5, 1.0]], np.float32)
    assert as_rgb_uint8(unit)[0, :, 0].tolist() == [0, 127, 255]
    wide = np.array([[-5.0, 20.0, 300.0, np.nan]], np.float64)
    assert as_rgb_uint8(wide)[0, :, 0].tolist() == [0, 20, 255, 0]


def test_as_rgb_uint8_returns_contiguous_arrays_and_rejects_other_shapes():
    view = np.zeros((4, 8, 3), np.uint8)[:, ::2]
    assert as_rgb_uint8(view).flags["C_CONTIGUOUS"]
    for bad in (np.zeros((2, 2, 2)), np.zeros(5), np.zeros((1, 2, 2, 3))):
        with pytest.raises(ValueError, match="expected an HxW"):
            as_rgb_uint8(bad)


# ---------------------------------------------------------------------------------------------
# The contract record
# ---------------------------------------------------------------------------------------------


def test_contract_round_trips_through_dict_and_json():
    c = Contract(input_size=192, threshold=0.4)
    d = c.to_dict()
    assert d["input_range"] == [0, 255] and d["color_order"] == "RGB" and d["resize"] == "letterbox"
    assert Contract.from_dict(d) == c
    assert Contract.from_dict(json.loads(c.to_json())) == c
    assert Contract.from_dict(json.loads(Contract().to_json())) == Contract()


def test_contract_from_dict_ignores_fields_from_a_newer_writer():
    d = Contract().to_dict() | {"added_in_a_later_release": 1}
    assert Contract.from_dict(d) == Contract()


@pytest.mark.parametrize(
    "kwargs", [{"input_size": 8}, {"input_size": 160.0}, {"threshold": 0.0}, {"threshold": 1.0}]
)
def test_contract_rejects_impossible_values(kwargs):
    with pytest.raises(ValueError):
        Contract(**kwargs)


def test_check_compatible_accepts_this_version_at_any_size():
    Contract(input_size=256).check_compatible()
    Contract.from_dict(Contract(input_size=96).to_dict()).check_compatible()


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"version": contract.CONTRACT_VERSION + 1}, "contract v2"),
        ({"version": 0}, "contract v0"),
        ({"color_order": "BGR"}, "color_order"),
        ({"input_range": (-1, 1)}, "input_range"),
        ({"resize": "stretch"}, "resize"),
        ({"pad_value": 114}, "pad_value"),
        ({"output": "logits"}, "output"),
    ],
)
def test_check_compatible_rejects_other_contracts(changes, message):
    other = Contract.from_dict(Contract().to_dict() | changes)
    with pytest.raises(ValueError, match=message):
        other.check_compatible()


# ---------------------------------------------------------------------------------------------
# Properties
# ---------------------------------------------------------------------------------------------

sides = st.integers(min_value=1, max_value=600)


@settings(max_examples=60, deadline=None)
@given(h=sides, w=sides, size=st.sampled_from([16, 33, 64, 160]))
def test_any_image_becomes_exactly_the_model_input(h, w, size):
    rgb = np.full((h, w, 3), 77, np.uint8)
    canvas, box = letterbox_image(rgb, size)
    assert canvas.shape == (size, size, 3) and canvas.dtype == np.uint8
    assert max(box.new_h, box.new_w) == size
    assert 1 <= box.new_h <= size and 1 <= box.new_w <= size
    assert np.all(canvas[box.top : box.top + box.new_h, box.left : box.left + box.new_w] == 77)
    assert int((canvas[..., 0] == 77).sum()) == box.new_h * box.new_w  # everything else is padding
    # no distortion: each side is the exact scaled side rounded (or 1 px when it would vanish)
    scale = size / max(h, w)
    assert abs(box.new_h - h * scale) <= 0.5 + 1e-9 or box.new_h == 1
    assert abs(box.new_w - w * scale) <= 0.5 + 1e-9 or box.new_w == 1


@settings(max_examples=60, deadline=None)
@given(h=sides, w=sides, size=st.sampled_from([16, 64, 160]))
def test_unletterbox_always_returns_the_image_size(h, w, size):
    box = letterbox_geometry(h, w, size)
    prob = np.random.default_rng(h * 1000 + w).random((1, size, size, 1)).astype(np.float32)
    out = unletterbox(prob, box)
    assert out.shape == (h, w) and out.dtype == np.float32
    assert 0.0 <= out.min() and out.max() <= 1.0
