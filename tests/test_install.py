"""Install: `make demo` installs only the runtime requirements; TORCH_INDEX puts torch from that
index (PyTorch's CPU wheels) before anything else; report-only packages are an extra; a wheel
built from the repository installs in a clean venv and runs the demo (slow)."""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CPU_INDEX = "https://download.pytorch.org/whl/cpu"


def make_dry_run(*args, venv):
    if not shutil.which("make"):
        pytest.skip("make is not installed")
    proc = subprocess.run(["make", "-n", "-B", f"VENV={venv}", *args], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return [ln for ln in proc.stdout.splitlines() if " install " in ln]


def test_torch_index_installs_the_cpu_torch_first_and_alone(tmp_path):
    lines = make_dry_run("setup", f"TORCH_INDEX={CPU_INDEX}", venv=tmp_path / "v")
    torch_line = next(ln for ln in lines if "--index-url" in ln)
    assert f"--index-url {CPU_INDEX}" in torch_line and '"torch==2.13.0"' in torch_line and "--no-deps" in torch_line
    runtime = next(i for i, ln in enumerate(lines) if "-r requirements/runtime.txt" in ln)
    assert lines.index(torch_line) < runtime  # the pinned torch is then already satisfied by the CPU build
    assert sum("--index-url" in ln for ln in lines) == 1  # nothing else comes from that index


def test_without_torch_index_no_other_index_is_used(tmp_path):
    assert not any("--index-url" in ln for ln in make_dry_run("setup", venv=tmp_path / "v"))


def test_make_demo_installs_only_the_runtime_requirements(tmp_path):
    text = "\n".join(make_dry_run("demo", venv=tmp_path / "v"))
    assert "requirements/runtime.txt" in text
    for other in ("dev.txt", "build.txt", "report.txt"):
        assert other not in text
    test = "\n".join(make_dry_run("test", venv=tmp_path / "v"))
    assert all(f"requirements/{r}" in test for r in ("runtime.txt", "report.txt", "dev.txt", "build.txt"))


def _names(path):
    return {re.split(r"[=<>\[ ]", ln.strip())[0].lower() for ln in path.read_text().splitlines() if ln.strip() and not ln.startswith("#")}


def test_requirements_are_split_and_pinned():
    req = ROOT / "requirements"
    runtime = _names(req / "runtime.txt")
    assert {"torch", "trimesh", "pygltflib"} <= runtime
    assert not runtime & {"matplotlib", "scikit-image", "pytest", "anny"}
    assert "matplotlib" in _names(req / "report.txt")
    for f in req.glob("*.txt"):
        for ln in f.read_text().splitlines():
            if ln.strip() and not ln.startswith("#"):
                assert "==" in ln, f"{f.name}: {ln} is not pinned"
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    deps = {re.split(r"[=<>\[ ]", d)[0].lower() for d in project["dependencies"]}
    assert "matplotlib" not in deps and "scikit-image" not in deps and "pygltflib" in deps
    assert "report" in project["optional-dependencies"]


def test_licence_is_the_full_apache_2_text():
    text = (ROOT / "LICENSE").read_text()
    assert "Apache License" in text and "Version 2.0, January 2004" in text
    assert "TERMS AND CONDITIONS FOR USE, REPRODUCTION, AND DISTRIBUTION" in text and "END OF TERMS AND CONDITIONS" in text
    assert len(text) > 11000


@pytest.mark.slow
def test_wheel_installs_in_a_clean_venv_and_runs_the_demo(tmp_path):
    """Build a wheel, install it with only the runtime requirements into a new venv (torch from
    the machine's local wheel where pip's configuration has one) and run the demo from outside
    the repository."""
    dist = tmp_path / "dist"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation", "-w", str(dist), str(ROOT)],
                   check=True, timeout=600, cwd=tmp_path)
    (wheel,) = dist.glob("facetwin-*.whl")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "--no-compile"]  # no .pyc for all of torch
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    proc = subprocess.run([*pip, "-r", str(ROOT / "requirements" / "runtime.txt"), str(wheel)], capture_output=True, text=True,
                          timeout=1800, env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    py = str(venv / "bin" / "python")
    probe = subprocess.run([py, "-c", "import facetwin, importlib.util as u; print(facetwin.__file__); "
                            "print(u.find_spec('matplotlib') is None, u.find_spec('skimage') is None)"],
                           capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)
    where, no_extras = probe.stdout.split("\n")[:2]
    assert str(venv) in where and no_extras == "True True", probe.stdout + probe.stderr
    demo = subprocess.run([str(venv / "bin" / "facetwin"), "demo", "--out", str(tmp_path / "demo")], capture_output=True, text=True,
                          env=env, cwd=tmp_path, timeout=900)
    assert demo.returncode == 0, demo.stderr[-3000:]
    assert demo.stdout.strip().splitlines()[-1] == f"page: {(tmp_path / 'demo' / 'index.html').resolve()}"
    assert (tmp_path / "demo" / "astronaut.glb").stat().st_size > 1e6
