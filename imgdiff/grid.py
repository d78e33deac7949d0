"""Pixel grids: the common grid of two scenes, reprojection and resampling."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
from affine import Affine
from rasterio.crs import CRS
from rasterio.enums import Resampling
from rasterio.transform import array_bounds
from rasterio.warp import reproject, transform_bounds

from ._gdal_memory import IN_MEMORY_DATASETS
from ._repr import short_repr
from .errors import ArgumentTypeError, BandError, NoOverlapError, check_type
from .scene import Scene, band_sort_key, pixel_size_m

_LOCAL = CRS.from_epsg(3857)  # stands in for "no CRS" inside GDAL calls (pure affine)


@dataclass(frozen=True)
class Grid:
    """A raster grid: CRS, pixel -> map transform and size in pixels."""

    crs: CRS | None
    transform: Affine
    width: int
    height: int

    __repr__ = short_repr  # the CRS as its EPSG code, the transform on one line

    @classmethod
    def of(cls, scene: Scene) -> Grid:
        """The grid a scene lies on."""
        return cls(scene.crs, scene.transform, scene.width, scene.height)

    @property
    def shape(self) -> tuple[int, int]:
        """(rows, columns)."""
        return (self.height, self.width)

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """(left, bottom, right, top) in the grid CRS."""
        return array_bounds(self.height, self.width, self.transform)

    @property
    def pixel_size_m(self) -> tuple[float, float]:
        """Pixel size (x, y) in metres."""
        return pixel_size_m(self.crs, self.transform, self.bounds)

    def lonlat_bounds(self) -> tuple[float, float, float, float] | None:
        """(west, south, east, north) in degrees, or None for a grid without CRS."""
        if self.crs is None:
            return None
        return transform_bounds(self.crs, "EPSG:4326", *self.bounds, densify_pts=21)

    def to_dict(self) -> dict:
        """JSON-ready description."""
        return {
            "crs": self.crs.to_string() if self.crs else None,
            "transform": list(self.transform)[:6],
            "width": self.width,
            "height": self.height,
            "bounds": list(self.bounds),
            "pixel_size_m": list(self.pixel_size_m),
        }


def utm_epsg(lon: float, lat: float) -> int:
    """EPSG code of the WGS 84 / UTM zone containing a lon/lat point (degrees)."""
    zone = min(60, max(1, int(math.floor((lon + 180.0) / 6.0)) + 1))
    return (32600 if lat >= 0 else 32700) + zone


def utm_grid(bbox_lonlat: tuple[float, float, float, float], resolution_m: float = 10.0) -> Grid:
    """A north-up UTM grid covering a lon/lat bbox, snapped to multiples of the resolution.

    Parameters
    ----------
    bbox_lonlat : (west, south, east, north)
        Area of interest in degrees (EPSG:4326).
    resolution_m : float
        Pixel size in metres (10 m for Sentinel-2's finest bands).

    Returns
    -------
    Grid
        In the WGS 84 / UTM zone (EPSG:326xx north, 327xx south) of the bbox centre.
    """
    if isinstance(bbox_lonlat, str) or len(bbox_lonlat) != 4:
        raise ArgumentTypeError(f"utm_grid: bbox_lonlat must be four numbers (west, south, east, north) in degrees, "
                                f"not {bbox_lonlat!r}")
    w, s, e, n = bbox_lonlat
    crs = CRS.from_epsg(utm_epsg((w + e) / 2, (s + n) / 2))
    left, bottom, right, top = transform_bounds("EPSG:4326", crs, w, s, e, n, densify_pts=21)
    r = resolution_m
    left, bottom = math.floor(left / r) * r, math.floor(bottom / r) * r
    right, top = math.ceil(right / r) * r, math.ceil(top / r) * r
    return Grid(crs, Affine(r, 0, left, 0, -r, top), int(round((right - left) / r)), int(round((top - bottom) / r)))


def bounds_overlap(a: Grid, b: Grid) -> bool:
    """Whether two grids' footprints intersect (compared in ``a``'s CRS)."""
    bb = b.bounds
    if a.crs is not None and b.crs is not None and a.crs != b.crs:
        bb = transform_bounds(b.crs, a.crs, *bb, densify_pts=21)
    ab = a.bounds
    return bb[0] < ab[2] and bb[2] > ab[0] and bb[1] < ab[3] and bb[3] > ab[1]


def reproject_scene(scene: Scene, grid: Grid, resampling: Resampling = Resampling.bilinear) -> Scene:
    """Resample every band of a scene onto ``grid``.

    Pixels of ``grid`` outside the scene, or whose neighbourhood is no-data,
    become NaN and invalid. A scene already on ``grid`` is returned unchanged.
    A band's saturated pixels (:func:`imgdiff.radiometry.band_saturation`) are not spread by the
    kernel: they keep their value on the pixels of ``grid`` whose centres they cover, and the
    kernel of every other pixel leaves them out (:func:`imgdiff.io.read.resample_coarser`).

    Parameters
    ----------
    scene : Scene
        Any CRS and resolution (a scene without CRS is taken to share the grid's frame).
    grid : Grid
        Target grid, e.g. :func:`utm_grid` or ``Grid.of(other_scene)``.
    resampling : rasterio.enums.Resampling
        Kernel (bilinear by default).

    Returns
    -------
    Scene
        On ``grid``: same band names, date and metadata.
    """
    check_type(scene, Scene, "reproject_scene: scene", "read it with imgdiff.read_scene(path)")
    check_type(grid, Grid, "reproject_scene: grid", "use imgdiff.utm_grid(bbox) or imgdiff.Grid.of(scene)")
    if Grid.of(scene) == grid:
        return scene
    from .io.read import resample_coarser
    from .radiometry import band_saturation

    src_crs = scene.crs or grid.crs or _LOCAL
    dst_crs = grid.crs or scene.crs or _LOCAL

    def resample(values: np.ndarray, kernel: Resampling) -> np.ndarray:
        dst = np.full(grid.shape, np.nan, np.float32)
        with IN_MEMORY_DATASETS:  # one GDAL in-memory dataset at a time (imgdiff._gdal_memory)
            reproject(values, dst, src_transform=scene.transform, src_crs=src_crs, dst_transform=grid.transform,
                      dst_crs=dst_crs, src_nodata=np.nan, dst_nodata=np.nan, resampling=kernel)
        return dst

    bands = {}
    for name, arr in scene.bands.items():
        src = np.where(scene.valid, arr, np.nan).astype(np.float32)
        # saturated pixels stay on the pixels they cover, unspread (as read_scene resamples coarser bands)
        bands[name] = resample_coarser(src, band_saturation(scene, name) & scene.valid, resample, resampling)
    valid = np.logical_and.reduce([np.isfinite(a) for a in bands.values()])
    for a in bands.values():
        a[~valid] = np.nan
    return replace(scene, bands=bands, crs=grid.crs, transform=grid.transform, valid=valid)


@dataclass(frozen=True)
class AlignedPair:
    """Two scenes on one grid, with the bands they share.

    Attributes
    ----------
    before, after : Scene
        Both on ``grid``, with the same band names.
    grid : Grid
        The common grid.
    overlap : ndarray of bool
        True where both scenes hold valid pixels.
    """

    before: Scene
    after: Scene
    grid: Grid
    overlap: np.ndarray

    __repr__ = short_repr  # arrays as their shape and dtype


def common_bands(a: Scene, b: Scene, bands: Sequence[str] | None = None) -> list[str]:
    """Bands both scenes have (optionally restricted to ``bands``), in Sentinel-2 order."""
    shared = sorted(set(a.bands) & set(b.bands), key=band_sort_key)
    if bands is not None:
        missing = [x for x in bands if x not in shared]
        if missing:
            raise BandError(
                f"band(s) {', '.join(missing)} are not in both scenes "
                f"(before has {', '.join(a.bands)}; after has {', '.join(b.bands)})"
            )
        shared = list(bands)
    if not shared:
        raise BandError(
            f"the scenes share no band (before has {', '.join(a.bands)}; after has {', '.join(b.bands)}); "
            "read them with a common --bands list"
        )
    return shared


def align(before: Scene, after: Scene, grid: Grid | None = None, bands: Sequence[str] | None = None, *,
          roles: tuple[str, str] = ("before", "after")) -> AlignedPair:
    """Bring two scenes onto one grid.

    Parameters
    ----------
    before, after : Scene
        Any CRS, resolution or extent.
    grid : Grid, optional
        Target grid; by default the before scene's grid (use :func:`utm_grid`
        for an AOI grid).
    bands : sequence of str, optional
        Bands to keep; default all bands both scenes share.
    roles : (str, str)
        What the two scenes are called in error messages (``("reference", "target")`` for a
        co-registration).

    Returns
    -------
    AlignedPair
        Both scenes resampled onto the grid (bilinear), with the bands they share, and their overlap.

    Raises
    ------
    NoOverlapError
        If the scenes share no valid pixel on the grid.
    """
    check_type(before, Scene, "align: before", "read it with imgdiff.read_scene(path)")
    check_type(after, Scene, "align: after", "read it with imgdiff.read_scene(path)")
    check_type(grid, (Grid, type(None)), "align: grid", "use imgdiff.utm_grid(bbox) or imgdiff.Grid.of(scene)")
    names = common_bands(before, after, bands)
    grid = grid or Grid.of(before)
    for label, s in zip(roles, (before, after)):
        if not bounds_overlap(grid, Grid.of(s)):
            raise NoOverlapError(_no_overlap_message(label, s, grid, before))
    b = reproject_scene(before.select(names), grid)
    a = reproject_scene(after.select(names), grid)
    overlap = b.valid & a.valid
    if not overlap.any():
        raise NoOverlapError(_no_overlap_message(roles[1], after, grid, before) + " (no valid pixel in common)")
    return AlignedPair(b, a, grid, overlap)


def _no_overlap_message(label: str, s: Scene, grid: Grid, before: Scene) -> str:
    def desc(crs: CRS | None, bounds: tuple) -> str:
        return f"{crs.to_string() if crs else 'no CRS'} {tuple(round(v, 4) for v in bounds)}"

    src = s.meta.get("source", label)
    return (
        f"{src}: {label} scene has no pixels inside the common grid "
        f"(grid: {desc(grid.crs, grid.bounds)}; {label}: {desc(s.crs, s.bounds)}); "
        "pass scenes of the same place, or a window both cover (read_scene bbox=, compare/detect --bbox)"
    )
