"""68-point accuracy of the coarse model on an annotated folder (images + iBUG ``.pts``).

Protocol: each face is cropped like the training data (``crop_square`` of the data pipeline:
side 1.6 × the landmark box, centred slightly above it) from the ground-truth landmarks
(``crop="gt"``, the usual 3D-alignment protocol) or from the automatic annotator
(``crop="detect"``); the model's projected 68 landmarks are mapped back to the original image
and compared with the annotation. NME = mean point-to-point error / outer-eye-corner distance
(points 37 and 46), reported for the boundary (1–17), the inner points (18–68) and all 68.

``refine``: the prediction refined onto the automatic annotator's points as inference does
(:mod:`facetwin.models.refine`; the annotator is run on the image, its face nearest the annotation
is used when it is reliable, else the regressor's prediction stands); the regressor's own figures
are reported beside (``regressor``).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

from facetwin.data.alignment import apply_affine, crop_square, crop_transform, invert_affine, warp
from facetwin.data.io import IMAGE_EXTENSIONS, load_image
from facetwin.data.pts import read_pts
from facetwin.errors import FacetwinError
from facetwin.evaluation.nme import ced, nme_by_pose, nose_asymmetry, per_image_nme


def annotated_images(folder: Path) -> list[tuple[Path, Path]]:
    folder = Path(folder)
    if not folder.is_dir():
        raise FacetwinError(f"not a folder: {folder}")
    pairs = []
    for p in sorted(folder.iterdir()):
        if p.suffix.lower() in IMAGE_EXTENSIONS and p.with_suffix(".pts").is_file():
            pairs.append((p, p.with_suffix(".pts")))
    if not pairs:
        raise FacetwinError(f"no annotated images (image + .pts) in {folder}")
    return pairs


def auc(errors: np.ndarray, threshold: float = 0.08) -> float:
    """Area under the CED curve up to ``threshold``, normalised to [0, 1]."""
    return ced(errors, max_error=threshold, steps=801)[2]


def crop_for(image: np.ndarray, landmarks: np.ndarray, size: int, crop_rule: dict | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(crop (size, size, 3), affine (2, 3) image → crop) of the square ``crop_square`` puts
    around ``landmarks``; ``crop_rule``: its ``scale`` / ``shift_up`` (a model file's
    ``inference.crop``; the data pipeline's defaults when None)."""
    centre, side = crop_square(landmarks, **(crop_rule or {}))
    A = crop_transform(centre, side, size)
    return warp(image, A, size), A


def _annotator_points(image: np.ndarray, ref: np.ndarray) -> np.ndarray | None:
    """The automatic annotator's 68 points of the face nearest ``ref`` (68, 2), or None when it
    finds none there or its labels are not reliable (inference would not use them either)."""
    from facetwin.data.annotator import DEFAULT_MIN_RELIABILITY, annotate

    labels, _ = annotate(image, faces="all", min_reliability=0.0)
    if not labels:
        return None
    centre = ref.mean(0)
    label = min(labels, key=lambda l: np.linalg.norm(l.landmarks.mean(0) - centre))
    if np.linalg.norm(label.landmarks.mean(0) - centre) > 0.5 * np.ptp(ref[:, 0]) or label.reliability < DEFAULT_MIN_RELIABILITY:
        return None
    return label.landmarks


def predict_folder(coarse_model, folder: Path, limit: int | None = None, crop: str = "gt", batch_size: int = 16,
                   progress: bool = True, contour: str = "static", crop_rule: dict | None = None,
                   refine=None) -> tuple[list[Path], np.ndarray, np.ndarray]:
    """(paths, predicted (N, 68, 2), ground truth (N, 68, 2)) in original image pixels; the contour
    points as ``CoarseModel.image_landmarks(contour=...)`` places them; ``refine``
    (:class:`facetwin.models.refine.RefineSettings` or None): refined onto the annotator's points."""
    paths, pred, refined, gt, _ = _predict(coarse_model, folder, limit, crop, batch_size, progress, contour, crop_rule, refine)
    return paths, (pred if refined is None else refined), gt


