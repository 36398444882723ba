"""Distillation: a frozen teacher's probability mixed into the targets inside the training step."""

from __future__ import annotations

from pathlib import Path

from hairseg_edge.errors import InputError, reason

from .keras_compat import keras, tf


def load_teacher(path: str | Path, img_size: int) -> keras.Model:
    """A trained hair model to distil from, frozen; an InputError naming it when it cannot serve."""
    try:
        teacher = keras.models.load_model(path, compile=False, safe_mode=True)
    except Exception as exc:  # OSError from h5py, ValueError, zipfile errors, ...
        raise InputError(f"--teacher: cannot load the model ({reason(exc)})", path) from None
    try:
        probe = teacher(tf.zeros((1, img_size, img_size, 3)), training=False)
    except (ValueError, TypeError) as exc:  # a model built for another input size
        raise InputError(f"--teacher: does not take a {img_size} px input ({reason(exc)})", path) from None
    if tuple(probe.shape) != (1, img_size, img_size, 1):
        raise InputError(f"--teacher: expected a [1, {img_size}, {img_size}, 1] hair map for a {img_size} px "
                         f"input, got {list(probe.shape)}", path)
    teacher.trainable = False
    return teacher


def soft_targets(teacher: keras.Model, images: tf.Tensor, masks: tf.Tensor, weight: float) -> tf.Tensor:
    """``(1 - weight) * masks + weight * p``, p the teacher's probability averaged over the image and its
    mirror image. The mirrored average is a better teacher than one pass (flip test-time augmentation
    gave the v7 model +0.4 point on CelebAMask-HQ), at a cost the student does not pay at run time."""
    p = teacher(images, training=False)
    mirrored = teacher(tf.reverse(images, axis=[2]), training=False)
    p = 0.5 * (tf.cast(p, tf.float32) + tf.reverse(tf.cast(mirrored, tf.float32), axis=[2]))
    return (1.0 - weight) * tf.cast(masks, tf.float32) + weight * p


def distil_into(model: keras.Model, teacher: keras.Model, weight: float) -> None:
    """Make ``model.fit`` train on :func:`soft_targets` instead of the masks.

    The teacher runs inside the training step, so on GPUs it runs on each replica's device with its
    slice of the batch, not in the CPU input pipeline. Only the step changes: the saved model,
    validation (on the real masks) and export are those of the student alone.
    """
    base_step = model.train_step

    def train_step(data):
        images, masks = data[0], data[1]
        return base_step((images, soft_targets(teacher, images, masks, weight)))

    model.train_step = train_step
