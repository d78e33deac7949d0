"""Reading Sentinel-2 scenes from the layouts users actually have.

Supported layouts
-----------------
* a folder of single-band files named by band: ``B02.tif``, ``*_B02.tif``,
  ``*_B02_10m.jp2``, Copernicus Browser exports ``..._Sentinel-2_L2A_B02_(Raw).tiff``;
* a SAFE product or granule (``GRANULE/*/IMG_DATA/[R10m/]*_B02[_10m].jp2``), with
  its ``MTD_MSIL1C.xml`` / ``MTD_MSIL2A.xml`` read for date, baseline and offsets;
* one multi-band GeoTIFF/COG whose band descriptions name the bands, or any
  multi-band file with an explicit band list.

All bands are brought onto the grid of the finest band read (10 m for Sentinel-2),
bilinearly for coarser bands (their saturated pixels kept on the pixels they cover,
:func:`resample_coarser`), and converted from digital numbers to float32
reflectance with NaN for no-data.

This module holds :func:`read_scene` and the per-band reading it does. The other ideas of
reading live in sibling modules of :mod:`imgdiff.io`, their names re-exported from here:

layout
    The band files of a scene: :class:`BandSource`, :func:`find_band_sources`,
    :func:`select_bands`, :func:`open_raster`.
georeferencing
    :func:`georeferencing` (a local frame for files without), :func:`north_up`,
    :func:`bbox_window`, :data:`SCENE_FRAME`.
metadata
    SAFE product metadata and acquisition dates (:func:`parse_product_metadata`, :func:`date_from_text`).
scaling
    Digital numbers to reflectance: :class:`Radiometry`, :func:`choose_radiometry`,
    :func:`to_reflectance`, :func:`infer_raw_scaling`, :func:`drop_impossible_offset`.
harmonise
    :func:`harmonise_scaling`: one scaling for both dates of a pair.
"""

from __future__ import annotations

import datetime as _dt
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from affine import Affine
from rasterio.crs import CRS
from rasterio.enums import Resampling
from rasterio.errors import RasterioError
from rasterio.warp import reproject
from rasterio.windows import Window

from ..errors import BandError, EmptySceneError, ReflectanceError, check_type
from ..scene import Scene, check_band_list, digital_number_band
from .georeferencing import (
    LOCAL_FRAME,
    SCENE_FRAME,
    BBox,
    bbox_window,
    georeferencing,
    in_lonlat_range,
    is_georeferenced,
    north_up,
)
from .harmonise import RAW_FACTOR_RANGE, RAW_FACTOR_SPREAD, harmonise_scaling
from .layout import (
    RASTER_SUFFIXES,
    BandSource,
    find_band_sources,
    one_line,
    open_raster,
    select_bands,
    unreadable,
)
from .metadata import (
    _safe_band_id,
    date_from_sidecar,
    date_from_tags,
    date_from_text,
    find_product_metadata,
    parse_product_metadata,
)
from .scaling import (
    _FLOAT_RULE,
    BASELINE_04_DATE,
    FLOAT_DN_LEVEL,
    IMPOSSIBLE_OFFSET_SHARE,
    RAW_EXPORT_SCALE,
    RAW_LEVEL_DN,
    SATURATED_DN,
    SATURATED_FLOAT_DN,
    SATURATION_REFLECTANCE,
    Radiometry,
    _high_p99,
    below_dn1000,
    by_default_rule,
    choose_radiometry,
    drop_impossible_offset,
    infer_raw_scaling,
    rescaled,
    saturated,
    saturated_dn,
    saturation_level,
    to_reflectance,
)

