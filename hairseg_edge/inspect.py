"""What is inside a .tflite file: tensors, quantization, ops, size, metadata, adapter, GPU delegate fit.

:func:`inspect_model` reads the FlatBuffer with LiteRT's generated schema (no TensorFlow), tries to load
the model in the installed runtime, and returns a :class:`ModelInfo` that ``hairseg-edge info`` prints
as tables or JSON.

GPU delegate compatibility. LiteRT's model analyzer (``ai_edge_litert._pywrap_analyzer_wrapper``, the
engine behind ``tf.lite.experimental.Analyzer.analyze(..., gpu_compatibility=True)``) is run and its
"GPU COMPATIBILITY WARNING" lines are parsed. Since TensorFlow 2.19 its per-op check has been a no-op
that reports every model as compatible (tensorflow/tensorflow#77042), so hairseg-edge first asks it
about a probe model holding an op the GPU delegate cannot run: when the analyzer does not object, its
verdict is recorded but not trusted, and the verdict comes from :func:`gpu_delegate_issues`, this
module's own check of every operator against the GPU delegate's documented op support and its main
per-op constraints (fused activations, softmax beta, slice masks, pad shapes, constant reduction axes,
cast types, tensor types). Like the analyzer, it cannot promise the model runs well on a given GPU.
"""

from __future__ import annotations

import os
import re
from collections import Counter
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from . import tflite_meta
from .adapters import TensorSpec, detect_adapter, get_adapter
from .contract import METADATA_NAME
from .errors import InputError
from .face_detector import bundled_summary
from .models import tier_summary

# ------------------------------------------------------------------------------------------------
# Schema helpers
# ------------------------------------------------------------------------------------------------

_TENSOR_TYPE_NAMES = {
    0: "float32", 1: "float16", 2: "int32", 3: "uint8", 4: "int64", 5: "string", 6: "bool",
    7: "int16", 8: "complex64", 9: "int8", 10: "float64", 11: "complex128", 12: "uint64",
    13: "resource", 14: "variant", 15: "uint32", 16: "uint16", 17: "int4", 18: "bfloat16",
    19: "int2", 20: "uint4", 21: "float8_e4m3fn", 22: "float8_e5m2",
}


def _schema():
    try:
        from ai_edge_litert import schema_py_generated
    except ImportError:
        from .runtime import BackendUnavailable

        raise BackendUnavailable(
            "reading a model's structure needs ai-edge-litert's schema: pip install ai-edge-litert"
        ) from None
    return schema_py_generated


@lru_cache(maxsize=1)
def _builtin_names() -> dict[int, str]:
    ops = _schema().BuiltinOperator
    return {v: k for k, v in vars(ops).items() if not k.startswith("_") and isinstance(v, int)}


def _text(value: Any) -> str:
    if value is None:
        return ""
    return value.decode("utf-8", errors="replace") if isinstance(value, bytes) else str(value)


def op_name(opcode: Any) -> str:
    """Builtin name (``CONV_2D``) or custom op name of an ``OperatorCodeT``."""
    code = max(int(opcode.builtinCode), int(opcode.deprecatedBuiltinCode))
    name = _builtin_names().get(code, f"BUILTIN_{code}")
    if name == "CUSTOM":
        return _text(opcode.customCode) or "CUSTOM"
    return name


def _shape(tensor: Any) -> tuple[int, ...]:
    return tuple(int(d) for d in (tensor.shape if tensor.shape is not None else []))


def _tensor_spec(tensor: Any, index: int) -> TensorSpec:
    shape = _shape(tensor)
    signature = tensor.shapeSignature
    if signature is not None and len(signature) == len(shape):
        shape = tuple(int(s) if int(s) < 0 else d for s, d in zip(signature, shape))
    q = tensor.quantization
    scales = [] if q is None or q.scale is None else list(np.asarray(q.scale).ravel())
    zeros = [] if q is None or q.zeroPoint is None else list(np.asarray(q.zeroPoint).ravel())
    return TensorSpec(
        name=_text(tensor.name),
        index=index,
        shape=shape,
        dtype=_TENSOR_TYPE_NAMES.get(int(tensor.type), f"type{int(tensor.type)}"),
        scale=float(scales[0]) if len(scales) == 1 else 0.0,
        zero_point=int(zeros[0]) if len(zeros) == 1 else 0,
        per_channel=len(scales) > 1,
    )


