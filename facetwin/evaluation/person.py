"""The person-specific evaluation protocol (issue #15) as pure functions.

* Splits: a video is personalised on its first 70 % of frames (in time) and tested on the last
  30 % (:func:`video_split`); a photo folder is tested leave-k-out (:func:`leave_k_out`).
* Figures on the test frames: 68-point NME (boundary 1–17 / inner 18–68 / overall,
  outer-eye-corner normalised) against the labels of the automatic annotator (dlib's 68-point
  predictor; its own NME against the human labels of HELEN-test is 0.0245, so NMEs near that are
  at the labels' noise floor), the photometric error, and the identity spread across test frames
  (:func:`identity_spread`: the std of β and the RMS of the neutral shape in mm).
* Priors kept: the same test frames with a pasted occluder (:class:`Occluded`, the training
  augmentation's occluder, seeded per frame, scored against the un-occluded frame's labels) and
  the test frames with a strong head turn (:func:`strong_turns`: |yaw| of the base model's pose
  above :data:`TURN_DEGREES`).
* Likeness (:func:`render_distances`): dlib's face-descriptor distance between a test photo and
  the textured render of its reconstruction composited onto it — the likeness benchmark's
  renderer and descriptor (:mod:`facetwin.evaluation.likeness`), per photo.
"""

from __future__ import annotations

import numpy as np
import torch

from facetwin.evaluation.nme import per_image_nme

LABELS = "automatic annotator (dlib 68-point predictor on the prepared crops)"
ANNOTATOR_NME_HELEN_TEST = 0.0245  # the annotator against HELEN-test's human labels (`facetwin evaluate annotator`)
TURN_DEGREES = 20.0  # a "strong head turn": |yaw| above this, by the base model's pose (turns are rare in held-out frames)
OCCLUDER_SIZE = (0.2, 0.35)  # occluder side, fraction of the crop side: the upper part of the augmentation's range


class Occluded(torch.utils.data.Dataset):
    """Items of ``dataset`` (keys ``image`` (3, S, S) in [0, 1], ``landmarks`` (68, 2), ``skin``
    (1, S, S)) with one occluder pasted on the face — :meth:`facetwin.data.augment.Augmenter.occlude`,
    the training augmentation's ellipses / polygons / textured patches, sized ``size`` (fraction of
    the crop side) and seeded by ``seed`` and the item's index (the same occluder every time).
    The labels stay the un-occluded frame's; the occluder is removed from ``skin`` (as in training)
    and returned as ``occluder`` (1, S, S)."""

    def __init__(self, dataset, seed: int = 0, size: tuple[float, float] = OCCLUDER_SIZE):
        from facetwin.data.augment import Augmenter

        self.dataset, self.seed = dataset, seed
        self.augmenter = Augmenter(occluder_size=tuple(size))

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int) -> dict:
        item = dict(self.dataset[i])
        image = (item["image"].permute(1, 2, 0).numpy() * 255.0 + 0.5).clip(0, 255).astype(np.uint8)
        rng = np.random.default_rng([self.seed, i])
        out, mask = self.augmenter.occlude(image, item["landmarks"].numpy().astype(np.float64), rng)
        occ = torch.from_numpy(mask.astype(np.float32))[None]
        pasted = torch.from_numpy(out).permute(2, 0, 1).float() / 255.0
        item.update(image=torch.where(occ > 0, pasted, item["image"]), skin=item["skin"] * (1 - occ), occluder=occ)
        return item


def occluded_points(item: dict) -> int:
    """How many of an :class:`Occluded` item's 68 labels its occluder covers."""
    occ = item["occluder"][0]
    xy = item["landmarks"].round().long()
    inside = (xy[:, 0] >= 0) & (xy[:, 1] >= 0) & (xy[:, 0] < occ.shape[1]) & (xy[:, 1] < occ.shape[0])
    xy = xy[inside]
    return int((occ[xy[:, 1], xy[:, 0]] > 0).sum())


