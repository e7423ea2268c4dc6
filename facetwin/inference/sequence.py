"""One file for a whole clip: per-frame parameters with timestamps (``<name>_sequence.npz``) and a
readable summary (``<name>_sequence.json``), instead of a set of files per frame.

Rows are appended as frames stream by (a few kB each: parameters, camera, 68 landmarks — never
meshes or pictures), so a long video costs little memory; :meth:`SequenceRecorder.save` writes
both files atomically at the end.

Arrays of ``<name>_sequence.npz`` (T = frames sampled, in order; pixel values in the ORIGINAL
video's pixels even when frames were downscaled for decoding):

| key | shape | meaning |
|---|---|---|
| ``frame_index`` | (T,) int | frame number in the file |
| ``time`` | (T,) float | seconds from the start |
| ``valid`` | (T,) bool | a face was reconstructed (other rows are zeros) |
| ``detected`` | (T,) bool | the detector ran on this frame (first frame or track lost) |
| ``shape`` | (n_shape,) | the clip's identity β (mean over valid frames) — every mesh uses it |
| ``shape_std`` | (n_shape,) | its spread (std over valid frames) |
| ``shape_frames`` | (T, n_shape) | per-frame β as the encoder saw it |
| ``expression`` | (T, n_expr) | ψ used for the meshes (smoothed when smoothing was on) |
| ``pose`` | (T, 5, 3) | θ axis-angle [global, neck, jaw, eye_left, eye_right], radians (same) |
| ``expression_raw``, ``pose_raw`` | | per-frame values before smoothing (only with smoothing) |
| ``albedo`` | (T, n_albedo) | albedo coefficients |
| ``light`` | (T, 9, 3) | SH lighting |
| ``scale`` | (T,) | orthographic scale, pixels per metre: ``u = scale · (x, −y) + translation`` |
| ``translation`` | (T, 2) | pixels |
| ``landmarks2d`` | (T, 68, 2) | the mesh's 68 landmarks projected, pixels |
| ``tracked_landmarks`` | (T, 68, 2) | the tracker's 68 points (dlib), pixels |
| ``faces`` | (F, 3) | mesh triangles; vertices of frame t = head_model(shape, expression[t], pose[t]) |
| ``detail_displacement`` | (T, S, S) float16 | only with ``--detail``: each frame's D (metres along the normal, detail UV layout; zeros without a face), streamed to disk |
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from facetwin.outputs import atomic_write, write_json


class SequenceRecorder:
    """Collects one row per sampled frame of a :func:`~facetwin.inference.video.reconstruct_video` pass."""

    def __init__(self, smoothing: bool, detail_rows: "StreamedArray | None" = None):
        self.smoothing = smoothing
        self.rows: dict[str, list] = {}
        self.n = 0
        self._template: dict[str, np.ndarray] | None = None
        self.detail_rows = detail_rows  # (S, S) float16 D per frame, on disk (a map is 100× a row of parameters)

    def add(self, r) -> None:
        """Append a :class:`~facetwin.inference.video.VideoFrameResult`."""
        k = 1.0 / r.frame.scale  # frame pixels → original pixels
        row = {"frame_index": r.frame.index, "time": r.frame.time, "valid": r.ok, "detected": r.track.detected}
        if r.ok:
            raw = r.reconstruction.params
            row.update(shape_frames=raw["shape"], expression=r.params["expression"], pose=r.params["pose"],
                       albedo=raw.get("albedo"), light=raw.get("light"), scale=r.scale * k,
                       translation=np.asarray(r.translation) * k, landmarks2d=np.asarray(r.landmarks2d) * k,
                       tracked_landmarks=np.asarray(r.track.label.landmarks) * k)
            if self.smoothing:
                row.update(expression_raw=raw["expression"], pose_raw=raw["pose"])
            if self._template is None:
                self._template = {key: np.zeros_like(np.asarray(v, np.float32)) for key, v in row.items()
                                  if key not in ("frame_index", "time", "valid", "detected") and v is not None}
                for key, t in self._template.items():  # rows before the first face
                    self.rows.setdefault(key, []).extend([t] * self.n)
        for key in ("frame_index", "time", "valid", "detected"):
            self.rows.setdefault(key, []).append(row[key])
        if self._template is not None:
            for key, t in self._template.items():
                v = row.get(key)
                self.rows.setdefault(key, []).append(t if v is None else np.asarray(v, np.float32))
        if self.detail_rows is not None:
            detail = r.reconstruction.detail if r.ok else None
            self.detail_rows.append(detail.displacement if detail is not None else np.zeros(self.detail_rows.shape, np.float16))
        self.n += 1

    def discard(self) -> None:
        """Remove the streamed rows' temporary file (the run failed before :meth:`save`)."""
        if self.detail_rows is not None:
            self.detail_rows.discard()

    @property
    def n_valid(self) -> int:
        return int(sum(self.rows.get("valid", [])))

    def arrays(self, identity, faces: np.ndarray) -> dict[str, np.ndarray]:
        out = {k: np.asarray(v) for k, v in self.rows.items()}
        out["frame_index"] = out["frame_index"].astype(np.int64)
        out["time"] = out["time"].astype(np.float64)
        out["valid"] = out["valid"].astype(bool)
        out["detected"] = out["detected"].astype(bool)
        if identity.mean is not None:
            out["shape"] = identity.mean.astype(np.float32)
            out["shape_std"] = identity.std.astype(np.float32)
        out["faces"] = np.asarray(faces, np.int32)
        return out

    def save(self, out: Path, name: str, identity, faces: np.ndarray, summary: dict) -> dict[str, Path]:
        """Write ``<name>_sequence.npz`` and ``<name>_sequence.json`` (``summary`` + the file's layout)."""
        npz, js = Path(out) / f"{name}_sequence.npz", Path(out) / f"{name}_sequence.json"
        arrays = self.arrays(identity, faces)
        shapes = {k: list(v.shape) for k, v in arrays.items()}
        if self.detail_rows is not None:
            shapes["detail_displacement"] = [self.detail_rows.n, *self.detail_rows.shape]
            write_npz(npz, arrays, {"detail_displacement": self.detail_rows})
        else:
            with atomic_write(npz, "wb") as f:
                np.savez_compressed(f, **arrays)
        summary = dict(summary, sequence_file=npz.name, arrays=shapes)
        write_json(js, summary)
        return {"sequence": npz, "summary": js}