def _is_constant(model: Any, tensor: Any) -> bool:
    index = int(tensor.buffer)
    if index <= 0 or model.buffers is None or index >= len(model.buffers):
        return False
    buf = model.buffers[index]
    return (buf.data is not None and len(buf.data) > 0) or bool(buf.offset and buf.offset > 1)


# ------------------------------------------------------------------------------------------------
# Model statistics
# ------------------------------------------------------------------------------------------------


def _op_macs(name: str, op: Any, tensors: list[Any]) -> int:
    """Multiply-accumulates of the conv/dense ops (what dominates a segmentation network)."""
    def shape(i: int) -> tuple[int, ...]:
        if op.inputs is None or i >= len(op.inputs) or op.inputs[i] < 0:
            return ()
        return _shape(tensors[op.inputs[i]])

    out = _shape(tensors[op.outputs[0]]) if op.outputs is not None and len(op.outputs) else ()
    if any(d < 0 for d in out):
        return 0
    if name == "CONV_2D" and len(shape(1)) == 4 and len(out) == 4:
        _, kh, kw, cin = shape(1)
        return int(np.prod(out, dtype=np.int64)) * kh * kw * cin
    if name == "DEPTHWISE_CONV_2D" and len(shape(1)) == 4 and len(out) == 4:
        _, kh, kw, _ = shape(1)
        return int(np.prod(out, dtype=np.int64)) * kh * kw
    if name == "TRANSPOSE_CONV" and len(shape(1)) == 4 and len(shape(2)) == 4:
        cout, kh, kw, cin = shape(1)
        return int(np.prod(shape(2)[:3], dtype=np.int64)) * cin * kh * kw * cout
    if name == "Convolution2DTransposeBias" and len(shape(1)) == 4 and len(shape(0)) == 4:
        cout, kh, kw, cin = shape(1)
        return int(np.prod(shape(0)[:3], dtype=np.int64)) * cin * kh * kw * cout
    if name == "FULLY_CONNECTED" and len(shape(1)) == 2 and out:
        units, depth = shape(1)
        return int(np.prod(out, dtype=np.int64)) * depth if units else 0
    return 0


# ------------------------------------------------------------------------------------------------
# GPU delegate compatibility
# ------------------------------------------------------------------------------------------------

# Ops the LiteRT GPU delegate implements (builtin names), and the MediaPipe custom ops it carries.
_GPU_BUILTINS = frozenset("""
ABS ADD ADD_N ATAN2 AVERAGE_POOL_2D BATCH_MATMUL CAST CEIL CONCATENATION CONV_2D COS CUMSUM DENSIFY
DEPTH_TO_SPACE DEPTHWISE_CONV_2D DEQUANTIZE DIV DYNAMIC_UPDATE_SLICE ELU EMBEDDING_LOOKUP EQUAL EXP
FLOOR FLOOR_DIV FLOOR_MOD FULLY_CONNECTED GATHER GELU GREATER GREATER_EQUAL HARD_SWISH LEAKY_RELU LESS
LESS_EQUAL LOG LOGICAL_AND LOGISTIC LSTM MAX_POOL_2D MAXIMUM MEAN MINIMUM MIRROR_PAD MUL NEG NOT_EQUAL
ONE_HOT PACK PAD PADV2 POW PRELU QUANTIZE REDUCE_MAX REDUCE_MIN REDUCE_PROD RELU RELU6 RELU_N1_TO_1
RESHAPE RESIZE_BILINEAR RESIZE_NEAREST_NEIGHBOR RSQRT SELECT SELECT_V2 SIGN SIN SLICE SOFTMAX
SPACE_TO_DEPTH SPLIT SPLIT_V SQRT SQUARE SQUARED_DIFFERENCE STABLEHLO_CLAMP STRIDED_SLICE SUB SUM TANH
TILE TRANSPOSE TRANSPOSE_CONV
""".split())
_GPU_CUSTOM_OPS = frozenset({"Convolution2DTransposeBias", "MaxPoolingWithArgmax2D",
                             "MaxUnpooling2D", "Resampler"})
