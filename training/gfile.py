"""Data sets on any storage TensorFlow reads: a :class:`~hairseg_edge.filesystem.Filesystem` over
``tf.io.gfile``.

``--data gs://bucket/celebamask-hq-hair`` (or ``hdfs://...``, ``s3://...`` with tensorflow-io installed,
``ram://`` in tests) lists, splits and decodes through the same code as a local folder (:mod:`hairseg_edge.data`);
only the listing and the reading of bytes go through TensorFlow's filesystems. Local paths keep the
local reader (:func:`filesystem_for`), so a local run reads exactly as before.
"""

from __future__ import annotations

import contextlib
import importlib
import os

from hairseg_edge.errors import InputError, reason
from hairseg_edge.filesystem import LOCAL, DataPath, Filesystem, has_scheme

from .keras_compat import tf


class GFileFilesystem:
    """Paths are URL strings (``scheme://...``), joined with ``/``."""

    def path(self, text: str | os.PathLike[str]) -> str:
        return os.fspath(text).rstrip("/") or os.fspath(text)

    def join(self, folder: DataPath, name: str) -> str:
        return f"{str(folder).rstrip('/')}/{name}"

    def exists(self, path: DataPath) -> bool:
        return self._ask(tf.io.gfile.exists, path)

    def isdir(self, path: DataPath) -> bool:
        return self._ask(tf.io.gfile.isdir, path)

    def isfile(self, path: DataPath) -> bool:
        # One metadata request (object stores charge per request, and opening a set checks every file).
        try:
            return not tf.io.gfile.stat(str(path)).is_directory
        except tf.errors.NotFoundError:
            return False
        except tf.errors.OpError as exc:
            raise InputError(f"cannot read ({reason(exc)})", path) from None

    def listdir(self, folder: DataPath) -> list[str]:
        # Object stores list sub-"folders" with a trailing slash; the readers want bare names.
        names = self._ask(tf.io.gfile.listdir, folder)
        return [n.rstrip("/") for n in names]

    def size(self, path: DataPath) -> int:
        return int(self._ask(tf.io.gfile.stat, path).length)

    def read_bytes(self, path: DataPath, expected: str = "a file") -> bytes:
        # The read alone on the way that works (one request per photo per epoch); the rest explains a failure.
        try:
            with tf.io.gfile.GFile(str(path), "rb") as fh:
                return fh.read()
        except tf.errors.NotFoundError:
            raise InputError("no such file", path) from None
        except tf.errors.PermissionDeniedError:
            raise InputError("permission denied", path) from None
        except tf.errors.OpError as exc:
            if self.isdir(path):
                raise InputError(f"is a folder, expected {expected}", path) from None
            raise InputError(f"cannot read ({reason(exc)})", path) from None

    @staticmethod
    def _ask(call, path: DataPath):
        """A gfile query; a missing scheme's filesystem or a storage error becomes one line naming the path."""
        try:
            return call(str(path))
        except tf.errors.NotFoundError:
            raise InputError("no such file or folder", path) from None
        except tf.errors.UnimplementedError:
            raise InputError("TensorFlow has no filesystem for this URL scheme (gs:// and ram:// are "
                             "built in; s3://, hdfs:// and az:// need: pip install tensorflow-io)", path) from None
        except tf.errors.OpError as exc:
            raise InputError(f"cannot read ({reason(exc)})", path) from None


GFILE: Filesystem = GFileFilesystem()


#: Schemes TensorFlow itself reads; the others (s3://, hdfs://, az://...) are tensorflow-io's plugins.
_BUILT_IN_SCHEMES = ("gs", "ram", "file")


def filesystem_for(path: str | os.PathLike[str]) -> Filesystem:
    """``tf.io.gfile`` for a ``scheme://`` path, else the local files (exactly the device readers)."""
    if not has_scheme(path):
        return LOCAL
    if os.fspath(path).split("://", 1)[0].lower() not in _BUILT_IN_SCHEMES:
        # tensorflow-io registers its filesystems when imported; without it, the first listing says
        # which package is missing (GFileFilesystem._ask).
        with contextlib.suppress(ImportError):
            importlib.import_module("tensorflow_io")
    return GFILE
