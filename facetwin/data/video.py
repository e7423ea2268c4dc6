"""Streaming video frames: decoded one at a time (never all at once), with an honest account of
damaged or truncated files.

:class:`VideoReader` yields sampled frames and, when it is done, fills a :class:`VideoReport`:
how many frames it read, how many were damaged (skipped over) and where decoding stopped when it
stopped before the container's declared end. FFmpeg's own log lines (``moov atom not found``,
``ac-tex damaged``) are silenced: facetwin says what happened in one line of its own.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

# Read by OpenCV's FFmpeg backend when a capture is opened; -8 = AV_LOG_QUIET.
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from facetwin.errors import FacetwinError  # noqa: E402

# After a failed read, try this many more reads before calling it the end: a damaged stretch
# in the middle of a file makes a few reads fail and decoding then resumes.
MAX_BAD_READS = 32


class VideoReadError(FacetwinError):
    """The file is not a readable video."""


@dataclass
class VideoInfo:
    fps: float
    n_frames: int  # as declared by the container (may be 0 or wrong)
    width: int
    height: int

    @property
    def duration(self) -> float:
        """Declared duration in seconds (0 when unknown)."""
        return self.n_frames / self.fps if self.fps > 0 and self.n_frames > 0 else 0.0


@dataclass
class VideoReport:
    """What a pass over a video found. ``frames_read`` counts decoded frames (sampled or not)."""

    path: str
    frames_declared: int = 0
    frames_read: int = 0
    frames_damaged: int = 0          # reads that failed but were followed by good frames
    damaged_at: list[int] = field(default_factory=list)  # first frame index of each damaged stretch
    stopped_at: int | None = None    # frame index where decoding stopped before the declared end
    stopped_time: float | None = None  # seconds
    limited: bool = False            # stopped on purpose (max_frames)

    @property
    def complete(self) -> bool:
        return self.stopped_at is None and not self.frames_damaged

    def message(self) -> str | None:
        """One line for the user when the file was damaged or truncated, else None."""
        if self.complete:
            return None
        name = Path(self.path).name
        of = f" of {self.frames_declared}" if self.frames_declared else ""
        parts = [f"{name}: read {self.frames_read}{of} frames"]
        if self.frames_damaged:
            where = ", ".join(str(i) for i in self.damaged_at[:3]) + (", ..." if len(self.damaged_at) > 3 else "")
            parts.append(f"skipped {self.frames_damaged} damaged frame(s) at frame {where}")
        if self.stopped_at is not None:
            t = f" ({self.stopped_time:.2f} s)" if self.stopped_time is not None else ""
            parts.append(f"decoding stopped at frame {self.stopped_at}{t}: the file is damaged or truncated there")
        return "; ".join(parts)

    def as_dict(self) -> dict:
        return {"frames_declared": self.frames_declared, "frames_read": self.frames_read,
                "frames_damaged": self.frames_damaged, "damaged_at": self.damaged_at[:20],
                "stopped_at": self.stopped_at, "stopped_time": self.stopped_time, "complete": self.complete}


@dataclass
class Frame:
    index: int          # frame number in the file (0-based)
    time: float         # seconds
    rgb: np.ndarray     # (H, W, 3) uint8, possibly downscaled (see ``scale``)
    scale: float        # returned pixels per original pixel (< 1 when downscaled to max_side)


def video_info(path) -> VideoInfo:
    cap = _open(path)
    try:
        return _info(cap)
    finally:
        cap.release()


def _info(cap) -> VideoInfo:
    fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
    return VideoInfo(
        fps=fps if math.isfinite(fps) and fps > 0 else 0.0,
        n_frames=max(0, int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)),
        width=int(cap.get(cv2.CAP_PROP_FRAME_WIDTH) or 0),
        height=int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT) or 0),
    )


def _open(path) -> cv2.VideoCapture:
    path = Path(path)
    if not path.is_file():
        raise VideoReadError(f"unreadable video: {path}: no such file")
    if path.stat().st_size == 0:
        raise VideoReadError(f"unreadable video: {path.name}: empty file")
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        cap.release()
        raise VideoReadError(f"unreadable video: {path.name}: cannot be decoded (truncated, damaged or not a video)")
    return cap


def sample_step(fps: float, every_n: int | None = None, target_fps: float | None = None) -> int:
    """Keep one frame every ``step`` frames (``every_n`` wins over ``target_fps``; neither = every frame)."""
    if every_n:
        return max(1, int(every_n))
    if target_fps and fps > 0:
        return max(1, int(round(fps / target_fps)))
    return 1


class VideoReader:
    """Iterate the sampled frames of a video one at a time; :attr:`report` says what was read.

    ``step`` keeps one frame in ``step``; ``max_frames`` caps the frames yielded; frames whose
    long side exceeds ``max_side`` are downscaled (``Frame.scale`` < 1).
    Raises :class:`VideoReadError` when the file cannot be opened or holds no decodable frame.
    """

    def __init__(self, path, step: int = 1, max_frames: int | None = None, max_side: int | None = 2048):
        self.path = Path(path)
        self.step = max(1, int(step))
        self.max_frames = max_frames
        self.max_side = max_side
        cap = _open(self.path)
        self.info = _info(cap)
        cap.release()
        self.report = VideoReport(str(self.path), frames_declared=self.info.n_frames)

    def __iter__(self) -> Iterator[Frame]:
        cap = _open(self.path)
        rep = self.report = VideoReport(str(self.path), frames_declared=self.info.n_frames)
        fps = self.info.fps
        index, produced, bad = 0, 0, 0
        try:
            while self.max_frames is None or produced < self.max_frames:
                keep = index % self.step == 0
                ok = cap.grab()
                frame = None
                if ok and keep:
                    ok, frame = cap.retrieve()
                    ok = ok and frame is not None
                if not ok:
                    if self.info.n_frames and index >= self.info.n_frames:
                        break  # the declared end
                    bad += 1
                    if bad > MAX_BAD_READS:
                        break
                    continue
                if bad:
                    if rep.frames_read:  # failed reads between good frames: a damaged stretch
                        rep.frames_damaged += bad
                        rep.damaged_at.append(index)
                    index += bad
                    bad = 0
                rep.frames_read += 1
                if keep:
                    yield Frame(index, index / fps if fps > 0 else float(index), *self._to_rgb(frame))
                    produced += 1
                index += 1
            else:
                rep.limited = True
            if not rep.frames_read:
                raise VideoReadError(f"unreadable video: {self.path.name}: no decodable frame")
            if not rep.limited and self.info.n_frames and index < self.info.n_frames:
                rep.stopped_at = index
                rep.stopped_time = index / fps if fps > 0 else None
        finally:
            cap.release()

    def _to_rgb(self, frame: np.ndarray) -> tuple[np.ndarray, float]:
        r = 1.0
        if self.max_side and max(frame.shape[:2]) > self.max_side:
            r = self.max_side / max(frame.shape[:2])
            frame = cv2.resize(frame, (round(frame.shape[1] * r), round(frame.shape[0] * r)), interpolation=cv2.INTER_AREA)
        return cv2.cvtColor(frame, cv2.COLOR_BGR2RGB), r


def iter_frames(
    path,
    every_n: int | None = None,
    target_fps: float | None = None,
    max_frames: int | None = None,
    max_side: int | None = 2048,
    report: list | None = None,
) -> Iterator[tuple[int, float, np.ndarray, float]]:
    """Yield ``(frame_index, time_s, rgb (H, W, 3) uint8, scale)`` for the sampled frames;
    ``scale`` maps original frame pixels to the returned array (< 1 when downscaled to ``max_side``).
    ``report``: a list that receives the pass's :class:`VideoReport` when the iteration ends.

    Raises :class:`VideoReadError` when the file cannot be opened or holds no decodable frame.
    """
    info = video_info(path)
    reader = VideoReader(path, sample_step(info.fps, every_n, target_fps), max_frames, max_side)
    for f in reader:
        yield f.index, f.time, f.rgb, f.scale
    if report is not None:
        report.append(reader.report)


class VideoWriter:
    """An MP4 (MPEG-4 Part 2, OpenCV's ``mp4v``) written frame by frame to a temporary name
    beside ``path`` and renamed onto it by :meth:`close`; :meth:`abort` (or an exception inside a
    ``with`` block) removes the temporary and leaves any earlier ``path`` untouched.

    ``mp4v`` is the codec OpenCV's wheels can encode (no H.264 encoder ships with them); VLC, mpv,
    ffmpeg, QuickTime and Windows' player play it; web browsers do not.
    """

    def __init__(self, path, fps: float, size: tuple[int, int] | None = None):
        from facetwin.outputs import TMP_MARK, ensure_dir

        self.path = Path(path)
        ensure_dir(self.path.parent)
        self.fps = float(fps) if fps and math.isfinite(fps) and fps > 0 else 25.0
        self.tmp = self.path.with_name(f".{self.path.stem}{TMP_MARK}{os.getpid()}-{os.urandom(4).hex()}{self.path.suffix}")
        self.size = size
        self.frames = 0
        self._w = None

    def write(self, rgb: np.ndarray) -> None:
        """Append one (H, W, 3) uint8 RGB frame (every frame must have the first one's size)."""
        from facetwin.outputs import OutputError

        h, w = rgb.shape[:2]
        if self._w is None:
            self.size = self.size or (w, h)
            self._w = cv2.VideoWriter(str(self.tmp), cv2.VideoWriter_fourcc(*"mp4v"), self.fps, self.size)
            if not self._w.isOpened():
                self._cleanup()
                raise OutputError(f"cannot write {self.path}: the MP4 encoder did not open")
        if (w, h) != self.size:
            rgb = cv2.resize(rgb, self.size, interpolation=cv2.INTER_AREA)
        self._w.write(cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2BGR))
        self.frames += 1

    def close(self) -> Path | None:
        """Finish the file and move it into place (None when no frame was written)."""
        from facetwin.outputs import OutputError, describe_os_error

        if self._w is None:
            return None
        self._w.release()
        self._w = None
        if not self.tmp.is_file() or self.tmp.stat().st_size == 0:  # e.g. the disk filled up
            self._cleanup()
            raise OutputError(f"cannot write {self.path}: the MP4 encoder wrote nothing (disk full?)")
        try:
            os.replace(self.tmp, self.path)
        except OSError as exc:
            self._cleanup()
            raise OutputError(f"cannot write {self.path}: {describe_os_error(exc)}") from None
        return self.path

    def abort(self) -> None:
        if self._w is not None:
            self._w.release()
            self._w = None
        self._cleanup()

    def _cleanup(self) -> None:
        try:
            self.tmp.unlink()
        except OSError:
            pass

    def __enter__(self) -> "VideoWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def count_frames(path) -> int:
    """Frames a video really holds (decoded, not the container's claim)."""
    cap = _open(path)
    n = 0
    try:
        while cap.grab():
            n += 1
    finally:
        cap.release()
    return n
