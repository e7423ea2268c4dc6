"""Convert pickled training checkpoints (``step_*.pt`` of facetwin before the safetensors format)
into ``step_*.safetensors`` so that ``--resume`` accepts them.

    python scripts/convert_checkpoint.py runs/coarse/checkpoints/step_0000500.pt [...]

Only for checkpoints you wrote yourself: the file is read with ``torch.load(weights_only=True)``
and an allow-list of exactly the numpy types a facetwin RNG state holds (no other code can run),
then written with :func:`facetwin.training.checkpoint.save_checkpoint`. The ``.pt`` is kept.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

from facetwin.training.checkpoint import CKPT_RE, checkpoint_name, load_checkpoint, save_checkpoint

try:  # numpy >= 2
    from numpy._core.multiarray import _reconstruct
except ImportError:  # numpy 1.x
    from numpy.core.multiarray import _reconstruct  # type: ignore

ALLOWED = [_reconstruct, np.ndarray, np.dtype, type(np.dtype(np.uint32))]


def convert(path: Path) -> Path:
    m = CKPT_RE.fullmatch(path.name)
    if not m or m.group(2) != "pt":
        raise SystemExit(f"{path}: expected a step_NNNNNNN.pt file")
    with torch.serialization.safe_globals(ALLOWED):
        state = torch.load(str(path), map_location="cpu", weights_only=True)
    target = save_checkpoint(state, path.with_name(checkpoint_name(int(m.group(1)))))
    load_checkpoint(target)  # reads back
    return target


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoints", nargs="+", type=Path)
    for path in parser.parse_args(argv).checkpoints:
        print(f"{path} -> {convert(path)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
