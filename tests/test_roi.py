"""The region-of-interest stage (hairseg_edge/roi.py): box geometry, crop/paste, component grouping,
the two-pass Segmenter on the sample photo shrunk inside the test, video tracking, bad input, and
(with HAIRSEG_DATA) a regression check on shrunk validation photos."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import pytest

from hairseg_edge import contract
from hairseg_edge.errors import InputError
from hairseg_edge.roi import (Box, RoiConfig, bounding_extent, crop, group_components, hair_components, merge_boxes, paste,
                              square_around)

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "examples" / "astronaut.png"
GREY = 128


def shrink_onto_canvas(rgb: np.ndarray, mask: np.ndarray, zoom: float, *, left_share: float = 0.5,
                       top_share: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """``rgb`` and ``mask`` shrunk by ``zoom`` on a grey canvas of the same size (a small head)."""
    h, w = mask.shape
    sh, sw = round(h * zoom), round(w * zoom)
    top, left = round((h - sh) * top_share), round((w - sw) * left_share)
    canvas = np.full_like(rgb, GREY)
    canvas[top:top + sh, left:left + sw] = cv2.resize(rgb, (sw, sh), interpolation=cv2.INTER_AREA)
    target = np.zeros_like(mask)
    target[top:top + sh, left:left + sw] = cv2.resize(mask.astype(np.uint8), (sw, sh),
                                                      interpolation=cv2.INTER_NEAREST_EXACT) > 0
    return canvas, target


def iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.count_nonzero(a | b)
    return np.count_nonzero(a & b) / union if union else 1.0


# --- geometry --------------------------------------------------------------------------------------------
def test_square_around_is_centred_and_scaled():
    box = square_around(10, 20, 30, 60, 1.5)  # 20 x 40 rectangle, centre (20, 40)
    assert box.side == 60
    assert box.centre == (20.0, 40.0)
    assert square_around(5, 5, 6, 6, 1.5, min_side=16).side == 16


def test_merge_boxes_merges_chains_and_keeps_disjoint_boxes():
    a, b, c, far = Box(0, 0, 10), Box(8, 0, 10), Box(16, 0, 10), Box(100, 100, 5)
    merged = merge_boxes([a, b, c, far])
    assert far in merged and len(merged) == 2
    big = next(m for m in merged if m != far)
    for box in (a, b, c):  # the union covers every merged box
        assert big.x <= box.x and big.y <= box.y
        assert big.x + big.side >= box.x + box.side and big.y + big.side >= box.y + box.side


def test_crop_past_the_frame_is_padded_and_paste_writes_only_inside():
    rgb = np.arange(6 * 8 * 3, dtype=np.uint8).reshape(6, 8, 3)
    box = Box(-2, 3, 5)  # reaches past the left and bottom edges
    piece = crop(rgb, box)
    assert piece.shape == (5, 5, 3)
    assert (piece[:, :2] == contract.PAD_VALUE).all() and (piece[3:] == contract.PAD_VALUE).all()
    assert np.array_equal(piece[:3, 2:], rgb[3:6, 0:3])
    canvas = np.zeros((6, 8), np.float32)
    paste(canvas, np.ones((5, 5), np.float32), box)
    assert canvas.sum() == 9 and canvas[3:6, 0:3].all()
    # A box wholly outside the frame: an all-padding crop, and nothing pasted.
    assert (crop(rgb, Box(20, 20, 4)) == contract.PAD_VALUE).all()
    paste(canvas, np.full((4, 4), 7.0, np.float32), Box(20, 20, 4))
    assert canvas.max() == 1.0


def test_bounding_extent_matches_the_pixels_it_bounds():
    """The tracked frame's fast extent (row/column any) equals the extent of np.nonzero's pixels."""
    rng = np.random.default_rng(5)
    assert bounding_extent(np.zeros((7, 9), bool)) is None
    for _ in range(200):
        h, w = rng.integers(1, 40, size=2)
        likely = rng.random((h, w)) > rng.choice([0.5, 0.97, 0.999])
        ys, xs = np.nonzero(likely)
        expected = None if xs.size == 0 else (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)
        assert bounding_extent(likely) == expected


def test_far_small_blobs_are_dropped_and_near_strands_join_the_head():
    likely = np.zeros((100, 100), bool)
    likely[20:40, 30:60] = True        # the head's hair, 600 px
    likely[42:50, 26:29] = True        # a strand just below it, 24 px: joins
    likely[90:93, 90:93] = True        # a blob far away, 9 px: dropped
    heads = group_components(hair_components(likely), min_share=0.1, box_scale=1.5)
    assert len(heads) == 1
    area, extent = heads[0]
    assert area == 600 + 24 and extent == (26, 20, 60, 50)
    # Two heads of similar size both stay.
    likely[60:80, 60:85] = True
    assert len(group_components(hair_components(likely), 0.1, 1.5)) == 2


def test_config_rejects_bad_values():
    for bad in (0, -1, 1.5, True):
        with pytest.raises(InputError, match="max-people"):
            RoiConfig(max_people=bad)
    with pytest.raises(InputError):
        RoiConfig(smoothing=0.0)
    for bad in ({"face_scale": 0.5}, {"face_scale": float("nan")}, {"face_lift": float("nan")},
                {"face_lift": 1e9}):
        with pytest.raises(InputError, match="face_scale"):
            RoiConfig(**bad)


# --- the stage with the bundled model --------------------------------------------------------------------
@pytest.fixture(scope="module")
def bundled():
    from hairseg_edge.models import default_model_path
    from hairseg_edge.runtime import Segmenter

    path = default_model_path("int8")
    with Segmenter(path, roi="auto") as auto, Segmenter(path, roi="off") as off:
        yield auto, off


@pytest.fixture(scope="module")
def sample():
    from hairseg_edge.imageio import read_image

    return read_image(SAMPLE)


def test_small_head_gains_from_the_stage(bundled, sample):
    """The sample photo shrunk to 0.4x: the single pass loses most of the hair, the stage keeps it."""
    auto, off = bundled
    reference = off.segment(sample).mask  # the face-filling photo's own single-pass mask
    canvas, target = shrink_onto_canvas(sample, reference, 0.4)
    single, staged = iou(off.segment(canvas).mask, target), iou(auto.segment(canvas).mask, target)
    # Measured: 0.23 -> 0.75 (the crop's exact size moves it between 0.75 and 0.92).
    assert staged >= 0.7, (single, staged)
    assert staged >= single + 0.3, (single, staged)
    assert auto.region_stage.last_inferences == 3  # the locating pass and one crop, run and mirrored
    box = auto.region_stage.last_boxes[0]
    ys, xs = np.nonzero(target)
    assert box.x <= xs.min() and box.y <= ys.min()
    assert box.x + box.side > xs.max() and box.y + box.side > ys.max()


def test_photo_crops_run_mirrored_and_face_filling_photos_do_not(bundled, sample):
    """crop_flip: a small head's crop runs twice (as is and mirrored, averaged), which changes its
    mask; a face-filling photo keeps its one pass; without crop_flip the crop runs once."""
    from hairseg_edge.models import default_model_path
    from hairseg_edge.roi import RoiConfig
    from hairseg_edge.runtime import Segmenter

    auto, off = bundled
    canvas, _ = shrink_onto_canvas(sample, off.segment(sample).mask, 0.4)
    with Segmenter(default_model_path("int8"), roi="auto", roi_config=RoiConfig(crop_flip=False)) as plain:
        once = plain.segment(canvas)
        assert plain.region_stage.last_inferences == 2
        mirrored = auto.segment(canvas)
        assert auto.region_stage.last_inferences == 3
        assert plain.region_stage.last_boxes == auto.region_stage.last_boxes
        assert np.count_nonzero(once.mask != mirrored.mask) > 0  # the mirrored pass is really averaged in
        face = np.ascontiguousarray(sample[:256, 128:384])  # the head fills this crop of the photo
        np.testing.assert_array_equal(plain.segment(face).mask, auto.segment(face).mask)
        assert auto.region_stage.last_inferences == 1  # face-filling: the first pass only


def test_blobs_far_from_the_head_are_removed(bundled, sample):
    auto, off = bundled
    counts = {}
    for name, seg in (("off", off), ("auto", auto)):
        n, _, stats, _ = cv2.connectedComponentsWithStats(seg.segment(sample).mask.astype(np.uint8))
        counts[name] = (n - 1, int(stats[1:, cv2.CC_STAT_AREA].sum() - stats[1:, cv2.CC_STAT_AREA].max()))
    assert counts["off"][0] > 1 and counts["off"][1] > 100  # the neck-ring blobs of the single pass
    assert counts["auto"] == (1, 0)


def test_no_head_gives_an_empty_mask_and_tiny_frames_work(bundled):
    auto, _ = bundled
    empty = auto.segment(np.full((300, 400, 3), GREY, np.uint8))
    assert empty.mask.shape == (300, 400) and not empty.mask.any()
    assert auto.region_stage.last_boxes == []
    assert float(empty.probability.max()) == 0.0
    one = auto.segment(np.zeros((1, 1, 3), np.uint8))
    assert one.mask.shape == (1, 1)
    assert auto.track(np.zeros((1, 1, 3), np.uint8)).mask.shape == (1, 1)


def test_empty_frames_fail_like_the_single_pass(bundled):
    auto, off = bundled
    for seg in (auto, off):
        with pytest.raises(ValueError, match="no pixels"):
            seg.segment(np.zeros((0, 0, 3), np.uint8))


def test_max_people_limits_the_regions(bundled):
    """Two heads' hair in a first pass (a map made here, as the model would give it) -> two boxes."""
    from hairseg_edge.roi import RegionStage
    from hairseg_edge.runtime import Segmentation

    auto, _ = bundled
    prob = np.zeros((400, 1000), np.float32)
    prob[100:160, 100:200] = 0.9    # the larger head
    prob[120:170, 700:780] = 0.8    # a second, 600 px away
    prob[380:384, 500:504] = 0.9    # a blob far from both
    first_pass = Segmentation(probability=prob, mask=prob > 0.5)
    two = RegionStage(auto, RoiConfig(max_people=2)).locate(first_pass)
    one = RegionStage(auto, RoiConfig(max_people=1)).locate(first_pass)
    assert len(two) == 2 and len(one) == 1
    assert one[0] == two[0] and 100 <= one[0].centre[0] <= 200
    for box in two:
        assert not (box.x <= 502 < box.x + box.side and box.y <= 382 < box.y + box.side)


