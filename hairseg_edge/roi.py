"""The region-of-interest stage: find the head(s), then segment a full-resolution crop of each.

A segmenter that sees the whole frame at 224 px gets a head that fills a tenth of the frame as a
few dozen pixels. This stage runs the model twice instead (numpy + OpenCV only, any adapter):

1. **Locate** — the model's own pass on the whole frame. The hair probability > ``LOCATE_THRESHOLD``
   is split into connected components on a small copy of the map; components smaller than
   ``min_share`` of the largest are dropped (the false-positive blobs far from any head), and each of
   the ``max_people`` largest becomes a square box ``box_scale`` times the component's extent, so the
   whole head, including hair the coarse pass missed, is inside (1.3 measured best of 1.3-1.8). Overlapping boxes are merged.
2. **Segment** — each box is cut from the full-resolution frame (never from a downscaled copy; a box
   reaching past the frame is padded with the contract's ``PAD_VALUE``), segmented, and its map
   pasted back. Outside every box the map is background; no hair found means an empty mask.

A box that already covers most of the frame (side >= ``skip_share`` of the frame's longer side) gains
nothing from a second pass: the stage keeps the first pass there, restricted to the boxes, so
face-filling photos cost one inference (``benchmarks/results/roi.md``).

**Face fallback** — when the whole-frame pass finds no hair at all (a small head, mostly: at a quarter
of the frame the coarse pass misses 7-12% of heads), a face detector (BlazeFace short range, bundled;
:mod:`hairseg_edge.face_detector`) looks for faces, and each becomes a square box ``face_scale`` times
the face box, lifted ``face_lift`` face sides (the hair is above the face). It runs only then, so it
costs nothing on the photos the hair pass handles, and it is never worse than the hair pass alone
(``benchmarks/results/roi_detector.md``: IoU at 0.25x 0.780 -> 0.808 on faces, 0.607 -> 0.673 wild).

Video (:class:`RegionTracker`): the region of frame t seeds frame t+1, so a tracked frame costs one
inference on the crop. It re-locates every ``redetect_every`` frames, on a scene cut, and when the
hair reaches the crop's border (it may continue outside); the box follows the hair with exponential
smoothing so the crop, and with it the mask, does not jitter.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import cv2
import numpy as np

from . import contract
from .errors import InputError

if TYPE_CHECKING:
    from .face_detector import FaceDetector
    from .runtime import Segmentation, Segmenter

#: ``Segmenter(roi=...)`` values: ``auto`` runs the stage, ``off`` one pass on the whole frame.
ROI_MODES = ("auto", "off")
#: A pixel counts as "maybe hair" for locating the head above this probability (the probe's 0.3).
LOCATE_THRESHOLD = 0.3
#: The locate map is searched for components at this longer side (cheap, and blob sizes comparable).
LOCATE_SIDE = 128


@dataclass(frozen=True)
class RoiConfig:
    """The stage's knobs; the defaults are the measured ones (``benchmarks/roi.py``)."""

    max_people: int = 2
    box_scale: float = 1.3     # box side / the hair component's longer extent
    min_share: float = 0.1     # components below this share of the largest one's area are dropped
    skip_share: float = 0.6    # a box at least this share of the frame's longer side: no second pass
    min_box: int = 16          # smallest box side, frame pixels
    redetect_every: int = 30   # video: locate again on the whole frame every K frames
    smoothing: float = 0.5     # video: weight of the new box in the running box (1 = no smoothing)
    scene_cut: float = 40.0    # video: mean absolute difference of 32x32 gray thumbnails, 0..255
    track_margin: float = 1.25 # video: a tracked box is this much larger than a photo's (room to move)
    refine: int = 1            # photos: re-cut a box this many times when the crop's hair reaches its border
    face_fallback: bool = True # no hair found on the whole frame: locate faces with the face detector
    face_scale: float = 2.0    # face fallback: box side / the face box's longer side (measured best)
    face_lift: float = 0.3     # face fallback: box centre this many face sides above the face's centre
    face_every: int = 10       # video with no head in view: the face fallback runs on every K-th frame
    crop_flip: bool = True     # photos: each crop also runs mirrored, the two averaged (mirror TTA where
                               # the error is: +0.8 / +1.0 point at 0.4x, face-filling photos untouched)

    def __post_init__(self) -> None:
        if isinstance(self.max_people, bool) or not isinstance(self.max_people, int) or self.max_people < 1:
            raise InputError(f"--max-people must be an integer >= 1, got {self.max_people!r}")
        if not self.box_scale >= 1.0:
            raise InputError(f"box_scale must be >= 1, got {self.box_scale!r}")
        if not 0.0 < self.smoothing <= 1.0:
            raise InputError(f"smoothing must be in (0, 1], got {self.smoothing!r}")
        if not 0.0 <= self.min_share <= 1.0 or not 0.0 < self.skip_share:
            raise InputError("min_share must be in [0, 1] and skip_share > 0")
        if isinstance(self.redetect_every, bool) or int(self.redetect_every) < 1:
            raise InputError(f"redetect_every must be >= 1, got {self.redetect_every!r}")
        if isinstance(self.face_every, bool) or int(self.face_every) < 1:
            raise InputError(f"face_every must be >= 1, got {self.face_every!r}")
        if not self.face_scale >= 1.0 or not abs(self.face_lift) < 10.0:  # NaN fails both
            raise InputError(f"face_scale must be >= 1 and face_lift between -10 and 10 (face sides), got "
                             f"{self.face_scale!r}, {self.face_lift!r}")


