"""The :class:`Scene`: a georeferenced stack of Sentinel-2 bands on one grid."""

from __future__ import annotations

import datetime as _dt
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from affine import Affine
from rasterio.crs import CRS

from .errors import ArgumentTypeError, BandError

#: Native ground sampling distance of each Sentinel-2 MSI band, in metres.
BAND_RESOLUTION_M: dict[str, int] = {
    "B01": 60, "B02": 10, "B03": 10, "B04": 10, "B05": 20, "B06": 20, "B07": 20,
    "B08": 10, "B8A": 20, "B09": 60, "B10": 60, "B11": 20, "B12": 20,
}
#: Band names in Sentinel-2 product order.
BAND_ORDER: tuple[str, ...] = (
    "B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B10", "B11", "B12",
)


def band_sort_key(name: str) -> int:
    """Position of a band in Sentinel-2 product order (unknown names last)."""
    return BAND_ORDER.index(name) if name in BAND_ORDER else len(BAND_ORDER)


@dataclass(frozen=True)
class Scene:
    """Bands of one acquisition on one pixel grid.

    Attributes
    ----------
    bands : Mapping[str, ndarray]
        Band name (``"B02"``, ``"B8A"``, ...) -> 2-D float32 array of reflectance
        (unitless, about 0-1). Invalid pixels are NaN. All bands share one shape.
    crs : rasterio.crs.CRS or None
        CRS of the grid; None for imagery without placement (``transform`` is then
        a local frame, usually in metres).
    transform : affine.Affine
        Pixel -> map transform. Pixel (x=column, y=row) spans [x, x+1) x [y, y+1).
    valid : ndarray of bool
        True where every band holds a valid reflectance.
    date : datetime.date or None
        Acquisition date.
    meta : Mapping[str, Any]
        Provenance: source paths, processing baseline, scale and offset applied, window read.
    """

    bands: Mapping[str, np.ndarray]
    crs: CRS | None
    transform: Affine
    valid: np.ndarray
    date: _dt.date | None = None
    meta: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        shapes = {np.shape(a) for a in self.bands.values()}
        if len(shapes) > 1:
            raise BandError(f"bands of a Scene must share one shape, got {sorted(shapes)}")
        if self.bands and np.shape(self.valid) != next(iter(shapes)):
            raise BandError("the valid mask must have the shape of the bands")

    def __repr__(self) -> str:
        # one line: band names, grid and date, not the arrays (a notebook cell would print pages)
        from ._repr import crs_text

        try:
            size = tuple(round(v, 2) for v in self.pixel_size_m)
        except Exception:  # a repr must not fail (e.g. a transform no CRS can place)
            size = None
        return (f"Scene(bands={self.band_names}, shape={self.shape}, crs={crs_text(self.crs)}, "
                f"pixel_size_m={size}, date={self.date}, valid_fraction={self.valid_fraction():.3f})")

    # -- geometry -----------------------------------------------------------------
    @property
    def shape(self) -> tuple[int, int]:
        """(rows, columns) of the grid."""
        return tuple(np.shape(self.valid))  # type: ignore[return-value]

    @property
    def height(self) -> int:
        return self.shape[0]

    @property
    def width(self) -> int:
        return self.shape[1]

    @property
    def band_names(self) -> tuple[str, ...]:
        return tuple(self.bands)

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """(left, bottom, right, top) in the scene CRS."""
        from rasterio.transform import array_bounds

        west, south, east, north = array_bounds(self.height, self.width, self.transform)
        return (west, south, east, north)

    @property
    def pixel_size_m(self) -> tuple[float, float]:
        """Ground size (x, y) of a pixel in metres, at the scene centre."""
        return pixel_size_m(self.crs, self.transform, self.bounds)

    # -- access -------------------------------------------------------------------
    def band(self, name: str) -> np.ndarray:
        """One band as a 2-D float32 array; raises :class:`BandError` if absent."""
        try:
            return self.bands[name]
        except KeyError:
            raise BandError(
                f"band {name} is not in the scene (has {', '.join(self.bands) or 'none'})"
            ) from None

    def stack(self, names: Iterable[str] | None = None) -> np.ndarray:
        """Bands as a (n_bands, rows, columns) float32 array, in the given order (default all bands)."""
        check_band_list(names, "Scene.stack: names", "Scene.band(name) gives one band")
        names = list(self.bands) if names is None else list(names)
        if not names:
            return np.empty((0, *self.shape), np.float32)
        return np.stack([self.band(n) for n in names]).astype(np.float32, copy=False)

    def select(self, names: Iterable[str]) -> Scene:
        """A scene with only the named bands (the valid mask is kept)."""
        check_band_list(names, "Scene.select: names", "Scene.band(name) gives one band")
        return replace(self, bands={n: self.band(n) for n in names})

    def valid_fraction(self) -> float:
        """Fraction of pixels that are valid, in [0, 1]."""
        return float(np.mean(self.valid)) if self.valid.size else 0.0


def check_band_list(names: object, where: str, hint: str = "") -> None:
    """Refuse a single string where a list of band names is expected (it would be read letter by letter).

    ``where`` names the function and parameter (``"read_scene: bands"``); ``hint`` is appended.
    """
    if isinstance(names, str):
        raise ArgumentTypeError(f"{where} must be a list of band names, e.g. [{names!r}], not the string {names!r}"
                                + (f"; {hint}" if hint else ""))


def pixel_size_m(
    crs: CRS | None, transform: Affine, bounds: tuple[float, float, float, float] | None = None
) -> tuple[float, float]:
    """Ground size (x, y) of one pixel in metres, at the grid centre.

    Measured on the ground (great-circle distance on a sphere of radius
    6371008.8 m between the centre pixel's corners), so geographic grids
    (degrees) and Web Mercator exports (EPSG:3857, whose metres shrink by
    cos(latitude)) get their true size. A grid without CRS is taken to be in metres.
    """
    sx, sy = abs(transform.a), abs(transform.e)
    if crs is None:
        return sx, sy
    from rasterio.warp import transform as warp_transform

    if bounds is None:
        cx, cy = transform.c, transform.f
    else:
        cx, cy = (bounds[0] + bounds[2]) / 2, (bounds[1] + bounds[3]) / 2
    dx, dy = transform.a, transform.e
    lon, lat = warp_transform(crs, "EPSG:4326", [cx, cx + dx, cx], [cy, cy, cy + dy])
    return _great_circle_m(lon[0], lat[0], lon[1], lat[1]), _great_circle_m(lon[0], lat[0], lon[2], lat[2])


def _great_circle_m(lon1: float, lat1: float, lon2: float, lat2: float) -> float:
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * 6371008.8 * math.asin(math.sqrt(min(1.0, a)))
