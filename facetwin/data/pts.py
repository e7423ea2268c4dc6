"""iBUG/300-W ``.pts`` landmark files (1-based on disk, 0-based-corner in memory)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from facetwin.errors import FacetwinError

# 300-W stores pixel centres with a 1-based index: the first pixel's centre is (1, 1). In the
# project convention (origin at the top-left corner) that centre is (0.5, 0.5); we follow the
# common practice of subtracting 1, i.e. treat 300-W coordinates as "1-based corner" values.
PTS_OFFSET = 1.0


def read_pts(path, n_points_expected: int | None = None) -> np.ndarray:
    """Landmarks ``(N, 2)`` float64 from a ``.pts`` file, converted to 0-based.

    NaN/Inf coordinates are refused; with ``n_points_expected`` so is any other point count."""
    path = Path(path)
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError as exc:
        raise FacetwinError(f"unreadable landmarks: {path}: {exc.strerror or exc}") from None
    try:
        start = next(i for i, line in enumerate(lines) if line.strip() == "{")
        end = next(i for i, line in enumerate(lines) if line.strip() == "}")
        n_points = None
        for line in lines[:start]:
            if line.strip().lower().startswith("n_points"):
                n_points = int(line.split(":")[1])
        pts = np.array([[float(v) for v in line.split()[:2]] for line in lines[start + 1 : end] if line.strip()])
    except (StopIteration, ValueError, IndexError):
        raise FacetwinError(f"unreadable landmarks: {path.name}: not an iBUG .pts file") from None
    if pts.ndim != 2 or pts.shape[1] != 2 or (n_points is not None and len(pts) != n_points):
        raise FacetwinError(f"unreadable landmarks: {path.name}: expected {n_points} points, found {len(pts)}")
    if n_points_expected is not None and len(pts) != n_points_expected:
        raise FacetwinError(f"unreadable landmarks: {path.name}: {len(pts)} points, expected {n_points_expected}")
    if not np.isfinite(pts).all():
        raise FacetwinError(f"unreadable landmarks: {path.name}: NaN or infinite coordinates")
    return pts - PTS_OFFSET


def write_pts(path, points: np.ndarray) -> None:
    """Write ``(N, 2)`` 0-based landmarks as a 1-based ``.pts`` file."""
    points = np.asarray(points, dtype=np.float64)
    from facetwin.outputs import write_text

    body = "\n".join(f"{x + PTS_OFFSET:.3f} {y + PTS_OFFSET:.3f}" for x, y in points)
    write_text(path, f"version: 1\nn_points: {len(points)}\n{{\n{body}\n}}\n")
