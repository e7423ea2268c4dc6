"""Plain-torch ViT: timm/MAE parameter names, checkpoint loading with pos-embed interpolation,
adapters (identity at insertion), coarse-encoder output ranges."""

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
from coarse_standins import standin_head_model  # noqa: E402

from facetwin.errors import FacetwinError  # noqa: E402
from facetwin.networks.adapters import add_adapters, transfer_parameters  # noqa: E402
from facetwin.networks.coarse_encoder import CoarseEncoder, HeadLayout  # noqa: E402
from facetwin.networks.vit import VisionTransformer, interpolate_pos_embed, load_pretrained, sincos_pos_embed  # noqa: E402


def timm_vit_tiny_keys(depth=12):
    """The encoder keys of timm's vit_tiny_patch16_224 / MAE (written out: timm does not import here)."""
    keys = ["cls_token", "pos_embed", "patch_embed.proj.weight", "patch_embed.proj.bias", "norm.weight", "norm.bias"]
    for i in range(depth):
        for name in ("norm1", "attn.qkv", "attn.proj", "norm2", "mlp.fc1", "mlp.fc2"):
            keys += [f"blocks.{i}.{name}.weight", f"blocks.{i}.{name}.bias"]
    return keys


def test_parameter_names_and_shapes_match_timm():
    vit = VisionTransformer.from_size("tiny", image_size=224)
    sd = vit.state_dict()
    assert sorted(sd) == sorted(timm_vit_tiny_keys())
    assert sd["pos_embed"].shape == (1, 197, 192)
    assert sd["blocks.0.attn.qkv.weight"].shape == (576, 192)
    assert sd["blocks.0.mlp.fc1.weight"].shape == (768, 192)
    n = sum(p.numel() for p in vit.parameters())
    assert 5.5e6 < n < 5.8e6  # ViT-Ti/16: 5.7 M with the 1000-class head (0.19 M) removed


def test_attention_matches_explicit_softmax():
    torch.manual_seed(0)
    vit = VisionTransformer(image_size=32, embed_dim=16, depth=1, num_heads=2).double()
    x = torch.randn(2, 5, 16, dtype=torch.float64)
    attn = vit.blocks[0].attn
    B, N, C = x.shape
    qkv = attn.qkv(x).reshape(B, N, 3, 2, 8).permute(2, 0, 3, 1, 4)
    w = (qkv[0] @ qkv[1].transpose(-1, -2) / 8 ** 0.5).softmax(-1)
    ref = attn.proj((w @ qkv[2]).transpose(1, 2).reshape(B, N, C))
    assert torch.allclose(attn(x), ref, atol=1e-12)


def test_load_mae_checkpoint_with_pos_embed_interpolation(tmp_path):
    torch.manual_seed(0)
    src = VisionTransformer.from_size("tiny", image_size=224)
    state = {f"{k}": v.clone() for k, v in src.state_dict().items()}
    # An MAE pre-training file: encoder + decoder + mask token, under "model".
    state["mask_token"] = torch.zeros(1, 1, 512)
    state["decoder_embed.weight"] = torch.zeros(512, 192)
    state["decoder_pos_embed"] = torch.zeros(1, 197, 512)
    path = tmp_path / "mae_pretrain_vit_tiny.pth"
    torch.save({"model": state}, path)
    dst = VisionTransformer.from_size("tiny", image_size=128)
    missing = load_pretrained(dst, path)
    assert missing == []
    assert torch.equal(dst.blocks[5].mlp.fc2.weight, src.blocks[5].mlp.fc2.weight)
    assert dst.pos_embed.shape == (1, 65, 192)
    assert torch.equal(dst.pos_embed[:, 0], src.pos_embed[:, 0])
    # Interpolation resamples the grid: a field linear in the patch column (old grid 14) comes
    # out at the new patch centres mapped back to old coordinates, (j + 0.5) * 14 / 8 - 0.5.
    g = torch.arange(14.0)
    field = torch.zeros(1, 1 + 14 * 14, 2)
    field[0, 1:, 0] = g.repeat(14)
    field[0, 1:, 1] = g.repeat_interleave(14)
    out = interpolate_pos_embed(field, 8)[0, 1:].reshape(8, 8, 2)
    want = (torch.arange(8.0) + 0.5) * 14 / 8 - 0.5
    assert torch.allclose(out[3, 1:-1, 0], want[1:-1], atol=0.05)
    assert torch.allclose(out[1:-1, 3, 1], want[1:-1], atol=0.05)
    # Wrong size: a clear error.
    small = VisionTransformer.from_size("small", image_size=128)
    with pytest.raises(FacetwinError, match="shape"):
        load_pretrained(small, path)
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(FacetwinError, match="cannot read"):
        load_pretrained(dst, bad)


