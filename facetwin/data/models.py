"""Locating and loading dlib's model files (shipped by the ``face_recognition_models`` wheel).

``import face_recognition_models`` fails on current setuptools (no ``pkg_resources``), so the
files are found through the import system without importing the package.
"""

from __future__ import annotations

import importlib.util
from functools import lru_cache
from pathlib import Path

from facetwin.errors import FacetwinError


def model_file(name: str) -> Path:
    """Path of ``face_recognition_models/models/<name>``."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise FacetwinError("face_recognition_models is not installed (pip install face_recognition_models)")
    path = Path(list(spec.submodule_search_locations)[0]) / "models" / name
    if not path.is_file():
        raise FacetwinError(f"dlib model file missing: {path}")
    return path


@lru_cache(maxsize=None)
def hog_detector():
    import dlib

    return dlib.get_frontal_face_detector()


@lru_cache(maxsize=None)
def shape_predictor_68():
    import dlib

    return dlib.shape_predictor(str(model_file("shape_predictor_68_face_landmarks.dat")))
