"""hairseg_edge.training: architectures, tf.data input pipeline and the training loop (TensorFlow side).

Installed only as ``hairseg_edge.training`` (the repo keeps it in the top-level folder ``training/``).
"""

if __name__ != "hairseg_edge.training":  # pragma: no cover - guards against a second import name
    raise ImportError("import this package as hairseg_edge.training, not as " + __name__)
