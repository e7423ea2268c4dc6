"""``facetwin train WHAT``: one module per WHAT in ``facetwin/cli/train_<what>.py``."""

from facetwin.cli.main import add_group


def add_parser(subparsers) -> None:
    add_group(subparsers, "train", "Train a stage of the base model (runs under torchrun for several processes).", ['coarse', 'mae'])