# Every public name of the reading code, importable from here as before it was split into modules.
__all__ = [
    "BASELINE_04_DATE", "BBox", "BandSource", "FLOAT_DN_LEVEL", "IMPOSSIBLE_OFFSET_SHARE", "LOCAL_FRAME",
    "RASTER_SUFFIXES", "RAW_EXPORT_SCALE", "RAW_FACTOR_RANGE", "RAW_FACTOR_SPREAD", "RAW_LEVEL_DN", "Radiometry",
    "SATURATED_DN", "SATURATED_FLOAT_DN", "SATURATION_REFLECTANCE", "SCENE_FRAME", "bbox_window", "below_dn1000",
    "by_default_rule", "check_stated_scale", "choose_radiometry", "date_from_sidecar", "date_from_tags", "date_from_text",
    "drop_impossible_offset", "find_band_sources", "find_product_metadata", "georeferencing", "harmonise_scaling",
    "has_mask_band", "in_lonlat_range", "infer_raw_scaling", "is_georeferenced", "masked", "north_up", "one_line",
    "open_raster", "parse_product_metadata", "read_scene", "resample_coarser", "resampled_again", "rescaled",
    "saturated", "saturated_dn", "saturation_level", "select_bands", "to_reflectance", "zero_fill",
]


def read_scene(
    path: str | Path,
    bands: Sequence[str] | None = None,
    bbox: BBox | None = None,
    *,
    bbox_crs: CRS | str | None = None,
    date: _dt.date | str | None = None,
    scale: float | None = None,
    offset: float = 0.0,
) -> Scene:
    """Read a Sentinel-2 scene (or a window of it) as float32 reflectance.

    Parameters
    ----------
    path : str or Path
        A band folder, SAFE product/granule, or multi-band GeoTIFF/COG.
    bands : sequence of str, optional
        Bands to read (default: all found). For a multi-band file without band
        descriptions, the names of its bands in order.
    bbox : (minx, miny, maxx, maxy), optional
        Read only this window. In ``bbox_crs``; lon/lat (EPSG:4326) by default.
    bbox_crs : CRS or str, optional
        CRS of ``bbox``; :data:`SCENE_FRAME` for the coordinates of the scene's own transform.
        On a scene without CRS an explicit ``bbox_crs`` means the coordinates of its transform,
        and a lon/lat bbox (no ``bbox_crs``) is refused (:func:`bbox_window`).
    date : date or ISO string, optional
        Acquisition date; overrides what metadata and file names say.
    scale, offset : float, optional
        Force ``reflectance = dn * scale + offset`` for every band (e.g. for
        exports whose scaling the files do not record). Otherwise each band's scaling
        follows :func:`choose_radiometry`, then levels that rule it out: float digital
        numbers (:data:`FLOAT_DN_LEVEL`), numbers below the date-based offset
        (:func:`drop_impossible_offset`), renamed raw exports (:func:`infer_raw_scaling`).
        ``meta["radiometry"]`` records what was used and why. A stated scaling that leaves
        a band's typical level above :data:`imgdiff.scene.MAX_REFLECTANCE_LEVEL` (digital
        numbers) is refused (:func:`check_stated_scale`).

    Returns
    -------
    Scene
        On the grid of the finest band read (window-cropped when ``bbox`` is given);
        coarser bands are resampled bilinearly, but a saturated pixel of theirs (at the top of the
        data type, or reflectance 1.6 and up at the band's final scaling) keeps its value on the
        pixels it covers and none of it reaches the others (:func:`resample_coarser`). NaN and
        ``valid == False`` where any band is no-data (its declared nodata value) or the pixel is zero-filled (DN 0 in
        every band on the finest grid: outside the swath or the product). A DN of 0 in only
        some bands is a valid, very dark pixel (e.g. NIR over calm water) and reads as
        reflectance 0.

    Raises
    ------
    InputError, BandError, GridError, NoOverlapError, EmptySceneError
    ReflectanceError
        ``scale`` (and ``offset``) given leave the bands in digital numbers.
    ArgumentTypeError
        ``path`` is not a str or Path, or ``bands`` is a single string.
    """
    check_type(path, (str, os.PathLike), "read_scene: path", "the path of a band folder, SAFE product or GeoTIFF")
    check_band_list(bands, "read_scene: bands")
    path = Path(path)
    sources = select_bands(find_band_sources(path, bands), bands, path)

    mtd = find_product_metadata(sources)
    product = parse_product_metadata(mtd) if mtd else {"offsets": {}}

    # Reference grid: the finest band.
    infos = {}
    unplaced = []  # bands without georeferencing, placed in the local frame
    for s in sources:
        with open_raster(s.path) as ds:
            infos[s] = _band_info(ds, s)
            if not is_georeferenced(ds):
                unplaced.append(s.name)
    ref = min(sources, key=lambda s: abs(infos[s][1].a) * abs(infos[s][1].e))
    crs, transform, shape = infos[ref][0], north_up(infos[ref][1], infos[ref][2][0]), infos[ref][2]
    check_compatible(sources, infos, ref)
    if len(unplaced) == len(sources):
        check_local_frame(sources, infos, ref)
    window = (
        bbox_window(bbox, bbox_crs, crs, transform, shape, str(path))
        if bbox is not None else Window(0, 0, shape[1], shape[0])
    )
    out_transform = rasterio.windows.transform(window, transform)
    out_shape = (int(window.height), int(window.width))

    if date is not None:
        acq = _dt.date.fromisoformat(date) if isinstance(date, str) else date
    else:
        acq = product.get("date") or date_from_tags(infos[ref][7]) or date_from_sidecar(ref.path)
        acq = acq or date_from_text(ref.path.name) or date_from_text(str(path.resolve()))

    # the product's baseline: SAFE metadata, else the PROCESSING_BASELINE tag (imgdiff fetch writes it)
    baseline = product.get("baseline") or infos[ref][7].get("PROCESSING_BASELINE") or None
    arrays: dict[str, np.ndarray] = {}
    radiometry: dict[str, dict[str, Any]] = {}
    zero: np.ndarray | None = None  # DN 0 in every band read on the reference grid: fill
    rereads: dict[str, Reread] = {}  # coarser bands, again once their scaling is final
    for s in sources:
        s_crs, s_tr, s_shape, dtype, nodata, b_scale, b_offset, _, _ = infos[s]
        if scale is not None:
            rad = Radiometry(scale, offset, "given by caller")
        else:
            band_id = _safe_band_id(s.name)
            rad = choose_radiometry(
                dtype, band_scale=b_scale, band_offset=b_offset, source_name=s.path.name, date=acq,
                baseline=baseline, quantification=product.get("quantification"),
                dn_offset=product["offsets"].get(band_id),
            )
        radiometry[s.name] = {"scale": rad.scale, "offset": rad.offset, "source": rad.source}
        if s_tr == transform and s_shape == shape and s_crs == crs:
            dn = _read(s, window)
            arrays[s.name] = masked(to_reflectance(dn, rad, nodata, zeros="keep"), s, window, infos[s][8])
            zero = zero_fill(dn, zero)
        else:
            arrays[s.name], rereads[s.name] = _read_resampled(s, infos[s], rad, crs, out_transform, out_shape)

    valid = np.logical_and.reduce([np.isfinite(a) for a in arrays.values()])
    if zero is not None:
        valid &= ~zero
    if not valid.any():
        empty = [s for s in sources if not np.isfinite(arrays[s.name]).any()]
        if empty and len(empty) < len(sources):  # one band's extent misses the others (or it is all no-data)
            raise EmptySceneError(
                f"{path}: band(s) {', '.join(s.name for s in empty)} ({', '.join(str(s.path) for s in empty)}) "
                f"hold no valid pixel on the grid of {ref.name}{' inside the bbox' if bbox is not None else ''}: "
                "their extent misses the other bands' or they are all no-data; check those files or leave them "
                "out with bands=[...] (CLI: --bands)"
            )
    for a in arrays.values():
        a[~valid] = np.nan
    if not valid.any():
        raise EmptySceneError(
            f"{path}: no valid pixel{' inside the bbox' if bbox is not None else ''} "
            "(all no-data or zero-filled)"
        )
    meta = {
        "source": str(path),
        "files": {s.name: str(s.path) for s in sources},
        "layout": "safe" if mtd else ("file" if path.is_file() else "folder"),
        "window": {"col_off": int(window.col_off), "row_off": int(window.row_off),
                   "width": out_shape[1], "height": out_shape[0]},
        "full_shape": list(shape),
        "processing_baseline": baseline,
        "radiometry": radiometry,
    }
    if rereads:  # the coarser bands, resampled onto this grid (resampled_again reads them again)
        meta["resampled"] = {s.name: {"path": str(s.path), "index": s.index} for s in sources if s.name in rereads}
    if unplaced:
        meta["georeferencing"] = f"{LOCAL_FRAME} ({', '.join(unplaced)})"
    scene = Scene(bands=arrays, crs=crs, transform=out_transform, valid=valid, date=acq, meta=meta)
    if scale is not None:
        check_stated_scale(scene, path, scale, offset)
        return scene
    floats = [s for s in sources if radiometry[s.name]["source"] == _FLOAT_RULE]
    if floats and _high_p99(scene, [s.name for s in floats], FLOAT_DN_LEVEL) > FLOAT_DN_LEVEL:
        # float digital numbers (e.g. a product converted to float to apply a gain): scale them as
        # the integer numbers they stand for, by name or convention, zero-fill included (0 in every
        # band is no data, as in the integers; read as taken, before the rescaling moves it)
        fill = np.logical_and.reduce([scene.bands[s.name] == 0 for s in floats]) if len(floats) == len(sources) else None
        for s in floats:
            rad = choose_radiometry("uint16", source_name=s.path.name, date=acq, baseline=baseline)
            scene = rescaled(scene, [s.name], Radiometry(rad.scale, rad.offset, f"{rad.source} (float digital numbers)"))
        if fill is not None and fill.any():
            if fill.all():
                raise EmptySceneError(f"{path}: no valid pixel{' inside the bbox' if bbox is not None else ''} "
                                      "(all zero-filled)")
            valid = scene.valid & ~fill
            scene = replace(scene, bands={b: np.where(valid, v, np.nan).astype(np.float32) for b, v in scene.bands.items()},
                            valid=valid)
    return _final_saturation(infer_raw_scaling(drop_impossible_offset(scene)), rereads)


