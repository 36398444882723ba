"""Overlays, realistic hair recolouring and colour parsing (hairseg_edge.render)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from hairseg_edge.errors import InputError
from hairseg_edge.render import (
    HAIR_COLORS,
    OVERLAY_COLOR,
    color_lab,
    draw_label,
    mask_to_uint8,
    overlay,
    parse_color,
    recolor,
)
from hairseg_edge.synth import render_sample


def _lab(rgb: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(rgb.astype(np.float32) / 255.0, cv2.COLOR_RGB2LAB)


def _head(seed: int = 5, size: int = 128) -> tuple[np.ndarray, np.ndarray]:
    """A synthetic head with strand-textured hair, and its exact hair mask (bool)."""
    rgb, mask = render_sample(np.random.default_rng(seed), size, size, hair=True)
    assert mask.sum() > 500, "the fixture head needs a real hair region"
    return rgb, mask.astype(bool)


def _hue_distance(lab_pixels: np.ndarray, target_lab: np.ndarray) -> float:
    """Angle (radians) between the mean a/b direction of the pixels and the target's."""
    mean_ab = lab_pixels[:, 1:].mean(axis=0)
    a = np.arctan2(mean_ab[1], mean_ab[0])
    b = np.arctan2(target_lab[2], target_lab[1])
    return float(abs((a - b + np.pi) % (2 * np.pi) - np.pi))


# --------------------------------------------------------------------------------------------------
# Colours
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "expected"), [
    ("red", HAIR_COLORS["red"]),
    ("  Blonde ", HAIR_COLORS["blonde"]),
    ("dark-brown", HAIR_COLORS["darkbrown"]),
    ("Grey", HAIR_COLORS["gray"]),
    ("blond", HAIR_COLORS["blonde"]),
    ("#aa33cc", (0xAA, 0x33, 0xCC)),
    ("#A3C", (0xAA, 0x33, 0xCC)),
    ("aa33cc", (0xAA, 0x33, 0xCC)),
    ("170,51,204", (170, 51, 204)),
    ("170, 51 ,204", (170, 51, 204)),
])
def test_parse_color_accepts_names_hex_and_rgb(text, expected):
    assert parse_color(text) == expected


@pytest.mark.parametrize("text", ["nope", "#12345", "#ggg000", "300,0,0", "1,2", "1,2,3,4", "", "-1,0,0"])
def test_parse_color_rejects_bad_values_in_one_line(text):
    with pytest.raises(InputError) as info:
        parse_color(text)
    message = str(info.value)
    assert "\n" not in message and repr(text) in message


# --------------------------------------------------------------------------------------------------
# Recolouring
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [5, 2], ids=["light-hair", "dark-hair"])
@pytest.mark.parametrize("name", ["red", "blonde", "purple", "#2266dd"])
def test_recolor_keeps_texture_and_moves_hue_toward_the_target(name, seed):
    rgb, hair = _head(seed)
    target = color_lab(parse_color(name))
    before = _lab(rgb)[hair]
    out = recolor(rgb, hair.astype(np.float32), name)
    after = _lab(out)[hair]
    # Texture: lightness still varies from strand to strand (not a flat paint).
    assert after[:, 0].std() > 0.5 * before[:, 0].std()
    # Colour: the hair's mean a/b lands near the target's, and its hue turns toward it.
    ab_before = np.linalg.norm(before[:, 1:].mean(axis=0) - target[1:])
    ab_after = np.linalg.norm(after[:, 1:].mean(axis=0) - target[1:])
    assert ab_after < 6.0 and ab_after < ab_before
    assert _hue_distance(after, target) < 0.35
    # Lighting: the hair's mean lightness follows the target's.
    assert abs(after[:, 0].mean() - target[0]) < 12.0


def test_recolor_leaves_non_hair_pixels_untouched():
    rgb, hair = _head(seed=6)
    out = recolor(rgb, hair.astype(np.float32), "copper")
    np.testing.assert_array_equal(out[~hair], rgb[~hair])
    assert out.dtype == np.uint8 and out.shape == rgb.shape


def test_recolor_blends_by_soft_weight():
    rgb, hair = _head(seed=7)
    original = rgb.astype(np.int32)
    full = recolor(rgb, hair.astype(np.float32), "blue").astype(np.int32)
    partial = recolor(rgb, hair * np.float32(0.6), "blue").astype(np.int32)
    # A 0.6 weight lands between the original and the full recolour (the same hair statistics,
    # since 0.6 is still above the 0.5 hair threshold).
    change_full = np.abs(full - original)[hair].sum()
    change_partial = np.abs(partial - original)[hair].sum()
    assert 0.5 * change_full < change_partial < 0.7 * change_full


def test_recolor_without_hair_returns_the_image_unchanged():
    rgb, _ = _head(seed=8)
    out = recolor(rgb, np.zeros(rgb.shape[:2], np.float32), "red")
    np.testing.assert_array_equal(out, rgb)
    assert out is not rgb


