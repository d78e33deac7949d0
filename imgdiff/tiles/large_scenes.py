"""Scenes too large to read whole: when to tile them, and the window a site needs of them.

:func:`should_tile` tells whether a scene has more pixels than :data:`TILED_ABOVE_PX` (the CLI
then compares or detects tile by tile); :func:`zones_window` is the part of a large scene to read
for a site: the zones' bounds plus :data:`ZONES_MARGIN_M`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import rasterio

from ..errors import ImgdiffError, NoOverlapError
from ..io.read import BBox
from ..zones import Zones, placed
from .reading import source_grid, work_grid

#: Scenes with more pixels than this are compared tile by tile by the CLI.
TILED_ABOVE_PX = 4096 * 4096


def should_tile(path: str | Path, bands: Sequence[str] | None = None, bbox: BBox | None = None,
                threshold_px: int = TILED_ABOVE_PX) -> bool:
    """Whether a scene (or its bbox window) has more pixels than ``threshold_px``."""
    try:
        g = work_grid(path, bands, bbox)
    except (ImgdiffError, OSError):  # the untiled path reports the problem
        return False
    return g.width * g.height > threshold_px


#: A scene with more pixels than this is read only around the zones of a site (``compare --site``,
#: ``verify``): whole tiles. Site-sized scenes are read whole, so their context stays what it was.
ZONES_WINDOW_ABOVE_PX = TILED_ABOVE_PX
#: Context kept around the zones' bounds when a whole tile is read only around them (metres).
ZONES_MARGIN_M = 2000.0


def zones_window(path: str | Path, zones: Zones, bands: Sequence[str] | None = None, *,
                 threshold_px: int | None = None, margin_m: float | None = None) -> tuple[BBox, Any] | None:
    """The window of a large scene to read for a site: the zones' bounds plus a margin.

    Parameters
    ----------
    path : str or Path
        A scene (anything :func:`imgdiff.read_scene` reads); only its files' headers are read.
    zones : Zones
        The site's zones (any CRS; placed on the scene as :func:`imgdiff.zones.placed` does).
    bands : sequence of str, optional
        Bands that will be read (their finest grid decides the pixel count).
    threshold_px : int, optional
        Scenes of at most this many pixels are read whole (None is returned); default
        :data:`ZONES_WINDOW_ABOVE_PX`.
    margin_m : float, optional
        Context around the zones, in the scene CRS's map units (metres for UTM); default
        :data:`ZONES_MARGIN_M`.

    Returns
    -------
    ((minx, miny, maxx, maxy), CRS) or None
        The window's bounds in the scene's CRS and that CRS (``read_scene(path, bbox=b,
        bbox_crs=crs)``); None when the scene is small enough to read whole or has no CRS.

    Raises
    ------
    NoOverlapError
        The zones lie outside the scene.
    """
    threshold_px = ZONES_WINDOW_ABOVE_PX if threshold_px is None else threshold_px
    margin_m = ZONES_MARGIN_M if margin_m is None else margin_m
    g = source_grid(path, bands)
    if g.width * g.height <= threshold_px or g.crs is None:
        return None
    bounds = [geom.bounds for geom in placed(zones, g.crs, where=str(path)).geometries.values() if not geom.is_empty]
    if not bounds:
        return None
    x0, y0 = min(b[0] for b in bounds) - margin_m, min(b[1] for b in bounds) - margin_m
    x1, y1 = max(b[2] for b in bounds) + margin_m, max(b[3] for b in bounds) + margin_m
    left, bottom, right, top = rasterio.transform.array_bounds(g.height, g.width, g.transform)
    if x1 <= left or x0 >= right or y1 <= bottom or y0 >= top:
        raise NoOverlapError(f"{path}: the zones ({', '.join(zones.names)}) lie outside the scene")
    return (max(x0, left), max(y0, bottom), min(x1, right), min(y1, top)), g.crs