@torch.no_grad()
def _predict(coarse_model, folder, limit, crop, batch_size, progress, contour, crop_rule, refine):
    """(paths, regressor (N, 68, 2), refined (N, 68, 2) or None, ground truth, refined count)."""
    pairs = annotated_images(folder)[: limit or None]
    size = coarse_model.input_size
    dev = next(coarse_model.encoder.parameters()).device
    crops, transforms, gts, paths, targets = [], [], [], [], []
    for img_path, pts_path in pairs:
        image, scale = load_image(img_path)
        gt = read_pts(pts_path, n_points_expected=68)
        points = _annotator_points(image, gt * scale) if (refine is not None or crop != "gt") else None
        ref = gt * scale if crop == "gt" or points is None else points  # "detect" falls back to the annotation's box
        c, A = crop_for(image, ref, size, crop_rule)
        targets.append(apply_affine(A, points) if points is not None else np.full((68, 2), np.nan))
        A_orig = A.copy()
        A_orig[:, :2] *= scale
        crops.append(c)
        transforms.append(A_orig)
        gts.append(gt)
        paths.append(img_path)
    preds, refined = [], []
    was_training = coarse_model.training
    coarse_model.eval()
    it = range(0, len(crops), batch_size)
    if progress:
        from tqdm import tqdm

        it = tqdm(it, desc="evaluate", file=sys.stderr, leave=False)
    for s in it:
        batch = torch.from_numpy(np.stack(crops[s:s + batch_size])).permute(0, 3, 1, 2).float().div(255).to(dev)
        params = coarse_model.predict(batch)
        preds.append(coarse_model.image_landmarks(coarse_model.geometry(params, size), contour).float().cpu().numpy())
        if refine is not None:
            from facetwin.models.refine import refine_to_landmarks

            target = torch.from_numpy(np.stack(targets[s:s + batch_size])).to(dev)
            better, _ = refine_to_landmarks(coarse_model.head_model, params, target, size, refine)
            refined.append(coarse_model.image_landmarks(coarse_model.geometry(better, size), contour).float().cpu().numpy())
    coarse_model.train(was_training)

    def to_image(p):
        return np.stack([apply_affine(invert_affine(A), q) for A, q in zip(transforms, np.concatenate(p, 0))])

    n_refined = int(np.isfinite(np.stack(targets)[:, 0, 0]).sum()) if refine is not None else 0
    return paths, to_image(preds), (to_image(refined) if refine is not None else None), np.stack(gts), n_refined


def _figures(pred: np.ndarray, gt: np.ndarray) -> dict:
    e = per_image_nme(pred, gt)
    return {
        "nme_boundary": float(e["boundary"].mean()),
        "nme_inner": float(e["inner"].mean()),
        "nme_overall": float(e["overall"].mean()),
        "auc_0.08": auc(e["overall"]),
        "by_pose": nme_by_pose(e, nose_asymmetry(gt)),
        "per_image": {k: v.tolist() for k, v in e.items()},
    }


def evaluate_folder(coarse_model, folder: Path, limit: int | None = None, crop: str = "gt", progress: bool = True,
                    contour: str = "static", crop_rule: dict | None = None, refine=None) -> dict:
    """NME of ``coarse_model`` on an annotated folder (see the module docstring); ``crop_rule``:
    the model file's ``inference.crop``; ``refine``: a :class:`~facetwin.models.refine.RefineSettings`
    to score the refined prediction (then ``regressor`` holds the encoder's own figures and
    ``refined_images`` how many faces had reliable annotator points)."""
    paths, pred, refined, gt, n_refined = _predict(coarse_model, folder, limit, crop, 16, progress, contour, crop_rule, refine)
    out = {"images": len(paths), **_figures(pred if refined is None else refined, gt)}
    if refined is not None:
        out["refined_images"] = n_refined
        out["regressor"] = _figures(pred, gt)
    return out


def ced_plot(curves: dict[str, dict[str, np.ndarray]], path: Path, threshold: float = 0.15, title: str = "") -> Path:
    """Cumulative error distributions → PNG, one panel per point group.

    ``curves`` maps a model name to its per-image errors by group (``boundary`` / ``inner`` /
    ``overall``, as in ``evaluate_folder(...)["per_image"]``); groups missing from every model
    are left out.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = [g for g in ("boundary", "inner", "overall") if any(g in c for c in curves.values())]
    labels = {"boundary": "boundary (1–17)", "inner": "inner (18–68)", "overall": "all 68"}
    fig, axes = plt.subplots(1, len(groups), figsize=(4.2 * len(groups), 3.8), dpi=120, squeeze=False)
    xs = np.linspace(0, threshold, 400)
    for ax, group in zip(axes[0], groups):
        for name, by_group in curves.items():
            if group not in by_group:
                continue
            errors = np.asarray(by_group[group])
            ax.plot(xs, (errors[None] <= xs[:, None]).mean(1) * 100, label=f"{name} (mean {errors.mean():.4f})")
        ax.set_title(labels[group], fontsize=9)
        ax.set_xlabel("NME (outer-eye-corner normalised)")
        ax.set_xlim(0, threshold)
        ax.set_ylim(0, 100)
        ax.grid(alpha=0.3)
        ax.legend(loc="lower right", fontsize=7)
    axes[0][0].set_ylabel("images (%)")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    from facetwin.outputs import atomic_write

    try:
        with atomic_write(path, "wb") as fh:  # a failed write keeps an earlier plot of that name
            fig.savefig(fh, format=Path(path).suffix.lstrip(".").lower() or "png")
    finally:
        plt.close(fig)
    return Path(path)
