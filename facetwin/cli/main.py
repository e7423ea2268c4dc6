"""Entry point of the ``facetwin`` command.

Conventions every subcommand follows:

* each subcommand lives in ``facetwin/cli/<name>.py`` and defines ``add_parser(subparsers)``,
  which registers its parser and sets ``func`` to a callable ``run(args) -> dict | None``;
* commands that report figures accept ``--json`` (added by :func:`add_json_flag`); the dict
  that ``run`` returns is then printed as exactly one JSON object on the last line of stdout,
  otherwise as readable ``key: value`` lines;
* a :class:`facetwin.errors.FacetwinError` (bad input) and every other expected fault (an
  OSError such as a full disk, a permission, a path that is a folder or a file; a decoding
  error; out of memory) becomes one line on stderr naming the path and the reason, and exit
  code 2; an unexpected exception becomes one line naming a log file that holds its traceback,
  and exit code 1; never a bare traceback. Results written before the fault stay intact
  (every writer goes through :mod:`facetwin.outputs`).
"""

from __future__ import annotations

import argparse
import importlib
import math
import os
import sys
import time
import traceback
import warnings
from pathlib import Path

from facetwin import __version__
from facetwin.errors import FacetwinError

# Imported lazily so that ``facetwin --help`` stays fast and one broken extra does not
# take every subcommand down.
SUBCOMMANDS = ["info", "demo", "bench", "prepare", "evaluate", "train", "reconstruct", "animate", "export", "view",
               "personalize"]


class ArgumentParser(argparse.ArgumentParser):
    """argparse with the project's promise: a bad command line is ONE line on stderr, exit 2
    (argparse's own ``error`` prints the usage block first). Sub-parsers inherit the class."""

    def error(self, message: str):
        self.exit(2, f"facetwin: error: {self.prog}: {message} (see {self.prog} --help)\n")


def _number(kind, test, what: str):
    """An argparse ``type`` that parses ``kind`` and refuses NaN/Inf and values failing ``test``."""
    def parse(text: str):
        try:
            value = kind(text)
        except (TypeError, ValueError):
            raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}") from None
        if not (math.isfinite(value) and test(value)):
            raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}")
        return value

    parse.__name__ = what
    return parse


# Option value types for the subcommands: nonsense (0, negative, NaN, Inf) refused at parse time.
positive_int = _number(int, lambda v: v > 0, "a positive integer")
nonnegative_int = _number(int, lambda v: v >= 0, "an integer >= 0")
positive_float = _number(float, lambda v: v > 0, "a positive number")
nonnegative_float = _number(float, lambda v: v >= 0, "a number >= 0")
unit_float = _number(float, lambda v: 0 <= v <= 1, "a number in [0, 1]")


def add_json_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print one JSON object as the last line of stdout")


