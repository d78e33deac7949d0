"""Simulated airfield aprons at Sentinel-2 resolution, with known aircraft (for tests and benchmarks).

The scene is drawn at 1 m, blurred by a Gaussian PSF and area-averaged to 10 m, the way
``aircraft_s2sim`` was made from 0.5 m imagery (PSF sigma 4.75 m, DN = 400 + 12 x value,
noise 15 DN). Aircraft are white cross shapes (fuselage, swept wings, tailplane) of a
given length; distractors are buildings, bright roofs, vehicles, runway markings and
grass strips.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np
from affine import Affine

from ..scene import Scene

#: Ground sampling of the drawing, metres per pixel.
FINE_M = 1.0


@dataclass(frozen=True)
class SimAircraft:
    """One simulated aircraft: pixel-edge box on the 10 m grid, length in metres, heading in degrees."""

    box: tuple[float, float, float, float]
    length_m: float
    heading_deg: float
    centre: tuple[float, float]


def _aircraft_polygons(cx: float, cy: float, length: float, heading_deg: float) -> list[np.ndarray]:
    """Fuselage, wings and tailplane as polygons (fine-grid pixel coordinates)."""
    span = 0.95 * length
    fw = max(0.09 * length, 3.0)
    parts = [
        [(-fw / 2, -length / 2), (fw / 2, -length / 2), (fw / 2, length / 2), (-fw / 2, length / 2)],  # fuselage
        [(0, -0.12 * length), (span / 2, 0.10 * length), (span / 2, 0.17 * length), (0, 0.06 * length),
         (-span / 2, 0.17 * length), (-span / 2, 0.10 * length)],  # swept wings
        [(0, 0.36 * length), (0.18 * length, 0.47 * length), (0.18 * length, 0.5 * length), (0, 0.45 * length),
         (-0.18 * length, 0.5 * length), (-0.18 * length, 0.47 * length)],  # tailplane
    ]
    # nose up (-y) at heading 0; rotate clockwise by heading
    t = math.radians(heading_deg)
    rot = np.array([[math.cos(t), -math.sin(t)], [math.sin(t), math.cos(t)]])
    return [(np.array(p) @ rot.T + (cx, cy)) for p in parts]


def _fill(img: np.ndarray, poly: np.ndarray, value: float | tuple) -> None:
    cv2.fillPoly(img, [np.round(poly * 16).astype(np.int32)], value, lineType=cv2.LINE_AA, shift=4)


def _rect(cx: float, cy: float, w: float, h: float, ang_deg: float) -> np.ndarray:
    return cv2.boxPoints(((cx, cy), (w, h), ang_deg))


def simulate_apron(
    seed: int,
    *,
    size_px: int = 128,
    lengths_m: tuple[float, ...] = (45, 55, 65, 75),
    n_buildings: int = 4,
    n_vehicles: int = 25,
    n_markings: int = 6,
    dn_scale: float = 1e-4,
) -> tuple[Scene, list[SimAircraft]]:
    """A simulated apron scene and its aircraft.

    Parameters
    ----------
    seed : int
        Random seed (layout, headings, colours, noise).
    size_px : int
        Side of the 10 m scene, in pixels.
    lengths_m : tuple of float
        Length of each aircraft to place, in metres (placed apart on the apron, not truncated).
    n_buildings, n_vehicles, n_markings : int
        Numbers of distractors: buildings and bright roofs, vehicles (about 3 x 8 m),
        painted markings (lines 0.5-1 m wide).
    dn_scale : float
        Reflectance per DN (the result's bands are DN x dn_scale).

    Returns
    -------
    Scene
        B02, B03, B04 (and B08) on a 10 m local grid without CRS.
    list of SimAircraft
        The aircraft, with 10 m pixel-edge boxes of their drawn extent.
    """
    rng = np.random.default_rng(seed)
    scale = int(round(10 / FINE_M))
    n = size_px * scale
    # colour value (0-255 like the source RGB), per band (blue, green, red, nir)
    concrete = np.array([130, 128, 122, 140], float) * rng.uniform(0.85, 1.1)
    img = np.empty((n, n, 4), np.float32)
    img[:] = concrete
    # concrete: mild large-scale tone changes and 20 m slabs (a clean apron; real chips hold more
    # structure: grass islands, taxiway edges, terminals)
    tex = cv2.resize(rng.normal(0, 6, (8, 8)).astype(np.float32), (n, n), interpolation=cv2.INTER_CUBIC)
    tex += cv2.resize(rng.normal(0, 3, (size_px // 2, size_px // 2)).astype(np.float32), (n, n),
                      interpolation=cv2.INTER_NEAREST)
    img += tex[..., None]
    # airport layout (gives the scene the structure of real apron chips: their local standard deviation,
    # Gaussian sigma 24 px, is 320-480 DN at the 10th-90th percentiles): apron extensions of another
    # concrete tone, a dark asphalt taxiway and a grass strip along one edge, grass islands between
    # the apron and the terminal row
    for _ in range(2):
        x0 = rng.uniform(0.2, 0.8) * n
        tone = concrete * rng.uniform(0.8, 1.2)
        if rng.random() < 0.5:
            img[:, int(x0):] = (img[:, int(x0):] - concrete) + tone
        else:
            img[:, :int(x0)] = (img[:, :int(x0)] - concrete) + tone
    g = int(n * rng.uniform(0.08, 0.18))
    img[:g] = np.array([70, 95, 80, 230], np.float32)
    tw = int(rng.uniform(25, 40))
    img[g:g + tw] = np.array([78, 78, 76, 85], np.float32) * rng.uniform(0.85, 1.15)
    g += tw
    for _ in range(3):
        gx, gy = rng.uniform(0.05, 0.95) * n, rng.uniform(0.78, 0.84) * n
        _fill(img, _rect(gx, gy, rng.uniform(60, 200), rng.uniform(25, 50), 0.0), (70, 95, 80, 230))
    # buildings / roofs along the other edge and in a corner
    for _ in range(n_buildings):
        w, h = rng.uniform(20, 90), rng.uniform(20, 60)
        cx = rng.uniform(0.1, 0.9) * n
        cy = rng.uniform(0.82, 0.95) * n
        val = tuple(float(v) for v in (np.array([215, 212, 205, 200]) * rng.uniform(0.8, 1.15)))
        ang = float(rng.choice([0, 90]))
        _fill(img, _rect(cx + 8, cy + 8, w, h, ang), (45, 45, 48, 50))  # shadow
        _fill(img, _rect(cx, cy, w, h, ang), val)
    # markings: long thin yellow/white lines
    for _ in range(n_markings):
        x0, y0 = rng.uniform(0, n, 2)
        ang = rng.uniform(0, 180)
        L = rng.uniform(150, 600)
        col = (200, 230, 230, 220) if rng.random() < 0.5 else (60, 200, 230, 210)
        _fill(img, _rect(x0, y0, L, rng.uniform(0.5, 1.0), ang), col)
    # aircraft: spaced on a jittered grid in the apron zone
    apron_top, apron_bot = g + 60, int(0.78 * n)
    k = len(lengths_m)
    cols = max(1, math.ceil(math.sqrt(k * (n / max(apron_bot - apron_top, 1)))))
    rows = max(1, math.ceil(k / cols))
    cells = [(r, c) for r in range(rows) for c in range(cols)]
    rng.shuffle(cells)
    planes = []
    for L, (r, c) in zip(lengths_m, cells):
        cw, ch = n / cols, (apron_bot - apron_top) / rows
        cx = (c + 0.5) * cw + rng.uniform(-0.15, 0.15) * cw
        cy = apron_top + (r + 0.5) * ch + rng.uniform(-0.15, 0.15) * ch
        head = float(rng.uniform(0, 360))
        # paint: from grey to white over concrete; k in [0.35, 1] gives a peak contrast of the 10 m image
        # (B03, 50-70 m aircraft) of about 310-890 DN, matching aircraft_s2sim (10th-90th pct 271-943 DN)
        k = rng.uniform(0.35, 1.0)
        white = tuple(float(v) for v in concrete + k * (np.array([235, 235, 232, 225]) - concrete))
        polys = _aircraft_polygons(cx, cy, float(L), head)
        for p in polys:
            _fill(img, p, white)
        pts = np.vstack(polys) / scale
        box = (float(pts[:, 0].min()), float(pts[:, 1].min()), float(pts[:, 0].max()), float(pts[:, 1].max()))
        planes.append(SimAircraft(box, float(L), head % 360, (cx / scale, cy / scale)))
    # vehicles: small bright or dark rectangles, anywhere on the apron
    for _ in range(n_vehicles):
        cx, cy = rng.uniform(0, n), rng.uniform(g, 0.8 * n)
        if any(abs(cx / scale - p.centre[0]) < 5 and abs(cy / scale - p.centre[1]) < 5 for p in planes):
            continue
        val = tuple(float(v) for v in (np.array([225, 225, 225, 215]) if rng.random() < 0.6 else
                                       np.array([40, 40, 40, 40])))
        _fill(img, _rect(cx, cy, rng.uniform(2.5, 3.5), rng.uniform(6, 12), rng.uniform(0, 180)), val)
    # PSF (sigma 4.75 m) and 10 m area average
    img = cv2.GaussianBlur(img, (0, 0), 4.75 / FINE_M)
    coarse = img.reshape(size_px, scale, size_px, scale, 4).mean(axis=(1, 3))
    dn = 400 + 12 * coarse + rng.normal(0, 15, coarse.shape)
    refl = np.clip(dn, 1, 65535).astype(np.float32) * np.float32(dn_scale)
    bands = {b: refl[..., i] for i, b in enumerate(("B02", "B03", "B04", "B08"))}
    scene = Scene(bands, None, Affine(10, 0, 0, 0, -10, size_px * 10), np.ones((size_px, size_px), bool),
                  meta={"source": f"simulate_apron(seed={seed})"})
    return scene, planes
