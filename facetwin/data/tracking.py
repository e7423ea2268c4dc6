"""Following one face through a video: detect once, then place the next frame's landmarks from
the previous frame's, and detect again only when the track is lost.

Detection (dlib HOG over the whole frame, ~15–50 ms) is what makes per-frame labelling slow;
the 68-point predictor itself needs only a box (~1 ms a call). :class:`FaceTracker` keeps the
box that the last detection gave *relative to its landmarks* and, on every next frame, derives
the box from the previous frame's landmarks, runs the annotator's labelling (direct + mirrored +
shifted-box predictions, whose disagreement is the reliability score) on a window around it, and
accepts the result when it is reliable. A face that leaves the picture, turns away or is covered
gives unreliable labels: the track is dropped and the frame is detected from scratch.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from facetwin.data.annotator import DEFAULT_MIN_FACE, DEFAULT_MIN_RELIABILITY, FaceLabel, annotate, label_face
from facetwin.data.detection import Detection


@dataclass
class TrackStep:
    """The tracker's answer for one frame."""

    label: FaceLabel | None      # the face (landmarks (68, 2) in frame pixels), None = no usable face
    detected: bool               # True when this frame ran the detector (first frame, or track lost)
    n_faces: int | None = None   # faces the detector saw (only when ``detected``)
    reason: str | None = None    # why there is no face


def _landmark_box(points: np.ndarray) -> tuple[np.ndarray, float]:
    lo, hi = points.min(0), points.max(0)
    return (lo + hi) / 2.0, float(max(hi - lo))


class FaceTracker:
    """Track the main face of a frame sequence. Call :meth:`update` once per frame, in order.

    ``min_reliability``: a tracked label below it counts as lost (the annotator's score, [0, 1]);
    ``max_jump``: a track whose landmark box moved by more than this many box sides between two
    frames is re-detected (a cut in the video).
    """

    def __init__(self, min_reliability: float = DEFAULT_MIN_RELIABILITY, min_face: float = DEFAULT_MIN_FACE, max_jump: float = 0.5):
        self.min_reliability = min_reliability
        self.min_face = min_face
        self.max_jump = max_jump
        self.previous: FaceLabel | None = None
        self._box_rel: np.ndarray | None = None  # detection box relative to the landmark box (centre, side)
        self.detections = 0
        self.frames = 0

    def reset(self) -> None:
        self.previous, self._box_rel = None, None

    def update(self, image: np.ndarray) -> TrackStep:
        """The face in ``image`` (H, W, 3) uint8 RGB."""
        self.frames += 1
        if self.previous is not None:
            label = self._follow(image, self.previous)
            if label is not None:
                self.previous = label
                return TrackStep(label, detected=False)
            self.reset()
        return self._detect(image)

    def _detect(self, image: np.ndarray) -> TrackStep:
        from facetwin.data.detection import detect_faces

        self.detections += 1
        dets = detect_faces(image)
        if not dets:
            return TrackStep(None, detected=True, n_faces=0, reason="no face")
        labels, reason = annotate(image, min_face=self.min_face, min_reliability=self.min_reliability, detections=dets)
        usable = [l for l in labels if l.ok]
        if not usable:
            return TrackStep(None, detected=True, n_faces=len(dets), reason=reason)
        label = usable[0]
        centre, side = _landmark_box(label.landmarks)
        box = np.asarray(label.box, np.float64)
        self._box_rel = np.array([(box[0] - centre[0]) / side, (box[1] - centre[1]) / side,
                                  (box[2] - centre[0]) / side, (box[3] - centre[1]) / side])
        self.previous = label
        return TrackStep(label, detected=True, n_faces=len(dets))

    def _check(self, label: FaceLabel) -> FaceLabel:
        if label.size < self.min_face:
            label.reason = f"face too small ({label.size:.0f} px < {self.min_face:.0f})"
        elif label.reliability < self.min_reliability:
            label.reason = f"unreliable landmarks (score {label.reliability:.2f} < {self.min_reliability:.2f})"
        return label

    def _follow(self, image: np.ndarray, prev: FaceLabel) -> FaceLabel | None:
        """Labels from the box the previous landmarks imply, on a window around it; None = lost."""
        centre, side = _landmark_box(prev.landmarks)
        box = np.array([centre[0], centre[1], centre[0], centre[1]]) + self._box_rel * side
        H, W = image.shape[:2]
        bw = box[2] - box[0]
        # A window of 2.5 box sides keeps the mirrored/shifted predictions cheap on large frames.
        x0, y0 = int(max(0, np.floor(box[0] - 0.75 * bw))), int(max(0, np.floor(box[1] - 0.75 * bw)))
        x1, y1 = int(min(W, np.ceil(box[2] + 0.75 * bw))), int(min(H, np.ceil(box[3] + 0.75 * bw)))
        if x1 - x0 < 0.5 * bw or y1 - y0 < 0.5 * bw:
            return None  # the box left the picture
        window = np.ascontiguousarray(image[y0:y1, x0:x1])
        offset = np.array([x0, y0], np.float64)
        local = label_face(window, Detection(box - np.tile(offset, 2), score=0.0))
        local.landmarks = local.landmarks + offset
        local.box = local.box + np.tile(offset, 2)
        label = self._check(local)
        if not label.ok:
            return None
        c_new, s_new = _landmark_box(label.landmarks)
        if np.linalg.norm(c_new - centre) > self.max_jump * side or not (0.6 < s_new / side < 1.6):
            return None
        # Inside the picture: most landmarks must lie within the frame.
        inside = ((label.landmarks >= 0) & (label.landmarks <= [W, H])).all(1).mean()
        if inside < 0.8:
            return None
        return label
