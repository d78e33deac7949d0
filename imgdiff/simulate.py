"""Sentinel-2-like scenes with known truth: harbours with moored vessels, aprons with aircraft.

There is no real Sentinel-2 image of Tartus or Hmeimim in this project, so the shipped
samples are *simulated*. A scene is rendered on a fine grid (``SUPERSAMPLE`` sub-pixels
per 10 m pixel) in the real UTM 36N coordinates of the site:

1. land cover polygons (water, quay, concrete, asphalt, soil/vegetation, urban) with TOA-like
   reflectances for B02 B03 B04 B08 B11 and a texture fixed in map coordinates (so it is
   identical on both dates): quays and urban land carry a lognormal clutter (containers,
   sheds, cranes, shadows) on 6 m and 16 m cells plus a smooth 40 m component;
2. objects (vessels, aircraft) drawn as hull polygons and aircraft plan views (fuselage, swept
   tapered wings and tailplane, :func:`aircraft_planform`) with their own reflectance;
3. the sub-pixel misregistration of the date (the image content moves by ``shift_px``:
   a feature at nominal pixel (x, y) appears at (x + dx, y + dy));
4. a point spread function: a Gaussian core (sigma ``PSF_SIGMA_PX`` pixels), area averaging
   to 10 m (B11: 20 m, as on the satellite), and a wide wing (``PSF_TAIL_WEIGHT`` of the energy
   spread with sigma ``PSF_TAIL_SIGMA_M``: adjacency and stray light, water near land brightens);
5. a multiplicative gain of the date, opaque clouds (soft-edged discs), Gaussian noise,
   and quantisation to uint16 DN = reflectance x 10000 + 1000 (processing baseline
   >= 04.00 convention; the band scale/offset are stored in the files).

Calibration (``benchmarks/simulator_realism.py`` measures every figure below the same way on
the real scenes and on the shipped Tartus before scene; real = the seven sen2ships ports, L2A, 212
labelled vessels, and OSCD beirut before/after, L1C; no-data pixels excluded). The L2A ports are
brought to a TOA-like level with one additive path term per band, beirut TOA water - port L2A
water = (0.067, 0.036, 0.023, 0.010, 0.008) for (B02, B03, B04, B08, B11). Medians:

==============================  ================================  ==============================
statistic                       real                              simulated: old -> now
==============================  ================================  ==============================
open water B02 B03 B04 B08      0.094 0.064 0.040 0.025 (beirut)  0.075 0.058 0.036 0.020
                                                                  -> 0.094 0.064 0.040 0.025
quay, land 1-3 px from vessels  ports+path 0.168 0.159 0.161 .165  0.136 0.144 0.153 0.190
B02 B03 B04 B08                 beirut shore 0.145 0.140 0.153 .170 -> 0.156 0.144 0.152 0.171
local std of ln(refl) on land   0.121 / 0.167 / 0.199 (median of  0.024 / 0.036 / 0.046
near vessels, r = 1 / 2 / 3 px  9 scenes; r=1: 0.094-0.237)       -> 0.129 / 0.165 / 0.193
rescorer land_texture           0.406 (ports pooled, p25 0.323)   0.195 -> 0.254
water near land (B08, fraction  +0.214 +0.098 +0.041 +0.028 +0.013  +0.16 +0.01 +0.00 +0.00 +0.00
of the contrast, 1-2-3-4-6 px)                                    -> +0.206 +0.067 +0.041 +0.031 +0.018
open-water noise (3x3 std B08)  0.0007                            0.0023 -> 0.0007
PSF sigma fitted on axis-       0.80 (median of 9 scenes: ports   0.475 -> 0.775
aligned water/land edges, px    0.71-0.88, beirut 0.63-0.65)
hull peak refl, vessels         0.253 0.240 0.260 0.266 0.189     0.263 0.250 0.259 0.289 0.130
90-170 m (+path) B02..B11                                         -> 0.250 0.237 0.259 0.264 0.136
hull peak / quay beside (B08)   1.82 (90-170 m vessels)           1.64 -> 2.02
ln(hull max / water 1-8 px      1.86 (90-170 m)                   2.63 -> 2.17
around), B08
hull pixels / box               0.43 (90-170 m)                   0.37 -> 0.42
==============================  ================================  ==============================

So: water, quays, their clutter at 1-3 px, the blur and the adjacency wing, the noise and the
hulls' blurred peak reflectance now match; still short: the land texture over whole 30 px patches
(real port land mixes more covers: yards, vegetation, dark roofs), and the water right beside
real moored hulls is brighter than here (so simulated hulls stand out ~0.3 ln units more against
it). The real products are resampled grids (sen2ships EPSG:3857, OSCD EPSG:4326): the fitted PSF is
the effective blur a detector sees in them, resampling included; native 10 m optics alone are
sharper (sigma ~0.45-0.5 px from the MTF specification). The scenario is unchanged: the warships
(112-125 m x 15-16 m) are ~1.5 px wide, narrower than most labelled port vessels; hull reflectances
were scaled so that their *blurred* peaks match the real 90-170 m vessels; no superstructure is
modelled. The PSF, wing and noise are sensor properties and apply to Hmeimim too.

Aircraft (``benchmarks/simulator_realism.py --aircraft``): real = the labelled, non-truncated aircraft of
``aircraft_s2sim`` (real 0.5 m airport imagery degraded to 10 m, DN x 1e-4), binned by the long side of their box
(the dataset's "length"); simulated = the Hmeimim transports of both dates (the Il-76 and Tu-154 boxes are 48-50 m,
the An-124's 73 m). Medians, real p25-p75 in brackets; "apron" = the median 3-6 px beyond the box:

=======================================  =========================  ===================  ====================
statistic                                real 45-55 m (n=351)       sim 45-55 m (n=8)    sim 65-80 m (n=2)
                                         real 65-80 m (n=202)       old -> now           old -> now
=======================================  =========================  ===================  ====================
peak excess over the apron (B02-B04)     0.037 (0.019-0.069)        0.081 -> 0.038
                                         0.083 (0.060-0.103)                             0.100 -> 0.048
peak excess / apron                      0.167 (0.085-0.374)        0.499 -> 0.239
                                         0.437 (0.283-0.558)                             0.627 -> 0.306
excess summed over the box / apron, px   1.31 (0.27-4.82)           7.27 -> 3.58
                                         8.20 (3.60-16.4)                                13.9 -> 5.61
pixels above half the peak excess        5 (2-13) / 10 (6-21)       11.5 -> 9.5          17.5 -> 12.5
=======================================  =========================  ===================  ====================

The old aircraft were filled crosses (a full-span rectangular wing of 0.18 L chord: an Il-76 of 698 m2) in white
paint (0.32-0.34 in B02-B04, twice the apron); they are now plan views of the published sizes
(:data:`AIRCRAFT_PLANFORM`: an Il-76 of 523 m2 for a 300 m2 wing) in grey paint (0.24-0.26, about 1.55 x the apron
concrete), one paint for every transport, between the two size classes (the An-124's peak excess is below the
real 65-80 m p25, the Il-76's above the 45-55 m median). Still different: the apron. The ground beside the
aircraft is cleaner (3x3 std of ln reflectance 0.014 against a real median of 0.052, p25 0.033) and brighter than
its 240 m surroundings (the aircraft network's normalised input there 1.3-1.5 against 0.22, real p75 0.42).

Everything is deterministic for a given seed: :func:`write_samples` rebuilds the
shipped samples bit-identically.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from affine import Affine
from rasterio.crs import CRS
from rasterio.features import rasterize
from rasterio.warp import transform as warp_transform
from scipy import ndimage as ndi
from shapely.affinity import rotate, translate
from shapely.geometry import Polygon, box, mapping
from shapely.ops import unary_union

from .scene import Scene
from .sites import (
    TARTUS_HARBOUR_OUTER_UTM,
    TARTUS_MOLES_UTM,
    TARTUS_NAVAL_PIERS_UTM,
    UTM36N,
    get_site,
    hmeimim_frame,
    hmeimim_layout,
    oriented_rect,
)
from .zones import WGS84

#: Bands rendered, in file order.
SIM_BANDS: tuple[str, ...] = ("B02", "B03", "B04", "B08", "B11")
#: Native pixel size of each rendered band, metres.
SIM_RES_M: dict[str, int] = {"B02": 10, "B03": 10, "B04": 10, "B08": 10, "B11": 20}
SUPERSAMPLE = 5
PSF_SIGMA_PX = 0.7  # core of the PSF, of the band's own pixel
PSF_TAIL_WEIGHT = 0.14  # fraction of the energy in the PSF's wide wing
PSF_TAIL_SIGMA_M = 50.0  # sigma of the wing, metres
#: Gaussian noise sigma (reflectance) by band resolution, metres.
NOISE_SD: dict[int, float] = {10: 0.0008, 20: 0.0006}
DN_SCALE = 1e-4
DN_OFFSET = -0.1  # reflectance = DN * 1e-4 - 0.1

#: TOA-like reflectance (B02, B03, B04, B08, B11) of land covers in December, eastern Mediterranean.
COVER_REFLECTANCE: dict[str, tuple[float, ...]] = {
    "water": (0.094, 0.064, 0.040, 0.025, 0.016),
    "quay": (0.141, 0.137, 0.144, 0.147, 0.174),
    "concrete": (0.150, 0.160, 0.170, 0.210, 0.240),
    "asphalt": (0.085, 0.085, 0.090, 0.110, 0.130),
    "soil": (0.100, 0.120, 0.160, 0.240, 0.320),
    "vegetation": (0.065, 0.070, 0.055, 0.300, 0.170),
    "urban": (0.141, 0.133, 0.147, 0.207, 0.213),
    "roof": (0.190, 0.195, 0.200, 0.230, 0.250),
}
#: Reflectance (B02, B03, B04, B08, B11) of object kinds. Ships at 10 m are among the brightest
#: things in a harbour scene (decks, superstructures, containers): labelled sen2ships vessels peak at
#: 0.26-0.40 in B02-B08, about the scene's 99th percentile; a submarine's black hull is the exception.
OBJECT_REFLECTANCE: dict[str, tuple[float, ...]] = {
    "frigate": (0.344, 0.343, 0.392, 0.406, 0.344),
    "landing_ship": (0.308, 0.305, 0.354, 0.369, 0.320),
    "submarine": (0.050, 0.045, 0.040, 0.045, 0.035),
    "cargo": (0.332, 0.297, 0.354, 0.393, 0.369),
    "tanker": (0.296, 0.285, 0.321, 0.351, 0.319),
    "transport": (0.240, 0.250, 0.260, 0.280, 0.260),  # grey paint: see the module docstring's aircraft table
    "fighter": (0.105, 0.110, 0.110, 0.125, 0.115),
}
#: Plan view of aircraft kinds (fractions of the length L or span W; wings and tailplane swept and tapered).
#: Transports: fuselage 0.10 L wide, wing aspect ratio 8, taper 0.35, leading edge swept 25 deg, tailplane
#: 0.35 W (published Il-76 46.6 m / 50.5 m / 300 m2 wing, An-124 69.1 / 73.3 / 628, Tu-154 48 / 37.6 / 202:
#: aspect ratios 8.5, 8.6, 7.0, fuselages 0.08-0.10 L). Fighters (Su-24/-34/-35, about 22 m / 15 m / 62 m2):
#: fuselage and intakes 0.16 L, aspect ratio 3.5, swept 40 deg, tailplane 0.65 W.
AIRCRAFT_PLANFORM: dict[str, dict[str, float]] = {
    "transport": {"fuselage": 0.10, "aspect": 8.0, "taper": 0.35, "sweep_deg": 25.0, "wing_at": 0.42,
                  "tail_span": 0.35},
    "fighter": {"fuselage": 0.16, "aspect": 3.5, "taper": 0.30, "sweep_deg": 40.0, "wing_at": 0.45,
                "tail_span": 0.65},
}
#: Clutter of quays and urban land: ln(texture) = a0 * (unit noise on 6 m cells) + a1 * (on 16 m cells)
#: + a2 * (smooth field, sigma 40 m); the texture is median 1 and multiplies the cover's reflectance.
CLUTTER: dict[str, tuple[float, float, float]] = {"quay": (0.45, 0.40, 0.20), "urban": (0.40, 0.25, 0.15)}
CLUTTER_CELLS_M = (6.0, 16.0)
CLUTTER_SMOOTH_M = 40.0
CLOUD_REFLECTANCE = (0.46, 0.45, 0.46, 0.48, 0.33)
VESSEL_KINDS = ("frigate", "landing_ship", "submarine", "cargo", "tanker")
AIRCRAFT_KINDS = ("transport", "fighter")


# --------------------------------------------------------------------------- data
@dataclass(frozen=True)
class SimObject:
    """An object placed in map coordinates.

    Attributes
    ----------
    id : str
    kind : str
        One of :data:`OBJECT_REFLECTANCE` (``"frigate"``, ``"transport"``, ...).
    x_m, y_m : float
        Centre in UTM 36N metres (x east, y north).
    length_m, width_m : float
        Length and beam (vessels) or length and wingspan (aircraft), metres.
    heading_deg : float
        Direction of the bow / nose, degrees clockwise from grid north.
    """

    id: str
    kind: str
    x_m: float
    y_m: float
    length_m: float
    width_m: float
    heading_deg: float

    @property
    def cls(self) -> str:
        return "vessel" if self.kind in VESSEL_KINDS else "aircraft"

    def footprint(self) -> Polygon:
        """The object's outline in UTM metres."""
        L, W = self.length_m, self.width_m
        if self.cls == "vessel":
            local = Polygon([(-W / 2, -L / 2), (W / 2, -L / 2), (W / 2, L / 2 - 0.18 * L), (0, L / 2),
                             (-W / 2, L / 2 - 0.18 * L)])
        else:
            local = aircraft_planform(L, W, self.kind)
        # local: x across (right), y along (bow); rotate clockwise by the heading
        return translate(rotate(local, -self.heading_deg, origin=(0, 0)), self.x_m, self.y_m)


