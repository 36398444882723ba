"""hairseg_edge.export: pruning, quantization-aware training, TFLite conversion and verification.

Installed only as ``hairseg_edge.export`` (the repo keeps it in the top-level folder ``export/``).

One call does the whole stage (``hairseg-edge export`` is a thin wrapper around it)::

    from hairseg_edge.export import ExportOptions, export_model

    report = export_model(ExportOptions("hair.keras", variants=("float32", "int8"), data="faces/"))
    report.raise_for_gate()

Modules, one job each:

* ``options``: :class:`ExportOptions` (checked when built) and the variant table ``VARIANTS``
  (no TensorFlow: importable on any install);
* ``keras_models``: safe loading of the float ``.keras``, copies, the batch-1 rebuild;
* ``image_sets``: which images fine-tune, calibrate and evaluate, and the representative data set;
* ``prune`` / ``qat``: tfmot pruning (explicit schedule, strip, sparsity) and quantization-aware
  training (sparsity-preserving when possible);
* ``convert``: Keras -> .tflite per variant, contract embedded;
* ``verify``: scores through the device runtime, agreement, latency, the gate;
* ``report``: :class:`ExportReport` (JSON, Markdown, Rich table);
* ``api``: :func:`export_model`, the sequence of all of the above.
"""

if __name__ != "hairseg_edge.export":  # pragma: no cover - guards against a second import name
    raise ImportError("import this package as hairseg_edge.export, not as " + __name__)

# Public names, imported lazily: ``hairseg_edge.export.options`` stays importable (and cheap) without
# TensorFlow, while ``from hairseg_edge.export import export_model`` loads the TensorFlow side.
_PUBLIC = {
    "ExportOptions": "options",
    "IOType": "options",
    "VARIANTS": "options",
    "VariantSpec": "options",
    "get_variant": "options",
    "ExportReport": "report",
    "export_model": "api",
}
__all__ = sorted(_PUBLIC)


def __getattr__(name: str):
    if name in _PUBLIC:
        import importlib

        return getattr(importlib.import_module(f"{__name__}.{_PUBLIC[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
