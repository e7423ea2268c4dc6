"""Reconstructing a video frame by frame: decode → track → encode → (smooth) → one identity.

:func:`reconstruct_video` is a generator: each decoded frame is reconstructed and handed to the
caller before the next one is decoded, so memory stays flat in the video's length (the caller
writes the overlay MP4 / sequence rows as they come). Decoding and face tracking run in a second
thread, a few frames ahead of the network, so the two cores work side by side.

Per frame the posed mesh is rebuilt from

* the **clip identity** β: the running mean of the per-frame β so far (one person per clip;
  the sequence file stores the final mean and its spread),
* the frame's expression ψ and pose θ and its camera, optionally smoothed in time
  (:class:`~facetwin.inference.smoothing.ParameterSmoother`, One-Euro).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from typing import Iterator

import cv2
import numpy as np
import torch

from facetwin.data.tracking import FaceTracker, TrackStep
from facetwin.data.video import Frame, VideoReader
from facetwin.inference.threads import prefetch as prefetch_items


@dataclass
class VideoFrameResult:
    """One frame of a reconstructed video. Pixel quantities in the (possibly downscaled) frame."""

    frame: Frame
    track: TrackStep
    reconstruction: object | None   # the frame's own Reconstruction (per-frame β, raw), None = no face
    params: dict | None             # parameters used for the mesh: shape = clip identity, pose/expression maybe smoothed
    scale: float | None             # orthographic camera, frame pixels per metre
    translation: np.ndarray | None  # (2,) frame pixels
    vertices: np.ndarray | None     # (V, 3) posed mesh from ``params``, metres, model frame
    landmarks2d: np.ndarray | None  # (68, 2) the mesh's landmarks projected, frame pixels

    @property
    def ok(self) -> bool:
        return self.vertices is not None

    def as_reconstruction(self):
        """The frame's Reconstruction with the clip identity and smoothed parameters applied."""
        from facetwin.geometry.camera import project_orthographic

        res = self.reconstruction
        v2d = project_orthographic(torch.as_tensor(self.vertices)[None], torch.tensor([self.scale]),
                                   torch.as_tensor(self.translation)[None])[0].numpy()
        return replace(res, params=self.params, vertices=self.vertices, landmarks2d=self.landmarks2d,
                       vertices2d=v2d, scale=self.scale, translation=self.translation)


def pose_mesh(head_model, shape, expression, pose) -> tuple[np.ndarray, np.ndarray]:
    """(V, 3) vertices and (68, 3) landmarks for one β (n_shape,), ψ (n_expr,), θ (5, 3); shorter
    coefficient vectors are zero-padded to the model's size."""
    def pad(x, n):
        x = np.asarray(x, np.float32).reshape(-1)
        return np.concatenate([x, np.zeros(n - x.size, np.float32)]) if x.size < n else x[:n]

    with torch.no_grad():
        out = head_model(torch.from_numpy(pad(shape, head_model.n_shape))[None],
                         torch.from_numpy(pad(expression, head_model.n_expr))[None],
                         torch.as_tensor(np.asarray(pose, np.float32).reshape(1, -1, 3)))
    return out.vertices[0].numpy(), out.landmarks[0].numpy()


class StageClock:
    """CPU seconds per stage, each measured on the thread that runs it (``time.thread_time``):
    what the stages would cost on an idle machine, whatever else shares the cores."""

    def __init__(self):
        self.seconds: dict[str, float] = {}
        self._t: dict[str, float] = {}

    def start(self, stage: str) -> None:
        self._t[stage] = time.thread_time()

    def stop(self, stage: str) -> None:
        self.seconds[stage] = self.seconds.get(stage, 0.0) + time.thread_time() - self._t.pop(stage)

    def per_frame_ms(self, frames: int) -> dict[str, float]:
        return {k: round(1000 * v / max(1, frames), 1) for k, v in self.seconds.items()}


def tracked_frames(reader: VideoReader, tracker: FaceTracker, clock: StageClock | None = None) -> Iterator[tuple[Frame, TrackStep]]:
    clock = clock or StageClock()
    it = iter(reader)
    while True:
        clock.start("decode")
        frame = next(it, None)
        clock.stop("decode")
        if frame is None:
            return
        clock.start("track")
        step = tracker.update(frame.rgb)
        clock.stop("track")
        yield frame, step


