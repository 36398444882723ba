"""Build tiny, real .tflite models for the device-runtime tests: ``python tiny_tflite_models.py OUT_DIR``.

Runs in its own process (it needs TensorFlow, which the test process must never import) and writes
``OUT_DIR/models.json`` mapping a name to each file:

* ``float32``    32x32 hairseg-style model, float32 IO. Its weights are set by hand so that
                 ``hair probability = sigmoid(10 * R / 255 - 5)`` at every pixel (R = the red channel):
                 red pixels are hair, dark ones are not. Tests can predict every output exactly.
* ``uint8``      the same model, full-integer int8 with uint8 input and output (the deployment format).
* ``int8``       the same model, full-integer int8 with int8 input and output.
* ``classifier`` a valid .tflite whose outputs are class scores and an ARG_MAX class id (not a hair
                 map; ARG_MAX and int64 are not GPU-delegate compatible).
* ``halfres``    a one-channel sigmoid output at half the input's resolution (not a hair map either).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

SIZE = 32


def _hair_is_red_model(keras, np):
    inp = keras.Input(batch_size=1, shape=(SIZE, SIZE, 3), name="rgb")
    x = keras.layers.Rescaling(1.0 / 255.0, name="rescale")(inp)
    conv1 = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="features")
    conv2 = keras.layers.Conv2D(1, 1, activation="sigmoid", name="hair")
    model = keras.Model(inp, conv2(conv1(x)), name="tiny_hairseg")
    # conv1 copies R, G, B (centre tap) and their mean; conv2 turns R into 10 * R - 5 -> sigmoid.
    w1 = np.zeros((3, 3, 3, 4), np.float32)
    for c in range(3):
        w1[1, 1, c, c] = 1.0
    w1[1, 1, :, 3] = 1.0 / 3.0
    conv1.set_weights([w1, np.zeros(4, np.float32)])
    w2 = np.zeros((1, 1, 4, 1), np.float32)
    w2[0, 0, 0, 0] = 10.0
    conv2.set_weights([w2, np.array([-5.0], np.float32)])
    return model


def _classifier(keras, tf):
    inp = keras.Input(batch_size=1, shape=(SIZE, SIZE, 3), name="rgb")
    x = keras.layers.Rescaling(1.0 / 255.0)(inp)
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    scores = keras.layers.Dense(10, activation="softmax", name="scores")(x)
    label = keras.layers.Lambda(lambda t: tf.argmax(t, axis=-1), name="label")(scores)
    return keras.Model(inp, [scores, label], name="tiny_classifier")


def _halfres(keras):
    inp = keras.Input(batch_size=1, shape=(SIZE, SIZE, 3), name="rgb")
    x = keras.layers.Rescaling(1.0 / 255.0)(inp)
    out = keras.layers.Conv2D(1, 3, strides=2, padding="same", activation="sigmoid")(x)
    return keras.Model(inp, out, name="tiny_halfres")


def build(out_dir: Path) -> dict[str, str]:
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import numpy as np
    import tensorflow as tf
    import tf_keras as keras

    tf.random.set_seed(0)
    out_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)

    def representative():
        for _ in range(32):
            yield [rng.integers(0, 256, size=(1, SIZE, SIZE, 3)).astype(np.float32)]

    def convert(model, *, io_type=None):
        converter = tf.lite.TFLiteConverter.from_keras_model(model)
        if io_type is not None:
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
            converter.representative_dataset = representative
            converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
            converter.inference_input_type = io_type
            converter.inference_output_type = io_type
        return converter.convert()

    hair = _hair_is_red_model(keras, np)
    files = {
        "float32": convert(hair),
        "uint8": convert(hair, io_type=tf.uint8),
        "int8": convert(hair, io_type=tf.int8),
        "classifier": convert(_classifier(keras, tf)),
        "halfres": convert(_halfres(keras)),
    }
    paths = {}
    for name, data in files.items():
        path = out_dir / f"tiny_{name}.tflite"
        path.write_bytes(data)
        paths[name] = str(path)
    (out_dir / "models.json").write_text(json.dumps(paths, indent=2))
    return paths


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(f"usage: {sys.argv[0]} OUT_DIR")
    print(json.dumps(build(Path(sys.argv[1]))))
