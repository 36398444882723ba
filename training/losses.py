"""Losses for a one-channel hair probability: binary cross-entropy plus soft Dice.

BCE gives well-calibrated per-pixel probabilities (the int8 output and the 0.5 threshold rely on it);
Dice optimises the overlap directly and does not drown thin hair strands in background pixels.
"""

from __future__ import annotations

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
