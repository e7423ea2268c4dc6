"""What training really runs, on a small real prepared folder made here from photos: the coarse
stage's render / photometric / identity path with the shipped config, the vit-pretrain stage,
the `facetwin train` CLI and its stage registry, parameter groups, and that a library call of
the engine leaves process-wide state (RNGs, threads) as it found it."""

import json
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from facetwin.models import files
from facetwin.training.coarse_stage import CoarseConfig, CoarseStage
from facetwin.training.config import load_config, to_dict
from facetwin.training.engine import Trainer

sys.path.insert(0, str(Path(__file__).parent))
from media import two_people_prepared  # noqa: E402

SMALL = ["model.image_size=64", "data.crop_size=64", "model.hidden=32", "run.batch_size=4", "run.workers=0",
         "run.log_every=1", "run.checkpoint_every=0", "run.image_every=0", "eval.helen=", "render.size=32",
         "render.identity_images=2"]


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """Two people, three photos each (the astronaut photo, shifted and mirrored), prepared at 96 px."""
    return two_people_prepared(tmp_path_factory.mktemp("people"), tmp_path_factory.mktemp("prepared"), 96)


def _cfg(prepared, out, *extra, config="coarse"):
    return load_config(CoarseConfig, config, SMALL + [f"data.root={prepared}", f"run.out_dir={out}", *extra])


@pytest.mark.slow
def test_coarse_render_path_with_the_shipped_config(prepared, tmp_path):
    """The shipped configuration (render on, photometric + identity terms, identity batches,
    bf16, border fill, augmentation) on real crops: the terms appear after the landmark-only
    steps, the skin mask reaches the photometric term, and the picture is drawn."""
    cfg = _cfg(prepared, tmp_path, "run.steps=4", "render.landmark_only_steps=2")
    assert cfg.render.enabled and cfg.loss.photometric > 0 and cfg.loss.identity > 0 and cfg.run.bf16
    tr = Trainer(CoarseStage(cfg), cfg.run, cfg.optim, to_dict(cfg), quiet=True)
    tr.train()
    logs = {r["step"]: r for r in tr.history if "loss" in r}
    assert set(logs) == {1, 2, 3, 4}
    assert "photometric" not in logs[2] and "identity" not in logs[2]  # DECA-style landmark-only start
    for step in (3, 4):
        assert 0.01 < logs[step]["photometric"] < 2.0 and 0.0 < logs[step]["identity"] < 2.0
        assert logs[step]["shape_consistency"] > 0  # identity batches: pairs of one person
        assert all(np.isfinite(v) for v in logs[step].values())
    stage = tr.stage
    ds = stage.dataset
    batch = torch.utils.data.default_collate([ds[i] for i in range(4)])
    inputs, geo = stage.forward(stage.model, batch, with_render=True)
    assert inputs.render.shape == (4, 3, 32, 32) and inputs.image.shape == (4, 3, 32, 32)
    assert inputs.skin_mask is not None and inputs.skin_mask.shape == (4, 1, 32, 32) and inputs.skin_mask.sum() > 50
    assert inputs.gt_landmarks.max() <= 40  # landmarks scaled to the render size (64 → 32)
    # the photometric gradient reaches the encoder through the renderer
    from facetwin.losses.coarse import CoarseLossWeights, coarse_losses

    only_pho = CoarseLossWeights(**{**stage.weights.to_dict(), **{k: 0.0 for k in (
        "silhouette", "inner_landmarks", "landmark_pairs", "identity", "shape_reg", "expression_reg", "albedo_reg",
        "light_reg", "shape_consistency")}})
    stage.model.zero_grad()
    total, terms = coarse_losses(inputs, only_pho)
    total.backward()
    head_grad = stage.model.head[-1].weight.grad
    assert set(terms) >= {"photometric"} and head_grad is not None and head_grad.abs().sum() > 0
    with torch.no_grad():
        grid = stage.visuals(stage.model, batch)
    assert grid.dtype == np.uint8 and grid.shape == (4 * 32, 4 * 32, 3) and grid.std() > 10
    Image.fromarray(grid).save(tmp_path / "grid.png")
    # the model file carries what inference needs
    meta = files.read_metadata(tmp_path / "export" / "coarse_encoder.safetensors")
    assert meta["inference"]["input_size"] == 64 and meta["inference"]["contour"] == "silhouette"
    assert meta["train_config"]["render"]["size"] == 32


