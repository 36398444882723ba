"""What an export is asked to do: :class:`ExportOptions` and the table of conversion variants.

This module is plain Python (no TensorFlow), so options can be built, checked and printed cheaply
(the CLI checks them before paying for the TensorFlow import).

Variants (:data:`VARIANTS`), named as in the report:

=========  ==================================================================  ===========
name       what the converter does                                             calibration
=========  ==================================================================  ===========
float32    plain conversion, float32 weights and activations                   no
float16    float16 weights (dequantized to float32 at load), float32 compute   no
dynamic    int8 weights, float activations (dynamic-range quantization)       no
int8       int8 weights and activations, integer-only ops; I/O per ``io``      yes
=========  ==================================================================  ===========

``int8`` with ``qat=True`` is converted from the quantization-aware fine-tuned model instead of
post-training calibration only (the representative data set still calibrates any layer QAT left
in float, such as the input ``Rescaling``).
"""

from __future__ import annotations

import dataclasses
import difflib
import enum
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hairseg_edge.errors import InputError

#: Images used to calibrate int8 activations when the user does not say otherwise.
DEFAULT_CALIB_COUNT = 200
#: Largest IoU drop (absolute) a converted model may show against the float original.
DEFAULT_MAX_DROP = 0.005
#: Smallest agreement IoU (masks of the converted model vs the float original's) that passes.
DEFAULT_MIN_AGREEMENT = 0.97
DEFAULT_OUT = Path("export-out")


class IOType(str, enum.Enum):
    """Tensor type of the int8 model's input and output.

    ``uint8`` (default): a camera frame goes in as it is (the scale of the input is 1 and its zero
    point 0, because the model's first layer is the contract's Rescaling), and the output is the
    hair probability times 255. ``int8``: the same with a zero point of -128. ``float32``: float
    in and out, with quantize/dequantize ops at the edges (for runtimes that only feed floats).
    """

    UINT8 = "uint8"
    INT8 = "int8"
    FLOAT32 = "float32"


@dataclass(frozen=True)
class VariantSpec:
    """One row of the variant table: how a conversion variant is made.

    Attributes:
        name: the name used in the report, the CLI flag's meaning and the file name.
        flag: the ``hairseg-edge export`` flag that asks for it.
        needs_calibration: a representative data set is required (full-integer quantization).
        optimize: turn on the converter's default optimizations (weight quantization).
        float16_weights: store weights as float16.
        integer_only: restrict the converter to int8 builtin ops and honour ``ExportOptions.io``.
        summary: one line for help texts and reports.
    """

    name: str
    flag: str
    needs_calibration: bool
    optimize: bool
    float16_weights: bool
    integer_only: bool
    summary: str

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


VARIANTS: dict[str, VariantSpec] = {
    spec.name: spec
    for spec in (
        VariantSpec("float32", "--float32", needs_calibration=False, optimize=False,
                    float16_weights=False, integer_only=False,
                    summary="float32 weights and activations"),
        VariantSpec("float16", "--fp16", needs_calibration=False, optimize=True,
                    float16_weights=True, integer_only=False,
                    summary="float16 weights, float32 compute"),
        VariantSpec("dynamic", "--dynamic", needs_calibration=False, optimize=True,
                    float16_weights=False, integer_only=False,
                    summary="int8 weights, float activations (dynamic range)"),
        VariantSpec("int8", "--int8", needs_calibration=True, optimize=True,
                    float16_weights=False, integer_only=True,
                    summary="int8 weights and activations, integer-only ops"),
    )
}


