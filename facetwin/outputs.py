"""The one way facetwin writes a file: to a temporary name beside the target, flushed, then renamed.

A reader never sees a half-written file, and a failed write (disk full, permission, Ctrl-C) leaves
any earlier file of the same name untouched. Every writer in the project goes through
:func:`atomic_write` (or a helper built on it); failures become :class:`OutputError`, a
:class:`~facetwin.errors.FacetwinError`, so the CLI reports them as one line naming the path.

Temporaries are named ``.<name>.facetwin-tmp-<pid>-<random>`` so that :func:`clean_temporaries`
can remove the leftovers of a killed process without touching anything else.
"""

from __future__ import annotations

import contextlib
import errno
import json
import math
import os
import secrets
from pathlib import Path
from typing import Any, Iterator

from facetwin.errors import FacetwinError

TMP_MARK = ".facetwin-tmp-"


class OutputError(FacetwinError):
    """A result could not be written (full disk, permission, path is a file, ...)."""


def describe_os_error(exc: OSError) -> str:
    """A short human reason for an OSError (``no space left on device``, ``permission denied``)."""
    if exc.errno is not None and exc.errno in errno.errorcode:
        return os.strerror(exc.errno).lower()
    return str(exc) or type(exc).__name__


def ensure_dir(path: str | Path) -> Path:
    """Create a folder (and parents) or raise :class:`OutputError` saying why it cannot be one."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise OutputError(f"cannot write to {path}: it exists and is not a folder")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create folder {path}: {describe_os_error(exc)}") from None
    return path


def check_target(path: str | Path) -> Path:
    """Fail early (before long work) when ``path`` cannot become a file: it is a folder, its
    folder is a file, or its folder is not writable. The write itself still goes through
    :func:`atomic_write`."""
    path = Path(path)
    if path.is_dir():
        raise OutputError(f"cannot write {path}: it is a folder")
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if parent.exists() and not parent.is_dir():
        raise OutputError(f"cannot write {path}: {parent} is not a folder")
    if parent.is_dir() and not os.access(parent, os.W_OK | os.X_OK):
        raise OutputError(f"cannot write {path}: {describe_os_error(PermissionError(errno.EACCES, ''))} in {parent}")
    return path


def _tmp_name(path: Path) -> Path:
    return path.with_name(f".{path.name}{TMP_MARK}{os.getpid()}-{secrets.token_hex(4)}")


@contextlib.contextmanager
def atomic_write(path: str | Path, mode: str = "wb", encoding: str | None = None) -> Iterator[Any]:
    """Open a temporary file beside ``path``; on success flush, fsync and rename it onto ``path``.

    On any exception (including KeyboardInterrupt) the temporary is removed and ``path`` keeps its
    previous content. OSErrors are re-raised as :class:`OutputError` naming ``path``.
    """
    if mode not in ("w", "wb"):
        raise ValueError("atomic_write writes whole files: mode 'w' or 'wb'")
    path = Path(path)
    ensure_dir(path.parent)
    tmp = _tmp_name(path)
    try:
        with open(tmp, mode, encoding=encoding if "b" not in mode else None) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        _remove_quietly(tmp)
        raise OutputError(f"cannot write {path}: {describe_os_error(exc)}") from None
    except BaseException:
        _remove_quietly(tmp)
        raise


def _remove_quietly(path: Path) -> None:
    with contextlib.suppress(OSError):
        path.unlink()


def write_bytes(path: str | Path, data: bytes) -> Path:
    with atomic_write(path, "wb") as f:
        f.write(data)
    return Path(path)


def write_text(path: str | Path, text: str) -> Path:
    with atomic_write(path, "w", encoding="utf-8") as f:
        f.write(text)
    return Path(path)


def json_safe(obj: Any) -> Any:
    """``obj`` with NaN/Inf floats replaced by None and arrays/paths made plain, so that the
    result is valid JSON (RFC 8259 has no NaN)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if hasattr(obj, "tolist"):  # numpy / torch scalars and arrays
        return json_safe(obj.tolist())
    if hasattr(obj, "__fspath__"):
        return str(obj)
    return obj


def dumps_json(obj: Any, **kwargs) -> str:
    """Strict JSON text (never a bare NaN token)."""
    return json.dumps(json_safe(obj), allow_nan=False, **kwargs)


def write_json(path: str | Path, obj: Any, indent: int | None = 2) -> Path:
    return write_text(path, dumps_json(obj, indent=indent) + "\n")


def write_image(path: str | Path, image) -> Path:
    """An (H, W, 3) or (H, W) uint8 RGB(A) array as PNG/JPEG (by suffix), written atomically."""
    import numpy as np
    from PIL import Image

    path = Path(path)
    arr = np.asarray(image)
    if arr.dtype != np.uint8:
        raise ValueError(f"write_image expects uint8, got {arr.dtype}")
    fmt = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG"}.get(path.suffix.lower())
    if fmt is None:
        raise ValueError(f"write_image writes .png or .jpg, not {path.suffix!r}")
    with atomic_write(path, "wb") as f:
        Image.fromarray(arr).save(f, format=fmt)
    return path


def clean_temporaries(folder: str | Path, recursive: bool = False) -> int:
    """Remove temporaries that killed facetwin processes left in ``folder``; returns how many.

    Only files carrying :data:`TMP_MARK` whose writing process is gone are removed.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return 0
    removed = 0
    pattern = f"**/.*{TMP_MARK}*" if recursive else f".*{TMP_MARK}*"
    for tmp in folder.glob(pattern):
        pid = tmp.name.rsplit(TMP_MARK, 1)[-1].split("-", 1)[0]
        if pid.isdigit() and int(pid) != os.getpid() and _pid_alive(int(pid)):
            continue
        _remove_quietly(tmp)
        removed += 1
    return removed


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def unique_stems(paths: list[Path]) -> dict[Path, str]:
    """A result name per input, unique within the list: the stem, or ``stem_ext`` when several
    inputs share a stem (``face.jpg`` → ``face_jpg``, ``face.png`` → ``face_png``), with a counter
    if even that collides."""
    by_stem: dict[str, list[Path]] = {}
    for p in paths:
        by_stem.setdefault(p.stem, []).append(p)
    names: dict[Path, str] = {}
    used: set[str] = set()
    for p in paths:
        name = p.stem if len(by_stem[p.stem]) == 1 else f"{p.stem}_{p.suffix.lstrip('.').lower()}"
        base, k = name, 2
        while name in used:
            name, k = f"{base}_{k}", k + 1
        used.add(name)
        names[p] = name
    return names
