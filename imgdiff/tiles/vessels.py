"""The vessel detector on whole tiles: where a vessel may lie, and scene-wide input levels.

:func:`vessel_screen` is the cheap screen :func:`imgdiff.tiles.detect.detect_tiled` runs before
the vessel network; :func:`vessel_levels` gives the network's input levels for a whole scene from
a decimated read, so that every window is normalised alike.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import rasterio
import rasterio.windows
from affine import Affine
from rasterio.windows import Window

from ..io.read import BBox, find_band_sources, georeferencing, open_raster
from ..scene import Scene
from .reading import _probe, window_bounds, work_grid

#: The vessel screen's cell side in pixels, and how far (in cells) from water a vessel's centre
#: may lie: 2 cells of 16 px = 32 px, beyond a box half-length (<= 20 px for 400 m) plus the
#: detector's 4 px water test (on the real ports every detection lies within 6 px of water).
SCREEN_CELL = 16
SCREEN_WATER_CELLS = 2
#: An open-water cell holds a vessel candidate when a pixel exceeds this multiple of the local
#: water background in B04 or B08 (on the sen2ships ports every detection of the network and every
#: labelled vessel peaks at >= 1.66 x in B04 and >= 2.0 x in B08; sensor noise on dark water
#: reaches about 1.3 x in a cell).
SCREEN_BRIGHTER = 1.5


def vessel_screen(scene: Scene, *, cell: int = SCREEN_CELL, water_cells: int = SCREEN_WATER_CELLS,
                  brighter: float = SCREEN_BRIGHTER) -> np.ndarray:
    """Where a vessel's centre may lie: near water, and in open water only near a bright pixel.

    A cheap test that lets :func:`detect_tiled` skip what cannot hold a vessel, working on
    ``cell`` x ``cell`` px cells. Water is the detector's open water
    (:func:`imgdiff.detect.vessels.water_mask`: NDWI > 0 in water bodies of at least
    :data:`imgdiff.detect.vessels.MIN_WATER_BODY_PX` px),
    computed on the whole window: on any part of the window the detector finds no more water.
    A cell is marked when it holds a valid pixel and

    * water lies within ``water_cells`` cells of it (inland cells are skipped: the detector
      drops boxes with no open water within 4 px), and
    * it is not open water (land within ``water_cells`` cells: quays, moored ships), or one of
      its pixels is ``brighter`` times the median water of its 3 x 3 cells in B04 or B08.

    Parameters
    ----------
    scene : Scene
        With B03 and B08 (B04 used when present); otherwise every valid pixel is marked.
    cell : int
        Cell size in pixels.
    water_cells : int
        Reach, in cells, of the "near water" and "near land" tests.
    brighter : float
        Factor over the median water of the 3 x 3 cells that marks a bright pixel in open water.

    Returns
    -------
    ndarray of bool (rows, cols)
        Constant over each cell.
    """
    if "B03" not in scene.bands or "B08" not in scene.bands:
        return scene.valid.copy()
    from scipy import ndimage as ndi

    h, w = scene.shape
    hc, wc = -(-h // cell), -(-w // cell)

    def cells(a: np.ndarray, fill: float) -> np.ndarray:
        p = np.full((hc * cell, wc * cell), fill, a.dtype)
        p[:h, :w] = a
        return p.reshape(hc, cell, wc, cell).transpose(0, 2, 1, 3).reshape(hc, wc, cell * cell)

    from ..detect.vessels import water_mask

    water = water_mask(scene)  # the detector's own: on a larger window, a superset of it on any part
    valid_c = cells(scene.valid, False).any(axis=2)
    land_c = cells(~water & scene.valid, False).any(axis=2)
    water_c = cells(water, False).any(axis=2)
    reach = np.ones((2 * water_cells + 1,) * 2, bool)
    near_water = ndi.binary_dilation(water_c, reach)
    near_land = ndi.binary_dilation(land_c, reach)
    bright_c = np.zeros((hc, wc), bool)
    for name in ("B04", "B08"):
        if name not in scene.bands:
            continue
        vc = cells(np.where(water & scene.valid, scene.bands[name], np.nan).astype(np.float32), np.nan)
        med = _nan_median_last(vc)
        peak = np.fmax.reduce(cells(np.where(scene.valid, scene.bands[name], np.nan).astype(np.float32), np.nan),
                              axis=2)  # NaN-ignoring maximum; NaN where no pixel is valid
        # background: the median water of the 3 x 3 cells (a ship filling its own cell does not hide)
        bg = ndi.minimum_filter(np.where(np.isfinite(med), med, np.inf), size=3, mode="nearest")
        with np.errstate(invalid="ignore"):
            bright_c |= ~(peak <= brighter * bg)  # NaN peak (no valid pixel) is caught by valid_c
    marked = valid_c & near_water & (near_land | bright_c)
    return np.repeat(np.repeat(marked, cell, axis=0), cell, axis=1)[:h, :w]


def _nan_median_last(v: np.ndarray) -> np.ndarray:
    """``np.nanmedian(v, axis=-1)`` (NaN where a row holds only NaN, without a warning), by one sort
    of the rows (NaN sorts last): np.nanmedian takes a masked-array median, several times slower."""
    s = np.sort(v, axis=-1)
    n = (~np.isnan(s)).sum(axis=-1)
    lo = np.take_along_axis(s, np.maximum(n - 1, 0)[..., None] // 2, axis=-1)[..., 0]
    hi = np.take_along_axis(s, (n // 2)[..., None], axis=-1)[..., 0]
    out = (lo + hi) / v.dtype.type(2)
    out[n == 0] = np.nan
    return out


def _decimated(path: str | Path, bands: Sequence[str] | None, bbox: BBox | None, step: int
               ) -> tuple[dict[str, np.ndarray], Affine]:
    """Reflectance of B02 B03 B04 B08 (those present) from every ``step``-th pixel of every ``step``-th
    row of the scene (GDAL decimated read, nearest; every block is decoded once), converted as
    :func:`imgdiff.read_scene` does, and the transform of that coarse grid."""
    from rasterio.enums import Resampling

    from ..detect.vessels import MODEL_BANDS
    from ..io.read import Radiometry, to_reflectance

    grid = work_grid(path, bands, bbox)
    names = [b for b in MODEL_BANDS if bands is None or b in bands]
    sources = {s.name: s for s in find_band_sources(path, bands) if s.name in names}
    probe = _probe(path, grid, list(sources) or None)
    rad = probe.meta.get("radiometry", {}) if probe is not None else {}
    bounds = window_bounds(grid, (0, 0, grid.width, grid.height))
    shape = (max(1, grid.height // step), max(1, grid.width // step))

    def read(name: str) -> np.ndarray | None:
        s, r = sources[name], rad[name]
        with open_raster(s.path) as ds:  # one handle per thread
            crs, transform = georeferencing(ds, name)
            if crs != grid.crs:
                return None
            win = rasterio.windows.from_bounds(*bounds, transform=transform).round_offsets().round_lengths()
            win = win.intersection(Window(0, 0, ds.width, ds.height))
            dn = ds.read(s.index, window=win, out_shape=shape, resampling=Resampling.nearest)
            return to_reflectance(dn, Radiometry(r["scale"], r["offset"], r["source"]), ds.nodata)

    names = [n for n in sources if n in rad]
    # the bands are read (every block decoded) on two threads: GDAL releases the GIL while decoding
    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="imgdiff-levels") as pool:
        found = dict(zip(names, pool.map(read, names)))
    coarse = grid.transform * Affine.scale(grid.width / shape[1], grid.height / shape[0])
    return {n: a for n, a in found.items() if a is not None}, coarse


def vessel_levels(path: str | Path, bands: Sequence[str] | None = None, bbox: BBox | None = None,
                  step: int = 8) -> dict[str, tuple[float, float]]:
    """Input levels of the vessel network for a whole scene, from a decimated read.

    Every ``step``-th pixel of every ``step``-th row of each of B02 B03 B04 B08 (those
    present) is read (GDAL decimated read, nearest) and converted to reflectance as
    :func:`imgdiff.read_scene` does; :func:`imgdiff.detect.vessels.band_levels` of each
    band are then the levels every window is normalised with, instead of its own (so a
    window of open sea and one of bright port are scaled alike, as in the whole scene).

    Returns
    -------
    dict
        Band name -> (low, reference) levels; bands without valid pixels are left out.
    """
    return _levels(_decimated(path, bands, bbox, step)[0])


def _levels(coarse: dict[str, np.ndarray]) -> dict[str, tuple[float, float]]:
    from ..detect.vessels import band_levels

    return {n: lv for n, a in coarse.items() if (lv := band_levels(a)) is not None}


def vessel_inputs(path: str | Path, bands: Sequence[str] | None = None, bbox: BBox | None = None,
                  step: int = 8) -> tuple[dict[str, tuple[float, float]], dict[str, float]]:
    """What every window of a whole scene shares in the vessel detector, from one decimated read:
    the input levels (as :func:`vessel_levels`) and the path radiance offsets
    (:func:`imgdiff.detect.vessel_features.haze_offsets`, reflectance) measured on the open water of
    the coarse grid (:func:`imgdiff.detect.vessels.water_mask` with its smallest water body scaled by
    ``1 / step**2``), so that a window of harbour and one of open sea lose the same haze.

    Returns
    -------
    levels : dict
        Band name -> (low, reference); bands without valid pixels are left out.
    haze : dict
        Band name -> offset (0 where the scene's darkest water is as dark as the training ports',
        or where the coarse grid has too little open water to tell).
    """
    from ..detect import vessel_features as vf
    from ..detect.vessels import MIN_WATER_BODY_PX, water_mask

    coarse, transform = _decimated(path, bands, bbox, step)
    haze: dict[str, float] = {}
    if {"B03", "B08"} <= set(coarse):  # water_mask needs both (else None)
        valid = np.logical_and.reduce([np.isfinite(a) for a in coarse.values()])
        water = water_mask(Scene(coarse, None, transform, valid), min_area_px=max(1, MIN_WATER_BODY_PX // (step * step)))
        if water is not None:
            haze = vf.haze_offsets(coarse, water, min_water_px=max(1, vf.MIN_HAZE_WATER_PX // (step * step)))
    return _levels(coarse), haze