# Tensor types the GPU delegate never handles.
_GPU_BAD_TYPES = frozenset({"int64", "string", "float64", "complex64", "complex128", "uint64",
                            "resource", "variant"})
_SIGN_BIT = 5  # ActivationFunctionType.SIGN_BIT


@dataclass(frozen=True)
class GpuIssue:
    """One operator the GPU delegate cannot take (it would run on the CPU instead)."""

    op_index: int
    op: str
    reason: str
    source: str = "hairseg-edge rules"  # or "LiteRT analyzer"
    subgraph: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {"subgraph": self.subgraph, "op_index": self.op_index, "op": self.op,
                "reason": self.reason, "source": self.source}


def _gpu_op_issue(model: Any, subgraph: Any, name: str, op: Any) -> str | None:
    tensors = subgraph.tensors or []
    ins = [tensors[i] for i in (op.inputs if op.inputs is not None else []) if i >= 0]
    outs = [tensors[i] for i in (op.outputs if op.outputs is not None else []) if i >= 0]
    if name not in _GPU_BUILTINS and name not in _GPU_CUSTOM_OPS:
        kind = "custom op" if name not in _builtin_names().values() else "op"
        return f"{kind} {name} is not supported by the GPU delegate"
    for t in ins + outs:
        dtype = _TENSOR_TYPE_NAMES.get(int(t.type), "?")
        if dtype in _GPU_BAD_TYPES:
            return f"{dtype} tensor {_text(t.name)!r} is not supported by the GPU delegate"
    options = op.builtinOptions
    if getattr(options, "fusedActivationFunction", None) == _SIGN_BIT:
        return "fused SIGN_BIT activation is not supported"
    rank = len(_shape(ins[0])) if ins else 0
    if name == "SOFTMAX" and options is not None and float(options.beta) != 1.0:
        return f"SOFTMAX with beta {options.beta} (only 1 is supported)"
    if name == "STRIDED_SLICE":
        if options is not None and (options.ellipsisMask or options.newAxisMask
                                    or options.shrinkAxisMask):
            return "STRIDED_SLICE with ellipsis/new-axis/shrink-axis masks is not supported"
        if rank not in (3, 4):
            return f"STRIDED_SLICE on a {rank}-D tensor (3-D or 4-D only)"
    if name == "SLICE" and rank not in (3, 4):
        return f"SLICE on a {rank}-D tensor (3-D or 4-D only)"
    if name in ("PAD", "PADV2", "MIRROR_PAD") and len(ins) > 1:
        pads = _shape(ins[1])
        if len(pads) != 2 or pads[0] not in (3, 4) or pads[1] != 2:
            return f"{name} with paddings of shape {list(pads)} (3x2 or 4x2 only)"
        if name == "MIRROR_PAD" and options is not None and int(options.mode) != 0:
            return "MIRROR_PAD in SYMMETRIC mode (REFLECT only)"
    if name in ("MEAN", "SUM", "REDUCE_MAX", "REDUCE_MIN", "REDUCE_PROD") and len(ins) > 1:
        axes = ins[1]
        if not _is_constant(model, axes) or _TENSOR_TYPE_NAMES.get(int(axes.type)) != "int32":
            return f"{name} needs constant int32 axes"
    if name == "CAST" and ins and outs:
        pair = (_TENSOR_TYPE_NAMES.get(int(ins[0].type)), _TENSOR_TYPE_NAMES.get(int(outs[0].type)))
        floats = ("float16", "float32")
        ok = ((pair[0] == "bool" and pair[1] in floats) or (pair[0] in floats and pair[1] == "bool")
              or (pair[0] in ("float32", "int32") and pair[1] in ("float32", "int32")))
        if not ok:
            return f"CAST from {pair[0]} to {pair[1]} is not supported"
    if name == "DEPTHWISE_CONV_2D" and options is not None and ins:
        channels = _shape(ins[0])[-1] if _shape(ins[0]) else 1
        if int(options.depthMultiplier) != 1 and channels != 1:
            return "DEPTHWISE_CONV_2D with depth multiplier != 1 on a multi-channel input"
    if name == "RESIZE_BILINEAR" and options is not None and options.alignCorners \
            and options.halfPixelCenters:
        return "RESIZE_BILINEAR with both align_corners and half_pixel_centers"
    if name == "ADD_N" and len(ins) != 2:
        return f"ADD_N with {len(ins)} inputs (2 only)"
    if name == "DEQUANTIZE" and ins and _TENSOR_TYPE_NAMES.get(int(ins[0].type)) == "int16":
        return "DEQUANTIZE of int16 is not supported"
    if name == "GATHER" and len(ins) > 1:
        if _TENSOR_TYPE_NAMES.get(int(ins[0].type)) == "int32":
            return "GATHER of int32 values is not supported"
        if len(_shape(ins[1])) != 1 or _TENSOR_TYPE_NAMES.get(int(ins[1].type)) != "int32":
            return "GATHER needs 1-D int32 indices"
    return None


