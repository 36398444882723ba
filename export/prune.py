"""Magnitude pruning with tfmot: wrap, fine-tune with a polynomial schedule, strip, measure.

Round trip (every step returns a new model; the float original is never touched)::

    result = prune(model, images, input_size, target=0.5, plan=plan)
    result.model        # stripped tf_keras model: plain layers, zeros in the pruned kernels
    result.overall      # achieved sparsity over the pruned kernels, e.g. 0.500
    result.layers       # per-layer sparsity

**Which kernels are pruned.** Conv2D, SeparableConv2D (its pointwise kernel), Conv2DTranspose and
Dense kernels, except the first one (the stem, which sees the raw image) and the last one (the
one-channel head). Those two hold a tiny share of the weights and most of the sensitivity.
DepthwiseConv2D kernels are left dense: they are a few percent of a MobileNet's weights, and
tfmot's sparsity-preserving QAT cannot keep zeros in them anyway.

**Schedule.** ``PolynomialDecay`` from 0 to ``target``, starting at step 0 and ending at 70% of the
fine-tune, with masks updated about ten times on the way. tfmot's default frequency (100 steps)
would leave a short fine-tune at sparsity 0, so the frequency and end step are derived from the
fine-tune length, and the end step is a multiple of the frequency so the last update reaches
exactly ``target``. The remaining 30% of the steps recover accuracy at the final mask.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import tensorflow_model_optimization as tfmot

from hairseg_edge.errors import InputError
from hairseg_edge.training.keras_compat import keras

from .finetune import FinetunePlan, ProgressCallback, finetune
from .image_sets import ImageSet
from .keras_models import copy_model, kernel_layers

#: Share of the fine-tune spent ramping the sparsity up; the rest runs at the final mask.
RAMP_FRACTION = 0.7
#: About this many mask updates during the ramp.
MASK_UPDATES = 10
#: Kernel layer types whose kernels are pruned.
PRUNED_TYPES = ("Conv2D", "SeparableConv2D", "Conv2DTranspose", "Dense")


@dataclass(frozen=True)
class PruningSchedule:
    """The explicit PolynomialDecay parameters used (recorded in the report)."""

    initial_sparsity: float
    final_sparsity: float
    begin_step: int
    end_step: int
    frequency: int
    total_steps: int

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "PolynomialDecay", "initial_sparsity": self.initial_sparsity,
                "final_sparsity": self.final_sparsity, "begin_step": self.begin_step,
                "end_step": self.end_step, "frequency": self.frequency, "total_steps": self.total_steps}

    def to_tfmot(self) -> tfmot.sparsity.keras.PolynomialDecay:
        return tfmot.sparsity.keras.PolynomialDecay(
            initial_sparsity=self.initial_sparsity, final_sparsity=self.final_sparsity,
            begin_step=self.begin_step, end_step=self.end_step, frequency=self.frequency)


def schedule_for(target: float, total_steps: int) -> PruningSchedule:
    """The schedule for ``target`` sparsity over a fine-tune of ``total_steps`` steps.

    tfmot's step counter is 1 on the first batch, and masks update when ``step % frequency == 0``
    for ``step <= end_step``; the last update, at ``end_step``, applies ``target`` exactly.
    """
    if total_steps < 2:
        raise InputError(f"pruning needs a fine-tune of at least 2 steps, got {total_steps} "
                         "(raise --finetune-steps or --finetune-epochs)")
    ramp = max(1, int(total_steps * RAMP_FRACTION))
    frequency = max(1, ramp // MASK_UPDATES)
    end_step = max(frequency, (ramp // frequency) * frequency)
    return PruningSchedule(0.0, float(target), 0, end_step, frequency, total_steps)


@dataclass(frozen=True)
class LayerSparsity:
    layer: str
    weight: str
    size: int
    zeros: int

    @property
    def sparsity(self) -> float:
        return self.zeros / self.size if self.size else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"layer": self.layer, "weight": self.weight, "size": self.size, "zeros": self.zeros,
                "sparsity": self.sparsity}


@dataclass(frozen=True)
class SparsityReport:
    layers: tuple[LayerSparsity, ...]

    @property
    def overall(self) -> float:
        size = sum(item.size for item in self.layers)
        return sum(item.zeros for item in self.layers) / size if size else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"overall": self.overall, "layers": [item.to_dict() for item in self.layers]}


@dataclass(frozen=True)
class PruneResult:
    """A stripped pruned model and what was done to it."""

    model: keras.Model
    target: float
    schedule: PruningSchedule
    plan: FinetunePlan
    sparsity: SparsityReport
    skipped: tuple[str, ...]
    losses: tuple[float, ...]

    @property
    def overall(self) -> float:
        return self.sparsity.overall

    @property
    def pruned_weights(self) -> dict[str, str]:
        """``{layer name: attribute of its pruned kernel}`` (to measure sparsity after QAT too)."""
        return {item.layer: item.weight for item in self.sparsity.layers}

    def to_dict(self) -> dict[str, Any]:
        return {"target": self.target, "schedule": self.schedule.to_dict(),
                "finetune": self.plan.to_dict(), "sparsity": self.overall,
                "layers": [item.to_dict() for item in self.sparsity.layers],
                "left_dense": list(self.skipped), "losses": list(self.losses)}


def layers_to_prune(model: keras.Model) -> tuple[list[str], list[str]]:
    """(names of layers to prune, names of kernel layers left dense), see the module docstring."""
    kernels = kernel_layers(model)
    prunable = [layer for layer in kernels if type(layer).__name__ in PRUNED_TYPES]
    edges = {prunable[0].name, prunable[-1].name} if len(prunable) > 2 else set()
    chosen = [layer.name for layer in prunable if layer.name not in edges]
    skipped = [layer.name for layer in kernels if layer.name not in chosen]
    if not chosen:
        raise InputError("the model has no convolution or dense kernels to prune besides its first "
                         "and last layers")
    return chosen, skipped


def _weight_attribute(variable: Any) -> str:
    """``"enc1_conv/kernel:0"`` -> ``"kernel"``."""
    return variable.name.split("/")[-1].split(":")[0]


def measure_sparsity(model: keras.Model, weights: dict[str, str]) -> SparsityReport:
    """Fraction of exact zeros in each listed kernel (``{layer: attribute}``) of a plain or QAT model.

    In a quantization-aware model the layer ``name`` is wrapped as ``quant_<name>``; its float
    kernel is measured (int8 keeps zeros as zeros: weight zero points are 0).
    """
    items = []
    names = {layer.name: layer for layer in model.layers}
    for name, attribute in weights.items():
        layer = names.get(name) or names.get(f"quant_{name}")
        if layer is None:
            raise ValueError(f"layer {name!r} is not in the model")
        # Look the variable up by name: a QAT wrapper replaces the inner layer's kernel attribute
        # with its fake-quantized tensor, but the trained variable is still among its weights.
        matches = [w for w in layer.weights if _weight_attribute(w) == attribute]
        if len(matches) != 1:
            raise ValueError(f"layer {name!r} has {len(matches)} weights called {attribute!r}")
        values = np.asarray(matches[0].numpy())
        items.append(LayerSparsity(name, attribute, int(values.size), int(np.count_nonzero(values == 0))))
    return SparsityReport(tuple(items))


def prune(model: keras.Model, images: ImageSet, input_size: int, *, target: float, plan: FinetunePlan,
          seed: int = 0, progress: ProgressCallback | None = None) -> PruneResult:
    """Prune ``target`` of the chosen kernels' weights by magnitude while fine-tuning; strip.

    ``model`` is copied first (batch size None for fine-tuning) and is not modified.
    """
    if not 0.0 < target < 1.0:
        raise InputError(f"target sparsity must be strictly between 0 and 1, got {target}")
    schedule = schedule_for(target, plan.total_steps)
    work = copy_model(model, batch_size=None)
    chosen, skipped = layers_to_prune(work)

    def wrap(layer: keras.layers.Layer) -> keras.layers.Layer:
        if layer.name in chosen:
            return tfmot.sparsity.keras.prune_low_magnitude(layer, pruning_schedule=schedule.to_tfmot())
        return layer

    # ``work`` is our private copy, so wrapping (and sharing) its layers is safe.
    wrapped = keras.models.clone_model(work, clone_function=wrap)
    pruned_weights = {}
    for layer in wrapped.layers:
        if hasattr(layer, "pruning_vars"):  # a tfmot pruning wrapper (its class is not public API)
            for variable, _mask, _threshold in layer.pruning_vars:
                pruned_weights[layer.layer.name] = _weight_attribute(variable)
    history = finetune(wrapped, images, input_size, plan, what=f"pruning to {target:.0%}", seed=seed,
                       callbacks=[tfmot.sparsity.keras.UpdatePruningStep()], progress=progress)
    stripped = tfmot.sparsity.keras.strip_pruning(wrapped)
    return PruneResult(
        model=stripped,
        target=float(target),
        schedule=schedule,
        plan=plan,
        sparsity=measure_sparsity(stripped, pruned_weights),
        skipped=tuple(skipped),
        losses=tuple(history),
    )
