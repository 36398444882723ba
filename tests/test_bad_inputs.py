"""The bad-input catalogue: every command that reads files, fed every kind of hostile file.

Each case ends in one of two ways, and nothing else:

* **handled**: a valid image in an odd format (16-bit, grayscale, RGBA, palette, CMYK, 1x1,
  8000x8000, a path with spaces and non-ASCII characters) is converted and processed, exit 0;
* **refused**: exactly one line on stderr that names the offending file and the problem, exit 2,
  no traceback.

The bulk runs through Typer's CliRunner in this process (fast); :func:`test_real_entry_point` feeds
one case per command to ``python -m hairseg_edge`` in a real subprocess, so the installed entry
point and its error handling are covered too. The file builders here make every case from scratch
(no data files in the repo). Safe loading (``safe_mode=True``, no pickles, output names that cannot
escape the output folder) is checked at the end, in the source and in behaviour.
"""

from __future__ import annotations

import ast
import contextlib
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import zipfile
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from hairseg_edge.cli import app
from hairseg_edge.synth import make_dataset, render_sample

REPO = Path(__file__).resolve().parents[1]
#: Side of the tiny .keras model that train/export cases use (a multiple of 32).
KERAS_SIZE = 32
#: A folder and file name with spaces and non-ASCII characters (Latin, CJK, an emoji).
ODD_NAME = "dossier à l'été 头发 💇"

try:
    from PIL import Image
except ImportError:  # Pillow comes with matplotlib in the dev venv; a core-only install may lack it
    Image = None


# ==================================================================================================
# File builders: every catalogue entry made from scratch
# ==================================================================================================


def _head(h: int = 48, w: int = 64, seed: int = 0) -> np.ndarray:
    """A synthetic head (RGB uint8) with red-ish hair regions for the tiny 'hair is red' model."""
    rgb, _ = render_sample(np.random.default_rng(seed), h, w, hair=True)
    return rgb


def _encode(suffix: str, image: np.ndarray, *flags: int) -> bytes:
    """OpenCV encoding; ``image`` is RGB (3 channels), RGBA (4) or single-channel."""
    if image.ndim == 3 and image.shape[2] == 3:
        image = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    elif image.ndim == 3 and image.shape[2] == 4:
        image = cv2.cvtColor(image, cv2.COLOR_RGBA2BGRA)
    ok, buf = cv2.imencode(suffix, image, list(flags))
    assert ok, suffix
    return buf.tobytes()


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def _palette_png(indices: np.ndarray, palette: list[tuple[int, int, int]]) -> bytes:
    """An 8-bit palette (colour type 3) PNG written by hand: OpenCV cannot write one."""
    h, w = indices.shape
    raw = b"".join(b"\x00" + indices[y].astype(np.uint8).tobytes() for y in range(h))
    return (b"\x89PNG\r\n\x1a\n"
            + _png_chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 3, 0, 0, 0))
            + _png_chunk(b"PLTE", bytes(v for rgb in palette for v in rgb))
            + _png_chunk(b"IDAT", zlib.compress(raw))
            + _png_chunk(b"IEND", b""))


_HUGE_PNG: dict[int, bytes] = {}


def _solid_png(side: int) -> bytes:
    """A solid dark-red square PNG: 8000x8000 compresses to a few hundred kB (built once)."""
    if side not in _HUGE_PNG:
        bgr = np.empty((side, side, 3), np.uint8)
        bgr[:] = (20, 20, 200)
        _HUGE_PNG[side] = _encode(".png", bgr[..., ::-1].copy(), cv2.IMWRITE_PNG_COMPRESSION, 1)
    return _HUGE_PNG[side]


def _cmyk_jpeg(rgb: np.ndarray) -> bytes:
    import io

    buf = io.BytesIO()
    Image.fromarray(rgb).convert("CMYK").save(buf, format="JPEG", quality=95)
    return buf.getvalue()


#: Valid images in odd formats: name -> (file suffix, bytes builder). All must be converted and processed.
ODD_IMAGES: dict[str, tuple[str, Callable[[], bytes]]] = {
    "png16": (".png", lambda: _encode(".png", _head().astype(np.uint16) * 257)),
    "gray": (".png", lambda: _encode(".png", cv2.cvtColor(_head(), cv2.COLOR_RGB2GRAY))),
    "gray_jpeg": (".jpg", lambda: _encode(".jpg", cv2.cvtColor(_head(), cv2.COLOR_RGB2GRAY))),
    "rgba": (".png", lambda: _encode(".png", np.dstack([_head(), np.full((48, 64), 128, np.uint8)]))),
    "palette": (".png", lambda: _palette_png(np.indices((48, 64)).sum(0) % 3,
                                             [(200, 20, 20), (30, 30, 30), (240, 220, 200)])),
    "cmyk_jpeg": (".jpg", lambda: _cmyk_jpeg(_head())),
    "one_pixel": (".png", lambda: _encode(".png", np.array([[[220, 10, 10]]], np.uint8))),
    "huge_8000": (".png", lambda: _solid_png(8000)),
}

#: Damaged or fake image files: name -> (file suffix, bytes builder, words the one-line error must hold).
BAD_IMAGES: dict[str, tuple[str, Callable[[], bytes], str]] = {
    "zero_byte": (".jpg", lambda: b"", "empty file"),
    "truncated_jpeg": (".jpg", lambda: _encode(".jpg", _head())[:600], "truncated"),
    "truncated_png": (".png", lambda: _encode(".png", _head())[:300], "truncated"),
    # A JPEG start and end marker around noise, and a PNG whose IDAT checksum is wrong.
    # (the JPEG reader may call noise after the start marker "truncated": either way, one line)
    "corrupt_jpeg": (".jpg", lambda: b"\xff\xd8" + np.random.default_rng(1).bytes(2000) + b"\xff\xd9",
                     "image"),
    "corrupt_png": (".png", lambda: _corrupt_png(), "not a readable image"),
    "text_named_jpg": (".jpg", lambda: b"this is a text file, not a photo\n" * 10, "not a readable image"),
}