def test_missing_network_of_a_weighted_term_stops_at_start(prepared, tmp_path, monkeypatch):
    from facetwin.errors import FacetwinError

    import facetwin.losses.identity as identity

    def broken(**kw):
        raise OSError("dlib_face_recognition_resnet_model_v1.dat: no such file")

    monkeypatch.setattr(identity, "dlib_identity_loss", broken)
    cfg = _cfg(prepared, tmp_path, "run.steps=1")
    with pytest.raises(FacetwinError, match=r"loss.identity=0.2 needs the dlib face descriptor.*set loss.identity=0"):
        Trainer(CoarseStage(cfg), cfg.run, cfg.optim, to_dict(cfg), quiet=True).train()
    assert not (tmp_path / "metrics.jsonl").exists()  # stopped before the first step
    cfg = _cfg(prepared, tmp_path, "run.steps=1", "loss.emotion=1")
    with pytest.raises(FacetwinError, match="loss.emotion=1.0 needs a network"):
        Trainer(CoarseStage(cfg), cfg.run, cfg.optim, to_dict(cfg), quiet=True).train()
    import facetwin.appearance as appearance

    monkeypatch.setattr(appearance, "load_albedo_model", lambda: (_ for _ in ()).throw(ValueError("bad npz")))
    cfg = _cfg(prepared, tmp_path, "run.steps=1", "loss.identity=0")
    with pytest.raises(FacetwinError, match="cannot load the open albedo model.*render.albedo=uniform"):
        Trainer(CoarseStage(cfg), cfg.run, cfg.optim, to_dict(cfg), quiet=True).train()


def test_parameter_groups_split_backbone_and_head(prepared, tmp_path):
    cfg = _cfg(prepared, tmp_path, "run.steps=0", "render=false", "loss.identity=0", "optim.head_lr_scale=3", "optim.lr=1e-3",
               "optim.warmup_steps=0")
    tr = Trainer(CoarseStage(cfg), cfg.run, cfg.optim, to_dict(cfg), quiet=True)
    tr.setup()
    groups = tr.optimizer.param_groups
    model = tr.stage.model
    names = {id(p): n for n, p in model.named_parameters()}
    assert len(groups) == 2
    assert all(names[id(p)].startswith("vit.") for p in groups[0]["params"])
    assert all(names[id(p)].startswith("head.") for p in groups[1]["params"])
    assert groups[0]["lr"] == pytest.approx(1e-3) and groups[1]["lr"] == pytest.approx(3e-3)
    every = [id(p) for g in groups for p in g["params"]]
    assert sorted(every) == sorted(id(p) for p in model.parameters()) and len(set(every)) == len(every)


def test_engine_leaves_process_state_as_it_found_it(prepared, tmp_path):
    cfg = _cfg(prepared, tmp_path, "run.steps=2", "render=false", "loss.identity=0", "run.threads=1", "run.seed=7")
    torch.set_num_threads(2)
    torch.manual_seed(123)
    np.random.seed(123)
    random.seed(123)
    expect = (torch.rand(3), np.random.rand(3), random.random())
    torch.manual_seed(123)
    np.random.seed(123)
    random.seed(123)
    Trainer(CoarseStage(cfg), cfg.run, cfg.optim, to_dict(cfg), quiet=True).train()
    assert torch.get_num_threads() == 2
    assert torch.equal(torch.rand(3), expect[0]) and np.array_equal(np.random.rand(3), expect[1]) and random.random() == expect[2]


