"""The one place that picks the Keras implementation: Keras 2 (``tf_keras``), which tfmot needs.

Import ``keras`` and ``tf`` from here, never ``tf.keras``: TensorFlow 2.21's ``tf.keras`` is Keras 3,
and a model touched by Keras 3 cannot be pruned or quantized by tensorflow-model-optimization.
``TF_USE_LEGACY_KERAS`` must be set before TensorFlow is first imported.
"""

from __future__ import annotations

import os
import sys

os.environ["TF_USE_LEGACY_KERAS"] = "1"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep TensorFlow's C++ start-up chatter quiet

# TensorFlow 2.21 logs its start-up through absl on file descriptor 2 whatever TF_CPP_MIN_LOG_LEVEL
# says (oneDNN, "Could not find cuda drivers"): six lines before every train/export message, even
# a one-line error. Capture fd 2 during the import, drop that chatter and pass anything else on.
from hairseg_edge.runtime import native_stderr, native_verbose  # noqa: E402

_STARTUP_NOISE = ("All log messages before absl::InitializeLog()", "port.cc", "cudart_stub.cc",
                  "cpu_feature_guard.cc", "To enable the following instructions",
                  "failed call to cuInit")

with native_stderr() as _startup_lines:
    import tensorflow as tf  # noqa: E402
    import tf_keras as keras  # noqa: E402

    # Looking for GPUs here, inside the capture, is what makes a machine without a CUDA driver say
    # "failed call to cuInit" now, rather than in the middle of a later one-line error.
    tf.config.list_physical_devices("GPU")
for _line in _startup_lines:
    if native_verbose() or not any(noise in _line for noise in _STARTUP_NOISE):
        print(_line, file=sys.stderr)

__all__ = ["keras", "tf"]
