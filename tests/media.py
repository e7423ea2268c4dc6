"""Odd media files the tests create (videos, images) — shared by the data tests."""

import cv2


def write_video(path, frames, fps=25):
    """Write RGB uint8 frames (H, W, 3) as an mp4v video."""
    h, w = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
    for f in frames:
        writer.write(cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
    writer.release()
