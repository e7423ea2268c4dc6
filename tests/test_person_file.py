"""The person file is a model file of kind ``person`` (facetwin.models.files): written and read by
the one model-file implementation, small, and refused with one line when it is bad — truncated,
NaN, of another kind, newer, or made for another base model. No training: the person parameters
are the shipped encoder's with adapters, perturbed."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from facetwin.errors import FacetwinError
from facetwin.models import files
from facetwin.models.coarse import DEFAULT_MODEL_FILE, load_coarse_model
from facetwin.models.person import (
    BETA_MEAN, FORMAT, attach_person, check_base, load_person, person_state, prepare_encoder, read_person, write_person,
)

pytestmark = pytest.mark.skipif(not DEFAULT_MODEL_FILE.is_file(), reason="no shipped coarse model file")


def _person(tmp_path, width=32, name="anna.facetwin"):
    """A person file on the shipped base: adapters of ``width`` with random (non-zero) weights."""
    model, _ = load_coarse_model()
    prepare_encoder(model.encoder, width)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.encoder.transfer_parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=g))
    state = person_state(model.encoder)
    beta = torch.linspace(-1.0, 1.0, model.encoder.layout.n_shape)
    meta = {"base_sha256": files.file_sha256(DEFAULT_MODEL_FILE), "base_checkpoint": DEFAULT_MODEL_FILE.name,
            "adapter_width": width, "head_model": "open", "frames": {"train": 3}, "command": "test",
            "precision": "float32"}
    path = write_person(tmp_path / name, state, beta, 0.1 * beta.abs(), meta)
    return path, model, state, beta


def test_person_file_is_a_model_file_of_kind_person(tmp_path):
    path, model, state, beta = _person(tmp_path)
    assert FORMAT == "facetwin-person/1" == files.format_name(files.PERSON)
    assert files.read_metadata(path)["format"] == FORMAT
    assert not files.sidecar_path(path).exists()  # no NAME.json beside the user's file
    tensors, meta = files.read_model_file(path, files.PERSON)  # the one reader
    assert meta["base_sha256"] == files.file_sha256(DEFAULT_MODEL_FILE) and meta["dtype"] == "float16"
    p = read_person(path)
    assert set(p.state) == set(state)
    for k, v in state.items():  # fp16 storage: within half-precision rounding of the written values
        assert torch.allclose(p.state[k], v, rtol=1e-3, atol=1e-4), k
    assert torch.equal(p.beta_mean, beta)  # the identity is stored exactly (fp32)
    # ViT-Tiny at width 32: 159,744 person parameters at 2 bytes, ~2.9 % of the base file
    assert path.stat().st_size <= 0.05 * DEFAULT_MODEL_FILE.stat().st_size
    assert path.stat().st_size >= 2 * 159_744
    # attached to a fresh base encoder it reproduces the perturbed model's outputs
    fresh, _ = load_coarse_model()
    load_person(path, fresh.encoder, DEFAULT_MODEL_FILE, fix_identity=False)
    x = torch.rand(2, 3, 128, 128, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        got, want = fresh.encoder(x), model.encoder.eval()(x)
    assert torch.allclose(got.expression, want.expression, atol=5e-3)


def test_bad_person_files_are_refused_with_one_line(tmp_path):
    path, *_ = _person(tmp_path)
    data = path.read_bytes()
    truncated = tmp_path / "truncated.facetwin"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(FacetwinError, match=r"cannot read person file truncated\.facetwin: not a complete safetensors file"):
        read_person(truncated)
    with pytest.raises(FacetwinError, match="not a facetwin person file"):
        read_person(DEFAULT_MODEL_FILE)  # a coarse-encoder model file: the wrong kind
    with pytest.raises(FacetwinError, match="person file not found"):
        read_person(tmp_path / "missing.facetwin")
    # NaN in one adapter
    tensors, meta = files.read_model_file(path, files.PERSON)
    key = next(k for k in tensors if ".adapter.up.weight" in k)
    tensors[key][0, 0] = float("nan")
    nan = files.write_model_file(tmp_path / "nan.facetwin", tensors, files.PERSON, meta, sidecar=False)
    with pytest.raises(FacetwinError, match=rf"NaN or infinite weights \(in {key}\)"):
        read_person(nan)
    # a newer version of the format, and one without its identity
    from safetensors.torch import save_file

    newer = tmp_path / "newer.facetwin"
    save_file({"w": torch.zeros(2)}, str(newer), metadata={"facetwin": json.dumps({**meta, "format": "facetwin-person/9"})})
    with pytest.raises(FacetwinError, match="newer than this facetwin"):
        read_person(newer)
    no_beta = {k: v for k, v in files.read_model_file(path, files.PERSON)[0].items() if k != BETA_MEAN}
    damaged = files.write_model_file(tmp_path / "damaged.facetwin", no_beta, files.PERSON, meta, sidecar=False)
    with pytest.raises(FacetwinError, match="damaged person file"):
        read_person(damaged)


def test_a_person_file_of_another_base_model_is_refused(tmp_path):
    path, *_ = _person(tmp_path)
    state, meta = files.read_model_file(DEFAULT_MODEL_FILE, files.COARSE_ENCODER)
    key = next(iter(state))
    state[key] = state[key] + 1e-2  # same architecture, other weights
    other = files.write_model_file(tmp_path / "other.safetensors", state, files.COARSE_ENCODER, meta)
    with pytest.raises(FacetwinError, match=r"anna\.facetwin was made for another base model \(coarse_encoder\.safetensors"):
        check_base(read_person(path), other)
    # a header whose adapter width does not match its tensors: refused, not loaded half-way
    tensors, pmeta = files.read_model_file(path, files.PERSON)
    lying = files.write_model_file(tmp_path / "lying.facetwin", tensors, files.PERSON, {**pmeta, "adapter_width": 16},
                                   exact=(BETA_MEAN, "person.beta_std"), sidecar=False)
    with pytest.raises(FacetwinError, match=r"lying\.facetwin does not fit this encoder \(vit\.blocks\.0\.adapter\.down\.bias: \(32,\) vs \(16,\)\)"):
        attach_person(load_coarse_model()[0].encoder, read_person(lying))


@pytest.mark.parametrize("damage", ["truncated", "base"])
def test_cli_refuses_a_bad_person_file_with_one_line_and_exit_2(tmp_path, damage):
    path, *_ = _person(tmp_path)
    args = ["--person", str(path)]
    if damage == "truncated":
        path.write_bytes(path.read_bytes()[:1000])
        want = "cannot read person file anna.facetwin"
    else:
        state, meta = files.read_model_file(DEFAULT_MODEL_FILE, files.COARSE_ENCODER)
        state["head.weight" if "head.weight" in state else next(iter(state))] += 1e-2
        other = files.write_model_file(tmp_path / "other.safetensors", state, files.COARSE_ENCODER, meta)
        args += ["--model", str(other)]
        want = "was made for another base model"
    photo = tmp_path / "p.png"
    from PIL import Image

    Image.new("RGB", (64, 64), (128, 128, 128)).save(photo)
    r = subprocess.run([sys.executable, "-m", "facetwin", "reconstruct", str(photo), "--out", str(tmp_path / "out"), *args],
                       capture_output=True, text=True)
    assert r.returncode == 2, r.stderr
    assert r.stderr.count("\n") == 1 and want in r.stderr and "Traceback" not in r.stderr


def test_info_describes_a_person_file_and_whether_it_fits_the_shipped_base(tmp_path):
    path, *_ = _person(tmp_path)
    tensors, meta = files.read_model_file(path, files.PERSON)
    other = files.write_model_file(tmp_path / "bob.facetwin", tensors, files.PERSON, {**meta, "base_sha256": "0" * 64},
                                   exact=(BETA_MEAN, "person.beta_std"), sidecar=False)
    got = {}
    for p in (path, other):
        r = subprocess.run([sys.executable, "-m", "facetwin", "info", str(p), "--json"], capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        got[p.name] = json.loads(r.stdout.splitlines()[-1])
    anna = got["anna.facetwin"]
    assert anna["kind"] == "person file" and anna["format"] == FORMAT and anna["bytes"] == path.stat().st_size
    assert anna["sha256"] == files.file_sha256(path)[:16] and anna["frames"] == {"train": 3}
    assert anna["base_model"] == DEFAULT_MODEL_FILE.name and anna["adapter_width"] == 32 and anna["command"] == "test"
    assert anna["precision"] == "float32"
    assert anna["fits_shipped_base_model"] is True and got["bob.facetwin"]["fits_shipped_base_model"] is False
    base = files.describe(DEFAULT_MODEL_FILE)  # the base model file: its kind and input size
    assert base["kind"] == "coarse-encoder model file" and base["input_size"] == 224 and "base_model" not in base
    assert files.input_size(DEFAULT_MODEL_FILE) == 224
    (tmp_path / "x.facetwin").write_text("not a model")
    r = subprocess.run([sys.executable, "-m", "facetwin", "info", str(tmp_path / "x.facetwin")], capture_output=True, text=True)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "not a safetensors file" in r.stderr
