"""How real do the simulated harbours look? Real Sentinel-2 ports vs ``imgdiff.simulate``, side by side.

Run by hand (about a minute on one core)::

    /work/venv/bin/python benchmarks/simulator_realism.py              # shipped samples/ vs real
    /work/venv/bin/python benchmarks/simulator_realism.py --render     # a fresh in-memory rendering vs real

Real: the seven sen2ships ports (L2A, labelled vessel boxes; pooled, and the spread of the per-port
medians) and OSCD beirut (L1C top-of-atmosphere, before and after; no vessel labels: water, land and
edges only). Simulated: the Tartus before scene (its vessel boxes from ``truth.json``) and Hmeimim.

Every statistic is computed by the SAME function on real and simulated images:

* water: open water (NDWI(B03, B08) > 0.2, >= 8 px from any vessel box), per band median;
* quay: land (NDWI < 0) within 1-3 px of a vessel box: the concrete next to moored vessels;
* urban: land 6-30 px from a vessel box (beirut: land within 30 px of the water);
* texture: L = mean over B02 B03 B04 B08 of ln(reflectance); local standard deviation of L in
  (2r+1)^2 windows, r = 1, 2, 3 px, on land within 8 px of a vessel box (window all land), and the
  rescorer's own ``land_texture`` (std of L over land 1-16 px from the box, one value per box);
* hull: per vessel box, ln(max in box / median of the water 1-8 px around it) per band, and the same
  for the box mean; the hull peak over the median quay beside it (B08); the fraction of the box that
  is "hull" (L above the water level + half the peak contrast); box long/short side in px;
* no-data pixels (NaN or 0 in a 10 m band) count as neither water nor land;
* adjacency: how much brighter water is 1-11 px from land than far from it, as a fraction of the
  land/water contrast (the wide wing of the PSF, plus turbid shore water), and open-water noise;
* PSF: water/land edges in B08 running within 20 deg of a pixel axis; each 8-sample profile across
  the edge is fitted with a pixel-integrated Gaussian-blurred step; sigma (px) of the good fits
  (rms < 0.06) - on resampled products (sen2ships EPSG:3857, OSCD EPSG:4326) this is the effective
  blur the detectors see, resampling included.

The L2A ports are converted to a top-of-atmosphere-like level with one additive path term per band,
``path = beirut TOA water - pooled sen2ships L2A water`` (the simulator renders TOA-like reflectance,
the convention of the shipped L1C-style samples). Contrasts are reported both ways.

``--aircraft`` compares the aircraft instead: the labelled, non-truncated aircraft of ``aircraft_s2sim`` (real
0.5 m airport imagery degraded to 10 m; DN x 1e-4 read as reflectance) against the transports of the Hmeimim
samples (both dates), binned by the long side of the aircraft's box (the label of ``aircraft_s2sim``), with the
same function on both (:func:`aircraft_stats`; L = mean of ln B02 B03 B04, "ring" = pixels 3-6 px outside the box
grown by 1 px, other aircraft's boxes left out):

* ``peak``: max of the B02-B04 mean in the grown box minus the ring median (reflectance); ``rel``: over that median;
* ``integ``: the positive excess summed over the grown box, over the ring median (px of full contrast);
* ``half``: pixels of the grown box above half the peak excess (the 10 m footprint);
* ``r1`` / ``r2``: local std of L in 3x3 / 5x5 windows on the ring (the ground's texture beside the aircraft);
* ``zring`` / ``zsd``: median and std of the aircraft network's normalised input (mean of the three bands) on the
  ring: where the ground around an aircraft sits against its 240 m surroundings, and how clean it is.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi
from scipy.special import ndtr

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import imgdiff  # noqa: E402
from imgdiff.data import data_dir  # noqa: E402

BANDS = ("B02", "B03", "B04", "B08", "B11")
TEN_M = ("B02", "B03", "B04", "B08")
ROOT = Path(__file__).resolve().parent.parent


def _ndwi(b: dict) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        r = (b["B03"] - b["B08"]) / (b["B03"] + b["B08"])
    return np.nan_to_num(r, nan=-1.0)


def _logmean(b: dict) -> np.ndarray:
    return np.mean([np.log(np.clip(np.nan_to_num(b[k], nan=1e-3), 1e-3, None)) for k in TEN_M], axis=0)


def _local_std(a: np.ndarray, r: int) -> np.ndarray:
    k = 2 * r + 1
    m = ndi.uniform_filter(a, k, mode="nearest")
    m2 = ndi.uniform_filter(a * a, k, mode="nearest")
    return np.sqrt(np.maximum(m2 - m * m, 0))


def _step_model(s: np.ndarray, x0: np.ndarray, k: np.ndarray) -> np.ndarray:
    """Mean over pixel [k, k+1] of Phi((t - x0) / s): a blurred step sampled by square pixels."""
    def prim(u):  # integral of Phi(t/s) dt = s * (z Phi(z) + phi(z)), z = u/s
        z = u / s
        return s * (z * ndtr(z) + np.exp(-0.5 * z * z) / math.sqrt(2 * math.pi))
    return prim(k + 1 - x0) - prim(k - x0)


_S = np.arange(0.1, 2.01, 0.025)
_X0 = np.arange(-1.0, 1.01, 0.05)
_K = np.arange(-4, 4, dtype=float)
_TEMPLATES = _step_model(_S[:, None, None], _X0[None, :, None], _K[None, None, :])  # (S, X0, 8)


def edge_sigmas(nir: np.ndarray, water: np.ndarray, exclude: np.ndarray) -> np.ndarray:
    """PSF sigma (px) fitted on axis-aligned water/land edges of ``nir`` (rows and columns)."""
    out = []
    gy, gx = ndi.sobel(nir, 0), ndi.sobel(nir, 1)
    for a, w, ex, g1, g2 in ((nir, water, exclude, gx, gy), (nir.T, water.T, exclude.T, gy.T, gx.T)):
        ys, xs = np.nonzero(w[:, :-1] != w[:, 1:])
        for y, x in zip(ys, xs):
            if x < 4 or x + 4 >= a.shape[1] or ex[y, x] or abs(g1[y, x]) < 2.75 * abs(g2[y, x]):
                continue
            p = a[y, x - 3:x + 5].astype(float)
            if w[y, x + 1]:  # water on the left
                p = p[::-1]
            lo, hi = p[:2].mean(), p[-2:].mean()
            c = hi - lo
            if not np.isfinite(c) or c < 0.05 or abs(p[0] - p[1]) > 0.15 * c or abs(p[-1] - p[-2]) > 0.15 * c:
                continue
            q = (p - lo) / c
            rms = np.sqrt(((_TEMPLATES - q) ** 2).mean(-1))
            i = np.unravel_index(np.argmin(rms), rms.shape)
            if rms[i] < 0.06:
                out.append(_S[i[0]])
    return np.array(out)


ADJ_PX = (1, 2, 3, 4, 6, 8, 11)


def adjacency(b: dict) -> tuple[np.ndarray, float]:
    """Water brightness near land (B08) and the noise of open water.

    Returns (excess, noise): ``excess[i]`` = (median water B08 at ``ADJ_PX[i]`` px from land - median
    water 15-40 px from land) / (land at the shore - that water), NaN without such water; ``noise`` =
    median 3x3 local std of B08 on that far water (reflectance).
    """
    bb = {k: np.nan_to_num(v, nan=0.0) for k, v in b.items()}
    nd = _ndwi(bb)
    water, land = nd > 0, (nd < -0.1) & (bb["B08"] > 0)
    dl = ndi.distance_transform_edt(~land)
    dw = ndi.distance_transform_edt(~water)
    far = water & (dl > 15) & (dl < 40)
    if far.sum() < 50:
        return np.full(len(ADJ_PX), np.nan), np.nan
    v = bb["B08"].astype(float)
    base = np.median(v[far])
    c = np.median(v[land & (dw > 1) & (dw <= 3)]) - base
    ex = np.array([np.median(v[water & (np.round(dl) == d)]) - base for d in ADJ_PX]) / c
    return ex, float(np.median(_local_std(v, 1)[far]))


def measure(b: dict, boxes: np.ndarray | None, pixel_m: tuple[float, float] = (10.0, 10.0)) -> dict:
    """The realism statistics of one scene (see the module docstring). ``boxes`` (N, 4) pixel edges or None."""
    shape = b["B08"].shape
    ndwi = _ndwi(b)
    water = ndwi > 0
    valid = np.logical_and.reduce([np.isfinite(b[k]) & (b[k] > 0) for k in TEN_M])
    landm = ~water & valid  # no-data (NaN or 0) is neither water nor land
    L = _logmean(b)
    L[~valid] = np.median(L[valid])
    res: dict = {"bands": {}, "hull": []}
    if boxes is not None and len(boxes):
        inbox = np.zeros(shape, bool)
        for x0, y0, x1, y1 in boxes.astype(int):
            inbox[max(y0, 0):y1, max(x0, 0):x1] = True
        dist_box = ndi.distance_transform_edt(~inbox)
    else:
        dist_box = None
    open_w = (ndwi > 0.2) & (dist_box >= 8 if dist_box is not None else True)
    if dist_box is not None:
        quay = landm & (dist_box > 0) & (dist_box <= 3)
        urban = landm & (dist_box > 6) & (dist_box <= 30)
        near = landm & (dist_box > 0) & (dist_box <= 8)
    else:
        dw = ndi.distance_transform_edt(~water)
        quay = landm & (dw > 0) & (dw <= 3)
        urban = landm & (dw > 6) & (dw <= 30)
        near = landm & (dw > 0) & (dw <= 8)
    for k in BANDS:
        if k not in b:
            continue
        v = b[k]
        res["bands"][k] = {n: np.nanmedian(v[m]) if m.any() else np.nan
                           for n, m in (("water", open_w), ("quay", quay), ("urban", urban))}
    res["texture"] = {}
    for r in (1, 2, 3):
        ok = near & ndi.binary_erosion(landm, np.ones((2 * r + 1, 2 * r + 1)), border_value=1)
        res["texture"][r] = float(np.median(_local_std(L, r)[ok])) if ok.any() else np.nan
        ok = urban & ndi.binary_erosion(landm, np.ones((2 * r + 1, 2 * r + 1)), border_value=1)
        res["texture"][f"u{r}"] = float(np.median(_local_std(L, r)[ok])) if ok.any() else np.nan
    res["n_quay_px"] = int(quay.sum())
    bad = ndi.binary_dilation(~valid, iterations=5)
    res["psf"] = edge_sigmas(b["B08"], water, bad | (dist_box <= 2) if dist_box is not None else bad)
    res["adjacency"], res["water_noise"] = adjacency(b)
    res["land_texture"] = []
    if boxes is None:
        return res
    rows, cols = shape
    for x0, y0, x1, y1 in boxes:
        bx0, by0 = max(int(math.floor(x0)), 0), max(int(math.floor(y0)), 0)
        bx1, by1 = min(int(math.ceil(x1)), cols), min(int(math.ceil(y1)), rows)
        px0, py0, px1, py1 = max(bx0 - 16, 0), max(by0 - 16, 0), min(bx1 + 16, cols), min(by1 + 16, rows)
        yy = np.arange(py0, py1)[:, None] + 0.5
        xx = np.arange(px0, px1)[None, :] + 0.5
        d = np.hypot(np.maximum(np.maximum(bx0 - xx, xx - bx1), 0), np.maximum(np.maximum(by0 - yy, yy - by1), 0))
        ib = d == 0
        wp = water[py0:py1, px0:px1]
        Lp = L[py0:py1, px0:px1]
        land = landm[py0:py1, px0:px1] & (d > 1)
        res["land_texture"].append(float(np.std(Lp[land])) if land.sum() >= 4 else np.nan)
        wr = wp & (d > 0) & (d <= 8)
        if wr.sum() < 4 or not ib.any():
            continue
        h = {"w_px": max(bx1 - bx0, by1 - by0), "h_px": min(bx1 - bx0, by1 - by0),
             "diag_m": math.hypot((x1 - x0) * pixel_m[0], (y1 - y0) * pixel_m[1])}
        for k in BANDS:
            if k not in b:
                continue
            v = np.asarray(b[k][py0:py1, px0:px1], float)
            base = np.nanmedian(v[wr])
            h[f"max_{k}"] = np.nanmax(v[ib])
            h[f"water_{k}"] = base
            h[f"mean_{k}"] = np.nanmean(v[ib])
        ql = landm[py0:py1, px0:px1] & (d > 0) & (d <= 3)
        h["quay_B08"] = float(np.median(b["B08"][py0:py1, px0:px1][ql])) if ql.sum() >= 3 else np.nan
        base_L = np.median(Lp[wr])
        peak = Lp[ib].max()
        h["fill"] = float(np.mean(Lp[ib] > base_L + 0.5 * (peak - base_L)))
        res["hull"].append(h)
    return res


def _bands(scene) -> dict:
    return {k: np.asarray(scene.bands[k], np.float32) for k in BANDS if k in scene.bands}


def real_scenes() -> list[tuple]:
    """(name, bands, boxes, mask areas, pixel size m) of the real scenes."""
    d = data_dir()
    out = []
    for p in sorted((d / "sen2ships").glob("*/vessels.json")):
        obj = json.loads(p.read_text())
        boxes = np.array([v["bbox_px"] for v in obj["vessels"]], float)
        area = np.array([v.get("area_px", np.nan) for v in obj["vessels"]], float)
        s = imgdiff.read_scene(p.parent)
        out.append((p.parent.name, _bands(s), boxes, area, s.pixel_size_m))
    for when in ("before", "after"):
        s = imgdiff.read_scene(d / "oscd" / "beirut" / when, bands=list(BANDS))
        out.append((f"beirut-{when}", _bands(s), None, None, s.pixel_size_m))
    return out


def sim_scenes(render: bool) -> list[tuple]:
    """(name, bands, vessel boxes, footprint areas in px, pixel size m) of the simulated before scenes."""
    from imgdiff import simulate as sim

    out = []
    for site in ("tartus", "hmeimim"):
        sc = sim.scenarios()[site]
        acq = sc.acquisitions[0]
        if render:
            r = sim.render(sc.terrain, acq)
            bands, truth = {k: v for k, v in _bands(sim.to_scene(r)).items()}, r.truth
        else:
            folder = ROOT / "samples" / "scenes" / site / acq.name
            bands, truth = _bands(imgdiff.read_scene(folder)), json.loads((folder / "truth.json").read_text())
        ves = [o for o in truth["objects"] if o["cls"] == "vessel"]
        boxes = np.array([o["box_px"] for o in ves], float).reshape(-1, 4) if ves else None
        area = np.array([o["length_m"] * o["width_m"] / 100.0 for o in ves], float) if ves else None
        out.append((f"sim-{site}", bands, boxes, area, (10.0, 10.0)))
    return out


def _q(v, qs=(25, 50, 75)) -> str:
    v = np.asarray(v, float)
    v = v[np.isfinite(v)]
    if not len(v):
        return "-"
    return "/".join(f"{x:.3f}" for x in np.percentile(v, qs))


AIRCRAFT_BINS_M = ((45.0, 55.0), (55.0, 65.0), (65.0, 80.0))


def aircraft_stats(b: dict, boxes: np.ndarray, keep: np.ndarray) -> list[dict]:
    """Per aircraft (``boxes[keep]``, pixel edges): peak / rel / integ / half, ring texture r1 / r2 and zring / zsd."""
    from imgdiff.detect.aircraft_features import normalised_stack

    rgb = np.mean([np.asarray(b[k], float) for k in TEN_M[:3]], axis=0)
    L = np.log(np.clip(rgb, 1e-3, None))
    z = normalised_stack([np.asarray(b[k], np.float32) for k in TEN_M[:3]]).mean(axis=0)
    shape = rgb.shape
    grown = []
    for x0, y0, x1, y1 in boxes:
        m = np.zeros(shape, bool)
        m[max(int(math.floor(y0)) - 1, 0):int(math.ceil(y1)) + 1, max(int(math.floor(x0)) - 1, 0):int(math.ceil(x1)) + 1] = True
        grown.append(m)
    anybox = np.logical_or.reduce(grown)
    s1, s2 = _local_std(L, 1), _local_std(L, 2)
    out = []
    for i in np.flatnonzero(keep):
        m = grown[i]
        ring = ndi.binary_dilation(m, iterations=6) & ~ndi.binary_dilation(m, iterations=2) & ~anybox
        if ring.sum() < 20:
            continue
        bg = float(np.median(rgb[ring]))
        ex = rgb[m] - bg
        peak = float(ex.max())
        out.append({"peak": peak, "rel": peak / bg, "integ": float(np.clip(ex, 0, None).sum()) / bg,
                    "half": int((ex > 0.5 * peak).sum()) if peak > 0 else 0,
                    "r1": float(np.median(s1[ring])), "r2": float(np.median(s2[ring])),
                    "zring": float(np.median(z[ring])), "zsd": float(np.std(z[ring]))})
    return out


def aircraft(render: bool) -> None:
    """Real aircraft of aircraft_s2sim against the simulated Hmeimim transports, binned by box long side."""
    from imgdiff import simulate as sim

    real: dict = {b: [] for b in AIRCRAFT_BINS_M}
    for d in sorted((data_dir() / "aircraft_s2sim").iterdir()):
        if not (d / "aircraft.json").is_file():
            continue
        lab = json.loads((d / "aircraft.json").read_text())["aircraft"]
        if not lab:
            continue
        boxes = np.array([a["bbox_px"] for a in lab], float)
        side = np.array([a["length_m"] for a in lab], float)
        ok = ~np.array([a["truncated"] for a in lab])
        bands = _bands(imgdiff.read_scene(d))
        for lo, hi in AIRCRAFT_BINS_M:
            real[(lo, hi)] += aircraft_stats(bands, boxes, ok & (side >= lo) & (side < hi))
    simu: dict = {b: [] for b in AIRCRAFT_BINS_M}
    sc = sim.scenarios()["hmeimim"]
    for acq in sc.acquisitions:
        if render:
            r = sim.render(sc.terrain, acq)
            bands, truth = _bands(sim.to_scene(r)), r.truth
        else:
            folder = ROOT / "samples" / "scenes" / "hmeimim" / acq.name
            bands, truth = _bands(imgdiff.read_scene(folder)), json.loads((folder / "truth.json").read_text())
        objs = truth["objects"]
        boxes = np.array([o["box_px"] for o in objs], float)
        side = 10.0 * np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])
        kind = np.array([o["kind"] == "transport" for o in objs])
        for lo, hi in AIRCRAFT_BINS_M:
            simu[(lo, hi)] += aircraft_stats(bands, boxes, kind & (side >= lo) & (side < hi))
    keys = ("peak", "rel", "integ", "half", "r1", "r2", "zring", "zsd")
    print("Aircraft: aircraft_s2sim (real, p25/p50/p75) against the Hmeimim transports (simulated, median), by the long"
          " side of the box")
    print(f"{'':22s}" + "".join(f"{k:>20s}" for k in keys))
    for lo, hi in AIRCRAFT_BINS_M:
        r, s_ = real[(lo, hi)], simu[(lo, hi)]
        print(f"{f'real {lo:g}-{hi:g} m (n={len(r)})':22s}" + "".join(f"{_q([x[k] for x in r]):>20s}" for k in keys))
        if s_:
            print(f"{f'sim  {lo:g}-{hi:g} m (n={len(s_)})':22s}"
                  + "".join(f"{np.median([x[k] for x in s_]):>20.3f}" for k in keys))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--render", action="store_true", help="render the simulated scenes now instead of samples/")
    ap.add_argument("--aircraft", action="store_true", help="aircraft of aircraft_s2sim against the Hmeimim transports")
    args = ap.parse_args()
    if args.aircraft:
        aircraft(args.render)
        return
    real = [(n, measure(b, bx, px), bx, ar) for n, b, bx, ar, px in real_scenes()]
    simu = [(n, measure(b, bx), bx, ar) for n, b, bx, ar, _ in sim_scenes(args.render)]
    ports = [r for r in real if not r[0].startswith("beirut")]
    beirut = [r for r in real if r[0].startswith("beirut")]

    def pooled(rows, cover, band):
        return [r[1]["bands"][band][cover] for r in rows if band in r[1]["bands"]]

    path = {k: np.median(pooled(beirut, "water", k)) - np.median(pooled(ports, "water", k)) for k in BANDS}
    print("Reflectance medians per band (B02 B03 B04 B08 B11); real ports: p25/p50/p75 of the 7 port medians")
    print(f"{'':28s}" + "".join(f"{k:>22s}" for k in BANDS))
    for cover in ("water", "quay", "urban"):
        print(f"{'ports L2A ' + cover:28s}" + "".join(f"{_q(pooled(ports, cover, k)):>22s}" for k in BANDS))
        print(f"{'ports +path ' + cover:28s}" + "".join(
            f"{np.median(pooled(ports, cover, k)) + path[k]:>22.3f}" for k in BANDS))
        print(f"{'beirut TOA ' + cover:28s}" + "".join(f"{_q(pooled(beirut, cover, k), (0, 100)):>22s}" for k in BANDS))
        for n, m, _, _ in simu:
            print(f"{n + ' ' + cover:28s}" + "".join(f"{m['bands'].get(k, {}).get(cover, np.nan):>22.3f}" for k in BANDS))
    print(f"{'path (beirut - ports water)':28s}" + "".join(f"{path[k]:>22.3f}" for k in BANDS))

    print("\nTexture: median local std of L = mean ln(refl) on land near vessels (r = 1, 2, 3 px); land_texture p25/50/75")
    for n, m, _, _ in real + simu:
        t = m["texture"]
        print(f"  {n:16s} r1 {t[1]:.3f}  r2 {t[2]:.3f}  r3 {t[3]:.3f}   urban r1 {t['u1']:.3f}  r2 {t['u2']:.3f}  "
              f"r3 {t['u3']:.3f}   land_texture {_q(m['land_texture'])}")
    print(f"  {'ports pooled':16s} land_texture {_q(sum((r[1]['land_texture'] for r in ports), []))}")

    print("\nHulls: ln(max in box / water around) per band, pooled over vessels, p25/p50/p75")
    hulls = sum((r[1]["hull"] for r in ports), [])
    mid = [h for h in hulls if 90 <= h["diag_m"] <= 170]
    print(f"  ({len(hulls)} labelled vessels with water around; {len(mid)} of them 90-170 m along the box diagonal)")
    for label, hs, add in [("ports L2A", hulls, False), ("ports +path", hulls, True),
                           ("ports 90-170m +path", mid, True)] + [
            (n, m["hull"], False) for n, m, _, _ in simu if m["hull"]]:
        cells = []
        for k in BANDS:
            p = path[k] if add else 0.0
            cells.append(_q([np.log((h[f"max_{k}"] + p) / (h[f"water_{k}"] + p)) for h in hs if f"max_{k}" in h]))
        print(f"  {label + ' max':22s}" + "".join(f"{c:>22s}" for c in cells))
        cells = []
        for k in BANDS:
            p = path[k] if add else 0.0
            cells.append(_q([np.log((h[f"mean_{k}"] + p) / (h[f"water_{k}"] + p)) for h in hs if f"mean_{k}" in h]))
        print(f"  {label + ' box mean':22s}" + "".join(f"{c:>22s}" for c in cells))
        print(f"  {label + ' peak refl':22s}" + "".join(
            f"{_q([h[f'max_{k}'] + (path[k] if add else 0) for h in hs if f'max_{k}' in h]):>22s}" for k in BANDS))
        print(f"  {label:22s} hull peak / quay B08 {_q([h['max_B08'] / h['quay_B08'] for h in hs])}"
              f"   hull fill of box {_q([h['fill'] for h in hs])}"
              f"   box long/short px {_q([h['w_px'] for h in hs])} | {_q([h['h_px'] for h in hs])}")
    for n, _, bx, ar in simu:
        if bx is not None:
            print(f"  footprint area / box area ({n}) {_q(ar / ((bx[:, 2] - bx[:, 0]) * (bx[:, 3] - bx[:, 1])))}")

    print("\nPSF: sigma (px) of blurred-step fits on axis-aligned water/land edges in B08: p25/p50/p75 (n)")
    for n, m, _, _ in real + simu:
        print(f"  {n:16s} {_q(m['psf'])}  ({len(m['psf'])})")
    allp = np.concatenate([r[1]["psf"] for r in ports])
    print(f"  {'ports pooled':16s} {_q(allp)}  ({len(allp)})")

    print(f"\nAdjacency: (water B08 at d px from land - far water) / (shore land - far water), d = {ADJ_PX};"
          " open-water noise (3x3 local std of B08)")
    for n, m, _, _ in real + simu:
        if np.isfinite(m["water_noise"]):
            print(f"  {n:16s} " + " ".join(f"{x:+.3f}" for x in m["adjacency"]) + f"   noise {m['water_noise']:.4f}")
    med = np.nanmedian([r[1]["adjacency"] for r in real], axis=0)
    print(f"  {'real median':16s} " + " ".join(f"{x:+.3f}" for x in med)
          + f"   noise {np.nanmedian([r[1]['water_noise'] for r in real]):.4f}")


if __name__ == "__main__":
    main()
