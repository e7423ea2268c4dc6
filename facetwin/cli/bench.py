"""``facetwin bench [WHAT]``: timings. Without WHAT, every benchmark runs and reports together.

Each WHAT lives in ``facetwin/cli/bench_<what>.py`` and defines ``add_parser(subparsers)`` and
``measure(args) -> dict``.
"""

from __future__ import annotations

import importlib

from facetwin.cli.main import add_group, add_json_flag

BENCHMARKS = ["headmodel", "render", "coarse"]


def _available():
    for name in BENCHMARKS:
        try:
            yield name, importlib.import_module(f"facetwin.cli.bench_{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"facetwin.cli.bench_{name}":
                raise


def run_all(args) -> dict:
    import torch

    torch.set_num_threads(args.threads)
    results = {"threads": args.threads}
    for name, module in _available():
        results[name] = module.measure(args)
    return results


def add_parser(subparsers) -> None:
    add_group(subparsers, "bench", "Time the head model, the renderer and the coarse model.", BENCHMARKS)
    parser = subparsers.choices["bench"]
    add_json_flag(parser)
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    parser.add_argument("--repeats", type=int, default=20, help="timed repetitions per figure")
    parser.set_defaults(func=run_all)