def get_variant(name: str) -> VariantSpec:
    """The variant called ``name``; an unknown name fails with the closest match and the list."""
    try:
        return VARIANTS[name]
    except KeyError:
        close = difflib.get_close_matches(name, VARIANTS, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise InputError(f"unknown export variant {name!r}{hint}; choose from {', '.join(VARIANTS)}") \
            from None


def _path_or_none(value: str | os.PathLike[str] | None) -> Path | None:
    return None if value is None else Path(value)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass(frozen=True)
class ExportOptions:
    """Everything ``hairseg-edge export`` was asked to do; checked when built, embedded in the report.

    Attributes:
        model: the float ``.keras`` model (the original, and the reference of the gate).
        variants: names from :data:`VARIANTS`, in the order they are built.
        prune: target sparsity in (0, 1) of the pruned kernels, or None for no pruning.
        qat: build the ``int8`` variant with quantization-aware training.
        data: data set for fine-tuning (its training split), and the default for ``calib`` (its
            training split) and ``eval_data`` (its validation split).
        calib: data set whose images calibrate the int8 activations (all of it).
        eval_data: data set on which every model is verified (all of it).
        limit: cap on the images read from each data set (fine-tuning, calibration, evaluation).
        calib_count: number of calibration images, spread evenly over the calibration set.
        max_drop: largest IoU drop against the float original that passes the gate.
        min_agreement: smallest agreement IoU with the float original that passes the gate.
        io: input/output tensor type of the int8 variant.
        out: output folder for the models and report.json / report.md.
        force: replace existing outputs.
        finetune_epochs, finetune_steps: fine-tuning length for pruning and QAT (steps per epoch;
            None = one pass over the fine-tuning images per epoch).
        finetune_batch: fine-tuning batch size.
        finetune_lr: fine-tuning learning rate (Adam).
        latency_runs: timed invokes per model for the p50 latency (one thread, after warm-up).
        seed: seed for fine-tuning (shuffling, augmentation).
    """

    model: Path
    variants: tuple[str, ...] = ("int8",)
    prune: float | None = None
    qat: bool = False
    data: Path | None = None
    calib: Path | None = None
    eval_data: Path | None = None
    limit: int | None = None
    calib_count: int = DEFAULT_CALIB_COUNT
    max_drop: float = DEFAULT_MAX_DROP
    min_agreement: float = DEFAULT_MIN_AGREEMENT
    io: IOType = IOType.UINT8
    out: Path = DEFAULT_OUT
    force: bool = False
    finetune_epochs: int = 2
    finetune_steps: int | None = None
    finetune_batch: int = 8
    finetune_lr: float = 1e-4
    latency_runs: int = 30
    seed: int = 0

    def __post_init__(self) -> None:
        # Normalise types first (frozen: go through object.__setattr__), then check combinations.
        object.__setattr__(self, "model", Path(self.model))
        object.__setattr__(self, "out", Path(self.out))
        for name in ("data", "calib", "eval_data"):
            object.__setattr__(self, name, _path_or_none(getattr(self, name)))
        if isinstance(self.variants, str):
            raise InputError(f"variants must be a list of names, got the string {self.variants!r}")
        object.__setattr__(self, "variants", tuple(self.variants))
        try:
            object.__setattr__(self, "io", IOType(self.io))
        except ValueError:
            raise InputError(f"--io must be one of {', '.join(t.value for t in IOType)}, "
                             f"got {self.io!r}") from None
        self._check_values()
        self._check_combinations()

    def _check_values(self) -> None:
        if not self.variants:
            raise InputError("no variant to build: pass one or more of "
                             + ", ".join(v.flag for v in VARIANTS.values()))
        for name in self.variants:
            get_variant(name)
        if len(set(self.variants)) != len(self.variants):
            raise InputError(f"a variant is listed twice: {', '.join(self.variants)}")
        if self.prune is not None and not (isinstance(self.prune, (int, float))
                                           and 0.0 < float(self.prune) < 1.0):
            raise InputError(f"--prune must be a sparsity strictly between 0 and 1, got {self.prune!r}")
        if self.limit is not None and not (_is_int(self.limit) and self.limit >= 1):
            raise InputError(f"--limit must be an integer >= 1, got {self.limit!r}")
        if not (_is_int(self.calib_count) and self.calib_count >= 1):
            raise InputError(f"--calib-count must be an integer >= 1, got {self.calib_count!r}")
        if not 0.0 <= self.max_drop <= 1.0:
            raise InputError(f"--max-drop must be in [0, 1] (an absolute IoU drop), got {self.max_drop!r}")
        if not 0.0 <= self.min_agreement <= 1.0:
            raise InputError(f"--min-agreement must be in [0, 1], got {self.min_agreement!r}")
        if not (_is_int(self.finetune_epochs) and self.finetune_epochs >= 1):
            raise InputError(f"--finetune-epochs must be an integer >= 1, got {self.finetune_epochs!r}")
        if self.finetune_steps is not None and not (_is_int(self.finetune_steps)
                                                    and self.finetune_steps >= 1):
            raise InputError(f"--finetune-steps must be an integer >= 1, got {self.finetune_steps!r}")
        if not (_is_int(self.finetune_batch) and self.finetune_batch >= 1):
            raise InputError(f"--finetune-batch must be an integer >= 1, got {self.finetune_batch!r}")
        if not 0.0 < self.finetune_lr < 1.0:
            raise InputError(f"--finetune-lr must be in (0, 1), got {self.finetune_lr!r}")
        if not (_is_int(self.latency_runs) and self.latency_runs >= 1):
            raise InputError(f"latency_runs must be an integer >= 1, got {self.latency_runs!r}")

    def _check_combinations(self) -> None:
        if self.qat and "int8" not in self.variants:
            raise InputError("--qat only changes the int8 variant: add --int8")
        if self.io is not IOType.UINT8 and "int8" not in self.variants:
            raise InputError(f"--io {self.io.value} only applies to the int8 variant: add --int8")
        if self.finetunes and self.data is None:
            what = "--prune" if self.prune is not None else "--qat"
            raise InputError(f"{what} fine-tunes the model: give the training images with --data")
        if self.needs_calibration and self.calib is None and self.data is None:
            raise InputError("the int8 variant needs calibration images: pass --calib or --data")
        if self.eval_data is None and self.data is None:
            raise InputError("every export is verified against the float model: pass --eval or --data")

    @property
    def finetunes(self) -> bool:
        """Pruning or QAT is asked for, so the model is fine-tuned on ``data``."""
        return self.prune is not None or self.qat

    @property
    def needs_calibration(self) -> bool:
        return any(VARIANTS[name].needs_calibration for name in self.variants)

    @property
    def variant_specs(self) -> tuple[VariantSpec, ...]:
        return tuple(VARIANTS[name] for name in self.variants)

    def file_stem(self, variant: str) -> str:
        """The model file's name without suffix, e.g. ``hair-pruned50-int8-qat``."""
        parts = [self.model.stem]
        if self.prune is not None:
            parts.append(f"pruned{round(self.prune * 100):d}")
        parts.append(variant)
        if variant == "int8" and self.qat:
            parts.append("qat")
        return "-".join(parts)

    def model_path(self, variant: str) -> Path:
        return self.out / f"{self.file_stem(variant)}.tflite"

    @property
    def report_json_path(self) -> Path:
        return self.out / "report.json"

    @property
    def report_md_path(self) -> Path:
        return self.out / "report.md"

    def output_paths(self) -> list[Path]:
        """Every file this export may write (checked up front, so nothing is half done)."""
        return [self.model_path(v) for v in self.variants] + [self.report_json_path, self.report_md_path]

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, Path):
                value = str(value.resolve())
            elif isinstance(value, IOType):
                value = value.value
            elif isinstance(value, tuple):
                value = list(value)
            d[f.name] = value
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ExportOptions:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise InputError(f"unknown export option(s): {', '.join(unknown)}")
        return cls(**d)