def test_adapters_start_as_identity_and_train_only_adapters_and_norms():
    torch.manual_seed(0)
    vit = VisionTransformer(image_size=32, embed_dim=32, depth=2, num_heads=2)
    x = torch.rand(2, 3, 32, 32)
    before = vit(x)
    base_state = vit.state_dict()
    params = add_adapters(vit, bottleneck=4)
    assert torch.allclose(vit(x), before, atol=1e-6)
    assert len(params) == 2 * 4
    # A base checkpoint still loads into the adapted model (adapter keys are extra).
    missing, unexpected = vit.load_state_dict(base_state, strict=False)
    assert unexpected == [] and all(".adapter." in k for k in missing)
    trainable = transfer_parameters(vit)
    names = {id(p): n for n, p in vit.named_parameters()}
    assert {names[id(p)].split(".")[-2] for p in trainable} == {"down", "up", "norm1", "norm2", "norm"}
    # Adapters change the output once trained.
    with torch.no_grad():
        vit.blocks[0].adapter.up.weight.normal_(std=0.1)  # (a constant would vanish in the layer norms)
    assert not torch.allclose(vit(x), before, atol=1e-4)


def test_coarse_encoder_ranges_and_initial_prediction():
    torch.manual_seed(0)
    head = standin_head_model()
    layout = HeadLayout.from_head_model(head, n_albedo=3)
    enc = CoarseEncoder(layout, size="tiny", image_size=32, hidden=16)
    p = enc(torch.rand(3, 3, 32, 32))
    assert p.shape.shape == (3, head.n_shape) and p.pose.shape == (3, 5, 3) and p.light.shape == (3, 9, 3)
    assert (p.expression >= 0).all() and (p.expression <= 1).all() and p.expression.max() < 0.1
    assert (p.scale > 0).all()
    # The mean face starts centred: template landmark centre near the crop centre.
    from facetwin.geometry.camera import project_orthographic

    lmk = head(batch_size=1).landmarks.expand(3, -1, -1)
    s, t = p.camera_pixels(100.0)
    centre = project_orthographic(lmk, s, t)
    lo, hi = centre.min(1).values, centre.max(1).values
    assert torch.allclose((lo + hi) / 2, torch.tensor([50.0, 57.0]).expand(3, 2), atol=2.0)
    assert torch.allclose(hi[:, 0] - lo[:, 0], torch.full((3,), 62.5), rtol=0.05)
    # Extreme raw outputs stay within the limits.
    raw = torch.full((1, enc.n_out), 50.0)
    q = enc.decode(raw)
    assert q.pose[0, 0].abs().max() <= 1.5 and q.pose[0, 2, 0] <= 0.45 and q.expression.max() <= 1.0
    assert q.scale.item() <= enc.s_ref * 2.72


def test_adapters_in_an_encoder_decoder_and_its_learnable_latent():
    from facetwin.networks.vit_pretrain import VitPretrainer

    torch.manual_seed(0)
    vit = VisionTransformer(image_size=32, embed_dim=32, depth=2, num_heads=2)
    net = VitPretrainer(vit, decoder_dim=16, decoder_depth=2, decoder_heads=2)
    x = torch.rand(2, 3, 32, 32)
    torch.manual_seed(1)
    loss0, pred0, _ = net(x)
    params = add_adapters(net, bottleneck=4)
    # every block, encoder (2) and decoder (2), got one; still the identity
    assert all(b.adapter is not None for b in list(vit.blocks) + list(net.decoder_blocks))
    assert len(params) == 4 * 4
    torch.manual_seed(1)
    loss1, pred1, _ = net(x)
    assert torch.allclose(pred0, pred1, atol=1e-6)
    trainable = {id(p) for p in net.transfer_parameters()}
    assert id(net.mask_token) in trainable  # the learnable latent is declared, not found by name
    assert all(id(p) in trainable for p in params)
    assert id(net.decoder_norm.weight) in trainable and id(vit.blocks[0].norm2.bias) in trainable
    assert id(vit.blocks[0].mlp.fc1.weight) not in trainable and id(net.decoder_pred.weight) not in trainable
    with pytest.raises(ValueError, match="no transformer blocks"):
        add_adapters(torch.nn.Linear(3, 3))


