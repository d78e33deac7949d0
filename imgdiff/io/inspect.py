"""Describing a scene on disk without reading it whole."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from rasterio.enums import Resampling
from rasterio.errors import RasterioError
from rasterio.transform import array_bounds
from rasterio.warp import transform_bounds

from ..scene import pixel_size_m
from .georeferencing import LOCAL_FRAME, bbox_window, georeferencing, is_georeferenced
from .layout import find_band_sources, open_raster, select_bands, unreadable
from .metadata import date_from_sidecar, date_from_tags, date_from_text, find_product_metadata, parse_product_metadata
from .read import check_compatible, check_local_frame

#: Longest side (pixels) at which valid fractions are estimated.
OVERVIEW_SIZE = 1024


def describe_scene(path: str | Path, bands: Sequence[str] | None = None) -> dict[str, Any]:
    """Bands, grid, bounds, date and valid fraction of a scene, JSON-ready.

    The valid fraction is estimated on a decimated read (at most 1024 px on the
    long side), so describing a full tile stays cheap.

    Returns
    -------
    dict
        ``path``, ``crs``, ``bounds`` (scene CRS), ``bounds_lonlat`` (west, south,
        east, north in degrees, or None without CRS), ``shape`` [rows, cols] of the
        finest band, ``pixel_size_m``, ``date``, ``processing_baseline``,
        ``valid_fraction`` and ``bands`` (name, file, resolution in CRS units and
        metres, shape, dtype, nodata).
    """
    path = Path(path)
    sources = select_bands(find_band_sources(path, bands), bands, path)  # a folder lists all its bands
    mtd = find_product_metadata(sources)
    product = parse_product_metadata(mtd) if mtd else {}
    entries, fractions = [], []
    ref, crs_of, placed = None, {}, set()
    for s in sources:
        try:
            with open_raster(s.path) as ds:
                h, w = ds.shape
                f = max(1, int(np.ceil(max(h, w) / OVERVIEW_SIZE)))
                small = ds.read(s.index, out_shape=(max(1, h // f), max(1, w // f)), resampling=Resampling.nearest)
                bad = small == 0 if small.dtype.kind in "ui" else ~np.isfinite(small)
                if ds.nodata is not None:
                    bad |= small == ds.nodata
                fractions.append(1.0 - float(bad.mean()))
                crs, tr = georeferencing(ds, s.name)
                crs_of[s] = (crs, tr, (h, w))
                if is_georeferenced(ds):
                    placed.add(s)
                bounds = array_bounds(h, w, tr)  # west, south, east, north
                res_m = pixel_size_m(crs, tr, bounds)
                entry = {
                    "name": s.name, "file": str(s.path), "index": s.index,
                    "resolution": [abs(tr.a), abs(tr.e)],
                    "resolution_m": [round(res_m[0], 3), round(res_m[1], 3)],
                    "shape": [h, w], "dtype": ds.dtypes[s.index - 1], "nodata": ds.nodata,
                }
                if not is_georeferenced(ds):
                    entry["georeferencing"] = LOCAL_FRAME
                if ref is None or abs(tr.a) < abs(ref["transform"].a):
                    ref = {"crs": crs, "transform": tr, "bounds": tuple(bounds),
                           "shape": [h, w], "tags": ds.tags(), "path": s.path, "source": s}
        except RasterioError as e:
            raise unreadable(s.path, e) from None
        entries.append(entry)
    assert ref is not None
    check_compatible(sources, crs_of, ref["source"])  # as read_scene does: one CRS for every band, and
    if not placed:  # bands without georeferencing that line up
        check_local_frame(sources, crs_of, ref["source"])
    crs = ref["crs"]
    lonlat = list(transform_bounds(crs, "EPSG:4326", *ref["bounds"], densify_pts=21)) if crs else None
    date = (product.get("date") or date_from_tags(ref["tags"]) or date_from_sidecar(ref["path"])
            or date_from_text(ref["path"].name) or date_from_text(str(path.resolve())))
    valid = float(min(fractions))  # a pixel is valid only if every band is
    return {
        "path": str(path),
        "crs": crs.to_string() if crs else None,
        "bounds": list(ref["bounds"]),
        "bounds_lonlat": lonlat,
        "shape": ref["shape"],
        "pixel_size_m": [round(v, 3) for v in pixel_size_m(crs, ref["transform"], ref["bounds"])],
        "date": date.isoformat() if date else None,
        "processing_baseline": product.get("baseline") or ref["tags"].get("PROCESSING_BASELINE") or None,
        "valid_fraction": round(valid, 4),
        "bands": entries,
    }


def check_decodes(path: str | Path, bands: Sequence[str] | None = None, bbox: Sequence[float] | None = None) -> None:
    """Decode, block by block, every part of a scene's band files that reading it (within ``bbox``, lon/lat)
    would touch, keeping nothing: a file whose header is whole but whose pixel blocks are damaged passes
    :func:`describe_scene` and fails only when read.

    Raises
    ------
    InputError
        Naming the band file that cannot be decoded, and GDAL's reason.
    """
    from rasterio.windows import intersect

    path = Path(path)
    for s in select_bands(find_band_sources(path, bands), bands, path):
        try:
            with open_raster(s.path) as ds:
                wanted = None
                if bbox is not None:
                    crs, tr = georeferencing(ds, s.name)
                    wanted = bbox_window(tuple(bbox), None, crs, tr, ds.shape, str(s.path))
                for _, block in ds.block_windows(s.index):
                    if wanted is None or intersect([block, wanted]):
                        ds.read(s.index, window=block)
        except RasterioError as e:
            raise unreadable(s.path, e) from None
