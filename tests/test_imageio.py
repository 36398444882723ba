"""Reading every kind of image file users have, and writing outputs atomically and safely."""

from __future__ import annotations

import os
import stat

import cv2
import numpy as np
import pytest

from hairseg_edge.errors import InputError
from hairseg_edge.imageio import (
    atomic_path,
    read_image,
    read_mask,
    safe_child,
    write_bytes,
    write_image,
    write_text,
)

try:
    from PIL import Image
except ImportError:  # Pillow comes with matplotlib in the dev venv; a core-only install may lack it
    Image = None

needs_pillow = pytest.mark.skipif(
    Image is None, reason="Pillow is not installed (needed to write this file type)"
)


def _two_colour(h: int = 20, w: int = 40) -> np.ndarray:
    """Left half red, right half blue: orientation and channel order are visible."""
    rgb = np.zeros((h, w, 3), np.uint8)
    rgb[:, : w // 2] = (255, 0, 0)
    rgb[:, w // 2 :] = (0, 0, 255)
    return rgb


def _jpeg_bytes(rgb: np.ndarray, **params) -> bytes:
    flags = [cv2.IMWRITE_JPEG_QUALITY, 95]
    for key, value in params.items():
        flags += [getattr(cv2, key), value]
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), flags)
    assert ok
    return buf.tobytes()


# ---------------------------------------------------------------------------------------------
# Reading
# ---------------------------------------------------------------------------------------------


def test_rgb_png_comes_back_in_rgb_order(tmp_path):
    rgb = _two_colour()
    path = tmp_path / "a.png"
    cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    out = read_image(path)
    assert out.dtype == np.uint8 and out.shape == (20, 40, 3)
    assert np.array_equal(out, rgb)


def test_grayscale_becomes_three_equal_channels(tmp_path):
    gray = np.tile(np.arange(0, 250, 10, dtype=np.uint8), (5, 1))
    path = tmp_path / "g.png"
    cv2.imwrite(str(path), gray)
    out = read_image(path)
    assert out.shape == (5, 25, 3)
    for c in range(3):
        assert np.array_equal(out[..., c], gray)


def test_rgba_drops_alpha(tmp_path):
    bgra = np.zeros((6, 6, 4), np.uint8)
    bgra[..., 0] = 200  # blue
    bgra[..., 3] = np.arange(6, dtype=np.uint8)[None] * 50  # varying alpha must not matter
    path = tmp_path / "rgba.png"
    cv2.imwrite(str(path), bgra)
    out = read_image(path)
    assert out.shape == (6, 6, 3)
    assert np.all(out[..., 2] == 200) and np.all(out[..., :2] == 0)


@needs_pillow
def test_palette_png_is_expanded_to_its_colours(tmp_path):
    indices = np.array([[0, 1], [2, 1]], np.uint8)
    im = Image.fromarray(indices, mode="P")
    im.putpalette([10, 20, 30, 200, 100, 50, 0, 255, 0] + [0] * (256 * 3 - 9))
    path = tmp_path / "pal.png"
    im.save(path)
    out = read_image(path)
    assert out.tolist() == [[[10, 20, 30], [200, 100, 50]], [[0, 255, 0], [200, 100, 50]]]


def test_16_bit_png_is_scaled_to_8_bits(tmp_path):
    deep = np.zeros((2, 3), np.uint16)
    deep[0] = [0, 256 * 100, 65535]
    path = tmp_path / "deep.png"
    cv2.imwrite(str(path), deep)
    out = read_image(path)
    assert out.dtype == np.uint8
    assert out[0, :, 0].tolist() == [0, 100, 255]


@needs_pillow
def test_cmyk_jpeg_is_converted_to_rgb(tmp_path):
    path = tmp_path / "cmyk.jpg"
    Image.new("CMYK", (16, 8), (0, 255, 255, 0)).save(path, quality=95)  # pure red in CMYK
    out = read_image(path)
    assert out.shape == (8, 16, 3)
    r, g, b = out[4, 8].astype(int)
    assert r > 230 and g < 30 and b < 30


@needs_pillow
def test_exif_orientation_6_is_applied(tmp_path):
    stored = _two_colour(20, 40)  # left red, right blue
    im = Image.fromarray(stored)
    exif = im.getexif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    path = tmp_path / "rotated.jpg"
    im.save(path, exif=exif, quality=95)
    out = read_image(path)
    assert out.shape == (40, 20, 3)  # portrait now
    # turned clockwise, the stored left (red) edge is on top and the right (blue) edge at the bottom
    assert out[5, 10, 0] > 200 and out[5, 10, 2] < 50
    assert out[35, 10, 2] > 200 and out[35, 10, 0] < 50


