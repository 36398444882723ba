"""Bundled models: tiers of ``.tflite`` files shipped inside the package, and the one resolver every
command uses to turn ``--model default|fast|large|PATH`` into a file.

A *tier* is one trained network in two files: the int8 ``.tflite`` that run/bench/eval/info use and the
float ``.keras`` original it was exported from (the default MODEL of ``hairseg-edge export``), plus the
model card JSON its accuracy figures come from. ``default`` (alias ``fast``) is always the default; a
tier is *bundled* in an install when its int8 file is present, so an install without the large file
simply has one tier.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from ..errors import InputError

#: Folder holding the bundled model files (this package's directory).
MODELS_DIR = Path(__file__).resolve().parent
#: The recorded validation splits (``<set>_val.txt``): which of a card's metrics are validation splits.
SPLITS_DIR = MODELS_DIR.parent / "splits"
#: The kinds a tier's files come in.
KINDS = ("int8", "float")
#: The tier used when no model is given.
DEFAULT_TIER = "default"
#: The region stage's fallback locator: MediaPipe's BlazeFace short range (Apache-2.0, see
#: NOTICE-face-detector.md), used when the hair pass finds no head (``hairseg_edge.face_detector``).
FACE_DETECTOR_PATH = MODELS_DIR / "face_detection_short_range.tflite"


@dataclass(frozen=True)
class Tier:
    """One bundled model: its name, other names, files per kind and model card."""

    name: str
    aliases: tuple[str, ...]
    files: dict[str, str]
    card: str
    summary: str

    @property
    def names(self) -> tuple[str, ...]:
        return (self.name, *self.aliases)

    def path(self, kind: str = "int8", models_dir: Path | None = None) -> Path:
        if kind not in self.files:
            raise InputError(f"unknown bundled model kind {kind!r}; choose one of: {', '.join(KINDS)}")
        return (models_dir or MODELS_DIR) / self.files[kind]

    def card_path(self, models_dir: Path | None = None) -> Path:
        return (models_dir or MODELS_DIR) / self.card


#: Every tier this package knows, fastest first. Whether one is in this install: :func:`bundled_tiers`.
TIERS: dict[str, Tier] = {
    tier.name: tier
    for tier in (
        Tier("default", ("fast",), {"int8": "hairseg_int8.tflite", "float": "hairseg_float.keras"},
             "model_card.json", "fused_unet 0.75 at 224 px: the fast default"),
        Tier("large", (), {"int8": "hairseg_large_int8.tflite", "float": "hairseg_large_float.keras"},
             "model_card_large.json", "fused_unet_ctx 1.0 at 256 px: the accurate tier"),
    )
}
#: Compatibility with callers of the one-tier API: kind -> file name of the default tier.
FILES = dict(TIERS[DEFAULT_TIER].files)


def tier_names() -> list[str]:
    """Every name ``--model`` accepts for a tier (aliases included)."""
    return [n for tier in TIERS.values() for n in tier.names]


def find_tier(name: str) -> Tier | None:
    """The tier called ``name`` (or by an alias), None when ``name`` is no tier name."""
    for tier in TIERS.values():
        if name in tier.names:
            return tier
    return None


def bundled_tiers(models_dir: Path | None = None) -> list[Tier]:
    """The tiers whose int8 file is present in this install, fastest first."""
    return [tier for tier in TIERS.values() if tier.path("int8", models_dir).is_file()]


def _tier_list(models_dir: Path | None) -> str:
    present = bundled_tiers(models_dir)
    return ", ".join(t.name + (f" ({'/'.join(t.aliases)})" if t.aliases else "") for t in present) or "none"


def tier_of(path: str | os.PathLike[str], models_dir: Path | None = None) -> Tier | None:
    """The bundled tier whose int8 or float file ``path`` is (None for any other file)."""
    try:
        real = os.path.realpath(path)
        return next((tier for tier in TIERS.values() for kind in tier.files
                     if os.path.realpath(tier.path(kind, models_dir)) == real), None)
    except OSError:
        return None


def tier_summary(path: str | os.PathLike[str], models_dir: Path | None = None) -> dict | None:
    """What ``info`` says of a bundled tier's file: its names, its card's int8 IoU per validation split
    (None when the card is unreadable) and the other tiers in this install; None for any other file."""
    tier = tier_of(path, models_dir)
    if tier is None:
        return None
    try:
        iou: dict[str, float] | None = card_iou(tier, models_dir)
    except InputError:
        iou = None
    return {"name": tier.name, "aliases": list(tier.aliases), "summary": tier.summary, "card_iou": iou,
            "other_tiers": [t.name for t in bundled_tiers(models_dir) if t is not tier]}


def bundled_model_path(kind: str = "int8", tier: str = DEFAULT_TIER) -> Path:
    """Where the bundled model of ``tier`` and ``kind`` lives (whether or not it exists)."""
    found = find_tier(tier)
    if found is None:
        raise InputError(f"unknown model tier {tier!r}; choose one of: {', '.join(tier_names())}")
    return found.path(kind)


def resolve_model(model: str | os.PathLike[str] | None, kind: str = "int8", *,
                  models_dir: Path | None = None) -> Path:
    """What ``--model`` means: None -> the default tier's file of ``kind``; a tier name (``default``,
    ``fast``, ``large``) given as a string -> that tier's file; anything else (a ``Path`` always) is a
    path, returned as given (the command that opens it reports a bad file). A tier that is not in this
    install, or a bundled file that is missing, is an InputError (exit 2) naming the tiers that are. A
    file literally called ``large`` is reached as ``./large``."""
    if model is not None and not isinstance(model, str):
        return Path(model)
    tier = find_tier(DEFAULT_TIER if model is None else model)
    if tier is None:
        return Path(model)  # type: ignore[arg-type]
    path = tier.path(kind, models_dir)
    if not path.is_file():
        if model is None:
            raise InputError(f"no model given and no bundled {kind} model in this install ({path} is "
                             f"missing); pass the path of a model")
        raise InputError(f"model tier {model!r} is not bundled in this install ({path.name} is missing); "
                         f"bundled: {_tier_list(models_dir)}")
    return path


def default_model_path(kind: str = "int8") -> Path:
    """The default tier's bundled file of ``kind``; InputError (exit 2) when this install has none."""
    return resolve_model(None, kind)


def card_iou(tier: Tier, models_dir: Path | None = None) -> dict[str, float]:
    """The int8 model's global IoU on each recorded validation split (``hairseg_edge/splits/*_val.txt``;
    subsets such as regression300 are left out), from the tier's card JSON, with their mean under
    ``"mean"``. InputError when the card is missing or holds no int8 figures."""
    path = tier.card_path(models_dir)
    try:
        card = json.loads(path.read_text(encoding="utf-8"))
        per_set = {name: float(rows["hairseg int8"]["iou"]) for name, rows in card["metrics"].items()
                   if "hairseg int8" in rows and (SPLITS_DIR / f"{name}_val.txt").is_file()}
    except FileNotFoundError:
        raise InputError(f"the {tier.name} tier has no model card", path) from None
    except (ValueError, KeyError, TypeError) as exc:
        raise InputError(f"model card without int8 IoU figures ({type(exc).__name__}: {exc})", path) \
            from None
    if not per_set:
        raise InputError("model card without int8 IoU figures", path)
    return {**per_set, "mean": sum(per_set.values()) / len(per_set)}
