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
import re
import tempfile
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np

from .errors import InputError

if TYPE_CHECKING:
    from .filesystem import DataPath, Filesystem

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")

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


def _read_bytes(path: DataPath, fs: Filesystem | None = None) -> np.ndarray:
    raw = read_file_bytes(path) if fs is None else fs.read_bytes(path)
    data = np.frombuffer(raw, dtype=np.uint8)
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


#: Refuse to decode images with more pixels than this: a decompression-bomb guard. 100 Mpx covers
#: the largest phone and camera sensors in use (108 Mpx phones bin to 12 Mpx by default; 8000x8000
#: = 64 Mpx passes) while a refused image never costs memory: the size is read from the file's
#: header before anything is decoded (:func:`image_size_from_header`), and decoding 100 Mpx takes
#: about 300 MB for the pixels (plus the RGB copy).
MAX_PIXELS = 100_000_000

# OpenCV enforces its own (larger) limit with a cv2.error; ours, read from the header, comes first.
# Formats whose size this module reads from the header before decoding. Anything else OpenCV could
# decode (PNM, Sun raster, OpenEXR, JPEG 2000, HDR...) is refused rather than decoded blind.
HEADER_FORMATS = ("JPEG", "PNG", "BMP", "WebP", "TIFF")


def _u16(data: bytes, pos: int, order: str) -> int:
    return int.from_bytes(data[pos:pos + 2], order)


def _u32(data: bytes, pos: int, order: str) -> int:
    return int.from_bytes(data[pos:pos + 4], order)


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from a JPEG's first SOFn segment (walked by segment lengths)."""
    pos, n = 2, len(data)
    while pos + 4 <= n:
        if data[pos] != 0xFF:
            return None
        marker = data[pos + 1]
        if marker == 0xFF:
            pos += 1
            continue
        if marker == 0x01 or 0xD0 <= marker <= 0xD8:
            pos += 2
            continue
        if marker in (0xD9, 0xDA):
            return None  # end of image or scan data before any frame header
        length = _u16(data, pos + 2, "big")
        if marker in (0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF):
            if pos + 9 > n:
                return None
            return _u16(data, pos + 7, "big"), _u16(data, pos + 5, "big")
        pos += 2 + length
    return None


def _webp_size(data: bytes) -> tuple[int, int] | None:
    if len(data) < 30:
        return None
    chunk = data[12:16]
    if chunk == b"VP8X":
        return 1 + int.from_bytes(data[24:27], "little"), 1 + int.from_bytes(data[27:30], "little")
    if chunk == b"VP8L" and data[20] == 0x2F:
        bits = _u32(data, 21, "little")
        return 1 + (bits & 0x3FFF), 1 + ((bits >> 14) & 0x3FFF)
    if chunk == b"VP8 " and data[23:26] == b"\x9d\x01\x2a":
        return _u16(data, 26, "little") & 0x3FFF, _u16(data, 28, "little") & 0x3FFF
    return None


def _tiff_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) of a TIFF's first image (its first IFD), classic or BigTIFF."""
    order = "little" if data[:2] == b"II" else "big"
    big = _u16(data, 2, order) == 43
    try:
        if big:
            ifd = int.from_bytes(data[8:16], order)
            count, entry0, size = int.from_bytes(data[ifd:ifd + 8], order), ifd + 8, 20
        else:
            ifd = _u32(data, 4, order)
            count, entry0, size = _u16(data, ifd, order), ifd + 2, 12
        found: dict[int, int] = {}
        for k in range(min(count, 4096)):
            entry = entry0 + k * size
            tag, kind = _u16(data, entry, order), _u16(data, entry + 2, order)
            if tag in (256, 257):
                value = entry + (12 if big else 8)
                found[tag] = (_u16(data, value, order) if kind == 3 else
                              int.from_bytes(data[value:value + (8 if kind == 16 else 4)], order))
        return (found[256], found[257]) if 256 in found and 257 in found else None
    except (IndexError, ValueError):
        return None