def _corrupt_png() -> bytes:
    data = bytearray(_encode(".png", _head()))
    idat = data.find(b"IDAT")
    for k in range(idat + 20, idat + 60):
        data[k] ^= 0x5A
    return bytes(data)


def odd_image(name: str) -> bytes:
    if name == "cmyk_jpeg" and Image is None:
        pytest.skip("writing a CMYK JPEG needs Pillow")
    return ODD_IMAGES[name][1]()


def image_size(data: bytes) -> tuple[int, int]:
    """(height, width) of an encoded image, as the readers see it."""
    decoded = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    return decoded.shape[:2]


def write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def mask_png(h: int, w: int, *, values: tuple[int, ...] = (0, 255)) -> bytes:
    """A mask whose left half holds values[0] and right half the others in stripes."""
    mask = np.full((h, w), values[0], np.uint8)
    for k, v in enumerate(values[1:]):
        mask[:, w // 2:][k::max(1, len(values) - 1)] = v
    return _encode(".png", mask)


def dataset_with(root: Path, image_name: str, image_bytes: bytes, mask_bytes: bytes | None = None,
                 *, n_good: int = 3) -> Path:
    """A folder-format data set: ``n_good`` synthetic samples plus one given image (and mask)."""
    if n_good:
        make_dataset(root, n=n_good, size=(48, 64), seed=5)
    else:
        (root / "images").mkdir(parents=True)
        (root / "masks").mkdir(parents=True)
    write(root / "images" / image_name, image_bytes)
    if mask_bytes is None:
        try:
            h, w = image_size(image_bytes)
        except Exception:  # a damaged image: any mask will do, the image fails first
            h, w = 48, 64
        mask_bytes = mask_png(h, w)
    write(root / "masks" / f"{Path(image_name).stem}.png", mask_bytes)
    return root


# ==================================================================================================
# Running commands and checking the two allowed outcomes
# ==================================================================================================


def cli(*args: object):
    return CliRunner().invoke(app, [str(a) for a in args])


def refused(result, *fragments: str) -> str:
    """Exit 2, one line on stderr holding every fragment, no traceback; returns the line."""
    assert result.exit_code == 2, (result.exit_code, result.stdout[-2000:], result.stderr[-2000:])
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    # A bare tiny model (no hairseg metadata) adds its own warning line, checked in
    # test_reliability.py; the refusal itself is one line.
    lines = [ln for ln in result.stderr.splitlines() if ln.strip() and not ln.startswith("hairseg-edge: warning: ")]
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    return lines[0]


def handled(result) -> None:
    assert result.exit_code == 0, (result.exit_code, result.stdout[-2000:], result.stderr[-2000:],
                                   repr(result.exception))
    assert "Traceback" not in result.stderr + result.stdout


@pytest.fixture(scope="module")
def keras_models(tmp_path_factory) -> dict[str, Path]:
    """Tiny .keras files: ``hair`` (a valid 32 px hairseg model, hair = red), ``lambda`` (the same
    with a Lambda layer, which safe mode must refuse), ``not_a_model`` (a zip that holds no model)
    and ``text`` (a text file named .keras). Built in this process: the train and export cases
    that use them import TensorFlow here anyway."""
    from hairseg_edge.training.keras_compat import keras

    out = tmp_path_factory.mktemp("keras_models")

    def build(with_lambda: bool):
        inp = keras.Input((KERAS_SIZE, KERAS_SIZE, 3), name="image")
        x = keras.layers.Rescaling(1.0 / 255.0)(inp)
        if with_lambda:
            x = keras.layers.Lambda(lambda t: t * 1.0, name="code")(x)
        head = keras.layers.Conv2D(1, 1, activation="sigmoid", name="head")
        model = keras.Model(inp, head(x))
        weights = np.zeros((1, 1, 3, 1), np.float32)
        weights[0, 0, 0, 0] = 10.0
        head.set_weights([weights, np.array([-5.0], np.float32)])
        return model

    build(False).save(out / "hair.keras")
    build(True).save(out / "lambda.keras")
    with zipfile.ZipFile(out / "not_a_model.keras", "w") as zf:
        zf.writestr("readme.txt", "a zip archive, but no Keras model inside")
    (out / "text.keras").write_text("model = 'trust me'\n")
    whole = (out / "hair.keras").read_bytes()
    (out / "truncated.keras").write_bytes(whole[: len(whole) // 2])
    return {name: out / f"{name}.keras" for name in ("hair", "lambda", "not_a_model", "text", "truncated")}


@pytest.fixture(scope="module")
def bad_models(tmp_path_factory, tiny_tflite) -> dict[str, Path]:
    """Files passed where a .tflite model is expected: name -> path."""
    out = tmp_path_factory.mktemp("bad_models")
    good = tiny_tflite["float32"].read_bytes()
    models = {
        "zero_byte": write(out / "empty.tflite", b""),
        "text": write(out / "notes.tflite", b"not a model at all\n" * 20),
        "png_as_model": write(out / "photo.png", _encode(".png", _head())),
        "keras_as_tflite": write(out / "model.keras", b"PK\x03\x04" + b"\x00" * 100),
        "truncated": write(out / "truncated.tflite", good[: len(good) // 2]),
        "missing": out / "no-such-model.tflite",
    }
    return models


@pytest.fixture
def full_folder(tmp_path) -> Iterator[Path]:
    """A 64 kB tmpfs filled to the last byte (a full disk); skips where mounting is not allowed."""
    mount_point = tmp_path / "full disk"
    mount_point.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount_point)],
                          capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here ({proc.stderr.strip() or proc.returncode})")
    try:
        out = mount_point / "out"
        out.mkdir()
        fd = os.open(mount_point / "filler", os.O_WRONLY | os.O_CREAT)
        try:
            with contextlib.suppress(OSError):
                while True:
                    os.write(fd, b"\x00" * 1024)
        finally:
            os.close(fd)
        yield out
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


@pytest.fixture
def small_disk(tmp_path) -> Iterator[Path]:
    """An empty 200 kB tmpfs: room for a video's start, not for all of it (a disk filling up)."""
    mount_point = tmp_path / "small disk"
    mount_point.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=200k", "tmpfs", str(mount_point)],
                          capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here ({proc.stderr.strip() or proc.returncode})")
    try:
        yield mount_point / "out"
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


@pytest.fixture
def under_a_file(tmp_path) -> Path:
    """An output path below a regular file: unwritable even for root."""
    blocker = tmp_path / "blocker.txt"
    blocker.write_text("a regular file, not a folder\n")
    return blocker / "out"


# ==================================================================================================
# run
# ==================================================================================================


@pytest.mark.parametrize("name", [n if n != "huge_8000" else pytest.param(n, marks=pytest.mark.slow)
                                  for n in ODD_IMAGES])
def test_run_converts_and_segments_odd_but_valid_images(name, tmp_path, tiny_tflite):
    data = odd_image(name)
    src = write(tmp_path / ODD_NAME / f"{name} é{ODD_IMAGES[name][0]}", data)
    out = tmp_path / f"out {ODD_NAME}"
    # (no overlay for the 8000x8000 image: encoding a 192 MB overlay PNG adds nothing to the check)
    extra = [] if name == "huge_8000" else ["--overlay"]
    handled(cli("run", src, "--model", tiny_tflite["uint8"], "--out", out, *extra))
    mask = cv2.imread(str(out / f"{src.stem}_mask.png"), cv2.IMREAD_UNCHANGED)
    assert mask is not None and mask.shape == image_size(data)
    assert set(np.unique(mask)) <= {0, 255}
    assert len(list(out.glob(f"{src.stem}_overlay.*"))) == len(extra)
    if name in ("huge_8000", "one_pixel"):  # solid dark red / pure red: all hair for this model
        assert mask.min() == 255


@pytest.mark.parametrize("name", list(BAD_IMAGES))
def test_run_refuses_damaged_images_in_one_line(name, tmp_path, tiny_tflite):
    suffix, build, words = BAD_IMAGES[name]
    src = write(tmp_path / ODD_NAME / f"bad {name}{suffix}", build())
    out = tmp_path / "out"
    refused(cli("run", src, "--model", tiny_tflite["float32"], "--out", out), str(src), words)
    assert not out.exists() or not any(out.iterdir())


def test_run_over_a_folder_reports_each_bad_file_and_processes_the_rest(tmp_path, tiny_tflite):
    folder = tmp_path / "photos"
    write(folder / "good.jpg", _encode(".jpg", _head()))
    for name, (suffix, build, _) in BAD_IMAGES.items():
        write(folder / f"{name}{suffix}", build())
    result = cli("run", folder, "--model", tiny_tflite["float32"], "--out", tmp_path / "out")
    assert result.exit_code == 2 and "Traceback" not in result.stderr
    lines = [ln for ln in result.stderr.strip().splitlines() if not ln.startswith("hairseg-edge: warning: ")]
    # One line per bad file naming it, then the summary line.
    assert len(lines) == len(BAD_IMAGES) + 1, result.stderr
    for name in BAD_IMAGES:
        assert sum(name in line for line in lines) == 1, (name, result.stderr)
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["good_mask.png"]


@pytest.mark.parametrize("case", ["zero_byte", "text", "png_as_model", "keras_as_tflite", "truncated",
                                  "missing"])
def test_run_refuses_files_that_are_not_tflite_models(case, tmp_path, bad_models):
    src = write(tmp_path / "a.jpg", _encode(".jpg", _head()))
    model = bad_models[case]
    refused(cli("run", src, "--model", model, "--out", tmp_path / "out"), str(model))
    assert not (tmp_path / "out" / "a_mask.png").exists()


@pytest.mark.parametrize("command", ["run", "bench", "eval", "info"])
def test_a_folder_given_as_the_model(command, tmp_path):
    folder = tmp_path / "models folder"
    folder.mkdir()
    src = write(tmp_path / "a.jpg", _encode(".jpg", _head()))
    data = make_dataset(tmp_path / "data", n=2, size=(48, 64), seed=1)
    args = {"run": ["run", src, "--model", folder, "--out", tmp_path / "out"],
            "bench": ["bench", folder, "--runs", "2"],
            "eval": ["eval", folder, "--data", data],
            "info": ["info", folder]}[command]
    refused(cli(*args), str(folder), "folder")


def test_run_on_a_folder_without_images(tmp_path, tiny_tflite):
    folder = tmp_path / "no photos"
    write(folder / "notes.txt", b"nothing to see\n")
    refused(cli("run", folder, "--model", tiny_tflite["float32"], "--out", tmp_path / "out"), str(folder),
            "no images")


def test_run_refuses_a_tflite_that_is_not_a_segmentation_model(tmp_path, tiny_tflite):
    src = write(tmp_path / "a.jpg", _encode(".jpg", _head()))
    model = tiny_tflite["classifier"]
    refused(cli("run", src, "--model", model, "--out", tmp_path / "out"), str(model))


def test_run_into_a_full_disk(tmp_path, tiny_tflite, full_folder):
    # A noisy 256x256 image: its mask PNG cannot be small, and the disk has no byte left.
    noisy = np.random.default_rng(0).integers(0, 256, (256, 256, 3), dtype=np.uint8)
    src = write(tmp_path / "noisy.png", _encode(".png", noisy))
    line = refused(cli("run", src, "--model", tiny_tflite["float32"], "--out", full_folder))
    assert "No space left" in line or "cannot write" in line, line
    assert not (full_folder / "noisy_mask.png").exists()
    assert not list(full_folder.iterdir())  # no temporary file left behind either


def test_run_a_video_into_a_full_disk_leaves_no_video_at_the_final_path(tmp_path, tiny_tflite,
                                                                         full_folder):
    clip = tmp_path / "clip.mp4"
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter.fourcc(*"mp4v"), 25.0, (64, 48))
    rng = np.random.default_rng(0)
    for _ in range(60):  # noise: the encoded video is far bigger than 64 kB
        writer.write(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8))
    writer.release()
    line = refused(cli("run", clip, "--model", tiny_tflite["float32"], "--out", full_folder))
    assert "clip" in line
    assert not (full_folder / "clip_mask.mkv").exists()


def test_run_a_video_onto_a_disk_that_fills_up_leaves_no_broken_video(tmp_path, tiny_tflite, small_disk):
    """OpenCV's VideoWriter reports no write error: the file is checked before it is renamed."""
    clip = tmp_path / "noise.mp4"
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter.fourcc(*"mp4v"), 25.0, (64, 48))
    rng = np.random.default_rng(0)
    for _ in range(300):
        writer.write(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8))
    writer.release()
    result = cli("run", clip, "--model", tiny_tflite["float32"], "--out", small_disk, "--overlay")
    refused(result, "noise_", "could not be written completely")
    # Neither a broken video nor a temporary file; the folder the run created is removed again.
    assert not small_disk.exists() or list(small_disk.iterdir()) == []