@pytest.mark.parametrize("suffix", [".png", ".jpg"])
def test_a_1x1_image(tmp_path, suffix):
    path = tmp_path / f"dot{suffix}"
    cv2.imwrite(str(path), np.array([[[10, 120, 240]]], np.uint8))
    out = read_image(path)
    assert out.shape == (1, 1, 3)
    assert np.abs(out[0, 0].astype(int) - [240, 120, 10]).max() <= 8


def test_paths_with_spaces_and_non_ascii_characters(tmp_path):
    folder = tmp_path / "my photos" / "ñandú 图像"
    rgb = _two_colour()
    path = write_image(folder / "tête à tête.png", rgb)
    assert path.is_file()
    assert np.array_equal(read_image(path), rgb)
    mask_path = write_image(folder / "mäske 1.png", np.array([[0, 255], [7, 0]], np.uint8))
    assert read_mask(mask_path).tolist() == [[0, 1], [1, 0]]


def test_missing_empty_folder_and_garbage_files_are_input_errors(tmp_path):
    with pytest.raises(InputError, match="no such file") as err:
        read_image(tmp_path / "nope.jpg")
    assert "nope.jpg" in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(InputError, match="is a folder"):
        read_image(tmp_path)
    (tmp_path / "zero.jpg").write_bytes(b"")
    with pytest.raises(InputError, match="0 bytes"):
        read_image(tmp_path / "zero.jpg")
    (tmp_path / "notes.jpg").write_text("this is not an image\n")
    with pytest.raises(InputError, match="not a readable image") as err:
        read_image(tmp_path / "notes.jpg")
    assert err.value.path == str(tmp_path / "notes.jpg")


