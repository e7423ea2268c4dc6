"""The pure-torch rasteriser: coverage, visibility, culling, perspective, gradients."""

import math

import numpy as np
import pytest
import torch

from facetwin.geometry.camera import PerspectiveCamera, orthographic_screen_vertices, project_orthographic
from facetwin.geometry.mesh import spherical_uv_layout, uv_sphere
from facetwin.rendering import MeshRenderer, depth_map, interpolate, rasterize


def _inside(tri: np.ndarray, H: int, W: int) -> np.ndarray:
    """Reference coverage: pixel centres inside a 2D triangle (float64 half-plane tests)."""
    ys, xs = np.mgrid[0:H, 0:W] + 0.5
    (x0, y0), (x1, y1), (x2, y2) = tri[:, :2]
    e = lambda ax, ay, bx, by: (bx - ax) * (ys - ay) - (by - ay) * (xs - ax)  # noqa: E731
    w0, w1, w2 = e(x1, y1, x2, y2), e(x2, y2, x0, y0), e(x0, y0, x1, y1)
    return ((w0 >= 0) & (w1 >= 0) & (w2 >= 0)) | ((w0 <= 0) & (w1 <= 0) & (w2 <= 0))


def test_orthographic_projection_convention():
    v = torch.tensor([[[0.1, 0.2, 0.3], [-0.1, -0.2, 0.0]]])
    u = project_orthographic(v, torch.tensor([100.0]), torch.tensor([[50.0, 60.0]]))
    # x right, model y up -> image y down
    assert torch.allclose(u, torch.tensor([[[60.0, 40.0], [40.0, 80.0]]]))
    sv = orthographic_screen_vertices(v, torch.tensor([100.0]), torch.tensor([[50.0, 60.0]]))
    assert torch.allclose(sv[..., 2], torch.tensor([[30.0, 0.0]]))


def test_exact_coverage_of_rectangles_and_triangles():
    # A rectangle from two triangles, per batch element different, edges away from centres.
    rects = [(10.2, 5.3, 40.7, 30.9), (0.0, 0.0, 63.6, 12.2), (-5.0, 50.1, 20.4, 80.0)]
    H, W = 48, 64
    sv, faces = [], torch.tensor([[0, 2, 1], [0, 3, 2]])
    for x0, y0, x1, y1 in rects:
        sv.append([[x0, y0, 1.0], [x1, y0, 1.0], [x1, y1, 1.0], [x0, y1, 1.0]])
    frags = rasterize(torch.tensor(sv, dtype=torch.float64), faces, (H, W))
    for b, (x0, y0, x1, y1) in enumerate(rects):
        ys, xs = np.mgrid[0:H, 0:W] + 0.5
        expected = (xs >= x0) & (xs <= x1) & (ys >= y0) & (ys <= y1)
        assert np.array_equal(frags.mask[b].numpy(), expected)
    # Random triangles against the float64 reference.
    rng = np.random.default_rng(0)
    for _ in range(20):
        tri = np.concatenate([rng.uniform(-10, 74, (3, 2)), np.ones((3, 1))], 1)
        frags = rasterize(torch.tensor(tri[None]), torch.tensor([[0, 1, 2]]), (H, W))
        ref = _inside(tri, H, W)
        mism = frags.mask[0].numpy() != ref
        assert mism.sum() == 0, f"{mism.sum()} pixels differ"


def test_shared_edges_leave_no_cracks_and_no_double_cover():
    # A fan of triangles around a centre covers a polygon without holes.
    n = 17
    ang = np.linspace(0, 2 * np.pi, n, endpoint=False)
    pts = np.concatenate([[[32, 32]], np.stack([32 + 25 * np.cos(ang), 32 + 25 * np.sin(ang)], 1)])
    sv = torch.tensor(np.concatenate([pts, np.ones((n + 1, 1))], 1)[None])
    faces = torch.tensor([[0, 1 + i, 1 + (i + 1) % n] for i in range(n)])
    frags = rasterize(sv, faces, 64)
    ys, xs = np.mgrid[0:64, 0:64] + 0.5
    ref = np.zeros((64, 64), bool)
    for f in faces.numpy():
        ref |= _inside(sv[0].numpy()[f], 64, 64)
    assert np.array_equal(frags.mask[0].numpy(), ref)
    # Inside the polygon: the covering triangle contains the pixel centre.
    bary = frags.bary
    assert (bary > -1e-6).all() and torch.allclose(bary.sum(-1), torch.ones_like(bary[:, 0]))


