"""Shared pytest fixtures (owned by the lead; helpers may add clearly marked sections at the end)."""

from __future__ import annotations


# ==================================================================================================
# Synthetic data sets and small image files (added with tests of metrics/synth/contract/data/imageio)
# ==================================================================================================

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402


@pytest.fixture
def synthetic_folder_dataset(tmp_path: Path) -> Path:
    """A 12-image folder-format data set (mixed 64x64, 48x80, 80x48 sizes, JPEG images)."""
    from hairseg_edge.synth import make_dataset

    return make_dataset(tmp_path / "folder_ds", n=12, size=[(64, 64), (48, 80), (80, 48)], seed=11)


@pytest.fixture
def synthetic_celeba_dataset(tmp_path: Path) -> Path:
    """A 10-image CelebAMask-HQ-layout data set at 64x64 (masks 32x32); ids 4 and 9 have no hair file."""
    from hairseg_edge.synth import make_dataset

    return make_dataset(tmp_path / "celeba_ds", n=10, layout="celebamask-hq", size=64, seed=12)
