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

from .errors import ArgumentTypeError, BandError, ReflectanceError

#: Native ground sampling distance of each Sentinel-2 MSI band, in metres.
BAND_RESOLUTION_M: dict[str, int] = {
    "B01": 60, "B02": 10, "B03": 10, "B04": 10, "B05": 20, "B06": 20, "B07": 20,
    "B08": 10, "B8A": 20, "B09": 60, "B10": 60, "B11": 20, "B12": 20,
}
#: Band names in Sentinel-2 product order.
BAND_ORDER: tuple[str, ...] = (
    "B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B10", "B11", "B12",
)

#: The highest typical level (median of a band's positive valid pixels) that reflectance can have: 2.
#: The brightest surfaces, fresh snow and thick cloud, reflect about 0.8-1.0 of the sunlight (up to about 1.5
#: as top-of-atmosphere reflectance under a low sun); saturated pixels and specular glints (1.6-2.8) are a
#: few per scene, too few to move a median. Digital numbers of a product (reflectance x 10000 in L1C/L2A,
#: x 65535 in raw exports) are 100 and up wherever anything but the darkest water is seen: a band whose
#: median exceeds 2 holds numbers, not reflectance (:func:`check_reflectance`; the readers take float files'
#: numbers for digital numbers above the same level, :data:`imgdiff.io.scaling.FLOAT_DN_LEVEL`).
MAX_REFLECTANCE_LEVEL = 2.0
#: Pixels :func:`check_reflectance` samples per band (a regular grid of about 64 x 64): a median from them
#: is within a few per cent of the band's, and the gap between reflectance and digital numbers is 50-fold.
LEVEL_SAMPLES = 4096


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
        (unitless, about 0-1). Invalid pixels are NaN. All bands share one shape. A scene built
        by hand is refused (:class:`~imgdiff.errors.ReflectanceError`, a ``ValueError``) when its
        bands hold digital numbers instead (:func:`check_reflectance`; ``meta["radiometry"]``, the
        readers' record of the scaling they applied, exempts it).
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
        if not (self.meta or {}).get("radiometry"):
            # a scene built by hand (the readers record the scaling they chose and may hold digital
            # numbers while they choose it: float numbers, x 65535 exports)
            check_reflectance(self.bands, self.valid)

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


def check_reflectance(bands: Mapping[str, np.ndarray], valid: np.ndarray) -> None:
    """Refuse bands that hold digital numbers where reflectance (about 0-1) is expected.

    The Sentinel-2 bands among ``bands`` must all have a typical level (:func:`digital_number_band`)
    of at most :data:`MAX_REFLECTANCE_LEVEL`. Read as reflectance, digital numbers make every pixel cloud.
    :class:`Scene` checks the bands it is built with unless its ``meta`` records the scaling applied
    (``meta["radiometry"]``, written by :func:`imgdiff.read_scene` and the tile readers).

    Parameters
    ----------
    bands : Mapping[str, ndarray]
        Band name -> 2-D array (reflectance, unitless), all of ``valid``'s shape.
    valid : ndarray of bool
        Pixels to sample.

    Raises
    ------
    ReflectanceError
        A ``ValueError``, naming the first band (B02 B03 B04 B08, then product order) whose level is higher.
    """
    found = digital_number_band(bands, valid)
    if found is not None:
        name, level = found
        raise ReflectanceError(
            f"Scene bands look like digital numbers (median {name} = {level:.1f}), not reflectance (0-1): "
            "divide by 10000 (L1C/L2A, after subtracting 1000 from processing baseline 04.00 on) or read "
            "the files with imgdiff.read_scene")


def digital_number_band(bands: Mapping[str, np.ndarray], valid: np.ndarray) -> tuple[str, float] | None:
    """The first Sentinel-2 band whose typical level is too high for reflectance, and that level.

    A band's typical level is the median of its positive, finite values over ``valid`` on a regular
    grid of about :data:`LEVEL_SAMPLES` pixels (zero-filled no-data left out). Bands are tried in the
    order B02 B03 B04 B08, then product order; names outside :data:`BAND_ORDER` (other layers a user
    adds are not reflectance) are not tried.

    Parameters
    ----------
    bands : Mapping[str, ndarray]
        Band name -> 2-D array (reflectance, unitless), all of ``valid``'s shape.
    valid : ndarray of bool
        Pixels to sample.

    Returns
    -------
    (str, float) or None
        The band's name and level (in the bands' units) when the level exceeds
        :data:`MAX_REFLECTANCE_LEVEL`; None when every band's is at most that.
    """
    shape = np.shape(valid)
    if len(shape) != 2 or not shape[0] or not shape[1]:
        return None
    step = max(1, math.ceil(math.sqrt(shape[0] * shape[1] / LEVEL_SAMPLES)))
    mask = np.asarray(valid, bool)[::step, ::step]
    for name in sorted((n for n in bands if n in BAND_ORDER), key=_LEVEL_ORDER.index):
        a = np.asarray(bands[name])
        if a.ndim != 2 or a.dtype.kind not in "uif":
            continue
        v = a[::step, ::step][mask]
        with np.errstate(invalid="ignore"):
            v = v[np.isfinite(v) & (v > 0)]
        level = float(np.median(v)) if v.size else 0.0
        if level > MAX_REFLECTANCE_LEVEL:
            return name, level
    return None


#: :func:`check_reflectance`'s order: the visible and NIR 10 m bands first (those a DN scene is named by).
_LEVEL_ORDER = ("B02", "B03", "B04", "B08") + tuple(b for b in BAND_ORDER if b not in ("B02", "B03", "B04", "B08"))


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
