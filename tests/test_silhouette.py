"""Silhouette vertices and landmark occlusion against analytic outlines."""

import math

import numpy as np
import torch

from facetwin.geometry.camera import PerspectiveCamera, project_orthographic
from facetwin.geometry.mesh import cylinder, uv_sphere
from facetwin.geometry.rotation import axis_angle_to_matrix
from facetwin.geometry.camera import orthographic_screen_vertices
from facetwin.rendering import landmark_normal_z, landmark_occluded, nearest_silhouette_vertex, silhouette_vertices
from facetwin.rendering.rasterizer import rasterize
from facetwin.rendering.silhouette import unoccluded_vertices


def _rotated(v, axis_angle):
    R = axis_angle_to_matrix(torch.tensor(axis_angle, dtype=v.dtype))
    return v @ R.T


def test_sphere_silhouette_is_the_circle_outline():
    v, f = uv_sphere(48, 96, dtype=torch.float64)
    vr = _rotated(v, [0.3, -0.5, 0.2])[None]
    s, t = 50.0, torch.tensor([[64.0, 64.0]], dtype=torch.float64)
    mask = silhouette_vertices(vr, f)[0]
    assert mask.sum() > 150
    p = project_orthographic(vr, torch.tensor([s], dtype=torch.float64), t)[0]
    r = (p - t[0]).norm(dim=-1)[mask] / s
    # Silhouette vertices sit within one ring spacing of the outline circle.
    assert r.max() <= 1 + 1e-9 and r.min() > math.cos(2.5 * math.pi / 48)
    # ... and all round it: no gap wider than 8 degrees.
    ang = torch.sort(torch.atan2(p[mask, 1] - t[0, 1], p[mask, 0] - t[0, 0])).values.numpy()
    gaps = np.diff(np.concatenate([ang, ang[:1] + 2 * np.pi]))
    assert np.degrees(gaps.max()) < 8
    # Vertices away from the outline never qualify.
    nz = torch.nn.functional.normalize(vr[0], dim=-1)[:, 2]
    assert not mask[nz.abs() > 0.2].any()


def test_cylinder_silhouette_is_two_lines():
    v, f = cylinder(64, 10, radius=0.5, height=2.0, dtype=torch.float64)
    # Spin about the axis, then tilt in the image plane: the outline stays two lines at ±r.
    vr = _rotated(_rotated(v, [0.0, 0.37, 0.0]), [0.0, 0.0, 0.25])[None]
    mask = silhouette_vertices(vr, f)[0]
    axis = torch.tensor([-math.sin(0.25), math.cos(0.25)], dtype=torch.float64)
    xy = vr[0, :, :2]
    dist = xy[:, 0] * axis[1] - xy[:, 1] * axis[0]  # signed distance from the axis line
    d = dist[mask].abs()
    assert d.max() <= 0.5 + 1e-9 and d.min() > 0.5 * math.cos(2 * math.pi / 64)
    # Both sides, every ring of the cylinder.
    rings = torch.arange(v.shape[0]) // 64
    for side in (1, -1):
        hit = mask & (torch.sign(dist) == side)
        assert set(rings[hit].tolist()) == set(range(11))


def test_candidates_restrict_the_mask_and_perspective_view_directions():
    v, f = uv_sphere(24, 48, dtype=torch.float64)
    vb = v[None]
    full = silhouette_vertices(vb, f)
    cand = v[:, 1] > 0
    part = silhouette_vertices(vb, f, candidates=cand)
    assert torch.equal(part, full & cand[None]) and 0 < part.sum() < full.sum()
    # A close perspective camera sees less than a hemisphere: the outline moves towards it.
    cam = PerspectiveCamera.looking_at_face(3.0, 100.0, 64, 64, dtype=torch.float64)
    persp = silhouette_vertices(vb, f, view_directions=cam.view_directions(vb))[0]
    z = v[persp, 2]
    # Tangent points from a camera at distance 3 satisfy z = 1/3 on the unit sphere.
    assert (z - 1 / 3).abs().max() < 0.15 and (z > 0.15).all()


