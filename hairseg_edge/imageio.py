"""Reading images and masks safely, and writing any output atomically.

Every reader returns RGB uint8 (the contract's colour order) with EXIF orientation applied, and turns
any problem into an :class:`~hairseg_edge.errors.InputError` naming the file. Every writer writes to a
temporary file in the destination folder and renames it, so a crash never leaves half a file behind,
and refuses to replace an existing file unless asked.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np

from .errors import InputError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
#: Refuse to decode images with more pixels than this (about 16k x 16k): a decompression bomb guard.
MAX_PIXELS = 270_000_000

# OpenCV prints libjpeg/libpng warnings to stderr for damaged files; we report them ourselves.
with contextlib.suppress(Exception):
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)


def read_file_bytes(path: str | os.PathLike[str], expected: str = "a file") -> bytes:
    """A file's bytes, or an InputError naming it (missing, a folder, no permission, unreadable)."""
    path = Path(path)
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise InputError("no such file", path) from None
    except IsADirectoryError:
        raise InputError(f"is a folder, expected {expected}", path) from None
    except PermissionError:
        raise InputError("permission denied", path) from None
    except OSError as exc:
        raise InputError(f"cannot read ({exc.strerror or exc})", path) from None


def file_sha256(path: str | os.PathLike[str]) -> str:
    """The hex sha256 of a file's bytes (how run folders and model cards name the exact model file they
    mean), or an InputError naming it."""
    digest = hashlib.sha256()
    digest.update(read_file_bytes(path, "a model file"))
    return digest.hexdigest()


def _read_bytes(path: Path) -> np.ndarray:
    data = np.frombuffer(read_file_bytes(path), dtype=np.uint8)
    if data.size == 0:
        raise InputError("empty file (0 bytes)", path)
    return data


def _jpeg_truncated(data: bytes) -> bool:
    """True when a JPEG's image data stops before its end-of-image marker (FFD9).

    Data after the marker is allowed: phones append trailers (Motion Photo videos, maker data), so
    the marker is often not at the end of the file. The header segments are walked by their lengths
    (an EXIF thumbnail inside them has its own FFD9) up to the first start-of-scan; the compressed
    data after it never contains FFD9 (0xFF is byte-stuffed there), so the first FFD9 after that
    point is the image's end, and a cut file has none. A malformed header is left to the decoder.
    """
    pos, n = 2, len(data)
    while True:
        if pos + 4 > n:
            return True  # the file ends inside the header
        if data[pos] != 0xFF:
            return False  # not a marker: corrupt, the decoder reports it
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte before a marker
            pos += 1
            continue
        if marker == 0x01 or 0xD0 <= marker <= 0xD8:  # markers without a length
            pos += 2
            continue
        if marker == 0xD9:
            return False  # end of image before any scan: not a cut file, let the decoder judge it
        length = int.from_bytes(data[pos + 2 : pos + 4], "big")
        if marker == 0xDA:  # start of scan
            return data.find(b"\xff\xd9", pos + 2 + length) < 0
        pos += 2 + length


def _looks_truncated(data: np.ndarray) -> bool:
    """JPEGs end their image with the EOI marker FFD9 and PNGs with an IEND chunk; a cut file lacks them."""
    head = data[:8].tobytes()
    if head.startswith(b"\xff\xd8"):
        return _jpeg_truncated(data.tobytes())
    if head.startswith(b"\x89PNG"):
        return data.tobytes().rfind(b"IEND") < 0
    return False


