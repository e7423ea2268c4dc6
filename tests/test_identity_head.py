"""The identity head (issue #14): β = β_ViT + head(dlib descriptor), the camera re-fitted.

Known answers for the camera re-fit (exact at Δβ = 0, least-squares optimal otherwise, gradients
against finite differences), the model-file round trip, and the `identity` training stage on real
crops (its terms, that only the head learns, exact resume, the model file it writes)."""

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from skimage import data as skdata

from facetwin.errors import FacetwinError
from facetwin.models import files
from facetwin.models.coarse import IDENTITY_INPUT_SIZE, export_encoder, load_coarse_model
from facetwin.networks.identity_head import IdentityHead, IdentityHeadConfig
from facetwin.training.config import load_config, to_dict
from facetwin.training.engine import Trainer
from facetwin.training.identity_stage import IdentityConfig, IdentityStage

sys.path.insert(0, str(Path(__file__).parent))
from media import two_people_prepared  # noqa: E402


@pytest.fixture(scope="module")
def coarse():
    return load_coarse_model()[0]


@pytest.fixture(scope="module")
def params(coarse):
    torch.manual_seed(0)
    images = torch.from_numpy(np.stack([skdata.astronaut()[:448:2, 64:512:2], skdata.astronaut()[::-1][:448:2, 64:512:2]]))
    images = images.permute(0, 3, 1, 2).float().div(255)
    with torch.no_grad():
        return coarse.encoder(coarse.encoder_input(images)).to(torch.float32), images


def _inner_error(coarse, p, target, size):
    geo = coarse.geometry(p, size)
    return (geo.landmarks2d[:, 17:] - target[:, 17:]).pow(2).sum((1, 2))


def test_zero_correction_changes_nothing(coarse, params):
    p, _ = params
    l2d = coarse.geometry(p, 224).landmarks2d
    q = coarse.with_identity(p, torch.zeros_like(p.shape), l2d, 224)
    torch.testing.assert_close(q.scale, p.scale, rtol=1e-5, atol=0)
    torch.testing.assert_close(q.translation, p.translation, rtol=0, atol=1e-5)
    torch.testing.assert_close(coarse.geometry(q, 224).landmarks2d, l2d, rtol=0, atol=1e-3)  # pixels


def test_camera_refit_is_the_least_squares_optimum(coarse, params):
    p, _ = params
    l2d = coarse.geometry(p, 224).landmarks2d
    delta = torch.randn_like(p.shape) * 3
    q = coarse.with_identity(p, delta, l2d, 224)
    torch.testing.assert_close(q.shape, p.shape + coarse.without_size_change(delta))
    # centroid of the inner landmarks is kept exactly (least-squares translation)
    torch.testing.assert_close(coarse.geometry(q, 224).landmarks2d[:, 17:].mean(1), l2d[:, 17:].mean(1), rtol=0, atol=1e-3)
    best = _inner_error(coarse, q, l2d, 224)
    assert (best > 1.0).all()  # the new shape really differs
    for ds in (0.98, 1.02):  # any other scale (translation re-centred or not) is worse
        r = type(q)(**{**q.as_dict(), "scale": q.scale * ds})
        assert (_inner_error(coarse, r, l2d, 224) > best).all()
    for dt in ([1e-3, 0.0], [0.0, -1e-3]):
        r = type(q)(**{**q.as_dict(), "translation": q.translation + torch.tensor(dt)})
        assert (_inner_error(coarse, r, l2d, 224) > best).all()


def _neutral_size(coarse, beta):
    hm = coarse.head_model
    v = hm(beta, torch.zeros(beta.shape[0], hm.n_expr), torch.zeros(beta.shape[0], 5, 3)).vertices
    return (v - v.mean(1, keepdim=True)).pow(2).sum((1, 2)).sqrt()


