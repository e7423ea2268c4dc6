"""Cameras and THE image convention of facetwin.

Image convention (every stage uses it)
--------------------------------------
* Pixel coordinates ``(x, y)`` in pixels of the image (or crop) being compared against,
  origin at the **top-left corner of the top-left pixel**, x to the right, y **down**.
  Pixel ``(row i, column j)`` covers ``[j, j+1) × [i, i+1)``; its centre is ``(j + 0.5, i + 0.5)``.
  Landmarks read from 1-based iBUG/300-W ``.pts`` files become comparable after subtracting 1
  (the .pts convention puts the centre of the top-left pixel at (1, 1), i.e. at (0, 0) after
  the shift; the half-pixel difference to the corner origin is within annotation noise and is
  deliberately not applied).
* Model frame (FLAME's): metres, y up, z out of the face (towards a frontal camera), x towards
  the subject's left (the viewer's right).
* Depth for visibility: **larger screen z = closer to the camera**.

Orthographic camera (the paper's ``u = s Π(v) + t``)
----------------------------------------------------
``Π(x, y, z) = (x, -y)`` (the flip turns model y-up into image y-down), so

    u_x = s * x + t_x,     u_y = -s * y + t_y,     screen z = s * z

with ``s`` in pixels per metre and ``t`` in pixels. A frontal face seen with this camera has
the subject's left on the image right, like a photo. ``screen z = s z`` keeps the depth in the
same pixel units as x and y.

Perspective camera (OpenCV pinhole)
-----------------------------------
``x_cam = R v + t`` with the OpenCV camera frame (x right, y down, z forward, the camera looks
along +z), ``u = K x_cam / z_cam``. A model facing the camera therefore has
``R ≈ diag(1, -1, -1)``. Screen z is ``1 / z_cam``: it is affine in screen space (so the
rasteriser can interpolate it linearly) and larger = closer, the same rule as above.

Triangle winding: faces are counter-clockwise seen from outside (normals point outwards). In
either camera a triangle facing the camera then has a **negative** signed image area
``(x1-x0)(y2-y0) - (x2-x0)(y1-y0)`` because the image y axis points down.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


def project_orthographic(vertices: torch.Tensor, scale: torch.Tensor, translation: torch.Tensor) -> torch.Tensor:
    """Image coordinates ``u = s Π(v) + t`` of model points.

    Args:
        vertices: (B, V, 3) model-frame points (y up).
        scale: (B,) or (B, 1) pixels per model unit.
        translation: (B, 2) pixels.
    Returns:
        (B, V, 2) pixel coordinates (x right, y down, origin at the top-left pixel corner).
    """
    s = scale.reshape(-1, 1, 1)
    xy = torch.stack([vertices[..., 0], -vertices[..., 1]], -1)
    return s * xy + translation[:, None, :]


def orthographic_screen_vertices(vertices: torch.Tensor, scale: torch.Tensor, translation: torch.Tensor) -> torch.Tensor:
    """Screen-space vertices for :func:`facetwin.rendering.rasterize`: (B, V, 3) = (u_x, u_y, s z)."""
    uv = project_orthographic(vertices, scale, translation)
    return torch.cat([uv, scale.reshape(-1, 1, 1) * vertices[..., 2:3]], -1)


def orthographic_view_directions(vertices: torch.Tensor) -> torch.Tensor:
    """Unit directions from the surface towards an orthographic camera: +z everywhere, (B, V, 3)."""
    d = torch.zeros_like(vertices)
    d[..., 2] = 1
    return d


def intrinsics(focal: float | torch.Tensor, width: int, height: int, **tensor_kwargs) -> torch.Tensor:
    """A (3, 3) pinhole matrix with the principal point at the image centre (focal in pixels)."""
    f = torch.as_tensor(focal, **tensor_kwargs)
    K = torch.zeros(3, 3, **tensor_kwargs)
    K[0, 0] = f
    K[1, 1] = f
    K[0, 2] = width / 2
    K[1, 2] = height / 2
    K[2, 2] = 1
    return K


@dataclass
class PerspectiveCamera:
    """OpenCV pinhole camera ``u = K (R v + t) / z``.

    Attributes:
        K: (B, 3, 3) intrinsics in pixels (principal point in the corner-origin convention).
        R: (B, 3, 3) model → camera rotation.
        t: (B, 3) model → camera translation (same units as the model).
    """

    K: torch.Tensor
    R: torch.Tensor
    t: torch.Tensor

    def to_camera(self, vertices: torch.Tensor) -> torch.Tensor:
        """(B, V, 3) model points → (B, V, 3) camera-frame points (z forward)."""
        return vertices @ self.R.transpose(1, 2) + self.t[:, None, :]

    def project(self, vertices: torch.Tensor) -> torch.Tensor:
        """(B, V, 3) model points → (B, V, 2) pixel coordinates."""
        cam = self.to_camera(vertices)
        return _pinhole(cam, self.K)

    def screen_vertices(self, vertices: torch.Tensor, near: float = 1e-4) -> torch.Tensor:
        """(B, V, 3) = (u_x, u_y, 1 / z_cam) for :func:`facetwin.rendering.rasterize`
        (use ``perspective_correct=True``). Points closer than ``near`` get screen z = -inf-like
        (a negative value), which the rasteriser treats as behind the camera."""
        cam = self.to_camera(vertices)
        z = cam[..., 2:3]
        inv_z = torch.where(z > near, 1.0 / z.clamp_min(near), torch.full_like(z, -1.0))
        return torch.cat([_pinhole(cam, self.K), inv_z], -1)

    def view_directions(self, vertices: torch.Tensor) -> torch.Tensor:
        """(B, V, 3) unit directions (model frame) from each point towards the camera centre."""
        centre = -(self.R.transpose(1, 2) @ self.t[..., None])[..., 0]  # (B, 3)
        d = centre[:, None, :] - vertices
        return d / d.norm(dim=-1, keepdim=True).clamp_min(1e-12)

    @staticmethod
    def looking_at_face(distance: float, focal: float, width: int, height: int, batch: int = 1, **tensor_kwargs) -> "PerspectiveCamera":
        """A camera on the model's +z axis at ``distance`` looking at the origin (frontal view)."""
        K = intrinsics(focal, width, height, **tensor_kwargs).expand(batch, 3, 3).clone()
        R = torch.diag(torch.tensor([1.0, -1.0, -1.0], **tensor_kwargs)).expand(batch, 3, 3).clone()
        t = torch.tensor([0.0, 0.0, distance], **tensor_kwargs).expand(batch, 3).clone()
        return PerspectiveCamera(K, R, t)


def _pinhole(cam: torch.Tensor, K: torch.Tensor) -> torch.Tensor:
    z = cam[..., 2:3]
    z = torch.where(z.abs() < 1e-12, torch.full_like(z, 1e-12), z)
    xy = cam[..., :2] / z
    fx, fy = K[:, 0, 0, None], K[:, 1, 1, None]
    cx, cy, skew = K[:, 0, 2, None], K[:, 1, 2, None], K[:, 0, 1, None]
    return torch.stack([fx * xy[..., 0] + skew * xy[..., 1] + cx, fy * xy[..., 1] + cy], -1)
