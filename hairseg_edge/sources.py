"""Where frames come from: an image, a folder, a glob, a video file or a camera.

:func:`open_source` turns the ``SOURCE`` argument of ``hairseg-edge run`` into a :class:`Source`:
a sorted list of media files (images and videos), or a camera. Files are classified by suffix, and a
file with an unknown suffix by its first bytes, so ``photo.dat`` that is really a JPEG still works and
``notes.txt`` is refused with one line. Videos and cameras are read frame by frame through
:class:`VideoStream` (``cv2.VideoCapture``), so memory does not grow with the length of a video.

numpy + OpenCV only (a device module).
"""

from __future__ import annotations

import contextlib
import glob as globlib
import os
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from .errors import InputError
from .imageio import IMAGE_SUFFIXES, check_frame_size

# FFmpeg says why a file will not open ("moov atom not found") only on file descriptor 2, like
# LiteRT when a model will not load: the runtime's capture of native stderr serves both.
from .runtime import native_stderr

VIDEO_SUFFIXES = (".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm", ".mpg", ".mpeg", ".wmv", ".flv",
                  ".3gp", ".ts", ".mts", ".ogv")

IMAGE = "image"
VIDEO = "video"
#: What a SOURCE argument was: one file, a folder, a glob pattern, or a camera index.
SOURCE_KINDS = ("file", "folder", "glob", "camera")
#: Frames per second written for a camera (or a video file) that does not report its rate.
FALLBACK_FPS = 30.0

_GLOB_CHARS = re.compile(r"[*?\[]")


@dataclass(frozen=True)
class MediaItem:
    """One input file and whether it is read as a still image or as a video."""

    path: Path
    kind: str  # IMAGE or VIDEO

    @property
    def stem(self) -> str:
        return self.path.stem

    @property
    def name(self) -> str:
        return str(self.path)


@dataclass(frozen=True)
class Source:
    """A resolved ``SOURCE``: media files in processing order, or a camera index."""

    spec: str
    kind: str  # one of SOURCE_KINDS
    items: tuple[MediaItem, ...] = ()
    camera_index: int | None = None
    #: Files in a folder/glob that are neither images nor videos (not processed, counted for the user).
    skipped: tuple[Path, ...] = field(default=())

    @property
    def is_camera(self) -> bool:
        return self.camera_index is not None

    @property
    def n_images(self) -> int:
        return sum(1 for item in self.items if item.kind == IMAGE)

    @property
    def n_videos(self) -> int:
        return sum(1 for item in self.items if item.kind == VIDEO)


def _natural_key(path: Path) -> tuple:
    """Sort ``frame2`` before ``frame10`` (then by full path, so the order is total)."""
    parts = re.split(r"(\d+)", path.name.lower())
    return (tuple((0, int(t), "") if t.isdigit() else (1, 0, t) for t in parts), str(path))


def _head(path: Path, n: int = 32) -> bytes:
    try:
        with open(path, "rb") as fh:
            return fh.read(n)
    except PermissionError:
        raise InputError("permission denied", path) from None
    except OSError as exc:
        raise InputError(f"cannot read ({exc.strerror or exc})", path) from None


def _sniff_video(head: bytes) -> bool:
    """Container signatures of the common video formats (so unknown suffixes are recognised)."""
    return (
        head[4:8] == b"ftyp"  # MP4, MOV, 3GP, M4V
        or (head[:4] == b"RIFF" and head[8:12] == b"AVI ")
        or head[:4] == b"\x1a\x45\xdf\xa3"  # Matroska / WebM
        or head[:4] in (b"\x00\x00\x01\xba", b"\x00\x00\x01\xb3")  # MPEG program / video stream
        or head[:3] == b"FLV"
        or head[:4] == b"\x30\x26\xb2\x75"  # ASF / WMV
    )