class ClipIdentity:
    """Running mean of β over the frames seen (Welford), and its spread."""

    def __init__(self):
        self.n, self.mean, self._m2 = 0, None, None

    def add(self, beta: np.ndarray) -> np.ndarray:
        beta = np.asarray(beta, np.float64)
        if self.mean is None:
            self.mean, self._m2 = np.zeros_like(beta), np.zeros_like(beta)
        self.n += 1
        d = beta - self.mean
        self.mean = self.mean + d / self.n
        self._m2 = self._m2 + d * (beta - self.mean)
        return self.mean.astype(np.float32)

    @property
    def std(self) -> np.ndarray | None:
        return None if self.mean is None else np.sqrt(self._m2 / max(1, self.n - 1))


def reconstruct_video(ft, path, step: int = 1, max_frames: int | None = None, smoother=None,
                      tracker: FaceTracker | None = None, identity: ClipIdentity | None = None,
                      reader: VideoReader | None = None, prefetch: int = 4,
                      clock: StageClock | None = None, details: bool = False) -> Iterator[VideoFrameResult]:
    """Reconstruct the main face of every ``step``-th frame of a video, streaming.

    ``ft``: a :class:`~facetwin.inference.reconstructor.FaceTwin`; ``smoother``: a
    :class:`~facetwin.inference.smoothing.ParameterSmoother` or None; ``identity``: a
    :class:`ClipIdentity` to accumulate into (read its mean/spread after the loop); ``reader``:
    its :attr:`~facetwin.data.video.VideoReader.report` says how much of the file was read.
    ``details`` (``ft`` has a detail model): each result carries its details too, computed here
    while the next frame's coarse pass runs in a second thread (:func:`~facetwin.inference.threads.prefetch`:
    decode + track, coarse, details — three stages side by side).
    """
    clock = clock if clock is not None else StageClock()
    frames = _coarse_frames(ft, path, step, max_frames, smoother, tracker, identity, reader, prefetch, clock)
    if not (details and ft.detail is not None):
        yield from frames
        return
    from facetwin.errors import FacetwinError

    # each frame's details from its own fit (per-frame β, raw pose): the unwrap needs the mesh that fits the image
    for r in prefetch_items(frames, 1, name="facetwin-video-coarse"):
        if r.ok:
            clock.start("details")
            try:
                ft.add_details(r.reconstruction)
            except FacetwinError as exc:
                r = VideoFrameResult(r.frame, replace(r.track, label=None, reason=str(exc)), None, None, None, None, None, None)
            clock.stop("details")
        yield r


def _coarse_frames(ft, path, step, max_frames, smoother, tracker, identity, reader, prefetch, clock) -> Iterator[VideoFrameResult]:
    """:func:`reconstruct_video` without details (left pending in each reconstruction)."""
    from facetwin.errors import FacetwinError

    reader = reader or VideoReader(path, step=step, max_frames=max_frames)
    tracker = tracker or FaceTracker()
    identity = identity if identity is not None else ClipIdentity()
    hm = ft.model.head_model
    clock = clock or StageClock()
    frames = tracked_frames(reader, tracker, clock)
    source = prefetch_items(frames, prefetch, name="facetwin-video-decode") if prefetch else frames
    for frame, track in source:
        if track.label is None:
            if smoother is not None:
                smoother.reset()  # no face: do not smooth across the gap
            yield VideoFrameResult(frame, track, None, None, None, None, None, None)
            continue
        clock.start("network")
        try:
            res = ft.reconstruct(frame.rgb, landmarks=track.label.landmarks, details=False)
        except FacetwinError as exc:
            clock.stop("network")
            track = replace(track, label=None, reason=str(exc))
            yield VideoFrameResult(frame, track, None, None, None, None, None, None)
            continue
        fit = res.detection.get("landmark_fit_nme")
        res.detection = {"box": track.label.box.tolist(), "reliability": float(track.label.reliability),
                         "tracked": not track.detected, **({"landmark_fit_nme": fit} if fit else {})}
        beta = identity.add(res.params["shape"])
        values = {"expression": res.params["expression"], "pose": res.params["pose"],
                  "scale": np.array([res.scale]), "translation": res.translation}
        if smoother is not None:
            values = smoother(values, frame.time)
        params = dict(res.params, shape=beta, expression=values["expression"].astype(np.float32),
                      pose=values["pose"].astype(np.float32))
        verts, lmk3d = pose_mesh(hm, params["shape"], params["expression"], params["pose"])
        scale, translation = float(values["scale"][0]), np.asarray(values["translation"], np.float64)
        l2d = lmk3d[:, :2] * np.array([1.0, -1.0]) * scale + translation
        clock.stop("network")
        yield VideoFrameResult(frame, track, res, params, scale, translation, verts, l2d)


