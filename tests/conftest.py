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


# ==================================================================================================
# Device runtime, info and bench (added with test_runtime.py, test_info.py, test_bench.py,
# test_peers.py): tiny converted models built in a separate process, and the peer models folder
# ==================================================================================================


@pytest.fixture(scope="session")
def tiny_tflite(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """``{name: path}`` of the models tests/tiny_tflite_models.py builds (float32, uint8, int8,
    classifier, halfres), converted once per session.

    The converter runs in a child process so this test process never imports TensorFlow (the
    runtime tests check that the device side does not either). TensorFlow is a dev dependency:
    if it is missing the fixture fails rather than silently skipping the runtime tests.
    """
    import json
    import subprocess
    import sys

    out = tmp_path_factory.mktemp("tiny_tflite")
    script = Path(__file__).resolve().with_name("tiny_tflite_models.py")
    proc = subprocess.run([sys.executable, str(script), str(out)], capture_output=True, text=True,
                          timeout=900, check=False)
    if proc.returncode != 0:
        pytest.fail(f"building the tiny test models failed (needs TensorFlow):\n{proc.stderr[-3000:]}")
    return {name: Path(p) for name, p in json.loads((out / "models.json").read_text()).items()}


@pytest.fixture(scope="session")
def peers_dir() -> Path:
    """``../shared/peers`` next to the repo (or ``$HAIRSEG_PEERS``); skips when it is absent."""
    import os

    given = os.environ.get("HAIRSEG_PEERS")
    folder = Path(given) if given else Path(__file__).resolve().parents[1].parent / "shared" / "peers"
    if not folder.is_dir():
        pytest.skip(f"peer models not found at {folder} (set HAIRSEG_PEERS)")
    return folder
