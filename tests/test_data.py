"""Data set readers: layouts, every kind of broken data set (one clear line each), split, limit, subset."""

from __future__ import annotations

import inspect
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from hairseg_edge import data
from hairseg_edge.data import (
    CELEBA_ANNO_DIR,
    CELEBA_IMG_DIR,
    id_list_hash,
    is_validation_id,
    iter_samples,
    load_sample,
    open_dataset,
    read_id_list,
)
from hairseg_edge.errors import InputError
from hairseg_edge.synth import make_dataset


def _image(path: Path, h: int = 8, w: int = 8, value: int = 120) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), np.full((h, w, 3), value, np.uint8))
    return path


def _mask(path: Path, mask: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), (np.asarray(mask) > 0).astype(np.uint8) * 255)
    return path


def _folder_ds(root: Path, image_ids, mask_ids=None, h: int = 8, w: int = 8) -> Path:
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "masks").mkdir(parents=True, exist_ok=True)
    for i in image_ids:
        _image(root / "images" / f"{i}.png", h, w)
    for i in image_ids if mask_ids is None else mask_ids:
        _mask(root / "masks" / f"{i}.png", np.eye(h, w))
    return root


def _input_error(call, *args, **kwargs) -> InputError:
    with pytest.raises(InputError) as info:
        call(*args, **kwargs)
    message = str(info.value)
    assert "\n" not in message and message.strip() == message  # one line for the CLI
    return info.value


# ---------------------------------------------------------------------------------------------
# Layouts
# ---------------------------------------------------------------------------------------------


def test_folder_layout_is_detected_and_listed_in_natural_order(tmp_path):
    root = _folder_ds(tmp_path / "ds", ["img10", "img2", "img1"])
    ds = open_dataset(root)
    assert ds.layout == data.FOLDER and data.detect_layout(root) == data.FOLDER
    assert ds.ids == ["img1", "img2", "img10"]
    s = ds.samples[0]
    assert s.image_path == root / "images" / "img1.png" and s.mask_path == root / "masks" / "img1.png"
    assert len(ds) == 3 and [x.id for x in ds] == ds.ids


def test_folder_layout_accepts_jpeg_images_any_size_and_skips_hidden_and_other_files(tmp_path):
    root = _folder_ds(tmp_path / "ds", ["a"], h=30, w=50)
    _image(root / "images" / "b.jpg", 70, 20)
    _mask(root / "masks" / "b.png", np.ones((70, 20)))
    (root / "images" / ".DS_Store").write_bytes(b"\x00\x01")
    (root / "images" / ".c.jpg").write_bytes(b"editor swap file")
    (root / "images" / "README.txt").write_text("not an image")
    (root / "masks" / "Thumbs.db").write_bytes(b"\x00")
    ds = open_dataset(root)
    assert ds.ids == ["a", "b"]
    rgb, mask = load_sample(ds.samples[1])
    assert rgb.shape == (70, 20, 3) and mask.shape == (70, 20) and mask.all()


def test_celebamask_layout_is_detected(synthetic_celeba_dataset):
    ds = open_dataset(synthetic_celeba_dataset)
    assert ds.layout == data.CELEBAMASK_HQ
    assert all(s.layout == data.CELEBAMASK_HQ for s in ds)
    assert ds.ids[:3] == ["00000", "00001", "00002"]


def test_load_sample_returns_rgb_and_a_0_1_mask_of_the_same_size(synthetic_folder_dataset):
    for sample, rgb, mask in iter_samples(open_dataset(synthetic_folder_dataset)):
        assert rgb.dtype == np.uint8 and rgb.ndim == 3 and rgb.shape[2] == 3
        assert mask.dtype == np.uint8 and mask.shape == rgb.shape[:2]
        assert set(np.unique(mask)) <= {0, 1}
    assert inspect.isgenerator(iter_samples(open_dataset(synthetic_folder_dataset)))