def test_run_into_an_output_path_under_a_file(tmp_path, tiny_tflite, under_a_file):
    src = write(tmp_path / "a.jpg", _encode(".jpg", _head()))
    refused(cli("run", src, "--model", tiny_tflite["float32"], "--out", under_a_file), "blocker.txt")


# ==================================================================================================
# eval (data sets)
# ==================================================================================================


@pytest.mark.parametrize("name", [n for n in ODD_IMAGES if n != "huge_8000"] + ["nonbinary_mask"])
def test_eval_scores_odd_but_valid_images_and_masks(name, tmp_path, tiny_tflite):
    root = tmp_path / f"data {ODD_NAME}"
    if name == "nonbinary_mask":  # a label map (0, 1, 2, 17) and an anti-aliased 0..255 mask: nonzero is hair
        dataset_with(root, "labels.png", _encode(".png", _head()), mask_png(48, 64, values=(0, 1, 2, 17)))
        write(root / "images" / "soft.png", _encode(".png", _head(seed=3)))
        soft = np.tile(np.linspace(0, 255, 64).astype(np.uint8), (48, 1))
        write(root / "masks" / "soft.png", _encode(".png", soft))
        expected = 5
    else:
        suffix = ODD_IMAGES[name][0]
        dataset_with(root, f"odd {name}{suffix}", odd_image(name))
        expected = 4
    report = tmp_path / "eval.json"
    handled(cli("eval", tiny_tflite["uint8"], "--data", root, "--json", report))
    import json

    scores = json.loads(report.read_text())
    assert scores["n"] == expected and 0.0 <= scores["iou"] <= 1.0