def add_head_model_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--head-model",
        default="open",
        metavar="SPEC",
        help="'open' (default, shipped) or 'flame:/path/generic_model.pkl[,/path/landmark_embedding.npy]'",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(
        prog="facetwin",
        description="Person-specific, animatable 3D face models from in-the-wild photos and videos.",
    )
    parser.add_argument("--version", action="version", version=f"facetwin {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in SUBCOMMANDS:
        try:
            module = importlib.import_module(f"facetwin.cli.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"facetwin.cli.{name}":
                continue  # subcommand not built yet
            raise
        module.add_parser(subparsers)
    return parser


SHOWN_VALUES = 4  # a longer list of numbers (β: 100) prints as its length and first values; --json has all


def print_result(result: dict, as_json: bool) -> None:
    if as_json:
        from facetwin.outputs import dumps_json

        print(dumps_json(result))  # strict JSON: NaN/Inf become null
        return
    for key, value in result.items():
        if isinstance(value, dict):
            print(f"{key}:")
            for k, v in value.items():
                print(f"  {k}: {_fmt(v)}")
        elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            print(f"{key}:")  # one line per entry (e.g. reconstruct's outputs, one per image)
            for v in value:
                print(f"  - {_fmt(v)}")
        else:
            print(f"{key}: {_fmt(value)}")


def _fmt(value):
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, dict):  # a nested table row, e.g. evaluate's by_pose
        return ", ".join(f"{k} {_fmt(v)}" for k, v in value.items())
    if isinstance(value, (list, tuple)):
        numbers = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
        if numbers and len(value) > SHOWN_VALUES:
            head = ", ".join(str(_fmt(v)) for v in value[:SHOWN_VALUES])
            return f"[{head}, ...] ({len(value)} values; all of them with --json)"
        return "[" + ", ".join(str(_fmt(v)) for v in value) + "]"
    return value


def error(message: str) -> int:
    print(f"facetwin: error: {message}", file=sys.stderr)
    return 2


def describe_fault(exc: BaseException) -> str | None:
    """One line for an expected fault (path and reason), or None for an unexpected exception."""
    from facetwin.outputs import describe_os_error

    if isinstance(exc, FacetwinError):
        text = str(exc).strip()
        return text.splitlines()[0] if text else type(exc).__name__
    if isinstance(exc, OSError):
        reason = describe_os_error(exc)
        names = [str(n) for n in (exc.filename, getattr(exc, "filename2", None)) if n]
        return f"{' -> '.join(names)}: {reason}" if names else reason
    if isinstance(exc, MemoryError):
        return "out of memory (try a smaller input or fewer threads)"
    if isinstance(exc, UnicodeError):
        return f"cannot decode text: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
    return None


def log_dir() -> Path:
    """Where tracebacks of unexpected errors go: $FACETWIN_LOG_DIR or ~/.cache/facetwin/logs."""
    if os.environ.get("FACETWIN_LOG_DIR"):
        return Path(os.environ["FACETWIN_LOG_DIR"])
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "facetwin" / "logs"


def write_crash_log(exc: BaseException, argv: list[str] | None) -> Path | None:
    """The traceback in a log file (the cache folder, else the system temp folder)."""
    import tempfile

    text = (f"facetwin {__version__}\ncommand: {' '.join(['facetwin', *(sys.argv[1:] if argv is None else argv)])}\n\n"
            + "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)))
    name = f"error-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.log"
    for folder in (log_dir(), Path(tempfile.gettempdir()) / "facetwin-logs"):
        try:
            folder.mkdir(parents=True, exist_ok=True)
            (folder / name).write_text(text)
            return folder / name
        except OSError:
            continue
    return None


def internal_error(exc: BaseException, argv: list[str] | None) -> int:
    log = write_crash_log(exc, argv)
    where = f"traceback in {log}" if log else "the traceback could not be saved"
    summary = (str(exc).strip().splitlines() or [""])[0][:200]
    print(f"facetwin: internal error: {type(exc).__name__}{': ' + summary if summary else ''} ({where}; please report it)",
          file=sys.stderr)
    return 1


def main(argv: list[str] | None = None) -> int:
    warnings.formatwarning = lambda message, *args, **kwargs: f"facetwin: warning: {message}\n"
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version (0) or a bad command line (2, one line already printed)
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        result = args.func(args)
        if isinstance(result, dict):
            print_result(result, getattr(args, "json", False))
    except KeyboardInterrupt as exc:
        print(f"facetwin: {exc.args[0] if exc.args else 'interrupted'}", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - the one place that turns every failure into one line
        message = describe_fault(exc)
        if message is None:
            return internal_error(exc, argv)
        return error(message)
    return 0


def add_group(subparsers, name: str, help_text: str, children: list[str]) -> None:
    """A subcommand with sub-subcommands (``facetwin evaluate annotator ...``).

    Each child lives in ``facetwin/cli/<name>_<child>.py`` with an ``add_parser(subparsers)``
    like a top-level subcommand; children not built yet are skipped.
    """
    parser = subparsers.add_parser(name, help=help_text, description=help_text)
    group = parser.add_subparsers(dest=f"{name}_command", metavar="WHAT")
    for child in children:
        try:
            module = importlib.import_module(f"facetwin.cli.{name}_{child}")
        except ModuleNotFoundError as exc:
            if exc.name == f"facetwin.cli.{name}_{child}":
                continue
            raise
        module.add_parser(group)
    def need_child(args):
        raise FacetwinError(f"'facetwin {name}' needs one of: {', '.join(group.choices)} (see --help)")

    parser.set_defaults(func=need_child)
