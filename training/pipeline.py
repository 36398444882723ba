"""tf.data input pipeline: streaming decode, augmentation for photos in the wild, the contract's letterbox.

Memory is bounded by the shuffle buffer (sample *indices*, not pixels), the parallel map and the
prefetch depth; never by the data set's size. Decoding and augmentation run in numpy/OpenCV inside
``tf.numpy_function`` so the exact same :mod:`hairseg_edge.contract` code that serves on the device
prepares the training batches (no train/serve skew). OpenCV releases the GIL, so the parallel map
scales with cores.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import cv2
import numpy as np

from hairseg_edge import contract
from hairseg_edge.data import Sample, load_sample
from hairseg_edge.errors import InputError

from .keras_compat import tf


@dataclass(frozen=True)
class AugmentOptions:
    """Random transforms applied to training samples (validation gets none)."""

    scale: tuple[float, float] = (0.7, 1.35)  # zoom factor of the whole photo
    max_rotation_deg: float = 15.0
    max_translate: float = 0.12  # fraction of the image side
    flip_prob: float = 0.5
    zoom_crop_prob: float = 0.15  # "non-face crops": a close-up of part of the photo
    zoom_out_prob: float = 0.0  # a share of photos shrunk further, to zoom_out x: heads small in the frame
    zoom_out: tuple[float, float] = (0.35, 0.7)
    # A share of photos shrunk to ``reenlarge`` x and enlarged back, the mask untouched: what the region
    # stage (hairseg_edge/roi.py) feeds the model when it crops a small head and enlarges it.
    reenlarge_prob: float = 0.0
    reenlarge: tuple[float, float] = (0.25, 0.6)
    # A share of photos cut to a band of rows (or, a third of the time, of columns) spanning ``band`` of
    # the side: a landscape webcam frame whose top edge cuts through the hair, or a portrait phone frame
    # that cuts the sides. Without it a model with a wide receptive field learns "the band above the
    # eyes is hair" from aligned faces and paints a forehead at the frame's edge as hair.
    band_crop_prob: float = 0.0
    band: tuple[float, float] = (0.45, 0.8)
    color_jitter: float = 0.25  # brightness/contrast/saturation strength
    hue_shift_deg: float = 10.0
    gray_prob: float = 0.05
    blur_prob: float = 0.15
    noise_prob: float = 0.2
    jpeg_prob: float = 0.2  # camera-like compression artefacts
    # Apps that feed MediaPipe Tasks a camera frame get it subsampled to the model's size without an
    # area filter; this share of samples is resized to the model input that way, so the model does
    # not depend on our contract's area filtering.
    raw_resize_prob: float = 0.25


#: Named augmentation strengths for ``hairseg-edge train --augment``. ``full`` is for training from
#: scratch or from another model: photos in the wild at any zoom, angle and exposure. ``light`` keeps
#: every kind of transform but at about half the strength, for a last fine-tuning phase that settles
#: the weights nearer the unaugmented photos the model will see (cf. YOLOX switching mosaic off for its
#: final epochs). Measured once here (benchmarks/README, v6 -> v7): +0.3-0.4 point IoU on aligned faces
#: and Figaro-1k, -1 to -2.5 points on heads shrunk to 0.6x-0.4x, since its zoom range is narrower.
#: ``settle`` keeps only what leaves a photo as it could be met (mirroring, and the camera-style resize),
#: for a last phase on the photos exactly as the contract prepares them: after scale augmentation the
#: objects a network saw in training are not the size it meets at test time (Touvron et al., "Fixing
#: the train-test resolution discrepancy", 2019). ``wide`` is ``light`` plus heads small in the frame:
#: 30% of the photos are shrunk to 0.35-0.7x (padded black or with mirrored edges), since a model
#: trained on faces that fill the frame loses most of its accuracy on a head at 0.4x
#: (benchmarks/README, "Scale"). ``crops`` is ``light`` plus 30% of the photos shrunk to 0.25-0.6x and
#: enlarged back (the mask untouched): the crop of a small head that the region stage enlarges carries
#: that little detail, and today's model loses 3-4 points on it (issue 23: 0.851 / 0.870 on faces /
#: Figaro photos at 0.4x of their detail). ``bands`` is ``wide`` plus 30% of the photos cut to a band of
#: rows or columns (45-80% of the side): frames whose edge cuts through the head, which the large tier
#: painted as hair (issue 28: a forehead at the top edge of a landscape crop). ``bands-light`` is
#: ``light`` plus the same band crops, without ``wide``'s zoom-out, which cost the large tier a point of
#: LFW IoU (benchmarks/README, "The large tier"). ``none`` is for debugging and for measuring what augmentation is worth.
_LIGHT = AugmentOptions(scale=(0.85, 1.18), max_rotation_deg=8.0, max_translate=0.06, zoom_crop_prob=0.07,
                        color_jitter=0.12, hue_shift_deg=5.0, gray_prob=0.03, blur_prob=0.08, noise_prob=0.1,
                        jpeg_prob=0.1, raw_resize_prob=0.25)
AUGMENT_PRESETS: dict[str, AugmentOptions | None] = {
    "full": AugmentOptions(),
    "light": _LIGHT,
    "wide": replace(_LIGHT, zoom_out_prob=0.3),
    "crops": replace(_LIGHT, reenlarge_prob=0.3),
    "bands": replace(_LIGHT, zoom_out_prob=0.3, band_crop_prob=0.3),
    "bands-light": replace(_LIGHT, band_crop_prob=0.3),
    "settle": AugmentOptions(scale=(1.0, 1.0), max_rotation_deg=0.0, max_translate=0.0, flip_prob=0.5,
                             zoom_crop_prob=0.0, color_jitter=0.0, hue_shift_deg=0.0, gray_prob=0.0,
                             blur_prob=0.0, noise_prob=0.0, jpeg_prob=0.0, raw_resize_prob=0.25),
    "none": None,
}


@dataclass(frozen=True)
class TargetMode:
    """How a label mask becomes a training target (``TrainOptions.targets``).

    ``letterbox(mask, size)``: the photo-sized mask -> the ``size x size`` float32 target, letterboxed
    as :mod:`hairseg_edge.contract` letterboxes the image. ``shrink(mask, (w, h))``: the mask of a photo
    that augmentation resizes to the model's size itself (the camera-style resize), before the letterbox.
    """

    letterbox: Callable[[np.ndarray, int], np.ndarray]
    shrink: Callable[[np.ndarray, tuple[int, int]], np.ndarray]


def _nearest_shrink(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    return cv2.resize(mask, size, interpolation=cv2.INTER_NEAREST_EXACT)


#: Target modes by name. ``nearest``: each target pixel says whether its centre is hair (the
#: contract's :func:`~hairseg_edge.contract.letterbox_mask`). Studies add theirs with
#: :func:`register_target_mode` (benchmarks/loss_targets.py adds ``area``, the share of hair per pixel).
TARGET_MODES: dict[str, TargetMode] = {
    "nearest": TargetMode(letterbox=lambda mask, size: contract.letterbox_mask(mask, size),
                          shrink=_nearest_shrink),
}
DEFAULT_TARGETS = "nearest"


def register_target_mode(name: str, mode: TargetMode) -> None:
    TARGET_MODES[name] = mode


def target_mode(name: str) -> TargetMode:
    """The registered target mode ``name``; ValueError naming the choices when there is none."""
    if name not in TARGET_MODES:
        raise ValueError(f"unknown target mode {name!r}; choose from {', '.join(sorted(TARGET_MODES))}")
    return TARGET_MODES[name]


def _band_crop(rgb: np.ndarray, mask: np.ndarray, rng: np.random.Generator, band: tuple[float, float]
               ) -> tuple[np.ndarray, np.ndarray]:
    """A band of whole rows (2/3 of the time) or whole columns, ``band`` of the side, at a random offset."""
    h, w = mask.shape
    rows = rng.random() < 2 / 3
    side = h if rows else w
    size = max(1, round(side * rng.uniform(*band)))
    start = int(rng.integers(0, side - size + 1))
    if rows:
        return rgb[start:start + size], mask[start:start + size]
    return rgb[:, start:start + size], mask[:, start:start + size]


def augment(rgb: np.ndarray, mask: np.ndarray, rng: np.random.Generator,
            opts: AugmentOptions = AugmentOptions(), input_size: int | None = None,
            targets: str = DEFAULT_TARGETS) -> tuple[np.ndarray, np.ndarray]:
    """Geometric + photometric augmentation of one (RGB uint8, mask {0,1}) pair at its own size.

    With ``input_size``, a share of samples (``raw_resize_prob``) comes back already scaled so its
    longer side is ``input_size``, with nearest or bilinear sampling and no area filter (the
    letterbox then has nothing left to resize).
    """
    h, w = mask.shape
    # Geometry: one affine warp (scale, rotation, translation, flip) so pixels are resampled once.
    scale = rng.uniform(*opts.scale)
    if rng.random() < opts.zoom_crop_prob:
        scale *= rng.uniform(1.4, 2.2)
    elif opts.zoom_out_prob > 0 and rng.random() < opts.zoom_out_prob:  # no draw when off: streams unchanged
        scale *= rng.uniform(*opts.zoom_out)
    angle = rng.uniform(-opts.max_rotation_deg, opts.max_rotation_deg)
    tx = rng.uniform(-opts.max_translate, opts.max_translate) * w
    ty = rng.uniform(-opts.max_translate, opts.max_translate) * h
    m = cv2.getRotationMatrix2D((w / 2.0, h / 2.0), angle, scale)
    m[:, 2] += (tx, ty)
    if rng.random() < opts.flip_prob:
        m[0] = -m[0]
        m[0, 2] += w - 1  # pixel x maps to w-1-x: a mirror, not a mirror shifted by one pixel
    # Border: black like the contract's letterbox padding, or replicated edges like a real scene.
    border = cv2.BORDER_CONSTANT if rng.random() < 0.5 else cv2.BORDER_REFLECT_101
    rgb = cv2.warpAffine(rgb, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=border,
                         borderValue=(contract.PAD_VALUE,) * 3)
    mask = cv2.warpAffine(mask, m, (w, h), flags=cv2.INTER_NEAREST, borderMode=border, borderValue=0)

    if opts.band_crop_prob > 0 and rng.random() < opts.band_crop_prob:  # no draw when off: streams unchanged
        rgb, mask = _band_crop(rgb, mask, rng, opts.band)
        h, w = mask.shape
    img = rgb
    if opts.reenlarge_prob > 0 and rng.random() < opts.reenlarge_prob:  # no draw when off: streams unchanged
        factor = rng.uniform(*opts.reenlarge)
        small = cv2.resize(img, (max(1, round(w * factor)), max(1, round(h * factor))), interpolation=cv2.INTER_AREA)
        img = cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)
    # Photometric: brightness, contrast, saturation, hue, grayscale. Skipped when off: the float and
    # HSV round trips are not lossless, and ``settle`` promises the photo as it was.
    j = opts.color_jitter
    if j > 0 or opts.hue_shift_deg > 0:
        img = img.astype(np.float32) * rng.uniform(1 - j, 1 + j) + rng.uniform(-j, j) * 64.0
        mean = img.mean()
        img = (img - mean) * rng.uniform(1 - j, 1 + j) + mean
        img = np.clip(img, 0, 255).astype(np.uint8)
        hsv = cv2.cvtColor(img, cv2.COLOR_RGB2HSV).astype(np.float32)
        hsv[..., 0] = (hsv[..., 0] + rng.uniform(-opts.hue_shift_deg, opts.hue_shift_deg) / 2.0) % 180.0
        hsv[..., 1] = np.clip(hsv[..., 1] * rng.uniform(1 - j, 1 + j), 0, 255)
        img = cv2.cvtColor(hsv.astype(np.uint8), cv2.COLOR_HSV2RGB)
    if rng.random() < opts.gray_prob:
        img = np.repeat(cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)[..., None], 3, axis=2)
    if rng.random() < opts.blur_prob:
        k = int(rng.choice([3, 5]))
        img = cv2.GaussianBlur(img, (k, k), 0)
    if rng.random() < opts.noise_prob:
        noise = rng.normal(0.0, rng.uniform(2.0, 8.0), img.shape)
        img = np.clip(img.astype(np.float32) + noise, 0, 255).astype(np.uint8)
    if rng.random() < opts.jpeg_prob:
        ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(40, 90))])
        if ok:
            img = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
    if input_size is not None and rng.random() < opts.raw_resize_prob and max(h, w) > input_size:
        box = contract.letterbox_geometry(h, w, input_size)
        interp = cv2.INTER_NEAREST if rng.random() < 0.5 else cv2.INTER_LINEAR
        img = cv2.resize(img, (box.new_w, box.new_h), interpolation=interp)
        mask = target_mode(targets).shrink(mask, (box.new_w, box.new_h))
    return np.ascontiguousarray(img), mask


def prepare_pair(rgb: np.ndarray, mask: np.ndarray, input_size: int, targets: str = DEFAULT_TARGETS
                 ) -> tuple[np.ndarray, np.ndarray]:
    """The contract's letterbox, applied to an image and its mask: float32 model input and target."""
    image, _ = contract.letterbox_image(rgb, input_size)
    target = target_mode(targets).letterbox(mask, input_size)
    return image.astype(np.float32), target[..., None]


