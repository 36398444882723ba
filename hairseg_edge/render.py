"""Drawing results: mask overlays, realistic hair recolouring, an FPS label.

The recolour works in CIE LAB, where lightness (L) and colour (a, b) are separate:

* the colour channels are *shifted* so the hair's mean a/b lands on the target colour's, keeping each
  pixel's deviation from that mean (strand-to-strand colour variation survives);
* the lightness is moved to the target's mean and its deviations scaled by the ratio of target to
  hair mean luminance (clamped), so highlights, shadows and strands stay visible instead of being
  flattened into paint;
* the result is blended with the original by a per-pixel weight (the probability, or a guided-filter
  matte), so edges fade naturally into the background.

numpy + OpenCV only (a device module).
"""

from __future__ import annotations

import inspect
import re

import cv2
import numpy as np

from .errors import InputError

RGB = tuple[int, int, int]

#: Named hair colours, as the *average* colour of such hair in a photo (shadowed strands included):
#: natural tones are dark and muted (auburn is a dark reddish brown, not copper), dyes are brighter.
#: ``--recolor red`` gives red hair and not a traffic light. Any other colour: ``#rrggbb`` or ``r,g,b``.
#: Aliases (``blond``, ``grey``) are accepted by :func:`parse_color` but not listed by
#: :func:`named_colors`.
HAIR_COLORS: dict[str, RGB] = {
    # natural
    "black": (26, 22, 20),
    "darkbrown": (56, 38, 28),
    "brown": (96, 66, 46),
    "chestnut": (112, 62, 40),
    "auburn": (106, 46, 34),
    "copper": (168, 88, 48),
    "ginger": (182, 102, 56),
    "strawberry": (196, 138, 102),
    "golden": (188, 146, 88),
    "blonde": (204, 174, 126),
    "ash": (170, 160, 140),
    "platinum": (224, 218, 202),
    "gray": (140, 138, 136),
    "silver": (186, 188, 192),
    "white": (234, 232, 226),
    # dyes
    "red": (156, 36, 34),
    "orange": (214, 110, 40),
    "pink": (222, 118, 158),
    "rose": (180, 84, 102),
    "magenta": (170, 40, 126),
    "purple": (100, 50, 136),
    "violet": (128, 88, 182),
    "blue": (42, 78, 176),
    "navy": (30, 38, 96),
    "teal": (30, 118, 124),
    "green": (46, 132, 74),
}
#: Other names :func:`parse_color` accepts (spaces, "-" and "_" removed) -> the palette's name.
ALIASES = {"blond": "blonde", "grey": "gray", "strawberryblonde": "strawberry", "ashblonde": "ash"}


def named_colors() -> dict[str, RGB]:
    """The named hair colours (name -> sRGB), in display order, aliases left out. Stable API: the web
    page's palette is exported from it."""
    return dict(HAIR_COLORS)


#: Colour of the translucent overlay (RGB): a cyan that rarely occurs in real hair.
OVERLAY_COLOR: RGB = (0, 200, 255)
#: Limits of the luminance-contrast gain, so extreme targets neither flatten nor blow out texture.
_MIN_GAIN, _MAX_GAIN = 0.75, 2.0
#: Pixels with at least this weight (of 1) are processed; the rest keep the original values.
_MIN_WEIGHT = 1.0 / 255.0


