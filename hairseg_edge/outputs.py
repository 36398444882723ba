"""The output folder of ``run``: claimed by one process at a time, created only when needed, names
that fit the filesystem, and the record that lets a rerun of the same request resume.

* **Lazy.** Nothing is created before there is work to write; folders this run created and that are
  still empty at the end (every input refused) are removed again.
* **One run per folder.** A run holds an exclusive ``flock`` on ``<out>/.hairseg-edge.lock`` (which
  holds its PID) while it writes; a second run into the same folder is refused with "in use by
  PID N". The kernel drops the lock when its process dies (even by SIGKILL), so a stale lock file
  left by a killed run never blocks the next one.
* **Names fit.** An output name longer than the filesystem's NAME_MAX is shortened deterministically
  (a truncated stem plus ``~`` and 8 hex digits of its hash), so a rerun finds the same name.
* **Resume.** Every image output carries, in its header (PNG tEXt / JPEG COM), the signature of
  the request that wrote it (:func:`request_signature`: source, model bytes, adapter and the options
  that change pixels). An existing output with this request's signature is complete (every write is
  atomic: a file at its final name is whole), so a rerun keeps it and writes only what is missing;
  any other existing file is still refused without ``--force``. Videos are not resumed (a video is
  renamed into place only once all its frames are written, so a killed run leaves none to keep).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any

from .errors import InputError
from .imageio import TEMPORARY_NAME, read_note

try:
    import fcntl
except ImportError:  # pragma: no cover (Windows: no advisory locks; runs are not serialised there)
    fcntl = None  # type: ignore[assignment]

LOCK_NAME = ".hairseg-edge.lock"
DEFAULT_NAME_MAX = 255
#: Names ``run`` gives its outputs: ``<stem>_<role>.<ext>`` (recognised when they show up as inputs).
OUTPUT_NAME = re.compile(r".+_(mask|matte|overlay|recolor)\.(png|jpg|mp4|mkv)$", re.IGNORECASE)


def name_max(folder: str | os.PathLike[str]) -> int:
    """The longest file name (in bytes) the filesystem holding ``folder`` (or its nearest existing
    parent) accepts."""
    path = Path(folder).absolute()
    for candidate in (path, *path.parents):
        if candidate.is_dir():
            with contextlib.suppress(OSError, ValueError):
                return int(os.pathconf(candidate, "PC_NAME_MAX"))
            break
    return DEFAULT_NAME_MAX


def truncate_utf8(text: str, max_bytes: int) -> str:
    """The longest prefix of ``text`` whose UTF-8 encoding has at most ``max_bytes`` bytes."""
    return text.encode("utf-8")[:max(max_bytes, 0)].decode("utf-8", errors="ignore")


def fit_name(stem: str, tail: str, limit: int = DEFAULT_NAME_MAX) -> str:
    """``stem + tail``, or when that is longer than ``limit`` bytes, a truncated stem with ``~`` and 8
    hex digits of the stem's sha256 (deterministic: a rerun derives the same name)."""
    name = stem + tail
    if len(name.encode("utf-8")) <= limit:
        return name
    digest = hashlib.sha256(stem.encode("utf-8", errors="surrogateescape")).hexdigest()[:8]
    room = limit - len(tail.encode("utf-8")) - len(digest) - 1
    if room < 1:
        raise InputError(f"cannot derive an output name that fits {limit} bytes", stem + tail)
    return f"{truncate_utf8(stem, room)}~{digest}{tail}"


def is_own_output(path: Path, out_dir: Path) -> bool:
    """Whether ``path`` is one of this tool's outputs inside ``out_dir`` (input folder == output
    folder: a rerun must not segment its own masks)."""
    if not OUTPUT_NAME.fullmatch(path.name):
        return False
    try:
        return path.parent.resolve() == Path(out_dir).resolve()
    except OSError:
        return False


def request_signature(fields: dict[str, Any]) -> str:
    """A stable hex digest of what a request asks for (same JSON -> same signature)."""
    return hashlib.sha256(json.dumps(fields, sort_keys=True, default=str).encode()).hexdigest()


def check_out_dir(out_dir: Path) -> None:
    """Refuse, without creating anything, an output folder that could never be written: a file, a
    path under a file, or one whose nearest existing folder is not writable."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError("output folder is a file, not a folder", out_dir)
    existing = next((p for p in (out_dir.absolute(), *out_dir.absolute().parents) if p.exists()), None)
    if existing is None or not existing.is_dir():
        raise InputError("cannot write to the output folder (a part of its path is a file)", out_dir)
    if not os.access(existing, os.W_OK | os.X_OK):
        raise InputError("cannot write to the output folder (permission denied)", out_dir)


class OutputFolder:
    """A run's claim on its output folder; use as a context manager, call :meth:`claim` before the
    first output of an input is planned."""

    def __init__(self, out_dir: str | os.PathLike[str], signature: str | None = None):
        self.path = Path(out_dir)
        self.signature = signature
        self._created: list[Path] = []
        self._lock_fd: int | None = None
        self.limit = DEFAULT_NAME_MAX

    def claim(self) -> None:
        """Create the folder (when missing) and take its lock; idempotent."""
        if self._lock_fd is not None:
            return
        missing = [p for p in (self.path.absolute(), *self.path.absolute().parents) if not p.exists()]
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise InputError(f"cannot write to the output folder ({exc.strerror or exc})",
                             self.path) from None
        self._created = [p for p in missing if p.is_dir()]  # deepest first, as listed
        self.limit = name_max(self.path)
        self._lock()

    def _lock(self) -> None:
        lock_path = self.path / LOCK_NAME
        while True:
            try:
                fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as exc:
                raise InputError(f"cannot write to the output folder ({exc.strerror or exc})",
                                 self.path) from None
            if fcntl is None:
                break
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                holder = os.read(fd, 64).decode("ascii", "replace").strip() or "?"
                os.close(fd)
                raise InputError(f"output folder in use by another hairseg-edge run (PID {holder}); "
                                 "wait for it or choose another --out", self.path) from None
            # The previous holder may have unlinked the file between our open and flock: only a
            # lock on the file that is at the path now counts.
            try:
                same = os.fstat(fd).st_ino == os.stat(lock_path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        self._lock_fd = fd
        with contextlib.suppress(OSError):  # the PID is for the message only (a full disk is fine)
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
        self._remove_stale_temporaries()

    def _remove_stale_temporaries(self) -> None:
        """Delete the half-written temporary files (``imageio.atomic_path``'s ``.NAME.XXXXXXXX.tmp.EXT``)
        a killed run left here. Holding the folder's lock, no other run of this tool is writing to it,
        so every such file is a leftover: a rerun leaves only finished outputs behind."""
        for path in self.path.rglob(".*.tmp*"):
            if TEMPORARY_NAME.match(path.name) and path.is_file() and not path.is_symlink():
                with contextlib.suppress(OSError):
                    path.unlink()

    def finished(self, path: Path) -> bool:
        """Whether ``path`` is an output this same request wrote before (kept on a rerun)."""
        return self.signature is not None and read_note(path) == self.signature

    def close(self) -> None:
        if self._lock_fd is not None:
            with contextlib.suppress(OSError):
                os.unlink(self.path / LOCK_NAME)  # while still holding the lock (see _lock)
            os.close(self._lock_fd)
            self._lock_fd = None
        for folder in self._created:  # deepest first; rmdir refuses a folder with anything in it
            with contextlib.suppress(OSError):
                folder.rmdir()

    def __enter__(self) -> OutputFolder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