@dataclass(frozen=True)
class Box:
    """A square region in frame pixels: top-left corner and side (may reach past the frame)."""

    x: int
    y: int
    side: int

    @property
    def centre(self) -> tuple[float, float]:
        return self.x + self.side / 2.0, self.y + self.side / 2.0

    def overlaps(self, other: Box) -> bool:
        return (self.x < other.x + other.side and other.x < self.x + self.side
                and self.y < other.y + other.side and other.y < self.y + self.side)

    def union(self, other: Box) -> Box:
        x0, y0 = min(self.x, other.x), min(self.y, other.y)
        x1 = max(self.x + self.side, other.x + other.side)
        y1 = max(self.y + self.side, other.y + other.side)
        return square_around(x0, y0, x1, y1, 1.0)


def square_around(x0: float, y0: float, x1: float, y1: float, scale: float, min_side: int = 1) -> Box:
    """The square box centred on the rectangle ``[x0, x1) x [y0, y1)``, ``scale`` times its longer side."""
    side = max(min_side, int(round(max(x1 - x0, y1 - y0) * scale)))
    cx, cy = (x0 + x1) / 2.0, (y0 + y1) / 2.0
    return Box(int(round(cx - side / 2.0)), int(round(cy - side / 2.0)), side)


def merge_boxes(boxes: list[Box]) -> list[Box]:
    """Merge overlapping boxes (repeatedly: a union can reach a third box) keeping the input order."""
    boxes = list(boxes)
    merged = True
    while merged:
        merged = False
        for i in range(len(boxes)):
            for j in range(i + 1, len(boxes)):
                if boxes[i].overlaps(boxes[j]):
                    boxes[i] = boxes[i].union(boxes.pop(j))
                    merged = True
                    break
            if merged:
                break
    return boxes


def crop(rgb: np.ndarray, box: Box) -> np.ndarray:
    """The box's pixels from the full-resolution frame; outside the frame, the contract's padding."""
    h, w = rgb.shape[:2]
    x0, y0, x1, y1 = box.x, box.y, box.x + box.side, box.y + box.side
    if x0 >= 0 and y0 >= 0 and x1 <= w and y1 <= h:
        return rgb[y0:y1, x0:x1]
    out = np.full((box.side, box.side) + rgb.shape[2:], contract.PAD_VALUE, dtype=rgb.dtype)
    sx0, sy0, sx1, sy1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
    if sx1 > sx0 and sy1 > sy0:
        out[sy0 - y0:sy1 - y0, sx0 - x0:sx1 - x0] = rgb[sy0:sy1, sx0:sx1]
    return out


