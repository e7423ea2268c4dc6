"""Shared by the export tests: one real reconstruction of the shipped demo photo (the shipped
coarse model) and its exported files, made once per test session."""

import pytest


@pytest.fixture(scope="session")
def astronaut_reconstruction():
    import facetwin.api as ft

    return ft.reconstruct(ft.demo_photo())


@pytest.fixture(scope="session")
def astronaut_files(astronaut_reconstruction, tmp_path_factory):
    """Every per-face file for the astronaut, with a 2-second animation in the GLB."""
    import numpy as np

    from facetwin.export import write_result_files

    out = tmp_path_factory.mktemp("export")
    t = np.linspace(0, 2, 21, dtype=np.float32)
    w = np.tile(astronaut_reconstruction.params["expression"].astype(np.float32), (21, 1))  # the reconstructed face...
    w[:, 24] = np.sin(np.pi * t / 2) ** 2  # ...opening its jaw (jawOpen)
    rot = np.zeros((21, 5, 3), np.float32)
    rot[:, 1, 1] = 0.3 * np.sin(np.pi * t)  # neck turn
    saved = write_result_files(astronaut_reconstruction, out, "astronaut", animation=(t, w, rot))
    saved["animation"] = (t, w, rot)
    saved["out"] = out
    return saved
