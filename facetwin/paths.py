"""Where facetwin finds things that are not inside the package."""

from __future__ import annotations

import os
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
ASSETS_DIR = PACKAGE_DIR / "headmodel" / "assets"
CHECKPOINTS_DIR = PACKAGE_DIR / "checkpoints"


def shared_data_dir() -> Path:
    """Root of the research data set (``$FACETWIN_DATA``, else ``../shared/data`` beside the repo)."""
    env = os.environ.get("FACETWIN_DATA")
    if env:
        return Path(env)
    return PACKAGE_DIR.parent.parent / "shared" / "data"


def cache_dir() -> Path:
    """Where facetwin keeps what it derives once (converted weights, ONNX graphs, labels):
    ``$FACETWIN_CACHE`` or ``~/.cache/facetwin``."""
    env = os.environ.get("FACETWIN_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "facetwin"
