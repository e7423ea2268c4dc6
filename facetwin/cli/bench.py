"""``facetwin bench [WHAT]``: timings. Without WHAT, every benchmark runs and reports together.

Each WHAT lives in ``facetwin/cli/bench_<what>.py`` and defines ``add_parser(subparsers)`` and
``measure(args) -> dict``.
"""

from __future__ import annotations

import importlib
import statistics
import time

from facetwin.cli.main import add_group, add_json_flag, positive_int

BENCHMARKS = ["headmodel", "render", "coarse", "detail"]


def time_ms(fn, repeats: int) -> tuple[float, float, float]:
    """(median wall, best wall, median process CPU) milliseconds of ``fn()`` after one warm-up.

    On a shared machine the best wall time and the CPU time (summed over threads) are the
    steadier figures.
    """
    fn()
    wall, cpu = [], []
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    r = lambda x: round(1000 * x, 3)  # noqa: E731
    return r(statistics.median(wall)), r(min(wall)), r(statistics.median(cpu))


def at_threads(fn, threads=(1, 2)) -> dict:
    """``{n: fn()}`` with torch at ``n`` threads for each ``n``; the thread count restored after."""
    import torch

    requested = torch.get_num_threads()
    try:
        out = {}
        for n in threads:
            torch.set_num_threads(n)
            out[n] = fn()
        return out
    finally:
        torch.set_num_threads(requested)


def add_benchmark(subparsers, name: str, help_text: str, measure, repeats: int):
    """Register ``facetwin bench NAME`` with the options every benchmark shares."""
    parser = subparsers.add_parser(name, help=help_text, description=help_text)
    add_json_flag(parser)
    parser.add_argument("--threads", type=positive_int, default=2, help="torch threads (default 2)")
    parser.add_argument("--repeats", type=positive_int, default=repeats, help="timed repetitions per figure (median reported)")

    def run(args) -> dict:
        import torch

        torch.set_num_threads(args.threads)
        return measure(args)

    parser.set_defaults(func=run)
    return parser


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
    add_group(subparsers, "bench", "Time the head model, the renderer, the coarse model and the detail model.", BENCHMARKS)
    parser = subparsers.choices["bench"]
    add_json_flag(parser)
    parser.add_argument("--threads", type=positive_int, default=2, help="torch threads (default 2)")
    parser.add_argument("--repeats", type=positive_int, default=20, help="timed repetitions per figure")
    parser.set_defaults(func=run_all)
