"""Progress and signal handling around the tiled (whole-tile) comparison of ``imgdiff compare``."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

import click

from imgdiff.coregister import MAX_SHIFT_PX
from imgdiff.tiles import (
    CHANGE_OVERLAP,
    MLP_TILE_SIZE,
    TILE_SIZE,
    TILED_METHODS,
    change_passes,
    compare_tiled,
    pick_tiled_method,
    should_tile,
    tile_grid,
    work_grid,
)

from .watch import sigterm_as_interrupt

__all__ = ["compare_tiled_with_progress", "detect_tiled_cli", "should_tile"]


def compare_tiled_with_progress(before: str, after: str, outdir: str, *, bands: Sequence[str] | None,
                                bbox: tuple | None, tile_size: int | None, register: bool, overwrite: bool,
                                progress: bool, method: str | None = None, max_shift: float = MAX_SHIFT_PX
                                ) -> dict[str, Any]:
    """Run :func:`imgdiff.tiles.compare_tiled` with a progress bar over both tile passes (on a terminal);
    ``max_shift``: the largest plausible shift, pixels of the before scene's grid."""
    size = tile_size  # None: the method's default (imgdiff.tiles.TILE_SIZE, MLP_TILE_SIZE)
    if method is not None and method not in TILED_METHODS:
        raise click.UsageError(f"--method {method} is not available in windows (whole tiles, --tile-size); "
                               f"use one of {', '.join(TILED_METHODS)}")
    with sigterm_as_interrupt():
        if not progress:
            return compare_tiled(before, after, outdir, bands=bands, bbox=bbox, tile_size=size, register=register,
                                 overwrite=overwrite, method=method, max_shift=max_shift)
        from imgdiff.io.read import find_band_sources

        n = len(tile_grid(work_grid(before, bands, bbox).shape, size or MLP_TILE_SIZE, CHANGE_OVERLAP))
        names = list(bands) if bands else [s.name for s in find_band_sources(before)]
        passes = change_passes(pick_tiled_method(method, names))  # over tiles of MLP_TILE_SIZE unless --tile-size
        with click.progressbar(length=passes * n, label="imgdiff compare (tiles)", file=sys.stderr,
                               item_show_func=lambda x: x) as bar:
            return compare_tiled(before, after, outdir, bands=bands, bbox=bbox, tile_size=size, register=register,
                                 overwrite=overwrite, method=method, max_shift=max_shift,
                                 on_tile=lambda name, t: bar.update(1, f"{name} {t.row},{t.col}"))


def detect_tiled_cli(scene: str, objects: str, zones: Any, *, min_score: float | None, method: str,
                     bands: Sequence[str] | None, bbox: tuple | None, tile_size: int | None,
                     on_step: Any, tta: int | None = None) -> tuple[Any, dict[str, float] | None]:
    """``imgdiff detect`` window by window (:func:`imgdiff.tiles.detect_tiled`), with the same options.

    Like the whole-scene path, only objects inside a zone are kept when zones are given. ``tta``:
    vessel network passes (None: the detector's default, 8; 4 halves the network's time on a whole
    tile, see ``benchmarks/scale.py``). Returns the detections and, for vessels, the path radiance
    taken off every window (the scene's, :func:`imgdiff.tiles.vessel_inputs`; None for aircraft).
    """
    from functools import partial

    from imgdiff.tiles import detect_tiled, vessel_inputs, vessel_screen

    screen, safe, haze = None, False, None
    if objects == "vessels":
        from imgdiff.detect.vessels import detect_vessels

        kw = {} if min_score is None else {"min_score": min_score}
        if tta is not None:
            kw["tta"] = tta
        # one normalisation and one haze offset for every window (the scene's), one network per
        # thread, and the network only where the cheap screen finds water with land or a bright target
        levels, haze = vessel_inputs(scene, bands, bbox)
        detector = partial(detect_vessels, method=method, levels=levels, haze=haze, **kw)
        safe = True
        screen = vessel_screen if method != "classical" else None
    else:
        from imgdiff.detect.aircraft import detect_aircraft

        detector = partial(detect_aircraft, method=method, min_score=min_score)
    on_step("detect")
    with sigterm_as_interrupt():
        dets = detect_tiled(scene, detector, bands=bands, bbox=bbox, zones=zones, tile_size=tile_size or TILE_SIZE,
                            detector_thread_safe=safe, screen=screen)
    if zones is not None:
        dets = dets.filter([d.zone is not None for d in dets])
    return dets, (haze if method != "classical" else None)