def paste(canvas: np.ndarray, values: np.ndarray, box: Box) -> None:
    """Write a box's ``side x side`` map into the frame-size ``canvas`` (the part inside the frame)."""
    h, w = canvas.shape[:2]
    x0, y0 = box.x, box.y
    sx0, sy0 = max(x0, 0), max(y0, 0)
    sx1, sy1 = min(x0 + box.side, w), min(y0 + box.side, h)
    if sx1 > sx0 and sy1 > sy0:
        canvas[sy0:sy1, sx0:sx1] = values[sy0 - y0:sy1 - y0, sx0 - x0:sx1 - x0]


def _frame_rect(canvas_shape: tuple[int, ...], box: Box) -> tuple[slice, slice]:
    h, w = canvas_shape[:2]
    return (slice(max(box.y, 0), min(box.y + box.side, h)), slice(max(box.x, 0), min(box.x + box.side, w)))


Extent = tuple[int, int, int, int]  # x0, y0, x1, y1 (exclusive)


def hair_components(likely: np.ndarray) -> list[tuple[int, Extent]]:
    """Connected components of a boolean map, largest first, as ``(area, (x0, y0, x1, y1))``."""
    count, _, stats, _ = cv2.connectedComponentsWithStats(likely.astype(np.uint8), connectivity=8)
    found = [(int(stats[i, cv2.CC_STAT_AREA]),
              (int(stats[i, cv2.CC_STAT_LEFT]), int(stats[i, cv2.CC_STAT_TOP]),
               int(stats[i, cv2.CC_STAT_LEFT] + stats[i, cv2.CC_STAT_WIDTH]),
               int(stats[i, cv2.CC_STAT_TOP] + stats[i, cv2.CC_STAT_HEIGHT])))
             for i in range(1, count)]
    found.sort(key=lambda c: -c[0])
    return found


def group_components(components: list[tuple[int, Extent]], min_share: float,
                     box_scale: float) -> list[tuple[int, Extent]]:
    """Heads from hair components: ``(hair area, extent)`` per head, largest first.

    Components with at least ``min_share`` of the largest one's area seed a head each; a smaller one
    joins the first head whose box (``box_scale`` times its extent) it touches (a strand of long hair
    the coarse pass cut off, the other side of a parting); the rest are the blobs far from any head,
    dropped.
    """
    if not components:
        return []
    floor = components[0][0] * min_share
    heads = [[area, list(extent)] for area, extent in components if area >= floor]
    for area, (x0, y0, x1, y1) in (c for c in components if c[0] < floor):
        for head in heads:
            box = square_around(*head[1], box_scale)
            if x0 < box.x + box.side and box.x < x1 and y0 < box.y + box.side and box.y < y1:
                ext = head[1]
                head[1] = [min(ext[0], x0), min(ext[1], y0), max(ext[2], x1), max(ext[3], y1)]
                head[0] += area
                break
    return [(area, tuple(ext)) for area, ext in heads]


def face_boxes(faces: np.ndarray, scale: float, lift: float, config: RoiConfig) -> list[Box]:
    """The stage-2 boxes for face boxes (frame pixels ``(K, 4)`` x0, y0, x1, y1, best first): a square
    ``scale`` times the face box's longer side, its centre ``lift`` face sides above the face's;
    overlapping ones merged, at most ``config.max_people`` (as :meth:`RegionStage.locate` does with hair
    components)."""
    boxes = []
    for x0, y0, x1, y1 in faces[: 3 * config.max_people]:
        up = lift * max(x1 - x0, y1 - y0)
        boxes.append(square_around(x0, y0 - up, x1, y1 - up, scale, config.min_box))
    return merge_boxes(boxes)[: config.max_people]


