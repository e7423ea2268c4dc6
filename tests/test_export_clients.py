"""Real clients open the exports of a real photo: Debian's Blender imports the GLB (every shape
key, the armature) and the OBJ (UV map, material, texture, smooth shading) headless; the Khronos
glTF validator reports zero errors. Skipped where the tool is absent (install: `make tools`)."""

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from export_fixtures import astronaut_files, astronaut_reconstruction  # noqa: F401

ROOT = Path(__file__).resolve().parents[1]
BLENDER_SCRIPT = ROOT / "scripts" / "blender" / "inspect_import.py"
VALIDATOR = ROOT / "scripts" / "js" / "node_modules" / "gltf-validator"


def blender_import(path):
    if not shutil.which("blender"):
        pytest.skip("Debian's blender is not installed (make tools)")
    proc = subprocess.run(["blender", "--background", "--factory-startup", "--python", str(BLENDER_SCRIPT), "--", str(path)],
                          capture_output=True, text=True, timeout=300)
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("FACETWIN_REPORT ")), None)
    assert line, f"blender did not import {path.name}: {proc.stdout[-2000:]} {proc.stderr[-2000:]}"
    return json.loads(line.split(" ", 1)[1])


def validate(path):
    if not (shutil.which("node") and VALIDATOR.is_dir()):
        pytest.skip("the Khronos glTF validator is not installed (make tools)")
    proc = subprocess.run(["node", str(ROOT / "scripts" / "js" / "validate_gltf.mjs"), str(path)], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_blender_imports_the_glb_with_every_shape_key_and_the_armature(astronaut_files, astronaut_reconstruction):
    report = blender_import(Path(astronaut_files["files"]["glb"]))
    meshes = [o for o in report["objects"] if o["type"] == "MESH"]
    rigs = [o for o in report["objects"] if o["type"] == "ARMATURE"]
    assert len(meshes) == 1 and len(rigs) == 1
    mesh = meshes[0]
    assert len(mesh["shape_keys"]) == 53  # Basis + 52 ARKit expressions
    assert "jawOpen" in mesh["shape_keys"] and "eyeBlinkLeft" in mesh["shape_keys"] and "tongueOut" in mesh["shape_keys"]
    # the reconstructed expression is the default
    psi = astronaut_reconstruction.params["expression"]
    assert mesh["shape_key_values"]["mouthSmileLeft"] == pytest.approx(float(psi[43]), abs=1e-5)
    assert rigs[0]["bones"] == ["global", "neck", "jaw", "eye_left", "eye_right"]
    assert mesh["armature"] == rigs[0]["name"]
    assert set(mesh["vertex_groups"]) == {"global", "neck", "jaw", "eye_left", "eye_right"}
    assert mesh["uv_layers"] and mesh["textures"] and mesh["vertices"] == 4770
    assert report["actions"], "the animation became no Blender action"


def test_blender_imports_the_obj_with_uvs_and_material(astronaut_files):
    report = blender_import(Path(astronaut_files["files"]["obj"]))
    (mesh,) = [o for o in report["objects"] if o["type"] == "MESH"]
    assert mesh["uv_layers"] == ["UVMap"]
    assert mesh["materials"] == ["astronaut_texture"] and mesh["textures"] == ["astronaut_texture.png"]
    assert mesh["smooth"] and mesh["custom_normals"]
    assert mesh["vertices"] == 4770 and mesh["polygons"] == 9084


def test_khronos_validator_reports_zero_errors(astronaut_files):
    report = validate(astronaut_files["files"]["glb"])
    issues = report["issues"]
    assert issues["numErrors"] == 0, issues["messages"][:10]
    assert issues["numWarnings"] == 0, issues["messages"][:10]
    info = report["info"]
    assert info["hasMorphTargets"] and info["hasSkins"] and info["hasTextures"] and info["animationCount"] == 1
    assert info["totalVertexCount"] == 4770 and info["totalTriangleCount"] == 9084
