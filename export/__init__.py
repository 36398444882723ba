"""hairseg_edge.export: pruning, quantization-aware training, TFLite conversion and verification.

Installed only as ``hairseg_edge.export`` (the repo keeps it in the top-level folder ``export/``).
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
