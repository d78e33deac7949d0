"""Whole tiles in bounded memory: windows with overlap, block-by-block change maps and detection.

A raster is cut into *tiles*. Each tile has a **core** (the tiles' cores partition the
raster: every pixel belongs to exactly one core) and a **read window**: the core grown by
``overlap`` pixels on every side, clipped to the raster. Work is done on read windows, so
filters, warps and detectors see context across the core border; results are kept only
on the core, so nothing is lost or counted twice at a border:

* a change map pixel is written by the one tile whose core holds it;
* a detection is kept only by the one tile whose core holds its centre.

Pixel coordinates follow rasterio: x = column, y = row, pixel (0, 0) spans [0, 1) x [0, 1).
"""

from __future__ import annotations

import os
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from contextlib import nullcontext
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import rasterio
import rasterio.windows
from affine import Affine
from rasterio.windows import Window

from . import __version__
from .change import cva_magnitude
from .coregister import Registration, coregister, warp
from .detect.base import Detection, Detections, sorted_detections
from .errors import CoregistrationError, EmptySceneError, ImgdiffError, NoOverlapError
from .grid import Grid, align
from .io.read import BBox, bbox_window, find_band_sources, read_scene
from .io.write import GTIFF_OPTIONS, check_outputs, write_json, write_outputs, write_text
from .radiometry import drop_small_regions
from .scene import Scene
from .zones import Zones, assign_zones

#: Default tile core size in pixels (a multiple of the 256 px output block size).
TILE_SIZE = 2048
#: Tile core size of the learned (``mlp``) change method, whose ~40 feature planes per pixel
#: would need about 1 GB per 2048 px tile.
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


# --------------------------------------------------------------------------- grids of files
def source_grid(path: str | Path, bands: Sequence[str] | None = None) -> Grid:
    """The grid a scene would be read on (that of its finest band), without reading pixels."""
    sources = find_band_sources(path, bands)
    if bands is not None:
        wanted = set(bands)
        sources = [s for s in sources if s.name in wanted] or sources
    best = None
    for s in sources:
        with rasterio.open(s.path) as ds:
            g = Grid(ds.crs, ds.transform, ds.width, ds.height)
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
        scene = read_scene(path, bands=bands, bbox=window_bounds(grid, box), bbox_crs=grid.crs)
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


# --------------------------------------------------------------------------- detection
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
    on_tile: Callable[[Tile], None] | None = None,
) -> Detections:
    """Run a detector window by window over a scene too large to hold in memory.

    Each tile's read window is read and passed to ``detector``; a detection is kept only
    by the tile whose core holds its centre, so objects on tile borders are neither lost
    (the overlap shows them whole when ``overlap`` exceeds their size) nor counted twice.

    Parameters
    ----------
    path : str or Path
        Anything :func:`imgdiff.read_scene` reads.
    detector : callable
        ``detector(scene) -> Detections``, e.g. ``imgdiff.detect.vessels.detect_vessels``.
    bands : sequence of str, optional
        Bands to read.
    bbox : (west, south, east, north), optional
        Lon/lat window; only it is read.
    zones : Zones, optional
        Zones to label the merged detections with (see :func:`imgdiff.zones.assign_zones`).
    tile_size, overlap : int
        Core size and overlap in pixels.
    workers : int
        Threads reading tiles at once.
    detector_thread_safe : bool
        Whether ``detector`` may run in several threads at once. By default calls are
        serialised (a shared OpenCV DNN network is not thread-safe; it uses every core
        by itself), while reading the next windows goes on in parallel.
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

    def run(tile: Tile) -> tuple[Tile, list[Detection]]:
        scene = read_window(path, grid, tile.read, bands)
        if scene is None:
            return tile, []
        with lock:
            found = detector(scene)
        ox, oy = tile.read[0], tile.read[1]
        kept = []
        for d in found:
            cx, cy = d.center
            if tile.holds(cx + ox, cy + oy):
                kept.append(_shift_detection(d, ox, oy))
        return tile, kept

    items: list[Detection] = []
    for tile, kept in map_bounded(run, tiles, workers):
        items += kept
        if on_tile:
            on_tile(tile)
    dets = sorted_detections(items, grid.crs, grid.transform, grid.pixel_size_m)
    return assign_zones(dets, zones) if zones is not None else dets


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
        Per-band damping of the log ratios (half the before band's median reflectance).
    irmad_weights : tuple of tuple of float, optional
        IR-MAD fitted on the samples, as the linear map (2 x bands + 1, bands) from
        (before, normalised after, 1) to the scaled MAD variates.
    """

    registration: Registration
    gain: tuple[float, ...]
    offset: tuple[float, ...]
    magnitude_max: float
    chips: int
    chips_registered: int
    log_ratio_eps: tuple[float, ...] = ()
    irmad_weights: tuple[tuple[float, ...], ...] | None = None

    def apply(self, after: np.ndarray) -> np.ndarray:
        """Normalise an after stack (bands, rows, cols) to the before scene."""
        out = np.array(after, np.float32, copy=True)
        out *= np.asarray(self.gain, np.float32)[:, None, None]
        out += np.asarray(self.offset, np.float32)[:, None, None]
        return out


