"""Claim verdicts on real harbour scenes with known truth (run by hand, prints figures).

For each sen2ships port (real Sentinel-2 L2A, vessel boxes labelled) a before/after pair
is built the way the held-out check describes it:

* three zones around groups of labelled vessels, written as lon/lat GeoJSON;
* after = before with every vessel of zone ``left`` removed (inpainted), a sub-pixel
  shift (0.35, -0.4 px), a gain of 1.08, noise, and an opaque cloud over zone ``cloudy``;
* claims: ``left`` absent_after (SUPPORTED), decreased (SUPPORTED), present_after
  (REFUTED); ``stayed`` present_after (SUPPORTED), absent_after (REFUTED), unchanged
  (SUPPORTED); ``cloudy`` present_after and absent_after (INCONCLUSIVE).

Usage::

    nice /work/venv/bin/python benchmarks/claims.py [PORT ...]
    nice /work/venv/bin/python benchmarks/claims.py --aircraft [CHIP ...]   # aprons (aircraft_s2sim)
    nice /work/venv/bin/python benchmarks/claims.py --honest     # vessels by the fold model that never saw the port
    nice /work/venv/bin/python benchmarks/claims.py --half-cloud # cloud over half of a zone (see below)

``--circle-cloud`` draws the cloud as the first version did: a disc around the cloudy zone that can
cover a third of a neighbouring zone (whose absence claims are then rightly INCONCLUSIVE).

``--half-cloud`` puts the opaque cloud over the western half of zone ``stayed`` instead (zone ``cloudy``
stays clear): objects seen in the visible half must decide ``present_after`` / ``absent_after``
(INCONCLUSIVE only when no labelled object is in the visible half); ``unchanged`` may be SUPPORTED or
INCONCLUSIVE (the hidden half could hold more), never REFUTED.

Prints one line per claim (expected / got) and the fraction of right verdicts.
"""

from __future__ import annotations

import functools
import json
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import rasterio
import yaml
from affine import Affine
from rasterio.crs import CRS
from rasterio.warp import transform_geom
from scipy import ndimage as ndi
from shapely.geometry import box, mapping

from imgdiff.claims import load_claims, verify
from imgdiff.data import data_dir
from imgdiff.io.read import read_scene
from imgdiff.scene import Scene

SHIFT = (0.35, -0.40)
GAIN = 1.08
#: "box": the cloud covers the cloudy zone only; "circle" (--circle-cloud): the first benchmark's disc.
CLOUD = "box"
#: --honest: vessels detected with the leave-one-port-out fold model that never saw the port.
FOLD_MODELS = Path("/tmp/vb/cv3000")