@pytest.mark.slow
def test_eval_scores_an_8000x8000_image(tmp_path, tiny_tflite):
    root = dataset_with(tmp_path / "data", "huge.png", _solid_png(8000), _solid_png(8000), n_good=0)
    report = tmp_path / "eval.json"
    handled(cli("eval", tiny_tflite["uint8"], "--data", root, "--json", report))
    import json

    assert json.loads(report.read_text())["iou"] > 0.99  # all hair, and the mask says all hair


@pytest.mark.parametrize("name", list(BAD_IMAGES))
def test_eval_refuses_a_damaged_image_in_the_data_set(name, tmp_path, tiny_tflite):
    suffix, build, words = BAD_IMAGES[name]
    root = dataset_with(tmp_path / "data", f"bad{suffix}", build())
    refused(cli("eval", tiny_tflite["float32"], "--data", root), str(root / "images" / f"bad{suffix}"),
            words)


def _dataset_problem(kind: str, root: Path) -> tuple[Path, str]:
    """Builds a data set with one structural problem; returns (path the line must name, words)."""
    if kind == "image_without_mask":
        dataset_with(root, "lonely.jpg", _encode(".jpg", _head()))
        (root / "masks" / "lonely.png").unlink()
        return root / "images", "without a mask"
    if kind == "mask_without_image":
        make_dataset(root, n=3, size=(48, 64), seed=5)
        write(root / "masks" / "orphan.png", mask_png(48, 64))
        return root / "masks", "without an image"
    if kind == "mask_of_another_size":
        dataset_with(root, "odd.jpg", _encode(".jpg", _head()), mask_png(40, 40))
        return root / "masks" / "odd.png", "40x40"
    if kind == "zero_byte_mask":
        dataset_with(root, "odd.jpg", _encode(".jpg", _head()), b"")
        return root / "masks" / "odd.png", "empty file"
    if kind == "corrupt_mask":
        dataset_with(root, "odd.jpg", _encode(".jpg", _head()), b"\x89PNG\r\n\x1a\n" + b"\x00" * 50 + b"IEND")
        return root / "masks" / "odd.png", "not a readable mask"
    if kind == "no_images":
        (root / "images").mkdir(parents=True)
        (root / "masks").mkdir()
        write(root / "images" / "notes.txt", b"no pictures here\n")
        return root / "images", "no images"
    if kind == "not_a_data_set":
        root.mkdir(parents=True)
        return root, "not a data set"
    if kind == "missing":
        return root, "no such folder"
    raise AssertionError(kind)


