"""Read and write named entries of a .tflite file's ``Model.metadata`` list, without TensorFlow.

A .tflite file is a FlatBuffer (file identifier ``TFL3``) whose ``Model`` table carries a list of
``Metadata {name, buffer}`` entries, each pointing at a raw byte buffer. hairseg-edge stores its
preprocessing contract there (entry :data:`hairseg_edge.contract.METADATA_NAME`, JSON), and MediaPipe
Tasks reads its own ``TFLITE_METADATA`` entry (itself a FlatBuffer) from the same list.

Reading uses the FlatBuffer accessors directly (nothing is copied but the entries asked for). Writing
unpacks the model with LiteRT's generated object API (``ai_edge_litert.schema_py_generated``), swaps
the entries and packs it again, so every other table (operators, tensors, signatures) is carried over
unchanged and the model computes exactly what it computed before.

A ZIP of associated files appended after the FlatBuffer (how MediaPipe models carry their
``labels.txt``) is carried over too.

Limits: models above 2 GB (FlatBuffers' own limit) are not supported; buffers stored past the end of
the FlatBuffer (the ``offset``/``size`` form large models use) are read, and written back inline.
"""

from __future__ import annotations

import io
import json
import os
import struct
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Union

import numpy as np

from .contract import METADATA_NAME, Contract
from .errors import InputError

if TYPE_CHECKING:  # pragma: no cover
    from types import ModuleType

#: The four bytes at offset 4 of every .tflite file.
TFLITE_IDENTIFIER = b"TFL3"
#: Name MediaPipe Tasks / TFLite Support use for their metadata FlatBuffer.
MEDIAPIPE_METADATA_NAME = "TFLITE_METADATA"
#: FlatBuffers cannot address more than this (signed 32-bit offsets).
MAX_FLATBUFFER_BYTES = 2**31 - 1
#: Alignment of buffer payloads when packing: the schema asks for 16 (``force_align: 16``), which
#: the generated Python ``Pack`` ignores; nested FlatBuffers (MediaPipe metadata) and SIMD kernels
#: reading constants in place both rely on it.
_BUFFER_ALIGNMENT = 16

ModelSource = Union[bytes, bytearray, memoryview, str, "os.PathLike[str]"]


def _schema() -> ModuleType:
    """LiteRT's generated schema module, imported on first use (it is large)."""
    from ai_edge_litert import schema_py_generated

    return schema_py_generated


def load_model_bytes(source: ModelSource) -> tuple[bytes, Path | None]:
    """``(bytes, path or None)`` for a path or an in-memory model; missing/unreadable -> InputError."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        return bytes(source), None
    from .imageio import read_file_bytes

    path = Path(source)
    return read_file_bytes(path, expected="a .tflite file"), path


def check_tflite_bytes(data: bytes, path: str | os.PathLike[str] | None = None) -> None:
    """Raise InputError unless ``data`` starts like a TFLite FlatBuffer (root offset + ``TFL3``)."""
    if len(data) == 0:
        raise InputError("empty file (0 bytes), not a .tflite model", path)
    if len(data) < 8 or data[4:8] != TFLITE_IDENTIFIER:
        raise InputError("not a TFLite model (no 'TFL3' file identifier)", path)
    (root,) = struct.unpack_from("<I", data, 0)
    if root + 4 > len(data):
        raise InputError("truncated .tflite file (the model table lies past the end)", path)


class _Table:
    """A FlatBuffer table read with ``struct`` alone, every offset bounds-checked.

    Reading metadata must work with any TFLite backend (tflite_runtime ships no schema module), and
    a cut file must fail with an error, never read garbage: ``IndexError`` / ``struct.error`` here
    mean a corrupt or truncated FlatBuffer.
    """

    __slots__ = ("data", "pos", "_vtable", "_vtable_size")

    def __init__(self, data: bytes, pos: int):
        self.data, self.pos = data, pos
        (soffset,) = struct.unpack_from("<i", data, self._check(pos, 4))
        self._vtable = self._check(pos - soffset, 4)
        (self._vtable_size,) = struct.unpack_from("<H", data, self._vtable)
        self._check(self._vtable, self._vtable_size)

    def _check(self, pos: int, size: int) -> int:
        if pos < 0 or pos + size > len(self.data):
            raise IndexError(f"offset {pos}+{size} outside the file ({len(self.data)} bytes)")
        return pos

    def _field(self, slot: int) -> int | None:
        entry = 4 + 2 * slot
        if entry + 2 > self._vtable_size:
            return None
        (offset,) = struct.unpack_from("<H", self.data, self._vtable + entry)
        return self.pos + offset if offset else None

    def scalar(self, slot: int, fmt: str, default: int = 0) -> int:
        pos = self._field(slot)
        if pos is None:
            return default
        return struct.unpack_from(fmt, self.data, self._check(pos, struct.calcsize(fmt)))[0]

    def _vector(self, slot: int) -> tuple[int, int] | None:
        pos = self._field(slot)
        if pos is None:
            return None
        (rel,) = struct.unpack_from("<I", self.data, self._check(pos, 4))
        start = self._check(pos + rel, 4)
        (length,) = struct.unpack_from("<I", self.data, start)
        return start + 4, length

    def bytes_field(self, slot: int) -> bytes | None:
        vector = self._vector(slot)
        if vector is None:
            return None
        start, length = vector
        return self.data[self._check(start, length) : start + length]

    def tables(self, slot: int) -> list[_Table]:
        vector = self._vector(slot)
        if vector is None:
            return []
        start, length = vector
        self._check(start, 4 * length)
        out = []
        for k in range(length):
            (rel,) = struct.unpack_from("<I", self.data, start + 4 * k)
            out.append(_Table(self.data, start + 4 * k + rel))
        return out


# Field slots of the TFLite schema tables read here (schema.fbs order).
_MODEL_BUFFERS, _MODEL_METADATA = 4, 6
_METADATA_NAME, _METADATA_BUFFER = 0, 1
_BUFFER_DATA, _BUFFER_OFFSET, _BUFFER_SIZE = 0, 1, 2


def _buffer_payload(data: bytes, buffers: list[_Table], index: int) -> bytes:
    """Buffer ``index``'s bytes, inline or stored after the FlatBuffer (large-model offset/size)."""
    if not 0 <= index < len(buffers):
        raise IndexError(f"metadata points at buffer {index} of {len(buffers)}")
    buf = buffers[index]
    offset = buf.scalar(_BUFFER_OFFSET, "<Q")
    if offset > 1:  # 0 = inline data, 1 = placeholder; > 1 = absolute offset into the file
        size = buf.scalar(_BUFFER_SIZE, "<Q")
        if offset + size > len(data):
            raise IndexError("buffer past the end of the file")
        return data[offset : offset + size]
    return buf.bytes_field(_BUFFER_DATA) or b""


