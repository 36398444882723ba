"""Where data set files are read from: a small seam between the data readers and the storage.

:mod:`hairseg_edge.data` lists, checks and reads a data set only through a :class:`Filesystem`, so the
same code (layout detection, id listing, the validation split, header check and decoding) serves a local
folder and any storage a caller can list and read. The device side only ever uses :data:`LOCAL` (the
operating system's files, exactly as before); the training side passes a filesystem backed by
``tf.io.gfile`` (``hairseg_edge.training.gfile``) for ``--data`` paths with a URL scheme (``gs://``,
``hdfs://``, ``ram://``...). This module never imports TensorFlow.
"""

from __future__ import annotations

import os
import posixpath
import re
from pathlib import Path
from typing import Protocol, Union

from .errors import InputError

#: A data path: a local :class:`~pathlib.Path`, or a URL string (``scheme://...``) for other storage.
DataPath = Union[Path, str]

_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


def has_scheme(path: str | os.PathLike[str]) -> bool:
    """True for a URL such as ``gs://bucket/data`` (a local path never has ``scheme://``)."""
    return bool(_SCHEME.match(os.fspath(path)))


class Filesystem(Protocol):
    """What the data readers need from storage. Paths are what :meth:`path` and :meth:`join` return."""

    def path(self, text: str | os.PathLike[str]) -> DataPath: ...

    def join(self, folder: DataPath, name: str) -> DataPath: ...

    def exists(self, path: DataPath) -> bool: ...

    def isdir(self, path: DataPath) -> bool: ...

    def isfile(self, path: DataPath) -> bool: ...

    def listdir(self, folder: DataPath) -> list[str]:
        """The names (not paths) in ``folder``."""
        ...

    def size(self, path: DataPath) -> int: ...

    def read_bytes(self, path: DataPath, expected: str = "a file") -> bytes:
        """A file's bytes, or an InputError naming it."""
        ...


def basename(path: DataPath) -> str:
    """The last part of a local path or a URL."""
    return path.name if isinstance(path, Path) else posixpath.basename(path.rstrip("/"))


class LocalFilesystem:
    """The operating system's files, through :mod:`pathlib` (the readers' behaviour before the seam)."""

    def path(self, text: str | os.PathLike[str]) -> Path:
        if has_scheme(text):
            raise InputError("a URL: only training reads storage other than local folders (gs://, "
                             "hdfs://, ...); copy the data to a local folder or mount it", os.fspath(text))
        return Path(text)

    def join(self, folder: DataPath, name: str) -> Path:
        return Path(folder) / name

    def exists(self, path: DataPath) -> bool:
        return Path(path).exists()

    def isdir(self, path: DataPath) -> bool:
        return Path(path).is_dir()

    def isfile(self, path: DataPath) -> bool:
        return Path(path).is_file()

    def listdir(self, folder: DataPath) -> list[str]:
        return [p.name for p in Path(folder).iterdir()]

    def size(self, path: DataPath) -> int:
        return Path(path).stat().st_size

    def read_bytes(self, path: DataPath, expected: str = "a file") -> bytes:
        from .imageio import read_file_bytes  # imageio imports this module for the type

        return read_file_bytes(path, expected)


#: The default filesystem: local files.
LOCAL: Filesystem = LocalFilesystem()


def local_path(text: str | os.PathLike[str] | None) -> Path | None:
    """A command's local file or folder option as a Path; a URL is refused with one line (the device
    side and export read local or mounted folders only). Take the option as ``str``: a Path would
    already have folded ``gs://b`` into ``gs:/b``."""
    return None if text is None else LocalFilesystem().path(text)