def _swept_surface(span_m: float, area_m2: float, taper: float, sweep_deg: float, le_root_y: float) -> Polygon:
    """A trapezoidal wing pair (local metres, x across, y along towards the nose), leading edge at ``le_root_y``."""
    root = 2 * area_m2 / (span_m * (1 + taper))
    tip = taper * root
    back = span_m / 2 * math.tan(math.radians(sweep_deg))
    half = span_m / 2
    return Polygon([(0, le_root_y), (half, le_root_y - back), (half, le_root_y - back - tip), (0, le_root_y - root),
                    (-half, le_root_y - back - tip), (-half, le_root_y - back)])


def aircraft_planform(length_m: float, span_m: float, kind: str = "transport") -> Polygon:
    """Plan view of an aircraft (fuselage, swept tapered wings, tailplane), local metres.

    Parameters
    ----------
    length_m, span_m : float
        Length (nose to tail) and wingspan, metres.
    kind : str
        A key of :data:`AIRCRAFT_PLANFORM` (unknown kinds are drawn as transports).

    Returns
    -------
    Polygon
        x across (to the right), y along the fuselage, nose at y = +length_m / 2, tail at -length_m / 2.
    """
    p = AIRCRAFT_PLANFORM.get(kind, AIRCRAFT_PLANFORM["transport"])
    L, W = length_m, span_m
    fw = p["fuselage"] * L
    nose, tail_cone = 0.08 * L, 0.12 * L
    body = Polygon([(-fw / 2, -L / 2 + tail_cone), (-fw / 2, L / 2 - nose), (0, L / 2), (fw / 2, L / 2 - nose),
                    (fw / 2, -L / 2 + tail_cone), (0.2 * fw, -L / 2), (-0.2 * fw, -L / 2)])
    wing = _swept_surface(W, W * W / p["aspect"], p["taper"], p["sweep_deg"], L / 2 - p["wing_at"] * L)
    ts = p["tail_span"] * W
    t_area = ts * ts / 4.5
    t_root = 2 * t_area / (ts * 1.4)
    t_back = ts / 2 * math.tan(math.radians(p["sweep_deg"] + 5))
    tailplane = _swept_surface(ts, t_area, 0.4, p["sweep_deg"] + 5, -L / 2 + 0.02 * L + t_root + t_back)
    return unary_union([body, wing, tailplane])


