"""Reading the project's .npz artifacts with one clear error for every way a file can be bad."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from facetwin.errors import FacetwinError


def read_npz(path: str | Path, what: str) -> dict[str, np.ndarray]:
    """All arrays of an .npz (no pickles); ``what`` names the artifact in error messages."""
    path = Path(path)
    if not path.is_file():
        raise FacetwinError(f"{what} not found: {path}")
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except Exception as exc:  # zipfile/ValueError/OSError: all mean a bad file
        raise FacetwinError(f"cannot read {what} {path}: {exc}") from None
