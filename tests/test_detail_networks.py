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
    layers = {id(m): m for m in (module.head, getattr(module, "output_layer", module.head))}.values()
    with torch.no_grad():
        for p in (p for layer in layers for p in layer.parameters()):
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
    assert not any("attn" in n or "mlp" in n or "head" in n or "patch_embed" in n or "decoder" in n for n in before)
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


@pytest.mark.parametrize("refine", [0, 8])
def test_the_convolutional_decoder_sees_across_patch_borders(refine):
    """A change of one token's decoded patch reaches the texels next to it only through the
    convolutional decoder (``refine``): the linear head alone decodes each patch on its own."""
    cfg = DetailMAEConfig(map_size=32, patch_size=8, embed_dim=32, depth=1, num_heads=2, refine=refine)
    mae = DetailMAE(cfg).eval()
    _kick(mae)
    tex, vis, ten = _inputs(S=32, B=1)
    token = 5  # grid row 1, column 1: texels [8:16, 8:16]
    hook = mae.head.register_forward_hook(lambda m, i, out: out + torch.nn.functional.one_hot(
        torch.tensor(token), out.shape[1]).to(out)[None, :, None] * 0.3)
    with torch.no_grad():
        moved = mae(tex, vis, ten)
        hook.remove()
        base = mae(tex, vis, ten)
    change = (moved - base).abs()[0, 0]
    inside = torch.zeros_like(change, dtype=torch.bool)
    inside[8:16, 8:16] = True
    assert change[inside].max() > 1e-4
    if refine:
        assert change[7, 8:16].max() > 1e-6 and change[8:16, 16].max() > 1e-6  # the texels next to it
        near = torch.zeros_like(inside)
        near[6:18, 6:18] = True  # two 3 × 3 layers reach 2 texels out
        assert change[~near].max() == 0
    else:
        assert change[~inside].max() == 0


@pytest.mark.parametrize("skip", [False, True])
def test_the_decoder_reads_the_input_maps_at_full_resolution_with_skip(skip):
    """With the tokens' decoded features held fixed, one changed texel of the texture reaches D
    (within the decoder's two 3 × 3 layers of it) only through the skip."""
    cfg = DetailMAEConfig(map_size=32, patch_size=8, embed_dim=32, depth=1, num_heads=2, refine=8, skip=skip)
    mae = DetailMAE(cfg).eval()
    _kick(mae)
    tex, vis, ten = _inputs(S=32, B=1)
    vis = torch.ones_like(vis)
    with torch.no_grad():
        fixed = mae.head(mae.tokens(tex, vis, ten))
        hook = mae.head.register_forward_hook(lambda m, i, out: fixed)
        base = mae(tex, vis, ten)
        tex2 = tex.clone()
        tex2[0, :, 20, 11] = 1 - tex2[0, :, 20, 11]
        change = (mae(tex2, vis, ten) - base).abs()[0, 0]
        hook.remove()
    if skip:
        assert change[20, 11] > 1e-6
        far = torch.ones_like(change, dtype=torch.bool)
        far[18:23, 9:14] = False
        assert change[far].max() == 0
    else:
        assert change.max() == 0
