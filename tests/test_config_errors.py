"""Every configuration mistake is one line on stderr and exit 2 — never a traceback (#13, config side).

The CLI is run in-process (``facetwin.cli.main.main``) for speed, plus once as a real subprocess.
"""

import subprocess
import sys

import pytest
import torch

from facetwin.cli.main import main
from facetwin.errors import FacetwinError
from facetwin.training.coarse_stage import CoarseConfig
from facetwin.training.config import load_config


def _fails(capsys, argv, match):
    code = main(argv)
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, (code, err)
    assert len(lines) == 1 and lines[0].startswith("facetwin: error: "), err
    assert "Traceback" not in err
    assert match in lines[0], lines[0]
    return lines[0]


def _train(tmp_path, *args, config="coarse_smoke"):
    return ["train", "coarse", "--config", str(config), "--out", str(tmp_path / "run"), *args]


@pytest.mark.parametrize("override, match", [
    ("loss.silhuette=1", "unknown config key loss.silhuette"),
    ("optim.lrr=1", "unknown config key optim.lrr"),
    ("render.enable=true", "unknown config key render.enable"),
    ("run.batch_size=0", "run.batch_size must be >= 1"),
    ("run.steps=-5", "run.steps must be >= 0"),
    ("run.bf16=maybe", "run.bf16 must be true or false"),
    ("optim.lr=nan", "optim.lr must be a finite number"),
    ("optim.lr=.inf", "optim.lr must be a finite number"),
    ("run.steps=ten", "run.steps must be a number"),
    ("run.steps=2.5", "run.steps must be a whole number"),
    ("model.size=huge", "model.size must be tiny, small or base"),
    ("model.hidden=[1, 2]", "model.hidden must be a number"),
    ("data.root=3", "data.root must be a string"),
    ("optim.betas=[0.9]", "optim.betas must be a list of 2 values"),
    ("optim.schedule=linear", "optim.schedule must be one of cosine, constant"),
    ("loss.contour_mode=wavy", "loss.contour_mode must be 'silhouette' or 'marching'"),
    ("loss.photometric=-1", "loss.photometric must be a finite weight >= 0"),
    ("loss.identity=yes", "loss.identity must be a number"),
    ("data.oversample=3", "data.oversample must be a mapping"),
    ("eval=5", "eval must be a mapping of keys"),
    ("run.steps.x=1", "run.steps is not a section"),
])
def test_bad_override_is_one_line_and_exit_2(capsys, tmp_path, override, match):
    _fails(capsys, _train(tmp_path, "--set", override), match)


def test_negative_steps_flag_and_bad_override_syntax(capsys, tmp_path):
    _fails(capsys, _train(tmp_path, "--steps", "-3"), "argument --steps: must be an integer >= 0")
    _fails(capsys, _train(tmp_path, "--set", "optim.lr"), "is not key=value")


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_without_cuda(capsys, tmp_path):
    _fails(capsys, _train(tmp_path, "--set", "run.device=cuda"), "run.device=cuda but no CUDA device")


def test_yaml_file_mistakes(capsys, tmp_path):
    selfref = tmp_path / "self.yaml"
    selfref.write_text("base: self.yaml\nrun:\n  steps: 1\n")
    _fails(capsys, _train(tmp_path, config=selfref), "'base:' makes a cycle (self.yaml → self.yaml)")
    (tmp_path / "a.yaml").write_text("base: b.yaml\n")
    (tmp_path / "b.yaml").write_text("base: a.yaml\n")
    _fails(capsys, _train(tmp_path, config=tmp_path / "a.yaml"), "cycle (a.yaml → b.yaml → a.yaml)")
    listed = tmp_path / "list.yaml"
    listed.write_text("- run\n- steps\n")
    _fails(capsys, _train(tmp_path, config=listed), "must be a mapping of sections")
    broken = tmp_path / "broken.yaml"
    broken.write_text("run: [1, 2\n")
    _fails(capsys, _train(tmp_path, config=broken), "cannot parse config")
    types = tmp_path / "types.yaml"
    types.write_text("base: coarse_smoke.yaml\nrun:\n  bf16: maybe\n")
    _fails(capsys, _train(tmp_path, config=types), "run.bf16 must be true or false, got 'maybe'")
    sections = tmp_path / "sections.yaml"
    sections.write_text("run:\n  batch_size: 0\n")
    _fails(capsys, _train(tmp_path, config=sections), "run.batch_size must be >= 1")
    _fails(capsys, _train(tmp_path, config=tmp_path / "missing.yaml"), "config not found")


def test_wrong_size_init_model_file_stops_at_start(capsys, tmp_path):
    from facetwin.headmodel import load_head_model
    from facetwin.models.coarse import CoarseModelConfig, build_encoder, export_encoder

    head = load_head_model("open")
    other = export_encoder(build_encoder(CoarseModelConfig(hidden=32), head, 30), tmp_path / "h32.safetensors", head.name)
    line = _fails(capsys, _train(tmp_path, "--set", f"model.init_checkpoint={other}", "--set", "data.root=/nonexistent"),
                  "model.init_checkpoint")
    assert "does not fit this model" in line
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"not a model file at all")
    _fails(capsys, _train(tmp_path, "--set", f"model.init_checkpoint={junk}"), "cannot read model file junk.safetensors")


def test_train_without_a_stage_and_unknown_stage(capsys):
    from facetwin.training.stages import stage_names

    _fails(capsys, ["train"], f"'facetwin train' needs a stage: {', '.join(stage_names())}")
    assert main(["train", "fit"]) == 2  # argparse: invalid choice, in one line
    err = capsys.readouterr().err
    assert "invalid choice" in err and err.startswith("facetwin: error: ") and len(err.strip().splitlines()) == 1


def test_loaded_config_is_typed_and_checked():
    cfg = load_config(CoarseConfig, "coarse", ["render.size=32", "loss.silhouette=3", "render=false"])
    assert cfg.loss.silhouette == 3.0 and isinstance(cfg.loss.silhouette, float)
    assert cfg.render.enabled is False  # `render: false` is short for render.enabled
    cfg = load_config(CoarseConfig, "coarse")
    assert cfg.render.enabled and cfg.render.size == 64 and cfg.render.landmark_only_steps == 500
    assert cfg.loss.contour_mode == "silhouette" and cfg.optim.betas == (0.9, 0.999)
    with pytest.raises(FacetwinError, match="loss.silhuette"):
        load_config(CoarseConfig, "coarse", ["loss.silhuette=1"])


def test_a_real_process_prints_one_line_and_exits_2(tmp_path):
    r = subprocess.run([sys.executable, "-m", "facetwin", "train", "coarse", "--out", str(tmp_path), "--set", "loss.silhuette=1"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.strip().splitlines() == [r.stderr.strip()] and "unknown config key loss.silhuette" in r.stderr