@pytest.mark.slow
def test_vit_pretrain_stage_trains_and_its_model_file_starts_a_coarse_run(prepared, tmp_path):
    from facetwin.training.vit_pretrain_stage import VitPretrainConfig, VitPretrainStage

    cfg = load_config(VitPretrainConfig, "vit-pretrain", [
        f"data.root={prepared}", f"run.out_dir={tmp_path / 'pre'}", "model.image_size=48", "model.decoder_dim=32",
        "model.decoder_depth=1", "run.batch_size=6", "run.steps=12", "run.workers=0", "run.log_every=4",
        "run.image_every=12", "run.checkpoint_every=12", "optim.warmup_steps=2", "optim.lr=2e-3", "data.identity_batches=false"])
    tr = Trainer(VitPretrainStage(cfg), cfg.run, cfg.optim, to_dict(cfg), quiet=True)
    tr.train()
    losses = [r["loss"] for r in tr.history if "loss" in r]
    assert len(losses) == 3 and losses[-1] < losses[0]  # the masked-patch reconstruction improves
    assert (tmp_path / "pre" / "images" / "step_0000012.png").is_file()
    path = tmp_path / "pre" / "export" / "vit_pretrain.safetensors"
    state, meta = files.read_model_file(path, files.VIT)
    assert meta["format"] == "facetwin-vit/1" and meta["image_size"] == 48 and all(v.dtype == torch.float32 for v in state.values())
    # ... and `model.pretrained` of a coarse run loads it into the encoder's ViT
    coarse = _cfg(prepared, tmp_path / "c", "run.steps=0", "render=false", "loss.identity=0", f"model.pretrained={path}")
    ctr = Trainer(CoarseStage(coarse), coarse.run, coarse.optim, to_dict(coarse), quiet=True)
    ctr.setup()
    vit_state = ctr.stage.model.vit.state_dict()
    assert torch.allclose(vit_state["blocks.0.attn.qkv.weight"], state["blocks.0.attn.qkv.weight"])


