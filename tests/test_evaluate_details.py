"""`facetwin evaluate details`: photometric error with and without details on held-out clips (the
Fig. 9 table), on clips prepared from a real photo: a network whose D is zero gains exactly
nothing, one with a non-zero D changes the error, the picture has a column per model."""

import json

import cv2
import numpy as np
import pytest
import torch
from skimage import data as skdata

from facetwin.cli.main import main
from media import write_video  # noqa: E402

CLIPS = ["astro_left", "astro_right"]


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    from facetwin.data.prepare import PrepareConfig, prepare

    src = tmp_path_factory.mktemp("src")
    (src / "videos").mkdir()
    small = cv2.resize(skdata.astronaut(), (256, 256), interpolation=cv2.INTER_AREA)
    for k, name in enumerate(CLIPS):
        write_video(src / "videos" / f"{name}.mp4", [np.roll(small, (2 * i + 6 * k) * (1 if k else -1), axis=1) for i in range(12)], fps=10)
    out = tmp_path_factory.mktemp("prepared")
    prepare([str(src / "videos")], out, PrepareConfig(size=224, every_n_frames=4, video_fps=None), progress=False)
    return out


@pytest.fixture(scope="module")
def model_files(prepared, tmp_path_factory):
    """Two detail MAE files on the shipped coarse model: D = 0 (untrained) and a random D."""
    from facetwin.models.coarse import load_coarse_model, resolve_model_file
    from facetwin.models.detail import DetailModel, build_network, export_detail
    from facetwin.networks.detail_mae import DetailMAEConfig

    coarse_file = resolve_model_file("default")
    coarse, _ = load_coarse_model(coarse_file)
    out = tmp_path_factory.mktemp("models")
    config = {"data": {"root": str(prepared), "holdout": CLIPS}}
    paths = {}
    for name, scale in (("zero", 0.0), ("noisy", 0.05)):
        torch.manual_seed(0)
        net = build_network("mae", DetailMAEConfig(embed_dim=32, depth=1, num_heads=2))
        if scale:
            torch.nn.init.normal_(net.output_layer.weight, std=scale)
        paths[name] = export_detail(DetailModel(coarse, net), out / f"{name}.safetensors", coarse_file, config=config)
    return paths


def test_zero_displacement_gains_nothing_and_a_random_one_changes_the_error(prepared, model_files):
    from facetwin.evaluation.details import held_out_frames, photometric_table
    from facetwin.models.coarse import load_coarse_model
    from facetwin.models.detail import load_detail_model

    coarse, _ = load_coarse_model()
    models = {n: load_detail_model(p, coarse=coarse)[0] for n, p in model_files.items()}
    ds, idx = held_out_frames(prepared, CLIPS, 224)
    res = photometric_table(models, ds, idx, batch_size=3)
    assert res["frames"] == len(idx) == sum(c["frames"] for c in res["clips"].values()) >= 4
    assert set(res["clips"]) == set(CLIPS)
    assert res["models"]["zero"]["gain"] == 0.0 and res["models"]["zero"]["lower_on"] == 0
    for c in res["clips"].values():
        assert c["zero"] == c["coarse"] > 0
    assert abs(res["models"]["noisy"]["detail"] - res["coarse"]) > 1e-4  # a non-zero D changes the render
    ds1, idx1 = held_out_frames(prepared, CLIPS, 224, max_per_clip=1)
    assert len(idx1) == 2 and {ds1.keys[i].split("#")[0] for i in idx1} == {f"videos/{c}.mp4" for c in CLIPS}


def test_cli_table_json_and_picture(model_files, tmp_path, capsys):
    pic = tmp_path / "fig9.png"
    rc = main(["evaluate", "details", str(model_files["zero"]), str(model_files["noisy"]), "--names", "zero", "noisy",
               "--max-per-clip", "2", "--picture", str(pic), "--picture-frames", "2", "--no-progress", "--json"])
    assert rc == 0
    res = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert res["frames"] == 4 and res["held_out_clips"] == CLIPS and res["models"]["zero"]["gain"] == 0.0
    assert res["coarse_matches"] == {"zero": True, "noisy": True}
    img = cv2.imread(str(pic))
    assert img.shape == (22 + 2 * 224, 4 * 224, 3)  # header + 2 rows; input · coarse · zero · noisy


@pytest.mark.parametrize("extra, message", [
    (["--names", "only-one"], "--names gives 1 name(s) for 2 model(s)"),
    (["--clips", "no_such_clip"], "none of the clips no_such_clip"),
    (["--picture", "out.jpg"], "--picture must be a .png path"),
])
def test_cli_bad_arguments_are_one_line_exit_2(model_files, capsys, extra, message):
    rc = main(["evaluate", "details", str(model_files["zero"]), str(model_files["noisy"]), "--no-progress", *extra])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and message in err[0]