@dataclass(frozen=True)
class Cloud:
    """An opaque cloud: a soft-edged disc of ``radius_m`` around (x_m, y_m), UTM metres."""

    x_m: float
    y_m: float
    radius_m: float
    edge_m: float = 80.0


@dataclass(frozen=True)
class Acquisition:
    """One simulated date.

    Attributes
    ----------
    date : datetime.date
    objects : tuple of SimObject
    shift_px : (dx, dy)
        Misregistration of the image content, pixels (x = column, y = row): a feature at
        nominal pixel (x, y) appears at (x + dx, y + dy).
    gain : float
        Multiplicative radiometric gain of the date (1 = none).
    clouds : tuple of Cloud
    seed : int
        Seed of the date's noise.
    label : str
        Folder name (default the ISO date).
    """

    date: _dt.date
    objects: tuple[SimObject, ...] = ()
    shift_px: tuple[float, float] = (0.0, 0.0)
    gain: float = 1.0
    clouds: tuple[Cloud, ...] = ()
    seed: int = 0
    label: str | None = None

    @property
    def name(self) -> str:
        return self.label or self.date.isoformat()


@dataclass(frozen=True)
class Terrain:
    """Land cover of a site on its 10 m grid.

    Attributes
    ----------
    name : str
    origin : (float, float)
        Upper-left corner (x, y) in UTM 36N metres (multiples of 20 m, like Sentinel-2 tiles).
    shape : (rows, cols)
        At 10 m (even numbers, so the 20 m bands tile it exactly).
    covers : tuple of (str, Polygon)
        Land-cover polygons in drawing order (later ones on top), UTM metres.
    background : str
        Cover of everything not inside a polygon: ``"land"`` (soil/vegetation mix) or ``"urban"``.
    seed : int
        Seed of the texture (fixed in map coordinates, identical on every date).
    """

    name: str
    origin: tuple[float, float]
    shape: tuple[int, int]
    covers: tuple[tuple[str, Polygon], ...]
    background: str = "land"
    seed: int = 0
    crs: CRS = field(default=UTM36N)

    @property
    def transform(self) -> Affine:
        return Affine(10.0, 0.0, self.origin[0], 0.0, -10.0, self.origin[1])


