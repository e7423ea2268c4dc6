"""``facetwin evaluate WHAT``: one module per WHAT in ``facetwin/cli/evaluate_<what>.py``."""

from facetwin.cli.main import add_group


def add_parser(subparsers) -> None:
    add_group(subparsers, "evaluate", "Measure accuracy (68-point NME) of the annotator or of a model, likeness, a person model, detail models.", ['annotator', 'details', 'landmarks', 'likeness', 'person'])
