"""Where a raster's pixels lie on the map, and the pixel window of a bounding box.

:func:`georeferencing` gives the CRS and transform of an open raster, placing a file that has
none in a local frame (:data:`LOCAL_FRAME`); :func:`north_up` makes a south-up transform
north-up; :func:`bbox_window` is the window of whole pixels covering a bbox given in lon/lat,
in another CRS, or in the scene's own frame (:data:`SCENE_FRAME`).

Transforms map pixel (column, row) to map (x, y): x = column, y = row, as in rasterio.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from affine import Affine
from rasterio.crs import CRS
from rasterio.warp import transform_bounds
from rasterio.windows import Window

from ..errors import ArgumentTypeError, GridError, NoOverlapError
from ..scene import BAND_RESOLUTION_M

BBox = tuple[float, float, float, float]


#: ``bbox_crs`` value for a bbox in the coordinates of the scene's own transform (its CRS, or its
#: local frame when it has none), e.g. the map bounds of a window of the scene's grid.
SCENE_FRAME = "scene"


#: How :func:`georeferencing` places a raster that has none, as ``scene.meta["georeferencing"]`` says it.
LOCAL_FRAME = "none in the file: local frame (x east, y north, metres), native Sentinel-2 pixel size assumed"


def is_georeferenced(ds: Any) -> bool:
    """Whether an open raster has any georeferencing (a CRS, a geotransform, GCPs or RPCs)."""
    return not (ds.crs is None and ds.transform.is_identity and not ds.gcps[0] and not ds.rpcs)


def georeferencing(ds: Any, band: str | None = None) -> tuple[CRS | None, Affine]:
    """CRS and transform of an open raster, with a local frame for a file that has none.

    A band written without any georeferencing (GDAL then reports the identity transform: one
    unit per pixel, rows running down) is taken as a Sentinel-2 band of unknown place: pixels
    of the band's native size (:data:`imgdiff.scene.BAND_RESOLUTION_M`; 10 m for an unknown
    band), x east and y north in metres, the lower-left corner at (0, 0). Every band of such a
    scene then covers the same extent, a 20 m band lines up with the 10 m ones, and a before
    date written with its transform and an after date written without one share their frame
    when the before's frame has this layout (as the aircraft_s2sim chips do).

    Parameters
    ----------
    ds : rasterio dataset
    band : str, optional
        Sentinel-2 band name of the raster (its pixel size when it has no georeferencing).

    Returns
    -------
    crs : CRS or None
    transform : Affine
        Pixel (column, row) -> map (x, y) in ``crs`` units, or in the local frame's metres.
    """
    if is_georeferenced(ds):
        return ds.crs, ds.transform
    res = float(BAND_RESOLUTION_M.get(band or "", 10))
    return None, Affine(res, 0.0, 0.0, 0.0, -res, ds.height * res)


def north_up(transform: Affine, height: int) -> Affine:
    """The north-up transform of a south-up raster (positive pixel height, as some xarray
    writers leave it): the same extent with rows running south; other transforms unchanged.
    A band read onto the north-up grid is resampled from its own rows (flipped exactly)."""
    if transform.b == 0 and transform.d == 0 and transform.e > 0:
        return Affine(transform.a, 0.0, transform.c, 0.0, -transform.e, transform.f + transform.e * height)
    return transform


def in_lonlat_range(bbox: Sequence[float]) -> bool:
    """Whether (west, south, east, north) lie within longitude -180..180 and latitude -90..90 degrees."""
    return all(-180 <= v <= 180 for v in bbox[0::2]) and all(-90 <= v <= 90 for v in bbox[1::2])


def lonlat_bbox_problem(bbox: Sequence[float], name: str = "bbox") -> str | None:
    """What is wrong with ``bbox`` as a lon/lat box, or None when nothing is.

    The rules of a lon/lat bbox, wherever one is given: the CLI's ``--bbox``, :func:`imgdiff.stac.aoi.lonlat_bbox`
    (``resolve_aoi``), a watch manifest's ``bbox:`` and a lon/lat ``bbox`` of :func:`bbox_window` (``read_scene``):
    four finite numbers (west, south, east, north) in degrees, longitude within -180..180 and
    latitude within -90..90 (not map units such as UTM metres), west < east and south < north
    (no corners swapped, no box across the antimeridian).

    Parameters
    ----------
    bbox : sequence of float
        (west, south, east, north), degrees.
    name : str
        What the problem calls the bbox (``"--bbox"`` on the command line).

    Returns
    -------
    str or None
        The problem, one line naming the rule broken, without the bbox's value.
    """
    try:
        parts = tuple(float(v) for v in bbox)
    except (TypeError, ValueError):
        parts = ()
    if len(parts) != 4 or not all(math.isfinite(v) for v in parts):
        return "give four numbers WEST,SOUTH,EAST,NORTH (lon/lat degrees) with west < east, south < north"
    if not in_lonlat_range(parts):
        return (f"{name} is lon/lat degrees WEST,SOUTH,EAST,NORTH (longitude -180..180, latitude -90..90), "
                "not map units")
    w, s, e, n = parts
    if w >= e or s >= n:
        return "give WEST,SOUTH,EAST,NORTH (lon/lat degrees) with west < east, south < north"
    return None


def bbox_window(
    bbox: BBox, bbox_crs: CRS | str | None, crs: CRS | None, transform: Affine, shape: tuple[int, int],
    where: str,
) -> Window:
    """Pixel window (whole pixels, clipped to the raster) covering a bbox.

    ``bbox`` is (minx, miny, maxx, maxy) in ``bbox_crs``: lon/lat (EPSG:4326) when None;
    :data:`SCENE_FRAME` for the coordinates of the raster's own transform.
    For a raster without CRS, a bbox with an explicit ``bbox_crs`` is taken in the coordinates
    of its transform; a lon/lat bbox (``bbox_crs`` None) is refused, as lon/lat zones are
    (:func:`imgdiff.zones.placed`), unless its numbers cannot be lon/lat (then they are the
    transform's coordinates).

    Raises
    ------
    GridError
        A lon/lat bbox on a raster with CRS that breaks the rules of :func:`lonlat_bbox_problem`
        (outside [-180, 180] x [-90, 90], corners swapped), a bbox in another CRS without
        west < east and south < north, or one that could be lon/lat on a raster without CRS.
    NoOverlapError
        The bbox does not intersect the raster.
    ArgumentTypeError
        ``bbox`` is not four finite numbers.
    """
    try:
        numbers = tuple(float(v) for v in bbox)
    except (TypeError, ValueError):
        numbers = ()
    if len(numbers) != 4 or not all(math.isfinite(v) for v in numbers):
        raise ArgumentTypeError(f"{where}: bbox must be four numbers (west, south, east, north), not {bbox!r}")
    bbox = numbers
    lonlat = bbox_crs is None
    if crs is not None and lonlat:  # lon/lat on a placed raster: the rules of every lon/lat bbox
        problem = lonlat_bbox_problem(bbox)
        if problem is not None:
            raise GridError(f"{where}: bbox {bbox}: {problem} (a bbox in another CRS needs bbox_crs)")
    elif bbox[0] >= bbox[2] or bbox[1] >= bbox[3]:
        raise GridError(f"{where}: bbox {bbox} must have west < east and south < north")
    if crs is None and lonlat and in_lonlat_range(bbox):
        raise GridError(f"{where}: the scene has no CRS, so a lon/lat bbox {tuple(bbox)} cannot be placed on it; "
                        "use a georeferenced scene (GeoTIFF with a CRS) or read it whole")
    if crs is not None and not (isinstance(bbox_crs, str) and bbox_crs == SCENE_FRAME):
        src_crs = CRS.from_user_input(bbox_crs) if bbox_crs is not None else CRS.from_epsg(4326)
        bbox = transform_bounds(src_crs, crs, *bbox, densify_pts=21)
    if not all(math.isfinite(v) for v in bbox):
        raise NoOverlapError(f"{where}: bbox does not intersect the scene (it cannot be projected to {crs}); "
                             "check the bbox and its CRS (lon/lat by default)")
    inv = ~transform
    xs, ys = zip(*(inv * (x, y) for x in (bbox[0], bbox[2]) for y in (bbox[1], bbox[3])))
    c0, c1 = max(0, math.floor(min(xs) + 1e-9)), min(shape[1], math.ceil(max(xs) - 1e-9))
    r0, r1 = max(0, math.floor(min(ys) + 1e-9)), min(shape[0], math.ceil(max(ys) - 1e-9))
    if c1 <= c0 or r1 <= r0:
        raise NoOverlapError(
            f"{where}: bbox {tuple(round(v, 6) for v in bbox)} does not intersect the scene; "
            "check the bbox and its CRS (lon/lat by default)"
        )
    return Window(c0, r0, c1 - c0, r1 - r0)
