"""One face as an exportable asset: a mesh split at its UV seams, morph targets, skin, textures.

Formats that store one UV per vertex (glTF, trimesh's OBJ) need the head model's vertices
duplicated where the UV layout has a seam; :func:`split_uv_seams` does that once and every
per-vertex array (positions, normals, expression deltas, skin weights) is indexed through it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from facetwin.headmodel.data import JOINT_NAMES, PARENTS, HeadModelData


@dataclass
class SeamSplit:
    """The head model's mesh with one UV per vertex.

    Attributes:
        source: (N,) index of the head-model vertex each split vertex copies.
        uv: (N, 2) UV of each split vertex ([0, 1]², v up).
        faces: (F, 3) triangles into the split vertices (same order as the head model's).
    """

    source: np.ndarray
    uv: np.ndarray
    faces: np.ndarray


def split_uv_seams(faces: np.ndarray, uv_coords: np.ndarray, uv_faces: np.ndarray) -> SeamSplit:
    """One split vertex per distinct (vertex, UV corner) pair used by a triangle corner."""
    pairs = np.stack([np.asarray(faces).reshape(-1), np.asarray(uv_faces).reshape(-1)], 1)
    unique, inverse = np.unique(pairs, axis=0, return_inverse=True)
    return SeamSplit(source=unique[:, 0].astype(np.int64), uv=np.asarray(uv_coords, np.float32)[unique[:, 1]],
                     faces=inverse.reshape(-1, 3).astype(np.int64))


def smooth_normals(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """(V, 3) area-weighted unit vertex normals of the welded mesh (so seams stay invisible);
    the same rule as :func:`facetwin.geometry.mesh.vertex_normals`, in numpy for export's many calls."""
    v = np.asarray(vertices, np.float64)
    f = np.asarray(faces, np.int64)
    fn = np.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]])  # length = 2 × area
    idx = f.reshape(-1)
    n = np.stack([np.bincount(idx, np.repeat(fn[:, c], 3), minlength=len(v)) for c in range(3)], 1)
    return (n / np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-20)).astype(np.float32)