def priors_summary(acc: dict, turn_degrees: float = TURN_DEGREES) -> dict:
    """``acc``: {"occluded": {"base": [(n,) NME per fold], "person": [...]}, "turn": {... and
    "yaw_deg": [...]}} → mean overall NME of each model on the occluded test frames and on the
    strongly turned ones (null without such frames), the frame counts, the relative change."""
    out = {}
    for what in ("occluded", "turn"):
        b, p = (np.concatenate(acc[what][m]) if acc[what][m] else np.zeros(0) for m in ("base", "person"))
        row = {"frames": int(len(b)), "nme_base": float(b.mean()) if len(b) else None,
               "nme_person": float(p.mean()) if len(p) else None}
        row["nme_reduction"] = nme_reduction(row["nme_base"], row["nme_person"]) if len(b) else None
        out[what] = row
    yaws = np.concatenate(acc["turn"]["yaw_deg"]) if acc["turn"]["yaw_deg"] else np.zeros(0)
    out["turn"].update(threshold_deg=float(turn_degrees), mean_abs_yaw_deg=float(np.abs(yaws).mean()) if len(yaws) else None)
    out["occluded"]["occluder"] = "the training augmentation's occluder (ellipse / polygon / textured patch), side " \
                                  f"{OCCLUDER_SIZE[0]:g}-{OCCLUDER_SIZE[1]:g} of the crop, on every test frame"
    return out


def strong_turns(yaw_deg: np.ndarray, threshold: float = TURN_DEGREES) -> np.ndarray:
    """Indices of the frames whose |yaw| (degrees, the base model's pose) is above ``threshold``."""
    return np.flatnonzero(np.abs(np.asarray(yaw_deg, np.float64)) > threshold)


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


@torch.no_grad()
def render_distances(coarse_model, images: torch.Tensor, landmarks: torch.Tensor, renderer=None, descriptor=None,
                     batch_size: int = 16) -> np.ndarray:
    """(N,) dlib face-descriptor (Euclidean) distance between each photo and the render of its
    own reconstruction by ``coarse_model`` composited onto it, both chipped from the photo's
    landmarks — ``render_distance`` of :func:`facetwin.evaluation.likeness.evaluate_likeness`
    (dlib's same-person threshold: 0.6), per photo. ``images`` (N, 3, S, S) in [0, 1] with
    ``S`` = :data:`facetwin.evaluation.likeness.CROP_SIZE` (crops like the training data),
    ``landmarks`` (N, 68, 2) the annotator's, crop pixels; ``renderer`` a
    :class:`~facetwin.evaluation.likeness.LikenessRenderer` of ``coarse_model`` (made if None)."""
    from facetwin.evaluation.likeness import LikenessRenderer
    from facetwin.losses.identity import default_descriptor, face_chips
    from facetwin.losses.perceptual import composite_render

    dev = next(coarse_model.encoder.parameters()).device
    descriptor = descriptor if descriptor is not None else default_descriptor(dev)
    renderer = renderer if renderer is not None else LikenessRenderer(coarse_model)
    was = coarse_model.training
    coarse_model.eval()
    out = []
    for s in range(0, len(images), batch_size):
        img, lm = images[s:s + batch_size].to(dev), landmarks[s:s + batch_size].to(dev).float()
        params = coarse_model.predict(img).to(torch.float32)
        render, mask = renderer.render(params)
        photo = descriptor(face_chips(img, lm))
        own = descriptor(face_chips(composite_render(render, img, mask), lm))
        out.append((own - photo).norm(dim=-1).cpu().numpy())
    coarse_model.train(was)
    return np.concatenate(out) if out else np.zeros(0)


def likeness_summary(acc: dict) -> dict:
    """``acc``: {"render_distance": {"base": [(n,) per fold], "person": [...]}, "beta_all_frames":
    {"base": [identity_spread per fold], "person_per_frame_beta": [...]}} → mean render distance
    of each model on the test frames, the share of test frames where the person model's render
    is closer, and the mean β spread over all of the person's frames."""
    b, p = (np.concatenate(acc["render_distance"][m]) for m in ("base", "person"))
    out = {"test_frames": int(len(b)), "render_distance_base": float(b.mean()), "render_distance_person": float(p.mean()),
           "person_closer_share": float((p < b).mean()), "same_person_threshold": 0.6}
    for m, rows in acc["beta_all_frames"].items():
        if rows:
            out[f"beta_std_all_frames_{m}"] = float(np.mean([r["beta_std"] for r in rows]))
            out[f"neutral_rms_mm_all_frames_{m}"] = float(np.mean([r["neutral_rms_mm"] for r in rows]))
    return out