def gpu_delegate_issues(model: Any) -> list[GpuIssue]:
    """Operators of an unpacked model (``ModelT``) that the LiteRT GPU delegate cannot run."""
    issues = []
    for sg_index, subgraph in enumerate(model.subgraphs or []):
        for op_index, op in enumerate(subgraph.operators or []):
            name = op_name(model.operatorCodes[op.opcodeIndex])
            reason = _gpu_op_issue(model, subgraph, name, op)
            if reason is not None:
                issues.append(GpuIssue(op_index, name, reason, subgraph=sg_index))
    return issues


def _analyzer():
    from ai_edge_litert import _pywrap_analyzer_wrapper

    return _pywrap_analyzer_wrapper


_OP_LINE = re.compile(r"^\s*Op#(\d+)\s+([A-Za-z0-9_]+)\(")
_SUBGRAPH_LINE = re.compile(r"^Subgraph#(\d+)")
_WARNING = "GPU COMPATIBILITY WARNING:"


def parse_analyzer_report(report: str) -> list[GpuIssue]:
    """Per-op "GPU COMPATIBILITY WARNING" lines of a model analyzer report."""
    issues, subgraph, last_op = [], 0, None
    for line in report.splitlines():
        match = _SUBGRAPH_LINE.match(line)
        if match:
            subgraph, last_op = int(match.group(1)), None
            continue
        match = _OP_LINE.match(line)
        if match:
            last_op = (int(match.group(1)), match.group(2))
            continue
        if line.strip().startswith(_WARNING) and last_op is not None:
            message = line.strip()[len(_WARNING):].strip()
            if not message.startswith("Subgraph#"):
                issues.append(GpuIssue(last_op[0], last_op[1], message, "LiteRT analyzer", subgraph))
    return issues


def _probe_model_bytes() -> bytes:
    """A one-op model whose op (an unknown custom op) no GPU delegate can run."""
    import flatbuffers

    s = _schema()
    code = s.OperatorCodeT()
    code.builtinCode = code.deprecatedBuiltinCode = s.BuiltinOperator.CUSTOM
    code.customCode = "HairsegEdgeGpuProbe"
    code.version = 1
    tensors = []
    for name in ("probe_in", "probe_out"):
        t = s.TensorT()
        t.shape, t.type, t.buffer, t.name = [1, 4], s.TensorType.FLOAT32, 0, name
        tensors.append(t)
    op = s.OperatorT()
    op.opcodeIndex, op.inputs, op.outputs = 0, [0], [1]
    graph = s.SubGraphT()
    graph.tensors, graph.inputs, graph.outputs, graph.operators = tensors, [0], [1], [op]
    model = s.ModelT()
    model.version, model.operatorCodes, model.subgraphs = 3, [code], [graph]
    model.buffers, model.description = [s.BufferT()], "hairseg-edge analyzer probe"
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=tflite_meta.TFLITE_IDENTIFIER)
    return bytes(builder.Output())


@lru_cache(maxsize=1)
def analyzer_checks_gpu() -> bool:
    """Whether the installed LiteRT analyzer really checks ops (it objects to the probe model)."""
    try:
        report = _analyzer().ModelAnalyzer(_probe_model_bytes(), False, True)
    except Exception:
        return False
    return _WARNING in report


