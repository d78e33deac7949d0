"""Detections: the one result type of every object detector (vessels, aircraft)."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from affine import Affine
from rasterio.crs import CRS


@dataclass(frozen=True)
class Detection:
    """One detected object.

    Attributes
    ----------
    box : (x0, y0, x1, y1)
        Pixel-edge box (x = column, y = row; rasterio convention), in pixels of the scene grid.
    score : float
        Confidence in [0, 1].
    cls : str
        Object class, e.g. ``"vessel"`` or ``"aircraft"``.
    length_m, width_m : float
        Size along the major / minor axis in metres (NaN if unknown).
    heading_deg : float
        Direction of the major axis (or of motion, if ``moving``) in degrees clockwise
        from grid north (up), in [0, 360) or [0, 180) for an axis; NaN if not estimable.
    zone : str or None
        Name of the zone holding the centroid, if zones were given (the first one listed when
        zones overlap; ``extra["zones"]`` then names all of them, see :meth:`in_zone`).
    centroid : (x, y)
        Centroid in pixel coordinates (x = column, y = row; pixel centres at +0.5).
    extra : dict
        Detector-specific properties (e.g. ``moving``, ``speed_kn``), JSON-ready.
    """

    box: tuple[float, float, float, float]
    score: float
    cls: str
    length_m: float = math.nan
    width_m: float = math.nan
    heading_deg: float = math.nan
    zone: str | None = None
    centroid: tuple[float, float] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def zones(self) -> tuple[str, ...]:
        """Every zone holding the centroid: ``zone``, and the others of overlapping zones."""
        return tuple(self.extra.get("zones") or ((self.zone,) if self.zone is not None else ()))

    def in_zone(self, name: str) -> bool:
        """Whether the centroid lies in zone ``name`` (nested or overlapping zones included)."""
        return name in self.zones

    @property
    def center(self) -> tuple[float, float]:
        """Centroid (x, y) in pixels; the box centre when no centroid was measured."""
        if self.centroid is not None:
            return self.centroid
        x0, y0, x1, y1 = self.box
        return ((x0 + x1) / 2, (y0 + y1) / 2)


@dataclass(frozen=True)
class Detections:
    """Objects detected in one scene, with the grid they were found on.

    Attributes
    ----------
    items : tuple of Detection
        Sorted by descending score.
    crs : CRS or None
        CRS of the scene grid (None for imagery without placement).
    transform : Affine
        Pixel -> map transform of the scene grid.
    pixel_size_m : (float, float)
        Ground size of a pixel (x, y) in metres.
    """

    items: tuple[Detection, ...]
    crs: CRS | None
    transform: Affine
    pixel_size_m: tuple[float, float] = (10.0, 10.0)

    def __len__(self) -> int:
        return len(self.items)

    def __repr__(self) -> str:
        # the count per class and zone, not every detection (``items`` holds them; see to_records)
        from .._repr import crs_text

        classes: dict[str, int] = {}
        for d in self.items:
            classes[d.cls] = classes.get(d.cls, 0) + 1
        size = tuple(round(float(v), 2) for v in self.pixel_size_m)
        return (f"Detections({len(self.items)} items, classes={classes}, zones={self.count_by_zone()}, "
                f"crs={crs_text(self.crs)}, pixel_size_m={size})")

    def __iter__(self):
        return iter(self.items)

    @property
    def boxes(self) -> np.ndarray:
        """(N, 4) float array of pixel boxes [x0, y0, x1, y1]."""
        return np.array([d.box for d in self.items], float).reshape(-1, 4)

    @property
    def scores(self) -> np.ndarray:
        """(N,) float array of scores."""
        return np.array([d.score for d in self.items], float)

    @property
    def centers(self) -> np.ndarray:
        """(N, 2) pixel centroids (x, y)."""
        return np.array([d.center for d in self.items], float).reshape(-1, 2)

    def map_centers(self) -> np.ndarray:
        """(N, 2) centroids in map coordinates of ``crs`` (or of the transform)."""
        c = self.centers
        if not len(c):
            return c
        xs, ys = self.transform * (c[:, 0], c[:, 1])
        return np.column_stack([xs, ys])

    def map_polygon(self, d: Detection) -> list[tuple[float, float]]:
        """Closed ring of a detection's box corners in map coordinates."""
        x0, y0, x1, y1 = d.box
        ring = [(x0, y0), (x1, y0), (x1, y1), (x0, y1), (x0, y0)]
        return [tuple(self.transform * p) for p in ring]  # type: ignore[misc]

    def filter(self, keep: Iterable[bool] | None = None, *, min_score: float | None = None,
               min_length_m: float | None = None, zones: str | Sequence[str] | None = None) -> Detections:
        """A copy with only the detections that pass every given test.

        Parameters
        ----------
        keep : iterable of bool, optional
            One flag per detection, in ``items`` order.
        min_score : float, optional
            Keep scores >= this (0-1).
        min_length_m : float, optional
            Keep lengths >= this many metres (and unknown lengths, NaN).
        zones : str or sequence of str, optional
            Keep detections in one of these zones, nested or overlapping zones included
            (:meth:`Detection.in_zone`, as :meth:`count_by_zone` counts them); None names
            "outside every zone".

        Raises
        ------
        ValueError
            ``keep`` does not hold one flag per detection.
        """
        if isinstance(zones, str):
            zones = [zones]
        items = list(self.items)
        if keep is not None:
            flags = [bool(k) for k in keep]
            if len(flags) != len(items):
                raise ValueError(f"Detections.filter: keep has {len(flags)} flags for {len(items)} detections")
            items = [d for d, k in zip(items, flags) if k]
        if min_score is not None:
            items = [d for d in items if d.score >= min_score]
        if min_length_m is not None:
            items = [d for d in items if not (d.length_m < min_length_m)]
        if zones is not None:
            items = [d for d in items if any(d.in_zone(z) if z is not None else not d.zones for z in zones)]
        return replace(self, items=tuple(items))

    def to_records(self) -> list[dict[str, Any]]:
        """The detections as a table: one JSON-ready dict per detection, in ``items`` order.

        ``pandas.DataFrame(dets.to_records())`` gives one row per object.

        Returns
        -------
        list of dict
            ``id`` (index in ``items``), ``class``, ``score`` (0-1), ``length_m`` and ``width_m``
            (metres), ``heading_deg`` (degrees clockwise from grid north), ``zone`` and ``zones``,
            ``x_px`` and ``y_px`` (centroid, pixels: x = column, y = row), ``box_px`` ([x0, y0, x1, y1]
            pixel edges), ``x`` and ``y`` (centroid in map units of ``crs``, or of the transform
            when ``crs`` is None), ``lon`` and ``lat`` (centroid, WGS 84 degrees; None without CRS)
            and ``extra`` (the detector's own properties). Unknown numbers (NaN) are None.
        """
        centers = self.map_centers()
        lonlat: list[tuple[float | None, float | None]] = [(None, None)] * len(self.items)
        if self.crs is not None and len(self.items):
            from rasterio.warp import transform as warp_transform

            lon, lat = warp_transform(self.crs, "EPSG:4326", list(centers[:, 0]), list(centers[:, 1]))
            lonlat = list(zip(lon, lat))
        return [
            _json_ready({
                "id": i, "class": d.cls, "score": d.score, "length_m": d.length_m, "width_m": d.width_m,
                "heading_deg": d.heading_deg, "zone": d.zone, "zones": list(d.zones),
                "x_px": d.center[0], "y_px": d.center[1], "box_px": list(d.box),
                "x": centers[i, 0], "y": centers[i, 1], "lon": lonlat[i][0], "lat": lonlat[i][1],
                "extra": dict(d.extra),
            })
            for i, d in enumerate(self.items)
        ]

    def count_by_zone(self) -> dict[str | None, int]:
        """Number of detections per zone name (None = outside every zone; overlapping zones each count theirs)."""
        out: dict[str | None, int] = {}
        for d in self.items:
            for z in d.zones or (None,):  # a detection in nested zones counts in each
                out[z] = out.get(z, 0) + 1
        return out


def _json_ready(obj: Any) -> Any:
    """Numbers as Python floats and ints (NaN and infinities as None), tuples as lists, recursively."""
    if isinstance(obj, dict):
        return {str(k): _json_ready(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple | np.ndarray):
        return [_json_ready(v) for v in obj]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def sorted_detections(items: Iterable[Detection], crs: CRS | None, transform: Affine,
                      pixel_size_m: tuple[float, float]) -> Detections:
    """Build :class:`Detections` with items sorted by descending score (stable)."""
    ordered = sorted(items, key=lambda d: -d.score)
    return Detections(tuple(ordered), crs, transform, pixel_size_m)
