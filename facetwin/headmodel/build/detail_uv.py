"""The detail UV layout: a second, face-sized UV chart for displacement, normal and texture maps.

The head model's own UVs (the MakeHuman atlas) give the face about 8 % of the map. The detail
layout maps only the face skin plus a margin of a few triangle rings (where its border, the only
seam, lies) with a **least-squares conformal map** (LSCM, Lévy et al. 2002) that is exactly
left–right symmetric: every mirror pair of vertices shares one unknown ``(u, v)`` of which the
partner takes ``(-u, v)`` and midline vertices have ``u = 0``, so ``u(mirror[i]) = 1 - u(i)``
after centring, and the mirror map of the head becomes a horizontal flip of any detail map.
Scale and vertical position are fixed by two midline pins, rotation by the symmetry. The chart is
then scaled uniformly (no extra angle distortion) to fill the square.

Triangles outside the chart get ``uv_faces = -1``: they carry no detail.

Build time and tests only (numpy + scipy).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class DetailUV:
    uv_coords: np.ndarray        # (T, 2) float64 in [0, 1]², v up, one per chart vertex
    uv_faces: np.ndarray         # (F, 3) int64 into uv_coords, -1 outside the chart
    face_region: np.ndarray      # (F,) bool the face skin triangles (what must be large)
    chart_faces: np.ndarray      # (F,) bool triangles with UVs (face region + margin)
    vertex_of_uv: np.ndarray     # (T,) int64 the vertex each UV corner belongs to


# -- regions ---------------------------------------------------------------------------------------

def _face_adjacency(faces: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """Pairs of triangles sharing an edge: arrays (a, b)."""
    F = faces.shape[0]
    e = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]], 0)
    e.sort(1)
    owner = np.tile(np.arange(F), 3)
    key = e[:, 0] * (faces.max() + 1) + e[:, 1]
    order = np.argsort(key, kind="stable")
    key, owner = key[order], owner[order]
    same = key[1:] == key[:-1]
    return owner[:-1][same], owner[1:][same]


def _components(n: int, a: np.ndarray, b: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """Connected components of the triangles ``keep`` over edge adjacency: (n,) label, -1 elsewhere."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    ok = keep[a] & keep[b]
    g = coo_matrix((np.ones(ok.sum()), (a[ok], b[ok])), shape=(n, n))
    _, lab = connected_components(g, directed=False)
    lab = np.where(keep, lab, -1)
    return lab


def face_region(faces: np.ndarray, skin_faces: np.ndarray, region_vertices: np.ndarray,
                mirror: np.ndarray) -> np.ndarray:
    """(F,) bool: skin triangles with all corners in ``region_vertices`` (made mirror-symmetric),
    the largest connected piece, with enclosed holes of skin filled (no seam inside the face)."""
    rv = region_vertices | region_vertices[mirror]
    region = skin_faces & rv[faces].all(1)
    a, b = _face_adjacency(faces)
    lab = _components(faces.shape[0], a, b, region)
    big = np.bincount(lab[lab >= 0]).argmax()
    region = lab == big
    # Skin pieces outside the region that do not reach the big outside piece are holes: fill.
    rest = _components(faces.shape[0], a, b, skin_faces & ~region)
    sizes = np.bincount(rest[rest >= 0])
    outside = sizes.argmax()
    region |= (rest >= 0) & (rest != outside)
    return region


def grow(faces: np.ndarray, region: np.ndarray, allowed: np.ndarray, rings: int) -> np.ndarray:
    """(F,) bool: ``region`` plus ``rings`` rings of vertex-adjacent triangles among ``allowed``."""
    V = faces.max() + 1
    out = region.copy()
    for _ in range(rings):
        vm = np.zeros(V, bool)
        vm[faces[out].ravel()] = True
        out |= allowed & vm[faces].any(1)
    return out


# -- the symmetric LSCM ----------------------------------------------------------------------------

