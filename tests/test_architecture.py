"""The package's import arrows (docs/architecture.md): lower layers never import higher ones.

Static (AST) scan of every module's facetwin imports, lazy imports inside functions included.
"""

import ast
from pathlib import Path

import facetwin

ROOT = Path(facetwin.__file__).parent
BASE = {"errors", "paths", "outputs", "npzio"}
LOW = BASE | {"geometry"}
# package -> the facetwin packages it may import (besides itself); keep in step with docs/architecture.md
ALLOWED = {
    "errors": set(), "paths": set(), "npzio": {"errors"}, "outputs": {"errors"},
    "geometry": BASE,
    "data": LOW,
    "headmodel": LOW,
    "rendering": LOW,
    "appearance": LOW | {"rendering"},
    "networks": LOW | {"data"},
    "losses": LOW | {"data", "headmodel", "rendering", "networks"},
    "models": LOW | {"data", "headmodel", "rendering", "appearance", "networks", "losses"},
    "evaluation": LOW | {"data", "headmodel", "rendering", "appearance", "networks", "losses", "models"},
    "inference": LOW | {"data", "headmodel", "rendering", "appearance", "networks", "losses", "models", "evaluation"},
    "training": LOW | {"data", "headmodel", "rendering", "appearance", "networks", "losses", "models", "evaluation"},
    "export": LOW | {"data", "headmodel", "rendering", "appearance"},
    "viewer": BASE,
}
TOP = {"cli", "__main__", "__init__", "api", "configs", "checkpoints", "assets"}  # may import anything


def _imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = []
        if isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        for name in names:
            parts = name.split(".")
            if parts[0] == "facetwin" and len(parts) > 1:
                found.add(parts[1])
    return found


def test_lower_layers_never_import_higher_ones():
    wrong = []
    for path in sorted(ROOT.rglob("*.py")):
        rel = path.relative_to(ROOT).parts
        pkg = rel[0] if len(rel) > 1 else path.stem
        if pkg in TOP:
            continue
        assert pkg in ALLOWED, f"new package {pkg}: add it to ALLOWED here and to docs/architecture.md"
        for other in _imports(path) - {pkg} - ALLOWED[pkg]:
            wrong.append(f"{path.relative_to(ROOT)} imports facetwin.{other}")
    assert not wrong, "\n".join(wrong)


def test_training_and_inference_are_side_by_side():
    for path in (ROOT / "inference").rglob("*.py"):
        assert "training" not in _imports(path), path
    for path in (ROOT / "training").rglob("*.py"):
        assert "inference" not in _imports(path), path