def test_celebamask_mask_is_resized_to_its_image_with_nearest_neighbour(tmp_path):
    root = tmp_path / "c"
    _image(root / CELEBA_IMG_DIR / "7.jpg", 8, 8)
    small = np.array([[1, 0, 0, 1], [0, 0, 0, 0], [0, 1, 1, 0], [0, 0, 0, 1]], np.uint8)
    _mask(root / CELEBA_ANNO_DIR / "0" / "00007_hair.png", small)
    _image(root / CELEBA_IMG_DIR / "8.jpg", 12, 12)
    _mask(root / CELEBA_ANNO_DIR / "0" / "00008_hair.png", np.tile(small, (2, 2)))  # 8x8 for 12x12
    ds = open_dataset(root)
    assert ds.ids == ["00007", "00008"]
    _, mask = load_sample(ds.samples[0])
    assert np.array_equal(mask, np.repeat(np.repeat(small, 2, 0), 2, 1))  # exact 2x, still binary
    _, mask12 = load_sample(ds.samples[1])
    assert mask12.shape == (12, 12) and set(np.unique(mask12)) == {0, 1}
    assert mask12.sum() == pytest.approx(np.tile(small, (2, 2)).sum() * (12 / 8) ** 2, rel=0.25)


def test_celebamask_image_without_hair_file_has_an_empty_mask(tmp_path):
    root = tmp_path / "c"
    _image(root / CELEBA_IMG_DIR / "0.jpg", 8, 8)
    (root / CELEBA_ANNO_DIR / "0").mkdir(parents=True)
    _mask(root / CELEBA_ANNO_DIR / "0" / "00000_skin.png", np.ones((4, 4)))  # other parts ignored
    (sample,) = open_dataset(root)
    assert sample.mask_path is None
    rgb, mask = load_sample(sample)
    assert mask.shape == (8, 8) and not mask.any()


# ---------------------------------------------------------------------------------------------
# Broken data sets: one line that names the file or folder
# ---------------------------------------------------------------------------------------------


def test_missing_folder(tmp_path):
    err = _input_error(open_dataset, tmp_path / "nowhere")
    assert "no such folder" in str(err) and err.path == str(tmp_path / "nowhere")


def test_a_file_instead_of_a_folder(tmp_path):
    f = tmp_path / "data.zip"
    f.write_bytes(b"PK")
    err = _input_error(open_dataset, f)
    assert "not a folder" in str(err) and str(f) in str(err)


def test_a_folder_that_is_no_data_set_says_what_was_expected(tmp_path):
    err = _input_error(open_dataset, tmp_path)
    assert "images/" in str(err) and "CelebA-HQ-img/" in str(err) and str(tmp_path) in str(err)


def test_missing_masks_folder(tmp_path):
    _image(tmp_path / "images" / "a.png")
    err = _input_error(open_dataset, tmp_path)
    assert "masks/" in str(err)


