"""The detail stages under the one engine: a training step, exact resume (teacher and MAE, with the
frozen teacher and L_dc), the periodic held-out evaluation, the model files and their refusals, the
warm start from a model file."""

import json
import subprocess
import sys
from types import SimpleNamespace

import pytest
import torch
from torch.utils.data import Dataset

from facetwin.errors import FacetwinError
from facetwin.models import files
from facetwin.training import checkpoint as ckpt
from facetwin.training.config import load_config, to_dict
from facetwin.training.detail_stage import DetailConfig, DetailStage, DetailTeacherStage, held_out
from facetwin.training.engine import Trainer


class SyntheticClips(Dataset):
    """Brow-raise renders of the open head model with known forehead lines: ``clips`` people
    (β) × ``frames`` expressions each, one identity per clip (the prepared-data batch keys)."""

    def __init__(self, clips=3, frames=4, size=64, seed=0):
        from facetwin.evaluation.synthetic_details import SyntheticDetails
        from facetwin.headmodel import load_head_model

        gen = SyntheticDetails(load_head_model("open"), image_size=size, map_size=32)
        g = torch.Generator().manual_seed(seed)
        imgs, ids = [], []
        with torch.no_grad():
            for c in range(clips):
                s = gen.brow_raise(batch=frames, seed=seed * 100 + c, strength=(0.0, 1.0))
                imgs.append(s.image)
                ids += [c] * frames
        self.images = torch.cat(imgs)
        self.identity_of = torch.tensor(ids).numpy()
        self.noise = 0.01 * torch.randn(self.images.shape, generator=g)

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        img = (self.images[i] + self.noise[i]).clamp(0, 1)
        return {"image": img, "skin": torch.ones(1, *img.shape[1:]), "identity": torch.tensor(int(self.identity_of[i]))}


@pytest.fixture(scope="module")
def data():
    return SyntheticClips()


@pytest.fixture(scope="module")
def coarse():
    from facetwin.models.coarse import load_coarse_model

    return load_coarse_model()[0]


def _cfg(stage_cls, out, *extra):
    name = "detail-teacher_smoke" if stage_cls is DetailTeacherStage else "detail_smoke"
    return load_config(DetailConfig, name, [f"run.out_dir={out}", "model.coarse_model=default", *extra])


def _trainer(stage_cls, cfg, data, coarse, **kw):
    stage = stage_cls(cfg, dataset=data, coarse=coarse, eval_dataset=data)
    return Trainer(stage, cfg.run, cfg.optim, to_dict(cfg) | {"command": "facetwin train test"}, quiet=True, **kw)


def _exact_resume(stage_cls, tmp_path, data, coarse, *extra):
    extra = ["run.steps=4", "run.checkpoint_every=2", *extra]
    straight = _trainer(stage_cls, _cfg(stage_cls, tmp_path / "a", *extra), data, coarse)
    straight.train()
    first = _trainer(stage_cls, _cfg(stage_cls, tmp_path / "b", *extra), data, coarse, stop_at=2)
    first.train()
    assert ckpt.latest_checkpoint(tmp_path / "b" / "checkpoints").name == "step_0000002.safetensors"
    resumed = _trainer(stage_cls, _cfg(stage_cls, tmp_path / "b", *extra), data, coarse, resume="auto")
    resumed.train()
    a, b = straight.stage.model.state_dict(), resumed.stage.model.state_dict()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    la = {r["step"]: r["loss"] for r in straight.history if "loss" in r}
    lb = {r["step"]: r["loss"] for r in first.history + resumed.history if "loss" in r}
    assert la == lb and la[1] != la[4]
    return straight


@pytest.fixture(scope="module")
def teacher_run(tmp_path_factory, data, coarse):
    tmp = tmp_path_factory.mktemp("teacher")
    tr = _exact_resume(DetailTeacherStage, tmp, data, coarse, "run.eval_every=4", "optim.lr=3e-3")
    return tr, tmp / "a" / "export" / "detail_unet.safetensors"


def test_teacher_step_exact_resume_and_evaluation(teacher_run):
    tr, path = teacher_run
    rec = [r for r in tr.history if "loss" in r]
    assert {"photometric", "smoothness", "displacement_reg", "d_abs_mm"} <= set(rec[-1])
    assert "teacher" not in rec[-1] and "symmetry" not in rec[-1]
    ev = [r for r in tr.history if "eval/photometric_coarse" in r]
    assert len(ev) == 1 and ev[0]["step"] == 4
    assert 0 < ev[0]["eval/photometric_coarse"] < 0.5 and ev[0]["eval/photometric_detail"] > 0
    assert path.is_file()


