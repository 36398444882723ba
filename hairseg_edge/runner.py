"""``hairseg-edge run`` as a library: segment images, folders, globs, videos or a camera, write results.

>>> from hairseg_edge.runner import RunOptions, run_source
>>> result = run_source("photos/", RunOptions(out_dir="out", overlay=True, recolor="copper"))  # doctest: +SKIP
>>> result.exit_code, [item.outputs for item in result.items]                             # doctest: +SKIP

Per input ``<stem>`` it writes, into ``out_dir`` (created when the first input is planned, locked
against other runs while in use, removed again when nothing was written: see :mod:`.outputs`):

===================  =====================================  =========================================
file                 when                                   what
===================  =====================================  =========================================
``<stem>_mask.png``  always                                 uint8 0/255 hair mask, the input's size
``<stem>_overlay``   ``overlay=True``                       translucent tint + outline (.jpg for a
                                                            JPEG input, else .png)
``<stem>_recolor``   ``recolor=<colour>``                   the hair recoloured (texture kept)
``<stem>_matte.png`` ``soft=True``                          guided-filter soft matte, 0..255
===================  =====================================  =========================================

A video (or camera) gives the same outputs as videos of the same size and frame rate: the mask and
matte lossless (``_mask.mkv``/``_matte.mkv``, FFV1: read back bit-exact, a mask holds only 0 and 255),
the overlay and recolour lossy ``.mp4`` (mp4v) for watching, with the processing FPS drawn on their
frames only when ``hud=True``; temporal smoothing on by default, and a *flicker* figure: the mean IoU
of consecutive masks (1.0 = perfectly stable).

Memory is flat in the length of a video: frames are read, processed and written one at a time,
and only the previous mask and the smoothing state are kept. What does grow is FFmpeg's MP4 index,
written at the end of each file: about 100 bytes per frame per output video (about 11 MB per hour
of 30 FPS video for each output).

Rules: an existing output is never replaced unless ``force=True``; that input is refused before any
work is done for it, reported, and the run carries on with the next input (exit code 2 at the end).
The same holds for an unreadable image in a folder. Every file is written atomically (a temporary
file in ``out_dir`` renamed at the end), so an interrupted run leaves no half-written file. Image
outputs carry their request's signature (:mod:`.outputs`): rerunning the same request after a kill
keeps the finished outputs and writes only the missing ones, without ``force``. Outputs of this tool
found among a folder's or glob's inputs inside ``out_dir`` are skipped.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

from . import render
from .contract import binarize
from .errors import HairsegError, InputError
from .imageio import atomic_path, file_sha256, read_image, safe_child, write_image
from .metrics import iou as mask_iou
from .outputs import OutputFolder, check_out_dir, fit_name, is_own_output, request_signature
from .runtime import MAX_THREADS  # LiteRT itself is loaded lazily, by the Segmenter
from .postprocess import SmoothingOptions, TemporalSmoother, matte_to_uint8, refine_matte
from .sources import IMAGE, MediaItem, Source, VideoStream, open_source

if TYPE_CHECKING:  # the runtime module loads LiteRT lazily; only needed for type names here
    from .runtime import Segmenter

DEFAULT_OUT_DIR = Path("hairseg-out")
#: Output roles in the order they are written (and listed in results).
ROLES = ("mask", "matte", "overlay", "recolor")
VIDEO_FOURCC = "mp4v"
VIDEO_SUFFIX = ".mp4"
#: Masks and mattes are data, so their videos are lossless: FFV1 in Matroska, which this OpenCV's FFmpeg
#: writes and reads back bit-exact (a 0/255 mask stays 0/255; mp4v gave 27 grey levels). Overlay and
#: recolour videos are for watching: mp4v, lossy and small.
LOSSLESS_FOURCC = "FFV1"
LOSSLESS_SUFFIX = ".mkv"
LOSSLESS_ROLES = ("mask", "matte")


def video_codec(role: str) -> tuple[str, str]:
    """(fourcc, suffix) of the video written for ``role``."""
    return (LOSSLESS_FOURCC, LOSSLESS_SUFFIX) if role in LOSSLESS_ROLES else (VIDEO_FOURCC, VIDEO_SUFFIX)
WINDOW_TITLE = "hairseg-edge (q or Esc to stop)"
GUI_HINT = ("--show needs OpenCV with GUI support, and this OpenCV is a headless build: "
            "pip install opencv-python")


@dataclass(frozen=True)
class RunOptions:
    """Everything ``run`` needs besides the source. ``recolor`` is a colour name, ``#rrggbb``,
    ``r,g,b`` or an (r, g, b) tuple; it is checked here, before any work is done."""

    out_dir: Path = DEFAULT_OUT_DIR
    model: Path | None = None
    overlay: bool = False
    recolor: str | tuple[int, int, int] | None = None
    soft: bool = False
    show: bool = False
    force: bool = False
    smooth: bool = True
    smoothing: SmoothingOptions = field(default_factory=SmoothingOptions)
    threads: int = 1
    adapter: str | None = None
    max_frames: int | None = None
    flip_tta: bool = False  # Segmenter(flip_tta=...): mirror test-time augmentation
    hud: bool = False  # draw the processing FPS on overlay/recolour video frames
    recolor_strength: float = 1.0  # 0..1: how far the hair moves to the --recolor colour
    roi: str = "auto"  # Segmenter(roi=...): find the head(s), segment full-resolution crops (roi.py)
    max_people: int | None = None  # Segmenter(max_people=...): at most this many regions
    #: Segmenter(face_detector=...): the region stage's fallback locator; None = the bundled one, "off"
    face_detector: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "out_dir", Path(self.out_dir))
        if self.model is not None:
            object.__setattr__(self, "model", Path(self.model))
        if (isinstance(self.threads, bool) or not isinstance(self.threads, int)
                or not 1 <= self.threads <= MAX_THREADS):
            raise InputError(f"--threads must be an integer between 1 and {MAX_THREADS}, "
                             f"got {self.threads!r}")
        if self.roi not in ("auto", "off"):
            raise InputError(f"--roi must be auto or off, got {self.roi!r}")
        if self.max_people is not None:
            from .roi import with_max_people

            with_max_people(None, self.max_people)  # one line for a bad --max-people, before any work
        if self.face_detector is not None:
            object.__setattr__(self, "face_detector", str(self.face_detector))
        if self.max_frames is not None and self.max_frames < 1:
            raise InputError(f"--frames must be >= 1, got {self.max_frames}")
        strength = self.recolor_strength
        if isinstance(strength, bool) or not isinstance(strength, (int, float)) or not 0.0 <= strength <= 1.0:
            raise InputError(f"--recolor-strength must be between 0 and 1, got {self.recolor_strength!r}")
        if self.recolor is not None and not isinstance(self.recolor, tuple):
            try:
                render.parse_color(self.recolor)
            except InputError as err:
                raise InputError(f"--recolor: {err}") from None

    @property
    def recolor_rgb(self) -> tuple[int, int, int] | None:
        if self.recolor is None:
            return None
        return self.recolor if isinstance(self.recolor, tuple) else render.parse_color(self.recolor)

    def to_dict(self) -> dict[str, Any]:
        return {
            "out_dir": str(self.out_dir),
            "model": None if self.model is None else str(self.model),
            "overlay": self.overlay,
            "recolor": None if self.recolor is None else list(self.recolor_rgb or ()),
            "recolor_strength": self.recolor_strength,
            "soft": self.soft,
            "show": self.show,
            "force": self.force,
            "smooth": self.smooth,
            "smoothing": self.smoothing.to_dict(),
            "threads": self.threads,
            "adapter": self.adapter,
            "flip_tta": self.flip_tta,
            "hud": self.hud,
            "roi": self.roi,
            "max_people": self.max_people,
            # what changes pixels is which detector, not where it lies: the signature takes its bytes
            "face_detector": _face_detector_identity(self.face_detector),
            "max_frames": self.max_frames,
        }


@dataclass(frozen=True)
class ItemResult:
    """What happened to one input (an image, a video or the camera)."""

    input: str
    kind: str  # "image", "video" or "camera"
    outputs: tuple[str, ...] = ()
    frames: int = 0
    size: tuple[int, int] | None = None  # (width, height)
    #: Frames per second of the pipeline (segment + post-process + render), decode/encode excluded.
    fps: float | None = None
    #: Frames per second over the whole loop, reading and writing included.
    wall_fps: float | None = None
    #: Mean IoU of consecutive masks (videos; 1.0 = no flicker). None for images or one frame.
    flicker_iou: float | None = None
    #: Mean share of the frame's pixels that are hair.
    hair_fraction: float | None = None
    #: Scene cuts on which temporal smoothing restarted.
    scene_resets: int = 0
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    def to_dict(self) -> dict[str, Any]:
        return {
            "input": self.input,
            "kind": self.kind,
            "ok": self.ok,
            "outputs": list(self.outputs),
            "frames": self.frames,
            "size": None if self.size is None else list(self.size),
            "fps": self.fps,
            "wall_fps": self.wall_fps,
            "flicker_iou": self.flicker_iou,
            "hair_fraction": self.hair_fraction,
            "scene_resets": self.scene_resets,
            "error": self.error,
        }


@dataclass(frozen=True)
class RunResult:
    """The outcome of a whole run; ``exit_code`` is 2 when any input failed or was refused."""

    source: str
    model: str
    adapter: str
    options: RunOptions
    items: tuple[ItemResult, ...]
    elapsed_s: float
    stopped_by_user: bool = False

    @property
    def n_ok(self) -> int:
        return sum(item.ok for item in self.items)

    @property
    def n_failed(self) -> int:
        return len(self.items) - self.n_ok

    @property
    def frames(self) -> int:
        return sum(item.frames for item in self.items if item.ok)

    @property
    def fps(self) -> float | None:
        """Pipeline FPS over all frames (time-weighted, so long videos count for more)."""
        seconds = sum(item.frames / item.fps for item in self.items if item.ok and item.fps)
        return self.frames / seconds if seconds > 0 else None

    @property
    def flicker_iou(self) -> float | None:
        """Mean consecutive-mask IoU over all video frames (None when no video was processed)."""
        pairs = [(item.flicker_iou, item.frames - 1) for item in self.items
                 if item.ok and item.flicker_iou is not None and item.frames > 1]
        weight = sum(n for _, n in pairs)
        return sum(v * n for v, n in pairs) / weight if weight else None

    @property
    def exit_code(self) -> int:
        return 2 if self.n_failed else 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "model": self.model,
            "adapter": self.adapter,
            "options": self.options.to_dict(),
            "n_inputs": len(self.items),
            "n_ok": self.n_ok,
            "n_failed": self.n_failed,
            "frames": self.frames,
            "fps": self.fps,
            "flicker_iou": self.flicker_iou,
            "elapsed_s": self.elapsed_s,
            "stopped_by_user": self.stopped_by_user,
            "exit_code": self.exit_code,
            "items": [item.to_dict() for item in self.items],
        }


class RunObserver:
    """Hooks for progress and per-input problems; the CLI renders them with Rich. No-ops here."""

    def start(self, description: str, total: int | None) -> None:
        """A new group of work begins (the images of a folder, or one video's frames)."""

    def advance(self, n: int = 1) -> None:
        """``n`` more images or frames are done."""

    def finish(self) -> None:
        """The current group is done."""

    def problem(self, message: str) -> None:
        """One input failed or was refused; ``message`` is one line naming it. The run continues."""

    def video_done(self, item: ItemResult) -> None:
        """A video or camera stream finished (for printing its FPS and flicker)."""


# --------------------------------------------------------------------------------------------------
# Checks done before any work
# --------------------------------------------------------------------------------------------------


def gui_available() -> bool:
    """Whether this OpenCV build has a GUI backend (``opencv-python-headless`` has none)."""
    match = re.search(r"^\s*GUI:\s*(\S+)", cv2.getBuildInformation(), re.MULTILINE)
    return not (match and match.group(1).upper() == "NONE")


def check_show_possible() -> None:
    """Raise InputError when ``--show`` cannot open a window here."""
    if not gui_available():
        raise InputError(GUI_HINT)
    if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY")
                                                 or os.environ.get("WAYLAND_DISPLAY")):
        raise InputError("--show needs a display, and neither DISPLAY nor WAYLAND_DISPLAY is set")


