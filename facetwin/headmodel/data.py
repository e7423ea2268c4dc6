"""The arrays that define a head model, independent of torch, with a compressed .npz format.

Every head model (the open default, a user's FLAME) is converted to this container; the torch
module :class:`facetwin.headmodel.model.HeadModel` is built from it.

Conventions: metres; y up, z out of the face, x towards the subject's left (FLAME's frame).
Joints, in order: global, neck, jaw, eye_left, eye_right.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from facetwin.errors import FacetwinError
from facetwin.npzio import read_npz

JOINT_NAMES = ("global", "neck", "jaw", "eye_left", "eye_right")
PARENTS = (-1, 0, 1, 1, 1)
REGION_NAMES = (
    "face", "nose", "ears", "lips", "eyes", "eyeballs", "eye_sockets", "mouth_interior", "neck",
)
N_LANDMARKS = 68


@dataclass
class HeadModelData:
    """All arrays of a head model. Shapes: V vertices, F triangles, T UV corners."""

    name: str
    v_template: np.ndarray            # (V, 3) float32
    faces: np.ndarray                 # (F, 3) int64
    shapedirs: np.ndarray             # (V, 3, n_shape) identity basis, β ~ N(0, I)
    exprdirs: np.ndarray              # (V, 3, n_expr) expression basis
    j_template: np.ndarray            # (5, 3) rest joints of the template
    j_shapedirs: np.ndarray           # (5, 3, n_shape) joint motion with β
    j_exprdirs: np.ndarray            # (5, 3, n_expr) joint motion with ψ (zeros for the open model)
    lbs_weights: np.ndarray           # (V, 5)
    landmark_faces: np.ndarray        # (68,) int64 triangle index of each landmark
    landmark_bary: np.ndarray         # (68, 3) barycentric coordinates
    posedirs: np.ndarray | None = None          # (36, V*3) FLAME pose correctives, or None
    uv_coords: np.ndarray | None = None         # (T, 2) in [0, 1]², v up (OpenGL convention)
    uv_faces: np.ndarray | None = None          # (F, 3) int64 into uv_coords
    # Detail UV layout (optional; the open model has it, FLAME keeps its own UVs only): a face-sized,
    # left-right symmetric chart for displacement / detail normal / unwrapped texture maps.
    detail_uv_coords: np.ndarray | None = None  # (T', 2) in [0, 1]², v up; u(mirror[i]) = 1 - u(i)
    detail_uv_faces: np.ndarray | None = None   # (F, 3) int64 into detail_uv_coords, -1 outside the chart
    detail_face_region: np.ndarray | None = None  # (F,) bool the face skin triangles of the chart
    masks: dict[str, np.ndarray] = field(default_factory=dict)  # region name -> (V,) bool
    mirror: np.ndarray | None = None            # (V,) int64 index of the mirror partner
    silhouette_candidates: np.ndarray | None = None  # (V,) bool: may lie on the outline (Eq. 1)
    dynamic_landmark_faces: np.ndarray | None = None  # (Y, 17) contour triangles per yaw bin
    dynamic_landmark_bary: np.ndarray | None = None   # (Y, 17, 3)
    dynamic_landmark_yaw: np.ndarray | None = None    # (Y,) yaw (radians) of each bin
    expression_names: tuple[str, ...] = ()
    expression_range: tuple[float, float] | None = None  # e.g. (0, 1) for blendshape weights
    meta: dict[str, str] = field(default_factory=dict)

    @property
    def n_vertices(self) -> int:
        return int(self.v_template.shape[0])

    @property
    def n_shape(self) -> int:
        return int(self.shapedirs.shape[2])

    @property
    def n_expr(self) -> int:
        return int(self.exprdirs.shape[2])

    @property
    def has_detail_uv(self) -> bool:
        return self.detail_uv_coords is not None and self.detail_uv_faces is not None

    def detail_chart(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """The triangles of the detail UV chart: (faces (N, 3), uv_coords (T', 2), uv_faces (N, 3),
        face_index (N,) into ``faces``). Raises FacetwinError for a head model without detail UVs."""
        if not self.has_detail_uv:
            raise FacetwinError(f"head model '{self.name}' has no detail UV layout (the open head model has one)")
        idx = np.flatnonzero((self.detail_uv_faces >= 0).all(1))
        return self.faces[idx], self.detail_uv_coords, self.detail_uv_faces[idx], idx

    def statistics(self) -> dict:
        return {
            "name": self.name,
            "vertices": self.n_vertices,
            "faces": int(self.faces.shape[0]),
            "identity_components": self.n_shape,
            "expression_components": self.n_expr,
            "joints": len(JOINT_NAMES),
            "landmarks": int(self.landmark_faces.shape[0]),
            "uv_corners": int(self.uv_coords.shape[0]) if self.uv_coords is not None else 0,
            "regions": sorted(self.masks),
            "pose_correctives": self.posedirs is not None,
            "detail_uv_corners": int(self.detail_uv_coords.shape[0]) if self.has_detail_uv else 0,
        }

    # -- serialisation -------------------------------------------------------------------
    def save_npz(self, path: str | Path, float_dtype=np.float32) -> None:
        """Write a compressed .npz. Large bases may be stored as float16 (``float_dtype``)."""
        arrays: dict[str, np.ndarray] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if value is None:
                continue
            if f.name == "masks":
                for region, mask in value.items():
                    arrays[f"mask_{region}"] = np.asarray(mask, bool)
            elif f.name == "meta":
                for k, v in value.items():
                    arrays[f"meta_{k}"] = np.array(str(v))
            elif f.name in ("name",):
                arrays[f.name] = np.array(value)
            elif f.name == "expression_names":
                arrays[f.name] = np.array(list(value), dtype=str)
            elif f.name == "expression_range":
                arrays[f.name] = np.array(value, np.float32)
            elif f.name in ("shapedirs", "exprdirs", "posedirs"):
                arrays[f.name] = np.asarray(value, float_dtype)
            else:
                arrays[f.name] = np.asarray(value)
        np.savez_compressed(path, **arrays)

    @classmethod
    def load_npz(cls, path: str | Path) -> "HeadModelData":
        raw = read_npz(path, "head model")
        kwargs: dict = {"masks": {}, "meta": {}}
        names = {f.name for f in dataclasses.fields(cls)}
        for key, value in raw.items():
            if key.startswith("mask_"):
                kwargs["masks"][key[5:]] = value.astype(bool)
            elif key.startswith("meta_"):
                kwargs["meta"][key[5:]] = str(value)
            elif key == "name":
                kwargs["name"] = str(value)
            elif key == "expression_names":
                kwargs[key] = tuple(str(s) for s in value)
            elif key == "expression_range":
                kwargs[key] = (float(value[0]), float(value[1]))
            elif key in names:
                if value.dtype == np.float16:
                    value = value.astype(np.float32)
                kwargs[key] = value
        missing = [f.name for f in dataclasses.fields(cls)
                   if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING and f.name not in kwargs]
        if missing:
            raise FacetwinError(f"{path} is not a facetwin head model (missing {', '.join(missing)})")
        data = cls(**kwargs)
        data.validate()
        return data

    def validate(self) -> None:
        """Check shapes are consistent; raise FacetwinError otherwise."""
        V = self.n_vertices
        checks = [
            (self.v_template.shape == (V, 3), "v_template"),
            (self.faces.ndim == 2 and self.faces.shape[1] == 3 and self.faces.max() < V, "faces"),
            (self.shapedirs.shape[:2] == (V, 3), "shapedirs"),
            (self.exprdirs.shape[:2] == (V, 3), "exprdirs"),
            (self.j_template.shape == (5, 3), "j_template"),
            (self.j_shapedirs.shape == (5, 3, self.n_shape), "j_shapedirs"),
            (self.j_exprdirs.shape == (5, 3, self.n_expr), "j_exprdirs"),
            (self.lbs_weights.shape == (V, 5), "lbs_weights"),
            (self.landmark_faces.shape[0] == self.landmark_bary.shape[0], "landmarks"),
            (self.posedirs is None or self.posedirs.shape == (36, V * 3), "posedirs"),
            (self.mirror is None or self.mirror.shape == (V,), "mirror"),
            ((self.detail_uv_coords is None) == (self.detail_uv_faces is None), "detail_uv"),
        ]
        if self.has_detail_uv:
            F, T = self.faces.shape[0], self.detail_uv_coords.shape[0]
            checks += [
                (self.detail_uv_coords.ndim == 2 and self.detail_uv_coords.shape[1] == 2, "detail_uv_coords"),
                (self.detail_uv_faces.shape == (F, 3) and int(self.detail_uv_faces.max()) < T, "detail_uv_faces"),
                (self.detail_face_region is None or self.detail_face_region.shape == (F,), "detail_face_region"),
            ]
        bad = [name for ok, name in checks if not ok]
        if bad:
            raise FacetwinError(f"head model '{self.name}' has inconsistent arrays: {', '.join(bad)}")