def classify_file(path: str | os.PathLike[str]) -> str:
    """IMAGE or VIDEO for a file, by suffix or (unknown suffix) by its first bytes; else InputError."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in IMAGE_SUFFIXES:
        return IMAGE
    if suffix in VIDEO_SUFFIXES:
        return VIDEO
    head = _head(path)
    if not head:
        raise InputError("empty file (0 bytes)", path)
    if _sniff_video(head):
        return VIDEO
    with contextlib.suppress(cv2.error):
        if cv2.haveImageReader(str(path)):
            return IMAGE
    raise InputError("not an image or a video (unknown format)", path)


def _media_suffix(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES + VIDEO_SUFFIXES


def _items_from_paths(paths: list[Path]) -> tuple[tuple[MediaItem, ...], tuple[Path, ...]]:
    items, skipped = [], []
    for p in sorted(paths, key=_natural_key):
        if p.name.startswith("."):
            continue
        if _media_suffix(p):
            items.append(MediaItem(p, IMAGE if p.suffix.lower() in IMAGE_SUFFIXES else VIDEO))
        else:
            skipped.append(p)
    return tuple(items), tuple(skipped)


def parse_camera_index(spec: str) -> int | None:
    """``"0"`` -> 0 (a camera), anything else -> None."""
    text = spec.strip()
    return int(text) if re.fullmatch(r"\d{1,3}", text) else None


def open_source(spec: str | os.PathLike[str]) -> Source:
    """Resolve a SOURCE argument. Raises InputError (one line naming it) when it cannot be used.

    An existing path wins over the other readings (a file literally called ``0`` is a file); a bare
    small integer is a camera index; a pattern with ``*``, ``?`` or ``[`` is a glob (``**`` recurses).
    """
    text = os.fspath(spec)
    if not text.strip():
        raise InputError("empty SOURCE: give an image, a folder, a glob, a video or a camera index")
    path = Path(text).expanduser()
    if path.is_dir():
        try:
            children = [p for p in path.iterdir() if p.is_file()]
        except OSError as exc:
            raise InputError(f"cannot list folder ({exc.strerror or exc})", path) from None
        items, skipped = _items_from_paths(children)
        if not items:
            raise InputError("no images or videos in this folder", path)
        return Source(text, "folder", items, skipped=skipped)
    if path.is_file():
        return Source(text, "file", (MediaItem(path, classify_file(path)),))
    if path.exists():
        raise InputError("not a regular file or folder", path)
    camera = parse_camera_index(text)
    if camera is not None:
        return Source(text, "camera", camera_index=camera)
    if _GLOB_CHARS.search(text):
        matches = [Path(p) for p in globlib.glob(os.path.expanduser(text), recursive=True)]
        items, skipped = _items_from_paths([p for p in matches if p.is_file()])
        if not items:
            raise InputError("pattern matches no images or videos", text)
        return Source(text, "glob", items, skipped=skipped)
    raise InputError("no such file or folder", path)


def _ffmpeg_reason(lines: list[str]) -> str:
    """``[mov,mp4 @ 0x55] moov atom not found`` -> ``moov atom not found``."""
    for line in lines:
        reason = re.sub(r"^\[[^\]]*\]\s*", "", line.strip())
        if reason:
            return reason
    return ""


class VideoStream:
    """Frames of a video file or a camera as RGB uint8 arrays, one at a time.

    Use as a context manager (or call :meth:`close`) so the capture device is released.
    ``frame_count`` is the container's estimate (0 for a camera or when unknown).
    """

    def __init__(self, capture: cv2.VideoCapture, name: str, *, is_camera: bool):
        self._capture = capture
        self.name = name
        self.is_camera = is_camera
        fps = float(capture.get(cv2.CAP_PROP_FPS) or 0.0)
        self.fps = fps if 0.5 <= fps <= 1000.0 else FALLBACK_FPS
        self.width = int(capture.get(cv2.CAP_PROP_FRAME_WIDTH) or 0)
        self.height = int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT) or 0)
        count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        self.frame_count = 0 if is_camera or count < 0 else count
        try:  # refuse before the first frame is decoded
            check_frame_size(self.width, self.height, name)
        except InputError:
            capture.release()
            raise

    @classmethod
    def open_file(cls, path: str | os.PathLike[str]) -> VideoStream:
        path = Path(path)
        if not path.is_file():
            raise InputError("no such file", path)
        with native_stderr() as native:
            capture = cv2.VideoCapture(str(path))
            opened = capture.isOpened()
        if not opened:
            capture.release()
            reason = _ffmpeg_reason(native) or "unsupported or corrupt"
            raise InputError(f"cannot open as a video ({reason})", path)
        for line in native:  # opened after all: pass FFmpeg's warnings on unchanged
            print(line.rstrip(), file=sys.stderr)
        return cls(capture, str(path), is_camera=False)

    @classmethod
    def open_camera(cls, index: int) -> VideoStream:
        capture = cv2.VideoCapture(index)
        if not capture.isOpened():
            capture.release()
            raise InputError(f"cannot open camera {index} (no such device, or it is busy)")
        return cls(capture, f"camera {index}", is_camera=True)

    def frames(self, limit: int | None = None) -> Iterator[np.ndarray]:
        """Yield up to ``limit`` RGB frames (all when None), stopping at the end of the stream."""
        n = 0
        while limit is None or n < limit:
            ok, bgr = self._capture.read()
            if not ok or bgr is None:
                return
            n += 1
            yield cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)

    def close(self) -> None:
        self._capture.release()

    def __enter__(self) -> VideoStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