def test_identity_changes_shape_not_size(coarse):
    """Size is unobservable under the re-fitted orthographic camera: the identity's Δβ loses its
    uniform-scaling part (known answer: the scaling direction itself is removed entirely) and a
    large random Δβ keeps the neutral head's size within 3 %, where it would change it by far more."""
    n = coarse.encoder.layout.n_shape
    torch.manual_seed(1)
    delta = torch.randn(4, n) * 2  # |Δβ| ≈ 20, as trained heads predict
    kept = coarse.without_size_change(delta)
    torch.testing.assert_close(coarse.without_size_change(kept), kept, rtol=0, atol=1e-4)  # a projection
    d = coarse._size_dirs[0][None]
    assert float(coarse.without_size_change(d).norm()) < 1e-4 * float(d.norm())
    zero = torch.zeros(1, n)
    base = _neutral_size(coarse, zero)
    assert ((_neutral_size(coarse, kept) / base - 1).abs() < 0.03).all()  # what remains is second order
    scaled = zero + 0.2 * d  # 20 % of the way to doubling: the head really grows
    assert float(_neutral_size(coarse, scaled) / base) > 1.15


def test_refit_gradient_matches_finite_differences(coarse, params):
    p, _ = params
    p = p.index(torch.tensor([0]))
    l2d = coarse.geometry(p, 224).landmarks2d
    delta = torch.zeros_like(p.shape)
    delta[0, :3] = torch.tensor([1.5, -2.0, 0.7])

    def f(d):
        q = coarse.with_identity(p, d, l2d, 224)
        return coarse.geometry(q, 224).landmarks2d[0, 30:40].sum()  # nose and eye points (pixels)

    d = delta.clone().requires_grad_(True)
    f(d).backward()
    for k in (0, 1, 5):
        e = torch.zeros_like(delta)
        e[0, k] = 1e-2
        fd = (f(delta + e) - f(delta - e)) / 2e-2
        assert abs(float(d.grad[0, k]) - float(fd)) < 0.02 * max(1.0, abs(float(fd)))


def test_fresh_head_is_zero_and_standardisation_centres(coarse, params):
    head = IdentityHead(IdentityHeadConfig(n_shape=coarse.encoder.layout.n_shape, hidden=16))
    x = torch.randn(50, 128) * 0.1 + 0.3
    head.set_standardisation(x)
    torch.testing.assert_close(head.descriptor_mean, x.mean(0))
    assert torch.equal(head(x), torch.zeros(50, head.cfg.n_shape))
    with pytest.raises(ValueError, match="descriptor"):
        IdentityHeadConfig(n_shape=3, descriptor="arcface")


def test_model_file_round_trip_with_an_identity_head(coarse, params, tmp_path):
    p, images = params
    head = IdentityHead(IdentityHeadConfig(n_shape=coarse.encoder.layout.n_shape, hidden=16))
    torch.nn.init.normal_(head.mlp[-1].weight, std=0.5)
    path = export_encoder(coarse.encoder, tmp_path / "m.safetensors", "open", identity_head=head)
    meta = files.read_metadata(path)
    assert meta["format"] == files.format_name(files.COARSE_ENCODER) and meta["identity_head"]["hidden"] == 16
    assert meta["inference"]["input_size"] == IDENTITY_INPUT_SIZE
    model, _ = load_coarse_model(path)
    assert model.identity_head is not None and model.input_size == IDENTITY_INPUT_SIZE
    with torch.no_grad():
        q = model.predict(images)
        desc, l2d = model.identity_descriptor(p, images)
        expect = model.with_identity(p, head(desc), l2d, images.shape[-1])
    torch.testing.assert_close(q.shape, expect.shape, rtol=0, atol=2e-2)  # fp16 weights in the file
    assert float((q.shape - p.shape).abs().max()) > 0.1  # the head really acts
    # a model file without a head loads without one, as before
    plain = export_encoder(coarse.encoder, tmp_path / "plain.safetensors", "open")
    assert load_coarse_model(plain)[0].identity_head is None and files.read_metadata(plain)["inference"]["input_size"] == 128
    # a head whose description does not fit its tensors is one clear error
    state, meta = files.read_model_file(path)
    files.write_model_file(tmp_path / "bad.safetensors", state, files.COARSE_ENCODER, {**meta, "identity_head": {**meta["identity_head"], "hidden": 8}})
    with pytest.raises(FacetwinError, match="identity head does not match"):
        load_coarse_model(tmp_path / "bad.safetensors")


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """Two people, three photos each, prepared at 160 px (tests/media.py)."""
    return two_people_prepared(tmp_path_factory.mktemp("people"), tmp_path_factory.mktemp("prepared"), 160)