def test_empty_images_folder(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    err = _input_error(open_dataset, tmp_path)
    assert "no images" in str(err) and err.path == str(tmp_path / "images")


def test_images_without_masks_says_how_many_and_names_the_first_few(tmp_path):
    root = _folder_ds(tmp_path, [f"p{i}" for i in range(1, 8)], mask_ids=["p1", "p2"])
    err = _input_error(open_dataset, root)
    msg = str(err)
    assert "5 image(s) without a mask" in msg
    assert "p3, p4, p5" in msg and "p7" not in msg and "..." in msg
    assert err.path == str(root / "images")


def test_masks_without_images(tmp_path):
    root = _folder_ds(tmp_path, ["a", "b"], mask_ids=["a", "b", "c"])
    err = _input_error(open_dataset, root)
    assert "1 mask(s) without an image" in str(err) and str(err).endswith(": c")
    assert err.path == str(root / "masks")


def test_two_files_with_one_id(tmp_path):
    root = _folder_ds(tmp_path, ["a"])
    _image(root / "images" / "a.jpg")
    err = _input_error(open_dataset, root)
    assert "share the id 'a'" in str(err) and "a.jpg" in str(err) and "a.png" in str(err)


@pytest.mark.parametrize("which", ["images", "masks"])
def test_zero_byte_file_is_named(tmp_path, which):
    root = _folder_ds(tmp_path, ["a", "b"])
    (root / which / "b.png").write_bytes(b"")
    err = _input_error(open_dataset, root)
    assert "0 bytes" in str(err) and err.path == str(root / which / "b.png")


def test_unreadable_image_named_jpg(tmp_path):
    root = _folder_ds(tmp_path, ["a"])
    (root / "images" / "a.png").unlink()
    (root / "images" / "a.jpg").write_text("<html>404 not found</html>")
    (sample,) = open_dataset(root)  # listing is cheap and does not decode
    err = _input_error(load_sample, sample)
    assert "not a readable image" in str(err) and err.path == str(root / "images" / "a.jpg")


def test_truncated_jpeg(tmp_path, synthetic_folder_dataset):
    ds = open_dataset(synthetic_folder_dataset)
    victim = ds.samples[2].image_path
    victim.write_bytes(victim.read_bytes()[:-200])
    err = _input_error(load_sample, ds.samples[2])
    assert "truncated" in str(err) and err.path == str(victim)
    load_sample(ds.samples[1])  # the others still load


def test_folder_mask_of_another_size_is_an_error_not_a_silent_resize(tmp_path):
    root = _folder_ds(tmp_path, ["a"], h=10, w=20)
    _mask(root / "masks" / "a.png", np.ones((20, 10)))
    (sample,) = open_dataset(root)
    err = _input_error(load_sample, sample)
    assert "mask is 10x20 but its image is 20x10" in str(err) and err.path == str(root / "masks" / "a.png")


def test_celebamask_without_annotation_folder(tmp_path):
    _image(tmp_path / CELEBA_IMG_DIR / "0.jpg")
    err = _input_error(open_dataset, tmp_path)
    assert CELEBA_ANNO_DIR in str(err)


def test_celebamask_image_names_must_be_numbers(tmp_path):
    _image(tmp_path / CELEBA_IMG_DIR / "0.jpg")
    _image(tmp_path / CELEBA_IMG_DIR / "selfie.jpg")
    (tmp_path / CELEBA_ANNO_DIR).mkdir()
    err = _input_error(open_dataset, tmp_path)
    assert "not CelebA-HQ numbers: selfie" in str(err)


def test_celebamask_hair_mask_without_its_image(tmp_path):
    _image(tmp_path / CELEBA_IMG_DIR / "0.jpg")
    _mask(tmp_path / CELEBA_ANNO_DIR / "0" / "00000_hair.png", np.ones((4, 4)))
    _mask(tmp_path / CELEBA_ANNO_DIR / "0" / "00003_hair.png", np.ones((4, 4)))
    err = _input_error(open_dataset, tmp_path)
    assert "1 hair mask(s) without an image" in str(err) and "00003_hair.png" in str(err)


def test_celebamask_hair_mask_in_the_wrong_subfolder_is_named_as_such(tmp_path):
    _image(tmp_path / CELEBA_IMG_DIR / "5.jpg")
    _mask(tmp_path / CELEBA_ANNO_DIR / "1" / "00005_hair.png", np.ones((4, 4)))
    err = _input_error(open_dataset, tmp_path)
    assert "00005_hair.png" in str(err) and "wrong folder" in str(err)
    assert f"{CELEBA_ANNO_DIR}/0/" in str(err)


def test_celebamask_two_images_with_one_number(tmp_path):
    _image(tmp_path / CELEBA_IMG_DIR / "1.jpg")
    _image(tmp_path / CELEBA_IMG_DIR / "01.jpg")
    (tmp_path / CELEBA_ANNO_DIR).mkdir()
    err = _input_error(open_dataset, tmp_path)
    assert "number 1" in str(err) and "01.jpg" in str(err) and "1.jpg" in str(err)


# ---------------------------------------------------------------------------------------------
# Split, limit, subset
# ---------------------------------------------------------------------------------------------


def test_split_is_deterministic_disjoint_and_complete(synthetic_folder_dataset):
    ds = open_dataset(synthetic_folder_dataset)
    train, val = ds.split(0.3)
    train2, val2 = open_dataset(synthetic_folder_dataset).split(0.3)
    assert train.ids == train2.ids and val.ids == val2.ids
    assert not set(train.ids) & set(val.ids)
    assert sorted(train.ids + val.ids) == sorted(ds.ids)
    assert train.ids == [i for i in ds.ids if i in set(train.ids)]  # data set order kept
    assert train.layout == val.layout == ds.layout


def test_split_takes_roughly_the_fraction():
    ids = [f"{n:05d}" for n in range(4000)]
    for fraction in (0.05, 0.1, 0.3):
        share = sum(is_validation_id(i, fraction) for i in ids) / len(ids)
        assert abs(share - fraction) < 0.02, (fraction, share)
    assert not any(is_validation_id(i, 0.0) for i in ids[:200])
    # The split depends only on the id (SHA-256): pinned, so reports from older versions and other
    # machines keep meaning the same validation images.
    assert data.DEFAULT_VAL_FRACTION == 0.1
    assert [i for i in ids[:60] if is_validation_id(i)] == ["00015", "00044", "00050", "00051"]


def test_split_does_not_move_when_files_are_added(tmp_path):
    root = make_dataset(tmp_path / "ds", n=20, size=24, seed=5)
    train_before, val_before = open_dataset(root).split(0.25)
    make_dataset(root, n=20, size=24, seed=5, first_id=20)  # the data set grows
    train_after, val_after = open_dataset(root).split(0.25)
    old = set(train_before.ids) | set(val_before.ids)
    assert [i for i in val_after.ids if i in old] == val_before.ids
    assert [i for i in train_after.ids if i in old] == train_before.ids
    assert len(val_after) > len(val_before)


@pytest.mark.parametrize("fraction", [-0.1, 1.0, 1.5])
def test_split_rejects_impossible_fractions(synthetic_folder_dataset, fraction):
    with pytest.raises(ValueError, match="val_fraction"):
        open_dataset(synthetic_folder_dataset).split(fraction)


def test_limit_keeps_the_first_n_in_order(synthetic_folder_dataset):
    full = open_dataset(synthetic_folder_dataset)
    limited = open_dataset(synthetic_folder_dataset, limit=3)
    assert limited.ids == full.ids[:3]
    assert open_dataset(synthetic_folder_dataset, limit=1000).ids == full.ids
    assert full.limit(None) is full
    with pytest.raises(ValueError, match="limit"):
        full.limit(0)


def test_subset_keeps_data_set_order_and_names_unknown_ids(synthetic_folder_dataset):
    ds = open_dataset(synthetic_folder_dataset)
    picked = ds.subset([ds.ids[5], ds.ids[1], ds.ids[5]])
    assert picked.ids == [ds.ids[1], ds.ids[5]]
    err = _input_error(ds.subset, [ds.ids[0], "ghost_1", "ghost_2", "ghost_3", "ghost_4"])
    assert "4 listed id(s) not in the data set" in str(err)
    assert "ghost_1, ghost_2, ghost_3" in str(err) and "ghost_4" not in str(err)
    assert err.path == str(ds.root)


def test_read_id_list_skips_comments_and_blank_lines(tmp_path):
    f = tmp_path / "val.txt"
    f.write_text("# validation ids\n00001\n\n  00007  \n#00009\n", encoding="utf-8")
    assert read_id_list(f) == ["00001", "00007"]
    err = _input_error(read_id_list, tmp_path / "missing.txt")
    assert "cannot read id list" in str(err)


def test_id_list_hash_ignores_order_and_sees_changes():
    assert id_list_hash(["b", "a"]) == id_list_hash(["a", "b"])
    assert id_list_hash(["a", "b"]) != id_list_hash(["a", "c"])
    assert len(id_list_hash(["a"])) == 16


def test_real_data_if_available():
    """Smoke check on the shared data set when HAIRSEG_DATA points at it (never copied)."""
    import os

    root = os.environ.get("HAIRSEG_DATA")
    if not root:
        pytest.skip("HAIRSEG_DATA is not set (e.g. ../shared/data/celebamask-hq-hair)")
    ds = open_dataset(root, limit=5)
    assert len(ds) == 5
    for _, rgb, mask in iter_samples(ds):
        assert rgb.shape[:2] == mask.shape


def test_copied_data_set_keeps_its_split(tmp_path, synthetic_folder_dataset):
    """The split is a function of the ids, not of paths or listing order."""
    copy = shutil.copytree(synthetic_folder_dataset, tmp_path / "elsewhere")
    assert open_dataset(copy).split(0.3)[1].ids == open_dataset(synthetic_folder_dataset).split(0.3)[1].ids


def test_device_side_readers_refuse_a_url_in_one_line(one_line_error):
    """Only training reads storage through TensorFlow (docs/distributed.md); eval says so, not 'no such folder'."""
    from typer.testing import CliRunner

    from hairseg_edge.cli import app

    with pytest.raises(InputError, match=r"^gs://bucket/hair: a URL: only training reads"):
        open_dataset("gs://bucket/hair")
    result = CliRunner().invoke(app, ["eval", "--data", "gs://bucket/hair"])
    one_line_error(result, "gs://bucket/hair: a URL")
