"""Per-candidate features for the second-stage vessel rescorer, and the rescorer itself.

Pure functions over arrays. Images are (rows, columns) = (y, x); stacks are (bands, rows, columns);
boxes are pixel-edge ``[x0, y0, x1, y1]`` (x = column, y = row) on the scene grid.

The features describe a candidate box from the vessel network in terms that carry from one port
to another (no position, no port identity): the network's score and its neighbourhood, the box
size in metres, the object's contrast against the water around it in each band (log ratios, so
independent of the scaling of the digital numbers), NDWI/NDVI of the object and its surroundings,
the fraction of open water in rings around the box, whether the bright blob runs on beyond the box
(pier and breakwater ends do, hulls do not), how long and straight the nearby land edge is (quays
and breakwaters), and local texture.

The rescorer (:func:`rescore`) is a small gradient-boosted tree ensemble stored as JSON (trained by
``training/train_vessel_rescore.py``) and evaluated with numpy only.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np

from ..errors import InputError
from ..radiometry import even_subsample, normalised_difference

#: Bands whose object/water contrast is a feature (B11 is 20 m, resampled; NaN when absent).
CONTRAST_BANDS: tuple[str, ...] = ("B02", "B03", "B04", "B08", "B11")
#: Outer radii (pixels from the box edge) of the rings whose open-water fraction is a feature.
RING_PX: tuple[int, ...] = (2, 4, 8)
#: Half side (pixels beyond the box) of the patch the features look at.
PATCH_PX = 16
#: Radius (pixels) within which other candidates count as neighbours.
NEIGHBOUR_PX = 12.0
_CROSS = np.array([[0, 1, 0], [1, 1, 1], [0, 1, 0]], np.uint8)

FEATURE_NAMES: tuple[str, ...] = (
    "score", "logit_score", "heat_ring_max", "n_near", "n_near_higher", "best_near_ratio",
    "length_m", "width_m", "elongation", "log_area_m2",
    *(f"contrast_max_{b}" for b in CONTRAST_BANDS),
    *(f"contrast_mean_{b}" for b in CONTRAST_BANDS),
    "ndwi_obj", "ndwi_ring", "ndvi_obj", "ndvi_ring", "swir_nir_obj",
    "water_in_box", *(f"water_ring_{r}" for r in RING_PX), "dist_water_px",
    "blob_px", "blob_outside_frac", "blob_extent_ratio", "blob_touches_patch", "blob_elongation",
    "land_frac_patch", "land_edge_len_px", "land_edge_straightness",
    "water_texture", "land_texture", "ring_bright_max", "chip_probability",)
#: Features of the other candidates around one: how many lie within :data:`NEIGHBOUR_PX`, how strong
#: they are, the strongest network heat in a ring around the box. The shipped rescorer does not read
#: them (``training/train_vessel_rescore.py``): a ship's score should not depend on whether its
#: neighbours are there, since the claims compare one place's scores on two dates.
CONTEXT_FEATURES: tuple[str, ...] = ("n_near", "n_near_higher", "best_near_ratio", "heat_ring_max")
#: Darkest open water (reflectance) of the seven sen2ships L2A ports the rescorer was trained on, per band:
#: the 1st percentile of each port's water pixels (:func:`imgdiff.detect.vessels.water_mask`), the
#: highest of the seven (Genoa's in all four bands; Casablanca's B03 is close), rounded up. A scene whose
#: darkest water is brighter carries path radiance (a top-of-atmosphere L1C product, a hazy day):
#: :func:`haze_offsets`.
DARK_WATER: dict[str, float] = {"B02": 0.039, "B03": 0.024, "B04": 0.015, "B08": 0.013}
#: Fewest open-water pixels (10 m: 10 ha) from which :func:`haze_offsets` estimates the darkest water.
MIN_HAZE_WATER_PX = 1000
#: Largest 99th percentile of a band read as reflectance by :func:`haze_offsets` (digital numbers or
#: another scaling are left alone: the log-ratio features do not depend on it, the offsets would).
MAX_REFLECTANCE_P99 = 1.5


def _median(v: np.ndarray) -> float:
    """``float(np.median(v))`` of a 1-D array of finite numbers, without np.median's overhead
    (the features take many medians of a few hundred pixels)."""
    n = v.size
    k = n // 2
    if n % 2:
        return float(np.partition(v, k)[k])
    part = np.partition(v, (k - 1, k))
    return float((part[k - 1] + part[k]) / 2)


def patch_log(band: np.ndarray) -> np.ndarray:
    """Natural log of a reflectance patch, invalid/non-positive pixels at the patch's median.

    Only differences of these logs (log ratios) are used as features, so the scaling of the
    digital numbers cancels.

    Parameters
    ----------
    band : ndarray (rows, cols)
        Reflectance in any linear scaling; NaN where invalid.

    Returns
    -------
    ndarray (rows, cols) float64
    """
    a = np.asarray(band, float)
    ok = np.isfinite(a) & (a > 0)
    if ok.all() and a.min() >= 1e-3 * a.max():  # nothing to fill or clamp (1e-3 x max >= 1e-3 x median)
        return np.log(a)
    if not ok.any():
        return np.zeros(a.shape)
    fill = _median(a[ok])
    return np.log(np.maximum(np.where(ok, a, fill), fill * 1e-3))


def haze_offsets(bands: Mapping[str, np.ndarray], water: np.ndarray, *,
                 min_water_px: int = MIN_HAZE_WATER_PX) -> dict[str, float]:
    """Path radiance (reflectance) to remove from each band before the contrast features.

    The contrast features are log ratios of an object to the water around it. Path radiance (the
    atmosphere's own light, in top-of-atmosphere L1C products and on hazy days) adds to both and
    lifts dark water far more than hulls, so the ratios shrink and the rescorer, trained on L2A
    (surface reflectance) ports, scores real ships low. Per band of :data:`DARK_WATER`: how far the
    darkest open water of the scene (1st percentile of the ``water`` pixels) lies above the darkest
    water of those ports; 0 where it does not, where the scene has fewer than
    ``min_water_px`` water pixels, or where the band is not in reflectance units (99th
    percentile above :data:`MAX_REFLECTANCE_P99`). For the training ports themselves every offset is 0.
    Path radiance falls with wavelength (Rayleigh and aerosol scattering alike), so no band's offset
    exceeds that of a shorter one: water that is only brighter in the green or red (a turbid
    harbour, an algal bloom) is not taken for haze.

    Measured 2026-11-27 (``training/train_vessel_rescore.py --haze-test``: the seven ports with a
    Rayleigh + aerosol path radiance added, B02 +0.013 to +0.057; nested leave-one-port-out
    networks and rescorers): see that script's docstring for the figures.

    Parameters
    ----------
    bands : mapping str -> ndarray (rows, cols)
        Reflectance, NaN invalid.
    water : ndarray of bool (rows, cols)
        Open-water mask.
    min_water_px : int
        Fewest water pixels to measure on (fewer: no offsets); smaller on a decimated grid.

    Returns
    -------
    dict
        Band name -> offset (reflectance, >= 0), for the bands of :data:`DARK_WATER` present.
    """
    water = np.asarray(water, bool)
    out: dict[str, float] = {}
    ceiling = math.inf  # the offset of the shorter bands (DARK_WATER runs from blue to near-infrared)
    for b, dark in DARK_WATER.items():
        if b not in bands:
            continue
        a = np.asarray(bands[b])
        v = even_subsample(a[water])
        v = v[np.isfinite(v)]
        if v.size < min_water_px:
            out[b] = 0.0
            continue
        every = even_subsample(a.ravel())
        every = every[np.isfinite(every)]
        if float(np.percentile(every, 99.0)) > MAX_REFLECTANCE_P99:
            out[b] = 0.0
            continue
        out[b] = min(ceiling, max(0.0, float(np.percentile(v, 1.0)) - dark))
        ceiling = out[b]
    return out


def _nan_to_zero(x: np.ndarray) -> np.ndarray:
    """``np.nan_to_num(x)`` of a float array, without its overhead when ``x`` holds no infinity (the
    features take it of many small patches)."""
    out = np.where(np.isnan(x), x.dtype.type(0), x)
    return np.nan_to_num(x) if np.isinf(out).any() else out


def _ratio(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """:func:`imgdiff.radiometry.normalised_difference` with 0 where it is undefined."""
    return _nan_to_zero(normalised_difference(a, b))


def _int_box(box, shape: tuple[int, int]) -> tuple[int, int, int, int]:
    rows, cols = shape
    x0, y0 = int(max(math.floor(box[0]), 0)), int(max(math.floor(box[1]), 0))
    x1 = int(min(max(math.ceil(box[2]), x0 + 1), cols))
    y1 = int(min(max(math.ceil(box[3]), y0 + 1), rows))
    return x0, y0, x1, y1


def _pca(yy: np.ndarray, xx: np.ndarray) -> tuple[float, float]:
    """Standard deviations (pixels) along the major and minor axes of a point set."""
    n = len(xx)
    if n < 3:
        return float(n), 0.0
    x = xx - xx.mean()
    y = yy - yy.mean()
    # sample covariance (n - 1) plus the variance of a uniform pixel (1/12), in closed form
    a = float(x @ x) / (n - 1) + 1.0 / 12.0
    c = float(y @ y) / (n - 1) + 1.0 / 12.0
    b = float(x @ y) / (n - 1)
    mid, half = (a + c) / 2.0, math.hypot((a - c) / 2.0, b)
    return math.sqrt(max(mid + half, 0.0)), math.sqrt(max(mid - half, 0.0))


def candidate_features(
    bands: Mapping[str, np.ndarray],
    boxes: np.ndarray,
    scores: np.ndarray,
    heat: np.ndarray,
    water: np.ndarray | None,
    pixel_size_m: tuple[float, float],
    *,
    stride: int = 2,
    chip_probability: np.ndarray | None = None,
) -> np.ndarray:
    """Feature matrix of candidate vessel boxes.

    Parameters
    ----------
    bands : mapping str -> ndarray (rows, cols)
        Reflectance (any linear scaling, NaN invalid) of B02, B03, B04, B08 and optionally B11.
        A missing band gives NaN features (the rescorer sends NaN to a learned side of each split).
    boxes : ndarray (N, 4)
        Candidate pixel-edge boxes [x0, y0, x1, y1] on the band grid.
    scores : ndarray (N,)
        Network centre probabilities of the candidates, in [0, 1].
    heat : ndarray (rows/stride, cols/stride)
        The network's centre heat map.
    water : ndarray of bool (rows, cols) or None
        Open-water mask (:func:`imgdiff.detect.vessels.water_mask`); None: NDWI (B03, B08) > 0, or
        without those bands the darkest 40 % of the first 10 m band.
    pixel_size_m : (float, float)
        Ground pixel size (x, y) in metres.
    stride : int
        Heat-map cell size in pixels.
    chip_probability : ndarray (N,), optional
        The chip classifier's probability of each candidate (:func:`imgdiff.detect.vessel_chips.chip_probability`);
        the ``chip_probability`` column, NaN when not given.

    Returns
    -------
    ndarray (N, len(FEATURE_NAMES)) float64
        Columns in the order of :data:`FEATURE_NAMES`. Contrasts are differences of natural-log
        reflectance (object max or mean minus the median of the water around it); sizes in metres.
        Give them the bands without their path radiance (:func:`imgdiff.detect.vessels.remove_haze`),
        as the rescorer was trained.
    """
    boxes = np.asarray(boxes, float).reshape(-1, 4)
    scores = np.asarray(scores, float).reshape(-1)
    n = len(boxes)
    out = np.full((n, len(FEATURE_NAMES)), np.nan)
    if n == 0:
        return out
    if chip_probability is not None:
        out[:, FEATURE_NAMES.index("chip_probability")] = np.asarray(chip_probability, float).reshape(n)
    shape = next(iter(bands.values())).shape
    rows, cols = shape
    ten_m = [b for b in ("B02", "B03", "B04", "B08") if b in bands]
    if not ten_m:
        raise ValueError(f"candidate features need one of B02, B03, B04, B08; got {', '.join(bands) or 'no bands'}")
    if water is None:
        if "B03" in bands and "B08" in bands:
            water = _ratio(np.nan_to_num(bands["B03"]), np.nan_to_num(bands["B08"])) > 0
        else:
            lb = patch_log(bands[ten_m[0]])
            water = lb < np.percentile(lb, 40)
    water = np.asarray(water, bool)
    # water grown by one pixel (4-connected), once for the scene; the patches only use it
    # within 10 px of their box, never at a patch border, so this equals growing each patch
    water_grown = cv2.dilate(water.astype(np.uint8), _CROSS, borderType=cv2.BORDER_CONSTANT, borderValue=0) > 0
    psx, psy = pixel_size_m
    cxs, cys = (boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2
    hh, hw = heat.shape
    col = {name: i for i, name in enumerate(FEATURE_NAMES)}

    for i in range(n):
        f = out[i]
        s = float(np.clip(scores[i], 1e-4, 1 - 1e-4))
        f[col["score"]] = s
        f[col["logit_score"]] = math.log(s / (1 - s))
        # --- neighbourhood of the score
        d = np.hypot(cxs - cxs[i], cys - cys[i])
        near = (d <= NEIGHBOUR_PX) & (np.arange(n) != i)
        f[col["n_near"]] = near.sum()
        f[col["n_near_higher"]] = (near & (scores > scores[i])).sum()
        f[col["best_near_ratio"]] = scores[near].max() / s if near.any() else 0.0
        hy, hx = int(min(max(cys[i] // stride, 0), hh - 1)), int(min(max(cxs[i] // stride, 0), hw - 1))
        win = heat[max(hy - 6, 0):hy + 7, max(hx - 6, 0):hx + 7].copy()
        cy0, cx0 = hy - max(hy - 6, 0), hx - max(hx - 6, 0)
        win[max(cy0 - 2, 0):cy0 + 3, max(cx0 - 2, 0):cx0 + 3] = 0.0
        f[col["heat_ring_max"]] = float(win.max()) / s if win.size else 0.0
        # --- size
        bw, bh = (boxes[i, 2] - boxes[i, 0]) * psx, (boxes[i, 3] - boxes[i, 1]) * psy
        f[col["length_m"]], f[col["width_m"]] = max(bw, bh), min(bw, bh)
        f[col["elongation"]] = max(bw, bh) / max(min(bw, bh), 1e-3)
        f[col["log_area_m2"]] = math.log(max(bw * bh, 1.0))
        # --- patch and rings
        bx0, by0, bx1, by1 = _int_box(boxes[i], shape)
        px0, py0 = max(bx0 - PATCH_PX, 0), max(by0 - PATCH_PX, 0)
        px1, py1 = min(bx1 + PATCH_PX, cols), min(by1 + PATCH_PX, rows)
        yy = np.arange(py0, py1)[:, None] + 0.5
        xx = np.arange(px0, px1)[None, :] + 0.5
        dist = np.hypot(np.maximum(np.maximum(bx0 - xx, xx - bx1), 0), np.maximum(np.maximum(by0 - yy, yy - by1), 0))
        inbox = dist == 0
        wp = water[py0:py1, px0:px1]
        raw = {b: np.asarray(bands[b][py0:py1, px0:px1], float) for b in CONTRAST_BANDS if b in bands}
        logs = {b: patch_log(v) for b, v in raw.items()}
        bp = np.mean([logs[b] for b in ten_m], axis=0)
        zr = {b: _nan_to_zero(v) for b, v in raw.items()}
        ndwi = _ratio(zr["B03"], zr["B08"]) if "B03" in zr and "B08" in zr else None
        ndvi = _ratio(zr["B08"], zr["B04"]) if "B08" in zr and "B04" in zr else None
        swir_nir = _ratio(zr["B11"], zr["B08"]) if "B11" in zr and "B08" in zr else None
        ring8 = (dist > 0) & (dist <= 8)
        wring = ring8 & wp
        ref = wring if wring.sum() >= 4 else ring8
        for b in CONTRAST_BANDS:
            if b not in logs or not ref.any():
                continue
            p = logs[b]
            base = _median(p[ref])
            f[col[f"contrast_max_{b}"]] = float(p[inbox].max()) - base
            f[col[f"contrast_mean_{b}"]] = float(p[inbox].mean()) - base
        # object = the brighter half of the box pixels
        bvals = bp[inbox]
        obj = inbox & (bp >= _median(bvals))
        ring4 = (dist > 0) & (dist <= 4)
        if ndwi is not None:
            q = ndwi
            f[col["ndwi_obj"]] = float(q[obj].mean())
            f[col["ndwi_ring"]] = float(q[ring4].mean()) if ring4.any() else np.nan
        if ndvi is not None:
            q = ndvi
            f[col["ndvi_obj"]] = float(q[obj].mean())
            f[col["ndvi_ring"]] = float(q[ring4].mean()) if ring4.any() else np.nan
        if swir_nir is not None:
            f[col["swir_nir_obj"]] = float(swir_nir[obj].mean())
        k = np.count_nonzero(inbox)  # fractions of water as counts (a boolean mean, without its overhead)
        f[col["water_in_box"]] = np.count_nonzero(wp & inbox) / k if k else np.nan
        lo = 0
        for r in RING_PX:
            m = (dist > lo) & (dist <= r)
            k = np.count_nonzero(m)
            f[col[f"water_ring_{r}"]] = np.count_nonzero(wp & m) / k if k else np.nan
            lo = r
        f[col["dist_water_px"]] = float(min(dist[wp].min(), PATCH_PX + 1)) if wp.any() else PATCH_PX + 1.0
        # --- the bright blob through the box's brightest pixel: does it run on beyond the box?
        base = _median(bp[ref]) if ref.any() else _median(bp.ravel())
        peak = float(bvals.max())
        blob = bp > base + 0.5 * (peak - base)
        _, lab = cv2.connectedComponents(blob.astype(np.uint8), connectivity=4)
        iy, ix = np.unravel_index(np.argmax(np.where(inbox, bp, -np.inf)), bp.shape)
        comp = lab == lab[iy, ix]
        npx = int(comp.sum())
        f[col["blob_px"]] = npx
        near_box = dist <= 1.0
        f[col["blob_outside_frac"]] = float((comp & ~near_box).sum()) / max(npx, 1)
        cyy, cxx = np.nonzero(comp)
        ext = max(cyy.max() - cyy.min() + 1, cxx.max() - cxx.min() + 1)
        f[col["blob_extent_ratio"]] = ext / max(bx1 - bx0, by1 - by0, 1)
        f[col["blob_touches_patch"]] = float(cyy.min() == 0 or cxx.min() == 0 or cyy.max() == bp.shape[0] - 1
                                             or cxx.max() == bp.shape[1] - 1)
        a1, a2 = _pca(cyy, cxx)
        f[col["blob_elongation"]] = a1 / max(a2, 0.3)
        # --- the land edge near the box (quays, breakwaters: long and straight)
        # (the object itself is not water either: only land beyond 1 px of the box counts)
        land = ~wp & (dist > 1)
        f[col["land_frac_patch"]] = float(land.sum()) / max(int((dist > 1).sum()), 1)
        edge = land & water_grown[py0:py1, px0:px1] & (dist <= 10)
        ey, ex = np.nonzero(edge)
        if len(ex) >= 3:
            a1, a2 = _pca(ey, ex)
            f[col["land_edge_len_px"]] = 2 * math.sqrt(3) * a1
            f[col["land_edge_straightness"]] = 1.0 - a2 / max(a1, 1e-6)
        else:
            f[col["land_edge_len_px"]] = float(len(ex))
            f[col["land_edge_straightness"]] = 0.0
        # --- texture
        wr = wp & ~inbox & (dist <= PATCH_PX)
        f[col["water_texture"]] = float(np.std(bp[wr])) if wr.sum() >= 4 else np.nan
        lr = land & (dist > 1)
        f[col["land_texture"]] = float(np.std(bp[lr])) if lr.sum() >= 4 else np.nan
        f[col["ring_bright_max"]] = float(bp[ring4].max()) - peak if ring4.any() else np.nan
    return out


# --------------------------------------------------------------------------------------------
# the rescorer: gradient-boosted trees in JSON, evaluated with numpy
# --------------------------------------------------------------------------------------------
@lru_cache(maxsize=4)
def _load(path: str, mtime: float) -> dict:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def load_rescorer(path: str | Path) -> dict:
    """The rescorer model (a dict: ``features``, ``base``, ``learning_rate``, ``trees``, ``threshold``).

    Raises
    ------
    InputError
        If the file is missing, is not JSON, or names a feature this version does not compute.
    """
    p = Path(path)
    try:
        model = _load(str(p), p.stat().st_mtime)
        missing = {"features", "base", "learning_rate", "trees"} - set(model)
        if missing:
            raise KeyError(f"no {', '.join(sorted(missing))}")
        unknown = [f for f in model["features"] if f not in FEATURE_NAMES]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise InputError(f"{p}: not a vessel rescorer model ({e}); run training/train_vessel_rescore.py") from None
    if unknown:
        raise InputError(f"{p}: the rescorer reads features this imgdiff does not compute ({', '.join(unknown)}); "
                         f"retrain it with training/train_vessel_rescore.py")
    return model


def rescore(model: Mapping, features: np.ndarray) -> np.ndarray:
    """Probability that each candidate is a vessel.

    Parameters
    ----------
    model : mapping
        From :func:`load_rescorer`: ``features`` (the names, from :data:`FEATURE_NAMES`, of the
        columns the trees' ``feature`` indices refer to), ``base`` (initial log-odds),
        ``learning_rate``, and ``trees``, each
        ``{"feature", "threshold", "left", "right", "value", "nan_left"}`` node arrays (leaves have
        ``feature`` -1; a sample goes left when ``x <= threshold``, or when NaN and ``nan_left``).
    features : ndarray (N, len(FEATURE_NAMES))
        From :func:`candidate_features`.

    Returns
    -------
    ndarray (N,) float64
        Probabilities in [0, 1].
    """
    cols = [FEATURE_NAMES.index(name) for name in model["features"]]
    x = np.asarray(features, float).reshape(-1, len(FEATURE_NAMES))[:, cols]
    n = len(x)
    logit = np.full(n, float(model["base"]))
    lr = float(model["learning_rate"])
    rows = np.arange(n)
    for t in model["trees"]:
        feat = np.asarray(t["feature"], int)
        thr = np.asarray(t["threshold"], float)
        left, right = np.asarray(t["left"], int), np.asarray(t["right"], int)
        nan_left = np.asarray(t["nan_left"], bool)
        val = np.asarray(t["value"], float)
        node = np.zeros(n, int)
        for _ in range(64):
            f = feat[node]
            inner = f >= 0
            if not inner.any():
                break
            v = x[rows, np.where(inner, f, 0)]
            go_left = np.where(np.isnan(v), nan_left[node], v <= thr[node])
            node = np.where(inner, np.where(go_left, left[node], right[node]), node)
        logit += lr * val[node]
    return 1.0 / (1.0 + np.exp(-logit))
