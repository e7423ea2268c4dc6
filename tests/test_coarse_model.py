"""Coarse model forward: camera/landmark geometry, gradients (float64 finite differences),
silhouette vertices, β swap partners, marching contour, and learning on synthetic renders."""

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
from coarse_standins import SyntheticFaces, standin_head_model  # noqa: E402

from facetwin.geometry.camera import project_orthographic  # noqa: E402
from facetwin.geometry.rotation import head_yaw  # noqa: E402
from facetwin.losses.consistency import identity_swap_permutation  # noqa: E402
from facetwin.models.coarse import CoarseModel  # noqa: E402
from facetwin.networks.coarse_encoder import CoarseEncoder, HeadLayout  # noqa: E402


def _model(image_size=32, hidden=16):
    torch.manual_seed(0)
    head = standin_head_model()
    enc = CoarseEncoder(HeadLayout.from_head_model(head, n_albedo=3), size="tiny", image_size=image_size, hidden=hidden)
    return CoarseModel(enc, head)


def test_geometry_matches_head_model_and_camera():
    m = _model()
    p = m.encoder(torch.rand(2, 3, 32, 32))
    with torch.no_grad():
        p.pose[:, 0, 1] = torch.tensor([0.3, -0.6])
    g = m.geometry(p, crop_size=64)
    out = m.head_model(p.shape, p.expression, p.pose)
    s, t = p.scale * 64, p.translation * 64
    assert torch.allclose(g.landmarks2d, project_orthographic(out.landmarks, s, t), atol=1e-4)
    assert torch.allclose(g.vertices2d, project_orthographic(out.vertices, s, t), atol=1e-4)
    # Twice the crop: every pixel quantity doubles (the camera is predicted relative to the crop).
    g2 = m.geometry(p, crop_size=128)
    assert torch.allclose(g2.landmarks2d, 2 * g.landmarks2d, atol=1e-4)
    # Turning the head: landmarks on the side turning away lose their camera-facing normal.
    assert g.landmarks_normal_z.shape == (2, 68)
    assert (g.landmarks_normal_z[0] > -1).all() and (g.landmarks_normal_z[0] <= 1).all()
    assert torch.allclose(head_yaw(p.pose), p.pose[:, 0, 1], atol=0.05)


def test_gradients_of_landmarks_wrt_network_outputs_float64():
    m = _model().double()
    raw = (torch.randn(2, m.encoder.n_out, dtype=torch.float64) * 0.3).requires_grad_(True)

    def f(r):
        return m.geometry(m.encoder.decode(r), crop_size=64).landmarks2d

    assert torch.autograd.gradcheck(f, (raw,), eps=1e-6, atol=1e-5, rtol=1e-4, fast_mode=True)


def test_silhouette_vertices_lie_on_the_outline():
    m = _model()
    p = m.encoder(torch.rand(1, 3, 32, 32))
    g = m.geometry(p, 64)
    sil = m.silhouette(g)[0]
    assert sil.sum() > 10
    # On a near-ellipsoid head seen from the front, outline vertices have |n_z| small and sit at
    # the extreme x of their height band.
    nz = g.normals[0, :, 2]
    assert nz[sil].abs().mean() < 0.35
    assert nz[~sil].abs().mean() > nz[sil].abs().mean()
    assert not (sil & ~m.silhouette_candidates).any()


def test_beta_swap_without_generator_is_the_next_image_of_the_identity():
    # the one β swap (losses/consistency.py): deterministic in batch order, unknown identities (-1) alone
    assert identity_swap_permutation(torch.tensor([0, 1, 2])).tolist() == [0, 1, 2]
    assert identity_swap_permutation(torch.tensor([-1, -1, 3])).tolist() == [0, 1, 2]
    assert identity_swap_permutation(torch.tensor([5, 7, 5, 5, 9])).tolist() == [2, 1, 3, 0, 4]
    m = _model()
    g = m(torch.rand(3, 3, 32, 32))
    assert m.swapped_landmarks(g, torch.tensor([0, 1, 2])) is None  # nobody shares an identity


def test_swapped_landmarks_use_partner_shape():
    m = _model()
    p = m.encoder(torch.rand(2, 3, 32, 32))
    with torch.no_grad():
        p.shape[0] += 1.0
    g = m.geometry(p, 64)
    sw = m.swapped_landmarks(g, torch.tensor([4, 4]))
    ref = m.geometry(p, 64, shape=p.shape[[1, 0]]).landmarks2d
    assert torch.allclose(sw, ref)
    assert not torch.allclose(sw, g.landmarks2d)


def test_marching_contour_picks_the_yaw_bin():
    m = _model()
    p = m.encoder(torch.rand(1, 3, 32, 32))
    g = m.geometry(p, 64)
    c = m.marching_contour(g)
    assert c.shape == (1, 17, 2)
    # The stand-in's bins all hold the static contour: identical to the static landmarks.
    assert torch.allclose(c, g.landmarks2d[:, :17], atol=1e-4)


@pytest.mark.slow
def test_training_on_synthetic_renders_reduces_landmark_error(tmp_path):
    from facetwin.training.coarse_stage import CoarseConfig, CoarseStage
    from facetwin.training.config import load_config, to_dict
    from facetwin.training.engine import Trainer

    # Fit one fixed batch of 8 renders: the engine + model + losses must be able to memorise it.
    data = SyntheticFaces(n=8, size=32, seed=3)
    cfg = load_config(CoarseConfig, "coarse_smoke", [
        f"run.out_dir={tmp_path}", "model.image_size=32", "data.crop_size=32", "model.hidden=64", "run.batch_size=8",
        "run.steps=50", "run.log_every=10", "optim.lr=1e-3", "optim.warmup_steps=5", "render=false",
        "loss.identity=0", "loss.shape_consistency=0", "run.checkpoint_every=0"])
    tr = Trainer(CoarseStage(cfg, dataset=data, head_model=standin_head_model()), cfg.run, cfg.optim, to_dict(cfg), quiet=True)
    tr.train()
    nme = [r["nme"] for r in tr.history if "nme" in r]
    assert nme[-1] < 0.5 * nme[0], nme
