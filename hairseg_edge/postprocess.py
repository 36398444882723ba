"""Post-processing of hair probability maps: soft mattes for stills, temporal smoothing for video.

* :func:`refine_matte` runs a colour-guided filter (He, Sun and Tang, "Guided Image Filtering",
  ECCV 2010; the subsampled "Fast Guided Filter", 2015) over the model's probability map. The model
  works at a low resolution (e.g. 160 px), so its upsampled edge is a smooth ramp that ignores the
  image; the guided filter makes the matte follow the image's own colour edges (strands, the line
  between hair and background), which is what a recolour or a background swap needs.
* :class:`TemporalSmoother` keeps an exponential moving average of the probabilities across video
  frames, so a mask does not flicker when the scene is still. Where the picture moves, the new frame
  gets more weight (no ghosting trails), and on a scene cut the average starts afresh.

numpy + OpenCV only (a device module).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

#: Default regularisation of the guided filter for a guide scaled to [0, 1]. Smaller values follow
#: weaker image edges; larger ones keep more of the model's own smooth ramp.
DEFAULT_EPS = 1e-3
#: The subsampled guided filter works on an image whose longer side is at most this many pixels.
FAST_SIDE = 320


def default_radius(height: int, width: int, model_input_size: int | None = None) -> int:
    """A guided-filter radius that covers the blur of a probability map upsampled to the image.

    A model of input size S predicts one value per ``max(h, w) / S`` image pixels, so its edges are
    blurred over about that many pixels; the filter window must be a few times wider to move them.
    """
    side = max(height, width)
    cell = side / model_input_size if model_input_size else side / 160.0
    return int(max(2, round(2.0 * cell)))


def _box(img: np.ndarray, radius: int) -> np.ndarray:
    """Mean over a (2r+1)^2 window, normalised at the borders (OpenCV's reflect border)."""
    return cv2.boxFilter(img, ddepth=-1, ksize=(2 * radius + 1, 2 * radius + 1),
                         normalize=True, borderType=cv2.BORDER_REFLECT)


def _guided_coefficients_color(guide: np.ndarray, src: np.ndarray, radius: int,
                               eps: float) -> tuple[np.ndarray, np.ndarray]:
    """The per-pixel linear model ``q = a . I + b`` of the colour guided filter (averaged a, b)."""
    mean_i = _box(guide, radius)  # HxWx3
    mean_p = _box(src, radius)  # HxW
    mean_ip = _box(guide * src[..., None], radius)
    cov_ip = mean_ip - mean_i * mean_p[..., None]

    # Sigma: the 3x3 covariance of the guide in each window, as its 6 distinct entries.
    r, g, b = guide[..., 0], guide[..., 1], guide[..., 2]
    mr, mg, mb = mean_i[..., 0], mean_i[..., 1], mean_i[..., 2]
    rr = _box(r * r, radius) - mr * mr + eps
    rg = _box(r * g, radius) - mr * mg
    rb = _box(r * b, radius) - mr * mb
    gg = _box(g * g, radius) - mg * mg + eps
    gb = _box(g * b, radius) - mg * mb
    bb = _box(b * b, radius) - mb * mb + eps

    # Closed-form inverse of the symmetric 3x3 matrix (vectorised; much faster than linalg.solve).
    inv_rr = gg * bb - gb * gb
    inv_rg = gb * rb - rg * bb
    inv_rb = rg * gb - gg * rb
    inv_gg = rr * bb - rb * rb
    inv_gb = rb * rg - rr * gb
    inv_bb = rr * gg - rg * rg
    det = rr * inv_rr + rg * inv_rg + rb * inv_rb
    det = np.where(np.abs(det) < 1e-12, 1e-12, det)

    c0, c1, c2 = cov_ip[..., 0], cov_ip[..., 1], cov_ip[..., 2]
    a = np.empty_like(guide)
    a[..., 0] = (inv_rr * c0 + inv_rg * c1 + inv_rb * c2) / det
    a[..., 1] = (inv_rg * c0 + inv_gg * c1 + inv_gb * c2) / det
    a[..., 2] = (inv_rb * c0 + inv_gb * c1 + inv_bb * c2) / det
    b_coef = mean_p - np.einsum("hwc,hwc->hw", a, mean_i)
    return _box(a, radius), _box(b_coef, radius)


def _guided_coefficients_gray(guide: np.ndarray, src: np.ndarray, radius: int,
                              eps: float) -> tuple[np.ndarray, np.ndarray]:
    mean_i = _box(guide, radius)
    mean_p = _box(src, radius)
    cov_ip = _box(guide * src, radius) - mean_i * mean_p
    var_i = _box(guide * guide, radius) - mean_i * mean_i
    a = cov_ip / (var_i + eps)
    b = mean_p - a * mean_i
    return _box(a, radius), _box(b, radius)


def guided_filter(guide: np.ndarray, src: np.ndarray, radius: int, eps: float = DEFAULT_EPS,
                  subsample: int = 1) -> np.ndarray:
    """Edge-preserving filter of ``src`` (HxW) steered by ``guide`` (HxWx3 colour or HxW gray).

    ``guide`` may be uint8 (scaled to [0, 1] here) or float in [0, 1]. ``subsample`` > 1 computes
    the linear coefficients on an image that many times smaller and applies them at full resolution
    (the Fast Guided Filter): nearly the same result for a fraction of the time.
    """
    if radius < 1:
        raise ValueError(f"radius must be >= 1, got {radius}")
    if eps <= 0:
        raise ValueError(f"eps must be > 0, got {eps}")
    if subsample < 1:
        raise ValueError(f"subsample must be >= 1, got {subsample}")
    guide = np.asarray(guide)
    src = np.asarray(src, dtype=np.float32)
    if guide.shape[:2] != src.shape[:2]:
        raise ValueError(f"guide is {guide.shape[:2]} but src is {src.shape[:2]}")
    guide_f = guide.astype(np.float32) / 255.0 if guide.dtype == np.uint8 else guide.astype(np.float32)
    color = guide_f.ndim == 3
    if color and guide_f.shape[2] != 3:
        raise ValueError(f"a colour guide must have 3 channels, got {guide_f.shape[2]}")
    h, w = src.shape

    if subsample > 1:
        small = (max(1, w // subsample), max(1, h // subsample))
        guide_s = cv2.resize(guide_f, small, interpolation=cv2.INTER_AREA)
        src_s = cv2.resize(src, small, interpolation=cv2.INTER_AREA)
        radius_s = max(1, round(radius / subsample))
    else:
        guide_s, src_s, radius_s = guide_f, src, radius

    coefficients = _guided_coefficients_color if color else _guided_coefficients_gray
    mean_a, mean_b = coefficients(guide_s, src_s, radius_s, eps)
    if subsample > 1:
        mean_a = cv2.resize(mean_a, (w, h), interpolation=cv2.INTER_LINEAR)
        mean_b = cv2.resize(mean_b, (w, h), interpolation=cv2.INTER_LINEAR)
    if color:
        return np.einsum("hwc,hwc->hw", mean_a, guide_f) + mean_b
    return mean_a * guide_f + mean_b


def refine_matte(rgb: np.ndarray, probability: np.ndarray, *, radius: int | None = None,
                 eps: float = DEFAULT_EPS, model_input_size: int | None = None) -> np.ndarray:
    """A soft hair matte (float32 HxW in [0, 1]) whose edges follow the image's colour edges.

    ``probability`` is the model's hair probability at the image's size (``Segmentation.probability``).
    ``radius`` defaults to :func:`default_radius` for ``model_input_size``. Large images are filtered
    with the subsampled filter so a 1080p frame stays cheap.
    """
    rgb = np.asarray(rgb)
    prob = np.asarray(probability, dtype=np.float32)
    if rgb.shape[:2] != prob.shape:
        raise ValueError(f"image is {rgb.shape[:2]} but the probability map is {prob.shape}")
    h, w = prob.shape
    if radius is None:
        radius = default_radius(h, w, model_input_size)
    subsample = max(1, min(radius, max(h, w) // FAST_SIDE))
    matte = guided_filter(rgb, prob, radius, eps, subsample=subsample)
    return np.clip(matte, 0.0, 1.0).astype(np.float32, copy=False)


def matte_to_uint8(matte: np.ndarray) -> np.ndarray:
    """A [0, 1] matte -> uint8 0..255 (rounded), as written to ``<stem>_matte.png``."""
    return np.clip(np.rint(np.asarray(matte, dtype=np.float32) * 255.0), 0, 255).astype(np.uint8)


@dataclass(frozen=True)
class SmoothingOptions:
    """How :class:`TemporalSmoother` mixes frames.

    * ``alpha``: weight of the newest frame where the picture is still (0 < alpha <= 1; 1 = off).
    * ``motion_scale``: a change of this many gray levels (0..255) in a pixel between two frames
      gives that pixel full weight to the new frame, so moving hair does not leave a trail.
    * ``scene_change``: mean absolute gray difference (0..1 of full scale) between consecutive
      16-px thumbnails above which the frame is a cut and the average restarts. Cuts between
      unrelated synthetic shots measured 0.11-0.26 here, a moving textured head at most 0.05; a
      false alarm only costs one frame without smoothing, and moving pixels follow the new frame
      anyway.
    """

    alpha: float = 0.5
    motion_scale: float = 24.0
    scene_change: float = 0.1

    def __post_init__(self) -> None:
        if not 0.0 < self.alpha <= 1.0:
            raise ValueError(f"alpha must be in (0, 1], got {self.alpha}")
        if self.motion_scale <= 0:
            raise ValueError(f"motion_scale must be > 0, got {self.motion_scale}")
        if not 0.0 < self.scene_change <= 1.0:
            raise ValueError(f"scene_change must be in (0, 1], got {self.scene_change}")

    def to_dict(self) -> dict[str, float]:
        return {"alpha": self.alpha, "motion_scale": self.motion_scale,
                "scene_change": self.scene_change}


#: Side of the gray thumbnail used for motion detection (cheap at any resolution).
_THUMB_SIDE = 64
#: Side of the coarser thumbnail used for scene cuts: fine texture moving by a pixel changes the
#: 64-px thumbnail a lot (up to 0.1 here on strand-textured hair), a 16-px one hardly at all (0.04),
#: while a cut changes both (0.24).
_SCENE_SIDE = 16


def _scene_difference(thumb: np.ndarray, previous: np.ndarray) -> float:
    """Mean absolute difference (0..1) of two thumbnails after shrinking them to ``_SCENE_SIDE``."""
    h, w = thumb.shape
    scale = min(1.0, _SCENE_SIDE / max(h, w))
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    a = cv2.resize(thumb, size, interpolation=cv2.INTER_AREA)
    b = cv2.resize(previous, size, interpolation=cv2.INTER_AREA)
    return float(np.abs(a - b).mean()) / 255.0


class TemporalSmoother:
    """Exponential moving average of hair probabilities over video frames, motion-aware.

    ``smoothed = w * new + (1 - w) * previous`` per pixel, with ``w = alpha`` where the picture is
    still, rising to 1 where it moves. The state resets on a scene cut, on a change of frame size,
    and on :meth:`reset`. Call it once per frame, in order.
    """

    def __init__(self, options: SmoothingOptions | None = None):
        self.options = options or SmoothingOptions()
        self._prob: np.ndarray | None = None
        self._thumb: np.ndarray | None = None
        self.resets = 0

    def reset(self) -> None:
        self._prob = None
        self._thumb = None

    def _thumbnail(self, rgb: np.ndarray) -> np.ndarray:
        h, w = rgb.shape[:2]
        scale = _THUMB_SIDE / max(h, w)
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        gray = cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2GRAY)
        return cv2.resize(gray, size, interpolation=cv2.INTER_AREA).astype(np.float32)

    def __call__(self, rgb: np.ndarray, probability: np.ndarray) -> np.ndarray:
        """The smoothed probability for this frame (float32, same shape as ``probability``)."""
        prob = np.asarray(probability, dtype=np.float32)
        thumb = self._thumbnail(rgb)
        previous, previous_thumb = self._prob, self._thumb
        self._thumb = thumb
        if (previous is None or previous.shape != prob.shape or previous_thumb is None
                or previous_thumb.shape != thumb.shape):
            self._prob = prob.copy()
            return prob
        change = np.abs(thumb - previous_thumb)
        if _scene_difference(thumb, previous_thumb) > self.options.scene_change:
            self.resets += 1
            self._prob = prob.copy()
            return prob
        alpha = self.options.alpha
        if alpha >= 1.0:
            self._prob = prob.copy()
            return prob
        # Motion raises the new frame's weight from alpha towards 1, per pixel.
        motion = np.clip(change / self.options.motion_scale, 0.0, 1.0)
        motion = cv2.resize(motion, (prob.shape[1], prob.shape[0]), interpolation=cv2.INTER_LINEAR)
        weight = alpha + (1.0 - alpha) * motion
        smoothed = previous + weight * (prob - previous)
        self._prob = smoothed
        return smoothed