def check_stated_scale(scene: Scene, path: str | Path, scale: float, offset: float = 0.0) -> None:
    """Refuse a scaling the caller stated (``read_scene(scale=, offset=)``) that leaves digital numbers.

    The readers' own choice of scaling is checked against the levels it gives (float digital numbers,
    raw exports); a stated one is taken as given, so a wrong one (``scale=1.0`` on files of
    reflectance x 10000) would give a scene of numbers that reads as all cloud. It is refused when a
    Sentinel-2 band's typical level stays above :data:`imgdiff.scene.MAX_REFLECTANCE_LEVEL`
    (:func:`imgdiff.scene.digital_number_band`).

    Parameters
    ----------
    scene : Scene
        As read with ``reflectance = dn * scale + offset``.
    path : str or Path
        What was read (named in the message).
    scale, offset : float
        The scaling stated.

    Raises
    ------
    ReflectanceError
        One line naming ``path``, the scaling given, the band and its level, and the way out.
    """
    found = digital_number_band(scene.bands, scene.valid)
    if found is None:
        return
    name, level = found
    stated = f"scale {float(scale)!r}" + (f", offset {float(offset)!r}" if offset else "")
    shown = f"{level:.0f}" if level >= 100 else f"{level:.2f}"
    raise ReflectanceError(
        f"{path}: {stated} leaves {name}'s median at {shown}, not reflectance (0-1): the file holds "
        "digital numbers; try scale=1e-4 (L1C/L2A, reflectance x 10000) or leave scale out to infer it")


