"""Losses for a one-channel hair probability: binary cross-entropy plus soft Dice.

BCE gives well-calibrated per-pixel probabilities (the int8 output and the 0.5 threshold rely on it);
Dice optimises the overlap directly and does not drown thin hair strands in background pixels.
"""

from __future__ import annotations

from collections.abc import Callable

from .keras_compat import keras, tf


@keras.saving.register_keras_serializable(package="hairseg_edge")
class BceDiceLoss(keras.losses.Loss):
    def __init__(self, dice_weight: float = 1.0, smooth: float = 1.0, name: str = "bce_dice", **kwargs):
        super().__init__(name=name, **kwargs)
        self.dice_weight = float(dice_weight)
        self.smooth = float(smooth)

    def call(self, y_true, y_pred):
        y_true = tf.cast(y_true, tf.float32)
        y_pred = tf.clip_by_value(tf.cast(y_pred, tf.float32), 1e-6, 1.0 - 1e-6)
        bce = tf.reduce_mean(keras.backend.binary_crossentropy(y_true, y_pred), axis=[1, 2, 3])
        inter = tf.reduce_sum(y_true * y_pred, axis=[1, 2, 3])
        denom = tf.reduce_sum(y_true + y_pred, axis=[1, 2, 3])
        dice = 1.0 - (2.0 * inter + self.smooth) / (denom + self.smooth)
        return bce + self.dice_weight * dice

    def get_config(self):
        return {**super().get_config(), "dice_weight": self.dice_weight, "smooth": self.smooth}


def bce_dice(dice_weight: float = 1.0) -> BceDiceLoss:
    return BceDiceLoss(dice_weight=dice_weight)


#: Losses a run can train with, by name (``TrainOptions.loss``): a factory taking ``--dice-weight``.
#: Studies add theirs with :func:`register_loss` (benchmarks/loss_targets.py adds ``bce_lovasz``).
LOSSES: dict[str, Callable[[float], keras.losses.Loss]] = {"bce_dice": bce_dice}
DEFAULT_LOSS = "bce_dice"


def register_loss(name: str, factory: Callable[[float], keras.losses.Loss]) -> None:
    """Make ``factory(dice_weight)`` the loss named ``name`` (a Keras-serialisable loss, so checkpoints
    of a run with it load back once it is registered again)."""
    LOSSES[name] = factory


def make_loss(name: str, dice_weight: float = 1.0) -> keras.losses.Loss:
    """The registered loss ``name``; ValueError naming the choices when there is none."""
    if name not in LOSSES:
        raise ValueError(f"unknown loss {name!r}; choose from {', '.join(sorted(LOSSES))}")
    return LOSSES[name](dice_weight)
