"""``imgdiff eval``: score imgdiff against labelled data."""

from __future__ import annotations

import click


@click.group("eval")
def eval_group() -> None:
    """Score co-registration, detectors and change maps against labelled data."""


# Subcommands register here, one module each (cli/eval_<what>.py):
from .eval_aircraft import eval_aircraft_cmd  # noqa: E402

eval_group.add_command(eval_aircraft_cmd)
from .eval_vessels import eval_vessels_cmd  # noqa: E402

eval_group.add_command(eval_vessels_cmd)
from .eval_coreg import eval_coreg_cmd  # noqa: E402

eval_group.add_command(eval_coreg_cmd)
from .eval_change import eval_change_cmd  # noqa: E402

eval_group.add_command(eval_change_cmd)
