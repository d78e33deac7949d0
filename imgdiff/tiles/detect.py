"""Detection window by window over a whole tile, optionally behind a cheap screen.

:func:`detect_tiled` runs a detector on each tile's read window and keeps a detection only in
the tile whose core holds its centre. With a screen, a tile's core is cut into blocks
(:func:`screened_blocks`) and the marked blocks are grouped into the detector windows that cost
the network the least (:func:`plan_windows`).

Pixel coordinates follow rasterio: x = column, y = row, pixel (0, 0) spans [0, 1) x [0, 1).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import nullcontext
from dataclasses import replace
from pathlib import Path

import numpy as np
import rasterio
from affine import Affine

from ..detect.base import Detection, Detections, sorted_detections
from ..io.read import BBox
from ..scene import Scene
from ..zones import Zones, assign_zones
from .reading import GDAL_CACHE_BYTES, StripReader, work_grid
from .tiling import DETECT_OVERLAP, TILE_SIZE, Tile, map_bounded, one_thread_per_worker, tile_grid

#: Blocks (width, height in pixels) the detection cascade screens: :func:`plan_windows` groups the
#: marked blocks into detector windows. On the 4096 px synthetic tile (mirrored Beirut; 0.19 of it
#: marked, 0.36 within 48 px of a marked pixel) the network then sees 0.46 of the area with 32 x 32 px
#: blocks and 48 px context, where one window per run of marked 32 x 256 px blocks along a row saw 0.59
#: (the context of thin runs was most of it), for 185 of the 192 whole-scene detections (184 before).
#: The screen's own 16 px cells give 0.45 but 182: a block of 2 x 2 cells leaves a little slack.
SCREEN_BLOCK = (32, 32)
#: Context added around a run of blocks given to the detector, in pixels: 48, as
#: ``imgdiff.detect.vessels`` keeps at its own tile edges. With 32 px the real Casablanca port cut
#: into 256 px tiles loses 3 of its 13 whole-scene detections; with 48 px none.
SCREEN_CONTEXT = 48


def detect_tiled(
    path: str | Path,
    detector: Callable[[Scene], Detections],
    *,
    bands: Sequence[str] | None = None,
    bbox: BBox | None = None,
    zones: Zones | None = None,
    tile_size: int = TILE_SIZE,
    overlap: int = DETECT_OVERLAP,
    workers: int = 2,
    detector_thread_safe: bool = False,
    screen: Callable[[Scene], np.ndarray] | None = None,
    block: tuple[int, int] = SCREEN_BLOCK,
    context: int = SCREEN_CONTEXT,
    on_tile: Callable[[Tile], None] | None = None,
) -> Detections:
    """Run a detector window by window over a scene too large to hold in memory.

    Each tile's read window is read and passed to ``detector``; a detection is kept only
    by the tile whose core holds its centre, so objects on tile borders are neither lost
    (the overlap shows them whole when ``overlap`` exceeds their size) nor counted twice.

    With a ``screen`` (a cheap test of where an object's centre can lie, e.g.
    :func:`vessel_screen`), a tile's core is cut into blocks of ``block`` (width, height) px;
    the blocks the screen marks are grouped into windows (:func:`plan_windows`: guillotine cuts
    that minimise the pixels the detector sees), each given with at least ``context`` px around
    its blocks, and a window keeps the detections centred in its own marked blocks.

    Parameters
    ----------
    path : str or Path
        Anything :func:`imgdiff.read_scene` reads.
    detector : callable
        ``detector(scene) -> Detections``, e.g. ``imgdiff.detect.vessels.detect_vessels``
        (with the scene-wide ``levels`` and ``haze`` of :func:`vessel_inputs` bound, so that every
        window is normalised alike and loses the same path radiance).
    bands : sequence of str, optional
        Bands to read.
    bbox : (west, south, east, north), optional
        Lon/lat window; only it is read.
    zones : Zones, optional
        Zones to label the merged detections with (see :func:`imgdiff.zones.assign_zones`).
    tile_size, overlap : int
        Core size and overlap in pixels.
    workers : int
        Threads screening tiles at once (the reading runs in this thread).
    detector_thread_safe : bool
        Whether ``detector`` may run in several threads at once (``detect_vessels`` may: it
        keeps one network per thread, and a network's forward pass uses one core). By default
        calls are serialised, while reading and screening the next windows goes on in parallel.
    screen : callable, optional
        ``screen(scene) -> bool (rows, cols)``: pixels where an object's centre may lie.
    block : (int, int)
        Width and height of the screened blocks, in pixels.
    context : int
        Pixels of context around each run given to the detector.
    on_tile : callable, optional
        Called with each finished tile (for progress bars).

    Returns
    -------
    Detections
        On the grid of the whole scene (or of its ``bbox`` window), pixel boxes in that grid.
    """
    grid = work_grid(path, bands, bbox)
    tiles = tile_grid(grid.shape, tile_size, overlap)
    lock = nullcontext() if detector_thread_safe else threading.Lock()

    def read_tiles() -> Iterator[tuple[Tile, Scene | None]]:
        with rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_BYTES), StripReader(path, grid, bands) as reader:
            for tile in tiles:
                yield tile, reader.read(tile.read)

    def run(item: tuple[Tile, Scene | None]) -> tuple[Tile, list[Detection]]:
        tile, scene = item
        if scene is None:
            return tile, []
        ox, oy = tile.read[0], tile.read[1]
        if screen is None:
            with lock:
                found = list(detector(scene))
            return tile, [_shift_detection(d, ox, oy) for d in found if tile.holds(d.center[0] + ox, d.center[1] + oy)]
        blocks, x_edges, y_edges = screened_blocks(screen(scene), tile, block)
        kept = []
        for sub, (x0, y0, x1, y1) in plan_windows(blocks, x_edges, y_edges, context, tile.read):
            part = crop_scene(scene, (sub[0] - ox, sub[1] - oy, sub[2] - ox, sub[3] - oy))
            with lock:
                found = list(detector(part))
            for d in found:
                cx, cy = d.center[0] + sub[0], d.center[1] + sub[1]
                if x0 <= cx < x1 and y0 <= cy < y1 and blocks[np.searchsorted(y_edges, cy, "right") - 1,
                                                              np.searchsorted(x_edges, cx, "right") - 1]:
                    kept.append(_shift_detection(d, sub[0], sub[1]))
        return tile, kept

    items: list[Detection] = []
    # one OpenCV/ONNX Runtime thread per tile thread (without it each network pass of each
    # thread starts a pool of its own: 2 x 2 threads on 2 cores)
    with one_thread_per_worker(workers if detector_thread_safe else 1):
        for tile, kept in map_bounded(run, read_tiles(), workers):
            items += kept
            if on_tile:
                on_tile(tile)
    dets = sorted_detections(items, grid.crs, grid.transform, grid.pixel_size_m)
    return assign_zones(dets, zones) if zones is not None else dets


def screened_blocks(marked: np.ndarray, tile: Tile, block: tuple[int, int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The blocks of a tile's core that ``marked`` (on the tile's read window) touches.

    Returns
    -------
    blocks : ndarray of bool (block rows, block cols)
        The core cut into ``block`` (width, height) px blocks (the last ones smaller); True
        where a block holds a marked pixel.
    x_edges, y_edges : ndarray of int
        Pixel edges (full grid) of the block columns and rows.
    """
    rx, ry = tile.read[0], tile.read[1]
    cx0, cy0, cx1, cy1 = tile.core
    x_edges = np.append(np.arange(cx0, cx1, block[0]), cx1)
    y_edges = np.append(np.arange(cy0, cy1, block[1]), cy1)
    core = marked[cy0 - ry:cy1 - ry, cx0 - rx:cx1 - rx]
    rows = np.logical_or.reduceat(core, y_edges[:-1] - cy0, axis=0)
    blocks = np.logical_or.reduceat(rows, x_edges[:-1] - cx0, axis=1)
    return blocks, x_edges, y_edges


def screened_runs(marked: np.ndarray, tile: Tile, block: tuple[int, int]) -> list[tuple[int, int, int, int]]:
    """Boxes (x0, y0, x1, y1), in pixels of the full grid, of the runs of marked blocks of a tile's core.

    The core is cut into blocks of ``block`` (width, height) px (the last ones smaller); a block is marked when
    ``marked`` (on the tile's read window) holds a True pixel in it; consecutive marked blocks
    of a row form one run. The runs of all tiles partition the marked part of the grid.
    """
    rx, ry = tile.read[0], tile.read[1]
    cx0, cy0, cx1, cy1 = tile.core
    bw, bh = block
    runs = []
    for by in range(cy0, cy1, bh):
        by1 = min(by + bh, cy1)
        start = None
        for bx in range(cx0, cx1, bw):
            bx1 = min(bx + bw, cx1)
            hit = bool(marked[by - ry:by1 - ry, bx - rx:bx1 - rx].any())
            if hit and start is None:
                start = bx
            if not hit and start is not None:
                runs.append((start, by, bx, by1))
                start = None
        if start is not None:
            runs.append((start, by, cx1, by1))
    return runs


#: Fixed cost of one detector call, in pixels of network input (water mask, input levels, decoding,
#: rescoring, per-call set-up): an estimate, the network's time on 128 x 128 px with 8 passes.
CALL_COST_PX = 128 * 128
#: Side of the tiles the vessel network runs on, and their overlap on each side
#: (``imgdiff.detect.vessels.TILE`` and ``TILE_OVERLAP``): a longer window is cut into several.
NETWORK_TILE, NETWORK_TILE_OVERLAP = 1536, 96


def _window_cost(w: np.ndarray, h: np.ndarray) -> np.ndarray:
    """Network input (pixels, incl. its internal tile overlaps) plus :data:`CALL_COST_PX` of windows w x h px."""
    step = NETWORK_TILE - 2 * NETWORK_TILE_OVERLAP

    def eff(n: np.ndarray) -> np.ndarray:
        extra = np.maximum(0, np.ceil((n - NETWORK_TILE) / step))
        return n + extra * 2 * NETWORK_TILE_OVERLAP

    return eff(w) * eff(h) + CALL_COST_PX


def plan_windows(marked_blocks: np.ndarray, x_edges: np.ndarray, y_edges: np.ndarray, context: int,
                 bounds: tuple[int, int, int, int], *, fill: float = 0.75
                 ) -> list[tuple[tuple[int, int, int, int], tuple[int, int, int, int]]]:
    """Cut a grid of marked blocks into detector windows that cost the network the least.

    A window is the bounding box of the marked blocks of a rectangle of the block grid, grown by
    ``context`` px and clipped to ``bounds``; its cost is :func:`_window_cost`. Rectangles are cut
    in two recursively (guillotine cuts between block rows or columns, the cut whose two bounding
    boxes cost the least first) and a cut is kept when its windows cost less than the window of
    the whole; a rectangle whose marked blocks fill at least ``fill`` of their bounding box is not
    cut. Long thin strips of coast then share their context, and large unmarked gaps are skipped.

    Parameters
    ----------
    marked_blocks : ndarray of bool (block rows, block cols)
    x_edges, y_edges : ndarray of int
        Pixel edges (full grid) of the block columns (cols + 1) and rows (rows + 1).
    context : int
        Pixels of context around the marked blocks of a window.
    bounds : (x0, y0, x1, y1)
        Windows are clipped to this box (the tile's read window).
    fill : float
        Least fraction of a bounding box its marked blocks fill for it to be kept uncut.

    Returns
    -------
    list of (window, region)
        Window (x0, y0, x1, y1) to run the detector on, and region (x0, y0, x1, y1): the pixels
        whose detections the window keeps. The regions are disjoint and hold every marked block.
    """
    bx0, by0, bx1, by1 = bounds
    x_edges = np.asarray(x_edges, np.int64)
    y_edges = np.asarray(y_edges, np.int64)

    def cost(r0: np.ndarray, r1: np.ndarray, c0: np.ndarray, c1: np.ndarray) -> np.ndarray:
        x0 = np.maximum(x_edges[c0] - context, bx0)
        x1 = np.minimum(x_edges[c1] + context, bx1)
        y0 = np.maximum(y_edges[r0] - context, by0)
        y1 = np.minimum(y_edges[r1] + context, by1)
        return _window_cost((x1 - x0).astype(np.float64), (y1 - y0).astype(np.float64))

    out: list[tuple[tuple[int, int, int, int], tuple[int, int, int, int]]] = []

    def solve(r0: int, r1: int, c0: int, c1: int) -> list[tuple[int, int, int, int]]:
        sub = marked_blocks[r0:r1, c0:c1]
        rows_any, cols_any = sub.any(axis=1), sub.any(axis=0)
        if not rows_any.any():
            return []
        r0, r1 = r0 + int(np.argmax(rows_any)), r1 - int(np.argmax(rows_any[::-1]))
        c0, c1 = c0 + int(np.argmax(cols_any)), c1 - int(np.argmax(cols_any[::-1]))
        sub = marked_blocks[r0:r1, c0:c1]
        whole = float(cost(np.array(r0), np.array(r1), np.array(c0), np.array(c1)))
        if sub.mean() >= fill or sub.size == 1:
            return [(r0, r1, c0, c1)]
        cands = []
        for axis in (0, 1):  # 0: cut between columns, 1: between rows
            t = sub if axis == 0 else sub.T
            rows, cols = t.shape
            any_c = t.any(axis=0)
            first = np.where(any_c, np.argmax(t, axis=0), rows)
            last = np.where(any_c, rows - 1 - np.argmax(t[::-1], axis=0), -1)
            idx = np.arange(cols)
            l_c1 = np.maximum.accumulate(np.where(any_c, idx, -1))[:-1] + 1
            l_r0 = np.minimum.accumulate(first)[:-1]
            l_r1 = np.maximum.accumulate(last)[:-1] + 1
            r_c0 = np.minimum.accumulate(np.where(any_c, idx, cols)[::-1])[::-1][1:]
            r_r0 = np.minimum.accumulate(first[::-1])[::-1][1:]
            r_r1 = np.maximum.accumulate(last[::-1])[::-1][1:] + 1
            if axis == 0:
                left = cost(r0 + l_r0, r0 + l_r1, np.full_like(l_c1, c0), c0 + l_c1)
                right = cost(r0 + r_r0, r0 + r_r1, c0 + r_c0, np.full_like(r_c0, c1))
            else:
                left = cost(np.full_like(l_c1, r0), r0 + l_c1, c0 + l_r0, c0 + l_r1)
                right = cost(r0 + r_c0, np.full_like(r_c0, r1), c0 + r_r0, c0 + r_r1)
            total = left + right
            if total.size:
                k = int(np.argmin(total))
                cands.append((float(total[k]), axis, k + 1))
        if not cands:
            return [(r0, r1, c0, c1)]
        _, axis, at = min(cands)
        if axis == 0:
            parts = solve(r0, r1, c0, c0 + at) + solve(r0, r1, c0 + at, c1)
        else:
            parts = solve(r0, r0 + at, c0, c1) + solve(r0 + at, r1, c0, c1)
        split = sum(float(cost(np.array(a), np.array(b), np.array(c), np.array(d))) for a, b, c, d in parts)
        return parts if split < whole else [(r0, r1, c0, c1)]

    for r0, r1, c0, c1 in solve(0, marked_blocks.shape[0], 0, marked_blocks.shape[1]):
        region = (int(x_edges[c0]), int(y_edges[r0]), int(x_edges[c1]), int(y_edges[r1]))
        window = (max(region[0] - context, bx0), max(region[1] - context, by0),
                  min(region[2] + context, bx1), min(region[3] + context, by1))
        out.append((window, region))
    return out


def crop_scene(scene: Scene, box: tuple[int, int, int, int]) -> Scene:
    """The part of a scene inside a pixel box (x0, y0, x1, y1) of its grid (views, not copies)."""
    x0, y0, x1, y1 = box
    sl = (slice(y0, y1), slice(x0, x1))
    return replace(scene, bands={k: v[sl] for k, v in scene.bands.items()}, valid=scene.valid[sl],
                   transform=scene.transform * Affine.translation(x0, y0))


def _shift_detection(d: Detection, ox: float, oy: float) -> Detection:
    x0, y0, x1, y1 = d.box
    c = None if d.centroid is None else (d.centroid[0] + ox, d.centroid[1] + oy)
    return replace(d, box=(x0 + ox, y0 + oy, x1 + ox, y1 + oy), centroid=c)
