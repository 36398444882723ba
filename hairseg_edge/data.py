"""Data set readers: the folder format and the original CelebAMask-HQ layout, detected automatically.

* **Folder format**: ``DIR/images/<id>.jpg|png`` and ``DIR/masks/<id>.png`` (nonzero = hair). Images
  may have any size and aspect ratio; a mask must have its image's size.
* **CelebAMask-HQ layout**: ``DIR/CelebA-HQ-img/<n>.jpg`` (1024x1024) and
  ``DIR/CelebAMask-HQ-mask-anno/<n//2000>/<n:05d>_hair.png`` (512x512), resized to the image with
  nearest-neighbour. An image with no hair file has no hair (bald heads, hats).

Opening a data set only lists and checks files (cheap); pixels are decoded one sample at a time by
:func:`load_sample`, so memory never grows with the data set. The train/validation split is a pure
function of each id (a hash), so it is the same on every machine and does not move when files are added.

Files are listed and read through a :class:`~hairseg_edge.filesystem.Filesystem` (default: local
files); training passes one backed by ``tf.io.gfile`` for a ``scheme://`` data path, and the same code
then lists, splits and decodes a data set on shared storage.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from pathlib import Path

import cv2
import numpy as np

from .errors import InputError
from .filesystem import LOCAL, DataPath, Filesystem, basename
from .imageio import IMAGE_SUFFIXES, read_image, read_mask

FOLDER = "folder"
CELEBAMASK_HQ = "celebamask-hq"
CELEBA_IMG_DIR = "CelebA-HQ-img"
CELEBA_ANNO_DIR = "CelebAMask-HQ-mask-anno"
#: Share of ids held out for validation by :func:`is_validation_id`.
DEFAULT_VAL_FRACTION = 0.1


@dataclass(frozen=True)
class Sample:
    """One image and where its hair mask comes from (``mask_path`` None = no hair at all)."""

    id: str
    image_path: DataPath
    mask_path: DataPath | None
    layout: str = FOLDER
    #: Where the files are read from (a local Path, or a URL string for another filesystem).
    fs: Filesystem = field(default=LOCAL, compare=False, repr=False)


@dataclass(frozen=True)
class Dataset:
    root: DataPath
    layout: str
    samples: tuple[Sample, ...]

    def __len__(self) -> int:
        return len(self.samples)

    def __iter__(self) -> Iterator[Sample]:
        return iter(self.samples)

    @property
    def ids(self) -> list[str]:
        return [s.id for s in self.samples]

    def split(self, val_fraction: float = DEFAULT_VAL_FRACTION) -> tuple[Dataset, Dataset]:
        """(train, validation), by a hash of each id: deterministic everywhere."""
        train = tuple(s for s in self.samples if not is_validation_id(s.id, val_fraction))
        val = tuple(s for s in self.samples if is_validation_id(s.id, val_fraction))
        return Dataset(self.root, self.layout, train), Dataset(self.root, self.layout, val)

    def subset(self, ids: Iterable[str]) -> Dataset:
        """The samples whose id is in ``ids``, in this data set's order; unknown ids are an error."""
        wanted = list(dict.fromkeys(ids))
        by_id = {s.id: s for s in self.samples}
        missing = [i for i in wanted if i not in by_id]
        if missing:
            raise InputError(
                f"{len(missing)} listed id(s) not in the data set, e.g. {', '.join(missing[:3])}",
                self.root,
            )
        keep = set(wanted)
        return Dataset(self.root, self.layout, tuple(s for s in self.samples if s.id in keep))

    def limit(self, n: int | None) -> Dataset:
        if n is None or n >= len(self.samples):
            return self
        if n < 1:
            raise ValueError(f"limit must be >= 1, got {n}")
        return Dataset(self.root, self.layout, self.samples[:n])