DATASET_PROBLEMS = ["image_without_mask", "mask_without_image", "mask_of_another_size", "zero_byte_mask",
                    "corrupt_mask", "no_images", "not_a_data_set", "missing"]


@pytest.mark.parametrize("kind", DATASET_PROBLEMS)
def test_eval_refuses_broken_data_sets(kind, tmp_path, tiny_tflite):
    named, words = _dataset_problem(kind, tmp_path / "data")
    refused(cli("eval", tiny_tflite["float32"], "--data", tmp_path / "data"), str(named), words)


@pytest.mark.parametrize("case", ["zero_byte", "text", "png_as_model", "truncated", "missing"])
def test_eval_refuses_files_that_are_not_tflite_models(case, tmp_path, bad_models):
    root = make_dataset(tmp_path / "data", n=2, size=(48, 64), seed=1)
    refused(cli("eval", bad_models[case], "--data", root), str(bad_models[case]))


def test_eval_refuses_a_classifier(tmp_path, tiny_tflite):
    root = make_dataset(tmp_path / "data", n=2, size=(48, 64), seed=1)
    refused(cli("eval", tiny_tflite["classifier"], "--data", root), str(tiny_tflite["classifier"]))


def test_eval_json_into_a_full_disk_or_under_a_file(tmp_path, tiny_tflite, full_folder, under_a_file):
    root = make_dataset(tmp_path / "data", n=2, size=(48, 64), seed=1)
    for target in (full_folder / "eval.json", under_a_file / "eval.json"):
        refused(cli("eval", tiny_tflite["float32"], "--data", root, "--json", target), str(target.parent))
        assert not target.exists()


# ==================================================================================================
# bench
# ==================================================================================================


def test_bench_end_to_end_on_odd_images(tmp_path, tiny_tflite):
    """One run over several odd images: each is its own worker process, so keep it to a handful."""
    for name in ("png16", "palette", "one_pixel"):
        src = write(tmp_path / ODD_NAME / f"{name}{ODD_IMAGES[name][0]}", odd_image(name))
        handled(cli("bench", tiny_tflite["uint8"], "--image", src, "--end-to-end", "--runs", "3",
                    "--warmup", "0"))


@pytest.mark.parametrize("name", ["zero_byte", "truncated_jpeg", "text_named_jpg"])
def test_bench_refuses_a_damaged_image(name, tmp_path, tiny_tflite):
    suffix, build, words = BAD_IMAGES[name]
    src = write(tmp_path / f"bad{suffix}", build())
    refused(cli("bench", tiny_tflite["uint8"], "--image", src, "--end-to-end", "--runs", "3"), str(src),
            words)


@pytest.mark.parametrize("case", ["zero_byte", "text", "png_as_model", "truncated", "missing"])
def test_bench_refuses_files_that_are_not_tflite_models(case, bad_models):
    refused(cli("bench", bad_models[case], "--runs", "3"), str(bad_models[case]))


def test_bench_times_a_classifier_but_not_end_to_end(tiny_tflite):
    handled(cli("bench", tiny_tflite["classifier"], "--runs", "3"))
    refused(cli("bench", tiny_tflite["classifier"], "--runs", "3", "--end-to-end"),
            str(tiny_tflite["classifier"]))


def test_bench_a_model_whose_path_has_spaces_and_non_ascii(tmp_path, tiny_tflite):
    model = tmp_path / ODD_NAME / "modèle int8.tflite"
    model.parent.mkdir()
    shutil.copy(tiny_tflite["uint8"], model)
    report = tmp_path / ODD_NAME / "résultats.json"
    handled(cli("bench", model, "--runs", "3", "--json", report))
    import json

    assert json.loads(report.read_text(encoding="utf-8"))[0]["model"] == str(model)


def test_bench_json_into_a_full_disk_or_under_a_file(tiny_tflite, full_folder, under_a_file):
    for target in (full_folder / "bench.json", under_a_file / "bench.csv"):
        option = "--json" if target.suffix == ".json" else "--csv"
        refused(cli("bench", tiny_tflite["uint8"], "--runs", "3", option, target), str(target.parent))
        assert not target.exists()


# ==================================================================================================
# info and package
# ==================================================================================================


def _has_mobile_extra() -> bool:
    from hairseg_edge.errors import MissingExtraError
    from hairseg_edge.mediapipe_meta import mediapipe_version

    try:
        mediapipe_version()
    except MissingExtraError:
        return False
    return True


MOBILE_HINT = 'pip install "hairseg-edge[mobile]"'
needs_mobile = pytest.mark.skipif("not _has_mobile_extra()",
                                  reason="package needs the [mobile] extra (MediaPipe); "
                                         "tests/test_mobile_venv.py runs it in its own venv")


@pytest.mark.parametrize("case", ["zero_byte", "text", "png_as_model", "keras_as_tflite", "truncated",
                                  "missing"])
def test_info_refuses_files_that_are_not_tflite_models(case, bad_models):
    refused(cli("info", bad_models[case]), str(bad_models[case]))


@pytest.mark.parametrize("case", ["zero_byte", "text", "png_as_model", "keras_as_tflite", "truncated",
                                  "missing"])