def test_visibility_of_overlapping_and_intersecting_triangles():
    H = W = 40
    # Triangle 0 at depth 1 (far), triangle 1 at depth 2 (near), overlapping in the middle.
    sv = torch.tensor([[[2, 2, 1.0], [30, 2, 1.0], [2, 30, 1.0], [10, 10, 2.0], [38, 10, 2.0], [10, 38, 2.0]]], dtype=torch.float64)
    faces = torch.tensor([[0, 1, 2], [3, 4, 5]])
    ids = rasterize(sv, faces, H).triangle_ids[0].numpy()
    in0, in1 = _inside(sv[0, :3].numpy(), H, W), _inside(sv[0, 3:].numpy(), H, W)
    assert (in0 & in1).sum() > 50
    assert (ids[in1] == 1).all() and (ids[in0 & ~in1] == 0).all() and (ids[~in0 & ~in1] == -1).all()
    # Swap depths: the other one wins the overlap.
    sv2 = sv.clone()
    sv2[0, :3, 2], sv2[0, 3:, 2] = 2.0, 1.0
    ids2 = rasterize(sv2, faces, H).triangle_ids[0].numpy()
    assert (ids2[in0] == 0).all() and (ids2[in1 & ~in0] == 1).all()
    # Two triangles crossing in depth: the winner per pixel is the one with the larger z there.
    sv3 = torch.tensor([[[0, 0, 0.0], [40, 0, 40.0], [0, 40, 0.0], [0, 0, 30.0], [40, 0, 0.0], [0, 40, 30.0]]], dtype=torch.float64)
    ids3 = rasterize(sv3, faces, H).triangle_ids[0].numpy()
    ys, xs = np.mgrid[0:H, 0:W] + 0.5
    za, zb = xs, 30 - 30 * xs / 40
    cov = _inside(sv3[0, :3].numpy(), H, W)
    clear = cov & (np.abs(za - zb) > 1e-3)
    assert np.array_equal(ids3[clear], np.where(za > zb, 0, 1)[clear])