@dataclass(frozen=True)
class Rendered:
    """A simulated acquisition: reflectance per band at native resolution, and its truth.

    Attributes
    ----------
    bands : dict
        Band -> float32 reflectance array (10 m bands on the terrain grid, B11 at 20 m).
    transforms : dict
        Band -> nominal Affine transform (what the file says, without the misregistration).
    truth : dict
        JSON-ready truth: objects with pixel boxes in the 10 m image (shift included), the
        shift, gain and clouds, and the cloud fraction of each zone.
    """

    bands: dict[str, np.ndarray]
    transforms: dict[str, Affine]
    truth: dict[str, Any]


# --------------------------------------------------------------------------- rendering
def _smooth_field(shape: tuple[int, int], sigma: float, rng: np.random.Generator) -> np.ndarray:
    """A smooth random field scaled to [0, 1]."""
    f = ndi.gaussian_filter(rng.standard_normal(shape).astype(np.float32), sigma, mode="wrap")
    lo, hi = np.percentile(f, [1, 99])
    return np.clip((f - lo) / (hi - lo + 1e-12), 0, 1).astype(np.float32)


def _raster(geoms: Sequence[Any], transform: Affine, shape: tuple[int, int]) -> np.ndarray:
    geoms = [mapping(g) for g in geoms if not g.is_empty]
    if not geoms:
        return np.zeros(shape, bool)
    return rasterize([(g, 1) for g in geoms], out_shape=shape, transform=transform, fill=0,
                     dtype="uint8").astype(bool)


