"""The one place that picks the Keras implementation: Keras 2 (``tf_keras``), which tfmot needs.

Import ``keras`` and ``tf`` from here, never ``tf.keras``: TensorFlow 2.21's ``tf.keras`` is Keras 3,
and a model touched by Keras 3 cannot be pruned or quantized by tensorflow-model-optimization.
``TF_USE_LEGACY_KERAS`` must be set before TensorFlow is first imported.
"""

from __future__ import annotations

import os

os.environ["TF_USE_LEGACY_KERAS"] = "1"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep TensorFlow's C++ start-up chatter quiet

import tensorflow as tf  # noqa: E402
import tf_keras as keras  # noqa: E402

__all__ = ["keras", "tf"]