def _band_info(ds: Any, s: BandSource) -> tuple:
    """What reading one band needs of its open raster ``ds``: (CRS, transform, shape, dtype, nodata,
    scale, offset, tags, has a mask band)."""
    if s.index > ds.count:
        raise BandError(f"{s.path}: has no band {s.index}")
    return (*georeferencing(ds, s.name), ds.shape, ds.dtypes[s.index - 1], ds.nodata,
            ds.scales[s.index - 1], ds.offsets[s.index - 1], ds.tags(), has_mask_band(ds, s.index))


def check_compatible(sources: Sequence[BandSource], infos: dict, ref: BandSource) -> None:
    """Refuse a scene whose bands are not all in ``ref``'s CRS (or all without one).

    ``infos`` maps each source to a tuple whose first item is its CRS (None without one).

    Raises
    ------
    BandError
        Naming the odd band's file and both CRSs.
    """
    crs = infos[ref][0]
    for s in sources:
        if (infos[s][0] is None) != (crs is None):  # name the file without a CRS (a PNG renamed .tif, ...)
            odd, other = (s, ref) if infos[s][0] is None else (ref, s)
            raise BandError(
                f"{odd.path}: band {odd.name} has no CRS but {other.name} ({other.path.name}) is in {infos[other][0]}; "
                "all bands of a scene must share one CRS (is it a georeferenced GeoTIFF?)"
            )
        if crs is not None and infos[s][0] != crs:
            # Different CRSs inside one scene are legal for reprojection but almost always a mistake.
            raise BandError(
                f"{s.path}: band {s.name} is in {infos[s][0]} but {ref.name} is in {crs}; "
                "all bands of a scene must share one CRS"
            )


