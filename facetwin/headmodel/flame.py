"""Bring-your-own FLAME: load ``generic_model.pkl`` (FLAME 2017/2020/2023) safely, without chumpy.

FLAME is distributed as a Python pickle; FLAME 2020 and older are Python-2 pickles whose arrays
are wrapped in ``chumpy`` objects and whose joint regressor is a ``scipy.sparse`` matrix.
``pickle.load`` would import chumpy and could run any code a tampered file asks for, so this
module reads the pickle with a *restricted* unpickler that resolves only the handful of globals
a FLAME file contains (numpy array/dtype reconstruction, csc/csr sparse matrices, chumpy arrays,
``set``) and maps sparse matrices and chumpy objects to inert stubs that only collect their
state. Anything else (``os.system``, ``builtins.eval``, any other module) is refused before it
can be called. Every allocation the file can ask for is capped (:data:`MAX_ALLOCATION` per
array or buffer, :data:`MAX_TOTAL` per file): the opcodes are checked before unpickling (counted
lengths must lie inside the file, memo indices stay small), and ``bytearray``, ``ndarray``,
``dtype``, sparse densification and chumpy arithmetic check their result size first, so a
39-byte file cannot make the loader allocate gigabytes.

FLAME's ``landmark_embedding.npy`` (DECA/RingNet) is an ``.npy`` holding a pickled dict;
it is read with the same unpickler (``np.load(allow_pickle=True)`` would run arbitrary code).

Conversion to :class:`HeadModelData`:

* ``shapedirs`` (V, 3, 400) is split into 300 identity + 100 expression components; by
  default the first 100 identity and 50 expression components are kept (as DECA, which the
  paper follows); choose with ``n_shape`` / ``n_expr``.
* joints are linear in the rest shape: ``j_template = J_regressor @ v_template`` and
  ``j_shapedirs`` / ``j_exprdirs`` are the regressor applied to the bases (exact).
* ``posedirs`` (V, 3, 36) becomes (36, V*3) as in FLAME's own lbs: pose feature
  ``(R_j - I)`` for joints 1..4, flattened row-major, times ``posedirs``.
* landmarks: ``full_lmk_*`` (68) → ``landmark_faces/bary``; ``dynamic_lmk_*`` (79 yaw bins
  × 17 contour points) → ``dynamic_landmark_*`` with ``dynamic_landmark_yaw`` in radians.
  Without an embedding file the model has 0 landmarks (``meta['landmarks'] == 'missing'``,
  ``statistics()['landmarks'] == 0``) and a warning is issued; see :func:`require_landmarks`.
* UVs are taken from ``vt``/``ft`` when the pickle carries them. Region masks come from
  FLAME's separate ``FLAME_masks.pkl`` when given (``masks_path``); the mirror table and
  silhouette candidates are not part of FLAME and stay None.
"""

from __future__ import annotations

import io
import pickle
import pickletools
import threading
import warnings
from pathlib import Path

import numpy as np

from facetwin.errors import FacetwinError
from facetwin.headmodel.data import JOINT_NAMES, N_LANDMARKS, PARENTS, HeadModelData

FLAME_SHAPE_COMPONENTS = 300   # FLAME's shapedirs: 300 identity, then the expression components
DEFAULT_N_SHAPE = 100          # as DECA
DEFAULT_N_EXPR = 50            # as DECA / SMIRK
REQUIRED_KEYS = ("v_template", "f", "shapedirs", "posedirs", "J_regressor", "weights", "kintree_table")
DYNAMIC_YAW_LIMIT_DEG = 39     # DECA/RingNet: 79 bins for rounded yaw -39..39 degrees
# FLAME's largest array (shapedirs, 5023 x 3 x 400 float64) is 48 MB; a generous cap per array.
MAX_ALLOCATION = 1 << 29       # 512 MiB for one array or buffer
MAX_TOTAL = 1 << 31            # 2 GiB for everything one file asks for
MAX_MEMO = 1 << 22             # memo slots (a FLAME pickle uses a few thousand)

try:  # numpy >= 2
    from numpy._core.multiarray import _reconstruct, scalar as _np_scalar
    from numpy._core.numeric import _frombuffer
except ImportError:  # numpy 1.x
    from numpy.core.multiarray import _reconstruct, scalar as _np_scalar  # type: ignore
    from numpy.core.numeric import _frombuffer  # type: ignore


