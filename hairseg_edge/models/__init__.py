"""Bundled models: ``hairseg_<kind>.tflite`` files shipped inside the package.

Commands that take an optional MODEL (``run``, ``bench``, ``eval``, ``info``) call
:func:`default_model_path` when none is given, so "which model is the default" lives in one place.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import InputError

#: Folder holding the bundled model files (this package's directory).
MODELS_DIR = Path(__file__).resolve().parent
#: Kinds a bundled model can come in -> file name. The int8 .tflite is the default everywhere; the
#: float .keras is the original it was exported from (the default MODEL of ``hairseg-edge export``).
FILES = {"int8": "hairseg_int8.tflite", "float": "hairseg_float.keras"}
KINDS = tuple(FILES)


def bundled_model_path(kind: str = "int8") -> Path:
    """Where the bundled model of ``kind`` lives (whether or not it exists)."""
    if kind not in FILES:
        raise InputError(f"unknown bundled model kind {kind!r}; choose one of: {', '.join(KINDS)}")
    return MODELS_DIR / FILES[kind]


def default_model_path(kind: str = "int8") -> Path:
    """The bundled model file of ``kind``; InputError (exit 2) when this install has none."""
    path = bundled_model_path(kind)
    if not path.is_file():
        raise InputError(
            f"no model given and no bundled {kind} model in this install ({path} is missing); "
            "pass the path of a model"
        )
    return path
