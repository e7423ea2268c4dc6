"""Person-specific transfer (issue #15, coarse part): adapters, the person stage, the person file,
``--person`` and ``evaluate person`` — on the shipped base model and real photos of one person."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from facetwin.errors import FacetwinError
from facetwin.models.coarse import DEFAULT_MODEL_FILE as DEFAULT_CHECKPOINT
from facetwin.models.coarse import load_coarse_model
from facetwin.models.person import (
    check_base, file_sha256, fix_shape, load_person, person_parameter_names, prepare_encoder, read_person,
)

pytestmark = pytest.mark.skipif(not DEFAULT_CHECKPOINT.is_file(), reason="no shipped coarse checkpoint")
PHOTOS = ["img1.jpg", "img2.jpg", "img4.jpg", "img5.jpg"]


@pytest.fixture(scope="module")
def person_photos(shared_data, tmp_path_factory):
    src = shared_data / "multi-image" / "deepface_person_a"
    if not src.is_dir():
        pytest.skip(f"{src} not found")
    folder = tmp_path_factory.mktemp("photos")
    for name in PHOTOS:  # a few photos only (CPU); symlinks, nothing copied into the repository
        (folder / name).symlink_to(src / name)
    return folder


@pytest.fixture(scope="module")
def prepared(person_photos, tmp_path_factory):
    from facetwin.training.personalize import prepare_person

    out = tmp_path_factory.mktemp("work") / "prepared"
    prepare_person([str(person_photos)], out, progress=False)
    return out


def _crops(prepared, n=4):
    from facetwin.data.prepared import PreparedDataset

    ds = PreparedDataset(prepared, 128, augment=False, preload=True)
    return torch.stack([ds[i]["image"] for i in range(min(n, len(ds)))]), ds


def _batch(prepared, n=4):
    """Crops with their labels and skin masks, as a training batch."""
    images, ds = _crops(prepared, n)
    return {"image": images, "landmarks": torch.stack([ds[i]["landmarks"] for i in range(len(images))]),
            "skin": torch.stack([ds[i]["skin"] for i in range(len(images))])}


def test_adapters_are_the_identity_at_insertion(prepared):
    images, _ = _crops(prepared)
    model, _ = load_coarse_model()
    with torch.no_grad():
        before = model.encoder(images)
        params = prepare_encoder(model.encoder, 32)
        after = model.encoder(images)
    assert all(b.adapter is not None for b in model.encoder.vit.blocks)
    for k, v in before.as_dict().items():
        assert torch.equal(v, getattr(after, k)), k
    trainable = [p for p in model.encoder.parameters() if p.requires_grad]
    assert {id(p) for p in trainable} == {id(p) for p in params}
    # adapters (12 × (192·32 + 32 + 32·192 + 192)) + 25 layer norms of 192 (weight + bias)
    assert sum(p.numel() for p in trainable) == 12 * (2 * 192 * 32 + 32 + 192) + 25 * 2 * 192
    names = person_parameter_names(model.encoder)
    assert all(".adapter." in n or ".norm" in n or n.startswith("vit.norm.") for n in names)
    assert not any(n.startswith("head.") for n in names)


@pytest.fixture(scope="module")
def trained(prepared, tmp_path_factory):
    """A short personalisation (10 steps) on 4 real photos, through the engine."""
    from facetwin.training.personalize import personalize

    out = tmp_path_factory.mktemp("person") / "a.facetwin"
    base_state = {k: v.clone() for k, v in load_coarse_model()[0].encoder.state_dict().items()}
    summary, stage = personalize(prepared, out, DEFAULT_CHECKPOINT, minutes=30, max_steps=10, batch_size=4, threads=1,
                                 progress=False, command="test")
    return {"out": out, "summary": summary, "stage": stage, "base_state": base_state}


def test_only_person_parameters_change(trained):
    stage, base = trained["stage"], trained["base_state"]
    after = stage.model.state_dict()
    person = set(person_parameter_names(stage.model))
    frozen = [k for k in base if k not in person]
    assert len(frozen) > 100
    for k in frozen:
        assert torch.equal(after[k], base[k]), f"base weight {k} changed"
    changed = [k for k in person if ".adapter.up." in k and after[k].abs().max() > 0]
    assert len(changed) == 24  # every adapter's up-projection (weight + bias) left zero
    assert any(not torch.equal(after[k], base[k]) for k in person if k in base)  # layer norms moved
    assert trained["summary"]["steps"] == 10


def test_personalize_lowers_the_training_loss(trained, prepared):
    """L_C (Eq. 2, the base model's weights, no augmentation) on the person's photos before and after."""
    from facetwin.losses.coarse import coarse_losses

    stage = trained["stage"]
    images, ds = _crops(prepared)
    batch = {"image": images, "landmarks": torch.stack([ds[i]["landmarks"] for i in range(len(images))]),
             "skin": torch.stack([ds[i]["skin"] for i in range(len(images))]), "identity": torch.zeros(len(images), dtype=torch.long)}
    base_enc = load_coarse_model()[0].encoder
    with torch.no_grad():
        losses = []
        for enc in (base_enc, stage.model.eval()):  # the base: its own per-frame β; the person: its trained β
            inputs, _ = stage.forward(enc, batch)
            losses.append(float(coarse_losses(inputs, stage.weights, identity_loss=stage.identity_loss)[0]))
    # 10 steps: -1.8 % with the identity head's β (the base already fits these faces better), -3 % or more without
    assert losses[1] < 0.99 * losses[0], losses


def test_the_person_has_one_trained_beta(trained, prepared):
    """Every frame is reconstructed with the person's one β, a parameter learnt with the adapters
    from its start (the base model's mean β over the frames); the person file carries it."""
    from facetwin.training.person_stage import PERSON_BETA

    stage = trained["stage"]
    beta, start = getattr(stage.model, PERSON_BETA).detach(), getattr(stage.model, PERSON_BETA + "_start")
    assert 1e-3 < float((beta - start).abs().max()) < 1.0  # moved, a little: 10 steps
    assert stage.weights.shape_consistency == 0.0  # satisfied by construction
    images, ds = _crops(prepared)
    batch = {"image": images, "landmarks": torch.stack([ds[i]["landmarks"] for i in range(len(images))])}
    with torch.no_grad():
        _, geo = stage.forward(stage.model.eval(), batch, with_render=False)
    torch.testing.assert_close(geo.params.shape, beta.expand_as(geo.params.shape))
    person = read_person(trained["out"])
    torch.testing.assert_close(person.beta_mean, beta.float(), rtol=0, atol=1e-6)
    assert float(person.beta_std.max()) > 0  # the spread: the adapted encoder's own per-frame β


def test_person_file_size_metadata_and_roundtrip(trained, prepared):
    out = trained["out"]
    base_size = DEFAULT_CHECKPOINT.stat().st_size
    assert out.stat().st_size <= 0.05 * base_size
    p = read_person(out)
    assert p.meta["base_sha256"] == file_sha256(DEFAULT_CHECKPOINT)
    assert p.meta["frames"]["total"] == len(PHOTOS) and p.meta["command"] == "test"
    assert p.meta["head_model"] == "open" and p.meta["adapter_width"] == 32 and p.meta["dtype"] == "float16"
    assert p.meta["training_seconds"] > 0 and "loss" in p.meta["config"]
    # photos only: the photo-set L_id weights were used, and recorded
    person_cfg = p.meta["config"]["person"]
    assert (person_cfg["identity_on_beta"], person_cfg["identity_on_appearance"]) == (1.0, 5.0)
    assert (trained["summary"]["identity_on_beta"], trained["summary"]["identity_on_appearance"]) == (1.0, 5.0)
    assert p.beta_mean.shape == (100,) and (p.beta_std > 0).any()
    # loaded onto the base it gives the trained model's outputs (fp16 storage), and its β everywhere
    images, _ = _crops(prepared)
    model, _ = load_coarse_model()
    load_person(out, model.encoder, DEFAULT_CHECKPOINT, fix_identity=False)
    with torch.no_grad():
        got = model.encoder(images)
        want = trained["stage"].model.eval()(images)
    assert torch.allclose(got.expression, want.expression, atol=2e-3)
    assert torch.allclose(got.shape, want.shape, atol=5e-3)
    handle = fix_shape(model.encoder, p.beta_mean)
    with torch.no_grad():
        fixed = model.predict(images)  # the coarse model puts the person's β in place of the per-image one
        free_l2d = model.geometry(model.encoder(model.encoder_input(images)), images.shape[-1]).landmarks2d
        fixed_l2d = model.geometry(fixed, images.shape[-1]).landmarks2d
    handle.remove()
    assert torch.allclose(fixed.shape, p.beta_mean.expand(len(images), -1))
    assert torch.allclose(fixed.expression, got.expression, atol=1e-5)
    # the camera is re-fitted to the person's β: the inner landmarks' centroid stays where the encoder put it
    torch.testing.assert_close(fixed_l2d[:, 17:].mean(1), free_l2d[:, 17:].mean(1), rtol=0, atol=1e-2)
    with torch.no_grad():
        assert not torch.allclose(model.predict(images).shape, fixed.shape)  # removed: per-image β again


def test_person_file_is_refused_for_another_base_model(trained, tmp_path):
    from safetensors.torch import load_file, save_file

    state = load_file(str(DEFAULT_CHECKPOINT))
    from safetensors import safe_open

    with safe_open(str(DEFAULT_CHECKPOINT), framework="pt") as fh:
        meta = fh.metadata()
    key = next(iter(state))
    state[key] = state[key] + 1e-3  # another base model with the same architecture
    other = tmp_path / "other_base.safetensors"
    save_file(state, str(other), metadata=meta)
    shutil.copy(DEFAULT_CHECKPOINT.with_suffix(".json"), other.with_suffix(".json"))  # the shipped file's sidecar metadata
    with pytest.raises(FacetwinError, match="made for another base model"):
        check_base(read_person(trained["out"]), other)
    # through the CLI: one line on stderr, exit code 2
    r = subprocess.run([sys.executable, "-m", "facetwin", "evaluate", "landmarks", "/nonexistent", "--checkpoint", str(other),
                        "--person", str(trained["out"])], capture_output=True, text=True)
    assert r.returncode == 2
    assert r.stderr.count("\n") == 1 and "made for another base model" in r.stderr and "Traceback" not in r.stderr
    with pytest.raises(FacetwinError, match="not a facetwin person file"):
        read_person(DEFAULT_CHECKPOINT)


def test_facetwin_api_uses_the_person_identity(trained, person_photos):
    from facetwin.inference.reconstructor import FaceTwin

    ft = FaceTwin(person=trained["out"])
    r1, r2 = (ft.reconstruct(person_photos / n) for n in PHOTOS[:2])
    assert np.allclose(r1.params["shape"], r2.params["shape"])
    assert np.allclose(r1.params["shape"], ft.person.beta_mean.numpy(), atol=1e-6)
    assert not np.allclose(r1.params["expression"], r2.params["expression"])
    base = FaceTwin()
    b1, b2 = (base.reconstruct(person_photos / n) for n in PHOTOS[:2])
    assert not np.allclose(b1.params["shape"], b2.params["shape"])


def test_evaluate_person_json(prepared, person_photos, tmp_path):
    work = tmp_path / "work"
    shutil.copytree(prepared, work / "prepared")  # reuse the crops (prepare resumes)
    t0 = time.time()
    r = subprocess.run([sys.executable, "-m", "facetwin", "evaluate", "person", str(person_photos), "--leave-out", "2",
                        "--folds", "1", "--max-steps", "3", "--batch-size", "4", "--threads", "1", "--minutes", "20",
                        "--work", str(work), "--no-progress", "--json", "--priors-picture", str(tmp_path / "priors.png"),
                        "--picture-background", "none"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    res = json.loads(r.stdout.strip().splitlines()[-1])
    # priors kept: the 2 test photos occluded; strong turns (none in these frontal photos)
    occ = res["priors"]["occluded"]
    assert occ["frames"] == 2 and 0 < occ["nme_base"] < 1 and 0 < occ["nme_person"] < 1
    assert res["occluded_nme_base"] == occ["nme_base"] and res["occluded_nme_person"] == occ["nme_person"]
    assert res["priors"]["turn"]["threshold_deg"] == 20.0 and res["priors"]["turn"]["frames"] in (0, 1, 2)
    assert (res["turn_nme_base"] is None) == (res["priors"]["turn"]["frames"] == 0)
    # likeness: dlib descriptor distance photo ↔ render on the 2 test photos; β spread over all 4
    lk = res["likeness"]
    assert lk["test_frames"] == 2 and 0.2 < lk["render_distance_base"] < 1.0 and 0.2 < lk["render_distance_person"] < 1.0
    assert res["render_distance_person"] == lk["render_distance_person"]
    assert lk["beta_std_all_frames_base"] > 0 and lk["beta_std_all_frames_person_per_frame_beta"] > 0
    from PIL import Image

    with Image.open(tmp_path / "priors.png") as im:  # one row (the occluded frame): labels, base, person (3 tiles of 256²)
        assert 768 <= im.size[0] <= 800 and 256 <= im.size[1] <= 280
        grey = np.asarray(im.convert("RGB"))[20:, :256]
        assert (np.abs(grey.astype(int) - [51, 89, 153]).sum(-1) < 6).sum() > 100  # the occluder, drawn as a flat patch
    assert res["kind"] == "photos" and res["frames"]["test"] == 2 and "leave-2-out" in res["protocol"]
    assert "automatic annotator" in res["labels"] and res["annotator_nme_helen_test"] == 0.0245
    for m in ("base", "person", "person_per_frame_beta"):
        for k in ("nme_boundary", "nme_inner", "nme_overall", "photometric"):
            assert 0 < res[m][k] < 1, (m, k)
    assert res["base"]["beta_std"] > 0 and res["base"]["neutral_rms_mm"] > 0
    assert res["person"]["beta_std"] == 0.0
    assert res["nme_reduction"] == pytest.approx(1 - res["person"]["nme_overall"] / res["base"]["nme_overall"])
    assert 0 < res["personalize_seconds"] < time.time() - t0 + 60
    assert res["folds"][0]["steps"] == 3 and res["folds"][0]["train_frames"] == 2


def test_protocol_splits_and_spread():
    from facetwin.evaluation.person import identity_spread, leave_k_out, nme_reduction, video_split
    from facetwin.headmodel import load_head_model

    keys = [f"clips/a.mp4#f{i:06d}" for i in (30, 0, 10, 90, 60, 20, 40, 50, 70, 80)]
    train, test = video_split(keys)
    assert train == [f"clips/a.mp4#f{i:06d}" for i in range(0, 70, 10)] and test == [f"clips/a.mp4#f{i:06d}" for i in (70, 80, 90)]
    folds = leave_k_out([f"p/{c}.jpg" for c in "abcde"], 2)
    assert [t for _, t in folds] == [["p/a.jpg", "p/b.jpg"], ["p/c.jpg", "p/d.jpg"], ["p/e.jpg"]]
    assert all(not set(tr) & set(te) and len(tr) + len(te) == 5 for tr, te in folds)
    with pytest.raises(ValueError):
        leave_k_out(["p/a.jpg"], 1)
    head = load_head_model("open")
    same = np.tile(np.linspace(-1, 1, head.n_shape), (4, 1))
    assert identity_spread(same, head) == {"beta_std": 0.0, "neutral_rms_mm": 0.0}
    one = np.zeros((2, head.n_shape))
    one[1, 0] = 2.0  # two frames 2 σ apart on the first component: each 1 σ from their mean
    s = identity_spread(one, head)
    assert s["beta_std"] == pytest.approx(1.0 / head.n_shape)
    v = head(torch.tensor(one, dtype=torch.float32), torch.zeros(2, head.n_expr), torch.zeros(2, 5, 3)).vertices
    want = float((v[1] - v[0]).pow(2).sum(-1).mean().sqrt()) / 2 * 1000
    assert s["neutral_rms_mm"] == pytest.approx(want, rel=1e-4) and s["neutral_rms_mm"] > 0.1
    assert nme_reduction(0.05, 0.03) == pytest.approx(0.4)


def test_base_config_reads_the_shipped_model_files_training_config(tmp_path):
    """The shipped model file keeps its train_config in the first layout (render settings at the
    top level): the person run must get the base model's render settings in the render: section."""
    from facetwin.models import files
    from facetwin.training.coarse_stage import config_from_model_file
    from facetwin.training.personalize import base_config

    meta = files.read_metadata(DEFAULT_CHECKPOINT)
    train = meta["train_config"]
    cfg = config_from_model_file(train)
    if "render_size" in train:  # the first layout
        assert cfg.render.size == train["render_size"] and cfg.render.identity_images == train["identity_images"]
        assert cfg.render.enabled is bool(train["render"])
    assert cfg.loss.contour_mode == meta["inference"]["contour"]
    person = base_config(meta, DEFAULT_CHECKPOINT, tmp_path / "prepared", tmp_path / "run")
    assert person.render.size == cfg.render.size and person.render.landmark_only_steps == 0
    assert person.model.init_checkpoint == str(DEFAULT_CHECKPOINT) and person.data.identity_batches is False
    assert person.optim.schedule == "constant" and person.optim.weight_decay == 0.0
    with pytest.raises(FacetwinError, match="render.size"):
        config_from_model_file({"render_size": -1})


def test_person_runs_take_the_base_models_bf16_only_where_the_hardware_has_it(trained):
    """The shipped base model was trained with bf16 autocast and a person run takes its training config; on a
    CPU without native bf16 it must still train in float32 (fallback kernels: 4x slower steps, measured)."""
    from facetwin.models import files
    from facetwin.training.distributed import native_bf16

    assert files.read_metadata(DEFAULT_CHECKPOINT)["train_config"]["run"]["bf16"] is True  # the premise
    summary = trained["summary"]
    assert summary["precision"] == ("bf16" if native_bf16(torch.device("cpu")) else "float32")
    assert read_person(trained["out"]).meta["precision"] == summary["precision"]  # the file says so too


def test_personalize_again_into_the_same_work_folder(trained, prepared):
    """A second personalisation with the same --out replaces the run (no --resume needed);
    with resume it continues from the last checkpoint."""
    from facetwin.training.personalize import personalize

    out, work = trained["out"], trained["summary"]["work_dir"]
    summary, _ = personalize(prepared, out, DEFAULT_CHECKPOINT, minutes=30, max_steps=2, batch_size=4, threads=1,
                             progress=False, command="again")
    assert summary["steps"] == 2 and summary["work_dir"] == work
    assert read_person(out).meta["command"] == "again"
    steps = [json.loads(line)["step"] for line in open(summary["metrics"]) if line.strip()]
    assert max(steps) <= 2  # the first run's records are gone
    summary, _ = personalize(prepared, out, DEFAULT_CHECKPOINT, minutes=30, max_steps=3, batch_size=4, threads=1,
                             progress=False, command="resumed", resume=True)
    assert summary["steps"] == 3


def test_export_with_person_uses_its_identity(trained, person_photos, tmp_path):
    """`facetwin export PHOTO --person` reconstructs with the person model: the written β is the person's."""
    r = subprocess.run([sys.executable, "-m", "facetwin", "export", str(person_photos / PHOTOS[0]), "--out", str(tmp_path / "x"),
                        "--format", "obj", "--person", str(trained["out"]), "--json"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    npz = json.loads(r.stdout.strip().splitlines()[-1])["files"]["npz"]
    with np.load(npz) as z:
        assert np.allclose(z["param_shape"], read_person(trained["out"]).beta_mean.numpy(), atol=1e-6)
    r = subprocess.run([sys.executable, "-m", "facetwin", "animate", "--source", npz, "--driver", str(person_photos / PHOTOS[1]),
                        "--out", str(tmp_path / "a"), "--person", str(trained["out"])], capture_output=True, text=True)
    assert r.returncode == 2 and "--person applies to a photo source" in r.stderr and "Traceback" not in r.stderr


def test_set_overrides_the_person_runs_config(prepared, tmp_path):
    """``--set loss.identity=3.5`` reaches the run (and the person file's config); a wrong key is one error line."""
    from facetwin.training.personalize import personalize

    out = tmp_path / "b.facetwin"
    personalize(prepared, out, DEFAULT_CHECKPOINT, minutes=30, max_steps=1, batch_size=4, threads=1, progress=False,
                overrides=["loss.identity=3.5", "render.identity_images=1"])
    cfg = read_person(out).meta["config"]
    assert cfg["loss"]["identity"] == 3.5 and cfg["render"]["identity_images"] == 1
    with pytest.raises(FacetwinError, match="loss"):
        personalize(prepared, tmp_path / "c.facetwin", DEFAULT_CHECKPOINT, minutes=30, max_steps=1, batch_size=4,
                    threads=1, progress=False, overrides=["loss.no_such_weight=1"])


def test_identity_weights_default_to_the_photo_set_ones_only_without_a_video():
    from facetwin.data.prepared import is_video_frame
    from facetwin.training.person_stage import PHOTO_IDENTITY_ON_APPEARANCE, PHOTO_IDENTITY_ON_BETA, identity_weights

    photos = ["me/a.jpg", "me/b.png", "me/group.jpg#face1"]  # a photo's second face is still a photo
    clip = ["me/talk.mp4#f000012", "me/talk.mp4#f000024"]
    assert [is_video_frame(k) for k in photos + clip] == [False, False, False, True, True]
    assert identity_weights(photos) == (PHOTO_IDENTITY_ON_BETA, PHOTO_IDENTITY_ON_APPEARANCE) == (1.0, 5.0)
    assert identity_weights(clip) == (0.0, 0.0)
    assert identity_weights(photos + clip[:1]) == (0.0, 0.0)  # one video among the inputs: the video recipe
    assert identity_weights(photos, 0.0, None) == (0.0, 5.0)  # a weight given is kept, 0 included
    assert identity_weights(clip, 2.0, 3.0) == (2.0, 3.0)
    assert identity_weights([]) == (0.0, 0.0)


def test_a_set_without_a_held_out_split_stops_after_no_split_steps(prepared, tmp_path, monkeypatch):
    """4 photos: no held-out split, so the run stops at NO_SPLIT_STEPS (here 3), not on the budget
    or --max-steps, and says so."""
    from facetwin.training import personalize as module

    monkeypatch.setattr(module, "NO_SPLIT_STEPS", 3)
    with pytest.warns(UserWarning, match="no held-out split for early stopping, so training stops after 3 steps"):
        summary, _ = module.personalize(prepared, tmp_path / "s.facetwin", DEFAULT_CHECKPOINT, minutes=30, max_steps=2000,
                                        batch_size=4, threads=1, progress=False)
    assert summary["steps"] == 3 and summary["frames"]["held_out"] == 0


def test_early_stopping_counts_evaluations_without_a_real_gain(monkeypatch):
    """Known sequence of held-out NMEs: a gain must be ≥ min_delta (0.5 %) to reset the count;
    the lowest value is kept as the best even when it is not a real gain; ``patience`` bad
    evaluations in a row stop the run."""
    import facetwin.evaluation.nme as nme
    import facetwin.training.person_stage as ps
    from facetwin.training.coarse_stage import CoarseConfig

    values = iter([0.050, 0.049, 0.0489, 0.0488, 0.0300])
    monkeypatch.setattr(ps, "predict", lambda *a, **k: {"landmarks": None, "labels": None})
    monkeypatch.setattr(nme, "per_image_nme", lambda *a, **k: {"overall": np.array([next(values)])})
    stage = ps.PersonStage(CoarseConfig(), ps.PersonSettings(patience=2), train_set=[0], val_set=[0])
    stage.model = None
    monkeypatch.setattr(stage, "_state", lambda: {"step": torch.tensor(float(step))})
    for step in (10, 20, 30, 40):
        stage.evaluate(None, step)
    assert stage._stop and stage.stop_reason.startswith("early stop")
    assert stage.best_val == 0.0488 and stage.best_step == 40 and float(stage.best_state["step"]) == 40
    stage2 = ps.PersonStage(CoarseConfig(), ps.PersonSettings(patience=3), train_set=[0], val_set=[0])
    values = iter([0.050, 0.049, 0.0489, 0.0488, 0.0300])
    monkeypatch.setattr(nme, "per_image_nme", lambda *a, **k: {"overall": np.array([next(values)])})
    stage2.model = None
    monkeypatch.setattr(stage2, "_state", lambda: {})
    for step in (10, 20, 30, 40, 50):
        stage2.evaluate(None, step)
    assert not stage2._stop and stage2.best_val == 0.0300  # a longer patience saw the later gain


def test_beta_learns_at_its_own_rate(prepared, tmp_path):
    """``beta_lr_scale``: the person's β has its own Adam group. Known answer: Adam's first step
    moves every coordinate with a gradient by exactly the step's lr (lr/10 in the first of the 10
    warm-up steps), so one step moves β by 3e-3/10 at scale 1 and ten times that at scale 10, while the
    adapters take the same first step in both runs."""
    from facetwin.training.person_stage import PERSON_BETA
    from facetwin.training.personalize import personalize

    moved, ups = [], []
    for scale in (1.0, 10.0):
        _, stage = personalize(prepared, tmp_path / f"s{scale:g}.facetwin", DEFAULT_CHECKPOINT, minutes=30, max_steps=1,
                               batch_size=4, threads=1, progress=False, beta_lr_scale=scale)
        beta, start = getattr(stage.model, PERSON_BETA).detach(), getattr(stage.model, PERSON_BETA + "_start")
        moved.append(float((beta - start).abs().max()))
        ups.append(float(stage.model.vit.blocks[0].adapter.up.weight.detach().abs().max()))
    np.testing.assert_allclose(moved, [3e-3 / 10, 3e-2 / 10], rtol=1e-3)
    np.testing.assert_allclose(ups, [3e-3 / 10, 3e-3 / 10], rtol=1e-3)


def test_identity_through_beta_reaches_only_the_persons_beta(trained, prepared):
    """The β-only likeness pass: L_id's gradient reaches the person's β, none of the adapters or
    layer norms (every encoder output is detached there)."""
    from facetwin.training.person_stage import PERSON_BETA

    stage = trained["stage"]
    if stage.identity_loss is None:
        pytest.skip("no dlib face descriptor")
    batch = _batch(prepared)
    model = stage.model.train()
    model.zero_grad(set_to_none=True)
    loss = stage.identity_through(model, batch, ("shape",))
    assert torch.isfinite(loss) and float(loss) > 0
    loss.backward()
    beta = getattr(model, PERSON_BETA)
    assert beta.grad is not None and float(beta.grad.abs().max()) > 0
    others = [p for p in model.parameters() if p.requires_grad and p is not beta]
    assert others and all(p.grad is None or float(p.grad.abs().max()) == 0 for p in others)
    model.zero_grad(set_to_none=True)


def test_identity_through_appearance_reaches_only_albedo_and_light(trained, prepared):
    """The appearance-only likeness pass: of the encoder's outputs only albedo and light receive
    L_id's gradient (so it cannot pull β, expression, pose or camera off the photo), through them
    the adapters do, and the person's β gets none."""
    from facetwin.training.person_stage import PERSON_BETA

    stage = trained["stage"]
    if stage.identity_loss is None:
        pytest.skip("no dlib face descriptor")
    model = stage.model.train()
    outputs = {}

    class Spy(torch.nn.Module):  # the stage reads the encoder from ``.module``, calls the spy
        def __init__(self):
            super().__init__()
            self.module = model

        def forward(self, x):
            own = model(x)
            for k, v in own.as_dict().items():
                v.retain_grad()
                outputs[k] = v
            return own

    model.zero_grad(set_to_none=True)
    loss = stage.identity_through(Spy(), _batch(prepared), ("albedo", "light"))
    assert torch.isfinite(loss) and float(loss) > 0
    loss.backward()
    for k in ("albedo", "light"):
        assert outputs[k].grad is not None and float(outputs[k].grad.abs().max()) > 0, k
    for k in ("shape", "expression", "pose", "scale", "translation"):
        assert outputs[k].grad is None or float(outputs[k].grad.abs().max()) == 0, k
    beta = getattr(model, PERSON_BETA)
    assert beta.grad is None or float(beta.grad.abs().max()) == 0
    adapters = [p for n, p in model.named_parameters() if "adapter" in n]
    assert adapters and any(p.grad is not None and float(p.grad.abs().max()) > 0 for p in adapters)
    model.zero_grad(set_to_none=True)