def uv_tangents(vertices: np.ndarray, faces: np.ndarray, uv: np.ndarray, uv_faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per UV corner, the (len(uv), 3) sums of each triangle's dP/du and dP/dv (positions
    ``vertices`` (V, 3) metres, ``uv`` (U, 2) with v up) over the triangles using that corner:
    the unnormalised tangent and bitangent of a tangent-space normal map (the per-vertex frame
    MikkTSpace-style clients derive; the bake and the GLB's TANGENT share it)."""
    V = np.asarray(vertices, np.float64)
    f, uvf, t = np.asarray(faces, np.int64), np.asarray(uv_faces, np.int64), np.asarray(uv, np.float64)
    e1, e2 = V[f[:, 1]] - V[f[:, 0]], V[f[:, 2]] - V[f[:, 0]]
    d1, d2 = t[uvf[:, 1]] - t[uvf[:, 0]], t[uvf[:, 2]] - t[uvf[:, 0]]
    det = d1[:, 0] * d2[:, 1] - d2[:, 0] * d1[:, 1]
    r = np.where(np.abs(det) > 1e-20, 1.0 / np.where(det == 0, 1, det), 0.0)[:, None]
    tan_f = (e1 * d2[:, 1:2] - e2 * d1[:, 1:2]) * r
    bit_f = (e2 * d1[:, 0:1] - e1 * d2[:, 0:1]) * r
    tan_c, bit_c = np.zeros((len(t), 3)), np.zeros((len(t), 3))
    for k in range(3):
        np.add.at(tan_c, uvf[:, k], tan_f)
        np.add.at(bit_c, uvf[:, k], bit_f)
    return tan_c, bit_c


def vertex_tangents(normals: np.ndarray, tangent: np.ndarray, bitangent: np.ndarray) -> np.ndarray:
    """(N, 4) glTF TANGENT: ``tangent`` made orthogonal to the unit ``normals`` and unit length,
    w = ±1 so that normal × tangent · w points along ``bitangent`` (glTF's rule). Where the UVs give
    no tangent (degenerate UV triangles), any unit vector orthogonal to the normal."""
    n = np.asarray(normals, np.float64)
    t = np.asarray(tangent, np.float64)
    t = t - (t * n).sum(1, keepdims=True) * n
    bad = np.linalg.norm(t, axis=1) < 1e-9
    if bad.any():
        ref = np.where(np.abs(n[bad, 0:1]) < 0.9, [[1.0, 0.0, 0.0]], [[0.0, 1.0, 0.0]])
        t[bad] = np.cross(n[bad], ref)
    t /= np.linalg.norm(t, axis=1, keepdims=True).clip(1e-12)
    w = np.where((np.cross(n, t) * bitangent).sum(1) < 0, -1.0, 1.0)
    return np.concatenate([t, w[:, None]], 1).astype(np.float32)


@dataclass
class FaceAsset:
    """Everything a rigged export holds. N split vertices, K expressions, J = 5 joints; metres.

    ``positions`` is the rest pose with the person's identity and a neutral expression; the
    reconstructed face is ``positions + Σ_k weights_k · morph_positions_k``, then skinned with
    ``pose`` (the glTF rule: morph targets first, then the skin).
    """

    positions: np.ndarray          # (N, 3) neutral rest pose
    normals: np.ndarray            # (N, 3)
    uv: np.ndarray                 # (N, 2), v up
    faces: np.ndarray              # (F, 3)
    source: np.ndarray             # (N,) head-model vertex of each split vertex
    morph_names: tuple[str, ...]   # (K,) ARKit names for the open model
    morph_positions: np.ndarray    # (K, N, 3) per-expression offsets
    morph_normals: np.ndarray      # (K, N, 3) per-expression normal offsets
    weights: np.ndarray            # (K,) default weights (the reconstructed expression)
    joint_names: tuple[str, ...]   # (J,)
    joint_parents: tuple[int, ...]  # (J,) -1 for the root
    joints: np.ndarray             # (J, 3) rest joint positions (world)
    skin_joints: np.ndarray        # (N, 4) joint indices, most influential first
    skin_weights: np.ndarray       # (N, 4) float32, rows sum to 1
    pose: np.ndarray               # (J, 3) axis-angle of each joint (local), radians
    textures: dict[str, np.ndarray] = field(default_factory=dict)  # "base_color" (S, S, 3|4), "normal" (S, S, 3) uint8
    extras: dict = field(default_factory=dict)

    @property
    def n_vertices(self) -> int:
        return int(self.positions.shape[0])


def build_face_asset(data: HeadModelData, shape: np.ndarray | None = None, expression: np.ndarray | None = None,
                     pose: np.ndarray | None = None, textures: dict | None = None, extras: dict | None = None) -> FaceAsset:
    """The asset of one face of a head model.

    Args:
        data: the head model (needs a UV layout).
        shape: (n_shape',) identity β (leading components; zeros when None).
        expression: (n_expr',) expression ψ, the default morph weights (zeros when None).
        pose: (5, 3) axis-angle per joint [global, neck, jaw, eye_left, eye_right] (zeros when None).
        textures: ``{"base_color": (S, S, 3|4) uint8, "normal": (S, S, 3) uint8}``, row 0 = v 1.
    """
    if data.uv_coords is None or data.uv_faces is None:
        from facetwin.errors import FacetwinError

        raise FacetwinError(f"head model '{data.name}' has no UV layout: it cannot be exported with textures")
    beta = np.zeros(data.n_shape, np.float32)
    psi = np.zeros(data.n_expr, np.float32)
    if shape is not None:
        s = np.asarray(shape, np.float32).reshape(-1)
        beta[: len(s)] = s
    if expression is not None:
        e = np.asarray(expression, np.float32).reshape(-1)
        psi[: len(e)] = e
    theta = np.zeros((len(JOINT_NAMES), 3), np.float32) if pose is None else np.asarray(pose, np.float32).reshape(len(JOINT_NAMES), 3)

    rest = data.v_template + np.einsum("vcs,s->vc", data.shapedirs, beta)
    # Joints with the reconstructed expression: glTF morph targets cannot move joints (FLAME's
    # jaw joint depends on ψ; the open model's does not).
    joints = data.j_template + np.einsum("jcs,s->jc", data.j_shapedirs, beta) + np.einsum("jce,e->jc", data.j_exprdirs, psi)
    split = split_uv_seams(data.faces, data.uv_coords, data.uv_faces)
    base_normals = smooth_normals(rest, data.faces)
    morph_pos = np.transpose(data.exprdirs, (2, 0, 1)).astype(np.float32)  # (K, V, 3)
    morph_nrm = np.stack([smooth_normals(rest + d, data.faces) - base_normals for d in morph_pos])
    skin_j, skin_w = _top4(np.asarray(data.lbs_weights, np.float32))
    names = tuple(data.expression_names) or tuple(f"expression_{k:02d}" for k in range(data.n_expr))
    src = split.source
    return FaceAsset(
        positions=rest[src].astype(np.float32), normals=base_normals[src], uv=split.uv, faces=split.faces, source=src,
        morph_names=names, morph_positions=morph_pos[:, src], morph_normals=morph_nrm[:, src].astype(np.float32),
        weights=psi, joint_names=tuple(JOINT_NAMES), joint_parents=tuple(PARENTS), joints=joints.astype(np.float32),
        skin_joints=skin_j[src], skin_weights=skin_w[src], pose=theta, textures=dict(textures or {}),
        extras=dict(extras or {}),
    )


def _top4(weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(V, J) skinning weights → the 4 largest per vertex (indices (V, 4), weights (V, 4) summing
    to 1; unused slots have weight 0 and joint 0). Exact for the open model (≤ 3 influences)."""
    J = weights.shape[1]
    if J < 4:
        weights = np.concatenate([weights, np.zeros((len(weights), 4 - J), np.float32)], 1)
    order = np.argsort(-weights, axis=1, kind="stable")[:, :4]
    w = np.take_along_axis(weights, order, 1).astype(np.float64)
    w[w < 1e-6] = 0
    w /= w.sum(1, keepdims=True)
    order = np.where(w > 0, order, 0)
    w32 = w.astype(np.float32)
    w32[:, 0] += 1.0 - w32.sum(1)  # float32 rows that sum to 1 up to rounding of the last bit
    return order.astype(np.uint8 if J < 256 else np.uint16), w32


# Where export layouts put the eyeballs: one disc per eye in an empty part of the open head
# model's UV square (its own layout clips the eyeballs into a sliver shared with other islands).
EYE_SQUARES = {"eye_left": (0.13, 0.72), "eye_right": (0.13, 0.47)}  # (u, v) centres
EYE_HALF = 0.1  # half side of each square in UV units


def export_layout(data: HeadModelData) -> HeadModelData:
    """A copy of ``data`` whose eyeball triangles get their own UV discs (front view of each
    eyeball, iris at the centre; :data:`EYE_SQUARES`) so exported eyes can carry an eye texture
    and the photo's eyes. Everything else is unchanged; ``data`` itself is not modified."""
    import dataclasses

    if data.uv_coords is None or "eyeballs" not in data.masks or data.meta.get("export_layout"):
        return data
    eyes = np.asarray(data.masks["eyeballs"], bool)
    tri = eyes[data.faces].all(1)
    if not tri.any():
        return data
    v = data.v_template
    corner = np.full(data.n_vertices, -1, np.int64)
    new_uv = []
    for side, on_side in (("eye_left", v[:, 0] > 0), ("eye_right", v[:, 0] <= 0)):  # +x = the subject's left
        ids = np.flatnonzero(eyes & on_side)
        if not len(ids):
            continue
        centre = v[ids, :2].mean(0)
        radius = max(float(np.linalg.norm(v[ids, :2] - centre, axis=1).max()), 1e-9)
        cu, cv = EYE_SQUARES[side]
        uv = np.stack([cu + (v[ids, 0] - centre[0]) / radius * EYE_HALF, cv + (v[ids, 1] - centre[1]) / radius * EYE_HALF], 1)
        corner[ids] = len(data.uv_coords) + sum(len(a) for a in new_uv) + np.arange(len(ids))
        new_uv.append(uv.astype(np.float32))
    uv_faces = np.array(data.uv_faces, copy=True)
    uv_faces[tri] = corner[data.faces[tri]]
    meta = dict(data.meta, export_layout="eyeballs in their own UV discs (facetwin.export.asset.export_layout)")
    return dataclasses.replace(data, uv_coords=np.concatenate([data.uv_coords, *new_uv]).astype(np.float32), uv_faces=uv_faces,
                               meta=meta)


def paint_eyes(texture: np.ndarray) -> np.ndarray:
    """(S, S, 3) uint8 texture with a plain eye (sclera, iris, pupil) painted into the eyeball
    discs of :func:`export_layout` — the fallback where the photo did not see the eye."""
    S = texture.shape[0]
    out = np.array(texture, copy=True)
    rows, cols = np.mgrid[0:S, 0:S]
    u, vv = (cols + 0.5) / S, 1 - (rows + 0.5) / S
    for cu, cv in EYE_SQUARES.values():
        r = np.hypot(u - cu, vv - cv) / EYE_HALF  # 1 = the eyeball's outline seen from the front
        out[r <= 1.05] = (222, 214, 206)  # sclera
        out[r <= 0.42] = (92, 66, 46)     # iris
        out[r <= 0.17] = (18, 14, 12)     # pupil
    return out