def read_image(path: str | os.PathLike[str]) -> np.ndarray:
    """Read an image file as RGB uint8 ``HxWx3``, EXIF orientation applied.

    Grayscale, RGBA, palette, 16-bit and CMYK files are converted. Raises InputError for a missing,
    empty, truncated or undecodable file.
    """
    path = Path(path)
    data = _read_bytes(path)
    if _looks_truncated(data):
        raise InputError("truncated image file (data ends early)", path)
    # IMREAD_COLOR applies EXIF orientation and converts gray/RGBA/palette/16-bit/CMYK to 8-bit BGR.
    bgr = cv2.imdecode(data, cv2.IMREAD_COLOR)
    if bgr is None:
        raise InputError("not a readable image (unknown format or corrupt data)", path)
    if bgr.shape[0] * bgr.shape[1] > MAX_PIXELS:
        raise InputError(f"image too large ({bgr.shape[1]}x{bgr.shape[0]} pixels)", path)
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def read_mask(path: str | os.PathLike[str]) -> np.ndarray:
    """Read a mask file as uint8 ``HxW`` with 1 where the file is nonzero (hair), else 0."""
    path = Path(path)
    data = _read_bytes(path)
    if _looks_truncated(data):
        raise InputError("truncated mask file (data ends early)", path)
    # IMREAD_UNCHANGED keeps 16-bit values, so "nonzero = hair" holds exactly. OpenCV expands a
    # palette PNG to its colours (it cannot return the indices), so a palette mask works when its
    # background entry is black, as in PASCAL-VOC-style masks. Orientation is not applied to masks
    # (they are PNG label maps without EXIF).
    raw = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    if raw is None:
        raise InputError("not a readable mask image", path)
    if raw.ndim == 3:
        raw = raw[..., :3].max(axis=2) if raw.shape[2] >= 3 else raw[..., 0]
    return (raw > 0).astype(np.uint8)


def _current_umask() -> int:
    mask = os.umask(0o022)  # reading the umask means setting it; put it straight back
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(final: str | os.PathLike[str], *, force: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside ``final``; on success rename it over ``final``.

    The temporary name keeps the final suffix so writers that infer the format from it (OpenCV,
    matplotlib) work. On any error the temporary file is removed and ``final`` is untouched.
    """
    final = Path(final)
    if final.exists() and not force:
        raise InputError("already exists (pass --force to overwrite)", final)
    folder = final.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{final.stem}.", suffix=f".tmp{final.suffix}",
                                        dir=folder)
    except OSError as exc:
        raise InputError(f"cannot write here ({exc.strerror or exc})", folder) from None
    os.close(fd)
    tmp = Path(tmp_name)
    # mkstemp creates the file readable by its owner only (0600); give outputs the permissions any
    # other new file would get (0666 minus the umask), so a shared folder or web server can read them.
    with contextlib.suppress(OSError):
        os.chmod(tmp, 0o666 & ~_current_umask())
    try:
        yield tmp
        os.replace(tmp, final)
    except OSError as exc:
        raise InputError(f"cannot write ({exc.strerror or exc})", final) from None
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def write_bytes(final: str | os.PathLike[str], data: bytes, *, force: bool = False) -> Path:
    with atomic_path(final, force=force) as tmp:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
    return Path(final)


def write_text(final: str | os.PathLike[str], text: str, *, force: bool = False) -> Path:
    return write_bytes(final, text.encode("utf-8"), force=force)


def write_image(final: str | os.PathLike[str], image: np.ndarray, *, force: bool = False) -> Path:
    """Write an RGB (HxWx3) or single-channel (HxW) uint8 image; the suffix picks the format."""
    final = Path(final)
    img = np.asarray(image)
    if img.ndim == 3:
        img = cv2.cvtColor(img, cv2.COLOR_RGB2BGR)
    ok, buf = cv2.imencode(final.suffix or ".png", img)
    if not ok:
        raise InputError(f"cannot encode an image as {final.suffix or '.png'}", final)
    return write_bytes(final, buf.tobytes(), force=force)


def safe_child(folder: str | os.PathLike[str], name: str) -> Path:
    """``folder / name`` for a name derived from user input, refusing anything that escapes folder."""
    base = Path(folder).resolve()
    clean = Path(name).name  # drop any directory part ("../../x" -> "x")
    if clean in ("", ".", ".."):
        raise InputError(f"cannot derive an output name from {name!r}")
    target = (base / clean).resolve()
    if target.parent != base:
        raise InputError(f"output name {name!r} escapes the output folder", folder)
    return target