def parse_color(value: str) -> RGB:
    """``red``, ``blonde``, ``#aa33cc``, ``#a3c``, ``aa33cc`` or ``170,51,204`` -> an (r, g, b) tuple.

    Raises InputError with one line naming the value and what is accepted.
    """
    text = str(value).strip().lower()
    key = re.sub(r"[\s_-]", "", text)
    key = ALIASES.get(key, key)
    if key in HAIR_COLORS:
        return HAIR_COLORS[key]
    hex_match = re.fullmatch(r"#?([0-9a-f]{6}|[0-9a-f]{3})", text)
    if hex_match:
        digits = hex_match.group(1)
        if len(digits) == 3:
            digits = "".join(c * 2 for c in digits)
        return (int(digits[0:2], 16), int(digits[2:4], 16), int(digits[4:6], 16))
    parts = [p.strip() for p in text.split(",")]
    if len(parts) == 3 and all(re.fullmatch(r"\d{1,3}", p) for p in parts):
        channels = tuple(int(p) for p in parts)
        if all(0 <= c <= 255 for c in channels):
            return channels  # type: ignore[return-value]
        raise InputError(f"colour {value!r}: each of r,g,b must be 0..255")
    names = ", ".join(HAIR_COLORS)
    raise InputError(
        f"not a colour: {value!r} (use a name [{names}], #rrggbb or r,g,b)"
    )


def _rgb_to_lab(rgb_uint8: np.ndarray) -> np.ndarray:
    """uint8 RGB -> float32 LAB (L 0..100, a/b about -128..127): float keeps the texture's fine steps."""
    return cv2.cvtColor(rgb_uint8.astype(np.float32) / 255.0, cv2.COLOR_RGB2LAB)


def _lab_to_rgb_float(lab: np.ndarray) -> np.ndarray:
    return np.clip(cv2.cvtColor(lab, cv2.COLOR_LAB2RGB), 0.0, 1.0) * 255.0


def color_lab(color: RGB) -> np.ndarray:
    """The LAB value of one RGB colour (float32 [L, a, b])."""
    return _rgb_to_lab(np.array([[color]], dtype=np.uint8))[0, 0]


def _weight_box(weight: np.ndarray) -> tuple[slice, slice] | None:
    """The bounding box of pixels that will change (so a small head in a big frame is cheap)."""
    rows = np.flatnonzero((weight >= _MIN_WEIGHT).any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero((weight[rows[0] : rows[-1] + 1] >= _MIN_WEIGHT).any(axis=0))
    return slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1)


def recolor(rgb: np.ndarray, weight: np.ndarray, color: RGB | str, *, strength: float = 1.0,
            threshold: float = 0.5) -> np.ndarray:
    """Recolour the hair of an RGB uint8 image, keeping its texture and lighting.

    ``weight`` is the per-pixel hair weight in [0, 1] at the image's size (the probability or a soft
    matte); the hair's statistics are taken where ``weight > threshold``. ``strength`` in [0, 1]
    scales the blend (1 = full colour change). Returns a new RGB uint8 image; an image with no hair
    comes back unchanged.
    """
    if isinstance(color, str):
        color = parse_color(color)
    if not 0.0 <= strength <= 1.0:
        raise ValueError(f"strength must be in [0, 1], got {strength}")
    rgb = np.ascontiguousarray(rgb, dtype=np.uint8)
    weight = np.clip(np.asarray(weight, dtype=np.float32), 0.0, 1.0) * strength
    if weight.shape != rgb.shape[:2]:
        raise ValueError(f"image is {rgb.shape[:2]} but the weight map is {weight.shape}")
    out = rgb.copy()
    box = _weight_box(weight)
    if box is None:
        return out
    crop = rgb[box]
    w = weight[box]
    hair = w > threshold * strength if strength > 0 else np.zeros_like(w, dtype=bool)
    if not hair.any():
        return out

    lab = _rgb_to_lab(crop)
    # The hair's mean colour over confident pixels (cv2.mean with a mask: no copies).
    mean = np.array(cv2.mean(lab, mask=hair.astype(np.uint8))[:3], np.float32)
    target = color_lab(color)

    ratio = float(target[0]) / max(float(mean[0]), 1.0)
    gain = float(np.clip(ratio, _MIN_GAIN, _MAX_GAIN))
    # In place on the crop's LAB copy: L keeps its deviations (scaled), a/b are shifted.
    lightness = lab[..., 0]
    lightness -= mean[0]
    lightness *= gain
    lightness += target[0]
    np.clip(lightness, 0.0, 100.0, out=lightness)
    lab[..., 1] += target[1] - mean[1]
    lab[..., 2] += target[2] - mean[2]

    recoloured = np.rint(_lab_to_rgb_float(lab)).astype(np.uint8)
    out[box] = _blend(crop, recoloured, w)
    return out