class _Refused(Exception):
    """A pickle referenced a global that a FLAME file never contains."""

    def __init__(self, module: str, name: str):
        super().__init__(f"{module}.{name}")
        self.reference = f"{module}.{name}"


# -- allocation caps ----------------------------------------------------------------------------
class _TooLarge(Exception):
    """The file asks for more memory than a FLAME file ever needs."""


_budget = threading.local()


def _charge(nbytes, what: str) -> None:
    """Account for an allocation of ``nbytes`` (refused above the per-array or per-file cap)."""
    nbytes = int(nbytes)
    if nbytes < 0:
        raise ValueError(f"{what} of negative size")
    if nbytes > MAX_ALLOCATION:
        raise _TooLarge(f"{what} of {nbytes / 2 ** 20:.0f} MiB (a FLAME file needs at most {MAX_ALLOCATION >> 20} MiB per array)")
    used = getattr(_budget, "used", 0) + nbytes
    if used > MAX_TOTAL:
        raise _TooLarge(f"more than {MAX_TOTAL >> 20} MiB in total")
    _budget.used = used


def _n_elements(shape) -> int:
    shape = (shape,) if isinstance(shape, (int, np.integer)) else tuple(shape)
    n = 1
    for d in shape:
        d = int(d)
        if d < 0:
            raise ValueError("negative dimension in pickle")
        n *= d
        if n > MAX_ALLOCATION:  # stop before the product itself gets huge
            raise _TooLarge(f"an array of shape {shape}")
    return n


def _check_opcodes(data: bytes) -> None:
    """Walk the opcodes without executing them: counted strings must fit in the file (the
    unpickler would otherwise allocate the announced size first) and memo indices stay small."""
    for op, arg, _ in pickletools.genops(data):
        if op.name in ("BINPUT", "LONG_BINPUT", "PUT", "BINGET", "LONG_BINGET", "GET"):
            if int(arg) > MAX_MEMO:
                raise _TooLarge(f"memo index {arg}")
        elif op.name == "FRAME" and int(arg) > len(data):
            raise ValueError("frame longer than the file")
        elif isinstance(arg, (bytes, bytearray, str)) and len(arg) > MAX_ALLOCATION:
            raise _TooLarge(f"a {len(arg) >> 20} MiB string")
        if op.name == "STOP":
            return


def _bytearray(*args):
    if args and isinstance(args[0], (int, np.integer)):
        _charge(args[0], "a buffer")
    elif args and hasattr(args[0], "__len__"):
        _charge(len(args[0]), "a buffer")
    return bytearray(*args)


def _dtype(*args):
    dt = np.dtype(*args)
    if dt.itemsize > MAX_ALLOCATION:
        raise _TooLarge(f"a {dt.itemsize}-byte element type")
    return dt


class _NdarrayClass:
    """Stands for ``numpy.ndarray`` in a pickle: only usable as ``_reconstruct``'s class."""

    def __call__(self, *args, **kwargs):
        raise ValueError("direct numpy.ndarray construction is not part of a FLAME file")


_NDARRAY = _NdarrayClass()


def _guarded_reconstruct(cls, shape, dtype):
    if cls is not _NDARRAY:
        raise ValueError("numpy _reconstruct for something other than an ndarray")
    dt = dtype if isinstance(dtype, np.dtype) else np.dtype(dtype)
    _charge(_n_elements(shape) * max(1, dt.itemsize), "an array")
    return _reconstruct(np.ndarray, shape, dtype)


def _guarded_scalar(dtype, *args):
    if not isinstance(dtype, np.dtype) or dtype.itemsize > 64:
        raise ValueError("unexpected numpy scalar in pickle")
    return _np_scalar(dtype, *args)


def _array_budget(shape, dtype, what: str) -> None:
    _charge(_n_elements(shape) * np.dtype(dtype).itemsize, what)


