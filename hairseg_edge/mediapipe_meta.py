"""MediaPipe Tasks metadata for hairseg models: what ``hairseg-edge package`` writes into a .tflite.

MediaPipe Tasks' ``ImageSegmenter`` (Android, iOS, web, Python) reads a model's TFLite metadata to learn
how to feed it and how to read its output. A packaged hairseg model carries:

* **Input** ``image``: RGB image properties with the model's square input size. For float input,
  ``NormalizationOptions`` mean 0 / std 1, because a hairseg model takes the raw values 0..255 and
  rescales inside itself (MediaPipe refuses float input without normalisation metadata, and computes
  ``(pixel - mean) / std``). uint8 input (the int8 model) gets no normalisation: the pixels go in as
  they are. Value statistics 0..255 either way.
* **Output** ``hair_probability``: a one-channel grayscale mask, values 0..1 (sigmoid already applied;
  a quantized uint8 output is dequantized by MediaPipe with the tensor's own scale), with the label
  file ``labels.txt`` attached as ``TENSOR_AXIS_LABELS``.
* **Segmenter options** (custom metadata ``SEGMENTER_METADATA``): activation ``NONE``, so MediaPipe
  does not apply a sigmoid or softmax a second time.

The label file and the one-channel convention. For a model with ONE output channel MediaPipe does not
take an arg-max: its category mask is ``0`` where the channel's value is above 0.5 and ``255``
("unlabelled") elsewhere, on the CPU and on the GPU path alike. Its confidence mask 0 is the channel
itself. So label index 0 must name the channel: ``labels.txt`` lists ``hair`` first, then
``background`` for the rest of the picture (which the category mask reports as 255, never as 1).
Apps therefore read: category value 0 = hair, anything else = background; or confidence > 0.5 = hair.

How the bytes are laid out (the convention of TFLite Support / MediaPipe, which both read it): the
metadata FlatBuffer (file identifier ``M001``) is stored in the model's ``Model.metadata`` entry named
``TFLITE_METADATA``, and the associated files are appended after the model FlatBuffer as a zip
archive (stored, not compressed). The result is both a valid .tflite (LiteRT ignores trailing bytes)
and a valid zip. Our own ``hairseg_contract`` entry is kept as it is.

The metadata tables are built with the schema module that the installed ``mediapipe`` package ships
(``mediapipe/tasks/metadata/*_py_generated.py``, FlatBuffers object API), so the layout is MediaPipe's
own; mediapipe is the optional ``[mobile]`` extra and is imported only when packaging.
"""

from __future__ import annotations

import io
import os
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from . import __version__
from .contract import Contract
from .errors import CheckFailed, InputError, MissingExtraError
from .imageio import write_bytes
from .tflite_meta import (
    MEDIAPIPE_METADATA_NAME,
    appended_archive,
    check_tflite_bytes,
    load_model_bytes,
    read_contract,
    read_metadata,
    with_metadata,
)

#: Name of the label file packed into the model (referenced from the output tensor's metadata).
LABELS_FILE_NAME = "labels.txt"
#: Line ``i`` names output channel ``i``; see the module docstring for why hair comes first.
LABELS = ("hair", "background")
#: Name MediaPipe looks up in ``SubGraphMetadata.custom_metadata`` for the segmenter options.
SEGMENTER_METADATA_NAME = "SEGMENTER_METADATA"
#: File identifiers of the two FlatBuffers we write (fixed by their schemas).
METADATA_FILE_IDENTIFIER = b"M001"
SEGMENTER_OPTIONS_FILE_IDENTIFIER = b"V001"
#: Oldest metadata parser that understands every field we use: ``custom_metadata`` in
#: ``SubGraphMetadata`` arrived in schema 1.5.0 (see the history in metadata_schema.fbs).
METADATA_MIN_PARSER_VERSION = "1.5.0"
SEGMENTER_OPTIONS_MIN_PARSER_VERSION = "1.0.0"
#: Default output: ``<input stem>`` + this, next to the input.
DEFAULT_SUFFIX = ".task-ready.tflite"

INPUT_NAME = "image"
OUTPUT_NAME = "hair_probability"