def test_recolor_checks_shapes_and_strength():
    rgb, hair = _head()
    with pytest.raises(ValueError, match="weight map"):
        recolor(rgb, hair[:10].astype(np.float32), "red")
    with pytest.raises(ValueError, match="strength"):
        recolor(rgb, hair.astype(np.float32), "red", strength=1.5)
    with pytest.raises(InputError):
        recolor(rgb, hair.astype(np.float32), "not-a-colour")


# --------------------------------------------------------------------------------------------------
# Overlay, label, mask
# --------------------------------------------------------------------------------------------------


def test_overlay_tints_hair_and_keeps_the_background():
    rgb, hair = _head(seed=9)
    out = overlay(rgb, hair.astype(np.float32))
    far_from_hair = cv2.dilate(hair.astype(np.uint8), np.ones((7, 7), np.uint8)) == 0
    np.testing.assert_array_equal(out[far_from_hair], rgb[far_from_hair])
    tint = np.asarray(OVERLAY_COLOR, np.float32)
    dist_before = np.linalg.norm(rgb[hair].astype(np.float32) - tint, axis=1).mean()
    dist_after = np.linalg.norm(out[hair].astype(np.float32) - tint, axis=1).mean()
    assert dist_after < 0.6 * dist_before


def test_draw_label_writes_into_the_top_left_corner():
    img = np.full((48, 64, 3), 90, np.uint8)
    out = draw_label(img.copy(), "12.3 FPS")
    assert (out[:20, :40] != 90).any()
    np.testing.assert_array_equal(out[30:], img[30:])


def test_mask_to_uint8_is_0_or_255():
    out = mask_to_uint8(np.array([[True, False], [False, True]]))
    assert out.dtype == np.uint8 and out.tolist() == [[255, 0], [0, 255]]


# --------------------------------------------------------------------------------------------------
# The named palette (issue 27): names look like the hair colours they are named after
# --------------------------------------------------------------------------------------------------


def _lch(color) -> tuple[float, float, float]:
    lab = color_lab(color)
    return float(lab[0]), float(np.hypot(lab[1], lab[2])), float(np.degrees(np.arctan2(lab[2], lab[1])))


def test_named_colors_is_the_palette_without_aliases():
    from hairseg_edge.render import named_colors

    palette = named_colors()
    assert {"auburn", "blonde", "copper", "black", "gray", "red"} <= set(palette)
    assert not {"blond", "grey"} & set(palette)
    for name, rgb in palette.items():
        assert parse_color(name) == rgb and len(rgb) == 3 and all(0 <= c <= 255 for c in rgb)
    palette["auburn"] = (0, 0, 0)
    assert named_colors()["auburn"] != (0, 0, 0)  # a copy: callers cannot change the palette


def test_auburn_is_a_dark_reddish_brown_not_copper():
    light, chroma, hue = _lch(parse_color("auburn"))
    assert light < 35 and 15 < chroma < 40 and 15 < hue < 50  # dark, muted, red-orange hue
    copper_light, copper_chroma, _ = _lch(parse_color("copper"))
    assert copper_light > light + 10 and copper_chroma > chroma
    # Natural tones are ordered dark to light as their names say.
    lightness = [_lch(parse_color(n))[0] for n in ("black", "darkbrown", "brown", "golden", "blonde",
                                                     "platinum")]
    assert lightness == sorted(lightness)


def test_hex_colours_and_strength_from_the_command_line(tmp_path):
    from typer.testing import CliRunner

    from hairseg_edge.cli import app
    from hairseg_edge.imageio import read_image, write_image

    rgb, _ = _head(seed=2, size=160)
    write_image(tmp_path / "face.png", rgb)
    results = {}
    for strength in ("0", "0.5", "1"):
        out = tmp_path / f"s{strength}"
        result = CliRunner().invoke(app, ["run", str(tmp_path / "face.png"), "--out", str(out),
                                          "--recolor", "#2266DD", "--recolor-strength", strength])
        assert result.exit_code == 0, result.output
        results[strength] = read_image(out / "face_recolor.png").astype(int)
    np.testing.assert_array_equal(results["0"], rgb)
    half = np.abs(results["0.5"] - rgb).sum()
    assert 0.3 * np.abs(results["1"] - rgb).sum() < half < 0.7 * np.abs(results["1"] - rgb).sum()
    bad = CliRunner().invoke(app, ["run", str(tmp_path / "face.png"), "--out", str(tmp_path / "bad"),
                                   "--recolor", "auburn", "--recolor-strength", "1.5"])
    assert bad.exit_code == 2 and "--recolor-strength must be between 0 and 1" in bad.stderr


def test_the_committed_contact_sheet_is_small_and_shows_every_named_colour():
    from pathlib import Path

    from hairseg_edge.render import named_colors

    sheet = Path(__file__).resolve().parents[1] / "docs" / "recolor-contact-sheet.jpg"
    assert sheet.stat().st_size < 500 * 1024
    image = cv2.imread(str(sheet))
    # scripts/contact_sheet.py: blocks of 3 tiles of 120 px (+ a 18 px label, 2 px margins), 4 a row,
    # one block for the originals and one per named colour.
    blocks = 1 + len(named_colors())
    assert image.shape[1] == 4 * (3 * 120 + 4)
    assert image.shape[0] == -(-blocks // 4) * (120 + 18 + 4)