def test_package_refuses_files_that_are_not_tflite_models(case, bad_models):
    """Without the [mobile] extra the one line is the install hint (checked before any file is
    read); the file itself is then judged by the same reader package uses once the extra is there."""
    from hairseg_edge.errors import InputError
    from hairseg_edge.mediapipe_meta import package_bytes
    from hairseg_edge.tflite_meta import load_model_bytes

    path = bad_models[case]
    if _has_mobile_extra():
        refused(cli("package", path), str(path))
    else:
        refused(cli("package", path), MOBILE_HINT)
    with pytest.raises(InputError) as err:
        package_bytes(load_model_bytes(path)[0], path)
    assert str(path) in str(err.value) and "\n" not in str(err.value)


def test_info_describes_a_classifier_and_package_refuses_it(tiny_tflite, tmp_path):
    from hairseg_edge.errors import InputError
    from hairseg_edge.mediapipe_meta import package_bytes

    model = tiny_tflite["classifier"]
    handled(cli("info", model, "--no-gpu"))
    with pytest.raises(InputError) as err:
        package_bytes(model.read_bytes(), model)
    assert str(model) in str(err.value)
    if _has_mobile_extra():
        refused(cli("package", model, "--out", tmp_path / "c.tflite", "--no-verify"), str(model))


def test_info_with_spaces_and_non_ascii(tmp_path, tiny_packaging_models):
    model = tmp_path / ODD_NAME / "modèle float.tflite"
    model.parent.mkdir()
    shutil.copy(tiny_packaging_models["float32"], model)
    handled(cli("info", model, "--no-gpu"))


@needs_mobile
def test_package_with_spaces_and_non_ascii(tmp_path, tiny_packaging_models):
    model = tmp_path / ODD_NAME / "modèle float.tflite"
    model.parent.mkdir()
    shutil.copy(tiny_packaging_models["float32"], model)
    out = tmp_path / ODD_NAME / "prêt.tflite"
    handled(cli("package", model, "--out", out))
    assert out.stat().st_size > model.stat().st_size


@needs_mobile
def test_package_into_a_full_disk_or_under_a_file(tiny_packaging_models, full_folder, under_a_file):
    for target in (full_folder / "m.tflite", under_a_file / "m.tflite"):
        refused(cli("package", tiny_packaging_models["float32"], "--out", target, "--no-verify"),
                str(target.parent))
        assert not target.exists()


# ==================================================================================================
# train (TensorFlow)
# ==================================================================================================


def _train(data: Path, out: Path, *extra: object):
    # (a later --epochs in extra wins: Typer keeps the last value of a repeated option)
    return cli("train", "--data", data, "--out", out, "--arch", "custom_cnn", "--img-size", KERAS_SIZE,
               "--width", "0.25", "--epochs", "1", "--batch", "2", "--steps-per-epoch", "2", *extra)


@pytest.mark.train
@pytest.mark.slow
def test_train_on_odd_images_in_a_folder_with_spaces_and_non_ascii(tmp_path):
    root = tmp_path / f"data {ODD_NAME}"
    make_dataset(root, n=4, size=(48, 64), seed=5)
    for name in ("png16", "gray", "rgba", "palette", "one_pixel"):
        data = odd_image(name)
        write(root / "images" / f"{name}.png", data)
        write(root / "masks" / f"{name}.png", mask_png(*image_size(data), values=(0, 1, 2)))
    out = tmp_path / f"run {ODD_NAME}"
    handled(_train(root, out))
    assert (out / "model.keras").stat().st_size > 0


@pytest.mark.train
@pytest.mark.parametrize("name", ["truncated_jpeg",
                                  pytest.param("text_named_jpg", marks=pytest.mark.slow),
                                  pytest.param("mask_of_another_size", marks=pytest.mark.slow)])
def test_train_refuses_a_file_it_cannot_read_mid_pipeline(name, tmp_path):
    """Problems found only when the tf.data pipeline decodes the file still end in one line."""
    root = tmp_path / "data"
    if name == "mask_of_another_size":
        dataset_with(root, "bad.jpg", _encode(".jpg", _head()), mask_png(40, 40), n_good=0)
        named = root / "masks" / "bad.png"
    else:
        suffix, build, _ = BAD_IMAGES[name]
        dataset_with(root, f"bad{suffix}", build(), n_good=0)
        named = root / "images" / f"bad{suffix}"
    refused(_train(root, tmp_path / "run"), str(named))


@pytest.mark.train
@pytest.mark.parametrize("kind", ["image_without_mask", "mask_without_image", "zero_byte_mask", "no_images",
                                  "missing"])
def test_train_refuses_broken_data_sets_before_training(kind, tmp_path):
    named, words = _dataset_problem(kind, tmp_path / "data")
    refused(_train(tmp_path / "data", tmp_path / "run"), str(named), words)


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> tuple[Path, Path]:
    """(data set, run folder) of a finished one-epoch training run, made once."""
    base = tmp_path_factory.mktemp("finished_run")
    root = make_dataset(base / "data", n=6, size=(48, 64), seed=5)
    handled(_train(root, base / "run"))
    return root, base / "run"