# TFLite TensorType values (schema.fbs); only the ones a hairseg model can have are named.
_TENSOR_TYPES = {0: "float32", 1: "float16", 2: "int32", 3: "uint8", 9: "int8"}
_INPUT_TYPES = ("float32", "uint8")
_OUTPUT_TYPES = ("float32", "uint8")
#: Largest difference allowed between LiteRT's and MediaPipe's probabilities on the same model input
#: when ``package`` checks its result: both run the same interpreter, so the only differences are
#: float rounding in MediaPipe's dequantisation and copy paths.
VERIFY_TOLERANCE = 1e-3


@dataclass(frozen=True)
class TensorIO:
    """Shape, type and quantisation of one model input or output."""

    shape: tuple[int, ...]
    dtype: str
    scale: float = 0.0
    zero_point: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {"shape": list(self.shape), "dtype": self.dtype, "scale": self.scale,
                "zero_point": self.zero_point}


@dataclass(frozen=True)
class ModelIO:
    """The single input and output of a hairseg model, checked against what MediaPipe can feed."""

    input: TensorIO
    output: TensorIO

    @property
    def input_size(self) -> int:
        return self.input.shape[1]

    def to_dict(self) -> dict[str, Any]:
        return {"input": self.input.to_dict(), "output": self.output.to_dict()}


@dataclass(frozen=True)
class PackageResult:
    """What ``package`` wrote, and what it proved about the result."""

    source: Path | None
    output: Path | None
    io: ModelIO
    normalization: tuple[tuple[float, ...], tuple[float, ...]] | None
    labels: tuple[str, ...]
    size_bytes: int
    verified: bool
    max_abs_diff: float | None
    mediapipe_version: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": None if self.source is None else str(self.source),
            "output": None if self.output is None else str(self.output),
            "io": self.io.to_dict(),
            "normalization": None if self.normalization is None else {
                "mean": list(self.normalization[0]), "std": list(self.normalization[1])},
            "labels": list(self.labels),
            "size_bytes": self.size_bytes,
            "verified": self.verified,
            "max_abs_diff": self.max_abs_diff,
            "mediapipe_version": self.mediapipe_version,
        }


# --------------------------------------------------------------------------------------------------
# Reading the model (no mediapipe needed)
# --------------------------------------------------------------------------------------------------


def _tensor_io(subgraph, index: int) -> TensorIO:
    tensor = subgraph.Tensors(index)
    shape = tuple(int(d) for d in tensor.ShapeAsNumpy()) if tensor.ShapeLength() else ()
    dtype = _TENSOR_TYPES.get(tensor.Type(), f"type {tensor.Type()}")
    scale, zero_point = 0.0, 0
    quant = tensor.Quantization()
    if quant is not None and quant.ScaleLength() == 1 and quant.ZeroPointLength() == 1:
        scale, zero_point = float(quant.Scale(0)), int(quant.ZeroPoint(0))
    return TensorIO(shape=shape, dtype=dtype, scale=scale, zero_point=zero_point)


def model_io(model_bytes: bytes, path: str | os.PathLike[str] | None = None) -> ModelIO:
    """Read and check a hairseg model's input and output; InputError when MediaPipe cannot use it.

    MediaPipe's segmenter needs one subgraph with one ``[1, H, W, 3]`` image input (float32 or uint8)
    and one output; hairseg's contract adds ``[1, S, S, 1]``, a one-channel hair probability.
    """
    check_tflite_bytes(model_bytes, path)
    from ai_edge_litert import schema_py_generated as schema

    try:
        model = schema.Model.GetRootAs(model_bytes, 0)
        if model.SubgraphsLength() != 1:
            raise InputError(f"has {model.SubgraphsLength()} subgraphs; MediaPipe's segmenter needs "
                             "exactly one", path)
        subgraph = model.Subgraphs(0)
        n_in, n_out = subgraph.InputsLength(), subgraph.OutputsLength()
        if n_in != 1 or n_out != 1:
            raise InputError(f"has {n_in} inputs and {n_out} outputs; a hairseg model has one of each",
                             path)
        inp = _tensor_io(subgraph, int(subgraph.Inputs(0)))
        out = _tensor_io(subgraph, int(subgraph.Outputs(0)))
    except InputError:
        raise
    except Exception as exc:  # struct.error / IndexError from a cut or corrupt FlatBuffer
        raise InputError(f"corrupt or truncated .tflite file ({type(exc).__name__})", path) from None

    if len(inp.shape) != 4 or inp.shape[0] != 1 or inp.shape[3] != 3 or inp.shape[1] != inp.shape[2]:
        raise InputError(f"input shape {list(inp.shape)} is not [1, S, S, 3] (a square RGB image)", path)
    if inp.dtype not in _INPUT_TYPES:
        hint = " (export int8 models with uint8 input)" if inp.dtype == "int8" else ""
        raise InputError(f"input type {inp.dtype} cannot be fed by MediaPipe: float32 or uint8 only{hint}",
                         path)
    if len(out.shape) != 4 or out.shape[0] != 1 or out.shape[3] != 1:
        raise InputError(f"output shape {list(out.shape)} is not [1, H, W, 1] (one hair-probability "
                         "channel)", path)
    if out.dtype not in _OUTPUT_TYPES:
        raise InputError(f"output type {out.dtype} is not supported: float32 or uint8 only", path)
    if out.dtype == "uint8" and out.scale <= 0:
        raise InputError("uint8 output has no quantisation scale", path)
    return ModelIO(input=inp, output=out)


