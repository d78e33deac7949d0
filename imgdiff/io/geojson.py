"""Detections -> GeoJSON FeatureCollection (one Polygon per object, in the scene CRS)."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from ..detect.base import Detection, Detections
from ..errors import check_type
from .write import atomic_path


def _num(v: Any) -> Any:
    """JSON-ready number: NaN/inf -> None, numpy scalars -> Python, floats rounded."""
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, float):
        return None if not math.isfinite(v) else round(v, 6)
    return v


def _clean(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_clean(v) for v in obj]
    return _num(obj)


def detection_feature(dets: Detections, d: Detection, index: int,
                      lonlat: tuple[float, float] | None = None) -> dict[str, Any]:
    """One GeoJSON Feature: the box as a Polygon in map coordinates, the measurements as properties
    (with ``centroid_lonlat``, degrees, when ``lonlat`` is given)."""
    ring = [[float(x), float(y)] for x, y in dets.map_polygon(d)]
    # exterior rings counter-clockwise (RFC 7946): the pixel box is clockwise in y-down pixels, so a
    # north-up map transform already makes it counter-clockwise; reverse if the transform flips it.
    area2 = sum(x0 * y1 - x1 * y0 for (x0, y0), (x1, y1) in zip(ring[:-1], ring[1:]))
    if area2 < 0:
        ring = ring[::-1]
    mx, my = (float(v) for v in dets.map_centers()[index])
    props = {
        "id": index,
        "class": d.cls,
        "score": d.score,
        "length_m": d.length_m,
        "width_m": d.width_m,
        "heading_deg": d.heading_deg,
        "zone": d.zone,
        "centroid_px": list(d.center),
        "centroid_map": [mx, my],
        **({"centroid_lonlat": [round(lonlat[0], 7), round(lonlat[1], 7)]} if lonlat is not None else {}),
        "box_px": list(d.box),
        **d.extra,
    }
    return {"type": "Feature", "id": index, "properties": _clean(props),
            "geometry": {"type": "Polygon", "coordinates": [ring]}}


def detections_to_geojson(dets: Detections) -> dict[str, Any]:
    """A GeoJSON FeatureCollection of the detections, coordinates in the scene CRS.

    The CRS is named in a top-level ``crs`` member (the GeoJSON 2008 convention, read back by
    :func:`imgdiff.zones.read_zones`); each feature also carries its centroid in lon/lat degrees
    (``centroid_lonlat``, WGS 84) for tools that expect RFC 7946 coordinates. A scene without CRS
    gives coordinates of its transform and no ``crs`` member (nor lon/lat).
    """
    from rasterio.warp import transform

    fc: dict[str, Any] = {"type": "FeatureCollection"}
    lonlat: list[tuple[float, float] | None] = [None] * len(dets.items)
    if dets.crs is not None:
        epsg = dets.crs.to_epsg()
        name = f"urn:ogc:def:crs:EPSG::{epsg}" if epsg else dets.crs.to_wkt()
        fc["crs"] = {"type": "name", "properties": {"name": name}}
        if len(dets.items):
            c = dets.map_centers()
            lon, lat = transform(dets.crs, "EPSG:4326", list(c[:, 0]), list(c[:, 1]))
            lonlat = list(zip(lon, lat))
    fc["features"] = [detection_feature(dets, d, i, lonlat[i]) for i, d in enumerate(dets.items)]
    return fc


def write_detections_geojson(path: str | Path, dets: Detections) -> Path:
    """Write :func:`detections_to_geojson` atomically (temporary name, then moved into place).

    Parameters
    ----------
    path : str or Path
        The ``.geojson`` file (replaced if it exists).
    dets : Detections
        From a detector; boxes become polygons in the scene CRS (named in the ``crs`` member),
        each with its centroid in lon/lat as ``centroid_lonlat``.

    Returns
    -------
    Path
        ``path``.
    """
    check_type(path, (str, os.PathLike), "write_detections_geojson: path", "the arguments are (path, detections)")
    check_type(dets, Detections, "write_detections_geojson: dets", "the arguments are (path, detections)")
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(detections_to_geojson(dets), indent=1) + "\n", encoding="utf-8")
    return path