def test_landmark_normal_z_and_occlusion_on_a_sphere():
    v, f = uv_sphere(32, 64, dtype=torch.float64)
    g = torch.Generator().manual_seed(0)
    lf = torch.randint(0, f.shape[0], (40,), generator=g)
    bary = torch.rand(40, 3, dtype=torch.float64, generator=g)
    bary = bary / bary.sum(-1, keepdim=True)
    vr = _rotated(v, [0.2, 0.9, 0.0])[None].requires_grad_()
    nz = landmark_normal_z(vr, f, lf, bary)
    pts = (vr[0][f[lf]] * bary[..., None]).sum(1)
    expected = torch.nn.functional.normalize(pts, dim=-1)[:, 2]
    assert (nz[0] - expected).abs().max() < 0.03 and (nz[0] - expected).abs().mean() < 0.005  # tessellation
    assert torch.equal(landmark_occluded(vr, f, lf, bary)[0], nz[0] < 0)
    nz.sum().backward()
    assert torch.isfinite(vr.grad).all() and vr.grad.abs().sum() > 0


def test_nearest_silhouette_vertex_is_the_brute_force_l1_nearest():
    g = torch.Generator().manual_seed(1)
    proj = torch.rand(2, 30, 2, generator=g) * 100
    mask = torch.rand(2, 30, generator=g) > 0.6
    mask[1] = False
    targets = torch.rand(2, 5, 2, generator=g) * 100
    idx = nearest_silhouette_vertex(proj, mask, targets)
    for k in range(5):
        d = (proj[0] - targets[0, k]).abs().sum(-1)  # L1: Eq. 1's d
        d[~mask[0]] = float("inf")
        assert idx[0, k] == d.argmin()
    assert (idx[1] == -1).all()


def test_unoccluded_vertices_drop_the_outline_hidden_behind_a_nearer_sphere():
    # A unit sphere and, nearer the camera, a 0.6 sphere overlapping its right half on the image.
    v, f = uv_sphere(48, 96, dtype=torch.float64)
    front_centre = torch.tensor([0.8, 0.0, 2.0], dtype=torch.float64)
    verts = torch.cat([v, 0.6 * v + front_centre])[None]
    faces = torch.cat([f, f + v.shape[0]])
    s, t = torch.tensor([30.0], dtype=torch.float64), torch.tensor([[64.0, 64.0]], dtype=torch.float64)
    outline = silhouette_vertices(verts, faces)[0]
    screen = orthographic_screen_vertices(verts, s, t)
    seen = unoccluded_vertices(screen, faces, 128, 0.01 * s)[0]
    # a back-face-culled rasterisation (the training render's) gives the same answer
    culled = rasterize(screen, faces, 128, cull_backfaces=True)
    assert torch.equal(unoccluded_vertices(screen, faces, 128, 0.01 * s, fragments=culled)[0], seen)
    back = torch.arange(verts.shape[1]) < v.shape[0]
    r = (verts[0, :, :2] - front_centre[:2]).norm(dim=-1)  # image distance from the front disc's centre
    # The back sphere's outline inside the front disc is hidden, outside it is seen (2 px margin).
    assert (outline & back & (r < 0.53)).sum() > 10 and not (seen & outline & back & (r < 0.53)).any()
    assert (seen[outline & back & (r > 0.67)]).all()
    # Nothing hides the front sphere; the back sphere's front-facing cap outside the disc is seen.
    assert seen[~back].float().mean() > 0.49 and seen[~back & (verts[0, :, 2] > 2.0)].all()
    cap = back & (verts[0, :, 2] > 0.2) & (r > 0.67)
    assert seen[cap].all() and not seen[back & (verts[0, :, 2] < -0.5)].any()  # its far side is hidden
