"""Likeness of coarse reconstructions on a folder of people (one sub-folder of photos per person).

Two families of figures (issue #14):

* **identity in β** — is the predicted identity β the same for photos of one person and different
  between people? ``beta_auc``: ROC AUC of same- vs different-person photo pairs scored by the
  cosine distance of β (0.5 = chance, 1 = perfect); ``nn_accuracy``: leave-one-out
  nearest-neighbour identification (cosine distance of β), over photos whose person has another
  photo; ``within`` / ``between``: mean cosine distance of β over same- / different-person pairs.
  The same figures for dlib's face descriptor of the photos (``photo_descriptor_*``) are the
  reference: that is what a face-recognition network gets from the same photos.
* **render likeness** — does the render *look* like the person? ``render_distance``: dlib
  face-descriptor (Euclidean) distance between a photo and the textured render of its own
  reconstruction composited onto it, both chipped (150², dlib's alignment) from the photo's
  landmarks; ``mean_face_render_distance``: the same with β = 0 under the same pose, expression,
  light and albedo, its camera re-fitted to the same predicted inner landmarks (as the identity
  head places its own β) — the baseline the recovered identity has to beat. dlib's same-person
  threshold is 0.6. ``face_render_distance`` / ``mean_face_face_render_distance``: the same
  with only the face region pasted (no bald scalp over the hair, no ears or neck), which is what
  the ``perceptual_region: face`` identity loss compares.

Photos are labelled by the automatic annotator (dlib HOG + 68-point predictor, main face) and
cropped like the training data (1.6 × the landmark box); photos without a usable face are
skipped and counted.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from facetwin.errors import FacetwinError

CROP_SIZE = 224  # crop the render and the chips are made from (the prepared crops' size)


# -- pure metrics -----------------------------------------------------------------------------
def roc_auc(scores: np.ndarray, positive: np.ndarray) -> float:
    """Area under the ROC curve of ``scores`` (higher = more likely positive) for boolean labels
    ``positive``: P(score of a random positive > score of a random negative), ties count 1/2
    (the Mann–Whitney U statistic / n_pos n_neg)."""
    s = np.asarray(scores, np.float64).ravel()
    y = np.asarray(positive, bool).ravel()
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        raise ValueError("roc_auc needs at least one positive and one negative")
    order = np.argsort(s, kind="mergesort")
    ranks = np.empty(len(s), np.float64)
    sorted_s = s[order]
    # average ranks over ties (1-based)
    start = 0
    while start < len(s):
        end = start
        while end + 1 < len(s) and sorted_s[end + 1] == sorted_s[start]:
            end += 1
        ranks[order[start:end + 1]] = (start + end) / 2.0 + 1.0
        start = end + 1
    u = ranks[y].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


def cosine_distances(x: np.ndarray) -> np.ndarray:
    """(N, D) → (N, N) ``1 - cos`` between rows (a zero row has distance 1 to everything)."""
    x = np.asarray(x, np.float64)
    n = np.linalg.norm(x, axis=1, keepdims=True)
    u = x / np.maximum(n, 1e-12)
    return 1.0 - u @ u.T


def euclidean_distances(x: np.ndarray) -> np.ndarray:
    """(N, D) → (N, N) Euclidean distances between rows."""
    x = np.asarray(x, np.float64)
    sq = (x * x).sum(1)
    return np.sqrt(np.maximum(sq[:, None] + sq[None] - 2 * x @ x.T, 0.0))


def verification(distances: np.ndarray, identity: np.ndarray) -> dict:
    """Pairwise verification and identification figures from an (N, N) distance matrix.

    Returns ``auc`` (same-person pairs should be closer), ``nn_accuracy`` (leave-one-out nearest
    neighbour has the same identity; over photos whose identity has another photo), ``within`` /
    ``between`` (mean distance of same- / different-person pairs) and the pair counts.
    """
    d = np.asarray(distances, np.float64)
    ids = np.asarray(identity)
    N = len(ids)
    iu = np.triu_indices(N, 1)
    same = ids[iu[0]] == ids[iu[1]]
    pair_d = d[iu]
    auc = roc_auc(-pair_d, same)
    dd = d + np.diag(np.full(N, np.inf))
    has_mate = np.array([(ids == k).sum() > 1 for k in ids])
    nn = dd.argmin(1)
    correct = ids[nn] == ids
    return {
        "auc": auc,
        "nn_accuracy": float(correct[has_mate].mean()) if has_mate.any() else float("nan"),
        "within": float(pair_d[same].mean()),
        "between": float(pair_d[~same].mean()),
        "same_pairs": int(same.sum()),
        "different_pairs": int((~same).sum()),
    }


def shared_offset_fraction(beta: np.ndarray) -> float:
    """Share of the mean ‖β‖² that is the offset common to every photo: ‖mean β‖² / mean ‖β‖²."""
    b = np.asarray(beta, np.float64)
    return float((b.mean(0) ** 2).sum() / max((b * b).sum(1).mean(), 1e-12))


# -- data --------------------------------------------------------------------------------------
def person_folders(folder: str | Path, min_photos: int = 1) -> list[tuple[str, list[Path]]]:
    """``[(person, [photo paths])]`` of the sub-folders of ``folder`` (sorted); FacetwinError if
    there are fewer than two people."""
    from facetwin.data.io import is_image_path

    folder = Path(folder)
    if not folder.is_dir():
        raise FacetwinError(f"not a folder: {folder}")
    people = []
    for sub in sorted(p for p in folder.iterdir() if p.is_dir()):
        photos = sorted(p for p in sub.iterdir() if p.is_file() and is_image_path(p))
        if len(photos) >= min_photos:
            people.append((sub.name, photos))
    if len(people) < 2:
        raise FacetwinError(f"{folder} needs at least two person sub-folders with photos (found {len(people)})")
    return people


@dataclass
class LabelledPhoto:
    person: str
    path: Path
    crop: np.ndarray       # (S, S, 3) uint8 RGB, crop like the training data
    landmarks: np.ndarray  # (68, 2) annotator landmarks in crop pixels (corner convention)


_LABEL_CACHE: dict[tuple[str, int], LabelledPhoto | None] = {}


def _disk_cache_path(path: Path) -> Path:
    """Where the annotator's landmarks of ``path`` are kept (keyed by path, size and mtime):
    labelling is the slow part of the benchmark and does not depend on the model."""
    import hashlib

    from facetwin.paths import cache_dir

    st = path.stat()
    key = hashlib.sha1(f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}".encode()).hexdigest()[:20]
    return cache_dir() / "likeness-labels" / f"{key}.json"


def _annotated_landmarks(path: Path, image: np.ndarray) -> np.ndarray | None:
    """(68, 2) landmarks of the main usable face in original pixels, or None (disk-cached)."""
    import json

    from facetwin.data.annotator import annotate

    cached = _disk_cache_path(path)
    try:
        data = json.loads(cached.read_text())
        return None if data["landmarks"] is None else np.asarray(data["landmarks"], np.float64)
    except (OSError, ValueError, KeyError):
        pass
    labels, _ = annotate(image)
    usable = [l for l in labels if l.ok]
    lm = usable[0].landmarks if usable else None
    try:
        from facetwin.outputs import ensure_dir, write_json

        ensure_dir(cached.parent)
        write_json(cached, {"photo": str(path), "landmarks": None if lm is None else lm.tolist()}, indent=None)
    except FacetwinError:  # read-only cache: labelling still works, just not kept
        pass
    return lm


def label_photo(person: str, path: Path, size: int = CROP_SIZE) -> LabelledPhoto | None:
    """Crop + landmarks of the main face of a photo, None when no usable face (cached in memory
    and, the landmarks, on disk: the periodic training evaluation labels the same photos every time)."""
    key = (str(path), size)
    if key not in _LABEL_CACHE:
        from facetwin.data.alignment import apply_affine, crop_square, crop_transform, warp
        from facetwin.data.io import load_image

        try:
            image, _ = load_image(path)
        except FacetwinError:
            _LABEL_CACHE[key] = None
            return None
        lm = _annotated_landmarks(Path(path), image)
        if lm is None:
            _LABEL_CACHE[key] = None
        else:
            centre, side = crop_square(lm)
            A = crop_transform(centre, side, size)
            _LABEL_CACHE[key] = LabelledPhoto(person, Path(path), warp(image, A, size), apply_affine(A, lm))
    return _LABEL_CACHE[key]


# -- rendering -----------------------------------------------------------------------------------
class LikenessRenderer:
    """Textured, SH-lit renders of coarse parameters in the crop frame: the model layer's training
    render (:meth:`facetwin.models.coarse.CoarseModel.render`) at ``size``², with an albedo model."""

    def __init__(self, coarse_model, albedo_model=None, size: int = CROP_SIZE):
        from facetwin.models.coarse import CoarseModel

        self.model = coarse_model
        if albedo_model is None:
            from facetwin.appearance import load_albedo_model

            albedo_model = load_albedo_model()
        dev = next(coarse_model.encoder.parameters()).device
        # a view sharing the encoder and head model, with its own renderer at the crop size
        self.view = CoarseModel(coarse_model.encoder, coarse_model.head_model, albedo_model).to(dev)
        if not self.view.attach_renderer(size):
            raise FacetwinError(f"head model '{coarse_model.head_model.name}' has no UV layout: render likeness needs one")
        self.size = size
        self.last_fragments = None

    def render(self, params, shape: torch.Tensor | None = None, frontal: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """(image (B, 3, S, S) in [0, 1], mask (B, 1, S, S)). ``shape`` overrides β; ``frontal``:
        zero pose and expression (neutral), the camera of a zero encoder output."""
        from facetwin.networks.coarse_encoder import CoarseParams

        if frontal:
            enc = self.model.encoder
            B = params.shape.shape[0]
            ref = enc.decode(torch.zeros(1, enc.n_out, dtype=params.shape.dtype, device=params.shape.device))
            expr = params.expression.new_zeros(params.expression.shape)
            if enc.layout.expression_range is not None:
                expr = expr + enc.layout.expression_range[0]
            params = CoarseParams(shape=params.shape, expression=expr, pose=torch.zeros_like(params.pose), albedo=params.albedo,
                                  light=params.light, scale=ref.scale.expand(B), translation=ref.translation.expand(B, 2))
        image, mask, self.last_fragments = self.view.render(self.view.geometry(params, self.size, shape=shape))
        return image, mask

    def face_mask(self) -> torch.Tensor:
        """(B, 1, S, S) face-region pixels (no scalp, ears, neck) of the last render."""
        return self.view.face_region(self.last_fragments)


def _to_tensor(images: list[np.ndarray], device) -> torch.Tensor:
    return torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float().div(255).to(device)


def _to_uint8(x: torch.Tensor) -> np.ndarray:
    return (x.clamp(0, 1).permute(0, 2, 3, 1).cpu().numpy() * 255 + 0.5).astype(np.uint8)


# -- the benchmark -----------------------------------------------------------------------------
@torch.no_grad()
def evaluate_likeness(coarse_model, folder: str | Path, albedo_model=None, descriptor=None, picture: str | Path | None = None,
                      max_people: int = 0, picture_people: int = 10, batch_size: int = 16, progress: bool = True,
                      per_photo: bool = False, refine=None) -> dict:
    """The likeness figures (module docstring) of ``coarse_model`` on ``folder``.

    Args:
        coarse_model: a :class:`facetwin.models.coarse.CoarseModel`.
        albedo_model: default the shipped open albedo model; descriptor: default dlib's ResNet.
        picture: write a PNG: per person a photo, its composite render, the mean face's composite,
            and the neutral frontal reconstruction beside the neutral frontal mean face.
        max_people: only the first N people (0 = all).
        refine: a :class:`facetwin.models.refine.RefineSettings`: pose, expression and camera
            refined onto the annotator's points first, as inference does (β untouched, so the β
            figures do not change); None: the encoder's prediction (the training's evaluation).
    """
    from facetwin.losses.identity import default_descriptor, face_chips
    from facetwin.losses.perceptual import composite_render

    people = person_folders(folder)
    if max_people:
        people = people[:max_people]
    dev = next(coarse_model.encoder.parameters()).device
    descriptor = descriptor if descriptor is not None else default_descriptor(dev)
    rend = LikenessRenderer(coarse_model, albedo_model)
    items = [(name, p) for name, photos in people for p in photos]
    it = items
    if progress:
        from tqdm import tqdm

        it = tqdm(items, desc="label photos", file=sys.stderr, leave=False, mininterval=1.0)
    photos = [label_photo(name, p) for name, p in it]
    skipped = [str(p) for (name, p), ph in zip(items, photos) if ph is None]
    photos = [ph for ph in photos if ph is not None]
    if len({ph.person for ph in photos}) < 2:
        raise FacetwinError(f"fewer than two people with a usable face in {folder}")

    was_training = coarse_model.training
    coarse_model.eval()
    betas, d_photo, d_render, d_mean, d_render_face, d_mean_face = [], [], [], [], [], []
    fig_rows: dict[str, list[np.ndarray]] = {}
    starts = range(0, len(photos), batch_size)
    if progress:
        from tqdm import tqdm

        starts = tqdm(starts, desc="likeness", file=sys.stderr, leave=False)
    for s in starts:
        chunk = photos[s:s + batch_size]
        images = _to_tensor([ph.crop for ph in chunk], dev)
        lm = torch.from_numpy(np.stack([ph.landmarks for ph in chunk])).float().to(dev)
        params = coarse_model.predict(images).to(torch.float32)
        if refine is not None:
            from facetwin.models.refine import refine_to_landmarks

            params, _ = refine_to_landmarks(coarse_model.head_model, params, lm, images.shape[-1], refine)
        own, own_mask = rend.render(params)
        own_face = rend.face_mask()
        # the mean face (β = 0) placed by the same fit of its inner landmarks to the photo's
        # predicted ones as the own identity (CoarseModel.with_identity): a fair baseline for a
        # model whose camera was re-fitted to its β
        l2d = coarse_model.geometry(params, images.shape[-1]).landmarks2d
        mean_params = coarse_model.with_identity(params, -params.shape, l2d, images.shape[-1])
        mean, mean_mask = rend.render(mean_params)
        mean_face = rend.face_mask()
        comp_own = composite_render(own, images, own_mask)
        comp_mean = composite_render(mean, images, mean_mask)
        f_photo = descriptor(face_chips(images, lm))
        f_own = descriptor(face_chips(comp_own, lm))
        f_mean = descriptor(face_chips(comp_mean, lm))
        # the same with only the face region pasted (the photo's hair, ears and neck kept)
        f_own_face = descriptor(face_chips(composite_render(own, images, own_face), lm))
        f_mean_face = descriptor(face_chips(composite_render(mean, images, mean_face), lm))
        d_render_face.append((f_own_face - f_photo).norm(dim=-1).cpu().numpy())
        d_mean_face.append((f_mean_face - f_photo).norm(dim=-1).cpu().numpy())
        betas.append(params.shape.cpu().numpy())
        d_photo.append(f_photo.cpu().numpy())
        d_render.append((f_own - f_photo).norm(dim=-1).cpu().numpy())
        d_mean.append((f_mean - f_photo).norm(dim=-1).cpu().numpy())
        if picture is not None:
            first: dict[str, int] = {}
            for i, ph in enumerate(chunk):
                if ph.person not in fig_rows and ph.person not in first:
                    first[ph.person] = i
            first = list(first.values())
            if first and len(fig_rows) < picture_people:
                sel = first[: picture_people - len(fig_rows)]
                p_sel = params.index(torch.tensor(sel, device=dev))
                front, fm = rend.render(p_sel, frontal=True)
                front_mean, fmm = rend.render(p_sel, shape=torch.zeros_like(p_sel.shape), frontal=True)
                white = torch.ones_like(front)
                front = composite_render(front, white, fm)
                front_mean = composite_render(front_mean, white, fmm)
                cols = [images[sel], comp_own[sel], comp_mean[sel], front, front_mean]
                cols = [_to_uint8(c) for c in cols]
                for j, i in enumerate(sel):
                    fig_rows[chunk[i].person] = [c[j] for c in cols]
    coarse_model.train(was_training)

    beta = np.concatenate(betas)
    ids = np.array([ph.person for ph in photos])
    rd, md = np.concatenate(d_render), np.concatenate(d_mean)
    v_beta = verification(cosine_distances(beta), ids)
    v_photo = verification(euclidean_distances(np.concatenate(d_photo)), ids)
    out = {
        "folder": str(folder),
        "people": int(len(set(ids.tolist()))),
        "photos": int(len(photos)),
        "skipped": len(skipped),
        "beta_auc": v_beta["auc"],
        "nn_accuracy": v_beta["nn_accuracy"],
        "beta_within": v_beta["within"],
        "beta_between": v_beta["between"],
        "beta_norm": float(np.linalg.norm(beta, axis=1).mean()),
        "beta_shared_offset": shared_offset_fraction(beta),
        "beta_component_sd": float(beta.std(0).mean()),
        "render_distance": float(rd.mean()),
        "mean_face_render_distance": float(md.mean()),
        "render_gain": float((md - rd).mean()),
        "render_same_person_rate": float((rd < 0.6).mean()),
        "face_render_distance": float(np.concatenate(d_render_face).mean()),
        "mean_face_face_render_distance": float(np.concatenate(d_mean_face).mean()),
        "photo_descriptor_auc": v_photo["auc"],
        "photo_descriptor_nn_accuracy": v_photo["nn_accuracy"],
        "photo_descriptor_within": v_photo["within"],
        "photo_descriptor_between": v_photo["between"],
        "same_pairs": v_beta["same_pairs"],
        "different_pairs": v_beta["different_pairs"],
    }
    if per_photo:
        out["per_photo"] = [{"person": ph.person, "photo": str(ph.path), "render_distance": float(a), "mean_face_render_distance": float(b)}
                            for ph, a, b in zip(photos, rd, md)]
        out["skipped_photos"] = skipped
    if picture is not None and fig_rows:
        out["picture"] = str(likeness_picture(fig_rows, Path(picture)))
    return out


def likeness_picture(rows: dict[str, list[np.ndarray]], path: Path) -> Path:
    """PNG: one row per person — photo · own render composited · mean face composited · neutral
    frontal reconstruction · neutral frontal mean face — with a header line."""
    import cv2

    from facetwin.outputs import write_image
    from facetwin.rendering.visualize import image_grid

    header = ["photo", "own render", "mean face (b=0)", "own: neutral frontal", "mean: neutral frontal"]
    S = next(iter(rows.values()))[0].shape[0]
    head = []
    for text in header:
        tile = np.full((28, S, 3), 255, np.uint8)
        cv2.putText(tile, text, (4, 19), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
        head.append(tile)
    tiles = []
    for person, cols in rows.items():
        cols = [c.copy() for c in cols]
        cv2.putText(cols[0], person[:24], (3, S - 6), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 255, 255), 1, cv2.LINE_AA)
        tiles.extend(cols)
    body = image_grid(tiles, columns=len(header))
    top = image_grid(head, columns=len(header))
    width = max(body.shape[1], top.shape[1])
    pad = lambda im: np.pad(im, ((0, 0), (0, width - im.shape[1]), (0, 0)), constant_values=255)
    write_image(path, np.concatenate([pad(top), pad(body)], 0))
    return path
