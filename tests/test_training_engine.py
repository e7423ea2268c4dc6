"""Training engine: exact resume, checkpoints/export, config overrides, torchrun with 2 gloo processes."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
from coarse_standins import SyntheticFaces, standin_head_model  # noqa: E402

from facetwin.errors import FacetwinError  # noqa: E402
from facetwin.training import checkpoint as ckpt  # noqa: E402
from facetwin.models import files  # noqa: E402
from facetwin.training.coarse_stage import CoarseConfig, CoarseStage  # noqa: E402
from facetwin.training.config import load_config, to_dict  # noqa: E402
from facetwin.training.engine import Trainer  # noqa: E402

TINY = ["model.image_size=32", "data.crop_size=32", "model.hidden=32", "run.batch_size=4", "run.log_every=1",
        "render=false", "loss.identity=0"]


def _cfg(out, *extra):
    return load_config(CoarseConfig, "coarse_smoke", TINY + [f"run.out_dir={out}", *extra])


def _trainer(cfg, data, **kw):
    return Trainer(CoarseStage(cfg, dataset=data, head_model=standin_head_model()), cfg.run, cfg.optim, to_dict(cfg), quiet=True, **kw)


@pytest.fixture(scope="module")
def data():
    return SyntheticFaces(n=24, size=32, seed=1)


def test_exact_resume_matches_uninterrupted_run(tmp_path, data):
    # workers=1 exercises per-sample seeding in a separate process; 24 images / 4 = 6 batches,
    # so 8 steps cross an epoch boundary.
    extra = ["run.steps=8", "run.checkpoint_every=3", "run.workers=1"]
    straight = _trainer(_cfg(tmp_path / "a", *extra), data)
    straight.train()
    first = _trainer(_cfg(tmp_path / "b", *extra), data, stop_at=5)
    first.train()
    assert ckpt.latest_checkpoint(tmp_path / "b" / "checkpoints").name == "step_0000005.safetensors"
    resumed = _trainer(_cfg(tmp_path / "b", *extra), data, resume="auto")
    resumed.train()
    assert resumed.step == 8
    a = straight.stage.model.state_dict()
    b = resumed.stage.model.state_dict()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    la = {r["step"]: r["loss"] for r in straight.history}
    lb = {r["step"]: r["loss"] for r in first.history + resumed.history}
    assert la == lb
    # The optimisation did something.
    assert la[1] != la[8]


def test_checkpoints_are_pruned_and_export_loads(tmp_path, data):
    cfg = _cfg(tmp_path, "run.steps=4", "run.checkpoint_every=1", "run.keep_last=2")
    tr = _trainer(cfg, data)
    tr.train()
    names = [p.name for _, p in ckpt.list_checkpoints(tmp_path / "checkpoints")]
    assert names == ["step_0000003.safetensors", "step_0000004.safetensors"]
    assert not list((tmp_path / "checkpoints").glob(".*tmp*"))
    state, meta = files.read_model_file(tmp_path / "export" / "coarse_encoder.safetensors")
    assert meta["step"] == 4 and meta["head_model"] == "standin"
    from facetwin.networks.coarse_encoder import build_from_config

    enc = build_from_config(meta["encoder"])
    enc.load_state_dict(state)
    ref = tr.stage.model.state_dict()
    for k, v in state.items():  # fp16 storage: equal to float16 rounding
        assert torch.allclose(v, ref[k].float(), rtol=1e-3, atol=1e-4), k
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(x)["step"] for x in lines] == [1, 2, 3, 4]


def test_warm_restart_starts_from_the_weights_and_counts_total_steps(tmp_path, data):
    _trainer(_cfg(tmp_path / "a", "run.steps=3"), data).train()
    init = tmp_path / "a" / "export" / "coarse_encoder.safetensors"
    # lr 0: the restarted run must still hold exactly the exported weights after its steps
    second = _trainer(_cfg(tmp_path / "b", "run.steps=2", "optim.lr=0", f"model.init_checkpoint={init}"), data)
    second.train()
    saved, _ = files.read_model_file(init)
    now = second.stage.model.state_dict()
    for k, v in saved.items():
        assert torch.equal(now[k].float(), v), k
    _, meta = files.read_model_file(tmp_path / "b" / "export" / "coarse_encoder.safetensors")
    assert meta["step"] == 2 and meta["total_steps"] == 5


def test_config_overrides_and_errors(tmp_path):
    cfg = load_config(CoarseConfig, "coarse", ["optim.lr=1e-4", "run.bf16=true", "loss.contour_mode=marching"])
    assert cfg.optim.lr == 1e-4 and cfg.run.bf16 is True and cfg.loss.contour_mode == "marching"
    abl = load_config(CoarseConfig, "coarse_ablation_marching")
    base = load_config(CoarseConfig, "coarse")
    assert abl.loss.contour_mode == "marching" and abl.run.steps == base.run.steps and abl.optim == base.optim
    with pytest.raises(FacetwinError, match="unknown config key"):
        load_config(CoarseConfig, "coarse", ["optim.lrr=1"])
    with pytest.raises(FacetwinError, match="config not found"):
        load_config(CoarseConfig, str(tmp_path / "nope.yaml"))


def _network_dtypes(tr):
    """Train ``tr`` and record the dtype of every Linear output of the network (under the stage's autocast)."""
    seen = set()
    hooks = []
    orig = tr.stage.setup

    def setup(info):
        orig(info)
        hooks.extend(m.register_forward_hook(lambda m, i, o: seen.add(o.dtype)) for m in tr.stage.model.modules()
                     if isinstance(m, torch.nn.Linear))

    tr.stage.setup = setup
    out = tr.train()
    for h in hooks:
        h.remove()
    return out, seen


def test_bf16_autocast_step_runs(tmp_path, data, monkeypatch):
    """Where the device has bf16 in hardware, run.bf16 runs the network's matrix products in bf16."""
    from facetwin.training import engine

    monkeypatch.setattr(engine.ddp, "native_bf16", lambda device: True)
    out, dtypes = _network_dtypes(_trainer(_cfg(tmp_path, "run.steps=2", "run.bf16=true"), data))
    assert out["step"] == 2 and torch.isfinite(torch.tensor(out["last"]["loss"]))
    assert torch.bfloat16 in dtypes and out["precision"] == "bf16"


def test_bf16_without_hardware_support_trains_in_float32_and_says_so(tmp_path, data, monkeypatch):
    """On a CPU without avx512_bf16 / AMX, bf16 autocast is many times slower than float32 (a person step
    4x, BENCHMARKS.md): run.bf16 then trains in float32, and the summary (what `facetwin train` prints) says so."""
    from facetwin.training import engine

    monkeypatch.setattr(engine.ddp, "native_bf16", lambda device: False)
    out, dtypes = _network_dtypes(_trainer(_cfg(tmp_path, "run.steps=2", "run.bf16=true"), data))
    assert out["step"] == 2 and dtypes == {torch.float32}
    assert out["precision"] == "float32" and CoarseStage.summary(out)["precision"] == "float32"


def test_native_bf16_reads_the_cpu():
    from facetwin.training.distributed import native_bf16

    cpu = torch.cpu
    expected = bool(cpu._is_avx512_bf16_supported() or cpu._is_amx_tile_supported()) if hasattr(cpu, "_is_avx512_bf16_supported") else None
    if expected is not None and os.uname().machine in ("x86_64", "AMD64"):
        assert native_bf16(torch.device("cpu")) is expected
    assert native_bf16(torch.device("meta")) is False


def test_outline_only_silhouette_option_trains(tmp_path, data):
    tr = _trainer(_cfg(tmp_path, "run.steps=2", "loss.silhouette_outline=true"), data)
    assert tr.stage.weights.silhouette_outline is True
    out = tr.train()
    assert out["step"] == 2 and out["last"]["silhouette"] > 0


WORKER = r'''
import sys, hashlib, json, torch
sys.path.insert(0, {tests!r})
from coarse_standins import SyntheticFaces, standin_head_model
from facetwin.training.coarse_stage import CoarseConfig, CoarseStage
from facetwin.training.config import load_config, to_dict
from facetwin.training.engine import Trainer
cfg = load_config(CoarseConfig, "coarse_smoke", {tiny!r} + ["run.out_dir=" + sys.argv[1], "run.steps=3", "run.threads=1", "run.find_unused_parameters=true"])
tr = Trainer(CoarseStage(cfg, dataset=SyntheticFaces(n=16, size=32, seed=2), head_model=standin_head_model()), cfg.run, cfg.optim, to_dict(cfg), quiet=True)
out = tr.train()
h = hashlib.sha1(b"".join(v.detach().numpy().tobytes() for v in tr.stage.model.state_dict().values())).hexdigest()
json.dump({{"rank": tr.info.rank, "world": tr.info.world_size, "hash": h, "step": out["step"],
           "unused": tr.wrapped.find_unused_parameters}}, open(sys.argv[1] + f"/rank{{tr.info.rank}}.json", "w"))
'''


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_torchrun_two_gloo_processes(tmp_path):
    script = tmp_path / "worker.py"
    script.write_text(WORKER.format(tests=str(Path(__file__).parent), tiny=TINY))
    out = tmp_path / "run"
    out.mkdir()
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(_free_port()),
           str(script), str(out)]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert res.returncode == 0, res.stderr[-3000:]
    ranks = [json.loads((out / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert all(r["world"] == 2 and r["step"] == 3 for r in ranks)
    assert all(r["unused"] is True for r in ranks)  # run.find_unused_parameters reaches DDP
    assert ranks[0]["hash"] == ranks[1]["hash"]  # DDP kept the replicas identical
    assert (out / "checkpoints" / "step_0000003.safetensors").is_file()
    records = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [1, 2, 3]
    state = ckpt.load_checkpoint(out / "checkpoints" / "step_0000003.safetensors")
    assert state["world_size"] == 2 and len(state["rng"]) == 2


def test_black_border_fill_only_touches_the_padding():
    import numpy as np

    from facetwin.data.prepared import black_border_mask, fill_black_border

    img = np.full((40, 40, 3), 120, np.uint8)
    img[:, :8] = 0          # padding on the left (as a crop leaving its source image)
    img[20:23, 20:23] = 0   # a dark pupil inside the face: not padding
    mask = black_border_mask(img)
    assert mask[:, :8].all() and not mask[:, 8:].any()
    donor = np.full((40, 40, 3), 200, np.uint8)
    np.random.seed(0)
    out = fill_black_border(img, donor)
    assert (out[:, :6] == 200).all()              # padding replaced
    assert (out[20:23, 20:23] == 0).all()         # the pupil stays
    assert (out[:, 12:] == img[:, 12:]).all()     # the face is untouched beyond the soft seam


def test_checkpoint_format_runs_no_code_and_round_trips(tmp_path):
    import pickle
    import random

    import numpy as np

    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    planted = tmp_path / "run" / "checkpoints" / "step_0000009.pt"
    planted.parent.mkdir(parents=True)
    planted.write_bytes(pickle.dumps({"model": Payload()}))
    with pytest.raises(FacetwinError, match="pickled checkpoint"):
        ckpt.load_checkpoint(ckpt.latest_checkpoint(planted.parent))
    assert not marker.exists()
    state = {"model": {"w": torch.randn(3, 2)}, "optimizer": {"state": {0: {"step": torch.tensor(4.0)}},
             "param_groups": [{"betas": (0.9, 0.95), "params": [0]}]}, "scheduler": {"last_epoch": 4, "x": float("nan")},
             "step": 4, "epoch": 0, "batch_in_epoch": 4, "rng": [ckpt.rng_state()]}
    path = ckpt.save_checkpoint(state, tmp_path / ckpt.checkpoint_name(4))
    back = ckpt.load_checkpoint(path)
    assert torch.equal(back["model"]["w"], state["model"]["w"])
    assert back["optimizer"]["state"][0]["step"].item() == 4.0 and back["optimizer"]["param_groups"][0]["betas"] == (0.9, 0.95)
    assert np.isnan(back["scheduler"]["x"])
    r = back["rng"][0]
    assert r["python"] == random.getstate() and torch.equal(r["torch"], torch.get_rng_state())
    assert all(np.array_equal(a, b) if isinstance(a, np.ndarray) else a == b for a, b in zip(r["numpy"], np.random.get_state()))
    # damaged: truncated file and a foreign safetensors file
    (tmp_path / "cut.safetensors").write_bytes(path.read_bytes()[:200])
    with pytest.raises(FacetwinError, match="damaged|not a"):
        ckpt.load_checkpoint(tmp_path / "cut.safetensors")


def test_run_folder_needs_resume_or_overwrite_and_metrics_continue(tmp_path, data):
    out = tmp_path / "run"
    first = _trainer(_cfg(out, "run.steps=4", "run.checkpoint_every=2"), data, stop_at=3)
    first.train()  # checkpoint at 2 and the stop at 3; records 1..3
    stale = out / "checkpoints" / ".step_0000004.safetensors.facetwin-tmp-999999999-abcd"
    stale.write_bytes(b"x" * 100)
    with pytest.raises(FacetwinError, match="already holds a training run"):
        _trainer(_cfg(out, "run.steps=4"), data).train()
    (out / "checkpoints" / "step_0000003.safetensors").unlink()  # as if killed before the last save
    resumed = _trainer(_cfg(out, "run.steps=4"), data, resume="auto")
    resumed.train()
    assert not stale.exists()
    steps = [json.loads(x)["step"] for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4]  # 3 re-made once, not twice
    again = _trainer(_cfg(out, "run.steps=2"), data, overwrite=True)
    again.train()
    steps = [json.loads(x)["step"] for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2]
    assert [s for s, _ in ckpt.list_checkpoints(out / "checkpoints")] == [2]


def test_ctrl_c_finishes_the_step_and_writes_a_checkpoint(tmp_path, data):
    import signal

    cfg = _cfg(tmp_path, "run.steps=6", "run.checkpoint_every=0")
    tr = _trainer(cfg, data)
    step_fn = tr.stage.training_step

    def interrupted_at_3(model, batch, step):
        if step == 2:
            signal.raise_signal(signal.SIGINT)
        return step_fn(model, batch, step)

    tr.stage.training_step = interrupted_at_3
    with pytest.raises(KeyboardInterrupt, match="interrupted at step 3"):
        tr.train()
    assert ckpt.latest_checkpoint(tmp_path / "checkpoints").name == "step_0000003.safetensors"
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    resumed = _trainer(cfg, data, resume="auto")
    resumed.train()
    assert resumed.step == 6


def test_own_pickled_checkpoints_convert_to_the_safe_format(tmp_path):
    import importlib.util

    import numpy as np

    spec = importlib.util.spec_from_file_location("convert_checkpoint", Path(__file__).parents[1] / "scripts" / "convert_checkpoint.py")
    conv = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(conv)
    state = {"model": {"w": torch.randn(4)}, "optimizer": {"state": {}, "param_groups": []}, "scheduler": {"last_epoch": 7},
             "step": 7, "epoch": 1, "batch_in_epoch": 1, "rng": [ckpt.rng_state()]}
    old = tmp_path / "step_0000007.pt"
    torch.save(state, old)
    new = conv.convert(old)
    assert ckpt.latest_checkpoint(tmp_path) == new
    back = ckpt.load_checkpoint(new)
    assert torch.equal(back["model"]["w"], state["model"]["w"]) and back["step"] == 7
    assert np.array_equal(back["rng"][0]["numpy"][1], state["rng"][0]["numpy"][1])
