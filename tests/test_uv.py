"""UV-space operations: attribute maps, unwrapping, displacement, detail normals."""

import math

import numpy as np
import torch

from facetwin.geometry.camera import orthographic_screen_vertices
from facetwin.geometry.mesh import spherical_uv_layout, uv_sphere, vertex_normals
from facetwin.rendering import MeshRenderer, UVMapper


def _sphere(n_lat=32, n_lon=64, dtype=torch.float64):
    v, f = uv_sphere(n_lat, n_lon, dtype=dtype)
    uv, uvf = spherical_uv_layout(v, f)
    return v, f, uv, uvf


def _texel_uv(S):
    ys, xs = np.mgrid[0:S, 0:S] + 0.5
    return xs / S, 1 - ys / S


def test_position_map_lies_on_the_sphere_where_the_uv_says():
    v, f, uv, uvf = _sphere()
    S = 64
    uvm = UVMapper(f, uv, uvf, S)
    m = uvm.mask[0, 0].numpy() > 0
    assert m.mean() > 0.97  # the equirectangular layout fills the square
    pos = uvm.attribute_map(v[None])[0].permute(1, 2, 0).numpy()
    u, vv = _texel_uv(S)
    lat = math.pi * (vv - 0.5)
    lon = 2 * math.pi * (u - 0.5)
    expected = np.stack([np.cos(lat) * np.sin(lon), np.sin(lat), np.cos(lat) * np.cos(lon)], -1)
    err = np.linalg.norm(pos - expected, axis=-1)[m]
    assert np.median(err) < 0.01 and err.max() < 0.06  # chords of a 32×64 tessellation


def test_vertex_values_round_trip_and_gradients():
    v, f, uv, uvf = _sphere(16, 32)
    uvm = UVMapper(f, uv, uvf, 128)
    attr = (v[:, :1] * 0.5 + v[:, 1:2] ** 2)[None]  # smooth per-vertex scalar
    back = uvm.vertex_values(uvm.attribute_map(attr))
    # Poles squeeze a whole row of UV space into one vertex: compare away from them.
    keep = v[:, 1].abs() < 0.95
    assert (back - attr)[0, keep].abs().max() < 0.02
    a = torch.randn(1, v.shape[0], 2, dtype=torch.float64, requires_grad=True)
    small = UVMapper(f, uv, uvf, 16)
    assert torch.autograd.gradcheck(small.attribute_map, (a,), fast_mode=True)


def test_unwrap_then_render_reproduces_the_visible_texture():
    v, f, uv, uvf = _sphere(48, 96)
    S, H = 128, 160
    uu, vv = _texel_uv(S)
    texture = np.stack([0.5 + 0.4 * np.sin(2 * math.pi * uu), 0.5 + 0.4 * np.cos(2 * math.pi * vv), 0.5 + 0.3 * np.sin(2 * math.pi * (uu + vv))], 0)
    texture = torch.tensor(texture[None])
    # Rotate the sphere so that the seam is not in view.
    ang = 0.4
    rot = torch.tensor([[math.cos(ang), 0, math.sin(ang)], [0, 1, 0], [-math.sin(ang), 0, math.cos(ang)]], dtype=torch.float64)
    vr = v @ rot.T
    sv = orthographic_screen_vertices(vr[None], torch.tensor([70.0], dtype=torch.float64), torch.tensor([[80.0, 80.0]], dtype=torch.float64))
    light = torch.zeros(1, 9, 3, dtype=torch.float64)
    light[0, 0] = math.sqrt(4 * math.pi)  # irradiance 1: the image is the albedo
    out = MeshRenderer(f, uv, uvf, H).render(sv, vr[None], texture, light)
    uvm = UVMapper(f, uv, uvf, S)
    tex, vis = uvm.unwrap(out.image, sv)
    vis_m = vis[0, 0].numpy() > 0
    # Visible texels: facing the camera; about the front half of the sphere minus the rim.
    pos = uvm.attribute_map(vr[None])[0].permute(1, 2, 0).numpy()
    nz = pos[..., 2] / np.linalg.norm(pos, axis=-1).clip(1e-9)
    assert (nz[vis_m] > -0.05).all()
    assert vis_m[nz > 0.3].mean() > 0.99
    diff = np.abs(tex[0].numpy() - texture[0].numpy())[:, vis_m & (nz > 0.3)]
    assert diff.mean() < 1e-3 and diff.max() < 0.01
    # And rendering the unwrapped texture gives the image back where the texture is known.
    again = MeshRenderer(f, uv, uvf, H).render(sv, vr[None], tex, light)
    inner = (again.normals[0, 2].numpy() > 0.5) & (out.mask[0, 0].numpy() > 0)
    assert np.abs(again.image[0].numpy() - out.image[0].numpy())[:, inner].mean() < 0.01


def test_displacement_moves_vertices_along_the_normal():
    v, f, uv, uvf = _sphere(32, 64)
    uvm = UVMapper(f, uv, uvf, 64)
    d = 0.01
    disp = torch.full((1, 1, 64, 64), d, dtype=torch.float64)
    moved = uvm.displace_vertices(v[None], disp)
    assert torch.allclose(moved.norm(dim=-1), torch.full((1, v.shape[0]), 1 + d, dtype=torch.float64), atol=1e-6)
    zero = uvm.displace_vertices(v[None], torch.zeros_like(disp))
    assert torch.equal(zero, v[None])


def test_detail_normals_of_a_sine_bump_on_a_plane():
    """Plane z = 0 with UV = (x, y); displacement a·sin(2πu) → normal ∝ (−2πa·cos(2πx), 0, 1)."""
    n = 33
    ys, xs = torch.meshgrid(torch.linspace(0, 1, n, dtype=torch.float64), torch.linspace(0, 1, n, dtype=torch.float64), indexing="ij")
    verts = torch.stack([xs.reshape(-1), ys.reshape(-1), torch.zeros(n * n, dtype=torch.float64)], -1)
    faces = []
    for i in range(n - 1):
        for j in range(n - 1):
            a, b, c, d = i * n + j, i * n + j + 1, (i + 1) * n + j, (i + 1) * n + j + 1
            faces += [[a, b, d], [a, d, c]]
    faces = torch.tensor(faces)
    uvm = UVMapper(faces, verts[:, :2], faces, 128)
    assert (vertex_normals(verts[None], faces)[..., 2] > 0.999).all()
    amp = 0.02
    u, _ = _texel_uv(128)
    disp = torch.tensor(amp * np.sin(2 * math.pi * u))[None, None]
    nm = uvm.detail_normal_map(verts[None], disp)[0].permute(1, 2, 0).numpy()
    slope = 2 * math.pi * amp * np.cos(2 * math.pi * u)
    expected = np.stack([-slope, np.zeros_like(slope), np.ones_like(slope)], -1)
    expected /= np.linalg.norm(expected, axis=-1, keepdims=True)
    inner = np.zeros((128, 128), bool)
    inner[2:-2, 2:-2] = True
    ang = np.degrees(np.arccos(np.clip((nm * expected).sum(-1), -1, 1)))
    assert ang[inner].max() < 0.5
    # Zero displacement gives the coarse normals.
    flat = uvm.detail_normal_map(verts[None], torch.zeros_like(disp))[0]
    assert torch.allclose(flat[2], torch.ones_like(flat[2]))
