"""Whole tiles in bounded memory: windows with overlap, block-by-block change maps and detection.

A raster is cut into *tiles*. Each tile has a **core** (the tiles' cores partition the
raster: every pixel belongs to exactly one core) and a **read window**: the core grown by
``overlap`` pixels on every side, clipped to the raster. Work is done on read windows, so
filters, warps and detectors see context across the core border; results are kept only
on the core, so nothing is lost or counted twice at a border:

* a change map pixel is written by the one tile whose core holds it;
* a detection is kept only by the one tile whose core holds its centre.

Speed: tiles are read in row-major order by a :class:`StripReader` per scene (every compressed
block decoded once, coarser bands upsampled by OpenCV), in the calling thread, while ``workers``
threads compute (OpenCV and BLAS held to one thread each); GDAL's block cache is kept small, so
resident memory is the strips, the tiles in flight and their features. Detection can run behind a
cheap screen (:func:`vessel_screen`): the detector sees only the runs of blocks that may hold an
object, with the scene-wide input levels and haze offsets of :func:`vessel_inputs`.

Pixel coordinates follow rasterio: x = column, y = row, pixel (0, 0) spans [0, 1) x [0, 1).

Submodules
----------
tiling
    Tile sizes and overlaps, :class:`Tile`, :func:`tile_grid`, :func:`map_bounded`,
    :func:`one_thread_per_worker`.
reading
    Grids of files (:func:`source_grid`, :func:`work_grid`), :func:`read_window`, :class:`StripReader`.
detect
    :func:`detect_tiled`, the screened blocks and the detector windows planned over them
    (:func:`plan_windows`).
vessels
    :func:`vessel_screen`, :func:`vessel_levels` and :func:`vessel_inputs` for the vessel detector on whole tiles.
methods
    Change methods of the tiled comparison (:data:`TILED_METHODS`) and their magnitude histograms
    (:func:`otsu_threshold`, :func:`hist_noise_floor`).
samples
    :class:`SampleEstimate` and :func:`estimate_on_samples`: shift and normalisation from sample windows.
compare
    :func:`write_change_tiled` and :func:`compare_tiled`: ``imgdiff compare`` on whole tiles.
large_scenes
    :func:`should_tile` and :func:`zones_window`: when a scene is tiled, and a site's window of it.
"""

from __future__ import annotations

from .compare import TILED_CHANGE_COMPRESSION, TiledChange, compare_tiled, write_change_tiled
from .detect import (
    CALL_COST_PX,
    NETWORK_TILE,
    NETWORK_TILE_OVERLAP,
    SCREEN_BLOCK,
    SCREEN_CONTEXT,
    crop_scene,
    detect_tiled,
    plan_windows,
    screened_blocks,
    screened_runs,
)
from .detect import _shift_detection as _shift_detection  # private, re-exported: used by imgdiff.watch
from .detect import _window_cost as _window_cost  # private, re-exported: used by tests/test_tiles.py
from .large_scenes import TILED_ABOVE_PX, ZONES_MARGIN_M, ZONES_WINDOW_ABOVE_PX, should_tile, zones_window
from .methods import (
    HIST_BINS,
    TILED_METHODS,
    change_passes,
    hist_noise_floor,
    magnitude_bound,
    otsu_threshold,
    pick_tiled_method,
)
from .reading import GDAL_CACHE_BYTES, StripReader, read_window, source_grid, window_bounds, work_grid
from .reading import _upsample as _upsample  # private, re-exported: used by tests/test_tiles.py
from .samples import (
    RADIOMETRY_CHIP,
    RADIOMETRY_GRID,
    WARP_KERNEL,
    SampleEstimate,
    estimate_on_samples,
    grid_boxes,
    sample_boxes,
)
from .tiling import (
    CHANGE_OVERLAP,
    DETECT_OVERLAP,
    MLP_TILE_SIZE,
    TILE_SIZE,
    Tile,
    map_bounded,
    one_thread_per_worker,
    tile_grid,
)
from .vessels import SCREEN_BRIGHTER, SCREEN_CELL, SCREEN_WATER_CELLS, vessel_inputs, vessel_levels, vessel_screen

__all__ = [
    "CHANGE_OVERLAP", "DETECT_OVERLAP", "MLP_TILE_SIZE", "SampleEstimate", "TILED_METHODS", "TILE_SIZE", "Tile",
    "TiledChange", "StripReader", "change_passes", "compare_tiled", "crop_scene", "detect_tiled", "plan_windows", "screened_blocks", "screened_runs", "vessel_inputs", "vessel_levels",
    "vessel_screen", "one_thread_per_worker", "estimate_on_samples", "grid_boxes", "hist_noise_floor",
    "magnitude_bound", "map_bounded", "otsu_threshold", "pick_tiled_method", "read_window", "sample_boxes",
    "should_tile", "source_grid", "tile_grid", "window_bounds", "work_grid", "write_change_tiled", "zones_window",
    "ZONES_MARGIN_M", "ZONES_WINDOW_ABOVE_PX",
    # tuning constants (importable from here before the split too)
    "CALL_COST_PX", "GDAL_CACHE_BYTES", "HIST_BINS", "NETWORK_TILE", "NETWORK_TILE_OVERLAP", "RADIOMETRY_CHIP",
    "RADIOMETRY_GRID", "SCREEN_BLOCK", "SCREEN_BRIGHTER", "SCREEN_CELL", "SCREEN_CONTEXT", "SCREEN_WATER_CELLS",
    "TILED_ABOVE_PX", "TILED_CHANGE_COMPRESSION", "WARP_KERNEL",
]
