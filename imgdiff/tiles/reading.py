"""Reading a scene on a tile grid: grids of files, windows of a grid, and the strip reader.

:func:`source_grid` and :func:`work_grid` give the grid a scene would be read on without reading
pixels; :func:`read_window` reads the part of a scene covering a pixel box of a grid.
:class:`StripReader` reads the tiles of a scene in row-major order with every compressed block
decoded once (coarser bands upsampled by OpenCV, :func:`_upsample`), with the same result as
:func:`read_window`.

Pixel coordinates follow rasterio: x = column, y = row, pixel (0, 0) spans [0, 1) x [0, 1).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import rasterio.windows
from affine import Affine
from rasterio.errors import RasterioError
from rasterio.windows import Window

from .._gdal_memory import IN_MEMORY_DATASETS
from ..errors import EmptySceneError, ImgdiffError, NoOverlapError
from ..grid import Grid
from ..io.layout import unreadable
from ..io.read import SCENE_FRAME, BBox, bbox_window, find_band_sources, georeferencing, open_raster, read_scene
from ..scene import Scene

#: GDAL block cache while tiles are processed. The strip readers decode each block once and keep
#: what they need themselves; GDAL's default cache (5 % of the RAM) would only hold decoded blocks
#: and written blocks of the outputs in resident memory.
GDAL_CACHE_BYTES = 64 << 20


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
        from ..grid import reproject_scene

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
                 sequential: bool = True, probe: Scene | None = None) -> None:
        from ..io.read import Radiometry, find_band_sources

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
        if probe is None:  # radiometry, date: exactly as read_scene decides them (or a pair's, pair_probes)
            probe = _probe(path, grid, bands)
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
        from ..io.read import to_reflectance, zero_fill

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
        bands = iter(arrays.values())
        valid = np.isfinite(next(bands))
        finite = np.empty_like(valid)
        for a in bands:  # finite in every band (two masks, not one per band)
            valid &= np.isfinite(a, out=finite)
        if zero is not None:
            valid &= ~zero
        if not valid.any():
            return None
        invalid = ~valid
        if invalid.any():
            for a in arrays.values():
                a[invalid] = np.nan
        meta = dict(self._meta, window={"col_off": c0, "row_off": r0, "width": c1 - c0, "height": r1 - r0})
        sub = self.grid.transform * Affine.translation(x0, y0)
        return Scene(bands=arrays, crs=self.grid.crs, transform=sub, valid=valid, date=self._date, meta=meta)


def pair_probes(before: str | Path, after: str | Path, grid: Grid, bands: Sequence[str] | None
                ) -> tuple[Scene | None, Scene | None]:
    """The probe windows (:func:`_probe`) of both dates of a pair, with one scaling where only one of them
    says what it is (:func:`imgdiff.io.harmonise.harmonise_scaling`, as :func:`imgdiff.compare` reads a
    pair): the tile readers of both dates (:class:`StripReader` ``probe=``) convert their digital numbers
    by these windows' records."""
    from ..io.harmonise import harmonise_scaling

    pb, pa = _probe(before, grid, bands), _probe(after, grid, bands)
    if pb is None or pa is None:
        return pb, pa
    return harmonise_scaling(pb, pa)


#: Half side (pixels) of the windows :func:`_probe` reads.
PROBE_HALF_PX = 128


