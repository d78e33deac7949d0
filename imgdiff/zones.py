"""Named zones (harbour basin, naval piers, apron, ...): polygons in map coordinates."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import shapely
from affine import Affine
from rasterio.crs import CRS
from rasterio.errors import CRSError
from rasterio.features import rasterize
from rasterio.warp import transform_geom
from shapely.geometry import mapping, shape
from shapely.ops import unary_union

from ._gdal_memory import IN_MEMORY_DATASETS
from .detect.base import Detections
from .errors import GridError, InputError, check_type
from .io.layout import one_line

WGS84 = CRS.from_epsg(4326)
#: Property keys that name a zone, in order of preference (any letter case); then the feature's own ``id``.
NAME_KEYS = ("zone", "name", "id", "label", "title")


@dataclass(frozen=True)
class Zones:
    """Named polygons in one CRS.

    Attributes
    ----------
    geometries : Mapping[str, shapely geometry]
        Zone name -> (Multi)Polygon in ``crs`` coordinates.
    crs : CRS or None
        CRS of the geometries; GeoJSON files are lon/lat (EPSG:4326, RFC 7946).
        None: coordinates of a scene's transform (imagery without placement).
    properties : Mapping[str, dict]
        Zone name -> the properties of its (first) GeoJSON feature.
    """

    geometries: Mapping[str, Any]
    crs: CRS | None = WGS84
    properties: Mapping[str, dict] = field(default_factory=dict)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self.geometries)

    def to_crs(self, crs: CRS | None) -> Zones:
        """The zones reprojected to ``crs`` (unchanged when either side has no CRS)."""
        if crs is None or self.crs is None or crs == self.crs:
            return self
        geoms = {n: shape(transform_geom(self.crs, crs, mapping(g))) for n, g in self.geometries.items()}
        return replace(self, geometries=geoms, crs=crs)

    def to_geojson(self) -> dict:
        """A GeoJSON FeatureCollection (coordinates in ``crs``)."""
        return {
            "type": "FeatureCollection",
            "features": [
                {"type": "Feature", "properties": {**self.properties.get(n, {}), "zone": n}, "geometry": mapping(g)}
                for n, g in self.geometries.items()
            ],
        }


def _repaired(g: Any, name: str, where: str) -> Any:
    """An invalid zone polygon (a ring drawn across itself, a bow tie) made valid the way QGIS' "Fix
    geometries" does (:func:`shapely.make_valid`), its polygonal parts kept; InputError when no area is left."""
    from shapely.validation import explain_validity

    fixed = shapely.make_valid(g)
    parts = [p for p in getattr(fixed, "geoms", [fixed]) if p.geom_type in ("Polygon", "MultiPolygon")]
    if not parts or sum(p.area for p in parts) == 0:
        raise InputError(f"{where}: zone {name!r} is not a valid polygon ({explain_validity(g)}) and encloses no "
                         "area once repaired; give it at least three distinct corners")
    return shapely.unary_union(parts)


def zone_name(properties: Mapping[str, Any], feature_id: Any = None, *, default: str,
              key: str | None = None) -> str:
    """A feature's zone name: the first of :data:`NAME_KEYS` (or only ``key``) among its properties
    (any letter case), else its GeoJSON ``id``, else ``default``."""
    lower = {str(k).lower(): v for k, v in properties.items() if v is not None and str(v).strip()}
    for k in (key.lower(),) if key else NAME_KEYS:
        if k in lower:
            return str(lower[k])
    return str(feature_id) if feature_id is not None else default


