"""What a training run is asked to do: :class:`TrainOptions` (recorded as ``train_options.json``) and
what it returns, :class:`TrainResult`."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hairseg_edge import contract
from hairseg_edge.errors import InputError
from hairseg_edge.filesystem import has_scheme

from . import archs
from .distribute import STRATEGIES
from .losses import DEFAULT_LOSS, LOSSES
from .pipeline import AUGMENT_PRESETS, DEFAULT_TARGETS, TARGET_MODES


@dataclass(frozen=True)
class TrainOptions:
    data: tuple[str, ...]
    out: str = "runs/hairseg"
    arch: str = archs.DEFAULT_ARCH
    img_size: int = contract.DEFAULT_INPUT_SIZE
    width: float | None = None
    epochs: int = 30
    batch: int = 16
    limit: int | None = None
    lr: float = 3e-3
    weight_decay: float = 1e-5
    dice_weight: float = 1.0
    val_fraction: float = 0.1
    patience: int = 8
    seed: int = 1234
    data_weights: tuple[int, ...] | None = None  # per --data folder: repeats per epoch
    strategy: str = "auto"  # auto | default | mirrored | multiworker
    mixed_precision: str = "auto"  # auto (on GPU) | on | off
    steps_per_epoch: int | None = None  # cap (smoke runs); default: one pass over the training set
    init_from: str | None = None  # a .keras model of the same arch and width to start from (fine-tuning)
    augment: str = "full"  # a name in pipeline.AUGMENT_PRESETS: full | light | wide | crops | bands | bands-light | settle | none
    keep: str = "best"  # which epoch model.keras holds: best (mean validation IoU) | last
    average_last: int = 0  # > 0: model.keras is the average of the last N epochs' weights (SWA)
    teacher: str | None = None  # a .keras hair model whose outputs are mixed into the targets
    distill_weight: float = 0.5  # with a teacher: target = (1 - w) * mask + w * teacher's probability
    loss: str = DEFAULT_LOSS  # a name in losses.LOSSES
    targets: str = DEFAULT_TARGETS  # a name in pipeline.TARGET_MODES: how masks become training targets

    def __post_init__(self) -> None:
        if not self.data:
            raise InputError("give at least one --data folder")
        if has_scheme(self.out):  # the run folder is written atomically with local renames and links
            raise InputError("--out must be a local folder (on a cluster: a shared mount every worker "
                             "reads and writes); only --data may be a URL", self.out)
        try:
            archs.get_arch(self.arch)
        except ValueError as exc:  # names the valid architectures
            raise InputError(str(exc)) from None
        if self.width is not None and not 0.05 <= self.width <= 4.0:
            raise InputError(f"--width must be in [0.05, 4], got {self.width}")
        if self.epochs < 1:
            raise InputError(f"--epochs must be >= 1, got {self.epochs}")
        if self.batch < 1:
            raise InputError(f"--batch must be >= 1, got {self.batch}")
        if self.img_size < 32 or self.img_size % 32:
            raise InputError(f"--img-size must be a multiple of 32 and >= 32, got {self.img_size}")
        if self.limit is not None and self.limit < 1:
            raise InputError(f"--limit must be >= 1, got {self.limit}")
        if self.data_weights is not None and len(self.data_weights) != len(self.data):
            raise InputError("--data-weights needs one integer per --data folder")
        if self.strategy not in STRATEGIES:
            raise InputError(f"unknown --strategy {self.strategy!r}")
        if self.mixed_precision not in ("auto", "on", "off"):
            raise InputError(f"unknown --mixed-precision {self.mixed_precision!r}")
        if self.keep not in ("best", "last"):
            raise InputError(f"unknown --keep {self.keep!r}; choose best or last")
        if not 0 <= self.average_last <= self.epochs:
            raise InputError(f"--average-last must be in [0, --epochs], got {self.average_last}")
        if self.augment not in AUGMENT_PRESETS:
            raise InputError(f"unknown --augment {self.augment!r}; choose from {', '.join(AUGMENT_PRESETS)}")
        if self.init_from is not None and not Path(self.init_from).is_file():
            raise InputError("--init-from: no such model file", self.init_from)
        if self.teacher is not None and not Path(self.teacher).is_file():
            raise InputError("--teacher: no such model file", self.teacher)
        if self.loss not in LOSSES:
            raise InputError(f"unknown loss {self.loss!r}; choose from {', '.join(sorted(LOSSES))}")
        if self.targets not in TARGET_MODES:
            raise InputError(f"unknown target mode {self.targets!r}; choose from "
                             f"{', '.join(sorted(TARGET_MODES))}")
        if not 0.0 < self.distill_weight <= 1.0:
            raise InputError(f"--distill-weight must be in (0, 1], got {self.distill_weight}")

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["data"] = list(self.data)
        if self.data_weights is not None:
            d["data_weights"] = list(self.data_weights)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainOptions:
        known = {f.name for f in dataclasses.fields(cls)}
        kw = {k: v for k, v in d.items() if k in known}
        kw["data"] = tuple(kw["data"])
        if kw.get("data_weights") is not None:
            kw["data_weights"] = tuple(kw["data_weights"])
        return cls(**kw)


@dataclass
class TrainResult:
    out: Path
    model_path: Path
    epochs_run: int
    best_epoch: int
    best_val_iou: float
    kept_epoch: int = -1  # the epoch model.keras holds: best_epoch, or the last with keep="last"
    kept_val_iou: float = -1.0
    averaged: dict[str, Any] | None = None  # with average_last: the epochs averaged and their scores
    history: list[dict[str, float]] = field(default_factory=list)
    params: int = 0
    macs: int = 0
    images_per_second: float = 0.0
    stopped_early: bool = False
