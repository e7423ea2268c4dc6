"""The open head model's detail UV layout (facetwin.headmodel.build.detail_uv) and its use."""

import dataclasses

import numpy as np
import pytest
import torch

from facetwin.headmodel.build import detail_uv as du
from facetwin.headmodel.data import HeadModelData


@pytest.fixture(scope="module")
def data():
    from facetwin.headmodel import load_head_model_data

    return load_head_model_data("open")


def _chart(data):
    chart = (data.detail_uv_faces >= 0).all(1)
    return chart, data.detail_face_region


def test_face_skin_fills_at_least_half_the_map(data):
    chart, region = _chart(data)
    st = du.stretch(data.v_template, data.faces[region], data.detail_uv_coords, data.detail_uv_faces[region])
    assert st["area_uv"].sum() >= 0.5, st["area_uv"].sum()
    # Measured by rasterising too (what a 256² map really gets).
    from facetwin.rendering.uv import UVMapper

    faces = data.detail_uv_faces.copy()
    faces[~region] = -1
    m = UVMapper(torch.as_tensor(data.faces), torch.as_tensor(data.detail_uv_coords), torch.as_tensor(faces), 256)
    assert m.mask.mean() >= 0.5
    # The old atlas gave the same region under 10 %.
    old = du.stretch(data.v_template, data.faces[region], data.uv_coords, data.uv_faces[region])
    assert old["area_uv"].sum() < 0.1
    # The face skin reaches from the forehead to below the chin and across the cheeks.
    v = data.v_template[np.unique(data.faces[region])]
    assert v[:, 0].max() - v[:, 0].min() > 0.13 and v[:, 1].max() - v[:, 1].min() > 0.19


def test_layout_is_left_right_symmetric(data):
    """u(mirror[i]) = 1 − u(i), v(mirror[i]) = v(i): the mirror is a horizontal flip of the map."""
    chart, _ = _chart(data)
    uv_of_vertex = np.full((data.n_vertices, 2), np.nan)
    uv_of_vertex[data.faces[chart].ravel()] = data.detail_uv_coords[data.detail_uv_faces[chart].ravel()]
    has = ~np.isnan(uv_of_vertex[:, 0])
    assert np.array_equal(has, has[data.mirror])
    mir = uv_of_vertex[data.mirror]
    np.testing.assert_allclose(mir[has, 0], 1 - uv_of_vertex[has, 0], atol=1e-6)
    np.testing.assert_allclose(mir[has, 1], uv_of_vertex[has, 1], atol=1e-6)
    # A per-vertex attribute of the mirrored head rasterises to the flipped map.
    from facetwin.rendering.detail_maps import mirror_map
    from facetwin.rendering.uv import UVMapper

    m = UVMapper.from_head_model(data, 128, layout="detail")
    x = torch.as_tensor(data.v_template[:, :1]).float()          # x changes sign under the mirror
    a = m.attribute_map(x)
    b = m.attribute_map(-x)
    inside = (m.mask * mirror_map(m.mask)) > 0
    assert (mirror_map(a) - b)[inside].abs().max() < 2e-3       # < 2 mm at 128² (texel rounding)
    assert (mirror_map(m.mask) != m.mask).float().mean() < 0.01


def test_no_flipped_triangles_and_bounded_stretch(data):
    chart, region = _chart(data)
    st = du.stretch(data.v_template, data.faces[chart], data.detail_uv_coords, data.detail_uv_faces[chart])
    assert (st["signed_uv_area"] > 0).all()
    assert (data.detail_uv_coords >= 0).all() and (data.detail_uv_coords <= 1).all()
    s = du.summary(data.v_template, data.faces, du.DetailUV(data.detail_uv_coords, data.detail_uv_faces,
                                                          region, chart, np.zeros(0, np.int64)))
    assert s["flipped_triangles"] == 0
    assert s["conformal_mean"] < 1.1 and s["conformal_p95"] < 1.25
    assert 0.3 < s["area_ratio_p5"] and s["area_ratio_p95"] < 2.0
    # No triangle overlaps another: the rasterised chart covers as many texels as its area.
    from facetwin.rendering.uv import UVMapper

    m = UVMapper.from_head_model(data, 512, layout="detail")
    assert abs(m.mask.mean().item() - st["area_uv"].sum()) < 0.01


def test_the_face_region_has_no_seams(data):
    """Inside the face region every vertex has one detail UV: neighbouring face triangles share
    their corners' UVs, and the chart's border (its only seam) lies outside the face."""
    chart, region = _chart(data)
    corners = np.stack([data.faces[chart].ravel(), data.detail_uv_faces[chart].ravel()], 1)
    pairs = np.unique(corners, axis=0)
    assert len(pairs) == len(np.unique(pairs[:, 0]))               # one UV per vertex in the chart
    # Border edges of the chart: none is an edge between two face-region triangles, and border
    # edges that touch the face region are only at openings (eyes, mouth) or the alar cuts.
    e = np.sort(np.concatenate([data.faces[:, [0, 1]], data.faces[:, [1, 2]], data.faces[:, [2, 0]]]), 1)
    owner = np.tile(np.arange(data.faces.shape[0]), 3)
    key = e[:, 0] * data.n_vertices + e[:, 1]
    order = np.argsort(key, kind="stable")
    k, o = key[order], owner[order]
    same = k[1:] == k[:-1]
    a, b = o[:-1][same], o[1:][same]
    assert not (region[a] & region[b] & (~chart[a] | ~chart[b])).any()
    # The outer border of the chart lies outside the face region (a margin ring).
    outer = chart[a] != chart[b]
    inside_is_face = np.where(chart[a], region[a], region[b])[outer]
    skin_other = ~(data.masks["eyeballs"] | data.masks["eye_sockets"] | data.masks["mouth_interior"])
    other_side = np.where(chart[a], b, a)[outer]
    on_skin = skin_other[data.faces[other_side]].all(1)
    assert not (inside_is_face & on_skin).any()