def identity_spread_mm(head_model, shape_frames: np.ndarray, shape_mean: np.ndarray, max_frames: int = 200) -> float:
    """How much the per-frame identities disagree: RMS distance (millimetres) of each frame's
    neutral mesh (β_t, ψ = 0, θ = 0) from the clip identity's, over up to ``max_frames`` frames."""

    from facetwin.inference.video import pose_mesh

    if len(shape_frames) == 0:
        return float("nan")
    idx = np.linspace(0, len(shape_frames) - 1, min(max_frames, len(shape_frames))).round().astype(int)
    ref, _ = pose_mesh(head_model, shape_mean, np.zeros(1), np.zeros((5, 3)))
    d2 = []
    for i in idx:
        v, _ = pose_mesh(head_model, shape_frames[i], np.zeros(1), np.zeros((5, 3)))
        d2.append(np.mean(np.sum((v - ref) ** 2, -1)))
    return float(np.sqrt(np.mean(d2)) * 1000.0)


class StreamedArray:
    """A (T, *shape) float32 array written row by row to a temporary file beside ``folder`` and
    packed into an .npz at the end (:func:`write_npz`): a mesh sequence of any length without
    holding it in memory."""

    def __init__(self, folder: Path, shape: tuple[int, ...], dtype=np.float32):
        import os

        from facetwin.outputs import TMP_MARK, ensure_dir

        ensure_dir(folder)
        self.shape, self.dtype = tuple(shape), np.dtype(dtype)
        self.path = Path(folder) / f".rows{TMP_MARK}{os.getpid()}-{os.urandom(4).hex()}"
        self._f = open(self.path, "wb")
        self.n = 0

    def append(self, row: np.ndarray) -> None:
        row = np.ascontiguousarray(row, self.dtype)
        if row.shape != self.shape:
            raise ValueError(f"row shape {row.shape} != {self.shape}")
        self._f.write(row.tobytes())
        self.n += 1

    def finish(self) -> None:
        if not self._f.closed:
            self._f.close()

    def discard(self) -> None:
        self.finish()
        try:
            self.path.unlink()
        except OSError:
            pass


def write_npz(path: Path, arrays: dict[str, np.ndarray], streamed: dict[str, StreamedArray] | None = None) -> Path:
    """An uncompressed .npz (``np.load`` reads it) of small ``arrays`` and large ``streamed`` ones,
    copied from their temporary files in chunks; written atomically; the temporaries are removed."""
    import shutil
    import zipfile

    streamed = streamed or {}
    try:
        with atomic_write(path, "wb") as f, zipfile.ZipFile(f, "w", zipfile.ZIP_STORED, allowZip64=True) as zf:
            for key, value in arrays.items():
                with zf.open(f"{key}.npy", "w", force_zip64=True) as entry:
                    np.lib.format.write_array(entry, np.asarray(value), allow_pickle=False)
            for key, s in streamed.items():
                s.finish()
                with zf.open(f"{key}.npy", "w", force_zip64=True) as entry, open(s.path, "rb") as src:
                    header = {"descr": np.lib.format.dtype_to_descr(s.dtype), "fortran_order": False, "shape": (s.n, *s.shape)}
                    np.lib.format.write_array_header_2_0(entry, header)
                    shutil.copyfileobj(src, entry, 1 << 20)
    finally:
        for s in streamed.values():
            s.discard()
    return Path(path)
