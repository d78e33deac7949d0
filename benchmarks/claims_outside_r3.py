"""Claims verified on a second outside evaluator's cases (issue 8's held-out check, rendered a third way).

Written independently (2026-11-26, by an engineer who read neither claims.py nor claims_outside.py,
told only what the first outside evaluator had done, so as to choose differently): whole port scenes
(no crops); irregular, multi-part, pier-shaped and edge-touching lon/lat zones; removal by a
plane-fitted background with texture-matched noise and feathered seams; partial removals; vessels and
aircraft pasted from another port or chip (additive contrast); Lanczos-3 sub-pixel shifts of 0.2-0.9 px
on both axes; L1C-like top-of-atmosphere after dates (path radiance, DN = rho * 10000 + 1000, B11 at
20 m, ``T..._YYYYMMDDThhmmss_Bxx.tif`` names); cumulus clouds with soft 300-600 m edges, haze and an
offset shadow, over all or 60-80 % of a zone, on either date; swapped dates; after scenes with another
extent; aircraft chips placed in UTM, EPSG:4326 and EPSG:3857, and as plain ``B0x.tif`` in date-named
folders. Builds the cases, then verifies every claim file in-process and scores it. Run by hand::

    nice python benchmarks/claims_outside_r3.py [--out DIR] [--only CASE ...]
    # the same cases again, verified with detectors that never saw the case's port or airport:
    nice python benchmarks/claims_outside_r3.py --out DIR --no-build --honest

``--glint`` also builds sun-glint probes of six harbour cases (after date only, objects unchanged, truth as
the source case): ``g_<case>`` with glint of 0.12 reflectance at its centre and ``h_<case>`` with 0.04, over the
water (NIR < 0.09), smooth with wave texture, flat in the visible and NIR and weaker in B11.

``--draw SEED`` builds a fresh draw instead (:func:`fresh_cases`): one case per port with other ships in its
zones and 12 apron cases on aircraft chips the fixed cases never use, fates, clouds, formats, shifts and gains
drawn from the seed, to check rules that were tuned on the fixed cases::

    nice python benchmarks/claims_outside_r3.py --draw 1 --out DIR1 && \
        nice python benchmarks/claims_outside_r3.py --out DIR1 --no-build --honest

Measured 2026-11-26 (draws 1-6, 1239 claims): 1023 right with the shipped detectors (vessels 496/576, aircraft
527/663), 883 with ``--honest`` (417/576, 466/663); most misses are objects missed on both dates, and the
aprons' "arrive" zones hold pasted aircraft that are often barely visible.
Measured 2026-11-27 with the cloud-veil rules (a cloud's thick veil hides a zone; hazy ground seen as clearly as on
the other date is not cloud; a weak look at an unchanged place takes the other date's box), scored with the
accepted verdicts of objects in a cloud's haze: draws 1-6 1025/1239 (1024 before), draws 7-10 655/793 (650
before), the fixed cases 446/502 (447 before: an aircraft at the edge of a zone-shaped hole the builder cut in a
cloud); ``--honest`` not re-run (no fold models on that machine).

``--honest`` swaps, case by case, the vessel network for the leave-one-port-out fold model of the case's
port (``--vessel-folds``, ``training/train_vessels.py --cv``), the vessel rescorer for the nested one
trained without that port (``--vessel-rescorers``, ``training/train_vessel_rescore.py --write-folds``) and
the aircraft network for the grouped fold that never saw the chip's airport (``--aircraft-folds``,
``training/train_aircraft.py``: ``fold<k>.onnx`` and ``folds.json``) and the vessel chip classifier for
the one trained without the port (``--vessel-chips``, ``training/train_vessel_chips.py``); all four are built by
``training/folds.py`` in ``$IMGDIFF_FOLDS_DIR``, the defaults.

Measured 2026-11-26: see the closing notes of that day. The evaluator judged its pasted objects
("arrive" zones) possibly unrealistic. The detectors were trained on these ports and chips.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import glob
import json
import math
import os
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
import rasterio
import yaml
from pyproj import Transformer
from rasterio.transform import Affine
from scipy import ndimage as ndi
from shapely.geometry import MultiPolygon, Point, Polygon, box, mapping
from shapely.ops import unary_union

from imgdiff.data import data_dir

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "training"))
from folds import (  # noqa: E402  (the honest detectors' folder layout)
    aircraft_detector_files,
    detectors_with,
    fold_paths,
    vessel_detector_files,
)

DATA = str(data_dir())
OUT = os.path.join(tempfile.gettempdir(), "imgdiff-claims-outside-r3")
PORT_BANDS = ("B02", "B03", "B04", "B08", "B11")
CHIP_BANDS = ("B02", "B03", "B04")
# L1C-like path radiance (reflectance) per band: bluer, brighter water at top of atmosphere
PATH = {"B02": 0.055, "B03": 0.035, "B04": 0.022, "B08": 0.010, "B11": 0.003}


# ----------------------------------------------------------------------------- sources
def load_port(port):
    d = f"{DATA}/sen2ships/{port}"
    rho, t, crs = {}, None, None
    for b in PORT_BANDS:
        f = glob.glob(f"{d}/*_{b}_(Raw).tiff")[0]
        with rasterio.open(f) as r:
            rho[b] = r.read(1).astype(np.float64) / 65535.0
            t, crs = r.transform, r.crs
    v = json.load(open(f"{d}/vessels.json"))
    boxes = [tuple(x["bbox_px"]) for x in v["vessels"]]
    h, w = rho["B02"].shape
    lon, lat = Transformer.from_crs(crs, "EPSG:4326", always_xy=True).transform(*(t * (w / 2, h / 2)))
    gsd = abs(t.a) * math.cos(math.radians(lat))
    objs = []
    for bx in boxes:
        bw, bh = bx[2] - bx[0], bx[3] - bx[1]
        objs.append({"box": bx, "lmin": max(bw, bh) * gsd, "lmax": math.hypot(bw, bh) * gsd})
    return {"rho": rho, "transform": t, "crs": crs.to_string(), "objs": objs, "date": v["date"], "gsd": gsd,
            "lat": lat, "name": port}


def load_chip(chip, crs_kind, rng):
    d = f"{DATA}/aircraft_s2sim/{chip}"
    rho = {}
    for b in CHIP_BANDS:
        with rasterio.open(f"{d}/{b}.tif") as r:
            rho[b] = r.read(1).astype(np.float64) / 10000.0
    a = json.load(open(f"{d}/aircraft.json"))["aircraft"]
    objs = [{"box": tuple(x["bbox_px"]), "lmin": x["length_m"], "lmax": x["length_m"], "trunc": x["truncated"]}
            for x in a]
    # place the chip somewhere plausible (an airfield-ish lat/lon), in the requested CRS
    lat, lon = float(rng.uniform(30, 45)), float(rng.uniform(10, 40))
    if crs_kind == "utm":
        zone = int((lon + 180) // 6) + 1
        crs = f"EPSG:{32600 + zone}"
        x, y = Transformer.from_crs("EPSG:4326", crs, always_xy=True).transform(lon, lat)
        x, y = round(x / 10) * 10, round(y / 10) * 10
        t = Affine(10, 0, x, 0, -10, y)
    elif crs_kind == "4326":
        crs = "EPSG:4326"
        t = Affine(10 / (111320 * math.cos(math.radians(lat))), 0, lon, 0, -10 / 111320, lat)
    else:  # 3857, nominal pixel 10/cos(lat) so the ground pixel stays 10 m
        crs = "EPSG:3857"
        x, y = Transformer.from_crs("EPSG:4326", crs, always_xy=True).transform(lon, lat)
        s = 10 / math.cos(math.radians(lat))
        t = Affine(s, 0, x, 0, -s, y)
    return {"rho": rho, "transform": t, "crs": crs, "objs": objs, "date": None, "gsd": 10.0, "lat": lat,
            "name": chip}


# ----------------------------------------------------------------------------- helpers
def water_mask(rho):
    """Open water: dark in NIR (ports); smoothed."""
    if "B08" in rho:
        w = rho["B08"] < 0.09
        return ndi.binary_opening(w, iterations=1)
    return np.zeros(rho["B02"].shape, bool)


def ibox(bx, grow, shape):
    h, w = shape
    return (max(0, int(math.floor(bx[0])) - grow), max(0, int(math.floor(bx[1])) - grow),
            min(w, int(math.ceil(bx[2])) + grow), min(h, int(math.ceil(bx[3])) + grow))


def all_boxes_mask(objs, shape, grow=1):
    m = np.zeros(shape, bool)
    for o in objs:
        x0, y0, x1, y1 = ibox(o["box"], grow, shape)
        m[y0:y1, x0:x1] = True
    return m


def textured_noise(shape, rng, corr=0.8):
    n = ndi.gaussian_filter(rng.standard_normal(shape), corr)
    return n / (n.std() + 1e-12)


def remove_object(rho, o, others_mask, water, rng, *, on_water=True):
    """Replace an object's box (grown 1 px) by a plane fitted to the surrounding background (water where
    there is water) plus noise matched to the local texture, with feathered seams."""
    shape = rho["B02"].shape
    x0, y0, x1, y1 = ibox(o["box"], 1, shape)
    for ring in (6, 10, 16, 24):
        X0, Y0, X1, Y1 = max(0, x0 - ring), max(0, y0 - ring), min(shape[1], x1 + ring), min(shape[0], y1 + ring)
        sel = np.ones((Y1 - Y0, X1 - X0), bool)
        sel[y0 - Y0:y1 - Y0, x0 - X0:x1 - X0] = False
        sel &= ~others_mask[Y0:Y1, X0:X1]
        if on_water:
            sel &= water[Y0:Y1, X0:X1]
        if sel.sum() >= 25:
            break
    if sel.sum() < 25:  # no water around: use any background
        sel = np.ones((Y1 - Y0, X1 - X0), bool)
        sel[y0 - Y0:y1 - Y0, x0 - X0:x1 - X0] = False
        sel &= ~others_mask[Y0:Y1, X0:X1]
    yy, xx = np.mgrid[Y0:Y1, X0:X1]
    A = np.stack([np.ones(sel.sum()), xx[sel] - x0, yy[sel] - y0], 1)
    core = np.zeros(shape, float)
    core[y0:y1, x0:x1] = 1
    alpha = np.maximum(core, np.clip(ndi.gaussian_filter(core, 0.9) * 1.6, 0, 1))
    alpha[others_mask] = 0  # never paint over an object that stays
    win = alpha[Y0:Y1, X0:X1]
    noise = textured_noise((Y1 - Y0, X1 - X0), rng, 0.5)
    # pixel-scale noise of the background from neighbour differences inside the ring (texture of the
    # surface itself, not the plane-fit residual, which holds markings and edges)
    pair = sel[:, 1:] & sel[:, :-1]
    for _b, arr in rho.items():
        sub = arr[Y0:Y1, X0:X1]
        coef, *_ = np.linalg.lstsq(A, sub[sel], rcond=None)
        dif = (sub[:, 1:] - sub[:, :-1])[pair]
        sig = 1.4826 * np.median(np.abs(dif - np.median(dif))) / math.sqrt(2) if dif.size > 10 else 0.0
        fill = coef[0] + coef[1] * (xx - x0) + coef[2] * (yy - y0) + sig * noise
        arr[Y0:Y1, X0:X1] = win * fill + (1 - win) * sub


def paste_object(rho_dst, cx, cy, src_rho, src_obj, rng, *, contrast_mask="bright"):
    """Add a real object cut from another scene: its contrast over its own local background (plane fit
    of the ring), feathered, added at (cx, cy) of the destination."""
    shape = src_rho["B02"].shape
    x0, y0, x1, y1 = ibox(src_obj["box"], 2, shape)
    X0, Y0, X1, Y1 = max(0, x0 - 5), max(0, y0 - 5), min(shape[1], x1 + 5), min(shape[0], y1 + 5)
    sel = np.ones((Y1 - Y0, X1 - X0), bool)
    sel[y0 - Y0:y1 - Y0, x0 - X0:x1 - X0] = False
    yy, xx = np.mgrid[Y0:Y1, X0:X1]
    A = np.stack([np.ones(sel.sum()), xx[sel], yy[sel]], 1)
    core = np.zeros((Y1 - Y0, X1 - X0))
    core[y0 - Y0:y1 - Y0, x0 - X0:x1 - X0] = 1
    contrast = {}
    for b in rho_dst:
        sub = src_rho[b][Y0:Y1, X0:X1]
        coef, *_ = np.linalg.lstsq(A, sub[sel], rcond=None)
        contrast[b] = (sub - (coef[0] + coef[1] * xx + coef[2] * yy))
    key = "B08" if "B08" in contrast else "B04"
    if contrast_mask == "bright":
        m = contrast[key] > 0.02
    else:
        m = np.abs(contrast[key]) > 0.01
    m = ndi.binary_dilation(m & (core > 0), iterations=1)
    alpha = np.clip(ndi.gaussian_filter(m.astype(float), 0.6) * 1.5, 0, 1) * core
    h, w = alpha.shape
    dx0, dy0 = int(round(cx - w / 2)), int(round(cy - h / 2))
    H, W = rho_dst["B02"].shape
    if dx0 < 0 or dy0 < 0 or dx0 + w > W or dy0 + h > H:
        return None
    for b in rho_dst:
        rho_dst[b][dy0:dy0 + h, dx0:dx0 + w] += alpha * contrast[b]
    bx = src_obj["box"]
    nb = (bx[0] - X0 + dx0, bx[1] - Y0 + dy0, bx[2] - X0 + dx0, bx[3] - Y0 + dy0)
    return {"box": nb, "lmin": src_obj["lmin"], "lmax": src_obj["lmax"], "pasted": True}


def lanczos_shift(a, dx, dy):
    """Content moves by (+dx, +dy) px: out[y, x] = a(y - dy, x - dx), Lanczos-3 separable, edges clamped."""
    out = a
    for axis, s in ((1, dx), (0, dy)):
        # out[i] = sum_o a[i + o] L(-s - o)
        offs = np.arange(int(math.floor(-s - 3)) + 1, int(math.ceil(-s + 3)))
        x = -s - offs
        w = np.sinc(x) * np.sinc(x / 3)
        w /= w.sum()
        r = int(np.abs(offs).max())
        k = np.zeros(2 * r + 1)
        k[r + offs] = w
        out = ndi.correlate1d(out, k, axis=axis, mode="nearest")
    return out


def smooth_noise(shape, rng, sigma):
    n = ndi.gaussian_filter(rng.standard_normal(shape), sigma)
    return n / (n.std() + 1e-12)


def make_cloud(shape, zone_mask, rng, *, cover="full", edge_px=40, gsd=10.0):
    """Cumulus over a zone: opaque core, soft edge (edge_px wide), faint haze around; returns alpha
    and shadow alpha (offset on the ground)."""
    ys, xs = np.nonzero(zone_mask)
    lump = smooth_noise(shape, rng, 12)
    if cover == "full":
        core = ndi.binary_dilation(zone_mask, iterations=6)
        alpha = _alpha_from_core(core, edge_px, rng, seed_noise=lump)
        alpha[ndi.binary_dilation(zone_mask, iterations=3)] = 1.0
    else:
        # a half-plane cut at a random angle, placed so that 60-80 % of the zone is under the cloud
        # (alpha > 0.5); the cut may lie outside the zone since the soft edge is wide
        ang = rng.uniform(0, 2 * math.pi)
        proj = (xs - xs.mean()) * math.cos(ang) + (ys - ys.mean()) * math.sin(ang)
        target = rng.uniform(0.62, 0.78)
        yy, xx = np.indices(shape)
        P = (xx - xs.mean()) * math.cos(ang) + (yy - ys.mean()) * math.sin(ang)
        best = None
        near = ndi.binary_dilation(zone_mask, iterations=int(edge_px * 3))
        for cut in np.linspace(proj.min() - 2 * edge_px, proj.max() + 2 * edge_px, 81):
            c = (P > cut) & near
            a = _alpha_from_core(c, edge_px, rng, seed_noise=lump)
            frac = float((a[zone_mask] > 0.5).mean())
            if best is None or abs(frac - target) < abs(best[0] - target):
                best = (frac, a)
        alpha = best[1]
    haze = np.clip(ndi.gaussian_filter(alpha, edge_px * 1.5) * 0.25, 0, 0.25)
    alpha = np.maximum(alpha, haze)
    sh_dx, sh_dy = int(rng.choice([-1, 1]) * rng.integers(35, 70)), int(rng.integers(25, 60))
    shadow = ndi.shift(alpha, (sh_dy, sh_dx), order=1, mode="constant")
    return alpha, shadow, (sh_dx, sh_dy)


def _alpha_from_core(core, edge_px, rng, seed_noise=None):
    d = ndi.distance_transform_edt(~core)
    if seed_noise is not None:
        d = np.maximum(0, d + seed_noise * edge_px * 0.25)
    a = np.clip(1 - d / edge_px, 0, 1)
    return a * a * (3 - 2 * a)  # smoothstep


def apply_cloud(rho, alpha, shadow, rng):
    shape = alpha.shape
    tex = smooth_noise(shape, rng, 4)
    level = {"B02": 0.62, "B03": 0.61, "B04": 0.60, "B08": 0.63, "B11": 0.42}
    for b, arr in rho.items():
        c = level[b] * (1 + 0.06 * tex) * (0.85 + 0.15 * np.clip(alpha * 2, 0, 1))
        shadowed = arr * (1 - 0.55 * shadow * (1 - alpha))
        rho[b] = (1 - alpha) * shadowed + alpha * c


# ----------------------------------------------------------------------------- writing
def to_utm(rho, transform, crs, sc):
    from rasterio.warp import Resampling, calculate_default_transform, reproject
    h, w = next(iter(rho.values())).shape
    lon, lat = Transformer.from_crs(crs, "EPSG:4326", always_xy=True).transform(*(transform * (w / 2, h / 2)))
    dst = f"EPSG:{(32600 if lat >= 0 else 32700) + int((lon + 180) // 6) + 1}"
    left, top = transform * (0, 0)
    right, bottom = transform * (w, h)
    t, W, H = calculate_default_transform(crs, dst, w, h, left, bottom, right, top, resolution=10)
    # snap the origin to the 10 m UTM grid
    t = Affine(10, 0, math.floor(t.c / 10) * 10, 0, -10, math.ceil(t.f / 10) * 10)
    out = {}
    for b, a in rho.items():
        o = np.full((H, W), np.nan)
        reproject(a, o, src_transform=transform, src_crs=crs, dst_transform=t, dst_crs=dst,
                  resampling=Resampling.cubic, src_nodata=None, dst_nodata=np.nan)
        out[b] = o
    # crop to rows/cols fully covered
    ok = np.all([np.isfinite(v) for v in out.values()], axis=0)
    rows, cols = np.flatnonzero(ok.any(1)), np.flatnonzero(ok.any(0))
    r0, r1, c0, c1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    for b in out:
        v = out[b][r0:r1, c0:c1]
        out[b] = np.where(np.isfinite(v), v, 0.0)  # outside the footprint: 0 = no data
    return out, t * Affine.translation(c0, r0), dst


def write_scene(folder, rho, transform, crs, fmt, date, rng, stacked=False):
    os.makedirs(folder, exist_ok=True)
    if stacked:  # one multi-band GeoTIFF whose band descriptions name the bands, DN = rho * 10000 + 1000
        names = list(rho)
        dn = np.stack([np.clip(np.round(rho[b] * 10000 + 1000), 0, 65535) for b in names]).astype(np.uint16)
        dn[:, np.all([rho[b] == 0 for b in names], axis=0)] = 0
        prof = dict(driver="GTiff", width=dn.shape[2], height=dn.shape[1], count=len(names), dtype="uint16",
                    crs=crs, transform=transform, compress="deflate", predictor=2, nodata=0)
        with rasterio.open(f"{folder}/S2_{date.replace('-', '')}_stack.tif", "w", **prof) as r:
            r.write(dn)
            for k, b in enumerate(names):
                r.set_band_description(k + 1, b)
            r.update_tags(ACQUISITION_DATE=date)
        return
    ymd = date.replace("-", "")
    for b, arr in rho.items():
        t = transform
        a = arr
        if fmt == "raw":
            name = f"{date}-00_00_{date}-23_59_Sentinel-2_L2A_{b}_(Raw).tiff"
            dn = np.clip(np.round(a * 65535), 1, 65535).astype(np.uint16)
            dn[a == 0] = 0
        elif fmt == "l1c":
            name = f"T33SXX_{ymd}T093041_{b}.tif"
            if b == "B11":  # native 20 m
                h, w = a.shape
                a = a[:h // 2 * 2, :w // 2 * 2].reshape(h // 2, 2, w // 2, 2).mean(axis=(1, 3))
                t = transform * Affine.scale(2)
            dn = np.clip(np.round(a * 10000 + 1000), 1, 65535).astype(np.uint16)
            dn[a == 0] = 0
        elif fmt == "l2a_tag":  # plain names, baseline-04 offset, date only in a GeoTIFF tag
            name = f"{b}.tif"
            dn = np.clip(np.round(a * 10000 + 1000), 1, 65535).astype(np.uint16)
        elif fmt == "plain":  # plain names, DN = rho * 10000, old baseline date in folder name
            name = f"{b}.tif"
            dn = np.clip(np.round(a * 10000), 1, 65535).astype(np.uint16)
        else:
            raise ValueError(fmt)
        prof = dict(driver="GTiff", width=dn.shape[1], height=dn.shape[0], count=1, dtype="uint16", crs=crs,
                    transform=t, compress="deflate", predictor=2)
        with rasterio.open(f"{folder}/{name}", "w", **prof) as r:
            r.write(dn, 1)
            if fmt == "l2a_tag":
                r.update_tags(ACQUISITION_DATE=f"{date}T10:20:31Z")


# ----------------------------------------------------------------------------- zones
def groups_of(objs, link):
    n = len(objs)
    c = np.array([((o["box"][0] + o["box"][2]) / 2, (o["box"][1] + o["box"][3]) / 2) for o in objs])
    parent = list(range(n))

    def find(i):
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i
    for i in range(n):
        for j in range(i + 1, n):
            if np.hypot(*(c[i] - c[j])) < link:
                parent[find(i)] = find(j)
    g = {}
    for i in range(n):
        g.setdefault(find(i), []).append(i)
    return list(g.values())


def irregular(poly, rng, amp):
    """Jitter a polygon's outline: resample its boundary and push vertices in/out."""
    poly = poly.buffer(0)
    ext = np.array(poly.exterior.coords)[:-1]
    L = poly.exterior.length
    k = max(8, int(L / 6))
    pts = [poly.exterior.interpolate(i * L / k) for i in range(k)]
    cx, cy = poly.centroid.x, poly.centroid.y
    out = []
    for p in pts:
        vx, vy = p.x - cx, p.y - cy
        n = math.hypot(vx, vy) + 1e-9
        r = rng.uniform(-0.3, 1.0) * amp
        out.append((p.x + vx / n * r, p.y + vy / n * r))
    del ext
    q = Polygon(out).buffer(0)
    return q if q.is_valid and not q.is_empty else poly