def sample_boxes(shape: tuple[int, int], chip: int = 512) -> list[tuple[int, int, int, int]]:
    """Five chip boxes (x0, y0, x1, y1): the centre of the grid and the centres of its quadrants."""
    h, w = shape
    cw, ch = min(chip, w), min(chip, h)
    boxes = []
    for fx, fy in ((0.5, 0.5), (0.25, 0.25), (0.75, 0.25), (0.25, 0.75), (0.75, 0.75)):
        x0 = int(np.clip(round(fx * w - cw / 2), 0, w - cw))
        y0 = int(np.clip(round(fy * h - ch / 2), 0, h - ch))
        boxes.append((x0, y0, x0 + cw, y0 + ch))
    return list(dict.fromkeys(boxes))


def grid_boxes(shape: tuple[int, int], chip: int, per_side: int) -> list[tuple[int, int, int, int]]:
    """``per_side`` x ``per_side`` chip boxes (x0, y0, x1, y1) centred in equal cells of a grid."""
    h, w = shape
    cw, ch = min(chip, w), min(chip, h)
    boxes = []
    for fy in (np.arange(per_side) + 0.5) / per_side:
        for fx in (np.arange(per_side) + 0.5) / per_side:
            x0 = int(np.clip(round(fx * w - cw / 2), 0, w - cw))
            y0 = int(np.clip(round(fy * h - ch / 2), 0, h - ch))
            boxes.append((x0, y0, x0 + cw, y0 + ch))
    return list(dict.fromkeys(boxes))


def _excluded(scene: Scene) -> np.ndarray:
    """Cloud, cloud shadow and saturated pixels (as ``imgdiff.change.scene_change_map`` excludes them)."""
    if not all(n in scene.bands for n in ("B02", "B03", "B04", "B08")):
        return np.zeros(scene.shape, bool)
    from .radiometry import cloud_mask, saturation_mask

    return cloud_mask(scene, shadows=True) | saturation_mask(scene)  # = date_masks(scene).excluded, no water mask


def _magnitude(method: str, before: np.ndarray, after: np.ndarray, valid: np.ndarray,
               names: Sequence[str], eps_per_band: Sequence[float] | None = None,
               irmad_weights: Sequence[Sequence[float]] | None = None) -> np.ndarray:
    """Per-pixel change magnitude of a normalised pair (NaN outside ``valid``)."""
    if method == "cva-otsu":
        m = cva_magnitude(before, after)
    elif method == "logratio-otsu":
        from .change import log_ratio

        eps = np.asarray(eps_per_band if eps_per_band is not None else [1e-3] * before.shape[0], np.float32)
        lr = log_ratio(before, after, eps=np.maximum(eps, 1e-3)[:, None, None])
        m = np.sqrt(np.mean(lr * lr, axis=0))
    elif method == "irmad":
        w = np.asarray(irmad_weights, np.float32)  # (2 * bands + 1, bands): [before; after; 1] -> MAD variates
        nb = before.shape[0]
        m = np.zeros(before.shape[1:], np.float32)
        for k in range(w.shape[1]):
            v = np.full(before.shape[1:], w[-1, k], np.float32)
            for j in range(nb):
                v += w[j, k] * before[j] + w[nb + j, k] * after[j]
            m += v * v
    elif method == "mlp":
        from .change import learned_magnitude, pick_model

        model = pick_model(names)
        assert model is not None
        m = learned_magnitude(before, after, valid, names, model)
    else:
        raise ValueError(f"tiled comparison supports the methods {', '.join(TILED_METHODS)}, not {method!r}")
    m = m.astype(np.float32, copy=False)
    m[~(valid & np.isfinite(m))] = np.nan
    return m