def test_segmenter_refuses_bad_roi_arguments():
    from hairseg_edge.models import default_model_path
    from hairseg_edge.runtime import Segmenter

    with pytest.raises(InputError, match="roi must be"):
        Segmenter(default_model_path("int8"), roi="yes")
    with pytest.raises(InputError, match="max-people"):
        Segmenter(default_model_path("int8"), roi="auto", max_people=0)


# --- video -----------------------------------------------------------------------------------------------
def panned_clip(sample: np.ndarray, frames: int, reference: np.ndarray | None = None):
    """The sample shrunk to 0.4x and panned left to right over a grey canvas: frames and targets."""
    mask = np.zeros(sample.shape[:2], bool) if reference is None else reference
    return [shrink_onto_canvas(sample, mask, 0.4, left_share=t / (frames - 1)) for t in range(frames)]


def test_tracked_frames_cost_one_inference_and_follow_the_head(bundled, sample):
    from hairseg_edge.models import default_model_path
    from hairseg_edge.runtime import Segmenter

    _, off = bundled
    clip = panned_clip(sample, 24, off.segment(sample).mask)
    with Segmenter(default_model_path("int8"), roi="auto") as seg:
        seg.reset_tracking()
        inferences, tracked = [], []
        for frame, target in clip:
            tracked.append(iou(seg.track(frame).mask, target))
            inferences.append(seg.region_stage.last_inferences)
        tracker = seg.region_stage._tracker
        photo = [iou(seg.segment(frame).mask, target) for frame, target in clip]
    assert tracker.locates <= 4, tracker.locates  # the first frames (the head at the edge), then tracked
    assert sum(inferences) <= len(clip) + tracker.locates * 2
    assert inferences[-1] == 1
    # Measured: mean 0.73 tracked and as separate photos (single pass 0.29); 0.88 over the last 12 frames.
    assert np.mean(tracked) >= np.mean(photo) - 0.02, (np.mean(tracked), np.mean(photo))
    assert np.mean(tracked[-12:]) >= 0.8, tracked


