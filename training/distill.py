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
        teacher = _rebuilt_at(teacher, path, img_size)
        if teacher is None:
            raise InputError(f"--teacher: does not take a {img_size} px input ({reason(exc)}), and no "
                             "train_options.json or model card beside it names the architecture to rebuild "
                             "it at that size", path) from None
        probe = teacher(tf.zeros((1, img_size, img_size, 3)), training=False)
    if tuple(probe.shape) != (1, img_size, img_size, 1):
        raise InputError(f"--teacher: expected a [1, {img_size}, {img_size}, 1] hair map for a {img_size} px "
                         f"input, got {list(probe.shape)}", path)
    teacher.trainable = False
    return teacher


def model_recipe(path: str | Path) -> tuple[str, float] | None:
    """``(arch, width)`` of a saved model, from what sits beside it: its run's train_options.json, the
    first ingredient of a soup (average.json), or the model card of a bundled tier's float file."""
    import json

    from hairseg_edge.models import tier_of

    path = Path(path)
    options = path.parent / "train_options.json"
    if options.is_file():
        recipe = json.loads(options.read_text(encoding="utf-8"))
        return recipe["arch"], float(recipe["width"])
    soup = path.parent / "average.json"
    if soup.is_file():
        first = json.loads(soup.read_text(encoding="utf-8"))["models"][0]["path"]
        return model_recipe(first) if Path(first).resolve() != path.resolve() else None
    tier = tier_of(path)
    if tier is not None and tier.card_path().is_file():
        card = json.loads(tier.card_path().read_text(encoding="utf-8"))
        return card["architecture"], float(card["width"])
    return None


def _rebuilt_at(teacher: keras.Model, path: str | Path, img_size: int) -> keras.Model | None:
    """The teacher's architecture built for ``img_size`` with the teacher's weights, or None when its
    architecture is not known. Every architecture here has size-independent weights, but a saved
    model's graph is fixed to its input size (the large tier's context module upsamples its pooled
    features by the stride-32 map's size), so a 256 px teacher for a 224 px student is rebuilt."""
    from .archs import build_model

    try:
        recipe = model_recipe(path)
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if recipe is None:
        return None
    try:
        rebuilt = build_model(recipe[0], img_size, recipe[1])
    except (KeyError, ValueError):
        return None
    weights = teacher.get_weights()
    if [w.shape for w in weights] != [tuple(w.shape) for w in rebuilt.get_weights()]:
        return None
    rebuilt.set_weights(weights)
    return rebuilt


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