def test_mae_step_with_frozen_teacher_and_detail_consistency(tmp_path, teacher_run, data, coarse):
    _, teacher = teacher_run
    tr = _exact_resume(DetailStage, tmp_path, data, coarse, f"teacher={teacher}", "data.identity_batches=true")
    rec = [r for r in tr.history if "loss" in r][-1]
    # every term of L_animD: L_UNet + L_Tchr + L_sym + L_dc (the swapped frame of the same clip)
    for k in ("photometric", "smoothness", "teacher", "symmetry", "consistency/photometric", "consistency/teacher"):
        assert k in rec, k
    # the teacher stayed frozen: its weights are the file's
    net_t = tr.stage.teacher
    state, _ = files.read_model_file(teacher, files.DETAIL_UNET)
    for k, v in net_t.state_dict().items():
        assert torch.equal(v, state[k]), k
    # mini-batches hold frames of one clip in groups
    import numpy as np

    batches = tr.stage.epoch_batches(0, np.random.default_rng(0), 4)
    for b in batches:
        ids = data.identity_of[b]
        assert len(set(ids[:2])) == 1 and len(set(ids[2:])) == 1


def test_a_distillation_phase_without_renders_has_the_same_map_terms(tmp_path, teacher_run, data, coarse):
    """loss.photometric 0 (a distillation phase): no renders, and the map terms — L_Tchr, L_sym,
    L_smo, L_regD and L_dc's teacher term on the swapped D — equal the full step's to float rounding."""
    from facetwin.losses.detail import detail_losses

    _, teacher = teacher_run
    cfg = _cfg(DetailStage, tmp_path / "d", f"teacher={teacher}", "data.identity_batches=true", "run.steps=1")
    trainer = _trainer(DetailStage, cfg, data, coarse)
    trainer.train()  # sets the stage up (and one step makes D non-zero)
    stage = trainer.stage
    batch = {k: torch.stack([data[i][k] for i in range(4)]) for k in ("image", "skin", "identity")}
    net, dm = stage.model, stage.detail
    with torch.no_grad():
        out = {}
        for render in (True, False):
            inputs, _, _ = dm.loss_inputs(batch, network=net, teacher=stage.teacher, consistency=True, render=render)
            assert (inputs.render is None) == (not render) and (inputs.swapped_render is None) == (not render)
            assert inputs.swapped_displacement is not None
            out[render] = detail_losses(inputs, stage.weights, features=stage.features)
    assert "photometric" in out[True] and "photometric" not in out[False] and "mrf" not in out[False]
    for k in ("teacher", "symmetry", "smoothness", "displacement_reg", "consistency/teacher"):
        torch.testing.assert_close(out[False][k], out[True][k], rtol=1e-5, atol=1e-7)
    # the stage picks the render-free step from the weights
    tr = _trainer(DetailStage, _cfg(DetailStage, tmp_path / "e", f"teacher={teacher}", "data.identity_batches=true",
                                    "loss.photometric=0", "run.steps=2"), data, coarse)
    tr.train()
    rec = [r for r in tr.history if "loss" in r][-1]
    assert "teacher" in rec and "consistency/teacher" in rec and "photometric" not in rec and "mrf" not in rec


def test_model_file_round_trip_and_refusals(tmp_path, teacher_run, coarse):
    from facetwin.models.coarse import DEFAULT_MODEL_FILE
    from facetwin.models.detail import file_sha256, load_detail_model, read_detail_network

    tr, path = teacher_run
    net, meta = read_detail_network(path)
    assert meta["format"] == "facetwin-detail-unet/1" and meta["network"]["kind"] == "unet"
    assert meta["coarse_model"]["sha256"] == file_sha256(DEFAULT_MODEL_FILE)
    assert meta["command"] == "facetwin train test" and meta["inference"]["map_size"] == 32
    ref = tr.stage.model.state_dict()
    for k, v in net.state_dict().items():  # fp16 storage
        assert torch.allclose(v, ref[k].float(), rtol=1e-3, atol=1e-4), k
    model, meta = load_detail_model(path, coarse=coarse)
    assert meta["coarse_matches"] is True and model.map_size == 32
    # the wrong kind, a coarse file, NaN weights: one clear line each
    with pytest.raises(FacetwinError, match="not a facetwin detail model file"):
        read_detail_network(path, "mae")
    with pytest.raises(FacetwinError, match="not a facetwin detail model file"):
        read_detail_network(DEFAULT_MODEL_FILE)
    state, meta = files.read_model_file(path)
    state[next(iter(state))][..., 0] = float("nan")
    bad = files.write_model_file(tmp_path / "bad.safetensors", state, files.DETAIL_UNET, meta)
    with pytest.raises(FacetwinError, match="NaN"):
        read_detail_network(bad)
    (tmp_path / "junk.safetensors").write_bytes(b"not a model")
    with pytest.raises(FacetwinError, match="not a safetensors file"):
        read_detail_network(tmp_path / "junk.safetensors")