def check_local_frame(sources: Sequence[BandSource], infos: dict, ref: BandSource) -> None:
    """Bands without any georeferencing line up only if they cover one extent at their native pixel sizes
    (:func:`georeferencing`); otherwise a band would be silently cropped or padded onto the others.

    ``infos`` maps each source to a tuple (CRS, transform, (rows, cols), ...).

    Raises
    ------
    BandError
        Naming the band whose extent differs from ``ref``'s.
    """

    def extent(s: BandSource) -> tuple[float, float]:
        (rows, cols), res = infos[s][2], abs(infos[s][1].a)
        return cols * res, rows * res

    for s in sources:
        tol = max(abs(infos[s][1].a), abs(infos[ref][1].a))  # odd sizes: a 20 m band may overhang by one pixel
        if any(abs(a - b) >= tol for a, b in zip(extent(s), extent(ref))):
            (rows, cols), (ref_rows, ref_cols) = infos[s][2], infos[ref][2]
            raise BandError(
                f"{s.path}: band {s.name} has no georeferencing and its {rows} x {cols} px at "
                f"{abs(infos[s][1].a):g} m do not cover the extent of {ref.name} ({ref.path.name}: {ref_rows} x "
                f"{ref_cols} px at {abs(infos[ref][1].a):g} m), so the bands cannot be lined up; give GeoTIFFs "
                "with georeferencing, or bands exported at their native resolution over one extent"
            )


def has_mask_band(ds: Any, index: int) -> bool:
    """Whether band ``index`` of an open raster has a mask band (a GDAL internal or ``.msk`` mask,
    or an alpha band), as opposed to a no-data value or none."""
    from rasterio.enums import MaskFlags

    flags = ds.mask_flag_enums[index - 1]
    return MaskFlags.per_dataset in flags or MaskFlags.alpha in flags