class _Window:
    """A live preview window; any OpenCV GUI failure becomes the one-line install hint."""

    def __init__(self) -> None:
        self.open = False

    def show(self, rgb: np.ndarray, wait_ms: int) -> bool:
        """Show a frame; returns False when the user pressed q or Esc (stop)."""
        try:
            cv2.imshow(WINDOW_TITLE, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
            self.open = True
            key = cv2.waitKey(wait_ms) & 0xFF
        except cv2.error:
            raise InputError(GUI_HINT) from None
        return key not in (ord("q"), 27)

    def close(self) -> None:
        if self.open:
            with contextlib.suppress(cv2.error):
                cv2.destroyWindow(WINDOW_TITLE)


# --------------------------------------------------------------------------------------------------
# Output planning
# --------------------------------------------------------------------------------------------------


def output_paths(stem: str, kind: str, input_suffix: str, options: RunOptions,
                 name_limit: int = 255) -> dict[str, Path]:
    """The files one input will produce, by role (see :data:`ROLES`), inside ``options.out_dir``;
    names longer than ``name_limit`` bytes are shortened (:func:`outputs.fit_name`)."""
    if kind == IMAGE:
        picture = ".jpg" if input_suffix.lower() in (".jpg", ".jpeg") else ".png"
        suffixes = {"mask": ".png", "matte": ".png", "overlay": picture, "recolor": picture}
    else:
        suffixes = {role: video_codec(role)[1] for role in ROLES}
    wanted = {"mask": True, "matte": options.soft, "overlay": options.overlay,
              "recolor": options.recolor is not None}
    return {role: safe_child(options.out_dir, fit_name(stem, f"_{role}{suffixes[role]}", name_limit))
            for role in ROLES if wanted[role]}


def _refuse_existing(paths: dict[str, Path], force: bool, written: set[Path],
                     finished: Callable[[Path], bool] | None = None) -> dict[str, Path]:
    """Refuse an input whose outputs exist (without --force) or collide with this run's outputs.

    ``finished(path)``: whether an existing file is an output of this same request, written by an
    earlier (killed or interrupted) run: it is complete (atomic writes), so it is kept and not
    returned. The roles still to write are returned."""
    missing = {}
    for role, path in paths.items():
        if path in written:
            raise InputError("another input of this run already wrote this file (same file name "
                             "stem); rename one of the inputs", path)
        if path.exists() and not force:
            if finished is None or not finished(path):
                raise InputError("already exists (pass --force to overwrite)", path)
            continue
        missing[role] = path
    return missing


# --------------------------------------------------------------------------------------------------
# The per-frame pipeline
# --------------------------------------------------------------------------------------------------


@dataclass
class _Frame:
    """The rendered outputs of one frame, by role (RGB or gray uint8)."""

    mask: np.ndarray
    images: dict[str, np.ndarray]
    hair_fraction: float


class _Pipeline:
    def __init__(self, segmenter: Segmenter, options: RunOptions):
        self.segmenter = segmenter
        self.options = options
        self.color = options.recolor_rgb

    def frame(self, rgb: np.ndarray, roles: dict[str, Path],
              smoother: TemporalSmoother | None = None, *, tracked: bool = False) -> _Frame:
        # A stream's frames are tracked: the previous frame's head region seeds this one (roi.py).
        seg = self.segmenter.track(rgb) if tracked else self.segmenter.segment(rgb)
        probability = seg.probability
        if smoother is not None:
            probability = smoother(rgb, probability)
            mask = binarize(probability)
        else:
            mask = np.asarray(seg.mask, dtype=bool)
        weight = probability
        images: dict[str, np.ndarray] = {"mask": render.mask_to_uint8(mask)}
        if "matte" in roles:  # --soft: the matte is written and also softens overlay/recolour edges
            weight = refine_matte(rgb, probability, model_input_size=self.segmenter.input_size)
            images["matte"] = matte_to_uint8(weight)
        if "overlay" in roles:
            images["overlay"] = render.overlay(rgb, weight)
        if "recolor" in roles and self.color is not None:
            images["recolor"] = render.recolor(rgb, weight, self.color,
                                               strength=self.options.recolor_strength)
        return _Frame(mask, images, float(np.count_nonzero(mask)) / mask.size)


def _gray_to_bgr(gray: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR)


class _VideoOutputs:
    """One cv2.VideoWriter per role, each writing to a temporary file renamed on success."""

    def __init__(self, stack: contextlib.ExitStack, paths: dict[str, Path], fps: float,
                 size: tuple[int, int], force: bool):
        self.writers: dict[str, cv2.VideoWriter] = {}
        self.frames = 0
        for role, final in paths.items():
            codec = video_codec(role)[0]
            tmp = stack.enter_context(atomic_path(final, force=force))
            writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter.fourcc(*codec), fps, size, True)
            if not writer.isOpened():
                writer.release()
                raise InputError(f"cannot open a {codec} video writer", final)
            # Exit order (last in, first out): release the writer, check the file, then rename.
            stack.enter_context(self._checked(tmp, final))
            stack.callback(writer.release)
            self.writers[role] = writer

    def write(self, images: dict[str, np.ndarray]) -> None:
        for role, writer in self.writers.items():
            img = images[role]
            writer.write(_gray_to_bgr(img) if img.ndim == 2 else cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
        self.frames += 1

    @contextlib.contextmanager
    def _checked(self, tmp: Path, final: Path) -> Iterator[None]:
        """After a stream that ended well, refuse to rename a video FFmpeg could not finish.

        cv2.VideoWriter reports no write errors: on a disk that fills up mid-video it drops frames
        and the MP4 index silently, which leaves an unplayable file. Reopening the closed file
        (its index only, no decoding) tells; the temporary file is then removed, not renamed.
        """
        yield
        from .runtime import native_stderr  # FFmpeg's "moov atom not found" is ours to report

        with native_stderr():
            capture = cv2.VideoCapture(str(tmp))
            try:
                readable = capture.isOpened()
                count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT) or 0) if readable else 0
            finally:
                capture.release()
        if not readable or (count > 0 and count != self.frames):
            found = f"{count} of {self.frames} frames" if readable else "unreadable"
            raise InputError(f"the video could not be written completely ({found}; is the disk "
                             "full?)", final)


