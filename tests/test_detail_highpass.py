"""The fine part of a detail map (rendering/detail_maps.highpass_map): what the detail model keeps
of a network's D — known answers on the open head model's detail chart: constants and ramps vanish,
wrinkle-sized waves pass, centimetre-wide blobs mostly go; and the detail model applies it."""

import math

import pytest
import torch

from facetwin.rendering.detail_maps import highpass_map

S = 128
SIGMA = 0.03  # the training configs' model.highpass


@pytest.fixture(scope="module")
def chart():
    """(mask (1, 1, S, S) of the open head model's detail chart, interior: texels ≥ 4 σ from its border)."""
    from facetwin.headmodel import load_head_model_data
    from facetwin.rendering.uv import UVMapper

    mapper = UVMapper.from_head_model(load_head_model_data("open"), S, layout="detail")
    mask = mapper.mask
    r = int(math.ceil(4 * SIGMA * S))
    inner = -torch.nn.functional.max_pool2d(-mask, 2 * r + 1, stride=1, padding=r)  # erosion
    return mask, (inner > 0.5)[0, 0]


def _grid():
    v, u = torch.meshgrid(torch.arange(S) + 0.5, torch.arange(S) + 0.5, indexing="ij")
    return u / S, v / S


def test_constants_and_ramps_have_no_fine_part(chart):
    mask, inner = chart
    u, v = _grid()
    const = torch.full((1, 1, S, S), 0.004)
    assert highpass_map(const, mask, SIGMA).abs().max() < 1e-8  # float rounding of 0.004: the normalised blur has no border leak
    ramp = (0.01 * (u - 0.5) + 0.004 * v)[None, None]
    hp = highpass_map(ramp, mask, SIGMA)
    assert hp[0, 0][inner].abs().max() < 1e-7  # (the ramp spans ±5 mm) a symmetric blur keeps a linear function
    assert (hp[mask.expand_as(hp) == 0] == 0).all()


def test_wrinkles_pass_and_blobs_go(chart):
    mask, inner = chart
    u, v = _grid()
    for wavelength_uv, low, high in ((0.05, 0.97, 1.03), (0.22, 0.0, 0.35)):  # ≈ 14 mm lines; ≈ 60 mm blobs
        wave = (0.001 * torch.sin(2 * math.pi * v / wavelength_uv))[None, None]
        hp = highpass_map(wave, mask, SIGMA)
        kept = float(hp[0, 0][inner].std() / wave[0, 0][inner].std())
        expected = 1 - math.exp(-2 * math.pi ** 2 * SIGMA ** 2 / wavelength_uv ** 2)  # the Gaussian high-pass response
        assert low <= kept <= high and kept == pytest.approx(expected, abs=0.05), (wavelength_uv, kept, expected)


def test_zero_sigma_is_the_masked_map_and_gradients_flow(chart):
    mask, _ = chart
    d = torch.randn(2, 1, S, S, requires_grad=True)
    assert torch.equal(highpass_map(d, mask, 0.0), d * mask)
    highpass_map(d, mask, SIGMA).pow(2).sum().backward()
    assert torch.isfinite(d.grad).all() and d.grad.abs().sum() > 0


def test_the_detail_model_uses_only_the_fine_part_and_records_it(tmp_path):
    from facetwin.models.coarse import load_coarse_model, resolve_model_file
    from facetwin.models.detail import DetailModel, build_network, export_detail, load_detail_model
    from facetwin.networks.unet import UNetConfig

    coarse_file = resolve_model_file("default")
    coarse = load_coarse_model(coarse_file)[0]
    torch.manual_seed(0)
    net = build_network("unet", UNetConfig(width=8, levels=3))
    with torch.no_grad():
        net.head.weight.normal_(0, 0.5)
    m = DetailModel(coarse, net, 64, 128, highpass=SIGMA).eval()
    tex, vis = torch.rand(1, 3, 64, 64), torch.ones(1, 1, 64, 64)
    with torch.no_grad():
        raw = net(tex, vis)
        d = m.displacement(tex, vis, torch.zeros(1, 1, 64, 64))
    assert torch.allclose(d, highpass_map(raw, m.mapper.mask, SIGMA))
    path = export_detail(m, tmp_path / "detail_unet.safetensors", coarse_file)
    again, meta = load_detail_model(path, coarse=coarse, coarse_file=coarse_file, albedo=False)
    assert meta["inference"]["highpass"] == SIGMA and again.highpass == SIGMA