class RegionStage:
    """Two-pass segmentation of photos and (with :meth:`track`) video frames for one Segmenter.

    ``face_detector``: the fallback locator. None loads the bundled file the first time the hair pass
    finds no head (an install without it runs without the fallback; :attr:`face_detector_status` says
    so); a :class:`~hairseg_edge.face_detector.FaceDetector` is used as given. ``config.face_fallback``
    False: no fallback.
    """

    def __init__(self, segmenter: Segmenter, config: RoiConfig | None = None,
                 face_detector: FaceDetector | None = None):
        self.segmenter = segmenter
        self.config = config or RoiConfig()
        self._tracker = RegionTracker(self)
        self._face_detector = face_detector
        self._face_detector_error: str | None = None
        self.last_boxes: list[Box] = []     # what the last frame used (for overlays and tests)
        self.last_inferences = 0            # model invocations the last frame cost
        self.last_located_by: str | None = None  # "hair", "face" or None (no head) for the last located frame
        self.face_detections = 0            # how often the face detector ran (for tests and reports)

    # -- the face fallback ---------------------------------------------------------------------

    def _faces(self) -> FaceDetector | None:
        """The face detector, loaded on first use (None: fallback off, or the bundled file unusable)."""
        if not self.config.face_fallback or self._face_detector_error is not None:
            return None
        if self._face_detector is None:
            from .face_detector import FaceDetector

            self._face_detector_error = _bundled_detector_missing()
            if self._face_detector_error is not None:
                return None
            try:
                self._face_detector = FaceDetector(threads=getattr(self.segmenter, "threads", 1))
            except InputError as exc:  # a damaged install: the stage works on, without the fallback
                self._face_detector_error = str(exc)
                return None
        return self._face_detector

    @property
    def face_detector_status(self) -> str:
        """What the fallback locator is, for ``info``: its file, "off", or why it is unavailable."""
        if not self.config.face_fallback:
            return "off"
        if self._face_detector is not None:
            return str(self._face_detector.path)
        problem = self._face_detector_error or _bundled_detector_missing()
        if problem is not None:
            return f"unavailable: {problem}"
        from .face_detector import bundled_path

        return str(bundled_path())

    # -- maps ----------------------------------------------------------------------------------

    def _likely(self, seg: Segmentation, rows: slice = slice(None), cols: slice = slice(None)) -> np.ndarray:
        """Boolean "maybe hair" map (probability > LOCATE_THRESHOLD) of the segmentation, or of its
        ``rows`` x ``cols`` window (so a tracked frame compares only its box, not the whole frame)."""
        if seg.integers is not None:
            q = contract.quantized_threshold(LOCATE_THRESHOLD, seg._scale, seg._zero_point)
            return seg.integers[rows, cols] > q
        return seg.probability[rows, cols] > LOCATE_THRESHOLD

    def locate(self, seg: Segmentation, rgb: np.ndarray | None = None, *, faces: bool = True) -> list[Box]:
        """Boxes around the ``max_people`` largest hair components of a whole-frame segmentation;
        with the frame ``rgb``, boxes around its faces when there is no hair (the face fallback)."""
        boxes = self._locate_hair(seg)
        self.last_located_by = "hair" if boxes else None
        if not boxes and rgb is not None and faces:
            detector = self._faces()
            if detector is not None:
                self.face_detections += 1
                found, _ = detector.faces(rgb)
                boxes = face_boxes(found, self.config.face_scale, self.config.face_lift, self.config)
                self.last_located_by = "face" if boxes else None
        return boxes

    def _locate_hair(self, seg: Segmentation) -> list[Box]:
        likely = self._likely(seg)
        h, w = likely.shape
        factor = min(1.0, LOCATE_SIDE / max(h, w))
        if factor < 1.0:
            small = cv2.resize(likely.astype(np.uint8) * 255, (max(1, round(w * factor)), max(1, round(h * factor))),
                               interpolation=cv2.INTER_AREA) > 0
        else:
            small = likely
        fx, fy = w / small.shape[1], h / small.shape[0]
        cfg = self.config
        heads = group_components(hair_components(small), cfg.min_share, cfg.box_scale)
        boxes = [square_around(x0 * fx, y0 * fy, x1 * fx, y1 * fy, cfg.box_scale, cfg.min_box)
                 for _, (x0, y0, x1, y1) in heads[: 3 * cfg.max_people]]
        return merge_boxes(boxes)[: cfg.max_people]

    # -- one frame ------------------------------------------------------------------------------

    def segment(self, rgb: np.ndarray, *, faces: bool = True, mirror_crops: bool | None = None) -> Segmentation:
        """Locate on the whole frame, then segment each region at full resolution (``faces=False``:
        without the face fallback; ``mirror_crops``: overrides ``config.crop_flip``)."""
        rgb = contract.as_rgb_uint8(rgb)
        whole = self.segmenter.segment_whole(rgb)
        boxes = self.locate(whole, rgb, faces=faces)
        first = whole
        if self.last_located_by == "face" and not any(self._fills_frame(b, rgb.shape) for b in boxes):
            # As measured (benchmarks/roi_detector.py): face boxes are segmented as found, not re-cut
            # around the crop's hair; only a face-filling box keeps the first pass.
            first = None
        mirror = (self.config.crop_flip if mirror_crops is None else mirror_crops) and self.segmenter.mirrorable
        result = self.segment_boxes(rgb, boxes, first, flip=True if mirror else None)
        self.last_inferences += 2 if self.segmenter.flip_tta else 1  # the first pass
        return result

    def _fills_frame(self, box: Box, frame_shape: tuple[int, ...]) -> bool:
        """A box at least ``skip_share`` of the frame's longer side: the first pass is as good there."""
        return box.side >= self.config.skip_share * max(frame_shape[:2])

    def segment_boxes(self, rgb: np.ndarray, boxes: list[Box], whole: Segmentation | None, *,
                      flip: bool | None = None) -> Segmentation:
        """Segment ``boxes`` of the frame and paste them into an otherwise empty map.

        With ``whole`` (the first pass), a box at least ``skip_share`` of the frame's longer side keeps
        the first pass's values instead of a second inference. ``flip`` overrides the Segmenter's
        ``flip_tta`` for the crops (True: each crop also runs mirrored, two invocations).
        """
        h, w = rgb.shape[:2]
        self.last_inferences = 0
        per_crop = 2 if (self.segmenter.flip_tta if flip is None else flip) else 1
        parts: list[tuple[Box, Segmentation | None]] = []
        for box in boxes:
            if whole is not None and self._fills_frame(box, rgb.shape):
                parts.append((box, None))  # the first pass is as good here (face-filling)
                continue
            seg = self.segmenter.segment_whole(crop(rgb, box), flip=flip)
            self.last_inferences += per_crop
            # The coarse pass can misplace a small head: when the crop's hair reaches its border, cut
            # again around the hair the crop found (photos only: a video re-locates next frame).
            for _ in range(self.config.refine if whole is not None else 0):
                if not touches_border(seg.mask, box, (h, w)):
                    break
                better = hair_box(self._likely(seg), box, self.config)
                if better is None or better == box:
                    break
                box, seg = better, self.segmenter.segment_whole(crop(rgb, better), flip=flip)
                self.last_inferences += per_crop
            parts.append((box, seg))
        self.last_boxes = [box for box, _ in parts]
        return self._assemble((h, w), parts, whole)

    def _assemble(self, size: tuple[int, int], parts: list[tuple[Box, Segmentation | None]],
                  whole: Segmentation | None) -> Segmentation:
        from .runtime import Segmentation

        segs = [s for _, s in parts if s is not None] + ([whole] if whole is not None else [])
        integer = bool(segs) and all(s.integers is not None for s in segs) and len(
            {(s._scale, s._zero_point, s.integers.dtype) for s in segs}) == 1
        if integer:
            ref = segs[0]
            canvas = np.full(size, ref._zero_point, dtype=ref.integers.dtype)
            for box, seg in parts:
                if seg is None:
                    rows, cols = _frame_rect(size, box)
                    canvas[rows, cols] = whole.integers[rows, cols]
                else:
                    paste(canvas, seg.integers, box)
            q0 = contract.quantized_threshold(self.segmenter.threshold, ref._scale, ref._zero_point)
            return Segmentation(mask=canvas > q0, integers=canvas, scale=ref._scale, zero_point=ref._zero_point)
        prob = np.zeros(size, dtype=np.float32)
        for box, seg in parts:
            if seg is None:
                rows, cols = _frame_rect(size, box)
                prob[rows, cols] = whole.probability[rows, cols]
            else:
                paste(prob, seg.probability, box)
        return Segmentation(probability=prob, mask=contract.binarize(prob, self.segmenter.threshold))

    # -- video ------------------------------------------------------------------------------------

    def track(self, rgb: np.ndarray) -> Segmentation:
        """One video frame: the previous frame's regions seed this one (see :class:`RegionTracker`)."""
        return self._tracker.frame(contract.as_rgb_uint8(rgb))

    def reset(self) -> None:
        """Forget the tracked regions (a new video or camera stream)."""
        self._tracker = RegionTracker(self)