def _cfg(prepared, out, steps):
    return load_config(IdentityConfig, "identity", [
        f"data.root={prepared}", f"run.out_dir={out}", f"run.steps={steps}", "data.crop_size=160", "render.size=64",
        "run.batch_size=4", "run.workers=0", "run.log_every=1", "run.checkpoint_every=2", "run.image_every=0",
        "run.eval_every=0", "eval.helen=", "eval.likeness=", "identity.hidden=16", "identity.standardise_images=6",
        "optim.warmup_steps=0", "run.threads=1"])


@pytest.mark.slow
def test_identity_stage_trains_only_the_head_resumes_exactly_and_exports(prepared, tmp_path):
    cfg = _cfg(prepared, tmp_path / "a", 4)
    tr = Trainer(IdentityStage(cfg), cfg.run, cfg.optim, to_dict(cfg), quiet=True)
    before = load_coarse_model()[0].encoder.state_dict()  # the base it starts from
    tr.train()
    logs = [r for r in tr.history if "loss" in r]
    assert len(logs) == 4
    for r in logs:
        assert 0.0 < r["identity"] < 4.0 and r["photometric"] > 0 and np.isfinite(r["loss"])
        assert r["shape_consistency"] > 0  # identity batches: pairs of one person
    assert logs[-1]["beta_norm"] != logs[0]["beta_norm"]
    after = tr.stage.coarse.encoder.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # the encoder is frozen
    head = tr.stage.model
    assert float(head.mlp[-1].weight.detach().abs().sum()) > 0  # the head learned
    # the exported file is a complete coarse model: encoder + head, the base's training config kept
    model, meta = load_coarse_model(tmp_path / "a" / "export" / "coarse_encoder.safetensors")
    assert model.identity_head is not None and meta["identity_stage"]["base_model"] == "coarse_encoder.safetensors"
    assert meta["train_config"]["model"]["size"] == "tiny"
    torch.testing.assert_close(model.identity_head.mlp[-1].weight, head.mlp[-1].weight.detach(), rtol=0, atol=1e-3)
    # exact resume: stop after 2 of 4 steps, resume to 4 == 4 straight
    cfg2 = _cfg(prepared, tmp_path / "b", 4)
    Trainer(IdentityStage(cfg2), cfg2.run, cfg2.optim, to_dict(cfg2), quiet=True, stop_at=2).train()
    cfg3 = _cfg(prepared, tmp_path / "b", 4)
    tr3 = Trainer(IdentityStage(cfg3), cfg3.run, cfg3.optim, to_dict(cfg3), quiet=True, resume="auto")
    tr3.train()
    for k, v in head.state_dict().items():
        assert torch.equal(v, tr3.stage.model.state_dict()[k]), k


@pytest.mark.slow
def test_a_coarse_run_from_a_model_with_an_identity_head_keeps_it_frozen(prepared, tmp_path):
    """Fine-tuning or personalising the encoder of a model with a head: the head is loaded,
    applied in the forward exactly as at inference, not trained, and written out again."""
    from facetwin.training.coarse_stage import CoarseConfig, CoarseStage

    cfg = _cfg(prepared, tmp_path / "id", 1)
    Trainer(IdentityStage(cfg), cfg.run, cfg.optim, to_dict(cfg), quiet=True).train()
    with_head = tmp_path / "id" / "export" / "coarse_encoder.safetensors"
    ccfg = load_config(CoarseConfig, "coarse", [
        f"data.root={prepared}", f"run.out_dir={tmp_path / 'c'}", "run.steps=1", "data.crop_size=160", "render.size=32",
        "run.batch_size=4", "run.workers=0", "run.checkpoint_every=0", "run.image_every=0", "run.eval_every=0",
        "eval.helen=", "render.landmark_only_steps=0", "render.identity_images=2", "run.threads=1", "run.bf16=false",
        f"model.init_checkpoint={with_head}"])
    tr = Trainer(CoarseStage(ccfg), ccfg.run, ccfg.optim, to_dict(ccfg), quiet=True)
    tr.train()
    head = tr.stage.coarse.identity_head
    assert head is not None and not any(p.requires_grad for p in head.parameters())
    ref, _ = load_coarse_model(with_head)
    for k, v in ref.identity_head.state_dict().items():
        assert torch.equal(v, head.state_dict()[k]), k
    # the stage's forward is the model's: same β for the same crops (encoder weights of the run)
    ds = tr.stage.dataset
    batch = torch.utils.data.default_collate([ds[i] for i in range(2)])
    with torch.no_grad():
        _, geo = tr.stage.forward(tr.stage.model.eval(), batch, with_render=False)
        tr.stage.coarse.eval()
        torch.testing.assert_close(tr.stage.coarse.predict(batch["image"].float()).shape, geo.params.shape, rtol=0, atol=1e-3)
        # its β prior reads the encoder's own β (what the run trains), not the head's total
        inputs, _ = tr.stage.coarse.loss_inputs(geo.params, batch, tr.stage.weights, with_render=False)
        assert inputs.prior_shape is None
        own = tr.stage.model(tr.stage.coarse.encoder_input(batch["image"].float())).shape.float()
        staged, _ = tr.stage.forward(tr.stage.model, batch, with_render=False)
        torch.testing.assert_close(staged.prior_shape, own)
        assert float((geo.params.shape - own).abs().max()) > 0.1
    out, _ = load_coarse_model(tmp_path / "c" / "export" / "coarse_encoder.safetensors")
    assert out.identity_head is not None


