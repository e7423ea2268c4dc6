"""Streaming video frames with sampling: frames are decoded one at a time, never all at once."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np

from facetwin.errors import FacetwinError


class VideoReadError(FacetwinError):
    """The file is not a readable video."""


@dataclass
class VideoInfo:
    fps: float
    n_frames: int  # as declared by the container (may be 0 or wrong)
    width: int
    height: int


def video_info(path) -> VideoInfo:
    cap = _open(path)
    try:
        return VideoInfo(
            fps=float(cap.get(cv2.CAP_PROP_FPS) or 0.0),
            n_frames=int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0),
            width=int(cap.get(cv2.CAP_PROP_FRAME_WIDTH) or 0),
            height=int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT) or 0),
        )
    finally:
        cap.release()


def _open(path) -> cv2.VideoCapture:
    path = Path(path)
    if not path.is_file():
        raise VideoReadError(f"unreadable video: {path}: no such file")
    if path.stat().st_size == 0:
        raise VideoReadError(f"unreadable video: {path.name}: empty file")
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        cap.release()
        raise VideoReadError(f"unreadable video: {path.name}: cannot be decoded")
    return cap


def sample_step(fps: float, every_n: int | None = None, target_fps: float | None = None) -> int:
    """Keep one frame every ``step`` frames (``every_n`` wins over ``target_fps``)."""
    if every_n:
        return max(1, int(every_n))
    if target_fps and fps > 0:
        return max(1, int(round(fps / target_fps)))
    return 1


def iter_frames(
    path,
    every_n: int | None = None,
    target_fps: float | None = None,
    max_frames: int | None = None,
    max_side: int | None = 2048,
) -> Iterator[tuple[int, float, np.ndarray, float]]:
    """Yield ``(frame_index, time_s, rgb (H, W, 3) uint8, scale)`` for the sampled frames;
    ``scale`` maps original frame pixels to the returned array (< 1 when downscaled to ``max_side``).

    Raises :class:`VideoReadError` when the file cannot be opened or holds no decodable frame.
    """
    cap = _open(path)
    try:
        fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
        step = sample_step(fps, every_n, target_fps)
        index, produced, decoded_any = 0, 0, False
        while max_frames is None or produced < max_frames:
            if index % step:
                if not cap.grab():  # skip without colour conversion
                    break
                decoded_any = True
                index += 1
                continue
            ok, frame = cap.read()
            if not ok or frame is None:
                break
            decoded_any = True
            r = 1.0
            if max_side and max(frame.shape[:2]) > max_side:
                r = max_side / max(frame.shape[:2])
                frame = cv2.resize(frame, (round(frame.shape[1] * r), round(frame.shape[0] * r)), interpolation=cv2.INTER_AREA)
            yield index, (index / fps if fps > 0 else float(index)), cv2.cvtColor(frame, cv2.COLOR_BGR2RGB), r
            produced += 1
            index += 1
        if not decoded_any:
            raise VideoReadError(f"unreadable video: {Path(path).name}: no decodable frame")
    finally:
        cap.release()
