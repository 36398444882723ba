#!/usr/bin/env python
"""Regenerate docs/recolor-contact-sheet.jpg: every named hair colour on three photos, so anyone can
judge the palette at a glance.

    .venv/bin/python scripts/contact_sheet.py [OUT.jpg]

The photos: examples/astronaut.png (public domain, NASA; see examples/README.md) and two faces drawn
by hairseg_edge.synth (generated here, no licence attached). No data-set photo is used. Each is
segmented by the bundled int8 model and recoloured the way `hairseg-edge run --soft --recolor NAME`
does it (guided-filter soft matte, hairseg_edge.render.recolor).
"""

from __future__ import annotations

import sys
from pathlib import Path

import cv2
import numpy as np

from hairseg_edge import render
from hairseg_edge.imageio import read_image
from hairseg_edge.models import default_model_path
from hairseg_edge.postprocess import refine_matte
from hairseg_edge.runtime import Segmenter
from hairseg_edge.synth import render_sample

REPO = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO / "docs" / "recolor-contact-sheet.jpg"
TILE = 120  # pixels per photo
PER_ROW = 4  # colour blocks per row of the sheet
LABEL_H = 18
#: Generated faces whose hair differs from the astronaut's (found by trying seeds).
SYNTH_SEEDS = (3, 8)


def photos() -> list[np.ndarray]:
    images = [read_image(REPO / "examples" / "astronaut.png")]
    images += [render_sample(np.random.default_rng(seed), 256, 256, hair=True)[0] for seed in SYNTH_SEEDS]
    return images


def _tile(rgb: np.ndarray) -> np.ndarray:
    return cv2.resize(rgb, (TILE, TILE), interpolation=cv2.INTER_AREA)


def _label(width: int, text: str) -> np.ndarray:
    strip = np.full((LABEL_H, width, 3), 255, np.uint8)
    cv2.putText(strip, text, (4, LABEL_H - 5), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (20, 20, 20), 1, cv2.LINE_AA)
    return strip


def build_sheet() -> np.ndarray:
    images = photos()
    with Segmenter(default_model_path("int8")) as segmenter:
        mattes = [refine_matte(rgb, segmenter.segment(rgb).probability, model_input_size=segmenter.input_size)
                  for rgb in images]
    blocks = [("original", [_tile(rgb) for rgb in images])]
    for name, color in render.named_colors().items():
        blocks.append((f"{name} #{''.join(f'{c:02x}' for c in color)}",
                       [_tile(render.recolor(rgb, matte, color)) for rgb, matte in zip(images, mattes)]))
    width = TILE * len(images)
    cells = []
    for text, tiles in blocks:
        cell = np.vstack([np.hstack(tiles), _label(width, text)])
        cells.append(np.pad(cell, ((2, 2), (2, 2), (0, 0)), constant_values=255))
    blank = np.full_like(cells[0], 255)
    cells += [blank] * (-len(cells) % PER_ROW)
    rows = [np.hstack(cells[i:i + PER_ROW]) for i in range(0, len(cells), PER_ROW)]
    return np.vstack(rows)


def main(argv: list[str]) -> int:
    out = Path(argv[0]) if argv else DEFAULT_OUT
    sheet = build_sheet()
    ok, data = cv2.imencode(".jpg", cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 80])
    if not ok:
        print(f"contact_sheet: could not encode {out}", file=sys.stderr)
        return 1
    out.write_bytes(data.tobytes())
    print(f"wrote {out} ({sheet.shape[1]}x{sheet.shape[0]}, {len(data) // 1024} KB)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