def read_metadata(model: ModelSource) -> dict[str, bytes]:
    """All ``Model.metadata`` entries of a .tflite file or model bytes, as ``{name: payload}``.

    When a name appears twice (a file written by a careless tool) the last entry wins, which is what
    LiteRT itself does. Raises InputError for a file that is not a readable .tflite.
    """
    data, path = load_model_bytes(model)
    return read_metadata_bytes(data, path)


def read_metadata_bytes(data: bytes, path: str | os.PathLike[str] | None = None) -> dict[str, bytes]:
    """Like :func:`read_metadata` for bytes already in memory; ``path`` only names them in errors."""
    check_tflite_bytes(data, path)
    try:
        model = _Table(data, struct.unpack_from("<I", data, 0)[0])
        buffers = model.tables(_MODEL_BUFFERS)
        entries: dict[str, bytes] = {}
        for entry in model.tables(_MODEL_METADATA):
            name = (entry.bytes_field(_METADATA_NAME) or b"").decode("utf-8", errors="replace")
            entries[name] = _buffer_payload(data, buffers, entry.scalar(_METADATA_BUFFER, "<I"))
        return entries
    except (IndexError, struct.error) as exc:
        raise InputError(f"corrupt or truncated .tflite file ({exc})", path) from None


class _AlignedBufferT:
    """Packs like ``BufferT`` but aligns the payload to 16 bytes and copies it in one block."""

    def __init__(self, data: bytes | np.ndarray | None):
        self.data = None if data is None else np.frombuffer(bytes(data), dtype=np.uint8)

    def Pack(self, builder) -> int:  # noqa: N802 (FlatBuffers' naming)
        schema = _schema()
        vector = None
        if self.data is not None and self.data.size:
            payload = self.data.tobytes()
            builder.StartVector(1, len(payload), _BUFFER_ALIGNMENT)
            builder.head -= len(payload)
            builder.Bytes[builder.head : builder.head + len(payload)] = payload
            vector = builder.EndVector()
        schema.BufferStart(builder)
        if vector is not None:
            schema.BufferAddData(builder, vector)
        return schema.BufferEnd(builder)


def _unpack_model(data: bytes):
    """The whole model as mutable objects, with out-of-line buffers pulled inline."""
    schema = _schema()
    model = schema.ModelT.InitFromPackedBuf(bytearray(data), 0)
    for buf in model.buffers or []:
        if buf.offset and buf.offset > 1:
            buf.data = np.frombuffer(data[buf.offset : buf.offset + buf.size], dtype=np.uint8)
        buf.offset = 0
        buf.size = 0
    return model


def appended_archive(data: bytes) -> tuple[int, list[tuple[zipfile.ZipInfo, bytes]]]:
    """``(start, members)`` of a ZIP archive appended after the FlatBuffer, or ``(len(data), [])``.

    TFLite Support / MediaPipe metadata writers append the model's associated files (e.g. the
    ``labels.txt`` of a segmenter) as a ZIP after the FlatBuffer; MediaPipe reads them from there.
    """
    if b"PK\x05\x06" not in data[-(65536 + 22):]:
        return len(data), []
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            infos = archive.infolist()
            if not infos:
                return len(data), []
            members = [(info, archive.read(info)) for info in infos]
            start = min(info.header_offset for info in infos)
    except (zipfile.BadZipFile, OSError, ValueError, EOFError):
        return len(data), []
    return start, members