def masked(reflectance: np.ndarray, s: BandSource, window: Window, has_mask: bool) -> np.ndarray:
    """``reflectance`` with NaN where the band's mask band says no data (see :func:`has_mask_band`);
    unchanged for bands without one (no-data values are read apart)."""
    if not has_mask:
        return reflectance
    with open_raster(s.path) as ds:
        mask = ds.read_masks(s.index, window=window)
    reflectance[mask == 0] = np.nan
    return reflectance


def _read(s: BandSource, window: Window) -> np.ndarray:
    try:
        with open_raster(s.path) as ds:
            return ds.read(s.index, window=window)
    except RasterioError as e:
        raise unreadable(s.path, e, s.name) from None


def zero_fill(dn: np.ndarray, so_far: np.ndarray | None = None) -> np.ndarray | None:
    """Accumulate the zero-fill mask over the bands of a scene: DN 0 in every band so far.

    Sentinel-2 products fill pixels outside the swath or the product with 0 in every band,
    while a single band can legitimately hold 0 over very dark targets (NIR over calm water in
    8-bit or L2A exports), so only a zero shared by all bands is fill.

    Parameters
    ----------
    dn : ndarray (rows, cols)
        Digital numbers of the next band (float bands carry no zero-fill and leave the mask as is).
    so_far : ndarray of bool or None
        The mask over the bands seen before (None for the first).

    Returns
    -------
    ndarray of bool or None
        None while no integer band has been seen.
    """
    if dn.dtype.kind not in "ui":
        return so_far
    z = dn == 0
    return z if so_far is None else so_far & z


#: Re-reads a coarser band with its final scaling: the band, and the pixels of the destination grid
#: whose bilinear kernel takes in a pixel whose saturation that scaling moves (the band there differs
#: from the band as read and rescaled by more than float rounding); None when it moves none.
Reread = Callable[[Radiometry], "tuple[np.ndarray, np.ndarray] | None"]


def _read_resampled(
    s: BandSource, info: tuple, rad: Radiometry, dst_crs: CRS | None, dst_transform: Affine,
    dst_shape: tuple[int, int],
) -> tuple[np.ndarray, Reread]:
    """Read the part of a coarser band covering the destination grid and resample it bilinearly,
    its saturated pixels unspread (:func:`resample_coarser`).

    Returns the band and a function that resamples it again from the same digital numbers with
    another scaling (the scene's final one) when that moves which pixels are saturated, else None
    (:data:`Reread`).
    """
    first, reread = _coarser_band(s, info, rad, dst_crs, dst_transform, dst_shape)
    return first(), reread