def obj_poly(o, grow):
    b = o["box"]
    return box(b[0] - grow, b[1] - grow, b[2] + grow, b[3] + grow)


def centre(o):
    b = o["box"]
    return ((b[0] + b[2]) / 2, (b[1] + b[3]) / 2)


def members(poly, objs):
    from shapely.geometry import Point
    return [i for i, o in enumerate(objs) if poly.contains(Point(*centre(o)))]


def straddlers(poly, objs):
    return [i for i, o in enumerate(objs) if poly.intersects(obj_poly(o, 1)) and not poly.contains(obj_poly(o, 1))]


def settle(poly, objs, scene_box, keep_out):
    """Grow the zone over boxes it cuts (so every object is clearly in or out), staying off keep_out."""
    for _ in range(4):
        s = straddlers(poly, objs)
        if not s:
            break
        inside = [i for i in s if poly.contains(Point(*centre(objs[i])))
                  or poly.intersection(obj_poly(objs[i], 0)).area > 0.3 * obj_poly(objs[i], 0).area]
        outside = [i for i in s if i not in inside]
        if inside:
            poly = unary_union([poly] + [obj_poly(objs[i], 2) for i in inside])
        if outside:
            poly = poly.difference(unary_union([obj_poly(objs[i], 2) for i in outside]))
    poly = poly.intersection(scene_box)
    if keep_out is not None:
        poly = poly.difference(keep_out)
    if isinstance(poly, MultiPolygon):
        poly = max(poly.geoms, key=lambda g: g.area)
    return poly


