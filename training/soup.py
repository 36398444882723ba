"""Averaging the weights of trained models of one architecture: a model soup (Wortsman et al., 2022).

Models fine-tuned from one ancestor lie in one basin of the loss, so the mean of their weights is a model
too, often as good as the best of them on every data set at once. BatchNorm moving statistics are averaged
with the weights: re-measuring them on training batches, the textbook step after weight averaging, lost
accuracy here (benchmarks/README, "v7 -> v9"), as it did for ``train --average-last``.

What the output folder holds (written atomically, like a training run's):

* ``model.keras``: the averaged model, inference-ready (what ``hairseg-edge export`` reads),
* ``average.json``: each ingredient's path, sha256 and weight, so the soup can be reproduced and its
  lineage followed (``benchmarks/ship_default_model.py`` writes every ancestor's command into the model
  card).
"""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hairseg_edge.errors import InputError, reason
from hairseg_edge.imageio import atomic_path, file_sha256, write_text

from .keras_compat import keras
from .runfolder import MODEL_FILE, STATE_FILE

AVERAGE_FILE = "average.json"
#: A training run's own files: a soup never writes into a training run's folder.
TRAINING_RUN_FILES = (STATE_FILE, "train_options.json")


@dataclass(frozen=True)
class Ingredient:
    path: Path
    sha256: str
    weight: float  # normalised: the weights of a soup sum to 1


@dataclass(frozen=True)
class AverageResult:
    model_path: Path
    record_path: Path
    ingredients: tuple[Ingredient, ...]
    input_size: int
    params: int


def _load(path: Path) -> keras.Model:
    from . import losses  # noqa: F401  (registers the loss, which a saved model may name)

    if not path.is_file():
        raise InputError("no such model file" if not path.exists() else "is a folder, expected a .keras model",
                         path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return keras.models.load_model(path, safe_mode=True, compile=False)
    except Exception as exc:  # OSError from h5py, ValueError, zipfile errors, ...
        raise InputError(f"not a readable Keras model ({reason(exc)})", path) from None


def _layout(model: keras.Model) -> list[tuple[str, tuple[int, ...]]]:
    """What must match for weights to be averaged: each weight's layer type and shape, in order."""
    return [(layer.__class__.__name__, tuple(w.shape)) for layer in model.layers for w in layer.weights]


def _input_size(model: keras.Model) -> int | None:
    shape = tuple(model.inputs[0].shape)
    return int(shape[1]) if len(shape) == 4 and shape[1] is not None else None


def normalise_weights(weights: Sequence[float] | None, count: int) -> list[float]:
    """Mixing weights that sum to 1 (equal when not given); an InputError for a wrong count or sign."""
    if weights is None:
        return [1.0 / count] * count
    if len(weights) != count:
        raise InputError(f"--weights needs one number per model ({count}), got {len(weights)}")
    if any(not math.isfinite(w) or w < 0 for w in weights) or sum(weights) <= 0:
        raise InputError("--weights must be >= 0 and not all 0")
    total = float(sum(weights))
    return [w / total for w in weights]


def average_models(models: Sequence[str | Path], out: str | Path, weights: Sequence[float] | None = None,
                   *, force: bool = False) -> AverageResult:
    """Write ``out/model.keras``, the weighted mean of ``models``' weights, and ``out/average.json``.

    Every model must have the same architecture, width and input size (the same layer types and weight
    shapes in the same order); anything else is an InputError naming the model that differs.
    """
    paths = [Path(m) for m in models]
    if len(paths) < 2:
        raise InputError("give at least two models to average")
    if len({p.resolve() for p in paths}) != len(paths):
        raise InputError("a model is named twice; use --weights to count one model more")
    mix = normalise_weights(weights, len(paths))
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise InputError("is a file; --out names the folder for the averaged model", out)
    for name in TRAINING_RUN_FILES:
        if (out / name).exists():
            raise InputError(f"holds a training run ({name}); give the average its own --out folder", out)
    model_path, record_path = out / MODEL_FILE, out / AVERAGE_FILE
    if any(model_path.resolve() == p.resolve() for p in paths):
        raise InputError("the output would overwrite one of the models being averaged", model_path)
    for final in (model_path, record_path):
        if final.exists() and not force:
            raise InputError("already exists (pass --force to overwrite)", final)

    first = _load(paths[0])
    layout, size = _layout(first), _input_size(first)
    total = [np.zeros(w.shape, np.float64) for w in first.get_weights()]
    for index, (path, w) in enumerate(zip(paths, mix)):
        model = first if index == 0 else _load(path)
        if index:
            _check_same_model(model, layout, size, path, paths[0])
        for acc, value in zip(total, model.get_weights()):
            acc += w * value.astype(np.float64)
    first.set_weights([acc.astype(ref.dtype) for acc, ref in zip(total, first.get_weights())])

    ingredients = tuple(Ingredient(p.resolve(), file_sha256(p), w) for p, w in zip(paths, mix))
    with atomic_path(model_path, force=True) as tmp:
        first.save(tmp)
    record = {"kind": "average", "model": MODEL_FILE, "input_size": size,
              "params": int(first.count_params()),
              "models": [{"path": str(i.path), "sha256": i.sha256, "weight": i.weight} for i in ingredients]}
    # The record is written last: a folder with a model and no record is not taken for a finished soup.
    write_text(record_path, json.dumps(record, indent=1) + "\n", force=True)
    return AverageResult(model_path, record_path, ingredients, size or 0, int(first.count_params()))


def _check_same_model(model: keras.Model, layout: list, size: int | None, path: Path, first: Path) -> None:
    other = _layout(model)
    if other != layout:
        if len(other) != len(layout):
            detail = f"{len(other)} weight tensors against {len(layout)}"
        else:
            (t1, s1), (t2, s2) = next((a, b) for a, b in zip(other, layout) if a != b)
            detail = f"first difference: {t1} {list(s1)} against {t2} {list(s2)}"
        raise InputError(f"is not the architecture and width of {first} ({detail}); only models of one "
                         "architecture can be averaged", path)
    if _input_size(model) != size:
        raise InputError(f"takes {_input_size(model)} px inputs, {first} takes {size} px; average models of one "
                         "input size", path)