def _bundled_detector_missing() -> str | None:
    """Why this install has no bundled face detector (None: it has one)."""
    from .face_detector import bundled_path

    path = bundled_path()
    return None if path.is_file() else f"not in this install ({path.name} is missing)"


def hair_box(likely: np.ndarray, box: Box, config: RoiConfig) -> Box | None:
    """The box that the "maybe hair" map of ``box``'s crop calls for, in frame pixels (None: no hair)."""
    extent = bounding_extent(likely)
    if extent is None:
        return None
    x0, y0, x1, y1 = extent
    return square_around(box.x + x0, box.y + y0, box.x + x1, box.y + y1, config.box_scale, config.min_box)


def bounding_extent(likely: np.ndarray) -> Extent | None:
    """``(x0, y0, x1, y1)`` (exclusive) of the true pixels of a boolean map, None when there are none.

    Row and column ``any`` instead of ``np.nonzero``: a tracked video frame measures its hair's extent
    every frame, and listing the coordinates of every hair pixel cost 0.17 ms of a 1.8 ms frame."""
    rows = likely.any(axis=1)
    if not rows.any():
        return None
    cols = likely.any(axis=0)
    y0, y1 = int(rows.argmax()), len(rows) - int(rows[::-1].argmax())
    x0, x1 = int(cols.argmax()), len(cols) - int(cols[::-1].argmax())
    return x0, y0, x1, y1