def to_lonlat(poly, transform, crs):
    tr = Transformer.from_crs(crs, "EPSG:4326", always_xy=True)

    def conv(p):
        ext = [tr.transform(*(transform * (x, y))) for x, y in p.exterior.coords]
        return Polygon(ext)
    if isinstance(poly, MultiPolygon):
        return MultiPolygon([conv(g) for g in poly.geoms])
    return conv(poly)


# ----------------------------------------------------------------------------- claims
TEXT = {
    ("vessels", "present_before"): "Vessels were berthed in {z} on the first date",
    ("vessels", "present_after"): "Ships still alongside in {z}",
    ("vessels", "absent_before"): "{z} was empty of shipping before",
    ("vessels", "absent_after"): "No vessels remain in {z}",
    ("vessels", "decreased"): "Fewer ships in {z} than before (drawdown)",
    ("vessels", "increased"): "Build-up of shipping in {z}",
    ("vessels", "unchanged"): "Same number of vessels in {z} on both dates",
    ("aircraft", "present_before"): "Aircraft parked on {z} on the first date",
    ("aircraft", "present_after"): "Aircraft still parked on {z}",
    ("aircraft", "absent_before"): "{z} was clear of aircraft before",
    ("aircraft", "absent_after"): "All aircraft have left {z}",
    ("aircraft", "decreased"): "Fewer aircraft on {z} than before",
    ("aircraft", "increased"): "More aircraft on {z} than before (surge)",
    ("aircraft", "unchanged"): "No change in the number of aircraft on {z}",
}
SWAP = {"present_before": "present_after", "present_after": "present_before", "absent_before": "absent_after",
        "absent_after": "absent_before", "decreased": "increased", "increased": "decreased",
        "unchanged": "unchanged"}