def test_flame_like_model_without_detail_uv_still_loads(tmp_path, data):
    """A head model without the detail layout (FLAME) loads, and asking for it is a clear error."""
    from facetwin.errors import FacetwinError
    from facetwin.rendering.uv import UVMapper

    plain = dataclasses.replace(data, detail_uv_coords=None, detail_uv_faces=None, detail_face_region=None)
    p = tmp_path / "plain.npz"
    plain.save_npz(p)
    back = HeadModelData.load_npz(p)
    assert not back.has_detail_uv and back.statistics()["detail_uv_corners"] == 0
    with pytest.raises(FacetwinError, match="no detail UV layout"):
        back.detail_chart()
    with pytest.raises(FacetwinError, match="no detail UV layout"):
        UVMapper.from_head_model(back, 64, layout="detail")
    UVMapper.from_head_model(back, 64)                          # its own UVs still work
    # Round trip of the detail fields.
    q = tmp_path / "full.npz"
    data.save_npz(q)
    full = HeadModelData.load_npz(q)
    assert np.array_equal(full.detail_uv_faces, data.detail_uv_faces)
    assert full.detail_chart()[0].shape[0] == int((data.detail_uv_faces >= 0).all(1).sum())


def test_symmetric_lscm_on_a_known_surface():
    """A flat symmetric grid maps to a similar copy of itself (LSCM of a plane is a similarity)."""
    n = 7
    xs, ys = np.meshgrid(np.linspace(-1, 1, n), np.linspace(0, 2, n))
    v = np.stack([xs.ravel(), ys.ravel(), np.zeros(n * n)], 1)
    idx = np.arange(n * n).reshape(n, n)
    f = []
    for i in range(n - 1):
        for j in range(n - 1):
            a, b, c, d = idx[i, j], idx[i, j + 1], idx[i + 1, j], idx[i + 1, j + 1]
            f += [[a, b, d], [a, d, c]] if j < (n - 1) / 2 else [[a, b, c], [b, d, c]]
    f = np.array(f)
    mirror = idx[:, ::-1].ravel()
    uv = du.symmetric_lscm(v, f, mirror)
    np.testing.assert_allclose(uv[:, 0], v[:, 0] / 2, atol=1e-9)     # height 2 → 1: scale ½
    np.testing.assert_allclose(uv[:, 1], v[:, 1] / 2, atol=1e-9)


def test_uv_mapper_and_renderer_in_the_detail_layout(data):
    """Maps in the detail layout: vertex values round-trip inside the chart and are 0 outside;
    the renderer samples detail normals there and keeps the mesh normal elsewhere."""
    from facetwin.geometry.camera import orthographic_screen_vertices
    from facetwin.rendering.renderer import MeshRenderer
    from facetwin.rendering.shading import default_lighting
    from facetwin.rendering.uv import UVMapper

    m = UVMapper.from_head_model(data, 256, layout="detail")
    v = torch.as_tensor(data.v_template)[None]
    back = m.vertex_values(m.attribute_map(v))[0]
    chart, region = _chart(data)
    in_face = np.zeros(data.n_vertices, bool)
    in_face[data.faces[region].ravel()] = True
    outside = np.ones(data.n_vertices, bool)
    outside[data.faces[chart].ravel()] = False
    assert (back[torch.as_tensor(in_face)] - v[0, torch.as_tensor(in_face)]).norm(dim=1).median() < 1e-3
    assert (back[torch.as_tensor(outside)] == 0).all()
    # A displacement moves face vertices only.
    disp = m.displace_vertices(v, torch.full((1, 1, 256, 256), 0.002) * m.mask)
    moved = (disp - v)[0].norm(dim=1)
    assert (moved[torch.as_tensor(outside)] == 0).all() and moved[torch.as_tensor(in_face)].median() > 0.0015

    r = MeshRenderer.from_head_model(data, 128, detail_uv=True)
    sv = orthographic_screen_vertices(v.float(), torch.tensor([500.0]), torch.tensor([[64.0, 64 + 500 * 0.13]]))
    light = default_lighting(1)
    frags = r.rasterize(sv)
    plain = r.render(sv, v.float(), None, light, fragments=frags).image
    n0 = m.detail_normal_map(v.float(), torch.zeros(1, 1, 256, 256))
    det = r.render(sv, v.float(), None, light, detail_normals=n0, fragments=frags).image
    charted = torch.as_tensor(chart)[frags.triangle_ids.clamp_min(0)] & (frags.triangle_ids >= 0)
    diff = (det - plain).abs().mean(1)[0]
    assert (diff[~charted[0]] == 0).all()
    assert diff[charted[0]].mean() < 0.02 and charted.sum() > 2000