def is_validation_id(sample_id: str, val_fraction: float = DEFAULT_VAL_FRACTION) -> bool:
    """True when ``sample_id`` belongs to the validation split (stable hash of the id)."""
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    digest = hashlib.sha256(sample_id.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64 < val_fraction


def id_list_hash(ids: Sequence[str]) -> str:
    """A short fingerprint of an id list (recorded in reports so a split can be recognised)."""
    return hashlib.sha256("\n".join(sorted(ids)).encode("utf-8")).hexdigest()[:16]


def read_id_list(path: str | os.PathLike[str]) -> list[str]:
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise InputError(f"cannot read id list ({exc.strerror or exc})", path) from None
    return [ln.strip() for ln in lines if ln.strip() and not ln.startswith("#")]


def _natural_key(s: str) -> tuple:
    return tuple(int(t) if t.isdigit() else t for t in re.split(r"(\d+)", s))


def _list_images(folder: DataPath, fs: Filesystem) -> dict[str, DataPath]:
    found: dict[str, DataPath] = {}
    for name in fs.listdir(folder):
        stem, suffix = os.path.splitext(name)
        if suffix.lower() in IMAGE_SUFFIXES and not name.startswith("."):
            p = fs.join(folder, name)
            if not fs.isfile(p):
                continue
            if stem in found:
                raise InputError(f"two files share the id {stem!r} ({basename(found[stem])}, {name})",
                                 folder)
            found[stem] = p
    return found


def _names(items: Sequence[str], n: int = 3) -> str:
    shown = ", ".join(items[:n])
    return shown + (", ..." if len(items) > n else "")


def detect_layout(root: DataPath, fs: Filesystem = LOCAL) -> str:
    if fs.isdir(fs.join(root, "images")) or fs.isdir(fs.join(root, "masks")):
        return FOLDER
    if fs.isdir(fs.join(root, CELEBA_IMG_DIR)):
        return CELEBAMASK_HQ
    raise InputError(
        "not a data set: expected images/ + masks/ folders, or CelebA-HQ-img/ + "
        "CelebAMask-HQ-mask-anno/ (the CelebAMask-HQ layout)",
        root,
    )


def open_dataset(root: str | os.PathLike[str], limit: int | None = None, fs: Filesystem = LOCAL) -> Dataset:
    """List and check a data set's files (no pixels decoded). Raises InputError with one line.

    ``fs``: the filesystem ``root`` is on (default: local files; a ``scheme://`` root is refused there).
    """
    root = fs.path(root)
    if not fs.exists(root):
        raise InputError("no such folder", root)
    if not fs.isdir(root):
        raise InputError("is not a folder", root)
    layout = detect_layout(root, fs)
    samples = _open_folder(root, fs) if layout == FOLDER else _open_celebamask(root, fs)
    ds = Dataset(root, layout, tuple(samples))
    return ds.limit(limit)


def _check_nonempty_files(paths: Iterable[DataPath], fs: Filesystem) -> None:
    for p in paths:
        if fs.size(p) == 0:
            raise InputError("empty file (0 bytes)", p)


def _open_folder(root: DataPath, fs: Filesystem) -> list[Sample]:
    img_dir, mask_dir = fs.join(root, "images"), fs.join(root, "masks")
    for d in (img_dir, mask_dir):
        if not fs.isdir(d):
            raise InputError(f"missing the {basename(d)}/ folder", root)
    images = _list_images(img_dir, fs)
    masks = _list_images(mask_dir, fs)
    if not images:
        raise InputError("no images (expected .jpg or .png files)", img_dir)
    no_mask = sorted(set(images) - set(masks), key=_natural_key)
    if no_mask:
        raise InputError(f"{len(no_mask)} image(s) without a mask in masks/: {_names(no_mask)}", img_dir)
    no_image = sorted(set(masks) - set(images), key=_natural_key)
    if no_image:
        raise InputError(f"{len(no_image)} mask(s) without an image in images/: {_names(no_image)}",
                         mask_dir)
    ids = sorted(images, key=_natural_key)
    _check_nonempty_files([images[i] for i in ids] + [masks[i] for i in ids], fs)
    return [Sample(i, images[i], masks[i], FOLDER, fs) for i in ids]


def _hair_files(anno_dir: DataPath, fs: Filesystem) -> dict[str, DataPath]:
    """``anno_dir/*/*_hair.png`` by file name."""
    found: dict[str, DataPath] = {}
    for sub in fs.listdir(anno_dir):
        folder = fs.join(anno_dir, sub)
        if not fs.isdir(folder):
            continue
        for name in fs.listdir(folder):
            if fnmatchcase(name, "*_hair.png"):
                found[name] = fs.join(folder, name)
    return found


def _open_celebamask(root: DataPath, fs: Filesystem) -> list[Sample]:
    img_dir, anno_dir = fs.join(root, CELEBA_IMG_DIR), fs.join(root, CELEBA_ANNO_DIR)
    if not fs.isdir(anno_dir):
        raise InputError(f"CelebAMask-HQ layout without its {CELEBA_ANNO_DIR}/ folder", root)
    images = _list_images(img_dir, fs)
    if not images:
        raise InputError("no images (expected <n>.jpg files)", img_dir)
    bad = sorted((k for k in images if not k.isdigit()), key=_natural_key)
    if bad:
        raise InputError(f"{len(bad)} image name(s) are not CelebA-HQ numbers: {_names(bad)}", img_dir)
    by_number: dict[int, str] = {}
    for k in sorted(images, key=_natural_key):
        if int(k) in by_number:  # "1.jpg" and "01.jpg" would both be sample 00001
            raise InputError(f"two images have the number {int(k)} ({basename(images[by_number[int(k)]])}, "
                             f"{basename(images[k])})", img_dir)
        by_number[int(k)] = k
    hair_files = _hair_files(anno_dir, fs)
    samples = []
    used = set()
    for n in sorted(by_number):
        k = by_number[n]
        name = f"{n:05d}_hair.png"
        mask = fs.join(fs.join(anno_dir, str(n // 2000)), name)
        if name in hair_files and hair_files[name] != mask:
            raise InputError(
                f"hair mask is in the wrong folder, expected it in {CELEBA_ANNO_DIR}/{n // 2000}/",
                hair_files[name],
            )
        mask_path = mask if name in hair_files else None
        if mask_path is not None:
            used.add(name)
        samples.append(Sample(f"{n:05d}", images[k], mask_path, CELEBAMASK_HQ, fs))
    orphans = sorted(set(hair_files) - used, key=_natural_key)
    if orphans:
        raise InputError(
            f"{len(orphans)} hair mask(s) without an image in {CELEBA_IMG_DIR}/: {_names(orphans)}",
            anno_dir,
        )
    _check_nonempty_files([s.image_path for s in samples] +
                          [s.mask_path for s in samples if s.mask_path is not None], fs)
    return samples


def load_sample(sample: Sample) -> tuple[np.ndarray, np.ndarray]:
    """Decode one sample: (RGB uint8 HxWx3, mask uint8 HxW in {0, 1}) of the same size."""
    fs = None if sample.fs is LOCAL else sample.fs  # local files: imageio's own reader, as always
    rgb = read_image(sample.image_path, fs)
    h, w = rgb.shape[:2]
    if sample.mask_path is None:
        return rgb, np.zeros((h, w), dtype=np.uint8)
    mask = read_mask(sample.mask_path, fs)
    if mask.shape != (h, w):
        if sample.layout == CELEBAMASK_HQ:
            # Centre-aligned nearest-neighbour (same as plain NEAREST for the usual exact 2x).
            mask = cv2.resize(mask, (w, h), interpolation=cv2.INTER_NEAREST_EXACT)
        else:
            raise InputError(
                f"mask is {mask.shape[1]}x{mask.shape[0]} but its image is {w}x{h}",
                sample.mask_path,
            )
    return rgb, mask


def iter_samples(ds: Dataset | Iterable[Sample]) -> Iterator[tuple[Sample, np.ndarray, np.ndarray]]:
    """Yield (sample, rgb, mask) one at a time (streaming)."""
    for s in ds:
        rgb, mask = load_sample(s)
        yield s, rgb, mask