def image_size_from_header(data: bytes) -> tuple[str, tuple[int, int] | None] | None:
    """``(format, (width, height))`` read from an image file's header without decoding it.

    ``None`` when the bytes are none of :data:`HEADER_FORMATS`; the size is None when the format is
    known but its header cannot be read (the decoder then reports the file as corrupt).
    """
    head = data[:32]
    if head.startswith(b"\xff\xd8"):
        return "JPEG", _jpeg_size(data)
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        if len(data) >= 24 and data[12:16] == b"IHDR":
            return "PNG", (_u32(data, 16, "big"), _u32(data, 20, "big"))
        return "PNG", None
    if head.startswith(b"BM") and len(data) >= 26:
        header_size = _u32(data, 14, "little")
        if header_size == 12:  # OS/2 BITMAPCOREHEADER: 16-bit sizes
            return "BMP", (_u16(data, 18, "little"), _u16(data, 20, "little"))
        width = int.from_bytes(data[18:22], "little", signed=True)
        height = int.from_bytes(data[22:26], "little", signed=True)  # negative = top-down
        return "BMP", (abs(width), abs(height))
    if head.startswith(b"RIFF") and head[8:12] == b"WEBP":
        return "WebP", _webp_size(data)
    if head[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return "TIFF", _tiff_size(data)
    return None


def check_image_size(data: bytes | np.ndarray, path: str | os.PathLike[str], what: str = "image") -> None:
    """Refuse, before decoding, an image whose header announces more than :data:`MAX_PIXELS` pixels,
    or one in a format whose header this module does not read (see :data:`HEADER_FORMATS`)."""
    raw = data.tobytes() if isinstance(data, np.ndarray) else data
    found = image_size_from_header(raw)
    if found is None:
        raise InputError(f"not a readable {what} (unsupported format: hairseg-edge reads "
                         f"{', '.join(HEADER_FORMATS)})", path)
    fmt, size = found
    if size is None:  # never decode blind: a decoder may find a size this reader could not
        raise InputError(f"not a readable {what} (damaged {fmt} header: no image size in it)", path)
    width, height = size
    if width * height > MAX_PIXELS:
        raise InputError(f"{what} too large: its {fmt} header says {width}x{height} pixels "
                         f"({width * height / 1e6:.0f} Mpx; the limit is {MAX_PIXELS / 1e6:.0f} Mpx)",
                         path)


def check_frame_size(width: int, height: int, name: str | os.PathLike[str]) -> None:
    """Refuse a video whose frames would each exceed :data:`MAX_PIXELS` (before decoding one)."""
    if width * height > MAX_PIXELS:  # noqa: SIM102 (read at call time: tests lower the limit)
        raise InputError(f"video frames too large: {width}x{height} pixels "
                         f"({width * height / 1e6:.0f} Mpx; the limit is {MAX_PIXELS / 1e6:.0f} Mpx)",
                         name)


def _decode(data: np.ndarray, flags: int, path: DataPath, what: str) -> np.ndarray | None:
    """cv2.imdecode after the header check; OpenCV's own errors (its pixel limit) become InputError."""
    check_image_size(data, path, what)
    try:
        return cv2.imdecode(data, flags)
    except cv2.error as exc:
        reason = str(exc).strip().splitlines()[-1] if str(exc).strip() else "decoder error"
        raise InputError(f"not a readable {what} (OpenCV: {reason})", path) from None


def read_image(path: str | os.PathLike[str], fs: Filesystem | None = None) -> np.ndarray:
    """Read an image file as RGB uint8 ``HxWx3``, EXIF orientation applied.

    Grayscale, RGBA, palette, 16-bit and CMYK files are converted. Raises InputError for a missing,
    empty, truncated or undecodable file. ``fs``: read the bytes through this filesystem (a path of
    its own, e.g. a URL) instead of the local files; the checks and the decoding are the same.
    """
    path = Path(path) if fs is None else path
    data = _read_bytes(path, fs)
    if _looks_truncated(data):
        raise InputError("truncated image file (data ends early)", path)
    # IMREAD_COLOR applies EXIF orientation and converts gray/RGBA/palette/16-bit/CMYK to 8-bit BGR.
    bgr = _decode(data, cv2.IMREAD_COLOR, path, "image")
    if bgr is None:
        raise InputError("not a readable image (unknown format or corrupt data)", path)
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def read_mask(path: str | os.PathLike[str], fs: Filesystem | None = None) -> np.ndarray:
    """Read a mask file as uint8 ``HxW`` with 1 where the file is nonzero (hair), else 0 (``fs``: as
    in :func:`read_image`)."""
    path = Path(path) if fs is None else path
    data = _read_bytes(path, fs)
    if _looks_truncated(data):
        raise InputError("truncated mask file (data ends early)", path)
    # IMREAD_UNCHANGED keeps 16-bit values, so "nonzero = hair" holds exactly. OpenCV expands a
    # palette PNG to its colours (it cannot return the indices), so a palette mask works when its
    # background entry is black, as in PASCAL-VOC-style masks. Orientation is not applied to masks
    # (they are PNG label maps without EXIF).
    raw = _decode(data, cv2.IMREAD_UNCHANGED, path, "mask")
    if raw is None:
        raise InputError("not a readable mask image", path)
    if raw.ndim == 3:
        raw = raw[..., :3].max(axis=2) if raw.shape[2] >= 3 else raw[..., 0]
    return (raw > 0).astype(np.uint8)


def _current_umask() -> int:
    mask = os.umask(0o022)  # reading the umask means setting it; put it straight back
    os.umask(mask)
    return mask


#: The name :func:`atomic_path` gives a file while it is written (``.STEM.XXXXXXXX.tmpEXT``, mkstemp's
#: random part): one a killed process left behind is recognised by it (``outputs.OutputFolder``).
TEMPORARY_NAME = re.compile(r"^\..+\.[A-Za-z0-9_]{8}\.tmp(\.[^.]+)?$")


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
        # The temporary name must fit NAME_MAX too: a long final name gets a shortened stem here.
        stem = final.stem.encode("utf-8", "surrogateescape")[:120].decode("utf-8", "ignore")
        fd, tmp_name = tempfile.mkstemp(prefix=f".{stem}.", suffix=f".tmp{final.suffix}",
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
        if force:
            os.replace(tmp, final)
        else:
            _rename_exclusive(tmp, final)
    except OSError as exc:
        raise InputError(f"cannot write ({exc.strerror or exc})", final) from None
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def _rename_exclusive(tmp: Path, final: Path) -> None:
    """Move ``tmp`` to ``final`` unless ``final`` exists by now, atomically: a hard link fails with
    EEXIST when another process created ``final`` since the check at the start (os.replace would
    silently clobber it). Filesystems without hard links (FAT, some network mounts) fall back to a
    checked rename."""
    try:
        os.link(tmp, final)
    except FileExistsError:
        raise InputError("already exists (written meanwhile by another process; pass --force to "
                         "overwrite)", final) from None
    except OSError:
        if final.exists():
            raise InputError("already exists (pass --force to overwrite)", final) from None
        os.replace(tmp, final)
        return
    os.unlink(tmp)


def write_bytes(final: str | os.PathLike[str], data: bytes, *, force: bool = False) -> Path:
    with atomic_path(final, force=force) as tmp:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
    return Path(final)


def write_text(final: str | os.PathLike[str], text: str, *, force: bool = False) -> Path:
    return write_bytes(final, text.encode("utf-8"), force=force)


#: The key of the text note (PNG tEXt chunk / JPEG COM segment) ``run`` tags its outputs with.
NOTE_KEY = b"hairseg-edge-request"


def _with_note(data: bytes, note: str) -> bytes:
    """PNG or JPEG bytes with a text note added in the header (``NOTE_KEY`` = ``note``, ASCII)."""
    text = note.encode("ascii")
    if data.startswith(b"\x89PNG"):
        payload = NOTE_KEY + b"\0" + text
        chunk = (len(payload).to_bytes(4, "big") + b"tEXt" + payload
                 + zlib.crc32(b"tEXt" + payload).to_bytes(4, "big"))
        end_of_ihdr = 8 + 8 + int.from_bytes(data[8:12], "big") + 4
        return data[:end_of_ihdr] + chunk + data[end_of_ihdr:]
    if data.startswith(b"\xff\xd8"):
        payload = NOTE_KEY + b":" + text
        return data[:2] + b"\xff\xfe" + (len(payload) + 2).to_bytes(2, "big") + payload + data[2:]
    return data


def read_note(path: str | os.PathLike[str]) -> str | None:
    """The note :func:`write_image` stored in a PNG or JPEG (None when there is none or the file
    cannot be read). Only the start of the file is read: the note is right after the signature."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(4096)
    except OSError:
        return None
    if head.startswith(b"\x89PNG"):
        pos = 8
        while pos + 8 <= len(head):
            length, kind = int.from_bytes(head[pos:pos + 4], "big"), head[pos + 4:pos + 8]
            if kind == b"tEXt":
                key, _, value = head[pos + 8:pos + 8 + length].partition(b"\0")
                if key == NOTE_KEY:
                    return value.decode("ascii", "replace")
            if kind in (b"IDAT", b"IEND"):
                return None
            pos += 12 + length
    elif head.startswith(b"\xff\xd8\xff\xfe"):
        length = int.from_bytes(head[4:6], "big")
        key, _, value = head[6:4 + length].partition(b":")
        if key == NOTE_KEY:
            return value.decode("ascii", "replace")
    return None


def write_image(final: str | os.PathLike[str], image: np.ndarray, *, force: bool = False,
                note: str | None = None) -> Path:
    """Write an RGB (HxWx3) or single-channel (HxW) uint8 image; the suffix picks the format.
    ``note``: an ASCII text stored in a PNG/JPEG header (see :func:`read_note`)."""
    final = Path(final)
    img = np.asarray(image)
    if img.ndim == 3:
        img = cv2.cvtColor(img, cv2.COLOR_RGB2BGR)
    ok, buf = cv2.imencode(final.suffix or ".png", img)
    if not ok:
        raise InputError(f"cannot encode an image as {final.suffix or '.png'}", final)
    data = buf.tobytes()
    return write_bytes(final, data if note is None else _with_note(data, note), force=force)


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