def claims_for(fate, cloud_date):
    """(assert, truth) pairs for a zone, dates as built (before = real image unless swapped later)."""
    S, R, INC = "SUPPORTED", "REFUTED", "INCONCLUSIVE"
    if fate == "left":
        return [("present_before", S), ("absent_after", S), ("decreased", S), ("unchanged", R)]
    if fate == "some":
        return [("decreased", S), ("present_after", S), ("absent_after", R)]
    if fate == "stay":
        return [("present_after", S), ("unchanged", S), ("decreased", R), ("absent_after", R)]
    if fate == "arrive":
        return [("absent_before", S), ("increased", S), ("present_after", S), ("unchanged", R)]
    if fate == "empty":
        return [("absent_before", S), ("absent_after", S), ("present_after", R)]
    if fate == "cloud":  # objects left under a full opaque cloud on cloud_date
        if cloud_date == "after":
            return [("present_before", S), ("absent_after", INC), ("decreased", INC), ("present_after", INC)]
        return [("present_before", INC), ("absent_before", INC), ("absent_after", S), ("decreased", INC)]
    if fate == "pcloud":  # 60-80 % cover, objects stayed
        if cloud_date == "after":
            return [("present_before", S), ("absent_after", INC), ("unchanged", INC)]
        return [("present_after", S), ("absent_before", INC), ("unchanged", INC)]
    raise ValueError(fate)


