"""Progress and signal handling around the tiled (whole-tile) comparison of ``imgdiff compare``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import click

from imgdiff.tiles import CHANGE_OVERLAP, TILE_SIZE, compare_tiled, should_tile, tile_grid, work_grid

from .watch import sigterm_as_interrupt

__all__ = ["compare_tiled_with_progress", "should_tile"]


def compare_tiled_with_progress(before: str, after: str, outdir: str, *, bands: Sequence[str] | None,
                                bbox: tuple | None, tile_size: int | None, register: bool, overwrite: bool,
                                progress: bool) -> dict[str, Any]:
    """Run :func:`imgdiff.tiles.compare_tiled` with a progress bar over both tile passes (on a terminal)."""
    size = tile_size or TILE_SIZE
    with sigterm_as_interrupt():
        if not progress:
            return compare_tiled(before, after, outdir, bands=bands, bbox=bbox, tile_size=size, register=register,
                                 overwrite=overwrite)
        n = len(tile_grid(work_grid(before, bands, bbox).shape, size, CHANGE_OVERLAP))
        with click.progressbar(length=2 * n, label="imgdiff compare (tiles)", file=click.get_text_stream("stderr"),
                               item_show_func=lambda x: x) as bar:
            return compare_tiled(before, after, outdir, bands=bands, bbox=bbox, tile_size=size, register=register,
                                 overwrite=overwrite,
                                 on_tile=lambda name, t: bar.update(1, f"{name} {t.row},{t.col}"))
