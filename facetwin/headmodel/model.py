"""The head model as a differentiable torch module (identity, expression, pose → mesh)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from facetwin.geometry.skinning import linear_blend_skinning
from facetwin.headmodel.data import JOINT_NAMES, PARENTS, HeadModelData


@dataclass
class HeadOutput:
    vertices: torch.Tensor   # (B, V, 3) posed vertices
    joints: torch.Tensor     # (B, 5, 3) posed joints
    landmarks: torch.Tensor  # (B, 68, 3) posed 3D landmarks


def interpolate_on_faces(vertices: torch.Tensor, faces: torch.Tensor, face_idx: torch.Tensor, bary: torch.Tensor) -> torch.Tensor:
    """Points given by (triangle, barycentric) on a batch of meshes.

    Args:
        vertices: (B, V, 3); faces: (F, 3); face_idx: (..., ) triangle ids; bary: (..., 3).
    Returns:
        (B, ..., 3)
    """
    corners = vertices[:, faces[face_idx]]  # (B, ..., 3 corners, 3)
    return (corners * bary.to(vertices.dtype)[None, ..., None]).sum(-2)


class HeadModel(nn.Module):
    """FLAME-like linear head model with linear blend skinning.

    ``forward(shape (B, n_shape), expression (B, n_expr), pose (B, 5, 3), translation (B, 3))``.
    Joint order of ``pose``: global, neck, jaw, eye_left, eye_right (axis-angle, radians).
    Works for any batch size, device and float dtype (``model.to(...)``); differentiable in
    every input.
    """

    joint_names = JOINT_NAMES

    def __init__(self, data: HeadModelData):
        super().__init__()
        data.validate()
        self.data = data
        self.name = data.name
        self.n_shape = data.n_shape
        self.n_expr = data.n_expr
        self.n_joints = len(JOINT_NAMES)
        self.parents = list(PARENTS)
        self.expression_range = data.expression_range
        f32 = lambda a: torch.as_tensor(np.asarray(a, np.float32))  # noqa: E731
        i64 = lambda a: torch.as_tensor(np.asarray(a, np.int64))  # noqa: E731
        V = data.n_vertices
        self.register_buffer("v_template", f32(data.v_template))
        self.register_buffer("faces", i64(data.faces))
        # Bases flattened to (n, V*3) so the blend is one matmul.
        self.register_buffer("shapedirs", f32(data.shapedirs).reshape(V * 3, -1).T.contiguous())
        self.register_buffer("exprdirs", f32(data.exprdirs).reshape(V * 3, -1).T.contiguous())
        self.register_buffer("j_template", f32(data.j_template))
        self.register_buffer("j_shapedirs", f32(data.j_shapedirs).reshape(15, -1).T.contiguous())
        self.register_buffer("j_exprdirs", f32(data.j_exprdirs).reshape(15, -1).T.contiguous())
        self.register_buffer("lbs_weights", f32(data.lbs_weights))
        self.register_buffer("posedirs", f32(data.posedirs) if data.posedirs is not None else None)
        self.register_buffer("landmark_faces", i64(data.landmark_faces))
        self.register_buffer("landmark_bary", f32(data.landmark_bary))
        # The landmarks' corner vertices alone (the model's rows of them), for :meth:`landmarks`:
        # skinning is per vertex, so posing these few gives the landmarks the full mesh would.
        corners = np.asarray(data.faces, np.int64)[np.asarray(data.landmark_faces, np.int64)]  # (68, 3)
        used, local = np.unique(corners, return_inverse=True)
        cols = (used[:, None] * 3 + np.arange(3)).reshape(-1)
        self.register_buffer("_lmk_corners", i64(local.reshape(corners.shape)), persistent=False)
        self.register_buffer("_lmk_template", self.v_template[used].clone(), persistent=False)
        self.register_buffer("_lmk_shapedirs", self.shapedirs[:, cols].contiguous(), persistent=False)
        self.register_buffer("_lmk_exprdirs", self.exprdirs[:, cols].contiguous(), persistent=False)
        self.register_buffer("_lmk_lbs_weights", self.lbs_weights[used].clone(), persistent=False)
        self.register_buffer("_lmk_posedirs", None if self.posedirs is None else self.posedirs[:, cols].contiguous(), persistent=False)

    def _buf(self, name: str, dtype: torch.dtype) -> torch.Tensor | None:
        t = getattr(self, name)
        return None if t is None else t.to(dtype)

    def rest_shape(self, shape: torch.Tensor, expression: torch.Tensor, prefix: str = "") -> tuple[torch.Tensor, torch.Tensor]:
        """Unposed vertices (B, V, 3) and joints (B, 5, 3) for β (B, n_shape) and ψ (B, n_expr)
        (``prefix="_lmk_"``: only the landmarks' corner vertices, see :meth:`landmarks`)."""
        B, dtype = shape.shape[0], shape.dtype
        offsets = shape @ self._buf(prefix + "shapedirs", dtype) + expression @ self._buf(prefix + "exprdirs", dtype)
        vertices = self._buf(prefix + "template" if prefix else "v_template", dtype) + offsets.reshape(B, -1, 3)
        j_offsets = shape @ self._buf("j_shapedirs", dtype) + expression @ self._buf("j_exprdirs", dtype)
        joints = self._buf("j_template", dtype) + j_offsets.reshape(B, 5, 3)
        return vertices, joints

    def forward(
        self,
        shape: torch.Tensor | None = None,
        expression: torch.Tensor | None = None,
        pose: torch.Tensor | None = None,
        translation: torch.Tensor | None = None,
        batch_size: int | None = None,
    ) -> HeadOutput:
        """Posed mesh, joints and 68 landmarks. Missing inputs are zeros.

        Args:
            shape: (B, n_shape) identity β.
            expression: (B, n_expr) expression ψ.
            pose: (B, 5, 3) axis-angle [global, neck, jaw, eye_left, eye_right].
            translation: (B, 3), added after posing.
        """
        ref = next((t for t in (shape, expression, pose, translation) if t is not None), None)
        B = ref.shape[0] if ref is not None else (batch_size or 1)
        dtype = ref.dtype if ref is not None else self.v_template.dtype
        device = self.v_template.device
        zeros = lambda *s: torch.zeros(*s, dtype=dtype, device=device)  # noqa: E731
        shape = zeros(B, self.n_shape) if shape is None else shape
        expression = zeros(B, self.n_expr) if expression is None else expression
        pose = zeros(B, self.n_joints, 3) if pose is None else pose
        rest, joints = self.rest_shape(shape, expression)
        vertices, posed_joints = linear_blend_skinning(
            rest, joints, pose, self._buf("lbs_weights", dtype), self.parents, self._buf("posedirs", dtype)
        )
        if translation is not None:
            vertices = vertices + translation[:, None]
            posed_joints = posed_joints + translation[:, None]
        landmarks = interpolate_on_faces(vertices, self.faces, self.landmark_faces, self.landmark_bary)
        return HeadOutput(vertices=vertices, joints=posed_joints, landmarks=landmarks)

    def landmarks(self, shape: torch.Tensor, expression: torch.Tensor, pose: torch.Tensor) -> torch.Tensor:
        """The 68 posed 3D landmarks (B, 68, 3) metres of :meth:`forward` (all three inputs given),
        from the vertices they sit on instead of the whole mesh (1.5–2.5× faster at batch 1, and no
        normals: 5–6× faster than the coarse model's full geometry) where only the landmarks are
        needed (a camera fit, a descriptor chip). Differentiable in every input."""
        dtype = shape.dtype
        rest, joints = self.rest_shape(shape, expression, prefix="_lmk_")
        posed, _ = linear_blend_skinning(rest, joints, pose, self._buf("_lmk_lbs_weights", dtype), self.parents,
                                         self._buf("_lmk_posedirs", dtype))
        corners = posed[:, self._lmk_corners]  # (B, 68, 3 corners, 3)
        return (corners * self.landmark_bary.to(dtype)[None, ..., None]).sum(-2)

    def landmarks_from_vertices(self, vertices: torch.Tensor) -> torch.Tensor:
        """(B, V, 3) → (B, 68, 3) with this model's embedding."""
        return interpolate_on_faces(vertices, self.faces, self.landmark_faces, self.landmark_bary)