# ----------------------------------------------------------------------------- one case
def build_case(cfg):
    rng = np.random.default_rng(cfg["seed"])
    name = cfg["name"]
    out = f"{OUT}/{name}"
    shutil.rmtree(out, ignore_errors=True)
    os.makedirs(out)
    obj_kind = cfg["object"]
    if obj_kind == "vessels":
        sc = load_port(cfg["port"])
        link = 25
    else:
        sc = load_chip(cfg["chip"], cfg.get("crs", "utm"), rng)
        link = 9
    rho = sc["rho"]
    shape = rho["B02"].shape
    H, W = shape
    objs = [o for o in sc["objs"] if not o.get("trunc")]
    allobjs = sc["objs"]
    water = water_mask(rho)
    occupied = all_boxes_mask(allobjs, shape, grow=2)
    scene_box = box(0, 0, W, H)
    # candidate groups (objects long enough to be resolvable: >= 45 m vessels, >= 40 m aircraft)
    minlen = 45 if obj_kind == "vessels" else 40
    good = [i for i, o in enumerate(objs) if o["lmin"] >= minlen]
    groups = [[good[k] for k in g] for g in groups_of([objs[i] for i in good], link)]
    rng.shuffle(groups)
    groups.sort(key=lambda g: -len(g) if cfg.get("big_first") else 0)
    fates = list(cfg["fates"])
    zones, used_objs = [], set()
    keep_out = None
    zone_polys = {}
    for zi, fate in enumerate(fates):
        zname = cfg.get("zone_names", {}).get(zi, f"{('berth' if obj_kind == 'vessels' else 'apron')}_{chr(65 + zi)}")
        shape_kind = cfg.get("shapes", {}).get(zi, "hull")
        if fate in ("arrive", "empty"):
            poly = empty_zone(sc, water, occupied, rng, obj_kind, keep_out, scene_box)
            if poly is None:
                print(f"{name}: no empty place for zone {zi}", file=sys.stderr)
                continue
        else:
            need = 2 if fate == "some" else 1
            cand = [g for g in groups if len(g) >= need and not (set(g) & used_objs)]
            if fate == "some":
                cand = [g for g in cand if len(touching_components([objs[i] for i in g])) >= 2]
            if shape_kind == "thin":
                cand = [[i] for g in cand for i in g if objs[i]["lmin"] >= minlen + 20]
            if not cand:
                print(f"{name}: no group for zone {zi} ({fate})", file=sys.stderr)
                continue
            if shape_kind == "edge":
                def edist(g):
                    return min(min(objs[i]["box"][0], objs[i]["box"][1], W - objs[i]["box"][2],
                                   H - objs[i]["box"][3]) for i in g)
                cand.sort(key=edist)
            g = cand[0]
            grow = 4 if obj_kind == "vessels" else 3
            if shape_kind == "thin":
                o = objs[g[0]]
                b = o["box"]
                if b[2] - b[0] >= b[3] - b[1]:
                    poly = box(b[0] - 8, b[1] - 2, b[2] + 8, b[3] + 2)
                else:
                    poly = box(b[0] - 2, b[1] - 8, b[2] + 2, b[3] + 8)
            else:
                hull = unary_union([obj_poly(objs[i], grow) for i in g]).convex_hull
                poly = irregular(hull, rng, grow)
                if shape_kind == "edge":
                    x0, y0, x1, y1 = poly.bounds
                    d = {"l": x0, "t": y0, "r": W - x1, "b": H - y1}
                    side = min(d, key=d.get)
                    ext = {"l": box(0, y0, x1, y1), "t": box(x0, 0, x1, y1), "r": box(x0, y0, W, y1),
                           "b": box(x0, y0, x1, H)}[side]
                    poly = unary_union([poly, ext.intersection(poly.convex_hull.buffer(2).envelope)])
                    poly = unary_union([poly, ext])
                    # trim so other objects stay out
            others = [objs[i] for i in range(len(objs)) if i not in g]
            poly = settle(poly, objs, scene_box, keep_out)
            if shape_kind == "multi":
                cand2 = [h for h in groups if h is not g and not (set(h) & used_objs) and not (set(h) & set(g))]
                if cand2:
                    g2 = cand2[0]
                    hull2 = unary_union([obj_poly(objs[i], grow) for i in g2]).convex_hull
                    p2 = settle(irregular(hull2, rng, grow), objs, scene_box, keep_out)
                    if p2.intersects(poly):
                        p2 = p2.difference(poly.buffer(1))
                    if isinstance(p2, Polygon) and not p2.is_empty:
                        poly = MultiPolygon([poly, p2])
            del others
        if poly.is_empty:  # settled away to nothing by the zones already placed
            print(f"{name}: zone {zi} ({fate}) has no room left, skipped", file=sys.stderr)
            continue
        mem = members(poly, allobjs)
        if any(i in used_objs for i in mem):
            print(f"{name}: zone {zi} overlaps a used group, skipped", file=sys.stderr)
            continue
        used_objs |= set(mem)
        keep_out = poly.buffer(3) if keep_out is None else unary_union([keep_out, poly.buffer(3)])
        zone_polys[zname] = poly
        zones.append({"name": zname, "fate": fate, "shape": shape_kind, "members": mem})
    # ---- the after date (as built: before = real)
    after = {b: a.copy() for b, a in rho.items()}
    _removed, _added = {}, {}
    for z in zones:
        mem = z["members"]
        if z["fate"] in ("left", "cloud"):
            rm = list(mem)
        elif z["fate"] == "some":
            # remove whole clusters of touching boxes, so that no staying object loses pixels to a fill
            comps = touching_components([allobjs[i] for i in mem])
            order = list(rng.permutation(len(comps)))
            rm = []
            for ci in order[:-1]:
                if len(rm) >= max(1, len(mem) // 2):
                    break
                rm += [mem[k] for k in comps[ci]]
            if not rm:
                z["fate"] = "stay"
        else:
            rm = []
        z["removed"] = [int(i) for i in rm]
        others_mask = all_boxes_mask([allobjs[i] for i in range(len(allobjs)) if i not in rm], shape, 1)
        for i in rm:
            remove_object(after, allobjs[i], others_mask, water, rng, on_water=obj_kind == "vessels")
        if z["fate"] == "arrive":
            z["added"] = paste_into(after, zone_polys[z["name"]], cfg, rng, obj_kind, occupied)
    # zone truth counts
    for z in zones:
        lens = [allobjs[i]["lmin"] for i in z["members"]]
        z["n_before"] = len(z["members"])
        z["n_after"] = len(z["members"]) - len(z["removed"]) + len(z.get("added", []))
        z["lengths_m"] = [round(x) for x in lens] + [round(a["lmin"]) for a in z.get("added", [])]
    # ---- cloud
    cloud_info = None
    alpha = None  # no cloud, or its zone found no place
    if cfg.get("cloud"):
        cz, cdate, cover = cfg["cloud"]
        zc = [z for z in zones if z["fate"] in ("cloud", "pcloud")]
        if zc:
            zm = rasterize(zone_polys[zc[0]["name"]], shape)
            edge = int(rng.uniform(300, 600) / sc["gsd"] / (2 if obj_kind == "aircraft" else 1))
            alpha, shadow, sh = make_cloud(shape, zm, rng, cover=cover, edge_px=max(8, edge), gsd=sc["gsd"])
            others = np.zeros(shape, bool)
            for z in zones:
                if z is not zc[0]:
                    others |= rasterize(zone_polys[z["name"]], shape)
            if others.any():
                dist = ndi.distance_transform_edt(~others)
                fac = np.clip((dist - 2) / 8, 0, 1)
                alpha, shadow = alpha * fac, shadow * fac
            cloud_info = {"zone": zc[0]["name"], "date": cdate, "cover": cover, "edge_px": edge, "shadow_px": sh,
                          "zone_alpha_gt_0.5": round(float((alpha[zm] > 0.5).mean()), 3)}
            # shadow or cloud over other zones changes their truth: record it
            for z in zones:
                if z is zc[0]:
                    continue
                m = rasterize(zone_polys[z["name"]], shape)
                z["cloud_alpha_mean"] = round(float(alpha[m].mean()), 3)
                z["shadow_mean"] = round(float(shadow[m].mean()), 3)
            # objects in the clear part of a partial-cloud zone
            al = [float(alpha[int(centre(allobjs[i])[1]), int(centre(allobjs[i])[0])]) for i in zc[0]["members"]]
            zc[0]["object_alpha"] = [round(x, 3) for x in al]
            zc[0]["visible_under_partial"] = [i for i, x in zip(zc[0]["members"], al) if x < 0.05]
            zc[0]["hazy_under_partial"] = [i for i, x in zip(zc[0]["members"], al) if 0.05 <= x <= 0.6]
            cloud_info["zone_alpha_gt_0.5"] = round(float((alpha[zm] > 0.5).mean()), 3)
    # ---- swap dates?
    swap = cfg.get("swap", False)
    real, made = rho, after
    before_rho, after_rho = (made, real) if swap else (real, made)
    before_rho = {b: a.copy() for b, a in before_rho.items()}
    after_rho = {b: a.copy() for b, a in after_rho.items()}
    if alpha is not None:
        built_date = cfg["cloud"][1]  # in output dates
        target = after_rho if built_date == "after" else before_rho
        apply_cloud(target, alpha, shadow, rng)
    # misregistration + radiometry of the after date
    dx, dy = cfg["shift"]
    for b in after_rho:
        after_rho[b] = lanczos_shift(after_rho[b], dx, dy)
    g = cfg["gain"]
    noise = cfg.get("noise", 0.003)
    for b in after_rho:
        a = after_rho[b] * g * cfg.get("band_gain", {}).get(b, 1.0)
        if cfg["fmt_after"] == "l1c":
            a = a + PATH[b]
        after_rho[b] = a + rng.normal(0, noise, a.shape)
    # after extent
    t_b = sc["transform"]
    t_a = t_b
    ox, oy, cw, ch = cfg.get("after_window", (0, 0, W, H))
    if (ox, oy, cw, ch) != (0, 0, W, H):
        for b in after_rho:
            after_rho[b] = after_rho[b][oy:oy + ch, ox:ox + cw]
        t_a = t_b * Affine.translation(ox, oy)
    if not zones:  # every zone squeezed out by the others (fresh draws): no case, not an empty zones file
        shutil.rmtree(out, ignore_errors=True)
        return 0
    # dates
    d_before = cfg.get("date_before", sc["date"] or "2023-06-02")
    import datetime as _dt
    d_after = cfg.get("date_after", (_dt.date.fromisoformat(d_before) + _dt.timedelta(days=12)).isoformat())
    bdir, adir = (d_before, d_after) if cfg.get("dated_folders") else ("before", "after")
    write_scene(f"{out}/{bdir}", before_rho, t_b, sc["crs"], cfg["fmt_before"], d_before, rng)
    crs_a = sc["crs"]
    if cfg.get("after_utm"):  # the after date delivered on its own UTM 10 m grid (as a real tile would be)
        after_rho, t_a, crs_a = to_utm(after_rho, t_a, sc["crs"], sc)
    write_scene(f"{out}/{adir}", after_rho, t_a, crs_a, cfg["fmt_after"], d_after, rng,
                stacked=cfg.get("after_stacked", False))
    # ---- zones file (lon/lat)
    feats = []
    for z in zones:
        geom = to_lonlat(zone_polys[z["name"]], t_b, sc["crs"])
        if isinstance(geom, MultiPolygon) and cfg.get("multi_as_features", True):
            for part in geom.geoms:
                feats.append({"type": "Feature", "properties": {"name": z["name"]}, "geometry": mapping(part)})
        else:
            feats.append({"type": "Feature", "properties": {"name": z["name"]}, "geometry": mapping(geom)})
    json.dump({"type": "FeatureCollection", "features": feats}, open(f"{out}/zones.geojson", "w"))
    # ---- claims and truth
    claims, truth = [], {}
    cdate_built = cfg["cloud"][1] if cfg.get("cloud") else None
    # the cloud date given in cfg is in OUTPUT dates; claims_for works in built dates
    for z in zones:
        cd = cdate_built
        if swap and cd:
            cd = "before" if cd == "after" else "after"
        pairs = claims_for(z["fate"], cd)
        accept = {}
        if z["fate"] == "pcloud":
            vis, hazy = z.get("visible_under_partial", []), z.get("hazy_under_partial", [])
            pairs = [(a, ("SUPPORTED" if vis else "INCONCLUSIVE") if a == f"present_{cd}" else t) for a, t in pairs]
            if not vis and hazy:  # an object in the haze: either verdict is defensible (seeing it there
                accept[f"present_{cd}"] = ["SUPPORTED", "INCONCLUSIVE"]  # supports presence and refutes absence)
                accept[f"absent_{cd}"] = ["REFUTED", "INCONCLUSIVE"]
        extra = []
        lens = z["lengths_m"]
        if z["fate"] == "left" and lens and min(lens) >= 90:
            extra.append(("absent_after", "SUPPORTED", 60))
        if z["fate"] == "stay" and lens and max(lens) >= 90:
            ml = 60
            extra.append(("present_after", "SUPPORTED", ml))
        if z["fate"] == "stay" and lens and max(lens) < 55 and obj_kind == "aircraft":
            pass
        for _k, (a, t, *ml) in enumerate([(a, t) for a, t in pairs] + extra):
            a_out = SWAP[a] if swap else a
            cid = f"{z['name'].lower()}-{a_out.replace('_', '-')}{'-' + str(ml[0]) + 'm' if ml else ''}"
            c = {"id": cid, "text": TEXT[(obj_kind, a_out)].format(z=z["name"].replace("_", " ")),
                 "object": obj_kind, "zone": z["name"], "assert": a_out}
            if ml:
                c["min_length_m"] = ml[0]
            claims.append(c)
            truth[cid] = {"truth": t, "role": f"{z['fate']}{'-swap' if swap else ''}", "zone_shape": z["shape"],
                          "assert": a_out, **({"accept": accept[a]} if a in accept and not ml else {})}
    doc = {"before": bdir, "after": adir, "zones": "zones.geojson", "claims": claims}
    with open(f"{out}/claims.yaml", "w") as f:
        f.write(f"# R3 case {name}: {cfg.get('note', '')}\n")
        yaml.safe_dump(doc, f, sort_keys=False)
    info = {k: v for k, v in cfg.items() if k not in ()}
    json.dump({"claims": truth, "zones": zones, "cloud": cloud_info, "config": info,
               "source": sc["name"], "gsd_m": sc["gsd"]}, open(f"{out}/truth.json", "w"), indent=1, default=str)
    return len(claims)


def touching_components(objs, grow=2):
    n = len(objs)
    polys = [obj_poly(o, grow) for o in objs]
    parent = list(range(n))

    def find(i):
        while parent[i] != i:
            i = parent[i]
        return i
    for i in range(n):
        for j in range(i + 1, n):
            if polys[i].intersects(polys[j]):
                parent[find(i)] = find(j)
    g = {}
    for i in range(n):
        g.setdefault(find(i), []).append(i)
    return list(g.values())


def rasterize(poly, shape):
    from rasterio.features import rasterize as rz
    return rz([(poly, 1)], out_shape=shape, transform=Affine.identity()).astype(bool)


def empty_zone(sc, water, occupied, rng, obj_kind, keep_out, scene_box):
    H, W = sc["rho"]["B02"].shape
    size = 40 if obj_kind == "vessels" else 14
    free = ~ndi.binary_dilation(occupied, iterations=10 if obj_kind == "vessels" else 4)
    if obj_kind == "vessels":
        ok = water & free
    else:
        ok = free
    integ = ndi.uniform_filter(ok.astype(float), size)
    for _ in range(400):
        y, x = int(rng.integers(size, H - size)), int(rng.integers(size, W - size))
        if integ[y, x] > 0.995:
            p = irregular(box(x - size / 2, y - size / 2, x + size / 2, y + size / 2), rng, size / 8)
            if keep_out is not None and p.intersects(keep_out):
                continue
            return p
    return None


def paste_into(after, poly, cfg, rng, obj_kind, occupied):
    """Paste 2-3 real objects from another source into the zone."""
    if obj_kind == "vessels":
        src = load_port(cfg["paste_from"])
    else:
        src = load_chip(cfg["paste_from"], "utm", rng)
    cands = [o for o in src["objs"] if 70 <= o["lmin"] <= 220 and not o.get("trunc")] if obj_kind == "vessels" \
        else [o for o in src["objs"] if o["lmin"] >= 45 and not o.get("trunc")]
    if obj_kind == "vessels":
        sw = water_mask(src["rho"])
        def ring_water(o):
            x0, y0, x1, y1 = ibox(o["box"], 5, sw.shape)
            m = sw[y0:y1, x0:x1].copy()
            ix0, iy0, ix1, iy1 = ibox(o["box"], 1, sw.shape)
            m[iy0 - y0:iy1 - y0, ix0 - x0:ix1 - x0] = True
            return m.mean()
        cands = [o for o in cands if ring_water(o) >= 0.9]
    rng.shuffle(cands)
    added = []
    minx, miny, maxx, maxy = poly.bounds
    placed = []
    for o in cands:
        if len(added) >= cfg.get("n_paste", 2):
            break
        for _ in range(50):
            cx, cy = rng.uniform(minx + 6, maxx - 6), rng.uniform(miny + 6, maxy - 6)
            from shapely.geometry import Point
            bw, bh = o["box"][2] - o["box"][0], o["box"][3] - o["box"][1]
            fp = box(cx - bw / 2 - 2, cy - bh / 2 - 2, cx + bw / 2 + 2, cy + bh / 2 + 2)
            if poly.contains(fp) and not any(fp.intersects(p) for p in placed) and poly.contains(Point(cx, cy)):
                r = paste_object(after, cx, cy, src["rho"], o, rng,
                                 contrast_mask="bright" if obj_kind == "vessels" else "abs")
                if r:
                    placed.append(fp.buffer(3))
                    added.append(r)
                break
    return added


# ----------------------------------------------------------------------------- the cases
def cases():
    C = []
    # vessels: 7 ports x 2
    V = [
        dict(port="athens", fates=["left", "some", "stay", "cloud", "arrive"], shapes={1: "multi", 2: "thin"},
             cloud=(None, "after", "full"), fmt_before="raw", fmt_after="raw", shift=(0.35, -0.6), gain=0.88,
             paste_from="genoa", note="whole scene, raw exports both dates, full cumulus after"),
        dict(port="athens", fates=["left", "stay", "pcloud", "some"], shapes={0: "edge", 1: "hull"},
             cloud=(None, "after", "partial"), fmt_before="raw", fmt_after="l1c", shift=(-0.7, 0.25), gain=1.1,
             note="L1C-like after, partial cloud"),
        dict(port="genoa", fates=["left", "stay", "some", "cloud"], shapes={0: "thin"},
             cloud=(None, "before", "full"), fmt_before="raw", fmt_after="l1c", shift=(0.5, 0.5), gain=0.95,
             note="cloud on the before date"),
        dict(port="genoa", fates=["left", "stay", "arrive"], shapes={1: "edge"}, swap=True,
             fmt_before="raw", fmt_after="raw", shift=(-0.25, -0.85), gain=1.18, paste_from="athens",
             note="swapped dates: real scene is the after date"),
        dict(port="marseille", fates=["left", "stay", "cloud", "empty"], shapes={0: "multi"},
             cloud=(None, "after", "full"), fmt_before="raw", fmt_after="l2a_tag", shift=(0.8, -0.3), gain=0.92,
             date_after="2023-09-06", note="after as plain B0x.tif with baseline offset, date in tag"),
        dict(port="marseille", fates=["stay", "some", "left"], shapes={2: "thin"},
             fmt_before="raw", fmt_after="raw", shift=(-0.45, 0.65), gain=1.05, after_window=(40, 25, 1380, 1540),
             note="after scene with another extent"),
        dict(port="busan", fates=["left", "stay", "some", "pcloud"], shapes={0: "edge"},
             cloud=(None, "after", "partial"), fmt_before="raw", fmt_after="l1c", shift=(0.3, 0.75), gain=1.0,
             band_gain={"B02": 1.06, "B08": 0.93}, note="L1C after, band-dependent gain, partial cloud"),
        dict(port="busan", fates=["stay", "left", "arrive"], shapes={}, swap=True, fmt_before="raw",
             fmt_after="raw", shift=(-0.6, -0.4), gain=0.85, paste_from="durban", noise=0.006,
             note="swapped, higher noise"),
        dict(port="durban", fates=["left", "some", "stay", "cloud"], shapes={2: "multi"},
             cloud=(None, "after", "full"), fmt_before="raw", fmt_after="raw", shift=(0.9, 0.2), gain=1.12,
             note="full cloud after"),
        dict(port="durban", fates=["stay", "left", "arrive", "pcloud"], shapes={1: "thin"},
             cloud=(None, "before", "partial"), fmt_before="raw", fmt_after="l1c", shift=(-0.2, 0.55), gain=0.9,
             paste_from="marseille", note="partial cloud before, L1C after"),
        dict(port="honolulu", fates=["left", "stay"], shapes={}, fmt_before="raw", fmt_after="raw",
             shift=(0.4, -0.4), gain=1.07, note="small port"),
        dict(port="honolulu", fates=["stay", "cloud", "left"], shapes={}, cloud=(None, "after", "full"),
             fmt_before="raw", fmt_after="l1c", shift=(-0.55, 0.3), gain=0.93, note="small port, cloud"),
        dict(port="casablanca", fates=["left", "stay", "some"], shapes={0: "edge"}, fmt_before="raw",
             fmt_after="raw", shift=(0.65, 0.45), gain=0.9, note="small port"),
        dict(port="casablanca", fates=["stay", "left", "cloud"], shapes={}, cloud=(None, "before", "full"),
             swap=False, fmt_before="raw", fmt_after="l1c", shift=(-0.3, -0.7), gain=1.15, note="cloud before"),
    ]
    V += [
        dict(port="athens", fates=["left", "multi_stay", "some", "cloud"], shapes={1: "multi"},
             cloud=(None, "after", "full"), fmt_before="raw", fmt_after="raw", shift=(0.6, 0.35), gain=1.08,
             after_utm=True, multi_as_features=False,
             note="after delivered on its own UTM 10 m grid; a MultiPolygon zone in one feature"),
        dict(port="durban", fates=["stay", "left", "cloud", "arrive"], shapes={}, cloud=(None, "after", "full"),
             fmt_before="raw", fmt_after="raw", shift=(-0.35, -0.5), gain=0.9, after_utm=True, after_stacked=True,
             paste_from="athens", note="after = one multi-band GeoTIFF on UTM 10 m, band descriptions"),
        dict(port="genoa", fates=["left", "some", "stay"], shapes={}, fmt_before="raw", fmt_after="l2a_tag",
             shift=(0.25, 0.7), gain=1.12, after_utm=True, date_after="2023-07-25", note="after on UTM grid"),
    ]
    for i, v in enumerate(V):
        v["fates"] = [f.replace("multi_", "") for f in v["fates"]]
        v.update(object="vessels", seed=100 + i, name=f"v{i:02d}_{v['port']}")
        C.append(v)
    chips = sorted(os.listdir(f"{DATA}/aircraft_s2sim"))
    picks = ["03f84930", "11928d1c", "20bfce20", "29324dbf", "48ef8e15", "58956bcc", "65e32857", "70332141",
             "b3324b5e", "e18dde99", "ed921ec7", "ef8ff443"]
    A_f = [
        (["left", "stay", "some"], None), (["left", "stay", "cloud"], ("after", "full")),
        (["stay", "left", "arrive"], None), (["some", "stay", "pcloud"], ("after", "partial")),
        (["left", "stay", "cloud"], ("before", "full")), (["stay", "left", "some"], None),
        (["left", "arrive", "stay"], None), (["stay", "left", "cloud"], ("after", "full")),
        (["left", "some", "stay"], None), (["stay", "left"], None), (["left", "stay", "pcloud"], ("after", "partial")),
        (["some", "left", "stay"], None),
    ]
    crs_kinds = ["utm", "4326", "3857"]
    fmts = [("plain", "l1c"), ("plain", "plain"), ("plain", "l2a_tag")]
    for i, (p, (fates, cl)) in enumerate(zip(picks, A_f)):
        chip = [c for c in chips if c.startswith(p)][0]
        fb, fa = fmts[i % 3]
        rng = np.random.default_rng(900 + i)
        sx = float(rng.uniform(0.2, 0.9)) * rng.choice([-1, 1])
        sy = float(rng.uniform(0.2, 0.9)) * rng.choice([-1, 1])
        cfg = dict(object="aircraft", chip=chip, crs=crs_kinds[i % 3], fates=fates,
                   shapes={0: "edge"} if i % 4 == 0 else ({1: "multi"} if i % 4 == 1 else {}),
                   fmt_before=fb, fmt_after=fa, shift=(round(sx, 2), round(sy, 2)),
                   gain=round(float(rng.uniform(0.85, 1.2)), 3), seed=500 + i, name=f"a{i:02d}_{p}",
                   swap=i in (5, 9), paste_from=[c for c in chips if c.startswith("ca7b1077")][0],
                   date_before="2021-05-04", date_after="2023-05-19" if fa != "plain" else "2021-05-19",
                   note=f"aircraft chip placed in {crs_kinds[i % 3]}")
        if cl:
            cfg["cloud"] = (None, cl[0], cl[1])
        C.append(cfg)
    # the same aprons as plain B0x.tif (DN = reflectance x 10000, no offset, as aircraft_s2sim) in folders named
    # by their dates (scenes/<site>/<date>/ as in the samples)
    for i in range(12):
        c = dict(C[-12 + i - 0]) if False else None
    base = [c for c in C if c["object"] == "aircraft"]
    for c in base[:12]:
        d = dict(c)
        d.update(fmt_before="plain", fmt_after="plain", dated_folders=True, date_before="2024-12-03",
                 date_after="2024-12-15", name="d" + c["name"][1:], note=c["note"] + "; plain DN, dated folders")
        C.append(d)
    chip = [c for c in chips if c.startswith("12210ad7")][0]
    C.append(dict(object="aircraft", chip=chip, crs="4326", fates=["left", "stay", "cloud"], shapes={},
                  fmt_before="plain", fmt_after="raw", shift=(0.45, -0.3), gain=1.1, seed=600, name="a12_12210ad7",
                  cloud=(None, "after", "full"), after_utm=True, date_before="2023-03-01", date_after="2023-03-16",
                  paste_from=chip, note="chip in EPSG:4326 before; after reprojected to UTM, raw-export names"))
    C.append(dict(object="aircraft", chip=[c for c in chips if c.startswith("7ab2461e")][0], crs="3857",
                  fates=["stay", "left", "some"], shapes={}, fmt_before="plain", fmt_after="raw", shift=(-0.6, 0.6),
                  gain=0.9, seed=601, name="a13_7ab2461e", after_utm=True, after_stacked=True,
                  date_before="2023-03-01", date_after="2023-03-16", paste_from=chip,
                  note="chip in EPSG:3857 before; after a stacked GeoTIFF on UTM"))
    return C


def fresh_cases(seed: int) -> list[dict]:
    """A new draw of cases, for rules tuned on :func:`cases`: 7 harbour cases (one per port, other ships
    picked for the zones) and 12 apron cases on aircraft chips :func:`cases` never uses, with fates,
    clouds, formats, shifts and gains drawn from ``seed``. Names ``vx<i>_<port>`` and ``ax<i>_<chip>``
    (``--honest`` reads the port or chip from them as for the fixed cases)."""
    rng = np.random.default_rng(seed)

    def shift() -> tuple[float, float]:
        return tuple(round(float(rng.uniform(0.2, 0.9) * rng.choice([-1, 1])), 2) for _ in range(2))

    def add_cloud(cfg: dict) -> None:
        for f in ("cloud", "pcloud"):
            if f in cfg["fates"]:
                cfg["cloud"] = (None, str(rng.choice(["before", "after"])), "full" if f == "cloud" else "partial")

    C = []
    ports = ["athens", "busan", "casablanca", "durban", "genoa", "honolulu", "marseille"]
    v_fates = [["left", "stay", "some", "cloud"], ["stay", "left", "arrive"], ["left", "stay", "pcloud"],
               ["stay", "some", "left", "cloud"], ["left", "stay", "arrive", "pcloud"], ["stay", "left"]]
    for i, port in enumerate(ports):
        fates = list(v_fates[rng.integers(len(v_fates))])
        rng.shuffle(fates)
        cfg = dict(object="vessels", port=port, fates=fates, shapes={}, fmt_before="raw",
                   fmt_after=str(rng.choice(["raw", "l1c", "l2a_tag"])), swap=bool(rng.random() < 0.25),
                   shift=shift(), gain=round(float(rng.uniform(0.85, 1.2)), 3), seed=seed * 1000 + i,
                   paste_from=str(rng.choice([q for q in ports if q != port])), name=f"vx{i:02d}_{port}",
                   note=f"fresh draw {seed}")
        if cfg["fmt_after"] == "l2a_tag":
            cfg["date_after"] = "2023-09-06"
        add_cloud(cfg)
        C.append(cfg)
    fixed = [c for c in cases() if c["object"] == "aircraft"]
    used = {c["chip"] for c in fixed} | {c["paste_from"] for c in fixed}  # chips the fixed cases show
    paste = fixed[0]["paste_from"]
    chips = [c for c in sorted(os.listdir(f"{DATA}/aircraft_s2sim")) if c not in used]
    a_fates = [["left", "stay", "some"], ["left", "stay", "cloud"], ["stay", "left", "arrive"],
               ["some", "stay", "pcloud"], ["stay", "left"], ["left", "arrive", "stay"]]
    for i, chip in enumerate(rng.choice(chips, size=min(12, len(chips)), replace=False)):
        fates = list(a_fates[rng.integers(len(a_fates))])
        rng.shuffle(fates)
        fb, fa = [("plain", "l1c"), ("plain", "plain"), ("plain", "l2a_tag")][rng.integers(3)]
        cfg = dict(object="aircraft", chip=str(chip), crs=str(rng.choice(["utm", "4326", "3857"])), fates=fates,
                   shapes={}, fmt_before=fb, fmt_after=fa, swap=bool(rng.random() < 0.2), shift=shift(),
                   gain=round(float(rng.uniform(0.85, 1.2)), 3), seed=seed * 1000 + 100 + i, paste_from=paste,
                   date_before="2021-05-04", date_after="2023-05-19" if fa != "plain" else "2021-05-19",
                   name=f"ax{i:02d}_{str(chip)[:8]}", note=f"fresh draw {seed}")
        add_cloud(cfg)
        C.append(cfg)
    return C


#: The harbour cases that get sun-glint probes with ``--glint`` (prefix: glint amplitude, reflectance).
GLINT_CASES = ("v00_athens", "v04_marseille", "v05_marseille", "v08_durban", "v10_honolulu", "v12_casablanca")
GLINT_PROBES = {"g_": 0.12, "h_": 0.04}


def add_glint(case: str, prefix: str, amplitude: float) -> str:
    """Copy ``case`` to ``prefix + case`` with sun glint on the after date's water (objects unchanged).

    The glint is a broad Gaussian patch (radius 0.45 x the scene, centred in its middle 40 %) of
    ``amplitude`` reflectance with wave texture (Gaussian noise smoothed over 1.2 px, spread amplitude / 2.4),
    over the water (after date's NIR < 0.09, opened), added to B02-B08 (x 1.0, NIR x 0.95) and B11 (x 0.6).
    """
    src, dst = os.path.join(OUT, case), os.path.join(OUT, prefix + case)
    shutil.rmtree(dst, ignore_errors=True)
    shutil.copytree(src, dst)
    rng = np.random.default_rng(7)
    files = sorted(glob.glob(f"{dst}/after/*"))
    b08 = next(f for f in files if "B08" in f)
    with rasterio.open(b08) as r:
        scale = 65535 if "(Raw)" in b08 else 10000
        off = 0 if scale == 65535 else 1000
        nir = (r.read(1).astype(float) - off) / scale
    water = ndi.binary_opening(nir < 0.09, iterations=1)
    yy, xx = np.indices(nir.shape)
    cx, cy = rng.uniform(0.3, 0.7) * nir.shape[1], rng.uniform(0.3, 0.7) * nir.shape[0]
    radius = 0.45 * max(nir.shape)
    field = np.exp(-(((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * radius ** 2)))
    waves = ndi.gaussian_filter(rng.standard_normal(nir.shape), 1.2)
    waves = waves / waves.std()
    glint = np.clip(field * (amplitude + amplitude / 2.4 * waves), 0, None) * ndi.gaussian_filter(water.astype(float), 1.0)
    weight = {"B02": 1.0, "B03": 1.0, "B04": 1.0, "B08": 0.95, "B11": 0.6}
    for f in files:
        band = next(b for b in weight if b in os.path.basename(f))
        with rasterio.open(f, "r+") as r:
            a = r.read(1).astype(float)
            g = glint
            if a.shape != glint.shape:  # 20 m band
                g = glint[: a.shape[0] * 2, : a.shape[1] * 2].reshape(a.shape[0], 2, a.shape[1], 2).mean(axis=(1, 3))
            r.write(np.clip(a + g * weight[band] * scale, 1, 65535).astype("uint16"), 1)
    truth_path = os.path.join(dst, "truth.json")
    with open(truth_path) as fh:
        truth = json.load(fh)
    truth["config"]["glint_after"] = amplitude
    with open(truth_path, "w") as fh:
        json.dump(truth, fh, indent=1)
    return prefix + case


def fold_detectors(case: str, folds):
    """The detectors that never saw the source of ``case`` (its port, or its chip's airport), for a block."""
    plain = case[2:] if case[:2] in ("g_", "h_") else case  # glint probes: g_v00_athens
    tag, source = plain[0], plain.split("_")[-1]
    if tag == "v":
        return detectors_with(vessels=vessel_detector_files(folds, source))
    return detectors_with(aircraft=aircraft_detector_files(folds, source))


def main():
    global OUT
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=OUT, help="folder for the cases (default: a temporary folder)")
    ap.add_argument("--only", nargs="*")
    ap.add_argument("--no-build", action="store_true", help="verify the cases already in --out")
    ap.add_argument("--honest", action="store_true", help="detectors that never saw the case's port or airport")
    ap.add_argument("--glint", action="store_true", help="also build the sun-glint probes g_* and h_* (see above)")
    ap.add_argument("--draw", type=int, default=None, metavar="SEED",
                    help="build a fresh draw of cases instead (fresh_cases: other ships and chips, other settings)")
    folds = fold_paths()  # built by training/folds.py ($IMGDIFF_FOLDS_DIR)
    ap.add_argument("--vessel-folds", type=Path, default=folds.vessels)
    ap.add_argument("--vessel-rescorers", type=Path, default=folds.vessel_rescorers)
    ap.add_argument("--vessel-chips", type=Path, default=folds.vessel_chips)
    ap.add_argument("--aircraft-folds", type=Path, default=folds.aircraft)
    a = ap.parse_args()
    OUT = a.out
    n = 0
    for cfg in (fresh_cases(a.draw) if a.draw is not None else cases()):
        if a.no_build or (a.only and cfg["name"] not in a.only):
            continue
        k = build_case(cfg)
        n += k
        print(cfg["name"], k, "claims", flush=True)
    if a.glint and not a.no_build:
        for case in GLINT_CASES:
            for prefix, amplitude in GLINT_PROBES.items():
                if not a.only or prefix + case in a.only or case in a.only:
                    print(add_glint(case, prefix, amplitude), "glint", amplitude, flush=True)
    print("total claims", n)
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from claims_outside import print_scores, score_cases  # the first evaluator's in-process scoring

    used = dataclasses.replace(folds, vessels=a.vessel_folds, vessel_rescorers=a.vessel_rescorers,
                               vessel_chips=a.vessel_chips, aircraft=a.aircraft_folds)
    names = sorted(d.name for d in Path(OUT).iterdir() if (d / "claims.yaml").is_file() and (not a.only or d.name in a.only))
    rows = []
    for name in names:
        with fold_detectors(name, used) if a.honest else contextlib.nullcontext():
            rows += score_cases(Path(OUT), name)
    print_scores(rows)

if __name__ == "__main__":
    main()
