"""Resolve a head-model spec ('open', 'flame:/path.pkl[,/path/embedding]', '/path/model.npz')."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from facetwin.errors import FacetwinError
from facetwin.headmodel.data import HeadModelData
from facetwin.paths import ASSETS_DIR

OPEN_MODEL_FILE = ASSETS_DIR / "open_head_model.npz"


@lru_cache(maxsize=4)
def load_head_model_data(spec: str = "open") -> HeadModelData:
    """Load the arrays of a head model from a spec string (cached)."""
    spec = spec.strip()
    if spec in ("open", "default", ""):
        if not OPEN_MODEL_FILE.is_file():
            raise FacetwinError(
                f"the open head model is missing ({OPEN_MODEL_FILE}); rebuild it with scripts/build_open_head_model.py"
            )
        return HeadModelData.load_npz(OPEN_MODEL_FILE)
    if spec.startswith("flame:"):
        from facetwin.headmodel.flame import load_flame

        parts = spec[len("flame:"):].split(",")
        model_path = parts[0]
        embedding = parts[1] if len(parts) > 1 and parts[1] else None
        masks = parts[2] if len(parts) > 2 and parts[2] else None
        return load_flame(model_path, embedding, masks_path=masks)
    if spec.endswith(".npz"):
        return HeadModelData.load_npz(Path(spec))
    raise FacetwinError(f"unknown head model '{spec}': use 'open', 'flame:/path/generic_model.pkl[,embedding.npy[,FLAME_masks.pkl]]' or a .npz file")


def load_head_model(spec: str = "open"):
    """A :class:`HeadModel` torch module for a spec string."""
    from facetwin.headmodel.model import HeadModel

    return HeadModel(load_head_model_data(spec))