@pytest.mark.train
@pytest.mark.parametrize("damage", ["state", "checkpoint"])
def test_train_resume_from_a_damaged_run_folder(damage, tmp_path, finished_run):
    """Atomic writes prevent this, but disks and people do not: a state.json or checkpoint that is
    not what it should be ends --resume in one line naming it."""
    root, run = finished_run
    out = shutil.copytree(run, tmp_path / "run")
    state = json.loads((out / "state.json").read_text())
    target = out / "state.json" if damage == "state" else out / state["checkpoint"]
    target.write_bytes(target.read_bytes()[: target.stat().st_size // 2])
    refused(_train(root, out, "--resume", "--epochs", "2"), str(target))


@pytest.mark.train
def test_train_into_a_full_disk_or_under_a_file(tmp_path, full_folder, under_a_file):
    root = make_dataset(tmp_path / "data", n=4, size=(48, 64), seed=5)
    refused(_train(root, under_a_file), "blocker.txt")
    line = refused(_train(root, full_folder / "run"))
    assert "No space left" in line or "cannot" in line, line
    assert not (full_folder / "run" / "model.keras").exists()


# ==================================================================================================
# export (TensorFlow)
# ==================================================================================================


def _export(model: Path, out: Path, *extra: object):
    return cli("export", model, "--out", out, "--calib-count", "4", *extra)


@pytest.mark.train
@pytest.mark.parametrize("case", ["lambda", "not_a_model", "text", "truncated"])
def test_export_refuses_keras_files_that_are_not_safe_models(case, tmp_path, keras_models):
    root = make_dataset(tmp_path / "data", n=4, size=(48, 64), seed=5)
    line = refused(_export(keras_models[case], tmp_path / "out", "--float32", "--data", root),
                   str(keras_models[case]))
    if case == "lambda":
        assert "Lambda" in line or "safe" in line, line
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").glob("*.tflite"))


@pytest.mark.train
@pytest.mark.parametrize("case", ["zero_byte", "png_as_model", "missing", "tflite_given", "folder"])
def test_export_refuses_other_files_as_the_model(case, tmp_path, bad_models, tiny_tflite):
    root = make_dataset(tmp_path / "data", n=4, size=(48, 64), seed=5)
    model = {"tflite_given": tiny_tflite["float32"], "folder": root}.get(case) or bad_models[case]
    refused(_export(model, tmp_path / "out", "--float32", "--data", root), str(model))


@pytest.mark.train
def test_export_with_odd_images_and_paths_with_spaces_and_non_ascii(tmp_path, keras_models):
    folder = tmp_path / ODD_NAME
    model = folder / "modèle.keras"
    folder.mkdir()
    shutil.copy(keras_models["hair"], model)
    root = folder / "données"
    make_dataset(root, n=6, size=(48, 64), seed=5)
    for name in ("png16", "gray", "rgba", "palette", "one_pixel"):
        data = odd_image(name)
        write(root / "images" / f"{name}.png", data)
        write(root / "masks" / f"{name}.png", mask_png(*image_size(data), values=(0, 7)))
    out = folder / "sortie"
    handled(_export(model, out, "--float32", "--data", root, "--eval", root))
    assert (out / "modèle-float32.tflite").stat().st_size > 0


@pytest.mark.train
@pytest.mark.parametrize("name", ["truncated_jpeg", "text_named_jpg", "zero_byte"])
def test_export_refuses_a_damaged_calibration_or_evaluation_image(name, tmp_path, keras_models):
    suffix, build, words = BAD_IMAGES[name]
    good = make_dataset(tmp_path / "good", n=4, size=(48, 64), seed=5)
    bad = tmp_path / "calib"
    write(bad / f"bad{suffix}", build())
    refused(_export(keras_models["hair"], tmp_path / "out", "--int8", "--calib", bad, "--eval", good),
            str(bad / f"bad{suffix}"), words)
    refused(_export(keras_models["hair"], tmp_path / "out", "--float32", "--eval", bad),
            str(bad / f"bad{suffix}"), words)
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").glob("*.tflite"))


@pytest.mark.train
def test_export_refuses_a_damaged_image_found_while_fine_tuning(tmp_path, keras_models):
    """--prune fine-tunes through the tf.data pipeline, which decodes lazily: still one line."""
    suffix, build, words = BAD_IMAGES["text_named_jpg"]
    root = dataset_with(tmp_path / "data", f"bad{suffix}", build(), n_good=3)
    refused(_export(keras_models["hair"], tmp_path / "out", "--float32", "--prune", "0.5", "--data", root,
                    "--eval", make_dataset(tmp_path / "eval", n=2, size=(48, 64), seed=2),
                    "--finetune-epochs", "1", "--finetune-steps", "2"),
            str(root / "images" / f"bad{suffix}"), words)


@pytest.mark.train
@pytest.mark.parametrize("kind", ["image_without_mask", "mask_of_another_size", "no_images"])
def test_export_refuses_broken_data_sets(kind, tmp_path, keras_models):
    named, words = _dataset_problem(kind, tmp_path / "data")
    refused(_export(keras_models["hair"], tmp_path / "out", "--float32", "--data", tmp_path / "data",
                    "--eval", tmp_path / "data"), str(named), words)


@pytest.mark.train
def test_export_into_a_full_disk_or_under_a_file(tmp_path, keras_models, full_folder, under_a_file):
    root = make_dataset(tmp_path / "data", n=4, size=(48, 64), seed=5)
    refused(_export(keras_models["hair"], under_a_file, "--float32", "--eval", root), "blocker.txt")
    line = refused(_export(keras_models["hair"], full_folder, "--float32", "--eval", root))
    assert "No space left" in line or "cannot" in line, line
    assert not list(full_folder.glob("*.tflite")) and not (full_folder / "report.json").exists()


# ==================================================================================================
# The real entry point: one case per command through `python -m hairseg_edge`
# ==================================================================================================


def _python_m(*args: object, timeout: float = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
           "TF_CPP_MIN_LOG_LEVEL": "3", "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "hairseg_edge", *map(str, args)], capture_output=True,
                          text=True, timeout=timeout, env=env, check=False)


def _one_line(proc: subprocess.CompletedProcess, *fragments: str) -> None:
    assert proc.returncode == 2, (proc.returncode, proc.stdout[-2000:], proc.stderr[-2000:])
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip() and not ln.startswith("hairseg-edge: warning: ")]
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


def test_real_entry_point_device_commands(tmp_path, tiny_tflite, bad_models):
    jpg = write(tmp_path / ODD_NAME / "cut off.jpg", BAD_IMAGES["truncated_jpeg"][1]())
    _one_line(_python_m("run", jpg, "--model", tiny_tflite["float32"], "--out", tmp_path / "out"),
              str(jpg), "truncated")
    _one_line(_python_m("bench", bad_models["truncated"], "--runs", "2"), str(bad_models["truncated"]))
    empty = tmp_path / "empty data"
    (empty / "images").mkdir(parents=True)
    (empty / "masks").mkdir()
    _one_line(_python_m("eval", tiny_tflite["float32"], "--data", empty), str(empty / "images"),
              "no images")
    _one_line(_python_m("info", bad_models["text"]), str(bad_models["text"]))
    _one_line(_python_m("package", bad_models["png_as_model"]),
              str(bad_models["png_as_model"]) if _has_mobile_extra() else MOBILE_HINT)


@pytest.mark.train
def test_real_entry_point_train_and_export(tmp_path, keras_models):
    """TensorFlow's own start-up lines on stderr (oneDNN, CUDA) must not surround the one line."""
    named, words = _dataset_problem("mask_without_image", tmp_path / "data")
    _one_line(_python_m("train", "--data", tmp_path / "data", "--out", tmp_path / "run", "--img-size", "32"),
              str(named), words)
    _one_line(_python_m("export", keras_models["lambda"], "--float32", "--data", tmp_path / "data",
                        "--out", tmp_path / "out"), str(keras_models["lambda"]))
    # A damaged evaluation image is found after TensorFlow converted the model (GPU probing included).
    bad = write(tmp_path / "eval" / "cut.jpg", BAD_IMAGES["truncated_jpeg"][1]())
    _one_line(_python_m("export", keras_models["hair"], "--float32", "--eval", bad.parent,
                        "--out", tmp_path / "out"), str(bad), "truncated")


# ==================================================================================================
# Safe loading
# ==================================================================================================

#: Every folder of shipped or runnable code (benchmarks and scripts load user files too).
SOURCE_DIRS = ("hairseg_edge", "training", "export", "benchmarks", "scripts")


def _python_sources() -> list[Path]:
    return sorted(p for d in SOURCE_DIRS if (REPO / d).is_dir() for p in (REPO / d).rglob("*.py"))


def test_every_keras_load_model_call_uses_safe_mode_true():
    """``load_model`` with a Lambda layer runs arbitrary code unless ``safe_mode=True``."""
    calls = []
    for path in _python_sources():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call):
                func = node.func
                name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
                if name in ("load_model", "load_weights", "model_from_json", "deserialize_keras_object"):
                    owner = ast.unparse(func)
                    if name == "load_model" and not owner.startswith(("keras", "tf.keras")):
                        continue  # hairseg_edge.runtime.load_model (.tflite), not Keras
                    safe = [k for k in node.keywords if k.arg == "safe_mode"]
                    calls.append((f"{path.relative_to(REPO)}:{node.lineno}", owner, safe))
    assert calls, "expected at least the training resume and the export loader"
    for where, owner, safe in calls:
        if owner.endswith("load_weights"):
            continue  # weights only (h5/.weights.h5): no code is deserialised
        assert safe and isinstance(safe[0].value, ast.Constant) and safe[0].value.value is True, where


