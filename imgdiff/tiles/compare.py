"""``imgdiff compare`` on whole tiles: ``change.tif`` block by block, then the report.

:func:`write_change_tiled` compares two large scenes window by window in bounded memory and
writes the change map's core of each tile; :func:`compare_tiled` writes ``change.tif``,
``report.json`` and ``report.md`` as :func:`imgdiff.write_compare` does.

Pixel coordinates follow rasterio: x = column, y = row, pixel (0, 0) spans [0, 1) x [0, 1).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import rasterio

from .. import __version__
from ..coregister import MAX_SHIFT_PX
from ..errors import check_type
from ..grid import Grid
from ..io.read import BBox, find_band_sources
from ..io.write import GTIFF_OPTIONS, check_outputs, check_written, write_json, write_outputs, write_text
from ..radiometry import drop_small_regions
from ..scene import Scene
from .methods import (
    HIST_BINS,
    TILED_METHODS,
    _hist_percentile,
    change_passes,
    hist_noise_floor,
    otsu_threshold,
    pick_tiled_method,
)
from .reading import GDAL_CACHE_BYTES, StripReader, pair_probes, work_grid
from .samples import SampleEstimate, _read_pair, clear_stacks, estimate_on_samples
from .tiling import CHANGE_OVERLAP, MLP_TILE_SIZE, TILE_SIZE, Tile, map_bounded, one_thread_per_worker, tile_grid

#: Compression of the tiled comparison's ``change.tif``: ZSTD level 1, each band in its own blocks,
#: no predictor. Whole-tile outputs are written block by block while the tiles are computed, and
#: their compression is CPU taken from the comparison: per 2048 x 2048 px of the three float32
#: bands, DEFLATE level 1 pixel-interleaved took 150 ms (18.0 MB), ZSTD 1 pixel-interleaved 110 ms
#: (15.9 MB), ZSTD 1 band-interleaved 31 ms (15.6 MB): the 0/1 mask bands compress to almost
#: nothing on their own and the noise-like magnitude is not mixed into them. The floating-point
#: predictor made the magnitude's blocks larger and cost 40 % more time. GDAL (so rasterio's wheels,
#: QGIS) reads ZSTD GeoTIFFs since version 2.3.
TILED_CHANGE_COMPRESSION: dict[str, Any] = {"compress": "zstd", "zstd_level": 1, "interleave": "band", "predictor": 1}


def _magnitude(method: str, before: np.ndarray, after: np.ndarray, valid: np.ndarray, names: Sequence[str],
               est: SampleEstimate, region: tuple[slice, slice] | None = None) -> np.ndarray:
    """Per-pixel change magnitude of a normalised pair (NaN outside ``valid``), by the functions of
    :mod:`imgdiff.change` with the statistics ``est`` measured once on the whole raster; of the
    ``region`` (row and column slices) only, when given (``mlp``: its features still see the whole
    arrays)."""
    from .. import change

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
    probes : (Scene or None, Scene or None)
        The windows whose scaling and date each date's tiles were read with
        (:func:`imgdiff.tiles.reading.pair_probes`).
    """

    grid: Grid
    estimate: SampleEstimate
    threshold: float
    method: str
    statistics: dict
    tiles: int
    tile_size: int = TILE_SIZE
    probes: tuple[Scene | None, Scene | None] = (None, None)


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
    max_shift: float = MAX_SHIFT_PX,
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
        Output GeoTIFF (tiled 256 x 256, :data:`TILED_CHANGE_COMPRESSION`, float32, 3 bands as in ``imgdiff compare``).
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
    max_shift : float
        Largest plausible shift of the after scene, in pixels of the before scene's grid along
        either axis (:func:`estimate_on_samples`).
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
    probes = pair_probes(before, after, grid, names)  # one scaling for both dates, as imgdiff.compare reads a pair
    est = estimate_on_samples(before, after, grid, names, register=register, method=method, workers=workers,
                              probes=probes, max_shift=max_shift)
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
        from ..change import pick_model

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
        for i, band in enumerate((m, changed.astype(np.float32), (~ok).astype(np.float32)), 1):
            ds.write(band, i, window=tile.core_window)  # band-interleaved file: no stacked copy
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
            with StripReader(before, grid, names, probe=probes[0]) as rb, \
                    StripReader(after, grid, names, probe=probes[1]) as ra, \
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
            before_s, after_s, ok = clear_stacks(b, a, est.registration if register else None, names)
            after_n = est.apply(after_s, copy=False)
            return tile, _magnitude(method, before_s, after_n, ok, names, est, region), core

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
            check_written(path)
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
            check_written(tmp)
            if method == "irmad":
                from ..change import chi2_threshold

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
            check_written(path)
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
                       tile_size=tile_size, probes=probes)


def _source_entry(path: str | Path, probe: Scene | None, bands: Sequence[str] | None, grid: Grid) -> dict[str, Any]:
    """The report's ``inputs`` entry of one scene, as :func:`imgdiff.report.compare.compare_report` writes it:
    its date, bands, processing baseline and radiometry, those of the probe window its tiles were read by
    (:attr:`TiledChange.probes`: decided as :func:`imgdiff.read_scene` decides them, one scaling for the pair)."""
    from ..io.read import date_from_text

    meta = probe.meta if probe is not None else {}
    d = (probe.date if probe is not None else None) or date_from_text(Path(path).name) \
        or date_from_text(str(Path(path).resolve()))
    names = list(probe.bands) if probe is not None else (list(bands) if bands else None)
    return {"source": str(path), "date": d.isoformat() if d else None, "bands": names,
            "processing_baseline": meta.get("processing_baseline"), "radiometry": meta.get("radiometry"),
            "window": {"width": grid.width, "height": grid.height}}


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
    max_shift: float = MAX_SHIFT_PX,
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
    for label, p in (("before", before), ("after", after)):
        check_type(p, (str, os.PathLike), f"compare_tiled: {label}", "it reads whole tiles window by window from their files; for Scenes use imgdiff.compare")
    from ..report.compare import COMPARE_OUTPUTS, REPORT_SCHEMA_VERSION, render_markdown

    out = check_outputs(outdir, COMPARE_OUTPUTS, overwrite)
    report: dict[str, Any] = {}

    def change(p: Path) -> None:
        res = write_change_tiled(p, before, after, bands=bands, bbox=bbox, tile_size=tile_size, overlap=overlap,
                                 register=register, method=method, workers=workers, on_tile=on_tile,
                                 max_shift=max_shift)
        eb, ea = (_source_entry(p, probe, bands, res.grid) for p, probe in zip((before, after), res.probes))
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