# --------------------------------------------------------------------------------------------------
# The run
# --------------------------------------------------------------------------------------------------


@dataclass
class _StreamStats:
    """Running totals of one video stream (constant memory: no frames or masks are kept)."""

    frames: int = 0
    pipeline_s: float = 0.0
    iou_sum: float = 0.0
    hair_sum: float = 0.0
    size: tuple[int, int] | None = None
    stopped: bool = False


class _Stop(Exception):
    """The user asked to stop (q/Esc in the window, or Ctrl-C during a camera stream)."""


class Runner:
    """Runs one :class:`~hairseg_edge.runtime.Segmenter` over sources; reusable across sources."""

    def __init__(self, segmenter: Segmenter, options: RunOptions, observer: RunObserver | None = None,
                 folder: OutputFolder | None = None):
        self.segmenter = segmenter
        self.options = options
        #: The output folder, created and locked when the first input is planned; a folder made
        #: here is released by close() (use the Runner as a context manager).
        self._owns_folder = folder is None
        self.folder = folder or OutputFolder(options.out_dir)
        self.observer = observer or RunObserver()
        self.pipeline = _Pipeline(segmenter, options)
        self.window = _Window() if options.show else None
        self._written: set[Path] = set()

    # -- images ------------------------------------------------------------------------------------

    def image(self, item: MediaItem) -> ItemResult:
        opts = self.options
        try:
            # Inside the try: an output path refused by safe_child (a symlink planted out of the
            # folder) is this input's problem, not a reason to drop the rest of a folder.
            self.folder.claim()
            roles = output_paths(item.stem, IMAGE, item.path.suffix, opts, self.folder.limit)
            missing = _refuse_existing(roles, opts.force, self._written, self.folder.finished)
            if not missing:  # finished by an earlier run of this same request
                self._written.update(roles.values())
                return ItemResult(item.name, IMAGE, tuple(str(p) for p in roles.values()))
            rgb = read_image(item.path)
            frame = self.pipeline.frame(rgb, roles)
            written = []
            for role, path in roles.items():
                if role in missing:
                    write_image(path, frame.images[role], force=opts.force,
                                note=self.folder.signature)
                self._written.add(path)
                written.append(str(path))
        except HairsegError as err:
            return ItemResult(item.name, IMAGE, error=str(err))
        result = ItemResult(item.name, IMAGE, tuple(written), frames=1,
                            size=(rgb.shape[1], rgb.shape[0]), hair_fraction=frame.hair_fraction)
        if self.window is not None:
            shown = frame.images.get("recolor", frame.images.get("overlay"))
            if shown is None:
                shown = render.overlay(rgb, frame.mask.astype(np.float32))
            if not self.window.show(shown, 0):
                raise _Stop(result)
        return result

    # -- videos and cameras ------------------------------------------------------------------------

    def stream(self, stream: VideoStream, stem: str, kind: str) -> ItemResult:
        """Process a video file or a camera frame by frame, writing one video per output role."""
        opts = self.options
        self.folder.claim()
        roles = output_paths(stem, kind, VIDEO_SUFFIX, opts, self.folder.limit)
        _refuse_existing(roles, opts.force, self._written)  # videos are not resumed (see .outputs)
        smoother = TemporalSmoother(opts.smoothing) if opts.smooth else None
        limit = opts.max_frames
        total = stream.frame_count or None
        if limit is not None:
            total = min(total, limit) if total else limit
        self.observer.start(f"{Path(stream.name).name if kind == 'video' else stream.name}", total)

        stats = _StreamStats()
        self.segmenter.reset_tracking()  # a new stream: no region carries over
        start = time.perf_counter()
        with contextlib.ExitStack() as stack:
            try:
                self._stream_loop(stream, roles, smoother, stack, stats)
            except KeyboardInterrupt:
                if kind != "camera":
                    raise
                stats.stopped = True  # Ctrl-C is the normal way to end a camera run: keep the video.
            if stats.frames == 0:
                raise InputError("no frames could be read", stream.name)
        wall = time.perf_counter() - start
        self.observer.finish()
        self._written.update(roles.values())
        frames = stats.frames
        result = ItemResult(
            stream.name, kind, tuple(str(p) for p in roles.values()), frames=frames, size=stats.size,
            fps=frames / stats.pipeline_s if stats.pipeline_s > 0 else None,
            wall_fps=frames / wall if wall > 0 else None,
            flicker_iou=stats.iou_sum / (frames - 1) if frames > 1 else None,
            hair_fraction=stats.hair_sum / frames,
            scene_resets=smoother.resets if smoother is not None else 0,
        )
        self.observer.video_done(result)
        if stats.stopped and kind != "camera":
            raise _Stop(result)
        return result

    def _stream_loop(self, stream: VideoStream, roles: dict[str, Path],
                     smoother: TemporalSmoother | None, stack: contextlib.ExitStack,
                     stats: _StreamStats) -> None:
        outputs: _VideoOutputs | None = None
        previous_mask: np.ndarray | None = None
        display_fps: float | None = None
        for rgb in stream.frames(self.options.max_frames):
            if outputs is None:
                stats.size = (rgb.shape[1], rgb.shape[0])
                # Writers open on the first frame: its real size, not the container's claim.
                outputs = _VideoOutputs(stack, roles, stream.fps, stats.size, self.options.force)
            elif (rgb.shape[1], rgb.shape[0]) != stats.size:
                raise InputError(f"frame {stats.frames} is {rgb.shape[1]}x{rgb.shape[0]}, but the "
                                 f"video started at {stats.size[0]}x{stats.size[1]}", stream.name)
            t0 = time.perf_counter()
            frame = self.pipeline.frame(rgb, roles, smoother, tracked=True)
            elapsed = time.perf_counter() - t0
            stats.pipeline_s += elapsed
            instant = 1.0 / max(elapsed, 1e-6)
            # A short moving average: readable on screen, still reacting within a second.
            display_fps = instant if display_fps is None else 0.9 * display_fps + 0.1 * instant
            label = f"{display_fps:.1f} FPS"
            if self.options.hud:
                for role in ("overlay", "recolor"):
                    if role in frame.images:
                        render.draw_label(frame.images[role], label)
            outputs.write(frame.images)
            if previous_mask is not None:
                stats.iou_sum += mask_iou(previous_mask, frame.mask)
            previous_mask = frame.mask
            stats.hair_sum += frame.hair_fraction
            stats.frames += 1
            self.observer.advance()
            if self.window is not None:
                shown = frame.images.get("recolor", frame.images.get("overlay"))
                # The window always shows the FPS (on a copy unless --hud already drew it).
                if shown is None:
                    shown = render.draw_label(render.overlay(rgb, frame.mask.astype(np.float32)), label)
                elif not self.options.hud:
                    shown = render.draw_label(shown.copy(), label)
                if not self.window.show(shown, 1):
                    stats.stopped = True
                    return

    def video(self, item: MediaItem) -> ItemResult:
        try:
            with VideoStream.open_file(item.path) as stream:
                return self.stream(stream, item.stem, "video")
        except HairsegError as err:
            self.observer.finish()
            return ItemResult(item.name, "video", error=str(err))

    # -- a whole source ------------------------------------------------------------------------------

    def items(self, source: Source, camera: VideoStream | None = None) -> Iterator[ItemResult]:
        """Process every input of ``source``, yielding one result each (problems reported).

        A camera source needs its opened ``camera`` stream (opened by the caller, before the model
        is loaded, so a missing camera is reported at once)."""
        # The output folder is created and locked now that there is work, before any input: a
        # folder in use by another run ends this run in one line.
        self.folder.claim()
        if source.is_camera:
            if camera is None:
                raise ValueError("a camera source needs its opened VideoStream")
            yield self.stream(camera, f"camera{source.camera_index}", "camera")
            return
        inputs = source.items
        if source.kind != "file":  # a folder or glob that is (or holds) the output folder
            inputs = tuple(item for item in inputs if not is_own_output(item.path, self.options.out_dir))
        images = [item for item in inputs if item.kind == IMAGE]
        videos = [item for item in inputs if item.kind != IMAGE]
        if images:  # images share one progress bar; each video gets its own
            self.observer.start("images", len(images))
            for item in images:
                result = self.image(item)
                if not result.ok:
                    self.observer.problem(result.error or item.name)
                self.observer.advance()
                yield result
            self.observer.finish()
        for item in videos:
            result = self.video(item)
            if not result.ok:
                self.observer.problem(result.error or item.name)
            yield result

    def close(self) -> None:
        if self.window is not None:
            self.window.close()
        if self._owns_folder:
            self.folder.close()

    def __enter__(self) -> Runner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _face_detector_identity(face_detector: str | None) -> str | None:
    """``--face-detector`` for the request signature and the JSON summary: None (bundled), "off", or
    the file's sha256 (its path when it cannot be read: the Segmenter reports that)."""
    if face_detector is None or face_detector == "off":
        return face_detector
    try:
        return "sha256:" + file_sha256(Path(face_detector))
    except (HairsegError, OSError):
        return face_detector