def test_scene_cut_and_lost_head_relocate(sample):
    from hairseg_edge.models import default_model_path
    from hairseg_edge.runtime import Segmenter

    clip = [frame for frame, _ in panned_clip(sample, 6)]
    with Segmenter(default_model_path("int8"), roi="auto", max_people=1) as seg:
        for frame in clip[:3]:
            seg.track(frame)
        tracker = seg.region_stage._tracker
        before = tracker.locates
        cut = np.where(clip[3] == GREY, 255, clip[3]).astype(np.uint8)  # another wall: a scene cut
        seg.track(cut)
        assert tracker.locates == before + 1
        blank = np.full_like(clip[0], GREY)
        assert not seg.track(blank).mask.any()  # nobody there: empty, and the tracker gives up the box
        seg.track(blank)
        assert tracker.boxes == []
        seg.reset_tracking()
        assert seg.region_stage._tracker.locates == 0


# --- CLI -------------------------------------------------------------------------------------------------
def test_cli_rejects_bad_roi_options_in_one_line(tmp_path):
    from typer.testing import CliRunner

    from hairseg_edge.cli import app

    runner = CliRunner()
    for args, needle in ((["--roi", "maybe"], "--roi"), (["--max-people", "0"], "--max-people")):
        result = runner.invoke(app, ["run", str(SAMPLE), "-o", str(tmp_path / "out"), *args])
        assert result.exit_code == 2, result.output
        assert needle in result.output and "Traceback" not in result.output