def packed_files(model: bytes | str | os.PathLike[str]) -> dict[str, bytes]:
    """The associated files zipped after the model FlatBuffer (``{}`` when there are none)."""
    data, _ = load_model_bytes(model)
    _, members = appended_archive(data)
    return {info.filename: payload for info, payload in members}


def is_packaged(model: bytes | str | os.PathLike[str]) -> bool:
    """True when a model carries MediaPipe metadata (``TFLITE_METADATA``) and its label file."""
    data, path = load_model_bytes(model)
    return (MEDIAPIPE_METADATA_NAME in read_metadata(data if path is None else path)
            and LABELS_FILE_NAME in packed_files(data))


def append_associated_files(model_bytes: bytes, files: Mapping[str, bytes]) -> bytes:
    """``model_bytes`` (a bare FlatBuffer) followed by ``files`` as a stored (uncompressed) zip.

    zipfile's append mode on bytes that are not a zip writes the archive after them and records
    offsets that account for the leading model, which is what MediaPipe's metadata extractor reads.
    """
    buffer = io.BytesIO(bytes(model_bytes))
    buffer.seek(0, io.SEEK_END)
    with zipfile.ZipFile(buffer, mode="a", compression=zipfile.ZIP_STORED) as archive:
        for name, payload in files.items():
            info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))  # reproducible bytes
            info.compress_type = zipfile.ZIP_STORED
            archive.writestr(info, bytes(payload))
    return buffer.getvalue()


# --------------------------------------------------------------------------------------------------
# Building the metadata (needs the [mobile] extra)
# --------------------------------------------------------------------------------------------------


def _import_mediapipe_schema():
    """MediaPipe's generated metadata schema modules and ``flatbuffers``, or MissingExtraError."""
    try:
        import flatbuffers
        from mediapipe.tasks.metadata import image_segmenter_metadata_schema_py_generated as seg_fb
        from mediapipe.tasks.metadata import metadata_schema_py_generated as meta_fb
    except ImportError:
        raise MissingExtraError("mobile", "hairseg-edge package (MediaPipe metadata)") from None
    return flatbuffers, meta_fb, seg_fb


def mediapipe_version() -> str:
    try:
        import mediapipe
    except ImportError:
        raise MissingExtraError("mobile", "hairseg-edge package (MediaPipe metadata)") from None
    return str(getattr(mediapipe, "__version__", "unknown"))


def normalization_for(model: ModelIO) -> tuple[tuple[float, ...], tuple[float, ...]] | None:
    """``(mean, std)`` MediaPipe must apply to the pixels, or None when it must apply nothing.

    A float hairseg model takes the raw values 0..255 (its Rescaling layer is inside), so the
    normalisation is the identity; uint8 input takes the pixels as they are and has none.
    """
    return ((0.0,), (1.0,)) if model.input.dtype == "float32" else None