# -- pictures ---------------------------------------------------------------------------------

def fast_overlay(image: np.ndarray, vertices: np.ndarray, faces, scale: float, translation: np.ndarray,
                 crop_transform: np.ndarray, crop_size: int, render_size: int = 192, margin: float = 1.4,
                 opacity: float = 0.7, landmarks: np.ndarray | None = None) -> np.ndarray:
    """The shaded mesh over ``image`` (H, W, 3) uint8, rendered only around the face.

    Full-frame rasterisation costs ~10× more than the face needs: the mesh is rendered in a
    ``render_size``² window ``margin`` × the face crop (``crop_transform``: image → crop pixels of a
    ``crop_size`` crop) and pasted back with its alpha. ``landmarks`` (68, 2) are drawn as dots.
    """
    from facetwin.rendering.visualize import render_geometry

    R, S, m = render_size, crop_size, margin
    A = np.asarray(crop_transform, np.float64)
    W_ = A * (R / (S * m))  # image → window pixels
    W_[:, 2] += R / 2 - R / (2 * m)
    zoom = float(np.sqrt(abs(np.linalg.det(W_[:, :2]))))
    t_w = W_[:, :2] @ np.asarray(translation, np.float64) + W_[:, 2]
    ren, alpha = render_geometry(vertices, faces, scale * zoom, t_w, R)
    H, W = image.shape[:2]
    # The window's bounding box in the image: warp back only that part.
    inv = np.linalg.inv(np.vstack([W_, [0, 0, 1]]))[:2]
    corners = np.array([[0, 0], [R, 0], [0, R], [R, R]], np.float64) @ inv[:, :2].T + inv[:, 2]
    x0, y0 = np.floor(corners.min(0)).astype(int).clip(0, [W, H])
    x1, y1 = np.ceil(corners.max(0)).astype(int).clip(0, [W, H])
    out = image.copy()
    if x1 > x0 and y1 > y0:
        M = W_.copy()
        M[:, 2] += W_[:, :2] @ np.array([x0, y0], np.float64)  # sub-image offset
        M[:, 2] += M[:, :2] @ np.array([0.5, 0.5]) - 0.5      # pixel-centre convention
        size = (int(x1 - x0), int(y1 - y0))
        flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
        r = cv2.warpAffine(ren, M, size, flags=flags, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
        a = cv2.warpAffine(np.asarray(alpha, np.float32), M, size, flags=flags, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
        a = (a * opacity)[..., None]
        region = out[y0:y1, x0:x1].astype(np.float32)
        out[y0:y1, x0:x1] = (region * (1 - a) + r.astype(np.float32) * a + 0.5).astype(np.uint8)
    if landmarks is not None:
        rad = max(1, int(round(0.004 * max(H, W))))
        for x, y in np.asarray(landmarks):
            if np.isfinite(x) and np.isfinite(y):
                cv2.circle(out, (int(round(x - 0.5)), int(round(y - 0.5))), rad, (255, 64, 64), -1, lineType=cv2.LINE_AA)
    return out


def label_frame(image: np.ndarray, text: str) -> np.ndarray:
    """``text`` in a corner of a copy of ``image`` (frame numbers, 'no face')."""
    out = image.copy()
    h = out.shape[0]
    s = max(0.4, h / 900)
    cv2.putText(out, text, (8, int(24 * s) + 4), cv2.FONT_HERSHEY_SIMPLEX, s, (0, 0, 0), 3, cv2.LINE_AA)
    cv2.putText(out, text, (8, int(24 * s) + 4), cv2.FONT_HERSHEY_SIMPLEX, s, (255, 255, 255), 1, cv2.LINE_AA)
    return out
