"""The detail networks: the UNet teacher D_UNet and the detail MAE."""

import pytest
import torch

from facetwin.networks.adapters import add_adapters
from facetwin.networks.detail_mae import DetailMAE, DetailMAEConfig
from facetwin.networks.unet import DetailUNet, UNetConfig


def _inputs(S=64, B=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    tex = torch.rand(B, 3, S, S, generator=g)
    vis = (torch.rand(B, 1, S, S, generator=g) > 0.3).float()
    ten = 2 * torch.rand(B, 1, S, S, generator=g) - 1
    return tex, vis, ten


def _kick(module, seed=1):
    """Non-zero heads (they start at zero so untrained networks predict D = 0)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.head.parameters():
            p.copy_(0.5 * torch.randn(p.shape, generator=g))


def test_unet_shapes_range_and_zero_start():
    net = DetailUNet(UNetConfig(width=8, levels=3))
    tex, vis, _ = _inputs()
    assert net(tex, vis).abs().max() == 0
    _kick(net)
    d = net(tex, vis)
    assert d.shape == (2, 1, 64, 64)
    assert d.abs().max() <= 0.01 and d.abs().max() > 1e-4
    d.sum().backward()
    assert net.down[0][0].weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="divisible"):
        net(tex[..., :63, :63], vis[..., :63, :63])


def test_unet_width_is_configurable():
    small = DetailUNet(UNetConfig(width=8, levels=3))
    big = DetailUNet(UNetConfig(width=16, levels=3))
    n = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert 3.5 < n(big) / n(small) < 4.5


def test_detail_mae_shapes_latent_and_transfer_parameters():
    cfg = DetailMAEConfig(map_size=64, patch_size=8, embed_dim=48, depth=2, num_heads=3)
    mae = DetailMAE(cfg)
    tex, vis, ten = _inputs()
    assert mae(tex, vis, ten).abs().max() == 0
    _kick(mae)
    d = mae(tex, vis, ten)
    assert d.shape == (2, 1, 64, 64) and 0 < d.abs().max() <= 0.01
    assert mae.x_d.shape == (1, 64, 48)
    # The tension is an input: another T_UV, other details.
    assert (mae(tex, vis, -ten) - d).abs().max() > 1e-5
    # Transfer parameters before adapters: layer norms + x_d.
    names = {id(p): n for n, p in mae.named_parameters()}
    before = [names[id(p)] for p in mae.transfer_parameters()]
    assert "detail_latent" in before and "norm.weight" in before and "blocks.0.norm1.weight" in before
    assert not any("attn" in n or "mlp" in n or "head" in n or "patch_embed" in n for n in before)
    # The project's adapters fit its blocks; fresh adapters keep the outputs.
    add_adapters(mae, bottleneck=8)
    names = {id(p): n for n, p in mae.named_parameters()}
    after = [names[id(p)] for p in mae.transfer_parameters()]
    assert any(".adapter." in n for n in after) and len(after) == len(before) + 4 * cfg.depth
    torch.testing.assert_close(mae(tex, vis, ten), d)
    # Training only the transfer parameters moves the output.
    for p in mae.parameters():
        p.requires_grad_(False)
    params = mae.transfer_parameters()
    for p in params:
        p.requires_grad_(True)
    mae(tex, vis, ten).square().sum().backward()
    assert mae.detail_latent.grad.abs().sum() > 0
    assert mae.blocks[0].mlp.fc1.weight.grad is None


def test_detail_mae_rejects_a_wrong_map_size():
    mae = DetailMAE(DetailMAEConfig(map_size=64, patch_size=8, embed_dim=48, depth=1, num_heads=3))
    tex, vis, ten = _inputs(S=32)
    with pytest.raises(ValueError, match="64"):
        mae(tex, vis, ten)