def test_backface_culling_follows_winding():
    # Counter-clockwise in the model (y up) = camera-facing; clockwise = back face.
    v = torch.tensor([[[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]])
    sv = orthographic_screen_vertices(v, torch.tensor([20.0]), torch.tensor([[5.0, 30.0]]))
    front = rasterize(sv, torch.tensor([[0, 1, 2]]), 32, cull_backfaces=True)
    back = rasterize(sv, torch.tensor([[0, 2, 1]]), 32, cull_backfaces=True)
    assert front.mask.sum() > 100 and back.mask.sum() == 0
    assert rasterize(sv, torch.tensor([[0, 2, 1]]), 32).mask.sum() == front.mask.sum()


def test_sphere_coverage_matches_disc_and_depth_is_front_surface():
    v, f = uv_sphere(48, 96, dtype=torch.float64)
    B = 2
    vb = v[None].repeat(B, 1, 1)
    s = torch.tensor([30.0, 40.0], dtype=torch.float64)
    t = torch.tensor([[50.0, 50.0], [45.0, 60.0]], dtype=torch.float64)
    sv = orthographic_screen_vertices(vb, s, t)
    frags = rasterize(sv, f, 100)
    culled = rasterize(sv, f, 100, cull_backfaces=True)
    assert torch.equal(frags.triangle_ids, culled.triangle_ids)  # the z-buffer hides the back
    ys, xs = np.mgrid[0:100, 0:100] + 0.5
    for b in range(B):
        r = np.hypot(xs - t[b, 0].item(), ys - t[b, 1].item()) / s[b].item()
        m = frags.mask[b].numpy()
        assert m[r < 0.99].all() and not m[r > 1.0].any()
        z = depth_map(sv, f, frags)[b].numpy() / s[b].item()
        inner = r < 0.95
        assert np.abs(z[inner] - np.sqrt(1 - r[inner] ** 2)).max() < 5e-3


def test_perspective_correct_interpolation_of_depth():
    # A tilted plane; the camera depth interpolated per pixel must equal the ray/plane depth.
    v = torch.tensor([[[-1.0, -1.0, -0.5], [1.0, -1.0, 0.5], [1.0, 1.0, 0.5], [-1.0, 1.0, -0.5]]], dtype=torch.float64)
    faces = torch.tensor([[0, 1, 2], [0, 2, 3]])
    cam = PerspectiveCamera.looking_at_face(3.0, 60.0, 64, 64, dtype=torch.float64)
    sv = cam.screen_vertices(v)
    frags = rasterize(sv, faces, 64, perspective_correct=True)
    zcam = cam.to_camera(v)[..., 2:3]
    z = interpolate(zcam, faces, frags)[0, ..., 0].numpy()
    # Plane in camera frame: z_cam = 3 - 0.5 x, x_cam = x; ray x_cam = z (px - 32) / 60.
    ys, xs = np.mgrid[0:64, 0:64] + 0.5
    a = (xs - 32) / 60
    expected = 3 / (1 + 0.5 * a)
    m = frags.mask[0].numpy()
    assert m.sum() > 500
    assert np.abs(z[m] - expected[m]).max() < 1e-9
    # Without correction the same interpolation is visibly off.
    z_lin = interpolate(zcam, faces, rasterize(sv, faces, 64))[0, ..., 0].numpy()
    assert np.abs(z_lin[m] - expected[m]).max() > 1e-3
    # Projection: a point on the optical axis lands on the principal point.
    assert torch.allclose(cam.project(torch.zeros(1, 1, 3, dtype=torch.float64)), torch.tensor([[[32.0, 32.0]]], dtype=torch.float64))


def _generic_geometry():
    v, f = uv_sphere(6, 10, dtype=torch.float64)
    rot = torch.tensor([[0.96, -0.2, 0.19], [0.23, 0.96, -0.12], [-0.16, 0.16, 0.97]], dtype=torch.float64)
    v = v @ torch.linalg.qr(rot)[0].T
    return v, f


def test_gradients_wrt_positions_match_finite_differences():
    v, f = _generic_geometry()
    attr = torch.randn(1, v.shape[0], 2, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    w = torch.randn(1, 20, 20, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    sv0 = orthographic_screen_vertices(v[None], torch.tensor([8.3], dtype=torch.float64), torch.tensor([[10.1, 9.7]], dtype=torch.float64))

    def fn(sv):
        return (interpolate(attr, f, rasterize(sv, f, 20, cull_backfaces=True)) * w).sum()

    assert torch.autograd.gradcheck(fn, (sv0.clone().requires_grad_(),), eps=1e-7, atol=1e-5, fast_mode=True)

    cam = PerspectiveCamera.looking_at_face(4.0, 60.0, 20, 20, dtype=torch.float64)

    def fn_persp(vertices):
        sv = cam.screen_vertices(vertices)
        return (interpolate(attr, f, rasterize(sv, f, 20, cull_backfaces=True, perspective_correct=True)) * w).sum()

    assert torch.autograd.gradcheck(fn_persp, (v[None].clone().requires_grad_(),), eps=1e-7, atol=1e-5, fast_mode=True)


def test_gradients_wrt_attributes_textures_and_lighting():
    v, f = _generic_geometry()
    uv, uvf = spherical_uv_layout(v, f)
    sv = orthographic_screen_vertices(v[None], torch.tensor([8.3], dtype=torch.float64), torch.tensor([[10.1, 9.7]], dtype=torch.float64))
    frags = rasterize(sv, f, 20)
    g = torch.Generator().manual_seed(3)
    attr = torch.randn(1, v.shape[0], 3, dtype=torch.float64, generator=g, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a: interpolate(a, f, frags), (attr,), eps=1e-6, atol=1e-6, fast_mode=True)

    renderer = MeshRenderer(f, uv.double(), uvf, 20)
    tex = torch.rand(1, 3, 8, 8, dtype=torch.float64, generator=g, requires_grad=True)
    light = torch.randn(1, 9, 3, dtype=torch.float64, generator=g, requires_grad=True)
    vb = v[None].clone().requires_grad_()

    def fn(tex, light, vb):
        sv = orthographic_screen_vertices(vb, torch.tensor([8.3], dtype=torch.float64), torch.tensor([[10.1, 9.7]], dtype=torch.float64))
        return renderer.render(sv, vb, tex, light).image

    assert torch.autograd.gradcheck(fn, (tex, light, vb), eps=1e-7, atol=1e-5, fast_mode=True)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")
def test_cuda_matches_cpu():
    v, f = uv_sphere(24, 48)
    sv = orthographic_screen_vertices(v[None].repeat(2, 1, 1), torch.tensor([30.0, 35.0]), torch.tensor([[40.0, 40.0], [38.0, 41.0]]))
    a = rasterize(sv, f, 80)
    b = rasterize(sv.cuda(), f.cuda(), 80)
    assert (a.triangle_ids == b.triangle_ids.cpu()).float().mean() > 0.999


def test_chunked_scan_gives_the_same_visibility(monkeypatch):
    import facetwin.rendering.rasterizer as R

    v, f = uv_sphere(16, 32)
    sv = orthographic_screen_vertices(v[None].repeat(2, 1, 1), torch.tensor([20.0, 90.0]), torch.tensor([[30.0, 30.0], [20.0, 40.0]]))
    ref = rasterize(sv, f, 64).triangle_ids
    monkeypatch.setattr(R, "_ROW_BUDGET", 37)
    monkeypatch.setattr(R, "_PIXEL_BUDGET", 101)
    assert torch.equal(rasterize(sv, f, 64).triangle_ids, ref)
    # The second sphere is far larger than the image: every pixel is covered by its front.
    assert ref[1].min() >= 0


def test_picture_building_blocks():
    from facetwin.rendering.visualize import draw_landmarks, image_grid, overlay, render_geometry, to_uint8

    img = np.full((40, 50, 3), 100, np.uint8)
    ren = np.full((40, 50, 3), 200, np.uint8)
    alpha = np.zeros((40, 50))
    alpha[10:20, 5:15] = 1
    out = overlay(img, ren, alpha, opacity=1.0)
    assert out.dtype == np.uint8 and out.shape == (40, 50, 3)
    assert (out[10:20, 5:15] == 200).all() and (out[:10] == 100).all()
    # Grey sphere: covered where the disc is, brighter towards the light (front-top).
    v, f = uv_sphere(16, 32)
    g, a = render_geometry(v, f, 15.0, (25.0, 20.0), (40, 50))
    assert a[20, 25] == 1 and a[0, 0] == 0 and g[0, 0].sum() == 0
    assert g[12, 25].mean() > g[28, 25].mean()  # upper half lit more than the lower half
    d = draw_landmarks(img, pred=[[10.0, 10.0]], gt=[[30.0, 30.0]])
    assert tuple(d[10, 10]) != (100, 100, 100) and tuple(d[30, 30]) != (100, 100, 100) and tuple(d[20, 40]) == (100, 100, 100)
    grid = image_grid([img, ren, torch.zeros(3, 40, 50)], columns=2, pad=2)
    assert grid.shape == (2 * 40 + 3 * 2, 2 * 50 + 3 * 2, 3)
    assert to_uint8(torch.ones(3, 4, 5)).shape == (4, 5, 3)


def test_optional_moderngl_backend_agrees_with_the_default():
    from facetwin.rendering import backend_moderngl

    if not backend_moderngl.available():
        pytest.skip("moderngl/EGL not available (optional backend)")
    v, f = uv_sphere(32, 64)
    g = torch.Generator().manual_seed(0)
    B = 4
    vb = v[None].repeat(B, 1, 1) * (1 + 0.1 * torch.rand(B, 1, 3, generator=g))
    sv = orthographic_screen_vertices(vb, 25 + 20 * torch.rand(B, generator=g), 40 + 20 * torch.rand(B, 2, generator=g))
    for cull in (False, True):
        a = rasterize(sv, f, 96, cull_backfaces=cull).triangle_ids
        b = rasterize(sv, f, 96, cull_backfaces=cull, backend="moderngl").triangle_ids
        dis = a != b
        assert dis.float().mean() < 0.002
        # OpenGL snaps vertices to 1/256 px: it differs only for pixel centres on a shared edge.
        both = dis & (a >= 0) & (b >= 0)
        assert both.sum() >= dis.sum() - 2
        fa, fb = f[a[both]], f[b[both]]
        assert ((fa[:, :, None] == fb[:, None, :]).sum((1, 2)) == 2).all()
    # Overlapping triangles: the nearer one wins in both.
    sv2 = torch.tensor([[[2, 2, 1.0], [30, 2, 1.0], [2, 30, 1.0], [10, 10, 2.0], [38, 10, 2.0], [10, 38, 2.0]]])
    sv2[..., :2] += torch.tensor([0.13, 0.21])  # no pixel centre exactly on an edge (tie rules differ)
    faces = torch.tensor([[0, 1, 2], [3, 4, 5]])
    assert torch.equal(rasterize(sv2, faces, 40).triangle_ids, rasterize(sv2, faces, 40, backend="moderngl").triangle_ids)


def test_optional_moderngl_backend_on_the_head_model():
    from facetwin.headmodel.registry import OPEN_MODEL_FILE
    from facetwin.rendering import backend_moderngl

    if not backend_moderngl.available() or not OPEN_MODEL_FILE.is_file():
        pytest.skip("moderngl/EGL or the open head model not available")
    from facetwin.cli.bench_render import _scene

    renderer, vertices, scale, translation, *_ , screen = _scene(4, 160)
    sv = screen(vertices, scale, translation)
    a = rasterize(sv, renderer.faces, 160, cull_backfaces=True).triangle_ids
    b = rasterize(sv, renderer.faces, 160, cull_backfaces=True, backend="moderngl").triangle_ids
    assert (a == b).float().mean() >= 0.999


def test_perspective_sphere_outline_and_front_depth():
    v, f = uv_sphere(48, 96, dtype=torch.float64)
    d, focal = 4.0, 150.0
    cam = PerspectiveCamera.looking_at_face(d, focal, 96, 96, dtype=torch.float64)
    sv = cam.screen_vertices(v[None])
    frags = rasterize(sv, f, 96, cull_backfaces=True, perspective_correct=True)
    # The outline of a unit sphere seen from distance d is a circle of radius f·tan(asin(1/d)).
    r_img = focal * math.tan(math.asin(1 / d))
    ys, xs = np.mgrid[0:96, 0:96] + 0.5
    r = np.hypot(xs - 48, ys - 48)
    m = frags.mask[0].numpy()
    assert m[r < r_img - 0.7].all() and not m[r > r_img + 0.1].any()
    # Depth along each pixel ray: the near intersection with the sphere.
    zcam = cam.to_camera(v[None])[..., 2:3]
    z = interpolate(zcam, f, frags)[0, ..., 0].numpy()
    dx, dy = (xs - 48) / focal, (ys - 48) / focal
    a = dx**2 + dy**2 + 1  # ray (dx, dy, 1)·t, sphere centred at (0, 0, d)
    t_near = (2 * d - np.sqrt(np.clip(4 * d * d - 4 * a * (d * d - 1), 0, None))) / (2 * a)
    inner = r < 0.9 * r_img
    assert np.abs(z[inner] - t_near[inner]).max() < 4e-3  # tessellation (chords)
