"""hairseg-edge: hair segmentation for Raspberry Pi, phones and laptops.

The package root and its device modules (contract, data, metrics, runtime, CLI) import numpy and OpenCV
only; the TensorFlow halves live in ``hairseg_edge.training`` and ``hairseg_edge.export`` and are imported
lazily by the commands that need them.
"""

__version__ = "0.1.0"
