"""Loading the float Keras model safely, copying it, and fixing its batch size to 1 for conversion.

Every function returns a new model and leaves its argument untouched: tfmot's wrappers mutate the
layers they wrap, so the float original (the reference of the gate) must never share layers with a
model that is pruned or quantized.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

from hairseg_edge.errors import InputError
from hairseg_edge.training.keras_compat import keras

KERNEL_LAYER_TYPES = ("Conv2D", "SeparableConv2D", "Conv2DTranspose", "Dense", "DepthwiseConv2D")


def load_float_model(path: str | os.PathLike[str]) -> keras.Model:
    """Load a ``.keras`` model file (safe mode: no arbitrary code) and check its contract shapes.

    The model must take one ``[B, S, S, 3]`` image (raw RGB 0..255; the Rescaling is inside) and
    return one ``[B, S, S, 1]`` hair probability. Anything else is an InputError naming the file.
    """
    path = Path(path)
    if not path.exists():
        raise InputError("no such file", path)
    if path.is_dir():
        raise InputError("is a folder, expected a .keras model file", path)
    if path.suffix != ".keras":
        raise InputError("expected a .keras model file (from hairseg-edge train)", path)
    # Custom objects the training side registers (the loss) must be known before deserializing.
    from hairseg_edge.training import losses  # noqa: F401

    try:
        with warnings.catch_warnings():
            # Keras warns (on stderr) before refusing a Lambda layer; the refusal below says it all.
            warnings.simplefilter("ignore")
            model = keras.models.load_model(path, safe_mode=True, compile=False)
    except Exception as exc:  # Keras raises many types (ValueError, OSError, zipfile errors, ...)
        raise InputError(f"not a loadable Keras model ({_load_failure(exc)})", path) from None
    if not isinstance(model, keras.Model):
        raise InputError(f"holds a {type(model).__name__}, not a Keras model", path)
    input_size_of(model, path)
    return model


def _load_failure(exc: BaseException) -> str:
    """Keras' reason for refusing a file, in one short clause."""
    text = " ".join(str(exc).split())
    if "Lambda" in text and ("safe" in text or "arbitrary code" in text):
        return "it holds a Lambda layer, i.e. Python code, which safe mode refuses to run"
    if not text:
        return type(exc).__name__
    first_sentence = text.split(". ")[0].rstrip(".")
    return first_sentence if len(first_sentence) <= 200 else first_sentence[:197] + "..."


def input_size_of(model: keras.Model, path: str | os.PathLike[str] | None = None) -> int:
    """The side ``S`` of the model's square ``[B, S, S, 3]`` input; checks the ``[B, S, S, 1]`` output."""
    where = path if path is not None else None
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise InputError(f"expected one input and one output, the model has {len(model.inputs)} and "
                         f"{len(model.outputs)}", where)
    in_shape = tuple(model.inputs[0].shape)
    out_shape = tuple(model.outputs[0].shape)
    if len(in_shape) != 4 or in_shape[3] != 3 or in_shape[1] is None or in_shape[1] != in_shape[2]:
        raise InputError(f"expected a square RGB input [batch, S, S, 3], got {list(in_shape)}", where)
    if len(out_shape) != 4 or out_shape[1:] != (in_shape[1], in_shape[2], 1):
        raise InputError(f"expected a one-channel output at the input size [batch, {in_shape[1]}, "
                         f"{in_shape[2]}, 1], got {list(out_shape)}", where)
    return int(in_shape[1])


def batch_size_of(model: keras.Model) -> int | None:
    return model.inputs[0].shape[0]


def copy_model(model: keras.Model, *, batch_size: int | None | str = "same") -> keras.Model:
    """A new model with the same architecture and weights and no layer shared with ``model``.

    ``batch_size`` fixes the input's batch dimension (``None`` = any, ``1`` = the export graph);
    ``"same"`` keeps the model's own. For plain Keras layers; a quantization-aware model is rebuilt
    by re-applying its transform instead (see :mod:`hairseg_edge.export.qat`).
    """
    if batch_size == "same":
        batch_size = batch_size_of(model)
    source_input = model.inputs[0]
    new_input = keras.Input(shape=tuple(source_input.shape[1:]), batch_size=batch_size,
                            dtype=source_input.dtype, name=model.input_names[0])
    clone = keras.models.clone_model(model, input_tensors=new_input)
    clone.set_weights(model.get_weights())
    return clone


def with_batch_size_one(model: keras.Model) -> keras.Model:
    """``model`` itself when its batch size is already 1, else a batch-1 copy with the same weights.

    Converting a batch-None graph leaves SHAPE/STRIDED_SLICE ops in the .tflite that split the
    XNNPACK graph; a fixed batch of 1 gives a clean, fully delegated graph.
    """
    if batch_size_of(model) == 1:
        return model
    return copy_model(model, batch_size=1)


def kernel_layers(model: keras.Model) -> list[keras.layers.Layer]:
    """Layers holding a convolution or dense kernel, in graph order."""
    return [layer for layer in model.layers if type(layer).__name__ in KERNEL_LAYER_TYPES]