def zones_from_geojson(obj: Mapping[str, Any], *, crs: CRS | None = WGS84, where: str = "zones",
                       name_key: str | None = None) -> Zones:
    """Zones from a GeoJSON FeatureCollection; features sharing a name (:func:`zone_name`, by
    ``name_key`` when given) are merged."""
    if obj.get("type") in ("Polygon", "MultiPolygon", "GeometryCollection"):
        raise InputError(f"{where}: a bare {obj.get('type')} geometry has no zone name; write a FeatureCollection "
                         "of Features with a 'name' property each")
    feats = obj.get("features") if obj.get("type") == "FeatureCollection" else [obj]
    if not feats:
        raise InputError(f"{where}: no features; expected a GeoJSON FeatureCollection of named polygons")
    if not isinstance(feats, list):
        raise InputError(f"{where}: 'features' is not a list; expected a GeoJSON FeatureCollection of named polygons")
    parts: dict[str, list] = {}
    props: dict[str, dict] = {}
    for i, f in enumerate(feats):
        if not isinstance(f, Mapping):
            raise InputError(f"{where}: feature {i + 1} is not a GeoJSON Feature object ({f!r})")
        p = f.get("properties") or {}
        if not isinstance(p, Mapping):
            raise InputError(f"{where}: feature {i + 1}: 'properties' is not an object ({p!r})")
        name = zone_name(p, f.get("id"), default=f"zone{i + 1}", key=name_key)
        if f.get("type") == "Feature" and f.get("geometry") is None:
            continue  # an unlocated feature (valid GeoJSON): no zone
        try:
            g = shapely.force_2d(shape(f["geometry"]))  # heights ([lon, lat, z], QGIS/KML exports) are dropped
        except (KeyError, TypeError, ValueError, AttributeError, shapely.errors.ShapelyError) as e:
            raise InputError(f"{where}: feature {name!r} has no valid geometry ({one_line(e)})") from None
        if g.geom_type not in ("Polygon", "MultiPolygon") or g.is_empty:
            continue  # empty coordinates are a null geometry (RFC 7946, 3.1): no zone, as above
        if not g.is_valid:  # a self-intersecting ring breaks every overlay later (GEOS TopologyException)
            g = _repaired(g, name, where)
        parts.setdefault(name, []).append(g)
        props.setdefault(name, dict(p))
    if not parts:
        raise InputError(f"{where}: no Polygon features; zones must be polygons")
    return Zones({n: unary_union(gs) if len(gs) > 1 else gs[0] for n, gs in parts.items()}, crs, props)


def in_scene_frame(zones: Zones) -> Zones | None:
    """The zones in a scene's own coordinates when theirs cannot be lon/lat; None otherwise.

    A GeoJSON file is lon/lat (RFC 7946), but zones drawn on imagery without placement (a
    scene without CRS, such as a chip in a local 10 m frame) carry the coordinates of that
    scene's transform. Coordinates outside [-180, 180] x [-90, 90] cannot be lon/lat, so
    such zones are returned without CRS (:attr:`Zones.crs` None: the coordinates of a scene's
    transform). Zones in a projected CRS, or whose coordinates could be lon/lat, give None:
    they cannot be placed on a scene without CRS.
    """
    if zones.crs is None:
        return zones
    if not zones.crs.is_geographic or not zones.geometries:
        return None
    b = np.array([g.bounds for g in zones.geometries.values() if not g.is_empty]).reshape(-1, 4)  # no union
    if not len(b):
        return None
    x0, y0, x1, y1 = b[:, 0].min(), b[:, 1].min(), b[:, 2].max(), b[:, 3].max()
    if -180 <= x0 and x1 <= 180 and -90 <= y0 and y1 <= 90:
        return None
    return replace(zones, crs=None)


#: How to get :class:`Zones`, for the type errors of functions that take them.
ZONES_HINT = "load them with imgdiff.load_zones('tartus') or imgdiff.load_zones('zones.geojson')"


def placed(zones: Zones, crs: CRS | None, *, where: str = "scene") -> Zones:
    """The zones in a scene's CRS, or in its own coordinates when it has none.

    The one rule for putting zones on a scene: reprojected to ``crs`` (:meth:`Zones.to_crs`).
    Zones whose coordinates cannot be lon/lat although their file does not name another CRS
    (:func:`in_scene_frame`: e.g. UTM metres written into a GeoJSON without its ``crs`` member)
    are taken in the scene's own coordinates: its CRS, or its transform's frame when it has none.

    Parameters
    ----------
    zones : Zones
    crs : CRS or None
        The scene's CRS; None for imagery without placement.
    where : str
        What the scene is (its path), for the error message.

    Raises
    ------
    GridError
        The scene has no CRS and the zones are in map coordinates (e.g. lon/lat): they cannot be
        placed on it (they would silently fall outside every pixel).
    ArgumentTypeError
        ``zones`` is not :class:`Zones` (e.g. a site name or a file name: load it with
        :func:`imgdiff.load_zones`).
    """
    check_type(zones, Zones, "zones", ZONES_HINT)
    local = in_scene_frame(zones) if zones.crs is not None else None
    if local is not None and crs is not None:
        return replace(local, crs=crs)  # numbers that cannot be lon/lat: the scene's own map coordinates
    if crs is None and zones.crs is not None:
        if local is None:
            raise GridError(f"{where}: the scene has no CRS, so zones in {zones.crs.to_string()} cannot be placed "
                            "on it; use a georeferenced scene (GeoTIFF with a CRS) or give the zones in the "
                            "coordinates of the scene's transform")
        return local
    return zones.to_crs(crs)


