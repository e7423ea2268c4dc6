"""Entry point of the ``facetwin`` command.

Conventions every subcommand follows:

* each subcommand lives in ``facetwin/cli/<name>.py`` and defines ``add_parser(subparsers)``,
  which registers its parser and sets ``func`` to a callable ``run(args) -> dict | None``;
* commands that report figures accept ``--json`` (added by :func:`add_json_flag`); the dict
  that ``run`` returns is then printed as exactly one JSON object on the last line of stdout,
  otherwise as readable ``key: value`` lines;
* a :class:`facetwin.errors.FacetwinError` (bad input) becomes one line on stderr and exit
  code 2; never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import warnings

from facetwin import __version__
from facetwin.errors import FacetwinError

# Imported lazily so that ``facetwin --help`` stays fast and one broken extra does not
# take every subcommand down.
SUBCOMMANDS = ["info", "demo", "bench", "prepare", "evaluate", "train", "reconstruct", "fit", "personalize"]


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
    parser = argparse.ArgumentParser(
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


def print_result(result: dict, as_json: bool) -> None:
    if as_json:
        print(json.dumps(result, default=_json_default))
        return
    for key, value in result.items():
        if isinstance(value, dict):
            print(f"{key}:")
            for k, v in value.items():
                print(f"  {k}: {_fmt(v)}")
        else:
            print(f"{key}: {_fmt(value)}")


def _fmt(value):
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, dict):  # a nested table row, e.g. evaluate's by_pose
        return ", ".join(f"{k} {_fmt(v)}" for k, v in value.items())
    return value


def _json_default(obj):
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if hasattr(obj, "__fspath__"):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def error(message: str) -> int:
    print(f"facetwin: error: {message}", file=sys.stderr)
    return 2


def main(argv: list[str] | None = None) -> int:
    warnings.formatwarning = lambda message, *args, **kwargs: f"facetwin: warning: {message}\n"
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        result = args.func(args)
    except FacetwinError as exc:
        return error(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
    except KeyboardInterrupt:
        print("facetwin: interrupted", file=sys.stderr)
        return 130
    if isinstance(result, dict):
        print_result(result, getattr(args, "json", False))
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