def _append_archive(model_bytes: bytes, members: list[tuple[zipfile.ZipInfo, bytes]]) -> bytes:
    """Append ``members`` as a ZIP after the model, the way the metadata writers do."""
    if not members:
        return model_bytes
    stream = io.BytesIO(model_bytes)
    with zipfile.ZipFile(stream, "a") as archive:
        for info, payload in members:
            archive.writestr(info, payload)
    return stream.getvalue()


def _pack_model(model) -> bytes:
    import flatbuffers

    model.buffers = [
        _AlignedBufferT(None if b.data is None else np.asarray(b.data, dtype=np.uint8))
        for b in (model.buffers or [])
    ]
    builder = flatbuffers.Builder(1024 * 1024)
    builder.Finish(model.Pack(builder), file_identifier=TFLITE_IDENTIFIER)
    out = bytes(builder.Output())
    if len(out) > MAX_FLATBUFFER_BYTES:
        raise InputError("model too large for an inline FlatBuffer (> 2 GB)")
    return out


def _entry_name(entry) -> str:
    name = entry.name
    if isinstance(name, bytes):
        return name.decode("utf-8", errors="replace")
    return name or ""


def _buffers_in_use(model, skip_metadata_index: int | None = None) -> set[int]:
    used: set[int] = set()
    for subgraph in model.subgraphs or []:
        for tensor in subgraph.tensors or []:
            used.add(int(tensor.buffer))
    for i, entry in enumerate(model.metadata or []):
        if i != skip_metadata_index:
            used.add(int(entry.buffer))
    for index in model.metadataBuffer if model.metadataBuffer is not None else []:
        used.add(int(index))
    return used


def with_metadata(model_bytes: bytes, entries: Mapping[str, bytes]) -> bytes:
    """A copy of ``model_bytes`` whose metadata has ``entries`` added, replacing same-named ones.

    The operators, tensors, weights and signatures are untouched, so the result runs exactly like
    the input in LiteRT. Raises InputError for bytes that are not a readable .tflite model.
    """
    data = bytes(model_bytes)
    check_tflite_bytes(data)
    for name, payload in entries.items():
        if not isinstance(name, str) or not name:
            raise ValueError(f"metadata names must be non-empty strings, got {name!r}")
        if not isinstance(payload, (bytes, bytearray, memoryview)):
            raise TypeError(f"metadata {name!r} must be bytes, got {type(payload).__name__}")
    archive_start, archive_members = appended_archive(data)
    try:
        model = _unpack_model(data[:archive_start])
    except Exception as exc:
        raise InputError(f"corrupt or truncated .tflite model ({type(exc).__name__})") from None
    schema = _schema()
    if model.buffers is None:
        model.buffers = [schema.BufferT()]  # buffer 0 is the conventional empty buffer
    if model.metadata is None:
        model.metadata = []
    for name, payload in entries.items():
        new_data = np.frombuffer(bytes(payload), dtype=np.uint8)
        same_name = [e for e in model.metadata if _entry_name(e) == name]
        if same_name:
            entry = same_name[-1]  # LiteRT reads the last one; drop the others
            model.metadata = [e for e in model.metadata if e is entry or _entry_name(e) != name]
            position = next(i for i, e in enumerate(model.metadata) if e is entry)
            index = int(entry.buffer)
            # Reuse the entry's buffer when nothing else points at it, so no orphaned copy of the
            # old payload stays in the file.
            if index != 0 and index not in _buffers_in_use(model, skip_metadata_index=position):
                model.buffers[index].data = new_data
                continue
        else:
            entry = schema.MetadataT()
            entry.name = name
            model.metadata.append(entry)
        entry.buffer = len(model.buffers)
        buffer = schema.BufferT()
        buffer.data = new_data
        model.buffers.append(buffer)
    return _append_archive(_pack_model(model), archive_members)


def parse_contract(payload: bytes, path: str | os.PathLike[str] | None = None) -> Contract:
    """A contract from the bytes of its metadata entry; anything malformed is an InputError."""
    try:
        fields = json.loads(bytes(payload).decode("utf-8"))
        if not isinstance(fields, dict):
            raise ValueError("not a JSON object")
        return Contract.from_dict(fields)
    except (UnicodeDecodeError, ValueError, TypeError) as exc:
        raise InputError(f"metadata entry {METADATA_NAME!r} is not a valid contract ({exc})",
                         path) from None


def read_contract(model: ModelSource) -> Contract | None:
    """The hairseg preprocessing contract stored in a model, or None when it has none.

    Raises InputError when the entry exists but is not a valid contract (bad JSON, bad values).
    Whether this runtime speaks that contract is :meth:`Contract.check_compatible`'s business.
    """
    data, path = load_model_bytes(model)
    payload = read_metadata_bytes(data, path).get(METADATA_NAME)
    if payload is None:
        return None
    return parse_contract(payload, path)


def embed_contract(model_bytes: bytes, contract: Contract) -> bytes:
    """``model_bytes`` with ``contract`` stored as JSON under :data:`METADATA_NAME`."""
    return with_metadata(model_bytes, {METADATA_NAME: contract.to_json().encode("utf-8")})