def test_cli_bad_detail_model_is_one_line_exit_2(tmp_path):
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"not a model")
    p = subprocess.run([sys.executable, "-m", "facetwin", "reconstruct", "facetwin/assets/astronaut.png", "--out",
                        str(tmp_path / "o"), "--detail", str(junk)], capture_output=True, text=True)
    assert p.returncode == 2, p.stderr
    assert len(p.stderr.strip().splitlines()) == 1 and "Traceback" not in p.stderr, p.stderr


def test_configs_load_and_hold_out_three_people():
    for name, net in (("detail-teacher", "unet"), ("detail", "mae")):
        cfg = load_config(DetailConfig, name)
        assert cfg.model.network == net and len(cfg.data.holdout) >= 3
    cfg = load_config(DetailConfig, "detail")
    assert cfg.data.identity_batches and cfg.data.images_per_identity >= 2 and cfg.teacher
    assert held_out("videos/smirk_skarsgard.mp4#f000012", cfg.data.holdout)
    assert not held_out("videos/eamm_fear.mp4#f000012", cfg.data.holdout)
    with pytest.raises(FacetwinError, match="model.network"):
        load_config(DetailConfig, "detail", ["model.network=vgg"])
    with pytest.raises(FacetwinError, match="unknown detail loss weight|unknown config key"):
        load_config(DetailConfig, "detail", ["loss.wrinkles=1"])
    json.dumps(to_dict(cfg))


def test_warm_start_from_a_model_file_and_its_refusal(tmp_path, teacher_run, data, coarse):
    """``model.init``: the network starts from the file's weights (fp16 there); another network shape is one line."""
    from facetwin.models.detail import read_detail_network

    _, teacher = teacher_run
    start, _ = read_detail_network(teacher, "unet")
    cfg = _cfg(DetailTeacherStage, tmp_path / "w", f"model.init={teacher}", "run.steps=1")
    stage = DetailTeacherStage(cfg, dataset=data, coarse=coarse, eval_dataset=data)
    stage.setup(SimpleNamespace(device=torch.device("cpu"), is_main=True))
    for k, v in start.state_dict().items():
        assert torch.equal(stage.model.state_dict()[k], v), k
    wider = _cfg(DetailTeacherStage, tmp_path / "x", f"model.init={teacher}", "model.unet.width=12")
    with pytest.raises(FacetwinError, match="is another unet than model.unet describes"):
        DetailTeacherStage(wider, dataset=data, coarse=coarse, eval_dataset=data).setup(
            SimpleNamespace(device=torch.device("cpu"), is_main=True))


def test_a_v1_mae_file_loads_as_the_linear_head_mae_it_was(tmp_path):
    """facetwin-detail-mae/1 (before the convolutional decoder) names no decoder: it upgrades to a
    linear head straight to D, with the same weights and outputs; v1 files that name the decoder keep it."""
    from facetwin.models.detail import build_network, read_detail_network
    from facetwin.networks.detail_mae import DetailMAEConfig

    old_cfg = {"map_size": 32, "patch_size": 8, "embed_dim": 32, "depth": 1, "num_heads": 2, "mlp_ratio": 4.0,
               "in_channels": 5, "max_displacement": 0.01}
    net = build_network("mae", DetailMAEConfig(**old_cfg, refine=0))
    torch.nn.init.normal_(net.head.weight, std=0.05)
    path = tmp_path / "old.safetensors"
    from safetensors.torch import save_file

    meta = {"format": "facetwin-detail-mae/1", "network": {"kind": "mae", "config": old_cfg}}
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(path), metadata={files.HEADER_KEY: json.dumps(meta)})
    again, meta = read_detail_network(path)
    assert meta["format"] == "facetwin-detail-mae/2" and meta["network"]["config"]["refine"] == 0
    assert not hasattr(again, "decoder")
    x = (torch.rand(1, 3, 32, 32), torch.ones(1, 1, 32, 32), torch.rand(1, 1, 32, 32))
    with torch.no_grad():
        torch.testing.assert_close(again(*x), net(*x), atol=0, rtol=0)
    kept = files.upgrade({"format": "facetwin-detail-mae/1", "network": {"kind": "mae", "config": dict(old_cfg, refine=8, skip=True)}})
    assert kept["network"]["config"]["refine"] == 8 and kept["network"]["config"]["skip"] is True
