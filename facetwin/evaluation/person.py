"""The person-specific evaluation protocol (issue #15) as pure functions.

* Splits: a video is personalised on its first 70 % of frames (in time) and tested on the last
  30 % (:func:`video_split`); a photo folder is tested leave-k-out (:func:`leave_k_out`).
* Figures on the test frames: 68-point NME (boundary 1–17 / inner 18–68 / overall,
  outer-eye-corner normalised) against the labels of the automatic annotator (dlib's 68-point
  predictor; its own NME against the human labels of HELEN-test is 0.0245, so NMEs near that are
  at the labels' noise floor), the photometric error, and the identity spread across test frames
  (:func:`identity_spread`: the std of β and the RMS of the neutral shape in mm).
"""

from __future__ import annotations

import numpy as np
import torch

from facetwin.evaluation.nme import per_image_nme

LABELS = "automatic annotator (dlib 68-point predictor on the prepared crops)"
ANNOTATOR_NME_HELEN_TEST = 0.0245  # the annotator against HELEN-test's human labels (`facetwin evaluate annotator`)


def frame_order(key: str) -> tuple[str, int]:
    """Sort key of a prepared item: (source, frame index) for ``"clip.mp4#f000123"``."""
    src, _, frame = key.partition("#f")
    return src, int(frame) if frame.isdigit() else -1


def video_split(keys: list[str], train_fraction: float = 0.7) -> tuple[list[str], list[str]]:
    """(first ``train_fraction`` of the frames in time, the rest)."""
    order = sorted(keys, key=frame_order)
    n_train = int(round(train_fraction * len(order)))
    if n_train < 1 or n_train >= len(order):
        raise ValueError(f"{len(order)} frames cannot be split {train_fraction:.0%} / {1 - train_fraction:.0%}")
    return order[:n_train], order[n_train:]


def leave_k_out(keys: list[str], k: int) -> list[tuple[list[str], list[str]]]:
    """Folds (train, test) that each hold out ``k`` consecutive photos (the last fold may hold
    fewer); every photo is tested once."""
    order = sorted(keys)
    if not 1 <= k < len(order):
        raise ValueError(f"leave-{k}-out needs more than {k} photos (have {len(order)})")
    folds = []
    for s in range(0, len(order), k):
        test = order[s:s + k]
        folds.append(([x for x in order if x not in test], test))
    return folds


def landmark_errors(pred: np.ndarray, labels: np.ndarray) -> dict[str, np.ndarray]:
    """Per-frame NME (N,) by region (``boundary``, ``inner``, ``overall``)."""
    return per_image_nme(pred, labels)


def neutral_rms_mm(head_model, betas: np.ndarray) -> float:
    """RMS over vertices and frames of each frame's neutral shape S(β, 0, 0) from the frames'
    mean neutral shape, in millimetres (β: (N, k), k <= the head model's components; model in metres)."""
    b = torch.as_tensor(np.asarray(betas), dtype=torch.float32)
    if b.shape[0] < 2:
        return 0.0
    with torch.no_grad():
        full = torch.zeros(b.shape[0], head_model.n_shape)
        full[:, :b.shape[1]] = b
        v = head_model(full, torch.zeros(b.shape[0], head_model.n_expr), torch.zeros(b.shape[0], 5, 3)).vertices
        d = v - v.mean(0, keepdim=True)
        return float(d.pow(2).sum(-1).mean().sqrt() * 1000.0)


def identity_spread(betas: np.ndarray, head_model) -> dict[str, float]:
    """``beta_std``: per-component std of β across frames, averaged over components;
    ``neutral_rms_mm``: :func:`neutral_rms_mm`."""
    b = np.asarray(betas, np.float64)
    return {"beta_std": float(b.std(0).mean()) if len(b) > 1 else 0.0, "neutral_rms_mm": neutral_rms_mm(head_model, b)}


def summarize(errors: dict[str, np.ndarray], photometric: np.ndarray | None = None) -> dict[str, float]:
    out = {f"nme_{k}": float(np.mean(v)) for k, v in errors.items()}
    if photometric is not None and len(photometric):
        out["photometric"] = float(np.mean(photometric))
    return out


def nme_reduction(base_overall: float, person_overall: float) -> float:
    """Relative reduction of the overall NME, base → person (0–1; negative if the person model is worse)."""
    return float(1.0 - person_overall / base_overall) if base_overall > 0 else 0.0