def read_zones(path: str | Path, *, name_key: str | None = None) -> Zones:
    """Read zones from a GeoJSON file (lon/lat unless it names another CRS).

    A zone's name is its feature's ``zone``, ``name``, ``id``, ``label`` or ``title`` property (any
    letter case; only ``name_key`` when given), else the feature's ``id``.
    """
    check_type(path, (str, os.PathLike), "read_zones: path", "the path of a GeoJSON zones file (a Zones needs no reading)")
    path = Path(path)
    obj = _geojson(path)
    crs: CRS | None = WGS84
    member = obj.get("crs") or {}
    named = (member.get("properties") or {}).get("name") if isinstance(member, Mapping) else None
    if member and not named:
        raise InputError(f"{path}: its 'crs' member {member!r} does not name a CRS; drop it (GeoJSON is lon/lat, "
                         'RFC 7946) or write {"type": "name", "properties": {"name": "EPSG:32636"}}')
    if named:
        try:
            crs = CRS.from_user_input(named)
        except CRSError as e:
            raise InputError(f"{path}: its 'crs' member names an unknown CRS {named!r} ({e})") from None
    return zones_from_geojson(obj, crs=crs, where=str(path), name_key=name_key)


def property_values(path: str | Path) -> dict[str, set[str]]:
    """Every property key of a zones file's features (lower case) -> the values it takes, as text:
    where else than :data:`NAME_KEYS` a file may name its zones (``zone_name``, ``berth``)."""
    obj = _geojson(Path(path))
    feats = obj.get("features") if obj.get("type") == "FeatureCollection" else [obj]
    out: dict[str, set[str]] = {}
    for f in feats or []:
        for k, v in ((f.get("properties") or {}) if isinstance(f, Mapping) else {}).items():
            if v is not None and str(v).strip():
                out.setdefault(str(k).lower(), set()).add(str(v))
    return out


def _geojson(path: Path) -> dict:
    try:
        obj = json.loads(path.read_text(encoding="utf-8-sig"))  # a byte-order mark is allowed
    except FileNotFoundError:
        raise InputError(f"{path}: no such zones file") from None
    except (OSError, ValueError) as e:
        raise InputError(f"{path}: not a readable GeoJSON file ({e})") from None
    if not isinstance(obj, Mapping):
        raise InputError(f"{path}: not a GeoJSON object")
    return dict(obj)


def inside_mask(geom: Any, transform: Affine, shape_: tuple[int, int], *, all_touched: bool = False) -> np.ndarray:
    """Boolean mask of a geometry on a grid: pixels whose centre lies inside (``all_touched``: every
    pixel it touches). ``geom`` is a shapely geometry or GeoJSON mapping in the grid's coordinates.
    Safe to call from several threads."""
    g = geom if isinstance(geom, Mapping) else mapping(geom)
    with IN_MEMORY_DATASETS:  # one GDAL in-memory dataset at a time (imgdiff._gdal_memory)
        return rasterize([(g, 1)], out_shape=shape_, transform=transform, fill=0, dtype="uint8",
                         all_touched=all_touched).astype(bool)


def zone_masks(zones: Zones, crs: CRS | None, transform: Affine, shape_: tuple[int, int]) -> dict[str, np.ndarray]:
    """Boolean mask of every zone on a grid (pixels whose centre lies inside).

    Zones are placed with :func:`placed` (a grid without CRS takes zones in its own coordinates).
    """
    z = placed(zones, crs, where="grid")
    return {n: inside_mask(g, transform, shape_) for n, g in z.geometries.items()}


def assign_zones(detections: Detections, zones: Zones, *, keep_outside: bool = True) -> Detections:
    """Label each detection with the zone holding its centroid (first match in zone order).

    Where zones overlap (a berth inside a harbour), ``extra["zones"]`` lists every zone holding
    the centroid, and :meth:`~imgdiff.detect.base.Detection.in_zone` answers for each. With
    ``keep_outside=False`` detections outside every zone are dropped.
    """
    z = placed(zones, detections.crs, where="detections")
    pts = detections.map_centers()
    items = []
    for d, (x, y) in zip(detections.items, pts):
        p = shapely.Point(x, y)
        names = [n for n, g in z.geometries.items() if g.covers(p)]
        if not names and not keep_outside:
            continue
        extra = {k: v for k, v in d.extra.items() if k != "zones"}
        if len(names) > 1:
            extra["zones"] = names
        items.append(replace(d, zone=names[0] if names else None, extra=extra))
    return replace(detections, items=tuple(items))