def _cell_field(shape: tuple[int, int], cell: int, rng: np.random.Generator) -> np.ndarray:
    """Unit-normal white noise on square cells of ``cell`` sub-pixels, shape ``shape``."""
    k = (shape[0] // cell + 1, shape[1] // cell + 1)
    return np.kron(rng.standard_normal(k).astype(np.float32), np.ones((cell, cell), np.float32))[: shape[0], : shape[1]]


def clutter_fields(terrain: Terrain) -> tuple[np.ndarray, ...]:
    """The unit-variance fields of the quay/urban clutter on the supersampled grid, fixed in map coordinates.

    Returns (cells of ``CLUTTER_CELLS_M[0]``, cells of ``CLUTTER_CELLS_M[1]``, smooth field of
    sigma ``CLUTTER_SMOOTH_M``), each float32 (rows*S, cols*S) with zero mean and unit std.
    """
    s = SUPERSAMPLE
    shape = (terrain.shape[0] * s, terrain.shape[1] * s)
    rng = np.random.default_rng(terrain.seed + 1)
    sub_m = 10.0 / s
    fine = _cell_field(shape, round(CLUTTER_CELLS_M[0] / sub_m), rng)
    coarse = _cell_field(shape, round(CLUTTER_CELLS_M[1] / sub_m), rng)
    smooth = ndi.gaussian_filter(rng.standard_normal(shape).astype(np.float32), CLUTTER_SMOOTH_M / sub_m, mode="wrap")
    smooth /= float(smooth.std()) + 1e-12
    return fine, coarse, smooth


def _clutter(cover: str, fields: tuple[np.ndarray, ...]) -> np.ndarray:
    """Multiplicative lognormal texture (median 1) of a cluttered cover (``CLUTTER``)."""
    a = CLUTTER[cover]
    return np.exp(a[0] * fields[0] + a[1] * fields[1] + a[2] * fields[2]).astype(np.float32)


def render_background(terrain: Terrain) -> np.ndarray:
    """Land-cover reflectance on the supersampled grid, shape (bands, rows*S, cols*S), float32.

    The texture depends only on ``terrain.seed``: identical for every date. Quays and urban land
    carry the measured clutter texture (:data:`CLUTTER`), water a faint smooth variation, the
    other covers a smooth +-15 % texture at ~30 m.
    """
    s = SUPERSAMPLE
    rows, cols = terrain.shape[0] * s, terrain.shape[1] * s
    hr = terrain.transform * Affine.scale(1 / s)
    rng = np.random.default_rng(terrain.seed)
    mix = _smooth_field((rows, cols), 20.0 * s, rng)            # vegetation fraction, ~200 m blobs
    tex = 0.85 + 0.3 * _smooth_field((rows, cols), 3.0 * s, rng)  # +-15 % at ~30 m
    uses = {c for c, _ in terrain.covers} | {terrain.background}
    fields = clutter_fields(terrain) if uses & set(CLUTTER) else None
    out = np.empty((len(SIM_BANDS), rows, cols), np.float32)
    soil, veg = np.array(COVER_REFLECTANCE["soil"]), np.array(COVER_REFLECTANCE["vegetation"])
    if terrain.background == "urban":
        t = _clutter("urban", fields)
        for i, v in enumerate(COVER_REFLECTANCE["urban"]):
            out[i] = v * t
    else:
        for i in range(len(SIM_BANDS)):
            out[i] = (mix * veg[i] + (1 - mix) * soil[i]) * tex
    for cover, geom in terrain.covers:
        m = _raster([geom], hr, (rows, cols))
        refl = COVER_REFLECTANCE[cover]
        t = _clutter(cover, fields)[m] if cover in CLUTTER else None
        for i, v in enumerate(refl):
            if cover == "water":
                out[i][m] = v * (0.97 + 0.06 * mix[m])
            elif t is not None:
                out[i][m] = v * t
            else:
                out[i][m] = v * tex[m]
    return out


def draw_objects(image: np.ndarray, objects: Sequence[SimObject], terrain: Terrain) -> np.ndarray:
    """Objects painted over a supersampled image (bands, rows, cols); returns a new array."""
    s = SUPERSAMPLE
    hr = terrain.transform * Affine.scale(1 / s)
    out = image.copy()
    for o in objects:
        m = _raster([o.footprint()], hr, out.shape[1:])
        for i, v in enumerate(OBJECT_REFLECTANCE[o.kind]):
            out[i][m] = v
    return out


def _cloud_alpha(clouds: Sequence[Cloud], transform: Affine, shape: tuple[int, int]) -> np.ndarray:
    """Opacity in [0, 1] of the clouds on a grid."""
    alpha = np.zeros(shape, np.float32)
    if not clouds:
        return alpha
    cols, rows = np.meshgrid(np.arange(shape[1]) + 0.5, np.arange(shape[0]) + 0.5)
    xs, ys = transform * (cols, rows)
    for c in clouds:
        d = np.hypot(xs - c.x_m, ys - c.y_m)
        a = np.clip((c.radius_m + c.edge_m / 2 - d) / c.edge_m, 0, 1)
        alpha = np.maximum(alpha, a.astype(np.float32))
    return alpha


def _box_px(poly: Polygon, transform: Affine, shift: tuple[float, float]) -> list[float]:
    inv = ~transform
    xs, ys = zip(*(inv * p for p in poly.exterior.coords))
    return [round(min(xs) + shift[0], 3), round(min(ys) + shift[1], 3),
            round(max(xs) + shift[0], 3), round(max(ys) + shift[1], 3)]


def render(terrain: Terrain, acq: Acquisition, background: np.ndarray | None = None,
           zones: Any = None) -> Rendered:
    """Render one acquisition.

    Parameters
    ----------
    terrain : Terrain
    acq : Acquisition
    background : ndarray, optional
        :func:`render_background` of ``terrain`` (pass it to render several dates cheaply).
    zones : Zones, optional
        Zones whose cloud fraction is recorded in the truth.

    Returns
    -------
    Rendered
    """
    s = SUPERSAMPLE
    bg = render_background(terrain) if background is None else background
    img = draw_objects(bg, acq.objects, terrain)
    dx, dy = acq.shift_px
    rng = np.random.default_rng(acq.seed)
    bands: dict[str, np.ndarray] = {}
    transforms: dict[str, Affine] = {}
    for i, name in enumerate(SIM_BANDS):
        f = SIM_RES_M[name] // 10 * s  # sub-pixels per output pixel
        layer = ndi.shift(img[i], (dy * s, dx * s), order=1, mode="nearest") if (dx or dy) else img[i]
        layer = ndi.gaussian_filter(layer, PSF_SIGMA_PX * f, mode="nearest")
        r, c = layer.shape[0] // f, layer.shape[1] // f
        low = layer[: r * f, : c * f].reshape(r, f, c, f).mean(axis=(1, 3))
        if PSF_TAIL_WEIGHT:  # the wide wing of the PSF (adjacency, stray light), applied at band resolution
            low = (1 - PSF_TAIL_WEIGHT) * low + PSF_TAIL_WEIGHT * ndi.gaussian_filter(
                low, PSF_TAIL_SIGMA_M / SIM_RES_M[name], mode="nearest")
        tr = terrain.transform * Affine.scale(SIM_RES_M[name] / 10)
        alpha = _cloud_alpha(acq.clouds, tr, (r, c))
        tex = 0.92 + 0.16 * _smooth_field((r, c), 2.0, np.random.default_rng(acq.seed + 7))
        low = low * acq.gain
        low = low * (1 - alpha) + alpha * CLOUD_REFLECTANCE[i] * tex
        low = low + rng.normal(0.0, NOISE_SD[SIM_RES_M[name]], size=low.shape)
        bands[name] = low.astype(np.float32)
        transforms[name] = tr
    truth = _truth(terrain, acq, zones)
    return Rendered(bands, transforms, truth)


def _truth(terrain: Terrain, acq: Acquisition, zones: Any) -> dict[str, Any]:
    tr = terrain.transform
    objs = []
    z = zones.to_crs(terrain.crs) if zones is not None else None
    for o in acq.objects:
        lon, lat = warp_transform(terrain.crs, WGS84, [o.x_m], [o.y_m])
        zone = None
        if z is not None:
            from shapely.geometry import Point

            zone = next((n for n, g in z.geometries.items() if g.covers(Point(o.x_m, o.y_m))), None)
        objs.append({
            "id": o.id, "cls": o.cls, "kind": o.kind, "zone": zone,
            "length_m": o.length_m, "width_m": o.width_m, "heading_deg": o.heading_deg,
            "center_m": [o.x_m, o.y_m], "center_lonlat": [round(lon[0], 7), round(lat[0], 7)],
            "box_px": _box_px(o.footprint(), tr, acq.shift_px),
        })
    cloud_frac = {}
    if z is not None:
        alpha = _cloud_alpha(acq.clouds, tr, terrain.shape)
        for n, g in z.geometries.items():
            m = _raster([g], tr, terrain.shape)
            cloud_frac[n] = round(float(np.mean(alpha[m] > 0.5)) if m.any() else 0.0, 4)
    return {
        "simulated": True,
        "site": terrain.name,
        "date": acq.date.isoformat(),
        "crs": terrain.crs.to_string(),
        "transform": list(tr)[:6],
        "shape": list(terrain.shape),
        "shift_px": {"dx": acq.shift_px[0], "dy": acq.shift_px[1]},
        "gain": acq.gain,
        "clouds": [{"x_m": c.x_m, "y_m": c.y_m, "radius_m": c.radius_m} for c in acq.clouds],
        "zone_cloud_fraction": cloud_frac,
        "objects": objs,
    }


def to_scene(r: Rendered, date: _dt.date | None = None) -> Scene:
    """The 10 m bands of a rendering as a :class:`Scene` (B11 repeated to 10 m), without writing files."""
    ref = r.transforms["B02"]
    shape = r.bands["B02"].shape
    bands = {}
    for n, a in r.bands.items():
        k = shape[0] // a.shape[0]
        bands[n] = np.kron(a, np.ones((k, k), np.float32))[: shape[0], : shape[1]] if k > 1 else a.copy()
    valid = np.logical_and.reduce([np.isfinite(a) for a in bands.values()])
    return Scene(bands, UTM36N, ref, valid, date, {"source": "simulated"})


def write_rendered(r: Rendered, folder: str | Path, date: _dt.date) -> list[Path]:
    """Write a rendering as a band folder: ``B02.tif`` ... ``B11.tif`` (uint16) and ``truth.json``.

    DN = round(reflectance x 10000) + 1000, clipped to [1, 65535] (0 is never written: it
    means no-data); scale 1e-4 and offset -0.1 are stored with each band, the date in the
    ``ACQUISITION_DATE`` tag.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name, a in r.bands.items():
        dn = np.clip(np.round((a - DN_OFFSET) / DN_SCALE), 1, 65535).astype(np.uint16)
        path = folder / f"{name}.tif"
        profile = {"driver": "GTiff", "width": dn.shape[1], "height": dn.shape[0], "count": 1,
                   "dtype": "uint16", "crs": UTM36N, "transform": r.transforms[name], "nodata": 0,
                   "compress": "deflate", "predictor": 2}
        with rasterio.open(path, "w", **profile) as ds:
            ds.write(dn, 1)
            ds.scales = (DN_SCALE,)
            ds.offsets = (DN_OFFSET,)
            ds.set_band_description(1, name)
            ds.update_tags(ACQUISITION_DATE=date.isoformat(), IMGDIFF_SIMULATED="yes",
                           SPACECRAFT="simulated Sentinel-2-like (imgdiff.simulate)")
        written.append(path)
    tp = folder / "truth.json"
    tp.write_text(json.dumps(r.truth, indent=1) + "\n", encoding="utf-8")
    written.append(tp)
    return written


# --------------------------------------------------------------------------- sites
def tartus_terrain() -> Terrain:
    """The Port of Tartus on a 400 x 340 px grid (4.0 x 3.4 km), UTM 36N."""
    open_sea = Polygon([
        (759000, 3868300), (763050, 3868300), (763000, 3867790), (762893, 3867678), (762800, 3867645),
        (762700, 3867570), (762646, 3867550), (762616, 3867480), (762379, 3867395), (762053, 3867285),
        (761820, 3867205), (761649, 3867120), (761520, 3867032), (761232, 3866778), (760790, 3866812),
        (760990, 3866115), (761050, 3865975), (761137, 3865865), (761268, 3865760), (761427, 3865700),
        (762227, 3865515), (762400, 3865150), (762700, 3864700), (762800, 3864500), (759000, 3864500),
    ])
    moles = Polygon(TARTUS_MOLES_UTM).buffer(0)
    harbour = Polygon(TARTUS_HARBOUR_OUTER_UTM).difference(moles)
    mouth = Polygon([(761235, 3866775), (761285, 3866800), (761545, 3866716), (761540, 3866700)])
    water = unary_union([open_sea, harbour, Polygon(TARTUS_NAVAL_PIERS_UTM), mouth])
    port = moles.intersection(box(761400, 3865500, 763200, 3867600))
    return Terrain(
        "tartus", (759200.0, 3868100.0), (340, 400),
        (("quay", port), ("water", water)),
        background="urban", seed=1101,
    )


def hmeimim_terrain() -> Terrain:
    """Hmeimim air base on a 300 x 200 px grid (3.0 x 2.0 km), UTM 36N."""
    lay = hmeimim_layout()
    cx, cy, hd = hmeimim_frame()
    x0 = math.floor((cx - 900) / 20) * 20
    y0 = math.ceil((cy + 1500) / 20) * 20
    shelters = [oriented_rect(cx, cy, (-1100 + 120 * k, -1070 + 120 * k), (-520, -480), hd) for k in range(4)]
    shelters += [oriented_rect(cx, cy, (-1100 + 120 * k, -1070 + 120 * k), (-330, -290), hd) for k in range(4)]
    buildings = [oriented_rect(cx, cy, (-300 + 150 * k, -240 + 150 * k), (-620, -540), hd) for k in range(4)]
    links = [oriented_rect(cx, cy, (a, a + 25), (-235, -110), hd) for a in (-500, 0, 400)]
    covers = (
        ("asphalt", lay["runway"]),
        ("asphalt", lay["taxiway"]),
        *(("asphalt", g) for g in links),
        ("concrete", lay["apron"]),
        ("soil", lay["shelters"]),
        *(("concrete", g) for g in shelters),
        *(("roof", g) for g in buildings),
    )
    return Terrain("hmeimim", (float(x0), float(y0)), (300, 200), covers, background="land", seed=2202)


def _along(cx: float, cy: float, hd: float, along: float, across: float) -> tuple[float, float]:
    h = math.radians(hd)
    return (cx + along * math.sin(h) + across * math.cos(h), cy + along * math.cos(h) - across * math.sin(h))


def tartus_objects() -> dict[str, tuple[SimObject, ...]]:
    """Objects of the Tartus scenario: ``warships`` at the naval piers, ``cargo`` in the basin,
    ``warships_offshore`` (the same ships at the anchorage) and ``cargo_new`` (an arrival)."""
    # Alongside the north breakwater's inner edge (heading ~71 deg) and the pier.
    hd = 71.0
    warships = (
        SimObject("ls-1", "landing_ship", 761560, 3866965, 112, 15, hd),
        SimObject("ls-2", "landing_ship", 761740, 3867085, 117, 15, hd),
        SimObject("ff-1", "frigate", 761935, 3867145, 125, 16, hd),
        SimObject("ff-2", "frigate", 762160, 3867215, 125, 16, hd),
        SimObject("ss-1", "submarine", 761980, 3867055, 74, 10, 351.0),
    )
    cargo = (
        SimObject("cg-1", "cargo", 761950, 3866420, 150, 23, 70.0),
        SimObject("cg-2", "cargo", 762060, 3866090, 148, 22, 70.0),
    )
    offshore = (
        SimObject("ls-1", "landing_ship", 759700, 3866900, 112, 15, 200.0),
        SimObject("ls-2", "landing_ship", 760150, 3866350, 117, 15, 30.0),
        SimObject("ff-1", "frigate", 759800, 3865800, 125, 16, 120.0),
        SimObject("ff-2", "frigate", 760300, 3867250, 125, 16, 160.0),
    )
    cargo_new = (SimObject("tk-1", "tanker", 761500, 3866050, 120, 18, 160.0),)
    return {"warships": warships, "cargo": cargo, "warships_offshore": offshore, "cargo_new": cargo_new}


def hmeimim_objects() -> dict[str, tuple[SimObject, ...]]:
    """Aircraft of the Hmeimim scenario on the apron (frame of the runway, heading 174 deg)."""
    cx, cy, hd = hmeimim_frame()
    face = (hd + 90.0) % 360  # noses towards the runway (west)

    def at(i: str, kind: str, along: float, across: float, length: float, span: float) -> SimObject:
        x, y = _along(cx, cy, hd, along, across)
        return SimObject(i, kind, round(x, 1), round(y, 1), length, span, face)

    transports = (
        at("il76-1", "transport", -450, -320, 47, 50),
        at("il76-2", "transport", -330, -320, 47, 50),
        at("an124-1", "transport", -150, -330, 69, 73),
        at("il76-4", "transport", 10, -320, 47, 50),
        at("tu154-1", "transport", 380, -300, 48, 38),
    )
    fighters = tuple(at(f"su-{k + 1}", "fighter", 100 + 45 * k, -280, 22, 15) for k in range(6))
    new = (at("il76-3", "transport", 300, -350, 47, 50),)
    return {"transports": transports, "fighters": fighters, "transport_new": new}


@dataclass(frozen=True)
class Scenario:
    """A site and its simulated dates."""

    terrain: Terrain
    site: str
    acquisitions: tuple[Acquisition, ...]


def scenarios() -> dict[str, Scenario]:
    """The shipped December 2024 scenario (simulated): Tartus emptied, Hmeimim still in use."""
    t = tartus_objects()
    h = hmeimim_objects()
    d0, d1 = _dt.date(2024, 12, 3), _dt.date(2024, 12, 13)
    tartus = Scenario(tartus_terrain(), "tartus", (
        Acquisition(d0, t["warships"] + t["cargo"], (0.0, 0.0), 1.0, (), seed=31),
        Acquisition(d1, t["warships_offshore"] + t["cargo"] + t["cargo_new"], (0.37, -0.28), 1.07, (), seed=32),
        Acquisition(d1, t["warships_offshore"] + t["cargo"] + t["cargo_new"], (0.37, -0.28), 1.07,
                    (Cloud(761850, 3867080, 520),), seed=33, label="2024-12-13_cloudy"),
    ))
    hmeimim = Scenario(hmeimim_terrain(), "hmeimim", (
        Acquisition(d0, h["transports"] + h["fighters"], (0.0, 0.0), 1.0, (), seed=41),
        Acquisition(d1, h["transports"][1:] + h["fighters"][:5] + h["transport_new"], (-0.31, 0.42), 0.94, (),
                    seed=42),
    ))
    return {"tartus": tartus, "hmeimim": hmeimim}


def write_samples(root: str | Path, *, on_step: Any = None) -> list[Path]:
    """Write the sample sites and simulated scenes under ``root``.

    Layout: ``root/sites/<site>.geojson`` and ``root/scenes/<site>/<date>/`` (band folder
    and ``truth.json``). Deterministic: the same files byte for byte on every run.
    """
    from .io.write import write_json

    root = Path(root)
    written: list[Path] = []
    (root / "sites").mkdir(parents=True, exist_ok=True)
    for name, sc in scenarios().items():
        site = get_site(sc.site)
        p = root / "sites" / f"{name}.geojson"
        write_json(p, site.to_geojson())
        written.append(p)
        bg = render_background(sc.terrain)
        for acq in sc.acquisitions:
            if on_step:
                on_step(f"{name}/{acq.name}")
            r = render(sc.terrain, acq, bg, zones=site.zones)
            written += write_rendered(r, root / "scenes" / name / acq.name, acq.date)
    return written


def zone_cloud_fractions(truth: Mapping[str, Any]) -> dict[str, float]:
    """Cloud fraction per zone recorded in a truth file."""
    return dict(truth.get("zone_cloud_fraction", {}))