def _probe(path: str | Path, grid: Grid, bands: Sequence[str] | None) -> Scene | None:
    """A window of the scene with valid pixels (its metadata: radiometry, date), or None.

    Tries 256 x 256 px windows at the centre, then on a 5 x 5 grid (a tile half outside the swath).
    :func:`imgdiff.read_scene` makes two of its scaling decisions on the pixels it reads (the
    baseline-04 offset dropped when 1 % of B02 lies below DN 1000; a renamed raw export known by its
    99th percentile), so the window is large enough for them to see water and land: with 16 x 16 px
    windows a tile of land read the offset that its whole scene rules out.
    """
    h = PROBE_HALF_PX
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
    """Rows ``[r0, r0 + n)`` of one band file (digital numbers), extended block row by block row.

    The rows live in one buffer kept from tile to tile (``buf[off:off + n]``): new block rows are
    decoded straight into it, and the rows still needed move to its front only when the end is
    reached, instead of a fresh array per block row joined to the kept rows (a copy of them per
    block row). The windows are the same bit for bit; on the synthetic full-tile pair the whole
    comparison is about 2 % faster (within the machine's run-to-run spread).
    """

    def __init__(self, source: Any, ds: Any, radiometry: Any, sequential: bool = True) -> None:
        self.source, self.ds, self.radiometry, self.sequential = source, ds, radiometry, sequential
        self.crs, self.transform = georeferencing(ds, source.name)
        self.index = source.index
        self.nodata = ds.nodata
        self.block_rows = max(1, int(ds.block_shapes[self.index - 1][0]))
        self.r0 = self.off = self.n = 0
        self.buf = np.empty((0, ds.width), ds.dtypes[self.index - 1])
        self.same_grid = True

    def rows(self, r0: int, r1: int) -> np.ndarray:
        """Rows [r0, r1) of the band (whole width), a view valid until the next call; rows before
        ``r0`` are forgotten."""
        r1 = min(r1, self.ds.height)
        end = self.r0 + self.n
        if r0 < self.r0 or r0 > end:  # out of order, or a jump: restart at r0's block row
            self.r0 = end = r0 - r0 % self.block_rows
            self.off = self.n = 0
        elif r0 > self.r0:
            self.off += r0 - self.r0
            self.n -= r0 - self.r0
            self.r0 = r0
        if r1 > end:
            stop = min(self.ds.height, -(-r1 // self.block_rows) * self.block_rows)  # whole block rows
            need = self.n + stop - end
            if self.off + need > len(self.buf):
                held = self.buf[self.off:self.off + self.n]
                if need > len(self.buf):
                    self.buf = np.concatenate([held, np.empty((need - self.n, self.ds.width), self.buf.dtype)])
                else:
                    self.buf[:self.n] = held  # to the front (numpy copies overlapping rows safely)
                self.off = 0
            self.ds.read(self.index, window=Window(0, end, self.ds.width, stop - end),
                         out=self.buf[self.off + self.n:self.off + need])
            self.n = need
        return self.buf[self.off + r0 - self.r0:self.off + r1 - self.r0]

    def dn(self, r0: int, r1: int, c0: int, c1: int) -> np.ndarray:
        """Digital numbers of rows [r0, r1) and columns [c0, c1): from the strip, or read directly
        (random windows: the file stays open, so GDAL's block cache serves blocks read before).

        Raises
        ------
        InputError
            A block of the file cannot be decoded (named, with GDAL's reason): a problem of the input,
            not of the output the tiles are written to.
        """
        try:
            if self.sequential:
                return self.rows(r0, r1)[:, c0:c1]
            return self.ds.read(self.index, window=Window(c0, r0, c1 - c0, r1 - r0))
        except RasterioError as e:
            raise unreadable(self.source.path, e) from None

    def resampled(self, crs: Any, dst_transform: Affine, dst_shape: tuple[int, int]) -> np.ndarray:
        """Bilinear resampling onto a destination grid, saturated pixels unspread, as
        :func:`imgdiff.io.read.read_scene` does it (:func:`imgdiff.io.read.resample_coarser`)."""
        import math

        from rasterio.crs import CRS
        from rasterio.enums import Resampling
        from rasterio.transform import array_bounds
        from rasterio.warp import reproject

        from ..io.read import resample_coarser, saturated, to_reflectance

        s_tr, (sh, sw) = self.transform, self.ds.shape
        west, south, east, north = array_bounds(dst_shape[0], dst_shape[1], dst_transform)
        inv = ~s_tr
        xs, ys = zip(*(inv * (x, y) for x in (west, east) for y in (south, north)))
        c0, c1 = max(0, math.floor(min(xs)) - 2), min(sw, math.ceil(max(xs)) + 2)
        r0, r1 = max(0, math.floor(min(ys)) - 2), min(sh, math.ceil(max(ys)) + 2)
        if c1 <= c0 or r1 <= r0:
            return np.full(dst_shape, np.nan, np.float32)
        dn = self.dn(r0, r1, c0, c1)
        src = to_reflectance(dn, self.radiometry, self.nodata, zeros="keep")
        local = CRS.from_epsg(3857)

        def resample(values: np.ndarray, kernel: Resampling) -> np.ndarray:
            if kernel is Resampling.bilinear:
                fast = _upsample(values, s_tr * Affine.translation(c0, r0), dst_transform, dst_shape)
                if fast is not None:
                    return fast
            dst = np.full(dst_shape, np.nan, np.float32)
            with IN_MEMORY_DATASETS:  # one GDAL in-memory dataset at a time (imgdiff._gdal_memory): tile threads
                reproject(
                    values, dst, src_transform=s_tr * Affine.translation(c0, r0), src_crs=self.crs or crs or local,
                    dst_transform=dst_transform, dst_crs=crs or self.crs or local, src_nodata=np.nan,
                    dst_nodata=np.nan, resampling=kernel,
                )
            return dst

        # saturated pixels stay on the pixels they cover, unspread (as read_scene reads them)
        return resample_coarser(src, saturated(dn, src, self.radiometry), resample)


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
