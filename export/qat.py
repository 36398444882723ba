"""Quantization-aware training with tfmot: annotate, apply a scheme, fine-tune briefly.

Round trip::

    result = quantize_aware(model, images, input_size, plan=plan)           # or preserve_sparsity=True
    result.model            # tf_keras model with fake-quant wrappers, ready for the int8 converter
    result.scheme           # "default_8bit" or "prune_preserve_8bit"
    result.note             # why the sparsity-preserving scheme was not used, when it was not

**Annotation.** Every layer that tfmot's default 8-bit registry supports is annotated. The
contract's input ``Rescaling`` layer is not in that registry; it gets a config that fake-quantizes
its output (an 8-bit moving-average range), which is what the integer converter does to it anyway.
A layer that neither covers stays float during QAT and is calibrated by the converter; the report
lists such layers.

**Sparsity.** With ``preserve_sparsity=True`` (after pruning) the model is quantized with
``Default8BitPrunePreserveQuantizeScheme``, which keeps the pruned zeros at zero while fine-tuning.
tfmot supports it for Conv2D, Dense and DepthwiseConv2D kernels only (it fails on
Conv2DTranspose, for example). When it cannot be applied the default scheme is used instead, the
result's ``note`` says so and why, and the sparsity that survives is measured and reported.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import tensorflow_model_optimization as tfmot

from hairseg_edge.training.keras_compat import keras

from .finetune import FinetunePlan, ProgressCallback, finetune
from .image_sets import ImageSet
from .keras_models import copy_model

qk = tfmot.quantization.keras

DEFAULT_SCHEME = "default_8bit"
PRUNE_PRESERVE_SCHEME = "prune_preserve_8bit"


class OutputOnlyQuantizeConfig(qk.QuantizeConfig):
    """Fake-quantize a weightless layer's output with an 8-bit moving-average range.

    Used for the contract's ``Rescaling`` (x / 255), which tfmot's registry does not know.
    """

    def get_weights_and_quantizers(self, layer):
        return []

    def get_activations_and_quantizers(self, layer):
        return []

    def set_quantize_weights(self, layer, quantize_weights):
        pass

    def set_quantize_activations(self, layer, quantize_activations):
        pass

    def get_output_quantizers(self, layer):
        return [qk.quantizers.MovingAverageQuantizer(num_bits=8, per_axis=False, symmetric=False,
                                                     narrow_range=False)]

    def get_config(self):
        return {}


#: Custom objects needed to rebuild a QAT model (tfmot's own are added by ``quantize_scope``).
QAT_CUSTOM_OBJECTS = {"OutputOnlyQuantizeConfig": OutputOnlyQuantizeConfig}

#: Weightless layer types given :class:`OutputOnlyQuantizeConfig` when the registry lacks them.
_OUTPUT_ONLY_TYPES = ("Rescaling",)


@dataclass(frozen=True)
class QatResult:
    """The fine-tuned QAT model (any batch), its batch-1 twin for conversion, and what was done."""

    model: keras.Model
    export_model: keras.Model
    scheme: str
    note: str | None
    float_layers: tuple[str, ...]
    plan: FinetunePlan
    losses: tuple[float, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"scheme": self.scheme, "note": self.note, "layers_left_float": list(self.float_layers),
                "finetune": self.plan.to_dict(), "losses": list(self.losses)}


def annotate(model: keras.Model) -> tuple[keras.Model, list[str]]:
    """(annotated model, names of layers left unannotated). ``model`` must be a private copy."""
    registry = qk.default_8bit.Default8BitQuantizeRegistry()
    left_float: list[str] = []

    def annotate_layer(layer: keras.layers.Layer) -> keras.layers.Layer:
        if isinstance(layer, keras.layers.InputLayer):
            return layer
        # BatchNormalization is not in the registry on its own: tfmot's layout transforms fold it into
        # the conv before it, and they only match when both layers are annotated.
        if registry.supports(layer) or isinstance(layer, keras.layers.BatchNormalization):
            return qk.quantize_annotate_layer(layer)
        if type(layer).__name__ in _OUTPUT_ONLY_TYPES:
            return qk.quantize_annotate_layer(layer, OutputOnlyQuantizeConfig())
        left_float.append(layer.name)
        return layer

    with qk.quantize_scope(QAT_CUSTOM_OBJECTS):
        annotated = keras.models.clone_model(model, clone_function=annotate_layer)
    return annotated, left_float


def apply_scheme(annotated: keras.Model, preserve_sparsity: bool) -> tuple[keras.Model, str, str | None]:
    """(QAT model, scheme name, note). Falls back to the default scheme when preserving fails."""
    note = None
    with qk.quantize_scope(QAT_CUSTOM_OBJECTS):
        if preserve_sparsity:
            try:
                scheme = tfmot.experimental.combine.Default8BitPrunePreserveQuantizeScheme()
                return qk.quantize_apply(annotated, scheme), PRUNE_PRESERVE_SCHEME, None
            except (ValueError, RuntimeError, TypeError) as exc:
                note = (f"sparsity-preserving QAT is not possible for this model ({_short_reason(exc)}); "
                        "used the default 8-bit scheme, so fine-tuning may refill pruned weights (the "
                        "sparsity that survived is reported)")
        return qk.quantize_apply(annotated), DEFAULT_SCHEME, note


def _short_reason(exc: BaseException) -> str:
    """tfmot's "Layer x:<class '...Conv2DTranspose'> is not supported. You can ..." -> one clause."""
    text = str(exc).strip()
    found = re.search(r"Layer (\S+?):<class '[\w.]*?(\w+)'> is not supported", text)
    if found:
        return f"layer {found.group(1)} ({found.group(2)}) is not supported by it"
    return (text.splitlines()[0] if text else type(exc).__name__)[:200]


def quantize_aware(model: keras.Model, images: ImageSet, input_size: int, *, plan: FinetunePlan,
                   preserve_sparsity: bool = False, seed: int = 0,
                   progress: ProgressCallback | None = None) -> QatResult:
    """Quantization-aware fine-tune of a copy of ``model`` (which is not modified).

    The fine-tune runs on a batch-None copy; the batch-1 model for conversion is then made by
    applying the same annotation and scheme to a batch-1 copy of ``model`` and copying the trained
    weights over (the transform is deterministic, so the weight lists line up one to one).
    """
    annotated, left_float = annotate(copy_model(model, batch_size=None))
    quantized, scheme, note = apply_scheme(annotated, preserve_sparsity)
    if note is not None and progress is not None:
        progress(f"warning: {note}")
    history = finetune(quantized, images, input_size, plan, what=f"QAT ({scheme})", seed=seed,
                       progress=progress)
    export_model = _rebuild(model, quantized, scheme)
    return QatResult(quantized, export_model, scheme, note, tuple(left_float), plan, tuple(history))


def _rebuild(model: keras.Model, trained: keras.Model, scheme: str) -> keras.Model:
    """The batch-1 twin of ``trained`` (a QAT model of ``model``) with its trained weights."""
    annotated, _ = annotate(copy_model(model, batch_size=1))
    twin, twin_scheme, _ = apply_scheme(annotated, preserve_sparsity=scheme == PRUNE_PRESERVE_SCHEME)
    if twin_scheme != scheme:  # the scheme applied to the first copy must apply to the second
        raise RuntimeError(f"QAT scheme changed between copies ({scheme} -> {twin_scheme})")
    twin.set_weights(trained.get_weights())
    return twin