def test_nothing_loads_pickles():
    pattern = re.compile(r"\bimport pickle\b|\bfrom pickle\b|\bcPickle\b|\bdill\b|\bjoblib\b|"
                         r"allow_pickle\s*=\s*True|torch\.load|pd\.read_pickle|\bshelve\b|marshal\.load")
    offenders = []
    for path in _python_sources():
        for k, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if pattern.search(line):
                offenders.append(f"{path.relative_to(REPO)}:{k}: {line.strip()}")
    assert not offenders, offenders
    # np.load without allow_pickle is safe (it defaults to False); make sure nobody flips the default.
    for path in _python_sources():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and ast.unparse(node.func) in ("np.load", "numpy.load"):
                assert not any(k.arg == "allow_pickle" for k in node.keywords), path


def test_output_names_cannot_escape_the_output_folder(tmp_path, tiny_tflite):
    """Names derived from inputs stay in --out: a symlink planted at an output's path is not
    followed out of the folder, and stems that look like paths are only names."""
    victim = tmp_path / "outside" / "victim.png"
    write(victim, b"precious")
    src_dir = tmp_path / "in"
    names = ["a..b.jpg", "x%2f..%2f..%2fescape.jpg", "-rf.jpg", " .jpg", "w\\..\\..\\win.jpg", "~.jpg"]
    for name in names:
        write(src_dir / name, _encode(".jpg", _head()))
    out = tmp_path / "out"
    out.mkdir()
    (out / "planted_mask.png").symlink_to(victim)
    write(src_dir / "planted.jpg", _encode(".jpg", _head()))
    result = cli("run", src_dir, "--model", tiny_tflite["float32"], "--out", out, "--force")
    assert result.exit_code == 2 and "Traceback" not in result.stderr
    assert "planted_mask.png" in result.stderr and "escapes the output folder" in result.stderr
    assert victim.read_bytes() == b"precious"
    masks = sorted(p.name for p in out.iterdir() if not p.is_symlink())
    assert masks == sorted(f"{Path(n).stem}_mask.png" for n in names), result.stderr
    assert {p.resolve().parent for p in out.iterdir() if not p.is_symlink()} == {out.resolve()}
    assert not list(tmp_path.rglob("escape_mask.png")) and not list(tmp_path.rglob("win_mask.png"))
