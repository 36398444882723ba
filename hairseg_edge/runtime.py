"""The device runtime: load a .tflite model with whatever TFLite backend is installed and segment hair.

Backends, first found wins: ``ai_edge_litert`` (LiteRT, the supported one), ``tflite_runtime`` (the
legacy wheel), then ``tensorflow.lite`` (a last resort, imported only when the first two are missing,
so a device install never pays for TensorFlow).

:class:`Segmenter` applies the right adapter (:mod:`hairseg_edge.adapters`): hairseg models follow the
preprocessing contract (:mod:`hairseg_edge.contract`) and carry it in their metadata, which is checked
when loading; the public peer models run through their own recipes. Input quantization and output
dequantization come from the model's own parameters, so uint8, int8 and float models all take the
same RGB frames::

    with Segmenter("hairseg_int8.tflite", threads=2) as seg:
        result = seg.segment(rgb)          # any size RGB uint8
        result.probability, result.mask   # at the image's size
"""

from __future__ import annotations

import contextlib
import operator
import os
import sys
import tempfile
import time
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from . import contract, tflite_meta
from .adapters import Adapter, TensorSpec, detect_adapter, get_adapter
from .contract import Contract
from .errors import HairsegError, InputError, UnverifiedModelWarning

if TYPE_CHECKING:
    from .roi import RoiConfig

#: ``Segmenter(roi=...)`` when a library caller does not say: one pass, so code that measures the model
#: itself (export verification, benchmarks) is unchanged. The commands a user segments with (`run`,
#: `eval`) default to "auto" (``benchmarks/results/roi.md``).
DEFAULT_ROI = "off"

#: Backend names in the order they are tried.
BACKENDS = ("ai_edge_litert", "tflite_runtime", "tensorflow")

# Native log lines that only say the default delegate was applied: dropped from the terminal.
_NOISE = (
    "INFO: Created TensorFlow Lite XNNPACK delegate for CPU.",
    "INFO: Initialized TensorFlow Lite runtime.",
)


class BackendUnavailable(HairsegError):
    """No TFLite interpreter can be imported (exit code 2)."""

    exit_code = 2


@dataclass(frozen=True)
class Backend:
    name: str
    interpreter_class: type
    version: str


def _import_backend(name: str) -> Backend:
    if name == "ai_edge_litert":
        from ai_edge_litert.interpreter import Interpreter

        return Backend(name, Interpreter, _dist_version("ai-edge-litert"))
    if name == "tflite_runtime":
        from tflite_runtime.interpreter import Interpreter

        return Backend(name, Interpreter, _dist_version("tflite-runtime"))
    if name == "tensorflow":
        import tensorflow as tf

        return Backend(name, tf.lite.Interpreter, str(tf.__version__))
    raise InputError(f"unknown backend {name!r}; choose one of: {', '.join(BACKENDS)}")


