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
object, with the scene-wide input levels of :func:`vessel_levels`.

Pixel coordinates follow rasterio: x = column, y = row, pixel (0, 0) spans [0, 1) x [0, 1).
"""

from __future__ import annotations

import os
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from contextlib import ExitStack, contextmanager, nullcontext
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import rasterio
import rasterio.windows
from affine import Affine
from rasterio.errors import RasterioError
from rasterio.windows import Window

from . import __version__
from .coregister import Registration, coregister, warp
from .detect.base import Detection, Detections, sorted_detections
from .errors import CoregistrationError, EmptySceneError, ImgdiffError, NoOverlapError
from .grid import AlignedPair, Grid, align
from .io.read import SCENE_FRAME, BBox, bbox_window, find_band_sources, georeferencing, open_raster, read_scene
from .io.write import GTIFF_OPTIONS, check_outputs, write_json, write_outputs, write_text
from .radiometry import drop_small_regions
from .scene import Scene
from .zones import Zones, assign_zones, placed

#: Default tile core size in pixels (a multiple of the 256 px output block size).
TILE_SIZE = 2048
#: Tile core size of the change maps: the learned (``mlp``) method's ~40 feature planes per pixel
#: would need about 1 GB per 2048 px tile, and with 2048 px tiles even CVA peaks at 2.8 GB on a full
#: tile (tiles in flight, warps); 1024 px tiles keep every method near 1.7 GB.
MLP_TILE_SIZE = 1024
#: Default overlap for change maps, in pixels (covers the warp of a shift <= 5 px and the cubic kernel).
CHANGE_OVERLAP = 32
#: Default overlap for detection, in pixels (larger than the largest vessel, 400 m = 40 px, plus context).
DETECT_OVERLAP = 128
#: Scenes with more pixels than this are compared tile by tile by the CLI.
TILED_ABOVE_PX = 4096 * 4096
#: Resampling kernel of the shift removal: OpenCV's Keys cubic (multi-threaded, residual ~0.01 px)
#: rather than the slower spline of the whole-scene path.
WARP_KERNEL = "cubic"
#: Radiometric statistics of a large raster come from a RADIOMETRY_GRID x RADIOMETRY_GRID grid of
#: windows of RADIOMETRY_CHIP pixels: a near-uniform spatial sample.
RADIOMETRY_GRID = 8
RADIOMETRY_CHIP = 128
#: GDAL block cache while tiles are processed. The strip readers decode each block once and keep
#: what they need themselves; GDAL's default cache (5 % of the RAM) would only hold decoded blocks
#: and written blocks of the outputs in resident memory.
GDAL_CACHE_BYTES = 64 << 20
#: Bins of the magnitude histogram used for the global Otsu threshold.
HIST_BINS = 1 << 16

T = TypeVar("T")
R = TypeVar("R")


@dataclass(frozen=True)
class Tile:
    """One tile of a tiling, in pixels of the full grid (x = column, y = row).

    Attributes
    ----------
    row, col : int
        Tile index (row of tiles, column of tiles).
    read : (x0, y0, x1, y1)
        Pixel-edge box of the read window: the core grown by the overlap, clipped to the grid.
    core : (x0, y0, x1, y1)
        Pixel-edge box of the core; the cores of a tiling partition the grid.
    """

    row: int
    col: int
    read: tuple[int, int, int, int]
    core: tuple[int, int, int, int]

    @property
    def window(self) -> Window:
        """The read window as a rasterio ``Window`` (col_off, row_off, width, height)."""
        x0, y0, x1, y1 = self.read
        return Window(x0, y0, x1 - x0, y1 - y0)

    @property
    def core_window(self) -> Window:
        """The core as a rasterio ``Window``."""
        x0, y0, x1, y1 = self.core
        return Window(x0, y0, x1 - x0, y1 - y0)

    @property
    def core_slices(self) -> tuple[slice, slice]:
        """(rows, columns) slices of the core inside an array of the read window."""
        rx0, ry0 = self.read[0], self.read[1]
        x0, y0, x1, y1 = self.core
        return slice(y0 - ry0, y1 - ry0), slice(x0 - rx0, x1 - rx0)

    def holds(self, x: float, y: float) -> bool:
        """Whether the point (x, y), in pixels of the full grid, lies in the core (half-open box)."""
        x0, y0, x1, y1 = self.core
        return x0 <= x < x1 and y0 <= y < y1


def tile_grid(shape: tuple[int, int], tile_size: int = TILE_SIZE, overlap: int = 0) -> list[Tile]:
    """Cut a grid of ``shape`` (rows, columns) into tiles.

    Parameters
    ----------
    shape : (rows, columns)
        Size of the grid in pixels.
    tile_size : int
        Core size in pixels (the last row/column of tiles may be smaller).
    overlap : int
        Pixels added on every side of a core to form its read window (clipped to the grid).

    Returns
    -------
    list of Tile
        In row-major order; their cores partition the grid.
    """
    if tile_size < 1 or overlap < 0:
        raise ValueError(f"tile_size must be >= 1 and overlap >= 0 (got {tile_size}, {overlap})")
    h, w = shape
    tiles = []
    for i, y0 in enumerate(range(0, h, tile_size)):
        for j, x0 in enumerate(range(0, w, tile_size)):
            x1, y1 = min(w, x0 + tile_size), min(h, y0 + tile_size)
            read = (max(0, x0 - overlap), max(0, y0 - overlap), min(w, x1 + overlap), min(h, y1 + overlap))
            tiles.append(Tile(i, j, read, (x0, y0, x1, y1)))
    return tiles


# --------------------------------------------------------------------------- parallel map
def map_bounded(fn: Callable[[T], R], items: Iterable[T], workers: int, *, in_flight: int | None = None) -> Iterator[R]:
    """Apply ``fn`` to ``items`` on ``workers`` threads, yielding results in completion order.

    At most ``in_flight`` (default ``2 * workers``) calls run or wait at once, which bounds
    memory when each result is large. With ``workers <= 1`` everything runs in this thread.
    Numpy, OpenCV and GDAL release the GIL in their heavy loops, so threads use the cores.
    """
    if workers <= 1:
        for it in items:
            yield fn(it)
        return
    limit = in_flight or 2 * workers
    it = iter(items)
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="imgdiff-tile") as pool:
        pending: set[Future] = set()
        try:
            for item in it:
                pending.add(pool.submit(fn, item))
                if len(pending) >= limit:
                    done, pending = wait(pending, return_when=FIRST_COMPLETED)
                    for f in done:
                        yield f.result()
            while pending:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for f in done:
                    yield f.result()
        finally:
            for f in pending:
                f.cancel()


@contextmanager
def one_thread_per_worker(workers: int) -> Iterator[None]:
    """With ``workers`` > 1 threads doing the work, keep OpenCV and BLAS to one thread each.

    Each tile thread then uses one core; letting every call also start its own thread pool
    would put 2 x 2 threads on 2 cores. The previous settings are restored on exit.
    """
    if workers <= 1:
        yield
        return
    import cv2
    from threadpoolctl import threadpool_limits

    before = cv2.getNumThreads()
    cv2.setNumThreads(1)
    try:
        with threadpool_limits(1):
            yield
    finally:
        cv2.setNumThreads(before)


# --------------------------------------------------------------------------- grids of files
def source_grid(path: str | Path, bands: Sequence[str] | None = None) -> Grid:
    """The grid a scene would be read on (that of its finest band), without reading pixels."""
    sources = find_band_sources(path, bands)
    if bands is not None:
        wanted = set(bands)
        sources = [s for s in sources if s.name in wanted] or sources
    best = None
    for s in sources:
        with open_raster(s.path) as ds:
            g = Grid(*georeferencing(ds, s.name), ds.width, ds.height)
        if best is None or abs(g.transform.a * g.transform.e) < abs(best.transform.a * best.transform.e):
            best = g
    assert best is not None  # find_band_sources raises when nothing is found
    return best


def work_grid(path: str | Path, bands: Sequence[str] | None = None, bbox: BBox | None = None) -> Grid:
    """The grid of a scene, cropped to a lon/lat ``bbox`` the way :func:`read_scene` crops it."""
    g = source_grid(path, bands)
    if bbox is None:
        return g
    win = bbox_window(bbox, None, g.crs, g.transform, g.shape, str(path))
    return Grid(g.crs, rasterio.windows.transform(win, g.transform), int(win.width), int(win.height))


def window_bounds(grid: Grid, box: tuple[int, int, int, int]) -> BBox:
    """Map bounds (minx, miny, maxx, maxy) in the grid CRS of a pixel-edge box of the grid."""
    x0, y0, x1, y1 = box
    xs, ys = zip(*(grid.transform * (x, y) for x in (x0, x1) for y in (y0, y1)))
    return (min(xs), min(ys), max(xs), max(ys))


def read_window(path: str | Path, grid: Grid, box: tuple[int, int, int, int],
                bands: Sequence[str] | None = None) -> Scene | None:
    """Read the part of a scene that covers a pixel box of ``grid``, on that box's grid.

    Returns None when the window holds no valid pixel. A scene on another grid (CRS,
    resolution or offset) is reprojected onto the box's grid.
    """
    x0, y0, x1, y1 = box
    sub = Grid(grid.crs, grid.transform * Affine.translation(x0, y0), x1 - x0, y1 - y0)
    try:
        scene = read_scene(path, bands=bands, bbox=window_bounds(grid, box), bbox_crs=grid.crs or SCENE_FRAME)
    except (EmptySceneError, NoOverlapError):
        return None
    same = (scene.crs == sub.crs and scene.shape == sub.shape
            and scene.transform.almost_equals(sub.transform, precision=1e-3 * abs(sub.transform.a)))
    if same:
        scene = replace(scene, transform=sub.transform)  # float noise of the bbox round trip only
    else:
        from .grid import reproject_scene

        scene = reproject_scene(scene, sub)
        if not scene.valid.any():
            return None
    return scene


class StripReader:
    """Reads the tiles of a scene in row-major order, decoding every block of its files once.

    Reading tile windows one by one decodes the compressed blocks on tile borders several
    times (a 1088 px window of 512 px blocks decodes 2048 px per axis: 3.5x the pixels). This
    reader keeps a band's rows from the first row the current tile row needs to the last
    block row decoded, and extends them block row by block row, so each block is decoded
    once. Tiles must come in row-major order (:func:`tile_grid` order); it is used by one
    thread (GDAL handles are not thread-safe).

    With ``sequential=False`` windows may come in any order (sample windows): each is read
    directly from the open files.

    The result of :meth:`read` equals :func:`read_window` (same reflectance conversion, same
    bilinear resampling of coarser bands, same source windows); tiles the reader cannot serve
    that way (a scene on another grid, a window outside its raster) go to :func:`read_window`.
    """

    def __init__(self, path: str | Path, grid: Grid, bands: Sequence[str] | None = None, *,
                 sequential: bool = True) -> None:
        from .io.read import Radiometry, find_band_sources

        self.path, self.grid, self.bands = path, grid, bands
        self._datasets: list[Any] = []
        self._strips: dict[str, _BandStrip] = {}
        self.offset: tuple[int, int] | None = None  # (col, row) of the grid's pixel (0, 0) in the files' grid
        sources = find_band_sources(path, bands)
        if bands is not None:
            by_name = {s.name: s for s in sources}
            if any(b not in by_name for b in bands):
                return  # read_window raises the proper error
            sources = [by_name[b] for b in bands]
        probe = _probe(path, grid, bands)  # radiometry, date: exactly as read_scene decides them
        if probe is None:
            return
        self._date, self._meta = probe.date, dict(probe.meta)
        rad = self._meta.get("radiometry", {})
        try:
            for s in sources:
                ds = open_raster(s.path)
                self._datasets.append(ds)
                r = rad[s.name]
                self._strips[s.name] = _BandStrip(s, ds, Radiometry(r["scale"], r["offset"], r["source"]), sequential)
        except (OSError, KeyError, RasterioError, ImgdiffError):
            self.close()
            return
        finest = min(self._strips.values(), key=lambda b: abs(b.transform.a * b.transform.e))
        rel = ~finest.transform * grid.transform  # grid pixel -> file pixel
        col, row = rel.c, rel.f
        if (finest.crs != grid.crs or abs(rel.a - 1) > 1e-9 or abs(rel.e - 1) > 1e-9 or abs(rel.b) > 1e-9
                or abs(rel.d) > 1e-9 or abs(col - round(col)) > 1e-6 or abs(row - round(row)) > 1e-6):
            self.close()
            return
        self.offset = (int(round(col)), int(round(row)))
        self._finest = finest
        for b in self._strips.values():
            b.same_grid = b.transform == finest.transform and b.ds.shape == finest.ds.shape

    def blocks(self) -> tuple[int, int, int, int] | None:
        """The finest band file's internal blocks in grid pixels: (width, height, column offset,
        row offset) as :func:`grid_boxes` takes them; None when the reader reads via
        :func:`read_window` (another grid)."""
        if self.offset is None:
            return None
        bh, bw = self._finest.ds.block_shapes[self._finest.index - 1]
        return int(bw), int(bh), self.offset[0], self.offset[1]

    def close(self) -> None:
        for ds in self._datasets:
            ds.close()
        self._datasets, self._strips, self.offset = [], {}, None

    def __enter__(self) -> StripReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def read(self, box: tuple[int, int, int, int]) -> Scene | None:
        """The scene on a pixel box of the grid (as :func:`read_window`); None if it holds no valid pixel."""
        if self.offset is None:
            return read_window(self.path, self.grid, box, self.bands)
        from .io.read import to_reflectance, zero_fill

        x0, y0, x1, y1 = box
        ox, oy = self.offset
        fh, fw = self._finest.ds.shape
        c0, r0, c1, r1 = x0 + ox, y0 + oy, x1 + ox, y1 + oy
        if c0 < 0 or r0 < 0 or c1 > fw or r1 > fh:
            return read_window(self.path, self.grid, box, self.bands)
        transform = self._finest.transform * Affine.translation(c0, r0)
        arrays = {}
        zero = None  # DN 0 in every band on the finest grid: fill (as read_scene decides it)
        for name, b in self._strips.items():
            if b.same_grid:
                dn = b.dn(r0, r1, c0, c1)
                arrays[name] = to_reflectance(dn, b.radiometry, b.nodata, zeros="keep")
                zero = zero_fill(dn, zero)
            else:
                arrays[name] = b.resampled(self._finest.crs, transform, (r1 - r0, c1 - c0))
        valid = np.logical_and.reduce([np.isfinite(a) for a in arrays.values()])
        if zero is not None:
            valid &= ~zero
        if not valid.any():
            return None
        for a in arrays.values():
            a[~valid] = np.nan
        meta = dict(self._meta, window={"col_off": c0, "row_off": r0, "width": c1 - c0, "height": r1 - r0})
        sub = self.grid.transform * Affine.translation(x0, y0)
        return Scene(bands=arrays, crs=self.grid.crs, transform=sub, valid=valid, date=self._date, meta=meta)


def _probe(path: str | Path, grid: Grid, bands: Sequence[str] | None) -> Scene | None:
    """A small window of the scene with valid pixels (its metadata: radiometry, date), or None.

    Tries 16 x 16 px windows at the centre, then on a 5 x 5 grid (a tile half outside the swath).
    """
    h = 8
    centres = [(grid.width // 2, grid.height // 2)] + [
        (int(fx * grid.width), int(fy * grid.height)) for fy in (0.1, 0.3, 0.5, 0.7, 0.9) for fx in (0.1, 0.3, 0.5, 0.7, 0.9)]
    for cx, cy in centres:
        box = (max(0, cx - h), max(0, cy - h), min(grid.width, cx + h), min(grid.height, cy + h))
        if box[2] > box[0] and box[3] > box[1]:
            scene = read_window(path, grid, box, bands)
            if scene is not None:
                return scene
    return None


class _BandStrip:
    """Rows ``[r0, r0 + len(buf))`` of one band file (digital numbers), extended block row by block row."""

    def __init__(self, source: Any, ds: Any, radiometry: Any, sequential: bool = True) -> None:
        self.source, self.ds, self.radiometry, self.sequential = source, ds, radiometry, sequential
        self.crs, self.transform = georeferencing(ds, source.name)
        self.index = source.index
        self.nodata = ds.nodata
        self.block_rows = max(1, int(ds.block_shapes[self.index - 1][0]))
        self.r0 = 0
        self.buf = np.empty((0, ds.width), ds.dtypes[self.index - 1])
        self.same_grid = True

    def rows(self, r0: int, r1: int) -> np.ndarray:
        """Rows [r0, r1) of the band (whole width); rows before ``r0`` are forgotten."""
        r1 = min(r1, self.ds.height)
        end = self.r0 + len(self.buf)
        if r0 < self.r0 or r0 > end:  # out of order, or a jump: restart at r0's block row
            self.r0 = end = r0 - r0 % self.block_rows
            self.buf = self.buf[:0]
        elif r0 > self.r0:
            self.buf = self.buf[r0 - self.r0:]
            self.r0 = r0
        if r1 > end:
            stop = min(self.ds.height, -(-r1 // self.block_rows) * self.block_rows)  # whole block rows
            new = self.ds.read(self.index, window=Window(0, end, self.ds.width, stop - end))
            self.buf = np.concatenate([self.buf, new]) if len(self.buf) else new
        return self.buf[r0 - self.r0:r1 - self.r0]

    def dn(self, r0: int, r1: int, c0: int, c1: int) -> np.ndarray:
        """Digital numbers of rows [r0, r1) and columns [c0, c1): from the strip, or read directly
        (random windows: the file stays open, so GDAL's block cache serves blocks read before)."""
        if self.sequential:
            return self.rows(r0, r1)[:, c0:c1]
        return self.ds.read(self.index, window=Window(c0, r0, c1 - c0, r1 - r0))

    def resampled(self, crs: Any, dst_transform: Affine, dst_shape: tuple[int, int]) -> np.ndarray:
        """Bilinear resampling onto a destination grid, as :func:`imgdiff.io.read.read_scene` does it."""
        import math

        from rasterio.crs import CRS
        from rasterio.enums import Resampling
        from rasterio.transform import array_bounds
        from rasterio.warp import reproject

        from .io.read import to_reflectance

        s_tr, (sh, sw) = self.transform, self.ds.shape
        west, south, east, north = array_bounds(dst_shape[0], dst_shape[1], dst_transform)
        inv = ~s_tr
        xs, ys = zip(*(inv * (x, y) for x in (west, east) for y in (south, north)))
        c0, c1 = max(0, math.floor(min(xs)) - 2), min(sw, math.ceil(max(xs)) + 2)
        r0, r1 = max(0, math.floor(min(ys)) - 2), min(sh, math.ceil(max(ys)) + 2)
        dst = np.full(dst_shape, np.nan, np.float32)
        if c1 <= c0 or r1 <= r0:
            return dst
        src = to_reflectance(self.dn(r0, r1, c0, c1), self.radiometry, self.nodata, zeros="keep")
        fast = _upsample(src, s_tr * Affine.translation(c0, r0), dst_transform, dst_shape)
        if fast is not None:
            return fast
        local = CRS.from_epsg(3857)
        reproject(
            src, dst, src_transform=s_tr * Affine.translation(c0, r0), src_crs=self.crs or crs or local,
            dst_transform=dst_transform, dst_crs=crs or self.crs or local, src_nodata=np.nan, dst_nodata=np.nan,
            resampling=Resampling.bilinear,
        )
        return dst


def _upsample(src: np.ndarray, src_transform: Affine, dst_transform: Affine,
              dst_shape: tuple[int, int]) -> np.ndarray | None:
    """Bilinear upsampling by a whole factor between aligned north-up grids (OpenCV), or None.

    Gives GDAL's bilinear ``reproject`` result (pixel-centre convention, edge pixels
    replicated) to float rounding, about 20 times faster. None (use GDAL) when the grids
    are not aligned north-up grids with a whole ratio of pixel sizes, or when ``src``
    holds NaN (GDAL renormalises the weights of the valid neighbours there).
    """
    s, d = src_transform, dst_transform
    if s.b or s.d or d.b or d.e == 0 or d.d or d.a == 0:
        return None
    kx, ky = s.a / d.a, s.e / d.e
    k = int(round(kx))
    if k < 1 or abs(kx - k) > 1e-9 or abs(ky - k) > 1e-9:
        return None
    ox, oy = (d.c - s.c) / d.a, (d.f - s.f) / d.e  # dst pixel (0, 0) in dst pixels from the src origin
    if abs(ox - round(ox)) > 1e-6 or abs(oy - round(oy)) > 1e-6 or ox < 0 or oy < 0:
        return None
    ox, oy = int(round(ox)), int(round(oy))
    h, w = dst_shape
    sh, sw = src.shape
    if -(-(ox + w) // k) > sw or -(-(oy + h) // k) > sh or not np.isfinite(src).all():
        return None
    import cv2

    c0, r0 = max(0, ox // k - 1), max(0, oy // k - 1)
    c1, r1 = min(sw, -(-(ox + w) // k) + 1), min(sh, -(-(oy + h) // k) + 1)
    up = cv2.resize(np.ascontiguousarray(src[r0:r1, c0:c1]), None, fx=k, fy=k, interpolation=cv2.INTER_LINEAR)
    return np.ascontiguousarray(up[oy - r0 * k:oy - r0 * k + h, ox - c0 * k:ox - c0 * k + w], dtype=np.float32)


# --------------------------------------------------------------------------- detection
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
        (with the scene-wide ``levels`` of :func:`vessel_levels` bound, so that every window
        is normalised alike).
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
    (:func:`imgdiff.detect.vessels.water_mask`: NDWI > 0 in water bodies of at least 2000 px),
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

    from .detect.vessels import water_mask

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
        has = np.isfinite(vc).any(axis=2)
        med = np.full((hc, wc), np.nan, np.float32)
        med[has] = np.nanmedian(vc[has], axis=1)  # only cells holding water: no all-NaN warning
        peak = np.fmax.reduce(cells(np.where(scene.valid, scene.bands[name], np.nan).astype(np.float32), np.nan),
                              axis=2)  # NaN-ignoring maximum; NaN where no pixel is valid
        # background: the median water of the 3 x 3 cells (a ship filling its own cell does not hide)
        bg = ndi.minimum_filter(np.where(np.isfinite(med), med, np.inf), size=3, mode="nearest")
        with np.errstate(invalid="ignore"):
            bright_c |= ~(peak <= brighter * bg)  # NaN peak (no valid pixel) is caught by valid_c
    marked = valid_c & near_water & (near_land | bright_c)
    return np.repeat(np.repeat(marked, cell, axis=0), cell, axis=1)[:h, :w]


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
    from rasterio.enums import Resampling

    from .detect.vessels import MODEL_BANDS, band_levels
    from .io.read import Radiometry, to_reflectance

    grid = work_grid(path, bands, bbox)
    names = [b for b in MODEL_BANDS if bands is None or b in bands]
    sources = {s.name: s for s in find_band_sources(path, bands) if s.name in names}
    probe = _probe(path, grid, list(sources) or None)
    rad = probe.meta.get("radiometry", {}) if probe is not None else {}
    bounds = window_bounds(grid, (0, 0, grid.width, grid.height))
    shape = (max(1, grid.height // step), max(1, grid.width // step))

    def levels(name: str) -> tuple[float, float] | None:
        s, r = sources[name], rad[name]
        with open_raster(s.path) as ds:  # one handle per thread
            crs, transform = georeferencing(ds, name)
            if crs != grid.crs:
                return None
            win = rasterio.windows.from_bounds(*bounds, transform=transform).round_offsets().round_lengths()
            win = win.intersection(Window(0, 0, ds.width, ds.height))
            dn = ds.read(s.index, window=win, out_shape=shape, resampling=Resampling.nearest)
            return band_levels(to_reflectance(dn, Radiometry(r["scale"], r["offset"], r["source"]), ds.nodata))

    names = [n for n in sources if n in rad]
    # the bands are read (every block decoded) on two threads: GDAL releases the GIL while decoding
    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="imgdiff-levels") as pool:
        found = dict(zip(names, pool.map(levels, names)))
    return {n: lv for n, lv in found.items() if lv is not None}


def _shift_detection(d: Detection, ox: float, oy: float) -> Detection:
    x0, y0, x1, y1 = d.box
    c = None if d.centroid is None else (d.centroid[0] + ox, d.centroid[1] + oy)
    return replace(d, box=(x0 + ox, y0 + oy, x1 + ox, y1 + oy), centroid=c)


# --------------------------------------------------------------------------- change
@dataclass(frozen=True)
class SampleEstimate:
    """What a tiled comparison estimates once, on sample windows, before the tile passes.

    Attributes
    ----------
    registration : Registration
        Shift of the after scene (median over reliable windows), pixels and metres.
    gain, offset : tuple of float
        Relative radiometric normalisation of the after scene, per band in band order:
        ``after_normalised = gain * after + offset`` (:func:`imgdiff.radiometry.normalise`).
    magnitude_max : float
        Upper edge of the magnitude histogram (units of the change method, :func:`magnitude_bound`).
    chips : int
        Sample windows that held valid pixels of both scenes; ``chips_registered`` of them
        gave a shift.
    chips_registered : int
    log_ratio_eps : tuple of float
        Per-band damping of the log ratios of the bands the classical methods use
        (:func:`imgdiff.change.log_ratio_damping` of the before bands' medians).
    irmad_map : (wa, wb, c0), optional
        IR-MAD fitted on the samples (:attr:`imgdiff.change.IRMAD.linear_map`), applied tile by
        tile by :func:`imgdiff.change.mad_variates`.
    diff_scales : tuple of float
        Per band (band order), the robust spread of the normalised after-minus-before
        reflectance over the samples' clear pixels (:func:`imgdiff.change.difference_scales`):
        the ``mlp`` features of every tile are scaled by it, as a whole-scene comparison
        scales them by the scene's own spread.
    fill : (tuple of float, tuple of float)
        Per band, the medians of the before and the normalised after reflectance over the
        samples' clear pixels: the values the ``mlp`` features of every tile give to pixels
        they cannot use (a whole-scene comparison takes the scene's medians).
    """

    registration: Registration
    gain: tuple[float, ...]
    offset: tuple[float, ...]
    magnitude_max: float
    chips: int
    chips_registered: int
    log_ratio_eps: tuple[float, ...] = ()
    irmad_map: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
    diff_scales: tuple[float, ...] = ()
    fill: tuple[tuple[float, ...], tuple[float, ...]] | None = None

    def apply(self, after: np.ndarray, *, copy: bool = True) -> np.ndarray:
        """Normalise an after stack (bands, rows, cols) to the before scene (in place with
        ``copy=False`` when ``after`` is float32)."""
        out = np.array(after, np.float32) if copy else np.asarray(after, np.float32)
        out *= np.asarray(self.gain, np.float32)[:, None, None]
        out += np.asarray(self.offset, np.float32)[:, None, None]
        return out


def sample_boxes(shape: tuple[int, int], chip: int = 512, *,
                 blocks: tuple[int, int, int, int] | None = None) -> list[tuple[int, int, int, int]]:
    """Five chip boxes (x0, y0, x1, y1): the centre of the grid and the centres of its quadrants
    (each moved into one source block when ``blocks`` is given, as :func:`grid_boxes` does)."""
    h, w = shape
    cw, ch = min(chip, w), min(chip, h)
    boxes = []
    for fx, fy in ((0.5, 0.5), (0.25, 0.25), (0.75, 0.25), (0.25, 0.75), (0.75, 0.75)):
        x0 = int(np.clip(round(fx * w - cw / 2), 0, w - cw))
        y0 = int(np.clip(round(fy * h - ch / 2), 0, h - ch))
        if blocks is not None:
            x0, y0 = _snap_to_block(x0, cw, blocks[0], blocks[2], w), _snap_to_block(y0, ch, blocks[1], blocks[3], h)
        boxes.append((x0, y0, x0 + cw, y0 + ch))
    return list(dict.fromkeys(boxes))


def _snap_to_block(v0: int, size: int, block: int, offset: int, limit: int) -> int:
    """Start of a ``size``-pixel run moved (by less than ``size``) inside the block that holds its
    centre; blocks start at ``k * block - offset``. Unchanged when ``size`` exceeds ``block``."""
    if size > block:
        return v0
    start = ((v0 + size // 2 + offset) // block) * block - offset
    return int(np.clip(np.clip(v0, start, start + block - size), 0, limit - size))


def grid_boxes(shape: tuple[int, int], chip: int, per_side: int, *,
               blocks: tuple[int, int, int, int] | None = None) -> list[tuple[int, int, int, int]]:
    """``per_side`` x ``per_side`` chip boxes (x0, y0, x1, y1) centred in equal cells of a grid.

    ``blocks`` = (block width, block height, column offset, row offset), all in grid pixels: the
    source files' internal blocks span ``[k * width - offset, (k + 1) * width - offset)``. Each
    box is then moved (by less than a chip) to lie within the block holding its centre, so that
    reading it decodes one block per band instead of up to four.
    """
    h, w = shape
    cw, ch = min(chip, w), min(chip, h)
    boxes = []
    for fy in (np.arange(per_side) + 0.5) / per_side:
        for fx in (np.arange(per_side) + 0.5) / per_side:
            x0 = int(np.clip(round(fx * w - cw / 2), 0, w - cw))
            y0 = int(np.clip(round(fy * h - ch / 2), 0, h - ch))
            if blocks is not None:
                x0, y0 = _snap_to_block(x0, cw, blocks[0], blocks[2], w), _snap_to_block(y0, ch, blocks[1], blocks[3], h)
            boxes.append((x0, y0, x0 + cw, y0 + ch))
    return list(dict.fromkeys(boxes))


def _excluded(scene: Scene) -> np.ndarray:
    """Cloud, cloud shadow and saturated pixels (as ``imgdiff.change.scene_change_map`` excludes them)."""
    if not all(n in scene.bands for n in ("B02", "B03", "B04", "B08")):
        return np.zeros(scene.shape, bool)
    from .radiometry import cloud_mask, saturation_mask

    return cloud_mask(scene, shadows=True) | saturation_mask(scene)  # = date_masks(scene).excluded, no water mask


def _magnitude(method: str, before: np.ndarray, after: np.ndarray, valid: np.ndarray, names: Sequence[str],
               est: SampleEstimate, region: tuple[slice, slice] | None = None) -> np.ndarray:
    """Per-pixel change magnitude of a normalised pair (NaN outside ``valid``), by the functions of
    :mod:`imgdiff.change` with the statistics ``est`` measured once on the whole raster; of the
    ``region`` (row and column slices) only, when given (``mlp``: its features still see the whole
    arrays)."""
    from . import change

    if method == "mlp":
        model = change.pick_model(names)
        assert model is not None
        m = change.learned_magnitude(before, after, valid, names, model, diff_scales=est.diff_scales or None,
                                     fill=est.fill, region=region)
        if region is not None:
            valid = valid[region]
    else:
        if region is not None:  # the classical magnitudes are per pixel
            before, after, valid = before[:, region[0], region[1]], after[:, region[0], region[1]], valid[region]
        surface = change.classical_bands(names)  # as change.change_map: no atmospheric bands
        if len(surface) < len(names):
            before, after = before[surface], after[surface]
        if method == "cva-otsu":
            m = change.cva_magnitude(before, after)
        elif method == "logratio-otsu":
            m = change.log_ratio_magnitude(before, after, np.asarray(est.log_ratio_eps, np.float32))
        elif method == "irmad":
            assert est.irmad_map is not None
            m = change.mad_variates(before, after, est.irmad_map)[1]
        else:
            raise ValueError(f"tiled comparison supports the methods {', '.join(TILED_METHODS)}, not {method!r}")
    m = m.astype(np.float32, copy=False)
    m[~(valid & np.isfinite(m))] = np.nan
    return m


#: Change methods the tiled comparison supports: per-pixel magnitudes with a threshold that is
#: either fixed (``mlp``) or Otsu's over the whole raster (two passes, exact across tiles).
TILED_METHODS = ("mlp", "irmad", "cva-otsu", "logratio-otsu")


#: Compression of the tiled comparison's ``change.tif``: ZSTD level 1, each band in its own blocks,
#: no predictor. Whole-tile outputs are written block by block while the tiles are computed, and
#: their compression is CPU taken from the comparison: per 2048 x 2048 px of the three float32
#: bands, DEFLATE level 1 pixel-interleaved took 150 ms (18.0 MB), ZSTD 1 pixel-interleaved 110 ms
#: (15.9 MB), ZSTD 1 band-interleaved 31 ms (15.6 MB): the 0/1 mask bands compress to almost
#: nothing on their own and the noise-like magnitude is not mixed into them. The floating-point
#: predictor made the magnitude's blocks larger and cost 40 % more time. GDAL (so rasterio's wheels,
#: QGIS) reads ZSTD GeoTIFFs since version 2.3.
TILED_CHANGE_COMPRESSION: dict[str, Any] = {"compress": "zstd", "zstd_level": 1, "interleave": "band", "predictor": 1}


def pick_tiled_method(method: str | None, names: Sequence[str]) -> str:
    """The method a tiled comparison uses: the given one, else the library default, else ``cva-otsu``.

    ``mlp`` needs a shipped model fitting the bands; without one ``irmad`` is used (as in
    :func:`imgdiff.change.change_map`).
    """
    from .change import DEFAULT_METHOD, pick_model

    m = method or DEFAULT_METHOD
    if m not in TILED_METHODS:
        if method is not None:
            raise ValueError(f"tiled comparison supports the methods {', '.join(TILED_METHODS)}, not {method!r}")
        m = "cva-otsu"
    if m == "mlp" and pick_model(names) is None:
        m = "irmad"
    return m


def change_passes(method: str) -> int:
    """Passes over the tiles a tiled comparison makes: 1 for a fixed threshold (``mlp``), else 2
    (the histogram threshold needs every tile's magnitude first)."""
    return 1 if method == "mlp" else 2


def _read_pair(pool: ThreadPoolExecutor, rb: StripReader, ra: StripReader,
               box: tuple[int, int, int, int]) -> tuple[Scene | None, Scene | None]:
    """One window of the before (``rb``, on ``pool``'s thread) and after (``ra``, this thread) scenes."""
    fb = pool.submit(rb.read, box)
    a = ra.read(box)
    return fb.result(), a


def _map_in_order(fn: Callable[[T], R], items: Sequence[T], workers: int) -> list[R]:
    """``[fn(x) for x in items]`` on ``workers`` threads (one OpenCV/BLAS thread each), in input order."""
    indexed = list(enumerate(items))
    with one_thread_per_worker(workers):
        done = list(map_bounded(lambda ix: (ix[0], fn(ix[1])), indexed, workers))
    return [r for _, r in sorted(done, key=lambda d: d[0])]


def estimate_on_samples(
    before: str | Path,
    after: str | Path,
    grid: Grid,
    names: Sequence[str],
    *,
    register: bool = True,
    method: str = "cva-otsu",
    chip: int = 512,
    workers: int = 2,
) -> SampleEstimate:
    """Estimate the shift, the radiometric normalisation and the magnitude range on sample windows.

    The shift is the median of the windows' phase-correlation shifts with reliability
    >= 0.5 (the most reliable window if none reaches it); the normalisation is fitted on
    the windows' common clear pixels after warping. Windows are co-registered and masked
    on ``workers`` threads.

    Raises
    ------
    EmptySceneError
        No window holds valid pixels of both scenes.
    CoregistrationError
        ``register`` and no window could be co-registered.
    """
    from .radiometry import normalise

    shifts, pairs = [], []
    problems = []
    readers = ExitStack()  # the files stay open for all sample windows (blocks shared by windows decoded once)
    rb = readers.enter_context(StripReader(before, grid, names, sequential=False))
    ra = readers.enter_context(StripReader(after, grid, names, sequential=False))
    # the two scenes' windows are decoded on two threads (one file handle each)
    pool = readers.enter_context(ThreadPoolExecutor(max_workers=1, thread_name_prefix="imgdiff-sample"))

    def read_both(box: tuple[int, int, int, int]) -> tuple[Scene | None, Scene | None]:
        return _read_pair(pool, rb, ra, box)

    for box in sample_boxes(grid.shape, chip, blocks=rb.blocks()):
        b, a = read_both(box)
        if b is None or a is None:
            continue
        try:
            pairs.append(align(b, a, grid=Grid.of(b), bands=names))
        except NoOverlapError:
            continue

    def shift_of(pair: AlignedPair) -> Registration | CoregistrationError:
        try:
            return coregister(pair.before, pair.after, mask=pair.overlap)
        except CoregistrationError as e:
            return e

    if register:  # the windows on two threads, results in window order
        for r in _map_in_order(shift_of, pairs, workers):
            if isinstance(r, CoregistrationError):
                problems.append(str(r))
            else:
                shifts.append(r)
    if not pairs:
        raise EmptySceneError(f"{before} / {after}: no sample window holds valid pixels of both scenes")
    if register:
        if not shifts:
            raise CoregistrationError(
                f"no sample window of {after} could be co-registered ({'; '.join(sorted(set(problems)))}); "
                "pass --no-coregister to compare without shift correction"
            )
        good = [r for r in shifts if r.reliability >= 0.5] or [max(shifts, key=lambda r: r.reliability)]
        dx = float(np.median([r.dx for r in good]))
        dy = float(np.median([r.dy for r in good]))
        spread = float(np.hypot(np.std([r.dx for r in good]), np.std([r.dy for r in good])))
        sx, sy = grid.pixel_size_m
        reg = Registration(
            dx=dx, dy=dy, dx_m=dx * sx * np.sign(grid.transform.a), dy_m=dy * sy * np.sign(grid.transform.e),
            uncertainty_px=max(spread, float(np.median([r.uncertainty_px for r in good]))),
            reliability=float(np.median([r.reliability for r in good])),
            method=f"phase-correlation, median of {len(good)} sample windows",
        )
    else:
        reg = Registration(0.0, 0.0, 0.0, 0.0, float("nan"), 0.0, method="none")
    # Radiometry (normalisation, IR-MAD) of a large raster from a grid of small windows
    # (equal weight everywhere), so that the statistics represent the whole raster.
    if grid.width * grid.height > 4 * chip * chip:
        pairs = []
        for box in grid_boxes(grid.shape, RADIOMETRY_CHIP, RADIOMETRY_GRID, blocks=rb.blocks()):
            b, a = read_both(box)
            if b is None or a is None:
                continue
            try:
                pairs.append(align(b, a, grid=Grid.of(b), bands=names))
            except NoOverlapError:
                continue
    readers.close()  # (on the errors raised above the files close with the readers)

    def clear_stacks(pair: AlignedPair) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        moved = warp(pair.after, reg, interpolation=WARP_KERNEL) if register else pair.after
        ok = pair.before.valid & moved.valid & ~_excluded(pair.before) & ~_excluded(moved)
        return pair.before.stack(names), moved.stack(names), ok

    stacks = _map_in_order(clear_stacks, pairs, workers)
    bv = np.concatenate([bs[:, ok] for bs, _, ok in stacks], axis=1)[:, None, :]
    av = np.concatenate([as_[:, ok] for _, as_, ok in stacks], axis=1)[:, None, :]
    if bv.shape[2] == 0:
        raise EmptySceneError(f"{before} / {after}: the sample windows share no clear valid pixel")
    norm = normalise(bv, av, np.ones(bv.shape[1:], bool))
    from .change import classical_bands, difference_scales, irmad, log_ratio_damping

    surface = classical_bands(names)  # the bands of the classical methods, as in imgdiff.change
    med_before = tuple(float(np.median(v)) for v in bv)  # per band, over the samples' clear pixels
    eps = log_ratio_damping([med_before[i] for i in surface])  # as imgdiff.change: from the before date
    est = SampleEstimate(reg, tuple(float(g) for g in norm.gain), tuple(float(o) for o in norm.offset),
                         magnitude_bound(method, len(names)), len(pairs), len(shifts), tuple(float(e) for e in eps))
    if method == "mlp":
        an = est.apply(av)
        est = replace(est, diff_scales=difference_scales(bv, an, np.ones(bv.shape[1:], bool)),
                      fill=(med_before, tuple(float(np.median(v)) for v in an)))
    if method == "irmad":
        keep = np.arange(bv.shape[2])
        if keep.size > 200_000:  # as many pixels as irmad() itself samples
            keep = np.sort(np.random.default_rng(0).choice(keep, 200_000, replace=False))
        fit = irmad(bv[surface][:, :, keep], est.apply(av[:, :, keep])[surface], np.ones((1, keep.size), bool))
        est = replace(est, irmad_map=fit.linear_map)  # applied tile by tile by imgdiff.change.mad_variates
    return est


def magnitude_bound(method: str, n_bands: int) -> float:
    """Largest magnitude a method can give for reflectance in [0, 2]: the range of the histogram.

    CVA: ``2 sqrt(n_bands)``; log-ratio: ``log(2 / 1e-3)``; ``mlp``: 1 (a probability).
    A fixed physical range (not one estimated from samples) keeps the whole tail of the
    distribution in the histogram, so its Otsu threshold matches Otsu's on the raw values.
    """
    if method == "mlp":
        return 1.0
    if method == "irmad":
        return 100.0 * n_bands  # chi-square with n_bands dof (mean n_bands): the tail beyond is clipped
    if method == "logratio-otsu":
        return float(np.log(2.0 / 1e-3))
    return 2.0 * float(np.sqrt(n_bands))


def otsu_threshold(counts: np.ndarray, edges: np.ndarray) -> float:
    """Otsu's threshold of a histogram (``counts`` per bin between ``edges``); +inf if flat."""
    counts = counts.astype(np.float64)
    centres = (edges[:-1] + edges[1:]) / 2
    total = counts.sum()
    if total == 0 or np.count_nonzero(counts) < 2:
        return float("inf")
    w0 = np.cumsum(counts)
    w1 = total - w0
    m0 = np.cumsum(counts * centres)
    mt = m0[-1]
    with np.errstate(divide="ignore", invalid="ignore"):
        between = (mt * w0 - m0 * total) ** 2 / (w0 * w1)
    between[~np.isfinite(between)] = -1
    i = int(np.argmax(between[:-1]))
    return float(centres[i])


def hist_noise_floor(counts: np.ndarray, edges: np.ndarray, k: float = 5.0) -> float:
    """``median + k * 1.4826 * MAD`` of the values of a histogram (:func:`imgdiff.change.noise_floor`)."""
    total = counts.sum()
    if total == 0:
        return float("inf")
    centres = (edges[:-1] + edges[1:]) / 2
    med = centres[int(np.searchsorted(np.cumsum(counts), total / 2))]
    dev = np.abs(centres - med)
    order = np.argsort(dev, kind="stable")
    mad = dev[order][int(np.searchsorted(np.cumsum(counts[order]), total / 2))]
    return float(med + k * 1.4826 * mad)


def _hist_percentile(counts: np.ndarray, edges: np.ndarray, q: float) -> float | None:
    total = counts.sum()
    if total == 0:
        return None
    i = int(np.searchsorted(np.cumsum(counts), q / 100 * total))
    return float((edges[i] + edges[i + 1]) / 2)


@dataclass(frozen=True)
class TiledChange:
    """Summary of a tiled comparison (the rasters themselves are on disk).

    Attributes
    ----------
    grid : Grid
        Grid of the change map.
    estimate : SampleEstimate
        Shift, normalisation and magnitude range estimated on sample windows.
    threshold : float
        Threshold of the change magnitude: the model's (``mlp``) or Otsu's over the whole raster.
    method : str
        Change method used (see :data:`TILED_METHODS`).
    statistics : dict
        The keys of :meth:`imgdiff.compare.CompareResult.statistics`.
    tiles : int
        Number of tiles.
    """

    grid: Grid
    estimate: SampleEstimate
    threshold: float
    method: str
    statistics: dict
    tiles: int
    tile_size: int = TILE_SIZE


def write_change_tiled(
    path: str | Path,
    before: str | Path,
    after: str | Path,
    *,
    bands: Sequence[str] | None = None,
    bbox: BBox | None = None,
    tile_size: int | None = None,
    overlap: int = CHANGE_OVERLAP,
    register: bool = True,
    method: str | None = None,
    min_mapping_unit_m2: float = 400.0,
    workers: int = 2,
    on_tile: Callable[[str, Tile], None] | None = None,
) -> TiledChange:
    """Compare two large scenes window by window and write ``change.tif`` block by block.

    The steps are those of :func:`imgdiff.compare` (global shift, relative radiometric
    normalisation, cloud/shadow/saturation masks, per-pixel change magnitude, threshold,
    minimum mapping unit), organised in bounded memory:

    1. shift and normalisation are estimated once on sample windows (:func:`estimate_on_samples`);
    2. pass 1 reads each tile of both scenes (with overlap), warps and normalises the after
       tile, masks clouds, and writes the magnitude of its core to a temporary file, adding
       it to a global histogram;
    3. the threshold is the model's (``mlp``) or Otsu's threshold of the whole histogram;
    4. pass 2 thresholds each tile's read window of the magnitude, drops regions smaller than
       the mapping unit (8-connected; exact across borders when ``overlap`` >= the unit in
       pixels) and writes magnitude, mask and not-assessed bands of its core.

    With the fixed threshold of ``mlp`` (:func:`change_passes`), pass 1 thresholds the read
    window it has just computed and writes the core at once: no temporary file, no pass 2.
    The mapping-unit test near a core's edge then reads this tile's own magnitude in the
    overlap (computed with ``overlap`` - unit pixels of context instead of the full context).

    Differences from the whole-scene path: the normalisation, and the ``mlp`` features'
    difference scales and fill values, are measured on sample windows (not on the whole
    overlap), and spatial filters of the ``mlp`` features and the cloud-shadow search see
    only the tile's read window.

    Parameters
    ----------
    path : str or Path
        Output GeoTIFF (tiled 256 x 256, deflate, float32, 3 bands as in ``imgdiff compare``).
    before, after : str or Path
        Scenes (band folders, SAFE, multi-band files); the after scene is brought onto the
        before scene's grid.
    bands : sequence of str, optional
        Bands to use; default all bands of the before scene.
    bbox : (west, south, east, north), optional
        Lon/lat window of the before scene; only it is read.
    tile_size, overlap : int
        Tile core size and overlap in pixels.
    register : bool
        Estimate and remove the global shift of the after scene.
    method : str, optional
        One of :data:`TILED_METHODS`; default the library's default method (``mlp``, or
        ``cva-otsu`` when no shipped model fits the bands).
    min_mapping_unit_m2 : float
        Smallest changed region kept, in square metres.
    workers : int
        Threads working on tiles at once (peak memory grows with it).
    on_tile : callable, optional
        ``on_tile(pass_name, tile)`` after each tile of each pass (progress bars).

    Returns
    -------
    TiledChange
    """
    grid = work_grid(before, bands, bbox)
    sx, sy = grid.pixel_size_m
    mmu_px = max(1, int(np.ceil(min_mapping_unit_m2 / (sx * sy) - 1e-9)))
    if overlap < max(mmu_px, 8):
        raise ValueError(f"overlap must be at least {max(mmu_px, 8)} px (got {overlap})")
    names = list(bands) if bands else [s.name for s in find_band_sources(before)]
    method = pick_tiled_method(method, names)
    est = estimate_on_samples(before, after, grid, names, register=register, method=method, workers=workers)
    tile_size = tile_size or MLP_TILE_SIZE
    tiles = tile_grid(grid.shape, tile_size, overlap)
    edges = np.linspace(0.0, est.magnitude_max, HIST_BINS + 1)
    step = on_tile or (lambda name, tile: None)

    profile = dict(GTIFF_OPTIONS, width=grid.width, height=grid.height, count=3, dtype="float32",
                   crs=grid.crs, transform=grid.transform, nodata=None, **TILED_CHANGE_COMPRESSION)
    if grid.width < 256 or grid.height < 256:
        profile.update(tiled=False)
        profile.pop("blockxsize"), profile.pop("blockysize")
    # The learned method's threshold is fixed: one pass thresholds each tile's read window and
    # writes its core. Histogram thresholds need every tile's magnitude first: two passes.
    fixed_thr = None
    if change_passes(method) == 1:
        from .change import pick_model

        fixed_thr = float(pick_model(names).threshold)  # type: ignore[union-attr]

    tmp: str | None = None  # the two-pass methods' temporary magnitude file
    mag = None
    threads = ExitStack()
    threads.enter_context(one_thread_per_worker(workers))
    threads.enter_context(rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_BYTES))
    hist = np.zeros(HIST_BINS, np.int64)
    scale = HIST_BINS / edges[-1]
    valid_n = changed_n = 0
    mag_sum = 0.0

    def add_to_hist(core: np.ndarray) -> None:
        v = core[np.isfinite(core)]
        hist[:] += np.bincount(np.minimum((v * scale).astype(np.int64), HIST_BINS - 1), minlength=HIST_BINS)

    def mask_of(m: np.ndarray, thr: float) -> np.ndarray:
        return drop_small_regions(np.isfinite(m) & (np.nan_to_num(m, nan=-1.0) > thr), mmu_px)

    def write_core(ds: Any, tile: Tile, m: np.ndarray, changed: np.ndarray) -> None:
        nonlocal valid_n, changed_n, mag_sum
        ok = np.isfinite(m)
        ds.write(np.stack([m, changed.astype(np.float32), (~ok).astype(np.float32)]), window=tile.core_window)
        valid_n += int(ok.sum())
        changed_n += int(changed.sum())
        mag_sum += float(m[ok].sum(dtype=np.float64))

    def finish(ds: Any, thr: float) -> None:
        for i, d in enumerate(["change magnitude", "change mask (1 = changed)", "not assessed (1 = masked)"], 1):
            ds.set_band_description(i, d)
        ds.update_tags(IMGDIFF_METHOD=method, IMGDIFF_THRESHOLD=repr(thr), IMGDIFF_TILED=f"{tile_size}+{overlap}")

    try:
        def read_tiles() -> Iterator[tuple[Tile, Scene | None, Scene | None]]:
            # one reader per scene (every compressed block is decoded once); the before scene's
            # window is read on a second thread while this one reads the after scene's
            with StripReader(before, grid, names) as rb, StripReader(after, grid, names) as ra, \
                    ThreadPoolExecutor(max_workers=1, thread_name_prefix="imgdiff-read") as pool:
                for tile in tiles:
                    yield tile, *_read_pair(pool, rb, ra, tile.read)

        def magnitude(item: tuple[Tile, Scene | None, Scene | None], margin: int) -> tuple[Tile, np.ndarray, tuple]:
            """Magnitude (NaN where not assessed) of a tile's core grown by ``margin`` pixels within
            its read window (the features and masks see the whole window), and the core's slices in it."""
            tile, b, a = item
            rows, cols = tile.core_slices
            h, w = tile.read[3] - tile.read[1], tile.read[2] - tile.read[0]
            region = (slice(max(rows.start - margin, 0), min(rows.stop + margin, h)),
                      slice(max(cols.start - margin, 0), min(cols.stop + margin, w)))
            core = (slice(rows.start - region[0].start, rows.stop - region[0].start),
                    slice(cols.start - region[1].start, cols.stop - region[1].start))
            if b is None or a is None:
                shape = (region[0].stop - region[0].start, region[1].stop - region[1].start)
                return tile, np.full(shape, np.nan, np.float32), core
            moved = warp(a, est.registration, interpolation=WARP_KERNEL) if register else a
            ok = b.valid & moved.valid & ~_excluded(b) & ~_excluded(moved)
            after_n = est.apply(moved.stack(names), copy=False)
            return tile, _magnitude(method, b.stack(names), after_n, ok, names, est, region), core

        if fixed_thr is not None:
            thr = fixed_thr

            def one_pass(item: tuple[Tile, Scene | None, Scene | None]) -> tuple[Tile, np.ndarray, np.ndarray]:
                # A changed region smaller than the mapping unit that touches the core lies within
                # mmu_px - 1 pixels of it, its neighbours within mmu_px: the core's mask is the same
                # from the core grown by mmu_px as from the whole read window.
                tile, m, core = magnitude(item, mmu_px)
                return tile, m[core], mask_of(m, thr)[core]

            with rasterio.open(path, "w", **profile) as ds:
                for tile, m, changed in map_bounded(one_pass, read_tiles(), workers):
                    write_core(ds, tile, m, changed)
                    add_to_hist(m)
                    step("magnitude", tile)
                finish(ds, thr)
        else:
            # The magnitude of pass 1 goes to a temporary tiled, uncompressed GeoTIFF (not a memory map:
            # its pages would count in the resident memory of the process).
            fd, tmp = tempfile.mkstemp(prefix=".magnitude.", suffix=".part", dir=Path(path).parent)
            os.close(fd)
            mag = rasterio.open(tmp, "w", driver="GTiff", width=grid.width, height=grid.height, count=1,
                                dtype="float32", crs=grid.crs, transform=grid.transform, tiled=True, blockxsize=256,
                                blockysize=256, BIGTIFF="YES")

            def pass1(item: tuple[Tile, Scene | None, Scene | None]) -> tuple[Tile, np.ndarray]:
                tile, m, core = magnitude(item, 0)
                return tile, m[core]

            for tile, core in map_bounded(pass1, read_tiles(), workers):
                mag.write(core, 1, window=tile.core_window)
                add_to_hist(core)
                step("magnitude", tile)
            mag.close()
            if method == "irmad":
                from .change import chi2_threshold

                thr = max(chi2_threshold(len(names), 0.99), hist_noise_floor(hist, edges))  # as imgdiff.change
            else:  # Otsu, kept above the noise floor as in imgdiff.change
                thr = max(otsu_threshold(hist, edges), hist_noise_floor(hist, edges))

            def pass2(tile: Tile) -> tuple[Tile, np.ndarray, np.ndarray]:
                with rasterio.open(tmp) as src:  # one handle per thread: GDAL handles are not thread-safe
                    m = src.read(1, window=tile.window)
                rows, cols = tile.core_slices
                return tile, m[rows, cols], mask_of(m, thr)[rows, cols]

            with rasterio.open(path, "w", **profile) as ds:
                for tile, m, changed in map_bounded(pass2, tiles, workers):
                    write_core(ds, tile, m, changed)
                    step("threshold", tile)
                finish(ds, thr)
    finally:
        threads.close()
        if mag is not None and not mag.closed:
            mag.close()
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)

    n = grid.width * grid.height
    stats = {
        "pixels": n,
        "valid_pixels": valid_n,
        "valid_fraction": valid_n / n if n else 0.0,
        "changed_pixels": changed_n,
        "changed_fraction": changed_n / valid_n if valid_n else 0.0,
        "changed_area_m2": changed_n * sx * sy,
        "threshold": thr,
        "method": method,
        "magnitude_mean": mag_sum / valid_n if valid_n else None,
        "magnitude_p99": _hist_percentile(hist, edges, 99),
    }
    return TiledChange(grid=grid, estimate=est, threshold=thr, method=method, statistics=stats, tiles=len(tiles),
                       tile_size=tile_size)


def _source_entry(path: str | Path, bands: Sequence[str] | None, grid: Grid) -> dict[str, Any]:
    from .io.read import date_from_text

    d = date_from_text(Path(path).name) or date_from_text(str(Path(path).resolve()))
    return {"source": str(path), "date": d.isoformat() if d else None, "bands": list(bands) if bands else None,
            "processing_baseline": None, "radiometry": None, "window": {"width": grid.width, "height": grid.height}}


def compare_tiled(
    before: str | Path,
    after: str | Path,
    outdir: str | Path,
    *,
    bands: Sequence[str] | None = None,
    bbox: BBox | None = None,
    tile_size: int | None = None,
    overlap: int = CHANGE_OVERLAP,
    register: bool = True,
    method: str | None = None,
    workers: int = 2,
    overwrite: bool = False,
    on_tile: Callable[[str, Tile], None] | None = None,
) -> dict[str, Any]:
    """``imgdiff compare`` for whole tiles: write ``change.tif``, ``report.json`` and ``report.md``.

    Same outputs and report layout as :func:`imgdiff.write_compare`, computed window by
    window by :func:`write_change_tiled` (see there for the parameters). All three files
    are written under temporary names and moved into place together at the end, so an
    interrupted run leaves none of them half-written.

    Returns
    -------
    dict
        The report (also written as ``report.json``), with a ``tiling`` entry.
    """
    from .report.compare import COMPARE_OUTPUTS, REPORT_SCHEMA_VERSION, render_markdown

    out = check_outputs(outdir, COMPARE_OUTPUTS, overwrite)
    report: dict[str, Any] = {}

    def change(p: Path) -> None:
        res = write_change_tiled(p, before, after, bands=bands, bbox=bbox, tile_size=tile_size, overlap=overlap,
                                 register=register, method=method, workers=workers, on_tile=on_tile)
        eb, ea = _source_entry(before, bands, res.grid), _source_entry(after, bands, res.grid)
        days = None
        if eb["date"] and ea["date"]:
            import datetime as dt

            days = (dt.date.fromisoformat(ea["date"]) - dt.date.fromisoformat(eb["date"])).days
        report.update({
            "schema_version": REPORT_SCHEMA_VERSION,
            "imgdiff_version": __version__,
            "inputs": {"before": eb, "after": ea},
            "dates": {"before": eb["date"], "after": ea["date"], "days_between": days},
            "grid": res.grid.to_dict(),
            "coregistration": res.estimate.registration.to_dict(),
            "change": res.statistics,
            "tiling": {"tile_size": res.tile_size, "overlap": overlap, "tiles": res.tiles, "workers": workers,
                       "gain": list(res.estimate.gain), "offset": list(res.estimate.offset), "sample_windows": res.estimate.chips,
                       "sample_windows_registered": res.estimate.chips_registered,
                       "difference_scales": list(res.estimate.diff_scales),
                       "fill": None if res.estimate.fill is None else {
                           "before": list(res.estimate.fill[0]), "after": list(res.estimate.fill[1])}},
        })

    write_outputs(out, {
        "change.tif": change,
        "report.json": lambda p: write_json(p, report),
        "report.md": lambda p: write_text(p, render_markdown(report)),
    })
    return report


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


__all__ = [
    "CHANGE_OVERLAP", "DETECT_OVERLAP", "MLP_TILE_SIZE", "SampleEstimate", "TILED_METHODS", "TILE_SIZE", "Tile",
    "TiledChange", "StripReader", "change_passes", "compare_tiled", "crop_scene", "detect_tiled", "plan_windows", "screened_blocks", "screened_runs", "vessel_levels",
    "vessel_screen", "one_thread_per_worker", "estimate_on_samples", "grid_boxes", "hist_noise_floor",
    "magnitude_bound", "map_bounded", "otsu_threshold", "pick_tiled_method", "read_window", "sample_boxes",
    "should_tile", "source_grid", "tile_grid", "window_bounds", "work_grid", "write_change_tiled", "zones_window",
    "ZONES_MARGIN_M", "ZONES_WINDOW_ABOVE_PX",
]
