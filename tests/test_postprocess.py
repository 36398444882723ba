"""Guided-filter soft mattes and temporal smoothing (hairseg_edge.postprocess)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from hairseg_edge.contract import binarize
from hairseg_edge.metrics import iou
from hairseg_edge.postprocess import (
    SmoothingOptions,
    TemporalSmoother,
    default_radius,
    guided_filter,
    matte_to_uint8,
    refine_matte,
)


def _edge_scene(h: int = 64, w: int = 96, edge: int = 50) -> tuple[np.ndarray, np.ndarray]:
    """An image with a sharp colour edge at column ``edge`` (hair on the left) and its true matte."""
    rgb = np.empty((h, w, 3), np.uint8)
    rgb[:, :edge] = (60, 35, 25)  # dark brown "hair"
    rgb[:, edge:] = (120, 200, 230)  # light blue background
    noise = np.random.default_rng(0).normal(0, 4, rgb.shape)
    rgb = np.clip(rgb + noise, 0, 255).astype(np.uint8)
    truth = np.zeros((h, w), np.float32)
    truth[:, :edge] = 1.0
    return rgb, truth


def _blurry_probability(truth: np.ndarray, shift: int, sigma: float) -> np.ndarray:
    """What an upsampled low-resolution model gives: a soft ramp, a few pixels off the true edge."""
    moved = np.roll(truth, -shift, axis=1)
    moved[:, -shift:] = 0.0
    return cv2.GaussianBlur(moved, (0, 0), sigma)


def test_refined_matte_snaps_to_the_image_edge_instead_of_the_model_ramp():
    rgb, truth = _edge_scene(edge=50)
    prob = _blurry_probability(truth, shift=3, sigma=3.0)  # a soft ramp crossing 0.5 near column 47
    matte = refine_matte(rgb, prob, radius=6)
    assert matte.shape == truth.shape and matte.dtype == np.float32
    assert 0.0 <= matte.min() and matte.max() <= 1.0
    row_prob, row_matte = prob[32], matte[32]
    assert int(np.flatnonzero(row_prob < 0.5)[0]) == 47
    # The matte crosses 0.5 exactly at the colour edge, in one step rather than over ~8 pixels.
    assert int(np.flatnonzero(row_matte < 0.5)[0]) == 50
    assert row_matte[49] - row_matte[50] > 0.4
    assert row_prob[49] - row_prob[50] < 0.15


def test_guided_filter_keeps_a_constant_map_constant_colour_and_gray():
    rng = np.random.default_rng(1)
    guide = rng.integers(0, 256, (40, 56, 3), dtype=np.uint8)
    flat = np.full((40, 56), 0.7, np.float32)
    np.testing.assert_allclose(guided_filter(guide, flat, 4), 0.7, atol=1e-3)
    np.testing.assert_allclose(guided_filter(guide[..., 0], flat, 4), 0.7, atol=1e-3)


def test_subsampled_guided_filter_is_close_to_the_full_one():
    rgb, truth = _edge_scene(h=240, w=320, edge=170)
    prob = _blurry_probability(truth, shift=6, sigma=6.0)
    full = guided_filter(rgb, prob, 8, subsample=1)
    fast = guided_filter(rgb, prob, 8, subsample=4)
    assert np.abs(full - fast).mean() < 0.02


def test_guided_filter_rejects_bad_arguments():
    rgb, truth = _edge_scene()
    with pytest.raises(ValueError, match="radius"):
        guided_filter(rgb, truth, 0)
    with pytest.raises(ValueError, match="eps"):
        guided_filter(rgb, truth, 2, eps=0)
    with pytest.raises(ValueError, match="guide is"):
        guided_filter(rgb[:10], truth, 2)
    with pytest.raises(ValueError, match="probability map"):
        refine_matte(rgb, truth[:, :5])


def test_default_radius_grows_with_the_upsampling_factor():
    assert default_radius(160, 160, 160) == 2
    assert default_radius(1080, 1920, 160) == 24
    assert default_radius(48, 64, None) >= 2


def test_matte_to_uint8_rounds_and_clips():
    out = matte_to_uint8(np.array([[0.0, 0.5, 1.0, 1.2, -0.1, 0.999]], np.float32))
    assert out.dtype == np.uint8
    assert out.tolist() == [[0, 128, 255, 255, 0, 255]]


# --------------------------------------------------------------------------------------------------
# Temporal smoothing
# --------------------------------------------------------------------------------------------------


def _noisy_sequence(n: int = 40, seed: int = 2):
    """A still frame and per-frame probabilities that hover around 0.5 along the hair edge."""
    rng = np.random.default_rng(seed)
    rgb, truth = _edge_scene()
    base = cv2.GaussianBlur(truth, (0, 0), 2.0)
    probs = [np.clip(base + rng.normal(0, 0.15, base.shape).astype(np.float32), 0, 1)
             for _ in range(n)]
    return rgb, probs


def _flicker(masks: list[np.ndarray]) -> float:
    return float(np.mean([iou(a, b) for a, b in zip(masks, masks[1:])]))


def test_smoothing_reduces_flicker_on_a_still_scene():
    rgb, probs = _noisy_sequence()
    smoother = TemporalSmoother()
    raw = [binarize(p) for p in probs]
    smoothed = [binarize(smoother(rgb, p)) for p in probs]
    # Flicker (1 - consecutive IoU) at least halves.
    assert 1.0 - _flicker(smoothed) < 0.5 * (1.0 - _flicker(raw))
    assert smoother.resets == 0


def test_first_frame_passes_through_and_alpha_one_is_off():
    rgb, probs = _noisy_sequence(n=3)
    smoother = TemporalSmoother()
    np.testing.assert_array_equal(smoother(rgb, probs[0]), probs[0])
    off = TemporalSmoother(SmoothingOptions(alpha=1.0))
    for p in probs:
        np.testing.assert_array_equal(off(rgb, p), p)


def test_a_scene_cut_restarts_the_average():
    rgb, probs = _noisy_sequence(n=5)
    smoother = TemporalSmoother()
    for p in probs:
        smoother(rgb, p)
    other_scene = 255 - rgb  # a completely different picture
    fresh = np.zeros_like(probs[0])
    np.testing.assert_array_equal(smoother(other_scene, fresh), fresh)
    assert smoother.resets == 1


def test_moving_pixels_follow_the_new_frame_and_still_pixels_are_averaged():
    rgb, _ = _edge_scene()
    smoother = TemporalSmoother(SmoothingOptions(alpha=0.5, scene_change=0.9))
    zeros = np.zeros(rgb.shape[:2], np.float32)
    smoother(rgb, zeros)
    moved = rgb.copy()
    moved[:, :24] = 255 - moved[:, :24]  # the left quarter changes a lot; the rest is still
    ones = np.ones_like(zeros)
    out = smoother(moved, ones)
    assert out[:, :16].mean() > 0.95  # moving: the new frame wins (no ghost trail)
    np.testing.assert_allclose(out[:, 40:], 0.5, atol=1e-6)  # still: alpha-weighted average


def test_a_change_of_frame_size_restarts_the_average():
    rgb, probs = _noisy_sequence(n=2)
    smoother = TemporalSmoother()
    smoother(rgb, probs[0])
    small = cv2.resize(rgb, (48, 32))
    p = np.full((32, 48), 0.9, np.float32)
    np.testing.assert_array_equal(smoother(small, p), p)


@pytest.mark.parametrize("kwargs", [{"alpha": 0.0}, {"alpha": 1.5}, {"motion_scale": 0},
                                    {"scene_change": 0.0}])
def test_smoothing_options_are_checked(kwargs):
    with pytest.raises(ValueError):
        SmoothingOptions(**kwargs)