def _coarser_band(
    s: BandSource, info: tuple, rad: Radiometry, dst_crs: CRS | None, dst_transform: Affine,
    dst_shape: tuple[int, int],
) -> tuple[Callable[[], np.ndarray], Reread]:
    """:func:`_read_resampled` with nothing resampled yet: the digital numbers of the part of a
    coarser band covering the destination grid are read, and it returns a function that resamples
    them at ``rad`` and the :data:`Reread` (which needs only which pixels ``rad`` saturates, not
    the band resampled at ``rad``)."""
    s_crs, s_tr, s_shape, _, nodata = info[:5]
    from rasterio.transform import array_bounds

    west, south, east, north = array_bounds(dst_shape[0], dst_shape[1], dst_transform)
    inv = ~s_tr
    xs, ys = zip(*(inv * (x, y) for x in (west, east) for y in (south, north)))
    c0, c1 = max(0, math.floor(min(xs)) - 2), min(s_shape[1], math.ceil(max(xs)) + 2)
    r0, r1 = max(0, math.floor(min(ys)) - 2), min(s_shape[0], math.ceil(max(ys)) + 2)
    if c1 <= c0 or r1 <= r0:
        return lambda: np.full(dst_shape, np.nan, np.float32), lambda final: None
    win = Window(c0, r0, c1 - c0, r1 - r0)
    dn = _read(s, win)
    # A grid without CRS is a local frame; any projected CRS stands in for it on both sides.
    local = CRS.from_epsg(3857)

    def resample(values: np.ndarray, kernel: Resampling) -> np.ndarray:
        out = np.full(dst_shape, np.nan, np.float32)
        reproject(
            values, out, src_transform=rasterio.windows.transform(win, s_tr), src_crs=s_crs or dst_crs or local,
            dst_transform=dst_transform, dst_crs=dst_crs or s_crs or local, src_nodata=np.nan, dst_nodata=np.nan,
            resampling=kernel,
        )
        return out

    def source(r: Radiometry) -> tuple[np.ndarray, np.ndarray | None]:
        """The band's reflectance at ``r`` on its own grid and its saturated pixels."""
        src = masked(to_reflectance(dn, r, nodata, zeros="keep"), s, win, info[8])
        return src, saturated(dn, src, r)

    at_rad: list[np.ndarray | None] = []  # the pixels ``rad`` saturates, once known

    def first() -> np.ndarray:
        src, sat = source(rad)
        at_rad[:] = [sat]
        return resample_coarser(src, sat, resample)

    def reread(final: Radiometry) -> tuple[np.ndarray, np.ndarray] | None:
        if (final.scale, final.offset) == (rad.scale, rad.offset):
            return None
        sat = at_rad[0] if at_rad else source(rad)[1]
        again = saturated(dn, to_reflectance(dn, final, nodata, zeros="keep"), final)
        moved = np.zeros(dn.shape, bool) if sat is None else sat.copy()
        if again is not None:
            moved ^= again
        if not moved.any():
            return None
        reach = resample(moved.astype(np.float32), Resampling.bilinear) > 0
        src, sat_final = source(final)
        return resample_coarser(src, sat_final, resample), reach

    return first, reread


def _final_saturation(scene: Scene, rereads: dict[str, Reread]) -> Scene:
    """The scene with each coarser band resampled again when its final scaling (float digital
    numbers, a raw export's, the baseline offset dropped) moves which of its pixels are saturated
    (a reflectance of 1.6 is another DN under another scaling)."""
    bands: dict[str, np.ndarray] | None = None
    record = scene.meta.get("radiometry") or {}
    for name, reread in rereads.items():
        r = record[name]
        got = reread(Radiometry(float(r["scale"]), float(r["offset"]), str(r["source"])))
        if got is not None:
            out = got[0]
            out[~scene.valid] = np.nan
            bands = dict(scene.bands) if bands is None else bands
            bands[name] = out
    return scene if bands is None else replace(scene, bands=bands)


def resampled_again(scene: Scene, as_read: Scene) -> Scene:
    """``scene``, which is ``as_read`` with some bands rescaled since (:func:`rescaled`, e.g. by
    :func:`harmonise_scaling`), with its coarser bands resampled again where the new scaling moves
    which of their pixels are saturated.

    :func:`read_scene` resamples a coarser band with its saturated pixels unspread
    (:func:`resample_coarser`), and which pixels are saturated depends on the scaling (reflectance
    1.6 and up: DN 16000 read as x 10000, DN 17000 with the -0.1 offset; read as x 65535 only DN
    65534-65535). Rescaled afterwards, a pixel the new scaling saturates keeps the light the
    bilinear kernel spread over the 16 pixels of 10 m around it (DN 20000 read as x 65535, then
    as x 10000: 0.36-1.23 on ground at 0.25, none of it reading saturated), and one it no longer
    saturates stays a block. So each band :func:`read_scene` resampled (``meta["resampled"]``) is
    read again from its file at its new scaling, as :func:`read_scene` reads it at its final
    scaling, and its pixels whose kernel takes in a pixel whose saturation moved take that
    value; every other pixel is left as rescaled, bit for bit. A band whose file cannot be read
    any more is left as rescaled.

    Parameters
    ----------
    scene : Scene
        The rescaled scene; ``meta["radiometry"]`` holds each band's new scaling.
    as_read : Scene
        The scene its coarser bands were resampled for: its ``meta["radiometry"]`` holds the
        scaling they were resampled at.

    Returns
    -------
    Scene
        ``scene`` itself when nothing moved.
    """
    old, new = as_read.meta.get("radiometry") or {}, scene.meta.get("radiometry") or {}
    bands: dict[str, np.ndarray] | None = None
    for name, where in (scene.meta.get("resampled") or {}).items():
        if name not in scene.bands or name not in old or name not in new:
            continue
        r0, r1 = (Radiometry(float(r[name]["scale"]), float(r[name]["offset"]), str(r[name]["source"]))
                  for r in (old, new))
        if (r0.scale, r0.offset) == (r1.scale, r1.offset):
            continue
        s = BandSource(name, Path(where["path"]), int(where["index"]))
        try:
            with open_raster(s.path) as ds:
                info = _band_info(ds, s)
            got = _coarser_band(s, info, r0, scene.crs, scene.transform, scene.shape)[1](r1)  # not resampled at r0
        except (BandError, RasterioError, OSError):  # its file is gone or changed: left as rescaled
            continue
        if got is None:
            continue
        take = got[1] & scene.valid & np.isfinite(got[0])
        bands = dict(scene.bands) if bands is None else bands
        bands[name] = np.where(take, got[0], scene.bands[name]).astype(np.float32)
    return scene if bands is None else replace(scene, bands=bands)


