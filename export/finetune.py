"""The short fine-tune shared by pruning and quantization-aware training.

It uses the training side's own input pipeline and loss (:mod:`hairseg_edge.training.pipeline`,
:mod:`hairseg_edge.training.losses`), so a pruned or QAT model sees exactly the pixels (contract
letterbox, augmentation) and the objective it was trained with.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from hairseg_edge.training import losses, pipeline
from hairseg_edge.training.keras_compat import keras

from .image_sets import ImageSet

#: ``progress(message)``: one line per event (epoch ends), for the CLI to show.
ProgressCallback = Callable[[str], None]


@dataclass(frozen=True)
class FinetunePlan:
    """How long a fine-tune runs, fixed before it starts (pruning schedules are built from it)."""

    epochs: int
    steps_per_epoch: int
    batch_size: int
    learning_rate: float
    images: int

    @property
    def total_steps(self) -> int:
        return self.epochs * self.steps_per_epoch

    def to_dict(self) -> dict[str, Any]:
        return {"epochs": self.epochs, "steps_per_epoch": self.steps_per_epoch,
                "total_steps": self.total_steps, "batch_size": self.batch_size,
                "learning_rate": self.learning_rate, "images": self.images}


def plan_finetune(images: ImageSet, *, epochs: int, steps: int | None, batch_size: int,
                  learning_rate: float) -> FinetunePlan:
    """``steps`` per epoch, or one pass over ``images`` per epoch when None."""
    per_epoch = steps if steps is not None else pipeline.steps_per_epoch(len(images), batch_size)
    return FinetunePlan(epochs, per_epoch, batch_size, learning_rate, len(images))


class _EpochReporter(keras.callbacks.Callback):
    def __init__(self, what: str, epochs: int, progress: ProgressCallback | None):
        super().__init__()
        self.what = what
        self.epochs = epochs
        self.progress = progress

    def on_epoch_end(self, epoch: int, logs: dict[str, float] | None = None) -> None:
        if self.progress is not None:
            loss = (logs or {}).get("loss")
            shown = f", loss {loss:.4f}" if loss is not None else ""
            self.progress(f"{self.what}: epoch {epoch + 1}/{self.epochs}{shown}")


def finetune(model: keras.Model, images: ImageSet, input_size: int, plan: FinetunePlan, *,
             what: str, seed: int = 0, callbacks: Sequence[keras.callbacks.Callback] = (),
             progress: ProgressCallback | None = None) -> list[float]:
    """Fit ``model`` in place on ``images`` for ``plan``; returns the loss after each epoch.

    The model must accept any batch size (the caller fine-tunes a batch-None copy and fixes the
    batch to 1 only for conversion).
    """
    data = pipeline.make_dataset(images.samples, input_size, plan.batch_size, training=True, seed=seed)
    model.compile(optimizer=keras.optimizers.Adam(plan.learning_rate), loss=losses.bce_dice())
    pipeline.forget_input_errors()
    try:
        history = model.fit(
            data,
            epochs=plan.epochs,
            steps_per_epoch=plan.steps_per_epoch,
            callbacks=[*callbacks, _EpochReporter(what, plan.epochs, progress)],
            verbose=0,
        )
    except Exception as exc:  # an unreadable image found mid-epoch: its one-line InputError
        pipeline.reraise_input_error(exc)
        raise
    return [float(v) for v in history.history.get("loss", [])]
