"""hairseg_edge.export: pruning, quantization-aware training, TFLite conversion and verification.

Installed only as ``hairseg_edge.export`` (the repo keeps it in the top-level folder ``export/``).
"""

if __name__ != "hairseg_edge.export":  # pragma: no cover - guards against a second import name
    raise ImportError("import this package as hairseg_edge.export, not as " + __name__)
