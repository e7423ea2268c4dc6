"""The Python API mirrors the command line: animate and personalise through the commands' own
parsers, on the shipped demo photo."""

import json
from pathlib import Path

import numpy as np
import pytest

import facetwin.api as ft
from facetwin.errors import FacetwinError


def test_animate_drives_the_photo_with_itself(tmp_path):
    res = ft.animate(ft.DEMO_PHOTO, ft.DEMO_PHOTO, tmp_path / "anim")
    assert res["frames"] == 1 and res["frames_with_face"] == 1
    with np.load(res["animation"]) as z:
        assert z["vertices"].shape == (1, 4570, 3) and np.isfinite(z["vertices"]).all()
        assert z["expression"].shape == (1, 52)
    summary = json.loads(Path(res["summary"]).read_text())
    assert summary["driven"] == ["expression", "jaw", "eye_left", "eye_right"]
    assert Path(res["side_by_side"]).stat().st_size > 0
    assert res["glb"] and Path(res["glb"]).is_file()


def test_api_errors_are_facetwin_errors(tmp_path):
    with pytest.raises(FacetwinError):
        ft.animate(tmp_path / "missing.jpg", ft.DEMO_PHOTO, tmp_path / "anim")
    with pytest.raises(FacetwinError):
        ft.personalize([tmp_path / "nobody"], tmp_path / "x.facetwin", minutes=0.1)


def test_options_become_long_flags():
    assert ft._options({"adapter_width": 16, "smooth": True, "glb": False, "max_frames": None}) == ["--adapter-width", "16", "--smooth"]