def _local_frames(p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(N, 3, 3) triangles → (N, 3, 2) corners in each triangle's own plane (CCW kept) and (N,) area."""
    e1 = p[:, 1] - p[:, 0]
    e2 = p[:, 2] - p[:, 0]
    n = np.cross(e1, e2)
    area = 0.5 * np.linalg.norm(n, axis=1)
    x = e1 / np.linalg.norm(e1, axis=1, keepdims=True)
    y = np.cross(n / (2 * area[:, None]), x)
    q = np.zeros((p.shape[0], 3, 2))
    q[:, 1, 0] = np.linalg.norm(e1, axis=1)
    q[:, 2, 0] = (e2 * x).sum(1)
    q[:, 2, 1] = (e2 * y).sum(1)
    return q, area


def _gradient_operators(q: np.ndarray, area: np.ndarray) -> np.ndarray:
    """(N, 2, 3): ∇φ_j of the three hat functions in each triangle's plane (for CCW q)."""
    G = np.zeros((q.shape[0], 2, 3))
    for j in range(3):
        d = q[:, (j + 2) % 3] - q[:, (j + 1) % 3]
        G[:, 0, j] = -d[:, 1] / (2 * area)   # R90 (d) / 2A: points from the opposite edge to corner j
        G[:, 1, j] = d[:, 0] / (2 * area)
    return G


def symmetric_lscm(vertices: np.ndarray, faces: np.ndarray, mirror: np.ndarray) -> np.ndarray:
    """Conformal (u, v) of the vertices used by ``faces`` with ``(u, v)[mirror[i]] = (-u, v)[i]``.

    ``vertices`` (V, 3) must be mirror-symmetric under x → -x (the open head model's template is).
    Returns (V, 2) float64; rows of vertices outside the chart are NaN. The chart's height between
    the two pinned midline vertices (its top and bottom) is 1.
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.linalg import spsolve

    V = vertices.shape[0]
    used = np.zeros(V, bool)
    used[faces.ravel()] = True
    used |= used[mirror]
    rep = np.minimum(np.arange(V), mirror)                   # one representative per pair
    sign = np.where(mirror == np.arange(V), 0.0, np.where(np.arange(V) == rep, 1.0, -1.0))
    reps = np.unique(rep[used])
    col = np.full(V, -1, np.int64)
    col[reps] = np.arange(reps.size)
    R = reps.size

    q, area = _local_frames(vertices[faces])
    G = _gradient_operators(q, area)                         # (N, 2, 3)
    w = np.sqrt(area)[:, None]
    # Residual per triangle: sqrt(A) (∇v - R90 ∇u) = sqrt(A) (∇v_x + ∇u_y, ∇v_y - ∇u_x).
    # Unknowns: z = [u_r (R), v_r (R)]; u_i = sign_i u_rep(i), v_i = v_rep(i).
    rows, cols, vals = [], [], []
    N = faces.shape[0]
    for j in range(3):
        vi = faces[:, j]
        c = col[rep[vi]]
        s = sign[vi]
        # row 2t: (∇v)_x + (∇u)_y
        rows += [2 * np.arange(N), 2 * np.arange(N)]
        cols += [R + c, c]
        vals += [w[:, 0] * G[:, 0, j], w[:, 0] * G[:, 1, j] * s]
        # row 2t+1: (∇v)_y - (∇u)_x
        rows += [2 * np.arange(N) + 1, 2 * np.arange(N) + 1]
        cols += [R + c, c]
        vals += [w[:, 0] * G[:, 1, j], -w[:, 0] * G[:, 0, j] * s]
    A = coo_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(2 * N, 2 * R)).tocsc()

    # Pins: v = 1 at the top and v = 0 at the bottom midline vertex; u of midline reps is 0 by
    # construction (their column has only zero entries) and is dropped.
    mid = np.flatnonzero(used & (mirror == np.arange(V)))
    top, bottom = mid[np.argmax(vertices[mid, 1])], mid[np.argmin(vertices[mid, 1])]
    fixed = {R + col[top]: 1.0, R + col[bottom]: 0.0}
    mid_u = set(col[mid].tolist())
    free = np.array([k for k in range(2 * R) if k not in fixed and not (k < R and k in mid_u)])
    b = -sum(A[:, k].toarray()[:, 0] * val for k, val in fixed.items())
    Af = A[:, free]
    z = np.zeros(2 * R)
    z[free] = spsolve((Af.T @ Af).tocsc(), Af.T @ b)
    for k, val in fixed.items():
        z[k] = val
    out = np.full((V, 2), np.nan)
    out[used, 0] = sign[used] * z[col[rep[used]]]
    out[used, 1] = z[R + col[rep[used]]]
    return out


def fill_holes(vertices: np.ndarray, faces: np.ndarray, mirror: np.ndarray):
    """Close every boundary loop but the longest (the chart's border) with a fan to a new vertex
    at the loop's centroid: eye and mouth openings, nostrils. Free inner borders let LSCM fold
    the tiny triangles at the eye corners and nostrils; closed ones keep them in place.

    Returns vertices (V', 3), faces (F', 3) (the originals first) and the extended mirror (V',).
    """
    e = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]], 0)
    key = np.sort(e, 1)
    _, inv, cnt = np.unique(key, axis=0, return_inverse=True, return_counts=True)
    border = e[cnt[inv.ravel()] == 1]                       # directed as in their triangle
    nxt = dict(zip(border[:, 0].tolist(), border[:, 1].tolist()))
    loops, seen = [], set()
    for start in sorted(nxt):
        if start in seen:
            continue
        loop, a = [], start
        while a not in seen:
            seen.add(a)
            loop.append(a)
            a = nxt[a]
        loops.append(loop)
    loops.sort(key=len, reverse=True)
    inner = loops[1:]
    V = vertices.shape[0]
    centres = np.array([vertices[l].mean(0) for l in inner]).reshape(-1, 3)
    new_faces = [faces]
    for k, loop in enumerate(inner):
        l = np.asarray(loop)
        # The loop runs along its triangles' edges; the fan goes the other way round.
        new_faces.append(np.stack([np.roll(l, -1), l, np.full(l.size, V + k)], 1))
    # Mirror of a loop = the loop through the mirrored vertices.
    owner = {v: k for k, l in enumerate(inner) for v in l}
    ext_mirror = np.concatenate([mirror, V + np.array([owner[mirror[l[0]]] for l in inner], np.int64)])
    return np.concatenate([vertices, centres]), np.concatenate(new_faces), ext_mirror


def untangle(uv: np.ndarray, faces: np.ndarray, mirror: np.ndarray, max_rings: int = 6) -> np.ndarray:
    """Remove the fold-overs LSCM leaves in a few tiny triangles of deep creases.

    The vertices within ``rings`` rings of the flipped triangles are re-placed as the discrete
    harmonic (uniform Laplacian, Tutte) interpolation of the patch's border, which embeds a
    patch whose border is convex; the ring count grows until nothing is flipped. Then the
    result is re-symmetrised. ``uv`` (V, 2) with the midline at u = 0, ``faces`` a closed disk
    (holes filled, :func:`fill_holes`); returns a new array.
    """
    from scipy.sparse import coo_matrix, diags
    from scipy.sparse.linalg import spsolve

    uv = uv.copy()
    V = uv.shape[0]
    e = np.unique(np.sort(np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]], 0), 1), axis=0)
    adj = coo_matrix((np.ones(2 * len(e)), (np.r_[e[:, 0], e[:, 1]], np.r_[e[:, 1], e[:, 0]])), shape=(V, V)).tocsr()
    border = _boundary_vertices(faces, V)
    for rings in range(1, max_rings + 1):
        bad = _signed_areas(uv, faces) <= 0
        if not bad.any():
            break
        w = np.zeros(V, bool)
        w[faces[bad].ravel()] = True
        for _ in range(rings):
            w |= (adj @ w.astype(float)) > 0
        w |= w[mirror]
        move = np.flatnonzero(w & ~border)
        keep = np.flatnonzero(~(w & ~border))
        sub = adj[move]
        L = (diags(np.asarray(sub.sum(1)).ravel()) - sub[:, move]).tocsc()
        rhs = sub[:, keep] @ uv[keep]
        uv[move] = np.column_stack([spsolve(L, rhs[:, k]) for k in range(2)])
        uv = 0.5 * (uv + uv[mirror] * np.array([-1.0, 1.0]))
    return uv


def _boundary_vertices(faces: np.ndarray, V: int) -> np.ndarray:
    e = np.sort(np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]], 0), 1)
    u, n = np.unique(e, axis=0, return_counts=True)
    m = np.zeros(V, bool)
    m[u[n == 1].ravel()] = True
    return m


# -- the layout ------------------------------------------------------------------------------------

def detail_uv_layout(vertices: np.ndarray, faces: np.ndarray, skin_faces: np.ndarray,
                     region_vertices: np.ndarray, mirror: np.ndarray, margin_rings: int = 1,
                     pad: float = 0.004, max_cuts: int = 4) -> DetailUV:
    """The detail layout of the face skin ``region_vertices`` (see the module docstring).

    Args:
        vertices: (V, 3) mirror-symmetric template, metres; faces: (F, 3) CCW from outside.
        skin_faces: (F,) bool the skin surface (no eyeballs, sockets, mouth interior).
        region_vertices: (V,) bool the face skin (face, nose, lips, eyelids, cheeks, ...).
        margin_rings: rings of skin triangles added around the face (the seam lies outside).
        pad: empty border of the square, in UV units (keeps bilinear look-ups inside).
    """
    region = face_region(faces, skin_faces, region_vertices, mirror)
    chart = grow(faces, region, skin_faces, margin_rings)
    # The chart's vertex set must be mirror-closed so every vertex has its partner's UV.
    vm = np.zeros(vertices.shape[0], bool)
    vm[faces[chart].ravel()] = True
    vm &= vm[mirror]
    chart &= vm[faces].all(1)
    # LSCM folds a few tiny triangles in the deepest creases (the alar grooves beside the
    # nostrils); _solve untangles them. Should a fold survive that, its triangles are cut out of
    # the chart (the hole is filled for the solve) until nothing is flipped.
    dropped = np.zeros(faces.shape[0], bool)
    for _ in range(max_cuts + 1):
        uv = _solve(vertices, faces, chart, mirror)
        flipped = np.zeros(faces.shape[0], bool)
        flipped[np.flatnonzero(chart)] = _signed_areas(uv, faces[chart]) <= 0
        if not flipped.any():
            break
        flipped = grow(faces, flipped, chart, 1)
        flipped |= _mirror_faces(faces, flipped, mirror)
        chart &= ~flipped
        dropped |= flipped
    else:
        raise RuntimeError("the detail UV layout still has flipped triangles")
    region &= ~dropped
    used = ~np.isnan(uv[:, 0])
    lo, hi = np.nanmin(uv, 0), np.nanmax(uv, 0)
    scale = (1 - 2 * pad) / (hi - lo).max()
    centre = 0.5 * (lo + hi)
    centre[0] = 0.0                                          # the midline is u = 1/2 exactly
    uv = (uv - centre) * scale + 0.5
    verts = np.flatnonzero(used)
    index = np.full(vertices.shape[0], -1, np.int64)
    index[verts] = np.arange(verts.size)
    uv_faces = np.where(chart[:, None], index[faces], -1)
    return DetailUV(uv_coords=uv[verts], uv_faces=uv_faces, face_region=region, chart_faces=chart,
                    vertex_of_uv=verts)


def _solve(vertices, faces, chart, mirror):
    """Symmetric LSCM of the chart with its inner holes filled; (V, 2), u grows to the subject's left."""
    fv, ff, fm = fill_holes(vertices, faces[chart], mirror)
    uv = symmetric_lscm(fv, ff, fm)
    if np.nansum(_signed_areas(uv, ff)) < 0:
        uv[:, 0] *= -1
    used = ~np.isnan(uv[:, 0])
    idx = np.cumsum(used) - 1
    uv[used] = untangle(uv[used], idx[ff], idx[fm[used]])
    uv = uv[: vertices.shape[0]]
    # Orientation: CCW from outside must stay CCW in UV.
    if np.nansum(_signed_areas(uv, faces[chart])) < 0:
        uv[:, 0] *= -1
    return uv


def _mirror_faces(faces: np.ndarray, sel: np.ndarray, mirror: np.ndarray) -> np.ndarray:
    """(F,) bool: triangles whose mirrored corner set is a selected triangle."""
    key = lambda f: np.sort(f, 1)[:, 0] * 10**12 + np.sort(f, 1)[:, 1] * 10**6 + np.sort(f, 1)[:, 2]  # noqa: E731
    return np.isin(key(mirror[faces]), key(faces[sel]))


def _signed_areas(uv: np.ndarray, faces: np.ndarray) -> np.ndarray:
    a, b, c = uv[faces[:, 0]], uv[faces[:, 1]], uv[faces[:, 2]]
    return 0.5 * ((b[:, 0] - a[:, 0]) * (c[:, 1] - a[:, 1]) - (c[:, 0] - a[:, 0]) * (b[:, 1] - a[:, 1]))


# -- measurements ----------------------------------------------------------------------------------

def stretch(vertices: np.ndarray, faces: np.ndarray, uv_coords: np.ndarray, uv_faces: np.ndarray) -> dict:
    """Per-triangle distortion of a UV map of the triangles ``faces`` (all must have UVs).

    Returns arrays (N,): ``area_ratio`` (UV area share / surface area share, 1 = uniform texel
    density), ``conformal`` (σ₁/σ₂ of the map's Jacobian, 1 = angles kept), ``signed_uv_area``,
    ``area3d`` (m²) and ``area_uv``.
    """
    q, area = _local_frames(vertices[faces].astype(np.float64))
    G = _gradient_operators(q, area)
    uvt = uv_coords[uv_faces].astype(np.float64)              # (N, 3, 2)
    J = np.einsum("nkj,njc->nck", G, uvt)                     # (N, 2 (u, v), 2 (x, y))
    s = np.linalg.svd(J, compute_uv=False)
    signed = _signed_areas(uv_coords.astype(np.float64), uv_faces)
    a_uv = np.abs(signed)
    ratio = (a_uv / a_uv.sum()) / (area / area.sum())
    return {"area_ratio": ratio, "conformal": s[:, 0] / np.maximum(s[:, 1], 1e-300),
            "signed_uv_area": signed, "area3d": area, "area_uv": a_uv}


def summary(vertices: np.ndarray, faces: np.ndarray, layout: DetailUV, size: int = 256) -> dict:
    """Coverage and stretch figures of the face region (docs/head-model.md, BENCHMARKS.md)."""
    f = layout.face_region
    st = stretch(vertices, faces[f], layout.uv_coords, layout.uv_faces[f])
    w = st["area3d"] / st["area3d"].sum()

    def wq(x, p):  # area-weighted quantile
        o = np.argsort(x)
        return float(np.interp(p, np.cumsum(w[o]) - 0.5 * w[o], x[o]))

    coverage = float(st["area_uv"].sum())                     # the square has area 1
    texel_mm = 1e3 * np.sqrt(st["area3d"].sum() / (coverage * size * size))
    cst = stretch(vertices, faces[layout.chart_faces], layout.uv_coords, layout.uv_faces[layout.chart_faces])
    return {
        "face_coverage": coverage,
        "chart_coverage": float(cst["area_uv"].sum()),
        "face_triangles": int(f.sum()),
        "chart_triangles": int(layout.chart_faces.sum()),
        "flipped_triangles": int((cst["signed_uv_area"] <= 0).sum()),
        "texel_mm_at_size": texel_mm,
        "size": size,
        "area_ratio_p5": wq(st["area_ratio"], 0.05),
        "area_ratio_median": wq(st["area_ratio"], 0.5),
        "area_ratio_p95": wq(st["area_ratio"], 0.95),
        "conformal_mean": float((w * st["conformal"]).sum()),
        "conformal_p95": wq(st["conformal"], 0.95),
        "conformal_max": float(st["conformal"].max()),
    }
