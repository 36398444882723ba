"""Synthetic "faces with hair" data sets, for tests, demos and smoke-training without real data.

Each sample is drawn as a label map (background, clothes, hair, skin, eyes/brows, lips) and then
painted: a varied background (gradient, smooth colour noise, stripes, flat colour or blocks), a
skin-coloured face with eyes, brows and mouth, optional neck and shoulders, and hair as a strand-textured
blob in one of several styles (short, medium, long, bun, curly; optional fringe), sometimes running off
the frame. The hair mask is *exactly* the pixels painted as hair. Hair differs from everything else by
its colour (backgrounds and clothes are drawn away from the hair colour) and by its directional strand
texture, not only by where it sits, so a model can learn to segment it.

Everything is deterministic: sample ``k`` of seed ``s`` is drawn from ``numpy.random.default_rng([s, k])``,
so a data set of 32 starts with the same 16 images as one of 16.

:func:`make_dataset` writes either layout that :mod:`hairseg_edge.data` reads:

* ``layout="folder"``: ``images/synth_<k>.jpg|png`` + ``masks/synth_<k>.png`` (0 / 255).
* ``layout="celebamask-hq"``: ``CelebA-HQ-img/<k>.jpg`` (1024x1024 unless ``size`` says otherwise) +
  ``CelebAMask-HQ-mask-anno/<k//2000>/<k:05d>_hair.png`` (and ``_skin.png``) at half the image size,
  with no hair file for hairless samples (every fifth one is drawn bald or in a hat, as in the real set).
  The label map is drawn at the annotation's resolution and doubled, so the nearest-neighbour upscale that
  the reader applies restores the exact hair pixels of the image.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from .data import CELEBA_ANNO_DIR, CELEBA_IMG_DIR, CELEBAMASK_HQ, FOLDER
from .imageio import write_image

# Labels of the internal label map.
_BACKGROUND, _CLOTHES, _HAIR, _SKIN, _DARK, _LIPS = range(6)

#: Base hair colours (RGB): black, dark brown, brown, light brown, blonde, platinum, auburn, ginger,
#: grey, and two dyed colours.
HAIR_COLOURS = (
    (24, 20, 18), (52, 36, 26), (92, 62, 40), (140, 100, 62), (206, 170, 110), (228, 214, 176),
    (130, 50, 28), (186, 92, 40), (150, 148, 146), (120, 40, 120), (40, 80, 150),
)
_HAIR_WEIGHTS = (0.2, 0.18, 0.15, 0.1, 0.1, 0.04, 0.07, 0.06, 0.05, 0.025, 0.025)
#: Skin tones (RGB), light to dark.
SKIN_COLOURS = (
    (255, 224, 196), (241, 194, 160), (224, 172, 135), (198, 134, 96), (160, 105, 70),
    (110, 72, 48), (80, 54, 38),
)
_STYLES = ("short", "medium", "long", "bun", "curly")
_STYLE_WEIGHTS = (0.25, 0.25, 0.3, 0.08, 0.12)
#: Probability that :func:`render_sample` draws a hairless head when not told.
BALD_PROBABILITY = 0.05
_MIN_SIDE = 8


# --------------------------------------------------------------------------------------------------
# Textures
# --------------------------------------------------------------------------------------------------


def _smooth_noise(rng: np.random.Generator, h: int, w: int, cells_y: int, cells_x: int) -> np.ndarray:
    """A smooth random field in [0, 1] of size h x w, with about cells_y x cells_x blobs."""
    grid = rng.random((max(2, cells_y), max(2, cells_x))).astype(np.float32)
    field = cv2.resize(grid, (w, h), interpolation=cv2.INTER_CUBIC)
    return np.clip(field, 0.0, 1.0)


def _far_colour(rng: np.random.Generator, avoid: Sequence[np.ndarray], min_dist: float) -> np.ndarray:
    """A random RGB colour at least ``min_dist`` (Euclidean) from every colour in ``avoid``."""
    best, best_dist = None, -1.0
    for _ in range(64):
        c = rng.uniform(0, 255, 3).astype(np.float32)
        d = min((float(np.linalg.norm(c - a)) for a in avoid), default=1e9)
        if d >= min_dist:
            return c
        if d > best_dist:
            best, best_dist = c, d
    return best  # a colour this close to the hair is very rare; take the farthest one seen


def _coords(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    return yy, xx


def _background(rng: np.random.Generator, h: int, w: int, avoid: list[np.ndarray]) -> np.ndarray:
    s = min(h, w)
    kind = rng.choice(["gradient", "noise", "stripes", "solid", "blocks"], p=[0.25, 0.25, 0.2, 0.15, 0.15])
    c1 = _far_colour(rng, avoid, 90)
    c2 = _far_colour(rng, avoid, 90)
    if kind == "gradient":
        yy, xx = _coords(h, w)
        phi = rng.uniform(0, 2 * math.pi)
        t = xx * math.cos(phi) + yy * math.sin(phi)
        t = (t - t.min()) / max(float(t.max() - t.min()), 1e-6)
        bg = c1 * (1 - t[..., None]) + c2 * t[..., None]
    elif kind == "noise":
        c3 = _far_colour(rng, avoid, 90)
        k = int(rng.integers(2, 7))
        t1 = _smooth_noise(rng, h, w, k, k)[..., None]
        t2 = _smooth_noise(rng, h, w, k, k)[..., None]
        bg = c1 * t1 + c2 * (1 - t1)
        bg = bg * (1 - 0.5 * t2) + c3 * 0.5 * t2
    elif kind == "stripes":
        yy, xx = _coords(h, w)
        phi = rng.uniform(0, math.pi)
        period = max(4.0, s * rng.uniform(0.06, 0.3))
        wave = np.sin(2 * math.pi * (xx * math.cos(phi) + yy * math.sin(phi)) / period)
        t = (wave > 0).astype(np.float32) if rng.random() < 0.5 else (wave + 1) / 2
        bg = c1 * t[..., None] + c2 * (1 - t[..., None])
    elif kind == "solid":
        shade = 0.85 + 0.3 * _smooth_noise(rng, h, w, 2, 2)
        bg = c1 * shade[..., None]
    else:  # blocks: a room-like scene of rectangles
        bg = np.broadcast_to(c1, (h, w, 3)).copy()
        for _ in range(int(rng.integers(2, 7))):
            y0, x0 = int(rng.integers(0, h)), int(rng.integers(0, w))
            y1 = y0 + int(rng.integers(max(2, s // 10), max(3, s // 2)))
            x1 = x0 + int(rng.integers(max(2, s // 10), max(3, s // 2)))
            bg[y0:y1, x0:x1] = _far_colour(rng, avoid, 90)
    return bg.astype(np.float32)


def _strand_texture(rng: np.random.Generator, h: int, w: int, curly: bool) -> np.ndarray:
    """Zero-mean, unit-ish directional noise that looks like strands of hair."""
    s = min(h, w)
    noise = rng.standard_normal((h, w)).astype(np.float32)
    length = max(5, int(s * (0.04 if curly else 0.08)) | 1)
    kernel = np.zeros((length, length), np.float32)
    theta = math.pi / 2 + rng.uniform(-0.45, 0.45)  # mostly vertical strands
    c = length // 2
    dx, dy = math.cos(theta) * c, math.sin(theta) * c
    start = (int(round(c - dx)), int(round(c - dy)))
    end = (int(round(c + dx)), int(round(c + dy)))
    cv2.line(kernel, start, end, 1.0, 1)
    kernel /= max(float(kernel.sum()), 1.0)
    strands = cv2.filter2D(noise, -1, kernel, borderType=cv2.BORDER_REFLECT)
    if curly:  # curls: add a second, crossing direction and some blob structure
        strands = strands + cv2.filter2D(noise, -1, kernel.T, borderType=cv2.BORDER_REFLECT)
        strands = strands + 0.5 * (_smooth_noise(rng, h, w, s // 6, s // 6) - 0.5)
    std = float(strands.std())
    return strands / std if std > 0 else strands


# --------------------------------------------------------------------------------------------------
# Geometry (label map)
# --------------------------------------------------------------------------------------------------


def _ellipse(canvas: np.ndarray, centre: tuple[float, float], axes: tuple[float, float], angle: float,
             value: int) -> None:
    cv2.ellipse(canvas, (int(round(centre[0])), int(round(centre[1]))),
                (max(1, int(round(axes[0]))), max(1, int(round(axes[1])))), angle, 0, 360, value, -1)


def _roughen(region: np.ndarray, rng: np.random.Generator, amount: float, streaky: bool) -> np.ndarray:
    """Make a smooth shape's outline irregular (tufts, strands at the ends) without moving it much."""
    h, w = region.shape
    s = min(h, w)
    sigma = max(0.8, s * 0.012)
    soft = cv2.GaussianBlur(region.astype(np.float32), (0, 0), sigma)
    cells_y = max(2, s // 12)
    cells_x = max(2, s // (4 if streaky else 12))  # many columns, few rows: vertical strands
    noise = _smooth_noise(rng, h, w, cells_y, cells_x) - 0.5
    return (soft + amount * noise) > 0.5


def _draw_labels(rng: np.random.Generator, h: int, w: int, hair: bool) -> np.ndarray:
    """The label map of one head at resolution h x w."""
    lab = np.zeros((h, w), np.uint8)
    s = min(h, w)
    close_up = rng.random() < 0.15
    a = s * (rng.uniform(0.26, 0.36) if close_up else rng.uniform(0.13, 0.24))  # face half-width
    b = a * rng.uniform(1.2, 1.45)  # face half-height
    cx = w * rng.uniform(0.3, 0.7)
    cy = h * rng.uniform(0.42, 0.6) if close_up else h * rng.uniform(0.36, 0.62)
    tilt = rng.uniform(-8, 8)

    if rng.random() < 0.75:  # shoulders and clothes
        _ellipse(lab, (cx + a * rng.uniform(-0.3, 0.3), cy + b * rng.uniform(1.7, 2.3)),
                 (a * rng.uniform(2.2, 3.3), b * rng.uniform(0.9, 1.4)), 0, _CLOTHES)

    style = rng.choice(_STYLES, p=_STYLE_WEIGHTS)
    fringe = False
    if hair:
        back = np.zeros((h, w), np.uint8)
        grow = rng.uniform(1.45, 1.7) if style == "curly" else rng.uniform(1.12, 1.4)
        cap_c = (cx + a * rng.uniform(-0.12, 0.12), cy - b * rng.uniform(0.12, 0.32))
        cap_axes = (a * grow, b * rng.uniform(0.95, 1.2) * (1.15 if style == "curly" else 1.0))
        _ellipse(back, cap_c, cap_axes, tilt, 1)
        if style == "short":
            cut = int(cy + b * rng.uniform(-0.15, 0.2))
            back[max(0, cut):] = 0
        elif style == "bun":
            cut = int(cy + b * rng.uniform(-0.1, 0.15))
            back[max(0, cut):] = 0
            r = a * rng.uniform(0.35, 0.55)
            _ellipse(back, (cap_c[0], cap_c[1] - cap_axes[1] - r * 0.6), (r, r), 0, 1)
        else:  # medium, long and curly hair hang down beside the face
            reach = rng.uniform(0.4, 1.1) if style in ("medium", "curly") else rng.uniform(1.3, 3.4)
            bottom = cy + b * reach
            half_top = cap_axes[0] * rng.uniform(0.92, 1.0)
            half_bottom = half_top * rng.uniform(0.85, 1.3)
            poly = np.array([[cap_c[0] - half_top, cap_c[1]], [cap_c[0] + half_top, cap_c[1]],
                             [cx + half_bottom, bottom], [cx - half_bottom, bottom]], np.float32)
            cv2.fillPoly(back, [np.round(poly).astype(np.int32)], 1)
        streaky = style in ("long", "medium")
        amount = 0.9 if style == "curly" else rng.uniform(0.3, 0.7)
        lab[_roughen(back.astype(bool), rng, amount, streaky)] = _HAIR
        fringe = rng.random() < 0.55
    elif rng.random() < 0.5:  # hairless sample: half of them wear a hat instead (no hair pixels)
        hat = np.zeros((h, w), np.uint8)
        _ellipse(hat, (cx, cy - b * 0.45), (a * 1.15, b * 0.75), tilt, 1)
        hat[int(cy - b * 0.3):] = 0
        lab[hat.astype(bool)] = _CLOTHES

    # Neck and ears, then the face on top of the hair behind it.
    x0, x1 = int(cx - a * 0.45), int(cx + a * 0.45)
    lab[max(0, int(cy + b * 0.5)):max(0, int(cy + b * 1.9)), max(0, x0):max(0, x1)] = _SKIN
    if not hair or style in ("short", "bun") or rng.random() < 0.3:
        for side in (-1, 1):
            _ellipse(lab, (cx + side * a * 0.97, cy + b * 0.02), (a * 0.17, b * 0.28), 0, _SKIN)
    face = np.zeros((h, w), np.uint8)
    _ellipse(face, (cx, cy), (a, b), tilt, 1)
    face_b = face.astype(bool)
    lab[face_b] = _SKIN

    # Eyes, brows and mouth (drawn before the fringe so a fringe can cover them).
    features = np.zeros((h, w), np.uint8)
    for side in (-1, 1):
        _ellipse(features, (cx + side * a * 0.38, cy - b * 0.1), (a * 0.16, b * 0.07), tilt, _DARK)
        _ellipse(features, (cx + side * a * 0.38, cy - b * 0.3), (a * 0.2, b * 0.035), tilt, _DARK)
    _ellipse(features, (cx, cy + b * 0.5), (a * rng.uniform(0.22, 0.35), b * 0.07), tilt, _LIPS)
    on_face = (features > 0) & face_b
    lab[on_face] = features[on_face]

    if fringe:  # bangs over the forehead with a wavy, sometimes sloped (side-parted) lower edge
        yy, xx = _coords(h, w)
        base = cy - b * rng.uniform(0.2, 0.55)
        slope = rng.uniform(-0.35, 0.35)
        period = max(3.0, a * rng.uniform(0.25, 0.6))
        edge = base + slope * (xx - cx) + b * 0.06 * np.sin(2 * math.pi * xx / period + rng.uniform(0, 6.3))
        lab[face_b & (yy < edge)] = _HAIR

    if rng.random() < 0.7:  # head pose: turn the whole head about the face centre
        angle = rng.uniform(-15, 15)
        rot = cv2.getRotationMatrix2D((float(cx), float(cy)), angle, 1.0)
        lab = cv2.warpAffine(lab, rot, (w, h), flags=cv2.INTER_NEAREST, borderMode=cv2.BORDER_REPLICATE)
    return lab


# --------------------------------------------------------------------------------------------------
# Painting
# --------------------------------------------------------------------------------------------------


def _paint(rng: np.random.Generator, labels: np.ndarray, curly: bool) -> np.ndarray:
    h, w = labels.shape
    hair_colour = np.array(HAIR_COLOURS[rng.choice(len(HAIR_COLOURS), p=_HAIR_WEIGHTS)], np.float32)
    hair_colour = np.clip(hair_colour + rng.normal(0, 10, 3), 0, 255).astype(np.float32)
    skin = np.array(SKIN_COLOURS[rng.integers(len(SKIN_COLOURS))], np.float32) + rng.normal(0, 8, 3)

    img = _background(rng, h, w, avoid=[hair_colour])

    clothes = labels == _CLOTHES
    if clothes.any():
        colour = _far_colour(rng, [hair_colour], 80)
        shade = 0.8 + 0.3 * _smooth_noise(rng, h, w, 3, 3)
        img[clothes] = (colour * shade[..., None])[clothes]

    skin_px = labels == _SKIN
    if skin_px.any():
        shade = 0.88 + 0.16 * _smooth_noise(rng, h, w, 4, 4)
        img[skin_px] = (skin * shade[..., None])[skin_px]
    img[labels == _DARK] = np.clip(hair_colour * 0.5, 10, 60) + rng.uniform(0, 15)
    img[labels == _LIPS] = skin * np.array([0.85, 0.55, 0.55], np.float32)

    hair_px = labels == _HAIR
    if hair_px.any():
        strands = _strand_texture(rng, h, w, curly)
        light = 0.85 + 0.3 * _smooth_noise(rng, h, w, 3, 3)
        # Additive strand contrast so black hair is textured too; highlights scale with brightness.
        contrast = 16.0 + 0.22 * hair_colour
        hair_rgb = hair_colour * light[..., None] + strands[..., None] * contrast
        img[hair_px] = hair_rgb[hair_px]

    # Camera: exposure, a slight colour cast, sensor noise, sometimes a little softness.
    img = img * rng.uniform(0.85, 1.12) + rng.normal(0, 6, 3).astype(np.float32)
    img = img + rng.normal(0, rng.uniform(1.0, 5.0), img.shape).astype(np.float32)
    if rng.random() < 0.4:
        img = cv2.GaussianBlur(img, (0, 0), rng.uniform(0.4, 0.9))
    return np.clip(img, 0, 255).astype(np.uint8)


def _render(rng: np.random.Generator, height: int, width: int, label_factor: int,
            hair: bool | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(rgb, hair mask, skin mask) with the label map drawn at 1/label_factor resolution."""
    if height < _MIN_SIDE or width < _MIN_SIDE:
        raise ValueError(f"synthetic images must be at least {_MIN_SIDE}x{_MIN_SIDE}, got {width}x{height}")
    if hair is None:
        hair = bool(rng.random() >= BALD_PROBABILITY)
    lh, lw = -(-height // label_factor), -(-width // label_factor)
    small = _draw_labels(rng, lh, lw, hair)
    labels = np.repeat(np.repeat(small, label_factor, axis=0), label_factor, axis=1)[:height, :width]
    curly = bool(rng.random() < 0.15)
    rgb = _paint(rng, labels, curly)
    return rgb, (labels == _HAIR).astype(np.uint8), (labels == _SKIN).astype(np.uint8)


def render_sample(rng: np.random.Generator, height: int, width: int, *,
                  hair: bool | None = None, mask_scale: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Draw one synthetic head: (RGB uint8 ``height x width x 3``, hair mask uint8 in {0, 1}).

    ``hair=None`` draws a hairless head (bald or in a hat) with probability :data:`BALD_PROBABILITY`;
    True/False forces it. Any size of at least 8x8 works, square or not. ``mask_scale=k`` draws the
    shapes on a grid ``k`` times coarser, so ``mask[::k, ::k]`` upscaled by nearest-neighbour gives the
    mask back exactly (how the CelebAMask-HQ layout stores half-size annotations).
    """
    if mask_scale < 1:
        raise ValueError(f"mask_scale must be >= 1, got {mask_scale}")
    rgb, mask, _ = _render(rng, int(height), int(width), int(mask_scale), hair)
    return rgb, mask


# --------------------------------------------------------------------------------------------------
# Data sets on disk
# --------------------------------------------------------------------------------------------------


def _normalise_sizes(size: int | tuple[int, int] | Sequence[tuple[int, int]] | None,
                     layout: str) -> list[tuple[int, int]]:
    if size is None:
        return [(1024, 1024)] if layout == CELEBAMASK_HQ else [(96, 96)]
    if isinstance(size, (int, np.integer)):
        return [(int(size), int(size))]
    items = list(size)
    if len(items) == 2 and all(isinstance(v, (int, np.integer)) for v in items):
        sizes = [(int(items[0]), int(items[1]))]
    else:
        sizes = [(int(h), int(w)) for h, w in items]
    if not sizes:
        raise ValueError("size: give (height, width) or a non-empty list of them")
    return sizes


def make_dataset(
    root: str | os.PathLike[str],
    n: int = 16,
    layout: str = FOLDER,
    size: int | tuple[int, int] | Sequence[tuple[int, int]] | None = None,
    seed: int = 0,
    image_format: str = "jpg",
    *,
    first_id: int = 0,
    overwrite: bool = False,
) -> Path:
    """Write ``n`` synthetic samples under ``root`` in ``layout``; returns ``root``.

    Args:
        root: folder to create or fill (existing files are kept; clashing names need ``overwrite``).
        n: number of samples.
        layout: ``"folder"`` or ``"celebamask-hq"`` (see the module docstring).
        size: ``(height, width)``, an int for a square, or a list of ``(height, width)`` used in turn
            (sample ``i`` gets ``sizes[i % len(sizes)]``). Default 96x96 for the folder layout and
            1024x1024 for CelebAMask-HQ. The CelebAMask-HQ layout needs even sides (masks are half size).
        seed: data set seed; sample ``k`` depends only on ``(seed, k)``.
        image_format: ``"jpg"`` or ``"png"``.
        first_id: number of the first sample (e.g. 1998 to cross the CelebAMask-HQ 2000-id subfolder).
        overwrite: replace files that already exist instead of raising InputError.
    """
    if layout not in (FOLDER, CELEBAMASK_HQ):
        raise ValueError(f"layout must be {FOLDER!r} or {CELEBAMASK_HQ!r}, got {layout!r}")
    if image_format not in ("jpg", "png"):
        raise ValueError(f"image_format must be 'jpg' or 'png', got {image_format!r}")
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    if first_id < 0:
        raise ValueError(f"first_id must be >= 0, got {first_id}")
    sizes = _normalise_sizes(size, layout)
    for h, w in sizes:
        if h < _MIN_SIDE or w < _MIN_SIDE:
            raise ValueError(f"size {h}x{w} is too small (at least {_MIN_SIDE}x{_MIN_SIDE})")
        if layout == CELEBAMASK_HQ and (h % 2 or w % 2):
            raise ValueError(f"the CelebAMask-HQ layout needs even sizes (masks are half size), got {h}x{w}")

    root = Path(root)
    for i in range(n):
        k = first_id + i
        h, w = sizes[i % len(sizes)]
        rng = np.random.default_rng([seed, k])
        if layout == FOLDER:
            rgb, mask, _ = _render(rng, h, w, 1, None)
            sample_id = f"synth_{k:05d}"
            write_image(root / "images" / f"{sample_id}.{image_format}", rgb, force=overwrite)
            write_image(root / "masks" / f"{sample_id}.png", mask * 255, force=overwrite)
        else:
            # Every fifth sample is hairless, so every set of five or more has ids without a hair file.
            rgb, mask, skin = _render(rng, h, w, 2, False if i % 5 == 4 else None)
            write_image(root / CELEBA_IMG_DIR / f"{k}.{image_format}", rgb, force=overwrite)
            anno = root / CELEBA_ANNO_DIR / str(k // 2000)
            # The annotation is drawn at half size and doubled by _render: every other pixel is exact.
            write_image(anno / f"{k:05d}_skin.png", skin[::2, ::2] * 255, force=overwrite)
            if mask.any():
                write_image(anno / f"{k:05d}_hair.png", mask[::2, ::2] * 255, force=overwrite)
    return root


def agreement_images(photo: np.ndarray, seed: int = 2024) -> list[np.ndarray]:
    """The images an int8 model must agree on with its float original before it ships (the regression
    test and the ship script's gate): ``photo`` (the sample photo), a wide crop of it, and nine
    generated faces of three shapes. Off the training distribution on purpose: a model that agrees
    only on the faces it was calibrated and validated on is not robust enough to ship."""
    rng = np.random.default_rng(seed)
    images = [photo, np.ascontiguousarray(photo[96:416])]
    images += [render_sample(rng, h, w)[0] for h, w in [(256, 256), (200, 300), (320, 240)] * 3]
    return images