def make_dataset(samples: Sequence[Sample], input_size: int, batch_size: int, *, training: bool,
                 seed: int = 0, augment_options: AugmentOptions | None = None, augmented: bool = True,
                 repeat_weights: Sequence[int] | None = None, drop_remainder: bool | None = None,
                 shuffle_buffer: int = 4096, initial_epoch: int = 0,
                 shard: tuple[int, int] | None = None, targets: str = DEFAULT_TARGETS) -> tf.data.Dataset:
    """A batched, prefetched tf.data pipeline of ``(images [B,S,S,3] float32 0..255, masks [B,S,S,1])``.

    ``samples`` are listed, not loaded: each is decoded when the pipeline reaches it. With
    ``training=True`` the order is reshuffled every epoch and each sample is augmented with a
    per-element random stream derived from ``seed``, the epoch and the element, so a run is
    reproducible. A training stream repeats forever: pass ``steps_per_epoch`` to fit().
    ``repeat_weights[i]`` repeats sample i that many times per epoch (oversampling).
    ``augmented=False`` turns augmentation off for a training stream (it still shuffles and repeats).

    ``shard=(workers, index)`` (a multi-worker job): every worker shuffles the same index stream (same
    seed) and decodes only every ``workers``-th element from ``index`` on, so no photo is read twice
    and a step's global batch holds the same photos as one worker's would. Give it the *global*
    ``batch_size``: tf.distribute splits each worker's batches between the replicas of each step.
    """
    if not samples:
        raise InputError("no samples to train or validate on")
    samples = list(samples)
    index = np.arange(len(samples), dtype=np.int64)
    if repeat_weights is not None:
        index = np.repeat(index, np.asarray(repeat_weights, dtype=np.int64))
    aug = augment_options or AugmentOptions()
    target_mode(targets)  # an unknown name fails here, not inside the pipeline

    def load(i: np.int64, epoch_seed: np.int64) -> tuple[np.ndarray, np.ndarray]:
        sample = samples[int(i)]
        try:
            rgb, mask = load_sample(sample)
        except InputError as err:
            # tf.numpy_function turns this into a tf.errors.UnknownError with a traceback in its
            # message; keep the original so the training loop can report it as one line.
            _input_errors.append(err)
            raise
        if training and augmented:
            rng = np.random.default_rng([seed, int(epoch_seed), int(i)])
            rgb, mask = augment(rgb, mask, rng, aug, input_size, targets)
        return prepare_pair(rgb, mask, input_size, targets)

    ds = tf.data.Dataset.from_tensor_slices(index)
    if training:
        # Indices only: a buffer of the whole index is a few kB, whatever the data set size. The stream
        # repeats forever (fit() is given steps_per_epoch), so the element counter tells the epoch and
        # every epoch gets fresh augmentations; ``initial_epoch`` keeps that true after a resume.
        ds = ds.shuffle(min(len(index), max(shuffle_buffer, 1)), seed=seed + initial_epoch,
                        reshuffle_each_iteration=True).repeat()
        counter = tf.data.Dataset.counter()
        n = len(index)
        ds = tf.data.Dataset.zip((ds, counter)).map(
            lambda i, c: (i, c // n + initial_epoch), num_parallel_calls=tf.data.AUTOTUNE)
        if shard is not None and shard[0] > 1:  # after the epoch count, before any decoding
            ds = ds.shard(*shard)
    else:
        ds = ds.map(lambda i: (i, tf.constant(0, tf.int64)))

    def tf_load(i, epoch):
        image, target = tf.numpy_function(load, [i, epoch], [tf.float32, tf.float32], stateful=False)
        image.set_shape((input_size, input_size, 3))
        target.set_shape((input_size, input_size, 1))
        return image, target

    ds = ds.map(tf_load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=not training)
    ds = ds.batch(batch_size, drop_remainder=training if drop_remainder is None else drop_remainder)
    options = tf.data.Options()
    # Sharded explicitly above (indices, before decoding); otherwise by data: with AUTO, tf.data would
    # look for files to shard and find none.
    options.experimental_distribute.auto_shard_policy = (
        tf.data.experimental.AutoShardPolicy.OFF if shard is not None
        else tf.data.experimental.AutoShardPolicy.DATA)
    return ds.with_options(options).prefetch(tf.data.AUTOTUNE)


#: InputErrors raised while the pipeline decoded a sample (see :func:`reraise_input_error`).
_input_errors: list[InputError] = []


def reraise_input_error(exc: BaseException) -> None:
    """Raise the InputError behind a TensorFlow error from a pipeline, if there is one.

    A file that cannot be read (truncated, not an image, a mask of another size) is only found when
    the pipeline decodes it inside ``fit()``; TensorFlow wraps the InputError in a
    ``tf.errors.UnknownError``. Call this in an ``except`` around fit/evaluation to turn it back
    into the one-line error naming the file. Does nothing for other errors.
    """
    if not isinstance(exc, tf.errors.OpError):
        return
    # TensorFlow's message quotes the Python error; match on it, so an error that a parallel
    # decoder recorded for another pipeline (or an earlier run in this process) is never reported.
    message = str(exc)
    for err in list(_input_errors):
        if str(err) in message:
            _input_errors.clear()
            raise err from None


def forget_input_errors() -> None:
    """Drop recorded InputErrors (call before a new fit, so nothing stale is kept around)."""
    _input_errors.clear()


def steps_per_epoch(n_samples: int, batch_size: int) -> int:
    return max(1, n_samples // batch_size)


def validation_steps(n_samples: int, batch_size: int) -> int:
    return max(1, math.ceil(n_samples / batch_size))