# -- inert stand-ins for the classes a FLAME pickle names ----------------------------------------
class _SparseStub:
    """Collects the pickled state of a scipy.sparse csc/csr matrix; never runs scipy code."""

    sparse_format = "csc"

    def __setstate__(self, state):
        if isinstance(state, tuple) and len(state) == 2:  # (dict, slots) form
            state = state[0]
        if not isinstance(state, dict):
            raise ValueError("sparse matrix state is not a dict")
        self.state = state

    def to_dense(self) -> np.ndarray:
        s = getattr(self, "state", None)
        if s is None:
            raise ValueError("sparse matrix without state")
        shape = s.get("_shape", s.get("shape"))
        data, indices, indptr = (np.asarray(s.get(k)) for k in ("data", "indices", "indptr"))
        if shape is None or data.ndim != 1 or indices.shape != data.shape or indptr.ndim != 1:
            raise ValueError("sparse matrix state is incomplete")
        rows, cols = (int(shape[0]), int(shape[1]))
        n_major = cols if self.sparse_format == "csc" else rows
        n_minor = rows if self.sparse_format == "csc" else cols
        if indptr.shape[0] != n_major + 1 or indptr[-1] != data.shape[0] or np.any(np.diff(indptr) < 0):
            raise ValueError("sparse matrix index pointers do not match its shape")
        if data.size and (indices.min() < 0 or indices.max() >= n_minor):
            raise ValueError("sparse matrix indices out of range")
        _array_budget((rows, cols), np.result_type(data.dtype, np.float32), "a dense joint regressor")
        major = np.repeat(np.arange(n_major), np.diff(indptr))
        dense = np.zeros((rows, cols), np.result_type(data.dtype, np.float32))
        if self.sparse_format == "csc":
            np.add.at(dense, (indices, major), data)  # duplicates sum, as in scipy
        else:
            np.add.at(dense, (major, indices), data)
        return dense


class _CscStub(_SparseStub):
    sparse_format = "csc"


class _CsrStub(_SparseStub):
    sparse_format = "csr"


class _ChumpyStub:
    """Captures the pickled ``__dict__`` of a chumpy object (``Ch.__getstate__``)."""

    chumpy_class = "chumpy.ch.Ch"

    def __setstate__(self, state):
        if isinstance(state, tuple) and len(state) == 2:
            state = state[0]
        if not isinstance(state, dict):
            raise ValueError(f"{self.chumpy_class} state is not a dict")
        self.state = state


_CHUMPY_STUBS: dict[str, type] = {}


def _chumpy_stub(module: str, name: str) -> type:
    key = f"{module}.{name}"
    if key not in _CHUMPY_STUBS:
        _CHUMPY_STUBS[key] = type(f"Chumpy_{name}", (_ChumpyStub,), {"chumpy_class": key})
    return _CHUMPY_STUBS[key]


def _chumpy_value(obj, depth: int = 0) -> np.ndarray:
    """The array a (stubbed) chumpy expression evaluates to; only value-holding ops are known."""
    if depth > 50:
        raise FacetwinError("chumpy expression nested too deeply")
    if not isinstance(obj, _ChumpyStub):
        return _as_array(obj, depth + 1)
    s, op = obj.state, obj.chumpy_class.rsplit(".", 1)[-1]
    val = lambda key: _chumpy_value(s[key], depth + 1)  # noqa: E731
    try:
        if op == "Ch":
            return val("x")
        if op == "Reshape":
            return val("a").reshape(s["newshape"])
        if op == "Select":
            out = val("a").ravel()[np.asarray(s["idxs"])].copy()
            return out.reshape(s["preferred_shape"]) if "preferred_shape" in s else out
        if op == "transpose":
            return np.ascontiguousarray(np.transpose(val("a"), s.get("axes")))
        if op == "Concatenate":
            parts = [val(t) for t in s["dterms"]]
            _charge(sum(p.nbytes for p in parts), "a concatenation")
            return np.concatenate(parts, axis=s["axis"])
        if op in ("add", "subtract", "multiply", "divide"):
            a, b = val("a"), val("b")
            _array_budget(np.broadcast_shapes(np.shape(a), np.shape(b)), np.result_type(a, b), "a chumpy result")
            return getattr(np, op)(a, b)
        if op == "negative":
            return -val("a")
    except KeyError as exc:
        raise FacetwinError(f"chumpy object {obj.chumpy_class} lacks its '{exc.args[0]}' value") from None
    raise FacetwinError(f"unsupported chumpy operation {obj.chumpy_class} in the FLAME pickle")


def _as_array(value, depth: int = 0) -> np.ndarray:
    if isinstance(value, np.ndarray):
        return value
    if isinstance(value, _SparseStub):
        return value.to_dense()
    if isinstance(value, _ChumpyStub):
        return _chumpy_value(value, depth)
    if isinstance(value, (list, tuple)):
        _count_elements(value)
        return np.asarray(value)
    if isinstance(value, (int, float, np.generic)):
        return np.asarray(value)
    raise FacetwinError(f"expected an array, found a {type(value).__name__}")