def test_bench_roi_needs_end_to_end():
    from hairseg_edge.bench import BenchOptions

    with pytest.raises(InputError, match="end-to-end"):
        BenchOptions(roi="auto")
    assert BenchOptions(roi="auto", end_to_end=True).to_dict()["roi"] == "auto"


# --- real data -------------------------------------------------------------------------------------------
#: On the first 40 recorded validation faces shrunk to 0.4x (benchmarks/results/roi.md has the full run):
#: the stage must reach this IoU and gain at least GAIN over the single pass; face-filling photos must
#: not lose more than 0.001 (one tenth of a point). Measured with mirrored crops: 0.857 vs 0.752 single
#: pass (0.887 vs 0.888 face-filling); the floors leave 1.7 and 2.5 points for other platforms' rounding.
SMALL_HEAD_FLOOR, GAIN = 0.84, 0.08


def test_regression_on_shrunk_validation_faces(bundled):
    root = os.environ.get("HAIRSEG_DATA")
    if not root:
        pytest.skip("HAIRSEG_DATA is not set: the real-data check needs celebamask-hq-hair")
    from hairseg_edge.data import iter_samples, open_dataset, read_id_list
    from hairseg_edge.metrics import SegmentationMeter

    auto, off = bundled
    ids = read_id_list(REPO / "hairseg_edge" / "splits" / "celebamask-hq-hair_val.txt")
    ds = open_dataset(root).subset(ids).limit(40)
    meters = {key: SegmentationMeter() for key in ("auto1", "off1", "auto0.4", "off0.4")}
    for _, rgb, mask in iter_samples(ds):
        target = mask > 0
        meters["auto1"].update(auto.segment(rgb).mask, target)
        meters["off1"].update(off.segment(rgb).mask, target)
        canvas, small = shrink_onto_canvas(rgb, target, 0.4)
        meters["auto0.4"].update(auto.segment(canvas).mask, small)
        meters["off0.4"].update(off.segment(canvas).mask, small)
    result = {k: m.result().iou for k, m in meters.items()}
    assert result["auto0.4"] >= SMALL_HEAD_FLOOR, result
    assert result["auto0.4"] >= result["off0.4"] + GAIN, result
    assert result["auto1"] >= result["off1"] - 0.001, result


# --- the face fallback (issue 23) ------------------------------------------------------------------------
#: A dim photo of a small head on a dark background: the sample at 0.604x, darkened (gamma 2), on a
#: near-black canvas at this corner. The hair pass finds no hair at all here, the face detector finds the
#: face (found by a search over zoom, brightness and position; neighbouring positions often give the
#: hair pass a component, so the test asserts that precondition first).
DIM_ZOOM, DIM_GAMMA, DIM_CANVAS, DIM_TOP_LEFT = 0.604, 2.0, 9, (186, 148)


