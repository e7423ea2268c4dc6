"""Timing of the differentiable renderer on the open head model (batch 8, 128² and 224²).

    python benchmarks/bench_render.py [--threads 2] [--repeats 20]

Same figures as ``facetwin bench render --json`` (this file only forwards to it): rasterise,
textured SH render forward, and forward + backward of a photometric loss to vertices, albedo
texture and lighting; plus the optional moderngl visibility pass where it is available.
"""

from __future__ import annotations

import sys

from facetwin.cli.main import main

if __name__ == "__main__":
    sys.exit(main(["bench", "render", "--json", *sys.argv[1:]]))
