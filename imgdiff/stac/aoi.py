"""The area of interest of a search or fetch: a named site, a zones GeoJSON, or a lon/lat bbox."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

from affine import Affine
from rasterio.crs import CRS
from rasterio.warp import transform_bounds
from rasterio.windows import Window
from shapely.geometry import box, mapping
from shapely.ops import unary_union

from ..errors import InputError, NoOverlapError
from ..io.georeferencing import lonlat_bbox_problem
from ..zones import WGS84, Zones, read_zones

#: Grid step to which fetch windows are snapped, in metres: every Sentinel-2 band
#: (10, 20 and 60 m) then covers exactly the same ground.
SNAP_M = 60.0


def sites_folder() -> Path:
    """``samples/sites`` of the repository (site name -> ``<name>.geojson``, lon/lat)."""
    return Path(__file__).resolve().parents[2] / "samples" / "sites"


def site_zones(name: str) -> Zones:
    """Zones (lon/lat) of a named site: :func:`imgdiff.sites.get_site`, else ``samples/sites/<name>.geojson``."""
    path = sites_folder() / f"{name.lower()}.geojson"
    try:
        from ..sites import get_site
    except ImportError:  # the site catalogue is optional here
        get_site = None
    if get_site is not None:
        try:
            return get_site(name).zones.to_crs(WGS84)
        except InputError:
            if not path.is_file():
                raise
    if not path.is_file():
        raise InputError(f"site {name!r}: unknown (no {path}); pass --zones FILE.geojson or --bbox W,S,E,N")
    return read_zones(path).to_crs(WGS84)


def resolve_aoi(*, site: str | None = None, zones: str | Path | None = None,
                bbox: Sequence[float] | None = None) -> Zones:
    """Zones (lon/lat) of the area of interest; exactly one of ``site``, ``zones``, ``bbox``.

    ``bbox`` is (west, south, east, north) in degrees and becomes one zone named ``bbox``.

    Raises
    ------
    InputError
        Not exactly one area given; a ``bbox`` that is not four finite lon/lat degrees with
        west < east and south < north (map units such as UTM metres, or corners swapped).
    """
    given = [x for x in (site, zones, bbox) if x is not None]
    if len(given) != 1:
        raise InputError("give exactly one area of interest: --site NAME, --zones FILE.geojson or --bbox W,S,E,N")
    if site is not None:
        return site_zones(site)
    if zones is not None:
        return read_zones(zones).to_crs(WGS84)
    assert bbox is not None  # exactly one was given
    w, s, e, n = lonlat_bbox(bbox)
    return Zones({"bbox": box(w, s, e, n)}, WGS84, {"bbox": {}})


def lonlat_bbox(bbox: Sequence[float]) -> tuple[float, float, float, float]:
    """``bbox`` (west, south, east, north, degrees) as four floats, checked by
    :func:`~imgdiff.io.georeferencing.lonlat_bbox_problem` (also importable from here).

    Raises
    ------
    InputError
        Naming the bbox and the rule it breaks.
    """
    problem = lonlat_bbox_problem(bbox)
    if problem is not None:
        raise InputError(f"bbox {bbox!r}: {problem}")
    w, s, e, n = (float(v) for v in bbox)
    return w, s, e, n


def aoi_lonlat_bounds(aoi: Zones) -> tuple[float, float, float, float]:
    """(west, south, east, north) in degrees of all zones together."""
    return tuple(unary_union(list(aoi.to_crs(WGS84).geometries.values())).bounds)  # type: ignore[return-value]


def aoi_geojson(aoi: Zones) -> dict:
    """The union of the zones as one GeoJSON geometry (lon/lat), for a STAC ``intersects`` query."""
    return mapping(unary_union(list(aoi.to_crs(WGS84).geometries.values())))


def snapped_bounds(aoi: Zones, crs: CRS, origin: tuple[float, float], *, margin_m: float = 0.0,
                   snap_m: float = SNAP_M) -> tuple[float, float, float, float]:
    """Bounds of the zones in ``crs`` grown by ``margin_m`` and snapped outward to a ``snap_m`` grid.

    ``origin`` (x, y) is a corner of the raster grid (its transform's c, f), so that the
    snapped bounds fall on pixel edges of every band whose size divides ``snap_m``.
    """
    w, s, e, n = transform_bounds(WGS84, crs, *aoi_lonlat_bounds(aoi), densify_pts=21)
    w, s, e, n = w - margin_m, s - margin_m, e + margin_m, n + margin_m
    ox, oy = origin
    return (ox + math.floor((w - ox) / snap_m) * snap_m, oy + math.floor((s - oy) / snap_m) * snap_m,
            ox + math.ceil((e - ox) / snap_m) * snap_m, oy + math.ceil((n - oy) / snap_m) * snap_m)


def bounds_window(bounds: tuple[float, float, float, float], transform: Affine, shape: tuple[int, int],
                  where: str) -> Window:
    """Whole-pixel window of a north-up raster covering ``bounds`` (its CRS), clipped to the raster.

    Raises
    ------
    NoOverlapError
        When the bounds miss the raster.
    """
    inv = ~transform
    xs, ys = zip(*(inv * (x, y) for x in (bounds[0], bounds[2]) for y in (bounds[1], bounds[3])))
    c0, c1 = max(0, math.floor(min(xs) + 1e-6)), min(shape[1], math.ceil(max(xs) - 1e-6))
    r0, r1 = max(0, math.floor(min(ys) + 1e-6)), min(shape[0], math.ceil(max(ys) - 1e-6))
    if c1 <= c0 or r1 <= r0:
        raise NoOverlapError(f"{where}: the area of interest lies outside this image; pick an item covering the site")
    return Window(c0, r0, c1 - c0, r1 - r0)