def build_metadata(model: ModelIO, contract: Contract, *, name: str = "hairseg-edge hair segmenter",
                   description: str | None = None) -> bytes:
    """The ``TFLITE_METADATA`` FlatBuffer for a hairseg model, built with MediaPipe's schema."""
    flatbuffers, meta_fb, seg_fb = _import_mediapipe_schema()
    size = model.input_size

    # Input: an RGB image of the model's size, raw 0..255 values.
    image_props = meta_fb.ImagePropertiesT()
    image_props.colorSpace = meta_fb.ColorSpaceType.RGB
    image_props.defaultSize = meta_fb.ImageSizeT()
    image_props.defaultSize.width = size
    image_props.defaultSize.height = size
    input_content = meta_fb.ContentT()
    input_content.contentPropertiesType = meta_fb.ContentProperties.ImageProperties
    input_content.contentProperties = image_props
    input_md = meta_fb.TensorMetadataT()
    input_md.name = INPUT_NAME
    input_md.description = (
        f"RGB image, {size}x{size}, raw values 0..255 ({model.input.dtype}). hairseg-edge letterboxes "
        "(keeps the aspect ratio, pads with black); MediaPipe stretches, which is the same for a "
        "square image. Normalisation is inside the model.")
    input_md.content = input_content
    input_stats = meta_fb.StatsT()
    input_stats.min = [0.0]
    input_stats.max = [255.0]
    input_md.stats = input_stats
    normalization = normalization_for(model)
    if normalization is not None:
        norm = meta_fb.NormalizationOptionsT()
        norm.mean, norm.std = list(normalization[0]), list(normalization[1])
        unit = meta_fb.ProcessUnitT()
        unit.optionsType = meta_fb.ProcessUnitOptions.NormalizationOptions
        unit.options = norm
        input_md.processUnits = [unit]

    # Output: one grayscale probability map; dimensions 1..2 of [1, H, W, 1] hold the image.
    mask_props = meta_fb.ImagePropertiesT()
    mask_props.colorSpace = meta_fb.ColorSpaceType.GRAYSCALE
    output_content = meta_fb.ContentT()
    output_content.contentPropertiesType = meta_fb.ContentProperties.ImageProperties
    output_content.contentProperties = mask_props
    output_content.range = meta_fb.ValueRangeT()
    output_content.range.min = 1
    output_content.range.max = 2
    labels_file = meta_fb.AssociatedFileT()
    labels_file.name = LABELS_FILE_NAME
    labels_file.description = ("Label of output channel 0 (hair), then of everything else. MediaPipe's "
                               "category mask is 0 for hair and 255 for background.")
    labels_file.type = meta_fb.AssociatedFileType.TENSOR_AXIS_LABELS
    output_md = meta_fb.TensorMetadataT()
    output_md.name = OUTPUT_NAME
    output_md.description = (
        f"Hair probability per pixel in [0, 1] (sigmoid applied); hair where > {contract.threshold}.")
    output_md.content = output_content
    output_stats = meta_fb.StatsT()
    output_stats.min = [0.0]
    output_stats.max = [1.0]
    output_md.stats = output_stats
    output_md.associatedFiles = [labels_file]

    # Segmenter options: the output is already a probability.
    options = seg_fb.ImageSegmenterOptionsT()
    options.activation = seg_fb.Activation.NONE
    options.minParserVersion = SEGMENTER_OPTIONS_MIN_PARSER_VERSION
    builder = flatbuffers.Builder(0)
    builder.Finish(options.Pack(builder), SEGMENTER_OPTIONS_FILE_IDENTIFIER)
    segmenter_md = meta_fb.CustomMetadataT()
    segmenter_md.name = SEGMENTER_METADATA_NAME
    segmenter_md.data = np.frombuffer(bytes(builder.Output()), dtype=np.uint8)

    subgraph = meta_fb.SubGraphMetadataT()
    subgraph.name = "ImageSegmenter"
    subgraph.description = "Hair segmentation: one hair-probability channel per pixel."
    subgraph.inputTensorMetadata = [input_md]
    subgraph.outputTensorMetadata = [output_md]
    subgraph.customMetadata = [segmenter_md]

    metadata = meta_fb.ModelMetadataT()
    metadata.name = name
    metadata.description = description or (
        f"Hair segmentation from hairseg-edge (preprocessing contract v{contract.version}): feed an RGB "
        f"image; the output is the probability that each pixel is hair; threshold {contract.threshold}.")
    metadata.version = f"hairseg-edge {__version__}"
    metadata.author = "hairseg-edge"
    metadata.subgraphMetadata = [subgraph]
    metadata.minParserVersion = METADATA_MIN_PARSER_VERSION

    builder = flatbuffers.Builder(0)
    builder.Finish(metadata.Pack(builder), METADATA_FILE_IDENTIFIER)
    return bytes(builder.Output())


