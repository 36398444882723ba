"""Bundled models: ``hairseg_<kind>.tflite`` files shipped inside the package.

Commands that take an optional MODEL (``run``, ``bench``, ``eval``, ``info``) call
:func:`default_model_path` when none is given, so "which model is the default" lives in one place.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import InputError

#: Folder holding the bundled model files (this package's directory).
MODELS_DIR = Path(__file__).resolve().parent
#: Kinds a bundled model can come in; the int8 one is the default everywhere.
KINDS = ("int8", "float16", "float32")


def bundled_model_path(kind: str = "int8") -> Path:
    """Where the bundled model of ``kind`` lives (whether or not it exists)."""
    if kind not in KINDS:
        raise InputError(f"unknown bundled model kind {kind!r}; choose one of: {', '.join(KINDS)}")
    return MODELS_DIR / f"hairseg_{kind}.tflite"


def default_model_path(kind: str = "int8") -> Path:
    """The bundled ``hairseg_<kind>.tflite``; InputError (exit 2) when this install has none."""
    path = bundled_model_path(kind)
    if not path.is_file():
        raise InputError(
            f"no model given and no bundled {kind} model in this install ({path} is missing); "
            "pass the path of a .tflite model"
        )
    return path