@pytest.mark.parametrize("progressive", [False, True])
def test_truncated_jpeg_is_reported(tmp_path, progressive):
    data = _jpeg_bytes(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8),
                       IMWRITE_JPEG_PROGRESSIVE=int(progressive))
    full = tmp_path / "full.jpg"
    full.write_bytes(data)
    assert read_image(full).shape == (64, 64, 3)
    for cut in (len(data) // 2, len(data) - 2, 30):
        path = tmp_path / f"cut{cut}.jpg"
        path.write_bytes(data[:cut])
        with pytest.raises(InputError, match="truncated"):
            read_image(path)


def test_truncated_png_is_reported(tmp_path):
    ok, buf = cv2.imencode(".png", np.random.default_rng(1).integers(0, 255, (32, 32, 3), dtype=np.uint8))
    path = tmp_path / "cut.png"
    path.write_bytes(buf.tobytes()[: len(buf) // 2])
    with pytest.raises(InputError, match="truncated"):
        read_image(path)
    with pytest.raises(InputError, match="truncated"):
        read_mask(path)


def test_jpeg_with_data_after_its_end_is_read(tmp_path):
    """Phones append data after the image (Motion Photo videos, maker trailers): not a truncated file."""
    rgb = _two_colour()
    path = tmp_path / "motion.jpg"
    path.write_bytes(_jpeg_bytes(rgb) + b"\x00" * 64 + b"ftypmp42" + bytes(range(256)) * 8)
    out = read_image(path)
    assert out.shape == (20, 40, 3)
    assert out[10, 5, 0] > 200 and out[10, 35, 2] > 200


@needs_pillow
def test_truncated_jpeg_whose_header_holds_an_end_marker_is_still_reported(tmp_path):
    """An EXIF thumbnail (or a comment) carries FFD9 in the header; it must not hide a cut image."""
    path = tmp_path / "c.jpg"
    noise = np.random.default_rng(2).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    Image.fromarray(noise).save(path, quality=90, comment=b"thumb \xff\xd8 ... \xff\xd9 end")
    data = path.read_bytes()
    assert data.index(b"\xff\xd9") < len(data) // 4  # the comment's marker is early in the file
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match="truncated"):
        read_image(path)


def test_read_mask_nonzero_is_hair_for_gray_palette_16_bit_and_colour(tmp_path):
    gray = np.array([[0, 1], [255, 0]], np.uint8)
    cv2.imwrite(str(tmp_path / "g.png"), gray)
    assert read_mask(tmp_path / "g.png").tolist() == [[0, 1], [1, 0]]
    deep = np.array([[0, 1], [0, 65535]], np.uint16)  # 1/65535 would vanish if scaled to 8 bits
    cv2.imwrite(str(tmp_path / "d.png"), deep)
    assert read_mask(tmp_path / "d.png").tolist() == [[0, 1], [0, 1]]
    colour = np.zeros((2, 2, 3), np.uint8)
    colour[0, 0] = (0, 0, 255)
    colour[1, 1] = (0, 9, 0)
    cv2.imwrite(str(tmp_path / "c.png"), colour)
    assert read_mask(tmp_path / "c.png").tolist() == [[1, 0], [0, 1]]
    if Image is not None:  # a PASCAL-VOC-style palette mask: index 0 is black, classes are colours
        im = Image.fromarray(np.array([[0, 3], [0, 1]], np.uint8), mode="P")
        im.putpalette([0, 0, 0, 128, 0, 0, 0, 128, 0, 128, 128, 0] + [0] * (252 * 3))
        im.save(tmp_path / "p.png")
        assert read_mask(tmp_path / "p.png").tolist() == [[0, 1], [0, 1]]


# ---------------------------------------------------------------------------------------------
# Writing
# ---------------------------------------------------------------------------------------------


def _leftovers(folder):
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def test_failed_write_leaves_no_temp_file_and_keeps_the_old_file(tmp_path):
    final = tmp_path / "report.json"
    final.write_text("old")
    with pytest.raises(RuntimeError, match="boom"):
        with atomic_path(final, force=True) as tmp:
            tmp.write_text("half written")
            raise RuntimeError("boom")
    assert final.read_text() == "old"
    assert _leftovers(tmp_path) == []
    fresh = tmp_path / "new.bin"
    with pytest.raises(RuntimeError):
        with atomic_path(fresh) as tmp:
            tmp.write_bytes(b"partial")
            raise RuntimeError("crash")
    assert not fresh.exists() and _leftovers(tmp_path) == []


def test_refuses_to_overwrite_without_force(tmp_path):
    path = write_text(tmp_path / "a.txt", "first")
    with pytest.raises(InputError, match="already exists") as err:
        write_text(path, "second")
    assert "--force" in str(err.value) and str(path) in str(err.value)
    assert path.read_text() == "first"
    write_text(path, "second", force=True)
    assert path.read_text() == "second"
    image = write_image(tmp_path / "m.png", np.zeros((2, 2), np.uint8))
    with pytest.raises(InputError, match="already exists"):
        write_image(image, np.full((2, 2), 255, np.uint8))
    assert not read_mask(image).any()
    assert _leftovers(tmp_path) == []


def test_unencodable_suffix_writes_nothing(tmp_path):
    with pytest.raises((InputError, cv2.error)):
        write_image(tmp_path / "x.notaformat", np.zeros((4, 4, 3), np.uint8))
    assert list(tmp_path.iterdir()) == []


def test_writes_create_folders_and_get_normal_permissions(tmp_path):
    path = write_bytes(tmp_path / "deep" / "er" / "out.bin", b"\x00\x01")
    assert path.read_bytes() == b"\x00\x01"
    if os.name == "posix":
        reference = tmp_path / "reference"
        reference.write_bytes(b"")
        # an atomic write (mkstemp) must not leave an owner-only 0600 file behind
        assert stat.S_IMODE(path.stat().st_mode) == stat.S_IMODE(reference.stat().st_mode)


def test_write_image_round_trips_rgb_and_gray(tmp_path):
    rgb = _two_colour()
    assert np.array_equal(read_image(write_image(tmp_path / "c.png", rgb)), rgb)
    mask = np.array([[0, 255], [255, 0]], np.uint8)
    assert read_mask(write_image(tmp_path / "m.png", mask)).tolist() == [[0, 1], [1, 0]]


def test_safe_child_keeps_names_inside_the_folder(tmp_path):
    assert safe_child(tmp_path, "photo.png") == (tmp_path / "photo.png").resolve()
    escaped = safe_child(tmp_path, "../x")
    assert escaped.parent == tmp_path.resolve() and escaped.name == "x"
    assert safe_child(tmp_path, "../../etc/passwd").parent == tmp_path.resolve()
    assert safe_child(tmp_path, "/abs/path/name.jpg") == (tmp_path / "name.jpg").resolve()
    for bad in ("..", ".", "", "a/.."):
        with pytest.raises(InputError, match="output name"):
            safe_child(tmp_path, bad)


@pytest.mark.skipif(os.name != "posix", reason="symlinks need POSIX here")
def test_safe_child_refuses_a_symlink_pointing_out_of_the_folder(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "link.png").symlink_to(tmp_path / "elsewhere.png")
    with pytest.raises(InputError, match="escapes"):
        safe_child(out, "link.png")