def _request_signature(source: Source, segmenter: Segmenter, options: RunOptions) -> str:
    """What makes two runs "the same request" for resuming: the source, the model's bytes, the
    adapter and every option that changes an output's pixels (not --force, --threads, --show)."""
    fields = options.to_dict()
    for key in ("force", "threads", "show", "out_dir", "model"):
        fields.pop(key, None)
    try:
        model_sha = file_sha256(segmenter.path)
    except HairsegError:
        model_sha = str(segmenter.path)
    return request_signature({"source": str(Path(source.spec).absolute()) if not source.is_camera
                              else source.spec, "model_sha256": model_sha,
                              "adapter": str(segmenter.adapter_name), "options": fields})


def run_source(source: str | os.PathLike[str] | Source, options: RunOptions | None = None, *,
               segmenter: Segmenter | None = None, observer: RunObserver | None = None) -> RunResult:
    """Segment everything in ``source`` and write the outputs; see the module docstring.

    Problems with the whole run (a missing source, a bad model, an unwritable output folder, no GUI
    for ``show``, a camera that cannot be opened) raise InputError before any output is written.
    Problems with one input of many are reported through ``observer.problem`` and recorded in the
    result (``exit_code`` 2), and the other inputs are still processed.
    ``segmenter``: an open Segmenter to reuse (it is not closed); else ``options.model`` is loaded.
    """
    options = options or RunOptions()
    started = time.perf_counter()
    resolved = source if isinstance(source, Source) else open_source(source)
    if options.show:
        check_show_possible()
    check_out_dir(options.out_dir)  # created only when the first input is planned (OutputFolder)
    if resolved.kind == "file" and resolved.items[0].kind != IMAGE:
        # One video: prove it opens before loading the model, so a bad file fails at once.
        VideoStream.open_file(resolved.items[0].path).close()

    with contextlib.ExitStack() as stack:
        camera = None
        if resolved.is_camera and resolved.camera_index is not None:
            camera = stack.enter_context(VideoStream.open_camera(resolved.camera_index))
        if segmenter is None:
            from .runtime import Segmenter

            model = options.model
            if model is None:
                from .models import default_model_path

                model = default_model_path("int8")
            segmenter = stack.enter_context(
                Segmenter(model, threads=options.threads, adapter=options.adapter,
                          flip_tta=options.flip_tta, roi=options.roi, max_people=options.max_people,
                          face_detector=options.face_detector))
        folder = stack.enter_context(OutputFolder(options.out_dir, _request_signature(
            resolved, segmenter, options)))
        runner = Runner(segmenter, options, observer, folder)
        stack.callback(runner.close)
        results: list[ItemResult] = []
        stopped = False
        try:
            for result in runner.items(resolved, camera):
                results.append(result)
        except _Stop as stop:
            stopped = True
            if stop.args and isinstance(stop.args[0], ItemResult):
                results.append(stop.args[0])
    return RunResult(
        source=resolved.spec,
        model=str(segmenter.path),
        adapter=str(segmenter.adapter_name),
        options=options,
        items=tuple(results),
        elapsed_s=time.perf_counter() - started,
        stopped_by_user=stopped,
    )