def test_adapters_inside_the_shipped_coarse_encoder():
    from facetwin.models.coarse import load_coarse_model

    model, meta = load_coarse_model("default")
    enc = model.encoder
    x = torch.rand(2, 3, 128, 128)
    with torch.no_grad():
        before = enc(x)
    params = add_adapters(enc, bottleneck=8)
    assert len(params) == 4 * len(enc.vit.blocks) == 48
    with torch.no_grad():
        after = enc(x)
    for k in ("shape", "expression", "pose", "scale", "translation", "light"):
        assert torch.allclose(getattr(before, k), getattr(after, k), atol=1e-5), k  # identity at insertion
    trainable = enc.transfer_parameters()
    n_norm = sum(p.numel() for m in enc.modules() if isinstance(m, torch.nn.LayerNorm) for p in m.parameters())
    n_adapt = sum(p.numel() for p in params)
    assert sum(p.numel() for p in trainable) == n_norm + n_adapt
    assert n_adapt + n_norm < 0.05 * sum(p.numel() for p in enc.parameters())  # a small fraction is trained
    # one step on the transfer parameters only moves the prediction and leaves the rest untouched
    frozen = {n: p.detach().clone() for n, p in enc.named_parameters() if all(p is not q for q in trainable)}
    opt = torch.optim.SGD(trainable, lr=1e-2)
    for p in enc.parameters():
        p.requires_grad_(any(p is q for q in trainable))
    loss = enc(x).shape.square().mean()
    loss.backward()
    opt.step()
    assert all(torch.equal(p, frozen[n]) for n, p in enc.named_parameters() if n in frozen)
    with torch.no_grad():
        assert not torch.allclose(enc(x).shape, before.shape, atol=1e-7)


def test_vit_pretrain_patchify_roundtrip_masking_and_learning():
    from facetwin.networks.vit_pretrain import VitPretrainer as MaskedAutoencoder, patchify, unpatchify

    torch.manual_seed(0)
    x = torch.rand(2, 3, 32, 32)
    assert torch.equal(unpatchify(patchify(x, 16), 16, 2), x)
    # Patch 1 (top-right) of image 0 holds exactly that image region, row-major pixels.
    assert torch.equal(patchify(x, 16)[0, 1].reshape(16, 16, 3), x[0, :, :16, 16:].permute(1, 2, 0))
    vit = VisionTransformer(image_size=64, embed_dim=32, depth=2, num_heads=2)
    mae = MaskedAutoencoder(vit, decoder_dim=32, decoder_depth=1, decoder_heads=2, mask_ratio=0.75)
    # Smooth images (bilinear upsampled 3x3 noise): masked patches are predictable from the rest.
    images = torch.nn.functional.interpolate(torch.rand(4, 3, 3, 3), size=(64, 64), mode="bilinear", align_corners=True)
    loss0, pred, mask = mae(images)
    assert pred.shape == (4, 16, 768) and mask.shape == (4, 16)
    assert torch.equal(mask.sum(1), torch.full((4,), 12.0))
    torch.manual_seed(1)
    loss0, _, _ = mae(images)
    opt = torch.optim.AdamW(mae.parameters(), 5e-3)
    for _ in range(40):
        torch.manual_seed(1)  # same masks: memorise one batch
        loss, _, _ = mae(images)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.6 * loss0.item()
    # The encoder keys stay timm/MAE-compatible.
    assert set(mae.encoder.state_dict()) == set(VisionTransformer(image_size=64, embed_dim=32, depth=2, num_heads=2).state_dict())
