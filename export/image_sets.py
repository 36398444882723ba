"""The three image sets of an export (fine-tuning, calibration, evaluation) and the calibration stream.

Which images each stage sees, by default:

* **fine-tuning** (pruning, QAT): the training split of ``--data``;
* **calibration** (int8): ``--calib`` as a whole, else the training split of ``--data``, so the
  images that verify a model never calibrated it; ``calib_count`` images spread evenly over it;
* **evaluation**: ``--eval`` as a whole, else the validation split of ``--data``.

``--limit N`` keeps the first N images of each set (after the split). An evaluation folder that holds
only images (``DIR/*.jpg`` or ``DIR/images/`` without ``masks/``) has no ground truth: the models
are then compared with the float original only.

Calibration images go through the same reader and the same contract letterbox as training
(:func:`hairseg_edge.data.load_sample`, :func:`hairseg_edge.contract.letterbox_image`), so int8
ranges are measured on exactly the pixels the model sees on a device.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hairseg_edge import contract
from hairseg_edge.data import (
    CELEBA_IMG_DIR,
    FOLDER,
    Dataset,
    Sample,
    id_list_hash,
    load_sample,
    open_dataset,
)
from hairseg_edge.errors import InputError
from hairseg_edge.imageio import IMAGE_SUFFIXES, read_image

#: Layout name of an evaluation folder that has images and no masks.
IMAGES_ONLY = "images-only"


@dataclass(frozen=True)
class ImageSet:
    """Images used by one stage, with where they came from (recorded in the report).

    ``ground_truth`` is False for an images-only folder: its samples have no mask at all (not an
    empty mask), so only agreement with the float original can be measured on it.
    """

    role: str
    root: Path
    selection: str
    samples: tuple[Sample, ...]
    ground_truth: bool = True

    def __len__(self) -> int:
        return len(self.samples)

    @property
    def dataset(self) -> Dataset:
        layout = self.samples[0].layout if self.samples else FOLDER
        return Dataset(self.root, layout, self.samples)

    @property
    def ids_hash(self) -> str:
        return id_list_hash([s.id for s in self.samples])

    def to_dict(self) -> dict[str, Any]:
        return {"path": str(self.root.resolve()), "selection": self.selection, "count": len(self),
                "ids_hash": self.ids_hash, "ground_truth": self.ground_truth}


def _split(root: Path, part: str, limit: int | None, role: str) -> ImageSet:
    train, val = open_dataset(root).split()
    chosen = (train if part == "train" else val).limit(limit)
    if len(chosen) == 0:
        raise InputError(
            f"the {'training' if part == 'train' else 'validation'} split is empty, so there is "
            f"nothing to use for {role}; pass a separate folder for it", root)
    return ImageSet(role, root, f"{part} split" + (f", first {limit}" if limit else ""),
                    chosen.samples)


def _whole(root: Path, limit: int | None, role: str) -> ImageSet:
    ds = open_dataset(root).limit(limit)
    return ImageSet(role, root, "all" + (f", first {limit}" if limit else ""), ds.samples)


def finetune_set(data: Path, limit: int | None) -> ImageSet:
    """The training split of ``data`` (pruning and QAT fine-tune on it)."""
    return _split(data, "train", limit, "fine-tuning")


def calibration_set(calib: Path | None, data: Path | None, limit: int | None, count: int) -> ImageSet:
    """``count`` images spread evenly over ``calib`` (or the training split of ``data``)."""
    if calib is not None:
        base = _images_or_dataset(calib, limit, "calibration")
    elif data is not None:
        base = _split(data, "train", limit, "calibration")
    else:  # ExportOptions rejects this combination; a direct caller gets the same message
        raise InputError("int8 calibration needs --calib or --data")
    picked = evenly_spaced(base.samples, count)
    selection = base.selection + (f", {len(picked)} evenly spaced" if len(picked) < len(base) else "")
    return ImageSet("calibration", base.root, selection, picked, base.ground_truth)


def evaluation_set(eval_data: Path | None, data: Path | None, limit: int | None) -> ImageSet:
    """``eval_data`` as a whole (images-only folders allowed), else the validation split of ``data``."""
    if eval_data is not None:
        return _images_or_dataset(eval_data, limit, "evaluation")
    if data is not None:
        return _split(data, "val", limit, "evaluation")
    raise InputError("verification needs --eval or --data")


def evenly_spaced(samples: tuple[Sample, ...], count: int) -> tuple[Sample, ...]:
    """``count`` samples spread evenly over ``samples`` (all of them when there are fewer)."""
    if count >= len(samples):
        return samples
    idx = np.linspace(0, len(samples) - 1, count).round().astype(int)
    return tuple(samples[i] for i in sorted(set(idx.tolist())))


def _images_or_dataset(root: Path, limit: int | None, role: str) -> ImageSet:
    """A data set with masks, or a plain folder of images (no ground truth)."""
    images = _images_only_folder(root)
    if images is None:
        return _whole(root, limit, role)
    files = sorted(p for p in images.iterdir()
                   if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith("."))
    if not files:
        raise InputError("no images (expected .jpg or .png files)", images)
    samples = tuple(Sample(p.stem, p, None, IMAGES_ONLY) for p in files)
    if limit is not None:
        samples = samples[:limit]
    return ImageSet(role, root, "all images, no masks" + (f", first {limit}" if limit else ""),
                    samples, ground_truth=False)


def _images_only_folder(root: Path) -> Path | None:
    """The folder holding the images when ``root`` is an images-only folder, else None."""
    if not root.is_dir():
        return None
    if (root / "masks").exists() or (root / CELEBA_IMG_DIR).exists():
        return None
    if (root / "images").is_dir():
        return root / "images"
    has_images = any(p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES for p in root.iterdir())
    return root if has_images else None


def load_rgb(sample: Sample) -> np.ndarray:
    """The RGB image of a sample of any kind (with or without a mask)."""
    if sample.layout == IMAGES_ONLY:
        return read_image(sample.image_path)
    return load_sample(sample)[0]


def calibration_inputs(images: ImageSet, input_size: int) -> Iterator[np.ndarray]:
    """``[1, S, S, 3]`` float32 model inputs (raw 0..255), one per calibration image."""
    for sample in images.samples:
        model_image, _ = contract.letterbox_image(load_rgb(sample), input_size)
        yield model_image[np.newaxis].astype(np.float32)


def representative_dataset(images: ImageSet, input_size: int) -> Callable[[], Iterator[list[np.ndarray]]]:
    """The converter's ``representative_dataset``: a callable returning a fresh generator each time."""
    if len(images) == 0:
        raise InputError("no calibration images", images.root)

    def generate() -> Iterator[list[np.ndarray]]:
        for batch in calibration_inputs(images, input_size):
            yield [batch]

    return generate


def describe_path(path: str | os.PathLike[str] | None) -> str | None:
    return None if path is None else str(Path(path).resolve())
