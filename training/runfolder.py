"""The run folder's files: atomic saves, ``state.json``, checkpoints to resume from, weights to start from.

The format is shared by every version that may ``--resume`` a run: ``state.json`` names the checkpoint
(and running average) it belongs to and is written after them.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from hairseg_edge.errors import InputError, reason
from hairseg_edge.imageio import atomic_path

from . import archs
from .keras_compat import keras
from .options import TrainOptions

STATE_FILE = "state.json"
MODEL_FILE = "model.keras"


def save_keras_atomic(model: keras.Model, path: Path) -> None:
    with atomic_path(path, force=True) as tmp:
        model.save(tmp)


def inference_copy(model: keras.Model, options: TrainOptions,
                   weights: Sequence[np.ndarray] | None = None) -> keras.Model:
    """The trained weights (or ``weights``) in a fresh float32, uncompiled model: what export and users
    load."""
    policy = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy("float32")
    try:
        clean = archs.build_model(options.arch, options.img_size, options.width)
    finally:
        keras.mixed_precision.set_global_policy(policy)
    clean.set_weights(model.get_weights() if weights is None else list(weights))
    return clean


def read_state(out: Path) -> dict[str, Any] | None:
    p = out / STATE_FILE
    if not p.exists():
        return None
    try:
        return json.loads(p.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise InputError(f"cannot resume: unreadable run state ({exc})", p) from None


def init_weights_from(model: keras.Model, path: str | Path) -> None:
    """Copy the weights of the model saved at ``path`` into ``model`` (fine-tuning), or an InputError.

    The weights of every architecture here are independent of the input size (all convolutional), so
    a model trained at one --img-size can start a run at another; arch and width must match.
    """
    path = Path(path)
    try:
        source = keras.models.load_model(path, safe_mode=True, compile=False)
    except Exception as exc:  # OSError from h5py, ValueError, zipfile errors, ...
        raise InputError(f"--init-from: not a readable Keras model ({reason(exc)})", path) from None
    have = [tuple(w.shape) for w in source.get_weights()]
    want = [tuple(w.shape) for w in model.get_weights()]
    if have != want:
        detail = (f"{len(have)} weight tensors, the new model has {len(want)}" if len(have) != len(want)
                  else "first mismatch: " + next(f"{a} vs {b}" for a, b in zip(have, want) if a != b))
        raise InputError(f"--init-from: its weights do not fit this --arch/--width ({detail})", path)
    model.set_weights(source.get_weights())


def load_checkpoint(path: Path) -> keras.Model:
    """The checkpoint state.json names (safe mode: no code), or an InputError naming it."""
    if not path.is_file():
        raise InputError("cannot resume: the checkpoint named in state.json is missing", path)
    try:
        return keras.models.load_model(path, safe_mode=True)
    except Exception as exc:  # OSError from h5py, ValueError, zipfile errors, ...
        raise InputError(f"cannot resume: damaged checkpoint ({reason(exc)})", path) from None
