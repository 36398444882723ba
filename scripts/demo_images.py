"""Write a smoke calibration/evaluation folder for `make demo` when no real data set is given.

Contents: the sample photo, augmented variants of it (flips, crops, scale, colour, rotation) and
generated faces from hairseg_edge.synth, as ``OUT/images/*.png`` with no masks. Calibrating on this
is a smoke test, not a measurement: the export gate then checks agreement with the float model only.
"""

from __future__ import annotations

import sys
from pathlib import Path

import cv2
import numpy as np

from hairseg_edge.imageio import read_image, write_image
from hairseg_edge.synth import render_sample


def variants(rgb: np.ndarray, rng: np.random.Generator, n: int) -> list[np.ndarray]:
    h, w = rgb.shape[:2]
    out = []
    for _ in range(n):
        m = cv2.getRotationMatrix2D((w / 2, h / 2), rng.uniform(-15, 15), rng.uniform(0.8, 1.3))
        m[:, 2] += rng.uniform(-0.1, 0.1, 2) * (w, h)
        img = cv2.warpAffine(rgb, m, (w, h), borderMode=cv2.BORDER_REFLECT_101)
        if rng.random() < 0.5:
            img = img[:, ::-1]
        img = np.clip(img.astype(np.float32) * rng.uniform(0.7, 1.3) + rng.uniform(-25, 25), 0, 255)
        out.append(img.astype(np.uint8))
    return out


def main(photo: str, out: str, n_variants: int = 24, n_synthetic: int = 24) -> None:
    folder = Path(out) / "images"
    rng = np.random.default_rng(0)
    rgb = read_image(photo)
    images = [rgb, *variants(rgb, rng, n_variants)]
    images += [render_sample(rng, 256, 256)[0] for _ in range(n_synthetic)]
    for i, img in enumerate(images):
        write_image(folder / f"smoke-{i:03d}.png", np.ascontiguousarray(img), force=True)
    print(f"{len(images)} smoke images in {folder}")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