def labels_file_bytes() -> bytes:
    return ("\n".join(LABELS) + "\n").encode("utf-8")


def package_bytes(model_bytes: bytes, path: str | os.PathLike[str] | None = None) -> tuple[bytes, ModelIO]:
    """A MediaPipe-ready copy of a hairseg model, in memory, and the model's checked I/O.

    Any earlier ``TFLITE_METADATA`` and packed files are replaced (packaging twice gives the same bytes);
    every other metadata entry, the contract included, and the whole graph are kept as they are.
    """
    io_spec = model_io(model_bytes, path)
    contract = read_contract(model_bytes)
    if contract is None:
        raise InputError("has no hairseg contract metadata ('hairseg_contract'): not a hairseg-edge "
                         "model, or exported by a tool that dropped it", path)
    try:
        contract.check_compatible()
    except ValueError as exc:
        raise InputError(str(exc), path) from None
    if contract.input_size != io_spec.input_size:
        raise InputError(f"contract says input size {contract.input_size}, the model's input is "
                         f"{io_spec.input_size}", path)
    metadata = build_metadata(io_spec, contract)
    # Files packed by an earlier packaging are dropped and written again below, so the file never
    # holds two label archives and packaging twice gives the same bytes.
    archive_start, _ = appended_archive(model_bytes)
    bare = with_metadata(model_bytes[:archive_start], {MEDIAPIPE_METADATA_NAME: metadata})
    return append_associated_files(bare, {LABELS_FILE_NAME: labels_file_bytes()}), io_spec


# --------------------------------------------------------------------------------------------------
# Proof: the packaged bytes in LiteRT and in MediaPipe's ImageSegmenter give the same probabilities
# --------------------------------------------------------------------------------------------------


def _probe_image(size: int) -> np.ndarray:
    """A deterministic ``size x size`` RGB test card: smooth gradients plus dark and bright blobs,
    so a hair model produces both low and high probabilities on it."""
    y, x = np.mgrid[0:size, 0:size].astype(np.float32) / max(1, size - 1)
    r = 255 * (0.5 + 0.5 * np.sin(6.0 * x + 1.0))
    g = 255 * y
    b = 255 * (0.5 + 0.5 * np.cos(5.0 * (x + y)))
    img = np.stack([r, g, b], axis=-1)
    dark = ((x - 0.35) ** 2 + (y - 0.3) ** 2) < 0.05
    img[dark] = (30, 22, 18)
    return np.clip(img, 0, 255).astype(np.uint8)


def _litert_probability(model_path: str | os.PathLike[str], model_image: np.ndarray) -> np.ndarray:
    """hairseg-edge's own runtime on a prepared model-size image: the probabilities MediaPipe must give."""
    from .runtime import Segmenter

    with Segmenter(model_path, adapter="hairseg") as segmenter:
        return segmenter.predict_input(model_image)


def mediapipe_confidence(model_path: str | os.PathLike[str], rgb: np.ndarray) -> tuple[np.ndarray,
                                                                                          np.ndarray,
                                                                                          list[str]]:
    """Run MediaPipe Tasks' ImageSegmenter (CPU) on an RGB uint8 image.

    Returns ``(confidence mask 0 as float32 HxW, category mask as uint8 HxW, the model's labels)``.
    """
    try:
        import mediapipe as mp
        from mediapipe.tasks.python import BaseOptions, vision
    except ImportError:
        raise MissingExtraError("mobile", "running a model in MediaPipe") from None
    options = vision.ImageSegmenterOptions(
        base_options=BaseOptions(model_asset_path=os.fspath(model_path),
                                 delegate=BaseOptions.Delegate.CPU),
        running_mode=vision.RunningMode.IMAGE,
        output_confidence_masks=True,
        output_category_mask=True,
    )
    image = mp.Image(image_format=mp.ImageFormat.SRGB, data=np.ascontiguousarray(rgb))
    with vision.ImageSegmenter.create_from_options(options) as segmenter:
        result = segmenter.segment(image)
        labels = list(segmenter.labels)
    confidence = np.asarray(result.confidence_masks[0].numpy_view(), dtype=np.float32).copy()
    category = np.asarray(result.category_mask.numpy_view(), dtype=np.uint8).copy()
    return confidence.reshape(confidence.shape[:2]), category.reshape(category.shape[:2]), labels