#: Change methods the tiled comparison supports: per-pixel magnitudes with a threshold that is
#: either fixed (``mlp``) or Otsu's over the whole raster (two passes, exact across tiles).
TILED_METHODS = ("mlp", "irmad", "cva-otsu", "logratio-otsu")


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


def estimate_on_samples(
    before: str | Path,
    after: str | Path,
    grid: Grid,
    names: Sequence[str],
    *,
    register: bool = True,
    method: str = "cva-otsu",
    chip: int = 512,
) -> SampleEstimate:
    """Estimate the shift, the radiometric normalisation and the magnitude range on sample windows.

    The shift is the median of the windows' phase-correlation shifts with reliability
    >= 0.5 (the most reliable window if none reaches it); the normalisation is fitted on
    the windows' common clear pixels after warping.

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
    for box in sample_boxes(grid.shape, chip):
        b = read_window(before, grid, box, names)
        a = read_window(after, grid, box, names)
        if b is None or a is None:
            continue
        try:
            pair = align(b, a, grid=Grid.of(b), bands=names)
        except NoOverlapError:
            continue
        pairs.append(pair)
        if register:
            try:
                shifts.append(coregister(pair.before, pair.after, mask=pair.overlap))
            except CoregistrationError as e:
                problems.append(str(e))
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
        for box in grid_boxes(grid.shape, RADIOMETRY_CHIP, RADIOMETRY_GRID):
            b = read_window(before, grid, box, names)
            a = read_window(after, grid, box, names)
            if b is None or a is None:
                continue
            try:
                pairs.append(align(b, a, grid=Grid.of(b), bands=names))
            except NoOverlapError:
                continue
    stacks = []
    for pair in pairs:
        moved = warp(pair.after, reg, interpolation=WARP_KERNEL) if register else pair.after
        ok = pair.before.valid & moved.valid & ~_excluded(pair.before) & ~_excluded(moved)
        stacks.append((pair.before.stack(names), moved.stack(names), ok))
    bv = np.concatenate([bs[:, ok] for bs, _, ok in stacks], axis=1)[:, None, :]
    av = np.concatenate([as_[:, ok] for _, as_, ok in stacks], axis=1)[:, None, :]
    if bv.shape[2] == 0:
        raise EmptySceneError(f"{before} / {after}: the sample windows share no clear valid pixel")
    norm = normalise(bv, av, np.ones(bv.shape[1:], bool))
    # log-ratio damping as in imgdiff.change: half of each band's median (before date)
    eps = tuple(float(0.5 * np.median(bv[i])) for i in range(bv.shape[0]))
    est = SampleEstimate(reg, tuple(float(g) for g in norm.gain), tuple(float(o) for o in norm.offset),
                         magnitude_bound(method, len(names)), len(pairs), len(shifts), eps)
    if method == "irmad":
        from .change import irmad

        keep = np.arange(bv.shape[2])
        if keep.size > 200_000:  # as many pixels as irmad() itself samples
            keep = np.sort(np.random.default_rng(0).choice(keep, 200_000, replace=False))
        bv, an = bv[:, :, keep], est.apply(av[:, :, keep])
        fit = irmad(bv, an, np.ones(bv.shape[1:], bool))
        # the MAD variates are linear in (before, after, 1): recover the map to apply it tile by tile
        design = np.concatenate([bv[:, 0], an[:, 0], np.ones((1, bv.shape[2]), np.float32)]).T.astype(np.float64)
        w, *_ = np.linalg.lstsq(design, fit.mad[:, 0].T.astype(np.float64), rcond=None)
        est = replace(est, irmad_weights=tuple(tuple(float(v) for v in row) for row in w))
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

    Differences from the whole-scene path: the normalisation is fitted on sample windows
    (not on the whole overlap), and spatial filters of the ``mlp`` features and the
    cloud-shadow search see only the tile's read window.

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
    est = estimate_on_samples(before, after, grid, names, register=register, method=method)
    tile_size = tile_size or (MLP_TILE_SIZE if method == "mlp" else TILE_SIZE)
    tiles = tile_grid(grid.shape, tile_size, overlap)
    edges = np.linspace(0.0, est.magnitude_max, HIST_BINS + 1)
    step = on_tile or (lambda name, tile: None)

    fd, tmp = tempfile.mkstemp(prefix=".magnitude.", suffix=".part", dir=Path(path).parent)
    os.close(fd)
    mag = None
    try:
        # The magnitude of pass 1 goes to a temporary tiled, uncompressed GeoTIFF (not a memory map:
        # its pages would count in the resident memory of the process).
        mag = rasterio.open(tmp, "w", driver="GTiff", width=grid.width, height=grid.height, count=1,
                            dtype="float32", crs=grid.crs, transform=grid.transform, tiled=True, blockxsize=256,
                            blockysize=256, BIGTIFF="YES")

        def pass1(tile: Tile) -> tuple[Tile, np.ndarray]:
            b = read_window(before, grid, tile.read, names)
            a = read_window(after, grid, tile.read, names)
            rows, cols = tile.core_slices
            if b is None or a is None:
                return tile, np.full((rows.stop - rows.start, cols.stop - cols.start), np.nan, np.float32)
            moved = warp(a, est.registration, interpolation=WARP_KERNEL) if register else a
            ok = b.valid & moved.valid & ~_excluded(b) & ~_excluded(moved)
            m = _magnitude(method, b.stack(names), est.apply(moved.stack(names)), ok, names, est.log_ratio_eps,
                           est.irmad_weights)
            return tile, m[rows, cols]

        hist = np.zeros(HIST_BINS, np.int64)
        scale = HIST_BINS / edges[-1]
        for tile, core in map_bounded(pass1, tiles, workers):
            x0, y0, x1, y1 = tile.core
            mag.write(core, 1, window=tile.core_window)
            v = core[np.isfinite(core)]
            hist += np.bincount(np.minimum((v * scale).astype(np.int64), HIST_BINS - 1), minlength=HIST_BINS)
            step("magnitude", tile)
        mag.close()
        if method == "mlp":
            from .change import pick_model

            thr = float(pick_model(names).threshold)  # type: ignore[union-attr]
        elif method == "irmad":
            from .change import chi2_threshold

            thr = max(chi2_threshold(len(names), 0.99), hist_noise_floor(hist, edges))  # as imgdiff.change
        else:  # Otsu, kept above the noise floor as in imgdiff.change
            thr = max(otsu_threshold(hist, edges), hist_noise_floor(hist, edges))

        profile = dict(GTIFF_OPTIONS, width=grid.width, height=grid.height, count=3, dtype="float32",
                       crs=grid.crs, transform=grid.transform, nodata=None, predictor=3,
                       zlevel=1)  # fast deflate: the magnitude band is noise-like and compresses little anyway
        if grid.width < 256 or grid.height < 256:
            profile.update(tiled=False)
            profile.pop("blockxsize"), profile.pop("blockysize")

        def pass2(tile: Tile) -> tuple[Tile, np.ndarray, np.ndarray]:
            with rasterio.open(tmp) as src:  # one handle per thread: GDAL handles are not thread-safe
                m = src.read(1, window=tile.window)
            changed = np.isfinite(m) & (np.nan_to_num(m, nan=-1.0) > thr)
            changed = drop_small_regions(changed, mmu_px)
            rows, cols = tile.core_slices
            return tile, m[rows, cols], changed[rows, cols]

        valid_n = changed_n = 0
        mag_sum = 0.0
        with rasterio.open(path, "w", **profile) as ds:
            for tile, m, changed in map_bounded(pass2, tiles, workers):
                ok = np.isfinite(m)
                ds.write(np.stack([m, changed.astype(np.float32), (~ok).astype(np.float32)]),
                         window=tile.core_window)
                valid_n += int(ok.sum())
                changed_n += int(changed.sum())
                mag_sum += float(m[ok].sum(dtype=np.float64))
                step("threshold", tile)
            for i, d in enumerate(["change magnitude", "change mask (1 = changed)", "not assessed (1 = masked)"], 1):
                ds.set_band_description(i, d)
            ds.update_tags(IMGDIFF_METHOD=method, IMGDIFF_THRESHOLD=repr(thr), IMGDIFF_TILED=f"{tile_size}+{overlap}")
    finally:
        if mag is not None and not mag.closed:
            mag.close()
        if os.path.exists(tmp):
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
                       "sample_windows_registered": res.estimate.chips_registered},
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


__all__ = [
    "CHANGE_OVERLAP", "DETECT_OVERLAP", "MLP_TILE_SIZE", "SampleEstimate", "TILED_METHODS", "TILE_SIZE", "Tile",
    "TiledChange", "compare_tiled", "detect_tiled", "estimate_on_samples", "grid_boxes", "hist_noise_floor",
    "magnitude_bound", "map_bounded", "otsu_threshold", "pick_tiled_method", "read_window", "sample_boxes",
    "should_tile", "source_grid", "tile_grid", "window_bounds", "work_grid", "write_change_tiled",
]