def _count_elements(value) -> None:
    """Refuse nested lists that share sub-lists to blow up (memo references) before converting."""
    stack, n = [value], 0
    while stack:
        v = stack.pop()
        if isinstance(v, (list, tuple)):
            n += len(v)
            if n > MAX_ALLOCATION // 8:
                raise _TooLarge("a nested list of too many elements")
            stack.extend(x for x in v if isinstance(x, (list, tuple)))


# -- the restricted unpickler -------------------------------------------------------------------
def _codecs_encode(text, encoding="utf-8", errors="strict"):
    """Python 3 writes ``bytes`` in protocol-2 pickles as ``_codecs.encode(str, 'latin1')``."""
    if not isinstance(text, str) or encoding.lower().replace("-", "") not in ("latin1", "utf8"):
        raise ValueError("unexpected _codecs.encode call in pickle")
    return text.encode(encoding, errors)


def _reconstructor(cls, base, state):
    """``copy_reg._reconstructor`` (protocol 0/1 objects), allowed for the stubs only."""
    if not (isinstance(cls, type) and issubclass(cls, (_SparseStub, _ChumpyStub)) and base is object):
        raise ValueError("copy_reg._reconstructor used for something other than a FLAME array")
    return object.__new__(cls)


_NUMPY_MODULES = ("numpy.core.multiarray", "numpy._core.multiarray")
_ALLOWED = {
    **{(m, "_reconstruct"): _guarded_reconstruct for m in _NUMPY_MODULES},
    **{(m, "scalar"): _guarded_scalar for m in _NUMPY_MODULES},
    ("numpy.core.numeric", "_frombuffer"): _frombuffer,
    ("numpy._core.numeric", "_frombuffer"): _frombuffer,
    ("numpy", "ndarray"): _NDARRAY,
    ("numpy", "dtype"): _dtype,
    ("_codecs", "encode"): _codecs_encode,
    ("copy_reg", "_reconstructor"): _reconstructor,
    ("copyreg", "_reconstructor"): _reconstructor,
    **{(b, n): getattr(__import__("builtins"), n) for b in ("__builtin__", "builtins")
       for n in ("object", "set", "frozenset", "slice")},
    ("builtins", "bytearray"): _bytearray,
    ("__builtin__", "bytearray"): _bytearray,
}
_SPARSE_MODULES = ("scipy.sparse.csc", "scipy.sparse._csc", "scipy.sparse.csr", "scipy.sparse._csr")
_SPARSE_CLASSES = {"csc_matrix": _CscStub, "csc_array": _CscStub, "csr_matrix": _CsrStub, "csr_array": _CsrStub}


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that resolves only the globals found in FLAME files (see module docstring)."""

    def find_class(self, module: str, name: str):
        if (module, name) in _ALLOWED:
            return _ALLOWED[(module, name)]
        if module in _SPARSE_MODULES and name in _SPARSE_CLASSES:
            return _SPARSE_CLASSES[name]
        if (module == "chumpy" or module.startswith("chumpy.")) and name.isidentifier() and not name.startswith("_"):
            return _chumpy_stub(module, name)
        raise _Refused(module, name)

    def persistent_load(self, pid):
        raise pickle.UnpicklingError("persistent references are not part of a FLAME file")


def _check_file(path: str | Path, what: str) -> Path:
    path = Path(str(path)).expanduser()
    if not path.exists():
        raise FacetwinError(f"{what} not found: {path}")
    if path.is_dir():
        hint = ""
        if what.startswith("FLAME model") and (path / "generic_model.pkl").is_file():
            hint = f" (did you mean {path / 'generic_model.pkl'}?)"
        raise FacetwinError(f"{what} {path} is a directory, not a file{hint}")
    if path.stat().st_size == 0:
        raise FacetwinError(f"{what} {path} is empty")
    return path


def safe_unpickle(data: bytes, path: Path, what: str):
    """Unpickle ``data`` with :class:`RestrictedUnpickler`; every failure is a FacetwinError."""
    if data[:2] == b"PK":
        raise FacetwinError(f"{what} {path} is a zip/.npz archive, not a pickle")
    if data[:6] == b"\x93NUMPY":
        raise FacetwinError(f"{what} {path} is a .npy file, not a pickle")
    if not (data[:1] == b"\x80" or data[:1] in b"(}]cl"):
        raise FacetwinError(f"{what} {path} is not a pickle file")
    _budget.used = 0
    try:
        _check_opcodes(data)
        return RestrictedUnpickler(io.BytesIO(data), encoding="latin1").load()
    except _TooLarge as exc:
        raise FacetwinError(f"refusing to load {path}: it asks for {exc}, more memory than a FLAME file needs") from None
    except _Refused as exc:
        raise FacetwinError(
            f"refusing to load {path}: the pickle references {exc.reference}, which a FLAME file never contains"
        ) from None
    except FacetwinError:
        raise
    except EOFError:
        raise FacetwinError(f"cannot read {what} {path}: the pickle is truncated") from None
    except Exception as exc:  # UnpicklingError, ValueError, TypeError, ...: a damaged file
        raise FacetwinError(f"cannot read {what} {path}: corrupt pickle ({type(exc).__name__}: {exc})") from None


# -- public API -----------------------------------------------------------------------------------
def load_flame_pickle(model_path: str | Path) -> dict[str, object]:
    """The raw dict of a FLAME ``generic_model.pkl``, arrays as numpy (chumpy/sparse converted).

    Non-array entries (e.g. ``bs_style`` strings) are kept as they are.
    """
    return _load_flame_raw(model_path)[0]


def _load_flame_raw(model_path: str | Path) -> tuple[dict[str, object], str]:
    path = _check_file(model_path, "FLAME model file")
    data = path.read_bytes()
    raw = safe_unpickle(data, path, "FLAME model file")
    if not isinstance(raw, dict):
        raise FacetwinError(f"{path} is not a FLAME model: the pickle holds a {type(raw).__name__}, not a dict")
    out: dict[str, object] = {}
    chumpy = False
    for key, value in raw.items():
        key = key.decode("latin1") if isinstance(key, bytes) else str(key)
        chumpy = chumpy or isinstance(value, _ChumpyStub)
        if isinstance(value, (np.ndarray, _SparseStub, _ChumpyStub)):
            try:
                value = _as_array(value)
            except FacetwinError as exc:
                raise FacetwinError(f"{path}: entry '{key}': {exc}") from None
            except Exception as exc:
                raise FacetwinError(f"{path}: entry '{key}' is corrupt ({type(exc).__name__}: {exc})") from None
        out[key] = value
    protocol = data[1] if data[:1] == b"\x80" else 0
    fmt = f"pickle protocol {protocol}" + (", chumpy arrays (FLAME 2017/2020 style)" if chumpy else ", plain numpy")
    return out, fmt


def load_landmark_embedding(path: str | Path) -> dict[str, np.ndarray]:
    """FLAME's ``landmark_embedding.npy`` (an .npy holding a pickled dict), read safely.

    A plain pickle of the same dict is accepted as well.
    """
    path = _check_file(path, "FLAME landmark embedding")
    data = path.read_bytes()
    what = "FLAME landmark embedding"
    if data[:6] == b"\x93NUMPY":
        fp = io.BytesIO(data)
        try:
            version = np.lib.format.read_magic(fp)
            if version == (1, 0):
                _, _, dtype = np.lib.format.read_array_header_1_0(fp)
            elif version == (2, 0):
                _, _, dtype = np.lib.format.read_array_header_2_0(fp)
            else:
                _, _, dtype = np.lib.format._read_array_header(fp, version)
        except Exception as exc:
            raise FacetwinError(f"cannot read {what} {path}: bad .npy header ({exc})") from None
        if not dtype.hasobject:
            raise FacetwinError(f"{path} holds a plain array; expected FLAME's landmark_embedding.npy (a pickled dict)")
        obj = safe_unpickle(data[fp.tell():], path, what)
        if isinstance(obj, np.ndarray) and obj.dtype.hasobject and obj.shape == ():
            obj = obj.item()
    else:
        obj = safe_unpickle(data, path, what)
    if not isinstance(obj, dict):
        raise FacetwinError(f"{path} is not a FLAME landmark embedding (holds a {type(obj).__name__}, not a dict)")
    out = {}
    for key, value in obj.items():
        key = key.decode("latin1") if isinstance(key, bytes) else str(key)
        try:
            out[key] = _as_array(value)
        except FacetwinError:
            out[key] = value
    return out


def require_landmarks(data: HeadModelData, purpose: str = "this step") -> None:
    """Raise a clear FacetwinError when a head model has no 68-point landmark embedding."""
    if data.landmark_faces.shape[0] != N_LANDMARKS:
        raise FacetwinError(
            f"{purpose} needs 68 landmarks, but head model '{data.name}' has none; give FLAME's embedding: "
            "--head-model flame:/path/generic_model.pkl,/path/landmark_embedding.npy"
        )


def dynamic_bin_yaw() -> np.ndarray:
    """Yaw (radians, rotation about +y) of DECA's 79 dynamic-contour bins.

    DECA picks bin ``a`` for ``a = round(-yaw_deg)`` ≥ 0 and bin ``39 - a`` for ``a`` < 0, so bin
    k holds yaw −k° for k ≤ 39 and yaw (k − 39)° above.
    """
    k = np.arange(2 * DYNAMIC_YAW_LIMIT_DEG + 1)
    deg = np.where(k <= DYNAMIC_YAW_LIMIT_DEG, -k, k - DYNAMIC_YAW_LIMIT_DEG)
    return np.deg2rad(deg).astype(np.float32)


def _embedding_arrays(emb: dict, path: Path, n_faces: int) -> dict:
    def get(key, shape_tail, dtype):
        if key not in emb:
            return None
        try:
            arr = np.asarray(emb[key], dtype)
        except Exception:
            raise FacetwinError(f"{path}: '{key}' is not numeric") from None
        if arr.shape[-len(shape_tail):] != shape_tail:
            raise FacetwinError(f"{path}: '{key}' has shape {arr.shape}, expected (..., {', '.join(map(str, shape_tail))})")
        return arr

    out: dict = {}
    full_f = get("full_lmk_faces_idx", (N_LANDMARKS,), np.int64)
    full_b = get("full_lmk_bary_coords", (N_LANDMARKS, 3), np.float32)
    static_f = get("static_lmk_faces_idx", (N_LANDMARKS - 17,), np.int64)
    static_b = get("static_lmk_bary_coords", (N_LANDMARKS - 17, 3), np.float32)
    dyn_f = get("dynamic_lmk_faces_idx", (17,), np.int64)
    dyn_b = get("dynamic_lmk_bary_coords", (17, 3), np.float32)
    if dyn_f is not None and dyn_b is not None:
        if dyn_f.ndim != 2 or dyn_b.shape[:2] != dyn_f.shape:
            raise FacetwinError(f"{path}: dynamic landmark arrays have shapes {dyn_f.shape} and {dyn_b.shape}")
        out["dynamic_landmark_faces"], out["dynamic_landmark_bary"] = dyn_f, dyn_b
        if dyn_f.shape[0] == 2 * DYNAMIC_YAW_LIMIT_DEG + 1:
            out["dynamic_landmark_yaw"] = dynamic_bin_yaw()
        else:
            raise FacetwinError(f"{path}: expected 79 dynamic landmark bins (yaw -39..39°), found {dyn_f.shape[0]}")
    for key, a, n in (("full_lmk", full_f, N_LANDMARKS), ("static_lmk", static_f, N_LANDMARKS - 17)):
        if a is not None and a.size != n:
            raise FacetwinError(f"{path}: '{key}_faces_idx' has shape {a.shape}, expected {n} landmarks")
    for key, a, n in (("full_lmk", full_b, N_LANDMARKS), ("static_lmk", static_b, N_LANDMARKS - 17)):
        if a is not None and a.size != 3 * n:
            raise FacetwinError(f"{path}: '{key}_bary_coords' has shape {a.shape}, expected ({n}, 3)")
    if full_f is not None and full_b is not None:
        faces, bary = full_f.reshape(N_LANDMARKS), full_b.reshape(N_LANDMARKS, 3)
    elif static_f is not None and static_b is not None and "dynamic_landmark_faces" in out:
        # 68 = the frontal contour bin (yaw 0) + the 51 static inner points, as DECA does.
        faces = np.concatenate([out["dynamic_landmark_faces"][0], static_f.reshape(-1)])
        bary = np.concatenate([out["dynamic_landmark_bary"][0], static_b.reshape(-1, 3)])
    else:
        raise FacetwinError(
            f"{path} is not a FLAME landmark embedding: it needs full_lmk_faces_idx/full_lmk_bary_coords "
            f"(or static_* + dynamic_*), found {', '.join(sorted(emb)) or 'nothing'}"
        )
    for arr in (faces, out.get("dynamic_landmark_faces")):
        if arr is not None and (arr.min() < 0 or arr.max() >= n_faces):
            raise FacetwinError(f"{path}: landmark triangle indices exceed the model's {n_faces} faces (wrong FLAME version?)")
    out["landmark_faces"], out["landmark_bary"] = faces, bary
    return out


# FLAME_masks.pkl region → facetwin region (several FLAME regions may merge into one).
FLAME_MASK_REGIONS = {
    "face": "face", "nose": "nose", "lips": "lips", "left_ear": "ears", "right_ear": "ears",
    "eye_region": "eyes", "left_eyeball": "eyeballs", "right_eyeball": "eyeballs", "neck": "neck",
}


def load_flame_masks(path: str | Path, n_vertices: int) -> dict[str, np.ndarray]:
    """FLAME's ``FLAME_masks.pkl`` (region name → vertex indices) as (V,) bool masks.

    FLAME names are mapped to facetwin's where they correspond (``left_ear`` + ``right_ear`` →
    ``ears``, eyeballs → ``eyeballs``, ``eye_region`` → ``eyes``); the others (forehead, scalp,
    boundary, …) keep FLAME's name.
    """
    path = _check_file(path, "FLAME masks file")
    raw = safe_unpickle(path.read_bytes(), path, "FLAME masks file")
    if not isinstance(raw, dict) or not raw:
        raise FacetwinError(f"{path} is not FLAME_masks.pkl (expected a dict of region → vertex indices)")
    masks: dict[str, np.ndarray] = {}
    for key, value in raw.items():
        key = key.decode("latin1") if isinstance(key, bytes) else str(key)
        try:
            idx = np.asarray(_as_array(value), np.int64).reshape(-1)
        except Exception:
            raise FacetwinError(f"{path}: region '{key}' is not a list of vertex indices") from None
        if idx.size and (idx.min() < 0 or idx.max() >= n_vertices):
            raise FacetwinError(f"{path}: region '{key}' indexes vertices outside the model's {n_vertices}")
        name = FLAME_MASK_REGIONS.get(key, key)
        mask = masks.setdefault(name, np.zeros(n_vertices, bool))
        mask[idx] = True
    return masks


def load_flame(
    model_path: str | Path,
    embedding_path: str | Path | None = None,
    n_shape: int = DEFAULT_N_SHAPE,
    n_expr: int = DEFAULT_N_EXPR,
    masks_path: str | Path | None = None,
) -> HeadModelData:
    """A FLAME ``generic_model.pkl`` (+ optional ``landmark_embedding.npy``) as HeadModelData.

    Args:
        model_path: FLAME 2017/2020 (chumpy, Python 2) or 2023 (plain numpy) pickle.
        embedding_path: DECA/RingNet ``landmark_embedding.npy``; without it the model has no
            landmarks (a warning is issued and ``meta['landmarks'] == 'missing'``).
        n_shape: identity components to keep (of FLAME's 300).
        n_expr: expression components to keep (of FLAME's 100).
        masks_path: optional ``FLAME_masks.pkl`` for region masks (see :func:`load_flame_masks`).
    """
    raw, fmt = _load_flame_raw(model_path)
    path = Path(str(model_path)).expanduser()
    missing = [k for k in REQUIRED_KEYS if k not in raw]
    if missing:
        raise FacetwinError(f"{path} is not a FLAME model: missing {', '.join(missing)}")
    arr = {}
    for key in REQUIRED_KEYS:
        try:
            arr[key] = np.asarray(raw[key], np.float64 if key not in ("f", "kintree_table") else np.int64)
        except Exception:
            raise FacetwinError(f"{path}: FLAME entry '{key}' is not numeric") from None
    v, f, sd, pd, jr, w, kin = (arr[k] for k in REQUIRED_KEYS)
    V = v.shape[0] if v.ndim == 2 else -1
    J = len(JOINT_NAMES)
    shape_checks = [
        ("v_template", v.shape, (V, 3)), ("shapedirs", sd.shape[:2], (V, 3)), ("posedirs", pd.shape, (V, 3, 9 * (J - 1))),
        ("J_regressor", jr.shape, (J, V)), ("weights", w.shape, (V, J)), ("kintree_table", kin.shape, (2, J)),
    ]
    for key, got, want in shape_checks:
        if V <= 0 or tuple(got) != want:
            raise FacetwinError(f"{path}: FLAME entry '{key}' has shape {tuple(got)}, expected {want}")
    if sd.ndim != 3 or f.ndim != 2 or f.shape[1] != 3:
        raise FacetwinError(f"{path}: FLAME entry '{'f' if sd.ndim == 3 else 'shapedirs'}' has the wrong shape")
    if f.size == 0 or f.min() < 0 or f.max() >= V:
        raise FacetwinError(f"{path}: FLAME faces index vertices outside 0..{V - 1}")
    for key in ("v_template", "shapedirs", "posedirs", "J_regressor", "weights"):
        if not np.isfinite(arr[key]).all():
            raise FacetwinError(f"{path}: FLAME entry '{key}' contains NaN or infinite values")
    parents = [-1 if (p < 0 or p >= J) else int(p) for p in kin[0]]
    if parents != list(PARENTS) or list(kin[1]) != list(range(J)):
        raise FacetwinError(f"{path}: unsupported kinematic tree {kin.tolist()} (FLAME's is global→neck→jaw, eyes)")
    total = sd.shape[2]
    n_shape_avail = min(FLAME_SHAPE_COMPONENTS, total)
    n_expr_avail = total - n_shape_avail
    if not (0 < n_shape <= n_shape_avail) or not (0 <= n_expr <= n_expr_avail):
        raise FacetwinError(
            f"{path}: asked for {n_shape} identity and {n_expr} expression components, "
            f"the model has {n_shape_avail} and {n_expr_avail}"
        )
    shapedirs = sd[:, :, :n_shape]
    exprdirs = sd[:, :, FLAME_SHAPE_COMPONENTS:FLAME_SHAPE_COMPONENTS + n_expr]

    f32 = lambda a: np.ascontiguousarray(a, np.float32)  # noqa: E731
    fields: dict = dict(
        v_template=f32(v),
        faces=f.astype(np.int64),
        shapedirs=f32(shapedirs),
        exprdirs=f32(exprdirs),
        j_template=f32(jr @ v),
        j_shapedirs=f32(np.einsum("jv,vck->jck", jr, shapedirs)),
        j_exprdirs=f32(np.einsum("jv,vck->jck", jr, exprdirs)),
        lbs_weights=f32(w),
        posedirs=f32(pd.reshape(V * 3, -1).T),  # (36, V*3): FLAME lbs' pose_feature @ posedirs
    )
    vt, ft = raw.get("vt"), raw.get("ft")
    if vt is not None and ft is not None:
        vt, ft = np.asarray(vt, np.float32), np.asarray(ft, np.int64)
        if vt.ndim != 2 or vt.shape[1] != 2 or ft.shape != f.shape or ft.min() < 0 or ft.max() >= vt.shape[0]:
            raise FacetwinError(f"{path}: FLAME UVs vt {vt.shape} / ft {ft.shape} do not match the mesh")
        fields.update(uv_coords=vt, uv_faces=ft)

    meta = {
        "source": str(path),
        "format": fmt,
        "identity_components_available": str(n_shape_avail),
        "expression_components_available": str(n_expr_avail),
    }
    if masks_path:
        fields["masks"] = load_flame_masks(masks_path, V)
        meta["masks"] = str(Path(str(masks_path)).expanduser())
    if embedding_path:
        emb_path = Path(str(embedding_path)).expanduser()
        fields.update(_embedding_arrays(load_landmark_embedding(emb_path), emb_path, f.shape[0]))
        meta["landmarks"] = str(emb_path)
        if "dynamic_landmark_yaw" in fields:
            meta["dynamic_landmark_yaw"] = "rotation about +y in radians (DECA's 79 bins, -39..39 degrees)"
    else:
        warnings.warn(
            "FLAME loaded without a landmark embedding: the model has no landmarks; pass "
            "flame:/path/generic_model.pkl,/path/landmark_embedding.npy to use landmark-based steps",
            stacklevel=2,
        )
        fields.update(landmark_faces=np.zeros((0,), np.int64), landmark_bary=np.zeros((0, 3), np.float32))
        meta["landmarks"] = "missing"
    data = HeadModelData(name="flame", meta=meta, **fields)
    data.validate()
    return data
