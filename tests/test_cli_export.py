"""`facetwin export`, `facetwin view`, `facetwin demo` and `reconstruct`'s per-face files on
the shipped photo; bad input is one line on stderr and exit code 2 with nothing half-written."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from export_fixtures import astronaut_files, astronaut_reconstruction  # noqa: F401
from facetwin.cli.main import main

PHOTO = Path(__file__).resolve().parents[1] / "facetwin" / "assets" / "astronaut.png"


def run_cli(*args):
    proc = subprocess.run([sys.executable, "-m", "facetwin", *map(str, args)], capture_output=True, text=True, timeout=600)
    return proc.returncode, proc.stdout, proc.stderr


def test_export_from_a_result_npz(astronaut_files, tmp_path, capsys):
    assert main(["export", astronaut_files["files"]["npz"], "--out", str(tmp_path), "--format", "obj", "--json"]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["formats"] == ["obj"] and sorted(p.name for p in tmp_path.iterdir()) == [
        "astronaut.mtl", "astronaut.obj", "astronaut_albedo.png", "astronaut_photo.png", "astronaut_texture.png"]
    lines = (tmp_path / "astronaut.obj").read_text().splitlines()
    assert sum(ln.startswith("vt ") for ln in lines) == 4770 and sum(ln.startswith("vn ") for ln in lines) == 4770


def test_export_a_photo_writes_glb_and_obj(tmp_path):
    code, out, err = run_cli("export", PHOTO, "--out", tmp_path, "--name", "face", "--json")
    assert code == 0, err
    files = json.loads(out.strip().splitlines()[-1])["files"]
    for kind in ("glb", "obj", "mtl", "texture", "albedo", "photo", "npz", "json", "overlay"):
        assert Path(files[kind]).is_file(), kind
    assert Path(files["glb"]).read_bytes()[:4] == b"glTF"
    doc = json.loads(Path(files["json"]).read_text())
    assert len(doc["expression_weights"]) == 52


@pytest.mark.parametrize("args, message", [
    (["export", "missing.png", "--out", "{tmp}"], "input not found"),
    (["export", str(PHOTO), "--out", "{tmp}", "--format", "fbx"], "unknown format 'fbx'"),
    (["export", str(PHOTO), "--out", "{tmp}", "--texture-size", "5"], "--texture-size"),
    (["view", "missing.glb"], "not found"),
    (["view", "{tmp}/fake.glb"], "not a GLB"),
    (["export", "{tmp}/fake.npz", "--out", "{tmp}/o"], "fake.npz"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path, args, message):
    (tmp_path / "fake.glb").write_bytes(b"not a glb at all")
    (tmp_path / "fake.npz").write_bytes(b"PK\x03\x04 broken")
    code, out, err = run_cli(*[a.replace("{tmp}", str(tmp_path)) for a in args])
    assert code == 2 and len(err.strip().splitlines()) == 1 and message in err, err
    assert "Traceback" not in err
    assert not list(tmp_path.glob("**/*.facetwin-tmp-*"))


def test_view_writes_an_offline_page(astronaut_files, tmp_path, capsys):
    page = tmp_path / "v.html"
    assert main(["view", astronaut_files["files"]["glb"], "--out", str(page)]) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1] == f"page: {page}"
    text = page.read_text()
    assert text.startswith("<!DOCTYPE html>") and len(text) > 5e6  # bundle + GLB inlined


def test_reconstruct_writes_every_documented_file(tmp_path):
    code, out, err = run_cli("reconstruct", PHOTO, "--out", tmp_path, "--json")
    assert code == 0, err
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == sorted(["astronaut.glb", "astronaut.json", "astronaut.mtl", "astronaut.npz", "astronaut.obj",
                            "astronaut_albedo.png", "astronaut_overlay.png", "astronaut_photo.png", "astronaut_texture.png"])
    doc = json.loads((tmp_path / "astronaut.json").read_text())
    assert {"params", "camera", "landmarks2d", "landmarks3d", "expression_weights", "files", "units", "image_size"} <= set(doc)
    # docs/outputs.md names every file and every JSON field
    docs = (Path(__file__).resolve().parents[1] / "docs" / "outputs.md").read_text()
    for name in names:
        assert name.replace("astronaut", "<name>") in docs, name
    for key in doc:
        assert f"`{key}`" in docs, key
    npz = np.load(tmp_path / "astronaut.npz")
    for key in npz.files:
        assert f"`{key}`" in docs, key
    # refined onto the annotator's points by default (docs/refine.md), and how far each is from them
    fit = doc["detection"]["landmark_fit_nme"]
    assert "`landmark_fit_nme`" in docs and fit["refined"] < fit["encoder"]


def test_reconstruct_no_refine_keeps_the_encoders_prediction(tmp_path):
    code, out, err = run_cli("reconstruct", PHOTO, "--out", tmp_path, "--no-refine", "--detail", "none", "--json")
    assert code == 0, err
    doc = json.loads((tmp_path / "astronaut.json").read_text())
    assert "landmark_fit_nme" not in doc["detection"] and "annotator_landmarks" in doc["detection"]


def test_demo_writes_the_page_and_says_where_it_is(tmp_path):
    code, out, err = run_cli("demo", "--out", tmp_path)
    assert code == 0, err
    last = out.strip().splitlines()[-1]
    assert last == f"page: {(tmp_path / 'index.html').resolve()}"
    text = (tmp_path / "index.html").read_text()
    assert text.count("<figure>") >= 9  # input, overlay, render, 5 views, textures
    import pygltflib

    gl = pygltflib.GLTF2().load(str(tmp_path / "astronaut.glb"))
    assert len(gl.animations) == 1 and len(gl.meshes[0].extras["targetNames"]) == 52
    for name in ("astronaut.png", "astronaut_overlay.png", "astronaut_render.png", "astronaut_views.png"):
        assert (tmp_path / name).stat().st_size > 10_000
    from facetwin.models.detail import DEFAULT_MODEL_FILE

    if DEFAULT_MODEL_FILE.is_file():  # the shipped details: their section, and the picture of the expressions
        assert "wrinkles that follow the expression" in text
        strip = np.asarray(__import__("PIL.Image", fromlist=["Image"]).open(tmp_path / "astronaut_details.png"))
        assert strip.shape[1] == 5 * strip.shape[0]  # coarse, detailed, brow raise, smile, squint
        tiles = np.split(strip.astype(np.int16), 5, axis=1)
        assert np.abs(tiles[2] - tiles[1]).mean() > 0.5  # the brow raise is another picture (the mesh and D change)