@dataclass(frozen=True)
class GpuCompatibility:
    compatible: bool
    issues: tuple[GpuIssue, ...]
    analyzer_available: bool
    analyzer_checks_ops: bool
    analyzer_summary: str | None  # the analyzer's own closing verdict line
    note: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "compatible": self.compatible,
            "issues": [i.to_dict() for i in self.issues],
            "analyzer_available": self.analyzer_available,
            "analyzer_checks_ops": self.analyzer_checks_ops,
            "analyzer_summary": self.analyzer_summary,
            "note": self.note,
        }


def gpu_compatibility(path: Path, model: Any) -> GpuCompatibility:
    """Combine LiteRT's analyzer (when it really checks) with :func:`gpu_delegate_issues`."""
    rules = gpu_delegate_issues(model)
    try:
        report = _analyzer().ModelAnalyzer(str(path), True, True)
        available = True
    except Exception:  # no analyzer in this backend / wheel
        report, available = "", False
    checks = available and analyzer_checks_gpu()
    summary = next((ln.strip() for ln in report.splitlines()
                    if "compatible with GPU delegate" in ln or "compatibility issues" in ln), None)
    issues = list(rules)
    if checks:
        seen = {(i.subgraph, i.op_index) for i in issues}
        issues += [i for i in parse_analyzer_report(report) if (i.subgraph, i.op_index) not in seen]
    if not available:
        note = "LiteRT's model analyzer is not available; verdict from hairseg-edge's per-op rules"
    elif checks:
        note = "LiteRT's model analyzer and hairseg-edge's per-op rules"
    else:
        note = ("this LiteRT's model analyzer no longer checks ops (it passes everything, "
                "tensorflow/tensorflow#77042); verdict from hairseg-edge's per-op rules")
    issues.sort(key=lambda i: (i.subgraph, i.op_index))
    return GpuCompatibility(not issues, tuple(issues), available, checks, summary, note)


# ------------------------------------------------------------------------------------------------
# The report
# ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelInfo:
    """Everything ``hairseg-edge info`` shows about one .tflite file."""

    path: str
    size_bytes: int
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    ops: dict[str, int]  # op name -> count, most frequent first
    op_count: int
    subgraphs: int
    parameters: int  # elements of constant tensors
    macs: int  # multiply-accumulates of conv / transposed conv / dense ops (an estimate)
    metadata: dict[str, int]  # entry name -> payload bytes
    contract: dict[str, Any] | None
    contract_error: str | None
    mediapipe_metadata: bool
    associated_files: tuple[str, ...]
    adapter: str | None
    adapter_reason: str
    loads: bool
    load_error: str | None
    backend: str | None
    gpu: GpuCompatibility | None
    description: str = ""
    tier: dict[str, Any] | None = None  # a bundled tier's file: models.tier_summary
    #: the region stage's fallback locator in this install (face_detector.bundled_summary)
    face_detector: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "size_bytes": self.size_bytes,
            "description": self.description,
            "inputs": [t.to_dict() for t in self.inputs],
            "outputs": [t.to_dict() for t in self.outputs],
            "ops": dict(self.ops),
            "op_count": self.op_count,
            "subgraphs": self.subgraphs,
            "parameters": self.parameters,
            "macs": self.macs,
            "metadata": dict(self.metadata),
            "contract": self.contract,
            "contract_error": self.contract_error,
            "mediapipe_metadata": self.mediapipe_metadata,
            "associated_files": list(self.associated_files),
            "adapter": self.adapter,
            "adapter_reason": self.adapter_reason,
            "loads": self.loads,
            "load_error": self.load_error,
            "backend": self.backend,
            "gpu_delegate": None if self.gpu is None else self.gpu.to_dict(),
            "tier": self.tier,
            "face_detector": self.face_detector,
        }


