"""Automatic 68-point labels (iBUG/300-W convention) with a per-face reliability score.

Landmarks come from dlib's 68-point regression-tree predictor (trained on 300-W: its jaw
points follow the visible silhouette). Reliability combines three signals:

* **flip consistency** — the predictor is run on the image and on its mirror (points mapped
  back with the 68-point mirror permutation); disagreement, normalised by the outer-eye-corner
  distance, is large where the predictor guesses (occlusion, profile, blur, non-faces);
* **box consistency** — the same for a slightly shifted and enlarged detection box;
* **detector confidence** — dlib's HOG score.

``reliability = exp(-(flip_err + box_err) / 0.08) * sigmoid(4 * (det_score + 0.5))`` in [0, 1].
The returned landmarks are the mean of the direct and the mirrored prediction (a cheap
test-time augmentation that lowers the error, see BENCHMARKS.md).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import dlib
import numpy as np

from facetwin.data.detection import Detection, detect_faces
from facetwin.data.models import shape_predictor_68

from facetwin.geometry.ibug68 import LEFT_EYE_OUTER, MIRROR_68, RIGHT_EYE_OUTER  # noqa: E402,F401 (re-exported)

DEFAULT_MIN_FACE = 40.0  # px: landmark box side in the original image
DEFAULT_MIN_RELIABILITY = 0.4


@dataclass
class FaceLabel:
    """One face: landmarks ``(68, 2)`` in image pixels (corner convention) and its scores."""

    landmarks: np.ndarray
    box: np.ndarray
    detector_score: float
    flip_error: float
    box_error: float
    reliability: float
    reason: str | None = None  # why the face is rejected; None = usable
    extra: dict = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.reason is None

    @property
    def size(self) -> float:
        lo, hi = self.landmarks.min(0), self.landmarks.max(0)
        return float(max(hi - lo))


def _predict(image: np.ndarray, box: np.ndarray) -> np.ndarray:
    """dlib 68-point prediction for ``box`` (x0, y0, x1, y1), in corner coordinates."""
    h, w = image.shape[:2]
    rect = dlib.rectangle(int(round(box[0])), int(round(box[1])), int(round(box[2])) - 1, int(round(box[3])) - 1)
    shape = shape_predictor_68()(image, rect)
    # dlib points are integer pixel indices; the pixel centre is index + 0.5 in our convention.
    return np.array([[p.x + 0.5, p.y + 0.5] for p in shape.parts()], dtype=np.float64)


def _flip_points(points: np.ndarray, width: int) -> np.ndarray:
    out = points[MIRROR_68].copy()
    out[:, 0] = width - out[:, 0]
    return out


def interocular(points: np.ndarray) -> float:
    return float(np.linalg.norm(points[LEFT_EYE_OUTER] - points[RIGHT_EYE_OUTER]))


def _padded(image: np.ndarray, box: np.ndarray) -> tuple[np.ndarray, int]:
    """Replicate-pad the image when the box sticks out (tight crops), returns (image, pad)."""
    h, w = image.shape[:2]
    side = box[2] - box[0]
    need = max(0.0, -box[0], -box[1], box[2] - w, box[3] - h) + 0.3 * side
    if min(box[0], box[1], w - box[2], h - box[3]) >= 0.3 * side:
        return image, 0
    pad = int(np.ceil(need))
    return cv2.copyMakeBorder(image, pad, pad, pad, pad, cv2.BORDER_REPLICATE), pad


def label_face(image: np.ndarray, detection: Detection) -> FaceLabel:
    """Landmarks and reliability for one detected face in an ``(H, W, 3)`` uint8 RGB image."""
    padded, pad = _padded(image, detection.box)
    box = detection.box + pad
    width = padded.shape[1]
    direct = _predict(padded, box)
    flipped_img = np.ascontiguousarray(padded[:, ::-1])
    fbox = np.array([width - box[2], box[1], width - box[0], box[3]])
    mirrored = _flip_points(_predict(flipped_img, fbox), width)
    side = box[2] - box[0]
    jbox = box + np.array([-0.06, -0.03, 0.06, 0.09]) * side
    jittered = _predict(padded, jbox)
    iod = max(interocular(direct), 1e-6)
    flip_err = float(np.linalg.norm(direct - mirrored, axis=1).mean() / iod)
    box_err = float(np.linalg.norm(direct - jittered, axis=1).mean() / iod)
    det_term = 1.0 / (1.0 + np.exp(-4.0 * (detection.score + 0.5)))
    reliability = float(np.exp(-(flip_err + box_err) / 0.08) * det_term)
    landmarks = 0.5 * (direct + mirrored) - pad
    return FaceLabel(
        landmarks=landmarks,
        box=detection.box.copy(),
        detector_score=detection.score,
        flip_error=flip_err,
        box_error=box_err,
        reliability=reliability,
    )


def annotate(
    image: np.ndarray,
    faces: str = "main",
    min_face: float = DEFAULT_MIN_FACE,
    min_reliability: float = DEFAULT_MIN_RELIABILITY,
    detect_kwargs: dict | None = None,
    max_candidates: int = 3,
    detections: list[Detection] | None = None,
) -> tuple[list[FaceLabel], str | None]:
    """Label the faces of an image.

    ``faces``: ``"main"`` (the largest face with reliable labels, trying the ``max_candidates``
    largest detections), ``"all"`` (every face), or ``"single"`` (like main, but the image is
    rejected when it shows several faces of similar size).
    ``detections``: the detector's output when the caller already ran it (largest first).
    Returns ``(labels, reason)``: ``reason`` explains why nothing usable was found (``None`` when
    at least one label is usable). Rejected faces keep their ``reason``.
    """
    if detections is None:
        detections = detect_faces(image, **(detect_kwargs or {}))
    if not detections:
        return [], "no face"
    if faces == "single" and len(detections) > 1 and detections[1].size > 0.5 * detections[0].size:
        return [], f"several faces ({len(detections)})"
    labels = []
    for det in detections if faces == "all" else detections[:max_candidates]:
        label = label_face(image, det)
        if label.size < min_face:
            label.reason = f"face too small ({label.size:.0f} px < {min_face:.0f})"
        elif label.reliability < min_reliability:
            label.reason = f"unreliable landmarks (score {label.reliability:.2f} < {min_reliability:.2f})"
        labels.append(label)
        if faces != "all" and label.ok:
            # Main face = the largest detection whose labels are reliable (a larger false
            # detection in the background must not win).
            return [label], None
    if faces != "all":
        return labels[:1], labels[0].reason
    labels.sort(key=lambda l: -l.size)
    usable = [l for l in labels if l.ok]
    if usable:
        return labels, None
    return labels, labels[0].reason