def resample_coarser(src: np.ndarray, saturated: np.ndarray | None,
                     resample: Callable[[np.ndarray, Resampling], np.ndarray],
                     kernel: Resampling = Resampling.bilinear) -> np.ndarray:
    """A band on another grid, its saturated pixels not spread: a coarser band (20 or 60 m) on a
    finer grid (:func:`read_scene`), or a scene's band on another grid (:func:`imgdiff.reproject_scene`).

    Bilinear interpolation gives each 10 m pixel a share of the four nearest 20 m pixels: a
    saturated 20 m pixel (6.55 reflectance at DN 65535) would brighten the 12 pixels of 10 m
    around the 2 x 2 it covers by 0.4-1.2 reflectance, below the level that
    :func:`imgdiff.radiometry.saturation_mask` keeps out of the change map, and that ring would
    read as change (a saturated 10 m pixel resampled onto a grid offset by a fraction of a pixel
    reads saturated on up to four pixels and lights the ring around them alike). So saturated
    pixels are left out of the interpolation (GDAL renormalises the weights of the valid
    neighbours; the destination pixels centred on a left-out pixel get no value), and the
    destination pixels a saturated pixel covers (nearest) take its value: it stays saturated on
    exactly those pixels, and no other pixel sees it. Without saturated pixels, or with the
    nearest kernel (which spreads nothing), this is ``resample(src, kernel)``.

    Parameters
    ----------
    src : ndarray of float32, shape (rows, cols)
        Reflectance of the band (or its source window) on its own grid, NaN where no data.
    saturated : ndarray of bool or None
        Its saturated pixels (:func:`saturated`, :func:`imgdiff.radiometry.band_saturation`); None
        or none: plain ``kernel``.
    resample : callable
        ``resample(values, kernel)`` -> the (rows, cols) float32 destination array: ``values``
        (shaped as ``src``, NaN as no data) resampled onto the destination grid with
        ``kernel`` (``kernel`` below or ``Resampling.nearest``).
    kernel : rasterio.enums.Resampling
        The kernel of every other pixel (bilinear by default).

    Returns
    -------
    ndarray of float32
        The band on the destination grid, NaN where no data.
    """
    if saturated is None or not saturated.any() or kernel is Resampling.nearest:
        return resample(src, kernel)
    out = resample(np.where(saturated, np.float32(np.nan), src), kernel)
    top = resample(np.where(saturated, src, np.float32(np.nan)), Resampling.nearest)
    hit = np.isfinite(top)
    out[hit] = top[hit]
    return out