def _dist_version(dist: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return "unknown"


_backend_cache: dict[str | None, Backend] = {}


def find_backend(name: str | None = None) -> Backend:
    """The named backend, or the first importable one of :data:`BACKENDS`.

    ``tensorflow`` is only imported when neither LiteRT nor tflite_runtime can be. An import that
    fails for any reason (``tflite_runtime`` 2.14 breaks on numpy 2 with an AttributeError) counts
    as missing, and the reasons are listed when nothing works.
    """
    if name in _backend_cache:
        return _backend_cache[name]
    candidates = BACKENDS if name is None else (name,)
    reasons = []
    for candidate in candidates:
        try:
            backend = _import_backend(candidate)
        except InputError:
            raise
        except Exception as exc:  # ImportError, or a broken wheel failing at import
            reasons.append(f"{candidate}: {type(exc).__name__}: {exc}".splitlines()[0])
            continue
        _backend_cache[name] = backend
        return backend
    raise BackendUnavailable(
        "no TFLite interpreter could be imported (pip install ai-edge-litert); tried "
        + "; ".join(reasons)
    )


#: Set (by ``hairseg-edge -v``) to pass native libraries' log lines through instead of hiding them.
VERBOSE_ENV = "HAIRSEG_VERBOSE"


def native_verbose() -> bool:
    """Whether the user asked to see native libraries' chatter (``hairseg-edge -v``)."""
    return os.environ.get(VERBOSE_ENV, "") not in ("", "0")


@contextlib.contextmanager
def native_stderr() -> Iterator[list[str]]:
    """Capture what native code writes to file descriptor 2 while loading a model.

    LiteRT logs "Created TensorFlow Lite XNNPACK delegate" on every load, and explains failures
    (unresolved custom ops, bad flatbuffers) only there. The captured lines are handed to the
    caller: noise is dropped, anything else is echoed back to stderr or used in an error message.
    """
    lines: list[str] = []
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no real fd 2 (embedded interpreters): nothing to capture
        yield lines
        return
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield lines
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            text = sink.read().decode("utf-8", errors="replace")
            lines.extend(line for line in text.splitlines() if line.strip())


def _echo_unexpected(lines: Sequence[str]) -> None:
    for line in lines:
        if line.strip() not in _NOISE:
            print(line, file=sys.stderr)


#: The name it had while private: branches written before it became public still import it.
_native_stderr = native_stderr


def _reason_from_native(lines: Sequence[str], exc: BaseException) -> str:
    """The most useful one-line reason for a failed load."""
    errors = [ln.strip() for ln in lines if ln.strip().startswith("ERROR:")]
    reason = errors[0][len("ERROR:"):].strip() if errors else str(exc).strip().splitlines()[0]
    return reason.rstrip(".")


@dataclass
class LoadedModel:
    """A validated .tflite file with an allocated interpreter (the part ``bench`` needs)."""

    path: Path
    size_bytes: int
    interpreter: Any
    backend: Backend
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    metadata: dict[str, bytes]
    load_ms: float


def load_model(model: str | os.PathLike[str], *, threads: int = 1,
               backend: str | None = None) -> LoadedModel:
    """Read, validate and load a .tflite file; every problem is an InputError naming the file."""
    try:
        if isinstance(threads, bool):
            raise TypeError
        threads = operator.index(threads)  # int or numpy integer, never 1.5 or "2"
    except TypeError:
        raise InputError(f"threads must be a positive integer, got {threads!r}") from None
    if not 1 <= threads <= MAX_THREADS:
        raise InputError(f"--threads must be between 1 and {MAX_THREADS}, got {threads!r}")
    path = Path(model)
    if path.is_dir():
        raise InputError("is a folder, expected a .tflite file", path)
    started = time.perf_counter()
    data, _ = tflite_meta.load_model_bytes(path)
    tflite_meta.check_tflite_bytes(data, path)
    metadata = tflite_meta.read_metadata_bytes(data, path)  # walks the FlatBuffer: catches truncation
    chosen = find_backend(backend)
    with native_stderr() as native:
        try:
            interpreter = chosen.interpreter_class(model_content=data, num_threads=threads)
            _resize_dynamic_batch(interpreter)
            interpreter.allocate_tensors()
        except Exception as exc:  # ValueError / RuntimeError from the native loader
            failure: BaseException | None = exc
        else:
            failure = None
    if failure is not None:
        reason = _reason_from_native(native, failure)
        if "not a valid Flatbuffer" in reason or "verif" in reason.lower():
            reason = f"corrupt or truncated .tflite file ({reason})"
        raise InputError(f"cannot load the model: {reason}", path)
    _echo_unexpected(native)
    load_ms = (time.perf_counter() - started) * 1000.0
    inputs = tuple(TensorSpec.from_details(d) for d in interpreter.get_input_details())
    outputs = tuple(TensorSpec.from_details(d) for d in interpreter.get_output_details())
    return LoadedModel(path, len(data), interpreter, chosen, inputs, outputs, metadata, load_ms)


def _resize_dynamic_batch(interpreter: Any) -> None:
    """Fix a dynamic batch dimension (-1) to 1 so tensors can be allocated."""
    for detail in interpreter.get_input_details():
        signature = detail.get("shape_signature")
        if signature is not None and len(signature) and int(signature[0]) == -1:
            shape = [1] + [int(d) for d in detail["shape"][1:]]
            interpreter.resize_tensor_input(detail["index"], shape, strict=False)


def quantize_input(values: np.ndarray, spec: TensorSpec) -> np.ndarray:
    """Real input values -> the tensor's dtype, with the model's own scale and zero point."""
    dtype = np.dtype(spec.dtype)
    if dtype.kind == "f":
        return np.asarray(values, dtype=dtype)
    if dtype.kind not in "iu":
        raise InputError(f"input tensor {spec.name!r} has unsupported dtype {spec.dtype}")
    values = np.asarray(values)
    # A uint8 model whose input scale is 1 and zero point 0 takes raw pixels as they are.
    identity = not spec.quantized or (spec.scale == 1.0 and spec.zero_point == 0)
    if identity and values.dtype == dtype:
        return values
    info = np.iinfo(dtype)
    real = values.astype(np.float32)
    q = real if identity else real / np.float32(spec.scale) + np.float32(spec.zero_point)
    return np.clip(np.rint(q), info.min, info.max).astype(dtype)


def dequantize_output(values: np.ndarray, spec: TensorSpec) -> np.ndarray:
    """A uint8/int8/int16 output -> real float32 values; other tensors are returned unchanged."""
    if spec.quantized and np.dtype(spec.dtype).kind in "iu":
        return dequantize(values, spec.scale, spec.zero_point)
    return values


def dequantize(values: np.ndarray, scale: float, zero_point: float) -> np.ndarray:
    """Integers -> float32 ``(values - zero_point) * scale``."""
    real = values.astype(np.float32)  # one new array, then in place (no full-size temporaries)
    real -= np.float32(zero_point)
    real *= np.float32(scale)
    return real


def mean_with_mirror(output: np.ndarray, mirrored: np.ndarray) -> np.ndarray:
    """The mean of an ``[N, H, W, C]`` output and the output for the mirror image, mirrored back.

    Integer outputs stay integers of their dtype, rounded half up: with an integer threshold ``q0``,
    ``round_half_up((a + b) / 2) > q0`` exactly when ``(a + b) / 2 > q0``, so the mask is the one of
    the exact mean.
    """
    back = mirrored[:, :, ::-1]
    if np.issubdtype(output.dtype, np.integer):
        total = output.astype(np.int32) + back
        return ((total + 1) >> 1).astype(output.dtype)
    return (output + back) * output.dtype.type(0.5)


class Segmentation:
    """A hair probability map and its binary mask, both at the image's resolution.

    ``mask`` is H x W bool (probability > threshold); ``probability`` H x W float32 in [0, 1]. For a
    quantized model the map is kept as the model's integers (``integers``, resized as integers by
    :func:`contract.unletterbox_integers`) and turned into float32 on the first read of
    ``probability``: a camera loop that needs only the mask never makes the full-size float map,
    whose memory traffic also slowed the next frame's inference (0.3 ms of a 2.4 ms frame at
    256x256 on a 2-core x86; benchmarks/README).
    """

    __slots__ = ("mask", "integers", "_scale", "_zero_point", "_probability")

    def __init__(self, probability: np.ndarray | None = None, mask: np.ndarray | None = None, *,
                 integers: np.ndarray | None = None, scale: float = 1.0, zero_point: int = 0):
        if mask is None or (probability is None) == (integers is None):
            raise ValueError("a Segmentation needs a mask and either probability or integers")
        self.mask = mask
        self.integers = integers
        self._scale = scale
        self._zero_point = zero_point
        self._probability = probability

    @property
    def probability(self) -> np.ndarray:
        if self._probability is None:
            real = dequantize(self.integers, self._scale, self._zero_point)
            self._probability = np.clip(real, 0.0, 1.0, out=real)
        return self._probability

    def __repr__(self) -> str:
        h, w = self.mask.shape[:2]
        return f"Segmentation({w}x{h}, hair {float(np.mean(self.mask)):.1%})"


#: The most interpreter threads accepted: LiteRT segfaults creating a pool of 100,000 threads, and
#: no CPU this runs on has more than a few dozen cores to use.
MAX_THREADS = 64

#: Adapters whose detection rests on tensor shapes any one-class segmenter shares (a person, selfie
#: or sky model): a model detected as one of them without metadata is run, with a warning.
SHAPE_ONLY_ADAPTERS = ("hairseg", "community-mobile")


def unverified_model_message(adapter_name: str) -> str:
    """The one-line warning for a model accepted from its tensor shapes alone."""
    return (f"not known to be a hair model: no hairseg metadata, accepted from its tensor shapes "
            f"alone; a person or selfie segmenter has the same shapes and its masks are not hair. "
            f"Pass --adapter {adapter_name} if it is a hair model")


class Segmenter:
    """Hair segmentation with any supported .tflite model, on the CPU, with no TensorFlow.

    Args:
        model: path of a .tflite file.
        threads: interpreter threads (XNNPACK), >= 1.
        adapter: ``"hairseg"`` or a peer adapter name; None detects it from the model (a model with
            the hairseg contract in its metadata is always ``hairseg``).
        backend: force one of :data:`BACKENDS` (default: the first importable).
        flip_tta: test-time augmentation: also run the mirror image of every frame and average the two
            outputs (mirrored back). Twice the inference time for a little more accuracy (the bundled
            model: +0.4 point IoU on CelebAMask-HQ faces); for still photos more than for live video.
        roi: ``"auto"`` finds the head(s) with a first pass on the whole frame and segments
            a full-resolution crop of each (:mod:`hairseg_edge.roi`): small heads, group photos and
            high-resolution photos gain, face-filling photos keep the single pass; ``"off"`` is one
            pass on the whole frame (the library's default; the CLI defaults to auto). :meth:`track` is the video form (one inference per tracked frame).
        max_people: with ``roi="auto"``, at most this many regions (default 2).
        face_detector: with ``roi="auto"``, the face detector the region stage falls back on when the
            hair pass finds no head: None = the bundled BlazeFace short range, loaded when first needed
            (an install without it runs without the fallback); ``"off"`` = no fallback; a path = that
            .tflite, loaded now (a bad file is an InputError naming it).

    Raises:
        InputError: the file is missing, not a .tflite, truncated, fails to load, its output is not
            a hair map, its contract is not one this runtime speaks, or the adapter does not fit.
    """

    def __init__(self, model: str | os.PathLike[str], *, threads: int = 1,
                 adapter: str | None = None, backend: str | None = None, flip_tta: bool = False,
                 roi: str = DEFAULT_ROI, max_people: int | None = None,
                 face_detector: str | os.PathLike[str] | None = None, roi_config: RoiConfig | None = None):
        from dataclasses import replace

        from .roi import ROI_MODES, RegionStage, with_max_people

        if roi not in ROI_MODES:
            raise InputError(f"roi must be one of {', '.join(ROI_MODES)}, got {roi!r}")
        roi_config = with_max_people(roi_config, max_people)  # checks max_people before the model loads
        detector = None
        if isinstance(face_detector, str) and face_detector == "off":
            roi_config = replace(roi_config, face_fallback=False)
        elif face_detector is not None:  # checked even with roi="off": a bad file given is an error
            from .face_detector import FaceDetector

            detector = FaceDetector(face_detector, threads=threads)  # a bad file fails before any work
        loaded = load_model(model, threads=threads, backend=backend)
        self._loaded = loaded
        self.path: Path = loaded.path
        self.threads = threads
        self.backend_name: str = loaded.backend.name
        self.load_ms: float = loaded.load_ms
        self.contract: Contract | None = _contract_from(loaded)
        chosen = self._choose_adapter(adapter)
        #: Why this model's output is not known to be hair (None when its metadata or an explicit
        #: adapter says so); also issued as an UnverifiedModelWarning.
        self.unverified: str | None = None
        if adapter is None and self.contract is None and chosen.name in SHAPE_ONLY_ADAPTERS:
            self.unverified = unverified_model_message(chosen.name)
            warnings.warn(UnverifiedModelWarning(f"{self.path}: {self.unverified}"), stacklevel=2)
        self._adapter: Adapter = chosen
        self.adapter_name: str = chosen.name
        self.input_hw: tuple[int, int] = chosen.input_hw(loaded.inputs)
        self.input_size: int = max(self.input_hw)
        self.input_dtype = np.dtype(loaded.inputs[0].dtype)
        self.threshold: float = self.contract.threshold if self.contract else contract.THRESHOLD
        if self.contract is not None and self.contract.input_size != self.input_size:
            raise InputError(
                f"model contract says input size {self.contract.input_size}, "
                f"its input tensor is {self.input_size}", self.path)
        self._interpreter = loaded.interpreter
        self._input = loaded.inputs[0]
        self._outputs = loaded.outputs
        self.flip_tta = bool(flip_tta)
        side = tuple(loaded.inputs[0].shape[1:3])
        not_maps = [spec for spec in loaded.outputs if len(spec.shape) != 4 or tuple(spec.shape[1:3]) != side]
        #: Whether the outputs are maps at the input's size, which mirror test-time augmentation needs.
        self.mirrorable = not not_maps
        if self.flip_tta and not_maps:
            spec = not_maps[0]
            raise InputError(f"--flip-tta needs outputs that are maps at the input's size "
                             f"{side[1]}x{side[0]}; output {spec.name!r} is {list(spec.shape)}", self.path)
        # Contract models whose map is quantized are finished in integers (see finish()).
        out = loaded.outputs[0]
        integer_map = (chosen.follows_contract and len(loaded.outputs) == 1 and out.quantized
                       and not out.per_channel and np.dtype(out.dtype) in contract.INTEGER_MAP_DTYPES)
        self._integer_threshold: int | None = (
            contract.quantized_threshold(self.threshold, out.scale, out.zero_point) if integer_map else None)
        self.roi: str = roi
        self.region_stage: RegionStage | None = (
            RegionStage(self, roi_config, detector) if roi == "auto" else None)

    def _choose_adapter(self, name: str | None) -> Adapter:
        loaded = self._loaded
        if name is not None:
            chosen = get_adapter(name)
        elif self.contract is not None:
            chosen = get_adapter("hairseg")
        else:
            detected = detect_adapter(loaded.inputs, loaded.outputs)
            if detected is None:
                why = get_adapter("hairseg").mismatch(loaded.inputs, loaded.outputs)
                raise InputError(
                    f"not a hair segmentation model: {why}; if it is a peer model, pass "
                    "--adapter (see `hairseg-edge info` for its tensors)", self.path)
            chosen = detected
        why = chosen.mismatch(loaded.inputs, loaded.outputs)
        if why is not None:
            raise InputError(f"model does not fit the {chosen.name!r} adapter: {why}", self.path)
        return chosen

    # -- the three steps of segment(), public so callers can time or batch them -------------------

    def prepare(self, rgb: np.ndarray) -> tuple[np.ndarray, Any]:
        """Any-size RGB uint8 -> (the ``H x W x 3`` uint8 model image, context for postprocess)."""
        return self._adapter.prepare(rgb, self.input_hw)

    def infer(self, model_input: np.ndarray, *, flip: bool | None = None) -> list[np.ndarray]:
        """A prepared ``H x W x 3`` uint8 model image -> the model's raw outputs, in their own dtypes.
        ``flip`` overrides ``flip_tta`` for this call (the region stage mirrors its crops only)."""
        self._check_open()
        image = np.asarray(model_input)
        if image.shape[:2] != self.input_hw:
            raise InputError(f"model input must be {self.input_hw[0]}x{self.input_hw[1]}, "
                             f"got {image.shape[1]}x{image.shape[0]} (call prepare() first)")
        values = self._adapter.encode(image, self._input)
        tensor = quantize_input(values, self._input)[np.newaxis]
        outputs = self._invoke(tensor)
        if self.flip_tta if flip is None else flip:
            mirrored = self._invoke(np.ascontiguousarray(tensor[:, :, ::-1]))
            outputs = [mean_with_mirror(a, b) for a, b in zip(outputs, mirrored)]
        return outputs

    def _invoke(self, tensor: np.ndarray) -> list[np.ndarray]:
        self._interpreter.set_tensor(self._input.index, tensor)
        self._interpreter.invoke()
        return [self._interpreter.get_tensor(spec.index) for spec in self._outputs]

    def predict_input(self, model_input: np.ndarray) -> np.ndarray:
        """A prepared ``H x W x 3`` uint8 model image -> ``H x W`` float32 hair probability."""
        return self._decode(self.infer(model_input))

    def _decode(self, outputs: Sequence[np.ndarray]) -> np.ndarray:
        real = [dequantize_output(values, spec) for values, spec in zip(outputs, self._outputs)]
        return np.asarray(self._adapter.decode(real), dtype=np.float32)

    def postprocess(self, prob: np.ndarray, context: Any) -> Segmentation:
        """Probability at the model's size -> :class:`Segmentation` at the image's size."""
        full = np.asarray(self._adapter.postprocess(prob, context), dtype=np.float32)
        return Segmentation(probability=full, mask=contract.binarize(full, self.threshold))

    def finish(self, outputs: Sequence[np.ndarray], context: Any) -> Segmentation:
        """Raw outputs (:meth:`infer`) -> :class:`Segmentation` at the image's size.

        A contract model with a quantized map stays in integers (the mask is one comparison);
        anything else is dequantized, decoded and resized as probabilities (:meth:`postprocess`).
        """
        if self._integer_threshold is None:
            return self.postprocess(self._decode(outputs), context)
        spec = self._outputs[0]
        full = contract.unletterbox_integers(outputs[0], context)
        return Segmentation(mask=full > self._integer_threshold, integers=full, scale=spec.scale,
                            zero_point=spec.zero_point)

    def segment(self, rgb: np.ndarray) -> Segmentation:
        """Hair probability and mask for an RGB uint8 image of any size and aspect ratio.

        With ``roi="auto"`` through the region stage (locate, then crops at full resolution)."""
        if self.region_stage is not None:
            return self.region_stage.segment(rgb)
        return self.segment_whole(rgb)

    def segment_whole(self, rgb: np.ndarray, *, flip: bool | None = None) -> Segmentation:
        """One pass of the model on the whole image, whatever ``roi`` says (``flip``: as in :meth:`infer`)."""
        model_image, context = self.prepare(rgb)
        return self.finish(self.infer(model_image, flip=flip), context)

    def track(self, rgb: np.ndarray) -> Segmentation:
        """:meth:`segment` for consecutive video frames: with ``roi="auto"`` the previous frame's
        regions seed this one, so a tracked frame costs one inference (call :meth:`reset_tracking`
        between streams)."""
        if self.region_stage is not None:
            return self.region_stage.track(rgb)
        return self.segment_whole(rgb)

    def reset_tracking(self) -> None:
        """Forget the regions :meth:`track` carried (a new stream starts)."""
        if self.region_stage is not None:
            self.region_stage.reset()

    # -- lifecycle -------------------------------------------------------------------------------

    @property
    def size_bytes(self) -> int:
        """Size of the model file."""
        return self._loaded.size_bytes

    @property
    def inputs(self) -> tuple[TensorSpec, ...]:
        return self._loaded.inputs

    @property
    def outputs(self) -> tuple[TensorSpec, ...]:
        return self._loaded.outputs

    def _check_open(self) -> None:
        if self._interpreter is None:
            raise ValueError("Segmenter is closed")

    def close(self) -> None:
        """Release the interpreter (and the model's memory)."""
        self._interpreter = None
        self._loaded.interpreter = None

    def __enter__(self) -> Segmenter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return (f"Segmenter({str(self.path)!r}, adapter={self.adapter_name!r}, "
                f"input={self.input_hw[0]}x{self.input_hw[1]} {self.input_dtype.name}, "
                f"threads={self.threads}, backend={self.backend_name!r}"
                + (", flip_tta=True" if self.flip_tta else "") + f", roi={self.roi!r})")


def _contract_from(loaded: LoadedModel) -> Contract | None:
    """The model's embedded contract, checked against this runtime; None when it has none."""
    payload = loaded.metadata.get(contract.METADATA_NAME)
    if payload is None:
        return None
    found = tflite_meta.parse_contract(payload, loaded.path)
    try:
        found.check_compatible()
    except ValueError as exc:
        raise InputError(str(exc), loaded.path) from None
    return found
