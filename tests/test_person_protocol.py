"""The "priors kept" and likeness parts of ``facetwin evaluate person`` (issue #15) and the suite
tooling: occluded test frames, strong turns, the render distance, the summaries, the tables and
the resumable suite — on real photos where a figure is measured."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from facetwin.evaluation import person as ev

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


def _item(seed=0, size=128):
    g = torch.Generator().manual_seed(seed)
    lm = torch.stack([torch.linspace(30, 98, 68), 40 + 50 * torch.rand(68, generator=g)], 1)
    return {"image": torch.rand(3, size, size, generator=g), "landmarks": lm, "skin": torch.ones(1, size, size)}


class _Items(torch.utils.data.Dataset):
    def __init__(self, n):
        self.items = [_item(i) for i in range(n)]

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        return self.items[i]


def test_occluded_frames_paste_the_augmentation_occluder_deterministically():
    base = _Items(6)
    occ = ev.Occluded(base, seed=3)
    a, b = occ[2], occ[2]
    assert torch.equal(a["image"], b["image"])  # the same occluder every time
    assert not torch.equal(occ[2]["occluder"], ev.Occluded(base, seed=4)[2]["occluder"])  # the seed matters
    for i in range(len(occ)):
        it, src = occ[i], base[i]
        mask = it["occluder"][0] > 0
        side = 128
        # an occluder of side 0.2–0.35 of the crop: at least a few hundred pixels, at most its bounding square
        assert 0.01 * side * side < mask.sum() <= (0.35 * side) ** 2 + 4 * side
        changed = (it["image"] - src["image"]).abs().sum(0) > 1e-6
        assert not changed[~mask].any()  # only the occluder's pixels change
        assert changed[mask].float().mean() > 0.9
        assert torch.equal(it["landmarks"], src["landmarks"])  # labels of the un-occluded frame
        assert torch.equal(it["skin"][0][mask], torch.zeros(int(mask.sum())))  # the occluder is not skin
        assert ev.occluded_points(it) == int(mask[it["landmarks"][:, 1].round().long(), it["landmarks"][:, 0].round().long()].sum())


def test_strong_turns_and_the_summaries():
    yaws = np.array([3.0, -30.0, 24.9, 25.1, -80.0, 19.9])
    assert ev.TURN_DEGREES == 20.0 and ev.strong_turns(yaws).tolist() == [1, 2, 3, 4]
    assert ev.strong_turns(yaws, threshold=25).tolist() == [1, 3, 4]
    assert ev.strong_turns(np.array([3.0, -30.0]), threshold=40).tolist() == []
    acc = {"occluded": {"base": [np.array([0.04, 0.06]), np.array([0.05])], "person": [np.array([0.03, 0.05]), np.array([0.04])]},
           "turn": {"base": [np.zeros(0), np.array([0.08])], "person": [np.zeros(0), np.array([0.06])],
                    "yaw_deg": [np.zeros(0), np.array([-40.0])]}}
    s = ev.priors_summary(acc, 25.0)
    assert s["occluded"]["frames"] == 3 and s["occluded"]["nme_base"] == pytest.approx(0.05)
    assert s["occluded"]["nme_person"] == pytest.approx(0.04) and s["occluded"]["nme_reduction"] == pytest.approx(0.2)
    assert s["turn"] == {"frames": 1, "nme_base": pytest.approx(0.08), "nme_person": pytest.approx(0.06),
                         "nme_reduction": pytest.approx(0.25), "threshold_deg": 25.0, "mean_abs_yaw_deg": 40.0}
    none = ev.priors_summary({"occluded": {"base": [], "person": []}, "turn": {"base": [np.zeros(0)], "person": [np.zeros(0)], "yaw_deg": []}})
    assert none["turn"]["frames"] == 0 and none["turn"]["nme_base"] is None
    lk = ev.likeness_summary({"render_distance": {"base": [np.array([0.5, 0.7])], "person": [np.array([0.4, 0.8])]},
                              "beta_all_frames": {"base": [{"beta_std": 0.06, "neutral_rms_mm": 0.6}],
                                                  "person_per_frame_beta": [{"beta_std": 0.03, "neutral_rms_mm": 0.3}]}})
    assert lk["render_distance_base"] == pytest.approx(0.6) and lk["person_closer_share"] == 0.5
    assert lk["beta_std_all_frames_person_per_frame_beta"] == 0.03


def test_render_distance_of_a_real_photo(shared_data):
    """dlib descriptor distance photo ↔ render (the likeness benchmark's renderer): the model's own
    reconstruction is closer to the photo than the mean face's under the same pose and light, and
    a render of another photo's reconstruction pasted on this photo is farther."""
    from facetwin.evaluation.likeness import LikenessRenderer, label_photo
    from facetwin.models.coarse import DEFAULT_MODEL_FILE, load_coarse_model

    if not DEFAULT_MODEL_FILE.is_file():
        pytest.skip("no shipped coarse model file")
    folder = shared_data / "identities" / "eval" / "Ariel_Sharon"
    photos = [label_photo("a", p) for p in sorted(folder.glob("*.jpg"))[:2]]
    photos = [p for p in photos if p is not None]
    if len(photos) < 2:
        pytest.skip("no usable faces")
    images = torch.stack([torch.from_numpy(p.crop).permute(2, 0, 1).float() / 255 for p in photos])
    lms = torch.stack([torch.from_numpy(p.landmarks).float() for p in photos])
    model, _ = load_coarse_model()
    d = ev.render_distances(model, images, lms)
    assert d.shape == (2,) and np.all((d > 0.2) & (d < 1.0)), d  # a render is not the photo, but a face like it
    # the same function on the same inputs twice: the same figures (no randomness)
    assert np.allclose(d, ev.render_distances(model, images, lms, renderer=LikenessRenderer(model)))


def _result(name, kind, base, person, priors=True):
    r = {"name": name, "kind": kind, "input": name, "frames": {"test": 3},
         "folds": [{"train_frames": 7, "test_frames": 3, "steps": 50, "personalize_seconds": 60}],
         "base": {"nme_overall": base, "nme_boundary": base, "nme_inner": base, "photometric": 0.03, "beta_std": 0.05, "neutral_rms_mm": 0.5},
         "person": {"nme_overall": person, "nme_boundary": person, "nme_inner": person, "photometric": 0.02, "beta_std": 0.0, "neutral_rms_mm": 0.0},
         "person_per_frame_beta": {"nme_overall": person, "beta_std": 0.04, "neutral_rms_mm": 0.4},
         "nme_reduction": 1 - person / base, "personalize_seconds": 60.0}
    if priors:
        r["priors"] = {"occluded": {"frames": 3, "nme_base": 0.05, "nme_person": 0.045},
                       "turn": {"frames": 0, "nme_base": None, "nme_person": None}}
        r["likeness"] = {"test_frames": 3, "render_distance_base": 0.6, "render_distance_person": 0.55, "person_closer_share": 2 / 3,
                         "beta_std_all_frames_base": 0.05, "beta_std_all_frames_person_per_frame_beta": 0.04}
    return r


def test_tables_mean_and_failures():
    sys.path.insert(0, str(BENCH))
    import person_table

    named = [("a", _result("a", "video", 0.05, 0.03)), ("b", _result("b", "video", 0.04, 0.04)),
             ("c", _result("c", "photos", 0.06, 0.045)), ("d", {"input": "d", "error": "only 1 usable photo(s)"})]
    text = person_table.tables(named)
    # videos: mean NME 0.045 → 0.035, mean reduction (40 % + 0 %) / 2 = +20.0 %, lower on 1 of 2
    assert "| **mean of 2** | | | **0.0450** | **0.0350** | **+20.0 %** (lower on 1/2)" in text
    assert "| **mean of 1** | | | **0.0600** | **0.0450** | **+25.0 %** (lower on 1/1)" in text
    assert "| **mean of 3** | | | **0.0500** | **0.0383** |" in text  # all inputs
    assert "0.0500 → 0.0450** (person no worse on 3/3)" in text
    assert "**0.600 → 0.550** (person closer on 3/3)" in text
    assert "**Not measured**: d: only 1 usable photo(s)" in text
    for line in text.splitlines():  # every table row has the header's number of cells
        if line.startswith("| input"):
            cells = line.count("|")
        elif line.startswith("|"):
            assert line.count("|") == cells, line


def test_suite_lists_24_people_and_resumes(tmp_path, shared_data):
    sys.path.insert(0, str(BENCH))
    import person_suite

    items = person_suite.inputs(shared_data)
    clips = [it for it in items if it["name"].startswith("video__")]
    assert len(clips) >= 24 and all(it["path"].is_file() for it in clips)
    assert any(it["path"].name == "liveportrait_d6.mp4" for it in clips)
    # one clip per known repeated person
    for prefix in ("dreamtalk_W009", "eamm_", "styletalk_furious"):
        assert sum(prefix in it["name"] for it in clips) == 1, prefix
    people = [it for it in items if it["name"].startswith("identity__")]
    assert len(people) == 20 and all(it["args"] == ["--leave-out", "2", "--folds", "1"] for it in people)
    assert {it["path"].name for it in items if it["name"].startswith("multi__")} == \
        {d.name for d in (shared_data / "multi-image").iterdir() if d.is_dir()}
    # resumable: inputs with a JSON are skipped; a failed one runs again only with --retry-failed
    out = tmp_path / "suite"
    (out / "json").mkdir(parents=True)
    (out / "json" / "video__liveportrait_d6.json").write_text(json.dumps(_result("video__liveportrait_d6", "video", 0.05, 0.03)))
    (out / "json" / "video__metrical_duda.json").write_text(json.dumps({"input": "x", "error": "boom"}))
    two = [it for it in clips if it["name"] in ("video__liveportrait_d6", "video__metrical_duda", "video__smirk_skarsgard")]
    assert [it["name"] for it in person_suite.pending(two, out)] == ["video__smirk_skarsgard"]
    assert [it["name"] for it in person_suite.pending(two, out, retry_failed=True)] == ["video__metrical_duda", "video__smirk_skarsgard"]
    ran = []

    def fake(item, out_dir, minutes, max_steps=0):
        ran.append(item["name"])
        from facetwin.outputs import write_json

        r = _result(item["name"], "video", 0.04, 0.03)
        write_json(out_dir / "json" / f"{item['name']}.json", r)  # indented, as run_one writes it
        return {**r, "wall_seconds": 1.0}

    assert person_suite.main(["--out", str(out), "--only", "liveportrait_d6", "metrical_duda", "smirk_skarsgard"], runner=fake) == 0
    assert ran == ["video__smirk_skarsgard"]
    table = (out / "table.md").read_text()
    assert "video__liveportrait_d6" in table and "video__smirk_skarsgard" in table and "video__metrical_duda: boom" in table
    assert person_suite.main(["--out", str(out), "--only", "liveportrait_d6", "metrical_duda", "smirk_skarsgard"], runner=fake) == 0
    assert ran == ["video__smirk_skarsgard"]  # nothing left to run


def test_training_frames_by_label_reliability():
    from facetwin.training.personalize import reliable

    r = [0.9, 0.42, 0.75, 0.43, 0.61, 0.88]
    assert reliable(r, 0.6) == [0, 2, 4, 5]  # the two frames of a strong turn (0.42, 0.43) dropped
    assert reliable(r, 0.0) == list(range(6))
    assert reliable(r, 0.95) == [0, 2, 5]  # none passes: the 3 most reliable, in their order
    assert reliable([0.3, 0.2], 0.6) == [0, 1]  # fewer frames than the minimum: all of them
