"""Data sets on any storage TensorFlow reads: a :class:`~hairseg_edge.filesystem.Filesystem` over
``tf.io.gfile``.

``--data gs://bucket/celebamask-hq-hair`` (or ``hdfs://...``, ``s3://...`` with tensorflow-io, ``ram://``
in tests) lists, splits and decodes through the same code as a local folder (:mod:`hairseg_edge.data`);
only the listing and the reading of bytes go through TensorFlow's filesystems. Local paths keep the
local reader (:func:`filesystem_for`), so a local run reads exactly as before.
"""

from __future__ import annotations

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
        return self.exists(path) and not self.isdir(path)

    def listdir(self, folder: DataPath) -> list[str]:
        # Object stores list sub-"folders" with a trailing slash; the readers want bare names.
        names = self._ask(tf.io.gfile.listdir, folder)
        return [n.rstrip("/") for n in names]

    def size(self, path: DataPath) -> int:
        return int(self._ask(tf.io.gfile.stat, path).length)

    def read_bytes(self, path: DataPath, expected: str = "a file") -> bytes:
        if self.isdir(path):
            raise InputError(f"is a folder, expected {expected}", path)
        try:
            with tf.io.gfile.GFile(str(path), "rb") as fh:
                return fh.read()
        except tf.errors.NotFoundError:
            raise InputError("no such file", path) from None
        except tf.errors.PermissionDeniedError:
            raise InputError("permission denied", path) from None
        except tf.errors.OpError as exc:
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
                             "built in; s3:// and hdfs:// need tensorflow-io)", path) from None
        except tf.errors.OpError as exc:
            raise InputError(f"cannot read ({reason(exc)})", path) from None


GFILE: Filesystem = GFileFilesystem()


def filesystem_for(path: str | os.PathLike[str]) -> Filesystem:
    """``tf.io.gfile`` for a ``scheme://`` path, else the local files (exactly the device readers)."""
    return GFILE if has_scheme(path) else LOCAL