def test_a_person_beta_replaces_the_heads_correction(params):
    """A person model has one β for every image: with the person's β fixed on the encoder the
    identity head adds nothing; removing it gives the per-image β back."""
    from facetwin.models.person import fix_shape

    model = load_coarse_model()[0]
    assert model.identity_head is not None  # the shipped model has one
    _, images = params
    beta = torch.linspace(-1, 1, model.encoder.layout.n_shape)
    handle = fix_shape(model.encoder, beta)
    with torch.no_grad():
        fixed = model.predict(images).shape
    handle.remove()
    with torch.no_grad():
        free = model.predict(images).shape
    torch.testing.assert_close(fixed, beta.expand_as(fixed))
    assert float((free - beta).abs().max()) > 0.5 and float((free[0] - free[1]).abs().max()) > 0.1


def test_training_through_the_head_can_move_the_face(coarse, params):
    """With the identity head applied (``complete``), the encoder's camera still moves the inner
    landmarks: the camera re-fit's target is differentiable. Known answer: shifting the
    encoder's translation by t shifts every re-fitted inner landmark by exactly t · crop size
    (the fit is translation-equivariant), and the autograd gradient agrees with finite differences.
    Detached, the re-fit pinned the face to the encoder's own guess (gradient 0: a person model
    could never correct where the base model put the face)."""
    p, images = params
    p = p.index(torch.tensor([0]))
    images = images[:1]
    assert coarse.identity_head is not None

    def inner_x(translation):
        q = type(p)(**{**p.as_dict(), "translation": translation})
        return coarse.geometry(coarse.complete(q, images), 224).landmarks2d[0, 17:, 0].mean()

    t = p.translation.clone().requires_grad_(True)
    inner_x(t).backward()
    assert abs(float(t.grad[0, 0]) - 224.0) < 0.5 and abs(float(t.grad[0, 1])) < 0.5
    e = torch.tensor([[1e-3, 0.0]])
    with torch.no_grad():
        fd = (inner_x(p.translation + e) - inner_x(p.translation - e)) / 2e-3
    assert abs(float(fd) - 224.0) < 0.5


def test_the_beta_prior_acts_on_what_the_run_trains(coarse, params):
    """A coarse or person run from a model with a frozen head: L_C's |β|² term reads the encoder's
    own β, not β + the head's Δβ (|Δβ|² is ~600 for the shipped head: on the total the prior was
    2/3 of L_C and taught the encoder to undo the likeness)."""
    from facetwin.losses.coarse import CoarseLossWeights, coarse_losses

    p, images = params
    with torch.no_grad():
        full = coarse.complete(p, images)
    assert float(full.shape.pow(2).sum(-1).mean()) > 10 * float(p.shape.pow(2).sum(-1).mean())
    batch = {"image": images, "landmarks": coarse.geometry(full, 224).landmarks2d.detach()}
    w = CoarseLossWeights(shape_reg=1.0)
    for prior, expected in ((None, full.shape), (p.shape, p.shape)):
        inputs, _ = coarse.loss_inputs(full, batch, w, with_render=False, prior_shape=prior)
        _, terms = coarse_losses(inputs, w)
        torch.testing.assert_close(terms["shape_reg"], expected.pow(2).sum(-1).mean(), rtol=1e-5, atol=0)