def _blend(base: np.ndarray, top: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """``base * (1 - weight) + top * weight`` per pixel, for uint8 images (rounded, in C++)."""
    weight = np.ascontiguousarray(weight, dtype=np.float32)
    return cv2.blendLinear(np.ascontiguousarray(base), np.ascontiguousarray(top), 1.0 - weight, weight)


def overlay(rgb: np.ndarray, weight: np.ndarray, *, color: RGB = OVERLAY_COLOR,
            opacity: float = 0.5, outline: bool = True, threshold: float = 0.5) -> np.ndarray:
    """Tint the hair with a translucent colour (weighted by ``weight``) and outline the mask."""
    if not 0.0 <= opacity <= 1.0:
        raise ValueError(f"opacity must be in [0, 1], got {opacity}")
    rgb = np.ascontiguousarray(rgb, dtype=np.uint8)
    weight = np.clip(np.asarray(weight, dtype=np.float32), 0.0, 1.0)
    if weight.shape != rgb.shape[:2]:
        raise ValueError(f"image is {rgb.shape[:2]} but the weight map is {weight.shape}")
    out = rgb.copy()
    box = _weight_box(weight)
    if box is not None:
        crop = rgb[box]
        tint = np.empty_like(crop)
        tint[:] = color
        out[box] = _blend(crop, tint, weight[box] * opacity)
    if outline:
        mask = (weight > threshold).astype(np.uint8)
        contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        thickness = max(1, round(max(rgb.shape[:2]) / 400))
        cv2.drawContours(out, contours, -1, color, thickness, lineType=cv2.LINE_AA)
    return out


def draw_label(rgb: np.ndarray, text: str) -> np.ndarray:
    """Draw ``text`` (e.g. ``"23.4 FPS"``) in the top-left corner, in place; returns the image."""
    h, w = rgb.shape[:2]
    scale = max(0.3, min(h, w) / 480.0)
    thickness = max(1, round(scale * 1.5))
    org = (max(2, round(6 * scale)), max(10, round(22 * scale)))
    # A dark outline under white text stays readable on any background.
    cv2.putText(rgb, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), thickness + 2, cv2.LINE_AA)
    cv2.putText(rgb, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), thickness,
                cv2.LINE_AA)
    return rgb


def mask_to_uint8(mask: np.ndarray) -> np.ndarray:
    """A boolean hair mask -> uint8 0/255, as written to ``<stem>_mask.png``."""
    return np.where(np.asarray(mask, dtype=bool), np.uint8(255), np.uint8(0))


def recolor_settings() -> dict[str, object]:
    """What a re-implementation of :func:`recolor` outside Python needs, as JSON-ready values.

    The web example (``examples/web``, written to its ``build/palette.json`` by ``make web``) reads
    this instead of keeping its own copy of the palette, so the page and ``run --recolor`` cannot drift
    apart: the named colours, the gain limits, the weight below which a pixel is left alone, and
    :func:`recolor`'s default threshold and strength.
    """
    defaults = inspect.signature(recolor).parameters
    return {
        # The palette's names first (a menu lists those), then the aliases parse_color also accepts.
        "colors": {name: [int(c) for c in rgb] for name, rgb in
                   {**named_colors(), **{a: HAIR_COLORS[n] for a, n in ALIASES.items()}}.items()},
        "min_gain": float(_MIN_GAIN),
        "max_gain": float(_MAX_GAIN),
        "min_weight": float(_MIN_WEIGHT),
        "threshold": float(defaults["threshold"].default),
        "strength": float(defaults["strength"].default),
    }
