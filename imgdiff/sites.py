"""The site catalogue: named places with zones in map coordinates.

Two sites ship with imgdiff:

``tartus``
    The Port of Tartus (Syria). Zones ``naval_piers`` (the northern basin behind the
    north breakwater, with its pier), ``harbour_basin`` (the rest of the water inside the
    breakwaters, the moles excluded) and ``anchorage`` (open water west of the harbour
    entrance). Laid out by hand from the OpenStreetMap geometry of the port (way
    160479740, its breakwaters and coastline): © OpenStreetMap contributors, ODbL.
``hmeimim``
    Hmeimim air base (ICAO OSLK), around the aerodrome reference point 35.4011 N,
    35.9487 E. Zones ``runway`` (runway 17/35, about 2800 m, heading about 174 degrees),
    ``apron`` (the parking apron beside the runway) and ``shelters`` (the aircraft shelter
    area north of the apron). A schematic layout, not surveyed.

Zones are kept in lon/lat (EPSG:4326, RFC 7946) and reprojected to each scene's CRS by
:meth:`imgdiff.zones.Zones.to_crs`. Anywhere a site is accepted, a GeoJSON zones file
works too (:func:`load_zones`).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rasterio.crs import CRS
from rasterio.warp import transform_geom
from shapely.geometry import Polygon, mapping, shape

from .errors import InputError, check_type
from .zones import WGS84, Zones, read_zones

#: CRS the site layouts are drawn in (UTM zone 36 N, the Sentinel-2 tiles of both sites).
UTM36N = CRS.from_epsg(32636)
OSM_CREDIT = "© OpenStreetMap contributors, ODbL"


@dataclass(frozen=True)
class Site:
    """A named place and its zones.

    Attributes
    ----------
    name : str
        Catalogue key, e.g. ``"tartus"``.
    title : str
        Human-readable name.
    zones : Zones
        Named polygons in lon/lat (EPSG:4326).
    center_lonlat : (float, float)
        Reference point (longitude, latitude) in degrees.
    credit : str or None
        Attribution required by the source of the geometry.
    description : str
    """

    name: str
    title: str
    zones: Zones
    center_lonlat: tuple[float, float]
    credit: str | None = None
    description: str = ""
    utm_crs: CRS = field(default=UTM36N)

    def to_geojson(self) -> dict[str, Any]:
        """An RFC 7946 FeatureCollection (lon/lat) with one feature per zone."""
        feats = []
        for n, g in self.zones.geometries.items():
            props = {"zone": n, "site": self.name, **self.zones.properties.get(n, {})}
            if self.credit:
                props["credit"] = self.credit
            feats.append({"type": "Feature", "properties": props, "geometry": _rounded(mapping(_ccw(g)), 7)})
        return {"type": "FeatureCollection", "name": self.name, "title": self.title,
                "credit": self.credit, "features": feats}


def _ccw(g: Any) -> Any:
    """Exterior rings counter-clockwise, holes clockwise (RFC 7946, section 3.1.6)."""
    from shapely.geometry import MultiPolygon
    from shapely.geometry.polygon import orient

    if g.geom_type == "MultiPolygon":
        return MultiPolygon([orient(p, 1.0) for p in g.geoms])
    return orient(g, 1.0)


def _rounded(geom: Mapping[str, Any], ndigits: int) -> dict[str, Any]:
    def r(c: Any) -> Any:
        if isinstance(c, (int, float)):
            return round(float(c), ndigits)
        return [r(x) for x in c]

    return {"type": geom["type"], "coordinates": r(geom["coordinates"])}


def _utm_zones(polys: Mapping[str, Any], descriptions: Mapping[str, str]) -> Zones:
    """Zones given in UTM 36N metres, converted to lon/lat."""
    geoms = {n: shape(transform_geom(UTM36N, WGS84, mapping(g))) for n, g in polys.items()}
    return Zones(geoms, WGS84, {n: {"description": descriptions[n]} for n in polys})


# --------------------------------------------------------------------------- Tartus
#: The moles of the port (OSM way 160479740, vertices 20-71), UTM 36N metres.
TARTUS_MOLES_UTM: tuple[tuple[int, int], ...] = (
    (763059, 3867532), (763051, 3867297), (763024, 3867250), (762412, 3867042), (762153, 3866954),
    (762146, 3866964), (762130, 3866958), (761750, 3866827), (761759, 3866799), (761577, 3866740),
    (761533, 3866665), (761728, 3866732), (761848, 3866773), (762129, 3866868), (762140, 3866843),
    (762149, 3866845), (762171, 3866837), (762198, 3866762), (762190, 3866742), (762180, 3866737),
    (762173, 3866734), (762179, 3866716), (761670, 3866539), (761643, 3866495), (761628, 3866469),
    (761621, 3866447), (761612, 3866399), (761601, 3866361), (761594, 3866306), (761598, 3866304),
    (762216, 3866518), (762226, 3866494), (762442, 3866577), (762493, 3866435), (761760, 3866190),
    (761780, 3866012), (762545, 3866274), (762569, 3866198), (762285, 3866101), (762311, 3866026),
    (762319, 3866006), (762334, 3865959), (762276, 3865912), (762499, 3865825), (762486, 3865629),
    (762320, 3865618), (762214, 3865634), (762192, 3865623), (762166, 3865596), (762148, 3865567),
    (761432, 3865732), (761496, 3865691), (763200, 3865300), (763200, 3867532),
)
#: Inner edge of the north breakwater, the basin's south mole and its pier (OSM), UTM 36N metres.
TARTUS_NAVAL_PIERS_UTM: tuple[tuple[int, int], ...] = (
    (761285, 3866800), (761530, 3867000), (761650, 3867088), (761820, 3867168), (762372, 3867356),
    (762396, 3867298), (762348, 3867276), (762396, 3867134), (762050, 3867016), (761628, 3866872),
    (761545, 3866716),
)
#: Water inside the breakwaters (entrance to the moles, down to the south breakwater), UTM 36N metres.
TARTUS_HARBOUR_OUTER_UTM: tuple[tuple[int, int], ...] = (
    (760805, 3866790), (761235, 3866775), (761540, 3866700), (762200, 3866790), (762560, 3866790),
    (762560, 3865600), (762200, 3865575), (761430, 3865735), (761300, 3865770), (761150, 3865880),
    (761060, 3865990), (761000, 3866120),
)
TARTUS_ANCHORAGE_UTM: tuple[tuple[int, int], ...] = (
    (759300, 3865350), (760650, 3865350), (760650, 3867500), (759300, 3867500),
)


def _tartus() -> Site:
    moles = Polygon(TARTUS_MOLES_UTM).buffer(0)
    naval = Polygon(TARTUS_NAVAL_PIERS_UTM)
    basin = Polygon(TARTUS_HARBOUR_OUTER_UTM).difference(moles).difference(naval).buffer(0)
    zones = _utm_zones(
        {"naval_piers": naval, "harbour_basin": basin, "anchorage": Polygon(TARTUS_ANCHORAGE_UTM)},
        {
            "naval_piers": "northern basin behind the north breakwater, with its pier (naval berths)",
            "harbour_basin": "water inside the breakwaters, moles excluded (commercial berths)",
            "anchorage": "open water west of the harbour entrance",
        },
    )
    return Site("tartus", "Port of Tartus, Syria", zones, (35.8735, 34.9050), OSM_CREDIT,
                "Zones laid out from OpenStreetMap (port way 160479740, breakwaters, coastline).")


# --------------------------------------------------------------------------- Hmeimim
#: Aerodrome reference point of Hmeimim (OSLK), lon/lat degrees.
HMEIMIM_ARP_LONLAT = (35.9487, 35.4011)
HMEIMIM_RUNWAY_HEADING_DEG = 174.0
HMEIMIM_RUNWAY_LENGTH_M = 2800.0


def grid_heading(lon: float, lat: float, true_deg: float, crs: str = UTM36N) -> float:
    """The direction (degrees clockwise from grid north, [0, 360)) in ``crs`` of a line through (lon, lat)
    whose true bearing is ``true_deg``: grid and true north differ by the meridian convergence (1.7 degrees
    at Hmeimim in UTM 36N), 40 m across a 2.8 km runway."""
    from rasterio.warp import transform

    d = 1000.0 / 6_371_000.0  # 1 km on the sphere, radians: a straight line on the grid at this scale
    az, phi = math.radians(true_deg), math.radians(lat)
    lons = [lon - math.degrees(d * math.sin(az) / math.cos(phi)), lon + math.degrees(d * math.sin(az) / math.cos(phi))]
    lats = [lat - math.degrees(d * math.cos(az)), lat + math.degrees(d * math.cos(az))]
    xs, ys = transform(WGS84, crs, lons, lats)
    return math.degrees(math.atan2(xs[1] - xs[0], ys[1] - ys[0])) % 360.0


def hmeimim_frame() -> tuple[float, float, float]:
    """(x, y, heading_deg) of the runway centre in UTM 36N metres and its heading in grid degrees
    (:data:`HMEIMIM_RUNWAY_HEADING_DEG` true, turned into the grid by :func:`grid_heading`)."""
    from rasterio.warp import transform

    lon, lat = HMEIMIM_ARP_LONLAT
    xs, ys = transform(WGS84, UTM36N, [lon], [lat])
    return float(xs[0]), float(ys[0]), grid_heading(lon, lat, HMEIMIM_RUNWAY_HEADING_DEG)


def oriented_rect(cx: float, cy: float, along_m: Sequence[float], across_m: Sequence[float],
                  heading_deg: float) -> Polygon:
    """A rectangle in a frame whose 'along' axis points to ``heading_deg`` (clockwise from north).

    ``along_m`` = (start, end) and ``across_m`` = (left, right) offsets in metres from
    (cx, cy); positive 'across' is to the right of the heading.
    """
    h = math.radians(heading_deg)
    ux, uy = math.sin(h), math.cos(h)      # along
    vx, vy = math.cos(h), -math.sin(h)     # across (right of heading)
    pts = [(a, c) for a, c in ((along_m[0], across_m[0]), (along_m[1], across_m[0]),
                               (along_m[1], across_m[1]), (along_m[0], across_m[1]))]
    return Polygon([(cx + a * ux + c * vx, cy + a * uy + c * vy) for a, c in pts])


def hmeimim_layout() -> dict[str, Polygon]:
    """Runway, apron, shelters and taxiway polygons in UTM 36N metres.

    The runway heads 174 degrees true (towards the south; 172.3 degrees from UTM grid north); 'across'
    offsets to the left of that heading are east of the runway.
    """
    cx, cy, hd = hmeimim_frame()
    half = HMEIMIM_RUNWAY_LENGTH_M / 2
    return {
        "runway": oriented_rect(cx, cy, (-half, half), (-30, 30), hd),
        "apron": oriented_rect(cx, cy, (-550, 450), (-430, -230), hd),
        "shelters": oriented_rect(cx, cy, (-1150, -650), (-560, -250), hd),
        "taxiway": oriented_rect(cx, cy, (-half + 100, half - 100), (-140, -115), hd),
    }


def _hmeimim() -> Site:
    lay = hmeimim_layout()
    zones = _utm_zones(
        {k: lay[k] for k in ("apron", "shelters", "runway")},
        {
            "apron": "main parking apron east of the runway",
            "shelters": "aircraft shelter area north of the apron",
            "runway": "runway 17/35, ~2800 m x 60 m, heading ~174 degrees",
        },
    )
    return Site("hmeimim", "Hmeimim air base (OSLK), Syria", zones, HMEIMIM_ARP_LONLAT, None,
                "Schematic layout around the aerodrome reference point 35.4011 N, 35.9487 E.")


_BUILDERS = {"tartus": _tartus, "hmeimim": _hmeimim}
_CACHE: dict[str, Site] = {}


def site_names() -> tuple[str, ...]:
    """Names of the sites in the catalogue."""
    return tuple(_BUILDERS)


def get_site(name: str) -> Site:
    """A site of the catalogue by name (case-insensitive).

    Parameters
    ----------
    name : str
        ``"tartus"`` or ``"hmeimim"`` (:func:`site_names`).

    Returns
    -------
    Site
        Name, title, zones (lon/lat, EPSG:4326) and centre.

    Raises
    ------
    InputError
        If the name is unknown.
    """
    check_type(name, str, "get_site: name", f"one of {', '.join(site_names())}")
    key = name.strip().lower()
    if key not in _BUILDERS:
        raise InputError(f"unknown site {name!r}; known sites: {', '.join(site_names())}, "
                         "or pass a GeoJSON zones file")
    if key not in _CACHE:
        _CACHE[key] = _BUILDERS[key]()
    return _CACHE[key]


def load_zones(spec: str | Path | Zones, *, base: str | Path | None = None) -> Zones:
    """Zones from a site name or a GeoJSON zones file.

    Parameters
    ----------
    spec : str, Path or Zones
        A catalogue name (``"tartus"``) or a path to a GeoJSON file of named polygons
        (lon/lat unless the file names another CRS); :class:`Zones` are returned as they are.
    base : str or Path, optional
        Folder relative paths are resolved against (e.g. the claims file's folder).

    Returns
    -------
    Zones
        Named polygons in the CRS of their source (a catalogue site's and GeoJSON's: lon/lat,
        EPSG:4326); detectors and :func:`imgdiff.zones.zone_masks` reproject them to each scene.
    """
    if isinstance(spec, Zones):
        return spec
    check_type(spec, (str, os.PathLike), "load_zones: spec", "a site name or the path of a GeoJSON zones file")
    s = str(spec)
    if s.strip().lower() in _BUILDERS and not Path(s).suffix:
        return get_site(s).zones
    p = Path(s).expanduser()
    if base is not None and not p.is_absolute():
        p = Path(base) / p
    if not p.exists():
        raise InputError(f"{p}: no such zones file and not a known site ({', '.join(site_names())})")
    return read_zones(p)
