"""Where the shared evaluation data lives."""

from __future__ import annotations

import os
from pathlib import Path

#: Environment variable naming the shared data folder.
DATA_ENV = "IMGDIFF_DATA_DIR"


def data_dir() -> Path:
    """The shared data folder: ``$IMGDIFF_DATA_DIR``, else ``../shared/data`` from the repository root."""
    env = os.environ.get(DATA_ENV)
    if env:
        return Path(env)
    return Path(__file__).resolve().parent.parent.parent / "shared" / "data"
