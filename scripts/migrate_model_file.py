"""Rewrite an older facetwin model file in the current format (facetwin.models.files), in place.

    PYTHONPATH=. python scripts/migrate_model_file.py facetwin/checkpoints/coarse_encoder.safetensors

Version-1 coarse-encoder files could keep their metadata only in the JSON sidecar; the current
format keeps it in the safetensors header (the reader trusts the header only) and adds the
``inference`` properties (input size, crop rule, contour convention). The tensors are copied
bit for bit (fp16 stays fp16).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from safetensors import safe_open  # noqa: E402

from facetwin.models import files  # noqa: E402


def migrate(path: Path) -> dict:
    with safe_open(str(path), framework="pt") as fh:
        raw = (fh.metadata() or {}).get(files.HEADER_KEY)
        tensors = {k: fh.get_tensor(k) for k in fh.keys()}
    meta = json.loads(raw) if raw is not None else json.loads(files.sidecar_path(path).read_text())
    meta = files.upgrade(meta)
    kind, _ = files.parse_format(meta["format"])
    dtypes = {v.dtype for v in tensors.values() if v.is_floating_point()}
    files.write_model_file(path, tensors, kind, meta, dtype=dtypes.pop() if len(dtypes) == 1 else tensors[next(iter(tensors))].dtype)
    return meta


if __name__ == "__main__":
    for p in sys.argv[1:]:
        m = migrate(Path(p))
        print(f"{p}: {m['format']}, inference {m.get('inference')}")