def groups(boxes: np.ndarray, shape: tuple[int, int], k: int = 3, seed: int = 0) -> list[np.ndarray]:
    """k spatial groups of vessel indices (k-means on centres), farthest-apart first."""
    c = np.column_stack([(boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2]).astype(np.float32)
    crit = (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_MAX_ITER, 50, 0.5)
    cv2.setRNGSeed(seed)
    _, lab, _ = cv2.kmeans(c, k, None, crit, 5, cv2.KMEANS_PP_CENTERS)
    return [np.flatnonzero(lab.ravel() == i) for i in range(k)]


def zone_box(boxes: np.ndarray, idx: np.ndarray, grow: int, shape: tuple[int, int]) -> tuple[int, int, int, int]:
    b = boxes[idx]
    return (max(0, int(b[:, 0].min()) - grow), max(0, int(b[:, 1].min()) - grow),
            min(shape[1], int(np.ceil(b[:, 2].max())) + grow), min(shape[0], int(np.ceil(b[:, 3].max())) + grow))


def overlaps(a: tuple, b: tuple) -> bool:
    return not (a[2] <= b[0] or b[2] <= a[0] or a[3] <= b[1] or b[3] <= a[1])


def write_band_folder(folder: Path, bands: dict, crs, transform, date: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for n, a in bands.items():
        with rasterio.open(folder / f"{n}.tif", "w", driver="GTiff", width=a.shape[1], height=a.shape[0], count=1,
                           dtype="float32", crs=crs, transform=transform, nodata=float("nan")) as ds:
            ds.write(a.astype(np.float32), 1)
            ds.update_tags(ACQUISITION_DATE=date)


def load_case(path: Path) -> tuple[Scene, np.ndarray, str, str]:
    """(scene, GT boxes, date, object) of a sen2ships port or an aircraft_s2sim chip.

    Chips have no CRS: they are placed on a UTM 36N grid (10 m) near Hmeimim, as a
    georeferenced apron scene would be.
    """
    if (path / "vessels.json").is_file():
        gt = json.loads((path / "vessels.json").read_text())
        return read_scene(path), np.array([v["bbox_px"] for v in gt["vessels"]], float), gt["date"], "vessels"
    gt = json.loads((path / "aircraft.json").read_text())
    s = read_scene(path)
    s = replace(s, crs=CRS.from_epsg(32636), transform=Affine(10, 0, 767000, 0, -10, 3922000))
    boxes = np.array([a["bbox_px"] for a in gt["aircraft"]], float).reshape(-1, 4)
    return s, boxes, "2024-12-03", "aircraft"


def build(case: Path, work: Path) -> tuple[Path, dict[str, str]] | None:
    """Write the pair, the zones and the claims of one case; return the claims path and expected verdicts."""
    s, boxes, date, obj = load_case(case)
    if len(boxes) < 6 or (obj == "aircraft" and len(boxes) > 40):
        return None
    gs = groups(boxes, s.shape)
    zb = [zone_box(boxes, g, 6, s.shape) for g in gs]
    if any(overlaps(zb[i], zb[j]) for i in range(3) for j in range(i + 1, 3)):
        return None
    # any vessel overlapping a zone box but not in its group would blur the truth
    for i, z in enumerate(zb):
        inside = [j for j in range(len(boxes)) if overlaps(z, tuple(boxes[j])) and j not in gs[i]]
        if inside:
            gs[i] = np.array(sorted(set(gs[i]) | set(inside)))
    order = np.argsort([len(g) for g in gs])[::-1]  # largest group stays, next leaves, smallest under cloud
    stayed, left, cloudy = (int(o) for o in order)
    # after: remove the vessels of `left`, shift, gain, cloud, noise
    rng = np.random.default_rng(7)
    mask = np.zeros(s.shape, np.uint8)
    for j in gs[left]:
        x0, y0, x1, y1 = boxes[j]
        mask[max(0, int(y0) - 2):int(np.ceil(y1)) + 2, max(0, int(x0) - 2):int(np.ceil(x1)) + 2] = 1
    after = {}
    cx0, cy0, cx1, cy1 = zb[cloudy]
    if CLOUD == "half":  # the western half of the stayed zone
        sx0, sy0, sx1, sy1 = zb[stayed]
        cx0, cy0, cx1, cy1 = sx0, sy0, (sx0 + sx1) // 2, sy1
    yy, xx = np.mgrid[: s.shape[0], : s.shape[1]]
    if CLOUD == "circle":  # the first version: a disc around the zone, spilling over its neighbours
        r = 0.5 * np.hypot(cx1 - cx0, cy1 - cy0) + 6
        d = np.hypot(xx - (cx0 + cx1) / 2, yy - (cy0 + cy1) / 2)
        alpha = np.clip((r + 4 - d) / 8, 0, 1)
    else:  # opaque over the zone, fading out within 8 px of it ("an opaque cloud over one zone")
        d = np.hypot(np.maximum(0, np.maximum(cx0 - xx, xx + 1 - cx1)), np.maximum(0, np.maximum(cy0 - yy, yy + 1 - cy1)))
        alpha = np.clip((8 - d) / 8, 0, 1)
    cloud_refl = {"B02": 0.55, "B03": 0.54, "B04": 0.55, "B08": 0.58, "B11": 0.40}
    for n, a in s.bands.items():
        filled = np.nan_to_num(a, nan=float(np.nanmedian(a)))
        hi = float(np.percentile(filled, 99.9)) or 1.0
        u8 = np.clip(filled / hi * 65535, 0, 65535).astype(np.uint16)
        inp = cv2.inpaint((u8 >> 8).astype(np.uint8), mask, 5, cv2.INPAINT_TELEA).astype(np.float32) / 255 * hi
        inp = np.where(mask > 0, inp, filled)
        moved = ndi.shift(inp, (SHIFT[1], SHIFT[0]), order=3, mode="nearest") * GAIN
        moved = moved * (1 - alpha) + alpha * cloud_refl.get(n, 0.5)
        moved = np.where(np.isfinite(a), moved, np.nan)  # the same no-data as the before date
        after[n] = (moved + rng.normal(0, 0.003, moved.shape)).astype(np.float32)
    write_band_folder(work / "before", dict(s.bands), s.crs, s.transform, date)
    write_band_folder(work / "after", after, s.crs, s.transform, "2030-01-01")
    feats = []
    for name, i in (("stayed", stayed), ("left", left), ("cloudy", cloudy)):
        x0, y0, x1, y1 = zb[i]
        (mx0, my0), (mx1, my1) = s.transform * (x0, y0), s.transform * (x1, y1)
        g = transform_geom(s.crs, "EPSG:4326", mapping(box(min(mx0, mx1), min(my0, my1), max(mx0, mx1), max(my0, my1))))
        feats.append({"type": "Feature", "properties": {"zone": name}, "geometry": g})
    (work / "zones.geojson").write_text(json.dumps({"type": "FeatureCollection", "features": feats}))
    expected = {
        "left-absent_after": "SUPPORTED", "left-decreased": "SUPPORTED", "left-present_after": "REFUTED",
        "stayed-present_after": "SUPPORTED", "stayed-absent_after": "REFUTED", "stayed-unchanged": "SUPPORTED",
        "cloudy-present_after": "INCONCLUSIVE", "cloudy-absent_after": "INCONCLUSIVE",
    }
    if CLOUD == "half":
        # a labelled object of `stayed` is visible when its box lies east of the cloud and its fade (8 px)
        seen = any(boxes[j][0] >= cx1 + 8 for j in gs[stayed])
        expected.update({
            "stayed-present_after": "SUPPORTED" if seen else "INCONCLUSIVE",
            "stayed-absent_after": "REFUTED" if seen else "INCONCLUSIVE",
            "stayed-unchanged": "SUPPORTED|INCONCLUSIVE",
            "cloudy-present_after": "SUPPORTED", "cloudy-absent_after": "REFUTED",
        })
    claims = [{"id": k, "object": obj, "zone": k.split("-")[0], "assert": k.split("-")[1]} for k in expected]
    cp = work / "claims.yaml"
    cp.write_text(yaml.safe_dump({"before": "before", "after": "after", "zones": "zones.geojson", "claims": claims}))
    return cp, expected


def main(args: list[str]) -> None:
    """``[--aircraft] [NAME ...]``: sen2ships ports (default) or aircraft_s2sim chips."""
    global CLOUD
    aircraft = "--aircraft" in args
    honest = "--honest" in args
    if "--circle-cloud" in args:
        CLOUD = "circle"
    if "--half-cloud" in args:
        CLOUD = "half"
    args = [a for a in args if not a.startswith("--")]
    root = data_dir() / ("aircraft_s2sim" if aircraft else "sen2ships")
    names = args or sorted(p.name for p in root.iterdir() if p.is_dir())
    right = total = 0
    by_kind: dict[str, list[int]] = {}
    for name in names:
        with tempfile.TemporaryDirectory() as tmp:
            built = build(root / name, Path(tmp))
            if built is None:
                if not aircraft:
                    print(f"{name}: skipped (too few objects or overlapping zones)")
                continue
            cp, expected = built
            t = time.perf_counter()
            if honest and not aircraft:
                import imgdiff.detect.vessels as dv

                orig = dv.detect_vessels
                dv.detect_vessels = functools.partial(orig, model=FOLD_MODELS / f"{name}.onnx")
                try:
                    v = verify(load_claims(cp))
                finally:
                    dv.detect_vessels = orig
            else:
                v = verify(load_claims(cp))
            dt = time.perf_counter() - t
            reg = v.result.registration
            clear = {z: round(st.clear_fraction, 2) for z, st in v.states["after"].items()}
            print(f"{name}: {v.result.grid.width}x{v.result.grid.height} px, verify {dt:.1f} s, shift "
                  f"({reg.dx:+.2f}, {reg.dy:+.2f}) px (truth {SHIFT[0]:+.2f}, {SHIFT[1]:+.2f}), reliability "
                  f"{reg.reliability:.2f}, clear after {clear}")
            for vd in v.verdicts:
                exp = expected[vd.claim.id]
                ok = vd.verdict in exp.split("|")
                right += ok
                total += 1
                by_kind.setdefault(vd.claim.id, []).append(int(ok))
                print(f"  {'ok ' if ok else 'BAD'} {vd.claim.id:22s} expected {exp:12s} got {vd.verdict:12s} "
                      f"({vd.count_before} -> {vd.count_after}; {vd.reasons[-1][:90]})")
    print(f"verdicts right: {right}/{total} = {right / max(total, 1):.1%}")
    for k, v in by_kind.items():
        print(f"  {k:22s} {sum(v)}/{len(v)}")


if __name__ == "__main__":
    main(sys.argv[1:])