def _adapter_verdict(inputs, outputs, contract_dict, contract_error) -> tuple[str | None, str]:
    if contract_dict is not None and contract_error is None:
        why = get_adapter("hairseg").mismatch(inputs, outputs)
        if why is None:
            return "hairseg", "hairseg contract found in the model's metadata"
        return None, f"has a hairseg contract but its tensors do not fit it: {why}"
    if contract_error is not None:
        return None, f"hairseg contract unusable: {contract_error}"
    detected = detect_adapter(inputs, outputs)
    if detected is None:
        why = get_adapter("hairseg").mismatch(inputs, outputs)
        return None, f"no adapter fits: {why}"
    if detected.name == "hairseg":
        return "hairseg", ("no hairseg contract in its metadata; accepted as a hairseg model from its "
                           "tensor shapes alone (inputs are assumed to be raw RGB 0..255)")
    return detected.name, f"detected from the model's tensors ({detected.description})"


def inspect_model(model: str | os.PathLike[str], *, check_gpu: bool = True,
                  try_load: bool = True) -> ModelInfo:
    """Describe a .tflite file. Raises InputError only when it is not a readable .tflite at all."""
    path = Path(model)
    data, _ = tflite_meta.load_model_bytes(path)
    tflite_meta.check_tflite_bytes(data, path)
    metadata = tflite_meta.read_metadata_bytes(data, path)
    schema = _schema()
    try:
        archive_start, members = tflite_meta.appended_archive(data)
        unpacked = schema.ModelT.InitFromPackedBuf(bytearray(data[:archive_start]), 0)
        graph = unpacked.subgraphs[0]
        tensors = graph.tensors or []
        inputs = tuple(_tensor_spec(tensors[i], int(i)) for i in graph.inputs)
        outputs = tuple(_tensor_spec(tensors[i], int(i)) for i in graph.outputs)
    except Exception as exc:
        raise InputError(f"corrupt or truncated .tflite file ({type(exc).__name__})", path) from None

    ops: Counter[str] = Counter()
    macs = 0
    for subgraph in unpacked.subgraphs:
        for op in subgraph.operators or []:
            name = op_name(unpacked.operatorCodes[op.opcodeIndex])
            ops[name] += 1
            macs += _op_macs(name, op, subgraph.tensors or [])
    parameters = sum(int(np.prod(_shape(t), dtype=np.int64)) for sg in unpacked.subgraphs
                     for t in (sg.tensors or []) if _is_constant(unpacked, t))

    contract_dict, contract_error = None, None
    if METADATA_NAME in metadata:
        try:
            found = tflite_meta.parse_contract(metadata[METADATA_NAME])
            contract_dict = found.to_dict()
            found.check_compatible()
            side = inputs[0].shape[1] if inputs and len(inputs[0].shape) == 4 else None
            if side is not None and found.input_size != side:
                contract_error = (f"contract says input size {found.input_size}, "
                                  f"the input tensor is {side}")
        except (InputError, ValueError) as exc:
            contract_error = str(exc)
    adapter, adapter_reason = _adapter_verdict(inputs, outputs, contract_dict, contract_error)

    loads, load_error, backend = False, None, None
    if try_load:
        from .runtime import load_model

        try:
            loaded = load_model(path, threads=1)
            loads, backend = True, f"{loaded.backend.name} {loaded.backend.version}"
            loaded.interpreter = None
        except InputError as exc:
            load_error = str(exc)
            if exc.path and load_error.startswith(f"{exc.path}: "):
                load_error = load_error[len(exc.path) + 2:]

    return ModelInfo(
        path=str(model),
        size_bytes=len(data),
        inputs=inputs,
        outputs=outputs,
        ops=dict(ops.most_common()),
        op_count=sum(ops.values()),
        subgraphs=len(unpacked.subgraphs),
        parameters=parameters,
        macs=macs,
        metadata={name: len(payload) for name, payload in metadata.items()},
        contract=contract_dict,
        contract_error=contract_error,
        mediapipe_metadata=tflite_meta.MEDIAPIPE_METADATA_NAME in metadata,
        associated_files=tuple(info.filename for info, _ in members),
        adapter=adapter,
        adapter_reason=adapter_reason,
        loads=loads,
        load_error=load_error,
        backend=backend,
        gpu=gpu_compatibility(path, unpacked) if check_gpu else None,
        description=_text(unpacked.description),
        tier=tier_summary(path),
        face_detector=bundled_summary(),
    )
