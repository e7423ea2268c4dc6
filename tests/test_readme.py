"""The README's Python API example runs as written (in a scratch folder) and does what it says."""

import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_readme_python_example_runs(tmp_path, monkeypatch):
    text = (ROOT / "README.md").read_text()
    section = text[text.index("## Python API"):]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    monkeypatch.chdir(tmp_path)
    scope: dict = {}
    exec(compile(code, "README.md", "exec"), scope)
    assert scope["face"].vertices.shape == (4570, 3)
    assert len(scope["weights"]) == 52 and "jawOpen" in scope["weights"]
    assert Path(scope["page"]) == Path("out/astronaut.html") and Path(scope["page"]).stat().st_size > 1e6
    assert tuple(scope["out"].vertices.shape) == (1, 4570, 3)
    files = scope["files"]
    assert json.loads(Path(files["json"]).read_text())["expression_weights"] == scope["weights"]
    for kind in ("glb", "obj", "mtl", "texture"):
        assert Path(files[kind]).is_file()
