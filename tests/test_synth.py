"""The synthetic generator: both layouts read back through hairseg_edge.data, determinism, sizes, content."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from hairseg_edge import data
from hairseg_edge.errors import InputError
from hairseg_edge.imageio import read_mask
from hairseg_edge.synth import make_dataset, render_sample


def _file_bytes(root):
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_folder_layout_round_trips_exactly_through_the_reader(tmp_path):
    sizes = [(48, 64), (64, 48)]
    root = make_dataset(tmp_path / "ds", n=5, size=sizes, seed=3, image_format="png")
    ds = data.open_dataset(root)
    assert ds.layout == data.FOLDER
    assert ds.ids == [f"synth_{k:05d}" for k in range(5)]
    for k, sample in enumerate(ds):
        rgb, mask = data.load_sample(sample)
        h, w = sizes[k % 2]
        expected_rgb, expected_mask = render_sample(np.random.default_rng([3, k]), h, w)
        assert rgb.shape == (h, w, 3) and rgb.dtype == np.uint8
        assert np.array_equal(mask, expected_mask)  # the mask is exactly the painted hair
        assert np.array_equal(rgb, expected_rgb)  # PNG is lossless
    # masks are stored as 0/255, not 0/1
    raw = cv2.imread(str(ds.samples[0].mask_path), cv2.IMREAD_UNCHANGED)
    assert set(np.unique(raw)) <= {0, 255} and raw.max() == 255


def test_folder_layout_with_jpeg_images(synthetic_folder_dataset):
    ds = data.open_dataset(synthetic_folder_dataset)
    assert len(ds) == 12
    assert all(s.image_path.suffix == ".jpg" and s.mask_path.suffix == ".png" for s in ds)
    shapes = {data.load_sample(s)[0].shape[:2] for s in ds}
    assert shapes == {(64, 64), (48, 80), (80, 48)}


def test_celebamask_layout_round_trips_through_the_reader(synthetic_celeba_dataset):
    root = synthetic_celeba_dataset
    ds = data.open_dataset(root)
    assert ds.layout == data.CELEBAMASK_HQ
    assert ds.ids == [f"{k:05d}" for k in range(10)]
    assert (root / "CelebA-HQ-img" / "0.jpg").is_file()
    hairless = [s.id for s in ds if s.mask_path is None]
    assert {"00004", "00009"} <= set(hairless)  # every fifth sample has no hair file
    assert len(hairless) < len(ds) - 3
    for k, sample in enumerate(ds):
        rgb, mask = data.load_sample(sample)
        assert rgb.shape == (64, 64, 3) and mask.shape == (64, 64)
        _, expected = render_sample(np.random.default_rng([12, k]), 64, 64, mask_scale=2,
                                    hair=False if k % 5 == 4 else None)
        # The half-size annotation, upscaled by the reader, gives exactly the painted hair back.
        assert np.array_equal(mask, expected), sample.id
        if sample.mask_path is not None:
            assert read_mask(sample.mask_path).shape == (32, 32)
            assert sample.mask_path.parent.name == "0"
        else:
            assert not mask.any()
    assert (root / "CelebAMask-HQ-mask-anno" / "0" / "00004_skin.png").is_file()  # other parts ignored


def test_celebamask_ids_cross_the_2000_subfolder(tmp_path):
    root = make_dataset(tmp_path / "c", n=4, layout="celebamask-hq", size=32, first_id=1998, seed=1)
    ds = data.open_dataset(root)
    assert ds.ids == ["01998", "01999", "02000", "02001"]
    folders = {s.id: s.mask_path.parent.name for s in ds if s.mask_path is not None}
    assert folders and all(f == ("0" if i < "02000" else "1") for i, f in folders.items())
    assert (root / "CelebA-HQ-img" / "2001.jpg").is_file()


def test_celebamask_default_size_is_1024_with_512_masks(tmp_path):
    root = make_dataset(tmp_path / "big", n=1, layout="celebamask-hq", seed=4)
    (sample,) = data.open_dataset(root)
    rgb, mask = data.load_sample(sample)
    assert rgb.shape == (1024, 1024, 3) and mask.shape == (1024, 1024)
    assert read_mask(sample.mask_path).shape == (512, 512)


def test_same_seed_same_files_and_prefix_is_stable(tmp_path):
    a = make_dataset(tmp_path / "a", n=4, size=40, seed=9)
    b = make_dataset(tmp_path / "b", n=4, size=40, seed=9)
    longer = make_dataset(tmp_path / "c", n=6, size=40, seed=9)
    other = make_dataset(tmp_path / "d", n=4, size=40, seed=10)
    assert _file_bytes(a) == _file_bytes(b)
    bytes_longer = _file_bytes(longer)
    assert all(bytes_longer[name] == content for name, content in _file_bytes(a).items())
    assert _file_bytes(other) != _file_bytes(a)


def test_render_sample_is_deterministic_and_supports_non_square_sizes():
    for h, w in [(37, 91), (120, 30), (8, 8), (200, 150)]:
        rgb1, m1 = render_sample(np.random.default_rng(5), h, w)
        rgb2, m2 = render_sample(np.random.default_rng(5), h, w)
        assert rgb1.shape == (h, w, 3) and rgb1.dtype == np.uint8
        assert m1.shape == (h, w) and m1.dtype == np.uint8 and set(np.unique(m1)) <= {0, 1}
        assert np.array_equal(rgb1, rgb2) and np.array_equal(m1, m2)


def test_masks_are_non_trivial_and_varied():
    fractions, touches_edge = [], 0
    for k in range(40):
        _, m = render_sample(np.random.default_rng([0, k]), 72, 96)
        fractions.append(m.mean())
        touches_edge += bool(m[0].any() or m[-1].any() or m[:, 0].any() or m[:, -1].any())
    fractions = np.array(fractions)
    with_hair = fractions[fractions > 0]
    assert len(with_hair) >= 34  # hairless heads are rare
    assert np.all(with_hair > 0.005) and np.all(with_hair < 0.8)
    assert with_hair.std() > 0.03  # short and long styles, small and large heads
    assert 3 <= touches_edge <= 36  # some hair runs off the frame, most does not
    assert not render_sample(np.random.default_rng(1), 64, 64, hair=False)[1].any()
    assert render_sample(np.random.default_rng(1), 64, 64, hair=True)[1].any()


def test_hair_differs_from_its_surroundings_by_texture_and_colour():
    """Hair must be learnable from appearance, not only from where it sits."""
    textured, contrasted, n = 0, 0, 40
    for k in range(n):
        rgb, m = render_sample(np.random.default_rng([21, k]), 96, 96, hair=True)
        hair = m.astype(bool)
        gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY).astype(np.float32)
        detail = np.abs(cv2.Laplacian(gray, cv2.CV_32F))
        textured += detail[hair].mean() > 1.5 * detail[~hair].mean()
        ring = cv2.dilate(m, np.ones((7, 7), np.uint8)).astype(bool) & ~hair
        gap = np.linalg.norm(rgb[hair].mean(0) - rgb[ring].mean(0))
        contrasted += gap > 30
    assert textured >= 0.9 * n
    assert contrasted >= 0.8 * n


def test_bad_arguments_are_rejected(tmp_path):
    with pytest.raises(ValueError, match="layout"):
        make_dataset(tmp_path / "x", n=1, layout="coco")
    with pytest.raises(ValueError, match="even"):
        make_dataset(tmp_path / "x", n=1, layout="celebamask-hq", size=(33, 32))
    with pytest.raises(ValueError, match="too small"):
        make_dataset(tmp_path / "x", n=1, size=4)
    with pytest.raises(ValueError, match="image_format"):
        make_dataset(tmp_path / "x", n=1, image_format="gif")
    with pytest.raises(ValueError, match="n must be"):
        make_dataset(tmp_path / "x", n=0)
    with pytest.raises(ValueError, match="at least"):
        render_sample(np.random.default_rng(0), 4, 64)


def test_existing_files_are_kept_unless_overwrite(tmp_path):
    root = make_dataset(tmp_path / "ds", n=2, size=32, seed=1)
    before = _file_bytes(root)
    with pytest.raises(InputError, match="already exists"):
        make_dataset(root, n=2, size=32, seed=2)
    make_dataset(root, n=2, size=32, seed=2, overwrite=True)
    assert _file_bytes(root) != before
    assert len(data.open_dataset(root)) == 2