def verify_package(packaged_path: str | os.PathLike[str], io_spec: ModelIO,
                   tolerance: float = VERIFY_TOLERANCE) -> float:
    """Load a packaged model in MediaPipe's ImageSegmenter and check it against LiteRT; return the
    largest probability difference. Raises CheckFailed when MediaPipe rejects the file, reads the
    wrong labels, or computes different probabilities (wrong normalisation or dequantisation).

    The probe image has the model's own input size, so MediaPipe's resize is the identity and the
    comparison sees only how MediaPipe fed the model and read its output.
    """
    probe = _probe_image(io_spec.input_size)
    expected = _litert_probability(packaged_path, probe)
    try:
        confidence, category, labels = mediapipe_confidence(packaged_path, probe)
    except (RuntimeError, ValueError, FileNotFoundError) as exc:  # MediaPipe's load/run errors
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckFailed(f"MediaPipe ImageSegmenter rejected the packaged model: {first_line}") from None
    if tuple(labels) != LABELS:
        raise CheckFailed(f"MediaPipe read labels {labels}, expected {list(LABELS)}")
    if confidence.shape != expected.shape:
        raise CheckFailed(f"MediaPipe's confidence mask is {confidence.shape}, LiteRT's output "
                          f"{expected.shape}")
    max_diff = float(np.max(np.abs(confidence - expected)))
    if max_diff > tolerance:
        raise CheckFailed(f"MediaPipe's hair probability differs from LiteRT's by up to {max_diff:.4f} "
                          f"(allowed {tolerance}): the metadata does not describe the model")
    # One-channel convention: category 0 exactly where the probability is above 0.5.
    hair = confidence > 0.5
    if not np.array_equal(category == 0, hair):
        raise CheckFailed("MediaPipe's category mask does not mark hair (value 0) where the "
                          "confidence is above 0.5")
    return max_diff


# --------------------------------------------------------------------------------------------------
# The command's library function
# --------------------------------------------------------------------------------------------------


def default_output_path(model_path: str | os.PathLike[str]) -> Path:
    """``<input stem>.task-ready.tflite`` next to the input."""
    model_path = Path(model_path)
    return model_path.with_name(model_path.stem + DEFAULT_SUFFIX)


def package_model(model_path: str | os.PathLike[str], out: str | os.PathLike[str] | None = None, *,
                  force: bool = False, verify: bool = True) -> PackageResult:
    """Write a copy of a hairseg .tflite that MediaPipe Tasks' ImageSegmenter loads as it is.

    ``out`` defaults to :func:`default_output_path`; an existing file is kept unless ``force``.
    With ``verify`` (the default) the result is loaded in MediaPipe and must give LiteRT's
    probabilities before it is written (CheckFailed otherwise; nothing is written).
    Raises MissingExtraError without the ``[mobile]`` extra, InputError for an unusable model.
    """
    version = mediapipe_version()  # fail fast, with the install hint, before reading anything
    source = Path(model_path)
    target = Path(out) if out is not None else default_output_path(source)
    if target.exists() and not force:
        raise InputError("already exists (pass --force to overwrite)", target)
    if target.resolve() == source.resolve():
        raise InputError("--out must differ from the input model (it would be replaced)", target)
    data, _ = load_model_bytes(source)
    packaged, io_spec = package_bytes(data, source)

    max_diff = None
    if verify:
        # MediaPipe loads models from files: check the exact bytes from a private temporary file
        # beside the target, and only then move them into place.
        import tempfile

        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{target.stem}.", suffix=".verify.tflite",
                                        dir=target.parent)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(packaged)
            max_diff = verify_package(tmp_name, io_spec)
        finally:
            Path(tmp_name).unlink(missing_ok=True)
    written = write_bytes(target, packaged, force=force)
    return PackageResult(
        source=source,
        output=written,
        io=io_spec,
        normalization=normalization_for(io_spec),
        labels=LABELS,
        size_bytes=len(packaged),
        verified=verify,
        max_abs_diff=max_diff,
        mediapipe_version=version,
    )