def dim_small_head(rgb: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    h, w = mask.shape
    side_h, side_w = int(h * DIM_ZOOM), int(w * DIM_ZOOM)
    small = cv2.resize(rgb, (side_w, side_h), interpolation=cv2.INTER_AREA).astype(np.float32) / 255
    small = (np.clip(small ** DIM_GAMMA, 0, 1) * 255).astype(np.uint8)
    top, left = DIM_TOP_LEFT
    canvas = np.full_like(rgb, DIM_CANVAS)
    canvas[top:top + side_h, left:left + side_w] = small
    target = np.zeros_like(mask)
    target[top:top + side_h, left:left + side_w] = cv2.resize(mask.astype(np.uint8), (side_w, side_h),
                                                              interpolation=cv2.INTER_NEAREST) > 0
    return canvas, target


@pytest.fixture(scope="module")
def hair_only():
    from hairseg_edge.models import default_model_path
    from hairseg_edge.runtime import Segmenter

    with Segmenter(default_model_path("int8"), roi="auto", face_detector="off") as seg:
        yield seg


@pytest.fixture(scope="module")
def dim(bundled, sample):
    _, off = bundled
    return dim_small_head(sample, off.segment(sample).mask)


def test_face_fallback_finds_the_head_the_hair_pass_misses(bundled, hair_only, dim):
    auto, _ = bundled
    canvas, target = dim
    without = hair_only.segment(canvas)
    assert hair_only.region_stage.last_located_by is None and not without.mask.any(), \
        "precondition: the hair pass must find no head in this frame"
    before = auto.region_stage.face_detections
    staged = auto.segment(canvas)
    stage = auto.region_stage
    assert stage.face_detections == before + 1 and stage.last_located_by == "face"
    assert staged.mask.any()
    # Measured 0.885 against the face-filling photo's own mask, shrunk the same way.
    assert iou(staged.mask, target) >= 0.7, iou(staged.mask, target)
    (box,) = stage.last_boxes  # one head: the box is on it, and so is every hair pixel
    ys, xs = np.nonzero(staged.mask)
    assert box.x <= xs.min() and box.y <= ys.min() and xs.max() < box.x + box.side and ys.max() < box.y + box.side
    tys, txs = np.nonzero(target)
    assert txs.min() - 5 <= xs.min() and xs.max() <= txs.max() + 5 and tys.min() - 5 <= ys.min()


def test_face_fallback_runs_only_when_the_hair_pass_finds_nothing(bundled, hair_only, sample):
    """Where the hair pass finds a head, the stage is exactly the one without the fallback."""
    auto, off = bundled
    small, _ = shrink_onto_canvas(sample, off.segment(sample).mask, 0.4)
    for frame in (sample, small):
        before = auto.region_stage.face_detections
        with_fallback, without = auto.segment(frame), hair_only.segment(frame)
        assert auto.region_stage.face_detections == before and auto.region_stage.last_located_by == "hair"
        assert np.array_equal(with_fallback.mask, without.mask)
        assert auto.region_stage.last_boxes == hair_only.region_stage.last_boxes
    assert hair_only.region_stage.face_detector_status == "off"


def test_tracker_relocation_uses_the_face_fallback(bundled, dim):
    auto, _ = bundled
    canvas, target = dim
    auto.reset_tracking()
    first = auto.track(canvas)  # the first frame is located on the whole frame
    assert auto.region_stage.last_located_by == "face" and iou(first.mask, target) >= 0.7
    auto.reset_tracking()


def test_an_empty_video_runs_the_face_detector_on_every_kth_frame(bundled):
    """Nobody in view: every frame is searched with the hair pass, the detector only every face_every-th
    frame (it costs as much as the hair pass), and again at once after a scene cut."""
    auto, _ = bundled
    stage = auto.region_stage
    empty = np.full((240, 320, 3), 128, np.uint8)
    auto.reset_tracking()
    before = stage.face_detections
    for _ in range(25):
        assert not auto.track(empty).mask.any()
    assert stage.face_detections - before == 3  # frames 0, 10 and 20 (face_every = 10)
    assert not auto.track(np.full_like(empty, 230)).mask.any()  # a scene cut (a dark frame would look like hair)
    assert stage.face_detections - before == 4
    auto.reset_tracking()


def test_install_without_the_detector_runs_without_the_fallback(monkeypatch, tmp_path, dim):
    """The bundled file missing from an install: no crash, the hair pass alone, and `info` says so."""
    import hairseg_edge.models as models
    from hairseg_edge.runtime import Segmenter

    monkeypatch.setattr(models, "FACE_DETECTOR_PATH", tmp_path / "face_detection_short_range.tflite")
    canvas, _ = dim
    with Segmenter(models.default_model_path("int8"), roi="auto") as seg:
        assert not seg.segment(canvas).mask.any()
        assert seg.region_stage.face_detector_status.startswith("unavailable: not in this install")
        assert seg.region_stage.face_detections == 0

    from typer.testing import CliRunner

    from hairseg_edge.cli import app

    result = CliRunner().invoke(app, ["info", "--no-gpu"], terminal_width=200)
    assert result.exit_code == 0, result.output
    assert "face detector" in result.output and "not in this install" in result.output


def test_cli_face_detector_off_gives_the_stage_without_fallback(tmp_path, dim):
    from typer.testing import CliRunner

    from hairseg_edge.cli import app
    from hairseg_edge.imageio import write_image

    canvas, _ = dim
    photo = tmp_path / "dim.png"
    write_image(photo, canvas)
    masks = {}
    for name, extra in (("default", []), ("off", ["--face-detector", "off"])):
        result = CliRunner().invoke(app, ["run", str(photo), "-o", str(tmp_path / name), *extra])
        assert result.exit_code == 0, result.output
        masks[name] = cv2.imread(str(tmp_path / name / "dim_mask.png"), cv2.IMREAD_UNCHANGED) > 0
    assert masks["default"].any() and not masks["off"].any()
