"""Person-specific transfer, detail part (issue #16 item 5, section 3.4): ``personalize --detail``
trains the detail MAE's adapters, layer norms and x_d with L_Tchr under the frozen teacher, the
person file carries them, ``--person`` with ``--detail`` uses them, and they are refused on another
detail model. Small random detail networks (the shipped MAE is not trained yet) on real photos."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from facetwin.errors import FacetwinError
from facetwin.models.coarse import DEFAULT_MODEL_FILE as DEFAULT_CHECKPOINT
from facetwin.models.coarse import load_coarse_model
from facetwin.models.detail import DetailModel, build_network, export_detail, read_detail_network
from facetwin.models.person import attach_person_details, detail_parameter_names, read_person
from facetwin.networks.detail_mae import DetailMAEConfig
from facetwin.networks.unet import UNetConfig
from test_person import person_photos, prepared  # noqa: F401  (the same 4 real photos, prepared once per module)

pytestmark = pytest.mark.skipif(not DEFAULT_CHECKPOINT.is_file(), reason="no shipped coarse checkpoint")
MAP = 32


def _mae(seed: int):
    torch.manual_seed(seed)
    net = build_network("mae", DetailMAEConfig(map_size=MAP, patch_size=8, embed_dim=32, depth=2, num_heads=2))
    nn.init.normal_(net.output_layer.weight, std=0.05)  # an untrained MAE decodes D = 0 whatever its tokens: no gradient
    return net


@pytest.fixture(scope="module")
def detail_files(tmp_path_factory):
    coarse = load_coarse_model()[0]
    d = tmp_path_factory.mktemp("detail")
    torch.manual_seed(1)
    unet = build_network("unet", UNetConfig(width=8, levels=2))
    for m in unet.modules():  # a teacher that says something (its last layer starts at zero)
        if isinstance(m, nn.Conv2d):
            nn.init.normal_(m.weight, std=0.1)
    files = {"mae": d / "mae.safetensors", "other_mae": d / "other.safetensors", "unet": d / "unet.safetensors"}
    export_detail(DetailModel(coarse, _mae(0), MAP, 224), files["mae"], DEFAULT_CHECKPOINT)
    export_detail(DetailModel(coarse, _mae(2), MAP, 224), files["other_mae"], DEFAULT_CHECKPOINT)
    export_detail(DetailModel(coarse, unet, MAP, 224), files["unet"], DEFAULT_CHECKPOINT)
    return files


@pytest.fixture(scope="module")
def person(prepared, detail_files, tmp_path_factory):
    from facetwin.training.personalize import personalize

    out = tmp_path_factory.mktemp("person") / "a.facetwin"
    summary, stage = personalize(prepared, out, DEFAULT_CHECKPOINT, minutes=30, max_steps=4, batch_size=4, threads=1,
                                 progress=False, command="test", detail=detail_files["mae"], teacher=detail_files["unet"])
    return {"out": out, "summary": summary}


def test_the_person_file_carries_the_mae_person_parameters(person, detail_files):
    p = read_person(person["out"])
    assert p.has_details and person["summary"]["detail"]["steps"] == 4
    info = p.meta["detail"]
    assert info["file"] == "mae.safetensors" and info["teacher"]["file"] == "unet.safetensors" and info["loss"].startswith("L_Tchr")
    base, _ = read_detail_network(detail_files["mae"], "mae")
    from facetwin.networks.adapters import add_adapters

    add_adapters(base, info["adapter_width"])
    names = detail_parameter_names(base)
    assert set(p.detail_state) == set(names) and "detail_latent" in names
    assert any(k.endswith("adapter.up.weight") for k in names) and any("norm" in k for k in names)
    sd = base.state_dict()
    moved = [k for k in names if not torch.allclose(p.detail_state[k].float(), sd[k].float(), atol=1e-3)]
    assert any("adapter.up" in k for k in moved)  # the adapters learnt (they start at zero)
    assert "detail_latent" in moved  # x_d too


def test_person_details_change_d_only_through_the_transfer_parameters(person, detail_files, prepared):
    """The person's MAE = base weights (bit-identical) + its adapters, layer norms and x_d; on the
    person's photo its D differs from the base MAE's."""
    from facetwin.data.prepared import PreparedDataset

    p = read_person(person["out"])
    base, _ = read_detail_network(detail_files["mae"], "mae")
    mine, _ = read_detail_network(detail_files["mae"], "mae")
    ref = {k: v.clone() for k, v in mine.state_dict().items()}
    attach_person_details(mine, p, detail_files["mae"])
    after = mine.state_dict()
    for k, v in ref.items():
        if k not in p.detail_state:
            assert torch.equal(after[k], v), k
    ds = PreparedDataset(prepared, 224, augment=False)
    coarse = load_coarse_model()[0]
    image = ds[0]["image"][None]
    with torch.no_grad():
        maps = {n: DetailModel(coarse, net, MAP, 224).eval().maps(image) for n, net in (("base", base), ("person", mine))}
    diff = (maps["person"].displacement - maps["base"].displacement).abs().max()
    assert float(diff) > 1e-6


def test_person_details_are_refused_on_another_detail_model(person, detail_files):
    p = read_person(person["out"])
    other, _ = read_detail_network(detail_files["other_mae"], "mae")
    with pytest.raises(FacetwinError, match="another detail model"):
        attach_person_details(other, p, detail_files["other_mae"])


def test_facetwin_with_person_and_detail_uses_the_person_details(person, detail_files):
    from facetwin.inference.reconstructor import FaceTwin

    ft = FaceTwin(person=person["out"], detail=detail_files["mae"])
    assert ft.detail_meta.get("person_details") is True
    assert any(getattr(b, "adapter", None) is not None for b in ft.detail.network.blocks)
    with pytest.raises(FacetwinError, match="another detail model"):
        FaceTwin(person=person["out"], detail=detail_files["other_mae"])


def test_cli_detail_defaults_to_the_shipped_mae_and_teacher(tmp_path, monkeypatch, detail_files):
    """Left out, --detail means the shipped MAE with the shipped teacher when both are installed,
    coarse only otherwise; --detail MAE alone takes the shipped teacher; 'none' turns it off."""
    from pathlib import Path
    from types import SimpleNamespace

    from facetwin.cli.personalize import detail_options
    from facetwin.models import detail as detail_module

    opts = lambda d=None, t=None: detail_options(SimpleNamespace(detail=d, teacher=t))  # noqa: E731
    monkeypatch.setattr(detail_module, "DEFAULT_MODEL_FILE", tmp_path / "missing_mae.safetensors")
    monkeypatch.setattr(detail_module, "DEFAULT_TEACHER_FILE", tmp_path / "missing_unet.safetensors")
    assert opts() == (None, None)                              # nothing shipped: coarse only
    assert opts(str(detail_files["mae"])) == (str(detail_files["mae"]), "default")
    with pytest.raises(FacetwinError, match=r"no shipped detail teacher .*pass --teacher"):
        read_detail_network("default", "unet")
    monkeypatch.setattr(detail_module, "DEFAULT_MODEL_FILE", Path(detail_files["mae"]))
    monkeypatch.setattr(detail_module, "DEFAULT_TEACHER_FILE", Path(detail_files["unet"]))
    assert opts() == ("default", "default")                    # both shipped: transferred by default
    assert read_detail_network("default", "unet")[1]["format"].startswith("facetwin-detail-unet")
    assert read_detail_network("default", "mae")[1]["format"].startswith("facetwin-detail-mae")
    assert opts("none") == (None, None)
    with pytest.raises(FacetwinError, match="--detail is 'none'"):
        opts("none", str(detail_files["unet"]))


def test_cli_refuses_a_wrong_detail_file_before_any_work(tmp_path, detail_files):
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-m", "facetwin", "personalize", str(tmp_path), "--out", str(tmp_path / "a.facetwin"),
                        "--detail", str(detail_files["unet"]), "--teacher", str(detail_files["unet"])], capture_output=True, text=True)
    assert r.returncode != 0 and "not a facetwin detail model file" in r.stderr and "Traceback" not in r.stderr


def test_evaluate_person_with_details_reports_base_and_person_photometric_errors(prepared, person_photos, detail_files, tmp_path):
    """``evaluate person --detail``: the fold's person file carries the detail part, and the JSON
    gives the test frames' photometric errors of the coarse render and with details, base vs person
    (each on its own coarse model: the person's coarse figure differs from the base's)."""
    import json
    import shutil
    import subprocess
    import sys

    from facetwin.models.person import read_person

    work = tmp_path / "work"
    shutil.copytree(prepared, work / "prepared")
    r = subprocess.run([sys.executable, "-m", "facetwin", "evaluate", "person", str(person_photos), "--leave-out", "2",
                        "--folds", "1", "--max-steps", "3", "--batch-size", "4", "--threads", "1", "--minutes", "20",
                        "--work", str(work), "--no-progress", "--json", "--no-likeness",
                        "--detail", str(detail_files["mae"]), "--teacher", str(detail_files["unet"])], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    res = json.loads(r.stdout.strip().splitlines()[-1])
    d = res["details"]
    for m in ("base", "person"):
        c, dd = d[m]["photometric_coarse"], d[m]["photometric_detail"]
        assert 0 < c < 1 and 0 < dd < 1 and d[m]["gain"] == pytest.approx((c - dd) / c)
    assert d["person"]["photometric_coarse"] != d["base"]["photometric_coarse"]
    assert d["person"]["photometric_detail"] != d["base"]["photometric_detail"]
    mixed = d["person_coarse_base_mae"]  # the person's coarse with the base MAE: the same coarse figure as the person's
    assert mixed["photometric_coarse"] == pytest.approx(d["person"]["photometric_coarse"], rel=1e-6)
    assert mixed["photometric_detail"] != d["person"]["photometric_detail"]  # the detail adapters change D
    assert read_person(work / "fold0.facetwin").has_details