def touches_border(mask: np.ndarray, box: Box, frame_hw: tuple[int, int]) -> bool:
    """Whether a crop's mask has hair on an edge of the crop that lies inside the frame."""
    h, w = frame_hw
    edges = []
    if box.y > 0:
        edges.append(mask[0])
    if box.y + box.side < h:
        edges.append(mask[-1])
    if box.x > 0:
        edges.append(mask[:, 0])
    if box.x + box.side < w:
        edges.append(mask[:, -1])
    return any(bool(e.any()) for e in edges)


def _thumbnail(rgb: np.ndarray) -> np.ndarray:
    """A 32x32 gray thumbnail for scene-cut detection, from every k-th pixel: converting the whole
    frame to gray first cost as much as the rest of a tracked frame's bookkeeping together."""
    step = max(1, min(rgb.shape[:2]) // 64)
    gray = cv2.cvtColor(np.ascontiguousarray(rgb[::step, ::step]), cv2.COLOR_RGB2GRAY)
    return cv2.resize(gray, (32, 32), interpolation=cv2.INTER_AREA).astype(np.int16)


class RegionTracker:
    """The regions of one video stream, carried from frame to frame."""

    def __init__(self, stage: RegionStage):
        self.stage = stage
        self.boxes: list[tuple[float, float, float]] = []   # smoothed (cx, cy, side)
        self.velocity: list[tuple[float, float]] = []       # per box, pixels per frame
        self.since_locate = 0
        self.relocate = True
        self.thumb: np.ndarray | None = None
        self.locates = 0      # how often the whole frame was searched (for tests and reports)
        self.empty_frames = 0 # consecutive searched frames that found no head

    def frame(self, rgb: np.ndarray) -> Segmentation:
        stage, cfg = self.stage, self.stage.config
        thumb = _thumbnail(rgb)
        cut = self.thumb is not None and float(np.mean(np.abs(thumb - self.thumb))) > cfg.scene_cut
        self.thumb = thumb
        if self.relocate or cut or not self.boxes or self.since_locate >= cfg.redetect_every:
            # With nobody in view every frame is searched; the face detector (as dear as the hair
            # pass) then runs on every face_every-th of them, and at once after a scene cut.
            faces = cut or self.empty_frames % cfg.face_every == 0
            # Unmirrored crops: a video frame must cost about one pass (the next frames track anyway).
            result = stage.segment(rgb, faces=faces, mirror_crops=False)
            self.empty_frames = 0 if stage.last_boxes else self.empty_frames + 1
            self.locates += 1
            self.since_locate = 0
            measured = [self._box_of(result, box) for box in stage.last_boxes]
            self._update(measured, smooth=not cut)
            self.relocate = False
            return result
        self.since_locate += 1
        grow = cfg.track_margin
        # Where each head should be now: last frame's centre moved by its velocity.
        boxes = [Box(int(round(cx + vx - s * grow / 2)), int(round(cy + vy - s * grow / 2)), int(round(s * grow)))
                 for (cx, cy, s), (vx, vy) in zip(self.boxes, self.velocity)]
        result = stage.segment_boxes(rgb, boxes, None)
        measured = [self._box_of(result, box) for box in boxes]
        measured = [None if m is None else Box(m.x, m.y, m.side) for m in measured]
        if any(m is None for m in measured) or any(
                touches_border(crop(result.mask, box), box, result.mask.shape) for box in boxes):
            self.relocate = True  # the hair left a box or may continue past it: search next frame
        self._update(measured, smooth=True, keep_side=True)
        return result

    def _box_of(self, result: Segmentation, box: Box) -> Box | None:
        """The box the hair inside ``box`` of ``result`` calls for, or None when there is none."""
        rows, cols = _frame_rect(result.mask.shape, box)
        extent = bounding_extent(self.stage._likely(result, rows, cols))
        if extent is None:
            return None
        x0, y0, x1, y1 = extent
        return square_around(cols.start + x0, rows.start + y0, cols.start + x1, rows.start + y1,
                             self.stage.config.box_scale, self.stage.config.min_box)

    def _update(self, measured: list[Box | None], *, smooth: bool, keep_side: bool = False) -> None:
        """Move the boxes towards the measured ones (smoothed).

        ``keep_side`` (tracked frames): only the centre follows. The hair a crop finds depends on the
        crop, so letting a tracked box take its size from its own result feeds back (a tight crop
        finds less hair, the next crop is tighter still); the side changes when the whole frame is
        searched again.
        """
        found = [m for m in measured if m is not None]
        if not found:
            self.boxes, self.velocity = [], []
            self.relocate = True
            return
        alpha = self.stage.config.smoothing if smooth else 1.0
        updated, velocity = [], []
        for box in found:
            cx, cy = box.centre
            target = (cx, cy, float(box.side))
            moved = (0.0, 0.0)
            if self.boxes:  # the nearest previous box carries on, smoothed
                i = min(range(len(self.boxes)),
                        key=lambda k: (self.boxes[k][0] - cx) ** 2 + (self.boxes[k][1] - cy) ** 2)
                prev, (vx, vy) = self.boxes[i], self.velocity[i]
                if abs(prev[0] - cx) + abs(prev[1] - cy) < prev[2]:
                    # alpha-beta filter: predict with the velocity, correct by alpha of the residual
                    px, py = prev[0] + vx, prev[1] + vy
                    nx, ny = px + alpha * (cx - px), py + alpha * (cy - py)
                    moved = (vx + alpha * (nx - prev[0] - vx), vy + alpha * (ny - prev[1] - vy))
                    side = prev[2] if keep_side else prev[2] + alpha * (target[2] - prev[2])
                    target = (nx, ny, side)
            updated.append(target)
            velocity.append(moved)
        self.boxes, self.velocity = updated, velocity


def with_max_people(config: RoiConfig | None, max_people: int | None) -> RoiConfig:
    """``config`` (or the default) with ``max_people`` replaced when given."""
    config = config or RoiConfig()
    return config if max_people is None else replace(config, max_people=max_people)


__all__ = ["LOCATE_THRESHOLD", "ROI_MODES", "Box", "RegionStage", "RegionTracker", "RoiConfig", "bounding_extent", "crop", "face_boxes", "hair_box", "touches_border",
           "group_components", "hair_components", "merge_boxes", "paste", "square_around", "with_max_people"]