@pytest.mark.slow
def test_train_cli_lists_registered_stages_and_runs_one(prepared, tmp_path, monkeypatch):
    from facetwin.cli.main import build_parser
    from facetwin.training import stages

    help_text = build_parser()._subparsers._group_actions[0].choices["train"].format_help()
    assert "coarse" in help_text and "vit-pretrain" in help_text and "mae" not in help_text.split("STAGE")[1].split("options")[0]
    # a new stage slots in through the registry alone
    monkeypatch.setitem(stages.STAGES, "detail-teacher", stages.StageEntry("x:Y", "the detail teacher", "coarse"))
    assert "detail-teacher" in build_parser()._subparsers._group_actions[0].choices["train"].format_help()
    monkeypatch.undo()
    out = tmp_path / "run"
    r = subprocess.run([sys.executable, "-m", "facetwin", "train", "coarse", "--config", "coarse_smoke", "--out", str(out),
                        "--steps", "2", "--set", f"data.root={prepared}", "--set", "model.image_size=64",
                        "--set", "data.crop_size=64", "--set", "run.workers=0", "--json"],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    result = json.loads(r.stdout.strip().splitlines()[-1])
    assert result["steps"] == 2 and np.isfinite(result["loss"])
    assert result["model_file"].endswith("export/coarse_encoder.safetensors")
    assert files.read_metadata(result["model_file"])["step"] == 2
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["step_0000002.safetensors"]


def test_likeness_options_reach_the_loss_inputs(prepared, tmp_path):
    """Issue #14's options through the real stage and reader: the face-region composite mask is
    part of the render's coverage (no scalp, ears, neck), the β spread term is weighted in, the
    large-pose augmentation and turn oversampling are read into the one prepared-data reader;
    the defaults leave all of it off."""
    from facetwin.data.augment import Augmenter
    from facetwin.errors import FacetwinError
    from facetwin.losses.coarse import coarse_losses

    cfg = _cfg(prepared, tmp_path, "run.steps=0", "loss.identity=0", "loss.perceptual_region=face", "loss.shape_spread=0.5",
               "data.pose_augment.tilt=1.0", "data.pose_augment.tilt_degrees=25", "data.oversample_turns=3")
    tr = Trainer(CoarseStage(cfg), cfg.run, cfg.optim, to_dict(cfg), quiet=True)
    tr.setup()
    stage = tr.stage
    ds = stage.dataset
    assert isinstance(ds.augment, Augmenter) and ds.augment.tilt == 1.0 and ds.augment.tilt_degrees == 25
    sample = ds[0]
    assert "homography" not in sample and torch.isfinite(sample["landmarks"]).all()
    batch = torch.utils.data.default_collate([ds[i] for i in range(4)])
    inputs, _ = stage.forward(stage.model, batch, with_render=True)
    face, head = inputs.perceptual_mask, inputs.render_mask
    assert face is not None and face.shape == head.shape == (4, 1, 32, 32)
    assert (face <= (head > 0).float()).all() and 0 < face.sum() < (head > 0).sum()
    assert torch.equal(inputs.identity, batch["identity"])
    _, terms = coarse_losses(inputs, stage.weights)
    assert "shape_spread" in terms and torch.isfinite(terms["shape_spread"])

    default = _cfg(prepared, tmp_path / "d", "run.steps=0", "loss.identity=0")
    assert default.loss.perceptual_region == "head" and default.loss.shape_spread == 0
    assert default.data.pose_augment == {} and default.data.oversample_turns == 1
    tr = Trainer(CoarseStage(default), default.run, default.optim, to_dict(default), quiet=True)
    tr.setup()
    inputs, _ = tr.stage.forward(tr.stage.model, batch, with_render=True)
    assert inputs.perceptual_mask is None
    assert "shape_spread" not in coarse_losses(inputs, tr.stage.weights)[1]
    assert tr.stage.dataset.augment.tilt == 0 and tr.stage.dataset.augment.wide_roll == 0
    with pytest.raises(FacetwinError, match="data.pose_augment.tilte is not a large-pose option"):
        _cfg(prepared, tmp_path, "data.pose_augment.tilte=1")
    with pytest.raises(FacetwinError, match="data.oversample_turns"):
        _cfg(prepared, tmp_path, "data.oversample_turns=0.5")


def test_turn_oversampling_repeats_only_turned_crops(prepared, tmp_path):
    """data.oversample_turns repeats the crops whose labels show a strong head turn (|nose
    asymmetry| > 0.25): on the real folder (frontal photos) nothing, on labels moved to a turn
    exactly those."""
    from facetwin.data.prepared import PreparedDataset, load_manifest
    from facetwin.geometry.ibug68 import nose_asymmetry

    assert (PreparedDataset(prepared, 64, oversample_turns=3).repeats == 1).all()  # frontal photos
    records = load_manifest(prepared)
    for k, r in enumerate(records):  # turn the labels of every other crop: nose tip towards one jaw end
        lm = np.asarray(r["landmarks"], np.float64)
        if k % 2:
            lm[30] = lm[30] + 0.8 * (lm[0] - lm[30])
        r["landmarks"], r["gt_landmarks"] = lm.tolist(), None
    (tmp_path / "manifest.jsonl").write_text("\n".join(json.dumps(r) for r in records) + "\n")
    turned = np.abs(nose_asymmetry(np.stack([r["landmarks"] for r in records]))) > 0.25
    assert turned.tolist() == [bool(k % 2) for k in range(len(records))]
    more = PreparedDataset(tmp_path, 64, oversample_turns=3)
    assert more.repeats.tolist() == [3 if t else 1 for t in turned]
    assert (PreparedDataset(tmp_path, 64).repeats == 1).all()
