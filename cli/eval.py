"""``imgdiff eval``: score imgdiff against labelled data."""

from __future__ import annotations

import click


@click.group("eval")
def eval_group() -> None:
    """Score co-registration, detectors and change maps against labelled data."""


# Subcommands register here, one module each (cli/eval_<what>.py):
